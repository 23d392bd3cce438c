/*
 * crc32c.c - CRC-32C: the SSE4.2 instruction when present, a slicing-by-8
 * table otherwise.  The table is built once (pthread_once), so any thread
 * may checksum at any time.
 */
#include "crc32c.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define CRC32C_POLY 0x82F63B78u

static uint32_t crc32c_tab[8][256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;
static int crc32c_use_hw;
/* Set once the table and crc32c_use_hw are: a plain load on the log's
 * path (two checksums a record) instead of a call to pthread_once. */
static _Atomic int crc32c_ready;

static void crc32c_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1)));
        crc32c_tab[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = crc32c_tab[0][i];
        for (int t = 1; t < 8; t++) {
            c = (c >> 8) ^ crc32c_tab[0][c & 0xff];
            crc32c_tab[t][i] = c;
        }
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    crc32c_use_hw = __builtin_cpu_supports("sse4.2");
#endif
    atomic_store_explicit(&crc32c_ready, 1, memory_order_release);
}

uint32_t crc32c__sw(uint32_t crc, const void *p, size_t n)
{
    const uint8_t *b = p;

    pthread_once(&crc32c_once, crc32c_init);
    crc = ~crc;
    while (n && ((uintptr_t)b & 7)) {
        crc = (crc >> 8) ^ crc32c_tab[0][(crc ^ *b++) & 0xff];
        n--;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        /* The table walk below reads the word as little-endian. */
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        w = __builtin_bswap64(w);
#endif
        w ^= crc;
        crc =
            crc32c_tab[7][w & 0xff] ^ crc32c_tab[6][(w >> 8) & 0xff] ^
            crc32c_tab[5][(w >> 16) & 0xff] ^ crc32c_tab[4][(w >> 24) & 0xff] ^
            crc32c_tab[3][(w >> 32) & 0xff] ^ crc32c_tab[2][(w >> 40) & 0xff] ^
            crc32c_tab[1][(w >> 48) & 0xff] ^ crc32c_tab[0][w >> 56];
        b += 8;
        n -= 8;
    }
    while (n--)
        crc = (crc >> 8) ^ crc32c_tab[0][(crc ^ *b++) & 0xff];
    return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t
crc32c_hw_update(uint32_t crc, const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t c = ~crc;

    /* No byte-wise walk to an aligned address: x86 loads unaligned words
     * at full speed, and the log's records are a few dozen bytes, where
     * up to seven serial byte steps at each end were more than half of
     * the cost.  The tail takes one 4-, 2- and 1-byte step at most. */
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        c = __builtin_ia32_crc32di(c, w);
        b += 8;
        n -= 8;
    }
    if (n >= 4) {
        uint32_t w;
        memcpy(&w, b, 4);
        c = __builtin_ia32_crc32si((uint32_t)c, w);
        b += 4;
        n -= 4;
    }
    if (n >= 2) {
        uint16_t w;
        memcpy(&w, b, 2);
        c = __builtin_ia32_crc32hi((uint32_t)c, w);
        b += 2;
        n -= 2;
    }
    if (n)
        c = __builtin_ia32_crc32qi((uint32_t)c, *b);
    return ~(uint32_t)c;
}
#endif

uint32_t crc32c_update(uint32_t crc, const void *p, size_t n)
{
    if (!atomic_load_explicit(&crc32c_ready, memory_order_acquire))
        pthread_once(&crc32c_once, crc32c_init);
#if defined(__x86_64__)
    if (crc32c_use_hw)
        return crc32c_hw_update(crc, p, n);
#endif
    return crc32c__sw(crc, p, n);
}

int crc32c_hw(void)
{
    pthread_once(&crc32c_once, crc32c_init);
    return crc32c_use_hw;
}
