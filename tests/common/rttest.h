/*
 * rttest.h - unit test helpers for code that runs on the runtime: run a
 * test body as the main goroutine of a fresh runtime, sleep the OS thread.
 * Shared by tests/unit/test_{chan,select,sched,sync,time,map,await}.c.
 *
 * cmocka's asserts longjmp, which must not happen on a goroutine stack, so
 * everything that runs on the runtime (the main goroutine fn included)
 * checks with check.h's CHECK_*(), which print both operands and abort.
 * cmocka's asserts stay in the test functions themselves, around
 * rttest_run().
 *
 * rttest.c is linked into every test and bench binary, and benches do not
 * link cmocka, so everything that calls cmocka lives here as static inline
 * and this header must be included after <cmocka.h>.
 */
#ifndef CHAND_RTTEST_H
#define CHAND_RTTEST_H

#include <stddef.h>
#include <stdio.h>

#include "check.h"
#include "rt.h"

/* Adds n to WaitGroup wg and starts n goroutines fn(arg), CHECKing each
 * start; a macro so that a failed check names the caller's line. */
#define RTTEST_SPAWN(wg, n, fn, arg)                                           \
    do {                                                                       \
        rt_wg_add(wg, n);                                                      \
        for (int i_ = 0; i_ < (n); i_++)                                       \
            CHECK_EQ(rt_go(fn, arg), 0);                                       \
    } while (0)

/* The deadline of every RTTEST_WAIT: generous, as it only bounds a bug. */
#define RTTEST_WAIT_NS (30LL * 1000 * 1000 * 1000)

/* Polls cond every millisecond until it holds, and fails a CHECK (naming
 * the caller's line) if it does not within RTTEST_WAIT_NS.  On a goroutine
 * it parks (rt_sleep); on any other thread it sleeps the OS thread. */
#define RTTEST_WAIT(cond)                                                      \
    do {                                                                       \
        int64_t t0_ = rt_now();                                                \
        while (!(cond)) {                                                      \
            if (rt_now() - t0_ > RTTEST_WAIT_NS)                               \
                CHECK_FAIL("still false after 30 s: %s", #cond);               \
            if (rt_in_goroutine())                                             \
                rt_sleep(1000000);                                             \
            else                                                               \
                rttest_msleep(1);                                              \
        }                                                                      \
    } while (0)

/* Runs fn(arg) as the main goroutine of a runtime with GOMAXPROCS=procs,
 * and returns 0 when rt_main returned 0; else -1 with a description in msg
 * (len bytes).  A failed CHECK does not return: it aborts. */
int rttest_main(int procs, void (*fn)(void *), void *arg, char *msg,
                size_t len);

/* Sleeps the calling OS thread (not a goroutine) for ms milliseconds. */
void rttest_msleep(int ms);

#ifndef RTTEST_NO_CMOCKA /* rttest.c itself does not see cmocka */
/* Runs fn(arg) under rt_main with procs Ps; fails the cmocka test when
 * rt_main fails. */
static inline void rttest_run_procs(int procs, void (*fn)(void *), void *arg)
{
    char msg[5120];
    if (rttest_main(procs, fn, arg, msg, sizeof(msg)) != 0)
        fail_msg("%s", msg);
}

/* rttest_run_procs with GOMAXPROCS=2, the default of these tests. */
static inline void rttest_run(void (*fn)(void *), void *arg)
{
    rttest_run_procs(2, fn, arg);
}

/* Asserts Go's texts for the sync and ticker errors (shared by the chan
 * and sync tests, which both check them). */
static inline void rttest_assert_sync_error_texts(void)
{
    assert_string_equal(rt_strerror(RT_EUNLOCK),
                        "sync: unlock of unlocked mutex");
    assert_string_equal(rt_strerror(RT_ERUNLOCK),
                        "sync: RUnlock of unlocked RWMutex");
    assert_string_equal(rt_strerror(RT_EWUNLOCK),
                        "sync: Unlock of unlocked RWMutex");
    assert_string_equal(rt_strerror(RT_ENEGWG),
                        "sync: negative WaitGroup counter");
    assert_string_equal(
        rt_strerror(RT_EWGREUSE),
        "sync: WaitGroup is reused before previous Wait has returned");
    assert_string_equal(rt_strerror(RT_ENONPOSTICK),
                        "non-positive interval for NewTicker");
    assert_string_equal(rt_strerror(RT_ENONPOSRESET),
                        "non-positive interval for Ticker.Reset");
}

/* Defines the cmocka test `name` that runs main_fn(NULL) with rttest_run. */
#define RTTEST_CASE(name, main_fn)                                             \
    static void name(void **state)                                             \
    {                                                                          \
        (void)state;                                                           \
        rttest_run(main_fn, NULL);                                             \
    }
#endif

#endif
