/*
 * e2e.h - what the end-to-end suites share on top of testd.h: a daemon
 * per test with fixtures that leave nothing behind (e2e_setup,
 * e2e_teardown), and the call helpers: call a method with params given as
 * JSON text or as a json_t, assert success or a reason, post without
 * waiting, read and wait for a runtime.stats figure.  Used by every
 * tests/e2e/test_*.c that speaks the protocol itself (test_client.c goes
 * through libchand).
 *
 * Header-only (static inline) and to be included after <cmocka.h>: the
 * bench binaries link the .c files of tests/common without cmocka.
 */
#ifndef CHAND_E2E_H
#define CHAND_E2E_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "testd.h"

/* The running test's daemon, when the suite uses e2e_setup. */
static testd D __attribute__((unused));

/* cmocka setup: starts D for one test.  Returns 0 or -1. */
static int __attribute__((unused)) e2e_setup(void **state)
{
    (void)state;
    return testd_start(&D, NULL);
}

/* cmocka teardown, whether the test passed or failed: closes the
 * connections and kills the children it left, then stops D (which must
 * exit cleanly).  Returns 0 or -1. */
static int __attribute__((unused)) e2e_teardown(void **state)
{
    (void)state;
    testd_close_all();
    testd_kill_children(false);
    return testd_stop(&D) == 0 ? 0 : -1;
}

/* A cmocka test with its own daemon: e2e_setup and e2e_teardown. */
#define E2E_TEST(f) cmocka_unit_test_setup_teardown(f, e2e_setup, e2e_teardown)

/* Calls method with params (stolen; NULL: none) under id (0: the next of
 * a counter) and returns the answer (new), failing the test when none
 * comes. */
static inline json_t *e2e_callj(testd_conn *c, int64_t id, const char *method,
                                json_t *params)
{
    static int64_t next_id = 1000000;
    json_t *a = testd_call(c, id ? id : next_id++, method, params, 30000);

    if (!a)
        fail_msg("%s: no answer", method);
    return a;
}

/* e2e_callj that also asserts success; returns the answer (new). */
static inline json_t *e2e_okj(testd_conn *c, int64_t id, const char *method,
                              json_t *params)
{
    json_t *a = e2e_callj(c, id, method, params);

    if (!testd_result(a))
        fail_msg("%s: %s", method, json_dumps(a, JSON_COMPACT));
    return a;
}

/* e2e_okj for a call whose result does not matter. */
static inline void e2e_okj_free(testd_conn *c, int64_t id, const char *method,
                                json_t *params)
{
    json_decref(e2e_okj(c, id, method, params));
}

/* Calls method with params as JSON text (NULL: none); returns the answer
 * (the caller's to free). */
static inline json_t *e2e_call(testd_conn *c, int64_t id, const char *method,
                               const char *params)
{
    json_t *p = params ? json_loads(params, 0, NULL) : NULL;
    json_t *a;

    if (params && !p)
        fail_msg("bad params in test: %s", params);
    a = testd_call(c, id, method, p, 20000);
    assert_non_null(a);
    return a;
}

/* The answer behind the last e2e_ok's result (one per test file). */
static json_t *e2e_held;

/* Calls and asserts success; returns the result, valid until the next
 * e2e_ok. */
static inline json_t *e2e_ok(testd_conn *c, int64_t id, const char *method,
                             const char *params)
{
    json_decref(e2e_held);
    /* Cleared first: a failing e2e_call longjmps out, and the next test's
     * e2e_ok must not free this answer again (a double free that aborted
     * the rest of the suite). */
    e2e_held = NULL;
    e2e_held = e2e_call(c, id, method, params);
    if (!testd_result(e2e_held))
        fail_msg("%s %s: %s", method, params ? params : "",
                 json_dumps(e2e_held, JSON_COMPACT));
    return testd_result(e2e_held);
}

/* e2e_ok's result[key] as an integer (0 when absent or key is NULL). */
static inline json_int_t e2e_ok_int(testd_conn *c, int64_t id,
                                    const char *method, const char *params,
                                    const char *key)
{
    json_t *r = e2e_ok(c, id, method, params);
    return key ? json_integer_value(json_object_get(r, key)) : 0;
}

/* True when e2e_ok's result[key] is true. */
static inline bool e2e_ok_bool(testd_conn *c, int64_t id, const char *method,
                               const char *params, const char *key)
{
    /* json_is_true evaluates its argument twice: call once. */
    json_t *v = json_object_get(e2e_ok(c, id, method, params), key);
    return json_is_true(v);
}

/* Asserts that answer a (NULL: none came) is an error with that reason
 * and, when msg_part is not NULL, a message that contains it. */
static inline void e2e_check_reason(json_t *a, const char *reason,
                                    const char *msg_part)
{
    if (!a || !testd_reason(a) || strcmp(testd_reason(a), reason) != 0 ||
        (msg_part && !strstr(testd_message(a), msg_part)))
        fail_msg("expected %s, got %s", reason,
                 a ? json_dumps(a, JSON_COMPACT) : "no answer");
}

/* Calls and asserts the error reason and, when msg_part is not NULL, that
 * the message contains it. */
static inline void e2e_expect_reason_msg(testd_conn *c, int64_t id,
                                         const char *method, const char *params,
                                         const char *reason,
                                         const char *msg_part)
{
    json_t *a = e2e_call(c, id, method, params);

    if (!testd_reason(a) || strcmp(testd_reason(a), reason) != 0 ||
        (msg_part && !strstr(testd_message(a), msg_part)))
        fail_msg("%s %s: expected %s, got %s", method, params, reason,
                 json_dumps(a, JSON_COMPACT));
    json_decref(a);
}

static inline void e2e_expect_reason(testd_conn *c, int64_t id,
                                     const char *method, const char *params,
                                     const char *reason)
{
    e2e_expect_reason_msg(c, id, method, params, reason, NULL);
}

/* Sends a request without waiting for its answer. */
static inline void e2e_post(testd_conn *c, int64_t id, const char *method,
                            const char *params)
{
    assert_int_equal(testd_sendf(c,
                                 "{\"jsonrpc\":\"2.0\",\"id\":%lld,"
                                 "\"method\":\"%s\",\"params\":%s}",
                                 (long long)id, method, params ? params : "{}"),
                     0);
}

/* Returns runtime.stats' key. */
static inline json_int_t e2e_stat_of(const testd *d, const char *key)
{
    json_t *s = testd_stats(d);
    json_int_t v;

    assert_non_null(s);
    v = json_integer_value(json_object_get(s, key));
    json_decref(s);
    return v;
}

/* Waits (up to 20 s) until runtime.stats' key equals want. */
static inline void e2e_wait_stat(const testd *d, const char *key,
                                 json_int_t want)
{
    int64_t t0 = testd_now_ms();

    while (e2e_stat_of(d, key) != want) {
        if (testd_now_ms() - t0 > 20000)
            fail_msg("stats %s stayed %lld, want %lld", key,
                     (long long)e2e_stat_of(d, key), (long long)want);
        testd_sleep_ms(5);
    }
}

#endif /* CHAND_E2E_H */
