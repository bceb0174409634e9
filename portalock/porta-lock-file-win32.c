/* porta-lock-file-win32.c: the lock file on Windows: opening, identifying
 * and verifying it, and the second handles and names made from it
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

#include "porta-i18n-private.h"
#include "porta-lock-errors-private.h"
#include "porta-lock-file-private.h"
#include "porta-win32-private.h"

extern const PortaBackendOps porta_win32_ops;

static HANDLE
handle_of (int fd)
{
  return (HANDLE) _get_osfhandle (fd);
}

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
  int fd;
  int r;

  *held = FALSE;
  if (wpath == NULL)
    return EINVAL;
  handle = open_handle (wpath, GENERIC_READ, OPEN_EXISTING,
                        FILE_ATTRIBUTE_NORMAL | (follow ? 0 : FILE_FLAG_OPEN_REPARSE_POINT));
  if (handle == INVALID_HANDLE_VALUE)
    return porta_win32_errno (GetLastError ());
  fd = _open_osfhandle ((intptr_t) handle, _O_BINARY | _O_RDONLY);
  if (fd < 0)
    {
      CloseHandle (handle);
      return EMFILE;
    }
  /* An exclusive attempt conflicts with every holder, shared ones too. */
  r = porta_win32_ops.lock (fd, PORTA_LOCK_MODE_EXCLUSIVE, FALSE);
  if (r == 0)
    porta_win32_ops.unlock (fd);
  else if (r == EWOULDBLOCK)
    {
      *held = TRUE;
      r = 0;
    }
  _close (fd);
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
