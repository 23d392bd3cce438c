/*
 * test_map.c - unit tests of rt_map (sync.Map semantics): every call's
 * result and reference counting against a reference model, concurrent
 * mixed operations from both Ps, Range (stop, re-entry), Clear, Len, a
 * foreign thread, growth to 100k keys, keys of every length up to 24.
 *
 * Values are reference-counted objects; the map's retain/release ops
 * count, so every test ends by checking that each value is back to the
 * one reference its creator holds (no leak, no double release).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/rttest.h"
#include "rt.h"

/* ---- reference-counted values ---- */

typedef struct val {
    _Atomic int refs;
    int id;
} val;

static void *val_retain(void *v)
{
    atomic_fetch_add(&((val *)v)->refs, 1);
    return v;
}

static void val_release(void *v)
{
    int old = atomic_fetch_sub(&((val *)v)->refs, 1);
    CHECK(old > 1); /* the creator's reference is never the map's */
}

static bool val_equal(const void *a, const void *b)
{
    return ((const val *)a)->id == ((const val *)b)->id;
}

static const rt_map_ops val_ops = {val_retain, val_release, val_equal};

#define NVALS 4096
static val vals[NVALS];

static void vals_init(void)
{
    for (int i = 0; i < NVALS; i++) {
        atomic_store(&vals[i].refs, 1);
        vals[i].id = i;
    }
}

static void vals_check_balanced(void)
{
    for (int i = 0; i < NVALS; i++)
        CHECK_EQ(atomic_load(&vals[i].refs), 1);
}

/* Drops a reference the map handed us. */
static void put(void *v)
{
    if (v)
        val_release(v);
}

/* ---- single goroutine: every call's contract ---- */

static void basic_main(void *arg)
{
    (void)arg;
    vals_init();
    rt_map *m = rt_map_new(&val_ops);
    void *v = NULL;
    CHECK(!rt_map_load(m, "a", 1, &v));
    CHECK_EQ(rt_map_store(m, "a", 1, &vals[1]), 0);
    CHECK_EQ(atomic_load(&vals[1].refs), 2);
    CHECK(rt_map_load(m, "a", 1, &v));
    CHECK(v == &vals[1]);
    CHECK_EQ(atomic_load(&vals[1].refs), 3); /* retained for us */
    put(v);
    CHECK_EQ(rt_map_len(m), 1);

    /* Store over an existing key releases the old value. */
    CHECK_EQ(rt_map_store(m, "a", 1, &vals[2]), 0);
    CHECK_EQ(atomic_load(&vals[1].refs), 1);

    /* LoadOrStore: present -> the existing value; absent -> stores. */
    CHECK(rt_map_load_or_store(m, "a", 1, &vals[3], &v));
    CHECK(v == &vals[2]);
    put(v);
    CHECK_EQ(atomic_load(&vals[3].refs), 1);
    CHECK(!rt_map_load_or_store(m, "b", 1, &vals[3], &v));
    CHECK(v == &vals[3]);
    put(v);
    CHECK_EQ(atomic_load(&vals[3].refs), 2);
    CHECK_EQ(rt_map_len(m), 2);

    /* Keys are byte strings: embedded NULs and the empty key work. */
    CHECK_EQ(rt_map_store(m, "a\0b", 3, &vals[4]), 0);
    CHECK_EQ(rt_map_store(m, "", 0, &vals[5]), 0);
    CHECK(rt_map_load(m, "a\0b", 3, &v) && v == &vals[4]);
    put(v);
    CHECK(rt_map_load(m, "", 0, &v) && v == &vals[5]);
    put(v);
    CHECK(!rt_map_load(m, "a\0c", 3, NULL));
    CHECK_EQ(rt_map_len(m), 4);

    /* Swap returns the previous value, owned by the caller. */
    CHECK(rt_map_swap(m, "a", 1, &vals[6], &v));
    CHECK(v == &vals[2]);
    put(v);
    CHECK(!rt_map_swap(m, "c", 1, &vals[7], &v));
    CHECK(v == NULL);

    /* CompareAndSwap / CompareAndDelete use ops.equal. */
    val same6 = {1, 6};
    CHECK(!rt_map_compare_and_swap(m, "a", 1, &vals[9], &vals[8]));
    CHECK(!rt_map_compare_and_swap(m, "zz", 2, &vals[6], &vals[8]));
    CHECK(rt_map_compare_and_swap(m, "a", 1, &same6, &vals[8]));
    CHECK_EQ(atomic_load(&vals[6].refs), 1);
    CHECK_EQ(atomic_load(&vals[8].refs), 2);
    CHECK(!rt_map_compare_and_delete(m, "a", 1, &vals[6]));
    CHECK(rt_map_compare_and_delete(m, "a", 1, &vals[8]));
    CHECK(!rt_map_load(m, "a", 1, NULL));

    /* LoadAndDelete hands over the map's reference. */
    CHECK(rt_map_load_and_delete(m, "c", 1, &v));
    CHECK(v == &vals[7]);
    put(v);
    CHECK(!rt_map_load_and_delete(m, "c", 1, &v));
    rt_map_delete(m, "b", 1);
    rt_map_delete(m, "b", 1); /* absent: no-op */
    CHECK_EQ(rt_map_len(m), 2);

    rt_map_clear(m);
    CHECK_EQ(rt_map_len(m), 0);
    CHECK(!rt_map_load(m, "", 0, NULL));
    CHECK_EQ(rt_map_store(m, "x", 1, &vals[10]), 0);
    rt_map_free(m); /* releases what is left */
    vals_check_balanced();

    /* No ops: plain pointers, pointer equality. */
    rt_map *p = rt_map_new(NULL);
    int a, b;
    CHECK_EQ(rt_map_store(p, "k", 1, &a), 0);
    CHECK(!rt_map_compare_and_swap(p, "k", 1, &b, &b));
    CHECK(rt_map_compare_and_swap(p, "k", 1, &a, &b));
    CHECK(rt_map_load(p, "k", 1, &v) && v == &b);
    rt_map_free(p);
}

RTTEST_CASE(test_map_basic, basic_main)

/* ---- Range ---- */

struct rangeacc {
    rt_map *m;
    int seen[64];
    int calls;
    int stop_after;
};

static bool range_cb(const void *key, size_t klen, void *v, void *arg)
{
    struct rangeacc *a = arg;
    int k;
    CHECK_EQ(klen, sizeof(k));
    memcpy(&k, key, sizeof(k));
    CHECK(k >= 0 && k < 64);
    CHECK_EQ(((val *)v)->id, k + 100);
    a->seen[k]++;
    a->calls++;
    /* Calling back into the map from f is allowed, as in Go. */
    if (k % 2 == 0)
        rt_map_delete(a->m, &k, sizeof(k));
    return a->stop_after == 0 || a->calls < a->stop_after;
}

static void range_main(void *arg)
{
    (void)arg;
    vals_init();
    rt_map *m = rt_map_new(&val_ops);
    for (int k = 0; k < 64; k++)
        CHECK_EQ(rt_map_store(m, &k, sizeof(k), &vals[k + 100]), 0);
    struct rangeacc a = {.m = m, .stop_after = 10};
    rt_map_range(m, range_cb, &a);
    CHECK_EQ(a.calls, 10); /* false stops the iteration */
    struct rangeacc b = {.m = m};
    rt_map_range(m, range_cb, &b);
    for (int k = 0; k < 64; k++)
        CHECK(b.seen[k] <= 1);
    CHECK_EQ(rt_map_len(m), 32); /* every even key deleted by one pass */
    rt_map_free(m);
    vals_check_balanced();
}

RTTEST_CASE(test_map_range, range_main)

/* ---- concurrent mixed operations against a reference ---- */

#define CW 4        /* workers */
#define CKEYS 256   /* private keys per worker */
#define CSHARED 100 /* read-only keys everybody loads */
#define COPS 40000

struct conc {
    rt_map *m;
    rt_wg *wg;
    int ref[CW][CKEYS]; /* value id per private key, -1 absent */
    int next_w;
};

static void conc_key(int w, int k, int out[2])
{
    out[0] = w;
    out[1] = k;
}

static int conc_val(int w, int k, int gen)
{
    return 200 + (w * CKEYS + k) * 3 + gen % 3;
}

static void conc_worker(void *arg)
{
    struct conc *c = arg;
    int w = __atomic_fetch_add(&c->next_w, 1, __ATOMIC_SEQ_CST);
    int *ref = c->ref[w];
    uint32_t rnd = 12345u + (uint32_t)w * 7919u;
    for (int i = 0; i < COPS; i++) {
        rnd = rnd * 1103515245u + 12345u;
        int k = (rnd >> 8) % CKEYS;
        int op = (rnd >> 20) % 10;
        int key[2];
        conc_key(w, k, key);
        void *v = NULL;
        int nv = conc_val(w, k, i);
        switch (op) {
        case 0:
        case 1:
        case 2: { /* Load of a shared key */
            int sk[2] = {-1, (int)((rnd >> 3) % CSHARED)};
            CHECK(rt_map_load(c->m, sk, sizeof(sk), &v));
            if (v) {
                CHECK_EQ(((val *)v)->id, 100 + sk[1]);
                put(v);
            }
            break;
        }
        case 3: { /* Load */
            bool ok = rt_map_load(c->m, key, sizeof(key), &v);
            CHECK_EQ(ok, ref[k] >= 0);
            if (ok) {
                CHECK_EQ(((val *)v)->id, ref[k]);
                put(v);
            }
            break;
        }
        case 4: /* Store */
            CHECK_EQ(rt_map_store(c->m, key, sizeof(key), &vals[nv]), 0);
            ref[k] = nv;
            break;
        case 5: { /* LoadOrStore */
            bool loaded =
                rt_map_load_or_store(c->m, key, sizeof(key), &vals[nv], &v);
            CHECK_EQ(loaded, ref[k] >= 0);
            if (!loaded)
                ref[k] = nv;
            CHECK_EQ(((val *)v)->id, ref[k]);
            put(v);
            break;
        }
        case 6: { /* LoadAndDelete */
            bool ok = rt_map_load_and_delete(c->m, key, sizeof(key), &v);
            CHECK_EQ(ok, ref[k] >= 0);
            if (ok) {
                CHECK_EQ(((val *)v)->id, ref[k]);
                put(v);
            }
            ref[k] = -1;
            break;
        }
        case 7: { /* Swap */
            bool ok = rt_map_swap(c->m, key, sizeof(key), &vals[nv], &v);
            CHECK_EQ(ok, ref[k] >= 0);
            if (ok) {
                CHECK_EQ(((val *)v)->id, ref[k]);
                put(v);
            }
            ref[k] = nv;
            break;
        }
        case 8: { /* CompareAndSwap, right or wrong old value */
            int oldid = (rnd & 1) ? ref[k] : conc_val(w, k, i + 1);
            val probe = {1, oldid};
            bool ok = rt_map_compare_and_swap(c->m, key, sizeof(key), &probe,
                                              &vals[nv]);
            bool want = ref[k] >= 0 && oldid == ref[k];
            CHECK_EQ(ok, want);
            if (ok)
                ref[k] = nv;
            break;
        }
        default: { /* CompareAndDelete or Delete */
            if (rnd & 1) {
                val probe = {1, ref[k]};
                bool ok =
                    rt_map_compare_and_delete(c->m, key, sizeof(key), &probe);
                CHECK_EQ(ok, ref[k] >= 0);
            } else {
                rt_map_delete(c->m, key, sizeof(key));
            }
            ref[k] = -1;
            break;
        }
        }
        if (i % 512 == 0)
            rt_gosched();
    }
    rt_wg_done(c->wg);
}

struct tally {
    struct conc *c;
    long n;
};

static bool tally_cb(const void *key, size_t klen, void *v, void *arg)
{
    struct tally *t = arg;
    int k[2];
    CHECK_EQ(klen, sizeof(k));
    memcpy(k, key, sizeof(k));
    if (k[0] < 0)
        CHECK_EQ(((val *)v)->id, 100 + k[1]);
    else
        CHECK_EQ(((val *)v)->id, t->c->ref[k[0]][k[1]]);
    t->n++;
    return true;
}

static void conc_main(void *arg)
{
    (void)arg;
    vals_init();
    struct conc *c = calloc(1, sizeof(*c));
    c->m = rt_map_new(&val_ops);
    c->wg = rt_wg_new();
    memset(c->ref, -1, sizeof(c->ref));
    for (int i = 0; i < CSHARED; i++) {
        int sk[2] = {-1, i};
        CHECK_EQ(rt_map_store(c->m, sk, sizeof(sk), &vals[100 + i]), 0);
    }
    RTTEST_SPAWN(c->wg, CW, conc_worker, c);
    CHECK_EQ(rt_wg_wait(c->wg, RT_FOREVER), 0);

    long want = CSHARED;
    for (int w = 0; w < CW; w++)
        for (int k = 0; k < CKEYS; k++)
            want += c->ref[w][k] >= 0;
    CHECK_EQ(rt_map_len(c->m), want);
    struct tally t = {c, 0};
    rt_map_range(c->m, tally_cb, &t);
    CHECK_EQ(t.n, want);
    rt_map_free(c->m);
    vals_check_balanced();
    rt_wg_free(c->wg);
    free(c);
}

RTTEST_CASE(test_map_concurrent_reference, conc_main)

/* ---- keys of every length ---- */

#define KMAXLEN 24

/* Writes a key of length len: all zero bytes when x == 0, else a fixed
 * pattern with byte pos xor x (pos < 0: the pattern itself). */
static void klen_key(unsigned char *k, int len, int pos, int x)
{
    for (int i = 0; i < len; i++)
        k[i] = x ? (unsigned char)(i * 37 + len) : 0;
    if (pos >= 0)
        k[pos] ^= (unsigned char)x;
}

/* Short keys are compared through a word standing for up to 8 bytes and
 * longer ones through that word plus the rest: keys that differ in any one
 * byte, or only in length (zero bytes), must still be distinct. */
static void klen_main(void *arg)
{
    (void)arg;
    vals_init();
    rt_map *m = rt_map_new(&val_ops);
    unsigned char k[KMAXLEN];
    int id = 0;
    for (int len = 0; len <= KMAXLEN; len++) {
        klen_key(k, len, -1, 0);
        CHECK_EQ(rt_map_store(m, k, (size_t)len, &vals[id++]), 0);
        for (int pos = len ? -1 : 0; pos < len; pos++) {
            klen_key(k, len, pos, 0x5a);
            CHECK_EQ(rt_map_store(m, k, (size_t)len, &vals[id++]), 0);
        }
    }
    CHECK_EQ(rt_map_len(m), (size_t)id);
    id = 0;
    for (int len = 0; len <= KMAXLEN; len++) {
        void *v = NULL;
        klen_key(k, len, -1, 0);
        CHECK(rt_map_load(m, k, (size_t)len, &v));
        CHECK(v == &vals[id++]);
        put(v);
        for (int pos = len ? -1 : 0; pos < len; pos++) {
            klen_key(k, len, pos, 0x5a);
            v = NULL;
            CHECK(rt_map_load(m, k, (size_t)len, &v));
            CHECK(v == &vals[id++]);
            put(v);
            /* Another byte value at pos was never stored. */
            klen_key(k, len, pos, 0xa5);
            CHECK(pos < 0 || !rt_map_load(m, k, (size_t)len, &v));
        }
    }
    rt_map_free(m);
    vals_check_balanced();
}

RTTEST_CASE(test_map_key_lengths, klen_main)

/* ---- growth and a foreign thread ---- */

static void *foreign_loader(void *arg)
{
    rt_map *m = arg;
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 100000; i += 7) {
            void *v = NULL;
            if (rt_map_load(m, &i, sizeof(i), &v)) {
                CHECK_EQ(((val *)v)->id, i % NVALS);
                put(v);
            }
        }
    }
    return NULL;
}

static void growth_main(void *arg)
{
    (void)arg;
    vals_init();
    rt_map *m = rt_map_new(&val_ops);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, foreign_loader, m), 0);
    for (int i = 0; i < 100000; i++)
        CHECK_EQ(rt_map_store(m, &i, sizeof(i), &vals[i % NVALS]), 0);
    pthread_join(th, NULL);
    CHECK_EQ(rt_map_len(m), 100000);
    for (int i = 0; i < 100000; i++) {
        void *v = NULL;
        CHECK(rt_map_load(m, &i, sizeof(i), &v));
        if (v) {
            CHECK_EQ(((val *)v)->id, i % NVALS);
            put(v);
        }
    }
    for (int i = 0; i < 100000; i += 2)
        rt_map_delete(m, &i, sizeof(i));
    CHECK_EQ(rt_map_len(m), 50000);
    rt_map_clear(m);
    CHECK_EQ(rt_map_len(m), 0);
    rt_map_free(m);
    vals_check_balanced();
}

RTTEST_CASE(test_map_growth_foreign, growth_main)

/* ---- paged walks (rt_map_range_page) ---- */

#define PKEYS 1000 /* keys present for the whole walk */
#define PADD 200   /* keys added between two pages */
#define PMAX 60000 /* every key a walk may add */

struct pageacc {
    unsigned char *seen; /* PMAX counters */
    size_t calls;        /* entries in the current page */
};

static bool page_cb(const void *key, size_t klen, void *v, void *arg)
{
    struct pageacc *a = arg;
    int k;
    CHECK_EQ(klen, sizeof(k));
    memcpy(&k, key, sizeof(k));
    CHECK(k >= 0 && k < PMAX);
    CHECK_EQ(((val *)v)->id, k % NVALS);
    a->seen[k]++;
    a->calls++;
    return true;
}

/* Walks m in pages of limit, storing add keys from *next after each page
 * (the map's shards double under them).  Every key below PKEYS, present
 * for the whole walk, must be seen exactly once; added ones at most
 * once (the table never shrinks, so nothing is seen twice). */
static void page_walk(rt_map *m, size_t limit, int add, int *next)
{
    struct pageacc a = {calloc(PMAX, 1), 0};
    uint64_t cursor = 0;
    int pages = 0;
    CHECK(a.seen != NULL);
    do {
        a.calls = 0;
        cursor = rt_map_range_page(m, cursor, limit, page_cb, &a);
        pages++;
        CHECK(pages < 10 * PMAX); /* every page makes progress */
        for (int i = 0; i < add && *next < PMAX; i++, (*next)++)
            CHECK_EQ(rt_map_store(m, next, sizeof(*next), &vals[*next % NVALS]),
                     0);
    } while (cursor != 0);
    for (int k = 0; k < PMAX; k++) {
        if (k < PKEYS && a.seen[k] != 1)
            printf("# limit %zu: key %d seen %d times\n", limit, k, a.seen[k]);
        CHECK(k >= PKEYS || a.seen[k] == 1);
        CHECK(a.seen[k] <= 1);
    }
    free(a.seen);
}

static void range_page_main(void *arg)
{
    (void)arg;
    vals_init();
    rt_map *m = rt_map_new(&val_ops);
    int next = PKEYS;
    for (int k = 0; k < PKEYS; k++)
        CHECK_EQ(rt_map_store(m, &k, sizeof(k), &vals[k % NVALS]), 0);
    /* Every limit: one of them ends a page with room left at the end of
     * a shard whose successor's first bucket does not fit (a shard of
     * ~16 keys with a chain of 2 in bucket 0 is all but certain), which
     * used to skip that whole shard. */
    for (size_t limit = 1; limit <= PKEYS + 1; limit++)
        page_walk(m, limit, 0, &next);
    /* The map grows between pages: buckets split behind the cursor. */
    size_t limits[] = {1, 2, 3, 7, 16, 100, 999};
    for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        for (int k = PKEYS; k < next; k++)
            rt_map_delete(m, &k, sizeof(k));
        next = PKEYS;
        page_walk(m, limits[i], limits[i] < 16 ? 20 : PADD, &next);
    }
    /* A page of a map with nothing in it ends the walk; limit 0 takes
     * one bucket. */
    rt_map_clear(m);
    struct pageacc a = {calloc(PMAX, 1), 0};
    CHECK(a.seen != NULL);
    CHECK_EQ(rt_map_range_page(m, 0, 10, page_cb, &a), 0);
    CHECK_EQ(a.calls, 0);
    free(a.seen);
    rt_map_free(m);
    vals_check_balanced();
}

RTTEST_CASE(test_map_range_page, range_page_main)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map_basic),
        cmocka_unit_test(test_map_range),
        cmocka_unit_test(test_map_concurrent_reference),
        cmocka_unit_test(test_map_growth_foreign),
        cmocka_unit_test(test_map_key_lengths),
        cmocka_unit_test(test_map_range_page),
    };
    return cmocka_run_group_tests_name("map", tests, NULL, NULL);
}
