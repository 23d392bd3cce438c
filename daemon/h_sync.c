/*
 * h_sync.c - WaitGroup, Once and Pool over the wire.
 *
 * WaitGroup and Pool are the runtime's (rt_wg, rt_pool).  Once over the
 * wire differs from Go's in one way a broker needs: the function runs in
 * the client, so the first caller is told run:true and reports the end with
 * once.done; the others wait (a runtime Cond over the object's state lock)
 * and get run:false.  If the runner's session ends first, the once is
 * reopened and the next waiter becomes the runner.
 *
 * As Go 1.21's sync.OnceValue, a once keeps the value its function gave:
 * once.done {value} stores it (null when absent) and every run:false
 * answer carries it, so that the callers who did not run learn how the
 * run went (chanctl stores the command's exit status).
 */
#include "daemon.h"
#include "persist.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* WaitGroup                                                          */
/* ------------------------------------------------------------------ */

typedef struct hwg {
    obj o;
    rt_wg *wg;
} hwg;

static int hwg_init(obj *o, dreq *r)
{
    (void)r;
    ((hwg *)o)->wg = rt_wg_new();
    return ((hwg *)o)->wg ? 0 : -1;
}

static void hwg_fini(obj *o)
{
    rt_wg_free(((hwg *)o)->wg);
}

static void hwg_info(obj *o, json_t *into)
{
    json_object_set_new(into, "count",
                        json_integer(rt_wg_count(((hwg *)o)->wg)));
}

static int hwg_snap(obj *o, void *s)
{
    eff_rec r = {.type = EFF_WG_SET};

    persist_lock(o);
    uint64_t lsn = atomic_load(&o->lsn);
    r.u.num.v = rt_wg_count(((hwg *)o)->wg);
    persist_unlock(o);
    r.u.num.name = eff_s(o->name);
    return r.u.num.v ? persist_snap_emit(s, &r, lsn) : 0;
}

static bool hwg_idle(obj *o)
{
    return rt_wg_count(((hwg *)o)->wg) == 0;
}

static const obj_ops hwg_ops = {
    .type = OBJ_WG,
    .name = "wg",
    .size = sizeof(hwg),
    .init = hwg_init,
    .fini = hwg_fini,
    .info = hwg_info,
    .snap = hwg_snap,
    .idle = hwg_idle,
};

static void hwg_add(dreq *r, int64_t delta)
{
    obj *o = dreq_obj(r, dreq_str(r, "name"), &hwg_ops, true);
    int64_t n;

    if (!o)
        return;
    if (!persist_write_ok(r)) {
        obj_release(o);
        return;
    }
    persist_lock(o);
    n = rt_wg_add(((hwg *)o)->wg, delta);
    if (n >= 0)
        persist_wg_set(o, n);
    persist_unlock(o);
    if (n < 0)
        dreq_fail_rt(r, (int)n);
    else
        dreq_ok(r, json_pack("{s:I}", "count", (json_int_t)n));
    obj_done(o);
}

void h_wg_add(dreq *r)
{
    hwg_add(r, dreq_int(r, "delta", 0));
}

void h_wg_done(dreq *r)
{
    hwg_add(r, -1);
}

static void hwg_wait_go(dreq *r)
{
    obj *o = r->ctx;
    int rc;

    dreq_wait_begin(r, o, "sync.WaitGroup.Wait");
    rc = dreq_cancelled(r) ? RT_ECANCELED : rt_wg_wait(((hwg *)o)->wg, r->dl);
    dreq_wait_end(r);
    if (rc == 0)
        dreq_ok(r, NULL);
    else
        dreq_fail_rt(r, rc);
    obj_done(o);
}

void h_wg_wait(dreq *r)
{
    obj *o = dreq_obj(r, dreq_str(r, "name"), &hwg_ops, true);
    int rc;

    if (!o)
        return;
    rc = rt_wg_wait(((hwg *)o)->wg, RT_POLL);
    if (rc == RT_EAGAIN && r->dl != RT_POLL) {
        r->ctx = o;
        if (dreq_park(r, hwg_wait_go) != 0)
            obj_done(o);
        return;
    }
    if (rc == 0)
        dreq_ok(r, NULL);
    else
        dreq_fail_rt(r, rc);
    obj_done(o);
}

/* ------------------------------------------------------------------ */
/* Once                                                               */
/* ------------------------------------------------------------------ */

enum { ONCE_IDLE = 0, ONCE_RUNNING, ONCE_DONE };

typedef struct honce {
    obj o;
    pthread_mutex_t mu; /* guards state and runner */
    int state;
    uint64_t runner; /* session running it (0: detached) */
    uint64_t run;    /* counts the turns, for the lease */
    rt_cond *cv;     /* waiters for the runner's end */
    json_t *value;   /* owned; set when state is ONCE_DONE, the
                      * durable state with state itself */
} honce;

/* A once.do turn taken with lease_ms: the once reopens when the turn is
 * still running as it ends, as a lock's lease releases it. */
typedef struct honce_lease {
    _Atomic int refs; /* the taker's and the timer's */
    obj *o;           /* retained */
    uint64_t run;
    rt_timer *t;
} honce_lease;

static _Atomic int honce_running; /* onces in ONCE_RUNNING, for the hook */

static int honce_lock(void *m, rt_deadline_t dl)
{
    (void)dl;
    pthread_mutex_lock(m);
    return 0;
}

static int honce_unlock(void *m)
{
    pthread_mutex_unlock(m);
    return 0;
}

static int honce_init(obj *o, dreq *r)
{
    honce *h = (honce *)o;
    rt_locker L = {honce_lock, honce_unlock, &h->mu};
    (void)r;

    pthread_mutex_init(&h->mu, NULL);
    h->cv = rt_cond_new(L);
    if (!h->cv) {
        pthread_mutex_destroy(&h->mu);
        return -1;
    }
    return 0;
}

static void honce_fini(obj *o)
{
    honce *h = (honce *)o;
    if (h->state == ONCE_RUNNING)
        atomic_fetch_sub(&honce_running, 1);
    json_decref(h->value);
    rt_cond_free(h->cv);
    pthread_mutex_destroy(&h->mu);
}

static void honce_info(obj *o, json_t *into)
{
    honce *h = (honce *)o;
    static const char *const names[] = {"idle", "running", "done"};
    pthread_mutex_lock(&h->mu);
    json_object_set_new(into, "state", json_string(names[h->state]));
    if (h->state == ONCE_RUNNING)
        json_object_set_new(into, "runner",
                            json_integer((json_int_t)h->runner));
    pthread_mutex_unlock(&h->mu);
}

static int honce_snap(obj *o, void *s)
{
    honce *h = (honce *)o;
    eff_rec r = {.type = EFF_ONCE_DONE};

    pthread_mutex_lock(&h->mu);
    bool done = h->state == ONCE_DONE;
    uint64_t lsn = atomic_load(&o->lsn);
    char *text = done && h->value
                     ? json_dumps(h->value, JSON_COMPACT | JSON_ENCODE_ANY)
                     : NULL;
    pthread_mutex_unlock(&h->mu);
    r.u.once.name = eff_s(o->name);
    r.u.once.has_value = text != NULL;
    r.u.once.value = eff_s(text ? text : "");
    int rc = done ? persist_snap_emit(s, &r, lsn) : 0;
    free(text);
    return rc;
}

static bool honce_busy(obj *o)
{
    honce *h = (honce *)o;
    bool busy;

    pthread_mutex_lock(&h->mu);
    busy = h->state == ONCE_RUNNING;
    if (!busy)
        atomic_store(&o->dropped, true);
    pthread_mutex_unlock(&h->mu);
    return busy;
}

/* A rebuild's forget (daemon.h): the turn in progress ends as if its
 * runner had gone, with no waiter to take it (they are refused: see
 * honce_try_locked). */
static void honce_forget(obj *o)
{
    honce *h = (honce *)o;

    pthread_mutex_lock(&h->mu);
    atomic_store(&o->dropped, true);
    if (h->state == ONCE_RUNNING) {
        h->state = ONCE_IDLE;
        h->runner = 0;
        atomic_fetch_sub(&honce_running, 1);
    }
    rt_cond_broadcast(h->cv);
    pthread_mutex_unlock(&h->mu);
}

static const obj_ops honce_ops = {
    .type = OBJ_ONCE,
    .name = "once",
    .size = sizeof(honce),
    .init = honce_init,
    .fini = honce_fini,
    .info = honce_info,
    .snap = honce_snap,
    .busy = honce_busy,
    .forget = honce_forget,
};

static void honce_lease_put(honce_lease *ls)
{
    if (atomic_fetch_sub(&ls->refs, 1) != 1)
        return;
    rt_timer_free(ls->t);
    obj_release(ls->o);
    free(ls);
}

static void honce_lease_fire(void *arg)
{
    honce_lease *ls = arg;
    honce *h = (honce *)ls->o;

    pthread_mutex_lock(&h->mu);
    if (h->state == ONCE_RUNNING && h->run == ls->run) {
        h->state = ONCE_IDLE;
        h->runner = 0;
        atomic_fetch_sub(&honce_running, 1);
        rt_cond_signal(h->cv);
        log_info("once \"%s\": lease of its runner expired", ls->o->name);
    }
    pthread_mutex_unlock(&h->mu);
    honce_lease_put(ls);
}

/* Starts the lease of turn `run` of h (not under h->mu: the timer may
 * fire at once).  Out of memory leaves the turn without one. */
static void honce_lease_start(honce *h, uint64_t run, int64_t lease_ms)
{
    honce_lease *ls = calloc(1, sizeof *ls);

    if (!ls)
        return;
    ls->refs = 2;
    ls->o = obj_retain(&h->o);
    ls->run = run;
    ls->t = rt_after_func(lease_ms * 1000000, honce_lease_fire, ls);
    if (!ls->t) {
        obj_release(ls->o);
        free(ls);
        return;
    }
    honce_lease_put(ls);
}

/* Decides for r under h->mu: returns 1 (answer run:true), 0 (answer
 * run:false, with a new reference to the once's value in *value), -1
 * (must wait) or -2 (forgotten by a rebuild: answer not_found). */
static int honce_try_locked(honce *h, dreq *r, json_t **value)
{
    if (h->state == ONCE_DONE) {
        *value = json_incref(h->value);
        return 0;
    }
    if (atomic_load(&h->o.dropped))
        return -2; /* forgotten by a rebuild, or dropped as it was found */
    if (h->state == ONCE_IDLE) {
        h->state = ONCE_RUNNING;
        h->runner = dreq_sid(r);
        h->run++;
        atomic_fetch_add(&honce_running, 1);
        return 1;
    }
    return -1;
}

/* Answers r: run:true (a turn taken with lease_ms starts its lease
 * first), or run:false with value (stolen). */
static void honce_answer(dreq *r, int run, uint64_t turn, json_t *value)
{
    int64_t lease_ms = dreq_int(r, "lease_ms", 0);

    if (run && lease_ms > 0)
        honce_lease_start((honce *)r->ctx, turn, lease_ms);
    if (run)
        dreq_ok(r, json_pack("{s:b}", "run", 1));
    else
        dreq_ok(r, json_pack("{s:b,s:o}", "run", 0, "value",
                             value ? value : json_null()));
}

static void honce_fail_dropped(dreq *r, obj *o)
{
    dreq_fail(r, PROTO_R_NOT_FOUND, "once \"%s\" was dropped", o->name);
}

static void honce_wait_go(dreq *r)
{
    obj *o = r->ctx;
    honce *h = (honce *)o;
    json_t *value = NULL;
    int rc = 0, got;
    uint64_t turn;

    dreq_wait_begin(r, o, "sync.Once.Do");
    pthread_mutex_lock(&h->mu);
    if (dreq_cancelled(r))
        rc = RT_ECANCELED, got = -1;
    else
        while ((got = honce_try_locked(h, r, &value)) == -1 && rc == 0)
            rc = rt_cond_wait(h->cv, r->dl);
    if (got == 1 && r->s && !sess_alive(r->s)) {
        /* Became the runner for a session that has already ended (its
         * end hook has run): pass the turn on. */
        h->state = ONCE_IDLE;
        atomic_fetch_sub(&honce_running, 1);
        rt_cond_signal(h->cv);
    }
    turn = h->run;
    pthread_mutex_unlock(&h->mu);
    dreq_wait_end(r);
    if (got >= 0)
        honce_answer(r, got, turn, value);
    else if (got == -2)
        honce_fail_dropped(r, o);
    else
        dreq_fail_rt(r, rc);
    obj_release(o);
}

void h_once_do(dreq *r)
{
    obj *o = dreq_obj(r, dreq_str(r, "name"), &honce_ops, true);
    honce *h = (honce *)o;
    json_t *value = NULL;
    int got;
    uint64_t turn;

    if (!o)
        return;
    pthread_mutex_lock(&h->mu);
    got = honce_try_locked(h, r, &value);
    turn = h->run;
    pthread_mutex_unlock(&h->mu);
    r->ctx = o;
    if (got == -1 && r->dl != RT_POLL) {
        if (dreq_park(r, honce_wait_go) != 0)
            obj_release(o);
        return;
    }
    if (got == -2)
        honce_fail_dropped(r, o);
    else if (got < 0)
        dreq_fail(r, PROTO_R_TIMEOUT, "timeout");
    else
        honce_answer(r, got, turn, value);
    obj_release(o);
}

void h_once_done(dreq *r)
{
    if (!persist_write_ok(r))
        return; /* the log cannot be written: see persist.h */
    obj *o = dreq_obj(r, dreq_str(r, "name"), &honce_ops, true);
    honce *h = (honce *)o;
    json_t *value;

    if (!o)
        return;
    value = dreq_param(r, "value"); /* borrowed; NULL when absent */
    pthread_mutex_lock(&h->mu);
    if (h->state == ONCE_RUNNING && h->runner == dreq_sid(r)) {
        h->state = ONCE_DONE;
        json_decref(h->value);
        h->value = value ? json_incref(value) : json_null();
        persist_once_done(o, h->value);
        atomic_fetch_sub(&honce_running, 1);
        rt_cond_broadcast(h->cv);
        pthread_mutex_unlock(&h->mu);
        dreq_ok(r, NULL);
    } else {
        int st = h->state;
        pthread_mutex_unlock(&h->mu);
        dreq_fail(r, PROTO_R_MISUSE,
                  st == ONCE_DONE ? "once \"%s\" is already done"
                                  : "this session is not running once "
                                    "\"%s\" (call once.do first)",
                  o->name);
    }
    obj_release(o);
}

static void honce_end_one(obj *o, void *arg)
{
    honce *h = (honce *)o;
    uint64_t sid = *(uint64_t *)arg;

    if (o->ops != &honce_ops)
        return;
    pthread_mutex_lock(&h->mu);
    if (h->state == ONCE_RUNNING && h->runner == sid) {
        /* Reopen: the next waiter (or caller) becomes the runner. */
        h->state = ONCE_IDLE;
        h->runner = 0;
        atomic_fetch_sub(&honce_running, 1);
        rt_cond_signal(h->cv);
        log_info("once \"%s\": runner session %llu ended before once.done",
                 o->name, (unsigned long long)sid);
    }
    pthread_mutex_unlock(&h->mu);
}

void honce_session_end(sess *s)
{
    uint64_t sid = sess_id(s);
    if (atomic_load(&honce_running) == 0)
        return;
    reg_foreach(NULL, honce_end_one, &sid);
}

/* ------------------------------------------------------------------ */
/* Pool                                                               */
/* ------------------------------------------------------------------ */

typedef struct hpool {
    obj o;
    rt_pool *p;
} hpool;

static int hpool_init(obj *o, dreq *r)
{
    (void)r;
    ((hpool *)o)->p = rt_pool_new(NULL, NULL);
    return ((hpool *)o)->p ? 0 : -1;
}

/* Pool values are charged to max_memory's count while pooled. */
static void hpool_dtor(void *v)
{
    mem_sub(mem_json_cost(v));
    json_decref(v);
}

static void hpool_fini(obj *o)
{
    rt_pool_free(((hpool *)o)->p, hpool_dtor);
}

static const obj_ops hpool_ops = {
    .type = OBJ_POOL,
    .name = "pool",
    .size = sizeof(hpool),
    .init = hpool_init,
    .fini = hpool_fini,
};

void h_pool_put(dreq *r)
{
    obj *o = dreq_obj(r, dreq_str(r, "name"), &hpool_ops, true);

    if (!o)
        return;
    mem_add(mem_json_cost(dreq_param(r, "value")));
    rt_pool_put(((hpool *)o)->p, json_incref(dreq_param(r, "value")));
    dreq_ok(r, NULL);
    obj_release(o);
}

void h_pool_get(dreq *r)
{
    obj *o = dreq_obj(r, dreq_str(r, "name"), &hpool_ops, true);
    json_t *v;

    if (!o)
        return;
    v = rt_pool_get(((hpool *)o)->p);
    if (v)
        mem_sub(mem_json_cost(v));
    if (v)
        dreq_ok(r, json_pack("{s:o, s:b}", "value", v, "ok", 1));
    else
        dreq_ok(r, json_pack("{s:n, s:b}", "value", "ok", 0));
    obj_release(o);
}

/* ------------------------------------------------------------------ */
/* Recovery's builders (persist.h)                                    */
/* ------------------------------------------------------------------ */

int hwg__restore(const char *name, int64_t v)
{
    reg_found f;
    dreq r = {0};

    if (reg_lookup(name, &hwg_ops, true, &r, &f) != REG_OK)
        return 0;
    rt_wg *wg = ((hwg *)f.o)->wg;
    int64_t n = rt_wg_add(wg, v - rt_wg_count(wg));
    obj_release(f.o);
    return n < 0 ? -1 : 0;
}

int honce__restore(const char *name, const char *v, size_t vn)
{
    reg_found f;
    dreq r = {0};

    if (reg_lookup(name, &honce_ops, true, &r, &f) != REG_OK)
        return 0;
    honce *h = (honce *)f.o;
    json_t *j = v ? json_loadb(v, vn, JSON_DECODE_ANY, NULL) : json_null();
    pthread_mutex_lock(&h->mu);
    h->state = ONCE_DONE;
    json_decref(h->value);
    h->value = j ? j : json_null();
    pthread_mutex_unlock(&h->mu);
    obj_release(f.o);
    return 0;
}
