/* porta-redis-cluster.c: a Redis Cluster behind one client: its URI, its
 * slot map and a client for each master in use
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <string.h>

#include "porta-i18n-private.h"
#include "porta-redis-cluster-private.h"

/* A cluster spreads keys over 16384 slots, each served by one master. The
 * front client (the one the registry hands out for the URI) owns this map
 * and one node client per master, each with the usual command and
 * subscriber connections; a wait is routed to the node of its lock's slot
 * (porta-redis-client.c) and routed again when a node answers MOVED, drops,
 * or takes its shard channels away. Everything here but parsing runs on
 * the worker thread. */

typedef struct
{
  char    *host;
  guint16  port;
} Seed;

typedef struct
{
  PortaRedisClusterFunc func;
  gpointer              data;
} Waiting;

struct _PortaRedisCluster
{
  PortaRedisClient *front;          /* owns this */
  char             *display_uri;
  GArray           *seeds;          /* Seed */

  /* Worker thread only. */
  GHashTable       *nodes;          /* "host:port" -> PortaRedisClient (a reference) */
  PortaRedisClient *slots[PORTA_REDIS_N_SLOTS];   /* into nodes */
  char             *masters;        /* "host:port host:port...": of the last map */
  gboolean          known;
  gboolean          refreshing;
  GPtrArray        *candidates;     /* nodes to ask for the map, in turn */
  guint             next;
  GError           *last_error;
  GArray           *waiting;        /* Waiting */
};

#define CLUSTER_SCHEME     "redis+cluster://"
#define CLUSTER_TLS_SCHEME "rediss+cluster://"

/* ---------------------------------------------------------------- URIs */

gboolean
porta_redis_cluster_is_uri (const char *uri)
{
  return uri != NULL &&
         (g_str_has_prefix (uri, CLUSTER_SCHEME) || g_str_has_prefix (uri, CLUSTER_TLS_SCHEME));
}

/* The node list after the scheme and any user information. */
static const char *
skip_userinfo (const char  *rest,
               const char **userinfo_end)
{
  const char *slash = strchr (rest, '/');
  const char *at = NULL;

  for (const char *p = rest; *p != '\0' && (slash == NULL || p < slash); p++)
    if (*p == '@')
      at = p;
  *userinfo_end = at;
  return at != NULL ? at + 1 : rest;
}

char *
porta_redis_cluster_display_uri (const char *uri)
{
  const char *rest = strstr (uri, "://") + 3;
  const char *at, *nodes = skip_userinfo (rest, &at);
  const char *colon;

  if (at == NULL)
    return g_strdup (uri);
  colon = memchr (rest, ':', (gsize) (at - rest));
  /* The user name stays, the password goes. */
  return g_strdup_printf ("%.*s%.*s@%s", (int) (rest - uri), uri,
                          (int) ((colon != NULL ? colon : at) - rest), rest, nodes);
}

static gboolean
parse_node (const char  *text,
            Seed        *seed)
{
  const char *colon;
  guint64 port = 6379;

  if (text[0] == '[')
    {
      const char *end = strchr (text, ']');

      if (end == NULL || end == text + 1 || (end[1] != '\0' && end[1] != ':'))
        return FALSE;
      seed->host = g_strndup (text + 1, (gsize) (end - text - 1));
      colon = end[1] == ':' ? end + 1 : NULL;
    }
  else
    {
      colon = strrchr (text, ':');
      if (colon == text || text[0] == '\0')
        return FALSE;
      seed->host = colon != NULL ? g_strndup (text, (gsize) (colon - text)) : g_strdup (text);
    }
  if (colon != NULL && !g_ascii_string_to_unsigned (colon + 1, 10, 1, 65535, &port, NULL))
    {
      g_clear_pointer (&seed->host, g_free);
      return FALSE;
    }
  seed->port = (guint16) port;
  return TRUE;
}

static void
seed_clear (gpointer data)
{
  g_free (((Seed *) data)->host);
}

static gboolean
parse_uri (PortaRedisCluster  *cluster,
           const char         *uri,
           char              **user,
           char              **password,
           GError            **error)
{
  const char *rest = strstr (uri, "://") + 3;
  const char *at, *nodes = skip_userinfo (rest, &at);
  const char *end = nodes + strcspn (nodes, "/?#");
  g_autofree char *list = g_strndup (nodes, (gsize) (end - nodes));
  g_auto(GStrv) items = g_strsplit (list, ",", -1);

  if (at != NULL)
    {
      g_autofree char *userinfo = g_strndup (rest, (gsize) (at - rest));
      char *colon = strchr (userinfo, ':');
      g_autofree char *name = g_uri_unescape_string (userinfo, NULL);

      if (colon != NULL)
        {
          *colon = '\0';
          g_free (name);
          name = g_uri_unescape_string (userinfo, NULL);
          *password = g_uri_unescape_string (colon + 1, NULL);
        }
      if (name == NULL || (colon != NULL && *password == NULL))
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                       _("Invalid Redis URI “%s”: its user name or password cannot be read"),
                       cluster->display_uri);
          return FALSE;
        }
      if (name[0] != '\0')
        *user = g_steal_pointer (&name);
    }
  if (*end != '\0' && strcmp (end, "/") != 0 && strcmp (end, "/0") != 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   _("Invalid Redis URI “%s”: a cluster has only the database 0, "
                     "and portalock reads no query"),
                   cluster->display_uri);
      return FALSE;
    }
  if (items[0] == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   _("Invalid Redis URI “%s”: it names no node of the cluster"),
                   cluster->display_uri);
      return FALSE;
    }
  for (guint k = 0; items[k] != NULL; k++)
    {
      Seed seed = { NULL, 0 };

      if (!parse_node (items[k], &seed))
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                       _("Invalid Redis URI “%s”: “%s” is not a host and port, as in "
                         "redis+cluster://10.0.0.1:7000,10.0.0.2:7000/"),
                       cluster->display_uri, items[k]);
          return FALSE;
        }
      g_array_append_val (cluster->seeds, seed);
    }
  return TRUE;
}

PortaRedisCluster *
porta_redis_cluster_new (PortaRedisClient  *front,
                         const char        *uri,
                         const char        *display_uri,
                         char             **user,
                         char             **password,
                         gboolean          *tls,
                         GError           **error)
{
  PortaRedisCluster *cluster = g_new0 (PortaRedisCluster, 1);

  cluster->front = front;
  cluster->display_uri = g_strdup (display_uri);
  cluster->seeds = g_array_new (FALSE, TRUE, sizeof (Seed));
  g_array_set_clear_func (cluster->seeds, seed_clear);
  cluster->nodes = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                          (GDestroyNotify) porta_redis_client_unref);
  cluster->waiting = g_array_new (FALSE, FALSE, sizeof (Waiting));
  *tls = g_str_has_prefix (uri, CLUSTER_TLS_SCHEME);
  if (!parse_uri (cluster, uri, user, password, error))
    {
      porta_redis_cluster_free (cluster);
      return NULL;
    }
  return cluster;
}

void
porta_redis_cluster_free (PortaRedisCluster *cluster)
{
  g_assert (!cluster->refreshing && cluster->waiting->len == 0);
  g_hash_table_unref (cluster->nodes);
  g_free (cluster->masters);
  g_clear_error (&cluster->last_error);
  g_array_unref (cluster->seeds);
  g_array_unref (cluster->waiting);
  g_free (cluster->display_uri);
  g_free (cluster);
}

/* ---------------------------------------------------------------- slots */

/* CRC16/XMODEM, as Redis Cluster hashes keys (its keyHashSlot()). */
static guint16
crc16 (const char *data,
       gsize       len)
{
  guint16 crc = 0;

  for (gsize k = 0; k < len; k++)
    {
      crc ^= (guint16) ((guint8) data[k] << 8);
      for (int bit = 0; bit < 8; bit++)
        crc = (crc & 0x8000) != 0 ? (guint16) ((crc << 1) ^ 0x1021) : (guint16) (crc << 1);
    }
  return crc;
}

guint
porta_redis_key_slot (const char *name)
{
  return crc16 (name, strlen (name)) & (PORTA_REDIS_N_SLOTS - 1);
}

PortaRedisClient *
porta_redis_cluster_lookup (PortaRedisCluster *cluster,
                            guint              slot)
{
  g_return_val_if_fail (slot < PORTA_REDIS_N_SLOTS, NULL);
  return cluster->slots[slot];
}

const char *
porta_redis_cluster_get_masters (PortaRedisCluster *cluster)
{
  return cluster->masters != NULL ? cluster->masters : "";
}

gboolean
porta_redis_cluster_is_known (PortaRedisCluster *cluster)
{
  return cluster->known;
}

static PortaRedisClient *
cluster_node (PortaRedisCluster *cluster,
              const char        *host,
              guint16            port)
{
  g_autofree char *key = g_strdup_printf ("%s:%u", host, port);
  PortaRedisClient *node = g_hash_table_lookup (cluster->nodes, key);

  if (node == NULL)
    {
      node = porta_redis_client_new_node (cluster->front, host, port);
      g_hash_table_insert (cluster->nodes, g_steal_pointer (&key), node);
    }
  return node;
}

/* ------------------------------------------------------ reading the map */

static void cluster_ask_next (PortaRedisCluster *cluster);

static void
cluster_refresh_done (PortaRedisCluster *cluster,
                      const GError      *error)
{
  GArray *waiting = cluster->waiting;

  cluster->waiting = g_array_new (FALSE, FALSE, sizeof (Waiting));
  cluster->refreshing = FALSE;
  g_clear_pointer (&cluster->candidates, g_ptr_array_unref);
  for (guint k = 0; k < waiting->len; k++)
    {
      Waiting *w = &g_array_index (waiting, Waiting, k);

      w->func (w->data, error);
    }
  g_array_unref (waiting);
}

/* Reads a CLUSTER SLOTS reply: [[first, last, [host, port, id], replicas...]...].
 * An empty host means the node that was asked. */
static gboolean
cluster_apply_slots (PortaRedisCluster *cluster,
                     PortaRedisClient  *asked,
                     const redisReply  *reply)
{
  PortaRedisClient *slots[PORTA_REDIS_N_SLOTS] = { NULL, };
  g_autoptr(GPtrArray) masters = g_ptr_array_new_with_free_func (g_free);

  if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0)
    return FALSE;
  for (gsize k = 0; k < reply->elements; k++)
    {
      const redisReply *range = reply->element[k];
      const redisReply *master;
      const char *host;
      long long first, last;

      if (range->type != REDIS_REPLY_ARRAY || range->elements < 3 ||
          range->element[0]->type != REDIS_REPLY_INTEGER ||
          range->element[1]->type != REDIS_REPLY_INTEGER ||
          range->element[2]->type != REDIS_REPLY_ARRAY ||
          range->element[2]->elements < 2)
        return FALSE;
      master = range->element[2];
      first = range->element[0]->integer;
      last = range->element[1]->integer;
      if (master->element[0]->type != REDIS_REPLY_STRING ||
          master->element[1]->type != REDIS_REPLY_INTEGER ||
          first < 0 || last >= PORTA_REDIS_N_SLOTS || first > last ||
          master->element[1]->integer <= 0 || master->element[1]->integer > 65535)
        return FALSE;
      host = master->element[0]->str;
      if (host[0] == '\0' || strcmp (host, "?") == 0)
        host = porta_redis_client_get_host (asked);
      for (long long s = first; s <= last; s++)
        slots[s] = cluster_node (cluster, host, (guint16) master->element[1]->integer);
      {
        char *name = g_strdup_printf ("%s:%u", host, (guint) master->element[1]->integer);

        if (g_ptr_array_find_with_equal_func (masters, name, g_str_equal, NULL))
          g_free (name);
        else
          g_ptr_array_add (masters, name);
      }
    }
  memcpy (cluster->slots, slots, sizeof slots);
  g_ptr_array_add (masters, NULL);
  g_free (cluster->masters);
  cluster->masters = g_strjoinv (" ", (char **) masters->pdata);
  cluster->known = TRUE;
  return TRUE;
}

static void
cluster_slots_reply (PortaRedisClient *client,
                     redisReply       *reply,
                     const GError     *error,
                     gpointer          data)
{
  PortaRedisCluster *cluster = data;

  g_clear_error (&cluster->last_error);
  if (error != NULL)
    cluster->last_error = g_error_copy (error);
  else if (reply->type == REDIS_REPLY_ERROR)
    cluster->last_error = g_error_new (G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                                       _("The Redis server %s does not tell its cluster’s "
                                         "slots (is it a cluster node?): %s"),
                                       porta_redis_client_get_display_uri (client), reply->str);
  else if (!cluster_apply_slots (cluster, client, reply))
    cluster->last_error = g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                                       _("The Redis server %s answered CLUSTER SLOTS with "
                                         "something else than a slot map"),
                                       porta_redis_client_get_display_uri (client));
  else
    {
      cluster_refresh_done (cluster, NULL);
      return;
    }
  cluster_ask_next (cluster);
}

static void
cluster_ask_next (PortaRedisCluster *cluster)
{
  const char *argv[2] = { "CLUSTER", "SLOTS" };

  if (cluster->next >= cluster->candidates->len)
    {
      g_autoptr(GError) error = g_error_new (
          cluster->last_error->domain, cluster->last_error->code,
          _("No node of the Redis cluster %s tells its slots: %s"),
          cluster->display_uri, cluster->last_error->message);

      cluster_refresh_done (cluster, error);
      return;
    }
  porta_redis_client_command (g_ptr_array_index (cluster->candidates, cluster->next++),
                              2, argv, cluster_slots_reply, cluster);
}

static void
add_candidate (GPtrArray        *candidates,
               PortaRedisClient *node)
{
  if (node != NULL && !g_ptr_array_find (candidates, node, NULL))
    g_ptr_array_add (candidates, node);
}

void
porta_redis_cluster_refresh (PortaRedisCluster     *cluster,
                             PortaRedisClusterFunc  func,
                             gpointer               data)
{
  Waiting waiting = { func, data };

  g_array_append_val (cluster->waiting, waiting);
  if (cluster->refreshing)
    return;
  cluster->refreshing = TRUE;
  /* The masters of the last map first (one of them answers after a
   * failover), then the nodes the URI names. */
  cluster->candidates = g_ptr_array_new ();
  for (guint s = 0; s < PORTA_REDIS_N_SLOTS; s++)
    add_candidate (cluster->candidates, cluster->slots[s]);
  for (guint k = 0; k < cluster->seeds->len; k++)
    {
      Seed *seed = &g_array_index (cluster->seeds, Seed, k);

      add_candidate (cluster->candidates, cluster_node (cluster, seed->host, seed->port));
    }
  cluster->next = 0;
  cluster_ask_next (cluster);
}
