/* porta-lock-file.c: the lock file on Unix: opening, identifying and
 * verifying it, the registry that keeps POSIX locks from being dropped by
 * another descriptor's close(), and whether waits on it must back off
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include <gio/gio.h>

#ifdef G_OS_UNIX
# include <sys/stat.h>
# include <unistd.h>
# ifdef HAVE_SYS_VFS_H
#  include <sys/vfs.h>
# endif
#endif

#include "porta-i18n-private.h"
#include "porta-lock-errors-private.h"
#include "porta-lock-file-private.h"

#ifdef G_OS_UNIX

/* POSIX locks belong to the process, and closing *any* descriptor of a file
 * drops every POSIX lock the process holds on it. So that no PortaLock drops
 * another one's POSIX lock, the descriptors of lock files are closed under
 * one mutex, and while a POSIX-backed lock has a file open, the descriptors
 * other locks close on that file are only unlocked and parked, to be closed
 * when the last POSIX user of the file closes its own. A second POSIX-backed
 * lock on a file already open for one is refused: the kernel would merge
 * both into one lock of the process. */

typedef struct
{
  guint64 dev;
  guint64 ino;
  guint   n_posix;
  GArray *parked_fds;
} PosixEntry;

static GMutex      registry_lock;
static GHashTable *registry;   /* owned by registry_lock */

static guint
posix_entry_hash (gconstpointer key)
{
  const PosixEntry *e = key;

  return (guint) e->ino ^ (guint) (e->ino >> 32) ^ (guint) e->dev;
}

static gboolean
posix_entry_equal (gconstpointer a,
                   gconstpointer b)
{
  const PosixEntry *ea = a, *eb = b;

  return ea->dev == eb->dev && ea->ino == eb->ino;
}

static PosixEntry *
registry_lookup (guint64 dev,
                 guint64 ino)
{
  PosixEntry key = { dev, ino, 0, NULL };

  if (registry == NULL)
    return NULL;
  return g_hash_table_lookup (registry, &key);
}

static void
close_noerror (int fd)
{
  int errsv = errno;

  /* close() is never retried on Linux: the descriptor is gone either way */
  (void) close (fd);
  errno = errsv;
}

/* Why opening for writing can fail where opening for reading may not: no
 * write permission, a read-only filesystem or file attribute, or a program
 * that is running (ETXTBSY: a lock file may be a script that locks itself,
 * or a running program). */
static gboolean
write_refused (int errsv)
{
  return errsv == EACCES || errsv == EROFS || errsv == EPERM || errsv == ETXTBSY;
}

static int
open_lock_fd (const char            *path,
              PortaLockMode          mode,
              PortaLockFlags         flags,
              const PortaBackendOps *ops)
{
  /* O_NONBLOCK: opening a FIFO must fail the regular-file check below,
   * not hang waiting for a writer. It changes nothing for regular files. */
  int common = O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  int fd;
  int errsv;

  if (!(flags & PORTA_LOCK_FLAGS_FOLLOW_SYMLINKS))
    common |= O_NOFOLLOW;

  fd = open (path, O_RDWR | O_CREAT | common, 0644);
  if (fd >= 0 || !write_refused (errno))
    return fd;

  /* Not writable: flock() locks and fcntl() read locks work on a
   * descriptor opened for reading only. */
  errsv = errno;
  if (mode == PORTA_LOCK_MODE_EXCLUSIVE && ops->exclusive_needs_write)
    return -1;
  fd = open (path, O_RDONLY | common);
  if (fd < 0 && errno == ENOENT)
    errno = errsv;
  return fd;
}

/* The type check and identity of an open lock file from its stat(). */
static gboolean
identify_from_stat (PortaLockFile      *lf,
                    const struct stat  *st,
                    const char         *display,
                    GError            **error)
{
  if (!S_ISREG (st->st_mode))
    {
      if (S_ISDIR (st->st_mode))
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_IS_DIRECTORY,
                     _("Cannot lock “%s”: it is a folder"), display);
      else
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_REGULAR_FILE,
                     _("Cannot lock “%s”: it is not a regular file"), display);
      return FALSE;
    }
  lf->dev = st->st_dev;
  lf->ino = st->st_ino;
  lf->identified = TRUE;
  return TRUE;
}

gboolean
porta_lock_file_identify (PortaLockFile  *lf,
                          const char     *display,
                          GError        **error)
{
  struct stat st;

  if (lf->identified)
    return TRUE;
  if (fstat (lf->fd, &st) != 0)
    {
      int errsv = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errsv),
                   _("Cannot open lock file “%s”: %s"), display, g_strerror (errsv));
      return FALSE;
    }
  return identify_from_stat (lf, &st, display, error);
}

gboolean
porta_lock_file_verify (PortaLockFile   *lf,
                        const char      *path,
                        const char      *display,
                        PortaLockFlags   flags,
                        gboolean        *stale,
                        GError         **error)
{
  struct stat st;

  *stale = FALSE;
  if (fstat (lf->fd, &st) != 0)
    {
      porta_set_check_error (error, errno, display);
      return FALSE;
    }
  if (!lf->identified && !identify_from_stat (lf, &st, display, error))
    return FALSE;

  /* Deleted, or replaced by a rename over it: its last link is gone. */
  if (st.st_nlink == 0)
    {
      *stale = TRUE;
      return TRUE;
    }
  /* The one link it has is the path we opened, unless it was renamed away
   * while its holder held the lock, which lock files are not. A file with
   * more links, or one reached through a symbolic link that may have been
   * pointed elsewhere, is looked up by its path. */
  if (st.st_nlink == 1 && !(flags & PORTA_LOCK_FLAGS_FOLLOW_SYMLINKS))
    return TRUE;
  return porta_lock_file_verify_path (lf, path, display, flags, stale, error);
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
  struct stat st;
  int fd;

  g_assert (lf->fd < 0);
  lf->overlapped = FALSE;
  lf->identified = FALSE;

  fd = open_lock_fd (path, mode, flags, ops);
  if (fd < 0)
    {
      int errsv = errno;

      if (write_refused (errsv) &&
          mode == PORTA_LOCK_MODE_EXCLUSIVE && ops->exclusive_needs_write)
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                     _("Cannot take an exclusive %s lock on “%s”: "
                       "the file cannot be opened for writing (%s)"),
                     porta_backend_get_name (ops->id), display, g_strerror (errsv));
      else
        porta_set_open_error (error, errsv, path, display);
      return FALSE;
    }

  /* A lock of the open file description needs nothing more until it is
   * taken, when porta_lock_file_verify() identifies the file. */
  if (!ops->per_process)
    {
      lf->fd = fd;
      return TRUE;
    }

  /* POSIX locks must know the file before they lock it: see the registry
   * above. */
  if (fstat (fd, &st) != 0)
    {
      int errsv = errno;

      close_noerror (fd);
      porta_set_open_error (error, errsv, path, display);
      return FALSE;
    }
  if (!identify_from_stat (lf, &st, display, error))
    {
      close_noerror (fd);
      return FALSE;
    }

  {
    PosixEntry *entry;

    g_mutex_lock (&registry_lock);
    if (registry == NULL)
      registry = g_hash_table_new (posix_entry_hash, posix_entry_equal);
    entry = registry_lookup (st.st_dev, st.st_ino);
    if (entry != NULL && entry->n_posix > 0)
      {
        /* Closing it would drop the other lock: park it instead. */
        g_array_append_val (entry->parked_fds, fd);
        g_mutex_unlock (&registry_lock);
        lf->identified = FALSE;
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_BUSY,
                     _("Cannot lock “%s” with the posix backend: another lock "
                       "in this process has it open, and POSIX locks cannot "
                       "tell two holders in one process apart (use the flock "
                       "or ofd backend)"),
                     display);
        return FALSE;
      }
    if (entry == NULL)
      {
        entry = g_new0 (PosixEntry, 1);
        entry->dev = st.st_dev;
        entry->ino = st.st_ino;
        entry->parked_fds = g_array_new (FALSE, FALSE, sizeof (int));
        g_hash_table_add (registry, entry);
      }
    entry->n_posix++;
    g_mutex_unlock (&registry_lock);
  }

  lf->fd = fd;
  return TRUE;
}

int
porta_fd_identify (int      fd,
                   guint64 *dev,
                   guint64 *ino)
{
  struct stat st;

  if (fstat (fd, &st) != 0)
    return errno;
  *dev = st.st_dev;
  *ino = st.st_ino;
  return 0;
}

int
porta_path_unlink (const char *path)
{
  return unlink (path) == 0 ? 0 : errno;
}

int
porta_path_identify (const char *path,
                     gboolean    follow,
                     guint64    *dev,
                     guint64    *ino)
{
  struct stat st;

  if ((follow ? stat (path, &st) : lstat (path, &st)) != 0)
    return errno;
  *dev = st.st_dev;
  *ino = st.st_ino;
  return 0;
}

void
porta_lock_file_close (PortaLockFile         *lf,
                       const PortaBackendOps *ops)
{
  PosixEntry *entry;

  if (lf->fd < 0)
    return;

  g_mutex_lock (&registry_lock);
  if (!lf->identified && registry != NULL && g_hash_table_size (registry) > 0)
    {
      /* Only a file this process has POSIX locks on needs care, and only
       * its identity tells. */
      struct stat st;

      if (fstat (lf->fd, &st) == 0)
        {
          lf->dev = st.st_dev;
          lf->ino = st.st_ino;
          lf->identified = TRUE;
        }
    }
  entry = lf->identified ? registry_lookup (lf->dev, lf->ino) : NULL;
  if (entry == NULL)
    close_noerror (lf->fd);
  else if (!ops->per_process)
    {
      /* Dropping our own lock is safe; closing would drop theirs. */
      ops->unlock (lf->fd);
      g_array_append_val (entry->parked_fds, lf->fd);
    }
  else if (--entry->n_posix > 0)
    {
      /* A refused second POSIX lock never reaches here: it was parked. */
      g_array_append_val (entry->parked_fds, lf->fd);
    }
  else
    {
      for (guint i = 0; i < entry->parked_fds->len; i++)
        close_noerror (g_array_index (entry->parked_fds, int, i));
      close_noerror (lf->fd);
      g_hash_table_remove (registry, entry);
      g_array_unref (entry->parked_fds);
      g_free (entry);
    }
  g_mutex_unlock (&registry_lock);

  lf->fd = -1;
  lf->identified = FALSE;
}

/* Network and FUSE filesystems: a blocking lock call may never be woken, or
 * only by the server's slow callback, so waits there back off and retry. */
gboolean
porta_lock_file_must_back_off (const PortaLockFile *lf)
{
#if defined (HAVE_SYS_VFS_H) && defined (__linux__)
  static const long remote_magics[] = {
    0x6969,      /* NFS */
    0x517b,      /* SMB */
    0xff534d42,  /* CIFS */
    0xfe534d42,  /* SMB2 */
    0x65735546,  /* FUSE */
    0x00c36400,  /* Ceph */
    0x01021997,  /* 9p */
    0x5346414f,  /* AFS */
    0x6b414653,  /* kAFS */
    0x73757245,  /* Coda */
    0x0bd00bd0,  /* Lustre */
    0x47504653,  /* GPFS */
    0x7461636f,  /* OCFS2 */
    0x01161970,  /* GFS2 */
  };
  struct statfs sfs;

  if (fstatfs (lf->fd, &sfs) != 0)
    return FALSE;
  for (gsize i = 0; i < G_N_ELEMENTS (remote_magics); i++)
    if ((unsigned long) sfs.f_type == (unsigned long) remote_magics[i])
      return TRUE;
  return FALSE;
#else
  return FALSE;
#endif
}

#endif /* G_OS_UNIX */

/* Both systems: the file at the path is still the one locked. */

gboolean
porta_lock_file_verify_path (const PortaLockFile  *lf,
                             const char           *path,
                             const char           *display,
                             PortaLockFlags        flags,
                             gboolean             *stale,
                             GError              **error)
{
  int r = porta_lock_file_check (lf, path, flags);

  *stale = r == ENOENT || r == ESTALE;
  if (r != 0 && !*stale)
    {
      porta_set_check_error (error, r, display);
      return FALSE;
    }
  return TRUE;
}

int
porta_lock_file_check (const PortaLockFile *lf,
                       const char          *path,
                       PortaLockFlags       flags)
{
  guint64 dev = 0, ino = 0;
  int r;

  r = porta_path_identify (path, (flags & PORTA_LOCK_FLAGS_FOLLOW_SYMLINKS) != 0, &dev, &ino);
  if (r != 0)
    return r;
  if (dev != lf->dev || ino != lf->ino)
    return ESTALE;
  return 0;
}
