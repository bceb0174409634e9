/* porta-wait-thread.c: the waiter threads that async kernel waits block in, at most
 * PORTALOCK_MAX_WAITER_THREADS at once, and the queue of waits that back
 * off until one is free
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include <gio/gio.h>

#ifdef G_OS_UNIX
# include <pthread.h>
# include <sched.h>
# include <signal.h>
# include <sys/timerfd.h>
# include <unistd.h>
#endif

#include "porta-wait-private.h"

#ifdef HAVE_KERNEL_WAIT

#define WAITER_STACK_SIZE     (256 * 1024)
#define JOIN_SPIN_US          200
#define FINISH_SPIN_US        300
#define EARLY_WAKE_US         150
#define DEFAULT_MAX_THREADS   64

/* Local async waits that back off only for want of a waiter thread, in the
 * order they began to. When a thread ends, the first of them is woken at
 * once (kicked) to take its place; if the lock is free by then, it takes
 * the lock without a thread and passes the kick on. So after a release
 * that frees many locks at once, every such wait learns it in a chain of
 * tries, not at its next back-off retry up to 100 ms later. */
static GMutex slot_queue_lock;
static GQueue slot_queue = G_QUEUE_INIT;

/* After (re)scheduling @w's retry: a kick must not be overwritten. */
static void
slot_queue_join (PortaAsyncWait *w)
{
  g_mutex_lock (&slot_queue_lock);
  w->slot_link.data = w;
  g_queue_push_tail_link (&slot_queue, &w->slot_link);
  w->queued = TRUE;
  g_mutex_unlock (&slot_queue_lock);
}

/* Takes @w out of the queue; returns whether it was kicked since it was
 * last in it, when the kick must be passed on unless @w takes the thread. */
static gboolean
slot_queue_leave (PortaAsyncWait *w)
{
  gboolean kicked;

  g_mutex_lock (&slot_queue_lock);
  if (w->queued)
    g_queue_unlink (&slot_queue, &w->slot_link);
  w->queued = FALSE;
  kicked = w->kicked;
  w->kicked = FALSE;
  g_mutex_unlock (&slot_queue_lock);
  return kicked;
}

/* A waiter thread is free: wakes the first queued wait, in whatever
 * context it runs. Under the lock, the wait cannot leave the queue and
 * free its retry source meanwhile. */
static void
slot_queue_kick (void)
{
  GList *link;

  g_mutex_lock (&slot_queue_lock);
  link = g_queue_pop_head_link (&slot_queue);
  if (link != NULL)
    {
      PortaAsyncWait *w = link->data;

      w->queued = FALSE;
      w->kicked = TRUE;
      porta_wait_backoff_retry_at (w, 0);
    }
  g_mutex_unlock (&slot_queue_lock);
}

static int n_waiter_threads;   /* atomic */

static int
get_max_waiter_threads (void)
{
  static gsize once = 0;
  static int max_threads;

  if (g_once_init_enter (&once))
    {
      const char *env = g_getenv ("PORTALOCK_MAX_WAITER_THREADS");

      max_threads = env != NULL ? atoi (env) : DEFAULT_MAX_THREADS;
      if (max_threads < 0)
        max_threads = 0;
      g_once_init_leave (&once, 1);
    }
  return max_threads;
}

static gboolean
ready_time_source_dispatch (GSource     *source,
                            GSourceFunc  callback,
                            gpointer     user_data)
{
  g_source_set_ready_time (source, -1);
  return callback (user_data);
}

/* The source a waiter thread makes ready when its wait is over; a
 * cancellation also makes it ready, and a wait with a deadline gives it a
 * timerfd that fires EARLY_WAKE_US before the deadline. GLib's own
 * timeouts wake the context only to the millisecond (up to 1 ms late),
 * a timerfd to the microsecond. */
static GSourceFuncs ready_time_source_funcs = {
  NULL, NULL, ready_time_source_dispatch, NULL, NULL, NULL,
};

/* Whether @w's thread has its final result. When the context was woken
 * for the deadline (a little before it, as a timer's wake of an idle CPU
 * takes about that long) or by a cancellation, the thread is being
 * interrupted at about the same moment, and this waits up to
 * FINISH_SPIN_US after that for it: the two wakes overlap, where waiting
 * for the thread to tell the context would put one after the other. If
 * it takes longer, the thread's own wake (the source made ready again)
 * comes later. */
static gboolean
thread_wait_is_finished (PortaAsyncWait *w)
{
  gint64 now, give_up;

  if (g_atomic_int_get (&w->finished))
    return TRUE;
  now = g_get_monotonic_time ();
  if (g_cancellable_is_cancelled (w->cancellable))
    give_up = now + FINISH_SPIN_US;
  else if (w->deadline >= 0 && now >= w->deadline - EARLY_WAKE_US)
    give_up = MAX (now, w->deadline) + FINISH_SPIN_US;
  else
    return FALSE;
  while (!g_atomic_int_get (&w->finished))
    {
      if (g_get_monotonic_time () >= give_up)
        return FALSE;
      sched_yield ();
    }
  return TRUE;
}

static gboolean
thread_wait_complete (gpointer user_data)
{
  PortaAsyncWait *w = user_data;

  /* A timerfd that fired stays readable until it is read. */
  if (w->deadline_fd >= 0)
    {
      guint64 expirations;

      while (read (w->deadline_fd, &expirations, sizeof expirations) < 0 && errno == EINTR)
        ;
    }
  if (!thread_wait_is_finished (w))
    return G_SOURCE_CONTINUE;

  /* The callback runs first: the thread may still be ending the wait,
   * and waiting for it first put the callback behind it whenever the two
   * shared a CPU (the p99 of an async cancellation was a scheduler tick
   * and more). */
  if (w->result != ETIMEDOUT)
    g_clear_pointer (&w->holder, g_free);
  w->callback (w->result, g_steal_pointer (&w->holder), w->unknown, w->user_data);

  /* Then the thread is reaped before this dispatch returns, so that no
   * waiter thread outlives its wait even when nothing iterates the
   * context after the callback (a sync call made of async ones does not:
   * a join put off to later iterations leaked the thread there). It has
   * a few system calls left, so a moment's yield usually finds it gone;
   * if not, a blocking join gives it this CPU. */
#ifdef HAVE_PTHREAD_TRYJOIN_NP
  {
    gint64 give_up = g_get_monotonic_time () + JOIN_SPIN_US;
    int r;

    while ((r = pthread_tryjoin_np (w->thread, NULL)) == EBUSY &&
           g_get_monotonic_time () < give_up)
      sched_yield ();
    if (r == EBUSY)
      pthread_join (w->thread, NULL);
  }
#else
  pthread_join (w->thread, NULL);
#endif
  g_atomic_int_add (&n_waiter_threads, -1);
  slot_queue_kick ();
  if (w->deadline_fd >= 0)
    close (w->deadline_fd);
  g_clear_pointer (&w->done_source, g_source_unref);
  porta_async_wait_free (w);
  return G_SOURCE_REMOVE;
}

static void *
thread_wait_main (void *data)
{
  PortaAsyncWait *w = data;
  PortaLockFile lf = { w->fd, w->dev, w->ino, TRUE, FALSE };

  /* Once the result is final, the kernel wait tells the main context,
   * which may run the callback while this thread ends the wait; the
   * context then joins it. The source was attached by the main context's
   * side, which holds its reference until it has joined this thread. */
  if (porta_wait_kernel (w, w->ops, &lf, w->mode, w->deadline, w->cancellable,
                         &w->holder, &w->unknown) < 0)
    {
      w->unknown = PORTA_HOLDER_RETRYING_WAIT;
      porta_async_wait_report (w, porta_wait_backoff_sync (w->ops, w->fd, w->mode, w->deadline,
                                                           w->cancellable));
    }
  return NULL;
}

/* Without a timerfd, the context still wakes for the deadline when the
 * thread tells it, only later. */
static void
thread_wait_add_deadline (PortaAsyncWait *w)
{
  struct itimerspec its = { { 0, 0 }, porta_timespec_from_us (w->deadline - EARLY_WAKE_US) };
  int fd;

  fd = timerfd_create (CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (fd < 0)
    return;
  if (timerfd_settime (fd, TFD_TIMER_ABSTIME, &its, NULL) != 0)
    {
      close (fd);
      return;
    }
  g_source_add_unix_fd (w->done_source, fd, G_IO_IN);
  w->deadline_fd = fd;
}

/* Starts a thread for a local wait (one that can be interrupted as it
 * needs to be) if a slot is free. */
static gboolean
thread_wait_start (PortaAsyncWait *w)
{
  pthread_attr_t attr;
  sigset_t all, old;
  int r;

  w->deadline_fd = -1;
  if (g_atomic_int_add (&n_waiter_threads, 1) >= get_max_waiter_threads ())
    {
      g_atomic_int_add (&n_waiter_threads, -1);
      return FALSE;
    }

  pthread_attr_init (&attr);
  pthread_attr_setstacksize (&attr, WAITER_STACK_SIZE);
  /* The thread inherits this mask: it takes no signal meant for the
   * application, and unblocks the interrupt signal itself. */
  sigfillset (&all);
  pthread_sigmask (SIG_SETMASK, &all, &old);
  w->done_source = g_source_new (&ready_time_source_funcs, sizeof (GSource));
  g_source_set_priority (w->done_source, w->priority);
  g_source_set_callback (w->done_source, thread_wait_complete, w, NULL);
  g_source_set_static_name (w->done_source, "[portalock] lock wait done");
  if (w->deadline >= 0)
    thread_wait_add_deadline (w);
  g_source_attach (w->done_source, w->context);

  r = pthread_create (&w->thread, &attr, thread_wait_main, w);
  pthread_sigmask (SIG_SETMASK, &old, NULL);
  pthread_attr_destroy (&attr);
  if (r != 0)
    {
      g_source_destroy (w->done_source);
      g_clear_pointer (&w->done_source, g_source_unref);
      if (w->deadline_fd >= 0)
        close (w->deadline_fd);
      w->deadline_fd = -1;
      g_atomic_int_add (&n_waiter_threads, -1);
    }
  return r == 0;
}

const PortaWaitSlots porta_wait_thread_slots = {
  thread_wait_start,
  slot_queue_join,
  slot_queue_leave,
  slot_queue_kick,
};

#endif /* HAVE_KERNEL_WAIT */
