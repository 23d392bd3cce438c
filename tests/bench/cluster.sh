#!/usr/bin/env bash
# make bench-cluster (issue 19): chand as a 3-node cluster against one
# chand node with fsync=always, and against etcd 3.4 (three members), all
# on 127.0.0.1 and free ports, in the same run: put/get (map store/load vs
# /v3/kv/put, /v3/kv/range) and lock (mutex vs etcd's lock recipe), with 1
# and 50 clients (tests/cluster/bench.c).  Prints bench: lines and the
# ratios; every server is stopped by pid.
set -u
BUILD=${BUILD:-build}
SECS=${BENCH_SECONDS:-3}
top=$(cd "$(dirname "$0")/../.." && pwd)
CHAND="$top/$BUILD/chand"
BENCH="$top/$BUILD/cluster/bench"
T=$(mktemp -d /tmp/bench-cluster.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
command -v etcd >/dev/null || { echo "bench-cluster: etcd is missing (make installs etcd-server)"; exit 1; }

read -r -a P < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(13)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')

wait_port() { # PORT: polls until something listens (20 s)
    local i
    for i in $(seq 1 400); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "bench-cluster: nothing listens on $1"; exit 1
}

# One chand, fsync=always.
mkdir -p "$T/single"
"$CHAND" --bind 127.0.0.1 --port "${P[0]}" --data-dir "$T/single" --fsync always \
    --log-level warn >"$T/single.log" 2>&1 &
PIDS+=($!)
# A 3-node chand cluster.
CL="1=127.0.0.1:${P[1]}:${P[2]},2=127.0.0.1:${P[3]}:${P[4]},3=127.0.0.1:${P[5]}:${P[6]}"
for i in 1 2 3; do
    mkdir -p "$T/n$i"
    "$CHAND" --bind 127.0.0.1 --port "${P[$((2 * i - 1))]}" --cluster "$CL" --node-id "$i" \
        --data-dir "$T/n$i" --log-level warn >"$T/n$i.log" 2>&1 &
    PIDS+=($!)
done
# Three etcd members.
EC="e1=http://127.0.0.1:${P[8]},e2=http://127.0.0.1:${P[10]},e3=http://127.0.0.1:${P[12]}"
for i in 1 2 3; do
    cp=${P[$((2 * i + 5))]} pp=${P[$((2 * i + 6))]}
    etcd --name "e$i" --data-dir "$T/e$i" \
        --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
        --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
        --initial-cluster "$EC" --initial-cluster-state new --log-level error \
        >"$T/e$i.log" 2>&1 &
    PIDS+=($!)
done
for p in "${P[0]}" "${P[1]}" "${P[3]}" "${P[5]}" "${P[7]}"; do wait_port "$p"; done
LIST="127.0.0.1:${P[1]},127.0.0.1:${P[3]},127.0.0.1:${P[5]}"
# Until the cluster has a leader and etcd answers.
for i in $(seq 1 400); do
    "$top/$BUILD/chanctl" -s "$LIST" ping >/dev/null 2>&1 &&
        "$top/$BUILD/chanctl" -s "$LIST" map store warm k 1 >/dev/null 2>&1 && break
    sleep 0.05
done
for i in $(seq 1 400); do
    ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:${P[7]}" put warm 1 >/dev/null 2>&1 && break
    sleep 0.05
done
echo "bench-cluster: single chand fsync=always, 3-node chand cluster, etcd $(etcd --version | head -1 | awk '{print $3}') x3; ${SECS}s per shape"

for c in 1 50; do
    "$BENCH" chand single "127.0.0.1:${P[0]}" "$c" "$SECS" | tee -a "$T/out"
    "$BENCH" chand cluster "$LIST" "$c" "$SECS" | tee -a "$T/out"
    "$BENCH" etcd etcd "127.0.0.1:${P[7]}" "$c" "$SECS" | tee -a "$T/out"
done
# Ratios: cluster / etcd and cluster / single, per shape.
awk '{ v[$2] = $3 }
END {
    split("put get lock", s, " ")
    for (c = 1; c <= 50; c += 49)
        for (i = 1; i <= 3; i++) {
            k = s[i] "_c" c
            if (v["etcd_" k] > 0)
                printf "ratio: cluster/etcd %s %.2fx\n", k, v["cluster_" k] / v["etcd_" k]
            if (v["single_" k] > 0)
                printf "ratio: cluster/single %s %.2fx\n", k, v["cluster_" k] / v["single_" k]
        }
}' "$T/out"
