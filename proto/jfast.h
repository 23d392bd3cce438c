/*
 * jfast.h - a fast path for jansson's parse and compact dump.
 *
 * Profiling the broker showed jansson's json_loadb and json_dumpb at about
 * two thirds of the instructions per request, most of it in their generic
 * byte-at-a-time stream and callback machinery rather than in building the
 * values.  This module owns a parser and a compact serialiser that produce
 * and consume ordinary jansson values, byte for byte what jansson would:
 *
 *  - jfast_parse builds the same tree as json_loadb(s, len,
 *    JSON_REJECT_DUPLICATES | JSON_DECODE_ANY) or declines (NULL).  It
 *    never reports errors: on anything it does not handle (reals, large
 *    integers, \u0000, invalid text, duplicate keys, ...) the caller falls
 *    back to json_loadb, which stays the authority and writes the error
 *    messages.  Declining is always correct, merely slower.
 *  - jfast_dump appends exactly the bytes of json_dumpb(v, ...,
 *    JSON_COMPACT | JSON_ENCODE_ANY) to a growable buffer.
 *
 * tests/unit/test_jfast.c and tests/fuzz/fuzz_jfast.c hold both to that
 * equivalence differentially.
 */
#ifndef CHAND_JFAST_H
#define CHAND_JFAST_H

#include <jansson.h>
#include <stddef.h>

/* A growable byte buffer.  Start it zeroed ({0}); the caller owns p and
 * frees it with free() (also after a failed append).  p is not
 * NUL-terminated. */
typedef struct jfast_buf {
    char *p;
    size_t len, cap;
} jfast_buf;

/* Returns a new reference to the value that json_loadb(s, len,
 * JSON_REJECT_DUPLICATES | JSON_DECODE_ANY) would return, or NULL when the
 * text is invalid, out of memory, or outside the fast path (the caller
 * then calls json_loadb).  s need not be NUL-terminated. */
json_t *jfast_parse(const char *s, size_t len);

/* The same for the one value at the start of s (no leading whitespace)
 * with at most max_depth nested objects/arrays (0: a scalar), followed by
 * anything: returns it with *used set to the bytes it took, or NULL.  For
 * callers that read the text around it themselves (proto_scan_request);
 * a value that jansson would read differently in context (a number
 * running into the next byte, as 1x) is theirs to reject by what
 * follows, which must be a delimiter. */
json_t *jfast_parse_prefix(const char *s, size_t len, int max_depth,
                           size_t *used);

/* Makes room for need more bytes in b (the slow half of jfast_put).
 * Returns 0, or -1 when out of memory (b keeps what it had). */
int jfast_grow(jfast_buf *b, size_t need);

/* Appends n bytes of s to b.  Returns 0, or -1 when out of memory (b keeps
 * what it had).  Inline: an answer is built from a handful of short
 * pieces, and the call cost more than the copy. */
static inline int jfast_put(jfast_buf *b, const char *s, size_t n)
{
    if (b->cap - b->len < n && jfast_grow(b, n))
        return -1;
    if (n)
        __builtin_memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

/* Appends the decimal text of v (as jansson prints an integer). */
int jfast_put_int(jfast_buf *b, json_int_t v);

/* Appends the compact JSON text of v (borrowed) to b, byte-identical to
 * json_dumpb(v, ..., JSON_COMPACT | JSON_ENCODE_ANY).  Returns 0, or -1
 * when out of memory or when jansson would fail too (v NULL, a string that
 * is not valid UTF-8, a reference cycle); on -1, b->len is unchanged. */
int jfast_dump(jfast_buf *b, const json_t *v);

#endif /* CHAND_JFAST_H */
