/* porta-waiter-private.h: waiting for a contended lock
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

#include "porta-common-private.h"
#include "porta-lock-file-private.h"

G_BEGIN_DECLS

/* Both calls wait until the lock on @lf is taken, @deadline (monotonic
 * microseconds, or -1 for none) passes, or @cancellable is cancelled. They
 * return 0, ETIMEDOUT, ECANCELED or the errno value of a failed lock call.
 * A wait that ends without the lock never holds it afterwards. @back_off
 * (porta_lock_file_must_back_off()) says the wait must retry with a
 * back-off instead of blocking in the kernel. A wait with a deadline looks up the
 * holder in the background and, when it times out, returns its
 * description in @holder (NULL if unknown by then, and @unknown says
 * why). */

int  porta_waiter_wait_sync  (const PortaBackendOps *ops,
                              const PortaLockFile   *lf,
                              gboolean               back_off,
                              PortaLockMode          mode,
                              gint64                 deadline,
                              GCancellable          *cancellable,
                              char                 **holder,
                              PortaHolderUnknown    *unknown);

/* @holder (transfer full, nullable): for ETIMEDOUT, who held the lock, or
 * NULL and @unknown says why. */
typedef void (*PortaWaiterCallback) (int                 result,
                                     char               *holder,
                                     PortaHolderUnknown  unknown,
                                     gpointer            user_data);

/* The callback runs once, in the thread-default main context of the
 * caller, at @priority. */
void porta_waiter_wait_async (const PortaBackendOps *ops,
                              const PortaLockFile   *lf,
                              gboolean               back_off,
                              PortaLockMode          mode,
                              gint64                 deadline,
                              GCancellable          *cancellable,
                              int                    priority,
                              PortaWaiterCallback    callback,
                              gpointer               user_data);

G_END_DECLS
