/*
 * park.c - requests that wait: parking a request on a goroutine (its
 * blocking part runs there, with the session's cancel token attached), the
 * bookkeeping of who waits on what (each object's waiter list, for
 * runtime.dump, and the sessions' parked counts, for the drain), awaits
 * (waits without a goroutine), and the one count of waiters that
 * runtime.stats, runtime.dump and /metrics report.
 */
#include "daemon.h"

#include <stdlib.h>

typedef struct parked {
    dreq *r;
    disp_handler fn;
} parked;

static void dreq_park_go(void *arg)
{
    parked p = *(parked *)arg;
    sess *s = p.r->s;

    free(arg);
    if (s) {
        sess_retain(s);
        rt_cancel_attach(sess_cancel(s));
    }
    p.fn(p.r); /* finishes (frees) r */
    mem_sub(MEM_PARK_COST);
    if (s) {
        rt_cancel_attach(NULL);
        sess_parked(s, -1);
        sess_release(s);
    }
}

int dreq_park(dreq *r, disp_handler fn)
{
    parked *p;

    if (rt_in_goroutine() && !r->s) {
        fn(r);
        return 0;
    }
    if (rt_num_goroutine() >= srv_conf.max_goroutines) {
        dreq_fail(r, PROTO_R_LIMIT,
                  "max_goroutines reached: %d goroutines (raise "
                  "max_goroutines, or wait less)",
                  rt_num_goroutine());
        return -1;
    }
    dreq__keep_params(r);
    p = malloc(sizeof *p);
    if (!p) {
        dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
        return -1;
    }
    p->r = r;
    p->fn = fn;
    if (r->s)
        sess_parked(r->s, 1);
    mem_add(MEM_PARK_COST);
    if (rt_go(dreq_park_go, p) != 0) {
        mem_sub(MEM_PARK_COST);
        if (r->s)
            sess_parked(r->s, -1);
        free(p);
        dreq_fail(r, PROTO_R_INTERNAL, "cannot start a goroutine");
        return -1;
    }
    return 0;
}

/* Links r into o's waiter list (for runtime.dump); goid 0 for an await. */
static void dreq_wait_link(dreq *r, obj *o, const char *reason, int64_t goid)
{
    r->wobj = o;
    r->wreason = reason;
    r->wsince = rt_now();
    r->wgoid = goid;
    pthread_mutex_lock(&o->wmu);
    r->wprev = NULL;
    r->wnext = o->waiters;
    if (o->waiters)
        o->waiters->wprev = r;
    o->waiters = r;
    pthread_mutex_unlock(&o->wmu);
}

static void dreq_wait_unlink(dreq *r)
{
    obj *o = r->wobj;

    pthread_mutex_lock(&o->wmu);
    if (r->wprev)
        r->wprev->wnext = r->wnext;
    else
        o->waiters = r->wnext;
    if (r->wnext)
        r->wnext->wprev = r->wprev;
    pthread_mutex_unlock(&o->wmu);
    r->wobj = NULL;
    r->wnext = r->wprev = NULL;
}

/* A goroutine's wait is counted by the runtime itself, only while the
 * goroutine is parked off its stack: a client that sees waiters == n knows
 * its n requests are queued at their runtime call, not merely on their
 * way to it (order tests rely on that). */
void dreq_wait_begin(dreq *r, obj *o, const char *reason)
{
    dreq_wait_link(r, o, reason, rt_goid());
    if (r->wgoid)
        rt_park_count_attach(&srv_stat.waiters);
    else /* not on a goroutine: nothing will park, count it as an await */
        atomic_fetch_add(&srv_stat.waiters, 1);
}

void dreq_wait_end(dreq *r)
{
    if (!r->wobj)
        return;
    if (r->wgoid)
        rt_park_count_attach(NULL);
    else
        atomic_fetch_sub(&srv_stat.waiters, 1);
    dreq_wait_unlink(r);
}

rt_cancel *dreq_await_begin(dreq *r, obj *o, const char *reason)
{
    dreq__keep_params(r);
    sess_parked(r->s, 1);
    mem_add(MEM_AWAIT_COST);
    /* An await is queued in the runtime as this returns: counted at once. */
    dreq_wait_link(r, o, reason, 0);
    atomic_fetch_add(&srv_stat.waiters, 1);
    return sess_cancel(r->s);
}

void dreq_await_end(dreq *r)
{
    dreq_wait_end(r);
    mem_sub(MEM_AWAIT_COST);
    sess_parked(r->s, -1);
}

/* One definition of a waiter for runtime.stats, runtime.dump and
 * /metrics: an await, or a waiting request's goroutine parked in the
 * runtime.  O(1): a request that starts or stops waiting keeps the count. */
int64_t park_waiters(void)
{
    return atomic_load(&srv_stat.waiters);
}
