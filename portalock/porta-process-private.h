/* porta-process-private.h: what the system tells of a process
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <sys/types.h>

#include <glib.h>

G_BEGIN_DECLS

typedef enum
{
  PORTA_PROCESS_GONE,      /* no such process, or only its zombie */
  PORTA_PROCESS_ALIVE,     /* running; the start time is set */
  PORTA_PROCESS_UNKNOWN,   /* the system cannot tell (no procfs, hidepid) */
} PortaProcessState;

/* Whether process @pid runs and, if so, its start time: on Linux field 22
 * of /proc/PID/stat (clock ticks since boot), on Windows its creation time
 * (100 ns units since 1601). Together with the ID it names one process. */
PortaProcessState porta_process_read_stat (pid_t    pid,
                                           guint64 *start_time);
/* Whether process @pid exists at all, where its state is unknown: one
 * this process may not inspect exists. */
gboolean          porta_process_exists    (pid_t    pid);
/* The command name of process @pid, or NULL if unknown (or empty). */
char             *porta_process_command   (pid_t    pid);

G_END_DECLS
