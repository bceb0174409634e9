/* test-lock.c: PortaLock between processes, threads and main loops
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Most tests run once per backend (/lock/flock/..., /lock/ofd/...,
 * /lock/posix/...). The other process is porta-test-holder, spawned with
 * the same backend: it says "locked" when it holds the lock and lets go
 * when it reads a line or end-of-file on stdin.
 */

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include <glib/gstdio.h>
#include <portalock/portalock.h>

#ifdef G_OS_WIN32
# include <windows.h>
#else
# include <fcntl.h>
# include <grp.h>
# include <unistd.h>
#endif

#include "porta-test-utils.h"

#ifndef HOLDER_PATH
# error "HOLDER_PATH must be defined to the path of porta-test-holder"
#endif

#define NOBODY_UID 65534
#define NOBODY_GID 65534

/* Generous, so that a loaded 2-core machine does not make them flaky. */
#define SLACK_MS 2000
#define EARLY_MS 5
#define HOLDER_WAIT_MS 10000

/* ---------------------------------------------------------------------- */
/* Helpers                                                                 */

static PortaBackend
test_backend (gconstpointer data)
{
  return (PortaBackend) GPOINTER_TO_INT (data);
}

static PortaLock *
new_lock (const char     *path,
          PortaLockMode   mode,
          PortaBackend    backend,
          PortaLockFlags  flags)
{
  g_autoptr(GFile) file = g_file_new_for_path (path);

  return porta_lock_new_full (file, mode, backend, flags);
}

static gint64
elapsed_ms (gint64 start_us)
{
  return (g_get_monotonic_time () - start_us) / 1000;
}

static void
assert_message_mentions (const GError *error,
                         const char   *text)
{
  g_assert_nonnull (error);
  if (strstr (error->message, text) == NULL)
    g_error ("error message “%s” does not mention “%s”", error->message, text);
}

static void
write_file (const char *path,
            const char *contents,
            gsize       length)
{
  g_autoptr(GError) error = NULL;

  g_file_set_contents (path, contents, length, &error);
  g_assert_no_error (error);
}

static void
assert_file_contents (const char *path,
                      const char *expected,
                      gsize       expected_length)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *contents = NULL;
  gsize length = 0;

  g_file_get_contents (path, &contents, &length, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (contents, length, expected, expected_length);
}

typedef enum
{
  HOLD_EXCLUSIVE         = 0,
  HOLD_SHARED            = 1 << 0,
  HOLD_FOLLOW_SYMLINKS   = 1 << 1,
  HOLD_DELETE_ON_RELEASE = 1 << 2,
} HoldOptions;

static PortaTestChild *
holder_spawn (PortaBackend  backend,
              HoldOptions   options,
              int           timeout_ms,
              const char   *path)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);

  g_ptr_array_add (argv, g_strdup (HOLDER_PATH));
  g_ptr_array_add (argv, g_strdup_printf ("--backend=%s", porta_test_backend_name (backend)));
  g_ptr_array_add (argv, g_strdup_printf ("--timeout-ms=%d", timeout_ms));
  if (options & HOLD_SHARED)
    g_ptr_array_add (argv, g_strdup ("--shared"));
  if (options & HOLD_FOLLOW_SYMLINKS)
    g_ptr_array_add (argv, g_strdup ("--follow-symlinks"));
  if (options & HOLD_DELETE_ON_RELEASE)
    g_ptr_array_add (argv, g_strdup ("--delete-on-release"));
  g_ptr_array_add (argv, g_strdup (path));
  g_ptr_array_add (argv, NULL);

  return porta_test_child_spawnv ((const char * const *) argv->pdata);
}

/* Another process takes the lock and holds it until porta_test_child_release(). */
static PortaTestChild *
holder_lock (PortaBackend  backend,
             HoldOptions   options,
             const char   *path)
{
  PortaTestChild *holder = holder_spawn (backend, options,
                                         (int) porta_test_scale_ms (HOLDER_WAIT_MS),
                                         path);

  porta_test_child_expect_line (holder, "locked");
  return holder;
}

/* Another process tries once and must find the lock taken. */
static void
assert_other_process_blocked (PortaBackend  backend,
                              HoldOptions   options,
                              const char   *path)
{
  g_autoptr(PortaTestChild) holder = holder_spawn (backend, options, 0, path);
  g_autofree char *err_text = NULL;
  int status = porta_test_child_wait (holder, &err_text);

  if (status != 2)
    g_error ("another process got the %s lock on %s that it should not get "
             "(exit status %d, stderr: %s)",
             (options & HOLD_SHARED) ? "shared" : "exclusive", path, status, err_text);
  g_assert_nonnull (strstr (err_text, path));
}

/* Another process tries once and must get the lock. */
static void
assert_other_process_gets (PortaBackend  backend,
                           HoldOptions   options,
                           const char   *path)
{
  g_autoptr(PortaTestChild) holder = holder_spawn (backend, options, 0, path);

  porta_test_child_expect_line (holder, "locked");
  porta_test_child_release (holder);
}

/* Another process waits at most @timeout_ms and must get the lock. */
static void
assert_other_process_gets_within (PortaBackend  backend,
                                  HoldOptions   options,
                                  int           timeout_ms,
                                  const char   *path)
{
  g_autoptr(PortaTestChild) holder = holder_spawn (backend, options, timeout_ms, path);

  porta_test_child_expect_line (holder, "locked");
  porta_test_child_release (holder);
}

static void
assert_try_blocked (PortaLock  *lock,
                    const char *path)
{
  g_autoptr(GError) error = NULL;

  g_assert_false (porta_lock_try_acquire (lock, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  assert_message_mentions (error, path);
  g_assert_false (porta_lock_get_held (lock));
}

static void
assert_try_gets (PortaLock *lock)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (porta_lock_try_acquire (lock, &error));
  g_assert_no_error (error);
  g_assert_true (porta_lock_get_held (lock));
}

static void
assert_release (PortaLock *lock)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
  g_assert_false (porta_lock_get_held (lock));
}

#ifdef G_OS_WIN32
/* Windows cannot list a process's handles; but a file can be opened with
 * no sharing at all only while no handle at all is open on it: 0 then, 1
 * for "one or more". */
static guint
count_fds_on (const char *path)
{
  g_autofree wchar_t *wpath = g_utf8_to_utf16 (path, -1, NULL, NULL, NULL);
  HANDLE handle = CreateFileW (wpath, GENERIC_READ, 0, NULL, OPEN_EXISTING, 0, NULL);

  if (handle == INVALID_HANDLE_VALUE)
    {
      g_assert_cmpuint (GetLastError (), ==, ERROR_SHARING_VIOLATION);
      return 1;
    }
  CloseHandle (handle);
  return 0;
}
#else
/* Counts this process's descriptors that are open on @path. */
static guint
count_fds_on (const char *path)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GDir) dir = g_dir_open ("/proc/self/fd", 0, &error);
  g_autofree char *real = realpath (path, NULL);
  const char *name;
  guint count = 0;

  g_assert_no_error (error);
  if (real == NULL)
    return 0;

  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *link_path = g_build_filename ("/proc/self/fd", name, NULL);
      g_autofree char *target = g_file_read_link (link_path, NULL);

      if (g_strcmp0 (target, real) == 0)
        count++;
    }

  return count;
}
#endif

typedef struct
{
  guint          delay_ms;
  GCancellable  *cancellable;
  PortaTestChild *holder;
} DelayedAction;

static gpointer
cancel_later_thread (gpointer user_data)
{
  DelayedAction *action = user_data;

  g_usleep (action->delay_ms * 1000);
  g_cancellable_cancel (action->cancellable);
  return NULL;
}

static gpointer
let_holder_go_later_thread (gpointer user_data)
{
  DelayedAction *action = user_data;

  g_usleep (action->delay_ms * 1000);
  porta_test_child_send_line (action->holder);
  return NULL;
}

/* Async results. */
typedef struct
{
  GMainLoop *loop;
  guint      n_calls;
  gboolean   result;
  GError    *error;
  GThread   *thread;
  gint64     finished_at;
  char      *source_name;  /* of the source that called back */
} AsyncResult;

static void
async_result_clear (AsyncResult *data)
{
  g_clear_pointer (&data->loop, g_main_loop_unref);
  g_clear_error (&data->error);
  g_clear_pointer (&data->source_name, g_free);
}

static void
acquire_done_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  AsyncResult *data = user_data;

  data->n_calls++;
  data->thread = g_thread_self ();
  data->finished_at = g_get_monotonic_time ();
  g_free (data->source_name);
  data->source_name = g_strdup (g_source_get_name (g_main_current_source ()));
  g_clear_error (&data->error);
  data->result = porta_lock_acquire_finish (PORTA_LOCK (source), result, &data->error);
  if (data->loop != NULL)
    g_main_loop_quit (data->loop);
}

static gboolean
async_took_too_long_cb (gpointer user_data)
{
  g_error ("the async acquire did not complete in time");
  return G_SOURCE_REMOVE;
}

/* Runs the main loop until the acquire callback runs once. */
static void
async_result_run (AsyncResult *data)
{
  guint guard = g_timeout_add (porta_test_scale_ms (20000), async_took_too_long_cb, NULL);

  while (data->n_calls == 0)
    g_main_loop_run (data->loop);
  g_source_remove (guard);
}

static gboolean
quit_loop_cb (gpointer user_data)
{
  g_main_loop_quit (user_data);
  return G_SOURCE_REMOVE;
}

/* Keeps the main loop running for @ms, so that a second callback that
 * should not come has the time to come. */
static void
run_loop_for (GMainLoop *loop,
              guint      ms)
{
  g_timeout_add (ms, quit_loop_cb, loop);
  g_main_loop_run (loop);
}

static gboolean
send_line_cb (gpointer user_data)
{
  porta_test_child_send_line (user_data);
  return G_SOURCE_REMOVE;
}

static gboolean
cancel_cb (gpointer user_data)
{
  g_cancellable_cancel (user_data);
  return G_SOURCE_REMOVE;
}

static void
count_notify_cb (GObject    *object,
                 GParamSpec *pspec,
                 gpointer    user_data)
{
  guint *count = user_data;

  g_assert_cmpstr (g_param_spec_get_name (pspec), ==, "held");
  (*count)++;
}

/* ---------------------------------------------------------------------- */
/* Between processes                                                       */

static void
test_exclusive_vs_exclusive (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("ex-ex.lock");
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaTestChild) holder = NULL;

  /* They hold, we are refused. */
  holder = holder_lock (backend, HOLD_EXCLUSIVE, path);
  assert_try_blocked (lock, path);
  porta_test_child_release (holder);
  assert_try_gets (lock);

  /* We hold, they are refused. */
  assert_other_process_blocked (backend, HOLD_EXCLUSIVE, path);
  assert_release (lock);
  assert_other_process_gets (backend, HOLD_EXCLUSIVE, path);
}

static void
test_shared_vs_shared (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("sh-sh.lock");
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_SHARED, backend, 0);
  g_autoptr(PortaTestChild) holder = NULL;
  g_autoptr(PortaTestChild) holder2 = NULL;

  holder = holder_lock (backend, HOLD_SHARED, path);
  assert_try_gets (lock);
  /* A third shared holder in yet another process joins them. */
  holder2 = holder_spawn (backend, HOLD_SHARED, 0, path);
  porta_test_child_expect_line (holder2, "locked");
  porta_test_child_release (holder2);
  porta_test_child_release (holder);
  assert_release (lock);
}

static void
test_shared_blocks_exclusive (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("sh-ex.lock");
  g_autoptr(PortaLock) exclusive = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaLock) shared = new_lock (path, PORTA_LOCK_MODE_SHARED, backend, 0);
  g_autoptr(PortaTestChild) holder = NULL;

  /* They hold shared: our exclusive is refused. */
  holder = holder_lock (backend, HOLD_SHARED, path);
  assert_try_blocked (exclusive, path);
  porta_test_child_release (holder);
  assert_try_gets (exclusive);
  assert_release (exclusive);

  /* We hold shared: their exclusive is refused, their shared is not. */
  assert_try_gets (shared);
  assert_other_process_blocked (backend, HOLD_EXCLUSIVE, path);
  assert_other_process_gets (backend, HOLD_SHARED, path);
  assert_release (shared);
  assert_other_process_gets (backend, HOLD_EXCLUSIVE, path);
}

static void
test_exclusive_blocks_shared (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("ex-sh.lock");
  g_autoptr(PortaLock) exclusive = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaLock) shared = new_lock (path, PORTA_LOCK_MODE_SHARED, backend, 0);
  g_autoptr(PortaTestChild) holder = NULL;

  /* They hold exclusive: our shared is refused. */
  holder = holder_lock (backend, HOLD_EXCLUSIVE, path);
  assert_try_blocked (shared, path);
  porta_test_child_release (holder);
  assert_try_gets (shared);
  assert_release (shared);

  /* We hold exclusive: their shared is refused. */
  assert_try_gets (exclusive);
  assert_other_process_blocked (backend, HOLD_SHARED, path);
  assert_release (exclusive);
  assert_other_process_gets (backend, HOLD_SHARED, path);
}

static void
test_try_once (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("try.lock");
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaTestChild) holder = NULL;
  g_autoptr(GError) error = NULL;
  gint64 start;

  /* Free: timeout 0 gets it at once. */
  g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_no_error (error);
  assert_release (lock);

  holder = holder_lock (backend, HOLD_EXCLUSIVE, path);

  /* Taken: both ways of trying once fail at once, without waiting. */
  start = g_get_monotonic_time ();
  g_assert_false (porta_lock_try_acquire (lock, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_clear_error (&error);
  g_assert_false (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  assert_message_mentions (error, path);
  g_clear_error (&error);
  g_assert_cmpint (elapsed_ms (start), <=, porta_test_scale_ms (SLACK_MS));
  g_assert_false (porta_lock_get_held (lock));

  porta_test_child_release (holder);
  assert_try_gets (lock);
  assert_release (lock);
}

static void
test_acquire_timeout (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("timeout.lock");
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaTestChild) holder = NULL;
  g_autoptr(GError) error = NULL;
  const int timeout_ms = 300;
  gint64 start, took;

  if (porta_test_skip_ofd_wait_under_valgrind (backend))
    return;

  holder = holder_lock (backend, HOLD_EXCLUSIVE, path);

  start = g_get_monotonic_time ();
  g_assert_false (porta_lock_acquire (lock, timeout_ms, NULL, &error));
  took = elapsed_ms (start);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_test_message ("timed out after %" G_GINT64_FORMAT " ms", took);
  g_assert_cmpint (took, >=, timeout_ms - EARLY_MS);
  g_assert_cmpint (took, <=, timeout_ms + porta_test_scale_ms (SLACK_MS));
  g_assert_false (porta_lock_get_held (lock));

  /* The wait we gave up must not keep the lock from others. */
  porta_test_child_release (holder);
  assert_other_process_gets_within (backend, HOLD_EXCLUSIVE,
                                    (int) porta_test_scale_ms (SLACK_MS), path);
}

/* A timed or endless wait that the holder ends. */
static void
wait_for_holder_to_let_go (PortaBackend backend,
                           int          timeout_ms,
                           const char  *name)
{
  g_autofree char *path = porta_test_path (name);
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaTestChild) holder = NULL;
  g_autoptr(GError) error = NULL;
  DelayedAction action = { 200, NULL, NULL };
  GThread *thread;
  gint64 start, took;

  if (porta_test_skip_ofd_wait_under_valgrind (backend))
    return;

  holder = holder_lock (backend, HOLD_EXCLUSIVE, path);
  action.holder = holder;

  start = g_get_monotonic_time ();
  thread = g_thread_new ("let-go", let_holder_go_later_thread, &action);
  g_assert_true (porta_lock_acquire (lock, timeout_ms, NULL, &error));
  took = elapsed_ms (start);
  g_assert_no_error (error);
  g_thread_join (thread);
  g_test_message ("got the lock after %" G_GINT64_FORMAT " ms", took);
  g_assert_cmpint (took, >=, action.delay_ms - EARLY_MS);
  g_assert_true (porta_lock_get_held (lock));

  porta_test_child_expect_line (holder, "released");
  g_assert_cmpint (porta_test_child_wait (holder, NULL), ==, 0);

  assert_other_process_blocked (backend, HOLD_EXCLUSIVE, path);
  assert_release (lock);
}

static void
test_acquire_blocking (gconstpointer data)
{
  wait_for_holder_to_let_go (test_backend (data), -1, "blocking.lock");
}

static void
test_acquire_timeout_succeeds (gconstpointer data)
{
  wait_for_holder_to_let_go (test_backend (data),
                             (int) porta_test_scale_ms (10000),
                             "timeout-ok.lock");
}

static void
test_acquire_cancel_from_thread (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("cancel.lock");
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaTestChild) holder = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;
  DelayedAction action = { 100, NULL, NULL };
  GThread *thread;
  gint64 start, took;

  if (porta_test_skip_ofd_wait_under_valgrind (backend))
    return;

  holder = holder_lock (backend, HOLD_EXCLUSIVE, path);
  action.cancellable = cancellable;

  start = g_get_monotonic_time ();
  thread = g_thread_new ("cancel", cancel_later_thread, &action);
  g_assert_false (porta_lock_acquire (lock, -1, cancellable, &error));
  took = elapsed_ms (start);
  g_thread_join (thread);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_test_message ("cancelled after %" G_GINT64_FORMAT " ms", took);
  g_assert_cmpint (took, >=, action.delay_ms - EARLY_MS);
  g_assert_cmpint (took, <=, action.delay_ms + porta_test_scale_ms (SLACK_MS));
  g_assert_false (porta_lock_get_held (lock));

  /* The cancelled wait must not keep the lock from others. */
  porta_test_child_release (holder);
  assert_other_process_gets_within (backend, HOLD_EXCLUSIVE,
                                    (int) porta_test_scale_ms (SLACK_MS), path);

  /* A cancellable cancelled beforehand fails the call even on a free
   * lock, as everywhere in GIO. */
  g_clear_error (&error);
  g_assert_false (porta_lock_acquire (lock, -1, cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_false (porta_lock_get_held (lock));
  g_clear_error (&error);

  /* And the object can still be used. */
  g_assert_true (porta_lock_acquire (lock, (int) porta_test_scale_ms (SLACK_MS), NULL, &error));
  g_assert_no_error (error);
  assert_release (lock);
}

/* A wait must leave nothing behind that would cut the thread's next
 * blocking call short: no timer still armed, no signal still coming
 * (portalock's signal has no SA_RESTART, so nanosleep() would fail with
 * EINTR). The kernel delivers a signal sent to the thread before the wait
 * ended at the wait's last system call; valgrind holds it until the
 * thread next blocks, so the check means nothing there. */
static void
assert_nothing_interrupts (void)
{
#ifdef G_OS_UNIX
  struct timespec ts = { 0, 3 * 1000 * 1000 };

  if (g_getenv ("PORTA_TEST_VALGRIND") != NULL)
    return;
  if (nanosleep (&ts, NULL) != 0)
    g_error ("the thread was interrupted after its wait had ended: %s", g_strerror (errno));
#endif
}

/* A timed wait tries the lock without blocking in the last moments before
 * its deadline, and gives up only at the deadline: never before it, sync
 * or async, however short the timeout. */
static void
test_timeout_never_early (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("never-early.lock");
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaTestChild) holder = NULL;

  if (porta_test_skip_ofd_wait_under_valgrind (backend))
    return;

  holder = holder_lock (backend, HOLD_EXCLUSIVE, path);
  for (int i = 0; i < 20; i++)
    {
      g_autoptr(GError) error = NULL;
      int timeout_ms = 1 + i % 4;
      gint64 start = g_get_monotonic_time ();

      g_assert_false (porta_lock_acquire (lock, timeout_ms, NULL, &error));
      g_assert_cmpint (g_get_monotonic_time () - start, >=, timeout_ms * 1000);
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
      g_assert_false (porta_lock_get_held (lock));
      assert_nothing_interrupts ();
    }
  for (int i = 0; i < 10; i++)
    {
      AsyncResult result = { NULL, };
      int timeout_ms = 1 + i % 4;
      gint64 start;

      result.loop = g_main_loop_new (NULL, FALSE);
      start = g_get_monotonic_time ();
      porta_lock_acquire_async (lock, timeout_ms, G_PRIORITY_DEFAULT, NULL, acquire_done_cb,
                                &result);
      async_result_run (&result);
      g_assert_cmpint (result.finished_at - start, >=, timeout_ms * 1000);
      g_assert_error (result.error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
      g_assert_false (porta_lock_get_held (lock));
      async_result_clear (&result);
    }
  porta_test_child_release (holder);
}

typedef struct
{
  PortaTestChild *holder;
  GCancellable   *cancellable;
  int             offset_us;    /* of the cancellation from the release */
} RaceAction;

static void
spin_us (int us)
{
  gint64 until = g_get_monotonic_time () + us;

  while (g_get_monotonic_time () < until)
    ;
}

static gpointer
release_and_cancel_thread (gpointer user_data)
{
  RaceAction *race = user_data;

  g_usleep (5000);
  if (race->offset_us < 0)
    {
      g_cancellable_cancel (race->cancellable);
      spin_us (-race->offset_us);
      porta_test_child_send_line (race->holder);
    }
  else
    {
      porta_test_child_send_line (race->holder);
      spin_us (race->offset_us);
      g_cancellable_cancel (race->cancellable);
    }
  return NULL;
}

/* Cancellations that land around the moment the holder lets go: before
 * the kernel grants the lock, while it does, or after. Each wait ends one
 * way only (held, or cancelled and not held) and leaves nothing behind
 * that interrupts the thread afterwards. */
static void
test_cancel_race (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("cancel-race.lock");
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  guint n_held = 0, n_cancelled = 0;

  if (porta_test_skip_ofd_wait_under_valgrind (backend))
    return;

  for (int i = 0; i < 16; i++)
    {
      g_autoptr(PortaTestChild) holder = holder_lock (backend, HOLD_EXCLUSIVE, path);
      g_autoptr(GCancellable) cancellable = g_cancellable_new ();
      g_autoptr(GError) error = NULL;
      RaceAction race = { holder, cancellable, (i - 4) * 80 };
      GThread *thread = g_thread_new ("race", release_and_cancel_thread, &race);
      gboolean held;

      held = porta_lock_acquire (lock, i % 2 ? -1 : (int) porta_test_scale_ms (10000),
                                 cancellable, &error);
      g_thread_join (thread);
      g_assert_true (held == porta_lock_get_held (lock));
      if (held)
        {
          g_assert_no_error (error);
          n_held++;
          assert_release (lock);
        }
      else
        {
          g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
          n_cancelled++;
        }
      assert_nothing_interrupts ();
      porta_test_child_expect_line (holder, "released");
      g_assert_cmpint (porta_test_child_wait (holder, NULL), ==, 0);
    }
  /* The same, async: the callback tells the wait's own result, even when
   * it runs while the waiter thread is still ending the wait. */
  for (int i = 0; i < 8; i++)
    {
      g_autoptr(PortaTestChild) holder = holder_lock (backend, HOLD_EXCLUSIVE, path);
      g_autoptr(GCancellable) cancellable = g_cancellable_new ();
      AsyncResult result = { NULL, };
      RaceAction race = { holder, cancellable, (i - 2) * 160 };
      GThread *thread;

      result.loop = g_main_loop_new (NULL, FALSE);
      porta_lock_acquire_async (lock, i % 2 ? -1 : (int) porta_test_scale_ms (10000),
                                G_PRIORITY_DEFAULT, cancellable, acquire_done_cb, &result);
      thread = g_thread_new ("race", release_and_cancel_thread, &race);
      async_result_run (&result);
      g_thread_join (thread);
      g_assert_true (result.result == porta_lock_get_held (lock));
      porta_test_child_expect_line (holder, "released");
      g_assert_cmpint (porta_test_child_wait (holder, NULL), ==, 0);
      if (result.result)
        {
          g_assert_no_error (result.error);
          n_held++;
          assert_other_process_blocked (backend, HOLD_EXCLUSIVE, path);
          assert_release (lock);
        }
      else
        {
          g_assert_error (result.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
          n_cancelled++;
        }
      async_result_clear (&result);
    }
  g_test_message ("%u waits held the lock, %u were cancelled", n_held, n_cancelled);
  g_assert_cmpuint (n_held + n_cancelled, ==, 24);
}

/* ---------------------------------------------------------------------- */
/* Async                                                                   */

static void
test_async_uncontended (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("async-free.lock");
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  AsyncResult result = { NULL, };

  result.loop = g_main_loop_new (NULL, FALSE);
  porta_lock_acquire_async (lock, -1, G_PRIORITY_DEFAULT, NULL, acquire_done_cb, &result);
  /* GIO never calls back before the _async call returns. */
  g_assert_cmpuint (result.n_calls, ==, 0);
  async_result_run (&result);
  g_assert_no_error (result.error);
  g_assert_true (result.result);
  g_assert_true (result.thread == g_thread_self ());
  g_assert_true (porta_lock_get_held (lock));

  run_loop_for (result.loop, 50);
  g_assert_cmpuint (result.n_calls, ==, 1);

  assert_other_process_blocked (backend, HOLD_EXCLUSIVE, path);
  assert_release (lock);
  async_result_clear (&result);
}

static void
test_async_acquire (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("async.lock");
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaTestChild) holder = NULL;
  AsyncResult result = { NULL, };
  guint n_notify = 0;
  gint64 start;

  if (porta_test_skip_ofd_wait_under_valgrind (backend))
    return;

  holder = holder_lock (backend, HOLD_EXCLUSIVE, path);
  g_signal_connect (lock, "notify::held", G_CALLBACK (count_notify_cb), &n_notify);

  result.loop = g_main_loop_new (NULL, FALSE);
  start = g_get_monotonic_time ();
  porta_lock_acquire_async (lock, -1, G_PRIORITY_DEFAULT, NULL, acquire_done_cb, &result);
  g_timeout_add (200, send_line_cb, holder);
  async_result_run (&result);

  g_assert_no_error (result.error);
  g_assert_true (result.result);
  g_assert_true (result.thread == g_thread_self ());
  g_assert_cmpint ((result.finished_at - start) / 1000, >=, 200 - EARLY_MS);
  g_assert_true (porta_lock_get_held (lock));
  g_assert_cmpuint (n_notify, ==, 1);

  porta_test_child_expect_line (holder, "released");
  g_assert_cmpint (porta_test_child_wait (holder, NULL), ==, 0);

  run_loop_for (result.loop, 100);
  g_assert_cmpuint (result.n_calls, ==, 1);

  assert_other_process_blocked (backend, HOLD_EXCLUSIVE, path);
  assert_release (lock);
  g_assert_cmpuint (n_notify, ==, 2);
  async_result_clear (&result);
}

static void
test_async_timeout (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("async-timeout.lock");
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaTestChild) holder = NULL;
  AsyncResult result = { NULL, };
  const int timeout_ms = 300;
  guint n_notify = 0;
  gint64 start, took;

  if (porta_test_skip_ofd_wait_under_valgrind (backend))
    return;

  holder = holder_lock (backend, HOLD_EXCLUSIVE, path);
  g_signal_connect (lock, "notify::held", G_CALLBACK (count_notify_cb), &n_notify);

  result.loop = g_main_loop_new (NULL, FALSE);
  start = g_get_monotonic_time ();
  porta_lock_acquire_async (lock, timeout_ms, G_PRIORITY_DEFAULT, NULL, acquire_done_cb, &result);
  async_result_run (&result);
  took = (result.finished_at - start) / 1000;

  g_assert_error (result.error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_assert_false (result.result);
  g_test_message ("timed out after %" G_GINT64_FORMAT " ms", took);
  g_assert_cmpint (took, >=, timeout_ms - EARLY_MS);
  g_assert_cmpint (took, <=, timeout_ms + porta_test_scale_ms (SLACK_MS));
  g_assert_false (porta_lock_get_held (lock));

  /* Exactly once, even when the holder lets go afterwards. */
  porta_test_child_release (holder);
  run_loop_for (result.loop, 200);
  g_assert_cmpuint (result.n_calls, ==, 1);
  g_assert_false (porta_lock_get_held (lock));
  g_assert_cmpuint (n_notify, ==, 0);

  assert_other_process_gets_within (backend, HOLD_EXCLUSIVE,
                                    (int) porta_test_scale_ms (SLACK_MS), path);
  async_result_clear (&result);
}

static void
test_async_cancel (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("async-cancel.lock");
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaTestChild) holder = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  AsyncResult result = { NULL, };
  gint64 start, took;

  if (porta_test_skip_ofd_wait_under_valgrind (backend))
    return;

  holder = holder_lock (backend, HOLD_EXCLUSIVE, path);

  result.loop = g_main_loop_new (NULL, FALSE);
  start = g_get_monotonic_time ();
  porta_lock_acquire_async (lock, -1, G_PRIORITY_DEFAULT, cancellable, acquire_done_cb, &result);
  g_timeout_add (100, cancel_cb, cancellable);
  async_result_run (&result);
  took = (result.finished_at - start) / 1000;

  g_assert_error (result.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_false (result.result);
  /* From the dispatch that ended the wait, not from the idle source,
   * named after the task, by which GLib puts off by one main loop
   * iteration the callback of a task whose cancellable was cancelled. */
  g_assert_cmpstr (result.source_name, !=, "[portalock] acquire");
  g_test_message ("cancelled after %" G_GINT64_FORMAT " ms", took);
  g_assert_cmpint (took, >=, 100 - EARLY_MS);
  g_assert_cmpint (took, <=, 100 + porta_test_scale_ms (SLACK_MS));
  g_assert_false (porta_lock_get_held (lock));

  /* Exactly once: cancelling again and letting go change nothing. */
  g_cancellable_cancel (cancellable);
  porta_test_child_release (holder);
  run_loop_for (result.loop, 200);
  g_assert_cmpuint (result.n_calls, ==, 1);
  g_assert_false (porta_lock_get_held (lock));

  assert_other_process_gets_within (backend, HOLD_EXCLUSIVE,
                                    (int) porta_test_scale_ms (SLACK_MS), path);
  async_result_clear (&result);
}

/* One acquisition at a time per PortaLock. */
static void
test_async_pending (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("async-pending.lock");
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaTestChild) holder = NULL;
  g_autoptr(GError) error = NULL;
  AsyncResult first = { NULL, };
  AsyncResult second = { NULL, };

  if (porta_test_skip_ofd_wait_under_valgrind (backend))
    return;

  holder = holder_lock (backend, HOLD_EXCLUSIVE, path);

  first.loop = g_main_loop_new (NULL, FALSE);
  second.loop = g_main_loop_new (NULL, FALSE);
  porta_lock_acquire_async (lock, -1, G_PRIORITY_DEFAULT, NULL, acquire_done_cb, &first);

  g_assert_false (porta_lock_try_acquire (lock, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_PENDING);
  g_clear_error (&error);
  porta_lock_acquire_async (lock, 0, G_PRIORITY_DEFAULT, NULL, acquire_done_cb, &second);
  async_result_run (&second);
  g_assert_error (second.error, G_IO_ERROR, G_IO_ERROR_PENDING);
  g_assert_cmpuint (first.n_calls, ==, 0);
  g_assert_false (porta_lock_get_held (lock));

  /* The refusals did not disturb the pending acquisition. */
  porta_test_child_send_line (holder);
  async_result_run (&first);
  g_assert_no_error (first.error);
  g_assert_true (first.result);
  g_assert_true (porta_lock_get_held (lock));
  porta_test_child_expect_line (holder, "released");
  g_assert_cmpint (porta_test_child_wait (holder, NULL), ==, 0);

  run_loop_for (first.loop, 50);
  g_assert_cmpuint (first.n_calls, ==, 1);
  g_assert_cmpuint (second.n_calls, ==, 1);
  assert_release (lock);
  async_result_clear (&first);
  async_result_clear (&second);
}

static gboolean
tick_cb (gpointer user_data)
{
  guint *ticks = user_data;

  (*ticks)++;
  return G_SOURCE_CONTINUE;
}

static void
test_async_main_loop_runs (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("async-loop.lock");
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaTestChild) holder = NULL;
  AsyncResult result = { NULL, };
  guint ticks = 0;
  guint ticker;

  if (porta_test_skip_ofd_wait_under_valgrind (backend))
    return;

  holder = holder_lock (backend, HOLD_EXCLUSIVE, path);

  result.loop = g_main_loop_new (NULL, FALSE);
  ticker = g_timeout_add (10, tick_cb, &ticks);
  porta_lock_acquire_async (lock, 500, G_PRIORITY_DEFAULT, NULL, acquire_done_cb, &result);
  async_result_run (&result);
  g_source_remove (ticker);

  g_assert_error (result.error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  /* About 50 ticks in 500 ms; even a loaded machine manages 10. */
  g_test_message ("%u ticks during the wait", ticks);
  g_assert_cmpuint (ticks, >=, 10);

  porta_test_child_release (holder);
  async_result_clear (&result);
}

typedef struct
{
  PortaLock   *lock;
  AsyncResult  result;
  GThread     *thread;
} ThreadAsync;

static gpointer
acquire_async_in_thread (gpointer user_data)
{
  ThreadAsync *data = user_data;
  GMainContext *context = g_main_context_new ();

  data->thread = g_thread_self ();
  g_main_context_push_thread_default (context);
  data->result.loop = g_main_loop_new (context, FALSE);
  porta_lock_acquire_async (data->lock, (int) porta_test_scale_ms (10000),
                            G_PRIORITY_DEFAULT, NULL, acquire_done_cb, &data->result);
  while (data->result.n_calls == 0)
    g_main_loop_run (data->result.loop);
  g_main_context_pop_thread_default (context);
  g_main_context_unref (context);

  return NULL;
}

static gboolean
callback_ran_cb (gpointer user_data)
{
  gboolean *ran = user_data;

  *ran = TRUE;
  return G_SOURCE_REMOVE;
}

static void
test_async_thread_default_context (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("async-context.lock");
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaTestChild) holder = NULL;
  ThreadAsync thread_data = { NULL, };
  GThread *thread;
  gboolean main_context_idle_ran = FALSE;

  if (porta_test_skip_ofd_wait_under_valgrind (backend))
    return;

  holder = holder_lock (backend, HOLD_EXCLUSIVE, path);
  thread_data.lock = lock;

  thread = g_thread_new ("async", acquire_async_in_thread, &thread_data);
  g_usleep (200 * 1000);
  porta_test_child_send_line (holder);
  g_thread_join (thread);

  g_assert_no_error (thread_data.result.error);
  g_assert_true (thread_data.result.result);
  g_assert_cmpuint (thread_data.result.n_calls, ==, 1);
  /* The callback ran in the thread whose thread-default context was
   * pushed, without the global default context ever being iterated. */
  g_assert_true (thread_data.result.thread == thread_data.thread);
  g_assert_true (porta_lock_get_held (lock));

  porta_test_child_expect_line (holder, "released");
  g_assert_cmpint (porta_test_child_wait (holder, NULL), ==, 0);

  /* Nothing left queued for the main thread's context. */
  g_idle_add (callback_ran_cb, &main_context_idle_ran);
  while (!main_context_idle_ran)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (thread_data.result.n_calls, ==, 1);

  assert_release (lock);
  async_result_clear (&thread_data.result);
}

/* ---------------------------------------------------------------------- */
/* State                                                                   */

static void
test_held_notify (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("held.lock");
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaTestChild) holder = NULL;
  g_autoptr(GError) error = NULL;
  guint n_notify = 0;
  gboolean held = TRUE;

  if (porta_test_skip_ofd_wait_under_valgrind (backend))
    return;

  g_signal_connect (lock, "notify::held", G_CALLBACK (count_notify_cb), &n_notify);
  g_object_get (lock, "held", &held, NULL);
  g_assert_false (held);

  /* A failed attempt changes nothing and says nothing. */
  holder = holder_lock (backend, HOLD_EXCLUSIVE, path);
  assert_try_blocked (lock, path);
  g_assert_false (porta_lock_acquire (lock, 50, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_clear_error (&error);
  g_assert_cmpuint (n_notify, ==, 0);
  porta_test_child_release (holder);

  g_assert_true (porta_lock_acquire (lock, -1, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (n_notify, ==, 1);
  g_object_get (lock, "held", &held, NULL);
  g_assert_true (held);

  /* Acquiring again is refused and notifies nothing. */
  g_assert_false (porta_lock_try_acquire (lock, &error));
  g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_ALREADY_HELD);
  g_clear_error (&error);
  g_assert_cmpuint (n_notify, ==, 1);

  assert_release (lock);
  g_assert_cmpuint (n_notify, ==, 2);
  g_object_get (lock, "held", &held, NULL);
  g_assert_false (held);

  g_assert_false (porta_lock_release (lock, &error));
  g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_HELD);
  g_clear_error (&error);
  g_assert_cmpuint (n_notify, ==, 2);

  /* Another round notifies again, once per change. */
  assert_try_gets (lock);
  assert_release (lock);
  g_assert_cmpuint (n_notify, ==, 4);
}

static void
test_release_not_held (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("not-held.lock");
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(GError) error = NULL;

  g_assert_false (porta_lock_release (lock, &error));
  g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_HELD);
  g_clear_error (&error);

  assert_try_gets (lock);
  assert_release (lock);

  g_assert_false (porta_lock_release (lock, &error));
  g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_HELD);
}

static void
test_acquire_twice (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("twice.lock");
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(GError) error = NULL;
  AsyncResult result = { NULL, };

  assert_try_gets (lock);

  g_assert_false (porta_lock_acquire (lock, -1, NULL, &error));
  g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_ALREADY_HELD);
  g_clear_error (&error);
  g_assert_false (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_ALREADY_HELD);
  g_clear_error (&error);
  g_assert_false (porta_lock_try_acquire (lock, &error));
  g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_ALREADY_HELD);
  g_clear_error (&error);

  result.loop = g_main_loop_new (NULL, FALSE);
  porta_lock_acquire_async (lock, -1, G_PRIORITY_DEFAULT, NULL, acquire_done_cb, &result);
  async_result_run (&result);
  g_assert_error (result.error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_ALREADY_HELD);
  g_assert_false (result.result);

  /* The failed attempts leave the lock held. */
  g_assert_true (porta_lock_get_held (lock));
  assert_other_process_blocked (backend, HOLD_EXCLUSIVE, path);
  assert_release (lock);
  async_result_clear (&result);
}

static void
test_dispose_releases (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("dispose.lock");
  PortaLock *lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);

  g_object_add_weak_pointer (G_OBJECT (lock), (gpointer *) &lock);
  assert_try_gets (lock);
  assert_other_process_blocked (backend, HOLD_EXCLUSIVE, path);

  g_object_unref (lock);
  g_assert_null (lock);

  assert_other_process_gets (backend, HOLD_EXCLUSIVE, path);
  g_assert_true (g_file_test (path, G_FILE_TEST_IS_REGULAR));
}

static void
test_autoptr (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("autoptr.lock");

  {
    g_autoptr(GFile) file = g_file_new_for_path (path);
    g_autoptr(PortaLock) lock = porta_lock_new_full (file, PORTA_LOCK_MODE_EXCLUSIVE,
                                                     backend, PORTA_LOCK_FLAGS_NONE);

    assert_try_gets (lock);
    assert_other_process_blocked (backend, HOLD_EXCLUSIVE, path);
  }

  assert_other_process_gets (backend, HOLD_EXCLUSIVE, path);
}

static void
test_properties (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("props.lock");
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autoptr(PortaLock) lock = porta_lock_new_full (file, PORTA_LOCK_MODE_SHARED, backend,
                                                   PORTA_LOCK_FLAGS_DELETE_ON_RELEASE);
  g_autoptr(GFile) prop_file = NULL;
  PortaLockMode mode = PORTA_LOCK_MODE_EXCLUSIVE;
  PortaBackend prop_backend = PORTA_BACKEND_DEFAULT;
  PortaLockFlags flags = PORTA_LOCK_FLAGS_NONE;
  gboolean held = TRUE;

  g_assert_true (g_file_equal (porta_lock_get_file (lock), file));
  g_assert_cmpint (porta_lock_get_mode (lock), ==, PORTA_LOCK_MODE_SHARED);
  g_assert_cmpint (porta_lock_get_backend (lock), ==, backend);
  g_assert_cmpint (porta_lock_get_flags (lock), ==, PORTA_LOCK_FLAGS_DELETE_ON_RELEASE);
  g_assert_false (porta_lock_get_held (lock));

  g_object_get (lock,
                "file", &prop_file,
                "mode", &mode,
                "backend", &prop_backend,
                "flags", &flags,
                "held", &held,
                NULL);
  g_assert_true (g_file_equal (prop_file, file));
  g_assert_cmpint (mode, ==, PORTA_LOCK_MODE_SHARED);
  g_assert_cmpint (prop_backend, ==, backend);
  g_assert_cmpint (flags, ==, PORTA_LOCK_FLAGS_DELETE_ON_RELEASE);
  g_assert_false (held);
}

/* ---------------------------------------------------------------------- */
/* The file                                                                */

static void
test_content_survives (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("content.lock");
  g_autoptr(PortaLock) exclusive = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaLock) shared = new_lock (path, PORTA_LOCK_MODE_SHARED, backend, 0);
  g_autoptr(PortaTestChild) holder = NULL;
  static const char contents[] = "pid 1234\n\0binary\xff\xfe tail";

  write_file (path, contents, sizeof contents);

  /* Being refused must not touch the file either. */
  holder = holder_lock (backend, HOLD_EXCLUSIVE, path);
  assert_try_blocked (exclusive, path);
  porta_test_child_release (holder);
  assert_file_contents (path, contents, sizeof contents);

  assert_try_gets (exclusive);
  assert_release (exclusive);
  assert_file_contents (path, contents, sizeof contents);

  assert_try_gets (shared);
  assert_release (shared);
  assert_file_contents (path, contents, sizeof contents);
}

#ifndef G_OS_WIN32
/* POSIX permissions: Unix only. */
static void
test_created_with_mode (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("created.lock");
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  mode_t old_umask = umask (022);
  GStatBuf buf;

  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
  assert_try_gets (lock);
  umask (old_umask);

  g_assert_cmpint (g_lstat (path, &buf), ==, 0);
  g_assert_true (S_ISREG (buf.st_mode));
  g_assert_cmpint (buf.st_mode & 07777, ==, 0644);
  g_assert_cmpint (buf.st_size, ==, 0);

  assert_release (lock);
  /* Without DELETE_ON_RELEASE the file stays. */
  g_assert_true (g_file_test (path, G_FILE_TEST_IS_REGULAR));
}

#endif

static void
test_read_only_file (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("read-only.lock");
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_SHARED, backend, 0);
  static const char contents[] = "read only\n";

  write_file (path, contents, strlen (contents));
  g_assert_cmpint (g_chmod (path, 0444), ==, 0);

  assert_try_gets (lock);
  assert_other_process_blocked (backend, HOLD_EXCLUSIVE, path);
  assert_other_process_gets (backend, HOLD_SHARED, path);
  assert_release (lock);
  assert_file_contents (path, contents, strlen (contents));
}

static void
test_stream (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("stream.lock");
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(GIOStream) stream = NULL;
  g_autoptr(GError) error = NULL;
  static const char text[] = "portalock stream\n";
  char buf[sizeof text] = { 0, };
  gsize n = 0;
  guint fds_before;
  GOutputStream *out;
  GInputStream *in;

  g_assert_null (porta_lock_get_stream (lock));
  assert_try_gets (lock);
  fds_before = count_fds_on (path);
  g_assert_cmpuint (fds_before, >=, 1);

  stream = porta_lock_get_stream (lock);
  g_assert_nonnull (stream);
  g_object_ref (stream);
  g_assert_true (G_IS_FILE_IO_STREAM (stream));
  g_assert_true (porta_lock_get_stream (lock) == stream);
  g_assert_false (g_io_stream_is_closed (stream));

  /* Write, seek back, read it again. */
  out = g_io_stream_get_output_stream (stream);
  in = g_io_stream_get_input_stream (stream);
  g_assert_true (g_output_stream_write_all (out, text, strlen (text), &n, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (n, ==, strlen (text));
  g_assert_true (g_output_stream_flush (out, NULL, &error));
  g_assert_no_error (error);

  g_assert_true (g_seekable_can_seek (G_SEEKABLE (stream)));
  g_assert_true (g_seekable_seek (G_SEEKABLE (stream), 0, G_SEEK_SET, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (g_seekable_tell (G_SEEKABLE (stream)), ==, 0);
  g_assert_true (g_input_stream_read_all (in, buf, strlen (text), &n, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (buf, n, text, strlen (text));

  /* Truncate it. */
  g_assert_true (g_seekable_can_truncate (G_SEEKABLE (stream)));
  g_assert_true (g_seekable_truncate (G_SEEKABLE (stream), 9, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_seekable_seek (G_SEEKABLE (stream), 0, G_SEEK_END, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (g_seekable_tell (G_SEEKABLE (stream)), ==, 9);

  /* The stream is the locked file: it stays locked while we use it. */
  assert_other_process_blocked (backend, HOLD_EXCLUSIVE, path);

  assert_release (lock);
  g_assert_null (porta_lock_get_stream (lock));
  assert_file_contents (path, text, 9);

  /* After release the stream is closed and its descriptor gone. */
  g_assert_true (g_io_stream_is_closed (stream));
  g_assert_cmpint (g_input_stream_read (in, buf, 1, NULL, &error), ==, -1);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CLOSED);
  g_clear_error (&error);
  g_assert_cmpint (g_output_stream_write (out, "x", 1, NULL, &error), ==, -1);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CLOSED);
  g_clear_error (&error);
  g_assert_false (g_seekable_seek (G_SEEKABLE (stream), 0, G_SEEK_SET, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CLOSED);
  g_clear_error (&error);
  g_assert_cmpuint (count_fds_on (path), ==, 0);

  assert_other_process_gets (backend, HOLD_EXCLUSIVE, path);
  assert_file_contents (path, text, 9);
}

/* ---------------------------------------------------------------------- */
/* One process, several PortaLocks                                         */

static void
test_same_process (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("same-process.lock");
  g_autoptr(PortaLock) first = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaLock) second = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaLock) shared1 = new_lock (path, PORTA_LOCK_MODE_SHARED, backend, 0);
  g_autoptr(PortaLock) shared2 = new_lock (path, PORTA_LOCK_MODE_SHARED, backend, 0);
  g_autoptr(GError) error = NULL;

  if (porta_test_skip_ofd_wait_under_valgrind (backend))
    return;

  assert_try_gets (first);

  if (backend == PORTA_BACKEND_POSIX)
    {
      /* The kernel cannot keep two owners of one process apart: refused,
       * at once, whatever the timeout. */
      g_assert_false (porta_lock_try_acquire (second, &error));
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_BUSY);
      assert_message_mentions (error, path);
      g_clear_error (&error);
      g_assert_false (porta_lock_acquire (second, (int) porta_test_scale_ms (SLACK_MS), NULL, &error));
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_BUSY);
      g_clear_error (&error);
      g_assert_false (porta_lock_try_acquire (shared1, &error));
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_BUSY);
      g_clear_error (&error);
      g_assert_false (porta_lock_get_held (second));

      /* The refusals did not drop the lock that first holds. */
      g_assert_true (porta_lock_get_held (first));
      assert_other_process_blocked (backend, HOLD_SHARED, path);

      assert_release (first);
      assert_try_gets (second);
      assert_other_process_blocked (backend, HOLD_SHARED, path);
      assert_release (second);
      assert_other_process_gets (backend, HOLD_EXCLUSIVE, path);
      return;
    }

  assert_try_blocked (second, path);
  g_assert_false (porta_lock_acquire (second, 100, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_clear_error (&error);
  assert_try_blocked (shared1, path);
  assert_release (first);

  assert_try_gets (shared1);
  assert_try_gets (shared2);
  assert_try_blocked (first, path);
  assert_release (shared1);
  assert_try_blocked (first, path);
  assert_release (shared2);

  assert_try_gets (second);
  assert_release (second);
}

typedef struct
{
  const char   *path;
  PortaBackend  backend;
  gboolean      result;
  GError       *error;
  gint64        got_at;
  gint         *in_critical;
  guint         iterations;
  int           overlaps;
} ThreadLock;

static gpointer
acquire_in_thread (gpointer user_data)
{
  ThreadLock *data = user_data;
  g_autoptr(PortaLock) lock = new_lock (data->path, PORTA_LOCK_MODE_EXCLUSIVE, data->backend, 0);

  data->result = porta_lock_acquire (lock, -1, NULL, &data->error);
  data->got_at = g_get_monotonic_time ();
  if (data->result)
    data->result = porta_lock_release (lock, &data->error);

  return NULL;
}

static void
test_same_process_threads (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("threads.lock");
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  ThreadLock thread_data = { NULL, };
  GThread *thread;
  gint64 released_at;

  if (porta_test_skip_ofd_wait_under_valgrind (backend))
    return;

  thread_data.path = path;
  thread_data.backend = backend;

  assert_try_gets (lock);
  thread = g_thread_new ("waiter", acquire_in_thread, &thread_data);
  g_usleep (200 * 1000);
  released_at = g_get_monotonic_time ();
  assert_release (lock);
  g_thread_join (thread);

  g_assert_no_error (thread_data.error);
  g_assert_true (thread_data.result);
  g_assert_cmpint (thread_data.got_at, >=, released_at);
}

static gpointer
hammer_thread (gpointer user_data)
{
  ThreadLock *data = user_data;
  g_autoptr(PortaLock) lock = new_lock (data->path, PORTA_LOCK_MODE_EXCLUSIVE, data->backend, 0);
  guint i;

  for (i = 0; i < data->iterations; i++)
    {
      g_autoptr(GError) error = NULL;

      if (!porta_lock_acquire (lock, -1, NULL, &error))
        {
          data->error = g_steal_pointer (&error);
          return NULL;
        }
      if (!g_atomic_int_compare_and_exchange (data->in_critical, 0, 1))
        g_atomic_int_inc (&data->overlaps);
      g_thread_yield ();
      g_atomic_int_set (data->in_critical, 0);
      if (!porta_lock_release (lock, &error))
        {
          data->error = g_steal_pointer (&error);
          return NULL;
        }
    }

  data->result = TRUE;
  return NULL;
}

static void
test_threads_exclude (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("hammer.lock");
  gint in_critical = 0;
  ThreadLock thread_data[4];
  GThread *threads[G_N_ELEMENTS (thread_data)];
  guint i;

  if (porta_test_skip_ofd_wait_under_valgrind (backend))
    return;

  for (i = 0; i < G_N_ELEMENTS (thread_data); i++)
    {
      memset (&thread_data[i], 0, sizeof thread_data[i]);
      thread_data[i].path = path;
      thread_data[i].backend = backend;
      thread_data[i].in_critical = &in_critical;
      thread_data[i].iterations = 100;
      threads[i] = g_thread_new ("hammer", hammer_thread, &thread_data[i]);
    }

  for (i = 0; i < G_N_ELEMENTS (thread_data); i++)
    {
      g_thread_join (threads[i]);
      g_assert_no_error (thread_data[i].error);
      g_assert_true (thread_data[i].result);
      g_assert_cmpint (thread_data[i].overlaps, ==, 0);
    }
}

/* ---------------------------------------------------------------------- */
/* Bad input                                                               */

static void
test_bad_not_native (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autoptr(GFile) file = g_file_new_for_uri ("http://example.com/x.lock");
  g_autoptr(PortaLock) lock = porta_lock_new_full (file, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(GError) error = NULL;

  g_assert_false (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
  assert_message_mentions (error, "example.com/x.lock");
  g_assert_false (porta_lock_get_held (lock));
  g_assert_null (porta_lock_get_stream (lock));
}

static void
test_bad_missing_parent (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *dir = porta_test_path ("missing");
  g_autofree char *path = g_build_filename (dir, "x.lock", NULL);
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(GError) error = NULL;

  g_assert_false (porta_lock_acquire (lock, -1, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  assert_message_mentions (error, path);
  g_assert_false (g_file_test (dir, G_FILE_TEST_EXISTS));
}

static void
test_bad_directory (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("a-directory");
  g_autoptr(PortaLock) exclusive = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaLock) shared = new_lock (path, PORTA_LOCK_MODE_SHARED, backend, 0);
  g_autoptr(GError) error = NULL;

  g_assert_cmpint (g_mkdir (path, 0755), ==, 0);

  g_assert_false (porta_lock_acquire (exclusive, 0, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_IS_DIRECTORY);
  assert_message_mentions (error, path);
  g_clear_error (&error);

  /* A directory opens read-only fine: the check must not rely on open(). */
  g_assert_false (porta_lock_acquire (shared, 0, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_IS_DIRECTORY);
  assert_message_mentions (error, path);
  g_assert_false (porta_lock_get_held (shared));
}

#ifndef G_OS_WIN32
/* FIFOs, symbolic links and POSIX permissions: Unix only. (Windows has
 * symbolic links, but creating one needs a privilege that tests do not
 * have, and Wine maps them to Unix ones.) */

static void
become_unprivileged (void)
{
  if (geteuid () != 0)
    return;

  /* Root ignores file permissions: drop to nobody to meet them. */
  if (setgroups (0, NULL) != 0 || setgid (NOBODY_GID) != 0 || setuid (NOBODY_UID) != 0)
    g_error ("cannot become nobody: %s", g_strerror (errno));
  g_assert_cmpint (geteuid (), ==, NOBODY_UID);
}

/* A folder that an unprivileged child can enter, unlike the per-test
 * folder, which only its owner may enter. */
static char *
make_public_dir (void)
{
  g_autoptr(GError) error = NULL;
  char *dir = g_dir_make_tmp ("portalock-test-XXXXXX", &error);

  g_assert_no_error (error);
  g_assert_cmpint (g_chmod (dir, 0755), ==, 0);
  return dir;
}

static void
assert_fifo_refused (const char    *path,
                     PortaLockMode  mode,
                     PortaBackend   backend,
                     gboolean       permission_too)
{
  g_autoptr(PortaLock) lock = new_lock (path, mode, backend, 0);
  g_autoptr(GError) error = NULL;

  g_assert_false (porta_lock_acquire (lock, -1, NULL, &error));
  g_assert_nonnull (error);
  if (!permission_too || !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED))
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_REGULAR_FILE);
  assert_message_mentions (error, path);
  g_assert_false (porta_lock_get_held (lock));
}

static void
test_bad_fifo (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *dir = NULL;
  g_autofree char *fifo = NULL;
  g_autofree char *read_only_fifo = NULL;

  if (g_test_subprocess ())
    {
      dir = g_strdup (g_getenv ("PORTA_TEST_PUBLIC_DIR"));
      g_assert_nonnull (dir);
      fifo = g_build_filename (dir, "a-fifo", NULL);
      read_only_fifo = g_build_filename (dir, "read-only-fifo", NULL);

      assert_fifo_refused (fifo, PORTA_LOCK_MODE_SHARED, backend, FALSE);
      assert_fifo_refused (fifo, PORTA_LOCK_MODE_EXCLUSIVE, backend, FALSE);

      /* A FIFO that can only be opened for reading: open(O_RDONLY) on it
       * blocks until a writer comes, unless the library takes care. An
       * exclusive lock may also be refused for want of write access. */
      become_unprivileged ();
      assert_fifo_refused (read_only_fifo, PORTA_LOCK_MODE_SHARED, backend, FALSE);
      assert_fifo_refused (read_only_fifo, PORTA_LOCK_MODE_EXCLUSIVE, backend, TRUE);
      return;
    }

  dir = make_public_dir ();
  fifo = g_build_filename (dir, "a-fifo", NULL);
  read_only_fifo = g_build_filename (dir, "read-only-fifo", NULL);
  g_assert_cmpint (mkfifo (fifo, 0644), ==, 0);
  g_assert_cmpint (mkfifo (read_only_fifo, 0644), ==, 0);
  g_assert_cmpint (g_chmod (read_only_fifo, 0444), ==, 0);

  /* If opening hangs, the child is killed and the test fails. */
  g_setenv ("PORTA_TEST_PUBLIC_DIR", dir, TRUE);
  g_test_trap_subprocess (NULL, (guint64) porta_test_scale_ms (20000) * 1000, 0);

  g_assert_cmpint (g_unlink (fifo), ==, 0);
  g_assert_cmpint (g_unlink (read_only_fifo), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);

  g_test_trap_assert_passed ();
}

static void
test_bad_symlink (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *target = porta_test_path ("target.lock");
  g_autofree char *link_path = porta_test_path ("link.lock");
  g_autoptr(PortaLock) exclusive = new_lock (link_path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaLock) shared = new_lock (link_path, PORTA_LOCK_MODE_SHARED, backend, 0);
  g_autoptr(GError) error = NULL;
  static const char contents[] = "target\n";

  write_file (target, contents, strlen (contents));
  g_assert_cmpint (symlink (target, link_path), ==, 0);

  g_assert_false (porta_lock_acquire (exclusive, 0, NULL, &error));
  g_assert_nonnull (error);
  g_assert_true (error->domain == G_IO_ERROR);
  assert_message_mentions (error, link_path);
  assert_message_mentions (error, "symbolic link");
  g_clear_error (&error);

  g_assert_false (porta_lock_acquire (shared, 0, NULL, &error));
  g_assert_nonnull (error);
  g_assert_true (error->domain == G_IO_ERROR);
  assert_message_mentions (error, "symbolic link");

  /* Nothing was locked, nothing was changed. */
  g_assert_false (porta_lock_get_held (exclusive));
  g_assert_true (g_file_test (link_path, G_FILE_TEST_IS_SYMLINK));
  assert_file_contents (target, contents, strlen (contents));
  assert_other_process_gets (backend, HOLD_EXCLUSIVE, target);
}

static void
test_follow_symlink (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *target = porta_test_path ("target.lock");
  g_autofree char *link_path = porta_test_path ("link.lock");
  g_autoptr(PortaLock) lock = new_lock (link_path, PORTA_LOCK_MODE_EXCLUSIVE, backend,
                                        PORTA_LOCK_FLAGS_FOLLOW_SYMLINKS);
  static const char contents[] = "target\n";

  write_file (target, contents, strlen (contents));
  g_assert_cmpint (symlink (target, link_path), ==, 0);

  assert_try_gets (lock);
  /* The target is what is locked. */
  assert_other_process_blocked (backend, HOLD_EXCLUSIVE, target);
  assert_other_process_blocked (backend, HOLD_SHARED | HOLD_FOLLOW_SYMLINKS, link_path);
  assert_release (lock);
  assert_other_process_gets (backend, HOLD_EXCLUSIVE, target);

  g_assert_true (g_file_test (link_path, G_FILE_TEST_IS_SYMLINK));
  assert_file_contents (target, contents, strlen (contents));
}

static void
test_permission_denied (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *dir = NULL;
  g_autofree char *secret = NULL;
  g_autofree char *read_only = NULL;
  g_autofree char *missing = NULL;
  g_autoptr(GError) error = NULL;

  if (g_test_subprocess ())
    {
      g_autoptr(PortaLock) lock = NULL;

      dir = g_strdup (g_getenv ("PORTA_TEST_PUBLIC_DIR"));
      g_assert_nonnull (dir);
      secret = g_build_filename (dir, "secret.lock", NULL);
      read_only = g_build_filename (dir, "read-only.lock", NULL);
      missing = g_build_filename (dir, "missing.lock", NULL);

      become_unprivileged ();

      /* A file we may neither read nor write. */
      lock = new_lock (secret, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
      g_assert_false (porta_lock_acquire (lock, 0, NULL, &error));
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
      assert_message_mentions (error, secret);
      g_clear_error (&error);
      g_clear_object (&lock);

      lock = new_lock (secret, PORTA_LOCK_MODE_SHARED, backend, 0);
      g_assert_false (porta_lock_acquire (lock, 0, NULL, &error));
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
      assert_message_mentions (error, secret);
      g_clear_error (&error);
      g_clear_object (&lock);

      /* A file we may not create. */
      lock = new_lock (missing, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
      g_assert_false (porta_lock_acquire (lock, 0, NULL, &error));
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
      assert_message_mentions (error, missing);
      g_clear_error (&error);
      g_clear_object (&lock);

      /* A file we may only read takes a shared lock. */
      lock = new_lock (read_only, PORTA_LOCK_MODE_SHARED, backend, 0);
      assert_try_gets (lock);
      assert_release (lock);
      return;
    }

  dir = make_public_dir ();
  secret = g_build_filename (dir, "secret.lock", NULL);
  read_only = g_build_filename (dir, "read-only.lock", NULL);
  missing = g_build_filename (dir, "missing.lock", NULL);

  write_file (secret, "secret\n", 7);
  write_file (read_only, "read only\n", 10);
  /* As root the child becomes nobody and meets root's modes; as anyone
   * else the modes themselves keep the owner out. */
  g_assert_cmpint (g_chmod (secret, geteuid () == 0 ? 0600 : 0000), ==, 0);
  g_assert_cmpint (g_chmod (read_only, 0444), ==, 0);
  g_assert_cmpint (g_chmod (dir, 0555), ==, 0);

  g_setenv ("PORTA_TEST_PUBLIC_DIR", dir, TRUE);
  g_test_trap_subprocess (NULL, (guint64) porta_test_scale_ms (20000) * 1000, 0);

  g_assert_cmpint (g_chmod (dir, 0755), ==, 0);
  g_assert_false (g_file_test (missing, G_FILE_TEST_EXISTS));
  g_assert_cmpint (g_unlink (secret), ==, 0);
  g_assert_cmpint (g_unlink (read_only), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);

  g_test_trap_assert_passed ();
}

/* A running program cannot be opened for writing (ETXTBSY), as a script
 * that locks itself cannot be run while it is open for writing: locks
 * that need no write access open it for reading, as for a read-only file. */
static void
test_running_program (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("running-program");
  g_autoptr(GSubprocess) program = NULL;
  g_autoptr(PortaLock) shared = NULL;
  g_autoptr(PortaLock) exclusive = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *contents = NULL;
  gsize length = 0;

  g_assert_true (g_file_get_contents ("/bin/sleep", &contents, &length, &error));
  g_assert_true (g_file_set_contents_full (path, contents, length,
                                           G_FILE_SET_CONTENTS_NONE, 0755, &error));
  program = g_subprocess_new (G_SUBPROCESS_FLAGS_NONE, &error, path, "60", NULL);
  g_assert_no_error (error);
  /* Until the kernel has mapped it, the program is not yet "busy". */
  while (TRUE)
    {
      int fd = g_open (path, O_RDWR, 0);

      if (fd < 0)
        {
          g_assert_cmpint (errno, ==, ETXTBSY);
          break;
        }
      g_close (fd, NULL);
      g_usleep (1000);
    }

  shared = new_lock (path, PORTA_LOCK_MODE_SHARED, backend, 0);
  assert_try_gets (shared);
  /* Only flock() takes an exclusive lock through a read-only descriptor. */
  if (backend == PORTA_BACKEND_FLOCK)
    assert_other_process_blocked (backend, HOLD_EXCLUSIVE, path);
  else
    assert_other_process_gets (backend, HOLD_SHARED, path);
  assert_release (shared);

  exclusive = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  if (backend == PORTA_BACKEND_FLOCK)
    {
      assert_try_gets (exclusive);
      assert_other_process_blocked (backend, HOLD_SHARED, path);
      assert_release (exclusive);
    }
  else
    {
      /* fcntl() write locks need a descriptor open for writing. */
      g_assert_false (porta_lock_try_acquire (exclusive, &error));
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
      assert_message_mentions (error, path);
      g_clear_error (&error);
    }

  g_subprocess_force_exit (program);
  g_assert_true (g_subprocess_wait (program, NULL, &error));
  assert_file_contents (path, contents, length);
}

/* ---------------------------------------------------------------------- */
/* DELETE_ON_RELEASE                                                       */

#endif /* !G_OS_WIN32 */

static void
test_delete_on_release (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("delete.lock");
  g_autoptr(PortaLock) exclusive = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend,
                                             PORTA_LOCK_FLAGS_DELETE_ON_RELEASE);
  g_autoptr(PortaLock) shared = new_lock (path, PORTA_LOCK_MODE_SHARED, backend,
                                          PORTA_LOCK_FLAGS_DELETE_ON_RELEASE);

  /* An exclusive holder deletes the file when it lets go. */
  assert_try_gets (exclusive);
  g_assert_true (g_file_test (path, G_FILE_TEST_IS_REGULAR));
  assert_release (exclusive);
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));

  /* A shared holder never does. */
  assert_try_gets (shared);
  g_assert_true (g_file_test (path, G_FILE_TEST_IS_REGULAR));
  assert_release (shared);
  g_assert_true (g_file_test (path, G_FILE_TEST_IS_REGULAR));

  /* Nor does an exclusive holder in another process without the flag. */
  assert_other_process_gets (backend, HOLD_EXCLUSIVE, path);
  g_assert_true (g_file_test (path, G_FILE_TEST_IS_REGULAR));
  /* With it, it does. */
  assert_other_process_gets (backend, HOLD_EXCLUSIVE | HOLD_DELETE_ON_RELEASE, path);
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
}

/* The holder process @waiter holds the lock on the file at @path, and
 * gives it up: @check, a lock on @path, is kept out until then. */
static void
assert_child_holds (PortaTestChild *waiter,
                    PortaLock      *check,
                    const char     *path)
{
  assert_try_blocked (check, path);
  porta_test_child_release (waiter);
  assert_try_gets (check);
  assert_release (check);
}

static void
test_delete_on_release_waiter (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("delete-waiter.lock");
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend,
                                        PORTA_LOCK_FLAGS_DELETE_ON_RELEASE);
  g_autoptr(PortaLock) check = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaTestChild) waiter = NULL;

  assert_try_gets (lock);
  waiter = holder_spawn (backend, HOLD_EXCLUSIVE,
                         (int) porta_test_scale_ms (HOLDER_WAIT_MS), path);
  /* Give the waiter the time to open the file and block on it. */
  g_usleep (300 * 1000);
  assert_release (lock);

  /* The waiter must end up holding the file that is at the path now, not
   * the deleted one: then nobody else can lock the path. */
  porta_test_child_expect_line (waiter, "locked");
  g_assert_true (g_file_test (path, G_FILE_TEST_IS_REGULAR));
  assert_child_holds (waiter, check, path);
}

#ifndef G_OS_WIN32
/* A holder that renames a new file over the lock file (its last link goes)
 * before releasing: the waiter that had the old file open notices, once it
 * holds it, and locks the new one. */
static void
test_replaced_while_waiting (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *path = porta_test_path ("replaced.lock");
  g_autofree char *fresh = porta_test_path ("replaced.lock.new");
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaLock) check = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaTestChild) waiter = NULL;
  static const char contents[] = "new\n";

  assert_try_gets (lock);
  waiter = holder_spawn (backend, HOLD_EXCLUSIVE,
                         (int) porta_test_scale_ms (HOLDER_WAIT_MS), path);
  g_usleep (300 * 1000);
  write_file (fresh, contents, strlen (contents));
  g_assert_cmpint (g_rename (fresh, path), ==, 0);
  assert_release (lock);

  porta_test_child_expect_line (waiter, "locked");
  assert_file_contents (path, contents, strlen (contents));
  assert_child_holds (waiter, check, path);
}

/* A symbolic link pointed elsewhere while a waiter that follows it waits:
 * the waiter ends up holding the new target, not the old one. */
static void
test_follow_symlink_retargeted (gconstpointer data)
{
  PortaBackend backend = test_backend (data);
  g_autofree char *old_target = porta_test_path ("old-target.lock");
  g_autofree char *new_target = porta_test_path ("new-target.lock");
  g_autofree char *link_path = porta_test_path ("retargeted.lock");
  g_autofree char *new_link = porta_test_path ("retargeted.lock.new");
  g_autoptr(PortaLock) lock = new_lock (link_path, PORTA_LOCK_MODE_EXCLUSIVE, backend,
                                        PORTA_LOCK_FLAGS_FOLLOW_SYMLINKS);
  g_autoptr(PortaLock) old_check = new_lock (old_target, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaLock) new_check = new_lock (new_target, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
  g_autoptr(PortaTestChild) waiter = NULL;

  write_file (old_target, "old\n", 4);
  write_file (new_target, "new\n", 4);
  g_assert_cmpint (symlink (old_target, link_path), ==, 0);

  assert_try_gets (lock);
  waiter = holder_spawn (backend, HOLD_EXCLUSIVE | HOLD_FOLLOW_SYMLINKS,
                         (int) porta_test_scale_ms (HOLDER_WAIT_MS), link_path);
  g_usleep (300 * 1000);
  g_assert_cmpint (symlink (new_target, new_link), ==, 0);
  g_assert_cmpint (g_rename (new_link, link_path), ==, 0);
  assert_release (lock);

  porta_test_child_expect_line (waiter, "locked");
  assert_try_gets (old_check);
  assert_release (old_check);
  assert_child_holds (waiter, new_check, new_target);
}
#endif

#ifdef __linux__
/* The waiter-thread limit is read once per process: the test runs again
 * in a subprocess with PORTALOCK_MAX_WAITER_THREADS=@max. TRUE in that
 * subprocess; in the parent, checks that it passed. */
static gboolean
in_subprocess_with_max_threads (const char *max)
{
  if (g_test_subprocess ())
    return TRUE;
  g_setenv ("PORTALOCK_MAX_WAITER_THREADS", max, TRUE);
  g_test_trap_subprocess (NULL, (guint64) porta_test_scale_ms (30000) * 1000, 0);
  g_unsetenv ("PORTALOCK_MAX_WAITER_THREADS");
  g_test_trap_assert_passed ();
  return FALSE;
}

static void
on_acquired_count (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  guint *n_acquired = user_data;
  g_autoptr(GError) error = NULL;

  g_assert_true (porta_lock_acquire_finish (PORTA_LOCK (source), result, &error));
  g_assert_no_error (error);
  (*n_acquired)++;
}

/* With one waiter thread allowed, a second async wait backs off; when the
 * first wait's thread ends, the second is woken at once to take its place,
 * without waiting for its next back-off retry (up to 100 ms away): a few
 * iterations that do not block are enough. */
static void
test_async_thread_handed_on (void)
{
  g_autofree char *path_a = NULL;
  g_autofree char *path_b = NULL;
  g_autoptr(GMainContext) context = NULL;
  g_autoptr(PortaLock) holder_a = NULL;
  g_autoptr(PortaLock) holder_b = NULL;
  g_autoptr(PortaLock) lock_a = NULL;
  g_autoptr(PortaLock) lock_b = NULL;
  guint n_acquired = 0, threads_idle, threads_one;
  gint64 end;

  if (!in_subprocess_with_max_threads ("1"))
    return;

  path_a = porta_test_path ("handed-on-a.lock");
  path_b = porta_test_path ("handed-on-b.lock");
  context = g_main_context_new ();
  g_main_context_push_thread_default (context);
  holder_a = porta_lock_new_for_path (path_a, PORTA_LOCK_MODE_EXCLUSIVE);
  holder_b = porta_lock_new_for_path (path_b, PORTA_LOCK_MODE_EXCLUSIVE);
  lock_a = porta_lock_new_for_path (path_a, PORTA_LOCK_MODE_EXCLUSIVE);
  lock_b = porta_lock_new_for_path (path_b, PORTA_LOCK_MODE_EXCLUSIVE);
  /* A first wait, so that whatever threads GLib starts for good (its
   * worker) are there before counting. */
  assert_try_gets (holder_a);
  porta_lock_acquire_async (lock_a, -1, G_PRIORITY_DEFAULT, NULL, on_acquired_count, &n_acquired);
  assert_release (holder_a);
  while (n_acquired < 1)
    g_main_context_iteration (context, TRUE);
  assert_release (lock_a);
  n_acquired = 0;

  assert_try_gets (holder_a);
  assert_try_gets (holder_b);
  threads_idle = porta_test_count_entries ("/proc/self/task");

  porta_lock_acquire_async (lock_a, -1, G_PRIORITY_DEFAULT, NULL, on_acquired_count, &n_acquired);
  threads_one = porta_test_count_entries ("/proc/self/task");
  g_assert_cmpuint (threads_one, ==, threads_idle + 1);
  porta_lock_acquire_async (lock_b, -1, G_PRIORITY_DEFAULT, NULL, on_acquired_count, &n_acquired);
  g_assert_cmpuint (porta_test_count_entries ("/proc/self/task"), ==, threads_one);

  /* Let the second wait's back-off grow for a while. */
  end = g_get_monotonic_time () + 300 * 1000;
  while (g_get_monotonic_time () < end)
    g_main_context_iteration (context, FALSE), g_usleep (1000);
  g_assert_cmpuint (n_acquired, ==, 0);

  assert_release (holder_a);
  while (n_acquired < 1)
    g_main_context_iteration (context, TRUE);
  g_assert_true (porta_lock_get_held (lock_a));

  /* The first thread was reaped before its callback; the second wait
   * takes the free slot within iterations that do not wait. */
  for (int i = 0; i < 5; i++)
    g_main_context_iteration (context, FALSE);
  g_assert_cmpuint (porta_test_count_entries ("/proc/self/task"), ==, threads_one);
  g_assert_cmpuint (n_acquired, ==, 1);

  assert_release (holder_b);
  while (n_acquired < 2)
    g_main_context_iteration (context, TRUE);
  g_assert_true (porta_lock_get_held (lock_b));
  assert_release (lock_a);
  assert_release (lock_b);
  g_main_context_pop_thread_default (context);
}

typedef struct
{
  guint n_acquired;
  guint n_cancelled;
  guint n_timed_out;
} BackOffCounts;

static void
on_back_off_done (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  BackOffCounts *counts = user_data;
  g_autoptr(GError) error = NULL;

  if (porta_lock_acquire_finish (PORTA_LOCK (source), result, &error))
    {
      counts->n_acquired++;
      /* The next one gets it in turn. */
      assert_release (PORTA_LOCK (source));
    }
  else if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    counts->n_cancelled++;
  else if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
    counts->n_timed_out++;
  else
    g_assert_no_error (error);
}

/* With no waiter threads, every async wait backs off on the main context,
 * at three priorities, some cancelled and some timing out: each ends
 * exactly once, with its own outcome, and the context is left with nothing
 * to do. */
static void
test_async_back_off_many (void)
{
  const guint n = 30;
  g_autofree char *path = NULL;
  g_autoptr(GMainContext) context = NULL;
  g_autoptr(GCancellable) cancellable = NULL;
  g_autoptr(PortaLock) holder = NULL;
  g_autoptr(GPtrArray) locks = NULL;
  BackOffCounts counts = { 0, 0, 0 };
  guint n_cancellable = 0, n_timed = 0;
  int timeout = 0;
  gint64 end;

  if (!in_subprocess_with_max_threads ("0"))
    return;

  path = porta_test_path ("back-off-many.lock");
  context = g_main_context_new ();
  cancellable = g_cancellable_new ();
  locks = g_ptr_array_new_with_free_func (g_object_unref);
  g_main_context_push_thread_default (context);
  holder = porta_lock_new_for_path (path, PORTA_LOCK_MODE_EXCLUSIVE);
  assert_try_gets (holder);

  for (guint i = 0; i < n; i++)
    {
      static const int priorities[] = { G_PRIORITY_HIGH, G_PRIORITY_DEFAULT, G_PRIORITY_LOW };
      PortaLock *lock = porta_lock_new_for_path (path, PORTA_LOCK_MODE_EXCLUSIVE);
      gboolean cancels = i % 5 == 0, times_out = i % 5 == 1;

      g_ptr_array_add (locks, lock);
      n_cancellable += cancels;
      n_timed += times_out;
      porta_lock_acquire_async (lock, times_out ? 100 : -1, priorities[i % 3],
                                cancels ? cancellable : NULL, on_back_off_done, &counts);
    }

  /* The timed ones time out; the others go on backing off. */
  end = g_get_monotonic_time () + porta_test_scale_ms (400) * (gint64) 1000;
  while (g_get_monotonic_time () < end)
    g_main_context_iteration (context, TRUE);
  g_assert_cmpuint (counts.n_timed_out, ==, n_timed);
  g_assert_cmpuint (counts.n_acquired + counts.n_cancelled, ==, 0);

  g_cancellable_cancel (cancellable);
  while (counts.n_cancelled < n_cancellable)
    g_main_context_iteration (context, TRUE);

  assert_release (holder);
  while (counts.n_acquired < n - n_cancellable - n_timed)
    g_main_context_iteration (context, TRUE);
  g_assert_cmpuint (counts.n_cancelled, ==, n_cancellable);
  g_assert_cmpuint (counts.n_timed_out, ==, n_timed);

  /* Nothing is left to dispatch, and no source waits for a time. */
  while (g_main_context_iteration (context, FALSE))
    ;
  g_assert_true (g_main_context_acquire (context));
  {
    int priority = 0;
    GPollFD fds[4];

    g_main_context_prepare (context, &priority);
    g_main_context_query (context, G_MAXINT, &timeout, fds, G_N_ELEMENTS (fds));
    g_main_context_release (context);
  }
  g_assert_cmpint (timeout, ==, -1);
  g_main_context_pop_thread_default (context);
}
#endif

/* ---------------------------------------------------------------------- */
/* Backend-independent                                                     */

static void
test_default_backend (void)
{
  g_autofree char *path = porta_test_path ("default.lock");
  g_autoptr(PortaLock) lock = porta_lock_new_for_path (path, PORTA_LOCK_MODE_EXCLUSIVE);
  PortaBackend backend = PORTA_BACKEND_DEFAULT;

#ifdef G_OS_WIN32
  const PortaBackend platform_default = PORTA_BACKEND_WIN32;
#else
  const PortaBackend platform_default = PORTA_BACKEND_FLOCK;
#endif

  g_assert_cmpint (porta_lock_get_backend (lock), ==, platform_default);
  g_object_get (lock, "backend", &backend, NULL);
  g_assert_cmpint (backend, ==, platform_default);
  g_assert_cmpint (porta_lock_get_mode (lock), ==, PORTA_LOCK_MODE_EXCLUSIVE);
  g_assert_cmpint (porta_lock_get_flags (lock), ==, PORTA_LOCK_FLAGS_NONE);

  /* It does exclude an explicit holder of the platform's backend. */
  assert_try_gets (lock);
  assert_other_process_blocked (platform_default, HOLD_EXCLUSIVE, path);
  assert_release (lock);
}

static void
test_new_for_gfile (void)
{
  g_autofree char *path = porta_test_path ("new.lock");
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autoptr(PortaLock) lock = porta_lock_new (file, PORTA_LOCK_MODE_SHARED);

  g_assert_true (g_file_equal (porta_lock_get_file (lock), file));
  g_assert_cmpint (porta_lock_get_mode (lock), ==, PORTA_LOCK_MODE_SHARED);
#ifdef G_OS_WIN32
  g_assert_cmpint (porta_lock_get_backend (lock), ==, PORTA_BACKEND_WIN32);
#else
  g_assert_cmpint (porta_lock_get_backend (lock), ==, PORTA_BACKEND_FLOCK);
#endif
  assert_try_gets (lock);
  assert_other_process_blocked (porta_lock_get_backend (lock), HOLD_EXCLUSIVE, path);
  assert_release (lock);
}

static void
test_critical_negative_timeout (void)
{
  if (g_test_subprocess ())
    {
      g_autofree char *path = porta_test_path ("critical.lock");
      g_autoptr(PortaLock) lock = porta_lock_new_for_path (path, PORTA_LOCK_MODE_EXCLUSIVE);

      porta_lock_acquire (lock, -2, NULL, NULL);
      return;
    }

  g_test_trap_subprocess (NULL, 0, 0);
  g_test_trap_assert_failed ();
  g_test_trap_assert_stderr ("*CRITICAL*");
}

static void
test_critical_negative_timeout_async (void)
{
  if (g_test_subprocess ())
    {
      g_autofree char *path = porta_test_path ("critical.lock");
      g_autoptr(PortaLock) lock = porta_lock_new_for_path (path, PORTA_LOCK_MODE_EXCLUSIVE);

      porta_lock_acquire_async (lock, -100, G_PRIORITY_DEFAULT, NULL, NULL, NULL);
      return;
    }

  g_test_trap_subprocess (NULL, 0, 0);
  g_test_trap_assert_failed ();
  g_test_trap_assert_stderr ("*CRITICAL*");
}

/* Each public function refuses a NULL lock with a critical, before it
 * reads anything of it. */
static void
test_critical_null_self (void)
{
  static const char * const calls[] = { "try-acquire", "query-holder", "get-held", "release" };

  if (g_test_subprocess ())
    {
      const char *call = g_getenv ("PORTA_TEST_NULL_CALL");
      int pid = 0;

      if (g_str_equal (call, "try-acquire"))
        porta_lock_try_acquire (NULL, NULL);
      else if (g_str_equal (call, "query-holder"))
        porta_lock_query_holder (NULL, &pid, NULL, NULL);
      else if (g_str_equal (call, "get-held"))
        porta_lock_get_held (NULL);
      else
        porta_lock_release (NULL, NULL);
      return;
    }

  for (guint i = 0; i < G_N_ELEMENTS (calls); i++)
    {
      g_setenv ("PORTA_TEST_NULL_CALL", calls[i], TRUE);
      g_test_trap_subprocess (NULL, 0, 0);
      /* A critical, not a crash: fatal-warnings makes it abort, and the
       * message says which check failed. */
      g_test_trap_assert_failed ();
      g_test_trap_assert_stderr ("*CRITICAL*PORTA_IS_LOCK*");
    }
  g_unsetenv ("PORTA_TEST_NULL_CALL");
}

/* ---------------------------------------------------------------------- */

typedef struct
{
  const char    *name;
  GTestDataFunc  func;
  gboolean       posix_too;
} BackendTest;

static const BackendTest backend_tests[] = {
  { "exclusive-vs-exclusive", test_exclusive_vs_exclusive, TRUE },
  { "shared-vs-shared", test_shared_vs_shared, TRUE },
  { "shared-blocks-exclusive", test_shared_blocks_exclusive, TRUE },
  { "exclusive-blocks-shared", test_exclusive_blocks_shared, TRUE },
  { "acquire/try-once", test_try_once, TRUE },
  { "acquire/timeout", test_acquire_timeout, TRUE },
  { "acquire/timeout-succeeds", test_acquire_timeout_succeeds, TRUE },
  { "acquire/blocking", test_acquire_blocking, TRUE },
  { "acquire/cancel-from-thread", test_acquire_cancel_from_thread, TRUE },
  { "acquire/timeout-never-early", test_timeout_never_early, TRUE },
  { "acquire/cancel-race", test_cancel_race, TRUE },
  { "async/uncontended", test_async_uncontended, TRUE },
  { "async/acquire", test_async_acquire, TRUE },
  { "async/timeout", test_async_timeout, TRUE },
  { "async/cancel", test_async_cancel, TRUE },
  { "async/pending", test_async_pending, TRUE },
  { "async/main-loop-runs", test_async_main_loop_runs, TRUE },
  { "async/thread-default-context", test_async_thread_default_context, TRUE },
  { "held/notify", test_held_notify, TRUE },
  { "release-not-held", test_release_not_held, TRUE },
  { "acquire-twice", test_acquire_twice, TRUE },
  { "dispose-releases", test_dispose_releases, TRUE },
  { "autoptr", test_autoptr, TRUE },
  { "properties", test_properties, TRUE },
  { "file/content-survives", test_content_survives, TRUE },
#ifndef G_OS_WIN32
  { "file/created-mode-0644", test_created_with_mode, TRUE },
#endif
  { "file/read-only", test_read_only_file, TRUE },
  { "stream", test_stream, TRUE },
  { "same-process", test_same_process, TRUE },
  { "same-process/threads", test_same_process_threads, FALSE },
  { "same-process/threads-exclude", test_threads_exclude, FALSE },
  { "bad/not-native", test_bad_not_native, TRUE },
  { "bad/missing-parent", test_bad_missing_parent, TRUE },
  { "bad/directory", test_bad_directory, TRUE },
#ifndef G_OS_WIN32
  { "bad/fifo", test_bad_fifo, TRUE },
  { "bad/symlink", test_bad_symlink, TRUE },
  { "bad/permission-denied", test_permission_denied, TRUE },
  { "file/running-program", test_running_program, TRUE },
  { "follow-symlinks", test_follow_symlink, TRUE },
  { "follow-symlinks/retargeted-while-waiting", test_follow_symlink_retargeted, TRUE },
  { "replaced-while-waiting", test_replaced_while_waiting, TRUE },
#endif
  { "delete-on-release", test_delete_on_release, TRUE },
  { "delete-on-release/waiter", test_delete_on_release_waiter, TRUE },
};

int
main (int    argc,
      char **argv)
{
  static const PortaBackend backends[] = {
#ifdef G_OS_WIN32
    PORTA_BACKEND_WIN32,
#else
    PORTA_BACKEND_FLOCK,
    PORTA_BACKEND_OFD,
    PORTA_BACKEND_POSIX,
#endif
  };
  guint b, t;

  porta_test_init (&argc, &argv);

  for (b = 0; b < G_N_ELEMENTS (backends); b++)
    {
      for (t = 0; t < G_N_ELEMENTS (backend_tests); t++)
        {
          g_autofree char *test_path = NULL;

          if (backends[b] == PORTA_BACKEND_POSIX && !backend_tests[t].posix_too)
            continue;

          test_path = g_strdup_printf ("/lock/%s/%s", porta_test_backend_name (backends[b]),
                                       backend_tests[t].name);
          g_test_add_data_func (test_path, GINT_TO_POINTER (backends[b]),
                                backend_tests[t].func);
        }
    }

  g_test_add_func ("/lock/default-backend", test_default_backend);
#ifdef __linux__
  g_test_add_func ("/lock/async/thread-handed-on", test_async_thread_handed_on);
  g_test_add_func ("/lock/async/back-off-many", test_async_back_off_many);
#endif
  g_test_add_func ("/lock/new", test_new_for_gfile);
  g_test_add_func ("/lock/critical/negative-timeout", test_critical_negative_timeout);
  g_test_add_func ("/lock/critical/negative-timeout-async", test_critical_negative_timeout_async);
  g_test_add_func ("/lock/critical/null-self", test_critical_null_self);

  return g_test_run ();
}
