#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# sanitizers.sh: runs the C test suites under AddressSanitizer with
# UndefinedBehaviorSanitizer, under ThreadSanitizer, and under valgrind's
# memcheck, each from a build directory of its own:
#
#   _build-asan      -Db_sanitize=address,undefined, leaks checked
#   _build-tsan      -Db_sanitize=thread
#   _build-valgrind  a plain build, run with `meson test --setup valgrind`
#
# CI runs it after the main tests; it exits non-zero on the first failure
# and takes about 10 minutes on a 2-core machine. Usage:
#
#   bash build-aux/sanitizers.sh [asan|tsan|valgrind]...   (default: all three)

set -euo pipefail
cd "$(dirname "$0")/.."

# The suites that are not C: bindings and documentation.
NON_C_SUITES=(--no-suite python --no-suite gjs --no-suite docs)
COMMON_OPTIONS=(-Dgtk_doc=false -Dintrospection=disabled -Dwerror=true -Dredis=enabled)

log() {
  printf '\n=== %s (%ds)\n' "$*" "$SECONDS"
}

# Configures $1 with the remaining options, or reconfigures it if it
# exists, then builds it.
build() {
  local dir=$1
  shift
  if [ -d "$dir/meson-private" ]; then
    meson setup --reconfigure "$dir" "$@"
  else
    meson setup "$dir" "$@"
  fi
  meson compile -C "$dir"
}

run_asan() {
  log "AddressSanitizer + UndefinedBehaviorSanitizer: _build-asan"
  build _build-asan "${COMMON_OPTIONS[@]}" \
    -Db_sanitize=address,undefined -Db_lundef=false
  # Known one-time GLib allocations only: see the file (the tests' own
  # tests/lsan.supp when there is one).
  local lsan_supp=$PWD/tests/lsan.supp
  [ -f "$lsan_supp" ] || lsan_supp=$PWD/tests/stress/lsan.supp
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:fast_unwind_on_malloc=0 \
  LSAN_OPTIONS="suppressions=$lsan_supp:print_suppressions=0" \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C _build-asan "${NON_C_SUITES[@]}" --print-errorlogs
}

run_tsan() {
  log "ThreadSanitizer: _build-tsan"
  build _build-tsan "${COMMON_OPTIONS[@]}" -Db_sanitize=thread -Db_lundef=false
  # The C suites are all threaded: waiter threads, GLib's worker, tests'
  # own threads. The wrapper preloads the GMutex annotations into the test
  # programs only (see tests/stress/tsan-glib-locks.c).
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/stress/tsan.supp" \
    meson test -C _build-tsan "${NON_C_SUITES[@]}" --print-errorlogs \
      --wrapper "env LD_PRELOAD=$PWD/_build-tsan/tests/stress/libtsan-glib-locks.so"
}

run_valgrind() {
  log "valgrind memcheck: _build-valgrind"
  build _build-valgrind "${COMMON_OPTIONS[@]}"
  if meson test -C _build-valgrind --setup valgrind --list >/dev/null 2>&1; then
    meson test -C _build-valgrind --setup valgrind "${NON_C_SUITES[@]}" --print-errorlogs
  else
    # No valgrind setup in tests/meson.build: the same options by hand.
    local supp=()
    if [ -f /usr/share/glib-2.0/valgrind/glib.supp ]; then
      supp=(--suppressions=/usr/share/glib-2.0/valgrind/glib.supp)
    fi
    PORTA_TEST_TIME_FACTOR=10 PORTA_TEST_VALGRIND=1 \
      meson test -C _build-valgrind "${NON_C_SUITES[@]}" --print-errorlogs \
        --timeout-multiplier 10 \
        --wrapper "valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite --num-callers=30 ${supp[*]}"
  fi
}

if ! command -v valgrind >/dev/null; then
  echo "sanitizers.sh: valgrind is not installed" >&2
  exit 1
fi

steps=("$@")
if [ ${#steps[@]} -eq 0 ]; then
  steps=(asan tsan valgrind)
fi
for step in "${steps[@]}"; do
  case $step in
    asan) run_asan ;;
    tsan) run_tsan ;;
    valgrind) run_valgrind ;;
    *) echo "sanitizers.sh: unknown step '$step' (asan, tsan or valgrind)" >&2; exit 2 ;;
  esac
done
log "all sanitizer runs passed"
