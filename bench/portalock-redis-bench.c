/* portalock-redis-bench.c: PortaRedisLock from C, for bench/bench_redis.py
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * bench_redis.py starts the redis-server and runs this program for the
 * figures that need a C caller: what the hand-off costs without Python
 * and PyGObject, the floor a pushed hand-off cannot beat (one PUBLISH
 * delivered, then one round trip, by hiredis's blocking API in one thread),
 * and a C worker of the 100-process contention figure.
 *
 *   portalock-redis-bench handoff SOCKET ROUNDS [observe]
 *   portalock-redis-bench floor SOCKET ROUNDS
 *   portalock-redis-bench contend SOCKET NAME COUNTER_FILE SECONDS MAX
 *
 * handoff and floor print one JSON object of lists, in µs of
 * CLOCK_MONOTONIC, one element a round: "handoff" (holder stamps, then
 * releases; waiter blocked in acquire stamps once it holds), "release"
 * (the holder's release call returned) and, with observe, "published" (a
 * third process, a hiredis subscriber of the lock's wake-up channel, got
 * the release's wake-up). contend waits for a byte on stdin after saying
 * "ready", then acquires and releases until SECONDS have passed or MAX
 * acquisitions, incrementing the number in COUNTER_FILE under the lock,
 * and prints how many it made, when its last release ended and the CPU
 * time it used from the start on (all its threads).
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
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

/* Adds one to the number in @path, as the Python contenders do: read,
 * rewrite in place (no fsync, no rename). */
static gboolean
increment_counter (const char *path)
{
  char text[32] = { 0 };
  int fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ssize_t n;
  int len;

  if (fd < 0)
    return FALSE;
  n = read (fd, text, sizeof text - 1);
  len = g_snprintf (text, sizeof text, "%" G_GINT64_FORMAT,
                    (n > 0 ? g_ascii_strtoll (text, NULL, 10) : 0) + 1);
  if (n < 0 || lseek (fd, 0, SEEK_SET) != 0 || ftruncate (fd, 0) != 0 ||
      write (fd, text, len) != len)
    {
      close (fd);
      return FALSE;
    }
  return close (fd) == 0;
}

/* CPU time of the process, all its threads. */
static double
cpu_seconds (void)
{
  struct rusage usage;

  getrusage (RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 +
         usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
}

static int
contend_main (const char *socket_path, const char *name, const char *counter,
              double seconds, int max)
{
  g_autofree char *uri = g_strconcat ("unix://", socket_path, NULL);
  g_autoptr(PortaRedisLock) lock = porta_redis_lock_new (uri, name, PORTA_LOCK_MODE_EXCLUSIVE);
  double deadline, last = 0, cpu_start;
  int n = 0;
  char c;

  /* Connect before the start: a try that may find the lock taken. */
  if (porta_redis_lock_acquire (lock, 0, NULL, NULL))
    porta_redis_lock_release (lock, NULL);
  g_print ("ready\n");
  if (read (STDIN_FILENO, &c, 1) != 1)
    return 1;
  cpu_start = cpu_seconds ();
  deadline = now_us () + seconds * 1e6;
  while (n < max)
    {
      g_autoptr(GError) error = NULL;
      double left_ms = (deadline - now_us ()) / 1000;
      if (left_ms < 1)
        break;
      if (!porta_redis_lock_acquire (lock, (int) left_ms, NULL, &error))
        {
          if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
            break;
          g_printerr ("contend: %s\n", error->message);
          return 1;
        }
      if (!increment_counter (counter))
        {
          g_printerr ("contend: cannot update %s: %s\n", counter, g_strerror (errno));
          return 1;
        }
      if (!porta_redis_lock_release (lock, &error))
        {
          g_printerr ("contend: %s\n", error->message);
          return 1;
        }
      last = now_us ();
      n++;
    }
  g_print ("{\"acquired\": %d, \"last\": %.1f, \"cpu\": %.6f}\n", n, last,
           cpu_seconds () - cpu_start);
  return 0;
}

int
main (int argc, char **argv)
{
  if (argc >= 4 && g_str_equal (argv[1], "handoff"))
    return handoff_main (argv[2], atoi (argv[3]), argc > 4 && g_str_equal (argv[4], "observe"));
  if (argc == 4 && g_str_equal (argv[1], "floor"))
    return floor_main (argv[2], atoi (argv[3]));
  if (argc == 7 && g_str_equal (argv[1], "contend"))
    return contend_main (argv[2], argv[3], argv[4], g_ascii_strtod (argv[5], NULL), atoi (argv[6]));
  g_printerr ("usage: %s handoff SOCKET ROUNDS [observe] | floor SOCKET ROUNDS |"
              " contend SOCKET NAME COUNTER_FILE SECONDS MAX\n", argv[0]);
  return 2;
}
