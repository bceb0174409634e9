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

/* The GTask of a file lock's async call, with @source_tag, @name and
 * @io_priority set. It never carries the caller's cancellable: the wait
 * decides the result (a wait cancelled before it ended never holds the
 * lock, and a lock taken is never reported cancelled, which would keep it
 * from everyone), and GLib puts off by one main loop iteration the
 * callback of a task whose cancellable is cancelled, which made a
 * cancellation's latency half as long again. */
GTask       *porta_task_new             (gpointer             source_object,
                                         gpointer             source_tag,
                                         const char          *name,
                                         int                  io_priority,
                                         GAsyncReadyCallback  callback,
                                         gpointer             user_data);

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

/* A sync call made of an async one, as g_subprocess_wait() does it: the
 * async call runs on a main context of its own, thread-default from
 * porta_sync_init() to porta_sync_wait(), so no other source of the
 * caller's contexts is dispatched meanwhile.
 *
 *   PortaSync sync;
 *   porta_sync_init (&sync);
 *   something_async (..., porta_sync_store, &sync);
 *   result = porta_sync_wait (&sync);    (transfer full)
 */
typedef struct
{
  GMainContext *context;
  GAsyncResult *result;
} PortaSync;

void          porta_sync_init            (PortaSync          *sync);
void          porta_sync_store           (GObject            *source,
                                          GAsyncResult       *result,
                                          gpointer            user_data);
GAsyncResult *porta_sync_wait            (PortaSync          *sync);

G_END_DECLS
