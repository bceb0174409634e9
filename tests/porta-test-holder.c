/* porta-test-holder.c: the other process of the tests: holds a lock, or
 * runs one of the stress suite's commands
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Usage: porta-test-holder [--backend=flock|ofd|posix|win32|default] [--shared]
 *                          [--timeout-ms N] [--follow-symlinks]
 *                          [--delete-on-release] [--pid-file] FILE
 *
 * Acquires the lock on FILE (waiting at most --timeout-ms, -1 for ever),
 * prints "locked" on stdout, then holds it until a line or end-of-file
 * arrives on stdin, releases it, prints "released" and exits 0.
 *
 * When the lock cannot be acquired it prints the error message on stderr
 * and exits 2 for G_IO_ERROR_WOULD_BLOCK and G_IO_ERROR_TIMED_OUT, and 1
 * for any other failure.
 *
 * On Unix it also runs the stress suite's commands:
 *
 *        porta-test-holder COMMAND BACKEND FILE [ARGS...]
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
 * exits non-zero. A command gives up after a watchdog of 240 s so that it
 * never outlives a run; the holder dies with the test that started it.
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


#include <portalock/portalock.h>

#include "porta-test-utils.h"

#define EXIT_CONTENDED 2
#define EXIT_TORN      3
#define WATCHDOG_S     240

#ifdef G_OS_UNIX

/* The stress suite's commands. */

G_GNUC_NORETURN static void
fail (const char *what,
      GError     *error)
{
  g_printerr ("porta-test-holder[%d]: %s: %s\n", (int) getpid (), what,
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
      g_printerr ("porta-test-holder: unknown backend “%s”\n", backend_name);
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
          g_printerr ("porta-test-holder: counter file holds “%s”\n", buf);
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
          g_printerr ("porta-test-holder[%d]: read %" G_GUINT64_FORMAT ": torn record: %s\n",
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
          g_printerr ("porta-test-holder[%d]: cycle %" G_GUINT64_FORMAT ": cannot create "
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
          g_printerr ("porta-test-holder[%d]: cycle %" G_GUINT64_FORMAT ": the marker "
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
  g_printerr ("porta-test-holder: try: %s\n", error->message);
  return 1;
}

static gboolean
is_stress_command (const char *cmd)
{
  static const char * const commands[] = {
    "increment", "write", "read", "unlink-cycle", "hold", "try",
  };

  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    if (g_str_equal (cmd, commands[i]))
      return TRUE;
  return FALSE;
}

static int
run_stress_command (int   argc,
                    char *argv[])
{
  const char *cmd = argv[1];

  /* Never outlive a stress run, even one whose test hangs. */
  alarm (WATCHDOG_S);

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

  g_printerr ("porta-test-holder: bad command line for “%s”\n", cmd);
  return 1;
}

#endif /* G_OS_UNIX */

int
main (int    argc,
      char **argv)
{
  g_autofree char *backend_name = NULL;
  gboolean shared = FALSE;
  gboolean follow_symlinks = FALSE;
  gboolean delete_on_release = FALSE;
  gboolean pid_file = FALSE;
  int timeout_ms = -1;
  GOptionEntry entries[] = {
    { "backend", 0, 0, G_OPTION_ARG_STRING, &backend_name, "flock, ofd, posix, win32 or default", "NAME" },
    { "shared", 0, 0, G_OPTION_ARG_NONE, &shared, "Take a shared lock", NULL },
    { "timeout-ms", 0, 0, G_OPTION_ARG_INT, &timeout_ms, "Wait at most this long (-1: for ever)", "N" },
    { "follow-symlinks", 0, 0, G_OPTION_ARG_NONE, &follow_symlinks, "Use PORTA_LOCK_FLAGS_FOLLOW_SYMLINKS", NULL },
    { "delete-on-release", 0, 0, G_OPTION_ARG_NONE, &delete_on_release, "Use PORTA_LOCK_FLAGS_DELETE_ON_RELEASE", NULL },
    { "pid-file", 0, 0, G_OPTION_ARG_NONE, &pid_file, "Hold FILE as a PortaPidFile (ignores the other options)", NULL },
    { NULL }
  };
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GFile) file = NULL;
  g_autoptr(PortaLock) lock = NULL;
  g_autoptr(PortaPidFile) pid_lock = NULL;
  PortaBackend backend = PORTA_BACKEND_DEFAULT;
  PortaLockFlags flags = PORTA_LOCK_FLAGS_NONE;

  porta_test_die_with_parent ();
#ifdef G_OS_UNIX
  if (argc >= 2 && is_stress_command (argv[1]))
    return run_stress_command (argc, argv);
#endif

  context = g_option_context_new ("FILE - hold a portalock lock until stdin says so");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("porta-test-holder: %s\n", error->message);
      return 1;
    }
  if (argc != 2 || !porta_test_parse_backend (backend_name, &backend) || timeout_ms < -1)
    {
      g_printerr ("Usage: porta-test-holder [--backend=flock|ofd|posix|win32|default] "
                  "[--shared] [--timeout-ms N] [--follow-symlinks] "
                  "[--delete-on-release] [--pid-file] FILE\n");
      return 1;
    }

  if (follow_symlinks)
    flags |= PORTA_LOCK_FLAGS_FOLLOW_SYMLINKS;
  if (delete_on_release)
    flags |= PORTA_LOCK_FLAGS_DELETE_ON_RELEASE;

  file = g_file_new_for_commandline_arg (argv[1]);
  lock = porta_lock_new_full (file,
                              shared ? PORTA_LOCK_MODE_SHARED : PORTA_LOCK_MODE_EXCLUSIVE,
                              backend, flags);

  if (pid_file)
    pid_lock = porta_pid_file_new (file);

  if (pid_file ? !porta_pid_file_acquire (pid_lock, timeout_ms, NULL, &error)
               : !porta_lock_acquire (lock, timeout_ms, NULL, &error))
    {
      g_printerr ("%s\n", error->message);
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK) ||
          g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
        return EXIT_CONTENDED;
      return 1;
    }

  fputs ("locked\n", stdout);
  fflush (stdout);

  porta_test_wait_for_stdin_line ();

  if (pid_file ? !porta_pid_file_release (pid_lock, &error)
               : !porta_lock_release (lock, &error))
    {
      g_printerr ("%s\n", error->message);
      return 1;
    }

  fputs ("released\n", stdout);
  fflush (stdout);

  return 0;
}
