/*
 * dispatch.c - from a checked line to a handler: the handler table (one
 * entry per method; families live in h_*.c), batches and notifications.
 * A request's answers and parameters are dreq.c's, detached requests
 * dispatch_detached.c's, and requests that wait park.c's.
 */
#include "daemon.h"
#include "dispatch_internal.h"
#include "dlv.h"
#include "answer.h"
#include "jfast.h"
#include "persist.h"

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
    {"hello", h_hello},
    {"ping", h_ping},
    /* security.c */
    {"auth", h_auth},
    {"list", h_list},
    {"drop", h_drop},
    {"go", h_go},
    {"runtime.stats", h_rt_stats},
    {"runtime.gomaxprocs", h_rt_gomaxprocs},
    {"runtime.dump", h_rt_dump},
    {"cluster.status", h_cluster_status},
    {"cluster.add", h_cluster_add},
    {"cluster.remove", h_cluster_remove},
    {"cluster.transfer", h_cluster_transfer},
    /* h_chan.c */
    {"make", h_make},
    {"send", h_send},
    {"recv", h_recv},
    {"close", h_close},
    {"len", h_len},
    {"select", h_select},
    {"ack", h_ack},
    {"nack", h_nack},
    {"touch", h_touch},
    {"term", h_term},
    /* h_lock.c */
    {"mutex.renew", h_mutex_renew},
    {"rwmutex.renew", h_rw_renew},
    {"mutex.lock", h_mutex_lock},
    {"mutex.unlock", h_mutex_unlock},
    {"rwmutex.lock", h_rw_lock},
    {"rwmutex.unlock", h_rw_unlock},
    {"rwmutex.rlock", h_rw_rlock},
    {"rwmutex.runlock", h_rw_runlock},
    {"cond.wait", h_cond_wait},
    {"cond.signal", h_cond_signal},
    {"cond.broadcast", h_cond_broadcast},
    /* h_sync.c */
    {"wg.add", h_wg_add},
    {"wg.done", h_wg_done},
    {"wg.wait", h_wg_wait},
    {"once.do", h_once_do},
    {"once.done", h_once_done},
    {"pool.put", h_pool_put},
    {"pool.get", h_pool_get},
    /* h_map.c */
    {"map.store", h_map_store},
    {"map.load", h_map_load},
    {"map.delete", h_map_delete},
    {"map.load_or_store", h_map_load_or_store},
    {"map.load_and_delete", h_map_load_and_delete},
    {"map.swap", h_map_swap},
    {"map.compare_and_swap", h_map_compare_and_swap},
    {"map.compare_and_delete", h_map_compare_and_delete},
    {"map.range", h_map_range},
    {"map.len", h_map_len},
    {"map.clear", h_map_clear},
    {"atomic.load", h_atomic_load},
    {"atomic.store", h_atomic_store},
    {"atomic.add", h_atomic_add},
    {"atomic.swap", h_atomic_swap},
    {"atomic.compare_and_swap", h_atomic_cas},
    /* h_timer.c */
    {"timer.after", h_timer_after},
    {"timer.ticker", h_timer_ticker},
    {"timer.stop", h_timer_stop},
    {"timer.reset", h_timer_reset},
    {"timer.afterfunc", h_timer_afterfunc},
};

/* Session-end hooks, one per family that keeps per-session state. */
static void (*const disp_end_hooks[])(sess *s) = {
    hlock_session_end,
    honce_session_end,
    dlv_session_end,
};

disp_handler *disp__tab;
static size_t disp_nmethods;

/* Methods that make the daemon hold more (besides every blocking one but
 * recv, whose wait costs a goroutine): refused with reason limit while
 * max_memory is reached.  The rest -- reads, and what frees (recv,
 * pool.get, map.delete, drop, unlock) -- always run, so a full daemon can
 * be drained. */
static const char *const disp_growers[] = {
    "make",
    "map.store",
    "map.load_or_store",
    "map.swap",
    "map.compare_and_swap",
    "pool.put",
    "timer.after",
    "timer.ticker",
    "timer.reset",
    "timer.afterfunc",
    "go",
};
static bool *disp_grows; /* by method id */

/* Methods any cluster node serves itself: they read or change no
 * replicated state.  Every other one is the leader's (not_leader). */
static const char *const disp_anynode[] = {
    "hello",         "ping",           "auth",
    "runtime.stats", "runtime.dump",   "cluster.status",
    "cluster.add",   "cluster.remove", "cluster.transfer",
};
static bool *disp_leader_only; /* by method id */

/* Answers that reveal no state at all: they leave at once, without waiting
 * for the log (fsync = always) or a raft barrier (a cluster's leader),
 * behind what the session was answered before them. */
static const char *const disp_stateless[] = {
    "hello",
    "ping",
    "auth",
    "cluster.status",
};
static bool *disp_nogate; /* by method id */

/* Returns a new array by method id: true for the methods named in
 * names[0..n), or NULL. */
static bool *disp_by_name(const char *const *names, size_t n)
{
    const proto_method *m;
    bool *a = calloc(disp_nmethods, sizeof *a);

    for (size_t i = 0; a && i < n; i++)
        if ((m = proto_method_find(names[i])))
            a[m->id] = true;
    return a;
}

int disp_init(void)
{
    const proto_method *t = proto_methods(&disp_nmethods);

    disp__tab = calloc(disp_nmethods, sizeof *disp__tab);
    if (!disp__tab)
        return -1;
    for (size_t i = 0; i < sizeof disp_entries / sizeof disp_entries[0]; i++) {
        const proto_method *m = proto_method_find(disp_entries[i].method);
        if (!m) {
            log_error("handler for unknown method %s", disp_entries[i].method);
            return -1;
        }
        disp__tab[m->id] = disp_entries[i].fn;
    }
    for (size_t i = 0; i < disp_nmethods; i++)
        if (!disp__tab[i])
            log_debug("method %s has no handler yet", t[i].name);
    disp_grows = disp_by_name(disp_growers,
                              sizeof disp_growers / sizeof disp_growers[0]);
    disp_leader_only = disp_by_name(disp_anynode, sizeof disp_anynode /
                                                      sizeof disp_anynode[0]);
    disp_nogate = disp_by_name(disp_stateless, sizeof disp_stateless /
                                                   sizeof disp_stateless[0]);
    if (!disp_grows || !disp_leader_only || !disp_nogate)
        return -1;
    for (size_t i = 0; i < disp_nmethods; i++) {
        if (t[i].blocking && strcmp(t[i].name, "recv") != 0)
            disp_grows[t[i].id] = true;
        disp_leader_only[t[i].id] = !disp_leader_only[t[i].id];
    }
    return 0;
}

void disp_fini(void)
{
    free(disp__tab);
    disp__tab = NULL;
    free(disp_grows);
    disp_grows = NULL;
    free(disp_leader_only);
    disp_leader_only = NULL;
    free(disp_nogate);
    disp_nogate = NULL;
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
    sess *s; /* retained */
    pthread_mutex_t mu;
    size_t n, pending;
    json_t **ans; /* one slot per member; NULL: none */
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
    b->pending = n + 1; /* the dispatcher's own hold, see dbatch__put */
    return b;
}

/* Stores answer (stolen, may be NULL) into slot; the last one sends the
 * array.  slot == SIZE_MAX only drops the dispatcher's hold. */
void dbatch__put(dbatch *b, size_t slot, json_t *answer, gback *gb)
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
/* From a line to handlers                                            */
/* ------------------------------------------------------------------ */

dreq *dreq__new(sess *s)
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
    static const char *const keys[] = {"value", "old", "new"};

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
    r = dreq__new(s);
    if (!r) {
        if (b)
            dbatch__put(b, slot, NULL, NULL);
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
        dreq__fail_code(r, &err);
        return;
    }
    disp_checked(r, &req, line_len);
}

/* Takes req's id, method, deadline and arguments into r (as new
 * references) and clears req. */
void dreq__set(dreq *r, proto_request *req)
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
        dreq__set(r, req);
        dreq_fail(r, why_r, "%s", why);
        return;
    }
    dreq__set(r, req);
    if (disp_leader_only[r->m->id] && !persist_may_decide()) {
        char leader[300];
        json_t *data = json_object();
        if (data && persist_leader(leader, sizeof leader) == 0)
            json_object_set_new(data, "leader", json_string(leader));
        dreq_fail_data(r, PROTO_R_NOT_LEADER, data,
                       "this node is not the cluster's leader%s",
                       data && json_object_get(data, "leader")
                           ? ": ask data.leader"
                           : " (an election is under way: retry)");
        return;
    }
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
    if (!disp__tab[r->m->id]) {
        dreq__finish(r,
                     proto_error_answer(r->id, PROTO_METHOD_NOT_FOUND,
                                        PROTO_R_INVALID,
                                        "method not implemented", NULL),
                     NULL);
        return;
    }
    if (disp_nogate[r->m->id]) {
        persist__nogate = true;
        disp__tab[r->m->id](r);
        persist__nogate = false;
        return;
    }
    disp__tab[r->m->id](r);
}

void disp_line(sess *s, const char *line, size_t len)
{
    proto_limits lim = {srv_conf.max_line, srv_conf.max_depth};
    sess_local *l = s ? sess_local_get(s) : NULL;
    proto_request req;
    proto_error err;
    json_t *msg;

    /* The common request in one pass; everything else (batches, errors,
     * unusual text) through the general path below. */
    if (proto_scan_request_names(line, len, &lim, l ? l->names : NULL, &req)) {
        dreq *r;
        atomic_fetch_add(&srv_stat.requests, 1);
        r = dreq__new(s);
        if (r)
            disp_checked(r, &req, len);
        else
            proto_request_clear(&req);
        return;
    }
    msg = proto_parse_line(line, len, &lim, &err);
    if (!msg) {
        atomic_fetch_add(&srv_stat.requests, 1);
        dreq *r = dreq__new(s);
        if (r) {
            r->id = json_null();
            dreq__fail_code(r, &err);
        }
        return;
    }
    if (json_is_array(msg)) {
        size_t n = json_array_size(msg);
        if (n == 0 || n > (size_t)srv_conf.max_batch) {
            dreq *r = dreq__new(s);
            if (r) {
                r->id = json_null();
                if (n == 0)
                    dreq__finish(r,
                                 proto_error_answer(
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
                dbatch__put(b, SIZE_MAX, NULL, NULL);
            }
        }
    } else {
        disp_one(s, msg, NULL, 0, len);
    }
    json_decref(msg);
}
