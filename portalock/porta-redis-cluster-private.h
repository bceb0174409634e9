/* porta-redis-cluster-private.h: a Redis Cluster behind one client: its
 * URI, its slot map and a client for each master in use
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>
#include <hiredis/hiredis.h>

#include "porta-redis-client-private.h"

G_BEGIN_DECLS

typedef struct _PortaRedisCluster PortaRedisCluster;

#define PORTA_REDIS_N_SLOTS 16384

/* redis+cluster:// and rediss+cluster:// name a cluster by some of its
 * nodes: redis+cluster://[user:password@]host:port[,host:port...][/]. */
gboolean           porta_redis_cluster_is_uri       (const char         *uri);
char              *porta_redis_cluster_display_uri  (const char         *uri);

/* Parses @uri; the credentials and TLS go to @user, @password and @tls
 * for the node clients. @front is the client that owns the cluster. */
PortaRedisCluster *porta_redis_cluster_new          (PortaRedisClient   *front,
                                                     const char         *uri,
                                                     const char         *display_uri,
                                                     char              **user,
                                                     char              **password,
                                                     gboolean           *tls,
                                                     GError            **error);
/* Worker thread only, from here on. */
void               porta_redis_cluster_free         (PortaRedisCluster  *cluster);

/* The slot of every key and shard channel of the lock @name:
 * CRC16(name) mod 16384, since the keys carry the hash tag {name}. */
guint              porta_redis_key_slot             (const char         *name);

/* The client of the master serving @slot in the last map read, or NULL
 * (no map yet, or no master serves it). */
PortaRedisClient  *porta_redis_cluster_lookup       (PortaRedisCluster  *cluster,
                                                     guint               slot);
gboolean           porta_redis_cluster_is_known     (PortaRedisCluster  *cluster);
/* The masters of the last map read, as "host:port host:port...": what
 * the lock scripts take for the nodes still alive (redis/common.lua). */
const char        *porta_redis_cluster_get_masters  (PortaRedisCluster  *cluster);

typedef void (*PortaRedisClusterFunc) (gpointer      data,
                                       const GError *error);

/* Reads the slot map again (CLUSTER SLOTS) from the masters known, then
 * from the nodes of the URI; @func runs once it is read or no node could
 * give it. Calls made while a reading is on its way share it. */
void               porta_redis_cluster_refresh      (PortaRedisCluster    *cluster,
                                                     PortaRedisClusterFunc func,
                                                     gpointer              data);

/* In porta-redis-client.c, for the cluster. */
typedef void (*PortaRedisReplyFunc) (PortaRedisClient *client,
                                     redisReply       *reply,  /* NULL on @error */
                                     const GError     *error,
                                     gpointer          data);

/* A client of one master of @front's cluster, not shared through the
 * registry: its waits use sharded pub/sub. */
PortaRedisClient  *porta_redis_client_new_node      (PortaRedisClient    *front,
                                                     const char          *host,
                                                     guint16              port);
const char        *porta_redis_client_get_host      (PortaRedisClient    *client);
void               porta_redis_client_command       (PortaRedisClient    *client,
                                                     int                  argc,
                                                     const char         **argv,
                                                     PortaRedisReplyFunc  func,
                                                     gpointer             data);

G_END_DECLS
