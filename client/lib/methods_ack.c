/*
 * methods_ack.c - the blocking calls of select and of acknowledged
 * delivery (PROTOCOL.md "Acknowledged delivery"): select's cases, recv with
 * ack, ack, nack, touch and term, and the parameter builders the
 * asynchronous calls (async_ack.c) share.  The call and result helpers
 * are methods.c's.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One select case as the wire has it, or NULL for a bad case (a
 * CHAND_RECV_ACK case only when ack is allowed). */
static json_t *select_case(const chand_case *cs, bool ack, int64_t ack_wait_ms)
{
    json_t *j;

    if (cs->dir == CHAND_RECV)
        return json_pack("{s:s}", "recv", cs->name);
    if (cs->dir == CHAND_SEND)
        return json_pack("{s:s, s:O}", "send", cs->name, "value", cs->value);
    if (cs->dir != CHAND_RECV_ACK || !ack)
        return NULL;
    j = json_pack("{s:s, s:b}", "recv", cs->name, "ack", 1);
    if (j && ack_wait_ms > 0 &&
        json_object_set_new(j, "ack_wait_ms", json_integer(ack_wait_ms))) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

json_t *chand__select_params(const chand_case *cases, size_t n,
                             bool has_default, bool ack, int64_t ack_wait_ms,
                             size_t *bad)
{
    json_t *arr = json_array(), *p;

    *bad = n;
    for (size_t i = 0; arr && i < n; i++) {
        json_t *cs = select_case(&cases[i], ack, ack_wait_ms);
        if (!cs || json_array_append_new(arr, cs)) {
            json_decref(arr);
            *bad = i;
            return NULL;
        }
    }
    p = json_pack("{s:o}", "cases", arr); /* steals arr, even on failure */
    if (p && has_default && json_object_set_new(p, "default", json_true())) {
        json_decref(p);
        p = NULL;
    }
    return p;
}

/* chand_select and chand_select_ack: ack allows CHAND_RECV_ACK cases. */
static int select_common(chand_conn *c, const chand_case *cases, size_t n,
                         bool has_default, bool ack, int64_t ack_wait_ms,
                         int64_t timeout_ms, int *index, json_t **value,
                         bool *ok, int64_t *id, int64_t *attempt)
{
    json_t *res, *p;
    int64_t idx;
    size_t bad;
    int rc;

    if (value)
        *value = NULL;
    if (id)
        *id = 0;
    if (attempt)
        *attempt = 0;
    if (!c)
        return CHAND_EARG;
    if (!cases && n > 0)
        return chand__seterr(&c->err, CHAND_EARG, 0, "", "cases is NULL");
    p = chand__select_params(cases, n, has_default, ack, ack_wait_ms, &bad);
    if (!p)
        return bad < n ? chand__seterr(&c->err, CHAND_EARG, 0, "",
                                       "bad select case %zu", bad)
                       : chand__seterr(&c->err, CHAND_ENOMEM, 0, "",
                                       "out of memory");
    rc = chand__mcall(c, "select", p, timeout_ms, &res);
    if (rc < 0)
        return rc;
    rc = chand__get_int(c, res, "index", &idx);
    if (rc == 0 && (idx < -1 || idx >= (int64_t)n))
        rc = chand__seterr(&c->err, CHAND_EPROTO, 0, "",
                           "select index %lld out of range", (long long)idx);
    if (rc == 0 && idx >= 0 && cases[idx].dir == CHAND_RECV_ACK &&
        chand__get_bool(res, "ok") && chand__delivery(res, id, attempt) < 0)
        rc = chand__seterr(&c->err, CHAND_EPROTO, 0, "",
                           "select result lacks a delivery");
    if (rc == 0) {
        if (index)
            *index = (int)idx;
        if (ok)
            *ok = chand__get_bool(res, "ok");
        if (idx >= 0 && cases[idx].dir != CHAND_SEND)
            chand__get_value(res, "value", value);
    }
    json_decref(res);
    return rc;
}

int chand_select(chand_conn *c, const chand_case *cases, size_t n,
                 bool has_default, int64_t timeout_ms, int *index,
                 json_t **value, bool *ok)
{
    return select_common(c, cases, n, has_default, false, 0, timeout_ms, index,
                         value, ok, NULL, NULL);
}

int chand_select_ack(chand_conn *c, const chand_case *cases, size_t n,
                     bool has_default, int64_t ack_wait_ms, int64_t timeout_ms,
                     int *index, json_t **value, bool *ok, int64_t *id,
                     int64_t *attempt)
{
    return select_common(c, cases, n, has_default, true, ack_wait_ms,
                         timeout_ms, index, value, ok, id, attempt);
}

/* ---- acknowledged delivery ---- */

int chand__delivery(json_t *res, int64_t *id, int64_t *attempt)
{
    json_t *d = json_object_get(res, "delivery");
    json_t *i = json_object_get(d, "id"), *a = json_object_get(d, "attempt");

    if (!json_is_integer(i) || !json_is_integer(a))
        return -1;
    if (id)
        *id = json_integer_value(i);
    if (attempt)
        *attempt = json_integer_value(a);
    return 0;
}

json_t *chand__recv_ack_params(const char *name, int64_t ack_wait_ms)
{
    json_t *p = json_pack("{s:s, s:b}", "name", name, "ack", 1);

    if (p && ack_wait_ms > 0 &&
        json_object_set_new(p, "ack_wait_ms", json_integer(ack_wait_ms))) {
        json_decref(p);
        return NULL;
    }
    return p;
}

json_t *chand__settle_params(const char *name, int64_t id, const char *key,
                             int64_t n, const char *reason)
{
    json_t *p = json_pack("{s:s, s:I}", "name", name, "id", (json_int_t)id);

    if (!p)
        return NULL;
    if (key && n > 0 && json_object_set_new(p, key, json_integer(n)))
        goto fail;
    if (reason && json_object_set_new(p, "reason", json_string(reason)))
        goto fail;
    return p;
fail:
    json_decref(p);
    return NULL;
}

int chand_recv_ack(chand_conn *c, const char *name, int64_t ack_wait_ms,
                   int64_t timeout_ms, json_t **value, int64_t *id,
                   int64_t *attempt)
{
    json_t *res;
    int rc;

    if (value)
        *value = NULL;
    if (id)
        *id = 0;
    if (attempt)
        *attempt = 0;
    rc = chand__mcall(c, "recv", chand__recv_ack_params(name, ack_wait_ms),
                      timeout_ms, &res);
    if (rc < 0)
        return rc;
    if (!json_is_boolean(json_object_get(res, "ok")))
        rc = chand__seterr(&c->err, CHAND_EPROTO, 0, "",
                           "result lacks boolean \"ok\"");
    else if (!chand__get_bool(res, "ok"))
        rc = 0;
    else if (chand__delivery(res, id, attempt) < 0)
        rc = chand__seterr(&c->err, CHAND_EPROTO, 0, "",
                           "recv result lacks a delivery");
    else
        rc = 1;
    if (rc >= 0)
        chand__get_value(res, "value", value);
    json_decref(res);
    return rc;
}

int chand_ack(chand_conn *c, const char *name, int64_t id)
{
    return chand__call_void(
        c, "ack", chand__settle_params(name, id, NULL, 0, NULL), CHAND_FOREVER);
}

int chand_nack(chand_conn *c, const char *name, int64_t id, int64_t delay_ms,
               const char *reason)
{
    return chand__call_void(
        c, "nack", chand__settle_params(name, id, "delay_ms", delay_ms, reason),
        CHAND_FOREVER);
}

int chand_touch(chand_conn *c, const char *name, int64_t id,
                int64_t ack_wait_ms, int64_t *granted)
{
    return chand__call_int(
        c, "touch",
        chand__settle_params(name, id, "ack_wait_ms", ack_wait_ms, NULL),
        CHAND_FOREVER, "ack_wait_ms", granted);
}

int chand_term(chand_conn *c, const char *name, int64_t id, const char *reason)
{
    return chand__call_void(c, "term",
                            chand__settle_params(name, id, NULL, 0, reason),
                            CHAND_FOREVER);
}
