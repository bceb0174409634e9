/* porta-waiter.c: waiting for a contended lock in the kernel
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
# include <time.h>
# include <unistd.h>
#endif
#ifdef G_OS_WIN32
# include <windows.h>
#endif

#include "porta-holder-private.h"
#include "porta-waiter-private.h"
#include "porta-win32-private.h"

#ifndef EINPROGRESS
# define EINPROGRESS 112
#endif

/* How a contended lock is waited for.
 *
 * On a local filesystem the wait blocks in the kernel (flock(), F_SETLKW,
 * F_OFD_SETLKW): the waiter uses no CPU and the kernel hands it the lock the
 * moment it is free. A sync wait blocks in the calling thread; an async wait
 * blocks in a thread of its own, never in GTask's shared pool, where a
 * parked wait would starve every other GIO call of the process.
 *
 * A blocked lock call can only be interrupted by a signal. Each wait that
 * has a deadline or a cancellable owns a POSIX timer that sends a reserved
 * real-time signal, without SA_RESTART, to the waiting thread: at the
 * deadline, or at once when the cancellable fires. The timer keeps firing
 * every INTERRUPT_INTERVAL_NS until the wait ends, because a signal that
 * lands just before the thread enters the lock call is lost.
 *
 * On network and FUSE filesystems, or where no signal is free, the wait
 * retries with a jittered exponential back-off instead: in the calling
 * thread for a sync wait, and on the main context for an async one.
 *
 * Async waits in threads are bounded: at most PORTALOCK_MAX_WAITER_THREADS
 * (default 64) at once in a process. Further async waits back off on their
 * main context, and when a thread ends, the one queued longest moves into
 * it at once. All back-off waits of a context (at one priority) share one
 * source.
 *
 * On Windows the wait is an overlapped LockFileEx(), which the kernel
 * completes when the lock is granted: a sync wait waits for its event and
 * the cancellable's at once, with the timeout; an async wait needs no
 * thread, for the main context polls the event (a GPollFD holding the
 * HANDLE). Timeout and cancellation cancel the request with CancelIoEx()
 * and wait for it to end before its OVERLAPPED is freed; a lock granted in
 * the meantime is given back. Under Wine, whose overlapped lock requests
 * report success without waiting, and on network shares, waits back off
 * instead. */

#define INTERRUPT_INTERVAL_NS (200 * 1000)
#define BACKOFF_MIN_US        1000
#define BACKOFF_MAX_US        (100 * 1000)
#define WAITER_STACK_SIZE     (256 * 1024)
#define JOIN_SPIN_US          200
#define DEFAULT_MAX_THREADS   64
#define HOLDER_LOOKUP_BEFORE_US   (50 * 1000)
#define HOLDER_LOOKUP_MIN_WAIT_US (100 * 1000)

#if defined (__linux__) && defined (HAVE_TIMER_CREATE) && defined (HAVE_GETTID)
# define HAVE_KERNEL_WAIT 1
#endif

#ifdef HAVE_KERNEL_WAIT

static void
on_interrupt_signal (int signo)
{
  /* Its only job is to make the blocked lock call return EINTR. */
}

static gboolean
claim_signal (int sig)
{
  struct sigaction old;
  struct sigaction sa = { 0 };

  if (sigaction (sig, NULL, &old) != 0)
    return FALSE;
  if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL)
    return FALSE;
  sa.sa_handler = on_interrupt_signal;
  sigemptyset (&sa.sa_mask);
  sa.sa_flags = 0;  /* no SA_RESTART: the lock call must return EINTR */
  return sigaction (sig, &sa, NULL) == 0;
}

/* The highest real-time signal the application has left alone, or the one
 * PORTALOCK_SIGNAL names (a number; 0 turns kernel waits off). */
static int
get_interrupt_signal (void)
{
  static gsize once = 0;
  static int the_signal;

  if (g_once_init_enter (&once))
    {
      const char *env = g_getenv ("PORTALOCK_SIGNAL");
      int sig = 0;

      if (env != NULL)
        {
          int wanted = atoi (env);

          if (wanted >= SIGRTMIN && wanted <= SIGRTMAX && claim_signal (wanted))
            sig = wanted;
        }
      else
        {
          for (int s = SIGRTMAX; s >= SIGRTMIN; s--)
            if (claim_signal (s))
              {
                sig = s;
                break;
              }
        }
      the_signal = sig;
      g_once_init_leave (&once, 1);
    }

  return the_signal;
}

typedef struct
{
  timer_t   timer;
  pthread_t thread;      /* the waiting thread */
  int       signo;
  int       cancelled;   /* atomic */
} Interrupter;

static void
arm_timer (timer_t          timer,
           int              flags,
           struct timespec  at)
{
  struct itimerspec its = { 0 };

  its.it_value = at;
  its.it_interval.tv_sec = 0;
  its.it_interval.tv_nsec = INTERRUPT_INTERVAL_NS;
  timer_settime (timer, flags, &its, NULL);
}

static void
on_cancelled (GCancellable *cancellable,
              gpointer      user_data)
{
  Interrupter *in = user_data;

  /* The signal goes at once, not through the timer: a timer due now
   * still fires only at the next timer interrupt (100 us later on this
   * VM). Then the timer repeats it, in case it landed just before the
   * thread entered the lock call; arming it costs the canceller 20-30 us
   * here, which the woken thread no longer waits for. */
  g_atomic_int_set (&in->cancelled, 1);
  pthread_kill (in->thread, in->signo);
  arm_timer (in->timer, 0, (struct timespec) { 0, INTERRUPT_INTERVAL_NS });
}

static struct timespec
timespec_from_us (gint64 us)
{
  return (struct timespec) { us / G_USEC_PER_SEC, (us % G_USEC_PER_SEC) * 1000 };
}

/* Looks up who holds the lock for the timeout's message, with the
 * interrupt signal blocked so that the reads of /proc are not cut short;
 * a signal sent meanwhile is delivered when it is unblocked again. */
static char *
describe_holder (const PortaLockFile   *lf,
                 const PortaBackendOps *ops,
                 const sigset_t        *set)
{
  char *holder;

  pthread_sigmask (SIG_BLOCK, set, NULL);
  holder = porta_holder_describe (lf->dev, lf->ino, ops->id == PORTA_BACKEND_FLOCK);
  pthread_sigmask (SIG_UNBLOCK, set, NULL);
  return holder;
}

/* Returns -1 when no timer could be set up, so that the caller falls back
 * to the back-off wait. For a wait long enough, the timer first fires
 * HOLDER_LOOKUP_BEFORE_US before the deadline, and the wait looks up its
 * holder for @holder then, so that the timeout can name it without the
 * delay that reading /proc/locks takes (see porta-holder.c). */
static int
kernel_wait (const PortaBackendOps  *ops,
             const PortaLockFile    *lf,
             PortaLockMode           mode,
             gint64                  deadline,
             GCancellable           *cancellable,
             char                  **holder,
             PortaHolderUnknown     *unknown)
{
  Interrupter in = { 0 };
  struct sigevent sev = { 0 };
  sigset_t set, old;
  gulong handler = 0;
  gint64 lookup_at = -1;
  int fd = lf->fd;
  int sig;
  int r;

  if (deadline < 0 && cancellable == NULL)
    {
      do
        r = ops->lock (fd, mode, TRUE);
      while (r == EINTR);
      return r;
    }

  sig = get_interrupt_signal ();
  if (sig == 0)
    return -1;

  sev.sigev_notify = SIGEV_THREAD_ID;
  sev.sigev_signo = sig;
  sev._sigev_un._tid = gettid ();
  if (timer_create (CLOCK_MONOTONIC, &sev, &in.timer) != 0)
    return -1;
  in.thread = pthread_self ();
  in.signo = sig;

  sigemptyset (&set);
  sigaddset (&set, sig);
  pthread_sigmask (SIG_UNBLOCK, &set, &old);

  /* g_get_monotonic_time() reads CLOCK_MONOTONIC on Linux. */
  if (deadline >= 0 && deadline - g_get_monotonic_time () > HOLDER_LOOKUP_MIN_WAIT_US)
    lookup_at = deadline - HOLDER_LOOKUP_BEFORE_US;
  *unknown = lookup_at >= 0 ? PORTA_HOLDER_NOT_TOLD : PORTA_HOLDER_WAIT_TOO_SHORT;
  if (deadline >= 0)
    arm_timer (in.timer, TIMER_ABSTIME, timespec_from_us (lookup_at >= 0 ? lookup_at : deadline));
  if (cancellable != NULL)
    handler = g_cancellable_connect (cancellable, G_CALLBACK (on_cancelled), &in, NULL);

  for (;;)
    {
      if (g_atomic_int_get (&in.cancelled))
        {
          r = ECANCELED;
          break;
        }
      if (deadline >= 0 && g_get_monotonic_time () >= deadline)
        {
          r = ETIMEDOUT;
          break;
        }
      if (lookup_at >= 0 && g_get_monotonic_time () >= lookup_at)
        {
          lookup_at = -1;
          g_free (*holder);
          *holder = describe_holder (lf, ops, &set);
          arm_timer (in.timer, TIMER_ABSTIME, timespec_from_us (deadline));
          continue;
        }
      r = ops->lock (fd, mode, TRUE);
      if (r != EINTR)
        break;
    }

  /* A cancellation that came while the kernel was granting the lock still
   * wins: the caller asked to stop, so the wait must not end holding it. */
  if (r == 0 && g_atomic_int_get (&in.cancelled))
    {
      ops->unlock (fd);
      r = ECANCELED;
    }

  /* Disconnecting waits for a handler running in another thread, so the
   * timer is never armed after it is deleted. A signal the timer sent is
   * delivered no later than the return of timer_delete(), while it is
   * still unblocked here. */
  if (handler != 0)
    g_cancellable_disconnect (cancellable, handler);
  timer_delete (in.timer);
  if (sigismember (&old, sig))
    pthread_sigmask (SIG_SETMASK, &old, NULL);

  return r;
}

#endif /* HAVE_KERNEL_WAIT */

static gint64
backoff_sleep_us (gint64 *delay,
                  gint64  deadline)
{
  gint64 sleep_us = g_random_int_range ((gint32) (*delay / 2), (gint32) *delay + 1);

  if (deadline >= 0)
    sleep_us = CLAMP (deadline - g_get_monotonic_time (), 0, sleep_us);
  *delay = MIN (*delay * 2, BACKOFF_MAX_US);
  return sleep_us;
}

static int
backoff_wait_sync (const PortaBackendOps *ops,
                   int                    fd,
                   PortaLockMode          mode,
                   gint64                 deadline,
                   GCancellable          *cancellable)
{
  gint64 delay = BACKOFF_MIN_US;
  GPollFD pfd;
  gboolean have_pfd;
  int r;

  have_pfd = cancellable != NULL && g_cancellable_make_pollfd (cancellable, &pfd);

  for (;;)
    {
      gint64 sleep_us;

      if (g_cancellable_is_cancelled (cancellable))
        {
          r = ECANCELED;
          break;
        }
      r = ops->lock (fd, mode, FALSE);
      if (r != EWOULDBLOCK)
        break;
      if (deadline >= 0 && g_get_monotonic_time () >= deadline)
        {
          r = ETIMEDOUT;
          break;
        }
      sleep_us = backoff_sleep_us (&delay, deadline);
      if (have_pfd)
        g_poll (&pfd, 1, (int) ((sleep_us + 999) / 1000));
      else
        g_usleep (sleep_us);
    }

  if (have_pfd)
    g_cancellable_release_fd (cancellable);
  return r;
}

int
porta_waiter_wait_sync (const PortaBackendOps  *ops,
                        const PortaLockFile    *lf,
                        gboolean                back_off,
                        PortaLockMode           mode,
                        gint64                  deadline,
                        GCancellable           *cancellable,
                        char                  **holder,
                        PortaHolderUnknown     *unknown)
{
  int r = -1;

  *holder = NULL;
  /* Waits that retry never look the holder up: a lookup would make the
   * retries late (see porta-holder.c). */
  *unknown = PORTA_HOLDER_RETRYING_WAIT;
#ifdef HAVE_KERNEL_WAIT
  if (!back_off)
    r = kernel_wait (ops, lf, mode, deadline, cancellable, holder, unknown);
#endif
#ifdef G_OS_WIN32
  if (!back_off && lf->overlapped)
    {
      /* Windows does not list its locks. */
      *unknown = PORTA_HOLDER_NOT_TOLD;
      r = porta_win32_wait_sync (lf, mode, deadline, cancellable);
    }
#endif
  if (r < 0)
    {
      *unknown = PORTA_HOLDER_RETRYING_WAIT;
      r = backoff_wait_sync (ops, lf->fd, mode, deadline, cancellable);
    }
  if (r != ETIMEDOUT)
    g_clear_pointer (holder, g_free);
  return r;
}

/* Async waits share this state, whichever way they wait. */
typedef struct
{
  const PortaBackendOps *ops;
  int                    fd;
  guint64                dev;
  guint64                ino;
  PortaLockMode          mode;
  gint64                 deadline;
  GCancellable          *cancellable;
  GMainContext          *context;
  int                    priority;
  PortaWaiterCallback    callback;
  gpointer               user_data;
  int                    result;
  char                  *holder;
  PortaHolderUnknown     unknown;      /* why @holder is NULL */

  /* back-off waits */
  struct _RetrySource   *retry_source;  /* shared; under retry_lock: */
  GSequenceIter         *retry_iter;    /* where it is in its queue, or NULL */
  gint64                 retry_at;      /* when it is to try again */
  GSource               *cancel_source;
  gint64                 delay;

  /* waits in a thread */
#ifdef G_OS_UNIX
  pthread_t              thread;
#endif
  gboolean               local;        /* waits in a thread when one is free */
  GSource               *done_source;  /* made ready by the thread */
  int                    finished;     /* atomic: result and holder are set */
  GList                  slot_link;    /* in slot_queue, under slot_queue_lock */
  gboolean               queued;       /* under slot_queue_lock */
  gboolean               kicked;       /* under slot_queue_lock */

#ifdef G_OS_WIN32
  /* overlapped waits */
  PortaLockFile          lf;
  HANDLE                 event;
  gpointer               overlapped;
  GSource               *overlapped_source;
  GPollFD                event_pollfd;
#endif
} AsyncWait;

static void
async_wait_free (AsyncWait *w)
{
  g_free (w->holder);
  g_clear_object (&w->cancellable);
  g_main_context_unref (w->context);
  g_free (w);
}

/* The back-off waits of one main context, at one priority, share one
 * source, ready when the first of them is to try again. GLib looks at
 * every source of a context at each iteration, so with a source of its own
 * for each wait, a thousand waits cost their context about 100 us an
 * iteration: a quarter of a core while they wait. */
typedef struct _RetrySource
{
  GSource       source;
  GMainContext *context;   /* not owned: the attached source lives in it */
  int           priority;
  GSequence    *queue;     /* AsyncWait *, by retry_at; under retry_lock */
  guint         n_waits;   /* under retry_lock */
} RetrySource;

/* Waits retried at most in one dispatch: a chain of kicks (see
 * slot_queue_kick()) or many retries due at once must not stall the
 * context; the rest go in the next iteration. */
#define RETRY_BATCH 64

static GMutex  retry_lock;     /* taken before any GMainContext's lock */
static GSList *retry_sources;  /* RetrySource *; under retry_lock */

static void backoff_retry (AsyncWait *w);

static int
compare_retry_at (gconstpointer a,
                  gconstpointer b,
                  gpointer      user_data)
{
  const AsyncWait *wa = a, *wb = b;

  if (wa->retry_at != wb->retry_at)
    return wa->retry_at < wb->retry_at ? -1 : 1;
  return wa < wb ? -1 : wa > wb;
}

/* Under retry_lock. */
static void
retry_source_update (RetrySource *rs)
{
  GSequenceIter *first = g_sequence_get_begin_iter (rs->queue);

  g_source_set_ready_time (&rs->source,
                           g_sequence_iter_is_end (first) ? -1 :
                           ((AsyncWait *) g_sequence_get (first))->retry_at);
}

static gboolean
retry_source_dispatch (GSource     *source,
                       GSourceFunc  callback,
                       gpointer     user_data)
{
  RetrySource *rs = (RetrySource *) source;
  gint64 now = g_get_monotonic_time ();

  for (int n = 0; n < RETRY_BATCH; n++)
    {
      GSequenceIter *first;
      AsyncWait *w;

      g_mutex_lock (&retry_lock);
      if (g_source_is_destroyed (source))
        {
          g_mutex_unlock (&retry_lock);
          return G_SOURCE_REMOVE;
        }
      first = g_sequence_get_begin_iter (rs->queue);
      if (g_sequence_iter_is_end (first) ||
          ((AsyncWait *) g_sequence_get (first))->retry_at > now)
        {
          retry_source_update (rs);
          g_mutex_unlock (&retry_lock);
          return G_SOURCE_CONTINUE;
        }
      w = g_sequence_get (first);
      g_sequence_remove (first);
      w->retry_iter = NULL;
      g_mutex_unlock (&retry_lock);

      /* It may finish, and free itself, or take a thread, or schedule
       * its next try. */
      backoff_retry (w);
    }
  return G_SOURCE_CONTINUE;   /* more are due: ready still */
}

static void
retry_source_finalize (GSource *source)
{
  g_sequence_free (((RetrySource *) source)->queue);
}

static GSourceFuncs retry_source_funcs = {
  NULL, NULL, retry_source_dispatch, retry_source_finalize, NULL, NULL,
};

static void
retry_register (AsyncWait *w)
{
  RetrySource *rs = NULL;

  g_mutex_lock (&retry_lock);
  for (GSList *l = retry_sources; l != NULL && rs == NULL; l = l->next)
    {
      RetrySource *candidate = l->data;

      if (candidate->context == w->context && candidate->priority == w->priority)
        rs = candidate;
    }
  if (rs == NULL)
    {
      rs = (RetrySource *) g_source_new (&retry_source_funcs, sizeof (RetrySource));
      rs->context = w->context;
      rs->priority = w->priority;
      rs->queue = g_sequence_new (NULL);
      g_source_set_priority (&rs->source, w->priority);
      g_source_set_static_name (&rs->source, "[portalock] retry locks");
      g_source_attach (&rs->source, w->context);
      retry_sources = g_slist_prepend (retry_sources, rs);
    }
  rs->n_waits++;
  w->retry_source = rs;
  g_mutex_unlock (&retry_lock);
}

/* When @w is to try again (0: at once); from any thread. */
static void
retry_schedule (AsyncWait *w,
                gint64     at)
{
  g_mutex_lock (&retry_lock);
  if (w->retry_iter != NULL)
    g_sequence_remove (w->retry_iter);
  w->retry_at = at;
  w->retry_iter = g_sequence_insert_sorted (w->retry_source->queue, w, compare_retry_at, NULL);
  retry_source_update (w->retry_source);
  g_mutex_unlock (&retry_lock);
}

static void
retry_unregister (AsyncWait *w)
{
  RetrySource *rs = w->retry_source;

  if (rs == NULL)
    return;
  g_mutex_lock (&retry_lock);
  if (w->retry_iter != NULL)
    g_sequence_remove (w->retry_iter);
  w->retry_iter = NULL;
  w->retry_source = NULL;
  if (--rs->n_waits == 0)
    {
      retry_sources = g_slist_remove (retry_sources, rs);
      g_source_destroy (&rs->source);
      g_source_unref (&rs->source);
    }
  else
    retry_source_update (rs);
  g_mutex_unlock (&retry_lock);
}

static void
backoff_detach (AsyncWait *w)
{
  retry_unregister (w);
  if (w->cancel_source != NULL)
    {
      g_source_destroy (w->cancel_source);
      g_clear_pointer (&w->cancel_source, g_source_unref);
    }
}

#ifdef HAVE_KERNEL_WAIT

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
slot_queue_join (AsyncWait *w)
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
slot_queue_leave (AsyncWait *w)
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
      AsyncWait *w = link->data;

      w->queued = FALSE;
      w->kicked = TRUE;
      retry_schedule (w, 0);
    }
  g_mutex_unlock (&slot_queue_lock);
}

#endif /* HAVE_KERNEL_WAIT */

static void
backoff_finish (AsyncWait *w,
                int        result)
{
#ifdef HAVE_KERNEL_WAIT
  if (w->local && slot_queue_leave (w))
    slot_queue_kick ();
#endif
  backoff_detach (w);
  w->callback (result, NULL, PORTA_HOLDER_RETRYING_WAIT, w->user_data);
  async_wait_free (w);
}

#ifdef HAVE_KERNEL_WAIT
static gboolean thread_wait_start (AsyncWait *w);
#endif

/* The next try, at a microsecond time: many waits' retries stay spread out
 * instead of bunched into the same millisecond. */
static void
backoff_schedule (AsyncWait *w)
{
  gint64 sleep_us = backoff_sleep_us (&w->delay, w->deadline);

  retry_schedule (w, g_get_monotonic_time () + sleep_us);
}

static void
backoff_retry (AsyncWait *w)
{
#ifdef HAVE_KERNEL_WAIT
  gboolean kicked = w->local && slot_queue_leave (w);
#endif
  int r;

  /* Cancelled, but this retry came first in the same main-loop iteration:
   * the cancellation wins. */
  if (g_cancellable_is_cancelled (w->cancellable))
    r = ECANCELED;
  else
    r = w->ops->lock (w->fd, w->mode, FALSE);

  if (r == EWOULDBLOCK && w->deadline >= 0 && g_get_monotonic_time () >= w->deadline)
    r = ETIMEDOUT;
  if (r != EWOULDBLOCK)
    {
      backoff_finish (w, r);
#ifdef HAVE_KERNEL_WAIT
      if (kicked)
        slot_queue_kick ();
#endif
      return;
    }
#ifdef HAVE_KERNEL_WAIT
  /* A local wait that backs off only for want of a thread takes one as
   * soon as one is free. */
  if (w->local && thread_wait_start (w))
    {
      backoff_detach (w);
      return;
    }
#endif
  backoff_schedule (w);
#ifdef HAVE_KERNEL_WAIT
  if (w->local)
    slot_queue_join (w);
#endif
}

static gboolean
backoff_cancelled (GCancellable *cancellable,
                   gpointer      user_data)
{
  backoff_finish (user_data, ECANCELED);
  return G_SOURCE_REMOVE;
}

static void
backoff_wait_async (AsyncWait *w)
{
  /* Many waits that start together (say, more than there are waiter
   * threads) must not retry in lockstep: start each at a random delay. */
  w->delay = g_random_int_range (BACKOFF_MIN_US, 4 * BACKOFF_MIN_US);
  if (w->cancellable != NULL)
    {
      w->cancel_source = g_cancellable_source_new (w->cancellable);
      g_source_set_priority (w->cancel_source, w->priority);
      g_source_set_callback (w->cancel_source, G_SOURCE_FUNC (backoff_cancelled), w, NULL);
      g_source_set_static_name (w->cancel_source, "[portalock] lock wait cancelled");
      g_source_attach (w->cancel_source, w->context);
    }
  retry_register (w);
  backoff_schedule (w);
#ifdef HAVE_KERNEL_WAIT
  if (w->local)
    slot_queue_join (w);
#endif
}

#ifdef HAVE_KERNEL_WAIT

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

/* The source a waiter thread makes ready when its wait is over. */
static GSourceFuncs ready_time_source_funcs = {
  NULL, NULL, ready_time_source_dispatch, NULL, NULL, NULL,
};

static gboolean
thread_wait_complete (gpointer user_data)
{
  AsyncWait *w = user_data;

  /* Only the thread makes this source ready, as its last act. */
  if (!g_atomic_int_get (&w->finished))
    return G_SOURCE_CONTINUE;

  /* The thread is ending: reap it before the callback runs, so that no
   * waiter thread outlives its wait, but without stalling the main context
   * on it. A thread that has not quite ended gets this CPU for a moment;
   * one that takes longer (after a release that woke many waiters at
   * once, a blocking join here took up to 1.4 ms on two cores) is tried
   * again after the context's other sources have run. */
#ifdef HAVE_PTHREAD_TRYJOIN_NP
  {
    gint64 give_up = g_get_monotonic_time () + JOIN_SPIN_US;

    while (pthread_tryjoin_np (w->thread, NULL) == EBUSY)
      {
        if (g_get_monotonic_time () >= give_up)
          {
            g_source_set_ready_time (w->done_source, 0);
            return G_SOURCE_CONTINUE;
          }
        sched_yield ();
      }
  }
#else
  pthread_join (w->thread, NULL);
#endif
  g_atomic_int_add (&n_waiter_threads, -1);
  slot_queue_kick ();
  g_clear_pointer (&w->done_source, g_source_unref);
  if (w->result != ETIMEDOUT)
    g_clear_pointer (&w->holder, g_free);
  w->callback (w->result, g_steal_pointer (&w->holder), w->unknown, w->user_data);
  async_wait_free (w);
  return G_SOURCE_REMOVE;
}

static void *
thread_wait_main (void *data)
{
  AsyncWait *w = data;
  PortaLockFile lf = { w->fd, w->dev, w->ino, TRUE, FALSE };
  GSource *done = w->done_source;

  w->result = kernel_wait (w->ops, &lf, w->mode, w->deadline, w->cancellable,
                           &w->holder, &w->unknown);
  if (w->result < 0)
    {
      w->unknown = PORTA_HOLDER_RETRYING_WAIT;
      w->result = backoff_wait_sync (w->ops, w->fd, w->mode, w->deadline, w->cancellable);
    }

  /* The source was attached by the main context's side, which holds its
   * reference: all the thread does is make it ready. */
  g_atomic_int_set (&w->finished, 1);
  g_source_set_ready_time (done, 0);
  return NULL;
}

/* Starts a thread for a local wait (one that can be interrupted as it
 * needs to be) if a slot is free. */
static gboolean
thread_wait_start (AsyncWait *w)
{
  pthread_attr_t attr;
  sigset_t all, old;
  int r;

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
  g_source_attach (w->done_source, w->context);

  r = pthread_create (&w->thread, &attr, thread_wait_main, w);
  pthread_sigmask (SIG_SETMASK, &old, NULL);
  pthread_attr_destroy (&attr);
  if (r != 0)
    {
      g_source_destroy (w->done_source);
      g_clear_pointer (&w->done_source, g_source_unref);
      g_atomic_int_add (&n_waiter_threads, -1);
    }
  return r == 0;
}

#endif /* HAVE_KERNEL_WAIT */

#ifdef G_OS_WIN32

/* The event source of an overlapped wait: ready when the request's event
 * is signalled, or at the deadline (its ready time). Cancellation comes
 * through the cancellable's own child source. */

static void
overlapped_finish (AsyncWait *w,
                   int        result)
{
  if (w->overlapped_source != NULL)
    {
      g_source_destroy (w->overlapped_source);
      g_clear_pointer (&w->overlapped_source, g_source_unref);
    }
  g_clear_pointer (&w->overlapped, g_free);
  if (w->event != NULL)
    CloseHandle (w->event);
  w->event = NULL;
  w->callback (result, NULL, PORTA_HOLDER_NOT_TOLD, w->user_data);
  async_wait_free (w);
}

static gboolean
overlapped_dispatch (gpointer user_data)
{
  AsyncWait *w = user_data;
  int r;

  if (g_cancellable_is_cancelled (w->cancellable))
    r = porta_win32_lock_finish (&w->lf, w->overlapped, TRUE);
  else if (WaitForSingleObject (w->event, 0) == WAIT_OBJECT_0)
    r = porta_win32_lock_finish (&w->lf, w->overlapped, FALSE);
  else if (w->deadline >= 0 && g_get_monotonic_time () >= w->deadline)
    {
      r = porta_win32_lock_finish (&w->lf, w->overlapped, TRUE);
      if (r == ECANCELED)
        r = ETIMEDOUT;
    }
  else
    return G_SOURCE_CONTINUE;   /* woken early: the request is still pending */

  overlapped_finish (w, r);
  return G_SOURCE_REMOVE;
}

static gboolean
overlapped_cancelled (GCancellable *cancellable,
                      gpointer      user_data)
{
  return overlapped_dispatch (user_data);
}

static gboolean
overlapped_source_dispatch (GSource     *source,
                            GSourceFunc  callback,
                            gpointer     user_data)
{
  return callback (user_data);
}

static gboolean
overlapped_source_check (GSource *source)
{
  AsyncWait *w = *(AsyncWait **) (gpointer) (source + 1);

  return (w->event_pollfd.revents & G_IO_IN) != 0;
}

static GSourceFuncs overlapped_source_funcs = {
  NULL, overlapped_source_check, overlapped_source_dispatch, NULL, NULL, NULL,
};

static gboolean
overlapped_report (gpointer user_data)
{
  AsyncWait *w = user_data;

  w->callback (w->result, NULL, PORTA_HOLDER_NOT_TOLD, w->user_data);
  async_wait_free (w);
  return G_SOURCE_REMOVE;
}

static void
overlapped_wait_async (AsyncWait *w)
{
  int r;

  w->event = CreateEventW (NULL, TRUE, FALSE, NULL);
  if (w->event == NULL)
    {
      /* No event to wait on: back off instead. */
      backoff_wait_async (w);
      return;
    }
  w->overlapped = g_malloc0 (porta_win32_overlapped_size ());
  r = porta_win32_lock_start (&w->lf, w->mode, w->overlapped, w->event);
  if (r != EINPROGRESS)
    {
      /* Granted or refused at once: report it from the main context, as
       * every async wait does, never from inside the call. */
      GSource *idle = g_idle_source_new ();

      g_clear_pointer (&w->overlapped, g_free);
      CloseHandle (w->event);
      w->event = NULL;
      w->result = r;
      g_source_set_priority (idle, w->priority);
      g_source_set_callback (idle, overlapped_report, w, NULL);
      g_source_set_static_name (idle, "[portalock] lock wait done");
      g_source_attach (idle, w->context);
      g_source_unref (idle);
      return;
    }

  w->overlapped_source = g_source_new (&overlapped_source_funcs,
                                       sizeof (GSource) + sizeof (AsyncWait *));
  *(AsyncWait **) (gpointer) (w->overlapped_source + 1) = w;
  w->event_pollfd.fd = (gintptr) w->event;
  w->event_pollfd.events = G_IO_IN;
  g_source_add_poll (w->overlapped_source, &w->event_pollfd);
  if (w->cancellable != NULL)
    {
      GSource *cancel = g_cancellable_source_new (w->cancellable);

      g_source_set_callback (cancel, G_SOURCE_FUNC (overlapped_cancelled), w, NULL);
      g_source_add_child_source (w->overlapped_source, cancel);
      g_source_unref (cancel);
    }
  if (w->deadline >= 0)
    g_source_set_ready_time (w->overlapped_source, w->deadline);
  g_source_set_priority (w->overlapped_source, w->priority);
  g_source_set_callback (w->overlapped_source, overlapped_dispatch, w, NULL);
  g_source_set_static_name (w->overlapped_source, "[portalock] overlapped lock wait");
  g_source_attach (w->overlapped_source, w->context);
}

#endif /* G_OS_WIN32 */

void
porta_waiter_wait_async (const PortaBackendOps *ops,
                         const PortaLockFile   *lf,
                         gboolean               back_off,
                         PortaLockMode          mode,
                         gint64                 deadline,
                         GCancellable          *cancellable,
                         int                    priority,
                         PortaWaiterCallback    callback,
                         gpointer               user_data)
{
  AsyncWait *w = g_new0 (AsyncWait, 1);

  w->ops = ops;
  w->fd = lf->fd;
  w->mode = mode;
  w->deadline = deadline;
  w->cancellable = cancellable != NULL ? g_object_ref (cancellable) : NULL;
  w->context = g_main_context_ref_thread_default ();
  w->priority = priority;
  w->callback = callback;
  w->user_data = user_data;
  w->dev = lf->dev;
  w->ino = lf->ino;

#ifdef HAVE_KERNEL_WAIT
  /* A wait that must be interruptible needs the signal to wait in a
   * thread; without one it backs off for good. */
  w->local = !back_off &&
             (get_interrupt_signal () != 0 || (deadline < 0 && cancellable == NULL));
  if (w->local && thread_wait_start (w))
    return;
#endif
#ifdef G_OS_WIN32
  if (!back_off && lf->overlapped)
    {
      w->lf = *lf;
      overlapped_wait_async (w);
      return;
    }
#endif
  backoff_wait_async (w);
}
