# lib.sh - shared by tests/cli/test_*.sh: starts a private chand on
# 127.0.0.1 and a free port (--port 0 --port-file), points chanctl at it
# through CHAND_SERVER, and stops it by pid when the script exits.
# tests/run.sh sets CHAND_BIN and CHANCTL_BIN; defaults suit a manual run
# from the top of the tree.
set -u
CHAND_BIN=${CHAND_BIN:-$PWD/build/chand}
CHANCTL_BIN=${CHANCTL_BIN:-$PWD/build/chanctl}
unset CHAND_TIMEOUT
T=$(mktemp -d /tmp/chanctl-test.XXXXXX)
CHAND_PID=
EXTRA_PIDS=         # more daemons a script started; stopped the same way
CASE_N=0            # cases reported so far (case_ok)

# case_ok NAME: reports one passed case as a TAP line ("ok N - NAME"), which
# tests/run.sh counts; a script that reports none counts as one case.
case_ok() {
    CASE_N=$((CASE_N + 1))
    echo "ok $CASE_N - $*"
}

fail() {
    echo "not ok $((CASE_N + 1)) - $*"
    echo "FAIL: $*" >&2
    if [ -f "$T/chand.log" ]; then
        echo "--- daemon log (tail)" >&2
        tail -n 20 "$T/chand.log" >&2
    fi
    exit 1
}

cleanup() {
    local p
    for p in $CHAND_PID $EXTRA_PIDS; do
        kill "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    rm -rf "$T"
}
trap cleanup EXIT

# Starts the daemon and exports CHAND_SERVER for chanctl.
start_daemon() {
    [ -x "$CHAND_BIN" ] || fail "no daemon at $CHAND_BIN"
    [ -x "$CHANCTL_BIN" ] || fail "no chanctl at $CHANCTL_BIN"
    "$CHAND_BIN" --bind 127.0.0.1 --port 0 --port-file "$T/port" \
        >"$T/chand.log" 2>&1 &
    CHAND_PID=$!
    local i
    for i in $(seq 1 500); do
        if [ -s "$T/port" ]; then
            CHAND_PORT=$(cat "$T/port")
            export CHAND_SERVER="127.0.0.1:$CHAND_PORT"
            return 0
        fi
        kill -0 "$CHAND_PID" 2>/dev/null || fail "daemon exited at start"
        sleep 0.02
    done
    fail "daemon did not write its port file"
}

ctl() {
    "$CHANCTL_BIN" "$@"
}

# expect_exit CODE ARGS...: runs chanctl ARGS and checks its exit status.
expect_exit() {
    local want=$1 got
    shift
    "$CHANCTL_BIN" "$@" >"$T/out" 2>"$T/err"
    got=$?
    if [ "$got" != "$want" ]; then
        echo "stdout: $(cat "$T/out")" >&2
        echo "stderr: $(cat "$T/err")" >&2
        fail "chanctl $* exited $got, want $want"
    fi
}

# expect_out TEXT ARGS...: runs chanctl ARGS (exit 0) and checks stdout.
expect_out() {
    local want=$1 got
    shift
    got=$("$CHANCTL_BIN" "$@" 2>"$T/err") ||
        fail "chanctl $* exited $?: $(cat "$T/err")"
    [ "$got" = "$want" ] || fail "chanctl $*: got '$got', want '$want'"
}
