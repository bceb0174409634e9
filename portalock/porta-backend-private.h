/* porta-backend-private.h: the kernel mechanisms behind a lock
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

#include "porta-common-private.h"
#include "porta-types.h"

G_BEGIN_DECLS

/* Windows' C runtime has no ESTALE: an internal code, never shown. */
#ifndef ESTALE
# define ESTALE 10116
#endif

/* A backend knows how to take, try and drop one kind of kernel lock on an
 * open descriptor. It knows nothing of GTask, GCancellable or timeouts: the
 * waiter decides how long to block and how to interrupt it. */
typedef struct _PortaBackendOps PortaBackendOps;

struct _PortaBackendOps
{
  PortaBackend  id;    /* porta_backend_get_name() names it */
  /* fcntl() write locks need a descriptor open for writing */
  guint         exclusive_needs_write : 1;
  /* owned by the process, not the open file description */
  guint         per_process : 1;

  /* Returns 0 or an errno value: EWOULDBLOCK when @block is FALSE and the
   * lock is taken, EINTR when a blocking call was interrupted. */
  int (*lock)   (int fd, PortaLockMode mode, gboolean block);
  int (*unlock) (int fd);
};

/* The open lock file: its descriptor and the identity of what it opened
 * (st_dev and st_ino; on Windows the volume serial number and file index),
 * which is known, and the file known to be a regular one, once
 * @identified is set. On Unix a file opened for a backend whose locks
 * belong to the open file description is only identified when it is
 * locked, or found taken (porta_lock_file_identify()): one fstat() then
 * serves both the type check and the check that the lock guards the file
 * at the path. On Windows the descriptor is a C runtime one over the
 * file's HANDLE, and @overlapped says the HANDLE was opened for overlapped
 * I/O, which interruptible waits need (descriptors the caller opened may
 * not be). */
typedef struct
{
  int      fd;
  guint64  dev;
  guint64  ino;
  gboolean identified;
  gboolean overlapped;
} PortaLockFile;

#define PORTA_LOCK_FILE_INIT { -1, 0, 0, FALSE, FALSE }

PortaBackend           porta_backend_resolve    (PortaBackend            backend);
const PortaBackendOps *porta_backend_get_ops    (PortaBackend            backend);
const char            *porta_backend_get_name   (PortaBackend            backend);

gboolean               porta_lock_file_open     (PortaLockFile          *lf,
                                                 const char             *path,
                                                 const char             *display,
                                                 PortaLockMode           mode,
                                                 PortaLockFlags          flags,
                                                 const PortaBackendOps  *ops,
                                                 GError                **error);
/* Learns what @lf has open, if it is not known yet: fails, with an error
 * naming @display, for a folder or anything but a regular file. */
gboolean               porta_lock_file_identify (PortaLockFile          *lf,
                                                 const char             *display,
                                                 GError                **error);
/* After the lock on @lf is taken: identifies it if needed, and sets
 * @stale if the lock guards nothing because the file was deleted, or is no
 * longer the one at @path, since it was opened (another holder released
 * with PORTA_LOCK_FLAGS_DELETE_ON_RELEASE). */
gboolean               porta_lock_file_verify   (PortaLockFile          *lf,
                                                 const char             *path,
                                                 const char             *display,
                                                 PortaLockFlags          flags,
                                                 gboolean               *stale,
                                                 GError                **error);
/* The part of porta_lock_file_verify() that looks @path up. */
gboolean               porta_lock_file_verify_path (const PortaLockFile *lf,
                                                 const char             *path,
                                                 const char             *display,
                                                 PortaLockFlags          flags,
                                                 gboolean               *stale,
                                                 GError                **error);
void                   porta_set_check_error    (GError                **error,
                                                 int                     errsv,
                                                 const char             *display);
/* Returns 0 when @path still names the file @lf has open (which must be
 * identified), ENOENT or ESTALE when it was deleted or replaced since, or
 * another errno value. */
int                    porta_lock_file_check    (const PortaLockFile    *lf,
                                                 const char             *path,
                                                 PortaLockFlags          flags);
void                   porta_lock_file_close    (PortaLockFile          *lf,
                                                 const PortaBackendOps  *ops);
/* Whether waits on @lf must back off and retry instead of blocking in the
 * kernel: on network and FUSE filesystems, where a blocking call may never
 * be woken, and under Wine, which cannot wait for a contended lock.
 * Callers only pass block = TRUE to PortaBackendOps.lock where this is
 * FALSE. */
gboolean               porta_lock_file_must_back_off (const PortaLockFile   *lf);

/* The identity of an open descriptor, or of the file at @path (of the
 * symbolic link itself unless @follow): 0 or an errno value. */
int                    porta_fd_identify        (int                     fd,
                                                 guint64                *dev,
                                                 guint64                *ino);
int                    porta_path_identify      (const char             *path,
                                                 gboolean                follow,
                                                 guint64                *dev,
                                                 guint64                *ino);
/* Deletes the file at @path (not what a symbolic link there points to):
 * 0 or an errno value. */
int                    porta_path_unlink        (const char             *path);

#ifdef G_OS_WIN32
/* The errno value for a Windows error code (GetLastError()). */
int                    porta_win32_errno        (guint32                 code);
/* Whether a contended overlapped LockFileEx() really waits: FALSE under
 * Wine, which reports such a request as granted without queuing it.
 * porta_lock_file_must_back_off() says so for every file then. */
gboolean               porta_win32_overlapped_waits (void);
/* A wait on @lf, which must be overlapped, in an overlapped LockFileEx(),
 * with the result codes of porta_waiter_wait_sync(). */
int                    porta_win32_wait_sync    (const PortaLockFile    *lf,
                                                 PortaLockMode           mode,
                                                 gint64                  deadline,
                                                 GCancellable           *cancellable);
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
#endif

gboolean               porta_is_missing_folder  (const char             *path);
void                   porta_set_open_error     (GError                **error,
                                                 int                     errsv,
                                                 const char             *path,
                                                 const char             *display);
void                   porta_set_wait_error     (GError                **error,
                                                 int                     result,
                                                 int                     timeout_ms,
                                                 const char             *holder,
                                                 PortaHolderUnknown      unknown,
                                                 const char             *display,
                                                 const PortaBackendOps  *ops,
                                                 const PortaLockFile    *lf);
void                   porta_set_lock_error     (GError                **error,
                                                 int                     errsv,
                                                 const char             *display,
                                                 const PortaBackendOps  *ops,
                                                 const PortaLockFile    *lf);

G_END_DECLS
