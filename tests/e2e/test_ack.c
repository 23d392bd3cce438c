/*
 * test_ack.c - end-to-end: acknowledged delivery (issue 18) against a real
 * daemon: recv with ack and its delivery, len's inflight against cap, ack,
 * stale and repeated ids (not_pending), redelivery after ack_wait (not
 * before it; its lateness printed) and after the receiver's session ends,
 * redeliveries first and in their order, nack with and without delay,
 * touch, term, max_deliver into the dead-letter channel (and dropped
 * without one), close waiting for the values in flight, an unbuffered send
 * completing only on the ack, select with ack, the misuse cases, a
 * churn of receivers that vanish or never ack, after which every value was
 * acknowledged exactly once, and with a data_dir a daemon SIGKILLed while
 * deliveries are in flight: after the restart they are redelivered first,
 * in order, their attempts counted, max_deliver still in force.  The log
 * record of a delivery's pop carries its value's check, and a log whose
 * delivery pops another value than its channel's head is reported at the
 * restart as a state that diverged from the log.
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
#include <unistd.h>

#include "../../daemon/persist.h"
#include "../../daemon/wal.h"
#include "../common/e2e.h"
#include "../common/testd.h"

/* A delivery as an answer names it. */
typedef struct got {
    json_t *value; /* new reference, or NULL when ok:false */
    long long id;
    int attempt;
} got;

/* recv with ack on name (params: extra JSON members, may be ""); fails
 * the test unless a value came. */
static got recv_ack(testd_conn *c, const char *name, const char *more)
{
    char p[512];
    json_t *a, *r, *d;
    got g = {0};

    snprintf(p, sizeof p, "{\"name\":\"%s\",\"ack\":true%s%s}", name,
             more[0] ? "," : "", more);
    a = testd_call(c, 900, "recv", json_loads(p, 0, NULL), 20000);
    if (!a) {
        json_t *st = testd_stats(&D);
        fail_msg("recv ack %s: no answer; stats %s", p,
                 json_dumps(st, JSON_COMPACT));
    }
    r = testd_result(a);
    if (!r || !json_is_true(json_object_get(r, "ok"))) {
        json_t *st = testd_stats(&D);
        fail_msg("recv ack %s: %s; stats %s", p, json_dumps(a, JSON_COMPACT),
                 json_dumps(st, JSON_COMPACT));
    }
    d = json_object_get(r, "delivery");
    assert_non_null(d);
    g.value = json_incref(json_object_get(r, "value"));
    g.id = (long long)json_integer_value(json_object_get(d, "id"));
    g.attempt = (int)json_integer_value(json_object_get(d, "attempt"));
    assert_true(g.id > 0);
    json_decref(a);
    return g;
}

static void got_free(got *g)
{
    json_decref(g->value);
    g->value = NULL;
}

static void expect_value_int(const got *g, long long v)
{
    if (!json_is_integer(g->value) || json_integer_value(g->value) != v)
        fail_msg("expected %lld, got %s", v,
                 g->value ? json_dumps(g->value, JSON_ENCODE_ANY) : "none");
}

/* ack/nack/touch/term of id on name with extra members. */
static json_t *dcall(testd_conn *c, const char *method, const char *name,
                     long long id, const char *more)
{
    char p[512];
    snprintf(p, sizeof p, "{\"name\":\"%s\",\"id\":%lld%s%s}", name, id,
             more[0] ? "," : "", more);
    return e2e_call(c, 901, method, p);
}

static void dok(testd_conn *c, const char *method, const char *name,
                long long id, const char *more)
{
    json_t *a = dcall(c, method, name, id, more);
    if (!testd_result(a))
        fail_msg("%s %lld: %s", method, id, json_dumps(a, JSON_COMPACT));
    json_decref(a);
}

static void dstale(testd_conn *c, const char *method, const char *name,
                   long long id)
{
    json_t *a = dcall(c, method, name, id, "");
    e2e_check_reason(a, "not_pending", NULL);
    assert_int_equal(testd_code(a), -32017);
    json_decref(a);
}

static json_int_t len_of(testd_conn *c, const char *name, const char *key)
{
    char p[300];
    snprintf(p, sizeof p, "{\"name\":\"%s\"}", name);
    return e2e_ok_int(c, 902, "len", p, key);
}

/* Waits (up to 20 s) until len's key of name is want: the origin of a
 * dead letter lets go of it just after the dead letter is sent. */
static void wait_len(testd_conn *c, const char *name, const char *key,
                     json_int_t want)
{
    int64_t t0 = testd_now_ms();

    while (len_of(c, name, key) != want) {
        if (testd_now_ms() - t0 > 20000)
            fail_msg("len %s of %s stayed %lld, want %lld", key, name,
                     (long long)len_of(c, name, key), (long long)want);
        testd_sleep_ms(2);
    }
}

static json_int_t dstat(const char *key)
{
    json_t *s = testd_stats(&D);
    json_int_t v;

    assert_non_null(s);
    v = json_integer_value(
        json_object_get(json_object_get(s, "deliveries"), key));
    json_decref(s);
    return v;
}

static void send_int(testd_conn *c, const char *name, int v)
{
    char p[300];
    snprintf(p, sizeof p, "{\"name\":\"%s\",\"value\":%d}", name, v);
    e2e_ok(c, 903, "send", p);
}

/* ---- ack, len, cap, stale ids ---- */

static void test_ack_basics(void **state)
{
    testd_conn *c = testd_connect(&D);
    got g1, g2;
    (void)state;

    e2e_ok(c, 1, "make", "{\"name\":\"j\",\"cap\":2}");
    send_int(c, "j", 1);
    send_int(c, "j", 2);
    g1 = recv_ack(c, "j", "");
    expect_value_int(&g1, 1);
    assert_int_equal(g1.attempt, 1);
    assert_int_equal(len_of(c, "j", "len"), 1);
    assert_int_equal(len_of(c, "j", "inflight"), 1);
    assert_int_equal(len_of(c, "j", "cap"), 2);
    /* In flight counts against cap. */
    e2e_expect_reason(c, 2, "send",
                      "{\"name\":\"j\",\"value\":3,\"timeout_ms\":0}",
                      "timeout");
    assert_int_equal(dstat("inflight"), 1);
    dok(c, "ack", "j", g1.id, "");
    dstale(c, "ack", "j", g1.id);  /* twice */
    dstale(c, "nack", "j", g1.id); /* any call */
    dstale(c, "ack", "j", 12345);  /* never issued */
    send_int(c, "j", 3);
    g2 = recv_ack(c, "j", "");
    expect_value_int(&g2, 2);
    assert_true(g2.id != g1.id);
    /* An id of another channel is not pending here. */
    e2e_ok(c, 3, "make", "{\"name\":\"k\"}");
    dstale(c, "ack", "k", g2.id);
    dok(c, "ack", "j", g2.id, "");
    /* A plain recv is untouched. */
    json_t *r = e2e_ok(c, 4, "recv", "{\"name\":\"j\"}");
    assert_null(json_object_get(r, "delivery"));
    assert_int_equal(len_of(c, "j", "inflight"), 0);
    assert_int_equal(dstat("inflight"), 0);
    /* Misuse and bad params. */
    e2e_expect_reason(c, 5, "recv",
                      "{\"name\":\"j\",\"ack\":true,\"ack_wait_ms\":0}",
                      "invalid");
    e2e_expect_reason(c, 6, "ack", "{\"name\":\"nope\",\"id\":1}", "not_found");
    e2e_expect_reason(c, 7, "make",
                      "{\"name\":\"j\",\"cap\":2,\"max_deliver\":3}", "exists");
    e2e_expect_reason(c, 8, "make", "{\"name\":\"m\",\"max_deliver\":0}",
                      "invalid");
    e2e_expect_reason(
        c, 9, "go",
        "{\"request\":{\"method\":\"recv\",\"params\":{\"name\":\"j\","
        "\"ack\":true}}}",
        "misuse");
    got_free(&g1);
    got_free(&g2);
    testd_close(c);
}

/* ---- redelivery: ack_wait, session end, order ---- */

static void test_redelivery(void **state)
{
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D);
    got g, h, k;
    (void)state;

    e2e_ok(a, 1, "make", "{\"name\":\"r\",\"cap\":10}");
    send_int(a, "r", 1);
    int64_t t0 = testd_now_ms();
    g = recv_ack(a, "r", "\"ack_wait_ms\":300");
    /* b waits; the value comes back to it once ack_wait passes. */
    h = recv_ack(b, "r", "");
    int64_t late = testd_now_ms() - t0;
    expect_value_int(&h, 1);
    assert_int_equal(h.attempt, 2);
    assert_true(late >= 300);
    printf("redelivery after ack_wait 300 ms: %lld ms\n", (long long)late);
    assert_true(late < 300 + 5000); /* generous: only bounds a bug */
    dstale(a, "ack", "r", g.id);    /* the expired attempt cannot ack */
    assert_true(dstat("redelivered") >= 1);

    /* Session end: b vanishes holding h; a gets it as attempt 3. */
    testd_close(b);
    k = recv_ack(a, "r", "\"timeout_ms\":20000");
    expect_value_int(&k, 1);
    assert_int_equal(k.attempt, 3);
    dok(a, "ack", "r", k.id, "");

    /* Redeliveries go first, in their original order. */
    for (int i = 10; i < 15; i++)
        send_int(a, "r", i);
    got x[3];
    for (int i = 0; i < 3; i++)
        x[i] = recv_ack(a, "r", ""); /* 10, 11, 12 */
    dok(a, "nack", "r", x[2].id, "");
    dok(a, "nack", "r", x[0].id, "\"reason\":\"r0\"");
    int want[] = {10, 12, 13};
    for (int i = 0; i < 3; i++) {
        got y = recv_ack(a, "r", "");
        expect_value_int(&y, want[i]);
        dok(a, "ack", "r", y.id, "");
        got_free(&y);
    }
    dok(a, "ack", "r", x[1].id, "");
    /* nack with a delay: counted in flight until it passes. */
    got d = recv_ack(a, "r", "");
    expect_value_int(&d, 14);
    t0 = testd_now_ms();
    dok(a, "nack", "r", d.id, "\"delay_ms\":200");
    assert_int_equal(len_of(a, "r", "inflight"), 1);
    assert_int_equal(len_of(a, "r", "len"), 0);
    got e = recv_ack(a, "r", "");
    assert_true(testd_now_ms() - t0 >= 200);
    expect_value_int(&e, 14);
    assert_int_equal(e.attempt, 2);
    /* touch extends the deadline past ack_wait. */
    json_t *t = dcall(a, "touch", "r", e.id, "\"ack_wait_ms\":400");
    assert_int_equal(
        json_integer_value(json_object_get(testd_result(t), "ack_wait_ms")),
        400);
    json_decref(t);
    e2e_expect_reason(a, 2, "recv",
                      "{\"name\":\"r\",\"ack\":true,\"timeout_ms\":150}",
                      "timeout");
    dok(a, "ack", "r", e.id, "");
    for (int i = 0; i < 3; i++)
        got_free(&x[i]);
    got_free(&g);
    got_free(&h);
    got_free(&k);
    got_free(&d);
    got_free(&e);
    testd_close(a);
}

/* ---- dead letters ---- */

static void test_dead_letters(void **state)
{
    testd_conn *c = testd_connect(&D);
    json_t *r, *v;
    got g;
    (void)state;

    e2e_ok(c, 1, "make", "{\"name\":\"dl\",\"cap\":10}");
    e2e_ok(c, 2, "make",
           "{\"name\":\"w\",\"cap\":4,\"max_deliver\":2,"
           "\"dead_letter\":\"dl\"}");
    e2e_ok(c, 3, "send", "{\"name\":\"w\",\"value\":{\"job\":1}}");
    g = recv_ack(c, "w", "");
    dok(c, "nack", "w", g.id, "\"reason\":\"first\"");
    got_free(&g);
    g = recv_ack(c, "w", "\"ack_wait_ms\":50");
    assert_int_equal(g.attempt, 2);
    /* The second attempt expires: it was the last. */
    r = e2e_ok(c, 4, "recv", "{\"name\":\"dl\",\"timeout_ms\":20000}");
    v = json_object_get(r, "value");
    assert_string_equal(json_string_value(json_object_get(v, "origin")), "w");
    assert_int_equal(json_integer_value(json_object_get(v, "attempts")), 2);
    assert_string_equal(json_string_value(json_object_get(v, "reason")),
                        "expired");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(v, "value"), "job")),
        1);
    dstale(c, "ack", "w", g.id);
    got_free(&g);
    wait_len(c, "w", "inflight", 0);

    /* term: at once, with its reason. */
    send_int(c, "w", 5);
    g = recv_ack(c, "w", "");
    dok(c, "term", "w", g.id, "\"reason\":\"poison\"");
    r = e2e_ok(c, 5, "recv", "{\"name\":\"dl\",\"timeout_ms\":0}");
    v = json_object_get(r, "value");
    assert_string_equal(json_string_value(json_object_get(v, "reason")),
                        "poison");
    assert_int_equal(json_integer_value(json_object_get(v, "attempts")), 1);
    assert_int_equal(json_integer_value(json_object_get(v, "value")), 5);
    got_free(&g);
    assert_int_equal(dstat("dead_letters"), 2);

    /* No dead-letter channel: dropped, counted. */
    e2e_ok(c, 6, "make", "{\"name\":\"nd\",\"cap\":1,\"max_deliver\":1}");
    send_int(c, "nd", 7);
    g = recv_ack(c, "nd", "");
    dok(c, "nack", "nd", g.id, "");
    assert_int_equal(dstat("dropped"), 1);
    assert_int_equal(len_of(c, "nd", "len"), 0);
    assert_int_equal(len_of(c, "nd", "inflight"), 0);
    got_free(&g);

    /* drop ends what is in flight or delayed: a receiver parked on the
     * channel (closed by the drop, one value still in flight) gets
     * not_found at once, and the old id names nothing. */
    testd_conn *b = testd_connect(&D);
    send_int(c, "nd", 8);
    g = recv_ack(c, "nd", "");
    dok(c, "nack", "nd", g.id, "\"delay_ms\":600000");
    e2e_post(b, 7, "recv", "{\"name\":\"nd\"}");
    e2e_wait_stat(&D, "waiters", 1);
    e2e_ok(c, 8, "drop", "{\"name\":\"nd\"}");
    json_t *ans = testd_wait_id(b, 7, 20000);
    e2e_check_reason(ans, "not_found", NULL);
    json_decref(ans);
    assert_int_equal(dstat("inflight"), 0);
    got_free(&g);
    testd_close(b);
    testd_close(c);
}

/* ---- close waits; unbuffered send completes on the ack; select ---- */

static void test_close_unbuffered_select(void **state)
{
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D);
    json_t *ans, *r;
    got g;
    (void)state;

    e2e_ok(a, 1, "make", "{\"name\":\"c\",\"cap\":2}");
    send_int(a, "c", 1);
    g = recv_ack(a, "c", "");
    e2e_ok(a, 2, "close", "{\"name\":\"c\"}");
    /* Closed and empty, one in flight: no ok:false yet. */
    e2e_expect_reason(a, 3, "recv", "{\"name\":\"c\",\"timeout_ms\":100}",
                      "timeout");
    e2e_post(b, 4, "recv", "{\"name\":\"c\"}");
    e2e_wait_stat(&D, "waiters", 1);
    dok(a, "ack", "c", g.id, "");
    ans = testd_wait_id(b, 4, 20000);
    assert_non_null(ans);
    assert_false(json_is_true(json_object_get(testd_result(ans), "ok")));
    json_decref(ans);
    got_free(&g);

    /* Unbuffered: the send answers only once the receiver acks. */
    e2e_ok(a, 5, "make", "{\"name\":\"u\"}");
    e2e_post(b, 6, "send", "{\"name\":\"u\",\"value\":9}");
    e2e_wait_stat(&D, "waiters", 1);
    g = recv_ack(a, "u", "");
    expect_value_int(&g, 9);
    assert_null(testd_wait_id(b, 6, 200));
    dok(a, "nack", "u", g.id, ""); /* back: still not sent */
    got_free(&g);
    g = recv_ack(a, "u", "");
    assert_int_equal(g.attempt, 2);
    assert_null(testd_wait_id(b, 6, 100));
    dok(a, "ack", "u", g.id, "");
    ans = testd_wait_id(b, 6, 20000);
    assert_non_null(testd_result(ans));
    json_decref(ans);
    got_free(&g);
    /* Receiver first, then the sender. */
    e2e_post(a, 7, "recv", "{\"name\":\"u\",\"ack\":true}");
    e2e_wait_stat(&D, "waiters", 1);
    e2e_post(b, 8, "send", "{\"name\":\"u\",\"value\":10}");
    ans = testd_wait_id(a, 7, 20000);
    r = testd_result(ans);
    assert_int_equal(json_integer_value(json_object_get(r, "value")), 10);
    long long id = (long long)json_integer_value(
        json_object_get(json_object_get(r, "delivery"), "id"));
    json_decref(ans);
    assert_null(testd_wait_id(b, 8, 100));
    dok(a, "ack", "u", id, "");
    ans = testd_wait_id(b, 8, 20000);
    assert_non_null(testd_result(ans));
    json_decref(ans);
    testd_close(a);
    testd_close(b);
}

static void test_select_ack(void **state)
{
    testd_conn *a = testd_connect(&D);
    json_t *r;
    (void)state;

    e2e_ok(a, 1, "make", "{\"name\":\"s\",\"cap\":2}");
    send_int(a, "s", 4);
    r = e2e_ok(a, 2, "select",
               "{\"cases\":[{\"recv\":\"s\",\"ack\":true,"
               "\"ack_wait_ms\":5000}]}");
    assert_int_equal(json_integer_value(json_object_get(r, "index")), 0);
    assert_int_equal(json_integer_value(json_object_get(r, "value")), 4);
    json_t *d = json_object_get(r, "delivery");
    assert_non_null(d);
    long long id = (long long)json_integer_value(json_object_get(d, "id"));
    assert_int_equal(len_of(a, "s", "inflight"), 1);
    dok(a, "ack", "s", id, "");
    e2e_expect_reason(
        a, 3, "select",
        "{\"cases\":[{\"recv\":\"s\",\"ack_wait_ms\":5}],\"default\":true}",
        "invalid");

    /* Unbuffered, the select waiting first: the send completes on the
     * ack, and a nack hands the value to the next receiver. */
    testd_conn *b = testd_connect(&D);
    e2e_ok(a, 4, "make", "{\"name\":\"su\"}");
    e2e_post(a, 5, "select",
             "{\"cases\":[{\"recv\":\"s\"},{\"recv\":\"su\","
             "\"ack\":true}]}");
    e2e_wait_stat(&D, "waiters", 1);
    e2e_post(b, 6, "send", "{\"name\":\"su\",\"value\":\"x\"}");
    json_t *ans = testd_wait_id(a, 5, 20000);
    r = testd_result(ans);
    assert_int_equal(json_integer_value(json_object_get(r, "index")), 1);
    assert_string_equal(json_string_value(json_object_get(r, "value")), "x");
    id = (long long)json_integer_value(
        json_object_get(json_object_get(r, "delivery"), "id"));
    json_decref(ans);
    assert_null(testd_wait_id(b, 6, 100));
    dok(a, "nack", "su", id, "");
    got g = recv_ack(a, "su", "");
    assert_int_equal(g.attempt, 2);
    assert_null(testd_wait_id(b, 6, 50));
    dok(a, "ack", "su", g.id, "");
    ans = testd_wait_id(b, 6, 20000);
    assert_non_null(testd_result(ans));
    json_decref(ans);
    got_free(&g);
    testd_close(b);
    testd_close(a);
}

/* ---- churn: receivers that vanish or never ack ---- */

#define CHURN_VALUES 300
#define CHURN_CONNS 6

static void test_churn_exactly_once(void **state)
{
    testd_conn *p = testd_connect(&D), *w[CHURN_CONNS];
    int acked[CHURN_VALUES] = {0}, total = 0, faults = 0;
    unsigned seed = 18;
    (void)state;

    e2e_ok(p, 1, "make", "{\"name\":\"q\",\"cap\":64}");
    for (int i = 0; i < CHURN_CONNS; i++)
        w[i] = testd_connect(&D);
    int sent = 0;
    while (total < CHURN_VALUES) {
        /* Fill what room there is (len and inflight, read apart, could
         * disagree: a full channel answers timeout). */
        while (sent < CHURN_VALUES) {
            char sp[128];
            snprintf(sp, sizeof sp,
                     "{\"name\":\"q\",\"value\":%d,\"timeout_ms\":0}", sent);
            json_t *a = e2e_call(p, 905, "send", sp);
            bool full = testd_reason(a) && !strcmp(testd_reason(a), "timeout");
            if (!full && !testd_result(a))
                fail_msg("send: %s", json_dumps(a, JSON_COMPACT));
            json_decref(a);
            if (full)
                break;
            sent++;
        }
        int i = rand_r(&seed) % CHURN_CONNS;
        got g = recv_ack(w[i], "q", "\"ack_wait_ms\":100");
        int v = (int)json_integer_value(g.value);
        int fate = rand_r(&seed) % 10;
        if (fate == 0) { /* the worker dies holding it */
            testd_close(w[i]);
            w[i] = testd_connect(&D);
            faults++;
        } else if (fate == 1) { /* it hangs: ack_wait redelivers */
            faults++;
        } else if (fate == 2) {
            dok(w[i], "nack", "q", g.id, "");
        } else {
            dok(w[i], "ack", "q", g.id, "");
            assert_int_equal(acked[v]++, 0);
            total++;
        }
        got_free(&g);
    }
    for (int v = 0; v < CHURN_VALUES; v++)
        assert_int_equal(acked[v], 1);
    e2e_wait_stat(&D, "waiters", 0);
    assert_int_equal(len_of(p, "q", "len"), 0);
    assert_int_equal(len_of(p, "q", "inflight"), 0);
    printf("churn: %d values acked exactly once through %d faults\n",
           CHURN_VALUES, faults);
    for (int i = 0; i < CHURN_CONNS; i++)
        testd_close(w[i]);
    testd_close(p);
}

/* ---- kill -9 with a data_dir ---- */

static char ack_ddir[64];

static int kill_setup(void **state)
{
    const char *args[] = {"--data-dir", ack_ddir, "--fsync", "always", NULL};
    (void)state;
    snprintf(ack_ddir, sizeof ack_ddir, "/tmp/chand-ack-XXXXXX");
    if (!mkdtemp(ack_ddir))
        return -1;
    return testd_start(&D, args);
}

/* test_delivery_pop_checked's log and its open WAL (a failed assertion
 * leaves them behind). */
static char ack_logf[300];
static wal *ack_w;

static int kill_teardown(void **state)
{
    int rc = e2e_teardown(state);
    if (ack_w)
        wal_close(ack_w);
    ack_w = NULL;
    if (ack_logf[0])
        unlink(ack_logf);
    ack_logf[0] = '\0';
    testd_rm_rf(ack_ddir);
    return rc;
}

static void kill_restart(void)
{
    const char *args[] = {"--data-dir", ack_ddir, "--fsync", "always", NULL};

    testd_close_all();
    if (D.pid > 0) /* never kill(0): that is our process group */
        kill(D.pid, SIGKILL);
    testd_wait_exit(&D, 20000);
    assert_int_equal(testd_start(&D, args), 0);
}

static void test_kill9_redelivers(void **state)
{
    testd_conn *c = testd_connect(&D);
    got g[4];
    (void)state;

    e2e_ok(c, 1, "make", "{\"name\":\"dl\",\"cap\":10}");
    e2e_ok(c, 2, "make",
           "{\"name\":\"p\",\"cap\":8,\"max_deliver\":2,"
           "\"dead_letter\":\"dl\"}");
    for (int i = 0; i < 6; i++)
        send_int(c, "p", i);
    for (int i = 0; i < 4; i++)
        g[i] = recv_ack(c, "p", ""); /* 0..3 in flight */
    dok(c, "ack", "p", g[1].id, "");
    dok(c, "nack", "p", g[3].id, "\"reason\":\"later\"");
    /* A value handed straight from its sender to a waiting acknowledged
     * receiver (it never enters the buffer) is logged too. */
    testd_conn *b = testd_connect(&D);
    e2e_ok(c, 4, "make", "{\"name\":\"p2\",\"cap\":4}");
    e2e_post(b, 5, "recv", "{\"name\":\"p2\",\"ack\":true}");
    e2e_wait_stat(&D, "waiters", 1);
    send_int(c, "p2", 77);
    json_t *ans = testd_wait_id(b, 5, 20000);
    long long bid = (long long)json_integer_value(
        json_object_get(json_object_get(testd_result(ans), "delivery"), "id"));
    json_decref(ans);
    /* ... and its second attempt, the first value of its channel (the
     * log once took its key 0 for "new": the value came back empty). */
    dok(b, "nack", "p2", bid, "");
    got q = recv_ack(c, "p2", "");
    assert_int_equal(q.attempt, 2);
    got_free(&q);
    kill_restart();
    c = testd_connect(&D);
    q = recv_ack(c, "p2", "");
    expect_value_int(&q, 77);
    assert_int_equal(q.attempt, 3);
    /* Ids carry the start's token epoch, as lock tokens do: above every
     * earlier start's, whatever the clock did (it seeded them). */
    json_int_t tok =
        e2e_ok_int(c, 0, "mutex.lock", "{\"name\":\"ep\"}", "token");
    assert_int_equal(q.id >> 32, tok >> 32);
    for (int i = 0; i < 4; i++)
        assert_true(q.id > g[i].id);
    dok(c, "ack", "p2", q.id, "");
    got_free(&q);
    /* 0 and 3 were in flight or requeued, 2 in flight; 4 and 5 buffered:
     * 0, 2, 3 come back first in their order, as attempt 2. */
    assert_int_equal(len_of(c, "p", "len"), 5);
    assert_int_equal(len_of(c, "p", "inflight"), 0);
    dstale(c, "ack", "p", g[0].id); /* ids of the old run name nothing */
    int want[] = {0, 2, 3, 4, 5}, att[] = {2, 2, 2, 1, 1};
    got h[5];
    for (int i = 0; i < 5; i++) {
        h[i] = recv_ack(c, "p", "");
        expect_value_int(&h[i], want[i]);
        assert_int_equal(h[i].attempt, att[i]);
    }
    for (int i = 1; i < 5; i++)
        dok(c, "ack", "p", h[i].id, "");
    /* max_deliver 2 survived: the value nacked on its 2nd attempt is a
     * dead letter, with the reason it was nacked with. */
    dok(c, "nack", "p", h[0].id, "\"reason\":\"twice\"");
    json_t *r = e2e_ok(c, 3, "recv", "{\"name\":\"dl\",\"timeout_ms\":0}");
    json_t *v = json_object_get(r, "value");
    assert_int_equal(json_integer_value(json_object_get(v, "attempts")), 2);
    assert_string_equal(json_string_value(json_object_get(v, "reason")),
                        "twice");
    /* Nothing left to come back after another kill. */
    kill_restart();
    c = testd_connect(&D);
    assert_int_equal(len_of(c, "p", "len"), 0);
    assert_int_equal(len_of(c, "dl", "len"), 0);
    for (int i = 0; i < 4; i++)
        got_free(&g[i]);
    for (int i = 0; i < 5; i++)
        got_free(&h[i]);
}

/* ---- a delivery's pop is checked against its value ---- */

/* wal_apply_fn: keeps the check of the last chan_pop of channel "cq". */
static int cq_pop_check(void *arg, const eff_rec *r, int from_snapshot)
{
    (void)from_snapshot;
    if (r->type == EFF_CHAN_POP && r->u.pop.name.n == 2 &&
        memcmp(r->u.pop.name.p, "cq", 2) == 0)
        *(uint64_t *)arg = r->u.pop.check;
    return 0;
}

/* Makes channel cq on c, sends 5 (and then `then`, unless 0), takes 5
 * with an acknowledged receive, and kills the daemon with 5 in flight. */
static void cq_deliver_kill(testd_conn *c, int then)
{
    e2e_ok(c, 1, "make", "{\"name\":\"cq\",\"cap\":4}");
    send_int(c, "cq", 5);
    if (then)
        send_int(c, "cq", then);
    got g = recv_ack(c, "cq", "");
    expect_value_int(&g, 5);
    got_free(&g);
    testd_close_all();
    kill(D.pid, SIGKILL);
    testd_wait_exit(&D, 20000);
}

static void test_delivery_pop_checked(void **state)
{
    const char *args_info[] = {"--data-dir",  ack_ddir, "--fsync", "always",
                               "--log-level", "info",   NULL};
    char err[256];
    testd_conn *c = testd_connect(&D);
    wal_opts wo = {.dir = ack_ddir, .fsync = WAL_FSYNC_ALWAYS};
    uint64_t check = 0;
    int w_rc;
    (void)state;

    cq_deliver_kill(c, 6); /* 5 leaves the buffer as a delivery */

    /* Replayed, the real log agrees with itself. */
    snprintf(ack_logf, sizeof ack_logf, "%s.log", ack_ddir);
    testd_opts o = {.args = args_info, .log = ack_logf};
    assert_int_equal(testd_start_opts(&D, &o), 0);
    assert_true(testd_file_has(ack_logf, "recovered", 20000));
    assert_false(testd_file_has(ack_logf, "diverged", 0));
    testd_close_all();
    kill(D.pid, SIGKILL);
    testd_wait_exit(&D, 20000);
    unlink(ack_logf);

    /* The pop names the value it takes, as a plain receive's does. */
    assert_int_equal(
        wal_open(&wo, cq_pop_check, &check, &ack_w, err, sizeof err), 0);
    assert_true(check == hchan__text_check("5", 1));
    /* A log whose next delivery pops 7 where the channel's head is 6: the
     * state a node would reach from a diverged copy. */
    eff_rec bad[2] = {{.type = EFF_CHAN_POP}, {.type = EFF_DLV_INFLIGHT}};
    bad[0].u.pop.name = eff_s("cq");
    bad[0].u.pop.count = 1;
    bad[0].u.pop.check = hchan__text_check("7", 1);
    bad[1].u.dlv.name = eff_s("cq");
    bad[1].u.dlv.id = 1000;
    bad[1].u.dlv.attempt = 1;
    bad[1].u.dlv.value = eff_s("7");
    assert_int_equal(wal_append_group(ack_w, bad, 2, NULL), 0);
    w_rc = wal_close(ack_w);
    ack_w = NULL;
    assert_int_equal(w_rc, 0);

    assert_int_equal(testd_start_opts(&D, &o), 0);
    assert_true(testd_file_has(ack_logf,
                               "state diverged from the log: chan "
                               "\"cq\" popped a value other than",
                               20000));
    unlink(ack_logf);
}

/* wal_apply_fn: keeps the key of the last new delivery of channel "cq". */
static int cq_dlv_key(void *arg, const eff_rec *r, int from_snapshot)
{
    (void)from_snapshot;
    if (r->type == EFF_DLV_INFLIGHT && r->u.dlv.prev_id == 0 &&
        r->u.dlv.name.n == 2 && memcmp(r->u.dlv.name.p, "cq", 2) == 0)
        *(uint64_t *)arg = r->u.dlv.id;
    return 0;
}

/* A log that starts a delivery under a key still live with another value
 * (what a node whose state drifted from the log would write; taken as is,
 * it replaced the live value, lost without a word) is reported at
 * restart. */
static void test_delivery_key_checked(void **state)
{
    const char *args_info[] = {"--data-dir",  ack_ddir, "--fsync", "always",
                               "--log-level", "info",   NULL};
    char err[256];
    testd_conn *c = testd_connect(&D);
    wal_opts wo = {.dir = ack_ddir, .fsync = WAL_FSYNC_ALWAYS};
    uint64_t key = 0;
    int w_rc;
    (void)state;

    cq_deliver_kill(c, 0); /* 5 is live, in flight */

    assert_int_equal(wal_open(&wo, cq_dlv_key, &key, &ack_w, err, sizeof err),
                     0);
    assert_true(key != 0);
    /* The same key begins again with 9, no ack of 5 between. */
    eff_rec bad = {.type = EFF_DLV_INFLIGHT};
    bad.u.dlv.name = eff_s("cq");
    bad.u.dlv.id = key;
    bad.u.dlv.attempt = 1;
    bad.u.dlv.value = eff_s("9");
    assert_int_equal(wal_append(ack_w, &bad, NULL), 0);
    w_rc = wal_close(ack_w);
    ack_w = NULL;
    assert_int_equal(w_rc, 0);

    snprintf(ack_logf, sizeof ack_logf, "%s.log", ack_ddir);
    testd_opts o = {.args = args_info, .log = ack_logf};
    assert_int_equal(testd_start_opts(&D, &o), 0);
    assert_true(testd_file_has(ack_logf,
                               "state diverged from the log: chan \"cq\" "
                               "delivery",
                               20000));
    assert_true(testd_file_has(ack_logf, "(value 5)", 0));
    unlink(ack_logf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        E2E_TEST(test_ack_basics),
        E2E_TEST(test_redelivery),
        E2E_TEST(test_dead_letters),
        E2E_TEST(test_close_unbuffered_select),
        E2E_TEST(test_select_ack),
        E2E_TEST(test_churn_exactly_once),
        cmocka_unit_test_setup_teardown(test_kill9_redelivers, kill_setup,
                                        kill_teardown),
        cmocka_unit_test_setup_teardown(test_delivery_pop_checked, kill_setup,
                                        kill_teardown),
        cmocka_unit_test_setup_teardown(test_delivery_key_checked, kill_setup,
                                        kill_teardown),
    };
    int rc = cmocka_run_group_tests_name("ack", tests, NULL, NULL);
    json_decref(e2e_held);
    return rc;
}
