/* porta-common.c: the small pieces every lock kind shares
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>

#include "porta-common-private.h"
#include "porta-i18n-private.h"

gint64
porta_deadline (int timeout_ms)
{
  return timeout_ms > 0 ? g_get_monotonic_time () + (gint64) timeout_ms * 1000 : -1;
}

GTask *
porta_task_new (gpointer             source_object,
                gpointer             source_tag,
                const char          *name,
                int                  io_priority,
                GAsyncReadyCallback  callback,
                gpointer             user_data)
{
  GTask *task = g_task_new (source_object, NULL, callback, user_data);

  g_task_set_source_tag (task, source_tag);
  g_task_set_name (task, name);
  g_task_set_priority (task, io_priority);
  return task;
}

char *
porta_file_display_name (GFile *file)
{
  const char *path = g_file_peek_path (file);

  if (path != NULL)
    return g_filename_display_name (path);
  return g_file_get_parse_name (file);
}

gboolean
porta_set_wait_end_error (GError             **error,
                          int                  result,
                          int                  timeout_ms,
                          const char          *holder,
                          PortaHolderUnknown   unknown,
                          const char          *display)
{
  if (result == ETIMEDOUT && holder != NULL)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                 _("Timed out after %d ms waiting for the lock on “%s”, held by %s"),
                 timeout_ms, display, holder);
  else if (result == ETIMEDOUT && unknown == PORTA_HOLDER_WAIT_TOO_SHORT)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                 _("Timed out after %d ms waiting for the lock on “%s”; its holder is unknown (waits under 100 ms do not look it up)"),
                 timeout_ms, display);
  else if (result == ETIMEDOUT && unknown == PORTA_HOLDER_RETRYING_WAIT)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                 _("Timed out after %d ms waiting for the lock on “%s”; its holder is unknown (waits that retry, as on network filesystems, do not look it up)"),
                 timeout_ms, display);
  else if (result == ETIMEDOUT)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                 _("Timed out after %d ms waiting for the lock on “%s”; its holder is unknown (the system does not say who holds it)"),
                 timeout_ms, display);
  else if (result == ECANCELED)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                 _("Waiting for the lock on “%s” was cancelled"),
                 display);
  else
    return FALSE;
  return TRUE;
}

GParamSpec *
porta_lockable_override_held (GObjectClass *klass,
                              guint         prop_id)
{
  g_object_class_override_property (klass, prop_id, "held");
  return g_object_class_find_property (klass, "held");
}

void
porta_sync_init (PortaSync *sync)
{
  sync->context = g_main_context_new ();
  sync->result = NULL;
  g_main_context_push_thread_default (sync->context);
}

void
porta_sync_store (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  PortaSync *sync = user_data;

  sync->result = g_object_ref (result);
}

GAsyncResult *
porta_sync_wait (PortaSync *sync)
{
  while (sync->result == NULL)
    g_main_context_iteration (sync->context, TRUE);
  g_main_context_pop_thread_default (sync->context);
  g_clear_pointer (&sync->context, g_main_context_unref);
  return g_steal_pointer (&sync->result);
}
