#!/usr/bin/env bash
# Safe runs: when `mutex run`, `rwmutex run` or `once do` loses its hold
# while the command runs (the connection to the daemon is lost; with
# --lease, the lease runs out), the command gets SIGTERM, SIGKILL after
# --grace, and chanctl exits 125.  A run that keeps its hold is as before.
. "$(dirname "$0")/lib.sh" || exit 1
start_daemon

# wait_file FILE: polls until FILE exists.
wait_file() {
    local i
    for i in $(seq 1 500); do [ -e "$1" ] && return 0; sleep 0.02; done
    fail "$1 never appeared"
}
stop_daemon() {
    kill "$CHAND_PID"; wait "$CHAND_PID" 2>/dev/null; CHAND_PID=
}
restart_daemon() { rm -f "$T/port"; start_daemon; }

# A command that says it started, and on SIGTERM says so and leaves.
polite="$T/polite.sh"
cat >"$polite" <<'EOS'
#!/bin/sh
trap 'echo term >"$1/term"; exit 0' TERM
touch "$1/started"
while :; do sleep 0.05; done
EOS
# One that ignores SIGTERM.
stubborn="$T/stubborn.sh"
cat >"$stubborn" <<'EOS'
#!/bin/sh
trap '' TERM
echo $$ >"$1/pid"
touch "$1/started"
while :; do sleep 0.05; done
EOS
chmod +x "$polite" "$stubborn"
reset_marks() { rm -f "$T/started" "$T/term" "$T/pid"; }

# 1. The daemon goes away under mutex run: SIGTERM, exit 125.
reset_marks
ctl mutex run deploy -- "$polite" "$T" >"$T/out" 2>"$T/err" & run=$!
EXTRA_PIDS="$EXTRA_PIDS $run"
wait_file "$T/started"
stop_daemon
wait "$run"; rc=$?
[ "$rc" = 125 ] || fail "mutex run after the daemon stopped exited $rc: $(cat "$T/err")"
[ -e "$T/term" ] || fail "the command got no SIGTERM"
grep -q "lost the lock" "$T/err" || fail "no word of the lost lock: $(cat "$T/err")"
restart_daemon

# 2. A command that ignores SIGTERM is killed after --grace.
reset_marks
ctl mutex run deploy --grace 200ms -- "$stubborn" "$T" >"$T/out" 2>"$T/err" & run=$!
EXTRA_PIDS="$EXTRA_PIDS $run"
wait_file "$T/started"
child=$(cat "$T/pid")
stop_daemon
wait "$run"; rc=$?
[ "$rc" = 125 ] || fail "mutex run --grace exited $rc: $(cat "$T/err")"
grep -q "SIGKILL" "$T/err" || fail "no SIGKILL said: $(cat "$T/err")"
! kill -0 "$child" 2>/dev/null || fail "the stubborn command is still running"
grep -q "after 200ms" "$T/err" || fail "grace not as given: $(cat "$T/err")"
restart_daemon

# 3. once do: the runner's connection lost, the runner stopped.
reset_marks
ctl once do migrate -- "$polite" "$T" >"$T/out" 2>"$T/err" & run=$!
EXTRA_PIDS="$EXTRA_PIDS $run"
wait_file "$T/started"
stop_daemon
wait "$run"; rc=$?
[ "$rc" = 125 ] || fail "once do after the daemon stopped exited $rc: $(cat "$T/err")"
[ -e "$T/term" ] || fail "once do: the command got no SIGTERM"
restart_daemon

# 4. --lease: the hold ends when the lease does, connection or not; the
# lock is then free for another.
reset_marks
expect_exit 125 mutex run leased --lease 300ms -- "$polite" "$T"
[ -e "$T/term" ] || fail "lease: the command got no SIGTERM"
grep -q "lease ran out" "$T/err" || fail "lease: $(cat "$T/err")"
expect_exit 0 mutex lock leased --timeout 5s -q
reset_marks
expect_exit 125 rwmutex run cfg --read --lease 300ms -- "$polite" "$T"
[ -e "$T/term" ] || fail "rwmutex lease: the command got no SIGTERM"

# 5. A run that keeps its hold is unchanged: its status, over several
# connection checks.
expect_exit 3 mutex run deploy --grace 1s -- sh -c 'sleep 1.2; exit 3'
expect_exit 0 mutex run deploy --lease 1m -- true
expect_exit 0 mutex lock deploy --timeout 2s -q    # it was unlocked
expect_exit 2 mutex run deploy --grace bogus -- true
expect_exit 2 mutex lock deploy --grace 1s
echo "ok saferun"
