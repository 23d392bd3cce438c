/*
 * h_core.c - methods about the server itself rather than one primitive:
 * hello, ping, list, drop, go, and runtime.stats / gomaxprocs / dump.
 */
#include "daemon.h"
#include "persist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Atomic int64_t hcore_goroutines = 1;

void h_hello(dreq *r)
{
    int64_t v = dreq_int(r, "version", 0);

    if (v != PROTO_VERSION) {
        dreq_fail(r, PROTO_R_MISUSE,
                  "unsupported protocol version %lld (server speaks %d)",
                  (long long)v, PROTO_VERSION);
        return;
    }
    json_t *hb = dreq_param(r, "heartbeat_ms");
    int64_t hb_ms = hb ? json_integer_value(hb) : 0;
    json_t *res;

    if (hb && hb_ms != 0 && hb_ms < 100) {
        dreq_fail_params(r, NULL,
                         "invalid params: heartbeat_ms must be 0 "
                         "(off) or at least 100");
        return;
    }
    /* Detached (go hello) there is no session to watch. */
    if (hb && r->s && sess_set_heartbeat(r->s, hb_ms) != 0) {
        dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
        return;
    }
    if (sec_hello_auth(r))
        return; /* answered once the credentials are verified */
    res = json_pack("{s:i, s:s, s:I}", "version", PROTO_VERSION, "server",
                    "chand " CHAND_VERSION, "session", (json_int_t)dreq_sid(r));
    if (res && hb)
        json_object_set_new(res, "heartbeat_ms", json_integer(hb_ms));
    dreq_ok(r, res);
}

void h_ping(dreq *r)
{
    dreq_ok(r, NULL);
}

/* Returns a new object describing o: name, type and the family's fields. */
static json_t *hcore_describe(obj *o)
{
    json_t *d = json_pack(
        "{s:s, s:s, s:I}", "name", o->name, "type", o->ops->name, "ops",
        (json_int_t)atomic_load_explicit(&o->nops, memory_order_relaxed));
    if (d && o->ops->info)
        o->ops->info(o, d);
    return d;
}

static void hcore_list_one(obj *o, void *arg)
{
    json_t *d = hcore_describe(o);
    if (d)
        json_array_append_new(arg, d);
}

/* list's page when the client gives no limit, and the largest one. */
#define HCORE_LIST_LIMIT 1000
#define HCORE_LIST_MAX 10000

void h_list(dreq *r)
{
    int64_t cursor = dreq_int(r, "cursor", 0);
    int64_t limit = dreq_int(r, "limit", HCORE_LIST_LIMIT);
    json_t *arr;
    uint64_t next;

    if (limit < 1 || limit > HCORE_LIST_MAX) {
        dreq_fail_params(r, NULL, "invalid params: limit must be 1..%d",
                         HCORE_LIST_MAX);
        return;
    }
    arr = json_array();
    if (!arr) {
        dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
        return;
    }
    /* One page per request: a walk of 100k objects in one answer stalled
     * every other client of the I/O thread for half a second. */
    next = reg_scan(dreq_str(r, "prefix"), (uint64_t)cursor, (size_t)limit,
                    hcore_list_one, arr);
    json_t *res =
        json_pack("{s:o, s:I}", "objects", arr, "cursor", (json_int_t)next);
    if (res)
        sec_filter(r, res);
    dreq_ok(r, res);
}

void h_drop(dreq *r)
{
    if (!persist_write_ok(r))
        return; /* the log cannot be written: see persist.h */
    const char *name = dreq_str(r, "name");
    int rc = reg_drop(name);

    if (rc == REG_EBUSY)
        dreq_fail(r, PROTO_R_MISUSE,
                  "\"%s\" is held or in progress: unlock it (or finish the "
                  "once) before drop",
                  name);
    else if (rc != 0)
        dreq_fail(r, PROTO_R_NOT_FOUND, "no object \"%s\"", name);
    else
        dreq_ok(r, NULL);
}

void h_go(dreq *r)
{
    proto_error err;

    if (disp_run_detached(dreq_param(r, "request"), false, &err) != 0) {
        if (err.reason == PROTO_R_INVALID)
            dreq_fail_params(r, NULL, "%s", err.message);
        else
            dreq_fail(r, err.reason, "%s", err.message);
        return;
    }
    dreq_ok(r, json_pack("{s:I}", "goroutine",
                         (json_int_t)atomic_fetch_add(&hcore_goroutines, 1)));
}

/* runtime.stats' "security": who may connect, and what was refused. */
static json_t *rt_stats_security(const stats_snap *sn)
{
    const uint64_t *c = sn->sec;

    return json_pack(
        "{s:I, s:b, s:{s:I, s:I, s:I}, s:{s:I, s:I, s:I, s:I, s:I},"
        " s:I, s:{s:I, s:I, s:i, s:i}}",
        "users", (json_int_t)sn->users, "tls", sn->tls, "auth", "ok",
        (json_int_t)c[SRV_AUTH_OK], "failed", (json_int_t)c[SRV_AUTH_FAILED],
        "delayed", (json_int_t)c[SRV_AUTH_DELAYED], "refused",
        "unauthenticated", (json_int_t)c[SRV_REFUSED_UNAUTH], "denied",
        (json_int_t)c[SRV_REFUSED_DENIED], "limit",
        (json_int_t)c[SRV_REFUSED_LIMIT], "busy",
        (json_int_t)c[SRV_REFUSED_BUSY], "auth_timeout",
        (json_int_t)c[SRV_REFUSED_AUTH_TIMEOUT], "tls_handshake_failures",
        (json_int_t)c[SRV_TLS_HANDSHAKE_FAILED], "hashing", "running",
        (json_int_t)sn->hashing, "waiting", (json_int_t)sn->hash_waiting,
        "slots", sn->hash_slots, "queue", sn->hash_queue);
}

void h_rt_stats(dreq *r)
{
    stats_snap sn;
    json_t *res, *dur = json_null();

    stats_take(&sn);
    res = json_pack(
        "{s:i, s:i, s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
        " s:I}",
        "goroutines", sn.goroutines, "gomaxprocs", sn.gomaxprocs, "numcpu",
        sn.numcpu, "threads", sn.threads, "sessions", (json_int_t)sn.sessions,
        "objects", (json_int_t)sn.objects, "waiters", (json_int_t)sn.waiters,
        "held_locks", (json_int_t)sn.held_locks, "open_fds",
        (json_int_t)sn.open_fds, "rss_bytes", (json_int_t)sn.rss_bytes,
        "output_buffer_bytes", (json_int_t)sn.output_buffer_bytes, "requests",
        (json_int_t)sn.requests);
    if (sn.persist) {
        static const char *const pol[] = {"no", "everysec", "always"};
        dur = json_pack(
            "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b}", "fsync",
            pol[sn.fsync], "log_bytes", (json_int_t)sn.log_bytes,
            "snapshot_bytes", (json_int_t)sn.snapshot_bytes, "pending_bytes",
            (json_int_t)sn.pending_bytes, "fsyncs", (json_int_t)sn.fsyncs,
            "last_fsync_us", (json_int_t)(sn.last_fsync_ns / 1000),
            "appended_lsn", (json_int_t)sn.appended_lsn, "durable_lsn",
            (json_int_t)sn.durable_lsn, "snapshots", (json_int_t)sn.snapshots,
            "write_error", sn.wal_error != 0);
    }
    if (res && sn.cluster)
        json_object_set_new(res, "cluster", persist_cluster_status());
    if (res)
        json_object_set_new(res, "durability", dur);
    else
        json_decref(dur);
    if (res) {
        json_object_set_new(res, "memory_bytes",
                            json_integer((json_int_t)sn.memory_bytes));
        json_object_set_new(res, "max_memory",
                            json_integer((json_int_t)sn.max_memory));
        json_object_set_new(res, "security", rt_stats_security(&sn));
        json_object_set_new(
            res, "deliveries",
            json_pack("{s:I, s:I, s:I, s:I}", "inflight",
                      (json_int_t)sn.dlv_inflight, "redelivered",
                      (json_int_t)sn.dlv_redelivered, "dead_letters",
                      (json_int_t)sn.dlv_dead_letters, "dropped",
                      (json_int_t)sn.dlv_dropped));
    }
    dreq_ok(r, res);
}

void h_rt_gomaxprocs(dreq *r)
{
    int64_t n = dreq_int(r, "n", 0);

    if (n > 256) {
        dreq_fail(r, PROTO_R_LIMIT, "gomaxprocs %lld exceeds 256",
                  (long long)n);
        return;
    }
    dreq_ok(r, json_pack("{s:i}", "previous", rt_gomaxprocs((int)n)));
}

static void hcore_dump_one(obj *o, void *arg)
{
    json_t *d = hcore_describe(o), *w = json_array();
    int64_t now = rt_now();

    if (!d || !w) {
        json_decref(d);
        json_decref(w);
        return;
    }
    pthread_mutex_lock(&o->wmu);
    for (dreq *r = o->waiters; r; r = r->wnext)
        json_array_append_new(
            w, json_pack("{s:I, s:s, s:I}", "session", (json_int_t)dreq_sid(r),
                         "reason", r->wreason, "waited_ms",
                         (json_int_t)((now - r->wsince) / 1000000)));
    pthread_mutex_unlock(&o->wmu);
    json_object_set_new(d, "waiters", w);
    json_array_append_new(arg, d);
}

void h_rt_dump(dreq *r)
{
    json_t *arr = json_array();

    if (!arr) {
        dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
        return;
    }
    reg_foreach(NULL, hcore_dump_one, arr);
    json_t *res =
        json_pack("{s:i, s:I, s:o}", "goroutines", rt_num_goroutine(),
                  "waiters", (json_int_t)park_waiters(), "objects", arr);
    if (res)
        sec_filter(r, res);
    dreq_ok(r, res);
}

/* ------------------------------------------------------------------ */
/* Replication (persist_repl.c)                                       */
/* ------------------------------------------------------------------ */

void h_cluster_status(dreq *r)
{
    if (!persist_clustered()) {
        dreq_fail(r, PROTO_R_INVALID, "this node is not in a cluster");
        return;
    }
    dreq_ok(r, persist_cluster_status());
}

void h_cluster_add(dreq *r)
{
    persist_cluster_change(r, 0, (uint64_t)dreq_int(r, "id", 0),
                           dreq_str(r, "raft"), dreq_str(r, "client"));
}

void h_cluster_remove(dreq *r)
{
    persist_cluster_change(r, 1, (uint64_t)dreq_int(r, "id", 0), NULL, NULL);
}

void h_cluster_transfer(dreq *r)
{
    persist_cluster_change(r, 2, (uint64_t)dreq_int(r, "id", 0), NULL, NULL);
}
