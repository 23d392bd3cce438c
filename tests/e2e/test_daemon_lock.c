/*
 * test_daemon_lock.c - end-to-end: mutex, rwmutex and cond over the wire:
 * fencing tokens, unlock errors in Go's words, hand-off to waiters, a
 * killed holder (owner_dead), leases outliving their session, deadlock
 * between sessions, readers/writer, cond wait/signal/broadcast, and
 * runtime.dump showing holders and waiters.
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

static void test_mutex_tokens(void **state)
{
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D);
    json_t *ans;
    json_int_t t1, t2, t3;
    (void)state;

    e2e_expect_reason_msg(a, 1, "mutex.unlock", "{\"name\":\"m\"}",
                          "not_locked", "sync: unlock of unlocked mutex");
    t1 = e2e_ok_int(a, 2, "mutex.lock", "{\"name\":\"m\"}", "token");
    assert_int_equal(t1, 1);
    e2e_expect_reason_msg(b, 3, "mutex.lock",
                          "{\"name\":\"m\",\"timeout_ms\":0}", "timeout", NULL);
    e2e_expect_reason_msg(b, 4, "mutex.lock",
                          "{\"name\":\"m\",\"timeout_ms\":50}", "timeout",
                          NULL);
    /* b does not hold it, and a wrong token is refused. */
    e2e_expect_reason_msg(b, 5, "mutex.unlock", "{\"name\":\"m\"}",
                          "not_locked", NULL);
    e2e_expect_reason_msg(b, 6, "mutex.unlock", "{\"name\":\"m\",\"token\":99}",
                          "not_locked", NULL);
    /* A waiter gets the lock when it is unlocked, with a larger token. */
    e2e_post(b, 7, "mutex.lock", "{\"name\":\"m\"}");
    assert_null(testd_wait_id(b, 7, 200));
    e2e_ok_int(a, 8, "mutex.unlock", "{\"name\":\"m\"}", NULL);
    ans = testd_wait_id(b, 7, 20000);
    t2 = json_integer_value(json_object_get(testd_result(ans), "token"));
    assert_true(t2 > t1);
    assert_null(json_object_get(testd_result(ans), "owner_dead"));
    json_decref(ans);
    /* Any session may unlock with the holder's token (Go allows unlock
     * from another goroutine). */
    {
        char p[64];
        snprintf(p, sizeof p, "{\"name\":\"m\",\"token\":%lld}", (long long)t2);
        e2e_ok_int(a, 9, "mutex.unlock", p, NULL);
        e2e_expect_reason_msg(b, 10, "mutex.unlock", p, "not_locked", NULL);
    }
    t3 = e2e_ok_int(a, 11, "mutex.lock", "{\"name\":\"m\"}", "token");
    assert_true(t3 > t2);
    e2e_ok_int(a, 12, "mutex.unlock", "{\"name\":\"m\"}", NULL);
    /* One namespace. */
    e2e_ok_int(a, 13, "make", "{\"name\":\"ch\"}", NULL);
    e2e_expect_reason_msg(a, 14, "mutex.lock", "{\"name\":\"ch\"}",
                          "wrong_type", NULL);
    /* (An unlocked mutex is a zero value and leaves the registry: held,
     * the name is a mutex's.) */
    e2e_ok_int(a, 16, "mutex.lock", "{\"name\":\"m\"}", "token");
    e2e_expect_reason_msg(a, 15, "recv", "{\"name\":\"m\"}", "wrong_type",
                          NULL);
    e2e_ok_int(a, 17, "mutex.unlock", "{\"name\":\"m\"}", NULL);
    testd_close(a);
    testd_close(b);
}

/* Tokens come from one server-wide counter: they increase across locks
 * and across a drop and re-creation of the same name, never repeating. */
static void test_tokens_server_wide(void **state)
{
    testd_conn *a = testd_connect(&D);
    json_int_t t1, t2, t3, t4;
    (void)state;

    t1 = e2e_ok_int(a, 1, "mutex.lock", "{\"name\":\"x\"}", "token");
    e2e_ok_int(a, 2, "mutex.unlock", "{\"name\":\"x\"}", NULL);
    t2 = e2e_ok_int(a, 3, "rwmutex.rlock", "{\"name\":\"y\"}", "token");
    assert_true(t2 > t1);
    e2e_ok_int(a, 4, "rwmutex.runlock", "{\"name\":\"y\"}", NULL);
    /* Unlocked, x left the registry (a zero value); a drop finds none. */
    e2e_expect_reason(a, 5, "drop", "{\"name\":\"x\"}", "not_found");
    t3 = e2e_ok_int(a, 6, "mutex.lock", "{\"name\":\"x\"}", "token");
    assert_true(t3 > t2);
    e2e_ok_int(a, 7, "mutex.unlock", "{\"name\":\"x\"}", NULL);
    t4 = e2e_ok_int(a, 8, "rwmutex.lock", "{\"name\":\"y\"}", "token");
    assert_true(t4 > t3);
    e2e_ok_int(a, 9, "rwmutex.unlock", "{\"name\":\"y\"}", NULL);
    testd_close(a);
}

static void test_killed_holder(void **state)
{
    testd_conn *b = testd_connect(&D);
    json_t *ans;
    pid_t pid;
    (void)state;

    pid = testd_fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        testd_conn *c = testd_connect(&D);
        json_t *a = c ? testd_call(c, 1, "mutex.lock",
                                   json_pack("{s:s}", "name", "k"), 10000)
                      : NULL;
        if (!a || !testd_result(a))
            _exit(1);
        pause();
        _exit(0);
    }
    e2e_wait_stat(&D, "held_locks", 1);
    e2e_post(b, 1, "mutex.lock", "{\"name\":\"k\"}");
    e2e_wait_stat(&D, "waiters", 1);
    kill(pid, SIGKILL);
    testd_reap(pid, NULL, -1);
    ans = testd_wait_id(b, 1, 20000);
    assert_non_null(testd_result(ans));
    assert_true(json_is_true(json_object_get(testd_result(ans), "owner_dead")));
    assert_int_equal(
        json_integer_value(json_object_get(testd_result(ans), "token")), 2);
    json_decref(ans);
    /* owner_dead is told once. */
    e2e_ok_int(b, 2, "mutex.unlock", "{\"name\":\"k\"}", NULL);
    ans = e2e_call(b, 3, "mutex.lock", "{\"name\":\"k\"}");
    assert_null(json_object_get(testd_result(ans), "owner_dead"));
    json_decref(ans);
    testd_close(b);
}

static void test_lease(void **state)
{
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D);
    json_t *ans;
    json_int_t tok;
    char p[64];
    (void)state;

    /* A lease hold survives its session... */
    tok = e2e_ok_int(a, 1, "mutex.lock", "{\"name\":\"l\",\"lease_ms\":60000}",
                     "token");
    testd_close(a);
    e2e_wait_stat(&D, "sessions", 2); /* b + the stats connection */
    e2e_expect_reason_msg(b, 2, "mutex.lock",
                          "{\"name\":\"l\",\"timeout_ms\":100}", "timeout",
                          NULL);
    /* ...until unlocked by its token, from anywhere. */
    snprintf(p, sizeof p, "{\"name\":\"l\",\"token\":%lld}", (long long)tok);
    e2e_ok_int(b, 3, "mutex.unlock", p, NULL);
    e2e_ok_int(b, 4, "mutex.lock", "{\"name\":\"l\"}", "token");
    e2e_ok_int(b, 5, "mutex.unlock", "{\"name\":\"l\"}", NULL);
    /* ...or until the lease expires: the next holder hears owner_dead. */
    a = testd_connect(&D);
    e2e_ok_int(a, 6, "mutex.lock", "{\"name\":\"l\",\"lease_ms\":200}",
               "token");
    int64_t t0 = testd_now_ms();
    ans = e2e_call(b, 7, "mutex.lock", "{\"name\":\"l\"}");
    assert_true(testd_now_ms() - t0 >= 150);
    assert_true(json_is_true(json_object_get(testd_result(ans), "owner_dead")));
    json_decref(ans);
    /* The expired holder's token no longer unlocks. */
    e2e_expect_reason_msg(a, 8, "mutex.unlock", "{\"name\":\"l\",\"token\":3}",
                          "not_locked", NULL);
    testd_close(a);
    testd_close(b);
}

static void test_deadlock(void **state)
{
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D);
    json_t *ans;
    (void)state;

    e2e_ok_int(a, 1, "mutex.lock", "{\"name\":\"x\"}", "token");
    e2e_ok_int(b, 2, "mutex.lock", "{\"name\":\"y\"}", "token");
    e2e_post(a, 3, "mutex.lock", "{\"name\":\"y\"}");
    e2e_wait_stat(&D, "waiters", 1);
    ans = e2e_call(b, 4, "mutex.lock", "{\"name\":\"x\"}");
    assert_string_equal(testd_reason(ans), "deadlock");
    assert_non_null(
        strstr(testd_message(ans), "all goroutines are asleep - deadlock!"));
    assert_int_equal(
        json_array_size(json_object_get(
            json_object_get(json_object_get(ans, "error"), "data"), "cycle")),
        2);
    json_decref(ans);
    /* The cycle is broken by b giving up y: a gets it. */
    e2e_ok_int(b, 5, "mutex.unlock", "{\"name\":\"y\"}", NULL);
    ans = testd_wait_id(a, 3, 20000);
    assert_non_null(testd_result(ans));
    json_decref(ans);
    /* Locking a mutex one already holds is a deadlock too. */
    e2e_expect_reason_msg(a, 6, "mutex.lock", "{\"name\":\"x\"}", "deadlock",
                          "deadlock");
    testd_close(a);
    testd_close(b);
}

static void test_rwmutex(void **state)
{
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D),
               *w = testd_connect(&D);
    json_t *ans;
    json_int_t r1, r2;
    (void)state;

    e2e_expect_reason_msg(a, 1, "rwmutex.runlock", "{\"name\":\"rw\"}",
                          "not_locked", "sync: RUnlock of unlocked RWMutex");
    e2e_expect_reason_msg(a, 2, "rwmutex.unlock", "{\"name\":\"rw\"}",
                          "not_locked", "sync: Unlock of unlocked RWMutex");
    r1 = e2e_ok_int(a, 3, "rwmutex.rlock", "{\"name\":\"rw\"}", "token");
    r2 = e2e_ok_int(b, 4, "rwmutex.rlock", "{\"name\":\"rw\"}", "token");
    assert_true(r2 > r1);
    e2e_expect_reason_msg(w, 5, "rwmutex.lock",
                          "{\"name\":\"rw\",\"timeout_ms\":0}", "timeout",
                          NULL);
    e2e_post(w, 6, "rwmutex.lock", "{\"name\":\"rw\"}");
    assert_null(testd_wait_id(w, 6, 200));
    e2e_ok_int(a, 7, "rwmutex.runlock", "{\"name\":\"rw\"}", NULL);
    assert_null(testd_wait_id(w, 6, 100));
    e2e_ok_int(b, 8, "rwmutex.runlock", "{\"name\":\"rw\"}", NULL);
    ans = testd_wait_id(w, 6, 20000);
    assert_true(
        json_integer_value(json_object_get(testd_result(ans), "token")) > r2);
    json_decref(ans);
    e2e_expect_reason_msg(a, 9, "rwmutex.rlock",
                          "{\"name\":\"rw\",\"timeout_ms\":0}", "timeout",
                          NULL);
    e2e_ok_int(w, 10, "rwmutex.unlock", "{\"name\":\"rw\"}", NULL);
    e2e_ok_int(a, 11, "rwmutex.rlock", "{\"name\":\"rw\"}", "token");
    testd_close(a);
    testd_close(b);
    testd_close(w);
}

static void test_cond(void **state)
{
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D),
               *c = testd_connect(&D);
    json_t *ans;
    (void)state;

    /* Waiting needs the mutex held. */
    e2e_expect_reason_msg(a, 1, "cond.wait",
                          "{\"name\":\"cv\",\"mutex\":\"cm\"}", "not_locked",
                          NULL);
    e2e_ok_int(a, 2, "mutex.lock", "{\"name\":\"cm\"}", "token");
    e2e_post(a, 3, "cond.wait", "{\"name\":\"cv\",\"mutex\":\"cm\"}");
    e2e_ok_int(c, 4, "mutex.lock", "{\"name\":\"cm\"}", "token"); /* released */
    e2e_post(c, 5, "cond.wait", "{\"name\":\"cv\",\"mutex\":\"cm\"}");
    e2e_wait_stat(&D, "waiters", 2);
    e2e_ok_int(b, 6, "mutex.lock", "{\"name\":\"cm\"}", "token");
    e2e_ok_int(b, 7, "cond.broadcast", "{\"name\":\"cv\"}", NULL);
    assert_null(testd_wait_id(a, 3, 100)); /* cm still held by b */
    e2e_ok_int(b, 8, "mutex.unlock", "{\"name\":\"cm\"}", NULL);
    /* Both wake, one after the other, each holding cm again. */
    ans = testd_wait_id(a, 3, 2000);
    if (ans) {
        assert_true(json_integer_value(
                        json_object_get(testd_result(ans), "token")) > 0);
        json_decref(ans);
        e2e_ok_int(a, 9, "mutex.unlock", "{\"name\":\"cm\"}", NULL);
        ans = testd_wait_id(c, 5, 20000);
        assert_non_null(testd_result(ans));
        json_decref(ans);
        e2e_ok_int(c, 10, "mutex.unlock", "{\"name\":\"cm\"}", NULL);
    } else {
        ans = testd_wait_id(c, 5, 20000);
        assert_non_null(testd_result(ans));
        json_decref(ans);
        e2e_ok_int(c, 10, "mutex.unlock", "{\"name\":\"cm\"}", NULL);
        ans = testd_wait_id(a, 3, 20000);
        assert_non_null(testd_result(ans));
        json_decref(ans);
        e2e_ok_int(a, 9, "mutex.unlock", "{\"name\":\"cm\"}", NULL);
    }
    /* signal wakes one; a timed-out wait holds the mutex again. */
    e2e_ok_int(a, 11, "mutex.lock", "{\"name\":\"cm\"}", "token");
    ans = e2e_call(a, 12, "cond.wait",
                   "{\"name\":\"cv\",\"mutex\":\"cm\","
                   "\"timeout_ms\":50}");
    assert_string_equal(testd_reason(ans), "timeout");
    json_decref(ans);
    e2e_ok_int(a, 13, "mutex.unlock", "{\"name\":\"cm\"}", NULL);
    e2e_ok_int(a, 14, "cond.signal", "{\"name\":\"cv\"}", NULL);
    /* A cond is bound to one mutex. */
    e2e_ok_int(a, 15, "mutex.lock", "{\"name\":\"other\"}", "token");
    e2e_expect_reason_msg(a, 16, "cond.wait",
                          "{\"name\":\"cv\",\"mutex\":\"other\"}", "misuse",
                          NULL);
    testd_close(a);
    testd_close(b);
    testd_close(c);
}

static void test_dump(void **state)
{
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D);
    json_t *ans, *objs, *o;
    size_t i;
    bool seen = false;
    (void)state;

    e2e_ok_int(a, 1, "mutex.lock", "{\"name\":\"dm\"}", "token");
    e2e_post(b, 2, "mutex.lock", "{\"name\":\"dm\"}");
    e2e_wait_stat(&D, "waiters", 1);
    /* The waiter is listed once its goroutine has started waiting. */
    for (int64_t t0 = testd_now_ms(); !seen;) {
        assert_true(testd_now_ms() - t0 < 20000);
        ans = e2e_call(a, 3, "runtime.dump", NULL);
        objs = json_object_get(testd_result(ans), "objects");
        json_array_foreach(objs, i, o)
        {
            if (strcmp(json_string_value(json_object_get(o, "name")), "dm"))
                continue;
            assert_int_equal(json_array_size(json_object_get(o, "holders")), 1);
            json_t *w = json_array_get(json_object_get(o, "waiters"), 0);
            if (!w)
                continue;
            seen = true;
            assert_string_equal(json_string_value(json_object_get(w, "reason")),
                                "sync.Mutex.Lock");
            assert_true(json_integer_value(json_object_get(w, "session")) > 0);
        }
        json_decref(ans);
        if (!seen)
            testd_sleep_ms(5);
    }
    assert_int_equal(e2e_stat_of(&D, "held_locks"), 1);
    testd_close(a);
    ans = testd_wait_id(b, 2, 20000);
    assert_true(json_is_true(json_object_get(testd_result(ans), "owner_dead")));
    json_decref(ans);
    testd_close(b);
    e2e_wait_stat(&D, "held_locks", 0);
    e2e_wait_stat(&D, "waiters", 0);
    /* A held lock cannot be dropped; it is released with its session. */
    a = testd_connect(&D);
    e2e_ok_int(a, 4, "mutex.lock", "{\"name\":\"gone\"}", "token");
    e2e_expect_reason(a, 5, "drop", "{\"name\":\"gone\"}", "misuse");
    assert_int_equal(e2e_stat_of(&D, "held_locks"), 1);
    testd_close(a);
    e2e_wait_stat(&D, "held_locks", 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        E2E_TEST(test_mutex_tokens),  E2E_TEST(test_tokens_server_wide),
        E2E_TEST(test_killed_holder), E2E_TEST(test_lease),
        E2E_TEST(test_deadlock),      E2E_TEST(test_rwmutex),
        E2E_TEST(test_cond),          E2E_TEST(test_dump),
    };
    return cmocka_run_group_tests_name("daemon_lock", tests, NULL, NULL);
}
