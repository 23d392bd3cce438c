/*
 * registry.c - the one namespace of named objects.
 *
 * A chained hash table under one mutex, held only for lookups, inserts and
 * removals (never across a runtime call that can block).  Objects are
 * reference counted: the table holds one reference, every request using an
 * object holds another, so a dropped object lives until its last waiter has
 * been answered.
 *
 * The registry returns codes and answers no request: dreq_obj() and
 * dreq_obj_make() in dreq.c turn a code into the answer.
 *
 * Names are chosen by clients, so the hash is keyed: SipHash-1-3 with a
 * key drawn from getrandom() once per process.  With an unkeyed hash a
 * client can pick names that all fall into one bucket and turn every
 * lookup into a walk of a long chain (99k names made one 3.4 ms).
 */
#include "daemon.h"
#include "persist.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define REG_BUCKETS (1u << 16)

static obj *reg_tab[REG_BUCKETS];
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint64_t reg_seq = 1;

static uint64_t reg_key[2];
static pthread_once_t reg_key_once = PTHREAD_ONCE_INIT;

static void reg_key_init(void)
{
    ssize_t n = getrandom(reg_key, sizeof reg_key, GRND_NONBLOCK);

    if (n != (ssize_t)sizeof reg_key) {
        /* Only before the kernel's pool is ready (early boot): a weaker
         * key, still unknown to clients. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        log_warn("getrandom: %s: registry hash keyed from the clock",
                 n < 0 ? strerror(errno) : "short read");
        reg_key[0] =
            (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
        reg_key[1] = (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&ts;
    }
}

#define REG_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define REG_SIPROUND                                                           \
    do {                                                                       \
        v0 += v1;                                                              \
        v1 = REG_ROTL(v1, 13);                                                 \
        v1 ^= v0;                                                              \
        v0 = REG_ROTL(v0, 32);                                                 \
        v2 += v3;                                                              \
        v3 = REG_ROTL(v3, 16);                                                 \
        v3 ^= v2;                                                              \
        v0 += v3;                                                              \
        v3 = REG_ROTL(v3, 21);                                                 \
        v3 ^= v0;                                                              \
        v2 += v1;                                                              \
        v1 = REG_ROTL(v1, 17);                                                 \
        v1 ^= v2;                                                              \
        v2 = REG_ROTL(v2, 32);                                                 \
    } while (0)

/* Returns SipHash-1-3 of the n bytes at p under key k (one compression
 * round per 8-byte word, three finalisation rounds: the variant Rust and
 * Python use for their hash tables). */
static uint64_t reg_siphash13(const uint64_t k[2], const unsigned char *p,
                              size_t n)
{
    uint64_t v0 = k[0] ^ 0x736f6d6570736575ULL;
    uint64_t v1 = k[1] ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k[0] ^ 0x6c7967656e657261ULL;
    uint64_t v3 = k[1] ^ 0x7465646279746573ULL;
    uint64_t m, b = (uint64_t)n << 56;
    const unsigned char *end = p + (n & ~(size_t)7);

    for (; p != end; p += 8) {
        memcpy(&m, p, 8);
        m = le64toh(m); /* the algorithm reads words little-endian */
        v3 ^= m;
        REG_SIPROUND;
        v0 ^= m;
    }
    switch (n & 7) {
    case 7:
        b |= (uint64_t)p[6] << 48; /* fall through */
    case 6:
        b |= (uint64_t)p[5] << 40; /* fall through */
    case 5:
        b |= (uint64_t)p[4] << 32; /* fall through */
    case 4:
        b |= (uint64_t)p[3] << 24; /* fall through */
    case 3:
        b |= (uint64_t)p[2] << 16; /* fall through */
    case 2:
        b |= (uint64_t)p[1] << 8; /* fall through */
    case 1:
        b |= (uint64_t)p[0]; /* fall through */
    case 0:
        break;
    }
    v3 ^= b;
    REG_SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    REG_SIPROUND;
    REG_SIPROUND;
    REG_SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static uint32_t reg_hash(const char *s)
{
    pthread_once(&reg_key_once, reg_key_init);
    return (uint32_t)reg_siphash13(reg_key, (const unsigned char *)s,
                                   strlen(s)) &
           (REG_BUCKETS - 1);
}

static obj *reg_find_locked(const char *name, uint32_t h)
{
    for (obj *o = reg_tab[h]; o; o = o->hnext)
        if (strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

obj *obj_retain(obj *o)
{
    atomic_fetch_add(&o->refs, 1);
    return o;
}

void obj_release(obj *o)
{
    if (!o || atomic_fetch_sub(&o->refs, 1) != 1)
        return;
    if (o->ops->fini)
        o->ops->fini(o);
    pthread_mutex_destroy(&o->wmu);
    free(o->name);
    free(o);
}

/* Makes and inserts a new object (reg_mu held).  Returns REG_OK with it
 * in *out holding two references (table + caller), or a REG_E* code. */
static int reg_insert_locked(const char *name, uint32_t h, const obj_ops *ops,
                             dreq *arg, obj **out)
{
    obj *o;

    if (atomic_load(&srv_stat.objects) >= srv_conf.max_objects)
        return REG_ELIMIT;
    o = calloc(1, ops->size);
    if (!o)
        return REG_ENOMEM;
    o->name = strdup(name);
    if (!o->name)
        goto out_free;
    o->ops = ops;
    pthread_mutex_init(&o->wmu, NULL);
    if (ops->init && ops->init(o, arg) != 0)
        goto out_mutex;
    o->refs = 2;
    o->hnext = reg_tab[h];
    reg_tab[h] = o;
    atomic_fetch_add(&srv_stat.objects, 1);
    *out = o;
    return REG_OK;

out_mutex:
    pthread_mutex_destroy(&o->wmu);
    free(o->name);
out_free:
    free(o);
    return REG_ENOMEM;
}

int reg_lookup(const char *name, const obj_ops *want, bool create, dreq *arg,
               reg_found *f)
{
    uint32_t h = reg_hash(name);
    obj *o;
    int rc = REG_OK;

    f->o = NULL;
    f->have = NULL;
    f->created = false;
    pthread_mutex_lock(&reg_mu);
    o = reg_find_locked(name, h);
    if (o) {
        if (want && o->ops != want) {
            f->have = o->ops;
            rc = REG_ETYPE;
        } else {
            f->o = obj_retain(o);
        }
    } else if (!create || !want) {
        rc = REG_ENOENT;
    } else {
        rc = reg_insert_locked(name, h, want, arg, &f->o);
        f->created = rc == REG_OK;
    }
    pthread_mutex_unlock(&reg_mu);
    return rc;
}

int reg_drop(const char *name)
{
    uint32_t h = reg_hash(name);
    obj **pp, *o = NULL;

    pthread_mutex_lock(&reg_mu);
    for (pp = &reg_tab[h]; *pp; pp = &(*pp)->hnext)
        if (strcmp((*pp)->name, name) == 0) {
            o = *pp;
            /* Asked under reg_mu, so that nobody finds it by name in
             * between; the family's lock orders it against its takers. */
            if (o->ops->busy && o->ops->busy(o)) {
                pthread_mutex_unlock(&reg_mu);
                return REG_EBUSY;
            }
            *pp = o->hnext;
            o->hnext = NULL;
            /* Logged under the registry's lock: before any make of a
             * new object of that name. */
            persist_drop(o);
            break;
        }
    pthread_mutex_unlock(&reg_mu);
    if (!o)
        return REG_ENOENT;
    atomic_store(&o->dropped, true);
    atomic_fetch_sub(&srv_stat.objects, 1);
    if (o->ops->drop)
        o->ops->drop(o);
    obj_release(o);
    return 0;
}

int reg_drop_forced(const char *name)
{
    reg_found f;
    int rc = reg_drop(name);

    if (rc != REG_EBUSY)
        return rc;
    if (reg_lookup(name, NULL, false, NULL, &f) != REG_OK)
        return REG_ENOENT; /* dropped meanwhile */
    if (f.o->ops->forget)
        f.o->ops->forget(f.o);
    obj_release(f.o);
    return reg_drop(name);
}

void obj_done(obj *o)
{
    bool out = false;

    /* Cheap tests first: most calls find the object in use or non-zero.
     * refs == 2 is the table's and the caller's: under reg_mu nobody can
     * take a new one (lookups retain under it), so nobody waits on it,
     * holds it or is about to use it. */
    if (o->ops->idle && !atomic_load(&o->dropped) &&
        atomic_load(&o->refs) == 2) {
        uint32_t h = reg_hash(o->name);
        pthread_mutex_lock(&reg_mu);
        if (!atomic_load(&o->dropped) && atomic_load(&o->refs) == 2 &&
            o->ops->idle(o)) {
            for (obj **pp = &reg_tab[h]; *pp; pp = &(*pp)->hnext)
                if (*pp == o) {
                    *pp = o->hnext;
                    o->hnext = NULL;
                    out = true;
                    break;
                }
        }
        pthread_mutex_unlock(&reg_mu);
    }
    if (out) {
        atomic_store(&o->dropped, true);
        atomic_fetch_sub(&srv_stat.objects, 1);
        obj_release(o); /* the table's reference */
    }
    obj_release(o);
}

void reg_foreach(const char *prefix, void (*fn)(obj *o, void *arg), void *arg)
{
    size_t n = 0, cap = 64, plen = prefix ? strlen(prefix) : 0;
    obj **v = malloc(cap * sizeof *v);

    if (!v)
        return;
    /* Collect under the lock, call without it: fn may take object locks. */
    pthread_mutex_lock(&reg_mu);
    for (uint32_t b = 0; b < REG_BUCKETS; b++)
        for (obj *o = reg_tab[b]; o; o = o->hnext) {
            if (plen && strncmp(o->name, prefix, plen) != 0)
                continue;
            if (n == cap) {
                obj **nv = realloc(v, 2 * cap * sizeof *v);
                if (!nv)
                    goto out_unlock;
                v = nv;
                cap *= 2;
            }
            v[n++] = obj_retain(o);
        }
out_unlock:
    pthread_mutex_unlock(&reg_mu);
    for (size_t i = 0; i < n; i++) {
        fn(v[i], arg);
        obj_release(v[i]);
    }
    free(v);
}

uint64_t reg_scan(const char *prefix, uint64_t cursor, size_t limit,
                  void (*fn)(obj *o, void *arg), void *arg)
{
    size_t n = 0, seen = 0, plen = prefix ? strlen(prefix) : 0;
    size_t cap = limit ? limit : 1;
    obj **v = malloc(cap * sizeof *v);
    uint32_t b = (uint32_t)cursor;

    if (!v || cursor >= REG_BUCKETS)
        goto out;
    /* Whole buckets, so that a cursor (a bucket index: the table never
     * resizes and its key is fixed) neither repeats nor misses an object
     * that stays for the whole walk.  A page stops before the bucket that
     * would take it past limit (only a first bucket longer than limit,
     * which the keyed hash makes all but impossible, passes it), and after
     * 16 * limit names examined (a prefix that matches little must not
     * walk 100k names at once). */
    pthread_mutex_lock(&reg_mu);
    for (; b < REG_BUCKETS; b++) {
        size_t chain = 0, match = 0;
        for (obj *o = reg_tab[b]; o; o = o->hnext, chain++)
            if (!plen || strncmp(o->name, prefix, plen) == 0)
                match++;
        if (n + match > limit && n > 0)
            break;
        if (n + match > cap) { /* one bucket past limit: still whole */
            obj **nv = realloc(v, (n + match) * sizeof *v);
            if (!nv)
                break;
            v = nv;
            cap = n + match;
        }
        for (obj *o = reg_tab[b]; o; o = o->hnext)
            if (!plen || strncmp(o->name, prefix, plen) == 0)
                v[n++] = obj_retain(o);
        seen += chain;
        if (seen >= 16 * limit) {
            b++;
            break;
        }
    }
    pthread_mutex_unlock(&reg_mu);
    for (size_t i = 0; i < n; i++) {
        fn(v[i], arg);
        obj_release(v[i]);
    }
out:
    free(v);
    return b < REG_BUCKETS ? b : 0;
}

void reg_name_floor(uint64_t floor)
{
    uint64_t cur = atomic_load(&reg_seq);

    while (cur < floor && !atomic_compare_exchange_weak(&reg_seq, &cur, floor))
        ;
}

void reg_unique_name(const char *prefix, char *buf, size_t len)
{
    snprintf(buf, len, "%s.%llu", prefix,
             (unsigned long long)atomic_fetch_add(&reg_seq, 1));
}
