/* test-stress-input.c: bad input is refused cleanly, and data is untouched
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Each case checks the GError (domain, code, and the path in a message a
 * person can act on), that nothing hangs, and that the user's files next
 * to or at the path are byte-identical afterwards.
 */

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "porta-test-utils.h"

#define USER_DATA "the user's data, which portalock must never touch\n"

static const PortaBackend all_backends[] = {
  PORTA_BACKEND_FLOCK, PORTA_BACKEND_OFD, PORTA_BACKEND_POSIX,
};

typedef struct
{
  gboolean done;
  gboolean acquired;
  GError  *error;
} AsyncResult;

static void
on_acquired (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  AsyncResult *r = user_data;

  r->acquired = porta_lock_acquire_finish (PORTA_LOCK (source), result, &r->error);
  r->done = TRUE;
}

/* Acquires @lock with @timeout_ms, sync or async, and checks that it fails
 * with @domain/@code and a message naming @needle. */
static void
assert_acquire_fails (PortaLock  *lock,
                      int         timeout_ms,
                      gboolean    async,
                      GQuark      domain,
                      int         code,
                      const char *needle)
{
  g_autoptr(GError) error = NULL;

  if (async)
    {
      g_autoptr(GMainContext) context = g_main_context_new ();
      AsyncResult r = { FALSE, FALSE, NULL };

      g_main_context_push_thread_default (context);
      porta_lock_acquire_async (lock, timeout_ms, G_PRIORITY_DEFAULT, NULL,
                                on_acquired, &r);
      while (!r.done)
        g_main_context_iteration (context, TRUE);
      g_main_context_pop_thread_default (context);
      g_assert_false (r.acquired);
      error = r.error;
    }
  else
    g_assert_false (porta_lock_acquire (lock, timeout_ms, NULL, &error));

  g_assert_nonnull (error);
  g_test_message ("%s (%s, %d ms): %s", porta_test_backend_name (porta_lock_get_backend (lock)),
                  async ? "async" : "sync", timeout_ms, error->message);
  g_assert_error (error, domain, code);
  g_assert_true (g_utf8_validate (error->message, -1, NULL));
  if (needle != NULL)
    g_assert_nonnull (strstr (error->message, needle));
  /* A lock that was held before is still held, and nothing else is. */
  if (g_error_matches (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_ALREADY_HELD))
    g_assert_true (porta_lock_get_held (lock));
  else
    {
      g_assert_false (porta_lock_get_held (lock));
      g_assert_null (porta_lock_get_stream (lock));
    }
}

/* Every backend, sync and async, waiting and not. */
static void
assert_all_fail (GFile          *file,
                 PortaLockFlags  flags,
                 GQuark          domain,
                 int             code,
                 const char     *needle)
{
  for (guint b = 0; b < G_N_ELEMENTS (all_backends); b++)
    for (guint mode = 0; mode < 2; mode++)
      {
        g_autoptr(PortaLock) lock = porta_lock_new_full (file, mode, all_backends[b], flags);

        assert_acquire_fails (lock, 0, FALSE, domain, code, needle);
        assert_acquire_fails (lock, -1, FALSE, domain, code, needle);
        assert_acquire_fails (lock, 100, TRUE, domain, code, needle);
      }
}

static char *
make_user_file (const char *name)
{
  char *path = porta_test_path (name);

  g_assert_true (g_file_set_contents (path, USER_DATA, -1, NULL));
  return path;
}

static void
test_non_native (void)
{
  const char *uri = "http://example.com/app.lock";
  g_autoptr(GFile) file = g_file_new_for_uri (uri);

  assert_all_fail (file, 0, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED, uri);
}

static void
test_missing_folder (void)
{
  g_autofree char *keep = make_user_file ("keep");
  g_autofree char *missing = porta_test_path ("missing");
  g_autofree char *path = g_build_filename (missing, "app.lock", NULL);
  g_autoptr(GFile) file = g_file_new_for_path (path);

  assert_all_fail (file, 0, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, path);
  g_assert_false (g_file_test (missing, G_FILE_TEST_EXISTS));
  porta_test_assert_file_is (keep, USER_DATA);
}

static void
test_directory (void)
{
  g_autofree char *dir = porta_test_path ("a-folder");
  g_autofree char *inside = g_build_filename (dir, "keep", NULL);
  g_autoptr(GFile) file = g_file_new_for_path (dir);

  g_assert_cmpint (g_mkdir (dir, 0755), ==, 0);
  g_assert_true (g_file_set_contents (inside, USER_DATA, -1, NULL));
  assert_all_fail (file, 0, G_IO_ERROR, G_IO_ERROR_IS_DIRECTORY, dir);
  assert_all_fail (file, PORTA_LOCK_FLAGS_DELETE_ON_RELEASE, G_IO_ERROR,
                   G_IO_ERROR_IS_DIRECTORY, dir);
  g_assert_true (g_file_test (dir, G_FILE_TEST_IS_DIR));
  porta_test_assert_file_is (inside, USER_DATA);
}

static void
test_fifo (void)
{
  if (g_test_subprocess ())
    {
      g_autofree char *path = porta_test_path ("a-fifo");
      g_autoptr(GFile) file = g_file_new_for_path (path);
      struct stat st;

      g_assert_cmpint (mkfifo (path, 0644), ==, 0);
      assert_all_fail (file, 0, G_IO_ERROR, G_IO_ERROR_NOT_REGULAR_FILE, path);
      g_assert_cmpint (lstat (path, &st), ==, 0);
      g_assert_true (S_ISFIFO (st.st_mode));
      return;
    }

  /* In a subprocess with a deadline: opening a FIFO must not hang. */
  g_test_trap_subprocess (NULL, (guint64) porta_test_scale_ms (60000) * 1000,
                          G_TEST_SUBPROCESS_INHERIT_STDERR);
  g_test_trap_assert_passed ();
}

static void
test_dev_null (void)
{
  g_autoptr(GFile) file = g_file_new_for_path ("/dev/null");
  struct stat before, after;

  g_assert_cmpint (stat ("/dev/null", &before), ==, 0);
  assert_all_fail (file, 0, G_IO_ERROR, G_IO_ERROR_NOT_REGULAR_FILE, "/dev/null");
  assert_all_fail (file, PORTA_LOCK_FLAGS_DELETE_ON_RELEASE, G_IO_ERROR,
                   G_IO_ERROR_NOT_REGULAR_FILE, "/dev/null");
  g_assert_cmpint (stat ("/dev/null", &after), ==, 0);
  g_assert_true (S_ISCHR (after.st_mode));
  g_assert_cmpuint (after.st_mode, ==, before.st_mode);
  g_assert_cmpuint (after.st_rdev, ==, before.st_rdev);
}

/* As an unprivileged user, in a folder that root owns. CI runs as root:
 * the checks run in a subprocess that drops to nobody (65534). */
static void
test_permission (void)
{
  const char *dir = g_getenv ("STRESS_PERMISSION_DIR");

  if (g_test_subprocess ())
    {
      g_autofree char *ro = g_build_filename (dir, "readable.lock", NULL);
      g_autofree char *secret = g_build_filename (dir, "secret.lock", NULL);
      g_autofree char *created = g_build_filename (dir, "new.lock", NULL);
      g_autoptr(GFile) ro_file = g_file_new_for_path (ro);
      g_autoptr(GFile) secret_file = g_file_new_for_path (secret);
      g_autoptr(GFile) created_file = g_file_new_for_path (created);
      g_autoptr(GError) error = NULL;

      if (geteuid () == 0)
        {
          g_assert_cmpint (setgroups (0, NULL), ==, 0);
          g_assert_cmpint (setgid (65534), ==, 0);
          g_assert_cmpint (setuid (65534), ==, 0);
        }
      g_assert_cmpint (access (secret, R_OK), !=, 0);

      /* Cannot be created in a folder we may not write to. */
      for (guint b = 0; b < G_N_ELEMENTS (all_backends); b++)
        {
          g_autoptr(PortaLock) lock = porta_lock_new_full (created_file,
                                                           PORTA_LOCK_MODE_EXCLUSIVE,
                                                           all_backends[b], 0);

          assert_acquire_fails (lock, 0, FALSE, G_IO_ERROR,
                                G_IO_ERROR_PERMISSION_DENIED, created);
        }
      /* Cannot be opened at all. */
      assert_all_fail (secret_file, 0, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED, secret);
      /* Readable only: fcntl write locks need a writable descriptor... */
      {
        g_autoptr(PortaLock) ofd = porta_lock_new_full (ro_file, PORTA_LOCK_MODE_EXCLUSIVE,
                                                        PORTA_BACKEND_OFD, 0);
        g_autoptr(PortaLock) posix = porta_lock_new_full (ro_file, PORTA_LOCK_MODE_EXCLUSIVE,
                                                          PORTA_BACKEND_POSIX, 0);
        g_autoptr(PortaLock) flock_ex = porta_lock_new_full (ro_file, PORTA_LOCK_MODE_EXCLUSIVE,
                                                             PORTA_BACKEND_FLOCK, 0);
        g_autoptr(PortaLock) ofd_sh = porta_lock_new_full (ro_file, PORTA_LOCK_MODE_SHARED,
                                                           PORTA_BACKEND_OFD, 0);
        GOutputStream *out;

        assert_acquire_fails (ofd, 0, FALSE, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED, ro);
        assert_acquire_fails (posix, -1, FALSE, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED, ro);
        /* ...while flock locks and read locks do not, and the stream then
         * refuses to write. */
        g_assert_true (porta_lock_acquire (flock_ex, 0, NULL, &error));
        g_assert_no_error (error);
        out = g_io_stream_get_output_stream (porta_lock_get_stream (flock_ex));
        g_assert_false (g_output_stream_write_all (out, "x", 1, NULL, NULL, &error));
        g_assert_nonnull (error);
        g_clear_error (&error);
        g_assert_true (porta_lock_release (flock_ex, &error));
        g_assert_true (porta_lock_acquire (ofd_sh, 0, NULL, &error));
        g_assert_no_error (error);
        g_assert_true (porta_lock_release (ofd_sh, &error));
        g_assert_no_error (error);
      }
      return;
    }

  {
    g_autoptr(GError) error = NULL;
    g_autofree char *tmp = g_dir_make_tmp ("portalock-permission-XXXXXX", &error);
    g_autofree char *ro = NULL;
    g_autofree char *secret = NULL;
    g_autofree char *created = NULL;

    g_assert_no_error (error);
    ro = g_build_filename (tmp, "readable.lock", NULL);
    secret = g_build_filename (tmp, "secret.lock", NULL);
    created = g_build_filename (tmp, "new.lock", NULL);
    g_assert_true (g_file_set_contents (ro, USER_DATA, -1, NULL));
    g_assert_true (g_file_set_contents (secret, USER_DATA, -1, NULL));
    g_assert_cmpint (g_chmod (ro, 0644), ==, 0);
    g_assert_cmpint (g_chmod (secret, 0600), ==, 0);
    g_assert_cmpint (g_chmod (tmp, 0755), ==, 0);
    if (geteuid () != 0)
      {
        /* Not root: our own files; take the rights away instead. */
        g_assert_cmpint (g_chmod (secret, 0), ==, 0);
        g_assert_cmpint (g_chmod (ro, 0444), ==, 0);
        g_assert_cmpint (g_chmod (tmp, 0555), ==, 0);
      }

    g_setenv ("STRESS_PERMISSION_DIR", tmp, TRUE);
    g_test_trap_subprocess (NULL, (guint64) porta_test_scale_ms (60000) * 1000,
                            G_TEST_SUBPROCESS_INHERIT_STDERR);
    g_unsetenv ("STRESS_PERMISSION_DIR");

    g_assert_cmpint (g_chmod (tmp, 0700), ==, 0);
    g_assert_cmpint (g_chmod (secret, 0600), ==, 0);
    g_assert_false (g_file_test (created, G_FILE_TEST_EXISTS));
    porta_test_assert_file_is (ro, USER_DATA);
    porta_test_assert_file_is (secret, USER_DATA);
    g_unlink (ro);
    g_unlink (secret);
    g_rmdir (tmp);
    g_test_trap_assert_passed ();
  }
}

static void
test_too_long (void)
{
  g_autofree char *keep = make_user_file ("keep");
  g_autofree char *dir = g_path_get_dirname (keep);
  g_autofree char *long_name = g_strnfill (NAME_MAX + 1, 'n');
  g_autofree char *long_component = g_build_filename (dir, long_name, NULL);
  GString *long_path = g_string_new (dir);
  g_autoptr(GFile) file1 = g_file_new_for_path (long_component);
  g_autoptr(GFile) file2 = NULL;
  g_autofree char *prefix = NULL;
  g_autofree char *short_path = g_build_filename (dir, "app.lock", NULL);

  /* GFile folds "." and ".." away: a path of real names, none too long */
  while (long_path->len <= PATH_MAX)
    {
      g_string_append_c (long_path, '/');
      for (guint i = 0; i < 200; i++)
        g_string_append_c (long_path, 'd');
    }
  g_string_append (long_path, "/app.lock");
  file2 = g_file_new_for_path (long_path->str);
  prefix = g_strndup (long_component, strlen (dir) + 32);

  for (guint b = 0; b < G_N_ELEMENTS (all_backends); b++)
    {
      g_autoptr(PortaLock) lock1 = porta_lock_new_full (file1, PORTA_LOCK_MODE_EXCLUSIVE,
                                                        all_backends[b], 0);
      g_autoptr(PortaLock) lock2 = porta_lock_new_full (file2, PORTA_LOCK_MODE_EXCLUSIVE,
                                                        all_backends[b], 0);
      g_autoptr(GError) error = NULL;

      g_assert_false (porta_lock_acquire (lock1, 0, NULL, &error));
      g_test_message ("component of %d bytes: %.100s...", NAME_MAX + 1, error->message);
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FILENAME_TOO_LONG);
      g_assert_nonnull (strstr (error->message, prefix));
      g_clear_error (&error);

      g_assert_false (porta_lock_acquire (lock2, -1, NULL, &error));
      g_test_message ("path of %" G_GSIZE_FORMAT " bytes: %.100s...", long_path->len,
                      error->message);
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FILENAME_TOO_LONG);
      g_assert_nonnull (strstr (error->message, dir));
    }
  /* the short path that the long one names was not created either */
  g_assert_false (g_file_test (short_path, G_FILE_TEST_EXISTS));
  porta_test_assert_file_is (keep, USER_DATA);
  g_string_free (long_path, TRUE);
}

/* A file name that is not UTF-8 works, and messages about it are UTF-8. */
static void
test_invalid_utf8 (void)
{
  g_autofree char *keep = make_user_file ("keep");
  g_autofree char *path = porta_test_path ("bad-\xff\xfe.lock");
  g_autofree char *bad_dir = porta_test_path ("bad-\xff\xfe-folder");
  g_autofree char *missing = g_build_filename (bad_dir, "app.lock", NULL);
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autoptr(GFile) missing_file = g_file_new_for_path (missing);
  g_autoptr(GError) error = NULL;

  for (guint b = 0; b < G_N_ELEMENTS (all_backends); b++)
    {
      g_autoptr(PortaLock) lock = porta_lock_new_full (file, PORTA_LOCK_MODE_EXCLUSIVE,
                                                       all_backends[b], 0);
      g_autoptr(PortaLock) flock_other = porta_lock_new_full (file, PORTA_LOCK_MODE_EXCLUSIVE,
                                                              PORTA_BACKEND_FLOCK, 0);
      g_autoptr(PortaLock) in_missing = porta_lock_new_full (missing_file,
                                                             PORTA_LOCK_MODE_EXCLUSIVE,
                                                             all_backends[b], 0);

      g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
      g_assert_no_error (error);
      if (all_backends[b] == PORTA_BACKEND_FLOCK)
        assert_acquire_fails (flock_other, 0, FALSE, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK, "bad-");
      assert_acquire_fails (lock, 0, FALSE, PORTA_LOCK_ERROR,
                            PORTA_LOCK_ERROR_ALREADY_HELD, "bad-");
      g_assert_true (porta_lock_release (lock, &error));
      g_assert_no_error (error);
      g_assert_false (porta_lock_release (lock, &error));
      g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_HELD);
      g_assert_true (g_utf8_validate (error->message, -1, NULL));
      g_clear_error (&error);

      assert_acquire_fails (in_missing, -1, FALSE, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "bad-");
    }
  g_assert_true (g_file_test (path, G_FILE_TEST_IS_REGULAR));
  porta_test_assert_file_is (keep, USER_DATA);
}

static void
test_negative_timeout (void)
{
  if (g_test_subprocess ())
    {
      g_autofree char *path = porta_test_path ("app.lock");
      g_autoptr(PortaLock) lock = porta_lock_new_for_path (path, PORTA_LOCK_MODE_EXCLUSIVE);

      porta_lock_acquire (lock, -2, NULL, NULL);
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_failed ();
  g_test_trap_assert_stderr ("*CRITICAL*porta_lock_acquire*timeout_ms >= -1*");
}

static void
test_negative_timeout_async (void)
{
  if (g_test_subprocess ())
    {
      g_autofree char *path = porta_test_path ("app.lock");
      g_autoptr(PortaLock) lock = porta_lock_new_for_path (path, PORTA_LOCK_MODE_EXCLUSIVE);

      porta_lock_acquire_async (lock, G_MININT, G_PRIORITY_DEFAULT, NULL, NULL, NULL);
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_failed ();
  g_test_trap_assert_stderr ("*CRITICAL*porta_lock_acquire_async*timeout_ms >= -1*");
}

static void
test_release_not_held (void)
{
  g_autofree char *path = make_user_file ("data.lock");
  g_autoptr(GFile) file = g_file_new_for_path (path);

  for (guint b = 0; b < G_N_ELEMENTS (all_backends); b++)
    {
      g_autoptr(PortaLock) lock = porta_lock_new_full (file, PORTA_LOCK_MODE_EXCLUSIVE,
                                                       all_backends[b],
                                                       PORTA_LOCK_FLAGS_DELETE_ON_RELEASE);
      g_autoptr(GError) error = NULL;

      g_assert_false (porta_lock_release (lock, &error));
      g_test_message ("%s: %s", porta_test_backend_name (all_backends[b]), error->message);
      g_assert_error (error, PORTA_LOCK_ERROR, PORTA_LOCK_ERROR_NOT_HELD);
      g_assert_nonnull (strstr (error->message, path));
      g_assert_false (porta_lock_get_held (lock));
      /* a lock that was never held deletes nothing */
      porta_test_assert_file_is (path, USER_DATA);
    }
}

static void
test_acquire_twice (void)
{
  g_autofree char *path = make_user_file ("data.lock");
  g_autoptr(GFile) file = g_file_new_for_path (path);

  for (guint b = 0; b < G_N_ELEMENTS (all_backends); b++)
    {
      g_autoptr(PortaLock) lock = porta_lock_new_full (file, PORTA_LOCK_MODE_EXCLUSIVE,
                                                       all_backends[b], 0);
      g_autoptr(GError) error = NULL;

      g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
      g_assert_no_error (error);
      assert_acquire_fails (lock, 0, FALSE, PORTA_LOCK_ERROR,
                            PORTA_LOCK_ERROR_ALREADY_HELD, path);
      assert_acquire_fails (lock, -1, FALSE, PORTA_LOCK_ERROR,
                            PORTA_LOCK_ERROR_ALREADY_HELD, path);
      g_assert_nonnull (porta_lock_get_stream (lock));
      g_assert_true (porta_lock_release (lock, &error));
      g_assert_no_error (error);
    }
  porta_test_assert_file_is (path, USER_DATA);
}

/* By default a symbolic link is refused, and nothing is created where it
 * points. */
static void
test_symlink_refused (void)
{
  g_autofree char *target = porta_test_path ("target");
  g_autofree char *link = porta_test_path ("app.lock");
  g_autofree char *data = make_user_file ("data");
  g_autofree char *data_link = porta_test_path ("data.lock");
  g_autoptr(GFile) file = g_file_new_for_path (link);
  g_autoptr(GFile) data_file = g_file_new_for_path (data_link);
  g_autofree char *points_to = NULL;

  g_assert_cmpint (symlink (target, link), ==, 0);
  g_assert_cmpint (symlink (data, data_link), ==, 0);

  assert_all_fail (file, 0, G_IO_ERROR, G_IO_ERROR_TOO_MANY_LINKS, link);
  assert_all_fail (file, PORTA_LOCK_FLAGS_DELETE_ON_RELEASE, G_IO_ERROR,
                   G_IO_ERROR_TOO_MANY_LINKS, "symbolic link");
  assert_all_fail (data_file, 0, G_IO_ERROR, G_IO_ERROR_TOO_MANY_LINKS, data_link);

  g_assert_false (g_file_test (target, G_FILE_TEST_EXISTS));
  points_to = g_file_read_link (link, NULL);
  g_assert_cmpstr (points_to, ==, target);
  g_assert_true (g_file_test (data_link, G_FILE_TEST_IS_SYMLINK));
  porta_test_assert_file_is (data, USER_DATA);
}

static void
test_symlink_follow (void)
{
  g_autofree char *target = porta_test_path ("target");
  g_autofree char *link = porta_test_path ("app.lock");
  g_autoptr(GFile) file = g_file_new_for_path (link);
  g_autoptr(GFile) target_file = g_file_new_for_path (target);

  g_assert_cmpint (symlink (target, link), ==, 0);

  for (guint b = 0; b < G_N_ELEMENTS (all_backends); b++)
    {
      g_autoptr(PortaLock) lock = porta_lock_new_full (file, PORTA_LOCK_MODE_EXCLUSIVE,
                                                       all_backends[b],
                                                       PORTA_LOCK_FLAGS_FOLLOW_SYMLINKS);
      g_autoptr(PortaLock) direct = porta_lock_new_full (target_file,
                                                         PORTA_LOCK_MODE_EXCLUSIVE,
                                                         PORTA_BACKEND_FLOCK, 0);
      g_autoptr(GError) error = NULL;

      g_assert_true (porta_lock_acquire (lock, 0, NULL, &error));
      g_assert_no_error (error);
      /* it locked the file the link points to */
      g_assert_true (g_file_test (target, G_FILE_TEST_IS_REGULAR));
      if (all_backends[b] == PORTA_BACKEND_FLOCK)
        {
          g_assert_false (porta_lock_acquire (direct, 0, NULL, &error));
          g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
          g_clear_error (&error);
        }
      g_output_stream_write_all (g_io_stream_get_output_stream (porta_lock_get_stream (lock)),
                                 USER_DATA, strlen (USER_DATA), NULL, NULL, &error);
      g_assert_no_error (error);
      g_assert_true (porta_lock_release (lock, &error));
      g_assert_no_error (error);
      porta_test_assert_file_is (target, USER_DATA);
      g_assert_true (g_file_test (link, G_FILE_TEST_IS_SYMLINK));
      g_assert_cmpint (g_unlink (target), ==, 0);
    }
}

int
main (int   argc,
      char *argv[])
{
  porta_test_init (&argc, &argv);

  g_test_add_func ("/stress/input/non-native", test_non_native);
  g_test_add_func ("/stress/input/missing-folder", test_missing_folder);
  g_test_add_func ("/stress/input/directory", test_directory);
  g_test_add_func ("/stress/input/fifo", test_fifo);
  g_test_add_func ("/stress/input/dev-null", test_dev_null);
  g_test_add_func ("/stress/input/permission", test_permission);
  g_test_add_func ("/stress/input/too-long", test_too_long);
  g_test_add_func ("/stress/input/invalid-utf8", test_invalid_utf8);
  g_test_add_func ("/stress/input/negative-timeout", test_negative_timeout);
  g_test_add_func ("/stress/input/negative-timeout-async", test_negative_timeout_async);
  g_test_add_func ("/stress/input/release-not-held", test_release_not_held);
  g_test_add_func ("/stress/input/acquire-twice", test_acquire_twice);
  g_test_add_func ("/stress/symlink/refused", test_symlink_refused);
  g_test_add_func ("/stress/symlink/follow", test_symlink_follow);

  return g_test_run ();
}
