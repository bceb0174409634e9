/* porta-i18n.c: binding the portalock text domain
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include <locale.h>

#include "porta-i18n-private.h"

/* The library's messages live in their own text domain, so they are looked
 * up in portalock.mo whatever domain the application uses. Bound once, on
 * first use of a lock, never at load time (binding at load time would run
 * before the application could call setlocale()). */
void
porta_i18n_init (void)
{
#if ENABLE_NLS
  static gsize initialized = 0;

  if (g_once_init_enter (&initialized))
    {
      bindtextdomain (GETTEXT_PACKAGE, LOCALEDIR);
      bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
      g_once_init_leave (&initialized, 1);
    }
#endif
}
