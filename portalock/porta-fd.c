/* porta-fd.c: locking a descriptor or a stream the caller opened
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>

#include "porta-attempt-private.h"
#include "porta-fd.h"
#include "porta-i18n-private.h"
#include "porta-lock-errors-private.h"
#include "porta-win32-private.h"

/**
 * SECTION:porta-fd
 * @Title: Descriptors and streams
 * @Short_description: locking a file the caller already opened
 *
 * portalocker's `lock(fh, flags)` and `unlock(fh)`: these functions lock
 * and unlock a descriptor, or a #GFileDescriptorBased stream such as the
 * output stream of g_file_append_to(), with any backend, trying once or
 * waiting with a timeout, synchronously or asynchronously. The waits work
 * as those of #PortaLock: in the kernel, interrupted for timeouts and
 * cancellation.
 *
 * The caller owns the descriptor and keeps it open while it is locked and
 * while a wait on it goes on. Unlike #PortaLock, these functions cannot
 * check that the descriptor still names the file at its path, and with
 * %PORTA_BACKEND_POSIX the lock belongs to the whole process and is dropped
 * when any descriptor of the file is closed.
 *
 * On Windows the descriptor is a C runtime one (from open(), or made
 * over a HANDLE with the C runtime's `_open_osfhandle`), locked with
 * %PORTA_BACKEND_WIN32. Its handle may not
 * be open for overlapped I/O, so a wait on it retries with a back-off
 * instead of waiting in the kernel. porta_stream_lock() and
 * porta_stream_unlock() are Unix only, as #GFileDescriptorBased is.
 *
 * |[<!-- language="C" -->
 * g_autoptr(GFileOutputStream) out = g_file_append_to (file, G_FILE_CREATE_NONE, NULL, &error);
 *
 * if (out == NULL ||
 *     !porta_stream_lock (G_FILE_DESCRIPTOR_BASED (out), PORTA_LOCK_MODE_EXCLUSIVE,
 *                         PORTA_BACKEND_DEFAULT, 5000, NULL, &error))
 *   return FALSE;
 * // append a record, then
 * porta_stream_unlock_any (G_FILE_DESCRIPTOR_BASED (out), NULL);
 * ]|
 */

typedef struct
{
  const PortaBackendOps *ops;
  PortaLockFile          lf;
  PortaLockMode          mode;
  char                  *display;
  PortaFdAttempt         attempt;   /* of the above */
} FdLock;

/* POSIX record locks belong to the process, not to a descriptor: an
 * unlock through any descriptor of the file drops what every part of the
 * process holds on it. So porta_fd_unlock_any() unlocks a POSIX lock only
 * on a descriptor that porta_fd_lock() locked with that backend, as this
 * table records (descriptor -> the file it was open on, so that a number
 * closed and reused for another file is not taken for it). */
typedef struct
{
  guint64 dev;
  guint64 ino;
} FdIdentity;

static GMutex      posix_fds_mutex;
static GHashTable *posix_fds;

static void
posix_fds_remember (const PortaBackendOps *ops,
                    const PortaLockFile   *lf)
{
  FdIdentity *id;

  if (!ops->per_process)
    return;
  id = g_new (FdIdentity, 1);
  id->dev = lf->dev;
  id->ino = lf->ino;
  g_mutex_lock (&posix_fds_mutex);
  if (posix_fds == NULL)
    posix_fds = g_hash_table_new_full (NULL, NULL, NULL, g_free);
  g_hash_table_insert (posix_fds, GINT_TO_POINTER (lf->fd), id);
  g_mutex_unlock (&posix_fds_mutex);
}

/* Forgets @lf's descriptor; returns whether it was recorded for @lf's file. */
static gboolean
posix_fds_forget (const PortaLockFile *lf)
{
  gboolean recorded = FALSE;
  FdIdentity *id;

  g_mutex_lock (&posix_fds_mutex);
  id = posix_fds != NULL ? g_hash_table_lookup (posix_fds, GINT_TO_POINTER (lf->fd)) : NULL;
  if (id != NULL)
    {
      recorded = id->dev == lf->dev && id->ino == lf->ino;
      g_hash_table_remove (posix_fds, GINT_TO_POINTER (lf->fd));
    }
  g_mutex_unlock (&posix_fds_mutex);
  return recorded;
}

/* What the descriptor names, for messages. */
static char *
describe_fd (int fd)
{
#ifdef G_OS_WIN32
  g_autofree char *target = porta_win32_fd_path (fd);
#else
  g_autofree char *link = g_strdup_printf ("/proc/self/fd/%d", fd);
  g_autofree char *target = g_file_read_link (link, NULL);
#endif

  if (target != NULL)
    return g_filename_display_name (target);
  return g_strdup_printf (_("descriptor %d"), fd);
}

static gboolean
fd_lock_init (FdLock         *fl,
              int             fd,
              PortaLockMode   mode,
              PortaBackend    backend,
              GError        **error)
{
  int errsv;

  fl->ops = porta_backend_get_ops (backend);
  fl->lf.fd = fd;
  fl->mode = mode;
  fl->display = describe_fd (fd);
  if (fl->ops == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   _("Cannot lock “%s”: the %s backend is not available on this system"),
                   fl->display, porta_backend_get_name (backend));
      return FALSE;
    }
  errsv = porta_fd_identify (fd, &fl->lf.dev, &fl->lf.ino);
  if (errsv != 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errsv),
                   _("Cannot lock “%s”: %s"), fl->display, g_strerror (errsv));
      return FALSE;
    }
  fl->lf.identified = TRUE;
  fl->attempt.ops = fl->ops;
  fl->attempt.lf = &fl->lf;
  fl->attempt.mode = mode;
  fl->attempt.display = fl->display;
  return TRUE;
}

static void
fd_lock_clear (FdLock *fl)
{
  g_clear_pointer (&fl->display, g_free);
}

/**
 * porta_fd_lock:
 * @fd: an open descriptor of a regular file
 * @mode: exclusive or shared
 * @backend: the kernel mechanism to lock with
 * @timeout_ms: how long to wait, in milliseconds: -1 to wait for as long as
 *   it takes, 0 to try once without waiting
 * @cancellable: (nullable): a #GCancellable, which may be cancelled from
 *   another thread
 * @error: return location for a #GError
 *
 * Locks the file that @fd is open on, waiting in the calling thread while
 * it is taken. An exclusive lock with the ofd or posix backend needs @fd
 * open for writing. Locking a descriptor that is already locked converts
 * its lock to @mode (atomically only for fcntl() backends).
 *
 * Fails as porta_lock_acquire() does: %G_IO_ERROR_WOULD_BLOCK,
 * %G_IO_ERROR_TIMED_OUT, %G_IO_ERROR_CANCELLED, and so on.
 *
 * Returns: %TRUE if the lock is now held
 *
 * Since: 1.0
 */
gboolean
porta_fd_lock (int             fd,
               PortaLockMode   mode,
               PortaBackend    backend,
               int             timeout_ms,
               GCancellable   *cancellable,
               GError        **error)
{
  FdLock fl = { 0 };
  gboolean locked;

  g_return_val_if_fail (fd >= 0, FALSE);
  g_return_val_if_fail (timeout_ms >= -1, FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  porta_i18n_init ();
  if (!fd_lock_init (&fl, fd, mode, backend, error))
    {
      fd_lock_clear (&fl);
      return FALSE;
    }

  if (g_cancellable_is_cancelled (cancellable))
    {
      porta_fd_attempt_ops.fail (&fl.attempt, ECANCELED, timeout_ms, NULL,
                                 PORTA_HOLDER_NOT_TOLD, error);
      locked = FALSE;
    }
  else
    locked = porta_attempt_run (&porta_fd_attempt_ops, &fl.attempt, timeout_ms, cancellable,
                                error);
  if (locked)
    posix_fds_remember (fl.ops, &fl.lf);
  fd_lock_clear (&fl);
  return locked;
}

static void
fd_lock_free (gpointer data)
{
  FdLock *fl = data;

  fd_lock_clear (fl);
  g_free (fl);
}

/* The task data is the FdLock. */
static void
fd_lock_done (gpointer  owner,
              GError   *error,
              gpointer  user_data)
{
  GTask *task = user_data;
  FdLock *fl = g_task_get_task_data (task);

  if (error != NULL)
    g_task_return_error (task, error);
  else
    {
      posix_fds_remember (fl->ops, &fl->lf);
      g_task_return_boolean (task, TRUE);
    }
  g_object_unref (task);
}

/**
 * porta_fd_lock_async:
 * @fd: an open descriptor of a regular file, kept open until the callback
 * @mode: exclusive or shared
 * @backend: the kernel mechanism to lock with
 * @timeout_ms: how long to wait, in milliseconds: -1 to wait for as long as
 *   it takes, 0 to try once without waiting
 * @io_priority: the I/O priority of the request
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called in the thread-default main context when
 *   the lock is held or the attempt failed
 * @user_data: (closure callback): data for @callback
 *
 * Locks the file that @fd is open on without blocking the thread-default
 * #GMainContext; see porta_fd_lock().
 *
 * Since: 1.0
 */
void
porta_fd_lock_async (int                  fd,
                     PortaLockMode        mode,
                     PortaBackend         backend,
                     int                  timeout_ms,
                     int                  io_priority,
                     GCancellable        *cancellable,
                     GAsyncReadyCallback  callback,
                     gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  GError *error = NULL;
  FdLock *fl;

  g_return_if_fail (fd >= 0);
  g_return_if_fail (timeout_ms >= -1);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  porta_i18n_init ();
  task = porta_task_new (NULL, porta_fd_lock_async, "[portalock] lock descriptor", io_priority,
                         callback, user_data);

  fl = g_new0 (FdLock, 1);
  g_task_set_task_data (task, fl, fd_lock_free);
  if (!fd_lock_init (fl, fd, mode, backend, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  if (g_cancellable_is_cancelled (cancellable))
    {
      porta_fd_attempt_ops.fail (&fl->attempt, ECANCELED, timeout_ms, NULL,
                                 PORTA_HOLDER_NOT_TOLD, &error);
      g_task_return_error (task, error);
      return;
    }

  porta_attempt_run_async (&porta_fd_attempt_ops, &fl->attempt, timeout_ms, cancellable,
                           io_priority, fd_lock_done, g_steal_pointer (&task));
}

/**
 * porta_fd_lock_finish:
 * @result: the #GAsyncResult passed to the callback
 * @error: return location for a #GError
 *
 * Finishes porta_fd_lock_async().
 *
 * Returns: %TRUE if the lock is now held
 *
 * Since: 1.0
 */
gboolean
porta_fd_lock_finish (GAsyncResult  *result,
                      GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == porta_fd_lock_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/**
 * porta_fd_unlock:
 * @fd: a descriptor locked with porta_fd_lock()
 * @backend: the backend it was locked with
 * @error: return location for a #GError
 *
 * Unlocks the file that @fd is open on. Unlocking a descriptor that holds
 * no lock succeeds. porta_fd_unlock_any() does the same without being told
 * the backend.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
porta_fd_unlock (int            fd,
                 PortaBackend   backend,
                 GError       **error)
{
  FdLock fl = { 0 };
  int r;

  g_return_val_if_fail (fd >= 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  porta_i18n_init ();
  if (!fd_lock_init (&fl, fd, PORTA_LOCK_MODE_EXCLUSIVE, backend, error))
    {
      fd_lock_clear (&fl);
      return FALSE;
    }
  if (fl.ops->per_process)
    posix_fds_forget (&fl.lf);
  r = fl.ops->unlock (fd);
  if (r != 0)
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (r),
                 _("Cannot unlock “%s”: %s"), fl.display, g_strerror (r));
  fd_lock_clear (&fl);
  return r == 0;
}

/**
 * porta_fd_unlock_any:
 * @fd: a locked descriptor
 * @error: return location for a #GError
 *
 * Unlocks the file that @fd is open on, whichever backend locked it, so
 * that the caller need not repeat the backend it passed to
 * porta_fd_lock().
 *
 * A flock(2) or open file description lock belongs to the open file
 * description of @fd, so it is unlocked whoever took it: porta_fd_lock(),
 * util-linux flock(1), Python's `fcntl.flock()` or portalocker. A POSIX
 * record lock belongs to the whole process instead, and unlocking it through
 * @fd would drop what any other part of the process holds on the same file;
 * so it is unlocked only if porta_fd_lock() or porta_fd_lock_async() locked
 * @fd with %PORTA_BACKEND_POSIX. Release a POSIX lock taken some other way
 * with porta_fd_unlock(). Unlocking a descriptor that holds no lock
 * succeeds. (A descriptor closed while porta_fd_lock() held a POSIX lock on
 * it, whose number is then reused for the same file, still counts as locked
 * by porta_fd_lock(): unlock before closing.)
 *
 * Returns: %TRUE on success
 *
 * Since: 1.2
 */
gboolean
porta_fd_unlock_any (int      fd,
                     GError **error)
{
  static const PortaBackend backends[] = {
    PORTA_BACKEND_FLOCK, PORTA_BACKEND_OFD, PORTA_BACKEND_POSIX, PORTA_BACKEND_WIN32,
  };
  FdLock fl = { 0 };
  gboolean posix_locked;
  int r = 0;
  gsize i;

  g_return_val_if_fail (fd >= 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  porta_i18n_init ();
  if (!fd_lock_init (&fl, fd, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_DEFAULT, error))
    {
      fd_lock_clear (&fl);
      return FALSE;
    }
  posix_locked = posix_fds_forget (&fl.lf);
  for (i = 0; i < G_N_ELEMENTS (backends) && r == 0; i++)
    {
      const PortaBackendOps *ops = porta_backend_get_ops (backends[i]);

      if (ops == NULL || (ops->per_process && !posix_locked))
        continue;
      r = ops->unlock (fd);
    }
  if (r != 0)
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (r),
                 _("Cannot unlock “%s”: %s"), fl.display, g_strerror (r));
  fd_lock_clear (&fl);
  return r == 0;
}

#ifdef G_OS_UNIX
/**
 * porta_stream_lock:
 * @stream: a stream on a regular file, such as the #GFileOutputStream of
 *   g_file_append_to() or a #GUnixInputStream
 * @mode: exclusive or shared
 * @backend: the kernel mechanism to lock with
 * @timeout_ms: how long to wait, in milliseconds: -1 to wait for as long as
 *   it takes, 0 to try once without waiting
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Locks the file @stream reads or writes; porta_fd_lock() on its
 * descriptor.
 *
 * Returns: %TRUE if the lock is now held
 *
 * Since: 1.0
 */
gboolean
porta_stream_lock (GFileDescriptorBased  *stream,
                   PortaLockMode          mode,
                   PortaBackend           backend,
                   int                    timeout_ms,
                   GCancellable          *cancellable,
                   GError               **error)
{
  g_return_val_if_fail (G_IS_FILE_DESCRIPTOR_BASED (stream), FALSE);

  return porta_fd_lock (g_file_descriptor_based_get_fd (stream), mode, backend,
                        timeout_ms, cancellable, error);
}

/**
 * porta_stream_unlock:
 * @stream: a stream locked with porta_stream_lock()
 * @backend: the backend it was locked with
 * @error: return location for a #GError
 *
 * Unlocks the file @stream reads or writes; porta_fd_unlock() on its
 * descriptor.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
porta_stream_unlock (GFileDescriptorBased  *stream,
                     PortaBackend           backend,
                     GError               **error)
{
  g_return_val_if_fail (G_IS_FILE_DESCRIPTOR_BASED (stream), FALSE);

  return porta_fd_unlock (g_file_descriptor_based_get_fd (stream), backend, error);
}

/**
 * porta_stream_unlock_any:
 * @stream: a locked stream
 * @error: return location for a #GError
 *
 * Unlocks the file @stream reads or writes, whichever backend locked it;
 * porta_fd_unlock_any() on its descriptor.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.2
 */
gboolean
porta_stream_unlock_any (GFileDescriptorBased  *stream,
                         GError               **error)
{
  g_return_val_if_fail (G_IS_FILE_DESCRIPTOR_BASED (stream), FALSE);

  return porta_fd_unlock_any (g_file_descriptor_based_get_fd (stream), error);
}

#endif /* G_OS_UNIX */
