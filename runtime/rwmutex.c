/*
 * rwmutex.c - sync.RWMutex: rt_rwmutex_* and its two Locker adapters.
 *
 * Shape of Go's (sync/rwmutex.go), adapted so that every wait can time
 * out or be cancelled cleanly:
 * - writers are serialised by an rt_mutex (wmu), so at most one writer at
 *   a time is "pending" on the RWMutex itself;
 * - one 64-bit state word holds the number of active readers (low 32
 *   bits), a guard bit, and the flags PENDING (a writer holds wmu: new
 *   readers must wait, so a writer is not starved by a stream of readers)
 *   and HELD (that writer owns the lock: the readers drained).
 * RLock and RUnlock are one atomic add each while no writer is pending,
 * as Go's.  A reader that finds PENDING set backs out its increment and
 * queues; the writer's Unlock admits every queued reader at once by adding
 * them to the count before the next writer can set PENDING (so readers
 * are not starved by a stream of writers either).
 * An uncontended Lock/Unlock pair costs four atomics, as Go's: the wmu
 * lock, one compare-and-swap that sets PENDING and HELD when no reader is
 * in, one that clears them when no reader has queued (RWAIT, set by a
 * reader before it queues), and the wmu unlock.
 */
#include "rt_internal.h"

#include <stdlib.h>
#include <string.h>

#define RW_READERS 0xffffffffull /* active reader count */
#define RW_GUARD                                                               \
    (1ull << 32) /* always set: stops a borrow from                            \
                  * RUnlock-of-zero reaching the flags */
#define RW_PENDING (1ull << 40)
#define RW_HELD (1ull << 41)
#define RW_RWAIT                                                               \
    (1ull << 42) /* readers may be queued: Unlock must                         \
                  * take the slow path to admit them */

/* Results a waker leaves in a waiter. */
enum { RW_GRANTED = 1, RW_CHECK = 2 };

struct rt_rwmutex {
    /* The one word readers write gets a cache line of its own. */
    _Atomic uint64_t state __attribute__((aligned(64)));
    rt__lock lock __attribute__((aligned(64))); /* guards both queues */
    rt__waitq readers; /* waiting for a writer to leave */
    rt__waitq writer;  /* the pending writer waiting for readers to drain */
    rt_mutex *wmu;
};

#define RW_SPIN_ROUNDS 4 /* as the Mutex's spin: a few hundred ns */
#define RW_SPIN_PAUSES 30

static inline void rw_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Spins a little while (state & mask) == 0 is false, when another P may
 * change it soon: read-side critical sections are short, and parking
 * costs a context switch (or a thread wake-up) on both sides.  Returns
 * true once the condition holds. */
static bool rw_spin_until_clear(rt_rwmutex *rw, uint64_t mask)
{
    if (rt__nprocs() < 2 || !rt_in_goroutine())
        return false;
    for (int i = 0; i < RW_SPIN_ROUNDS; i++) {
        for (int j = 0; j < RW_SPIN_PAUSES; j++)
            rw_pause();
        if ((atomic_load_explicit(&rw->state, memory_order_relaxed) & mask) ==
            0)
            return true;
    }
    return false;
}

rt_rwmutex *rt_rwmutex_new(void)
{
    rt_rwmutex *rw;
    if (posix_memalign((void **)&rw, 64, sizeof(*rw)) != 0)
        return NULL;
    memset(rw, 0, sizeof(*rw));
    rw->wmu = rt_mutex_new();
    if (rw->wmu == NULL) {
        free(rw);
        return NULL;
    }
    atomic_init(&rw->state, RW_GUARD);
    return rw;
}

void rt_rwmutex_free(rt_rwmutex *rw)
{
    if (rw == NULL)
        return;
    rt_mutex_free(rw->wmu);
    free(rw);
}

/* Called by a reader that brought the count to zero while a writer was
 * pending: wakes that writer, which re-checks the count itself. */
static void rw_wake_writer(rt_rwmutex *rw)
{
    rt__lock_acquire(&rw->lock);
    rt_g *g = NULL;
    if ((atomic_load(&rw->state) & RW_READERS) == 0) {
        rt__waiter *w = rt__waitq_pop_claim(&rw->writer);
        if (w) {
            w->result = RW_CHECK;
            g = w->g;
        }
    }
    rt__lock_release(&rw->lock);
    if (g)
        rt__ready(g);
}

/* True when state s has a writer waiting for the readers, none left. */
static inline bool rw_writer_waits(uint64_t s)
{
    /* HELD: the writer owns the lock already (the reader that just left
     * had only backed out its optimistic increment). */
    return (s & (RW_PENDING | RW_HELD | RW_READERS)) == RW_PENDING;
}

/* Drops one reader; wakes the pending writer when it was the last. */
static void rw_reader_leave(rt_rwmutex *rw)
{
    uint64_t s = atomic_fetch_sub(&rw->state, 1) - 1;
    if (rw_writer_waits(s))
        rw_wake_writer(rw);
}

static int rw_rlock_slow(rt_rwmutex *rw, rt_deadline_t dl)
{
    rw_reader_leave(rw); /* back out the optimistic increment */
    if (dl == RT_POLL)
        return RT_EAGAIN;
    if (!rt_in_goroutine())
        return RT_EPERM;
    /* A writer's turn is usually short: wait for it briefly on the CPU. */
    if (rw_spin_until_clear(rw, RW_PENDING)) {
        uint64_t s = atomic_fetch_add(&rw->state, 1);
        if (!(s & RW_PENDING))
            return 0;
        rw_reader_leave(rw);
    }
    rt__lock_acquire(&rw->lock);
    uint64_t s = atomic_load(&rw->state);
    for (;;) {
        if (!(s & RW_PENDING)) {
            if (atomic_compare_exchange_weak(&rw->state, &s, s + 1)) {
                rt__lock_release(&rw->lock);
                return 0;
            }
        } else if ((s & RW_RWAIT) ||
                   atomic_compare_exchange_weak(&rw->state, &s, s | RW_RWAIT)) {
            break;
        }
    }
    /* With RWAIT set, PENDING is cleared only under rw->lock
     * (rw_unlock_admit), so the writer that clears it will find us
     * queued. */
    rt__waiter w;
    rt__waiter_init(&w);
    w.result = 0;
    rt__waitq_push(&rw->readers, &w);
    int r = rt__park(&w, 1, dl, &rw->lock, "sync.RWMutex.RLock");
    if (r != 0) {
        rt__lock_acquire(&rw->lock);
        rt__waitq_remove(&rw->readers, &w);
        rt__lock_release(&rw->lock);
        return r;
    }
    return 0; /* RW_GRANTED: the writer counted us in */
}

int rt_rwmutex_rlock(rt_rwmutex *rw, rt_deadline_t dl)
{
    uint64_t s = atomic_fetch_add(&rw->state, 1);
    if (!(s & RW_PENDING))
        return 0;
    return rw_rlock_slow(rw, dl);
}

bool rt_rwmutex_tryrlock(rt_rwmutex *rw)
{
    uint64_t s = atomic_load_explicit(&rw->state, memory_order_relaxed);
    while (!(s & RW_PENDING)) {
        if (atomic_compare_exchange_weak(&rw->state, &s, s + 1))
            return true;
    }
    return false;
}

int rt_rwmutex_runlock(rt_rwmutex *rw)
{
    uint64_t s = atomic_fetch_sub(&rw->state, 1);
    if ((s & RW_READERS) == 0) {
        /* RUnlock of unlocked: the guard bit absorbed the borrow. */
        s = atomic_fetch_add(&rw->state, 1) + 1;
        /* A writer may have seen the borrowed count meanwhile. */
        if (rw_writer_waits(s))
            rw_wake_writer(rw);
        return RT_ERUNLOCK;
    }
    if (rw_writer_waits(s - 1))
        rw_wake_writer(rw);
    return 0;
}

/* Clears PENDING and HELD and admits every queued reader in the same
 * atomic step.  Called with rw->lock held; returns the admitted waiters,
 * chained, for rw_ready_chain to ready once rw->lock is released. */
static rt__waiter *rw_unlock_admit(rt_rwmutex *rw)
{
    rt__waiter *chain = NULL, **tail = &chain, *w;
    uint64_t n = 0;
    while ((w = rt__waitq_pop_claim(&rw->readers)) != NULL) {
        w->result = RW_GRANTED;
        w->next = NULL;
        *tail = w;
        tail = &w->next;
        n++;
    }
    uint64_t s = atomic_load(&rw->state);
    while (!atomic_compare_exchange_weak(
        &rw->state, &s, (s & ~(RW_PENDING | RW_HELD | RW_RWAIT)) + n))
        ;
    return chain;
}

static void rw_ready_chain(rt__waiter *chain)
{
    while (chain) {
        rt__waiter *w = chain;
        chain = w->next; /* read before w's goroutine may run */
        rt__ready(w->g);
    }
}

/* Gives up a pending write lock that never got HELD. */
static void rw_writer_abort(rt_rwmutex *rw)
{
    rt__lock_acquire(&rw->lock);
    rt__waiter *chain = rw_unlock_admit(rw);
    rt__lock_release(&rw->lock);
    rt__mutex_unlock_noyield(rw->wmu);
    rw_ready_chain(chain);
}

int rt_rwmutex_lock(rt_rwmutex *rw, rt_deadline_t dl)
{
    int r = rt_mutex_lock(rw->wmu, dl);
    if (r != 0)
        return r;
    /* No reader in (the usual case for a read-mostly lock whose readers
     * are short): the lock is ours in one step. */
    uint64_t s = atomic_load_explicit(&rw->state, memory_order_relaxed);
    if ((s & RW_READERS) == 0 && atomic_compare_exchange_strong(
                                     &rw->state, &s, s | RW_PENDING | RW_HELD))
        return 0;
    s = atomic_fetch_or(&rw->state, RW_PENDING);
    if ((s & RW_READERS) == 0) {
        atomic_fetch_or(&rw->state, RW_HELD);
        return 0;
    }
    if (dl == RT_POLL || !rt_in_goroutine()) {
        rw_writer_abort(rw);
        return dl == RT_POLL ? RT_EAGAIN : RT_EPERM;
    }
    /* Readers leave quickly: wait for them briefly on the CPU. */
    if (rw_spin_until_clear(rw, RW_READERS)) {
        atomic_fetch_or(&rw->state, RW_HELD);
        return 0;
    }
    for (;;) {
        rt__lock_acquire(&rw->lock);
        if ((atomic_load(&rw->state) & RW_READERS) == 0) {
            atomic_fetch_or(&rw->state, RW_HELD);
            rt__lock_release(&rw->lock);
            return 0;
        }
        rt__waiter w;
        rt__waiter_init(&w);
        w.result = 0;
        rt__waitq_push(&rw->writer, &w);
        r = rt__park(&w, 1, dl, &rw->lock, "sync.RWMutex.Lock");
        if (r != 0) {
            rt__lock_acquire(&rw->lock);
            rt__waitq_remove(&rw->writer, &w);
            rt__lock_release(&rw->lock);
            rw_writer_abort(rw);
            return r;
        }
        /* RW_CHECK: a reader saw the count reach zero; loop to confirm
         * (a late wake-up from an earlier writer's readers may be stale). */
    }
}

bool rt_rwmutex_trylock(rt_rwmutex *rw)
{
    if (!rt_mutex_trylock(rw->wmu))
        return false;
    uint64_t s = atomic_load(&rw->state);
    while ((s & RW_READERS) == 0) {
        if (atomic_compare_exchange_weak(&rw->state, &s,
                                         s | RW_PENDING | RW_HELD))
            return true;
    }
    rt__mutex_unlock_noyield(rw->wmu);
    return false;
}

int rt_rwmutex_unlock(rt_rwmutex *rw)
{
    uint64_t s = atomic_load(&rw->state);
    if (!(s & RW_HELD))
        return RT_EWUNLOCK;
    /* No reader queued: clear the flags in one step, without rw->lock.
     * A reader about to queue sets RWAIT first (under rw->lock, while
     * PENDING is set), so this fails and we admit it below. */
    while (!(s & RW_RWAIT)) {
        if (atomic_compare_exchange_weak(&rw->state, &s,
                                         s & ~(RW_PENDING | RW_HELD))) {
            rt__mutex_unlock_noyield(rw->wmu);
            return 0;
        }
    }
    rt__lock_acquire(&rw->lock);
    rt__waiter *chain = rw_unlock_admit(rw);
    rt__lock_release(&rw->lock);
    rt__mutex_unlock_noyield(rw->wmu);
    rw_ready_chain(chain);
    return 0;
}

static int rw_locker_lock(void *obj, rt_deadline_t dl)
{
    return rt_rwmutex_lock(obj, dl);
}

static int rw_locker_unlock(void *obj)
{
    return rt_rwmutex_unlock(obj);
}

static int rw_rlocker_lock(void *obj, rt_deadline_t dl)
{
    return rt_rwmutex_rlock(obj, dl);
}

static int rw_rlocker_unlock(void *obj)
{
    return rt_rwmutex_runlock(obj);
}

rt_locker rt_rwmutex_locker(rt_rwmutex *rw)
{
    rt_locker l = {rw_locker_lock, rw_locker_unlock, rw};
    return l;
}

rt_locker rt_rwmutex_rlocker(rt_rwmutex *rw)
{
    rt_locker l = {rw_rlocker_lock, rw_rlocker_unlock, rw};
    return l;
}
