/* porta-redis-lock.h: a lock shared through a Redis server, across machines
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined (PORTALOCK_INSIDE) && !defined (PORTALOCK_COMPILATION)
# error "Only <portalock/portalock.h> can be included directly."
#endif

#include <gio/gio.h>

#include "porta-lockable.h"
#include "porta-types.h"
#include "porta-version-macros.h"

G_BEGIN_DECLS

/**
 * PortaRedisProtocol:
 * @PORTA_REDIS_PROTOCOL_PORTALOCK: portalock's own protocol: waiters are
 *   woken by the release, a dead holder's lock is taken within a fraction
 *   of a second, every lock mode
 * @PORTA_REDIS_PROTOCOL_PORTALOCKER: portalock's own protocol and, with
 *   it, Python portalocker's `RedisLock` on the channel named like the
 *   lock, so that each excludes the other; exclusive locks only
 *
 * Which clients a #PortaRedisLock excludes. See the protocol page of the
 * manual for what each does on the server.
 *
 * Since: 1.2
 */
typedef enum
{
  PORTA_REDIS_PROTOCOL_PORTALOCK,
  PORTA_REDIS_PROTOCOL_PORTALOCKER,
} PortaRedisProtocol;

#define PORTA_TYPE_REDIS_LOCK (porta_redis_lock_get_type ())

PORTA_AVAILABLE_IN_1_2
G_DECLARE_FINAL_TYPE (PortaRedisLock, porta_redis_lock, PORTA, REDIS_LOCK, GObject)

PORTA_AVAILABLE_IN_1_2
PortaRedisLock *porta_redis_lock_new               (const char           *uri,
                                                    const char           *name,
                                                    PortaLockMode         mode);
PORTA_AVAILABLE_IN_1_2
PortaRedisLock *porta_redis_lock_new_counting      (const char           *uri,
                                                    const char           *name,
                                                    guint                 max_holders);

PORTA_AVAILABLE_IN_1_2
const char     *porta_redis_lock_get_uri           (PortaRedisLock       *self);
PORTA_AVAILABLE_IN_1_2
const char     *porta_redis_lock_get_name          (PortaRedisLock       *self);
PORTA_AVAILABLE_IN_1_2
PortaLockMode   porta_redis_lock_get_mode          (PortaRedisLock       *self);
PORTA_AVAILABLE_IN_1_2
guint           porta_redis_lock_get_max_holders   (PortaRedisLock       *self);
PORTA_AVAILABLE_IN_1_2
guint           porta_redis_lock_get_lease_ms      (PortaRedisLock       *self);
PORTA_AVAILABLE_IN_1_2
void            porta_redis_lock_set_lease_ms      (PortaRedisLock       *self,
                                                    guint                 lease_ms);
PORTA_AVAILABLE_IN_1_2
guint           porta_redis_lock_get_replicas_to_confirm (PortaRedisLock *self);
PORTA_AVAILABLE_IN_1_2
void            porta_redis_lock_set_replicas_to_confirm (PortaRedisLock *self,
                                                          guint           replicas);
PORTA_AVAILABLE_IN_1_2
GTlsDatabase   *porta_redis_lock_get_tls_database  (PortaRedisLock       *self);
PORTA_AVAILABLE_IN_1_2
void            porta_redis_lock_set_tls_database  (PortaRedisLock       *self,
                                                    GTlsDatabase         *database);
PORTA_AVAILABLE_IN_1_2
PortaRedisProtocol porta_redis_lock_get_protocol   (PortaRedisLock       *self);
PORTA_AVAILABLE_IN_1_2
void            porta_redis_lock_set_protocol      (PortaRedisLock       *self,
                                                    PortaRedisProtocol    protocol);
PORTA_AVAILABLE_IN_1_2
gboolean        porta_redis_lock_get_held          (PortaRedisLock       *self);
PORTA_AVAILABLE_IN_1_2
guint64         porta_redis_lock_get_fencing_token (PortaRedisLock       *self);

PORTA_AVAILABLE_IN_1_2
gboolean        porta_redis_lock_acquire           (PortaRedisLock       *self,
                                                    int                   timeout_ms,
                                                    GCancellable         *cancellable,
                                                    GError              **error);
PORTA_AVAILABLE_IN_1_2
gboolean        porta_redis_lock_try_acquire       (PortaRedisLock       *self,
                                                    GError              **error);
PORTA_AVAILABLE_IN_1_2
void            porta_redis_lock_acquire_async     (PortaRedisLock       *self,
                                                    int                   timeout_ms,
                                                    int                   io_priority,
                                                    GCancellable         *cancellable,
                                                    GAsyncReadyCallback   callback,
                                                    gpointer              user_data);
PORTA_AVAILABLE_IN_1_2
gboolean        porta_redis_lock_acquire_finish    (PortaRedisLock       *self,
                                                    GAsyncResult         *result,
                                                    GError              **error);
PORTA_AVAILABLE_IN_1_2
gboolean        porta_redis_lock_release           (PortaRedisLock       *self,
                                                    GError              **error);

G_END_DECLS
