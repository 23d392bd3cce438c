/*
 * test_dlv_persist.c - the wall-clock deadlines daemon/dlv_persist.c
 * writes into a delivery's records: rounded up to the millisecond, so a
 * node that restores one (a cluster's new leader) never fires it before
 * the wait the worker was promised.  Rounded down, a restored delivery
 * came back up to a millisecond early (the Jepsen early check).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <time.h>

#include "../../daemon/dlv.h"

static int64_t wall_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void test_deadline_never_early(void **state)
{
    (void)state;
    /* Many tries: a floor is right only when the clock sits on a
     * millisecond's first nanosecond. */
    for (int i = 0; i < 10000; i++) {
        int64_t in = (int64_t)(i % 7) * 333333 + 2000000000;
        int64_t before = wall_ns();
        int64_t d = dlvp_deadline_ms(in);
        int64_t after = wall_ns();

        assert_true(d * 1000000 >= before + in);
        /* ... and no later than the millisecond after it. */
        assert_true(d * 1000000 < after + in + 1000000);
    }
}

static void test_deadline_past(void **state)
{
    (void)state;
    /* An overdue delivery (a snapshot of one past its deadline): in the
     * past, so a restore fires it at once. */
    for (int i = 0; i < 1000; i++) {
        int64_t in = -5000000000 - (int64_t)(i % 7) * 333333;
        int64_t before = wall_ns();
        int64_t d = dlvp_deadline_ms(in);
        int64_t after = wall_ns();

        assert_true(d * 1000000 >= before + in);
        assert_true(d * 1000000 < after + in + 1000000);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deadline_never_early),
        cmocka_unit_test(test_deadline_past),
    };
    return cmocka_run_group_tests_name("dlv_persist", tests, NULL, NULL);
}
