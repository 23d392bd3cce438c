#!/usr/bin/env bash
# tests/bench/run.sh - the `make bench` driver.
#
# Runs every $BUILD/bench/bench_* binary except bench_net* (the broker's
# network benchmark has its own target, `make bench-net`), and collects
# their "bench: <name> <value> <unit>" lines.  When `go` is installed, it
# also builds and runs Go's anchor benchmarks (../shared/anchors/go beside
# the checkout, read-only: everything Go writes goes to a temporary dir) at
# GOMAXPROCS=2, maps them to chand's names with the table of
# ../shared/anchors/README.md and prints "bench: go_<name> <value> <unit>"
# and "bench: ratio_<name> <chand/go>" for every name both produced.
# Ratios <= 1 mean chand is as fast (or as small) as Go.
set -u
BUILD=${BUILD:-build}
top=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
lines="$work/chand.txt"
: >"$lines"

export GOMAXPROCS=2
for b in "$top/$BUILD"/bench/bench_*; do
    [ -x "$b" ] || continue
    name=$(basename "$b")
    case "$name" in bench_net*|*.d|*.o) continue;; esac
    echo "# $name"
    if ! "$b" >"$work/out.txt" 2>"$work/err.txt"; then
        echo "# $name FAILED:"; sed 's/^/#   /' "$work/err.txt"
    fi
    grep '^bench: ' "$work/out.txt" | tee -a "$lines"
done

anchors="$top/../shared/anchors/go"
if ! command -v go >/dev/null 2>&1; then
    echo "# go is not installed: no Go anchors (apt-get install golang-go)"
    exit 0
fi
if [ ! -f "$anchors/main_test.go" ]; then
    echo "# Go anchors not found at $anchors: no comparison"
    exit 0
fi

echo "# go anchors ($(go version | awk '{print $3}'), GOMAXPROCS=2)"
export GOCACHE="$work/gocache" GOPATH="$work/gopath" GOTMPDIR="$work/gotmp"
export GOFLAGS=-mod=mod GO111MODULE=on
mkdir -p "$GOTMPDIR"
if ! (cd "$anchors" && go test -c -o "$work/anchors.test") >"$work/gobuild.txt" 2>&1; then
    echo "# building the Go anchors failed:"; sed 's/^/#   /' "$work/gobuild.txt"
    exit 0
fi
(cd "$work" && ./anchors.test -test.run '^$' -test.bench . \
    -test.benchtime 1s) >"$work/go.txt" 2>&1 || true

# Go benchmark -> chand name, and which unit of Go's line to take.
awk -v lines="$lines" '
BEGIN {
    map["SpawnWait"] = "spawn_wait ns/op"
    map["UnbufPingPong"] = "chan_unbuf_pingpong ns/op"
    map["Buf128Throughput"] = "chan_buf128 ns/op"
    map["Select2"] = "select2 ns/op"
    map["MutexContended"] = "mutex_contended ns/op"
    map["RWMutexReadMostly"] = "rwmutex_read_mostly ns/op"
    map["WGAddDoneWait"] = "wg_add_done_wait ns/op"
    map["MapLoadReadMostly"] = "map_load_read_mostly ns/op"
    map["PoolGetPut"] = "pool_get_put ns/op"
    map["TimerStartStop"] = "timer_start_stop ns/op"
    map["AfterFire100k"] = "after_fire_100k ns/timer"
    map["Parked100k"] = "parked_goroutine_rss stackB/g"
    while ((getline l < lines) > 0) {
        split(l, f, " ")
        chand[f[2]] = f[3]
    }
}
/^Benchmark/ {
    b = $1
    sub(/^Benchmark/, "", b)
    sub(/-[0-9]+$/, "", b)
    if (!(b in map)) next
    split(map[b], m, " ")
    for (i = 2; i <= NF; i++) {
        if ($i == m[2]) {
            v = $(i - 1)
            unit = m[2] == "stackB/g" ? "bytes" : m[2]
            printf "bench: go_%s %s %s\n", m[1], v, unit
            if ((m[1] in chand) && v + 0 > 0)
                printf "bench: ratio_%s %.2f\n", m[1], chand[m[1]] / v
        }
    }
}
' "$work/go.txt"
