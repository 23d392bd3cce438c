#!/usr/bin/env bash
# The short Jepsen-style run of make test (issue 19): the checker's unit
# tests, then tests/cluster/jepsen with 8 leader changes on three local
# nodes, SIGKILLs and leadership transfers in turn (a transfer deposes a
# leader that lives on and rebuilds: the path of the lock-overlap defect
# fixed by 96ec0b3), with workers on a channel received with acknowledgement
# among the clients; the history must check clean.  SIGSTOP is left to make
# test-cluster: libraft 0.15 can crash a leader continued after a stop
# (README, Running a cluster), which would make this run flaky; for the
# same reason a node that crashes on its own (seen once under ASan) is
# restarted and the history still checked (--crashed restart).  A kill
# after which the two survivors elect no leader for 30 s (seen about once
# in 200 kills, cause not found: README) is reported as a stall; the killed
# node then comes back at once and writes must resume (--stalled restart),
# so that this run checks the history rather than fail on that rare
# liveness defect.  make test-cluster runs the long one (100 kills and
# more), which fails on a stall.
. "$(dirname "$0")/lib.sh" || exit 1
BUILD=${BUILD:-build}
top=$(cd "$(dirname "$0")/../.." && pwd)
jcheck="$top/$BUILD/cluster/test_jcheck"
jepsen="$top/$BUILD/cluster/jepsen"
[ -x "$jcheck" ] && [ -x "$jepsen" ] || fail "build the harness first (make)"

CMOCKA_MESSAGE_OUTPUT=stdout "$jcheck" >"$T/jcheck.log" 2>&1 ||
    { cat "$T/jcheck.log" >&2; fail "checker unit tests"; }
case_ok "checker unit tests ($(grep -c '^\[       OK \]' "$T/jcheck.log") cases)"

CHAND_BIN="$CHAND_BIN" "$jepsen" --kills "${CLUSTER_SHORT_KILLS:-8}" --interval-ms 1000 \
    --nemesis kill,transfer --crashed restart --stalled restart \
    >"$T/jepsen.log" 2>&1
rc=$?
sed 's/^/    /' "$T/jepsen.log" | grep -v '^    jepsen: kill' >&2
[ "$rc" = 0 ] || { cat "$T/jepsen.log" >&2; fail "jepsen run exited $rc"; }
grep -q '^check: 0 violations' "$T/jepsen.log" || fail "jepsen: no clean check"
case_ok "jepsen: ${CLUSTER_SHORT_KILLS:-8} leader SIGKILLs and transfers, history clean"
