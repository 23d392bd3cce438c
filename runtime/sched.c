/*
 * sched.c - the goroutine scheduler: G/M/P in the shape of Go's runtime.
 *
 * - P (processor): GOMAXPROCS of them; each owns a lock-free local run
 *   queue (a 256-slot ring the owner pushes to and anyone may steal half
 *   of) and a run-next slot.  A global run queue under sched.lock takes
 *   overflow, yields and work from threads that own no P.
 * - M (machine): an OS thread.  It runs the scheduler loop on its own
 *   pthread stack ("g0") and switches to goroutines with rt__ctx_switch.
 *   A goroutine that parks or exits switches straight to the next
 *   goroutine of its P when one is queued (g -> g'), else to g0; either
 *   way whoever runs next on that M finishes the switch (releases the
 *   primitive's lock, marks it parked, frees a dead stack) once the
 *   goroutine is off its stack (finish_prev).  g0 runs at least every 61
 *   switches for the global queue, timers, GOMAXPROCS changes and stop.
 * - G: a goroutine; its rt_g lives at the top of its own stack unit
 *   (stack.c).
 *
 * Wake-ups of OS threads are the expensive thing (~15 us against ~100 ns
 * for a channel hand-off), so, as Go: a goroutine readied by another goes
 * to the waker's run-next slot; an idle M is woken only when there is work
 * it could take and no M is already spinning (looking for work); a spinning
 * M searches briefly before sleeping; at most half the busy Ps have a
 * spinning M.  Unlike Go, readying a goroutine into an otherwise empty run
 * queue does not wake a spinner: the waker is usually about to block
 * (ping-pong), so a steady exchange between two goroutines makes no futex
 * calls at all.  The price: a goroutine readied by one that keeps running
 * waits until that one blocks or yields, unless an M steals it (a P's
 * run-next goroutine is stolen only after that P has not scheduled for
 * ~3 us).  A goroutine spawning faster than every P can run the spawned
 * ones yields once each time its local queue overflows, so the backlog
 * (each with a stack) stays bounded.
 *
 * An M with nothing to do parks on a futex; the first one to do so while
 * timers are armed sleeps only until the earliest deadline (timer.c) and
 * runs the due timers: an idle runtime makes no system calls at all.
 *
 * Thread-locals: a goroutine may resume on a different OS thread after any
 * call that can block or yield, so the scheduler never keeps the address of
 * a thread-local (its current-M pointer, errno) across a switch.  The
 * current M is read through rt__getm()/rt__getg(), which are compiled
 * non-inlined and without inter-procedural analysis so that the compiler
 * cannot reuse a thread pointer computed before the switch; errno is saved
 * in the goroutine when it switches out and restored when it resumes.
 *
 * Deadlock (rt_main only): when the last M goes idle with every P idle, no
 * runnable goroutine, no armed or running timer and no foreign reference
 * (rt_ref), nothing can ever run again: rt_main returns RT_EDEADLK.
 */
#include "rt_sched.h"

#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef RT__ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef RT__TSAN
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
#endif

enum { P_IDLE = 0, P_RUNNING = 1, P_RETIRED = 2 };

static struct {
    rt__lock lock;
    rt_m *midle;
    _Atomic int nmidle;
    rt_p *pidle;
    _Atomic int npidle;
    _Atomic int nmspinning;
    rt_g *runq_head, *runq_tail;
    _Atomic int runq_size;
    _Atomic int nprocs;
    int nallp;
    rt_p *allp[RT__MAXPROCS];
    rt_m *allm;
    _Atomic int nm;
    _Atomic int ngoroutines;
    _Atomic int64_t goid;
    _Atomic int stopping;
    _Atomic int refs;
    _Atomic int running;
    bool main_mode;
    _Atomic uint32_t done;
    int result;
    rt_m *timer_m;
    _Atomic int64_t timer_m_deadline;
    void (*main_fn)(void *);
    void *main_arg;
} sched;

static __thread rt_m *tls_m __attribute__((tls_model("initial-exec")));
static __thread uint64_t tls_rand __attribute__((tls_model("initial-exec")));

static void wakep(void);

/* ------------------------------------------------------------------ */
/* thread-local accessors                                              */
/* ------------------------------------------------------------------ */

rt_m *rt__getm(void)
{
    return tls_m;
}

rt_g *rt__getg(void)
{
    rt_m *m = tls_m;
    return m ? m->curg : NULL;
}

/* errno is read and written in their own non-inlined functions so that the
 * address __errno_location() returned on one thread is never reused on
 * another after a switch. */
#ifdef RT__TSAN
/* TSan sees each goroutine as a fiber and the thread's errno as memory
 * shared between fibers; the save/restore at a switch is ordered by the
 * switch itself. */
#define RT__NO_TSAN __attribute__((no_sanitize("thread")))
#else
#define RT__NO_TSAN
#endif
static RT__NOIPA RT__NO_TSAN int errno_get(void)
{
    return errno;
}
static RT__NOIPA RT__NO_TSAN void errno_set(int e)
{
    errno = e;
}

static void fatal(const char *msg)
{
    char buf[256];
    int n = snprintf(buf, sizeof(buf), "fatal error: %s\n", msg);
    if (n > 0 && write(2, buf, (size_t)n) < 0)
        abort();
    abort();
}

uint32_t rt__fastrand(void)
{
    uint64_t *s = &tls_rand;
    if (*s == 0)
        *s =
            (uint64_t)rt_now() * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)s;
    /* xorshift64* */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

int rt__current_p(void)
{
    rt_m *m = rt__getm();
    return (m && m->p) ? m->p->id : -1;
}

int rt__nprocs(void)
{
    int n = atomic_load_explicit(&sched.nprocs, memory_order_relaxed);
    return n > 0 ? n : 1;
}

/* ------------------------------------------------------------------ */
/* run queues                                                          */
/* ------------------------------------------------------------------ */

/* Moves half of p's full local queue plus g to the global queue.
 * Returns false if a stealer raced us (the caller retries). */
static bool runq_putslow(rt_p *p, rt_g *g, uint32_t h, uint32_t t)
{
    rt_g *batch[RT__RUNQ_SIZE / 2 + 1];
    uint32_t n = (t - h) / 2;

    for (uint32_t i = 0; i < n; i++)
        batch[i] = atomic_load_explicit(&p->runq[(h + i) % RT__RUNQ_SIZE],
                                        memory_order_relaxed);
    if (!atomic_compare_exchange_strong_explicit(&p->runqhead, &h, h + n,
                                                 memory_order_release,
                                                 memory_order_relaxed))
        return false;
    batch[n] = g;
    for (uint32_t i = 0; i < n; i++)
        batch[i]->schedlink = batch[i + 1];
    g->schedlink = NULL;
    rt__lock_acquire(&sched.lock);
    if (sched.runq_tail)
        sched.runq_tail->schedlink = batch[0];
    else
        sched.runq_head = batch[0];
    sched.runq_tail = g;
    atomic_fetch_add(&sched.runq_size, (int)n + 1);
    rt__lock_release(&sched.lock);
    return true;
}

/* Puts g on p's local queue (owner only); next: into the run-next slot,
 * kicking its previous occupant to the tail.  Returns true when the local
 * queue was full and half of it went to the global queue. */
static bool runq_put(rt_p *p, rt_g *g, bool next)
{
    if (next) {
        rt_g *old =
            atomic_exchange_explicit(&p->runnext, g, memory_order_acq_rel);
        if (!old)
            return false;
        g = old;
    }
    for (;;) {
        uint32_t h = atomic_load_explicit(&p->runqhead, memory_order_acquire);
        uint32_t t = atomic_load_explicit(&p->runqtail, memory_order_relaxed);
        if (t - h < RT__RUNQ_SIZE) {
            atomic_store_explicit(&p->runq[t % RT__RUNQ_SIZE], g,
                                  memory_order_relaxed);
            atomic_store_explicit(&p->runqtail, t + 1, memory_order_release);
            return false;
        }
        if (runq_putslow(p, g, h, t))
            return true;
    }
}

static rt_g *runq_get(rt_p *p)
{
    rt_g *g = atomic_load_explicit(&p->runnext, memory_order_relaxed);
    if (g && atomic_compare_exchange_strong_explicit(&p->runnext, &g, NULL,
                                                     memory_order_acquire,
                                                     memory_order_relaxed))
        return g;
    for (;;) {
        uint32_t h = atomic_load_explicit(&p->runqhead, memory_order_acquire);
        uint32_t t = atomic_load_explicit(&p->runqtail, memory_order_relaxed);
        if (t == h)
            return NULL;
        g = atomic_load_explicit(&p->runq[h % RT__RUNQ_SIZE],
                                 memory_order_relaxed);
        if (atomic_compare_exchange_weak_explicit(&p->runqhead, &h, h + 1,
                                                  memory_order_release,
                                                  memory_order_relaxed))
            return g;
    }
}

static bool runq_empty(rt_p *p)
{
    uint32_t h = atomic_load_explicit(&p->runqhead, memory_order_acquire);
    uint32_t t = atomic_load_explicit(&p->runqtail, memory_order_acquire);
    return h == t && atomic_load(&p->runnext) == NULL;
}

static uint32_t runq_len(rt_p *p)
{
    uint32_t h = atomic_load_explicit(&p->runqhead, memory_order_acquire);
    uint32_t t = atomic_load_explicit(&p->runqtail, memory_order_acquire);
    return t - h;
}

/* Copies half of victim's queue into pp's ring at pp's tail; returns the
 * number grabbed.  With steal_next, takes the run-next slot when the
 * queue itself is empty. */
static uint32_t runq_grab(rt_p *victim, rt_p *pp, uint32_t ptail,
                          bool steal_next)
{
    for (;;) {
        uint32_t h =
            atomic_load_explicit(&victim->runqhead, memory_order_acquire);
        uint32_t t =
            atomic_load_explicit(&victim->runqtail, memory_order_acquire);
        uint32_t n = t - h;
        n = n - n / 2;
        if (n == 0) {
            if (steal_next) {
                rt_g *next = atomic_load(&victim->runnext);
                if (!next)
                    return 0;
                /* The run-next goroutine is usually about to run on its
                 * own P (a hand-off in progress): take it only if that P
                 * has not scheduled anything for ~3 us, i.e. its current
                 * goroutine keeps running.  A tick, not the g itself, is
                 * compared: in a ping-pong the slot alternates between
                 * the same two goroutines. */
                uint32_t tick = atomic_load_explicit(&victim->schedtick,
                                                     memory_order_relaxed);
                int64_t until = rt_now() + 3000;
                while (rt_now() < until)
                    rt__cpu_relax();
                if (atomic_load_explicit(&victim->schedtick,
                                         memory_order_relaxed) != tick)
                    return 0;
                if (atomic_compare_exchange_strong(&victim->runnext, &next,
                                                   NULL)) {
                    atomic_store_explicit(&pp->runq[ptail % RT__RUNQ_SIZE],
                                          next, memory_order_relaxed);
                    return 1;
                }
            }
            return 0;
        }
        if (n > RT__RUNQ_SIZE / 2)
            continue; /* read an inconsistent h/t pair */
        for (uint32_t i = 0; i < n; i++) {
            rt_g *g = atomic_load_explicit(
                &victim->runq[(h + i) % RT__RUNQ_SIZE], memory_order_relaxed);
            atomic_store_explicit(&pp->runq[(ptail + i) % RT__RUNQ_SIZE], g,
                                  memory_order_relaxed);
        }
        if (atomic_compare_exchange_strong_explicit(&victim->runqhead, &h,
                                                    h + n, memory_order_release,
                                                    memory_order_relaxed))
            return n;
    }
}

static rt_g *runq_steal(rt_p *pp, rt_p *victim, bool steal_next)
{
    uint32_t t = atomic_load_explicit(&pp->runqtail, memory_order_relaxed);
    uint32_t n = runq_grab(victim, pp, t, steal_next);
    if (n == 0)
        return NULL;
    n--;
    rt_g *g = atomic_load_explicit(&pp->runq[(t + n) % RT__RUNQ_SIZE],
                                   memory_order_relaxed);
    if (n > 0)
        atomic_store_explicit(&pp->runqtail, t + n, memory_order_release);
    return g;
}

/* Global queue; sched.lock held. */
static void globrunq_put_locked(rt_g *g)
{
    g->schedlink = NULL;
    if (sched.runq_tail)
        sched.runq_tail->schedlink = g;
    else
        sched.runq_head = g;
    sched.runq_tail = g;
    atomic_fetch_add(&sched.runq_size, 1);
}

/* Takes a fair share of the global queue into p; returns one to run.
 * sched.lock held. */
static rt_g *globrunq_get_locked(rt_p *p, int max)
{
    int size = atomic_load(&sched.runq_size);
    if (size == 0)
        return NULL;
    int n = size / rt__nprocs() + 1;
    if (n > size)
        n = size;
    if (max > 0 && n > max)
        n = max;
    if (n > RT__RUNQ_SIZE / 2)
        n = RT__RUNQ_SIZE / 2;
    atomic_fetch_sub(&sched.runq_size, n);
    rt_g *g = sched.runq_head;
    sched.runq_head = g->schedlink;
    if (!sched.runq_head)
        sched.runq_tail = NULL;
    for (int i = 1; i < n; i++) {
        rt_g *g2 = sched.runq_head;
        sched.runq_head = g2->schedlink;
        if (!sched.runq_head)
            sched.runq_tail = NULL;
        runq_put(p, g2, false);
    }
    return g;
}

/* ------------------------------------------------------------------ */
/* Ps and Ms                                                           */
/* ------------------------------------------------------------------ */

/* sched.lock held. */
static rt_p *pidleget_locked(void)
{
    rt_p *p = sched.pidle;
    if (p) {
        sched.pidle = p->link;
        p->link = NULL;
        p->status = P_RUNNING;
        atomic_fetch_sub(&sched.npidle, 1);
    }
    return p;
}

/* sched.lock held.  A P beyond GOMAXPROCS is retired instead. */
static void pidleput_locked(rt_p *p)
{
    p->m = NULL;
    if (p->id >= atomic_load(&sched.nprocs)) {
        p->status = P_RETIRED;
        return;
    }
    p->status = P_IDLE;
    p->link = sched.pidle;
    sched.pidle = p;
    atomic_fetch_add(&sched.npidle, 1);
}

/* Prefers an M that is not the timer sleeper, so the timer keeps its
 * watcher.  sched.lock held. */
static rt_m *midleget_locked(void)
{
    rt_m **pp = &sched.midle, **pick = NULL;
    for (; *pp; pp = &(*pp)->idlelink) {
        if (!pick || *pp != sched.timer_m)
            pick = pp;
        if (*pick != sched.timer_m)
            break;
    }
    if (!pick)
        return NULL;
    rt_m *m = *pick;
    *pick = m->idlelink;
    m->idlelink = NULL;
    m->idle = false;
    atomic_fetch_sub(&sched.nmidle, 1);
    if (sched.timer_m == m) {
        sched.timer_m = NULL;
        atomic_store(&sched.timer_m_deadline, INT64_MAX);
    }
    return m;
}

static void midle_remove_locked(rt_m *m)
{
    if (!m->idle)
        return;
    for (rt_m **pp = &sched.midle; *pp; pp = &(*pp)->idlelink) {
        if (*pp == m) {
            *pp = m->idlelink;
            break;
        }
    }
    m->idlelink = NULL;
    m->idle = false;
    atomic_fetch_sub(&sched.nmidle, 1);
}

static void notewakeup(rt_m *m)
{
    atomic_store(&m->park, 1);
    rt__futex_wake(&m->park, 1);
}

static void *mstart(void *arg);

/* Starts an M that will run with p.  sched.lock held. */
static bool newm_locked(rt_p *p, bool spinning)
{
    if (atomic_load(&sched.stopping))
        return false;
    rt_m *m = calloc(1, sizeof(*m));
    if (!m)
        return false;
    m->id = atomic_fetch_add(&sched.nm, 1);
    m->nextp = p;
    m->spinning = spinning;
    m->rand = (uint64_t)rt_now() ^ ((uint64_t)m->id << 32);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 512 * 1024);
    int r = pthread_create(&m->thread, &attr, mstart, m);
    pthread_attr_destroy(&attr);
    if (r != 0) {
        atomic_fetch_sub(&sched.nm, 1);
        free(m);
        return false;
    }
    m->alllink = sched.allm;
    sched.allm = m;
    return true;
}

/* Runs p (or an idle P) on an idle or new M. */
static void startm(rt_p *p, bool spinning)
{
    rt__lock_acquire(&sched.lock);
    if (!p) {
        p = pidleget_locked();
        if (!p) {
            rt__lock_release(&sched.lock);
            if (spinning)
                atomic_fetch_sub(&sched.nmspinning, 1);
            return;
        }
    }
    rt_m *m = midleget_locked();
    if (!m) {
        if (!newm_locked(p, spinning)) {
            pidleput_locked(p);
            if (spinning)
                atomic_fetch_sub(&sched.nmspinning, 1);
        }
        rt__lock_release(&sched.lock);
        return;
    }
    m->spinning = spinning;
    m->nextp = p;
    rt__lock_release(&sched.lock);
    notewakeup(m);
}

/* Wakes an M to look for work, if an idle P exists and nobody spins. */
static void wakep(void)
{
    if (atomic_load(&sched.npidle) == 0)
        return;
    int z = 0;
    if (atomic_load(&sched.nmspinning) != 0 ||
        !atomic_compare_exchange_strong(&sched.nmspinning, &z, 1))
        return;
    startm(NULL, true);
}

static void acquirep(rt_m *m, rt_p *p)
{
    m->p = p;
    p->m = m;
    /* Outside sched.lock, where checkdead_locked reads it: atomic (the P
     * was handed over already marked running, so the value is the same). */
    __atomic_store_n(&p->status, P_RUNNING, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------ */
/* deadlock detection                                                  */
/* ------------------------------------------------------------------ */

static void main_done(int result)
{
    sched.result = result;
    atomic_store(&sched.done, 1);
    rt__futex_wake(&sched.done, 1);
}

/* sched.lock held. */
static void checkdead_locked(void)
{
    if (!sched.main_mode || atomic_load(&sched.done) ||
        atomic_load(&sched.stopping))
        return;
    if (atomic_load(&sched.refs) > 0 || atomic_load(&sched.nmspinning) > 0 ||
        atomic_load(&sched.runq_size) > 0)
        return;
    for (int i = 0; i < sched.nallp; i++) {
        rt_p *p = sched.allp[i];
        if (__atomic_load_n(&p->status, __ATOMIC_RELAXED) == P_RUNNING ||
            !runq_empty(p))
            return;
    }
    if (rt__timer_count() > 0 || rt__timers_running() > 0)
        return;
    if (atomic_load(&sched.ngoroutines) == 0)
        return;
    main_done(RT_EDEADLK);
}

void rt_ref(void)
{
    atomic_fetch_add(&sched.refs, 1);
}

void rt_unref(void)
{
    if (atomic_fetch_sub(&sched.refs, 1) == 1 && atomic_load(&sched.running)) {
        rt__lock_acquire(&sched.lock);
        checkdead_locked();
        rt__lock_release(&sched.lock);
    }
}

/* ------------------------------------------------------------------ */
/* sanitizer fiber annotations                                         */
/* ------------------------------------------------------------------ */

#ifdef RT__ASAN
#define ASAN_START(save, bottom, size)                                         \
    __sanitizer_start_switch_fiber((save), (bottom), (size))
#define ASAN_FINISH(save, bottom, size)                                        \
    __sanitizer_finish_switch_fiber((save), (bottom), (size))
#else
#define ASAN_START(save, bottom, size) ((void)0)
#define ASAN_FINISH(save, bottom, size) ((void)0)
#endif

/* ------------------------------------------------------------------ */
/* switching                                                           */
/* ------------------------------------------------------------------ */

static void finish_prev(rt_m *m, rt_g *prev);
static rt_g *direct_next(rt_m *m);

static void tick(rt_p *p)
{
    atomic_store_explicit(
        &p->schedtick,
        atomic_load_explicit(&p->schedtick, memory_order_relaxed) + 1,
        memory_order_relaxed);
}

/* Goroutine side: switch away from g -- straight to the next runnable
 * goroutine of this P when one is waiting and no scheduler housekeeping is
 * due (half the switches of going through g0), else to the M's g0.
 * Whoever resumes next on this M completes g's switch (finish_prev), once
 * g is off its stack.  Returns when g is resumed, possibly on another M. */
static void gswitch(rt_m *m, rt_g *g)
{
    g->saved_errno = errno_get();
    m->prev = g;
    rt_g *next = g->switch_op == RT__OP_YIELD ? NULL : direct_next(m);
    if (next) {
        m->curg = next;
        atomic_store_explicit(&next->status, RT__G_RUNNING,
                              memory_order_relaxed);
        tick(m->p);
#ifdef RT__TSAN
        __tsan_switch_to_fiber(next->tsan_fiber, 0);
#endif
#ifdef RT__ASAN
        ASAN_START(g->switch_op == RT__OP_EXIT ? NULL : &g->asan_fake,
                   (const void *)next->stack_lo,
                   next->stack_hi - next->stack_lo);
#endif
        rt__ctx_switch(&g->sp, next->sp);
    } else {
#ifdef RT__TSAN
        __tsan_switch_to_fiber(m->tsan_fiber, 0);
#endif
#ifdef RT__ASAN
        ASAN_START(g->switch_op == RT__OP_EXIT ? NULL : &g->asan_fake,
                   m->g0_stack_bottom, m->g0_stack_size);
#endif
        rt__ctx_switch(&g->sp, m->g0_sp);
    }
#ifdef RT__ASAN
    ASAN_FINISH(g->asan_fake, NULL, NULL);
#endif
    /* Resumed: possibly on another M, so look it up again. */
    m = rt__getm();
    rt_g *prev = m->prev;
    if (prev) {
        m->prev = NULL;
        finish_prev(m, prev);
    }
    errno_set(g->saved_errno);
}

static void gentry(void *arg);

static void ginit_stack(rt_g *g)
{
    uintptr_t top = (g->stack_hi - 16) & ~(uintptr_t)15;
#ifdef RT__ASAN
    /* A reused stack keeps the poisoned redzones of the frames its last
     * goroutine never returned from. */
    ASAN_UNPOISON_MEMORY_REGION((void *)g->stack_lo, g->stack_hi - g->stack_lo);
#endif
#if defined(__x86_64__)
    uint64_t *f = (uint64_t *)(top - 64);
    f[0] = 0x1F80ULL | (0x037FULL << 32); /* mxcsr, x87 control word */
    f[1] = 0;                             /* r15 */
    f[2] = 0;                             /* r14 */
    f[3] = (uint64_t)(uintptr_t)gentry;   /* r13: entry */
    f[4] = (uint64_t)(uintptr_t)g;        /* r12: argument */
    f[5] = 0;                             /* rbx */
    f[6] = 0;                             /* rbp */
    f[7] = (uint64_t)(uintptr_t)rt__ctx_trampoline;
    g->sp = f;
#elif defined(__aarch64__)
    uint64_t *f = (uint64_t *)(top - 176);
    memset(f, 0, 176);
    f[0] = (uint64_t)(uintptr_t)g;                   /* x19 */
    f[1] = (uint64_t)(uintptr_t)gentry;              /* x20 */
    f[11] = (uint64_t)(uintptr_t)rt__ctx_trampoline; /* x30 */
    g->sp = f;
#else
#error "unsupported architecture"
#endif
}

/* Returns the goroutine to switch to directly from a goroutine of m, or
 * NULL when g0 must run: the runtime stops, the P retires, or every 61st
 * switch, when g0 gives the global queue its turn and runs due timers (so
 * a timer waits at most 61 direct switches). */
static rt_g *direct_next(rt_m *m)
{
    rt_p *p = m->p;
    if (atomic_load_explicit(&sched.stopping, memory_order_relaxed) ||
        p->id >= atomic_load_explicit(&sched.nprocs, memory_order_relaxed) ||
        (atomic_load_explicit(&p->schedtick, memory_order_relaxed) + 1) % 61 ==
            0)
        return NULL;
    return runq_get(p);
}

/* Completes the switch of prev, now off its stack: releases the lock of
 * a park (and lets a waker that came early requeue it), queues a yield,
 * or frees a dead goroutine.  Runs on m's g0 or on the goroutine m
 * switched to directly. */
static void finish_prev(rt_m *m, rt_g *prev)
{
    if ((uintptr_t)prev->sp < prev->min_sp || !prev->min_sp)
        prev->min_sp = (uintptr_t)prev->sp;
    if (!prev->guarded)
        rt__stack_check(prev);
    switch (prev->switch_op) {
    case RT__OP_PARK: {
        void (*f)(void *) = prev->unlockf;
        if (f)
            f(prev->unlockarg);
        /* Counted before it can be readied (by a waker that took the
         * lock just released), so the resume never takes back a count
         * that was not added. */
        if (prev->park_count) {
            atomic_fetch_add(prev->park_count, 1);
            prev->park_counted = true;
        }
        int s = RT__G_PARKING;
        if (!atomic_compare_exchange_strong(&prev->status, &s, RT__G_PARKED)) {
            /* Readied while switching out: it runs next. */
            atomic_store(&prev->status, RT__G_RUNNABLE);
            runq_put(m->p, prev, true);
        }
        break;
    }
    case RT__OP_YIELD:
        atomic_store(&prev->status, RT__G_RUNNABLE);
        rt__lock_acquire(&sched.lock);
        globrunq_put_locked(prev);
        rt__lock_release(&sched.lock);
        break;
    case RT__OP_EXIT:
        atomic_store(&prev->status, RT__G_DEAD);
#ifdef RT__TSAN
        __tsan_destroy_fiber(prev->tsan_fiber);
        prev->tsan_fiber = NULL;
#endif
        atomic_store(&prev->status, RT__G_IDLE);
        rt__stack_free(m->p, prev);
        atomic_fetch_sub(&sched.ngoroutines, 1);
        break;
    default:
        fatal("bad switch op");
    }
}

/* g0 side: run g until the M comes back to g0, then finish the goroutine
 * that switched here (g, or one g handed over to directly). */
static void execute(rt_m *m, rt_g *g)
{
    m->curg = g;
    m->prev = NULL;
    atomic_store_explicit(&g->status, RT__G_RUNNING, memory_order_relaxed);
    tick(m->p);
#ifdef RT__TSAN
    __tsan_switch_to_fiber(g->tsan_fiber, 0);
#endif
#ifdef RT__ASAN
    ASAN_START(&m->asan_fake, (const void *)g->stack_lo,
               g->stack_hi - g->stack_lo);
#endif
    rt__ctx_switch(&m->g0_sp, g->sp);
#ifdef RT__ASAN
    ASAN_FINISH(m->asan_fake, NULL, NULL);
#endif
    m->curg = NULL;
    rt_g *prev = m->prev;
    m->prev = NULL;
    if (prev)
        finish_prev(m, prev);
}

static void gexit(void)
{
    rt_m *m = rt__getm();
    rt_g *g = m->curg;
    if (g->cancel)
        rt__cancel_detach(g);
    g->switch_op = RT__OP_EXIT;
    gswitch(m, g);
    fatal("dead goroutine resumed");
}

static void gentry(void *arg)
{
    rt_g *g = arg;
#ifdef RT__ASAN
    ASAN_FINISH(NULL, NULL, NULL);
#endif
    /* Switched to directly: complete the goroutine that ran before. */
    rt_m *m = rt__getm();
    rt_g *prev = m->prev;
    if (prev) {
        m->prev = NULL;
        finish_prev(m, prev);
    }
    errno_set(0);
    g->fn(g->arg);
    gexit();
}

/* ------------------------------------------------------------------ */
/* the scheduler loop                                                  */
/* ------------------------------------------------------------------ */

static void resetspinning(rt_m *m)
{
    m->spinning = false;
    /* The last spinner to find work starts another, so that a burst of
     * runnable goroutines spreads over the idle Ps. */
    if (atomic_fetch_sub(&sched.nmspinning, 1) == 1)
        wakep();
}

/* Gives p's queued work to the global queue and retires p (GOMAXPROCS
 * shrank).  sched.lock not held. */
static void retirep(rt_m *m, rt_p *p)
{
    rt_g *g;
    while ((g = runq_get(p)) != NULL) {
        rt__lock_acquire(&sched.lock);
        globrunq_put_locked(g);
        rt__lock_release(&sched.lock);
    }
    rt__stack_flush(p);
    rt__lock_acquire(&sched.lock);
    pidleput_locked(p);
    rt__lock_release(&sched.lock);
    m->p = NULL;
}

/* Sleeps until handed a P (m->nextp) or the runtime stops.  The first
 * idle M while timers are armed sleeps only until the earliest one. */
static void stopm(rt_m *m)
{
    for (;;) {
        rt__lock_acquire(&sched.lock);
        if (atomic_load(&sched.stopping) || m->nextp) {
            rt__lock_release(&sched.lock);
            return;
        }
        atomic_store(&m->park, 0);
        m->idle = true;
        m->idlelink = sched.midle;
        sched.midle = m;
        atomic_fetch_add(&sched.nmidle, 1);
        int64_t timeout = -1;
        int64_t next = rt__timer_next();
        if (next >= 0 && (!sched.timer_m || sched.timer_m == m)) {
            sched.timer_m = m;
            atomic_store(&sched.timer_m_deadline, next);
            int64_t now = rt_now();
            timeout = next > now ? next - now : 0;
        }
        checkdead_locked();
        rt__lock_release(&sched.lock);

        int64_t trim = rt__stack_trim();
        if (trim > 0 && (timeout < 0 || trim < timeout))
            timeout = trim;
        if (timeout != 0) {
            while (atomic_load(&m->park) == 0) {
                rt__futex_wait(&m->park, 0, timeout);
                if (timeout > 0)
                    break;
            }
        }

        rt__lock_acquire(&sched.lock);
        if (sched.timer_m == m) {
            sched.timer_m = NULL;
            atomic_store(&sched.timer_m_deadline, INT64_MAX);
        }
        midle_remove_locked(m);
        if (m->nextp || atomic_load(&sched.stopping)) {
            rt__lock_release(&sched.lock);
            return;
        }
        next = rt__timer_next();
        int64_t now = rt_now();
        if (next >= 0 && next <= now) {
            rt_p *p = pidleget_locked();
            if (p) {
                m->nextp = p;
                rt__lock_release(&sched.lock);
                return;
            }
            rt__lock_release(&sched.lock);
            /* Every P is busy: fire the timers from here; what they ready
             * goes to the global queue. */
            rt__timers_run(now);
            continue;
        }
        rt__lock_release(&sched.lock);
    }
}

static void check_timers(void)
{
    if (rt__timer_count() == 0)
        return;
    int64_t next = rt__timer_next();
    if (next < 0)
        return;
    int64_t now = rt_now();
    if (next <= now)
        rt__timers_run(now);
}

/* Returns a goroutine to run, or NULL when the runtime stops. */
static rt_g *findrunnable(rt_m *m)
{
    rt_g *g;
top:
    if (atomic_load(&sched.stopping))
        return NULL;
    rt_p *p = m->p;
    int nprocs = atomic_load(&sched.nprocs);
    if (p->id >= nprocs) {
        retirep(m, p);
        goto stop;
    }
    check_timers();
    if (atomic_load_explicit(&p->schedtick, memory_order_relaxed) % 61 == 0 &&
        atomic_load(&sched.runq_size) > 0) {
        rt__lock_acquire(&sched.lock);
        g = globrunq_get_locked(p, 1);
        rt__lock_release(&sched.lock);
        if (g)
            return g;
    }
    if ((g = runq_get(p)) != NULL)
        return g;
    if (atomic_load(&sched.runq_size) > 0) {
        rt__lock_acquire(&sched.lock);
        g = globrunq_get_locked(p, 0);
        rt__lock_release(&sched.lock);
        if (g)
            return g;
    }
    /* Steal, spinning for a short while: cheaper than a sleep and a wake
     * when work is about to appear. */
    if (nprocs > 1 &&
        (m->spinning || 2 * atomic_load(&sched.nmspinning) <
                            nprocs - atomic_load(&sched.npidle))) {
        if (!m->spinning) {
            m->spinning = true;
            atomic_fetch_add(&sched.nmspinning, 1);
        }
        for (int round = 0; round < 8; round++) {
            uint32_t start = rt__fastrand();
            for (int i = 0; i < nprocs; i++) {
                int id = (int)((start + (uint32_t)i) % (uint32_t)nprocs);
                rt_p *v = sched.allp[id];
                if (!v || v == p)
                    continue;
                if ((g = runq_steal(p, v, round >= 6)) != NULL)
                    return g;
            }
            if (atomic_load(&sched.runq_size) > 0) {
                rt__lock_acquire(&sched.lock);
                g = globrunq_get_locked(p, 0);
                rt__lock_release(&sched.lock);
                if (g)
                    return g;
            }
            if ((g = runq_get(p)) != NULL)
                return g;
            check_timers();
            if ((g = runq_get(p)) != NULL)
                return g;
            for (int k = 0; k < 200; k++)
                rt__cpu_relax();
        }
    }

    /* Give up the P, then look once more (a producer that saw us
     * spinning did not wake anyone). */
    rt__lock_acquire(&sched.lock);
    if (atomic_load(&sched.runq_size) > 0) {
        g = globrunq_get_locked(p, 0);
        rt__lock_release(&sched.lock);
        if (g)
            return g;
        rt__lock_acquire(&sched.lock);
    }
    rt__stack_flush(p);
    pidleput_locked(p);
    m->p = NULL;
    rt__lock_release(&sched.lock);
stop:;
    bool was_spinning = m->spinning;
    if (was_spinning) {
        m->spinning = false;
        atomic_fetch_sub(&sched.nmspinning, 1);
    }
    bool work = atomic_load(&sched.runq_size) > 0;
    nprocs = atomic_load(&sched.nprocs);
    for (int i = 0; i < nprocs && !work; i++) {
        rt_p *v = sched.allp[i];
        if (v && !runq_empty(v))
            work = true;
    }
    if (work) {
        rt__lock_acquire(&sched.lock);
        rt_p *np = pidleget_locked();
        rt__lock_release(&sched.lock);
        if (np) {
            acquirep(m, np);
            if (was_spinning) {
                m->spinning = true;
                atomic_fetch_add(&sched.nmspinning, 1);
            }
            goto top;
        }
    }
    stopm(m);
    if (atomic_load(&sched.stopping))
        return NULL;
    acquirep(m, m->nextp);
    m->nextp = NULL;
    goto top;
}

static void schedule(rt_m *m)
{
    for (;;) {
        rt_g *g = findrunnable(m);
        if (!g)
            return;
        if (m->spinning)
            resetspinning(m);
        execute(m, g);
    }
}

static void *mstart(void *arg)
{
    rt_m *m = arg;
    tls_m = m;
    tls_rand = m->rand | 1;
#ifdef RT__TSAN
    m->tsan_fiber = __tsan_get_current_fiber();
#endif
#ifdef RT__ASAN
    {
        pthread_attr_t a;
        void *addr;
        size_t sz;
        if (pthread_getattr_np(pthread_self(), &a) == 0) {
            pthread_attr_getstack(&a, &addr, &sz);
            pthread_attr_destroy(&a);
            m->g0_stack_bottom = addr;
            m->g0_stack_size = sz;
        }
    }
#endif
    void *alt = rt__stack_altstack();
    rt_p *p = m->nextp;
    m->nextp = NULL;
    acquirep(m, p);
    schedule(m);
    rt__stack_altstack_free(alt);
    /* Stopping: give the P back so rt_stop finds every P accounted for. */
    if (m->p) {
        rt__lock_acquire(&sched.lock);
        m->p->status = P_IDLE;
        m->p->m = NULL;
        rt__lock_release(&sched.lock);
        m->p = NULL;
    }
    tls_m = NULL;
    return NULL;
}

/* ------------------------------------------------------------------ */
/* goroutines                                                          */
/* ------------------------------------------------------------------ */

/* Puts a runnable g where it will run soonest. */
static void ready_put(rt_g *g, bool from_spawn)
{
    rt_m *m = rt__getm();
    if (m && m->p) {
        rt_p *p = m->p;
        if (m->curg) {
            bool overflow = runq_put(p, g, true);
            if (from_spawn || runq_len(p) > 0)
                wakep();
            /* A spawner outrunning every P: let this P run the backlog
             * before making more.  Each queued goroutine holds a stack,
             * and fresh stacks cost a page fault each (~10 us in a VM). */
            if (overflow && from_spawn)
                rt_gosched();
        } else {
            runq_put(p, g, false);
            if (runq_len(p) > 1)
                wakep();
        }
        return;
    }
    rt__lock_acquire(&sched.lock);
    globrunq_put_locked(g);
    rt__lock_release(&sched.lock);
    wakep();
}

int rt_go(void (*fn)(void *), void *arg)
{
    if (!fn)
        return RT_EINVAL;
    if (!atomic_load(&sched.running) || atomic_load(&sched.stopping))
        return RT_EINVAL;
    rt_m *m = rt__getm();
    rt_g *g = rt__stack_alloc(m ? m->p : NULL);
    if (!g)
        return RT_ENOMEM;
    g->fn = fn;
    g->arg = arg;
    g->id = atomic_fetch_add(&sched.goid, 1) + 1;
    g->cancel = NULL;
    g->park_count = NULL;
    g->park_counted = false;
    g->wait_reason = NULL;
    g->switch_op = 0;
    g->timer_armed = false;
    atomic_store(&g->wait_state, RT__WS_NONE);
    rt__timer_init(&g->park_timer, NULL, g);
    ginit_stack(g);
#ifdef RT__TSAN
    g->tsan_fiber = __tsan_create_fiber(0);
#endif
#ifdef RT__ASAN
    g->asan_fake = NULL;
#endif
    atomic_fetch_add(&sched.ngoroutines, 1);
    atomic_store(&g->status, RT__G_RUNNABLE);
    ready_put(g, true);
    return 0;
}

void rt_gosched(void)
{
    rt_m *m = rt__getm();
    rt_g *g = m ? m->curg : NULL;
    if (!g) {
        sched_yield();
        return;
    }
    g->switch_op = RT__OP_YIELD;
    gswitch(m, g);
}

int64_t rt_goid(void)
{
    rt_g *g = rt__getg();
    return g ? g->id : 0;
}

bool rt_in_goroutine(void)
{
    return rt__getg() != NULL;
}

void rt_park_count_attach(_Atomic int64_t *n)
{
    rt_g *g = rt__getg();

    if (g)
        g->park_count = n;
}

int rt_num_goroutine(void)
{
    return atomic_load(&sched.ngoroutines);
}

int rt_num_cpu(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int rt_num_threads(void)
{
    return atomic_load(&sched.nm);
}

/* sched.lock held. */
static rt_p *allocp_locked(int id)
{
    if (sched.allp[id])
        return sched.allp[id];
    rt_p *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->id = id;
    p->status = P_RETIRED;
    sched.allp[id] = p;
    if (id >= sched.nallp)
        sched.nallp = id + 1;
    return p;
}

int rt_gomaxprocs(int n)
{
    int old = atomic_load(&sched.nprocs);
    if (n <= 0 || !atomic_load(&sched.running))
        return old > 0 ? old : rt_num_cpu();
    if (n > RT__MAXPROCS)
        n = RT__MAXPROCS;
    if (n == old)
        return old;
    rt__lock_acquire(&sched.lock);
    if (n > old) {
        int i;
        for (i = old; i < n; i++)
            if (!allocp_locked(i))
                break;
        n = i;
        atomic_store(&sched.nprocs, n);
        for (i = old; i < n; i++) {
            rt_p *p = sched.allp[i];
            if (p->status == P_RETIRED)
                pidleput_locked(p);
        }
    } else {
        atomic_store(&sched.nprocs, n);
        /* Idle Ps beyond n leave the idle list; running ones retire
         * themselves at their next scheduling point. */
        for (rt_p **pp = &sched.pidle; *pp;) {
            rt_p *p = *pp;
            if (p->id >= n) {
                *pp = p->link;
                p->link = NULL;
                p->status = P_RETIRED;
                atomic_fetch_sub(&sched.npidle, 1);
                rt__stack_flush(p);
            } else {
                pp = &p->link;
            }
        }
    }
    rt__lock_release(&sched.lock);
    if (n > old)
        wakep();
    return old;
}

/* ------------------------------------------------------------------ */
/* parking                                                             */
/* ------------------------------------------------------------------ */

void rt__waiter_init(rt__waiter *w)
{
    memset(w, 0, sizeof(*w));
    w->g = rt__getg();
}

/* q->head is written with atomic stores: select peeks at it without the
 * object's lock (a hint, re-checked under the lock). */
void rt__waitq_push(rt__waitq *q, rt__waiter *w)
{
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail)
        q->tail->next = w;
    else
        __atomic_store_n(&q->head, w, __ATOMIC_RELAXED);
    q->tail = w;
    w->queued = true;
}

void rt__waitq_remove(rt__waitq *q, rt__waiter *w)
{
    if (!w->queued)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        __atomic_store_n(&q->head, w->next, __ATOMIC_RELAXED);
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->next = w->prev = NULL;
    w->queued = false;
}

bool rt__waitq_empty(const rt__waitq *q)
{
    return q->head == NULL;
}

bool rt__waitq_claim(rt__waitq *q, rt__waiter *w)
{
    rt__waitq_remove(q, w);
    rt_g *g = w->g;
    int s = RT__WS_WAITING;
    if (!atomic_compare_exchange_strong(&g->wait_state, &s, RT__WS_CLAIMED))
        return false;
    g->wake_reason = 0;
    g->wake_waiter = w;
    return true;
}

rt__waiter *rt__waitq_pop_claim(rt__waitq *q)
{
    rt__waiter *w;
    while ((w = q->head) != NULL)
        if (rt__waitq_claim(q, w))
            return w;
    return NULL;
}

void rt__ready(rt_g *g)
{
    if (__builtin_expect(g->wakef != NULL, 0)) {
        g->wakef(g); /* an await (await.c): no goroutine to run */
        return;
    }
    for (;;) {
        int s = atomic_load(&g->status);
        if (s == RT__G_PARKING) {
            if (atomic_compare_exchange_strong(&g->status, &s,
                                               RT__G_READY_EARLY))
                return;
        } else if (s == RT__G_PARKED) {
            /* Once PARKED, only the one claimer of the wait (us) changes
             * the status: no compare-and-swap needed. */
            atomic_store_explicit(&g->status, RT__G_RUNNABLE,
                                  memory_order_relaxed);
            break;
        } else {
            fatal("rt__ready of a goroutine that is not parked");
        }
    }
    ready_put(g, false);
}

/* Claims the caller's own wait (deadline passed or token fired before it
 * slept).  False: someone else claimed it first and will ready us. */
static bool self_claim(rt_g *g, int reason)
{
    int s = RT__WS_WAITING;
    if (!atomic_compare_exchange_strong(&g->wait_state, &s, RT__WS_CLAIMED))
        return false;
    g->wake_reason = reason;
    g->wake_waiter = NULL;
    return true;
}

static void park_timer_fn(rt__timer *t, int64_t now)
{
    (void)now;
    rt_g *g = t->arg;
    int s = RT__WS_WAITING;
    if (atomic_compare_exchange_strong(&g->wait_state, &s, RT__WS_CLAIMED)) {
        g->wake_reason = RT_ETIMEDOUT;
        g->wake_waiter = NULL;
        rt__ready(g);
    }
}

/* Coarse clock for "waiting since": cheap, and the dump needs no more. */
static int64_t coarse_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int rt__park_ex(rt__waiter *ws, int n, rt_deadline_t dl,
                void (*unlockf)(void *), void *arg, const char *reason)
{
    rt_m *m = rt__getm();
    rt_g *g = m ? m->curg : NULL;
    if (!g) {
        if (unlockf)
            unlockf(arg);
        return RT_EPERM;
    }
    int64_t since = coarse_now();
    for (int i = 0; i < n; i++)
        ws[i].since = since;
    g->wait_reason = reason;
    g->wait_since = since;
    g->wake_waiter = NULL;
    g->unlockf = unlockf;
    g->unlockarg = arg;
    /* PARKING before WAITING: whoever claims the wait sees PARKING at
     * least, so rt__ready never meets a running goroutine. */
    atomic_store_explicit(&g->status, RT__G_PARKING, memory_order_relaxed);
    if (g->cancel) {
        /* Dekker with rt_cancel_fire: store the wait, then load fired. */
        atomic_store(&g->wait_state, RT__WS_WAITING);
    } else {
        /* Wakers claim under the object's lock and the deadline timer is
         * armed below (under the timer lock): release is enough. */
        atomic_store_explicit(&g->wait_state, RT__WS_WAITING,
                              memory_order_release);
    }

    int early = 0;
    if (g->cancel && rt_cancel_fired(g->cancel))
        early = RT_ECANCELED;
    else if (dl != RT_FOREVER && dl <= rt_now())
        early = RT_ETIMEDOUT;
    if (early) {
        if (self_claim(g, early)) {
            atomic_store(&g->status, RT__G_RUNNING);
            if (unlockf)
                unlockf(arg);
            return early;
        }
        /* Claimed by someone else: park anyway and take their wake-up. */
    } else if (dl != RT_FOREVER) {
        g->park_timer.fn = park_timer_fn;
        g->park_timer.arg = g;
        rt__timer_start(&g->park_timer, dl, 0);
        g->timer_armed = true;
    }
    g->switch_op = RT__OP_PARK;
    gswitch(m, g);
    /* Resumed: possibly on another M; do not use m. */
    if (g->park_counted) {
        g->park_counted = false;
        atomic_fetch_sub(g->park_count, 1);
    }
    if (g->timer_armed) {
        rt__timer_stop(&g->park_timer);
        g->timer_armed = false;
    }
    return g->wake_reason;
}

static void unlock_one(void *l)
{
    rt__lock_release(l);
}

int rt__park(rt__waiter *ws, int n, rt_deadline_t dl, rt__lock *lock,
             const char *reason)
{
    return rt__park_ex(ws, n, dl, lock ? unlock_one : NULL, lock, reason);
}

/* Called by timer.c when `when` is earlier than every armed timer. */
void rt__sched_timer_added(int64_t when)
{
    if (!atomic_load(&sched.running))
        return;
    if (when >= atomic_load(&sched.timer_m_deadline))
        return;
    bool start = false;
    rt__lock_acquire(&sched.lock);
    if (sched.timer_m) {
        if (when < atomic_load(&sched.timer_m_deadline)) {
            atomic_store(&sched.timer_m_deadline, when);
            notewakeup(sched.timer_m);
        }
    } else if (sched.midle) {
        /* An idle M without a timeout: wake it to become the timer
         * sleeper (it stays without a P). */
        notewakeup(sched.midle);
    } else if (atomic_load(&sched.npidle) > 0) {
        start = true;
    }
    rt__lock_release(&sched.lock);
    if (start)
        startm(NULL, false);
}

/* ------------------------------------------------------------------ */
/* lifecycle                                                           */
/* ------------------------------------------------------------------ */

static int sched_start(const rt_config *cfg, bool main_mode)
{
    int expect = 0;
    if (!atomic_compare_exchange_strong(&sched.running, &expect, 1))
        return RT_EINVAL;
    int n = cfg && cfg->gomaxprocs > 0 ? cfg->gomaxprocs : rt_num_cpu();
    if (n > RT__MAXPROCS)
        n = RT__MAXPROCS;
    rt__stack_set_size(cfg ? cfg->stack_size : 0);
    sched.midle = NULL;
    sched.pidle = NULL;
    sched.runq_head = sched.runq_tail = NULL;
    sched.allm = NULL;
    sched.timer_m = NULL;
    sched.nallp = 0;
    sched.result = 0;
    sched.main_mode = main_mode;
    atomic_store(&sched.timer_m_deadline, INT64_MAX);
    atomic_store(&sched.nmidle, 0);
    atomic_store(&sched.npidle, 0);
    atomic_store(&sched.nmspinning, 0);
    atomic_store(&sched.runq_size, 0);
    atomic_store(&sched.nm, 0);
    atomic_store(&sched.ngoroutines, 0);
    atomic_store(&sched.goid, 0);
    atomic_store(&sched.stopping, 0);
    atomic_store(&sched.done, 0);
    atomic_store(&sched.nprocs, n);
    rt__lock_acquire(&sched.lock);
    for (int i = n - 1; i >= 0; i--) {
        rt_p *p = allocp_locked(i);
        if (!p) {
            rt__lock_release(&sched.lock);
            return RT_ENOMEM;
        }
        pidleput_locked(p);
    }
    rt__lock_release(&sched.lock);
    return 0;
}

static void sched_stop(void)
{
    atomic_store(&sched.stopping, 1);
    rt__lock_acquire(&sched.lock);
    for (rt_m *m = sched.allm; m; m = m->alllink)
        notewakeup(m);
    rt_m *all = sched.allm;
    rt__lock_release(&sched.lock);
    /* No M is created once stopping is set, so the list is final. */
    for (rt_m *m = all; m;) {
        rt_m *next = m->alllink;
        pthread_join(m->thread, NULL);
        free(m);
        m = next;
    }
    rt__timers_reset();
    rt__stack_release_all();
    for (int i = 0; i < RT__MAXPROCS; i++) {
        free(sched.allp[i]);
        sched.allp[i] = NULL;
    }
    sched.allm = NULL;
    sched.midle = NULL;
    sched.pidle = NULL;
    sched.runq_head = sched.runq_tail = NULL;
    sched.timer_m = NULL;
    sched.nallp = 0;
    atomic_store(&sched.runq_size, 0);
    atomic_store(&sched.ngoroutines, 0);
    atomic_store(&sched.nm, 0);
    atomic_store(&sched.refs, 0);
    atomic_store(&sched.running, 0);
}

int rt_start(const rt_config *cfg)
{
    if (rt__getm())
        return RT_EPERM;
    return sched_start(cfg, false);
}

void rt_stop(void)
{
    if (!atomic_load(&sched.running) || rt__getm())
        return;
    sched_stop();
}

static void main_entry(void *arg)
{
    (void)arg;
    sched.main_fn(sched.main_arg);
    main_done(0);
}

int rt_main(const rt_config *cfg, void (*fn)(void *), void *arg, char *errbuf,
            size_t errlen)
{
    if (!fn)
        return RT_EINVAL;
    if (rt__getm())
        return RT_EPERM;
    int r = sched_start(cfg, true);
    if (r)
        return r;
    sched.main_fn = fn;
    sched.main_arg = arg;
    r = rt_go(main_entry, NULL);
    if (r) {
        sched_stop();
        return r;
    }
    while (atomic_load(&sched.done) == 0)
        rt__futex_wait(&sched.done, 0, -1);
    r = sched.result;
    if (r == RT_EDEADLK && errbuf && errlen > 0) {
        FILE *f = fmemopen(errbuf, errlen, "w");
        if (f) {
            fprintf(f, "fatal error: %s\n\n", rt_strerror(RT_EDEADLK));
            rt_dump(f);
            fclose(f);
        } else {
            snprintf(errbuf, errlen, "%s", rt_strerror(RT_EDEADLK));
        }
        errbuf[errlen - 1] = '\0';
    }
    sched_stop();
    return r;
}
