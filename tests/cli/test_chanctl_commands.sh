#!/usr/bin/env bash
# A smoke run of every command family through chanctl, checking what each
# prints and its exit status (1 for "nothing there").
. "$(dirname "$0")/lib.sh" || exit 1
start_daemon

expect_exit 0 make typed 1 --type number
expect_out 3 atomic add hits 3
expect_out 2 atomic add hits -1
expect_out 2 atomic swap hits 10
expect_out true atomic cas hits 10 11
expect_exit 1 atomic cas hits 10 12
expect_out 11 atomic load hits
expect_exit 0 atomic store hits 0
expect_exit 0 map store cfg mode fast
expect_out '"fast"' map load cfg mode
expect_out fast map load cfg mode --raw
expect_exit 1 map load cfg nokey
expect_out '"fast"' map load-or-store cfg mode slow
expect_out '"fast"' map swap cfg mode '{"x":1}'
expect_out true map cas cfg mode '{"x":1}' 5
expect_out "$(printf 'mode\t5')" map range cfg
expect_out 1 map len cfg
expect_out 5 map load-and-delete cfg mode
expect_exit 1 map cad cfg mode 5
expect_exit 0 map clear cfg
expect_exit 1 pool get bufs
expect_exit 0 pool put bufs '[1,2]'
expect_out '[1,2]' pool get bufs
echo '{"from":"stdin"}' | expect_out '' map store cfg k -
expect_out '{"from":"stdin"}' map load cfg k
expect_exit 0 cond signal cv
expect_exit 0 cond broadcast cv
expect_exit 124 cond wait cv cm --timeout 100ms
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
echo "ok commands"
