/*
 * scan.c - the single-pass request scanner: the common request read in
 * place, in one pass, with JSON values built only for the id and the
 * parameter values; everything else declines to proto_check_request's
 * general path (proto.c).  Shares the method table through
 * proto_internal.h.
 */
#include "proto_internal.h"

#include "jfast.h"

#include <stdlib.h>
#include <string.h>

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
    int depth;          /* nesting allowed below params' values */
    proto_names *names; /* may be NULL */
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
    [' ' ... '!'] = true,
    ['#' ... '['] = true,
    [']' ... '~'] = true,
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

    return (((x - ones * 0x20) & ~x) |              /* below 0x20 */
            ((q - ones) & ~q) | ((b - ones) & ~b) | /* '"', '\\' */
            ((d - ones) & ~d) |                     /* DEL */
            x) &                                    /* 0x80 and up */
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
    v = jfast_parse_prefix(sc->p, (size_t)(sc->end - sc->p), sc->depth, &used);
    if (v)
        sc->p += used;
    return v;
}

/* want: a literal, so that sizeof gives its length at compile time. */
#define proto_key_is(k, n, want)                                               \
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
    for (unsigned h = proto__method_hash(name, n);; h = (h + 1) & 255) {
        int i = proto__method_slot[h] - 1;
        if (i < 0)
            return NULL;
        if (proto__method_len[i] == n &&
            memcmp(proto__table[i].name, name, n) == 0)
            return &proto__table[i];
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
    if (p - s > 18 || (p < end && (*p == '.' || *p == 'e' || *p == 'E' ||
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
                                  proto__param_len[m->id][i])) {
                k = m->params[i].name;
                kn = proto__param_len[m->id][i];
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
            if (!proto__type_ok(p, v))
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

bool proto_scan_request(const char *line, size_t len, const proto_limits *lim,
                        proto_request *req)
{
    return proto_scan_request_names(line, len, lim, NULL, req);
}

bool proto_scan_request_names(const char *line, size_t len,
                              const proto_limits *lim, proto_names *names,
                              proto_request *req)
{
    size_t max_line =
        lim && lim->max_line ? lim->max_line : PROTO_MAX_LINE_DEFAULT;
    int max_depth =
        lim && lim->max_depth ? lim->max_depth : PROTO_MAX_DEPTH_DEFAULT;
    proto_scan sc = {line, line + len, max_depth - 2, names};
    bool seen_rpc = false, seen_id = false, seen_params = false;
    const char *k;
    size_t kn;

    memset(req, 0, sizeof *req);
    req->timeout_ms = -1;
    req->owned = true;
    /* The framing rules (length, a final \r) and depth are the general
     * path's to word; a value deeper than params' allowance declines. */
    if (len > max_line || (len > 0 && line[len - 1] == '\r') || sc.depth < 1)
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
    for (int i = 0; i < PROTO_MAX_PARAMS && req->method->params[i].name; i++)
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
