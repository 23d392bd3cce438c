/*
 * test_chan_ack.c - unit tests of acknowledged receives (chan_ack.c):
 * in-flight values count against cap, requeued values come back before
 * never-delivered ones and in their original order, a closed channel
 * answers ok=false (and a zeroed value) only once nothing is in flight,
 * an unbuffered sender completes only on the ack (whichever of sender and
 * receiver parked first) unless a plain receiver takes it, awaits and select
 * cases receive with acknowledgement, and a stress of many consumers that
 * requeue at random acknowledges every value exactly once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../common/rttest.h"
#include "rt.h"

/* Goroutines of these tests parked now (rt_park_count_attach). */
static _Atomic int64_t nparked;

/* ---- cap, order, ack ---- */

static int metas[2];

static void hook_count(void *arg, bool taken, rt_chan_hold_ev *ev)
{
    (void)arg;
    if (!taken)
        ++*(int *)ev->meta;
}

static void order_main(void *arg)
{
    (void)arg;
    rt_chan *c = rt_chan_make(sizeof(int), 3);
    rt_chan_hold h[3];
    int v;
    bool ok;

    for (int i = 1; i <= 3; i++)
        CHECK_EQ(rt_chan_send(c, &i, RT_POLL), 0);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(rt_chan_recv_ack(c, &v, &ok, &h[i], RT_POLL), 0);
        CHECK(ok);
        CHECK_EQ(v, i + 1);
    }
    /* Three in flight fill cap 3. */
    CHECK_EQ(rt_chan_inflight(c), 3);
    CHECK_EQ(rt_chan_len(c), 0);
    CHECK_EQ(rt_chan_send(c, &(int){4}, RT_POLL), RT_EAGAIN);
    CHECK_EQ(rt_chan_recv(c, &v, &ok, RT_POLL), RT_EAGAIN);
    /* An ack frees a slot. */
    CHECK_EQ(rt_chan_ack(c, h[1].seq), 0);
    CHECK_EQ(rt_chan_send(c, &(int){4}, RT_POLL), 0);
    CHECK_EQ(rt_chan_send(c, &(int){5}, RT_POLL), RT_EAGAIN);
    /* Requeued 3 then 1: they come back as 1, 3, before 4. */
    CHECK_EQ(rt_chan_requeue(c, &(int){3}, h[2].seq, NULL, true), 0);
    CHECK_EQ(rt_chan_requeue(c, &(int){1}, h[0].seq, NULL, true), 0);
    CHECK_EQ(rt_chan_inflight(c), 0);
    CHECK_EQ(rt_chan_len(c), 3);
    rt_chan_hold a;
    CHECK_EQ(rt_chan_recv_ack(c, &v, &ok, &a, RT_POLL), 0);
    CHECK_EQ(v, 1);
    CHECK_EQ(a.seq, h[0].seq); /* the key stays with the value */
    CHECK_EQ(rt_chan_recv(c, &v, &ok, RT_POLL), 0);
    CHECK_EQ(v, 3);
    CHECK_EQ(rt_chan_recv(c, &v, &ok, RT_POLL), 0);
    CHECK_EQ(v, 4);
    CHECK(a.meta == NULL);
    /* The meta travels with a requeued value: to the next acknowledged
     * receive, or to the hook when a plain receive takes it. */
    rt_chan_set_hold_hook(c, hook_count, NULL);
    CHECK_EQ(rt_chan_requeue(c, &(int){1}, a.seq, &metas[0], true), 0);
    CHECK_EQ(rt_chan_recv_ack(c, &v, &ok, &a, RT_POLL), 0);
    CHECK(a.meta == &metas[0]);
    CHECK_EQ(rt_chan_requeue(c, &(int){1}, a.seq, &metas[1], true), 0);
    CHECK_EQ(rt_chan_recv(c, &v, &ok, RT_POLL), 0);
    CHECK_EQ(metas[1], 1);
    CHECK_EQ(metas[0], 0);
    CHECK_EQ(rt_chan_send(c, &(int){1}, RT_POLL), 0);
    CHECK_EQ(rt_chan_recv_ack(c, &v, &ok, &a, RT_POLL), 0);
    CHECK_EQ(rt_chan_ack(c, a.seq), 0);
    /* Nothing in flight: a stray ack is refused. */
    CHECK_EQ(rt_chan_ack(c, a.seq), RT_EINVAL);
    CHECK_EQ(rt_chan_requeue(c, &v, 99, NULL, true), RT_EINVAL);
    rt_chan_release(c);
}

RTTEST_CASE(test_ack_order_cap, order_main)

/* ---- a sender parked on in-flight values is let in by the ack ---- */

typedef struct sendk {
    rt_chan *c;
    int v;
    _Atomic int done;
} sendk;

static void sender(void *arg)
{
    rt_park_count_attach(&nparked);
    sendk *k = arg;
    CHECK_EQ(rt_chan_send(k->c, &k->v, RT_FOREVER), 0);
    atomic_store(&k->done, 1);
}

static void parked_sender_main(void *arg)
{
    (void)arg;
    rt_chan *c = rt_chan_make(sizeof(int), 1);
    sendk k = {c, 7, 0};
    rt_chan_hold h;
    int v;
    bool ok;

    CHECK_EQ(rt_chan_send(c, &(int){6}, RT_POLL), 0);
    CHECK_EQ(rt_chan_recv_ack(c, &v, &ok, &h, RT_POLL), 0);
    CHECK_EQ(rt_go(sender, &k), 0);
    RTTEST_WAIT(atomic_load(&nparked) >= 1);
    CHECK_EQ(atomic_load(&k.done), 0);
    CHECK_EQ(rt_chan_ack(c, h.seq), 0);
    RTTEST_WAIT(atomic_load(&k.done));
    CHECK_EQ(rt_chan_recv(c, &v, &ok, RT_POLL), 0);
    CHECK_EQ(v, 7);
    rt_chan_release(c);
}

RTTEST_CASE(test_ack_parked_sender, parked_sender_main)

/* ---- close waits for the in-flight values ---- */

typedef struct recvk {
    rt_chan *c;
    int v;
    bool ok;
    _Atomic int done;
} recvk;

static void receiver(void *arg)
{
    rt_park_count_attach(&nparked);
    recvk *k = arg;
    CHECK_EQ(rt_chan_recv(k->c, &k->v, &k->ok, RT_FOREVER), 0);
    atomic_store(&k->done, 1);
}

static void close_main(void *arg)
{
    (void)arg;
    rt_chan *c = rt_chan_make(sizeof(int), 2);
    recvk k1 = {c, 0, false, 0}, k2 = {c, 0, true, 0};
    rt_chan_hold h;
    int v;
    bool ok;

    CHECK_EQ(rt_chan_send(c, &(int){1}, RT_POLL), 0);
    CHECK_EQ(rt_chan_recv_ack(c, &v, &ok, &h, RT_POLL), 0);
    CHECK_EQ(rt_chan_close(c), 0);
    /* Closed and empty, but one in flight: no ok=false yet. */
    CHECK_EQ(rt_chan_recv(c, &v, &ok, RT_POLL), RT_EAGAIN);
    CHECK_EQ(rt_go(receiver, &k1), 0);
    RTTEST_WAIT(atomic_load(&nparked) >= 1);
    /* The requeued value reaches the parked receiver. */
    CHECK_EQ(rt_chan_requeue(c, &v, h.seq, NULL, true), 0);
    RTTEST_WAIT(atomic_load(&k1.done));
    CHECK(k1.ok);
    CHECK_EQ(k1.v, 1);
    /* Now drained with nothing in flight: ok=false. */
    CHECK_EQ(rt_chan_recv(c, &v, &ok, RT_POLL), 0);
    CHECK(!ok);

    /* The same once the last in-flight value is acked. */
    rt_chan *d = rt_chan_make(sizeof(int), 2);
    k2.c = d;
    CHECK_EQ(rt_chan_send(d, &(int){1}, RT_POLL), 0);
    CHECK_EQ(rt_chan_recv_ack(d, &v, &ok, &h, RT_POLL), 0);
    CHECK_EQ(rt_chan_close(d), 0);
    CHECK_EQ(rt_go(receiver, &k2), 0);
    RTTEST_WAIT(atomic_load(&nparked) >= 1);
    CHECK_EQ(atomic_load(&k2.done), 0);
    CHECK_EQ(rt_chan_ack(d, h.seq), 0);
    RTTEST_WAIT(atomic_load(&k2.done));
    CHECK(!k2.ok);
    rt_chan_release(c);
    rt_chan_release(d);
}

RTTEST_CASE(test_ack_close, close_main)

/* ---- unbuffered: the send completes on the ack ---- */

typedef struct ackrk {
    rt_chan *c;
    int v;
    bool ok;
    rt_chan_hold h;
    _Atomic int done;
} ackrk;

static void ack_receiver(void *arg)
{
    rt_park_count_attach(&nparked);
    ackrk *k = arg;
    CHECK_EQ(rt_chan_recv_ack(k->c, &k->v, &k->ok, &k->h, RT_FOREVER), 0);
    atomic_store(&k->done, 1);
}

static void unbuf_main(void *arg)
{
    (void)arg;
    rt_chan *c = rt_chan_make(sizeof(int), 0);
    sendk s = {c, 11, 0};
    ackrk r = {c, 0, false, {0}, 0};
    rt_chan_hold h;
    int v;
    bool ok;

    /* Sender first: the acknowledged receive holds it. */
    CHECK_EQ(rt_go(sender, &s), 0);
    RTTEST_WAIT(atomic_load(&nparked) >= 1);
    CHECK_EQ(rt_chan_recv_ack(c, &v, &ok, &h, RT_POLL), 0);
    CHECK_EQ(v, 11);
    rttest_msleep(20);
    CHECK_EQ(atomic_load(&s.done), 0);
    /* A requeue keeps it held; a plain receive of it completes it. */
    CHECK_EQ(rt_chan_requeue(c, &v, h.seq, NULL, true), 0);
    CHECK_EQ(atomic_load(&s.done), 0);
    CHECK_EQ(rt_chan_len(c), 1);
    CHECK_EQ(rt_chan_recv(c, &v, &ok, RT_POLL), 0);
    CHECK_EQ(v, 11);
    RTTEST_WAIT(atomic_load(&s.done));

    /* Receiver first: the sender parks and is handed over at once. */
    s.done = 0;
    s.v = 12;
    CHECK_EQ(rt_go(ack_receiver, &r), 0);
    RTTEST_WAIT(atomic_load(&nparked) >= 1);
    CHECK_EQ(rt_go(sender, &s), 0);
    RTTEST_WAIT(atomic_load(&r.done));
    CHECK(r.ok);
    CHECK_EQ(r.v, 12);
    rttest_msleep(20);
    CHECK_EQ(atomic_load(&s.done), 0);
    CHECK_EQ(rt_chan_inflight(c), 1);
    CHECK_EQ(rt_chan_ack(c, r.h.seq), 0);
    RTTEST_WAIT(atomic_load(&s.done));
    CHECK_EQ(rt_chan_inflight(c), 0);
    rt_chan_release(c);
}

RTTEST_CASE(test_ack_unbuffered, unbuf_main)

/* ---- a parked acknowledged receive woken by the close ---- */

/* ok=false and a zeroed value, as a plain receive gets (rt.h). */
static void close_wake_main(void *arg)
{
    (void)arg;
    for (size_t cap = 0; cap <= 2; cap += 2) {
        rt_chan *c = rt_chan_make(sizeof(int), cap);
        ackrk r = {c, 99, true, {0}, 0};

        CHECK_EQ(rt_go(ack_receiver, &r), 0);
        RTTEST_WAIT(atomic_load(&nparked) >= 1);
        CHECK_EQ(rt_chan_close(c), 0);
        RTTEST_WAIT(atomic_load(&r.done));
        CHECK(!r.ok);
        CHECK_EQ(r.v, 0);
        rt_chan_release(c);
    }
}

RTTEST_CASE(test_ack_close_wake, close_wake_main)

/* ---- unbuffered: a plain receiver behind an acknowledged one ---- */

/* A send goes straight to the plain receiver (it completes at once) even
 * when an acknowledged receiver waits ahead of it; with only the
 * acknowledged one left, the next send is held until its ack. */
static void mixed_main(void *arg)
{
    (void)arg;
    rt_chan *c = rt_chan_make(sizeof(int), 0);
    ackrk r = {c, 0, false, {0}, 0};
    recvk k = {c, 0, false, 0};
    sendk s1 = {c, 5, 0}, s2 = {c, 6, 0};

    CHECK_EQ(rt_go(ack_receiver, &r), 0);
    RTTEST_WAIT(atomic_load(&nparked) >= 1);
    CHECK_EQ(rt_go(receiver, &k), 0);
    RTTEST_WAIT(atomic_load(&nparked) >= 2);
    CHECK_EQ(rt_go(sender, &s1), 0);
    RTTEST_WAIT(atomic_load(&k.done) && atomic_load(&s1.done));
    CHECK(k.ok);
    CHECK_EQ(k.v, 5);
    CHECK_EQ(atomic_load(&r.done), 0);
    CHECK_EQ(rt_chan_inflight(c), 0);

    CHECK_EQ(rt_go(sender, &s2), 0);
    RTTEST_WAIT(atomic_load(&r.done));
    CHECK(r.ok);
    CHECK_EQ(r.v, 6);
    rttest_msleep(20);
    CHECK_EQ(atomic_load(&s2.done), 0);
    CHECK_EQ(rt_chan_inflight(c), 1);
    CHECK_EQ(rt_chan_ack(c, r.h.seq), 0);
    RTTEST_WAIT(atomic_load(&s2.done));
    rt_chan_release(c);
}

RTTEST_CASE(test_ack_unbuffered_mixed, mixed_main)

/* ---- await and select ---- */

typedef struct awk {
    _Atomic int rc;
    _Atomic int done;
} awk;

static void await_done(rt_await *a, int rc, void *arg)
{
    awk *k = arg;
    (void)a;
    atomic_store(&k->rc, rc);
    atomic_store(&k->done, 1);
}

static void await_select_main(void *arg)
{
    (void)arg;
    rt_chan *c = rt_chan_make(sizeof(int), 1);
    awk k = {0, 0};
    rt_await *a = rt_await_new(sizeof(int), await_done, &k);
    int v;
    bool ok;

    CHECK(a != NULL);
    CHECK_EQ(rt_chan_recv_ack_await(c, a, RT_FOREVER, NULL), RT_EINPROGRESS);
    CHECK_EQ(rt_chan_send(c, &(int){21}, RT_POLL), 0);
    RTTEST_WAIT(atomic_load(&k.done));
    CHECK_EQ(atomic_load(&k.rc), 0);
    CHECK(rt_await_ok(a));
    CHECK_EQ(*(int *)rt_await_elem(a), 21);
    CHECK_EQ(rt_chan_inflight(c), 1);
    CHECK_EQ(rt_chan_send(c, &(int){22}, RT_POLL), RT_EAGAIN);
    CHECK_EQ(rt_chan_ack(c, rt_await_hold(a).seq), 0);
    rt_await_free(a);

    CHECK_EQ(rt_chan_send(c, &(int){22}, RT_POLL), 0);
    rt_select_case cs[1] = {{RT_SELECT_RECV, c, &v, false, true, {0, NULL}}};
    CHECK_EQ(rt_select(cs, 1, RT_POLL, NULL), 0);
    CHECK(cs[0].ok);
    CHECK_EQ(v, 22);
    CHECK_EQ(rt_chan_inflight(c), 1);
    CHECK_EQ(rt_chan_requeue(c, &v, cs[0].hold.seq, NULL, true), 0);
    CHECK_EQ(rt_chan_recv(c, &v, &ok, RT_POLL), 0);
    CHECK_EQ(v, 22);
    rt_chan_release(c);
}

RTTEST_CASE(test_ack_await_select, await_select_main)

/* ---- the hook sees every value that becomes a delivery ---- */

typedef struct hookk {
    _Atomic int taken, from_buf, ended;
} hookk;

static void hook_seen(void *arg, bool taken, rt_chan_hold_ev *ev)
{
    hookk *k = arg;
    if (!taken) {
        atomic_fetch_add(&k->ended, 1);
        return;
    }
    atomic_fetch_add(&k->taken, 1);
    if (ev->from_buf)
        atomic_fetch_add(&k->from_buf, 1);
    ev->meta = k; /* any non-NULL meta */
}

static void hook_main(void *arg)
{
    (void)arg;
    rt_chan *c = rt_chan_make(sizeof(int), 2);
    hookk k = {0, 0, 0};
    awk w = {0, 0};
    rt_await *a = rt_await_new(sizeof(int), await_done, &w);
    rt_chan_hold h;
    int v;
    bool ok;

    rt_chan_set_hold_hook(c, hook_seen, &k);
    /* From the buffer: the hook, not the observer, records the GET. */
    CHECK_EQ(rt_chan_send(c, &(int){1}, RT_POLL), 0);
    CHECK_EQ(rt_chan_recv_ack(c, &v, &ok, &h, RT_POLL), 0);
    CHECK_EQ(atomic_load(&k.from_buf), 1);
    CHECK(h.meta == &k);
    /* Straight from a sender to a waiting acknowledged receiver. */
    CHECK_EQ(rt_chan_recv_ack_await(c, a, RT_FOREVER, NULL), RT_EINPROGRESS);
    CHECK_EQ(rt_chan_send(c, &(int){2}, RT_POLL), 0);
    RTTEST_WAIT(atomic_load(&w.done));
    CHECK_EQ(atomic_load(&k.taken), 2);
    CHECK(rt_await_hold(a).meta == &k);
    /* A requeued value with meta: no new delivery; a plain receive of it
     * ends it. */
    CHECK_EQ(rt_chan_requeue(c, &v, h.seq, h.meta, true), 0);
    CHECK_EQ(rt_chan_recv(c, &v, &ok, RT_POLL), 0);
    CHECK_EQ(atomic_load(&k.taken), 2);
    CHECK_EQ(atomic_load(&k.ended), 1);
    CHECK_EQ(rt_chan_ack(c, rt_await_hold(a).seq), 0);
    rt_await_free(a);
    rt_chan_release(c);
}

RTTEST_CASE(test_ack_hook, hook_main)

/* ---- stress: consumers requeue at random; every value acked once ---- */

#define NVAL 2000
#define NCONS 4

typedef struct stress {
    rt_chan *c;
    rt_wg *wg;
    _Atomic int acked[NVAL];
    _Atomic int total;
} stress;

static void consumer(void *arg)
{
    stress *s = arg;
    unsigned seed = (unsigned)(uintptr_t)&seed;
    int v;
    bool ok;
    rt_chan_hold h;

    while (rt_chan_recv_ack(s->c, &v, &ok, &h, RT_FOREVER) == 0 && ok) {
        if (rand_r(&seed) % 4 == 0) {
            CHECK_EQ(rt_chan_requeue(s->c, &v, h.seq, NULL, true), 0);
            continue;
        }
        CHECK_EQ(atomic_fetch_add(&s->acked[v], 1), 0);
        atomic_fetch_add(&s->total, 1);
        CHECK_EQ(rt_chan_ack(s->c, h.seq), 0);
    }
    rt_wg_done(s->wg);
}

static void stress_cap(size_t cap)
{
    stress *s = calloc(1, sizeof *s);
    CHECK(s != NULL);
    s->c = rt_chan_make(sizeof(int), cap);
    s->wg = rt_wg_new();
    RTTEST_SPAWN(s->wg, NCONS, consumer, s);
    for (int i = 0; i < NVAL; i++)
        CHECK_EQ(rt_chan_send(s->c, &i, RT_FOREVER), 0);
    CHECK_EQ(rt_chan_close(s->c), 0);
    CHECK_EQ(rt_wg_wait(s->wg, RT_FOREVER), 0);
    CHECK_EQ(atomic_load(&s->total), NVAL);
    for (int i = 0; i < NVAL; i++)
        CHECK_EQ(atomic_load(&s->acked[i]), 1);
    CHECK_EQ(rt_chan_inflight(s->c), 0);
    rt_wg_free(s->wg);
    rt_chan_release(s->c);
    free(s);
}

static void stress_main(void *arg)
{
    (void)arg;
    stress_cap(8);
    stress_cap(0);
}

RTTEST_CASE(test_ack_stress, stress_main)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ack_order_cap),
        cmocka_unit_test(test_ack_parked_sender),
        cmocka_unit_test(test_ack_close),
        cmocka_unit_test(test_ack_unbuffered),
        cmocka_unit_test(test_ack_close_wake),
        cmocka_unit_test(test_ack_unbuffered_mixed),
        cmocka_unit_test(test_ack_await_select),
        cmocka_unit_test(test_ack_hook),
        cmocka_unit_test(test_ack_stress),
    };
    return cmocka_run_group_tests_name("chan_ack", tests, NULL, NULL);
}
