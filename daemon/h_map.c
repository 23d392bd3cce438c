/*
 * h_map.c - sync.Map and sync/atomic integers over the wire.
 *
 * A map object is the runtime's rt_map holding json_t values (the map
 * retains with json_incref, releases with json_decref, and compares with
 * json_equal, so compare-and-swap uses JSON equality).  Keys are the JSON
 * string's bytes.  An atomic object is one int64 updated with C11 atomics;
 * arithmetic wraps (done in uint64_t, where overflow is defined).
 */
#include "daemon.h"
#include "persist.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* sync.Map                                                           */
/* ------------------------------------------------------------------ */

typedef struct hmap {
    obj o;
    rt_map *m;
} hmap;

/* Every reference the map makes is charged to max_memory's count and
 * released with it; a reference it hands to a handler (load, swap's
 * previous value...) is released by the handler as it takes it
 * (hmap_took). */
static void *hmap_retain(void *v)
{
    mem_add(mem_json_cost(v));
    return json_incref(v);
}

static void hmap_release(void *v)
{
    mem_sub(mem_json_cost(v));
    json_decref(v);
}

/* A reference the map handed over leaves its count (v may be NULL). */
static void *hmap_took(void *v)
{
    if (v)
        mem_sub(mem_json_cost(v));
    return v;
}

static bool hmap_equal(const void *a, const void *b)
{
    return json_equal((json_t *)a, (json_t *)b);
}

static const rt_map_ops hmap_vops = {hmap_retain, hmap_release, hmap_equal};

static int hmap_init(obj *o, dreq *r)
{
    (void)r;
    ((hmap *)o)->m = rt_map_new(&hmap_vops);
    return ((hmap *)o)->m ? 0 : -1;
}

static void hmap_fini(obj *o)
{
    rt_map_free(((hmap *)o)->m);
}

static void hmap_info(obj *o, json_t *into)
{
    json_object_set_new(into, "len",
                        json_integer((json_int_t)rt_map_len(((hmap *)o)->m)));
}

typedef struct hmap_snapw {
    obj *o;
    void *s;
    uint64_t lsn;
    int rc;
} hmap_snapw;

static bool hmap_snap_one(const void *key, size_t klen, void *v, void *arg)
{
    hmap_snapw *w = arg;
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    eff_rec r = {.type = EFF_MAP_STORE};

    if (!text) {
        w->rc = -1;
        return false;
    }
    r.u.map.name = eff_s(w->o->name);
    r.u.map.key = (eff_str){key, klen};
    r.u.map.value = eff_s(text);
    w->rc = persist_snap_emit(w->s, &r, w->lsn);
    free(text);
    return w->rc == 0;
}

/* obj_ops.snap: every entry, under the map's persist lock. */
static int hmap_snap(obj *o, void *s)
{
    hmap_snapw w = {o, s, 0, 0};

    persist_lock(o);
    w.lsn = atomic_load(&o->lsn);
    rt_map_range(((hmap *)o)->m, hmap_snap_one, &w);
    persist_unlock(o);
    return w.rc;
}

static bool hmap_idle(obj *o)
{
    return rt_map_len(((hmap *)o)->m) == 0;
}

static const obj_ops hmap_ops = {
    .type = OBJ_MAP,
    .name = "map",
    .size = sizeof(hmap),
    .init = hmap_init,
    .fini = hmap_fini,
    .info = hmap_info,
    .snap = hmap_snap,
    .idle = hmap_idle,
};

/* Looks up the map and the key of r; NULL after failing r. */
static rt_map *hmap_get(dreq *r, obj **o, const char **key, size_t *klen)
{
    json_t *k = dreq_param(r, "key");

    *o = dreq_obj(r, dreq_str(r, "name"), &hmap_ops, true);
    if (!*o)
        return NULL;
    if (key) {
        *key = json_string_value(k);
        *klen = json_string_length(k);
    }
    return ((hmap *)*o)->m;
}

/* A value or JSON null when absent (new reference). */
static json_t *hmap_val(void *v)
{
    return v ? (json_t *)v : json_null();
}

/* One sync.Map method on r's map m (and key k, kl when it has one):
 * answers r. */
typedef void (*hmap_fn)(dreq *r, rt_map *m, const char *k, size_t kl);

/* The map hmap_run runs a method on, for the methods' effects. */
static __thread obj *hmap_cur;

static void hmap_load(dreq *r, rt_map *m, const char *k, size_t kl);
static void hmap_range(dreq *r, rt_map *m, const char *k, size_t kl);
static void hmap_len(dreq *r, rt_map *m, const char *k, size_t kl);

/* The parameter reading every map method shares: looks up r's map (and
 * key when keyed) and runs fn with the map held for the call. */
static void hmap_run(dreq *r, hmap_fn fn, bool keyed)
{
    obj *o;
    const char *k = NULL;
    size_t kl = 0;
    rt_map *m = hmap_get(r, &o, keyed ? &k : NULL, &kl);
    bool reads = fn == hmap_load || fn == hmap_range || fn == hmap_len;

    if (!m)
        return; /* dreq_obj answered and freed r */
    if (!reads && !persist_write_ok(r)) {
        obj_release(o);
        return;
    }
    /* Durable: "change, log" in one critical section per map, so the
     * log's order is memory's. */
    hmap_cur = o;
    if (!reads)
        persist_lock(o);
    fn(r, m, k, kl);
    if (!reads)
        persist_unlock(o);
    hmap_cur = NULL;
    obj_done(o);
}

/* Answers {key: v (stolen; NULL = null), "loaded": loaded}. */
static void hmap_ok_loaded(dreq *r, const char *key, void *v, bool loaded)
{
    dreq_ok(r, json_pack("{s:o, s:b}", key, hmap_val(v), "loaded", loaded));
}

static void hmap_store(dreq *r, rt_map *m, const char *k, size_t kl)
{
    if (rt_map_store(m, k, kl, dreq_param(r, "value")) != 0) {
        dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
    } else {
        persist_map_store(hmap_cur, k, kl, dreq_param(r, "value"));
        dreq_ok(r, NULL);
    }
}

static void hmap_load(dreq *r, rt_map *m, const char *k, size_t kl)
{
    void *v = NULL;
    bool ok = rt_map_load(m, k, kl, &v);

    hmap_took(ok ? v : NULL);

    dreq_ok_pair(r, "value", ok ? v : NULL, "ok", ok, NULL);
    if (ok)
        json_decref(v); /* rt_map_load's reference */
}

static void hmap_delete(dreq *r, rt_map *m, const char *k, size_t kl)
{
    rt_map_delete(m, k, kl);
    persist_map_delete(hmap_cur, k, kl);
    dreq_ok(r, NULL);
}

static void hmap_load_or_store(dreq *r, rt_map *m, const char *k, size_t kl)
{
    void *actual = NULL;
    bool loaded =
        rt_map_load_or_store(m, k, kl, dreq_param(r, "value"), &actual);

    if (!loaded)
        persist_map_store(hmap_cur, k, kl, dreq_param(r, "value"));
    hmap_took(actual);

    hmap_ok_loaded(r, "value", actual, loaded);
}

static void hmap_load_and_delete(dreq *r, rt_map *m, const char *k, size_t kl)
{
    void *v = NULL;
    bool loaded = rt_map_load_and_delete(m, k, kl, &v);

    if (loaded)
        persist_map_delete(hmap_cur, k, kl);
    hmap_took(loaded ? v : NULL);

    hmap_ok_loaded(r, "value", loaded ? v : NULL, loaded);
}

static void hmap_swap(dreq *r, rt_map *m, const char *k, size_t kl)
{
    void *prev = NULL;
    bool loaded = rt_map_swap(m, k, kl, dreq_param(r, "value"), &prev);

    persist_map_store(hmap_cur, k, kl, dreq_param(r, "value"));
    hmap_took(loaded ? prev : NULL);

    hmap_ok_loaded(r, "previous", loaded ? prev : NULL, loaded);
}

static void hmap_cas(dreq *r, rt_map *m, const char *k, size_t kl)
{
    bool swapped = rt_map_compare_and_swap(m, k, kl, dreq_param(r, "old"),
                                           dreq_param(r, "new"));

    if (swapped)
        persist_map_store(hmap_cur, k, kl, dreq_param(r, "new"));

    dreq_ok(r, json_pack("{s:b}", "swapped", swapped));
}

static void hmap_cad(dreq *r, rt_map *m, const char *k, size_t kl)
{
    bool deleted = rt_map_compare_and_delete(m, k, kl, dreq_param(r, "old"));

    if (deleted)
        persist_map_delete(hmap_cur, k, kl);

    dreq_ok(r, json_pack("{s:b}", "deleted", deleted));
}

static bool hmap_range_one(const void *key, size_t klen, void *v, void *arg)
{
    char *k = strndup(key, klen);
    if (k) {
        json_object_set(arg, k, v);
        free(k);
    }
    return true;
}

/* map.range's page when the client gives no limit, and the largest. */
#define HMAP_RANGE_LIMIT 1000
#define HMAP_RANGE_MAX 10000

static void hmap_range(dreq *r, rt_map *m, const char *k, size_t kl)
{
    int64_t cursor = dreq_int(r, "cursor", 0);
    int64_t limit = dreq_int(r, "limit", HMAP_RANGE_LIMIT);
    json_t *entries;
    uint64_t next;

    (void)k;
    (void)kl;
    if (limit < 1 || limit > HMAP_RANGE_MAX) {
        dreq_fail_params(r, NULL, "invalid params: limit must be 1..%d",
                         HMAP_RANGE_MAX);
        return;
    }
    entries = json_object();
    /* One page per request, as list: 100k keys at once stalled others. */
    next = rt_map_range_page(m, (uint64_t)cursor, (size_t)limit, hmap_range_one,
                             entries);
    dreq_ok(r, json_pack("{s:o, s:I}", "entries", entries, "cursor",
                         (json_int_t)next));
}

static void hmap_len(dreq *r, rt_map *m, const char *k, size_t kl)
{
    (void)k;
    (void)kl;
    dreq_ok(r, json_pack("{s:I}", "len", (json_int_t)rt_map_len(m)));
}

static void hmap_clear(dreq *r, rt_map *m, const char *k, size_t kl)
{
    (void)k;
    (void)kl;
    rt_map_clear(m);
    persist_map_clear(hmap_cur);
    dreq_ok(r, NULL);
}

void h_map_store(dreq *r)
{
    hmap_run(r, hmap_store, true);
}
void h_map_load(dreq *r)
{
    hmap_run(r, hmap_load, true);
}
void h_map_delete(dreq *r)
{
    hmap_run(r, hmap_delete, true);
}
void h_map_load_or_store(dreq *r)
{
    hmap_run(r, hmap_load_or_store, true);
}
void h_map_load_and_delete(dreq *r)
{
    hmap_run(r, hmap_load_and_delete, true);
}
void h_map_swap(dreq *r)
{
    hmap_run(r, hmap_swap, true);
}
void h_map_compare_and_swap(dreq *r)
{
    hmap_run(r, hmap_cas, true);
}
void h_map_compare_and_delete(dreq *r)
{
    hmap_run(r, hmap_cad, true);
}
void h_map_range(dreq *r)
{
    hmap_run(r, hmap_range, false);
}
void h_map_len(dreq *r)
{
    hmap_run(r, hmap_len, false);
}
void h_map_clear(dreq *r)
{
    hmap_run(r, hmap_clear, false);
}

/* ------------------------------------------------------------------ */
/* sync/atomic                                                        */
/* ------------------------------------------------------------------ */

typedef struct hatomic {
    obj o;
    _Atomic uint64_t v;
} hatomic;

static void hatomic_info(obj *o, json_t *into)
{
    json_object_set_new(
        into, "value",
        json_integer((json_int_t)(int64_t)atomic_load(&((hatomic *)o)->v)));
}

static int hatomic_snap(obj *o, void *s)
{
    eff_rec r = {.type = EFF_ATOMIC_SET};

    persist_lock(o);
    uint64_t lsn = atomic_load(&o->lsn);
    r.u.num.v = (int64_t)atomic_load(&((hatomic *)o)->v);
    persist_unlock(o);
    r.u.num.name = eff_s(o->name);
    return persist_snap_emit(s, &r, lsn);
}

static bool hatomic_idle(obj *o)
{
    return atomic_load(&((hatomic *)o)->v) == 0;
}

static const obj_ops hatomic_ops = {
    .type = OBJ_ATOMIC,
    .name = "atomic",
    .size = sizeof(hatomic),
    .info = hatomic_info,
    .snap = hatomic_snap,
    .idle = hatomic_idle,
};

static _Atomic uint64_t *hatomic_get(dreq *r, obj **o)
{
    *o = dreq_obj(r, dreq_str(r, "name"), &hatomic_ops, true);
    return *o ? &((hatomic *)*o)->v : NULL;
}

static uint64_t hatomic_param(dreq *r, const char *key)
{
    return (uint64_t)dreq_int(r, key, 0);
}

static void hatomic_ok(dreq *r, obj *o, const char *key, uint64_t v)
{
    dreq_ok_int(r, key, (int64_t)v);
    obj_done(o);
}

void h_atomic_load(dreq *r)
{
    obj *o;
    _Atomic uint64_t *a = hatomic_get(r, &o);
    if (a)
        hatomic_ok(r, o, "value", atomic_load(a));
}

void h_atomic_store(dreq *r)
{
    obj *o;
    _Atomic uint64_t *a = hatomic_get(r, &o);
    if (!a)
        return;
    if (persist_write_ok(r)) {
        persist_lock(o);
        atomic_store(a, hatomic_param(r, "value"));
        persist_atomic_set(o, (int64_t)atomic_load(a));
        persist_unlock(o);
        dreq_ok(r, NULL);
    }
    obj_done(o);
}

void h_atomic_add(dreq *r)
{
    obj *o;
    _Atomic uint64_t *a = hatomic_get(r, &o);
    uint64_t d;
    /* Without a, r was already answered and freed by dreq_obj. */
    if (!a)
        return;
    if (!persist_write_ok(r)) {
        obj_release(o);
        return;
    }
    d = hatomic_param(r, "delta");
    persist_lock(o);
    uint64_t v = atomic_fetch_add(a, d) + d;
    persist_atomic_set(o, (int64_t)v);
    persist_unlock(o);
    hatomic_ok(r, o, "value", v);
}

void h_atomic_swap(dreq *r)
{
    obj *o;
    _Atomic uint64_t *a = hatomic_get(r, &o);
    if (!a)
        return;
    if (!persist_write_ok(r)) {
        obj_release(o);
        return;
    }
    persist_lock(o);
    uint64_t v = hatomic_param(r, "value"), old = atomic_exchange(a, v);
    persist_atomic_set(o, (int64_t)v);
    persist_unlock(o);
    hatomic_ok(r, o, "old", old);
}

void h_atomic_cas(dreq *r)
{
    obj *o;
    _Atomic uint64_t *a = hatomic_get(r, &o);
    uint64_t old;
    bool swapped;

    if (!a)
        return;
    if (!persist_write_ok(r)) {
        obj_release(o);
        return;
    }
    old = hatomic_param(r, "old");
    persist_lock(o);
    swapped = atomic_compare_exchange_strong(a, &old, hatomic_param(r, "new"));
    if (swapped)
        persist_atomic_set(o, (int64_t)hatomic_param(r, "new"));
    persist_unlock(o);
    dreq_ok(r, json_pack("{s:b}", "swapped", swapped));
    obj_done(o);
}

/* ------------------------------------------------------------------ */
/* Recovery's builders (persist.h)                                    */
/* ------------------------------------------------------------------ */

int hmap__restore(const char *name, const char *k, size_t kl, const char *v,
                  size_t vn, int what)
{
    reg_found f;
    dreq r = {0};
    int rc = 0;

    if (reg_lookup(name, &hmap_ops, true, &r, &f) != REG_OK)
        return 0; /* another type's name: skipped */
    rt_map *m = ((hmap *)f.o)->m;
    if (what == 1) {
        /* jfast first (recovery of a large log spends most of its time
         * here); jansson reads what it declines. */
        json_t *j = jfast_parse(v, vn);
        if (!j)
            j = json_loadb(v, vn, JSON_DECODE_ANY, NULL);
        if (!j || rt_map_store(m, k, kl, j) != 0)
            rc = -1;
        json_decref(j);
    } else if (what == 0) {
        rt_map_delete(m, k, kl);
    } else {
        rt_map_clear(m);
    }
    obj_release(f.o);
    return rc;
}

int hatomic__restore(const char *name, int64_t v)
{
    reg_found f;
    dreq r = {0};

    if (reg_lookup(name, &hatomic_ops, true, &r, &f) != REG_OK)
        return 0;
    atomic_store(&((hatomic *)f.o)->v, (uint64_t)v);
    obj_release(f.o);
    return 0;
}
