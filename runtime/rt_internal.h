/*
 * rt_internal.h - the runtime's internal contract between its modules:
 * the scheduler core (sched.c, ...) and the primitives built on it
 * (chan.c, select.c, the sync package, time).  Not installed.
 *
 * The one wait protocol every blocking primitive follows (Go's sudog and
 * selectDone, generalised so that deadlines and cancellation work for all):
 *
 *   lock(&obj->lock);
 *   if (can proceed now) { ...; unlock; return 0; }
 *   if (dl == RT_POLL)    { unlock; return RT_EAGAIN; }
 *   rt__waiter w; rt__waiter_init(&w); w.elem = ...;
 *   rt__waitq_push(&obj->waiters, &w);
 *   int r = rt__park(&w, 1, dl, &obj->lock, "sync.Mutex.Lock");
 *   // rt__park released obj->lock only once the goroutine was off its
 *   // stack, so a waker that takes obj->lock cannot miss it.
 *   if (r != 0) {               // RT_ETIMEDOUT or RT_ECANCELED
 *       lock(&obj->lock); rt__waitq_remove(&obj->waiters, &w); unlock;
 *   }
 *   return r ? r : w.result;
 *
 * A waker, under obj->lock, takes the first waiter whose wait it can claim
 * (rt__waitq_pop_claim), fills in w->result and any payload, and calls
 * rt__ready(w->g) -- after which it must not touch w again (it lives on the
 * parked goroutine's stack).  Exactly one party claims a wait: a waker, the
 * deadline timer or the cancel token; the losers leave it alone.  A select
 * parks once with several waiters (one per case) sharing that single claim.
 */
#ifndef CHAND_RT_INTERNAL_H
#define CHAND_RT_INTERNAL_H

#include "rt.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define RT__HIDDEN __attribute__((visibility("hidden")))

/* A zeroed allocation for objects made per operation.  glibc's calloc (2.36)
 * skips the per-thread cache and goes to the arena every time, which showed
 * as 15% of the daemon's time under load; malloc + memset reuses the cache. */
static inline void *rt__zalloc(size_t size)
{
    void *p = malloc(size);

    /* Hides p's origin: gcc would fold malloc + memset back into calloc. */
    __asm__("" : "+r"(p));
    if (p)
        memset(p, 0, size);
    return p;
}

/* ---- short-term locks (never held across a park except via rt__park) ---- */

/* A small futex-backed lock for runtime data structures.  Zero-initialised
 * is unlocked.  Usable from goroutines and foreign threads alike. */
typedef struct rt__lock {
    _Atomic uint32_t state;
} rt__lock;
#define RT__LOCK_INIT                                                          \
    {                                                                          \
        0                                                                      \
    }
RT__HIDDEN void rt__lock_acquire(rt__lock *l);
RT__HIDDEN void rt__lock_release(rt__lock *l);

/* ---- goroutines ---- */

typedef struct rt_g rt_g;

/* Returns the current goroutine or NULL on a foreign thread.  Not inlined:
 * see the thread-local rule in rt.h. */
RT__HIDDEN rt_g *rt__getg(void) __attribute__((noinline));

/* ---- waiters ---- */

typedef struct rt__waiter {
    struct rt__waiter *next, *prev; /* links in one object's wait queue */
    rt_g *g;                        /* the parked goroutine */
    void *elem;                     /* payload pointer (chan element ...) */
    uintptr_t arg;                  /* primitive-specific (select index...) */
    int64_t since;                  /* rt_now() when it began waiting */
    int result;                     /* set by the waker before rt__ready */
    bool success;                   /* chan: value delivered (not close) */
    bool queued;                    /* currently linked in a queue */
    struct rt_chan_hold *hold;      /* chan recv: acknowledged, its record */
    uint64_t held_seq;              /* chan send: the delivery it waits on */
} rt__waiter;

typedef struct rt__waitq {
    rt__waiter *head, *tail;
} rt__waitq;

/* Binds w to the current goroutine for a new wait.  Goroutine only. */
RT__HIDDEN void rt__waiter_init(rt__waiter *w);
RT__HIDDEN void rt__waitq_push(rt__waitq *q, rt__waiter *w);
RT__HIDDEN void rt__waitq_remove(rt__waitq *q, rt__waiter *w); /* if queued */
/* Pops waiters until one whose goroutine's current wait this caller
 * claims; returns it (unlinked) or NULL.  Waiters whose wait was already
 * claimed by someone else are unlinked and skipped. */
RT__HIDDEN rt__waiter *rt__waitq_pop_claim(rt__waitq *q);
/* The same for w (linked in q): unlinks it either way, returns whether
 * this caller claimed its wait. */
RT__HIDDEN bool rt__waitq_claim(rt__waitq *q, rt__waiter *w);
/* Returns true if the queue holds no waiter. */
RT__HIDDEN bool rt__waitq_empty(const rt__waitq *q);

/* Parks the current goroutine whose n waiters are already queued.  Arms
 * the deadline and the attached cancel token; releases `lock` (may be NULL)
 * after switching off the goroutine's stack.  reason is Go's wait reason
 * ("chan receive", ...), shown by rt_dump.  Returns 0 when a waker claimed
 * the wait, RT_ETIMEDOUT or RT_ECANCELED when the deadline or the token
 * did (the caller must then unlink its waiters itself).  If the token has
 * already fired, returns RT_ECANCELED at once after releasing lock.
 * Goroutine only. */
RT__HIDDEN int rt__park(rt__waiter *ws, int n, rt_deadline_t dl, rt__lock *lock,
                        const char *reason);
/* Makes g runnable; any thread, any time after its wait was claimed, even
 * before g has finished switching out (the runtime resolves that race).
 * From a goroutine, g goes to the current P's run-next slot. */
RT__HIDDEN void rt__ready(rt_g *g);

/* ---- internal timers ---- */

/* A timer whose callback runs on a scheduler thread, not a goroutine: it
 * must not block; it may call rt__ready, rt_go and RT_POLL operations.
 * It may run on an M that holds no P (every P busy): what it readies then
 * goes to the global run queue.  Due timers are run by the scheduler loop,
 * which every P enters at least once per 61 goroutine switches. */
typedef struct rt__timer {
    int64_t when;   /* absolute rt_now() time */
    int64_t period; /* > 0: re-armed every period ns */
    void (*fn)(struct rt__timer *t, int64_t now);
    void *arg;
    /* owned by timer.c */
    _Atomic int status;
    int32_t heap_index;
    int32_t heap_p;
} rt__timer;

RT__HIDDEN void rt__timer_init(rt__timer *t, void (*fn)(rt__timer *, int64_t),
                               void *arg);
/* Arms t for `when` (any thread).  Wakes a sleeping M if t is earliest. */
RT__HIDDEN void rt__timer_start(rt__timer *t, int64_t when, int64_t period);
/* Returns true if t was pending and will not fire.  Once it returns, fn is
 * not running and will not run, so the caller may free t. */
RT__HIDDEN bool rt__timer_stop(rt__timer *t);
/* Returns the number of armed timers (for deadlock detection, stats). */
RT__HIDDEN int64_t rt__timer_count(void);

/* ---- misc ---- */

/* Returns a fast per-thread pseudo-random number (select, Map shards). */
RT__HIDDEN uint32_t rt__fastrand(void);
/* Returns the id of the current P (0..gomaxprocs-1), or -1 off a P. */
RT__HIDDEN int rt__current_p(void);
/* Returns the current GOMAXPROCS (for sizing per-P caches). */
RT__HIDDEN int rt__nprocs(void);
/* The maximum number of Ps ever allowed (per-P arrays are sized to it). */
#define RT__MAXPROCS 256

/* ---- for the sync package ---- */

/* Returns the cancel token attached to the current goroutine (borrowed),
 * or NULL.  Cond.Wait detaches it while re-locking its Locker, which must
 * succeed even after the token fired.  Optional: cond.c references it
 * weakly and falls back to retrying when the scheduler lacks it. */
RT__HIDDEN rt_cancel *rt__cancel_current(void);

/* rt_mutex_unlock without its liveness yield (an unlocker that keeps its
 * P yields it to a woken waiter starved of CPU): for callers that may
 * hold an rt__lock, such as Cond.Wait unlocking its Locker. */
RT__HIDDEN int rt__mutex_unlock_noyield(rt_mutex *m);

#endif /* CHAND_RT_INTERNAL_H */
