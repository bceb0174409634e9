/* test-pid-file.c: tests of PortaPidFile, within one process and between two
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The other process is this program run as
 *   test-pid-file --holder PATH
 * which acquires the PID file at PATH, prints "locked", and waits for a
 * line on stdin: "release" releases it, prints "released" and exits 0;
 * end-of-file (the test died) exits without releasing; and as
 *   test-pid-file --holder-fork PATH
 * which acquires it, forks, prints "locked CHILD-PID" and exits at once
 * without releasing, as a daemon that forks after taking its PID file
 * does: the forked child goes on holding the lock until a line or
 * end-of-file arrives on stdin.
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef __linux__
# include <sys/prctl.h>
#endif

#include <glib/gstdio.h>
#include <portalock/portalock.h>

#include "porta-test-utils.h"

/* How long a child may take to answer before the test gives up on it: far
 * beyond what a working child needs, even on a loaded machine. */
#define CHILD_DEADLINE_MS 20000

/* ------------------------------------------------------------------ */
/* The holder process */

static int
run_holder (const char *path)
{
  g_autoptr(PortaPidFile) pid_file = NULL;
  g_autoptr(GError) error = NULL;

  /* die with the test, should it die while we hold the file */
  porta_test_die_with_parent ();

  pid_file = porta_pid_file_new_for_path (path);
  if (!porta_pid_file_acquire (pid_file, -1, NULL, &error))
    {
      fprintf (stderr, "holder: %s\n", error->message);
      return 1;
    }
  printf ("locked\n");
  fflush (stdout);

  if (!porta_test_wait_for_stdin_line ())
    _exit (3);  /* the test went away: keep the file as a crash would */

  if (!porta_pid_file_release (pid_file, &error))
    {
      fprintf (stderr, "holder: %s\n", error->message);
      return 1;
    }
  printf ("released\n");
  fflush (stdout);
  return 0;
}

static int
run_fork_holder (const char *path)
{
  g_autoptr(PortaPidFile) pid_file = NULL;
  g_autoptr(GError) error = NULL;
  pid_t pid;

  pid_file = porta_pid_file_new_for_path (path);
  if (!porta_pid_file_acquire (pid_file, -1, NULL, &error))
    {
      fprintf (stderr, "holder: %s\n", error->message);
      return 1;
    }
  fflush (stdout);
  pid = fork ();
  if (pid < 0)
    return 1;
  if (pid == 0)
    {
      /* the child: holds the inherited lock until told, then lets the
       * kernel drop it as the process exits */
      if (!porta_test_wait_for_stdin_line ())
        _exit (3);
      _exit (0);
    }
  printf ("locked %d\n", (int) pid);
  fflush (stdout);
  _exit (0);  /* neither release nor dispose: the child holds it now */
}

/* ------------------------------------------------------------------ */
/* Helpers */

typedef struct
{
  GPid pid;
  int  in;     /* the child's stdin */
  int  out;    /* the child's stdout */
} Child;

static char *
test_path (const char *name)
{
  const char *dir = g_get_user_runtime_dir ();

  g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
  return g_build_filename (dir, name, NULL);
}

static Child *
child_spawn_mode (const char *mode,
                  const char *path)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *self_exe = g_file_read_link ("/proc/self/exe", &error);
  const char *argv[] = { self_exe, mode, path, NULL };
  Child *child = g_new0 (Child, 1);

  g_assert_no_error (error);
  g_spawn_async_with_pipes (NULL, (char **) argv, NULL,
                            G_SPAWN_DO_NOT_REAP_CHILD,
                            NULL, NULL, &child->pid,
                            &child->in, &child->out, NULL, &error);
  g_assert_no_error (error);
  g_test_message ("spawned holder %d", (int) child->pid);
  return child;
}

static Child *
child_spawn (const char *path)
{
  return child_spawn_mode ("--holder", path);
}

/* Reads one line from the child, failing the test if none comes in time. */
static char *
child_read_line (Child *child)
{
  GString *line = g_string_new (NULL);
  gint64 deadline = g_get_monotonic_time () + CHILD_DEADLINE_MS * G_TIME_SPAN_MILLISECOND;

  for (;;)
    {
      struct pollfd pfd = { child->out, POLLIN, 0 };
      gint64 left = (deadline - g_get_monotonic_time ()) / G_TIME_SPAN_MILLISECOND;
      char c;
      ssize_t n;
      int r;

      if (left <= 0)
        g_error ("the holder wrote no line within %d ms", CHILD_DEADLINE_MS);
      r = poll (&pfd, 1, (int) left);
      if (r < 0 && errno == EINTR)
        continue;
      g_assert_cmpint (r, >=, 0);
      if (r == 0)
        continue;
      n = read (child->out, &c, 1);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0 || c == '\n')
        break;
      g_string_append_c (line, c);
    }
  return g_string_free (line, FALSE);
}

static void
child_expect_line (Child      *child,
                   const char *expected)
{
  g_autofree char *line = child_read_line (child);

  g_assert_cmpstr (line, ==, expected);
}

static void
child_send (Child      *child,
            const char *text)
{
  g_assert_cmpint (write (child->in, text, strlen (text)), ==, (gssize) strlen (text));
}

/* Reaps the child, killing it if it does not exit in time; returns its
 * wait status. */
static int
reap_pid (pid_t pid)
{
  gint64 deadline = g_get_monotonic_time () + CHILD_DEADLINE_MS * G_TIME_SPAN_MILLISECOND;
  int status = 0;

  for (;;)
    {
      pid_t r = waitpid (pid, &status, WNOHANG);

      if (r == pid)
        break;
      g_assert_cmpint (r, ==, 0);
      if (g_get_monotonic_time () > deadline)
        {
          kill (pid, SIGKILL);
          g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
          g_error ("the holder did not exit within %d ms", CHILD_DEADLINE_MS);
        }
      g_usleep (2 * G_TIME_SPAN_MILLISECOND);
    }
  return status;
}

static int
child_reap (Child *child)
{
  return reap_pid (child->pid);
}

static void
child_free (Child *child)
{
  close (child->in);
  close (child->out);
  g_spawn_close_pid (child->pid);
  g_free (child);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Child, child_free)

/* The start time (field 22 of /proc/PID/stat) of @pid, parsed here
 * independently of the library. */
static guint64
proc_start_time (pid_t pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/stat", (int) pid);
  g_autofree char *contents = NULL;
  g_autoptr(GError) error = NULL;
  unsigned long long start = 0;
  const char *p;

  g_file_get_contents (path, &contents, NULL, &error);
  g_assert_no_error (error);
  p = strrchr (contents, ')');
  g_assert_nonnull (p);
  g_assert_cmpint (sscanf (p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                                  "%*u %*u %*d %*d %*d %*d %*d %*d %llu", &start), ==, 1);
  return start;
}

/* The command name of @pid: the program's, or valgrind's under valgrind. */
static char *
proc_comm (pid_t pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/comm", (int) pid);
  g_autoptr(GError) error = NULL;
  char *contents = NULL;

  g_file_get_contents (path, &contents, NULL, &error);
  g_assert_no_error (error);
  return g_strchomp (contents);
}

static char *
pid_file_text (pid_t pid)
{
  return g_strdup_printf ("%d\n%" G_GUINT64_FORMAT "\n", (int) pid, proc_start_time (pid));
}

static char *
read_text (const char *path)
{
  g_autoptr(GError) error = NULL;
  char *contents = NULL;

  g_file_get_contents (path, &contents, NULL, &error);
  g_assert_no_error (error);
  return contents;
}

/* Writes in place: g_file_set_contents() would put a new, unlocked file
 * at the path. */
static void
write_text (const char *path,
            const char *text)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (write (fd, text, strlen (text)), ==, (gssize) strlen (text));
  g_assert_cmpint (close (fd), ==, 0);
}

static void
assert_text (const char *path,
             const char *expected)
{
  g_autofree char *contents = read_text (path);

  g_assert_cmpstr (contents, ==, expected);
}

typedef struct
{
  gboolean   held;
  gboolean   empty_when_held;  /* "held" was notified before the write */
  const char *path;
  guint      count;
} HeldWatch;

/* Checks that "held" is notified only once the file is written. */
static void
on_held (GObject    *object,
         GParamSpec *pspec,
         gpointer    user_data)
{
  HeldWatch *watch = user_data;
  g_autofree char *contents = read_text (watch->path);

  watch->count++;
  watch->held = porta_pid_file_get_held (PORTA_PID_FILE (object));
  if (watch->held && strlen (contents) == 0)
    watch->empty_when_held = TRUE;
}

static void
store_result (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  GAsyncResult **out = user_data;

  *out = g_object_ref (result);
}

/* Runs the thread-default main context until *@result is set. */
static void
wait_result (GAsyncResult **result)
{
  gint64 deadline = g_get_monotonic_time () + CHILD_DEADLINE_MS * G_TIME_SPAN_MILLISECOND;

  while (*result == NULL)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_main_context_iteration (NULL, FALSE);
      g_usleep (G_TIME_SPAN_MILLISECOND);
    }
}

/* ------------------------------------------------------------------ */
/* Tests */

static void
test_content (void)
{
  g_autofree char *path = test_path ("content.pid");
  g_autofree char *expected = pid_file_text (getpid ());
  g_autoptr(PortaPidFile) pid_file = porta_pid_file_new_for_path (path);
  g_autoptr(GError) error = NULL;
  g_autoptr(GFile) file = NULL;
  g_autoptr(GFile) prop_file = NULL;
  HeldWatch watch = { FALSE, FALSE, path, 0 };
  gboolean held = TRUE;

  write_text (path, "");
  g_signal_connect (pid_file, "notify::held", G_CALLBACK (on_held), &watch);
  g_object_get (pid_file, "file", &prop_file, "held", &held, NULL);
  g_assert_true (g_file_peek_path (prop_file) != NULL);
  g_assert_cmpstr (g_file_peek_path (prop_file), ==, path);
  g_assert_true (porta_pid_file_get_file (pid_file) == prop_file);
  g_assert_false (held);
  g_assert_false (porta_pid_file_get_held (pid_file));

  g_assert_true (porta_pid_file_try_acquire (pid_file, &error));
  g_assert_no_error (error);
  g_assert_true (porta_pid_file_get_held (pid_file));
  g_assert_cmpuint (watch.count, ==, 1);
  g_assert_true (watch.held);
  g_assert_false (watch.empty_when_held);
  assert_text (path, expected);

  /* acquiring twice is an error, and changes nothing */
  g_assert_false (porta_pid_file_acquire (pid_file, 0, NULL, &error));
  g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_ALREADY_HELD);
  g_assert_nonnull (strstr (error->message, path));
  g_clear_error (&error);
  g_assert_cmpuint (watch.count, ==, 1);

  g_assert_true (porta_pid_file_release (pid_file, &error));
  g_assert_no_error (error);
  g_assert_false (porta_pid_file_get_held (pid_file));
  g_assert_cmpuint (watch.count, ==, 2);
  g_assert_false (watch.held);
  /* emptied, not deleted */
  assert_text (path, "");

  g_assert_false (porta_pid_file_release (pid_file, &error));
  g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_HELD);
  g_clear_error (&error);
  g_assert_cmpuint (watch.count, ==, 2);

  /* and again, over a longer PID file that a previous holder left */
  write_text (path, "99999999\n123456789012345678\n");
  g_assert_true (porta_pid_file_acquire (pid_file, -1, NULL, &error));
  g_assert_no_error (error);
  assert_text (path, expected);

  file = g_file_new_for_path (path);
  g_clear_object (&pid_file);  /* dispose releases */
  assert_text (path, "");
  pid_file = porta_pid_file_new (file);
  g_assert_true (porta_pid_file_try_acquire (pid_file, &error));
  g_assert_no_error (error);
}

/* A failed or pending acquire never writes: the file is only touched once
 * the lock is held. */
static void
test_written_after_lock (void)
{
  g_autofree char *path = test_path ("after-lock.pid");
  g_autofree char *expected = pid_file_text (getpid ());
  g_autoptr(PortaLock) lock = porta_lock_new_for_path (path, PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(PortaPidFile) pid_file = porta_pid_file_new_for_path (path);
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  HeldWatch watch = { FALSE, FALSE, path, 0 };
  const char *previous = "4242\n77\n";

  write_text (path, previous);
  g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_no_error (error);
  g_signal_connect (pid_file, "notify::held", G_CALLBACK (on_held), &watch);

  g_assert_false (porta_pid_file_try_acquire (pid_file, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_clear_error (&error);
  assert_text (path, previous);

  g_assert_false (porta_pid_file_acquire (pid_file, 20, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_clear_error (&error);
  assert_text (path, previous);
  g_assert_false (porta_pid_file_get_held (pid_file));
  g_assert_cmpuint (watch.count, ==, 0);

  porta_pid_file_acquire_async (pid_file, -1, G_PRIORITY_DEFAULT, NULL,
                                store_result, &result);
  /* let the waiter start and block; whatever it does meanwhile, it must
   * not write */
  for (guint i = 0; i < 20; i++)
    {
      g_main_context_iteration (NULL, FALSE);
      g_usleep (G_TIME_SPAN_MILLISECOND);
    }
  g_assert_null (result);
  assert_text (path, previous);
  g_assert_false (porta_pid_file_get_held (pid_file));

  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
  wait_result (&result);
  g_assert_true (porta_pid_file_acquire_finish (pid_file, result, &error));
  g_assert_no_error (error);
  g_assert_true (porta_pid_file_get_held (pid_file));
  g_assert_cmpuint (watch.count, ==, 1);
  g_assert_false (watch.empty_when_held);
  assert_text (path, expected);

  /* and the PID file now keeps the plain lock out */
  g_assert_false (porta_lock_try_acquire (lock, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_clear_error (&error);
}

static void
test_lockable (void)
{
  g_autofree char *path = test_path ("lockable.pid");
  g_autofree char *expected = pid_file_text (getpid ());
  g_autoptr(PortaPidFile) pid_file = porta_pid_file_new_for_path (path);
  g_autoptr(PortaPidFile) other = porta_pid_file_new_for_path (path);
  PortaLockable *lockable = PORTA_LOCKABLE (pid_file);
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  HeldWatch watch = { FALSE, FALSE, path, 0 };
  gboolean held = FALSE;

  g_signal_connect (pid_file, "notify::held", G_CALLBACK (on_held), &watch);
  g_assert_true (PORTA_IS_LOCKABLE (pid_file));
  g_assert_true (porta_lockable_try_acquire (lockable, &error));
  g_assert_no_error (error);
  g_assert_true (porta_lockable_get_held (lockable));
  g_object_get (lockable, "held", &held, NULL);
  g_assert_true (held);
  g_assert_cmpuint (watch.count, ==, 1);
  assert_text (path, expected);

  /* two PortaPidFiles in one process exclude each other */
  g_assert_false (porta_lockable_try_acquire (PORTA_LOCKABLE (other), &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_clear_error (&error);
  porta_lockable_acquire_async (PORTA_LOCKABLE (other), 0, G_PRIORITY_DEFAULT, NULL,
                                store_result, &result);
  wait_result (&result);
  g_assert_false (porta_lockable_acquire_finish (PORTA_LOCKABLE (other), result, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_clear_error (&error);
  g_clear_object (&result);
  assert_text (path, expected);

  g_assert_true (porta_lockable_release (lockable, &error));
  g_assert_no_error (error);
  g_assert_false (porta_lockable_get_held (lockable));
  g_assert_cmpuint (watch.count, ==, 2);
  assert_text (path, "");

  porta_lockable_acquire_async (PORTA_LOCKABLE (other), 0, G_PRIORITY_DEFAULT, NULL,
                                store_result, &result);
  wait_result (&result);
  g_assert_true (porta_lockable_acquire_finish (PORTA_LOCKABLE (other), result, &error));
  g_assert_no_error (error);
  g_assert_true (porta_lockable_get_held (PORTA_LOCKABLE (other)));
  assert_text (path, expected);
}

static void
test_two_processes (void)
{
  g_autofree char *path = test_path ("daemon.pid");
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autoptr(PortaPidFile) pid_file = porta_pid_file_new (file);
  g_autoptr(GError) error = NULL;
  g_autoptr(Child) child = child_spawn (path);
  g_autofree char *child_text = NULL;
  g_autofree char *command = NULL;
  g_autofree char *expected_command = NULL;
  guint64 start_time = 0;
  int status;
  int pid = 0;

  child_expect_line (child, "locked");
  child_text = pid_file_text (child->pid);
  assert_text (path, child_text);

  g_assert_false (porta_pid_file_try_acquire (pid_file, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_clear_error (&error);
  g_assert_false (porta_pid_file_get_held (pid_file));
  /* the failed attempt left the holder's file alone */
  assert_text (path, child_text);

  g_assert_true (porta_pid_file_query_holder (file, &pid, &start_time, &command, &error));
  g_assert_no_error (error);
  g_assert_cmpint (pid, ==, child->pid);
  g_assert_cmpuint (start_time, ==, proc_start_time (child->pid));
  expected_command = proc_comm (child->pid);
  g_assert_cmpstr (command, ==, expected_command);
  g_clear_pointer (&command, g_free);

  /* the optional arguments are optional */
  pid = 0;
  g_assert_true (porta_pid_file_query_holder (file, &pid, NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (pid, ==, child->pid);

  child_send (child, "release\n");
  child_expect_line (child, "released");
  status = child_reap (child);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), ==, 0);
  assert_text (path, "");

  pid = -1;
  start_time = 1;
  g_assert_false (porta_pid_file_query_holder (file, &pid, &start_time, &command, &error));
  g_assert_no_error (error);
  g_assert_cmpint (pid, ==, 0);
  g_assert_cmpuint (start_time, ==, 0);
  g_assert_null (command);

  g_assert_true (porta_pid_file_acquire (pid_file, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (porta_pid_file_query_holder (file, &pid, &start_time, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (pid, ==, getpid ());
  g_assert_cmpuint (start_time, ==, proc_start_time (getpid ()));
}

/* A holder killed with SIGKILL leaves its PID in the file, but not its
 * lock: it is never reported, and the next instance starts. */
static void
test_killed_holder (void)
{
  g_autofree char *path = test_path ("killed.pid");
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autoptr(PortaPidFile) pid_file = porta_pid_file_new (file);
  g_autoptr(GError) error = NULL;
  g_autoptr(Child) child = child_spawn (path);
  g_autofree char *child_text = NULL;
  g_autofree char *command = NULL;
  guint64 start_time = 0;
  int status;
  int pid = 0;

  child_expect_line (child, "locked");
  g_assert_true (porta_pid_file_query_holder (file, &pid, &start_time, &command, &error));
  g_assert_no_error (error);
  g_assert_cmpint (pid, ==, child->pid);
  child_text = pid_file_text (child->pid);

  g_assert_cmpint (kill (child->pid, SIGKILL), ==, 0);
  status = child_reap (child);
  g_assert_true (WIFSIGNALED (status));
  g_assert_cmpint (WTERMSIG (status), ==, SIGKILL);
  assert_text (path, child_text);

  g_clear_pointer (&command, g_free);
  g_assert_false (porta_pid_file_query_holder (file, &pid, &start_time, &command, &error));
  g_assert_no_error (error);
  g_assert_cmpint (pid, ==, 0);
  g_assert_null (command);

  g_assert_true (porta_pid_file_try_acquire (pid_file, &error));
  g_assert_no_error (error);
  g_assert_true (porta_pid_file_get_held (pid_file));
}

/* A PID file is held only if it is locked: one that names a live process,
 * even with its right start time, but that nobody locks names nobody. */
static void
test_unlocked_live_pid (void)
{
  g_autofree char *path = test_path ("unlocked.pid");
  g_autofree char *own = pid_file_text (getpid ());
  g_autofree char *parent = pid_file_text (getppid ());
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autoptr(GError) error = NULL;
  g_autofree char *command = NULL;
  guint64 start_time = 1;
  int pid = -1;

  write_text (path, own);
  g_assert_false (porta_pid_file_query_holder (file, &pid, &start_time, &command, &error));
  g_assert_no_error (error);
  g_assert_cmpint (pid, ==, 0);
  g_assert_cmpuint (start_time, ==, 0);
  g_assert_null (command);

  write_text (path, parent);
  g_assert_false (porta_pid_file_query_holder (file, &pid, NULL, NULL, &error));
  g_assert_no_error (error);
  assert_text (path, parent);
}

static void
test_garbage (void)
{
  g_autofree char *path = test_path ("garbage.pid");
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autoptr(PortaLock) lock = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *command = NULL;
  g_autofree char *wrong_start = NULL;
  guint64 start_time = 0;
  const char *garbage[] = {
    "hello\nworld\n", "", "\n", "12x\n", "-5\n", "0\n0\n", "1\n2\n3\n",
    "99999999999999999999\n", "\xff\xfe\n",
  };
  int pid = -1;

  for (guint i = 0; i < G_N_ELEMENTS (garbage); i++)
    {
      write_text (path, garbage[i]);
      g_assert_false (porta_pid_file_query_holder (file, &pid, &start_time, &command, &error));
      g_assert_no_error (error);
      g_assert_cmpint (pid, ==, 0);
      g_assert_null (command);
    }

  /* Locked (here by a plain lock, which writes nothing), the file is held
   * whatever it says: by the process the kernel names, never by the
   * reused PID that the file names with a wrong start time. */
  wrong_start = g_strdup_printf ("%d\n%" G_GUINT64_FORMAT "\n",
                                 (int) getpid (), proc_start_time (getpid ()) + 1);
  lock = porta_lock_new_for_path (path, PORTA_LOCK_MODE_EXCLUSIVE);
  g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_no_error (error);
  for (guint i = 0; i < G_N_ELEMENTS (garbage) + 1; i++)
    {
      write_text (path, i < G_N_ELEMENTS (garbage) ? garbage[i] : wrong_start);
      g_assert_true (porta_pid_file_query_holder (file, &pid, &start_time, &command, &error));
      g_assert_no_error (error);
      /* 0 if the OS does not tell */
      if (pid != 0)
        {
          g_autofree char *own_command = proc_comm (getpid ());

          g_assert_cmpint (pid, ==, getpid ());
          g_assert_cmpuint (start_time, ==, proc_start_time (getpid ()));
          g_assert_cmpstr (command, ==, own_command);
        }
      else
        g_assert_cmpuint (start_time, ==, 0);
      g_clear_pointer (&command, g_free);
    }
}

/* A file that holds something else (a typo in a path, a wrong unit
 * file) is refused, untouched: acquiring would overwrite it and releasing
 * would empty it. So is a file with a second link, which would change
 * with it. Stale PID files of either format are taken over. */
static void
test_refuses_other_data (void)
{
  g_autofree char *path = test_path ("not-a-pid-file.conf");
  g_autofree char *other_name = test_path ("second-name.pid");
  g_autoptr(PortaPidFile) pid_file = porta_pid_file_new_for_path (path);
  g_autoptr(GError) error = NULL;
  const char *data[] = {
    "[Service]\nExecStart=/usr/bin/app\n", "hello", "12x\n", "-5\n", " 42\n",
    "42\n\n", "\n", "1 2\n",
  };
  const char *stale[] = { "", "1\n", "4242", "4242\n123456\n", "1\n2\n3\n" };

  for (guint i = 0; i < G_N_ELEMENTS (data); i++)
    {
      write_text (path, data[i]);
      g_assert_false (porta_pid_file_try_acquire (pid_file, &error));
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
      g_assert_nonnull (strstr (error->message, path));
      g_clear_error (&error);
      g_assert_false (porta_pid_file_get_held (pid_file));
      assert_text (path, data[i]);
    }

  /* Not even a big file's first bytes are a PID file. */
  {
    g_autofree char *big = g_strnfill (5000, '7');

    write_text (path, big);
    g_assert_false (porta_pid_file_try_acquire (pid_file, &error));
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    g_clear_error (&error);
    assert_text (path, big);
  }

  for (guint i = 0; i < G_N_ELEMENTS (stale); i++)
    {
      write_text (path, stale[i]);
      g_assert_true (porta_pid_file_try_acquire (pid_file, &error));
      g_assert_no_error (error);
      g_assert_true (porta_pid_file_release (pid_file, &error));
      g_assert_no_error (error);
    }

  write_text (path, "4242\n");
  g_assert_cmpint (link (path, other_name), ==, 0);
  g_assert_false (porta_pid_file_try_acquire (pid_file, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TOO_MANY_LINKS);
  g_assert_nonnull (strstr (error->message, path));
  g_clear_error (&error);
  assert_text (path, "4242\n");
  assert_text (other_name, "4242\n");
  g_assert_cmpint (g_unlink (other_name), ==, 0);
  g_assert_true (porta_pid_file_try_acquire (pid_file, &error));
  g_assert_no_error (error);
}

static void
test_query_errors (void)
{
  g_autofree char *path = test_path ("missing.pid");
  g_autofree char *blocker = test_path ("not-a-folder");
  g_autofree char *below = g_build_filename (blocker, "x.pid", NULL);
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autoptr(GFile) below_file = g_file_new_for_path (below);
  g_autoptr(GFile) remote = g_file_new_for_uri ("http://example.invalid/daemon.pid");
  g_autoptr(PortaPidFile) remote_pid_file = porta_pid_file_new (remote);
  g_autoptr(GError) error = NULL;
  int pid = -1;

  /* missing: nobody holds it, and the query does not create it */
  g_assert_false (porta_pid_file_query_holder (file, &pid, NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (pid, ==, 0);
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));

  /* a real failure is an error that names the file */
  write_text (blocker, "");
  g_assert_false (porta_pid_file_query_holder (below_file, &pid, NULL, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_DIRECTORY);
  g_assert_nonnull (strstr (error->message, below));
  g_clear_error (&error);

  g_assert_false (porta_pid_file_query_holder (remote, &pid, NULL, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
  g_assert_nonnull (strstr (error->message, "example.invalid"));
  g_clear_error (&error);

  g_assert_false (porta_pid_file_try_acquire (remote_pid_file, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
  g_clear_error (&error);
  g_assert_false (porta_pid_file_get_held (remote_pid_file));
}

/* A daemon that forks after taking its PID file leaves the lock to its
 * child, and its own, now dead, PID in the file: the file is held, but
 * the dead process is never reported; neither is a live one that the file
 * names with a start time that is not its own. */
static void
test_dead_writer (void)
{
  g_autofree char *path = test_path ("forked.pid");
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autoptr(GError) error = NULL;
  g_autoptr(Child) child = NULL;
  g_autofree char *line = NULL;
  g_autofree char *child_text = NULL;
  g_autofree char *wrong_start = NULL;
  g_autofree char *contents = NULL;
  g_autofree char *command = NULL;
  guint64 start_time = 0;
  guint64 forked_start;
  gboolean kernel_names_holder;
  pid_t forked;
  int status;
  int pid = -1;

#ifdef __linux__
  /* so that the forked holder, orphaned, becomes ours to reap */
  g_assert_cmpint (prctl (PR_SET_CHILD_SUBREAPER, 1), ==, 0);
#else
  g_test_skip ("needs PR_SET_CHILD_SUBREAPER to reap the forked holder");
  return;
#endif

  child = child_spawn_mode ("--holder-fork", path);
  line = child_read_line (child);
  g_assert_true (g_str_has_prefix (line, "locked "));
  forked = (pid_t) g_ascii_strtoll (line + strlen ("locked "), NULL, 10);
  g_assert_cmpint (forked, >, 0);
  status = child_reap (child);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), ==, 0);
  child_text = g_strdup_printf ("%d\n", (int) child->pid);
  contents = read_text (path);
  g_assert_true (g_str_has_prefix (contents, child_text));
  forked_start = proc_start_time (forked);

  g_assert_true (porta_pid_file_query_holder (file, &pid, &start_time, &command, &error));
  g_assert_no_error (error);
  g_test_message ("held by %d (forked holder %d, dead writer %d)",
                  pid, (int) forked, (int) child->pid);
  g_assert_cmpint (pid, !=, child->pid);
  kernel_names_holder = pid != 0;
  if (kernel_names_holder)
    {
      g_assert_cmpint (pid, ==, forked);
      g_assert_cmpuint (start_time, ==, forked_start);
    }
  else
    {
      g_assert_cmpuint (start_time, ==, 0);
      g_assert_null (command);
    }
  g_clear_pointer (&command, g_free);

  wrong_start = g_strdup_printf ("%d\n%" G_GUINT64_FORMAT "\n", (int) forked, forked_start + 1);
  write_text (path, wrong_start);
  g_assert_true (porta_pid_file_query_holder (file, &pid, &start_time, NULL, &error));
  g_assert_no_error (error);
  if (kernel_names_holder)
    g_assert_cmpint (pid, ==, forked);
  else
    g_assert_cmpint (pid, ==, 0);

  child_send (child, "release\n");
  status = reap_pid (forked);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), ==, 0);
  g_assert_false (porta_pid_file_query_holder (file, &pid, NULL, NULL, &error));
  g_assert_no_error (error);
}

/* Waiting asynchronously for another process's PID file. */
static void
test_async_two_processes (void)
{
  g_autofree char *path = test_path ("async.pid");
  g_autofree char *expected = pid_file_text (getpid ());
  g_autoptr(PortaPidFile) pid_file = porta_pid_file_new_for_path (path);
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(Child) child = child_spawn (path);
  g_autofree char *child_text = NULL;
  int status;

  child_expect_line (child, "locked");
  child_text = pid_file_text (child->pid);

  porta_pid_file_acquire_async (pid_file, 0, G_PRIORITY_DEFAULT, NULL,
                                store_result, &result);
  wait_result (&result);
  g_assert_false (porta_pid_file_acquire_finish (pid_file, result, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_clear_error (&error);
  g_clear_object (&result);
  assert_text (path, child_text);

  porta_pid_file_acquire_async (pid_file, -1, G_PRIORITY_DEFAULT, NULL,
                                store_result, &result);
  for (guint i = 0; i < 10; i++)
    {
      g_main_context_iteration (NULL, FALSE);
      g_usleep (G_TIME_SPAN_MILLISECOND);
    }
  g_assert_null (result);
  assert_text (path, child_text);

  child_send (child, "release\n");
  wait_result (&result);
  g_assert_true (porta_pid_file_acquire_finish (pid_file, result, &error));
  g_assert_no_error (error);
  assert_text (path, expected);

  child_expect_line (child, "released");
  status = child_reap (child);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), ==, 0);
}

int
main (int   argc,
      char *argv[])
{
  if (argc == 3 && g_str_equal (argv[1], "--holder"))
    return run_holder (argv[2]);
  if (argc == 3 && g_str_equal (argv[1], "--holder-fork"))
    return run_fork_holder (argv[2]);

  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  /* writing to a holder that died must fail, not kill the test */
  signal (SIGPIPE, SIG_IGN);

  g_test_add_func ("/pidfile/content", test_content);
  g_test_add_func ("/pidfile/written-after-lock", test_written_after_lock);
  g_test_add_func ("/pidfile/lockable", test_lockable);
  g_test_add_func ("/pidfile/two-processes", test_two_processes);
  g_test_add_func ("/pidfile/killed-holder", test_killed_holder);
  g_test_add_func ("/pidfile/unlocked-live-pid", test_unlocked_live_pid);
  g_test_add_func ("/pidfile/garbage", test_garbage);
  g_test_add_func ("/pidfile/query-errors", test_query_errors);
  g_test_add_func ("/pidfile/refuses-other-data", test_refuses_other_data);
  g_test_add_func ("/pidfile/dead-writer", test_dead_writer);
  g_test_add_func ("/pidfile/async-two-processes", test_async_two_processes);

  return g_test_run ();
}
