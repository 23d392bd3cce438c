/*
 * testrand.c - xorshift64* (Vigna), seeded from the environment.
 */
#include "testrand.h"

#include <stdio.h>
#include <stdlib.h>

uint64_t testrand_next(uint64_t *state)
{
    uint64_t x = *state ? *state : 0x9E3779B97F4A7C15ULL;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 2685821657736338717ULL;
}

uint64_t testrand_below(uint64_t *state, uint64_t n)
{
    return n ? testrand_next(state) % n : 0;
}

uint64_t testrand_seed(const char *env, uint64_t dflt)
{
    const char *v = getenv(env);
    uint64_t seed = v && *v ? strtoull(v, NULL, 0) : dflt;

    if (!seed)
        seed = 1;
    fprintf(stderr, "seed %s=%llu\n", env, (unsigned long long)seed);
    return seed;
}
