/* porta-wait-kernel.c: a wait blocked in the kernel, interrupted for its deadline or
 * cancellation by a reserved signal that a POSIX timer sends
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <gio/gio.h>

#ifdef G_OS_UNIX
# include <pthread.h>
# include <signal.h>
# include <time.h>
# include <unistd.h>
#endif

#include "porta-holder-private.h"
#include "porta-wait-private.h"

#ifdef HAVE_KERNEL_WAIT

#define INTERRUPT_INTERVAL_NS (200 * 1000)
/* How long after a cancellation's own signal the timer first repeats it,
 * for the rare signal that lands just before the thread enters the lock
 * call: later than the next scheduler tick of a busy CPU (4 ms at
 * HZ=250), so that the timer is not the CPU's next event. Arming or
 * cancelling the next event reprograms the CPU's timer device, which on
 * a VM is an exit to the host: 8 us here, paid by the canceller after its
 * signal and again by the interrupted waiter, before it can return. */
#define CANCEL_REPEAT_NS          (5 * 1000 * 1000)
#define HOLDER_LOOKUP_BEFORE_US   (50 * 1000)
#define HOLDER_LOOKUP_MIN_WAIT_US (100 * 1000)
/* How long before its deadline a wait stops blocking and tries the lock
 * without blocking until the deadline: about what it takes a timer to
 * wake an idle CPU on a VM (90-150 us here), which would otherwise make
 * every timeout that late. */
#define DEADLINE_SPIN_US          200

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
int
porta_wait_interrupt_signal (void)
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

/* Each thread that waits keeps one timer, made at its first wait and
 * deleted when it ends: arming and disarming a timer costs about a third
 * of making and deleting one (0.5 us against 1.3 us to end a wait on this
 * VM), and ending the wait is on the path of every hand-off, with the lock
 * already held. A child of fork() has none of its parent's timers, and
 * must not take a timer of its own for the parent's. */
static __thread timer_t thread_timer;
static __thread gboolean thread_has_timer;

static void
thread_timer_delete (gpointer data)
{
  if (thread_has_timer)
    timer_delete (thread_timer);
  thread_has_timer = FALSE;
}

static GPrivate thread_timer_key = G_PRIVATE_INIT (thread_timer_delete);

static void
thread_timer_forget (void)
{
  thread_has_timer = FALSE;
}

/* This thread's timer, sending @sig to this thread, or FALSE if none can
 * be made. */
static gboolean
get_thread_timer (int      sig,
                  timer_t *timer)
{
  static gsize once = 0;
  struct sigevent sev = { 0 };

  if (g_once_init_enter (&once))
    {
      pthread_atfork (NULL, NULL, thread_timer_forget);
      g_once_init_leave (&once, 1);
    }
  if (!thread_has_timer)
    {
      sev.sigev_notify = SIGEV_THREAD_ID;
      sev.sigev_signo = sig;
      sev._sigev_un._tid = gettid ();
      if (timer_create (CLOCK_MONOTONIC, &sev, &thread_timer) != 0)
        return FALSE;
      thread_has_timer = TRUE;
      g_private_set (&thread_timer_key, GINT_TO_POINTER (1));
    }
  *timer = thread_timer;
  return TRUE;
}

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
disarm_timer (timer_t timer)
{
  struct itimerspec its = { 0 };

  timer_settime (timer, 0, &its, NULL);
}

typedef struct _PortaInterrupt PortaInterrupt;

/* A wait in the kernel, from the start of its lock call to the end of
 * what interrupts it. */
typedef struct
{
  gboolean        armed;         /* the timer and handler below are set up */
  timer_t         timer;         /* the waiting thread's */
  int             signo;
  gboolean        restore_mask;  /* the thread had the signal blocked */
  sigset_t        set;           /* just the signal */
  GCancellable   *cancellable;
  gulong          handler;
  PortaInterrupt *interrupt;     /* shared with the handler, or NULL */
} PortaKernelWait;

/* What a cancellation handler needs, on the heap: the handler may still
 * be running in another thread, or about to run, when the wait has ended
 * and disconnected it. The state tells the handler whether the wait is
 * still there to interrupt, and tells the wait's end whether a handler
 * is interrupting it right now; the wait's end then sleeps on @cond
 * until the handler is done. */
enum
{
  INTERRUPT_WAITING,
  INTERRUPT_INTERRUPTING,
  INTERRUPT_INTERRUPTED,
  INTERRUPT_ENDED,
};

struct _PortaInterrupt
{
  int        ref_count;   /* atomic */
  int        state;       /* atomic */
  int        cancelled;   /* atomic */
  pthread_t  thread;
  timer_t    timer;
  int        signo;
  GSource   *wake;
  GMutex     lock;        /* for @cond, and for @state to leave INTERRUPTING */
  GCond      cond;
};

static void
interrupt_unref (PortaInterrupt *in)
{
  if (g_atomic_int_dec_and_test (&in->ref_count))
    {
      g_mutex_clear (&in->lock);
      g_cond_clear (&in->cond);
      g_free (in);
    }
}

static void
interrupt_closure_unref (gpointer  data,
                         GClosure *closure)
{
  interrupt_unref (data);
}

static void
on_cancelled (GCancellable *cancellable,
              gpointer      user_data)
{
  PortaInterrupt *in = user_data;

  if (!g_atomic_int_compare_and_exchange (&in->state, INTERRUPT_WAITING, INTERRUPT_INTERRUPTING))
    return;
  g_atomic_int_set (&in->cancelled, 1);
  /* The signal goes at once, not through the timer: a timer due now
   * still fires only at the next timer interrupt (100 us later on this
   * VM). Then the timer repeats it, in case it landed just before the
   * thread entered the lock call. */
  pthread_kill (in->thread, in->signo);
  /* An async wait's main context wakes in parallel with the thread, not
   * after it: each wake of an idle CPU costs as much as a GCancellable
   * source's whole latency on a VM. */
  if (in->wake != NULL)
    g_source_set_ready_time (in->wake, 0);
  arm_timer (in->timer, 0, (struct timespec) { 0, CANCEL_REPEAT_NS });
  g_mutex_lock (&in->lock);
  g_atomic_int_set (&in->state, INTERRUPT_INTERRUPTED);
  g_cond_signal (&in->cond);
  g_mutex_unlock (&in->lock);
}

static gboolean
kernel_wait_cancelled (PortaKernelWait *kw)
{
  return kw->interrupt != NULL && g_atomic_int_get (&kw->interrupt->cancelled);
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
 * delay that reading /proc/locks takes (see porta-holder.c). Then it
 * fires DEADLINE_SPIN_US before the deadline, and the wait tries the lock
 * without blocking until it is taken or the deadline has come: a wait that
 * times out spends at most that long of a CPU to time out when it should,
 * not a timer's wake-up later. (Yielding between tries made a timeout a
 * scheduler slice late whenever another task was runnable.)
 *
 * When it returns with @kw->armed set, the lock call is over and its
 * result final, but the timer may still fire and a cancellation handler
 * may still run: kernel_wait_end() must follow, in this thread. */
static int
kernel_wait_block (PortaKernelWait        *kw,
                   GSource                *wake,
                   const PortaBackendOps  *ops,
                   const PortaLockFile    *lf,
                   PortaLockMode           mode,
                   gint64                  deadline,
                   GCancellable           *cancellable,
                   char                  **holder,
                   PortaHolderUnknown     *unknown)
{
  sigset_t old;
  gint64 lookup_at = -1;
  gint64 spin_at = -1;
  int fd = lf->fd;
  int r;

  memset (kw, 0, sizeof *kw);
  if (deadline < 0 && cancellable == NULL)
    {
      do
        r = ops->lock (fd, mode, TRUE);
      while (r == EINTR);
      return r;
    }

  kw->signo = porta_wait_interrupt_signal ();
  if (kw->signo == 0 || !get_thread_timer (kw->signo, &kw->timer))
    return -1;
  kw->armed = TRUE;

  sigemptyset (&kw->set);
  sigaddset (&kw->set, kw->signo);
  pthread_sigmask (SIG_UNBLOCK, &kw->set, &old);
  kw->restore_mask = sigismember (&old, kw->signo);

  /* g_get_monotonic_time() reads CLOCK_MONOTONIC on Linux. */
  if (deadline >= 0 && deadline - g_get_monotonic_time () > HOLDER_LOOKUP_MIN_WAIT_US)
    lookup_at = deadline - HOLDER_LOOKUP_BEFORE_US;
  *unknown = lookup_at >= 0 ? PORTA_HOLDER_NOT_TOLD : PORTA_HOLDER_WAIT_TOO_SHORT;
  if (deadline >= 0)
    {
      spin_at = deadline - DEADLINE_SPIN_US;
      arm_timer (kw->timer, TIMER_ABSTIME, porta_timespec_from_us (lookup_at >= 0 ? lookup_at : spin_at));
    }
  if (cancellable != NULL)
    {
      /* Not g_cancellable_connect(): g_cancellable_disconnect() waits for
       * the whole emission of a cancellation in another thread to end,
       * and a wait that was interrupted would wait for the canceller
       * (often the next hop of a scheduler on a VM). The state does the
       * same for this handler alone; a cancellation before it was
       * connected is caught by the check after. */
      PortaInterrupt *in = g_new0 (PortaInterrupt, 1);

      in->ref_count = 2;
      in->state = INTERRUPT_WAITING;
      g_mutex_init (&in->lock);
      g_cond_init (&in->cond);
      in->thread = pthread_self ();
      in->timer = kw->timer;
      in->signo = kw->signo;
      in->wake = wake;
      kw->interrupt = in;
      kw->cancellable = g_object_ref (cancellable);
      kw->handler = g_signal_connect_data (cancellable, "cancelled", G_CALLBACK (on_cancelled),
                                           in, interrupt_closure_unref, 0);
      if (g_cancellable_is_cancelled (cancellable))
        g_atomic_int_set (&in->cancelled, 1);
    }

  for (;;)
    {
      gint64 now;

      if (kernel_wait_cancelled (kw))
        {
          r = ECANCELED;
          break;
        }
      now = deadline >= 0 ? g_get_monotonic_time () : 0;
      if (deadline >= 0 && now >= deadline)
        {
          r = ETIMEDOUT;
          break;
        }
      if (lookup_at >= 0 && now >= lookup_at)
        {
          lookup_at = -1;
          g_free (*holder);
          *holder = describe_holder (lf, ops, &kw->set);
          arm_timer (kw->timer, TIMER_ABSTIME, porta_timespec_from_us (spin_at));
          continue;
        }
      if (spin_at >= 0 && now >= spin_at)
        {
          r = ops->lock (fd, mode, FALSE);
          if (r != EWOULDBLOCK && r != EINTR)
            break;
          continue;
        }
      r = ops->lock (fd, mode, TRUE);
      if (r != EINTR)
        break;
    }

  /* A cancellation that came while the kernel was granting the lock still
   * wins: the caller asked to stop, so the wait must not end holding it. */
  if (r == 0 && kernel_wait_cancelled (kw))
    {
      ops->unlock (fd);
      r = ECANCELED;
    }
  return r;
}

/* Once the state is ended, no handler touches the timer or the thread:
 * one that was interrupting is waited for, one that comes later does
 * nothing. The wait sleeps, not spins: the handler has only a few system
 * calls left, but its thread can be stopped for milliseconds (a VM's host
 * preempting its vCPU was traced doing it for 3.6 ms), and a spinning
 * thread keeps its CPU from going idle and taking over the main context's
 * thread queued behind the stopped one, so the callback waited as long.
 * A signal the timer sent is delivered no later than the return of
 * timer_settime(), while it is still unblocked here. */
static void
kernel_wait_end (PortaKernelWait *kw)
{
  if (!kw->armed)
    return;
  if (kw->interrupt != NULL)
    {
      PortaInterrupt *in = kw->interrupt;

      if (!g_atomic_int_compare_and_exchange (&in->state, INTERRUPT_WAITING, INTERRUPT_ENDED))
        {
          g_mutex_lock (&in->lock);
          while (g_atomic_int_get (&in->state) == INTERRUPT_INTERRUPTING)
            g_cond_wait (&in->cond, &in->lock);
          g_atomic_int_set (&in->state, INTERRUPT_ENDED);
          g_mutex_unlock (&in->lock);
        }
      g_signal_handler_disconnect (kw->cancellable, kw->handler);
      g_clear_object (&kw->cancellable);
      g_clear_pointer (&kw->interrupt, interrupt_unref);
    }
  disarm_timer (kw->timer);
  if (kw->restore_mask)
    pthread_sigmask (SIG_BLOCK, &kw->set, NULL);
  kw->armed = FALSE;
}

int
porta_wait_kernel (PortaAsyncWait         *async,
                   const PortaBackendOps  *ops,
                   const PortaLockFile    *lf,
                   PortaLockMode           mode,
                   gint64                  deadline,
                   GCancellable           *cancellable,
                   char                  **holder,
                   PortaHolderUnknown     *unknown)
{
  PortaKernelWait kw;
  int r;

  r = kernel_wait_block (&kw, async != NULL ? async->done_source : NULL, ops, lf, mode,
                         deadline, cancellable, holder, unknown);
  if (r >= 0 && async != NULL)
    porta_async_wait_report (async, r);
  kernel_wait_end (&kw);
  return r;
}

#endif /* HAVE_KERNEL_WAIT */
