/* porta-i18n-private.h: the library's own message catalog
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "config.h"

#include <glib/gi18n-lib.h>

G_BEGIN_DECLS

void porta_i18n_init (void);

G_END_DECLS
