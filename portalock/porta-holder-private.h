/* porta-holder-private.h: who holds a lock
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

gboolean porta_holder_find     (guint64    dev,
                                guint64    ino,
                                gboolean   flock_kind,
                                gboolean   search_fds,
                                int       *pid,
                                char     **command);
char    *porta_holder_describe (guint64    dev,
                                guint64    ino,
                                gboolean   flock_kind);

G_END_DECLS
