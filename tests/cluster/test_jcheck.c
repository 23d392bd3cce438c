/*
 * test_jcheck.c - the checkers of tests/cluster (jcheck.h, jcheck_ack.h)
 * on histories made by hand: clean ones pass, and each kind of violation
 * is reported, including what unanswered operations may and may not
 * explain.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "jcheck.h"
#include "jcheck_ack.h"

#include <stdlib.h>

static int check(jc_hist *h)
{
    int n = jc_check(h, stderr);

    jc_free(h);
    return n;
}

static void test_clean_history(void **state)
{
    jc_hist *h = jc_new();

    (void)state;
    jc_send(h, 1, JC_OK);
    jc_send(h, 2, JC_OK);
    jc_send(h, 3, JC_FAIL);
    jc_send(h, 4, JC_UNKNOWN); /* may or may not be there: either is fine */
    jc_recv(h, 1, JC_OK);
    jc_queued(h, 2);
    jc_hold(h, 0, 10, 20, 0, 5);
    jc_hold(h, 15, 25, 30, 1000, 6);
    jc_add(h, 1, JC_OK);
    jc_add(h, 1, JC_OK);
    jc_add(h, 1, JC_UNKNOWN);
    jc_final_atomic(h, 3);
    assert_int_equal(check(h), 0);
}

static void test_lost_send(void **state)
{
    jc_hist *h = jc_new();

    (void)state;
    jc_send(h, 1, JC_OK);
    jc_send(h, 2, JC_OK);
    jc_recv(h, 1, JC_OK);
    assert_int_equal(check(h), 1);
}

/* A receive that got no answer may have taken one value, not two. */
static void test_unknown_recv_explains_one(void **state)
{
    jc_hist *h = jc_new();

    (void)state;
    jc_send(h, 1, JC_OK);
    jc_recv(h, 0, JC_UNKNOWN);
    assert_int_equal(check(h), 0);
    h = jc_new();
    jc_send(h, 1, JC_OK);
    jc_send(h, 2, JC_OK);
    jc_recv(h, 0, JC_UNKNOWN);
    assert_int_equal(check(h), 1);
}

static void test_duplicate_and_ghost(void **state)
{
    jc_hist *h = jc_new();

    (void)state;
    jc_send(h, 1, JC_OK);
    jc_recv(h, 1, JC_OK);
    jc_queued(h, 1); /* received and still queued: twice */
    assert_int_equal(check(h), 1);
    h = jc_new();
    jc_send(h, 1, JC_FAIL);
    jc_recv(h, 1, JC_OK); /* a send that failed was delivered */
    jc_recv(h, 9, JC_OK); /* never sent at all */
    assert_int_equal(check(h), 2);
}

static void test_overlapping_holds(void **state)
{
    jc_hist *h = jc_new();

    (void)state;
    jc_hold(h, 0, 10, 50, 0, 1);
    jc_hold(h, 5, 40, 60, 0, 2); /* granted while 1 was surely held */
    assert_int_equal(check(h), 1);
    /* The lease cut the first hold short: no overlap. */
    h = jc_new();
    jc_hold(h, 0, 10, 50, 30, 1);
    jc_hold(h, 5, 40, 60, 0, 2);
    assert_int_equal(check(h), 0);
}

static void test_tokens_must_grow(void **state)
{
    jc_hist *h = jc_new();

    (void)state;
    jc_hold(h, 0, 10, 20, 0, 7);
    jc_hold(h, 30, 40, 50, 0, 3); /* asked after 7 was granted */
    assert_int_equal(check(h), 1);
    h = jc_new();
    jc_hold(h, 0, 10, 20, 0, 7);
    jc_hold(h, 30, 40, 50, 0, 7); /* the same token twice */
    assert_int_equal(check(h), 1);
}

static void test_atomic(void **state)
{
    jc_hist *h = jc_new();

    (void)state;
    jc_add(h, 1, JC_OK);
    jc_add(h, 1, JC_OK);
    jc_final_atomic(h, 1); /* an acknowledged add lost */
    assert_int_equal(check(h), 1);
    h = jc_new();
    jc_add(h, 1, JC_OK);
    jc_add(h, 1, JC_UNKNOWN);
    jc_add(h, 1, JC_FAIL);
    jc_final_atomic(h, 3); /* the failed add counted */
    assert_int_equal(check(h), 1);
    h = jc_new();
    jc_add(h, 1, JC_OK);
    assert_int_equal(check(h), 1); /* never read back */
}

/* Three adds (acked at 20 and 40, one unanswered sent at 50) and reads
 * placed around them. */
static jc_hist *adds_for_reads(void)
{
    jc_hist *h = jc_new();

    jc_add_at(h, 1, JC_OK, 10, 20);
    jc_add_at(h, 1, JC_OK, 30, 40);
    jc_add_at(h, 1, JC_UNKNOWN, 50, 60);
    jc_add_at(h, 1, JC_FAIL, 70, 80); /* counts nowhere */
    jc_final_atomic(h, 3);
    return h;
}

static void test_reads_linearizable(void **state)
{
    jc_hist *h = adds_for_reads();

    (void)state;
    jc_read(h, 5, 8, 0);   /* before every add */
    jc_read(h, 15, 35, 1); /* concurrent with both: 0..2 are fine */
    jc_read(h, 15, 35, 2); /* (reads overlapping each other) */
    jc_read(h, 45, 48, 2); /* after both acks */
    jc_read(h, 55, 90, 3); /* the unanswered one may have counted */
    jc_read(h, 95, 99, 3);
    assert_int_equal(check(h), 0);
    h = adds_for_reads();
    jc_add(h, 1, JC_OK); /* untimed adds: reads are not checked */
    jc_read(h, 45, 48, 0);
    jc_final_atomic(h, 3);
    assert_int_equal(check(h), 0);
}

static void test_stale_read(void **state)
{
    jc_hist *h = adds_for_reads();

    (void)state;
    /* Both adds acknowledged before it was sent (a deposed leader's). */
    jc_read(h, 45, 48, 1);
    assert_int_equal(check(h), 1);
    h = adds_for_reads();
    jc_read(h, 15, 35, 2);
    jc_read(h, 36, 38, 1); /* goes back after a read saw 2 */
    assert_int_equal(check(h), 1);
}

static void test_read_of_the_future(void **state)
{
    jc_hist *h = adds_for_reads();

    (void)state;
    jc_read(h, 5, 25, 2); /* the second add was sent at 30 */
    assert_int_equal(check(h), 1);
    h = adds_for_reads();
    jc_read(h, 85, 90, 4); /* the failed add counted */
    assert_int_equal(check(h), 1);
}

/* ---- acknowledged delivery (jcheck_ack.h) ---- */

#define ACK_WAIT 2000

static int check_ack(jca_hist *h)
{
    int n = jca_check(h, ACK_WAIT, stderr);

    jca_free(h);
    return n;
}

/* An ack of delivery id of v (recv sent at recv_sent), sent at t. */
static void ack(jca_hist *h, int64_t v, int64_t id, int64_t recv_sent,
                int outcome, bool not_pending, int64_t t, int64_t done)
{
    jca_ack_info a = {.v = v,
                      .id = id,
                      .recv_sent = recv_sent,
                      .sent = t,
                      .done = done,
                      .outcome = outcome,
                      .not_pending = not_pending};
    jca_ack(h, &a);
}

/* Delivers v (recv sent at t) as delivery id, and acks it at once. */
static void deliver_ack(jca_hist *h, int64_t v, int64_t id, int64_t t,
                        int outcome, bool not_pending)
{
    jca_deliver(h, v, id, t, t + 1);
    ack(h, v, id, t, outcome, not_pending, t + 2, t + 3);
}

static void test_ack_clean_history(void **state)
{
    jca_hist *h = jca_new();

    (void)state;
    jca_send(h, 1, JC_OK, 0, 1);
    jca_send(h, 2, JC_OK, 0, 1);
    jca_send(h, 3, JC_FAIL, 0, 1);
    jca_send(h, 4, JC_UNKNOWN, 0, 1); /* never delivered: fine */
    jca_send(h, 5, JC_UNKNOWN, 0, 1);
    deliver_ack(h, 1, 10, 0, JC_OK, false);
    /* 2: delivered, abandoned, expired, redelivered and acked; the late
     * ack of the first attempt is refused after its deadline. */
    jca_deliver(h, 2, 12, 100, 101);
    deliver_ack(h, 2, 11, 2200, JC_OK, false);
    ack(h, 2, 12, 100, JC_FAIL, true, 2300, 2301);
    /* 5: its ack got no answer (it may have counted); a retry of the
     * same delivery is refused before the deadline: fine. */
    jca_deliver(h, 5, 13, 10, 11);
    ack(h, 5, 13, 10, JC_UNKNOWN, false, 12, 30);
    ack(h, 5, 13, 10, JC_FAIL, true, 40, 41);
    assert_int_equal(check_ack(h), 0);
}

static void test_ack_lost(void **state)
{
    jca_hist *h = jca_new();

    (void)state;
    jca_send(h, 1, JC_OK, 0, 1);
    jca_send(h, 2, JC_OK, 0, 1);
    deliver_ack(h, 1, 10, 0, JC_OK, false);
    jca_deliver(h, 2, 20, 0, 1); /* delivered, never acked nor drained */
    assert_int_equal(check_ack(h), 1);
}

static void test_ack_invented(void **state)
{
    jca_hist *h = jca_new();

    (void)state;
    jca_send(h, 1, JC_FAIL, 0, 1);
    deliver_ack(h, 1, 10, 0, JC_OK, false);
    deliver_ack(h, 9, 11, 0, JC_OK, false);
    assert_int_equal(check_ack(h), 2);
}

static void test_ack_twice_and_after(void **state)
{
    jca_hist *h = jca_new();

    (void)state;
    jca_send(h, 1, JC_OK, 0, 1);
    deliver_ack(h, 1, 10, 0, JC_OK, false);
    /* Delivered again after the ack was answered (at 3), and acked. */
    deliver_ack(h, 1, 11, 50, JC_OK, false);
    assert_int_equal(check_ack(h), 2);
}

static void test_ack_deadline_lost(void **state)
{
    jca_hist *h = jca_new();

    (void)state;
    jca_send(h, 1, JC_OK, 0, 1);
    /* Refused 500 ms into a 2 s wait, then redelivered and acked. */
    jca_deliver(h, 1, 10, 0, 1);
    ack(h, 1, 10, 0, JC_FAIL, true, 499, 500);
    deliver_ack(h, 1, 11, 600, JC_OK, false);
    assert_int_equal(check_ack(h), 1);
}

/* An abandoned delivery comes back at its deadline, not before. */
static void test_ack_redelivered_early(void **state)
{
    jca_hist *h = jca_new();

    (void)state;
    jca_send(h, 1, JC_OK, 0, 1);
    jca_send(h, 2, JC_OK, 0, 1);
    jca_deliver(h, 1, 10, 0, 1); /* abandoned */
    deliver_ack(h, 1, 11, 2100, JC_OK, false);
    jca_deliver(h, 2, 12, 0, 1); /* abandoned, back after 900 ms */
    deliver_ack(h, 2, 13, 899, JC_OK, false);
    /* Once the workers close their sessions (jca_stop), what they held
     * comes back at once, by the disconnect rule. */
    jca_send(h, 3, JC_OK, 0, 1);
    jca_deliver(h, 3, 14, 0, 1);
    jca_stop(h, 1000);
    deliver_ack(h, 3, 15, 1100, JC_OK, false);
    assert_int_equal(check_ack(h), 1);
}

/* A delivery id given to two deliveries is a violation in itself. */
static void test_ack_id_reused(void **state)
{
    jca_hist *h = jca_new();

    (void)state;
    jca_send(h, 1, JC_OK, 0, 1);
    jca_send(h, 2, JC_OK, 0, 1);
    deliver_ack(h, 1, 10, 0, JC_OK, false);
    deliver_ack(h, 2, 10, 50, JC_OK, false); /* a new leader's, again 10 */
    assert_int_equal(check_ack(h), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_history),
        cmocka_unit_test(test_lost_send),
        cmocka_unit_test(test_unknown_recv_explains_one),
        cmocka_unit_test(test_duplicate_and_ghost),
        cmocka_unit_test(test_overlapping_holds),
        cmocka_unit_test(test_tokens_must_grow),
        cmocka_unit_test(test_atomic),
        cmocka_unit_test(test_reads_linearizable),
        cmocka_unit_test(test_stale_read),
        cmocka_unit_test(test_read_of_the_future),
        cmocka_unit_test(test_ack_clean_history),
        cmocka_unit_test(test_ack_lost),
        cmocka_unit_test(test_ack_invented),
        cmocka_unit_test(test_ack_twice_and_after),
        cmocka_unit_test(test_ack_deadline_lost),
        cmocka_unit_test(test_ack_id_reused),
        cmocka_unit_test(test_ack_redelivered_early),
    };

    return cmocka_run_group_tests_name("jcheck", tests, NULL, NULL);
}
