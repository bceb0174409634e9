/* consumer.h: a library that uses portalock as a meson subproject
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <portalock/portalock.h>

G_BEGIN_DECLS

gboolean consumer_is_held (PortaLock *lock);

G_END_DECLS
