/*
 * hval.h - a value held by a channel: its compact JSON text, in the
 * channel's 8-byte slot when it is short, else in one allocation.
 *
 * A channel used to hold a jansson value per element: a json_t and its
 * string, two allocations and ~48 bytes for a three-letter payload, which
 * a queue filled a page fault at a time and which recv then dumped back
 * to text.  Values crossing a channel are immutable and only ever leave
 * as text in an answer, so the text is what is kept: a value of up to 7
 * bytes of JSON ("abcde", 1234567, true, null) lives in the slot itself,
 * a longer one in a blob of its length and bytes.  The text is exactly
 * what jfast_dump writes for the value (json_dumpb with JSON_COMPACT), so
 * answers are byte for byte what they were.
 *
 * Ownership: an hval owns its blob; hval_free releases it.  Copying the 8
 * bytes moves the value (as the runtime's channel does).
 */
#ifndef CHAND_HVAL_H
#define CHAND_HVAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Inline: byte 0 is (length << 1) | 1 and bytes 1..7 the text (the low
 * bit of a blob's pointer is 0: it is malloc-aligned). */
typedef union hval {
    uintptr_t p;
    unsigned char b[8];
} hval;

_Static_assert(sizeof(hval) == 8, "hval is one channel slot");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "hval's inline tag is the pointer's low byte");

#define HVAL_INLINE_MAX 7

/* Makes *out hold the compact text of v (borrowed).  Returns 0, or -1
 * when out of memory or v cannot be written (invalid UTF-8). */
int hval_from_json(const json_t *v, hval *out);
/* Makes *out hold the n bytes at s, which must be the compact JSON text of
 * one value (the scanner's plain strings).  Returns 0 or -1 (memory). */
int hval_from_text(const char *s, size_t n, hval *out);
/* Makes *out hold the decimal text of n.  Returns 0 or -1 (memory). */
int hval_from_int(int64_t n, hval *out);
/* Returns the text of *v (borrowed from *v: valid while *v is neither
 * freed nor moved) and its length in *n. */
static inline const char *hval_text(const hval *v, size_t *n)
{
    if (v->p & 1) {
        *n = v->b[0] >> 1;
        return (const char *)v->b + 1;
    }
    *n = *(const size_t *)v->p;
    return (const char *)v->p + sizeof(size_t);
}
/* Returns a new jansson value parsed from *v's text, or NULL (memory). */
json_t *hval_json(const hval *v);
/* Returns the JSON type of *v's value (from its first byte). */
json_type hval_type(const hval *v);
/* Returns the bytes held in hval blobs now (for max_memory's count). */
int64_t hval_bytes(void);
/* Frees v's blob, if it has one. */
void hval_free(hval v);

#endif /* CHAND_HVAL_H */
