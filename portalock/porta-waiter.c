/* porta-waiter.c: waiting for a contended lock: chooses, for each wait, the
 * way it waits (see porta-wait-private.h for the file of each)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>

#include <gio/gio.h>

#include "porta-wait-private.h"
#include "porta-win32-private.h"

/* How a contended lock is waited for.
 *
 * On a local filesystem the wait blocks in the kernel (flock(), F_SETLKW,
 * F_OFD_SETLKW): the waiter uses no CPU and the kernel hands it the lock the
 * moment it is free. A sync wait blocks in the calling thread; an async wait
 * blocks in a thread of its own, never in GTask's shared pool, where a
 * parked wait would starve every other GIO call of the process.
 *
 * A blocked lock call can only be interrupted by a signal. A wait that
 * has a deadline or a cancellable arms its thread's POSIX timer (one per
 * thread, kept between waits) to send a reserved real-time signal, without
 * SA_RESTART, to the waiting thread: shortly before the deadline, after
 * which the wait tries without blocking until the deadline, and at once,
 * by pthread_kill(), when the cancellable fires. The timer keeps firing
 * every INTERRUPT_INTERVAL_NS until the wait ends, because a signal that
 * lands just before the thread enters the lock call is lost (after a
 * cancellation, from CANCEL_REPEAT_NS on: porta-wait-kernel.c). An async
 * wait's main context is woken for the deadline and the cancellation at
 * the same time as the thread, not by it (porta-wait-thread.c).
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
    r = porta_wait_kernel (NULL, ops, lf, mode, deadline, cancellable, holder, unknown);
#endif
#ifdef G_OS_WIN32
  if (!back_off && lf->overlapped)
    {
      /* Windows does not list its locks. */
      *unknown = PORTA_HOLDER_NOT_TOLD;
      r = porta_wait_overlapped_sync (lf, mode, deadline, cancellable);
    }
#endif
  if (r < 0)
    {
      *unknown = PORTA_HOLDER_RETRYING_WAIT;
      r = porta_wait_backoff_sync (ops, lf->fd, mode, deadline, cancellable);
    }
  if (r != ETIMEDOUT)
    g_clear_pointer (holder, g_free);
  return r;
}

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
  PortaAsyncWait *w = g_new0 (PortaAsyncWait, 1);

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
   * thread; without one it backs off for good. A local wait that finds no
   * thread free backs off until one is. */
  if (!back_off &&
      (porta_wait_interrupt_signal () != 0 || (deadline < 0 && cancellable == NULL)))
    {
      w->slots = &porta_wait_thread_slots;
      if (w->slots->start (w))
        return;
    }
#endif
#ifdef G_OS_WIN32
  if (!back_off && lf->overlapped)
    {
      w->lf = *lf;
      porta_wait_overlapped_async (w);
      return;
    }
#endif
  porta_wait_backoff_async (w);
}
