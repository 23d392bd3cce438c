/*
 * h_timer.c - time over the wire: timer.after, timer.ticker, timer.stop,
 * timer.reset, timer.afterfunc.
 *
 * timer.after/ticker create a channel (cap 1, numbers) that receives the
 * Unix time in ms when the timer fires; a ticker drops a tick while the
 * channel is full, as Go's.  timer.afterfunc runs a request later in its
 * own goroutine.  Every arming is one runtime AfterFunc timer with its own
 * small record (harm): the timer state knows which arming is current, so a
 * firing that lost a race with stop/reset does nothing, and each record is
 * freed by exactly one party (the stopper that prevented it, or the firing
 * itself).  As Go 1.23, stop and reset drain a value not yet received.
 * With data_dir set, timers persist as wall-clock deadlines: the records
 * are h_timer_dur.c's, logged here under ht->mu where things happen.
 */
#include "daemon.h"
#include "effect.h"
#include "h_timer_internal.h"
#include "persist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Timers in existence, against max_timers. */
static _Atomic int htimer_count;

void htimer__put(htimer *ht)
{
    if (atomic_fetch_sub(&ht->refs, 1) != 1)
        return;
    if (ht->c)
        rt_chan_release(ht->c);
    mem_sub(ht->mem);
    atomic_fetch_sub(&htimer_count, 1);
    json_decref(ht->request);
    free(ht->name);
    pthread_mutex_destroy(&ht->mu);
    free(ht);
}

int64_t htimer__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void htimer_fire(void *arg);

/* The timer whose firing holds its mu on this thread, during the send:
 * the send may complete a receive whose request held the last reference
 * to the (dropped) channel object, whose fini (htimer__fini) then runs
 * here, under the same mu.  The send never blocks (RT_POLL), so the
 * goroutine stays on this thread meanwhile. */
static __thread htimer *htimer_firing;

/* Arms ht for ns from now, its deadline_ms unchanged (ht->mu held).
 * Returns 0 or -1. */
static int htimer_arm_raw(htimer *ht, int64_t ns)
{
    harm *a = calloc(1, sizeof *a);

    if (!a)
        return -1;
    a->ht = ht;
    atomic_fetch_add(&ht->refs, 1);
    a->t = rt_after_func(ns, htimer_fire, a);
    if (!a->t) {
        atomic_fetch_sub(&ht->refs, 1);
        free(a);
        return -1;
    }
    ht->cur = a;
    return 0;
}

int htimer__arm(htimer *ht, int64_t ns)
{
    ht->deadline_ms = htimer__now_ms() + (ns > 0 ? ns / 1000000 : 0);
    if (htimer_arm_raw(ht, ns) == 0)
        return 0;
    ht->deadline_ms = 0;
    return -1;
}

/* Stops the current arming (ht->mu held); returns true if it was pending
 * and will not fire. */
static bool htimer_disarm(htimer *ht)
{
    harm *a = ht->cur;

    ht->cur = NULL;
    ht->deadline_ms = 0;
    if (!a || !rt_timer_stop(a->t))
        return false; /* none, or it fired: the firing frees it */
    rt_timer_free(a->t);
    free(a);
    atomic_fetch_sub(&ht->refs, 1); /* never the last: the caller's */
    return true;
}

/* Drops a value nobody received (Go 1.23's Stop/Reset). */
static bool htimer_drain(htimer *ht)
{
    hval v;
    bool ok, any = false;

    while (ht->c && rt_chan_recv(ht->c, &v, &ok, RT_POLL) == 0 && ok) {
        hval_free(v);
        any = true;
    }
    return any;
}

/* Decides a firing (ht->mu held): whether arming a is still the current
 * one, and what follows it (a ticker's next deadline, else none).  All of
 * a timer's deciding is here, before anything is logged, so that replay
 * never decides, and a node that must not decide (a follower of a
 * replicated log) has one place to say so.  Returns true to fire. */
static bool htimer_decide(htimer *ht, harm *a)
{
    if (ht->cur != a || ht->stopped)
        return false;
    ht->cur = NULL;
    ht->deadline_ms =
        ht->period_ns > 0 ? htimer__now_ms() + ht->period_ns / 1000000 : 0;
    return true;
}

static void htimer_fire(void *arg)
{
    harm *a = arg;
    htimer *ht = a->ht;
    json_t *req = NULL;
    char *drop = NULL;

    pthread_mutex_lock(&ht->mu);
    if (htimer_decide(ht, a)) {
        hval v;
        htimer__log_fire_begin(ht);
        htimer_firing = ht;
        if (ht->c && hval_from_int(htimer__now_ms(), &v) == 0 &&
            rt_chan_send(ht->c, &v, RT_POLL) != 0)
            hval_free(v); /* full (a slow ticker reader) or closed */
        htimer_firing = NULL;
        htimer__log_fire_end(ht);
        if (ht->stopped) {
            /* Its owner let go during the send (see htimer_firing). */
        } else if (ht->period_ns > 0) {
            if (htimer_arm_raw(ht, ht->period_ns) != 0)
                log_error("ticker: cannot re-arm (out of memory)");
        } else if (ht->request) {
            req = json_incref(ht->request);
            drop = ht->name ? strdup(ht->name) : NULL;
        }
    }
    pthread_mutex_unlock(&ht->mu);
    if (drop) {
        /* A fired afterfunc leaves the namespace. */
        reg_drop(drop);
        free(drop);
    }
    /* No loop turn ends after a firing: hand its records to the log's
     * writer now, not at the next client's turn. */
    persist_flush();
    if (req) {
        proto_error err;
        if (disp_run_detached(req, false, &err) != 0)
            log_warn("afterfunc request failed: %s", err.message);
        json_decref(req);
    }
    rt_timer_free(a->t);
    free(a);
    htimer__put(ht);
}

void htimer__fini(void *arg)
{
    htimer *ht = arg;
    bool nested = htimer_firing == ht; /* mu is already ours */

    if (!nested)
        pthread_mutex_lock(&ht->mu);
    ht->stopped = true;
    htimer_disarm(ht);
    if (!nested)
        pthread_mutex_unlock(&ht->mu);
    htimer__put(ht); /* never the last: the firing holds one */
}

htimer *htimer__new(rt_chan *c, int kind, int64_t period_ns, const char *name)
{
    htimer *ht = calloc(1, sizeof *ht);

    if (!ht)
        return NULL;
    ht->name = strdup(name);
    if (!ht->name) {
        free(ht);
        return NULL;
    }
    ht->refs = 1;
    pthread_mutex_init(&ht->mu, NULL);
    ht->kind = kind;
    ht->id = htimer__next_id();
    ht->period_ns = period_ns;
    ht->mem = (int64_t)sizeof *ht + 256; /* and its arming's records */
    mem_add(ht->mem);
    atomic_fetch_add(&htimer_count, 1);
    if (c)
        ht->c = rt_chan_retain(c);
    return ht;
}

void htimer__set_request(htimer *ht, json_t *request)
{
    ht->request = request;
    if (request) {
        int64_t cost = mem_json_cost(request);
        ht->mem += cost;
        mem_add(cost);
    }
}

/* ------------------------------------------------------------------ */
/* Methods                                                            */
/* ------------------------------------------------------------------ */

/* Refuses a new timer past max_timers (answers r).  Returns true when
 * it may be made. */
static bool htimer_admit(dreq *r)
{
    if (atomic_load(&htimer_count) < srv_conf.max_timers)
        return true;
    dreq_fail(r, PROTO_R_LIMIT,
              "max_timers reached: %d timers exist (stop some, or raise "
              "max_timers)",
              srv_conf.max_timers);
    return false;
}

static void htimer_chan(dreq *r, bool ticker)
{
    if (!persist_write_ok(r))
        return; /* the log cannot be written: see persist.h */
    int64_t ms = dreq_int(r, "ms", 0);
    obj *o;
    htimer *ht;
    int rc;

    if (ticker && ms <= 0) {
        dreq_fail(r, PROTO_R_MISUSE, "%s", rt_strerror(RT_ENONPOSTICK));
        return;
    }
    if (ticker && ms < srv_conf.min_ticker_ms) {
        dreq_fail(r, PROTO_R_LIMIT,
                  "min_ticker_ms is %d: a ticker of %lld ms would cost a "
                  "core for nothing",
                  srv_conf.min_ticker_ms, (long long)ms);
        return;
    }
    if (!htimer_admit(r))
        return;
    o = hchan_make_for_timer(r, dreq_str(r, "name"), 1);
    if (!o)
        return;
    ht = htimer__new(hchan_rt(o), ticker ? EFF_TIMER_TICKER : EFF_TIMER_AFTER,
                     ticker ? ms * 1000000 : 0, o->name);
    if (!ht) {
        reg_drop(o->name);
        obj_release(o);
        dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
        return;
    }
    /* Attached before its timer_add is logged: a snapshot walking the
     * channel meanwhile then emits the timer (waiting on mu), or began
     * after the record, which the log then holds. */
    hchan_set_timer(o, ht, htimer__fini);
    pthread_mutex_lock(&ht->mu);
    rc = htimer__arm(ht, ms * 1000000);
    if (rc == 0)
        htimer__log_add(ht);
    pthread_mutex_unlock(&ht->mu);
    if (rc != 0) {
        reg_drop(o->name);
        dreq_fail(r, PROTO_R_INTERNAL, "cannot start a timer");
    } else {
        dreq_ok(r, NULL);
    }
    obj_release(o);
}

void h_timer_after(dreq *r)
{
    htimer_chan(r, false);
}

void h_timer_ticker(dreq *r)
{
    htimer_chan(r, true);
}

static void hafter_fini(obj *o)
{
    hafter *a = (hafter *)o;
    if (a->ht)
        htimer__fini(a->ht);
}

/* obj_ops.snap: the pending afterfunc (its request rides in timer_add). */
static int hafter_snap(obj *o, void *s)
{
    htimer *ht = __atomic_load_n(&((hafter *)o)->ht, __ATOMIC_ACQUIRE);
    return ht ? htimer__snap(ht, s) : 0;
}

const obj_ops htimer__after_ops = {
    .type = OBJ_TIMER,
    .name = "timer",
    .size = sizeof(hafter),
    .fini = hafter_fini,
    .snap = hafter_snap,
};

void h_timer_afterfunc(dreq *r)
{
    if (!persist_write_ok(r))
        return; /* the log cannot be written: see persist.h */
    json_t *req = dreq_param(r, "request");
    proto_error err;
    char name[64];
    bool created = false;
    htimer *ht;
    obj *o = NULL;
    int rc;

    if (disp_run_detached(req, true, &err) != 0) {
        dreq_fail_params(r, NULL, "%s", err.message);
        return;
    }
    if (!htimer_admit(r))
        return;
    /* A name a restored afterfunc holds is skipped (the sequence starts
     * again at each start). */
    for (int tries = 0; !created && tries < 1000; tries++) {
        if (o)
            obj_release(o);
        reg_unique_name("afterfunc", name, sizeof name);
        o = dreq_obj_make(r, name, &htimer__after_ops, &created);
        if (!o)
            return;
    }
    if (!created) {
        obj_release(o);
        dreq_fail(r, PROTO_R_INTERNAL, "no free afterfunc name");
        return;
    }
    ht = htimer__new(NULL, EFF_TIMER_AFTERFUNC, 0, name);
    if (!ht) {
        reg_drop(name);
        obj_release(o);
        dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
        return;
    }
    /* A copy: it outlives the request line. */
    htimer__set_request(ht, json_deep_copy(req));
    /* Attached before its timer_add is logged (see htimer_chan). */
    __atomic_store_n(&((hafter *)o)->ht, ht, __ATOMIC_RELEASE);
    pthread_mutex_lock(&ht->mu);
    rc = htimer__arm(ht, dreq_int(r, "ms", 0) * 1000000);
    if (rc == 0)
        htimer__log_add(ht);
    pthread_mutex_unlock(&ht->mu);
    if (rc != 0) {
        reg_drop(name);
        dreq_fail(r, PROTO_R_INTERNAL, "cannot start a timer");
    } else {
        dreq_ok(r, json_pack("{s:s}", "timer", name));
    }
    obj_release(o);
}

/* Finds the timer state behind name, or fails r. */
static htimer *htimer_find(dreq *r, obj **o)
{
    htimer *ht = NULL;

    *o = dreq_obj(r, dreq_str(r, "name"), NULL, false);
    if (!*o)
        return NULL;
    if ((*o)->ops == &htimer__after_ops)
        ht = ((hafter *)*o)->ht;
    else
        ht = hchan_timer(*o);
    if (!ht) {
        dreq_fail(r, PROTO_R_WRONG_TYPE, "\"%s\" is not a timer", (*o)->name);
        obj_release(*o);
    }
    return ht;
}

void h_timer_stop(dreq *r)
{
    if (!persist_write_ok(r))
        return;
    obj *o;
    htimer *ht = htimer_find(r, &o);
    bool stopped;

    if (!ht)
        return;
    pthread_mutex_lock(&ht->mu);
    ht->stopped = true;
    stopped = htimer_disarm(ht);
    if (htimer_drain(ht))
        stopped = true;
    htimer__log_stop(ht);
    pthread_mutex_unlock(&ht->mu);
    dreq_ok(r, json_pack("{s:b}", "stopped", stopped));
    obj_release(o);
}

void h_timer_reset(dreq *r)
{
    if (!persist_write_ok(r))
        return;
    int64_t ms = dreq_int(r, "ms", 0);
    obj *o;
    htimer *ht = htimer_find(r, &o);
    bool active;
    int rc;

    if (!ht)
        return;
    if (ht->period_ns > 0 && ms <= 0) {
        dreq_fail(r, PROTO_R_MISUSE, "%s", rt_strerror(RT_ENONPOSRESET));
        obj_release(o);
        return;
    }
    pthread_mutex_lock(&ht->mu);
    active = htimer_disarm(ht);
    if (htimer_drain(ht))
        active = true;
    ht->stopped = false;
    if (ht->period_ns > 0)
        ht->period_ns = ms * 1000000;
    rc = htimer__arm(ht, ms * 1000000);
    if (rc == 0)
        htimer__log_add(ht);
    pthread_mutex_unlock(&ht->mu);
    if (rc != 0)
        dreq_fail(r, PROTO_R_INTERNAL, "cannot start a timer");
    else
        dreq_ok(r, json_pack("{s:b}", "active", active));
    obj_release(o);
}
