/* porta-redis-lock.c: a lock shared through a Redis server, across machines
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>

#include "porta-common-private.h"
#include "porta-enums.h"
#include "porta-i18n-private.h"
#include "porta-lock.h"
#include "porta-redis-client-private.h"
#include "porta-redis-cluster-private.h"
#include "porta-redis-lock.h"

/**
 * SECTION:porta-redis-lock
 * @Title: PortaRedisLock
 * @Short_description: a lock shared through a Redis server, across machines
 * @See_also: #PortaLockable, #PortaLock, #PortaSemaphore
 *
 * A #PortaRedisLock is a lock that every process reaching the same Redis
 * server shares, on any machine: exclusive, shared, or counting (at most
 * #PortaRedisLock:max-holders holders at once, a bounded semaphore across
 * machines). It is a #PortaLockable, so code written for a #PortaLock
 * works with it.
 *
 * |[<!-- language="C" -->
 * g_autoptr(PortaRedisLock) lock =
 *   porta_redis_lock_new ("redis://127.0.0.1:6379/0", "nightly-report",
 *                         PORTA_LOCK_MODE_EXCLUSIVE);
 * g_autoptr(GError) error = NULL;
 *
 * if (!porta_redis_lock_acquire (lock, 0, NULL, &error))
 *   {
 *     g_printerr ("%s\n", error->message);   // taken: another machine runs it
 *     return FALSE;
 *   }
 * write_report (porta_redis_lock_get_fencing_token (lock));
 * porta_redis_lock_release (lock, NULL);
 * ]|
 *
 * Servers are named by URIs as redis-py and hiredis users know them:
 * `redis://[user:password@]host[:port][/db]`, `rediss://` for TLS (see
 * #PortaRedisLock:tls-database) and `unix:///path/redis.sock?db=N`. Every
 * lock of the process on one server shares one command connection and one
 * subscriber connection, run by a worker thread of the library; the
 * password is never shown: #PortaRedisLock:uri and every message leave it
 * out.
 *
 * A Redis Cluster (Redis 7.0 or later) is named by some of its nodes:
 * `redis+cluster://[user:password@]host:port[,host:port...]/`, or
 * `rediss+cluster://` for TLS. The library reads the cluster's slot map,
 * keeps all of a lock's keys in one slot (the hash tag `{NAME}`), sends
 * its commands to the master of that slot with one command and one
 * subscriber connection per master in use, follows the slot when it moves
 * (`MOVED`), and wakes waiters with sharded pub/sub (`SPUBLISH`), which
 * stays on the lock's node. When the master of a held lock's slot fails,
 * the holder emits #PortaRedisLock::lost at once; its waiters take the
 * lock from the replica that replaces it as soon as the cluster has
 * promoted one. A lock whose slot is moved to another master while held
 * is lost too, at the holder's next renewal at the latest. Fencing tokens
 * after a failover are only as recent as the promoted replica's copy of
 * the counter: see “The Redis protocol” for exactly when they can repeat.
 *
 * A waiter is told of a release by the server (publish/subscribe) and
 * takes the lock in one round trip: nobody polls while the holder is
 * alive. A holder whose process ends (its connections close) loses the
 * lock at once, and the first waiter in line notices within about 100 ms.
 * A holder that hangs or is cut off keeps its connections, so it loses the
 * lock when its lease (#PortaRedisLock:lease-ms) runs out; the library
 * renews the lease every third of it while the lock is held. A lock
 * acquired from the main context it was made in, while that context runs
 * (an async acquire whose callback is dispatched there, or a sync acquire
 * called from one of its sources), is renewed only after that context has
 * run a short pulse: an application whose main loop hangs for a whole
 * lease loses the lock as a stopped process does, and learns it when the
 * loop runs again. A lock acquired where no main loop runs (a script
 * calling porta_redis_lock_acquire() at its top level) is renewed by the
 * library's worker thread alone, however long the script is busy. When a
 * renewal fails, or the connection that shows the process alive drops,
 * the lock emits #PortaRedisLock::lost and #PortaLockable:held turns
 * %FALSE: it is never taken again behind the caller's back.
 *
 * Each grant of a name gets a fencing token
 * (#PortaRedisLock:fencing-token), a number greater than every earlier
 * grant of that name on that server. A resource that remembers the largest
 * token it has seen and refuses smaller ones is safe from a holder that
 * was paused past its lease. The counter lives in the server: it stays
 * increasing across restarts only if the server persists every write
 * (`appendfsync always`), and a replica promoted after a failover may not
 * have seen the last increments, so tokens can repeat then.
 *
 * The protocol (keys, scripts, what each failure does) is described in
 * the section “The Redis protocol” of this manual.
 *
 * Like a #PortaLock, a #PortaRedisLock is one holder and is not
 * thread-safe; give each thread its own. Disposing a held lock releases
 * it.
 */

#define DEFAULT_LEASE_MS 30000
#define MIN_LEASE_MS     100

/**
 * PortaRedisLock:
 *
 * A lock shared through a Redis server. Its fields are private.
 *
 * Since: 1.2
 */
struct _PortaRedisLock
{
  GObject           parent_instance;

  char             *uri;           /* with the password: never shown */
  char             *display_uri;   /* without it */
  char             *name;
  char             *display;       /* for messages */
  PortaLockMode     mode;
  guint             max_holders;   /* 0: any number (shared) */
  guint             lease_ms;
  guint             replicas_to_confirm;
  GTlsDatabase     *tls_database;
  PortaRedisProtocol protocol;
  GMainContext     *context;       /* where ::lost is emitted */

  PortaRedisClient *client;
  PortaRedisHold   *hold;
  guint64           fencing_token;
  guint             grant_serial;
  gboolean          pending;
};

enum {
  PROP_0,
  PROP_URI,
  PROP_NAME,
  PROP_MODE,
  PROP_MAX_HOLDERS,
  PROP_LEASE_MS,
  PROP_TLS_DATABASE,
  PROP_FENCING_TOKEN,
  PROP_PROTOCOL,
  PROP_REPLICAS_TO_CONFIRM,
  N_PROPS,

  PROP_HELD = N_PROPS,
};

enum {
  SIGNAL_LOST,
  N_SIGNALS
};

static GParamSpec *properties[N_PROPS];
static GParamSpec *held_pspec;
static guint signals[N_SIGNALS];

static void porta_redis_lock_lockable_init (PortaLockableInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (PortaRedisLock, porta_redis_lock, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (PORTA_TYPE_LOCKABLE,
                                                      porta_redis_lock_lockable_init))

/* The lock is told of a loss through this, weakly: the loss may come
 * after the lock is gone, or after it was released and taken again. */
typedef struct
{
  GWeakRef lock;
  guint    serial;
} LostBox;

static void
lost_box_free (gpointer data)
{
  LostBox *box = data;

  g_weak_ref_clear (&box->lock);
  g_free (box);
}

static void
porta_redis_lock_set_hold (PortaRedisLock *self,
                           PortaRedisHold *hold)
{
  gboolean was_held = self->hold != NULL;

  g_object_freeze_notify (G_OBJECT (self));
  self->hold = hold;
  if (hold != NULL)
    {
      self->fencing_token = porta_redis_hold_get_fence (hold);
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_FENCING_TOKEN]);
    }
  if (was_held != (hold != NULL))
    g_object_notify_by_pspec (G_OBJECT (self), held_pspec);
  g_object_thaw_notify (G_OBJECT (self));
}

static void
porta_redis_lock_lost (gpointer      user_data,
                       const GError *error)
{
  LostBox *box = user_data;
  g_autoptr(PortaRedisLock) self = g_weak_ref_get (&box->lock);
  g_autoptr(GError) lost_error = NULL;
  PortaRedisHold *hold;

  if (self == NULL || self->hold == NULL || self->grant_serial != box->serial)
    return;
  lost_error = g_error_new (error->domain, error->code,
                            _("The Redis lock %s was lost: %s"),
                            self->display, error->message);
  hold = self->hold;
  porta_redis_lock_set_hold (self, NULL);
  porta_redis_hold_unref (hold);
  g_debug ("%s", lost_error->message);
  g_signal_emit (self, signals[SIGNAL_LOST], 0, lost_error);
}

static void
porta_redis_lock_update_display (PortaRedisLock *self)
{
  g_free (self->display_uri);
  self->display_uri = porta_redis_display_uri (self->uri);
  g_free (self->display);
  self->display = g_strdup_printf ("“%s” on %s", self->name != NULL ? self->name : "",
                                   self->display_uri);
}

static void
porta_redis_lock_dispose (GObject *object)
{
  PortaRedisLock *self = PORTA_REDIS_LOCK (object);

  if (self->hold != NULL)
    porta_redis_hold_release_async (g_steal_pointer (&self->hold), NULL, NULL);
  g_clear_pointer (&self->client, porta_redis_client_unref);
  g_clear_object (&self->tls_database);

  G_OBJECT_CLASS (porta_redis_lock_parent_class)->dispose (object);
}

static void
porta_redis_lock_finalize (GObject *object)
{
  PortaRedisLock *self = PORTA_REDIS_LOCK (object);

  g_free (self->uri);
  g_free (self->display_uri);
  g_free (self->name);
  g_free (self->display);
  g_clear_pointer (&self->context, g_main_context_unref);

  G_OBJECT_CLASS (porta_redis_lock_parent_class)->finalize (object);
}

static void
porta_redis_lock_get_property (GObject    *object,
                               guint       prop_id,
                               GValue     *value,
                               GParamSpec *pspec)
{
  PortaRedisLock *self = PORTA_REDIS_LOCK (object);

  switch (prop_id)
    {
    case PROP_URI:
      g_value_set_string (value, self->display_uri);
      break;
    case PROP_NAME:
      g_value_set_string (value, self->name);
      break;
    case PROP_MODE:
      g_value_set_enum (value, self->mode);
      break;
    case PROP_MAX_HOLDERS:
      g_value_set_uint (value, self->max_holders);
      break;
    case PROP_LEASE_MS:
      g_value_set_uint (value, self->lease_ms);
      break;
    case PROP_TLS_DATABASE:
      g_value_set_object (value, self->tls_database);
      break;
    case PROP_FENCING_TOKEN:
      g_value_set_uint64 (value, self->fencing_token);
      break;
    case PROP_PROTOCOL:
      g_value_set_enum (value, self->protocol);
      break;
    case PROP_REPLICAS_TO_CONFIRM:
      g_value_set_uint (value, self->replicas_to_confirm);
      break;
    case PROP_HELD:
      g_value_set_boolean (value, self->hold != NULL);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
porta_redis_lock_set_property (GObject      *object,
                               guint         prop_id,
                               const GValue *value,
                               GParamSpec   *pspec)
{
  PortaRedisLock *self = PORTA_REDIS_LOCK (object);

  switch (prop_id)
    {
    case PROP_URI:
      g_free (self->uri);
      self->uri = g_value_dup_string (value);
      porta_redis_lock_update_display (self);
      break;
    case PROP_NAME:
      g_free (self->name);
      self->name = g_value_dup_string (value);
      porta_redis_lock_update_display (self);
      break;
    case PROP_MODE:
      self->mode = g_value_get_enum (value);
      break;
    case PROP_MAX_HOLDERS:
      self->max_holders = g_value_get_uint (value);
      break;
    case PROP_LEASE_MS:
      porta_redis_lock_set_lease_ms (self, g_value_get_uint (value));
      break;
    case PROP_TLS_DATABASE:
      porta_redis_lock_set_tls_database (self, g_value_get_object (value));
      break;
    case PROP_PROTOCOL:
      porta_redis_lock_set_protocol (self, g_value_get_enum (value));
      break;
    case PROP_REPLICAS_TO_CONFIRM:
      porta_redis_lock_set_replicas_to_confirm (self, g_value_get_uint (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
porta_redis_lock_class_init (PortaRedisLockClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = porta_redis_lock_dispose;
  object_class->finalize = porta_redis_lock_finalize;
  object_class->get_property = porta_redis_lock_get_property;
  object_class->set_property = porta_redis_lock_set_property;

  /**
   * PortaRedisLock:uri:
   *
   * The server, as a URI: `redis://[user:password@]host[:port][/db]`,
   * `rediss://…` for TLS, or `unix:///path/redis.sock?db=N`; or a Redis
   * Cluster, `redis+cluster://[user:password@]host:port[,host:port...]/`
   * (`rediss+cluster://` for TLS), named by one or more of its nodes.
   * Read back, it leaves the password out. A malformed URI makes every acquire fail
   * with %G_IO_ERROR_INVALID_ARGUMENT.
   *
   * Since: 1.2
   */
  properties[PROP_URI] =
    g_param_spec_string ("uri", "URI", "The Redis server, without its password when read",
                         NULL,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                         G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * PortaRedisLock:name:
   *
   * The name of the lock on the server: every #PortaRedisLock with the
   * same name on the same server is the same lock. Non-empty UTF-8 of at
   * most 512 bytes, without “{” or “}”.
   *
   * Since: 1.2
   */
  properties[PROP_NAME] =
    g_param_spec_string ("name", "Name", "The name of the lock on the server",
                         NULL,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                         G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * PortaRedisLock:mode:
   *
   * Whether the lock is held exclusively or shared.
   *
   * Since: 1.2
   */
  properties[PROP_MODE] =
    g_param_spec_enum ("mode", "Mode", "Exclusive or shared",
                       PORTA_TYPE_LOCK_MODE, PORTA_LOCK_MODE_EXCLUSIVE,
                       G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                       G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * PortaRedisLock:max-holders:
   *
   * For a shared lock, how many holders it lets in at once: 0 for any
   * number. A counting lock (porta_redis_lock_new_counting()) is a shared
   * lock with a limit. Exclusive locks ignore it. Give every user of a
   * name the same limit: each waiter is judged by its own.
   *
   * Since: 1.2
   */
  properties[PROP_MAX_HOLDERS] =
    g_param_spec_uint ("max-holders", "Max holders", "Shared holders at most (0: any number)",
                       0, G_MAXINT, 0,
                       G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                       G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * PortaRedisLock:lease-ms:
   *
   * How long the server keeps the lock for a holder that stops answering
   * (stopped, hung, or cut off while its connections stay open), in
   * milliseconds; at least 100. The library renews it every third of it
   * while the lock is held. A change applies from the next acquire.
   *
   * Since: 1.2
   */
  properties[PROP_LEASE_MS] =
    g_param_spec_uint ("lease-ms", "Lease", "The lease of a holder, in milliseconds",
                       MIN_LEASE_MS, G_MAXINT, DEFAULT_LEASE_MS,
                       G_PARAM_READWRITE | G_PARAM_CONSTRUCT |
                       G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * PortaRedisLock:replicas-to-confirm:
   *
   * How many replicas of the lock's server (or of its slot's master, on
   * a cluster) must have a grant before an acquire succeeds; 0, the
   * default, waits for none. After each grant the library sends `WAIT`
   * on the connection that made it, for 1 s at most (other locks' commands
   * on that connection wait behind it); when fewer replicas confirm it,
   * the grant is given back and the acquire fails with
   * %G_IO_ERROR_FAILED. A confirmed grant, and its fencing token, survive
   * the failover to a replica that confirmed it. A change applies from
   * the next acquire.
   *
   * Since: 1.2
   */
  properties[PROP_REPLICAS_TO_CONFIRM] =
    g_param_spec_uint ("replicas-to-confirm", "Replicas to confirm",
                       "How many replicas must have a grant before it is held",
                       0, G_MAXINT, 0,
                       G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * PortaRedisLock:tls-database:
   *
   * The certificate authorities that a `rediss://` server's certificate
   * must be signed by, for example a #GTlsFileDatabase made from a CA
   * file; %NULL for the system's. It applies to the connections made
   * after it is set: set it before the first acquire.
   *
   * Since: 1.2
   */
  properties[PROP_TLS_DATABASE] =
    g_param_spec_object ("tls-database", "TLS database", "Who may sign the server's certificate",
                         G_TYPE_TLS_DATABASE,
                         G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * PortaRedisLock:fencing-token:
   *
   * The fencing token of the latest grant, 0 before the first: greater
   * than the token of every earlier grant of this name on this server
   * (see the caveats above on restarts and failover).
   *
   * Since: 1.2
   */
  properties[PROP_FENCING_TOKEN] =
    g_param_spec_uint64 ("fencing-token", "Fencing token", "The fencing token of the latest grant",
                         0, G_MAXUINT64, 0,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * PortaRedisLock:protocol:
   *
   * Which clients the lock excludes: only portalock's, or Python
   * portalocker's `RedisLock` on the channel named like the lock too
   * (%PORTA_REDIS_PROTOCOL_PORTALOCKER, for exclusive locks only; a
   * shared or counting lock with it fails to acquire with
   * %G_IO_ERROR_INVALID_ARGUMENT). Every portalock user of a name must
   * choose the same. A change applies from the next acquire.
   *
   * With portalocker's protocol the lock is taken in two steps: first
   * portalock's own lock, with its pushed hand-off and fencing token, then
   * portalocker's, which has no queue and no wake-up: while a portalocker
   * process holds it, the lock looks again every 25 to 75 ms, as
   * portalocker's own waiters poll. The holder answers portalocker's
   * liveness pings; a portalocker waiter that gets no answer within a
   * second kills the holder's connection, and the lock is then lost
   * (#PortaRedisLock::lost).
   *
   * Since: 1.2
   */
  properties[PROP_PROTOCOL] =
    g_param_spec_enum ("protocol", "Protocol", "Which clients the lock excludes",
                       PORTA_TYPE_REDIS_PROTOCOL, PORTA_REDIS_PROTOCOL_PORTALOCK,
                       G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  g_object_class_install_properties (object_class, N_PROPS, properties);
  held_pspec = porta_lockable_override_held (object_class, PROP_HELD);

  /**
   * PortaRedisLock::lost:
   * @self: the #PortaRedisLock
   * @error: why: the lease ran out before it was renewed, a renewal
   *   failed, or the connection that shows this process alive dropped
   *
   * Emitted when a held lock is lost without being released: another
   * client may hold it now. #PortaLockable:held is %FALSE by then, and
   * the lock is not taken again unless the application acquires it. It is
   * emitted in the thread-default main context of the thread that created
   * the lock, which must be running for it to arrive.
   *
   * Since: 1.2
   */
  signals[SIGNAL_LOST] =
    g_signal_new ("lost", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL,
                  G_TYPE_NONE, 1, G_TYPE_ERROR);
}

static void
porta_redis_lock_init (PortaRedisLock *self)
{
  self->lease_ms = DEFAULT_LEASE_MS;
  self->context = g_main_context_ref_thread_default ();
}

/**
 * porta_redis_lock_new:
 * @uri: the server, as in #PortaRedisLock:uri
 * @name: the name of the lock on the server
 * @mode: exclusive or shared (any number of shared holders)
 *
 * Makes a lock on a Redis server. Nothing is checked or connected until
 * the first acquire, which reports a malformed @uri or @name.
 *
 * Returns: (transfer full): a new #PortaRedisLock, not held
 *
 * Since: 1.2
 */
PortaRedisLock *
porta_redis_lock_new (const char    *uri,
                      const char    *name,
                      PortaLockMode  mode)
{
  g_return_val_if_fail (uri != NULL, NULL);
  g_return_val_if_fail (name != NULL, NULL);

  return g_object_new (PORTA_TYPE_REDIS_LOCK, "uri", uri, "name", name, "mode", mode, NULL);
}

/**
 * porta_redis_lock_new_counting:
 * @uri: the server, as in #PortaRedisLock:uri
 * @name: the name of the lock on the server
 * @max_holders: how many holders it lets in at once, at least 1
 *
 * Makes a counting lock on a Redis server: at most @max_holders holders
 * at once, on any machine (a bounded semaphore; Python portalocker's
 * `BoundedSemaphore` across machines).
 *
 * Returns: (transfer full): a new #PortaRedisLock, not held
 *
 * Since: 1.2
 */
PortaRedisLock *
porta_redis_lock_new_counting (const char *uri,
                               const char *name,
                               guint       max_holders)
{
  g_return_val_if_fail (uri != NULL, NULL);
  g_return_val_if_fail (name != NULL, NULL);
  g_return_val_if_fail (max_holders >= 1 && max_holders <= G_MAXINT, NULL);

  return g_object_new (PORTA_TYPE_REDIS_LOCK, "uri", uri, "name", name,
                       "mode", PORTA_LOCK_MODE_SHARED, "max-holders", max_holders, NULL);
}

/**
 * porta_redis_lock_get_uri:
 * @self: a #PortaRedisLock
 *
 * Gets the server's URI, without its password.
 *
 * Returns: the URI of #PortaRedisLock:uri
 *
 * Since: 1.2
 */
const char *
porta_redis_lock_get_uri (PortaRedisLock *self)
{
  g_return_val_if_fail (PORTA_IS_REDIS_LOCK (self), NULL);

  return self->display_uri;
}

/**
 * porta_redis_lock_get_name:
 * @self: a #PortaRedisLock
 *
 * Gets the name of the lock on the server.
 *
 * Returns: the #PortaRedisLock:name
 *
 * Since: 1.2
 */
const char *
porta_redis_lock_get_name (PortaRedisLock *self)
{
  g_return_val_if_fail (PORTA_IS_REDIS_LOCK (self), NULL);

  return self->name;
}

/**
 * porta_redis_lock_get_mode:
 * @self: a #PortaRedisLock
 *
 * Gets whether the lock is exclusive or shared.
 *
 * Returns: the #PortaRedisLock:mode
 *
 * Since: 1.2
 */
PortaLockMode
porta_redis_lock_get_mode (PortaRedisLock *self)
{
  g_return_val_if_fail (PORTA_IS_REDIS_LOCK (self), PORTA_LOCK_MODE_EXCLUSIVE);

  return self->mode;
}

/**
 * porta_redis_lock_get_max_holders:
 * @self: a #PortaRedisLock
 *
 * Gets how many shared holders the lock lets in at once.
 *
 * Returns: the #PortaRedisLock:max-holders, 0 for any number
 *
 * Since: 1.2
 */
guint
porta_redis_lock_get_max_holders (PortaRedisLock *self)
{
  g_return_val_if_fail (PORTA_IS_REDIS_LOCK (self), 0);

  return self->max_holders;
}

/**
 * porta_redis_lock_get_lease_ms:
 * @self: a #PortaRedisLock
 *
 * Gets the lease of a holder.
 *
 * Returns: the #PortaRedisLock:lease-ms
 *
 * Since: 1.2
 */
guint
porta_redis_lock_get_lease_ms (PortaRedisLock *self)
{
  g_return_val_if_fail (PORTA_IS_REDIS_LOCK (self), 0);

  return self->lease_ms;
}

/**
 * porta_redis_lock_set_lease_ms:
 * @self: a #PortaRedisLock
 * @lease_ms: the lease, in milliseconds, at least 100
 *
 * Sets #PortaRedisLock:lease-ms, for the next acquire.
 *
 * Since: 1.2
 */
void
porta_redis_lock_set_lease_ms (PortaRedisLock *self,
                               guint           lease_ms)
{
  g_return_if_fail (PORTA_IS_REDIS_LOCK (self));
  g_return_if_fail (lease_ms >= MIN_LEASE_MS && lease_ms <= G_MAXINT);

  if (self->lease_ms == lease_ms)
    return;
  self->lease_ms = lease_ms;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LEASE_MS]);
}

/**
 * porta_redis_lock_get_replicas_to_confirm:
 * @self: a #PortaRedisLock
 *
 * Gets how many replicas must confirm a grant.
 *
 * Returns: the #PortaRedisLock:replicas-to-confirm
 *
 * Since: 1.2
 */
guint
porta_redis_lock_get_replicas_to_confirm (PortaRedisLock *self)
{
  g_return_val_if_fail (PORTA_IS_REDIS_LOCK (self), 0);

  return self->replicas_to_confirm;
}

/**
 * porta_redis_lock_set_replicas_to_confirm:
 * @self: a #PortaRedisLock
 * @replicas: how many replicas must have a grant before it is held; 0:
 *   none
 *
 * Sets #PortaRedisLock:replicas-to-confirm, for the next acquire.
 *
 * Since: 1.2
 */
void
porta_redis_lock_set_replicas_to_confirm (PortaRedisLock *self,
                                          guint           replicas)
{
  g_return_if_fail (PORTA_IS_REDIS_LOCK (self));
  g_return_if_fail (replicas <= G_MAXINT);

  if (self->replicas_to_confirm == replicas)
    return;
  self->replicas_to_confirm = replicas;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_REPLICAS_TO_CONFIRM]);
}

/**
 * porta_redis_lock_get_tls_database:
 * @self: a #PortaRedisLock
 *
 * Gets the certificate authorities used for `rediss://` servers.
 *
 * Returns: (transfer none) (nullable): the #PortaRedisLock:tls-database
 *
 * Since: 1.2
 */
GTlsDatabase *
porta_redis_lock_get_tls_database (PortaRedisLock *self)
{
  g_return_val_if_fail (PORTA_IS_REDIS_LOCK (self), NULL);

  return self->tls_database;
}

/**
 * porta_redis_lock_set_tls_database:
 * @self: a #PortaRedisLock
 * @database: (nullable): the certificate authorities, or %NULL for the
 *   system's
 *
 * Sets #PortaRedisLock:tls-database. Set it before the first acquire.
 *
 * Since: 1.2
 */
void
porta_redis_lock_set_tls_database (PortaRedisLock *self,
                                   GTlsDatabase   *database)
{
  g_return_if_fail (PORTA_IS_REDIS_LOCK (self));
  g_return_if_fail (database == NULL || G_IS_TLS_DATABASE (database));

  if (g_set_object (&self->tls_database, database))
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_TLS_DATABASE]);
}

/**
 * porta_redis_lock_get_protocol:
 * @self: a #PortaRedisLock
 *
 * Gets #PortaRedisLock:protocol.
 *
 * Returns: which clients the lock excludes
 *
 * Since: 1.2
 */
PortaRedisProtocol
porta_redis_lock_get_protocol (PortaRedisLock *self)
{
  g_return_val_if_fail (PORTA_IS_REDIS_LOCK (self), PORTA_REDIS_PROTOCOL_PORTALOCK);

  return self->protocol;
}

/**
 * porta_redis_lock_set_protocol:
 * @self: a #PortaRedisLock
 * @protocol: which clients the lock excludes
 *
 * Sets #PortaRedisLock:protocol, from the next acquire on.
 *
 * Since: 1.2
 */
void
porta_redis_lock_set_protocol (PortaRedisLock     *self,
                               PortaRedisProtocol  protocol)
{
  g_return_if_fail (PORTA_IS_REDIS_LOCK (self));
  g_return_if_fail (protocol == PORTA_REDIS_PROTOCOL_PORTALOCK ||
                    protocol == PORTA_REDIS_PROTOCOL_PORTALOCKER);

  if (self->protocol == protocol)
    return;
  self->protocol = protocol;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_PROTOCOL]);
}

/**
 * porta_redis_lock_get_held:
 * @self: a #PortaRedisLock
 *
 * Gets whether this #PortaRedisLock holds its lock. It turns %FALSE on
 * release and when the lock is lost (#PortaRedisLock::lost).
 *
 * Returns: %TRUE if the lock is held
 *
 * Since: 1.2
 */
gboolean
porta_redis_lock_get_held (PortaRedisLock *self)
{
  g_return_val_if_fail (PORTA_IS_REDIS_LOCK (self), FALSE);

  return self->hold != NULL;
}

/**
 * porta_redis_lock_get_fencing_token:
 * @self: a #PortaRedisLock
 *
 * Gets the fencing token of the latest grant: pass it with every write to
 * the resource the lock protects, and have the resource refuse tokens
 * smaller than the largest it has seen.
 *
 * Returns: the #PortaRedisLock:fencing-token, 0 before the first grant
 *
 * Since: 1.2
 */
guint64
porta_redis_lock_get_fencing_token (PortaRedisLock *self)
{
  g_return_val_if_fail (PORTA_IS_REDIS_LOCK (self), 0);

  return self->fencing_token;
}

static gboolean
porta_redis_lock_prepare (PortaRedisLock  *self,
                          GError         **error)
{
  if (self->hold != NULL)
    {
      g_set_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_ALREADY_HELD,
                   _("The Redis lock %s is already held by this PortaRedisLock; "
                     "release it before acquiring it again"),
                   self->display);
      return FALSE;
    }
  if (self->pending)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_PENDING,
                   _("An acquisition of the Redis lock %s is already in progress"),
                   self->display);
      return FALSE;
    }
  if (!porta_redis_check_name (self->name, error))
    return FALSE;
  if (self->protocol == PORTA_REDIS_PROTOCOL_PORTALOCKER &&
      self->mode != PORTA_LOCK_MODE_EXCLUSIVE)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   _("The Redis lock %s cannot be shared with Python portalocker’s "
                     "protocol, whose locks are exclusive only"),
                   self->display);
      return FALSE;
    }
  if (self->protocol == PORTA_REDIS_PROTOCOL_PORTALOCKER && porta_redis_cluster_is_uri (self->uri))
    {
      /* PUBSUB NUMSUB counts the subscribers of one node only. */
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   _("The Redis lock %s cannot use Python portalocker’s protocol on a "
                     "Redis Cluster, where portalocker cannot see another node’s holder"),
                   self->display);
      return FALSE;
    }
  if (self->client == NULL)
    self->client = porta_redis_client_get (self->uri, self->tls_database, error);
  return self->client != NULL;
}

static void
porta_redis_lock_set_acquire_error (PortaRedisLock  *self,
                                    GError          *cause,
                                    int              timeout_ms,
                                    GError         **error)
{
  g_autofree char *display = g_strdup_printf ("%s (Redis %s)", self->name, self->display_uri);

  if (g_error_matches (cause, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK,
                 _("The Redis lock %s is taken"), self->display);
  else if (g_error_matches (cause, G_IO_ERROR, G_IO_ERROR_TIMED_OUT) &&
           g_strcmp0 (cause->message, PORTA_REDIS_WAIT_TIMED_OUT) == 0)
    porta_set_wait_end_error (error, ETIMEDOUT, timeout_ms, _("another client of the server"),
                              PORTA_HOLDER_NOT_TOLD, display);
  else if (g_error_matches (cause, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    porta_set_wait_end_error (error, ECANCELED, timeout_ms, NULL, PORTA_HOLDER_NOT_TOLD,
                              display);
  else
    {
      g_propagate_prefixed_error (error, g_steal_pointer (&cause),
                                  _("Cannot acquire the Redis lock %s: "), self->display);
      return;
    }
  g_error_free (cause);
}

static void
porta_redis_lock_acquire_done (GObject      *source,
                               GAsyncResult *result,
                               gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  PortaRedisLock *self = g_task_get_source_object (task);
  GError *cause = NULL;
  GError *error = NULL;
  PortaRedisHold *hold;

  self->pending = FALSE;
  hold = porta_redis_client_acquire_finish (result, &cause);
  if (hold == NULL)
    {
      porta_redis_lock_set_acquire_error (self, cause, GPOINTER_TO_INT (g_task_get_task_data (task)),
                                          &error);
      g_task_return_error (task, error);
      return;
    }
  /* An application that runs the lock's main context (this completion is
   * dispatched from it) has its lease tied to that context, so that a hung
   * main loop loses the lock; a program that never runs one (a script
   * with a sync acquire) has it renewed by the worker alone. */
  if (g_main_context_is_owner (self->context))
    porta_redis_hold_renew_from (hold, self->context);
  porta_redis_lock_set_hold (self, hold);
  g_task_return_boolean (task, TRUE);
}

/**
 * porta_redis_lock_acquire_async:
 * @self: a #PortaRedisLock
 * @timeout_ms: how long to wait, in milliseconds: -1 to wait for as long as
 *   it takes, 0 to try once without waiting
 * @io_priority: the priority of the result in the main context
 * @cancellable: (nullable): a #GCancellable, which may be cancelled from
 *   another thread to end the wait
 * @callback: (scope async): called with the result, in the thread-default
 *   main context of the caller
 * @user_data: (closure): data for @callback
 *
 * Acquires the lock without blocking the thread-default main context.
 * Finish with porta_redis_lock_acquire_finish(), which reports the errors
 * of porta_redis_lock_acquire().
 *
 * Since: 1.2
 */
void
porta_redis_lock_acquire_async (PortaRedisLock      *self,
                                int                  timeout_ms,
                                int                  io_priority,
                                GCancellable        *cancellable,
                                GAsyncReadyCallback  callback,
                                gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  GError *error = NULL;
  PortaRedisRequest request = { 0 };
  LostBox *box;

  g_return_if_fail (PORTA_IS_REDIS_LOCK (self));
  g_return_if_fail (timeout_ms >= -1);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, porta_redis_lock_acquire_async);
  g_task_set_name (task, "[portalock] porta_redis_lock_acquire_async");
  g_task_set_priority (task, io_priority);
  g_task_set_task_data (task, GINT_TO_POINTER (timeout_ms), NULL);

  if (!porta_redis_lock_prepare (self, &error))
    {
      g_task_return_error (task, error);
      return;
    }

  box = g_new0 (LostBox, 1);
  g_weak_ref_init (&box->lock, self);
  box->serial = ++self->grant_serial;
  request.name = self->name;
  request.exclusive = self->mode == PORTA_LOCK_MODE_EXCLUSIVE;
  request.capacity = self->max_holders;
  request.lease_ms = self->lease_ms;
  request.replicas = self->replicas_to_confirm;
  request.timeout_ms = timeout_ms;
  request.deadline = porta_deadline (timeout_ms);
  request.lost_context = self->context;
  request.lost_func = porta_redis_lock_lost;
  request.lost_data = box;
  request.lost_destroy = lost_box_free;
  if (self->protocol == PORTA_REDIS_PROTOCOL_PORTALOCKER)
    request.portalocker_channel = self->name;
  self->pending = TRUE;
  porta_redis_client_acquire_async (self->client, &request, cancellable, io_priority,
                                    porta_redis_lock_acquire_done, g_steal_pointer (&task));
}

/**
 * porta_redis_lock_acquire_finish:
 * @self: a #PortaRedisLock
 * @result: the #GAsyncResult given to the callback
 * @error: return location for a #GError
 *
 * Finishes porta_redis_lock_acquire_async().
 *
 * Returns: %TRUE if the lock is now held
 *
 * Since: 1.2
 */
gboolean
porta_redis_lock_acquire_finish (PortaRedisLock  *self,
                                 GAsyncResult    *result,
                                 GError         **error)
{
  g_return_val_if_fail (PORTA_IS_REDIS_LOCK (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == porta_redis_lock_acquire_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/**
 * porta_redis_lock_acquire:
 * @self: a #PortaRedisLock
 * @timeout_ms: how long to wait, in milliseconds: -1 to wait for as long as
 *   it takes, 0 to try once without waiting
 * @cancellable: (nullable): a #GCancellable, which may be cancelled from
 *   another thread to end the wait
 * @error: return location for a #GError
 *
 * Acquires the lock, waiting in the calling thread while it is taken. The
 * wait runs on a private #GMainContext, so no other source of the
 * caller's main contexts is dispatched meanwhile.
 *
 * Fails with %G_IO_ERROR_WOULD_BLOCK if @timeout_ms is 0 and the lock is
 * taken, %G_IO_ERROR_TIMED_OUT when @timeout_ms passes first,
 * %G_IO_ERROR_CANCELLED when @cancellable is cancelled first,
 * %G_IO_ERROR_INVALID_ARGUMENT for a malformed #PortaRedisLock:uri or
 * #PortaRedisLock:name, %G_IO_ERROR_CONNECTION_REFUSED (or another
 * connection error) when the server cannot be reached,
 * %G_IO_ERROR_PERMISSION_DENIED for a wrong user name or password,
 * %G_IO_ERROR_NOT_SUPPORTED when the server's ACL forbids a command the
 * lock needs (the message names it), %PORTA_LOCK_ERROR_ALREADY_HELD if
 * this #PortaRedisLock holds the lock already and %G_IO_ERROR_PENDING
 * while an acquisition of it is in progress.
 *
 * Returns: %TRUE if the lock is now held
 *
 * Since: 1.2
 */
gboolean
porta_redis_lock_acquire (PortaRedisLock  *self,
                          int              timeout_ms,
                          GCancellable    *cancellable,
                          GError         **error)
{
  g_autoptr(GAsyncResult) result = NULL;
  PortaSync sync;

  g_return_val_if_fail (PORTA_IS_REDIS_LOCK (self), FALSE);
  g_return_val_if_fail (timeout_ms >= -1, FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  porta_sync_init (&sync);
  porta_redis_lock_acquire_async (self, timeout_ms, G_PRIORITY_DEFAULT, cancellable,
                                  porta_sync_store, &sync);
  result = porta_sync_wait (&sync);

  return porta_redis_lock_acquire_finish (self, result, error);
}

/**
 * porta_redis_lock_try_acquire:
 * @self: a #PortaRedisLock
 * @error: return location for a #GError
 *
 * Acquires the lock if nobody holds it and nobody waits for it ahead:
 * porta_redis_lock_acquire() with a timeout of 0. It still takes a round
 * trip to the server.
 *
 * Returns: %TRUE if the lock is now held
 *
 * Since: 1.2
 */
gboolean
porta_redis_lock_try_acquire (PortaRedisLock  *self,
                              GError         **error)
{
  return porta_redis_lock_acquire (self, 0, NULL, error);
}

/**
 * porta_redis_lock_release:
 * @self: a #PortaRedisLock
 * @error: return location for a #GError
 *
 * Releases the lock, and wakes the waiters in every process at once. The
 * lock is no longer held afterwards, even when this fails.
 *
 * Fails with %PORTA_LOCK_ERROR_NOT_HELD if the lock is not held (or its
 * lease had run out on the server), or with the connection error that
 * kept the release from reaching the server: the server then frees the
 * lock when the lease runs out or this process ends.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.2
 */
gboolean
porta_redis_lock_release (PortaRedisLock  *self,
                          GError         **error)
{
  g_autoptr(GAsyncResult) result = NULL;
  GError *local_error = NULL;
  PortaRedisHold *hold;
  PortaSync sync;

  g_return_val_if_fail (PORTA_IS_REDIS_LOCK (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (self->hold == NULL)
    {
      g_set_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_HELD,
                   _("Cannot release the Redis lock %s: it is not held"),
                   self->display);
      return FALSE;
    }
  hold = self->hold;
  porta_redis_lock_set_hold (self, NULL);

  porta_sync_init (&sync);
  porta_redis_hold_release_async (hold, porta_sync_store, &sync);
  result = porta_sync_wait (&sync);

  if (!porta_redis_hold_release_finish (result, &local_error))
    {
      g_propagate_prefixed_error (error, local_error,
                                  _("Cannot release the Redis lock %s: "), self->display);
      return FALSE;
    }
  return TRUE;
}

static gboolean
porta_redis_lock_lockable_acquire (PortaLockable  *lockable,
                                   int             timeout_ms,
                                   GCancellable   *cancellable,
                                   GError        **error)
{
  return porta_redis_lock_acquire (PORTA_REDIS_LOCK (lockable), timeout_ms, cancellable, error);
}

static void
porta_redis_lock_lockable_acquire_async (PortaLockable       *lockable,
                                         int                  timeout_ms,
                                         int                  io_priority,
                                         GCancellable        *cancellable,
                                         GAsyncReadyCallback  callback,
                                         gpointer             user_data)
{
  porta_redis_lock_acquire_async (PORTA_REDIS_LOCK (lockable), timeout_ms, io_priority,
                                  cancellable, callback, user_data);
}

static gboolean
porta_redis_lock_lockable_acquire_finish (PortaLockable  *lockable,
                                          GAsyncResult   *result,
                                          GError        **error)
{
  return porta_redis_lock_acquire_finish (PORTA_REDIS_LOCK (lockable), result, error);
}

static gboolean
porta_redis_lock_lockable_release (PortaLockable  *lockable,
                                   GError        **error)
{
  return porta_redis_lock_release (PORTA_REDIS_LOCK (lockable), error);
}

static gboolean
porta_redis_lock_lockable_get_held (PortaLockable *lockable)
{
  return porta_redis_lock_get_held (PORTA_REDIS_LOCK (lockable));
}

static void
porta_redis_lock_lockable_init (PortaLockableInterface *iface)
{
  iface->acquire = porta_redis_lock_lockable_acquire;
  iface->acquire_async = porta_redis_lock_lockable_acquire_async;
  iface->acquire_finish = porta_redis_lock_lockable_acquire_finish;
  iface->release = porta_redis_lock_lockable_release;
  iface->get_held = porta_redis_lock_lockable_get_held;
}
