/*
 * holds.c - the lock family's bookkeeping: holds (session, fencing token,
 * lease), the one server-wide token counter, leases (a hold taken with
 * lease_ms outlives its session and is released when the lease expires: a
 * runtime AfterFunc timer), and the wait-for graph (session -> lock it
 * waits for -> holder sessions; a new wait that would close a cycle is
 * refused with reason deadlock).  The contract is in holds.h.
 *
 * Tokens come from one counter for the whole server, so they strictly
 * increase across locks, drop and re-creation of a name, and never
 * repeat; a durable store persists hold_token_last() and restores it with
 * hold_token_floor().
 */
#include "holds.h"
#include "persist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct hlease {
    _Atomic int refs; /* the hold's and the timer's */
    obj *o;           /* retained */
    uint64_t token;
    rt_timer *t;
} hlease;

typedef struct hhold {
    uint64_t token;
    uint64_t sid; /* 0: detached request (go, afterfunc) */
    bool write;   /* rwmutex: writer (mutex: always) */
    int64_t since;
    int64_t lease_ms;  /* 0: none */
    int64_t lease_end; /* wall-clock ms the lease ends (durability) */
    hlease *lease;
    hlock *l;           /* retained: a dropped lock lives on while held */
    struct hhold *next; /* in l->holds */
    struct hhold *gnext, *gprev; /* in hl_all, for the session-end scan */
} hhold;

typedef struct hwait {
    uint64_t sid;
    hlock *l;
    struct hwait *next;
} hwait;

static pthread_mutex_t hl_mu = PTHREAD_MUTEX_INITIALIZER;
static hwait *hl_waits; /* every pending lock wait */
static hhold *hl_all;   /* every hold of every lock */

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
static _Atomic uint64_t hold_tokens; /* the last token issued */

void hold_lock(void)
{
    pthread_mutex_lock(&hl_mu);
}

void hold_unlock(void)
{
    pthread_mutex_unlock(&hl_mu);
}

/* ------------------------------------------------------------------ */
/* Tokens                                                             */
/* ------------------------------------------------------------------ */

/* Returns a new token, or 0 once HOLD_TOKEN_MAX is reached (a million
 * grants a second would take 285 years). */
static uint64_t hold_token_next(void)
{
    uint64_t t = atomic_fetch_add(&hold_tokens, 1) + 1;

    return t < HOLD_TOKEN_MAX ? t : 0;
}

uint64_t hold_token_last(void)
{
    return atomic_load(&hold_tokens);
}

void hold_token_floor(uint64_t floor)
{
    uint64_t cur = atomic_load(&hold_tokens);

    while (cur < floor &&
           !atomic_compare_exchange_weak(&hold_tokens, &cur, floor))
        ;
}

/* ------------------------------------------------------------------ */
/* Holds and leases (hl_mu held unless said otherwise)                 */
/* ------------------------------------------------------------------ */

void hold_info(obj *o, json_t *into)
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

static void hlease_put(hlease *ls)
{
    if (atomic_fetch_sub(&ls->refs, 1) != 1)
        return;
    rt_timer_free(ls->t);
    obj_release(ls->o);
    free(ls);
}

/* A lease expired: release that hold if it still exists (goroutine).  By
 * its lease, not only its token: during recovery a grant, its release and
 * a new grant of the same token (a renew in the log) follow each other
 * faster than an overdue first lease's firing, which must not end the
 * second. */
static void hlease_fire(void *arg)
{
    hlease *ls = arg;
    hlock *l = (hlock *)ls->o;

    pthread_mutex_lock(&hl_mu);
    /* The hold this lease belongs to, not merely one with its token:
     * recovery replays a renewal as a release and a grant of the same
     * token, and the first grant's overdue lease, firing meanwhile, ended
     * the renewed hold (test_renewed_lease under TSan). */
    for (hhold *h = l->holds; h; h = h->next)
        if (h->token != ls->token || h->lease != ls) {
            continue;
        } else if (!persist_may_decide()) {
            /* A cluster follower: the leader ends leases (and replicates
             * the release).  Look again later: this node may lead by
             * then, and then the lease, overdue, ends at once. */
            rt_timer_reset(ls->t, 200 * 1000000LL);
            pthread_mutex_unlock(&hl_mu);
            return; /* the timer keeps its share of ls */
        } else {
            log_info("%s \"%s\": lease of token %llu expired", l->o.ops->name,
                     l->o.name, (unsigned long long)h->token);
            hold_drop_locked(h, true, true);
            break;
        }
    pthread_mutex_unlock(&hl_mu);
    hlease_put(ls);
}

/* Returns the wall clock in ms: leases are persisted as absolute ends,
 * so a restart keeps the time left. */
static int64_t hold_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Logs a leased hold's grant or release (hl_mu held: per lock, the log's
 * order is the holds'). */
static void hold_persist(hhold *h, uint16_t type)
{
    eff_rec r = {.type = type};

    if (!persist_on() || h->lease_ms <= 0)
        return;
    r.u.hold.name = eff_s(h->l->o.name);
    r.u.hold.kind = !h->l->rw  ? EFF_HOLD_MUTEX
                    : h->write ? EFF_HOLD_WRITE
                               : EFF_HOLD_READ;
    r.u.hold.token = h->token;
    r.u.hold.deadline_ms = h->lease_end;
    persist_hold(&h->l->o, &r);
}

/* hold_add, with the token given (0: a new one) and its lease's end in
 * wall-clock ms (restore, below). */
static hhold *hold_add_token(hlock *l, uint64_t sid, bool write,
                             int64_t lease_ms, bool *owner_dead,
                             uint64_t *token, uint64_t given);

/* Starts h's lease timer (hl_mu held).  Returns true, or false when out
 * of memory (h then keeps no lease timer). */
static bool hl_lease_start(hhold *h, int64_t lease_ms)
{
    hlease *ls = calloc(1, sizeof *ls);

    if (!ls)
        return false;
    ls->refs = 2;
    ls->o = obj_retain(&h->l->o);
    ls->token = h->token;
    ls->t = rt_after_func(lease_ms * 1000000, hlease_fire, ls);
    if (!ls->t) {
        obj_release(ls->o);
        free(ls);
        return false;
    }
    h->lease = ls;
    return true;
}

hhold *hold_add(hlock *l, uint64_t sid, bool write, int64_t lease_ms,
                bool *owner_dead, uint64_t *token)
{
    return hold_add_token(l, sid, write, lease_ms, owner_dead, token, 0);
}

static hhold *hold_add_token(hlock *l, uint64_t sid, bool write,
                             int64_t lease_ms, bool *owner_dead,
                             uint64_t *token, uint64_t given)
{
    hhold *h = calloc(1, sizeof *h);
    uint64_t t = given;

    pthread_mutex_lock(&hl_mu);
    if (h && atomic_load(&l->o.dropped)) {
        /* Dropped while we took the runtime lock (hold_busy saw no hold):
         * a lock nobody can name any more is not handed out. */
        free(h);
        h = NULL;
    } else if (h && !t && !(t = hold_token_next())) {
        log_error("%s \"%s\": fencing tokens exhausted", l->o.ops->name,
                  l->o.name);
        free(h);
        h = NULL;
    }
    if (!h) {
        pthread_mutex_unlock(&hl_mu);
        if (l->rw)
            write ? rt_rwmutex_unlock(l->rwm) : rt_rwmutex_runlock(l->rwm);
        else
            rt_mutex_unlock(l->m);
        return NULL;
    }
    h->token = l->last_token = t;
    /* Read under hl_mu: once it is dropped a short lease (or an unlock by
     * token from another session) may free h. */
    *token = h->token;
    h->sid = sid;
    h->write = write;
    h->since = rt_now();
    h->lease_ms = lease_ms;
    h->lease_end = lease_ms > 0 ? hold_wall_ms() + lease_ms : 0;
    h->l = (hlock *)obj_retain(&l->o);
    h->next = l->holds;
    l->holds = h;
    hl_all_link(h);
    *owner_dead = l->owner_dead;
    l->owner_dead = false;
    atomic_fetch_add(&srv_stat.held_locks, 1);
    if (lease_ms > 0)
        hl_lease_start(h, lease_ms);
    hold_persist(h, EFF_HOLD_GRANT);
    pthread_mutex_unlock(&hl_mu);
    return h;
}

int hold_restore(hlock *l, bool write, uint64_t token, int64_t end_ms)
{
    bool owner_dead, ok;
    uint64_t got;
    int64_t left = end_ms - hold_wall_ms();

    /* Overdue: expires right after the start, once. */
    if (left < 1)
        left = 1;
    if (l->rw)
        ok = write ? rt_rwmutex_trylock(l->rwm)
                   : rt_rwmutex_rlock(l->rwm, RT_POLL) == 0;
    else
        ok = rt_mutex_trylock(l->m);
    if (!ok) {
        /* Held already.  By this grant or a later one when recovery or a
         * rebuild replays records its starting state already reflects:
         * skipped, by design.  By an earlier token (tokens only grow),
         * state and log disagree: either this node missed that token's
         * release, or the leader that granted this one had lost the
         * earlier hold.  Either way some node may grant the lock while
         * it is held (a Jepsen run's lock overlap came after this
         * warning): say so. */
        uint64_t older = 0;
        bool first;
        pthread_mutex_lock(&hl_mu);
        for (hhold *h = l->holds; h; h = h->next)
            if (h->token < token)
                older = h->token;
        /* Once per stale holder: every later grant would say the same. */
        first = older && l->stale_warned != older;
        if (first)
            l->stale_warned = older;
        pthread_mutex_unlock(&hl_mu);
        if (first)
            log_warn("%s \"%s\": the log grants token %llu, but the "
                     "earlier token %llu still holds it; grant skipped (and "
                     "later ones, until it is released)",
                     l->o.ops->name, l->o.name, (unsigned long long)token,
                     (unsigned long long)older);
        return 0;
    }
    if (!hold_add_token(l, 0, write, left, &owner_dead, &got, token))
        return -1;
    pthread_mutex_lock(&hl_mu);
    l->owner_dead = owner_dead;
    pthread_mutex_unlock(&hl_mu);
    hold_token_floor(token);
    return 0;
}

void hold_restore_release(hlock *l, uint64_t token)
{
    pthread_mutex_lock(&hl_mu);
    for (hhold *h = l->holds; h; h = h->next)
        if (h->token == token) {
            hold_drop_locked(h, false, true);
            break;
        }
    pthread_mutex_unlock(&hl_mu);
}

int hold_snap(obj *o, void *s)
{
    hlock *l = (hlock *)o;
    eff_rec recs[64];
    size_t n = 0;
    uint64_t lsn;
    int rc = 0;

    pthread_mutex_lock(&hl_mu);
    lsn = atomic_load(&o->lsn);
    for (hhold *h = l->holds; h && n < 64; h = h->next) {
        if (h->lease_ms <= 0)
            continue;
        recs[n] = (eff_rec){.type = EFF_HOLD_GRANT};
        recs[n].u.hold.name = eff_s(o->name);
        recs[n].u.hold.kind = !l->rw     ? EFF_HOLD_MUTEX
                              : h->write ? EFF_HOLD_WRITE
                                         : EFF_HOLD_READ;
        recs[n].u.hold.token = h->token;
        recs[n].u.hold.deadline_ms = h->lease_end;
        n++;
    }
    pthread_mutex_unlock(&hl_mu);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = persist_snap_emit(s, &recs[i], lsn);
    return rc;
}

int64_t hold_lease_ms(const hhold *h)
{
    return h->lease_ms;
}

bool hold_idle(obj *o)
{
    hlock *l = (hlock *)o;
    bool idle;

    /* owner_dead is state: the next holder must still hear of it. */
    pthread_mutex_lock(&hl_mu);
    idle = !l->holds && !l->owner_dead;
    pthread_mutex_unlock(&hl_mu);
    return idle;
}

bool hold_busy(obj *o)
{
    hlock *l = (hlock *)o;
    bool busy;

    pthread_mutex_lock(&hl_mu);
    busy = l->holds != NULL;
    if (!busy)
        atomic_store(&o->dropped, true);
    pthread_mutex_unlock(&hl_mu);
    return busy;
}

void hold_forget(obj *o)
{
    hlock *l = (hlock *)o;

    pthread_mutex_lock(&hl_mu);
    /* Dropped first: a waiter that takes the runtime lock as a hold below
     * lets go of it is refused (hold_add_token) and lets go too. */
    atomic_store(&o->dropped, true);
    while (l->holds)
        hold_drop_locked(l->holds, false, true);
    pthread_mutex_unlock(&hl_mu);
}

int hold_renew(hlock *l, uint64_t token, int64_t lease_ms)
{
    hhold *h;
    int rc = 0;

    pthread_mutex_lock(&hl_mu);
    for (h = l->holds; h; h = h->next)
        if (h->token == token)
            break;
    if (!h) {
        rc = -1;
    } else if (!h->lease) {
        /* A hold without a lease gets one: from now on it outlives its
         * session like any leased hold. */
        h->lease_ms = lease_ms;
        h->lease_end = hold_wall_ms() + lease_ms;
        if (!hl_lease_start(h, lease_ms))
            rc = -2;
        else
            hold_persist(h, EFF_HOLD_GRANT);
    } else if (rt_timer_stop(h->lease->t)) {
        h->lease_ms = lease_ms;
        h->lease_end = hold_wall_ms() + lease_ms;
        rt_timer_reset(h->lease->t, lease_ms * 1000000);
        hold_persist(h, EFF_HOLD_RENEW);
    } else {
        rc = -1; /* it fired: the release is on its way */
    }
    pthread_mutex_unlock(&hl_mu);
    return rc;
}

/* The one place a hold ends: unlock, lease expiry, session end, a grant
 * to a session that just ended, and cond.wait (unlock false). */
void hold_drop_locked(hhold *h, bool owner_dead, bool unlock)
{
    hlock *l = h->l;

    hold_persist(h, EFF_HOLD_RELEASE);
    for (hhold **pp = &l->holds; *pp; pp = &(*pp)->next)
        if (*pp == h) {
            *pp = h->next;
            break;
        }
    if (owner_dead)
        l->owner_dead = true;
    atomic_fetch_sub(&srv_stat.held_locks, 1);
    if (unlock && l->rw)
        h->write ? rt_rwmutex_unlock(l->rwm) : rt_rwmutex_runlock(l->rwm);
    else if (unlock)
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

hhold *hold_find_locked(hlock *l, uint64_t sid, const uint64_t *token,
                        bool write)
{
    for (hhold *h = l->holds; h; h = h->next) {
        if (l->rw && h->write != write)
            continue;
        if (token ? h->token == *token : h->sid == sid)
            return h;
    }
    return NULL;
}

bool hold_live_locked(hlock *l, hhold *h)
{
    for (hhold *x = l->holds; x; x = x->next)
        if (x == h)
            return true;
    return false;
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
static bool hl_reach(hlock *l, uint64_t from, uint64_t target, hl_step *path,
                     int depth, int *len)
{
    if (depth >= HL_MAX_CYCLE || l->visit == hl_visit_gen)
        return false;
    l->visit = hl_visit_gen;
    for (hhold *h = l->holds; h; h = h->next) {
        if (h->sid == 0 || h->lease_ms)
            continue;
        path[depth] = (hl_step){from, l, h->sid};
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

int hold_wait_begin(hlock *l, uint64_t sid, hwait **out, char *msg,
                    size_t msglen, json_t **cycle)
{
    hl_step path[HL_MAX_CYCLE];
    int len = 0;
    hwait *w;

    *out = NULL;
    *cycle = NULL;
    pthread_mutex_lock(&hl_mu);
    hl_visit_gen++;
    if (sid && hl_reach(l, sid, sid, path, 0, &len)) {
        size_t n = 0;
        /* Written under hl_mu: the locks on the path may go once it is
         * dropped. */
        *cycle = json_array();
        n += (size_t)snprintf(msg, msglen,
                              "all goroutines are asleep - deadlock!");
        for (int i = 0; i < len; i++) {
            if (n < msglen)
                n += (size_t)snprintf(
                    msg + n, msglen - n,
                    "%s session %llu waits for %s \"%s\" held by session "
                    "%llu",
                    i ? ";" : "", (unsigned long long)path[i].waiter,
                    path[i].l->o.ops->name, path[i].l->o.name,
                    (unsigned long long)path[i].holder);
            json_array_append_new(
                *cycle, json_pack("{s:I, s:s, s:I}", "session",
                                  (json_int_t)path[i].waiter, "waits_for",
                                  path[i].l->o.name, "held_by",
                                  (json_int_t)path[i].holder));
        }
        pthread_mutex_unlock(&hl_mu);
        return HOLD_EDEADLK;
    }
    w = calloc(1, sizeof *w);
    if (w) {
        w->sid = sid;
        w->l = l;
        w->next = hl_waits;
        hl_waits = w;
    }
    pthread_mutex_unlock(&hl_mu);
    *out = w;
    return w ? 0 : HOLD_ENOMEM;
}

void hold_wait_end(hwait *w)
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
/* Session end                                                        */
/* ------------------------------------------------------------------ */

void hold_end_session(uint64_t sid)
{
    pthread_mutex_lock(&hl_mu);
    for (hhold *h = hl_all, *next; h; h = next) {
        next = h->gnext;
        if (h->sid != sid || h->lease_ms)
            continue;
        log_info("%s \"%s\": session %llu ended holding token %llu",
                 h->l->o.ops->name, h->l->o.name, (unsigned long long)sid,
                 (unsigned long long)h->token);
        hold_drop_locked(h, true, true); /* frees h only: next stays */
    }
    pthread_mutex_unlock(&hl_mu);
}
