/*
 * test_durability.c - issue 15 end to end: the daemon keeps its state in
 * a data_dir, is SIGKILLed at random moments under mixed load (sends,
 * receives, Map stores, atomic adds, lock grants on several pipelined
 * connections), restarts on the same data_dir, and what it acknowledged
 * is there:
 *  - fsync=always: every acknowledged send is received exactly once or is
 *    still in its channel (a value may be missing only when a receive was
 *    in flight at the kill: its answer, not its effect, was lost), no
 *    value is ever received twice; acknowledged Map stores and atomic adds
 *    are present; a done Once stays done; a closed channel stays closed;
 *    the tokens granted after a restart exceed every token granted before;
 *    every acknowledged timer.after fires (its channel gets its one value)
 *    across the kills, and no afterfunc runs twice;
 *  - fsync=everysec: a kill loses no acknowledged change (the log reaches
 *    the kernel before the answers);
 *  - damaged files (truncation, bit flips, runs of zeros): never a crash,
 *    either a clean start or the refusal that names `chand --repair`, and
 *    after the repair a clean start.
 *
 * Also: a lease survives a restart (and one that ran out ends after it).
 * DURABILITY_KILLS (default 24) is the number of kills of the always run;
 * DURABILITY_SEED repeats a run.  `make test-durability` runs 200.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/e2e.h"
#include "../common/testrand.h"

#define DUR_MAX_SEQ 2000000
#define DUR_CONNS 3
#define DUR_BATCH 12

static uint64_t rnd;
static char ddir[256]; /* the data_dir under test */

/* What the client saw, indexed by sequence number. */
static unsigned char *acked_send, *got, *acked_store, *acked_timer;
static int64_t seq_next = 1;
static int64_t acked_adds, sent_adds, unanswered_recvs, acked_afterfuncs;
static int64_t max_token;

static int dur_setup(void **state)
{
    (void)state;
    snprintf(ddir, sizeof ddir, "/tmp/chand-dur-XXXXXX");
    if (!mkdtemp(ddir))
        return -1;
    acked_send = calloc(DUR_MAX_SEQ, 1);
    got = calloc(DUR_MAX_SEQ, 1);
    acked_store = calloc(DUR_MAX_SEQ, 1);
    acked_timer = calloc(DUR_MAX_SEQ, 1);
    seq_next = 1;
    acked_adds = sent_adds = unanswered_recvs = max_token = 0;
    acked_afterfuncs = 0;
    return acked_send && got && acked_store && acked_timer ? 0 : -1;
}

static int dur_teardown(void **state)
{
    char logf[300];
    (void)state;

    snprintf(logf, sizeof logf, "%s.stderr", ddir);
    unlink(logf);
    testd_close_all();
    testd_kill_children(true);
    testd_rm_rf(ddir);
    free(acked_send);
    free(got);
    free(acked_store);
    free(acked_timer);
    acked_send = got = acked_store = acked_timer = NULL;
    return 0;
}

/* Starts D on ddir with the policy.  Returns 0 or -1. */
static int dur_start(const char *policy)
{
    const char *args[] = {"--data-dir", ddir, "--fsync", policy, NULL};
    return testd_start(&D, args);
}

/* Kills D (SIGKILL) and reaps it. */
static void dur_kill_now(void)
{
    if (D.pid > 0) /* never kill(0): that is our process group */
        kill(D.pid, SIGKILL);
    testd_wait_exit(&D, 20000);
}

/* Forks a child that SIGKILLs D after ms milliseconds (the random moment
 * of the crash: a delay, not a wait for anything).  Returns its pid. */
static pid_t dur_killer(int ms)
{
    pid_t dpid = D.pid, k;

    assert_true(dpid > 0);
    k = testd_fork();
    assert_true(k >= 0);
    if (k == 0) {
        usleep((useconds_t)ms * 1000);
        kill(dpid, SIGKILL);
        _exit(0);
    }
    return k;
}

/* ------------------------------------------------------------------ */
/* The load                                                           */
/* ------------------------------------------------------------------ */

enum {
    OP_SEND = 1,
    OP_RECV,
    OP_STORE,
    OP_ADD,
    OP_LOCK,
    OP_UNLOCK,
    OP_TIMER,     /* timer.after "t<seq>" */
    OP_AFTERFUNC, /* timer.afterfunc sending seq to "fq" */
};

/* Records one answer (the id says what it answers). */
static void dur_answer(json_t *a, int64_t *pending)
{
    int64_t id = json_integer_value(json_object_get(a, "id"));
    int op = (int)(id % 16);
    int64_t seq = id / 16;
    json_t *r = testd_result(a);

    (*pending)--;
    switch (op) {
    case OP_SEND:
        if (r)
            acked_send[seq] = 1;
        break;
    case OP_RECV:
        if (r) {
            json_t *v = json_object_get(r, "value");
            assert_true(json_is_integer(v));
            int64_t s = json_integer_value(v);
            assert_true(s > 0 && s < DUR_MAX_SEQ);
            if (got[s])
                fail_msg("value %lld received twice", (long long)s);
            got[s] = 1;
        } else {
            assert_string_equal(testd_reason(a), "timeout");
        }
        break;
    case OP_STORE:
        if (r)
            acked_store[seq] = 1;
        break;
    case OP_ADD:
        if (r)
            acked_adds++;
        break;
    case OP_TIMER:
        if (r)
            acked_timer[seq] = 1;
        break;
    case OP_AFTERFUNC:
        if (r)
            acked_afterfuncs++;
        break;
    case OP_LOCK:
        if (r) {
            int64_t t = json_integer_value(json_object_get(r, "token"));
            assert_true(t > max_token);
            max_token = t;
        }
        break;
    default:
        break;
    }
}

/* One connection's batch: writes DUR_BATCH requests, then reads their
 * answers.  Returns false once the connection is gone (the kill). */
static bool dur_batch(testd_conn *c, int ci)
{
    int64_t pending = 0, recvs = 0;
    char line[256];
    /* A timer and an afterfunc in one batch of four, due within 200 ms:
     * many fall due while the daemon is down. */
    bool timers = testrand_below(&rnd, 4) == 0;

    for (int i = 0; i < DUR_BATCH; i++) {
        int64_t seq = seq_next++;
        int op = 1 + (int)testrand_below(&rnd, 4);
        int n;

        assert_true(seq < DUR_MAX_SEQ);
        if (i == 0)
            op = OP_LOCK;
        else if (i == 1)
            op = OP_UNLOCK;
        else if (i == 2 && timers)
            op = OP_TIMER;
        else if (i == 3 && timers)
            op = OP_AFTERFUNC;
        switch (op) {
        case OP_SEND:
            n = snprintf(line, sizeof line,
                         "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"method\":\"send\","
                         "\"params\":{\"name\":\"q\",\"value\":%lld}}",
                         (long long)(seq * 16 + op), (long long)seq);
            break;
        case OP_RECV:
            recvs++;
            n = snprintf(line, sizeof line,
                         "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"method\":\"recv\","
                         "\"params\":{\"name\":\"q\",\"timeout_ms\":0}}",
                         (long long)(seq * 16 + op));
            break;
        case OP_STORE:
            n = snprintf(line, sizeof line,
                         "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"method\":"
                         "\"map.store\",\"params\":{\"name\":\"m\",\"key\":"
                         "\"k%lld\",\"value\":%lld}}",
                         (long long)(seq * 16 + op), (long long)seq,
                         (long long)seq);
            break;
        case OP_ADD:
            sent_adds++;
            n = snprintf(line, sizeof line,
                         "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"method\":"
                         "\"atomic.add\",\"params\":{\"name\":\"ctr\","
                         "\"delta\":1}}",
                         (long long)(seq * 16 + op));
            break;
        case OP_TIMER:
            n = snprintf(line, sizeof line,
                         "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"method\":"
                         "\"timer.after\",\"params\":{\"name\":\"t%lld\","
                         "\"ms\":%d}}",
                         (long long)(seq * 16 + op), (long long)seq,
                         (int)testrand_below(&rnd, 200));
            break;
        case OP_AFTERFUNC:
            n = snprintf(line, sizeof line,
                         "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"method\":"
                         "\"timer.afterfunc\",\"params\":{\"ms\":%d,"
                         "\"request\":{\"method\":\"send\",\"params\":"
                         "{\"name\":\"fq\",\"value\":%lld}}}}",
                         (long long)(seq * 16 + op),
                         (int)testrand_below(&rnd, 200), (long long)seq);
            break;
        case OP_LOCK:
        default:
            n = snprintf(line, sizeof line,
                         "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"method\":"
                         "\"mutex.%s\",\"params\":{\"name\":\"L%d\"}}",
                         (long long)(seq * 16 + op),
                         op == OP_LOCK ? "lock" : "unlock", ci);
            break;
        }
        assert_true(n > 0 && (size_t)n < sizeof line);
        if (testd_send(c, line) != 0)
            goto gone;
        pending++;
    }
    while (pending > 0) {
        json_t *a = testd_recv(c, 20000);
        if (!a)
            goto gone;
        int64_t id = json_integer_value(json_object_get(a, "id"));
        if (id % 16 == OP_RECV)
            recvs--;
        dur_answer(a, &pending);
        json_decref(a);
    }
    return true;
gone:
    unanswered_recvs += recvs;
    return false;
}

/* Runs the load until the daemon dies. */
static void dur_load(void)
{
    testd_conn *c[DUR_CONNS];
    bool alive[DUR_CONNS];
    int left = DUR_CONNS;

    for (int i = 0; i < DUR_CONNS; i++) {
        c[i] = testd_connect(&D);
        alive[i] = c[i] != NULL;
        if (!alive[i])
            left--;
    }
    while (left > 0)
        for (int i = 0; i < DUR_CONNS; i++)
            if (alive[i] && !dur_batch(c[i], i)) {
                alive[i] = false;
                left--;
            }
    for (int i = 0; i < DUR_CONNS; i++)
        testd_close(c[i]);
}

/* After a restart: what was acknowledged is there. */
static void dur_check_state(testd_conn *c)
{
    json_t *r;
    int64_t stores = 0, checked = 0;

    /* Acknowledged adds are present; unacknowledged ones may be too. */
    json_int_t v =
        e2e_ok_int(c, 0, "atomic.load", "{\"name\":\"ctr\"}", "value");
    if (v < acked_adds || v > sent_adds)
        fail_msg("atomic: %lld, acknowledged %lld, sent %lld", (long long)v,
                 (long long)acked_adds, (long long)sent_adds);
    /* Every acknowledged store (the last 200 one by one). */
    for (int64_t s = seq_next - 1; s > 0; s--) {
        if (!acked_store[s])
            continue;
        stores++;
        if (checked++ >= 200)
            continue;
        char p[96];
        snprintf(p, sizeof p, "{\"name\":\"m\",\"key\":\"k%lld\"}",
                 (long long)s);
        r = e2e_ok(c, 0, "map.load", p);
        if (!json_is_true(json_object_get(r, "ok")) ||
            json_integer_value(json_object_get(r, "value")) != s)
            fail_msg("map key k%lld lost", (long long)s);
    }
    if (e2e_ok_int(c, 0, "map.len", "{\"name\":\"m\"}", "len") < stores)
        fail_msg("map lost acknowledged stores");
    /* A done once stays done, a closed channel closed. */
    assert_false(e2e_ok_bool(c, 0, "once.do", "{\"name\":\"o\"}", "run"));
    json_t *a = e2e_call(c, 0, "send", "{\"name\":\"shut\",\"value\":1}");
    e2e_check_reason(a, "closed", NULL);
    json_decref(a);
}

/* Every acknowledged timer.after fired exactly once (a cap-1 channel
 * with its value: none was lost to a kill), and no afterfunc ran twice
 * (one that fired just before a kill may not have run: at most once). */
static void dur_check_timers(testd_conn *c)
{
    int64_t timers = 0, ran = 0, t0 = testd_now_ms();
    static unsigned char seen[DUR_MAX_SEQ];

    for (int64_t s = 1; s < seq_next; s++) {
        char p[96];
        if (!acked_timer[s])
            continue;
        timers++;
        snprintf(p, sizeof p, "{\"name\":\"t%lld\"}", (long long)s);
        while (e2e_ok_int(c, 0, "len", p, "len") != 1) {
            if (testd_now_ms() - t0 > 20000)
                fail_msg("timer t%lld never fired", (long long)s);
            testd_sleep_ms(20);
        }
    }
    /* Every afterfunc fired (a fired one leaves the namespace). */
    for (;;) {
        json_t *r = e2e_ok(c, 0, "list", "{\"prefix\":\"afterfunc.\"}");
        if (json_array_size(json_object_get(r, "objects")) == 0)
            break;
        if (testd_now_ms() - t0 > 20000)
            fail_msg("afterfuncs still pending after 20 s");
        testd_sleep_ms(20);
    }
    memset(seen, 0, sizeof seen);
    for (;;) {
        json_t *a =
            e2e_call(c, 0, "recv", "{\"name\":\"fq\",\"timeout_ms\":0}");
        json_t *r = testd_result(a);
        if (!r) {
            e2e_check_reason(a, "timeout", NULL);
            json_decref(a);
            break;
        }
        int64_t s = json_integer_value(json_object_get(r, "value"));
        assert_true(s > 0 && s < DUR_MAX_SEQ);
        if (seen[s])
            fail_msg("afterfunc %lld ran twice", (long long)s);
        seen[s] = 1;
        ran++;
        json_decref(a);
    }
    fprintf(stderr,
            "# %lld timers acknowledged, all fired once; %lld afterfuncs "
            "acknowledged, %lld ran (none twice)\n",
            (long long)timers, (long long)acked_afterfuncs, (long long)ran);
}

/* Receives what is left in q, then checks conservation. */
static void dur_check_queue(testd_conn *c)
{
    int64_t missing = 0;

    for (;;) {
        json_t *a = e2e_call(c, 0, "recv", "{\"name\":\"q\",\"timeout_ms\":0}");
        json_t *r = testd_result(a);
        if (!r) {
            e2e_check_reason(a, "timeout", NULL);
            json_decref(a);
            break;
        }
        int64_t s = json_integer_value(json_object_get(r, "value"));
        assert_true(s > 0 && s < DUR_MAX_SEQ);
        if (got[s])
            fail_msg("value %lld received twice", (long long)s);
        got[s] = 1;
        json_decref(a);
    }
    for (int64_t s = 1; s < seq_next; s++)
        if (acked_send[s] && !got[s])
            missing++;
    /* A receive whose answer the kill cut took its value for good. */
    if (missing > unanswered_recvs)
        fail_msg("%lld acknowledged sends lost (%lld receives unanswered)",
                 (long long)missing, (long long)unanswered_recvs);
}

/* kill -9 under mixed load, KILLS times (DURABILITY_KILLS, else dflt),
 * each restart on the same data_dir checked (dur_check_state, tokens),
 * then the queue and the timers.  Both policies promise the same to a
 * killed daemon: nothing acknowledged is lost. */
static void kill_mixed(const char *policy, int dflt)
{
    int kills =
        getenv("DURABILITY_KILLS") ? atoi(getenv("DURABILITY_KILLS")) : dflt;
    testd_conn *c;

    assert_int_equal(dur_start(policy), 0);
    c = testd_connect(&D);
    assert_non_null(c);
    e2e_okj_free(c, 0, "make",
                 json_pack("{s:s, s:i}", "name", "q", "cap", 1000000));
    e2e_okj_free(c, 0, "make",
                 json_pack("{s:s, s:i}", "name", "fq", "cap", 1000000));
    e2e_okj_free(c, 0, "make", json_pack("{s:s}", "name", "shut"));
    e2e_okj_free(c, 0, "close", json_pack("{s:s}", "name", "shut"));
    assert_true(e2e_ok_bool(c, 0, "once.do", "{\"name\":\"o\"}", "run"));
    e2e_okj_free(c, 0, "once.done", json_pack("{s:s}", "name", "o"));
    testd_close(c);
    for (int k = 0; k < kills; k++) {
        pid_t killer = dur_killer(5 + (int)testrand_below(&rnd, 60));
        dur_load();
        testd_wait_exit(&D, 20000);
        testd_reap(killer, NULL, 20000);
        assert_int_equal(dur_start(policy), 0);
        c = testd_connect(&D);
        assert_non_null(c);
        dur_check_state(c);
        /* Tokens after the restart exceed every one before it. */
        int64_t t = e2e_ok_int(c, 0, "mutex.lock", "{\"name\":\"T\"}", "token");
        if (t <= max_token)
            fail_msg("token %lld after a restart, %lld before", (long long)t,
                     (long long)max_token);
        max_token = t;
        e2e_okj_free(c, 0, "mutex.unlock", json_pack("{s:s}", "name", "T"));
        testd_close(c);
    }
    c = testd_connect(&D);
    assert_non_null(c);
    dur_check_queue(c);
    dur_check_timers(c);
    testd_close(c);
    fprintf(
        stderr, "# %s: %d kills, %lld operations, %lld unanswered receives\n",
        policy, kills, (long long)seq_next - 1, (long long)unanswered_recvs);
    assert_int_equal(testd_stop(&D), 0);
}

static void test_kill_always(void **state)
{
    (void)state;
    kill_mixed("always", 24);
}

/* everysec holds an answer until its records are written to the kernel
 * (by the I/O thread, or the flusher for a large turn). */
static void test_kill_everysec_mixed(void **state)
{
    (void)state;
    kill_mixed("everysec", 12);
}

/* everysec: a kill loses nothing acknowledged: the log reaches the
 * kernel every loop turn, before the turn's answers leave (power loss,
 * not tested here, may lose about the last second). */
static void test_kill_everysec(void **state)
{
    (void)state;
    for (int k = 0; k < 4; k++) {
        int64_t t_ack[400] = {0};
        int n = 0;
        assert_int_equal(dur_start("everysec"), 0);
        testd_conn *c = testd_connect(&D);
        assert_non_null(c);
        pid_t killer = dur_killer(20 + (int)testrand_below(&rnd, 60));
        for (;; n++) {
            char p[96];
            if (n == 400)
                break;
            snprintf(p, sizeof p,
                     "{\"name\":\"e%d\",\"key\":\"k%d\",\"value\":%d}", k, n,
                     n);
            json_t *a =
                testd_call(c, 0, "map.store", json_loads(p, 0, NULL), 20000);
            if (!a)
                break;
            json_decref(a);
            t_ack[n] = testd_now_ms();
        }
        testd_close(c);
        int64_t killed = testd_now_ms();
        testd_reap(killer, NULL, 20000);
        if (testd_running(&D))
            dur_kill_now();
        else
            testd_wait_exit(&D, 20000);
        assert_int_equal(dur_start("everysec"), 0);
        c = testd_connect(&D);
        assert_non_null(c);
        for (int i = 0; i < n; i++) {
            char p[96];
            snprintf(p, sizeof p, "{\"name\":\"e%d\",\"key\":\"k%d\"}", k, i);
            json_t *r = e2e_ok(c, 0, "map.load", p);
            if (!json_is_true(json_object_get(r, "ok")))
                fail_msg("everysec lost store %d of %d, acknowledged %lld ms "
                         "before the kill",
                         i, n, (long long)(killed - t_ack[i]));
        }
        testd_close(c);
        dur_kill_now();
    }
}

/* ------------------------------------------------------------------ */
/* Restarts                                                           */
/* ------------------------------------------------------------------ */

static void test_restart_keeps_state(void **state)
{
    testd_conn *c;
    (void)state;

    assert_int_equal(dur_start("always"), 0);
    c = testd_connect(&D);
    e2e_okj_free(c, 0, "make",
                 json_pack("{s:s, s:i, s:s}", "name", "jobs", "cap", 8, "type",
                           "object"));
    for (int i = 0; i < 3; i++)
        e2e_okj_free(
            c, 0, "send",
            json_pack("{s:s, s:{s:i}}", "name", "jobs", "value", "n", i));
    e2e_okj_free(c, 0, "recv", json_pack("{s:s}", "name", "jobs"));
    e2e_okj_free(c, 0, "close", json_pack("{s:s}", "name", "jobs"));
    e2e_okj_free(c, 0, "wg.add",
                 json_pack("{s:s, s:i}", "name", "w", "delta", 2));
    e2e_okj_free(c, 0, "make",
                 json_pack("{s:s, s:i}", "name", "gone", "cap", 2));
    e2e_okj_free(c, 0, "send",
                 json_pack("{s:s, s:i}", "name", "gone", "value", 1));
    e2e_okj_free(c, 0, "drop", json_pack("{s:s}", "name", "gone"));
    /* A lease outlives its session, and the restart. */
    int64_t lt =
        e2e_ok_int(c, 0, "mutex.lock",
                   "{\"name\":\"leased\",\"lease_ms\":600000}", "token");
    e2e_ok(c, 0, "rwmutex.rlock", "{\"name\":\"short\",\"lease_ms\":200}");
    assert_true(e2e_ok_bool(c, 0, "once.do", "{\"name\":\"ov\"}", "run"));
    e2e_okj_free(c, 0, "once.done",
                 json_pack("{s:s, s:{s:i}}", "name", "ov", "value", "x", 7));
    testd_close(c);
    /* A clean stop, then a kill: both keep it. */
    assert_int_equal(testd_stop(&D), 0);
    for (int round = 0; round < 2; round++) {
        assert_int_equal(dur_start("always"), 0);
        c = testd_connect(&D);
        json_t *r = e2e_ok(c, 0, "len", "{\"name\":\"jobs\"}");
        assert_int_equal(json_integer_value(json_object_get(r, "len")),
                         2 - round);
        assert_int_equal(json_integer_value(json_object_get(r, "cap")), 8);
        r = e2e_ok(c, 0, "recv", "{\"name\":\"jobs\"}");
        assert_int_equal(json_integer_value(
                             json_object_get(json_object_get(r, "value"), "n")),
                         1 + round);
        assert_int_equal(
            e2e_ok_int(c, 0, "wg.add", "{\"name\":\"w\",\"delta\":0}", "count"),
            2);
        json_t *a = e2e_call(c, 0, "len", "{\"name\":\"gone\"}");
        e2e_check_reason(a, "not_found", NULL);
        json_decref(a);
        /* The leased lock is still held, by its token; the short lease
         * expired (after the restart too). */
        a = e2e_call(c, 0, "mutex.lock",
                     "{\"name\":\"leased\",\"timeout_ms\":0}");
        e2e_check_reason(a, "timeout", NULL);
        json_decref(a);
        json_t *info = e2e_ok(c, 0, "list", "{\"prefix\":\"leased\"}");
        assert_int_equal(
            json_integer_value(json_object_get(
                json_array_get(json_object_get(info, "objects"), 0), "token")),
            lt);
        for (int64_t t0 = testd_now_ms();; testd_sleep_ms(20)) {
            a = e2e_call(c, 0, "rwmutex.lock",
                         "{\"name\":\"short\",\"timeout_ms\":0}");
            bool got_it = testd_result(a) != NULL;
            json_decref(a);
            if (got_it)
                break;
            if (testd_now_ms() - t0 > 10000)
                fail_msg("the short lease never expired");
        }
        e2e_okj_free(c, 0, "rwmutex.unlock",
                     json_pack("{s:s}", "name", "short"));
        /* A done once keeps its value. */
        r = e2e_ok(c, 0, "once.do", "{\"name\":\"ov\"}");
        assert_false(json_is_true(json_object_get(r, "run")));
        assert_int_equal(json_integer_value(
                             json_object_get(json_object_get(r, "value"), "x")),
                         7);
        /* The channel's type persists too. */
        a = e2e_call(c, 0, "make",
                     "{\"name\":\"jobs\",\"cap\":8,\"type\":\"string\"}");
        e2e_check_reason(a, "exists", NULL);
        json_decref(a);
        testd_close(c);
        dur_kill_now();
    }
    /* Drained and closed; the lease ends by its token. */
    assert_int_equal(dur_start("always"), 0);
    c = testd_connect(&D);
    e2e_okj_free(
        c, 0, "mutex.unlock",
        json_pack("{s:s, s:I}", "name", "leased", "token", (json_int_t)lt));
    json_t *r = e2e_ok(c, 0, "recv", "{\"name\":\"jobs\"}");
    assert_false(json_is_true(json_object_get(r, "ok")));
    /* runtime.stats shows the log. */
    json_t *st = testd_stats(&D), *du = json_object_get(st, "durability");
    assert_non_null(du);
    assert_string_equal(json_string_value(json_object_get(du, "fsync")),
                        "always");
    assert_true(json_integer_value(json_object_get(du, "log_bytes")) > 32);
    assert_true(json_integer_value(json_object_get(du, "fsyncs")) >= 1);
    assert_true(json_integer_value(json_object_get(du, "durable_lsn")) ==
                json_integer_value(json_object_get(du, "appended_lsn")));
    assert_false(json_is_true(json_object_get(du, "write_error")));
    json_decref(st);
    testd_close(c);
    assert_int_equal(testd_stop(&D), 0);
}

/* An afterfunc's name is never given again after a restart: the names
 * counted from 1 at each start, so a late timer.stop of a timer that had
 * fired before the restart cancelled a new one in its place. */
static void test_afterfunc_names_not_reused(void **state)
{
    char *fired;
    const char *made;
    json_t *r, *a;
    testd_conn *c;
    (void)state;

    assert_int_equal(dur_start("always"), 0);
    c = testd_connect(&D);
    e2e_ok(c, 1, "make", "{\"name\":\"af\",\"cap\":4}");
    r = e2e_ok(c, 2, "timer.afterfunc",
               "{\"ms\":1,\"request\":{\"method\":\"send\","
               "\"params\":{\"name\":\"af\",\"value\":1}}}");
    fired = strdup(json_string_value(json_object_get(r, "timer")));
    assert_non_null(fired);
    e2e_ok(c, 3, "recv", "{\"name\":\"af\",\"timeout_ms\":10000}");
    testd_close(c);
    assert_int_equal(testd_stop(&D), 0);

    assert_int_equal(dur_start("always"), 0);
    c = testd_connect(&D);
    r = e2e_ok(c, 1, "timer.afterfunc",
               "{\"ms\":600000,\"request\":{\"method\":\"send\","
               "\"params\":{\"name\":\"af\",\"value\":2}}}");
    made = json_string_value(json_object_get(r, "timer"));
    assert_non_null(made);
    if (strcmp(made, fired) == 0)
        fail_msg("the restarted daemon named a new afterfunc %s, as the one "
                 "that fired before the restart",
                 made);
    a = e2e_callj(c, 2, "timer.stop", json_pack("{s:s}", "name", fired));
    e2e_check_reason(a, "not_found", NULL);
    json_decref(a);
    e2e_okj_free(c, 3, "timer.stop", json_pack("{s:s}", "name", made));
    free(fired);
    testd_close(c);
    assert_int_equal(testd_stop(&D), 0);
}

/* ------------------------------------------------------------------ */
/* Damaged files                                                      */
/* ------------------------------------------------------------------ */

/* Returns the path of the (only) log segment of ddir in buf, or -1. */
static int dur_segment(char *buf, size_t len)
{
    char cmd[400];
    FILE *p;

    snprintf(cmd, sizeof cmd, "ls %s/wal-*.log 2>/dev/null | tail -1", ddir);
    p = popen(cmd, "r");
    if (!p)
        return -1;
    if (!fgets(buf, (int)len, p)) {
        pclose(p);
        return -1;
    }
    pclose(p);
    buf[strcspn(buf, "\n")] = '\0';
    return 0;
}

/* Runs chand --repair on ddir; returns its exit status. */
static int dur_repair(void)
{
    const char *bin = getenv("CHAND_BIN") ? getenv("CHAND_BIN") : "build/chand";
    pid_t p = testd_fork();
    int st;

    if (p == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(bin, bin, "--repair", "--data-dir", ddir, (char *)NULL);
        _exit(127);
    }
    assert_true(p > 0);
    assert_int_equal(testd_reap(p, &st, 20000), p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_damaged_files(void **state)
{
    char seg[256], logf[300], saved[300];
    (void)state;

    /* A log of a few hundred records. */
    assert_int_equal(dur_start("always"), 0);
    testd_conn *c = testd_connect(&D);
    e2e_okj_free(c, 0, "make",
                 json_pack("{s:s, s:i}", "name", "q", "cap", 10000));
    for (int i = 0; i < 300; i++)
        e2e_okj_free(c, 0, i % 2 ? "send" : "map.store",
                     i % 2 ? json_pack("{s:s, s:i}", "name", "q", "value", i)
                           : json_pack("{s:s, s:s, s:i}", "name", "m", "key",
                                       "k", "value", i));
    testd_close(c);
    dur_kill_now();
    assert_int_equal(dur_segment(seg, sizeof seg), 0);
    snprintf(saved, sizeof saved, "%s.orig", seg);
    {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "cp %s %s", seg, saved);
        assert_int_equal(system(cmd), 0);
    }
    snprintf(logf, sizeof logf, "%s.stderr", ddir);
    int starts = 0, refusals = 0;
    for (int round = 0; round < 30; round++) {
        char cmd[1200];
        struct stat sb;
        snprintf(cmd, sizeof cmd, "cp %s %s", saved, seg);
        assert_int_equal(system(cmd), 0);
        assert_int_equal(stat(seg, &sb), 0);
        int fd = open(seg, O_RDWR);
        assert_true(fd >= 0);
        off_t at = 32 + (off_t)testrand_below(&rnd, (uint64_t)sb.st_size - 32);
        switch (round % 3) {
        case 0: /* truncation */
            assert_int_equal(ftruncate(fd, at), 0);
            break;
        case 1: { /* a bit flip */
            unsigned char b;
            assert_int_equal(pread(fd, &b, 1, at), 1);
            b ^= (unsigned char)(1u << testrand_below(&rnd, 8));
            assert_int_equal(pwrite(fd, &b, 1, at), 1);
            break;
        }
        default: { /* a run of zeros */
            char z[64] = {0};
            size_t n = 1 + testrand_below(&rnd, sizeof z);
            assert_true(pwrite(fd, z, n, at) >= 0);
            break;
        }
        }
        close(fd);
        unlink(logf);
        const char *args[] = {"--data-dir", ddir, NULL};
        testd_opts o = {.args = args, .log = logf};
        if (testd_start_opts(&D, &o) == 0) {
            starts++;
            /* A prefix of the log (a truncation may cut even the make):
             * it serves. */
            c = testd_connect(&D);
            assert_non_null(c);
            e2e_ok(c, 0, "list", NULL);
            testd_close(c);
            dur_kill_now();
            continue;
        }
        /* Refused: a clear message and exit status, never a signal. */
        if (!WIFEXITED(D.status) || WEXITSTATUS(D.status) == 0)
            fail_msg("a damaged log made chand end with status %#x", D.status);
        FILE *f = fopen(logf, "r");
        char text[8192] = "";
        assert_non_null(f);
        size_t got_n = fread(text, 1, sizeof text - 1, f);
        text[got_n] = '\0';
        fclose(f);
        if (!strstr(text, "--repair") || !strstr(text, "wal-"))
            fail_msg("refusal without the file or the repair: %s", text);
        refusals++;
        assert_int_equal(dur_repair(), 0);
        assert_int_equal(testd_start_opts(&D, &o), 0);
        dur_kill_now();
    }
    unlink(logf);
    fprintf(stderr, "# damaged logs: %d clean starts, %d refusals\n", starts,
            refusals);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_restart_keeps_state, dur_setup,
                                        dur_teardown),
        cmocka_unit_test_setup_teardown(test_afterfunc_names_not_reused,
                                        dur_setup, dur_teardown),
        cmocka_unit_test_setup_teardown(test_kill_always, dur_setup,
                                        dur_teardown),
        cmocka_unit_test_setup_teardown(test_kill_everysec_mixed, dur_setup,
                                        dur_teardown),
        cmocka_unit_test_setup_teardown(test_kill_everysec, dur_setup,
                                        dur_teardown),
        cmocka_unit_test_setup_teardown(test_damaged_files, dur_setup,
                                        dur_teardown),
    };

    rnd = testrand_seed("DURABILITY_SEED", 15);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
