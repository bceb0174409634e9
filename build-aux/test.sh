#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test.sh: install what is missing, build portalock from scratch in
# _build-test with everything on (API reference, tests, introspection)
# and warnings as errors, and run the whole test suite: the C, Python, GJS,
# CLI, example and docs tests, then the C suites again under sanitizers and
# valgrind (build-aux/sanitizers.sh), then the Windows build and its tests
# under Wine (build-aux/win32-test.sh). Exits non-zero if any stage failed.
# This is what CI runs (.ci/run).

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

builddir=_build-test

bash build-aux/deps.sh

rm -rf "$builddir"
meson setup "$builddir" \
  -Dwerror=true \
  -Dgtk_doc=true \
  -Dtests=true \
  -Dintrospection=enabled \
  -Dredis=enabled
meson compile -C "$builddir"

status=0
meson test -C "$builddir" --print-errorlogs --num-processes 2 || status=$?
if [[ $status -ne 0 ]]; then
  echo "test.sh: meson test failed (exit status $status); the full log is $builddir/meson-logs/testlog.txt"
fi

# Second stage: the C suites again under ASan+UBSan, TSan and valgrind
# (about 10 minutes). PORTALOCK_SKIP_SANITIZERS=1 leaves it out for a
# quick local run; CI always runs it.
logs=("$builddir/meson-logs/testlog.json")
if [[ ${PORTALOCK_SKIP_SANITIZERS:-0} != 1 ]]; then
  rm -rf _build-asan _build-tsan _build-valgrind
  sanitizer_status=0
  bash build-aux/sanitizers.sh || sanitizer_status=$?
  if [[ $sanitizer_status -ne 0 ]]; then
    echo "test.sh: build-aux/sanitizers.sh failed (exit status $sanitizer_status)"
    status=$sanitizer_status
  fi
  # meson names each log after the setup or wrapper it ran with.
  shopt -s nullglob
  logs+=(_build-asan/meson-logs/testlog*.json
         _build-tsan/meson-logs/testlog*.json
         _build-valgrind/meson-logs/testlog*.json)
  shopt -u nullglob
fi

# Third stage: the Windows build, cross-compiled with mingw-w64, and its C
# tests under Wine (build-aux/win32-test.sh; about 8 minutes more the first
# time, to build Windows GLib into a cache outside the checkout).
# PORTALOCK_SKIP_WIN32=1 leaves it out for a quick local run; CI always
# runs it.
if [[ ${PORTALOCK_SKIP_WIN32:-0} != 1 ]]; then
  win32_status=0
  bash build-aux/win32-test.sh || win32_status=$?
  if [[ $win32_status -ne 0 ]]; then
    echo "test.sh: build-aux/win32-test.sh failed (exit status $win32_status)"
    status=$win32_status
  fi
  logs+=(_build-win32/meson-logs/testlog.json)
fi

# One closing line in the plain "N passed, N failed, N skipped" form that
# any CI can read, counted from meson's machine-readable logs of every
# stage that ran.
/usr/bin/python3 - "${logs[@]}" <<'PY' || true
import json, os, sys
counts = {"passed": 0, "failed": 0, "skipped": 0}
kind = {"OK": "passed", "EXPECTEDFAIL": "passed", "SKIP": "skipped"}
for path in sys.argv[1:]:
    if not os.path.exists(path):
        continue
    with open(path, encoding="utf-8") as log:
        for line in log:
            if line.strip():
                counts[kind.get(json.loads(line).get("result"), "failed")] += 1
print("\nSummary: {passed} passed, {failed} failed, {skipped} skipped".format(**counts))
PY
exit "$status"
