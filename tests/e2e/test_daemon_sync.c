/*
 * test_daemon_sync.c - end-to-end: WaitGroup, Once, Pool, Map, atomics,
 * timers, go and the runtime.* methods against a real daemon.
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
#include <sys/wait.h>
#include <unistd.h>

#include "../common/e2e.h"
#include "../common/testd.h"

static void test_waitgroup(void **state)
{
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D);
    json_t *ans;
    (void)state;

    e2e_ok(a, 1, "wg.wait", "{\"name\":\"g\"}"); /* zero: returns at once */
    assert_int_equal(
        e2e_ok_int(a, 2, "wg.add", "{\"name\":\"g\",\"delta\":2}", "count"), 2);
    e2e_expect_reason(a, 3, "wg.wait", "{\"name\":\"g\",\"timeout_ms\":0}",
                      "timeout");
    e2e_post(b, 4, "wg.wait", "{\"name\":\"g\"}");
    assert_null(testd_wait_id(b, 4, 200));
    assert_int_equal(e2e_ok_int(a, 5, "wg.done", "{\"name\":\"g\"}", "count"),
                     1);
    assert_null(testd_wait_id(b, 4, 100));
    assert_int_equal(e2e_ok_int(a, 6, "wg.done", "{\"name\":\"g\"}", "count"),
                     0);
    ans = testd_wait_id(b, 4, 20000);
    assert_non_null(testd_result(ans));
    json_decref(ans);
    {
        json_t *e = e2e_call(a, 7, "wg.done", "{\"name\":\"g\"}");
        assert_string_equal(testd_reason(e), "negative_counter");
        assert_string_equal(testd_message(e),
                            "sync: negative WaitGroup counter");
        json_decref(e);
    }
    testd_close(a);
    testd_close(b);
}

static void test_once(void **state)
{
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D),
               *c = testd_connect(&D);
    json_t *ans;
    pid_t pid;
    (void)state;

    assert_true(e2e_ok_bool(a, 1, "once.do", "{\"name\":\"init\"}", "run"));
    e2e_expect_reason(b, 2, "once.do", "{\"name\":\"init\",\"timeout_ms\":0}",
                      "timeout");
    e2e_post(b, 3, "once.do", "{\"name\":\"init\"}");
    assert_null(testd_wait_id(b, 3, 200));
    e2e_expect_reason(b, 4, "once.done", "{\"name\":\"init\"}", "misuse");
    e2e_ok(a, 5, "once.done", "{\"name\":\"init\"}");
    ans = testd_wait_id(b, 3, 20000);
    assert_true(json_is_false(json_object_get(testd_result(ans), "run")));
    json_decref(ans);
    assert_false(e2e_ok_bool(c, 6, "once.do", "{\"name\":\"init\"}", "run"));
    e2e_expect_reason(a, 7, "once.done", "{\"name\":\"init\"}", "misuse");

    /* The runner dies before once.done: the next waiter runs it. */
    pid = testd_fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        testd_conn *k = testd_connect(&D);
        json_t *x = k ? testd_call(k, 1, "once.do",
                                   json_pack("{s:s}", "name", "o2"), 10000)
                      : NULL;
        if (!x || !json_is_true(json_object_get(testd_result(x), "run")))
            _exit(1);
        pause();
        _exit(0);
    }
    /* Wait (without calling once.do ourselves) until the child runs it. */
    for (int64_t t0 = testd_now_ms();;) {
        json_t *o = json_array_get(
            json_object_get(e2e_ok(c, 8, "list", "{\"prefix\":\"o2\"}"),
                            "objects"),
            0);
        const char *st = json_string_value(json_object_get(o, "state"));
        if (st && strcmp(st, "running") == 0)
            break;
        assert_true(testd_now_ms() - t0 < 20000);
        testd_sleep_ms(5);
    }
    e2e_post(b, 9, "once.do", "{\"name\":\"o2\"}");
    e2e_wait_stat(&D, "waiters", 1);
    kill(pid, SIGKILL);
    testd_reap(pid, NULL, -1);
    ans = testd_wait_id(b, 9, 20000);
    if (!json_is_true(json_object_get(testd_result(ans), "run")))
        fail_msg("once after the runner died: %s",
                 ans ? json_dumps(ans, JSON_COMPACT) : "no answer");
    json_decref(ans);
    e2e_ok(b, 10, "once.done", "{\"name\":\"o2\"}");
    testd_close(a);
    testd_close(b);
    testd_close(c);
}

/* Honest onces (Go 1.21's sync.OnceValue): the value once.done stores
 * goes to every waiter and every later caller; run:true carries none. */
static void test_once_value(void **state)
{
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D),
               *c = testd_connect(&D);
    json_t *ans, *r;
    (void)state;

    r = e2e_ok(a, 1, "once.do", "{\"name\":\"mig\"}");
    assert_true(json_is_true(json_object_get(r, "run")));
    assert_null(json_object_get(r, "value"));
    e2e_post(b, 2, "once.do", "{\"name\":\"mig\"}");
    e2e_post(c, 3, "once.do", "{\"name\":\"mig\"}");
    e2e_wait_stat(&D, "waiters", 2);
    e2e_ok(a, 4, "once.done",
           "{\"name\":\"mig\",\"value\":{\"status\":9,\"log\":[\"x\"]}}");
    for (int i = 0; i < 2; i++) {
        testd_conn *w = i ? c : b;
        ans = testd_wait_id(w, 2 + i, 20000);
        r = testd_result(ans);
        assert_true(json_is_false(json_object_get(r, "run")));
        assert_int_equal(json_integer_value(json_object_get(
                             json_object_get(r, "value"), "status")),
                         9);
        json_decref(ans);
    }
    /* A later caller gets the same value; a second once.done cannot
     * change it. */
    e2e_expect_reason(b, 5, "once.done", "{\"name\":\"mig\",\"value\":1}",
                      "misuse");
    r = e2e_ok(a, 6, "once.do", "{\"name\":\"mig\"}");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(r, "value"), "status")),
                     9);

    /* No value: null, as Go's zero value. */
    assert_true(e2e_ok_bool(a, 7, "once.do", "{\"name\":\"plain\"}", "run"));
    e2e_ok(a, 8, "once.done", "{\"name\":\"plain\"}");
    r = e2e_ok(b, 9, "once.do", "{\"name\":\"plain\"}");
    assert_true(json_is_false(json_object_get(r, "run")));
    assert_true(json_is_null(json_object_get(r, "value")));

    /* A value over max_value is refused and leaves the once running. */
    assert_true(e2e_ok_bool(a, 10, "once.do", "{\"name\":\"big\"}", "run"));
    {
        size_t n = 1024 * 1024; /* with its quotes, max_value + 2 */
        char *big = malloc(n + 1);
        assert_non_null(big);
        memset(big, 'x', n);
        big[n] = 0;
        ans = e2e_callj(a, 11, "once.done",
                        json_pack("{s:s,s:s}", "name", "big", "value", big));
        free(big);
        e2e_check_reason(ans, "too_large", NULL);
        json_decref(ans);
    }
    r = e2e_ok(c, 12, "list", "{\"prefix\":\"big\"}");
    assert_string_equal(
        json_string_value(json_object_get(
            json_array_get(json_object_get(r, "objects"), 0), "state")),
        "running");
    e2e_ok(a, 13, "once.done", "{\"name\":\"big\",\"value\":\"ok\"}");
    r = e2e_ok(c, 14, "once.do", "{\"name\":\"big\"}");
    assert_string_equal(json_string_value(json_object_get(r, "value")), "ok");

    /* The runner's session ends without once.done: reopened, and the next
     * runner's value is the one kept. */
    assert_true(e2e_ok_bool(a, 15, "once.do", "{\"name\":\"re\"}", "run"));
    e2e_post(b, 16, "once.do", "{\"name\":\"re\"}");
    e2e_wait_stat(&D, "waiters", 1);
    testd_close(a);
    ans = testd_wait_id(b, 16, 20000);
    assert_true(json_is_true(json_object_get(testd_result(ans), "run")));
    json_decref(ans);
    e2e_ok(b, 17, "once.done", "{\"name\":\"re\",\"value\":4}");
    r = e2e_ok(c, 18, "once.do", "{\"name\":\"re\"}");
    assert_int_equal(json_integer_value(json_object_get(r, "value")), 4);
    testd_close(b);
    testd_close(c);
}

static void test_pool(void **state)
{
    testd_conn *a = testd_connect(&D);
    json_t *r;
    (void)state;

    r = e2e_ok(a, 1, "pool.get", "{\"name\":\"p\"}");
    assert_true(json_is_false(json_object_get(r, "ok")));
    e2e_ok(a, 2, "pool.put", "{\"name\":\"p\",\"value\":{\"buf\":[1,2,3]}}");
    r = e2e_ok(a, 3, "pool.get", "{\"name\":\"p\"}");
    /* A pool may drop what it holds (as Go's); if it gave a value back,
     * it is the one put. */
    if (json_is_true(json_object_get(r, "ok")))
        assert_int_equal(json_array_size(json_object_get(
                             json_object_get(r, "value"), "buf")),
                         3);
    testd_close(a);
}

static void test_map(void **state)
{
    testd_conn *a = testd_connect(&D);
    json_t *r;
    (void)state;

    r = e2e_ok(a, 1, "map.load", "{\"name\":\"mp\",\"key\":\"k\"}");
    assert_true(json_is_false(json_object_get(r, "ok")));
    e2e_ok(a, 2, "map.store",
           "{\"name\":\"mp\",\"key\":\"k\",\"value\":{\"a\":1}}");
    r = e2e_ok(a, 3, "map.load", "{\"name\":\"mp\",\"key\":\"k\"}");
    assert_true(json_is_true(json_object_get(r, "ok")));
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(r, "value"), "a")),
        1);
    r = e2e_ok(a, 4, "map.load_or_store",
               "{\"name\":\"mp\",\"key\":\"k\","
               "\"value\":2}");
    assert_true(json_is_true(json_object_get(r, "loaded")));
    r = e2e_ok(a, 5, "map.load_or_store",
               "{\"name\":\"mp\",\"key\":\"n\","
               "\"value\":2}");
    assert_true(json_is_false(json_object_get(r, "loaded")));
    assert_int_equal(json_integer_value(json_object_get(r, "value")), 2);
    /* compare-and-swap uses JSON equality */
    assert_true(e2e_ok_bool(a, 6, "map.compare_and_swap",
                            "{\"name\":\"mp\",\"key\":\"k\",\"old\":{\"a\":1},"
                            "\"new\":\"b\"}",
                            "swapped"));
    assert_false(e2e_ok_bool(a, 7, "map.compare_and_swap",
                             "{\"name\":\"mp\",\"key\":\"k\",\"old\":{\"a\":1},"
                             "\"new\":\"c\"}",
                             "swapped"));
    r = e2e_ok(a, 8, "map.swap", "{\"name\":\"mp\",\"key\":\"k\",\"value\":3}");
    assert_true(json_is_true(json_object_get(r, "loaded")));
    assert_string_equal(json_string_value(json_object_get(r, "previous")), "b");
    assert_int_equal(e2e_ok_int(a, 9, "map.len", "{\"name\":\"mp\"}", "len"),
                     2);
    r = e2e_ok(a, 10, "map.range", "{\"name\":\"mp\"}");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(r, "entries"), "k")),
        3);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(r, "entries"), "n")),
        2);
    assert_false(e2e_ok_bool(a, 11, "map.compare_and_delete",
                             "{\"name\":\"mp\",\"key\":\"k\",\"old\":4}",
                             "deleted"));
    assert_true(e2e_ok_bool(a, 12, "map.compare_and_delete",
                            "{\"name\":\"mp\",\"key\":\"k\",\"old\":3}",
                            "deleted"));
    r = e2e_ok(a, 13, "map.load_and_delete", "{\"name\":\"mp\",\"key\":\"n\"}");
    assert_true(json_is_true(json_object_get(r, "loaded")));
    e2e_ok(a, 14, "map.store",
           "{\"name\":\"mp\",\"key\":\"z\",\"value\":null}");
    e2e_ok(a, 15, "map.delete", "{\"name\":\"mp\",\"key\":\"nothing\"}");
    e2e_ok(a, 16, "map.clear", "{\"name\":\"mp\"}");
    assert_int_equal(e2e_ok_int(a, 17, "map.len", "{\"name\":\"mp\"}", "len"),
                     0);
    /* Empty, the map left the registry (a zero value); with an entry the
     * name is a map's. */
    e2e_ok(a, 19, "map.store", "{\"name\":\"mp\",\"key\":\"z\",\"value\":1}");
    e2e_expect_reason(a, 18, "atomic.load", "{\"name\":\"mp\"}", "wrong_type");
    testd_close(a);
}

static void test_atomic(void **state)
{
    testd_conn *a = testd_connect(&D);
    (void)state;

    assert_int_equal(
        e2e_ok_int(a, 1, "atomic.load", "{\"name\":\"n\"}", "value"), 0);
    assert_int_equal(e2e_ok_int(a, 2, "atomic.add",
                                "{\"name\":\"n\","
                                "\"delta\":5}",
                                "value"),
                     5);
    assert_int_equal(e2e_ok_int(a, 3, "atomic.add",
                                "{\"name\":\"n\","
                                "\"delta\":-7}",
                                "value"),
                     -2);
    assert_int_equal(e2e_ok_int(a, 4, "atomic.swap",
                                "{\"name\":\"n\","
                                "\"value\":10}",
                                "old"),
                     -2);
    assert_false(e2e_ok_bool(a, 5, "atomic.compare_and_swap",
                             "{\"name\":\"n\",\"old\":9,\"new\":1}",
                             "swapped"));
    assert_true(e2e_ok_bool(a, 6, "atomic.compare_and_swap",
                            "{\"name\":\"n\",\"old\":10,\"new\":1}",
                            "swapped"));
    e2e_ok(a, 7, "atomic.store",
           "{\"name\":\"n\",\"value\":9223372036854775807}");
    /* wraps like Go's int64 */
    assert_true(e2e_ok_int(a, 8, "atomic.add", "{\"name\":\"n\",\"delta\":1}",
                           "value") == INT64_MIN);
    testd_close(a);
}

static void test_timers(void **state)
{
    testd_conn *a = testd_connect(&D);
    json_t *r;
    int64_t t0;
    (void)state;

    t0 = testd_now_ms();
    e2e_ok(a, 1, "timer.after", "{\"name\":\"t1\",\"ms\":100}");
    e2e_expect_reason(a, 2, "timer.after", "{\"name\":\"t1\",\"ms\":100}",
                      "exists");
    r = e2e_ok(a, 3, "recv", "{\"name\":\"t1\"}");
    assert_true(testd_now_ms() - t0 >= 90);
    assert_true(json_integer_value(json_object_get(r, "value")) > 0);
    /* Stopped before it fires: nothing arrives. */
    e2e_ok(a, 4, "timer.after", "{\"name\":\"t2\",\"ms\":200}");
    assert_true(
        e2e_ok_bool(a, 5, "timer.stop", "{\"name\":\"t2\"}", "stopped"));
    e2e_expect_reason(a, 6, "recv", "{\"name\":\"t2\",\"timeout_ms\":400}",
                      "timeout");
    assert_false(e2e_ok_bool(a, 7, "timer.reset", "{\"name\":\"t2\",\"ms\":10}",
                             "active"));
    e2e_ok(a, 8, "recv", "{\"name\":\"t2\",\"timeout_ms\":10000}");
    /* A ticker ticks until stopped. */
    e2e_ok(a, 9, "timer.ticker", "{\"name\":\"tk\",\"ms\":30}");
    for (int i = 0; i < 3; i++)
        e2e_ok(a, 10 + i, "recv", "{\"name\":\"tk\",\"timeout_ms\":10000}");
    e2e_ok(a, 13, "timer.stop", "{\"name\":\"tk\"}");
    e2e_expect_reason(a, 14, "recv", "{\"name\":\"tk\",\"timeout_ms\":200}",
                      "timeout");
    e2e_expect_reason(a, 15, "timer.ticker", "{\"name\":\"tz\",\"ms\":0}",
                      "misuse");
    e2e_expect_reason(a, 16, "timer.stop", "{\"name\":\"none\"}", "not_found");
    e2e_ok(a, 17, "make", "{\"name\":\"plain\"}");
    e2e_expect_reason(a, 18, "timer.stop", "{\"name\":\"plain\"}",
                      "wrong_type");
    /* afterfunc runs a request later. */
    e2e_ok(a, 19, "make", "{\"name\":\"af\",\"cap\":1}");
    r = e2e_ok(a, 20, "timer.afterfunc",
               "{\"ms\":50,\"request\":{\"method\":"
               "\"send\",\"params\":{\"name\":\"af\","
               "\"value\":\"fired\"}}}");
    assert_non_null(json_string_value(json_object_get(r, "timer")));
    r = e2e_ok(a, 21, "recv", "{\"name\":\"af\",\"timeout_ms\":10000}");
    assert_string_equal(json_string_value(json_object_get(r, "value")),
                        "fired");
    /* ...unless stopped. */
    r = e2e_ok(a, 22, "timer.afterfunc",
               "{\"ms\":200,\"request\":{\"method\":"
               "\"close\",\"params\":{\"name\":"
               "\"af\"}}}");
    {
        char p[128];
        snprintf(p, sizeof p, "{\"name\":\"%s\"}",
                 json_string_value(json_object_get(r, "timer")));
        assert_true(e2e_ok_bool(a, 23, "timer.stop", p, "stopped"));
    }
    /* A later timer's request runs after the stopped one's would have:
     * the channel is still open when it sends (no sleep, no guess). */
    e2e_ok(a, 24, "timer.afterfunc",
           "{\"ms\":400,\"request\":{\"method\":"
           "\"send\",\"params\":{\"name\":\"af\","
           "\"value\":\"later\"}}}");
    r = e2e_ok(a, 26, "recv", "{\"name\":\"af\",\"timeout_ms\":10000}");
    assert_string_equal(json_string_value(json_object_get(r, "value")),
                        "later"); /* not closed */
    e2e_expect_reason(a, 25, "timer.afterfunc",
                      "{\"ms\":1,\"request\":"
                      "{\"method\":\"fly\"}}",
                      "invalid");
    testd_close(a);
}

static void test_go_and_runtime(void **state)
{
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D);
    json_t *r;
    (void)state;

    e2e_ok(a, 1, "make", "{\"name\":\"gq\"}");
    /* go: the send runs in its own server goroutine; a answers at once
     * although nobody receives yet, and the send completes after a has
     * gone. */
    r = e2e_ok(a, 2, "go",
               "{\"request\":{\"method\":\"send\",\"params\":"
               "{\"name\":\"gq\",\"value\":\"bg\"}}}");
    assert_true(json_integer_value(json_object_get(r, "goroutine")) > 0);
    testd_close(a);
    r = e2e_ok(b, 3, "recv", "{\"name\":\"gq\",\"timeout_ms\":10000}");
    assert_string_equal(json_string_value(json_object_get(r, "value")), "bg");
    e2e_expect_reason(b, 4, "go", "{\"request\":{\"method\":\"recv\"}}",
                      "invalid");
    r = e2e_ok(b, 5, "runtime.stats", NULL);
    static const char *const keys[] = {
        "goroutines",
        "gomaxprocs",
        "numcpu",
        "threads",
        "sessions",
        "objects",
        "waiters",
        "held_locks",
        "open_fds",
        "rss_bytes",
        "output_buffer_bytes",
        "requests",
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        assert_true(json_is_integer(json_object_get(r, keys[i])));
    assert_true(json_integer_value(json_object_get(r, "numcpu")) >= 1);
    assert_true(json_integer_value(json_object_get(r, "rss_bytes")) > 0);
    json_int_t prev =
        e2e_ok_int(b, 6, "runtime.gomaxprocs", "{\"n\":1}", "previous");
    assert_true(prev >= 1);
    assert_int_equal(e2e_ok_int(b, 7, "runtime.gomaxprocs", NULL, "previous"),
                     1);
    char p[32];
    snprintf(p, sizeof p, "{\"n\":%lld}", (long long)prev);
    e2e_ok(b, 8, "runtime.gomaxprocs", p);
    r = e2e_ok(b, 9, "runtime.dump", NULL);
    assert_true(json_is_array(json_object_get(r, "objects")));
    testd_close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        E2E_TEST(test_waitgroup),  E2E_TEST(test_once),
        E2E_TEST(test_once_value), E2E_TEST(test_pool),
        E2E_TEST(test_map),        E2E_TEST(test_atomic),
        E2E_TEST(test_timers),     E2E_TEST(test_go_and_runtime),
    };
    int rc = cmocka_run_group_tests_name("daemon_sync", tests, NULL, NULL);
    json_decref(e2e_held);
    return rc;
}
