#!/usr/bin/env bash
# Connecting as documented: a listener that never answers costs the
# connect timeout (5 s, or a shorter --timeout but at least 1 s), not
# more; a server that is not chand (HTTP, garbage, a hang-up) is named as
# such; exit 4 each.
. "$(dirname "$0")/lib.sh" || exit 1
command -v python3 >/dev/null || fail "python3 is needed for the fake servers"
here=$(cd "$(dirname "$0")" && pwd)

fake() { # MODE: starts a fake server, sets FAKE to its address
    rm -f "$T/fport"
    python3 "$here/fake_server.py" "$1" "$T/fport" &
    EXTRA_PIDS="$EXTRA_PIDS $!"
    local i
    for i in $(seq 1 500); do [ -s "$T/fport" ] && break; sleep 0.02; done
    [ -s "$T/fport" ] || fail "fake server $1 did not start"
    FAKE="127.0.0.1:$(cat "$T/fport")"
}

fake silent
expect_exit 4 -s "$FAKE" ping
grep -q "did not answer hello within 5000 ms" "$T/err" || fail "silent: $(cat "$T/err")"
grep -q "chand server" "$T/err" || fail "silent: $(cat "$T/err")"
# A shorter --timeout shortens connecting (CHAND_TIMEOUT as well), down
# to 1 s: a short wait on a channel must not fail to connect on a busy
# machine.
expect_exit 4 -s "$FAKE" --timeout 1.5s ping
grep -q "within 1500 ms" "$T/err" || fail "--timeout 1.5s: $(cat "$T/err")"
CHAND_TIMEOUT=1200ms expect_exit 4 -s "$FAKE" ping
grep -q "within 1200 ms" "$T/err" || fail "CHAND_TIMEOUT: $(cat "$T/err")"
expect_exit 4 -s "$FAKE" --timeout 0 recv q
grep -q "within 1000 ms" "$T/err" || fail "--timeout 0: $(cat "$T/err")"

fake http
expect_exit 4 -s "$FAKE" ping
grep -q "is not a chand server" "$T/err" || fail "http: $(cat "$T/err")"
grep -q "HTTP/1.1 400" "$T/err" || fail "http: what it said: $(cat "$T/err")"

fake garbage
expect_exit 4 -s "$FAKE" recv q
grep -q "is not a chand server" "$T/err" || fail "garbage: $(cat "$T/err")"

fake close
expect_exit 4 -s "$FAKE" ping
grep -q "chand server" "$T/err" || fail "close: $(cat "$T/err")"

# Nothing listening: refused at once.
expect_exit 4 -s 127.0.0.1:1 ping
grep -q "cannot connect" "$T/err" || fail "refused: $(cat "$T/err")"
echo "ok connect"
