/*
 * stack.c - goroutine stacks: one mmap'd unit per goroutine holding, from
 * low to high addresses, an optional guard page, the stack, and the rt_g
 * itself at the very top (so a parked goroutine that used less than a page
 * of stack costs one resident page in all).
 *
 * Units are reserved with MAP_NORESERVE and committed lazily by the kernel.
 * A guard page costs two VMAs and vm.max_map_count (65530 by default) runs
 * out near 32k guarded stacks, so units are guarded while a budget allows
 * and beyond it rely on a canary word at the stack bottom that the
 * scheduler checks at every switch: spawning never fails because of the VMA
 * limit, and an overflow dies with a clear message rather than corrupting
 * memory silently.
 *
 * Free units are reused LIFO: first from the P's own cache (no lock), then
 * from a global cache.  Units entering the global cache give their stack
 * pages back with MADV_DONTNEED so that RSS falls after a burst; beyond
 * RT__GLOBAL_CACHE units they are unmapped.
 */
#include "rt_sched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define RT__HAVE_VALGRIND 1
#endif
#endif

#define RT__STACK_CANARY 0x5a17c0deca11ab1eULL
#define RT__GLOBAL_CACHE 1024
#define RT__DEFAULT_STACK (256 * 1024)

static size_t stack_size = RT__DEFAULT_STACK;
static size_t page_size;
static long guard_budget = -1;
static _Atomic long guarded_live;

static rt__lock gcache_lock;
static rt_g *gcache;          /* stack pages returned to the kernel */
static int ngcache;

static rt__lock allg_lk;
static rt_g *allg;

void rt__allg_lock(void) { rt__lock_acquire(&allg_lk); }
void rt__allg_unlock(void) { rt__lock_release(&allg_lk); }
rt_g *rt__allg_head(void) { return allg; }

/* The guard budget leaves room for everything else in the process (heap
 * arenas, libraries, other stacks): a third of the map count, at most 20k. */
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

void rt__stack_set_size(size_t sz)
{
    if (guard_budget < 0)
        stack_init_budget();
    if (sz == 0)
        sz = RT__DEFAULT_STACK;
    if (sz < 16 * 1024)
        sz = 16 * 1024;
    sz = (sz + page_size - 1) & ~(page_size - 1);
    stack_size = sz;
}

static rt_g *stack_map(void)
{
    size_t total = stack_size + page_size; /* + room for the guard */
    char *base = mmap(NULL, total, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED)
        return NULL;

    bool guarded = false;
    if (atomic_fetch_add(&guarded_live, 1) < guard_budget) {
        if (mprotect(base, page_size, PROT_NONE) == 0)
            guarded = true;
    }
    if (!guarded)
        atomic_fetch_sub(&guarded_live, 1);

    uintptr_t top = (uintptr_t)base + total;
    uintptr_t gaddr = (top - sizeof(rt_g)) & ~(uintptr_t)63;
    rt_g *g = (rt_g *)gaddr;
    memset(g, 0, sizeof(*g));
    g->map_base = base;
    g->map_size = total;
    g->guarded = guarded;
    g->stack_lo = (uintptr_t)base + page_size;
    g->stack_hi = gaddr & ~(uintptr_t)15;
    *(uint64_t *)g->stack_lo = RT__STACK_CANARY;
#ifdef RT__HAVE_VALGRIND
    VALGRIND_STACK_REGISTER(g->stack_lo, g->stack_hi);
#endif
    rt__lock_acquire(&allg_lk);
    g->allnext = allg;
    if (allg)
        allg->allprev = g;
    allg = g;
    rt__lock_release(&allg_lk);
    return g;
}

static void stack_unmap(rt_g *g)
{
    rt__lock_acquire(&allg_lk);
    if (g->allprev)
        g->allprev->allnext = g->allnext;
    else
        allg = g->allnext;
    if (g->allnext)
        g->allnext->allprev = g->allprev;
    rt__lock_release(&allg_lk);
    if (g->guarded)
        atomic_fetch_sub(&guarded_live, 1);
    /* Valgrind stack ids are not tracked: a leaked registration only costs
     * valgrind bookkeeping, and munmap makes the range invalid anyway. */
    munmap(g->map_base, g->map_size);
}

rt_g *rt__stack_alloc(rt_p *p)
{
    rt_g *g = NULL;

    if (p && p->ngfree > 0) {
        g = p->gfree[--p->ngfree];
        return g;
    }
    rt__lock_acquire(&gcache_lock);
    if (gcache) {
        g = gcache;
        gcache = g->schedlink;
        ngcache--;
    }
    rt__lock_release(&gcache_lock);
    if (g) {
        g->schedlink = NULL;
        *(uint64_t *)g->stack_lo = RT__STACK_CANARY;
        return g;
    }
    return stack_map();
}

static void stack_to_global(rt_g *g)
{
    /* Give back every page but the top one, which holds the rt_g. */
    uintptr_t top_page = ((uintptr_t)g) & ~(uintptr_t)(page_size - 1);
    if (top_page > g->stack_lo)
        madvise((void *)g->stack_lo, top_page - g->stack_lo, MADV_DONTNEED);
    rt__lock_acquire(&gcache_lock);
    if (ngcache < RT__GLOBAL_CACHE) {
        g->schedlink = gcache;
        gcache = g;
        ngcache++;
        g = NULL;
    }
    rt__lock_release(&gcache_lock);
    if (g)
        stack_unmap(g);
}

void rt__stack_free(rt_p *p, rt_g *g)
{
    if (p && p->ngfree < RT__STACK_CACHE) {
        p->gfree[p->ngfree++] = g;
        return;
    }
    stack_to_global(g);
}

void rt__stack_flush(rt_p *p)
{
    while (p->ngfree > 0)
        stack_to_global(p->gfree[--p->ngfree]);
}

void rt__stack_release_all(void)
{
    rt__lock_acquire(&gcache_lock);
    gcache = NULL;
    ngcache = 0;
    rt__lock_release(&gcache_lock);
    for (;;) {
        rt__lock_acquire(&allg_lk);
        rt_g *g = allg;
        rt__lock_release(&allg_lk);
        if (!g)
            break;
        stack_unmap(g);
    }
}

void rt__stack_check(rt_g *g)
{
    if (__builtin_expect(*(uint64_t *)g->stack_lo == RT__STACK_CANARY, 1))
        return;
    char msg[160];
    int n = snprintf(msg, sizeof(msg),
                     "runtime: goroutine %lld stack overflow (canary at %p "
                     "overwritten)\nfatal error: stack overflow\n",
                     (long long)g->id, (void *)g->stack_lo);
    if (n > 0 && write(2, msg, (size_t)n) < 0)
        abort();
    abort();
}
