/* test-stress-leaks.c: nothing of a lock outlives it
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Thousands of acquire/release cycles and of waits that time out or are
 * cancelled, sync and async, must leave the process with the descriptors,
 * threads and main-context sources it had before.
 */

#include <string.h>

#include "porta-test-utils.h"

#define N_CYCLES       10000
#define N_WAITS        250    /* of each of the four kinds, per backend */
#define N_MANY         100    /* async waits at once: more than the 64 threads */
#define SETTLE_MS      2000

static const PortaBackend all_backends[] = {
  PORTA_BACKEND_FLOCK, PORTA_BACKEND_OFD, PORTA_BACKEND_POSIX,
};

static guint
rss_kib (void)
{
  g_autofree char *status = NULL;
  const char *line;

  g_assert_true (g_file_get_contents ("/proc/self/status", &status, NULL, NULL));
  line = strstr (status, "\nVmRSS:");
  return line != NULL ? (guint) g_ascii_strtoull (line + strlen ("\nVmRSS:"), NULL, 10) : 0;
}

/* Runs @context until nothing is ready, then checks that no source of
 * portalock is left in it: nothing pending, no source with a timeout, and
 * no descriptor polled but the context's own wake-up one. */
static void
assert_context_clean (GMainContext *context)
{
  GPollFD fds[16];
  int priority = 0;
  int timeout = 0;
  int n_fds;

  while (g_main_context_iteration (context, FALSE))
    ;
  g_assert_false (g_main_context_pending (context));

  g_assert_true (g_main_context_acquire (context));
  g_main_context_prepare (context, &priority);
  n_fds = g_main_context_query (context, G_MAXINT, &timeout, fds, G_N_ELEMENTS (fds));
  g_main_context_check (context, priority, fds, MIN (n_fds, (int) G_N_ELEMENTS (fds)));
  g_main_context_dispatch (context);
  g_main_context_release (context);

  g_assert_cmpint (timeout, ==, -1);
  g_assert_cmpint (n_fds, ==, 1);
}

/* Threads: each waiter thread is joined right after its callback has run,
 * but give GLib's own helpers a moment to come and go. */
static guint
settle_threads (guint baseline)
{
  gint64 end = g_get_monotonic_time () + porta_test_scale_ms (SETTLE_MS) * (gint64) 1000;
  guint n;

  while ((n = porta_test_count_threads ()) > baseline && g_get_monotonic_time () < end)
    g_usleep (10 * 1000);
  if (n != baseline)
    {
      g_autofree char *names = porta_test_thread_names ();

      g_test_message ("threads now: %s", names);
    }
  return n;
}

typedef struct
{
  gboolean done;
  gboolean acquired;
  GError  *error;
} AsyncResult;

static void
on_acquired (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  AsyncResult *r = user_data;

  r->acquired = porta_lock_acquire_finish (PORTA_LOCK (source), result, &r->error);
  r->done = TRUE;
}

static void
run_until_done (GMainContext *context,
                AsyncResult  *r)
{
  while (!r->done)
    g_main_context_iteration (context, TRUE);
}

static void
one_cycle (GFile        *file,
           PortaBackend  backend,
           PortaLock    *reused,
           GMainContext *context,
           guint         i)
{
  g_autoptr(PortaLock) fresh = NULL;
  g_autoptr(GError) error = NULL;
  PortaLockMode mode = (i % 2) ? PORTA_LOCK_MODE_SHARED : PORTA_LOCK_MODE_EXCLUSIVE;
  PortaLock *lock = reused;
  GIOStream *stream;

  if (i % 3 != 0)
    lock = fresh = porta_lock_new_full (file, mode, backend, 0);

  if (i % 4 == 0)
    {
      AsyncResult r = { FALSE, FALSE, NULL };

      porta_lock_acquire_async (lock, -1, G_PRIORITY_DEFAULT, NULL, on_acquired, &r);
      run_until_done (context, &r);
      g_assert_no_error (r.error);
      g_assert_true (r.acquired);
    }
  else
    {
      g_assert_true (porta_lock_acquire (lock, (i % 5 == 0) ? 1000 : -1, NULL, &error));
      g_assert_no_error (error);
    }

  stream = porta_lock_get_stream (lock);
  g_assert_nonnull (stream);
  if (i % 7 == 0)
    {
      /* a reference kept past the release: closed by it, freed by us */
      g_object_ref (stream);
      g_assert_true (porta_lock_release (lock, &error));
      g_assert_true (g_io_stream_is_closed (stream));
      g_object_unref (stream);
    }
  else if (i % 11 == 0 && fresh != NULL)
    g_clear_object (&fresh);   /* disposing a held lock releases it */
  else
    g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
}

static void
test_cycles (void)
{
  g_autofree char *path = porta_test_path ("cycles.lock");
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autoptr(GMainContext) context = g_main_context_new ();
  guint fds_before, threads_before, rss_before;

  g_main_context_push_thread_default (context);

  for (guint b = 0; b < G_N_ELEMENTS (all_backends); b++)
    {
      PortaBackend backend = all_backends[b];
      g_autoptr(PortaLock) reused = porta_lock_new_full (file, PORTA_LOCK_MODE_EXCLUSIVE,
                                                         backend, 0);
      gint64 start;
      guint fds_after, threads_after;

      /* warm-up: GLib's one-time allocations and types */
      for (guint i = 0; i < 100; i++)
        one_cycle (file, backend, reused, context, i);
      assert_context_clean (context);
      fds_before = porta_test_count_fds ();
      threads_before = porta_test_count_threads ();
      rss_before = rss_kib ();

      start = g_get_monotonic_time ();
      for (guint i = 0; i < N_CYCLES; i++)
        one_cycle (file, backend, reused, context, i);

      assert_context_clean (context);
      fds_after = porta_test_count_fds ();
      threads_after = settle_threads (threads_before);
      g_test_message ("%s: %d acquire/release cycles in %.2f s: descriptors %u -> %u, "
                      "threads %u -> %u, RSS %u -> %u KiB",
                      porta_test_backend_name (backend), N_CYCLES,
                      (g_get_monotonic_time () - start) / 1e6,
                      fds_before, fds_after, threads_before, threads_after,
                      rss_before, rss_kib ());
      g_assert_cmpuint (fds_after, ==, fds_before);
      g_assert_cmpuint (threads_after, ==, threads_before);
    }

  g_main_context_pop_thread_default (context);
}

typedef struct
{
  GCancellable *cancellable;
  gulong        delay_us;
} Canceller;

static gpointer
canceller_thread (gpointer data)
{
  Canceller *c = data;

  g_usleep (c->delay_us);
  g_cancellable_cancel (c->cancellable);
  return NULL;
}

/* A wait of more than 100 ms makes portalock look the holder up in
 * /proc/locks from a GLib thread pool: the pool's idle thread, and what
 * GLib sets up once for it, stay. Take the baselines after one. */
static void
warm_up_holder_lookup (PortaLock    *lock,
                       GMainContext *context)
{
  g_autoptr(GError) error = NULL;
  AsyncResult r = { FALSE, FALSE, NULL };

  g_assert_false (porta_lock_acquire (lock, 300, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  porta_lock_acquire_async (lock, 300, G_PRIORITY_DEFAULT, NULL, on_acquired, &r);
  run_until_done (context, &r);
  g_assert_error (r.error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_clear_error (&r.error);
}

/* One wait that must fail: kind 0 sync timeout, 1 sync cancelled, 2 async
 * timeout, 3 async cancelled. */
static void
one_failed_wait (PortaLock    *lock,
                 GMainContext *context,
                 guint         kind,
                 guint         i)
{
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;
  Canceller c = { cancellable, (i % 4) * 200 };
  AsyncResult r = { FALSE, FALSE, NULL };
  GThread *thread = NULL;

  switch (kind)
    {
    case 0:
      g_assert_false (porta_lock_acquire (lock, 1, NULL, &error));
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
      break;
    case 1:
      thread = g_thread_new ("canceller", canceller_thread, &c);
      g_assert_false (porta_lock_acquire (lock, -1, cancellable, &error));
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
      g_thread_join (thread);
      break;
    case 2:
      porta_lock_acquire_async (lock, 1, G_PRIORITY_DEFAULT, NULL, on_acquired, &r);
      run_until_done (context, &r);
      g_assert_false (r.acquired);
      g_assert_error (r.error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
      g_clear_error (&r.error);
      break;
    case 3:
      porta_lock_acquire_async (lock, -1, G_PRIORITY_DEFAULT, cancellable,
                                on_acquired, &r);
      if (i % 2)
        {
          /* cancelled from another thread while the waiter thread blocks */
          thread = g_thread_new ("canceller", canceller_thread, &c);
          run_until_done (context, &r);
          g_thread_join (thread);
        }
      else
        {
          g_usleep (c.delay_us);
          g_cancellable_cancel (cancellable);
          run_until_done (context, &r);
        }
      g_assert_false (r.acquired);
      g_assert_error (r.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
      g_clear_error (&r.error);
      break;
    default:
      g_assert_not_reached ();
    }
  g_assert_false (porta_lock_get_held (lock));
}

static void
test_failed_waits (gconstpointer data)
{
  PortaBackend backend = GPOINTER_TO_INT (data);
  const char *name = porta_test_backend_name (backend);
  g_autofree char *path = porta_test_path ("waits.lock");
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autoptr(GMainContext) context = g_main_context_new ();
  g_autoptr(PortaLock) holder = NULL;
  g_autoptr(GSubprocess) holder_proc = NULL;
  g_autoptr(PortaLock) waiter = porta_lock_new_full (file, PORTA_LOCK_MODE_EXCLUSIVE,
                                                     backend, 0);
  g_autoptr(GError) error = NULL;
  guint fds_before, threads_before, fds_after, threads_after;
  gint64 start;

  if (porta_test_skip_ofd_wait_under_valgrind (backend))
    return;
  g_main_context_push_thread_default (context);

  /* For flock and ofd another PortaLock of this process excludes like
   * another process; POSIX locks need another process. */
  if (backend == PORTA_BACKEND_POSIX)
    {
      g_autofree char *line = NULL;

      holder_proc = porta_test_spawn (G_SUBPROCESS_FLAGS_STDOUT_PIPE, "hold", name,
                                      path, "held\n", NULL);
      line = porta_test_read_line (holder_proc, 20000);
      g_assert_cmpstr (line, ==, "locked");
    }
  else
    {
      holder = porta_lock_new_full (file, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0);
      g_assert_true (porta_lock_acquire (holder, 0, NULL, &error));
      g_assert_no_error (error);
    }

  for (guint kind = 0; kind < 4; kind++)
    for (guint i = 0; i < 4; i++)
      one_failed_wait (waiter, context, kind, i);
  warm_up_holder_lookup (waiter, context);
  assert_context_clean (context);
  fds_before = porta_test_count_fds ();
  threads_before = settle_threads (porta_test_count_threads ());

  start = g_get_monotonic_time ();
  for (guint i = 0; i < N_WAITS; i++)
    for (guint kind = 0; kind < 4; kind++)
      one_failed_wait (waiter, context, kind, i);

  assert_context_clean (context);
  fds_after = porta_test_count_fds ();
  threads_after = settle_threads (threads_before);
  g_test_message ("%s: %d failed waits (sync/async x timeout 1 ms/cancelled) in "
                  "%.2f s: descriptors %u -> %u, threads %u -> %u",
                  name, 4 * N_WAITS, (g_get_monotonic_time () - start) / 1e6,
                  fds_before, fds_after, threads_before, threads_after);
  /* fewer is fine: GLib's idle pool thread may have exited meanwhile */
  g_assert_cmpuint (fds_after, <=, fds_before);
  g_assert_cmpuint (threads_after, <=, threads_before);

  /* No wait that gave up took the lock on its way out. */
  if (holder != NULL)
    {
      g_assert_true (porta_lock_get_held (holder));
      g_assert_true (porta_lock_release (holder, &error));
    }
  else
    porta_test_kill (holder_proc);
  g_assert_true (porta_lock_acquire (waiter, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (porta_lock_release (waiter, &error));
  g_assert_no_error (error);

  g_main_context_pop_thread_default (context);
}

typedef struct
{
  PortaLock *lock;
  guint     *n_acquired;
  guint     *n_failed;
  guint     *n_done;
} ManyWaiter;

static void
on_many_acquired (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  ManyWaiter *m = user_data;
  g_autoptr(GError) error = NULL;

  if (porta_lock_acquire_finish (m->lock, result, &error))
    {
      (*m->n_acquired)++;
      g_assert_true (porta_lock_release (m->lock, &error));
      g_assert_no_error (error);
    }
  else
    {
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
      (*m->n_failed)++;
    }
  (*m->n_done)++;
}

static gboolean
sample_threads (gpointer user_data)
{
  guint *peak = user_data;

  *peak = MAX (*peak, porta_test_count_threads ());
  return G_SOURCE_CONTINUE;
}

/* More async waits at once than portalock starts threads for (64): the
 * rest back off on the main context and move into threads as they free up.
 * Every wait ends, exactly once, and nothing of them is left. */
static void
test_many_async_waits (void)
{
  g_autofree char *path = porta_test_path ("many.lock");
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autoptr(GMainContext) context = g_main_context_new ();
  g_autoptr(PortaLock) holder = porta_lock_new_full (file, PORTA_LOCK_MODE_EXCLUSIVE,
                                                     PORTA_BACKEND_FLOCK, 0);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;
  g_autoptr(GSource) sampler = NULL;
  PortaLock *locks[N_MANY];
  ManyWaiter waiters[N_MANY];
  guint n_acquired = 0, n_failed = 0, n_done = 0, peak;
  guint fds_before, threads_before, fds_after, threads_after;
  gint64 start;

  g_main_context_push_thread_default (context);
  g_assert_true (porta_lock_acquire (holder, 0, NULL, &error));
  g_assert_no_error (error);
  {
    g_autoptr(PortaLock) warm = porta_lock_new_full (file, PORTA_LOCK_MODE_EXCLUSIVE,
                                                     PORTA_BACKEND_FLOCK, 0);

    warm_up_holder_lookup (warm, context);
  }
  g_assert_true (porta_lock_release (holder, &error));
  g_assert_no_error (error);
  assert_context_clean (context);
  fds_before = porta_test_count_fds ();
  threads_before = settle_threads (porta_test_count_threads ());
  g_assert_true (porta_lock_acquire (holder, 0, NULL, &error));
  g_assert_no_error (error);
  peak = threads_before;

  sampler = g_timeout_source_new (5);
  g_source_set_callback (sampler, sample_threads, &peak, NULL);
  g_source_attach (sampler, context);

  start = g_get_monotonic_time ();
  for (guint i = 0; i < N_MANY; i++)
    {
      locks[i] = porta_lock_new_full (file, PORTA_LOCK_MODE_EXCLUSIVE,
                                      PORTA_BACKEND_FLOCK, 0);
      waiters[i] = (ManyWaiter) { locks[i], &n_acquired, &n_failed, &n_done };
      /* every fourth one is cancelled, the others get the lock in turn */
      porta_lock_acquire_async (locks[i], (i % 2) ? -1 : (int) porta_test_scale_ms (60000),
                                G_PRIORITY_DEFAULT, (i % 4 == 3) ? cancellable : NULL,
                                on_many_acquired, &waiters[i]);
    }
  for (guint i = 0; i < 20; i++)
    g_main_context_iteration (context, FALSE);
  g_usleep (50 * 1000);
  sample_threads (&peak);
  g_cancellable_cancel (cancellable);
  g_assert_true (porta_lock_release (holder, &error));
  g_assert_no_error (error);

  while (n_done < N_MANY)
    g_main_context_iteration (context, TRUE);
  g_source_destroy (sampler);

  for (guint i = 0; i < N_MANY; i++)
    g_object_unref (locks[i]);
  assert_context_clean (context);
  fds_after = porta_test_count_fds ();
  threads_after = settle_threads (threads_before);
  g_test_message ("flock: %d async waits at once: %u acquired in turn, %u cancelled, "
                  "in %.2f s; threads %u -> peak %u -> %u, descriptors %u -> %u",
                  N_MANY, n_acquired, n_failed, (g_get_monotonic_time () - start) / 1e6,
                  threads_before, peak, threads_after, fds_before, fds_after);
  g_assert_cmpuint (n_acquired, ==, N_MANY - N_MANY / 4);
  g_assert_cmpuint (n_failed, ==, N_MANY / 4);
  g_assert_cmpuint (peak, <=, threads_before + 64 + 4);
  g_assert_cmpuint (fds_after, <=, fds_before);
  g_assert_cmpuint (threads_after, <=, threads_before);
  g_main_context_pop_thread_default (context);
}

int
main (int   argc,
      char *argv[])
{
  porta_test_init (&argc, &argv);

  g_test_add_func ("/stress/leaks/cycles", test_cycles);
  for (guint b = 0; b < G_N_ELEMENTS (all_backends); b++)
    {
      g_autofree char *p = g_strdup_printf ("/stress/leaks/failed-waits/%s",
                                            porta_test_backend_name (all_backends[b]));

      g_test_add_data_func (p, GINT_TO_POINTER (all_backends[b]), test_failed_waits);
    }
  g_test_add_func ("/stress/leaks/many-async-waits", test_many_async_waits);

  return g_test_run ();
}
