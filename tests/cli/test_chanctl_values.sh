#!/usr/bin/env bash
# Values and durations (issue 20): Go's duration syntax, send --file,
# --string and --json, the JSON-or-string rule, send --raw refused,
# `send q -- -x`, -q, and recv --make.
. "$(dirname "$0")/lib.sh" || exit 1

# Durations: usage errors need no server.
export CHAND_SERVER=127.0.0.1:1
for bad in 1x 5parsecs 1e3s -1s "1.5 ms" h 1h30 s1; do
    expect_exit 2 recv q --timeout "$bad"
    grep -q "bad duration" "$T/err" || fail "--timeout $bad: $(cat "$T/err")"
done
start_daemon

# Go's syntax, where the wire carries milliseconds (a lease shows them).
check_lease() { # DUR MS
    local tok
    tok=$(ctl mutex lock "l$2" --lease "$1" 2>/dev/null) || fail "lock --lease $1"
    ctl --json dump >"$T/dump" || fail "dump"
    grep -q "\"lease_ms\":$2[,}]" "$T/dump" || fail "--lease $1: want $2 ms in $(cat "$T/dump")"
    ctl mutex unlock "l$2" --token "$tok" || fail "unlock l$2"
}
check_lease 1h30m 5400000
check_lease 5m30s 330000
check_lease 61.5s 61500
check_lease 90000ms 90000
check_lease 2m 120000
check_lease 1h0m0.5s 3600500
ctl make q 1 || fail "make q"
expect_exit 124 recv q --timeout 300ms
expect_exit 124 recv q --timeout 100us     # under 1 ms still waits (1 ms)
expect_exit 124 recv q --timeout 0.05       # a bare number is seconds
expect_exit 0 len q --timeout 1h30m

# The JSON-or-string rule, and --string / --json.
rt() { # SEND-ARGS... : sends on q, prints what recv gets
    ctl send q "$@" || fail "send q $*: exit $?"
    ctl recv q
}
[ "$(rt 42)" = 42 ] || fail "42 is not a number"
[ "$(rt 042)" = '"042"' ] || fail "042: $(rt 042)"
[ "$(rt '[1,2')" = '"[1,2"' ] || fail "[1,2 is not a string"
[ "$(rt '{"a":[1,2]}')" = '{"a":[1,2]}' ] || fail "object"
[ "$(rt --string 42)" = '"42"' ] || fail "--string 42"
[ "$(rt --string '{"a":1}')" = '"{\"a\":1}"' ] || fail "--string object"
[ "$(rt --json '[1,2]')" = '[1,2]' ] || fail "--json [1,2]"
expect_exit 2 send q --json '[1,2'
grep -q "not valid JSON" "$T/err" || fail "--json [1,2: $(cat "$T/err")"
expect_exit 2 send q --json 042
expect_exit 2 send q --json --string 1
expect_out '0 1 0' len q      # nothing was sent by the refused ones
printf '1\n[1,2\n' | ctl send q --json - 2>"$T/err"
[ $? = 2 ] || fail "send --json - with a bad line"
grep -q "line 2" "$T/err" || fail "bad line not named: $(cat "$T/err")"
expect_out 1 recv q

# --raw means nothing for send: refused.
expect_exit 2 send q --raw x
grep -q -- "--raw" "$T/err" || fail "send --raw: $(cat "$T/err")"
# A value that looks like an option, after --.
[ "$(rt -- -x)" = '"-x"' ] || fail "send q -- -x"
[ "$(rt -- --json)" = '"--json"' ] || fail "send q -- --json"
expect_exit 0 send q -- -5
expect_out -5 recv q

# --file: a whole file as one value, its bytes as they are.
printf 'line one\nline two\n' >"$T/text"
printf '{"k": [1, 2],\n "s": "x"}\n' >"$T/obj.json"
[ "$(rt --file "$T/text")" = '"line one\nline two\n"' ] || fail "--file text"
[ "$(rt --file "$T/obj.json")" = '{"k":[1,2],"s":"x"}' ] || fail "--file json"
[ "$(rt --string --file "$T/obj.json")" = '"{\"k\": [1, 2],\n \"s\": \"x\"}\n"' ] ||
    fail "--string --file"
got=$(printf 'a\nb' | ctl send q --file - && ctl recv q) || fail "--file -"
[ "$got" = '"a\nb"' ] || fail "--file -: $got"
expect_exit 2 send q --file "$T/nonexistent"
grep -q "cannot open" "$T/err" || fail "missing file: $(cat "$T/err")"
expect_exit 2 send q v --file "$T/text"
printf '\xff\xfe' >"$T/bin"
expect_exit 2 send q --string --file "$T/bin"
grep -q "UTF-8" "$T/err" || fail "binary file: $(cat "$T/err")"
expect_out '0 1 0' len q

# -q: recv on a closed channel exits 1 without the note.
ctl make c 0 && ctl close c || fail "make/close c"
expect_exit 1 recv c
grep -q "is closed" "$T/err" || fail "no closed note without -q"
expect_exit 1 recv c -q
[ ! -s "$T/err" ] || fail "-q recv printed: $(cat "$T/err")"
expect_exit 1 --quiet recv c
[ ! -s "$T/err" ] || fail "--quiet recv printed: $(cat "$T/err")"

# recv --make: the consumer starts first and makes the channel.
ctl recv jobs --make 1 >"$T/got" 2>"$T/cerr" &
consumer=$!
EXTRA_PIDS="$EXTRA_PIDS $consumer"
for i in $(seq 1 500); do
    ctl list jobs | grep -q '^jobs' && break
    sleep 0.02
done
ctl list jobs | grep -q "^jobs.*\"cap\":1" || fail "recv --make did not make jobs"
ctl send jobs '"first"' || fail "send jobs"
wait "$consumer" || fail "consumer exited $?: $(cat "$T/cerr")"
[ "$(cat "$T/got")" = '"first"' ] || fail "consumer got $(cat "$T/got")"
# On an existing channel (even of another capacity) --make is harmless;
# two consumers racing to make it both get on with it.
ctl send jobs 2 || fail "send jobs 2"
expect_out 2 recv jobs --make 5
ctl recv race --make 0 --timeout 5s >"$T/r1" 2>&1 & r1=$!
ctl recv race --make 0 --timeout 5s >"$T/r2" 2>&1 & r2=$!
EXTRA_PIDS="$EXTRA_PIDS $r1 $r2"
for i in $(seq 1 500); do
    ctl list race | grep -q '^race' && break
    sleep 0.02
done
ctl send race 1 --timeout 5s || fail "send race 1"
ctl send race 2 --timeout 5s || fail "send race 2"
wait $r1 || fail "racer 1: $(cat "$T/r1")"
wait $r2 || fail "racer 2: $(cat "$T/r2")"
[ "$(sort "$T/r1" "$T/r2" | tr '\n' ' ')" = "1 2 " ] || fail "racers got $(cat "$T/r1" "$T/r2")"
expect_exit 2 recv x --make -1
expect_exit 2 send x 1 --make 1
echo "ok values"
