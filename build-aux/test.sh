#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# test.sh: install what is missing, build portalock from scratch in
# _build-test with everything on (API reference, tests, introspection)
# and warnings as errors, and run the whole test suite. Exits with the
# status of `meson test`. This is what CI runs (.ci/run).

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

builddir=_build-test

bash build-aux/deps.sh

rm -rf "$builddir"
meson setup "$builddir" \
  -Dwerror=true \
  -Dgtk_doc=true \
  -Dtests=true \
  -Dintrospection=enabled
meson compile -C "$builddir"

status=0
meson test -C "$builddir" --print-errorlogs --num-processes 2 || status=$?
if [[ $status -ne 0 ]]; then
  echo "test.sh: meson test failed (exit status $status); the full log is $builddir/meson-logs/testlog.txt"
fi

# One closing line in the plain "N passed, N failed, N skipped" form that
# any CI can read, counted from meson's machine-readable log.
if [[ -f "$builddir/meson-logs/testlog.json" ]]; then
  /usr/bin/python3 - "$builddir/meson-logs/testlog.json" <<'PY' || true
import json, sys
counts = {"passed": 0, "failed": 0, "skipped": 0}
kind = {"OK": "passed", "EXPECTEDFAIL": "passed", "SKIP": "skipped"}
with open(sys.argv[1], encoding="utf-8") as log:
    for line in log:
        if line.strip():
            counts[kind.get(json.loads(line).get("result"), "failed")] += 1
print("\nSummary: {passed} passed, {failed} failed, {skipped} skipped".format(**counts))
PY
fi
exit "$status"
