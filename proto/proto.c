/*
 * proto.c - chand's wire protocol: the method table, request parsing and
 * validation, error codes and reasons, and answer building/reading.  The
 * single-pass scanner of the common request is scan.c's, success lines
 * written straight to text answer.c's.
 *
 * Both sides link this file: the daemon checks every request with it before
 * a handler sees it (so handlers may trust parameter names and types), and
 * libchand builds requests and reads answers with it.  Nothing here blocks,
 * allocates beyond jansson values, or knows about sockets or the runtime.
 */
#include "proto_internal.h"

#include "jfast.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Reasons and codes                                                  */
/* ------------------------------------------------------------------ */

static const char *const proto_reason_names[PROTO_R_COUNT] = {
    [PROTO_R_NONE] = NULL,
    [PROTO_R_CLOSED] = "closed",
    [PROTO_R_TIMEOUT] = "timeout",
    [PROTO_R_NOT_FOUND] = "not_found",
    [PROTO_R_EXISTS] = "exists",
    [PROTO_R_WRONG_TYPE] = "wrong_type",
    [PROTO_R_NEGATIVE_COUNTER] = "negative_counter",
    [PROTO_R_NOT_LOCKED] = "not_locked",
    [PROTO_R_DEADLOCK] = "deadlock",
    [PROTO_R_TOO_LARGE] = "too_large",
    [PROTO_R_LIMIT] = "limit",
    [PROTO_R_CANCELLED] = "cancelled",
    [PROTO_R_MISUSE] = "misuse",
    [PROTO_R_INVALID] = "invalid",
    [PROTO_R_INTERNAL] = "internal",
    [PROTO_R_UNAUTHENTICATED] = "unauthenticated",
    [PROTO_R_DENIED] = "denied",
    [PROTO_R_NOT_PENDING] = "not_pending",
    [PROTO_R_NOT_LEADER] = "not_leader",
};

const char *proto_reason_name(proto_reason r)
{
    if (r <= PROTO_R_NONE || r >= PROTO_R_COUNT)
        return NULL;
    return proto_reason_names[r];
}

proto_reason proto_reason_from_name(const char *name)
{
    if (!name)
        return PROTO_R_NONE;
    for (int r = 1; r < PROTO_R_COUNT; r++)
        if (strcmp(proto_reason_names[r], name) == 0)
            return (proto_reason)r;
    return PROTO_R_NONE;
}

int proto_reason_code(proto_reason r)
{
    return PROTO_APP_CODE_BASE - (int)r;
}

int proto_error_set(proto_error *err, int code, proto_reason reason,
                    const char *fmt, ...)
{
    if (!err)
        return -1;
    va_list ap;
    err->code = code;
    err->reason = reason;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* ------------------------------------------------------------------ */
/* The method table                                                   */
/* ------------------------------------------------------------------ */

#define P(n, t, r)                                                             \
    {                                                                          \
        (n), PROTO_T_##t, (r)                                                  \
    }
#define NAME P("name", NAME, true)
#define REQ true
#define OPT false

/* Kept in the order of PROTOCOL.md.  `id` is filled by position below; the
 * daemon's handler table refers to methods by name. */
proto_method proto__table[] = {
    {"hello",
     0,
     false,
     {P("version", INT, REQ), P("heartbeat_ms", UINT, OPT),
      P("user", STRING, OPT), P("password", STRING, OPT)}},
    {"ping", 0, false, {{0}}},
    {"auth", 0, false, {P("user", STRING, REQ), P("password", STRING, REQ)}},
    /* channels */
    {"make",
     0,
     false,
     {NAME, P("cap", UINT, OPT), P("type", STRING, OPT),
      P("max_deliver", UINT, OPT), P("dead_letter", NAME, OPT)}},
    {"send", 0, true, {NAME, P("value", ANY, REQ)}},
    {"recv", 0, true, {NAME, P("ack", BOOL, OPT), P("ack_wait_ms", UINT, OPT)}},
    {"close", 0, false, {NAME}},
    {"len", 0, false, {NAME}},
    {"drop", 0, false, {NAME}},
    {"list",
     0,
     false,
     {P("prefix", STRING, OPT), P("cursor", UINT, OPT), P("limit", UINT, OPT)}},
    {"select", 0, true, {P("cases", CASES, REQ), P("default", BOOL, OPT)}},
    /* acknowledged delivery */
    {"ack", 0, false, {NAME, P("id", UINT, REQ)}},
    {"nack",
     0,
     false,
     {NAME, P("id", UINT, REQ), P("delay_ms", UINT, OPT),
      P("reason", STRING, OPT)}},
    {"touch",
     0,
     false,
     {NAME, P("id", UINT, REQ), P("ack_wait_ms", UINT, OPT)}},
    {"term", 0, false, {NAME, P("id", UINT, REQ), P("reason", STRING, OPT)}},
    /* locks */
    {"mutex.lock", 0, true, {NAME, P("lease_ms", UINT, OPT)}},
    {"mutex.unlock", 0, false, {NAME, P("token", UINT, OPT)}},
    {"rwmutex.lock", 0, true, {NAME, P("lease_ms", UINT, OPT)}},
    {"rwmutex.unlock", 0, false, {NAME, P("token", UINT, OPT)}},
    {"rwmutex.rlock", 0, true, {NAME, P("lease_ms", UINT, OPT)}},
    {"rwmutex.runlock", 0, false, {NAME, P("token", UINT, OPT)}},
    {"mutex.renew",
     0,
     false,
     {NAME, P("token", UINT, REQ), P("lease_ms", UINT, REQ)}},
    {"rwmutex.renew",
     0,
     false,
     {NAME, P("token", UINT, REQ), P("lease_ms", UINT, REQ)}},
    {"cond.wait", 0, true, {NAME, P("mutex", NAME, REQ)}},
    {"cond.signal", 0, false, {NAME}},
    {"cond.broadcast", 0, false, {NAME}},
    /* WaitGroup, Once, Pool */
    {"wg.add", 0, false, {NAME, P("delta", INT, REQ)}},
    {"wg.done", 0, false, {NAME}},
    {"wg.wait", 0, true, {NAME}},
    {"once.do", 0, true, {NAME, P("lease_ms", UINT, OPT)}},
    {"once.done", 0, false, {NAME, P("value", ANY, OPT)}},
    {"pool.put", 0, false, {NAME, P("value", ANY, REQ)}},
    {"pool.get", 0, false, {NAME}},
    /* sync.Map */
    {"map.store",
     0,
     false,
     {NAME, P("key", STRING, REQ), P("value", ANY, REQ)}},
    {"map.load", 0, false, {NAME, P("key", STRING, REQ)}},
    {"map.delete", 0, false, {NAME, P("key", STRING, REQ)}},
    {"map.load_or_store",
     0,
     false,
     {NAME, P("key", STRING, REQ), P("value", ANY, REQ)}},
    {"map.load_and_delete", 0, false, {NAME, P("key", STRING, REQ)}},
    {"map.swap", 0, false, {NAME, P("key", STRING, REQ), P("value", ANY, REQ)}},
    {"map.compare_and_swap",
     0,
     false,
     {NAME, P("key", STRING, REQ), P("old", ANY, REQ), P("new", ANY, REQ)}},
    {"map.compare_and_delete",
     0,
     false,
     {NAME, P("key", STRING, REQ), P("old", ANY, REQ)}},
    {"map.range",
     0,
     false,
     {NAME, P("cursor", UINT, OPT), P("limit", UINT, OPT)}},
    {"map.len", 0, false, {NAME}},
    {"map.clear", 0, false, {NAME}},
    /* sync/atomic */
    {"atomic.load", 0, false, {NAME}},
    {"atomic.store", 0, false, {NAME, P("value", INT, REQ)}},
    {"atomic.add", 0, false, {NAME, P("delta", INT, REQ)}},
    {"atomic.swap", 0, false, {NAME, P("value", INT, REQ)}},
    {"atomic.compare_and_swap",
     0,
     false,
     {NAME, P("old", INT, REQ), P("new", INT, REQ)}},
    /* time */
    {"timer.after", 0, false, {NAME, P("ms", UINT, REQ)}},
    {"timer.ticker", 0, false, {NAME, P("ms", UINT, REQ)}},
    {"timer.stop", 0, false, {NAME}},
    {"timer.reset", 0, false, {NAME, P("ms", UINT, REQ)}},
    {"timer.afterfunc",
     0,
     false,
     {P("ms", UINT, REQ), P("request", OBJECT, REQ)}},
    /* goroutines and the runtime */
    {"go", 0, false, {P("request", OBJECT, REQ)}},
    {"runtime.stats", 0, false, {{0}}},
    {"runtime.gomaxprocs", 0, false, {P("n", UINT, OPT)}},
    {"runtime.dump", 0, false, {{0}}},
    /* replication (issue 19) */
    {"cluster.status", 0, false, {{0}}},
    {"cluster.add",
     0,
     false,
     {P("id", UINT, REQ), P("raft", STRING, REQ), P("client", STRING, OPT)}},
    {"cluster.remove", 0, false, {P("id", UINT, REQ)}},
    {"cluster.transfer", 0, false, {P("id", UINT, REQ)}},
};

#undef P
#undef NAME
#undef REQ
#undef OPT

#define PROTO_NMETHODS (sizeof proto__table / sizeof proto__table[0])

static json_t *proto_empty_params;
size_t proto__method_len[PROTO_NMETHODS]; /* strlen of each name */
/* strlen of each parameter name, by method and parameter index */
uint8_t proto__param_len[PROTO_NMETHODS][PROTO_MAX_PARAMS];
/* Open-addressed index of the names for proto_method_findn: table index
 * + 1, 0 = empty.  256 slots for ~60 names keeps probes short. */
uint8_t proto__method_slot[256];

/* Numbers the table and makes the shared empty params object before any
 * thread can look at them, so that no lookup writes shared memory. */
__attribute__((constructor)) static void proto_table_init(void)
{
    _Static_assert(PROTO_NMETHODS < 128, "proto__method_slot is too small");
    for (size_t i = 0; i < PROTO_NMETHODS; i++) {
        unsigned h;
        proto__table[i].id = (int)i;
        proto__method_len[i] = strlen(proto__table[i].name);
        for (int j = 0; j < PROTO_MAX_PARAMS && proto__table[i].params[j].name;
             j++)
            proto__param_len[i][j] =
                (uint8_t)strlen(proto__table[i].params[j].name);
        h = proto__method_hash(proto__table[i].name, proto__method_len[i]);
        while (proto__method_slot[h])
            h = (h + 1) & 255;
        proto__method_slot[h] = (uint8_t)(i + 1);
    }
    proto_empty_params = json_object();
}

const proto_method *proto_methods(size_t *n)
{
    if (n)
        *n = PROTO_NMETHODS;
    return proto__table;
}

const proto_method *proto_method_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < PROTO_NMETHODS; i++)
        if (strcmp(proto__table[i].name, name) == 0)
            return &proto__table[i];
    return NULL;
}

const char *proto_ptype_name(proto_ptype t)
{
    switch (t) {
    case PROTO_T_STRING:
        return "a string";
    case PROTO_T_NAME:
        return "a name (1-255 bytes of printable UTF-8)";
    case PROTO_T_INT:
        return "an integer";
    case PROTO_T_UINT:
        return "a non-negative integer";
    case PROTO_T_ANY:
        return "any JSON value";
    case PROTO_T_OBJECT:
        return "an object";
    case PROTO_T_ARRAY:
    case PROTO_T_CASES:
        return "an array";
    case PROTO_T_BOOL:
        return "a boolean";
    }
    return "?";
}

/* ------------------------------------------------------------------ */
/* Parsing                                                            */
/* ------------------------------------------------------------------ */

int proto_json_depth(const char *text, size_t len, int limit)
{
    int depth = 0, max = 0;
    bool in_str = false, esc = false;

    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_str) {
            if (esc)
                esc = false;
            else if (c == '\\')
                esc = true;
            else if (c == '"')
                in_str = false;
            continue;
        }
        if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max) {
                max = depth;
                if (max > limit)
                    return max;
            }
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return max;
}

bool proto_name_valid(const char *s, size_t len)
{
    if (len == 0 || len > PROTO_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return false;
        /* C1 controls U+0080..U+009F are encoded as C2 80..C2 9F. */
        if (c == 0xc2 && i + 1 < len && (unsigned char)s[i + 1] < 0xa0)
            return false;
    }
    return true;
}

json_t *proto_parse_line(const char *line, size_t len, const proto_limits *lim,
                         proto_error *err)
{
    size_t max_line =
        lim && lim->max_line ? lim->max_line : PROTO_MAX_LINE_DEFAULT;
    int max_depth =
        lim && lim->max_depth ? lim->max_depth : PROTO_MAX_DEPTH_DEFAULT;
    json_error_t jerr;
    json_t *v;

    if (len > max_line) {
        proto_error_set(err, proto_reason_code(PROTO_R_TOO_LARGE),
                        PROTO_R_TOO_LARGE, "line of %zu bytes exceeds %zu", len,
                        max_line);
        return NULL;
    }
    /* PROTOCOL.md: a line ends with \n alone.  JSON would take the \r as
     * whitespace, so refuse it here, where the framing rule lives. */
    if (len > 0 && line[len - 1] == '\r') {
        proto_error_set(err, PROTO_PARSE_ERROR, PROTO_R_INVALID,
                        "parse error: line ends with \\r (lines end with "
                        "\\n alone)");
        return NULL;
    }
    /* Checked before parsing, so that deep input never reaches jansson's
     * recursive parser and the answer names the real cause. */
    if (proto_json_depth(line, len, max_depth) > max_depth) {
        proto_error_set(err, proto_reason_code(PROTO_R_TOO_LARGE),
                        PROTO_R_TOO_LARGE, "JSON nesting deeper than %d",
                        max_depth);
        return NULL;
    }
    /* The fast parser takes the usual request and declines the rest
     * (reals, errors, ...); jansson then decides, and words the error. */
    v = jfast_parse(line, len);
    if (v)
        return v;
    v = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!v) {
        proto_error_set(err, PROTO_PARSE_ERROR, PROTO_R_INVALID,
                        "parse error: %s at column %d", jerr.text, jerr.column);
        return NULL;
    }
    return v;
}

int proto_param_index(const proto_method *m, const char *key)
{
    /* The first byte first: handlers look names up on every request. */
    for (int i = 0; i < PROTO_MAX_PARAMS && m->params[i].name; i++)
        if (m->params[i].name[0] == key[0] &&
            strcmp(m->params[i].name, key) == 0)
            return i;
    return -1;
}

static const proto_param *proto_param_find(const proto_method *m,
                                           const char *key)
{
    int i = proto_param_index(m, key);
    return i < 0 ? NULL : &m->params[i];
}

int proto_check_request(json_t *msg, proto_request *req, proto_error *err)
{
    const char *key, *method;
    json_t *v, *jsonrpc, *params;

    memset(req, 0, sizeof *req);
    req->timeout_ms = -1;
    if (!json_is_object(msg))
        return proto_error_set(err, PROTO_INVALID_REQUEST, PROTO_R_INVALID,
                               "invalid request: not an object");
    v = json_object_get(msg, "id");
    if (v) {
        if (!json_is_string(v) && !json_is_number(v) && !json_is_null(v))
            return proto_error_set(err, PROTO_INVALID_REQUEST, PROTO_R_INVALID,
                                   "invalid request: id must be a string, "
                                   "a number or null");
        req->id = v;
    }
    json_object_foreach(msg, key, v)
    {
        if (strcmp(key, "jsonrpc") && strcmp(key, "id") &&
            strcmp(key, "method") && strcmp(key, "params"))
            return proto_error_set(err, PROTO_INVALID_REQUEST, PROTO_R_INVALID,
                                   "invalid request: unknown member \"%.64s\"",
                                   key);
    }
    jsonrpc = json_object_get(msg, "jsonrpc");
    if (!json_is_string(jsonrpc) ||
        strcmp(json_string_value(jsonrpc), "2.0") != 0)
        return proto_error_set(err, PROTO_INVALID_REQUEST, PROTO_R_INVALID,
                               "invalid request: jsonrpc must be \"2.0\"");
    v = json_object_get(msg, "method");
    if (!json_is_string(v))
        return proto_error_set(err, PROTO_INVALID_REQUEST, PROTO_R_INVALID,
                               "invalid request: method must be a string");
    method = json_string_value(v);
    req->method = proto_method_find(method);
    if (!req->method)
        return proto_error_set(err, PROTO_METHOD_NOT_FOUND, PROTO_R_INVALID,
                               "method not found: %.64s", method);

    params = json_object_get(msg, "params");
    if (!params) {
        /* A shared empty object: never modified, so sharing is safe. */
        params = proto_empty_params;
    } else if (!json_is_object(params)) {
        req->method = NULL;
        return proto_error_set(err, PROTO_INVALID_PARAMS, PROTO_R_INVALID,
                               "invalid params: params must be an object "
                               "(by name)");
    }
    req->params = params;

    json_object_foreach(params, key, v)
    {
        const proto_param *p = proto_param_find(req->method, key);
        if (!p && req->method->blocking && strcmp(key, "timeout_ms") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 0)
                return proto_error_set(err, PROTO_INVALID_PARAMS,
                                       PROTO_R_INVALID,
                                       "invalid params: timeout_ms must be "
                                       "a non-negative integer");
            if (json_integer_value(v) > PROTO_MAX_MS)
                return proto_error_set(err, PROTO_INVALID_PARAMS,
                                       PROTO_R_INVALID,
                                       "invalid params: timeout_ms exceeds "
                                       "%lld",
                                       (long long)PROTO_MAX_MS);
            req->timeout_ms = json_integer_value(v);
            continue;
        }
        if (!p)
            return proto_error_set(err, PROTO_INVALID_PARAMS, PROTO_R_INVALID,
                                   "invalid params: %s takes no \"%.64s\"",
                                   method, key);
        if (!proto__type_ok(p, v))
            return proto_error_set(err, PROTO_INVALID_PARAMS, PROTO_R_INVALID,
                                   "invalid params: %s must be %s", key,
                                   proto_ptype_name(p->type));
        req->args[p - req->method->params] = v;
        /* Durations become nanoseconds added to a clock: bound them so
         * that no handler's ms * 1000000 overflows. */
        size_t kl = strlen(key);
        if (kl >= 2 && strcmp(key + kl - 2, "ms") == 0 && json_is_integer(v) &&
            json_integer_value(v) > PROTO_MAX_MS)
            return proto_error_set(err, PROTO_INVALID_PARAMS, PROTO_R_INVALID,
                                   "invalid params: %s exceeds %lld", key,
                                   (long long)PROTO_MAX_MS);
    }
    for (int i = 0; i < PROTO_MAX_PARAMS && req->method->params[i].name; i++) {
        const proto_param *p = &req->method->params[i];
        if (p->required && !req->args[i])
            return proto_error_set(err, PROTO_INVALID_PARAMS, PROTO_R_INVALID,
                                   "invalid params: %s needs \"%s\"", method,
                                   p->name);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Answers                                                            */
/* ------------------------------------------------------------------ */

json_t *proto_result(json_t *id, json_t *result)
{
    json_t *a = json_object();

    if (!a) {
        json_decref(result);
        return NULL;
    }
    if (!result)
        result = json_object();
    json_object_set_new(a, "jsonrpc", json_string("2.0"));
    json_object_set(a, "id", id ? id : json_null());
    json_object_set_new(a, "result", result);
    return a;
}

json_t *proto_error_answer(json_t *id, int code, proto_reason reason,
                           const char *message, json_t *data)
{
    json_t *a = json_object(), *e = json_object();
    const char *rn = proto_reason_name(reason);

    if (!a || !e) {
        json_decref(a);
        json_decref(e);
        json_decref(data);
        return NULL;
    }
    if (!data)
        data = json_object();
    if (rn && json_is_object(data))
        json_object_set_new(data, "reason", json_string(rn));
    json_object_set_new(e, "code", json_integer(code));
    json_object_set_new(e, "message", json_string(message ? message : ""));
    json_object_set_new(e, "data", data);
    json_object_set_new(a, "jsonrpc", json_string("2.0"));
    json_object_set(a, "id", id ? id : json_null());
    json_object_set_new(a, "error", e);
    return a;
}

json_t *proto_error_answer_from(json_t *id, const proto_error *err)
{
    return proto_error_answer(id, err->code, err->reason, err->message, NULL);
}

char *proto_dump_line(const json_t *msg, size_t *len)
{
    /* jfast writes jansson's compact text straight into one buffer; the
     * dump was a fifth of the daemon's instructions per request through
     * json_dumpb's callbacks and its cycle check. */
    jfast_buf b = {0};

    if (jfast_dump(&b, msg) || jfast_put(&b, "\n", 1)) {
        free(b.p);
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.p;
}

/* ------------------------------------------------------------------ */
/* Client side                                                        */
/* ------------------------------------------------------------------ */

json_t *proto_request_new(int64_t id, const char *method, json_t *params)
{
    json_t *r = json_object();

    if (!r) {
        json_decref(params);
        return NULL;
    }
    json_object_set_new(r, "jsonrpc", json_string("2.0"));
    if (id >= 0)
        json_object_set_new(r, "id", json_integer(id));
    json_object_set_new(r, "method", json_string(method));
    json_object_set_new(r, "params", params ? params : json_object());
    return r;
}

int proto_answer_read(json_t *msg, proto_answer *ans, proto_error *err)
{
    json_t *v, *e;

    memset(ans, 0, sizeof *ans);
    ans->id = -1;
    if (!json_is_object(msg))
        return proto_error_set(err, PROTO_INVALID_REQUEST, PROTO_R_INVALID,
                               "answer is not an object");
    v = json_object_get(msg, "jsonrpc");
    if (!json_is_string(v) || strcmp(json_string_value(v), "2.0") != 0)
        return proto_error_set(err, PROTO_INVALID_REQUEST, PROTO_R_INVALID,
                               "answer lacks jsonrpc \"2.0\"");
    v = json_object_get(msg, "id");
    if (json_is_integer(v))
        ans->id = json_integer_value(v);
    else if (v && !json_is_null(v))
        return proto_error_set(err, PROTO_INVALID_REQUEST, PROTO_R_INVALID,
                               "answer id is not an integer or null");
    v = json_object_get(msg, "result");
    e = json_object_get(msg, "error");
    if ((v != NULL) == (e != NULL))
        return proto_error_set(err, PROTO_INVALID_REQUEST, PROTO_R_INVALID,
                               "answer needs exactly one of result, error");
    if (v) {
        ans->result = v;
        return 0;
    }
    if (!json_is_object(e))
        return proto_error_set(err, PROTO_INVALID_REQUEST, PROTO_R_INVALID,
                               "answer error is not an object");
    v = json_object_get(e, "code");
    if (!json_is_integer(v))
        return proto_error_set(err, PROTO_INVALID_REQUEST, PROTO_R_INVALID,
                               "answer error has no integer code");
    ans->code = (int)json_integer_value(v);
    v = json_object_get(e, "message");
    ans->message = json_is_string(v) ? json_string_value(v) : "";
    ans->data = json_object_get(e, "data");
    v = json_object_get(ans->data, "reason");
    ans->reason = proto_reason_from_name(json_string_value(v));
    if (ans->reason == PROTO_R_NONE)
        ans->reason = PROTO_R_INVALID;
    return 0;
}
