#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# win32-test.sh: cross-builds portalock for Windows (x86_64, mingw-w64)
# with warnings as errors, and runs its C test suite under Wine, headless.
#
# build-aux/win32-deps.sh first installs mingw-w64 and Wine and builds a
# Windows GLib 2.74 from Debian's source packages, once, into a cache
# outside the checkout (PORTALOCK_WIN32_CACHE, default
# /var/cache/portalock-win32; about 8 minutes the first time), and writes
# the meson cross file that runs the test programs through Wine.
#
# The build goes to _build-win32. What runs there, and what Wine cannot
# show, is in README.md (Platforms). test.sh runs this as its last stage.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

builddir=_build-win32
cache=${PORTALOCK_WIN32_CACHE:-/var/cache/portalock-win32}

bash build-aux/win32-deps.sh

rm -rf "$builddir"
meson setup "$builddir" \
  --cross-file "$cache/cross-mingw64.txt" \
  -Dwerror=true \
  -Dtests=true \
  -Dintrospection=disabled \
  -Dvapi=disabled \
  -Dgtk_doc=false
meson compile -C "$builddir"

# Each test program starts a wineserver that ends with it. (A persistent
# one, `wineserver -p`, would save about a second a program, but then
# test-lock's Wine process does not exit after its last test.)
meson test -C "$builddir" --print-errorlogs --num-processes 1
