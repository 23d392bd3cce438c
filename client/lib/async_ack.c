/*
 * async_ack.c - acknowledged delivery on the asynchronous API: recv with
 * ack (its answer unpacked into value, id and attempt for a
 * chand_delivery_cb) and ack, nack, touch, term.  Built on
 * chand_async_call only; the parameters are the blocking calls' own
 * (methods.c), so both APIs send the same requests.
 */
#include "internal.h"

#include <stdlib.h>

/* What chand_async_recv_ack remembers until its answer: owned by the
 * request, freed by recv_ack_reply (which runs exactly once). */
typedef struct recv_ack_req {
    chand_delivery_cb cb;
    void *arg;
} recv_ack_req;

static void recv_ack_reply(chand_async *a, int rc, json_t *result,
                           const chand_error *err, void *arg)
{
    recv_ack_req *r = arg;
    chand_error perr;
    int64_t id = 0, attempt = 0;
    json_t *value = NULL;

    if (rc == 0) {
        json_t *ok = json_object_get(result, "ok");
        value = json_object_get(result, "value");
        if (!json_is_boolean(ok))
            rc = chand__seterr(&perr, CHAND_EPROTO, 0, "",
                               "result lacks boolean \"ok\"");
        else if (json_is_true(ok) && chand__delivery(result, &id, &attempt) < 0)
            rc = chand__seterr(&perr, CHAND_EPROTO, 0, "",
                               "recv result lacks a delivery");
        else
            rc = json_is_true(ok) ? 1 : 0;
        if (rc < 0) {
            err = &perr;
            value = NULL;
        }
    }
    if (r->cb)
        r->cb(a, rc, value, id, attempt, rc < 0 ? err : NULL, r->arg);
    free(r);
}

int chand_async_recv_ack(chand_async *a, const char *name, int64_t ack_wait_ms,
                         int64_t timeout_ms, chand_delivery_cb cb, void *arg)
{
    json_t *p = chand__recv_ack_params(name, ack_wait_ms);
    recv_ack_req *r;
    int rc;

    if (!p)
        return CHAND_EARG;
    r = malloc(sizeof *r);
    if (!r) {
        json_decref(p);
        return CHAND_ENOMEM;
    }
    r->cb = cb;
    r->arg = arg;
    rc = chand_async_call(a, "recv", p, timeout_ms, recv_ack_reply, r);
    if (rc < 0)
        free(r);
    return rc;
}

/* Sends method with params (stolen; NULL: a bad name or no memory). */
static int settle(chand_async *a, const char *method, json_t *params,
                  chand_reply_cb cb, void *arg)
{
    if (!params)
        return CHAND_EARG;
    return chand_async_call(a, method, params, CHAND_FOREVER, cb, arg);
}

int chand_async_ack(chand_async *a, const char *name, int64_t id,
                    chand_reply_cb cb, void *arg)
{
    return settle(a, "ack", chand__settle_params(name, id, NULL, 0, NULL), cb,
                  arg);
}

int chand_async_nack(chand_async *a, const char *name, int64_t id,
                     int64_t delay_ms, const char *reason, chand_reply_cb cb,
                     void *arg)
{
    return settle(a, "nack",
                  chand__settle_params(name, id, "delay_ms", delay_ms, reason),
                  cb, arg);
}

int chand_async_touch(chand_async *a, const char *name, int64_t id,
                      int64_t ack_wait_ms, chand_reply_cb cb, void *arg)
{
    return settle(
        a, "touch",
        chand__settle_params(name, id, "ack_wait_ms", ack_wait_ms, NULL), cb,
        arg);
}

int chand_async_term(chand_async *a, const char *name, int64_t id,
                     const char *reason, chand_reply_cb cb, void *arg)
{
    return settle(a, "term", chand__settle_params(name, id, NULL, 0, reason),
                  cb, arg);
}
