#!/usr/bin/env bash
# chanctl's Cond, timer, goroutine and runtime commands, and the generic
# call: what each prints and its exit status.
. "$(dirname "$0")/lib.sh" || exit 1
start_daemon

expect_exit 0 make typed 1 --type number
expect_exit 0 cond signal cv
expect_exit 0 cond broadcast cv
expect_exit 124 cond wait cv cm --timeout 100ms
# A waiter in another process wakes on a signal (signals before it waits
# are lost, as in Go: keep signalling until it is gone).
"$CHANCTL_BIN" cond wait cv cm --timeout 30s &
waiter=$!
for i in $(seq 1 300); do
    ctl cond signal cv || fail "signal"
    kill -0 "$waiter" 2>/dev/null || break
    sleep 0.1
done
wait "$waiter" || fail "cond wait exited $?"
expect_exit 0 after t1 50ms
ctl recv t1 --timeout 10s >/dev/null || fail "timer did not fire"
expect_exit 0 ticker tk 20ms
ctl recv tk --timeout 10s >/dev/null || fail "ticker did not tick"
expect_out true stop tk
expect_exit 0 make af 1
ctl afterfunc 50ms close '{"name":"af"}' >/dev/null || fail "afterfunc"
expect_exit 1 recv af --timeout 10s
expect_exit 0 make gch 1
ctl go send '{"name":"gch","value":"g"}' >/dev/null || fail "go"
expect_out g recv gch --raw --timeout 10s
ctl stats | grep -q goroutines || fail "stats"
ctl dump --json | grep -q objects || fail "dump"
prev=$(ctl gomaxprocs) || fail "gomaxprocs"
expect_out "$prev" gomaxprocs 1
expect_out 1 gomaxprocs "$prev"
ctl list | grep -q '^typed' || fail "list: $(ctl list)"
expect_out '{}' call ping
expect_exit 3 call no.such
echo "ok timers and runtime"
