/* porta-lock-file-private.h: the open lock file
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

#include "porta-backend-private.h"

G_BEGIN_DECLS

/* Windows' C runtime has no ESTALE: an internal code, never shown. */
#ifndef ESTALE
# define ESTALE 10116
#endif

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

G_END_DECLS
