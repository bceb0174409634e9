/* porta-test-utils.c: helpers shared by the portalock test suites
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <locale.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef __linux__
# include <sys/prctl.h>
#endif

#include <glib/gstdio.h>

#include "porta-test-utils.h"

/* How long a child may take to say something or to exit before the test
 * gives up on it: far beyond anything a working child needs. */
#define CHILD_DEADLINE_MS 10000

void
porta_test_init (int    *argc,
                 char ***argv)
{
  g_test_init (argc, argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
#ifdef LC_MESSAGES
  /* The tests match words of untranslated messages. */
  setlocale (LC_MESSAGES, "C");
#endif

#ifdef SIGPIPE
  /* Telling a child that already died to let go must fail the write with
   * EPIPE, not kill the test. */
  signal (SIGPIPE, SIG_IGN);
#endif
}

/* Scales a deadline for slow runs: the valgrind test setup sets
 * PORTA_TEST_TIME_FACTOR. */
guint
porta_test_scale_ms (guint ms)
{
  const char *factor = g_getenv ("PORTA_TEST_TIME_FACTOR");
  guint64 f = 1;

  if (factor != NULL)
    f = g_ascii_strtoull (factor, NULL, 10);
  if (f < 1)
    f = 1;

  return (guint) MIN ((guint64) ms * f, G_MAXINT / 2);
}

/* How many entries @dir has: files in a folder, or /proc/self/task's
 * threads. */
guint
porta_test_count_entries (const char *dir)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GDir) d = g_dir_open (dir, 0, &error);
  guint n = 0;

  g_assert_no_error (error);
  while (g_dir_read_name (d) != NULL)
    n++;
  return n;
}

/* valgrind 3.19 runs fcntl (F_OFD_SETLKW) as a call that cannot block: it
 * holds every other thread and signal off while the call blocks, so a wait
 * for an ofd lock that this process must release, kill or interrupt hangs.
 * The valgrind test setup sets PORTA_TEST_VALGRIND. */
gboolean
porta_test_skip_ofd_wait_under_valgrind (PortaBackend backend)
{
  if (backend != PORTA_BACKEND_OFD || g_getenv ("PORTA_TEST_VALGRIND") == NULL)
    return FALSE;
  g_test_skip ("valgrind does not treat fcntl (F_OFD_SETLKW) as a blocking call");
  return TRUE;
}

/* A path in the per-test folder that G_TEST_OPTION_ISOLATE_DIRS creates
 * and removes again. */
char *
porta_test_path (const char *name)
{
  const char *dir = g_get_user_runtime_dir ();

  char *path;

  g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
  path = g_build_filename (dir, name, NULL);
#ifdef G_OS_WIN32
  /* GLib's test folders mix separators; messages name files as GFile
   * spells them, with backslashes only. */
  g_strdelimit (path, "/", '\\');
#endif
  return path;
}

const char *
porta_test_backend_name (PortaBackend backend)
{
  g_autoptr(GEnumClass) backends = g_type_class_ref (PORTA_TYPE_BACKEND);
  GEnumValue *value = g_enum_get_value (backends, backend);

  g_assert_nonnull (value);
  /* Enum classes of static types are never freed: the nick outlives
   * the reference. */
  return value->value_nick;
}

gboolean
porta_test_parse_backend (const char   *name,
                          PortaBackend *backend)
{
  g_autoptr(GEnumClass) backends = g_type_class_ref (PORTA_TYPE_BACKEND);
  GEnumValue *value = g_enum_get_value_by_nick (backends, name != NULL ? name : "default");

  if (value == NULL)
    return FALSE;
  *backend = value->value;
  return TRUE;
}

typedef struct
{
  GAsyncResult *result;
  gboolean      timed_out;
} PrivateWait;

static void
private_wait_store_result (GObject      *source,
                           GAsyncResult *result,
                           gpointer      user_data)
{
  PrivateWait *wait = user_data;

  wait->result = g_object_ref (result);
}

static gboolean
private_wait_time_out (gpointer user_data)
{
  PrivateWait *wait = user_data;

  wait->timed_out = TRUE;
  return G_SOURCE_REMOVE;
}

/* Runs the main context @context until @wait has a result, cancelling
 * @cancellable after @timeout_ms. The operation must have been started
 * with @context as its thread-default context. */
static void
private_wait_run (PrivateWait  *wait,
                  GMainContext *context,
                  GCancellable *cancellable,
                  guint         timeout_ms)
{
  GSource *timeout = g_timeout_source_new (timeout_ms);

  g_source_set_callback (timeout, private_wait_time_out, wait, NULL);
  g_source_attach (timeout, context);

  while (wait->result == NULL)
    {
      g_main_context_iteration (context, TRUE);
      if (wait->timed_out)
        g_cancellable_cancel (cancellable);
    }

  g_source_destroy (timeout);
  g_source_unref (timeout);
}

PortaTestChild *
porta_test_child_spawnv (const char * const *argv)
{
  g_autoptr(GError) error = NULL;
  PortaTestChild *child = g_new0 (PortaTestChild, 1);

  child->name = g_strjoinv (" ", (char **) argv);
  g_test_message ("spawning: %s", child->name);
  child->proc = g_subprocess_newv (argv,
                                   G_SUBPROCESS_FLAGS_STDIN_PIPE |
                                   G_SUBPROCESS_FLAGS_STDOUT_PIPE |
                                   G_SUBPROCESS_FLAGS_STDERR_PIPE,
                                   &error);
  g_assert_no_error (error);
  child->in = g_object_ref (g_subprocess_get_stdin_pipe (child->proc));
  child->out = g_data_input_stream_new (g_subprocess_get_stdout_pipe (child->proc));

  return child;
}

/* Returns the next line the child writes on stdout, without its newline,
 * or %NULL at end-of-file. Fails the test when no line arrives in time. */
char *
porta_test_child_read_line (PortaTestChild *child,
                            guint           timeout_ms)
{
  g_autoptr(GMainContext) context = g_main_context_new ();
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;
  PrivateWait wait = { NULL, FALSE };
  char *line;

  g_main_context_push_thread_default (context);
  g_data_input_stream_read_line_async (child->out, G_PRIORITY_DEFAULT,
                                       cancellable,
                                       private_wait_store_result, &wait);
  private_wait_run (&wait, context, cancellable, porta_test_scale_ms (timeout_ms));
  line = g_data_input_stream_read_line_finish_utf8 (child->out, wait.result,
                                                    NULL, &error);
  g_clear_object (&wait.result);
  g_main_context_pop_thread_default (context);

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    g_error ("“%s” wrote no line on stdout within %u ms",
             child->name, porta_test_scale_ms (timeout_ms));
  g_assert_no_error (error);

  return line;
}

static char *
read_available_stderr (PortaTestChild *child)
{
  GInputStream *err = g_subprocess_get_stderr_pipe (child->proc);
  GString *text = g_string_new (NULL);

  /* The child has exited, so everything it wrote is in the pipe already;
   * a grandchild that still holds the pipe must not make us hang. */
  for (;;)
    {
      char buf[1024];
      g_autoptr(GError) error = NULL;
      gssize n;

      /* Windows pipes are not pollable: the child has exited, and holders
       * start no grandchildren, so a blocking read ends. */
      if (G_IS_POLLABLE_INPUT_STREAM (err))
        n = g_pollable_input_stream_read_nonblocking (G_POLLABLE_INPUT_STREAM (err),
                                                      buf, sizeof buf, NULL, &error);
      else
        n = g_input_stream_read (err, buf, sizeof buf, NULL, &error);
      if (n <= 0)
        break;
      g_string_append_len (text, buf, n);
    }

  return g_string_free (text, FALSE);
}

/* Waits for the child to exit and returns its exit status. Fails the test
 * when it does not exit in time or dies of a signal. */
int
porta_test_child_wait (PortaTestChild  *child,
                       char           **stderr_text)
{
  g_autoptr(GMainContext) context = g_main_context_new ();
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *err_text = NULL;
  PrivateWait wait = { NULL, FALSE };
  int status;

  g_main_context_push_thread_default (context);
  g_subprocess_wait_async (child->proc, cancellable,
                           private_wait_store_result, &wait);
  private_wait_run (&wait, context, cancellable,
                    porta_test_scale_ms (CHILD_DEADLINE_MS));
  g_subprocess_wait_finish (child->proc, wait.result, &error);
  g_clear_object (&wait.result);
  g_main_context_pop_thread_default (context);

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      g_subprocess_force_exit (child->proc);
      g_subprocess_wait (child->proc, NULL, NULL);
      g_error ("“%s” did not exit within %u ms", child->name,
               porta_test_scale_ms (CHILD_DEADLINE_MS));
    }
  g_assert_no_error (error);

  err_text = read_available_stderr (child);
  if (err_text[0] != '\0')
    g_test_message ("stderr of “%s”: %s", child->name, err_text);

  if (!g_subprocess_get_if_exited (child->proc))
    g_error ("“%s” did not exit normally (signal %d); stderr: %s",
             child->name,
             g_subprocess_get_if_signaled (child->proc) ? g_subprocess_get_term_sig (child->proc) : 0,
             err_text);

  status = g_subprocess_get_exit_status (child->proc);
  if (stderr_text != NULL)
    *stderr_text = g_steal_pointer (&err_text);

  return status;
}

/* Checks that the next line on the child's stdout is @expected; when the
 * child exits instead, says why with what it wrote on stderr. */
void
porta_test_child_expect_line (PortaTestChild *child,
                              const char     *expected)
{
  g_autofree char *line = porta_test_child_read_line (child, CHILD_DEADLINE_MS);

  if (line == NULL)
    {
      g_autofree char *err_text = NULL;
      int status = porta_test_child_wait (child, &err_text);

      g_error ("“%s” exited with status %d instead of saying “%s”; stderr: %s",
               child->name, status, expected, err_text);
    }

  g_assert_cmpstr (line, ==, expected);
}

void
porta_test_child_send_line (PortaTestChild *child)
{
  g_autoptr(GError) error = NULL;

  g_output_stream_write_all (child->in, "\n", 1, NULL, NULL, &error);
  g_assert_no_error (error);
  g_output_stream_flush (child->in, NULL, &error);
  g_assert_no_error (error);
}

/* Tells a porta-test-holder to let go, and checks that it did and exited
 * with status 0. */
void
porta_test_child_release (PortaTestChild *child)
{
  porta_test_child_send_line (child);
  porta_test_child_expect_line (child, "released");
  g_assert_cmpint (porta_test_child_wait (child, NULL), ==, 0);
}

/* Closes the child's stdin, so that a holder lets go, and reaps it; kills
 * it when it does not exit in time. */
void
porta_test_child_free (PortaTestChild *child)
{
  if (child == NULL)
    return;

  g_output_stream_close (child->in, NULL, NULL);

  if (g_subprocess_get_identifier (child->proc) != NULL)
    {
      g_autoptr(GMainContext) context = g_main_context_new ();
      g_autoptr(GCancellable) cancellable = g_cancellable_new ();
      PrivateWait wait = { NULL, FALSE };

      g_main_context_push_thread_default (context);
      g_subprocess_wait_async (child->proc, cancellable,
                               private_wait_store_result, &wait);
      private_wait_run (&wait, context, cancellable,
                        porta_test_scale_ms (CHILD_DEADLINE_MS));
      g_clear_object (&wait.result);
      g_main_context_pop_thread_default (context);

      if (wait.timed_out)
        {
          g_test_message ("killing “%s”, which did not exit", child->name);
          g_subprocess_force_exit (child->proc);
          g_subprocess_wait (child->proc, NULL, NULL);
        }
    }

  g_clear_object (&child->out);
  g_clear_object (&child->in);
  g_clear_object (&child->proc);
  g_free (child->name);
  g_free (child);
}

/* Runs a short command to its end and returns its exit status. */
int
porta_test_run (const char * const  *argv,
                char               **stderr_text)
{
  g_autoptr(PortaTestChild) child = porta_test_child_spawnv (argv);

  g_output_stream_close (child->in, NULL, NULL);

  return porta_test_child_wait (child, stderr_text);
}

/* ---- the stress suite: its commands, records, leaks ----------------- */

/* Spawns porta-test-holder, whose path the stress suite sets in
 * PORTA_TEST_HOLDER, with @first_arg (a stress command) as its first
 * argument; or, when @first_arg is an absolute path, that program. The
 * holder dies with us. */
GSubprocess *
porta_test_spawn (GSubprocessFlags  flags,
                  const char       *first_arg,
                  ...)
{
  g_autoptr(GPtrArray) args = g_ptr_array_new ();
  g_autoptr(GError) error = NULL;
  GSubprocess *proc;
  const char *arg;
  va_list ap;

  if (!g_path_is_absolute (first_arg))
    {
      const char *helper = g_getenv ("PORTA_TEST_HOLDER");

      g_assert_nonnull (helper);
      g_ptr_array_add (args, (char *) helper);
    }
  g_ptr_array_add (args, (char *) first_arg);
  va_start (ap, first_arg);
  while ((arg = va_arg (ap, const char *)) != NULL)
    g_ptr_array_add (args, (char *) arg);
  va_end (ap);
  g_ptr_array_add (args, NULL);

  proc = g_subprocess_newv ((const char * const *) args->pdata, flags, &error);
  g_assert_no_error (error);
  return proc;
}

void
porta_test_wait_ok (GSubprocess *proc,
                    const char  *what)
{
  g_autoptr(GError) error = NULL;

  g_subprocess_wait (proc, NULL, &error);
  g_assert_no_error (error);
  if (!g_subprocess_get_if_exited (proc))
    g_error ("%s (pid %s) died of signal %d", what,
             g_subprocess_get_identifier (proc),
             g_subprocess_get_term_sig (proc));
  if (g_subprocess_get_exit_status (proc) != 0)
    g_error ("%s (pid %s) failed with exit status %d (its stderr is above)", what,
             g_subprocess_get_identifier (proc),
             g_subprocess_get_exit_status (proc));
}

/* Reads one line of @proc's stdout (it was spawned with
 * G_SUBPROCESS_FLAGS_STDOUT_PIPE), failing the test after @timeout_ms. */
char *
porta_test_read_line (GSubprocess *proc,
                      guint        timeout_ms)
{
  g_autoptr(GMainContext) context = g_main_context_new ();
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GDataInputStream) in = NULL;
  g_autoptr(GError) error = NULL;
  PrivateWait wait = { NULL, FALSE };
  char *line;

  g_main_context_push_thread_default (context);
  in = g_data_input_stream_new (g_subprocess_get_stdout_pipe (proc));
  g_filter_input_stream_set_close_base_stream (G_FILTER_INPUT_STREAM (in), FALSE);
  /* Reads no further than the line: the next reader gets the rest. */
  g_buffered_input_stream_set_buffer_size (G_BUFFERED_INPUT_STREAM (in), 1);
  g_data_input_stream_read_line_async (in, G_PRIORITY_DEFAULT, cancellable,
                                       private_wait_store_result, &wait);
  private_wait_run (&wait, context, cancellable, porta_test_scale_ms (timeout_ms));
  line = g_data_input_stream_read_line_finish_utf8 (in, wait.result, NULL, &error);
  g_clear_object (&wait.result);
  g_main_context_pop_thread_default (context);

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    g_error ("pid %s wrote no line within %u ms", g_subprocess_get_identifier (proc),
             porta_test_scale_ms (timeout_ms));
  g_assert_no_error (error);
  g_assert_nonnull (line);
  return line;
}

void
porta_test_kill (GSubprocess *proc)
{
  g_subprocess_force_exit (proc);
  g_subprocess_wait (proc, NULL, NULL);
}

static guint32
record_checksum (const char *data,
                 gsize       len)
{
  guint32 h = 5381;

  for (gsize i = 0; i < len; i++)
    h = h * 33 + (guchar) data[i];
  return h;
}

/* A record: @size copies of @fill, then its checksum as 8 hex digits. */
char *
porta_test_record_new (char   fill,
                       gsize  size,
                       gsize *len)
{
  char *record = g_malloc (size + 10);

  memset (record, fill, size);
  g_snprintf (record + size, 10, "%08x", record_checksum (record, size));
  *len = size + 8;
  return record;
}

gboolean
porta_test_record_check (const char  *buf,
                         gsize        len,
                         gsize        size,
                         char       **why)
{
  char sum[9];

  if (len != size + 8)
    {
      *why = g_strdup_printf ("%" G_GSIZE_FORMAT " bytes instead of %" G_GSIZE_FORMAT,
                              len, size + 8);
      return FALSE;
    }
  for (gsize i = 1; i < size; i++)
    if (buf[i] != buf[0])
      {
        *why = g_strdup_printf ("byte %" G_GSIZE_FORMAT " is '%c', byte 0 is '%c'",
                                i, buf[i], buf[0]);
        return FALSE;
      }
  g_snprintf (sum, sizeof sum, "%08x", record_checksum (buf, size));
  if (memcmp (buf + size, sum, 8) != 0)
    {
      *why = g_strdup_printf ("checksum %.8s instead of %s", buf + size, sum);
      return FALSE;
    }
  return TRUE;
}

guint
porta_test_count_fds (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GDir) dir = g_dir_open ("/proc/self/fd", 0, &error);
  guint n = 0;

  g_assert_no_error (error);
  while (g_dir_read_name (dir) != NULL)
    n++;
  /* not counting the descriptor of the listing itself */
  return n - 1;
}

guint
porta_test_count_threads (void)
{
  g_autofree char *status = NULL;
  g_autoptr(GError) error = NULL;
  const char *line;

  g_file_get_contents ("/proc/self/status", &status, NULL, &error);
  g_assert_no_error (error);
  line = strstr (status, "\nThreads:");
  g_assert_nonnull (line);
  return (guint) g_ascii_strtoull (line + strlen ("\nThreads:"), NULL, 10);
}

/* The names of this process's threads, to say which one is left over. */
char *
porta_test_thread_names (void)
{
  g_autoptr(GDir) dir = g_dir_open ("/proc/self/task", 0, NULL);
  GString *names = g_string_new (NULL);
  const char *tid;

  while (dir != NULL && (tid = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *comm_path = g_strdup_printf ("/proc/self/task/%s/comm", tid);
      g_autofree char *comm = NULL;

      if (g_file_get_contents (comm_path, &comm, NULL, NULL))
        g_string_append_printf (names, "%s%s", names->len > 0 ? ", " : "",
                                g_strstrip (comm));
    }
  return g_string_free (names, FALSE);
}

void
porta_test_assert_file_is (const char *path,
                           const char *contents)
{
  g_autofree char *actual = NULL;
  g_autoptr(GError) error = NULL;

  g_file_get_contents (path, &actual, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (actual, ==, contents);
}

/* The test that started a holder may die on a failed assertion while the
 * holder waits in an acquire that never ends: a holder calls this to die
 * with it, so that no holder outlives the test run. */
void
porta_test_die_with_parent (void)
{
#ifdef __linux__
  pid_t parent = getppid ();

  if (prctl (PR_SET_PDEATHSIG, SIGKILL) != 0)
    g_printerr ("%s: prctl: %s\n", g_get_prgname () != NULL ? g_get_prgname () : "holder",
                g_strerror (errno));
  if (getppid () != parent)
    _exit (1);
#endif
}

/* Returns when a whole line (TRUE), end-of-file or a read error (FALSE)
 * arrives on stdin: how a holder is told to let go, or learns that the
 * test went away. */
gboolean
porta_test_wait_for_stdin_line (void)
{
  for (;;)
    {
      char c;
      ssize_t n = read (STDIN_FILENO, &c, 1);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return FALSE;
      if (c == '\n')
        return TRUE;
    }
}
