/*
 * map.c - sync.Map with byte-string keys: rt_map_*.
 *
 * Go's sync.Map makes loads lock-free by publishing a read-only snapshot
 * that the garbage collector keeps alive.  C has no collector: a value
 * handed out by Load must be retained while something stops a concurrent
 * Delete from releasing it.  So this map is a hash table split into
 * shards, read under a "big reader" scheme and written under a per-shard
 * lock:
 *
 * - a reader increments the counter of its own slot (one cache line per
 *   P, so two Ps never write the same line), then checks that no writer
 *   is active on its shard, looks the key up, retains the value and
 *   decrements its counter: two uncontended atomics, no shared line
 *   written, so read-mostly loads scale across Ps;
 * - a writer takes the shard's lock, raises the shard's writing flag, and
 *   waits until every slot counter has been seen at zero (readers that
 *   entered before the flag have left; later ones see the flag, back out
 *   and read under the shard lock instead).  Then it mutates, lowers the
 *   flag and unlocks.  Values it drops are released after unlocking.
 *
 * The reader's increment and the writer's flag are sequentially
 * consistent (a Dekker handshake), which is what makes this safe.  The
 * cost falls on writers (a scan of MAP_SLOTS lines per write), the right
 * trade for sync.Map's read-mostly use.  Callbacks (retain, equal) run
 * inside these sections and must not call back into the same map.
 */
#include "rt_internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#define MAP_SHARDS 64 /* power of two */
#define MAP_SLOTS 8   /* reader counters; power of two */
#define MAP_MIN_BUCKETS 8

typedef struct map_entry {
    struct map_entry *next;
    uint64_t hash;
    uint64_t word; /* map_key.word */
    void *v;
    size_t klen;
    unsigned char key[];
} map_entry;

typedef struct map_shard {
    rt__lock lock;            /* writers, and readers that backed out */
    _Atomic uint32_t writing; /* a writer is (about to be) mutating */
    uint32_t nbuckets;
    uint32_t count;
    map_entry **buckets;
} __attribute__((aligned(64))) map_shard;

typedef struct map_slot {
    _Atomic uint64_t readers;
} __attribute__((aligned(64))) map_slot;

struct rt_map {
    map_slot slots[MAP_SLOTS];
    map_shard shards[MAP_SHARDS];
    rt_map_ops ops;
    uint64_t seed;
    _Atomic int64_t len;
};

/* ---- hashing ---- */

static inline uint64_t map_mix(uint64_t h)
{
    /* The finaliser of MurmurHash3: every input bit affects every output
     * bit. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* A key as the table sees it: its bytes, their seeded hash, and a word
 * that stands for up to 8 of them, so that comparing short keys (the
 * common case: ids, small integers) is two word compares, no memcmp. */
typedef struct map_key {
    const unsigned char *p;
    size_t len;
    uint64_t hash;
    uint64_t word;
} map_key;

/* Returns a word that, for a given length <= 8, differs for different
 * byte strings (the loads may overlap, as wyhash's do, but every byte is
 * covered), without a variable-length memcpy. */
static inline uint64_t map_word(const unsigned char *p, size_t len)
{
    uint32_t lo, hi;
    if (len >= 4) {
        memcpy(&lo, p, 4);
        memcpy(&hi, p + len - 4, 4);
        return (uint64_t)lo | (uint64_t)hi << 32;
    }
    if (len > 0)
        return (uint64_t)p[0] | (uint64_t)p[len / 2] << 8 |
               (uint64_t)p[len - 1] << 16;
    return 0; /* p may be NULL for the empty key */
}

/* map_key_of for keys longer than 8 bytes: the first 8 are the word,
 * and every byte is mixed into the hash.  Out of line: the short-key path
 * is inlined into every caller. */
static __attribute__((noinline)) void map_key_long(map_key *k)
{
    memcpy(&k->word, k->p, 8);
    const unsigned char *p = k->p;
    size_t n = k->len;
    uint64_t h = k->hash;
    while (n >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        h = map_mix(h ^ x) + 0x9e3779b97f4a7c15ull;
        p += 8;
        n -= 8;
    }
    k->hash = map_mix(h ^ map_word(p, n) ^ ((uint64_t)n << 56));
}

/* Hashes key with the map's seed.  The per-map random seed keeps remote
 * clients from choosing keys that all land in one bucket. */
static inline __attribute__((always_inline)) map_key
map_key_of(const rt_map *m, const void *key, size_t klen)
{
    map_key k = {key, klen, m->seed ^ (klen * 0x9e3779b97f4a7c15ull), 0};
    if (klen <= 8) {
        k.word = map_word(k.p, klen);
        k.hash = map_mix(k.hash ^ k.word);
    } else {
        map_key_long(&k);
    }
    return k;
}

/* ---- the shard table (callers hold the right to read or write) ---- */

static map_shard *map_shard_of(rt_map *m, const map_key *k)
{
    return &m->shards[k->hash >> (64 - 6)];
}

static inline __attribute__((always_inline)) map_entry **
map_find(map_shard *sh, const map_key *k)
{
    if (sh->nbuckets == 0)
        return NULL;
    map_entry **pp = &sh->buckets[k->hash & (sh->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->next) {
        map_entry *e = *pp;
        if (e->hash == k->hash && e->word == k->word && e->klen == k->len &&
            (k->len <= 8 || memcmp(e->key + 8, k->p + 8, k->len - 8) == 0))
            return pp;
    }
    return NULL;
}

/* Doubles the bucket array when the load factor passes 1.  Returns 0 or
 * RT_ENOMEM (the table stays valid, only slower). */
static int map_grow(map_shard *sh)
{
    uint32_t nb = sh->nbuckets ? sh->nbuckets * 2 : MAP_MIN_BUCKETS;
    map_entry **b = calloc(nb, sizeof(*b));
    if (b == NULL)
        return RT_ENOMEM;
    for (uint32_t i = 0; i < sh->nbuckets; i++) {
        map_entry *e = sh->buckets[i];
        while (e) {
            map_entry *next = e->next;
            map_entry **dst = &b[e->hash & (nb - 1)];
            e->next = *dst;
            *dst = e;
            e = next;
        }
    }
    free(sh->buckets);
    sh->buckets = b;
    sh->nbuckets = nb;
    return 0;
}

/* ---- the reader/writer handshake ---- */

static __thread int map_thread_slot = -1;
static _Atomic int map_next_slot;

static map_slot *map_my_slot(rt_map *m)
{
    int p = rt__current_p();
    if (p < 0) {
        /* Foreign threads get a slot each, round robin (any sharing is
         * safe: the counter is atomic). */
        if (map_thread_slot < 0)
            map_thread_slot = atomic_fetch_add(&map_next_slot, 1);
        p = map_thread_slot;
    }
    return &m->slots[p & (MAP_SLOTS - 1)];
}

/* Enters a lock-free read of sh: returns the slot to leave, or NULL when
 * a writer is active (then the caller reads under sh->lock). */
static map_slot *map_read_begin(rt_map *m, map_shard *sh)
{
    map_slot *s = map_my_slot(m);
    atomic_fetch_add(&s->readers, 1);
    if (atomic_load(&sh->writing) == 0)
        return s;
    atomic_fetch_sub_explicit(&s->readers, 1, memory_order_release);
    return NULL;
}

static void map_read_end(map_slot *s)
{
    atomic_fetch_sub_explicit(&s->readers, 1, memory_order_release);
}

static void map_write_begin(rt_map *m, map_shard *sh)
{
    rt__lock_acquire(&sh->lock);
    atomic_store(&sh->writing, 1);
    for (int i = 0; i < MAP_SLOTS; i++) {
        /* A reader stays inside for a hash lookup and a retain: wait for
         * it, yielding the CPU if its thread was preempted. */
        for (unsigned spins = 0; atomic_load(&m->slots[i].readers); spins++) {
            if (spins > 1000)
                sched_yield();
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
    }
}

static void map_write_end(map_shard *sh)
{
    atomic_store_explicit(&sh->writing, 0, memory_order_release);
    rt__lock_release(&sh->lock);
}

static void *map_retain(rt_map *m, void *v)
{
    return m->ops.retain ? m->ops.retain(v) : v;
}

static void map_release(rt_map *m, void *v)
{
    if (m->ops.release)
        m->ops.release(v);
}

static bool map_equal(rt_map *m, const void *a, const void *b)
{
    return m->ops.equal ? m->ops.equal(a, b) : a == b;
}

/* ---- public API ---- */

rt_map *rt_map_new(const rt_map_ops *ops)
{
    rt_map *m;
    if (posix_memalign((void **)&m, 64, sizeof(*m)) != 0)
        return NULL;
    memset(m, 0, sizeof(*m));
    if (ops)
        m->ops = *ops;
    m->seed = map_mix(((uint64_t)rt__fastrand() << 32) ^ rt__fastrand() ^
                      (uint64_t)(uintptr_t)m ^ (uint64_t)rt_now());
    return m;
}

/* Detaches every entry of sh into a list.  Caller is writing sh. */
static map_entry *map_shard_take_all(rt_map *m, map_shard *sh)
{
    map_entry *all = NULL;
    for (uint32_t i = 0; i < sh->nbuckets; i++) {
        map_entry *e = sh->buckets[i];
        while (e) {
            map_entry *next = e->next;
            e->next = all;
            all = e;
            e = next;
        }
        sh->buckets[i] = NULL;
    }
    atomic_fetch_sub(&m->len, sh->count);
    sh->count = 0;
    return all;
}

static void map_free_entries(rt_map *m, map_entry *e)
{
    while (e) {
        map_entry *next = e->next;
        map_release(m, e->v);
        free(e);
        e = next;
    }
}

void rt_map_free(rt_map *m)
{
    if (m == NULL)
        return;
    for (int i = 0; i < MAP_SHARDS; i++) {
        map_shard *sh = &m->shards[i];
        map_free_entries(m, map_shard_take_all(m, sh));
        free(sh->buckets);
    }
    free(m);
}

bool rt_map_load(rt_map *m, const void *key, size_t klen, void **v)
{
    map_key k = map_key_of(m, key, klen);
    map_shard *sh = map_shard_of(m, &k);
    map_slot *s = map_read_begin(m, sh);
    if (s == NULL)
        rt__lock_acquire(&sh->lock);
    map_entry **pp = map_find(sh, &k);
    if (pp && v)
        *v = map_retain(m, (*pp)->v);
    if (s)
        map_read_end(s);
    else
        rt__lock_release(&sh->lock);
    return pp != NULL;
}

/* Inserts a new entry holding v (already retained).  Caller is writing. */
static int map_insert(rt_map *m, map_shard *sh, const map_key *k, void *v)
{
    if (sh->count >= sh->nbuckets)
        (void)map_grow(sh); /* on failure chains just get longer */
    if (sh->nbuckets == 0)
        return RT_ENOMEM;
    map_entry *e = malloc(sizeof(*e) + k->len);
    if (e == NULL)
        return RT_ENOMEM;
    e->hash = k->hash;
    e->word = k->word;
    e->v = v;
    e->klen = k->len;
    if (k->len > 0)
        memcpy(e->key, k->p, k->len);
    map_entry **b = &sh->buckets[k->hash & (sh->nbuckets - 1)];
    e->next = *b;
    *b = e;
    sh->count++;
    atomic_fetch_add(&m->len, 1);
    return 0;
}

/* Unlinks and returns the entry at pp.  Caller is writing. */
static map_entry *map_unlink(rt_map *m, map_shard *sh, map_entry **pp)
{
    map_entry *e = *pp;
    *pp = e->next;
    sh->count--;
    atomic_fetch_sub(&m->len, 1);
    return e;
}

/* Stores v (retained here) under key; the previous value goes to *prev
 * (the caller's reference) or is released when prev is NULL. */
static int map_swap(rt_map *m, const void *key, size_t klen, void *v,
                    void **prev, bool *loaded)
{
    map_key k = map_key_of(m, key, klen);
    map_shard *sh = map_shard_of(m, &k);
    void *nv = map_retain(m, v);
    map_write_begin(m, sh);
    map_entry **pp = map_find(sh, &k);
    if (pp) {
        void *old = (*pp)->v;
        (*pp)->v = nv;
        map_write_end(sh);
        *loaded = true;
        if (prev)
            *prev = old;
        else
            map_release(m, old);
        return 0;
    }
    int r = map_insert(m, sh, &k, nv);
    map_write_end(sh);
    if (r != 0)
        map_release(m, nv);
    *loaded = false;
    if (prev)
        *prev = NULL;
    return r;
}

int rt_map_store(rt_map *m, const void *key, size_t klen, void *v)
{
    bool loaded;
    return map_swap(m, key, klen, v, NULL, &loaded);
}

bool rt_map_swap(rt_map *m, const void *key, size_t klen, void *v, void **prev)
{
    bool loaded;
    (void)map_swap(m, key, klen, v, prev, &loaded);
    return loaded;
}

bool rt_map_load_or_store(rt_map *m, const void *key, size_t klen, void *v,
                          void **actual)
{
    void *cur;
    if (rt_map_load(m, key, klen, actual ? actual : &cur)) {
        if (actual == NULL)
            map_release(m, cur);
        return true;
    }
    map_key k = map_key_of(m, key, klen);
    map_shard *sh = map_shard_of(m, &k);
    void *nv = map_retain(m, v);
    map_write_begin(m, sh);
    map_entry **pp = map_find(sh, &k);
    if (pp) {
        /* Stored meanwhile by someone else. */
        if (actual)
            *actual = map_retain(m, (*pp)->v);
        map_write_end(sh);
        map_release(m, nv);
        return true;
    }
    if (map_insert(m, sh, &k, nv) != 0) {
        map_write_end(sh);
        /* Out of memory: hand v back as Go would after storing it. */
        if (actual)
            *actual = nv;
        else
            map_release(m, nv);
        return false;
    }
    if (actual)
        *actual = map_retain(m, nv);
    map_write_end(sh);
    return false;
}

bool rt_map_load_and_delete(rt_map *m, const void *key, size_t klen, void **v)
{
    map_key k = map_key_of(m, key, klen);
    map_shard *sh = map_shard_of(m, &k);
    map_write_begin(m, sh);
    map_entry **pp = map_find(sh, &k);
    map_entry *e = pp ? map_unlink(m, sh, pp) : NULL;
    map_write_end(sh);
    if (e == NULL)
        return false;
    if (v)
        *v = e->v;
    else
        map_release(m, e->v);
    free(e);
    return true;
}

void rt_map_delete(rt_map *m, const void *key, size_t klen)
{
    (void)rt_map_load_and_delete(m, key, klen, NULL);
}

bool rt_map_compare_and_swap(rt_map *m, const void *key, size_t klen,
                             const void *old, void *new_v)
{
    map_key k = map_key_of(m, key, klen);
    map_shard *sh = map_shard_of(m, &k);
    void *nv = map_retain(m, new_v);
    map_write_begin(m, sh);
    map_entry **pp = map_find(sh, &k);
    void *drop = nv;
    bool swapped = false;
    if (pp && map_equal(m, (*pp)->v, old)) {
        drop = (*pp)->v;
        (*pp)->v = nv;
        swapped = true;
    }
    map_write_end(sh);
    map_release(m, drop);
    return swapped;
}

bool rt_map_compare_and_delete(rt_map *m, const void *key, size_t klen,
                               const void *old)
{
    map_key k = map_key_of(m, key, klen);
    map_shard *sh = map_shard_of(m, &k);
    map_write_begin(m, sh);
    map_entry **pp = map_find(sh, &k);
    map_entry *e = NULL;
    if (pp && map_equal(m, (*pp)->v, old))
        e = map_unlink(m, sh, pp);
    map_write_end(sh);
    if (e == NULL)
        return false;
    map_release(m, e->v);
    free(e);
    return true;
}

/* One entry of a Range snapshot: the value is retained for the call. */
typedef struct map_snap {
    void *v;
    size_t klen;
    unsigned char *key;
} map_snap;

void rt_map_range(rt_map *m,
                  bool (*f)(const void *key, size_t klen, void *v, void *arg),
                  void *arg)
{
    /* f may call back into the map (Go allows it), so it never runs under
     * a shard lock: each shard is copied out under its lock first.  As in
     * Go, the result need not be a consistent snapshot of the whole map. */
    bool go_on = true;
    for (int i = 0; i < MAP_SHARDS && go_on; i++) {
        map_shard *sh = &m->shards[i];
        rt__lock_acquire(&sh->lock);
        uint32_t n = sh->count;
        size_t kbytes = 0;
        for (uint32_t b = 0; b < sh->nbuckets; b++)
            for (map_entry *e = sh->buckets[b]; e; e = e->next)
                kbytes += e->klen;
        map_snap *snap = n ? malloc(n * sizeof(*snap) + kbytes) : NULL;
        if (n && snap == NULL) {
            rt__lock_release(&sh->lock);
            continue; /* out of memory: skip the shard */
        }
        /* An empty shard has no snapshot: NULL + 0 is undefined. */
        unsigned char *kp = snap ? (unsigned char *)(snap + n) : NULL;
        uint32_t k = 0;
        for (uint32_t b = 0; b < sh->nbuckets; b++) {
            for (map_entry *e = sh->buckets[b]; e; e = e->next) {
                snap[k].v = map_retain(m, e->v);
                snap[k].klen = e->klen;
                snap[k].key = kp;
                memcpy(kp, e->key, e->klen);
                kp += e->klen;
                k++;
            }
        }
        rt__lock_release(&sh->lock);
        for (uint32_t j = 0; j < n; j++) {
            if (go_on)
                go_on = f(snap[j].key, snap[j].klen, snap[j].v, arg);
            map_release(m, snap[j].v);
        }
        free(snap);
    }
}

/* Reverses the bits of a 32-bit word (the scan cursor's order). */
static uint32_t map_rev32(uint32_t v)
{
    v = ((v >> 1) & 0x55555555u) | ((v & 0x55555555u) << 1);
    v = ((v >> 2) & 0x33333333u) | ((v & 0x33333333u) << 2);
    v = ((v >> 4) & 0x0f0f0f0fu) | ((v & 0x0f0f0f0fu) << 4);
    v = ((v >> 8) & 0x00ff00ffu) | ((v & 0x00ff00ffu) << 8);
    return (v >> 16) | (v << 16);
}

/* Copies the chain entries of bucket b into snap[*n..] (grown as
 * needed): values retained, keys copied (new).  Returns 0, or RT_ENOMEM
 * with nothing taken from the bucket.  Caller holds the shard's lock. */
static int map_snap_bucket(rt_map *m, map_entry *b, size_t chain,
                           map_snap **snap, size_t *cap, size_t *n)
{
    size_t j = *n;
    if (*n + chain > *cap) {
        size_t nc = (*n + chain) * 2;
        map_snap *ns = realloc(*snap, nc * sizeof(*ns));
        if (ns == NULL)
            return RT_ENOMEM;
        *snap = ns;
        *cap = nc;
    }
    for (map_entry *e = b; e; e = e->next, j++) {
        unsigned char *k = malloc(e->klen ? e->klen : 1);
        if (k == NULL)
            goto undo;
        memcpy(k, e->key, e->klen);
        (*snap)[j].v = map_retain(m, e->v);
        (*snap)[j].klen = e->klen;
        (*snap)[j].key = k;
    }
    *n = j;
    return 0;
undo:
    /* Dropping a key silently would break the walk's guarantee. */
    while (j-- > *n) {
        map_release(m, (*snap)[j].v);
        free((*snap)[j].key);
    }
    return RT_ENOMEM;
}

uint64_t rt_map_range_page(rt_map *m, uint64_t cursor, size_t limit,
                           bool (*f)(const void *key, size_t klen, void *v,
                                     void *arg),
                           void *arg)
{
    /* A position is (shard, v), v walking the shard's buckets in
     * reversed-bit order as Redis's SCAN does: a bucket array that doubles
     * between pages splits bucket b into b and b + n, both still ahead of
     * the cursor, and the array never shrinks, so a key present for the
     * whole walk is seen exactly once.  v == 0 means both "the start of
     * the shard" and "the shard is done" (the reversed increment wraps),
     * so the loop keeps a separate done flag: a page that filled up just
     * before a shard's bucket 0 once took it for done and skipped the
     * whole shard.  The cursor is ((shard + 1) << 32 | v), so that the
     * start of shard 0 is not 0, the end of the walk. */
    uint32_t shard = 0, v = 0;
    size_t got = 0, cap = 0, n;
    map_snap *snap = NULL;
    bool go_on = true, done = false;

    if (cursor != 0) {
        if ((cursor >> 32) == 0 || (cursor >> 32) > MAP_SHARDS)
            return 0; /* not a cursor this map gave: nothing left */
        shard = (uint32_t)(cursor >> 32) - 1;
        v = (uint32_t)cursor;
    }
    if (limit == 0)
        limit = 1;
    while (shard < MAP_SHARDS && got < limit && go_on) {
        map_shard *sh = &m->shards[shard];
        n = 0;
        done = false;
        rt__lock_acquire(&sh->lock);
        if (sh->nbuckets == 0)
            done = true;
        while (!done) {
            uint32_t mask = sh->nbuckets - 1;
            map_entry *b = sh->buckets[v & mask];
            size_t chain = 0;
            for (map_entry *e = b; e; e = e->next)
                chain++;
            if (got + n > 0 && got + n + chain > limit)
                break; /* the page is full: resume at this bucket */
            if (map_snap_bucket(m, b, chain, &snap, &cap, &n) != 0)
                break; /* out of memory: a shorter page, same bucket next */
            v |= ~mask;
            v = map_rev32(v);
            v++;
            v = map_rev32(v);
            done = v == 0;
        }
        rt__lock_release(&sh->lock);
        for (size_t j = 0; j < n; j++) {
            if (go_on)
                go_on = f(snap[j].key, snap[j].klen, snap[j].v, arg);
            map_release(m, snap[j].v);
            free(snap[j].key);
        }
        got += n;
        if (!done)
            break; /* the page is full (or memory ran short) */
        shard++;
        v = 0;
    }
    free(snap);
    if (!go_on || shard >= MAP_SHARDS)
        return 0; /* f asked to stop, or the walk is complete */
    return (uint64_t)(shard + 1) << 32 | v;
}

size_t rt_map_len(rt_map *m)
{
    int64_t n = atomic_load(&m->len);
    return n > 0 ? (size_t)n : 0;
}

void rt_map_clear(rt_map *m)
{
    for (int i = 0; i < MAP_SHARDS; i++) {
        map_shard *sh = &m->shards[i];
        map_write_begin(m, sh);
        map_entry *all = map_shard_take_all(m, sh);
        map_write_end(sh);
        map_free_entries(m, all);
    }
}
