/*
 * jfast.c - a fast parser and compact serialiser for jansson values.
 *
 * Owns: jfast_parse (text to a new jansson tree, or a refusal), jfast_dump
 * and jfast_put (a jansson tree to compact text on a growable buffer).
 *
 * jansson reads through a per-byte stream with UTF-8 reassembly, copies
 * every token into a scratch buffer and every string twice, and its dump
 * goes through a callback per fragment and a hash table of parents keyed by
 * printed pointers.  Here the parser walks the input in place and the
 * dumper writes straight into one buffer; both build or read the very same
 * jansson values through jansson's public API, so nothing downstream can
 * tell the difference.
 *
 * The parser's contract is one-sided: whatever it accepts, json_loadb with
 * JSON_REJECT_DUPLICATES | JSON_DECODE_ANY accepts and builds identically;
 * anything doubtful is declined (NULL) and the caller asks jansson, which
 * also writes the error message.  It declines: reals and exponents,
 * integers of more than 19 digits or out of int64 range, \u0000, lone or
 * mismatched surrogates, invalid UTF-8, duplicate keys, control characters
 * in strings, nesting deeper than JFAST_MAX_DEPTH, trailing bytes, and
 * every syntax error.  The jansson rules it follows are those of jansson
 * 2.14's load.c: whitespace is space, \t, \n and \r only; integers are
 * strtoll's (so "-0" is the integer 0); no leading zeros.
 *
 * The dumper matches jansson 2.14's dump.c with JSON_COMPACT: only '"',
 * '\\' and bytes below 0x20 are escaped (\b \f \n \r \t by name, the rest
 * as \u00XX in upper case), '/' and UTF-8 pass through, object members in
 * insertion order, reals formatted by jansson itself.
 */
#include "jfast.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Nesting beyond which the parser declines: jansson's own limit is 2048,
 * the protocol's default 64; this only bounds our recursion. */
#define JFAST_MAX_DEPTH 256
/* Nesting beyond which the dumper hands the subtree to json_dumpb: only a
 * reference cycle (which jansson detects and refuses) or a pathological
 * tree gets there, and jansson then decides either way. */
#define JFAST_DUMP_DEPTH 256
/* Keys remembered for the duplicate check, over all open objects. */
#define JFAST_SEEN_MAX 64
/* Room kept in the parser for decoding strings with escapes. */
#define JFAST_SCRATCH 256

#define JFAST_DUMP_FLAGS (JSON_COMPACT | JSON_ENCODE_ANY)

/* 1 for the bytes a string may hold as they are, in the text and in the
 * dump alike: printable ASCII and DEL, but not '"' or '\\'. */
static const unsigned char jfast_plain[256] = {
    [0x20] = 1, [0x21] = 1, [0x23 ... 0x5b] = 1, [0x5d ... 0x7f] = 1,
};

/* ------------------------------------------------------------------ */
/* UTF-8                                                              */
/* ------------------------------------------------------------------ */

/* Returns the length (2..4) of the valid UTF-8 sequence at p (at most n
 * bytes, p[0] >= 0x80), or 0.  Valid as jansson's utf8_check_full means
 * it: no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t jfast_utf8_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    uint32_t v;
    size_t k;

    if (c >= 0xc2 && c <= 0xdf) {
        k = 2;
        v = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        k = 3;
        v = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        k = 4;
        v = c & 0x07;
    } else {
        return 0;
    }
    if (n < k)
        return 0;
    for (size_t i = 1; i < k; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (p[i] & 0x3f);
    }
    if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff) ||
        (k == 3 && v < 0x800) || (k == 4 && v < 0x10000))
        return 0;
    return k;
}

/* Writes code point v (not a surrogate, <= U+10FFFF) as UTF-8 at d;
 * returns the byte count. */
static size_t jfast_utf8_put(char *d, uint32_t v)
{
    if (v < 0x80) {
        d[0] = (char)v;
        return 1;
    }
    if (v < 0x800) {
        d[0] = (char)(0xc0 | (v >> 6));
        d[1] = (char)(0x80 | (v & 0x3f));
        return 2;
    }
    if (v < 0x10000) {
        d[0] = (char)(0xe0 | (v >> 12));
        d[1] = (char)(0x80 | ((v >> 6) & 0x3f));
        d[2] = (char)(0x80 | (v & 0x3f));
        return 3;
    }
    d[0] = (char)(0xf0 | (v >> 18));
    d[1] = (char)(0x80 | ((v >> 12) & 0x3f));
    d[2] = (char)(0x80 | ((v >> 6) & 0x3f));
    d[3] = (char)(0x80 | (v & 0x3f));
    return 4;
}

/* ------------------------------------------------------------------ */
/* Parser                                                             */
/* ------------------------------------------------------------------ */

typedef struct jfast_key {
    const char *s;
    size_t n;
} jfast_key;

typedef struct jfast_parser {
    const unsigned char *p, *end;
    int depth;
    /* Keys of the open objects, innermost last: an object's keys are
     * contiguous at the top while it parses its next member, because a
     * nested object pops its own before its parent continues. */
    size_t nseen;
    jfast_key seen[JFAST_SEEN_MAX];
    /* Decoded text of the last string with escapes (scratch, or heap when
     * longer). */
    char *heap;
    size_t heap_cap;
    char scratch[JFAST_SCRATCH];
} jfast_parser;

static json_t *jfast_value(jfast_parser *ps);

static inline void jfast_ws(jfast_parser *ps)
{
    const unsigned char *p = ps->p, *end = ps->end;

    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    ps->p = p;
}

/* Returns the value of the 4 hex digits at p, or -1. */
static int32_t jfast_hex4(const unsigned char *p)
{
    int32_t v = 0;

    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

/* Decodes the escapes of the string body [q, end) (UTF-8 already checked)
 * into the parser's scratch or heap buffer.  Returns that buffer with *n
 * set, or NULL to decline. */
static const char *jfast_unescape(jfast_parser *ps, const unsigned char *q,
                                  const unsigned char *end, size_t *n)
{
    /* Decoding never lengthens: \uXXXX gives at most 3 bytes, a pair of
     * them 4, every other escape 1. */
    size_t raw = (size_t)(end - q);
    char *dst = ps->scratch, *d;

    if (raw > sizeof ps->scratch) {
        if (raw > ps->heap_cap) {
            char *h = realloc(ps->heap, raw);
            if (!h)
                return NULL;
            ps->heap = h;
            ps->heap_cap = raw;
        }
        dst = ps->heap;
    }
    d = dst;
    while (q < end) {
        const unsigned char *run = q;
        int32_t v;

        while (q < end && *q != '\\')
            q++;
        memcpy(d, run, (size_t)(q - run));
        d += q - run;
        if (q == end)
            break;
        if (end - q < 2)
            return NULL;
        switch (q[1]) {
        case '"': *d++ = '"'; break;
        case '\\': *d++ = '\\'; break;
        case '/': *d++ = '/'; break;
        case 'b': *d++ = '\b'; break;
        case 'f': *d++ = '\f'; break;
        case 'n': *d++ = '\n'; break;
        case 'r': *d++ = '\r'; break;
        case 't': *d++ = '\t'; break;
        case 'u':
            if (end - q < 6 || (v = jfast_hex4(q + 2)) <= 0)
                return NULL; /* bad hex, or \u0000 (jansson refuses it) */
            if (v >= 0xdc00 && v <= 0xdfff)
                return NULL;
            if (v >= 0xd800 && v <= 0xdbff) {
                int32_t lo;
                if (end - q < 12 || q[6] != '\\' || q[7] != 'u')
                    return NULL;
                lo = jfast_hex4(q + 8);
                if (lo < 0xdc00 || lo > 0xdfff)
                    return NULL;
                v = ((v - 0xd800) << 10) + (lo - 0xdc00) + 0x10000;
                q += 6;
            }
            d += jfast_utf8_put(d, (uint32_t)v);
            q += 4;
            break;
        default:
            return NULL;
        }
        q += 2;
    }
    *n = (size_t)(d - dst);
    return dst;
}

/* Reads the string at ps->p (its opening quote).  Returns its bytes (in
 * the input when it has no escapes, else in the parser's buffer, valid
 * until the next string) with *n and *escaped set, or NULL to decline. */
static const char *jfast_string(jfast_parser *ps, size_t *n, bool *escaped)
{
    const unsigned char *start = ps->p + 1, *p = start, *end = ps->end;
    bool esc = false;

    /* The common case: plain ASCII up to the closing quote. */
    while (p < end && jfast_plain[*p])
        p++;
    for (;;) {
        if (p >= end)
            return NULL;
        if (*p == '"')
            break;
        if (*p == '\\') {
            /* Skip the escaped byte so that \" does not end the string;
             * jfast_unescape checks what the escape is. */
            esc = true;
            p += 2;
        } else if (*p >= 0x80) {
            size_t k = jfast_utf8_len(p, (size_t)(end - p));
            if (!k)
                return NULL;
            p += k;
        } else if (*p < 0x20) {
            return NULL;
        } else {
            p++;
        }
        while (p < end && jfast_plain[*p])
            p++;
    }
    ps->p = p + 1;
    *escaped = esc;
    if (!esc) {
        *n = (size_t)(p - start);
        return (const char *)start;
    }
    return jfast_unescape(ps, start, p, n);
}

static json_t *jfast_int(jfast_parser *ps)
{
    const unsigned char *p = ps->p, *end = ps->end, *digits;
    bool neg = false;
    uint64_t v = 0;

    if (*p == '-') {
        neg = true;
        p++;
    }
    digits = p;
    while (p < end && *p >= '0' && *p <= '9')
        v = v * 10 + (uint64_t)(*p++ - '0');
    /* 19 digits cannot wrap a uint64; more may, and cannot fit anyway. */
    if (p == digits || p - digits > 19 || (*digits == '0' && p - digits > 1))
        return NULL;
    if (p < end && (*p == '.' || *p == 'e' || *p == 'E'))
        return NULL; /* a real: jansson's strtod decides its value */
    if (v > (uint64_t)INT64_MAX + neg)
        return NULL; /* jansson: "too big integer" */
    ps->p = p;
    if (!neg)
        return json_integer((json_int_t)v);
    return json_integer(v == (uint64_t)INT64_MAX + 1 ? INT64_MIN
                                                     : -(json_int_t)v);
}

/* Returns true when the key is already in the innermost object: checked
 * against the remembered keys while all of them are, else with jansson. */
static bool jfast_dup(jfast_parser *ps, json_t *obj, size_t base,
                      bool *hashed, const char *k, size_t n, bool escaped)
{
    if (!*hashed) {
        for (size_t i = base; i < ps->nseen; i++)
            if (ps->seen[i].n == n && memcmp(ps->seen[i].s, k, n) == 0)
                return true;
        /* A decoded key lives in a buffer the next string overwrites, so
         * it cannot be remembered; neither can keys past the table. */
        if (!escaped && ps->nseen < JFAST_SEEN_MAX) {
            ps->seen[ps->nseen].s = k;
            ps->seen[ps->nseen].n = n;
            ps->nseen++;
            return false;
        }
        *hashed = true;
    }
    return json_object_getn(obj, k, n) != NULL;
}

static json_t *jfast_object(jfast_parser *ps)
{
    json_t *obj = json_object();
    size_t base = ps->nseen;
    bool hashed = false;

    if (!obj)
        return NULL;
    ps->p++;
    jfast_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        return obj;
    }
    for (;;) {
        const char *k;
        char *kcopy = NULL;
        size_t n;
        bool escaped;
        json_t *v;

        if (ps->p >= ps->end || *ps->p != '"')
            goto out_decline;
        k = jfast_string(ps, &n, &escaped);
        if (!k || jfast_dup(ps, obj, base, &hashed, k, n, escaped))
            goto out_decline;
        if (escaped) {
            /* The value's strings reuse the decode buffer. */
            kcopy = malloc(n ? n : 1);
            if (!kcopy)
                goto out_decline;
            memcpy(kcopy, k, n);
            k = kcopy;
        }
        jfast_ws(ps);
        if (ps->p >= ps->end || *ps->p != ':') {
            free(kcopy);
            goto out_decline;
        }
        ps->p++;
        jfast_ws(ps);
        v = jfast_value(ps);
        /* Steals v, also on failure. */
        if (!v || json_object_setn_new_nocheck(obj, k, n, v)) {
            free(kcopy);
            goto out_decline;
        }
        free(kcopy);
        jfast_ws(ps);
        if (ps->p >= ps->end)
            goto out_decline;
        if (*ps->p == '}')
            break;
        if (*ps->p != ',')
            goto out_decline;
        ps->p++;
        jfast_ws(ps);
    }
    ps->p++;
    ps->nseen = base;
    return obj;

out_decline:
    ps->nseen = base;
    json_decref(obj);
    return NULL;
}

static json_t *jfast_array(jfast_parser *ps)
{
    json_t *arr = json_array();

    if (!arr)
        return NULL;
    ps->p++;
    jfast_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return arr;
    }
    for (;;) {
        json_t *v = jfast_value(ps);
        /* Steals v, also on failure. */
        if (!v || json_array_append_new(arr, v))
            goto out_decline;
        jfast_ws(ps);
        if (ps->p >= ps->end)
            goto out_decline;
        if (*ps->p == ']')
            break;
        if (*ps->p != ',')
            goto out_decline;
        ps->p++;
        jfast_ws(ps);
    }
    ps->p++;
    return arr;

out_decline:
    json_decref(arr);
    return NULL;
}

/* Matches the keyword w (n bytes) at ps->p.  A letter right after it makes
 * jansson read a longer, invalid word; the caller's next check (',', '}',
 * ']' or the end) declines that, as any other byte. */
static bool jfast_word(jfast_parser *ps, const char *w, size_t n)
{
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, w, n) != 0)
        return false;
    ps->p += n;
    return true;
}

/* Reads the value at ps->p (no leading whitespace).  Returns a new
 * reference, or NULL to decline. */
static json_t *jfast_value(jfast_parser *ps)
{
    json_t *v = NULL;
    const char *s;
    size_t n;
    bool escaped;

    if (ps->p >= ps->end)
        return NULL;
    switch (*ps->p) {
    case '"':
        s = jfast_string(ps, &n, &escaped);
        /* Checked above: valid UTF-8, no NUL. */
        return s ? json_stringn_nocheck(s, n) : NULL;
    case '{':
    case '[':
        if (++ps->depth > JFAST_MAX_DEPTH)
            return NULL;
        v = *ps->p == '{' ? jfast_object(ps) : jfast_array(ps);
        ps->depth--;
        return v;
    case 't':
        return jfast_word(ps, "true", 4) ? json_true() : NULL;
    case 'f':
        return jfast_word(ps, "false", 5) ? json_false() : NULL;
    case 'n':
        return jfast_word(ps, "null", 4) ? json_null() : NULL;
    case '-':
    case '0' ... '9':
        return jfast_int(ps);
    default:
        return NULL;
    }
}

json_t *jfast_parse(const char *s, size_t len)
{
    jfast_parser ps;
    json_t *v;

    if (!s)
        return NULL;
    ps.p = (const unsigned char *)s;
    ps.end = ps.p + len;
    ps.depth = 0;
    ps.nseen = 0;
    ps.heap = NULL;
    ps.heap_cap = 0;
    jfast_ws(&ps);
    v = jfast_value(&ps);
    free(ps.heap);
    if (!v)
        return NULL;
    jfast_ws(&ps);
    if (ps.p != ps.end) {
        json_decref(v);
        return NULL;
    }
    return v;
}

/* ------------------------------------------------------------------ */
/* Buffer and serialiser                                              */
/* ------------------------------------------------------------------ */

/* Makes room for need more bytes: doubling, from 128, so a line built
 * from many pieces costs few reallocs. */
static int jfast_grow(jfast_buf *b, size_t need)
{
    size_t want = b->len + need, cap = b->cap ? b->cap : 128;
    char *p;

    if (want < b->len)
        return -1;
    while (cap < want)
        cap = cap > SIZE_MAX / 2 ? want : cap * 2;
    p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline int jfast_reserve(jfast_buf *b, size_t need)
{
    return b->cap - b->len >= need ? 0 : jfast_grow(b, need);
}

int jfast_put(jfast_buf *b, const char *s, size_t n)
{
    if (jfast_reserve(b, n))
        return -1;
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

static inline int jfast_putc(jfast_buf *b, char c)
{
    if (jfast_reserve(b, 1))
        return -1;
    b->p[b->len++] = c;
    return 0;
}

/* Appends json_dumpb's own text of v: for reals (its number formatting)
 * and for subtrees too deep to be anything but a cycle. */
static int jfast_dump_jansson(jfast_buf *b, const json_t *v)
{
    /* jansson prints a real in at most 100 bytes (MAX_REAL_STR_LENGTH). */
    size_t n;

    if (jfast_reserve(b, 100))
        return -1;
    n = json_dumpb(v, b->p + b->len, 100, JFAST_DUMP_FLAGS);
    if (n == 0)
        return -1;
    if (n > 100) {
        if (jfast_reserve(b, n) ||
            json_dumpb(v, b->p + b->len, n, JFAST_DUMP_FLAGS) != n)
            return -1;
    }
    b->len += n;
    return 0;
}

/* Appends the quoted, escaped string s (n bytes).  Invalid UTF-8 fails the
 * dump, as in jansson, except in a key: jansson ignores that failure and
 * goes on after the text it had written (the quote and whatever came
 * before the last escape), so this does the same, byte for byte. */
static int jfast_dump_string(jfast_buf *b, const char *str, size_t n,
                             bool key)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)str, *end = p + n;
    size_t commit;
    char *d;

    if (jfast_reserve(b, n + 2))
        return -1;
    d = b->p + b->len;
    *d++ = '"';
    commit = (size_t)(d - b->p);
    while (p < end) {
        const unsigned char *run = p;
        unsigned char c;

        while (p < end && jfast_plain[*p])
            p++;
        if (p >= end) {
            memcpy(d, run, (size_t)(p - run));
            d += p - run;
            break;
        }
        c = *p;
        if (c >= 0x80) {
            size_t k = jfast_utf8_len(p, (size_t)(end - p));
            if (!k) {
                if (!key)
                    return -1;
                b->len = commit;
                return 0;
            }
            p += k;
            memcpy(d, run, (size_t)(p - run));
            d += p - run;
            continue;
        }
        memcpy(d, run, (size_t)(p - run));
        d += p - run;
        /* An escape takes up to 6 bytes for 1: room for it, the rest of
         * the string and the closing quote. */
        b->len = (size_t)(d - b->p);
        if (jfast_reserve(b, (size_t)(end - p) + 6))
            return -1;
        d = b->p + b->len;
        *d++ = '\\';
        switch (c) {
        case '"': *d++ = '"'; break;
        case '\\': *d++ = '\\'; break;
        case '\b': *d++ = 'b'; break;
        case '\f': *d++ = 'f'; break;
        case '\n': *d++ = 'n'; break;
        case '\r': *d++ = 'r'; break;
        case '\t': *d++ = 't'; break;
        default:
            d[0] = 'u';
            d[1] = '0';
            d[2] = '0';
            d[3] = hex[c >> 4];
            d[4] = hex[c & 15];
            d += 5;
            break;
        }
        p++;
        commit = (size_t)(d - b->p);
    }
    *d++ = '"';
    b->len = (size_t)(d - b->p);
    return 0;
}

static int jfast_dump_int(jfast_buf *b, json_int_t v)
{
    char tmp[24], *e = tmp + sizeof tmp, *q = e;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    do {
        *--q = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--q = '-';
    return jfast_put(b, q, (size_t)(e - q));
}

static int jfast_dump_value(jfast_buf *b, const json_t *v, int depth)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        void *it;
        bool first = true;

        if (depth > JFAST_DUMP_DEPTH)
            return jfast_dump_jansson(b, v);
        if (jfast_putc(b, '{'))
            return -1;
        for (it = json_object_iter((json_t *)v); it;
             it = json_object_iter_next((json_t *)v, it)) {
            if (!first && jfast_putc(b, ','))
                return -1;
            first = false;
            if (jfast_dump_string(b, json_object_iter_key(it),
                                  json_object_iter_key_len(it), true) ||
                jfast_putc(b, ':') ||
                jfast_dump_value(b, json_object_iter_value(it), depth + 1))
                return -1;
        }
        return jfast_putc(b, '}');
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);

        if (depth > JFAST_DUMP_DEPTH)
            return jfast_dump_jansson(b, v);
        if (jfast_putc(b, '['))
            return -1;
        for (size_t i = 0; i < n; i++) {
            if ((i && jfast_putc(b, ',')) ||
                jfast_dump_value(b, json_array_get(v, i), depth + 1))
                return -1;
        }
        return jfast_putc(b, ']');
    }
    case JSON_STRING:
        return jfast_dump_string(b, json_string_value(v),
                                 json_string_length(v), false);
    case JSON_INTEGER:
        return jfast_dump_int(b, json_integer_value(v));
    case JSON_REAL:
        return jfast_dump_jansson(b, v);
    case JSON_TRUE:
        return jfast_put(b, "true", 4);
    case JSON_FALSE:
        return jfast_put(b, "false", 5);
    case JSON_NULL:
        return jfast_put(b, "null", 4);
    }
    return -1;
}

int jfast_dump(jfast_buf *b, const json_t *v)
{
    size_t len = b->len;

    if (!v)
        return -1;
    if (jfast_dump_value(b, v, 0)) {
        b->len = len;
        return -1;
    }
    return 0;
}
