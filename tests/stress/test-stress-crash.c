/* test-stress-crash.c: a holder that dies, and the children of a holder
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A process killed while it holds the lock must hand it over at once and
 * leave what it wrote intact; a program started while the lock is held must
 * not inherit it, nor keep it held after the holder released it.
 */

#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef __linux__
# include <sys/prctl.h>
#endif

#include "porta-test-utils.h"

#define HOLDER_TEXT    "written by the holder before it was killed\n"
/* The hand-off is measured at 20-50 us here; the bound only catches a
 * waiter that polls slowly or never wakes, on a loaded machine. */
#define MAX_HANDOFF_MS 1000

static const PortaBackend all_backends[] = {
  PORTA_BACKEND_FLOCK, PORTA_BACKEND_OFD, PORTA_BACKEND_POSIX,
};

typedef enum
{
  WAIT_SYNC_FOREVER,
  WAIT_SYNC_TIMEOUT,
  WAIT_ASYNC_FOREVER,
  WAIT_ASYNC_TIMEOUT,
  N_WAIT_KINDS
} WaitKind;

static const char *wait_kind_names[N_WAIT_KINDS] = {
  "sync-forever", "sync-timeout", "async-forever", "async-timeout",
};

typedef struct
{
  PortaBackend backend;
  WaitKind     kind;
} CrashCase;

typedef struct
{
  PortaLock *lock;
  int        timeout_ms;
  gboolean   done;      /* atomic */
  gboolean   acquired;
  GError    *error;
  gint64     when;
} Waiter;

static gpointer
sync_waiter_thread (gpointer data)
{
  Waiter *w = data;

  w->acquired = porta_lock_acquire (w->lock, w->timeout_ms, NULL, &w->error);
  w->when = g_get_monotonic_time ();
  g_atomic_int_set (&w->done, TRUE);
  return NULL;
}

static void
on_acquired (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  Waiter *w = user_data;

  w->when = g_get_monotonic_time ();
  w->acquired = porta_lock_acquire_finish (PORTA_LOCK (source), result, &w->error);
  g_atomic_int_set (&w->done, TRUE);
}

static GSubprocess *
spawn_holder (PortaBackend  backend,
              const char   *path)
{
  GSubprocess *holder = porta_test_spawn (G_SUBPROCESS_FLAGS_STDOUT_PIPE, "hold",
                                          porta_test_backend_name (backend), path,
                                          HOLDER_TEXT, NULL);
  g_autofree char *line = porta_test_read_line (holder, 20000);

  g_assert_cmpstr (line, ==, "locked");
  return holder;
}

static void
test_crash (gconstpointer data)
{
  const CrashCase *cc = data;
  const char *name = porta_test_backend_name (cc->backend);
  g_autofree char *path = porta_test_path ("crash.lock");
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autoptr(GMainContext) context = g_main_context_new ();
  g_autoptr(PortaLock) lock = NULL;
  g_autoptr(GSubprocess) holder = NULL;
  g_autoptr(GError) error = NULL;
  GThread *thread = NULL;
  Waiter w = { NULL, -1, FALSE, FALSE, NULL, 0 };
  GIOStream *stream;
  char buf[256];
  gsize len = 0;
  gint64 killed;
  gint64 handoff_us;

  if (porta_test_skip_ofd_wait_under_valgrind (cc->backend))
    return;
  holder = spawn_holder (cc->backend, path);
  lock = porta_lock_new_full (file, PORTA_LOCK_MODE_EXCLUSIVE, cc->backend, 0);
  g_assert_false (porta_lock_try_acquire (lock, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_clear_error (&error);

  w.lock = lock;
  w.timeout_ms = (cc->kind == WAIT_SYNC_TIMEOUT || cc->kind == WAIT_ASYNC_TIMEOUT)
                 ? (int) porta_test_scale_ms (60000) : -1;
  g_main_context_push_thread_default (context);
  if (cc->kind == WAIT_SYNC_FOREVER || cc->kind == WAIT_SYNC_TIMEOUT)
    thread = g_thread_new ("waiter", sync_waiter_thread, &w);
  else
    porta_lock_acquire_async (lock, w.timeout_ms, G_PRIORITY_DEFAULT, NULL,
                              on_acquired, &w);

  /* Let the waiter block in the kernel, then kill the holder. */
  g_usleep (200 * 1000);
  while (g_main_context_iteration (context, FALSE))
    ;
  g_assert_false (g_atomic_int_get (&w.done));
  killed = g_get_monotonic_time ();
  g_subprocess_force_exit (holder);

  if (thread != NULL)
    g_thread_join (thread);
  else
    while (!g_atomic_int_get (&w.done))
      g_main_context_iteration (context, TRUE);
  g_main_context_pop_thread_default (context);
  g_subprocess_wait (holder, NULL, &error);
  g_assert_no_error (error);
  g_assert_false (g_subprocess_get_if_exited (holder));
  g_assert_cmpint (g_subprocess_get_term_sig (holder), ==, SIGKILL);

  g_assert_no_error (w.error);
  g_assert_true (w.acquired);
  handoff_us = w.when - killed;
  g_test_message ("%s %s: waiter got the lock %" G_GINT64_FORMAT " us after "
                  "SIGKILL of the holder (bound %u ms)",
                  name, wait_kind_names[cc->kind], handoff_us,
                  porta_test_scale_ms (MAX_HANDOFF_MS));
  g_assert_cmpint (handoff_us, <, (gint64) porta_test_scale_ms (MAX_HANDOFF_MS) * 1000);

  /* What the holder wrote under the lock survived its death. */
  stream = porta_lock_get_stream (lock);
  g_input_stream_read_all (g_io_stream_get_input_stream (stream), buf,
                           sizeof buf - 1, &len, NULL, &error);
  g_assert_no_error (error);
  buf[len] = '\0';
  g_assert_cmpstr (buf, ==, HOLDER_TEXT);
  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
  porta_test_assert_file_is (path, HOLDER_TEXT);

  /* And the lock is free for everyone after us. */
  {
    g_autoptr(GSubprocess) other = porta_test_spawn (G_SUBPROCESS_FLAGS_NONE, "try",
                                                     name, path, NULL);
    porta_test_wait_ok (other, "a process trying the lock after the crash");
  }
}

/* Whether the process @pid has the file (@dev, @ino) open. */
static gboolean
process_has_open (GPid   pid,
                  dev_t  dev,
                  ino_t  ino,
                  guint *n_fds)
{
  g_autofree char *fd_dir = g_strdup_printf ("/proc/%d/fd", (int) pid);
  g_autoptr(GError) error = NULL;
  g_autoptr(GDir) dir = g_dir_open (fd_dir, 0, &error);
  const char *entry;
  gboolean found = FALSE;

  g_assert_no_error (error);
  *n_fds = 0;
  while ((entry = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *fd_path = g_build_filename (fd_dir, entry, NULL);
      struct stat st;

      (*n_fds)++;
      if (stat (fd_path, &st) == 0 && st.st_dev == dev && st.st_ino == ino)
        found = TRUE;
    }
  return found;
}

/* Waits until @pid runs sleep(1): its descriptors are then the ones that
 * survived exec. */
static void
assert_exec_done (GPid pid)
{
  g_autofree char *cmdline_path = g_strdup_printf ("/proc/%d/cmdline", (int) pid);
  gint64 end = g_get_monotonic_time () + porta_test_scale_ms (10000) * (gint64) 1000;

  for (;;)
    {
      g_autofree char *cmdline = NULL;

      g_assert_true (g_file_get_contents (cmdline_path, &cmdline, NULL, NULL));
      if (g_str_has_suffix (cmdline, "sleep"))
        return;
      g_assert_cmpint (g_get_monotonic_time (), <, end);
      g_usleep (1000);
    }
}

/* Spawned programs die with the test, so that none outlives a failure. */
static void
die_with_parent (gpointer user_data)
{
#ifdef __linux__
  prctl (PR_SET_PDEATHSIG, SIGKILL);
#endif
}

static int
try_from_other_process (PortaBackend  backend,
                        const char   *path)
{
  g_autoptr(GSubprocess) proc = porta_test_spawn (G_SUBPROCESS_FLAGS_NONE, "try",
                                                  porta_test_backend_name (backend),
                                                  path, NULL);
  g_autoptr(GError) error = NULL;

  g_subprocess_wait_check (proc, NULL, NULL);
  g_assert_true (g_subprocess_get_if_exited (proc));
  return g_subprocess_get_exit_status (proc);
}

/* flock(1) sees flock(2) locks only. Returns its exit status, or -1 when
 * there is no flock(1). */
static int
run_flock_tool (const char *path)
{
  g_autofree char *flock_tool = g_find_program_in_path ("flock");
  g_autoptr(GSubprocess) proc = NULL;

  if (flock_tool == NULL)
    return -1;
  proc = porta_test_spawn (G_SUBPROCESS_FLAGS_NONE, flock_tool, "-n", path, "true", NULL);
  g_subprocess_wait (proc, NULL, NULL);
  g_assert_true (g_subprocess_get_if_exited (proc));
  return g_subprocess_get_exit_status (proc);
}

static void
test_children_spawn (gconstpointer data)
{
  PortaBackend backend = GPOINTER_TO_INT (data);
  const char *name = porta_test_backend_name (backend);
  g_autofree char *path = porta_test_path ("parent.lock");
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autoptr(PortaLock) lock = porta_lock_new_full (file, PORTA_LOCK_MODE_EXCLUSIVE,
                                                   backend, 0);
  g_autoptr(GSubprocess) subprocess_child = NULL;
  g_autoptr(GError) error = NULL;
  const char *sleep_argv[] = { "sleep", "120", NULL };
  g_autoptr(GSubprocessLauncher) launcher = NULL;
  GPid spawn_child = 0;
  guint n_fds_spawn, n_fds_sub;
  struct stat st;
  int status;

  g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (stat (path, &st), ==, 0);
  /* The test can see a descriptor of the lock file: our own one. */
  g_assert_true (process_has_open (getpid (), st.st_dev, st.st_ino, &n_fds_spawn));

  /* g_spawn with LEAVE_DESCRIPTORS_OPEN passes on every descriptor that is
   * not close-on-exec, so only O_CLOEXEC keeps the lock out of it;
   * GSubprocess closes the others itself. */
  g_spawn_async (NULL, (char **) sleep_argv, NULL,
                 G_SPAWN_SEARCH_PATH | G_SPAWN_LEAVE_DESCRIPTORS_OPEN |
                 G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL |
                 G_SPAWN_STDERR_TO_DEV_NULL, die_with_parent, NULL, &spawn_child, &error);
  g_assert_no_error (error);
  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_SILENCE |
                                        G_SUBPROCESS_FLAGS_STDERR_SILENCE);
  g_subprocess_launcher_set_child_setup (launcher, die_with_parent, NULL, NULL);
  subprocess_child = g_subprocess_launcher_spawnv (launcher, sleep_argv, &error);
  g_assert_no_error (error);

  assert_exec_done (spawn_child);
  assert_exec_done (atoi (g_subprocess_get_identifier (subprocess_child)));
  g_assert_false (process_has_open (spawn_child, st.st_dev, st.st_ino, &n_fds_spawn));
  g_assert_false (process_has_open (atoi (g_subprocess_get_identifier (subprocess_child)),
                                    st.st_dev, st.st_ino, &n_fds_sub));

  /* Held while the parent holds it... */
  g_assert_cmpint (try_from_other_process (backend, path), ==, 2);
  if (backend == PORTA_BACKEND_FLOCK)
    g_assert_cmpint (run_flock_tool (path), ==, 1);

  /* ...and free once the parent let go, though its children live on. */
  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
  g_assert_cmpint (try_from_other_process (backend, path), ==, 0);
  if (backend == PORTA_BACKEND_FLOCK)
    g_assert_cmpint (run_flock_tool (path), ==, 0);
  g_assert_cmpint (kill (spawn_child, 0), ==, 0);

  g_test_message ("%s: children spawned while the lock was held have %u and %u "
                  "descriptors, none of them the lock file; the lock was free "
                  "for other processes after release while they lived",
                  name, n_fds_spawn, n_fds_sub);

  kill (spawn_child, SIGKILL);
  g_assert_cmpint (waitpid (spawn_child, &status, 0), ==, spawn_child);
  g_spawn_close_pid (spawn_child);
  porta_test_kill (subprocess_child);
}

/* A child made with fork() shares the open file description of a flock or
 * ofd lock; the parent's release unlocks it explicitly, so the child does
 * not go on holding it. */
static void
test_children_fork (gconstpointer data)
{
  PortaBackend backend = GPOINTER_TO_INT (data);
  const char *name = porta_test_backend_name (backend);
  g_autofree char *path = porta_test_path ("parent.lock");
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autoptr(PortaLock) lock = porta_lock_new_full (file, PORTA_LOCK_MODE_EXCLUSIVE,
                                                   backend, 0);
  g_autoptr(GError) error = NULL;
  pid_t child;
  int status;

  g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_no_error (error);

  child = fork ();
  g_assert_cmpint (child, >=, 0);
  if (child == 0)
    {
#ifdef __linux__
      prctl (PR_SET_PDEATHSIG, SIGKILL);
#endif
      /* Only async-signal-safe calls in the child of a threaded process. */
      alarm (120);
      for (;;)
        pause ();
    }

  g_assert_cmpint (try_from_other_process (backend, path), ==, 2);
  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
  g_assert_cmpint (try_from_other_process (backend, path), ==, 0);
  if (backend == PORTA_BACKEND_FLOCK)
    g_assert_cmpint (run_flock_tool (path), ==, 0);
  g_assert_cmpint (kill (child, 0), ==, 0);
  g_test_message ("%s: released while a forked child (pid %d) lived on: the lock "
                  "was free for other processes", name, (int) child);

  kill (child, SIGKILL);
  g_assert_cmpint (waitpid (child, &status, 0), ==, child);
}

int
main (int   argc,
      char *argv[])
{
  static CrashCase cases[G_N_ELEMENTS (all_backends) * N_WAIT_KINDS];
  guint n = 0;

  porta_test_init (&argc, &argv);

  for (guint b = 0; b < G_N_ELEMENTS (all_backends); b++)
    {
      const char *name = porta_test_backend_name (all_backends[b]);
      g_autofree char *spawn_path = g_strdup_printf ("/stress/children/spawn/%s", name);
      g_autofree char *fork_path = g_strdup_printf ("/stress/children/fork/%s", name);

      for (guint k = 0; k < N_WAIT_KINDS; k++)
        {
          g_autofree char *p = g_strdup_printf ("/stress/crash/%s/%s", name,
                                                wait_kind_names[k]);

          cases[n] = (CrashCase) { all_backends[b], k };
          g_test_add_data_func (p, &cases[n++], test_crash);
        }
      g_test_add_data_func (spawn_path, GINT_TO_POINTER (all_backends[b]),
                            test_children_spawn);
      g_test_add_data_func (fork_path, GINT_TO_POINTER (all_backends[b]),
                            test_children_fork);
    }

  return g_test_run ();
}
