#!/usr/bin/env bash
# `mutex run` from concurrent processes never overlaps (checked with a
# marker file), hands out growing fencing tokens, and exits with the
# command's status; `mutex lock --lease` outlives the process.
. "$(dirname "$0")/lib.sh" || exit 1
start_daemon

crit="$T/crit.sh"
cat >"$crit" <<'EOS'
#!/bin/sh
# Inside the lock: nobody else may be here.
if [ -e "$1/held" ]; then echo overlap >>"$1/bad"; fi
touch "$1/held"
echo "$CHAND_TOKEN" >>"$1/tokens"
sleep 0.02
rm -f "$1/held"
EOS
chmod +x "$crit"
worker() {
    for i in $(seq 1 15); do
        ctl mutex run deploy -- "$crit" "$T" || exit 1
    done
}
worker & w1=$!
worker & w2=$!
worker & w3=$!
wait $w1 && wait $w2 && wait $w3 || fail "a worker failed"
[ ! -e "$T/bad" ] || fail "critical sections overlapped $(wc -l <"$T/bad") times"
[ "$(wc -l <"$T/tokens")" = 45 ] || fail "ran $(wc -l <"$T/tokens") times"
[ "$(sort -n "$T/tokens" | uniq | wc -l)" = 45 ] || fail "tokens repeat"

# The command's status is chanctl's, and the lock is released after it.
expect_exit 7 mutex run deploy -- sh -c 'exit 7'
expect_exit 0 mutex run deploy --timeout 2s -- true

# SIGTERM to chanctl goes to the command, and the lock is held until the
# command has really finished (here it ignores TERM and waits for "go").
"$CHANCTL_BIN" mutex run m2 -- sh -c 'trap "" TERM; touch "$0/started"
    while [ ! -e "$0/go" ]; do sleep 0.05; done' "$T" &
holder=$!
for i in $(seq 1 500); do [ -e "$T/started" ] && break; sleep 0.02; done
[ -e "$T/started" ] || fail "the command under mutex run did not start"
kill -TERM "$holder"
expect_exit 124 mutex run m2 --timeout 200ms -- true
touch "$T/go"
wait "$holder" || fail "mutex run exited $? after SIGTERM"
expect_exit 0 mutex run m2 --timeout 2s -- true

# A lease keeps the lock after chanctl exits; its token unlocks it.
tok=$(ctl mutex lock deploy --lease 1m 2>/dev/null) || fail "lock --lease"
expect_exit 124 mutex run deploy --timeout 200ms -- true
expect_exit 3 mutex unlock deploy --token 999999
expect_exit 0 mutex unlock deploy --token "$tok"
expect_exit 0 mutex run deploy --timeout 2s -- true
# Without a lease the lock dies with the process (and chanctl says so).
expect_exit 0 mutex lock deploy
grep -q lease "$T/err" || fail "no warning about --lease"
expect_exit 0 mutex run deploy --timeout 2s -- true

# RWMutex: two readers at once, a writer alone.  The first reader holds
# its lock under a lease, so nothing here depends on timing.
rtok=$(ctl rwmutex rlock cfg --lease 1m 2>/dev/null) || fail "rlock --lease"
expect_exit 0 rwmutex run cfg --read --timeout 2s -- true
expect_exit 124 rwmutex run cfg --timeout 100ms -- true
expect_exit 0 rwmutex runlock cfg --token "$rtok"
expect_exit 0 rwmutex run cfg --timeout 2s -- true
echo "ok mutex"
