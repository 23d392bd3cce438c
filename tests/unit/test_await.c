/*
 * test_await.c - unit tests of rt_await, the channel receive and send that
 * wait without a goroutine: outcomes decided at once (value, close, poll,
 * past deadline, fired token, wrong size), completion by a sender, by a
 * select, by close (every await), by the deadline and by the token (fired
 * from a foreign thread); sends taken by a goroutine or a receive await,
 * timed out, or closed on; the channel left without stale waiters; and a
 * race of senders against deadlines and cancels where every value sent is
 * received exactly once and every await ends once.
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

#include "../common/rttest.h"
#include "rt.h"

/* What one await's completion saw. */
typedef struct done {
    _Atomic int calls;
    _Atomic int rc;
    _Atomic int value;
    _Atomic bool ok;
    _Atomic int64_t at; /* rt_now() at completion */
} done;

static void on_done(rt_await *a, int rc, void *arg)
{
    done *d = arg;

    atomic_store(&d->rc, rc);
    atomic_store(&d->value, *(int *)rt_await_elem(a));
    atomic_store(&d->ok, rt_await_ok(a));
    atomic_store(&d->at, rt_now());
    atomic_fetch_add(&d->calls, 1); /* last: the waiter polls for it */
    rt_await_free(a);
}

static void never(rt_await *a, int rc, void *arg)
{
    (void)a;
    (void)rc;
    (void)arg;
    CHECK_FAIL("completion of an await that finished at once");
}

/* Waits (parking the goroutine) until d was completed. */
static void wait_done(done *d)
{
    RTTEST_WAIT(atomic_load(&d->calls) != 0);
    CHECK_EQ(atomic_load(&d->calls), 1);
}

/* ---- outcomes decided at once ---- */

static void now_main(void *arg)
{
    (void)arg;
    rt_chan *c = rt_chan_make(sizeof(int), 2);
    rt_await *a = rt_await_new(sizeof(int), never, NULL);
    rt_await *big = rt_await_new(sizeof(long long), never, NULL);
    rt_cancel *tok = rt_cancel_new();

    CHECK(c && a && big && tok);
    CHECK(rt_await_new(sizeof(int), NULL, NULL) == NULL);
    CHECK_EQ(rt_chan_recv_await(NULL, a, RT_FOREVER, NULL), RT_EINVAL);
    CHECK_EQ(rt_chan_recv_await(c, big, RT_FOREVER, NULL), RT_EINVAL);
    CHECK_EQ(rt_chan_recv_await(c, a, RT_POLL, NULL), RT_EAGAIN);
    CHECK_EQ(rt_chan_recv_await(c, a, rt_now() - 1, NULL), RT_ETIMEDOUT);
    rt_cancel_fire(tok);
    CHECK_EQ(rt_chan_recv_await(c, a, RT_FOREVER, tok), RT_ECANCELED);
    /* A buffered value is taken at once (and only then). */
    CHECK_EQ(rt_chan_send(c, &(int){41}, RT_POLL), 0);
    CHECK_EQ(rt_chan_send(c, &(int){42}, RT_POLL), 0);
    CHECK_EQ(rt_chan_recv_await(c, a, RT_FOREVER, NULL), 0);
    CHECK_EQ(*(int *)rt_await_elem(a), 41);
    CHECK(rt_await_ok(a));
    CHECK_EQ(rt_chan_close(c), 0);
    CHECK_EQ(rt_chan_recv_await(c, a, RT_FOREVER, NULL), 0);
    CHECK_EQ(*(int *)rt_await_elem(a), 42);
    CHECK(rt_await_ok(a));
    /* Closed and drained: the zero value, ok false. */
    CHECK_EQ(rt_chan_recv_await(c, a, RT_FOREVER, NULL), 0);
    CHECK_EQ(*(int *)rt_await_elem(a), 0);
    CHECK(!rt_await_ok(a));
    rt_await_free(a);
    rt_await_free(big);
    rt_cancel_free(tok);
    rt_chan_release(c);
}

RTTEST_CASE(test_await_now, now_main)

/* ---- completed by a sender, a select, and close ---- */

static void sender(void *arg)
{
    rt_chan *c = arg;
    CHECK_EQ(rt_chan_send(c, &(int){7}, RT_FOREVER), 0);
}

static void wake_main(void *arg)
{
    (void)arg;
    rt_chan *c = rt_chan_make(sizeof(int), 0);
    done d = {0}, s = {0};
    rt_await *a = rt_await_new(sizeof(int), on_done, &d);

    /* By a goroutine's send: the sender completes the await in its call. */
    CHECK_EQ(rt_chan_recv_await(c, a, RT_FOREVER, NULL), RT_EINPROGRESS);
    CHECK_EQ(atomic_load(&d.calls), 0);
    CHECK_EQ(rt_go(sender, c), 0);
    wait_done(&d);
    CHECK_EQ(atomic_load(&d.rc), 0);
    CHECK_EQ(atomic_load(&d.value), 7);
    CHECK(atomic_load(&d.ok));

    /* By a select's send case. */
    a = rt_await_new(sizeof(int), on_done, &s);
    CHECK_EQ(rt_chan_recv_await(c, a, RT_FOREVER, NULL), RT_EINPROGRESS);
    int v = 9;
    rt_select_case cases[] = {
        {.chan = c, .dir = RT_SELECT_SEND, .elem = &v},
    };
    CHECK_EQ(rt_select(cases, 1, RT_FOREVER, NULL), 0);
    wait_done(&s);
    CHECK_EQ(atomic_load(&s.value), 9);
    CHECK(atomic_load(&s.ok));

    /* Nobody is left queued: a polling send finds no receiver. */
    CHECK_EQ(rt_chan_send(c, &v, RT_POLL), RT_EAGAIN);
    rt_chan_release(c);
}

RTTEST_CASE(test_await_wake, wake_main)

#define NCLOSE 1000

static void close_main(void *arg)
{
    (void)arg;
    rt_chan *c = rt_chan_make(sizeof(int), 0);
    done *d = calloc(NCLOSE, sizeof *d);

    CHECK(c && d);
    for (int i = 0; i < NCLOSE; i++) {
        rt_await *a = rt_await_new(sizeof(int), on_done, &d[i]);
        CHECK_EQ(rt_chan_recv_await(c, a, RT_FOREVER, NULL), RT_EINPROGRESS);
    }
    CHECK_EQ(rt_chan_close(c), 0);
    for (int i = 0; i < NCLOSE; i++) {
        /* close completes them all in its own call */
        CHECK_EQ(atomic_load(&d[i].calls), 1);
        CHECK_EQ(atomic_load(&d[i].rc), 0);
        CHECK(!atomic_load(&d[i].ok));
    }
    free(d);
    rt_chan_release(c);
}

RTTEST_CASE(test_await_close, close_main)

/* ---- sends ---- */

static void receiver(void *arg)
{
    rt_chan *c = arg;
    int v = 0;
    bool ok = false;

    CHECK_EQ(rt_chan_recv(c, &v, &ok, RT_FOREVER), 0);
    CHECK(ok);
    CHECK_EQ(v, 11);
}

static void send_main(void *arg)
{
    (void)arg;
    rt_chan *b = rt_chan_make(sizeof(int), 1),
            *c = rt_chan_make(sizeof(int), 0);
    rt_await *a = rt_await_new(sizeof(int), never, NULL);
    done r = {0}, s1 = {0}, s2 = {0}, s3 = {0};
    int v = 0;
    bool ok = false;

    CHECK(b && c && a);
    /* At once: a free buffer slot; then full (poll, past deadline). */
    *(int *)rt_await_elem(a) = 5;
    CHECK_EQ(rt_chan_send_await(b, a, RT_FOREVER, NULL), 0);
    CHECK_EQ(rt_chan_send_await(b, a, RT_POLL, NULL), RT_EAGAIN);
    CHECK_EQ(rt_chan_send_await(b, a, rt_now() - 1, NULL), RT_ETIMEDOUT);
    CHECK_EQ(rt_chan_recv(b, &v, &ok, RT_POLL), 0);
    CHECK_EQ(v, 5);
    /* At once to a waiting receive await: two awaits meet. */
    rt_await *ra = rt_await_new(sizeof(int), on_done, &r);
    CHECK_EQ(rt_chan_recv_await(c, ra, RT_FOREVER, NULL), RT_EINPROGRESS);
    *(int *)rt_await_elem(a) = 6;
    CHECK_EQ(rt_chan_send_await(c, a, RT_FOREVER, NULL), 0);
    CHECK_EQ(atomic_load(&r.calls), 1);
    CHECK_EQ(atomic_load(&r.value), 6);
    CHECK(atomic_load(&r.ok));
    rt_await_free(a);

    /* Waiting, then taken by a goroutine's receive. */
    a = rt_await_new(sizeof(int), on_done, &s1);
    *(int *)rt_await_elem(a) = 11;
    CHECK_EQ(rt_chan_send_await(c, a, RT_FOREVER, NULL), RT_EINPROGRESS);
    CHECK_EQ(rt_go(receiver, c), 0);
    wait_done(&s1);
    CHECK_EQ(atomic_load(&s1.rc), 0);

    /* Waiting past its deadline: the element is still in the await. */
    a = rt_await_new(sizeof(int), on_done, &s2);
    *(int *)rt_await_elem(a) = 12;
    CHECK_EQ(rt_chan_send_await(c, a, rt_deadline_ms(10), NULL),
             RT_EINPROGRESS);
    wait_done(&s2);
    CHECK_EQ(atomic_load(&s2.rc), RT_ETIMEDOUT);
    CHECK_EQ(atomic_load(&s2.value), 12);

    /* Waiting when the channel closes: Go's panic becomes RT_ESENDCLOSED. */
    a = rt_await_new(sizeof(int), on_done, &s3);
    *(int *)rt_await_elem(a) = 13;
    CHECK_EQ(rt_chan_send_await(c, a, RT_FOREVER, NULL), RT_EINPROGRESS);
    CHECK_EQ(rt_chan_close(c), 0);
    CHECK_EQ(atomic_load(&s3.calls), 1);
    CHECK_EQ(atomic_load(&s3.rc), RT_ESENDCLOSED);
    CHECK_EQ(atomic_load(&s3.value), 13);
    a = rt_await_new(sizeof(int), never, NULL);
    CHECK_EQ(rt_chan_send_await(c, a, RT_FOREVER, NULL), RT_ESENDCLOSED);
    rt_await_free(a);
    rt_chan_release(b);
    rt_chan_release(c);
}

RTTEST_CASE(test_await_send, send_main)

/* ---- deadline and token ---- */

static void *fire_later(void *arg)
{
    rttest_msleep(20);
    rt_cancel_fire(arg);
    return NULL;
}

static void deadline_main(void *arg)
{
    (void)arg;
    rt_chan *c = rt_chan_make(sizeof(int), 0);
    done d = {0}, k1 = {0}, k2 = {0};
    rt_cancel *tok = rt_cancel_new();
    pthread_t t;
    int64_t t0 = rt_now();

    CHECK_EQ(rt_chan_recv_await(c, rt_await_new(sizeof(int), on_done, &d),
                                rt_deadline_ms(30), NULL),
             RT_EINPROGRESS);
    wait_done(&d);
    CHECK_EQ(atomic_load(&d.rc), RT_ETIMEDOUT);
    CHECK(atomic_load(&d.at) - t0 >= 30 * 1000000LL);

    /* Two awaits on one token (one with a deadline far away), fired from
     * a foreign thread, as the daemon's I/O thread does at a session end. */
    CHECK_EQ(rt_chan_recv_await(c, rt_await_new(sizeof(int), on_done, &k1),
                                RT_FOREVER, tok),
             RT_EINPROGRESS);
    CHECK_EQ(rt_chan_recv_await(c, rt_await_new(sizeof(int), on_done, &k2),
                                rt_deadline_ms(60000), tok),
             RT_EINPROGRESS);
    CHECK_EQ(pthread_create(&t, NULL, fire_later, tok), 0);
    wait_done(&k1);
    wait_done(&k2);
    pthread_join(t, NULL);
    CHECK_EQ(atomic_load(&k1.rc), RT_ECANCELED);
    CHECK_EQ(atomic_load(&k2.rc), RT_ECANCELED);
    /* They left the channel and the token: nothing receives, and the token
     * can be freed. */
    CHECK_EQ(rt_chan_send(c, &(int){1}, RT_POLL), RT_EAGAIN);
    rt_cancel_free(tok);
    rt_chan_release(c);
}

RTTEST_CASE(test_await_deadline_cancel, deadline_main)

/* ---- race: senders against deadlines and cancels ---- */

#define RACE_AWAITS 20000
#define RACE_SENDERS 4

typedef struct race {
    rt_chan *c;
    rt_cancel *toks[8];
    _Atomic int completed, received, timeouts, cancels;
    _Atomic long long sum_recv, sum_sent;
    _Atomic int sent;
    _Atomic bool stop;
    rt_wg *wg;
} race;

static void race_done(rt_await *a, int rc, void *arg)
{
    race *r = arg;

    if (rc == 0) {
        CHECK(rt_await_ok(a)); /* never closed */
        atomic_fetch_add(&r->received, 1);
        atomic_fetch_add(&r->sum_recv, *(int *)rt_await_elem(a));
    } else if (rc == RT_ETIMEDOUT) {
        atomic_fetch_add(&r->timeouts, 1);
    } else {
        CHECK_EQ(rc, RT_ECANCELED);
        atomic_fetch_add(&r->cancels, 1);
    }
    rt_await_free(a);
    atomic_fetch_add(&r->completed, 1);
}

static void race_sender(void *arg)
{
    race *r = arg;

    for (int v = 1; !atomic_load(&r->stop); v++) {
        int rc = rt_chan_send(r->c, &v, rt_deadline_ms(1));
        if (rc == 0) {
            atomic_fetch_add(&r->sent, 1);
            atomic_fetch_add(&r->sum_sent, v);
        } else {
            CHECK_EQ(rc, RT_ETIMEDOUT);
        }
    }
    rt_wg_done(r->wg);
}

static void race_main(void *arg)
{
    race *r = arg;
    int started = 0, fired = 0;

    r->c = rt_chan_make(sizeof(int), 0);
    r->wg = rt_wg_new();
    for (int i = 0; i < 8; i++)
        r->toks[i] = rt_cancel_new();
    RTTEST_SPAWN(r->wg, RACE_SENDERS, race_sender, r);
    for (int i = 0; i < RACE_AWAITS; i++) {
        rt_await *a = rt_await_new(sizeof(int), race_done, r);
        rt_deadline_t dl =
            i % 3 == 0 ? RT_FOREVER : rt_now() + (i % 7) * 100000;
        int rc = rt_chan_recv_await(r->c, a, dl, r->toks[i % 8]);
        if (rc == RT_EINPROGRESS) {
            started++;
        } else if (rc == 0) {
            atomic_fetch_add(&r->received, 1);
            atomic_fetch_add(&r->sum_recv, *(int *)rt_await_elem(a));
            rt_await_free(a);
        } else if (rc == RT_ETIMEDOUT) {
            atomic_fetch_add(&r->timeouts, 1);
            rt_await_free(a);
        } else {
            CHECK_EQ(rc, RT_ECANCELED);
            atomic_fetch_add(&r->cancels, 1);
            rt_await_free(a);
        }
        /* Fire the tokens one by one along the way: pending awaits end
         * by cancel, later ones on a fired token are refused at once. */
        if (fired < 8 && i >= (fired + 1) * (RACE_AWAITS / 9))
            rt_cancel_fire(r->toks[fired++]);
        if (i % 64 == 0)
            rt_gosched();
    }
    while (fired < 8)
        rt_cancel_fire(r->toks[fired++]);
    /* Awaits without a deadline end by a value or their token. */
    RTTEST_WAIT(atomic_load(&r->completed) >= started);
    CHECK_EQ(atomic_load(&r->completed), started);
    atomic_store(&r->stop, true);
    CHECK_EQ(rt_wg_wait(r->wg, RT_FOREVER), 0);
    /* Conservation: every send that succeeded was received once. */
    CHECK_EQ(atomic_load(&r->received), atomic_load(&r->sent));
    CHECK_EQ(atomic_load(&r->sum_recv), atomic_load(&r->sum_sent));
    CHECK(atomic_load(&r->received) > 0);
    CHECK(atomic_load(&r->cancels) > 0);
    CHECK_EQ(atomic_load(&r->received) + atomic_load(&r->cancels) +
                 atomic_load(&r->timeouts),
             RACE_AWAITS);
    CHECK_EQ(rt_chan_send(r->c, &(int){1}, RT_POLL), RT_EAGAIN);
    for (int i = 0; i < 8; i++)
        rt_cancel_free(r->toks[i]);
    rt_wg_free(r->wg);
    rt_chan_release(r->c);
}

static void test_await_race(void **state)
{
    (void)state;
    race *r = calloc(1, sizeof *r);
    assert_non_null(r);
    rttest_run(race_main, r);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_await_now),
        cmocka_unit_test(test_await_wake),
        cmocka_unit_test(test_await_close),
        cmocka_unit_test(test_await_send),
        cmocka_unit_test(test_await_deadline_cancel),
        cmocka_unit_test(test_await_race),
    };
    return cmocka_run_group_tests_name("await", tests, NULL, NULL);
}
