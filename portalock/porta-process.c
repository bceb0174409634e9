/* porta-process.c: what the system tells of a process, from /proc on
 * Linux and from the process's handle on Windows
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <string.h>

#include <glib.h>

#ifdef G_OS_WIN32
# include <windows.h>
#else
# include <signal.h>
#endif

#include "porta-process-private.h"

#ifdef G_OS_WIN32

/* Windows: whether process @pid runs, and its creation time (in 100 ns
 * units since 1601) as its start time. */
PortaProcessState
porta_process_read_stat (pid_t    pid,
                         guint64 *start_time)
{
  FILETIME created, exited, kernel, user;
  DWORD exit_code;
  HANDLE process;
  PortaProcessState state = PORTA_PROCESS_UNKNOWN;

  if (pid <= 0)
    return PORTA_PROCESS_GONE;
  process = OpenProcess (PROCESS_QUERY_LIMITED_INFORMATION, FALSE, (DWORD) pid);
  if (process == NULL)
    return GetLastError () == ERROR_INVALID_PARAMETER ? PORTA_PROCESS_GONE : PORTA_PROCESS_UNKNOWN;
  if (GetExitCodeProcess (process, &exit_code) && exit_code != STILL_ACTIVE)
    state = PORTA_PROCESS_GONE;
  else if (GetProcessTimes (process, &created, &exited, &kernel, &user))
    {
      *start_time = ((guint64) created.dwHighDateTime << 32) | created.dwLowDateTime;
      state = PORTA_PROCESS_ALIVE;
    }
  CloseHandle (process);
  return state;
}

/* Whether process @pid exists: one that cannot be opened for want of
 * rights exists. */
gboolean
porta_process_exists (pid_t pid)
{
  guint64 ignored;

  return porta_process_read_stat (pid, &ignored) != PORTA_PROCESS_GONE;
}

char *
porta_process_command (pid_t pid)
{
  wchar_t image[MAX_PATH];
  DWORD n = G_N_ELEMENTS (image);
  g_autofree char *path = NULL;
  HANDLE process;
  char *name = NULL;

  process = OpenProcess (PROCESS_QUERY_LIMITED_INFORMATION, FALSE, (DWORD) pid);
  if (process == NULL)
    return NULL;
  if (QueryFullProcessImageNameW (process, 0, image, &n))
    path = g_utf16_to_utf8 (image, n, NULL, NULL, NULL);
  CloseHandle (process);
  if (path != NULL)
    name = g_path_get_basename (path);
  return name;
}

#else /* !G_OS_WIN32 */

/* Reads the state (field 3) and the start time (field 22) of process @pid.
 * The command name (field 2) may hold spaces and parentheses, so the
 * fields are counted from the last ')'. */
PortaProcessState
porta_process_read_stat (pid_t    pid,
                         guint64 *start_time)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/stat", (int) pid);
  g_autofree char *contents = NULL;
  g_auto(GStrv) fields = NULL;
  char *p;

  if (!g_file_get_contents (path, &contents, NULL, NULL))
    {
      if (g_file_test ("/proc/self/stat", G_FILE_TEST_EXISTS) &&
          kill (pid, 0) != 0 && errno == ESRCH)
        return PORTA_PROCESS_GONE;
      return PORTA_PROCESS_UNKNOWN;
    }

  p = strrchr (contents, ')');
  if (p == NULL)
    return PORTA_PROCESS_UNKNOWN;
  /* fields[0] is field 3, the state */
  fields = g_strsplit (g_strstrip (p + 1), " ", 21);
  if (g_strv_length (fields) < 21)
    return PORTA_PROCESS_UNKNOWN;
  /* A zombie has closed its files, and so let go of every lock. */
  if (g_str_equal (fields[0], "Z") || g_str_equal (fields[0], "X"))
    return PORTA_PROCESS_GONE;
  if (!g_ascii_string_to_unsigned (fields[19], 10, 0, G_MAXUINT64, start_time, NULL))
    return PORTA_PROCESS_UNKNOWN;
  return PORTA_PROCESS_ALIVE;
}

/* Whether process @pid exists at all, for systems without /proc. */
gboolean
porta_process_exists (pid_t pid)
{
  return pid > 0 && (kill (pid, 0) == 0 || errno == EPERM);
}

char *
porta_process_command (pid_t pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/comm", (int) pid);
  char *contents = NULL;

  if (!g_file_get_contents (path, &contents, NULL, NULL))
    return NULL;
  g_strchomp (contents);
  if (*contents == '\0')
    g_clear_pointer (&contents, g_free);
  return contents;
}

#endif /* G_OS_WIN32 */
