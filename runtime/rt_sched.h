/*
 * rt_sched.h - the scheduler's private types (G, M, P, the global sched
 * state) shared by the runtime core files: sched.c, stack.c, cancel.c,
 * dump.c, timer.c, chan.c, select.c.  Not for the sync/time package (that
 * one uses only rt_internal.h).
 */
#ifndef CHAND_RT_SCHED_H
#define CHAND_RT_SCHED_H

#include "rt_internal.h"

#include <pthread.h>

#if defined(__GNUC__) && !defined(__clang__)
#define RT__NOIPA __attribute__((noinline, noipa))
#else
#define RT__NOIPA __attribute__((noinline))
#endif

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RT__ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define RT__TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(RT__ASAN)
#define RT__ASAN 1
#endif
#if defined(__SANITIZE_THREAD__) && !defined(RT__TSAN)
#define RT__TSAN 1
#endif

/* Goroutine states (rt_g.status). */
enum {
    RT__G_IDLE = 0,    /* free, cached */
    RT__G_RUNNABLE,    /* in a run queue */
    RT__G_RUNNING,     /* on an M */
    RT__G_PARKING,     /* switching off its stack to park */
    RT__G_READY_EARLY, /* readied while PARKING: g0 re-queues it */
    RT__G_PARKED,      /* off its stack, waiting */
    RT__G_DEAD,        /* finished */
};

/* Claim word of the current wait (rt_g.wait_state). */
enum { RT__WS_NONE = 0, RT__WS_WAITING = 1, RT__WS_CLAIMED = 2 };

/* What g0 does after a goroutine switched to it (rt_g.switch_op). */
enum { RT__OP_PARK = 1, RT__OP_YIELD, RT__OP_EXIT };

typedef struct rt_m rt_m;
typedef struct rt_p rt_p;

struct rt_g {
    void *sp; /* saved stack pointer while switched out */
    _Atomic int status;
    _Atomic int wait_state;
    int wake_reason; /* 0, RT_ETIMEDOUT, RT_ECANCELED */
    int switch_op;
    rt__waiter *wake_waiter; /* the waiter a waker claimed */
    int64_t id;
    void (*fn)(void *);
    void *arg;
    rt_g *schedlink;             /* run queues, free lists */
    rt_cancel *cancel;           /* attached token */
    _Atomic int64_t *park_count; /* rt_park_count_attach's counter */
    bool park_counted;           /* this park added 1 to it */
    rt_g *cnext, *cprev;         /* links in the token's list */
    const char *wait_reason;
    int64_t wait_since;
    void (*unlockf)(void *); /* run by g0 once g is off its stack */
    void *unlockarg;
    int saved_errno;
    bool timer_armed;
    bool guarded;
    /* Set on an await's stand-in g (await.c), which has no stack and never
     * runs: rt__ready calls this instead of queueing it. */
    void (*wakef)(rt_g *g);
    /* stack unit: [guard][stack ... ][this struct] */
    char *map_base;
    size_t map_size;
    uintptr_t stack_lo, stack_hi;
    uintptr_t min_sp; /* deepest sp seen at a switch */
    rt__timer park_timer;
#ifdef RT__ASAN
    void *asan_fake;
#endif
#ifdef RT__TSAN
    void *tsan_fiber;
#endif
};

#define RT__RUNQ_SIZE 256
#define RT__STACK_CACHE 32

struct rt_p {
    int id;
    int status; /* 0 idle, 1 running, 2 retired */
    rt_m *m;
    rt_p *link; /* idle list */
    _Atomic uint32_t schedtick;
    _Atomic uint32_t runqhead;
    _Atomic uint32_t runqtail;
    rt_g *_Atomic runq[RT__RUNQ_SIZE];
    rt_g *_Atomic runnext;
    rt_g *gfree[RT__STACK_CACHE]; /* LIFO cache of free g+stack units */
    int ngfree;
};

struct rt_m {
    int id;
    pthread_t thread;
    void *g0_sp; /* g0's saved stack pointer */
    rt_g *curg;
    rt_g *prev; /* switched out, not yet finished */
    rt_p *p;
    rt_p *nextp; /* handed over by startm */
    bool spinning;
    bool idle;             /* on the idle list */
    _Atomic uint32_t park; /* futex word: 1 = wake up */
    rt_m *idlelink;
    rt_m *alllink;
    uint64_t rand;
#ifdef RT__ASAN
    void *asan_fake;
    const void *g0_stack_bottom;
    size_t g0_stack_size;
#endif
#ifdef RT__TSAN
    void *tsan_fiber;
#endif
};

/* ---- shared between the core files ---- */

RT__HIDDEN rt_m *rt__getm(void) RT__NOIPA;
/* Allocates a g+stack unit (status IDLE) or NULL. */
RT__HIDDEN rt_g *rt__stack_alloc(rt_p *p);
/* Returns a dead g's unit to p's cache (p may be NULL: global cache). */
RT__HIDDEN void rt__stack_free(rt_p *p, rt_g *g);
/* Moves a P's cached units to the global cache (P retired/stopping). */
RT__HIDDEN void rt__stack_flush(rt_p *p);
/* Unmaps every unit (runtime stop). */
RT__HIDDEN void rt__stack_release_all(void);
/* Unmaps globally cached units beyond the cache size (idle Ms); returns
 * -1, or ns after which to call again (the cache is still growing). */
RT__HIDDEN int64_t rt__stack_trim(void);
RT__HIDDEN void rt__stack_set_size(size_t sz);
/* An alternate signal stack for the calling M (overflow message), and
 * its release at thread exit. */
RT__HIDDEN void *rt__stack_altstack(void);
RT__HIDDEN void rt__stack_altstack_free(void *p);
/* Dies with a message when g's bottom canary was overwritten. */
RT__HIDDEN void rt__stack_check(rt_g *g);

/* Calls fn for every g ever allocated (live or free) under the stack
 * lock; fn must not allocate goroutines. */
RT__HIDDEN void rt__allg_each(void (*fn)(rt_g *g, void *arg), void *arg);

/* context switch (ctx_*.S) */
void rt__ctx_switch(void **save_sp, void *load_sp);
void rt__ctx_trampoline(void);

/* cancel.c */
RT__HIDDEN void rt__cancel_detach(rt_g *g);
/* Attaches g (not necessarily the caller) to c; detaches when c is NULL. */
RT__HIDDEN void rt__cancel_attach_g(rt_g *g, rt_cancel *c);

/* timer.c */
RT__HIDDEN int64_t rt__timer_next(void); /* earliest `when`, or -1 */
RT__HIDDEN void rt__timers_run(int64_t now);
RT__HIDDEN int64_t rt__timers_running(void);
RT__HIDDEN void rt__timers_reset(void);
/* sched.c: a timer earlier than any before was armed */
RT__HIDDEN void rt__sched_timer_added(int64_t when);

/* lock.c: futex helpers; timeout_ns < 0 waits forever */
RT__HIDDEN void rt__futex_wait(_Atomic uint32_t *addr, uint32_t val,
                               int64_t timeout_ns);
RT__HIDDEN void rt__futex_wake(_Atomic uint32_t *addr, int n);

/* sched.c: internal park with an arbitrary unlock function (select) */
RT__HIDDEN int rt__park_ex(rt__waiter *ws, int n, rt_deadline_t dl,
                           void (*unlockf)(void *), void *arg,
                           const char *reason);

static inline void rt__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

#endif /* CHAND_RT_SCHED_H */
