/*
 * e2e.h - the request helpers the end-to-end suites share: call a method
 * with params given as JSON text, assert success or a reason, post without
 * waiting, read and wait for a runtime.stats figure.  Used by
 * tests/e2e/test_daemon_{chan,lock,sync}.c.
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
    e2e_held = e2e_call(c, id, method, params);
    if (!testd_result(e2e_held))
        fail_msg("%s %s: %s", method, params ? params : "",
                 json_dumps(e2e_held, JSON_COMPACT));
    return testd_result(e2e_held);
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
static inline json_int_t e2e_stat_of(testd *d, const char *key)
{
    json_t *s = testd_stats(d);
    json_int_t v;

    assert_non_null(s);
    v = json_integer_value(json_object_get(s, key));
    json_decref(s);
    return v;
}

/* Waits (up to 20 s) until runtime.stats' key equals want. */
static inline void e2e_wait_stat(testd *d, const char *key, json_int_t want)
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
