/*
 * h_core.c - methods about the server itself rather than one primitive:
 * hello, ping, list, drop, go, and runtime.stats / gomaxprocs / dump.
 */
#include "daemon.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void srv__refresh_stats(void);

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
    dreq_ok(r, json_pack("{s:i, s:s, s:I}", "version", PROTO_VERSION,
                         "server", "chand " CHAND_VERSION, "session",
                         (json_int_t)dreq_sid(r)));
}

void h_ping(dreq *r)
{
    dreq_ok(r, NULL);
}

/* Returns a new object describing o: name, type and the family's fields. */
static json_t *hcore_describe(obj *o)
{
    json_t *d = json_pack("{s:s, s:s}", "name", o->name, "type",
                          o->ops->name);
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

void h_list(dreq *r)
{
    json_t *arr = json_array();

    if (!arr) {
        dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
        return;
    }
    reg_foreach(dreq_str(r, "prefix"), hcore_list_one, arr);
    dreq_ok(r, json_pack("{s:o}", "objects", arr));
}

void h_drop(dreq *r)
{
    const char *name = dreq_str(r, "name");

    if (reg_drop(name) != 0)
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

/* Counts the open file descriptors (entries of /proc/self/fd). */
static int64_t hcore_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int64_t n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

static int64_t hcore_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long long size, rss;
    int n;

    if (!f)
        return -1;
    n = fscanf(f, "%lld %lld", &size, &rss);
    fclose(f);
    if (n != 2)
        return -1;
    return (int64_t)rss * sysconf(_SC_PAGESIZE);
}

static int hcore_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

typedef struct hcore_parked {
    int64_t *ids;              /* goroutines the runtime reports parked */
    size_t n, cap;
    bool oom;
    int64_t count;
} hcore_parked;

static void hcore_count_parked(obj *o, void *arg)
{
    hcore_parked *p = arg;
    pthread_mutex_lock(&o->wmu);
    for (dreq *r = o->waiters; r; r = r->wnext)
        if (r->wgoid == 0 || /* an await: queued in the runtime */
            (p->n && bsearch(&r->wgoid, p->ids, p->n, sizeof *p->ids,
                             hcore_cmp_i64)))
            p->count++;
    pthread_mutex_unlock(&o->wmu);
}

/* Returns the number of requests whose goroutine the runtime shows parked.
 * A request is counted by dreq_wait_begin just before its blocking call;
 * under load its goroutine may take a while to actually park, and a
 * client that waits for "n waiters" before acting must not see it early.
 * The runtime's goroutine dump is the one view of who is parked. */
/* Collects the ids of the goroutines the runtime reports parked. */
static void hcore_collect_parked(const rt_ginfo *gi, void *arg)
{
    hcore_parked *p = arg;

    if (!gi->parked || p->oom)
        return;
    if (p->n == p->cap) {
        size_t ncap = p->cap ? p->cap * 2 : 256;
        int64_t *nids = realloc(p->ids, ncap * sizeof *nids);
        if (!nids) {
            p->oom = true;
            return;
        }
        p->ids = nids;
        p->cap = ncap;
    }
    p->ids[p->n++] = gi->id;
}

/* Returns the number of requests whose goroutine the runtime shows parked.
 * A request is counted by dreq_wait_begin just before its blocking call;
 * under load its goroutine may take a while to actually park, and a
 * client that waits for "n waiters" before acting must not see it early. */
static int64_t hcore_parked_waiters(void)
{
    hcore_parked p = { 0 };

    if (atomic_load(&srv_stat.waiters) == 0)
        return 0;
    rt_goroutines(hcore_collect_parked, &p);
    if (p.oom) {
        free(p.ids);
        return atomic_load(&srv_stat.waiters);
    }
    if (p.n) /* qsort(NULL, 0) is undefined (UBSan) */
        qsort(p.ids, p.n, sizeof *p.ids, hcore_cmp_i64);
    reg_foreach(NULL, hcore_count_parked, &p);
    free(p.ids);
    return p.count;
}

void h_rt_stats(dreq *r)
{
    srv__refresh_stats();
    dreq_ok(r, json_pack(
                   "{s:i, s:i, s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
                   " s:I}",
                   "goroutines", rt_num_goroutine(), "gomaxprocs",
                   rt_gomaxprocs(0), "numcpu", rt_num_cpu(), "threads",
                   rt_num_threads(), "sessions",
                   (json_int_t)atomic_load(&srv_stat.sessions), "objects",
                   (json_int_t)atomic_load(&srv_stat.objects), "waiters",
                   (json_int_t)hcore_parked_waiters(), "held_locks",
                   (json_int_t)atomic_load(&srv_stat.held_locks), "open_fds",
                   (json_int_t)hcore_open_fds(), "rss_bytes",
                   (json_int_t)hcore_rss_bytes(), "output_buffer_bytes",
                   (json_int_t)srv_output_bytes(), "requests",
                   (json_int_t)atomic_load(&srv_stat.requests)));
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
    dreq_ok(r, json_pack("{s:i, s:I, s:o}", "goroutines", rt_num_goroutine(),
                         "waiters", (json_int_t)atomic_load(&srv_stat.waiters),
                         "objects", arr));
}
