/* porta-holder-private.h: who holds a lock
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <sys/types.h>

#include <glib.h>

G_BEGIN_DECLS

gboolean porta_holder_find     (dev_t      dev,
                                ino_t      ino,
                                gboolean   flock_kind,
                                gboolean   search_fds,
                                int       *pid,
                                char     **command);
char    *porta_holder_describe (dev_t      dev,
                                ino_t      ino,
                                gboolean   flock_kind);

G_END_DECLS
