/*
 * proto.c - chand's wire protocol: the method table, request parsing and
 * validation, error codes and reasons, and answer building/reading.
 *
 * Both sides link this file: the daemon checks every request with it before
 * a handler sees it (so handlers may trust parameter names and types), and
 * libchand builds requests and reads answers with it.  Nothing here blocks,
 * allocates beyond jansson values, or knows about sockets or the runtime.
 */
#include "proto.h"

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

#define P(n, t, r) { (n), PROTO_T_##t, (r) }
#define NAME P("name", NAME, true)
#define REQ true
#define OPT false

/* Kept in the order of PROTOCOL.md.  `id` is filled by position below; the
 * daemon's handler table refers to methods by name. */
static proto_method proto_table[] = {
    { "hello", 0, false, { P("version", INT, REQ) } },
    { "ping", 0, false, { { 0 } } },
    /* channels */
    { "make", 0, false,
      { NAME, P("cap", UINT, OPT), P("type", STRING, OPT) } },
    { "send", 0, true, { NAME, P("value", ANY, REQ) } },
    { "recv", 0, true, { NAME } },
    { "close", 0, false, { NAME } },
    { "len", 0, false, { NAME } },
    { "drop", 0, false, { NAME } },
    { "list", 0, false, { P("prefix", STRING, OPT) } },
    { "select", 0, true,
      { P("cases", CASES, REQ), P("default", BOOL, OPT) } },
    /* locks */
    { "mutex.lock", 0, true, { NAME, P("lease_ms", UINT, OPT) } },
    { "mutex.unlock", 0, false, { NAME, P("token", UINT, OPT) } },
    { "rwmutex.lock", 0, true, { NAME, P("lease_ms", UINT, OPT) } },
    { "rwmutex.unlock", 0, false, { NAME, P("token", UINT, OPT) } },
    { "rwmutex.rlock", 0, true, { NAME, P("lease_ms", UINT, OPT) } },
    { "rwmutex.runlock", 0, false, { NAME, P("token", UINT, OPT) } },
    { "cond.wait", 0, true, { NAME, P("mutex", NAME, REQ) } },
    { "cond.signal", 0, false, { NAME } },
    { "cond.broadcast", 0, false, { NAME } },
    /* WaitGroup, Once, Pool */
    { "wg.add", 0, false, { NAME, P("delta", INT, REQ) } },
    { "wg.done", 0, false, { NAME } },
    { "wg.wait", 0, true, { NAME } },
    { "once.do", 0, true, { NAME } },
    { "once.done", 0, false, { NAME } },
    { "pool.put", 0, false, { NAME, P("value", ANY, REQ) } },
    { "pool.get", 0, false, { NAME } },
    /* sync.Map */
    { "map.store", 0, false,
      { NAME, P("key", STRING, REQ), P("value", ANY, REQ) } },
    { "map.load", 0, false, { NAME, P("key", STRING, REQ) } },
    { "map.delete", 0, false, { NAME, P("key", STRING, REQ) } },
    { "map.load_or_store", 0, false,
      { NAME, P("key", STRING, REQ), P("value", ANY, REQ) } },
    { "map.load_and_delete", 0, false, { NAME, P("key", STRING, REQ) } },
    { "map.swap", 0, false,
      { NAME, P("key", STRING, REQ), P("value", ANY, REQ) } },
    { "map.compare_and_swap", 0, false,
      { NAME, P("key", STRING, REQ), P("old", ANY, REQ),
        P("new", ANY, REQ) } },
    { "map.compare_and_delete", 0, false,
      { NAME, P("key", STRING, REQ), P("old", ANY, REQ) } },
    { "map.range", 0, false, { NAME } },
    { "map.len", 0, false, { NAME } },
    { "map.clear", 0, false, { NAME } },
    /* sync/atomic */
    { "atomic.load", 0, false, { NAME } },
    { "atomic.store", 0, false, { NAME, P("value", INT, REQ) } },
    { "atomic.add", 0, false, { NAME, P("delta", INT, REQ) } },
    { "atomic.swap", 0, false, { NAME, P("value", INT, REQ) } },
    { "atomic.compare_and_swap", 0, false,
      { NAME, P("old", INT, REQ), P("new", INT, REQ) } },
    /* time */
    { "timer.after", 0, false, { NAME, P("ms", UINT, REQ) } },
    { "timer.ticker", 0, false, { NAME, P("ms", UINT, REQ) } },
    { "timer.stop", 0, false, { NAME } },
    { "timer.reset", 0, false, { NAME, P("ms", UINT, REQ) } },
    { "timer.afterfunc", 0, false,
      { P("ms", UINT, REQ), P("request", OBJECT, REQ) } },
    /* goroutines and the runtime */
    { "go", 0, false, { P("request", OBJECT, REQ) } },
    { "runtime.stats", 0, false, { { 0 } } },
    { "runtime.gomaxprocs", 0, false, { P("n", UINT, OPT) } },
    { "runtime.dump", 0, false, { { 0 } } },
};

#undef P
#undef NAME
#undef REQ
#undef OPT

#define PROTO_NMETHODS (sizeof proto_table / sizeof proto_table[0])

static json_t *proto_empty_params;
static size_t proto_method_len[PROTO_NMETHODS]; /* strlen of each name */
/* strlen of each parameter name, by method and parameter index */
static uint8_t proto_param_len[PROTO_NMETHODS][PROTO_MAX_PARAMS];
/* Open-addressed index of the names for proto_method_findn: table index
 * + 1, 0 = empty.  256 slots for ~60 names keeps probes short. */
static uint8_t proto_method_slot[256];

static unsigned proto_method_hash(const char *name, size_t n)
{
    return (unsigned)(n * 31 + (unsigned char)name[0] * 7 +
                      (unsigned char)name[n / 2] * 3 +
                      (unsigned char)name[n - 1]) & 255;
}

/* Numbers the table and makes the shared empty params object before any
 * thread can look at them, so that no lookup writes shared memory. */
__attribute__((constructor)) static void proto_table_init(void)
{
    _Static_assert(PROTO_NMETHODS < 128, "proto_method_slot is too small");
    for (size_t i = 0; i < PROTO_NMETHODS; i++) {
        unsigned h;
        proto_table[i].id = (int)i;
        proto_method_len[i] = strlen(proto_table[i].name);
        for (int j = 0; j < PROTO_MAX_PARAMS && proto_table[i].params[j].name;
             j++)
            proto_param_len[i][j] =
                (uint8_t)strlen(proto_table[i].params[j].name);
        h = proto_method_hash(proto_table[i].name, proto_method_len[i]);
        while (proto_method_slot[h])
            h = (h + 1) & 255;
        proto_method_slot[h] = (uint8_t)(i + 1);
    }
    proto_empty_params = json_object();
}

const proto_method *proto_methods(size_t *n)
{
    if (n)
        *n = PROTO_NMETHODS;
    return proto_table;
}

const proto_method *proto_method_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < PROTO_NMETHODS; i++)
        if (strcmp(proto_table[i].name, name) == 0)
            return &proto_table[i];
    return NULL;
}

const char *proto_ptype_name(proto_ptype t)
{
    switch (t) {
    case PROTO_T_STRING: return "a string";
    case PROTO_T_NAME: return "a name (1-255 bytes of printable UTF-8)";
    case PROTO_T_INT: return "an integer";
    case PROTO_T_UINT: return "a non-negative integer";
    case PROTO_T_ANY: return "any JSON value";
    case PROTO_T_OBJECT: return "an object";
    case PROTO_T_ARRAY:
    case PROTO_T_CASES: return "an array";
    case PROTO_T_BOOL: return "a boolean";
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

json_t *proto_parse_line(const char *line, size_t len,
                         const proto_limits *lim, proto_error *err)
{
    size_t max_line = lim && lim->max_line ? lim->max_line
                                           : PROTO_MAX_LINE_DEFAULT;
    int max_depth = lim && lim->max_depth ? lim->max_depth
                                          : PROTO_MAX_DEPTH_DEFAULT;
    json_error_t jerr;
    json_t *v;

    if (len > max_line) {
        proto_error_set(err, proto_reason_code(PROTO_R_TOO_LARGE),
                        PROTO_R_TOO_LARGE, "line of %zu bytes exceeds %zu",
                        len, max_line);
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
    v = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
                   &jerr);
    if (!v) {
        proto_error_set(err, PROTO_PARSE_ERROR, PROTO_R_INVALID,
                        "parse error: %s at column %d", jerr.text,
                        jerr.column);
        return NULL;
    }
    return v;
}

/* Checks one parameter value against its declared type. */
static bool proto_type_ok(const proto_param *p, json_t *v)
{
    switch (p->type) {
    case PROTO_T_STRING:
        return json_is_string(v);
    case PROTO_T_NAME:
        return json_is_string(v) &&
               proto_name_valid(json_string_value(v), json_string_length(v));
    case PROTO_T_INT:
        return json_is_integer(v);
    case PROTO_T_UINT:
        return json_is_integer(v) && json_integer_value(v) >= 0;
    case PROTO_T_ANY:
        return true;
    case PROTO_T_OBJECT:
        return json_is_object(v);
    case PROTO_T_ARRAY:
    case PROTO_T_CASES:
        return json_is_array(v);
    case PROTO_T_BOOL:
        return json_is_boolean(v);
    }
    return false;
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
            return proto_error_set(err, PROTO_INVALID_REQUEST,
                                   PROTO_R_INVALID,
                                   "invalid request: id must be a string, "
                                   "a number or null");
        req->id = v;
    }
    json_object_foreach(msg, key, v) {
        if (strcmp(key, "jsonrpc") && strcmp(key, "id") &&
            strcmp(key, "method") && strcmp(key, "params"))
            return proto_error_set(err, PROTO_INVALID_REQUEST,
                                   PROTO_R_INVALID,
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

    json_object_foreach(params, key, v) {
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
                                       "%lld", (long long)PROTO_MAX_MS);
            req->timeout_ms = json_integer_value(v);
            continue;
        }
        if (!p)
            return proto_error_set(err, PROTO_INVALID_PARAMS,
                                   PROTO_R_INVALID,
                                   "invalid params: %s takes no \"%.64s\"",
                                   method, key);
        if (!proto_type_ok(p, v))
            return proto_error_set(err, PROTO_INVALID_PARAMS,
                                   PROTO_R_INVALID,
                                   "invalid params: %s must be %s", key,
                                   proto_ptype_name(p->type));
        req->args[p - req->method->params] = v;
        /* Durations become nanoseconds added to a clock: bound them so
         * that no handler's ms * 1000000 overflows. */
        size_t kl = strlen(key);
        if (kl >= 2 && strcmp(key + kl - 2, "ms") == 0 &&
            json_is_integer(v) && json_integer_value(v) > PROTO_MAX_MS)
            return proto_error_set(err, PROTO_INVALID_PARAMS,
                                   PROTO_R_INVALID,
                                   "invalid params: %s exceeds %lld", key,
                                   (long long)PROTO_MAX_MS);
    }
    for (int i = 0; i < PROTO_MAX_PARAMS && req->method->params[i].name;
         i++) {
        const proto_param *p = &req->method->params[i];
        if (p->required && !req->args[i])
            return proto_error_set(err, PROTO_INVALID_PARAMS,
                                   PROTO_R_INVALID,
                                   "invalid params: %s needs \"%s\"", method,
                                   p->name);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* The single-pass request scanner                                    */
/* ------------------------------------------------------------------ */

/* The scanner reads the envelope's members and the parameter names in
 * place, and builds JSON values only for the id and the parameter values
 * (jfast_parse_prefix).  It accepts a strict subset of what the general
 * path accepts -- plain keys (no escapes), "method" before "params" -- and
 * declines everything else, invalid requests included, so that error
 * words have one author (proto_check_request and jansson). */

typedef struct proto_scan {
    const char *p, *end;
    int depth;                  /* nesting allowed below params' values */
    proto_names *names;         /* may be NULL */
} proto_scan;

#define PROTO_NAMES_SLOTS 512

struct proto_names {
    json_t *slot[PROTO_NAMES_SLOTS]; /* strings, direct-mapped by hash */
};

proto_names *proto_names_new(void)
{
    return calloc(1, sizeof(proto_names));
}

void proto_names_free(proto_names *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < PROTO_NAMES_SLOTS; i++)
        json_decref(c->slot[i]);
    free(c);
}

/* Returns a new reference to a JSON string of the n plain bytes at s
 * (from the cache when it holds them), or NULL. */
static json_t *proto_names_get(proto_names *c, const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    json_t **slot, *v;

    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    slot = &c->slot[h % PROTO_NAMES_SLOTS];
    v = *slot;
    if (v && json_string_length(v) == n &&
        memcmp(json_string_value(v), s, n) == 0)
        return json_incref(v);
    if (!(v = json_stringn_nocheck(s, n)))
        return NULL;
    json_decref(*slot);
    *slot = json_incref(v);
    return v;
}

/* Bytes a plain string may hold: printable ASCII but '"' and '\\'. */
static const bool proto_plain_byte[256] = {
    [' ' ... '!'] = true, ['#' ... '['] = true, [']' ... '~'] = true,
};

/* (Local pointers throughout: a char read may alias sc->p, which the
 * compiler would otherwise reload at every byte.) */
static inline void proto_scan_ws(proto_scan *sc)
{
    const char *p = sc->p, *end = sc->end;

    if (p < end && (unsigned char)*p > ' ')
        return; /* compact JSON: no whitespace at all */
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    sc->p = p;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* Flags (high bit) the bytes of x that proto_plain_byte refuses: controls,
 * '"', '\\', DEL and non-ASCII.  A flag is exact up to and including the
 * first one (the borrows of the zero tests only run upwards, into later
 * bytes), which is all the caller reads. */
static inline uint64_t proto_plain_stops(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ull;
    uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\'), d = x ^ (ones * 0x7f);

    return (((x - ones * 0x20) & ~x) |                 /* below 0x20 */
            ((q - ones) & ~q) | ((b - ones) & ~b) |   /* '"', '\\' */
            ((d - ones) & ~d) |                       /* DEL */
            x) &                                      /* 0x80 and up */
           (ones * 0x80);
}
#endif

/* Returns the first byte at or after p (before end) that is not plain. */
static inline const char *proto_plain_span(const char *p, const char *end)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* Eight bytes a step: names and keys were 12 instructions a byte. */
    while (end - p >= 8) {
        uint64_t x, m;
        memcpy(&x, p, 8);
        if ((m = proto_plain_stops(x)) != 0)
            return p + (__builtin_ctzll(m) >> 3);
        p += 8;
    }
#endif
    while (p < end && proto_plain_byte[(unsigned char)*p])
        p++;
    return p;
}

/* Reads a string without escapes or control characters (names, method
 * names, "2.0"); non-ASCII bytes are left to the general path.  Returns
 * false to decline. */
static bool proto_scan_plain(proto_scan *sc, const char **s, size_t *n)
{
    const char *p, *q, *end = sc->end;

    proto_scan_ws(sc);
    p = sc->p;
    if (p >= end || *p != '"')
        return false;
    q = ++p;
    p = proto_plain_span(p, end);
    if (p >= end || *p != '"')
        return false; /* an escape, a control or non-ASCII byte, the end */
    *s = q;
    *n = (size_t)(p - q);
    sc->p = p + 1;
    return true;
}

/* proto_scan_plain that leaves sc where it was when it declines, so the
 * caller can read the value the general way instead. */
static bool proto_scan_plain_or_stay(proto_scan *sc, const char **s, size_t *n)
{
    const char *at = sc->p;

    if (proto_scan_plain(sc, s, n))
        return true;
    sc->p = at;
    return false;
}

/* Reads the key k (plain, NUL-terminated, length kn) and its colon when
 * they come exactly so ("k":), the way clients write them; else leaves sc
 * alone for the general reading.  One compare instead of a string scan. */
static inline bool proto_scan_key_is(proto_scan *sc, const char *k, size_t kn)
{
    const char *p = sc->p;

    if ((size_t)(sc->end - p) < kn + 3 || p[0] != '"' ||
        memcmp(p + 1, k, kn) != 0 || p[kn + 1] != '"' || p[kn + 2] != ':')
        return false;
    sc->p = p + kn + 3;
    return true;
}

/* Expects c (after whitespace). */
static inline bool proto_scan_char(proto_scan *sc, char c)
{
    proto_scan_ws(sc);
    if (sc->p >= sc->end || *sc->p != c)
        return false;
    sc->p++;
    return true;
}

/* Reads one JSON value as a new reference, or NULL to decline. */
static json_t *proto_scan_value(proto_scan *sc)
{
    size_t used;
    json_t *v;

    proto_scan_ws(sc);
    v = jfast_parse_prefix(sc->p, (size_t)(sc->end - sc->p), sc->depth,
                           &used);
    if (v)
        sc->p += used;
    return v;
}

/* want: a literal, so that sizeof gives its length at compile time. */
#define proto_key_is(k, n, want)                                              \
    ((n) == sizeof(want) - 1 && memcmp((k), (want), (n)) == 0)

static bool proto_name_is(const char *k, size_t n, const char *want)
{
    size_t i = 0;

    while (i < n && want[i] == k[i])
        i++;
    return i == n && want[n] == '\0';
}

static const proto_method *proto_method_findn(const char *name, size_t n)
{
    if (n == 0)
        return NULL;
    for (unsigned h = proto_method_hash(name, n);; h = (h + 1) & 255) {
        int i = proto_method_slot[h] - 1;
        if (i < 0)
            return NULL;
        if (proto_method_len[i] == n &&
            memcmp(proto_table[i].name, name, n) == 0)
            return &proto_table[i];
    }
}

/* Reads an "any" value that is already in its compact form -- a plain
 * string, or an integer of at most 18 digits without a sign on zero -- as
 * its text.  Returns false, with sc where it was, for anything else. */
static bool proto_scan_text(proto_scan *sc, proto_text *t)
{
    const char *s, *p, *end = sc->end;
    size_t n;

    proto_scan_ws(sc); /* (kept: the value's reading skips it too) */
    p = sc->p;
    if (p < end && *p == '"') {
        if (!proto_scan_plain_or_stay(sc, &s, &n))
            return false;
        t->p = s - 1;
        t->n = n + 2;
        return true;
    }
    s = p;
    if (p < end && *p == '-')
        p++;
    if (p >= end || *p < '0' || *p > '9' || (*p == '0' && s != p))
        return false;
    if (*p == '0')
        p++;
    else
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    /* 1.5, 1e3, 012: jansson's to read (or refuse). */
    if (p - s > 18 ||
        (p < end && (*p == '.' || *p == 'e' || *p == 'E' ||
                     (*p >= '0' && *p <= '9'))))
        return false;
    t->p = s;
    t->n = (size_t)(p - s);
    sc->p = p;
    return true;
}

json_t *proto_text_json(proto_text t)
{
    int64_t v = 0;

    if (t.n >= 2 && t.p[0] == '"')
        return json_stringn_nocheck(t.p + 1, t.n - 2);
    /* At most 18 digits: no overflow. */
    for (size_t i = t.p[0] == '-'; i < t.n; i++)
        v = v * 10 + (t.p[i] - '0');
    return json_integer(t.p[0] == '-' ? -v : v);
}

void proto_cases_free(proto_case *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_decref(c[i].name);
        json_decref(c[i].value);
    }
    free(c);
}

/* Reads select's cases in the shapes clients write,
 * [{"recv":"name"},{"send":"name","value":V},...] (compact, plain names),
 * into req->cases.  Returns false, with sc where it was and nothing kept,
 * for anything else: the caller then reads the array as a JSON value. */
static bool proto_scan_cases(proto_scan *sc, proto_request *req)
{
    const char *at = sc->p;
    proto_case *c;
    size_t n = 0, cap = 4;

    if (sc->depth < 2 || sc->p >= sc->end || *sc->p != '[' ||
        !(c = malloc(cap * sizeof *c)))
        return false;
    sc->p++;
    if (sc->p < sc->end && *sc->p == ']') {
        sc->p++;
        goto done;
    }
    for (;;) {
        const char *nm;
        size_t nn;
        bool send;
        if (sc->p >= sc->end || *sc->p != '{')
            goto fail;
        sc->p++;
        if (proto_scan_key_is(sc, "recv", 4))
            send = false;
        else if (proto_scan_key_is(sc, "send", 4))
            send = true;
        else
            goto fail;
        if (!proto_scan_plain(sc, &nm, &nn))
            goto fail;
        if (n == cap) {
            proto_case *g = realloc(c, (cap *= 2) * sizeof *c);
            if (!g)
                goto fail;
            c = g;
        }
        c[n].name = sc->names ? proto_names_get(sc->names, nm, nn)
                              : json_stringn_nocheck(nm, nn);
        c[n].value = NULL;
        c[n].text.p = NULL;
        if (!c[n++].name)
            goto fail;
        if (send) {
            int depth = sc->depth;
            if (sc->p >= sc->end || *sc->p != ',')
                goto fail;
            sc->p++;
            if (!proto_scan_key_is(sc, "value", 5))
                goto fail;
            /* two levels down: the array and the case */
            sc->depth = depth - 2;
            if (!proto_scan_text(sc, &c[n - 1].text))
                c[n - 1].value = proto_scan_value(sc);
            sc->depth = depth;
            if (!c[n - 1].value && !c[n - 1].text.p)
                goto fail;
        }
        if (sc->p >= sc->end || *sc->p != '}')
            goto fail;
        sc->p++;
        if (sc->p < sc->end && *sc->p == ',') {
            sc->p++;
            continue;
        }
        if (sc->p >= sc->end || *sc->p != ']')
            goto fail;
        sc->p++;
        break;
    }
done:
    req->cases = c;
    req->ncases = n;
    return true;
fail:
    proto_cases_free(c, n);
    sc->p = at;
    return false;
}

/* Reads the params object into req->args (method known).  The general
 * path's checks, each a decline here. */
static bool proto_scan_params(proto_scan *sc, proto_request *req)
{
    const proto_method *m = req->method;
    const char *k;
    size_t kn;

    if (!proto_scan_char(sc, '{'))
        return false;
    proto_scan_ws(sc);
    if (sc->p < sc->end && *sc->p == '}') {
        sc->p++;
        return true;
    }
    for (;;) {
        int i;
        json_t *v;

        proto_scan_ws(sc);
        for (i = 0; i < PROTO_MAX_PARAMS && m->params[i].name; i++)
            if (proto_scan_key_is(sc, m->params[i].name,
                                  proto_param_len[m->id][i])) {
                k = m->params[i].name;
                kn = proto_param_len[m->id][i];
                goto known;
            }
        if (!proto_scan_plain(sc, &k, &kn) || !proto_scan_char(sc, ':'))
            return false;
        for (i = 0; i < PROTO_MAX_PARAMS && m->params[i].name; i++)
            if (proto_name_is(k, kn, m->params[i].name))
                break;
    known:
        if (i == PROTO_MAX_PARAMS || !m->params[i].name) {
            /* timeout_ms, the one member outside the table */
            if (!m->blocking || !proto_key_is(k, kn, "timeout_ms") ||
                req->timeout_ms >= 0)
                return false;
            v = proto_scan_value(sc);
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > PROTO_MAX_MS) {
                json_decref(v);
                return false;
            }
            req->timeout_ms = json_integer_value(v);
            json_decref(v);
        } else {
            const proto_param *p = &m->params[i];
            const char *nm;
            size_t nn;
            if (req->args[i] || req->text[i].p ||
                (p->type == PROTO_T_CASES && req->cases))
                return false; /* a duplicate: jansson's error */
            if (p->type == PROTO_T_CASES && proto_scan_cases(sc, req))
                goto next;
            if (p->type == PROTO_T_ANY &&
                !(kn >= 2 && memcmp(k + kn - 2, "ms", 2) == 0) &&
                proto_scan_text(sc, &req->text[i]))
                goto next;
            if (sc->names && p->type == PROTO_T_NAME &&
                proto_scan_plain_or_stay(sc, &nm, &nn))
                v = proto_names_get(sc->names, nm, nn);
            else
                v = proto_scan_value(sc);
            if (!v)
                return false;
            req->args[i] = v;
            if (!proto_type_ok(p, v))
                return false;
            if (kn >= 2 && memcmp(k + kn - 2, "ms", 2) == 0 &&
                json_is_integer(v) && json_integer_value(v) > PROTO_MAX_MS)
                return false;
        }
    next:
        proto_scan_ws(sc);
        if (sc->p < sc->end && *sc->p == ',') {
            sc->p++;
            continue;
        }
        return proto_scan_char(sc, '}');
    }
}

bool proto_scan_request(const char *line, size_t len,
                        const proto_limits *lim, proto_request *req)
{
    return proto_scan_request_names(line, len, lim, NULL, req);
}

bool proto_scan_request_names(const char *line, size_t len,
                              const proto_limits *lim, proto_names *names,
                              proto_request *req)
{
    size_t max_line = lim && lim->max_line ? lim->max_line
                                           : PROTO_MAX_LINE_DEFAULT;
    int max_depth = lim && lim->max_depth ? lim->max_depth
                                          : PROTO_MAX_DEPTH_DEFAULT;
    proto_scan sc = { line, line + len, max_depth - 2, names };
    bool seen_rpc = false, seen_id = false, seen_params = false;
    const char *k;
    size_t kn;

    memset(req, 0, sizeof *req);
    req->timeout_ms = -1;
    req->owned = true;
    /* The framing rules (length, a final \r) and depth are the general
     * path's to word; a value deeper than params' allowance declines. */
    if (len > max_line || (len > 0 && line[len - 1] == '\r') ||
        sc.depth < 1)
        goto decline;
    /* The first member as clients write it, in one compare. */
    if (len > 17 && memcmp(line, "{\"jsonrpc\":\"2.0\",", 17) == 0) {
        sc.p = line + 17;
        seen_rpc = true;
    } else if (!proto_scan_char(&sc, '{')) {
        goto decline;
    }
    for (;;) {
        proto_scan_ws(&sc);
        if (proto_scan_key_is(&sc, "id", 2)) {
            k = "id";
            kn = 2;
        } else if (proto_scan_key_is(&sc, "method", 6)) {
            k = "method";
            kn = 6;
        } else if (proto_scan_key_is(&sc, "params", 6)) {
            k = "params";
            kn = 6;
        } else if (!proto_scan_plain(&sc, &k, &kn) ||
                   !proto_scan_char(&sc, ':')) {
            goto decline;
        }
        if (proto_key_is(k, kn, "jsonrpc") && !seen_rpc) {
            const char *v;
            size_t vn;
            if (!proto_scan_plain(&sc, &v, &vn) || vn != 3 ||
                memcmp(v, "2.0", 3) != 0)
                goto decline;
            seen_rpc = true;
        } else if (proto_key_is(k, kn, "id") && !seen_id) {
            req->id = proto_scan_value(&sc);
            if (!json_is_string(req->id) && !json_is_integer(req->id) &&
                !json_is_null(req->id))
                goto decline;
            seen_id = true;
        } else if (proto_key_is(k, kn, "method") && !req->method) {
            const char *v;
            size_t vn;
            if (!proto_scan_plain(&sc, &v, &vn) ||
                !(req->method = proto_method_findn(v, vn)))
                goto decline;
        } else if (proto_key_is(k, kn, "params") && !seen_params &&
                   req->method) {
            if (!proto_scan_params(&sc, req))
                goto decline;
            seen_params = true;
        } else {
            goto decline;
        }
        proto_scan_ws(&sc);
        if (sc.p < sc.end && *sc.p == ',') {
            sc.p++;
            continue;
        }
        if (!proto_scan_char(&sc, '}'))
            goto decline;
        break;
    }
    proto_scan_ws(&sc);
    if (sc.p != sc.end || !seen_rpc || !req->method)
        goto decline;
    for (int i = 0; i < PROTO_MAX_PARAMS && req->method->params[i].name;
         i++)
        if (req->method->params[i].required && !req->args[i] &&
            !req->text[i].p &&
            !(req->method->params[i].type == PROTO_T_CASES && req->cases))
            goto decline;
    return true;

decline:
    proto_request_clear(req);
    return false;
}

void proto_request_clear(proto_request *req)
{
    if (req->owned) {
        json_decref(req->id);
        for (int i = 0; i < PROTO_MAX_PARAMS; i++)
            json_decref(req->args[i]);
    }
    proto_cases_free(req->cases, req->ncases);
    memset(req, 0, sizeof *req);
    req->timeout_ms = -1;
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
    return proto_error_answer(id, err->code, err->reason, err->message,
                              NULL);
}

char *proto_dump_line(const json_t *msg, size_t *len)
{
    /* jfast writes jansson's compact text straight into one buffer; the
     * dump was a fifth of the daemon's instructions per request through
     * json_dumpb's callbacks and its cycle check. */
    jfast_buf b = { 0 };

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
