/* porta-lock-errors.c: the messages of a lock that could not be opened,
 * taken or checked, which a person must be able to act on
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>

#include <gio/gio.h>

#include "porta-holder-private.h"
#include "porta-i18n-private.h"
#include "porta-lock-errors-private.h"

gboolean
porta_is_missing_folder (const char *path)
{
  g_autofree char *dir = g_path_get_dirname (path);

  return !g_file_test (dir, G_FILE_TEST_IS_DIR);
}

void
porta_set_open_error (GError     **error,
                      int          errsv,
                      const char  *path,
                      const char  *display)
{
  if (errsv == ENOENT && porta_is_missing_folder (path))
    {
      g_autofree char *dir = g_path_get_dirname (display);

      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                   _("Cannot create lock file “%s”: the folder “%s” does not exist"),
                   display, dir);
    }
  else if (errsv == ELOOP)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_TOO_MANY_LINKS,
                 _("Refusing to lock “%s”: it is a symbolic link, and locks "
                   "follow symbolic links only when asked to"),
                 display);
  else if (errsv == EISDIR)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_IS_DIRECTORY,
                 _("Cannot lock “%s”: it is a folder"), display);
  else
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errsv),
                 _("Cannot open lock file “%s”: %s"),
                 display, g_strerror (errsv));
}

void
porta_set_check_error (GError     **error,
                       int          errsv,
                       const char  *display)
{
  g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errsv),
               _("Cannot check lock file “%s” after locking it: %s"),
               display, g_strerror (errsv));
}

/* O_RDONLY, O_WRONLY or O_RDWR for an open descriptor, -1 if it is not
 * open (or the system does not say). */
static int
porta_fd_access_mode (int fd)
{
#ifdef G_OS_UNIX
  int flags = fd >= 0 ? fcntl (fd, F_GETFL) : -1;

  return flags < 0 ? -1 : (flags & O_ACCMODE);
#else
  return -1;
#endif
}

/* Sets an error for a failed lock call. When the lock is taken, the
 * message names the holder where the kernel tells who it is. */
void
porta_set_lock_error (GError                **error,
                      int                     errsv,
                      const char             *display,
                      const PortaBackendOps  *ops,
                      const PortaLockFile    *lf)
{
  switch (errsv)
    {
    case EWOULDBLOCK:
      {
        g_autofree char *holder = NULL;

        if (lf != NULL && lf->fd >= 0)
          holder = porta_holder_describe (lf->dev, lf->ino, ops->id == PORTA_BACKEND_FLOCK);
        if (holder == NULL)
          holder = g_strdup (_("an unknown process"));
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK,
                     _("Cannot lock “%s”: it is held by %s"),
                     display, holder);
      }
      break;
    case ENOLCK:
    case EOPNOTSUPP:
    case EINVAL:
    case ENOSYS:
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   _("Cannot lock “%s”: its filesystem does not support %s locks (%s)"),
                   display, porta_backend_get_name (ops->id), g_strerror (errsv));
      break;
    case EBADF:
      /* fcntl() locks: a write lock needs the file open for writing, a
       * read lock open for reading. Else the descriptor is not open. */
      switch (lf != NULL ? porta_fd_access_mode (lf->fd) : -1)
        {
        case O_RDONLY:
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                       _("Cannot lock “%s”: the file is not open for writing, "
                         "which %s write locks need"),
                       display, porta_backend_get_name (ops->id));
          break;
        case O_WRONLY:
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                       _("Cannot lock “%s”: the file is not open for reading, "
                         "which %s read locks need"),
                       display, porta_backend_get_name (ops->id));
          break;
        default:
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                       _("Cannot lock “%s”: %s"), display, g_strerror (errsv));
          break;
        }
      break;
    case EDEADLK:
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                   _("Cannot lock “%s”: waiting would deadlock (%s)"),
                   display, g_strerror (errsv));
      break;
    default:
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errsv),
                   _("Cannot lock “%s”: %s"), display, g_strerror (errsv));
      break;
    }
}

/* Sets an error for a wait that ended without the lock: timed out or
 * cancelled (porta_set_wait_end_error()), or a failed lock call. */
void
porta_set_wait_error (GError                **error,
                      int                     result,
                      int                     timeout_ms,
                      const char             *holder,
                      PortaHolderUnknown      unknown,
                      const char             *display,
                      const PortaBackendOps  *ops,
                      const PortaLockFile    *lf)
{
  if (!porta_set_wait_end_error (error, result, timeout_ms, holder, unknown, display))
    porta_set_lock_error (error, result, display, ops, lf);
}
