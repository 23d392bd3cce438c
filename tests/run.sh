#!/usr/bin/env bash
# Runs every test: the cmocka unit and end-to-end binaries under $BUILD/tests,
# then the CLI shell tests in tests/cli.  Each runs alone with a time limit.
# TESTS=pattern limits the run to test names matching the pattern.
# Prints one line per test and closes with "N passed, N failed".
set -u
BUILD=${BUILD:-build}
LIMIT=${TEST_TIMEOUT:-300}
pass=0; fail=0; failed=()
top=$(cd "$(dirname "$0")/.." && pwd)
export CHAND_BIN="$top/$BUILD/chand" CHANCTL_BIN="$top/$BUILD/chanctl" BUILD
export CMOCKA_MESSAGE_OUTPUT=${CMOCKA_MESSAGE_OUTPUT:-STDOUT}
# CHAND_WRAP="valgrind ..." runs every daemon the tests start under that
# command (a wrapper script stands in for $CHAND_BIN; tests run from $top).
if [ -n "${CHAND_WRAP:-}" ]; then
    wrapdir=$(mktemp -d)
    trap 'rm -rf "$wrapdir"' EXIT
    printf '#!/bin/sh\ncd "%s" && exec %s "%s" "$@"\n' "$top" "$CHAND_WRAP" \
        "$CHAND_BIN" >"$wrapdir/chand"
    chmod +x "$wrapdir/chand"
    export CHAND_BIN="$wrapdir/chand"
fi

run_one() {
    local name=$1; shift
    if [ -n "${TESTS:-}" ] && [[ "$name" != *${TESTS}* ]]; then return; fi
    local log; log=$(mktemp)
    local t0=$SECONDS
    if timeout -k 10 "$LIMIT" "$@" >"$log" 2>&1; then
        pass=$((pass + 1)); echo "ok   $name ($((SECONDS - t0))s)"
    else
        local rc=$?
        fail=$((fail + 1)); failed+=("$name")
        echo "FAIL $name (exit $rc, $((SECONDS - t0))s)"; tail -n 40 "$log" | sed 's/^/     /'
    fi
    rm -f "$log"
}

for t in "$top/$BUILD"/tests/unit/test_* "$top/$BUILD"/tests/e2e/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.d|*.o) continue;; esac
    run_one "$(basename "$(dirname "$t")")/$(basename "$t")" "$t"
done
# The daemon's suites again with two I/O threads (the default is one), so
# that sessions served by different threads meet in every family.
for t in "$top/$BUILD"/tests/e2e/test_daemon_* "$top/$BUILD"/tests/e2e/test_faults \
         "$top/$BUILD"/tests/e2e/test_hostile; do
    [ -x "$t" ] || continue
    case "$t" in *.d|*.o) continue;; esac
    CHAND_IO_THREADS=2 run_one "e2e/$(basename "$t")[io-threads=2]" "$t"
done
for t in "$top"/tests/cli/test_*.sh; do
    [ -f "$t" ] || continue
    run_one "cli/$(basename "$t")" bash "$t"
done

echo
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
