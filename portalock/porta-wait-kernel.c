/* porta-wait-kernel.c: a wait blocked in the kernel, interrupted for its deadline or
 * cancellation by a reserved signal that a POSIX timer sends
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <stdlib.h>

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
#define HOLDER_LOOKUP_BEFORE_US   (50 * 1000)
#define HOLDER_LOOKUP_MIN_WAIT_US (100 * 1000)

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
int
porta_wait_kernel (const PortaBackendOps  *ops,
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

  sig = porta_wait_interrupt_signal ();
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
