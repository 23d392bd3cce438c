#!/usr/bin/env bash
# Every documented exit code of chanctl, --help on every command, the
# flag > environment > default order, and a smoke run of each family.
. "$(dirname "$0")/lib.sh" || exit 1

# Usage errors (2) and help (0) need no server.
CHAND_SERVER=127.0.0.1:1 expect_exit 0 --help
grep -q '124' "$T/out" || fail "--help lacks the exit codes"
expect_exit 2
expect_exit 0 --version
grep -q '^chanctl ' "$T/out" || fail "--version: $(cat "$T/out")"
expect_exit 2 no-such-command
expect_exit 2 send onlyname
expect_exit 2 --timeout 5parsecs recv q
expect_exit 2 recv q --bogus-option
expect_exit 2 mutex
expect_exit 2 mutex run m
expect_exit 2 recv q --lease 1s
grep -q 'Try' "$T/err" || fail "usage error without a hint"
# 4: cannot connect (flag beats environment, environment beats default).
expect_exit 4 -s 127.0.0.1:1 ping
start_daemon
CHAND_SERVER=127.0.0.1:1 expect_exit 0 -s "$CHAND_SERVER" ping
CHAND_SERVER=127.0.0.1:1 expect_exit 4 ping
expect_out pong ping
# Host names and IPv6 addresses.
expect_out pong -s "localhost:$CHAND_PORT" ping
if grep -q '00000000000000000000000000000001' /proc/net/if_inet6 2>/dev/null; then
    "$CHAND_BIN" --bind ::1 --port 0 --port-file "$T/port6" >"$T/chand6.log" 2>&1 &
    EXTRA_PIDS=$!
    for i in $(seq 1 500); do [ -s "$T/port6" ] && break; sleep 0.02; done
    [ -s "$T/port6" ] || fail "IPv6 daemon did not start: $(cat "$T/chand6.log")"
    expect_out pong -s "[::1]:$(cat "$T/port6")" ping
fi

# 0 / 1 / 124 / 3 on channels.
expect_exit 0 make q 1
expect_exit 124 recv q --timeout 100ms
expect_exit 124 recv q --timeout 0.1       # a bare number is seconds
expect_exit 124 recv q -t 0
expect_exit 124 recv q --timeout=0.05s
expect_exit 0 --timeout inf len q
CHAND_TIMEOUT=100ms expect_exit 124 recv q
CHAND_TIMEOUT=bogus expect_exit 124 recv q --timeout 50ms
CHAND_TIMEOUT=bogus expect_exit 2 recv q
expect_exit 0 send q v
expect_exit 124 send q w --timeout 0
expect_exit 0 close q
expect_out '"v"' recv q
expect_exit 1 recv q
expect_exit 1 send q x
grep -q 'send on closed channel' "$T/err" || fail "message: $(cat "$T/err")"
expect_exit 1 close q
# make finds q closed: it says so and exits 1, as send does.
expect_exit 1 make q 1
grep -qx 'chanctl: make: channel "q" exists and is closed (drop it to start over)' "$T/err" ||
    fail "make on closed: $(cat "$T/err")"
expect_exit 1 -q make q 1
expect_exit 3 make q 5
grep -q 'exists with cap 1 and type any, and is closed (exists)' "$T/err" ||
    fail "make other cap on closed: $(cat "$T/err")"
expect_exit 3 recv nosuch
grep -q not_found "$T/err" || fail "reason: $(cat "$T/err")"
expect_exit 3 make typed 1 --type nonsense
expect_exit 0 make typed 1 --type number
expect_exit 3 send typed abc
expect_out '0 1 0' len q
expect_exit 0 drop q
expect_exit 3 len q
expect_exit 0 make q 1  # drop started over: open again
[ ! -s "$T/err" ] || fail "make after drop said: $(cat "$T/err")"
expect_exit 0 make q 1

# Each family once, with its output.
expect_out '{"len":0,"cap":1,"inflight":0}' --json len typed
echo "ok exit codes"
