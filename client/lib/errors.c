/*
 * errors.c - libchand's error vocabulary (codes, reasons, chand_strerror,
 * the chand_error a failure fills), shared with the asynchronous API, and
 * the small helpers every call uses (params, the clock).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* The Makefile passes its VERSION (chand's, one for everything). */
#ifndef CHAND_VERSION
#define CHAND_VERSION "1.0.0"
#endif

/* ------------------------------------------------------------------ */
/* Errors                                                             */
/* ------------------------------------------------------------------ */

static const struct {
    const char *reason;
    int code;
    const char *text;
} chand_errors[] = {
    {"closed", CHAND_ECLOSED, "channel closed"},
    {"timeout", CHAND_ETIMEOUT, "timed out"},
    {"not_found", CHAND_ENOTFOUND, "no such object"},
    {"exists", CHAND_EEXISTS, "object exists"},
    {"wrong_type", CHAND_EWRONGTYPE, "wrong type"},
    {"negative_counter", CHAND_ENEGATIVE, "negative WaitGroup counter"},
    {"not_locked", CHAND_ENOTLOCKED, "not locked"},
    {"deadlock", CHAND_EDEADLOCK, "deadlock"},
    {"too_large", CHAND_ETOOLARGE, "too large"},
    {"limit", CHAND_ELIMIT, "server limit reached"},
    {"cancelled", CHAND_ECANCELLED, "cancelled"},
    {"misuse", CHAND_EMISUSE, "misuse"},
    {"invalid", CHAND_EINVALID, "invalid request"},
    {"unauthenticated", CHAND_EUNAUTH, "not authenticated"},
    {"denied", CHAND_EDENIED, "denied by the user's rules"},
    {"not_pending", CHAND_ENOTPENDING, "delivery not pending"},
    {"not_leader", CHAND_ENOTLEADER, "not the cluster leader"},
    {NULL, CHAND_ESERVER, "server error"},
    {NULL, CHAND_ECONNECT, "cannot connect"},
    {NULL, CHAND_ECONN, "connection lost"},
    {NULL, CHAND_EPROTO, "protocol error"},
    {NULL, CHAND_ENOMEM, "out of memory"},
    {NULL, CHAND_EARG, "invalid argument"},
};
#define CHAND_NERRORS (sizeof chand_errors / sizeof chand_errors[0])

const char *chand_strerror(int code)
{
    if (code == 0)
        return "success";
    for (size_t i = 0; i < CHAND_NERRORS; i++)
        if (chand_errors[i].code == code)
            return chand_errors[i].text;
    return "unknown error";
}

int chand_code_from_reason(const char *reason)
{
    if (!reason)
        return CHAND_ESERVER;
    for (size_t i = 0; i < CHAND_NERRORS && chand_errors[i].reason; i++)
        if (strcmp(chand_errors[i].reason, reason) == 0)
            return chand_errors[i].code;
    return CHAND_ESERVER;
}

const char *chand_version(void)
{
    return CHAND_VERSION;
}

int chand__seterr(chand_error *err, int code, int rpc_code, const char *reason,
                  const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return code;
    err->code = code;
    err->rpc_code = rpc_code;
    snprintf(err->reason, sizeof err->reason, "%s", reason ? reason : "");
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return code;
}

int chand__answer_error(const proto_answer *ans, chand_error *err)
{
    json_t *r = json_object_get(ans->data, "reason");
    const char *reason = json_is_string(r) ? json_string_value(r) : NULL;
    int code;

    if (reason)
        code = chand_code_from_reason(reason);
    else if (ans->code <= -32600 && ans->code >= -32700)
        code = CHAND_EINVALID; /* JSON-RPC's own errors */
    else
        code = CHAND_ESERVER;
    return chand__seterr(err, code, ans->code, reason ? reason : "", "%s",
                         ans->message ? ans->message : "");
}

json_t *chand__params(const char *method, json_t *params, int64_t timeout_ms)
{
    const proto_method *m = proto_method_find(method);
    json_t *p;

    if (params && !json_is_object(params))
        return NULL;
    p = params ? json_copy(params) : json_object();
    if (!p)
        return NULL;
    /* Only blocking methods accept timeout_ms: the server rejects unknown
     * parameters.  An unknown method gets it too; the server will answer
     * "method not found" anyway. */
    if (timeout_ms >= 0 && (!m || m->blocking)) {
        if (json_object_set_new(p, "timeout_ms", json_integer(timeout_ms))) {
            json_decref(p);
            return NULL;
        }
    }
    return p;
}

int64_t chand__now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ */
