#!/usr/bin/env bash
# recovery.sh - `make bench-recovery`: how long chand takes to start on a
# log of BENCH_RECOVERY_MB MiB (default 1024: the issue's 1 GiB).
#
# Starts chand with a data_dir under BENCH_DUR_DIR (default /var/tmp: a
# disk), compaction out of the way (--compact-floor 512 GiB), fsync no;
# fills the log with map.store of 1000-byte values over 10000 keys (the
# state stays about 10 MB, the log grows: replay, not the final state, is
# what is timed) with bench_net until the log holds the size asked; stops
# chand cleanly, starts it again on the same directory and reports the
# daemon's own recovery figures (records replayed, time) and the time from
# exec to listening.  chand is stopped by pid and the directory removed.
#
# Prints `bench: <name> <value> <unit>` lines.  The load generator and
# chand share the machine's cores: the recovery itself runs alone.
set -u
BUILD=${BUILD:-build}
MB=${BENCH_RECOVERY_MB:-1024}
top=$(cd "$(dirname "$0")/../.." && pwd)
GEN=$top/$BUILD/bench/bench_net
CHAND=$top/$BUILD/chand
for f in "$GEN" "$CHAND"; do
    [ -x "$f" ] || { echo "bench-recovery: $f missing (run make)"; exit 1; }
done

base=$(mktemp -d "${BENCH_DUR_DIR:-/var/tmp}/chand-bench-recovery.XXXXXX") ||
    { echo "bench-recovery: cannot make a directory"; exit 1; }
cpid=
cleanup() {
    if [ -n "$cpid" ]; then
        kill "$cpid" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$cpid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$cpid" 2>/dev/null
    fi
    rm -rf "$base"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

start_chand() {
    rm -f "$base/port"
    "$CHAND" --bind 127.0.0.1 --port 0 --port-file "$base/port" \
        --data-dir "$base/d" --fsync no --compact-floor 549755813888 \
        --log-level info 2>>"$base/chand.log" &
    cpid=$!
    for _ in $(seq 36000); do
        [ -s "$base/port" ] && break
        kill -0 "$cpid" 2>/dev/null || break
        sleep 0.01
    done
    [ -s "$base/port" ] || { echo "bench-recovery: chand did not start"; tail -5 "$base/chand.log"; exit 1; }
    PORT=$(cat "$base/port")
}

stop_chand() {
    kill "$cpid"
    wait "$cpid"
    cpid=
}

log_mb() { du -sm "$base/d" | cut -f1; }

start_chand
echo "bench-recovery: filling a ${MB} MiB log in $base ($(df -P "$base" | awk 'NR == 2 {print $1}'))"
while [ "$(log_mb)" -lt "$MB" ]; do
    "$GEN" -p "$PORT" -t map -S 1000 --keyspace 10000 -c 4 -P 32 -n 200000 \
        --key recov --name fill >/dev/null ||
        { echo "bench-recovery: bench_net failed"; exit 1; }
done
stop_chand
bytes=$(cat "$base"/d/wal-*.log | wc -c)
: >"$base/chand.log"
t0=$(now_ms)
start_chand
t1=$(now_ms)
line=$(grep 'recovered .*records replayed' "$base/chand.log" | tail -1)
records=$(echo "$line" | sed -n 's/.*: \([0-9]*\) records replayed.*/\1/p')
ms=$(echo "$line" | sed -n 's/.* in \([0-9.]*\) ms.*/\1/p')
echo "bench: recovery_log_bytes $bytes bytes"
echo "bench: recovery_records $records records"
echo "bench: recovery_replay_ms $ms ms"
echo "bench: recovery_exec_to_listen_ms $((t1 - t0)) ms"
awk -v b="$bytes" -v ms="$ms" -v n="$records" 'BEGIN { if (ms > 0) {
    printf "bench: recovery_rate %.0f MiB/s\n", b / 1048576 / (ms / 1000);
    printf "bench: recovery_record_rate %.0f records/s\n", n / (ms / 1000) } }'
echo "bench: recovery_rss_after $(( $(awk '/^VmRSS:/ {print $2}' "/proc/$cpid/status") * 1024 )) bytes"
stop_chand
