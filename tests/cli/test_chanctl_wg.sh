#!/usr/bin/env bash
# A WaitGroup as a barrier across 5 processes: nobody passes `wg wait`
# before all 5 have arrived.
. "$(dirname "$0")/lib.sh" || exit 1
start_daemon

expect_out 5 wg add barrier 5
party() {
    sleep "0.$1"
    touch "$T/arrived.$1"
    ctl wg done barrier >/dev/null || exit 1
    ctl wg wait barrier --timeout 30s || exit 1
    # Past the barrier: every party has arrived.
    [ "$(ls "$T" | grep -c '^arrived\.')" = 5 ] || exit 2
}
pids=
for i in 1 2 3 4 5; do party "$i" & pids="$pids $!"; done
for p in $pids; do wait "$p" || fail "party $p exited $?"; done
expect_exit 0 wg wait barrier --timeout 1s
expect_exit 3 wg done barrier
grep -q negative_counter "$T/err" || fail "reason: $(cat "$T/err")"
expect_out 2 wg add other 2
expect_exit 124 wg wait other --timeout 100ms
expect_out 0 wg add other -2
echo "ok wg"
