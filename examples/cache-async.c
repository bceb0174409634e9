/* cache-async.c: keep a cache file fresh, without blocking the main loop
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 *   cache-async [CACHE_FILE]
 *
 * The same job as cache-sync.c (read that first), done the way a GTK
 * application or a daemon does it: every wait for a lock is
 * porta_lock_acquire_async() on the running GMainLoop, with a 5 s timeout
 * and a GCancellable that Ctrl-C cancels. While we wait for the lock, and
 * while the (simulated) slow regeneration runs, a 50 ms timer keeps
 * ticking on the same loop: the line the program prints says how often,
 * which shows that the loop never stopped.
 *
 * The steps, one callback each:
 *   on_shared_locked     the cache is read under a shared lock; if it is
 *                        fresh we are done
 *   on_exclusive_locked  after an exclusive lock, it is read again (someone
 *                        may have regenerated it while we waited)
 *   on_work_done         the new contents are written through the lock's
 *                        stream (seek 0, truncate, write), then released
 */

#include <errno.h>
#include <locale.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <glib-unix.h>
#include <portalock/portalock.h>

#define PROGRAM_NAME "cache-async"
#define MAX_AGE_S 60
#define LOCK_TIMEOUT_MS 5000
#define TICK_MS 50
#define SLOW_WORK_MS 300

typedef struct
{
  GMainLoop    *loop;
  GCancellable *cancellable;   /* Ctrl-C cancels whatever we wait for */
  char         *path;
  PortaLock    *lock;          /* the shared lock, then the exclusive one */
  char         *old_contents;
  guint         ticks;         /* how often the timer ran: the loop is alive */
  GError       *error;         /* set when the job failed */
} CacheJob;

static void on_shared_locked (GObject *source, GAsyncResult *result, gpointer user_data);
static void on_exclusive_locked (GObject *source, GAsyncResult *result, gpointer user_data);
static gboolean on_work_done (gpointer user_data);

/* Ends the job: releases the lock if it is held (a held PortaLock is also
 * released when it is disposed) and stops the loop. */
static void
job_finish (CacheJob *job,
            GError   *error)
{
  if (error != NULL)
    g_propagate_error (&job->error, error);
  if (job->lock != NULL && porta_lock_get_held (job->lock))
    porta_lock_release (job->lock, job->error == NULL ? &job->error : NULL);
  g_main_loop_quit (job->loop);
}

static char *
read_locked_file (PortaLock  *lock,
                  GError    **error)
{
  GIOStream *stream = porta_lock_get_stream (lock);   /* owned by the lock */
  GInputStream *in = g_io_stream_get_input_stream (stream);
  g_autoptr(GByteArray) data = g_byte_array_new ();
  guint8 buffer[4096];
  gssize n;

  /* A cache file is small: reading it synchronously does not hold up the
   * loop noticeably. Waiting for the lock could, so that is async. */
  if (!g_seekable_seek (G_SEEKABLE (stream), 0, G_SEEK_SET, NULL, error))
    return NULL;
  while ((n = g_input_stream_read (in, buffer, sizeof buffer, NULL, error)) > 0)
    g_byte_array_append (data, buffer, n);
  if (n < 0)
    return NULL;
  g_byte_array_append (data, (const guint8 *) "", 1);
  return (char *) g_byte_array_free (g_steal_pointer (&data), FALSE);
}

/* See cache-sync.c: the first line is "generated UNIX_TIME by WHO". */
static char *
cache_generated_by_if_fresh (const char *contents)
{
  gint64 now_s = g_get_real_time () / G_USEC_PER_SEC;
  const char *end;
  char *rest;
  gint64 when;

  if (!g_str_has_prefix (contents, "generated "))
    return NULL;
  when = g_ascii_strtoll (contents + strlen ("generated "), &rest, 10);
  if (!g_str_has_prefix (rest, " by ") || now_s - when < 0 || now_s - when >= MAX_AGE_S)
    return NULL;
  rest += strlen (" by ");
  end = strchr (rest, '\n');
  return end ? g_strndup (rest, end - rest) : g_strdup (rest);
}

static gboolean
write_locked_file (PortaLock   *lock,
                   const char  *contents,
                   GError     **error)
{
  GIOStream *stream = porta_lock_get_stream (lock);
  GOutputStream *out = g_io_stream_get_output_stream (stream);

  return g_seekable_seek (G_SEEKABLE (stream), 0, G_SEEK_SET, NULL, error) &&
         g_seekable_truncate (G_SEEKABLE (stream), 0, NULL, error) &&
         g_output_stream_write_all (out, contents, strlen (contents), NULL, NULL, error) &&
         g_output_stream_flush (out, NULL, error);
}

static gboolean
on_tick (gpointer user_data)
{
  CacheJob *job = user_data;

  job->ticks++;
  return G_SOURCE_CONTINUE;
}

static gboolean
on_sigint (gpointer user_data)
{
  CacheJob *job = user_data;

  /* The pending acquire fails with G_IO_ERROR_CANCELLED, at once. */
  g_cancellable_cancel (job->cancellable);
  return G_SOURCE_CONTINUE;
}

static void
on_shared_locked (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  CacheJob *job = user_data;
  g_autofree char *generated_by = NULL;
  GError *error = NULL;

  if (!porta_lock_acquire_finish (PORTA_LOCK (source), result, &error))
    {
      job_finish (job, error);
      return;
    }

  job->old_contents = read_locked_file (job->lock, &error);
  if (job->old_contents == NULL)
    {
      job_finish (job, error);
      return;
    }

  generated_by = cache_generated_by_if_fresh (job->old_contents);
  if (generated_by != NULL)
    {
      g_print ("%s: %s is fresh (by %s): read it under a shared lock\n",
               PROGRAM_NAME, job->path, generated_by);
      job_finish (job, NULL);
      return;
    }

  /* Stale: let go of the shared lock (flock cannot convert it atomically)
   * and queue for the exclusive one. */
  if (!porta_lock_release (job->lock, &error))
    {
      job_finish (job, error);
      return;
    }
  g_clear_object (&job->lock);
  job->lock = porta_lock_new_for_path (job->path, PORTA_LOCK_MODE_EXCLUSIVE);
  porta_lock_acquire_async (job->lock, LOCK_TIMEOUT_MS, G_PRIORITY_DEFAULT,
                            job->cancellable, on_exclusive_locked, job);
}

static void
on_exclusive_locked (GObject      *source,
                     GAsyncResult *result,
                     gpointer      user_data)
{
  CacheJob *job = user_data;
  g_autofree char *contents = NULL;
  g_autofree char *generated_by = NULL;
  GError *error = NULL;

  /* G_IO_ERROR_TIMED_OUT after 5 s, G_IO_ERROR_CANCELLED after Ctrl-C. */
  if (!porta_lock_acquire_finish (PORTA_LOCK (source), result, &error))
    {
      job_finish (job, error);
      return;
    }

  contents = read_locked_file (job->lock, &error);
  if (contents == NULL)
    {
      job_finish (job, error);
      return;
    }
  generated_by = cache_generated_by_if_fresh (contents);
  if (generated_by != NULL)
    {
      g_print ("%s: %s was regenerated by %s while we waited for the lock; used it as it is "
               "(the main loop ticked %u times meanwhile)\n",
               PROGRAM_NAME, job->path, generated_by, job->ticks);
      job_finish (job, NULL);
      return;
    }

  /* The slow work, here a timer: a real program would start an async
   * download or a GTask. Either way the loop runs on while we hold the
   * lock, and nobody else reads or writes the cache until we release. */
  g_timeout_add (SLOW_WORK_MS, on_work_done, job);
}

static gboolean
on_work_done (gpointer user_data)
{
  CacheJob *job = user_data;
  g_autoptr(GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *when = g_date_time_format_iso8601 (now);
  g_autofree char *contents = NULL;
  GError *error = NULL;

  contents = g_strdup_printf ("generated %" G_GINT64_FORMAT " by " PROGRAM_NAME " (pid %d)\n"
                              "host: %s\n"
                              "computed at: %s\n",
                              g_date_time_to_unix (now), (int) getpid (),
                              g_get_host_name (), when);
  if (!write_locked_file (job->lock, contents, &error))
    {
      job_finish (job, error);
      return G_SOURCE_REMOVE;
    }
  g_print ("%s: regenerated %s (it was %s); the main loop ticked %u times meanwhile\n",
           PROGRAM_NAME, job->path,
           job->old_contents[0] == '\0' ? "missing or empty" : "stale", job->ticks);
  job_finish (job, NULL);
  return G_SOURCE_REMOVE;
}

int
main (int   argc,
      char *argv[])
{
  CacheJob job = { 0, };
  g_autofree char *folder = NULL;
  guint tick_id, sigint_id;
  int status = EXIT_SUCCESS;

  /* The library's messages come translated, and g_printerr() prints
   * them in the terminal's encoding, only once the locale is set. */
  setlocale (LC_ALL, "");

  if (argc > 2)
    {
      g_printerr ("Usage: %s [CACHE_FILE]\n", argv[0]);
      return EXIT_FAILURE;
    }
  job.path = argc == 2 ? g_strdup (argv[1])
                       : g_build_filename (g_get_user_cache_dir (), "portalock-example",
                                           "cache.txt", NULL);
  folder = g_path_get_dirname (job.path);
  if (g_mkdir_with_parents (folder, 0700) != 0)
    {
      int errsv = errno;

      g_printerr ("%s: cannot create %s: %s\n", PROGRAM_NAME, folder, g_strerror (errsv));
      g_free (job.path);
      return EXIT_FAILURE;
    }

  job.loop = g_main_loop_new (NULL, FALSE);
  job.cancellable = g_cancellable_new ();
  tick_id = g_timeout_add (TICK_MS, on_tick, &job);
  sigint_id = g_unix_signal_add (SIGINT, on_sigint, &job);

  /* Nothing waits here: the callback runs on this loop once the shared
   * lock is held, has timed out, or was cancelled. */
  job.lock = porta_lock_new_for_path (job.path, PORTA_LOCK_MODE_SHARED);
  porta_lock_acquire_async (job.lock, LOCK_TIMEOUT_MS, G_PRIORITY_DEFAULT,
                            job.cancellable, on_shared_locked, &job);
  g_main_loop_run (job.loop);

  if (job.error != NULL)
    {
      g_printerr ("%s: %s\n", PROGRAM_NAME, job.error->message);
      status = EXIT_FAILURE;
    }

  g_source_remove (tick_id);
  g_source_remove (sigint_id);
  g_clear_error (&job.error);
  g_clear_object (&job.lock);
  g_clear_object (&job.cancellable);
  g_clear_pointer (&job.loop, g_main_loop_unref);
  g_free (job.old_contents);
  g_free (job.path);
  return status;
}
