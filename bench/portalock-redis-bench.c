/* portalock-redis-bench.c: PortaRedisLock from C, for bench/bench_redis.py
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * bench_redis.py starts the redis-server and runs this program for the
 * figures that need a C caller: what the hand-off costs without Python
 * and PyGObject, and the floor a pushed hand-off cannot beat (one PUBLISH
 * delivered, then one round trip, by hiredis's blocking API in one
 * thread).
 *
 *   portalock-redis-bench handoff SOCKET ROUNDS [observe]
 *   portalock-redis-bench floor SOCKET ROUNDS
 *
 * handoff and floor print one JSON object of lists, in µs of
 * CLOCK_MONOTONIC, one element a round: "handoff" (holder stamps, then
 * releases; waiter blocked in acquire stamps once it holds), "release"
 * (the holder's release call returned) and, with observe, "published" (a
 * third process, a hiredis subscriber of the lock's wake-up channel, got
 * the release's wake-up).
 */

#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include <portalock/portalock.h>

#define HOLD_MS 10   /* the holder keeps the lock this long before releasing */

static double
now_us (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void
sleep_ms (int ms)
{
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

  while (nanosleep (&ts, &ts) != 0 && errno == EINTR)
    ;
}

static void
send_byte (int fd, char c)
{
  if (write (fd, &c, 1) != 1)
    _exit (3);
}

static void
expect_byte (int fd, char c)
{
  char got;

  if (read (fd, &got, 1) != 1 || got != c)
    _exit (3);
}

typedef struct
{
  double released;
  double release_done;
  double published;
  double got;
} Stamp;

static void
print_stamps (const Stamp *s, int rounds, gboolean observe)
{
  g_print ("{\"handoff\": [");
  for (int i = 0; i < rounds; i++)
    g_print ("%s%.1f", i ? ", " : "", s[i].got - s[i].released);
  g_print ("], \"release\": [");
  for (int i = 0; i < rounds; i++)
    g_print ("%s%.1f", i ? ", " : "", s[i].release_done - s[i].released);
  g_print ("], \"published\": [");
  for (int i = 0; observe && i < rounds; i++)
    g_print ("%s%.1f", i ? ", " : "", s[i].published - s[i].released);
  g_print ("]}\n");
}

static redisContext *
connect_or_die (const char *socket_path)
{
  redisContext *c = redisConnectUnix (socket_path);

  if (c == NULL || c->err)
    {
      g_printerr ("cannot connect to %s: %s\n", socket_path, c ? c->errstr : "out of memory");
      exit (1);
    }
  return c;
}

static void
command_or_die (redisContext *c, const char *format, ...)
{
  va_list ap;
  redisReply *reply;

  va_start (ap, format);
  reply = redisvCommand (c, format, ap);
  va_end (ap);
  if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
    {
      g_printerr ("redis: %s\n", reply ? reply->str : c->errstr);
      exit (1);
    }
  freeReplyObject (reply);
}

/* A hiredis subscriber of @channel that stamps each message it gets. */
static pid_t
fork_observer (const char *socket_path, const char *channel, Stamp *s, int rounds)
{
  int ready[2];
  pid_t pid;

  if (pipe (ready) != 0)
    g_error ("pipe: %s", g_strerror (errno));
  pid = fork ();
  if (pid == 0)
    {
      redisContext *c = connect_or_die (socket_path);
      redisReply *reply;

      close (ready[0]);
      command_or_die (c, "SUBSCRIBE %s", channel);
      send_byte (ready[1], 'S');
      for (int i = 0; i < rounds && redisGetReply (c, (void **) &reply) == REDIS_OK; i++)
        {
          s[i].published = now_us ();
          freeReplyObject (reply);
        }
      _exit (0);
    }
  close (ready[1]);
  expect_byte (ready[0], 'S');
  close (ready[0]);
  return pid;
}

/* The parent's end of a holder and waiter pair: it closes its copies of
 * their pipes and waits for both. */
static void
join_pair (int to_waiter[2], int to_holder[2], pid_t holder, pid_t waiter)
{
  close (to_waiter[0]);
  close (to_waiter[1]);
  close (to_holder[0]);
  close (to_holder[1]);
  if (waitpid (holder, NULL, 0) < 0 || waitpid (waiter, NULL, 0) < 0)
    g_error ("waitpid: %s", g_strerror (errno));
}

/* Rounds: the holder holds; the waiter says it is about to wait and
 * blocks in acquire; HOLD_MS later the holder stamps and releases; the
 * waiter stamps once it holds, releases and says so; the holder takes the
 * lock again (uncontended) and says so. */
static int
handoff_main (const char *socket_path, int rounds, gboolean observe)
{
  g_autofree char *uri = g_strconcat ("unix://", socket_path, NULL);
  g_autofree char *name = g_strdup_printf ("bench-c-handoff-%d", (int) getpid ());
  Stamp *s = mmap (NULL, rounds * sizeof *s, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  int to_waiter[2], to_holder[2];
  pid_t holder, waiter, observer = 0;

  if (s == MAP_FAILED || pipe (to_waiter) != 0 || pipe (to_holder) != 0)
    g_error ("setup: %s", g_strerror (errno));
  if (observe)
    {
      g_autofree char *wake = g_strdup_printf ("porta:{%s}:wake", name);

      observer = fork_observer (socket_path, wake, s, rounds);
    }

  holder = fork ();
  if (holder == 0)
    {
      g_autoptr(PortaRedisLock) lock = porta_redis_lock_new (uri, name, PORTA_LOCK_MODE_EXCLUSIVE);
      g_autoptr(GError) error = NULL;

      for (int i = 0; i < rounds; i++)
        {
          if (!porta_redis_lock_acquire (lock, -1, NULL, &error))
            g_error ("holder: %s", error->message);
          send_byte (to_waiter[1], 'H');
          expect_byte (to_holder[0], 'W');
          sleep_ms (HOLD_MS);
          s[i].released = now_us ();
          if (!porta_redis_lock_release (lock, &error))
            g_error ("holder: %s", error->message);
          s[i].release_done = now_us ();
          expect_byte (to_holder[0], 'D');
        }
      _exit (0);
    }
  waiter = fork ();
  if (waiter == 0)
    {
      g_autoptr(PortaRedisLock) lock = porta_redis_lock_new (uri, name, PORTA_LOCK_MODE_EXCLUSIVE);
      g_autoptr(GError) error = NULL;

      for (int i = 0; i < rounds; i++)
        {
          expect_byte (to_waiter[0], 'H');
          send_byte (to_holder[1], 'W');
          if (!porta_redis_lock_acquire (lock, 60000, NULL, &error))
            g_error ("waiter: %s", error->message);
          s[i].got = now_us ();
          if (!porta_redis_lock_release (lock, &error))
            g_error ("waiter: %s", error->message);
          send_byte (to_holder[1], 'D');
        }
      _exit (0);
    }
  join_pair (to_waiter, to_holder, holder, waiter);
  if (observe)
    {
      kill (observer, SIGKILL);
      waitpid (observer, NULL, 0);
    }
  print_stamps (s, rounds, observe);
  return 0;
}

/* The same rounds with hiredis's blocking API and no lock: the holder
 * PUBLISHes; the waiter, blocked reading its subscriber connection, gets
 * the message and makes one SET round trip on its command connection.
 * Every pushed hand-off has at least these steps. */
static int
floor_main (const char *socket_path, int rounds)
{
  g_autofree char *channel = g_strdup_printf ("bench-floor-%d", (int) getpid ());
  Stamp *s = mmap (NULL, rounds * sizeof *s, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  int to_waiter[2], to_holder[2];
  pid_t holder, waiter;

  if (s == MAP_FAILED || pipe (to_waiter) != 0 || pipe (to_holder) != 0)
    g_error ("setup: %s", g_strerror (errno));
  waiter = fork ();
  if (waiter == 0)
    {
      redisContext *sub = connect_or_die (socket_path);
      redisContext *cmd = connect_or_die (socket_path);
      redisReply *reply;

      command_or_die (sub, "SUBSCRIBE %s", channel);
      for (int i = 0; i < rounds; i++)
        {
          send_byte (to_holder[1], 'W');
          if (redisGetReply (sub, (void **) &reply) != REDIS_OK)
            _exit (1);
          freeReplyObject (reply);
          command_or_die (cmd, "SET %s %d", channel, i);
          s[i].got = now_us ();
          command_or_die (cmd, "DEL %s", channel);
        }
      _exit (0);
    }
  holder = fork ();
  if (holder == 0)
    {
      redisContext *c = connect_or_die (socket_path);

      for (int i = 0; i < rounds; i++)
        {
          expect_byte (to_holder[0], 'W');
          sleep_ms (HOLD_MS);
          s[i].released = now_us ();
          command_or_die (c, "PUBLISH %s go", channel);
          s[i].release_done = now_us ();
        }
      _exit (0);
    }
  join_pair (to_waiter, to_holder, holder, waiter);
  print_stamps (s, rounds, FALSE);
  return 0;
}

int
main (int argc, char **argv)
{
  if (argc >= 4 && g_str_equal (argv[1], "handoff"))
    return handoff_main (argv[2], atoi (argv[3]), argc > 4 && g_str_equal (argv[4], "observe"));
  if (argc == 4 && g_str_equal (argv[1], "floor"))
    return floor_main (argv[2], atoi (argv[3]));
  g_printerr ("usage: %s handoff SOCKET ROUNDS [observe] | floor SOCKET ROUNDS\n", argv[0]);
  return 2;
}
