/*
 * dlv.c - acknowledged deliveries: the records, their ids, deadlines and
 * the one place that decides what happens to a value whose attempt ended
 * without an ack (dlv_decide: redeliver, or dead-letter after the last
 * attempt).
 *
 * A record is made when an acknowledged receive takes a value that has
 * none (dlv_hook, under the channel's lock, so the durability log gets
 * the buffer's GET and the new delivery as one effect) and keeps its own
 * copy of the value's text until the delivery ends; between attempts it
 * rides in the runtime's redelivery queue as the value's meta.  Every
 * live record is on its channel's list (for the snapshot and drop); the
 * attempts in flight are also in a hash by id (dlv_tab.c).  Each record
 * has one runtime AfterFunc timer, re-armed for touch and for a nack's
 * delay; a firing that finds its record changed does nothing.  A record
 * is reference counted under dlv_mu: one reference while it lives, one
 * per armed firing.
 *
 * Lock order: a channel's lock, then dlv_mu (dlv_hook runs under the
 * channel's lock).  So nothing here calls into a channel while holding
 * dlv_mu: a requeue can hand the value to an acknowledged await whose
 * completion comes straight back to dlv_begin.  A record leaves the table
 * under dlv_mu first, then the channel is told.
 */
#include "dlv_internal.h"
#include "h_chan_internal.h"
#include "hval.h"
#include "persist.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t dlv_mu = PTHREAD_MUTEX_INITIALIZER;
/* The attempts in flight by session id, so that a session's end finds
 * its own without a walk of every delivery. */
#define DLV_SBUCKETS 1024
static dlv *dlv_sess[DLV_SBUCKETS];
static _Atomic int64_t dlv_inflight, dlv_redelivered, dlv_dead, dlv_dropped;

/* ---- records ---- */

static void list_add(dlv *d)
{
    hchan *h = (hchan *)d->o;

    d->lprev = NULL;
    d->lnext = h->dlvs;
    if (h->dlvs)
        h->dlvs->lprev = d;
    h->dlvs = d;
    d->listed = true;
}

static void list_del(dlv *d)
{
    hchan *h = (hchan *)d->o;

    if (!d->listed)
        return;
    if (d->lprev)
        d->lprev->lnext = d->lnext;
    else
        h->dlvs = d->lnext;
    if (d->lnext)
        d->lnext->lprev = d->lprev;
    d->listed = false;
}

/* Returns a new record of o's value text for delivery seq (not listed),
 * or NULL. */
static dlv *dlv_new(obj *o, uint64_t seq, const char *text, size_t n)
{
    dlv *d = calloc(1, sizeof *d);

    if (!d || hval_from_text(text, n, &d->val) != 0) {
        free(d);
        return NULL;
    }
    d->o = obj_retain(o);
    d->seq = seq;
    d->refs = 1;
    return d;
}

/* Drops one reference (dlv_mu held); the last one returns d to free
 * outside the lock (obj_release may run the channel's fini). */
static dlv *dlv_unref(dlv *d)
{
    return --d->refs == 0 ? d : NULL;
}

static void dlv_free(dlv *d)
{
    if (!d)
        return;
    if (d->t)
        rt_timer_free(d->t);
    free(d->reason);
    hval_free(d->val);
    obj_release(d->o);
    free(d);
}

static void dlv_fire(void *arg);

/* (Re)arms d's timer for ns from now (dlv_mu held).  A firing already due
 * (reset finds the timer inactive) keeps its own reference. */
static void dlv_arm(dlv *d, int64_t ns)
{
    d->due = rt_now() + ns;
    if (!d->t) {
        d->t = rt_after_func(ns, dlv_fire, d);
        if (d->t)
            d->refs++;
        return;
    }
    if (!rt_timer_reset(d->t, ns))
        d->refs++;
}

/* Stops d's timer (dlv_mu held); a firing stopped gives back its
 * reference (never the last: d's own is still held). */
static void dlv_disarm(dlv *d)
{
    if (d->t && rt_timer_stop(d->t))
        d->refs--;
}

static void set_reason(dlv *d, const char *why)
{
    char *s;

    if (!why)
        return;
    s = strdup(why);
    if (!s)
        return; /* out of memory: the previous reason stays */
    free(d->reason);
    d->reason = s;
}

/* Takes d (in flight) out of the table (dlv_mu held). */
static void sess_add(dlv *d)
{
    dlv **b = &dlv_sess[d->sid % DLV_SBUCKETS];

    if (!d->sid)
        return;
    d->sprev = NULL;
    d->snext = *b;
    if (*b)
        (*b)->sprev = d;
    *b = d;
    d->in_sess = true;
}

static void sess_del(dlv *d)
{
    if (!d->in_sess)
        return;
    if (d->sprev)
        d->sprev->snext = d->snext;
    else
        dlv_sess[d->sid % DLV_SBUCKETS] = d->snext;
    if (d->snext)
        d->snext->sprev = d->sprev;
    d->in_sess = false;
}

static void dlv_leave(dlv *d)
{
    dlv__tab_del(d);
    sess_del(d);
    d->id = 0;
}

/* ---- outcomes (without dlv_mu) ---- */

/* The value leaves its channel for good (acknowledged, or dead when
 * dead-lettered or dropped): the slot is freed and an unbuffered sender
 * waiting on it completes. */
static void dlv_finish(dlv *d, bool dead)
{
    rt_chan_ack(((hchan *)d->o)->c, d->seq);
    atomic_fetch_sub(&dlv_inflight, 1);
    pthread_mutex_lock(&dlv_mu);
    d->st = DS_DONE;
    list_del(d);
    /* Logged after the record left the list, under the same lock: a
     * snapshot either holds the delivery with an LSN below this record,
     * or neither. */
    dlvp_end(d->o, d->seq, dead, d->reason);
    dlv *f = dlv_unref(d);
    pthread_mutex_unlock(&dlv_mu);
    dlv_free(f);
}

/* Wraps d's value for its dead-letter channel. */
static int dlv_wrap(dlv *d, hval *out)
{
    size_t n;
    const char *t = hval_text(&d->val, &n);
    json_t *v = json_loadb(t, n, JSON_DECODE_ANY, NULL);
    json_t *w;
    int rc;

    if (!v)
        return -1;
    w = json_pack("{s:s, s:o, s:I, s:s?}", "origin", d->o->name, "value", v,
                  "attempts", (json_int_t)d->attempts, "reason", d->reason);
    if (!w)
        return -1;
    rc = hval_from_json(w, out);
    json_decref(w);
    return rc;
}

/* Sends d's value to its channel's dead-letter channel, or drops it with a
 * log line; then the delivery ends. */
static void dlv_dead_letter(dlv *d)
{
    hchan *h = (hchan *)d->o;
    const char *why = "no dead_letter channel";
    reg_found f;
    hval w;

    if (h->dead_letter) {
        int rc = reg_lookup(h->dead_letter, &hchan_ops, false, NULL, &f);
        if (rc != REG_OK) {
            why = "dead_letter channel missing";
        } else {
            hchan *dl = (hchan *)f.o;
            if (dl->elem != HE_ANY && dl->elem != HE_OBJECT)
                why = "dead_letter channel of another type";
            else if (dlv_wrap(d, &w) != 0)
                why = "out of memory";
            else if ((rc = rt_chan_send(dl->c, &w, RT_POLL)) != 0) {
                hval_free(w);
                why = rc == RT_ESENDCLOSED ? "dead_letter channel closed"
                                           : "dead_letter channel full";
            } else {
                why = NULL;
            }
            obj_release(f.o);
        }
    }
    if (why) {
        size_t n;
        const char *t = hval_text(&d->val, &n);
        log_warn("dead letter dropped: origin=%s attempts=%u reason=%s "
                 "(%s) value=%.*s",
                 d->o->name, d->attempts, d->reason ? d->reason : "-", why,
                 (int)(n > 200 ? 200 : n), t);
        atomic_fetch_add(&dlv_dropped, 1);
    } else {
        atomic_fetch_add(&dlv_dead, 1);
    }
    dlv_finish(d, true);
}

/* Gives d's value back to its channel ahead of the never-delivered ones. */
static void dlv_requeue(dlv *d)
{
    hchan *h = (hchan *)d->o;
    hval v;

    if (atomic_load(&d->o->dropped)) {
        dlv_finish(d, true);
        return;
    }
    size_t n;
    const char *t = hval_text(&d->val, &n);

    if (hval_from_text(t, n, &v) != 0) {
        set_reason(d, "out of memory");
        dlv_dead_letter(d);
        return;
    }
    pthread_mutex_lock(&dlv_mu);
    d->st = DS_QUEUED;
    dlvp_redeliver(d->o, d->seq, d->reason, 0);
    pthread_mutex_unlock(&dlv_mu);
    atomic_fetch_sub(&dlv_inflight, 1);
    atomic_fetch_add(&dlv_redelivered, 1);
    /* From here the channel holds d (as the value's meta): a receiver
     * may take it before this call returns. */
    if (rt_chan_requeue(h->c, &v, d->seq, d, true) != 0) {
        hval_free(v);
        atomic_fetch_add(&dlv_inflight, 1);
        atomic_fetch_sub(&dlv_redelivered, 1);
        set_reason(d, "out of memory");
        dlv_dead_letter(d);
    }
}

/* The one decision for an attempt that ended without an ack (expired, its
 * session ended, nacked at once): dead-letter after the last attempt,
 * else redeliver.  d is out of the table; without dlv_mu. */
static void dlv_decide(dlv *d)
{
    uint32_t max = ((hchan *)d->o)->max_deliver;

    if (max && d->attempts >= max)
        dlv_dead_letter(d);
    else
        dlv_requeue(d);
}

/* The timer: an expiry (in flight) or the end of a nack's delay. */
static void dlv_fire(void *arg)
{
    dlv *d = arg;
    int act = 0;

    pthread_mutex_lock(&dlv_mu);
    int64_t now = rt_now();
    if ((d->st == DS_INFLIGHT || d->st == DS_DELAYED) && now < d->due) {
        /* Early (the timer's clock is coarser than rt_now), or a firing
         * that a re-arm overtook: make sure one comes at due. */
        if (!rt_timer_reset(d->t, d->due - now))
            d->refs++;
    } else if (d->st == DS_INFLIGHT || d->st == DS_DELAYED) {
        act = d->st;
        if (d->st == DS_INFLIGHT) {
            dlv_leave(d);
            set_reason(d, "expired");
        }
        d->st = DS_DONE; /* in transit: no other firing acts */
    }
    dlv *f = dlv_unref(d);
    pthread_mutex_unlock(&dlv_mu);
    dlv_free(f); /* NULL unless d had already ended */
    if (act == DS_INFLIGHT)
        dlv_decide(d);
    else if (act == DS_DELAYED)
        dlv_requeue(d); /* nack checked the attempts */
}

/* ---- the API ---- */

void dlv_hook(void *arg, bool taken, rt_chan_hold_ev *ev)
{
    obj *o = arg;
    dlv *d, *f;

    if (taken) {
        size_t n;
        const char *t = hval_text(ev->elem, &n);
        d = dlv_new(o, ev->seq, t, n);
        pthread_mutex_lock(&dlv_mu);
        if (d)
            list_add(d);
        /* Without a record (no memory) the GET is logged all the same, so
         * the log's buffer stays the channel's; dlv_begin retries. */
        dlvp_taken(o, ev->seq, t, n, ev->from_buf);
        pthread_mutex_unlock(&dlv_mu);
        ev->meta = d;
        return;
    }
    d = ev->meta;
    pthread_mutex_lock(&dlv_mu);
    d->st = DS_DONE;
    list_del(d);
    dlvp_end(o, d->seq, false, NULL);
    f = dlv_unref(d);
    pthread_mutex_unlock(&dlv_mu);
    /* Never the last reference to the channel here: the receiver that
     * took the value holds one. */
    dlv_free(f);
}

int dlv_begin(obj *o, const hval *v, const rt_chan_hold *hold, sess *s,
              int64_t wait_ms, dlv_ref *ref)
{
    hchan *h = (hchan *)o;
    dlv *d = hold->meta;
    size_t n;
    const char *t = hval_text(v, &n);

    pthread_mutex_lock(&dlv_mu);
    if (!d && (d = dlv_new(o, hold->seq, t, n)) != NULL)
        list_add(d);
    if (!d || dlv__tab_add_id(d) != 0) {
        pthread_mutex_unlock(&dlv_mu);
        /* No memory: the value goes back for a later attempt. */
        hval back;
        if (hval_from_text(t, n, &back) != 0 ||
            rt_chan_requeue(h->c, &back, hold->seq, d, true) != 0)
            rt_chan_ack(h->c, hold->seq); /* lost: nothing can hold it */
        return -1;
    }
    d->st = DS_INFLIGHT;
    d->attempts++;
    d->sid = s ? sess_id(s) : 0;
    sess_add(d);
    d->wait_ns = wait_ms * 1000000;
    dlv_arm(d, d->wait_ns);
    /* Every attempt's id and deadline are logged: a cluster's next
     * leader keeps the delivery in flight under them. */
    dlvp_attempt(o, d->seq, d->id, d->attempts, wait_ms);
    ref->id = d->id;
    ref->attempt = d->attempts;
    pthread_mutex_unlock(&dlv_mu);
    atomic_fetch_add(&dlv_inflight, 1);
    /* The session ended as the value was taken: its hook has run or will
     * find d; if it ran before d was in the table, end the attempt now. */
    if (s && !sess_alive(s)) {
        pthread_mutex_lock(&dlv_mu);
        bool mine = d->st == DS_INFLIGHT && d->id == ref->id;
        if (mine) {
            dlv_leave(d);
            dlv_disarm(d);
            set_reason(d, "session ended");
            d->st = DS_DONE;
        }
        pthread_mutex_unlock(&dlv_mu);
        if (mine)
            dlv_decide(d);
    }
    return 0;
}

int dlv_restore_inflight(obj *o, uint64_t seq, uint64_t id, uint32_t attempts,
                         int64_t deadline_ms, const char *text, size_t n,
                         const char *reason)
{
    dlv *d = dlv_new(o, seq, text, n);
    struct timespec ts;
    int64_t left;

    if (!d)
        return -1;
    clock_gettime(CLOCK_REALTIME, &ts);
    left = deadline_ms - ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    d->attempts = attempts;
    d->id = id;
    if (reason && reason[0])
        set_reason(d, reason);
    if (rt_chan_restore_inflight(((hchan *)o)->c, seq) != 0) {
        dlv_free(d);
        return -1;
    }
    pthread_mutex_lock(&dlv_mu);
    if (dlv__tab_find(id) || dlv__tab_add(d) != 0) {
        pthread_mutex_unlock(&dlv_mu);
        /* A clash or no memory: back in the channel rather than lost. */
        rt_chan_ack(((hchan *)o)->c, seq);
        dlv_free(d);
        return dlv_restore(o, seq, attempts, text, n, reason);
    }
    list_add(d);
    d->st = DS_INFLIGHT;
    /* Ids issued from here on stay above the predecessor's. */
    (void)dlv__id_next();
    if (dlv__next_id <= id)
        dlv__next_id = id + 1;
    d->wait_ns = (left > 0 ? left : 0) * 1000000;
    dlv_arm(d, d->wait_ns > 0 ? d->wait_ns : 1);
    pthread_mutex_unlock(&dlv_mu);
    atomic_fetch_add(&dlv_inflight, 1);
    return 0;
}

void dlv_id_floor(uint64_t floor)
{
    pthread_mutex_lock(&dlv_mu);
    if (dlv__next_id < floor)
        dlv__next_id = floor;
    pthread_mutex_unlock(&dlv_mu);
}

int dlv_restore(obj *o, uint64_t seq, uint32_t attempts, const char *text,
                size_t n, const char *reason)
{
    dlv *d = dlv_new(o, seq, text, n);
    hval v;

    if (!d)
        return -1;
    d->attempts = attempts;
    d->st = DS_QUEUED;
    if (reason && reason[0])
        set_reason(d, reason);
    if (hval_from_text(text, n, &v) != 0) {
        dlv_free(d);
        return -1;
    }
    pthread_mutex_lock(&dlv_mu);
    list_add(d);
    pthread_mutex_unlock(&dlv_mu);
    if (rt_chan_requeue(((hchan *)o)->c, &v, seq, d, false) != 0) {
        hval_free(v);
        pthread_mutex_lock(&dlv_mu);
        list_del(d);
        pthread_mutex_unlock(&dlv_mu);
        dlv_free(d);
        return -1;
    }
    return 0;
}

/* Finds o's delivery id in flight and takes it out of the table (dlv_mu
 * held), or NULL. */
static dlv *dlv_claim(obj *o, uint64_t id)
{
    dlv *d = dlv__tab_find(id);

    if (!d || d->o != o || d->st != DS_INFLIGHT)
        return NULL;
    dlv_leave(d);
    dlv_disarm(d);
    return d;
}

int dlv_ack(obj *o, uint64_t id)
{
    pthread_mutex_lock(&dlv_mu);
    dlv *d = dlv_claim(o, id);
    if (d)
        d->st = DS_DONE;
    pthread_mutex_unlock(&dlv_mu);
    if (!d)
        return PROTO_R_NOT_PENDING;
    dlv_finish(d, false);
    return 0;
}

int dlv_nack(obj *o, uint64_t id, int64_t delay_ms, const char *reason)
{
    uint32_t max = ((hchan *)o)->max_deliver;
    bool delayed = false;

    pthread_mutex_lock(&dlv_mu);
    dlv *d = dlv_claim(o, id);
    if (d) {
        set_reason(d, reason ? reason : "nack");
        if (delay_ms > 0 && !(max && d->attempts >= max)) {
            d->st = DS_DELAYED;
            dlv_arm(d, delay_ms * 1000000);
            dlvp_redeliver(o, d->seq, d->reason, delay_ms);
            delayed = true;
        } else {
            d->st = DS_DONE;
        }
    }
    pthread_mutex_unlock(&dlv_mu);
    if (!d)
        return PROTO_R_NOT_PENDING;
    if (!delayed)
        dlv_decide(d);
    return 0;
}

int dlv_touch(obj *o, uint64_t id, int64_t wait_ms, int64_t *used)
{
    pthread_mutex_lock(&dlv_mu);
    dlv *d = dlv__tab_find(id);
    if (!d || d->o != o || d->st != DS_INFLIGHT) {
        pthread_mutex_unlock(&dlv_mu);
        return PROTO_R_NOT_PENDING;
    }
    if (wait_ms >= 0)
        d->wait_ns = wait_ms * 1000000;
    *used = d->wait_ns / 1000000;
    dlv_arm(d, d->wait_ns);
    dlvp_touch(o, d->seq, *used);
    pthread_mutex_unlock(&dlv_mu);
    return 0;
}

int dlv_term(obj *o, uint64_t id, const char *reason)
{
    pthread_mutex_lock(&dlv_mu);
    dlv *d = dlv_claim(o, id);
    if (d) {
        set_reason(d, reason ? reason : "term");
        d->st = DS_DONE;
    }
    pthread_mutex_unlock(&dlv_mu);
    if (!d)
        return PROTO_R_NOT_PENDING;
    dlv_dead_letter(d);
    return 0;
}

/* Takes every delivery of o in flight or waiting out a nack's delay into
 * a list (dlv_mu held); requeued ones are the channel's to drain. */
static dlv *dlv_collect(obj *o, const char *why)
{
    dlv *list = NULL, *next;

    for (dlv *d = ((hchan *)o)->dlvs; d; d = next) {
        next = d->lnext;
        if (d->st != DS_INFLIGHT && d->st != DS_DELAYED)
            continue;
        if (d->st == DS_INFLIGHT)
            dlv_leave(d);
        dlv_disarm(d);
        set_reason(d, why);
        d->st = DS_DONE;
        d->hnext = list;
        list = d;
    }
    return list;
}

void dlv_session_end(sess *s)
{
    uint64_t sid = sess_id(s);
    dlv *list = NULL, *next, *d;

    pthread_mutex_lock(&dlv_mu);
    for (d = dlv_sess[sid % DLV_SBUCKETS]; d; d = next) {
        next = d->snext;
        if (d->sid != sid || d->st != DS_INFLIGHT)
            continue;
        dlv_leave(d);
        dlv_disarm(d);
        set_reason(d, "session ended");
        d->st = DS_DONE;
        d->hnext = list;
        list = d;
    }
    pthread_mutex_unlock(&dlv_mu);
    for (; list; list = next) {
        next = list->hnext;
        dlv_decide(list);
    }
}

void dlv_chan_dropped(obj *o)
{
    dlv *list, *next;

    pthread_mutex_lock(&dlv_mu);
    list = dlv_collect(o, "dropped");
    pthread_mutex_unlock(&dlv_mu);
    for (; list; list = next) {
        next = list->hnext;
        dlv_finish(list, true);
    }
}

/* ---- the snapshot ---- */

typedef struct dlv_snap_one {
    uint64_t seq;
    uint64_t id;         /* in flight: its attempt's id (else 0) */
    int64_t deadline_ms; /* ... and its deadline, on the wall clock */
    uint32_t attempts;
    char *text, *reason;
    size_t tn;
} dlv_snap_one;

struct dlv_snap {
    size_t n;
    bool failed;
    dlv_snap_one v[];
};

/* Returned when the copy could not be made: the snapshot fails. */
static dlv_snap dlv_snap_oom = {0, true};

dlv_snap *dlv_snap_take(obj *o)
{
    hchan *h = (hchan *)o;
    size_t n = 0;
    dlv_snap *s;

    int64_t now_rt;

    pthread_mutex_lock(&dlv_mu);
    now_rt = rt_now();
    for (dlv *d = h->dlvs; d; d = d->lnext)
        n++;
    s = n ? calloc(1, sizeof *s + n * sizeof s->v[0]) : NULL;
    if (n && !s) {
        pthread_mutex_unlock(&dlv_mu);
        return &dlv_snap_oom;
    }
    for (dlv *d = n ? h->dlvs : NULL; d; d = d->lnext) {
        dlv_snap_one *e = &s->v[s->n++];
        e->seq = d->seq;
        e->attempts = d->attempts ? d->attempts : 1;
        /* An attempt in flight keeps its id and deadline: a cluster node
         * restored from this snapshot (a restart, a follower's install,
         * a rebuild) that comes to lead keeps it in flight, as from the
         * log's records; without them it redelivered at once a value a
         * worker still held (test_rebuild_keeps_delivery_in_flight). */
        if (d->st == DS_INFLIGHT && d->id) {
            e->id = d->id;
            e->deadline_ms = dlvp_deadline_ms(d->due - now_rt);
        }
        const char *t = hval_text(&d->val, &e->tn);
        e->text = malloc(e->tn ? e->tn : 1);
        e->reason = d->reason ? strdup(d->reason) : NULL;
        if (!e->text || (d->reason && !e->reason))
            s->failed = true;
        else
            memcpy(e->text, t, e->tn);
    }
    pthread_mutex_unlock(&dlv_mu);
    return s;
}

bool dlv_snap_failed(const dlv_snap *s)
{
    return s && s->failed;
}

int dlv_snap_emit(const dlv_snap *s, obj *o, void *snap, uint64_t lsn)
{
    for (size_t i = 0; s && i < s->n; i++) {
        eff_rec r = {.type = EFF_DLV_INFLIGHT};
        r.u.dlv.name = eff_s(o->name);
        r.u.dlv.id = s->v[i].seq;
        r.u.dlv.prev_id = s->v[i].id;
        r.u.dlv.deadline_ms = s->v[i].deadline_ms;
        r.u.dlv.attempt = s->v[i].attempts;
        r.u.dlv.value = (eff_str){s->v[i].text, s->v[i].tn};
        r.u.dlv.reason = eff_s(s->v[i].reason ? s->v[i].reason : "");
        if (persist_snap_emit(snap, &r, lsn) != 0)
            return -1;
    }
    return 0;
}

void dlv_snap_free(dlv_snap *s)
{
    if (!s || s == &dlv_snap_oom)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].text);
        free(s->v[i].reason);
    }
    free(s);
}

void dlv_stats_get(dlv_stats *st)
{
    st->inflight = atomic_load(&dlv_inflight);
    st->redelivered = atomic_load(&dlv_redelivered);
    st->dead_letters = atomic_load(&dlv_dead);
    st->dropped = atomic_load(&dlv_dropped);
}
