/* porta-pid-file.c: a locked PID file, for a daemon's single-instance check
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "porta-common-private.h"
#include "porta-enums.h"
#include "porta-i18n-private.h"
#include "porta-lock.h"
#include "porta-lockable.h"
#include "porta-pid-file.h"
#include "porta-process-private.h"

/**
 * SECTION:porta-pid-file
 * @Title: PortaPidFile
 * @Short_description: a locked PID file, for a daemon's single-instance check
 *
 * A #PortaPidFile makes sure that only one instance of a daemon runs, and
 * tells the others which process that is. It holds an exclusive lock (with
 * the default backend, flock(2) on Linux) on its file for as long as it is
 * held and, once the lock is held, writes into the file the ID of the
 * holding process and that process's start time, each on a line of its
 * own:
 *
 * |[
 * 4242
 * 1234567
 * ]|
 *
 * The start time is field 22 of `/proc/PID/stat`, in clock ticks since the
 * system booted; together with the ID it names one process, even after the
 * kernel has given the same ID to another one.
 *
 * Unlike a PID file that is only written, the lock makes the check
 * reliable: the kernel drops it when the holder exits, however it exits
 * (even killed with `SIGKILL`), so a PID file left behind by a crashed
 * daemon, or one naming a process ID that has since been reused, never
 * keeps a new instance from starting, and porta_pid_file_query_holder()
 * never names a process that does not hold the file.
 *
 * |[<!-- language="C" -->
 * g_autoptr(PortaPidFile) pid_file = porta_pid_file_new_for_path ("/run/user/1000/mydaemon.pid");
 * g_autoptr(GError) error = NULL;
 *
 * if (!porta_pid_file_try_acquire (pid_file, &error))
 *   {
 *     g_autoptr(GFile) file = g_object_ref (porta_pid_file_get_file (pid_file));
 *     g_autofree char *command = NULL;
 *     int pid = 0;
 *
 *     if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK) &&
 *         porta_pid_file_query_holder (file, &pid, NULL, &command, NULL))
 *       g_printerr ("mydaemon is already running as %s (process %d)\n",
 *                   command != NULL ? command : "?", pid);
 *     else
 *       g_printerr ("%s\n", error->message);
 *     return EXIT_FAILURE;
 *   }
 *
 * // ... run the daemon; the PID file is held until the process exits,
 * // pid_file is disposed or porta_pid_file_release() is called ...
 * ]|
 *
 * Releasing empties the file while the lock is still held and then
 * releases the lock, but leaves the file in place. Deleting it would race:
 * a second instance that opened the file just before it was deleted would
 * lock the deleted file while a third one created and locked a new file at
 * the same path, and both would believe they run alone. An empty, unlocked
 * PID file means that no instance runs.
 *
 * A file that holds anything but a PID file's content (lines of digits:
 * this format, or the common one process ID a line) is refused with
 * %G_IO_ERROR_INVALID_DATA and left untouched, as is a file with more than
 * one link (%G_IO_ERROR_TOO_MANY_LINKS): a PID file pointed at the wrong
 * path, say a configuration file, must not overwrite it.
 *
 * #PortaPidFile implements #PortaLockable. Like #PortaLock, it is not
 * thread-safe: use it from one thread at a time.
 */

/**
 * PortaPidFile:
 *
 * A PID file held under an exclusive lock. Its fields are private.
 *
 * Since: 1.0
 */
struct _PortaPidFile
{
  GObject    parent_instance;

  GFile     *file;
  char      *display;   /* for messages */
  PortaLock *lock;

  guint      held : 1;
};

enum {
  PROP_0,
  PROP_FILE,
  N_PROPS,

  PROP_HELD = N_PROPS,
};

static GParamSpec *properties[N_PROPS];
static GParamSpec *held_pspec;

static void porta_pid_file_lockable_init (PortaLockableInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (PortaPidFile, porta_pid_file, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (PORTA_TYPE_LOCKABLE,
                                                      porta_pid_file_lockable_init))

static void
porta_pid_file_set_held (PortaPidFile *self,
                         gboolean      held)
{
  if (self->held == !!held)
    return;
  self->held = !!held;
  g_object_notify_by_pspec (G_OBJECT (self), held_pspec);
}

/* Rewrites the file through the lock's own descriptor with @contents
 * (empty to truncate it): never through a second descriptor, which would
 * drop a POSIX lock, and only while the lock is held. */
static gboolean
porta_pid_file_rewrite (PortaPidFile  *self,
                        const char    *contents,
                        GError       **error)
{
  GIOStream *stream = porta_lock_get_stream (self->lock);
  g_autoptr(GError) local_error = NULL;
  GOutputStream *out;

  g_assert (stream != NULL);
  out = g_io_stream_get_output_stream (stream);

  if (!g_seekable_seek (G_SEEKABLE (stream), 0, G_SEEK_SET, NULL, &local_error) ||
      !g_seekable_truncate (G_SEEKABLE (stream), 0, NULL, &local_error) ||
      !g_output_stream_write_all (out, contents, strlen (contents), NULL, NULL, &local_error) ||
      !g_output_stream_flush (out, NULL, &local_error))
    {
      g_set_error (error, local_error->domain, local_error->code,
                   _("Cannot write the PID file “%s”: %s"),
                   self->display, local_error->message);
      return FALSE;
    }
  return TRUE;
}

/* Whether @contents is what a PID file holds: nothing, or lines of digits
 * only (this library's "PID\nSTART\n", or the common one PID a line, with
 * or without the last newline). Anything else is someone's data. */
static gboolean
looks_like_pid_file (const char *contents,
                     gsize       length)
{
  gboolean digit_on_line = FALSE;

  for (gsize i = 0; i < length; i++)
    {
      char c = contents[i];

      if (g_ascii_isdigit (c))
        digit_on_line = TRUE;
      else if (c == '\n' && digit_on_line)
        digit_on_line = FALSE;
      else
        return FALSE;
    }
  return TRUE;
}

/* PID files are small: a file larger than this holds something else. */
#define PID_FILE_MAX_SIZE 4096

/* Called with the lock held, before anything is written: refuses a file
 * that is not a PID file (a typo in a path, a wrong unit file), which
 * acquiring would overwrite and releasing would empty, and a file with
 * more than one link, whose other names would see it change. The file is
 * left as it is. */
static gboolean
porta_pid_file_check_contents (PortaPidFile  *self,
                               GError       **error)
{
  GIOStream *stream = porta_lock_get_stream (self->lock);
  g_autoptr(GFileInfo) info = NULL;
  g_autoptr(GError) local_error = NULL;
  char buffer[PID_FILE_MAX_SIZE + 1];
  gsize length = 0;

  info = g_file_query_info (self->file, G_FILE_ATTRIBUTE_UNIX_NLINK,
                            G_FILE_QUERY_INFO_NOFOLLOW_SYMLINKS, NULL, NULL);
  if (info != NULL && g_file_info_has_attribute (info, G_FILE_ATTRIBUTE_UNIX_NLINK) &&
      g_file_info_get_attribute_uint32 (info, G_FILE_ATTRIBUTE_UNIX_NLINK) > 1)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_TOO_MANY_LINKS,
                   _("Refusing to use “%s” as a PID file: it has %u links, and "
                     "writing it would change the file under its other names too"),
                   self->display,
                   g_file_info_get_attribute_uint32 (info, G_FILE_ATTRIBUTE_UNIX_NLINK));
      return FALSE;
    }

  if (!g_seekable_seek (G_SEEKABLE (stream), 0, G_SEEK_SET, NULL, &local_error) ||
      !g_input_stream_read_all (g_io_stream_get_input_stream (stream), buffer, sizeof buffer,
                                &length, NULL, &local_error))
    {
      g_set_error (error, local_error->domain, local_error->code,
                   _("Cannot read the PID file “%s”: %s"),
                   self->display, local_error->message);
      return FALSE;
    }
  if (length > PID_FILE_MAX_SIZE || !looks_like_pid_file (buffer, length))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   _("Refusing to use “%s” as a PID file: it holds something other "
                     "than a process ID, which acquiring it would overwrite"),
                   self->display);
      return FALSE;
    }
  return TRUE;
}

/* Called with the lock just taken: writes "PID\nSTART\n", or releases the
 * lock again if that fails, so that a PID file is never held empty by a
 * failed acquire. A file that is not a PID file is refused untouched. */
static gboolean
porta_pid_file_write_pid (PortaPidFile  *self,
                          GError       **error)
{
  g_autofree char *contents = NULL;
  pid_t pid = getpid ();
  guint64 start_time = 0;

  if (porta_process_read_stat (pid, &start_time) == PORTA_PROCESS_ALIVE)
    contents = g_strdup_printf ("%d\n%" G_GUINT64_FORMAT "\n", (int) pid, start_time);
  else
    contents = g_strdup_printf ("%d\n", (int) pid);

  if (!porta_pid_file_check_contents (self, error) ||
      !porta_pid_file_rewrite (self, contents, error))
    {
      porta_lock_release (self->lock, NULL);
      return FALSE;
    }
  return TRUE;
}

static gboolean
porta_pid_file_check_not_held (PortaPidFile  *self,
                               GError       **error)
{
  if (!self->held)
    return TRUE;
  g_set_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_ALREADY_HELD,
               _("The PID file “%s” is already held by this process; "
                 "release it before acquiring it again"),
               self->display);
  return FALSE;
}

static void
porta_pid_file_dispose (GObject *object)
{
  PortaPidFile *self = PORTA_PID_FILE (object);

  if (self->held)
    porta_pid_file_release (self, NULL);
  g_clear_object (&self->lock);

  G_OBJECT_CLASS (porta_pid_file_parent_class)->dispose (object);
}

static void
porta_pid_file_finalize (GObject *object)
{
  PortaPidFile *self = PORTA_PID_FILE (object);

  g_clear_object (&self->file);
  g_free (self->display);

  G_OBJECT_CLASS (porta_pid_file_parent_class)->finalize (object);
}

static void
porta_pid_file_constructed (GObject *object)
{
  PortaPidFile *self = PORTA_PID_FILE (object);

  G_OBJECT_CLASS (porta_pid_file_parent_class)->constructed (object);

  if (self->file == NULL)
    {
      g_critical ("A PortaPidFile needs a file: set the “file” property");
      self->file = g_file_new_for_path ("/dev/null");
    }

  self->display = porta_file_display_name (self->file);
  self->lock = porta_lock_new_full (self->file,
                                    PORTA_LOCK_MODE_EXCLUSIVE,
                                    PORTA_BACKEND_DEFAULT,
                                    PORTA_LOCK_FLAGS_NONE);
}

static void
porta_pid_file_get_property (GObject    *object,
                             guint       prop_id,
                             GValue     *value,
                             GParamSpec *pspec)
{
  PortaPidFile *self = PORTA_PID_FILE (object);

  switch (prop_id)
    {
    case PROP_FILE:
      g_value_set_object (value, self->file);
      break;
    case PROP_HELD:
      g_value_set_boolean (value, self->held);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
porta_pid_file_set_property (GObject      *object,
                             guint         prop_id,
                             const GValue *value,
                             GParamSpec   *pspec)
{
  PortaPidFile *self = PORTA_PID_FILE (object);

  switch (prop_id)
    {
    case PROP_FILE:
      self->file = g_value_dup_object (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
porta_pid_file_class_init (PortaPidFileClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  porta_i18n_init ();

  object_class->constructed = porta_pid_file_constructed;
  object_class->dispose = porta_pid_file_dispose;
  object_class->finalize = porta_pid_file_finalize;
  object_class->get_property = porta_pid_file_get_property;
  object_class->set_property = porta_pid_file_set_property;

  /**
   * PortaPidFile:file:
   *
   * The PID file. It must be a local file (one with a path); it is created
   * if it does not exist, and is never deleted.
   *
   * Since: 1.0
   */
  properties[PROP_FILE] =
    g_param_spec_object ("file", "File", "The PID file",
                         G_TYPE_FILE,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                         G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /* The #PortaLockable:held property: %TRUE once the file is locked and
   * holds this process's ID, until it is released. */
  held_pspec = porta_lockable_override_held (object_class, PROP_HELD);
}

static void
porta_pid_file_init (PortaPidFile *self)
{
}

/**
 * porta_pid_file_new:
 * @file: the PID file, a local file
 *
 * Creates a #PortaPidFile for @file. Nothing is opened, locked or written
 * until it is acquired.
 *
 * Returns: (transfer full): a new #PortaPidFile
 *
 * Since: 1.0
 */
PortaPidFile *
porta_pid_file_new (GFile *file)
{
  g_return_val_if_fail (G_IS_FILE (file), NULL);

  return g_object_new (PORTA_TYPE_PID_FILE, "file", file, NULL);
}

/**
 * porta_pid_file_new_for_path:
 * @path: (type filename): the path of the PID file
 *
 * Creates a #PortaPidFile for the file at @path.
 *
 * Returns: (transfer full): a new #PortaPidFile
 *
 * Since: 1.0
 */
PortaPidFile *
porta_pid_file_new_for_path (const char *path)
{
  g_autoptr(GFile) file = NULL;

  g_return_val_if_fail (path != NULL, NULL);

  file = g_file_new_for_path (path);
  return porta_pid_file_new (file);
}

/**
 * porta_pid_file_get_file:
 * @self: a #PortaPidFile
 *
 * Gets the PID file.
 *
 * Returns: (transfer none): the file
 *
 * Since: 1.0
 */
GFile *
porta_pid_file_get_file (PortaPidFile *self)
{
  g_return_val_if_fail (PORTA_IS_PID_FILE (self), NULL);

  return self->file;
}

/**
 * porta_pid_file_get_held:
 * @self: a #PortaPidFile
 *
 * Gets whether this #PortaPidFile holds its file: it is locked and names
 * this process.
 *
 * Returns: %TRUE while the PID file is held
 *
 * Since: 1.0
 */
gboolean
porta_pid_file_get_held (PortaPidFile *self)
{
  g_return_val_if_fail (PORTA_IS_PID_FILE (self), FALSE);

  return self->held;
}

/**
 * porta_pid_file_acquire:
 * @self: a #PortaPidFile
 * @timeout_ms: how long to wait, in milliseconds: -1 to wait for as long as
 *   it takes, 0 to try once without waiting
 * @cancellable: (nullable): a #GCancellable, which may be cancelled from
 *   another thread to end the wait
 * @error: return location for a #GError
 *
 * Locks the PID file, waiting in the calling thread while another process
 * (or another #PortaPidFile) holds it, then writes this process's ID and
 * start time into it. The file is written only once the lock is held, so
 * a failed attempt never touches the holder's file.
 *
 * Fails with the errors of porta_lock_acquire(): %G_IO_ERROR_WOULD_BLOCK
 * if @timeout_ms is 0 and the file is held, %G_IO_ERROR_TIMED_OUT,
 * %G_IO_ERROR_CANCELLED, %PORTA_LOCK_ERROR_ALREADY_HELD if this
 * #PortaPidFile holds it already, and so on; and with the #GIOErrorEnum
 * code of the cause if the file cannot be written, in which case the lock
 * is released again. A file that is not a PID file, or that has more than
 * one link, is refused (%G_IO_ERROR_INVALID_DATA,
 * %G_IO_ERROR_TOO_MANY_LINKS) and left as it is.
 *
 * Returns: %TRUE if the PID file is now held
 *
 * Since: 1.0
 */
gboolean
porta_pid_file_acquire (PortaPidFile  *self,
                        int            timeout_ms,
                        GCancellable  *cancellable,
                        GError       **error)
{
  g_return_val_if_fail (PORTA_IS_PID_FILE (self), FALSE);
  g_return_val_if_fail (timeout_ms >= -1, FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!porta_pid_file_check_not_held (self, error) ||
      !porta_lock_acquire (self->lock, timeout_ms, cancellable, error) ||
      !porta_pid_file_write_pid (self, error))
    return FALSE;

  porta_pid_file_set_held (self, TRUE);
  return TRUE;
}

/**
 * porta_pid_file_try_acquire:
 * @self: a #PortaPidFile
 * @error: return location for a #GError
 *
 * Acquires the PID file if no other process holds it, without waiting:
 * the same as porta_pid_file_acquire() with a timeout of 0. Fails with
 * %G_IO_ERROR_WOULD_BLOCK if it is held; porta_pid_file_query_holder()
 * then tells by whom.
 *
 * Returns: %TRUE if the PID file is now held
 *
 * Since: 1.0
 */
gboolean
porta_pid_file_try_acquire (PortaPidFile  *self,
                            GError       **error)
{
  return porta_pid_file_acquire (self, 0, NULL, error);
}

static void
porta_pid_file_acquired (GObject      *source,
                         GAsyncResult *result,
                         gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  PortaPidFile *self = g_task_get_source_object (task);
  GError *error = NULL;

  if (!porta_lock_acquire_finish (PORTA_LOCK (source), result, &error) ||
      !porta_pid_file_write_pid (self, &error))
    {
      g_task_return_error (task, error);
      return;
    }

  porta_pid_file_set_held (self, TRUE);
  g_task_return_boolean (task, TRUE);
}

/**
 * porta_pid_file_acquire_async:
 * @self: a #PortaPidFile
 * @timeout_ms: how long to wait, in milliseconds: -1 to wait for as long as
 *   it takes, 0 to try once without waiting
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): a #GAsyncReadyCallback to call when the PID file
 *   is held or the attempt failed
 * @user_data: (closure callback): data for @callback
 *
 * Acquires the PID file without blocking the thread-default #GMainContext
 * of the caller, where @callback then runs; call
 * porta_pid_file_acquire_finish() from it. The wait is that of
 * porta_lock_acquire_async(), and the file is written, as by
 * porta_pid_file_acquire(), before @callback runs.
 *
 * Since: 1.0
 */
void
porta_pid_file_acquire_async (PortaPidFile        *self,
                              int                  timeout_ms,
                              int                  io_priority,
                              GCancellable        *cancellable,
                              GAsyncReadyCallback  callback,
                              gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  GError *error = NULL;

  g_return_if_fail (PORTA_IS_PID_FILE (self));
  g_return_if_fail (timeout_ms >= -1);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  /* A lock that was taken is reported as taken, even if the cancellable
   * was cancelled too late to stop it (see porta_task_new()). */
  task = porta_task_new (self, porta_pid_file_acquire_async, "[portalock] acquire PID file",
                         io_priority, callback, user_data);

  if (!porta_pid_file_check_not_held (self, &error))
    {
      g_task_return_error (task, error);
      return;
    }

  porta_lock_acquire_async (self->lock, timeout_ms, io_priority, cancellable,
                            porta_pid_file_acquired, g_steal_pointer (&task));
}

/**
 * porta_pid_file_acquire_finish:
 * @self: a #PortaPidFile
 * @result: the #GAsyncResult passed to the callback
 * @error: return location for a #GError
 *
 * Finishes porta_pid_file_acquire_async(). It fails with the errors of
 * porta_pid_file_acquire().
 *
 * Returns: %TRUE if the PID file is now held
 *
 * Since: 1.0
 */
gboolean
porta_pid_file_acquire_finish (PortaPidFile  *self,
                               GAsyncResult  *result,
                               GError       **error)
{
  g_return_val_if_fail (PORTA_IS_PID_FILE (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == porta_pid_file_acquire_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/**
 * porta_pid_file_release:
 * @self: a #PortaPidFile
 * @error: return location for a #GError
 *
 * Empties the PID file while its lock is still held, then releases the
 * lock. The file itself stays: deleting it would let two new instances
 * lock two different files at the same path (see the introduction).
 *
 * If the file cannot be emptied, the lock is released all the same and
 * the error says why; the process ID left in the file names nobody then,
 * as the file is no longer locked. Fails with %PORTA_LOCK_ERROR_NOT_HELD if
 * the PID file is not held.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
porta_pid_file_release (PortaPidFile  *self,
                        GError       **error)
{
  g_autoptr(GError) truncate_error = NULL;
  gboolean ok;

  g_return_val_if_fail (PORTA_IS_PID_FILE (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!self->held)
    {
      g_set_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_HELD,
                   _("Cannot release the PID file “%s”: it is not held"),
                   self->display);
      return FALSE;
    }

  porta_pid_file_rewrite (self, "", &truncate_error);
  ok = porta_lock_release (self->lock, error);
  porta_pid_file_set_held (self, FALSE);

  if (ok && truncate_error != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&truncate_error));
      return FALSE;
    }
  return ok;
}

/* Parses "PID\nSTART\n" (or "PID\n" from a system without /proc); the
 * start time is 0 when missing. Anything else is not a PID file. */
static gboolean
parse_pid_file (const char *contents,
                pid_t      *pid,
                guint64    *start_time)
{
  g_auto(GStrv) lines = g_strsplit (contents, "\n", -1);
  guint64 value;
  guint n = g_strv_length (lines);

  /* the last element is what follows the last newline: must be empty */
  if (n < 2 || n > 3 || *lines[n - 1] != '\0')
    return FALSE;
  if (!g_ascii_string_to_unsigned (lines[0], 10, 1, G_MAXINT, &value, NULL))
    return FALSE;
  *pid = (pid_t) value;
  *start_time = 0;
  if (n == 3 &&
      !g_ascii_string_to_unsigned (lines[1], 10, 0, G_MAXUINT64, start_time, NULL))
    return FALSE;
  return TRUE;
}

/* Whether process @pid is alive and, where /proc tells, started at
 * @start_time (which may be 0 if unknown); sets @actual_start_time to what
 * /proc says, 0 if it cannot tell. */
static gboolean
process_matches (pid_t    pid,
                 guint64  start_time,
                 guint64 *actual_start_time)
{
  *actual_start_time = 0;
  if (pid <= 0)
    return FALSE;
  switch (porta_process_read_stat (pid, actual_start_time))
    {
    case PORTA_PROCESS_ALIVE:
      return start_time == 0 || start_time == *actual_start_time;
    case PORTA_PROCESS_UNKNOWN:
      return porta_process_exists (pid);
    case PORTA_PROCESS_GONE:
    default:
      return FALSE;
    }
}

/**
 * porta_pid_file_query_holder:
 * @file: a PID file, a local file
 * @pid: (out): return location for the ID of the process that holds @file,
 *   or 0 if it is held but the holder cannot be told
 * @start_time: (out) (optional): return location for the holder's start
 *   time, in clock ticks since boot (field 22 of `/proc/PID/stat`), or 0
 *   if unknown
 * @command: (out) (optional) (transfer full) (nullable): return location
 *   for the holder's command name (from `/proc/PID/comm`), or %NULL if
 *   unknown
 * @error: return location for a #GError
 *
 * Tells whether a live process holds the PID file @file, as a
 * #PortaPidFile in any process does between acquiring and releasing it,
 * and which one. This takes no lock, not even for a moment, so it never
 * makes a starting instance's porta_pid_file_try_acquire() fail, and it
 * does not create @file if it is missing.
 *
 * The file is held if and only if it is locked, so a PID file left behind
 * by a process that died, or one that names a live process but is not
 * locked, is reported as not held. If it is locked, the process ID and
 * start time written in it are reported when that process is alive and
 * started at that time (so a reused process ID is never reported);
 * otherwise (the holder has locked the file but not written it yet, or the
 * file was written by something else) the process that the kernel says
 * holds the lock is reported, or 0 if the kernel does not say or names a
 * process that is gone. A holder can only be told apart from a reused
 * process ID on systems with `/proc`.
 *
 * porta_pid_file_query_holder_for_path() takes the path instead.
 *
 * Returns: %TRUE if a live process holds @file, with @pid (and
 *   @start_time and @command if asked for) set; %FALSE if nobody holds it,
 *   without setting @error, or if it could not be checked, with @error set
 *
 * Since: 1.0
 */
gboolean
porta_pid_file_query_holder (GFile    *file,
                             int      *pid,
                             guint64  *start_time,
                             char    **command,
                             GError  **error)
{
  g_autoptr(PortaLock) lock = NULL;
  g_autoptr(GError) local_error = NULL;
  g_autofree char *path = NULL;
  g_autofree char *display = NULL;
  g_autofree char *contents = NULL;
  g_autofree char *lock_command = NULL;
  int lock_pid = 0;
  pid_t holder = 0;
  pid_t file_pid = 0;
  guint64 file_start = 0;
  guint64 holder_start = 0;
  GStatBuf st;

  g_return_val_if_fail (G_IS_FILE (file), FALSE);
  g_return_val_if_fail (pid != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  *pid = 0;
  if (start_time != NULL)
    *start_time = 0;
  if (command != NULL)
    *command = NULL;

  path = g_file_get_path (file);
  display = porta_file_display_name (file);
  if (path == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   _("Cannot check the PID file “%s”: only files on a local "
                     "filesystem can be locked"),
                   display);
      return FALSE;
    }

  /* A missing file is held by nobody; the lock must not create it. */
  if (g_lstat (path, &st) != 0)
    {
      int errsv = errno;

      if (errsv == ENOENT)
        return FALSE;
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errsv),
                   _("Cannot check the PID file “%s”: %s"),
                   display, g_strerror (errsv));
      return FALSE;
    }

  /* Never acquired: it only asks the kernel who holds the file. */
  lock = porta_lock_new_full (file, PORTA_LOCK_MODE_SHARED,
                              PORTA_BACKEND_DEFAULT, PORTA_LOCK_FLAGS_NONE);
  if (!porta_lock_query_holder (lock, &lock_pid, &lock_command, &local_error))
    {
      if (local_error == NULL ||
          g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
        return FALSE;
      g_propagate_error (error, g_steal_pointer (&local_error));
      return FALSE;
    }

  /* The file is locked: someone holds it. Find out whom. */
  if (!g_file_get_contents (path, &contents, NULL, &local_error))
    {
      if (g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        return FALSE;  /* deleted since, by whoever holds it */
      g_set_error (error, G_IO_ERROR,
                   g_io_error_from_file_error ((GFileError) local_error->code),
                   _("Cannot read the PID file “%s”: %s"),
                   display, local_error->message);
      return FALSE;
    }

  /* The kernel's word on who locked the file wins over the file's
   * content, unless the locker has gone and left its lock to a child,
   * as a daemon that forks after locking does. */
  if (parse_pid_file (contents, &file_pid, &file_start) &&
      (lock_pid <= 0 || lock_pid == file_pid || !porta_process_exists (lock_pid)) &&
      process_matches (file_pid, file_start, &holder_start))
    holder = file_pid;
  else if (lock_pid > 0 && process_matches (lock_pid, 0, &holder_start))
    holder = lock_pid;
  else
    {
      holder = 0;
      holder_start = 0;
    }

  *pid = (int) holder;
  if (start_time != NULL)
    *start_time = holder_start;
  if (command != NULL)
    {
      if (holder > 0)
        *command = porta_process_command (holder);
      if (*command == NULL && holder == lock_pid)
        *command = g_steal_pointer (&lock_command);
    }
  return TRUE;
}

/**
 * porta_pid_file_query_holder_for_path:
 * @path: (type filename): the path of a PID file
 * @pid: (out): return location for the ID of the process that holds the
 *   file, or 0 if it is held but the holder cannot be told
 * @start_time: (out) (optional): return location for the holder's start
 *   time, in clock ticks since boot, or 0 if unknown
 * @command: (out) (optional) (transfer full) (nullable): return location
 *   for the holder's command name, or %NULL if unknown
 * @error: return location for a #GError
 *
 * porta_pid_file_query_holder() for the PID file at @path, for a program
 * that asks about a daemon's PID file without making a #GFile or a
 * #PortaPidFile first.
 *
 * Returns: %TRUE if a live process holds the file, with @pid (and
 *   @start_time and @command if asked for) set; %FALSE if nobody holds it,
 *   without setting @error, or if it could not be checked, with @error set
 *
 * Since: 1.2
 */
gboolean
porta_pid_file_query_holder_for_path (const char  *path,
                                      int         *pid,
                                      guint64     *start_time,
                                      char       **command,
                                      GError     **error)
{
  g_autoptr(GFile) file = NULL;

  g_return_val_if_fail (path != NULL, FALSE);

  file = g_file_new_for_path (path);
  return porta_pid_file_query_holder (file, pid, start_time, command, error);
}

static gboolean
porta_pid_file_lockable_acquire (PortaLockable  *lockable,
                                 int             timeout_ms,
                                 GCancellable   *cancellable,
                                 GError        **error)
{
  return porta_pid_file_acquire (PORTA_PID_FILE (lockable), timeout_ms, cancellable, error);
}

static void
porta_pid_file_lockable_acquire_async (PortaLockable       *lockable,
                                       int                  timeout_ms,
                                       int                  io_priority,
                                       GCancellable        *cancellable,
                                       GAsyncReadyCallback  callback,
                                       gpointer             user_data)
{
  porta_pid_file_acquire_async (PORTA_PID_FILE (lockable), timeout_ms, io_priority,
                                cancellable, callback, user_data);
}

static gboolean
porta_pid_file_lockable_acquire_finish (PortaLockable  *lockable,
                                        GAsyncResult   *result,
                                        GError        **error)
{
  return porta_pid_file_acquire_finish (PORTA_PID_FILE (lockable), result, error);
}

static gboolean
porta_pid_file_lockable_release (PortaLockable  *lockable,
                                 GError        **error)
{
  return porta_pid_file_release (PORTA_PID_FILE (lockable), error);
}

static gboolean
porta_pid_file_lockable_get_held (PortaLockable *lockable)
{
  return porta_pid_file_get_held (PORTA_PID_FILE (lockable));
}

static void
porta_pid_file_lockable_init (PortaLockableInterface *iface)
{
  iface->acquire = porta_pid_file_lockable_acquire;
  iface->acquire_async = porta_pid_file_lockable_acquire_async;
  iface->acquire_finish = porta_pid_file_lockable_acquire_finish;
  iface->release = porta_pid_file_lockable_release;
  iface->get_held = porta_pid_file_lockable_get_held;
}
