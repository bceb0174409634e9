/* porta-attempt.c: the try-then-wait engine every file lock runs
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>

#include "porta-attempt-private.h"
#include "porta-lock-errors-private.h"
#include "porta-waiter-private.h"

static PortaTry
fd_attempt_try_once (gpointer   owner,
                     gboolean   block,
                     GError   **error)
{
  PortaFdAttempt *a = owner;
  int r = a->ops->lock (a->lf->fd, a->mode, FALSE);

  if (r == 0)
    return PORTA_TRY_HELD;
  if (r == EWOULDBLOCK)
    return PORTA_TRY_BUSY;
  porta_set_lock_error (error, r, a->display, a->ops, a->lf);
  return PORTA_TRY_ERROR;
}

static void
fd_attempt_get_wait (gpointer                owner,
                     const PortaBackendOps **ops,
                     const PortaLockFile   **lf,
                     gboolean               *back_off,
                     PortaLockMode          *mode)
{
  PortaFdAttempt *a = owner;

  *ops = a->ops;
  *lf = a->lf;
  *back_off = porta_lock_file_must_back_off (a->lf);
  *mode = a->mode;
}

static void
fd_attempt_fail (gpointer             owner,
                 int                  result,
                 int                  timeout_ms,
                 const char          *holder,
                 PortaHolderUnknown   unknown,
                 GError             **error)
{
  PortaFdAttempt *a = owner;

  porta_set_wait_error (error, result, timeout_ms, holder, unknown, a->display, a->ops, a->lf);
}

const PortaAttemptOps porta_fd_attempt_ops = {
  fd_attempt_try_once,
  fd_attempt_get_wait,
  NULL,
  fd_attempt_fail,
};

static PortaTry
attempt_check (const PortaAttemptOps  *ops,
               gpointer                owner,
               GError                **error)
{
  return ops->check != NULL ? ops->check (owner, error) : PORTA_TRY_HELD;
}

gboolean
porta_attempt_run (const PortaAttemptOps  *ops,
                   gpointer                owner,
                   int                     timeout_ms,
                   GCancellable           *cancellable,
                   GError                **error)
{
  gint64 deadline = porta_deadline (timeout_ms);

  for (;;)
    {
      PortaTry tr = ops->try_once (owner, timeout_ms < 0 && cancellable == NULL, error);
      char *holder = NULL;
      PortaHolderUnknown unknown = PORTA_HOLDER_NOT_TOLD;
      const PortaBackendOps *backend;
      const PortaLockFile *lf;
      gboolean back_off;
      PortaLockMode mode;
      int r;

      if (tr == PORTA_TRY_ERROR)
        return FALSE;
      if (tr == PORTA_TRY_AGAIN)
        continue;
      if (tr == PORTA_TRY_HELD)
        return TRUE;

      if (timeout_ms == 0)
        {
          ops->fail (owner, EWOULDBLOCK, timeout_ms, NULL, PORTA_HOLDER_NOT_TOLD, error);
          return FALSE;
        }
      ops->get_wait (owner, &backend, &lf, &back_off, &mode);
      r = porta_waiter_wait_sync (backend, lf, back_off, mode, deadline, cancellable,
                                  &holder, &unknown);
      if (r != 0)
        {
          ops->fail (owner, r, timeout_ms, holder, unknown, error);
          g_free (holder);
          return FALSE;
        }
      /* Only a wait that timed out names a holder. Not g_autofree: a call
       * to g_free (NULL) on the way out of every hand-off is two more
       * libraries' code for a waiter just woken with cold caches. */
      g_assert (holder == NULL);
      tr = attempt_check (ops, owner, error);
      if (tr == PORTA_TRY_ERROR)
        return FALSE;
      if (tr == PORTA_TRY_HELD)
        return TRUE;
    }
}

typedef struct
{
  const PortaAttemptOps *ops;
  gpointer               owner;
  int                    timeout_ms;
  gint64                 deadline;
  GCancellable          *cancellable;
  int                    priority;
  PortaAttemptCallback   callback;
  gpointer               user_data;
} Attempt;

static void
attempt_finish (Attempt *a,
                GError  *error)
{
  a->callback (a->owner, error, a->user_data);
  g_clear_object (&a->cancellable);
  g_free (a);
}

static void attempt_step (Attempt *a);

static void
attempt_waited (int                 result,
                char               *holder,
                PortaHolderUnknown  unknown,
                gpointer            user_data)
{
  Attempt *a = user_data;
  GError *error = NULL;

  if (result != 0)
    {
      a->ops->fail (a->owner, result, a->timeout_ms, holder, unknown, &error);
      g_free (holder);
      attempt_finish (a, error);
      return;
    }

  switch (attempt_check (a->ops, a->owner, &error))
    {
    case PORTA_TRY_HELD:
    case PORTA_TRY_ERROR:
      attempt_finish (a, error);
      break;
    case PORTA_TRY_AGAIN:
    case PORTA_TRY_BUSY:
    default:
      attempt_step (a);
      break;
    }
}

static void
attempt_step (Attempt *a)
{
  GError *error = NULL;
  PortaTry tr;

  do
    tr = a->ops->try_once (a->owner, FALSE, &error);
  while (tr == PORTA_TRY_AGAIN);

  if (tr == PORTA_TRY_BUSY && a->timeout_ms == 0)
    a->ops->fail (a->owner, EWOULDBLOCK, 0, NULL, PORTA_HOLDER_NOT_TOLD, &error);
  else if (tr == PORTA_TRY_BUSY)
    {
      const PortaBackendOps *backend;
      const PortaLockFile *lf;
      gboolean back_off;
      PortaLockMode mode;

      a->ops->get_wait (a->owner, &backend, &lf, &back_off, &mode);
      porta_waiter_wait_async (backend, lf, back_off, mode, a->deadline, a->cancellable,
                               a->priority, attempt_waited, a);
      return;
    }

  attempt_finish (a, error);
}

void
porta_attempt_run_async (const PortaAttemptOps  *ops,
                         gpointer                owner,
                         int                     timeout_ms,
                         GCancellable           *cancellable,
                         int                     priority,
                         PortaAttemptCallback    callback,
                         gpointer                user_data)
{
  Attempt *a = g_new0 (Attempt, 1);

  a->ops = ops;
  a->owner = owner;
  a->timeout_ms = timeout_ms;
  a->deadline = porta_deadline (timeout_ms);
  a->cancellable = cancellable != NULL ? g_object_ref (cancellable) : NULL;
  a->priority = priority;
  a->callback = callback;
  a->user_data = user_data;
  attempt_step (a);
}
