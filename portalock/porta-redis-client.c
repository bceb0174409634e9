/* porta-redis-client.c: connections to a Redis server, shared by every
 * PortaRedisLock of the process, and the wait engine on them
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <string.h>

#include <hiredis/hiredis.h>
#ifdef G_OS_UNIX
#include <gio/gunixsocketaddress.h>
#endif

#include "porta-i18n-private.h"
#include "porta-lock.h"
#include "porta-redis-client-private.h"
#include "porta-redis-cluster-private.h"

/* Threads. Every connection of the process, and everything that reads or
 * changes their state (pending replies, subscriptions, waits, leases),
 * lives on one worker thread with a GMainContext of its own, started with
 * the first client and ended when the last one is gone. Callers on any
 * thread hand work to it with g_main_context_invoke() and get results back
 * in their own thread-default context, so no state is shared between
 * threads but reference counts and the registry (under registry_mutex).
 * Why a thread and not the caller's context: one connection serves locks
 * used from many threads and contexts, and a sync acquire must not depend
 * on some other context being iterated; leases are renewed while the
 * application is busy (as Redisson's watchdog does), and a stopped or
 * cut-off process, whose worker stops too, still loses its lease. A wake-up
 * is answered with the next ACQUIRE right on the worker, so a hand-off
 * costs one round trip and one cross-thread wake-up. */

#define CONNECT_TIMEOUT_S      10
#define CONFIRM_TIMEOUT_MS     1000
#define FIRST_WAITER_RETRY_MS  100
#define READ_CHUNK             16384

#define N_KEYS 5     /* h, i, q, w, f: see redis/acquire.lua */

typedef enum
{
  SCRIPT_ACQUIRE,
  SCRIPT_RELEASE,
  SCRIPT_RENEW,
  SCRIPT_WITHDRAW,
  N_SCRIPTS
} ScriptId;

static const char *const script_names[N_SCRIPTS] = {
  "acquire.lua", "release.lua", "renew.lua", "withdraw.lua",
};

typedef struct
{
  GBytes *body;
  char   *sha1;
} Script;

static Script scripts[N_SCRIPTS];

typedef struct _Conn Conn;
typedef struct _Link Link;
typedef struct _Op   Op;

typedef PortaRedisReplyFunc ReplyFunc;

typedef struct
{
  char      *buf;
  gsize      len;
  ReplyFunc  func;
  gpointer   data;
} Cmd;

/* One connection attempt and what it opened: a connection that drops is
 * replaced by a new Link, and callbacks of the old one find ->conn NULL. */
struct _Link
{
  gint           ref_count;
  Conn          *conn;
  GCancellable  *cancellable;
  GIOStream     *stream;
  GSource       *read_source;
  redisReader   *reader;
  GByteArray    *out;
  GBytes        *writing;   /* what is being written */
};

struct _Conn
{
  PortaRedisClient *client;
  gboolean          subscriber;
  Link             *link;      /* NULL while disconnected */
  gboolean          ready;     /* connected: commands go straight out */
  GQueue            pending;   /* Cmd sent, waiting for their replies */
  GQueue            queued;    /* Cmd waiting for the connection */

  /* Set on a connection that takes Python portalocker's lock for one
   * hold: subscribed to the channel portalocker watches, under the client
   * name it looks for (see "Python portalocker's lock" below). */
  char             *channel;
  Op               *op;        /* the wait that opened it, or */
  PortaRedisHold   *hold;      /* the hold that keeps it */
};

typedef struct
{
  char     *name;
  guint     serial;
  gboolean  confirmed;
  GList    *ops;        /* waits woken by its messages */
} Channel;

struct _PortaRedisClient
{
  gint          ref_count;   /* under registry_mutex */
  char         *key;
  char         *display_uri;
  GMainContext *context;     /* the worker's */

  /* The address, fixed at creation. */
  gboolean      unix_socket;
  gboolean      tls;
  char         *host;
  guint16       port;
  char         *path;
  char         *user;
  char         *password;
  guint         db;
  GTlsDatabase *database;

  /* Worker thread only. */
  Conn          cmd;
  Conn          sub;
  char         *liveness;     /* this process's liveness channel */
  guint         live_gen;     /* bumped whenever the subscriber drops */
  gboolean      live_ready;
  GList        *live_waiters; /* Op waiting for the liveness channel */
  GHashTable   *channels;     /* name -> Channel */
  guint         channel_serial;
  GList        *holds;

  /* A Redis Cluster (porta-redis-cluster.c): the client of its URI routes
   * each wait to a node client, one per master in use, whose waits use
   * sharded pub/sub; its own connections stay unused. */
  PortaRedisCluster *cluster;
  gboolean      sharded;
};

struct _PortaRedisHold
{
  gint               ref_count;
  PortaRedisClient  *client;
  char              *token;
  char              *keys[N_KEYS];
  char              *wake;
  guint              lease_ms;
  guint64            fence;
  GMainContext      *lost_context;
  PortaRedisLostFunc lost_func;
  gpointer           lost_data;
  GDestroyNotify     lost_destroy;

  /* Worker thread only. */
  gboolean           active;
  gboolean           renewing;
  GSource           *renew_source;
  Conn              *portalocker;  /* holds portalocker's lock too */
  Op                *pending_op;   /* granted, still taking portalocker's */
  GMainContext      *pulse_context; /* renewals wait for it to run, or NULL */
  gboolean           pulsing;       /* a pulse is posted there, not back yet */
  gint64             renew_sent;   /* when the renewal on its way was sent */
  gint64             renewed_at;   /* when the last one that held was sent */
};

struct _Op
{
  gint               ref_count;
  PortaRedisClient  *client;
  GMainContext      *caller_context;
  int                priority;
  GTask             *task;       /* touched in the caller's context only */

  char              *token;
  char              *keys[N_KEYS];
  char              *wake;
  gboolean           exclusive;
  guint              capacity;
  guint              lease_ms;
  int                timeout_ms;
  gint64             deadline;
  guint              replicas;
  GCancellable      *cancellable;
  gulong             cancel_id;
  GMainContext      *lost_context;
  PortaRedisLostFunc lost_func;
  gpointer           lost_data;
  GDestroyNotify     lost_destroy;

  /* Worker thread only. */
  GSource           *deadline_source;
  GSource           *retry_source;
  guint              live_gen;
  char             **watch;      /* the holders' liveness channels */
  gint64             lease_due;  /* monotonic time the first blocking lease ends */
  gboolean           probing;    /* a PUBSUB NUMSUB of them is on its way */
  gboolean           subscribed;
  gboolean           confirmed;
  gboolean           enqueued;
  gboolean           in_flight;
  gboolean           again;
  gboolean           done;
  gboolean           answered;   /* ACQUIRE has been answered once */

  /* Python portalocker's lock, taken once the grant is in. */
  char              *portalocker_channel;
  PortaRedisHold    *grant;
  Conn              *portalocker;
  GSource           *portalocker_source;

  /* On a cluster: the client of its URI; ->client is then the node of
   * ->slot, changed when the wait is routed again. */
  PortaRedisClient  *route;
  guint              slot;
  gboolean           routing;      /* waiting for the map or for a retry */
  gboolean           reroute;      /* route again when the ACQUIRE returns */
  gint64             trouble_since;
  GSource           *route_source;
  gint64             sent_at;      /* when the last ACQUIRE was sent */
};

static GMutex        registry_mutex;
static GHashTable   *registry;       /* key -> PortaRedisClient */
static GMainContext *worker_context;
static GMainLoop    *worker_loop;
static guint         n_alive;        /* clients and links not yet freed */

static void client_free_fields  (PortaRedisClient *client);
static void client_init_worker_part (PortaRedisClient *client);
static void conn_send           (Conn *conn, int argc, const char **argv, const gsize *lens,
                                 ReplyFunc func, gpointer data);
static void conn_drop           (Conn *conn, const GError *error);
static void client_subscriber_dropped (PortaRedisClient *client, const GError *error);
static void op_unref            (Op *op);
static void op_finish           (Op *op, PortaRedisHold *hold, GError *error);
static void op_attempt          (Op *op);
static void hold_lost           (PortaRedisHold *hold, const GError *error);
static PortaRedisHold *hold_ref (PortaRedisHold *hold);
static void hold_unref          (PortaRedisHold *hold);
static void portalocker_message (Conn *conn, redisReply *reply);
static void portalocker_dropped (Conn *conn, const GError *error);
static void portalocker_close   (Conn *conn);
static void portalocker_look    (Op *op);
static void portalocker_counted (PortaRedisClient *client, redisReply *reply,
                                 const GError *error, gpointer data);

/* Redis takes client names of printable ASCII without spaces only; with
 * another channel portalocker itself fails (its CLIENT SETNAME does), and
 * the holder goes unnamed. */
static gboolean
portalocker_can_name (const char *channel)
{
  for (const char *p = channel; *p != '\0'; p++)
    if ((guchar) *p <= ' ' || (guchar) *p > '~')
      return FALSE;
  return TRUE;
}
static void client_shard_channel_gone (PortaRedisClient *client, const char *name);
static gboolean op_route_on_trouble   (Op *op, const redisReply *reply, const GError *error);
static void op_fail                   (Op *op, GError *error);
static gboolean cluster_reply_is_transient (const char *text);
static void unsubscribed_reply        (PortaRedisClient *client, redisReply *reply,
                                       const GError *error, gpointer data);

/* Runs @func in @context's thread. Never g_main_context_invoke(): it runs
 * the function at once in the calling thread whenever nobody owns
 * @context at that moment.
 *
 * The hand-over is also published with a release store that the receiving
 * thread reads with an acquire load: what the poster wrote before is then
 * visible to the receiver by the C11 memory model, and ThreadSanitizer sees
 * it too (it cannot see the futexes of an uninstrumented GLib). */
typedef struct
{
  GSourceFunc    func;
  gpointer       data;
  GDestroyNotify destroy;
  gint           posted;
} Posted;

static gboolean
posted_run (gpointer user_data)
{
  Posted *posted = user_data;

  g_assert (__atomic_load_n (&posted->posted, __ATOMIC_ACQUIRE) == 1);
  return posted->func (posted->data);
}

static void
posted_free (gpointer user_data)
{
  Posted *posted = user_data;

  (void) __atomic_load_n (&posted->posted, __ATOMIC_ACQUIRE);
  if (posted->destroy != NULL)
    posted->destroy (posted->data);
  g_free (posted);
}

static void
post (GMainContext   *context,
      int             priority,
      GSourceFunc     func,
      gpointer        data,
      GDestroyNotify  destroy)
{
  GSource *source = g_idle_source_new ();
  Posted *posted = g_new0 (Posted, 1);

  /* The receiver may run the source, and drop the last other reference to
   * @context (a sync call's private context), before this thread has let
   * go of the source: g_source_unref() would then race with the context's
   * finalization in GLib. Holding @context until then makes this thread
   * the one that finalizes it, if anyone. */
  g_main_context_ref (context);
  posted->func = func;
  posted->data = data;
  posted->destroy = destroy;
  __atomic_store_n (&posted->posted, 1, __ATOMIC_RELEASE);
  g_source_set_priority (source, priority);
  g_source_set_callback (source, posted_run, posted, posted_free);
  g_source_set_static_name (source, "[portalock] Redis");
  g_source_attach (source, context);
  g_source_unref (source);
  g_main_context_unref (context);
}

/* ---------------------------------------------------------------- URIs */

char *
porta_redis_display_uri (const char *uri)
{
  g_autoptr(GUri) parsed = NULL;

  if (uri == NULL)
    return g_strdup ("(null)");
  if (porta_redis_cluster_is_uri (uri))
    return porta_redis_cluster_display_uri (uri);
  parsed = g_uri_parse (uri, G_URI_FLAGS_HAS_PASSWORD | G_URI_FLAGS_ENCODED, NULL);
  if (parsed == NULL)
    {
      /* Unparsable: keep what cannot be a password, the scheme. */
      const char *colon = strstr (uri, "://");

      if (colon != NULL && strchr (colon + 3, '@') == NULL)
        return g_strdup (uri);
      return colon != NULL ? g_strdup_printf ("%.*s://…", (int) (colon - uri), uri)
                           : g_strdup ("…");
    }
  return g_uri_to_string_partial (parsed, G_URI_HIDE_PASSWORD | G_URI_HIDE_AUTH_PARAMS);
}

static gboolean
parse_db (const char   *text,
          guint        *db,
          const char   *display,
          GError      **error)
{
  guint64 value;

  if (!g_ascii_string_to_unsigned (text, 10, 0, G_MAXINT, &value, NULL))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   _("Invalid Redis URI “%s”: the database “%s” is not a number"),
                   display, text);
      return FALSE;
    }
  *db = (guint) value;
  return TRUE;
}

static gboolean
client_parse_uri (PortaRedisClient  *client,
                  const char        *uri,
                  GError           **error)
{
  g_autoptr(GUri) parsed = NULL;
  g_autoptr(GError) local_error = NULL;
  const char *scheme, *path, *query;

  parsed = g_uri_parse (uri, G_URI_FLAGS_HAS_PASSWORD, &local_error);
  if (parsed == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   _("Invalid Redis URI “%s”: %s"), client->display_uri,
                   local_error->message);
      return FALSE;
    }
  scheme = g_uri_get_scheme (parsed);
  path = g_uri_get_path (parsed);
  query = g_uri_get_query (parsed);
  if (g_uri_get_user (parsed) != NULL && g_uri_get_user (parsed)[0] != '\0')
    client->user = g_strdup (g_uri_get_user (parsed));
  if (g_uri_get_password (parsed) != NULL)
    client->password = g_strdup (g_uri_get_password (parsed));

  if (g_strcmp0 (scheme, "unix") == 0)
    {
#ifdef G_OS_UNIX
      client->unix_socket = TRUE;
      if (path == NULL || path[0] != '/' ||
          (g_uri_get_host (parsed) != NULL && g_uri_get_host (parsed)[0] != '\0'))
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                       _("Invalid Redis URI “%s”: a unix: URI needs an absolute "
                         "socket path, as in unix:///run/redis/redis.sock"),
                       client->display_uri);
          return FALSE;
        }
      client->path = g_strdup (path);
      if (query != NULL)
        {
          g_autoptr(GHashTable) params = g_uri_parse_params (query, -1, "&",
                                                             G_URI_PARAMS_NONE, NULL);
          const char *value;

          if (params == NULL)
            {
              g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                           _("Invalid Redis URI “%s”: its query cannot be read"),
                           client->display_uri);
              return FALSE;
            }
          if ((value = g_hash_table_lookup (params, "db")) != NULL &&
              !parse_db (value, &client->db, client->display_uri, error))
            return FALSE;
        }
      return TRUE;
#else
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   _("Cannot use the Redis URI “%s”: this platform has no Unix sockets"),
                   client->display_uri);
      return FALSE;
#endif
    }

  if (g_strcmp0 (scheme, "redis") != 0 && g_strcmp0 (scheme, "rediss") != 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   _("Invalid Redis URI “%s”: the scheme must be redis, rediss or unix"),
                   client->display_uri);
      return FALSE;
    }
  client->tls = g_strcmp0 (scheme, "rediss") == 0;
  if (g_uri_get_host (parsed) == NULL || g_uri_get_host (parsed)[0] == '\0')
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   _("Invalid Redis URI “%s”: it names no host"),
                   client->display_uri);
      return FALSE;
    }
  client->host = g_strdup (g_uri_get_host (parsed));
  client->port = g_uri_get_port (parsed) > 0 ? (guint16) g_uri_get_port (parsed) : 6379;
  if (path != NULL && path[0] == '/' && path[1] != '\0' &&
      !parse_db (path + 1, &client->db, client->display_uri, error))
    return FALSE;
  if (query != NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   _("Invalid Redis URI “%s”: it has a query, which portalock does not read"),
                   client->display_uri);
      return FALSE;
    }
  return TRUE;
}

gboolean
porta_redis_check_name (const char  *name,
                        GError     **error)
{
  if (name == NULL || name[0] == '\0')
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   _("Invalid Redis lock name “%s”: the name is empty"), "");
      return FALSE;
    }
  if (!g_utf8_validate (name, -1, NULL))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   _("Invalid Redis lock name: a name must be valid UTF-8"));
      return FALSE;
    }
  /* The name is a hash tag, {NAME}, in every key: braces would end it. */
  if (strpbrk (name, "{}") != NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   _("Invalid Redis lock name “%s”: a name cannot contain “{” or “}”"),
                   name);
      return FALSE;
    }
  if (strlen (name) > PORTA_REDIS_MAX_NAME)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   _("Invalid Redis lock name “%.32s…”: a name is at most %d bytes long"),
                   name, PORTA_REDIS_MAX_NAME);
      return FALSE;
    }
  return TRUE;
}

/* ------------------------------------------------------------- scripts */

static void
scripts_load_once (void)
{
  static gsize loaded = 0;

  if (g_once_init_enter (&loaded))
    {
      /* What the scripts share goes in front of each (redis/common.lua). */
      g_autoptr(GBytes) common = g_resources_lookup_data ("/org/gnome/Portalock/redis/common.lua",
                                                          G_RESOURCE_LOOKUP_FLAGS_NONE, NULL);

      g_assert (common != NULL);
      for (guint k = 0; k < N_SCRIPTS; k++)
        {
          g_autofree char *path = g_strconcat ("/org/gnome/Portalock/redis/",
                                               script_names[k], NULL);
          g_autoptr(GBytes) own = g_resources_lookup_data (path, G_RESOURCE_LOOKUP_FLAGS_NONE, NULL);
          GByteArray *body = g_byte_array_new ();

          g_assert (own != NULL);
          g_byte_array_append (body, g_bytes_get_data (common, NULL), (guint) g_bytes_get_size (common));
          g_byte_array_append (body, g_bytes_get_data (own, NULL), (guint) g_bytes_get_size (own));
          scripts[k].body = g_byte_array_free_to_bytes (body);
          scripts[k].sha1 = g_compute_checksum_for_bytes (G_CHECKSUM_SHA1, scripts[k].body);
        }
      g_once_init_leave (&loaded, 1);
    }
}

/* --------------------------------------------------------------- errors */

static void
set_reply_error (PortaRedisClient  *client,
                 const redisReply  *reply,
                 GError           **error)
{
  const char *text = reply->str;

  if (g_str_has_prefix (text, "WRONGPASS") ||
      g_str_has_prefix (text, "ERR invalid password") ||
      g_str_has_prefix (text, "ERR invalid username-password"))
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                 _("The Redis server %s refused the user name or password"),
                 client->display_uri);
  else if (g_str_has_prefix (text, "NOAUTH"))
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                 _("The Redis server %s needs a password, and the URI gives none"),
                 client->display_uri);
  else if (strstr (text, "NOPERM") != NULL || strstr (text, "no permissions") != NULL ||
           strstr (text, "can't run this command") != NULL)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                 _("The Redis user of %s may not run a command that the lock needs: %s"),
                 client->display_uri, text);
  else
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                 _("The Redis server %s answered with an error: %s"),
                 client->display_uri, text);
}

/* ---------------------------------------------------------------- links */

static Link *
link_ref (Link *link)
{
  g_atomic_int_inc (&link->ref_count);
  return link;
}

static void
worker_release_alive (void)
{
  g_mutex_lock (&registry_mutex);
  if (--n_alive == 0)
    {
      g_main_loop_quit (worker_loop);
      g_clear_pointer (&worker_loop, g_main_loop_unref);
      g_clear_pointer (&worker_context, g_main_context_unref);
    }
  g_mutex_unlock (&registry_mutex);
}

static void
link_unref (Link *link)
{
  if (!g_atomic_int_dec_and_test (&link->ref_count))
    return;
  g_assert (link->conn == NULL);
  if (link->read_source != NULL)
    {
      g_source_destroy (link->read_source);
      g_source_unref (link->read_source);
    }
  if (link->stream != NULL)
    g_io_stream_close (link->stream, NULL, NULL);
  g_clear_object (&link->stream);
  g_clear_object (&link->cancellable);
  g_clear_pointer (&link->reader, redisReaderFree);
  g_byte_array_unref (link->out);
  g_clear_pointer (&link->writing, g_bytes_unref);
  g_free (link);
  worker_release_alive ();
}

static void
cmd_free (Cmd *cmd)
{
  redisFreeCommand (cmd->buf);
  g_free (cmd);
}

static void link_write (Link *link);

static void
link_write_done (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  Link *link = user_data;
  g_autoptr(GError) error = NULL;

  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), result, NULL, &error))
    {
      if (link->conn != NULL)
        {
          g_prefix_error (&error, _("Cannot send to the Redis server %s: "),
                          link->conn->client->display_uri);
          conn_drop (link->conn, error);
        }
      link_unref (link);
      return;
    }
  g_clear_pointer (&link->writing, g_bytes_unref);
  if (link->conn != NULL)
    link_write (link);
  link_unref (link);
}

static void
link_write (Link *link)
{
  if (link->writing != NULL || link->out->len == 0)
    return;
  link->writing = g_byte_array_free_to_bytes (link->out);
  link->out = g_byte_array_new ();
  g_output_stream_write_all_async (g_io_stream_get_output_stream (link->stream),
                                   g_bytes_get_data (link->writing, NULL),
                                   g_bytes_get_size (link->writing),
                                   G_PRIORITY_DEFAULT, link->cancellable,
                                   link_write_done, link_ref (link));
}

static void
conn_dispatch (Conn       *conn,
               redisReply *reply)
{
  Cmd *cmd;

  if (conn->subscriber && conn->client->sharded && reply->type == REDIS_REPLY_ARRAY &&
      reply->elements == 3 && reply->element[0]->type == REDIS_REPLY_STRING &&
      reply->element[1]->type == REDIS_REPLY_STRING &&
      strcmp (reply->element[0]->str, "sunsubscribe") == 0)
    {
      /* Never taken for a reply (see op_unsubscribe()): the node gave the
       * channel's slot away, or this answers an unsubscription. */
      client_shard_channel_gone (conn->client, reply->element[1]->str);
      return;
    }
  if (conn->subscriber && conn->client->sharded && reply->type == REDIS_REPLY_ERROR &&
      !g_queue_is_empty (&conn->pending) &&
      ((Cmd *) g_queue_peek_head (&conn->pending))->func == unsubscribed_reply)
    return;   /* a SUNSUBSCRIBE's answer: the slot is elsewhere now */
  if (conn->subscriber && reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 &&
      reply->element[0]->type == REDIS_REPLY_STRING &&
      strcmp (reply->element[0]->str, "message") == 0 && conn->channel != NULL)
    {
      portalocker_message (conn, reply);
      return;
    }
  if (conn->subscriber && reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 &&
      reply->element[0]->type == REDIS_REPLY_STRING &&
      (strcmp (reply->element[0]->str, "message") == 0 ||
       (conn->client->sharded && strcmp (reply->element[0]->str, "smessage") == 0)))
    {
      Channel *channel = g_hash_table_lookup (conn->client->channels,
                                              reply->element[1]->str);

      /* The message lists the tokens of the waiters that can go now: only
       * they try again. */
      if (channel != NULL && channel->confirmed && reply->element[2]->type == REDIS_REPLY_STRING)
        {
          GList *ops = g_list_copy (channel->ops);

          for (GList *l = ops; l != NULL; l = l->next)
            {
              Op *op = l->data;

              if (!op->done && op->confirmed && strstr (reply->element[2]->str, op->token) != NULL)
                op_attempt (op);
            }
          g_list_free (ops);
        }
      return;
    }

  cmd = g_queue_pop_head (&conn->pending);
  if (cmd == NULL)
    {
      g_autoptr(GError) error = g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                                             _("The Redis server %s sent a reply nobody asked for"),
                                             conn->client->display_uri);
      conn_drop (conn, error);
      return;
    }
  cmd->func (conn->client, reply, NULL, cmd->data);
  cmd_free (cmd);
}

static gboolean
link_read_ready (GObject  *stream,
                 gpointer  user_data)
{
  Link *link = user_data;
  char buf[READ_CHUNK];
  gboolean keep = TRUE;

  link_ref (link);
  while (link->conn != NULL)
    {
      g_autoptr(GError) error = NULL;
      gssize n = g_pollable_input_stream_read_nonblocking (G_POLLABLE_INPUT_STREAM (stream),
                                                           buf, sizeof buf, NULL, &error);
      void *reply = NULL;

      if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        break;
      if (n <= 0)
        {
          if (error == NULL)
            error = g_error_new (G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                                 _("The Redis server %s closed the connection"),
                                 link->conn->client->display_uri);
          else
            g_prefix_error (&error, _("Cannot read from the Redis server %s: "),
                            link->conn->client->display_uri);
          conn_drop (link->conn, error);
          keep = FALSE;
          break;
        }
      redisReaderFeed (link->reader, buf, (size_t) n);
      while (link->conn != NULL)
        {
          if (redisReaderGetReply (link->reader, &reply) != REDIS_OK)
            {
              error = g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                                   _("The Redis server %s sent a reply that cannot be read: %s"),
                                   link->conn->client->display_uri, link->reader->errstr);
              conn_drop (link->conn, error);
              keep = FALSE;
              break;
            }
          if (reply == NULL)
            break;
          conn_dispatch (link->conn, reply);
          freeReplyObject (reply);
        }
      if ((gsize) n < sizeof buf)
        break;
    }
  if (link->conn == NULL)
    keep = FALSE;
  link_unref (link);
  return keep ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

/* ----------------------------------------------------------- connections */

static void
conn_put (Conn *conn,
          Cmd  *cmd)
{
  g_byte_array_append (conn->link->out, (const guint8 *) cmd->buf, cmd->len);
  if (cmd->func == NULL)
    cmd_free (cmd);   /* a command that gets no reply of its own */
  else
    g_queue_push_tail (&conn->pending, cmd);
}

static Cmd *
cmd_new (int          argc,
         const char **argv,
         const gsize *lens,
         ReplyFunc    func,
         gpointer     data)
{
  Cmd *cmd = g_new0 (Cmd, 1);
  int len = redisFormatCommandArgv (&cmd->buf, argc, argv, lens);

  g_assert (len > 0);
  cmd->len = (gsize) len;
  cmd->func = func;
  cmd->data = data;
  return cmd;
}

static void
handshake_reply (PortaRedisClient *client,
                 redisReply       *reply,
                 const GError     *error,
                 gpointer          data)
{
  Conn *conn = data;

  if (error == NULL && reply->type == REDIS_REPLY_ERROR)
    {
      g_autoptr(GError) local_error = NULL;

      set_reply_error (client, reply, &local_error);
      conn_drop (conn, local_error);
    }
}

static void
liveness_subscribed (PortaRedisClient *client,
                     redisReply       *reply,
                     const GError     *error,
                     gpointer          data)
{
  GList *waiters;

  if (error != NULL)
    return;
  if (reply->type == REDIS_REPLY_ERROR)
    {
      g_autoptr(GError) local_error = NULL;

      set_reply_error (client, reply, &local_error);
      conn_drop (&client->sub, local_error);
      return;
    }
  client->live_ready = TRUE;
  waiters = g_steal_pointer (&client->live_waiters);
  for (GList *l = waiters; l != NULL; l = l->next)
    {
      Op *op = l->data;

      if (!op->done)
        op_attempt (op);
      op_unref (op);
    }
  g_list_free (waiters);
}

static void
conn_connected (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  Link *link = user_data;
  g_autoptr(GError) error = NULL;
  GSocketConnection *connection;
  Conn *conn;
  PortaRedisClient *client;
  GList *queued;

  connection = g_socket_client_connect_finish (G_SOCKET_CLIENT (source), result, &error);
  if (link->conn == NULL)
    {
      g_clear_object (&connection);
      link_unref (link);
      return;
    }
  conn = link->conn;
  client = conn->client;
  if (connection == NULL)
    {
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND) && client->unix_socket)
        {
          /* No socket file: nobody listens there. */
          g_clear_error (&error);
          g_set_error (&error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED,
                       _("Cannot connect to the Redis server %s: no server listens there"),
                       client->display_uri);
        }
      else
        g_prefix_error (&error, _("Cannot connect to the Redis server %s: "),
                        client->display_uri);
      conn_drop (conn, error);
      link_unref (link);
      return;
    }

  link->stream = G_IO_STREAM (connection);
  /* The connect timeout must not stay on as an I/O timeout: a subscriber
   * connection is silent for as long as nothing is published (a lock held
   * for minutes), and commands have deadlines of their own. */
  g_socket_set_timeout (g_socket_connection_get_socket (connection), 0);
  link->reader = redisReaderCreate ();
  if (!G_IS_POLLABLE_INPUT_STREAM (g_io_stream_get_input_stream (link->stream)) ||
      !g_pollable_input_stream_can_poll (G_POLLABLE_INPUT_STREAM (g_io_stream_get_input_stream (link->stream))))
    {
      g_set_error (&error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   _("Cannot read from the Redis server %s without blocking"),
                   client->display_uri);
      conn_drop (conn, error);
      link_unref (link);
      return;
    }
  link->read_source = g_pollable_input_stream_create_source (
      G_POLLABLE_INPUT_STREAM (g_io_stream_get_input_stream (link->stream)), NULL);
  g_source_set_callback (link->read_source, (GSourceFunc) (void (*) (void)) link_read_ready,
                         link_ref (link), (GDestroyNotify) link_unref);
  g_source_attach (link->read_source, client->context);
  conn->ready = TRUE;

  if (client->password != NULL)
    {
      const char *argv[3] = { "AUTH", client->user, client->password };

      if (client->user != NULL)
        conn_put (conn, cmd_new (3, argv, NULL, handshake_reply, conn));
      else
        {
          argv[1] = client->password;
          conn_put (conn, cmd_new (2, argv, NULL, handshake_reply, conn));
        }
    }
  if (conn->channel != NULL && portalocker_can_name (conn->channel))
    {
      /* The name portalocker's waiters look for when they decide a holder
       * that does not answer their ping is gone. */
      g_autofree char *name = g_strconcat (conn->channel, "-lock", NULL);
      const char *argv[3] = { "CLIENT", "SETNAME", name };

      conn_put (conn, cmd_new (3, argv, NULL, handshake_reply, conn));
    }
  if (!conn->subscriber && client->db != 0)
    {
      g_autofree char *db = g_strdup_printf ("%u", client->db);
      const char *argv[2] = { "SELECT", db };

      conn_put (conn, cmd_new (2, argv, NULL, handshake_reply, conn));
    }
  if (conn->subscriber && conn->channel == NULL)
    {
      const char *argv[2] = { "SUBSCRIBE", client->liveness };

      conn_put (conn, cmd_new (2, argv, NULL, liveness_subscribed, NULL));
    }
  queued = conn->queued.head;
  conn->queued.head = conn->queued.tail = NULL;
  conn->queued.length = 0;
  for (GList *l = queued; l != NULL; l = l->next)
    conn_put (conn, l->data);
  g_list_free (queued);
  link_write (link);
  link_unref (link);
}

static void
tls_event (GSocketClient      *socket_client,
           GSocketClientEvent  event,
           GSocketConnectable *connectable,
           GIOStream          *connection,
           gpointer            user_data)
{
  GTlsDatabase *database = user_data;

  if (event == G_SOCKET_CLIENT_TLS_HANDSHAKING && database != NULL)
    g_tls_connection_set_database (G_TLS_CONNECTION (connection), database);
}

static void
conn_connect (Conn *conn)
{
  PortaRedisClient *client = conn->client;
  g_autoptr(GSocketClient) socket_client = g_socket_client_new ();
  g_autoptr(GSocketConnectable) address = NULL;
  Link *link;

  g_assert (conn->link == NULL);
  link = g_new0 (Link, 1);
  link->ref_count = 1;
  link->conn = conn;
  link->cancellable = g_cancellable_new ();
  link->out = g_byte_array_new ();
  g_mutex_lock (&registry_mutex);
  n_alive++;
  g_mutex_unlock (&registry_mutex);
  conn->link = link;
  conn->ready = FALSE;

  if (conn->subscriber && conn->channel == NULL)
    {
      g_autofree char *uuid = g_uuid_string_random ();

      g_free (client->liveness);
      /* On a cluster node the channel names the node, whose subscribers
       * alone PUBSUB NUMSUB counts there (see redis/common.lua). */
      if (client->sharded)
        client->liveness = g_strdup_printf ("porta:live:%s@%s:%u", uuid, client->host,
                                            client->port);
      else
        client->liveness = g_strconcat ("porta:live:", uuid, NULL);
      client->live_ready = FALSE;
    }

  g_socket_client_set_timeout (socket_client, CONNECT_TIMEOUT_S);
  /* Redis is reached directly, as by every other Redis client: no HTTP or
   * SOCKS proxy from the desktop's settings. */
  g_socket_client_set_enable_proxy (socket_client, FALSE);
#ifdef G_OS_UNIX
  if (client->unix_socket)
    address = G_SOCKET_CONNECTABLE (g_unix_socket_address_new (client->path));
  else
#endif
    address = g_network_address_new (client->host, client->port);
  if (client->tls)
    {
      g_socket_client_set_tls (socket_client, TRUE);
      if (client->database != NULL)
        g_signal_connect_data (socket_client, "event", G_CALLBACK (tls_event),
                               g_object_ref (client->database),
                               (GClosureNotify) (void (*) (void)) g_object_unref, 0);
    }
  g_socket_client_connect_async (socket_client, address, link->cancellable,
                                 conn_connected, link_ref (link));
}

static void
conn_send (Conn         *conn,
           int           argc,
           const char  **argv,
           const gsize  *lens,
           ReplyFunc     func,
           gpointer      data)
{
  Cmd *cmd = cmd_new (argc, argv, lens, func, data);

  if (conn->link != NULL && conn->ready)
    {
      conn_put (conn, cmd);
      link_write (conn->link);
      return;
    }
  g_queue_push_tail (&conn->queued, cmd);
  if (conn->link == NULL)
    conn_connect (conn);
}

/* Fails every command waiting on @conn with @error and forgets the
 * connection; the next command opens a new one. */
static void
conn_drop (Conn         *conn,
           const GError *error)
{
  PortaRedisClient *client = conn->client;
  Link *link = conn->link;
  GQueue pending = conn->pending;
  GQueue queued = conn->queued;

  if (link == NULL)
    return;
  conn->link = NULL;
  conn->ready = FALSE;
  g_queue_init (&conn->pending);
  g_queue_init (&conn->queued);
  link->conn = NULL;
  g_cancellable_cancel (link->cancellable);
  if (link->read_source != NULL)
    g_source_destroy (link->read_source);
  link_unref (link);

  if (conn->subscriber && conn->channel == NULL)
    client_subscriber_dropped (client, error);
  else if (conn->channel != NULL)
    portalocker_dropped (conn, error);

  for (GList *l = pending.head; l != NULL; l = l->next)
    {
      Cmd *cmd = l->data;

      cmd->func (client, NULL, error, cmd->data);
      cmd_free (cmd);
    }
  g_list_free (pending.head);
  for (GList *l = queued.head; l != NULL; l = l->next)
    {
      Cmd *cmd = l->data;

      if (cmd->func != NULL)
        cmd->func (client, NULL, error, cmd->data);
      cmd_free (cmd);
    }
  g_list_free (queued.head);
}

/* ---------------------------------------------------- scripts on the wire */

typedef struct
{
  ScriptId   id;
  int        argc;
  char     **argv;   /* "EVALSHA", sha, numkeys, keys..., args... */
  ReplyFunc  func;
  gpointer   data;
  gboolean   fell_back;
} ScriptCall;

static void
script_call_free (ScriptCall *call)
{
  g_strfreev (call->argv);
  g_free (call);
}

static void script_call_send (PortaRedisClient *client, ScriptCall *call);

static void
script_reply (PortaRedisClient *client,
              redisReply       *reply,
              const GError     *error,
              gpointer          data)
{
  ScriptCall *call = data;

  if (error == NULL && reply->type == REDIS_REPLY_ERROR &&
      g_str_has_prefix (reply->str, "NOSCRIPT") && !call->fell_back)
    {
      /* The server does not know the script yet (or forgot it, after a
       * SCRIPT FLUSH or a restart): send it whole once. */
      call->fell_back = TRUE;
      script_call_send (client, call);
      return;
    }
  call->func (client, reply, error, call->data);
  script_call_free (call);
}

static void
script_call_send (PortaRedisClient *client,
                  ScriptCall       *call)
{
  g_autofree gsize *lens = g_new (gsize, call->argc);
  g_autofree const char **argv = g_new (const char *, call->argc);

  for (int k = 0; k < call->argc; k++)
    {
      argv[k] = call->argv[k];
      lens[k] = strlen (call->argv[k]);
    }
  if (call->fell_back)
    {
      argv[0] = "EVAL";
      lens[0] = strlen ("EVAL");
      argv[1] = g_bytes_get_data (scripts[call->id].body, &lens[1]);
    }
  conn_send (&client->cmd, call->argc, argv, lens, script_reply, call);
}

/* The last argument of every script: "1" when wake-ups go out with
 * SPUBLISH (a cluster node), "0" for PUBLISH. */
#define SHARDED_ARG(client) ((client)->sharded ? "1" : "0")

/* Runs script @id with @n_keys keys then the arguments, NULL-terminated. */
static void
script_run (PortaRedisClient *client,
            ScriptId          id,
            char            **keys,
            guint             n_keys,
            ReplyFunc         func,
            gpointer          data,
            ...)
{
  GPtrArray *argv = g_ptr_array_new ();
  ScriptCall *call = g_new0 (ScriptCall, 1);
  const char *arg;
  va_list ap;

  g_ptr_array_add (argv, g_strdup ("EVALSHA"));
  g_ptr_array_add (argv, g_strdup (scripts[id].sha1));
  g_ptr_array_add (argv, g_strdup_printf ("%u", n_keys));
  for (guint k = 0; k < n_keys; k++)
    g_ptr_array_add (argv, g_strdup (keys[k]));
  va_start (ap, data);
  while ((arg = va_arg (ap, const char *)) != NULL)
    g_ptr_array_add (argv, g_strdup (arg));
  va_end (ap);
  call->id = id;
  call->argc = (int) argv->len;
  g_ptr_array_add (argv, NULL);
  call->argv = (char **) g_ptr_array_free (argv, FALSE);
  call->func = func;
  call->data = data;
  script_call_send (client, call);
}

/* -------------------------------------------------------- subscriptions */

typedef struct
{
  char  *name;
  guint  serial;
} ChannelRef;

static void
channel_subscribed (PortaRedisClient *client,
                    redisReply       *reply,
                    const GError     *error,
                    gpointer          data)
{
  ChannelRef *ref = data;
  Channel *channel = g_hash_table_lookup (client->channels, ref->name);

  if (error == NULL && channel != NULL && channel->serial == ref->serial)
    {
      if (reply->type == REDIS_REPLY_ERROR)
        {
          g_autoptr(GError) local_error = NULL;
          GList *ops = g_list_copy (channel->ops);

          set_reply_error (client, reply, &local_error);
          for (GList *l = ops; l != NULL; l = l->next)
            if (!((Op *) l->data)->done && !op_route_on_trouble (l->data, reply, NULL))
              op_finish (l->data, NULL, g_error_copy (local_error));
          g_list_free (ops);
        }
      else
        {
          GList *ops = g_list_copy (channel->ops);

          channel->confirmed = TRUE;
          for (GList *l = ops; l != NULL; l = l->next)
            {
              Op *op = l->data;

              if (!op->done && !op->confirmed)
                {
                  op->confirmed = TRUE;
                  op_attempt (op);
                }
            }
          g_list_free (ops);
        }
    }
  g_free (ref->name);
  g_free (ref);
}

static void
ignore_reply (PortaRedisClient *client,
              redisReply       *reply,
              const GError     *error,
              gpointer          data)
{
}

static void
unsubscribed_reply (PortaRedisClient *client,
                    redisReply       *reply,
                    const GError     *error,
                    gpointer          data)
{
}

static void
channel_free (Channel *channel)
{
  g_assert (channel->ops == NULL);
  g_free (channel->name);
  g_free (channel);
}

static void
op_subscribe (Op *op)
{
  PortaRedisClient *client = op->client;
  Channel *channel = g_hash_table_lookup (client->channels, op->wake);

  op->subscribed = TRUE;
  if (channel == NULL)
    {
      const char *argv[2] = { client->sharded ? "SSUBSCRIBE" : "SUBSCRIBE", op->wake };
      ChannelRef *ref = g_new0 (ChannelRef, 1);

      channel = g_new0 (Channel, 1);
      channel->name = g_strdup (op->wake);
      channel->serial = ++client->channel_serial;
      g_hash_table_insert (client->channels, channel->name, channel);
      ref->name = g_strdup (op->wake);
      ref->serial = channel->serial;
      conn_send (&client->sub, 2, argv, NULL, channel_subscribed, ref);
    }
  channel->ops = g_list_prepend (channel->ops, op);
  if (channel->confirmed)
    {
      op->confirmed = TRUE;
      op_attempt (op);
    }
}

static void
op_unsubscribe (Op *op)
{
  PortaRedisClient *client = op->client;
  Channel *channel;

  if (!op->subscribed)
    return;
  op->subscribed = FALSE;
  channel = g_hash_table_lookup (client->channels, op->wake);
  if (channel == NULL)
    return;
  channel->ops = g_list_remove (channel->ops, op);
  if (channel->ops == NULL)
    {
      if (client->sub.link != NULL)
        {
          const char *argv[2] = { client->sharded ? "SUNSUBSCRIBE" : "UNSUBSCRIBE", op->wake };
          const char *ping[1] = { "PING" };

          if (!client->sharded)
            conn_send (&client->sub, 2, argv, NULL, ignore_reply, NULL);
          else
            {
              /* A node also sends a sunsubscribe unasked, when it gives the
               * slot away, and answers a SUNSUBSCRIBE of a slot it no
               * longer has with an error: so none of them is taken for a
               * reply, the SUNSUBSCRIBE has no entry in ->pending, and the
               * PING's (unsubscribed_reply) stands for both. */
              conn_send (&client->sub, 2, argv, NULL, NULL, NULL);
              conn_send (&client->sub, 1, ping, NULL, unsubscribed_reply, NULL);
            }
        }
      g_hash_table_remove (client->channels, op->wake);
    }
}

static void
client_subscriber_dropped (PortaRedisClient *client,
                           const GError     *error)
{
  g_autoptr(GError) lost_error = NULL;
  GList *holds, *waiters, *channels;

  client->live_gen++;
  client->live_ready = FALSE;

  /* Nobody sees this process alive any more: every lock it holds may be
   * taken by another. */
  lost_error = g_error_new (error->domain, error->code,
                            _("The connection that showed this process alive to %s was lost: %s"),
                            client->display_uri, error->message);
  holds = g_list_copy (client->holds);
  for (GList *l = holds; l != NULL; l = l->next)
    hold_lost (l->data, lost_error);
  g_list_free (holds);

  /* Waits fail: their place in line was kept alive by the same
   * connection. On a cluster they go on with the slot's master, which may
   * be another node now (a failover). */
  waiters = g_steal_pointer (&client->live_waiters);
  for (GList *l = waiters; l != NULL; l = l->next)
    {
      Op *op = l->data;

      if (!op->done)
        op_fail (op, g_error_copy (error));
      op_unref (op);
    }
  g_list_free (waiters);
  channels = g_hash_table_get_values (client->channels);
  for (GList *l = channels; l != NULL; l = l->next)
    {
      GList *ops = g_list_copy (((Channel *) l->data)->ops);

      for (GList *o = ops; o != NULL; o = o->next)
        if (!((Op *) o->data)->done)
          op_fail (o->data, g_error_copy (error));
      g_list_free (ops);
    }
  g_list_free (channels);
}

/* ----------------------------------------------------------- the client */

static gboolean
client_free_in_worker (gpointer data)
{
  PortaRedisClient *client = data;
  g_autoptr(GError) error = g_error_new (G_IO_ERROR, G_IO_ERROR_CLOSED,
                                         _("The client of %s was closed"),
                                         client->display_uri);

  conn_drop (&client->cmd, error);
  conn_drop (&client->sub, error);
  g_assert (client->holds == NULL && client->live_waiters == NULL);
  g_clear_pointer (&client->cluster, porta_redis_cluster_free);
  g_hash_table_unref (client->channels);
  g_free (client->liveness);
  g_main_context_unref (client->context);
  client_free_fields (client);
  worker_release_alive ();
  return G_SOURCE_REMOVE;
}

static gpointer
worker_main (gpointer data)
{
  GMainLoop *loop = data;
  GMainContext *context = g_main_loop_get_context (loop);

  g_main_context_push_thread_default (context);
  g_main_loop_run (loop);
  g_main_context_pop_thread_default (context);
  g_main_loop_unref (loop);
  return NULL;
}

static void
client_free_fields (PortaRedisClient *client)
{
  g_free (client->key);
  g_free (client->display_uri);
  g_free (client->host);
  g_free (client->path);
  g_free (client->user);
  if (client->password != NULL)
    memset (client->password, 0, strlen (client->password));
  g_free (client->password);
  g_clear_object (&client->database);
  g_free (client);
}

PortaRedisClient *
porta_redis_client_get (const char    *uri,
                        GTlsDatabase  *database,
                        GError       **error)
{
  g_autofree char *key = g_strdup_printf ("%p %s", (void *) database, uri);
  PortaRedisClient *client;

  scripts_load_once ();

  g_mutex_lock (&registry_mutex);
  if (registry == NULL)
    registry = g_hash_table_new (g_str_hash, g_str_equal);
  client = g_hash_table_lookup (registry, key);
  if (client != NULL)
    {
      client->ref_count++;
      g_mutex_unlock (&registry_mutex);
      return client;
    }

  client = g_new0 (PortaRedisClient, 1);
  client->ref_count = 1;
  client->key = g_steal_pointer (&key);
  client->display_uri = porta_redis_display_uri (uri);
  if (porta_redis_cluster_is_uri (uri))
    client->cluster = porta_redis_cluster_new (client, uri, client->display_uri,
                                               &client->user, &client->password,
                                               &client->tls, error);
  if (client->cluster == NULL && (porta_redis_cluster_is_uri (uri) ||
                                  !client_parse_uri (client, uri, error)))
    {
      g_mutex_unlock (&registry_mutex);
      client_free_fields (client);
      return NULL;
    }
  if (database != NULL)
    client->database = g_object_ref (database);
  client_init_worker_part (client);
  g_hash_table_insert (registry, client->key, client);
  g_mutex_unlock (&registry_mutex);
  return client;
}

/* Under registry_mutex. */
static void
client_init_worker_part (PortaRedisClient *client)
{
  client->cmd.client = client;
  client->sub.client = client;
  client->sub.subscriber = TRUE;
  client->channels = g_hash_table_new_full (g_str_hash, g_str_equal, NULL,
                                            (GDestroyNotify) channel_free);
  if (worker_context == NULL)
    {
      GThread *thread;

      worker_context = g_main_context_new ();
      worker_loop = g_main_loop_new (worker_context, FALSE);
      thread = g_thread_new ("porta-redis", worker_main, g_main_loop_ref (worker_loop));
      g_thread_unref (thread);
    }
  n_alive++;
  client->context = g_main_context_ref (worker_context);
}

PortaRedisClient *
porta_redis_client_new_node (PortaRedisClient *front,
                             const char       *host,
                             guint16           port)
{
  PortaRedisClient *client = g_new0 (PortaRedisClient, 1);
  g_autofree char *bracketed = strchr (host, ':') != NULL ? g_strdup_printf ("[%s]", host)
                                                          : g_strdup (host);

  client->ref_count = 1;
  client->display_uri = g_strdup_printf ("%s://%s:%u", front->tls ? "rediss" : "redis",
                                         bracketed, port);
  client->tls = front->tls;
  client->host = g_strdup (host);
  client->port = port;
  client->user = g_strdup (front->user);
  client->password = g_strdup (front->password);
  client->database = front->database != NULL ? g_object_ref (front->database) : NULL;
  client->sharded = TRUE;
  g_mutex_lock (&registry_mutex);
  client_init_worker_part (client);
  g_mutex_unlock (&registry_mutex);
  return client;
}

const char *
porta_redis_client_get_host (PortaRedisClient *client)
{
  return client->host;
}

void
porta_redis_client_command (PortaRedisClient     *client,
                            int                   argc,
                            const char          **argv,
                            PortaRedisReplyFunc   func,
                            gpointer              data)
{
  conn_send (&client->cmd, argc, argv, NULL, func, data);
}

PortaRedisClient *
porta_redis_client_ref (PortaRedisClient *client)
{
  g_mutex_lock (&registry_mutex);
  client->ref_count++;
  g_mutex_unlock (&registry_mutex);
  return client;
}

void
porta_redis_client_unref (PortaRedisClient *client)
{
  gboolean last;

  g_mutex_lock (&registry_mutex);
  last = --client->ref_count == 0;
  if (last && client->key != NULL)   /* a cluster's node client is not there */
    g_hash_table_remove (registry, client->key);
  g_mutex_unlock (&registry_mutex);
  if (last)
    post (client->context, G_PRIORITY_DEFAULT, client_free_in_worker, client, NULL);
}

const char *
porta_redis_client_get_display_uri (PortaRedisClient *client)
{
  return client->display_uri;
}

/* ---------------------------------------------------------------- holds */

static PortaRedisHold *
hold_ref (PortaRedisHold *hold)
{
  g_atomic_int_inc (&hold->ref_count);
  return hold;
}

static void
hold_unref (PortaRedisHold *hold)
{
  if (!g_atomic_int_dec_and_test (&hold->ref_count))
    return;
  g_assert (hold->renew_source == NULL);
  if (hold->lost_destroy != NULL)
    hold->lost_destroy (hold->lost_data);
  g_clear_pointer (&hold->lost_context, g_main_context_unref);
  g_clear_pointer (&hold->pulse_context, g_main_context_unref);
  g_free (hold->token);
  for (guint k = 0; k < N_KEYS; k++)
    g_free (hold->keys[k]);
  g_free (hold->wake);
  porta_redis_client_unref (hold->client);
  g_free (hold);
}

guint64
porta_redis_hold_get_fence (PortaRedisHold *hold)
{
  return hold->fence;
}

static void
hold_stop (PortaRedisHold *hold)
{
  PortaRedisClient *client = hold->client;

  hold->active = FALSE;
  if (hold->renew_source != NULL)
    {
      g_source_destroy (hold->renew_source);
      g_clear_pointer (&hold->renew_source, g_source_unref);
    }
  if (hold->portalocker != NULL)
    portalocker_close (g_steal_pointer (&hold->portalocker));
  if (g_list_find (client->holds, hold) != NULL)
    {
      client->holds = g_list_remove (client->holds, hold);
      hold_unref (hold);
    }
}

typedef struct
{
  PortaRedisHold *hold;
  GError         *error;
} LostCall;

static gboolean
lost_call_run (gpointer data)
{
  LostCall *call = data;

  call->hold->lost_func (call->hold->lost_data, call->error);
  return G_SOURCE_REMOVE;
}

static void
lost_call_free (gpointer data)
{
  LostCall *call = data;

  hold_unref (call->hold);
  g_error_free (call->error);
  g_free (call);
}

static void
hold_lost (PortaRedisHold *hold,
           const GError   *error)
{
  LostCall *call;

  if (!hold->active)
    return;
  if (hold->pending_op != NULL)
    {
      /* Lost while it was still taking portalocker's lock: the wait fails. */
      Op *op = g_steal_pointer (&hold->pending_op);

      hold_stop (hold);
      if (!op->done)
        op_finish (op, NULL, g_error_copy (error));
      return;
    }
  call = g_new0 (LostCall, 1);
  call->hold = hold_ref (hold);
  call->error = g_error_copy (error);
  hold_stop (hold);
  if (hold->lost_func != NULL)
    post (hold->lost_context, G_PRIORITY_DEFAULT, lost_call_run, call, lost_call_free);
  else
    lost_call_free (call);
}

static void
renew_reply (PortaRedisClient *client,
             redisReply       *reply,
             const GError     *error,
             gpointer          data)
{
  PortaRedisHold *hold = data;

  hold->renewing = FALSE;
  if (hold->active)
    {
      g_autoptr(GError) local_error = NULL;

      if (error != NULL)
        local_error = g_error_new (error->domain, error->code,
                                   _("Cannot renew the lease: %s"), error->message);
      else if (reply->type == REDIS_REPLY_ERROR && client->sharded &&
               !g_str_has_prefix (reply->str, "MOVED ") && !g_str_has_prefix (reply->str, "ASK ") &&
               cluster_reply_is_transient (reply->str))
        {
          /* The whole cluster refuses commands while any master is being
           * replaced (CLUSTERDOWN): nobody can take the lock meanwhile, so
           * it is kept, and renewed at the next tick, until its lease
           * would have run out. */
          if (g_get_monotonic_time () >= hold->renewed_at + (gint64) hold->lease_ms * 1000)
            local_error = g_error_new (G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                                       _("Its lease ran out while the Redis cluster could not "
                                         "serve it (%s), and another client may hold it now"),
                                       reply->str);
        }
      else if (reply->type == REDIS_REPLY_ERROR && client->sharded &&
               cluster_reply_is_transient (reply->str))
        local_error = g_error_new (G_IO_ERROR, G_IO_ERROR_NOT_CONNECTED,
                                   _("Its node of the Redis cluster, %s, does not serve it "
                                     "any more (%s): another client may hold it on the "
                                     "node that does"),
                                   client->display_uri, reply->str);
      else if (reply->type == REDIS_REPLY_ERROR)
        {
          set_reply_error (client, reply, &local_error);
          g_prefix_error (&local_error, _("Cannot renew the lease: "));
        }
      else if (reply->type != REDIS_REPLY_INTEGER || reply->integer != 1)
        local_error = g_error_new (G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                                   _("Its lease ran out before it was renewed (was the "
                                     "process stopped, or cut off from %s?), and "
                                     "another client may hold it now"),
                                   client->display_uri);
      else if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 1)
        hold->renewed_at = hold->renew_sent;
      if (local_error != NULL)
        hold_lost (hold, local_error);
    }
  hold_unref (hold);
}

static void
renew_send (PortaRedisHold *hold)
{
  g_autofree char *lease = NULL;

  if (hold->renewing || !hold->active)
    return;
  hold->renewing = TRUE;
  hold->renew_sent = g_get_monotonic_time ();
  lease = g_strdup_printf ("%u", hold->lease_ms);
  script_run (hold->client, SCRIPT_RENEW, hold->keys, 4, renew_reply, hold_ref (hold),
              hold->token, lease, hold->wake, SHARDED_ARG (hold->client), NULL);
}

static gboolean
pulse_returned (gpointer data)
{
  PortaRedisHold *hold = data;

  hold->pulsing = FALSE;
  renew_send (hold);
  return G_SOURCE_REMOVE;
}

/* Runs in the application's context: it is alive, so the lease may go on. */
static gboolean
pulse_run (gpointer data)
{
  PortaRedisHold *hold = data;

  post (hold->client->context, G_PRIORITY_DEFAULT, pulse_returned, hold_ref (hold),
        (GDestroyNotify) hold_unref);
  return G_SOURCE_REMOVE;
}

static gboolean
renew_tick (gpointer data)
{
  PortaRedisHold *hold = data;

  if (hold->pulse_context == NULL)
    renew_send (hold);
  else if (!hold->pulsing)
    {
      /* Renewed only once the application's main context has run the
       * pulse: a main loop that hangs for a whole lease loses the lock,
       * as a stopped process does. A pulse still on its way means it
       * hangs now: no renewal this time. */
      hold->pulsing = TRUE;
      post (hold->pulse_context, G_PRIORITY_DEFAULT, pulse_run, hold_ref (hold),
            (GDestroyNotify) hold_unref);
    }
  return G_SOURCE_CONTINUE;
}

typedef struct
{
  PortaRedisHold *hold;
  GMainContext   *context;
} RenewFrom;

static gboolean
renew_from_in_worker (gpointer data)
{
  RenewFrom *call = data;

  if (call->hold->pulse_context == NULL)
    call->hold->pulse_context = g_main_context_ref (call->context);
  return G_SOURCE_REMOVE;
}

static void
renew_from_free (gpointer data)
{
  RenewFrom *call = data;

  hold_unref (call->hold);
  g_main_context_unref (call->context);
  g_free (call);
}

void
porta_redis_hold_renew_from (PortaRedisHold *hold,
                             GMainContext   *context)
{
  RenewFrom *call = g_new0 (RenewFrom, 1);

  call->hold = hold_ref (hold);
  call->context = g_main_context_ref (context);
  post (hold->client->context, G_PRIORITY_DEFAULT, renew_from_in_worker, call, renew_from_free);
}

static PortaRedisHold *
hold_new (Op      *op,
          guint64  fence)
{
  PortaRedisHold *hold = g_new0 (PortaRedisHold, 1);

  hold->ref_count = 2;   /* the caller's and the client's list */
  hold->client = porta_redis_client_ref (op->client);
  hold->token = g_strdup (op->token);
  for (guint k = 0; k < N_KEYS; k++)
    hold->keys[k] = g_strdup (op->keys[k]);
  hold->wake = g_strdup (op->wake);
  hold->lease_ms = op->lease_ms;
  hold->fence = fence;
  hold->active = TRUE;
  hold->renewed_at = op->sent_at;
  op->client->holds = g_list_prepend (op->client->holds, hold);
  hold->renew_source = g_timeout_source_new (MAX (hold->lease_ms / 3, 1));
  g_source_set_callback (hold->renew_source, renew_tick, hold, NULL);
  g_source_attach (hold->renew_source, op->client->context);
  return hold;
}

/* From now on a loss of @hold is told to whoever waited for it. */
static void
hold_take_lost (PortaRedisHold *hold,
                Op             *op)
{
  hold->lost_context = g_steal_pointer (&op->lost_context);
  hold->lost_func = op->lost_func;
  hold->lost_data = op->lost_data;
  hold->lost_destroy = op->lost_destroy;
  op->lost_destroy = NULL;
}

/* ---------------------------------------------------------- release */

typedef struct
{
  PortaRedisHold *hold;
  GTask          *task;     /* NULL: nobody waits */
  GMainContext   *context;
  gboolean        result;
  GError         *error;
  Conn           *portalocker;
} ReleaseCall;

static gboolean
release_deliver (gpointer data)
{
  ReleaseCall *call = data;

  if (call->error != NULL)
    g_task_return_error (call->task, g_steal_pointer (&call->error));
  else
    g_task_return_boolean (call->task, TRUE);
  return G_SOURCE_REMOVE;
}

static void
release_call_free (gpointer data)
{
  ReleaseCall *call = data;

  g_clear_object (&call->task);
  g_clear_error (&call->error);
  g_clear_pointer (&call->context, g_main_context_unref);
  hold_unref (call->hold);
  g_free (call);
}

static void
release_done (ReleaseCall *call)
{
  if (call->task == NULL)
    {
      release_call_free (call);
      return;
    }
  post (call->context, G_PRIORITY_DEFAULT, release_deliver, call, release_call_free);
}

static void
release_reply (PortaRedisClient *client,
               redisReply       *reply,
               const GError     *error,
               gpointer          data)
{
  ReleaseCall *call = data;

  if (error != NULL)
    call->error = g_error_copy (error);
  else if (reply->type == REDIS_REPLY_ERROR && client->sharded &&
           cluster_reply_is_transient (reply->str))
    call->error = g_error_new (PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_HELD,
                               _("its node of the Redis cluster does not serve it any "
                                 "more, and another client may have taken it on the node "
                                 "that does"));
  else if (reply->type == REDIS_REPLY_ERROR)
    set_reply_error (client, reply, &call->error);
  else if (reply->type != REDIS_REPLY_INTEGER || reply->integer != 1)
    call->error = g_error_new (PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_HELD,
                               _("its lease had run out, and another client may have taken it"));
  release_done (call);
}

static void
release_unsubscribed (PortaRedisClient *client,
                      redisReply       *reply,
                      const GError     *error,
                      gpointer          data)
{
  ReleaseCall *call = data;
  PortaRedisHold *hold = call->hold;

  /* Whatever the answer, closing the connection ends the subscription. */
  portalocker_close (g_steal_pointer (&call->portalocker));
  script_run (client, SCRIPT_RELEASE, hold->keys, 4, release_reply, call,
              hold->token, hold->wake, SHARDED_ARG (client), NULL);
}

static gboolean
release_in_worker (gpointer data)
{
  ReleaseCall *call = data;
  PortaRedisHold *hold = call->hold;

  if (!hold->active)
    {
      call->error = g_error_new (PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_HELD,
                                 _("it was lost before"));
      release_done (call);
      return G_SOURCE_REMOVE;
    }
  call->portalocker = g_steal_pointer (&hold->portalocker);
  hold_stop (hold);
  if (call->portalocker != NULL)
    {
      /* portalocker's lock goes first, so that the next holder, woken by
       * the release, finds its channel free. */
      const char *argv[2] = { "UNSUBSCRIBE", call->portalocker->channel };

      call->portalocker->hold = NULL;
      conn_send (call->portalocker, 2, argv, NULL, release_unsubscribed, call);
      return G_SOURCE_REMOVE;
    }
  script_run (hold->client, SCRIPT_RELEASE, hold->keys, 4, release_reply, call,
              hold->token, hold->wake, SHARDED_ARG (hold->client), NULL);
  return G_SOURCE_REMOVE;
}

void
porta_redis_hold_release_async (PortaRedisHold      *hold,
                                GAsyncReadyCallback  callback,
                                gpointer             user_data)
{
  ReleaseCall *call = g_new0 (ReleaseCall, 1);

  call->hold = hold;
  if (callback != NULL)
    {
      call->task = g_task_new (NULL, NULL, callback, user_data);
      g_task_set_source_tag (call->task, porta_redis_hold_release_async);
      g_task_set_name (call->task, "[portalock] Redis release");
      call->context = g_main_context_ref_thread_default ();
    }
  post (hold->client->context, G_PRIORITY_DEFAULT, release_in_worker, call, NULL);
}

gboolean
porta_redis_hold_release_finish (GAsyncResult  *result,
                                 GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == porta_redis_hold_release_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/* ---------------------------------------------------------------- waits */

static Op *
op_ref (Op *op)
{
  g_atomic_int_inc (&op->ref_count);
  return op;
}

static void
op_unref (Op *op)
{
  if (!g_atomic_int_dec_and_test (&op->ref_count))
    return;
  g_assert (op->task == NULL);
  if (op->lost_destroy != NULL)
    op->lost_destroy (op->lost_data);
  g_clear_pointer (&op->lost_context, g_main_context_unref);
  g_clear_object (&op->cancellable);
  g_clear_pointer (&op->caller_context, g_main_context_unref);
  g_free (op->token);
  for (guint k = 0; k < N_KEYS; k++)
    g_free (op->keys[k]);
  g_free (op->wake);
  g_strfreev (op->watch);
  g_free (op->portalocker_channel);
  porta_redis_client_unref (op->client);
  if (op->route != NULL)
    porta_redis_client_unref (op->route);
  g_free (op);
}

/* A grant whose task was never finished is given back. */
static void
hold_release_unclaimed (gpointer hold)
{
  porta_redis_hold_release_async (hold, NULL, NULL);
}

typedef struct
{
  Op             *op;
  GTask          *task;
  PortaRedisHold *hold;
  GError         *error;
} OpResult;

static gboolean
op_deliver (gpointer data)
{
  OpResult *result = data;

  if (result->hold != NULL)
    g_task_return_pointer (result->task, g_steal_pointer (&result->hold),
                           hold_release_unclaimed);
  else
    g_task_return_error (result->task, g_steal_pointer (&result->error));
  return G_SOURCE_REMOVE;
}

static void
op_result_free (gpointer data)
{
  OpResult *result = data;

  /* A grant nobody took (its task was dropped unfinished) is given back. */
  if (result->hold != NULL)
    porta_redis_hold_release_async (result->hold, NULL, NULL);
  g_clear_error (&result->error);
  g_clear_object (&result->task);
  op_unref (result->op);
  g_free (result);
}

static void
withdraw_reply (PortaRedisClient *client,
                redisReply       *reply,
                const GError     *error,
                gpointer          data)
{
  op_unref (data);
}

static void
undo_reply (PortaRedisClient *client,
            redisReply       *reply,
            const GError     *error,
            gpointer          data)
{
  op_unref (data);
}

static void
op_finish (Op             *op,
           PortaRedisHold *hold,
           GError         *error)
{
  PortaRedisClient *client = op->client;
  OpResult *result;

  g_assert (!op->done);
  op->done = TRUE;
  if (op->deadline_source != NULL)
    {
      g_source_destroy (op->deadline_source);
      g_clear_pointer (&op->deadline_source, g_source_unref);
    }
  if (op->retry_source != NULL)
    {
      g_source_destroy (op->retry_source);
      g_clear_pointer (&op->retry_source, g_source_unref);
    }
  if (op->route_source != NULL)
    {
      g_source_destroy (op->route_source);
      g_clear_pointer (&op->route_source, g_source_unref);
    }
  if (op->cancel_id != 0)
    {
      g_cancellable_disconnect (op->cancellable, op->cancel_id);
      op->cancel_id = 0;
    }
  op_unsubscribe (op);
  if (op->portalocker_source != NULL)
    {
      g_source_destroy (op->portalocker_source);
      g_clear_pointer (&op->portalocker_source, g_source_unref);
    }
  if (op->portalocker != NULL)
    portalocker_close (g_steal_pointer (&op->portalocker));
  if (op->grant != NULL)
    {
      /* Granted here but not portalocker's lock: give the grant back. */
      PortaRedisHold *grant = g_steal_pointer (&op->grant);

      grant->pending_op = NULL;
      if (grant->active)
        porta_redis_hold_release_async (grant, NULL, NULL);
      else
        hold_unref (grant);
    }
  /* Leave the line now unless an ACQUIRE is on its way: its reply does. */
  if (hold == NULL && op->enqueued && !op->in_flight)
    script_run (client, SCRIPT_WITHDRAW, op->keys, 4, withdraw_reply, op_ref (op),
                op->token, op->wake, SHARDED_ARG (client), NULL);

  result = g_new0 (OpResult, 1);
  result->op = op;    /* takes the engine's reference */
  result->task = g_steal_pointer (&op->task);
  result->hold = hold;
  result->error = error;
  post (op->caller_context, op->priority, op_deliver, result, op_result_free);
}

static void op_arm_retry (Op *op, gint64 delay_ms);

/* The first waiter's look at its holders: one PUBSUB NUMSUB of their
 * liveness channels instead of a whole ACQUIRE, which it runs only when a
 * holder's process is gone (or its lease ends, or a wake-up comes). */
static void
numsub_reply (PortaRedisClient *client,
              redisReply       *reply,
              const GError     *error,
              gpointer          data)
{
  Op *op = data;
  gboolean gone = error != NULL || reply->type != REDIS_REPLY_ARRAY;

  op->probing = FALSE;
  if (op->done || op->in_flight || op->retry_source != NULL || op->routing)
    {
      op_unref (op);
      return;
    }
  for (gsize k = 1; !gone && k < reply->elements; k += 2)
    gone = reply->element[k]->type != REDIS_REPLY_INTEGER || reply->element[k]->integer == 0;
  if (gone)
    op_attempt (op);
  else
    op_arm_retry (op, MIN (FIRST_WAITER_RETRY_MS,
                           (op->lease_due - g_get_monotonic_time ()) / 1000 + 1));
  op_unref (op);
}

static gboolean
op_retry_fire (gpointer data)
{
  Op *op = data;

  g_clear_pointer (&op->retry_source, g_source_unref);
  if (op->watch != NULL && op->watch[0] != NULL && !op->probing &&
      g_get_monotonic_time () < op->lease_due)
    {
      g_autoptr(GPtrArray) argv = g_ptr_array_new ();

      g_ptr_array_add (argv, (char *) "PUBSUB");
      g_ptr_array_add (argv, (char *) "NUMSUB");
      for (guint k = 0; op->watch[k] != NULL; k++)
        g_ptr_array_add (argv, op->watch[k]);
      op->probing = TRUE;
      conn_send (&op->client->cmd, (int) argv->len, (const char **) argv->pdata, NULL,
                 numsub_reply, op_ref (op));
      return G_SOURCE_REMOVE;
    }
  op_attempt (op);
  return G_SOURCE_REMOVE;
}

static void
op_arm_retry (Op    *op,
              gint64 delay_ms)
{
  if (op->retry_source != NULL)
    {
      g_source_destroy (op->retry_source);
      g_clear_pointer (&op->retry_source, g_source_unref);
    }
  op->retry_source = g_timeout_source_new ((guint) CLAMP (delay_ms, 1, G_MAXINT));
  g_source_set_callback (op->retry_source, op_retry_fire, op, NULL);
  g_source_attach (op->retry_source, op->client->context);
}

/* A grant that replicas must confirm: WAIT on the connection that ran the
 * ACQUIRE (it waits for every write made there before), then hold it, or
 * give it back. */
typedef struct
{
  Op      *op;
  guint64  fence;
} ConfirmCall;

static GError *
confirm_error (PortaRedisClient *client,
               redisReply       *reply,
               const GError     *error,
               Op               *op)
{
  GError *local_error = NULL;

  if (error != NULL)
    return g_error_copy (error);
  if (reply->type == REDIS_REPLY_INTEGER)
    return g_error_new (G_IO_ERROR, G_IO_ERROR_FAILED,
                        _("%lld of the %u replicas asked for confirmed the grant within "
                          "%d ms, so it was given back"),
                        reply->integer, op->replicas, CONFIRM_TIMEOUT_MS);
  if (reply->type == REDIS_REPLY_ERROR)
    {
      set_reply_error (client, reply, &local_error);
      return local_error;
    }
  return g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                      _("The Redis server %s answered WAIT with something else than a number"),
                      client->display_uri);
}

static void
confirm_reply (PortaRedisClient *client,
               redisReply       *reply,
               const GError     *error,
               gpointer          data)
{
  ConfirmCall *call = data;
  Op *op = call->op;

  op->in_flight = FALSE;
  if (!op->done && error == NULL && reply->type == REDIS_REPLY_INTEGER &&
      reply->integer >= op->replicas && op->live_gen == client->live_gen)
    op_finish (op, hold_new (op, call->fence), NULL);
  else
    {
      script_run (client, SCRIPT_RELEASE, op->keys, 4, undo_reply, op_ref (op),
                  op->token, op->wake, SHARDED_ARG (client), NULL);
      if (!op->done && error == NULL && op->live_gen != client->live_gen)
        op_finish (op, NULL, g_error_new (G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                                          _("The connection to %s dropped as the lock was granted"),
                                          client->display_uri));
      else if (!op->done)
        op_finish (op, NULL, confirm_error (client, reply, error, op));
    }
  op_unref (op);
  g_free (call);
}

/* Takes the engine's reference to @op. */
static void
op_confirm (Op      *op,
            guint64  fence)
{
  ConfirmCall *call = g_new0 (ConfirmCall, 1);
  g_autofree char *replicas = g_strdup_printf ("%u", op->replicas);
  g_autofree char *timeout = g_strdup_printf ("%d", CONFIRM_TIMEOUT_MS);
  const char *argv[3] = { "WAIT", replicas, timeout };

  call->op = op;
  call->fence = fence;
  op->in_flight = TRUE;   /* a deadline or cancellation now gives it back */
  conn_send (&op->client->cmd, 3, argv, NULL, confirm_reply, call);
}

static void
acquire_reply (PortaRedisClient *client,
               redisReply       *reply,
               const GError     *error,
               gpointer          data)
{
  Op *op = data;
  gboolean granted = FALSE;
  gint64 fence = 0, retry_ms = -1;
  gboolean first = FALSE;
  GError *local_error = NULL;

  op->in_flight = FALSE;
  if (error != NULL)
    local_error = g_error_copy (error);
  else if (reply->type == REDIS_REPLY_ERROR)
    set_reply_error (client, reply, &local_error);
  else if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
           reply->element[0]->type != REDIS_REPLY_INTEGER ||
           reply->element[1]->type != REDIS_REPLY_INTEGER)
    local_error = g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                               _("The Redis server %s answered the lock script with "
                                 "something else than the script returns"),
                               client->display_uri);
  else
    {
      op->answered = TRUE;
      granted = reply->element[0]->integer == 1;
      if (granted)
        fence = reply->element[1]->integer;
      else
        {
          GPtrArray *watch = g_ptr_array_new ();

          retry_ms = reply->element[1]->integer;
          first = reply->elements > 2 && reply->element[2]->type == REDIS_REPLY_INTEGER &&
                  reply->element[2]->integer == 1;
          for (gsize k = 3; k < reply->elements; k++)
            if (reply->element[k]->type == REDIS_REPLY_STRING)
              g_ptr_array_add (watch, g_strdup (reply->element[k]->str));
          g_ptr_array_add (watch, NULL);
          g_strfreev (op->watch);
          op->watch = (char **) g_ptr_array_free (watch, FALSE);
          op->lease_due = g_get_monotonic_time () + MAX (retry_ms, 0) * 1000;
        }
    }

  if (op->done)
    {
      /* The wait ended (timeout, cancellation) while this was on its way:
       * give back what it won, or leave the line. */
      g_clear_error (&local_error);
      if (granted)
        script_run (client, SCRIPT_RELEASE, op->keys, 4, undo_reply, op,
                    op->token, op->wake, SHARDED_ARG (client), NULL);
      else if (op->enqueued)
        script_run (client, SCRIPT_WITHDRAW, op->keys, 4, withdraw_reply, op,
                    op->token, op->wake, SHARDED_ARG (client), NULL);
      else
        op_unref (op);
      return;
    }

  if (!granted && op_route_on_trouble (op, reply, error))
    {
      g_clear_error (&local_error);
      op_unref (op);
      return;
    }
  if (local_error != NULL)
    {
      op_finish (op, NULL, local_error);
      op_unref (op);
      return;
    }
  op->reroute = FALSE;
  op->trouble_since = 0;
  if (granted && op->live_gen != client->live_gen)
    {
      /* Granted under a liveness channel that has gone: not held. */
      script_run (client, SCRIPT_RELEASE, op->keys, 4, undo_reply, op_ref (op),
                  op->token, op->wake, SHARDED_ARG (client), NULL);
      op_fail (op, g_error_new (G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                                _("The connection to %s dropped as the lock was granted"),
                                client->display_uri));
      op_unref (op);
      return;
    }
  if (granted && op->replicas > 0)
    {
      op_confirm (op, (guint64) fence);
      return;
    }
  if (granted)
    {
      PortaRedisHold *hold = hold_new (op, (guint64) fence);

      op->enqueued = FALSE;   /* the script took it out of the line */
      if (op->portalocker_channel != NULL)
        {
          /* Then portalocker's lock, with the grant kept meanwhile. */
          op->grant = hold;
          hold->pending_op = op;
          op_unsubscribe (op);
          portalocker_look (op);
        }
      else
        {
          hold_take_lost (hold, op);
          op_finish (op, hold, NULL);
        }
      op_unref (op);
      return;
    }
  if (op->timeout_ms == 0)
    {
      op_finish (op, NULL, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK, "taken"));
      op_unref (op);
      return;
    }
  if (!op->subscribed)
    {
      /* Taken: subscribe to its wake-ups first, then try again in line, so
       * that no release between the two goes unseen. */
      op_subscribe (op);
      op_unref (op);
      return;
    }
  if (op->again)
    {
      op->again = FALSE;
      op_attempt (op);
    }
  else
    {
      /* Released locks are pushed; what is not pushed is a holder's death
       * or lease end: the first in line looks at its holders' liveness
       * every 100 ms (op_retry_fire()), the others refresh their place in
       * line every third of a lease. */
      gint64 delay = first ? FIRST_WAITER_RETRY_MS : op->lease_ms / 3;

      if (!first)
        g_clear_pointer (&op->watch, g_strfreev);

      if (retry_ms >= 0 && retry_ms + 1 < delay)
        delay = retry_ms + 1;
      op_arm_retry (op, delay);
    }
  op_unref (op);
}

/* ------------------------------------------ Python portalocker's lock */

/* portalocker's RedisLock holds channel N while it has a subscriber there,
 * under the client name "N-lock", and it takes the lock only when
 * PUBSUB NUMSUB N is 0 before and 1 after it subscribes. A waiter pings a
 * holder with a JSON message naming a response channel, and kills the
 * connection of one that does not answer within a second. A lock with
 * that protocol first wins its own grant (so that portalock processes
 * queue among themselves, pushed not polled), then takes the channel the
 * same way on a connection of its own, and answers the pings. Waiting on
 * a portalocker holder can only poll, as portalocker itself does. */

#define PORTALOCKER_POLL_MS 50

/* The string member @member of the JSON object @json, or NULL. Enough of
 * JSON for portalocker's pings: string members with every escape; other
 * scalar members skipped. */
static char *
json_string_member (const char *json,
                    const char *member)
{
  const char *p = json;
  g_autoptr(GString) key = g_string_new (NULL);
  g_autoptr(GString) value = g_string_new (NULL);

#define SKIP_SPACE() while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++
  SKIP_SPACE ();
  if (*p++ != '{')
    return NULL;
  for (;;)
    {
      GString *out = key;

      SKIP_SPACE ();
      if (*p != '"')
        return NULL;
      for (int part = 0; part < 2; part++)
        {
          g_string_truncate (out, 0);
          p++;
          while (*p != '"')
            {
              gunichar c;

              if (*p == '\0' || (guchar) *p < 0x20)
                return NULL;
              if (*p != '\\')
                {
                  g_string_append_c (out, *p++);
                  continue;
                }
              p++;
              switch (*p++)
                {
                case '"': g_string_append_c (out, '"'); continue;
                case '\\': g_string_append_c (out, '\\'); continue;
                case '/': g_string_append_c (out, '/'); continue;
                case 'b': g_string_append_c (out, '\b'); continue;
                case 'f': g_string_append_c (out, '\f'); continue;
                case 'n': g_string_append_c (out, '\n'); continue;
                case 'r': g_string_append_c (out, '\r'); continue;
                case 't': g_string_append_c (out, '\t'); continue;
                case 'u': break;
                default: return NULL;
                }
              c = 0;
              for (int k = 0; k < 4; k++, p++)
                {
                  if (!g_ascii_isxdigit (*p))
                    return NULL;
                  c = c * 16 + (gunichar) g_ascii_xdigit_value (*p);
                }
              if (c >= 0xD800 && c < 0xDC00 && p[0] == '\\' && p[1] == 'u')
                {
                  gunichar low = 0;

                  for (int k = 2; k < 6; k++)
                    {
                      if (!g_ascii_isxdigit (p[k]))
                        return NULL;
                      low = low * 16 + (gunichar) g_ascii_xdigit_value (p[k]);
                    }
                  if (low < 0xDC00 || low >= 0xE000)
                    return NULL;
                  c = 0x10000 + ((c - 0xD800) << 10) + (low - 0xDC00);
                  p += 6;
                }
              if (!g_unichar_validate (c) || c == 0)
                return NULL;
              g_string_append_unichar (out, c);
            }
          p++;
          if (part == 1)
            break;
          SKIP_SPACE ();
          if (*p++ != ':')
            return NULL;
          SKIP_SPACE ();
          if (*p != '"')
            {
              /* A number, true, false or null: not what is looked for. */
              while (*p != '\0' && *p != ',' && *p != '}' && *p != '{' && *p != '[')
                p++;
              if (*p != ',' && *p != '}')
                return NULL;
              g_string_truncate (value, 0);
              break;
            }
          out = value;
        }
      if (out == value && strcmp (key->str, member) == 0)
        return g_strdup (value->str);
      SKIP_SPACE ();
      if (*p == '}')
        return NULL;
      if (*p++ != ',')
        return NULL;
    }
#undef SKIP_SPACE
}

/* A portalocker waiter asks whether the holder is alive. */
static void
portalocker_message (Conn       *conn,
                     redisReply *reply)
{
  g_autofree char *response = NULL;
  g_autofree char *now = NULL;
  gint64 usec;

  if (reply->element[2]->type != REDIS_REPLY_STRING)
    return;
  response = json_string_member (reply->element[2]->str, "response_channel");
  if (response == NULL)
    return;
  /* What portalocker answers: the time, in seconds. */
  usec = g_get_real_time ();
  now = g_strdup_printf ("%" G_GINT64_FORMAT ".%06d", usec / G_USEC_PER_SEC,
                         (int) (usec % G_USEC_PER_SEC));
  {
    const char *argv[3] = { "PUBLISH", response, now };

    conn_send (&conn->client->cmd, 3, argv, NULL, ignore_reply, NULL);
  }
}

static gboolean
portalocker_free (gpointer data)
{
  Conn *conn = data;

  g_free (conn->channel);
  g_free (conn);
  return G_SOURCE_REMOVE;
}

/* Ends @conn, with nobody told; it is freed once nothing can see it. */
static void
portalocker_close (Conn *conn)
{
  conn->op = NULL;
  conn->hold = NULL;
  if (conn->link != NULL)
    {
      g_autoptr(GError) error = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CLOSED, "closed");

      conn_drop (conn, error);
    }
  post (conn->client->context, G_PRIORITY_DEFAULT, portalocker_free, conn, NULL);
}

static void
portalocker_given_back (PortaRedisClient *client,
                        redisReply       *reply,
                        const GError     *error,
                        gpointer          data)
{
  hold_unref (data);
}

static void
portalocker_dropped (Conn         *conn,
                     const GError *error)
{
  g_autoptr(GError) lost_error = NULL;

  if (conn->op == NULL && conn->hold == NULL)
    return;
  lost_error = g_error_new (error->domain, error->code,
                            _("The connection that holds Python portalocker’s lock "
                              "on channel “%s” at %s was lost: %s"),
                            conn->channel, conn->client->display_uri, error->message);
  if (conn->hold != NULL)
    {
      PortaRedisHold *hold = conn->hold;

      /* portalock's own lock is still granted: give it back, so that the
       * next in line need not wait for its lease to run out. */
      if (hold->active)
        script_run (conn->client, SCRIPT_RELEASE, hold->keys, 4, portalocker_given_back,
                    hold_ref (hold), hold->token, hold->wake,
                    SHARDED_ARG (conn->client), NULL);
      hold_lost (hold, lost_error);
    }
  else if (!conn->op->done)
    op_finish (conn->op, NULL, g_steal_pointer (&lost_error));
}

static gboolean
portalocker_look_again (gpointer data)
{
  Op *op = data;

  g_clear_pointer (&op->portalocker_source, g_source_unref);
  portalocker_look (op);
  return G_SOURCE_REMOVE;
}

/* portalocker's lock is taken: fail a try, or look again a little later. */
static void
portalocker_taken (Op *op)
{
  if (op->timeout_ms == 0)
    {
      op_finish (op, NULL, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK, "taken"));
      return;
    }
  /* Spread out, so that two that met on the channel do not meet again. */
  op->portalocker_source =
      g_timeout_source_new ((guint) g_random_int_range (PORTALOCKER_POLL_MS / 2,
                                                        PORTALOCKER_POLL_MS * 3 / 2));
  g_source_set_callback (op->portalocker_source, portalocker_look_again, op, NULL);
  g_source_attach (op->portalocker_source, op->client->context);
}

/* The count of subscribers of the channel in a PUBSUB NUMSUB reply, or -1
 * with @error set. */
static gint64
portalocker_count (Op                *op,
                   const redisReply  *reply,
                   const GError      *error,
                   GError           **out_error)
{
  if (error != NULL)
    *out_error = g_error_copy (error);
  else if (reply->type == REDIS_REPLY_ERROR)
    set_reply_error (op->client, reply, out_error);
  else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
           reply->element[1]->type == REDIS_REPLY_INTEGER)
    return reply->element[1]->integer;
  else
    *out_error = g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                              _("The Redis server %s answered PUBSUB NUMSUB with "
                                "something else than a count"),
                              op->client->display_uri);
  return -1;
}

static void
portalocker_subscribed (PortaRedisClient *client,
                        redisReply       *reply,
                        const GError     *error,
                        gpointer          data)
{
  Op *op = data;

  if (!op->done)
    {
      if (error != NULL || reply->type == REDIS_REPLY_ERROR)
        {
          GError *local_error = NULL;

          if (error != NULL)
            local_error = g_error_copy (error);
          else
            set_reply_error (client, reply, &local_error);
          op_finish (op, NULL, local_error);
        }
      else
        {
          const char *argv[3] = { "PUBSUB", "NUMSUB", op->portalocker_channel };

          conn_send (&client->cmd, 3, argv, NULL, portalocker_counted, op_ref (op));
        }
    }
  op_unref (op);
}

/* The answer to PUBSUB NUMSUB of portalocker's channel: before this wait
 * subscribes, the lock is free at 0; after, it holds the lock at 1. */
static void
portalocker_counted (PortaRedisClient *client,
                     redisReply       *reply,
                     const GError     *error,
                     gpointer          data)
{
  Op *op = data;
  GError *local_error = NULL;
  gint64 count;

  if (op->done)
    {
      op_unref (op);
      return;
    }
  count = portalocker_count (op, reply, error, &local_error);
  if (count < 0)
    op_finish (op, NULL, local_error);
  else if (op->portalocker == NULL && count == 0)
    {
      const char *argv[2] = { "SUBSCRIBE", op->portalocker_channel };

      op->portalocker = g_new0 (Conn, 1);
      op->portalocker->client = client;
      op->portalocker->subscriber = TRUE;
      op->portalocker->channel = g_strdup (op->portalocker_channel);
      op->portalocker->op = op;
      conn_send (op->portalocker, 2, argv, NULL, portalocker_subscribed, op_ref (op));
    }
  else if (op->portalocker != NULL && count == 1)
    {
      PortaRedisHold *hold = g_steal_pointer (&op->grant);

      hold->pending_op = NULL;
      hold->portalocker = g_steal_pointer (&op->portalocker);
      hold->portalocker->op = NULL;
      hold->portalocker->hold = hold;
      hold_take_lost (hold, op);
      op_finish (op, hold, NULL);
    }
  else
    {
      /* Taken; or a portalocker process subscribed at the same moment, and
       * both step back, as portalocker does. */
      if (op->portalocker != NULL)
        portalocker_close (g_steal_pointer (&op->portalocker));
      portalocker_taken (op);
    }
  op_unref (op);
}

/* Is portalocker's lock free? */
static void
portalocker_look (Op *op)
{
  const char *argv[3] = { "PUBSUB", "NUMSUB", op->portalocker_channel };

  if (op->done)
    return;
  conn_send (&op->client->cmd, 3, argv, NULL, portalocker_counted, op_ref (op));
}

static void
op_attempt (Op *op)
{
  PortaRedisClient *client = op->client;
  g_autofree char *capacity = NULL;
  g_autofree char *lease = NULL;

  if (op->done)
    return;
  if (op->in_flight)
    {
      op->again = TRUE;
      return;
    }
  if (!client->live_ready)
    {
      client->live_waiters = g_list_prepend (client->live_waiters, op_ref (op));
      if (client->sub.link == NULL)
        conn_connect (&client->sub);
      return;
    }
  if (op->retry_source != NULL)
    {
      g_source_destroy (op->retry_source);
      g_clear_pointer (&op->retry_source, g_source_unref);
    }
  op->in_flight = TRUE;
  op->again = FALSE;
  if (op->subscribed)
    op->enqueued = TRUE;   /* maybe in line from now on */
  op->live_gen = client->live_gen;
  op->sent_at = g_get_monotonic_time ();
  capacity = g_strdup_printf ("%u", op->exclusive ? 1 : op->capacity);
  lease = g_strdup_printf ("%u", op->lease_ms);
  script_run (client, SCRIPT_ACQUIRE, op->keys, N_KEYS, acquire_reply, op_ref (op),
              op->token, op->exclusive ? "x" : "s", capacity, lease, client->liveness,
              op->subscribed ? "1" : "0", lease, op->wake, SHARDED_ARG (client),
              op->route != NULL ? porta_redis_cluster_get_masters (op->route->cluster) : "",
              NULL);
}

/* ----------------------------------------------------- waits on a cluster */

#define CLUSTER_RETRY_MS    100
#define CLUSTER_GIVE_UP_US  (30 * G_USEC_PER_SEC)

/* Redis Cluster's answers for a command sent to a node that does not
 * serve its slot, or not now: the wait goes to the slot's master again. */
static gboolean
cluster_reply_is_transient (const char *text)
{
  return g_str_has_prefix (text, "MOVED ") || g_str_has_prefix (text, "ASK ") ||
         g_str_has_prefix (text, "TRYAGAIN") || g_str_has_prefix (text, "CLUSTERDOWN") ||
         g_str_has_prefix (text, "LOADING") || g_str_has_prefix (text, "MASTERDOWN");
}

static void op_route (Op *op, gint64 delay_ms, const GError *cause);

static void
op_routed (gpointer      data,
           const GError *error)
{
  Op *op = data;
  PortaRedisClient *node;

  op->routing = FALSE;
  if (op->done)
    {
      op_unref (op);
      return;
    }
  node = error == NULL ? porta_redis_cluster_lookup (op->route->cluster, op->slot) : NULL;
  if (error != NULL)
    op_finish (op, NULL, g_error_copy (error));
  else if (node == NULL)
    {
      g_autoptr(GError) none = g_error_new (G_IO_ERROR, G_IO_ERROR_NOT_CONNECTED,
                                            _("No master of the Redis cluster %s serves "
                                              "the slot %u of the lock"),
                                            op->route->display_uri, op->slot);

      op_route (op, CLUSTER_RETRY_MS, none);
    }
  else
    {
      if (node != op->client)
        {
          porta_redis_client_unref (op->client);
          op->client = porta_redis_client_ref (node);
        }
      op_attempt (op);
    }
  op_unref (op);
}

static gboolean
op_route_fire (gpointer data)
{
  Op *op = data;

  g_clear_pointer (&op->route_source, g_source_unref);
  porta_redis_cluster_refresh (op->route->cluster, op_routed, op_ref (op));
  return G_SOURCE_REMOVE;
}

/* Takes the wait off its node and sends it to the master of its slot, as
 * the map reads after @delay_ms: the node moved the slot away, dropped, or
 * cannot serve it now (a failover is under way). Its place in line moves
 * with the slot's keys. A wait that finds no master for longer than
 * CLUSTER_GIVE_UP_US fails with @cause. */
static void
op_route (Op           *op,
          gint64        delay_ms,
          const GError *cause)
{
  gint64 now = g_get_monotonic_time ();

  if (op->done || op->routing)
    return;
  if (op->in_flight)
    {
      op->reroute = TRUE;   /* acquire_reply() comes back here */
      return;
    }
  if (op->trouble_since == 0)
    op->trouble_since = now;
  else if (now - op->trouble_since > CLUSTER_GIVE_UP_US)
    {
      op_finish (op, NULL, g_error_copy (cause));
      return;
    }
  op->reroute = FALSE;
  op_unsubscribe (op);
  op->confirmed = FALSE;
  if (op->retry_source != NULL)
    {
      g_source_destroy (op->retry_source);
      g_clear_pointer (&op->retry_source, g_source_unref);
    }
  g_clear_pointer (&op->watch, g_strfreev);
  op->routing = TRUE;
  if (delay_ms <= 0)
    {
      porta_redis_cluster_refresh (op->route->cluster, op_routed, op_ref (op));
      return;
    }
  op->route_source = g_timeout_source_new ((guint) delay_ms);
  g_source_set_callback (op->route_source, op_route_fire, op, NULL);
  g_source_attach (op->route_source, op->client->context);
}

/* On a cluster: routes the wait again if @reply or @error says that its
 * node does not serve its slot (now), or if that was learnt while the
 * command was on its way. */
static gboolean
op_route_on_trouble (Op               *op,
                     const redisReply *reply,
                     const GError     *error)
{
  g_autoptr(GError) cause = NULL;
  gint64 delay_ms = CLUSTER_RETRY_MS;

  if (op->route == NULL)
    return FALSE;
  if (error == NULL && reply->type == REDIS_REPLY_ERROR && g_str_has_prefix (reply->str, "MOVED "))
    delay_ms = 0;   /* the map is behind: read it now */
  if (error != NULL)
    cause = g_error_copy (error);
  else if (reply->type == REDIS_REPLY_ERROR && cluster_reply_is_transient (reply->str))
    cause = g_error_new (G_IO_ERROR, G_IO_ERROR_NOT_CONNECTED,
                         _("The Redis cluster %s cannot serve the lock now: %s"),
                         op->route->display_uri, reply->str);
  else if (op->reroute)
    cause = g_error_new (G_IO_ERROR, G_IO_ERROR_NOT_CONNECTED,
                         _("The Redis cluster %s moved the lock to another node"),
                         op->route->display_uri);
  else
    return FALSE;
  op_route (op, delay_ms, cause);
  return TRUE;
}

/* A wait whose node failed it: on a cluster it goes on elsewhere. */
static void
op_fail (Op     *op,
         GError *error)
{
  if (op->route == NULL)
    {
      op_finish (op, NULL, error);
      return;
    }
  op_route (op, CLUSTER_RETRY_MS, error);
  g_error_free (error);
}

/* The node gave the slot of shard channel @name away (or confirms an
 * unsubscription): whoever waits on it follows the slot. */
static void
client_shard_channel_gone (PortaRedisClient *client,
                           const char       *name)
{
  Channel *channel = g_hash_table_lookup (client->channels, name);
  g_autoptr(GError) cause = NULL;
  GList *ops;

  if (channel == NULL || !channel->confirmed)
    return;
  cause = g_error_new (G_IO_ERROR, G_IO_ERROR_NOT_CONNECTED,
                       _("The Redis server %s gave the lock’s slot to another node"),
                       client->display_uri);
  ops = g_list_copy (channel->ops);
  for (GList *l = ops; l != NULL; l = l->next)
    if (!((Op *) l->data)->done)
      op_route (l->data, 0, cause);
  g_list_free (ops);
}

static gboolean
op_deadline_fire (gpointer data)
{
  Op *op = data;

  g_clear_pointer (&op->deadline_source, g_source_unref);
  if (op->done)
    return G_SOURCE_REMOVE;
  if (op->answered)
    op_finish (op, NULL, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                                              PORTA_REDIS_WAIT_TIMED_OUT));
  else
    op_finish (op, NULL, g_error_new (G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                                      _("Timed out after %d ms with no answer from the "
                                        "Redis server %s"),
                                      op->timeout_ms, op->client->display_uri));
  return G_SOURCE_REMOVE;
}

static gboolean
op_cancel_in_worker (gpointer data)
{
  Op *op = data;

  if (!op->done)
    op_finish (op, NULL, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED, "cancelled"));
  return G_SOURCE_REMOVE;
}

static void
op_cancelled (GCancellable *cancellable,
              gpointer      data)
{
  Op *op = data;

  /* ->route: ->client may be changing in the worker. */
  post ((op->route != NULL ? op->route : op->client)->context, G_PRIORITY_DEFAULT,
        op_cancel_in_worker, op_ref (op), (GDestroyNotify) op_unref);
}

static gboolean
op_start_in_worker (gpointer data)
{
  Op *op = data;

  if (op->deadline > 0)
    {
      gint64 remaining_ms = (op->deadline - g_get_monotonic_time () + 999) / 1000;

      op->deadline_source = g_timeout_source_new ((guint) CLAMP (remaining_ms, 0, G_MAXINT));
      g_source_set_callback (op->deadline_source, op_deadline_fire, op, NULL);
      g_source_attach (op->deadline_source, op->client->context);
    }
  if (op->cancellable != NULL)
    {
      if (g_cancellable_is_cancelled (op->cancellable))
        {
          op_finish (op, NULL, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED, "cancelled"));
          return G_SOURCE_REMOVE;
        }
      /* Cancelled from here on: the handler posts the end to this thread. */
      op->cancel_id = g_cancellable_connect (op->cancellable, G_CALLBACK (op_cancelled), op, NULL);
    }
  if (op->route != NULL)
    {
      /* First the master of the lock's slot, from the map or read now. */
      op->routing = TRUE;
      if (porta_redis_cluster_is_known (op->route->cluster))
        op_routed (op_ref (op), NULL);
      else
        porta_redis_cluster_refresh (op->route->cluster, op_routed, op_ref (op));
      return G_SOURCE_REMOVE;
    }
  op_attempt (op);
  return G_SOURCE_REMOVE;
}

void
porta_redis_client_acquire_async (PortaRedisClient        *client,
                                  const PortaRedisRequest *request,
                                  GCancellable            *cancellable,
                                  int                      priority,
                                  GAsyncReadyCallback      callback,
                                  gpointer                 user_data)
{
  static const char *const key_names[N_KEYS] = { "h", "i", "q", "w", "f" };
  g_autofree char *uuid = g_uuid_string_random ();
  Op *op = g_new0 (Op, 1);

  op->ref_count = 1;
  op->client = porta_redis_client_ref (client);
  op->caller_context = g_main_context_ref_thread_default ();
  op->priority = priority;
  op->task = g_task_new (NULL, cancellable, callback, user_data);
  g_task_set_source_tag (op->task, porta_redis_client_acquire_async);
  g_task_set_name (op->task, "[portalock] Redis acquire");
  op->token = g_strdup (uuid);
  for (guint k = 0; k < N_KEYS; k++)
    op->keys[k] = g_strdup_printf ("porta:{%s}:%s", request->name, key_names[k]);
  op->wake = g_strdup_printf ("porta:{%s}:wake", request->name);
  op->exclusive = request->exclusive;
  op->capacity = request->capacity;
  op->lease_ms = request->lease_ms;
  op->timeout_ms = request->timeout_ms;
  op->deadline = request->deadline;
  op->replicas = request->replicas;
  op->cancellable = cancellable != NULL ? g_object_ref (cancellable) : NULL;
  op->lost_context = request->lost_context != NULL ? g_main_context_ref (request->lost_context) : NULL;
  op->lost_func = request->lost_func;
  op->lost_data = request->lost_data;
  op->lost_destroy = request->lost_destroy;
  op->portalocker_channel = g_strdup (request->portalocker_channel);
  if (client->cluster != NULL)
    {
      op->route = porta_redis_client_ref (client);
      op->slot = porta_redis_key_slot (request->name);
    }
  post (client->context, G_PRIORITY_DEFAULT, op_start_in_worker, op, NULL);
}

PortaRedisHold *
porta_redis_client_acquire_finish (GAsyncResult  *result,
                                   GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == porta_redis_client_acquire_async, NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

void
porta_redis_hold_unref (PortaRedisHold *hold)
{
  hold_unref (hold);
}
