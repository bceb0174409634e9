/* test-interop.c: PortaLock against other programs' locks on the same file
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The flock backend (the default) must see, and be seen by, util-linux
 * flock(1) and Python's portalocker and filelock, which all use flock(2).
 * The ofd and posix backends must see, and be seen by, fcntl(2) record
 * locks, here Python's fcntl.lockf().
 */

#include <string.h>

#include <portalock/portalock.h>

#include "porta-test-utils.h"

#define PYTHON "/usr/bin/python3"
#define SLACK_MS 2000

/* Each program holds until a line arrives on stdin: "locked" when it holds,
 * "released" when it let go. argv[1] is the file, argv[2] "shared" or
 * "exclusive". */
static const char portalocker_hold[] =
  "import sys, portalocker\n"
  "f = open(sys.argv[1], 'a')\n"
  "portalocker.lock(f, portalocker.LOCK_SH if sys.argv[2] == 'shared' else portalocker.LOCK_EX)\n"
  "print('locked', flush=True)\n"
  "sys.stdin.readline()\n"
  "portalocker.unlock(f)\n"
  "print('released', flush=True)\n";

/* Each program tries once: exit status 0 when it got the lock, 3 when the
 * lock is taken, anything else when it broke. */
static const char portalocker_try[] =
  "import sys, portalocker\n"
  "f = open(sys.argv[1], 'a')\n"
  "mode = portalocker.LOCK_SH if sys.argv[2] == 'shared' else portalocker.LOCK_EX\n"
  "try:\n"
  "    portalocker.lock(f, mode | portalocker.LOCK_NB)\n"
  "except portalocker.exceptions.LockException:\n"
  "    sys.exit(3)\n"
  "portalocker.unlock(f)\n";

static const char filelock_hold[] =
  "import sys, filelock\n"
  "lock = filelock.FileLock(sys.argv[1])\n"
  "lock.acquire()\n"
  "print('locked', flush=True)\n"
  "sys.stdin.readline()\n"
  "lock.release()\n"
  "print('released', flush=True)\n";

static const char filelock_try[] =
  "import sys, filelock\n"
  "lock = filelock.FileLock(sys.argv[1])\n"
  "try:\n"
  "    lock.acquire(blocking=False)\n"
  "except filelock.Timeout:\n"
  "    sys.exit(3)\n"
  "lock.release()\n";

static const char lockf_hold[] =
  "import sys, fcntl\n"
  "f = open(sys.argv[1], 'a+')\n"
  "fcntl.lockf(f, fcntl.LOCK_SH if sys.argv[2] == 'shared' else fcntl.LOCK_EX)\n"
  "print('locked', flush=True)\n"
  "sys.stdin.readline()\n"
  "fcntl.lockf(f, fcntl.LOCK_UN)\n"
  "print('released', flush=True)\n";

static const char lockf_try[] =
  "import sys, fcntl\n"
  "f = open(sys.argv[1], 'a+')\n"
  "mode = fcntl.LOCK_SH if sys.argv[2] == 'shared' else fcntl.LOCK_EX\n"
  "try:\n"
  "    fcntl.lockf(f, mode | fcntl.LOCK_NB)\n"
  "except OSError:\n"
  "    sys.exit(3)\n"
  "fcntl.lockf(f, fcntl.LOCK_UN)\n";

#define PY_GOT_IT 0
#define PY_TAKEN 3

typedef struct
{
  const char   *module;
  const char   *package;
  const char   *hold;
  const char   *try_once;
  gboolean      shared;
  PortaBackend  backend;
} PythonLocker;

static const PythonLocker portalocker_locker = {
  "portalocker", "python3-portalocker", portalocker_hold, portalocker_try, TRUE, PORTA_BACKEND_DEFAULT
};
static const PythonLocker filelock_locker = {
  "filelock", "python3-filelock", filelock_hold, filelock_try, FALSE, PORTA_BACKEND_DEFAULT
};
static const PythonLocker lockf_ofd_locker = {
  "fcntl", "python3", lockf_hold, lockf_try, TRUE, PORTA_BACKEND_OFD
};
static const PythonLocker lockf_posix_locker = {
  "fcntl", "python3", lockf_hold, lockf_try, TRUE, PORTA_BACKEND_POSIX
};

/* ---------------------------------------------------------------------- */

static PortaLock *
new_lock (const char    *path,
          PortaLockMode  mode,
          PortaBackend   backend)
{
  g_autoptr(GFile) file = g_file_new_for_path (path);

  if (backend == PORTA_BACKEND_DEFAULT)
    {
      PortaLock *lock = porta_lock_new (file, mode);

      g_assert_cmpint (porta_lock_get_backend (lock), ==, PORTA_BACKEND_FLOCK);
      return lock;
    }

  return porta_lock_new_full (file, mode, backend, PORTA_LOCK_FLAGS_NONE);
}

static void
assert_try_blocked (PortaLock  *lock,
                    const char *path)
{
  g_autoptr(GError) error = NULL;

  g_assert_false (porta_lock_try_acquire (lock, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_assert_false (porta_lock_get_held (lock));
}

static void
assert_try_gets (PortaLock *lock)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (porta_lock_try_acquire (lock, &error));
  g_assert_no_error (error);
  g_assert_true (porta_lock_get_held (lock));
}

static void
assert_release (PortaLock *lock)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (porta_lock_release (lock, &error));
  g_assert_no_error (error);
}

static void
let_go (PortaTestChild *child,
        gboolean        says_released)
{
  porta_test_child_send_line (child);
  if (says_released)
    porta_test_child_expect_line (child, "released");
  g_assert_cmpint (porta_test_child_wait (child, NULL), ==, 0);
}

/* ---------------------------------------------------------------------- */
/* util-linux flock(1)                                                     */

static char *
find_flock (void)
{
  char *flock_path = g_find_program_in_path ("flock");

  if (flock_path == NULL)
    g_test_fail_printf ("flock(1) is missing: install util-linux");

  return flock_path;
}

static PortaTestChild *
flock1_hold (const char *flock_path,
             const char *path,
             gboolean    shared)
{
  const char *argv[] = {
    flock_path, shared ? "--shared" : "--exclusive", path,
    "-c", "echo locked; read x", NULL
  };
  PortaTestChild *child = porta_test_child_spawnv (argv);

  porta_test_child_expect_line (child, "locked");
  return child;
}

static int
flock1_run (const char *flock_path,
            const char *option1,
            const char *option2,
            const char *path)
{
  const char *argv[6];
  guint i = 0;

  argv[i++] = flock_path;
  argv[i++] = option1;
  if (option2 != NULL)
    argv[i++] = option2;
  argv[i++] = path;
  argv[i++] = "true";
  argv[i] = NULL;

  return porta_test_run (argv, NULL);
}

static void
test_flock1_they_hold (gconstpointer data)
{
  PortaBackend backend = GPOINTER_TO_INT (data);
  g_autofree char *flock_path = find_flock ();
  g_autofree char *path = porta_test_path ("flock1.lock");
  g_autoptr(PortaLock) exclusive = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend);
  g_autoptr(PortaLock) shared = new_lock (path, PORTA_LOCK_MODE_SHARED, backend);
  g_autoptr(PortaTestChild) child = NULL;
  g_autoptr(GError) error = NULL;

  if (flock_path == NULL)
    return;

  /* flock -x holds: we get nothing. */
  child = flock1_hold (flock_path, path, FALSE);
  assert_try_blocked (exclusive, path);
  assert_try_blocked (shared, path);
  let_go (child, FALSE);
  g_clear_pointer (&child, porta_test_child_free);
  g_assert_true (porta_lock_acquire (exclusive, (int) porta_test_scale_ms (SLACK_MS), NULL, &error));
  g_assert_no_error (error);
  assert_release (exclusive);

  /* flock -s holds: we share, we do not exclude. */
  child = flock1_hold (flock_path, path, TRUE);
  assert_try_gets (shared);
  assert_try_blocked (exclusive, path);
  assert_release (shared);
  let_go (child, FALSE);
  assert_try_gets (exclusive);
  assert_release (exclusive);
}

static void
test_flock1_we_hold (gconstpointer data)
{
  PortaBackend backend = GPOINTER_TO_INT (data);
  g_autofree char *flock_path = find_flock ();
  g_autofree char *path = porta_test_path ("flock1.lock");
  g_autoptr(PortaLock) exclusive = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend);
  g_autoptr(PortaLock) shared = new_lock (path, PORTA_LOCK_MODE_SHARED, backend);
  gint64 start, took;

  if (flock_path == NULL)
    return;

  assert_try_gets (exclusive);
  g_assert_cmpint (flock1_run (flock_path, "-n", NULL, path), ==, 1);
  g_assert_cmpint (flock1_run (flock_path, "-n", "-s", path), ==, 1);
  start = g_get_monotonic_time ();
  g_assert_cmpint (flock1_run (flock_path, "-w", "0.2", path), ==, 1);
  took = (g_get_monotonic_time () - start) / 1000;
  g_assert_cmpint (took, >=, 190);
  assert_release (exclusive);
  g_assert_cmpint (flock1_run (flock_path, "-n", NULL, path), ==, 0);

  assert_try_gets (shared);
  g_assert_cmpint (flock1_run (flock_path, "-n", "-s", path), ==, 0);
  g_assert_cmpint (flock1_run (flock_path, "-n", NULL, path), ==, 1);
  assert_release (shared);
  g_assert_cmpint (flock1_run (flock_path, "-n", NULL, path), ==, 0);
}

/* flock(1) blocked on our lock gets it soon after we let go. */
static void
test_flock1_handoff (gconstpointer data)
{
  PortaBackend backend = GPOINTER_TO_INT (data);
  g_autofree char *flock_path = find_flock ();
  g_autofree char *path = porta_test_path ("flock1.lock");
  g_autoptr(PortaLock) lock = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, backend);
  g_autoptr(PortaTestChild) child = NULL;
  const char *argv[] = { NULL, "-w", "20", NULL, "-c", "echo locked; read x", NULL };

  if (flock_path == NULL)
    return;

  argv[0] = flock_path;
  argv[3] = path;
  assert_try_gets (lock);
  child = porta_test_child_spawnv (argv);
  g_usleep (200 * 1000);
  assert_release (lock);
  porta_test_child_expect_line (child, "locked");
  assert_try_blocked (lock, path);
  let_go (child, FALSE);
  assert_try_gets (lock);
  assert_release (lock);
}

/* ---------------------------------------------------------------------- */
/* Python                                                                  */

static gboolean
python_has_module (const PythonLocker *locker)
{
  g_autofree char *import = g_strdup_printf ("import %s", locker->module);
  const char *argv[] = { PYTHON, "-c", import, NULL };

  if (!g_file_test (PYTHON, G_FILE_TEST_IS_EXECUTABLE))
    {
      g_test_fail_printf ("%s is missing: install python3 and %s "
                          "(the project's setup script installs them)",
                          PYTHON, locker->package);
      return FALSE;
    }

  /* Its traceback is in the test log already: keep the TAP line short. */
  if (porta_test_run (argv, NULL) != 0)
    {
      g_test_fail_printf ("%s cannot import %s: install %s "
                          "(the project's setup script installs it)",
                          PYTHON, locker->module, locker->package);
      return FALSE;
    }

  return TRUE;
}

static PortaTestChild *
python_hold (const PythonLocker *locker,
             const char         *path,
             gboolean            shared)
{
  const char *argv[] = {
    PYTHON, "-c", locker->hold, path, shared ? "shared" : "exclusive", NULL
  };
  PortaTestChild *child = porta_test_child_spawnv (argv);

  porta_test_child_expect_line (child, "locked");
  return child;
}

static int
python_try (const PythonLocker *locker,
            const char         *path,
            gboolean            shared)
{
  const char *argv[] = {
    PYTHON, "-c", locker->try_once, path, shared ? "shared" : "exclusive", NULL
  };
  g_autofree char *err_text = NULL;
  int status = porta_test_run (argv, &err_text);

  if (status != PY_GOT_IT && status != PY_TAKEN)
    g_error ("the %s script broke (exit status %d): %s", locker->module, status, err_text);

  return status;
}

static void
test_python_they_hold (gconstpointer data)
{
  const PythonLocker *locker = data;
  g_autofree char *path = porta_test_path ("python.lock");
  g_autoptr(PortaLock) exclusive = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, locker->backend);
  g_autoptr(PortaLock) shared = new_lock (path, PORTA_LOCK_MODE_SHARED, locker->backend);
  g_autoptr(PortaTestChild) child = NULL;
  g_autoptr(GError) error = NULL;

  if (!python_has_module (locker))
    return;

  child = python_hold (locker, path, FALSE);
  assert_try_blocked (exclusive, path);
  assert_try_blocked (shared, path);
  let_go (child, TRUE);
  g_clear_pointer (&child, porta_test_child_free);
  g_assert_true (porta_lock_acquire (exclusive, (int) porta_test_scale_ms (SLACK_MS), NULL, &error));
  g_assert_no_error (error);
  assert_release (exclusive);

  if (!locker->shared)
    return;

  /* One lock of ours at a time: the posix backend refuses a second one in
   * the same process. */
  child = python_hold (locker, path, TRUE);
  assert_try_blocked (exclusive, path);
  assert_try_gets (shared);
  assert_release (shared);
  let_go (child, TRUE);
  assert_try_gets (exclusive);
  assert_release (exclusive);
}

static void
test_python_we_hold (gconstpointer data)
{
  const PythonLocker *locker = data;
  g_autofree char *path = porta_test_path ("python.lock");
  g_autoptr(PortaLock) exclusive = new_lock (path, PORTA_LOCK_MODE_EXCLUSIVE, locker->backend);
  g_autoptr(PortaLock) shared = new_lock (path, PORTA_LOCK_MODE_SHARED, locker->backend);

  if (!python_has_module (locker))
    return;

  assert_try_gets (exclusive);
  g_assert_cmpint (python_try (locker, path, FALSE), ==, PY_TAKEN);
  if (locker->shared)
    g_assert_cmpint (python_try (locker, path, TRUE), ==, PY_TAKEN);
  assert_release (exclusive);
  g_assert_cmpint (python_try (locker, path, FALSE), ==, PY_GOT_IT);

  assert_try_gets (shared);
  g_assert_cmpint (python_try (locker, path, FALSE), ==, PY_TAKEN);
  if (locker->shared)
    g_assert_cmpint (python_try (locker, path, TRUE), ==, PY_GOT_IT);
  assert_release (shared);
  g_assert_cmpint (python_try (locker, path, FALSE), ==, PY_GOT_IT);
}

/* ---------------------------------------------------------------------- */

int
main (int    argc,
      char **argv)
{
  static const struct
  {
    const char         *name;
    const PythonLocker *locker;
  } pythons[] = {
    { "portalocker", &portalocker_locker },
    { "filelock", &filelock_locker },
    { "lockf/ofd", &lockf_ofd_locker },
    { "lockf/posix", &lockf_posix_locker },
  };
  static const struct
  {
    const char   *name;
    PortaBackend  backend;
  } flock_backends[] = {
    { "default", PORTA_BACKEND_DEFAULT },
    { "flock", PORTA_BACKEND_FLOCK },
  };
  guint i;

  porta_test_init (&argc, &argv);

  for (i = 0; i < G_N_ELEMENTS (flock_backends); i++)
    {
      g_autofree char *they = g_strdup_printf ("/interop/flock1/%s/they-hold", flock_backends[i].name);
      g_autofree char *we = g_strdup_printf ("/interop/flock1/%s/we-hold", flock_backends[i].name);
      g_autofree char *handoff = g_strdup_printf ("/interop/flock1/%s/handoff", flock_backends[i].name);
      gconstpointer data = GINT_TO_POINTER (flock_backends[i].backend);

      g_test_add_data_func (they, data, test_flock1_they_hold);
      g_test_add_data_func (we, data, test_flock1_we_hold);
      g_test_add_data_func (handoff, data, test_flock1_handoff);
    }

  for (i = 0; i < G_N_ELEMENTS (pythons); i++)
    {
      g_autofree char *they = g_strdup_printf ("/interop/python/%s/they-hold", pythons[i].name);
      g_autofree char *we = g_strdup_printf ("/interop/python/%s/we-hold", pythons[i].name);

      g_test_add_data_func (they, pythons[i].locker, test_python_they_hold);
      g_test_add_data_func (we, pythons[i].locker, test_python_we_hold);
    }

  return g_test_run ();
}
