/*
 * pool.c - sync.Pool: rt_pool_*.
 *
 * Like Go's (sync/pool.go), each P has its own cache so that Get and Put
 * from goroutines on different Ps do not touch the same cache line: a
 * one-object "private" slot read and written without atomics (only its
 * own P ever touches it), then a small per-P stack under a per-P lock that is
 * almost never contended (only stealing and foreign threads take another P's
 * lock). Overflow spills half a stack to a shared list; a miss refills from the
 * shared list, then steals from other Ps, then calls New.  A foreign
 * thread (rt__current_p() < 0) uses only the shared list.
 *
 * Unlike Go there is no garbage collector to empty the pool: cached
 * objects live until rt_pool_free hands them to the caller's destructor.
 */
#include "rt_internal.h"

#include <stdlib.h>
#include <string.h>

#define POOL_LOCAL 32 /* objects per P stack */

typedef struct pool_local {
    /* Only the goroutine running on this P touches priv: goroutines are
     * never preempted, so plain accesses are safe (Go pins the P for the
     * same effect); stealers and foreign threads leave it alone. */
    void *priv;
    rt__lock lock;
    _Atomic int n; /* written under lock; peeked without it */
    void *objs[POOL_LOCAL];
} __attribute__((aligned(64))) pool_local;

struct rt_pool {
    void *(*new_fn)(void *arg);
    void *arg;
    rt__lock lock; /* guards the shared list */
    void **shared;
    size_t nshared, capshared;
    /* Allocated on a P's first Put: most of the RT__MAXPROCS slots of a
     * pool never get used. */
    pool_local *_Atomic local[RT__MAXPROCS];
};

rt_pool *rt_pool_new(void *(*new_fn)(void *arg), void *arg)
{
    rt_pool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->new_fn = new_fn;
    p->arg = arg;
    return p;
}

void rt_pool_free(rt_pool *p, void (*dtor)(void *obj))
{
    if (p == NULL)
        return;
    for (int i = 0; i < RT__MAXPROCS; i++) {
        pool_local *l = atomic_load(&p->local[i]);
        if (l == NULL)
            continue;
        if (l->priv && dtor)
            dtor(l->priv);
        for (int j = 0; dtor && j < atomic_load(&l->n); j++)
            dtor(l->objs[j]);
        free(l);
    }
    for (size_t j = 0; dtor && j < p->nshared; j++)
        dtor(p->shared[j]);
    free(p->shared);
    free(p);
}

/* Returns P pid's cache, allocating it on first use (NULL on ENOMEM). */
static pool_local *pool_local_get(rt_pool *p, int pid)
{
    pool_local *l = atomic_load_explicit(&p->local[pid], memory_order_acquire);
    if (l)
        return l;
    pool_local *nl;
    if (posix_memalign((void **)&nl, 64, sizeof(*nl)) != 0)
        return NULL;
    memset(nl, 0, sizeof(*nl));
    if (atomic_compare_exchange_strong(&p->local[pid], &l, nl))
        return nl;
    free(nl); /* another thread on this P id won the race */
    return l;
}

/* Appends objs to the shared list; returns the number it took. */
static size_t pool_shared_push(rt_pool *p, void **objs, size_t n)
{
    rt__lock_acquire(&p->lock);
    if (p->nshared + n > p->capshared) {
        size_t cap = p->capshared ? p->capshared * 2 : 64;
        while (cap < p->nshared + n)
            cap *= 2;
        void **ns = realloc(p->shared, cap * sizeof(*ns));
        if (ns == NULL) {
            rt__lock_release(&p->lock);
            return 0; /* the caller drops them, as Go's GC would */
        }
        p->shared = ns;
        p->capshared = cap;
    }
    memcpy(p->shared + p->nshared, objs, n * sizeof(*objs));
    p->nshared += n;
    rt__lock_release(&p->lock);
    return n;
}

void rt_pool_put(rt_pool *p, void *obj)
{
    if (obj == NULL)
        return;
    int pid = rt__current_p();
    if (pid < 0 || pid >= RT__MAXPROCS) {
        pool_shared_push(p, &obj, 1);
        return;
    }
    pool_local *l = pool_local_get(p, pid);
    if (l == NULL) {
        pool_shared_push(p, &obj, 1);
        return;
    }
    if (l->priv == NULL) {
        l->priv = obj;
        return;
    }
    rt__lock_acquire(&l->lock);
    int n = atomic_load_explicit(&l->n, memory_order_relaxed);
    if (n < POOL_LOCAL) {
        l->objs[n] = obj;
        atomic_store_explicit(&l->n, n + 1, memory_order_relaxed);
        rt__lock_release(&l->lock);
        return;
    }
    /* Full: move the older half to the shared list. */
    void *spill[POOL_LOCAL / 2];
    memcpy(spill, l->objs, sizeof(spill));
    memmove(l->objs, l->objs + POOL_LOCAL / 2,
            (POOL_LOCAL - POOL_LOCAL / 2) * sizeof(void *));
    n -= POOL_LOCAL / 2;
    l->objs[n] = obj;
    atomic_store_explicit(&l->n, n + 1, memory_order_relaxed);
    rt__lock_release(&l->lock);
    pool_shared_push(p, spill, POOL_LOCAL / 2);
}

static void *pool_pop_local(pool_local *l)
{
    void *x = NULL;
    /* A peek without the lock: only saves a lock round trip. */
    if (l == NULL || atomic_load_explicit(&l->n, memory_order_relaxed) == 0)
        return NULL;
    rt__lock_acquire(&l->lock);
    int n = atomic_load_explicit(&l->n, memory_order_relaxed);
    if (n > 0) {
        x = l->objs[n - 1];
        atomic_store_explicit(&l->n, n - 1, memory_order_relaxed);
    }
    rt__lock_release(&l->lock);
    return x;
}

static void *pool_slow(rt_pool *p, int pid)
{
    void *x = NULL;
    rt__lock_acquire(&p->lock);
    if (p->nshared > 0)
        x = p->shared[--p->nshared];
    rt__lock_release(&p->lock);
    if (x)
        return x;
    /* Steal from the other Ps, starting after our own. */
    int np = rt__nprocs();
    if (np > RT__MAXPROCS)
        np = RT__MAXPROCS;
    for (int i = 1; i <= np; i++) {
        int v = (pid + i) % np;
        if (v == pid)
            continue;
        pool_local *l = atomic_load(&p->local[v]);
        if (l == NULL)
            continue;
        x = pool_pop_local(l);
        if (x)
            return x;
    }
    return p->new_fn ? p->new_fn(p->arg) : NULL;
}

void *rt_pool_get(rt_pool *p)
{
    int pid = rt__current_p();
    if (pid < 0 || pid >= RT__MAXPROCS)
        return pool_slow(p, -1);
    pool_local *l = atomic_load_explicit(&p->local[pid], memory_order_acquire);
    void *x = NULL;
    if (l && l->priv) {
        x = l->priv;
        l->priv = NULL;
        return x;
    }
    x = pool_pop_local(l);
    if (x == NULL)
        x = pool_slow(p, pid);
    return x;
}
