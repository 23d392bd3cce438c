/*
 * h_lock.c - the lock family: mutex.*, rwmutex.*, cond.* over the wire.
 *
 * The locking itself is the runtime's (rt_mutex, rt_rwmutex, rt_cond): one
 * implementation of each semantic.  What only a broker needs -- holds by
 * session and token, leases, the server-wide token counter, the wait-for
 * graph -- is holds.c's (holds.h); this file serves the methods over it.
 */
#include "holds.h"
#include "persist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct hcond {
    obj o;
    obj *mutex; /* retained; bound at the first wait */
    rt_cond *c;
} hcond;

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

static const obj_ops hmutex_ops = {
    .type = OBJ_MUTEX,
    .name = "mutex",
    .size = sizeof(hlock),
    .init = hlock_init_mutex,
    .fini = hlock_fini,
    .info = hold_info,
    .snap = hold_snap,
    .busy = hold_busy,
    .forget = hold_forget,
    .idle = hold_idle,
};

static const obj_ops hrwmutex_ops = {
    .type = OBJ_RWMUTEX,
    .name = "rwmutex",
    .size = sizeof(hlock),
    .init = hlock_init_rw,
    .fini = hlock_fini,
    .info = hold_info,
    .snap = hold_snap,
    .busy = hold_busy,
    .forget = hold_forget,
    .idle = hold_idle,
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
    hold_lock();
    if (c->mutex)
        json_object_set_new(into, "mutex", json_string(c->mutex->name));
    hold_unlock();
}

/* A cond nobody waits on (obj_done checks that nothing refers to it) is
 * zero until its first wait binds it to a mutex: as a sync.Cond whose L
 * is set, a bound one is not (a wait with another mutex stays misuse). */
static bool hcond_idle(obj *o)
{
    bool idle;

    hold_lock();
    idle = ((hcond *)o)->mutex == NULL;
    hold_unlock();
    return idle;
}

static const obj_ops hcond_ops = {
    .type = OBJ_COND,
    .name = "cond",
    .size = sizeof(hcond),
    .fini = hcond_fini,
    .info = hcond_info,
    .idle = hcond_idle,
};

/* ------------------------------------------------------------------ */
/* lock / rlock                                                       */
/* ------------------------------------------------------------------ */

/* Returns l's hold named by r: its token parameter, else its session
 * (hold_lock() held). */
static hhold *hl_find_locked(hlock *l, dreq *r, bool write)
{
    json_t *tok = dreq_param(r, "token");
    uint64_t t = tok ? (uint64_t)json_integer_value(tok) : 0;

    return hold_find_locked(l, dreq_sid(r), tok ? &t : NULL, write);
}

/* Records r's wait for l, or answers r (deadlock, with the cycle; or out
 * of memory), which frees it, and returns NULL. */
static hwait *hl_wait_begin(hlock *l, dreq *r)
{
    char msg[400];
    json_t *cycle;
    hwait *w;
    int rc = hold_wait_begin(l, dreq_sid(r), &w, msg, sizeof msg, &cycle);

    if (rc == HOLD_EDEADLK)
        dreq_fail_data(r, PROTO_R_DEADLOCK, json_pack("{s:o}", "cycle", cycle),
                       "%s", msg);
    else if (rc != 0)
        dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
    return w;
}

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
    hhold *h = hold_add(l, dreq_sid(r), write, lease_ms, &owner_dead, &token);
    json_t *res;

    if (!h && atomic_load(&l->o.dropped)) {
        dreq_fail(r, PROTO_R_NOT_FOUND, "%s \"%s\" was dropped", l->o.ops->name,
                  l->o.name);
        return;
    }
    if (!h) {
        dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
        return;
    }
    if (r->s && !sess_alive(r->s) && !lease_ms) {
        /* Won the lock for a session that just ended: give it back as
         * if never taken (nothing was done under it). */
        hold_lock();
        if (hold_live_locked(l, h)) /* not already unlocked by token */
            hold_drop_locked(h, false, true);
        l->owner_dead = owner_dead;
        hold_unlock();
        dreq_fail(r, PROTO_R_CANCELLED, "cancelled: session ended");
        return;
    }
    if (!owner_dead) {
        dreq_ok_int(r, "token", (int64_t)token); /* written as it is */
        return;
    }
    res = json_pack("{s:I, s:b}", "token", (json_int_t)token, "owner_dead", 1);
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
    hold_wait_end(q->w);
    if (rc == 0)
        hl_granted(r, l, q->write);
    else
        dreq_fail_rt(r, rc);
    obj_done(&l->o);
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
        obj_done(o);
        return;
    }
    if (r->dl == RT_POLL) {
        dreq_fail(r, PROTO_R_TIMEOUT, "timeout");
        obj_done(o);
        return;
    }
    q = calloc(1, sizeof *q);
    if (!q) {
        dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
        obj_done(o);
        return;
    }
    q->l = l;
    q->write = write;
    q->w = hl_wait_begin(l, r);
    if (!q->w) {
        free(q);
        obj_done(o);
        return;
    }
    r->ctx = q;
    if (dreq_park(r, hl_lock_wait) != 0) {
        hold_wait_end(q->w);
        obj_done(o);
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
    hold_lock();
    h = hl_find_locked(l, r, write);
    if (h) {
        hold_drop_locked(h, false, true);
        hold_unlock();
        dreq_ok(r, NULL);
        obj_done(o);
        return;
    }
    gomsg = !l->rw  ? rt_strerror(RT_EUNLOCK)
            : write ? rt_strerror(RT_EWUNLOCK)
                    : rt_strerror(RT_ERUNLOCK);
    if (!l->holds) {
        hold_unlock();
        dreq_fail(r, PROTO_R_NOT_LOCKED, "%s", gomsg);
    } else if (tok) {
        uint64_t cur = l->last_token;
        hold_unlock();
        dreq_fail_data(
            r, PROTO_R_NOT_LOCKED, json_pack("{s:I}", "token", (json_int_t)cur),
            "%s: token %lld does not hold %s \"%s\"", gomsg,
            (long long)json_integer_value(tok), o->ops->name, o->name);
    } else {
        hold_unlock();
        dreq_fail(r, PROTO_R_NOT_LOCKED,
                  "%s: this session does not hold %s \"%s\" (pass the "
                  "holder's token)",
                  gomsg, o->ops->name, o->name);
    }
    obj_done(o);
}

/* mutex.renew, rwmutex.renew: a new lease for the hold with token. */
static void hl_renew(dreq *r, const obj_ops *ops)
{
    const char *name = dreq_str(r, "name");
    uint64_t token = (uint64_t)dreq_int(r, "token", 0);
    int64_t lease_ms = dreq_int(r, "lease_ms", 0);
    reg_found f;
    obj *o;
    int rc;

    if (lease_ms <= 0) {
        dreq_fail_params(r, NULL, "invalid params: lease_ms must be > 0");
        return;
    }
    /* An absent lock (never made, or reclaimed unlocked) is held by no
     * token: not_locked, as for a present one. */
    rc = reg_lookup(name, ops, false, r, &f);
    if (rc == REG_ENOENT) {
        dreq_fail(r, PROTO_R_NOT_LOCKED, "token %llu does not hold %s \"%s\"",
                  (unsigned long long)token, ops->name, name);
        return;
    }
    if (rc != REG_OK) {
        o = dreq_obj(r, name, ops, false); /* answers wrong_type... */
        if (o) { /* ...unless it was just made: held by nobody */
            obj_done(o);
            dreq_fail(r, PROTO_R_NOT_LOCKED,
                      "token %llu does not hold %s "
                      "\"%s\"",
                      (unsigned long long)token, ops->name, name);
        }
        return;
    }
    o = f.o;
    rc = hold_renew((hlock *)o, token, lease_ms);
    if (rc == -1)
        dreq_fail(r, PROTO_R_NOT_LOCKED, "token %llu does not hold %s \"%s\"",
                  (unsigned long long)token, ops->name, o->name);
    else if (rc != 0)
        dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
    else
        dreq_ok_int(r, "lease_ms", lease_ms);
    obj_done(o);
}

void h_mutex_renew(dreq *r)
{
    hl_renew(r, &hmutex_ops);
}
void h_rw_renew(dreq *r)
{
    hl_renew(r, &hrwmutex_ops);
}
void h_mutex_lock(dreq *r)
{
    hl_lock(r, &hmutex_ops, true);
}
void h_mutex_unlock(dreq *r)
{
    hl_unlock(r, &hmutex_ops, true);
}
void h_rw_lock(dreq *r)
{
    hl_lock(r, &hrwmutex_ops, true);
}
void h_rw_unlock(dreq *r)
{
    hl_unlock(r, &hrwmutex_ops, true);
}
void h_rw_rlock(dreq *r)
{
    hl_lock(r, &hrwmutex_ops, false);
}
void h_rw_runlock(dreq *r)
{
    hl_unlock(r, &hrwmutex_ops, false);
}

/* ------------------------------------------------------------------ */
/* Session end                                                        */
/* ------------------------------------------------------------------ */

void hlock_session_end(sess *s)
{
    hold_end_session(sess_id(s));
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
    int64_t lease_ms;

    /* Drop the caller's hold from the books; rt_cond_wait unlocks the
     * runtime mutex itself, atomically with starting to wait. */
    hold_lock();
    h = hl_find_locked(l, r, true);
    if (!h) {
        hold_unlock();
        dreq_fail(r, PROTO_R_NOT_LOCKED,
                  "%s: this session does not hold mutex \"%s\"",
                  rt_strerror(RT_EUNLOCK), l->o.name);
        goto out;
    }
    lease_ms = hold_lease_ms(h);       /* kept across the wait */
    hold_drop_locked(h, false, false); /* q->l keeps our reference */
    hold_unlock();

    dreq_wait_begin(r, &q->c->o, "sync.Cond.Wait");
    rc = rt_cond_wait(q->c->c, r->dl);
    dreq_wait_end(r);
    /* The runtime mutex is held again in every case. */
    h = hold_add(l, dreq_sid(r), true, lease_ms, &owner_dead, &token);
    if (!h) {
        dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
        goto out;
    }
    if (r->s && !sess_alive(r->s) && !lease_ms) {
        /* As hl_granted: the next holder still hears of a dead owner. */
        hold_lock();
        /* (Unless another session unlocked it by token meanwhile.) */
        if (hold_live_locked(l, h))
            hold_drop_locked(h, false, true);
        l->owner_dead = l->owner_dead || owner_dead;
        hold_unlock();
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
        dreq_fail_data(r, why, json_pack("{s:I}", "token", (json_int_t)token),
                       "%s", why == PROTO_R_TIMEOUT ? "timeout" : "cancelled");
    }
out:
    obj_done(&q->c->o);
    obj_done(&l->o);
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
    hold_lock();
    if (!c->mutex) {
        c->c = rt_cond_new(rt_mutex_locker(l->m));
        if (c->c)
            c->mutex = obj_retain(mo);
    }
    bool bound = c->mutex == mo, held = hl_find_locked(l, r, true) != NULL;
    uint64_t tok = l->last_token;
    hold_unlock();
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
                       json_pack("{s:I}", "token", (json_int_t)tok), "timeout");
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
    hold_lock();
    rc = c->c;
    hold_unlock();
    if (rc) {
        if (all)
            rt_cond_broadcast(rc);
        else
            rt_cond_signal(rc);
    }
    dreq_ok(r, NULL);
    obj_done(co);
}

void h_cond_signal(dreq *r)
{
    hc_wake(r, false);
}
void h_cond_broadcast(dreq *r)
{
    hc_wake(r, true);
}

/* ------------------------------------------------------------------ */
/* Recovery's builder (persist.h)                                     */
/* ------------------------------------------------------------------ */

int hlock__restore(const char *name, unsigned kind, uint64_t token,
                   int64_t end_ms, bool grant)
{
    const obj_ops *ops = kind == EFF_HOLD_MUTEX ? &hmutex_ops : &hrwmutex_ops;
    dreq r = {0};
    reg_found f;
    int rc = 0;

    if (reg_lookup(name, ops, grant, &r, &f) != REG_OK)
        return 0; /* absent (a release), or another type's name */
    if (grant)
        rc = hold_restore((hlock *)f.o, kind != EFF_HOLD_READ, token, end_ms);
    else
        hold_restore_release((hlock *)f.o, token);
    obj_release(f.o);
    return rc;
}
