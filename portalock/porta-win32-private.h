/* porta-win32-private.h: what the Windows backend, lock file and waits share
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

#include "porta-lock-file-private.h"

G_BEGIN_DECLS

#ifdef G_OS_WIN32

/* The errno value for a Windows error code (GetLastError()). */
int                    porta_win32_errno        (guint32                 code);
/* Whether a contended overlapped LockFileEx() really waits: FALSE under
 * Wine, which reports such a request as granted without queuing it.
 * porta_lock_file_must_back_off() says so for every file then. */
gboolean               porta_win32_overlapped_waits (void);
/* Starts an overlapped LockFileEx() on @lf whose @event is signalled when
 * it completes: 0 if the lock was granted at once, EINPROGRESS if it is
 * pending, or an errno value. porta_win32_lock_finish() then gets the
 * outcome (@abandon: cancel the request first, and give back a lock
 * granted meanwhile; returns 0, or an errno value, or ECANCELED when
 * abandoned). */
int                    porta_win32_lock_start   (const PortaLockFile    *lf,
                                                 PortaLockMode           mode,
                                                 gpointer                overlapped_out,
                                                 gpointer                event);
int                    porta_win32_lock_finish  (const PortaLockFile    *lf,
                                                 gpointer                overlapped,
                                                 gboolean                abandon);
gsize                  porta_win32_overlapped_size (void);
/* Whether anyone holds a win32 lock on the file at @path: probes it with
 * a lock attempt that is given back at once. 0 or an errno value. */
int                    porta_win32_probe_held   (const char             *path,
                                                 gboolean                follow,
                                                 gboolean               *held);
/* A second handle on the file of @fd, for reading and writing it without
 * overlapped I/O: a new C runtime descriptor, or -1 with errno set. */
int                    porta_win32_reopen_fd    (int                     fd);
/* A description of the file of @fd for messages, or NULL. */
char                  *porta_win32_fd_path      (int                     fd);

#endif /* G_OS_WIN32 */

G_END_DECLS
