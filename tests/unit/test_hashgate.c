/*
 * test_hashgate.c - unit tests of the cap on concurrent password hashes:
 * the default slot count (half the cores, 1..4), a holder keeping the
 * only slot while one attempt waits and the next is refused at once
 * (-EBUSY, the daemon's reason `limit`), the waiter getting the slot when
 * the holder leaves, a wait that passes its deadline, and the counts
 * runtime.stats shows.  Ordering is by polling the counts, never by time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdatomic.h>

#include "../common/rttest.h"
#include "hashgate.h"
#include "rt.h"

static void test_default_slots(void **state)
{
    (void)state;
    assert_int_equal(hashgate_default_slots(0), 1);
    assert_int_equal(hashgate_default_slots(1), 1);
    assert_int_equal(hashgate_default_slots(2), 1);
    assert_int_equal(hashgate_default_slots(4), 2);
    assert_int_equal(hashgate_default_slots(6), 3);
    assert_int_equal(hashgate_default_slots(8), 4);
    assert_int_equal(hashgate_default_slots(64), 4);
}

static int64_t running(void)
{
    int64_t r, w;
    hashgate_counts(&r, &w);
    return r;
}

static int64_t waiting(void)
{
    int64_t r, w;
    hashgate_counts(&r, &w);
    return w;
}

typedef struct gate_case {
    rt_chan *release; /* closed: the holder leaves */
    rt_wg *wg;
    _Atomic int waiter_rc; /* 1 until the waiter got an answer */
} gate_case;

/* Holds the slot until release is closed. */
static void holder(void *arg)
{
    gate_case *g = arg;
    int v;
    bool ok;

    CHECK_EQ(hashgate_enter(RT_FOREVER), 0);
    rt_chan_recv(g->release, &v, &ok, RT_FOREVER);
    hashgate_leave();
    rt_wg_done(g->wg);
}

/* Waits for the slot. */
static void waiter(void *arg)
{
    gate_case *g = arg;
    int rc = hashgate_enter(RT_FOREVER);

    atomic_store(&g->waiter_rc, rc);
    if (rc == 0)
        hashgate_leave();
    rt_wg_done(g->wg);
}

static void queue_main(void *arg)
{
    gate_case g = {rt_chan_make(sizeof(int), 0), rt_wg_new(), 1};
    int slots, queue;

    (void)arg;
    CHECK_EQ(hashgate_init(1, 1), 0);
    hashgate_sizes(&slots, &queue);
    CHECK_EQ(slots, 1);
    CHECK_EQ(queue, 1);
    RTTEST_SPAWN(g.wg, 1, holder, &g);
    RTTEST_WAIT(running() == 1);
    RTTEST_SPAWN(g.wg, 1, waiter, &g);
    RTTEST_WAIT(waiting() == 1);
    /* The slot is taken and the queue full: refused at once. */
    CHECK_EQ(hashgate_enter(RT_FOREVER), -EBUSY);
    CHECK_EQ(waiting(), 1);
    CHECK_EQ(atomic_load(&g.waiter_rc), 1);
    /* The holder leaves: the waiter gets the slot. */
    CHECK_EQ(rt_chan_close(g.release), 0);
    CHECK_EQ(rt_wg_wait(g.wg, RT_FOREVER), 0);
    CHECK_EQ(atomic_load(&g.waiter_rc), 0);
    CHECK_EQ(running(), 0);
    CHECK_EQ(waiting(), 0);
    /* A wait past its deadline gives up and leaves the queue. */
    CHECK_EQ(hashgate_enter(RT_FOREVER), 0);
    CHECK_EQ(hashgate_enter(rt_deadline_ms(20)), -ETIMEDOUT);
    CHECK_EQ(waiting(), 0);
    hashgate_leave();
    CHECK_EQ(running(), 0);
    rt_chan_release(g.release);
    rt_wg_free(g.wg);
    hashgate_fini();
    CHECK_EQ(hashgate_enter(RT_FOREVER), -EINVAL);
}

RTTEST_CASE(test_queue, queue_main)

/* With queue 0 nothing waits: a second attempt is refused while the
 * first holds the only slot; slots 0 means the default. */
static void no_queue_main(void *arg)
{
    int slots, queue;

    (void)arg;
    CHECK_EQ(hashgate_init(0, 0), 0);
    hashgate_sizes(&slots, &queue);
    CHECK_EQ(slots, hashgate_default_slots(rt_num_cpu()));
    CHECK_EQ(queue, 0);
    for (int i = 0; i < slots; i++)
        CHECK_EQ(hashgate_enter(RT_FOREVER), 0);
    CHECK_EQ(running(), slots);
    CHECK_EQ(hashgate_enter(RT_FOREVER), -EBUSY);
    for (int i = 0; i < slots; i++)
        hashgate_leave();
    CHECK_EQ(running(), 0);
    hashgate_fini();
}

RTTEST_CASE(test_no_queue, no_queue_main)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_slots),
        cmocka_unit_test(test_queue),
        cmocka_unit_test(test_no_queue),
    };
    return cmocka_run_group_tests_name("hashgate", tests, NULL, NULL);
}
