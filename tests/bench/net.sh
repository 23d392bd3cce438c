#!/usr/bin/env bash
# net.sh - `make bench-net`: chand's broker against Redis in the same run.
#
# Starts chand (--port 0 --port-file) and redis-server (--save '' and
# --appendonly no, on a free port), both on 127.0.0.1, runs the same shapes
# against both with bench_net (the load generator in this directory, which
# speaks chand's JSON lines and Redis's RESP), and redis-benchmark for the
# commands it has, at c=1, c=50 and c=50 with pipeline 16.  Then the memory
# test: RSS per connection with 10k connections each parked in recv (chand)
# or BLPOP (Redis).  Both servers are stopped by pid on exit.
#
# Prints `bench: <name> <value> <unit>` lines, each chand/redis pair and
# `bench: ratio_<shape>_<config> X` (chand ops/s over Redis ops/s: >= 1 means
# chand is at least as fast; for p99 and memory, the ratio is chand/redis
# too, so <= 1 is the good side).
#
# Each pair runs BENCH_ROUNDS times (default 3), alternating which server
# goes first; the figures printed are the medians of the rounds, and
# ratio_<shape>_<config>_lo/_hi are the lowest and highest per-round
# throughput ratios: on a shared 2-core machine one run moves by +-10%,
# and a single pair of runs can land either side of 1.
#
# Durability (issue 15): chand --fsync always against Redis appendonly yes
# appendfsync always, everysec against everysec, and both in memory (the
# same shapes in the same section, so `ratio_everysec_vs_memory_*`, chand
# everysec over chand in memory, compares runs made minutes apart at most),
# at c=1, c=50 and c=50 with pipeline 16; logs under BENCH_DUR_DIR (default
# /var/tmp: a disk, or fsync means nothing).  BENCH_DUR_SHAPES (default
# "sendrecv_split atomic"); BENCH_ONLY=dur_ runs this section alone.  Beside
# the everysec chand a second one runs in memory, and the two take turns
# (`ratio_everysec_vs_memory_paired_*`, with _lo/_hi over the rounds): the
# goal's measure, free of the drift between sections; BENCH_ONLY=dur_paired
# runs only that.
#
# Environment: BUILD (build dir), BENCH_SECS (seconds per run, default 2),
# BENCH_ROUNDS (default 3), BENCH_CONNS_IDLE (default 10000), BENCH_ONLY
# (substring of shape names; ack_split: acknowledged delivery against
# Redis Streams, BENCH_ONLY=ack), BENCH_IO_THREADS (chand --io-threads,
# default 1).
# The load generator and both servers share the machine's cores: say so
# when quoting the figures.
set -u
BUILD=${BUILD:-build}
SECS=${BENCH_SECS:-2}
ROUNDS=${BENCH_ROUNDS:-3}
IDLE=${BENCH_CONNS_IDLE:-10000}
ONLY=${BENCH_ONLY:-}
top=$(cd "$(dirname "$0")/../.." && pwd)
GEN=$top/$BUILD/bench/bench_net
CHAND=$top/$BUILD/chand
for f in "$GEN" "$CHAND"; do
    [ -x "$f" ] || { echo "bench-net: $f missing (run make)"; exit 1; }
done

if ! command -v redis-server >/dev/null 2>&1 ||
   ! command -v redis-benchmark >/dev/null 2>&1; then
    echo "bench-net: installing redis-server redis-tools with apt-get"
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
            redis-server redis-tools >/dev/null ||
        { echo "bench-net: apt-get failed"; exit 1; }
fi

# 10k connections need 10k descriptors in each process (servers inherit).
want=$((IDLE + 1000))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
    ulimit -Hn "$want" 2>/dev/null || true
fi
ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want" ]; then
    IDLE=$(( $(ulimit -n) - 1000 ))
    echo "bench-net: fd limit $(ulimit -n): memory test with $IDLE connections"
fi

dir=$(mktemp -d /tmp/chand-bench-net.XXXXXX)
cpid=; rpid=; gpid=; mpid=
cleanup() {
    for p in $gpid $cpid $mpid $rpid; do
        kill "$p" 2>/dev/null
    done
    for p in $gpid $cpid $mpid $rpid; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null
    done
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_chand() {  # [more chand arguments]
    rm -f "$dir/port"
    "$CHAND" --bind 127.0.0.1 --port 0 --port-file "$dir/port" \
        --max-conns $((IDLE + 100)) --io-threads "${BENCH_IO_THREADS:-1}" \
        --log-level error "$@" >"$dir/${CLOG:-chand}.log" 2>&1 &
    cpid=$!
    for _ in $(seq 100); do [ -s "$dir/port" ] && break; sleep 0.05; done
    [ -s "$dir/port" ] || { echo "bench-net: chand did not start"; cat "$dir/${CLOG:-chand}.log"; exit 1; }
    CPORT=$(cat "$dir/port")
}

start_redis() {  # [more redis-server arguments: later ones win]
    # A port below the ephemeral range (a client's local port there would
    # make bind fail); retried on another port if redis cannot bind.
    RPORT=
    for _ in $(seq 20); do
        p=$((10000 + RANDOM % 22000))
        port_free "$p" || continue
        redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no \
            --maxclients $((IDLE + 100)) --logfile "$dir/redis.log" "$@" &
        rpid=$!
        for _ in $(seq 100); do
            kill -0 "$rpid" 2>/dev/null || break
            redis-cli -p "$p" ping >/dev/null 2>&1 && { RPORT=$p; return; }
            sleep 0.05
        done
        stop_pid "$rpid"; rpid=
    done
    echo "bench-net: redis-server did not start"; tail -5 "$dir/redis.log"; exit 1
}

stop_pid() {  # pid
    kill "$1" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}

start_chand
start_redis
echo "bench-net: chand pid $cpid port $CPORT; redis $(redis-server --version | awk '{print $3}') pid $rpid port $RPORT; $(nproc) cores shared by servers and load generator"

val() { awk -v k="bench: $1" 'index($0, k" ") == 1 {print $3; exit}' "$2"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "nan"; else printf "%.2f\n", a / b }'; }

# Median of the numbers on stdin (empty when there are none).
median() {
    sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "";
        else if (NR % 2) print a[(NR + 1) / 2];
        else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# The lowest and highest per-round ratio of figure A over figure B in FILE
# (lines "ROUND NAME VALUE"): "lo hi".
spread() {  # A B FILE
    awk -v a="$1" -v b="$2" '$2 == a {x[$1] = $3} $2 == b {y[$1] = $3}
        END { lo = ""; hi = "";
              for (r in x) if ((r in y) && y[r] > 0) { q = x[r] / y[r];
                  if (lo == "" || q < lo) lo = q; if (hi == "" || q > hi) hi = q }
              printf "%.2f %.2f\n", lo, hi }' "$3"
}

# Sets the caller's c (connections) and p (pipeline depth) for CFG.
cfg_cp() {  # CFG: c1, c50 or c50p16
    case $1 in
    c1) c=1; p=1 ;;
    c50) c=50; p=1 ;;
    c50p16) c=50; p=16 ;;
    esac
}

# One round of one shape against one server: SERVER(chand|redis) SHAPE CFG
# CONNS DEPTH KEY, output appended to $dir/round.
one_run() {
    local who=$1 shape=$2 cfg=$3 c=$4 p=$5 key=$6 port=${PC:-$CPORT} proto=chand n
    local x=${XC:-}
    [ "$who" = redis ] && { port=${PR:-$RPORT}; proto=resp; x=${XR:-}; }
    if [ "$shape" = ack_split ] || [ "$shape" = acklist_split ]; then
        # acklist_split: Redis's side is the list pattern (LPUSH; LMOVE to
        # KEY:proc, LREM from it) instead of a stream.
        local pre=ack
        [ "$shape" = acklist_split ] && pre=ackl
        [ "$pre" = ackl ] && [ "$who" = redis ] && x="$x --ack-list"
        # Acknowledged delivery (issue 18): fill for SECS (send / XADD),
        # then take exactly that many with recv ack:true + ack (XREADGROUP
        # + XACK); an ackrecv operation is the pair.
        # shellcheck disable=SC2086
        "$GEN" -p "$port" --proto "$proto" $x -t acksend -c "$c" -P "$p" -d "$SECS" \
            --key "$key" --cap 16000000 --name "${who}_${pre}send_$cfg" >>"$dir/round"
        n=$(val "${who}_${pre}send_${cfg}_count" "$dir/round")
        # shellcheck disable=SC2086
        "$GEN" -p "$port" --proto "$proto" $x -t ackrecv -c "$c" -P "$p" -n "$n" \
            --key "$key" --cap 16000000 --name "${who}_${pre}recv_$cfg" >>"$dir/round"
        return
    fi
    if [ "$shape" = sendrecv_split ]; then
        # send then recv as two runs (LPUSH then RPOP): recv takes exactly
        # what send left in the channel.
        # shellcheck disable=SC2086 # $x: transport flags, word-split
        "$GEN" -p "$port" --proto "$proto" $x -t send -c "$c" -P "$p" -d "$SECS" \
            --key "$key" --cap 16000000 --name "${who}_send_$cfg" >>"$dir/round"
        n=$(val "${who}_send_${cfg}_count" "$dir/round")
        # shellcheck disable=SC2086
        "$GEN" -p "$port" --proto "$proto" $x -t recv -c "$c" -P "$p" -n "$n" \
            --key "$key" --cap 16000000 --name "${who}_recv_$cfg" >>"$dir/round"
        return
    fi
    # shellcheck disable=SC2086
    "$GEN" -p "$port" --proto "$proto" $x -t "$shape" -c "$c" -P "$p" -d "$SECS" \
        --key "$key" --cap 10000000 --name "${who}_${shape}_$cfg" >>"$dir/round"
}

# One shape at one configuration against both servers, ROUNDS times.
#   pair SHAPE CFG CONNS DEPTH
pair() {
    local shape=$1 cfg=$2 c=$3 p=$4 r first second s m
    local shapes=$shape all="$dir/all"
    [ -n "$ONLY" ] && [[ "$shape $cfg" != *$ONLY* ]] && return
    [ "$shape" = sendrecv_split ] && shapes="send recv"
    [ "$shape" = ack_split ] && shapes="acksend ackrecv"
    [ "$shape" = acklist_split ] && shapes="acklsend acklrecv"
    : >"$all"
    for r in $(seq "$ROUNDS"); do
        first=chand; second=redis
        [ $((r % 2)) = 0 ] && { first=redis; second=chand; }
        : >"$dir/round"
        one_run "$first" "$shape" "$cfg" "$c" "$p" "b$RANDOM$RANDOM"
        one_run "$second" "$shape" "$cfg" "$c" "$p" "b$RANDOM$RANDOM"
        sed "s/^bench: /$r /" "$dir/round" >>"$all"
    done
    for s in $shapes; do
        local name="${s}_$cfg"
        for who in chand redis; do
            for m in ops p50 p99 p999; do
                local unit=us
                [ "$m" = ops ] && unit=ops/s
                echo "bench: ${who}_${name}_$m $(awk -v k="${who}_${name}_$m" \
                    '$2 == k {print $3}' "$all" | median) $unit"
            done
        done
        local ro rp lo hi
        ro=$(ratio "$(awk -v k="chand_${name}_ops" '$2 == k {print $3}' "$all" | median)" \
                   "$(awk -v k="redis_${name}_ops" '$2 == k {print $3}' "$all" | median)")
        rp=$(ratio "$(awk -v k="chand_${name}_p99" '$2 == k {print $3}' "$all" | median)" \
                   "$(awk -v k="redis_${name}_p99" '$2 == k {print $3}' "$all" | median)")
        # per-round throughput ratios, for the spread
        read -r lo hi < <(spread "chand_${name}_ops" "redis_${name}_ops" "$all")
        echo "bench: ratio_$name $ro"
        echo "bench: ratio_${name}_lo $lo"
        echo "bench: ratio_${name}_hi $hi"
        echo "bench: ratio_${name}_p99 $rp"
    done
}

# redis-benchmark's own figures for the commands it has (a cross-check of
# the load generator's RESP side).
redis_bench() {  # CFG CONNS DEPTH COUNT
    [ -n "$ONLY" ] && return
    redis-benchmark -p "$RPORT" -c "$2" -P "$3" -n "$4" -t lpush,rpop,incr,hset \
        --csv 2>/dev/null | tr -d '"' | awk -F, -v cfg="$1" \
        'NR > 1 && $2 > 0 { printf "bench: redisbench_%s_%s %.0f ops/s\n", tolower($1), cfg, $2;
                            printf "bench: redisbench_%s_%s_p99 %.0f us\n", tolower($1), cfg, $7 * 1000 }'
}

for cfg in c1 c50 c50p16; do
    case $cfg in
    c1) c=1; p=1; n=20000 ;;
    c50) c=50; p=1; n=200000 ;;
    c50p16) c=50; p=16; n=2000000 ;;
    esac
    for shape in sendrecv_split handoff atomic map select4 mutex ack_split acklist_split; do
        hc=$c
        [ "$shape" = handoff ] && [ "$c" = 1 ] && hc=2  # 1 producer, 1 consumer
        pair "$shape" "$cfg" "$hc" "$p"
    done
    redis_bench "$cfg" "$c" "$p" "$n"
done

# ---- TLS and unix sockets (issue 17) ---------------------------------------
# chand over TLS against Redis over TLS (Debian's redis-server has it), and
# each over its unix socket, with the same load generator (OpenSSL on the
# client side for both), at c=1, c=50 and c=50 with pipeline 16.  Shapes:
# BENCH_SEC_SHAPES (default "sendrecv_split atomic").
sec_bench() {
    local shapes=${BENCH_SEC_SHAPES:-sendrecv_split atomic} tr cfg c p shape
    if [ -n "$ONLY" ] && [[ "$shapes tls_c1 tls_c50p16 unix_c1 unix_c50p16" != *$ONLY* ]]; then
        return
    fi
    "$top/tests/common/mkca.sh" "$dir/ca" ||
        { echo "bench-net: mkca.sh failed: no TLS figures"; return; }
    stop_pid "$cpid"; cpid=; stop_pid "$rpid"; rpid=
    rm -f "$dir/port" "$dir/tport"
    "$CHAND" --bind 127.0.0.1 --port 0 --port-file "$dir/port" \
        --unix-socket "$dir/chand.sock" --tls-port auto \
        --tls-port-file "$dir/tport" --tls-cert "$dir/ca/server.pem" \
        --tls-key "$dir/ca/server.key" --io-threads "${BENCH_IO_THREADS:-1}" \
        --log-level error >"$dir/chand.log" 2>&1 &
    cpid=$!
    for _ in $(seq 100); do [ -s "$dir/port" ] && break; sleep 0.05; done
    [ -s "$dir/port" ] || { echo "bench-net: chand (TLS) did not start"; cat "$dir/chand.log"; return; }
    CPORT=$(cat "$dir/port"); CTLS=$(cat "$dir/tport")
    RTLS=
    for _ in $(seq 20); do
        p=$((10000 + RANDOM % 22000))
        port_free "$p" || continue
        redis-server --port 0 --tls-port "$p" --bind 127.0.0.1 --save '' \
            --appendonly no --tls-cert-file "$dir/ca/server.pem" \
            --tls-key-file "$dir/ca/server.key" \
            --tls-ca-cert-file "$dir/ca/ca.pem" --tls-auth-clients no \
            --unixsocket "$dir/redis.sock" --unixsocketperm 700 \
            --logfile "$dir/redis.log" &
        rpid=$!
        for _ in $(seq 100); do
            kill -0 "$rpid" 2>/dev/null || break
            redis-cli -s "$dir/redis.sock" ping >/dev/null 2>&1 && { RTLS=$p; break; }
            sleep 0.05
        done
        [ -n "$RTLS" ] && break
        stop_pid "$rpid"; rpid=
    done
    [ -n "$RTLS" ] || { echo "bench-net: redis-server (TLS) did not start"; tail -5 "$dir/redis.log"; return; }
    echo "bench-net: TLS: chand port $CTLS, redis port $RTLS (TLS 1.3, P-256 certificate, no client certificates); unix: $dir/chand.sock, $dir/redis.sock"
    for tr in tls unix; do
        if [ "$tr" = tls ]; then
            PC=$CTLS; PR=$RTLS
            XC="--tls --cacert $dir/ca/ca.pem"; XR=$XC
        else
            PC=$CPORT; PR=1
            XC="--unix $dir/chand.sock"; XR="--unix $dir/redis.sock"
        fi
        for cfg in c1 c50 c50p16; do
            cfg_cp "$cfg"
            for shape in $shapes; do
                pair "$shape" "${tr}_$cfg" "$c" "$p"
            done
        done
    done
    PC=; PR=; XC=; XR=
}
sec_bench

# ---- durability (issue 15) --------------------------------------------------
# The same shapes against chand and Redis in memory, then each persisting
# with fsync always / everysec, on fresh servers and fresh directories.
# chand everysec (on $CPORT) against chand in memory (on $MPORT), the two
# alive at once and taken in turn, ROUNDS times: the goal's own ratio
# (everysec within 10% of memory), measured seconds apart instead of
# minutes, so that the machine's drift between sections does not count.
#   self_pair SHAPE CFG CONNS DEPTH
self_pair() {
    local shape=$1 cfg=$2 c=$3 p=$4 r s shapes=$1 all="$dir/selfall"
    [ -n "$ONLY" ] && [[ "$shape dur_paired_$cfg" != *$ONLY* ]] && return
    [ "$shape" = sendrecv_split ] && shapes="send recv"
    : >"$all"
    for r in $(seq "$ROUNDS"); do
        : >"$dir/round"
        if [ $((r % 2)) = 1 ]; then
            PC=$MPORT one_run chand "$shape" "selfm_$cfg" "$c" "$p" "m$RANDOM$RANDOM"
            one_run chand "$shape" "selfe_$cfg" "$c" "$p" "e$RANDOM$RANDOM"
        else
            one_run chand "$shape" "selfe_$cfg" "$c" "$p" "e$RANDOM$RANDOM"
            PC=$MPORT one_run chand "$shape" "selfm_$cfg" "$c" "$p" "m$RANDOM$RANDOM"
        fi
        sed "s/^bench: /$r /" "$dir/round" >>"$all"
    done
    for s in $shapes; do
        local m e lo hi
        m=$(awk -v k="chand_${s}_selfm_${cfg}_ops" '$2 == k {print $3}' "$all" | median)
        e=$(awk -v k="chand_${s}_selfe_${cfg}_ops" '$2 == k {print $3}' "$all" | median)
        read -r lo hi < <(spread "chand_${s}_selfe_${cfg}_ops" "chand_${s}_selfm_${cfg}_ops" "$all")
        echo "bench: chand_${s}_everysec_paired_${cfg}_ops $e ops/s"
        echo "bench: chand_${s}_memory_paired_${cfg}_ops $m ops/s"
        echo "bench: ratio_everysec_vs_memory_paired_${s}_$cfg $(ratio "$e" "$m")"
        echo "bench: ratio_everysec_vs_memory_paired_${s}_${cfg}_lo $lo"
        echo "bench: ratio_everysec_vs_memory_paired_${s}_${cfg}_hi $hi"
    done
}

dur_bench() {
    local shapes=${BENCH_DUR_SHAPES:-sendrecv_split atomic} pol cfg c p shape
    local base figs="$dir/durfigs"
    if [ -n "$ONLY" ] && [[ "$shapes dur_paired_" != *$ONLY* ]]; then
        return
    fi
    base=$(mktemp -d "${BENCH_DUR_DIR:-/var/tmp}/chand-bench-dur.XXXXXX") ||
        { echo "bench-net: no directory for the durability runs"; return; }
    : >"$figs"
    echo "bench-net: durability: logs in $base ($(df -P "$base" | awk 'NR == 2 {print $1}'))"
    for pol in memory everysec always; do
        stop_pid "$cpid"; cpid=; stop_pid "$rpid"; rpid=
        if [ $pol = memory ]; then
            start_chand; start_redis
        else
            mkdir -p "$base/chand-$pol" "$base/redis-$pol"
            start_chand --data-dir "$base/chand-$pol" --fsync $pol
            start_redis --appendonly yes --appendfsync $pol --dir "$base/redis-$pol"
        fi
        for cfg in c1 c50 c50p16; do
            cfg_cp "$cfg"
            for shape in $shapes; do
                pair "$shape" "dur_${pol}_$cfg" "$c" "$p" | tee -a "$figs"
            done
        done
        if [ $pol = everysec ]; then
            # The paired measurement: a chand in memory beside this one.
            local ecpid=$cpid ecport=$CPORT
            CLOG=chandm start_chand
            mpid=$cpid; MPORT=$CPORT; cpid=$ecpid; CPORT=$ecport
            for cfg in c1 c50 c50p16; do
                cfg_cp "$cfg"
                for shape in $shapes; do
                    self_pair "$shape" "$cfg" "$c" "$p"
                done
            done
            stop_pid "$mpid"; mpid=
        fi
    done
    stop_pid "$cpid"; cpid=; stop_pid "$rpid"; rpid=
    rm -rf "$base"
    # everysec against memory from the two sections (minutes apart); the
    # paired figures above are the goal's measure (>= 0.9).
    awk '$1 == "bench:" && $2 ~ /^chand_.*_dur_(memory|everysec)_c[0-9p]+_ops$/ {
             k = $2; sub(/^chand_/, "", k); sub(/_ops$/, "", k)
             pol = (k ~ /_dur_memory_/) ? "m" : "e"
             sub(/_dur_(memory|everysec)_/, "_", k)
             v[pol, k] = $3; keys[k] = 1 }
         END { for (k in keys) if (v["m", k] > 0 && v["e", k] != "")
                   printf "bench: ratio_everysec_vs_memory_%s %.2f\n", k, v["e", k] / v["m", k] }' \
        "$figs" | sort
}
dur_bench

# ---- memory: IDLE connections each parked in recv / BLPOP -------------------
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

mem_test() {  # label pid port proto
    local label=$1 pid=$2 port=$3 proto=$4 before after
    before=$(rss_kb "$pid")
    "$GEN" -p "$port" --proto "$proto" -t idle -c "$IDLE" -d 120 \
        --key "idle$RANDOM" >"$dir/idle.out" 2>&1 &
    gpid=$!
    for _ in $(seq 1200); do
        grep -q '^ready' "$dir/idle.out" && break
        kill -0 "$gpid" 2>/dev/null || break
        sleep 0.1
    done
    if ! grep -q '^ready' "$dir/idle.out"; then
        echo "bench-net: memory test against $label failed:"; cat "$dir/idle.out"
        stop_pid "$gpid"; gpid=; return
    fi
    sleep 1
    after=$(rss_kb "$pid")
    stop_pid "$gpid"; gpid=
    echo "bench: mem_${label}_rss_before $((before * 1024)) bytes"
    echo "bench: mem_${label}_rss_with_${IDLE}_blocked $((after * 1024)) bytes"
    echo "bench: mem_${label}_per_blocked_conn $(( (after - before) * 1024 / IDLE )) bytes"
}

if [ -z "$ONLY" ] || [[ mem == *$ONLY* ]]; then
    # Fresh servers, so that the runs above do not count.
    stop_pid "$cpid"; cpid=; stop_pid "$rpid"; rpid=
    start_chand; start_redis
    mem_test chand "$cpid" "$CPORT" chand > "$dir/mem"
    mem_test redis "$rpid" "$RPORT" resp >> "$dir/mem"
    cat "$dir/mem"
    echo "bench: ratio_mem_per_blocked_conn $(ratio "$(val mem_chand_per_blocked_conn "$dir/mem")" "$(val mem_redis_per_blocked_conn "$dir/mem")")"
fi
