/*
 * timer.c - the runtime's internal timers (rt__timer) and the clock.
 *
 * One 4-ary min-heap ordered by `when`, under one lock: O(log n) start and
 * stop, so 100k pending timers cost nothing while they wait.  Timers fire
 * on scheduler threads: an M checks the heap each time it schedules, and
 * the first M to go idle while timers are armed sleeps only until the
 * earliest one (sched.c).  A callback runs with the heap unlocked and the
 * timer marked RUNNING; rt__timer_stop waits for a running callback to
 * return, which is what lets its caller free the timer right after.
 */
#include "rt_sched.h"

#include <sched.h>
#include <stdlib.h>
#include <time.h>

enum { T_PENDING = 1, T_RUNNING = 2 };

static rt__lock tlock;
static rt__timer **heap;
static int32_t nheap, capheap;
static _Atomic int64_t next_when = -1;
static _Atomic int64_t ntimers;
static _Atomic int64_t nrunning;
static __thread rt__timer *tls_running;

int64_t rt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + 1;
}

rt_deadline_t rt_deadline_ms(int64_t ms)
{
    if (ms < 0)
        return RT_FOREVER;
    if (ms == 0)
        return RT_POLL;
    return rt_now() + ms * 1000000;
}

static void heap_set(int32_t i, rt__timer *t)
{
    heap[i] = t;
    t->heap_index = i;
}

static void sift_up(int32_t i)
{
    rt__timer *t = heap[i];
    while (i > 0) {
        int32_t parent = (i - 1) / 4;
        if (heap[parent]->when <= t->when)
            break;
        heap_set(i, heap[parent]);
        i = parent;
    }
    heap_set(i, t);
}

static void sift_down(int32_t i)
{
    rt__timer *t = heap[i];
    for (;;) {
        int32_t c = 4 * i + 1;
        if (c >= nheap)
            break;
        int32_t best = c;
        for (int32_t k = c + 1; k < c + 4 && k < nheap; k++)
            if (heap[k]->when < heap[best]->when)
                best = k;
        if (heap[best]->when >= t->when)
            break;
        heap_set(i, heap[best]);
        i = best;
    }
    heap_set(i, t);
}

static void heap_remove(rt__timer *t)
{
    int32_t i = t->heap_index;
    nheap--;
    if (i != nheap) {
        rt__timer *moved = heap[nheap];
        heap_set(i, moved);
        sift_up(i);
        if (moved->heap_index == i)
            sift_down(i);
    }
    t->heap_index = -1;
    atomic_fetch_sub(&ntimers, 1);
}

static void update_next(void)
{
    atomic_store(&next_when, nheap > 0 ? heap[0]->when : -1);
}

void rt__timer_init(rt__timer *t, void (*fn)(rt__timer *, int64_t), void *arg)
{
    t->when = 0;
    t->period = 0;
    t->fn = fn;
    t->arg = arg;
    atomic_store(&t->status, 0);
    t->heap_index = -1;
    t->heap_p = -1;
}

void rt__timer_start(rt__timer *t, int64_t when, int64_t period)
{
    rt__lock_acquire(&tlock);
    t->period = period > 0 ? period : 0;
    t->when = when;
    int st = atomic_load_explicit(&t->status, memory_order_relaxed);
    if (st & T_PENDING) {
        sift_up(t->heap_index);
        sift_down(t->heap_index);
    } else {
        if (nheap == capheap) {
            int32_t nc = capheap ? capheap * 2 : 64;
            rt__timer **nh = realloc(heap, (size_t)nc * sizeof(*nh));
            if (!nh) {
                /* Out of memory: fire at once rather than never. */
                rt__lock_release(&tlock);
                abort();
            }
            heap = nh;
            capheap = nc;
        }
        heap_set(nheap, t);
        nheap++;
        sift_up(nheap - 1);
        atomic_store_explicit(&t->status, st | T_PENDING, memory_order_relaxed);
        atomic_fetch_add(&ntimers, 1);
    }
    bool earliest = heap[0] == t;
    update_next();
    rt__lock_release(&tlock);
    if (earliest)
        rt__sched_timer_added(when);
}

bool rt__timer_stop(rt__timer *t)
{
    rt__lock_acquire(&tlock);
    int st = atomic_load_explicit(&t->status, memory_order_relaxed);
    bool was = st & T_PENDING;
    if (was) {
        heap_remove(t);
        atomic_store_explicit(&t->status, st & ~T_PENDING,
                              memory_order_relaxed);
        update_next();
    }
    /* A callback running on another thread must finish before the caller
     * may free t; callbacks are short and never block. */
    while (
        (atomic_load_explicit(&t->status, memory_order_relaxed) & T_RUNNING) &&
        tls_running != t) {
        rt__lock_release(&tlock);
        sched_yield();
        rt__lock_acquire(&tlock);
    }
    rt__lock_release(&tlock);
    return was;
}

int64_t rt__timer_count(void)
{
    return atomic_load(&ntimers);
}
int64_t rt__timers_running(void)
{
    return atomic_load(&nrunning);
}

int64_t rt__timer_next(void)
{
    if (atomic_load_explicit(&ntimers, memory_order_relaxed) == 0)
        return -1;
    return atomic_load(&next_when);
}

void rt__timers_run(int64_t now)
{
    rt__lock_acquire(&tlock);
    while (nheap > 0 && heap[0]->when <= now) {
        rt__timer *t = heap[0];
        int st = atomic_load_explicit(&t->status, memory_order_relaxed);
        if (st & T_RUNNING)
            break; /* its previous period still runs elsewhere */
        if (t->period > 0) {
            int64_t w = t->when + t->period;
            if (w <= now)
                w += t->period * (1 + (now - w) / t->period);
            t->when = w;
            sift_down(0);
        } else {
            heap_remove(t);
            st &= ~T_PENDING;
        }
        atomic_store_explicit(&t->status, st | T_RUNNING, memory_order_relaxed);
        atomic_fetch_add(&nrunning, 1);
        update_next();
        rt__lock_release(&tlock);
        tls_running = t;
        t->fn(t, now);
        tls_running = NULL;
        rt__lock_acquire(&tlock);
        atomic_fetch_and_explicit(&t->status, ~T_RUNNING, memory_order_relaxed);
        atomic_fetch_sub(&nrunning, 1);
    }
    rt__lock_release(&tlock);
}

void rt__timers_reset(void)
{
    rt__lock_acquire(&tlock);
    for (int32_t i = 0; i < nheap; i++) {
        atomic_store(&heap[i]->status, 0);
        heap[i]->heap_index = -1;
    }
    nheap = 0;
    atomic_store(&ntimers, 0);
    atomic_store(&nrunning, 0);
    update_next();
    free(heap);
    heap = NULL;
    capheap = 0;
    rt__lock_release(&tlock);
}
