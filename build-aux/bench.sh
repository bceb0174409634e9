#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# bench.sh: build an optimised portalock in _build-bench and print the
# benchmark table (bench/portalock-bench) and the Python comparison
# (bench/bench_python.py), then, in a build with PortaRedisLock, the Redis
# locks beside redis-py's and portalocker's (bench/bench_redis.py, against
# a redis-server it starts on a Unix socket). Run it on an otherwise idle machine: every
# figure is measured against its kernel baseline in the same run, but the
# tail latencies feel any other load.
#
#   bench.sh [--plot] [portalock-bench arguments: --runs N, a figure's name]
#
# --plot also draws the hand-off latencies that bench_python.py and
# bench_redis.py measured into docs/bench-handoff.svg (bench/plot_handoff.py,
# no plotting library needed).

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

builddir=_build-bench

plot=false
args=()
for arg in "$@"; do
  if [[ $arg == --plot ]]; then
    plot=true
  else
    args+=("$arg")
  fi
done
samples=$(mktemp -d "${TMPDIR:-/tmp}/portalock-bench-samples-XXXXXX")
trap 'rm -rf "$samples"' EXIT

bash build-aux/deps.sh

if [[ ! -f $builddir/build.ninja ]]; then
  meson setup "$builddir" --buildtype=release -Dtests=false -Dgtk_doc=false >/dev/null
fi
meson compile -C "$builddir" >/dev/null

started=$(date -u '+%Y-%m-%d %H:%M UTC')
load=$(cut -d' ' -f1 /proc/loadavg)

"$builddir/bench/portalock-bench" ${args[@]+"${args[@]}"}
echo
GI_TYPELIB_PATH="$builddir/portalock" LD_LIBRARY_PATH="$builddir/portalock" \
  /usr/bin/python3 bench/bench_python.py --samples "$samples/files.json"

if grep -q 'PORTA_HAS_REDIS_LOCK 1' "$builddir/portalock/porta-features.h" &&
   [[ -f $builddir/portalock/Porta-1.typelib ]]; then
  echo
  GI_TYPELIB_PATH="$builddir/portalock" LD_LIBRARY_PATH="$builddir/portalock" \
    PORTALOCK_REDIS_BENCH="$builddir/bench/portalock-redis-bench" \
    /usr/bin/python3 bench/bench_redis.py --samples "$samples/redis.json"
fi

if $plot; then
  /usr/bin/python3 bench/plot_handoff.py -o docs/bench-handoff.svg \
    --note "bench.sh --plot, $started, $(nproc) CPUs, load average $load at the start; $(uname -r)" \
    "$samples"/*.json
  echo
  echo "bench.sh: drew docs/bench-handoff.svg"
fi
