/*
 * epoch.h - the fencing tokens' epoch: a counter in data_dir/EPOCH that
 * each start increments and fsyncs before the daemon listens, so that
 * tokens built as (epoch << EPOCH_COUNTER_BITS) | counter strictly
 * increase across restarts, whatever the fsync policy: every token of the
 * new run is above every token of every earlier run, even those whose log
 * records a crash lost.
 *
 * Tokens stay below 2^53 (exact in a JSON number, in JavaScript too): 21
 * bits of epoch (2M starts) and 32 of counter (4G grants per start).  A
 * run that uses its 4G tokens calls epoch_bump() again and starts the
 * counter over.
 *
 * EPOCH is text: "chand-epoch <n> <crc32c hex of the text before>\n",
 * replaced by tmp + fsync + rename + directory fsync.
 */
#ifndef CHAND_EPOCH_H
#define CHAND_EPOCH_H

#include <stddef.h>
#include <stdint.h>

#define EPOCH_COUNTER_BITS 32
#define EPOCH_MAX ((1ull << (53 - EPOCH_COUNTER_BITS)) - 1)
#define EPOCH_COUNTER_MAX ((1ull << EPOCH_COUNTER_BITS) - 1)

/* Reads dir/EPOCH (0 if absent), writes it + 1 durably and returns 0 with
 * *epoch set to the new value; or a negative code with a message in err
 * (a damaged file, a full disk, or -EOVERFLOW past EPOCH_MAX). */
int epoch_bump(const char *dir, uint64_t *epoch, char *err, size_t errlen);

/* Returns the token for counter (1..EPOCH_COUNTER_MAX) in epoch: below
 * 2^53, and increasing in (epoch, counter). */
static inline uint64_t epoch_token(uint64_t epoch, uint64_t counter)
{
    return epoch << EPOCH_COUNTER_BITS | (counter & EPOCH_COUNTER_MAX);
}

#endif /* CHAND_EPOCH_H */
