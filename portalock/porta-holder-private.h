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

/* A look-up of the holder that runs in the background while a wait
 * blocks, so that a timeout can name the holder without being late. */
typedef struct _PortaHolderLookup PortaHolderLookup;

PortaHolderLookup *porta_holder_lookup_start  (dev_t               dev,
                                               ino_t               ino,
                                               gboolean            flock_kind);
char              *porta_holder_lookup_finish (PortaHolderLookup  *lookup,
                                               gboolean            finish_running);

G_END_DECLS
