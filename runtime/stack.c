/*
 * stack.c - goroutine stacks.  Each goroutine owns one "unit" of address
 * space holding, from low to high addresses, a guard page slot, its stack,
 * and its rt_g at the very top (so a parked goroutine that used less than a
 * page of stack costs one resident page in all).
 *
 * Units are carved from slabs of RT__SLAB_UNITS, each reserved with one
 * mmap(PROT_NONE, MAP_NORESERVE): memory is committed lazily by the kernel,
 * and making a unit usable is one mprotect of never-touched pages (no TLB
 * shootdown, which costs tens of microseconds in a VM).  A guard page costs
 * two VMAs and vm.max_map_count (65530 by default) runs out near 32k
 * guarded stacks, so units are guarded (their lowest page left PROT_NONE)
 * while a budget allows; beyond it the whole unit is opened (adjacent open
 * units merge into one VMA) and the scheduler checks a canary at the stack
 * bottom at every switch.  The canary is "the two lowest words are still
 * zero": the check only reads the page, which maps the kernel's shared zero
 * page instead of committing memory, so an unguarded parked goroutine still
 * costs one resident page; and it is read only once the goroutine has been
 * seen deep in its stack (see rt__stack_check).  Spawning never fails because
 * of the VMA limit, and an overflow dies with a clear message (rt__stack_check)
 * instead of going on with corrupted memory.
 *
 * Free units are reused LIFO: first from the P's own cache (no lock), then
 * from a global cache.  An M about to sleep trims the global cache beyond
 * RT__GLOBAL_CACHE once it stopped growing: trimmed units get
 * MADV_DONTNEED (their memory, rt_g included, goes back to the kernel) and
 * wait on a "cold" list for reuse.  Address space is returned only when the
 * runtime stops (whole slabs at once).
 */
#include "rt_sched.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define RT__HAVE_VALGRIND 1
#endif
#endif

/* LeakSanitizer does not scan mmap'd memory: a parked goroutine's rt_g
 * and stack hold the only pointers to its request, which it would then
 * report as leaked.  Slabs are registered as root regions (only their
 * readable pages are scanned). */
#if defined(__SANITIZE_ADDRESS__)
#define RT__HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RT__HAVE_LSAN 1
#endif
#endif
#ifdef RT__HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

#define RT__GLOBAL_CACHE 1024
#define RT__DEFAULT_STACK (256 * 1024)
#define RT__SLAB_UNITS 64
#define RT__CANARY_ZONE (64 * 1024)
#define RT__TRIM_QUIET 100000000 /* ns without growth before trimming */

typedef struct slab {
    struct slab *next;
    char *base;
    size_t unit_size;
    int used;  /* units handed out (readable rt_g) */
    bool open; /* mapped read-write whole: no guards */
} slab;

static size_t stack_size = RT__DEFAULT_STACK;
static size_t page_size;
static long guard_budget = -1;
static _Atomic long guarded_live;

/* Everything below is under gcache_lock. */
static rt__lock gcache_lock;
static slab *_Atomic slabs; /* newest first; the head hands out units */
static rt_g **gcache;       /* free units, rt_g intact (LIFO array) */
static int ngcache, capgcache;
static uintptr_t *cold; /* trimmed units: base | guarded bit */
static size_t ncold, capcold;
static _Atomic int ngcache_hint; /* ngcache, readable without the lock */
static _Atomic int64_t last_put; /* when the cache last grew past its size */

static int64_t coarse_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The guard budget leaves room for everything else in the process (heap
 * arenas, libraries, thread stacks): a third of the map count, <= 20k. */
static void stack_init_budget(void)
{
    long maxmap = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");

    if (f) {
        if (fscanf(f, "%ld", &maxmap) != 1)
            maxmap = 65530;
        fclose(f);
    }
    guard_budget = maxmap / 3;
    if (guard_budget > 20000)
        guard_budget = 20000;
    page_size = (size_t)sysconf(_SC_PAGESIZE);
}

/* A fault in a guard page is a goroutine stack overflow: say so before
 * dying, as Go does, instead of a bare "Segmentation fault".  Installed
 * only when nobody else handles SIGSEGV (sanitizers have their own). */
static struct sigaction old_segv;

static void segv_handler(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    uintptr_t a = (uintptr_t)si->si_addr;
    for (slab *s = atomic_load(&slabs); s; s = s->next) {
        uintptr_t base = (uintptr_t)s->base;
        if (a < base || a >= base + s->unit_size * RT__SLAB_UNITS)
            continue;
        if ((a - base) % s->unit_size < page_size) {
            static const char msg[] =
                "fatal error: stack overflow\n\nruntime: goroutine stack "
                "exceeded its reserve (hit the guard page; raise "
                "rt_config.stack_size)\n";
            if (write(2, msg, sizeof(msg) - 1) < 0)
                abort();
            abort();
        }
        break;
    }
    /* Not ours: put the old disposition back and let the fault recur. */
    sigaction(sig, &old_segv, NULL);
}

static void segv_install(void)
{
    struct sigaction cur, sa;
    if (sigaction(SIGSEGV, NULL, &cur) != 0)
        return;
    if ((cur.sa_flags & SA_SIGINFO) || cur.sa_handler != SIG_DFL)
        return; /* ours already, or someone else's */
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = segv_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &old_segv);
}

/* The M keeps its signal stack in a local of mstart's frame, which
 * LeakSanitizer cannot see while the thread runs goroutine stacks: a copy
 * in TLS (scanned) keeps the allocation visibly reachable. */
static __thread void *altstack_keep;

void *rt__stack_altstack(void)
{
    stack_t ss;
    ss.ss_size = 64 * 1024;
    ss.ss_sp = malloc(ss.ss_size);
    ss.ss_flags = 0;
    if (!ss.ss_sp || sigaltstack(&ss, NULL) != 0) {
        free(ss.ss_sp);
        return NULL;
    }
    altstack_keep = ss.ss_sp;
    return ss.ss_sp;
}

void rt__stack_altstack_free(void *p)
{
    if (!p)
        return;
    stack_t ss = {.ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    altstack_keep = NULL;
    free(p);
}

void rt__stack_set_size(size_t sz)
{
    if (guard_budget < 0)
        stack_init_budget();
    segv_install();
    if (sz == 0)
        sz = RT__DEFAULT_STACK;
    if (sz < 16 * 1024)
        sz = 16 * 1024;
    sz = (sz + page_size - 1) & ~(page_size - 1);
    stack_size = sz;
}

static size_t unit_size(void)
{
    return stack_size + page_size;
}

/* Lays out the rt_g of the unit at base (memory reads as zero). */
static rt_g *unit_init(char *base, bool guarded)
{
    size_t total = unit_size();
    uintptr_t top = (uintptr_t)base + total;
    uintptr_t gaddr = (top - sizeof(rt_g)) & ~(uintptr_t)63;
    rt_g *g = (rt_g *)gaddr;
    g->map_base = base;
    g->map_size = total;
    g->guarded = guarded;
    g->stack_lo = (uintptr_t)base + page_size;
    g->stack_hi = gaddr & ~(uintptr_t)15;
    return g;
}

/* Opens a fresh unit of the head slab, mapping a new slab when needed.
 * gcache_lock held. */
static rt_g *unit_new_locked(void)
{
    size_t us = unit_size();
    if (!slabs || slabs->used == RT__SLAB_UNITS || slabs->unit_size != us) {
        slab *s = malloc(sizeof(*s));
        if (!s)
            return NULL;
        /* Past the guard budget a slab is mapped open at once: no
         * mprotect per unit. */
        s->open = atomic_load(&guarded_live) >= guard_budget;
        s->base = mmap(NULL, us * RT__SLAB_UNITS,
                       s->open ? PROT_READ | PROT_WRITE : PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (s->base == MAP_FAILED) {
            free(s);
            return NULL;
        }
        /* Keep transparent huge pages from backing 2 MiB of stacks on
         * first touch. */
        madvise(s->base, us * RT__SLAB_UNITS, MADV_NOHUGEPAGE);
#ifdef RT__HAVE_LSAN
        __lsan_register_root_region(s->base, us * RT__SLAB_UNITS);
#endif
        s->unit_size = us;
        s->used = 0;
        s->next = slabs;
        atomic_store(&slabs, s); /* published last: read by the handler */
    }
    char *base = slabs->base + (size_t)slabs->used * us;
    bool guarded = false;
    if (!slabs->open) {
        guarded = atomic_load(&guarded_live) < guard_budget;
        char *open = guarded ? base + page_size : base;
        if (mprotect(open, us - (size_t)(open - base), PROT_READ | PROT_WRITE))
            return NULL;
    }
    if (guarded)
        atomic_fetch_add(&guarded_live, 1);
    slabs->used++;
    rt_g *g = unit_init(base, guarded);
#ifdef RT__HAVE_VALGRIND
    VALGRIND_STACK_REGISTER(g->stack_lo, g->stack_hi);
#endif
    return g;
}

/* Grows the cold array to hold n; returns it or NULL (then unchanged).
 * gcache_lock held. */
static uintptr_t *realloc_cold(size_t n)
{
    size_t nc = n * 2;
    uintptr_t *nw = realloc(cold, nc * sizeof(*nw));
    if (!nw)
        return NULL;
    capcold = nc;
    return nw;
}

/* Makes room for n more units in the global cache.  gcache_lock held. */
static bool gcache_reserve(int n)
{
    if (ngcache + n <= capgcache)
        return true;
    int nc = capgcache ? capgcache * 2 : 256;
    while (nc < ngcache + n)
        nc *= 2;
    rt_g **ng = realloc(gcache, (size_t)nc * sizeof(*ng));
    if (!ng)
        return false;
    gcache = ng;
    capgcache = nc;
    return true;
}

static void note_global_size(void)
{
    atomic_store_explicit(&ngcache_hint, ngcache, memory_order_relaxed);
    if (ngcache > RT__GLOBAL_CACHE)
        atomic_store_explicit(&last_put, coarse_now(), memory_order_relaxed);
}

/* The global cache is an array of pointers, moved in batches of half a P
 * cache (as Go's gfget/gfput): one lock round trip per 16 spawns or exits,
 * and the units themselves (cold, one page each) are not touched. */
rt_g *rt__stack_alloc(rt_p *p)
{
    rt_g *g = NULL;

    if (p && p->ngfree > 0)
        return p->gfree[--p->ngfree];
    rt__lock_acquire(&gcache_lock);
    if (ngcache > 0) {
        if (p) {
            int k =
                ngcache < RT__STACK_CACHE / 2 ? ngcache : RT__STACK_CACHE / 2;
            ngcache -= k;
            memcpy(p->gfree, gcache + ngcache, (size_t)k * sizeof(rt_g *));
            p->ngfree = k - 1;
            g = p->gfree[k - 1];
        } else {
            g = gcache[--ngcache];
        }
        atomic_store_explicit(&ngcache_hint, ngcache, memory_order_relaxed);
    } else if (ncold > 0) {
        uintptr_t u = cold[--ncold];
        g = unit_init((char *)(u & ~(uintptr_t)1), u & 1);
    } else {
        g = unit_new_locked();
    }
    rt__lock_release(&gcache_lock);
    return g;
}

/* Gives back every page but the top one (it holds the rt_g) when the
 * goroutine was seen deeper than two pages at a switch: madvise makes a
 * TLB shootdown on every CPU, so shallow stacks -- nearly all -- skip it. */
static void stack_shrink(rt_g *g)
{
    uintptr_t top_page = ((uintptr_t)g) & ~(uintptr_t)(page_size - 1);
    if (g->min_sp && g->min_sp < top_page - page_size)
        madvise((void *)g->stack_lo, top_page - g->stack_lo, MADV_DONTNEED);
    g->min_sp = 0;
}

static void to_global(rt_g **gs, int n)
{
    rt__lock_acquire(&gcache_lock);
    if (gcache_reserve(n)) {
        memcpy(gcache + ngcache, gs, (size_t)n * sizeof(rt_g *));
        ngcache += n;
        n = 0;
    }
    note_global_size();
    rt__lock_release(&gcache_lock);
    if (n > 0) {
        /* No memory for the array: drop the units' pages instead. */
        for (int i = 0; i < n; i++) {
            uintptr_t top_page =
                ((uintptr_t)gs[i]) & ~(uintptr_t)(page_size - 1);
            madvise((void *)gs[i]->stack_lo, top_page - gs[i]->stack_lo,
                    MADV_DONTNEED);
        }
    }
}

void rt__stack_free(rt_p *p, rt_g *g)
{
    stack_shrink(g);
    if (!p) {
        to_global(&g, 1);
        return;
    }
    if (p->ngfree == RT__STACK_CACHE) {
        int k = RT__STACK_CACHE / 2;
        p->ngfree -= k;
        to_global(p->gfree + p->ngfree, k);
    }
    p->gfree[p->ngfree++] = g;
}

void rt__stack_flush(rt_p *p)
{
    if (p->ngfree > 0)
        to_global(p->gfree, p->ngfree);
    p->ngfree = 0;
}

int64_t rt__stack_trim(void)
{
    if (atomic_load_explicit(&ngcache_hint, memory_order_relaxed) <=
        RT__GLOBAL_CACHE)
        return -1;
    /* Wait until the burst is over: a spawn loop that outruns its
     * consumers would otherwise give memory back and fault it in again. */
    int64_t quiet = coarse_now() - atomic_load(&last_put);
    if (quiet < RT__TRIM_QUIET)
        return RT__TRIM_QUIET - quiet;
    rt__lock_acquire(&gcache_lock);
    int n = ngcache - RT__GLOBAL_CACHE;
    if (n <= 0) {
        rt__lock_release(&gcache_lock);
        return -1;
    }
    rt_g **list = malloc((size_t)n * sizeof(*list));
    if (list && ncold + (size_t)n > capcold) {
        uintptr_t *nc = realloc_cold(ncold + (size_t)n);
        if (nc) {
            cold = nc;
        } else {
            free(list);
            list = NULL;
        }
    }
    if (!list) {
        rt__lock_release(&gcache_lock);
        return -1;
    }
    /* The bottom of the LIFO array holds the coldest units. */
    memcpy(list, gcache, (size_t)n * sizeof(*list));
    memmove(gcache, gcache + n, (size_t)(ngcache - n) * sizeof(*gcache));
    ngcache -= n;
    atomic_store_explicit(&ngcache_hint, ngcache, memory_order_relaxed);
    rt__lock_release(&gcache_lock);
    /* Outside the lock: madvise is slow.  The units are on no list now. */
    for (int i = 0; i < n; i++) {
        rt_g *g = list[i];
        uintptr_t u = (uintptr_t)g->map_base | (g->guarded ? 1 : 0);
        char *open = g->guarded ? g->map_base + page_size : g->map_base;
        size_t len = g->map_size - (size_t)(open - g->map_base);
        madvise(open, len, MADV_DONTNEED); /* g is gone after this */
        list[i] = (rt_g *)u;
    }
    rt__lock_acquire(&gcache_lock);
    for (int i = 0; i < n; i++)
        cold[ncold++] = (uintptr_t)list[i];
    rt__lock_release(&gcache_lock);
    free(list);
    return -1;
}

void rt__stack_release_all(void)
{
    rt__lock_acquire(&gcache_lock);
    while (slabs) {
        slab *s = slabs;
        slabs = s->next;
#ifdef RT__HAVE_LSAN
        __lsan_unregister_root_region(s->base, s->unit_size * RT__SLAB_UNITS);
#endif
        munmap(s->base, s->unit_size * RT__SLAB_UNITS);
        free(s);
    }
    free(gcache);
    gcache = NULL;
    ngcache = capgcache = 0;
    free(cold);
    cold = NULL;
    ncold = capcold = 0;
    atomic_store(&ngcache_hint, 0);
    atomic_store(&guarded_live, 0);
    rt__lock_release(&gcache_lock);
}

void rt__allg_each(void (*fn)(rt_g *g, void *arg), void *arg)
{
    rt__lock_acquire(&gcache_lock);
    for (slab *s = slabs; s; s = s->next) {
        for (int i = 0; i < s->used; i++) {
            char *base = s->base + (size_t)i * s->unit_size;
            uintptr_t top = (uintptr_t)base + s->unit_size;
            rt_g *g = (rt_g *)((top - sizeof(rt_g)) & ~(uintptr_t)63);
            /* A trimmed unit reads as zero: status IDLE. */
            fn(g, arg);
        }
    }
    rt__lock_release(&gcache_lock);
}

void rt__stack_check(rt_g *g)
{
    if (g->guarded)
        return;
    /* The canary page is read only once the goroutine has been seen within
     * RT__CANARY_ZONE of the bottom: a first read of a never-touched page
     * is a page fault (~10 us in a VM), too much for every fresh goroutine.
     * The saved stack pointer itself is checked at every switch. */
    uintptr_t sp = (uintptr_t)g->sp;
    if (sp > g->stack_lo + 256 &&
        (g->min_sp > g->stack_lo + RT__CANARY_ZONE || g->min_sp == 0))
        return;
    const uint64_t *canary = (const uint64_t *)g->stack_lo;
    if (sp > g->stack_lo + 256 && (canary[0] | canary[1]) == 0)
        return;
    char msg[200];
    int n = snprintf(msg, sizeof(msg),
                     "fatal error: stack overflow\n\nruntime: goroutine %lld "
                     "overflowed its %zu-byte stack (canary at %p "
                     "overwritten)\n",
                     (long long)g->id, g->stack_hi - g->stack_lo,
                     (void *)g->stack_lo);
    if (n > 0 && write(2, msg, (size_t)n) < 0)
        abort();
    abort();
}
