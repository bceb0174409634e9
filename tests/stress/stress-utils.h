/* stress-utils.h: helpers shared by the portalock stress tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <portalock/portalock.h>

#include "porta-test-utils.h"

G_BEGIN_DECLS

void         stress_init            (int                *argc,
                                     char             ***argv);
guint        stress_scale_ms        (guint               ms);
char        *stress_path            (const char         *name);

GSubprocess *stress_spawn           (GSubprocessFlags    flags,
                                     const char         *first_arg,
                                     ...) G_GNUC_NULL_TERMINATED;
void         stress_wait_ok         (GSubprocess        *proc,
                                     const char         *what);
char        *stress_read_line       (GSubprocess        *proc,
                                     guint               timeout_ms);
void         stress_kill            (GSubprocess        *proc);

char        *stress_record_new      (char                fill,
                                     gsize               size,
                                     gsize              *len);
gboolean     stress_record_check    (const char         *buf,
                                     gsize               len,
                                     gsize               size,
                                     char              **why);

gboolean     stress_skip_ofd_wait_under_valgrind (PortaBackend backend);

guint        stress_count_fds       (void);
guint        stress_count_threads   (void);
char        *stress_thread_names    (void);
void         stress_assert_file_is  (const char         *path,
                                     const char         *contents);

G_END_DECLS
