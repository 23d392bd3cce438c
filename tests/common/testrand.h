/*
 * testrand.h - the tests' one pseudo-random generator (xorshift64*): fast,
 * reproducible from a seed, and with its state in the caller's hands, so
 * that forked children and goroutines can each keep their own.  Not for
 * anything but tests.  No cmocka: benches and the soak driver link it.
 */
#ifndef CHAND_TESTRAND_H
#define CHAND_TESTRAND_H

#include <stdint.h>

/* Returns the next number of the sequence in *state (advanced; a zero
 * state is replaced by a fixed non-zero one). */
uint64_t testrand_next(uint64_t *state);
/* Returns a number in [0, n), 0 when n is 0. */
uint64_t testrand_below(uint64_t *state, uint64_t n);
/* Returns the seed to use: $env (any base strtoull takes) when set, else
 * dflt; never 0.  Prints "seed ENV=value" to stderr, so that a failed run
 * can be repeated. */
uint64_t testrand_seed(const char *env, uint64_t dflt);

#endif /* CHAND_TESTRAND_H */
