/* stress-utils.c: helpers shared by the portalock stress tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <locale.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>

#include "stress-utils.h"

void
stress_init (int    *argc,
             char ***argv)
{
  g_test_init (argc, argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  /* The tests match words of untranslated messages. */
  setlocale (LC_MESSAGES, "C");
  /* Writing to a child that died must fail with EPIPE, not kill the test. */
  signal (SIGPIPE, SIG_IGN);
}

/* Stretches a deadline for slow runs: the valgrind test setup sets
 * PORTA_TEST_TIME_FACTOR. */
guint
stress_scale_ms (guint ms)
{
  const char *factor = g_getenv ("PORTA_TEST_TIME_FACTOR");
  guint64 f = 1;

  if (factor != NULL)
    f = g_ascii_strtoull (factor, NULL, 10);
  return (guint) MIN ((guint64) ms * MAX (f, 1), G_MAXUINT);
}

/* A path in the per-test folder that G_TEST_OPTION_ISOLATE_DIRS creates and
 * removes again. */
char *
stress_path (const char *name)
{
  const char *dir = g_get_user_runtime_dir ();

  g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
  return g_build_filename (dir, name, NULL);
}

/* valgrind 3.19 runs fcntl (F_OFD_SETLKW) as a call that cannot block: it
 * holds every other thread and signal off while the call blocks, so a wait
 * for an ofd lock that this process must release, kill or interrupt hangs.
 * The valgrind test setup sets PORTA_TEST_VALGRIND. */
gboolean
stress_skip_ofd_wait_under_valgrind (PortaBackend backend)
{
  if (backend != PORTA_BACKEND_OFD || g_getenv ("PORTA_TEST_VALGRIND") == NULL)
    return FALSE;
  g_test_skip ("valgrind does not treat fcntl (F_OFD_SETLKW) as a blocking call");
  return TRUE;
}

/* Spawns the stress helper (first_arg is its first argument) or, when
 * first_arg is an absolute path, that program. The helper dies with us. */
GSubprocess *
stress_spawn (GSubprocessFlags  flags,
              const char       *first_arg,
              ...)
{
  g_autoptr(GPtrArray) args = g_ptr_array_new ();
  g_autoptr(GError) error = NULL;
  GSubprocess *proc;
  const char *arg;
  va_list ap;

  if (!g_path_is_absolute (first_arg))
    g_ptr_array_add (args, (char *) STRESS_HELPER);
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
stress_wait_ok (GSubprocess *proc,
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

typedef struct
{
  GAsyncResult *result;
  gboolean      timed_out;
} LineWait;

static void
on_line (GObject      *source,
         GAsyncResult *result,
         gpointer      user_data)
{
  LineWait *w = user_data;

  w->result = g_object_ref (result);
}

static gboolean
on_line_timeout (gpointer user_data)
{
  LineWait *w = user_data;

  w->timed_out = TRUE;
  return G_SOURCE_REMOVE;
}

/* Reads one line of the child's stdout (it was spawned with
 * G_SUBPROCESS_FLAGS_STDOUT_PIPE), failing the test after timeout_ms. */
char *
stress_read_line (GSubprocess *proc,
                  guint        timeout_ms)
{
  g_autoptr(GMainContext) context = g_main_context_new ();
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GDataInputStream) in = NULL;
  g_autoptr(GSource) timeout = NULL;
  g_autoptr(GError) error = NULL;
  LineWait w = { NULL, FALSE };
  char *line;

  g_main_context_push_thread_default (context);
  in = g_data_input_stream_new (g_subprocess_get_stdout_pipe (proc));
  g_filter_input_stream_set_close_base_stream (G_FILTER_INPUT_STREAM (in), FALSE);
  g_buffered_input_stream_set_buffer_size (G_BUFFERED_INPUT_STREAM (in), 1);
  timeout = g_timeout_source_new (stress_scale_ms (timeout_ms));
  g_source_set_callback (timeout, on_line_timeout, &w, NULL);
  g_source_attach (timeout, context);
  g_data_input_stream_read_line_async (in, G_PRIORITY_DEFAULT, cancellable, on_line, &w);
  while (w.result == NULL)
    {
      if (w.timed_out)
        g_cancellable_cancel (cancellable);
      g_main_context_iteration (context, TRUE);
    }
  g_source_destroy (timeout);
  line = g_data_input_stream_read_line_finish_utf8 (in, w.result, NULL, &error);
  g_clear_object (&w.result);
  g_main_context_pop_thread_default (context);

  if (w.timed_out)
    g_error ("pid %s wrote no line within %u ms", g_subprocess_get_identifier (proc),
             stress_scale_ms (timeout_ms));
  g_assert_no_error (error);
  g_assert_nonnull (line);
  return line;
}

void
stress_kill (GSubprocess *proc)
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
stress_record_new (char   fill,
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
stress_record_check (const char  *buf,
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
stress_count_fds (void)
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
stress_count_threads (void)
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
stress_thread_names (void)
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
stress_assert_file_is (const char *path,
                       const char *contents)
{
  g_autofree char *actual = NULL;
  g_autoptr(GError) error = NULL;

  g_file_get_contents (path, &actual, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (actual, ==, contents);
}
