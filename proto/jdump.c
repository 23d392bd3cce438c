/*
 * jdump.c - jfast's compact serialiser: a jansson tree to text on a
 * growable buffer (jfast_dump, jfast_put, jfast_put_int), byte for byte
 * what jansson 2.14's dump.c writes with JSON_COMPACT (see jfast.c's top
 * comment for the rules).
 */
#include "jfast_internal.h"

#include <stdlib.h>

/* Nesting beyond which the dumper hands the subtree to json_dumpb: only a
 * reference cycle (which jansson detects and refuses) or a pathological
 * tree gets there, and jansson then decides either way. */
#define JFAST_DUMP_DEPTH 256
#define JFAST_DUMP_FLAGS (JSON_COMPACT | JSON_ENCODE_ANY)

/* ------------------------------------------------------------------ */
/* Buffer and serialiser                                              */
/* ------------------------------------------------------------------ */

/* Makes room for need more bytes: doubling, from 128, so a line built
 * from many pieces costs few reallocs. */
int jfast_grow(jfast_buf *b, size_t need)
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
static __attribute__((noinline)) int
jfast_dump_string_slow(jfast_buf *b, const char *str, size_t n, bool key)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)str, *end = p + n;
    size_t commit;
    char *d;

    /* Room for the quotes and every byte as it is (plus one, for the
     * caller's ':' or ','); each escape makes room for its extra bytes. */
    if (jfast_reserve(b, n + 3))
        return -1;
    d = b->p + b->len;
    *d++ = '"';
    commit = (size_t)(d - b->p);
    while (p < end) {
        unsigned char c;

        /* Copy plain bytes while scanning them: 16 at a time (the store
         * stays in the room reserved, which is at least end - p), the
         * tail at once when it is all plain, else byte by byte up to the
         * byte that needs care. */
#ifdef __SSE2__
        while (end - p >= 16) {
            __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
            __m128i m = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('"')),
                             _mm_cmpeq_epi8(x, _mm_set1_epi8('\\'))),
                _mm_cmplt_epi8(x, _mm_set1_epi8(0x20)));
            unsigned bits = (unsigned)_mm_movemask_epi8(m);
            _mm_storeu_si128((__m128i *)(void *)d, x);
            if (bits) {
                unsigned k = (unsigned)__builtin_ctz(bits);
                p += k;
                d += k;
                break;
            }
            p += 16;
            d += 16;
        }
#endif
        if (end - p < 16 && jfast_copy_short(d, p, (size_t)(end - p))) {
            d += end - p;
            break;
        }
        while (p < end && jfast_plain[*p])
            *d++ = (char)*p++;
        if (p >= end)
            break;
        c = *p;
        if (c >= 0x80) {
            size_t k = jfast_utf8_len(p, (size_t)(end - p));
            if (!k) {
                if (!key)
                    return -1;
                b->len = commit;
                return 0;
            }
            memcpy(d, p, k);
            p += k;
            d += k;
            continue;
        }
        /* An escape takes up to 6 bytes for 1: room for it, the rest of
         * the string, the closing quote and the caller's byte. */
        b->len = (size_t)(d - b->p);
        if (jfast_reserve(b, (size_t)(end - p) + 7))
            return -1;
        d = b->p + b->len;
        *d++ = '\\';
        switch (c) {
        case '"':
            *d++ = '"';
            break;
        case '\\':
            *d++ = '\\';
            break;
        case '\b':
            *d++ = 'b';
            break;
        case '\f':
            *d++ = 'f';
            break;
        case '\n':
            *d++ = 'n';
            break;
        case '\r':
            *d++ = 'r';
            break;
        case '\t':
            *d++ = 't';
            break;
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

/* jfast_dump_string_slow, with the usual case in line: a short string
 * of plain bytes, and room for it. */
static JFAST_INLINE int jfast_dump_string(jfast_buf *b, const char *str,
                                          size_t n, bool key)
{
    if (n < 16 && b->cap - b->len >= n + 3) {
        char *d = b->p + b->len;
        if (jfast_copy_short(d + 1, (const unsigned char *)str, n)) {
            d[0] = '"';
            d[n + 1] = '"';
            b->len += n + 2;
            return 0;
        }
    }
    return jfast_dump_string_slow(b, str, n, key);
}

int jfast_put_int(jfast_buf *b, json_int_t v)
{
    char tmp[24], *e = tmp + sizeof tmp, *q = e, *d;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    do {
        *--q = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--q = '-';
    if (jfast_reserve(b, sizeof tmp))
        return -1;
    /* At most 20 bytes: a loop beats a call to memcpy. */
    d = b->p + b->len;
    b->len += (size_t)(e - q);
    while (q < e)
        *d++ = *q++;
    return 0;
}

/* Appends one of the words true, false, null (n is a constant: the copy
 * is a store). */
static JFAST_INLINE int jfast_put_word(jfast_buf *b, const char *w, size_t n)
{
    if (jfast_reserve(b, n))
        return -1;
    memcpy(b->p + b->len, w, n);
    b->len += n;
    return 0;
}

static int jfast_dump_value(jfast_buf *b, const json_t *v, int depth);

/* A member or element: strings, integers and words in line, containers
 * and reals by the general function (a call per leaf was a tenth of a
 * typical answer's cost). */
static JFAST_INLINE int jfast_dump_child(jfast_buf *b, const json_t *v,
                                         int depth)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        return jfast_dump_string(b, json_string_value(v), json_string_length(v),
                                 false);
    case JSON_INTEGER:
        return jfast_put_int(b, json_integer_value(v));
    case JSON_TRUE:
        return jfast_put_word(b, "true", 4);
    case JSON_FALSE:
        return jfast_put_word(b, "false", 5);
    case JSON_NULL:
        return jfast_put_word(b, "null", 4);
    default:
        return jfast_dump_value(b, v, depth);
    }
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
                                  json_object_iter_key_len(it), true))
                return -1;
            b->p[b->len++] = ':'; /* jfast_dump_string left room */
            if (jfast_dump_child(b, json_object_iter_value(it), depth + 1))
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
                jfast_dump_child(b, json_array_get(v, i), depth + 1))
                return -1;
        }
        return jfast_putc(b, ']');
    }
    case JSON_STRING:
        return jfast_dump_string(b, json_string_value(v), json_string_length(v),
                                 false);
    case JSON_INTEGER:
        return jfast_put_int(b, json_integer_value(v));
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
