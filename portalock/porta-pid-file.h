/* porta-pid-file.h: a locked PID file, for a daemon's single-instance check
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

#define PORTA_TYPE_PID_FILE (porta_pid_file_get_type ())

PORTA_AVAILABLE_IN_1_0
G_DECLARE_FINAL_TYPE (PortaPidFile, porta_pid_file, PORTA, PID_FILE, GObject)

PORTA_AVAILABLE_IN_1_0
PortaPidFile *porta_pid_file_new              (GFile                *file);
PORTA_AVAILABLE_IN_1_0
PortaPidFile *porta_pid_file_new_for_path     (const char           *path);

PORTA_AVAILABLE_IN_1_0
GFile        *porta_pid_file_get_file         (PortaPidFile         *self);
PORTA_AVAILABLE_IN_1_0
gboolean      porta_pid_file_get_held         (PortaPidFile         *self);

PORTA_AVAILABLE_IN_1_0
gboolean      porta_pid_file_acquire          (PortaPidFile         *self,
                                               int                   timeout_ms,
                                               GCancellable         *cancellable,
                                               GError              **error);
PORTA_AVAILABLE_IN_1_0
gboolean      porta_pid_file_try_acquire      (PortaPidFile         *self,
                                               GError              **error);
PORTA_AVAILABLE_IN_1_0
void          porta_pid_file_acquire_async    (PortaPidFile         *self,
                                               int                   timeout_ms,
                                               int                   io_priority,
                                               GCancellable         *cancellable,
                                               GAsyncReadyCallback   callback,
                                               gpointer              user_data);
PORTA_AVAILABLE_IN_1_0
gboolean      porta_pid_file_acquire_finish   (PortaPidFile         *self,
                                               GAsyncResult         *result,
                                               GError              **error);
PORTA_AVAILABLE_IN_1_0
gboolean      porta_pid_file_release          (PortaPidFile         *self,
                                               GError              **error);

PORTA_AVAILABLE_IN_1_0
gboolean      porta_pid_file_query_holder     (GFile                *file,
                                               int                  *pid,
                                               guint64              *start_time,
                                               char                **command,
                                               GError              **error);
PORTA_AVAILABLE_IN_1_2
gboolean      porta_pid_file_query_holder_for_path (const char      *path,
                                                    int             *pid,
                                                    guint64         *start_time,
                                                    char           **command,
                                                    GError         **error);

G_END_DECLS
