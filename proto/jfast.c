/*
 * jfast.c - a fast parser and compact serialiser for jansson values.
 *
 * Owns: jfast_parse (text to a new jansson tree, or a refusal).  The
 * serialiser, jfast_dump and jfast_put (a jansson tree to compact text on
 * a growable buffer), is jdump.c's; what the two share is in
 * jfast_internal.h.
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
 * in strings, nesting deeper than JFAST_MAX_DEPTH, trailing bytes, any NUL
 * byte (jansson drops one right after a number or a word: "1\0" is valid
 * to it), and every syntax error.  The jansson rules it follows are those
 * of jansson 2.14's load.c: whitespace is space, \t, \n and \r only;
 * integers are strtoll's (so "-0" is the integer 0); no leading zeros.
 *
 * The dumper matches jansson 2.14's dump.c with JSON_COMPACT: only '"',
 * '\\' and bytes below 0x20 are escaped (\b \f \n \r \t by name, the rest
 * as \u00XX in upper case), '/' and UTF-8 pass through, object members in
 * insertion order, reals formatted by jansson itself.
 */
#include "jfast_internal.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Nesting beyond which the parser declines: jansson's own limit is 2048,
 * the protocol's default 64; this bounds the parser's stack of frames
 * (24 bytes each, on the C stack: the parser takes about 4.5 KiB). */
#define JFAST_MAX_DEPTH 128
/* Keys remembered for the duplicate check, over all open objects. */
#define JFAST_SEEN_MAX 64
/* Room kept in the parser for decoding strings with escapes. */
#define JFAST_SCRATCH 256

/* Returns the first byte of [p, end) that is not plain, or end.  Eight
 * bytes at a time while eight remain: strings are short, but most of the
 * time is spent in them. */
static inline const unsigned char *jfast_scan(const unsigned char *p,
                                              const unsigned char *end)
{
#ifdef __SSE2__
    /* Sixteen at a time: a signed compare with 0x20 flags both the control
     * characters and the bytes from 0x80 (negative as signed). */
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
    const __m128i space = _mm_set1_epi8(0x20);

    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i m = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)),
            _mm_cmplt_epi8(x, space));
        unsigned bits = (unsigned)_mm_movemask_epi8(m);
        if (bits)
            return p + __builtin_ctz(bits);
        p += 16;
    }
#endif
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (end - p >= 8) {
        uint64_t x, m;
        memcpy(&x, p, 8);
        m = jfast_special8(x);
        if (m)
            return p + (__builtin_ctzll(m) >> 3);
        p += 8;
    }
#endif
    while (p < end && jfast_plain[*p])
        p++;
    return p;
}

/* ------------------------------------------------------------------ */
/* UTF-8                                                              */
/* ------------------------------------------------------------------ */

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

/* One open object or array.  Each container is attached to its parent as
 * soon as it is opened (insertion order is the same: its key is the
 * parent's latest), so the root owns everything and a decline is one
 * json_decref. */
typedef struct jfast_frame {
    json_t *c;     /* borrowed from the root */
    uint64_t sigs; /* one bit per remembered key's signature */
    uint32_t base; /* the object's first remembered key in seen[] */
    bool obj;
    bool hashed; /* duplicates checked by jansson (see jfast_dup) */
} jfast_frame;

typedef struct jfast_key {
    const char *s;
    size_t n;
} jfast_key;

typedef struct jfast_parser {
    /* Keys of the open objects, innermost last: an object's keys are
     * contiguous at the top while it reads its next member, because a
     * nested object pops its own before its parent goes on. */
    size_t nseen;
    jfast_key seen[JFAST_SEEN_MAX];
    /* The last string read by the slow path: its bytes (in the input, or
     * decoded into scratch or heap), length and whether it had escapes. */
    const char *str;
    size_t strn;
    bool esc;
    char *heap;
    size_t heap_cap;
    char scratch[JFAST_SCRATCH];
    int max_depth; /* open containers allowed, <= JFAST_MAX_DEPTH */
    jfast_frame stack[JFAST_MAX_DEPTH];
} jfast_parser;

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
        case '"':
            *d++ = '"';
            break;
        case '\\':
            *d++ = '\\';
            break;
        case '/':
            *d++ = '/';
            break;
        case 'b':
            *d++ = '\b';
            break;
        case 'f':
            *d++ = '\f';
            break;
        case 'n':
            *d++ = '\n';
            break;
        case 'r':
            *d++ = '\r';
            break;
        case 't':
            *d++ = '\t';
            break;
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

/* The string whose body starts at start, from p (the first byte of
 * [start, ...) that is not plain): escapes, UTF-8 and errors.  Returns the
 * byte after the closing quote with ps->str, strn and esc set, or NULL to
 * decline. */
static const unsigned char *jfast_string_slow(jfast_parser *ps,
                                              const unsigned char *start,
                                              const unsigned char *p,
                                              const unsigned char *end)
{
    bool esc = false;

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
        p = jfast_scan(p, end);
    }
    ps->esc = esc;
    if (!esc) {
        ps->str = (const char *)start;
        ps->strn = (size_t)(p - start);
    } else {
        ps->str = jfast_unescape(ps, start, p, &ps->strn);
        if (!ps->str)
            return NULL;
    }
    return p + 1;
}

/* Reads the string whose opening quote is at p.  Returns the byte after
 * its closing quote with *s, *n, *esc set (*s in the input when it has no
 * escapes, else in the parser's buffer until the next string), or NULL to
 * decline.  Inline: the plain case is the hot path. */
static inline const unsigned char *
jfast_string(jfast_parser *ps, const unsigned char *p, const unsigned char *end,
             const char **s, size_t *n, bool *esc)
{
    const unsigned char *start = p + 1;

    p = jfast_scan(start, end);
    if (p < end && *p == '"') {
        *s = (const char *)start;
        *n = (size_t)(p - start);
        *esc = false;
        return p + 1;
    }
    p = jfast_string_slow(ps, start, p, end);
    if (p) { /* else ps's fields may be unset */
        *s = ps->str;
        *n = ps->strn;
        *esc = ps->esc;
    }
    return p;
}

/* Small non-negative integers (a delta of 1, a count, a short timeout)
 * are built once and shared: jansson's json_integer is a malloc, and its
 * release a free, per parameter of every request.  Each is made immortal
 * the way jansson makes its own true, false and null: a refcount of
 * (size_t)-1, which json_incref and json_decref leave alone (jansson.h),
 * so sharing one across threads costs no atomic operation and nothing
 * writes to it once published.  Sharing is safe as nothing in chand
 * changes a parsed integer in place (json_integer_set): a parsed tree is
 * read-only.  Filled lazily, each slot by whichever thread first needs
 * it; kept until exit. */
#define JFAST_SMALL_INTS 1024
static _Atomic(json_t *) jfast_small[JFAST_SMALL_INTS];

/* Returns the shared integer u (< JFAST_SMALL_INTS), or NULL when out of
 * memory. */
static json_t *jfast_small_int(uint64_t u)
{
    json_t *v = atomic_load_explicit(&jfast_small[u], memory_order_acquire),
           *none = NULL;

    if (v)
        return v;
    if (!(v = json_integer((json_int_t)u)))
        return NULL;
    v->refcount = (size_t)-1; /* not yet published: no other reader */
    if (!atomic_compare_exchange_strong_explicit(&jfast_small[u], &none, v,
                                                 memory_order_acq_rel,
                                                 memory_order_acquire)) {
        v->refcount = 1; /* another thread's is the one kept: free ours */
        json_decref(v);
        v = none;
    }
    return v;
}

/* Reads the integer at p.  Returns the byte after it with a new *v, or
 * NULL to decline. */
static const unsigned char *jfast_int(const unsigned char *p,
                                      const unsigned char *end, json_t **v)
{
    const unsigned char *digits;
    bool neg = false;
    uint64_t u = 0;

    if (*p == '-') {
        neg = true;
        p++;
    }
    digits = p;
    while (p < end && *p >= '0' && *p <= '9')
        u = u * 10 + (uint64_t)(*p++ - '0');
    /* 19 digits cannot wrap a uint64; more may, and cannot fit anyway. */
    if (p == digits || p - digits > 19 || (*digits == '0' && p - digits > 1))
        return NULL;
    if (p < end && (*p == '.' || *p == 'e' || *p == 'E'))
        return NULL; /* a real: jansson's strtod decides its value */
    if (u > (uint64_t)INT64_MAX + neg)
        return NULL; /* jansson: "too big integer" */
    if (!neg && u < JFAST_SMALL_INTS)
        *v = jfast_small_int(u);
    else if (!neg)
        *v = json_integer((json_int_t)u);
    else
        *v = json_integer(u == (uint64_t)INT64_MAX + 1 ? INT64_MIN
                                                       : -(json_int_t)u);
    return *v ? p : NULL;
}

/* Returns true when key k (n bytes) is already in the innermost object f:
 * compared with the remembered keys while they are all of its keys, else
 * looked up by jansson.  A 64-bit set of key signatures (length, first and
 * last byte) skips the comparisons for most new keys. */
static bool jfast_dup(jfast_parser *ps, jfast_frame *f, const char *k, size_t n,
                      bool esc)
{
    if (!f->hashed) {
        unsigned sig = n ? (unsigned)(n * 7 + (unsigned char)k[0] * 3 +
                                      (unsigned char)k[n - 1])
                         : 0;
        uint64_t bit = 1ULL << (sig & 63);

        if (f->sigs & bit) {
            for (size_t i = f->base; i < ps->nseen; i++)
                if (ps->seen[i].n == n && memcmp(ps->seen[i].s, k, n) == 0)
                    return true;
        }
        /* A decoded key lives in a buffer the next string overwrites, so
         * it cannot be remembered; neither can keys past the table. */
        if (!esc && ps->nseen < JFAST_SEEN_MAX) {
            f->sigs |= bit;
            ps->seen[ps->nseen].s = k;
            ps->seen[ps->nseen].n = n;
            ps->nseen++;
            return false;
        }
        f->hashed = true;
    }
    return json_object_getn(f->c, k, n) != NULL;
}

static inline bool jfast_isws(unsigned char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

/* One loop with an explicit stack rather than recursion, so that the
 * input pointer stays in a register across jansson's calls.  Whitespace
 * is tested last at each point (after the bytes that may come there), so
 * compact text pays nothing for it. */
static json_t *jfast_run(jfast_parser *ps, const unsigned char *p,
                         const unsigned char *end, const unsigned char **stop)
{
    json_t *root = NULL, *v;
    jfast_frame *f = NULL; /* innermost open container, NULL at the top */
    const char *k = NULL;  /* the member's key, when f is an object */
    char *kcopy = NULL;    /* k's own copy when it was decoded */
    size_t kn = 0;
    bool esc, open;
    unsigned char c;

value:
    if (p >= end)
        goto out_decline;
    c = *p;
    /* In order of frequency in requests, strings first. */
    open = false;
    if (c == '"') {
        const char *s;
        size_t n;
        p = jfast_string(ps, p, end, &s, &n, &esc);
        /* Checked: valid UTF-8, no NUL. */
        if (!p || !(v = json_stringn_nocheck(s, n)))
            goto out_decline;
    } else if ((c >= '0' && c <= '9') || c == '-') {
        p = jfast_int(p, end, &v);
        if (!p)
            goto out_decline;
    } else if (c == '{' || c == '[') {
        v = c == '{' ? json_object() : json_array();
        if (!v)
            goto out_decline;
        open = true;
    } else if (c == 't') {
        if (end - p < 4 || memcmp(p, "true", 4) != 0)
            goto out_decline;
        /* A letter after the word makes jansson read a longer, invalid
         * one; the next check (',', '}', ']', or the end) declines it. */
        p += 4;
        v = json_true();
    } else if (c == 'f') {
        if (end - p < 5 || memcmp(p, "false", 5) != 0)
            goto out_decline;
        p += 5;
        v = json_false();
    } else if (c == 'n') {
        if (end - p < 4 || memcmp(p, "null", 4) != 0)
            goto out_decline;
        p += 4;
        v = json_null();
    } else if (jfast_isws(c)) {
        p++;
        goto value;
    } else {
        goto out_decline;
    }

    /* Attach v (stolen, also on failure) to the open container. */
    if (!f) {
        root = v;
    } else if (f->obj) {
        int rc = json_object_setn_new_nocheck(f->c, k, kn, v);
        if (kcopy) { /* not a call to free(NULL) per member */
            free(kcopy);
            kcopy = NULL;
        }
        if (rc)
            goto out_decline;
    } else if (json_array_append_new(f->c, v)) {
        goto out_decline;
    }

    if (open) {
        jfast_frame *nf = f ? f + 1 : ps->stack;
        if (nf == ps->stack + ps->max_depth)
            goto out_decline;
        nf->c = v;
        nf->obj = c == '{';
        nf->base = (uint32_t)ps->nseen;
        nf->sigs = 0;
        nf->hashed = false;
        f = nf;
        p++;
        while (p < end && jfast_isws(*p))
            p++;
        if (p < end && *p == (f->obj ? '}' : ']')) {
            p++;
            goto close;
        }
        if (f->obj)
            goto key;
        goto value;
    }

next:
    /* After a value: the end, ',' and the next member, or the close. */
    if (!f)
        goto done;
    if (p >= end)
        goto out_decline;
    c = *p;
    if (c == ',') {
        p++;
        if (f->obj)
            goto key;
        goto value;
    }
    if (c == (f->obj ? '}' : ']')) {
        p++;
        goto close;
    }
    if (!jfast_isws(c))
        goto out_decline;
    p++;
    goto next;

close:
    ps->nseen = f->base;
    f = f == ps->stack ? NULL : f - 1;
    goto next;

key:
    if (p >= end)
        goto out_decline;
    if (*p != '"') {
        if (!jfast_isws(*p))
            goto out_decline;
        p++;
        goto key;
    }
    p = jfast_string(ps, p, end, &k, &kn, &esc);
    if (!p || jfast_dup(ps, f, k, kn, esc))
        goto out_decline;
    if (esc) {
        /* A string value would reuse the decode buffer. */
        kcopy = malloc(kn ? kn : 1);
        if (!kcopy)
            goto out_decline;
        memcpy(kcopy, k, kn);
        k = kcopy;
    }
colon:
    if (p >= end)
        goto out_decline;
    if (*p != ':') {
        if (!jfast_isws(*p))
            goto out_decline;
        p++;
        goto colon;
    }
    p++;
    goto value;

done:
    if (stop) { /* a prefix: the caller reads on from p */
        *stop = p;
        return root;
    }
    while (p < end && jfast_isws(*p))
        p++;
    if (p != end)
        goto out_decline;
    return root;

out_decline:
    if (kcopy)
        free(kcopy);
    json_decref(root);
    return NULL;
}

/* Parses one value at s; stop NULL: the whole text, else a prefix. */
static json_t *jfast_parse_at(const char *s, size_t len, int max_depth,
                              const unsigned char **stop)
{
    jfast_parser ps;
    json_t *v;

    if (!s)
        return NULL;
    ps.nseen = 0;
    ps.heap = NULL;
    ps.heap_cap = 0;
    ps.max_depth = max_depth < 0                 ? 0
                   : max_depth > JFAST_MAX_DEPTH ? JFAST_MAX_DEPTH
                                                 : max_depth;
    v = jfast_run(&ps, (const unsigned char *)s, (const unsigned char *)s + len,
                  stop);
    if (ps.heap)
        free(ps.heap);
    return v;
}

json_t *jfast_parse(const char *s, size_t len)
{
    return jfast_parse_at(s, len, JFAST_MAX_DEPTH, NULL);
}

json_t *jfast_parse_prefix(const char *s, size_t len, int max_depth,
                           size_t *used)
{
    const unsigned char *stop = NULL;
    json_t *v = jfast_parse_at(s, len, max_depth, &stop);

    if (v)
        *used = (size_t)((const char *)stop - s);
    return v;
}
