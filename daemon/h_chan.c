/*
 * h_chan.c - the channel family: make, send, recv, close, len, select.
 *
 * A channel object wraps one runtime channel whose elements are hvals
 * (each owns its value's compact text; values are immutable).  Every
 * operation is first tried with RT_POLL on the calling thread; one that
 * must wait is parked on a goroutine with the request's deadline and the
 * session's cancel token.  A value received for a request travels with its
 * answer as a give-back record, so that it returns to the channel if the
 * session is gone before the answer is written.
 */
#include "daemon.h"
#include "persist.h"
#include "hval.h"

#include <stdlib.h>
#include <string.h>

#define HCHAN_MAX_CAP (1u << 24)

typedef enum hchan_elem {
    HE_ANY = 0,
    HE_STRING,
    HE_NUMBER,
    HE_BOOL,
    HE_OBJECT,
    HE_ARRAY,
} hchan_elem;

static const char *const hchan_elem_names[] = {
    "any", "string", "number", "bool", "object", "array",
};

typedef struct hchan {
    obj o;
    rt_chan *c;
    size_t cap;
    hchan_elem elem;
    void *timer;                 /* timer.after/ticker state, or NULL */
    void (*timer_fini)(void *timer);
} hchan;

void hchan_set_timer(obj *o, void *timer, void (*fini)(void *timer))
{
    hchan *h = (hchan *)o;
    h->timer_fini = fini;
    atomic_store_explicit((_Atomic(void *) *)&h->timer, timer,
                          memory_order_release);
}

void *hchan_timer(obj *o)
{
    if (o->ops != &hchan_ops)
        return NULL;
    return atomic_load_explicit((_Atomic(void *) *)&((hchan *)o)->timer,
                                memory_order_acquire);
}

rt_chan *hchan_rt(obj *o)
{
    return ((hchan *)o)->c;
}

static int hchan_elem_parse(const char *s)
{
    if (!s)
        return HE_ANY;
    for (int i = 0; i <= HE_ARRAY; i++)
        if (strcmp(s, hchan_elem_names[i]) == 0)
            return i;
    return -1;
}

/* Returns true when h carries values of JSON type t. */
static bool hchan_type_ok(const hchan *h, json_type t)
{
    switch (h->elem) {
    case HE_ANY: return true;
    case HE_STRING: return t == JSON_STRING;
    case HE_NUMBER: return t == JSON_INTEGER || t == JSON_REAL;
    case HE_BOOL: return t == JSON_TRUE || t == JSON_FALSE;
    case HE_OBJECT: return t == JSON_OBJECT;
    case HE_ARRAY: return t == JSON_ARRAY;
    }
    return false;
}

/* The JSON type of a value given as v, else as the scanner's text t (a
 * plain string or an integer). */
static json_type hchan_text_type(const json_t *v, proto_text t)
{
    return v ? json_typeof(v) : t.p[0] == '"' ? JSON_STRING : JSON_INTEGER;
}

static void hchan_fail_type(dreq *r, obj *o)
{
    dreq_fail(r, PROTO_R_WRONG_TYPE, "channel \"%s\" carries %s values",
              o->name, hchan_elem_names[((hchan *)o)->elem]);
}

/* Receives and drops every buffered value (RT_POLL). */
static void hchan_drain(hchan *h)
{
    hval v;
    bool ok;

    while (rt_chan_recv(h->c, &v, &ok, RT_POLL) == 0 && ok)
        hval_free(v);
}

/* Recovery's make: reg_lookup's arg, a dreq without a method. */
typedef struct hchan_restore {
    size_t cap;
    int elem;
} hchan_restore;

static int hchan_init(obj *o, dreq *r)
{
    hchan *h = (hchan *)o;

    if (!r->m && r->ctx) {
        const hchan_restore *a = r->ctx;
        h->cap = a->cap;
        h->elem = (hchan_elem)a->elem;
    } else if (r->m && strncmp(r->m->name, "timer.", 6) == 0) {
        /* A timer's channel: Go's timer.C has room for one value. */
        h->cap = 1;
        h->elem = HE_NUMBER;
    } else {
        h->cap = (size_t)dreq_int(r, "cap", 0);
        h->elem = (hchan_elem)hchan_elem_parse(dreq_str(r, "type"));
    }
    h->c = rt_chan_make(sizeof(hval), h->cap);
    if (!h->c)
        return -1;
    persist_chan_made(o, h->c, h->cap, hchan_elem_names[h->elem]);
    return 0;
}

static void hchan_fini(obj *o)
{
    hchan *h = (hchan *)o;

    if (h->timer)
        h->timer_fini(h->timer);
    rt_chan_observe(h->c, NULL, NULL);
    /* Closing wakes give-back goroutines still trying to send here. */
    rt_chan_close(h->c);
    hchan_drain(h);
    rt_chan_release(h->c);
}

/* Dropped: close so that every waiter wakes (and sees `dropped`), and
 * discard the buffered values. */
static void hchan_drop(obj *o)
{
    hchan *h = (hchan *)o;
    rt_chan_observe(h->c, NULL, NULL); /* persist_drop logged it all */
    rt_chan_close(h->c);
    hchan_drain(h);
}

/* ------------------------------------------------------------------ */
/* Recovery's builders (persist.h)                                    */
/* ------------------------------------------------------------------ */

int hchan__restore_make(const char *name, size_t cap, const char *elem)
{
    int e = hchan_elem_parse(elem[0] ? elem : "any");
    hchan_restore a = { cap, e < 0 ? 0 : e };
    dreq r = { .ctx = &a };
    reg_found f;

    if (reg_lookup(name, &hchan_ops, true, &r, &f) == REG_OK)
        obj_release(f.o);
    return 0; /* another type holds the name: skipped */
}

/* Returns name's channel (a new reference), or NULL. */
static obj *hchan_restore_find(const char *name)
{
    reg_found f;
    return reg_lookup(name, &hchan_ops, false, NULL, &f) == REG_OK ? f.o
                                                                   : NULL;
}

int hchan__restore_push(const char *name, const char *v, size_t n)
{
    obj *o = hchan_restore_find(name);
    hval hv;
    int rc = 0;

    if (!o)
        return 0;
    if (hval_from_text(v, n, &hv) != 0)
        rc = -1;
    else if (rt_chan_send(((hchan *)o)->c, &hv, RT_POLL) != 0)
        hval_free(hv); /* closed or full: the log disagrees; skipped */
    obj_release(o);
    return rc;
}

int hchan__restore_pop(const char *name, uint64_t count)
{
    obj *o = hchan_restore_find(name);
    hval hv;
    bool ok;

    if (!o)
        return 0;
    for (uint64_t i = 0; i < count; i++)
        if (rt_chan_recv(((hchan *)o)->c, &hv, &ok, RT_POLL) == 0 && ok)
            hval_free(hv);
    obj_release(o);
    return 0;
}

int hchan__restore_close(const char *name)
{
    obj *o = hchan_restore_find(name);

    if (o) {
        rt_chan_close(((hchan *)o)->c);
        obj_release(o);
    }
    return 0;
}

/* A channel's state copied under its lock, for the snapshot. */
typedef struct hchan_copy {
    obj *o;
    uint64_t lsn;
    eff_str *v;
    size_t n, cap;
    bool oom;
} hchan_copy;

static void hchan_copy_one(void *arg, const void *elem)
{
    hchan_copy *c = arg;
    size_t len;
    const char *t;

    if (!elem) {
        c->lsn = atomic_load(&c->o->lsn);
        return;
    }
    if (c->oom)
        return;
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        eff_str *nv = realloc(c->v, cap * sizeof *nv);
        if (!nv) {
            c->oom = true;
            return;
        }
        c->v = nv;
        c->cap = cap;
    }
    t = hval_text(elem, &len);
    char *p = malloc(len ? len : 1);
    if (!p) {
        c->oom = true;
        return;
    }
    memcpy(p, t, len);
    c->v[c->n++] = (eff_str){ p, len };
}

/* obj_ops.snap: make, the values in order, the close; copied in one
 * critical section, emitted without the lock. */
static int hchan_snap(obj *o, void *s)
{
    hchan *h = (hchan *)o;
    hchan_copy c = { .o = o };
    bool closed = rt_chan_each(h->c, hchan_copy_one, &c);
    eff_rec r = { .type = EFF_CHAN_MAKE };
    int rc = c.oom ? -1 : 0;

    r.u.make.name = eff_s(o->name);
    r.u.make.cap = h->cap;
    r.u.make.elem = eff_s(hchan_elem_names[h->elem]);
    if (rc == 0)
        rc = persist_snap_emit(s, &r, c.lsn);
    for (size_t i = 0; i < c.n; i++) {
        if (rc == 0) {
            r = (eff_rec){ .type = EFF_CHAN_PUSH };
            r.u.push.name = eff_s(o->name);
            r.u.push.value = c.v[i];
            rc = persist_snap_emit(s, &r, c.lsn);
        }
        free((void *)c.v[i].p);
    }
    free(c.v);
    if (rc == 0 && closed) {
        r = (eff_rec){ .type = EFF_CHAN_CLOSE };
        r.u.obj.name = eff_s(o->name);
        rc = persist_snap_emit(s, &r, c.lsn);
    }
    return rc;
}

static void hchan_info(obj *o, json_t *into)
{
    hchan *h = (hchan *)o;
    json_object_set_new(into, "len", json_integer((json_int_t)rt_chan_len(h->c)));
    json_object_set_new(into, "cap", json_integer((json_int_t)h->cap));
    json_object_set_new(into, "closed", json_boolean(rt_chan_closed(h->c)));
    json_object_set_new(into, "elem", json_string(hchan_elem_names[h->elem]));
}

const obj_ops hchan_ops = {
    .type = OBJ_CHAN,
    .name = "chan",
    .size = sizeof(hchan),
    .init = hchan_init,
    .fini = hchan_fini,
    .drop = hchan_drop,
    .info = hchan_info,
    .snap = hchan_snap,
};

static void hchan_fail_dropped(dreq *r, obj *o)
{
    dreq_fail(r, PROTO_R_NOT_FOUND, "channel \"%s\" was dropped", o->name);
}

/* ------------------------------------------------------------------ */
/* make                                                               */
/* ------------------------------------------------------------------ */

void h_make(dreq *r)
{
    if (!persist_write_ok(r))
        return; /* the log cannot be written: see persist.h */
    const char *name = dreq_str(r, "name");
    int64_t cap = dreq_int(r, "cap", 0);
    int elem = hchan_elem_parse(dreq_str(r, "type"));
    bool created;
    obj *o;

    if (elem < 0) {
        dreq_fail_params(r, NULL,
                       "invalid params: type must be any, string, number, "
                       "bool, object or array");
        return;
    }
    if (cap > (int64_t)HCHAN_MAX_CAP) {
        dreq_fail(r, PROTO_R_LIMIT, "capacity %lld exceeds %u",
                  (long long)cap, HCHAN_MAX_CAP);
        return;
    }
    o = dreq_obj_make(r, name, &hchan_ops, &created);
    if (!o)
        return;
    hchan *h = (hchan *)o;
    /* make is idempotent, so a channel closed by an earlier run of a
     * script is found, not made afresh: say so, or the next send fails
     * with no hint why (drop starts over). */
    bool closed = !created && rt_chan_closed(h->c);
    if (!created && (h->cap != (size_t)cap || (int)h->elem != elem))
        dreq_fail_data(r, PROTO_R_EXISTS,
                       closed ? json_pack("{s:b}", "closed", 1) : NULL,
                       "channel \"%s\" exists with cap %zu and type %s%s",
                       name, h->cap, hchan_elem_names[h->elem],
                       closed ? ", and is closed" : "");
    else if (closed)
        dreq_ok(r, json_pack("{s:b}", "closed", 1));
    else
        dreq_ok(r, NULL);
    obj_release(o);
}

obj *hchan_make_for_timer(dreq *r, const char *name, size_t cap)
{
    bool created;
    obj *o = dreq_obj_make(r, name, &hchan_ops, &created);

    if (o && !created) {
        obj_release(o);
        dreq_fail(r, PROTO_R_EXISTS, "\"%s\" exists", name);
        return NULL;
    }
    (void)cap; /* hchan_init gave timer channels cap 1 */
    return o;
}

/* ------------------------------------------------------------------ */
/* send, recv                                                         */
/* ------------------------------------------------------------------ */

/* Answers a finished channel operation. */
static void hchan_finish(dreq *r, obj *o, int rc)
{
    if (atomic_load(&o->dropped) &&
        (rc == RT_ESENDCLOSED || rc == RT_ECLOSECLOSED))
        hchan_fail_dropped(r, o);
    else if (rc == 0)
        dreq_ok(r, NULL);
    else
        dreq_fail_rt(r, rc);
}

/* A parked send's state: the value goes with it, already made. */
typedef struct hsendw {
    obj *o;
    hval v;
} hsendw;

static void hchan_send_wait(dreq *r)
{
    hsendw *w = r->ctx;
    obj *o = w->o;
    hchan *h = (hchan *)o;
    hval v = w->v;
    int rc;

    free(w);
    r->ctx = o;
    dreq_wait_begin(r, o, "chan send");
    rc = dreq_cancelled(r) ? RT_ECANCELED : rt_chan_send(h->c, &v, r->dl);
    dreq_wait_end(r);
    if (rc != 0)
        hval_free(v);
    hchan_finish(r, o, rc);
    obj_release(o);
}

/* Waits for r on o's channel as an await, not a goroutine: no stack page
 * per waiting connection, and the party that completes the wait (a
 * sender for a receive, a receiver for a send) answers r in its own call.
 * v: the value to send (stolen), NULL for a receive.  r->ctx = o. */
static void hchan_await(dreq *r, obj *o, rt_await_fn done,
                        const char *reason, const hval *v)
{
    rt_await *a = rt_await_new(sizeof(hval), done, r);
    rt_chan *c = ((hchan *)o)->c;
    rt_cancel *tok;
    int rc;

    if (!a) {
        if (v)
            hval_free(*v);
        dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
        obj_release(o);
        return;
    }
    r->ctx = o;
    if (v)
        *(hval *)rt_await_elem(a) = *v;
    tok = dreq_await_begin(r, o, reason);
    rc = v ? rt_chan_send_await(c, a, r->dl, tok)
           : rt_chan_recv_await(c, a, r->dl, tok);
    if (rc == RT_EINPROGRESS)
        return; /* r and a now belong to done */
    done(a, rc, r);
}

/* A send await's completion (any thread). */
static void hchan_send_done(rt_await *a, int rc, void *arg)
{
    dreq *r = arg;
    obj *o = r->ctx;

    if (rc != 0) /* not handed over: the value is still ours */
        hval_free(*(hval *)rt_await_elem(a));
    rt_await_free(a);
    dreq_await_end(r);
    hchan_finish(r, o, rc);
    obj_release(o);
}

void h_send(dreq *r)
{
    if (!persist_write_ok(r))
        return; /* the log cannot be written: see persist.h */
    obj *o = dreq_obj(r, dreq_str(r, "name"), &hchan_ops, false);
    hchan *h = (hchan *)o;
    proto_text t;
    json_t *jv;
    hval v;
    int rc;

    if (!o)
        return;
    /* The scanner's text is kept as it is; else the value is dumped. */
    t = dreq_take_text(r, "value");
    jv = t.p ? NULL : dreq_param(r, "value");
    if (!hchan_type_ok(h, hchan_text_type(jv, t))) {
        hchan_fail_type(r, o);
        obj_release(o);
        return;
    }
    if ((jv ? hval_from_json(jv, &v) : hval_from_text(t.p, t.n, &v)) != 0) {
        dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
        obj_release(o);
        return;
    }
    rc = rt_chan_send(h->c, &v, RT_POLL);
    if (rc == RT_EAGAIN && r->dl != RT_POLL) {
        r->ctx = o;
        if (r->s) {
            hchan_await(r, o, hchan_send_done, "chan send", &v);
            return;
        }
        hsendw *w = malloc(sizeof *w);
        if (!w) {
            hval_free(v);
            dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
            obj_release(o);
            return;
        }
        w->o = o;
        w->v = v;
        r->ctx = w;
        if (dreq_park(r, hchan_send_wait) != 0) {
            hval_free(w->v);
            obj_release(w->o);
            free(w);
        }
        return;
    }
    if (rc != 0)
        hval_free(v);
    hchan_finish(r, o, rc);
    obj_release(o);
}

/* Answers a finished receive of v (stolen when ok) / ok. */
static void hchan_recv_finish(dreq *r, obj *o, int rc, hval v, bool ok)
{
    hchan *h = (hchan *)o;

    if (rc != 0) {
        dreq_fail_rt(r, rc);
    } else if (!ok && atomic_load(&o->dropped)) {
        hchan_fail_dropped(r, o);
    } else if (!ok) {
        dreq_ok_recv(r, -1, NULL, NULL);
    } else {
        /* The text is written before the give-back can run. */
        gback *gb = gback_new(h->c, v);
        dreq_ok_recv(r, -1, &v, gb);
        if (!gb)
            hval_free(v);
    }
}

static void hchan_recv_wait(dreq *r)
{
    obj *o = r->ctx;
    hchan *h = (hchan *)o;
    hval v = { 0 };
    bool ok = false;
    int rc;

    dreq_wait_begin(r, o, "chan receive");
    rc = dreq_cancelled(r) ? RT_ECANCELED
                           : rt_chan_recv(h->c, &v, &ok, r->dl);
    dreq_wait_end(r);
    hchan_recv_finish(r, o, rc, v, ok);
    obj_release(o);
}

/* An await's completion (any thread): the value, the close, the deadline
 * or the session's end. */
static void hchan_recv_done(rt_await *a, int rc, void *arg)
{
    dreq *r = arg;
    obj *o = r->ctx;
    hval v = { 0 };
    bool ok = rc == 0 && rt_await_ok(a);

    if (ok)
        v = *(hval *)rt_await_elem(a);

    rt_await_free(a);
    dreq_await_end(r);
    hchan_recv_finish(r, o, rc, v, ok);
    obj_release(o);
}

void h_recv(dreq *r)
{
    if (!persist_write_ok(r))
        return; /* the log cannot be written: see persist.h */
    obj *o = dreq_obj(r, dreq_str(r, "name"), &hchan_ops, false);
    hval v = { 0 };
    bool ok = false;
    int rc;

    if (!o)
        return;
    rc = rt_chan_recv(((hchan *)o)->c, &v, &ok, RT_POLL);
    if (rc == RT_EAGAIN && r->dl != RT_POLL) {
        if (r->s) {
            hchan_await(r, o, hchan_recv_done, "chan receive", NULL);
            return;
        }
        r->ctx = o;
        if (dreq_park(r, hchan_recv_wait) != 0)
            obj_release(o);
        return;
    }
    hchan_recv_finish(r, o, rc, v, ok);
    obj_release(o);
}

/* ------------------------------------------------------------------ */
/* close, len                                                         */
/* ------------------------------------------------------------------ */

void h_close(dreq *r)
{
    if (!persist_write_ok(r))
        return; /* the log cannot be written: see persist.h */
    obj *o = dreq_obj(r, dreq_str(r, "name"), &hchan_ops, false);

    if (!o)
        return;
    hchan_finish(r, o, rt_chan_close(((hchan *)o)->c));
    obj_release(o);
}

void h_len(dreq *r)
{
    obj *o = dreq_obj(r, dreq_str(r, "name"), &hchan_ops, false);
    hchan *h = (hchan *)o;

    if (!o)
        return;
    dreq_ok(r, json_pack("{s:I, s:I}", "len", (json_int_t)rt_chan_len(h->c),
                         "cap", (json_int_t)h->cap));
    obj_release(o);
}

/* ------------------------------------------------------------------ */
/* select                                                             */
/* ------------------------------------------------------------------ */

typedef struct hsel {
    size_t n;
    obj **objs;              /* one reference per case */
    hval *vals;              /* send: owned value; recv: received value */
    rt_select_case *cases;
} hsel;

static void hsel_free(hsel *s, int keep)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->cases[i].dir == RT_SELECT_SEND && (int)i != keep)
            hval_free(s->vals[i]);
        obj_release(s->objs[i]);
    }
    free(s->objs);
    free(s->vals);
    free(s->cases);
    free(s);
}

/* Answers a finished select; rc is its return, chosen the index. */
static void hsel_finish(dreq *r, hsel *s, int rc, int chosen)
{
    if (rc >= 0) {
        size_t i = (size_t)rc;
        if (s->cases[i].dir == RT_SELECT_SEND) {
            hsel_free(s, rc); /* the value now belongs to the channel */
            dreq_ok_index(r, rc);
            return;
        }
        obj *o = s->objs[i];
        if (!s->cases[i].ok && atomic_load(&o->dropped)) {
            dreq_fail_data(r, PROTO_R_NOT_FOUND,
                           json_pack("{s:i}", "index", rc),
                           "channel \"%s\" was dropped", o->name);
        } else if (!s->cases[i].ok) {
            dreq_ok_recv(r, rc, NULL, NULL);
        } else {
            hval v = s->vals[i];
            gback *gb = gback_new(((hchan *)o)->c, v);
            dreq_ok_recv(r, rc, &v, gb);
            if (!gb)
                hval_free(v);
        }
        hsel_free(s, -1);
        return;
    }
    if (rc == RT_ESENDCLOSED) {
        obj *o = s->objs[chosen];
        if (atomic_load(&o->dropped))
            dreq_fail_data(r, PROTO_R_NOT_FOUND,
                           json_pack("{s:i}", "index", chosen),
                           "channel \"%s\" was dropped", o->name);
        else
            dreq_fail_data(r, PROTO_R_CLOSED,
                           json_pack("{s:i}", "index", chosen), "%s",
                           rt_strerror(rc));
    } else {
        dreq_fail_rt(r, rc);
    }
    hsel_free(s, -1);
}

static void hsel_wait(dreq *r)
{
    hsel *s = r->ctx;
    int chosen = -1, rc;

    /* Listed under its first channel for runtime.dump. */
    dreq_wait_begin(r, s->objs[0], "select");
    rc = dreq_cancelled(r) ? RT_ECANCELED
                           : rt_select(s->cases, s->n, r->dl, &chosen);
    dreq_wait_end(r);
    hsel_finish(r, s, rc, chosen);
}

/* Adds case i ({"recv": name} or, with send, {"send": name, "value":
 * val}, val as JSON or else as text) to s, or fails r and returns -1. */
static int hsel_case(dreq *r, hsel *s, size_t i, json_t *name, bool send,
                     json_t *val, proto_text text)
{
    obj *o;

    if (!json_is_string(name) ||
        !proto_name_valid(json_string_value(name), json_string_length(name))) {
        dreq_fail_params(r, json_pack("{s:i}", "index", (int)i),
                         "invalid params: case %zu must be {\"recv\":name}"
                         " or {\"send\":name,\"value\":v}", i);
        return -1;
    }
    o = dreq_obj(r, json_string_value(name), &hchan_ops, false);
    if (!o)
        return -1;
    s->objs[i] = o;
    s->n = i + 1;
    if (send) {
        s->cases[i].dir = RT_SELECT_RECV; /* nothing to free yet */
        if (!hchan_type_ok((hchan *)o, hchan_text_type(val, text))) {
            hchan_fail_type(r, o);
            return -1;
        }
        if ((val ? hval_from_json(val, &s->vals[i])
                 : hval_from_text(text.p, text.n, &s->vals[i])) != 0) {
            dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
            return -1;
        }
        s->cases[i].dir = RT_SELECT_SEND;
    } else {
        s->cases[i].dir = RT_SELECT_RECV;
    }
    s->cases[i].chan = ((hchan *)o)->c;
    s->cases[i].elem = &s->vals[i];
    return 0;
}

/* Reads the cases of r into a new hsel, or fails r and returns NULL:
 * from the scanner's cases when it read them, else from the array of
 * objects (the same checks, in the same order, so either way a request
 * gets the same answer). */
static hsel *hsel_parse(dreq *r)
{
    json_t *cases = r->cases ? NULL : dreq_param(r, "cases"), *c;
    size_t n = r->cases ? r->ncases : json_array_size(cases), i;
    hsel *s;

    if (n > (size_t)srv_conf.max_select) {
        dreq_fail(r, PROTO_R_LIMIT, "select of %zu cases exceeds %d", n,
                  srv_conf.max_select);
        return NULL;
    }
    s = calloc(1, sizeof *s);
    if (!s)
        goto out_oom;
    s->objs = calloc(n ? n : 1, sizeof *s->objs);
    s->vals = calloc(n ? n : 1, sizeof *s->vals);
    s->cases = calloc(n ? n : 1, sizeof *s->cases);
    if (!s->objs || !s->vals || !s->cases)
        goto out_free;
    if (r->cases) {
        for (i = 0; i < n; i++)
            if (hsel_case(r, s, i, r->cases[i].name,
                          r->cases[i].value || r->cases[i].text.p,
                          r->cases[i].value, r->cases[i].text) != 0)
                goto out_partial;
        return s;
    }
    json_array_foreach(cases, i, c) {
        json_t *recv = json_object_get(c, "recv");
        json_t *send = json_object_get(c, "send");
        json_t *val = json_object_get(c, "value");
        size_t want = recv ? 1 : 2;

        if (!json_is_object(c) || (recv && send) || !(recv || send) ||
            (send && !val) || (recv && val) || json_object_size(c) != want) {
            dreq_fail_params(r,
                           json_pack("{s:i}", "index", (int)i),
                           "invalid params: case %zu must be {\"recv\":name}"
                           " or {\"send\":name,\"value\":v}", i);
            goto out_partial;
        }
        if (hsel_case(r, s, i, recv ? recv : send, send != NULL, val,
                      (proto_text){ NULL, 0 }) != 0)
            goto out_partial;
    }
    return s;

out_partial:
    hsel_free(s, -1);
    return NULL;
out_free:
    free(s->objs);
    free(s->vals);
    free(s->cases);
    free(s);
out_oom:
    dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
    return NULL;
}

void h_select(dreq *r)
{
    if (!persist_write_ok(r))
        return; /* the log cannot be written: see persist.h */
    json_t *dflt = dreq_param(r, "default");
    bool has_default = json_is_true(dflt);
    int chosen = -1, rc;
    hsel *s = hsel_parse(r);

    if (!s)
        return;
    if (s->n == 0 && !has_default && r->dl == RT_FOREVER) {
        /* Go's empty select blocks forever: refuse instead of parking. */
        hsel_free(s, -1);
        dreq_fail(r, PROTO_R_MISUSE,
                  "select with no cases and no default blocks forever");
        return;
    }
    rc = s->n ? rt_select(s->cases, s->n, RT_POLL, &chosen) : RT_EAGAIN;
    if (rc == RT_EAGAIN) {
        if (has_default) {
            hsel_free(s, -1);
            dreq_ok_index(r, -1);
            return;
        }
        if (r->dl != RT_POLL && s->n) {
            r->ctx = s;
            if (dreq_park(r, hsel_wait) != 0)
                hsel_free(s, -1);
            return;
        }
    }
    hsel_finish(r, s, rc, chosen);
}
