/* porta-semaphore.h: at most N holders at once, between processes and threads
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined (PORTALOCK_INSIDE) && !defined (PORTALOCK_COMPILATION)
# error "Only <portalock/portalock.h> can be included directly."
#endif

#include <gio/gio.h>

#include "porta-lockable.h"
#include "porta-version-macros.h"

G_BEGIN_DECLS

#define PORTA_TYPE_SEMAPHORE (porta_semaphore_get_type ())

PORTA_AVAILABLE_IN_1_0
G_DECLARE_FINAL_TYPE (PortaSemaphore, porta_semaphore, PORTA, SEMAPHORE, GObject)

PORTA_AVAILABLE_IN_1_0
PortaSemaphore *porta_semaphore_new             (const char           *name,
                                                 guint                 max_holders,
                                                 GFile                *directory);
PORTA_AVAILABLE_IN_1_2
PortaSemaphore *porta_semaphore_new_for_path    (const char           *name,
                                                 guint                 max_holders,
                                                 const char           *directory);

PORTA_AVAILABLE_IN_1_0
const char     *porta_semaphore_get_name        (PortaSemaphore       *self);
PORTA_AVAILABLE_IN_1_0
guint           porta_semaphore_get_max_holders (PortaSemaphore       *self);
PORTA_AVAILABLE_IN_1_0
GFile          *porta_semaphore_get_directory   (PortaSemaphore       *self);
PORTA_AVAILABLE_IN_1_0
gboolean        porta_semaphore_get_held        (PortaSemaphore       *self);
PORTA_AVAILABLE_IN_1_0
int             porta_semaphore_get_slot        (PortaSemaphore       *self);

PORTA_AVAILABLE_IN_1_0
gboolean        porta_semaphore_acquire         (PortaSemaphore       *self,
                                                 int                   timeout_ms,
                                                 GCancellable         *cancellable,
                                                 GError              **error);
PORTA_AVAILABLE_IN_1_0
gboolean        porta_semaphore_try_acquire     (PortaSemaphore       *self,
                                                 GError              **error);
PORTA_AVAILABLE_IN_1_0
void            porta_semaphore_acquire_async   (PortaSemaphore       *self,
                                                 int                   timeout_ms,
                                                 int                   io_priority,
                                                 GCancellable         *cancellable,
                                                 GAsyncReadyCallback   callback,
                                                 gpointer              user_data);
PORTA_AVAILABLE_IN_1_0
gboolean        porta_semaphore_acquire_finish  (PortaSemaphore       *self,
                                                 GAsyncResult         *result,
                                                 GError              **error);
PORTA_AVAILABLE_IN_1_0
gboolean        porta_semaphore_release         (PortaSemaphore       *self,
                                                 GError              **error);

G_END_DECLS
