/* porta-backend.c: the flock, OFD and POSIX backends, and choosing one
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>

#include <gio/gio.h>

#ifdef G_OS_UNIX
# include <sys/file.h>
# include <unistd.h>
#endif

#include "porta-backend-private.h"
#include "porta-enums.h"

/* The Windows backend is in porta-backend-win32.c. */
#ifdef G_OS_WIN32
extern const PortaBackendOps porta_win32_ops;
#endif

#ifdef G_OS_UNIX

/* flock(2): owned by the open file description. */

static int
flock_lock (int fd, PortaLockMode mode, gboolean block)
{
  int op = mode == PORTA_LOCK_MODE_SHARED ? LOCK_SH : LOCK_EX;

  if (!block)
    op |= LOCK_NB;
  if (flock (fd, op) == 0)
    return 0;
  return errno == EAGAIN ? EWOULDBLOCK : errno;
}

static int
flock_unlock (int fd)
{
  return flock (fd, LOCK_UN) == 0 ? 0 : errno;
}

/* fcntl(2) record locks on the whole file, in their OFD or classic form. */

static int
fcntl_lock (int fd, int cmd, short type)
{
  struct flock fl = { 0 };

  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 0;
  if (fcntl (fd, cmd, &fl) == 0)
    return 0;
  /* A conflicting fcntl lock is reported as EAGAIN or EACCES. */
  if (errno == EAGAIN || errno == EACCES)
    return EWOULDBLOCK;
  return errno;
}

#ifdef HAVE_OFD_LOCKS
static int
ofd_lock (int fd, PortaLockMode mode, gboolean block)
{
  return fcntl_lock (fd, block ? F_OFD_SETLKW : F_OFD_SETLK,
                     mode == PORTA_LOCK_MODE_SHARED ? F_RDLCK : F_WRLCK);
}

static int
ofd_unlock (int fd)
{
  return fcntl_lock (fd, F_OFD_SETLK, F_UNLCK);
}
#endif

static int
posix_lock (int fd, PortaLockMode mode, gboolean block)
{
  return fcntl_lock (fd, block ? F_SETLKW : F_SETLK,
                     mode == PORTA_LOCK_MODE_SHARED ? F_RDLCK : F_WRLCK);
}

static int
posix_unlock (int fd)
{
  return fcntl_lock (fd, F_SETLK, F_UNLCK);
}

static const PortaBackendOps flock_ops = {
  PORTA_BACKEND_FLOCK, FALSE, FALSE, flock_lock, flock_unlock,
};

#ifdef HAVE_OFD_LOCKS
static const PortaBackendOps ofd_ops = {
  PORTA_BACKEND_OFD, TRUE, FALSE, ofd_lock, ofd_unlock,
};
#endif

static const PortaBackendOps posix_ops = {
  PORTA_BACKEND_POSIX, TRUE, TRUE, posix_lock, posix_unlock,
};

#endif /* G_OS_UNIX */

PortaBackend
porta_backend_resolve (PortaBackend backend)
{
  if (backend != PORTA_BACKEND_DEFAULT)
    return backend;
#ifdef G_OS_WIN32
  return PORTA_BACKEND_WIN32;
#else
  return PORTA_BACKEND_FLOCK;
#endif
}

const PortaBackendOps *
porta_backend_get_ops (PortaBackend backend)
{
  switch (porta_backend_resolve (backend))
    {
#ifdef G_OS_UNIX
    case PORTA_BACKEND_FLOCK:
      return &flock_ops;
    case PORTA_BACKEND_OFD:
# ifdef HAVE_OFD_LOCKS
      return &ofd_ops;
# else
      return NULL;
# endif
    case PORTA_BACKEND_POSIX:
      return &posix_ops;
    case PORTA_BACKEND_WIN32:
      return NULL;
#else
    case PORTA_BACKEND_WIN32:
      return &porta_win32_ops;
    case PORTA_BACKEND_FLOCK:
    case PORTA_BACKEND_OFD:
    case PORTA_BACKEND_POSIX:
      return NULL;
#endif
    case PORTA_BACKEND_DEFAULT:
    default:
      return NULL;
    }
}

/* The nick of the PortaBackend value, as GObject properties and the
 * bindings spell it. */
const char *
porta_backend_get_name (PortaBackend backend)
{
  static GEnumClass *backends;
  GEnumValue *value;

  if (g_once_init_enter (&backends))
    g_once_init_leave (&backends, g_type_class_ref (PORTA_TYPE_BACKEND));
  value = g_enum_get_value (backends, porta_backend_resolve (backend));
  return value != NULL ? value->value_nick : "unknown";
}
