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

# Honest onces: the runner's status is the once's value, so every caller
# that waited, and every later one, exits with it without running.
# The runner waits for $T/go, created once three callers are waiting.
"$CHANCTL_BIN" once do mig -- sh -c "echo ran >>'$T/mig'; while [ ! -e '$T/go' ]; do sleep 0.02; done; exit 9" &
runner=$!
EXTRA_PIDS="$EXTRA_PIDS $runner"
for i in $(seq 1 500); do [ -s "$T/mig" ] && break; sleep 0.02; done
[ -s "$T/mig" ] || fail "the runner never started"
wpids=
for i in 1 2 3; do
    ( ctl once do mig -- sh -c "echo waiter >>'$T/mig'" 2>"$T/werr$i"; echo $? >"$T/wrc$i" ) &
    wpids="$wpids $!"
done
for i in $(seq 1 500); do
    [ "$(ctl --json stats | grep -o '"waiters":[0-9]*')" = '"waiters":3' ] && break
    sleep 0.02
done
[ "$(ctl --json stats | grep -o '"waiters":[0-9]*')" = '"waiters":3' ] ||
    fail "waiters: $(ctl --json stats)"
touch "$T/go"
wait "$runner"; rc=$?
[ "$rc" = 9 ] || fail "runner exited $rc, want 9"
for p in $wpids; do wait "$p"; done
for i in 1 2 3; do
    [ "$(cat "$T/wrc$i")" = 9 ] || fail "waiter $i exited $(cat "$T/wrc$i"), want 9"
    grep -q 'once "mig" already ran and exited 9' "$T/werr$i" ||
        fail "waiter $i said: $(cat "$T/werr$i")"
done
expect_exit 9 once do mig -- sh -c "echo later >>'$T/mig'"
expect_exit 9 -q once do mig -- true
[ ! -s "$T/err" ] || fail "-q still said: $(cat "$T/err")"
[ "$(cat "$T/mig")" = ran ] || fail "mig ran more than once: $(cat "$T/mig")"
case_ok "once do: waiters and later callers exit with the runner's status"

# A runner killed by a signal: the shell's 128 + N is what the others get.
expect_exit 143 once do killed -- sh -c 'kill -TERM $$'
expect_exit 143 -q once do killed -- true
case_ok "once do: a signalled runner's status"

# A runner whose session ends without once.done reopens the once: the
# next caller runs, and its status is the one kept.
"$CHANCTL_BIN" once do reopen -- sh -c "touch '$T/r1'; while [ ! -e '$T/stop' ]; do sleep 0.02; done" &
r1=$!
EXTRA_PIDS="$EXTRA_PIDS $r1"
for i in $(seq 1 500); do [ -e "$T/r1" ] && break; sleep 0.02; done
[ -e "$T/r1" ] || fail "first runner never started"
kill -KILL "$r1"; wait "$r1" 2>/dev/null
touch "$T/stop" # ends the orphaned command of the killed runner
expect_exit 4 once do reopen --timeout 30s -- sh -c 'exit 4'
expect_exit 4 -q once do reopen -- true
case_ok "once do: a dead runner's once runs again"
echo "ok once"
