/*
 * mutex.c - sync.Mutex: rt_mutex_* and the Locker adapters for Cond.
 *
 * The design is Go's (sync/mutex.go) on the runtime's wait protocol:
 * one atomic state word carries the lock bit and three flags, so that an
 * uncontended Lock and Unlock are one compare-and-swap each; contended
 * callers spin briefly (when another P may release the lock soon), then
 * queue on a wait queue guarded by a short internal lock and park with
 * rt__park, which gives them deadlines and cancellation for free.
 *
 * Two modes, as Go's:
 * - normal: Unlock releases the lock and wakes the head waiter, which
 *   competes with newcomers (newcomers are on a CPU and usually win, which
 *   is good for throughput).  A waiter that loses is re-queued at the head.
 * - starvation: once a waiter has waited more than 1 ms it sets STARVING;
 *   from then on Unlock hands the lock directly to the head waiter and
 *   newcomers queue at the tail without trying.  The mode ends when the
 *   waiter handed the lock is the last one or waited less than 1 ms.
 *   The unlocker also starts it when the head waiter has waited that
 *   long: a woken waiter readied into the unlocker's run-next slot may
 *   not get a CPU to notice by itself (there is no preemption here), and
 *   for the same reason an unlocker yields its P to a woken waiter that
 *   has waited for a CPU longer than 1 ms.
 *
 * WAITERS is "the queue is not empty", maintained under m->lock.  WOKEN
 * says a waiter has been woken and is on its way to retry: Unlock does not
 * wake another one meanwhile (no herd), and the woken waiter clears it.
 */
#include "rt_internal.h"

#include <sched.h>
#include <stdlib.h>

enum {
    MU_LOCKED = 1u,
    MU_STARVING = 2u,
    MU_WAITERS = 4u,
    MU_WOKEN = 8u,
};

/* Results a waker leaves in the waiter. */
enum { MU_RETRY = 1, MU_HANDOFF = 2 };

#define MU_STARVE_NS 1000000 /* Go's starvationThresholdNs */
#define MU_SPIN_ROUNDS 4     /* Go's active_spin */
#define MU_SPIN_PAUSES 30    /* Go's active_spin_cnt */

struct rt_mutex {
    _Atomic uint32_t state;
    rt__lock lock; /* guards waiters and the WAITERS flag */
    rt__waitq waiters;
    _Atomic int64_t woken_at; /* when WOKEN was last set */
};

static inline void mu_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

rt_mutex *rt_mutex_new(void)
{
    return calloc(1, sizeof(rt_mutex));
}

void rt_mutex_free(rt_mutex *m)
{
    free(m);
}

/* Pushes w at the head of q: a waiter that was woken and lost the race
 * keeps its place in line (Go's queueLifo). */
static void mu_push_front(rt__waitq *q, rt__waiter *w)
{
    if (q->head == NULL) {
        rt__waitq_push(q, w);
        return;
    }
    w->prev = NULL;
    w->next = q->head;
    q->head->prev = w;
    q->head = w;
    w->queued = true;
}

/* Clears the WAITERS flag if the queue drained.  Called under m->lock. */
static void mu_sync_waiters(rt_mutex *m)
{
    if (rt__waitq_empty(&m->waiters))
        atomic_fetch_and(&m->state, ~MU_WAITERS);
}

/* Spins while the holder is likely running on another P: parking costs a
 * thread wake-up (~15 us), a spin costs a few hundred ns.  Returns true
 * with the lock held. */
static bool mu_spin(rt_mutex *m)
{
    if (rt__nprocs() < 2)
        return false;
    for (int i = 0; i < MU_SPIN_ROUNDS; i++) {
        for (int j = 0; j < MU_SPIN_PAUSES; j++)
            mu_pause();
        uint32_t s = atomic_load_explicit(&m->state, memory_order_relaxed);
        if (s & MU_STARVING)
            return false;
        if (!(s & MU_LOCKED) &&
            atomic_compare_exchange_weak(&m->state, &s, s | MU_LOCKED))
            return true;
    }
    return false;
}

/* The contended path of Lock (see the file comment). */
static int mu_lock_slow(rt_mutex *m, rt_deadline_t dl)
{
    uint32_t s = atomic_load_explicit(&m->state, memory_order_relaxed);
    /* A free, non-starving lock is taken even with RT_POLL (TryLock). */
    while (!(s & (MU_LOCKED | MU_STARVING))) {
        if (atomic_compare_exchange_weak(&m->state, &s, s | MU_LOCKED))
            return 0;
    }
    if (dl == RT_POLL)
        return RT_EAGAIN;
    if (!rt_in_goroutine())
        return RT_EPERM;
    if (mu_spin(m))
        return 0;

    int64_t start = 0;  /* when we first queued; 0 before that */
    bool woken = false; /* we own the WOKEN flag and must clear it */
    for (;;) {
        rt__lock_acquire(&m->lock);
        int64_t now = rt_now();
        if (start == 0)
            start = now;
        bool starving = now - start > MU_STARVE_NS;
        s = atomic_load_explicit(&m->state, memory_order_relaxed);
        for (;;) {
            uint32_t ns = woken ? (s & ~MU_WOKEN) : s;
            if (!(s & (MU_LOCKED | MU_STARVING))) {
                if (atomic_compare_exchange_weak(&m->state, &s,
                                                 ns | MU_LOCKED)) {
                    rt__lock_release(&m->lock);
                    return 0;
                }
                continue;
            }
            ns |= MU_WAITERS;
            /* Only a waiter that still cannot get a held lock starts
             * starvation mode (Go: starving && old&mutexLocked). */
            if (starving && (s & MU_LOCKED))
                ns |= MU_STARVING;
            if (atomic_compare_exchange_weak(&m->state, &s, ns))
                break;
        }
        woken = false;
        if (dl != RT_FOREVER && now >= dl) {
            mu_sync_waiters(m);
            rt__lock_release(&m->lock);
            return RT_ETIMEDOUT;
        }

        rt__waiter w;
        rt__waiter_init(&w);
        w.arg = (uintptr_t)start;
        w.result = 0;
        if (start != now)
            mu_push_front(&m->waiters, &w);
        else
            rt__waitq_push(&m->waiters, &w);
        int r = rt__park(&w, 1, dl, &m->lock, "sync.Mutex.Lock");
        if (r != 0) {
            rt__lock_acquire(&m->lock);
            rt__waitq_remove(&m->waiters, &w);
            mu_sync_waiters(m);
            /* The last waiter leaving ends starvation mode: nobody is left
             * to hand the lock to. */
            if (rt__waitq_empty(&m->waiters))
                atomic_fetch_and(&m->state, ~MU_STARVING);
            rt__lock_release(&m->lock);
            return r;
        }
        if (w.result == MU_HANDOFF)
            return 0; /* the unlocker left LOCKED set for us */
        woken = true; /* MU_RETRY: compete again, clearing WOKEN */
    }
}

int rt_mutex_lock(rt_mutex *m, rt_deadline_t dl)
{
    uint32_t s = 0;
    if (atomic_compare_exchange_strong(&m->state, &s, MU_LOCKED))
        return 0;
    return mu_lock_slow(m, dl);
}

bool rt_mutex_trylock(rt_mutex *m)
{
    uint32_t s = atomic_load_explicit(&m->state, memory_order_relaxed);
    while (!(s & (MU_LOCKED | MU_STARVING))) {
        if (atomic_compare_exchange_weak(&m->state, &s, s | MU_LOCKED))
            return true;
    }
    return false;
}

/* Unlock in starvation mode: the lock goes straight to the head waiter. */
static int mu_unlock_starving(rt_mutex *m)
{
    rt__lock_acquire(&m->lock);
    uint32_t s = atomic_load(&m->state);
    if (!(s & MU_LOCKED)) {
        rt__lock_release(&m->lock);
        return RT_EUNLOCK;
    }
    rt__waiter *w = rt__waitq_pop_claim(&m->waiters);
    rt_g *g = NULL;
    if (w) {
        int64_t start = (int64_t)w->arg;
        w->result = MU_HANDOFF;
        g = w->g;
        mu_sync_waiters(m);
        if (rt__waitq_empty(&m->waiters) || rt_now() - start < MU_STARVE_NS)
            atomic_fetch_and(&m->state, ~MU_STARVING);
    } else {
        atomic_fetch_and(&m->state, ~(MU_LOCKED | MU_STARVING | MU_WAITERS));
    }
    rt__lock_release(&m->lock);
    if (g)
        rt__ready(g);
    return 0;
}

/* A woken waiter is readied into our P's run-next slot: if we never
 * block, and no idle P steals it, it never runs to retry (no preemption
 * here, unlike Go).  Once it has waited for a CPU for longer than the
 * starvation threshold, the unlocker yields its P to it. */
static void mu_yield_to_woken(rt_mutex *m)
{
    int64_t t = atomic_load_explicit(&m->woken_at, memory_order_relaxed);
    if (rt_now() - t > MU_STARVE_NS && rt_in_goroutine())
        rt_gosched();
}

static int mu_unlock_slow(rt_mutex *m, bool may_yield)
{
    uint32_t s = atomic_load(&m->state);
    for (;;) {
        if (!(s & MU_LOCKED))
            return RT_EUNLOCK;
        if (s & MU_STARVING)
            return mu_unlock_starving(m);
        if ((s & MU_WAITERS) && !(s & MU_WOKEN))
            break; /* someone to wake: decide how under m->lock */
        if (atomic_compare_exchange_weak(&m->state, &s, s & ~MU_LOCKED)) {
            if ((s & MU_WOKEN) && may_yield)
                mu_yield_to_woken(m);
            return 0;
        }
    }
    rt__lock_acquire(&m->lock);
    /* The unlocker, too, starts starvation mode when the head waiter has
     * waited too long: a woken waiter may not get a CPU soon enough to
     * notice by itself (it is queued behind us on our P). */
    rt__waiter *head = m->waiters.head;
    if (head && rt_now() - (int64_t)head->arg > MU_STARVE_NS) {
        atomic_fetch_or(&m->state, MU_STARVING);
        rt__lock_release(&m->lock);
        return mu_unlock_starving(m);
    }
    bool wake;
    s = atomic_load(&m->state);
    for (;;) {
        if (!(s & MU_LOCKED)) {
            rt__lock_release(&m->lock);
            return RT_EUNLOCK;
        }
        uint32_t ns = s & ~MU_LOCKED;
        wake = (s & MU_WAITERS) && !(s & MU_WOKEN);
        if (wake)
            ns |= MU_WOKEN;
        if (atomic_compare_exchange_weak(&m->state, &s, ns))
            break;
    }
    rt_g *g = NULL;
    if (wake) {
        rt__waiter *w = rt__waitq_pop_claim(&m->waiters);
        if (w) {
            w->result = MU_RETRY;
            g = w->g;
            atomic_store_explicit(&m->woken_at, rt_now(), memory_order_relaxed);
        } else {
            /* Every queued waiter timed out: nobody will clear WOKEN. */
            atomic_fetch_and(&m->state, ~MU_WOKEN);
        }
        mu_sync_waiters(m);
    }
    rt__lock_release(&m->lock);
    if (g)
        rt__ready(g);
    return 0;
}

int rt_mutex_unlock(rt_mutex *m)
{
    uint32_t s = MU_LOCKED;
    if (atomic_compare_exchange_strong(&m->state, &s, 0))
        return 0;
    return mu_unlock_slow(m, true);
}

int rt__mutex_unlock_noyield(rt_mutex *m)
{
    uint32_t s = MU_LOCKED;
    if (atomic_compare_exchange_strong(&m->state, &s, 0))
        return 0;
    return mu_unlock_slow(m, false);
}

static int mu_locker_lock(void *obj, rt_deadline_t dl)
{
    return rt_mutex_lock(obj, dl);
}

static int mu_locker_unlock(void *obj)
{
    /* Cond.Wait unlocks its Locker under its own internal lock: no yield
     * there (see rt__mutex_unlock_noyield). */
    return rt__mutex_unlock_noyield(obj);
}

rt_locker rt_mutex_locker(rt_mutex *m)
{
    rt_locker l = {mu_locker_lock, mu_locker_unlock, m};
    return l;
}
