/* porta-wait-private.h: what the ways of waiting for a lock share
 *
 * porta-waiter.c chooses the way for each wait; each way is a file of its
 * own and owns its part of an async wait's state:
 *
 *   porta-wait-kernel.c    blocking in the kernel, interrupted by a
 *                          reserved signal sent by a POSIX timer
 *   porta-wait-backoff.c   retrying with a back-off, and the one retry
 *                          source of each main context
 *   porta-wait-thread.c    the waiter threads of async kernel waits, and
 *                          the queue of waits that wait for a thread
 *   porta-wait-win32.c     overlapped LockFileEx() requests on Windows
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "config.h"

#include <gio/gio.h>

#ifdef G_OS_UNIX
# include <pthread.h>
# include <sched.h>
# include <time.h>
#endif
#ifdef G_OS_WIN32
# include <windows.h>
#endif

#include "porta-waiter-private.h"

G_BEGIN_DECLS

#ifndef EINPROGRESS
# define EINPROGRESS 112
#endif

#if defined (__linux__) && defined (HAVE_TIMER_CREATE) && defined (HAVE_GETTID)
# define HAVE_KERNEL_WAIT 1
#endif

typedef struct _PortaAsyncWait PortaAsyncWait;

/* What a back-off wait asks of the waiter threads while it waits for one
 * to be free: porta-wait-thread.c gives it, porta-wait-backoff.c only calls
 * it, so that the back-off knows nothing of threads and the files call
 * one another in one direction only. */
typedef struct
{
  /* Takes a free thread for @w; FALSE if none is free. */
  gboolean (*start) (PortaAsyncWait *w);
  /* Queues @w for the next thread that is freed (after scheduling its
   * retry: a kick must not be overwritten). */
  void     (*join)  (PortaAsyncWait *w);
  /* Takes @w out of the queue; returns whether it was kicked since it
   * joined, when the kick must be passed on unless @w takes the thread. */
  gboolean (*leave) (PortaAsyncWait *w);
  /* Wakes the first queued wait at once. */
  void     (*kick)  (void);
} PortaWaitSlots;

/* Async waits share this state, whichever way they wait; each group of
 * fields below belongs to the file it names. */
struct _PortaAsyncWait
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
  /* a local wait, one that waits in a thread when one is free: the
   * threads; NULL for a wait that only backs off */
  const PortaWaitSlots  *slots;

  /* porta-wait-backoff.c */
  struct _RetrySource   *retry_source;  /* shared; under retry_lock: */
  GSequenceIter         *retry_iter;    /* where it is in its queue, or NULL */
  gint64                 retry_at;      /* when it is to try again */
  GSource               *cancel_source;
  gint64                 delay;

  /* porta-wait-thread.c */
#ifdef G_OS_UNIX
  pthread_t              thread;
#endif
  GSource               *done_source;  /* made ready by the thread, a
                                        * cancellation or the timerfd */
  int                    deadline_fd;  /* a timerfd on done_source, or -1 */
  int                    finished;     /* atomic: result and holder are set */
  GList                  slot_link;    /* in slot_queue, under slot_queue_lock */
  gboolean               queued;       /* under slot_queue_lock */
  gboolean               kicked;       /* under slot_queue_lock */

#ifdef G_OS_WIN32
  /* porta-wait-win32.c */
  PortaLockFile          lf;
  HANDLE                 event;
  gpointer               overlapped;
  GSource               *overlapped_source;
  GPollFD                event_pollfd;
#endif
};

static inline void
porta_async_wait_free (PortaAsyncWait *w)
{
  g_free (w->holder);
  g_clear_object (&w->cancellable);
  g_main_context_unref (w->context);
  g_free (w);
}

#ifdef G_OS_UNIX
/* A time in monotonic microseconds (g_get_monotonic_time() reads
 * CLOCK_MONOTONIC on Linux) for an absolute timer. */
static inline struct timespec
porta_timespec_from_us (gint64 us)
{
  return (struct timespec) { us / G_USEC_PER_SEC, (us % G_USEC_PER_SEC) * 1000 };
}

/* In @w's waiter thread, once its result (and holder) is final: tells the
 * main context, which may run the callback while the thread ends the
 * wait. The context's thread was often woken on this CPU (by the same
 * timer interrupt, or by this thread), so this one yields: the callback
 * runs now, not after this thread has ended the wait and exited. */
static inline void
porta_async_wait_report (PortaAsyncWait *w,
                         int             result)
{
  w->result = result;
  g_atomic_int_set (&w->finished, 1);
  g_source_set_ready_time (w->done_source, 0);
  sched_yield ();
}
#endif

#ifdef HAVE_KERNEL_WAIT
/* porta-wait-kernel.c: the reserved signal, or 0 if none is free. */
int      porta_wait_interrupt_signal  (void);
/* A wait blocked in the kernel; -1 when it cannot interrupt one, and the
 * caller must back off instead. @async is the async wait it runs for, in
 * its waiter thread, or NULL for a sync wait. A cancellation makes its
 * done_source ready as it interrupts the thread, so that the main context
 * wakes meanwhile, not after it; and once the result (and @holder,
 * @unknown) is final, the wait stores it in @async, sets finished and
 * makes the source ready before it ends (disconnects from the
 * cancellable, disarms its timer), so that the callback need not wait
 * for that. */
int      porta_wait_kernel            (PortaAsyncWait         *async,
                                       const PortaBackendOps  *ops,
                                       const PortaLockFile    *lf,
                                       PortaLockMode           mode,
                                       gint64                  deadline,
                                       GCancellable           *cancellable,
                                       char                  **holder,
                                       PortaHolderUnknown     *unknown);
#endif

/* porta-wait-backoff.c */
int      porta_wait_backoff_sync      (const PortaBackendOps  *ops,
                                       int                     fd,
                                       PortaLockMode           mode,
                                       gint64                  deadline,
                                       GCancellable           *cancellable);
void     porta_wait_backoff_async     (PortaAsyncWait         *w);
/* Moves @w's next try to @at (monotonic microseconds). */
void     porta_wait_backoff_retry_at  (PortaAsyncWait         *w,
                                       gint64                  at);

#ifdef HAVE_KERNEL_WAIT
/* porta-wait-thread.c: the waiter threads of local waits. */
extern const PortaWaitSlots porta_wait_thread_slots;
#endif

#ifdef G_OS_WIN32
/* porta-wait-win32.c: @lf must be overlapped. The sync wait returns the
 * codes of porta_waiter_wait_sync(), or -1 when it cannot wait and the
 * caller must back off instead. */
int      porta_wait_overlapped_sync   (const PortaLockFile    *lf,
                                       PortaLockMode           mode,
                                       gint64                  deadline,
                                       GCancellable           *cancellable);
void     porta_wait_overlapped_async  (PortaAsyncWait         *w);
#endif

G_END_DECLS
