#!/usr/bin/env bash
# chanctl as a work queue: producers pipe lines into `send -`, consumers
# `range` until the channel is closed; every value arrives exactly once.
. "$(dirname "$0")/lib.sh" || exit 1
start_daemon

ctl make jobs 4 || fail "make"
# Two consumers share the queue; range exits 0 when the channel closes.
ctl range jobs --raw >"$T/c1" 2>"$T/c1.err" &
c1=$!
ctl range jobs --raw >"$T/c2" 2>"$T/c2.err" &
c2=$!
seq 1 200 | sed 's/^/job-/' | ctl send jobs - || fail "send -"
ctl close jobs || fail "close"
wait $c1 || fail "consumer 1 exited $?: $(cat "$T/c1.err")"
wait $c2 || fail "consumer 2 exited $?: $(cat "$T/c2.err")"
sort "$T/c1" "$T/c2" >"$T/all"
seq 1 200 | sed 's/^/job-/' | sort >"$T/want"
cmp -s "$T/all" "$T/want" || fail "consumers got $(wc -l <"$T/all") lines, not each job once"

# JSON values keep their type; strings print as JSON without --raw.
ctl make vals 10 || fail "make vals"
ctl send vals '{"a":[1,2]}' || fail "send object"
ctl send vals 42 || fail "send number"
ctl send vals hello || fail "send string"
ctl send vals '"quoted"' || fail "send json string"
ctl close vals || fail "close vals"
ctl range vals >"$T/vals" || fail "range vals"
printf '%s\n' '{"a":[1,2]}' 42 '"hello"' '"quoted"' >"$T/want"
cmp -s "$T/vals" "$T/want" || fail "range printed: $(cat "$T/vals")"

# A pipeline through two channels: stage 2 doubles numbers.
ctl make in 0 && ctl make out 0 || fail "make in/out"
(ctl range in --raw | while read -r n; do ctl send out $((n * 2)) || exit 1; done
 ctl close out) &
stage=$!
ctl range out >"$T/out" &
sink=$!
for i in 1 2 3; do ctl send in "$i" || fail "send in $i"; done
ctl close in || fail "close in"
wait $stage || fail "stage failed"
wait $sink || fail "sink failed"
[ "$(tr '\n' ' ' <"$T/out")" = "2 4 6 " ] || fail "pipeline gave $(cat "$T/out")"
echo "ok pipeline"
