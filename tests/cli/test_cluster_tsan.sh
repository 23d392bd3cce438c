#!/usr/bin/env bash
# The cluster under ThreadSanitizer (issue 19): three nodes of chand built
# with -fsanitize=thread (build/tsan/chand: make test and make asan build it
# first, whatever their own build) go through 40 leadership transfers while
# the Jepsen clients run, the acknowledged workers among them.  A transfer
# deposes a live leader, which rebuilds and can lead again while its raft
# thread still applies entries: the path of the use-after-free fixed by
# 7044a88 (a new leader's restore freed the recorded deliveries while the
# raft thread read them), on whose build this run failed in 5 tries out of
# 5 (4 on TSan reports, 1 on the history's acknowledged channel).  The history must check clean, and no node may
# report a race or a use-after-free in chand's own code.  Reports whose
# summary lies in libuv (not instrumented: its thread pool hands an fd to
# the loop through atomics TSan cannot see) are printed, not counted.
. "$(dirname "$0")/lib.sh" || exit 1
BUILD=${BUILD:-build}
top=$(cd "$(dirname "$0")/../.." && pwd)
jepsen="$top/$BUILD/cluster/jepsen"
tsan_chand=${CHAND_TSAN_BIN:-$top/build/tsan/chand}
[ -x "$jepsen" ] || fail "build the harness first (make)"
[ -x "$tsan_chand" ] || fail "no $tsan_chand: make tsan-chand builds it"

# exitcode=0: a node's exit status is the harness's business; the reports
# in the files are this test's.
export TSAN_OPTIONS="log_path=$T/tsan suppressions=$top/tests/soak/tsan.supp halt_on_error=0 exitcode=0"
CHAND_BIN="$tsan_chand" "$jepsen" --kills "${CLUSTER_TSAN_TRANSFERS:-40}" \
    --interval-ms 500 --nemesis transfer --crashed restart --stalled restart \
    >"$T/jepsen.log" 2>&1
rc=$?
unset TSAN_OPTIONS
sed 's/^/    /' "$T/jepsen.log" | grep -v '^    jepsen: kill' >&2
[ "$rc" = 0 ] || { cat "$T/jepsen.log" >&2; fail "jepsen run exited $rc"; }
grep -q '^check: 0 violations' "$T/jepsen.log" || fail "jepsen: no clean check"
grep -q '^check: ack: 0 violations' "$T/jepsen.log" ||
    fail "jepsen: acknowledged channel not clean"
case_ok "tsan: ${CLUSTER_TSAN_TRANSFERS:-40} leadership transfers, history clean"

reports=$(cat "$T"/tsan.* 2>/dev/null | grep -c '^SUMMARY: ThreadSanitizer')
ours=$(cat "$T"/tsan.* 2>/dev/null | grep '^SUMMARY: ThreadSanitizer' |
    grep -cE ' (daemon|runtime|proto|client)/')
if [ "$reports" -gt 0 ]; then
    echo "    tsan: $reports report(s), $ours in chand's code:" >&2
    cat "$T"/tsan.* >&2
fi
[ "$ours" = 0 ] || fail "tsan: $ours report(s) in chand's code (above)"
case_ok "tsan: no race in chand's code ($reports report(s) elsewhere)"
