/*
 * test_sync.c - unit tests of the runtime's sync package and atomics:
 * Mutex (exclusion, TryLock, starvation hand-off, deadline, cancel),
 * RWMutex, WaitGroup, Once, Cond (over Mutex and the RWMutex read side),
 * Pool, rt_atomic.h, and Go's error texts.
 *
 * Each test runs its body as the main goroutine of a fresh runtime with
 * GOMAXPROCS=2.  cmocka's asserts longjmp, which must not happen on a
 * goroutine stack, so goroutines record the first failed check with
 * CHECK() and the test asserts on it once rt_main has returned.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/rttest.h"
#include "rt.h"
#include "rt_atomic.h"

/* ---- time helpers ---- */

static int64_t ms(int64_t n)
{
    return n * 1000000;
}

/* Busy-waits for d ns without yielding: keeps the P (and a lock) busy. */
static void spin_for(int64_t d)
{
    int64_t end = rt_now() + d;
    while (rt_now() < end)
        ;
}

/* ---- Mutex ---- */

#define EXCL_G 4
#define EXCL_N 50000

struct excl {
    rt_mutex *m;
    rt_wg *wg;
    long counter; /* plain: the mutex is what protects it */
};

static void excl_worker(void *arg)
{
    struct excl *e = arg;
    for (int i = 0; i < EXCL_N; i++) {
        CHECK_EQ(rt_mutex_lock(e->m, RT_FOREVER), 0);
        e->counter++;
        CHECK_EQ(rt_mutex_unlock(e->m), 0);
        if (i % 1000 == 0)
            rt_gosched();
    }
    rt_wg_done(e->wg);
}

static void mutex_exclusion_main(void *arg)
{
    (void)arg;
    struct excl e = {rt_mutex_new(), rt_wg_new(), 0};
    CHECK_EQ(rt_wg_add(e.wg, EXCL_G), EXCL_G);
    for (int i = 0; i < EXCL_G; i++)
        CHECK_EQ(rt_go(excl_worker, &e), 0);
    CHECK_EQ(rt_wg_wait(e.wg, RT_FOREVER), 0);
    CHECK_EQ(e.counter, (long)EXCL_G * EXCL_N);
    rt_mutex_free(e.m);
    rt_wg_free(e.wg);
}

RTTEST_CASE(test_mutex_exclusion, mutex_exclusion_main)

static void mutex_trylock_main(void *arg)
{
    (void)arg;
    rt_mutex *m = rt_mutex_new();
    CHECK(rt_mutex_trylock(m));
    CHECK(!rt_mutex_trylock(m));
    CHECK_EQ(rt_mutex_lock(m, RT_POLL), RT_EAGAIN);
    CHECK_EQ(rt_mutex_unlock(m), 0);
    CHECK_EQ(rt_mutex_unlock(m), RT_EUNLOCK);
    CHECK_EQ(rt_mutex_lock(m, RT_POLL), 0);
    CHECK_EQ(rt_mutex_unlock(m), 0);
    /* The Locker adapter goes through the same calls. */
    rt_locker l = rt_mutex_locker(m);
    CHECK_EQ(l.lock(l.obj, RT_FOREVER), 0);
    CHECK(!rt_mutex_trylock(m));
    CHECK_EQ(l.unlock(l.obj), 0);
    rt_mutex_free(m);
}

RTTEST_CASE(test_mutex_trylock, mutex_trylock_main)

struct hog {
    rt_mutex *m;
    _Atomic int stop;
    _Atomic int started;
    rt_wg *wg;
    int64_t waited;
    int got;
};

/* Holds the lock almost all the time: 2 ms held, released only for the
 * instant between an Unlock and the next Lock.  In normal mode the hog,
 * already on a CPU, wins every such race; only starvation mode's hand-off
 * lets the waiter in. */
static void hog_fn(void *arg)
{
    struct hog *h = arg;
    while (!atomic_load(&h->stop)) {
        CHECK_EQ(rt_mutex_lock(h->m, RT_FOREVER), 0);
        atomic_store(&h->started, 1);
        spin_for(ms(2));
        CHECK_EQ(rt_mutex_unlock(h->m), 0);
    }
    rt_wg_done(h->wg);
}

static void starve_waiter(void *arg)
{
    struct hog *h = arg;
    while (!atomic_load(&h->started))
        rt_gosched();
    for (int i = 0; i < 5; i++) {
        int64_t t0 = rt_now();
        int r = rt_mutex_lock(h->m, rt_deadline_ms(10000));
        CHECK_EQ(r, 0);
        if (r != 0)
            break;
        h->waited = rt_now() - t0;
        h->got++;
        CHECK_EQ(rt_mutex_unlock(h->m), 0);
        rt_sleep(ms(1));
    }
    atomic_store(&h->stop, 1);
    rt_wg_done(h->wg);
}

static void mutex_starvation_main(void *arg)
{
    (void)arg;
    struct hog h = {.m = rt_mutex_new(), .wg = rt_wg_new()};
    rt_wg_add(h.wg, 2);
    CHECK_EQ(rt_go(hog_fn, &h), 0);
    CHECK_EQ(rt_go(starve_waiter, &h), 0);
    CHECK_EQ(rt_wg_wait(h.wg, RT_FOREVER), 0);
    CHECK_EQ(h.got, 5);
    rt_mutex_free(h.m);
    rt_wg_free(h.wg);
}

RTTEST_CASE(test_mutex_starvation, mutex_starvation_main)

struct locked_wait {
    rt_mutex *m;
    rt_cancel *tok;
    rt_wg *wg;
    int result;
    int64_t elapsed;
};

static void lock_with_deadline(void *arg)
{
    struct locked_wait *lw = arg;
    int64_t t0 = rt_now();
    lw->result = rt_mutex_lock(lw->m, rt_deadline_ms(50));
    lw->elapsed = rt_now() - t0;
    rt_wg_done(lw->wg);
}

static void lock_cancelled(void *arg)
{
    struct locked_wait *lw = arg;
    rt_cancel_attach(lw->tok);
    lw->result = rt_mutex_lock(lw->m, RT_FOREVER);
    /* Later blocking calls fail the same way. */
    CHECK_EQ(rt_mutex_lock(lw->m, RT_FOREVER), RT_ECANCELED);
    rt_cancel_attach(NULL);
    rt_wg_done(lw->wg);
}

static void mutex_deadline_cancel_main(void *arg)
{
    (void)arg;
    struct locked_wait lw = {.m = rt_mutex_new(), .wg = rt_wg_new()};
    CHECK_EQ(rt_mutex_lock(lw.m, RT_FOREVER), 0);

    RTTEST_SPAWN(lw.wg, 1, lock_with_deadline, &lw);
    CHECK_EQ(rt_wg_wait(lw.wg, RT_FOREVER), 0);
    CHECK_EQ(lw.result, RT_ETIMEDOUT);
    CHECK(lw.elapsed >= ms(45));

    lw.tok = rt_cancel_new();
    RTTEST_SPAWN(lw.wg, 1, lock_cancelled, &lw);
    rt_sleep(ms(20));
    rt_cancel_fire(lw.tok);
    CHECK_EQ(rt_wg_wait(lw.wg, RT_FOREVER), 0);
    CHECK_EQ(lw.result, RT_ECANCELED);

    /* The mutex is intact: the quitters left no waiter behind. */
    CHECK_EQ(rt_mutex_unlock(lw.m), 0);
    CHECK(rt_mutex_trylock(lw.m));
    CHECK_EQ(rt_mutex_unlock(lw.m), 0);
    rt_cancel_free(lw.tok);
    rt_mutex_free(lw.m);
    rt_wg_free(lw.wg);
}

RTTEST_CASE(test_mutex_deadline_cancel, mutex_deadline_cancel_main)

/* ---- RWMutex ---- */

static void rw_basic_main(void *arg)
{
    (void)arg;
    rt_rwmutex *rw = rt_rwmutex_new();
    CHECK_EQ(rt_rwmutex_rlock(rw, RT_FOREVER), 0);
    CHECK(rt_rwmutex_tryrlock(rw)); /* readers overlap */
    CHECK(!rt_rwmutex_trylock(rw));
    CHECK_EQ(rt_rwmutex_lock(rw, RT_POLL), RT_EAGAIN);
    CHECK_EQ(rt_rwmutex_runlock(rw), 0);
    CHECK_EQ(rt_rwmutex_runlock(rw), 0);
    CHECK_EQ(rt_rwmutex_runlock(rw), RT_ERUNLOCK);
    CHECK_EQ(rt_rwmutex_unlock(rw), RT_EWUNLOCK);
    CHECK(rt_rwmutex_trylock(rw));
    CHECK(!rt_rwmutex_tryrlock(rw));
    CHECK(!rt_rwmutex_trylock(rw));
    CHECK_EQ(rt_rwmutex_rlock(rw, RT_POLL), RT_EAGAIN);
    CHECK_EQ(rt_rwmutex_unlock(rw), 0);
    CHECK_EQ(rt_rwmutex_unlock(rw), RT_EWUNLOCK);
    CHECK_EQ(rt_rwmutex_lock(rw, RT_FOREVER), 0);
    CHECK_EQ(rt_rwmutex_unlock(rw), 0);
    CHECK(rt_rwmutex_tryrlock(rw));
    CHECK_EQ(rt_rwmutex_runlock(rw), 0);
    rt_rwmutex_free(rw);
}

RTTEST_CASE(test_rwmutex_basic, rw_basic_main)

struct rwx {
    rt_rwmutex *rw;
    rt_wg *wg;
    long x, y; /* writers keep x == y; readers must never see otherwise */
    _Atomic int readers_in, max_readers;
};

static void rwx_writer(void *arg)
{
    struct rwx *s = arg;
    for (int i = 0; i < 2000; i++) {
        CHECK_EQ(rt_rwmutex_lock(s->rw, RT_FOREVER), 0);
        CHECK_EQ(atomic_load(&s->readers_in), 0);
        s->x++;
        rt_gosched(); /* give readers a chance to barge in (they must not) */
        s->y++;
        CHECK_EQ(rt_rwmutex_unlock(s->rw), 0);
    }
    rt_wg_done(s->wg);
}

static void rwx_reader(void *arg)
{
    struct rwx *s = arg;
    for (int i = 0; i < 5000; i++) {
        CHECK_EQ(rt_rwmutex_rlock(s->rw, RT_FOREVER), 0);
        int n = atomic_fetch_add(&s->readers_in, 1) + 1;
        int mx = atomic_load(&s->max_readers);
        while (n > mx && !atomic_compare_exchange_weak(&s->max_readers, &mx, n))
            ;
        CHECK_EQ(s->x, s->y);
        if (i % 16 == 0)
            rt_gosched(); /* hold the read lock across a switch */
        atomic_fetch_sub(&s->readers_in, 1);
        CHECK_EQ(rt_rwmutex_runlock(s->rw), 0);
    }
    rt_wg_done(s->wg);
}

static void rw_exclusive_main(void *arg)
{
    (void)arg;
    struct rwx s = {.rw = rt_rwmutex_new(), .wg = rt_wg_new()};
    rt_wg_add(s.wg, 6);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(rt_go(rwx_writer, &s), 0);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(rt_go(rwx_reader, &s), 0);
    CHECK_EQ(rt_wg_wait(s.wg, RT_FOREVER), 0);
    CHECK_EQ(s.x, 4000);
    CHECK_EQ(s.y, 4000);
    CHECK(atomic_load(&s.max_readers) >= 2); /* readers did overlap */
    rt_rwmutex_free(s.rw);
    rt_wg_free(s.wg);
}

RTTEST_CASE(test_rwmutex_exclusive, rw_exclusive_main)

struct rwstarve {
    rt_rwmutex *rw;
    rt_wg *wg;
    _Atomic int stop;
    int wresult;
};

/* Readers hand the read lock to each other: one always holds it. */
static void rs_reader(void *arg)
{
    struct rwstarve *s = arg;
    while (!atomic_load(&s->stop)) {
        if (rt_rwmutex_rlock(s->rw, rt_deadline_ms(20000)) != 0)
            break;
        spin_for(200000);
        rt_gosched();
        rt_rwmutex_runlock(s->rw);
    }
    rt_wg_done(s->wg);
}

static void rs_writer(void *arg)
{
    struct rwstarve *s = arg;
    rt_sleep(ms(20));
    s->wresult = rt_rwmutex_lock(s->rw, rt_deadline_ms(5000));
    if (s->wresult == 0)
        rt_rwmutex_unlock(s->rw);
    atomic_store(&s->stop, 1);
    rt_wg_done(s->wg);
}

static void rw_writer_not_starved_main(void *arg)
{
    (void)arg;
    struct rwstarve s = {.rw = rt_rwmutex_new(), .wg = rt_wg_new()};
    rt_wg_add(s.wg, 5);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(rt_go(rs_reader, &s), 0);
    CHECK_EQ(rt_go(rs_writer, &s), 0);
    CHECK_EQ(rt_wg_wait(s.wg, RT_FOREVER), 0);
    CHECK_EQ(s.wresult, 0);
    rt_rwmutex_free(s.rw);
    rt_wg_free(s.wg);
}

RTTEST_CASE(test_rwmutex_writer_not_starved, rw_writer_not_starved_main)

static void rw_reader_timeout(void *arg)
{
    struct rwstarve *s = arg;
    s->wresult = rt_rwmutex_rlock(s->rw, rt_deadline_ms(30));
    rt_wg_done(s->wg);
}

static void rw_timeouts_main(void *arg)
{
    (void)arg;
    struct rwstarve s = {.rw = rt_rwmutex_new(), .wg = rt_wg_new()};
    /* A reader times out behind a writer... */
    CHECK_EQ(rt_rwmutex_lock(s.rw, RT_FOREVER), 0);
    RTTEST_SPAWN(s.wg, 1, rw_reader_timeout, &s);
    CHECK_EQ(rt_wg_wait(s.wg, RT_FOREVER), 0);
    CHECK_EQ(s.wresult, RT_ETIMEDOUT);
    CHECK_EQ(rt_rwmutex_unlock(s.rw), 0);
    /* ...and a writer behind a reader, which lets new readers in again. */
    CHECK_EQ(rt_rwmutex_rlock(s.rw, RT_FOREVER), 0);
    CHECK_EQ(rt_rwmutex_lock(s.rw, rt_deadline_ms(30)), RT_ETIMEDOUT);
    CHECK(rt_rwmutex_tryrlock(s.rw));
    CHECK_EQ(rt_rwmutex_runlock(s.rw), 0);
    CHECK_EQ(rt_rwmutex_runlock(s.rw), 0);
    CHECK(rt_rwmutex_trylock(s.rw));
    CHECK_EQ(rt_rwmutex_unlock(s.rw), 0);
    rt_rwmutex_free(s.rw);
    rt_wg_free(s.wg);
}

RTTEST_CASE(test_rwmutex_timeouts, rw_timeouts_main)

struct rwadmit {
    rt_rwmutex *rw;
    rt_wg *wg;
    _Atomic int in, writer_holds, overlap;
};

static void rwa_reader(void *arg)
{
    struct rwadmit *s = arg;
    CHECK_EQ(rt_rwmutex_rlock(s->rw, RT_FOREVER), 0);
    if (atomic_load(&s->writer_holds))
        atomic_store(&s->overlap, 1);
    atomic_fetch_add(&s->in, 1);
    CHECK_EQ(rt_rwmutex_runlock(s->rw), 0);
    rt_wg_done(s->wg);
}

/* Readers that queued behind a writer are all let in by its Unlock (the
 * slow Unlock, taken because a reader flagged itself as queued), and the
 * lock is clean afterwards: the uncontended Lock and Unlock work again. */
static void rw_admit_main(void *arg)
{
    (void)arg;
    struct rwadmit s = {.rw = rt_rwmutex_new(), .wg = rt_wg_new()};
    for (int round = 0; round < 20; round++) {
        atomic_store(&s.in, 0);
        CHECK_EQ(rt_rwmutex_lock(s.rw, RT_FOREVER), 0);
        atomic_store(&s.writer_holds, 1);
        RTTEST_SPAWN(s.wg, 4, rwa_reader, &s);
        rt_sleep(ms(round % 2 ? 5 : 0)); /* queued, or maybe not yet */
        CHECK_EQ(atomic_load(&s.in), 0);
        atomic_store(&s.writer_holds, 0);
        CHECK_EQ(rt_rwmutex_unlock(s.rw), 0);
        CHECK_EQ(rt_wg_wait(s.wg, RT_FOREVER), 0);
        CHECK_EQ(atomic_load(&s.in), 4);
        CHECK(rt_rwmutex_trylock(s.rw));
        CHECK_EQ(rt_rwmutex_unlock(s.rw), 0);
        CHECK_EQ(rt_rwmutex_unlock(s.rw), RT_EWUNLOCK);
        CHECK_EQ(rt_rwmutex_runlock(s.rw), RT_ERUNLOCK);
    }
    CHECK_EQ(atomic_load(&s.overlap), 0);
    rt_rwmutex_free(s.rw);
    rt_wg_free(s.wg);
}

RTTEST_CASE(test_rwmutex_admit_queued_readers, rw_admit_main)

/* ---- WaitGroup ---- */

struct barrier {
    rt_wg *wg;
    _Atomic long n;
};

static void barrier_worker(void *arg)
{
    struct barrier *b = arg;
    atomic_fetch_add(&b->n, 1);
    CHECK(rt_wg_done(b->wg) >= 0);
}

static void wg_barrier_main(void *arg)
{
    (void)arg;
    struct barrier b = {.wg = rt_wg_new()};
    CHECK_EQ(rt_wg_wait(b.wg, RT_POLL), 0);   /* zero: no wait */
    for (int round = 0; round < 3; round++) { /* reusable after Wait */
        atomic_store(&b.n, 0);
        CHECK_EQ(rt_wg_add(b.wg, 1000), 1000);
        CHECK_EQ(rt_wg_wait(b.wg, RT_POLL), RT_EAGAIN);
        for (int i = 0; i < 1000; i++)
            CHECK_EQ(rt_go(barrier_worker, &b), 0);
        CHECK_EQ(rt_wg_wait(b.wg, RT_FOREVER), 0);
        CHECK_EQ(atomic_load(&b.n), 1000);
        CHECK_EQ(rt_wg_count(b.wg), 0);
    }
    rt_wg_free(b.wg);
}

RTTEST_CASE(test_wg_barrier, wg_barrier_main)

static void wg_errors_main(void *arg)
{
    (void)arg;
    rt_wg *wg = rt_wg_new();
    CHECK_EQ(rt_wg_add(wg, -1), RT_ENEGWG);
    CHECK_EQ(rt_wg_count(wg), 0); /* the failed Add left no trace */
    CHECK_EQ(rt_wg_add(wg, 2), 2);
    CHECK_EQ(rt_wg_add(wg, -3), RT_ENEGWG);
    CHECK_EQ(rt_wg_count(wg), 2);
    CHECK_EQ(rt_wg_done(wg), 1);
    /* A timed-out Wait unregisters itself: the next round is no reuse. */
    CHECK_EQ(rt_wg_wait(wg, rt_deadline_ms(20)), RT_ETIMEDOUT);
    CHECK_EQ(rt_wg_done(wg), 0);
    CHECK_EQ(rt_wg_done(wg), RT_ENEGWG);
    CHECK_EQ(rt_wg_add(wg, 1), 1);
    CHECK_EQ(rt_wg_done(wg), 0);
    CHECK_EQ(rt_wg_wait(wg, RT_FOREVER), 0);
    rt_wg_free(wg);
}

RTTEST_CASE(test_wg_errors, wg_errors_main)

struct wgrounds {
    rt_wg *wg, *back;
    _Atomic int early;
};

static void wgr_waiter(void *arg)
{
    struct wgrounds *r = arg;
    CHECK_EQ(rt_wg_wait(r->wg, RT_FOREVER), 0);
    if (rt_wg_count(r->wg) != 0)
        atomic_store(&r->early, 1);
    rt_wg_done(r->back);
}

static void wgr_worker(void *arg)
{
    struct wgrounds *r = arg;
    rt_gosched(); /* let the waiters register first, most rounds */
    CHECK(rt_wg_done(r->wg) >= 0);
}

/* Rounds of several waiters and workers on one WaitGroup: the Done that
 * releases registered waiters takes the slow path, and once every waiter
 * of a round has returned, the next round's Add is no reuse. */
static void wg_rounds_main(void *arg)
{
    (void)arg;
    struct wgrounds r = {.wg = rt_wg_new(), .back = rt_wg_new()};
    for (int round = 0; round < 300; round++) {
        CHECK_EQ(rt_wg_add(r.wg, 2), 2);
        RTTEST_SPAWN(r.back, 3, wgr_waiter, &r);
        for (int i = 0; i < 2; i++)
            CHECK_EQ(rt_go(wgr_worker, &r), 0);
        CHECK_EQ(rt_wg_wait(r.back, RT_FOREVER), 0);
        CHECK_EQ(rt_wg_count(r.wg), 0);
    }
    CHECK_EQ(atomic_load(&r.early), 0);
    rt_wg_free(r.wg);
    rt_wg_free(r.back);
}

RTTEST_CASE(test_wg_waiter_rounds, wg_rounds_main)

/* ---- Once ---- */

struct oncet {
    rt_once *o;
    rt_wg *wg;
    _Atomic int calls, done, ran, early;
};

static void once_f(void *arg)
{
    struct oncet *t = arg;
    atomic_fetch_add(&t->calls, 1);
    rt_sleep(ms(20)); /* the others must wait for this */
    atomic_store(&t->done, 1);
}

static void once_caller(void *arg)
{
    struct oncet *t = arg;
    int r = rt_once_do(t->o, once_f, t);
    CHECK(r == 0 || r == 1);
    atomic_fetch_add(&t->ran, r);
    if (!atomic_load(&t->done))
        atomic_fetch_add(&t->early, 1);
    rt_wg_done(t->wg);
}

static void once_main(void *arg)
{
    (void)arg;
    struct oncet t = {.o = rt_once_new(), .wg = rt_wg_new()};
    RTTEST_SPAWN(t.wg, 100, once_caller, &t);
    CHECK_EQ(rt_wg_wait(t.wg, RT_FOREVER), 0);
    CHECK_EQ(atomic_load(&t.calls), 1);
    CHECK_EQ(atomic_load(&t.ran), 1);
    CHECK_EQ(atomic_load(&t.early), 0);
    CHECK_EQ(rt_once_do(t.o, once_f, &t), 0);
    CHECK_EQ(atomic_load(&t.calls), 1);
    rt_once_free(t.o);
    rt_wg_free(t.wg);
}

RTTEST_CASE(test_once, once_main)

/* ---- Cond ---- */

#define PC_ITEMS 2000
#define PC_CAP 8

struct pc {
    rt_mutex *m;
    rt_cond *notempty, *notfull;
    rt_wg *wg;
    int buf[PC_CAP];
    int head, n;
    bool closed;
    long sum;
    int got;
};

static void pc_producer(void *arg)
{
    struct pc *q = arg;
    for (int i = 1; i <= PC_ITEMS; i++) {
        rt_mutex_lock(q->m, RT_FOREVER);
        while (q->n == PC_CAP)
            CHECK_EQ(rt_cond_wait(q->notfull, RT_FOREVER), 0);
        q->buf[(q->head + q->n) % PC_CAP] = i;
        q->n++;
        rt_cond_signal(q->notempty);
        rt_mutex_unlock(q->m);
    }
    rt_mutex_lock(q->m, RT_FOREVER);
    q->closed = true;
    rt_cond_broadcast(q->notempty);
    rt_mutex_unlock(q->m);
    rt_wg_done(q->wg);
}

static void pc_consumer(void *arg)
{
    struct pc *q = arg;
    for (;;) {
        rt_mutex_lock(q->m, RT_FOREVER);
        while (q->n == 0 && !q->closed)
            CHECK_EQ(rt_cond_wait(q->notempty, RT_FOREVER), 0);
        if (q->n == 0) {
            rt_mutex_unlock(q->m);
            break;
        }
        q->sum += q->buf[q->head];
        q->head = (q->head + 1) % PC_CAP;
        q->n--;
        q->got++;
        rt_cond_signal(q->notfull);
        rt_mutex_unlock(q->m);
    }
    rt_wg_done(q->wg);
}

static void cond_pc_main(void *arg)
{
    (void)arg;
    struct pc q = {.m = rt_mutex_new(), .wg = rt_wg_new()};
    q.notempty = rt_cond_new(rt_mutex_locker(q.m));
    q.notfull = rt_cond_new(rt_mutex_locker(q.m));
    rt_wg_add(q.wg, 4);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(rt_go(pc_consumer, &q), 0);
    CHECK_EQ(rt_go(pc_producer, &q), 0);
    CHECK_EQ(rt_wg_wait(q.wg, RT_FOREVER), 0);
    CHECK_EQ(q.got, PC_ITEMS);
    CHECK_EQ(q.sum, (long)PC_ITEMS * (PC_ITEMS + 1) / 2);
    rt_cond_free(q.notempty);
    rt_cond_free(q.notfull);
    rt_mutex_free(q.m);
    rt_wg_free(q.wg);
}

RTTEST_CASE(test_cond_producer_consumer, cond_pc_main)

struct bc {
    rt_locker L;
    rt_cond *c;
    rt_wg *wg;
    _Atomic int waiting, woke;
    bool flag;
};

static void bc_waiter(void *arg)
{
    struct bc *b = arg;
    CHECK_EQ(b->L.lock(b->L.obj, RT_FOREVER), 0);
    atomic_fetch_add(&b->waiting, 1);
    while (!b->flag)
        CHECK_EQ(rt_cond_wait(b->c, RT_FOREVER), 0);
    atomic_fetch_add(&b->woke, 1);
    CHECK_EQ(b->L.unlock(b->L.obj), 0);
    rt_wg_done(b->wg);
}

/* Broadcast wakes every waiter; L is the given locker (a Mutex, or the
 * read side of an RWMutex, whose writer sets the flag). */
static void bc_run(struct bc *b, rt_locker wl)
{
    b->c = rt_cond_new(b->L);
    RTTEST_SPAWN(b->wg, 10, bc_waiter, b);
    RTTEST_WAIT(atomic_load(&b->waiting) >= 10);
    /* Every waiter has the flag unset and is parked or about to be. */
    CHECK_EQ(wl.lock(wl.obj, RT_FOREVER), 0);
    b->flag = true;
    rt_cond_broadcast(b->c);
    CHECK_EQ(wl.unlock(wl.obj), 0);
    CHECK_EQ(rt_wg_wait(b->wg, RT_FOREVER), 0);
    CHECK_EQ(atomic_load(&b->woke), 10);
    rt_cond_free(b->c);
}

static void cond_broadcast_main(void *arg)
{
    (void)arg;
    rt_mutex *m = rt_mutex_new();
    struct bc b = {.L = rt_mutex_locker(m), .wg = rt_wg_new()};
    bc_run(&b, b.L);
    rt_mutex_free(m);

    rt_rwmutex *rw = rt_rwmutex_new();
    struct bc b2 = {.L = rt_rwmutex_rlocker(rw), .wg = rt_wg_new()};
    bc_run(&b2, rt_rwmutex_locker(rw));
    rt_rwmutex_free(rw);
    rt_wg_free(b.wg);
    rt_wg_free(b2.wg);
}

RTTEST_CASE(test_cond_broadcast, cond_broadcast_main)

struct cwait {
    rt_mutex *m;
    rt_cond *c;
    rt_cancel *tok;
    rt_wg *wg;
    int result;
    bool relocked;
    _Atomic int locked; /* the waiter holds m, and holds it until it waits */
};

static void cond_cancelled_waiter(void *arg)
{
    struct cwait *w = arg;
    rt_cancel_attach(w->tok);
    rt_mutex_lock(w->m, RT_FOREVER);
    atomic_store(&w->locked, 1);
    w->result = rt_cond_wait(w->c, RT_FOREVER);
    w->relocked = !rt_mutex_trylock(w->m); /* we hold it again */
    rt_mutex_unlock(w->m);
    rt_cancel_attach(NULL);
    rt_wg_done(w->wg);
}

static void cond_lost_and_timeout_main(void *arg)
{
    (void)arg;
    struct cwait w = {.m = rt_mutex_new(), .wg = rt_wg_new()};
    w.c = rt_cond_new(rt_mutex_locker(w.m));
    /* A signal with no waiter is lost: the later Wait times out. */
    rt_cond_signal(w.c);
    rt_cond_broadcast(w.c);
    CHECK_EQ(rt_mutex_lock(w.m, RT_FOREVER), 0);
    int64_t t0 = rt_now();
    CHECK_EQ(rt_cond_wait(w.c, rt_deadline_ms(30)), RT_ETIMEDOUT);
    CHECK(rt_now() - t0 >= ms(25));
    CHECK(!rt_mutex_trylock(w.m)); /* L held again after the timeout */
    CHECK_EQ(rt_mutex_unlock(w.m), 0);

    /* Cancelled while waiting: L is re-locked all the same. */
    w.tok = rt_cancel_new();
    RTTEST_SPAWN(w.wg, 1, cond_cancelled_waiter, &w);
    RTTEST_WAIT(atomic_load(&w.locked));
    /* Taking L waits until the waiter released it in Wait (a fixed sleep
     * here let a slow waiter find L taken, and its token fired, first). */
    CHECK_EQ(rt_mutex_lock(w.m, rt_deadline_ms(5000)), 0);
    rt_cancel_fire(w.tok);
    rt_sleep(ms(5));
    CHECK_EQ(rt_mutex_unlock(w.m), 0);
    CHECK_EQ(rt_wg_wait(w.wg, RT_FOREVER), 0);
    CHECK_EQ(w.result, RT_ECANCELED);
    CHECK(w.relocked);
    rt_cancel_free(w.tok);
    rt_cond_free(w.c);
    rt_mutex_free(w.m);
    rt_wg_free(w.wg);
}

RTTEST_CASE(test_cond_lost_signal_timeout_cancel, cond_lost_and_timeout_main)

/* ---- Pool ---- */

static _Atomic int pool_news;

static void *pool_new_obj(void *arg)
{
    (void)arg;
    atomic_fetch_add(&pool_news, 1);
    return malloc(64);
}

struct poolt {
    rt_pool *p;
    rt_wg *wg;
};

static void pool_worker(void *arg)
{
    struct poolt *t = arg;
    for (int i = 0; i < 10000; i++) {
        void *x = rt_pool_get(t->p);
        CHECK(x != NULL);
        memset(x, i & 0xff, 64); /* nobody else may be using it */
        for (int k = 0; k < 64; k++)
            if (((unsigned char *)x)[k] != (i & 0xff))
                CHECK(!"object shared between two holders");
        rt_pool_put(t->p, x);
        if (i % 100 == 0)
            rt_gosched();
    }
    rt_wg_done(t->wg);
}

static void *pool_foreign(void *arg)
{
    rt_pool *p = arg;
    for (int i = 0; i < 1000; i++)
        rt_pool_put(p, rt_pool_get(p));
    return NULL;
}

static void pool_main(void *arg)
{
    (void)arg;
    atomic_store(&pool_news, 0);
    struct poolt t = {.p = rt_pool_new(pool_new_obj, NULL), .wg = rt_wg_new()};
    void *a = rt_pool_get(t.p);
    CHECK_EQ(atomic_load(&pool_news), 1); /* empty: New was called */
    rt_pool_put(t.p, a);
    void *b = rt_pool_get(t.p);
    CHECK(b == a); /* reused */
    CHECK_EQ(atomic_load(&pool_news), 1);
    rt_pool_put(t.p, b);

    RTTEST_SPAWN(t.wg, 4, pool_worker, &t);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, pool_foreign, t.p), 0);
    CHECK_EQ(rt_wg_wait(t.wg, RT_FOREVER), 0);
    pthread_join(th, NULL);
    /* Objects were reused: far fewer were made than were asked for. */
    CHECK(atomic_load(&pool_news) <= 64);
    rt_pool_free(t.p, free);

    rt_pool *empty = rt_pool_new(NULL, NULL);
    CHECK(rt_pool_get(empty) == NULL);
    rt_pool_free(empty, NULL);
    rt_wg_free(t.wg);
}

RTTEST_CASE(test_pool, pool_main)

/* ---- atomics ---- */

struct att {
    rt_atomic_int64 cas_counter;
    rt_atomic_uint32 add_counter;
    rt_wg *wg;
};

static void atomic_worker(void *arg)
{
    struct att *t = arg;
    for (int i = 0; i < 100000; i++) {
        int64_t old;
        do {
            old = rt_atomic_load_int64(&t->cas_counter);
        } while (!rt_atomic_cas_int64(&t->cas_counter, old, old + 1));
        rt_atomic_add_uint32(&t->add_counter, 1);
    }
    rt_wg_done(t->wg);
}

static void atomics_main(void *arg)
{
    (void)arg;
    struct att t = {.wg = rt_wg_new()};
    rt_atomic_store_int64(&t.cas_counter, 0);
    rt_atomic_store_uint32(&t.add_counter, UINT32_MAX - 99999); /* wraps */
    RTTEST_SPAWN(t.wg, 4, atomic_worker, &t);
    CHECK_EQ(rt_wg_wait(t.wg, RT_FOREVER), 0);
    CHECK_EQ(rt_atomic_load_int64(&t.cas_counter), 400000);
    CHECK_EQ(rt_atomic_load_uint32(&t.add_counter), 300000);
    rt_wg_free(t.wg);
}

RTTEST_CASE(test_atomics_concurrent, atomics_main)

static void test_atomics_wrap(void **state)
{
    (void)state;
    rt_atomic_int32 i32 = INT32_MAX;
    assert_int_equal(rt_atomic_add_int32(&i32, 1), INT32_MIN);
    assert_int_equal(rt_atomic_add_int32(&i32, -1), INT32_MAX);
    rt_atomic_int64 i64 = INT64_MIN;
    assert_true(rt_atomic_add_int64(&i64, -1) == INT64_MAX);
    rt_atomic_uint32 u32 = 0;
    assert_true(rt_atomic_add_uint32(&u32, (uint32_t)-1) == UINT32_MAX);
    rt_atomic_uint64 u64 = UINT64_MAX;
    assert_true(rt_atomic_add_uint64(&u64, 2) == 1);

    assert_int_equal(rt_atomic_swap_int32(&i32, 7), INT32_MAX);
    assert_false(rt_atomic_cas_int32(&i32, 8, 9));
    assert_true(rt_atomic_cas_int32(&i32, 7, 9));
    assert_int_equal(rt_atomic_load_int32(&i32), 9);
    assert_int_equal(rt_atomic_and_int32(&i32, 8), 9); /* returns old */
    assert_int_equal(rt_atomic_or_int32(&i32, 3), 8);
    assert_int_equal(rt_atomic_load_int32(&i32), 11);
    rt_atomic_store_uint64(&u64, 0xf0);
    assert_true(rt_atomic_and_uint64(&u64, 0x3c) == 0xf0);
    assert_true(rt_atomic_or_uint64(&u64, 1) == 0x30);
    assert_true(rt_atomic_load_uint64(&u64) == 0x31);

    int a, b;
    rt_atomic_ptr p = NULL;
    assert_null(rt_atomic_swap_ptr(&p, &a));
    assert_false(rt_atomic_cas_ptr(&p, &b, &b));
    assert_true(rt_atomic_cas_ptr(&p, &a, &b));
    assert_ptr_equal(rt_atomic_load_ptr(&p), &b);

    rt_atomic_value v = RT_ATOMIC_VALUE_INIT;
    assert_null(rt_atomic_value_load(&v));
    rt_atomic_value_store(&v, &a);
    assert_ptr_equal(rt_atomic_value_load(&v), &a);
    assert_ptr_equal(rt_atomic_value_swap(&v, &b), &a);
    assert_false(rt_atomic_value_cas(&v, &a, NULL));
    assert_true(rt_atomic_value_cas(&v, &b, &a));
    assert_ptr_equal(rt_atomic_value_load(&v), &a);
}

/* ---- Go's error texts ---- */

static void test_error_texts(void **state)
{
    (void)state;
    rttest_assert_sync_error_texts();
}

/* ---- foreign threads: non-blocking calls work, blocking ones refuse ---- */

struct foreign {
    rt_mutex *m;
    rt_wg *wg;
    rt_cond *c;
    int lock_r, wait_r, unlock_r;
};

static void *foreign_thread(void *arg)
{
    struct foreign *f = arg;
    f->lock_r = rt_mutex_lock(f->m, RT_FOREVER); /* held: cannot park */
    f->wait_r = rt_wg_wait(f->wg, RT_FOREVER);
    f->unlock_r = rt_mutex_unlock(f->m); /* any thread may unlock */
    rt_cond_broadcast(f->c);
    rt_wg_done(f->wg);
    return NULL;
}

static void foreign_main(void *arg)
{
    (void)arg;
    struct foreign f = {.m = rt_mutex_new(), .wg = rt_wg_new()};
    f.c = rt_cond_new(rt_mutex_locker(f.m));
    CHECK_EQ(rt_mutex_lock(f.m, RT_FOREVER), 0);
    rt_wg_add(f.wg, 1);
    pthread_t th;
    rt_ref();
    CHECK_EQ(pthread_create(&th, NULL, foreign_thread, &f), 0);
    CHECK_EQ(rt_wg_wait(f.wg, rt_deadline_ms(10000)), 0);
    rt_unref();
    pthread_join(th, NULL);
    CHECK_EQ(f.lock_r, RT_EPERM);
    CHECK_EQ(f.wait_r, RT_EPERM);
    CHECK_EQ(f.unlock_r, 0);
    CHECK(rt_mutex_trylock(f.m));
    CHECK_EQ(rt_mutex_unlock(f.m), 0);
    rt_cond_free(f.c);
    rt_mutex_free(f.m);
    rt_wg_free(f.wg);
}

RTTEST_CASE(test_foreign_thread, foreign_main)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mutex_exclusion),
        cmocka_unit_test(test_mutex_trylock),
        cmocka_unit_test(test_mutex_starvation),
        cmocka_unit_test(test_mutex_deadline_cancel),
        cmocka_unit_test(test_rwmutex_basic),
        cmocka_unit_test(test_rwmutex_exclusive),
        cmocka_unit_test(test_rwmutex_writer_not_starved),
        cmocka_unit_test(test_rwmutex_timeouts),
        cmocka_unit_test(test_rwmutex_admit_queued_readers),
        cmocka_unit_test(test_wg_barrier),
        cmocka_unit_test(test_wg_errors),
        cmocka_unit_test(test_wg_waiter_rounds),
        cmocka_unit_test(test_once),
        cmocka_unit_test(test_cond_producer_consumer),
        cmocka_unit_test(test_cond_broadcast),
        cmocka_unit_test(test_cond_lost_signal_timeout_cancel),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_atomics_concurrent),
        cmocka_unit_test(test_atomics_wrap),
        cmocka_unit_test(test_error_texts),
        cmocka_unit_test(test_foreign_thread),
    };
    return cmocka_run_group_tests_name("sync", tests, NULL, NULL);
}
