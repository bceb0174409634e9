/* porta-semaphore.c: at most N holders at once, between processes and threads
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <errno.h>
#include <string.h>

#include <glib/gstdio.h>

#include "porta-common-private.h"
#include "porta-i18n-private.h"
#include "porta-lock.h"
#include "porta-semaphore.h"

/**
 * SECTION:porta-semaphore
 * @Title: PortaSemaphore
 * @Short_description: at most N holders at once, between processes and threads
 * @See_also: #PortaLock, #PortaLockable
 *
 * A #PortaSemaphore lets at most #PortaSemaphore:max-holders holders in at
 * once, whichever process or thread they run in: a bounded semaphore
 * shared through the filesystem, as Python portalocker's
 * `NamedBoundedSemaphore`.
 *
 * |[<!-- language="C" -->
 * // At most 4 encoders at once on this machine, for this user.
 * g_autoptr(PortaSemaphore) sem = porta_semaphore_new ("encoders", 4, NULL);
 * g_autoptr(GError) error = NULL;
 *
 * if (!porta_semaphore_acquire (sem, 60000, NULL, &error))
 *   {
 *     g_printerr ("%s\n", error->message);
 *     return FALSE;
 *   }
 * g_print ("encoding in slot %d\n", porta_semaphore_get_slot (sem));
 * // ... at most 4 processes at a time run this ...
 * porta_semaphore_release (sem, NULL);
 * ]|
 *
 * The semaphore is a set of slot files, `NAME.0.lock` to `NAME.N-1.lock`
 * in #PortaSemaphore:directory, each locked exclusively with flock(2) (the
 * default backend of #PortaLock) by the holder of that slot. Every
 * #PortaSemaphore with the same name, folder and number of holders is the
 * same semaphore, in any process; semaphores that disagree on the number of
 * holders share the slots they have in common, so give every user of a
 * name the same number. The slot files are created when first needed and
 * never deleted or written.
 *
 * An acquisition first tries every slot once without waiting, starting at
 * a random one so that holders spread over the slots. When all are taken
 * it waits for all of them at once, each wait blocked in the kernel, so it
 * uses no CPU and gets the first slot that anyone releases as soon as it is
 * released; the other waits are then cancelled, and a slot won by two of
 * them at the same moment is released again at once. Timeouts and
 * cancellation end the wait promptly, and a wait that gives up leaves
 * nothing open and keeps no slot from anyone.
 *
 * Like a #PortaLock, a #PortaSemaphore is one holder: it holds at most one
 * slot, and is not thread-safe. Give each thread that needs a slot a
 * #PortaSemaphore of its own: they exclude each other as processes do.
 * Disposing a #PortaSemaphore that holds a slot releases it.
 *
 * A #PortaSemaphore is a #PortaLockable, so code written for any kind of
 * lock works with it.
 */

/* Each waiting acquisition keeps one file open per slot, and a slot file
 * name must fit in NAME_MAX. */
#define MAX_SLOTS       256
#define MAX_FILE_NAME   255

/**
 * PortaSemaphore:
 *
 * A bounded semaphore between processes and threads: at most
 * #PortaSemaphore:max-holders holders at once. Its fields are private.
 *
 * Since: 1.0
 */
struct _PortaSemaphore
{
  GObject     parent_instance;

  char       *name;
  char       *display_name;       /* for messages */
  guint       max_holders;
  GFile      *directory;
  char       *display_directory;  /* for messages */

  PortaLock **slots;              /* max_holders of them, made on first use */
  int         slot;               /* the held slot, or -1 */

  guint       default_directory : 1;
  guint       directory_ready : 1;
  guint       pending : 1;
};

enum {
  PROP_0,
  PROP_NAME,
  PROP_MAX_HOLDERS,
  PROP_DIRECTORY,
  PROP_SLOT,
  N_PROPS,

  PROP_HELD = N_PROPS,
};

static GParamSpec *properties[N_PROPS];
static GParamSpec *held_pspec;

static void porta_semaphore_lockable_init (PortaLockableInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (PortaSemaphore, porta_semaphore, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (PORTA_TYPE_LOCKABLE,
                                                      porta_semaphore_lockable_init))

static void
porta_semaphore_set_slot (PortaSemaphore *self,
                          int             slot)
{
  gboolean was_held = self->slot >= 0;

  if (self->slot == slot)
    return;

  g_object_freeze_notify (G_OBJECT (self));
  self->slot = slot;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_SLOT]);
  if (was_held != (slot >= 0))
    g_object_notify_by_pspec (G_OBJECT (self), held_pspec);
  g_object_thaw_notify (G_OBJECT (self));
}

static PortaLock *
porta_semaphore_get_slot_lock (PortaSemaphore *self,
                               guint           i)
{
  if (self->slots[i] == NULL)
    {
      g_autofree char *basename = g_strdup_printf ("%s.%u.lock", self->name, i);
      g_autoptr(GFile) file = g_file_get_child (self->directory, basename);

      self->slots[i] = porta_lock_new (file, PORTA_LOCK_MODE_EXCLUSIVE);
    }
  return self->slots[i];
}

static guint
count_digits (guint n)
{
  guint digits = 1;

  while (n >= 10)
    {
      n /= 10;
      digits++;
    }
  return digits;
}

/* The name becomes part of file names in the folder, and nothing else. */
static gboolean
porta_semaphore_check_name (PortaSemaphore  *self,
                            GError         **error)
{
  const char *name = self->name;
  gsize slot_name_len;

  if (name == NULL || name[0] == '\0')
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_FILENAME,
                   _("Invalid semaphore name “%s”: the name is empty"),
                   self->display_name);
      return FALSE;
    }
  if (strcmp (name, ".") == 0 || strcmp (name, "..") == 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_FILENAME,
                   _("Invalid semaphore name “%s”: “.” and “..” are names of folders"),
                   self->display_name);
      return FALSE;
    }
  if (strchr (name, '/') != NULL || strchr (name, G_DIR_SEPARATOR) != NULL)
    {
      /* Translators: %c is the folder separator, “/” */
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_FILENAME,
                   _("Invalid semaphore name “%s”: a name cannot contain “%c”"),
                   self->display_name, strchr (name, '/') != NULL ? '/' : G_DIR_SEPARATOR);
      return FALSE;
    }
  if (!g_utf8_validate (name, -1, NULL))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_FILENAME,
                   _("Invalid semaphore name “%s”: a name must be valid UTF-8"),
                   self->display_name);
      return FALSE;
    }
  /* NAME.<i>.lock */
  slot_name_len = strlen (name) + 1 + count_digits (self->max_holders - 1) + strlen (".lock");
  if (slot_name_len > MAX_FILE_NAME)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_FILENAME,
                   _("Invalid semaphore name “%s”: its slot file names would be "
                     "longer than %d bytes"),
                   self->display_name, MAX_FILE_NAME);
      return FALSE;
    }
  return TRUE;
}

/* GLib creates the fallback of g_get_user_runtime_dir() but not the folder
 * XDG_RUNTIME_DIR names; a folder the caller chose is the caller's to make. */
static gboolean
porta_semaphore_prepare_directory (PortaSemaphore  *self,
                                   GError         **error)
{
  const char *path;

  if (self->directory_ready || !self->default_directory)
    return TRUE;

  path = g_file_peek_path (self->directory);
  if (g_mkdir_with_parents (path, 0700) != 0)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   _("Cannot create the folder “%s” for the semaphore “%s”: %s"),
                   self->display_directory, self->display_name,
                   g_strerror (saved_errno));
      return FALSE;
    }
  self->directory_ready = TRUE;
  return TRUE;
}

static gboolean
porta_semaphore_check_usable (PortaSemaphore  *self,
                              GError         **error)
{
  if (self->slot >= 0)
    {
      g_set_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_ALREADY_HELD,
                   _("The semaphore “%s” in “%s” is already held by this "
                     "PortaSemaphore; release it before acquiring it again"),
                   self->display_name, self->display_directory);
      return FALSE;
    }
  if (self->pending)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_PENDING,
                   _("An acquisition of the semaphore “%s” in “%s” is already in progress"),
                   self->display_name, self->display_directory);
      return FALSE;
    }
  return porta_semaphore_check_name (self, error) &&
         porta_semaphore_prepare_directory (self, error);
}

static void
porta_semaphore_set_cancelled_error (PortaSemaphore  *self,
                                     GError         **error)
{
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED,
               _("Waiting for a slot of the semaphore “%s” in “%s” was cancelled"),
               self->display_name, self->display_directory);
}

static void
porta_semaphore_set_timed_out_error (PortaSemaphore  *self,
                                     int              timeout_ms,
                                     GError         **error)
{
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
               _("Timed out after %d ms waiting for a slot of the semaphore “%s” in “%s”"),
               timeout_ms, self->display_name, self->display_directory);
}

static void
porta_semaphore_prefix_error (PortaSemaphore  *self,
                              GError         **error)
{
  g_prefix_error (error, _("Cannot acquire the semaphore “%s” in “%s”: "),
                  self->display_name, self->display_directory);
}

/* What the first, non-blocking pass over the slots came to. */
enum
{
  BEGIN_ERROR = -2,   /* error set */
  BEGIN_WAIT  = -1,   /* every slot is taken: wait for one */
  /* >= 0: the slot now held */
};

/* Checks that an acquisition may start, then tries every slot once without
 * waiting, from a random one so that holders spread over the slots. */
static int
porta_semaphore_begin (PortaSemaphore  *self,
                       int              timeout_ms,
                       GCancellable    *cancellable,
                       GError         **error)
{
  guint start;

  if (!porta_semaphore_check_usable (self, error))
    return BEGIN_ERROR;
  if (g_cancellable_is_cancelled (cancellable))
    {
      porta_semaphore_set_cancelled_error (self, error);
      return BEGIN_ERROR;
    }

  start = g_random_int_range (0, (gint32) self->max_holders);
  for (guint k = 0; k < self->max_holders; k++)
    {
      guint i = (start + k) % self->max_holders;
      GError *local_error = NULL;

      if (porta_lock_try_acquire (porta_semaphore_get_slot_lock (self, i), &local_error))
        return (int) i;
      if (!g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        {
          g_propagate_error (error, local_error);
          porta_semaphore_prefix_error (self, error);
          return BEGIN_ERROR;
        }
      g_error_free (local_error);
    }

  if (timeout_ms == 0)
    {
      if (self->max_holders == 1)
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK,
                     _("The slot of the semaphore “%s” in “%s” is taken"),
                     self->display_name, self->display_directory);
      else
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK,
                     g_dngettext (GETTEXT_PACKAGE,
                                  "All %u slot of the semaphore “%s” in “%s” are taken",
                                  "All %u slots of the semaphore “%s” in “%s” are taken",
                                  self->max_holders),
                     self->max_holders, self->display_name, self->display_directory);
      return BEGIN_ERROR;
    }
  return BEGIN_WAIT;
}

/* The wait for a slot when all are taken: every slot's lock is waited for
 * at once, each under one cancellable of the race chained to the caller's.
 * The first slot won ends the race by cancelling the others; the result is
 * reported only when every wait has come back, so that no wait outlives the
 * acquisition. */
typedef struct
{
  int           timeout_ms;
  GCancellable *cancellable;    /* the caller's, or NULL */
  GCancellable *race_cancellable;
  gulong        chain_handler;  /* on @cancellable */
  guint         n_running;
  int           winner;         /* the slot won, or -1 */
  GError       *error;          /* the first failure that is not the race ending */
} Race;

static void
race_free (gpointer data)
{
  Race *race = data;

  g_clear_object (&race->race_cancellable);
  g_clear_object (&race->cancellable);
  g_clear_error (&race->error);
  g_free (race);
}

static void
race_chain_cancel (GCancellable *cancellable,
                   gpointer      user_data)
{
  g_cancellable_cancel (G_CANCELLABLE (user_data));
}

static int
race_slot_index (PortaSemaphore *self,
                 PortaLock      *lock)
{
  for (guint i = 0; i < self->max_holders; i++)
    if (self->slots[i] == lock)
      return (int) i;
  g_assert_not_reached ();
  return -1;
}

static void
race_finish (GTask *task)
{
  PortaSemaphore *self = g_task_get_source_object (task);
  Race *race = g_task_get_task_data (task);
  GCancellable *cancellable = race->cancellable;
  GError *error = NULL;

  /* Disconnecting waits for a handler running in another thread, after
   * which the race's cancellable can go. */
  if (race->chain_handler != 0)
    g_cancellable_disconnect (cancellable, race->chain_handler);
  race->chain_handler = 0;

  self->pending = FALSE;

  /* Whether a slot was won decides the result, not a cancellation that
   * came too late to stop it: as for porta_lock_acquire_async(). */
  if (race->winner >= 0)
    {
      porta_semaphore_set_slot (self, race->winner);
      g_task_return_boolean (task, TRUE);
    }
  else
    {
      if (race->error != NULL)
        error = g_steal_pointer (&race->error);
      else if (race->timeout_ms < 0 || g_cancellable_is_cancelled (cancellable))
        porta_semaphore_set_cancelled_error (self, &error);
      else
        porta_semaphore_set_timed_out_error (self, race->timeout_ms, &error);
      g_task_return_error (task, error);
    }
  g_object_unref (task);
}

static void
race_slot_done (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  GTask *task = user_data;
  PortaSemaphore *self = g_task_get_source_object (task);
  Race *race = g_task_get_task_data (task);
  PortaLock *lock = PORTA_LOCK (source);
  GError *error = NULL;

  if (porta_lock_acquire_finish (lock, result, &error))
    {
      if (race->winner < 0)
        {
          race->winner = race_slot_index (self, lock);
          g_cancellable_cancel (race->race_cancellable);
        }
      else
        porta_lock_release (lock, NULL);  /* won in the same race: give it back */
    }
  else if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) ||
           g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
    g_clear_error (&error);
  else if (race->error == NULL)
    {
      /* A slot that cannot be locked at all: give up on the others too. */
      race->error = g_steal_pointer (&error);
      porta_semaphore_prefix_error (self, &race->error);
      g_cancellable_cancel (race->race_cancellable);
    }
  g_clear_error (&error);

  if (--race->n_running == 0)
    race_finish (task);
}

static int
remaining_ms (gint64 deadline)
{
  gint64 left;

  if (deadline < 0)
    return -1;
  left = (deadline - g_get_monotonic_time () + 999) / 1000;
  return (int) CLAMP (left, 1, G_MAXINT);
}

/* Takes the reference of @task, whose callback runs in the thread-default
 * main context. */
static void
race_start (GTask        *task,
            int           timeout_ms,
            gint64        deadline,
            GCancellable *cancellable)
{
  PortaSemaphore *self = g_task_get_source_object (task);
  Race *race = g_new0 (Race, 1);
  int slot_timeout_ms;

  race->timeout_ms = timeout_ms;
  race->cancellable = cancellable != NULL ? g_object_ref (cancellable) : NULL;
  race->winner = -1;
  race->race_cancellable = g_cancellable_new ();
  race->n_running = self->max_holders;
  g_task_set_task_data (task, race, race_free);

  if (cancellable != NULL)
    race->chain_handler = g_cancellable_connect (cancellable,
                                                 G_CALLBACK (race_chain_cancel),
                                                 race->race_cancellable, NULL);

  self->pending = TRUE;
  slot_timeout_ms = remaining_ms (deadline);
  /* Every callback comes from a later main loop iteration, so none can end
   * the race before all waits have started. */
  for (guint i = 0; i < self->max_holders; i++)
    porta_lock_acquire_async (porta_semaphore_get_slot_lock (self, i),
                              slot_timeout_ms, g_task_get_priority (task),
                              race->race_cancellable, race_slot_done, task);
}

/* The task carries no cancellable (see porta_task_new()); the race
 * keeps the caller's. */
static GTask *
porta_semaphore_new_task (PortaSemaphore      *self,
                          int                  io_priority,
                          GAsyncReadyCallback  callback,
                          gpointer             user_data)
{
  return porta_task_new (self, porta_semaphore_acquire_async, "[portalock] acquire semaphore",
                         io_priority, callback, user_data);
}

static void
porta_semaphore_dispose (GObject *object)
{
  PortaSemaphore *self = PORTA_SEMAPHORE (object);

  if (self->slot >= 0)
    porta_semaphore_release (self, NULL);
  if (self->slots != NULL)
    for (guint i = 0; i < self->max_holders; i++)
      g_clear_object (&self->slots[i]);
  g_clear_object (&self->directory);

  G_OBJECT_CLASS (porta_semaphore_parent_class)->dispose (object);
}

static void
porta_semaphore_finalize (GObject *object)
{
  PortaSemaphore *self = PORTA_SEMAPHORE (object);

  g_free (self->slots);
  g_free (self->name);
  g_free (self->display_name);
  g_free (self->display_directory);

  G_OBJECT_CLASS (porta_semaphore_parent_class)->finalize (object);
}

static void
porta_semaphore_constructed (GObject *object)
{
  PortaSemaphore *self = PORTA_SEMAPHORE (object);

  G_OBJECT_CLASS (porta_semaphore_parent_class)->constructed (object);

  if (self->name == NULL)
    g_critical ("A PortaSemaphore needs a name: set the “name” property");
  self->display_name = g_utf8_make_valid (self->name != NULL ? self->name : "", -1);

  if (self->directory == NULL)
    {
      self->directory = g_file_new_for_path (g_get_user_runtime_dir ());
      self->default_directory = TRUE;
    }
  self->display_directory = porta_file_display_name (self->directory);

  self->slots = g_new0 (PortaLock *, self->max_holders);
}

static void
porta_semaphore_get_property (GObject    *object,
                              guint       prop_id,
                              GValue     *value,
                              GParamSpec *pspec)
{
  PortaSemaphore *self = PORTA_SEMAPHORE (object);

  switch (prop_id)
    {
    case PROP_NAME:
      g_value_set_string (value, self->name);
      break;
    case PROP_MAX_HOLDERS:
      g_value_set_uint (value, self->max_holders);
      break;
    case PROP_DIRECTORY:
      g_value_set_object (value, self->directory);
      break;
    case PROP_SLOT:
      g_value_set_int (value, self->slot);
      break;
    case PROP_HELD:
      g_value_set_boolean (value, self->slot >= 0);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
porta_semaphore_set_property (GObject      *object,
                              guint         prop_id,
                              const GValue *value,
                              GParamSpec   *pspec)
{
  PortaSemaphore *self = PORTA_SEMAPHORE (object);

  switch (prop_id)
    {
    case PROP_NAME:
      self->name = g_value_dup_string (value);
      break;
    case PROP_MAX_HOLDERS:
      self->max_holders = g_value_get_uint (value);
      break;
    case PROP_DIRECTORY:
      self->directory = g_value_dup_object (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
porta_semaphore_class_init (PortaSemaphoreClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  porta_i18n_init ();

  object_class->constructed = porta_semaphore_constructed;
  object_class->dispose = porta_semaphore_dispose;
  object_class->finalize = porta_semaphore_finalize;
  object_class->get_property = porta_semaphore_get_property;
  object_class->set_property = porta_semaphore_set_property;

  /**
   * PortaSemaphore:name:
   *
   * The name of the semaphore, which names its slot files: a non-empty
   * UTF-8 string that is a valid file name, so neither “.” nor “..” and
   * without “/”. An invalid name makes every acquisition fail with
   * %G_IO_ERROR_INVALID_FILENAME.
   *
   * Since: 1.0
   */
  properties[PROP_NAME] =
    g_param_spec_string ("name", "Name", "The name of the semaphore",
                         NULL,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                         G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * PortaSemaphore:max-holders:
   *
   * How many holders the semaphore lets in at once, from 1 to 256: the
   * number of its slot files.
   *
   * Since: 1.0
   */
  properties[PROP_MAX_HOLDERS] =
    g_param_spec_uint ("max-holders", "Max holders", "How many may hold the semaphore at once",
                       1, MAX_SLOTS, 1,
                       G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                       G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * PortaSemaphore:directory:
   *
   * The folder of the slot files, a local folder. When none is given at
   * construction it is g_get_user_runtime_dir(), created (mode 0700) if
   * missing, and reading the property gives that folder. A folder given
   * at construction must exist.
   *
   * Since: 1.0
   */
  properties[PROP_DIRECTORY] =
    g_param_spec_object ("directory", "Directory", "The folder of the slot files",
                         G_TYPE_FILE,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                         G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * PortaSemaphore:slot:
   *
   * The index of the slot held, from 0 to #PortaSemaphore:max-holders - 1,
   * or -1 while the semaphore is not held. It is notified when it changes.
   *
   * Since: 1.0
   */
  properties[PROP_SLOT] =
    g_param_spec_int ("slot", "Slot", "The slot held, or -1",
                      -1, MAX_SLOTS - 1, -1,
                      G_PARAM_READABLE |
                      G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /* PortaSemaphore:held is the PortaLockable property: notified when it
   * changes, together with PortaSemaphore:slot, in the thread that
   * acquired or released the slot (for porta_semaphore_acquire_async(), in
   * the caller's thread-default main context, before the callback runs). */
  held_pspec = porta_lockable_override_held (object_class, PROP_HELD);
}

static void
porta_semaphore_init (PortaSemaphore *self)
{
  self->max_holders = 1;
  self->slot = -1;
}

/**
 * porta_semaphore_new:
 * @name: the name of the semaphore, a valid file name
 * @max_holders: how many holders it lets in at once, from 1 to 256
 * @directory: (nullable): the folder of its slot files, or %NULL for
 *   g_get_user_runtime_dir()
 *
 * Creates a #PortaSemaphore that holds one of the @max_holders slots of
 * the semaphore @name in @directory. Nothing is opened or locked until it
 * is acquired, and @name is checked then. porta_semaphore_new_for_path()
 * takes the folder as a path.
 *
 * Returns: (transfer full): a new #PortaSemaphore
 *
 * Since: 1.0
 */
PortaSemaphore *
porta_semaphore_new (const char *name,
                     guint       max_holders,
                     GFile      *directory)
{
  g_return_val_if_fail (name != NULL, NULL);
  g_return_val_if_fail (max_holders >= 1 && max_holders <= MAX_SLOTS, NULL);
  g_return_val_if_fail (directory == NULL || G_IS_FILE (directory), NULL);

  return g_object_new (PORTA_TYPE_SEMAPHORE,
                       "name", name,
                       "max-holders", max_holders,
                       "directory", directory,
                       NULL);
}

/**
 * porta_semaphore_new_for_path:
 * @name: the name of the semaphore, a valid file name
 * @max_holders: how many holders it lets in at once, from 1 to 256
 * @directory: (type filename) (nullable): the path of the folder of its
 *   slot files, or %NULL for g_get_user_runtime_dir()
 *
 * Creates a #PortaSemaphore as porta_semaphore_new() does, with its folder
 * given as a path.
 *
 * Returns: (transfer full): a new #PortaSemaphore
 *
 * Since: 1.2
 */
PortaSemaphore *
porta_semaphore_new_for_path (const char *name,
                              guint       max_holders,
                              const char *directory)
{
  g_autoptr(GFile) folder = NULL;

  g_return_val_if_fail (name != NULL, NULL);
  g_return_val_if_fail (max_holders >= 1 && max_holders <= MAX_SLOTS, NULL);

  if (directory != NULL)
    folder = g_file_new_for_path (directory);
  return porta_semaphore_new (name, max_holders, folder);
}

/**
 * porta_semaphore_get_name:
 * @self: a #PortaSemaphore
 *
 * Gets the name of the semaphore.
 *
 * Returns: (transfer none): the name
 *
 * Since: 1.0
 */
const char *
porta_semaphore_get_name (PortaSemaphore *self)
{
  g_return_val_if_fail (PORTA_IS_SEMAPHORE (self), NULL);

  return self->name;
}

/**
 * porta_semaphore_get_max_holders:
 * @self: a #PortaSemaphore
 *
 * Gets how many holders the semaphore lets in at once.
 *
 * Returns: the number of slots
 *
 * Since: 1.0
 */
guint
porta_semaphore_get_max_holders (PortaSemaphore *self)
{
  g_return_val_if_fail (PORTA_IS_SEMAPHORE (self), 0);

  return self->max_holders;
}

/**
 * porta_semaphore_get_directory:
 * @self: a #PortaSemaphore
 *
 * Gets the folder of the slot files.
 *
 * Returns: (transfer none): the folder
 *
 * Since: 1.0
 */
GFile *
porta_semaphore_get_directory (PortaSemaphore *self)
{
  g_return_val_if_fail (PORTA_IS_SEMAPHORE (self), NULL);

  return self->directory;
}

/**
 * porta_semaphore_get_held:
 * @self: a #PortaSemaphore
 *
 * Gets whether this #PortaSemaphore holds a slot.
 *
 * Returns: %TRUE while a slot is held
 *
 * Since: 1.0
 */
gboolean
porta_semaphore_get_held (PortaSemaphore *self)
{
  g_return_val_if_fail (PORTA_IS_SEMAPHORE (self), FALSE);

  return self->slot >= 0;
}

/**
 * porta_semaphore_get_slot:
 * @self: a #PortaSemaphore
 *
 * Gets the index of the slot this #PortaSemaphore holds: its slot file is
 * `NAME.SLOT.lock`.
 *
 * Returns: the slot, from 0 to #PortaSemaphore:max-holders - 1, or -1 if
 *   none is held
 *
 * Since: 1.0
 */
int
porta_semaphore_get_slot (PortaSemaphore *self)
{
  g_return_val_if_fail (PORTA_IS_SEMAPHORE (self), -1);

  return self->slot;
}

/**
 * porta_semaphore_acquire:
 * @self: a #PortaSemaphore
 * @timeout_ms: how long to wait, in milliseconds: -1 to wait for as long as
 *   it takes, 0 to try once without waiting
 * @cancellable: (nullable): a #GCancellable, which may be cancelled from
 *   another thread to end the wait
 * @error: return location for a #GError
 *
 * Acquires a slot of the semaphore, waiting in the calling thread while
 * all are taken. The wait runs on a private #GMainContext of its own, so
 * no other source of the caller's main contexts is dispatched meanwhile.
 *
 * Fails with %G_IO_ERROR_WOULD_BLOCK if @timeout_ms is 0 and every slot is
 * taken, %G_IO_ERROR_TIMED_OUT when @timeout_ms passes first,
 * %G_IO_ERROR_CANCELLED when @cancellable is cancelled first,
 * %G_IO_ERROR_INVALID_FILENAME if #PortaSemaphore:name is not a valid
 * name, %PORTA_LOCK_ERROR_ALREADY_HELD if this #PortaSemaphore holds a slot
 * already, %G_IO_ERROR_PENDING while an acquisition of it is in progress,
 * and with the errors of porta_lock_acquire() if a slot file cannot be
 * opened or locked, such as %G_IO_ERROR_NOT_FOUND for a missing folder. A
 * wait that fails leaves nothing behind: no slot is held, and nothing keeps
 * one from others. A cancellation or a timeout that comes after a slot
 * was won does not undo it: the result is then %TRUE.
 *
 * Returns: %TRUE if a slot is now held
 *
 * Since: 1.0
 */
gboolean
porta_semaphore_acquire (PortaSemaphore  *self,
                         int              timeout_ms,
                         GCancellable    *cancellable,
                         GError         **error)
{
  g_autoptr(GAsyncResult) result = NULL;
  PortaSync sync;
  gint64 deadline;
  int begun;

  g_return_val_if_fail (PORTA_IS_SEMAPHORE (self), FALSE);
  g_return_val_if_fail (timeout_ms >= -1, FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  deadline = porta_deadline (timeout_ms);
  begun = porta_semaphore_begin (self, timeout_ms, cancellable, error);
  if (begun == BEGIN_ERROR)
    return FALSE;
  if (begun >= 0)
    {
      porta_semaphore_set_slot (self, begun);
      return TRUE;
    }

  /* The same wait as porta_semaphore_acquire_async(), on a main context
   * that only it uses (as g_subprocess_wait() does). */
  porta_sync_init (&sync);
  race_start (porta_semaphore_new_task (self, G_PRIORITY_DEFAULT, porta_sync_store, &sync),
              timeout_ms, deadline, cancellable);
  result = porta_sync_wait (&sync);
  return g_task_propagate_boolean (G_TASK (result), error);
}

/**
 * porta_semaphore_try_acquire:
 * @self: a #PortaSemaphore
 * @error: return location for a #GError
 *
 * Acquires a slot of the semaphore if one is free, without waiting: the
 * same as porta_semaphore_acquire() with a timeout of 0. Fails with
 * %G_IO_ERROR_WOULD_BLOCK if every slot is taken.
 *
 * Returns: %TRUE if a slot is now held
 *
 * Since: 1.0
 */
gboolean
porta_semaphore_try_acquire (PortaSemaphore  *self,
                             GError         **error)
{
  return porta_semaphore_acquire (self, 0, NULL, error);
}

/**
 * porta_semaphore_acquire_async:
 * @self: a #PortaSemaphore
 * @timeout_ms: how long to wait, in milliseconds: -1 to wait for as long as
 *   it takes, 0 to try once without waiting
 * @io_priority: the I/O priority of the request, such as %G_PRIORITY_DEFAULT
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): a #GAsyncReadyCallback to call when a slot is
 *   held or the attempt failed
 * @user_data: (closure callback): data for @callback
 *
 * Acquires a slot of the semaphore without blocking the thread-default
 * #GMainContext of the caller, where @callback then runs. Call
 * porta_semaphore_acquire_finish() from it to learn the result.
 *
 * The slots are tried at once; if all are taken, each is waited for in the
 * kernel by a thread that portalock owns for that wait alone, so the other
 * sources of the main context go on meanwhile. (Beyond the number of such
 * threads a process may have, `PORTALOCK_MAX_WAITER_THREADS`, 64 by
 * default, further waits retry with a back-off instead.) Timeouts and cancellation
 * behave as for porta_semaphore_acquire(), and @callback runs exactly
 * once, after every wait has ended. Only one acquisition of a
 * #PortaSemaphore may be in progress at a time; a second one fails with
 * %G_IO_ERROR_PENDING.
 *
 * Since: 1.0
 */
void
porta_semaphore_acquire_async (PortaSemaphore      *self,
                               int                  timeout_ms,
                               int                  io_priority,
                               GCancellable        *cancellable,
                               GAsyncReadyCallback  callback,
                               gpointer             user_data)
{
  GTask *task;
  GError *error = NULL;
  gint64 deadline;
  int begun;

  g_return_if_fail (PORTA_IS_SEMAPHORE (self));
  g_return_if_fail (timeout_ms >= -1);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = porta_semaphore_new_task (self, io_priority, callback, user_data);

  deadline = porta_deadline (timeout_ms);
  begun = porta_semaphore_begin (self, timeout_ms, cancellable, &error);
  if (begun == BEGIN_WAIT)
    {
      race_start (task, timeout_ms, deadline, cancellable);
      return;
    }

  if (begun == BEGIN_ERROR)
    g_task_return_error (task, error);
  else
    {
      porta_semaphore_set_slot (self, begun);
      g_task_return_boolean (task, TRUE);
    }
  g_object_unref (task);
}

/**
 * porta_semaphore_acquire_finish:
 * @self: a #PortaSemaphore
 * @result: the #GAsyncResult passed to the callback
 * @error: return location for a #GError
 *
 * Finishes porta_semaphore_acquire_async(). It fails with the errors of
 * porta_semaphore_acquire().
 *
 * Returns: %TRUE if a slot is now held
 *
 * Since: 1.0
 */
gboolean
porta_semaphore_acquire_finish (PortaSemaphore  *self,
                                GAsyncResult    *result,
                                GError         **error)
{
  g_return_val_if_fail (PORTA_IS_SEMAPHORE (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == porta_semaphore_acquire_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/**
 * porta_semaphore_release:
 * @self: a #PortaSemaphore
 * @error: return location for a #GError
 *
 * Releases the slot this #PortaSemaphore holds. A waiter blocked on the
 * semaphore in another thread or process gets it at once.
 *
 * Fails with %PORTA_LOCK_ERROR_NOT_HELD if no slot is held.
 *
 * Returns: %TRUE on success
 *
 * Since: 1.0
 */
gboolean
porta_semaphore_release (PortaSemaphore  *self,
                         GError         **error)
{
  PortaLock *lock;
  gboolean ok;

  g_return_val_if_fail (PORTA_IS_SEMAPHORE (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (self->slot < 0)
    {
      g_set_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_HELD,
                   _("Cannot release the semaphore “%s” in “%s”: it is not held"),
                   self->display_name, self->display_directory);
      return FALSE;
    }

  lock = self->slots[self->slot];
  ok = porta_lock_release (lock, error);
  porta_semaphore_set_slot (self, -1);
  return ok;
}

static gboolean
porta_semaphore_lockable_acquire (PortaLockable  *lockable,
                                  int             timeout_ms,
                                  GCancellable   *cancellable,
                                  GError        **error)
{
  return porta_semaphore_acquire (PORTA_SEMAPHORE (lockable), timeout_ms, cancellable, error);
}

static void
porta_semaphore_lockable_acquire_async (PortaLockable       *lockable,
                                        int                  timeout_ms,
                                        int                  io_priority,
                                        GCancellable        *cancellable,
                                        GAsyncReadyCallback  callback,
                                        gpointer             user_data)
{
  porta_semaphore_acquire_async (PORTA_SEMAPHORE (lockable), timeout_ms, io_priority,
                                 cancellable, callback, user_data);
}

static gboolean
porta_semaphore_lockable_acquire_finish (PortaLockable  *lockable,
                                         GAsyncResult   *result,
                                         GError        **error)
{
  return porta_semaphore_acquire_finish (PORTA_SEMAPHORE (lockable), result, error);
}

static gboolean
porta_semaphore_lockable_release (PortaLockable  *lockable,
                                  GError        **error)
{
  return porta_semaphore_release (PORTA_SEMAPHORE (lockable), error);
}

static gboolean
porta_semaphore_lockable_get_held (PortaLockable *lockable)
{
  return porta_semaphore_get_held (PORTA_SEMAPHORE (lockable));
}

static void
porta_semaphore_lockable_init (PortaLockableInterface *iface)
{
  iface->acquire = porta_semaphore_lockable_acquire;
  iface->acquire_async = porta_semaphore_lockable_acquire_async;
  iface->acquire_finish = porta_semaphore_lockable_acquire_finish;
  iface->release = porta_semaphore_lockable_release;
  iface->get_held = porta_semaphore_lockable_get_held;
}
