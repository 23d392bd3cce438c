/*
 * stats.c - the one snapshot of the server's figures that runtime.stats
 * and /metrics both render, so that the two never count a thing two
 * different ways.
 */
#include "daemon.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Counts the open file descriptors (entries of /proc/self/fd). */
static int64_t stats_open_fds(void)
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

static int64_t stats_rss_bytes(void)
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

static int stats_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

typedef struct stats_parked {
    int64_t *ids;              /* goroutines the runtime reports parked */
    size_t n, cap;
    bool oom;
    int64_t count;
} stats_parked;

static void stats_count_parked(obj *o, void *arg)
{
    stats_parked *p = arg;
    pthread_mutex_lock(&o->wmu);
    for (dreq *r = o->waiters; r; r = r->wnext)
        if (r->wgoid == 0 || /* an await: queued in the runtime */
            (p->n && bsearch(&r->wgoid, p->ids, p->n, sizeof *p->ids,
                             stats_cmp_i64)))
            p->count++;
    pthread_mutex_unlock(&o->wmu);
}

/* Returns the number of requests whose goroutine the runtime shows parked.
 * A request is counted by dreq_wait_begin just before its blocking call;
 * under load its goroutine may take a while to actually park, and a
 * client that waits for "n waiters" before acting must not see it early.
 * The runtime's goroutine dump is the one view of who is parked. */
/* Collects the ids of the goroutines the runtime reports parked. */
static void stats_collect_parked(const rt_ginfo *gi, void *arg)
{
    stats_parked *p = arg;

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
static int64_t stats_parked_waiters(void)
{
    stats_parked p = { 0 };

    if (atomic_load(&srv_stat.waiters) == 0)
        return 0;
    rt_goroutines(stats_collect_parked, &p);
    if (p.oom) {
        free(p.ids);
        return atomic_load(&srv_stat.waiters);
    }
    if (p.n) /* qsort(NULL, 0) is undefined (UBSan) */
        qsort(p.ids, p.n, sizeof *p.ids, stats_cmp_i64);
    reg_foreach(NULL, stats_count_parked, &p);
    free(p.ids);
    return p.count;
}

void stats_take(stats_snap *sn)
{
    sn->goroutines = rt_num_goroutine();
    sn->gomaxprocs = rt_gomaxprocs(0);
    sn->numcpu = rt_num_cpu();
    sn->threads = rt_num_threads();
    sn->sessions = atomic_load(&srv_stat.sessions);
    sn->objects = atomic_load(&srv_stat.objects);
    sn->waiters = stats_parked_waiters();
    sn->held_locks = atomic_load(&srv_stat.held_locks);
    sn->requests = atomic_load(&srv_stat.requests);
    sn->open_fds = stats_open_fds();
    sn->rss_bytes = stats_rss_bytes();
    sn->output_buffer_bytes = srv_output_bytes();
    sn->draining = srv_draining();
}
