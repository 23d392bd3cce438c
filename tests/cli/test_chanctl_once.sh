#!/usr/bin/env bash
# `once do` from 10 concurrent processes runs the command exactly once, and
# every other caller returns only after it has finished.
. "$(dirname "$0")/lib.sh" || exit 1
start_daemon

caller() {
    ctl once do init --timeout 30s -- sh -c "echo ran >>'$T/ran'; sleep 0.5; touch '$T/finished'" ||
        exit 1
    [ -e "$T/finished" ] || exit 2
}
pids=
for i in $(seq 1 10); do caller & pids="$pids $!"; done
for p in $pids; do wait "$p" || fail "caller $p exited $?"; done
[ "$(wc -l <"$T/ran")" = 1 ] || fail "ran $(wc -l <"$T/ran") times"
# Later callers do not run it either.
expect_exit 0 once do init -- sh -c "echo again >>'$T/ran'"
[ "$(wc -l <"$T/ran")" = 1 ] || fail "ran again"
# The runner's status is passed on.
expect_exit 3 once do other -- sh -c 'exit 3'
expect_exit 2 once do other
echo "ok once"
