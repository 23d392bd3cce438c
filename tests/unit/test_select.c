/*
 * test_select.c - unit tests of rt_select: fairness among ready cases,
 * default (RT_POLL) never blocking, a 16-case mixed select under contention
 * from both Ps with every value conserved, a 100-case select, opposite lock
 * orders without deadlock, closed channels, nil cases, deadlines, and
 * cancellation fired from a foreign thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/rttest.h"
#include "rt.h"

static const rt_config two = {.gomaxprocs = 2, .stack_size = 0};

static void nap(int ms)
{
    rt_chan *idle = rt_chan_make(sizeof(int), 0);
    rt_chan_recv(idle, NULL, NULL, rt_deadline_ms(ms));
    rt_chan_release(idle);
}

/* ---- fairness: two always-ready cases ---- */

static void fair_main(void *arg)
{
    (void)arg;
    rt_chan *a = rt_chan_make(sizeof(int), 1),
            *b = rt_chan_make(sizeof(int), 1);
    int va = 1, vb = 2, out = 0, count[2] = {0, 0};
    for (int i = 0; i < 20000; i++) {
        rt_chan_send(a, &va, RT_POLL); /* keep both ready */
        rt_chan_send(b, &vb, RT_POLL);
        rt_select_case cs[2] = {{RT_SELECT_RECV, a, &out, false, false, {0}},
                                {RT_SELECT_RECV, b, &out, false, false, {0}}};
        int r = rt_select(cs, 2, RT_FOREVER, NULL);
        CHECK(r == 0 || r == 1);
        CHECK(cs[r].ok);
        CHECK_EQ(out, r == 0 ? 1 : 2);
        count[r]++;
    }
    CHECK(count[0] >= 9000 && count[0] <= 11000);
    CHECK(count[1] >= 9000 && count[1] <= 11000);
    rt_chan_release(a);
    rt_chan_release(b);
}

RTTEST_CASE(test_fairness, fair_main)

/* ---- default never blocks ---- */

static void default_main(void *arg)
{
    (void)arg;
    rt_chan *u = rt_chan_make(sizeof(int), 0),
            *f = rt_chan_make(sizeof(int), 1);
    int v = 7, out = 0;
    CHECK_EQ(rt_chan_send(f, &v, RT_POLL), 0); /* f is full */
    for (int i = 0; i < 1000; i++) {
        rt_select_case cs[3] = {{RT_SELECT_RECV, u, &out, false, false, {0}},
                                {RT_SELECT_SEND, u, &v, false, false, {0}},
                                {RT_SELECT_SEND, f, &v, false, false, {0}}};
        CHECK_EQ(rt_select(cs, 3, RT_POLL, NULL), RT_EAGAIN);
    }
    rt_select_case cs[2] = {{RT_SELECT_RECV, u, &out, false, false, {0}},
                            {RT_SELECT_RECV, f, &out, false, false, {0}}};
    int chosen = -1;
    CHECK_EQ(rt_select(cs, 2, RT_POLL, &chosen), 1);
    CHECK_EQ(chosen, 1);
    CHECK_EQ(out, 7);
    /* From a goroutine with nothing but nil cases: default. */
    rt_select_case nils[2] = {{RT_SELECT_RECV, NULL, &out, false, false, {0}},
                              {RT_SELECT_SEND, NULL, &v, false, false, {0}}};
    CHECK_EQ(rt_select(nils, 2, RT_POLL, NULL), RT_EAGAIN);
    CHECK_EQ(rt_select(nils, 2, rt_deadline_ms(20), NULL), RT_ETIMEDOUT);
    CHECK_EQ(rt_select(NULL, 0, RT_POLL, NULL), RT_EAGAIN);
    rt_select_case bad = {(rt_select_dir)9, u, &out, false, false, {0}};
    CHECK_EQ(rt_select(&bad, 1, RT_POLL, NULL), RT_EINVAL);
    rt_chan_release(u);
    rt_chan_release(f);
}

static void test_default_never_blocks(void **state)
{
    (void)state;
    rttest_run(default_main, NULL);
    /* From a foreign thread too. */
    assert_int_equal(rt_start(&two), 0);
    rt_chan *c = rt_chan_make(sizeof(int), 1);
    int v = 3, out = 0;
    rt_select_case cs[1] = {{RT_SELECT_RECV, c, &out, false, false, {0}}};
    assert_int_equal(rt_select(cs, 1, RT_POLL, NULL), RT_EAGAIN);
    assert_int_equal(rt_select(cs, 1, RT_FOREVER, NULL), RT_EPERM);
    assert_int_equal(rt_chan_send(c, &v, RT_POLL), 0);
    assert_int_equal(rt_select(cs, 1, RT_POLL, NULL), 0);
    assert_int_equal(out, 3);
    rt_stop();
    rt_chan_release(c);
}

/* ---- 16-case mixed select under contention ---- */

#define NMIX 8 /* channels: 4 buffered, 4 unbuffered */
#define NSEL 4 /* selecting goroutines */
#define ITER 20000

typedef struct mix {
    rt_chan *c[NMIX];
    _Atomic int64_t sent_sum, recv_sum, sent_n, recv_n;
    rt_chan *done;
} mix;

static void mixer(void *arg)
{
    mix *m = arg;
    int64_t ss = 0, rs = 0, sn = 0, rn = 0;
    int64_t id = rt_goid();
    for (int i = 0; i < ITER; i++) {
        int64_t out = (id << 32) | i, in = 0;
        rt_select_case cs[2 * NMIX];
        for (int k = 0; k < NMIX; k++) {
            cs[2 * k] = (rt_select_case){RT_SELECT_SEND, m->c[k], &out,
                                         false,          false,   {0}};
            cs[2 * k + 1] = (rt_select_case){RT_SELECT_RECV, m->c[k], &in,
                                             false,          false,   {0}};
        }
        /* A deadline: near the end the last selector may find no partner
         * on the unbuffered channels and every buffer full. */
        int r = rt_select(cs, 2 * NMIX, rt_deadline_ms(200), NULL);
        if (r == RT_ETIMEDOUT)
            continue;
        CHECK(r >= 0 && r < 2 * NMIX);
        if (r % 2 == 0) {
            ss += out;
            sn++;
        } else {
            CHECK(cs[r].ok);
            rs += in;
            rn++;
        }
    }
    atomic_fetch_add(&m->sent_sum, ss);
    atomic_fetch_add(&m->recv_sum, rs);
    atomic_fetch_add(&m->sent_n, sn);
    atomic_fetch_add(&m->recv_n, rn);
    int one = 1;
    rt_chan_send(m->done, &one, RT_FOREVER);
}

static void mix_main(void *arg)
{
    mix *m = arg;
    for (int k = 0; k < NMIX; k++)
        m->c[k] = rt_chan_make(sizeof(int64_t), k < NMIX / 2 ? 4 : 0);
    m->done = rt_chan_make(sizeof(int), NSEL);
    for (int i = 0; i < NSEL; i++)
        CHECK_EQ(rt_go(mixer, m), 0);
    for (int i = 0; i < NSEL; i++)
        CHECK_EQ(rt_chan_recv(m->done, NULL, NULL, RT_FOREVER), 0);
    /* Whatever is still buffered was sent and not received. */
    int64_t left_sum = 0, left_n = 0, v;
    for (int k = 0; k < NMIX; k++) {
        while (rt_chan_recv(m->c[k], &v, NULL, RT_POLL) == 0) {
            left_sum += v;
            left_n++;
        }
        rt_chan_release(m->c[k]);
    }
    CHECK_EQ(m->sent_n, m->recv_n + left_n);
    CHECK(m->sent_sum == m->recv_sum + left_sum);
    CHECK(m->sent_n > ITER); /* plenty of traffic */
    rt_chan_release(m->done);
}

static void test_mixed_16_contended(void **state)
{
    (void)state;
    mix *m = calloc(1, sizeof(*m));
    rttest_run(mix_main, m);
    free(m);
}

/* ---- 100 cases ---- */

#define NBIG 100

typedef struct big {
    rt_chan *c[NBIG];
} big;

static void big_sender(void *arg)
{
    big *b = arg;
    for (int i = 0; i < 2000; i++) {
        int k = (i * 37) % NBIG;
        CHECK_EQ(rt_chan_send(b->c[k], &i, RT_FOREVER), 0);
    }
}

static void big_main(void *arg)
{
    (void)arg;
    big b;
    for (int k = 0; k < NBIG; k++)
        b.c[k] = rt_chan_make(sizeof(int), 0);
    CHECK_EQ(rt_go(big_sender, &b), 0);
    rt_select_case cs[NBIG];
    int vals[NBIG];
    for (int i = 0; i < 2000; i++) {
        for (int k = 0; k < NBIG; k++)
            cs[k] = (rt_select_case){RT_SELECT_RECV, b.c[k], &vals[k],
                                     false,          false,  {0}};
        int chosen = -1;
        int r = rt_select(cs, NBIG, RT_FOREVER, &chosen);
        CHECK_EQ(r, (i * 37) % NBIG);
        CHECK_EQ(chosen, r);
        CHECK(cs[r].ok);
        CHECK_EQ(vals[r], i);
    }
    for (int k = 0; k < NBIG; k++)
        rt_chan_release(b.c[k]);
}

RTTEST_CASE(test_select_100_cases, big_main)

/* ---- opposite orders and repeated channels: no deadlock ---- */

typedef struct orders {
    rt_chan *a, *b, *done;
} orders;

static void order_peer(void *arg)
{
    orders *o = arg;
    int v = 1, in;
    for (int i = 0; i < 10000; i++) {
        /* b before a, a named twice */
        rt_select_case cs[3] = {{RT_SELECT_SEND, o->b, &v, false, false, {0}},
                                {RT_SELECT_RECV, o->a, &in, false, false, {0}},
                                {RT_SELECT_RECV, o->a, &in, false, false, {0}}};
        int r = rt_select(cs, 3, RT_FOREVER, NULL);
        CHECK(r >= 0 && r < 3);
    }
    rt_chan_send(o->done, &v, RT_FOREVER);
}

static void orders_main(void *arg)
{
    (void)arg;
    orders o = {rt_chan_make(sizeof(int), 0), rt_chan_make(sizeof(int), 0),
                rt_chan_make(sizeof(int), 2)};
    CHECK_EQ(rt_go(order_peer, &o), 0);
    int v = 2, in, got = 0;
    for (int i = 0; i < 10000; i++) {
        rt_select_case cs[2] = {{RT_SELECT_RECV, o.b, &in, false, false, {0}},
                                {RT_SELECT_SEND, o.a, &v, false, false, {0}}};
        CHECK(rt_select(cs, 2, RT_FOREVER, NULL) >= 0);
    }
    CHECK_EQ(rt_chan_recv(o.done, &got, NULL, RT_FOREVER), 0);
    rt_chan_release(o.a);
    rt_chan_release(o.b);
    rt_chan_release(o.done);
}

RTTEST_CASE(test_lock_orders, orders_main)

/* ---- closed channels, deadline ---- */

static void closed_main(void *arg)
{
    (void)arg;
    rt_chan *c = rt_chan_make(sizeof(int), 0),
            *d = rt_chan_make(sizeof(int), 0);
    CHECK_EQ(rt_chan_close(c), 0);
    int v = 5, chosen = -1;
    rt_select_case s1[2] = {{RT_SELECT_RECV, d, &v, false, false, {0}},
                            {RT_SELECT_SEND, c, &v, false, false, {0}}};
    CHECK_EQ(rt_select(s1, 2, RT_FOREVER, &chosen), RT_ESENDCLOSED);
    CHECK_EQ(chosen, 1);
    rt_select_case s2[2] = {{RT_SELECT_RECV, d, &v, false, false, {0}},
                            {RT_SELECT_RECV, c, &v, true, false, {0}}};
    CHECK_EQ(rt_select(s2, 2, RT_FOREVER, NULL), 1);
    CHECK(!(s2[1].ok));
    CHECK_EQ(v, 0);
    int64_t t0 = rt_now();
    rt_select_case s3[1] = {{RT_SELECT_RECV, d, &v, false, false, {0}}};
    CHECK_EQ(rt_select(s3, 1, rt_deadline_ms(40), NULL), RT_ETIMEDOUT);
    CHECK(rt_now() - t0 >= 40000000);
    CHECK(rt_now() - t0 < 5000000000LL);
    rt_chan_release(c);
    rt_chan_release(d);
}

RTTEST_CASE(test_closed_and_deadline, closed_main)

/* A parked select woken by close: recv case ok=false. */
static void close_wakes_select(void *arg)
{
    rt_chan **cs2 = arg;
    nap(20);
    rt_chan_close(cs2[1]);
}

static void parked_close_main(void *arg)
{
    (void)arg;
    rt_chan *ch[2] = {rt_chan_make(sizeof(int), 0),
                      rt_chan_make(sizeof(int), 0)};
    CHECK_EQ(rt_go(close_wakes_select, ch), 0);
    int v = 9;
    rt_select_case cs[2] = {{RT_SELECT_RECV, ch[0], &v, false, false, {0}},
                            {RT_SELECT_RECV, ch[1], &v, true, false, {0}}};
    CHECK_EQ(rt_select(cs, 2, RT_FOREVER, NULL), 1);
    CHECK(!(cs[1].ok));
    CHECK_EQ(v, 0);
    rt_chan_release(ch[0]);
    rt_chan_release(ch[1]);
}

RTTEST_CASE(test_parked_select_close, parked_close_main)

/* ---- cancel a parked select from a foreign thread ---- */

typedef struct sc {
    rt_cancel *tok;
    _Atomic int parked, result;
} sc;

static void *sel_firer(void *arg)
{
    sc *k = arg;
    RTTEST_WAIT(atomic_load(&k->parked));
    /* Most likely parked by now; the outcome is the same if it is not
     * (a fired token refuses the call at once). */
    rttest_msleep(30);
    rt_cancel_fire(k->tok);
    rt_unref();
    return NULL;
}

static void sel_cancel_main(void *arg)
{
    sc *k = arg;
    rt_chan *a = rt_chan_make(sizeof(int), 0),
            *b = rt_chan_make(sizeof(int), 0);
    pthread_t t;
    rt_ref();
    CHECK_EQ(pthread_create(&t, NULL, sel_firer, k), 0);
    rt_cancel_attach(k->tok);
    int v = 0;
    rt_select_case cs[2] = {{RT_SELECT_RECV, a, &v, false, false, {0}},
                            {RT_SELECT_SEND, b, &v, false, false, {0}}};
    atomic_store(&k->parked, 1);
    atomic_store(&k->result, rt_select(cs, 2, RT_FOREVER, NULL));
    /* The channels are clean afterwards: nobody is left queued. */
    CHECK_EQ(rt_chan_send(a, &v, RT_POLL), RT_EAGAIN);
    CHECK_EQ(rt_chan_recv(b, &v, NULL, RT_POLL), RT_EAGAIN);
    rt_cancel_attach(NULL);
    pthread_join(t, NULL);
    rt_chan_release(a);
    rt_chan_release(b);
}

static void test_select_cancel(void **state)
{
    (void)state;
    sc k = {.tok = rt_cancel_new()};
    rttest_run(sel_cancel_main, &k);
    assert_int_equal(atomic_load(&k.result), RT_ECANCELED);
    rt_cancel_free(k.tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fairness),
        cmocka_unit_test(test_default_never_blocks),
        cmocka_unit_test(test_mixed_16_contended),
        cmocka_unit_test(test_select_100_cases),
        cmocka_unit_test(test_lock_orders),
        cmocka_unit_test(test_closed_and_deadline),
        cmocka_unit_test(test_parked_select_close),
        cmocka_unit_test(test_select_cancel),
    };
    return cmocka_run_group_tests_name("select", tests, NULL, NULL);
}
