/*
 * hval.c - channel values kept as their compact JSON text (see hval.h):
 * making one from a jansson value, from text or from an integer, reading
 * it back, freeing it.
 */
#include "hval.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "jfast.h"

/* Bytes in blobs (with malloc's overhead, roughly), for mem.c: channel
 * values are the largest thing clients make the daemon hold. */
static _Atomic int64_t hval_held;
#define HVAL_COST(n) ((int64_t)(n) + (int64_t)sizeof(size_t) + 16)

int64_t hval_bytes(void)
{
    return atomic_load_explicit(&hval_held, memory_order_relaxed);
}

/* Bytes a short string may hold to be written as it is: printable ASCII
 * but '"' and '\\' (jansson escapes the rest, or they are UTF-8, which
 * the general path copies just as well). */
static bool hval_plain(unsigned char c)
{
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

static void hval_inline(const char *s, size_t n, hval *out)
{
    out->p = 0;
    out->b[0] = (unsigned char)(n << 1 | 1);
    memcpy(out->b + 1, s, n);
}

int hval_from_text(const char *s, size_t n, hval *out)
{
    size_t *blob;

    if (n <= HVAL_INLINE_MAX) {
        hval_inline(s, n, out);
        return 0;
    }
    blob = malloc(sizeof(size_t) + n);
    if (!blob)
        return -1;
    *blob = n;
    memcpy(blob + 1, s, n);
    out->p = (uintptr_t)blob;
    atomic_fetch_add_explicit(&hval_held, HVAL_COST(n), memory_order_relaxed);
    return 0;
}

int hval_from_int(int64_t n, hval *out)
{
    char t[24];
    jfast_buf b = {t, 0, sizeof t}; /* 20 digits and a sign fit: no grow */

    if (jfast_put_int(&b, (json_int_t)n))
        return -1;
    return hval_from_text(b.p, b.len, out);
}

/* The values a queue mostly carries (short names, small numbers, true)
 * without a dump and its buffer.  Returns false to leave it to the dump. */
static bool hval_from_small(const json_t *v, hval *out)
{
    char t[HVAL_INLINE_MAX];
    const char *s;
    size_t n;

    switch (json_typeof(v)) {
    case JSON_STRING:
        n = json_string_length(v);
        if (n > HVAL_INLINE_MAX - 2)
            return false;
        s = json_string_value(v);
        for (size_t i = 0; i < n; i++)
            if (!hval_plain((unsigned char)s[i]))
                return false;
        t[0] = '"';
        memcpy(t + 1, s, n);
        t[n + 1] = '"';
        hval_inline(t, n + 2, out);
        return true;
    case JSON_INTEGER:
        return hval_from_int(json_integer_value(v), out) == 0;
    case JSON_TRUE:
        hval_inline("true", 4, out);
        return true;
    case JSON_FALSE:
        hval_inline("false", 5, out);
        return true;
    case JSON_NULL:
        hval_inline("null", 4, out);
        return true;
    default:
        return false;
    }
}

int hval_from_json(const json_t *v, hval *out)
{
    /* The blob's length word is reserved at the front of the dump, so
     * that a long value costs the one allocation the dump makes. */
    jfast_buf b = {0};
    size_t n;

    if (hval_from_small(v, out))
        return 0;
    if (jfast_put(&b, "\0\0\0\0\0\0\0\0", sizeof(size_t)) ||
        jfast_dump(&b, v)) {
        free(b.p);
        return -1;
    }
    n = b.len - sizeof(size_t);
    if (n <= HVAL_INLINE_MAX) {
        hval_inline(b.p + sizeof(size_t), n, out);
        free(b.p);
        return 0;
    }
    memcpy(b.p, &n, sizeof n);
    out->p = (uintptr_t)b.p;
    atomic_fetch_add_explicit(&hval_held, HVAL_COST(n), memory_order_relaxed);
    return 0;
}

json_t *hval_json(const hval *v)
{
    size_t n;
    const char *s = hval_text(v, &n);
    json_t *j = jfast_parse(s, n);

    /* jansson reads what jfast declines (reals, long numbers); the text
     * came from a dump of a valid value, so it parses. */
    return j ? j : json_loadb(s, n, JSON_DECODE_ANY, NULL);
}

json_type hval_type(const hval *v)
{
    size_t n;
    const char *s = hval_text(v, &n);

    switch (s[0]) {
    case '"':
        return JSON_STRING;
    case '{':
        return JSON_OBJECT;
    case '[':
        return JSON_ARRAY;
    case 't':
        return JSON_TRUE;
    case 'f':
        return JSON_FALSE;
    case 'n':
        return JSON_NULL;
    default:
        for (size_t i = 0; i < n; i++)
            if (s[i] == '.' || s[i] == 'e' || s[i] == 'E')
                return JSON_REAL;
        return JSON_INTEGER;
    }
}

void hval_free(hval v)
{
    if (v.p & 1)
        return;
    if (v.p)
        atomic_fetch_sub_explicit(&hval_held, HVAL_COST(*(size_t *)v.p),
                                  memory_order_relaxed);
    free((void *)v.p);
}
