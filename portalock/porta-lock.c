/* porta-lock.c: a lock on a file, shared between processes and threads
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>

#include "porta-attempt-private.h"
#include "porta-enums.h"
#include "porta-holder-private.h"
#include "porta-i18n-private.h"
#include "porta-lock-errors-private.h"
#include "porta-lock-stream-private.h"
#include "porta-lock.h"
#include "porta-lockable.h"
#include "porta-win32-private.h"

/**
 * SECTION:porta-lock
 * @Title: PortaLock
 * @Short_description: an advisory lock on a file, between processes and threads
 *
 * A #PortaLock locks one file, exclusively or shared, against every other
 * #PortaLock and every other program that locks the same file with the same
 * kind of kernel lock (see #PortaBackend).
 *
 * |[<!-- language="C" -->
 * g_autoptr(PortaLock) lock = porta_lock_new_for_path ("/run/user/1000/app.lock",
 *                                                      PORTA_LOCK_MODE_EXCLUSIVE);
 * g_autoptr(GError) error = NULL;
 *
 * if (!porta_lock_acquire (lock, 5000, NULL, &error))
 *   {
 *     g_printerr ("%s\n", error->message);
 *     return FALSE;
 *   }
 * // ... only one process at a time runs this ...
 * porta_lock_release (lock, NULL);
 * ]|
 *
 * The lock file is created (mode 0644, less the umask) if it does not
 * exist, and is never truncated or written by portalock: a program may keep
 * data in it and read or write it while it holds the lock, through
 * porta_lock_get_stream().
 *
 * porta_lock_acquire() waits in the calling thread;
 * porta_lock_acquire_async() waits without blocking the thread-default
 * #GMainContext of its caller. Both take a timeout in milliseconds: -1
 * waits for as long as it takes, 0 tries once, and a positive value waits
 * at most that long. On a local filesystem the wait blocks in the kernel,
 * so the waiter uses no CPU and gets the lock as soon as it is released;
 * timeouts and cancellation interrupt it promptly, and a wait that gives up
 * never keeps the lock from anyone.
 *
 * Each #PortaLock holds its own open file description, so two #PortaLocks on
 * one file exclude each other inside one process exactly as they do between
 * processes. A #PortaLock itself is not thread-safe: use it from one thread
 * at a time (its #GCancellable may be cancelled from any thread), and give
 * each thread that locks the file a #PortaLock of its own.
 *
 * Disposing a held #PortaLock releases it, so g_autoptr(PortaLock) releases
 * the lock when it goes out of scope.
 *
 * portalock reserves one real-time signal for interrupting blocked waits:
 * the highest one whose disposition is still the default when the first
 * wait with a timeout or a cancellable starts, or the one the environment
 * variable `PORTALOCK_SIGNAL` names (0 turns kernel waits off, and waits then
 * retry with an exponential back-off). Do not install a handler for it
 * afterwards.
 */

/**
 * PortaLock:
 *
 * A lock on one file, exclusive or shared, between processes and threads.
 * All its fields are private.
 *
 * Since: 1.0
 */
struct _PortaLock
{
  GObject                parent_instance;

  GFile                 *file;
  char                  *path;      /* NULL for a file that is not local */
  char                  *display;   /* for messages */
  PortaLockMode          mode;
  PortaBackend           backend;
  PortaLockFlags         flags;
  const PortaBackendOps *ops;       /* NULL if the backend is unavailable */

  PortaLockFile          lf;
  GIOStream             *stream;

  /* whether waits on the filesystem of back_off_dev must back off
   * (porta_lock_file_must_back_off()) */
  guint64                back_off_dev;
  guint                  back_off_known : 1;
  guint                  back_off : 1;

  guint                  held : 1;
  guint                  pending : 1;

  /* with PORTA_LOCK_FLAGS_REENTRANT: nesting depth and owning thread */
  guint                  depth;
  GThread               *owner;
};

enum {
  PROP_0,
  PROP_FILE,
  PROP_MODE,
  PROP_BACKEND,
  PROP_FLAGS,
  N_PROPS,

  PROP_HELD = N_PROPS,
};

static GParamSpec *properties[N_PROPS];
static GParamSpec *held_pspec;

static void porta_lock_lockable_iface_init (PortaLockableInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (PortaLock, porta_lock, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (PORTA_TYPE_LOCKABLE,
                                                      porta_lock_lockable_iface_init))

G_DEFINE_QUARK (porta-lock-error-quark, porta_lock_error)

static void
porta_lock_set_held (PortaLock *self,
                     gboolean   held,
                     GThread   *owner)
{
  self->depth = held ? 1 : 0;
  self->owner = held ? owner : NULL;
  if (self->held == !!held)
    return;
  self->held = !!held;
  g_object_notify_by_pspec (G_OBJECT (self), held_pspec);
}

static void
porta_lock_close_file (PortaLock *self)
{
  if (self->stream != NULL)
    {
      /* Whoever kept a reference to the stream must not write through a
       * descriptor number that may soon name another file. */
      g_io_stream_close (self->stream, NULL, NULL);
      g_clear_object (&self->stream);
    }
  porta_lock_file_close (&self->lf, self->ops);
}

/* A nested acquire of a held reentrant lock by its owning thread. */
static gboolean
porta_lock_is_reentry (PortaLock *self)
{
  return self->held &&
         (self->flags & PORTA_LOCK_FLAGS_REENTRANT) &&
         self->owner == g_thread_self ();
}

static gboolean
porta_lock_check_usable (PortaLock  *self,
                         GError    **error)
{
  if (self->held && (self->flags & PORTA_LOCK_FLAGS_REENTRANT))
    {
      g_set_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_ALREADY_HELD,
                   _("The reentrant lock on “%s” is held by another thread; "
                     "give each thread a PortaLock of its own"),
                   self->display);
      return FALSE;
    }
  if (self->held)
    {
      g_set_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_ALREADY_HELD,
                   _("The lock on “%s” is already held by this PortaLock; "
                     "release it before acquiring it again"),
                   self->display);
      return FALSE;
    }
  if (self->pending)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_PENDING,
                   _("An acquisition of the lock on “%s” is already in progress"),
                   self->display);
      return FALSE;
    }
  if (self->path == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   _("Cannot lock “%s”: only files on a local filesystem can be locked"),
                   self->display);
      return FALSE;
    }
  if (self->ops == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   _("Cannot lock “%s”: the %s backend is not available on this system"),
                   self->display, porta_backend_get_name (self->backend));
      return FALSE;
    }
  return TRUE;
}

/* Sets an error for the result of a wait that ended without the lock. */
static void
porta_lock_set_wait_error (PortaLock           *self,
                           int                  result,
                           int                  timeout_ms,
                           const char          *holder,
                           PortaHolderUnknown   unknown,
                           GError             **error)
{
  porta_set_wait_error (error, result, timeout_ms, holder, unknown, self->display, self->ops,
                        &self->lf);
}

/* After the lock is taken: the file we locked must still be the one at the
 * path, or it was deleted (by a holder that released with
 * PORTA_LOCK_FLAGS_DELETE_ON_RELEASE) while we waited, and the lock guards
 * nothing. */
static PortaTry
porta_lock_verify (gpointer   owner,
                   GError   **error)
{
  PortaLock *self = owner;
  gboolean stale;

  if (!porta_lock_file_verify (&self->lf, self->path, self->display, self->flags, &stale, error))
    {
      porta_lock_close_file (self);
      return PORTA_TRY_ERROR;
    }
  if (stale)
    {
      porta_lock_close_file (self);
      return PORTA_TRY_AGAIN;
    }
  return PORTA_TRY_HELD;
}

/* fstatfs() once per filesystem, not once per wait. */
static gboolean
porta_lock_must_back_off (PortaLock *self)
{
  if (!self->back_off_known || self->back_off_dev != self->lf.dev)
    {
      self->back_off = porta_lock_file_must_back_off (&self->lf);
      self->back_off_dev = self->lf.dev;
      self->back_off_known = TRUE;
    }
  return self->back_off;
}

/* Opens the file if needed and tries the lock once, without waiting; or,
 * with @block, when it is taken, waits in the kernel for as long as it
 * takes, which a wait with neither timeout nor cancellable may do at once
 * (except on network filesystems, where blocking calls may hang).
 *
 * The first try never blocks, even with @block: under contention a
 * waiter that finds the lock taken and only then blocks is handed it
 * sooner than one that blocks at once (8 processes contending on two
 * cores: 1.4 times the throughput). The file is only identified, with one
 * fstat(), once the lock is taken, or found taken. */
static PortaTry
porta_lock_try_once (gpointer   owner,
                     gboolean   block,
                     GError   **error)
{
  PortaLock *self = owner;
  int r;

  if (self->lf.fd < 0 &&
      !porta_lock_file_open (&self->lf, self->path, self->display,
                             self->mode, self->flags, self->ops, error))
    return PORTA_TRY_ERROR;

  r = self->ops->lock (self->lf.fd, self->mode, FALSE);
  if (r != 0 && !porta_lock_file_identify (&self->lf, self->display, error))
    {
      /* not a regular file: that is the error to report */
      porta_lock_close_file (self);
      return PORTA_TRY_ERROR;
    }
  if (r == EWOULDBLOCK && block && !porta_lock_must_back_off (self))
    {
      do
        r = self->ops->lock (self->lf.fd, self->mode, TRUE);
      while (r == EINTR);
    }
  if (r == EWOULDBLOCK)
    return PORTA_TRY_BUSY;
  if (r != 0)
    {
      porta_set_lock_error (error, r, self->display, self->ops, &self->lf);
      porta_lock_close_file (self);
      return PORTA_TRY_ERROR;
    }
  return porta_lock_verify (self, error);
}

/* Ends an attempt that will not wait, or whose wait ended, without the
 * lock: the descriptor is closed, so nothing of the attempt lingers. */
static void
porta_lock_fail (gpointer             owner,
                 int                  result,
                 int                  timeout_ms,
                 const char          *holder,
                 PortaHolderUnknown   unknown,
                 GError             **error)
{
  PortaLock *self = owner;

  porta_lock_set_wait_error (self, result, timeout_ms, holder, unknown, error);
  porta_lock_close_file (self);
}

static void
porta_lock_get_wait (gpointer                owner,
                     const PortaBackendOps **ops,
                     const PortaLockFile   **lf,
                     gboolean               *back_off,
                     PortaLockMode          *mode)
{
  PortaLock *self = owner;

  *ops = self->ops;
  *lf = &self->lf;
  *back_off = porta_lock_must_back_off (self);
  *mode = self->mode;
}

/* Acquiring: open the file, lock it, and check that the file locked is
 * still the one at the path. */
static const PortaAttemptOps acquire_ops = {
  porta_lock_try_once,
  porta_lock_get_wait,
  porta_lock_verify,
  porta_lock_fail,
};

/* Drops the lock: deletes the file first if asked to, while still holding
 * it exclusively, then unlocks explicitly, so that a copy of the descriptor
 * in a forked child does not go on holding it, and closes. */
static gboolean
porta_lock_drop (PortaLock  *self,
                 GError    **error)
{
  int unlink_errno = 0;

  if ((self->flags & PORTA_LOCK_FLAGS_DELETE_ON_RELEASE) &&
      self->mode == PORTA_LOCK_MODE_EXCLUSIVE &&
      porta_lock_file_check (&self->lf, self->path, self->flags) == 0)
    {
      unlink_errno = porta_path_unlink (self->path);
      if (unlink_errno == ENOENT)
        unlink_errno = 0;
    }

  self->ops->unlock (self->lf.fd);
  porta_lock_close_file (self);
  porta_lock_set_held (self, FALSE, NULL);

  if (unlink_errno != 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (unlink_errno),
                   _("Released the lock on “%s” but could not delete the file: %s"),
                   self->display, g_strerror (unlink_errno));
      return FALSE;
    }
  return TRUE;
}

static void
porta_lock_dispose (GObject *object)
{
  PortaLock *self = PORTA_LOCK (object);

  if (self->held)
    porta_lock_drop (self, NULL);
  porta_lock_close_file (self);

  G_OBJECT_CLASS (porta_lock_parent_class)->dispose (object);
}

static void
porta_lock_finalize (GObject *object)
{
  PortaLock *self = PORTA_LOCK (object);

  g_clear_object (&self->file);
  g_free (self->path);
  g_free (self->display);

  G_OBJECT_CLASS (porta_lock_parent_class)->finalize (object);
}

static void
porta_lock_constructed (GObject *object)
{
  PortaLock *self = PORTA_LOCK (object);

  G_OBJECT_CLASS (porta_lock_parent_class)->constructed (object);

  if (self->file == NULL)
    {
      g_critical ("A PortaLock needs a file: set the “file” property");
      self->display = g_strdup ("(none)");
      return;
    }

  self->path = g_file_get_path (self->file);
  self->display = porta_file_display_name (self->file);
}

static void
porta_lock_get_property (GObject    *object,
                         guint       prop_id,
                         GValue     *value,
                         GParamSpec *pspec)
{
  PortaLock *self = PORTA_LOCK (object);

  switch (prop_id)
    {
    case PROP_FILE:
      g_value_set_object (value, self->file);
      break;
    case PROP_MODE:
      g_value_set_enum (value, self->mode);
      break;
    case PROP_BACKEND:
      g_value_set_enum (value, self->backend);
      break;
    case PROP_FLAGS:
      g_value_set_flags (value, self->flags);
      break;
    case PROP_HELD:
      g_value_set_boolean (value, self->held);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
porta_lock_set_property (GObject      *object,
                         guint         prop_id,
                         const GValue *value,
                         GParamSpec   *pspec)
{
  PortaLock *self = PORTA_LOCK (object);

  switch (prop_id)
    {
    case PROP_FILE:
      self->file = g_value_dup_object (value);
      break;
    case PROP_MODE:
      self->mode = g_value_get_enum (value);
      break;
    case PROP_BACKEND:
      self->backend = porta_backend_resolve (g_value_get_enum (value));
      self->ops = porta_backend_get_ops (self->backend);
      break;
    case PROP_FLAGS:
      self->flags = g_value_get_flags (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
porta_lock_class_init (PortaLockClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  porta_i18n_init ();

  object_class->constructed = porta_lock_constructed;
  object_class->dispose = porta_lock_dispose;
  object_class->finalize = porta_lock_finalize;
  object_class->get_property = porta_lock_get_property;
  object_class->set_property = porta_lock_set_property;

  /**
   * PortaLock:file:
   *
   * The file to lock. It must be a local file (one with a path); it is
   * created if it does not exist.
   *
   * Since: 1.0
   */
  properties[PROP_FILE] =
    g_param_spec_object ("file", "File", "The file to lock",
                         G_TYPE_FILE,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                         G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * PortaLock:mode:
   *
   * Whether the lock is exclusive or shared. porta_lock_convert() changes
   * it, and notifies it.
   *
   * Since: 1.0
   */
  properties[PROP_MODE] =
    g_param_spec_enum ("mode", "Mode", "Exclusive or shared",
                       PORTA_TYPE_LOCK_MODE,
                       PORTA_LOCK_MODE_EXCLUSIVE,
                       G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                       G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * PortaLock:backend:
   *
   * The kernel mechanism the lock uses. %PORTA_BACKEND_DEFAULT may be
   * given at construction; reading the property then tells the backend it
   * resolved to.
   *
   * Since: 1.0
   */
  properties[PROP_BACKEND] =
    g_param_spec_enum ("backend", "Backend", "The kernel mechanism the lock uses",
                       PORTA_TYPE_BACKEND,
                       PORTA_BACKEND_DEFAULT,
                       G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                       G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * PortaLock:flags:
   *
   * Flags that change how the lock treats its file.
   *
   * Since: 1.0
   */
  properties[PROP_FLAGS] =
    g_param_spec_flags ("flags", "Flags", "How the lock treats its file",
                        PORTA_TYPE_LOCK_FLAGS,
                        PORTA_LOCK_FLAGS_NONE,
                        G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                        G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /* PortaLock:held is the PortaLockable property: notified when it
   * changes, in the thread that acquired or released the lock (for
   * porta_lock_acquire_async(), in the caller's thread-default main
   * context, before the callback runs). Nested acquires and releases of a
   * reentrant lock do not change it. */
  g_object_class_install_properties (object_class, N_PROPS, properties);
  held_pspec = porta_lockable_override_held (object_class, PROP_HELD);
}

static void
porta_lock_init (PortaLock *self)
{
  PortaLockFile lf = PORTA_LOCK_FILE_INIT;

  self->lf = lf;
  self->backend = PORTA_BACKEND_FLOCK;
  self->ops = porta_backend_get_ops (self->backend);
}

/**
 * porta_lock_new:
 * @file: the file to lock, a local file
 * @mode: exclusive or shared
 *
 * Creates a lock on @file with the default backend. Nothing is opened or
 * locked until the lock is acquired.
 *
 * Returns: (transfer full): a new #PortaLock
 *
 * Since: 1.0
 */
PortaLock *
porta_lock_new (GFile         *file,
                PortaLockMode  mode)
{
  return porta_lock_new_full (file, mode, PORTA_BACKEND_DEFAULT, PORTA_LOCK_FLAGS_NONE);
}

/**
 * porta_lock_new_for_path:
 * @path: (type filename): the path of the file to lock
 * @mode: exclusive or shared
 *
 * Creates a lock on the file at @path with the default backend.
 *
 * Returns: (transfer full): a new #PortaLock
 *
 * Since: 1.0
 */
PortaLock *
porta_lock_new_for_path (const char    *path,
                         PortaLockMode  mode)
{
  g_autoptr(GFile) file = NULL;

  g_return_val_if_fail (path != NULL, NULL);

  file = g_file_new_for_path (path);
  return porta_lock_new (file, mode);
}

/**
 * porta_lock_new_full:
 * @file: the file to lock, a local file
 * @mode: exclusive or shared
 * @backend: the kernel mechanism to lock with
 * @flags: flags for the lock file
 *
 * Creates a lock on @file with the given backend and flags;
 * porta_lock_new_full_for_path() takes a path instead.
 *
 * Returns: (transfer full): a new #PortaLock
 *
 * Since: 1.0
 */
PortaLock *
porta_lock_new_full (GFile          *file,
                     PortaLockMode   mode,
                     PortaBackend    backend,
                     PortaLockFlags  flags)
{
  g_return_val_if_fail (G_IS_FILE (file), NULL);

  return g_object_new (PORTA_TYPE_LOCK,
                       "file", file,
                       "mode", mode,
                       "backend", backend,
                       "flags", flags,
                       NULL);
}

/**
 * porta_lock_new_full_for_path:
 * @path: (type filename): the path of the file to lock
 * @mode: exclusive or shared
 * @backend: the kernel mechanism to lock with
 * @flags: flags for the lock file
 *
 * Creates a lock on the file at @path with the given backend and flags;
 * porta_lock_new_full() without making a #GFile first.
 *
 * Returns: (transfer full): a new #PortaLock
 *
 * Since: 1.2
 */
PortaLock *
porta_lock_new_full_for_path (const char     *path,
                              PortaLockMode   mode,
                              PortaBackend    backend,
                              PortaLockFlags  flags)
{
  g_autoptr(GFile) file = NULL;

  g_return_val_if_fail (path != NULL, NULL);

  file = g_file_new_for_path (path);
  return porta_lock_new_full (file, mode, backend, flags);
}

/**
 * porta_lock_get_file:
 * @self: a #PortaLock
 *
 * Gets the file this lock locks.
 *
 * Returns: (transfer none): the file
 *
 * Since: 1.0
 */
GFile *
porta_lock_get_file (PortaLock *self)
{
  g_return_val_if_fail (PORTA_IS_LOCK (self), NULL);

  return self->file;
}

/**
 * porta_lock_get_mode:
 * @self: a #PortaLock
 *
 * Gets whether this lock is exclusive or shared.
 *
 * Returns: the mode
 *
 * Since: 1.0
 */
PortaLockMode
porta_lock_get_mode (PortaLock *self)
{
  g_return_val_if_fail (PORTA_IS_LOCK (self), PORTA_LOCK_MODE_EXCLUSIVE);

  return self->mode;
}

/**
 * porta_lock_get_backend:
 * @self: a #PortaLock
 *
 * Gets the backend this lock uses; never %PORTA_BACKEND_DEFAULT.
 *
 * Returns: the backend
 *
 * Since: 1.0
 */
PortaBackend
porta_lock_get_backend (PortaLock *self)
{
  g_return_val_if_fail (PORTA_IS_LOCK (self), PORTA_BACKEND_DEFAULT);

  return self->backend;
}

/**
 * porta_lock_get_flags:
 * @self: a #PortaLock
 *
 * Gets the flags this lock was created with.
 *
 * Returns: the flags
 *
 * Since: 1.0
 */
PortaLockFlags
porta_lock_get_flags (PortaLock *self)
{
  g_return_val_if_fail (PORTA_IS_LOCK (self), PORTA_LOCK_FLAGS_NONE);

  return self->flags;
}

/**
 * porta_lock_get_held:
 * @self: a #PortaLock
 *
 * Gets whether this #PortaLock holds its lock.
 *
 * Returns: %TRUE while the lock is held
 *
 * Since: 1.0
 */
gboolean
porta_lock_get_held (PortaLock *self)
{
  g_return_val_if_fail (PORTA_IS_LOCK (self), FALSE);

  return self->held;
}

/**
 * porta_lock_acquire:
 * @self: a #PortaLock
 * @timeout_ms: how long to wait, in milliseconds: -1 to wait for as long as
 *   it takes, 0 to try once without waiting
 * @cancellable: (nullable): a #GCancellable, which may be cancelled from
 *   another thread to end the wait
 * @error: return location for a #GError
 *
 * Acquires the lock, waiting in the calling thread while someone else holds
 * it.
 *
 * The wait blocks in the kernel on a local filesystem, so it costs no CPU
 * and ends as soon as the lock is released. On network and FUSE
 * filesystems it retries with an exponential back-off (1 ms doubling to
 * 100 ms).
 *
 * Fails with %G_IO_ERROR_WOULD_BLOCK if @timeout_ms is 0 and the lock is
 * taken, %G_IO_ERROR_TIMED_OUT when @timeout_ms passes first,
 * %G_IO_ERROR_CANCELLED when @cancellable is cancelled first,
 * %PORTA_LOCK_ERROR_ALREADY_HELD if this #PortaLock holds it already, and
 * with the #GIOErrorEnum code of the cause if the file cannot be opened or
 * locked: %G_IO_ERROR_NOT_SUPPORTED for a file that is not local or a
 * filesystem without locks, %G_IO_ERROR_NOT_FOUND for a missing folder,
 * %G_IO_ERROR_PERMISSION_DENIED, %G_IO_ERROR_IS_DIRECTORY,
 * %G_IO_ERROR_NOT_REGULAR_FILE, %G_IO_ERROR_TOO_MANY_LINKS for a symbolic
 * link without %PORTA_LOCK_FLAGS_FOLLOW_SYMLINKS, and %G_IO_ERROR_BUSY for a
 * second POSIX-backed lock on one file in one process. A wait that fails
 * leaves nothing behind: the lock is not held, and nothing keeps it from
 * others.
 *
 * Returns: %TRUE if the lock is now held
 *
 * Since: 1.0
 */
gboolean
porta_lock_acquire (PortaLock     *self,
                    int            timeout_ms,
                    GCancellable  *cancellable,
                    GError       **error)
{
  g_return_val_if_fail (PORTA_IS_LOCK (self), FALSE);
  g_return_val_if_fail (timeout_ms >= -1, FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (porta_lock_is_reentry (self))
    {
      self->depth++;
      return TRUE;
    }
  if (!porta_lock_check_usable (self, error))
    return FALSE;
  if (g_cancellable_is_cancelled (cancellable))
    {
      porta_lock_set_wait_error (self, ECANCELED, timeout_ms, NULL, PORTA_HOLDER_NOT_TOLD, error);
      return FALSE;
    }

  if (!porta_attempt_run (&acquire_ops, self, timeout_ms, cancellable, error))
    return FALSE;

  /* Only a reentrant lock needs its owner, and a waiter just woken has
   * its caches cold: g_thread_self() is not free then. */
  porta_lock_set_held (self, TRUE,
                       (self->flags & PORTA_LOCK_FLAGS_REENTRANT) ? g_thread_self () : NULL);
  return TRUE;
}

/**
 * porta_lock_try_acquire:
 * @self: a #PortaLock
 * @error: return location for a #GError
 *
 * Acquires the lock if nobody else holds it, without waiting: the same as
 * porta_lock_acquire() with a timeout of 0. Fails with
 * %G_IO_ERROR_WOULD_BLOCK if the lock is taken.
 *
 * Returns: %TRUE if the lock is now held
 *
 * Since: 1.0
 */
gboolean
porta_lock_try_acquire (PortaLock  *self,
                        GError    **error)
{
  return porta_lock_acquire (self, 0, NULL, error);
}

/* The task data is the thread that called porta_lock_acquire_async(),
 * which owns the lock once it is held. */
static void
acquire_done (gpointer  owner,
              GError   *error,
              gpointer  user_data)
{
  GTask *task = user_data;
  PortaLock *self = owner;

  self->pending = FALSE;
  if (error != NULL)
    g_task_return_error (task, error);
  else
    {
      porta_lock_set_held (self, TRUE, g_task_get_task_data (task));
      g_task_return_boolean (task, TRUE);
    }
  g_object_unref (task);
}

/**
 * porta_lock_acquire_async:
 * @self: a #PortaLock
 * @timeout_ms: how long to wait, in milliseconds: -1 to wait for as long as
 *   it takes, 0 to try once without waiting
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): a #GAsyncReadyCallback to call when the lock is
 *   held or the attempt failed
 * @user_data: (closure callback): data for @callback
 *
 * Acquires the lock without blocking the thread-default #GMainContext of
 * the caller, where @callback then runs. Call porta_lock_acquire_finish()
 * from it to learn the result.
 *
 * The lock is tried at once; if it is taken, the wait blocks in the kernel
 * in a thread that portalock owns for this wait alone, so other sources of
 * the main context, and other asynchronous GIO calls, go on while it lasts.
 * Timeouts and cancellation behave as for porta_lock_acquire(), and the
 * callback runs exactly once. Only one acquisition of a #PortaLock may be
 * in progress at a time; a second one fails with %G_IO_ERROR_PENDING.
 *
 * Since: 1.0
 */
void
porta_lock_acquire_async (PortaLock           *self,
                          int                  timeout_ms,
                          int                  io_priority,
                          GCancellable        *cancellable,
                          GAsyncReadyCallback  callback,
                          gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  GError *error = NULL;

  g_return_if_fail (PORTA_IS_LOCK (self));
  g_return_if_fail (timeout_ms >= -1);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = porta_task_new (self, porta_lock_acquire_async, "[portalock] acquire", io_priority,
                         callback, user_data);

  if (porta_lock_is_reentry (self))
    {
      self->depth++;
      g_task_return_boolean (task, TRUE);
      return;
    }
  if (!porta_lock_check_usable (self, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  if (g_cancellable_is_cancelled (cancellable))
    {
      porta_lock_set_wait_error (self, ECANCELED, timeout_ms, NULL, PORTA_HOLDER_NOT_TOLD,
                                 &error);
      g_task_return_error (task, error);
      return;
    }

  g_task_set_task_data (task, g_thread_self (), NULL);
  self->pending = TRUE;
  porta_attempt_run_async (&acquire_ops, self, timeout_ms, cancellable, io_priority,
                           acquire_done, g_steal_pointer (&task));
}

/**
 * porta_lock_acquire_finish:
 * @self: a #PortaLock
 * @result: the #GAsyncResult passed to the callback
 * @error: return location for a #GError
 *
 * Finishes porta_lock_acquire_async(). It fails with the errors of
 * porta_lock_acquire().
 *
 * Returns: %TRUE if the lock is now held
 *
 * Since: 1.0
 */
gboolean
porta_lock_acquire_finish (PortaLock     *self,
                           GAsyncResult  *result,
                           GError       **error)
{
  g_return_val_if_fail (PORTA_IS_LOCK (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == porta_lock_acquire_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/**
 * porta_lock_release:
 * @self: a #PortaLock
 * @error: return location for a #GError
 *
 * Releases the lock. A waiter blocked on it in another thread or process
 * gets it at once. A stream returned by porta_lock_get_stream() is closed.
 *
 * With %PORTA_LOCK_FLAGS_DELETE_ON_RELEASE an exclusive holder deletes the
 * file before releasing it; if that fails, the lock is released all the
 * same and the error tells why the file is still there.
 *
 * Fails with %PORTA_LOCK_ERROR_NOT_HELD if the lock is not held, and with
 * %G_IO_ERROR_PENDING while porta_lock_convert_async() is in progress
 * (cancel it first).
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
porta_lock_release (PortaLock  *self,
                    GError    **error)
{
  g_return_val_if_fail (PORTA_IS_LOCK (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!self->held)
    {
      g_set_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_HELD,
                   _("Cannot release the lock on “%s”: it is not held"),
                   self->display);
      return FALSE;
    }
  if (self->pending)
    {
      /* A conversion is waiting on the descriptor: closing it under the
       * waiter would let it lock whatever file reuses the number. */
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_PENDING,
                   _("Cannot release the lock on “%s” while a conversion of it is in progress"),
                   self->display);
      return FALSE;
    }
  if (self->depth > 1)
    {
      self->depth--;
      return TRUE;
    }

  return porta_lock_drop (self, error);
}

/**
 * porta_lock_get_stream:
 * @self: a #PortaLock
 *
 * Gets a stream that reads and writes the locked file, while the lock is
 * held. It is a #GFileIOStream over the lock's own descriptor, so using it
 * never opens the file again (which would drop POSIX locks); it supports
 * g_seekable_seek() and g_seekable_truncate(), and its input and output
 * streams share one file position. It starts where the file's position
 * is, at offset 0 after the lock was acquired.
 *
 * The stream is closed when the lock is released: keep it no longer. For a
 * shared lock on a file that could only be opened for reading, writing
 * fails.
 *
 * On Windows, where the lock's handle is open for overlapped I/O, the
 * stream has a handle of its own on the same file, made from the lock's
 * with `ReOpenFile()` (never by path); it is closed with the stream.
 *
 * Returns: (transfer none) (nullable): the stream, or %NULL if the lock is
 *   not held (or, on Windows, if no second handle could be made)
 *
 * Since: 1.0
 */
GIOStream *
porta_lock_get_stream (PortaLock *self)
{
  g_return_val_if_fail (PORTA_IS_LOCK (self), NULL);

  if (!self->held)
    return NULL;
  if (self->stream == NULL)
    self->stream = porta_lock_stream_new (self->file, self->lf.fd);
  return self->stream;
}

/**
 * porta_lock_get_depth:
 * @self: a #PortaLock
 *
 * Gets how many times the lock is held: 0 when it is not held, 1 when it
 * is, and more for nested acquires of a lock with
 * %PORTA_LOCK_FLAGS_REENTRANT.
 *
 * Returns: the nesting depth
 *
 * Since: 1.0
 */
guint
porta_lock_get_depth (PortaLock *self)
{
  g_return_val_if_fail (PORTA_IS_LOCK (self), 0);

  return self->depth;
}

/* Checks whether a held lock may be converted to @mode. Returns 1 if it
 * must be, 0 if it already is in @mode, -1 with @error set if it cannot. */
static int
porta_lock_check_convert (PortaLock      *self,
                          PortaLockMode   mode,
                          GError        **error)
{
  if (!self->held)
    {
      g_set_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_HELD,
                   _("Cannot convert the lock on “%s”: it is not held"),
                   self->display);
      return -1;
    }
  if (self->pending)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_PENDING,
                   _("A conversion of the lock on “%s” is already in progress"),
                   self->display);
      return -1;
    }
  if (mode == self->mode)
    return 0;
  if (self->ops->id == PORTA_BACKEND_FLOCK)
    {
      /* flock(2) drops the old lock before it takes the new one, and
       * another waiter may take it in between. */
      g_set_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_ATOMIC,
                   _("Cannot convert the lock on “%s” atomically: the flock backend "
                     "releases it while converting (release and acquire it again, "
                     "or use the ofd backend)"),
                   self->display);
      return -1;
    }
  return 1;
}

static void
porta_lock_set_mode (PortaLock     *self,
                     PortaLockMode  mode)
{
  self->mode = mode;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_MODE]);
}


/**
 * porta_lock_convert:
 * @self: a #PortaLock
 * @mode: the mode to convert the held lock to
 * @timeout_ms: how long to wait, in milliseconds, for other shared holders
 *   to go when converting to exclusive: -1 for as long as it takes, 0 to
 *   try once
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Converts a held lock between shared and exclusive without releasing it,
 * so nobody can take it in between: upgrading a shared lock to exclusive
 * waits until the other shared holders are gone; downgrading never waits.
 *
 * Only fcntl() locks convert atomically: the ofd and posix backends. The
 * flock backend would release the lock while converting it, so it refuses
 * with %PORTA_LOCK_ERROR_NOT_ATOMIC: release and acquire again instead,
 * knowing that someone else may get it in between. If the conversion
 * fails (%G_IO_ERROR_WOULD_BLOCK, %G_IO_ERROR_TIMED_OUT,
 * %G_IO_ERROR_CANCELLED, or %G_IO_ERROR_PERMISSION_DENIED for an
 * exclusive lock on a file that could only be opened for reading), the
 * lock is still held in its old mode.
 *
 * Returns: %TRUE if the lock is now held in @mode
 *
 * Since: 1.0
 */
gboolean
porta_lock_convert (PortaLock      *self,
                    PortaLockMode   mode,
                    int             timeout_ms,
                    GCancellable   *cancellable,
                    GError        **error)
{
  PortaFdAttempt attempt = { self->ops, &self->lf, mode, self->display };
  int check;

  g_return_val_if_fail (PORTA_IS_LOCK (self), FALSE);
  g_return_val_if_fail (timeout_ms >= -1, FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  check = porta_lock_check_convert (self, mode, error);
  if (check <= 0)
    return check == 0;

  /* Only the conversion can fail: fcntl() keeps the lock held as it was. */
  if (!porta_attempt_run (&porta_fd_attempt_ops, &attempt, timeout_ms, cancellable, error))
    return FALSE;
  porta_lock_set_mode (self, mode);
  return TRUE;
}

/* The task data is the PortaFdAttempt. */
static void
convert_done (gpointer  owner,
              GError   *error,
              gpointer  user_data)
{
  GTask *task = user_data;
  PortaLock *self = g_task_get_source_object (task);
  PortaFdAttempt *attempt = owner;

  self->pending = FALSE;
  if (error != NULL)
    g_task_return_error (task, error);
  else
    {
      porta_lock_set_mode (self, attempt->mode);
      g_task_return_boolean (task, TRUE);
    }
  g_object_unref (task);
}

/**
 * porta_lock_convert_async:
 * @self: a #PortaLock
 * @mode: the mode to convert the held lock to
 * @timeout_ms: how long to wait, in milliseconds: -1 for as long as it
 *   takes, 0 to try once
 * @io_priority: the I/O priority of the request
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called in the thread-default main context when
 *   the conversion is done or failed
 * @user_data: (closure callback): data for @callback
 *
 * Converts a held lock between shared and exclusive without blocking the
 * thread-default #GMainContext; see porta_lock_convert().
 *
 * Since: 1.0
 */
void
porta_lock_convert_async (PortaLock           *self,
                          PortaLockMode        mode,
                          int                  timeout_ms,
                          int                  io_priority,
                          GCancellable        *cancellable,
                          GAsyncReadyCallback  callback,
                          gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  GError *error = NULL;
  PortaFdAttempt *attempt;
  int check;

  g_return_if_fail (PORTA_IS_LOCK (self));
  g_return_if_fail (timeout_ms >= -1);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = porta_task_new (self, porta_lock_convert_async, "[portalock] convert", io_priority,
                         callback, user_data);

  check = porta_lock_check_convert (self, mode, &error);
  if (check < 0)
    {
      g_task_return_error (task, error);
      return;
    }
  if (check == 0)
    {
      g_task_return_boolean (task, TRUE);
      return;
    }

  attempt = g_new0 (PortaFdAttempt, 1);
  attempt->ops = self->ops;
  attempt->lf = &self->lf;
  attempt->mode = mode;
  attempt->display = self->display;
  g_task_set_task_data (task, attempt, g_free);

  self->pending = TRUE;
  porta_attempt_run_async (&porta_fd_attempt_ops, attempt, timeout_ms, cancellable,
                           io_priority, convert_done, g_steal_pointer (&task));
}

/**
 * porta_lock_convert_finish:
 * @self: a #PortaLock
 * @result: the #GAsyncResult passed to the callback
 * @error: return location for a #GError
 *
 * Finishes porta_lock_convert_async().
 *
 * Returns: %TRUE if the lock is now held in the requested mode
 *
 * Since: 1.0
 */
gboolean
porta_lock_convert_finish (PortaLock     *self,
                           GAsyncResult  *result,
                           GError       **error)
{
  g_return_val_if_fail (PORTA_IS_LOCK (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == porta_lock_convert_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/**
 * porta_lock_query_holder:
 * @self: a #PortaLock
 * @pid: (out) (optional): the process ID of a holder, or 0 if the system
 *   does not tell
 * @command: (out) (optional) (nullable) (transfer full): the command name
 *   of that process, or %NULL if unknown
 * @error: return location for a #GError
 *
 * Tells whether anyone holds a lock on the file that conflicts with this
 * lock's backend (this #PortaLock itself included), and who, as far as the
 * operating system reveals it. On Unix it neither opens nor locks the
 * file, so it never disturbs the holder, a waiter, or POSIX locks of this
 * process.
 *
 * On Linux the holders are listed in `/proc/locks`. flock(2) locks name
 * the process that took them: after a fork() that may be the parent while
 * a child holds the lock too. OFD locks belong to no process, and neither
 * does a flock(2) lock whose taker has exited while a child it forked still
 * holds it: for those, the descriptors of every process this one may
 * inspect are searched for the holder. When none is found, @pid is 0 and
 * @command %NULL: the holder is unknown. Elsewhere the holder is always
 * unknown. Windows does not list its locks, so there the file is opened
 * (never created) and an exclusive lock attempt is made and given back at
 * once: a try of another lock at that very moment may fail.
 *
 * Returns: %TRUE if the lock is held by someone; %FALSE if it is free, or
 *   on error (a missing file is not an error: nobody holds it)
 *
 * Since: 1.0
 */
gboolean
porta_lock_query_holder (PortaLock  *self,
                         int        *pid,
                         char      **command,
                         GError    **error)
{
  g_autofree char *found_command = NULL;
  gboolean follow;
#ifndef G_OS_WIN32
  guint64 dev, ino;
#endif
  int found_pid = 0;
  gboolean held;
  int errsv;

  g_return_val_if_fail (PORTA_IS_LOCK (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  follow = (self->flags & PORTA_LOCK_FLAGS_FOLLOW_SYMLINKS) != 0;
  if (pid != NULL)
    *pid = 0;
  if (command != NULL)
    *command = NULL;

  if (self->path == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   _("Cannot lock “%s”: only files on a local filesystem can be locked"),
                   self->display);
      return FALSE;
    }
#ifdef G_OS_WIN32
  /* Windows does not list its locks: a lock attempt tells. */
  errsv = porta_win32_probe_held (self->path, follow, &held);
#else
  errsv = porta_path_identify (self->path, follow, &dev, &ino);
#endif
  if (errsv != 0)
    {
      if (errsv == ENOENT)
        return FALSE;
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errsv),
                   _("Cannot look up lock file “%s”: %s"),
                   self->display, g_strerror (errsv));
      return FALSE;
    }

#ifndef G_OS_WIN32
  held = porta_holder_find (dev, ino, self->backend == PORTA_BACKEND_FLOCK,
                            TRUE, &found_pid, &found_command);
#endif
  if (held && pid != NULL)
    *pid = found_pid;
  if (held && command != NULL)
    *command = g_steal_pointer (&found_command);
  return held;
}

static gboolean
porta_lock_lockable_acquire (PortaLockable  *lockable,
                             int             timeout_ms,
                             GCancellable   *cancellable,
                             GError        **error)
{
  return porta_lock_acquire (PORTA_LOCK (lockable), timeout_ms, cancellable, error);
}

static void
porta_lock_lockable_acquire_async (PortaLockable       *lockable,
                                   int                  timeout_ms,
                                   int                  io_priority,
                                   GCancellable        *cancellable,
                                   GAsyncReadyCallback  callback,
                                   gpointer             user_data)
{
  porta_lock_acquire_async (PORTA_LOCK (lockable), timeout_ms, io_priority,
                            cancellable, callback, user_data);
}

static gboolean
porta_lock_lockable_acquire_finish (PortaLockable  *lockable,
                                    GAsyncResult   *result,
                                    GError        **error)
{
  return porta_lock_acquire_finish (PORTA_LOCK (lockable), result, error);
}

static gboolean
porta_lock_lockable_release (PortaLockable  *lockable,
                             GError        **error)
{
  return porta_lock_release (PORTA_LOCK (lockable), error);
}

static gboolean
porta_lock_lockable_get_held (PortaLockable *lockable)
{
  return porta_lock_get_held (PORTA_LOCK (lockable));
}

static void
porta_lock_lockable_iface_init (PortaLockableInterface *iface)
{
  iface->acquire = porta_lock_lockable_acquire;
  iface->acquire_async = porta_lock_lockable_acquire_async;
  iface->acquire_finish = porta_lock_lockable_acquire_finish;
  iface->release = porta_lock_lockable_release;
  iface->get_held = porta_lock_lockable_get_held;
}
