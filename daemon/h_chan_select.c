/*
 * h_chan_select.c - chan.select: reading its cases, waiting on them,
 * answering the case chosen.
 */
#include "daemon.h"
#include "h_chan_internal.h"
#include "persist.h"
#include "hval.h"

#include <stdlib.h>
#include <string.h>

typedef struct hsel {
    size_t n;
    obj **objs; /* one reference per case */
    hval *vals; /* send: owned value; recv: received value */
    rt_select_case *cases;
    int64_t *waits; /* recv with ack: its ack_wait_ms */
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
    free(s->waits);
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
        } else if (s->cases[i].ack) {
            hchan__answer_ack(r, o, rc, s->vals[i], &s->cases[i].hold,
                              s->waits[i]);
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
                         " or {\"send\":name,\"value\":v}",
                         i);
        return -1;
    }
    o = dreq_obj(r, json_string_value(name), &hchan_ops, false);
    if (!o)
        return -1;
    s->objs[i] = o;
    s->n = i + 1;
    if (send) {
        s->cases[i].dir = RT_SELECT_RECV; /* nothing to free yet */
        if (!hchan__type_ok((hchan *)o, hchan__text_type(val, text))) {
            hchan__fail_type(r, o);
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
    s->waits = calloc(n ? n : 1, sizeof *s->waits);
    if (!s->objs || !s->vals || !s->cases || !s->waits)
        goto out_free;
    if (r->cases) {
        for (i = 0; i < n; i++)
            if (hsel_case(r, s, i, r->cases[i].name,
                          r->cases[i].value || r->cases[i].text.p,
                          r->cases[i].value, r->cases[i].text) != 0)
                goto out_partial;
        return s;
    }
    json_array_foreach(cases, i, c)
    {
        json_t *recv = json_object_get(c, "recv");
        json_t *send = json_object_get(c, "send");
        json_t *val = json_object_get(c, "value");
        json_t *ack = json_object_get(c, "ack");
        json_t *wait = json_object_get(c, "ack_wait_ms");
        size_t want = recv ? 1 + (ack != NULL) + (wait != NULL) : 2;

        if (!json_is_object(c) || (recv && send) || !(recv || send) ||
            (send && !val) || (recv && val) || json_object_size(c) != want ||
            (ack && !json_is_boolean(ack)) ||
            (wait && (!json_is_integer(wait) || !json_is_true(ack)))) {
            dreq_fail_params(r, json_pack("{s:i}", "index", (int)i),
                             "invalid params: case %zu must be {\"recv\":name"
                             "[,\"ack\":true[,\"ack_wait_ms\":n]]}"
                             " or {\"send\":name,\"value\":v}",
                             i);
            goto out_partial;
        }
        if (hsel_case(r, s, i, recv ? recv : send, send != NULL, val,
                      (proto_text){NULL, 0}) != 0)
            goto out_partial;
        if (json_is_true(ack)) {
            if (hchan__ack_refused(r) ||
                (s->waits[i] = hchan__ack_wait(r, wait)) < 0)
                goto out_partial;
            s->cases[i].ack = true;
        }
    }
    return s;

out_partial:
    hsel_free(s, -1);
    return NULL;
out_free:
    free(s->objs);
    free(s->vals);
    free(s->cases);
    free(s->waits);
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
