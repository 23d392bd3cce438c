/*
 * test_daemon_chan.c - end-to-end: the channel family over the wire
 * against a real daemon: make/send/recv/close/len/drop/list/select, every
 * reason they give, unbuffered hand-off between clients, buffered FIFO,
 * close waking other sessions, select fed by other clients, timeouts,
 * out-of-order answers, a killed receiver not losing a value, and 1000
 * connections parked in recv released by one close.
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
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/e2e.h"
#include "../common/testd.h"

/* Calls and asserts success; returns the result (the answer is freed
 * at the next e2e_ok() on the same slot: keep it short). */

static void test_basics_and_reasons(void **state)
{
    testd_conn *c = testd_connect(&D);
    json_t *r;
    (void)state;

    e2e_expect_reason(c, 1, "recv", "{\"name\":\"q\"}", "not_found");
    e2e_expect_reason(c, 1, "send", "{\"name\":\"q\",\"value\":1}",
                      "not_found");
    r = e2e_ok(c, 2, "make", "{\"name\":\"q\",\"cap\":3,\"type\":\"number\"}");
    assert_null(json_object_get(r, "closed"));
    r = e2e_ok(c, 3, "make", "{\"name\":\"q\",\"cap\":3,\"type\":\"number\"}");
    assert_null(json_object_get(r, "closed"));
    e2e_expect_reason(c, 4, "make", "{\"name\":\"q\",\"cap\":4}", "exists");
    e2e_expect_reason(c, 5, "send", "{\"name\":\"q\",\"value\":\"s\"}",
                      "wrong_type");
    e2e_ok(c, 6, "send", "{\"name\":\"q\",\"value\":7}");
    e2e_ok(c, 7, "send", "{\"name\":\"q\",\"value\":8.5}");
    r = e2e_ok(c, 8, "len", "{\"name\":\"q\"}");
    assert_int_equal(json_integer_value(json_object_get(r, "len")), 2);
    assert_int_equal(json_integer_value(json_object_get(r, "cap")), 3);
    r = e2e_ok(c, 9, "list", "{\"prefix\":\"q\"}");
    r = json_array_get(json_object_get(r, "objects"), 0);
    assert_string_equal(json_string_value(json_object_get(r, "name")), "q");
    assert_string_equal(json_string_value(json_object_get(r, "type")), "chan");
    /* ops: the requests that named q (three makes, three sends, len);
     * list itself is not one of them. */
    assert_int_equal(json_integer_value(json_object_get(r, "ops")), 7);
    r = e2e_ok(c, 10, "list", "{\"prefix\":\"zz\"}");
    assert_int_equal(json_array_size(json_object_get(r, "objects")), 0);
    e2e_ok(c, 11, "close", "{\"name\":\"q\"}");
    e2e_expect_reason(c, 12, "close", "{\"name\":\"q\"}", "closed");
    /* make finds it closed: ok (make is idempotent), and says so. */
    r = e2e_ok(c, 12, "make", "{\"name\":\"q\",\"cap\":3,\"type\":\"number\"}");
    assert_true(json_is_true(json_object_get(r, "closed")));
    {
        json_t *a = e2e_call(c, 12, "make", "{\"name\":\"q\",\"cap\":1}");
        assert_string_equal(testd_reason(a), "exists");
        assert_non_null(strstr(testd_message(a), "and is closed"));
        assert_true(json_is_true(json_object_get(
            json_object_get(json_object_get(a, "error"), "data"), "closed")));
        json_decref(a);
    }
    {
        json_t *a = e2e_call(c, 13, "send", "{\"name\":\"q\",\"value\":1}");
        assert_string_equal(testd_reason(a), "closed");
        assert_string_equal(testd_message(a), "send on closed channel");
        json_decref(a);
    }
    /* Buffered values drain after close, then ok:false. */
    r = e2e_ok(c, 14, "recv", "{\"name\":\"q\"}");
    assert_int_equal(json_integer_value(json_object_get(r, "value")), 7);
    r = e2e_ok(c, 15, "recv", "{\"name\":\"q\"}");
    assert_true(json_real_value(json_object_get(r, "value")) == 8.5);
    r = e2e_ok(c, 16, "recv", "{\"name\":\"q\"}");
    assert_true(json_is_false(json_object_get(r, "ok")));
    assert_true(json_is_null(json_object_get(r, "value")));
    e2e_ok(c, 17, "drop", "{\"name\":\"q\"}");
    e2e_expect_reason(c, 18, "drop", "{\"name\":\"q\"}", "not_found");
    e2e_expect_reason(c, 19, "len", "{\"name\":\"q\"}", "not_found");
    /* timeout_ms 0: do not wait. */
    /* After drop, make starts over: an open channel. */
    r = e2e_ok(c, 20, "make", "{\"name\":\"q\",\"cap\":3,\"type\":\"number\"}");
    assert_null(json_object_get(r, "closed"));
    e2e_ok(c, 20, "make", "{\"name\":\"u\"}");
    e2e_expect_reason(c, 21, "recv", "{\"name\":\"u\",\"timeout_ms\":0}",
                      "timeout");
    e2e_expect_reason(c, 22, "send",
                      "{\"name\":\"u\",\"value\":1,"
                      "\"timeout_ms\":0}",
                      "timeout");
    testd_close(c);
}

static void test_unbuffered_handoff(void **state)
{
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D);
    json_t *ans, *r;
    (void)state;

    e2e_ok(a, 1, "make", "{\"name\":\"h\"}");
    e2e_post(a, 2, "send", "{\"name\":\"h\",\"value\":{\"job\":42}}");
    /* The send must not answer while nobody receives. */
    assert_null(testd_wait_id(a, 2, 300));
    r = e2e_ok(b, 3, "recv", "{\"name\":\"h\"}");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(r, "value"), "job")),
        42);
    ans = testd_wait_id(a, 2, 20000);
    assert_non_null(testd_result(ans));
    json_decref(ans);
    /* And the other way round: a receiver waits for a sender. */
    e2e_post(b, 4, "recv", "{\"name\":\"h\"}");
    assert_null(testd_wait_id(b, 4, 200));
    e2e_ok(a, 5, "send", "{\"name\":\"h\",\"value\":\"x\"}");
    ans = testd_wait_id(b, 4, 20000);
    assert_string_equal(
        json_string_value(json_object_get(testd_result(ans), "value")), "x");
    json_decref(ans);
    testd_close(a);
    testd_close(b);
}

static void test_buffered_fifo(void **state)
{
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D);
    char p[128];
    (void)state;

    e2e_ok(a, 1, "make", "{\"name\":\"f\",\"cap\":100}");
    for (int i = 0; i < 100; i++) {
        snprintf(p, sizeof p, "{\"name\":\"f\",\"value\":%d}", i);
        e2e_ok(a, 10 + i, "send", p);
    }
    e2e_expect_reason(a, 5, "send",
                      "{\"name\":\"f\",\"value\":0,"
                      "\"timeout_ms\":0}",
                      "timeout");
    for (int i = 0; i < 100; i++) {
        json_t *r = e2e_ok(b, 200 + i, "recv", "{\"name\":\"f\"}");
        assert_int_equal(json_integer_value(json_object_get(r, "value")), i);
    }
    testd_close(a);
    testd_close(b);
}

static void test_close_wakes_others(void **state)
{
    enum { N = 5 };
    testd_conn *c[N], *closer = testd_connect(&D);
    (void)state;

    e2e_ok(closer, 1, "make", "{\"name\":\"w\"}");
    e2e_ok(closer, 2, "make", "{\"name\":\"s\"}");
    for (int i = 0; i < N; i++) {
        c[i] = testd_connect(&D);
        e2e_post(c[i], 1, "recv", "{\"name\":\"w\"}");
        e2e_post(c[i], 2, "send", "{\"name\":\"s\",\"value\":1}");
    }
    e2e_wait_stat(&D, "waiters", 2 * N);
    e2e_ok(closer, 3, "close", "{\"name\":\"w\"}");
    e2e_ok(closer, 4, "close", "{\"name\":\"s\"}");
    for (int i = 0; i < N; i++) {
        json_t *a = testd_wait_id(c[i], 1, 20000);
        assert_non_null(a);
        assert_true(json_is_false(json_object_get(testd_result(a), "ok")));
        json_decref(a);
        a = testd_wait_id(c[i], 2, 20000);
        assert_non_null(a);
        assert_string_equal(testd_reason(a), "closed");
        json_decref(a);
        testd_close(c[i]);
    }
    e2e_wait_stat(&D, "waiters", 0);
    testd_close(closer);
}

static void test_drop_wakes_waiters(void **state)
{
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D);
    json_t *ans;
    (void)state;

    e2e_ok(a, 1, "make", "{\"name\":\"d\",\"cap\":1}");
    e2e_post(b, 2, "recv", "{\"name\":\"d\"}");
    e2e_wait_stat(&D, "waiters", 1);
    e2e_ok(a, 3, "drop", "{\"name\":\"d\"}");
    ans = testd_wait_id(b, 2, 20000);
    assert_string_equal(testd_reason(ans), "not_found");
    json_decref(ans);
    testd_close(a);
    testd_close(b);
}

static void test_select(void **state)
{
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D);
    json_t *ans, *r;
    (void)state;

    e2e_ok(a, 1, "make", "{\"name\":\"sa\"}");
    e2e_ok(a, 2, "make", "{\"name\":\"sb\"}");
    e2e_ok(a, 3, "make", "{\"name\":\"sc\",\"cap\":1}");
    /* default taken when nothing is ready */
    r = e2e_ok(a, 4, "select",
               "{\"cases\":[{\"recv\":\"sa\"},{\"recv\":\"sb\"}],"
               "\"default\":true}");
    assert_int_equal(json_integer_value(json_object_get(r, "index")), -1);
    /* a ready send case */
    r = e2e_ok(a, 5, "select",
               "{\"cases\":[{\"recv\":\"sa\"},{\"send\":\"sc\","
               "\"value\":\"v\"}]}");
    assert_int_equal(json_integer_value(json_object_get(r, "index")), 1);
    r = e2e_ok(a, 6, "select",
               "{\"cases\":[{\"recv\":\"sa\"},{\"recv\":\"sc\"}]}");
    assert_int_equal(json_integer_value(json_object_get(r, "index")), 1);
    assert_string_equal(json_string_value(json_object_get(r, "value")), "v");
    /* blocked select fed by another client */
    e2e_post(a, 7, "select",
             "{\"cases\":[{\"recv\":\"sa\"},{\"recv\":\"sb\"}]}");
    assert_null(testd_wait_id(a, 7, 200));
    e2e_ok(b, 8, "send", "{\"name\":\"sb\",\"value\":[1,2]}");
    ans = testd_wait_id(a, 7, 20000);
    r = testd_result(ans);
    assert_non_null(r);
    assert_int_equal(json_integer_value(json_object_get(r, "index")), 1);
    assert_true(json_is_true(json_object_get(r, "ok")));
    assert_int_equal(json_array_size(json_object_get(r, "value")), 2);
    json_decref(ans);
    /* blocked send case taken by another client's recv */
    e2e_post(a, 9, "select",
             "{\"cases\":[{\"send\":\"sa\",\"value\":5},"
             "{\"recv\":\"sb\"}]}");
    r = e2e_ok(b, 10, "recv", "{\"name\":\"sa\"}");
    assert_int_equal(json_integer_value(json_object_get(r, "value")), 5);
    ans = testd_wait_id(a, 9, 20000);
    assert_int_equal(
        json_integer_value(json_object_get(testd_result(ans), "index")), 0);
    json_decref(ans);
    /* timeout, errors */
    e2e_expect_reason(a, 11, "select",
                      "{\"cases\":[{\"recv\":\"sa\"}],"
                      "\"timeout_ms\":50}",
                      "timeout");
    e2e_expect_reason(a, 12, "select", "{\"cases\":[{\"recv\":\"nope\"}]}",
                      "not_found");
    e2e_expect_reason(a, 13, "select",
                      "{\"cases\":[{\"recv\":\"sa\","
                      "\"value\":1}]}",
                      "invalid");
    e2e_expect_reason(a, 14, "select", "{\"cases\":[5]}", "invalid");
    /* a closed send case is an error naming the case */
    e2e_ok(a, 15, "close", "{\"name\":\"sb\"}");
    ans = e2e_call(a, 16, "select",
                   "{\"cases\":[{\"recv\":\"sa\"},"
                   "{\"send\":\"sb\",\"value\":1}]}");
    assert_string_equal(testd_reason(ans), "closed");
    assert_int_equal(
        json_integer_value(json_object_get(
            json_object_get(json_object_get(ans, "error"), "data"), "index")),
        1);
    json_decref(ans);
    testd_close(a);
    testd_close(b);
}

/* A select written compactly (read by the scanner into cases) and the same
 * select with a space in its cases (read as a JSON array of objects) get
 * byte-identical answers, successes and every kind of failure alike.  Each
 * path has its own channel with the same history (t0, t1: both names are
 * two bytes, and no answer names them). */
static void test_select_two_paths(void **state)
{
    static const char *const cases[] = {
        "[%1$s{\"send\":\"%2$s\",\"value\":{\"k\":[1,\"x\"]}}]",
        "[%1$s{\"recv\":\"%2$s\"}]",
        "[%1$s{\"recv\":\"%2$s\"}],\"default\":true",
        "[%1$s{\"recv\":\"nope\"}]",
        "[%1$s{\"send\":\"tb\",\"value\":1}]",
        "[%1$s{\"recv\":\"\"}]",
        "[%1$s{\"recv\":\"%2$s\"},{\"send\":\"%2$s\",\"value\":2}]",
        "[%1$s{\"recv\":\"%2$s\"}]",
        "[%1$s{\"recv\":\"%2$s\"}],\"timeout_ms\":0",
        "[%1$s]",
    };
    testd_conn *a = testd_connect(&D);
    (void)state;

    e2e_ok(a, 1, "make", "{\"name\":\"t0\",\"cap\":4}");
    e2e_ok(a, 2, "make", "{\"name\":\"t1\",\"cap\":4}");
    e2e_ok(a, 3, "make", "{\"name\":\"tb\",\"cap\":4,\"type\":\"string\"}");
    e2e_ok(a, 4, "send", "{\"name\":\"t0\",\"value\":7}");
    e2e_ok(a, 5, "send", "{\"name\":\"t1\",\"value\":7}");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *ans[2];
        for (int sp = 0; sp < 2; sp++) {
            char c[256];
            snprintf(c, sizeof c, cases[i], sp ? " " : "", sp ? "t1" : "t0");
            assert_int_equal(testd_sendf(a,
                                         "{\"jsonrpc\":\"2.0\",\"id\":%zu,"
                                         "\"method\":\"select\",\"params\":"
                                         "{\"cases\":%s}}",
                                         i + 10, c),
                             0);
            ans[sp] = testd_recv_line(a, 5000);
            assert_non_null(ans[sp]);
        }
        assert_string_equal(ans[0], ans[1]);
        free(ans[0]);
        free(ans[1]);
    }
    testd_close(a);
}

/* Reads one answer line of c and checks that it is exactly
 * {"jsonrpc":"2.0","id":id,"result":{pre"value":want,"ok":true}}. */
static void expect_value_line(testd_conn *c, int id, const char *pre,
                              const char *want)
{
    char *line = testd_recv_line(c, 5000), *exp;

    assert_non_null(line);
    assert_true(asprintf(&exp,
                         "{\"jsonrpc\":\"2.0\",\"id\":%d,\"result\":{%s"
                         "\"value\":%s,\"ok\":true}}",
                         id, pre, want) > 0);
    assert_string_equal(line, exp);
    free(exp);
    free(line);
}

/* A value comes out of a channel as the compact text jansson writes for
 * what was sent (whitespace gone, escapes decoded, -0 as 0, reals as
 * jansson prints them), whichever way it was read (the scanner keeps
 * plain strings and integers as text, the rest is built and dumped) and
 * whichever way it crossed: buffered, handed to a parked receiver, by
 * select's send case, or in a batch's answer. */
static void test_values_exact(void **state)
{
    static const char *const values[] = {
        "\"xxx\"",
        "\"abcde\"",
        "\"abcdef\"",
        "\"\"",
        "0",
        "-7",
        "9999999",
        "10000000",
        "123456789012345678",
        "-0",
        "1.5",
        "1e3",
        "true",
        "false",
        "null",
        "\"caf\\u00e9\"",
        "\"caf\xc3\xa9\"",
        "\"a\\\"b\"",
        "\"tab\\there\"",
        " { \"a\" : [ 1 , 2 ] } ",
        "[]",
        "\"a longer string than any slot holds, kept out of line\"",
    };
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D);
    (void)state;

    e2e_ok(a, 1, "make", "{\"name\":\"vb\",\"cap\":4}");
    e2e_ok(a, 2, "make", "{\"name\":\"vu\"}");
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        json_t *j = json_loads(values[i], JSON_DECODE_ANY, NULL);
        char *want;
        int id = 100 + 10 * (int)i;

        assert_non_null(j);
        want = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(j);
        assert_non_null(want);
        /* buffered */
        assert_int_equal(testd_sendf(a,
                                     "{\"jsonrpc\":\"2.0\",\"id\":%d,"
                                     "\"method\":\"send\",\"params\":"
                                     "{\"name\":\"vb\",\"value\":%s}}",
                                     id, values[i]),
                         0);
        free(testd_recv_line(a, 5000));
        assert_int_equal(testd_sendf(a,
                                     "{\"jsonrpc\":\"2.0\",\"id\":%d,"
                                     "\"method\":\"recv\",\"params\":"
                                     "{\"name\":\"vb\"}}",
                                     id + 1),
                         0);
        expect_value_line(a, id + 1, "", want);
        /* handed to a parked receiver (unbuffered) */
        assert_int_equal(testd_sendf(b,
                                     "{\"jsonrpc\":\"2.0\",\"id\":%d,"
                                     "\"method\":\"recv\",\"params\":"
                                     "{\"name\":\"vu\"}}",
                                     id + 2),
                         0);
        e2e_wait_stat(&D, "waiters", 1);
        assert_int_equal(testd_sendf(a,
                                     "{\"jsonrpc\":\"2.0\",\"id\":%d,"
                                     "\"method\":\"send\",\"params\":"
                                     "{\"name\":\"vu\",\"value\":%s}}",
                                     id + 3, values[i]),
                         0);
        free(testd_recv_line(a, 5000));
        expect_value_line(b, id + 2, "", want);
        /* select's send case, then select's receive */
        assert_int_equal(testd_sendf(a,
                                     "{\"jsonrpc\":\"2.0\",\"id\":%d,"
                                     "\"method\":\"select\",\"params\":"
                                     "{\"cases\":[{\"send\":\"vb\","
                                     "\"value\":%s}]}}",
                                     id + 4, values[i]),
                         0);
        free(testd_recv_line(a, 5000));
        assert_int_equal(testd_sendf(a,
                                     "{\"jsonrpc\":\"2.0\",\"id\":%d,"
                                     "\"method\":\"select\",\"params\":"
                                     "{\"cases\":[{\"recv\":\"vb\"}]}}",
                                     id + 5),
                         0);
        expect_value_line(a, id + 5, "\"index\":0,", want);
        /* a batch: the answer is built as a value, not written as text */
        assert_int_equal(testd_sendf(a,
                                     "[{\"jsonrpc\":\"2.0\",\"id\":%d,"
                                     "\"method\":\"send\",\"params\":"
                                     "{\"name\":\"vb\",\"value\":%s}},"
                                     "{\"jsonrpc\":\"2.0\",\"id\":%d,"
                                     "\"method\":\"recv\",\"params\":"
                                     "{\"name\":\"vb\"}}]",
                                     id + 6, values[i], id + 7),
                         0);
        json_t *batch = testd_recv(a, 5000);
        assert_true(json_is_array(batch));
        char *got = json_dumps(
            json_object_get(testd_result(json_array_get(batch, 1)), "value"),
            JSON_COMPACT | JSON_ENCODE_ANY);
        assert_non_null(got);
        assert_string_equal(got, want);
        free(got);
        json_decref(batch);
        free(want);
    }
    testd_close(a);
    testd_close(b);
}

static void test_timeouts_and_order(void **state)
{
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D);
    json_t *ans;
    int64_t t0;
    char *line;
    (void)state;

    e2e_ok(a, 1, "make", "{\"name\":\"t\"}");
    t0 = testd_now_ms();
    e2e_expect_reason(a, 2, "recv", "{\"name\":\"t\",\"timeout_ms\":150}",
                      "timeout");
    assert_true(testd_now_ms() - t0 >= 140); /* never early */
    /* Out of order on one connection: the blocked recv (id 3) answers
     * after the ping (id 4) sent later. */
    e2e_post(a, 3, "recv", "{\"name\":\"t\"}");
    e2e_post(a, 4, "ping", NULL);
    line = testd_recv_line(a, 20000);
    assert_non_null(line);
    assert_non_null(strstr(line, "\"id\":4"));
    free(line);
    e2e_ok(b, 5, "send", "{\"name\":\"t\",\"value\":true}");
    ans = testd_wait_id(a, 3, 20000);
    assert_true(json_is_true(json_object_get(testd_result(ans), "value")));
    json_decref(ans);
    testd_close(a);
    testd_close(b);
}

/* A child process blocks in recv on its own connection, then is killed
 * with SIGKILL: the next value must reach a live receiver, never the dead
 * client.  Run twice: once after the daemon saw the death, once racing. */
static void killed_receiver(bool race)
{
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D);
    json_t *ans;
    pid_t pid;
    (void)race;

    e2e_ok(a, 1, "make", "{\"name\":\"k\"}");
    json_int_t base = e2e_stat_of(&D, "sessions");
    pid = testd_fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        testd_conn *c = testd_connect(&D);
        if (!c)
            _exit(1);
        testd_send(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\","
                      "\"params\":{\"name\":\"k\"}}");
        pause();
        _exit(0);
    }
    e2e_wait_stat(&D, "waiters", 1);
    e2e_post(b, 2, "recv", "{\"name\":\"k\"}"); /* queued behind the child */
    e2e_wait_stat(&D, "waiters", 2);
    kill(pid, SIGKILL);
    testd_reap(pid, NULL, -1);
    if (!race)
        e2e_wait_stat(&D, "sessions", base);
    e2e_ok(a, 3, "send", "{\"name\":\"k\",\"value\":\"precious\"}");
    ans = testd_wait_id(b, 2, 20000);
    assert_non_null(ans);
    assert_string_equal(
        json_string_value(json_object_get(testd_result(ans), "value")),
        "precious");
    json_decref(ans);
    e2e_ok(a, 4, "drop", "{\"name\":\"k\"}");
    e2e_wait_stat(&D, "waiters", 0);
    testd_close(a);
    testd_close(b);
}

static void test_killed_receiver(void **state)
{
    (void)state;
    killed_receiver(false);
    killed_receiver(true);
}

static void test_thousand_receivers(void **state)
{
    enum { N = 1000 };
    testd_conn **c = calloc(N, sizeof *c), *closer;
    (void)state;

    closer = testd_connect(&D);
    e2e_ok(closer, 1, "make", "{\"name\":\"many\"}");
    for (int i = 0; i < N; i++) {
        c[i] = testd_connect(&D);
        assert_non_null(c[i]);
        e2e_post(c[i], 7, "recv", "{\"name\":\"many\"}");
    }
    e2e_wait_stat(&D, "waiters", N);
    e2e_ok(closer, 2, "close", "{\"name\":\"many\"}");
    for (int i = 0; i < N; i++) {
        json_t *a = testd_wait_id(c[i], 7, 30000);
        assert_non_null(a);
        assert_true(json_is_false(json_object_get(testd_result(a), "ok")));
        json_decref(a);
        testd_close(c[i]);
    }
    e2e_wait_stat(&D, "sessions", 2); /* closer + the stats connection */
    e2e_wait_stat(&D, "waiters", 0);
    free(c);
    testd_close(closer);
}

/* SIGTERM drains: every waiting request is answered with reason
 * cancelled, then the daemon exits 0. */
static void test_sigterm_drain(void **state)
{
    testd_conn *a = testd_connect(&D);
    json_t *ans;
    (void)state;

    e2e_ok(a, 1, "make", "{\"name\":\"dr\"}");
    e2e_ok(a, 2, "wg.add", "{\"name\":\"drg\",\"delta\":1}");
    e2e_post(a, 3, "recv", "{\"name\":\"dr\"}");
    e2e_post(a, 4, "wg.wait", "{\"name\":\"drg\"}");
    e2e_wait_stat(&D, "waiters", 2);
    assert_int_equal(testd_stop(&D), 0); /* SIGTERM, exit status 0 */
    for (int id = 3; id <= 4; id++) {
        ans = testd_wait_id(a, id, 10000);
        assert_non_null(ans);
        assert_string_equal(testd_reason(ans), "cancelled");
        json_decref(ans);
    }
    testd_close(a);
    assert_int_equal(testd_start(&D, NULL), 0); /* for the teardown */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        E2E_TEST(test_basics_and_reasons), E2E_TEST(test_unbuffered_handoff),
        E2E_TEST(test_buffered_fifo),      E2E_TEST(test_close_wakes_others),
        E2E_TEST(test_drop_wakes_waiters), E2E_TEST(test_select),
        E2E_TEST(test_select_two_paths),   E2E_TEST(test_values_exact),
        E2E_TEST(test_timeouts_and_order), E2E_TEST(test_killed_receiver),
        E2E_TEST(test_thousand_receivers), E2E_TEST(test_sigterm_drain),
    };
    int rc = cmocka_run_group_tests_name("daemon_chan", tests, NULL, NULL);
    json_decref(e2e_held);
    return rc;
}
