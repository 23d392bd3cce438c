/*
 * dispatch.c - from a checked line to a handler and back: batches,
 * notifications, the handler table (one entry per method; families live in
 * h_*.c), answers (success lines written by proto/answer.c, serialised off
 * the I/O thread when a goroutine finishes), parameters, the registry's
 * codes turned into answers (dreq_obj), and detached requests (go,
 * timer.afterfunc).  Requests that wait are park.c's.
 */
#include "daemon.h"
#include "answer.h"
#include "jfast.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* The handler table: one line per method, grouped by family file.    */
/* ------------------------------------------------------------------ */

static const struct {
    const char *method;
    disp_handler fn;
} disp_entries[] = {
    /* h_core.c */
    { "hello", h_hello },
    { "ping", h_ping },
    /* security.c */
    { "auth", h_auth },
    { "list", h_list },
    { "drop", h_drop },
    { "go", h_go },
    { "runtime.stats", h_rt_stats },
    { "runtime.gomaxprocs", h_rt_gomaxprocs },
    { "runtime.dump", h_rt_dump },
    /* h_chan.c */
    { "make", h_make },
    { "send", h_send },
    { "recv", h_recv },
    { "close", h_close },
    { "len", h_len },
    { "select", h_select },
    /* h_lock.c */
    { "mutex.renew", h_mutex_renew },
    { "rwmutex.renew", h_rw_renew },
    { "mutex.lock", h_mutex_lock },
    { "mutex.unlock", h_mutex_unlock },
    { "rwmutex.lock", h_rw_lock },
    { "rwmutex.unlock", h_rw_unlock },
    { "rwmutex.rlock", h_rw_rlock },
    { "rwmutex.runlock", h_rw_runlock },
    { "cond.wait", h_cond_wait },
    { "cond.signal", h_cond_signal },
    { "cond.broadcast", h_cond_broadcast },
    /* h_sync.c */
    { "wg.add", h_wg_add },
    { "wg.done", h_wg_done },
    { "wg.wait", h_wg_wait },
    { "once.do", h_once_do },
    { "once.done", h_once_done },
    { "pool.put", h_pool_put },
    { "pool.get", h_pool_get },
    /* h_map.c */
    { "map.store", h_map_store },
    { "map.load", h_map_load },
    { "map.delete", h_map_delete },
    { "map.load_or_store", h_map_load_or_store },
    { "map.load_and_delete", h_map_load_and_delete },
    { "map.swap", h_map_swap },
    { "map.compare_and_swap", h_map_compare_and_swap },
    { "map.compare_and_delete", h_map_compare_and_delete },
    { "map.range", h_map_range },
    { "map.len", h_map_len },
    { "map.clear", h_map_clear },
    { "atomic.load", h_atomic_load },
    { "atomic.store", h_atomic_store },
    { "atomic.add", h_atomic_add },
    { "atomic.swap", h_atomic_swap },
    { "atomic.compare_and_swap", h_atomic_cas },
    /* h_timer.c */
    { "timer.after", h_timer_after },
    { "timer.ticker", h_timer_ticker },
    { "timer.stop", h_timer_stop },
    { "timer.reset", h_timer_reset },
    { "timer.afterfunc", h_timer_afterfunc },
};

/* Session-end hooks, one per family that keeps per-session state. */
static void (*const disp_end_hooks[])(sess *s) = {
    hlock_session_end,
    honce_session_end,
};

static disp_handler *disp_tab;
static size_t disp_nmethods;

/* Methods that make the daemon hold more (besides every blocking one but
 * recv, whose wait costs a goroutine): refused with reason limit while
 * max_memory is reached.  The rest -- reads, and what frees (recv,
 * pool.get, map.delete, drop, unlock) -- always run, so a full daemon can
 * be drained. */
static const char *const disp_growers[] = {
    "make", "map.store", "map.load_or_store", "map.swap",
    "map.compare_and_swap", "pool.put", "timer.after", "timer.ticker",
    "timer.reset", "timer.afterfunc", "go",
};
static bool *disp_grows; /* by method id */

int disp_init(void)
{
    const proto_method *t = proto_methods(&disp_nmethods);

    disp_tab = calloc(disp_nmethods, sizeof *disp_tab);
    if (!disp_tab)
        return -1;
    for (size_t i = 0; i < sizeof disp_entries / sizeof disp_entries[0];
         i++) {
        const proto_method *m = proto_method_find(disp_entries[i].method);
        if (!m) {
            log_error("handler for unknown method %s",
                      disp_entries[i].method);
            return -1;
        }
        disp_tab[m->id] = disp_entries[i].fn;
    }
    for (size_t i = 0; i < disp_nmethods; i++)
        if (!disp_tab[i])
            log_debug("method %s has no handler yet", t[i].name);
    disp_grows = calloc(disp_nmethods, sizeof *disp_grows);
    if (!disp_grows)
        return -1;
    for (size_t i = 0; i < disp_nmethods; i++) {
        bool g = t[i].blocking && strcmp(t[i].name, "recv") != 0;
        for (size_t j = 0; !g && j < sizeof disp_growers /
                                         sizeof disp_growers[0]; j++)
            g = strcmp(t[i].name, disp_growers[j]) == 0;
        disp_grows[t[i].id] = g;
    }
    return 0;
}

void disp_fini(void)
{
    free(disp_tab);
    disp_tab = NULL;
    free(disp_grows);
    disp_grows = NULL;
}

void disp_session_end(sess *s)
{
    for (size_t i = 0; i < sizeof disp_end_hooks / sizeof disp_end_hooks[0];
         i++)
        if (disp_end_hooks[i])
            disp_end_hooks[i](s);
}

/* ------------------------------------------------------------------ */
/* Batches                                                            */
/* ------------------------------------------------------------------ */

struct dbatch {
    sess *s;                  /* retained */
    pthread_mutex_t mu;
    size_t n, pending;
    json_t **ans;             /* one slot per member; NULL: none */
    gback *gb;
};

static dbatch *dbatch_new(sess *s, size_t n)
{
    dbatch *b = calloc(1, sizeof *b);

    if (!b)
        return NULL;
    b->ans = calloc(n ? n : 1, sizeof *b->ans);
    if (!b->ans) {
        free(b);
        return NULL;
    }
    pthread_mutex_init(&b->mu, NULL);
    b->s = s;
    sess_retain(s);
    b->n = n;
    b->pending = n + 1; /* the dispatcher's own hold, see dbatch_put */
    return b;
}

/* Stores answer (stolen, may be NULL) into slot; the last one sends the
 * array.  slot == SIZE_MAX only drops the dispatcher's hold. */
static void dbatch_put(dbatch *b, size_t slot, json_t *answer, gback *gb)
{
    bool last;

    pthread_mutex_lock(&b->mu);
    if (slot < b->n)
        b->ans[slot] = answer;
    while (gb) {
        gback *next = gb->next;
        gb->next = b->gb;
        b->gb = gb;
        gb = next;
    }
    last = --b->pending == 0;
    pthread_mutex_unlock(&b->mu);
    if (!last)
        return;

    json_t *arr = json_array();
    size_t len;
    char *line = NULL;
    for (size_t i = 0; i < b->n; i++)
        if (b->ans[i] && arr)
            json_array_append_new(arr, b->ans[i]);
        else
            json_decref(b->ans[i]);
    if (arr && json_array_size(arr) > 0)
        line = proto_dump_line(arr, &len);
    json_decref(arr);
    if (line)
        sess_deliver(b->s, line, len, b->gb);
    else
        gback_free(b->gb); /* all notifications: values were consumed */
    sess_release(b->s);
    pthread_mutex_destroy(&b->mu);
    free(b->ans);
    free(b);
}

/* ------------------------------------------------------------------ */
/* Answers                                                            */
/* ------------------------------------------------------------------ */

static void dreq_free(dreq *r)
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
static void dreq_finish(dreq *r, json_t *answer, gback *gb)
{
    /* Every request ends here exactly once: count it for /metrics. */
    srv_count_answer(r->m, answer && !json_object_get(answer, "error"));
    if (r->batch) {
        dbatch_put(r->batch, r->slot, r->id ? answer : NULL, gb);
        if (!r->id)
            json_decref(answer);
    } else if (!r->id || !r->s || !answer) {
        /* Notifications and detached requests get no answer; a value
         * they received is theirs, as Go's `<-ch` discards it. */
        if (!r->s && answer && log_get_level() >= LOG_LVL_DEBUG) {
            char *t = json_dumps(answer, JSON_COMPACT);
            log_debug("detached %s: %s", r->m ? r->m->name : "?",
                      t ? t : "?");
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
    dreq_free(r);
}

static void dreq_ok_res(dreq *r, const proto_res *d, gback *gb)
{
    jfast_buf b = { 0 };
    sess_local *l;

    if (r->batch || !r->id || !r->s) {
        dreq_finish(r, proto_result(r->id, proto_res_json(d)), gb);
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
    dreq_free(r);
}

void dreq_ok_gb(dreq *r, json_t *result, gback *gb)
{
    proto_res d = { .v1 = result };

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
    proto_res d = { .k1 = k1, .v1 = v1, .k2 = k2, .b2 = b2 };

    dreq_ok_res(r, &d, gb);
}

void dreq_ok_index(dreq *r, int index)
{
    proto_res d = { .k0 = "index", .n0 = index };

    dreq_ok_res(r, &d, NULL);
}

void dreq_ok_recv(dreq *r, int index, const hval *v, gback *gb)
{
    proto_res d = { .k0 = index >= 0 ? "index" : NULL, .n0 = index,
                    .k1 = "value", .k2 = "ok", .b2 = v != NULL };

    if (v)
        d.t1 = hval_text(v, &d.t1n);
    dreq_ok_res(r, &d, gb);
}

void dreq_ok_int(dreq *r, const char *key, int64_t n)
{
    proto_res d = { .k1 = key, .n1 = n, .is_int = true };

    dreq_ok_res(r, &d, NULL);
}

static void dreq_vfail(dreq *r, int code, proto_reason reason, json_t *data,
                       const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    dreq_finish(r, proto_error_answer(r->id, code, reason, msg, data), NULL);
}

void dreq_fail(dreq *r, proto_reason reason, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dreq_vfail(r, proto_reason_code(reason), reason, NULL, fmt, ap);
    va_end(ap);
}

void dreq_fail_data(dreq *r, proto_reason reason, json_t *data,
                    const char *fmt, ...)
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

static void dreq_fail_code(dreq *r, const proto_error *e)
{
    dreq_finish(r, proto_error_answer(r->id, e->code, e->reason, e->message,
                                      NULL),
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
    proto_text t = { NULL, 0 };

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
            dreq_fail(r, PROTO_R_NOT_FOUND, "no channel \"%s\" (make it "
                      "first)", name);
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

obj *dreq_obj_make(dreq *r, const char *name, const obj_ops *ops,
                   bool *created)
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

/* ------------------------------------------------------------------ */
/* From a line to handlers                                            */
/* ------------------------------------------------------------------ */

static dreq *dreq_new(sess *s)
{
    dreq *r = calloc(1, sizeof *r);

    if (!r)
        return NULL;
    if (s) {
        r->s = s;
        sess_retain(s);
    }
    r->timeout_ms = -1;
    r->dl = RT_FOREVER;
    return r;
}

/* Returns true if one of the request's values is over max_value bytes.
 * Only called for lines longer than max_value (else none can be). */
static bool disp_value_too_large(dreq *r)
{
    static const char *const keys[] = { "value", "old", "new" };

    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_t *v = dreq_param(r, keys[i]);
        if (v && json_dumpb(v, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY) >
                     srv_conf.max_value)
            return true;
    }
    return false;
}

static void disp_checked(dreq *r, proto_request *req, size_t line_len);

/* Serves one request object (the line, or one member of a batch). */
static void disp_one(sess *s, json_t *msg, dbatch *b, size_t slot,
                     size_t line_len)
{
    proto_request req;
    proto_error err;
    dreq *r;

    atomic_fetch_add(&srv_stat.requests, 1);
    r = dreq_new(s);
    if (!r) {
        if (b)
            dbatch_put(b, slot, NULL, NULL);
        return;
    }
    r->batch = b;
    r->slot = slot;
    if (proto_check_request(msg, &req, &err) != 0) {
        /* An invalid notification (an object with a method and no id)
         * gets no answer, as JSON-RPC says; anything else does. */
        if (json_is_object(msg) && !json_object_get(msg, "id") &&
            json_is_string(json_object_get(msg, "method")))
            r->id = NULL;
        else
            r->id = json_incref(req.id ? req.id : json_null());
        dreq_fail_code(r, &err);
        return;
    }
    disp_checked(r, &req, line_len);
}

/* Takes req's id, method, deadline and arguments into r (as new
 * references) and clears req. */
static void dreq_set(dreq *r, proto_request *req)
{
    r->id = req->owned ? req->id : json_incref(req->id);
    for (int i = 0; i < PROTO_MAX_PARAMS; i++)
        r->args[i] = req->owned ? req->args[i] : json_incref(req->args[i]);
    memcpy(r->text, req->text, sizeof r->text);
    r->cases = req->cases; /* only ever the scanner's (owned) */
    r->ncases = req->ncases;
    r->m = req->method;
    r->timeout_ms = req->timeout_ms;
    r->dl = req->timeout_ms < 0    ? RT_FOREVER
            : req->timeout_ms == 0 ? RT_POLL
                                   : rt_deadline_ms(req->timeout_ms);
    memset(req, 0, sizeof *req);
}

/* Serves a valid request: r takes req's contents. */
static void disp_checked(dreq *r, proto_request *req, size_t line_len)
{
    proto_reason why_r;
    char why[256];

    /* Users configured: the session's identity and rules first, before
     * anything can change (a denied request has no effect at all). */
    if (sec_on && r->s && sec_check(r->s, req, &why_r, why, sizeof why)) {
        dreq_set(r, req);
        dreq_fail(r, why_r, "%s", why);
        return;
    }
    dreq_set(r, req);
    if (line_len > srv_conf.max_value && disp_value_too_large(r)) {
        dreq_fail(r, PROTO_R_TOO_LARGE, "value larger than %zu bytes",
                  srv_conf.max_value);
        return;
    }
    if (disp_grows[r->m->id] && mem_full((int64_t)line_len)) {
        /* As Redis's OOM error: the setting named, what frees room. */
        dreq_fail(r, PROTO_R_LIMIT,
                  "max_memory reached: %lld bytes held of %zu; %s refused "
                  "(receive, delete or drop something first)",
                  (long long)mem_used(), srv_conf.max_memory, r->m->name);
        return;
    }
    if (!disp_tab[r->m->id]) {
        dreq_finish(r, proto_error_answer(r->id, PROTO_METHOD_NOT_FOUND,
                                          PROTO_R_INVALID,
                                          "method not implemented", NULL),
                    NULL);
        return;
    }
    disp_tab[r->m->id](r);
}

void disp_line(sess *s, const char *line, size_t len)
{
    proto_limits lim = { srv_conf.max_line, srv_conf.max_depth };
    sess_local *l = s ? sess_local_get(s) : NULL;
    proto_request req;
    proto_error err;
    json_t *msg;

    /* The common request in one pass; everything else (batches, errors,
     * unusual text) through the general path below. */
    if (proto_scan_request_names(line, len, &lim, l ? l->names : NULL,
                                 &req)) {
        dreq *r;
        atomic_fetch_add(&srv_stat.requests, 1);
        r = dreq_new(s);
        if (r)
            disp_checked(r, &req, len);
        else
            proto_request_clear(&req);
        return;
    }
    msg = proto_parse_line(line, len, &lim, &err);
    if (!msg) {
        atomic_fetch_add(&srv_stat.requests, 1);
        dreq *r = dreq_new(s);
        if (r) {
            r->id = json_null();
            dreq_fail_code(r, &err);
        }
        return;
    }
    if (json_is_array(msg)) {
        size_t n = json_array_size(msg);
        if (n == 0 || n > (size_t)srv_conf.max_batch) {
            dreq *r = dreq_new(s);
            if (r) {
                r->id = json_null();
                if (n == 0)
                    dreq_finish(r, proto_error_answer(
                                       NULL, PROTO_INVALID_REQUEST,
                                       PROTO_R_INVALID,
                                       "invalid request: empty batch", NULL),
                                NULL);
                else
                    dreq_fail(r, PROTO_R_LIMIT,
                              "batch of %zu requests exceeds %d", n,
                              srv_conf.max_batch);
            }
        } else {
            dbatch *b = dbatch_new(s, n);
            if (b) {
                for (size_t i = 0; i < n; i++)
                    disp_one(s, json_array_get(msg, i), b, i, len);
                dbatch_put(b, SIZE_MAX, NULL, NULL);
            }
        }
    } else {
        disp_one(s, msg, NULL, 0, len);
    }
    json_decref(msg);
}

/* ------------------------------------------------------------------ */
/* Detached requests (go, timer.afterfunc)                            */
/* ------------------------------------------------------------------ */

static void disp_detached_go(void *arg)
{
    dreq *r = arg;
    disp_tab[r->m->id](r);
    mem_sub(MEM_PARK_COST);
}

static int disp_detached(json_t *request, bool check_only, int depth,
                         proto_error *err);

/* Methods that leave a hold behind: detached, nobody would end it but a
 * lease. */
static bool disp_takes_hold(const char *method)
{
    static const char *const m[] = { "mutex.lock", "rwmutex.lock",
                                     "rwmutex.rlock", "once.do" };

    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (strcmp(method, m[i]) == 0)
            return true;
    return false;
}

/* Refuses a detached request that would leave a hold owned by nobody
 * forever (a lock or once.do without lease_ms), and checks nested go and
 * timer.afterfunc requests the same way, when they are made.  Returns 0
 * or -1 with err filled. */
static int disp_detached_check(const proto_request *req, int depth,
                               proto_error *err)
{
    const char *name = req->method->name;
    json_t *inner;

    if (disp_takes_hold(name)) {
        json_t *lease = json_object_get(req->params, "lease_ms");
        if (!lease || json_integer_value(lease) <= 0)
            return proto_error_set(
                err, PROTO_INVALID_PARAMS, PROTO_R_INVALID,
                "invalid params: a detached %s (go, timer.afterfunc) needs "
                "lease_ms, or its hold would outlive everyone", name);
    }
    if (strcmp(name, "go") && strcmp(name, "timer.afterfunc"))
        return 0;
    if (depth >= 8)
        return proto_error_set(err, PROTO_INVALID_PARAMS, PROTO_R_INVALID,
                               "invalid params: requests nested deeper "
                               "than 8");
    inner = json_object_get(req->params, "request");
    return inner ? disp_detached(inner, true, depth + 1, err) : 0;
}

int disp_run_detached(json_t *request, bool check_only, proto_error *err)
{
    return disp_detached(request, check_only, 0, err);
}

static int disp_detached(json_t *request, bool check_only, int depth,
                         proto_error *err)
{
    json_t *env, *v;
    const char *key;
    proto_request req;
    dreq *r;

    json_object_foreach(request, key, v) {
        if (strcmp(key, "method") && strcmp(key, "params"))
            return proto_error_set(err, PROTO_INVALID_PARAMS,
                                   PROTO_R_INVALID,
                                   "invalid params: request takes method "
                                   "and params, not \"%.64s\"", key);
    }
    env = json_pack("{s:s, s:O?, s:O?}", "jsonrpc", "2.0", "method",
                    json_object_get(request, "method"), "params",
                    json_object_get(request, "params"));
    if (!env)
        return proto_error_set(err, PROTO_INVALID_PARAMS, PROTO_R_INVALID,
                               "invalid params: request needs a method");
    if (proto_check_request(env, &req, err) != 0) {
        if (err->code == PROTO_INVALID_REQUEST ||
            err->code == PROTO_METHOD_NOT_FOUND)
            err->code = PROTO_INVALID_PARAMS;
        json_decref(env);
        return -1;
    }
    if (!disp_tab[req.method->id]) {
        json_decref(env);
        return proto_error_set(err, PROTO_INVALID_PARAMS, PROTO_R_INVALID,
                               "invalid params: %s is not implemented",
                               req.method->name);
    }
    if (disp_detached_check(&req, depth, err) != 0) {
        json_decref(env);
        return -1;
    }
    if (check_only) {
        json_decref(env);
        return 0;
    }
    r = dreq_new(NULL);
    if (!r) {
        json_decref(env);
        return proto_error_set(err, PROTO_INTERNAL_ERROR, PROTO_R_INTERNAL,
                               "out of memory");
    }
    dreq_set(r, &req); /* r->id stays NULL: detached, no answer */
    json_decref(env);
    atomic_fetch_add(&srv_stat.requests, 1);
    mem_add(MEM_PARK_COST);
    if (rt_in_goroutine()) {
        disp_detached_go(r);
        return 0;
    }
    if (rt_num_goroutine() >= srv_conf.max_goroutines) {
        mem_sub(MEM_PARK_COST);
        dreq_free(r);
        return proto_error_set(err, proto_reason_code(PROTO_R_LIMIT),
                               PROTO_R_LIMIT,
                               "max_goroutines reached: %d goroutines",
                               rt_num_goroutine());
    }
    if (rt_go(disp_detached_go, r) != 0) {
        mem_sub(MEM_PARK_COST);
        dreq_free(r);
        return proto_error_set(err, PROTO_INTERNAL_ERROR, PROTO_R_INTERNAL,
                               "cannot start a goroutine");
    }
    return 0;
}
