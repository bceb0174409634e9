/* porta-lock-errors-private.h: messages a person can act on
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

#include "porta-common-private.h"
#include "porta-lock-file-private.h"

G_BEGIN_DECLS

gboolean               porta_is_missing_folder  (const char             *path);
void                   porta_set_open_error     (GError                **error,
                                                 int                     errsv,
                                                 const char             *path,
                                                 const char             *display);
void                   porta_set_wait_error     (GError                **error,
                                                 int                     result,
                                                 int                     timeout_ms,
                                                 const char             *holder,
                                                 PortaHolderUnknown      unknown,
                                                 const char             *display,
                                                 const PortaBackendOps  *ops,
                                                 const PortaLockFile    *lf);
void                   porta_set_lock_error     (GError                **error,
                                                 int                     errsv,
                                                 const char             *display,
                                                 const PortaBackendOps  *ops,
                                                 const PortaLockFile    *lf);

void                   porta_set_check_error    (GError                **error,
                                                 int                     errsv,
                                                 const char             *display);

G_END_DECLS
