/* porta-lockable.h: what every kind of lock offers
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined (PORTALOCK_INSIDE) && !defined (PORTALOCK_COMPILATION)
# error "Only <portalock/portalock.h> can be included directly."
#endif

#include <gio/gio.h>

#include "porta-version-macros.h"

G_BEGIN_DECLS

#define PORTA_TYPE_LOCKABLE (porta_lockable_get_type ())

PORTA_AVAILABLE_IN_1_0
G_DECLARE_INTERFACE (PortaLockable, porta_lockable, PORTA, LOCKABLE, GObject)

/**
 * PortaLockableInterface:
 * @g_iface: the parent interface
 * @acquire: acquires the lock, waiting at most @timeout_ms in the calling
 *   thread (-1: as long as it takes, 0: try once)
 * @acquire_async: starts acquiring the lock without blocking the
 *   thread-default main context
 * @acquire_finish: finishes @acquire_async
 * @release: releases the lock
 * @get_held: whether the lock is held
 *
 * The virtual functions of #PortaLockable. An implementation also
 * overrides the #PortaLockable:held property and notifies it when it
 * changes.
 *
 * Since: 1.0
 */
struct _PortaLockableInterface
{
  GTypeInterface g_iface;

  gboolean (*acquire)        (PortaLockable        *self,
                              int                   timeout_ms,
                              GCancellable         *cancellable,
                              GError              **error);
  void     (*acquire_async)  (PortaLockable        *self,
                              int                   timeout_ms,
                              int                   io_priority,
                              GCancellable         *cancellable,
                              GAsyncReadyCallback   callback,
                              gpointer              user_data);
  gboolean (*acquire_finish) (PortaLockable        *self,
                              GAsyncResult         *result,
                              GError              **error);
  gboolean (*release)        (PortaLockable        *self,
                              GError              **error);
  gboolean (*get_held)       (PortaLockable        *self);

  /*< private >*/
  gpointer padding[8];
};

PORTA_AVAILABLE_IN_1_0
gboolean porta_lockable_acquire        (PortaLockable        *self,
                                        int                   timeout_ms,
                                        GCancellable         *cancellable,
                                        GError              **error);
PORTA_AVAILABLE_IN_1_0
gboolean porta_lockable_try_acquire    (PortaLockable        *self,
                                        GError              **error);
PORTA_AVAILABLE_IN_1_0
void     porta_lockable_acquire_async  (PortaLockable        *self,
                                        int                   timeout_ms,
                                        int                   io_priority,
                                        GCancellable         *cancellable,
                                        GAsyncReadyCallback   callback,
                                        gpointer              user_data);
PORTA_AVAILABLE_IN_1_0
gboolean porta_lockable_acquire_finish (PortaLockable        *self,
                                        GAsyncResult         *result,
                                        GError              **error);
PORTA_AVAILABLE_IN_1_0
gboolean porta_lockable_release        (PortaLockable        *self,
                                        GError              **error);
PORTA_AVAILABLE_IN_1_0
gboolean porta_lockable_get_held       (PortaLockable        *self);

G_END_DECLS
