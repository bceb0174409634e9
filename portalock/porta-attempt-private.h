/* porta-attempt-private.h: try a lock, then wait for it
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

#include "porta-common-private.h"
#include "porta-lock-file-private.h"

G_BEGIN_DECLS

/* What one try of a lock came to. */
typedef enum
{
  PORTA_TRY_ERROR = -1,  /* failed, error set */
  PORTA_TRY_HELD,        /* the lock is held */
  PORTA_TRY_BUSY,        /* someone else holds it */
  PORTA_TRY_AGAIN,       /* the file was replaced under us: start over */
} PortaTry;

/* What the engine asks of the lock it takes: PortaLock's acquire and
 * convert and porta_fd_lock() each give one, with @owner their state.
 * The engine owns the order (try without waiting; fail at once for a
 * timeout of 0; wait until the deadline; check what the wait took; start
 * over when told), the lock kind what each step means. */
typedef struct
{
  /* Tries once, without waiting; or, with @block, when the lock is taken,
   * waits in the kernel for as long as it takes (the engine only asks that
   * for a wait with neither timeout nor cancellable). */
  PortaTry (*try_once) (gpointer      owner,
                        gboolean      block,
                        GError      **error);
  /* What a wait blocks on, once a try found the lock taken. */
  void     (*get_wait) (gpointer                owner,
                        const PortaBackendOps **ops,
                        const PortaLockFile   **lf,
                        gboolean               *back_off,
                        PortaLockMode          *mode);
  /* After a wait took the lock: PORTA_TRY_HELD, PORTA_TRY_AGAIN to start
   * over, or PORTA_TRY_ERROR. NULL: held. */
  PortaTry (*check)    (gpointer      owner,
                        GError      **error);
  /* Ends an attempt without the lock, for an errno value of a failed lock
   * call, EWOULDBLOCK, ETIMEDOUT or ECANCELED. */
  void     (*fail)     (gpointer             owner,
                        int                  result,
                        int                  timeout_ms,
                        const char          *holder,
                        PortaHolderUnknown   unknown,
                        GError             **error);
} PortaAttemptOps;

/* An attempt on a descriptor that is open, and identified, already: there
 * is nothing to open or to verify, and a failure leaves it as it was
 * (a conversion of a held lock, porta_fd_lock()). Its ops are
 * porta_fd_attempt_ops. */
typedef struct
{
  const PortaBackendOps *ops;
  const PortaLockFile   *lf;
  PortaLockMode          mode;
  const char            *display;   /* for messages */
} PortaFdAttempt;

extern const PortaAttemptOps porta_fd_attempt_ops;

/* Takes the lock, waiting in the calling thread at most @timeout_ms (-1:
 * for as long as it takes, 0: try once). */
gboolean porta_attempt_run       (const PortaAttemptOps  *ops,
                                  gpointer                owner,
                                  int                     timeout_ms,
                                  GCancellable           *cancellable,
                                  GError                **error);

/* @error (transfer full, nullable): why the lock was not taken. */
typedef void (*PortaAttemptCallback) (gpointer  owner,
                                      GError   *error,
                                      gpointer  user_data);

/* The same without blocking: @callback runs once, at @priority in the
 * caller's thread-default main context when the attempt waits, or before
 * this returns when it does not. */
void     porta_attempt_run_async (const PortaAttemptOps  *ops,
                                  gpointer                owner,
                                  int                     timeout_ms,
                                  GCancellable           *cancellable,
                                  int                     priority,
                                  PortaAttemptCallback    callback,
                                  gpointer                user_data);

G_END_DECLS
