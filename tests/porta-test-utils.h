/* porta-test-utils.h: helpers shared by the portalock test suites
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

#include <portalock/portalock.h>

G_BEGIN_DECLS

/* A child process with its stdin, stdout and stderr connected to pipes:
 * a lock holder that says "locked" on stdout and lets go when a line (or
 * end-of-file) arrives on its stdin. */
typedef struct
{
  GSubprocess      *proc;
  GOutputStream    *in;
  GDataInputStream *out;
  char             *name;
} PortaTestChild;

void            porta_test_init             (int                *argc,
                                             char             ***argv);
guint           porta_test_scale_ms         (guint               ms);
char           *porta_test_path             (const char         *name);
guint           porta_test_count_entries    (const char         *dir);

/* A backend as the PortaBackend enum's nicks spell it ("default",
 * "flock", "ofd", "posix", "win32"), and back: NULL reads as "default". */
const char     *porta_test_backend_name     (PortaBackend        backend);
gboolean        porta_test_parse_backend    (const char         *name,
                                             PortaBackend       *backend);

PortaTestChild *porta_test_child_spawnv     (const char * const *argv);
char           *porta_test_child_read_line  (PortaTestChild     *child,
                                             guint               timeout_ms);
void            porta_test_child_expect_line (PortaTestChild    *child,
                                             const char         *expected);
void            porta_test_child_send_line  (PortaTestChild     *child);
void            porta_test_child_release    (PortaTestChild     *child);
int             porta_test_child_wait       (PortaTestChild     *child,
                                             char              **stderr_text);
void            porta_test_child_free       (PortaTestChild     *child);

int             porta_test_run              (const char * const *argv,
                                             char              **stderr_text);

/* valgrind cannot interrupt a wait in fcntl (F_OFD_SETLKW): skips the
 * test (and returns TRUE) for such a wait under the valgrind setup. */
gboolean        porta_test_skip_ofd_wait_under_valgrind (PortaBackend backend);

void            porta_test_die_with_parent  (void);
gboolean        porta_test_wait_for_stdin_line (void);

/* The stress suite: porta-test-holder's commands (PORTA_TEST_HOLDER), torn
 * write detection, and leak counts. */
GSubprocess    *porta_test_spawn            (GSubprocessFlags    flags,
                                             const char         *first_arg,
                                             ...) G_GNUC_NULL_TERMINATED;
void            porta_test_wait_ok          (GSubprocess        *proc,
                                             const char         *what);
char           *porta_test_read_line        (GSubprocess        *proc,
                                             guint               timeout_ms);
void            porta_test_kill             (GSubprocess        *proc);

char           *porta_test_record_new       (char                fill,
                                             gsize               size,
                                             gsize              *len);
gboolean        porta_test_record_check     (const char         *buf,
                                             gsize               len,
                                             gsize               size,
                                             char              **why);

guint           porta_test_count_fds        (void);
guint           porta_test_count_threads    (void);
char           *porta_test_thread_names     (void);
void            porta_test_assert_file_is   (const char         *path,
                                             const char         *contents);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (PortaTestChild, porta_test_child_free)

G_END_DECLS
