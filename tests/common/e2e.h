/*
 * e2e.h - what the end-to-end suites share on top of testd.h: a daemon
 * per test with fixtures that leave nothing behind (e2e_setup,
 * e2e_teardown), and the call helpers: call a method with params given as
 * JSON text or as a json_t, assert success or a reason, post without
 * waiting, read and wait for a runtime.stats figure.  Used by every
 * tests/e2e/test_*.c that speaks the protocol itself (test_client.c goes
 * through libchand).  A suite that does go through libchand (it includes
 * chand.h before this header) also gets the group fixtures for one daemon
 * per group (D), and dial, hang-up and error helpers on its connections.
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

/* The running test's daemon, when the suite uses e2e_setup; the group's,
 * when it uses e2e_client_group_setup. */
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

/* ---- libchand suites (test_client*.c) ---- */

/* Only where chand.h came first: the protocol suites never see
 * libchand's names. */
#ifdef CHAND_CLIENT_H

#include <pthread.h>
#include <signal.h>
#include <stdio.h>

/* cmocka group setup: starts D for the whole group.  Returns 0 or -1. */
static int __attribute__((unused)) e2e_client_group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    return testd_start(&D, NULL);
}

/* cmocka group teardown: stops D. */
static int __attribute__((unused)) e2e_client_group_teardown(void **state)
{
    (void)state;
    testd_stop(&D);
    return 0;
}

/* Connections made by e2e_dial, so that a test that stops early (a skip
 * or a failed assert jumps out) still closes them in its teardown. */
#define E2E_MAX_OPEN 16
static chand_conn *e2e_open[E2E_MAX_OPEN];
static pthread_mutex_t e2e_open_lock = PTHREAD_MUTEX_INITIALIZER;

/* Returns a new connection to D, failing the test when none comes. */
static inline chand_conn *e2e_dial(void)
{
    chand_conn *c = NULL;
    chand_error err;
    int rc = chand_connect("127.0.0.1", D.port, 5000, &c, &err);

    if (rc != 0)
        fprintf(stderr, "connect: %s\n", err.message);
    assert_int_equal(rc, 0);
    pthread_mutex_lock(&e2e_open_lock);
    for (int i = 0; i < E2E_MAX_OPEN; i++)
        if (!e2e_open[i]) {
            e2e_open[i] = c;
            break;
        }
    pthread_mutex_unlock(&e2e_open_lock);
    return c;
}

/* Closes a connection made by e2e_dial. */
static inline void e2e_hang_up(chand_conn *c)
{
    pthread_mutex_lock(&e2e_open_lock);
    for (int i = 0; i < E2E_MAX_OPEN; i++)
        if (e2e_open[i] == c)
            e2e_open[i] = NULL;
    pthread_mutex_unlock(&e2e_open_lock);
    chand_close_conn(c);
}

/* cmocka teardown: closes what e2e_dial opened and the test left open. */
static int __attribute__((unused)) e2e_close_all(void **state)
{
    (void)state;
    for (int i = 0; i < E2E_MAX_OPEN; i++)
        if (e2e_open[i])
            e2e_hang_up(e2e_open[i]);
    return 0;
}

/* Asserts that a call on c returned code (its rc) and, when reason is not
 * NULL, failed with that reason; says what came instead. */
static inline void e2e_expect_rc(chand_conn *c, int rc, int code,
                                 const char *reason)
{
    const chand_error *e = chand_last_error(c);

    if (rc != code)
        fprintf(stderr, "expected %s, got %d (%s: %s)\n", chand_strerror(code),
                rc, e->reason, e->message);
    assert_int_equal(rc, code);
    if (reason)
        assert_string_equal(e->reason, reason);
}

#endif /* CHAND_CLIENT_H */

#endif /* CHAND_E2E_H */
