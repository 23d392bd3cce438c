/*
 * dispatch_detached.c - requests run detached from any session (go,
 * timer.afterfunc): checking the nested request and running it on a
 * goroutine.
 */
#include "daemon.h"
#include "dispatch_internal.h"
#include "answer.h"
#include "jfast.h"
#include "persist.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Detached requests (go, timer.afterfunc)                            */
/* ------------------------------------------------------------------ */

static void disp_detached_go(void *arg)
{
    dreq *r = arg;
    disp__tab[r->m->id](r);
    /* No loop turn ends here: its effects go to the log's writer now. */
    persist_flush();
    mem_sub(MEM_PARK_COST);
}

static int disp_detached(json_t *request, bool check_only, int depth,
                         proto_error *err);

/* Methods that leave a hold behind: detached, nobody would end it but a
 * lease. */
static bool disp_takes_hold(const char *method)
{
    static const char *const m[] = {"mutex.lock", "rwmutex.lock",
                                    "rwmutex.rlock", "once.do"};

    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (strcmp(method, m[i]) == 0)
            return true;
    return false;
}

/* Returns true when req receives with ack (recv, or a select recv case):
 * nobody could acknowledge it. */
static bool disp_acks(const proto_request *req)
{
    json_t *cases, *c;
    size_t i;

    if (strcmp(req->method->name, "recv") == 0)
        return json_is_true(json_object_get(req->params, "ack"));
    if (strcmp(req->method->name, "select") != 0)
        return false;
    cases = json_object_get(req->params, "cases");
    json_array_foreach(
        cases, i, c) if (json_is_true(json_object_get(c, "ack"))) return true;
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
                "lease_ms, or its hold would outlive everyone",
                name);
    }
    if (disp_acks(req))
        return proto_error_set(err, proto_reason_code(PROTO_R_MISUSE),
                               PROTO_R_MISUSE,
                               "a detached acknowledged receive (go, "
                               "timer.afterfunc) has no session to ack it");
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

    json_object_foreach(request, key, v)
    {
        if (strcmp(key, "method") && strcmp(key, "params"))
            return proto_error_set(err, PROTO_INVALID_PARAMS, PROTO_R_INVALID,
                                   "invalid params: request takes method "
                                   "and params, not \"%.64s\"",
                                   key);
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
    if (!disp__tab[req.method->id]) {
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
    r = dreq__new(NULL);
    if (!r) {
        json_decref(env);
        return proto_error_set(err, PROTO_INTERNAL_ERROR, PROTO_R_INTERNAL,
                               "out of memory");
    }
    dreq__set(r, &req); /* r->id stays NULL: detached, no answer */
    json_decref(env);
    atomic_fetch_add(&srv_stat.requests, 1);
    mem_add(MEM_PARK_COST);
    if (rt_in_goroutine()) {
        disp_detached_go(r);
        return 0;
    }
    if (rt_num_goroutine() >= srv_conf.max_goroutines) {
        mem_sub(MEM_PARK_COST);
        dreq__free(r);
        return proto_error_set(
            err, proto_reason_code(PROTO_R_LIMIT), PROTO_R_LIMIT,
            "max_goroutines reached: %d goroutines", rt_num_goroutine());
    }
    if (rt_go(disp_detached_go, r) != 0) {
        mem_sub(MEM_PARK_COST);
        dreq__free(r);
        return proto_error_set(err, PROTO_INTERNAL_ERROR, PROTO_R_INTERNAL,
                               "cannot start a goroutine");
    }
    return 0;
}
