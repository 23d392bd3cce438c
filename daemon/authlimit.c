/*
 * authlimit.c - per-peer failure scores in a fixed table, and the delays
 * they earn (the model is in authlimit.h).
 */
#include "authlimit.h"

#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define AL_WAYS 8

typedef struct al_entry {
    authlimit_key key;
    bool used;
    double score;    /* failures, decayed to `at` */
    int64_t at;      /* ms of the last update */
    int64_t next_ok; /* ms before which no attempt is verified */
} al_entry;

struct authlimit {
    pthread_mutex_t mu;
    authlimit_conf c;
    size_t nbuckets; /* power of two */
    uint64_t seed[2];
    al_entry *e; /* nbuckets * AL_WAYS */
};

authlimit *authlimit_new(const authlimit_conf *conf)
{
    authlimit *al = calloc(1, sizeof *al);
    size_t slots;

    if (!al)
        return NULL;
    if (conf)
        al->c = *conf;
    if (!al->c.slots)
        al->c.slots = 4096;
    if (!al->c.base_ms)
        al->c.base_ms = 100;
    if (!al->c.max_ms)
        al->c.max_ms = 5000;
    if (!al->c.half_life_ms)
        al->c.half_life_ms = 60000;
    if (!al->c.free_fails)
        al->c.free_fails = 2;
    for (slots = AL_WAYS; slots < al->c.slots && slots < ((size_t)1 << 24);)
        slots *= 2;
    al->nbuckets = slots / AL_WAYS;
    /* A keyed hash: nobody outside can aim addresses at one bucket. */
    if (getrandom(al->seed, sizeof al->seed, GRND_NONBLOCK) !=
        (ssize_t)sizeof al->seed) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        al->seed[0] = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull;
        al->seed[1] = (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)al;
    }
    al->e = calloc(slots, sizeof *al->e);
    if (!al->e || pthread_mutex_init(&al->mu, NULL) != 0) {
        free(al->e);
        free(al);
        return NULL;
    }
    return al;
}

void authlimit_free(authlimit *al)
{
    if (!al)
        return;
    pthread_mutex_destroy(&al->mu);
    free(al->e);
    free(al);
}

int authlimit_key_sockaddr(const struct sockaddr *sa, socklen_t len,
                           authlimit_key *k)
{
    static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0,    0,
                                               0, 0, 0, 0, 0xff, 0xff};
    memset(k, 0, sizeof *k);
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const void *)sa;
        k->b[0] = 4;
        memcpy(k->b + 1, &in->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        const unsigned char *a = in6->sin6_addr.s6_addr;
        if (memcmp(a, v4mapped, 12) == 0) {
            k->b[0] = 4;
            memcpy(k->b + 1, a + 12, 4);
        } else {
            k->b[0] = 6;
            memcpy(k->b + 1, a, 8); /* the /64 */
        }
        return 0;
    }
    return -EAFNOSUPPORT;
}

void authlimit_key_uid(uid_t uid, authlimit_key *k)
{
    uint32_t u = (uint32_t)uid;
    memset(k, 0, sizeof *k);
    k->b[0] = 'u';
    memcpy(k->b + 1, &u, sizeof u);
}

static uint64_t al_mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static size_t al_bucket(const authlimit *al, const authlimit_key *k)
{
    uint64_t w[3] = {0}, h = al->seed[0];
    memcpy(w, k->b, sizeof k->b);
    for (int i = 0; i < 3; i++)
        h = al_mix(h ^ w[i] ^ al->seed[1]) + (uint64_t)i;
    return (size_t)(h & (al->nbuckets - 1));
}

/* Decays e's score to now. */
static void al_decay(const authlimit *al, al_entry *e, int64_t now)
{
    if (now > e->at) {
        e->score *= exp2(-(double)(now - e->at) / al->c.half_life_ms);
        e->at = now;
    }
}

/* Returns k's entry, or NULL when k has none and create is false; a new
 * entry takes an empty way, else the way with the lowest score. */
static al_entry *al_find(authlimit *al, const authlimit_key *k, int64_t now,
                         bool create)
{
    al_entry *b = &al->e[al_bucket(al, k) * AL_WAYS], *victim = NULL;

    for (int i = 0; i < AL_WAYS; i++)
        if (b[i].used && memcmp(&b[i].key, k, sizeof *k) == 0) {
            al_decay(al, &b[i], now);
            return &b[i];
        }
    if (!create)
        return NULL;
    for (int i = 0; i < AL_WAYS; i++) {
        if (!b[i].used) {
            victim = &b[i];
            break;
        }
        al_decay(al, &b[i], now);
        if (!victim || b[i].score < victim->score)
            victim = &b[i];
    }
    memset(victim, 0, sizeof *victim);
    victim->used = true;
    victim->key = *k;
    victim->at = now;
    return victim;
}

static unsigned al_count(const al_entry *e)
{
    return e ? (unsigned)lround(e->score) : 0;
}

/* The delay n recent failures earn. */
static unsigned al_delay(const authlimit *al, unsigned n)
{
    unsigned shift;
    uint64_t d;

    if (n <= al->c.free_fails)
        return 0;
    shift = n - al->c.free_fails - 1;
    if (shift >= 32)
        return al->c.max_ms;
    d = (uint64_t)al->c.base_ms << shift;
    return d > al->c.max_ms ? al->c.max_ms : (unsigned)d;
}

unsigned authlimit_begin(authlimit *al, const authlimit_key *k, int64_t now_ms)
{
    al_entry *e;
    unsigned d, wait = 0;
    int64_t start;

    pthread_mutex_lock(&al->mu);
    e = al_find(al, k, now_ms, false);
    d = al_delay(al, al_count(e));
    if (e && d) {
        start = e->next_ok > now_ms ? e->next_ok : now_ms;
        e->next_ok = start + d;
        wait = (unsigned)(e->next_ok - now_ms);
    }
    pthread_mutex_unlock(&al->mu);
    return wait;
}

unsigned authlimit_fail(authlimit *al, const authlimit_key *k, int64_t now_ms)
{
    al_entry *e;
    unsigned d;

    pthread_mutex_lock(&al->mu);
    e = al_find(al, k, now_ms, true);
    e->score += 1.0;
    d = al_delay(al, al_count(e));
    pthread_mutex_unlock(&al->mu);
    return d;
}

void authlimit_success(authlimit *al, const authlimit_key *k)
{
    al_entry *e;
    pthread_mutex_lock(&al->mu);
    e = al_find(al, k, INT64_MIN, false);
    if (e)
        memset(e, 0, sizeof *e);
    pthread_mutex_unlock(&al->mu);
}

unsigned authlimit_failures(authlimit *al, const authlimit_key *k,
                            int64_t now_ms)
{
    unsigned n;
    pthread_mutex_lock(&al->mu);
    n = al_count(al_find(al, k, now_ms, false));
    pthread_mutex_unlock(&al->mu);
    return n;
}
