/*
 * methods.c - one blocking libchand call per wire method (PROTOCOL.md):
 * each packs its parameters, goes through chand_call, and unpacks the
 * result object into C out-parameters.  Nothing here talks to the socket.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Calls method with params (stolen).  A NULL params is what json_pack
 * gives for a NULL string or value, i.e. a bad argument. */
int chand__mcall(chand_conn *c, const char *method, json_t *params,
                 int64_t timeout_ms, json_t **res)
{
    int rc;

    if (res)
        *res = NULL;
    if (!c) {
        json_decref(params);
        return CHAND_EARG;
    }
    if (!params)
        return chand__seterr(&c->err, CHAND_EARG, 0, "",
                             "invalid argument to %s", method);
    rc = chand_call(c, method, params, timeout_ms, res);
    json_decref(params);
    return rc;
}

/* Reads integer key of res into *out (may be NULL).  A missing key is a
 * protocol error: the server promised it. */
int chand__get_int(chand_conn *c, json_t *res, const char *key, int64_t *out)
{
    json_t *v = json_object_get(res, key);

    if (!json_is_integer(v))
        return chand__seterr(&c->err, CHAND_EPROTO, 0, "",
                             "result lacks integer \"%s\"", key);
    if (out)
        *out = json_integer_value(v);
    return 0;
}

bool chand__get_bool(json_t *res, const char *key)
{
    return json_is_true(json_object_get(res, key));
}

/* Stores a new reference to res[key] (null when absent) in *out. */
void chand__get_value(json_t *res, const char *key, json_t **out)
{
    json_t *v;

    if (!out)
        return;
    v = json_object_get(res, key);
    *out = v ? json_incref(v) : json_null();
}

/* The shape of most calls: params in, nothing out. */
int chand__call_void(chand_conn *c, const char *method, json_t *params,
                     int64_t timeout_ms)
{
    json_t *res;
    int rc = chand__mcall(c, method, params, timeout_ms, &res);

    json_decref(res);
    return rc;
}

/* Returns a new {"name": name}, the params of most methods (NULL when out
 * of memory, which chand__mcall() reports). */
static json_t *name_params(const char *name)
{
    return json_pack("{s:s}", "name", name);
}

/* Calls method with only the object name, waiting forever; returns 0 or a
 * negative code. */
static int call_named(chand_conn *c, const char *method, const char *name)
{
    return chand__call_void(c, method, name_params(name), CHAND_FOREVER);
}

/* Calls method and returns 1/0 from boolean key of the result, with
 * res[vkey] (when vkey) in *value. */
static int call_flag(chand_conn *c, const char *method, json_t *params,
                     int64_t timeout_ms, const char *key, const char *vkey,
                     json_t **value)
{
    json_t *res;
    int rc = chand__mcall(c, method, params, timeout_ms, &res);

    if (value)
        *value = NULL;
    if (rc < 0)
        return rc;
    if (!json_is_boolean(json_object_get(res, key))) {
        json_decref(res);
        return chand__seterr(&c->err, CHAND_EPROTO, 0, "",
                             "result lacks boolean \"%s\"", key);
    }
    rc = chand__get_bool(res, key) ? 1 : 0;
    if (vkey)
        chand__get_value(res, vkey, value);
    json_decref(res);
    return rc;
}

/* Calls method and reads integer key of the result into *out. */
int chand__call_int(chand_conn *c, const char *method, json_t *params,
                    int64_t timeout_ms, const char *key, int64_t *out)
{
    json_t *res;
    int rc = chand__mcall(c, method, params, timeout_ms, &res);

    if (rc == 0)
        rc = chand__get_int(c, res, key, out);
    json_decref(res);
    return rc;
}

/* ---- session ---- */

int chand_ping(chand_conn *c)
{
    return chand__call_void(c, "ping", json_object(), CHAND_FOREVER);
}

int chand_hello(chand_conn *c, json_t **result)
{
    return chand__mcall(c, "hello",
                        json_pack("{s:i}", "version", CHAND_PROTOCOL_VERSION),
                        CHAND_FOREVER, result);
}

/* ---- channels ---- */

int chand_make(chand_conn *c, const char *name, int64_t cap, const char *type)
{
    if (cap < 0)
        return c ? chand__seterr(&c->err, CHAND_EARG, 0, "",
                                 "negative capacity")
                 : CHAND_EARG;
    return chand__call_void(c, "make",
                            json_pack("{s:s, s:I, s:s}", "name", name, "cap",
                                      (json_int_t)cap, "type",
                                      type ? type : "any"),
                            CHAND_FOREVER);
}

json_t *chand__make_params(const char *name, int64_t cap,
                           const chand_chan_opts *o)
{
    const char *type = o && o->type ? o->type : "any";
    json_t *p;

    if (cap < 0)
        return NULL;
    p = json_pack("{s:s, s:I, s:s}", "name", name, "cap", (json_int_t)cap,
                  "type", type);
    if (p && o && o->max_deliver > 0 &&
        json_object_set_new(p, "max_deliver", json_integer(o->max_deliver)))
        p = (json_decref(p), NULL);
    if (p && o && o->dead_letter &&
        json_object_set_new(p, "dead_letter", json_string(o->dead_letter)))
        p = (json_decref(p), NULL);
    return p;
}

int chand_make_opts(chand_conn *c, const char *name, int64_t cap,
                    const chand_chan_opts *o)
{
    if (cap < 0)
        return c ? chand__seterr(&c->err, CHAND_EARG, 0, "",
                                 "negative capacity")
                 : CHAND_EARG;
    return chand__call_void(c, "make", chand__make_params(name, cap, o),
                            CHAND_FOREVER);
}

int chand_send(chand_conn *c, const char *name, json_t *value,
               int64_t timeout_ms)
{
    return chand__call_void(
        c, "send", json_pack("{s:s, s:O}", "name", name, "value", value),
        timeout_ms);
}

int chand_send_str(chand_conn *c, const char *name, const char *s,
                   int64_t timeout_ms)
{
    return chand__call_void(c, "send",
                            json_pack("{s:s, s:s}", "name", name, "value", s),
                            timeout_ms);
}

int chand_recv(chand_conn *c, const char *name, int64_t timeout_ms,
               json_t **value)
{
    return call_flag(c, "recv", name_params(name), timeout_ms, "ok", "value",
                     value);
}

int chand_recv_str(chand_conn *c, const char *name, int64_t timeout_ms,
                   char **out)
{
    json_t *v = NULL;
    int rc = chand_recv(c, name, timeout_ms, &v);

    if (out)
        *out = NULL;
    if (rc < 0)
        return rc;
    if (out) {
        if (json_is_string(v))
            *out = strdup(json_string_value(v));
        else
            *out = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!*out)
            rc = chand__seterr(&c->err, CHAND_ENOMEM, 0, "", "out of memory");
    }
    json_decref(v);
    return rc;
}

int chand_close(chand_conn *c, const char *name)
{
    return call_named(c, "close", name);
}

int chand_len(chand_conn *c, const char *name, int64_t *len, int64_t *cap)
{
    return chand_len_inflight(c, name, len, cap, NULL);
}

int chand_len_inflight(chand_conn *c, const char *name, int64_t *len,
                       int64_t *cap, int64_t *inflight)
{
    json_t *res;
    int rc = chand__mcall(c, "len", name_params(name), CHAND_FOREVER, &res);

    if (rc == 0)
        rc = chand__get_int(c, res, "len", len);
    if (rc == 0)
        rc = chand__get_int(c, res, "cap", cap);
    /* A daemon from before acknowledged delivery has nothing in flight. */
    if (rc == 0 && inflight)
        *inflight = json_integer_value(json_object_get(res, "inflight"));
    json_decref(res);
    return rc;
}

int chand_drop(chand_conn *c, const char *name)
{
    return call_named(c, "drop", name);
}

/* Walks method's pages (the server answers a page at a time; cursor 0:
 * the walk is done) with base's parameters (borrowed) plus the cursor,
 * gathering each page's key into all (an array extended, or an object
 * updated; stolen).  Returns 0 with *out = all, or a CHAND_E* code. */
static int call_pages(chand_conn *c, const char *method, const json_t *base,
                      const char *key, json_t *all, json_t **out)
{
    json_t *res = NULL;
    json_int_t cursor = 0;
    int rc = 0;

    if (!all)
        return CHAND_ENOMEM;
    do {
        json_t *p = json_copy((json_t *)base);
        if (p && json_object_set_new(p, "cursor", json_integer(cursor)) < 0) {
            json_decref(p);
            p = NULL;
        }
        rc = p ? chand_call(c, method, p, CHAND_FOREVER, &res) : CHAND_ENOMEM;
        json_decref(p);
        if (rc < 0)
            break;
        if (json_is_array(all))
            json_array_extend(all, json_object_get(res, key));
        else
            json_object_update(all, json_object_get(res, key));
        cursor = json_integer_value(json_object_get(res, "cursor"));
        json_decref(res);
    } while (cursor != 0);
    if (rc < 0) {
        json_decref(all);
        return rc;
    }
    *out = all;
    return 0;
}

int chand_list(chand_conn *c, const char *prefix, json_t **objects)
{
    json_t *base;
    int rc;

    if (!objects)
        return CHAND_EARG;
    *objects = NULL;
    base = prefix ? json_pack("{s:s}", "prefix", prefix) : json_object();
    if (!base)
        return CHAND_ENOMEM;
    rc = call_pages(c, "list", base, "objects", json_array(), objects);
    json_decref(base);
    return rc;
}

/* ---- Mutex and RWMutex ---- */

static int lock_common(chand_conn *c, const char *method, const char *name,
                       int64_t timeout_ms, int64_t lease_ms, int64_t *token,
                       bool *owner_dead)
{
    json_t *res, *p = name_params(name);
    int rc;

    if (p && lease_ms > 0)
        json_object_set_new(p, "lease_ms", json_integer(lease_ms));
    rc = chand__mcall(c, method, p, timeout_ms, &res);
    if (rc < 0)
        return rc;
    rc = chand__get_int(c, res, "token", token);
    if (owner_dead)
        *owner_dead = chand__get_bool(res, "owner_dead");
    json_decref(res);
    return rc;
}

static int unlock_common(chand_conn *c, const char *method, const char *name,
                         int64_t token)
{
    json_t *p = name_params(name);

    if (p && token >= 0)
        json_object_set_new(p, "token", json_integer(token));
    return chand__call_void(c, method, p, CHAND_FOREVER);
}

int chand_mutex_lock(chand_conn *c, const char *name, int64_t timeout_ms,
                     int64_t lease_ms, int64_t *token, bool *owner_dead)
{
    return lock_common(c, "mutex.lock", name, timeout_ms, lease_ms, token,
                       owner_dead);
}

int chand_mutex_unlock(chand_conn *c, const char *name, int64_t token)
{
    return unlock_common(c, "mutex.unlock", name, token);
}

int chand_rwmutex_lock(chand_conn *c, const char *name, int64_t timeout_ms,
                       int64_t lease_ms, int64_t *token, bool *owner_dead)
{
    return lock_common(c, "rwmutex.lock", name, timeout_ms, lease_ms, token,
                       owner_dead);
}

int chand_rwmutex_unlock(chand_conn *c, const char *name, int64_t token)
{
    return unlock_common(c, "rwmutex.unlock", name, token);
}

int chand_rwmutex_rlock(chand_conn *c, const char *name, int64_t timeout_ms,
                        int64_t lease_ms, int64_t *token, bool *owner_dead)
{
    return lock_common(c, "rwmutex.rlock", name, timeout_ms, lease_ms, token,
                       owner_dead);
}

int chand_rwmutex_runlock(chand_conn *c, const char *name, int64_t token)
{
    return unlock_common(c, "rwmutex.runlock", name, token);
}

/* ---- WaitGroup, Once, Cond ---- */

int chand_wg_add(chand_conn *c, const char *name, int64_t delta, int64_t *count)
{
    return chand__call_int(
        c, "wg.add",
        json_pack("{s:s, s:I}", "name", name, "delta", (json_int_t)delta),
        CHAND_FOREVER, "count", count);
}

int chand_wg_done(chand_conn *c, const char *name, int64_t *count)
{
    return chand__call_int(c, "wg.done", name_params(name), CHAND_FOREVER,
                           "count", count);
}

int chand_wg_wait(chand_conn *c, const char *name, int64_t timeout_ms)
{
    return chand__call_void(c, "wg.wait", name_params(name), timeout_ms);
}

int chand_once_do(chand_conn *c, const char *name, int64_t timeout_ms)
{
    return call_flag(c, "once.do", name_params(name), timeout_ms, "run", NULL,
                     NULL);
}

int chand_once_done(chand_conn *c, const char *name)
{
    return call_named(c, "once.done", name);
}

int chand_once_do_value(chand_conn *c, const char *name, int64_t timeout_ms,
                        json_t **value)
{
    int rc = call_flag(c, "once.do", name_params(name), timeout_ms, "run",
                       "value", value);

    if (rc == 1 && value) {
        json_decref(*value); /* a runner's answer has no value */
        *value = NULL;
    }
    return rc;
}

int chand_once_done_value(chand_conn *c, const char *name, json_t *value)
{
    return chand__call_void(c, "once.done",
                            json_pack("{s:s, s:O}", "name", name, "value",
                                      value ? value : json_null()),
                            CHAND_FOREVER);
}

int chand_cond_wait(chand_conn *c, const char *name, const char *mutex,
                    int64_t timeout_ms, int64_t *token)
{
    return chand__call_int(
        c, "cond.wait", json_pack("{s:s, s:s}", "name", name, "mutex", mutex),
        timeout_ms, "token", token);
}

int chand_cond_signal(chand_conn *c, const char *name)
{
    return call_named(c, "cond.signal", name);
}

int chand_cond_broadcast(chand_conn *c, const char *name)
{
    return call_named(c, "cond.broadcast", name);
}

/* ---- Pool ---- */

int chand_pool_put(chand_conn *c, const char *name, json_t *value)
{
    return chand__call_void(
        c, "pool.put", json_pack("{s:s, s:O}", "name", name, "value", value),
        CHAND_FOREVER);
}

int chand_pool_get(chand_conn *c, const char *name, json_t **value)
{
    return call_flag(c, "pool.get", name_params(name), CHAND_FOREVER, "ok",
                     "value", value);
}

/* ---- Map ---- */

int chand_map_store(chand_conn *c, const char *name, const char *key,
                    json_t *value)
{
    return chand__call_void(
        c, "map.store",
        json_pack("{s:s, s:s, s:O}", "name", name, "key", key, "value", value),
        CHAND_FOREVER);
}

int chand_map_load(chand_conn *c, const char *name, const char *key,
                   json_t **value)
{
    return call_flag(c, "map.load",
                     json_pack("{s:s, s:s}", "name", name, "key", key),
                     CHAND_FOREVER, "ok", "value", value);
}

int chand_map_delete(chand_conn *c, const char *name, const char *key)
{
    return chand__call_void(c, "map.delete",
                            json_pack("{s:s, s:s}", "name", name, "key", key),
                            CHAND_FOREVER);
}

int chand_map_load_or_store(chand_conn *c, const char *name, const char *key,
                            json_t *value, json_t **actual)
{
    return call_flag(
        c, "map.load_or_store",
        json_pack("{s:s, s:s, s:O}", "name", name, "key", key, "value", value),
        CHAND_FOREVER, "loaded", "value", actual);
}

int chand_map_load_and_delete(chand_conn *c, const char *name, const char *key,
                              json_t **value)
{
    return call_flag(c, "map.load_and_delete",
                     json_pack("{s:s, s:s}", "name", name, "key", key),
                     CHAND_FOREVER, "loaded", "value", value);
}

int chand_map_swap(chand_conn *c, const char *name, const char *key,
                   json_t *value, json_t **previous)
{
    return call_flag(
        c, "map.swap",
        json_pack("{s:s, s:s, s:O}", "name", name, "key", key, "value", value),
        CHAND_FOREVER, "loaded", "previous", previous);
}

int chand_map_compare_and_swap(chand_conn *c, const char *name, const char *key,
                               json_t *old, json_t *new_value)
{
    return call_flag(c, "map.compare_and_swap",
                     json_pack("{s:s, s:s, s:O, s:O}", "name", name, "key", key,
                               "old", old, "new", new_value),
                     CHAND_FOREVER, "swapped", NULL, NULL);
}

int chand_map_compare_and_delete(chand_conn *c, const char *name,
                                 const char *key, json_t *old)
{
    return call_flag(
        c, "map.compare_and_delete",
        json_pack("{s:s, s:s, s:O}", "name", name, "key", key, "old", old),
        CHAND_FOREVER, "deleted", NULL, NULL);
}

int chand_map_range(chand_conn *c, const char *name, json_t **entries)
{
    json_t *base;
    int rc;

    if (!entries || !name)
        return CHAND_EARG;
    *entries = NULL;
    base = json_pack("{s:s}", "name", name);
    if (!base)
        return CHAND_ENOMEM;
    rc = call_pages(c, "map.range", base, "entries", json_object(), entries);
    json_decref(base);
    return rc;
}

int chand_map_len(chand_conn *c, const char *name, int64_t *len)
{
    return chand__call_int(c, "map.len", name_params(name), CHAND_FOREVER,
                           "len", len);
}

int chand_map_clear(chand_conn *c, const char *name)
{
    return call_named(c, "map.clear", name);
}

/* ---- atomics ---- */

int chand_atomic_load(chand_conn *c, const char *name, int64_t *value)
{
    return chand__call_int(c, "atomic.load", name_params(name), CHAND_FOREVER,
                           "value", value);
}

int chand_atomic_store(chand_conn *c, const char *name, int64_t value)
{
    return chand__call_void(
        c, "atomic.store",
        json_pack("{s:s, s:I}", "name", name, "value", (json_int_t)value),
        CHAND_FOREVER);
}

int chand_atomic_add(chand_conn *c, const char *name, int64_t delta,
                     int64_t *value)
{
    return chand__call_int(
        c, "atomic.add",
        json_pack("{s:s, s:I}", "name", name, "delta", (json_int_t)delta),
        CHAND_FOREVER, "value", value);
}

int chand_atomic_swap(chand_conn *c, const char *name, int64_t value,
                      int64_t *old)
{
    return chand__call_int(
        c, "atomic.swap",
        json_pack("{s:s, s:I}", "name", name, "value", (json_int_t)value),
        CHAND_FOREVER, "old", old);
}

int chand_atomic_compare_and_swap(chand_conn *c, const char *name, int64_t old,
                                  int64_t new_value)
{
    return call_flag(c, "atomic.compare_and_swap",
                     json_pack("{s:s, s:I, s:I}", "name", name, "old",
                               (json_int_t)old, "new", (json_int_t)new_value),
                     CHAND_FOREVER, "swapped", NULL, NULL);
}

/* ---- timers ---- */

int chand_timer_after(chand_conn *c, const char *name, int64_t ms)
{
    return chand__call_void(
        c, "timer.after",
        json_pack("{s:s, s:I}", "name", name, "ms", (json_int_t)ms),
        CHAND_FOREVER);
}

int chand_timer_ticker(chand_conn *c, const char *name, int64_t ms)
{
    return chand__call_void(
        c, "timer.ticker",
        json_pack("{s:s, s:I}", "name", name, "ms", (json_int_t)ms),
        CHAND_FOREVER);
}

/* Go's Stop/Reset report whether the timer was still pending; a server
 * that does not say is taken as "not pending". */
static int call_pending(chand_conn *c, const char *method, json_t *p)
{
    json_t *res;
    int rc = chand__mcall(c, method, p, CHAND_FOREVER, &res);

    if (rc == 0) {
        json_t *v = json_object_get(res, "stopped");
        if (!v)
            v = json_object_get(res, "active");
        if (!v)
            v = json_object_get(res, "pending");
        rc = json_is_true(v) ? 1 : 0;
    }
    json_decref(res);
    return rc;
}

int chand_timer_stop(chand_conn *c, const char *name)
{
    return call_pending(c, "timer.stop", name_params(name));
}

int chand_timer_reset(chand_conn *c, const char *name, int64_t ms)
{
    return call_pending(
        c, "timer.reset",
        json_pack("{s:s, s:I}", "name", name, "ms", (json_int_t)ms));
}

/* Returns a new {method, params} object (params borrowed), or NULL. */
static json_t *inner_request(const char *method, json_t *params)
{
    if (!method || (params && !json_is_object(params)))
        return NULL;
    return params ? json_pack("{s:s, s:O}", "method", method, "params", params)
                  : json_pack("{s:s, s:{}}", "method", method, "params");
}

int chand_timer_afterfunc(chand_conn *c, int64_t ms, const char *method,
                          json_t *params, char **timer)
{
    json_t *req = inner_request(method, params), *res, *t;
    int rc;

    if (timer)
        *timer = NULL;
    rc = chand__mcall(
        c, "timer.afterfunc",
        req ? json_pack("{s:I, s:o}", "ms", (json_int_t)ms, "request", req)
            : NULL,
        CHAND_FOREVER, &res);
    if (rc < 0)
        return rc;
    t = json_object_get(res, "timer");
    if (timer && json_is_string(t))
        *timer = strdup(json_string_value(t));
    else if (timer && t)
        *timer = json_dumps(t, JSON_COMPACT | JSON_ENCODE_ANY);
    else if (timer)
        rc = chand__seterr(&c->err, CHAND_EPROTO, 0, "",
                           "result lacks \"timer\"");
    if (timer && t && !*timer)
        rc = chand__seterr(&c->err, CHAND_ENOMEM, 0, "", "out of memory");
    json_decref(res);
    return rc;
}

int chand_go(chand_conn *c, const char *method, json_t *params,
             int64_t *goroutine)
{
    json_t *req = inner_request(method, params);

    return chand__call_int(c, "go",
                           req ? json_pack("{s:o}", "request", req) : NULL,
                           CHAND_FOREVER, "goroutine", goroutine);
}

/* ---- runtime ---- */

int chand_stats(chand_conn *c, json_t **stats)
{
    return chand__mcall(c, "runtime.stats", json_object(), CHAND_FOREVER,
                        stats);
}

int chand_dump(chand_conn *c, json_t **dump)
{
    return chand__mcall(c, "runtime.dump", json_object(), CHAND_FOREVER, dump);
}

int chand_gomaxprocs(chand_conn *c, int64_t n, int64_t *previous)
{
    json_t *p = n >= 1 ? json_pack("{s:I}", "n", (json_int_t)n) : json_object();

    return chand__call_int(c, "runtime.gomaxprocs", p, CHAND_FOREVER,
                           "previous", previous);
}

/* ---- cluster ---- */

int chand_cluster_status(chand_conn *c, json_t **status)
{
    return chand__mcall(c, "cluster.status", json_object(), CHAND_FOREVER,
                        status);
}

int chand_cluster_add(chand_conn *c, uint64_t id, const char *address)
{
    const char *colon = address ? strrchr(address, ':') : NULL;
    char *client, *end, *host = NULL, raft[300];
    long rport = colon ? strtol(colon + 1, &end, 10) : 0;
    int cport = 0, rc;

    /* Raft ids are positive and JSON integers here are signed 64-bit. */
    if (c && (id == 0 || id > INT64_MAX))
        return chand__seterr(&c->err, CHAND_EARG, 0, "",
                             "node id must be 1 to %lld", (long long)INT64_MAX);
    if (!c)
        return CHAND_EARG;
    /* HOST:CLIENT_PORT:RAFT_PORT, as an entry of the cluster setting; the
     * wire has the two addresses apart. */
    if (!colon || colon[1] == '\0' || *end || rport < 1 || rport > 65535 ||
        !(client = strndup(address, (size_t)(colon - address))))
        return chand__seterr(&c->err, CHAND_EARG, 0, "",
                             "node address must be HOST:CLIENT_PORT:RAFT_PORT");
    rc = strchr(client, ':') ? chand_parse_address(client, &host, &cport)
                             : CHAND_EARG;
    if (rc == 0)
        snprintf(raft, sizeof raft, "%s:%ld", host, rport);
    free(host);
    if (rc < 0) {
        free(client);
        return chand__seterr(&c->err, rc, 0, "",
                             "node address must be HOST:CLIENT_PORT:RAFT_PORT");
    }
    rc = chand__call_void(c, "cluster.add",
                          json_pack("{s:I, s:s, s:s}", "id", (json_int_t)id,
                                    "raft", raft, "client", client),
                          CHAND_FOREVER);
    free(client);
    return rc;
}

int chand_cluster_remove(chand_conn *c, uint64_t id)
{
    if (c && (id == 0 || id > INT64_MAX))
        return chand__seterr(&c->err, CHAND_EARG, 0, "",
                             "node id must be 1 to %lld", (long long)INT64_MAX);
    return chand__call_void(c, "cluster.remove",
                            json_pack("{s:I}", "id", (json_int_t)id),
                            CHAND_FOREVER);
}
