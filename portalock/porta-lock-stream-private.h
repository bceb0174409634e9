/* porta-lock-stream-private.h: reading and writing a locked file
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define PORTA_TYPE_LOCK_STREAM (porta_lock_stream_get_type ())

G_DECLARE_FINAL_TYPE (PortaLockStream, porta_lock_stream, PORTA, LOCK_STREAM, GFileIOStream)

GIOStream *porta_lock_stream_new (GFile *file,
                                  int    fd);

G_END_DECLS
