/* porta-types.h: the enumerations and the error domain of portalock
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined (PORTALOCK_INSIDE) && !defined (PORTALOCK_COMPILATION)
# error "Only <portalock/portalock.h> can be included directly."
#endif

#include <glib.h>

#include "porta-version-macros.h"

G_BEGIN_DECLS

/**
 * PortaLockMode:
 * @PORTA_LOCK_MODE_EXCLUSIVE: one holder at a time; excludes every other
 *   lock, exclusive or shared, on the same file.
 * @PORTA_LOCK_MODE_SHARED: any number of shared holders at once; excludes
 *   exclusive holders. Readers of a file usually take a shared lock.
 *
 * How a #PortaLock holds its file.
 *
 * Since: 1.0
 */
typedef enum
{
  PORTA_LOCK_MODE_EXCLUSIVE,
  PORTA_LOCK_MODE_SHARED,
} PortaLockMode;

/**
 * PortaBackend:
 * @PORTA_BACKEND_DEFAULT: the platform's default: %PORTA_BACKEND_FLOCK on
 *   Linux and the BSDs, %PORTA_BACKEND_WIN32 on Windows. A lock created
 *   with it reports the backend it resolved to in #PortaLock:backend.
 * @PORTA_BACKEND_FLOCK: flock(2) locks, owned by the open file description.
 *   They interoperate with util-linux flock(1), Python portalocker and
 *   filelock, Go gofrs/flock and Rust `File::lock`.
 * @PORTA_BACKEND_OFD: Linux open file description locks (`F_OFD_SETLK`),
 *   owned by the open file description like flock(2) locks but seen by
 *   fcntl(2) locks: they interoperate with systemd, flatpak/ostree
 *   (libglnx) and `flock --fcntl`, and work on NFS. Linux only.
 * @PORTA_BACKEND_POSIX: classic POSIX record locks (`F_SETLK`), owned by
 *   the *process*. They interoperate with lockf(3) and Python fasteners.
 *   Because the kernel cannot tell two owners inside one process apart,
 *   portalock refuses (with %G_IO_ERROR_BUSY) to open a file that a
 *   POSIX-backed #PortaLock of the same process already has open.
 * @PORTA_BACKEND_WIN32: Windows byte-range locks (`LockFileEx()`) on one
 *   byte far past the end of any data, so that reading and writing the
 *   file is never blocked by Windows' mandatory range locks. Owned by the
 *   open handle, like flock(2) locks. Windows only.
 *
 * Which kernel mechanism a #PortaLock uses. A backend that the platform
 * lacks (flock, ofd and posix on Windows, win32 elsewhere) makes every
 * acquire fail with %G_IO_ERROR_NOT_SUPPORTED. On Linux, flock(2) locks and
 * fcntl(2) locks (ofd and posix) do not see each other on local
 * filesystems: pick the backend that the other programs touching the same
 * file use.
 *
 * Since: 1.0
 */
typedef enum
{
  PORTA_BACKEND_DEFAULT,
  PORTA_BACKEND_FLOCK,
  PORTA_BACKEND_OFD,
  PORTA_BACKEND_POSIX,
  PORTA_BACKEND_WIN32,
} PortaBackend;

/**
 * PortaLockFlags:
 * @PORTA_LOCK_FLAGS_NONE: no flags: the lock file is created if missing,
 *   and a lock file that is a symbolic link is refused.
 * @PORTA_LOCK_FLAGS_FOLLOW_SYMLINKS: lock the file a symbolic link points
 *   to instead of refusing it. Do not use it on lock files in folders that
 *   other users can write to, such as `/tmp`.
 * @PORTA_LOCK_FLAGS_DELETE_ON_RELEASE: delete the lock file when an
 *   exclusive holder releases it. Waiters that were blocked on the deleted
 *   file notice it and lock the new file instead, so the lock stays
 *   exclusive. Shared holders never delete the file. With
 *   %PORTA_LOCK_FLAGS_FOLLOW_SYMLINKS it is the symbolic link that is
 *   deleted, never the file it points to. (portalocker's
 *   `TemporaryFileLock`.)
 * @PORTA_LOCK_FLAGS_REENTRANT: nested acquires by the thread that holds
 *   the lock succeed at once and count up; releases count down, and the
 *   last one releases the lock (portalocker's `RLock`). An acquire from any
 *   other thread while the lock is held fails with
 *   %PORTA_LOCK_ERROR_ALREADY_HELD: give each thread a #PortaLock of its
 *   own, and they exclude each other as processes do.
 *
 * Flags that change how a #PortaLock treats its file.
 *
 * Since: 1.0
 */
typedef enum /*< flags >*/
{
  PORTA_LOCK_FLAGS_NONE              = 0,
  PORTA_LOCK_FLAGS_FOLLOW_SYMLINKS   = 1 << 0,
  PORTA_LOCK_FLAGS_DELETE_ON_RELEASE = 1 << 1,
  PORTA_LOCK_FLAGS_REENTRANT         = 1 << 2,
} PortaLockFlags;

/**
 * PORTA_LOCK_ERROR:
 *
 * The error domain of the errors that portalock reports and that have no
 * #GIOErrorEnum code. Every other failure is reported in the %G_IO_ERROR
 * domain: %G_IO_ERROR_WOULD_BLOCK, %G_IO_ERROR_TIMED_OUT,
 * %G_IO_ERROR_CANCELLED, %G_IO_ERROR_NOT_FOUND, and so on.
 *
 * Since: 1.0
 */
#define PORTA_LOCK_ERROR (porta_lock_error_quark ())

/**
 * PortaLockError:
 * @PORTA_LOCK_ERROR_ALREADY_HELD: the #PortaLock already holds its lock;
 *   release it before acquiring it again.
 * @PORTA_LOCK_ERROR_NOT_HELD: the #PortaLock does not hold its lock, so
 *   there is nothing to release.
 * @PORTA_LOCK_ERROR_NOT_ATOMIC: the backend cannot convert a held lock
 *   between shared and exclusive without releasing it in between
 *   (flock(2)); release it and acquire it again, or use the ofd backend.
 *
 * Error codes in the %PORTA_LOCK_ERROR domain.
 *
 * Since: 1.0
 */
typedef enum
{
  PORTA_LOCK_ERROR_ALREADY_HELD,
  PORTA_LOCK_ERROR_NOT_HELD,
  PORTA_LOCK_ERROR_NOT_ATOMIC,
} PortaLockError;

PORTA_AVAILABLE_IN_1_0
GQuark porta_lock_error_quark (void);

G_END_DECLS
