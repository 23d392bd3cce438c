/*
 * h_ack.c - acknowledged delivery over the wire: recv with ack (tried at
 * once, else an await), the answer of an acknowledged receive (recv and
 * select), and ack, nack, touch, term.  The deliveries themselves are
 * dlv.c's.
 */
#include "dlv.h"
#include "h_chan_internal.h"
#include "persist.h"
#include "hval.h"

#include <string.h>

/* Fails r with misuse and returns true when nobody could acknowledge what
 * it receives: a notification, or a request detached from any session. */
bool hchan__ack_refused(dreq *r)
{
    if (r->id && r->s)
        return false;
    dreq_fail(r, PROTO_R_MISUSE,
              "an acknowledged receive needs a session to ack it (not a "
              "notification, go or timer.afterfunc)");
    return true;
}

/* Returns ack_wait_ms of params (or of a select case's v), or -1 after
 * failing r. */
int64_t hchan__ack_wait(dreq *r, const json_t *v)
{
    int64_t ms = json_is_integer(v) ? json_integer_value(v) : DLV_ACK_WAIT_MS;

    if (ms < 1 || ms > PROTO_MAX_MS) {
        dreq_fail_params(r, NULL,
                         "invalid params: ack_wait_ms must be "
                         "1..10^12");
        return -1;
    }
    return ms;
}

void hchan__answer_ack(dreq *r, obj *o, int index, hval v,
                       const rt_chan_hold *hold, int64_t wait_ms)
{
    dlv_ref ref;

    if (dlv_begin(o, &v, hold, r->s, wait_ms, &ref) != 0) {
        hval_free(v);
        dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
        return;
    }
    dreq_ok_recv_dlv(r, index, &v, ref.id, ref.attempt);
    hval_free(v);
}

/* Answers a finished acknowledged receive. */
static void recv_ack_finish(dreq *r, obj *o, int rc, hval v, bool ok,
                            const rt_chan_hold *hold)
{
    if (rc != 0)
        dreq_fail_rt(r, rc);
    else if (!ok && atomic_load(&o->dropped))
        hchan__fail_dropped(r, o);
    else if (!ok)
        dreq_ok_recv(r, -1, NULL, NULL);
    else
        hchan__answer_ack(r, o, -1, v, hold,
                          dreq_int(r, "ack_wait_ms", DLV_ACK_WAIT_MS));
}

/* The await's completion (any thread). */
static void recv_ack_done(rt_await *a, int rc, void *arg)
{
    dreq *r = arg;
    obj *o = r->ctx;
    hval v = {0};
    bool ok = rc == 0 && rt_await_ok(a);
    rt_chan_hold hold = rt_await_hold(a);

    if (ok)
        v = *(hval *)rt_await_elem(a);
    rt_await_free(a);
    dreq_await_end(r);
    recv_ack_finish(r, o, rc, v, ok, &hold);
    obj_release(o);
}

void hchan__recv_ack(dreq *r, obj *o)
{
    rt_chan *c = ((hchan *)o)->c;
    rt_chan_hold hold = {0, NULL};
    hval v = {0};
    bool ok = false;
    int rc;

    if (hchan__ack_refused(r) ||
        hchan__ack_wait(r, dreq_param(r, "ack_wait_ms")) < 0) {
        obj_release(o);
        return;
    }
    rc = rt_chan_recv_ack(c, &v, &ok, &hold, RT_POLL);
    if (rc == RT_EAGAIN && r->dl != RT_POLL) {
        rt_await *a = rt_await_new(sizeof(hval), recv_ack_done, r);
        if (!a) {
            dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
            obj_release(o);
            return;
        }
        r->ctx = o;
        rt_cancel *tok = dreq_await_begin(r, o, "chan receive");
        rc = rt_chan_recv_ack_await(c, a, r->dl, tok);
        if (rc == RT_EINPROGRESS)
            return; /* r and a now belong to recv_ack_done */
        recv_ack_done(a, rc, r);
        return;
    }
    recv_ack_finish(r, o, rc, v, ok, &hold);
    obj_release(o);
}

/* ------------------------------------------------------------------ */
/* ack, nack, touch, term                                             */
/* ------------------------------------------------------------------ */

typedef enum { OP_ACK, OP_NACK, OP_TOUCH, OP_TERM } dlv_op;

static void h_dlv(dreq *r, dlv_op op)
{
    if (!persist_write_ok(r))
        return; /* the log cannot be written: see persist.h */
    /* Read before dreq_obj, which finishes (frees) r when it fails. */
    uint64_t id = (uint64_t)dreq_int(r, "id", 0);
    const char *reason = dreq_str(r, "reason");
    int64_t used = 0;
    int rc = 0;
    obj *o = dreq_obj(r, dreq_str(r, "name"), &hchan_ops, false);

    if (!o)
        return;
    if (reason && strlen(reason) > DLV_REASON_MAX) {
        dreq_fail_params(r, NULL, "invalid params: reason longer than %d bytes",
                         DLV_REASON_MAX);
        obj_release(o);
        return;
    }
    switch (op) {
    case OP_ACK:
        rc = dlv_ack(o, id);
        break;
    case OP_NACK:
        rc = dlv_nack(o, id, dreq_int(r, "delay_ms", 0), reason);
        break;
    case OP_TOUCH: {
        json_t *w = dreq_param(r, "ack_wait_ms");
        if (w && hchan__ack_wait(r, w) < 0) {
            obj_release(o);
            return;
        }
        rc = dlv_touch(o, id, w ? json_integer_value(w) : -1, &used);
        break;
    }
    case OP_TERM:
        rc = dlv_term(o, id, reason);
        break;
    }
    if (rc)
        dreq_fail(r, PROTO_R_NOT_PENDING,
                  "delivery %llu of channel \"%s\" is not pending "
                  "(acknowledged, expired or never issued)",
                  (unsigned long long)id, o->name);
    else if (op == OP_TOUCH)
        dreq_ok_int(r, "ack_wait_ms", used);
    else
        dreq_ok(r, NULL);
    obj_release(o);
}

void h_ack(dreq *r)
{
    h_dlv(r, OP_ACK);
}

void h_nack(dreq *r)
{
    h_dlv(r, OP_NACK);
}

void h_touch(dreq *r)
{
    h_dlv(r, OP_TOUCH);
}

void h_term(dreq *r)
{
    h_dlv(r, OP_TERM);
}
