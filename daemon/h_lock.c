/*
 * h_lock.c - the lock family: mutex.*, rwmutex.*, cond.* over the wire.
 *
 * The locking itself is the runtime's (rt_mutex, rt_rwmutex, rt_cond): one
 * implementation of each semantic.  This file adds what only a broker
 * needs, all under one bookkeeping mutex (hl_mu):
 *  - holds: who holds each lock (session id, fencing token, lease), so that
 *    unlock can be checked by token, a session's holds are released when it
 *    ends (the next holder hears owner_dead), and runtime.dump can show them;
 *  - fencing tokens: per lock, strictly increasing from 1;
 *  - leases: a hold taken with lease_ms outlives its session and is
 *    released when the lease expires (a runtime AfterFunc timer);
 *  - the wait-for graph: session -> lock it waits for -> holder sessions;
 *    a new wait that would close a cycle is refused with reason deadlock.
 * The runtime lock and its bookkeeping are updated in a fixed order (take
 * the runtime lock, then record the hold; drop the record, then unlock), so
 * the bookkeeping may briefly lag the runtime, never lead it.
 */
#include "daemon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct hlock hlock;

typedef struct hlease {
    _Atomic int refs;          /* the hold's and the timer's */
    obj *o;                    /* retained */
    uint64_t token;
    rt_timer *t;
} hlease;

typedef struct hhold {
    uint64_t token;
    uint64_t sid;              /* 0: detached request (go, afterfunc) */
    bool write;                /* rwmutex: writer (mutex: always) */
    int64_t since;
    int64_t lease_ms;          /* 0: none */
    hlease *lease;
    hlock *l;                  /* retained: a dropped lock lives on while held */
    struct hhold *next;        /* in l->holds */
    struct hhold *gnext, *gprev; /* in hl_all, for the session-end scan */
} hhold;

typedef struct hwait {
    uint64_t sid;
    hlock *l;
    struct hwait *next;
} hwait;

struct hlock {
    obj o;
    bool rw;
    rt_mutex *m;
    rt_rwmutex *rwm;
    uint64_t last_token;
    hhold *holds;
    bool owner_dead;           /* the next holder is told */
    unsigned visit;            /* deadlock search generation */
};

typedef struct hcond {
    obj o;
    obj *mutex;                /* retained; bound at the first wait */
    rt_cond *c;
} hcond;

static pthread_mutex_t hl_mu = PTHREAD_MUTEX_INITIALIZER;
static hwait *hl_waits;        /* every pending lock wait */
static hhold *hl_all;          /* every hold of every lock */

static void hl_all_link(hhold *h)
{
    h->gprev = NULL;
    h->gnext = hl_all;
    if (hl_all)
        hl_all->gprev = h;
    hl_all = h;
}

static void hl_all_unlink(hhold *h)
{
    if (h->gprev)
        h->gprev->gnext = h->gnext;
    else
        hl_all = h->gnext;
    if (h->gnext)
        h->gnext->gprev = h->gprev;
}
static unsigned hl_visit_gen;

/* ------------------------------------------------------------------ */
/* Objects                                                            */
/* ------------------------------------------------------------------ */

static int hlock_init_mutex(obj *o, dreq *r)
{
    hlock *l = (hlock *)o;
    (void)r;
    l->m = rt_mutex_new();
    return l->m ? 0 : -1;
}

static int hlock_init_rw(obj *o, dreq *r)
{
    hlock *l = (hlock *)o;
    (void)r;
    l->rw = true;
    l->rwm = rt_rwmutex_new();
    return l->rwm ? 0 : -1;
}

static void hlock_fini(obj *o)
{
    hlock *l = (hlock *)o;
    /* No hold or wait is left: each keeps a reference. */
    if (l->m)
        rt_mutex_free(l->m);
    if (l->rwm)
        rt_rwmutex_free(l->rwm);
}

static void hlock_info(obj *o, json_t *into)
{
    hlock *l = (hlock *)o;
    json_t *hs = json_array();
    int64_t now = rt_now();

    pthread_mutex_lock(&hl_mu);
    for (hhold *h = l->holds; h; h = h->next) {
        json_t *j = json_pack("{s:I, s:I, s:I}", "session", (json_int_t)h->sid,
                              "token", (json_int_t)h->token, "held_ms",
                              (json_int_t)((now - h->since) / 1000000));
        if (l->rw)
            json_object_set_new(j, "write", json_boolean(h->write));
        if (h->lease_ms)
            json_object_set_new(j, "lease_ms", json_integer(h->lease_ms));
        json_array_append_new(hs, j);
    }
    json_object_set_new(into, "locked", json_boolean(l->holds != NULL));
    json_object_set_new(into, "token", json_integer((json_int_t)l->last_token));
    pthread_mutex_unlock(&hl_mu);
    json_object_set_new(into, "holders", hs);
}

static const obj_ops hmutex_ops = {
    .type = OBJ_MUTEX,
    .name = "mutex",
    .size = sizeof(hlock),
    .init = hlock_init_mutex,
    .fini = hlock_fini,
    .info = hlock_info,
};

static const obj_ops hrwmutex_ops = {
    .type = OBJ_RWMUTEX,
    .name = "rwmutex",
    .size = sizeof(hlock),
    .init = hlock_init_rw,
    .fini = hlock_fini,
    .info = hlock_info,
};

static void hcond_fini(obj *o)
{
    hcond *c = (hcond *)o;
    if (c->c)
        rt_cond_free(c->c);
    if (c->mutex)
        obj_release(c->mutex);
}

static void hcond_info(obj *o, json_t *into)
{
    hcond *c = (hcond *)o;
    pthread_mutex_lock(&hl_mu);
    if (c->mutex)
        json_object_set_new(into, "mutex", json_string(c->mutex->name));
    pthread_mutex_unlock(&hl_mu);
}

static const obj_ops hcond_ops = {
    .type = OBJ_COND,
    .name = "cond",
    .size = sizeof(hcond),
    .fini = hcond_fini,
    .info = hcond_info,
};

/* ------------------------------------------------------------------ */
/* Holds and leases (hl_mu held unless said otherwise)                 */
/* ------------------------------------------------------------------ */

static void hlease_put(hlease *ls)
{
    if (atomic_fetch_sub(&ls->refs, 1) != 1)
        return;
    rt_timer_free(ls->t);
    obj_release(ls->o);
    free(ls);
}

static void hl_release_locked(hlock *l, hhold *h, bool owner_dead);

/* A lease expired: release that hold if it still exists (goroutine). */
static void hlease_fire(void *arg)
{
    hlease *ls = arg;
    hlock *l = (hlock *)ls->o;

    pthread_mutex_lock(&hl_mu);
    for (hhold *h = l->holds; h; h = h->next)
        if (h->token == ls->token) {
            log_info("%s \"%s\": lease of token %llu expired",
                     l->o.ops->name, l->o.name,
                     (unsigned long long)h->token);
            hl_release_locked(l, h, true);
            break;
        }
    pthread_mutex_unlock(&hl_mu);
    hlease_put(ls);
}

/* Records a new hold of l by r's session; returns it (or NULL: ENOMEM,
 * and then the runtime lock is given back). */
static hhold *hl_hold_add(hlock *l, dreq *r, bool write, bool *owner_dead,
                          uint64_t *token)
{
    int64_t lease_ms = dreq_int(r, "lease_ms", 0);
    hhold *h = calloc(1, sizeof *h);

    pthread_mutex_lock(&hl_mu);
    if (!h) {
        pthread_mutex_unlock(&hl_mu);
        if (l->rw)
            write ? rt_rwmutex_unlock(l->rwm) : rt_rwmutex_runlock(l->rwm);
        else
            rt_mutex_unlock(l->m);
        return NULL;
    }
    h->token = ++l->last_token;
    /* Read under hl_mu: once it is dropped a short lease (or an unlock by
     * token from another session) may free h. */
    *token = h->token;
    h->sid = dreq_sid(r);
    h->write = write;
    h->since = rt_now();
    h->lease_ms = lease_ms;
    h->l = (hlock *)obj_retain(&l->o);
    h->next = l->holds;
    l->holds = h;
    hl_all_link(h);
    *owner_dead = l->owner_dead;
    l->owner_dead = false;
    atomic_fetch_add(&srv_stat.held_locks, 1);
    if (lease_ms > 0) {
        hlease *ls = calloc(1, sizeof *ls);
        if (ls) {
            ls->refs = 2;
            ls->o = obj_retain(&l->o);
            ls->token = h->token;
            ls->t = rt_after_func(lease_ms * 1000000, hlease_fire, ls);
            if (ls->t) {
                h->lease = ls;
            } else {
                obj_release(ls->o);
                free(ls);
            }
        }
    }
    pthread_mutex_unlock(&hl_mu);
    return h;
}

/* Drops hold h of l and unlocks the runtime lock. */
static void hl_release_locked(hlock *l, hhold *h, bool owner_dead)
{
    for (hhold **pp = &l->holds; *pp; pp = &(*pp)->next)
        if (*pp == h) {
            *pp = h->next;
            break;
        }
    if (owner_dead)
        l->owner_dead = true;
    atomic_fetch_sub(&srv_stat.held_locks, 1);
    if (l->rw)
        h->write ? rt_rwmutex_unlock(l->rwm) : rt_rwmutex_runlock(l->rwm);
    else
        rt_mutex_unlock(l->m);
    if (h->lease) {
        if (rt_timer_stop(h->lease->t))
            hlease_put(h->lease); /* the timer's share: it will not run */
        hlease_put(h->lease);
    }
    hl_all_unlink(h);
    /* Never the last reference while a caller still uses l: callers hold
     * their own (request, lease) except the session-end scan, which does
     * not touch l afterwards. */
    obj_release(&h->l->o);
    free(h);
}

/* Returns the hold matching token (if given) or the caller's session, of
 * the wanted kind. */
static hhold *hl_find(hlock *l, dreq *r, bool write)
{
    json_t *tok = dreq_param(r, "token");
    uint64_t sid = dreq_sid(r);

    for (hhold *h = l->holds; h; h = h->next) {
        if (l->rw && h->write != write)
            continue;
        if (tok ? h->token == (uint64_t)json_integer_value(tok)
                : h->sid == sid)
            return h;
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Deadlock detection                                                 */
/* ------------------------------------------------------------------ */

#define HL_MAX_CYCLE 32

typedef struct hl_step {
    uint64_t waiter;
    hlock *l;
    uint64_t holder;
} hl_step;

/* Depth-first search from lock l (that session `from` waits for) for a
 * chain of holders and their waits that reaches `target`.  Lease and
 * detached holds are ignored: they end without their holder's help. */
static bool hl_reach(hlock *l, uint64_t from, uint64_t target,
                     hl_step *path, int depth, int *len)
{
    if (depth >= HL_MAX_CYCLE || l->visit == hl_visit_gen)
        return false;
    l->visit = hl_visit_gen;
    for (hhold *h = l->holds; h; h = h->next) {
        if (h->sid == 0 || h->lease_ms)
            continue;
        path[depth] = (hl_step){ from, l, h->sid };
        if (h->sid == target) {
            *len = depth + 1;
            return true;
        }
        for (hwait *w = hl_waits; w; w = w->next)
            if (w->sid == h->sid &&
                hl_reach(w->l, h->sid, target, path, depth + 1, len))
                return true;
    }
    return false;
}

/* Registers r's wait for l, or fails r with deadlock and returns NULL. */
static hwait *hl_wait_begin(hlock *l, dreq *r)
{
    hl_step path[HL_MAX_CYCLE];
    int len = 0;
    uint64_t sid = dreq_sid(r);
    hwait *w;

    pthread_mutex_lock(&hl_mu);
    hl_visit_gen++;
    if (sid && hl_reach(l, sid, sid, path, 0, &len)) {
        char msg[400];
        size_t n = 0;
        json_t *cycle = json_array();
        n += (size_t)snprintf(msg, sizeof msg,
                              "all goroutines are asleep - deadlock!");
        for (int i = 0; i < len; i++) {
            if (n < sizeof msg)
                n += (size_t)snprintf(
                    msg + n, sizeof msg - n,
                    "%s session %llu waits for %s \"%s\" held by session "
                    "%llu",
                    i ? ";" : "", (unsigned long long)path[i].waiter,
                    path[i].l->o.ops->name, path[i].l->o.name,
                    (unsigned long long)path[i].holder);
            json_array_append_new(
                cycle, json_pack("{s:I, s:s, s:I}", "session",
                                 (json_int_t)path[i].waiter, "waits_for",
                                 path[i].l->o.name, "held_by",
                                 (json_int_t)path[i].holder));
        }
        pthread_mutex_unlock(&hl_mu);
        dreq_fail_data(r, PROTO_R_DEADLOCK, json_pack("{s:o}", "cycle", cycle),
                       "%s", msg);
        return NULL;
    }
    w = calloc(1, sizeof *w);
    if (w) {
        w->sid = sid;
        w->l = l;
        w->next = hl_waits;
        hl_waits = w;
    }
    pthread_mutex_unlock(&hl_mu);
    if (!w)
        dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
    return w;
}

static void hl_wait_end(hwait *w)
{
    pthread_mutex_lock(&hl_mu);
    for (hwait **pp = &hl_waits; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    pthread_mutex_unlock(&hl_mu);
    free(w);
}

/* ------------------------------------------------------------------ */
/* lock / rlock                                                       */
/* ------------------------------------------------------------------ */

typedef struct hl_req {
    hlock *l;
    bool write;
    hwait *w;
} hl_req;

/* Answers r after the runtime lock was taken. */
static void hl_granted(dreq *r, hlock *l, bool write)
{
    bool owner_dead = false;
    uint64_t token = 0;
    int64_t lease_ms = dreq_int(r, "lease_ms", 0);
    hhold *h = hl_hold_add(l, r, write, &owner_dead, &token);
    json_t *res;

    if (!h) {
        dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
        return;
    }
    if (r->s && !sess_alive(r->s) && !lease_ms) {
        /* Won the lock for a session that just ended: give it back as
         * if never taken (nothing was done under it). */
        pthread_mutex_lock(&hl_mu);
        for (hhold *x = l->holds; x; x = x->next)
            if (x == h) { /* not already unlocked by token */
                hl_release_locked(l, h, false);
                break;
            }
        l->owner_dead = owner_dead;
        pthread_mutex_unlock(&hl_mu);
        dreq_fail(r, PROTO_R_CANCELLED, "cancelled: session ended");
        return;
    }
    if (!owner_dead) {
        dreq_ok_int(r, "token", (int64_t)token); /* written as it is */
        return;
    }
    res = json_pack("{s:I, s:b}", "token", (json_int_t)token, "owner_dead",
                    1);
    dreq_ok(r, res);
}

static const char *hl_reason(const hlock *l, bool write)
{
    if (!l->rw)
        return "sync.Mutex.Lock";
    return write ? "sync.RWMutex.Lock" : "sync.RWMutex.RLock";
}

static void hl_lock_wait(dreq *r)
{
    hl_req *q = r->ctx;
    hlock *l = q->l;
    int rc;

    dreq_wait_begin(r, &l->o, hl_reason(l, q->write));
    if (dreq_cancelled(r))
        rc = RT_ECANCELED;
    else if (!l->rw)
        rc = rt_mutex_lock(l->m, r->dl);
    else if (q->write)
        rc = rt_rwmutex_lock(l->rwm, r->dl);
    else
        rc = rt_rwmutex_rlock(l->rwm, r->dl);
    dreq_wait_end(r);
    hl_wait_end(q->w);
    if (rc == 0)
        hl_granted(r, l, q->write);
    else
        dreq_fail_rt(r, rc);
    obj_release(&l->o);
    free(q);
}

static void hl_lock(dreq *r, const obj_ops *ops, bool write)
{
    obj *o = dreq_obj(r, dreq_str(r, "name"), ops, true);
    hlock *l = (hlock *)o;
    bool got;
    hl_req *q;

    if (!o)
        return;
    if (!l->rw)
        got = rt_mutex_trylock(l->m);
    else if (write)
        got = rt_rwmutex_trylock(l->rwm);
    else
        got = rt_rwmutex_tryrlock(l->rwm);
    if (got) {
        hl_granted(r, l, write);
        obj_release(o);
        return;
    }
    if (r->dl == RT_POLL) {
        dreq_fail(r, PROTO_R_TIMEOUT, "timeout");
        obj_release(o);
        return;
    }
    q = calloc(1, sizeof *q);
    if (!q) {
        dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
        obj_release(o);
        return;
    }
    q->l = l;
    q->write = write;
    q->w = hl_wait_begin(l, r);
    if (!q->w) {
        free(q);
        obj_release(o);
        return;
    }
    r->ctx = q;
    if (dreq_park(r, hl_lock_wait) != 0) {
        hl_wait_end(q->w);
        obj_release(o);
        free(q);
    }
}

static void hl_unlock(dreq *r, const obj_ops *ops, bool write)
{
    obj *o = dreq_obj(r, dreq_str(r, "name"), ops, true);
    hlock *l = (hlock *)o;
    json_t *tok;
    const char *gomsg;
    hhold *h;

    if (!o)
        return; /* dreq_obj answered and freed r (wrong_type, limit) */
    tok = dreq_param(r, "token");
    pthread_mutex_lock(&hl_mu);
    h = hl_find(l, r, write);
    if (h) {
        hl_release_locked(l, h, false);
        pthread_mutex_unlock(&hl_mu);
        dreq_ok(r, NULL);
        obj_release(o);
        return;
    }
    gomsg = !l->rw ? rt_strerror(RT_EUNLOCK)
            : write ? rt_strerror(RT_EWUNLOCK)
                    : rt_strerror(RT_ERUNLOCK);
    if (!l->holds) {
        pthread_mutex_unlock(&hl_mu);
        dreq_fail(r, PROTO_R_NOT_LOCKED, "%s", gomsg);
    } else if (tok) {
        uint64_t cur = l->last_token;
        pthread_mutex_unlock(&hl_mu);
        dreq_fail_data(r, PROTO_R_NOT_LOCKED,
                       json_pack("{s:I}", "token", (json_int_t)cur),
                       "%s: token %lld does not hold %s \"%s\"", gomsg,
                       (long long)json_integer_value(tok), o->ops->name,
                       o->name);
    } else {
        pthread_mutex_unlock(&hl_mu);
        dreq_fail(r, PROTO_R_NOT_LOCKED,
                  "%s: this session does not hold %s \"%s\" (pass the "
                  "holder's token)", gomsg, o->ops->name, o->name);
    }
    obj_release(o);
}

void h_mutex_lock(dreq *r) { hl_lock(r, &hmutex_ops, true); }
void h_mutex_unlock(dreq *r) { hl_unlock(r, &hmutex_ops, true); }
void h_rw_lock(dreq *r) { hl_lock(r, &hrwmutex_ops, true); }
void h_rw_unlock(dreq *r) { hl_unlock(r, &hrwmutex_ops, true); }
void h_rw_rlock(dreq *r) { hl_lock(r, &hrwmutex_ops, false); }
void h_rw_runlock(dreq *r) { hl_unlock(r, &hrwmutex_ops, false); }

/* ------------------------------------------------------------------ */
/* Session end                                                        */
/* ------------------------------------------------------------------ */

void hlock_session_end(sess *s)
{
    uint64_t sid = sess_id(s);

    pthread_mutex_lock(&hl_mu);
    for (hhold *h = hl_all, *next; h; h = next) {
        next = h->gnext;
        if (h->sid != sid || h->lease_ms)
            continue;
        log_info("%s \"%s\": session %llu ended holding token %llu",
                 h->l->o.ops->name, h->l->o.name, (unsigned long long)sid,
                 (unsigned long long)h->token);
        hl_release_locked(h->l, h, true); /* frees h only: next stays */
    }
    pthread_mutex_unlock(&hl_mu);
}

/* ------------------------------------------------------------------ */
/* cond                                                               */
/* ------------------------------------------------------------------ */

typedef struct hc_req {
    hcond *c;
    hlock *l;
} hc_req;

static void hc_wait(dreq *r)
{
    hc_req *q = r->ctx;
    hlock *l = q->l;
    hhold *h;
    int rc;
    bool owner_dead = false;
    uint64_t token = 0;

    /* Drop the caller's hold from the books; rt_cond_wait unlocks the
     * runtime mutex itself, atomically with starting to wait. */
    pthread_mutex_lock(&hl_mu);
    h = hl_find(l, r, true);
    if (!h) {
        pthread_mutex_unlock(&hl_mu);
        dreq_fail(r, PROTO_R_NOT_LOCKED,
                  "%s: this session does not hold mutex \"%s\"",
                  rt_strerror(RT_EUNLOCK), l->o.name);
        goto out;
    }
    for (hhold **pp = &l->holds; *pp; pp = &(*pp)->next)
        if (*pp == h) {
            *pp = h->next;
            break;
        }
    atomic_fetch_sub(&srv_stat.held_locks, 1);
    if (h->lease) {
        if (rt_timer_stop(h->lease->t))
            hlease_put(h->lease);
        hlease_put(h->lease);
    }
    hl_all_unlink(h);
    obj_release(&h->l->o); /* q->l keeps ours */
    free(h);
    pthread_mutex_unlock(&hl_mu);

    dreq_wait_begin(r, &q->c->o, "sync.Cond.Wait");
    rc = rt_cond_wait(q->c->c, r->dl);
    dreq_wait_end(r);
    /* The runtime mutex is held again in every case. */
    h = hl_hold_add(l, r, true, &owner_dead, &token);
    if (!h) {
        dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
        goto out;
    }
    if (r->s && !sess_alive(r->s)) {
        /* As hl_granted: the next holder still hears of a dead owner. */
        pthread_mutex_lock(&hl_mu);
        hl_release_locked(l, h, false);
        l->owner_dead = l->owner_dead || owner_dead;
        pthread_mutex_unlock(&hl_mu);
        /* A signal spent on a session that is gone is passed on, as a
         * received value is given back: a live waiter must not miss it. */
        if (rc == 0)
            rt_cond_signal(q->c->c);
        dreq_fail(r, PROTO_R_CANCELLED, "cancelled: session ended");
    } else if (rc == 0) {
        /* The mutex was re-taken: a holder that died in between must be
         * reported here as in mutex.lock, or its half-done work would go
         * unnoticed. */
        json_t *res = json_pack("{s:I}", "token", (json_int_t)token);
        if (owner_dead)
            json_object_set_new(res, "owner_dead", json_true());
        dreq_ok(r, res);
    } else {
        proto_reason why = disp_rt_reason(rc);
        dreq_fail_data(r, why, json_pack("{s:I}", "token",
                                         (json_int_t)token),
                       "%s", why == PROTO_R_TIMEOUT ? "timeout"
                                                    : "cancelled");
    }
out:
    obj_release(&q->c->o);
    obj_release(&l->o);
    free(q);
}

void h_cond_wait(dreq *r)
{
    obj *co = dreq_obj(r, dreq_str(r, "name"), &hcond_ops, true);
    obj *mo;
    hcond *c = (hcond *)co;
    hlock *l;
    hc_req *q;

    if (!co)
        return;
    mo = dreq_obj(r, dreq_str(r, "mutex"), &hmutex_ops, true);
    if (!mo) {
        obj_release(co);
        return;
    }
    l = (hlock *)mo;
    pthread_mutex_lock(&hl_mu);
    if (!c->mutex) {
        c->c = rt_cond_new(rt_mutex_locker(l->m));
        if (c->c)
            c->mutex = obj_retain(mo);
    }
    bool bound = c->mutex == mo, held = hl_find(l, r, true) != NULL;
    uint64_t tok = l->last_token;
    pthread_mutex_unlock(&hl_mu);
    if (!bound) {
        dreq_fail(r, c->c ? PROTO_R_MISUSE : PROTO_R_INTERNAL,
                  "cond \"%s\" is bound to another mutex", co->name);
        goto out_release;
    }
    if (!held) {
        dreq_fail(r, PROTO_R_NOT_LOCKED,
                  "%s: this session does not hold mutex \"%s\"",
                  rt_strerror(RT_EUNLOCK), mo->name);
        goto out_release;
    }
    if (r->dl == RT_POLL) {
        dreq_fail_data(r, PROTO_R_TIMEOUT,
                       json_pack("{s:I}", "token", (json_int_t)tok),
                       "timeout");
        goto out_release;
    }
    q = calloc(1, sizeof *q);
    if (!q) {
        dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
        goto out_release;
    }
    q->c = c;
    q->l = l;
    r->ctx = q;
    if (dreq_park(r, hc_wait) != 0) {
        free(q);
        goto out_release;
    }
    return;

out_release:
    obj_release(mo);
    obj_release(co);
}

static void hc_wake(dreq *r, bool all)
{
    obj *co = dreq_obj(r, dreq_str(r, "name"), &hcond_ops, true);
    hcond *c = (hcond *)co;
    rt_cond *rc;

    if (!co)
        return;
    pthread_mutex_lock(&hl_mu);
    rc = c->c;
    pthread_mutex_unlock(&hl_mu);
    if (rc) {
        if (all)
            rt_cond_broadcast(rc);
        else
            rt_cond_signal(rc);
    }
    dreq_ok(r, NULL);
    obj_release(co);
}

void h_cond_signal(dreq *r) { hc_wake(r, false); }
void h_cond_broadcast(dreq *r) { hc_wake(r, true); }
