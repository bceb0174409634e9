#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# demo.sh: install what is missing, build portalock in _build and run the
# demo program, examples/portalock-demo.c.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash build-aux/deps.sh

# Keep an existing build folder (and its options), as long as meson set
# it up completely; anything else is set up anew.
if [[ -f _build/meson-private/coredata.dat ]]; then
  meson setup --reconfigure _build -Dwerror=true
else
  rm -rf _build
  meson setup _build -Dwerror=true
fi
meson compile -C _build

echo
echo "==> _build/examples/portalock-demo"
exec _build/examples/portalock-demo "$@"
