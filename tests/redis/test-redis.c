/* test-redis.c: PortaRedisLock against a real redis-server
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Every test starts its own redis-server (Debian's, found in PATH) on a
 * Unix socket in a temporary folder, or on a free loopback port, and stops
 * it. The holders in other processes are this program run as
 *   test-redis --hold URI NAME MODE LEASE_MS
 *     acquires, says "held FENCE", says "lost" if the lock is lost, and
 *     releases ("released") when a line or end-of-file comes on stdin;
 *   test-redis --count URI NAME FILE N
 *     N times: acquires, adds 1 to the number in FILE, releases.
 */

#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <math.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gio/gio.h>
#include <gio/gunixinputstream.h>
#include <gio/gunixsocketaddress.h>
#include <glib/gstdio.h>

#include <portalock/portalock.h>

#include "porta-test-utils.h"

static const char *self_path;

/* ------------------------------------------------------------ the server */

typedef struct
{
  GSubprocess *proc;
  char        *dir;
  char        *sock;
  char        *uri;
  guint16      port;    /* 0: Unix socket only */
  GPtrArray   *args;    /* to start it again */
} TestServer;

static guint16
free_port (void)
{
  g_autoptr(GSocket) socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM,
                                            G_SOCKET_PROTOCOL_TCP, NULL);
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) address = g_inet_socket_address_new (loopback, 0);
  g_autoptr(GSocketAddress) bound = NULL;
  g_autoptr(GError) error = NULL;

  g_assert_nonnull (socket);
  g_socket_bind (socket, address, TRUE, &error);
  g_assert_no_error (error);
  bound = g_socket_get_local_address (socket, &error);
  g_assert_no_error (error);
  return g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
}

static gboolean
server_answers (TestServer *server)
{
  g_autoptr(GSocketClient) client = g_socket_client_new ();
  g_autoptr(GSocketAddress) address = g_unix_socket_address_new (server->sock);
  g_autoptr(GSocketConnection) connection = NULL;

  connection = g_socket_client_connect (client, G_SOCKET_CONNECTABLE (address), NULL, NULL);
  return connection != NULL;
}

/* A test that fails part-way leaves no server behind. */
static void
die_with_parent (gpointer user_data)
{
  prctl (PR_SET_PDEATHSIG, SIGTERM);
}

static void
server_launch (TestServer *server)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_SILENCE);

  g_subprocess_launcher_set_child_setup (launcher, die_with_parent, NULL, NULL);
  server->proc = g_subprocess_launcher_spawnv (launcher, (const char * const *) server->args->pdata,
                                               &error);
  g_assert_no_error (error);
  /* Bounded: 20 s at most, even on a loaded machine. */
  for (guint k = 0; k < 1000 && !server_answers (server); k++)
    {
      g_usleep (20 * 1000);
    }
  g_assert_true (server_answers (server));
}

static TestServer *
server_start_with (gboolean     tcp,
                   const char  *const *extra)
{
  TestServer *server = g_new0 (TestServer, 1);
  g_autoptr(GError) error = NULL;

  server->dir = g_dir_make_tmp ("porta-redis-XXXXXX", &error);
  g_assert_no_error (error);
  server->sock = g_build_filename (server->dir, "redis.sock", NULL);
  server->port = tcp ? free_port () : 0;
  server->args = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (server->args, g_strdup ("redis-server"));
  g_ptr_array_add (server->args, g_strdup ("--port"));
  g_ptr_array_add (server->args, g_strdup_printf ("%u", server->port));
  g_ptr_array_add (server->args, g_strdup ("--bind"));
  g_ptr_array_add (server->args, g_strdup ("127.0.0.1"));
  g_ptr_array_add (server->args, g_strdup ("--unixsocket"));
  g_ptr_array_add (server->args, g_strdup (server->sock));
  g_ptr_array_add (server->args, g_strdup ("--unixsocketperm"));
  g_ptr_array_add (server->args, g_strdup ("700"));
  g_ptr_array_add (server->args, g_strdup ("--dir"));
  g_ptr_array_add (server->args, g_strdup (server->dir));
  g_ptr_array_add (server->args, g_strdup ("--save"));
  g_ptr_array_add (server->args, g_strdup (""));
  g_ptr_array_add (server->args, g_strdup ("--appendonly"));
  g_ptr_array_add (server->args, g_strdup ("no"));
  for (guint k = 0; extra != NULL && extra[k] != NULL; k++)
    g_ptr_array_add (server->args, g_strdup (extra[k]));
  g_ptr_array_add (server->args, NULL);
  server->uri = g_strconcat ("unix://", server->sock, NULL);
  server_launch (server);
  return server;
}

static TestServer *
server_start (void)
{
  return server_start_with (FALSE, NULL);
}

static void
server_kill (TestServer *server)
{
  if (server->proc == NULL)
    return;
  g_subprocess_send_signal (server->proc, SIGTERM);
  g_subprocess_wait (server->proc, NULL, NULL);
  g_clear_object (&server->proc);
  g_unlink (server->sock);
}

static void
server_stop (TestServer *server)
{
  g_autoptr(GDir) dir = NULL;
  const char *name;

  server_kill (server);
  dir = g_dir_open (server->dir, 0, NULL);
  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = g_build_filename (server->dir, name, NULL);

      g_unlink (path);
    }
  g_rmdir (server->dir);
  g_free (server->dir);
  g_free (server->sock);
  g_free (server->uri);
  g_ptr_array_unref (server->args);
  g_free (server);
}

/* Runs redis-cli on the server's socket; returns what it printed. */
static char *
server_cli (TestServer *server,
            ...)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_autoptr(GSubprocess) proc = NULL;
  g_autoptr(GError) error = NULL;
  char *out = NULL;
  const char *arg;
  va_list ap;

  g_ptr_array_add (argv, (char *) "redis-cli");
  g_ptr_array_add (argv, (char *) "-s");
  g_ptr_array_add (argv, server->sock);
  va_start (ap, server);
  while ((arg = va_arg (ap, const char *)) != NULL)
    g_ptr_array_add (argv, (char *) arg);
  va_end (ap);
  g_ptr_array_add (argv, NULL);
  proc = g_subprocess_newv ((const char * const *) argv->pdata, G_SUBPROCESS_FLAGS_STDOUT_PIPE, &error);
  g_assert_no_error (error);
  g_subprocess_communicate_utf8 (proc, NULL, NULL, &out, NULL, &error);
  g_assert_no_error (error);
  return out;
}

/* ------------------------------------------------------------- helpers */

static PortaTestChild *
spawn_holder (const char    *uri,
              const char    *name,
              PortaLockMode  mode,
              guint          lease_ms,
              guint64       *fence)
{
  g_autofree char *mode_arg = g_strdup_printf ("%d", mode);
  g_autofree char *lease_arg = g_strdup_printf ("%u", lease_ms);
  const char *argv[] = { self_path, "--hold", uri, name, mode_arg, lease_arg, NULL };
  PortaTestChild *child = porta_test_child_spawnv (argv);
  g_autofree char *line = porta_test_child_read_line (child, 20000);

  g_assert_nonnull (line);
  g_assert_true (g_str_has_prefix (line, "held "));
  if (fence != NULL)
    *fence = g_ascii_strtoull (line + 5, NULL, 10);
  return child;
}

typedef struct
{
  GAsyncResult *result;
  gint64        done_at;
} AsyncWait;

static void
store_result (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  AsyncWait *wait = user_data;

  wait->result = g_object_ref (result);
  wait->done_at = g_get_monotonic_time ();
}

/* Iterates the thread-default context until @wait is done, bounded. */
static void
async_wait_run (AsyncWait *wait,
                guint      timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) porta_test_scale_ms (timeout_ms) * 1000;

  while (wait->result == NULL && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, FALSE) || (g_usleep (1000), TRUE);
  g_assert_nonnull (wait->result);
}

static void
on_lost (PortaRedisLock *lock,
         GError         *error,
         gpointer        user_data)
{
  GError **out = user_data;

  g_assert_false (porta_redis_lock_get_held (lock));
  g_assert_null (*out);
  *out = g_error_copy (error);
}

static void
wait_for_lost (GError **lost,
               guint    timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) porta_test_scale_ms (timeout_ms) * 1000;

  while (*lost == NULL && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, FALSE) || (g_usleep (2000), TRUE);
  g_assert_nonnull (*lost);
}

/* Whether the library's worker thread runs: it should only while a lock
 * (or a release on its way) needs a connection. */
static gboolean
worker_running (void)
{
  g_autoptr(GDir) tasks = g_dir_open ("/proc/self/task", 0, NULL);
  const char *tid;

  while (tasks != NULL && (tid = g_dir_read_name (tasks)) != NULL)
    {
      g_autofree char *path = g_build_filename ("/proc/self/task", tid, "comm", NULL);
      g_autofree char *comm = NULL;

      if (g_file_get_contents (path, &comm, NULL, NULL) && g_str_has_prefix (comm, "porta-redis"))
        return TRUE;
    }
  return FALSE;
}

/* Every lock is gone: its connections, sources and the worker thread must
 * go too, soon. */
static void
assert_worker_ends (void)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) porta_test_scale_ms (10000) * 1000;

  while (worker_running () && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, FALSE) || (g_usleep (2000), TRUE);
  g_assert_false (worker_running ());
}

/* ------------------------------------------------------------- the tests */

static void
test_invalid (void)
{
  static const char *const uris[] = {
    "http://localhost/", "redis://", "redis://host/abc", "unix://relative/path",
    "redis://user:hunter2@host:notaport/", "not a uri at all", "redis://h/0?x=1",
    "redis+cluster://", "redis+cluster://h:notaport/", "redis+cluster://h:1,/",
    "redis+cluster://u:hunter2@h:1/3", "redis+cluster://h:1/?x=1", "rediss+cluster://[::1/",
  };
  static const char *const names[] = { "", "a{b", "c}d" };

  for (guint k = 0; k < G_N_ELEMENTS (uris); k++)
    {
      g_autoptr(PortaRedisLock) lock = porta_redis_lock_new (uris[k], "n", PORTA_LOCK_MODE_EXCLUSIVE);
      g_autoptr(GError) error = NULL;

      g_assert_false (porta_redis_lock_acquire (lock, 0, NULL, &error));
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
      g_assert_null (strstr (error->message, "hunter2"));
      g_assert_false (porta_redis_lock_get_held (lock));
    }
  for (guint k = 0; k < G_N_ELEMENTS (names); k++)
    {
      g_autoptr(PortaRedisLock) lock = porta_redis_lock_new ("redis://127.0.0.1/", names[k],
                                                             PORTA_LOCK_MODE_EXCLUSIVE);
      g_autoptr(GError) error = NULL;

      g_assert_false (porta_redis_lock_try_acquire (lock, &error));
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
    }
}

static void
test_password_hidden (void)
{
  g_autoptr(PortaRedisLock) lock = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *uri = g_strdup_printf ("redis://alice:hunter2@127.0.0.1:%u/3", free_port ());
  g_autofree char *read_back = NULL;

  lock = porta_redis_lock_new (uri, "n", PORTA_LOCK_MODE_EXCLUSIVE);
  g_object_get (lock, "uri", &read_back, NULL);
  g_assert_null (strstr (read_back, "hunter2"));
  g_assert_nonnull (strstr (read_back, "alice@127.0.0.1"));
  g_assert_cmpstr (porta_redis_lock_get_uri (lock), ==, read_back);

  /* Nobody listens on that port. */
  g_assert_false (porta_redis_lock_acquire (lock, 5000, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED);
  g_assert_null (strstr (error->message, "hunter2"));
  g_assert_false (porta_redis_lock_get_held (lock));
  g_clear_object (&lock);
  assert_worker_ends ();
}

static void
test_cluster_unreachable (void)
{
  g_autofree char *uri = g_strdup_printf ("redis+cluster://alice:hunter2@127.0.0.1:%u,"
                                          "127.0.0.1:%u/", free_port (), free_port ());
  g_autoptr(PortaRedisLock) lock = porta_redis_lock_new (uri, "n", PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(GError) error = NULL;

  g_assert_null (strstr (porta_redis_lock_get_uri (lock), "hunter2"));
  g_assert_true (g_str_has_prefix (porta_redis_lock_get_uri (lock), "redis+cluster://alice@127.0.0.1:"));
  /* Nobody listens on those ports: no node tells the slot map. */
  g_assert_false (porta_redis_lock_acquire (lock, -1, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED);
  g_assert_null (strstr (error->message, "hunter2"));
  g_test_message ("%s", error->message);
  g_clear_object (&lock);
  assert_worker_ends ();
}

static void
test_unreachable_unix (void)
{
  g_autofree char *dir = g_dir_make_tmp ("porta-redis-XXXXXX", NULL);
  g_autofree char *uri = g_strdup_printf ("unix://%s/none.sock", dir);
  g_autoptr(PortaRedisLock) lock = porta_redis_lock_new (uri, "n", PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(GError) error = NULL;

  g_assert_false (porta_redis_lock_acquire (lock, -1, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED);
  g_rmdir (dir);
  g_clear_object (&lock);
  assert_worker_ends ();
}

/* A server that takes the connection and never answers (a hung server, a
 * black-holed TLS port): the timeout says so, not that someone holds it. */
static void
test_unanswered (void)
{
  g_autoptr(GSocket) socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM,
                                            G_SOCKET_PROTOCOL_TCP, NULL);
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) any = g_inet_socket_address_new (loopback, 0);
  g_autoptr(GSocketAddress) bound = NULL;
  g_autoptr(PortaRedisLock) lock = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *uri = NULL;

  g_assert_true (g_socket_bind (socket, any, TRUE, NULL));
  g_assert_true (g_socket_listen (socket, NULL));   /* never accepted */
  bound = g_socket_get_local_address (socket, NULL);
  uri = g_strdup_printf ("redis://127.0.0.1:%u",
                         g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound)));
  lock = porta_redis_lock_new (uri, "u", PORTA_LOCK_MODE_EXCLUSIVE);
  g_assert_false (porta_redis_lock_acquire (lock, 300, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "no answer"));
  g_assert_nonnull (strstr (error->message, "127.0.0.1"));
  g_assert_null (strstr (error->message, "held by"));
  g_clear_object (&lock);
  g_socket_close (socket, NULL);
  assert_worker_ends ();
}

static void
test_exclusive_processes (void)
{
  TestServer *server = server_start ();
  g_autoptr(PortaRedisLock) lock = porta_redis_lock_new (server->uri, "job", PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(PortaTestChild) child = NULL;
  g_autoptr(GError) error = NULL;
  guint64 child_fence = 0;
  gint64 start;

  child = spawn_holder (server->uri, "job", PORTA_LOCK_MODE_EXCLUSIVE, 30000, &child_fence);
  g_assert_cmpuint (child_fence, ==, 1);

  g_assert_false (porta_redis_lock_try_acquire (lock, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_clear_error (&error);

  start = g_get_monotonic_time ();
  g_assert_false (porta_redis_lock_acquire (lock, 200, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_assert_cmpint (g_get_monotonic_time () - start, >=, 200 * 1000);
  g_clear_error (&error);
  g_assert_false (porta_redis_lock_get_held (lock));

  porta_test_child_send_line (child);
  porta_test_child_expect_line (child, "released");
  g_assert_cmpint (porta_test_child_wait (child, NULL), ==, 0);

  g_assert_true (porta_redis_lock_acquire (lock, 10000, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (porta_redis_lock_get_held (lock));
  g_assert_cmpuint (porta_redis_lock_get_fencing_token (lock), >, child_fence);
  g_assert_true (PORTA_IS_LOCKABLE (lock));
  g_assert_true (porta_lockable_get_held (PORTA_LOCKABLE (lock)));

  g_assert_false (porta_redis_lock_acquire (lock, 0, NULL, &error));
  g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_ALREADY_HELD);
  g_clear_error (&error);

  g_assert_true (porta_lockable_release (PORTA_LOCKABLE (lock), &error));
  g_assert_no_error (error);
  g_assert_false (porta_redis_lock_release (lock, &error));
  g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_HELD);

  g_clear_object (&lock);
  server_stop (server);
  assert_worker_ends ();
}

static void
test_shared (void)
{
  TestServer *server = server_start ();
  g_autoptr(PortaRedisLock) s1 = porta_redis_lock_new (server->uri, "data", PORTA_LOCK_MODE_SHARED);
  g_autoptr(PortaRedisLock) s2 = porta_redis_lock_new (server->uri, "data", PORTA_LOCK_MODE_SHARED);
  g_autoptr(PortaRedisLock) x = porta_redis_lock_new (server->uri, "data", PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(PortaRedisLock) s3 = porta_redis_lock_new (server->uri, "data", PORTA_LOCK_MODE_SHARED);
  g_autoptr(GError) error = NULL;
  AsyncWait wait = { NULL, 0 };

  g_assert_true (porta_redis_lock_try_acquire (s1, &error));
  g_assert_true (porta_redis_lock_try_acquire (s2, &error));
  g_assert_no_error (error);
  g_assert_false (porta_redis_lock_try_acquire (x, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_clear_error (&error);

  /* An exclusive waiter in line keeps later shared holders out. */
  porta_redis_lock_acquire_async (x, 20000, G_PRIORITY_DEFAULT, NULL, store_result, &wait);
  for (guint k = 0; k < 50 && !g_main_context_iteration (NULL, FALSE); k++)
    g_usleep (2000);
  g_assert_false (porta_redis_lock_acquire (s3, 300, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_clear_error (&error);

  g_assert_true (porta_redis_lock_release (s1, NULL));
  g_assert_true (porta_redis_lock_release (s2, NULL));
  async_wait_run (&wait, 10000);
  g_assert_true (porta_redis_lock_acquire_finish (x, wait.result, &error));
  g_assert_no_error (error);
  g_clear_object (&wait.result);
  g_assert_false (porta_redis_lock_try_acquire (s3, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_clear_error (&error);
  g_assert_true (porta_redis_lock_release (x, NULL));
  g_assert_true (porta_redis_lock_try_acquire (s3, &error));
  g_assert_no_error (error);

  g_clear_object (&s1);
  g_clear_object (&s2);
  g_clear_object (&s3);
  g_clear_object (&x);
  server_stop (server);
  assert_worker_ends ();
}

static void
test_counting (void)
{
  TestServer *server = server_start ();
  PortaRedisLock *locks[4];
  g_autoptr(GError) error = NULL;

  for (guint k = 0; k < 4; k++)
    {
      locks[k] = porta_redis_lock_new_counting (server->uri, "slots", 3);
      g_assert_cmpuint (porta_redis_lock_get_max_holders (locks[k]), ==, 3);
      g_assert_cmpint (porta_redis_lock_get_mode (locks[k]), ==, PORTA_LOCK_MODE_SHARED);
    }
  for (guint k = 0; k < 3; k++)
    {
      g_assert_true (porta_redis_lock_try_acquire (locks[k], &error));
      g_assert_no_error (error);
    }
  g_assert_false (porta_redis_lock_try_acquire (locks[3], &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_clear_error (&error);
  g_assert_true (porta_redis_lock_release (locks[1], NULL));
  g_assert_true (porta_redis_lock_acquire (locks[3], 5000, NULL, &error));
  g_assert_no_error (error);
  g_assert_false (porta_redis_lock_try_acquire (locks[1], &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);

  for (guint k = 0; k < 4; k++)
    g_object_unref (locks[k]);
  server_stop (server);
  assert_worker_ends ();
}

static gpointer
cancel_later (gpointer data)
{
  g_usleep (200 * 1000);
  g_cancellable_cancel (data);
  return NULL;
}

static void
test_cancel (void)
{
  TestServer *server = server_start ();
  g_autoptr(PortaRedisLock) holder = porta_redis_lock_new (server->uri, "c", PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(PortaRedisLock) waiter = porta_redis_lock_new (server->uri, "c", PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(PortaRedisLock) third = porta_redis_lock_new (server->uri, "c", PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;
  GThread *thread;

  g_assert_true (porta_redis_lock_acquire (holder, 0, NULL, &error));
  thread = g_thread_new ("cancel", cancel_later, cancellable);
  g_assert_false (porta_redis_lock_acquire (waiter, -1, cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);
  g_thread_join (thread);

  /* Already cancelled: fails at once. */
  g_assert_false (porta_redis_lock_acquire (waiter, -1, cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);

  /* The cancelled waiter left the line: the next one gets the lock. */
  g_assert_true (porta_redis_lock_release (holder, NULL));
  g_assert_true (porta_redis_lock_acquire (third, 5000, NULL, &error));
  g_assert_no_error (error);
  g_assert_false (porta_redis_lock_get_held (waiter));

  g_clear_object (&holder);
  g_clear_object (&waiter);
  g_clear_object (&third);
  server_stop (server);
  assert_worker_ends ();
}

static void
test_async_handoff (void)
{
  TestServer *server = server_start ();
  g_autoptr(PortaRedisLock) waiter = porta_redis_lock_new (server->uri, "h", PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(PortaTestChild) child = NULL;
  g_autoptr(GError) error = NULL;
  AsyncWait wait = { NULL, 0 };
  gint64 released_at;

  child = spawn_holder (server->uri, "h", PORTA_LOCK_MODE_EXCLUSIVE, 30000, NULL);
  porta_lockable_acquire_async (PORTA_LOCKABLE (waiter), -1, G_PRIORITY_DEFAULT, NULL,
                                store_result, &wait);
  /* Let it subscribe and queue. */
  for (guint k = 0; k < 100; k++)
    g_main_context_iteration (NULL, FALSE) || (g_usleep (2000), TRUE);
  g_assert_null (wait.result);

  porta_test_child_send_line (child);
  porta_test_child_expect_line (child, "released");
  released_at = g_get_monotonic_time ();
  async_wait_run (&wait, 10000);
  g_assert_true (porta_lockable_acquire_finish (PORTA_LOCKABLE (waiter), wait.result, &error));
  g_assert_no_error (error);
  g_test_message ("hand-off seen %" G_GINT64_FORMAT " us after the holder said it released",
                  wait.done_at - released_at);
  /* Pushed, not polled: far under any polling period, even loaded. */
  g_assert_cmpint (wait.done_at - released_at, <, 2 * G_USEC_PER_SEC);
  g_clear_object (&wait.result);
  g_assert_cmpint (porta_test_child_wait (child, NULL), ==, 0);
  g_assert_true (porta_redis_lock_release (waiter, NULL));

  g_clear_object (&waiter);
  server_stop (server);
  assert_worker_ends ();
}

static void
test_sigkill (void)
{
  TestServer *server = server_start ();
  g_autoptr(PortaRedisLock) lock = porta_redis_lock_new (server->uri, "k", PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(PortaTestChild) child = NULL;
  g_autoptr(GError) error = NULL;
  gint64 start;

  /* A long lease: only the holder's death can free the lock in time. */
  child = spawn_holder (server->uri, "k", PORTA_LOCK_MODE_EXCLUSIVE, 60000, NULL);
  g_assert_false (porta_redis_lock_try_acquire (lock, &error));
  g_clear_error (&error);
  g_subprocess_send_signal (child->proc, SIGKILL);
  start = g_get_monotonic_time ();
  g_assert_true (porta_redis_lock_acquire (lock, 20000, NULL, &error));
  g_assert_no_error (error);
  g_test_message ("taken %" G_GINT64_FORMAT " us after SIGKILL", g_get_monotonic_time () - start);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 10 * G_USEC_PER_SEC);
  g_subprocess_wait (child->proc, NULL, NULL);

  g_clear_object (&lock);
  server_stop (server);
  assert_worker_ends ();
}

static void
test_sigstop (void)
{
  TestServer *server = server_start ();
  g_autoptr(PortaRedisLock) lock = porta_redis_lock_new (server->uri, "s", PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(PortaTestChild) child = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *line = NULL;
  guint64 child_fence = 0;

  child = spawn_holder (server->uri, "s", PORTA_LOCK_MODE_EXCLUSIVE, 600, &child_fence);
  g_subprocess_send_signal (child->proc, SIGSTOP);
  /* Its connections stay open: only the lease frees the lock. */
  g_assert_true (porta_redis_lock_acquire (lock, 30000, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (porta_redis_lock_get_fencing_token (lock), >, child_fence);

  g_subprocess_send_signal (child->proc, SIGCONT);
  line = porta_test_child_read_line (child, 20000);
  g_assert_nonnull (line);
  g_assert_true (g_str_has_prefix (line, "lost "));
  g_assert_true (porta_redis_lock_get_held (lock));
  porta_test_child_send_line (child);
  g_assert_cmpint (porta_test_child_wait (child, NULL), ==, 0);
  g_assert_true (porta_redis_lock_release (lock, &error));
  g_assert_no_error (error);

  g_clear_object (&lock);
  server_stop (server);
  assert_worker_ends ();
}

static void
test_client_kill (void)
{
  TestServer *server = server_start ();
  g_autoptr(PortaRedisLock) lock = porta_redis_lock_new (server->uri, "ck", PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(PortaRedisLock) other = porta_redis_lock_new (server->uri, "ck", PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) lost = NULL;
  g_autofree char *out = NULL;
  guint64 fence;

  g_signal_connect (lock, "lost", G_CALLBACK (on_lost), &lost);
  g_assert_true (porta_redis_lock_acquire (lock, 0, NULL, &error));
  fence = porta_redis_lock_get_fencing_token (lock);
  out = server_cli (server, "CLIENT", "KILL", "TYPE", "pubsub", NULL);
  wait_for_lost (&lost, 10000);
  g_test_message ("lost: %s", lost->message);
  g_assert_false (porta_redis_lock_get_held (lock));
  g_assert_false (porta_redis_lock_release (lock, &error));
  g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_HELD);
  g_clear_error (&error);

  /* Whoever comes next may take it; this process too, on a new
   * connection, with a new token. */
  g_assert_true (porta_redis_lock_acquire (other, 10000, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (porta_redis_lock_get_fencing_token (other), >, fence);
  g_assert_true (porta_redis_lock_release (other, NULL));

  g_clear_object (&lock);
  g_clear_object (&other);
  server_stop (server);
  assert_worker_ends ();
}

static void
test_restart (void)
{
  TestServer *server = server_start ();
  g_autoptr(PortaRedisLock) lock = porta_redis_lock_new (server->uri, "r", PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) lost = NULL;

  g_signal_connect (lock, "lost", G_CALLBACK (on_lost), &lost);
  g_assert_true (porta_redis_lock_acquire (lock, 0, NULL, &error));
  server_kill (server);
  wait_for_lost (&lost, 10000);
  g_assert_false (porta_redis_lock_get_held (lock));

  server_launch (server);
  g_assert_true (porta_redis_lock_acquire (lock, 10000, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (porta_redis_lock_release (lock, &error));
  g_assert_no_error (error);

  g_clear_object (&lock);
  server_stop (server);
  assert_worker_ends ();
}

static void
test_acl (void)
{
  /* On TCP, where a URI carries a user and a password. */
  TestServer *server = server_start_with (TRUE, NULL);
  g_autofree char *out = NULL;
  g_autofree char *good = NULL, *bad = NULL, *limited = NULL;
  g_autoptr(GError) error = NULL;
  PortaRedisLock *lock;

  out = server_cli (server, "ACL", "SETUSER", "locker", "on", ">s3cret-pw", "~porta:*",
                    "&*", "+@all", NULL);
  g_assert_cmpstr (g_strstrip (out), ==, "OK");
  g_free (out);
  out = server_cli (server, "ACL", "SETUSER", "noscript", "on", ">s3cret-pw", "~*", "&*",
                    "+@all", "-evalsha", "-eval", NULL);
  g_assert_cmpstr (g_strstrip (out), ==, "OK");
  good = g_strdup_printf ("redis://locker:s3cret-pw@127.0.0.1:%u/0", server->port);
  bad = g_strdup_printf ("redis://locker:wrong-pw@127.0.0.1:%u/0", server->port);
  limited = g_strdup_printf ("redis://noscript:s3cret-pw@127.0.0.1:%u/0", server->port);

  lock = porta_redis_lock_new (good, "acl", PORTA_LOCK_MODE_EXCLUSIVE);
  g_assert_true (porta_redis_lock_acquire (lock, 5000, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (porta_redis_lock_release (lock, &error));
  g_assert_no_error (error);
  g_object_unref (lock);

  lock = porta_redis_lock_new (bad, "acl", PORTA_LOCK_MODE_EXCLUSIVE);
  g_assert_false (porta_redis_lock_acquire (lock, 5000, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
  g_assert_null (strstr (error->message, "wrong-pw"));
  g_test_message ("%s", error->message);
  g_clear_error (&error);
  g_object_unref (lock);

  lock = porta_redis_lock_new (limited, "acl", PORTA_LOCK_MODE_EXCLUSIVE);
  g_assert_false (porta_redis_lock_acquire (lock, 5000, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
  g_assert_nonnull (strstr (error->message, "evalsha"));
  g_assert_null (strstr (error->message, "s3cret-pw"));
  g_test_message ("%s", error->message);
  g_clear_error (&error);
  g_object_unref (lock);

  server_stop (server);
  assert_worker_ends ();
}

/* A CA and a server certificate for 127.0.0.1 signed by it, made with
 * openssl in @dir. */
static void
make_certificates (const char *dir)
{
  g_autofree char *script = g_strdup_printf (
    "set -e; cd '%s';"
    "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2"
    " -subj '/CN=portalock test CA' 2>/dev/null;"
    "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr"
    " -subj '/CN=127.0.0.1' 2>/dev/null;"
    "printf 'subjectAltName=IP:127.0.0.1\n' > san.ext;"
    "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial"
    " -out server.crt -days 2 -extfile san.ext 2>/dev/null", dir);
  const char *argv[] = { "sh", "-c", script, NULL };

  g_assert_cmpint (porta_test_run (argv, NULL), ==, 0);
}

static void test_tls_run (void);

/* The TLS test runs in a subprocess of its own, with LeakSanitizer off
 * there (AddressSanitizer still on): LSan's tracer crashes at exit on the
 * dynamic thread-local storage that GnuTLS leaves in GLib's task threads,
 * whatever the test does. The variable changes nothing in other builds. */
static void
test_tls (void)
{
  if (g_test_subprocess ())
    {
      test_tls_run ();
      return;
    }
  {
    const char *asan = g_getenv ("ASAN_OPTIONS");
    g_autofree char *options = g_strconcat (asan != NULL ? asan : "",
                                            asan != NULL ? ":" : "", "detect_leaks=0", NULL);

    g_setenv ("ASAN_OPTIONS", options, TRUE);
  }
  g_test_trap_subprocess (NULL, (guint64) porta_test_scale_ms (120000) * 1000,
                          G_TEST_SUBPROCESS_INHERIT_STDERR);
  g_test_trap_assert_passed ();
}

static void
test_tls_run (void)
{
  g_autofree char *dir = g_dir_make_tmp ("porta-redis-tls-XXXXXX", NULL);
  g_autofree char *ca = g_build_filename (dir, "ca.crt", NULL);
  g_autofree char *cert = g_build_filename (dir, "server.crt", NULL);
  g_autofree char *key = g_build_filename (dir, "server.key", NULL);
  g_autofree char *port = NULL;
  g_autofree char *uri = NULL;
  g_autoptr(GTlsDatabase) database = NULL;
  g_autoptr(GError) error = NULL;
  const char *names[] = { "ca.crt", "ca.key", "ca.srl", "server.crt", "server.key",
                          "server.csr", "san.ext" };
  TestServer *server;
  PortaRedisLock *lock;

  make_certificates (dir);
  port = g_strdup_printf ("%u", free_port ());
  {
    const char *const extra[] = { "--tls-port", port, "--tls-cert-file", cert,
                                  "--tls-key-file", key, "--tls-ca-cert-file", ca,
                                  "--tls-auth-clients", "no", NULL };

    server = server_start_with (FALSE, extra);
  }
  uri = g_strdup_printf ("rediss://127.0.0.1:%s", port);

  /* Signed by a CA the system does not know: refused. */
  lock = porta_redis_lock_new (uri, "tls", PORTA_LOCK_MODE_EXCLUSIVE);
  g_assert_false (porta_redis_lock_acquire (lock, 10000, NULL, &error));
  g_assert_error (error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE);
  g_test_message ("%s", error->message);
  g_assert_false (porta_redis_lock_get_held (lock));
  g_clear_error (&error);
  g_object_unref (lock);

  /* With the CA: accepted. */
  database = g_tls_file_database_new (ca, &error);
  g_assert_no_error (error);
  lock = porta_redis_lock_new (uri, "tls", PORTA_LOCK_MODE_EXCLUSIVE);
  porta_redis_lock_set_tls_database (lock, database);
  g_assert_true (porta_redis_lock_get_tls_database (lock) == database);
  g_assert_true (porta_redis_lock_acquire (lock, 10000, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (porta_redis_lock_release (lock, &error));
  g_assert_no_error (error);
  g_object_unref (lock);

  server_stop (server);
  for (guint k = 0; k < G_N_ELEMENTS (names); k++)
    {
      g_autofree char *path = g_build_filename (dir, names[k], NULL);

      g_unlink (path);
    }
  g_rmdir (dir);
  assert_worker_ends ();
}

static void
test_counter (void)
{
  TestServer *server = server_start ();
  g_autofree char *file = g_build_filename (server->dir, "counter", NULL);
  g_autofree char *contents = NULL;
  PortaTestChild *children[8];
  const guint n_children = 8, n_increments = 200;
  g_autofree char *n_arg = g_strdup_printf ("%u", n_increments);

  g_assert_true (g_file_set_contents (file, "0", -1, NULL));
  for (guint k = 0; k < n_children; k++)
    {
      const char *argv[] = { self_path, "--count", server->uri, "counter", file, n_arg, NULL };

      children[k] = porta_test_child_spawnv (argv);
      g_output_stream_close (children[k]->in, NULL, NULL);
    }
  /* 1,600 hand-offs between 8 processes take a few seconds here, and
   * much longer on a loaded machine or under valgrind: wait generously
   * before porta_test_child_wait()'s own bound. */
  for (guint k = 0; k < n_children; k++)
    {
      AsyncWait wait = { NULL, 0 };

      g_subprocess_wait_async (children[k]->proc, NULL, store_result, &wait);
      async_wait_run (&wait, 120000);
      g_clear_object (&wait.result);
      g_assert_cmpint (porta_test_child_wait (children[k], NULL), ==, 0);
      porta_test_child_free (children[k]);
    }
  g_assert_true (g_file_get_contents (file, &contents, NULL, NULL));
  g_assert_cmpuint (g_ascii_strtoull (contents, NULL, 10), ==, n_children * n_increments);

  server_stop (server);
  assert_worker_ends ();
}

/* ------------------------------------------------------------ a cluster */

/* A Redis Cluster of 3 masters and 3 replicas, run by redis_cluster.py
 * --serve, which stops every node when its stdin closes. LD_PRELOAD (the
 * TSan wrapper's) is not for a Python interpreter. */
static PortaTestChild *
cluster_start (char **uri)
{
  const char *argv[] = { "env", "-u", "LD_PRELOAD", "python3", REDIS_CLUSTER_PY, "--serve", NULL };
  PortaTestChild *helper = porta_test_child_spawnv (argv);
  g_autofree char *line = porta_test_child_read_line (helper, 120000);

  g_assert_nonnull (line);
  g_assert_true (g_str_has_prefix (line, "uri "));
  *uri = g_strdup (line + 4);
  return helper;
}

/* Sends @command to the cluster's helper and returns its answer. */
static char *
cluster_ask (PortaTestChild *helper,
             const char     *command)
{
  g_autofree char *line = g_strconcat (command, "\n", NULL);
  g_autoptr(GError) error = NULL;
  char *answer;

  g_output_stream_write_all (helper->in, line, strlen (line), NULL, NULL, &error);
  g_assert_no_error (error);
  g_output_stream_flush (helper->in, NULL, &error);
  g_assert_no_error (error);
  answer = porta_test_child_read_line (helper, 60000);
  g_assert_nonnull (answer);
  return answer;
}

/* A lock on each master: each taken and given back, and taken again with
 * a greater token. */
static void
cluster_check_masters (PortaTestChild *helper,
                       const char     *uri)
{
  g_autofree char *answer = cluster_ask (helper, "names c");
  g_auto(GStrv) names = g_strsplit (answer, " ", -1);

  g_assert_cmpstr (names[0], ==, "names");
  g_assert_cmpuint (g_strv_length (names), ==, 4);
  for (guint k = 1; names[k] != NULL; k++)
    {
      g_autoptr(PortaRedisLock) a = porta_redis_lock_new (uri, names[k], PORTA_LOCK_MODE_EXCLUSIVE);
      g_autoptr(PortaRedisLock) b = porta_redis_lock_new (uri, names[k], PORTA_LOCK_MODE_EXCLUSIVE);
      g_autoptr(GError) error = NULL;
      AsyncWait wait = { NULL, 0 };

      g_assert_true (porta_redis_lock_acquire (a, porta_test_scale_ms (20000), NULL, &error));
      g_assert_no_error (error);
      g_assert_false (porta_redis_lock_try_acquire (b, &error));
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
      g_clear_error (&error);
      porta_redis_lock_acquire_async (b, -1, G_PRIORITY_DEFAULT, NULL, store_result, &wait);
      for (guint n = 0; n < 100; n++)
        g_main_context_iteration (NULL, FALSE) || (g_usleep (2000), TRUE);
      g_assert_null (wait.result);
      g_assert_true (porta_redis_lock_release (a, NULL));
      async_wait_run (&wait, 20000);
      g_assert_true (porta_redis_lock_acquire_finish (b, wait.result, &error));
      g_assert_no_error (error);
      g_clear_object (&wait.result);
      g_assert_cmpuint (porta_redis_lock_get_fencing_token (b), >,
                        porta_redis_lock_get_fencing_token (a));
      g_assert_true (porta_redis_lock_release (b, NULL));
    }
}

/* The lock @name is held by one lock and waited on by another while the
 * helper does @command (kills its master, or moves its slot) and says
 * @done: the holder is told it lost the lock, and the waiter gets it with
 * a greater token. */
static void
cluster_check_held_through (PortaTestChild *helper,
                            const char     *uri,
                            const char     *name,
                            const char     *command,
                            const char     *done,
                            guint           lease_ms)
{
  g_autoptr(PortaRedisLock) holder = porta_redis_lock_new (uri, name, PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(PortaRedisLock) waiter = porta_redis_lock_new (uri, name, PORTA_LOCK_MODE_EXCLUSIVE);
  g_autofree char *line = g_strdup_printf ("%s %s", command, name);
  g_autofree char *answer = NULL;
  g_autoptr(GError) lost = NULL;
  g_autoptr(GError) error = NULL;
  AsyncWait wait = { NULL, 0 };

  porta_redis_lock_set_lease_ms (holder, lease_ms);
  g_signal_connect (holder, "lost", G_CALLBACK (on_lost), &lost);
  g_assert_true (porta_redis_lock_acquire (holder, porta_test_scale_ms (20000), NULL, &error));
  g_assert_no_error (error);
  porta_redis_lock_acquire_async (waiter, porta_test_scale_ms (60000), G_PRIORITY_DEFAULT, NULL,
                                  store_result, &wait);
  for (guint n = 0; n < 100; n++)
    g_main_context_iteration (NULL, FALSE) || (g_usleep (2000), TRUE);
  g_assert_null (wait.result);

  answer = cluster_ask (helper, line);
  g_assert_cmpstr (answer, ==, done);
  async_wait_run (&wait, 60000);
  g_assert_true (porta_redis_lock_acquire_finish (waiter, wait.result, &error));
  g_assert_no_error (error);
  g_clear_object (&wait.result);
  wait_for_lost (&lost, 10000 + lease_ms);
  g_test_message ("%s: %s", command, lost->message);
  g_assert_false (porta_redis_lock_get_held (holder));
  g_assert_cmpuint (porta_redis_lock_get_fencing_token (waiter), >,
                    porta_redis_lock_get_fencing_token (holder));
  g_assert_true (porta_redis_lock_release (waiter, NULL));
  g_signal_handlers_disconnect_by_data (holder, &lost);
}

static void
test_cluster (void)
{
  g_autofree char *uri = NULL;
  g_autoptr(PortaTestChild) helper = cluster_start (&uri);

  cluster_check_masters (helper, uri);
  cluster_check_held_through (helper, uri, "moving", "move", "moved", 3000);
  cluster_check_held_through (helper, uri, "failing", "kill", "killed", 30000);
  g_output_stream_close (helper->in, NULL, NULL);
  g_assert_cmpint (porta_test_child_wait (helper, NULL), ==, 0);
  assert_worker_ends ();
}

/* ----------------------------------------------------- the helper sides */

/* Python portalocker's RedisLock holds channel N while it has a subscriber
 * there: redis-cli subscribed to it plays portalocker here (the Python
 * suite runs the real one). */
static PortaTestChild *
spawn_subscriber (TestServer *server,
                  const char *channel)
{
  const char *argv[] = { "redis-cli", "-s", server->sock, "SUBSCRIBE", channel, NULL };
  PortaTestChild *child = porta_test_child_spawnv (argv);

  porta_test_child_expect_line (child, "subscribe");
  porta_test_child_expect_line (child, channel);
  porta_test_child_expect_line (child, "1");
  return child;
}

static char *
portalocker_client_id (TestServer *server,
                       const char *name)
{
  g_autofree char *list = server_cli (server, "CLIENT", "LIST", "TYPE", "pubsub", NULL);
  g_autofree char *needle = g_strdup_printf (" name=%s ", name);
  g_auto(GStrv) lines = g_strsplit (list, "\n", -1);

  for (guint k = 0; lines[k] != NULL; k++)
    if (strstr (lines[k], needle) != NULL && g_str_has_prefix (lines[k], "id="))
      return g_strndup (lines[k] + 3, strcspn (lines[k] + 3, " "));
  return NULL;
}

static void
test_portalocker (void)
{
  TestServer *server = server_start ();
  g_autoptr(PortaRedisLock) first = porta_redis_lock_new (server->uri, "pl", PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(PortaRedisLock) second = porta_redis_lock_new (server->uri, "pl", PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(PortaTestChild) other = NULL;
  g_autoptr(PortaTestChild) pinger = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) lost = NULL;
  g_autofree char *id = NULL;
  g_autofree char *out = NULL;
  g_autofree char *answer = NULL;
  AsyncWait wait = { NULL, 0 };
  guint64 fence;

  porta_redis_lock_set_protocol (first, PORTA_REDIS_PROTOCOL_PORTALOCKER);
  porta_redis_lock_set_protocol (second, PORTA_REDIS_PROTOCOL_PORTALOCKER);
  g_assert_cmpint (porta_redis_lock_get_protocol (first), ==, PORTA_REDIS_PROTOCOL_PORTALOCKER);

  /* portalocker holds it: a try fails, a wait polls until it lets go. */
  other = spawn_subscriber (server, "pl");
  g_assert_false (porta_redis_lock_acquire (first, 0, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_clear_error (&error);
  porta_lockable_acquire_async (PORTA_LOCKABLE (first), -1, G_PRIORITY_DEFAULT, NULL,
                                store_result, &wait);
  for (guint k = 0; k < 100; k++)
    g_main_context_iteration (NULL, FALSE) || (g_usleep (2000), TRUE);
  g_assert_null (wait.result);
  g_subprocess_send_signal (other->proc, SIGTERM);
  g_clear_pointer (&other, porta_test_child_free);
  async_wait_run (&wait, 10000);
  g_assert_true (porta_lockable_acquire_finish (PORTA_LOCKABLE (first), wait.result, &error));
  g_assert_no_error (error);
  g_clear_object (&wait.result);
  fence = porta_redis_lock_get_fencing_token (first);

  /* Held: it answers portalocker's ping on the channel the ping names. */
  pinger = spawn_subscriber (server, "pl-resp");
  out = server_cli (server, "PUBLISH", "pl",
                    "{\"response_channel\": \"pl-\\u0072esp\", \"message\": \"ping\"}", NULL);
  porta_test_child_expect_line (pinger, "message");
  porta_test_child_expect_line (pinger, "pl-resp");
  answer = porta_test_child_read_line (pinger, 10000);
  g_assert_nonnull (answer);
  g_assert_cmpfloat (fabs (g_ascii_strtod (answer, NULL) - g_get_real_time () / 1e6), <, 60);
  g_subprocess_send_signal (pinger->proc, SIGTERM);

  /* A second one waits on portalock's own lock, and takes both when the
   * first lets go. */
  porta_lockable_acquire_async (PORTA_LOCKABLE (second), -1, G_PRIORITY_DEFAULT, NULL,
                                store_result, &wait);
  for (guint k = 0; k < 50; k++)
    g_main_context_iteration (NULL, FALSE) || (g_usleep (2000), TRUE);
  g_assert_null (wait.result);
  g_assert_true (porta_redis_lock_release (first, &error));
  g_assert_no_error (error);
  async_wait_run (&wait, 10000);
  g_assert_true (porta_lockable_acquire_finish (PORTA_LOCKABLE (second), wait.result, &error));
  g_assert_no_error (error);
  g_clear_object (&wait.result);
  g_assert_cmpuint (porta_redis_lock_get_fencing_token (second), >, fence);

  /* A portalocker waiter kills a holder that does not answer: lost, and
   * portalock's own lock is given back at once. */
  g_signal_connect (second, "lost", G_CALLBACK (on_lost), &lost);
  id = portalocker_client_id (server, "pl-lock");
  g_assert_nonnull (id);
  g_free (out);
  out = server_cli (server, "CLIENT", "KILL", "ID", id, NULL);
  wait_for_lost (&lost, 10000);
  g_assert_error (lost, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED);
  g_assert_nonnull (strstr (lost->message, "portalocker"));
  g_assert_true (porta_redis_lock_acquire (first, 10000, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (porta_redis_lock_release (first, NULL));

  /* Shared locks do not exist in portalocker's protocol. */
  g_clear_object (&second);
  second = porta_redis_lock_new_counting (server->uri, "pl", 2);
  porta_redis_lock_set_protocol (second, PORTA_REDIS_PROTOCOL_PORTALOCKER);
  g_assert_false (porta_redis_lock_acquire (second, 0, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);

  g_clear_object (&first);
  g_clear_object (&second);
  g_clear_pointer (&pinger, porta_test_child_free);
  server_stop (server);
  assert_worker_ends ();
}

typedef struct
{
  PortaRedisLock *lock;
  GMainLoop      *loop;
  GError         *error;
} InLoop;

static gboolean
acquire_in_loop (gpointer data)
{
  InLoop *in = data;

  porta_redis_lock_acquire (in->lock, 0, NULL, &in->error);
  g_main_loop_quit (in->loop);
  return G_SOURCE_REMOVE;
}

/* A lock taken by an application that runs its main context is renewed
 * only while that context runs: a main loop that hangs for a whole lease
 * loses it. One taken outside any main loop (a script) is renewed by the
 * worker alone and survives the same pause. */
static void
test_hung_main_loop (void)
{
  TestServer *server = server_start ();
  g_autoptr(PortaRedisLock) app = porta_redis_lock_new (server->uri, "hung", PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(PortaRedisLock) script = porta_redis_lock_new (server->uri, "busy", PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(PortaRedisLock) other = porta_redis_lock_new (server->uri, "hung", PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(PortaRedisLock) busy_other = porta_redis_lock_new (server->uri, "busy", PORTA_LOCK_MODE_EXCLUSIVE);
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) lost = NULL;
  g_autoptr(GError) script_lost = NULL;
  guint lease_ms = porta_test_scale_ms (400);
  InLoop in = { app, loop, NULL };

  porta_redis_lock_set_lease_ms (app, lease_ms);
  porta_redis_lock_set_lease_ms (script, lease_ms);
  g_signal_connect (app, "lost", G_CALLBACK (on_lost), &lost);
  g_signal_connect (script, "lost", G_CALLBACK (on_lost), &script_lost);
  g_idle_add (acquire_in_loop, &in);
  g_main_loop_run (loop);
  g_assert_no_error (in.error);
  g_assert_true (porta_redis_lock_get_held (app));
  g_assert_true (porta_redis_lock_acquire (script, 0, NULL, &error));
  g_assert_no_error (error);

  /* Both hang for three leases without running the main context. */
  g_usleep (3 * lease_ms * 1000);
  g_assert_true (porta_redis_lock_acquire (other, (int) porta_test_scale_ms (10000), NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (porta_redis_lock_get_fencing_token (other), >,
                    porta_redis_lock_get_fencing_token (app));
  g_assert_false (porta_redis_lock_acquire (busy_other, 0, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_clear_error (&error);

  /* The application's loop runs again: it learns it lost the lock. */
  wait_for_lost (&lost, 10000);
  g_assert_error (lost, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_assert_null (script_lost);
  g_assert_true (porta_redis_lock_get_held (script));
  g_assert_true (porta_redis_lock_release (script, NULL));
  g_assert_true (porta_redis_lock_release (other, NULL));

  g_clear_object (&app);
  g_clear_object (&script);
  g_clear_object (&other);
  g_clear_object (&busy_other);
  server_stop (server);
  assert_worker_ends ();
}

static void
holder_lost (PortaRedisLock *lock,
             GError         *error,
             gpointer        user_data)
{
  g_print ("lost %s\n", error->message);
  fflush (stdout);
}

static void
holder_line (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  gboolean *done = user_data;

  g_free (g_data_input_stream_read_line_finish (G_DATA_INPUT_STREAM (source), result, NULL, NULL));
  *done = TRUE;
}

static int
run_holder (char **argv)
{
  g_autoptr(PortaRedisLock) lock = porta_redis_lock_new (argv[0], argv[1], atoi (argv[2]));
  g_autoptr(GError) error = NULL;
  g_autoptr(GInputStream) in = g_unix_input_stream_new (0, FALSE);
  g_autoptr(GDataInputStream) lines = g_data_input_stream_new (in);
  gboolean done = FALSE;

  porta_redis_lock_set_lease_ms (lock, (guint) atoi (argv[3]));
  g_signal_connect (lock, "lost", G_CALLBACK (holder_lost), NULL);
  if (!porta_redis_lock_acquire (lock, -1, NULL, &error))
    {
      g_printerr ("%s\n", error->message);
      return 1;
    }
  g_print ("held %" G_GUINT64_FORMAT "\n", porta_redis_lock_get_fencing_token (lock));
  fflush (stdout);
  g_data_input_stream_read_line_async (lines, G_PRIORITY_DEFAULT, NULL, holder_line, &done);
  while (!done)
    g_main_context_iteration (NULL, TRUE);
  if (porta_redis_lock_get_held (lock))
    {
      if (!porta_redis_lock_release (lock, &error))
        {
          g_printerr ("%s\n", error->message);
          return 1;
        }
      g_print ("released\n");
    }
  g_clear_object (&lock);
  assert_worker_ends ();
  return 0;
}

static int
run_counter (char **argv)
{
  g_autoptr(PortaRedisLock) lock = porta_redis_lock_new (argv[0], argv[1], PORTA_LOCK_MODE_EXCLUSIVE);
  guint n = (guint) atoi (argv[3]);

  for (guint k = 0; k < n; k++)
    {
      g_autoptr(GError) error = NULL;
      g_autofree char *contents = NULL;
      g_autofree char *next = NULL;

      if (!porta_redis_lock_acquire (lock, 60000, NULL, &error) ||
          !g_file_get_contents (argv[2], &contents, NULL, &error))
        {
          g_printerr ("%s\n", error->message);
          return 1;
        }
      next = g_strdup_printf ("%" G_GUINT64_FORMAT, g_ascii_strtoull (contents, NULL, 10) + 1);
      if (!g_file_set_contents (argv[2], next, -1, &error) ||
          !porta_redis_lock_release (lock, &error))
        {
          g_printerr ("%s\n", error->message);
          return 1;
        }
    }
  g_clear_object (&lock);
  assert_worker_ends ();
  return 0;
}

int
main (int    argc,
      char **argv)
{
  self_path = argv[0];
  if (argc == 6 && strcmp (argv[1], "--hold") == 0)
    return run_holder (argv + 2);
  if (argc == 6 && strcmp (argv[1], "--count") == 0)
    return run_counter (argv + 2);

  porta_test_init (&argc, &argv);
  g_test_add_func ("/redis/uri/invalid", test_invalid);
  g_test_add_func ("/redis/uri/password-hidden", test_password_hidden);
  g_test_add_func ("/redis/unreachable/unix", test_unreachable_unix);
  g_test_add_func ("/redis/unreachable/unanswered", test_unanswered);
  g_test_add_func ("/redis/exclusive/processes", test_exclusive_processes);
  g_test_add_func ("/redis/shared", test_shared);
  g_test_add_func ("/redis/counting", test_counting);
  g_test_add_func ("/redis/cancel", test_cancel);
  g_test_add_func ("/redis/async/hand-off", test_async_handoff);
  g_test_add_func ("/redis/holder/sigkill", test_sigkill);
  g_test_add_func ("/redis/holder/sigstop", test_sigstop);
  g_test_add_func ("/redis/holder/hung-main-loop", test_hung_main_loop);
  g_test_add_func ("/redis/lost/client-kill", test_client_kill);
  g_test_add_func ("/redis/lost/restart", test_restart);
  g_test_add_func ("/redis/acl", test_acl);
  g_test_add_func ("/redis/counter", test_counter);
  g_test_add_func ("/redis/tls", test_tls);
  g_test_add_func ("/redis/portalocker", test_portalocker);
  g_test_add_func ("/redis/cluster/unreachable", test_cluster_unreachable);
  g_test_add_func ("/redis/cluster/failover", test_cluster);
  return g_test_run ();
}
