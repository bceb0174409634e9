/* porta-backend-win32.c: the win32 backend, LockFileEx() locks
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <io.h>
#include <string.h>

#include <windows.h>

#include <gio/gio.h>

#include "porta-backend-private.h"
#include "porta-win32-private.h"

#ifndef EINPROGRESS
# define EINPROGRESS 112
#endif

/* Windows byte-range locks are mandatory: a range locked through one
 * handle cannot be read or written through another. So the lock covers a
 * single byte at 2^63 - 2^32, far past the end of any real data, where
 * nobody reads or writes; and locking past the end of a file is allowed.
 * A LockFileEx() lock belongs to the handle (the open file object) that
 * took it, like a flock(2) lock to its open file description, and goes
 * when the handle is closed. */
#define LOCK_OFFSET_LOW  0x00000000u
#define LOCK_OFFSET_HIGH 0x7fffffffu
#define LOCK_LENGTH      1u

/* The errno value that stands for a Windows error code, so that both
 * platforms share one mapping to GIOErrorEnum and one set of messages. */
int
porta_win32_errno (guint32 code)
{
  switch (code)
    {
    case ERROR_LOCK_VIOLATION:
      return EWOULDBLOCK;
    case ERROR_IO_PENDING:
      return EINPROGRESS;
    case ERROR_OPERATION_ABORTED:
      return ECANCELED;
    case ERROR_NOT_SUPPORTED:
    case ERROR_INVALID_FUNCTION:
      return EOPNOTSUPP;
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
    case ERROR_INVALID_DRIVE:
    case ERROR_BAD_NETPATH:
      return ENOENT;
    case ERROR_ACCESS_DENIED:
    case ERROR_SHARING_VIOLATION:
      return EACCES;
    case ERROR_WRITE_PROTECT:
      return EROFS;
    case ERROR_INVALID_HANDLE:
      return EBADF;
    case ERROR_INVALID_PARAMETER:
    case ERROR_INVALID_NAME:
      return EINVAL;
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY:
      return ENOMEM;
    case ERROR_TOO_MANY_OPEN_FILES:
      return EMFILE;
    case ERROR_CANT_RESOLVE_FILENAME:
      return ELOOP;
    case ERROR_DIRECTORY:
      return ENOTDIR;
    case ERROR_FILENAME_EXCED_RANGE:
      return ENAMETOOLONG;
    case ERROR_DISK_FULL:
    case ERROR_HANDLE_DISK_FULL:
      return ENOSPC;
    case ERROR_FILE_EXISTS:
    case ERROR_ALREADY_EXISTS:
      return EEXIST;
    default:
      return EIO;
    }
}

static HANDLE
handle_of (int fd)
{
  return (HANDLE) _get_osfhandle (fd);
}

static void
overlapped_init (OVERLAPPED *ov,
                 HANDLE      event)
{
  memset (ov, 0, sizeof *ov);
  ov->Offset = LOCK_OFFSET_LOW;
  ov->OffsetHigh = LOCK_OFFSET_HIGH;
  ov->hEvent = event;
}

static DWORD
lock_flags (PortaLockMode mode)
{
  return mode == PORTA_LOCK_MODE_SHARED ? 0 : LOCKFILE_EXCLUSIVE_LOCK;
}

/* One attempt that never waits. On an overlapped handle a request that
 * fails at once is not queued, and one that succeeds may still report
 * ERROR_IO_PENDING, completed by then. */
static int
try_lock (HANDLE        handle,
          PortaLockMode mode)
{
  OVERLAPPED ov;
  DWORD n;

  overlapped_init (&ov, NULL);
  if (LockFileEx (handle, lock_flags (mode) | LOCKFILE_FAIL_IMMEDIATELY, 0,
                  LOCK_LENGTH, 0, &ov))
    return 0;
  if (GetLastError () == ERROR_IO_PENDING &&
      GetOverlappedResult (handle, &ov, &n, TRUE))
    return 0;
  return porta_win32_errno (GetLastError ());
}

static int
unlock_handle (HANDLE handle)
{
  OVERLAPPED ov;

  overlapped_init (&ov, NULL);
  if (UnlockFileEx (handle, 0, LOCK_LENGTH, 0, &ov))
    return 0;
  /* Not locked: unlocking is idempotent, as with flock(2). */
  if (GetLastError () == ERROR_NOT_LOCKED)
    return 0;
  return porta_win32_errno (GetLastError ());
}

gboolean
porta_win32_overlapped_waits (void)
{
  static gsize once = 0;
  static gboolean overlapped_ok;

  if (g_once_init_enter (&once))
    {
      const char *env = g_getenv ("PORTALOCK_WIN32_OVERLAPPED");
      HMODULE ntdll = GetModuleHandleW (L"ntdll.dll");

      if (env != NULL)
        overlapped_ok = g_str_equal (env, "1");
      else
        overlapped_ok = ntdll == NULL ||
                        GetProcAddress (ntdll, "wine_get_version") == NULL;
      g_once_init_leave (&once, 1);
    }
  return overlapped_ok;
}

/* A blocking call is made only where porta_lock_file_must_back_off() is
 * FALSE, so never under Wine. */
static int
win32_lock (int           fd,
            PortaLockMode mode,
            gboolean      block)
{
  HANDLE handle = handle_of (fd);
  OVERLAPPED ov;
  DWORD n;
  int r;

  if (handle == INVALID_HANDLE_VALUE)
    return EBADF;
  if (!block)
    return try_lock (handle, mode);

  /* Waits until granted: on an overlapped handle through the request's
   * event, on another one inside LockFileEx() itself. */
  overlapped_init (&ov, CreateEventW (NULL, TRUE, FALSE, NULL));
  if (ov.hEvent == NULL)
    return porta_win32_errno (GetLastError ());
  if (LockFileEx (handle, lock_flags (mode), 0, LOCK_LENGTH, 0, &ov))
    r = 0;
  else if (GetLastError () == ERROR_IO_PENDING &&
           GetOverlappedResult (handle, &ov, &n, TRUE))
    r = 0;
  else
    r = porta_win32_errno (GetLastError ());
  CloseHandle (ov.hEvent);
  return r;
}

static int
win32_unlock (int fd)
{
  HANDLE handle = handle_of (fd);

  if (handle == INVALID_HANDLE_VALUE)
    return EBADF;
  return unlock_handle (handle);
}

const PortaBackendOps porta_win32_ops = {
  PORTA_BACKEND_WIN32, FALSE, FALSE, win32_lock, win32_unlock,
};

gsize
porta_win32_overlapped_size (void)
{
  return sizeof (OVERLAPPED);
}

int
porta_win32_lock_start (const PortaLockFile *lf,
                        PortaLockMode        mode,
                        gpointer             overlapped_out,
                        gpointer             event)
{
  OVERLAPPED *ov = overlapped_out;
  HANDLE handle = handle_of (lf->fd);

  overlapped_init (ov, event);
  if (LockFileEx (handle, lock_flags (mode), 0, LOCK_LENGTH, 0, ov))
    return 0;
  return porta_win32_errno (GetLastError ());
}

int
porta_win32_lock_finish (const PortaLockFile *lf,
                         gpointer             overlapped,
                         gboolean             abandon)
{
  OVERLAPPED *ov = overlapped;
  HANDLE handle = handle_of (lf->fd);
  DWORD n;

  if (abandon)
    {
      /* The OVERLAPPED must outlive the request: wait for it to end, and
       * give back a lock the kernel granted before the cancel reached it. */
      CancelIoEx (handle, ov);
      if (GetOverlappedResult (handle, ov, &n, TRUE))
        unlock_handle (handle);
      return ECANCELED;
    }
  if (GetOverlappedResult (handle, ov, &n, TRUE))
    return 0;
  return porta_win32_errno (GetLastError ());
}
