#!/usr/bin/env bash
# chanctl and a real three-node cluster on 127.0.0.1: -s a,b,c and
# CHAND_SERVER lists, a follower's not_leader followed to the leader,
# cluster status / remove / add, a command after the leader is SIGKILLed
# (it finds the new leader), and usage errors.  Every wait polls until a
# deadline.
. "$(dirname "$0")/lib.sh" || exit 1
command -v python3 >/dev/null || fail "python3 is needed to find free ports"
[ -x "$CHAND_BIN" ] || fail "no daemon at $CHAND_BIN"

# Six free ports (three client, three raft): bound to 0, read, released.
read -r -a P < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(8)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
CL="1=127.0.0.1:${P[0]}:${P[1]},2=127.0.0.1:${P[2]}:${P[3]},3=127.0.0.1:${P[4]}:${P[5]}"
ADDR=(x "127.0.0.1:${P[0]}" "127.0.0.1:${P[2]}" "127.0.0.1:${P[4]}")
LIST="${ADDR[1]},${ADDR[2]},${ADDR[3]}"
declare -a NPID

node() { # ID [more args]: starts node ID of $CL
    local id=$1 port
    shift
    port=${ADDR[$id]##*:}
    mkdir -p "$T/n$id"
    "$CHAND_BIN" --bind 127.0.0.1 --port "$port" --cluster "$CL" --node-id "$id" \
        --data-dir "$T/n$id" --election-timeout-ms 1000 "$@" \
        >>"$T/chand.log" 2>&1 &
    NPID[$id]=$!
    EXTRA_PIDS="$EXTRA_PIDS $!"
}

# until_ok SECONDS ARGS...: runs chanctl ARGS until it exits 0.
until_ok() {
    local end=$(($(date +%s) + $1))
    shift
    until "$CHANCTL_BIN" "$@" >"$T/out" 2>"$T/err"; do
        [ "$(date +%s)" -lt "$end" ] || fail "chanctl $* never succeeded: $(cat "$T/err")"
        sleep 0.1
    done
}

for i in 1 2 3; do node $i; done
until_ok 20 -s "$LIST" map store m k 1
case_ok "a write through -s a,b,c once a leader is elected"

# The node asked may learn of the leader a moment after the write: poll.
end=$(($(date +%s) + 20))
until leader=$(ctl -s "$LIST" --json cluster status | python3 -c '
import json, sys; print(json.load(sys.stdin)["leader_id"])') &&
    [ "$leader" -ge 1 ] && [ "$leader" -le 3 ]; do
    [ "$(date +%s)" -lt "$end" ] || fail "no leader id: $leader"
    sleep 0.1
done
follower=$((leader % 3 + 1))
# A follower alone: chanctl follows its not_leader to the leader.
expect_out 1 -s "${ADDR[$follower]}" map load m k
CHAND_SERVER="${ADDR[$follower]}" expect_out 2 atomic add a 2
case_ok "a follower's not_leader is followed (-s and CHAND_SERVER)"

ctl -s "$LIST" cluster status >"$T/out" || fail "cluster status"
for want in '"role"' '"term"' '"commit_index"' '"peers"'; do
    grep -q "$want" "$T/out" || fail "cluster status lacks $want: $(cat "$T/out")"
done
case_ok "cluster status"

# The leader dies: the next command finds the new one.
kill -KILL "${NPID[$leader]}"
wait "${NPID[$leader]}" 2>/dev/null
until_ok 20 -s "$LIST" atomic add a 3
[ "$(cat "$T/out")" = 5 ] || fail "after failover: atomic is $(cat "$T/out"), want 5"
expect_out 1 -s "$LIST" map load m k
case_ok "the leader SIGKILLed: the next command reaches the new leader"

# Membership: remove the dead node, then add it back (restarted to join).
expect_exit 0 -s "$LIST" cluster remove "$leader"
ctl -s "$LIST" --json cluster status >"$T/out" || fail "cluster status"
python3 -c '
import json, sys
st = json.load(open(sys.argv[1]))
ids = sorted(p["id"] for p in st["peers"])
sys.exit(0 if int(sys.argv[2]) not in ids and len(ids) == 2 else 1)' \
    "$T/out" "$leader" || fail "removed node still listed: $(cat "$T/out")"
rm -rf "$T/n$leader"
node "$leader" --cluster-join
until_ok 20 -s "$LIST" cluster add "$leader" \
    "${ADDR[$leader]}:$(echo "$CL" | tr ',' '\n' | grep "^$leader=" | cut -d: -f3)"
case_ok "cluster remove and cluster add"

expect_exit 2 -s "$LIST" cluster remove zero
grep -q "ID must be a positive integer" "$T/err" || fail "bad id: $(cat "$T/err")"
expect_exit 2 -s "$LIST" cluster add 4 127.0.0.1:1
expect_exit 2 -s "${ADDR[1]},,${ADDR[2]}" ping
grep -q "bad server address" "$T/err" || fail "bad list: $(cat "$T/err")"
case_ok "usage errors: bad ID, bad node address, bad server list"
