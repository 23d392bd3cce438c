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
                  "max_goroutines, or wait less)", rt_num_goroutine());
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

/* The waiters statistic counts requests from here, on the goroutine that
 * is about to block: a client that sees waiters == n knows its n requests
 * are at their runtime call, not merely scheduled. */
/* Links r into o's waiter list; goid 0 for an await. */
static void dreq_wait_link(dreq *r, obj *o, const char *reason, int64_t goid)
{
    atomic_fetch_add(&srv_stat.waiters, 1);
    r->wobj = o;
    r->wreason = reason;
    r->wsince = rt_now();
    r->wgoid = goid; /* before the link: stats read it under wmu */
    pthread_mutex_lock(&o->wmu);
    r->wprev = NULL;
    r->wnext = o->waiters;
    if (o->waiters)
        o->waiters->wprev = r;
    o->waiters = r;
    pthread_mutex_unlock(&o->wmu);
}

void dreq_wait_begin(dreq *r, obj *o, const char *reason)
{
    dreq_wait_link(r, o, reason, rt_goid());
}

void dreq_wait_end(dreq *r)
{
    obj *o = r->wobj;

    if (!o)
        return;
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
    atomic_fetch_sub(&srv_stat.waiters, 1);
}

rt_cancel *dreq_await_begin(dreq *r, obj *o, const char *reason)
{
    dreq__keep_params(r);
    sess_parked(r->s, 1);
    mem_add(MEM_AWAIT_COST);
    /* goid 0: queued in the runtime as it returns, so counted at once */
    dreq_wait_link(r, o, reason, 0);
    return sess_cancel(r->s);
}

void dreq_await_end(dreq *r)
{
    dreq_wait_end(r);
    mem_sub(MEM_AWAIT_COST);
    sess_parked(r->s, -1);
}

/* ------------------------------------------------------------------ */
/* The waiters count                                                  */
/* ------------------------------------------------------------------ */

static int park_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

typedef struct park_parked {
    int64_t *ids; /* goroutines the runtime reports parked */
    size_t n, cap;
    bool oom;
    int64_t count;
} park_parked;

static void park_count_parked(obj *o, void *arg)
{
    park_parked *p = arg;
    pthread_mutex_lock(&o->wmu);
    for (dreq *r = o->waiters; r; r = r->wnext)
        if (r->wgoid == 0 || /* an await: queued in the runtime */
            (p->n &&
             bsearch(&r->wgoid, p->ids, p->n, sizeof *p->ids, park_cmp_i64)))
            p->count++;
    pthread_mutex_unlock(&o->wmu);
}

/* Collects the ids of the goroutines the runtime reports parked. */
static void park_collect_parked(const rt_ginfo *gi, void *arg)
{
    park_parked *p = arg;

    if (!gi->parked || p->oom)
        return;
    if (p->n == p->cap) {
        size_t ncap = p->cap ? p->cap * 2 : 256;
        int64_t *nids = realloc(p->ids, ncap * sizeof *nids);
        if (!nids) {
            p->oom = true;
            return;
        }
        p->ids = nids;
        p->cap = ncap;
    }
    p->ids[p->n++] = gi->id;
}

/* A request is counted in srv_stat.waiters by dreq_wait_begin just before
 * its blocking call; under load its goroutine may take a while to actually
 * park, and a client that waits for "n waiters" before acting must not see
 * it early.  The runtime's goroutine dump is the one view of who is
 * parked, so the count is taken against it. */
int64_t park_waiters(void)
{
    park_parked p = {0};

    if (atomic_load(&srv_stat.waiters) == 0)
        return 0;
    rt_goroutines(park_collect_parked, &p);
    if (p.oom) {
        free(p.ids);
        return atomic_load(&srv_stat.waiters);
    }
    if (p.n) /* qsort(NULL, 0) is undefined (UBSan) */
        qsort(p.ids, p.n, sizeof *p.ids, park_cmp_i64);
    reg_foreach(NULL, park_count_parked, &p);
    free(p.ids);
    return p.count;
}
