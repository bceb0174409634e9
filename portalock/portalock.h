/* portalock.h: the umbrella header of portalock
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#define PORTALOCK_INSIDE

#include <portalock/porta-version.h>
#include <portalock/porta-version-macros.h>
#include <portalock/porta-types.h>
#include <portalock/porta-enums.h>
#include <portalock/porta-lockable.h>
#include <portalock/porta-lock.h>
#include <portalock/porta-fd.h>
#include <portalock/porta-pid-file.h>
#include <portalock/porta-semaphore.h>
#include <portalock/porta-features.h>
#if PORTA_HAS_REDIS_LOCK
# include <portalock/porta-redis-lock.h>
#endif

#undef PORTALOCK_INSIDE
