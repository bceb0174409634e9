/* cache-sync.c: keep a cache file fresh when many processes want it at once
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 *   cache-sync [CACHE_FILE]
 *
 * The cache file (by default ~/.cache/portalock-example/cache.txt) is also
 * the lock file: readers hold it shared, the one process that rewrites it
 * holds it exclusively, so no reader ever sees a half-written cache and the
 * slow work of regenerating it is done once, however many processes find
 * it stale at the same moment:
 *
 *   1. take a shared lock and read the cache; if it is fresh, use it: done
 *   2. otherwise let go, take an exclusive lock (waiting at most 5 s)
 *   3. read it again: whoever held the exclusive lock before us may just
 *      have regenerated it, and then there is nothing left to do
 *   4. regenerate it and write it through the lock's own stream: seek to 0,
 *      truncate, write; release
 *
 * The first line of the cache says when and by whom it was generated:
 *
 *   generated 1700000000 by cache-sync (pid 4242)
 *
 * cache-async.c, cache.py, cache.js and cache.vala do the same job (and
 * write the same format) asynchronously, from Python, GJS and Vala.
 */

#include <errno.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <portalock/portalock.h>

#define PROGRAM_NAME "cache-sync"

/* A cache older than this many seconds is stale. */
#define MAX_AGE_S 60

/* How long to wait for a lock that someone else holds. */
#define LOCK_TIMEOUT_MS 5000

/* The whole file, read through the stream of the held lock. The lock owns
 * the stream: never g_object_unref() it, and never use it after release. */
static char *
read_locked_file (PortaLock  *lock,
                  GError    **error)
{
  GIOStream *stream = porta_lock_get_stream (lock);
  GInputStream *in = g_io_stream_get_input_stream (stream);
  g_autoptr(GByteArray) data = g_byte_array_new ();
  guint8 buffer[4096];
  gssize n;

  if (!g_seekable_seek (G_SEEKABLE (stream), 0, G_SEEK_SET, NULL, error))
    return NULL;
  while ((n = g_input_stream_read (in, buffer, sizeof buffer, NULL, error)) > 0)
    g_byte_array_append (data, buffer, n);
  if (n < 0)
    return NULL;
  g_byte_array_append (data, (const guint8 *) "", 1);   /* the final NUL */
  return (char *) g_byte_array_free (g_steal_pointer (&data), FALSE);
}

/* Fresh: the first line names a time less than MAX_AGE_S ago. Fills in
 * @age_s and @generated_by (the rest of the first line) when it is. */
static gboolean
cache_is_fresh (const char  *contents,
                gint64      *age_s,
                char       **generated_by)
{
  gint64 now_s = g_get_real_time () / G_USEC_PER_SEC;
  const char *end;
  char *rest;
  gint64 when;

  if (!g_str_has_prefix (contents, "generated "))
    return FALSE;   /* empty (we just created it), or not ours */
  when = g_ascii_strtoll (contents + strlen ("generated "), &rest, 10);
  if (!g_str_has_prefix (rest, " by ") || now_s - when < 0 || now_s - when >= MAX_AGE_S)
    return FALSE;

  end = strchr (rest, '\n');
  *age_s = now_s - when;
  *generated_by = g_strndup (rest + strlen (" by "),
                             end ? (gsize) (end - rest) - strlen (" by ") : strlen (rest));
  return TRUE;
}

/* Stands in for the slow work a real cache saves: a network fetch, a scan
 * of many files. It runs only while the exclusive lock is held. */
static char *
compute_cache_contents (void)
{
  g_autoptr(GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *when = g_date_time_format_iso8601 (now);

  g_usleep (300 * 1000);
  return g_strdup_printf ("generated %" G_GINT64_FORMAT " by " PROGRAM_NAME " (pid %d)\n"
                          "host: %s\n"
                          "computed at: %s\n",
                          g_date_time_to_unix (now), (int) getpid (),
                          g_get_host_name (), when);
}

static gboolean
write_locked_file (PortaLock   *lock,
                   const char  *contents,
                   GError     **error)
{
  GIOStream *stream = porta_lock_get_stream (lock);
  GOutputStream *out = g_io_stream_get_output_stream (stream);

  /* Never reopen the file to write it: the lock's stream is the locked
   * file. Truncate only now that the lock is held. */
  return g_seekable_seek (G_SEEKABLE (stream), 0, G_SEEK_SET, NULL, error) &&
         g_seekable_truncate (G_SEEKABLE (stream), 0, NULL, error) &&
         g_output_stream_write_all (out, contents, strlen (contents), NULL, NULL, error) &&
         g_output_stream_flush (out, NULL, error);
}

/* Steps 1 to 4 above. Prints one line saying what it did. */
static gboolean
use_or_regenerate_cache (const char  *path,
                         GError     **error)
{
  g_autoptr(PortaLock) reader = porta_lock_new_for_path (path, PORTA_LOCK_MODE_SHARED);
  g_autoptr(PortaLock) writer = NULL;
  g_autofree char *contents = NULL;
  g_autofree char *fresh_contents = NULL;
  g_autofree char *generated_by = NULL;
  gint64 age_s = 0;

  /* 1. Readers share the lock: any number of them read at once. The lock
   * creates the file, empty, if it is missing. */
  if (!porta_lock_acquire (reader, LOCK_TIMEOUT_MS, NULL, error))
    return FALSE;
  contents = read_locked_file (reader, error);
  if (contents == NULL)
    return FALSE;   /* g_autoptr releases the lock */
  if (cache_is_fresh (contents, &age_s, &generated_by))
    {
      g_print ("%s: %s is fresh (%" G_GINT64_FORMAT " s old, by %s): read it under a shared lock\n",
               PROGRAM_NAME, path, age_s, generated_by);
      return porta_lock_release (reader, error);
    }

  /* 2. The default (flock) backend cannot turn a shared lock into an
   * exclusive one without letting go in between, so release and acquire
   * again; step 3 covers what may happen in that gap. */
  if (!porta_lock_release (reader, error))
    return FALSE;
  writer = porta_lock_new_for_path (path, PORTA_LOCK_MODE_EXCLUSIVE);
  if (!porta_lock_acquire (writer, LOCK_TIMEOUT_MS, NULL, error))
    return FALSE;   /* G_IO_ERROR_TIMED_OUT names the holder */

  /* 3. Someone may have regenerated it while we waited. */
  g_clear_pointer (&contents, g_free);
  contents = read_locked_file (writer, error);
  if (contents == NULL)
    return FALSE;
  if (cache_is_fresh (contents, &age_s, &generated_by))
    {
      g_print ("%s: %s was regenerated by %s while we waited for the lock; used it as it is\n",
               PROGRAM_NAME, path, generated_by);
      return porta_lock_release (writer, error);
    }

  /* 4. Our turn: nobody reads or writes it until we release. */
  fresh_contents = compute_cache_contents ();
  if (!write_locked_file (writer, fresh_contents, error))
    return FALSE;
  g_print ("%s: regenerated %s (it was %s)\n", PROGRAM_NAME, path,
           contents[0] == '\0' ? "missing or empty" : "stale");
  return porta_lock_release (writer, error);
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr(GError) error = NULL;
  g_autofree char *path = NULL;
  g_autofree char *folder = NULL;

  /* The library's messages come translated, and g_printerr() prints
   * them in the terminal's encoding, only once the locale is set. */
  setlocale (LC_ALL, "");

  if (argc > 2)
    {
      g_printerr ("Usage: %s [CACHE_FILE]\n", argv[0]);
      return EXIT_FAILURE;
    }
  if (argc == 2)
    path = g_strdup (argv[1]);
  else
    path = g_build_filename (g_get_user_cache_dir (), "portalock-example", "cache.txt", NULL);

  /* portalock creates a missing lock file, but not a missing folder. */
  folder = g_path_get_dirname (path);
  if (g_mkdir_with_parents (folder, 0700) != 0)
    {
      int errsv = errno;

      g_printerr ("%s: cannot create %s: %s\n", PROGRAM_NAME, folder, g_strerror (errsv));
      return EXIT_FAILURE;
    }

  if (!use_or_regenerate_cache (path, &error))
    {
      g_printerr ("%s: %s\n", PROGRAM_NAME, error->message);
      return EXIT_FAILURE;
    }
  return EXIT_SUCCESS;
}
