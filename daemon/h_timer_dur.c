/*
 * h_timer_dur.c - timers' durability (issue 15): the records h_timer.c
 * logs (timer_add at each arming, timer_fire as decided, timer_stop), a
 * timer's part of a snapshot, and recovery: rebuilding the timers from
 * those records, then arming what was pending once the log is open.
 *
 * A timer is named by an id unique in its data_dir (ids only grow, also
 * across restarts), and carries what it needs to be rebuilt: its kind,
 * the name of its channel or afterfunc object, the ticker's period, the
 * afterfunc's request, and its deadline as absolute wall-clock ms (0: not
 * pending), so a restart keeps the time left and an overdue timer fires
 * once, at start.  A firing's record says what was decided (the ticker's
 * next deadline); replay only applies it.  An afterfunc whose fire record
 * is in the log has run, or was running at the crash: it does not run
 * again (at most once).
 */
#include "h_timer_internal.h"

#include "effect.h"
#include "persist.h"

#include <stdlib.h>
#include <string.h>

static _Atomic uint64_t htimer_seq = 1;

uint64_t htimer__next_id(void)
{
    return atomic_fetch_add(&htimer_seq, 1);
}

/* Fills r with ht's timer_add (strings borrowed from ht; *req owned by
 * the caller, NULL for none).  Returns 0, or -1 (memory). */
static int htimer_add_rec(htimer *ht, eff_rec *r, char **req)
{
    *r = (eff_rec){.type = EFF_TIMER_ADD};
    *req = NULL;
    if (ht->request) {
        *req = json_dumps(ht->request, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!*req)
            return -1;
    }
    r->u.timer.id = ht->id;
    r->u.timer.kind = (uint32_t)ht->kind;
    r->u.timer.deadline_ms = ht->deadline_ms;
    r->u.timer.period_ms = ht->period_ns / 1000000;
    r->u.timer.target = eff_s(ht->name);
    r->u.timer.request = eff_s(*req);
    return 0;
}

void htimer__log_add(htimer *ht)
{
    eff_rec r;
    char *req;
    uint64_t lsn;

    if (!persist_on())
        return;
    if (htimer_add_rec(ht, &r, &req) != 0) {
        log_error("durability: out of memory logging timer \"%s\"", ht->name);
        return;
    }
    if ((lsn = persist_timer(&r)) != 0)
        ht->lsn = lsn;
    free(req);
}

void htimer__log_stop(htimer *ht)
{
    eff_rec r = {.type = EFF_TIMER_STOP};
    uint64_t lsn;

    r.u.timer.id = ht->id;
    if ((lsn = persist_timer(&r)) != 0)
        ht->lsn = lsn;
}

/* The firing's record lives here from _begin to _end (one firing at a
 * time per thread: the send never blocks). */
static __thread eff_rec htimer_fire_rec;

void htimer__log_fire_begin(htimer *ht)
{
    if (!persist_on())
        return;
    htimer_fire_rec = (eff_rec){.type = EFF_TIMER_FIRE};
    htimer_fire_rec.u.timer.id = ht->id;
    htimer_fire_rec.u.timer.deadline_ms = ht->deadline_ms;
    persist_timer_fire_begin(&htimer_fire_rec);
}

void htimer__log_fire_end(htimer *ht)
{
    uint64_t lsn;

    if (!persist_on())
        return;
    if ((lsn = persist_timer_fire_end()) != 0)
        ht->lsn = lsn;
}

int htimer__snap(htimer *ht, void *s)
{
    eff_rec r;
    char *req;
    uint64_t lsn;
    int rc;

    pthread_mutex_lock(&ht->mu);
    rc = htimer_add_rec(ht, &r, &req);
    lsn = ht->lsn;
    pthread_mutex_unlock(&ht->mu);
    if (rc != 0)
        return -1;
    rc = persist_snap_emit(s, &r, lsn);
    free(req);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Recovery                                                           */
/* ------------------------------------------------------------------ */

/* The timers rebuilt so far, by id (open addressing; each slot holds a
 * reference, so a timer whose owner was dropped during replay stays
 * valid, marked stopped).  Recovery is single-threaded. */
static htimer **htimer_tab;
static size_t htimer_tab_cap, htimer_tab_n;

static size_t htimer_slot(uint64_t id, size_t cap)
{
    return (size_t)(id * 0x9e3779b97f4a7c15ull >> 17) & (cap - 1);
}

static htimer *htimer_tab_find(uint64_t id)
{
    if (!htimer_tab)
        return NULL;
    for (size_t i = htimer_slot(id, htimer_tab_cap);;
         i = (i + 1) & (htimer_tab_cap - 1))
        if (!htimer_tab[i] || htimer_tab[i]->id == id)
            return htimer_tab[i];
}

static int htimer_tab_add(htimer *ht)
{
    if (2 * (htimer_tab_n + 1) > htimer_tab_cap) {
        size_t cap = htimer_tab_cap ? 2 * htimer_tab_cap : 64;
        htimer **t = calloc(cap, sizeof *t);
        if (!t)
            return -1;
        for (size_t i = 0; i < htimer_tab_cap; i++) {
            if (!htimer_tab[i])
                continue;
            size_t j = htimer_slot(htimer_tab[i]->id, cap);
            while (t[j])
                j = (j + 1) & (cap - 1);
            t[j] = htimer_tab[i];
        }
        free(htimer_tab);
        htimer_tab = t;
        htimer_tab_cap = cap;
    }
    size_t j = htimer_slot(ht->id, htimer_tab_cap);
    while (htimer_tab[j])
        j = (j + 1) & (htimer_tab_cap - 1);
    htimer_tab[j] = ht;
    htimer_tab_n++;
    atomic_fetch_add(&ht->refs, 1);
    return 0;
}

/* Rebuilds the timer of a timer_add record r (names NUL-terminated
 * copies).  Returns 0 (also when its owner is gone: skipped) or -1. */
static int htimer_restore_new(const eff_rec *r, const char *name,
                              const char *reqtext)
{
    reg_found f;
    htimer *ht;
    json_t *req = NULL;
    int rc;

    if (r->u.timer.kind == EFF_TIMER_AFTERFUNC) {
        json_error_t je;
        req = json_loads(reqtext, JSON_DECODE_ANY, &je);
        if (!req) {
            log_warn("durability: afterfunc %s: its request is not JSON "
                     "(%s); dropped",
                     name, je.text);
            return 0;
        }
        dreq d = {0};
        if (reg_lookup(name, &htimer__after_ops, true, &d, &f) != REG_OK) {
            json_decref(req);
            return 0; /* the name holds something else */
        }
    } else if (reg_lookup(name, &hchan_ops, false, NULL, &f) != REG_OK) {
        return 0; /* its channel was dropped */
    }
    if ((r->u.timer.kind == EFF_TIMER_AFTERFUNC ? ((hafter *)f.o)->ht != NULL
                                                : hchan_timer(f.o) != NULL)) {
        json_decref(req);
        obj_release(f.o);
        return 0; /* a timer of a newer id holds it */
    }
    ht = htimer__new(
        r->u.timer.kind == EFF_TIMER_AFTERFUNC ? NULL : hchan_rt(f.o),
        (int)r->u.timer.kind, r->u.timer.period_ms * 1000000, name);
    if (ht)
        ht->id = r->u.timer.id;
    rc = ht && htimer_tab_add(ht) == 0 ? 0 : -1;
    if (rc != 0) {
        if (ht)
            htimer__put(ht);
        json_decref(req);
        if (r->u.timer.kind == EFF_TIMER_AFTERFUNC)
            reg_drop(name);
        obj_release(f.o);
        return -1;
    }
    ht->deadline_ms = r->u.timer.deadline_ms;
    ht->lsn = r->lsn;
    htimer__set_request(ht, req);
    if (r->u.timer.kind == EFF_TIMER_AFTERFUNC)
        ((hafter *)f.o)->ht = ht;
    else
        hchan_set_timer(f.o, ht, htimer__fini);
    obj_release(f.o);
    return 0;
}

static char *htimer_cstr(eff_str s)
{
    char *p = malloc(s.n + 1);
    if (p) {
        if (s.n)
            memcpy(p, s.p, s.n);
        p[s.n] = '\0';
    }
    return p;
}

int htimer__restore(const eff_rec *r)
{
    uint64_t id = r->u.timer.id;
    htimer *ht = htimer_tab_find(id);
    int rc = 0;

    if (id >= atomic_load(&htimer_seq))
        atomic_store(&htimer_seq, id + 1);
    if (!ht && r->type == EFF_TIMER_ADD) {
        char *name = htimer_cstr(r->u.timer.target);
        char *req = htimer_cstr(r->u.timer.request);
        rc = name && req ? htimer_restore_new(r, name, req) : -1;
        free(name);
        free(req);
        return rc;
    }
    if (!ht || ht->stopped)
        return 0; /* never made, or its owner was dropped */
    ht->lsn = r->lsn;
    switch (r->type) {
    case EFF_TIMER_ADD: /* timer.reset */
        ht->deadline_ms = r->u.timer.deadline_ms;
        if (ht->period_ns > 0)
            ht->period_ns = r->u.timer.period_ms * 1000000;
        break;
    case EFF_TIMER_FIRE:
        ht->deadline_ms = r->u.timer.deadline_ms;
        if (ht->kind == EFF_TIMER_AFTERFUNC)
            reg_drop(ht->name); /* as the firing did; its drop follows */
        break;
    default: /* EFF_TIMER_STOP */
        ht->deadline_ms = 0;
        break;
    }
    return 0;
}

void htimer__restart(void)
{
    int64_t now = htimer__now_ms();
    size_t armed = 0, overdue = 0;

    for (size_t i = 0; i < htimer_tab_cap; i++) {
        htimer *ht = htimer_tab[i];
        if (!ht)
            continue;
        pthread_mutex_lock(&ht->mu);
        if (!ht->stopped && ht->deadline_ms > 0) {
            int64_t left = ht->deadline_ms - now;
            overdue += left <= 0;
            /* The deadline stays the logged one (htimer__arm would move
             * it): a restart does not push a timer later. */
            int64_t dl = ht->deadline_ms;
            if (htimer__arm(ht, left > 0 ? left * 1000000 : 0) != 0)
                log_error("timer %s: cannot re-arm after the restart "
                          "(out of memory)",
                          ht->name);
            else
                armed++;
            ht->deadline_ms = dl;
        }
        pthread_mutex_unlock(&ht->mu);
        htimer__put(ht);
    }
    free(htimer_tab);
    htimer_tab = NULL;
    htimer_tab_cap = htimer_tab_n = 0;
    if (armed)
        log_info("timers: %zu restored (%zu overdue: they fire now)", armed,
                 overdue);
}
