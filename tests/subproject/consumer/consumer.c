/* consumer.c: a library that uses portalock as a meson subproject
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "consumer.h"

/**
 * consumer_is_held:
 * @lock: a #PortaLock
 *
 * Returns: whether @lock is held
 */
gboolean
consumer_is_held (PortaLock *lock)
{
  return porta_lock_get_held (lock);
}
