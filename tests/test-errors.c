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

#include "porta-backend-private.h"

static void
check_mapping (int         errsv,
               int         code,
               const char *words)
{
  static const PortaBackend backends[] = { PORTA_BACKEND_FLOCK, PORTA_BACKEND_OFD, PORTA_BACKEND_POSIX };

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
        g_assert_nonnull (strstr (error->message, ops->name));
      g_test_message ("%s: %s", ops->name, error->message);
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
  check_mapping (EBADF, G_IO_ERROR_PERMISSION_DENIED, "not open for writing");
  check_mapping (EDEADLK, G_IO_ERROR_FAILED, "deadlock");
  check_mapping (EIO, G_IO_ERROR_FAILED, "Cannot lock");
}

static void
test_backends (void)
{
  g_assert_cmpint (porta_backend_resolve (PORTA_BACKEND_DEFAULT), ==, PORTA_BACKEND_FLOCK);
  g_assert_cmpstr (porta_backend_get_name (PORTA_BACKEND_DEFAULT), ==, "flock");
  g_assert_cmpstr (porta_backend_get_name (PORTA_BACKEND_OFD), ==, "ofd");
  g_assert_cmpstr (porta_backend_get_name (PORTA_BACKEND_POSIX), ==, "posix");
  g_assert_true (porta_backend_get_ops (PORTA_BACKEND_FLOCK)->exclusive_needs_write == FALSE);
  g_assert_true (porta_backend_get_ops (PORTA_BACKEND_POSIX)->per_process);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/errors/no-lock-support", test_no_lock_support);
  g_test_add_func ("/errors/other", test_other_errors);
  g_test_add_func ("/errors/backends", test_backends);

  return g_test_run ();
}
