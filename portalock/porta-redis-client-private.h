/* porta-redis-client-private.h: connections to a Redis server, shared by
 * every PortaRedisLock of the process, and the wait engine on them
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct _PortaRedisClient PortaRedisClient;
typedef struct _PortaRedisHold   PortaRedisHold;

/* The longest lock name: the name is part of every key and channel. */
#define PORTA_REDIS_MAX_NAME 512

/* @uri with any password left out, for messages; never fails. */
char             *porta_redis_display_uri             (const char    *uri);
gboolean          porta_redis_check_name              (const char    *name,
                                                       GError       **error);

/* The client of the server @uri (and TLS @database) shared by the whole
 * process: one command and one subscriber connection, made when first
 * needed. Fails with G_IO_ERROR_INVALID_ARGUMENT for a malformed URI. */
PortaRedisClient *porta_redis_client_get              (const char    *uri,
                                                       GTlsDatabase  *database,
                                                       GError       **error);
PortaRedisClient *porta_redis_client_ref              (PortaRedisClient *client);
void              porta_redis_client_unref            (PortaRedisClient *client);
const char       *porta_redis_client_get_display_uri  (PortaRedisClient *client);

/* Runs in @context when the hold is lost: its renewal failed or the
 * connection that shows this process alive dropped. */
typedef void (*PortaRedisLostFunc) (gpointer      user_data,
                                    const GError *error);

typedef struct
{
  const char        *name;
  gboolean           exclusive;
  guint              capacity;      /* shared holders at most; 0: any number */
  guint              lease_ms;
  int                timeout_ms;    /* -1, 0 or > 0 */
  gint64             deadline;      /* porta_deadline (timeout_ms) */
  guint              replicas;      /* replicas to confirm a grant (WAIT); 0: none */
  GMainContext      *lost_context;
  PortaRedisLostFunc lost_func;
  gpointer           lost_data;
  GDestroyNotify     lost_destroy;
  /* Non-NULL: also take Python portalocker's RedisLock on this channel. */
  const char        *portalocker_channel;
} PortaRedisRequest;

/* The message of a G_IO_ERROR_TIMED_OUT from a wait that saw the lock
 * taken; one that never had an answer from the server says so itself. */
#define PORTA_REDIS_WAIT_TIMED_OUT "timed out"

/* The callback runs in the caller's thread-default main context. Errors:
 * G_IO_ERROR_WOULD_BLOCK (timeout 0), G_IO_ERROR_TIMED_OUT,
 * G_IO_ERROR_CANCELLED (with no message worth showing: the caller words
 * them), or a connection or server error with its cause. */
void              porta_redis_client_acquire_async    (PortaRedisClient        *client,
                                                       const PortaRedisRequest *request,
                                                       GCancellable            *cancellable,
                                                       int                      priority,
                                                       GAsyncReadyCallback      callback,
                                                       gpointer                 user_data);
PortaRedisHold   *porta_redis_client_acquire_finish   (GAsyncResult            *result,
                                                       GError                 **error);

guint64           porta_redis_hold_get_fence          (PortaRedisHold *hold);
/* From now on the lease of @hold is renewed only after @context has run a
 * pulse: a @context that stops running for a whole lease loses the hold. */
void              porta_redis_hold_renew_from         (PortaRedisHold *hold,
                                                       GMainContext   *context);
void              porta_redis_hold_unref              (PortaRedisHold *hold);
/* Gives the lock back; @hold is consumed. With no @callback nobody waits
 * for the answer (a lock disposed while held). Fails with
 * PORTA_LOCK_ERROR_NOT_HELD if the lease had run out or the hold was lost
 * before. */
void              porta_redis_hold_release_async      (PortaRedisHold          *hold,
                                                       GAsyncReadyCallback      callback,
                                                       gpointer                 user_data);
gboolean          porta_redis_hold_release_finish     (GAsyncResult            *result,
                                                       GError                 **error);

G_END_DECLS
