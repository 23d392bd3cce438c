#!/usr/bin/env bash
# chanctl's atomic, Map and Pool commands: what each prints and its exit
# status (1 for "nothing there").
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
echo "ok commands"
