/* test-stress-contention.c: many processes and threads on one lock
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Never lose an update, never let two exclusive holders in at once, never
 * let a reader see a half-written file: each test here hammers one lock
 * file from several processes or threads and checks an invariant that
 * breaks as soon as two of them hold the lock at the same time.
 */

#include <string.h>

#include "porta-test-utils.h"

#define N_WORKERS     8
#define N_INCREMENTS  500
#define N_WRITERS     2
#define N_WRITES      150
#define N_READERS     4
#define N_READS       300
#define RECORD_SIZE   (16 * 1024)
#define N_CYCLES      200

static const PortaBackend all_backends[] = {
  PORTA_BACKEND_FLOCK, PORTA_BACKEND_OFD, PORTA_BACKEND_POSIX,
};

static guint64
read_counter (const char *path)
{
  g_autofree char *text = NULL;
  g_autoptr(GError) error = NULL;
  guint64 value = 0;

  g_file_get_contents (path, &text, NULL, &error);
  g_assert_no_error (error);
  g_ascii_string_to_unsigned (g_strstrip (text), 10, 0, G_MAXUINT64, &value, &error);
  g_assert_no_error (error);
  return value;
}

static void
test_lost_updates_processes (gconstpointer data)
{
  PortaBackend backend = GPOINTER_TO_INT (data);
  const char *name = porta_test_backend_name (backend);
  g_autofree char *path = porta_test_path ("counter");
  g_autofree char *n = g_strdup_printf ("%d", N_INCREMENTS);
  GSubprocess *procs[N_WORKERS];
  gint64 start;
  guint64 count;

  g_assert_true (g_file_set_contents (path, "0\n", -1, NULL));

  start = g_get_monotonic_time ();
  for (guint i = 0; i < N_WORKERS; i++)
    procs[i] = porta_test_spawn (G_SUBPROCESS_FLAGS_NONE, "increment", name, path, n, NULL);
  for (guint i = 0; i < N_WORKERS; i++)
    {
      porta_test_wait_ok (procs[i], "an incrementing process");
      g_object_unref (procs[i]);
    }

  count = read_counter (path);
  g_test_message ("%s: %d processes x %d increments: final count %" G_GUINT64_FORMAT
                  " (expected %d) in %.2f s",
                  name, N_WORKERS, N_INCREMENTS, count, N_WORKERS * N_INCREMENTS,
                  (g_get_monotonic_time () - start) / 1e6);
  g_assert_cmpuint (count, ==, N_WORKERS * N_INCREMENTS);
}

typedef struct
{
  const char   *path;
  PortaBackend  backend;
  guint         n_ok;
  guint         n_busy;
} Incrementer;

/* Adds one to the counter in the locked file. */
static void
increment_locked (PortaLock *lock)
{
  GIOStream *stream = porta_lock_get_stream (lock);
  g_autoptr(GError) error = NULL;
  char buf[64];
  gsize len = 0;
  guint64 value = 0;

  g_assert_nonnull (stream);
  g_input_stream_read_all (g_io_stream_get_input_stream (stream),
                           buf, sizeof buf - 1, &len, NULL, &error);
  g_assert_no_error (error);
  buf[len] = '\0';
  g_ascii_string_to_unsigned (g_strstrip (buf), 10, 0, G_MAXUINT64, &value, &error);
  g_assert_no_error (error);

  len = (gsize) g_snprintf (buf, sizeof buf, "%" G_GUINT64_FORMAT "\n", value + 1);
  g_seekable_seek (G_SEEKABLE (stream), 0, G_SEEK_SET, NULL, &error);
  g_assert_no_error (error);
  g_seekable_truncate (G_SEEKABLE (stream), 0, NULL, &error);
  g_assert_no_error (error);
  g_output_stream_write_all (g_io_stream_get_output_stream (stream),
                             buf, len, NULL, NULL, &error);
  g_assert_no_error (error);
}

static gpointer
incrementer_thread (gpointer data)
{
  Incrementer *inc = data;
  g_autoptr(GFile) file = g_file_new_for_path (inc->path);
  g_autoptr(PortaLock) lock = porta_lock_new_full (file, PORTA_LOCK_MODE_EXCLUSIVE,
                                                   inc->backend, 0);

  for (guint i = 0; i < N_INCREMENTS; i++)
    {
      g_autoptr(GError) error = NULL;

      if (!porta_lock_acquire (lock, -1, NULL, &error))
        {
          /* Only the posix backend may refuse, and only this way. */
          g_assert_cmpint (inc->backend, ==, PORTA_BACKEND_POSIX);
          g_assert_error (error, G_IO_ERROR, G_IO_ERROR_BUSY);
          inc->n_busy++;
          g_thread_yield ();
          continue;
        }
      increment_locked (lock);
      porta_lock_release (lock, &error);
      g_assert_no_error (error);
      inc->n_ok++;
    }
  return NULL;
}

static guint
run_incrementer_threads (const char   *path,
                         PortaBackend  backend,
                         guint        *n_busy)
{
  Incrementer incs[N_WORKERS];
  GThread *threads[N_WORKERS];
  guint n_ok = 0;

  *n_busy = 0;
  for (guint i = 0; i < N_WORKERS; i++)
    {
      incs[i] = (Incrementer) { path, backend, 0, 0 };
      threads[i] = g_thread_new ("incrementer", incrementer_thread, &incs[i]);
    }
  for (guint i = 0; i < N_WORKERS; i++)
    {
      g_thread_join (threads[i]);
      n_ok += incs[i].n_ok;
      *n_busy += incs[i].n_busy;
    }
  return n_ok;
}

static void
test_lost_updates_threads (gconstpointer data)
{
  PortaBackend backend = GPOINTER_TO_INT (data);
  const char *name = porta_test_backend_name (backend);
  g_autofree char *path = porta_test_path ("counter");
  gint64 start = g_get_monotonic_time ();
  guint n_busy;
  guint n_ok;
  guint64 count;

  if (porta_test_skip_ofd_wait_under_valgrind (backend))
    return;
  g_assert_true (g_file_set_contents (path, "0\n", -1, NULL));
  n_ok = run_incrementer_threads (path, backend, &n_busy);
  count = read_counter (path);
  g_test_message ("%s: %d threads x %d increments: final count %" G_GUINT64_FORMAT
                  " (expected %d) in %.2f s",
                  name, N_WORKERS, N_INCREMENTS, count, N_WORKERS * N_INCREMENTS,
                  (g_get_monotonic_time () - start) / 1e6);
  g_assert_cmpuint (n_busy, ==, 0);
  g_assert_cmpuint (n_ok, ==, N_WORKERS * N_INCREMENTS);
  g_assert_cmpuint (count, ==, N_WORKERS * N_INCREMENTS);
}

/* POSIX locks cannot tell two holders in one process apart, so portalock
 * refuses a second POSIX-backed lock on a file that one in the same process
 * has open, with G_IO_ERROR_BUSY and at once, instead of letting both in. */
static void
test_lost_updates_threads_posix (void)
{
  g_autofree char *path = porta_test_path ("counter");
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autoptr(PortaLock) first = porta_lock_new_full (file, PORTA_LOCK_MODE_EXCLUSIVE,
                                                    PORTA_BACKEND_POSIX, 0);
  g_autoptr(PortaLock) second = porta_lock_new_full (file, PORTA_LOCK_MODE_SHARED,
                                                     PORTA_BACKEND_POSIX, 0);
  g_autoptr(GError) error = NULL;
  guint fds_before;
  guint n_busy;
  guint n_ok;
  guint64 count;
  gint64 start;

  g_assert_true (g_file_set_contents (path, "0\n", -1, NULL));
  fds_before = porta_test_count_fds ();

  /* The documented refusal, deterministic: even a wait for ever does not
   * wait, and a shared lock is refused as well as an exclusive one. */
  g_assert_true (porta_lock_acquire (first, -1, NULL, &error));
  g_assert_no_error (error);
  start = g_get_monotonic_time ();
  g_assert_false (porta_lock_acquire (second, -1, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_BUSY);
  g_assert_nonnull (strstr (error->message, path));
  g_test_message ("posix: second lock in the process refused after %" G_GINT64_FORMAT
                  " us: %s", g_get_monotonic_time () - start, error->message);
  g_assert_cmpint (g_get_monotonic_time () - start, <, G_USEC_PER_SEC);
  g_clear_error (&error);
  g_assert_false (porta_lock_get_held (second));
  g_assert_true (porta_lock_release (first, &error));
  g_assert_no_error (error);
  g_assert_true (porta_lock_acquire (second, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (porta_lock_release (second, &error));
  /* The refused attempt's descriptor was parked, not leaked. */
  g_assert_cmpuint (porta_test_count_fds (), ==, fds_before);

  /* Under contention from threads: every attempt either gets the lock,
   * alone, or is refused; no increment is lost. */
  start = g_get_monotonic_time ();
  n_ok = run_incrementer_threads (path, PORTA_BACKEND_POSIX, &n_busy);
  count = read_counter (path);
  g_test_message ("posix: %d threads x %d attempts: %u got the lock, %u refused "
                  "with G_IO_ERROR_BUSY, final count %" G_GUINT64_FORMAT " in %.2f s",
                  N_WORKERS, N_INCREMENTS, n_ok, n_busy, count,
                  (g_get_monotonic_time () - start) / 1e6);
  g_assert_cmpuint (n_ok + n_busy, ==, N_WORKERS * N_INCREMENTS);
  g_assert_cmpuint (n_ok, >, 0);
  g_assert_cmpuint (count, ==, n_ok);
  g_assert_cmpuint (porta_test_count_fds (), ==, fds_before);
}

static void
test_readers_writers (gconstpointer data)
{
  PortaBackend backend = GPOINTER_TO_INT (data);
  const char *name = porta_test_backend_name (backend);
  g_autofree char *path = porta_test_path ("records");
  g_autofree char *size = g_strdup_printf ("%d", RECORD_SIZE);
  g_autofree char *n_writes = g_strdup_printf ("%d", N_WRITES);
  g_autofree char *n_reads = g_strdup_printf ("%d", N_READS);
  g_autofree char *record = NULL;
  g_autofree char *contents = NULL;
  g_autofree char *why = NULL;
  GSubprocess *procs[N_WRITERS + N_READERS];
  gsize len;
  gint64 start;

  record = porta_test_record_new ('0', RECORD_SIZE, &len);
  g_assert_true (g_file_set_contents (path, record, (gssize) len, NULL));

  start = g_get_monotonic_time ();
  for (guint i = 0; i < N_WRITERS + N_READERS; i++)
    procs[i] = porta_test_spawn (G_SUBPROCESS_FLAGS_NONE, i < N_WRITERS ? "write" : "read",
                                 name, path, i < N_WRITERS ? n_writes : n_reads, size, NULL);
  for (guint i = 0; i < N_WRITERS + N_READERS; i++)
    {
      porta_test_wait_ok (procs[i], i < N_WRITERS ? "a writer" : "a reader");
      g_object_unref (procs[i]);
    }

  g_test_message ("%s: %d writers x %d records of %d bytes, %d readers x %d "
                  "reads: no torn read, in %.2f s",
                  name, N_WRITERS, N_WRITES, RECORD_SIZE, N_READERS, N_READS,
                  (g_get_monotonic_time () - start) / 1e6);
  g_file_get_contents (path, &contents, &len, NULL);
  g_assert_true (porta_test_record_check (contents, len, RECORD_SIZE, &why));
}

static void
test_unlink_race (gconstpointer data)
{
  PortaBackend backend = GPOINTER_TO_INT (data);
  const char *name = porta_test_backend_name (backend);
  g_autofree char *path = porta_test_path ("deleted.lock");
  g_autofree char *inside = porta_test_path ("inside");
  g_autofree char *n = g_strdup_printf ("%d", N_CYCLES);
  GSubprocess *procs[N_WORKERS];
  gint64 start = g_get_monotonic_time ();

  for (guint i = 0; i < N_WORKERS; i++)
    procs[i] = porta_test_spawn (G_SUBPROCESS_FLAGS_NONE, "unlink-cycle", name, path,
                                 inside, n, NULL);
  for (guint i = 0; i < N_WORKERS; i++)
    {
      porta_test_wait_ok (procs[i], "a process cycling a deleted-on-release lock");
      g_object_unref (procs[i]);
    }

  g_test_message ("%s: %d processes x %d cycles with DELETE_ON_RELEASE: no overlap, "
                  "in %.2f s", name, N_WORKERS, N_CYCLES,
                  (g_get_monotonic_time () - start) / 1e6);
  /* The last holder deleted the file; nobody was left inside. */
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (inside, G_FILE_TEST_EXISTS));
}

int
main (int   argc,
      char *argv[])
{
  porta_test_init (&argc, &argv);

  for (guint i = 0; i < G_N_ELEMENTS (all_backends); i++)
    {
      PortaBackend b = all_backends[i];
      const char *name = porta_test_backend_name (b);
      g_autofree char *p1 = g_strdup_printf ("/stress/lost-updates/processes/%s", name);
      g_autofree char *p2 = g_strdup_printf ("/stress/unlink-race/%s", name);

      g_test_add_data_func (p1, GINT_TO_POINTER (b), test_lost_updates_processes);
      g_test_add_data_func (p2, GINT_TO_POINTER (b), test_unlink_race);
      if (b != PORTA_BACKEND_POSIX)
        {
          g_autofree char *p3 = g_strdup_printf ("/stress/lost-updates/threads/%s", name);
          g_autofree char *p4 = g_strdup_printf ("/stress/readers-writers/%s", name);

          g_test_add_data_func (p3, GINT_TO_POINTER (b), test_lost_updates_threads);
          g_test_add_data_func (p4, GINT_TO_POINTER (b), test_readers_writers);
        }
    }
  g_test_add_func ("/stress/lost-updates/threads/posix-busy", test_lost_updates_threads_posix);

  return g_test_run ();
}
