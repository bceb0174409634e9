/* porta-fd.h: locking a descriptor or a stream the caller opened
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined (PORTALOCK_INSIDE) && !defined (PORTALOCK_COMPILATION)
# error "Only <portalock/portalock.h> can be included directly."
#endif

#include <gio/gio.h>
#ifdef G_OS_UNIX
# include <gio/gfiledescriptorbased.h>
#endif

#include "porta-types.h"
#include "porta-version-macros.h"

G_BEGIN_DECLS

PORTA_AVAILABLE_IN_1_0
gboolean porta_fd_lock          (int                   fd,
                                 PortaLockMode         mode,
                                 PortaBackend          backend,
                                 int                   timeout_ms,
                                 GCancellable         *cancellable,
                                 GError              **error);
PORTA_AVAILABLE_IN_1_0
void     porta_fd_lock_async    (int                   fd,
                                 PortaLockMode         mode,
                                 PortaBackend          backend,
                                 int                   timeout_ms,
                                 int                   io_priority,
                                 GCancellable         *cancellable,
                                 GAsyncReadyCallback   callback,
                                 gpointer              user_data);
PORTA_AVAILABLE_IN_1_0
gboolean porta_fd_lock_finish   (GAsyncResult         *result,
                                 GError              **error);
PORTA_AVAILABLE_IN_1_0
gboolean porta_fd_unlock        (int                   fd,
                                 PortaBackend          backend,
                                 GError              **error);
PORTA_AVAILABLE_IN_1_2
gboolean porta_fd_unlock_any    (int                   fd,
                                 GError              **error);
#ifdef G_OS_UNIX
PORTA_AVAILABLE_IN_1_0
gboolean porta_stream_lock      (GFileDescriptorBased *stream,
                                 PortaLockMode         mode,
                                 PortaBackend          backend,
                                 int                   timeout_ms,
                                 GCancellable         *cancellable,
                                 GError              **error);
PORTA_AVAILABLE_IN_1_0
gboolean porta_stream_unlock    (GFileDescriptorBased *stream,
                                 PortaBackend          backend,
                                 GError              **error);
PORTA_AVAILABLE_IN_1_2
gboolean porta_stream_unlock_any (GFileDescriptorBased *stream,
                                  GError              **error);
#endif

G_END_DECLS
