/*
 * dreq.c - a request's calls for its handler: answers (success lines
 * written by proto/answer.c, serialised off the I/O thread when a
 * goroutine finishes), failures, parameters, and the registry's codes
 * turned into answers (dreq_obj).
 */
#include "daemon.h"
#include "dispatch_internal.h"
#include "answer.h"
#include "jfast.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Answers                                                            */
/* ------------------------------------------------------------------ */

void dreq__free(dreq *r)
{
    json_decref(r->id);
    for (int i = 0; i < PROTO_MAX_PARAMS; i++)
        json_decref(r->args[i]);
    proto_cases_free(r->cases, r->ncases);
    if (r->s)
        sess_release(r->s);
    free(r);
}

/* Sends answer (stolen) for r and frees r. */
void dreq__finish(dreq *r, json_t *answer, gback *gb)
{
    /* Every request ends here exactly once: count it for /metrics. */
    srv_count_answer(r->m, answer && !json_object_get(answer, "error"));
    if (r->batch) {
        dbatch__put(r->batch, r->slot, r->id ? answer : NULL, gb);
        if (!r->id)
            json_decref(answer);
    } else if (!r->id || !r->s || !answer) {
        /* Notifications and detached requests get no answer; a value
         * they received is theirs, as Go's `<-ch` discards it. */
        if (!r->s && answer && log_get_level() >= LOG_LVL_DEBUG) {
            char *t = json_dumps(answer, JSON_COMPACT);
            log_debug("detached %s: %s", r->m ? r->m->name : "?", t ? t : "?");
            free(t);
        }
        json_decref(answer);
        gback_free(gb);
    } else {
        size_t len;
        char *line = proto_dump_line(answer, &len);
        json_decref(answer);
        if (line)
            sess_deliver(r->s, line, len, gb);
        else
            gback_run(gb);
    }
    dreq__free(r);
}

static void dreq_ok_res(dreq *r, const proto_res *d, gback *gb)
{
    jfast_buf b = {0};
    sess_local *l;

    if (r->batch || !r->id || !r->s) {
        dreq__finish(r, proto_result(r->id, proto_res_json(d)), gb);
        return;
    }
    srv_count_answer(r->m, true);
    if ((l = sess_local_get(r->s)) != NULL) {
        /* On the session's I/O thread: its reused buffer, copied into
         * the output buffer, no allocation. */
        l->out.len = 0;
        if (proto_res_line(&l->out, r->id, d) == 0)
            sess_deliver_io(r->s, l->out.p, l->out.len, gb);
        else
            gback_run(gb);
    } else if (proto_res_line(&b, r->id, d) == 0) {
        sess_deliver(r->s, b.p, b.len, gb); /* takes b.p */
    } else {
        free(b.p);
        gback_run(gb);
    }
    dreq__free(r);
}

void dreq_ok_gb(dreq *r, json_t *result, gback *gb)
{
    proto_res d = {.v1 = result};

    dreq_ok_res(r, &d, gb);
    json_decref(result);
}

void dreq_ok(dreq *r, json_t *result)
{
    dreq_ok_gb(r, result, NULL);
}

void dreq_ok_pair(dreq *r, const char *k1, const json_t *v1, const char *k2,
                  bool b2, gback *gb)
{
    proto_res d = {.k1 = k1, .v1 = v1, .k2 = k2, .b2 = b2};

    dreq_ok_res(r, &d, gb);
}

void dreq_ok_index(dreq *r, int index)
{
    proto_res d = {.k0 = "index", .n0 = index};

    dreq_ok_res(r, &d, NULL);
}

void dreq_ok_recv(dreq *r, int index, const hval *v, gback *gb)
{
    proto_res d = {.k0 = index >= 0 ? "index" : NULL,
                   .n0 = index,
                   .k1 = "value",
                   .k2 = "ok",
                   .b2 = v != NULL};

    if (v)
        d.t1 = hval_text(v, &d.t1n);
    dreq_ok_res(r, &d, gb);
}

void dreq_ok_recv_dlv(dreq *r, int index, const hval *v, uint64_t id,
                      uint32_t attempt)
{
    proto_res d = {.k0 = index >= 0 ? "index" : NULL,
                   .n0 = index,
                   .k1 = "value",
                   .k2 = "ok",
                   .b2 = true,
                   .dlv = true,
                   .did = id,
                   .datt = attempt};

    d.t1 = hval_text(v, &d.t1n);
    dreq_ok_res(r, &d, NULL);
}

void dreq_ok_int(dreq *r, const char *key, int64_t n)
{
    proto_res d = {.k1 = key, .n1 = n, .is_int = true};

    dreq_ok_res(r, &d, NULL);
}

static void dreq_vfail(dreq *r, int code, proto_reason reason, json_t *data,
                       const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    dreq__finish(r, proto_error_answer(r->id, code, reason, msg, data), NULL);
}

void dreq_fail(dreq *r, proto_reason reason, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dreq_vfail(r, proto_reason_code(reason), reason, NULL, fmt, ap);
    va_end(ap);
}

void dreq_fail_data(dreq *r, proto_reason reason, json_t *data, const char *fmt,
                    ...)
{
    va_list ap;
    va_start(ap, fmt);
    dreq_vfail(r, proto_reason_code(reason), reason, data, fmt, ap);
    va_end(ap);
}

void dreq_fail_params(dreq *r, json_t *data, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dreq_vfail(r, PROTO_INVALID_PARAMS, PROTO_R_INVALID, data, fmt, ap);
    va_end(ap);
}

void dreq__fail_code(dreq *r, const proto_error *e)
{
    dreq__finish(
        r, proto_error_answer(r->id, e->code, e->reason, e->message, NULL),
        NULL);
}

proto_reason disp_rt_reason(int code)
{
    switch (code) {
    case RT_EAGAIN:
    case RT_ETIMEDOUT:
        return PROTO_R_TIMEOUT;
    case RT_ECANCELED:
        return PROTO_R_CANCELLED;
    case RT_ESENDCLOSED:
    case RT_ECLOSECLOSED:
    case RT_ECLOSENIL:
        return PROTO_R_CLOSED;
    case RT_EUNLOCK:
    case RT_ERUNLOCK:
    case RT_EWUNLOCK:
        return PROTO_R_NOT_LOCKED;
    case RT_ENEGWG:
        return PROTO_R_NEGATIVE_COUNTER;
    case RT_EDEADLK:
        return PROTO_R_DEADLOCK;
    case RT_ENOMEM:
        return PROTO_R_INTERNAL;
    default:
        return PROTO_R_MISUSE;
    }
}

void dreq_fail_rt(dreq *r, int code)
{
    proto_reason reason = disp_rt_reason(code);

    if (reason == PROTO_R_TIMEOUT)
        dreq_fail(r, reason, "timeout");
    else if (reason == PROTO_R_CANCELLED)
        dreq_fail(r, reason, "%s",
                  srv_draining() ? "cancelled: server shutting down"
                                 : "cancelled: session ended");
    else
        dreq_fail(r, reason, "%s", rt_strerror(code));
}

/* ------------------------------------------------------------------ */
/* Parameters                                                         */
/* ------------------------------------------------------------------ */

/* Builds the text value of parameter i into args[i] (NULL when out of
 * memory: the handler then sees it absent and answers so). */
static void dreq_build_text(dreq *r, int i)
{
    if (r->text[i].p && !r->args[i])
        r->args[i] = proto_text_json(r->text[i]);
    r->text[i].p = NULL;
}

void dreq__keep_params(dreq *r)
{
    for (int i = 0; i < PROTO_MAX_PARAMS; i++)
        dreq_build_text(r, i);
}

bool dreq_cancelled(dreq *r)
{
    return r->s && rt_cancel_fired(sess_cancel(r->s));
}

uint64_t dreq_sid(const dreq *r)
{
    return r->s ? sess_id(r->s) : 0;
}

json_t *dreq_param(dreq *r, const char *key)
{
    int i = r->m ? proto_param_index(r->m, key) : -1;

    if (i < 0)
        return NULL;
    dreq_build_text(r, i);
    return r->args[i];
}

proto_text dreq_take_text(dreq *r, const char *key)
{
    int i = r->m ? proto_param_index(r->m, key) : -1;
    proto_text t = {NULL, 0};

    if (i >= 0) {
        t = r->text[i];
        r->text[i].p = NULL;
    }
    return t;
}

const char *dreq_str(dreq *r, const char *key)
{
    return json_string_value(dreq_param(r, key));
}

int64_t dreq_int(dreq *r, const char *key, int64_t dflt)
{
    json_t *v = dreq_param(r, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

/* ------------------------------------------------------------------ */
/* Objects for a request: the registry's codes as answers             */
/* ------------------------------------------------------------------ */

static const char *disp_article(const obj_ops *ops)
{
    return ops->type == OBJ_ATOMIC || ops->type == OBJ_ONCE ? "an" : "a";
}

/* Answers r for the registry's code rc about name; f as reg_lookup
 * filled it. */
static void dreq_fail_reg(dreq *r, int rc, const char *name,
                          const obj_ops *want, const reg_found *f)
{
    switch (rc) {
    case REG_ETYPE:
        dreq_fail(r, PROTO_R_WRONG_TYPE, "\"%s\" is %s %s, not %s %s", name,
                  disp_article(f->have), f->have->name, disp_article(want),
                  want->name);
        break;
    case REG_ENOENT:
        if (want && want->type == OBJ_CHAN)
            dreq_fail(r, PROTO_R_NOT_FOUND,
                      "no channel \"%s\" (make it "
                      "first)",
                      name);
        else
            dreq_fail(r, PROTO_R_NOT_FOUND, "no object \"%s\"", name);
        break;
    case REG_ELIMIT:
        dreq_fail(r, PROTO_R_LIMIT, "too many objects (max-objects %d)",
                  srv_conf.max_objects);
        break;
    default:
        dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
        break;
    }
}

/* Counts a request served on o, for the per-object rates of chanctl top:
 * one relaxed add on a line the lookup's reference count has just
 * touched anyway, so it costs next to nothing. */
static inline void disp_count_op(obj *o)
{
    atomic_fetch_add_explicit(&o->nops, 1, memory_order_relaxed);
}

obj *dreq_obj(dreq *r, const char *name, const obj_ops *want, bool create)
{
    reg_found f;
    int rc = reg_lookup(name, want, create, r, &f);

    if (rc != REG_OK) {
        dreq_fail_reg(r, rc, name, want, &f);
        return NULL;
    }
    disp_count_op(f.o);
    return f.o;
}

obj *dreq_obj_make(dreq *r, const char *name, const obj_ops *ops, bool *created)
{
    reg_found f;
    int rc = reg_lookup(name, ops, true, r, &f);

    *created = f.created;
    if (rc != REG_OK) {
        dreq_fail_reg(r, rc, name, ops, &f);
        return NULL;
    }
    disp_count_op(f.o);
    return f.o;
}
