/*
 * h_chan_obj.c - the channel object: its type and ops (init, fini, drop,
 * info, snapshot), recovery's builders (persist.h), the element types and
 * make.  A channel object wraps one runtime channel whose elements are
 * hvals (each owns its value's compact text; values are immutable).
 */
#include "daemon.h"
#include "dlv.h"
#include "crc32c.h"
#include "h_chan_internal.h"
#include "persist.h"
#include "hval.h"
#include "h_timer_internal.h"

#include <stdlib.h>
#include <string.h>

#define HCHAN_MAX_CAP (1u << 24)

static const char *const hchan_elem_names[] = {
    "any", "string", "number", "bool", "object", "array",
};

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
bool hchan__type_ok(const hchan *h, json_type t)
{
    switch (h->elem) {
    case HE_ANY:
        return true;
    case HE_STRING:
        return t == JSON_STRING;
    case HE_NUMBER:
        return t == JSON_INTEGER || t == JSON_REAL;
    case HE_BOOL:
        return t == JSON_TRUE || t == JSON_FALSE;
    case HE_OBJECT:
        return t == JSON_OBJECT;
    case HE_ARRAY:
        return t == JSON_ARRAY;
    }
    return false;
}

/* The JSON type of a value given as v, else as the scanner's text t (a
 * plain string or an integer). */
json_type hchan__text_type(const json_t *v, proto_text t)
{
    return v ? json_typeof(v) : t.p[0] == '"' ? JSON_STRING : JSON_INTEGER;
}

void hchan__fail_type(dreq *r, obj *o)
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
    uint32_t max_deliver;
    const char *dead_letter; /* "" for none */
} hchan_restore;

static int hchan_init(obj *o, dreq *r)
{
    hchan *h = (hchan *)o;

    if (!r->m && r->ctx) {
        const hchan_restore *a = r->ctx;
        h->cap = a->cap;
        h->elem = (hchan_elem)a->elem;
        h->max_deliver = a->max_deliver;
        if (a->dead_letter[0] && !(h->dead_letter = strdup(a->dead_letter)))
            return -1;
    } else if (r->m && strncmp(r->m->name, "timer.", 6) == 0) {
        /* A timer's channel: Go's timer.C has room for one value. */
        h->cap = 1;
        h->elem = HE_NUMBER;
    } else {
        h->cap = (size_t)dreq_int(r, "cap", 0);
        h->elem = (hchan_elem)hchan_elem_parse(dreq_str(r, "type"));
        h->max_deliver = (uint32_t)dreq_int(r, "max_deliver", 0);
        if (dreq_str(r, "dead_letter") &&
            !(h->dead_letter = strdup(dreq_str(r, "dead_letter"))))
            return -1;
    }
    h->c = rt_chan_make(sizeof(hval), h->cap);
    if (!h->c) {
        free(h->dead_letter);
        return -1;
    }
    rt_chan_set_hold_hook(h->c, dlv_hook, o);
    persist_chan_made(o, h->c, h->cap, hchan_elem_names[h->elem],
                      h->max_deliver, h->dead_letter);
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
    free(h->dead_letter);
}

/* Dropped: close so that every waiter wakes (and sees `dropped`), and
 * discard the buffered values. */
static void hchan_drop(obj *o)
{
    hchan *h = (hchan *)o;
    rt_chan_observe(h->c, NULL, NULL); /* persist_drop logged it all */
    rt_chan_close(h->c);
    dlv_chan_dropped(o); /* in-flight values end, held senders complete */
    hchan_drain(h);
}

/* ------------------------------------------------------------------ */
/* Recovery's builders (persist.h)                                    */
/* ------------------------------------------------------------------ */

int hchan__restore_make(const char *name, size_t cap, const char *elem)
{
    return hchan__restore_make_dlv(name, cap, elem, 0, "");
}

int hchan__restore_make_dlv(const char *name, size_t cap, const char *elem,
                            uint32_t max_deliver, const char *dead_letter)
{
    int e = hchan_elem_parse(elem[0] ? elem : "any");
    hchan_restore a = {cap, e < 0 ? 0 : e, max_deliver, dead_letter};
    dreq r = {.ctx = &a};
    reg_found f;

    if (reg_lookup(name, &hchan_ops, true, &r, &f) == REG_OK)
        obj_release(f.o);
    return 0; /* another type holds the name: skipped */
}

/* Returns name's channel (a new reference), or NULL. */
static obj *hchan_restore_find(const char *name)
{
    reg_found f;
    return reg_lookup(name, &hchan_ops, false, NULL, &f) == REG_OK ? f.o : NULL;
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

uint64_t hchan__text_check(const char *text, size_t n)
{
    return (1ull << 32) | crc32c(text, n);
}

uint64_t hchan__value_check(const void *elem)
{
    size_t n;
    const char *t = hval_text(elem, &n);

    return hchan__text_check(t, n);
}

int hchan__restore_pop(const char *name, uint64_t count, uint64_t check)
{
    obj *o = hchan_restore_find(name);
    uint64_t got = 0;
    hval hv;
    bool ok;

    if (!o)
        return 0;
    for (uint64_t i = 0; i < count; i++)
        if (rt_chan_recv(((hchan *)o)->c, &hv, &ok, RT_POLL) == 0 && ok) {
            if (check)
                got = hchan__value_check(&hv);
            hval_free(hv);
        }
    obj_release(o);
    if (check && count == 1 && got != check) {
        /* This node's queue is not the one the log describes: say so,
         * and in a cluster stop applying (raft counts an FSM error),
         * rather than serve a drifted queue later as its leader. */
        if (got)
            log_error("state diverged from the log: chan \"%s\" popped a "
                      "value other than the log's (CRC-32C %08x, the log's "
                      "%08x)",
                      name, (unsigned)got, (unsigned)check);
        else
            log_error("state diverged from the log: chan \"%s\" had no "
                      "value to pop where the log pops one",
                      name);
        return persist_clustered() ? -1 : 0;
    }
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
    dlv_snap *dlvs; /* its deliveries, copied in the same section */
} hchan_copy;

static void hchan_copy_one(void *arg, const void *elem)
{
    hchan_copy *c = arg;
    size_t len;
    const char *t;

    if (!elem) {
        c->dlvs = dlv_snap_take(c->o); /* before the LSN: see dlv.h */
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
    c->v[c->n++] = (eff_str){p, len};
}

/* obj_ops.snap: make, the values in order, the close; copied in one
 * critical section, emitted without the lock. */
static int hchan_snap(obj *o, void *s)
{
    hchan *h = (hchan *)o;
    hchan_copy c = {.o = o};
    bool closed = rt_chan_each(h->c, hchan_copy_one, &c);
    eff_rec r = {.type = EFF_CHAN_MAKE};
    int rc = c.oom ? -1 : 0;

    r.u.make.name = eff_s(o->name);
    r.u.make.cap = h->cap;
    r.u.make.elem = eff_s(hchan_elem_names[h->elem]);
    r.u.make.max_deliver = h->max_deliver;
    r.u.make.dead_letter = eff_s(h->dead_letter ? h->dead_letter : "");
    if (c.dlvs && dlv_snap_failed(c.dlvs))
        rc = -1;
    if (rc == 0)
        rc = persist_snap_emit(s, &r, c.lsn);
    for (size_t i = 0; i < c.n; i++) {
        if (rc == 0) {
            r = (eff_rec){.type = EFF_CHAN_PUSH};
            r.u.push.name = eff_s(o->name);
            r.u.push.value = c.v[i];
            rc = persist_snap_emit(s, &r, c.lsn);
        }
        free((void *)c.v[i].p);
    }
    free(c.v);
    if (rc == 0)
        rc = dlv_snap_emit(c.dlvs, o, s, c.lsn);
    dlv_snap_free(c.dlvs);
    if (rc == 0 && closed) {
        r = (eff_rec){.type = EFF_CHAN_CLOSE};
        r.u.obj.name = eff_s(o->name);
        rc = persist_snap_emit(s, &r, c.lsn);
    }
    void *ht = hchan_timer(o);
    if (rc == 0 && ht) /* after its channel, which it needs */
        rc = htimer__snap(ht, s);
    return rc;
}

static void hchan_info(obj *o, json_t *into)
{
    hchan *h = (hchan *)o;
    json_object_set_new(into, "len",
                        json_integer((json_int_t)rt_chan_len(h->c)));
    json_object_set_new(into, "cap", json_integer((json_int_t)h->cap));
    json_object_set_new(into, "closed", json_boolean(rt_chan_closed(h->c)));
    json_object_set_new(into, "elem", json_string(hchan_elem_names[h->elem]));
    json_object_set_new(into, "inflight",
                        json_integer((json_int_t)rt_chan_inflight(h->c)));
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

void hchan__fail_dropped(dreq *r, obj *o)
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
    int64_t maxd = dreq_int(r, "max_deliver", 0);
    const char *dl = dreq_str(r, "dead_letter");
    bool created;
    obj *o;

    if (dreq_param(r, "max_deliver") && (maxd < 1 || maxd > 1000000)) {
        dreq_fail_params(r, NULL,
                         "invalid params: max_deliver must be 1..1000000");
        return;
    }
    if (dl && strcmp(dl, name) == 0) {
        dreq_fail_params(r, NULL,
                         "invalid params: a channel cannot be its own "
                         "dead_letter");
        return;
    }

    if (elem < 0) {
        dreq_fail_params(r, NULL,
                         "invalid params: type must be any, string, number, "
                         "bool, object or array");
        return;
    }
    if (cap > (int64_t)HCHAN_MAX_CAP) {
        dreq_fail(r, PROTO_R_LIMIT, "capacity %lld exceeds %u", (long long)cap,
                  HCHAN_MAX_CAP);
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
        dreq_fail_data(
            r, PROTO_R_EXISTS, closed ? json_pack("{s:b}", "closed", 1) : NULL,
            "channel \"%s\" exists with cap %zu and type %s%s", name, h->cap,
            hchan_elem_names[h->elem], closed ? ", and is closed" : "");
    else if (!created &&
             (h->max_deliver != (uint32_t)maxd ||
              strcmp(h->dead_letter ? h->dead_letter : "", dl ? dl : "")))
        dreq_fail(r, PROTO_R_EXISTS,
                  "channel \"%s\" exists with max_deliver %u and dead_letter "
                  "\"%s\"",
                  name, h->max_deliver, h->dead_letter ? h->dead_letter : "");
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
