/*
 * crc32c.h - CRC-32C (Castagnoli, polynomial 0x1EDC6F41 reflected as
 * 0x82F63B78), the checksum of every durability record (daemon/effect.h).
 *
 * The SSE4.2 crc32 instruction is used when the CPU has it (checked once),
 * else an 8-bit-at-a-time slicing table.  Both give the same values; the
 * unit tests hold each to the RFC 3720 vectors.
 */
#ifndef CHAND_CRC32C_H
#define CHAND_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Returns the CRC-32C of n bytes at p continuing from crc (0 to start):
 * crc32c_update(crc32c_update(0, a, na), b, nb) == crc32c of a then b. */
uint32_t crc32c_update(uint32_t crc, const void *p, size_t n);

/* Returns the CRC-32C of n bytes at p. */
static inline uint32_t crc32c(const void *p, size_t n)
{
    return crc32c_update(0, p, n);
}

/* Returns 1 when crc32c_update uses the CPU's instruction, else 0. */
int crc32c_hw(void);

/* Returns what crc32c_update does, always with the table (for tests). */
uint32_t crc32c__sw(uint32_t crc, const void *p, size_t n);

#endif /* CHAND_CRC32C_H */
