/*
 * once.c - sync.Once: rt_once_*.
 *
 * As Go's (sync/once.go): a done flag read with one acquire load on the
 * fast path, and a mutex on the slow path so that concurrent callers wait
 * (parked, as "sync.Mutex.Lock" like Go shows them) until the first caller's
 * fn has returned.  A foreign thread cannot park: it polls the mutex,
 * yielding the CPU between attempts.
 */
#include "rt_internal.h"

#include <sched.h>
#include <stdlib.h>

struct rt_once {
    _Atomic uint32_t done;
    rt_mutex *m;
};

rt_once *rt_once_new(void)
{
    rt_once *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return NULL;
    o->m = rt_mutex_new();
    if (o->m == NULL) {
        free(o);
        return NULL;
    }
    return o;
}

void rt_once_free(rt_once *o)
{
    if (o == NULL)
        return;
    rt_mutex_free(o->m);
    free(o);
}

static void once_lock(rt_once *o)
{
    if (rt_in_goroutine()) {
        /* Once.Do cannot fail: the wait ignores deadlines, and a fired
         * cancel token must not let a caller return before fn did, so we
         * retry (each retry parks again until the holder unlocks). */
        while (rt_mutex_lock(o->m, RT_FOREVER) != 0)
            rt_gosched();
        return;
    }
    while (!rt_mutex_trylock(o->m))
        sched_yield();
}

int rt_once_do(rt_once *o, void (*fn)(void *), void *arg)
{
    if (atomic_load_explicit(&o->done, memory_order_acquire))
        return 0;
    once_lock(o);
    int ran = 0;
    if (!atomic_load_explicit(&o->done, memory_order_relaxed)) {
        fn(arg);
        atomic_store_explicit(&o->done, 1, memory_order_release);
        ran = 1;
    }
    rt_mutex_unlock(o->m);
    return ran;
}
