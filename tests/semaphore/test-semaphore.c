/* test-semaphore.c: PortaSemaphore between processes, threads and main loops
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The holders in other processes are this program run as
 *   test-semaphore --holder DIR NAME N
 *       acquires a slot (waiting at most 20 s), prints "locked SLOT", holds
 *       it until a line or end-of-file arrives on stdin, releases it and
 *       prints "released";
 *   test-semaphore --stress DIR NAME N CYCLES MARKERS
 *       prints "ready", waits for a line on stdin, then CYCLES times
 *       acquires a slot, puts a marker file in MARKERS while inside and
 *       checks that at most N markers are there; prints "max M" (the most
 *       markers it saw) and exits 0, or exits 3 when it saw more than N.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef __linux__
# include <signal.h>
#endif

#include <glib/gstdio.h>

#include <portalock/portalock.h>

#include "porta-test-utils.h"

#define CHILD_LINE_MS   10000
#define HOLDER_WAIT_MS  20000
#define EXIT_OVERFULL   3

/* ---------------------------------------------------------------------- */
/* The child side                                                          */

static PortaSemaphore *
child_semaphore (char **argv)
{
  g_autoptr(GFile) dir = g_file_new_for_path (argv[2]);

  return porta_semaphore_new (argv[3], (guint) atoi (argv[4]), dir);
}

static int
run_holder (int    argc,
            char **argv)
{
  g_autoptr(PortaSemaphore) sem = NULL;
  g_autoptr(GError) error = NULL;

  if (argc != 5)
    return 1;
  sem = child_semaphore (argv);
  if (!porta_semaphore_acquire (sem, HOLDER_WAIT_MS, NULL, &error))
    {
      g_printerr ("%s\n", error->message);
      return 2;
    }
  printf ("locked %d\n", porta_semaphore_get_slot (sem));
  fflush (stdout);

  porta_test_wait_for_stdin_line ();

  if (!porta_semaphore_release (sem, &error))
    {
      g_printerr ("%s\n", error->message);
      return 1;
    }
  printf ("released\n");
  fflush (stdout);
  return 0;
}

static guint
count_markers (const char *markers)
{
  g_autoptr(GDir) dir = g_dir_open (markers, 0, NULL);
  guint n = 0;

  if (dir == NULL)
    return G_MAXUINT;
  while (g_dir_read_name (dir) != NULL)
    n++;
  return n;
}

static int
run_stress (int    argc,
            char **argv)
{
  g_autoptr(PortaSemaphore) sem = NULL;
  g_autofree char *marker = NULL;
  guint max_holders, cycles, max_seen = 0;

  if (argc != 7)
    return 1;
  sem = child_semaphore (argv);
  max_holders = (guint) atoi (argv[4]);
  cycles = (guint) atoi (argv[5]);
  marker = g_strdup_printf ("%s/%d", argv[6], (int) getpid ());

  printf ("ready\n");
  fflush (stdout);
  porta_test_wait_for_stdin_line ();

  for (guint i = 0; i < cycles; i++)
    {
      g_autoptr(GError) error = NULL;
      guint inside;

      if (!porta_semaphore_acquire (sem, HOLDER_WAIT_MS, NULL, &error))
        {
          g_printerr ("cycle %u: %s\n", i, error->message);
          return 1;
        }
      if (!g_file_set_contents (marker, "", 0, &error))
        {
          g_printerr ("%s\n", error->message);
          return 1;
        }
      inside = count_markers (argv[6]);
      g_usleep (g_random_int_range (0, 1000));
      inside = MAX (inside, count_markers (argv[6]));
      max_seen = MAX (max_seen, inside);
      if (inside > max_holders)
        {
          g_printerr ("cycle %u: %u holders inside a semaphore of %u\n",
                      i, inside, max_holders);
          return EXIT_OVERFULL;
        }
      g_unlink (marker);
      if (!porta_semaphore_release (sem, &error))
        {
          g_printerr ("%s\n", error->message);
          return 1;
        }
    }

  printf ("max %u\n", max_seen);
  fflush (stdout);
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Helpers                                                                 */

static char *
self_exe (void)
{
  g_autoptr(GError) error = NULL;
  char *exe = g_file_read_link ("/proc/self/exe", &error);

  g_assert_no_error (error);
  return exe;
}

static GFile *
test_dir (void)
{
  g_autofree char *path = porta_test_path ("sems");

  g_assert_cmpint (g_mkdir_with_parents (path, 0700), ==, 0);
  return g_file_new_for_path (path);
}

/* Starts a holder of a slot of NAME (of @n) in another process and
 * returns it once it holds one; *slot tells which. */
static PortaTestChild *
spawn_holder (GFile      *dir,
              const char *name,
              guint       n,
              int        *slot)
{
  g_autofree char *exe = self_exe ();
  g_autofree char *n_str = g_strdup_printf ("%u", n);
  const char *argv[] = { exe, "--holder", g_file_peek_path (dir), name, n_str, NULL };
  PortaTestChild *child = porta_test_child_spawnv (argv);
  g_autofree char *line = porta_test_child_read_line (child, CHILD_LINE_MS);

  if (line == NULL || !g_str_has_prefix (line, "locked "))
    {
      g_autofree char *err_text = NULL;
      int status = porta_test_child_wait (child, &err_text);

      g_error ("holder said “%s” and exited with %d; stderr: %s",
               line, status, err_text);
    }
  *slot = atoi (line + strlen ("locked "));
  g_assert_cmpint (*slot, >=, 0);
  g_assert_cmpint (*slot, <, (int) n);
  return child;
}

/* Tells a holder to let go, and waits until it has. */
static void
release_holder (PortaTestChild *child)
{
  porta_test_child_send_line (child);
  porta_test_child_expect_line (child, "released");
  g_assert_cmpint (porta_test_child_wait (child, NULL), ==, 0);
}

/* Two holders in other processes take both slots of a semaphore of 2. */
static void
spawn_two_holders (GFile           *dir,
                   const char      *name,
                   PortaTestChild **holders,
                   int             *slots)
{
  holders[0] = spawn_holder (dir, name, 2, &slots[0]);
  holders[1] = spawn_holder (dir, name, 2, &slots[1]);
  g_assert_cmpint (slots[0], !=, slots[1]);
}

static void
assert_message_mentions (const GError *error,
                         const char   *text)
{
  if (strstr (error->message, text) == NULL)
    g_error ("“%s” does not mention “%s”", error->message, text);
}

static gint64
elapsed_ms (gint64 since)
{
  return (g_get_monotonic_time () - since) / 1000;
}

/* Counts this process's descriptors open on files in @dir. */
static guint
count_fds_in (GFile *dir)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GDir) fds = g_dir_open ("/proc/self/fd", 0, &error);
  g_autofree char *prefix = g_strconcat (g_file_peek_path (dir), G_DIR_SEPARATOR_S, NULL);
  const char *name;
  guint n = 0;

  g_assert_no_error (error);
  while ((name = g_dir_read_name (fds)) != NULL)
    {
      g_autofree char *link_path = g_build_filename ("/proc/self/fd", name, NULL);
      g_autofree char *target = g_file_read_link (link_path, NULL);

      if (target != NULL && g_str_has_prefix (target, prefix))
        n++;
    }
  return n;
}

static void
store_result (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  GAsyncResult **out = user_data;

  g_assert_null (*out);
  *out = g_object_ref (result);
}

/* Also notes the name of the source that called back. */
typedef struct
{
  GAsyncResult *result;
  char         *source_name;
} CalledBack;

static void
note_callback (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  CalledBack *back = user_data;

  g_assert_null (back->result);
  back->result = g_object_ref (result);
  back->source_name = g_strdup (g_source_get_name (g_main_current_source ()));
}

static gboolean
set_flag (gpointer user_data)
{
  *(gboolean *) user_data = TRUE;
  return G_SOURCE_REMOVE;
}

/* Runs the thread-default main context until *result is set or @limit_ms
 * passes; returns whether the result came. */
static gboolean
run_until_result (GAsyncResult **result,
                  guint          limit_ms)
{
  gboolean expired = FALSE;
  guint id = g_timeout_add (porta_test_scale_ms (limit_ms), set_flag, &expired);

  while (*result == NULL && !expired)
    g_main_context_iteration (NULL, TRUE);
  if (!expired)
    g_source_remove (id);
  return *result != NULL;
}

/* Runs the thread-default main context for @ms. */
static void
run_for (guint ms)
{
  gboolean expired = FALSE;

  g_timeout_add (ms, set_flag, &expired);
  while (!expired)
    g_main_context_iteration (NULL, TRUE);
}

typedef struct
{
  guint         delay_ms;
  GCancellable *cancellable;
} CancelLater;

static gpointer
cancel_later_thread (gpointer user_data)
{
  CancelLater *data = user_data;

  g_usleep (data->delay_ms * 1000);
  g_cancellable_cancel (data->cancellable);
  return NULL;
}

/* ---------------------------------------------------------------------- */
/* In one process                                                          */

static void
count_notify (GObject    *object,
              GParamSpec *pspec,
              gpointer    user_data)
{
  guint *count = user_data;

  (*count)++;
}

static void
test_basic (void)
{
  g_autoptr(GFile) dir = test_dir ();
  g_autoptr(PortaSemaphore) a = porta_semaphore_new ("basic", 2, dir);
  g_autoptr(PortaSemaphore) b = porta_semaphore_new ("basic", 2, dir);
  g_autoptr(PortaSemaphore) c = porta_semaphore_new ("basic", 2, dir);
  g_autoptr(GError) error = NULL;
  g_autofree char *slot_name = NULL;
  g_autoptr(GFile) slot_file = NULL;
  guint held_notes = 0, slot_notes = 0;
  gboolean held;
  int slot;

  g_signal_connect (a, "notify::held", G_CALLBACK (count_notify), &held_notes);
  g_signal_connect (a, "notify::slot", G_CALLBACK (count_notify), &slot_notes);

  g_assert_cmpstr (porta_semaphore_get_name (a), ==, "basic");
  g_assert_cmpuint (porta_semaphore_get_max_holders (a), ==, 2);
  g_assert_true (g_file_equal (porta_semaphore_get_directory (a), dir));
  g_assert_false (porta_semaphore_get_held (a));
  g_assert_cmpint (porta_semaphore_get_slot (a), ==, -1);

  g_assert_true (porta_semaphore_try_acquire (a, &error));
  g_assert_no_error (error);
  g_assert_true (porta_semaphore_get_held (a));
  g_assert_cmpuint (held_notes, ==, 1);
  g_assert_cmpuint (slot_notes, ==, 1);
  g_object_get (a, "held", &held, "slot", &slot, NULL);
  g_assert_true (held);
  g_assert_cmpint (slot, ==, porta_semaphore_get_slot (a));
  g_assert_true (slot == 0 || slot == 1);

  slot_name = g_strdup_printf ("basic.%d.lock", slot);
  slot_file = g_file_get_child (dir, slot_name);
  g_assert_true (g_file_query_exists (slot_file, NULL));

  /* Objects in one process exclude each other like processes. */
  g_assert_true (porta_semaphore_acquire (b, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (porta_semaphore_get_slot (b), ==, 1 - slot);

  g_assert_false (porta_semaphore_try_acquire (c, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  assert_message_mentions (error, "basic");
  assert_message_mentions (error, g_file_peek_path (dir));
  g_clear_error (&error);
  g_assert_false (porta_semaphore_get_held (c));

  /* Acquiring twice, releasing twice. */
  g_assert_false (porta_semaphore_acquire (a, 0, NULL, &error));
  g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_ALREADY_HELD);
  g_clear_error (&error);

  g_assert_true (porta_semaphore_release (a, &error));
  g_assert_no_error (error);
  g_assert_false (porta_semaphore_get_held (a));
  g_assert_cmpint (porta_semaphore_get_slot (a), ==, -1);
  g_assert_cmpuint (held_notes, ==, 2);
  g_assert_cmpuint (slot_notes, ==, 2);

  g_assert_false (porta_semaphore_release (a, &error));
  g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_HELD);
  g_clear_error (&error);

  /* The slot a let go is the free one. */
  g_assert_true (porta_semaphore_try_acquire (c, &error));
  g_assert_no_error (error);
  g_assert_cmpint (porta_semaphore_get_slot (c), ==, slot);

  /* Disposing releases. */
  g_clear_object (&c);
  g_assert_true (porta_semaphore_try_acquire (a, &error));
  g_assert_no_error (error);
  g_assert_cmpint (porta_semaphore_get_slot (a), ==, slot);
}

static void
test_properties (void)
{
  g_autoptr(GFile) dir = test_dir ();
  g_autoptr(PortaSemaphore) sem = porta_semaphore_new ("props", 3, dir);
  g_autoptr(PortaSemaphore) dflt = porta_semaphore_new ("props", 1, NULL);
  g_autoptr(GFile) got_dir = NULL;
  g_autoptr(GFile) runtime_dir = g_file_new_for_path (g_get_user_runtime_dir ());
  g_autofree char *name = NULL;
  guint max_holders;
  int slot;
  gboolean held;

  g_object_get (sem,
                "name", &name,
                "max-holders", &max_holders,
                "directory", &got_dir,
                "slot", &slot,
                "held", &held,
                NULL);
  g_assert_cmpstr (name, ==, "props");
  g_assert_cmpuint (max_holders, ==, 3);
  g_assert_true (g_file_equal (got_dir, dir));
  g_assert_cmpint (slot, ==, -1);
  g_assert_false (held);

  g_assert_true (PORTA_IS_LOCKABLE (sem));
  g_assert_true (g_file_equal (porta_semaphore_get_directory (dflt), runtime_dir));
}

static void
test_lockable (void)
{
  g_autoptr(GFile) dir = test_dir ();
  g_autoptr(PortaSemaphore) sem = porta_semaphore_new ("lockable", 1, dir);
  g_autoptr(PortaSemaphore) other = porta_semaphore_new ("lockable", 1, dir);
  PortaLockable *lockable = PORTA_LOCKABLE (sem);
  g_autoptr(GError) error = NULL;
  GAsyncResult *result = NULL;
  gboolean held = FALSE;

  g_assert_true (porta_lockable_try_acquire (lockable, &error));
  g_assert_no_error (error);
  g_assert_true (porta_lockable_get_held (lockable));

  g_assert_false (porta_lockable_acquire (PORTA_LOCKABLE (other), 0, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_clear_error (&error);

  g_assert_true (porta_lockable_release (lockable, &error));
  g_assert_no_error (error);
  g_assert_false (porta_lockable_get_held (lockable));

  porta_lockable_acquire_async (lockable, -1, G_PRIORITY_DEFAULT, NULL, store_result, &result);
  g_assert_true (run_until_result (&result, 5000));
  g_assert_true (porta_lockable_acquire_finish (lockable, result, &error));
  g_assert_no_error (error);
  g_clear_object (&result);
  g_object_get (sem, "held", &held, NULL);
  g_assert_true (held);
}

static void
test_invalid_names (void)
{
  g_autoptr(GFile) dir = test_dir ();
  g_autofree char *long_name = g_strnfill (250, 'x');
  const char *names[] = { "", ".", "..", "a/b", "/abs", long_name };

  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autoptr(PortaSemaphore) sem = porta_semaphore_new (names[i], 2, dir);
      g_autoptr(GError) error = NULL;
      GAsyncResult *result = NULL;

      g_assert_false (porta_semaphore_acquire (sem, -1, NULL, &error));
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_FILENAME);
      g_assert_nonnull (strstr (error->message, "semaphore"));
      if (names[i][0] != '\0')
        assert_message_mentions (error, names[i]);
      g_clear_error (&error);
      g_assert_false (porta_semaphore_get_held (sem));

      porta_semaphore_acquire_async (sem, -1, G_PRIORITY_DEFAULT, NULL, store_result, &result);
      g_assert_true (run_until_result (&result, 5000));
      g_assert_false (porta_semaphore_acquire_finish (sem, result, &error));
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_FILENAME);
      g_clear_object (&result);
    }

  /* Nothing was created outside the folder, nor in it. */
  g_assert_cmpuint (porta_test_count_entries (g_file_peek_path (dir)), ==, 0);
}

static void
test_missing_directory (void)
{
  g_autoptr(GFile) dir = test_dir ();
  g_autoptr(GFile) missing = g_file_get_child (dir, "missing");
  g_autoptr(PortaSemaphore) sem = porta_semaphore_new ("nodir", 2, missing);
  g_autoptr(GError) error = NULL;

  g_assert_false (porta_semaphore_acquire (sem, 100, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  assert_message_mentions (error, "nodir");
  g_assert_false (porta_semaphore_get_held (sem));
}

static void
test_critical_null_name (void)
{
  if (g_test_subprocess ())
    {
      porta_semaphore_new (NULL, 1, NULL);
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_failed ();
  g_test_trap_assert_stderr ("*CRITICAL*name != NULL*");
}

static void
test_critical_zero_holders (void)
{
  if (g_test_subprocess ())
    {
      porta_semaphore_new ("zero", 0, NULL);
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_failed ();
  g_test_trap_assert_stderr ("*CRITICAL*max_holders*");
}

/* ---------------------------------------------------------------------- */
/* Against holders in other processes                                      */

static void
test_would_block_and_timeout (void)
{
  g_autoptr(GFile) dir = test_dir ();
  g_autoptr(PortaTestChild) h0 = NULL;
  g_autoptr(PortaTestChild) h1 = NULL;
  PortaTestChild *holders[2];
  int slots[2];
  g_autoptr(PortaSemaphore) sem = porta_semaphore_new ("busy", 2, dir);
  g_autoptr(GError) error = NULL;
  gint64 start, took;

  spawn_two_holders (dir, "busy", holders, slots);
  h0 = holders[0];
  h1 = holders[1];

  g_assert_false (porta_semaphore_try_acquire (sem, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  assert_message_mentions (error, "busy");
  assert_message_mentions (error, g_file_peek_path (dir));
  g_clear_error (&error);

  start = g_get_monotonic_time ();
  g_assert_false (porta_semaphore_acquire (sem, 100, NULL, &error));
  took = elapsed_ms (start);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  assert_message_mentions (error, "busy");
  g_clear_error (&error);
  g_test_message ("timed out after %" G_GINT64_FORMAT " ms", took);
  g_assert_cmpint (took, >=, 99);
  g_assert_cmpint (took, <, porta_test_scale_ms (3000));
  g_assert_false (porta_semaphore_get_held (sem));
  g_assert_cmpint (porta_semaphore_get_slot (sem), ==, -1);

  /* The same asynchronously. */
  {
    GAsyncResult *result = NULL;

    start = g_get_monotonic_time ();
    porta_semaphore_acquire_async (sem, 100, G_PRIORITY_DEFAULT, NULL, store_result, &result);
    g_assert_true (run_until_result (&result, 5000));
    took = elapsed_ms (start);
    g_assert_false (porta_semaphore_acquire_finish (sem, result, &error));
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
    g_clear_error (&error);
    g_clear_object (&result);
    g_assert_cmpint (took, >=, 99);
    g_assert_cmpint (took, <, porta_test_scale_ms (3000));
  }

  /* The holders still hold their slots: the wait that gave up took none. */
  release_holder (h0);
  g_assert_true (porta_semaphore_try_acquire (sem, &error));
  g_assert_no_error (error);
  g_assert_cmpint (porta_semaphore_get_slot (sem), ==, slots[0]);
}

static void
test_cancel (void)
{
  g_autoptr(GFile) dir = test_dir ();
  g_autoptr(PortaTestChild) h0 = NULL;
  g_autoptr(PortaTestChild) h1 = NULL;
  PortaTestChild *holders[2];
  int slots[2];
  g_autoptr(PortaSemaphore) sem = porta_semaphore_new ("cancel", 2, dir);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;
  CancelLater later = { 100, cancellable };
  GThread *thread;
  gint64 start, took;

  spawn_two_holders (dir, "cancel", holders, slots);
  h0 = holders[0];
  h1 = holders[1];

  /* Sync, cancelled from another thread. */
  start = g_get_monotonic_time ();
  thread = g_thread_new ("canceller", cancel_later_thread, &later);
  g_assert_false (porta_semaphore_acquire (sem, -1, cancellable, &error));
  took = elapsed_ms (start);
  g_thread_join (thread);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  assert_message_mentions (error, "cancel");
  g_clear_error (&error);
  g_assert_cmpint (took, >=, 90);
  g_assert_cmpint (took, <, porta_test_scale_ms (3000));
  g_assert_false (porta_semaphore_get_held (sem));

  /* Already cancelled. */
  g_assert_false (porta_semaphore_acquire (sem, -1, cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);

  /* Async, cancelled from the main loop. The callback comes from the
   * dispatch that ends the last wait, not from an idle source one main
   * loop iteration later, which GLib names after the task and uses for a
   * task whose cancellable was cancelled. */
  {
    CalledBack back = { NULL, NULL };

    g_cancellable_reset (cancellable);
    porta_semaphore_acquire_async (sem, -1, G_PRIORITY_DEFAULT, cancellable, note_callback, &back);
    run_for (50);
    g_assert_null (back.result);
    start = g_get_monotonic_time ();
    g_cancellable_cancel (cancellable);
    g_assert_true (run_until_result (&back.result, 5000));
    took = elapsed_ms (start);
    g_assert_false (porta_semaphore_acquire_finish (sem, back.result, &error));
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
    g_clear_error (&error);
    g_clear_object (&back.result);
    g_assert_cmpstr (back.source_name, !=, "[portalock] acquire semaphore");
    g_free (back.source_name);
    g_assert_cmpint (took, <, porta_test_scale_ms (3000));
    g_assert_false (porta_semaphore_get_held (sem));
  }

  /* Nothing of the cancelled waits keeps a slot. */
  release_holder (h1);
  g_assert_true (porta_semaphore_try_acquire (sem, &error));
  g_assert_no_error (error);
  g_assert_cmpint (porta_semaphore_get_slot (sem), ==, slots[1]);
}

/* A wait is handed the slot that one holder releases, promptly. */
static void
test_handoff_async (void)
{
  g_autoptr(GFile) dir = test_dir ();
  g_autoptr(PortaTestChild) h0 = NULL;
  g_autoptr(PortaTestChild) h1 = NULL;
  PortaTestChild *holders[2];
  int slots[2];
  g_autoptr(PortaSemaphore) sem = porta_semaphore_new ("handoff", 2, dir);
  g_autoptr(GError) error = NULL;
  GAsyncResult *result = NULL;
  gint64 released_at, took;
  guint which, threads;

  spawn_two_holders (dir, "handoff", holders, slots);
  h0 = holders[0];
  h1 = holders[1];
  which = g_test_rand_bit () ? 1 : 0;
  threads = porta_test_count_entries ("/proc/self/task");
  g_assert_cmpuint (count_fds_in (dir), ==, 0);

  porta_semaphore_acquire_async (sem, porta_test_scale_ms (20000), G_PRIORITY_DEFAULT,
                                 NULL, store_result, &result);
  run_for (100);
  g_assert_null (result);
  g_assert_false (porta_semaphore_get_held (sem));

  released_at = g_get_monotonic_time ();
  porta_test_child_send_line (holders[which]);
  g_assert_true (run_until_result (&result, 10000));
  took = elapsed_ms (released_at);
  g_test_message ("handed the slot %" G_GINT64_FORMAT " ms after asking the holder to let go", took);

  g_assert_true (porta_semaphore_acquire_finish (sem, result, &error));
  g_assert_no_error (error);
  g_clear_object (&result);
  g_assert_true (porta_semaphore_get_held (sem));
  g_assert_cmpint (porta_semaphore_get_slot (sem), ==, slots[which]);
  g_assert_cmpint (took, <, porta_test_scale_ms (1000));

  /* The waits for the other slot ended before the result came: only the
   * slot won is still open, and their threads are gone. */
  g_assert_cmpuint (count_fds_in (dir), ==, 1);
  g_assert_cmpuint (porta_test_count_entries ("/proc/self/task"), ==, threads);

  porta_test_child_expect_line (holders[which], "released");
  g_assert_cmpint (porta_test_child_wait (holders[which], NULL), ==, 0);
}

typedef struct
{
  PortaTestChild *holder;
  guint           delay_ms;
  gint64          sent_at;
} ReleaseLater;

static gpointer
release_later_thread (gpointer user_data)
{
  ReleaseLater *data = user_data;

  g_usleep (data->delay_ms * 1000);
  data->sent_at = g_get_monotonic_time ();
  porta_test_child_send_line (data->holder);
  return NULL;
}

static void
test_handoff_sync (void)
{
  g_autoptr(GFile) dir = test_dir ();
  g_autoptr(PortaTestChild) h0 = NULL;
  g_autoptr(PortaTestChild) h1 = NULL;
  PortaTestChild *holders[2];
  int slots[2];
  g_autoptr(PortaSemaphore) sem = porta_semaphore_new ("handoff-sync", 2, dir);
  g_autoptr(GError) error = NULL;
  ReleaseLater later = { NULL, 150, 0 };
  GThread *thread;
  gint64 got_at;

  spawn_two_holders (dir, "handoff-sync", holders, slots);
  h0 = holders[0];
  h1 = holders[1];
  later.holder = h1;

  thread = g_thread_new ("releaser", release_later_thread, &later);
  g_assert_true (porta_semaphore_acquire (sem, porta_test_scale_ms (20000), NULL, &error));
  got_at = g_get_monotonic_time ();
  g_thread_join (thread);
  g_assert_no_error (error);
  g_assert_cmpint (porta_semaphore_get_slot (sem), ==, slots[1]);
  g_assert_cmpint (got_at, >=, later.sent_at);
  g_test_message ("handed the slot %.3f ms after asking the holder to let go",
                  (got_at - later.sent_at) / 1000.0);
  g_assert_cmpint ((got_at - later.sent_at) / 1000, <, porta_test_scale_ms (1000));

  porta_test_child_expect_line (h1, "released");
}

/* Both holders let go at once: the wait gets one slot, and the other one,
 * which the race won too, is free again as soon as the result is in. */
static void
test_handoff_both (void)
{
  g_autoptr(GFile) dir = test_dir ();
  g_autoptr(PortaTestChild) h0 = NULL;
  g_autoptr(PortaTestChild) h1 = NULL;
  PortaTestChild *holders[2];
  int slots[2];
  g_autoptr(PortaSemaphore) sem = porta_semaphore_new ("both", 2, dir);
  g_autoptr(PortaSemaphore) other = porta_semaphore_new ("both", 2, dir);
  g_autoptr(GError) error = NULL;
  GAsyncResult *result = NULL;

  spawn_two_holders (dir, "both", holders, slots);
  h0 = holders[0];
  h1 = holders[1];

  porta_semaphore_acquire_async (sem, -1, G_PRIORITY_DEFAULT, NULL, store_result, &result);
  run_for (50);
  g_assert_null (result);
  /* Both slots are let go while this main context is not dispatching, so
   * both waits win before the first result can cancel the other. */
  porta_test_child_send_line (h0);
  porta_test_child_send_line (h1);
  porta_test_child_expect_line (h0, "released");
  porta_test_child_expect_line (h1, "released");
  g_usleep (50 * 1000);

  g_assert_true (run_until_result (&result, 10000));
  g_assert_true (porta_semaphore_acquire_finish (sem, result, &error));
  g_assert_no_error (error);
  g_clear_object (&result);

  g_assert_true (porta_semaphore_try_acquire (other, &error));
  g_assert_no_error (error);
  g_assert_cmpint (porta_semaphore_get_slot (other), ==, 1 - porta_semaphore_get_slot (sem));
}

static void
test_stress_processes (void)
{
  const guint n_procs = 6, cycles = 50, max_holders = 3;
  g_autoptr(GFile) dir = test_dir ();
  g_autofree char *markers = porta_test_path ("markers");
  g_autofree char *exe = self_exe ();
  g_autofree char *n_str = g_strdup_printf ("%u", max_holders);
  g_autofree char *cycles_str = g_strdup_printf ("%u", cycles);
  PortaTestChild *children[6];
  guint max_seen = 0;

  g_assert_cmpint (g_mkdir_with_parents (markers, 0700), ==, 0);

  for (guint i = 0; i < n_procs; i++)
    {
      const char *argv[] = { exe, "--stress", g_file_peek_path (dir), "stress",
                             n_str, cycles_str, markers, NULL };

      children[i] = porta_test_child_spawnv (argv);
    }
  for (guint i = 0; i < n_procs; i++)
    porta_test_child_expect_line (children[i], "ready");
  for (guint i = 0; i < n_procs; i++)
    porta_test_child_send_line (children[i]);

  for (guint i = 0; i < n_procs; i++)
    {
      g_autofree char *line = porta_test_child_read_line (children[i], 60000);
      g_autofree char *err_text = NULL;
      int status = porta_test_child_wait (children[i], &err_text);

      if (status != 0)
        g_error ("stress worker %u exited with %d: %s", i, status, err_text);
      g_assert_nonnull (line);
      g_assert_true (g_str_has_prefix (line, "max "));
      max_seen = MAX (max_seen, (guint) atoi (line + 4));
      porta_test_child_free (children[i]);
    }

  g_test_message ("at most %u holders seen inside at once", max_seen);
  g_assert_cmpuint (max_seen, >=, 1);
  g_assert_cmpuint (max_seen, <=, max_holders);
  g_assert_cmpuint (porta_test_count_entries (markers), ==, 0);
}

/* ---------------------------------------------------------------------- */
/* Main loops and threads                                                  */

static void
on_acquired_quit (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  GMainLoop *loop = user_data;
  g_autoptr(GError) error = NULL;

  g_assert_true (porta_semaphore_acquire_finish (PORTA_SEMAPHORE (source), result, &error));
  g_assert_no_error (error);
  g_assert_true (porta_semaphore_get_held (PORTA_SEMAPHORE (source)));
  g_main_loop_quit (loop);
}

static void
release_once (gpointer user_data)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (porta_semaphore_release (PORTA_SEMAPHORE (user_data), &error));
  g_assert_no_error (error);
}

static void
test_async_main_loop (void)
{
  g_autoptr(GFile) dir = test_dir ();
  g_autoptr(PortaSemaphore) sem = porta_semaphore_new ("loop", 2, dir);
  g_autoptr(PortaSemaphore) blocker = porta_semaphore_new ("loop", 2, dir);
  g_autoptr(PortaSemaphore) blocker2 = porta_semaphore_new ("loop", 2, dir);
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr(GError) error = NULL;

  /* Free: the callback runs from the loop, never from inside the call. */
  porta_semaphore_acquire_async (sem, 0, G_PRIORITY_DEFAULT, NULL, on_acquired_quit, loop);
  g_main_loop_run (loop);
  g_assert_true (porta_semaphore_release (sem, &error));
  g_assert_no_error (error);

  /* Taken in this process: a release from the loop hands it over. */
  g_assert_true (porta_semaphore_try_acquire (blocker, &error));
  g_assert_true (porta_semaphore_try_acquire (blocker2, &error));
  g_assert_no_error (error);
  porta_semaphore_acquire_async (sem, -1, G_PRIORITY_DEFAULT, NULL, on_acquired_quit, loop);
  g_timeout_add_once (100, release_once, blocker2);
  g_main_loop_run (loop);
  g_assert_cmpint (porta_semaphore_get_slot (sem), ==, porta_semaphore_get_slot (blocker) == 0 ? 1 : 0);
  g_assert_false (porta_semaphore_get_held (blocker2));

  /* A second acquisition while one is in progress. */
  g_assert_true (porta_semaphore_release (sem, &error));
  g_assert_true (porta_semaphore_try_acquire (blocker2, &error));
  g_assert_no_error (error);
  {
    GAsyncResult *result = NULL;

    porta_semaphore_acquire_async (sem, 200, G_PRIORITY_DEFAULT, NULL, store_result, &result);
    g_assert_false (porta_semaphore_acquire (sem, 0, NULL, &error));
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_PENDING);
    g_clear_error (&error);
    g_assert_true (run_until_result (&result, 5000));
    g_assert_false (porta_semaphore_acquire_finish (sem, result, &error));
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
    g_clear_error (&error);
    g_clear_object (&result);
  }
}

typedef struct
{
  const char *dir;
  guint       max_holders;
  guint       cycles;
  int        *inside;        /* atomic */
  int        *max_inside;    /* atomic */
  int        *overfull;      /* atomic */
  GError     *error;
} ThreadWork;

static gpointer
semaphore_thread (gpointer user_data)
{
  ThreadWork *work = user_data;
  g_autoptr(GFile) dir = g_file_new_for_path (work->dir);
  g_autoptr(PortaSemaphore) sem = porta_semaphore_new ("threads", work->max_holders, dir);

  for (guint i = 0; i < work->cycles; i++)
    {
      int now, seen;

      if (!porta_semaphore_acquire (sem, porta_test_scale_ms (20000), NULL, &work->error))
        return NULL;
      now = g_atomic_int_add (work->inside, 1) + 1;
      if (now > (int) work->max_holders)
        g_atomic_int_inc (work->overfull);
      do
        seen = g_atomic_int_get (work->max_inside);
      while (now > seen && !g_atomic_int_compare_and_exchange (work->max_inside, seen, now));
      g_usleep (g_random_int_range (0, 500));
      g_atomic_int_add (work->inside, -1);
      if (!porta_semaphore_release (sem, &work->error))
        return NULL;
    }
  return NULL;
}

static void
test_threads (void)
{
  g_autoptr(GFile) dir = test_dir ();
  int inside = 0, max_inside = 0, overfull = 0;
  ThreadWork work[5];
  GThread *threads[G_N_ELEMENTS (work)];

  for (guint i = 0; i < G_N_ELEMENTS (work); i++)
    {
      work[i] = (ThreadWork) { g_file_peek_path (dir), 2, 40, &inside, &max_inside, &overfull, NULL };
      threads[i] = g_thread_new ("semaphore", semaphore_thread, &work[i]);
    }
  for (guint i = 0; i < G_N_ELEMENTS (work); i++)
    {
      g_thread_join (threads[i]);
      g_assert_no_error (work[i].error);
    }

  g_test_message ("at most %d threads inside at once", max_inside);
  g_assert_cmpint (overfull, ==, 0);
  g_assert_cmpint (max_inside, >=, 1);
  g_assert_cmpint (max_inside, <=, 2);
  g_assert_cmpint (inside, ==, 0);
}

/* ---------------------------------------------------------------------- */
/* Nothing left behind                                                     */

/* The holders stay alive meanwhile, so nothing else opens or closes
 * descriptors or starts threads in this process. */
static void
assert_nothing_left (guint fds_before,
                     guint threads_before)
{
  g_assert_cmpuint (porta_test_count_entries ("/proc/self/fd"), ==, fds_before);
  g_assert_cmpuint (porta_test_count_entries ("/proc/self/task"), ==, threads_before);
}

static void
test_no_leaks (void)
{
  g_autoptr(GFile) dir = test_dir ();
  g_autoptr(PortaTestChild) h0 = NULL;
  g_autoptr(PortaTestChild) h1 = NULL;
  PortaTestChild *holders[2];
  int slots[2];
  g_autoptr(PortaSemaphore) sem = porta_semaphore_new ("leaks", 2, dir);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;
  GAsyncResult *result = NULL;
  CancelLater later = { 100, cancellable };
  GThread *thread;
  guint fds, threads;

  spawn_two_holders (dir, "leaks", holders, slots);
  h0 = holders[0];
  h1 = holders[1];

  /* Whatever portalock and GLib set up once per process (the interrupt
   * signal, the default main context), they set up here. */
  g_assert_false (porta_semaphore_acquire (sem, 20, NULL, &error));
  g_clear_error (&error);
  porta_semaphore_acquire_async (sem, 20, G_PRIORITY_DEFAULT, NULL, store_result, &result);
  g_assert_true (run_until_result (&result, 5000));
  g_clear_object (&result);

  fds = porta_test_count_entries ("/proc/self/fd");
  threads = porta_test_count_entries ("/proc/self/task");

  g_assert_false (porta_semaphore_acquire (sem, 100, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_clear_error (&error);
  assert_nothing_left (fds, threads);

  thread = g_thread_new ("canceller", cancel_later_thread, &later);
  g_assert_false (porta_semaphore_acquire (sem, -1, cancellable, &error));
  g_thread_join (thread);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);
  assert_nothing_left (fds, threads);

  porta_semaphore_acquire_async (sem, 100, G_PRIORITY_DEFAULT, NULL, store_result, &result);
  g_assert_true (run_until_result (&result, 5000));
  g_assert_false (porta_semaphore_acquire_finish (sem, result, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_clear_error (&error);
  g_clear_object (&result);
  assert_nothing_left (fds, threads);

  g_cancellable_reset (cancellable);
  porta_semaphore_acquire_async (sem, -1, G_PRIORITY_DEFAULT, cancellable, store_result, &result);
  run_for (50);
  g_cancellable_cancel (cancellable);
  g_assert_true (run_until_result (&result, 5000));
  g_assert_false (porta_semaphore_acquire_finish (sem, result, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);
  g_clear_object (&result);
  assert_nothing_left (fds, threads);
}

int
main (int    argc,
      char **argv)
{
  if (argc >= 2 && strcmp (argv[1], "--holder") == 0)
    {
      porta_test_die_with_parent ();
      return run_holder (argc, argv);
    }
  if (argc >= 2 && strcmp (argv[1], "--stress") == 0)
    {
      porta_test_die_with_parent ();
      return run_stress (argc, argv);
    }

  porta_test_init (&argc, &argv);

  g_test_add_func ("/semaphore/basic", test_basic);
  g_test_add_func ("/semaphore/properties", test_properties);
  g_test_add_func ("/semaphore/lockable", test_lockable);
  g_test_add_func ("/semaphore/bad/invalid-names", test_invalid_names);
  g_test_add_func ("/semaphore/bad/missing-directory", test_missing_directory);
  g_test_add_func ("/semaphore/critical/null-name", test_critical_null_name);
  g_test_add_func ("/semaphore/critical/zero-holders", test_critical_zero_holders);
  g_test_add_func ("/semaphore/processes/would-block-and-timeout", test_would_block_and_timeout);
  g_test_add_func ("/semaphore/processes/cancel", test_cancel);
  g_test_add_func ("/semaphore/processes/handoff-async", test_handoff_async);
  g_test_add_func ("/semaphore/processes/handoff-sync", test_handoff_sync);
  g_test_add_func ("/semaphore/processes/handoff-both", test_handoff_both);
  g_test_add_func ("/semaphore/processes/stress", test_stress_processes);
  g_test_add_func ("/semaphore/async/main-loop", test_async_main_loop);
  g_test_add_func ("/semaphore/threads", test_threads);
  g_test_add_func ("/semaphore/no-leaks", test_no_leaks);

  return g_test_run ();
}
