/*
 * jfast_internal.h - what jfast.c (the parser) and jdump.c (the
 * serialiser) share: which bytes a string may hold as they are, the
 * 8-bytes-at-a-time helpers built on that, and the UTF-8 check.  All
 * inline, as they were in one file.  Not for users of jfast.h.
 */
#ifndef CHAND_JFAST_INTERNAL_H
#define CHAND_JFAST_INTERNAL_H

#include "jfast.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* 1 for the bytes a string may hold as they are, in the text and in the
 * dump alike: printable ASCII and DEL, but not '"' or '\\'. */
static const unsigned char jfast_plain[256] = {
    [0x20] = 1,
    [0x21] = 1,
    [0x23 ... 0x5b] = 1,
    [0x5d ... 0x7f] = 1,
};

#define JFAST_ONES 0x0101010101010101ULL
#define JFAST_HIGHS 0x8080808080808080ULL

/* Returns a mask with the high bit set in (at least) the first byte of x,
 * in memory order, that is not plain; 0 when all 8 are.  The classic
 * "has a zero byte" tests may also flag bytes after a true hit (borrows),
 * never before one, so the lowest flagged byte is exact. */
#define JFAST_INLINE inline __attribute__((always_inline))

static JFAST_INLINE uint64_t jfast_special8(uint64_t x)
{
    uint64_t q = x ^ (JFAST_ONES * '"'), b = x ^ (JFAST_ONES * '\\');

    return (((q - JFAST_ONES) & ~q) | ((b - JFAST_ONES) & ~b) |
            ((x - JFAST_ONES * 0x20) & ~x) | x) &
           JFAST_HIGHS;
}

/* Copies the n < 16 bytes at p to d and returns true when all are plain,
 * else returns false (d may hold some of them).  Two overlapping loads
 * cover the bytes without reading past them, so a short string costs a
 * few word operations instead of a loop. */
static JFAST_INLINE bool jfast_copy_short(char *d, const unsigned char *p,
                                          size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (n >= 8) {
        uint64_t a, z;
        memcpy(&a, p, 8);
        memcpy(&z, p + n - 8, 8);
        if (jfast_special8(a) | jfast_special8(z))
            return false;
        memcpy(d, &a, 8);
        memcpy(d + n - 8, &z, 8);
        return true;
    }
    if (n >= 4) {
        uint32_t a, z;
        memcpy(&a, p, 4);
        memcpy(&z, p + n - 4, 4);
        if (jfast_special8(a | (uint64_t)z << 32))
            return false;
        memcpy(d, &a, 4);
        memcpy(d + n - 4, &z, 4);
        return true;
    }
    if (n >= 2) {
        uint16_t a, z;
        memcpy(&a, p, 2);
        memcpy(&z, p + n - 2, 2);
        /* the other four bytes: 'a', plain */
        if (jfast_special8(0x6161616100000000ULL | a | (uint64_t)z << 16))
            return false;
        memcpy(d, &a, 2);
        memcpy(d + n - 2, &z, 2);
        return true;
    }
    if (n == 1) {
        if (!jfast_plain[p[0]])
            return false;
        d[0] = (char)p[0];
    }
    return true;
#else
    for (size_t i = 0; i < n; i++) {
        if (!jfast_plain[p[i]])
            return false;
        d[i] = (char)p[i];
    }
    return true;
#endif
}

/* Returns the length (2..4) of the valid UTF-8 sequence at p (at most n
 * bytes, p[0] >= 0x80), or 0.  Valid as jansson's utf8_check_full means
 * it: no overlong forms, no surrogates, nothing above U+10FFFF. */
static inline size_t jfast_utf8_len(const unsigned char *p, size_t n)
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
    if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff) || (k == 3 && v < 0x800) ||
        (k == 4 && v < 0x10000))
        return 0;
    return k;
}

#endif /* CHAND_JFAST_INTERNAL_H */
