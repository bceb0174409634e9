/* porta-common-private.h: the small pieces every lock kind shares
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* The deadline of a timeout in ms, in monotonic microseconds: -1 (forever)
 * and 0 (try once) have none, and give -1. */
gint64       porta_deadline             (int                  timeout_ms);

/* How a lock names its file in messages: the display name of its path, or
 * the parse name of a file without one. */
char        *porta_file_display_name    (GFile               *file);

/* Why a wait that timed out does not name the lock's holder. */
typedef enum
{
  PORTA_HOLDER_NOT_TOLD,        /* looked up, but the system does not say */
  PORTA_HOLDER_WAIT_TOO_SHORT,  /* a kernel wait too short to look it up */
  PORTA_HOLDER_RETRYING_WAIT,   /* a wait that retried with a back-off */
} PortaHolderUnknown;

/* Sets the error of a wait that ended without the lock because it timed
 * out (@result ETIMEDOUT: naming @holder when the wait found it, else
 * saying why not, @unknown) or was cancelled (ECANCELED), for the lock
 * that @display names. Returns FALSE, setting nothing, for any other
 * @result: the caller reports that failure itself. */
gboolean     porta_set_wait_end_error   (GError             **error,
                                         int                  result,
                                         int                  timeout_ms,
                                         const char          *holder,
                                         PortaHolderUnknown   unknown,
                                         const char          *display);

/* Overrides the PortaLockable:held property as @prop_id of @klass, and
 * returns its pspec for g_object_notify_by_pspec(). Every lock kind sets
 * the property up this way. */
GParamSpec  *porta_lockable_override_held (GObjectClass      *klass,
                                           guint              prop_id);

G_END_DECLS
