/*
 * wg.c - sync.WaitGroup: rt_wg_*.
 *
 * As Go's (sync/waitgroup.go): one 64-bit word holds the counter (high 32
 * bits, signed) and the number of registered waiters (low 32 bits), so Add
 * and Done are one atomic add and a Wait on a zero counter is one load.
 * Waiters register (increment the low half) and queue under wg->lock; the
 * Add that brings the counter to zero with waiters registered clears the
 * waiter count and wakes them all, also under wg->lock.  A waiter that
 * times out or is cancelled unregisters itself if it is still queued.
 *
 * Errors are returned instead of Go's panics, and the word is restored so
 * the WaitGroup stays usable: a negative counter (RT_ENEGWG), and an Add
 * from zero while the previous round's waiters have not been released yet
 * (RT_EWGREUSE, Go's "WaitGroup is reused before previous Wait has
 * returned" / "Add called concurrently with Wait").
 */
#include "rt_internal.h"

#include <stdlib.h>

#define WG_WAITERS 0xffffffffull
#define WG_COUNT(s) ((int32_t)(uint32_t)((s) >> 32))

struct rt_wg {
    _Atomic uint64_t state;
    rt__lock lock;
    rt__waitq waiters;
};

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
    rt_g *batch[64];
    rt__lock_acquire(&wg->lock);
    /* Waiters register only under wg->lock, so none can join now; those
     * that timed out are skipped by pop_claim. */
    atomic_fetch_and(&wg->state, ~WG_WAITERS);
    for (;;) {
        int n = 0;
        rt__waiter *w;
        while (n < 64 && (w = rt__waitq_pop_claim(&wg->waiters)) != NULL) {
            w->result = 0;
            batch[n++] = w->g;
        }
        for (int i = 0; i < n; i++)
            rt__ready(batch[i]);
        if (n < 64)
            break;
    }
    rt__lock_release(&wg->lock);
}

int64_t rt_wg_add(rt_wg *wg, int64_t delta)
{
    if (delta > INT32_MAX || delta < INT32_MIN)
        return RT_EINVAL;
    uint64_t d = (uint64_t)delta << 32;
    uint64_t s = atomic_fetch_add(&wg->state, d) + d;
    int32_t v = WG_COUNT(s);
    uint32_t w = (uint32_t)(s & WG_WAITERS);
    int64_t old = (int64_t)v - delta;
    if (v < 0) {
        atomic_fetch_sub(&wg->state, d);
        return RT_ENEGWG;
    }
    if (w != 0 && delta > 0 && old == 0) {
        /* The counter was zero with waiters not yet released. */
        atomic_fetch_sub(&wg->state, d);
        return RT_EWGREUSE;
    }
    if (v == 0 && w != 0)
        wg_release(wg);
    return v;
}

int64_t rt_wg_done(rt_wg *wg)
{
    return rt_wg_add(wg, -1);
}

int64_t rt_wg_count(rt_wg *wg)
{
    return WG_COUNT(atomic_load(&wg->state));
}

int rt_wg_wait(rt_wg *wg, rt_deadline_t dl)
{
    uint64_t s = atomic_load(&wg->state);
    if (WG_COUNT(s) == 0)
        return 0;
    if (dl == RT_POLL)
        return RT_EAGAIN;
    if (!rt_in_goroutine())
        return RT_EPERM;
    rt__lock_acquire(&wg->lock);
    s = atomic_load(&wg->state);
    for (;;) {
        if (WG_COUNT(s) == 0) {
            rt__lock_release(&wg->lock);
            return 0;
        }
        if (atomic_compare_exchange_weak(&wg->state, &s, s + 1))
            break;
    }
    rt__waiter w;
    rt__waiter_init(&w);
    w.result = 0;
    rt__waitq_push(&wg->waiters, &w);
    int r = rt__park(&w, 1, dl, &wg->lock, "sync.WaitGroup.Wait");
    if (r != 0) {
        rt__lock_acquire(&wg->lock);
        if (w.queued) {
            rt__waitq_remove(&wg->waiters, &w);
            atomic_fetch_sub(&wg->state, 1);
        }
        rt__lock_release(&wg->lock);
    }
    return r;
}
