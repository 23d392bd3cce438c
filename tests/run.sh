#!/usr/bin/env bash
# Runs every test: the cmocka unit and end-to-end programs under $BUILD/tests
# (the daemon's suites twice: one I/O thread, then two), then the shell tests
# in tests/cli.  Each program runs alone, in its own process group, with a
# time limit (TEST_TIMEOUT seconds, default 300); whatever it leaves running
# is killed when it ends, so no test process outlives the run.
#
# Counts test cases, not programs: cmocka programs report each case (TAP,
# "ok N - name" / "not ok N - name"), and so may shell tests (tests/cli/lib.sh
# case_ok); a program that reports no case counts as one.  A case a program
# announced but never reported (it crashed or aborted) counts as failed, and so
# does a program that exits non-zero with every case passed (a teardown).
#
#   TESTS="pattern ..."   only the programs whose name contains a pattern
#                         (e.g. TESTS=e2e/test_faults, TESTS="unit/ cli/")
#   TEST_TIMEOUT=300      seconds per program
#   V=1                   list every case, not only the failed ones
#
# Prints one line per program and closes with "N passed, M failed" (cases)
# alone on a line, then how to run one suite again.
set -u
BUILD=${BUILD:-build}
LIMIT=${TEST_TIMEOUT:-300}
top=$(cd "$(dirname "$0")/.." && pwd)
export CHAND_BIN="$top/$BUILD/chand" CHANCTL_BIN="$top/$BUILD/chanctl" BUILD
export CMOCKA_MESSAGE_OUTPUT=TAP
pass=0; fail=0; skip=0; progs=0; failed=()
tmp=$(mktemp -d)
current=     # the process group of the program running now
cleanup() {
    [ -n "$current" ] && kill -KILL -- "-$current" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo; echo "interrupted"; exit 130' INT TERM
# CHAND_WRAP="valgrind ..." runs every daemon the tests start under that
# command (a wrapper script stands in for $CHAND_BIN; tests run from $top).
if [ -n "${CHAND_WRAP:-}" ]; then
    printf '#!/bin/sh\ncd "%s" && exec %s "%s" "$@"\n' "$top" "$CHAND_WRAP" \
        "$CHAND_BIN" >"$tmp/chand"
    chmod +x "$tmp/chand"
    export CHAND_BIN="$tmp/chand"
fi

selected() {
    local p
    [ -z "${TESTS:-}" ] && return 0
    for p in $TESTS; do
        [[ "$1" == *"$p"* ]] && return 0
    done
    return 1
}

# count LOG: sets c_pass c_fail c_skip c_names (failed case names) from the
# TAP lines in LOG.
count() {
    local plan=0 seen=0 line
    c_pass=0; c_fail=0; c_skip=0; c_names=()
    while IFS= read -r line; do
        case "$line" in
        1..*) plan=$((plan + ${line#1..})) ;;
        "ok "*" # SKIP"* | "not ok "*" # SKIP"*)
            c_skip=$((c_skip + 1)); seen=$((seen + 1)) ;;
        "ok "[0-9]*) c_pass=$((c_pass + 1)); seen=$((seen + 1))
            [ "${V:-0}" = 1 ] && echo "     $line" ;;
        "not ok "[0-9]*) c_fail=$((c_fail + 1)); seen=$((seen + 1))
            c_names+=("${line#not ok }") ;;
        esac
    done <"$1"
    if [ "$seen" -lt "$plan" ]; then
        c_fail=$((c_fail + plan - seen))
        c_names+=("$((plan - seen)) case(s) never reported (crash, abort or timeout)")
    fi
}

run_one() {
    local name=$1; shift
    selected "$name" || return 0
    local log="$tmp/log" t0=$SECONDS rc
    progs=$((progs + 1))
    # timeout(1) makes itself the leader of a new process group: the test,
    # its daemons and children are all in group $current.
    timeout -k 10 "$LIMIT" "$@" >"$log" 2>&1 &
    current=$!
    { wait "$current"; } 2>/dev/null; rc=$?
    kill -KILL -- "-$current" 2>/dev/null
    current=
    count "$log"
    if [ $((c_pass + c_fail + c_skip)) -eq 0 ]; then
        if [ "$rc" -eq 0 ]; then c_pass=1; else c_fail=1; fi
    elif [ "$rc" -ne 0 ] && [ "$c_fail" -eq 0 ]; then
        c_fail=1; c_names+=("(the program exited $rc)")
    fi
    [ "$rc" -eq 124 ] && c_names+=("(timed out after ${LIMIT}s)")
    pass=$((pass + c_pass)); fail=$((fail + c_fail)); skip=$((skip + c_skip))
    local cases="$c_pass/$((c_pass + c_fail)) cases"
    [ "$c_skip" -gt 0 ] && cases="$cases, $c_skip skipped"
    if [ "$c_fail" -eq 0 ]; then
        echo "ok   $name ($cases, $((SECONDS - t0))s)"
    else
        failed+=("$name")
        echo "FAIL $name ($cases, exit $rc, $((SECONDS - t0))s)"
        local n
        for n in "${c_names[@]}"; do echo "     not ok $n"; done
        tail -n 40 "$log" | sed 's/^/     | /'
    fi
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
[ "$progs" -eq 0 ] && echo "no test matches TESTS='${TESTS:-}'"
[ "$skip" -gt 0 ] && echo "($skip cases skipped)"
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed"
if [ ${#failed[@]} -gt 0 ]; then
    suite=${failed[0]%%\[*}
    echo "run one suite again: TESTS=$suite make test"
else
    echo "run one suite: TESTS=e2e/test_faults make test (any part of a name)"
fi
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
