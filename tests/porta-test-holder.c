/* porta-test-holder.c: holds a portalock lock in another process for the tests
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
 */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifdef __linux__
# include <sys/prctl.h>
#endif

#include <portalock/portalock.h>

#include "porta-test-utils.h"

#define EXIT_CONTENDED 2

/* The test that started us may die on a failed assertion while we wait in
 * an acquire that never ends: die with it so that no holder outlives the
 * test run. */
static void
die_with_parent (void)
{
#ifdef __linux__
  pid_t parent = getppid ();

  if (prctl (PR_SET_PDEATHSIG, SIGKILL) != 0)
    g_printerr ("porta-test-holder: prctl: %s\n", g_strerror (errno));
  if (getppid () != parent)
    _exit (1);
#endif
}

/* Returns when a whole line, end-of-file or a read error arrives on stdin. */
static void
wait_for_stdin_line (void)
{
  for (;;)
    {
      char c;
      ssize_t n = read (STDIN_FILENO, &c, 1);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0 || c == '\n')
        return;
    }
}

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

  die_with_parent ();

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

  wait_for_stdin_line ();

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
