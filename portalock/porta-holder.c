/* porta-holder.c: who holds a lock, as far as the kernel tells
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#ifdef __linux__
# include <sys/stat.h>
# include <sys/sysmacros.h>
# include <unistd.h>
#endif

#include "porta-holder-private.h"
#include "porta-i18n-private.h"
#include "porta-process-private.h"

#ifdef __linux__

/* Linux lists every lock in /proc/locks, one a line:
 *
 *   1: FLOCK  ADVISORY  WRITE 1234 fe:00:11056225 0 EOF
 *   1: -> FLOCK  ADVISORY  WRITE 1300 fe:00:11056225 0 EOF   (a waiter)
 *
 * with the device as major:minor in hex. flock(2) locks name the process
 * that took them; OFD locks belong to no process and show -1. For those,
 * /proc/PID/fdinfo/FD of the descriptor that holds the lock has the same
 * line, so a slower search of every process's descriptors finds it (only
 * among the processes this one may inspect).
 *
 * Reading /proc/locks takes the kernel's file_rwsem for writing, which
 * first waits for an RCU grace period (5 to 15 ms here when nothing read it
 * just before) and briefly holds up every lock call on the system. So a
 * failed try names its holder, but a wait looks its holder up only when it
 * is long enough for that not to make its timeout late (porta-waiter.c). */

static gboolean
parse_lock_line (const char  *line,
                 guint64      dev,
                 guint64      ino,
                 gboolean     flock_kind,
                 int         *pid)
{
  g_auto(GStrv) tok = g_strsplit_set (line, " \t", -1);
  const char *fields[8];
  guint n = 0;
  unsigned int maj, min;
  unsigned long long file_ino;
  gboolean is_flock;

  for (guint i = 0; tok[i] != NULL && n < G_N_ELEMENTS (fields); i++)
    if (tok[i][0] != '\0')
      fields[n++] = tok[i];
  /* "N:" TYPE ADVISORY MODE PID DEV:INO START END; waiters have "->" */
  if (n < 6 || g_str_equal (fields[1], "->"))
    return FALSE;
  is_flock = g_str_equal (fields[1], "FLOCK");
  if (is_flock != !!flock_kind)
    return FALSE;
  if (!is_flock && !g_str_equal (fields[1], "POSIX") && !g_str_equal (fields[1], "OFDLCK"))
    return FALSE;
  if (sscanf (fields[5], "%x:%x:%llu", &maj, &min, &file_ino) != 3)
    return FALSE;
  if (maj != major (dev) || min != minor (dev) || file_ino != (unsigned long long) ino)
    return FALSE;
  *pid = atoi (fields[4]);
  return TRUE;
}

static gboolean
find_in_file (const char *path,
              guint64     dev,
              guint64     ino,
              gboolean    flock_kind,
              int        *pid)
{
  g_autofree char *contents = NULL;
  g_auto(GStrv) lines = NULL;

  if (!g_file_get_contents (path, &contents, NULL, NULL))
    return FALSE;
  lines = g_strsplit (contents, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      const char *line = lines[i];

      /* fdinfo has "lock:\t1: OFDLCK ..." among other lines */
      if (g_str_has_prefix (line, "lock:"))
        line += 5;
      else if (!g_str_equal (path, "/proc/locks"))
        continue;
      if (parse_lock_line (line, dev, ino, flock_kind, pid))
        return TRUE;
    }
  return FALSE;
}

static int
search_fdinfo (guint64  dev,
               guint64  ino,
               gboolean flock_kind)
{
  g_autoptr(GDir) proc = g_dir_open ("/proc", 0, NULL);
  const char *name;

  if (proc == NULL)
    return 0;
  while ((name = g_dir_read_name (proc)) != NULL)
    {
      g_autofree char *fddir = NULL;
      g_autoptr(GDir) fds = NULL;
      const char *fd;

      if (!g_ascii_isdigit (name[0]))
        continue;
      fddir = g_build_filename ("/proc", name, "fdinfo", NULL);
      fds = g_dir_open (fddir, 0, NULL);
      if (fds == NULL)
        continue;
      while ((fd = g_dir_read_name (fds)) != NULL)
        {
          g_autofree char *info = g_build_filename (fddir, fd, NULL);
          int ignored;

          if (find_in_file (info, dev, ino, flock_kind, &ignored))
            return atoi (name);
        }
    }
  return 0;
}

#endif /* __linux__ */

/* Returns TRUE if a lock of the kind (flock, or fcntl: POSIX and OFD) is
 * held on the file; *pid is 0 and *command NULL when the holder is not
 * known. Returns FALSE where the system does not list its locks (all but
 * Linux): callers then say the holder is unknown. */
gboolean
porta_holder_find (guint64    dev,
                   guint64    ino,
                   gboolean   flock_kind,
                   gboolean   search_fds,
                   int       *pid,
                   char     **command)
{
#ifdef __linux__
  int found = 0;
#endif

  *pid = 0;
  *command = NULL;
#ifndef __linux__
  return FALSE;
#else
  if (!find_in_file ("/proc/locks", dev, ino, flock_kind, &found))
    return FALSE;
  if (found <= 0 && search_fds)
    found = search_fdinfo (dev, ino, flock_kind);
  if (found > 0)
    {
      *pid = found;
      *command = porta_process_command (found);
    }
  return TRUE;
#endif
}

/* "process 1234 (cron)", for messages; NULL if no lock was found. */
char *
porta_holder_describe (guint64  dev,
                       guint64  ino,
                       gboolean flock_kind)
{
  g_autofree char *command = NULL;
  int pid;

  if (!porta_holder_find (dev, ino, flock_kind, FALSE, &pid, &command))
    return NULL;
  if (pid <= 0)
    return g_strdup (_("an unknown process"));
  if (command == NULL)
    return g_strdup_printf (_("process %d"), pid);
  return g_strdup_printf (_("process %d (%s)"), pid, command);
}
