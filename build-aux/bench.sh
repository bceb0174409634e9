#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# bench.sh: build an optimised portalock in _build-bench and print the
# benchmark table (bench/portalock-bench) and the Python comparison
# (bench/bench_python.py), then, in a build with PortaRedisLock, the Redis
# locks beside redis-py's and portalocker's (bench/bench_redis.py, against
# a redis-server it starts on a Unix socket). Run it on an otherwise idle
# machine: every figure is measured against its kernel baseline in the same
# run, but the tail latencies feel any other load.
#
#   bench.sh [--plot] [portalock-bench arguments: --runs N, a figure's name]
#
# Each program states its targets as ratios to a baseline of the same run
# and prints PASS or MISS beside each figure that has one (the median over
# the rounds: 9 by default; --runs N goes to bench_python.py too). bench.sh
# runs them all, then exits 1 if any figure missed its target. It is a
# check for a person to run, not part of the test suite.
#
# --plot also draws the hand-off latencies that bench_python.py and
# bench_redis.py measured into docs/bench-handoff.svg (bench/plot_handoff.py,
# no plotting library needed).

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

builddir=_build-bench

plot=false
args=()
python_args=()
next_is_runs=false
for arg in "$@"; do
  if [[ $arg == --plot ]]; then
    plot=true
    continue
  fi
  args+=("$arg")
  if $next_is_runs; then
    python_args+=(--runs "$arg")
    next_is_runs=false
  elif [[ $arg == --runs ]]; then
    next_is_runs=true
  elif [[ $arg == --runs=* ]]; then
    python_args+=(--runs "${arg#--runs=}")
  fi
done
missed=()
samples=$(mktemp -d "${TMPDIR:-/tmp}/portalock-bench-samples-XXXXXX")
trap 'rm -rf "$samples"' EXIT

bash build-aux/deps.sh

if [[ ! -f $builddir/build.ninja ]]; then
  meson setup "$builddir" --buildtype=release -Dtests=false -Dgtk_doc=false >/dev/null
fi
meson compile -C "$builddir" >/dev/null

started=$(date -u '+%Y-%m-%d %H:%M UTC')
load=$(cut -d' ' -f1 /proc/loadavg)

"$builddir/bench/portalock-bench" ${args[@]+"${args[@]}"} || missed+=(portalock-bench)
echo
GI_TYPELIB_PATH="$builddir/portalock" LD_LIBRARY_PATH="$builddir/portalock" \
  /usr/bin/python3 bench/bench_python.py ${python_args[@]+"${python_args[@]}"} \
  --samples "$samples/files.json" || missed+=(bench_python.py)

if grep -q 'PORTA_HAS_REDIS_LOCK 1' "$builddir/portalock/porta-features.h" &&
   [[ -f $builddir/portalock/Porta-1.typelib ]]; then
  echo
  GI_TYPELIB_PATH="$builddir/portalock" LD_LIBRARY_PATH="$builddir/portalock" \
    PORTALOCK_REDIS_BENCH="$builddir/bench/portalock-redis-bench" \
    /usr/bin/python3 bench/bench_redis.py --samples "$samples/redis.json" ||
    missed+=(bench_redis.py)
fi

if $plot; then
  /usr/bin/python3 bench/plot_handoff.py -o docs/bench-handoff.svg \
    --note "bench.sh --plot, $started, $(nproc) CPUs, load average $load at the start; $(uname -r)" \
    "$samples"/*.json
  echo
  echo "bench.sh: drew docs/bench-handoff.svg"
fi

if (( ${#missed[@]} )); then
  echo
  echo "bench.sh: MISS: ${missed[*]} reported a figure that missed its target (or failed)"
  exit 1
fi
echo
echo "bench.sh: every figure with a target met it"
