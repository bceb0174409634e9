/* test-errors.c: how failed lock calls become GErrors (internal)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Every filesystem this test machine can mount supports flock() and
 * fcntl() locks, so the "filesystem without locks" case cannot be reached
 * from the public API here. This test checks the mapping from the errors
 * such a filesystem returns (ENOLCK, EOPNOTSUPP, EINVAL, ENOSYS) to
 * G_IO_ERROR_NOT_SUPPORTED, through the library's private functions.
 */

#include "config.h"

#include <errno.h>
#include <string.h>

#include <gio/gio.h>
#include <glib/gstdio.h>

#include "porta-lock-errors-private.h"
#include "porta-waiter-private.h"
#include "porta-win32-private.h"

#ifndef G_OS_WIN32
# include <fcntl.h>
# include <sys/file.h>
# include <unistd.h>
#endif

#ifdef G_OS_WIN32
# include <windows.h>
static const PortaBackend backends[] = { PORTA_BACKEND_WIN32 };
#else
static const PortaBackend backends[] = { PORTA_BACKEND_FLOCK, PORTA_BACKEND_OFD, PORTA_BACKEND_POSIX };
#endif

static void
check_mapping (int         errsv,
               int         code,
               const char *words)
{
  for (gsize i = 0; i < G_N_ELEMENTS (backends); i++)
    {
      const PortaBackendOps *ops = porta_backend_get_ops (backends[i]);
      g_autoptr(GError) error = NULL;

      g_assert_nonnull (ops);
      porta_set_lock_error (&error, errsv, "/mnt/share/app.lock", ops, NULL);
      g_assert_error (error, G_IO_ERROR, code);
      g_assert_nonnull (strstr (error->message, "/mnt/share/app.lock"));
      g_assert_nonnull (strstr (error->message, words));
      if (code == G_IO_ERROR_NOT_SUPPORTED)
        g_assert_nonnull (strstr (error->message, porta_backend_get_name (ops->id)));
      g_test_message ("%s: %s", porta_backend_get_name (ops->id), error->message);
    }
}

static void
test_no_lock_support (void)
{
  check_mapping (ENOLCK, G_IO_ERROR_NOT_SUPPORTED, "does not support");
  check_mapping (EOPNOTSUPP, G_IO_ERROR_NOT_SUPPORTED, "does not support");
  check_mapping (EINVAL, G_IO_ERROR_NOT_SUPPORTED, "does not support");
  check_mapping (ENOSYS, G_IO_ERROR_NOT_SUPPORTED, "does not support");
}

static void
test_other_errors (void)
{
  check_mapping (EWOULDBLOCK, G_IO_ERROR_WOULD_BLOCK, "held by");
  /* Without a descriptor to look at, EBADF is only that. */
  check_mapping (EBADF, G_IO_ERROR_FAILED, g_strerror (EBADF));
  check_mapping (EDEADLK, G_IO_ERROR_FAILED, "deadlock");
  check_mapping (EIO, G_IO_ERROR_FAILED, "Cannot lock");
}

#ifndef G_OS_WIN32
/* fcntl() locks fail with EBADF on a descriptor open the wrong way for
 * them: the message says which way it must be open. */
static void
test_bad_descriptor_access (void)
{
  const PortaBackendOps *ops = porta_backend_get_ops (PORTA_BACKEND_OFD);
  struct {
    int         flags;
    int         code;
    const char *words;
  } cases[] = {
    { O_RDONLY, G_IO_ERROR_PERMISSION_DENIED, "not open for writing" },
    { O_WRONLY, G_IO_ERROR_PERMISSION_DENIED, "not open for reading" },
    { O_RDWR, G_IO_ERROR_FAILED, "Bad file descriptor" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      PortaLockFile lf = { -1, 0, 0, FALSE, FALSE };
      g_autoptr(GError) error = NULL;

      lf.fd = open ("/dev/null", cases[i].flags | O_CLOEXEC);
      g_assert_cmpint (lf.fd, >=, 0);
      porta_set_lock_error (&error, EBADF, "/srv/app.lock", ops, &lf);
      g_assert_error (error, G_IO_ERROR, cases[i].code);
      g_assert_nonnull (strstr (error->message, "/srv/app.lock"));
      g_assert_nonnull (strstr (error->message, cases[i].words));
      close (lf.fd);
    }
}
#endif

static void
test_backends (void)
{
  g_assert_cmpstr (porta_backend_get_name (PORTA_BACKEND_OFD), ==, "ofd");
  g_assert_cmpstr (porta_backend_get_name (PORTA_BACKEND_POSIX), ==, "posix");
  g_assert_cmpstr (porta_backend_get_name (PORTA_BACKEND_WIN32), ==, "win32");
#ifdef G_OS_WIN32
  g_assert_cmpint (porta_backend_resolve (PORTA_BACKEND_DEFAULT), ==, PORTA_BACKEND_WIN32);
  g_assert_cmpstr (porta_backend_get_name (PORTA_BACKEND_DEFAULT), ==, "win32");
  g_assert_null (porta_backend_get_ops (PORTA_BACKEND_FLOCK));
  g_assert_null (porta_backend_get_ops (PORTA_BACKEND_OFD));
  g_assert_null (porta_backend_get_ops (PORTA_BACKEND_POSIX));
  /* LockFileEx() needs only read access, exclusive locks included. */
  g_assert_false (porta_backend_get_ops (PORTA_BACKEND_WIN32)->exclusive_needs_write);
  g_assert_false (porta_backend_get_ops (PORTA_BACKEND_WIN32)->per_process);
#else
  g_assert_cmpint (porta_backend_resolve (PORTA_BACKEND_DEFAULT), ==, PORTA_BACKEND_FLOCK);
  g_assert_cmpstr (porta_backend_get_name (PORTA_BACKEND_DEFAULT), ==, "flock");
  g_assert_true (porta_backend_get_ops (PORTA_BACKEND_FLOCK)->exclusive_needs_write == FALSE);
  g_assert_true (porta_backend_get_ops (PORTA_BACKEND_POSIX)->per_process);
  g_assert_null (porta_backend_get_ops (PORTA_BACKEND_WIN32));
#endif
}

#ifdef G_OS_WIN32
/* Windows error codes reach the same GIOErrorEnum codes and messages as
 * their errno counterparts on Unix. */
static void
test_win32_error_codes (void)
{
  static const struct {
    DWORD       code;
    int         io_error;
    const char *words;
  } cases[] = {
    { ERROR_LOCK_VIOLATION, G_IO_ERROR_WOULD_BLOCK, "held by" },
    { ERROR_NOT_SUPPORTED, G_IO_ERROR_NOT_SUPPORTED, "does not support win32 locks" },
    { ERROR_INVALID_FUNCTION, G_IO_ERROR_NOT_SUPPORTED, "does not support win32 locks" },
    { ERROR_INVALID_PARAMETER, G_IO_ERROR_NOT_SUPPORTED, "does not support win32 locks" },
    { ERROR_INVALID_HANDLE, G_IO_ERROR_FAILED, "Cannot lock" },
    { ERROR_ACCESS_DENIED, G_IO_ERROR_PERMISSION_DENIED, "Cannot lock" },
    { ERROR_DISK_FULL, G_IO_ERROR_NO_SPACE, "Cannot lock" },
    { ERROR_GEN_FAILURE, G_IO_ERROR_FAILED, "Cannot lock" },
  };
  const PortaBackendOps *ops = porta_backend_get_ops (PORTA_BACKEND_WIN32);

  g_assert_cmpint (porta_win32_errno (ERROR_IO_PENDING), ==, EINPROGRESS);
  g_assert_cmpint (porta_win32_errno (ERROR_OPERATION_ABORTED), ==, ECANCELED);
  g_assert_cmpint (porta_win32_errno (ERROR_FILE_NOT_FOUND), ==, ENOENT);
  g_assert_cmpint (porta_win32_errno (ERROR_PATH_NOT_FOUND), ==, ENOENT);
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(GError) error = NULL;

      porta_set_lock_error (&error, porta_win32_errno (cases[i].code),
                            "C:\\app\\app.lock", ops, NULL);
      g_test_message ("%lu: %s", (unsigned long) cases[i].code, error->message);
      g_assert_error (error, G_IO_ERROR, cases[i].io_error);
      g_assert_nonnull (strstr (error->message, "C:\\app\\app.lock"));
      g_assert_nonnull (strstr (error->message, cases[i].words));
    }
}

/* Under Wine, whose NtLockFile() returns "pending" for a contended
 * overlapped request without queuing it (and GetOverlappedResult() then
 * reports success), waits must back off; on Windows they wait in the
 * kernel. The library tells the two apart by ntdll's wine_get_version. */
static void
test_win32_wait_mechanism (void)
{
  HMODULE ntdll = GetModuleHandleW (L"ntdll.dll");
  gboolean under_wine = ntdll != NULL && GetProcAddress (ntdll, "wine_get_version") != NULL;

  g_test_message ("running under %s: waits %s", under_wine ? "Wine" : "Windows",
                  porta_win32_overlapped_waits () ? "in overlapped LockFileEx()" : "back off");
  if (g_getenv ("PORTALOCK_WIN32_OVERLAPPED") == NULL)
    g_assert_cmpint (porta_win32_overlapped_waits (), ==, !under_wine);
}
#endif

#ifndef G_OS_WIN32
/* A timed-out wait names the holder, or says truly why it cannot: a
 * kernel wait too short to look it up, a wait that retries with a back-off
 * (network filesystems, PORTALOCK_SIGNAL=0), which never looks it up. */
static void
test_holder_unknown_reasons (void)
{
  g_autofree char *path = g_build_filename (g_get_tmp_dir (), "porta-test-errors-XXXXXX", NULL);
  const PortaBackendOps *ops = porta_backend_get_ops (PORTA_BACKEND_FLOCK);
  PortaLockFile lf = { -1, 0, 0, TRUE, FALSE };
  struct {
    gboolean            back_off;
    int                 timeout_ms;
    PortaHolderUnknown  unknown;
    const char         *words;
  } cases[] = {
    { TRUE, 400, PORTA_HOLDER_RETRYING_WAIT, "waits that retry" },
    { FALSE, 50, PORTA_HOLDER_WAIT_TOO_SHORT, "waits under 100 ms" },
    { FALSE, 300, PORTA_HOLDER_NOT_TOLD, "held by process" },
  };
  int holder_fd = g_mkstemp (path);

  g_assert_cmpint (holder_fd, >=, 0);
  g_assert_cmpint (flock (holder_fd, LOCK_EX), ==, 0);
  lf.fd = open (path, O_RDWR | O_CLOEXEC);
  g_assert_cmpint (lf.fd, >=, 0);
  g_assert_cmpint (porta_fd_identify (lf.fd, &lf.dev, &lf.ino), ==, 0);

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *holder = NULL;
      g_autoptr(GError) error = NULL;
      PortaHolderUnknown unknown = PORTA_HOLDER_NOT_TOLD;
      int r;

      r = porta_waiter_wait_sync (ops, &lf, cases[i].back_off, PORTA_LOCK_MODE_EXCLUSIVE,
                                  porta_deadline (cases[i].timeout_ms), NULL,
                                  &holder, &unknown);
      g_assert_cmpint (r, ==, ETIMEDOUT);
      /* This process holds it, which /proc/locks tells. */
      if (holder == NULL)
        g_assert_cmpint (unknown, ==, cases[i].unknown);
      porta_set_wait_error (&error, r, cases[i].timeout_ms, holder, unknown, path, ops, &lf);
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
      g_test_message ("%s", error->message);
      g_assert_nonnull (strstr (error->message, cases[i].words));
    }
  close (lf.fd);
  close (holder_fd);
  g_unlink (path);
}
#endif

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/errors/no-lock-support", test_no_lock_support);
  g_test_add_func ("/errors/other", test_other_errors);
  g_test_add_func ("/errors/backends", test_backends);
#ifndef G_OS_WIN32
  g_test_add_func ("/errors/holder-unknown-reasons", test_holder_unknown_reasons);
  g_test_add_func ("/errors/bad-descriptor-access", test_bad_descriptor_access);
#endif
#ifdef G_OS_WIN32
  g_test_add_func ("/errors/win32-codes", test_win32_error_codes);
  g_test_add_func ("/errors/win32-wait-mechanism", test_win32_wait_mechanism);
#endif

  return g_test_run ();
}
