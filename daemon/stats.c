/*
 * stats.c - the one snapshot of the server's figures that runtime.stats
 * and /metrics both render, so that the two never count a thing two
 * different ways.
 */
#include "daemon.h"
#include "dlv.h"
#include "hashgate.h"
#include "persist.h"

#include <dirent.h>
#include <stdio.h>
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

void stats_take(stats_snap *sn)
{
    sn->goroutines = rt_num_goroutine();
    sn->gomaxprocs = rt_gomaxprocs(0);
    sn->numcpu = rt_num_cpu();
    sn->threads = rt_num_threads();
    sn->sessions = atomic_load(&srv_stat.sessions);
    sn->objects = atomic_load(&srv_stat.objects);
    sn->waiters = park_waiters();
    sn->held_locks = atomic_load(&srv_stat.held_locks);
    sn->requests = atomic_load(&srv_stat.requests);
    sn->open_fds = stats_open_fds();
    sn->rss_bytes = stats_rss_bytes();
    sn->output_buffer_bytes = srv_output_bytes();
    sn->memory_bytes = mem_used();
    sn->max_memory = (int64_t)srv_conf.max_memory;
    dlv_stats ds;
    dlv_stats_get(&ds);
    sn->dlv_inflight = ds.inflight;
    sn->dlv_redelivered = ds.redelivered;
    sn->dlv_dead_letters = ds.dead_letters;
    sn->dlv_dropped = ds.dropped;
    sn->draining = srv_draining();
    sn->users = atomic_load(&srv_stat.users);
    sn->tls = srv_conf.tls_port != 0 && srv_conf.tls_cert[0];
    for (int i = 0; i < SRV_SEC_N; i++)
        sn->sec[i] =
            atomic_load_explicit(&srv_stat.sec[i], memory_order_relaxed);
    hashgate_counts(&sn->hashing, &sn->hash_waiting);
    hashgate_sizes(&sn->hash_slots, &sn->hash_queue);
    persist_stats(sn);
}
