/*
 * wg.c - sync.WaitGroup: rt_wg_*.
 *
 * As Go's (sync/waitgroup.go): one 64-bit word holds the counter (high 32
 * bits, signed) and the number of registered waiters (low 32 bits), so Add
 * and Done are one atomic add and a Wait on a zero counter is one load.
 * Waiters register (increment the low half) and queue; the Add that
 * brings the counter to zero with waiters registered wakes them all and
 * clears the waiter count.  A waiter that times out or is cancelled
 * unregisters itself if it is still queued.
 *
 * Freeing: as in Go, a WaitGroup may be freed as soon as Wait returns,
 * while the goroutine whose Done released it is still inside rt_wg_add.
 * So the releaser must not touch the WaitGroup once the word reads zero:
 * the lock guarding the queue lives outside it, in a small table hashed
 * by address (Go's semtable plays that role), and the releaser pops every
 * waiter, then clears the waiter count (after which a fast-path Wait may
 * return and free), then only unlocks the table's lock and readies the
 * popped goroutines.  A Wait that finds the counter zero but waiters
 * still registered (a release in progress) queues too, and the release
 * wakes it with the others.
 *
 * Errors are returned instead of Go's panics, and the word is restored so
 * the WaitGroup stays usable: a negative counter (RT_ENEGWG), and an Add
 * from zero while the previous round's waiters have not been released yet
 * (RT_EWGREUSE, Go's "WaitGroup is reused before previous Wait has
 * returned" / "Add called concurrently with Wait").
 */
#include "rt_internal.h"

#include <sched.h>
#include <stdlib.h>

#define WG_WAITERS 0xffffffffull
#define WG_COUNT(s) ((int32_t)(uint32_t)((s) >> 32))
#define WG_LOCKS 64

struct rt_wg {
    _Atomic uint64_t state;
    rt__waitq waiters; /* guarded by wg_lock_of(wg) */
};

static struct {
    rt__lock l;
} __attribute__((aligned(64))) wg_locks[WG_LOCKS];

static rt__lock *wg_lock_of(const rt_wg *wg)
{
    uintptr_t a = (uintptr_t)wg;
    return &wg_locks[((a >> 4) ^ (a >> 10)) % WG_LOCKS].l;
}

rt_wg *rt_wg_new(void)
{
    return calloc(1, sizeof(rt_wg));
}

void rt_wg_free(rt_wg *wg)
{
    free(wg);
}

/* Releases every registered waiter.  The counter just reached zero. */
static void wg_release(rt_wg *wg)
{
    rt__lock *l = wg_lock_of(wg);
    rt__waiter *chain = NULL, **tail = &chain, *w;
    rt__lock_acquire(l);
    /* Waiters register only under l, so none can join meanwhile; those
     * that timed out are skipped by pop_claim.  A popped waiter is ours
     * until we ready it: its links are free for our chain. */
    while ((w = rt__waitq_pop_claim(&wg->waiters)) != NULL) {
        w->result = 0;
        w->next = NULL;
        *tail = w;
        tail = &w->next;
    }
    /* From here on wg may be freed by a Wait that sees zero. */
    atomic_fetch_and(&wg->state, ~WG_WAITERS);
    rt__lock_release(l);
    while (chain) {
        w = chain;
        chain = w->next;
        rt__ready(w->g);
    }
}

/* The rest of an Add whose new state s has waiters registered or a
 * negative counter.  Out of line so that the common Add (no waiter, no
 * error) is one atomic add in a function without a frame. */
static __attribute__((noinline)) int64_t wg_add_slow(rt_wg *wg, int64_t delta,
                                                     uint64_t s)
{
    uint64_t d = (uint64_t)delta << 32;
    int32_t v = WG_COUNT(s);
    uint32_t w = (uint32_t)(s & WG_WAITERS);
    if (v < 0) {
        atomic_fetch_sub(&wg->state, d);
        return RT_ENEGWG;
    }
    if (w != 0 && delta > 0 && (int64_t)v == delta) {
        /* The counter was zero with waiters not yet released. */
        atomic_fetch_sub(&wg->state, d);
        return RT_EWGREUSE;
    }
    if (v == 0 && w != 0)
        wg_release(wg);
    return v;
}

int64_t rt_wg_add(rt_wg *wg, int64_t delta)
{
    if (delta > INT32_MAX || delta < INT32_MIN)
        return RT_EINVAL;
    uint64_t d = (uint64_t)delta << 32;
    uint64_t s = atomic_fetch_add(&wg->state, d) + d;
    if (__builtin_expect((s & WG_WAITERS) == 0 && WG_COUNT(s) >= 0, 1))
        return WG_COUNT(s);
    return wg_add_slow(wg, delta, s);
}

int64_t rt_wg_done(rt_wg *wg)
{
    return rt_wg_add(wg, -1);
}

int64_t rt_wg_count(rt_wg *wg)
{
    return WG_COUNT(atomic_load(&wg->state));
}

/* A Wait that found the counter or the waiter count non-zero. */
static __attribute__((noinline)) int wg_wait_slow(rt_wg *wg, rt_deadline_t dl,
                                                  uint64_t s)
{
    /* A zero counter with waiters registered is a release in progress:
     * returning now would let the caller free wg under the releaser. */
    if (dl == RT_POLL)
        return RT_EAGAIN;
    if (!rt_in_goroutine()) {
        while (WG_COUNT(s) == 0 && s != 0) {
            sched_yield();
            s = atomic_load(&wg->state);
        }
        return s == 0 ? 0 : RT_EPERM;
    }
    rt__lock *l = wg_lock_of(wg);
    rt__lock_acquire(l);
    s = atomic_load(&wg->state);
    for (;;) {
        if (s == 0) {
            rt__lock_release(l);
            return 0;
        }
        if (atomic_compare_exchange_weak(&wg->state, &s, s + 1))
            break;
    }
    rt__waiter w;
    rt__waiter_init(&w);
    w.result = 0;
    rt__waitq_push(&wg->waiters, &w);
    int r = rt__park(&w, 1, dl, l, "sync.WaitGroup.Wait");
    if (r != 0) {
        rt__lock_acquire(l);
        if (w.queued) {
            rt__waitq_remove(&wg->waiters, &w);
            atomic_fetch_sub(&wg->state, 1);
        }
        rt__lock_release(l);
    }
    return r;
}

int rt_wg_wait(rt_wg *wg, rt_deadline_t dl)
{
    uint64_t s = atomic_load(&wg->state);
    if (s == 0)
        return 0;
    return wg_wait_slow(wg, dl, s);
}
