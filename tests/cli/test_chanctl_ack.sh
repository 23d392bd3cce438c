#!/usr/bin/env bash
# chanctl's acknowledged delivery (issue 18): recv --ack (the id on
# stderr, or in --json), ack/nack/touch/term with stale ids, make
# --max-deliver --dead-letter, len's INFLIGHT, and `work`: every value
# processed once, a failing one dead-lettered, the value on stdin and in
# $CHAND_VALUE, and a worker killed while it holds a value losing nothing.
. "$(dirname "$0")/lib.sh" || exit 1

# Usage errors need no server.
CHAND_SERVER=127.0.0.1:1
export CHAND_SERVER
expect_exit 2 ack q
expect_exit 2 nack q 1 --delay forever
expect_exit 2 make q --max-deliver 0
expect_exit 2 make q --max-deliver 1000001
expect_exit 2 recv q --ack --ack-wait 0
expect_exit 2 work q
expect_exit 2 work q --max 0 -- true
expect_exit 2 send q 1 --ack
case_ok "usage errors"

start_daemon
expect_exit 2 ack q notanumber              # (checked once connected)
expect_exit 2 ack q -- -5
expect_exit 2 recv q --ack-wait 1s          # without --ack
# recv --ack: value on stdout, the id alone on stderr; the delivery ends
# with chanctl's session, so the value comes back as attempt 2, and the
# first id is stale.
expect_exit 0 make q 4
expect_exit 0 send q '"job-1"'
expect_exit 0 recv --ack q
[ "$(cat "$T/out")" = '"job-1"' ] || fail "recv --ack out: $(cat "$T/out")"
id1=$(cat "$T/err")
[[ $id1 =~ ^[0-9]+$ ]] || fail "recv --ack stderr: '$id1'"
expect_exit 0 --json recv --ack q --ack-wait 1m
out=$(cat "$T/out")
[[ $out == '{"value":"job-1","ok":true,"delivery":{"id":'*',"attempt":2}}' ]] ||
    fail "recv --ack --json: $out"
for cmd in ack nack touch term; do
    expect_exit 3 "$cmd" q "$id1"
    grep -q not_pending "$T/err" || fail "$cmd stale: $(cat "$T/err")"
done
expect_out "1 4 0" len q
expect_out '{"len":1,"cap":4,"inflight":0}' --json len q
# select --ack: a receive case taken gives a delivery (here attempt 3:
# the one-shot sessions above each ended with theirs).
expect_exit 0 make other 1
expect_exit 0 select --ack recv:q recv:other --timeout 5s
[ "$(cat "$T/out")" = "0	\"job-1\"" ] || fail "select --ack out: $(cat "$T/out")"
[[ $(cat "$T/err") =~ ^[0-9]+$ ]] || fail "select --ack stderr: $(cat "$T/err")"
expect_exit 0 --json select --ack --ack-wait 1m recv:q recv:other
[[ $(cat "$T/out") == '{"index":0,"value":"job-1","ok":true,"delivery":{"id":'*',"attempt":4}}' ]] ||
    fail "select --ack --json: $(cat "$T/out")"
expect_exit 2 select recv:q --ack-wait 1s
case_ok "recv --ack, select --ack, stale ids"

# work: each good value once, through stdin and $CHAND_VALUE; "bad"
# fails twice and lands in the dead-letter channel; work ends once the
# channel is closed and everything settled.
expect_exit 0 make jobs 8 --max-deliver 2 --dead-letter jobs.dead
expect_exit 3 make jobs 8 --max-deliver 3 --dead-letter jobs.dead
expect_exit 0 make jobs.dead 8
for v in a b bad c '{"k":1}'; do expect_exit 0 send jobs "$v"; done
expect_exit 0 close jobs
cat >"$T/job.sh" <<'EOS'
#!/bin/sh
read -r line
[ "$line" = "$CHAND_VALUE" ] || { echo "stdin '$line' != '$CHAND_VALUE'"; exit 9; }
echo "$CHAND_VALUE $CHAND_ATTEMPT" >>"$DONE"
[ "$CHAND_VALUE" = bad ] && exit 3
exit 0
EOS
chmod +x "$T/job.sh"
DONE="$T/done" "$CHANCTL_BIN" --timeout 20s work jobs --ack-wait 5s -- "$T/job.sh" \
    >"$T/wout" 2>"$T/werr" || fail "work exited $?: $(cat "$T/werr")"
sort "$T/done" >"$T/done.sorted"
printf '%s\n' 'a 1' 'b 1' 'bad 1' 'bad 2' 'c 1' '{"k":1} 1' | sort >"$T/want"
diff "$T/want" "$T/done.sorted" >&2 || fail "work ran: $(cat "$T/done")"
expect_out '{"origin":"jobs","value":"bad","attempts":2,"reason":"exit 3"}' \
    recv jobs.dead --timeout 5s
expect_out "0 8 0" len jobs
expect_exit 1 recv jobs -q
case_ok "work: each value once, dead letter after --max-deliver"

# A worker SIGKILLed while its command runs: the value goes to the next
# worker (attempt 2), which --max 1 stops after it.
expect_exit 0 make k 2
expect_exit 0 send k v1
setsid "$CHANCTL_BIN" work k --ack-wait 30s -- sh -c 'touch "$0"; sleep 60' \
    "$T/started" >/dev/null 2>&1 &
wpid=$!
EXTRA_PIDS="$EXTRA_PIDS $wpid"
for i in $(seq 1 500); do [ -e "$T/started" ] && break; sleep 0.02; done
[ -e "$T/started" ] || fail "first worker did not start its command"
expect_out "0 2 1" len k
expect_exit 0 dump
grep -q '^chan k (len 0/2, elem any, inflight 1)$' "$T/out" || fail "dump: $(cat "$T/out")"
kill -KILL -- "-$wpid"      # chanctl and its command
wait "$wpid" 2>/dev/null
expect_exit 0 --timeout 10s work k --max 1 -- sh -c 'echo "$CHAND_VALUE $CHAND_ATTEMPT" >"$0"' "$T/second"
[ "$(cat "$T/second")" = "v1 2" ] || fail "second worker: $(cat "$T/second")"
expect_out "0 2 0" len k
# --timeout bounds the wait for a value.
expect_exit 124 --timeout 200ms work k -- true
# A command that cannot run: the value is given back, chanctl stops (127).
expect_exit 0 send k v2
expect_exit 127 work k -- "$T/no-such-command"
grep -q "cannot run" "$T/err" || fail "work no command: $(cat "$T/err")"
expect_out "1 2 0" len k
expect_exit 0 work k --max 1 -- true
case_ok "work: a killed worker loses nothing"

# A worker stopped past its deadline: the value goes to another worker;
# resumed, the first finds its delivery gone at the next touch, stops its
# command (SIGTERM) and leaves the value alone, then ends with the
# channel.
expect_exit 0 make s 2
expect_exit 0 send s v1
"$CHANCTL_BIN" --timeout 20s work s --ack-wait 1s -- sh -c 'touch "$0"; exec sleep 30' \
    "$T/s.started" >/dev/null 2>"$T/s.err" &
spid=$!
EXTRA_PIDS="$EXTRA_PIDS $spid"
for i in $(seq 1 500); do [ -e "$T/s.started" ] && break; sleep 0.02; done
[ -e "$T/s.started" ] || fail "stopped worker did not start its command"
kill -STOP "$spid"
expect_exit 0 --timeout 10s work s --max 1 -- sh -c 'echo "$CHAND_ATTEMPT" >"$0"' "$T/s.second"
[ "$(cat "$T/s.second")" = 2 ] || fail "second worker: attempt $(cat "$T/s.second")"
expect_exit 0 close s
kill -CONT "$spid"
wait "$spid" || fail "resumed worker exited $?: $(cat "$T/s.err")"
grep -q "no longer ours" "$T/s.err" || fail "resumed worker: $(cat "$T/s.err")"
expect_out "0 2 0" len s
case_ok "work: a stopped worker loses its delivery and stops its command"

# The server stops answering (SIGSTOP: a host gone quiet): the touch
# gives up, the command is stopped and work exits 4; the value is the
# next worker's.
expect_exit 0 make p 2
expect_exit 0 send p v
"$CHANCTL_BIN" --timeout 20s work p --ack-wait 1s --grace 1s -- sh -c 'touch "$0"; exec sleep 30' \
    "$T/p.started" >/dev/null 2>"$T/p.err" &
ppid_=$!
EXTRA_PIDS="$EXTRA_PIDS $ppid_"
for i in $(seq 1 500); do [ -e "$T/p.started" ] && break; sleep 0.02; done
[ -e "$T/p.started" ] || fail "worker did not start its command"
kill -STOP "$CHAND_PID"
wait "$ppid_"
st=$?
kill -CONT "$CHAND_PID"
[ "$st" = 4 ] || fail "work with a silent server exited $st: $(cat "$T/p.err")"
grep -q "stopping sh" "$T/p.err" || fail "work: $(cat "$T/p.err")"
expect_exit 0 --timeout 10s work p --max 1 -- true
expect_out "0 2 0" len p
case_ok "work: a server that stops answering"
