/* test-features.c: reentrant and temporary locks, shared/exclusive
 * conversion, holder queries, descriptor and stream locking, and the
 * PortaLockable interface
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <gio/gio.h>
#include <gio/gunixinputstream.h>
#include <gio/gfiledescriptorbased.h>

#include <portalock/portalock.h>

#include "porta-test-utils.h"

/* The other processes: util-linux flock(1), and this script run by
 * /usr/bin/python3 for fcntl() locks, which flock(1) 2.38 cannot take.
 *
 *   python3 -c SCRIPT PATH KIND MODE ACTION
 *
 * KIND is flock, posix or ofd; MODE sh or ex; ACTION try (exit 0 if the
 * lock could be taken at once, 1 if it is busy) or hold (take it at once or
 * exit 1, say "locked", hold it until a line or end-of-file on stdin). */
static const char helper_script[] =
  "import fcntl, os, struct, sys\n"
  "path, kind, mode, action = sys.argv[1:5]\n"
  "fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)\n"
  "try:\n"
  "    if kind == 'flock':\n"
  "        fcntl.flock(fd, (fcntl.LOCK_SH if mode == 'sh' else fcntl.LOCK_EX) | fcntl.LOCK_NB)\n"
  "    else:\n"
  "        cmd = fcntl.F_SETLK if kind == 'posix' else 37  # F_OFD_SETLK\n"
  "        typ = fcntl.F_RDLCK if mode == 'sh' else fcntl.F_WRLCK\n"
  "        fcntl.fcntl(fd, cmd, struct.pack('hhqqi', typ, 0, 0, 0, 0))\n"
  "except OSError:\n"
  "    sys.exit(1)\n"
  "if action == 'try':\n"
  "    sys.exit(0)\n"
  "print('locked', flush=True)\n"
  "sys.stdin.readline()\n"
  "sys.exit(0)\n";

/* ---- helpers ---------------------------------------------------------- */

typedef struct
{
  char *dir;
  char *path;   /* dir/lock, not created */
} Fixture;

static void
fixture_setup (Fixture       *fx,
               gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *made = g_dir_make_tmp ("portalock-features-XXXXXX", &error);

  g_assert_no_error (error);
  /* Messages name the file as the kernel resolves it. */
  fx->dir = realpath (made, NULL);
  g_assert_nonnull (fx->dir);
  fx->path = g_build_filename (fx->dir, "lock", NULL);
}

static void
fixture_teardown (Fixture       *fx,
                  gconstpointer  data)
{
  g_autoptr(GDir) dir = g_dir_open (fx->dir, 0, NULL);
  const char *name;

  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *p = g_build_filename (fx->dir, name, NULL);

      g_unlink (p);
    }
  g_rmdir (fx->dir);
  free (fx->dir);
  g_free (fx->path);
}

/* Deadlines stretch on slow machines and under valgrind. */
static guint
scale_ms (guint ms)
{
  const char *factor = g_getenv ("PORTA_TEST_TIME_FACTOR");
  guint f = factor != NULL ? (guint) atoi (factor) : 1;

  return ms * MAX (f, 1);
}

static gboolean
have_tools (void)
{
  if (FEATURES_FLOCK[0] == '\0' || !g_file_test (FEATURES_FLOCK, G_FILE_TEST_IS_EXECUTABLE))
    {
      g_test_skip ("flock(1) is not installed");
      return FALSE;
    }
  if (FEATURES_PYTHON3[0] == '\0' || !g_file_test (FEATURES_PYTHON3, G_FILE_TEST_IS_EXECUTABLE))
    {
      g_test_skip ("/usr/bin/python3 is not installed");
      return FALSE;
    }
  return TRUE;
}

/* Runs a program to its end and returns its exit status. */
static int
run_status (const char * const *argv)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GSubprocess) proc = g_subprocess_newv (argv, G_SUBPROCESS_FLAGS_STDOUT_SILENCE, &error);

  g_assert_no_error (error);
  g_subprocess_wait (proc, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (proc));
  return g_subprocess_get_exit_status (proc);
}

/* flock -n [-s] PATH true: 0 if another process could take the flock(2)
 * lock at once, 1 if it is held. */
static int
flock_try (const char *path,
           gboolean    shared)
{
  const char *argv_ex[] = { FEATURES_FLOCK, "-n", path, "true", NULL };
  const char *argv_sh[] = { FEATURES_FLOCK, "-n", "-s", path, "true", NULL };
  int status = run_status (shared ? argv_sh : argv_ex);

  g_assert_cmpint (status, >=, 0);
  g_assert_cmpint (status, <=, 1);
  return status;
}

/* 0 if another process could take a fcntl() lock of @kind at once, 1 if
 * it conflicts with one that is held. */
static int
fcntl_try (const char *path,
           const char *kind,
           gboolean    shared)
{
  const char *argv[] = { FEATURES_PYTHON3, "-c", helper_script, path, kind,
                         shared ? "sh" : "ex", "try", NULL };
  int status = run_status (argv);

  g_assert_cmpint (status, >=, 0);
  g_assert_cmpint (status, <=, 1);
  return status;
}

/* A process that holds a lock until told to let go. */
typedef struct
{
  GSubprocess      *proc;
  GOutputStream    *in;
  GDataInputStream *out;
  int               pid;
} Holder;

static Holder *
holder_spawnv (const char * const *argv)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *line = NULL;
  Holder *h = g_new0 (Holder, 1);

  h->proc = g_subprocess_newv (argv, G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_PIPE,
                               &error);
  g_assert_no_error (error);
  h->pid = atoi (g_subprocess_get_identifier (h->proc));
  h->in = g_object_ref (g_subprocess_get_stdin_pipe (h->proc));
  h->out = g_data_input_stream_new (g_subprocess_get_stdout_pipe (h->proc));
  line = g_data_input_stream_read_line (h->out, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (line, ==, "locked");
  return h;
}

/* flock PATH -c 'echo locked; read x': util-linux flock(1) holds it. */
static Holder *
holder_flock (const char *path)
{
  const char *argv[] = { FEATURES_FLOCK, path, "-c", "echo locked; read x", NULL };

  return holder_spawnv (argv);
}

static Holder *
holder_fcntl (const char *path,
              const char *kind,
              gboolean    shared)
{
  const char *argv[] = { FEATURES_PYTHON3, "-c", helper_script, path, kind,
                         shared ? "sh" : "ex", "hold", NULL };

  return holder_spawnv (argv);
}

/* Lets go of the lock (a line on its stdin) and reaps the process. */
static void
holder_release (Holder *h)
{
  g_autoptr(GError) error = NULL;

  g_output_stream_write_all (h->in, "\n", 1, NULL, NULL, &error);
  g_assert_no_error (error);
  g_output_stream_close (h->in, NULL, &error);
  g_assert_no_error (error);
  g_subprocess_wait (h->proc, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (h->proc));
  g_assert_cmpint (g_subprocess_get_exit_status (h->proc), ==, 0);
  g_clear_object (&h->in);
  g_clear_object (&h->out);
  g_clear_object (&h->proc);
  g_free (h);
}

static gpointer
holder_release_later_thread (gpointer data)
{
  g_usleep (200 * 1000);
  holder_release (data);
  return NULL;
}

static void
count_notify (GObject    *object,
              GParamSpec *pspec,
              gpointer    user_data)
{
  guint *count = user_data;

  (*count)++;
}

static PortaLock *
new_lock (const char     *path,
          PortaLockMode   mode,
          PortaBackend    backend,
          PortaLockFlags  flags)
{
  g_autoptr(GFile) file = g_file_new_for_path (path);

  return porta_lock_new_full (file, mode, backend, flags);
}

static gint64
elapsed_ms (gint64 start)
{
  return (g_get_monotonic_time () - start) / 1000;
}

/* Async results. */
typedef struct
{
  gboolean      done;
  gboolean      ok;
  GError       *error;
} AsyncResultData;

static void
async_result_clear (AsyncResultData *r)
{
  g_clear_error (&r->error);
  r->done = FALSE;
  r->ok = FALSE;
}

static void
wait_async (AsyncResultData *r)
{
  while (!r->done)
    g_main_context_iteration (NULL, TRUE);
}

static void
on_acquired (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  AsyncResultData *r = user_data;

  r->ok = porta_lock_acquire_finish (PORTA_LOCK (source), result, &r->error);
  r->done = TRUE;
}

static void
on_converted (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  AsyncResultData *r = user_data;

  r->ok = porta_lock_convert_finish (PORTA_LOCK (source), result, &r->error);
  r->done = TRUE;
}

static void
on_fd_locked (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  AsyncResultData *r = user_data;

  g_assert_null (source);
  r->ok = porta_fd_lock_finish (result, &r->error);
  r->done = TRUE;
}

static void
on_lockable_acquired (GObject      *source,
                      GAsyncResult *result,
                      gpointer      user_data)
{
  AsyncResultData *r = user_data;

  r->ok = porta_lockable_acquire_finish (PORTA_LOCKABLE (source), result, &r->error);
  r->done = TRUE;
}

/* Whether /proc/locks lists a waiter ("->") blocked on the file. */
static gboolean
has_waiter (dev_t dev,
            ino_t ino)
{
  g_autofree char *contents = NULL;
  g_autofree char *needle = g_strdup_printf (" %02x:%02x:%" G_GUINT64_FORMAT " ",
                                             major (dev), minor (dev), (guint64) ino);
  g_auto(GStrv) lines = NULL;

  if (!g_file_get_contents ("/proc/locks", &contents, NULL, NULL))
    return FALSE;
  lines = g_strsplit (contents, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    if (strstr (lines[i], "->") != NULL && strstr (lines[i], needle) != NULL)
      return TRUE;
  return FALSE;
}

/* Waits (iterating the thread-default main context) until someone is
 * blocked waiting for a lock on the file. */
static void
wait_for_waiter (const struct stat *st)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) scale_ms (30000) * 1000;

  while (!has_waiter (st->st_dev, st->st_ino))
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      while (g_main_context_iteration (NULL, FALSE))
        ;
      g_usleep (5 * 1000);
    }
}

static int
ppid_of (int pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/stat", pid);
  g_autofree char *contents = NULL;
  const char *p;

  if (!g_file_get_contents (path, &contents, NULL, NULL))
    return -1;
  /* "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses */
  p = strrchr (contents, ')');
  if (p == NULL)
    return -1;
  return atoi (p + 4);
}

/* The kind of lock fcntl_try() and holder_fcntl() take: the default
 * backend is flock on Linux. */
static const char *
backend_kind (PortaBackend backend)
{
  return porta_test_backend_name (backend == PORTA_BACKEND_DEFAULT ? PORTA_BACKEND_FLOCK : backend);
}

/* ---- reentrant -------------------------------------------------------- */

static void
test_reentrant_nested (Fixture       *fx,
                       gconstpointer  data)
{
  g_autoptr(PortaLock) lock = NULL;
  g_autoptr(GError) error = NULL;
  guint held_notifies = 0;

  if (!have_tools ())
    return;

  lock = new_lock (fx->path, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_FLOCK,
                   PORTA_LOCK_FLAGS_REENTRANT);
  g_signal_connect (lock, "notify::held", G_CALLBACK (count_notify), &held_notifies);
  g_assert_cmpuint (porta_lock_get_depth (lock), ==, 0);

  g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (porta_lock_get_depth (lock), ==, 1);
  g_assert_cmpuint (held_notifies, ==, 1);

  g_assert_true (porta_lock_acquire (lock, -1, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (porta_lock_get_depth (lock), ==, 2);

  g_assert_true (porta_lock_try_acquire (lock, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (porta_lock_get_depth (lock), ==, 3);
  g_assert_cmpuint (held_notifies, ==, 1);
  g_assert_true (porta_lock_get_held (lock));
  g_assert_cmpint (flock_try (fx->path, TRUE), ==, 1);

  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (porta_lock_get_depth (lock), ==, 2);
  g_assert_true (porta_lock_get_held (lock));
  g_assert_cmpint (flock_try (fx->path, FALSE), ==, 1);

  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (porta_lock_get_depth (lock), ==, 1);
  g_assert_true (porta_lock_get_held (lock));
  g_assert_cmpuint (held_notifies, ==, 1);
  g_assert_cmpint (flock_try (fx->path, FALSE), ==, 1);

  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (porta_lock_get_depth (lock), ==, 0);
  g_assert_false (porta_lock_get_held (lock));
  g_assert_cmpuint (held_notifies, ==, 2);
  g_assert_cmpint (flock_try (fx->path, FALSE), ==, 0);

  g_assert_false (porta_lock_release (lock, &error));
  g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_HELD);
  g_clear_error (&error);
  g_assert_cmpuint (porta_lock_get_depth (lock), ==, 0);

  /* and it can be taken again from the start */
  g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (porta_lock_get_depth (lock), ==, 1);
  g_assert_cmpuint (held_notifies, ==, 3);
  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (held_notifies, ==, 4);
}

typedef struct
{
  PortaLock *lock;
  int        timeout_ms;
  gboolean   ok;
  GError    *error;
} ThreadAcquire;

static gpointer
acquire_thread (gpointer data)
{
  ThreadAcquire *ta = data;

  ta->ok = porta_lock_acquire (ta->lock, ta->timeout_ms, NULL, &ta->error);
  return NULL;
}

static void
test_reentrant_other_thread (Fixture       *fx,
                             gconstpointer  data)
{
  g_autoptr(PortaLock) lock = NULL;
  g_autoptr(GError) error = NULL;
  int timeouts[] = { 0, 100, -1 };

  if (!have_tools ())
    return;

  lock = new_lock (fx->path, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_FLOCK,
                   PORTA_LOCK_FLAGS_REENTRANT);
  g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_no_error (error);

  for (guint i = 0; i < G_N_ELEMENTS (timeouts); i++)
    {
      ThreadAcquire ta = { lock, timeouts[i], FALSE, NULL };
      GThread *thread = g_thread_new ("other", acquire_thread, &ta);
      gint64 start = g_get_monotonic_time ();

      g_thread_join (thread);
      g_assert_false (ta.ok);
      g_assert_error (ta.error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_ALREADY_HELD);
      g_clear_error (&ta.error);
      /* it fails at once, it does not wait */
      g_assert_cmpint (elapsed_ms (start), <, scale_ms (5000));
      g_assert_cmpuint (porta_lock_get_depth (lock), ==, 2);
      g_assert_true (porta_lock_get_held (lock));
    }

  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
  g_assert_cmpint (flock_try (fx->path, FALSE), ==, 0);
}

static void
test_reentrant_without_flag (Fixture       *fx,
                             gconstpointer  data)
{
  g_autoptr(PortaLock) lock = NULL;
  g_autoptr(GError) error = NULL;
  AsyncResultData r = { 0 };

  lock = new_lock (fx->path, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_FLOCK,
                   PORTA_LOCK_FLAGS_NONE);
  g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (porta_lock_get_depth (lock), ==, 1);

  g_assert_false (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_ALREADY_HELD);
  g_clear_error (&error);
  g_assert_false (porta_lock_acquire (lock, -1, NULL, &error));
  g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_ALREADY_HELD);
  g_clear_error (&error);

  porta_lock_acquire_async (lock, -1, G_PRIORITY_DEFAULT, NULL, on_acquired, &r);
  wait_async (&r);
  g_assert_false (r.ok);
  g_assert_error (r.error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_ALREADY_HELD);
  async_result_clear (&r);

  g_assert_cmpuint (porta_lock_get_depth (lock), ==, 1);
  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (porta_lock_get_depth (lock), ==, 0);
  g_assert_false (porta_lock_get_held (lock));
}

static void
test_reentrant_async (Fixture       *fx,
                      gconstpointer  data)
{
  g_autoptr(PortaLock) lock = NULL;
  g_autoptr(GError) error = NULL;
  AsyncResultData r = { 0 };
  guint held_notifies = 0;

  if (!have_tools ())
    return;

  lock = new_lock (fx->path, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_FLOCK,
                   PORTA_LOCK_FLAGS_REENTRANT);
  g_signal_connect (lock, "notify::held", G_CALLBACK (count_notify), &held_notifies);

  /* first acquire async, then nested async and sync */
  porta_lock_acquire_async (lock, -1, G_PRIORITY_DEFAULT, NULL, on_acquired, &r);
  wait_async (&r);
  g_assert_no_error (r.error);
  g_assert_true (r.ok);
  async_result_clear (&r);
  g_assert_cmpuint (porta_lock_get_depth (lock), ==, 1);
  g_assert_cmpuint (held_notifies, ==, 1);

  porta_lock_acquire_async (lock, 0, G_PRIORITY_DEFAULT, NULL, on_acquired, &r);
  wait_async (&r);
  g_assert_no_error (r.error);
  g_assert_true (r.ok);
  async_result_clear (&r);
  g_assert_cmpuint (porta_lock_get_depth (lock), ==, 2);

  g_assert_true (porta_lock_acquire (lock, 1000, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (porta_lock_get_depth (lock), ==, 3);

  porta_lock_acquire_async (lock, 1000, G_PRIORITY_DEFAULT, NULL, on_acquired, &r);
  wait_async (&r);
  g_assert_no_error (r.error);
  g_assert_true (r.ok);
  async_result_clear (&r);
  g_assert_cmpuint (porta_lock_get_depth (lock), ==, 4);
  g_assert_cmpuint (held_notifies, ==, 1);

  for (guint depth = 4; depth > 1; depth--)
    {
      g_assert_true (porta_lock_release (lock, &error));
      g_assert_no_error (error);
      g_assert_cmpuint (porta_lock_get_depth (lock), ==, depth - 1);
    }
  g_assert_cmpint (flock_try (fx->path, TRUE), ==, 1);
  g_assert_cmpuint (held_notifies, ==, 1);
  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (held_notifies, ==, 2);
  g_assert_cmpint (flock_try (fx->path, FALSE), ==, 0);
}

static void
test_reentrant_temporary (Fixture       *fx,
                          gconstpointer  data)
{
  g_autoptr(PortaLock) lock = NULL;
  g_autoptr(GError) error = NULL;

  lock = new_lock (fx->path, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_FLOCK,
                   PORTA_LOCK_FLAGS_REENTRANT | PORTA_LOCK_FLAGS_DELETE_ON_RELEASE);
  g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
  /* only the last release deletes it */
  g_assert_true (g_file_test (fx->path, G_FILE_TEST_IS_REGULAR));
  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
  g_assert_false (g_file_test (fx->path, G_FILE_TEST_EXISTS));
}

static void
test_reentrant_dispose (Fixture       *fx,
                        gconstpointer  data)
{
  PortaLock *lock;
  g_autoptr(GError) error = NULL;

  if (!have_tools ())
    return;

  lock = new_lock (fx->path, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_FLOCK,
                   PORTA_LOCK_FLAGS_REENTRANT);
  for (guint i = 0; i < 3; i++)
    {
      g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
      g_assert_no_error (error);
    }
  g_assert_cmpuint (porta_lock_get_depth (lock), ==, 3);
  g_assert_cmpint (flock_try (fx->path, FALSE), ==, 1);

  g_object_unref (lock);
  g_assert_cmpint (flock_try (fx->path, FALSE), ==, 0);
}

/* ---- DELETE_ON_RELEASE ------------------------------------------------ */

static void
test_temporary_exclusive (Fixture       *fx,
                          gconstpointer  data)
{
  g_autoptr(PortaLock) lock = NULL;
  g_autoptr(GError) error = NULL;

  lock = new_lock (fx->path, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_FLOCK,
                   PORTA_LOCK_FLAGS_DELETE_ON_RELEASE);
  g_assert_false (g_file_test (fx->path, G_FILE_TEST_EXISTS));
  g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_test (fx->path, G_FILE_TEST_IS_REGULAR));
  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
  g_assert_false (g_file_test (fx->path, G_FILE_TEST_EXISTS));

  /* disposing a held one deletes it too */
  g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_test (fx->path, G_FILE_TEST_IS_REGULAR));
  g_clear_object (&lock);
  g_assert_false (g_file_test (fx->path, G_FILE_TEST_EXISTS));
}

static void
test_temporary_shared (Fixture       *fx,
                       gconstpointer  data)
{
  g_autoptr(PortaLock) lock = NULL;
  g_autoptr(PortaLock) other = NULL;
  g_autoptr(GError) error = NULL;

  lock = new_lock (fx->path, PORTA_LOCK_MODE_SHARED, PORTA_BACKEND_FLOCK,
                   PORTA_LOCK_FLAGS_DELETE_ON_RELEASE);
  other = new_lock (fx->path, PORTA_LOCK_MODE_SHARED, PORTA_BACKEND_FLOCK,
                    PORTA_LOCK_FLAGS_DELETE_ON_RELEASE);
  g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (porta_lock_acquire (other, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_test (fx->path, G_FILE_TEST_IS_REGULAR));
  g_assert_true (porta_lock_release (other, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_test (fx->path, G_FILE_TEST_IS_REGULAR));
}

/* The file descriptor @lock holds, through its stream. */
static void
fstat_locked (PortaLock   *lock,
              struct stat *st)
{
  GIOStream *stream = porta_lock_get_stream (lock);
  GInputStream *in;

  g_assert_nonnull (stream);
  in = g_io_stream_get_input_stream (stream);
  g_assert_true (G_IS_UNIX_INPUT_STREAM (in));
  g_assert_cmpint (fstat (g_unix_input_stream_get_fd (G_UNIX_INPUT_STREAM (in)), st), ==, 0);
}

/* After a waiter got the lock: it holds the file that is at the path now. */
static void
assert_holds_file_at_path (PortaLock    *waiter,
                           const char   *path,
                           PortaBackend  backend)
{
  g_autoptr(PortaLock) third = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *command = NULL;
  struct stat at_path, locked;
  int pid = -1;

  g_assert_true (porta_lock_get_held (waiter));
  g_assert_cmpint (stat (path, &at_path), ==, 0);
  fstat_locked (waiter, &locked);
  g_assert_cmpuint (at_path.st_dev, ==, locked.st_dev);
  g_assert_cmpuint (at_path.st_ino, ==, locked.st_ino);
  g_assert_cmpuint (locked.st_nlink, ==, 1);

  /* and the lock on it excludes the others */
  third = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend, PORTA_LOCK_FLAGS_NONE);
  g_assert_true (porta_lock_query_holder (third, &pid, &command, &error));
  g_assert_no_error (error);
  g_assert_cmpint (pid, ==, getpid ());
  g_assert_false (porta_lock_try_acquire (third, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_clear_error (&error);
  if (backend == PORTA_BACKEND_FLOCK)
    g_assert_cmpint (flock_try (path, FALSE), ==, 1);
  else
    g_assert_cmpint (fcntl_try (path, backend_kind (backend), TRUE), ==, 1);
}

typedef struct
{
  PortaBackend backend;
  int          timeout_ms;
} WaiterCase;

static const WaiterCase waiter_flock_forever = { PORTA_BACKEND_FLOCK, -1 };
static const WaiterCase waiter_flock_timeout = { PORTA_BACKEND_FLOCK, 30000 };
static const WaiterCase waiter_ofd_forever = { PORTA_BACKEND_OFD, -1 };
static const WaiterCase waiter_ofd_timeout = { PORTA_BACKEND_OFD, 30000 };

static void
test_temporary_waiter_thread (Fixture       *fx,
                              gconstpointer  data)
{
  const WaiterCase *wc = data;
  int timeout_ms = wc->timeout_ms;
  g_autoptr(PortaLock) holder = NULL;
  g_autoptr(PortaLock) waiter = NULL;
  g_autoptr(GError) error = NULL;
  ThreadAcquire ta = { NULL, 0, FALSE, NULL };
  GThread *thread;
  struct stat old;

  if (!have_tools ())
    return;

  holder = new_lock (fx->path, PORTA_LOCK_MODE_EXCLUSIVE, wc->backend,
                     PORTA_LOCK_FLAGS_DELETE_ON_RELEASE);
  waiter = new_lock (fx->path, PORTA_LOCK_MODE_EXCLUSIVE, wc->backend,
                     PORTA_LOCK_FLAGS_DELETE_ON_RELEASE);
  g_assert_true (porta_lock_acquire (holder, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (stat (fx->path, &old), ==, 0);

  ta.lock = waiter;
  ta.timeout_ms = timeout_ms > 0 ? (int) scale_ms ((guint) timeout_ms) : timeout_ms;
  thread = g_thread_new ("waiter", acquire_thread, &ta);
  /* it is blocked on the file the holder is about to delete */
  wait_for_waiter (&old);

  g_assert_true (porta_lock_release (holder, &error));
  g_assert_no_error (error);
  g_thread_join (thread);
  g_assert_no_error (ta.error);
  g_assert_true (ta.ok);

  assert_holds_file_at_path (waiter, fx->path, wc->backend);

  g_assert_true (porta_lock_release (waiter, &error));
  g_assert_no_error (error);
  g_assert_false (g_file_test (fx->path, G_FILE_TEST_EXISTS));
}

static void
test_temporary_waiter_async (Fixture       *fx,
                             gconstpointer  data)
{
  const WaiterCase *wc = data;
  g_autoptr(PortaLock) holder = NULL;
  g_autoptr(PortaLock) waiter = NULL;
  g_autoptr(GError) error = NULL;
  AsyncResultData r = { 0 };
  struct stat old;

  if (!have_tools ())
    return;

  holder = new_lock (fx->path, PORTA_LOCK_MODE_EXCLUSIVE, wc->backend,
                     PORTA_LOCK_FLAGS_DELETE_ON_RELEASE);
  waiter = new_lock (fx->path, PORTA_LOCK_MODE_EXCLUSIVE, wc->backend,
                     PORTA_LOCK_FLAGS_DELETE_ON_RELEASE);
  g_assert_true (porta_lock_acquire (holder, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (stat (fx->path, &old), ==, 0);

  porta_lock_acquire_async (waiter, wc->timeout_ms > 0 ? (int) scale_ms ((guint) wc->timeout_ms) : -1,
                            G_PRIORITY_DEFAULT, NULL, on_acquired, &r);
  wait_for_waiter (&old);
  g_assert_false (r.done);

  g_assert_true (porta_lock_release (holder, &error));
  g_assert_no_error (error);
  wait_async (&r);
  g_assert_no_error (r.error);
  g_assert_true (r.ok);
  async_result_clear (&r);

  assert_holds_file_at_path (waiter, fx->path, wc->backend);

  g_assert_true (porta_lock_release (waiter, &error));
  g_assert_no_error (error);
  g_assert_false (g_file_test (fx->path, G_FILE_TEST_EXISTS));
}

/* ---- convert ---------------------------------------------------------- */

static void
test_convert_fcntl (Fixture       *fx,
                    gconstpointer  data)
{
  PortaBackend backend = GPOINTER_TO_INT (data);
  const char *kind = backend_kind (backend);
  g_autoptr(PortaLock) lock = NULL;
  g_autoptr(GError) error = NULL;
  Holder *other;
  GThread *thread;
  guint mode_notifies = 0;
  gint64 start;

  if (!have_tools ())
    return;

  lock = new_lock (fx->path, PORTA_LOCK_MODE_SHARED, backend, PORTA_LOCK_FLAGS_NONE);
  g_assert_cmpint (porta_lock_get_backend (lock), ==, backend);
  g_signal_connect (lock, "notify::mode", G_CALLBACK (count_notify), &mode_notifies);
  g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (fcntl_try (fx->path, kind, TRUE), ==, 0);

  /* alone: upgrade at once */
  g_assert_true (porta_lock_convert (lock, PORTA_LOCK_MODE_EXCLUSIVE, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (porta_lock_get_mode (lock), ==, PORTA_LOCK_MODE_EXCLUSIVE);
  g_assert_cmpuint (mode_notifies, ==, 1);
  g_assert_true (porta_lock_get_held (lock));
  g_assert_cmpint (fcntl_try (fx->path, kind, TRUE), ==, 1);

  /* converting to the mode it has already succeeds */
  g_assert_true (porta_lock_convert (lock, PORTA_LOCK_MODE_EXCLUSIVE, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (porta_lock_get_mode (lock), ==, PORTA_LOCK_MODE_EXCLUSIVE);

  /* downgrade lets another process share it */
  g_assert_true (porta_lock_convert (lock, PORTA_LOCK_MODE_SHARED, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (porta_lock_get_mode (lock), ==, PORTA_LOCK_MODE_SHARED);
  g_assert_cmpuint (mode_notifies, ==, 2);
  g_assert_cmpint (fcntl_try (fx->path, kind, TRUE), ==, 0);
  g_assert_cmpint (fcntl_try (fx->path, kind, FALSE), ==, 1);

  /* another process shares it: upgrading fails, and changes nothing */
  other = holder_fcntl (fx->path, "posix", TRUE);

  g_assert_false (porta_lock_convert (lock, PORTA_LOCK_MODE_EXCLUSIVE, 0, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_assert_nonnull (strstr (error->message, fx->path));
  g_clear_error (&error);
  g_assert_true (porta_lock_get_held (lock));
  g_assert_cmpint (porta_lock_get_mode (lock), ==, PORTA_LOCK_MODE_SHARED);

  start = g_get_monotonic_time ();
  g_assert_false (porta_lock_convert (lock, PORTA_LOCK_MODE_EXCLUSIVE, 100, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_assert_cmpint (elapsed_ms (start), >=, 95);
  g_assert_cmpint (elapsed_ms (start), <, scale_ms (10000));
  g_clear_error (&error);
  g_assert_true (porta_lock_get_held (lock));
  g_assert_cmpint (porta_lock_get_mode (lock), ==, PORTA_LOCK_MODE_SHARED);
  g_assert_cmpuint (mode_notifies, ==, 2);

  /* still held shared: others may share, nobody may take it exclusively */
  g_assert_cmpint (fcntl_try (fx->path, kind, TRUE), ==, 0);
  g_assert_cmpint (fcntl_try (fx->path, kind, FALSE), ==, 1);

  /* the upgrade waits until the other shared holder goes */
  thread = g_thread_new ("release-later", holder_release_later_thread, other);
  g_assert_true (porta_lock_convert (lock, PORTA_LOCK_MODE_EXCLUSIVE, (int) scale_ms (30000),
                                     NULL, &error));
  g_assert_no_error (error);
  g_thread_join (thread);
  g_assert_cmpint (porta_lock_get_mode (lock), ==, PORTA_LOCK_MODE_EXCLUSIVE);
  g_assert_cmpuint (mode_notifies, ==, 3);
  g_assert_cmpint (fcntl_try (fx->path, kind, TRUE), ==, 1);

  /* and downgrading it lets another process in again */
  g_assert_true (porta_lock_convert (lock, PORTA_LOCK_MODE_SHARED, -1, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (mode_notifies, ==, 4);
  g_assert_cmpint (fcntl_try (fx->path, kind, TRUE), ==, 0);

  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
  g_assert_cmpint (fcntl_try (fx->path, kind, FALSE), ==, 0);
}

static gboolean
release_holder_idle (gpointer data)
{
  holder_release (data);
  return G_SOURCE_REMOVE;
}

static void
test_convert_fcntl_async (Fixture       *fx,
                          gconstpointer  data)
{
  PortaBackend backend = GPOINTER_TO_INT (data);
  const char *kind = backend_kind (backend);
  g_autoptr(PortaLock) lock = NULL;
  g_autoptr(GError) error = NULL;
  AsyncResultData r = { 0 };
  Holder *other;
  guint mode_notifies = 0;
  gint64 start;

  if (!have_tools ())
    return;

  lock = new_lock (fx->path, PORTA_LOCK_MODE_SHARED, backend, PORTA_LOCK_FLAGS_NONE);
  g_signal_connect (lock, "notify::mode", G_CALLBACK (count_notify), &mode_notifies);

  /* not held */
  porta_lock_convert_async (lock, PORTA_LOCK_MODE_EXCLUSIVE, 0, G_PRIORITY_DEFAULT, NULL,
                            on_converted, &r);
  wait_async (&r);
  g_assert_false (r.ok);
  g_assert_error (r.error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_HELD);
  async_result_clear (&r);

  g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_no_error (error);
  other = holder_fcntl (fx->path, "posix", TRUE);

  porta_lock_convert_async (lock, PORTA_LOCK_MODE_EXCLUSIVE, 0, G_PRIORITY_DEFAULT, NULL,
                            on_converted, &r);
  wait_async (&r);
  g_assert_false (r.ok);
  g_assert_error (r.error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  async_result_clear (&r);
  g_assert_cmpint (porta_lock_get_mode (lock), ==, PORTA_LOCK_MODE_SHARED);

  start = g_get_monotonic_time ();
  porta_lock_convert_async (lock, PORTA_LOCK_MODE_EXCLUSIVE, 100, G_PRIORITY_DEFAULT, NULL,
                            on_converted, &r);
  wait_async (&r);
  g_assert_false (r.ok);
  g_assert_error (r.error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  async_result_clear (&r);
  g_assert_cmpint (elapsed_ms (start), >=, 95);
  g_assert_true (porta_lock_get_held (lock));
  g_assert_cmpint (porta_lock_get_mode (lock), ==, PORTA_LOCK_MODE_SHARED);
  g_assert_cmpuint (mode_notifies, ==, 0);
  g_assert_cmpint (fcntl_try (fx->path, kind, TRUE), ==, 0);
  g_assert_cmpint (fcntl_try (fx->path, kind, FALSE), ==, 1);

  /* the main loop runs while the upgrade waits; the other process lets go
   * from an idle callback on it */
  porta_lock_convert_async (lock, PORTA_LOCK_MODE_EXCLUSIVE, (int) scale_ms (30000),
                            G_PRIORITY_DEFAULT, NULL, on_converted, &r);
  g_idle_add (release_holder_idle, other);
  wait_async (&r);
  g_assert_no_error (r.error);
  g_assert_true (r.ok);
  async_result_clear (&r);
  g_assert_cmpint (porta_lock_get_mode (lock), ==, PORTA_LOCK_MODE_EXCLUSIVE);
  g_assert_cmpuint (mode_notifies, ==, 1);
  g_assert_cmpint (fcntl_try (fx->path, kind, TRUE), ==, 1);

  porta_lock_convert_async (lock, PORTA_LOCK_MODE_SHARED, 0, G_PRIORITY_DEFAULT, NULL,
                            on_converted, &r);
  wait_async (&r);
  g_assert_no_error (r.error);
  g_assert_true (r.ok);
  async_result_clear (&r);
  g_assert_cmpint (porta_lock_get_mode (lock), ==, PORTA_LOCK_MODE_SHARED);
  g_assert_cmpuint (mode_notifies, ==, 2);
  g_assert_cmpint (fcntl_try (fx->path, kind, TRUE), ==, 0);
  g_assert_cmpint (fcntl_try (fx->path, kind, FALSE), ==, 1);

  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
}

/* Releasing the lock while an upgrade waits: whatever the library does
 * (refuse the release, or fail the conversion), it must not report a
 * conversion that succeeded on a lock it no longer holds. */
static void
test_convert_release_while_pending (Fixture       *fx,
                                    gconstpointer  data)
{
  g_autoptr(PortaLock) lock = NULL;
  g_autoptr(GError) error = NULL;
  AsyncResultData r = { 0 };
  Holder *other;
  struct stat st;
  gboolean released;

  if (!have_tools ())
    return;

  lock = new_lock (fx->path, PORTA_LOCK_MODE_SHARED, PORTA_BACKEND_OFD, PORTA_LOCK_FLAGS_NONE);
  g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (stat (fx->path, &st), ==, 0);
  other = holder_fcntl (fx->path, "ofd", TRUE);

  porta_lock_convert_async (lock, PORTA_LOCK_MODE_EXCLUSIVE, -1, G_PRIORITY_DEFAULT, NULL,
                            on_converted, &r);
  wait_for_waiter (&st);
  g_assert_false (r.done);

  released = porta_lock_release (lock, &error);
  if (!released)
    {
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_PENDING);
      g_clear_error (&error);
      g_assert_true (porta_lock_get_held (lock));
    }
  else
    g_assert_false (porta_lock_get_held (lock));

  holder_release (other);
  wait_async (&r);
  /* Reported with g_test_fail_printf() so that the other tests still run. */
  if (r.ok && !porta_lock_get_held (lock))
    g_test_fail_printf ("porta_lock_release() during a pending porta_lock_convert_async() "
                        "returned %s, then the conversion reported success (mode %s) "
                        "on a lock that is not held",
                        released ? "TRUE" : "FALSE",
                        porta_lock_get_mode (lock) == PORTA_LOCK_MODE_EXCLUSIVE ? "exclusive" : "shared");
  else if (r.ok)
    {
      g_assert_no_error (r.error);
      g_assert_cmpint (porta_lock_get_mode (lock), ==, PORTA_LOCK_MODE_EXCLUSIVE);
    }
  else
    {
      g_assert_nonnull (r.error);
      g_assert_cmpint (porta_lock_get_mode (lock), ==, PORTA_LOCK_MODE_SHARED);
    }
  async_result_clear (&r);

  if (porta_lock_get_held (lock))
    {
      g_assert_true (porta_lock_release (lock, &error));
      g_assert_no_error (error);
    }
  /* nothing of it lingers */
  g_assert_cmpint (fcntl_try (fx->path, "ofd", FALSE), ==, 0);
}

static void
test_convert_flock (Fixture       *fx,
                    gconstpointer  data)
{
  g_autoptr(PortaLock) ex = NULL;
  g_autoptr(PortaLock) sh = NULL;
  g_autoptr(GError) error = NULL;
  AsyncResultData r = { 0 };
  guint mode_notifies = 0;

  if (!have_tools ())
    return;

  ex = new_lock (fx->path, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_FLOCK, PORTA_LOCK_FLAGS_NONE);
  g_signal_connect (ex, "notify::mode", G_CALLBACK (count_notify), &mode_notifies);
  g_assert_true (porta_lock_acquire (ex, 0, NULL, &error));
  g_assert_no_error (error);

  g_assert_false (porta_lock_convert (ex, PORTA_LOCK_MODE_SHARED, 0, NULL, &error));
  g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_ATOMIC);
  g_assert_nonnull (strstr (error->message, fx->path));
  g_clear_error (&error);
  g_assert_true (porta_lock_get_held (ex));
  g_assert_cmpint (porta_lock_get_mode (ex), ==, PORTA_LOCK_MODE_EXCLUSIVE);
  /* still exclusive: not even a shared lock gets in */
  g_assert_cmpint (flock_try (fx->path, TRUE), ==, 1);

  porta_lock_convert_async (ex, PORTA_LOCK_MODE_SHARED, -1, G_PRIORITY_DEFAULT, NULL,
                            on_converted, &r);
  wait_async (&r);
  g_assert_false (r.ok);
  g_assert_error (r.error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_ATOMIC);
  async_result_clear (&r);
  g_assert_cmpint (porta_lock_get_mode (ex), ==, PORTA_LOCK_MODE_EXCLUSIVE);
  g_assert_cmpint (flock_try (fx->path, TRUE), ==, 1);
  g_assert_cmpuint (mode_notifies, ==, 0);
  g_assert_true (porta_lock_release (ex, &error));
  g_assert_no_error (error);

  sh = new_lock (fx->path, PORTA_LOCK_MODE_SHARED, PORTA_BACKEND_FLOCK, PORTA_LOCK_FLAGS_NONE);
  g_signal_connect (sh, "notify::mode", G_CALLBACK (count_notify), &mode_notifies);
  g_assert_true (porta_lock_acquire (sh, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_false (porta_lock_convert (sh, PORTA_LOCK_MODE_EXCLUSIVE, 100, NULL, &error));
  g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_ATOMIC);
  g_clear_error (&error);
  g_assert_true (porta_lock_get_held (sh));
  g_assert_cmpint (porta_lock_get_mode (sh), ==, PORTA_LOCK_MODE_SHARED);
  /* still shared: another shared lock gets in, an exclusive one does not */
  g_assert_cmpint (flock_try (fx->path, TRUE), ==, 0);
  g_assert_cmpint (flock_try (fx->path, FALSE), ==, 1);
  g_assert_cmpuint (mode_notifies, ==, 0);
  g_assert_true (porta_lock_release (sh, &error));
  g_assert_no_error (error);
  g_assert_cmpint (flock_try (fx->path, FALSE), ==, 0);
}

static void
test_convert_not_held (Fixture       *fx,
                       gconstpointer  data)
{
  PortaBackend backends[] = { PORTA_BACKEND_FLOCK, PORTA_BACKEND_OFD, PORTA_BACKEND_POSIX };

  for (guint i = 0; i < G_N_ELEMENTS (backends); i++)
    {
      g_autoptr(PortaLock) lock = new_lock (fx->path, PORTA_LOCK_MODE_SHARED, backends[i],
                                            PORTA_LOCK_FLAGS_NONE);
      g_autoptr(GError) error = NULL;
      AsyncResultData r = { 0 };

      g_assert_false (porta_lock_convert (lock, PORTA_LOCK_MODE_EXCLUSIVE, 0, NULL, &error));
      g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_HELD);
      g_clear_error (&error);
      g_assert_false (porta_lock_convert (lock, PORTA_LOCK_MODE_SHARED, -1, NULL, &error));
      g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_HELD);
      g_clear_error (&error);

      porta_lock_convert_async (lock, PORTA_LOCK_MODE_EXCLUSIVE, -1, G_PRIORITY_DEFAULT, NULL,
                                on_converted, &r);
      wait_async (&r);
      g_assert_false (r.ok);
      g_assert_error (r.error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_HELD);
      async_result_clear (&r);

      g_assert_false (porta_lock_get_held (lock));
      g_assert_cmpint (porta_lock_get_mode (lock), ==, PORTA_LOCK_MODE_SHARED);
    }
}

/* ---- holder queries --------------------------------------------------- */

static void
test_holder_flock (Fixture       *fx,
                   gconstpointer  data)
{
  g_autoptr(PortaLock) lock = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *command = NULL;
  g_autofree char *process = NULL;
  Holder *other;
  int pid = -1;

  if (!have_tools ())
    return;

  lock = new_lock (fx->path, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_FLOCK, PORTA_LOCK_FLAGS_NONE);
  other = holder_flock (fx->path);

  g_assert_true (porta_lock_query_holder (lock, &pid, &command, &error));
  g_assert_no_error (error);
  /* the flock(1) process took it; its sh child shares the description */
  if (pid != other->pid)
    g_assert_cmpint (ppid_of (pid), ==, other->pid);
  g_assert_nonnull (command);
  if (!g_str_equal (command, "flock"))
    g_assert_cmpstr (command, ==, "sh");
  process = g_strdup_printf ("process %d", pid);

  g_assert_false (porta_lock_try_acquire (lock, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_assert_nonnull (strstr (error->message, process));
  g_assert_nonnull (strstr (error->message, fx->path));
  g_clear_error (&error);

  /* A wait looks its holder up once it has lasted 100 ms (reading
   * /proc/locks is too slow to do for every wait), so a longer timeout
   * names the holder... */
  g_assert_false (porta_lock_acquire (lock, 400, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_assert_nonnull (strstr (error->message, process));
  g_assert_nonnull (strstr (error->message, fx->path));
  g_clear_error (&error);

  /* ...and a short one still names the file. */
  g_assert_false (porta_lock_acquire (lock, 20, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_assert_nonnull (strstr (error->message, fx->path));
  g_clear_error (&error);

  /* a fcntl() lock does not see it */
  {
    g_autoptr(PortaLock) ofd = new_lock (fx->path, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_OFD,
                                         PORTA_LOCK_FLAGS_NONE);
    int ofd_pid = -1;

    g_assert_false (porta_lock_query_holder (ofd, &ofd_pid, NULL, &error));
    g_assert_no_error (error);
    g_assert_cmpint (ofd_pid, ==, 0);
  }

  holder_release (other);

  g_clear_pointer (&command, g_free);
  pid = -1;
  g_assert_false (porta_lock_query_holder (lock, &pid, &command, &error));
  g_assert_no_error (error);
  g_assert_cmpint (pid, ==, 0);
  g_assert_null (command);

  /* this PortaLock itself counts as a holder */
  g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (porta_lock_query_holder (lock, &pid, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (pid, ==, getpid ());
  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
}

typedef struct
{
  PortaBackend backend;
  gboolean     shared;
} HolderCase;

static const HolderCase holder_ofd_ex = { PORTA_BACKEND_OFD, FALSE };
static const HolderCase holder_ofd_sh = { PORTA_BACKEND_OFD, TRUE };
static const HolderCase holder_posix_ex = { PORTA_BACKEND_POSIX, FALSE };

/* Another process holds a fcntl() lock: POSIX ones name their process in
 * /proc/locks, OFD ones are found among the descriptors of processes. */
static void
test_holder_fcntl (Fixture       *fx,
                   gconstpointer  data)
{
  const HolderCase *hc = data;
  gboolean shared = hc->shared;
  g_autoptr(PortaLock) lock = NULL;
  g_autoptr(PortaLock) flock_lock = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *command = NULL;
  Holder *other;
  int pid = -1;

  if (!have_tools ())
    return;

  lock = new_lock (fx->path, PORTA_LOCK_MODE_EXCLUSIVE, hc->backend, PORTA_LOCK_FLAGS_NONE);
  flock_lock = new_lock (fx->path, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_FLOCK,
                         PORTA_LOCK_FLAGS_NONE);
  other = holder_fcntl (fx->path, backend_kind (hc->backend), shared);

  g_assert_true (porta_lock_query_holder (lock, &pid, &command, &error));
  g_assert_no_error (error);
  g_assert_cmpint (pid, ==, other->pid);
  g_assert_cmpstr (command, ==, "python3");

  /* flock(2) locks do not see fcntl() ones */
  g_clear_pointer (&command, g_free);
  g_assert_false (porta_lock_query_holder (flock_lock, &pid, &command, &error));
  g_assert_no_error (error);
  g_assert_cmpint (pid, ==, 0);
  g_assert_null (command);

  g_assert_false (porta_lock_try_acquire (lock, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_clear_error (&error);

  holder_release (other);

  pid = -1;
  g_assert_false (porta_lock_query_holder (lock, &pid, &command, &error));
  g_assert_no_error (error);
  g_assert_cmpint (pid, ==, 0);
  g_assert_null (command);
}

static void
test_holder_missing (Fixture       *fx,
                     gconstpointer  data)
{
  PortaBackend backends[] = { PORTA_BACKEND_FLOCK, PORTA_BACKEND_OFD, PORTA_BACKEND_POSIX };
  g_autofree char *missing_dir = g_build_filename (fx->dir, "no-such-folder", "lock", NULL);

  for (guint i = 0; i < G_N_ELEMENTS (backends); i++)
    {
      g_autoptr(PortaLock) lock = new_lock (fx->path, PORTA_LOCK_MODE_EXCLUSIVE, backends[i],
                                            PORTA_LOCK_FLAGS_NONE);
      g_autoptr(PortaLock) deep = new_lock (missing_dir, PORTA_LOCK_MODE_SHARED, backends[i],
                                            PORTA_LOCK_FLAGS_NONE);
      g_autoptr(GError) error = NULL;
      char *command = (char *) "unset";
      int pid = -1;

      g_assert_false (porta_lock_query_holder (lock, &pid, &command, &error));
      g_assert_no_error (error);
      g_assert_cmpint (pid, ==, 0);
      g_assert_null (command);
      g_assert_false (g_file_test (fx->path, G_FILE_TEST_EXISTS));

      g_assert_false (porta_lock_query_holder (deep, NULL, NULL, &error));
      g_assert_no_error (error);
      g_assert_false (porta_lock_get_held (lock));
    }

  /* an existing file that nobody locks */
  g_assert_true (g_file_set_contents (fx->path, "", 0, NULL));
  for (guint i = 0; i < G_N_ELEMENTS (backends); i++)
    {
      g_autoptr(PortaLock) lock = new_lock (fx->path, PORTA_LOCK_MODE_EXCLUSIVE, backends[i],
                                            PORTA_LOCK_FLAGS_NONE);
      g_autoptr(GError) error = NULL;
      int pid = -1;

      g_assert_false (porta_lock_query_holder (lock, &pid, NULL, &error));
      g_assert_no_error (error);
      g_assert_cmpint (pid, ==, 0);
    }
}

/* A query neither opens nor locks the file, so it never drops the POSIX
 * locks of this process. */
static void
test_holder_posix_self (Fixture       *fx,
                        gconstpointer  data)
{
  g_autoptr(PortaLock) lock = NULL;
  g_autoptr(PortaLock) other = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *command = NULL;
  int pid = -1;

  if (!have_tools ())
    return;

  lock = new_lock (fx->path, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_POSIX, PORTA_LOCK_FLAGS_NONE);
  other = new_lock (fx->path, PORTA_LOCK_MODE_SHARED, PORTA_BACKEND_POSIX, PORTA_LOCK_FLAGS_NONE);
  g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_no_error (error);

  for (guint i = 0; i < 3; i++)
    {
      g_clear_pointer (&command, g_free);
      g_assert_true (porta_lock_query_holder (other, &pid, &command, &error));
      g_assert_no_error (error);
      g_assert_cmpint (pid, ==, getpid ());
      g_assert_nonnull (command);
      g_assert_true (porta_lock_query_holder (lock, &pid, NULL, &error));
      g_assert_no_error (error);
    }
  g_assert_cmpint (fcntl_try (fx->path, "posix", TRUE), ==, 1);

  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
  g_assert_false (porta_lock_query_holder (other, &pid, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (pid, ==, 0);
}

/* ---- descriptors and streams ------------------------------------------ */

typedef struct
{
  GCancellable *cancellable;
  guint         delay_ms;
} CancelLater;

static gpointer
cancel_later_thread (gpointer data)
{
  CancelLater *cl = data;

  g_usleep (cl->delay_ms * 1000);
  g_cancellable_cancel (cl->cancellable);
  return NULL;
}

static void
test_fd_flock (Fixture       *fx,
               gconstpointer  data)
{
  g_autoptr(PortaLock) same_process = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  CancelLater cl = { cancellable, 100 };
  GThread *thread;
  gint64 start;
  int fd;

  if (!have_tools ())
    return;

  fd = open (fx->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  g_assert_cmpint (fd, >=, 0);
  same_process = new_lock (fx->path, PORTA_LOCK_MODE_SHARED, PORTA_BACKEND_FLOCK,
                           PORTA_LOCK_FLAGS_NONE);

  g_assert_true (porta_fd_lock (fd, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_FLOCK, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (flock_try (fx->path, TRUE), ==, 1);
  g_assert_false (porta_lock_try_acquire (same_process, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_clear_error (&error);

  g_assert_true (porta_fd_unlock (fd, PORTA_BACKEND_FLOCK, &error));
  g_assert_no_error (error);
  g_assert_cmpint (flock_try (fx->path, FALSE), ==, 0);
  /* unlocking again is no error */
  g_assert_true (porta_fd_unlock (fd, PORTA_BACKEND_FLOCK, &error));
  g_assert_no_error (error);

  /* shared: others may share */
  g_assert_true (porta_fd_lock (fd, PORTA_LOCK_MODE_SHARED, PORTA_BACKEND_DEFAULT, -1, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (flock_try (fx->path, TRUE), ==, 0);
  g_assert_cmpint (flock_try (fx->path, FALSE), ==, 1);
  g_assert_true (porta_lock_try_acquire (same_process, &error));
  g_assert_no_error (error);
  g_assert_true (porta_lock_release (same_process, &error));
  g_assert_no_error (error);
  g_assert_true (porta_fd_unlock (fd, PORTA_BACKEND_DEFAULT, &error));
  g_assert_no_error (error);

  /* busy: someone else holds it exclusively */
  g_clear_object (&same_process);
  same_process = new_lock (fx->path, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_FLOCK,
                           PORTA_LOCK_FLAGS_NONE);
  g_assert_true (porta_lock_acquire (same_process, 0, NULL, &error));
  g_assert_no_error (error);

  g_assert_false (porta_fd_lock (fd, PORTA_LOCK_MODE_SHARED, PORTA_BACKEND_FLOCK, 0, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_assert_nonnull (strstr (error->message, fx->path));
  g_clear_error (&error);

  start = g_get_monotonic_time ();
  g_assert_false (porta_fd_lock (fd, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_FLOCK, 100, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_assert_nonnull (strstr (error->message, fx->path));
  g_clear_error (&error);
  g_assert_cmpint (elapsed_ms (start), >=, 95);
  g_assert_cmpint (elapsed_ms (start), <, scale_ms (10000));

  thread = g_thread_new ("cancel", cancel_later_thread, &cl);
  start = g_get_monotonic_time ();
  g_assert_false (porta_fd_lock (fd, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_FLOCK, -1,
                                 cancellable, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_nonnull (strstr (error->message, fx->path));
  g_clear_error (&error);
  g_thread_join (thread);
  g_assert_cmpint (elapsed_ms (start), <, scale_ms (10000));

  /* none of those attempts got it or keeps it from the holder's release */
  g_assert_true (porta_lock_release (same_process, &error));
  g_assert_no_error (error);
  g_assert_cmpint (flock_try (fx->path, FALSE), ==, 0);

  g_assert_cmpint (close (fd), ==, 0);
}

static gboolean
cancel_idle (gpointer data)
{
  g_cancellable_cancel (data);
  return G_SOURCE_REMOVE;
}

static void
test_fd_async (Fixture       *fx,
               gconstpointer  data)
{
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;
  AsyncResultData r = { 0 };
  Holder *other;
  int fd;

  if (!have_tools ())
    return;

  fd = open (fx->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  g_assert_cmpint (fd, >=, 0);

  /* free: at once */
  porta_fd_lock_async (fd, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_FLOCK, 0, G_PRIORITY_DEFAULT,
                       NULL, on_fd_locked, &r);
  wait_async (&r);
  g_assert_no_error (r.error);
  g_assert_true (r.ok);
  async_result_clear (&r);
  g_assert_cmpint (flock_try (fx->path, TRUE), ==, 1);
  g_assert_true (porta_fd_unlock (fd, PORTA_BACKEND_FLOCK, &error));
  g_assert_no_error (error);

  /* taken by another process: try once fails, a wait ends when it lets go */
  other = holder_flock (fx->path);
  porta_fd_lock_async (fd, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_FLOCK, 0, G_PRIORITY_DEFAULT,
                       NULL, on_fd_locked, &r);
  wait_async (&r);
  g_assert_false (r.ok);
  g_assert_error (r.error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  async_result_clear (&r);

  porta_fd_lock_async (fd, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_FLOCK, 100, G_PRIORITY_DEFAULT,
                       NULL, on_fd_locked, &r);
  wait_async (&r);
  g_assert_false (r.ok);
  g_assert_error (r.error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  async_result_clear (&r);

  porta_fd_lock_async (fd, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_FLOCK, -1, G_PRIORITY_DEFAULT,
                       cancellable, on_fd_locked, &r);
  g_idle_add (cancel_idle, cancellable);
  wait_async (&r);
  g_assert_false (r.ok);
  g_assert_error (r.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  async_result_clear (&r);

  porta_fd_lock_async (fd, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_FLOCK, -1, G_PRIORITY_DEFAULT,
                       NULL, on_fd_locked, &r);
  g_idle_add (release_holder_idle, other);
  wait_async (&r);
  g_assert_no_error (r.error);
  g_assert_true (r.ok);
  async_result_clear (&r);
  g_assert_cmpint (flock_try (fx->path, TRUE), ==, 1);

  g_assert_true (porta_fd_unlock (fd, PORTA_BACKEND_FLOCK, &error));
  g_assert_no_error (error);
  g_assert_cmpint (flock_try (fx->path, FALSE), ==, 0);
  g_assert_cmpint (close (fd), ==, 0);
}

static void
test_fd_fcntl (Fixture       *fx,
               gconstpointer  data)
{
  PortaBackend backend = GPOINTER_TO_INT (data);
  const char *kind = backend_kind (backend);
  g_autoptr(GError) error = NULL;
  Holder *other;
  int fd, rdonly;

  if (!have_tools ())
    return;

  fd = open (fx->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  g_assert_cmpint (fd, >=, 0);

  g_assert_true (porta_fd_lock (fd, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (fcntl_try (fx->path, kind, TRUE), ==, 1);
  /* a flock(2) lock does not see it */
  g_assert_cmpint (flock_try (fx->path, FALSE), ==, 0);

  /* locking it again converts it */
  g_assert_true (porta_fd_lock (fd, PORTA_LOCK_MODE_SHARED, backend, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (fcntl_try (fx->path, kind, TRUE), ==, 0);
  g_assert_cmpint (fcntl_try (fx->path, kind, FALSE), ==, 1);

  g_assert_true (porta_fd_unlock (fd, backend, &error));
  g_assert_no_error (error);
  g_assert_cmpint (fcntl_try (fx->path, kind, FALSE), ==, 0);

  /* busy */
  other = holder_fcntl (fx->path, kind, TRUE);
  g_assert_false (porta_fd_lock (fd, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_assert_nonnull (strstr (error->message, fx->path));
  g_clear_error (&error);
  g_assert_false (porta_fd_lock (fd, PORTA_LOCK_MODE_EXCLUSIVE, backend, 100, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_clear_error (&error);
  g_assert_true (porta_fd_lock (fd, PORTA_LOCK_MODE_SHARED, backend, 0, NULL, &error));
  g_assert_no_error (error);
  holder_release (other);
  g_assert_true (porta_fd_unlock (fd, backend, &error));
  g_assert_no_error (error);

  g_assert_cmpint (close (fd), ==, 0);

  /* exclusive fcntl() locks need a descriptor open for writing */
  rdonly = open (fx->path, O_RDONLY | O_CLOEXEC);
  g_assert_cmpint (rdonly, >=, 0);
  g_assert_false (porta_fd_lock (rdonly, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
  g_assert_nonnull (strstr (error->message, fx->path));
  g_clear_error (&error);
  g_assert_true (porta_fd_lock (rdonly, PORTA_LOCK_MODE_SHARED, backend, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (fcntl_try (fx->path, kind, FALSE), ==, 1);
  g_assert_true (porta_fd_unlock (rdonly, backend, &error));
  g_assert_no_error (error);
  g_assert_cmpint (close (rdonly), ==, 0);
}

static void
test_stream (Fixture       *fx,
             gconstpointer  data)
{
  g_autoptr(GFile) file = g_file_new_for_path (fx->path);
  g_autoptr(GFileOutputStream) out = NULL;
  g_autoptr(GFileOutputStream) second = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *contents = NULL;
  const char record[] = "record 1\n";
  gsize written = 0;

  if (!have_tools ())
    return;

  out = g_file_append_to (file, G_FILE_CREATE_NONE, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (G_IS_FILE_DESCRIPTOR_BASED (out));

  g_assert_true (porta_stream_lock (G_FILE_DESCRIPTOR_BASED (out), PORTA_LOCK_MODE_EXCLUSIVE,
                                    PORTA_BACKEND_DEFAULT, (int) scale_ms (5000), NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (flock_try (fx->path, TRUE), ==, 1);

  /* a second appender waits its turn */
  second = g_file_append_to (file, G_FILE_CREATE_NONE, NULL, &error);
  g_assert_no_error (error);
  g_assert_false (porta_stream_lock (G_FILE_DESCRIPTOR_BASED (second), PORTA_LOCK_MODE_EXCLUSIVE,
                                     PORTA_BACKEND_FLOCK, 0, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_assert_nonnull (strstr (error->message, fx->path));
  g_clear_error (&error);

  g_assert_true (g_output_stream_write_all (G_OUTPUT_STREAM (out), record, strlen (record),
                                            &written, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (written, ==, strlen (record));
  g_assert_true (g_output_stream_flush (G_OUTPUT_STREAM (out), NULL, &error));
  g_assert_no_error (error);

  g_assert_true (porta_stream_unlock (G_FILE_DESCRIPTOR_BASED (out), PORTA_BACKEND_DEFAULT, &error));
  g_assert_no_error (error);
  g_assert_cmpint (flock_try (fx->path, FALSE), ==, 0);

  g_assert_true (porta_stream_lock (G_FILE_DESCRIPTOR_BASED (second), PORTA_LOCK_MODE_EXCLUSIVE,
                                    PORTA_BACKEND_FLOCK, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_output_stream_write_all (G_OUTPUT_STREAM (second), "record 2\n", 9,
                                            &written, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (porta_stream_unlock (G_FILE_DESCRIPTOR_BASED (second), PORTA_BACKEND_FLOCK, &error));
  g_assert_no_error (error);

  g_assert_true (g_output_stream_close (G_OUTPUT_STREAM (out), NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_output_stream_close (G_OUTPUT_STREAM (second), NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_get_contents (fx->path, &contents, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (contents, ==, "record 1\nrecord 2\n");
}

/* ---- unlocking without repeating the backend (1.2) -------------------- */

static void
test_fd_unlock_any (Fixture       *fx,
                    gconstpointer  data)
{
  PortaBackend backend = GPOINTER_TO_INT (data);
  const char *kind = backend_kind (backend);
  g_autoptr(GError) error = NULL;
  int fd;

  if (!have_tools ())
    return;

  fd = open (fx->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  g_assert_cmpint (fd, >=, 0);

  g_assert_true (porta_fd_lock (fd, PORTA_LOCK_MODE_EXCLUSIVE, backend, 0, NULL, &error));
  g_assert_no_error (error);
  if (backend == PORTA_BACKEND_FLOCK)
    g_assert_cmpint (flock_try (fx->path, TRUE), ==, 1);
  else
    g_assert_cmpint (fcntl_try (fx->path, kind, TRUE), ==, 1);

  g_assert_true (porta_fd_unlock_any (fd, &error));
  g_assert_no_error (error);
  if (backend == PORTA_BACKEND_FLOCK)
    g_assert_cmpint (flock_try (fx->path, FALSE), ==, 0);
  else
    g_assert_cmpint (fcntl_try (fx->path, kind, FALSE), ==, 0);

  /* nothing held: no error */
  g_assert_true (porta_fd_unlock_any (fd, &error));
  g_assert_no_error (error);

  /* a shared lock too */
  g_assert_true (porta_fd_lock (fd, PORTA_LOCK_MODE_SHARED, backend, -1, NULL, &error));
  g_assert_no_error (error);
  if (backend == PORTA_BACKEND_FLOCK)
    g_assert_cmpint (flock_try (fx->path, FALSE), ==, 1);
  else
    g_assert_cmpint (fcntl_try (fx->path, kind, FALSE), ==, 1);
  g_assert_true (porta_fd_unlock_any (fd, &error));
  g_assert_no_error (error);
  if (backend == PORTA_BACKEND_FLOCK)
    g_assert_cmpint (flock_try (fx->path, FALSE), ==, 0);
  else
    g_assert_cmpint (fcntl_try (fx->path, kind, FALSE), ==, 0);

  g_assert_cmpint (close (fd), ==, 0);
}

static void
test_fd_unlock_any_async (Fixture       *fx,
                          gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  AsyncResultData r = { 0 };
  int fd;

  if (!have_tools ())
    return;

  fd = open (fx->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  g_assert_cmpint (fd, >=, 0);
  porta_fd_lock_async (fd, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_POSIX, 0, G_PRIORITY_DEFAULT,
                       NULL, on_fd_locked, &r);
  wait_async (&r);
  g_assert_no_error (r.error);
  g_assert_true (r.ok);
  async_result_clear (&r);
  g_assert_cmpint (fcntl_try (fx->path, "posix", TRUE), ==, 1);
  g_assert_true (porta_fd_unlock_any (fd, &error));
  g_assert_no_error (error);
  g_assert_cmpint (fcntl_try (fx->path, "posix", FALSE), ==, 0);
  g_assert_cmpint (close (fd), ==, 0);
}

/* A POSIX lock belongs to the process: porta_fd_unlock_any() must not drop
 * one that porta_fd_lock() did not take on that descriptor. */
static void
test_fd_unlock_any_foreign_posix (Fixture       *fx,
                                  gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  struct flock fl = { 0 };
  int fd, other;

  if (!have_tools ())
    return;

  fd = open (fx->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  g_assert_cmpint (fd, >=, 0);
  other = open (fx->path, O_RDWR | O_CLOEXEC);
  g_assert_cmpint (other, >=, 0);

  /* another part of the process holds a POSIX lock, through @other */
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  g_assert_cmpint (fcntl (other, F_SETLK, &fl), ==, 0);
  g_assert_cmpint (fcntl_try (fx->path, "posix", TRUE), ==, 1);

  /* unlocking @fd, locked with flock, leaves it alone */
  g_assert_true (porta_fd_lock (fd, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_FLOCK, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (porta_fd_unlock_any (fd, &error));
  g_assert_no_error (error);
  g_assert_cmpint (flock_try (fx->path, FALSE), ==, 0);
  g_assert_cmpint (fcntl_try (fx->path, "posix", TRUE), ==, 1);

  /* and so does unlocking @other, which porta_fd_lock() never locked */
  g_assert_true (porta_fd_unlock_any (other, &error));
  g_assert_no_error (error);
  g_assert_cmpint (fcntl_try (fx->path, "posix", TRUE), ==, 1);

  /* porta_fd_unlock() with the backend still releases it */
  g_assert_true (porta_fd_unlock (other, PORTA_BACKEND_POSIX, &error));
  g_assert_no_error (error);
  g_assert_cmpint (fcntl_try (fx->path, "posix", FALSE), ==, 0);

  /* a POSIX lock released with porta_fd_unlock() is forgotten: the lock
   * taken afterwards through @other is not dropped through @fd */
  g_assert_true (porta_fd_lock (fd, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_POSIX, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (porta_fd_unlock (fd, PORTA_BACKEND_POSIX, &error));
  g_assert_no_error (error);
  g_assert_cmpint (fcntl (other, F_SETLK, &fl), ==, 0);
  g_assert_true (porta_fd_unlock_any (fd, &error));
  g_assert_no_error (error);
  g_assert_cmpint (fcntl_try (fx->path, "posix", TRUE), ==, 1);

  g_assert_cmpint (close (other), ==, 0);
  g_assert_cmpint (close (fd), ==, 0);
}

static void
test_stream_unlock_any (Fixture       *fx,
                        gconstpointer  data)
{
  g_autoptr(GFile) file = g_file_new_for_path (fx->path);
  g_autoptr(GFileOutputStream) out = NULL;
  g_autoptr(GError) error = NULL;

  if (!have_tools ())
    return;

  out = g_file_append_to (file, G_FILE_CREATE_NONE, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (porta_stream_lock (G_FILE_DESCRIPTOR_BASED (out), PORTA_LOCK_MODE_EXCLUSIVE,
                                    PORTA_BACKEND_OFD, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (fcntl_try (fx->path, "ofd", TRUE), ==, 1);
  g_assert_true (porta_stream_unlock_any (G_FILE_DESCRIPTOR_BASED (out), &error));
  g_assert_no_error (error);
  g_assert_cmpint (fcntl_try (fx->path, "ofd", FALSE), ==, 0);
  g_assert_true (g_output_stream_close (G_OUTPUT_STREAM (out), NULL, &error));
  g_assert_no_error (error);
}

/* ---- constructors and queries that take a path (1.2) ------------------- */

static void
test_path_lock_new_full (Fixture       *fx,
                         gconstpointer  data)
{
  g_autoptr(PortaLock) lock = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *path = NULL;

  if (!have_tools ())
    return;

  lock = porta_lock_new_full_for_path (fx->path, PORTA_LOCK_MODE_SHARED, PORTA_BACKEND_OFD,
                                       PORTA_LOCK_FLAGS_DELETE_ON_RELEASE);
  path = g_file_get_path (porta_lock_get_file (lock));
  g_assert_cmpstr (path, ==, fx->path);
  g_assert_cmpint (porta_lock_get_mode (lock), ==, PORTA_LOCK_MODE_SHARED);
  g_assert_cmpint (porta_lock_get_backend (lock), ==, PORTA_BACKEND_OFD);
  g_assert_cmpint (porta_lock_get_flags (lock), ==, PORTA_LOCK_FLAGS_DELETE_ON_RELEASE);

  g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (fcntl_try (fx->path, "ofd", TRUE), ==, 0);
  g_assert_cmpint (fcntl_try (fx->path, "ofd", FALSE), ==, 1);
  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
}

static void
test_path_semaphore_new (Fixture       *fx,
                         gconstpointer  data)
{
  g_autoptr(PortaSemaphore) sem = NULL;
  g_autoptr(PortaSemaphore) runtime = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *folder = NULL;
  g_autofree char *slot = NULL;

  sem = porta_semaphore_new_for_path ("jobs", 2, fx->dir);
  g_assert_cmpstr (porta_semaphore_get_name (sem), ==, "jobs");
  g_assert_cmpuint (porta_semaphore_get_max_holders (sem), ==, 2);
  folder = g_file_get_path (porta_semaphore_get_directory (sem));
  g_assert_cmpstr (folder, ==, fx->dir);

  g_assert_true (porta_semaphore_acquire (sem, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (porta_semaphore_get_slot (sem), >=, 0);
  /* its slot files are in that folder */
  slot = g_strdup_printf ("%s/jobs.%d.lock", fx->dir, porta_semaphore_get_slot (sem));
  g_assert_true (g_file_test (slot, G_FILE_TEST_IS_REGULAR));
  g_assert_true (porta_semaphore_release (sem, &error));
  g_assert_no_error (error);

  /* no folder: the user's runtime folder, as porta_semaphore_new() */
  runtime = porta_semaphore_new_for_path ("jobs", 1, NULL);
  g_clear_pointer (&folder, g_free);
  if (porta_semaphore_get_directory (runtime) != NULL)
    folder = g_file_get_path (porta_semaphore_get_directory (runtime));
  g_assert_cmpstr (folder, ==, g_get_user_runtime_dir ());
}

static void
test_path_pid_file_query (Fixture       *fx,
                          gconstpointer  data)
{
  g_autoptr(PortaPidFile) pid_file = porta_pid_file_new_for_path (fx->path);
  g_autoptr(GError) error = NULL;
  g_autofree char *command = NULL;
  guint64 start_time = 0;
  int pid = -1;

  /* missing: nobody */
  g_assert_false (porta_pid_file_query_holder_for_path (fx->path, &pid, NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (pid, ==, 0);

  g_assert_true (porta_pid_file_acquire (pid_file, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (porta_pid_file_query_holder_for_path (fx->path, &pid, &start_time, &command, &error));
  g_assert_no_error (error);
  g_assert_cmpint (pid, ==, getpid ());
  g_assert_cmpuint (start_time, >, 0);
  g_assert_nonnull (command);

  g_assert_true (porta_pid_file_release (pid_file, &error));
  g_assert_no_error (error);
  g_assert_false (porta_pid_file_query_holder_for_path (fx->path, &pid, NULL, NULL, &error));
  g_assert_no_error (error);
}

/* ---- PortaLockable ---------------------------------------------------- */

static void
test_lockable (Fixture       *fx,
               gconstpointer  data)
{
  g_autoptr(PortaLock) lock1 = NULL;
  g_autoptr(PortaLock) lock2 = NULL;
  PortaLockable *a, *b;
  g_autoptr(GError) error = NULL;
  AsyncResultData r = { 0 };
  guint held_notifies = 0;
  gboolean held = FALSE;
  gint64 start;

  if (!have_tools ())
    return;

  lock1 = new_lock (fx->path, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_FLOCK, PORTA_LOCK_FLAGS_NONE);
  lock2 = new_lock (fx->path, PORTA_LOCK_MODE_EXCLUSIVE, PORTA_BACKEND_FLOCK, PORTA_LOCK_FLAGS_NONE);
  g_assert_true (PORTA_IS_LOCKABLE (lock1));
  a = PORTA_LOCKABLE (lock1);
  b = PORTA_LOCKABLE (lock2);
  g_signal_connect (a, "notify::held", G_CALLBACK (count_notify), &held_notifies);

  g_assert_false (porta_lockable_get_held (a));
  g_assert_true (porta_lockable_try_acquire (a, &error));
  g_assert_no_error (error);
  g_assert_true (porta_lockable_get_held (a));
  g_object_get (a, "held", &held, NULL);
  g_assert_true (held);
  g_assert_cmpuint (held_notifies, ==, 1);
  g_assert_cmpint (flock_try (fx->path, TRUE), ==, 1);

  g_assert_false (porta_lockable_try_acquire (b, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_clear_error (&error);
  start = g_get_monotonic_time ();
  g_assert_false (porta_lockable_acquire (b, 100, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  g_clear_error (&error);
  g_assert_cmpint (elapsed_ms (start), >=, 95);
  g_assert_false (porta_lockable_get_held (b));
  g_assert_false (porta_lockable_acquire (a, 0, NULL, &error));
  g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_ALREADY_HELD);
  g_clear_error (&error);

  /* b waits asynchronously until a lets go */
  porta_lockable_acquire_async (b, (int) scale_ms (30000), G_PRIORITY_DEFAULT, NULL,
                                on_lockable_acquired, &r);
  g_assert_false (r.done);
  g_assert_true (porta_lockable_release (a, &error));
  g_assert_no_error (error);
  g_assert_false (porta_lockable_get_held (a));
  g_object_get (a, "held", &held, NULL);
  g_assert_false (held);
  g_assert_cmpuint (held_notifies, ==, 2);
  wait_async (&r);
  g_assert_no_error (r.error);
  g_assert_true (r.ok);
  async_result_clear (&r);
  g_assert_true (porta_lockable_get_held (b));
  g_assert_cmpint (flock_try (fx->path, TRUE), ==, 1);

  g_assert_true (porta_lockable_release (b, &error));
  g_assert_no_error (error);
  g_assert_false (porta_lockable_release (b, &error));
  g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_HELD);
  g_clear_error (&error);

  g_assert_true (porta_lockable_acquire (a, -1, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (held_notifies, ==, 3);
  g_assert_true (porta_lockable_release (a, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (held_notifies, ==, 4);
  g_assert_cmpint (flock_try (fx->path, FALSE), ==, 0);
}

/* ---- main ------------------------------------------------------------- */

/* valgrind 3.19 does not know that F_OFD_SETLKW blocks: a thread waiting
 * in it freezes the whole process, so no timeout, cancellation or release
 * from the same process can end the wait. Under the valgrind test setup
 * (which sets PORTA_TEST_VALGRIND), the OFD tests that wait say so and
 * skip; every other run has them. */
static void
skip_ofd_under_valgrind (Fixture       *fx,
                         gconstpointer  data)
{
  g_test_skip ("valgrind 3.19 freezes the process in F_OFD_SETLKW; run without valgrind");
}

static gboolean under_valgrind;

#define ADD(name, data, func) \
  g_test_add ("/features/" name, Fixture, data, fixture_setup, \
              (under_valgrind && strstr (name, "ofd") != NULL) ? skip_ofd_under_valgrind : func, \
              fixture_teardown)

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
  under_valgrind = g_getenv ("PORTA_TEST_VALGRIND") != NULL;

  ADD ("reentrant/nested", NULL, test_reentrant_nested);
  ADD ("reentrant/other-thread", NULL, test_reentrant_other_thread);
  ADD ("reentrant/without-flag", NULL, test_reentrant_without_flag);
  ADD ("reentrant/async", NULL, test_reentrant_async);
  ADD ("reentrant/dispose", NULL, test_reentrant_dispose);
  ADD ("reentrant/temporary", NULL, test_reentrant_temporary);

  ADD ("temporary/exclusive-deletes", NULL, test_temporary_exclusive);
  ADD ("temporary/shared-keeps", NULL, test_temporary_shared);
  ADD ("temporary/flock/waiter-thread-forever", &waiter_flock_forever, test_temporary_waiter_thread);
  ADD ("temporary/flock/waiter-thread-timeout", &waiter_flock_timeout, test_temporary_waiter_thread);
  ADD ("temporary/flock/waiter-async", &waiter_flock_timeout, test_temporary_waiter_async);
  ADD ("temporary/ofd/waiter-thread-forever", &waiter_ofd_forever, test_temporary_waiter_thread);
  ADD ("temporary/ofd/waiter-thread-timeout", &waiter_ofd_timeout, test_temporary_waiter_thread);
  ADD ("temporary/ofd/waiter-async", &waiter_ofd_forever, test_temporary_waiter_async);

  ADD ("convert/ofd", GINT_TO_POINTER (PORTA_BACKEND_OFD), test_convert_fcntl);
  ADD ("convert/posix", GINT_TO_POINTER (PORTA_BACKEND_POSIX), test_convert_fcntl);
  ADD ("convert/ofd-async", GINT_TO_POINTER (PORTA_BACKEND_OFD), test_convert_fcntl_async);
  ADD ("convert/posix-async", GINT_TO_POINTER (PORTA_BACKEND_POSIX), test_convert_fcntl_async);
  ADD ("convert/flock-not-atomic", NULL, test_convert_flock);
  ADD ("convert/not-held", NULL, test_convert_not_held);
  ADD ("convert/ofd-release-while-pending", NULL, test_convert_release_while_pending);

  ADD ("holder/flock", NULL, test_holder_flock);
  ADD ("holder/ofd-exclusive", &holder_ofd_ex, test_holder_fcntl);
  ADD ("holder/ofd-shared", &holder_ofd_sh, test_holder_fcntl);
  ADD ("holder/posix-exclusive", &holder_posix_ex, test_holder_fcntl);
  ADD ("holder/posix-self", NULL, test_holder_posix_self);
  ADD ("holder/missing", NULL, test_holder_missing);

  ADD ("fd/flock", NULL, test_fd_flock);
  ADD ("fd/async", NULL, test_fd_async);
  ADD ("fd/ofd", GINT_TO_POINTER (PORTA_BACKEND_OFD), test_fd_fcntl);
  ADD ("fd/posix", GINT_TO_POINTER (PORTA_BACKEND_POSIX), test_fd_fcntl);
  ADD ("stream", NULL, test_stream);
  ADD ("fd/unlock-any/flock", GINT_TO_POINTER (PORTA_BACKEND_FLOCK), test_fd_unlock_any);
  ADD ("fd/unlock-any/ofd", GINT_TO_POINTER (PORTA_BACKEND_OFD), test_fd_unlock_any);
  ADD ("fd/unlock-any/posix", GINT_TO_POINTER (PORTA_BACKEND_POSIX), test_fd_unlock_any);
  ADD ("fd/unlock-any/posix-async", NULL, test_fd_unlock_any_async);
  ADD ("fd/unlock-any/foreign-posix", NULL, test_fd_unlock_any_foreign_posix);
  ADD ("stream/unlock-any-ofd", NULL, test_stream_unlock_any);

  ADD ("path/lock-new-full", NULL, test_path_lock_new_full);
  ADD ("path/semaphore-new", NULL, test_path_semaphore_new);
  ADD ("path/pid-file-query-holder", NULL, test_path_pid_file_query);

  ADD ("lockable", NULL, test_lockable);

  return g_test_run ();
}
