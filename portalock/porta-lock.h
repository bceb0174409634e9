/* porta-lock.h: a lock on a file, shared between processes and threads
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined (PORTALOCK_INSIDE) && !defined (PORTALOCK_COMPILATION)
# error "Only <portalock/portalock.h> can be included directly."
#endif

#include <gio/gio.h>

#include "porta-types.h"
#include "porta-version-macros.h"

G_BEGIN_DECLS

#define PORTA_TYPE_LOCK (porta_lock_get_type ())

PORTA_AVAILABLE_IN_1_0
G_DECLARE_FINAL_TYPE (PortaLock, porta_lock, PORTA, LOCK, GObject)

PORTA_AVAILABLE_IN_1_0
PortaLock     *porta_lock_new               (GFile                *file,
                                             PortaLockMode         mode);
PORTA_AVAILABLE_IN_1_0
PortaLock     *porta_lock_new_for_path      (const char           *path,
                                             PortaLockMode         mode);
PORTA_AVAILABLE_IN_1_0
PortaLock     *porta_lock_new_full          (GFile                *file,
                                             PortaLockMode         mode,
                                             PortaBackend          backend,
                                             PortaLockFlags        flags);
PORTA_AVAILABLE_IN_1_2
PortaLock     *porta_lock_new_full_for_path (const char           *path,
                                             PortaLockMode         mode,
                                             PortaBackend          backend,
                                             PortaLockFlags        flags);

PORTA_AVAILABLE_IN_1_0
GFile         *porta_lock_get_file          (PortaLock            *self);
PORTA_AVAILABLE_IN_1_0
PortaLockMode  porta_lock_get_mode          (PortaLock            *self);
PORTA_AVAILABLE_IN_1_0
PortaBackend   porta_lock_get_backend       (PortaLock            *self);
PORTA_AVAILABLE_IN_1_0
PortaLockFlags porta_lock_get_flags         (PortaLock            *self);
PORTA_AVAILABLE_IN_1_0
gboolean       porta_lock_get_held          (PortaLock            *self);

PORTA_AVAILABLE_IN_1_0
gboolean       porta_lock_acquire           (PortaLock            *self,
                                             int                   timeout_ms,
                                             GCancellable         *cancellable,
                                             GError              **error);
PORTA_AVAILABLE_IN_1_0
gboolean       porta_lock_try_acquire       (PortaLock            *self,
                                             GError              **error);
PORTA_AVAILABLE_IN_1_0
void           porta_lock_acquire_async     (PortaLock            *self,
                                             int                   timeout_ms,
                                             int                   io_priority,
                                             GCancellable         *cancellable,
                                             GAsyncReadyCallback   callback,
                                             gpointer              user_data);
PORTA_AVAILABLE_IN_1_0
gboolean       porta_lock_acquire_finish    (PortaLock            *self,
                                             GAsyncResult         *result,
                                             GError              **error);
PORTA_AVAILABLE_IN_1_0
gboolean       porta_lock_release           (PortaLock            *self,
                                             GError              **error);
PORTA_AVAILABLE_IN_1_0
GIOStream     *porta_lock_get_stream        (PortaLock            *self);
PORTA_AVAILABLE_IN_1_0
guint          porta_lock_get_depth         (PortaLock            *self);

PORTA_AVAILABLE_IN_1_0
gboolean       porta_lock_convert           (PortaLock            *self,
                                             PortaLockMode         mode,
                                             int                   timeout_ms,
                                             GCancellable         *cancellable,
                                             GError              **error);

PORTA_AVAILABLE_IN_1_0
void           porta_lock_convert_async     (PortaLock            *self,
                                             PortaLockMode         mode,
                                             int                   timeout_ms,
                                             int                   io_priority,
                                             GCancellable         *cancellable,
                                             GAsyncReadyCallback   callback,
                                             gpointer              user_data);
PORTA_AVAILABLE_IN_1_0
gboolean       porta_lock_convert_finish    (PortaLock            *self,
                                             GAsyncResult         *result,
                                             GError              **error);

PORTA_AVAILABLE_IN_1_0
gboolean       porta_lock_query_holder      (PortaLock            *self,
                                             int                  *pid,
                                             char                **command,
                                             GError              **error);

G_END_DECLS
