/*
 * h_chan.c - the channel operations: send, recv, close, len.
 *
 * Every operation is first tried with RT_POLL on the calling thread; one
 * that must wait is parked on a goroutine with the request's deadline and
 * the session's cancel token.  A value received for a request travels
 * with its answer as a give-back record, so that it returns to the channel
 * if the session is gone before the answer is written.  recv with ack is
 * h_ack.c's.
 */
#include "daemon.h"
#include "h_chan_internal.h"
#include "persist.h"
#include "hval.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* send, recv                                                         */
/* ------------------------------------------------------------------ */

/* Answers a finished channel operation. */
static void hchan_finish(dreq *r, obj *o, int rc)
{
    if (atomic_load(&o->dropped) &&
        (rc == RT_ESENDCLOSED || rc == RT_ECLOSECLOSED))
        hchan__fail_dropped(r, o);
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
static void hchan_await(dreq *r, obj *o, rt_await_fn done, const char *reason,
                        const hval *v)
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
    if (!hchan__type_ok(h, hchan__text_type(jv, t))) {
        hchan__fail_type(r, o);
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
        hchan__fail_dropped(r, o);
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
    hval v = {0};
    bool ok = false;
    int rc;

    dreq_wait_begin(r, o, "chan receive");
    rc = dreq_cancelled(r) ? RT_ECANCELED : rt_chan_recv(h->c, &v, &ok, r->dl);
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
    hval v = {0};
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
    hval v = {0};
    bool ok = false;
    int rc;

    if (!o)
        return;
    if (json_is_true(dreq_param(r, "ack"))) {
        hchan__recv_ack(r, o);
        return;
    }
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
    dreq_ok(r,
            json_pack("{s:I, s:I, s:I}", "len", (json_int_t)rt_chan_len(h->c),
                      "cap", (json_int_t)h->cap, "inflight",
                      (json_int_t)rt_chan_inflight(h->c)));
    obj_release(o);
}
