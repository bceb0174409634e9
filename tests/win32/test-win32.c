/* test-win32.c: what is particular to Windows (cross-built, run under Wine)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * test-lock runs its backend tests with the win32 backend; these tests
 * cover the rest of the library on Windows: descriptor locks, PID files,
 * semaphores, that the locked byte range never blocks reading and writing
 * the file, the portalock command, and the overlapped LockFileEx() waits,
 * which need Windows itself (Wine 8 does not queue contended overlapped
 * lock requests).
 */

#include <errno.h>
#include <fcntl.h>
#include <io.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <windows.h>

#include <glib/gstdio.h>
#include <portalock/portalock.h>

#include "porta-test-utils.h"

#ifndef HOLDER_PATH
# error "HOLDER_PATH must be defined to the path of porta-test-holder"
#endif
#ifndef PORTALOCK_TOOL
# error "PORTALOCK_TOOL must be defined to the path of the portalock command"
#endif

#define SLACK_MS 2000
#define HOLDER_WAIT_MS 10000

static gboolean
under_wine (void)
{
  HMODULE ntdll = GetModuleHandleW (L"ntdll.dll");

  return ntdll != NULL && GetProcAddress (ntdll, "wine_get_version") != NULL;
}

static PortaTestChild *
holder_spawn (const char *option,
              int         timeout_ms,
              const char *path)
{
  g_autofree char *timeout = g_strdup_printf ("--timeout-ms=%d", timeout_ms);
  const char *argv[] = { HOLDER_PATH, "--backend=win32", timeout, path, NULL, NULL };

  if (option != NULL)
    {
      argv[3] = option;
      argv[4] = path;
    }
  return porta_test_child_spawnv (argv);
}

static PortaTestChild *
holder_lock (const char *option,
             const char *path)
{
  PortaTestChild *holder = holder_spawn (option, (int) porta_test_scale_ms (HOLDER_WAIT_MS), path);

  porta_test_child_expect_line (holder, "locked");
  return holder;
}

/* Another process tries once: TRUE if it got the lock. */
static gboolean
other_process_gets (const char *path)
{
  g_autoptr(PortaTestChild) holder = holder_spawn (NULL, 0, path);
  g_autofree char *line = porta_test_child_read_line (holder, porta_test_scale_ms (HOLDER_WAIT_MS));

  if (g_strcmp0 (line, "locked") == 0)
    {
      porta_test_child_release (holder);
      return TRUE;
    }
  g_assert_cmpint (porta_test_child_wait (holder, NULL), ==, 2);
  return FALSE;
}

static gint64
elapsed_ms (gint64 start_us)
{
  return (g_get_monotonic_time () - start_us) / 1000;
}

/* ---------------------------------------------------------------------- */

/* Windows range locks are mandatory: were the lock on the file's data,
 * other processes could neither read nor write it while it is held. The
 * lock lies far past the data, so they can. */
static void
test_data_not_blocked (void)
{
  g_autofree char *path = porta_test_path ("data.lock");
  g_autoptr(PortaTestChild) holder = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *contents = NULL;
  FILE *f;

  g_file_set_contents (path, "before\n", -1, &error);
  g_assert_no_error (error);
  holder = holder_lock (NULL, path);

  g_file_get_contents (path, &contents, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (contents, ==, "before\n");

  f = g_fopen (path, "r+b");
  g_assert_nonnull (f);
  g_assert_cmpint (fputs ("after!\n", f), >=, 0);
  g_assert_cmpint (fclose (f), ==, 0);
  g_clear_pointer (&contents, g_free);
  g_file_get_contents (path, &contents, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (contents, ==, "after!\n");

  porta_test_child_release (holder);
}

static void
test_stream_sees_other_writes (void)
{
  g_autofree char *path = porta_test_path ("stream.lock");
  g_autoptr(PortaLock) lock = porta_lock_new_for_path (path, PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(GError) error = NULL;
  g_autofree char *contents = NULL;
  GIOStream *stream;
  char buf[16] = { 0, };
  gsize n = 0;

  g_file_set_contents (path, "0123456789", -1, &error);
  g_assert_no_error (error);
  g_assert_true (porta_lock_try_acquire (lock, &error));
  g_assert_no_error (error);

  stream = porta_lock_get_stream (lock);
  g_assert_nonnull (stream);
  g_object_ref (stream);
  g_assert_true (g_input_stream_read_all (g_io_stream_get_input_stream (stream),
                                          buf, 4, &n, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (buf, n, "0123", 4);
  g_assert_true (g_seekable_seek (G_SEEKABLE (stream), 2, G_SEEK_SET, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_output_stream_write_all (g_io_stream_get_output_stream (stream),
                                            "ab", 2, &n, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (g_seekable_tell (G_SEEKABLE (stream)), ==, 4);

  /* Readable by others through a handle of their own while locked. */
  g_file_get_contents (path, &contents, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (contents, ==, "01ab456789");

  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
  g_assert_true (g_io_stream_is_closed (stream));
  g_object_unref (stream);
}

/* porta_fd_lock() on a C runtime descriptor the caller opened. */
static void
test_fd_lock (void)
{
  g_autofree char *path = porta_test_path ("fd.lock");
  g_autoptr(GError) error = NULL;
  gint64 start;
  int fd;

  fd = g_open (path, O_RDWR | O_CREAT | O_BINARY, 0644);
  g_assert_cmpint (fd, >=, 0);

  g_assert_true (porta_fd_lock (fd, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_DEFAULT,
                                0, NULL, &error));
  g_assert_no_error (error);
  g_assert_false (other_process_gets (path));
  g_assert_true (porta_fd_unlock (fd, PORTA_BACKEND_DEFAULT, &error));
  g_assert_no_error (error);
  g_assert_true (other_process_gets (path));

  /* Held elsewhere: the timeout is kept, and the error names the file. */
  {
    g_autoptr(PortaTestChild) holder = holder_lock (NULL, path);
    g_autofree char *base = g_path_get_basename (path);

    start = g_get_monotonic_time ();
    g_assert_false (porta_fd_lock (fd, PORTA_LOCK_MODE_SHARED, PORTA_BACKEND_DEFAULT,
                                   300, NULL, &error));
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
    g_assert_nonnull (strstr (error->message, base));
    g_assert_cmpint (elapsed_ms (start), >=, 300);
    g_assert_cmpint (elapsed_ms (start), <, 300 + SLACK_MS);
    g_clear_error (&error);
    porta_test_child_release (holder);
  }

  /* Locking a backend Windows lacks says so. */
  g_assert_false (porta_fd_lock (fd, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_FLOCK,
                                 0, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
  g_assert_nonnull (strstr (error->message, "flock"));
  g_clear_error (&error);

  g_assert_cmpint (close (fd), ==, 0);
}

typedef struct
{
  gboolean done;
  gboolean locked;
  GError  *error;
} FdLockResult;

static void
fd_lock_done (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  FdLockResult *r = user_data;

  r->locked = porta_fd_lock_finish (result, &r->error);
  r->done = TRUE;
}

static gpointer
release_later_thread (gpointer data)
{
  g_usleep (200 * 1000);
  porta_test_child_send_line (data);
  return NULL;
}

static void
test_fd_lock_async (void)
{
  g_autofree char *path = porta_test_path ("fd-async.lock");
  g_autoptr(PortaTestChild) holder = holder_lock (NULL, path);
  g_autoptr(GError) error = NULL;
  GThread *thread;
  FdLockResult r = { FALSE, FALSE, NULL };
  gint64 deadline;
  int fd;

  fd = g_open (path, O_RDWR | O_BINARY, 0);
  g_assert_cmpint (fd, >=, 0);

  porta_fd_lock_async (fd, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_WIN32,
                       (int) porta_test_scale_ms (HOLDER_WAIT_MS), G_PRIORITY_DEFAULT,
                       NULL, fd_lock_done, &r);
  g_assert_false (r.done);
  thread = g_thread_new ("release-later", release_later_thread, holder);
  deadline = g_get_monotonic_time () + (gint64) porta_test_scale_ms (HOLDER_WAIT_MS) * 1000;
  while (!r.done && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  g_thread_join (thread);
  g_assert_true (r.done);
  g_assert_no_error (r.error);
  g_assert_true (r.locked);

  porta_test_child_expect_line (holder, "released");
  g_assert_cmpint (porta_test_child_wait (holder, NULL), ==, 0);
  g_assert_false (other_process_gets (path));
  g_assert_true (porta_fd_unlock (fd, PORTA_BACKEND_WIN32, &error));
  g_assert_no_error (error);
  g_assert_true (other_process_gets (path));
  g_assert_cmpint (close (fd), ==, 0);
}

/* ---------------------------------------------------------------------- */

static void
test_pid_file (void)
{
  g_autofree char *path = porta_test_path ("daemon.pid");
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autoptr(PortaPidFile) pid_file = porta_pid_file_new (file);
  g_autoptr(GError) error = NULL;
  g_autofree char *contents = NULL;
  g_autofree char *expected = NULL;
  g_autofree char *command = NULL;
  guint64 start_time = 0;
  int pid = 0;

  g_assert_true (porta_pid_file_acquire (pid_file, 0, NULL, &error));
  g_assert_no_error (error);
  g_file_get_contents (path, &contents, NULL, &error);
  g_assert_no_error (error);
  expected = g_strdup_printf ("%lu\n", (unsigned long) GetCurrentProcessId ());
  g_assert_true (g_str_has_prefix (contents, expected));

  /* The query reads the PID, and checks that process is alive and is
   * the one that started at the recorded time. */
  g_assert_true (porta_pid_file_query_holder (file, &pid, &start_time, &command, &error));
  g_assert_no_error (error);
  g_assert_cmpint (pid, ==, (int) GetCurrentProcessId ());
  g_assert_cmpuint (start_time, >, 0);
  g_assert_nonnull (command);
  g_assert_true (g_str_has_suffix (command, ".exe"));

  g_assert_true (porta_pid_file_release (pid_file, &error));
  g_assert_no_error (error);
  g_clear_pointer (&command, g_free);
  g_assert_false (porta_pid_file_query_holder (file, &pid, &start_time, &command, &error));
  g_assert_no_error (error);
  g_assert_cmpint (pid, ==, 0);
}

static void
test_pid_file_other_process (void)
{
  g_autofree char *path = porta_test_path ("other.pid");
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autoptr(PortaPidFile) pid_file = porta_pid_file_new (file);
  g_autoptr(PortaTestChild) holder = holder_lock ("--pid-file", path);
  g_autoptr(GError) error = NULL;
  g_autofree char *command = NULL;
  const char *child_id = g_subprocess_get_identifier (holder->proc);
  guint64 start_time = 0;
  int pid = 0;

  g_assert_nonnull (child_id);
  g_assert_true (porta_pid_file_query_holder (file, &pid, &start_time, &command, &error));
  g_assert_no_error (error);
  g_assert_cmpint (pid, ==, atoi (child_id));
  g_assert_cmpuint (start_time, >, 0);
  g_assert_true (g_str_has_prefix (command, "porta-test-holder"));

  g_assert_false (porta_pid_file_try_acquire (pid_file, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_assert_nonnull (strstr (error->message, path));
  g_clear_error (&error);

  porta_test_child_release (holder);
  g_assert_true (porta_pid_file_try_acquire (pid_file, &error));
  g_assert_no_error (error);
  g_assert_true (porta_pid_file_release (pid_file, &error));
  g_assert_no_error (error);
}

/* ---------------------------------------------------------------------- */

static void
semaphore_done (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  gboolean *done = user_data;
  g_autoptr(GError) error = NULL;

  g_assert_true (porta_semaphore_acquire_finish (PORTA_SEMAPHORE (source), result, &error));
  g_assert_no_error (error);
  *done = TRUE;
}

static void
test_semaphore (void)
{
  g_autofree char *dir_path = porta_test_path ("semaphores");
  g_autoptr(GFile) dir = g_file_new_for_path (dir_path);
  g_autoptr(PortaSemaphore) a = porta_semaphore_new ("jobs", 2, dir);
  g_autoptr(PortaSemaphore) b = porta_semaphore_new ("jobs", 2, dir);
  g_autoptr(PortaSemaphore) c = porta_semaphore_new ("jobs", 2, dir);
  g_autoptr(GError) error = NULL;
  gboolean done = FALSE;
  gint64 deadline;

  g_assert_cmpint (g_mkdir_with_parents (dir_path, 0700), ==, 0);
  g_assert_true (porta_semaphore_try_acquire (a, &error));
  g_assert_no_error (error);
  g_assert_true (porta_semaphore_try_acquire (b, &error));
  g_assert_no_error (error);
  g_assert_cmpint (porta_semaphore_get_slot (a), !=, porta_semaphore_get_slot (b));

  g_assert_false (porta_semaphore_try_acquire (c, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_clear_error (&error);

  /* A waiter gets the slot that is given back. */
  porta_semaphore_acquire_async (c, porta_test_scale_ms (HOLDER_WAIT_MS), G_PRIORITY_DEFAULT,
                                 NULL, semaphore_done, &done);
  g_assert_true (porta_semaphore_release (b, &error));
  g_assert_no_error (error);
  deadline = g_get_monotonic_time () + (gint64) porta_test_scale_ms (HOLDER_WAIT_MS) * 1000;
  while (!done && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  g_assert_true (done);
  g_assert_true (porta_semaphore_get_held (c));
  g_assert_cmpint (porta_semaphore_get_slot (c), !=, porta_semaphore_get_slot (a));

  g_assert_true (porta_semaphore_release (a, &error));
  g_assert_no_error (error);
  g_assert_true (porta_semaphore_release (c, &error));
  g_assert_no_error (error);
}

/* ---------------------------------------------------------------------- */

/* The overlapped waits: an overlapped LockFileEx() that the kernel
 * completes when the holder lets go, cancelled with CancelIoEx() at the
 * deadline or on cancellation. Wine 8 cannot run them: its NtLockFile()
 * returns STATUS_PENDING for a contended request without queuing it,
 * GetOverlappedResult() then reports success although the lock was never
 * granted, and CancelIoEx() finds nothing to cancel. So under Wine the
 * library backs off instead (see /errors/win32-wait-mechanism), and this
 * test, which forces the overlapped waits, needs Windows. */
static void
test_overlapped_waits (void)
{
  g_autofree char *path = NULL;
  g_autoptr(PortaTestChild) holder = NULL;
  g_autoptr(PortaLock) lock = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GCancellable) cancellable = NULL;
  gint64 start;

  if (under_wine ())
    {
      g_test_skip ("needs Windows: Wine 8 does not queue contended overlapped "
                   "LockFileEx() requests, and reports them granted");
      return;
    }

  if (!g_test_subprocess ())
    {
      /* The choice is made once per process: force it in a child. */
      g_setenv ("PORTALOCK_WIN32_OVERLAPPED", "1", TRUE);
      g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
      g_unsetenv ("PORTALOCK_WIN32_OVERLAPPED");
      g_test_trap_assert_passed ();
      return;
    }

  path = porta_test_path ("overlapped.lock");
  lock = porta_lock_new_for_path (path, PORTA_LOCK_MODE_EXCLUSIVE);
  holder = holder_lock (NULL, path);

  start = g_get_monotonic_time ();
  g_assert_false (porta_lock_acquire (lock, 300, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_assert_cmpint (elapsed_ms (start), >=, 300);
  g_assert_cmpint (elapsed_ms (start), <, 300 + SLACK_MS);
  g_clear_error (&error);

  cancellable = g_cancellable_new ();
  g_cancellable_cancel (cancellable);
  g_assert_false (porta_lock_acquire (lock, -1, cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);

  porta_test_child_send_line (holder);
  g_assert_true (porta_lock_acquire (lock, (int) porta_test_scale_ms (HOLDER_WAIT_MS), NULL, &error));
  g_assert_no_error (error);
  porta_test_child_expect_line (holder, "released");
  g_assert_cmpint (porta_test_child_wait (holder, NULL), ==, 0);
  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
}

/* ---------------------------------------------------------------------- */
/* The portalock command                                                   */

/* Runs the command with @argv (after the program) and its stdin closed;
 * returns its exit status and what it wrote. */
static int
run_tool (const char * const  *args,
          char               **out,
          char               **err)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_autoptr(GSubprocess) proc = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *out_text = NULL;
  g_autofree char *err_text = NULL;

  g_ptr_array_add (argv, (gpointer) PORTALOCK_TOOL);
  for (guint i = 0; args[i] != NULL; i++)
    g_ptr_array_add (argv, (gpointer) args[i]);
  g_ptr_array_add (argv, NULL);
  proc = g_subprocess_newv ((const char * const *) argv->pdata,
                            G_SUBPROCESS_FLAGS_STDIN_PIPE |
                            G_SUBPROCESS_FLAGS_STDOUT_PIPE |
                            G_SUBPROCESS_FLAGS_STDERR_PIPE, &error);
  g_assert_no_error (error);
  g_subprocess_communicate_utf8 (proc, NULL, NULL, &out_text, &err_text, &error);
  g_assert_no_error (error);
  g_test_message ("portalock: stdout “%s”, stderr “%s”", out_text, err_text);
  if (out != NULL)
    *out = g_steal_pointer (&out_text);
  if (err != NULL)
    *err = g_steal_pointer (&err_text);
  return g_subprocess_get_exit_status (proc);
}

/* The command runs while the lock is held, and its exit status is the
 * command's. */
static void
test_cli_runs_command_locked (void)
{
  g_autofree char *path = porta_test_path ("cli.lock");
  g_autofree char *other = porta_test_path ("cli-other.lock");
  const char *contended[] = { path, HOLDER_PATH, "--timeout-ms=0", path, NULL };
  const char *free_file[] = { path, HOLDER_PATH, "--timeout-ms=0", other, NULL };
  const char *shell[] = { "-c", "exit 5", path, NULL };

  /* The holder, run under the lock, cannot take it: it exits 2. */
  g_assert_cmpint (run_tool (contended, NULL, NULL), ==, 2);
  /* On another file it can, and exits 0 when its stdin ends. */
  g_assert_cmpint (run_tool (free_file, NULL, NULL), ==, 0);
  g_assert_cmpint (run_tool (shell, NULL, NULL), ==, 5);
  g_assert_true (other_process_gets (path));
}

/* cmd.exe by its full path: under meson test, Wine's PATH is the build
 * tree's, without system32. */
static const char *
cmd_exe (void)
{
  const char *comspec = g_getenv ("COMSPEC");

  return comspec != NULL ? comspec : "cmd.exe";
}

static void
test_cli_contended (void)
{
  g_autofree char *path = porta_test_path ("cli-held.lock");
  g_autoptr(PortaTestChild) holder = holder_lock (NULL, path);
  const char *nonblock[] = { "-n", path, cmd_exe (), "/c", "exit 0", NULL };
  const char *nonblock_code[] = { "-n", "-E", "9", path, cmd_exe (), "/c", "exit 0", NULL };
  const char *timed[] = { "-w", "0.3", "--verbose", path, cmd_exe (), "/c", "exit 0", NULL };
  const char *status[] = { "--status", path, NULL };
  const char *waits[] = { "-w", "10", path, cmd_exe (), "/c", "exit 4", NULL };
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  GThread *thread;
  gint64 start;

  g_assert_cmpint (run_tool (nonblock, NULL, NULL), ==, 1);
  g_assert_cmpint (run_tool (nonblock_code, NULL, NULL), ==, 9);

  start = g_get_monotonic_time ();
  g_assert_cmpint (run_tool (timed, NULL, &err), ==, 1);
  g_assert_cmpint (elapsed_ms (start), >=, 300);
  g_assert_nonnull (strstr (err, "Timed out"));
  g_clear_pointer (&err, g_free);

  g_assert_cmpint (run_tool (status, &out, NULL), ==, 1);
  g_assert_nonnull (strstr (out, "lock: held"));
  g_assert_nonnull (strstr (out, "backend: win32"));
  g_clear_pointer (&out, g_free);

  /* A waiting command starts once the holder lets go. */
  thread = g_thread_new ("release-later", release_later_thread, holder);
  g_assert_cmpint (run_tool (waits, NULL, NULL), ==, 4);
  g_thread_join (thread);
  porta_test_child_expect_line (holder, "released");
  g_assert_cmpint (porta_test_child_wait (holder, NULL), ==, 0);

  g_assert_cmpint (run_tool (status, &out, NULL), ==, 0);
  g_assert_nonnull (strstr (out, "lock: free"));
}

static void
test_cli_bad_input (void)
{
  g_autofree char *dir = porta_test_path ("cli-folder");
  const char *folder[] = { dir, cmd_exe (), "/c", "exit 0", NULL };
  const char *backend[] = { "--backend=flock", dir, cmd_exe (), "/c", "exit 0", NULL };
  const char *no_command[] = { dir, NULL };
  g_autofree char *err = NULL;

  g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
  g_assert_cmpint (run_tool (folder, NULL, &err), !=, 0);
  g_assert_nonnull (strstr (err, "folder"));
  g_clear_pointer (&err, g_free);
  g_assert_cmpint (run_tool (backend, NULL, &err), !=, 0);
  g_assert_nonnull (strstr (err, "flock"));
  g_clear_pointer (&err, g_free);
  g_assert_cmpint (run_tool (no_command, NULL, &err), ==, 64);
}

int
main (int    argc,
      char **argv)
{
  porta_test_init (&argc, &argv);

  g_test_add_func ("/win32/data-not-blocked", test_data_not_blocked);
  g_test_add_func ("/win32/stream", test_stream_sees_other_writes);
  g_test_add_func ("/win32/fd-lock", test_fd_lock);
  g_test_add_func ("/win32/fd-lock-async", test_fd_lock_async);
  g_test_add_func ("/win32/pid-file", test_pid_file);
  g_test_add_func ("/win32/pid-file/other-process", test_pid_file_other_process);
  g_test_add_func ("/win32/semaphore", test_semaphore);
  g_test_add_func ("/win32/overlapped-waits", test_overlapped_waits);
  g_test_add_func ("/win32/cli/runs-command-locked", test_cli_runs_command_locked);
  g_test_add_func ("/win32/cli/contended", test_cli_contended);
  g_test_add_func ("/win32/cli/bad-input", test_cli_bad_input);

  return g_test_run ();
}
