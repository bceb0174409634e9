/* porta-lockable.c: what every kind of lock offers
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "porta-lockable.h"

/**
 * SECTION:porta-lockable
 * @Title: PortaLockable
 * @Short_description: the interface every kind of lock implements
 *
 * #PortaLockable is what a #PortaLock, a #PortaPidFile and a
 * #PortaSemaphore have in common: acquire with a timeout, synchronously or
 * asynchronously, release, and a #PortaLockable:held property. Code written
 * against it works with any kind of lock, as GIO code does with
 * #GAsyncInitable.
 *
 * The timeout is in milliseconds: -1 waits for as long as it takes, 0 tries
 * once, and a positive value waits at most that long. Errors are those of
 * porta_lock_acquire().
 */

/**
 * PortaLockable:
 *
 * An object that is a lock of some kind: a #PortaLock, a #PortaPidFile or
 * a #PortaSemaphore.
 *
 * Since: 1.0
 */

G_DEFINE_INTERFACE (PortaLockable, porta_lockable, G_TYPE_OBJECT)

static void
porta_lockable_default_init (PortaLockableInterface *iface)
{
  /**
   * PortaLockable:held:
   *
   * Whether the lock is held. It is notified when it changes.
   *
   * Since: 1.0
   */
  g_object_interface_install_property (iface,
    g_param_spec_boolean ("held", "Held", "Whether the lock is held",
                          FALSE,
                          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS |
                          G_PARAM_EXPLICIT_NOTIFY));
}

/**
 * porta_lockable_acquire: (virtual acquire)
 * @self: a #PortaLockable
 * @timeout_ms: how long to wait, in milliseconds: -1 to wait for as long as
 *   it takes, 0 to try once without waiting
 * @cancellable: (nullable): a #GCancellable, which may be cancelled from
 *   another thread
 * @error: return location for a #GError
 *
 * Acquires the lock, waiting in the calling thread while it is taken.
 *
 * Returns: %TRUE if the lock is now held
 *
 * Since: 1.0
 */
gboolean
porta_lockable_acquire (PortaLockable  *self,
                        int             timeout_ms,
                        GCancellable   *cancellable,
                        GError        **error)
{
  g_return_val_if_fail (PORTA_IS_LOCKABLE (self), FALSE);
  g_return_val_if_fail (timeout_ms >= -1, FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return PORTA_LOCKABLE_GET_IFACE (self)->acquire (self, timeout_ms, cancellable, error);
}

/**
 * porta_lockable_try_acquire:
 * @self: a #PortaLockable
 * @error: return location for a #GError
 *
 * Acquires the lock if it is free, without waiting; fails with
 * %G_IO_ERROR_WOULD_BLOCK otherwise.
 *
 * Returns: %TRUE if the lock is now held
 *
 * Since: 1.0
 */
gboolean
porta_lockable_try_acquire (PortaLockable  *self,
                            GError        **error)
{
  return porta_lockable_acquire (self, 0, NULL, error);
}

/**
 * porta_lockable_acquire_async: (virtual acquire_async)
 * @self: a #PortaLockable
 * @timeout_ms: how long to wait, in milliseconds: -1 to wait for as long as
 *   it takes, 0 to try once without waiting
 * @io_priority: the I/O priority of the request
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called in the thread-default main context when
 *   the lock is held or the attempt failed
 * @user_data: (closure callback): data for @callback
 *
 * Acquires the lock without blocking the thread-default #GMainContext.
 *
 * Since: 1.0
 */
void
porta_lockable_acquire_async (PortaLockable       *self,
                              int                  timeout_ms,
                              int                  io_priority,
                              GCancellable        *cancellable,
                              GAsyncReadyCallback  callback,
                              gpointer             user_data)
{
  g_return_if_fail (PORTA_IS_LOCKABLE (self));
  g_return_if_fail (timeout_ms >= -1);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  PORTA_LOCKABLE_GET_IFACE (self)->acquire_async (self, timeout_ms, io_priority,
                                                  cancellable, callback, user_data);
}

/**
 * porta_lockable_acquire_finish: (virtual acquire_finish)
 * @self: a #PortaLockable
 * @result: the #GAsyncResult passed to the callback
 * @error: return location for a #GError
 *
 * Finishes porta_lockable_acquire_async().
 *
 * Returns: %TRUE if the lock is now held
 *
 * Since: 1.0
 */
gboolean
porta_lockable_acquire_finish (PortaLockable  *self,
                               GAsyncResult   *result,
                               GError        **error)
{
  g_return_val_if_fail (PORTA_IS_LOCKABLE (self), FALSE);
  g_return_val_if_fail (G_IS_ASYNC_RESULT (result), FALSE);

  return PORTA_LOCKABLE_GET_IFACE (self)->acquire_finish (self, result, error);
}

/**
 * porta_lockable_release: (virtual release)
 * @self: a #PortaLockable
 * @error: return location for a #GError
 *
 * Releases the lock.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
porta_lockable_release (PortaLockable  *self,
                        GError        **error)
{
  g_return_val_if_fail (PORTA_IS_LOCKABLE (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return PORTA_LOCKABLE_GET_IFACE (self)->release (self, error);
}

/**
 * porta_lockable_get_held: (virtual get_held)
 * @self: a #PortaLockable
 *
 * Gets whether the lock is held.
 *
 * Returns: %TRUE while the lock is held
 *
 * Since: 1.0
 */
gboolean
porta_lockable_get_held (PortaLockable *self)
{
  g_return_val_if_fail (PORTA_IS_LOCKABLE (self), FALSE);

  return PORTA_LOCKABLE_GET_IFACE (self)->get_held (self);
}
