#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# deps.sh: install what portalock needs to build and test, on Debian 12.
#
# Installs only the packages that are missing, without recommended
# packages, and says nothing when everything is already there. Run it as
# root; run as another user it lists what is missing and fails.
#
# Extra packages can be added for one run with PORTALOCK_EXTRA_DEPS="a b".

set -euo pipefail

packages=(
  # build
  meson
  ninja-build
  pkg-config
  gcc
  libc6-dev
  libglib2.0-dev       # glib, gobject, gio, gio-unix; pulls libglib2.0-dev-bin (glib-mkenums)
  libglib2.0-bin       # gio, gsettings and friends used by the tests
  gettext              # msgfmt, xgettext for po/
  # introspection, Vala binding
  gobject-introspection
  libgirepository1.0-dev
  gir1.2-glib-2.0
  valac                # vapigen
  # API reference: gtkdoc-mkhtml runs xsltproc on the DocBook XSL
  # stylesheets and DTDs, resolved offline through /etc/xml/catalog.
  gtk-doc-tools
  docbook-xml
  docbook-xsl
  xsltproc
  libglib2.0-doc       # GLib's own reference, which ours links to (fixxref --extra-dir)
  # tests: the bindings and the programs portalock must interoperate with
  gjs
  python3              # /usr/bin/python3, which PyGObject is built for
  python3-gi
  python3-portalocker
  python3-redis        # bench/bench_redis.py: redis-py's Lock, portalocker's RedisLock
  python3-filelock
  util-linux           # flock(1)
  valgrind
  # PortaRedisLock: hiredis's reply reader and formatter to build; a real
  # redis-server (TLS-capable) and redis-cli for its tests
  libhiredis-dev
  redis-server
  redis-tools
  openssl              # the TLS test's self-signed CA
  glib-networking      # GIO's TLS backend, for rediss://
)

if [[ -n "${PORTALOCK_EXTRA_DEPS:-}" ]]; then
  read -r -a extra <<< "$PORTALOCK_EXTRA_DEPS"
  packages+=("${extra[@]}")
fi

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "deps.sh: these Debian packages are missing:" >&2
  echo "  ${missing[*]}" >&2
  echo "deps.sh: install them as root, for example with:" >&2
  echo "  sudo apt-get install --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
