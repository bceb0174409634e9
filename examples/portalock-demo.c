/* portalock-demo.c: two processes taking turns on one lock file
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Run it with no arguments (the test suite passes --quick, which only
 * shortens the wait). It makes a lock file in a new temporary folder and
 * starts a second copy of itself that takes the lock for a while, then
 * shows the ways a program can wait for a lock someone else holds:
 *
 *   1. porta_lock_acquire() on a lock nobody holds, and porta_lock_release()
 *   2. the second process (this program again, run as
 *      `portalock-demo --hold FILE MS`) takes the lock and keeps it
 *   3. porta_lock_try_acquire(), a porta_lock_acquire() that gives up after
 *      200 ms, and porta_lock_acquire_async() on a running GMainLoop, which
 *      gets the lock the moment the second process lets go of it
 *   4. writing into the locked file through porta_lock_get_stream()
 *   5. util-linux flock(1) seeing the same lock
 *   6. reading back what both processes wrote
 *
 * Every line of the transcript starts with the time since the start and
 * with who speaks: the parent, the child (relayed from its standard
 * output by the parent) or the file.
 */

#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <portalock/portalock.h>

#define LOCK_FILE_NAME "demo.lock"
#define FLOCK_PATH "/usr/bin/flock"

/* How long the child keeps the lock once it has it. */
#define HOLD_MS 1000
#define HOLD_MS_QUICK 600

/* The child's line that tells the parent it holds the lock, and the part of
 * its last line after which it prints when it started to let go of it. */
#define CHILD_HOLDING "holding the lock for"
#define CHILD_RELEASED_AT "porta_lock_release() called at "

static gint64 demo_start_us;

static void G_GNUC_PRINTF (2, 3)
say (const char *who,
     const char *format,
     ...)
{
  g_autofree char *text = NULL;
  va_list args;

  va_start (args, format);
  text = g_strdup_vprintf (format, args);
  va_end (args);

  g_print ("[%6.3f s] %-6s | %s\n",
           (g_get_monotonic_time () - demo_start_us) / (double) G_USEC_PER_SEC,
           who, text);
}

static void
section (const char *title)
{
  g_print ("\n%s\n", title);
}

static double
ms_since (gint64 start_us)
{
  return (g_get_monotonic_time () - start_us) / 1000.0;
}

/* "G_IO_ERROR_TIMED_OUT" rather than "24", for the transcript. */
static const char *
error_code_name (const GError *error)
{
  GEnumClass *klass;
  GEnumValue *value;

  if (error->domain != G_IO_ERROR)
    return g_quark_to_string (error->domain);

  /* GIO's enum classes are static types, never freed, so the name stays
   * valid after the unref. */
  klass = g_type_class_ref (G_TYPE_IO_ERROR_ENUM);
  value = g_enum_get_value (klass, error->code);
  g_type_class_unref (klass);

  return value != NULL ? value->value_name : "G_IO_ERROR";
}

static const char *
backend_name (PortaLock *lock)
{
  GEnumClass *klass;
  GEnumValue *value;

  klass = g_type_class_ref (PORTA_TYPE_BACKEND);
  value = g_enum_get_value (klass, porta_lock_get_backend (lock));
  g_type_class_unref (klass);

  return value != NULL ? value->value_nick : "unknown";
}

static gboolean
fail (GError     **error,
      const char  *message)
{
  g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED, message);
  return FALSE;
}

/* Appends @line to the file @lock holds, through the stream the lock
 * hands out while it is held. The stream belongs to the lock: it is not
 * closed here, as closing the file would let go of the lock. */
static gboolean
append_line (PortaLock   *lock,
             const char  *line,
             GError     **error)
{
  GIOStream *stream = porta_lock_get_stream (lock);
  g_autofree char *text = g_strconcat (line, "\n", NULL);
  GOutputStream *out;

  if (stream == NULL)
    return fail (error, "porta_lock_get_stream() returned NULL while the lock was held");

  if (G_IS_SEEKABLE (stream) &&
      !g_seekable_seek (G_SEEKABLE (stream), 0, G_SEEK_END, NULL, error))
    return FALSE;

  out = g_io_stream_get_output_stream (stream);
  return g_output_stream_write_all (out, text, strlen (text), NULL, NULL, error) &&
         g_output_stream_flush (out, NULL, error);
}

/* ------------------------------------------------------------------ */
/* The child: portalock-demo --hold FILE MS                             */
/* ------------------------------------------------------------------ */

/* The child's standard output is a pipe to the parent, so every line is
 * flushed at once: the parent must see "holding" while it is true. */
static void G_GNUC_PRINTF (1, 2)
child_says (const char *format,
            ...)
{
  g_autofree char *text = NULL;
  va_list args;

  va_start (args, format);
  text = g_strdup_vprintf (format, args);
  va_end (args);

  g_print ("%s\n", text);
  fflush (stdout);
}

static int
run_child (const char *path,
           const char *hold_ms_text)
{
  g_autoptr(PortaLock) lock = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *line = NULL;
  guint64 hold_ms;
  gint64 start_us;
  gint64 release_called_us;
  gint64 release_returned_us;

  if (!g_ascii_string_to_unsigned (hold_ms_text, 10, 0, 60000, &hold_ms, &error))
    {
      g_printerr ("portalock-demo --hold: %s\n", error->message);
      return 2;
    }

  lock = porta_lock_new_for_path (path, PORTA_LOCK_MODE_EXCLUSIVE);

  /* Wait at most 5 s: the parent has released the lock before it
   * started this process, so this normally succeeds at once. */
  start_us = g_get_monotonic_time ();
  if (!porta_lock_acquire (lock, 5000, NULL, &error))
    {
      g_printerr ("portalock-demo --hold: %s\n", error->message);
      return 1;
    }
  child_says ("acquired the lock in %" G_GINT64_FORMAT " us (pid %d)",
              g_get_monotonic_time () - start_us, (int) getpid ());

  line = g_strdup_printf ("written by the child (pid %d) while it held the lock",
                          (int) getpid ());
  if (!append_line (lock, line, &error))
    {
      g_printerr ("portalock-demo --hold: %s\n", error->message);
      return 1;
    }
  child_says ("wrote a line into the locked file");

  child_says (CHILD_HOLDING " %" G_GUINT64_FORMAT " ms", hold_ms);
  g_usleep (hold_ms * 1000);

  /* g_get_monotonic_time() reads the same clock in every process: the
   * parent subtracts the first stamp from the time its callback ran to
   * measure the hand-off. The stamp is taken before the call because the
   * parent, woken by the release, often runs before this process gets
   * the processor back to take a stamp after it. */
  release_called_us = g_get_monotonic_time ();
  if (!porta_lock_release (lock, &error))
    {
      g_printerr ("portalock-demo --hold: %s\n", error->message);
      return 1;
    }
  release_returned_us = g_get_monotonic_time ();
  child_says ("released the lock: " CHILD_RELEASED_AT "%" G_GINT64_FORMAT
              " us (monotonic clock), returned %" G_GINT64_FORMAT " us later",
              release_called_us, release_returned_us - release_called_us);

  return 0;
}

/* ------------------------------------------------------------------ */
/* The parent                                                          */
/* ------------------------------------------------------------------ */

/* Prints a line the child wrote, and picks up its release time. */
static void
relay_child_line (const char *line,
                  gint64     *released_us)
{
  const char *stamp;

  say ("child", "%s", line);

  stamp = strstr (line, CHILD_RELEASED_AT);
  if (stamp != NULL && released_us != NULL)
    *released_us = g_ascii_strtoll (stamp + strlen (CHILD_RELEASED_AT), NULL, 10);
}

static gboolean
show_uncontended (PortaLock  *lock,
                  GError    **error)
{
  gint64 start_us = g_get_monotonic_time ();

  if (!porta_lock_acquire (lock, -1, NULL, error))
    return FALSE;
  say ("parent", "porta_lock_acquire() took the free lock in %" G_GINT64_FORMAT " us; held: %s",
       g_get_monotonic_time () - start_us,
       porta_lock_get_held (lock) ? "yes" : "no");

  if (!porta_lock_release (lock, error))
    return FALSE;
  say ("parent", "porta_lock_release(); held: %s",
       porta_lock_get_held (lock) ? "yes" : "no");

  return TRUE;
}

/* Starts `SELF --hold PATH HOLD_MS` and returns once it holds the lock. */
static GSubprocess *
start_child (const char        *self_path,
             const char        *path,
             guint              hold_ms,
             GDataInputStream **child_out,
             GError           **error)
{
  g_autoptr(GSubprocess) child = NULL;
  g_autoptr(GDataInputStream) out = NULL;
  g_autofree char *hold_ms_text = g_strdup_printf ("%u", hold_ms);
  g_autofree char *self_name = g_path_get_basename (self_path);

  child = g_subprocess_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE, error,
                            self_path, "--hold", path, hold_ms_text, NULL);
  if (child == NULL)
    return NULL;
  say ("parent", "started pid %s: %s --hold %s %s",
       g_subprocess_get_identifier (child), self_name, LOCK_FILE_NAME, hold_ms_text);

  out = g_data_input_stream_new (g_subprocess_get_stdout_pipe (child));

  for (;;)
    {
      g_autofree char *line = g_data_input_stream_read_line (out, NULL, NULL, error);

      if (line == NULL)
        {
          g_subprocess_force_exit (child);
          if (error != NULL && *error == NULL)
            fail (error, "the child process stopped before it held the lock");
          return NULL;
        }

      relay_child_line (line, NULL);
      if (g_str_has_prefix (line, CHILD_HOLDING))
        break;
    }

  *child_out = g_steal_pointer (&out);
  return g_steal_pointer (&child);
}

static gboolean
show_try_acquire (PortaLock  *lock,
                  GError    **error)
{
  g_autoptr(GError) local_error = NULL;
  gint64 start_us = g_get_monotonic_time ();

  if (porta_lock_try_acquire (lock, &local_error))
    return fail (error, "porta_lock_try_acquire() got a lock that the child held");

  if (!g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
    {
      g_propagate_error (error, g_steal_pointer (&local_error));
      return FALSE;
    }

  say ("parent", "porta_lock_try_acquire() failed at once (%.3f ms), as it should:",
       ms_since (start_us));
  say ("parent", "  %s: %s", error_code_name (local_error), local_error->message);

  return TRUE;
}

static gboolean
show_timed_acquire (PortaLock  *lock,
                    GError    **error)
{
  const int timeout_ms = 200;
  g_autoptr(GError) local_error = NULL;
  gint64 start_us = g_get_monotonic_time ();
  double took_ms;

  if (porta_lock_acquire (lock, timeout_ms, NULL, &local_error))
    return fail (error, "porta_lock_acquire() got a lock that the child held");
  took_ms = ms_since (start_us);

  if (!g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
    {
      g_propagate_error (error, g_steal_pointer (&local_error));
      return FALSE;
    }

  say ("parent", "porta_lock_acquire (timeout %d ms) gave up after %.3f ms, %.3f ms %s its deadline:",
       timeout_ms, took_ms, ABS (took_ms - timeout_ms),
       took_ms >= timeout_ms ? "after" : "BEFORE");
  say ("parent", "  %s: %s", error_code_name (local_error), local_error->message);

  return TRUE;
}

/* What the main loop of show_async_acquire() waits for: the acquire to
 * complete and the child to finish talking. */
typedef struct
{
  GMainLoop *loop;
  guint tick_id;
  guint ticks;
  gint64 started_us;
  gint64 acquired_us;
  gint64 child_released_us;
  gboolean acquire_done;
  gboolean child_done;
  GError *error;
} Waiting;

static void
waiting_maybe_quit (Waiting *waiting)
{
  if (waiting->acquire_done && waiting->child_done)
    g_main_loop_quit (waiting->loop);
}

/* Stands for the rest of an application: it goes on while the lock is
 * waited for. */
static gboolean
on_tick (gpointer user_data)
{
  Waiting *waiting = user_data;

  waiting->ticks++;
  say ("parent", "main loop is running: tick %u", waiting->ticks);

  return G_SOURCE_CONTINUE;
}

static void
on_acquired (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  Waiting *waiting = user_data;
  gint64 now_us = g_get_monotonic_time ();
  g_autoptr(GError) error = NULL;

  g_clear_handle_id (&waiting->tick_id, g_source_remove);
  waiting->acquire_done = TRUE;

  if (porta_lock_acquire_finish (PORTA_LOCK (source), result, &error))
    {
      waiting->acquired_us = now_us;
      say ("parent", "the async acquire completed after %.1f ms: the parent holds the lock",
           (now_us - waiting->started_us) / 1000.0);
    }
  else if (waiting->error == NULL)
    {
      waiting->error = g_steal_pointer (&error);
    }

  waiting_maybe_quit (waiting);
}

static void
on_child_line (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  Waiting *waiting = user_data;
  GDataInputStream *out = G_DATA_INPUT_STREAM (source);
  g_autoptr(GError) error = NULL;
  g_autofree char *line = NULL;

  line = g_data_input_stream_read_line_finish (out, result, NULL, &error);
  if (line == NULL)
    {
      /* End of the child's output: it has released the lock and exits. */
      if (error != NULL && waiting->error == NULL)
        waiting->error = g_steal_pointer (&error);
      waiting->child_done = TRUE;
      waiting_maybe_quit (waiting);
      return;
    }

  relay_child_line (line, &waiting->child_released_us);
  g_data_input_stream_read_line_async (out, G_PRIORITY_DEFAULT, NULL,
                                       on_child_line, waiting);
}

static gboolean
show_async_acquire (PortaLock         *lock,
                    GDataInputStream  *child_out,
                    GError           **error)
{
  Waiting waiting = { 0 };
  gint64 handoff_us;

  waiting.loop = g_main_loop_new (NULL, FALSE);
  waiting.started_us = g_get_monotonic_time ();

  say ("parent", "porta_lock_acquire_async (timeout 10 s) while the main loop runs:");
  porta_lock_acquire_async (lock, 10 * 1000, G_PRIORITY_DEFAULT, NULL,
                            on_acquired, &waiting);
  waiting.tick_id = g_timeout_add (100, on_tick, &waiting);
  g_data_input_stream_read_line_async (child_out, G_PRIORITY_DEFAULT, NULL,
                                       on_child_line, &waiting);

  g_main_loop_run (waiting.loop);

  g_clear_handle_id (&waiting.tick_id, g_source_remove);
  g_main_loop_unref (waiting.loop);

  if (waiting.error != NULL)
    {
      g_propagate_error (error, waiting.error);
      return FALSE;
    }

  say ("parent", "the main loop ticked %u times while the parent waited", waiting.ticks);

  if (waiting.child_released_us == 0)
    return fail (error, "the child did not say when it released the lock");

  /* An upper bound: it includes the child's porta_lock_release() call up
   * to the moment the kernel let go of the lock. */
  handoff_us = waiting.acquired_us - waiting.child_released_us;
  say ("parent", "hand-off latency: %" G_GINT64_FORMAT " us from the child's porta_lock_release()",
       handoff_us);
  say ("parent", "  call to the parent's callback, through the kernel and the main loop");
  say ("parent", "  (a program that polls instead waits up to its poll interval: 50 ms for");
  say ("parent", "  Python filelock, 250 ms for Python portalocker)");

  return TRUE;
}

static gboolean
show_write (PortaLock  *lock,
            GError    **error)
{
  g_autofree char *line = NULL;

  line = g_strdup_printf ("written by the parent (pid %d) after the hand-off",
                          (int) getpid ());
  if (!append_line (lock, line, error))
    return FALSE;
  say ("parent", "appended a line through porta_lock_get_stream() while holding the lock");

  return TRUE;
}

/* Runs `flock -n PATH true`: util-linux flock(1) locks PATH with flock(2)
 * without waiting and exits 1 if someone else has it. */
static gboolean
show_flock (const char  *path,
            gboolean     expect_busy,
            GError     **error)
{
  g_autoptr(GSubprocess) flock_cmd = NULL;
  int status;

  flock_cmd = g_subprocess_new (G_SUBPROCESS_FLAGS_NONE, error,
                                FLOCK_PATH, "-n", path, "true", NULL);
  if (flock_cmd == NULL || !g_subprocess_wait (flock_cmd, NULL, error))
    return FALSE;
  if (!g_subprocess_get_if_exited (flock_cmd))
    return fail (error, "flock(1) did not exit normally");

  status = g_subprocess_get_exit_status (flock_cmd);
  say ("parent", "flock -n %s true: exit status %d (%s)", LOCK_FILE_NAME, status,
       status == 0 ? "it got the lock" : "the lock is busy");

  if ((status != 0) != expect_busy)
    return fail (error, expect_busy
                        ? "flock(1) got the lock while portalock held it"
                        : "flock(1) could not get the lock after portalock released it");

  return TRUE;
}

static gboolean
show_file (const char  *path,
           GError     **error)
{
  g_autofree char *contents = NULL;
  g_auto(GStrv) lines = NULL;

  if (!g_file_get_contents (path, &contents, NULL, error))
    return FALSE;

  lines = g_strsplit (g_strchomp (contents), "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    say ("file", "%s", lines[i]);

  return TRUE;
}

static gboolean
run_demo (PortaLock   *lock,
          const char  *path,
          const char  *self_path,
          guint        hold_ms,
          GError     **error)
{
  g_autoptr(GSubprocess) child = NULL;
  g_autoptr(GDataInputStream) child_out = NULL;
  gboolean use_flock = g_file_test (FLOCK_PATH, G_FILE_TEST_IS_EXECUTABLE);
  /* flock(1) sees only flock(2) locks, not fcntl(2) ones (ofd, posix). */
  gboolean flock_sees_it = porta_lock_get_backend (lock) == PORTA_BACKEND_FLOCK;

  section ("1. Take and release a lock that nobody else holds");
  if (!show_uncontended (lock, error))
    return FALSE;

  section ("2. A second process takes the lock and keeps it");
  child = start_child (self_path, path, hold_ms, &child_out, error);
  if (child == NULL)
    return FALSE;

  section ("3. The parent waits for it in three ways");
  if (!show_try_acquire (lock, error) ||
      !show_timed_acquire (lock, error) ||
      !show_async_acquire (lock, child_out, error) ||
      !g_subprocess_wait_check (child, NULL, error))
    {
      g_subprocess_force_exit (child);
      return FALSE;
    }

  section ("4. Write into the locked file");
  if (!show_write (lock, error))
    return FALSE;

  section ("5. util-linux flock(1) sees the same lock");
  if (use_flock && !show_flock (path, flock_sees_it, error))
    return FALSE;
  if (!use_flock)
    say ("parent", "%s is not installed: skipped", FLOCK_PATH);
  if (!porta_lock_release (lock, error))
    return FALSE;
  say ("parent", "porta_lock_release(); held: %s", porta_lock_get_held (lock) ? "yes" : "no");
  if (use_flock && !show_flock (path, FALSE, error))
    return FALSE;

  section ("6. What the two processes wrote, read back");
  return show_file (path, error);
}

static int
run_parent (const char *self_path,
            guint       hold_ms)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(PortaLock) lock = NULL;
  g_autofree char *dir = NULL;
  g_autofree char *path = NULL;
  gboolean ok;

  dir = g_dir_make_tmp ("portalock-demo-XXXXXX", &error);
  if (dir == NULL)
    {
      g_printerr ("portalock-demo: %s\n", error->message);
      return 1;
    }
  path = g_build_filename (dir, LOCK_FILE_NAME, NULL);

  lock = porta_lock_new_for_path (path, PORTA_LOCK_MODE_EXCLUSIVE);
  g_print ("portalock %s demo: two processes take turns on one lock file\n",
           PORTA_VERSION);
  g_print ("  lock file: %s (exclusive, %s backend)\n", path, backend_name (lock));

  ok = run_demo (lock, path, self_path, hold_ms, &error);

  /* Disposing a lock that is still held (after an error) releases it. */
  g_clear_object (&lock);
  g_unlink (path);
  g_rmdir (dir);

  if (!ok)
    {
      g_printerr ("\nportalock-demo: FAILED: %s\n", error->message);
      return 1;
    }

  g_print ("\nDone.\n");
  return 0;
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  gboolean quick = FALSE;
  const GOptionEntry entries[] = {
    { "quick", 'q', 0, G_OPTION_ARG_NONE, &quick,
      "Let the second process hold the lock for a shorter time", NULL },
    { NULL }
  };

  setlocale (LC_ALL, "");
  demo_start_us = g_get_monotonic_time ();

  /* The second process: the parent runs this program again as
   * `portalock-demo --hold FILE MS`. */
  if (argc == 4 && strcmp (argv[1], "--hold") == 0)
    return run_child (argv[2], argv[3]);

  context = g_option_context_new ("- show portalock at work");
  g_option_context_set_summary (context,
    "Locks a file in a temporary folder, lets a second process take the lock,\n"
    "and shows the ways to wait for it: try, timed and asynchronous acquires.");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("portalock-demo: %s\n", error->message);
      return 2;
    }

  return run_parent (argv[0], quick ? HOLD_MS_QUICK : HOLD_MS);
}
