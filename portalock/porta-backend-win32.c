/* porta-backend-win32.c: LockFileEx() locks, and the lock file on Windows
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
#include "porta-i18n-private.h"

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

int
porta_win32_wait_sync (const PortaLockFile *lf,
                       PortaLockMode        mode,
                       gint64               deadline,
                       GCancellable        *cancellable)
{
  HANDLE handles[2];
  DWORD n_handles = 1;
  OVERLAPPED ov;
  GPollFD cancel_fd;
  gboolean have_cancel_fd;
  HANDLE event;
  int r;

  event = CreateEventW (NULL, TRUE, FALSE, NULL);
  if (event == NULL)
    return -1;
  r = porta_win32_lock_start (lf, mode, &ov, event);
  if (r != EINPROGRESS)
    {
      CloseHandle (event);
      return r;
    }

  handles[0] = event;
  have_cancel_fd = cancellable != NULL &&
                   g_cancellable_make_pollfd (cancellable, &cancel_fd);
  if (have_cancel_fd)
    handles[n_handles++] = (HANDLE) cancel_fd.fd;

  for (;;)
    {
      DWORD timeout = INFINITE;
      DWORD w;

      if (deadline >= 0)
        {
          gint64 remaining = deadline - g_get_monotonic_time ();

          timeout = remaining <= 0 ? 0 : (DWORD) ((remaining + 999) / 1000);
        }
      w = WaitForMultipleObjects (n_handles, handles, FALSE, timeout);
      if (w == WAIT_OBJECT_0)
        {
          r = porta_win32_lock_finish (lf, &ov, FALSE);
          /* As on Linux, a cancellation that came as the lock was granted
           * wins: the wait must not end holding a lock the caller gave up. */
          if (r == 0 && g_cancellable_is_cancelled (cancellable))
            {
              unlock_handle (handle_of (lf->fd));
              r = ECANCELED;
            }
          break;
        }
      if (g_cancellable_is_cancelled (cancellable))
        {
          r = porta_win32_lock_finish (lf, &ov, TRUE);
          break;
        }
      if (w == WAIT_FAILED ||
          (deadline >= 0 && g_get_monotonic_time () >= deadline))
        {
          porta_win32_lock_finish (lf, &ov, TRUE);
          r = w == WAIT_FAILED ? porta_win32_errno (GetLastError ()) : ETIMEDOUT;
          break;
        }
    }

  if (have_cancel_fd)
    g_cancellable_release_fd (cancellable);
  CloseHandle (event);
  return r;
}

/* Opening the lock file. */

static wchar_t *
to_utf16 (const char *path)
{
  /* GLib's filename encoding on Windows is UTF-8. */
  return g_utf8_to_utf16 (path, -1, NULL, NULL, NULL);
}

static HANDLE
open_handle (const wchar_t *wpath,
             DWORD          access,
             DWORD          disposition,
             DWORD          flags)
{
  return CreateFileW (wpath, access,
                      FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                      NULL, disposition, flags, NULL);
}

static void
identity_of (const BY_HANDLE_FILE_INFORMATION *info,
             guint64                          *dev,
             guint64                          *ino)
{
  *dev = info->dwVolumeSerialNumber;
  *ino = ((guint64) info->nFileIndexHigh << 32) | info->nFileIndexLow;
}

gboolean
porta_lock_file_open (PortaLockFile          *lf,
                      const char             *path,
                      const char             *display,
                      PortaLockMode           mode,
                      PortaLockFlags          flags,
                      const PortaBackendOps  *ops,
                      GError                **error)
{
  g_autofree wchar_t *wpath = to_utf16 (path);
  BY_HANDLE_FILE_INFORMATION info;
  DWORD open_flags = FILE_ATTRIBUTE_NORMAL | FILE_FLAG_OVERLAPPED;
  gboolean writable = TRUE;
  HANDLE handle;
  int fd;

  g_assert (lf->fd < 0);

  if (wpath == NULL)
    {
      porta_set_open_error (error, EINVAL, path, display);
      return FALSE;
    }
  if (!(flags & PORTA_LOCK_FLAGS_FOLLOW_SYMLINKS))
    open_flags |= FILE_FLAG_OPEN_REPARSE_POINT;

  /* Shared read, write and delete: the lock must not keep anyone from
   * reading, writing or deleting the file; only the lock excludes. */
  handle = open_handle (wpath, GENERIC_READ | GENERIC_WRITE, OPEN_ALWAYS, open_flags);
  if (handle == INVALID_HANDLE_VALUE && GetLastError () == ERROR_ACCESS_DENIED)
    {
      /* A read-only file: LockFileEx() needs only read access, for
       * exclusive locks too. */
      writable = FALSE;
      handle = open_handle (wpath, GENERIC_READ, OPEN_EXISTING, open_flags);
    }
  if (handle == INVALID_HANDLE_VALUE)
    {
      int errsv = porta_win32_errno (GetLastError ());
      DWORD attributes = GetFileAttributesW (wpath);

      if (attributes != INVALID_FILE_ATTRIBUTES && (attributes & FILE_ATTRIBUTE_DIRECTORY))
        errsv = EISDIR;
      porta_set_open_error (error, errsv, path, display);
      return FALSE;
    }

  if (!GetFileInformationByHandle (handle, &info))
    {
      int errsv = porta_win32_errno (GetLastError ());

      CloseHandle (handle);
      porta_set_open_error (error, errsv, path, display);
      return FALSE;
    }
  if (info.dwFileAttributes & FILE_ATTRIBUTE_REPARSE_POINT)
    {
      CloseHandle (handle);
      porta_set_open_error (error, ELOOP, path, display);
      return FALSE;
    }
  if (GetFileType (handle) != FILE_TYPE_DISK)
    {
      CloseHandle (handle);
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_REGULAR_FILE,
                   _("Cannot lock “%s”: it is not a regular file"), display);
      return FALSE;
    }

  /* A C runtime descriptor over the handle, closed with it. Handles are
   * not inherited: CreateFileW() was given no inheritable attributes. */
  fd = _open_osfhandle ((intptr_t) handle, _O_BINARY | (writable ? _O_RDWR : _O_RDONLY));
  if (fd < 0)
    {
      CloseHandle (handle);
      porta_set_open_error (error, EMFILE, path, display);
      return FALSE;
    }

  lf->fd = fd;
  identity_of (&info, &lf->dev, &lf->ino);
  lf->identified = TRUE;
  lf->overlapped = TRUE;
  return TRUE;
}

/* The file was identified when it was opened. */
gboolean
porta_lock_file_identify (PortaLockFile  *lf,
                          const char     *display,
                          GError        **error)
{
  g_assert (lf->identified);
  return TRUE;
}

gboolean
porta_lock_file_verify (PortaLockFile   *lf,
                        const char      *path,
                        const char      *display,
                        PortaLockFlags   flags,
                        gboolean        *stale,
                        GError         **error)
{
  /* Windows has no cheaper check than the path. */
  return porta_lock_file_verify_path (lf, path, display, flags, stale, error);
}

void
porta_lock_file_close (PortaLockFile         *lf,
                       const PortaBackendOps *ops)
{
  if (lf->fd < 0)
    return;
  _close (lf->fd);
  lf->fd = -1;
}

/* Waits back off under Wine (see porta_win32_overlapped_waits()), and on
 * network shares, as they do on network filesystems on Linux: only remote
 * files have remote protocol information. */
gboolean
porta_lock_file_must_back_off (const PortaLockFile *lf)
{
  FILE_REMOTE_PROTOCOL_INFO info;

  if (!porta_win32_overlapped_waits ())
    return TRUE;
  return GetFileInformationByHandleEx (handle_of (lf->fd), FileRemoteProtocolInfo,
                                       &info, sizeof info);
}

int
porta_fd_identify (int      fd,
                   guint64 *dev,
                   guint64 *ino)
{
  BY_HANDLE_FILE_INFORMATION info;
  HANDLE handle = handle_of (fd);

  if (handle == INVALID_HANDLE_VALUE)
    return EBADF;
  if (!GetFileInformationByHandle (handle, &info))
    return porta_win32_errno (GetLastError ());
  identity_of (&info, dev, ino);
  return 0;
}

int
porta_path_identify (const char *path,
                     gboolean    follow,
                     guint64    *dev,
                     guint64    *ino)
{
  g_autofree wchar_t *wpath = to_utf16 (path);
  BY_HANDLE_FILE_INFORMATION info;
  HANDLE handle;
  int r = 0;

  if (wpath == NULL)
    return EINVAL;
  /* No access rights: only the file's identity is asked for. */
  handle = open_handle (wpath, 0, OPEN_EXISTING,
                        FILE_FLAG_BACKUP_SEMANTICS |
                        (follow ? 0 : FILE_FLAG_OPEN_REPARSE_POINT));
  if (handle == INVALID_HANDLE_VALUE)
    return porta_win32_errno (GetLastError ());
  if (GetFileInformationByHandle (handle, &info))
    identity_of (&info, dev, ino);
  else
    r = porta_win32_errno (GetLastError ());
  CloseHandle (handle);
  return r;
}

/* Deleting an open file on Windows only marks it for deletion when its
 * last handle closes, and until then its name can be neither opened nor
 * created again. Waiters hold handles to the lock file, so the file is
 * first renamed out of the way, which frees the name at once, and the
 * renamed file is then deleted. */
int
porta_path_unlink (const char *path)
{
  g_autofree wchar_t *wpath = to_utf16 (path);
  g_autofree char *dir = g_path_get_dirname (path);
  g_autofree char *base = g_path_get_basename (path);
  g_autofree char *aside = NULL;
  g_autofree wchar_t *waside = NULL;

  if (wpath == NULL)
    return EINVAL;
  aside = g_strdup_printf ("%s%c.%s.%lu.%08x.deleted", dir, G_DIR_SEPARATOR, base,
                           (unsigned long) GetCurrentProcessId (), g_random_int ());
  waside = to_utf16 (aside);
  if (waside != NULL && MoveFileExW (wpath, waside, 0))
    {
      if (!DeleteFileW (waside))
        return porta_win32_errno (GetLastError ());
      return 0;
    }
  if (GetLastError () == ERROR_FILE_NOT_FOUND || GetLastError () == ERROR_PATH_NOT_FOUND)
    return ENOENT;
  /* Renaming may be refused where deleting is not. */
  if (!DeleteFileW (wpath))
    return porta_win32_errno (GetLastError ());
  return 0;
}

int
porta_win32_probe_held (const char *path,
                        gboolean    follow,
                        gboolean   *held)
{
  g_autofree wchar_t *wpath = to_utf16 (path);
  HANDLE handle;
  int r;

  *held = FALSE;
  if (wpath == NULL)
    return EINVAL;
  handle = open_handle (wpath, GENERIC_READ, OPEN_EXISTING,
                        FILE_ATTRIBUTE_NORMAL | (follow ? 0 : FILE_FLAG_OPEN_REPARSE_POINT));
  if (handle == INVALID_HANDLE_VALUE)
    return porta_win32_errno (GetLastError ());
  /* An exclusive attempt conflicts with every holder, shared ones too. */
  r = try_lock (handle, PORTA_LOCK_MODE_EXCLUSIVE);
  if (r == 0)
    unlock_handle (handle);
  else if (r == EWOULDBLOCK)
    {
      *held = TRUE;
      r = 0;
    }
  CloseHandle (handle);
  return r;
}

int
porta_win32_reopen_fd (int fd)
{
  HANDLE handle = handle_of (fd);
  DWORD share = FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE;
  gboolean writable = TRUE;
  HANDLE copy;
  int copy_fd;

  if (handle == INVALID_HANDLE_VALUE)
    {
      errno = EBADF;
      return -1;
    }
  copy = ReOpenFile (handle, GENERIC_READ | GENERIC_WRITE, share, 0);
  if (copy == INVALID_HANDLE_VALUE && GetLastError () == ERROR_ACCESS_DENIED)
    {
      writable = FALSE;
      copy = ReOpenFile (handle, GENERIC_READ, share, 0);
    }
  if (copy == INVALID_HANDLE_VALUE)
    {
      errno = porta_win32_errno (GetLastError ());
      return -1;
    }
  copy_fd = _open_osfhandle ((intptr_t) copy, _O_BINARY | (writable ? _O_RDWR : _O_RDONLY));
  if (copy_fd < 0)
    {
      CloseHandle (copy);
      errno = EMFILE;
      return -1;
    }
  return copy_fd;
}

char *
porta_win32_fd_path (int fd)
{
  HANDLE handle = handle_of (fd);
  wchar_t buf[MAX_PATH + 8];
  DWORD n;
  char *path;

  if (handle == INVALID_HANDLE_VALUE)
    return NULL;
  n = GetFinalPathNameByHandleW (handle, buf, G_N_ELEMENTS (buf), FILE_NAME_NORMALIZED);
  if (n == 0 || n >= G_N_ELEMENTS (buf))
    return NULL;
  path = g_utf16_to_utf8 (buf, n, NULL, NULL, NULL);
  if (path != NULL && g_str_has_prefix (path, "\\\\?\\"))
    memmove (path, path + 4, strlen (path + 4) + 1);
  return path;
}
