#!/usr/bin/env bash
# select from the shell: --default, a timeout, a ready receive and send.
. "$(dirname "$0")/lib.sh" || exit 1
start_daemon

ctl make a 1 && ctl make b 1 || fail "make"
expect_out "-1" select recv:a recv:b --default
expect_exit 124 select recv:a recv:b --timeout 200ms
grep -q timeout "$T/err" || fail "timeout message: $(cat "$T/err")"
ctl send b '"x"' || fail "send b"
expect_out "$(printf '1\t"x"')" select recv:a recv:b --timeout 5s
ctl send b y || fail "send b"
expect_out "$(printf '1\ty')" select recv:a recv:b --raw
# a is empty with room: the send case is the one ready.
expect_out "0" select send:a=7 recv:b --default
expect_out "7" recv a
ctl --json select recv:a send:b=1 >"$T/json" || fail "select --json"
[ "$(cat "$T/json")" = '{"index":1}' ] || fail "select --json: $(cat "$T/json")"
# A blocked select wakes up when a value arrives.
(sleep 0.3; ctl send a late) &
sender=$!
expect_out "$(printf '0\t"late"')" select recv:a --timeout 10s
wait $sender || fail "late sender failed"
# A closed channel's receive case: exit 1.
ctl close a || fail "close a"
expect_exit 1 select recv:a --timeout 5s
expect_exit 2 select bogus:a
expect_exit 2 select send:a
echo "ok select"
