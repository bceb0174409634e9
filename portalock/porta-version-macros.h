/* porta-version-macros.h: symbol visibility and availability
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined (PORTALOCK_INSIDE) && !defined (PORTALOCK_COMPILATION)
# error "Only <portalock/portalock.h> can be included directly."
#endif

#include <glib.h>

#include <portalock/porta-version.h>

#ifndef _PORTA_EXTERN
# if defined (_WIN32) && defined (PORTALOCK_COMPILATION)
#  define _PORTA_EXTERN __declspec(dllexport) extern
# elif defined (__GNUC__)
#  define _PORTA_EXTERN __attribute__((visibility("default"))) extern
# else
#  define _PORTA_EXTERN extern
# endif
#endif

#define PORTA_VERSION_1_0 (PORTA_ENCODE_VERSION (1, 0, 0))
#define PORTA_VERSION_1_2 (PORTA_ENCODE_VERSION (1, 2, 0))

#ifndef PORTA_VERSION_MIN_REQUIRED
# define PORTA_VERSION_MIN_REQUIRED PORTA_VERSION_1_0
#endif

#ifndef PORTA_VERSION_MAX_ALLOWED
# define PORTA_VERSION_MAX_ALLOWED PORTA_VERSION_HEX
#endif

#ifdef PORTA_DISABLE_DEPRECATION_WARNINGS
# define PORTA_DEPRECATED _PORTA_EXTERN
# define PORTA_DEPRECATED_FOR(f) _PORTA_EXTERN
# define PORTA_UNAVAILABLE(maj,min) _PORTA_EXTERN
#else
# define PORTA_DEPRECATED G_DEPRECATED _PORTA_EXTERN
# define PORTA_DEPRECATED_FOR(f) G_DEPRECATED_FOR (f) _PORTA_EXTERN
# define PORTA_UNAVAILABLE(maj,min) G_UNAVAILABLE (maj, min) _PORTA_EXTERN
#endif

#define PORTA_AVAILABLE_IN_ALL _PORTA_EXTERN

#if PORTA_VERSION_MAX_ALLOWED < PORTA_VERSION_1_0
# define PORTA_AVAILABLE_IN_1_0 PORTA_UNAVAILABLE (1, 0)
#else
# define PORTA_AVAILABLE_IN_1_0 _PORTA_EXTERN
#endif

#if PORTA_VERSION_MAX_ALLOWED < PORTA_VERSION_1_2
# define PORTA_AVAILABLE_IN_1_2 PORTA_UNAVAILABLE (1, 2)
#else
# define PORTA_AVAILABLE_IN_1_2 _PORTA_EXTERN
#endif
