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
_build/examples/portalock-demo "$@"

# The same lock from the shell, with the portalock command: a job holds the
# lock for a second while a second one is refused, one waits for it, and
# --status tells who holds it.
tool=_build/tools/portalock
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
lockfile=$dir/job.lock
echo
echo "==> $tool (the command-line tool) on $lockfile"
"$tool" "$lockfile" -c 'echo "job 1: running with the lock for 1 s"; sleep 1; echo "job 1: done"' &
job=$!
for _ in $(seq 50); do
  "$tool" --status "$lockfile" >/dev/null || break
  sleep 0.02
done
"$tool" --status "$lockfile" || true
"$tool" -n -E 75 "$lockfile" echo "job 2: never runs" || echo "job 2: refused at once with -n (exit $?)"
"$tool" --verbose -w 5 "$lockfile" echo "job 3: ran as soon as job 1 released the lock"
wait "$job"
# flock(1)'s descriptor form: a section of this shell under the lock.
(
  "$tool" -n 9 || exit 1
  echo "job 4: a section of the shell under the lock (the 9> form of flock(1))"
  "$tool" -n "$lockfile" true || echo "job 4: meanwhile another job is refused (exit $?)"
) 9>"$lockfile"

# The same across machines: a lock on a Redis server (a private one here,
# on a Unix socket in the demo's folder), as a distributed cron job takes
# it. Only when this build has the Redis lock (hiredis was found).
if grep -q 'define PORTA_HAS_REDIS_LOCK 1' _build/portalock/porta-features.h 2>/dev/null &&
   command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
  sock=$dir/redis.sock
  redis-server --port 0 --unixsocket "$sock" --unixsocketperm 700 --dir "$dir" \
    --save '' --appendonly no >/dev/null &
  server=$!
  trap 'redis-cli -s "$sock" shutdown nosave >/dev/null 2>&1 || kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$dir"' EXIT
  for _ in $(seq 250); do
    [[ $(redis-cli -s "$sock" ping 2>/dev/null) == PONG ]] && break
    sleep 0.02
  done
  echo
  echo "==> $tool --redis=unix://$sock (a lock on a private redis-server)"
  "$tool" --redis="unix://$sock" nightly -c 'echo "job A: holds the Redis lock, fencing token $PORTALOCK_FENCING_TOKEN"; sleep 1; echo "job A: done"' &
  job=$!
  sleep 0.3
  "$tool" --redis="unix://$sock" -n nightly echo "job B: never runs" || echo "job B: refused at once with -n (exit $?)"
  "$tool" --redis="unix://$sock" --verbose -w 5 nightly \
    -c 'echo "job C: got it when job A let go, fencing token $PORTALOCK_FENCING_TOKEN"'
  wait "$job"
fi
