/*
 * test_limits.c - end-to-end: limits and liveness (issue 16).  Lock
 * safety: drop of a held lock or a running once is misuse, detached holds
 * need a lease, cond.wait keeps the hold's lease.  Liveness: heartbeat,
 * lease renewal.  Memory and counts: max_memory, max_goroutines,
 * max_timers, min_ticker_ms.  Paging (list, map.range) and reclaim of
 * zero-state objects.
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

/* Returns holders[0].key of lock name as list shows it (-1: no holder). */
static json_int_t holder_field(testd_conn *c, const char *name, const char *key)
{
    char p[128];
    json_t *objs, *h;

    snprintf(p, sizeof p, "{\"prefix\":\"%s\"}", name);
    objs = json_object_get(e2e_ok(c, 0, "list", p), "objects");
    for (size_t i = 0; i < json_array_size(objs); i++) {
        json_t *o = json_array_get(objs, i);
        if (strcmp(json_string_value(json_object_get(o, "name")), name))
            continue;
        h = json_array_get(json_object_get(o, "holders"), 0);
        return h ? json_integer_value(json_object_get(h, key)) : -1;
    }
    return -1;
}

/* ------------------------------------------------------------------ */
/* Lock safety                                                        */
/* ------------------------------------------------------------------ */

static void test_drop_held(void **state)
{
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D);
    json_int_t t1, t2;
    (void)state;

    /* A held mutex stays: drop is misuse, the holder keeps it. */
    t1 = e2e_ok_int(a, 1, "mutex.lock", "{\"name\":\"m\"}", "token");
    e2e_expect_reason_msg(b, 2, "drop", "{\"name\":\"m\"}", "misuse", "held");
    e2e_expect_reason(b, 3, "mutex.lock", "{\"name\":\"m\",\"timeout_ms\":0}",
                      "timeout");
    e2e_ok(a, 4, "mutex.unlock", "{\"name\":\"m\"}");
    e2e_ok(b, 5, "drop", "{\"name\":\"m\"}");
    /* Made again, its tokens still go on from the server-wide counter. */
    t2 = e2e_ok_int(b, 6, "mutex.lock", "{\"name\":\"m\"}", "token");
    assert_true(t2 > t1);
    e2e_ok(b, 7, "mutex.unlock", "{\"name\":\"m\"}");

    /* A read-held rwmutex, a write-held one. */
    e2e_ok(a, 8, "rwmutex.rlock", "{\"name\":\"rw\"}");
    e2e_expect_reason(b, 9, "drop", "{\"name\":\"rw\"}", "misuse");
    e2e_ok(a, 10, "rwmutex.runlock", "{\"name\":\"rw\"}");
    e2e_ok(a, 11, "rwmutex.lock", "{\"name\":\"rw\"}");
    e2e_expect_reason(b, 12, "drop", "{\"name\":\"rw\"}", "misuse");
    e2e_ok(a, 13, "rwmutex.unlock", "{\"name\":\"rw\"}");
    e2e_ok(b, 14, "drop", "{\"name\":\"rw\"}");

    /* A once in progress; once done it may go. */
    assert_true(e2e_ok_bool(a, 15, "once.do", "{\"name\":\"o\"}", "run"));
    e2e_expect_reason(b, 16, "drop", "{\"name\":\"o\"}", "misuse");
    e2e_ok(a, 17, "once.done", "{\"name\":\"o\"}");
    e2e_ok(b, 18, "drop", "{\"name\":\"o\"}");
    testd_close(a);
    testd_close(b);
}

static void test_detached_needs_lease(void **state)
{
    testd_conn *a = testd_connect(&D);
    json_t *ans;
    static const char *const bad[][2] = {
        {"go", "{\"request\":{\"method\":\"mutex.lock\","
               "\"params\":{\"name\":\"g\"}}}"},
        {"go", "{\"request\":{\"method\":\"rwmutex.rlock\","
               "\"params\":{\"name\":\"g2\"}}}"},
        {"go", "{\"request\":{\"method\":\"once.do\","
               "\"params\":{\"name\":\"g3\"}}}"},
        {"timer.afterfunc", "{\"ms\":10,\"request\":{\"method\":"
                            "\"rwmutex.lock\",\"params\":{\"name\":\"g\"}}}"},
        /* nested: checked when the outer one is made */
        {"go", "{\"request\":{\"method\":\"go\",\"params\":{\"request\":"
               "{\"method\":\"mutex.lock\",\"params\":{\"name\":\"g\"}}}}}"},
        {"timer.afterfunc", "{\"ms\":10,\"request\":{\"method\":\"go\","
                            "\"params\":{\"request\":{\"method\":"
                            "\"once.do\",\"params\":{\"name\":\"g\"}}}}}"},
    };
    (void)state;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ans = e2e_call(a, (int64_t)i + 1, bad[i][0], bad[i][1]);
        if (testd_code(ans) != -32602 ||
            !strstr(testd_message(ans), "lease_ms"))
            fail_msg("%s %s: %s", bad[i][0], bad[i][1],
                     json_dumps(ans, JSON_COMPACT));
        json_decref(ans);
    }
    /* Nothing was taken. */
    assert_int_equal(e2e_stat_of(&D, "held_locks"), 0);
    /* With a lease a detached lock is taken, and ends with its lease. */
    e2e_ok(a, 20, "go",
           "{\"request\":{\"method\":\"mutex.lock\","
           "\"params\":{\"name\":\"g\",\"lease_ms\":300}}}");
    e2e_wait_stat(&D, "held_locks", 1);
    ans = e2e_call(a, 21, "mutex.lock", "{\"name\":\"g\"}"); /* waits */
    assert_true(json_is_true(json_object_get(testd_result(ans), "owner_dead")));
    json_decref(ans);
    e2e_ok(a, 22, "mutex.unlock", "{\"name\":\"g\"}");
    /* A detached once.do with a lease: the once reopens when it ends. */
    e2e_ok(a, 23, "go",
           "{\"request\":{\"method\":\"once.do\","
           "\"params\":{\"name\":\"g3\",\"lease_ms\":300}}}");
    assert_true(e2e_ok_bool(a, 24, "once.do", "{\"name\":\"g3\"}", "run"));
    e2e_ok(a, 25, "once.done", "{\"name\":\"g3\"}");
    testd_close(a);
}

static void test_cond_keeps_lease(void **state)
{
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D);
    json_t *ans;
    (void)state;

    e2e_ok(a, 1, "mutex.lock", "{\"name\":\"cm\",\"lease_ms\":60000}");
    assert_int_equal(holder_field(b, "cm", "lease_ms"), 60000);
    e2e_post(a, 2, "cond.wait", "{\"name\":\"cv\",\"mutex\":\"cm\"}");
    e2e_wait_stat(&D, "waiters", 1);
    e2e_ok(b, 3, "cond.signal", "{\"name\":\"cv\"}");
    ans = testd_wait_id(a, 2, 20000);
    assert_non_null(testd_result(ans));
    json_decref(ans);
    /* Re-acquired with the same lease, so it outlives a's session. */
    assert_int_equal(holder_field(b, "cm", "lease_ms"), 60000);
    testd_close(a);
    e2e_wait_stat(&D, "sessions", 2);
    assert_int_equal(e2e_stat_of(&D, "held_locks"), 1);
    e2e_expect_reason(b, 4, "mutex.lock", "{\"name\":\"cm\",\"timeout_ms\":50}",
                      "timeout");
    testd_close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_drop_held, e2e_setup,
                                        e2e_teardown),
        cmocka_unit_test_setup_teardown(test_detached_needs_lease, e2e_setup,
                                        e2e_teardown),
        cmocka_unit_test_setup_teardown(test_cond_keeps_lease, e2e_setup,
                                        e2e_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
