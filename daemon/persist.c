/*
 * persist.c - durability wired into the daemon (persist.h): start-up and
 * recovery, the effects the handlers emit, the write gate, the durable
 * LSN the sessions wait for.  The log itself is wal.c's.
 */
#include "persist.h"
#include "dlv.h"
#include "epoch.h"
#include "holds.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

wal *persist__wal;
bool persist__on;
bool persist__gate;
__thread bool persist__nogate;

/* Set from start-up on: channels made from then on get the observer
 * (recovery's too, which then logs nothing: persist__wal is still NULL). */
static bool persist_enabled;
/* fsync = always: answers wait for the disk, even while it fails. */
static bool persist_sync_gate;

#define PERSIST_STRIPES 64
static pthread_mutex_t persist_mu[PERSIST_STRIPES];

static pthread_mutex_t *persist_stripe(obj *o)
{
    uintptr_t p = (uintptr_t)o;
    return &persist_mu[(p >> 6 ^ p >> 12) % PERSIST_STRIPES];
}

void persist_lock(obj *o)
{
    if (persist_on())
        pthread_mutex_lock(persist_stripe(o));
}

void persist_unlock(obj *o)
{
    if (persist_on())
        pthread_mutex_unlock(persist_stripe(o));
}

/* Appends r; a failure to encode or allocate is logged (the effect then
 * lives in memory only, and the next write fails on wal_error). */
static void persist_append(obj *o, const eff_rec *r)
{
    uint64_t lsn;
    int rc;

    if (persist__cluster) {
        persist__repl_append(r);
        return;
    }
    rc = wal_append(persist__w(), r, &lsn);
    if (rc != 0)
        log_error("durability: cannot log %s: %s", eff_type_name(r->type),
                  strerror(-rc));
    else if (o)
        atomic_store(&o->lsn, lsn);
}

/* ------------------------------------------------------------------ */
/* Effects                                                            */
/* ------------------------------------------------------------------ */

/* A timer's firing in progress on this thread (persist_timer_fire_begin):
 * the decided record, and its LSN once appended. */
static __thread const eff_rec *persist_fire;
static __thread uint64_t persist_fire_lsn;
static __thread bool persist_fire_done;

/* The push of a firing's send: one group with the fire record, so that a
 * torn tail keeps both or neither (the fire without its value would lose
 * the tick; the value without the fire would fire it twice). */
static void persist_fire_group(obj *o, const eff_rec *push)
{
    eff_rec g[2] = {*persist_fire, *push};
    uint64_t lsn;
    int rc;

    persist_fire_done = true;
    if (persist__cluster) {
        persist__repl_append_group(g, 2);
        return; /* no LSN: raft's log has none to filter snapshots by */
    }
    rc = wal_append_group(persist__w(), g, 2, &lsn);
    if (rc != 0) {
        log_error("durability: cannot log a timer's firing: %s", strerror(-rc));
        return;
    }
    persist_fire_lsn = lsn - 1;
    atomic_store(&o->lsn, lsn);
}

uint64_t persist_timer(const eff_rec *r)
{
    uint64_t lsn;
    int rc;

    if (persist__cluster) {
        persist__repl_append(r);
        return 0;
    }
    if (!persist__w())
        return 0;
    rc = wal_append(persist__w(), r, &lsn);
    if (rc == 0)
        return lsn;
    log_error("durability: cannot log %s: %s", eff_type_name(r->type),
              strerror(-rc));
    return 0;
}

void persist_timer_fire_begin(const eff_rec *r)
{
    persist_fire = r;
    persist_fire_lsn = 0;
    persist_fire_done = false;
}

uint64_t persist_timer_fire_end(void)
{
    uint64_t lsn =
        persist_fire_done ? persist_fire_lsn : persist_timer(persist_fire);
    persist_fire = NULL;
    return lsn;
}

static void persist_chan_obs(void *arg, rt_chan_event ev, const void *elem)
{
    obj *o = arg;
    eff_rec r = {0};

    if (!persist_on() || atomic_load(&o->dropped))
        return;
    switch (ev) {
    case RT_CHAN_PUT:
        r.type = EFF_CHAN_PUSH;
        r.u.push.name = eff_s(o->name);
        r.u.push.value.p = hval_text(elem, &r.u.push.value.n);
        if (persist_fire && !persist_fire_done) {
            persist_fire_group(o, &r);
            return;
        }
        break;
    case RT_CHAN_GET:
        r.type = EFF_CHAN_POP;
        r.u.pop.name = eff_s(o->name);
        r.u.pop.count = 1;
        r.u.pop.check = hchan__value_check(elem);
        break;
    case RT_CHAN_CLOSE:
        r.type = EFF_CHAN_CLOSE;
        r.u.obj.name = eff_s(o->name);
        break;
    }
    persist_append(o, &r);
}

void persist_chan_made(obj *o, rt_chan *c, size_t cap, const char *elem,
                       uint32_t max_deliver, const char *dead_letter)
{
    if (!persist_enabled)
        return;
    if (persist_on()) {
        eff_rec r = {.type = EFF_CHAN_MAKE};
        r.u.make.name = eff_s(o->name);
        r.u.make.cap = cap;
        r.u.make.elem = eff_s(elem);
        r.u.make.max_deliver = max_deliver;
        r.u.make.dead_letter = eff_s(dead_letter ? dead_letter : "");
        persist_append(o, &r);
    }
    rt_chan_observe(c, persist_chan_obs, o);
}

void persist_drop(obj *o)
{
    if (!persist_on())
        return;
    eff_rec r = {.type = EFF_DROP};
    r.u.obj.name = eff_s(o->name);
    persist_append(o, &r);
}

void persist_map_store(obj *o, const char *k, size_t kl, const json_t *v)
{
    if (!persist_on())
        return;
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    eff_rec r = {.type = EFF_MAP_STORE};
    if (!text) {
        log_error("durability: out of memory logging map \"%s\"", o->name);
        return;
    }
    r.u.map.name = eff_s(o->name);
    r.u.map.key = (eff_str){k, kl};
    r.u.map.value = eff_s(text);
    persist_append(o, &r);
    free(text);
}

void persist_map_delete(obj *o, const char *k, size_t kl)
{
    if (!persist_on())
        return;
    eff_rec r = {.type = EFF_MAP_DELETE};
    r.u.map.name = eff_s(o->name);
    r.u.map.key = (eff_str){k, kl};
    persist_append(o, &r);
}

void persist_map_clear(obj *o)
{
    if (!persist_on())
        return;
    eff_rec r = {.type = EFF_MAP_CLEAR};
    r.u.obj.name = eff_s(o->name);
    persist_append(o, &r);
}

static void persist_num(obj *o, uint16_t type, int64_t v)
{
    if (!persist_on())
        return;
    eff_rec r = {.type = type};
    r.u.num.name = eff_s(o->name);
    r.u.num.v = v;
    persist_append(o, &r);
}

void persist_atomic_set(obj *o, int64_t v)
{
    persist_num(o, EFF_ATOMIC_SET, v);
}

void persist_wg_set(obj *o, int64_t v)
{
    persist_num(o, EFF_WG_SET, v);
}

void persist_once_done(obj *o, const json_t *value)
{
    if (!persist_on())
        return;
    char *text =
        value ? json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    eff_rec r = {.type = EFF_ONCE_DONE};
    r.u.once.name = eff_s(o->name);
    r.u.once.has_value = text != NULL;
    r.u.once.value = eff_s(text ? text : "");
    persist_append(o, &r);
    free(text);
}

void persist_hold(obj *o, const eff_rec *r)
{
    if (persist_on())
        persist_append(o, r);
}

void persist_dlv(obj *o, const eff_rec *recs, size_t n)
{
    uint64_t lsn;
    int rc;

    if (persist__cluster && !atomic_load(&o->dropped)) {
        persist__repl_append_group(recs, n);
        return;
    }
    wal *w = persist__w();
    if (!w || atomic_load(&o->dropped))
        return;
    rc =
        n == 1 ? wal_append(w, recs, &lsn) : wal_append_group(w, recs, n, &lsn);
    if (rc != 0)
        log_error("durability: cannot log %s: %s",
                  eff_type_name(recs[n - 1].type), strerror(-rc));
    else
        atomic_store(&o->lsn, lsn);
}

bool persist_write_ok(dreq *r)
{
    char why[256];

    if (!persist__w() || wal_error(persist__w(), why, sizeof why) == 0)
        return true;
    persist__nogate = true;
    dreq_fail(r, PROTO_R_LIMIT,
              "disk full: the durability log cannot be written (%s); "
              "requests that change state fail until it can, reads work",
              why);
    persist__nogate = false;
    return false;
}

void persist_stats(stats_snap *sn)
{
    wal_stats st;

    persist_cluster_stats(sn);
    sn->persist = persist__w() != NULL;
    if (!sn->persist)
        return;
    wal_stats_get(persist__w(), &st);
    sn->fsync = srv_conf.fsync;
    sn->log_bytes = (int64_t)st.log_bytes;
    sn->snapshot_bytes = (int64_t)st.snapshot_bytes;
    sn->pending_bytes = (int64_t)st.pending_bytes;
    sn->fsyncs = (int64_t)st.fsyncs;
    sn->last_fsync_ns = (int64_t)st.last_fsync_ns;
    sn->appended_lsn = (int64_t)st.appended_lsn;
    sn->durable_lsn = (int64_t)st.durable_lsn;
    sn->snapshots = (int64_t)st.snapshots;
    sn->wal_error = st.error;
}

uint64_t persist_durable_lsn(void)
{
    wal *w = persist__w();

    if (persist__cluster)
        return persist__repl_durable();
    if (!w)
        return 0;
    /* A failing disk under everysec or no: nothing is held, so that reads
     * keep working (writes are refused meanwhile); what the turn that met
     * the failure acknowledged is written when the disk recovers, or lost
     * if the daemon is killed first. */
    if (!persist_sync_gate && wal_error(w, NULL, 0) != 0)
        return UINT64_MAX;
    return wal_safe_lsn(w);
}

/* ------------------------------------------------------------------ */
/* Compaction: a fuzzy snapshot of every object (wal.h)               */
/* ------------------------------------------------------------------ */

int persist_snap_emit(void *s, eff_rec *r, uint64_t lsn)
{
    r->lsn = lsn;
    if (persist__repl_snapping())
        return persist__repl_snap_emit(r);
    return wal_snap_emit(s, r) == 0 ? 0 : -1;
}

typedef struct persist_walk {
    wal_snap *s;
    int rc;
} persist_walk;

static void persist_snap_one(obj *o, void *arg)
{
    persist_walk *w = arg;

    if (w->rc == 0 && o->ops->snap && !atomic_load(&o->dropped))
        w->rc = o->ops->snap(o, w->s);
}

static int persist_snap_iter(void *arg, wal_snap *s)
{
    persist_walk w = {s, 0};
    (void)arg;

    reg_foreach(NULL, persist_snap_one, &w);
    return w.rc;
}

/* ------------------------------------------------------------------ */
/* Recovery                                                           */
/* ------------------------------------------------------------------ */

/* Copies s into a NUL-terminated buffer (new), or NULL. */
static char *persist_cstr(eff_str s)
{
    char *p = malloc(s.n + 1);
    if (p) {
        if (s.n)
            memcpy(p, s.p, s.n);
        p[s.n] = '\0';
    }
    return p;
}

/* wal_apply_fn: rebuilds one effect through the families' builders.  A
 * record for an object that is gone is skipped (wal.h). */
int persist__apply(void *arg, const eff_rec *r, int from_snapshot)
{
    eff_str ns = {0};
    uint64_t id;
    char *name = NULL;
    int rc = 0;
    (void)arg;
    (void)from_snapshot;

    if (eff_object(r, &ns, &id) == EFF_OBJ_NAME && !(name = persist_cstr(ns)))
        return -1;
    switch (r->type) {
    case EFF_CHAN_MAKE: {
        char *elem = persist_cstr(r->u.make.elem);
        char *dl = persist_cstr(r->u.make.dead_letter);
        rc = elem && dl ? hchan__restore_make_dlv(name, r->u.make.cap, elem,
                                                  r->u.make.max_deliver, dl)
                        : -1;
        free(elem);
        free(dl);
        break;
    }
    case EFF_CHAN_PUSH:
        rc = hchan__restore_push(name, r->u.push.value.p, r->u.push.value.n);
        break;
    case EFF_CHAN_POP:
        rc = hchan__restore_pop(name, r->u.pop.count, r->u.pop.check);
        break;
    case EFF_CHAN_CLOSE:
        rc = hchan__restore_close(name);
        break;
    case EFF_DROP:
        reg_drop(name);
        dlv__restore_drop(name);
        break;
    case EFF_DLV_INFLIGHT:
    case EFF_DLV_ACK:
    case EFF_DLV_REDELIVER:
    case EFF_DLV_TOUCH:
    case EFF_DLV_DEAD:
        rc = dlv__restore_rec(name, r);
        break;
    case EFF_MAP_STORE:
    case EFF_MAP_DELETE:
        rc = hmap__restore(name, r->u.map.key.p, r->u.map.key.n,
                           r->u.map.value.p, r->u.map.value.n,
                           r->type == EFF_MAP_STORE ? 1 : 0);
        break;
    case EFF_MAP_CLEAR:
        rc = hmap__restore(name, NULL, 0, NULL, 0, 2);
        break;
    case EFF_ATOMIC_SET:
        rc = hatomic__restore(name, r->u.num.v);
        break;
    case EFF_WG_SET:
        rc = hwg__restore(name, r->u.num.v);
        break;
    case EFF_ONCE_DONE:
        rc =
            honce__restore(name, r->u.once.has_value ? r->u.once.value.p : NULL,
                           r->u.once.value.n);
        break;
    case EFF_HOLD_RENEW: /* the same hold, a new end */
        hlock__restore(name, r->u.hold.kind, r->u.hold.token, 0, false);
        /* fall through */
    case EFF_HOLD_GRANT:
    case EFF_HOLD_RELEASE:
        rc = hlock__restore(name, r->u.hold.kind, r->u.hold.token,
                            r->u.hold.deadline_ms, r->type != EFF_HOLD_RELEASE);
        break;
    case EFF_TOKEN_EPOCH:
        hold_token_floor(epoch_token(r->u.epoch.epoch, 0));
        break;
    case EFF_TIMER_ADD:
    case EFF_TIMER_FIRE:
    case EFF_TIMER_STOP:
        rc = htimer__restore(r);
        break;
    default:
        break; /* deliveries (issue 18): not persisted yet */
    }
    free(name);
    return rc;
}

/* Set once the server is being freed: no more wakes of its threads.  A
 * wake holds the lock across its check and its event_active, so that once
 * persist_quiesce returned none is under way (the server's events are
 * freed right after). */
static bool persist_quiet;
static pthread_mutex_t persist_wake_mu = PTHREAD_MUTEX_INITIALIZER;

void persist__wake(void)
{
    pthread_mutex_lock(&persist_wake_mu);
    if (!persist_quiet)
        srv_durable_wake();
    pthread_mutex_unlock(&persist_wake_mu);
}

static void persist_durable_cb(void *arg, uint64_t durable)
{
    (void)arg;
    (void)durable;
    persist__wake();
}

void persist_quiesce(void)
{
    pthread_mutex_lock(&persist_wake_mu);
    persist_quiet = true;
    pthread_mutex_unlock(&persist_wake_mu);
}

int persist_start(const conf *c, char *err, size_t errlen)
{
    wal_opts o = {.dir = c->data_dir,
                  .fsync = (wal_fsync)c->fsync,
                  .compact_floor = c->compact_floor};
    struct timespec t0, t1;
    uint64_t epoch;
    wal_stats st;
    wal *w;

    if (!c->data_dir[0] && !c->cluster[0])
        return 0;
    for (int i = 0; i < PERSIST_STRIPES; i++)
        pthread_mutex_init(&persist_mu[i], NULL);
    if (c->cluster[0]) {
        /* The raft log replaces the local one (persist_repl.c). */
        persist_enabled = true;
        srv_conf = *c;
        if (persist__repl_start(c, err, errlen) != 0)
            return -1;
        __atomic_store_n(&persist__on, true, __ATOMIC_RELEASE);
        persist__gate = true; /* answers wait for raft's commit */
        return 0;
    }
    if (epoch_bump(c->data_dir, &epoch, err, errlen) != 0)
        return -1;
    persist_enabled = true;
    srv_conf = *c; /* the registry's limits, before srv_new copies it */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (wal_open(&o, persist__apply, NULL, &w, err, errlen) != 0)
        return -1;
    dlv__restore_finish(); /* deliveries in flight come back, requeued */
    clock_gettime(CLOCK_MONOTONIC, &t1);
    wal_stats_get(w, &st);
    log_info("recovered %s: %llu records replayed (%llu held by the "
             "snapshot), %llu torn bytes cut, in %.1f ms; fsync %s, token "
             "epoch %llu",
             c->data_dir, (unsigned long long)st.recovered_records,
             (unsigned long long)st.skipped_records,
             (unsigned long long)st.truncated_bytes,
             ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / 1e6,
             wal_fsync_name(o.fsync), (unsigned long long)epoch);
    hold_token_floor(epoch_token(epoch, 0));
    reg_name_floor(epoch_token(epoch, 1));
    /* Above every id of an earlier run whatever the clock did meanwhile
     * (the wall clock seeds them without a data_dir). */
    dlv_id_floor(epoch_token(epoch, 1));
    eff_rec r = {.type = EFF_TOKEN_EPOCH};
    r.u.epoch.epoch = epoch;
    if (wal_append(w, &r, NULL) != 0) {
        snprintf(err, errlen, "cannot log the token epoch");
        wal_close(w);
        return -1;
    }
    wal_on_durable(w, persist_durable_cb, NULL);
    wal_set_compactor(w, persist_snap_iter, NULL);
    /* Every policy: under everysec and no an answer waits until its
     * effects are written to the kernel, which the I/O thread does itself
     * at the end of a small turn (the answers then leave at once), and
     * the flusher for a large one, while the I/O thread serves on. */
    persist__gate = true;
    __atomic_store_n(&persist__wal, w, __ATOMIC_RELEASE);
    __atomic_store_n(&persist__on, true, __ATOMIC_RELEASE);
    htimer__restart(); /* their firings are logged */
    return 0;
}

void persist_stop(void)
{
    wal *w = persist__w();

    if (persist__cluster) {
        persist__repl_stop(); /* its thread emits nothing after this */
        __atomic_store_n(&persist__on, false, __ATOMIC_RELEASE);
        return;
    }
    if (!w)
        return;
    /* Effects from here on stay in memory. */
    __atomic_store_n(&persist__on, false, __ATOMIC_RELEASE);
    __atomic_store_n(&persist__wal, NULL, __ATOMIC_RELEASE);
    int rc = wal_close(w);
    if (rc != 0)
        log_error("durability: closing the log: %s", strerror(-rc));
}

int persist_repair(const conf *c)
{
    char msg[1024];

    if (!c->data_dir[0]) {
        fprintf(stderr, "chand: --repair needs --data-dir DIR\n");
        return 2;
    }
    if (wal_repair(c->data_dir, msg, sizeof msg) != 0) {
        fprintf(stderr, "chand: repair of %s failed: %s\n", c->data_dir, msg);
        return 1;
    }
    printf("chand: repaired %s: %s\n", c->data_dir, msg);
    return 0;
}
