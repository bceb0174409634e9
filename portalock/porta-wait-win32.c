/* porta-wait-win32.c: a wait in an overlapped LockFileEx() request, which the kernel
 * completes when the lock is granted
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>

#include <gio/gio.h>

#ifdef G_OS_WIN32
# include <windows.h>
#endif

#include "porta-wait-private.h"
#include "porta-win32-private.h"

#ifdef G_OS_WIN32

extern const PortaBackendOps porta_win32_ops;

int
porta_wait_overlapped_sync (const PortaLockFile *lf,
                            PortaLockMode        mode,
                            gint64               deadline,
                            GCancellable        *cancellable)
{
  HANDLE handles[2];
  DWORD n_handles = 1;
  OVERLAPPED ov;
  GPollFD cancel_fd;
  gboolean have_cancel_fd;
  HANDLE event;
  int r;

  event = CreateEventW (NULL, TRUE, FALSE, NULL);
  if (event == NULL)
    return -1;
  r = porta_win32_lock_start (lf, mode, &ov, event);
  if (r != EINPROGRESS)
    {
      CloseHandle (event);
      return r;
    }

  handles[0] = event;
  have_cancel_fd = cancellable != NULL &&
                   g_cancellable_make_pollfd (cancellable, &cancel_fd);
  if (have_cancel_fd)
    handles[n_handles++] = (HANDLE) cancel_fd.fd;

  for (;;)
    {
      DWORD timeout = INFINITE;
      DWORD w;

      if (deadline >= 0)
        {
          gint64 remaining = deadline - g_get_monotonic_time ();

          timeout = remaining <= 0 ? 0 : (DWORD) ((remaining + 999) / 1000);
        }
      w = WaitForMultipleObjects (n_handles, handles, FALSE, timeout);
      if (w == WAIT_OBJECT_0)
        {
          r = porta_win32_lock_finish (lf, &ov, FALSE);
          /* As on Linux, a cancellation that came as the lock was granted
           * wins: the wait must not end holding a lock the caller gave up. */
          if (r == 0 && g_cancellable_is_cancelled (cancellable))
            {
              porta_win32_ops.unlock (lf->fd);
              r = ECANCELED;
            }
          break;
        }
      if (g_cancellable_is_cancelled (cancellable))
        {
          r = porta_win32_lock_finish (lf, &ov, TRUE);
          break;
        }
      if (w == WAIT_FAILED ||
          (deadline >= 0 && g_get_monotonic_time () >= deadline))
        {
          porta_win32_lock_finish (lf, &ov, TRUE);
          r = w == WAIT_FAILED ? porta_win32_errno (GetLastError ()) : ETIMEDOUT;
          break;
        }
    }

  if (have_cancel_fd)
    g_cancellable_release_fd (cancellable);
  CloseHandle (event);
  return r;
}

/* The event source of an overlapped wait: ready when the request's event
 * is signalled, or at the deadline (its ready time). Cancellation comes
 * through the cancellable's own child source. */

static void
overlapped_finish (PortaAsyncWait *w,
                   int             result)
{
  if (w->overlapped_source != NULL)
    {
      g_source_destroy (w->overlapped_source);
      g_clear_pointer (&w->overlapped_source, g_source_unref);
    }
  g_clear_pointer (&w->overlapped, g_free);
  if (w->event != NULL)
    CloseHandle (w->event);
  w->event = NULL;
  w->callback (result, NULL, PORTA_HOLDER_NOT_TOLD, w->user_data);
  porta_async_wait_free (w);
}

static gboolean
overlapped_dispatch (gpointer user_data)
{
  PortaAsyncWait *w = user_data;
  int r;

  if (g_cancellable_is_cancelled (w->cancellable))
    r = porta_win32_lock_finish (&w->lf, w->overlapped, TRUE);
  else if (WaitForSingleObject (w->event, 0) == WAIT_OBJECT_0)
    r = porta_win32_lock_finish (&w->lf, w->overlapped, FALSE);
  else if (w->deadline >= 0 && g_get_monotonic_time () >= w->deadline)
    {
      r = porta_win32_lock_finish (&w->lf, w->overlapped, TRUE);
      if (r == ECANCELED)
        r = ETIMEDOUT;
    }
  else
    return G_SOURCE_CONTINUE;   /* woken early: the request is still pending */

  overlapped_finish (w, r);
  return G_SOURCE_REMOVE;
}

static gboolean
overlapped_cancelled (GCancellable *cancellable,
                      gpointer      user_data)
{
  return overlapped_dispatch (user_data);
}

static gboolean
overlapped_source_dispatch (GSource     *source,
                            GSourceFunc  callback,
                            gpointer     user_data)
{
  return callback (user_data);
}

static gboolean
overlapped_source_check (GSource *source)
{
  PortaAsyncWait *w = *(PortaAsyncWait **) (gpointer) (source + 1);

  return (w->event_pollfd.revents & G_IO_IN) != 0;
}

static GSourceFuncs overlapped_source_funcs = {
  NULL, overlapped_source_check, overlapped_source_dispatch, NULL, NULL, NULL,
};

static gboolean
overlapped_report (gpointer user_data)
{
  PortaAsyncWait *w = user_data;

  w->callback (w->result, NULL, PORTA_HOLDER_NOT_TOLD, w->user_data);
  porta_async_wait_free (w);
  return G_SOURCE_REMOVE;
}

void
porta_wait_overlapped_async (PortaAsyncWait *w)
{
  int r;

  w->event = CreateEventW (NULL, TRUE, FALSE, NULL);
  if (w->event == NULL)
    {
      /* No event to wait on: back off instead. */
      porta_wait_backoff_async (w);
      return;
    }
  w->overlapped = g_malloc0 (porta_win32_overlapped_size ());
  r = porta_win32_lock_start (&w->lf, w->mode, w->overlapped, w->event);
  if (r != EINPROGRESS)
    {
      /* Granted or refused at once: report it from the main context, as
       * every async wait does, never from inside the call. */
      GSource *idle = g_idle_source_new ();

      g_clear_pointer (&w->overlapped, g_free);
      CloseHandle (w->event);
      w->event = NULL;
      w->result = r;
      g_source_set_priority (idle, w->priority);
      g_source_set_callback (idle, overlapped_report, w, NULL);
      g_source_set_static_name (idle, "[portalock] lock wait done");
      g_source_attach (idle, w->context);
      g_source_unref (idle);
      return;
    }

  w->overlapped_source = g_source_new (&overlapped_source_funcs,
                                       sizeof (GSource) + sizeof (PortaAsyncWait *));
  *(PortaAsyncWait **) (gpointer) (w->overlapped_source + 1) = w;
  w->event_pollfd.fd = (gintptr) w->event;
  w->event_pollfd.events = G_IO_IN;
  g_source_add_poll (w->overlapped_source, &w->event_pollfd);
  if (w->cancellable != NULL)
    {
      GSource *cancel = g_cancellable_source_new (w->cancellable);

      g_source_set_callback (cancel, G_SOURCE_FUNC (overlapped_cancelled), w, NULL);
      g_source_add_child_source (w->overlapped_source, cancel);
      g_source_unref (cancel);
    }
  if (w->deadline >= 0)
    g_source_set_ready_time (w->overlapped_source, w->deadline);
  g_source_set_priority (w->overlapped_source, w->priority);
  g_source_set_callback (w->overlapped_source, overlapped_dispatch, w, NULL);
  g_source_set_static_name (w->overlapped_source, "[portalock] overlapped lock wait");
  g_source_attach (w->overlapped_source, w->context);
}

#endif /* G_OS_WIN32 */
