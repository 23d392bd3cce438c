/*
 * test_durability_restore.c - issue 15 end to end, what test_durability.c
 * does not cover: state whose meaning is time.
 *  - timers (after, ticker, afterfunc with its request) survive kill -9 as
 *    wall-clock deadlines: one overdue at the restart fires once (and not
 *    again after a second restart), one still pending fires no earlier than
 *    its deadline, a stopped one stays stopped, a ticker ticks on;
 *  - timers survive compaction (their records then live in the snapshot
 *    only);
 *  - a renewed lease survives with the renewed time left, longer or
 *    shorter than the first;
 *  - disk full: with data_dir on a small tmpfs (a private mount namespace,
 *    `unshare -rm`), writes fail with reason limit and "disk full", reads
 *    work, and writes come back once space returns, with every value
 *    acknowledged before still there, in order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/e2e.h"

static char ddir[256]; /* the data_dir under test */

static int rs_setup(void **state)
{
    (void)state;
    snprintf(ddir, sizeof ddir, "/tmp/chand-durr-XXXXXX");
    return mkdtemp(ddir) ? 0 : -1;
}

static int rs_teardown(void **state)
{
    (void)state;
    testd_close_all();
    testd_kill_children(true);
    testd_rm_rf(ddir);
    return 0;
}

/* Starts D on ddir with the policy and more args (NULL-terminated, or
 * NULL).  Returns 0 or -1. */
static int rs_start(const char *policy, const char *more)
{
    const char *args[] = {
        "--data-dir", ddir, "--fsync", policy, more ? "--compact-floor" : NULL,
        more,         NULL};
    return testd_start(&D, args);
}

static void rs_kill(void)
{
    if (D.pid > 0) /* never kill(0): that is our process group */
        kill(D.pid, SIGKILL);
    testd_wait_exit(&D, 20000);
}

/* Milliseconds on the wall clock (the clock timers' deadlines use). */
static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Pauses until the wall clock passes t (a deadline the test set up to be
 * overdue: the point is being later than it, not waiting for an effect). */
static void wall_until(int64_t t)
{
    while (wall_ms() <= t)
        testd_sleep_ms(20);
}

static json_int_t chan_len(testd_conn *c, const char *name)
{
    char p[128];
    snprintf(p, sizeof p, "{\"name\":\"%s\"}", name);
    return e2e_ok_int(c, 0, "len", p, "len");
}

/* Waits (up to 15 s) until name's length is at least n. */
static void wait_len(testd_conn *c, const char *name, json_int_t n)
{
    for (int64_t t0 = testd_now_ms(); chan_len(c, name) < n; testd_sleep_ms(20))
        if (testd_now_ms() - t0 > 15000)
            fail_msg("channel %s never reached length %lld", name,
                     (long long)n);
}

/* Receives one value of name (waiting up to 15 s); returns it as an
 * integer. */
static json_int_t recv_int(testd_conn *c, const char *name)
{
    char p[128];
    snprintf(p, sizeof p, "{\"name\":\"%s\",\"timeout_ms\":15000}", name);
    json_t *r = e2e_ok(c, 0, "recv", p);
    assert_true(json_is_true(json_object_get(r, "ok")));
    return json_integer_value(json_object_get(r, "value"));
}

/* Receives one value of name, which must be there now; returns it (new). */
static json_t *recv_now(testd_conn *c, const char *name)
{
    char p[128];
    snprintf(p, sizeof p, "{\"name\":\"%s\",\"timeout_ms\":0}", name);
    json_t *r = e2e_ok(c, 0, "recv", p);
    assert_true(json_is_true(json_object_get(r, "ok")));
    return json_incref(json_object_get(r, "value"));
}

/* Makes the marker timer and waits until it fired: the timers the
 * restart armed as overdue (deadline at or before the start) fired
 * before it, in deadline order, on the one timer thread. */
static void timers_settled(testd_conn *c)
{
    e2e_ok(c, 0, "timer.after", "{\"name\":\"marker\",\"ms\":1}");
    wait_len(c, "marker", 1);
    e2e_ok(c, 0, "drop", "{\"name\":\"marker\"}");
}

/* ------------------------------------------------------------------ */
/* Timers and kill -9                                                 */
/* ------------------------------------------------------------------ */

static void test_timers_survive_kill(void **state)
{
    testd_conn *c;
    (void)state;

    assert_int_equal(rs_start("always", NULL), 0);
    c = testd_connect(&D);
    int64_t t0 = wall_ms();
    e2e_ok(c, 0, "make", "{\"name\":\"afq\",\"cap\":10}");
    e2e_ok(c, 0, "timer.after", "{\"name\":\"over\",\"ms\":1000}");
    e2e_ok(c, 0, "timer.after", "{\"name\":\"later\",\"ms\":2500}");
    e2e_ok(c, 0, "timer.ticker", "{\"name\":\"tick\",\"ms\":200}");
    e2e_ok(c, 0, "timer.after", "{\"name\":\"stopped\",\"ms\":1000}");
    assert_true(
        e2e_ok_bool(c, 0, "timer.stop", "{\"name\":\"stopped\"}", "stopped"));
    json_t *r = e2e_ok(c, 0, "timer.afterfunc",
                       "{\"ms\":1000,\"request\":{\"method\":\"send\","
                       "\"params\":{\"name\":\"afq\",\"value\":\"ran\"}}}");
    char af[64];
    snprintf(af, sizeof af, "%s",
             json_string_value(json_object_get(r, "timer")));
    r = e2e_ok(c, 0, "timer.afterfunc",
               "{\"ms\":600000,\"request\":{\"method\":\"send\","
               "\"params\":{\"name\":\"afq\",\"value\":\"late\"}}}");
    char aflong[64];
    snprintf(aflong, sizeof aflong, "%s",
             json_string_value(json_object_get(r, "timer")));
    testd_close(c);
    /* Killed before any of them fired (else the overdue part proves
     * less, but every check still holds); down past the 1 s ones. */
    rs_kill();
    if (wall_ms() >= t0 + 1000)
        print_message("# note: a slow machine: the kill came after the "
                      "1 s timers fired\n");
    wall_until(t0 + 1100);

    assert_int_equal(rs_start("always", NULL), 0);
    c = testd_connect(&D);
    /* The overdue ones fire once at the start; the afterfunc ran its
     * request and left the namespace. */
    wait_len(c, "over", 1);
    wait_len(c, "afq", 1);
    json_t *v = recv_now(c, "afq");
    assert_string_equal(json_string_value(v), "ran");
    json_decref(v);
    char p[128];
    snprintf(p, sizeof p, "{\"name\":\"%s\"}", af);
    e2e_expect_reason(c, 0, "timer.stop", p, "not_found");
    /* The stopped one stays stopped, and is still a timer. */
    timers_settled(c);
    assert_int_equal(chan_len(c, "stopped"), 0);
    assert_false(
        e2e_ok_bool(c, 0, "timer.stop", "{\"name\":\"stopped\"}", "stopped"));
    /* The ticker ticks on. */
    assert_true(recv_int(c, "tick") >= t0 + 200);
    assert_true(recv_int(c, "tick") >= t0 + 200);
    /* The pending one fires at its deadline, not before (the daemon set
     * it at or after t0 + 2500). */
    assert_true(recv_int(c, "later") >= t0 + 2500);
    /* The long afterfunc is still pending, under its name. */
    json_t *info = e2e_ok(c, 0, "list", "{\"prefix\":\"afterfunc\"}");
    json_t *objs = json_object_get(info, "objects");
    assert_int_equal(json_array_size(objs), 1);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(objs, 0), "name")),
        aflong);
    /* Consumed: what a second restart must not bring back. */
    assert_true(recv_int(c, "over") >= t0 + 1000);
    testd_close(c);
    rs_kill();

    assert_int_equal(rs_start("always", NULL), 0);
    c = testd_connect(&D);
    timers_settled(c);
    assert_int_equal(chan_len(c, "over"), 0); /* fired once, not twice */
    assert_int_equal(chan_len(c, "later"), 0);
    assert_int_equal(chan_len(c, "afq"), 0); /* the afterfunc ran once */
    /* The restored timers are timers still: reset and stop work. */
    assert_false(e2e_ok_bool(c, 0, "timer.reset",
                             "{\"name\":\"later\",\"ms\":1}", "active"));
    wait_len(c, "later", 1);
    snprintf(p, sizeof p, "{\"name\":\"%s\"}", aflong);
    assert_true(e2e_ok_bool(c, 0, "timer.stop", p, "stopped"));
    /* A new afterfunc gets a name no restored one holds. */
    r = e2e_ok(c, 0, "timer.afterfunc",
               "{\"ms\":600000,\"request\":{\"method\":\"len\","
               "\"params\":{\"name\":\"afq\"}}}");
    assert_string_not_equal(json_string_value(json_object_get(r, "timer")),
                            aflong);
    testd_close(c);
    assert_int_equal(testd_stop(&D), 0);
}

/* ------------------------------------------------------------------ */
/* Timers and compaction                                              */
/* ------------------------------------------------------------------ */

static void test_timers_survive_compaction(void **state)
{
    testd_conn *c;
    (void)state;

    assert_int_equal(rs_start("everysec", "4096"), 0);
    c = testd_connect(&D);
    int64_t t0 = wall_ms();
    e2e_ok(c, 0, "make", "{\"name\":\"afq\",\"cap\":10}");
    e2e_ok(c, 0, "make", "{\"name\":\"load\",\"cap\":4}");
    e2e_ok(c, 0, "timer.after", "{\"name\":\"later\",\"ms\":3000}");
    e2e_ok(c, 0, "timer.ticker", "{\"name\":\"tick\",\"ms\":100}");
    e2e_ok(c, 0, "timer.afterfunc",
           "{\"ms\":2500,\"request\":{\"method\":\"send\","
           "\"params\":{\"name\":\"afq\",\"value\":\"ran\"}}}");
    e2e_ok(c, 0, "timer.after", "{\"name\":\"stopped\",\"ms\":300}");
    e2e_ok(c, 0, "timer.stop", "{\"name\":\"stopped\"}");
    /* Traffic until two snapshots were taken: the first segments, with
     * the timers' timer_add records, are gone; the snapshot holds them. */
    char big[2048], line[2200];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    snprintf(line, sizeof line, "{\"name\":\"load\",\"value\":\"%s\"}", big);
    for (int64_t t = testd_now_ms();; testd_sleep_ms(1)) {
        json_t *st = testd_stats(&D);
        json_int_t snaps = json_integer_value(
            json_object_get(json_object_get(st, "durability"), "snapshots"));
        json_decref(st);
        if (snaps >= 2)
            break;
        if (testd_now_ms() - t > 15000)
            fail_msg("no compaction");
        for (int i = 0; i < 8; i++) {
            e2e_ok(c, 0, "send", line);
            e2e_ok(c, 0, "recv", "{\"name\":\"load\"}");
        }
    }
    if (wall_ms() >= t0 + 2500) /* every check still holds */
        print_message("# note: a slow machine: the timers fired before "
                      "the kill\n");
    testd_close(c);
    rs_kill();

    assert_int_equal(rs_start("everysec", "4096"), 0);
    c = testd_connect(&D);
    assert_true(recv_int(c, "later") >= t0 + 3000);
    assert_true(recv_int(c, "tick") >= t0 + 100);
    wait_len(c, "afq", 1);
    json_t *v = recv_now(c, "afq");
    assert_string_equal(json_string_value(v), "ran");
    json_decref(v);
    timers_settled(c);
    assert_int_equal(chan_len(c, "stopped"), 0);
    assert_false(
        e2e_ok_bool(c, 0, "timer.stop", "{\"name\":\"stopped\"}", "stopped"));
    testd_close(c);
    assert_int_equal(testd_stop(&D), 0);
}

/* ------------------------------------------------------------------ */
/* Renewed leases                                                     */
/* ------------------------------------------------------------------ */

static void test_renewed_lease(void **state)
{
    testd_conn *c;
    char p[160];
    (void)state;

    assert_int_equal(rs_start("always", NULL), 0);
    c = testd_connect(&D);
    int64_t t0 = wall_ms();
    /* Renewed longer: outlives its first lease, and the restart. */
    int64_t longer = e2e_ok_int(
        c, 0, "mutex.lock", "{\"name\":\"longer\",\"lease_ms\":1000}", "token");
    snprintf(p, sizeof p,
             "{\"name\":\"longer\",\"token\":%lld,\"lease_ms\":600000}",
             (long long)longer);
    e2e_ok(c, 0, "mutex.renew", p);
    /* Renewed shorter: ends at the renewed end, after the restart. */
    int64_t shorter =
        e2e_ok_int(c, 0, "rwmutex.rlock",
                   "{\"name\":\"shorter\",\"lease_ms\":600000}", "token");
    snprintf(p, sizeof p,
             "{\"name\":\"shorter\",\"token\":%lld,\"lease_ms\":500}",
             (long long)shorter);
    e2e_ok(c, 0, "rwmutex.renew", p);
    testd_close(c);
    rs_kill();
    wall_until(t0 + 1100); /* past the first lease and the shorter one */

    assert_int_equal(rs_start("always", NULL), 0);
    c = testd_connect(&D);
    e2e_expect_reason(c, 0, "mutex.lock",
                      "{\"name\":\"longer\",\"timeout_ms\":0}", "timeout");
    json_t *info = e2e_ok(c, 0, "list", "{\"prefix\":\"longer\"}");
    assert_int_equal(
        json_integer_value(json_object_get(
            json_array_get(json_object_get(info, "objects"), 0), "token")),
        longer);
    /* The shorter lease ran out while the daemon was down: the writer
     * gets in (waiting for the expiry that follows the start). */
    int64_t wt =
        e2e_ok_int(c, 0, "rwmutex.lock",
                   "{\"name\":\"shorter\",\"timeout_ms\":15000}", "token");
    assert_true(wt > shorter);
    snprintf(p, sizeof p, "{\"name\":\"longer\",\"token\":%lld}",
             (long long)longer);
    e2e_ok(c, 0, "mutex.unlock", p);
    testd_close(c);
    assert_int_equal(testd_stop(&D), 0);
}

/* ------------------------------------------------------------------ */
/* Disk full                                                          */
/* ------------------------------------------------------------------ */

#define DF_VALUE 8192

static void test_disk_full(void **state)
{
    char wrapper[300], mnt[300], filler[400], logdir[300];
    (void)state;

    if (system("unshare -rm true >/dev/null 2>&1") != 0) {
        print_message("# NOT RUN: unshare -rm (a private mount namespace "
                      "for a small tmpfs) is not available here\n");
        skip();
    }
    snprintf(mnt, sizeof mnt, "%s/mnt", ddir);
    snprintf(logdir, sizeof logdir, "%s/mnt/d", ddir);
    snprintf(wrapper, sizeof wrapper, "%s/chand-on-tmpfs", ddir);
    assert_int_equal(mkdir(mnt, 0700), 0);
    /* The daemon runs in a private mount namespace, on a 1 MiB tmpfs of
     * which a filler file takes 400 KiB (removed later: space returns). */
    FILE *f = fopen(wrapper, "w");
    assert_non_null(f);
    fprintf(
        f,
        "#!/bin/sh\n"
        "exec unshare -rm sh -c 'mount -t tmpfs -o size=1m tmpfs \"$DF_MNT\" "
        "&& head -c 409600 /dev/zero >\"$DF_MNT/filler\" "
        "&& exec \"$DF_BIN\" \"$@\"' sh \"$@\"\n");
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(wrapper, 0700), 0);
    const char *bin = getenv("CHAND_BIN");
    char real[300];
    snprintf(real, sizeof real, "%s", bin && *bin ? bin : "build/chand");
    if (real[0] != '/') {
        char cwd[200];
        assert_non_null(getcwd(cwd, sizeof cwd));
        snprintf(real, sizeof real, "%s/%s", cwd,
                 bin && *bin ? bin : "build/chand");
    }
    setenv("DF_MNT", mnt, 1);
    setenv("DF_BIN", real, 1);
    setenv("CHAND_BIN", wrapper, 1);
    const char *args[] = {"--data-dir", logdir, "--fsync", "everysec", NULL};
    int rc = testd_start(&D, args);
    if (bin)
        setenv("CHAND_BIN", bin, 1);
    else
        unsetenv("CHAND_BIN");
    assert_int_equal(rc, 0);

    testd_conn *c = testd_connect(&D);
    e2e_ok(c, 0, "make", "{\"name\":\"q\",\"cap\":1000}");
    e2e_ok(c, 0, "map.store", "{\"name\":\"m\",\"key\":\"k\",\"value\":1}");
    /* Fill it: sends succeed until the log cannot be written. */
    static char line[DF_VALUE + 100];
    int acked = 0;
    const char *why = NULL;
    json_t *a = NULL;
    for (int64_t t0 = testd_now_ms(); acked < 1000; acked++) {
        int n = snprintf(line, sizeof line, "{\"name\":\"q\",\"value\":\"%06d",
                         acked);
        memset(line + n, 'v', DF_VALUE);
        snprintf(line + n + DF_VALUE, sizeof line - n - DF_VALUE, "\"}");
        a = e2e_callj(c, 0, "send", json_loads(line, 0, NULL));
        if (!testd_result(a))
            break;
        json_decref(a);
        a = NULL;
        if (testd_now_ms() - t0 > 15000)
            break;
    }
    assert_non_null(a); /* the disk filled up */
    e2e_check_reason(a, "limit", "disk full");
    why = testd_message(a);
    print_message("# disk full after %d values: %s\n", acked, why);
    json_decref(a);
    assert_true(acked > 0);
    /* Writes fail with the reason; reads work. */
    e2e_expect_reason_msg(c, 0, "map.store",
                          "{\"name\":\"m\",\"key\":\"k\",\"value\":2}", "limit",
                          "disk full");
    assert_int_equal(
        e2e_ok_int(c, 0, "map.load", "{\"name\":\"m\",\"key\":\"k\"}", "value"),
        1);
    assert_int_equal(chan_len(c, "q"), acked);
    json_t *st = testd_stats(&D);
    assert_true(json_is_true(
        json_object_get(json_object_get(st, "durability"), "write_error")));
    json_decref(st);

    /* Space returns: writes resume by themselves. */
    snprintf(filler, sizeof filler, "/proc/%d/root%s/filler", (int)D.pid, mnt);
    assert_int_equal(unlink(filler), 0);
    for (int64_t t0 = testd_now_ms();; testd_sleep_ms(50)) {
        a = e2e_call(c, 0, "map.store",
                     "{\"name\":\"m\",\"key\":\"k\",\"value\":2}");
        bool ok = testd_result(a) != NULL;
        json_decref(a);
        if (ok)
            break;
        if (testd_now_ms() - t0 > 15000)
            fail_msg("writes never resumed after space returned");
    }
    assert_int_equal(
        e2e_ok_int(c, 0, "map.load", "{\"name\":\"m\",\"key\":\"k\"}", "value"),
        2);
    /* Every value acknowledged before is there, in order, and nothing of
     * the refused sends. */
    assert_int_equal(chan_len(c, "q"), acked);
    for (int i = 0; i < acked; i++) {
        json_t *v = recv_now(c, "q");
        char want[8];
        snprintf(want, sizeof want, "%06d", i);
        assert_memory_equal(json_string_value(v), want, 6);
        json_decref(v);
    }
    st = testd_stats(&D);
    assert_false(json_is_true(
        json_object_get(json_object_get(st, "durability"), "write_error")));
    json_decref(st);
    testd_close(c);
    assert_int_equal(testd_stop(&D), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_timers_survive_kill, rs_setup,
                                        rs_teardown),
        cmocka_unit_test_setup_teardown(test_timers_survive_compaction,
                                        rs_setup, rs_teardown),
        cmocka_unit_test_setup_teardown(test_renewed_lease, rs_setup,
                                        rs_teardown),
        cmocka_unit_test_setup_teardown(test_disk_full, rs_setup, rs_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
