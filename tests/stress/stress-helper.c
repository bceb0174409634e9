/* stress-helper.c: the other processes of the portalock stress tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Usage: stress-helper COMMAND BACKEND FILE [ARGS...]
 *
 *   increment BACKEND FILE N
 *       N times: take an exclusive lock on FILE, read the decimal counter
 *       in it through porta_lock_get_stream(), write it back plus one,
 *       release.
 *   write BACKEND FILE N SIZE
 *       N times: take an exclusive lock, rewrite FILE as a record of SIZE
 *       copies of one byte followed by its checksum, written in small
 *       pieces so that a reader without the lock would see it half done.
 *   read BACKEND FILE N SIZE
 *       N times: take a shared lock and check that FILE holds one whole
 *       record; exits 3 on a torn or corrupt record.
 *   unlink-cycle BACKEND FILE INSIDE N
 *       N times: take an exclusive lock with
 *       PORTA_LOCK_FLAGS_DELETE_ON_RELEASE, create INSIDE with O_EXCL (it
 *       exists only while someone is inside), write a marker into FILE,
 *       check it, delete INSIDE, release. Exits 3 when INSIDE already
 *       exists, that is when two processes hold the lock at once.
 *   hold BACKEND FILE TEXT
 *       takes an exclusive lock, writes TEXT into FILE, prints "locked" on
 *       stdout and holds the lock until it is killed.
 *   try BACKEND FILE
 *       tries an exclusive lock once: exits 0 if it got it, 2 if the lock
 *       is taken, 1 on any other error.
 *
 * BACKEND is flock, ofd or posix. Every failure is printed on stderr and
 * exits non-zero. The helper dies with the test that started it, and
 * gives up after a watchdog of 240 s so that it never outlives a run.
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef __linux__
# include <sys/prctl.h>
#endif

#include <portalock/portalock.h>

#include "porta-test-utils.h"

#define EXIT_TORN      3
#define EXIT_CONTENDED 2
#define WATCHDOG_S     240

static void
die_with_parent (void)
{
#ifdef __linux__
  pid_t parent = getppid ();

  if (prctl (PR_SET_PDEATHSIG, SIGKILL) != 0)
    g_printerr ("stress-helper: prctl: %s\n", g_strerror (errno));
  if (getppid () != parent)
    _exit (1);
#endif
  alarm (WATCHDOG_S);
}

G_GNUC_NORETURN static void
fail (const char *what,
      GError     *error)
{
  g_printerr ("stress-helper[%d]: %s: %s\n", (int) getpid (), what,
              error != NULL ? error->message : g_strerror (errno));
  exit (1);
}

static PortaLock *
new_lock (const char     *backend_name,
          const char     *path,
          PortaLockMode   mode,
          PortaLockFlags  flags)
{
  g_autoptr(GFile) file = g_file_new_for_path (path);
  PortaBackend backend;

  if (!porta_test_parse_backend (backend_name, &backend))
    {
      g_printerr ("stress-helper: unknown backend “%s”\n", backend_name);
      exit (1);
    }
  return porta_lock_new_full (file, mode, backend, flags);
}

static guint64
parse_count (const char *text)
{
  guint64 n = 0;
  g_autoptr(GError) error = NULL;

  if (!g_ascii_string_to_unsigned (text, 10, 0, G_MAXINT, &n, &error))
    fail ("bad number", error);
  return n;
}

/* Reads the whole locked file from offset 0 into @buf; returns its length. */
static gsize
read_locked (PortaLock *lock,
             char      *buf,
             gsize      size)
{
  GIOStream *stream = porta_lock_get_stream (lock);
  GError *error = NULL;
  gsize n = 0;

  if (!g_seekable_seek (G_SEEKABLE (stream), 0, G_SEEK_SET, NULL, &error) ||
      !g_input_stream_read_all (g_io_stream_get_input_stream (stream),
                                buf, size, &n, NULL, &error))
    fail ("read", error);
  return n;
}

/* Rewrites the locked file as @len bytes of @data, in pieces of @piece. */
static void
rewrite_locked (PortaLock  *lock,
                const char *data,
                gsize       len,
                gsize       piece)
{
  GIOStream *stream = porta_lock_get_stream (lock);
  GOutputStream *out = g_io_stream_get_output_stream (stream);
  GError *error = NULL;

  if (!g_seekable_seek (G_SEEKABLE (stream), 0, G_SEEK_SET, NULL, &error) ||
      !g_seekable_truncate (G_SEEKABLE (stream), 0, NULL, &error))
    fail ("truncate", error);
  for (gsize off = 0; off < len; off += piece)
    {
      if (!g_output_stream_write_all (out, data + off, MIN (piece, len - off),
                                      NULL, NULL, &error))
        fail ("write", error);
      if (piece < len)
        g_thread_yield ();
    }
  if (!g_output_stream_flush (out, NULL, &error))
    fail ("flush", error);
}

static void
acquire_or_die (PortaLock *lock)
{
  GError *error = NULL;

  if (!porta_lock_acquire (lock, -1, NULL, &error))
    fail ("acquire", error);
}

static void
release_or_die (PortaLock *lock)
{
  GError *error = NULL;

  if (!porta_lock_release (lock, &error))
    fail ("release", error);
}

static int
cmd_increment (const char *backend,
               const char *path,
               guint64     n)
{
  g_autoptr(PortaLock) lock = new_lock (backend, path, PORTA_LOCK_MODE_EXCLUSIVE, 0);

  for (guint64 i = 0; i < n; i++)
    {
      char buf[64];
      char out[32];
      gsize len;
      guint64 value = 0;

      acquire_or_die (lock);
      len = read_locked (lock, buf, sizeof buf - 1);
      buf[len] = '\0';
      if (len > 0 && !g_ascii_string_to_unsigned (g_strstrip (buf), 10, 0,
                                                  G_MAXUINT64, &value, NULL))
        {
          g_printerr ("stress-helper: counter file holds “%s”\n", buf);
          return EXIT_TORN;
        }
      len = (gsize) g_snprintf (out, sizeof out, "%" G_GUINT64_FORMAT "\n", value + 1);
      rewrite_locked (lock, out, len, len);
      release_or_die (lock);
    }
  return 0;
}

static int
cmd_write (const char *backend,
           const char *path,
           guint64     n,
           gsize       size)
{
  g_autoptr(PortaLock) lock = new_lock (backend, path, PORTA_LOCK_MODE_EXCLUSIVE, 0);
  g_autofree char *record = NULL;
  gsize len = 0;

  for (guint64 i = 0; i < n; i++)
    {
      char fill = (char) ('A' + (getpid () + i) % 26);

      g_free (record);
      record = porta_test_record_new (fill, size, &len);
      acquire_or_die (lock);
      rewrite_locked (lock, record, len, 1024);
      release_or_die (lock);
    }
  return 0;
}

static int
cmd_read (const char *backend,
          const char *path,
          guint64     n,
          gsize       size)
{
  g_autoptr(PortaLock) lock = new_lock (backend, path, PORTA_LOCK_MODE_SHARED, 0);
  g_autofree char *buf = g_malloc (size + 64);

  for (guint64 i = 0; i < n; i++)
    {
      g_autofree char *why = NULL;
      gsize len;

      acquire_or_die (lock);
      len = read_locked (lock, buf, size + 64);
      release_or_die (lock);
      if (!porta_test_record_check (buf, len, size, &why))
        {
          g_printerr ("stress-helper[%d]: read %" G_GUINT64_FORMAT ": torn record: %s\n",
                      (int) getpid (), i, why);
          return EXIT_TORN;
        }
    }
  return 0;
}

static int
cmd_unlink_cycle (const char *backend,
                  const char *path,
                  const char *inside,
                  guint64     n)
{
  g_autoptr(PortaLock) lock = new_lock (backend, path, PORTA_LOCK_MODE_EXCLUSIVE,
                                        PORTA_LOCK_FLAGS_DELETE_ON_RELEASE);
  char marker[32];
  gsize len = (gsize) g_snprintf (marker, sizeof marker, "%d\n", (int) getpid ());

  for (guint64 i = 0; i < n; i++)
    {
      char buf[64];
      gsize got;
      int fd;

      acquire_or_die (lock);
      fd = open (inside, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
      if (fd < 0)
        {
          g_printerr ("stress-helper[%d]: cycle %" G_GUINT64_FORMAT ": cannot create "
                      "“%s” (%s): another process holds the lock at the same time\n",
                      (int) getpid (), i, inside, g_strerror (errno));
          return EXIT_TORN;
        }
      close (fd);
      rewrite_locked (lock, marker, len, len);
      g_thread_yield ();
      got = read_locked (lock, buf, sizeof buf);
      if (got != len || memcmp (buf, marker, len) != 0)
        {
          g_printerr ("stress-helper[%d]: cycle %" G_GUINT64_FORMAT ": the marker "
                      "was overwritten while the lock was held\n",
                      (int) getpid (), i);
          return EXIT_TORN;
        }
      if (unlink (inside) != 0)
        fail ("unlink inside marker", NULL);
      release_or_die (lock);
    }
  return 0;
}

static int
cmd_hold (const char *backend,
          const char *path,
          const char *text)
{
  g_autoptr(PortaLock) lock = new_lock (backend, path, PORTA_LOCK_MODE_EXCLUSIVE, 0);

  acquire_or_die (lock);
  rewrite_locked (lock, text, strlen (text), strlen (text));
  g_print ("locked\n");
  fflush (stdout);
  for (;;)
    pause ();
  return 0;
}

static int
cmd_try (const char *backend,
         const char *path)
{
  g_autoptr(PortaLock) lock = new_lock (backend, path, PORTA_LOCK_MODE_EXCLUSIVE, 0);
  g_autoptr(GError) error = NULL;

  if (porta_lock_try_acquire (lock, &error))
    return 0;
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
    return EXIT_CONTENDED;
  g_printerr ("stress-helper: try: %s\n", error->message);
  return 1;
}

int
main (int   argc,
      char *argv[])
{
  const char *cmd;

  die_with_parent ();
  if (argc < 4)
    {
      g_printerr ("usage: stress-helper COMMAND BACKEND FILE [ARGS...]\n");
      return 1;
    }
  cmd = argv[1];

  if (g_str_equal (cmd, "increment") && argc == 5)
    return cmd_increment (argv[2], argv[3], parse_count (argv[4]));
  if (g_str_equal (cmd, "write") && argc == 6)
    return cmd_write (argv[2], argv[3], parse_count (argv[4]), parse_count (argv[5]));
  if (g_str_equal (cmd, "read") && argc == 6)
    return cmd_read (argv[2], argv[3], parse_count (argv[4]), parse_count (argv[5]));
  if (g_str_equal (cmd, "unlink-cycle") && argc == 6)
    return cmd_unlink_cycle (argv[2], argv[3], argv[4], parse_count (argv[5]));
  if (g_str_equal (cmd, "hold") && argc == 5)
    return cmd_hold (argv[2], argv[3], argv[4]);
  if (g_str_equal (cmd, "try") && argc == 4)
    return cmd_try (argv[2], argv[3]);

  g_printerr ("stress-helper: bad command line for “%s”\n", cmd);
  return 1;
}
