#!/usr/bin/env bash
# The README examples (client/examples, built by make) run against a daemon
# and do what the README says.
. "$(dirname "$0")/lib.sh" || exit 1
top=$(cd "$(dirname "$0")/../.." && pwd)
ex="$top/${BUILD:-build}/examples"
for e in worker_pool wg_barrier fenced_lock async_counter ack_worker; do
    [ -x "$ex/$e" ] || fail "example $e not built"
done
start_daemon

"$ex/worker_pool" "$CHAND_SERVER" 3 50 >"$T/wp" 2>&1 || fail "worker_pool: $(cat "$T/wp")"
grep -q '^sum of squares 1..50 = 42925$' "$T/wp" || fail "worker_pool: $(cat "$T/wp")"
# Every job was done by some worker, exactly once.
[ "$(awk '/^worker/ { n += $3 } END { print n }' "$T/wp")" = 50 ] ||
    fail "jobs per worker: $(cat "$T/wp")"

pids=
for i in 1 2 3; do
    "$ex/wg_barrier" "$CHAND_SERVER" bar 3 >"$T/wg.$i" 2>&1 & pids="$pids $!"
done
for p in $pids; do wait "$p" || fail "wg_barrier $p exited $?"; done
# Nobody got past the barrier before all three arrived.
cat "$T"/wg.* >"$T/wg"
[ "$(grep -c 'past the barrier' "$T/wg")" = 3 ] || fail "barrier: $(cat "$T/wg")"
for i in 1 2 3; do
    grep -q 'arrived, 0 to go' "$T/wg.$i" && break
done || fail "nobody saw the counter reach 0: $(cat "$T/wg")"

"$ex/fenced_lock" "$CHAND_SERVER" >"$T/fl" 2>&1 || fail "fenced_lock: $(cat "$T/fl")"
grep -q 'refused write "from client 1"' "$T/fl" || fail "fenced_lock: $(cat "$T/fl")"
"$ex/async_counter" "$CHAND_SERVER" 5000 >"$T/ac" 2>&1 || fail "async_counter: $(cat "$T/ac")"
grep -q '^5000 adds answered, counter 5000, 0 errors$' "$T/ac" || fail "async_counter: $(cat "$T/ac")"
grep -q '^timer fired' "$T/ac" || fail "async_counter: $(cat "$T/ac")"
# Acknowledged delivery: the job of the worker that died is done by
# another; multiples of 7 (refused 3 times) are dead letters.
"$ex/ack_worker" "$CHAND_SERVER" 3 100 >"$T/aw" 2>&1 || fail "ack_worker: $(cat "$T/aw")"
grep -q '^sum of the jobs acknowledged = 4315, 14 dead letters$' "$T/aw" ||
    fail "ack_worker: $(cat "$T/aw")"
echo "ok examples"
