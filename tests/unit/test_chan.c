/*
 * test_chan.c - unit tests of channels: ping-pong, the prime sieve, fan-out
 * and fan-in without loss or duplication, close waking every parked
 * receiver and sender, every close rule and Go's error words, buffered FIFO
 * and drain-after-close, deadlines, and cancellation fired from a foreign
 * thread.
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
#include <unistd.h>

#include "../common/rttest.h"
#include "rt.h"

/* ---- ping-pong ---- */

typedef struct pp {
    rt_chan *ping, *pong;
    int n;
} pp;

static void ponger(void *arg)
{
    pp *p = arg;
    int v;
    bool ok;
    while (rt_chan_recv(p->ping, &v, &ok, RT_FOREVER) == 0 && ok)
        CHECK_EQ(rt_chan_send(p->pong, &(int){v + 1}, RT_FOREVER), 0);
    rt_chan_close(p->pong);
}

static void pingpong_main(void *arg)
{
    (void)arg;
    pp p = {rt_chan_make(sizeof(int), 0), rt_chan_make(sizeof(int), 0), 20000};
    CHECK_EQ(rt_go(ponger, &p), 0);
    for (int i = 0; i < p.n; i++) {
        int v = -1;
        bool ok = false;
        CHECK_EQ(rt_chan_send(p.ping, &i, RT_FOREVER), 0);
        CHECK_EQ(rt_chan_recv(p.pong, &v, &ok, RT_FOREVER), 0);
        CHECK(ok);
        CHECK_EQ(v, i + 1);
    }
    CHECK_EQ(rt_chan_close(p.ping), 0);
    int v = 5;
    bool ok = true;
    CHECK_EQ(rt_chan_recv(p.pong, &v, &ok, RT_FOREVER), 0);
    CHECK(!(ok));
    CHECK_EQ(v, 0);
    rt_chan_release(p.ping);
    rt_chan_release(p.pong);
}

RTTEST_CASE(test_pingpong, pingpong_main)

/* ---- prime sieve (Go's classic, one goroutine per prime) ---- */

typedef struct filt {
    rt_chan *in, *out;
    int prime;
} filt;

static void generate(void *arg)
{
    rt_chan *ch = arg;
    for (int i = 2;; i++)
        if (rt_chan_send(ch, &i, RT_FOREVER) != 0)
            return;
}

static void filter(void *arg)
{
    filt *f = arg;
    int v;
    bool ok;
    while (rt_chan_recv(f->in, &v, &ok, RT_FOREVER) == 0 && ok)
        if (v % f->prime != 0 && rt_chan_send(f->out, &v, RT_FOREVER) != 0)
            break;
}

#define NPRIMES 1000

static void sieve_main(void *arg)
{
    (void)arg;
    static filt filters[NPRIMES];
    static rt_chan *chans[NPRIMES + 1];
    int expect[NPRIMES], ne = 0;
    for (int n = 2; ne < NPRIMES; n++) {
        bool prime = true;
        for (int d = 2; d * d <= n; d++)
            if (n % d == 0)
                prime = false;
        if (prime)
            expect[ne++] = n;
    }
    chans[0] = rt_chan_make(sizeof(int), 0);
    CHECK_EQ(rt_go(generate, chans[0]), 0);
    for (int i = 0; i < NPRIMES; i++) {
        int p;
        bool ok;
        CHECK_EQ(rt_chan_recv(chans[i], &p, &ok, RT_FOREVER), 0);
        CHECK(ok);
        CHECK_EQ(p, expect[i]);
        chans[i + 1] = rt_chan_make(sizeof(int), 0);
        filters[i] = (filt){chans[i], chans[i + 1], p};
        CHECK_EQ(rt_go(filter, &filters[i]), 0);
    }
    CHECK_EQ(expect[NPRIMES - 1], 7919);
    /* The chain is abandoned with the runtime (as a Go program's would
     * be); the channels stay allocated until the process exits. */
}

RTTEST_CASE(test_prime_sieve, sieve_main)

/* ---- fan-out / fan-in ---- */

#define NVALUES 100000
#define NWORKERS 8

typedef struct fan {
    rt_chan *jobs, *results, *done;
} fan;

static void worker(void *arg)
{
    fan *f = arg;
    int v;
    bool ok;
    while (rt_chan_recv(f->jobs, &v, &ok, RT_FOREVER) == 0 && ok)
        CHECK_EQ(rt_chan_send(f->results, &v, RT_FOREVER), 0);
    CHECK_EQ(rt_chan_send(f->done, &v, RT_FOREVER), 0);
}

static void producer(void *arg)
{
    fan *f = arg;
    for (int i = 0; i < NVALUES; i++)
        CHECK_EQ(rt_chan_send(f->jobs, &i, RT_FOREVER), 0);
    CHECK_EQ(rt_chan_close(f->jobs), 0);
}

static void closer(void *arg)
{
    fan *f = arg;
    int v;
    for (int i = 0; i < NWORKERS; i++)
        CHECK_EQ(rt_chan_recv(f->done, &v, NULL, RT_FOREVER), 0);
    CHECK_EQ(rt_chan_close(f->results), 0);
}

static void fan_main(void *arg)
{
    (void)arg;
    fan f = {rt_chan_make(sizeof(int), 64), rt_chan_make(sizeof(int), 16),
             rt_chan_make(sizeof(int), 0)};
    for (int i = 0; i < NWORKERS; i++)
        CHECK_EQ(rt_go(worker, &f), 0);
    CHECK_EQ(rt_go(producer, &f), 0);
    CHECK_EQ(rt_go(closer, &f), 0);
    unsigned char *seen = calloc(NVALUES, 1);
    int n = 0, v;
    bool ok;
    while (rt_chan_recv(f.results, &v, &ok, RT_FOREVER) == 0 && ok) {
        CHECK(v >= 0 && v < NVALUES);
        CHECK_EQ(seen[v], 0);
        seen[v] = 1;
        n++;
    }
    CHECK_EQ(n, NVALUES);
    free(seen);
    rt_chan_release(f.jobs);
    rt_chan_release(f.results);
    rt_chan_release(f.done);
}

RTTEST_CASE(test_fan_out_fan_in, fan_main)

/* ---- close wakes every parked receiver and sender ---- */

#define NPARKED 10
static _Atomic int woke_recv, woke_send;

static void parked_receiver(void *arg)
{
    int v = 123;
    bool ok = true;
    CHECK_EQ(rt_chan_recv(arg, &v, &ok, RT_FOREVER), 0);
    CHECK(!(ok));
    CHECK_EQ(v, 0);
    atomic_fetch_add(&woke_recv, 1);
}

static void parked_sender(void *arg)
{
    int v = 1;
    CHECK_EQ(rt_chan_send(arg, &v, RT_FOREVER), RT_ESENDCLOSED);
    atomic_fetch_add(&woke_send, 1);
}

static void close_main(void *arg)
{
    (void)arg;
    rt_chan *r = rt_chan_make(sizeof(int), 0);
    rt_chan *s = rt_chan_make(sizeof(int), 0);
    for (int i = 0; i < NPARKED; i++) {
        CHECK_EQ(rt_go(parked_receiver, r), 0);
        CHECK_EQ(rt_go(parked_sender, s), 0);
    }
    /* Wait until all 20 are parked: a timed-out receive yields time. */
    rt_chan *idle = rt_chan_make(sizeof(int), 0);
    rt_chan_recv(idle, NULL, NULL, rt_deadline_ms(50));
    CHECK_EQ(rt_chan_close(r), 0);
    CHECK_EQ(rt_chan_close(s), 0);
    while (atomic_load(&woke_recv) + atomic_load(&woke_send) < 2 * NPARKED)
        rt_chan_recv(idle, NULL, NULL, rt_deadline_ms(1));
    CHECK_EQ(atomic_load(&woke_recv), NPARKED);
    CHECK_EQ(atomic_load(&woke_send), NPARKED);
    rt_chan_release(idle);
    rt_chan_release(r);
    rt_chan_release(s);
}

RTTEST_CASE(test_close_wakes_all, close_main)

/* ---- close rules, drain after close, FIFO, len/cap, words ---- */

static void rules_main(void *arg)
{
    (void)arg;
    rt_chan *c = rt_chan_make(sizeof(int), 3);
    CHECK_EQ(rt_chan_cap(c), 3);
    for (int i = 1; i <= 3; i++)
        CHECK_EQ(rt_chan_send(c, &i, RT_POLL), 0);
    CHECK_EQ(rt_chan_len(c), 3);
    int v = 4;
    CHECK_EQ(rt_chan_send(c, &v, RT_POLL), RT_EAGAIN);
    CHECK_EQ(rt_chan_close(c), 0);
    CHECK(rt_chan_closed(c));
    CHECK_EQ(rt_chan_close(c), RT_ECLOSECLOSED);
    CHECK_EQ(rt_chan_send(c, &v, RT_FOREVER), RT_ESENDCLOSED);
    CHECK_EQ(rt_chan_send(c, &v, RT_POLL), RT_ESENDCLOSED);
    /* Buffered values drain in order after close, then zero/false. */
    for (int i = 1; i <= 3; i++) {
        bool ok = false;
        CHECK_EQ(rt_chan_recv(c, &v, &ok, RT_FOREVER), 0);
        CHECK(ok);
        CHECK_EQ(v, i);
    }
    bool ok = true;
    v = 9;
    CHECK_EQ(rt_chan_recv(c, &v, &ok, RT_FOREVER), 0);
    CHECK(!(ok));
    CHECK_EQ(v, 0);
    CHECK_EQ(rt_chan_recv(c, NULL, &ok, RT_POLL), 0);
    CHECK(!(ok));
    CHECK_EQ(rt_chan_close(NULL), RT_ECLOSENIL);
    CHECK_EQ(rt_chan_send(NULL, &v, RT_POLL), RT_EINVAL);
    CHECK_EQ(rt_chan_recv(NULL, &v, &ok, RT_POLL), RT_EINVAL);
    CHECK_PTR_EQ(rt_chan_retain(c), c);
    rt_chan_release(c);
    rt_chan_release(c);

    /* Unbuffered: a poll without a partner fails; recv NULL discards. */
    rt_chan *u = rt_chan_make(sizeof(int), 0);
    CHECK_EQ(rt_chan_cap(u), 0);
    CHECK_EQ(rt_chan_send(u, &v, RT_POLL), RT_EAGAIN);
    CHECK_EQ(rt_chan_recv(u, &v, &ok, RT_POLL), RT_EAGAIN);
    rt_chan_release(u);

    /* Large elements are copied whole. */
    typedef struct {
        char b[1000];
    } big;
    rt_chan *bc = rt_chan_make(sizeof(big), 2);
    big in, out;
    memset(&in, 'x', sizeof(in));
    CHECK_EQ(rt_chan_send(bc, &in, RT_POLL), 0);
    CHECK_EQ(rt_chan_recv(bc, &out, &ok, RT_POLL), 0);
    CHECK_MEM_EQ(&in, &out, sizeof(in));
    rt_chan_release(bc);
}

static void test_close_rules(void **state)
{
    (void)state;
    rttest_run(rules_main, NULL);
    assert_string_equal(rt_strerror(RT_ESENDCLOSED), "send on closed channel");
    assert_string_equal(rt_strerror(RT_ECLOSECLOSED),
                        "close of closed channel");
    assert_string_equal(rt_strerror(RT_ECLOSENIL), "close of nil channel");
    rttest_assert_sync_error_texts();
    assert_string_equal(rt_strerror(RT_EDEADLK),
                        "all goroutines are asleep - deadlock!");
    int codes[] = {RT_OK,        RT_ENOMEM,    RT_EINVAL, RT_EAGAIN,
                   RT_ETIMEDOUT, RT_ECANCELED, RT_EPERM,  RT_ESTACKOVF};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        assert_non_null(rt_strerror(codes[i]));
        assert_true(strlen(rt_strerror(codes[i])) > 0);
    }
}

/* ---- buffered FIFO with parked senders (rotation) ---- */

static void fifo_sender(void *arg)
{
    rt_chan *c = arg;
    for (int i = 0; i < 1000; i++)
        CHECK_EQ(rt_chan_send(c, &i, RT_FOREVER), 0);
}

static void fifo_main(void *arg)
{
    (void)arg;
    rt_chan *c = rt_chan_make(sizeof(int), 4);
    CHECK_EQ(rt_go(fifo_sender, c), 0);
    for (int i = 0; i < 1000; i++) {
        int v;
        bool ok;
        if (i % 100 == 0) {
            /* Let the sender fill the buffer and park. */
            rt_chan *idle = rt_chan_make(sizeof(int), 0);
            rt_chan_recv(idle, NULL, NULL, rt_deadline_ms(2));
            rt_chan_release(idle);
        }
        CHECK_EQ(rt_chan_recv(c, &v, &ok, RT_FOREVER), 0);
        CHECK_EQ(v, i);
    }
    rt_chan_release(c);
}

RTTEST_CASE(test_buffered_fifo, fifo_main)

/* ---- deadlines ---- */

static void deadline_main(void *arg)
{
    (void)arg;
    rt_chan *c = rt_chan_make(sizeof(int), 0);
    int v = 0;
    int64_t t0 = rt_now();
    CHECK_EQ(rt_chan_recv(c, &v, NULL, rt_deadline_ms(50)), RT_ETIMEDOUT);
    int64_t el = rt_now() - t0;
    CHECK(el >= 50000000);
    CHECK(el < 5000000000LL); /* generous: a loaded 2-core box */
    t0 = rt_now();
    CHECK_EQ(rt_chan_send(c, &v, rt_deadline_ms(30)), RT_ETIMEDOUT);
    el = rt_now() - t0;
    CHECK(el >= 30000000);
    CHECK(el < 5000000000LL);
    /* A deadline already past fails at once, even without waiting. */
    CHECK_EQ(rt_chan_recv(c, &v, NULL, rt_now() - 1), RT_ETIMEDOUT);
    /* After a timeout the channel still works. */
    CHECK_EQ(rt_chan_send(c, &v, RT_POLL), RT_EAGAIN);
    rt_chan_release(c);
}

RTTEST_CASE(test_deadlines, deadline_main)

/* ---- cancellation from a foreign thread ---- */

typedef struct cancel_case {
    rt_cancel *tok;
    rt_chan *c;
    int send;
    _Atomic int parked, result, later;
} cancel_case;

static void cancel_waiter(void *arg)
{
    cancel_case *k = arg;
    rt_cancel_attach(k->tok);
    int v = 1;
    atomic_store(&k->parked, 1);
    int r = k->send ? rt_chan_send(k->c, &v, RT_FOREVER)
                    : rt_chan_recv(k->c, &v, NULL, RT_FOREVER);
    atomic_store(&k->result, r);
    atomic_store(&k->later, k->send ? rt_chan_send(k->c, &v, RT_FOREVER)
                                    : rt_chan_recv(k->c, &v, NULL, RT_FOREVER));
    /* Polls are not blocking calls: they still work. */
    CHECK_EQ(rt_chan_recv(k->c, &v, NULL, RT_POLL), RT_EAGAIN);
    rt_cancel_attach(NULL);
}

static void *firer(void *arg)
{
    cancel_case *k = arg;
    RTTEST_WAIT(atomic_load(&k->parked));
    /* Most likely parked by now; the outcome is the same if it is not
     * (a fired token refuses the call at once). */
    rttest_msleep(30);
    rt_cancel_fire(k->tok);
    rt_cancel_fire(k->tok); /* idempotent */
    rt_unref();
    return NULL;
}

static void cancel_main(void *arg)
{
    cancel_case *k = arg;
    pthread_t t;
    rt_ref(); /* the foreign thread can still wake us */
    CHECK_EQ(pthread_create(&t, NULL, firer, k), 0);
    CHECK_EQ(rt_go(cancel_waiter, k), 0);
    rt_chan *idle = rt_chan_make(sizeof(int), 0);
    while (atomic_load(&k->later) == 0)
        rt_chan_recv(idle, NULL, NULL, rt_deadline_ms(2));
    rt_chan_release(idle);
    pthread_join(t, NULL);
}

static void test_cancel(void **state)
{
    (void)state;
    for (int send = 0; send <= 1; send++) {
        cancel_case k = {.tok = rt_cancel_new(),
                         .c = rt_chan_make(sizeof(int), 0),
                         .send = send};
        assert_false(rt_cancel_fired(k.tok));
        rttest_run(cancel_main, &k);
        assert_true(rt_cancel_fired(k.tok));
        assert_int_equal(atomic_load(&k.result), RT_ECANCELED);
        assert_int_equal(atomic_load(&k.later), RT_ECANCELED);
        rt_cancel_free(k.tok);
        rt_chan_release(k.c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pingpong),
        cmocka_unit_test(test_prime_sieve),
        cmocka_unit_test(test_fan_out_fan_in),
        cmocka_unit_test(test_close_wakes_all),
        cmocka_unit_test(test_close_rules),
        cmocka_unit_test(test_buffered_fifo),
        cmocka_unit_test(test_deadlines),
        cmocka_unit_test(test_cancel),
    };
    return cmocka_run_group_tests_name("chan", tests, NULL, NULL);
}
