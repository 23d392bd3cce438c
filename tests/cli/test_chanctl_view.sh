#!/usr/bin/env bash
# Seeing what waits on what: `dump` as a tree (and --json as the server's
# form), `watch NAME` printing a line per change, and `top` in a real
# terminal (tmux): it draws, sorts by waiters or (r) by rate, and quits on q and on
# Ctrl-C, giving the terminal back.
. "$(dirname "$0")/lib.sh" || exit 1
command -v tmux >/dev/null || fail "tmux is needed"
# A private tmux server; its socket lives outside $T, which cleanup removes.
TMUX_SOCK="chanctl-test-$$"
tm() { tmux -L "$TMUX_SOCK" "$@"; }
trap 'tm kill-server 2>/dev/null; cleanup' EXIT
# A session that lives as long as the test: a tmux server with no session
# left exits, and a new-session racing with that exit fails.
tm new-session -d -s keep "sleep 3600" || fail "tmux did not start"
start_daemon

# wait_for FILE PATTERN: polls until FILE has a line matching PATTERN.
wait_for() {
    local i
    for i in $(seq 1 500); do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.02
    done
    fail "never saw '$2' in $1: $(cat "$1" 2>/dev/null)"
}
# wait_pane PATTERN: polls the top pane until it shows PATTERN.
wait_pane() {
    local i
    for i in $(seq 1 500); do
        tm capture-pane -p -t top >"$T/pane" 2>/dev/null
        grep -q -- "$1" "$T/pane" && return 0
        sleep 0.02
    done
    fail "top never showed '$1': $(cat "$T/pane")"
}

# A lock held under a lease, one waiting for it, a receiver waiting.
tok=$(ctl mutex lock deploy --lease 90s -q) || fail "lock"
ctl make jobs 4 && ctl send jobs 1 || fail "jobs"
ctl mutex lock deploy >/dev/null 2>&1 & EXTRA_PIDS="$EXTRA_PIDS $!"
ctl make idle 0 || fail "make idle"
ctl recv idle >/dev/null 2>&1 & EXTRA_PIDS="$EXTRA_PIDS $!"
for i in $(seq 1 500); do
    [ "$(ctl --json stats | grep -o '"waiters":[0-9]*')" = '"waiters":2' ] && break
    sleep 0.02
done

# dump: the tree.
ctl dump >"$T/dump" || fail "dump exited $?"
grep -q '^3 objects, 2 waiters' "$T/dump" || fail "dump header: $(cat "$T/dump")"
grep -q '^mutex deploy (locked, token 1)$' "$T/dump" || fail "dump mutex: $(cat "$T/dump")"
grep -Eq '^    held by session [0-9]+: token 1, for [0-9.]+m?s, lease 1m30s$' "$T/dump" ||
    fail "dump holder: $(cat "$T/dump")"
grep -Eq '^    session [0-9]+ \[sync.Mutex.Lock, [0-9.]+m?s\]$' "$T/dump" ||
    fail "dump lock waiter: $(cat "$T/dump")"
grep -q '^chan jobs (len 1/4, elem any)$' "$T/dump" || fail "dump chan: $(cat "$T/dump")"
grep -Eq '^    session [0-9]+ \[chan receive, ' "$T/dump" || fail "dump recv waiter: $(cat "$T/dump")"
# Sorted by name: deploy, idle, jobs.
[ "$(grep -E '^[a-z]' "$T/dump" | awk '{print $2}' | tr '\n' ' ')" = "deploy idle jobs " ] ||
    fail "dump order: $(cat "$T/dump")"
ctl dump --json >"$T/dumpj" || fail "dump --json"
[ "$(wc -l <"$T/dumpj")" = 1 ] || fail "dump --json is not one line"
grep -q '"objects":\[' "$T/dumpj" || fail "dump --json: $(cat "$T/dumpj")"

# watch: a line at start, then one per change, none for time passing.
ctl watch jobs --interval 20ms >"$T/watch" 2>"$T/watch.err" &
wpid=$!
EXTRA_PIDS="$EXTRA_PIDS $wpid"
wait_for "$T/watch" 'jobs: len 1/4'
ctl send jobs 2 || fail "send 2"
wait_for "$T/watch" 'jobs: len 2/4'
ctl recv jobs >/dev/null && ctl recv jobs >/dev/null || fail "drain jobs"
wait_for "$T/watch" 'jobs: len 0/4'
ctl recv jobs >/dev/null 2>&1 & EXTRA_PIDS="$EXTRA_PIDS $!"
wait_for "$T/watch" 'waiters \[session [0-9]* chan receive\]'
ctl drop jobs || fail "drop jobs"
wait_for "$T/watch" 'jobs: (no such object)'
kill "$wpid"; wait "$wpid" 2>/dev/null
# A line only for a change: no two lines in a row say the same.
cut -d' ' -f2- "$T/watch" >"$T/states"
[ "$(uniq "$T/states" | wc -l)" = "$(wc -l <"$T/states")" ] ||
    fail "watch repeated a state: $(cat "$T/watch")"
grep -Eq '^[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3} jobs: ' "$T/watch" || fail "watch: no time"
# --timeout ends it with 0; --json gives objects.
expect_exit 0 watch deploy --timeout 100ms --json
grep -q '"name":"deploy","object":{' "$T/out" || fail "watch --json: $(cat "$T/out")"
expect_exit 2 watch deploy --interval 0

# top, in a terminal.
tm new-session -d -s top -x 100 -y 30 \
    "CHAND_SERVER=$CHAND_SERVER '$CHANCTL_BIN' top --interval 100ms; echo \$? >'$T/top.rc'; sleep 60"
wait_pane 'chanctl top'
wait_pane '(q or Ctrl-C quits)'
wait_pane 'req/s'
wait_pane '^deploy  *mutex  *locked  *1  *1 '
# Objects by waiters: a new channel with two receivers goes first.
ctl make busy 0 || fail "make busy"
ctl recv busy >/dev/null 2>&1 & EXTRA_PIDS="$EXTRA_PIDS $!"
ctl recv busy >/dev/null 2>&1 & EXTRA_PIDS="$EXTRA_PIDS $!"
wait_pane '^busy  *chan  *0/0  *0  *2 '
[ "$(grep -A1 'LONGEST WAIT' "$T/pane" | tail -1 | awk '{print $1}')" = busy ] ||
    fail "busy is not first: $(cat "$T/pane")"
wait_pane '^objects by waiters (r: by rate)'
# By rate (r): a channel under steady requests goes first, with its
# requests per second; r again goes back to waiters.
ctl make hot 0 || fail "make hot"
( while [ ! -e "$T/stophot" ]; do "$CHANCTL_BIN" len hot >/dev/null 2>&1; done ) &
EXTRA_PIDS="$EXTRA_PIDS $!"
tm send-keys -t top r
wait_pane '^objects by rate (r: by waiters)'
for i in $(seq 1 500); do
    tm capture-pane -p -t top >"$T/pane" 2>/dev/null
    first=$(grep -A1 'OPS/S' "$T/pane" | tail -1)
    [[ "$first" =~ ^hot\ +chan\ .*\ ([0-9]+\.[0-9])$ ]] &&
        [ "${BASH_REMATCH[1]}" != 0.0 ] && break
    sleep 0.02
done
[[ "$first" =~ ^hot\ +chan\ .*\ ([0-9]+\.[0-9])$ ]] && [ "${BASH_REMATCH[1]}" != 0.0 ] ||
    fail "hot is not first by rate: $(cat "$T/pane")"
touch "$T/stophot"
tm send-keys -t top r
wait_pane '^objects by waiters (r: by rate)'
ctl --json list hot | grep -Eq '"ops":[1-9][0-9]*' || fail "list has no ops: $(ctl --json list hot)"
tm send-keys -t top q
for i in $(seq 1 500); do [ -s "$T/top.rc" ] && break; sleep 0.02; done
[ "$(cat "$T/top.rc" 2>/dev/null)" = 0 ] || fail "top after q: exit '$(cat "$T/top.rc" 2>/dev/null)'"
tm kill-session -t top
# Ctrl-C quits too, with the terminal given back (echo on again).
rm -f "$T/top.rc"
tm new-session -d -s top -x 100 -y 30 \
    "CHAND_SERVER=$CHAND_SERVER '$CHANCTL_BIN' top; echo \$? >'$T/top.rc'; stty -a >'$T/stty'; sleep 60"
wait_pane 'chanctl top'
tm send-keys -t top C-c
for i in $(seq 1 500); do [ -s "$T/stty" ] && break; sleep 0.02; done
[ "$(cat "$T/top.rc" 2>/dev/null)" = 0 ] || fail "top after Ctrl-C: exit '$(cat "$T/top.rc" 2>/dev/null)'"
grep -qw echo "$T/stty" && grep -qw icanon "$T/stty" || fail "terminal not restored: $(cat "$T/stty")"
ctl mutex unlock deploy --token "$tok" || fail "unlock"
echo "ok view"
