/*
 * bench_wal.c - the durability log's costs (daemon/wal.c): appending a
 * record (one thread, and four at once), a raw write + fdatasync as the
 * disk's floor, commits under fsync=always with 1 and with 50 waiting
 * writers (group commit), and recovery of a large log.
 *
 * Output: one line per figure, `bench: <name> <value> <unit>`.  The log
 * lives under $BENCH_WAL_DIR (default /var/tmp: a disk, not tmpfs, or the
 * fdatasync figures would mean nothing) and is removed at the end.
 * BENCH_WAL_RECOVERY_MB sizes the recovery run (default 64).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "effect.h"
#include "log.h"
#include "wal.h"

static char base[256];
static int ndirs;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "bench_wal: %s: %s\n", what, err);
    exit(1);
}

static wal *open_dir(wal_fsync pol, wal_apply_fn apply, void *arg,
                     const char *reuse)
{
    static char dir[300];
    char err[512];
    wal_opts o = {.fsync = pol};
    wal *w;

    if (reuse)
        snprintf(dir, sizeof dir, "%s", reuse);
    else
        snprintf(dir, sizeof dir, "%s/d%d", base, ndirs++);
    o.dir = dir;
    if (wal_open(&o, apply, arg, &w, err, sizeof err) != 0)
        die("wal_open", err);
    return w;
}

/* A typical record: a 64-byte value pushed onto a named channel. */
static void push_rec(eff_rec *r)
{
    static const char v[] =
        "{\"job\":\"build\",\"id\":123456,\"args\":[\"-j2\",\"all\"]}xxxxx";
    memset(r, 0, sizeof *r);
    r->type = EFF_CHAN_PUSH;
    r->u.push.name = eff_s("jobs");
    r->u.push.value = eff_s(v);
}

static void bench_append(void)
{
    wal *w = open_dir(WAL_FSYNC_NO, NULL, NULL, NULL);
    eff_rec r;
    int64_t n = 1000000, t0;

    push_rec(&r);
    t0 = now_ns();
    for (int64_t i = 0; i < n; i++) {
        wal_append(w, &r, NULL);
        if (i % 64 == 0)
            wal_flush(w);
    }
    printf("bench: wal_append %.1f ns/op\n",
           (double)(now_ns() - t0) / (double)n);
    printf("bench: wal_record_bytes %zu bytes\n", eff_size(&r));
    wal_close(w);
}

static void *append_thread(void *arg)
{
    wal *w = arg;
    eff_rec r;
    push_rec(&r);
    for (int i = 0; i < 250000; i++) {
        wal_append(w, &r, NULL);
        if (i % 64 == 0)
            wal_flush(w);
    }
    return NULL;
}

static void bench_append_parallel(void)
{
    wal *w = open_dir(WAL_FSYNC_NO, NULL, NULL, NULL);
    pthread_t t[4];
    int64_t t0 = now_ns();

    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, append_thread, w);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    printf("bench: wal_append_4threads %.1f ns/op\n",
           (double)(now_ns() - t0) / 1e6);
    wal_close(w);
}

static void bench_raw_fdatasync(void)
{
    char path[300];
    char buf[100];
    int fd, n = 200;
    int64_t t0;

    snprintf(path, sizeof path, "%s/raw", base);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        die("open", strerror(errno));
    memset(buf, 'x', sizeof buf);
    t0 = now_ns();
    for (int i = 0; i < n; i++) {
        if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf ||
            fdatasync(fd) != 0)
            die("write+fdatasync", strerror(errno));
    }
    printf("bench: raw_write_fdatasync %.1f us/op\n",
           (double)(now_ns() - t0) / n / 1e3);
    close(fd);
    unlink(path);
}

/* Waiting for durability as an I/O thread would: the callback wakes. */
typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    wal *w;
    int per_thread;
} waiter;

static void on_durable(void *arg, uint64_t lsn)
{
    waiter *wt = arg;
    (void)lsn;
    pthread_mutex_lock(&wt->mu);
    pthread_cond_broadcast(&wt->cv);
    pthread_mutex_unlock(&wt->mu);
}

static void commit_one(waiter *wt, const eff_rec *r)
{
    uint64_t lsn;
    wal_append(wt->w, r, &lsn);
    wal_flush(wt->w);
    pthread_mutex_lock(&wt->mu);
    while (wal_durable_lsn(wt->w) < lsn)
        pthread_cond_wait(&wt->cv, &wt->mu);
    pthread_mutex_unlock(&wt->mu);
}

static void *commit_thread(void *arg)
{
    waiter *wt = arg;
    eff_rec r;
    push_rec(&r);
    for (int i = 0; i < wt->per_thread; i++)
        commit_one(wt, &r);
    return NULL;
}

static void bench_always(int clients, int per_client)
{
    waiter wt = {.per_thread = per_client};
    pthread_t *t = calloc((size_t)clients, sizeof *t);
    wal_stats st;
    int64_t t0, dt;
    double total = (double)clients * per_client;

    pthread_mutex_init(&wt.mu, NULL);
    pthread_cond_init(&wt.cv, NULL);
    wt.w = open_dir(WAL_FSYNC_ALWAYS, NULL, NULL, NULL);
    wal_on_durable(wt.w, on_durable, &wt);
    t0 = now_ns();
    for (int i = 0; i < clients; i++)
        pthread_create(&t[i], NULL, commit_thread, &wt);
    for (int i = 0; i < clients; i++)
        pthread_join(t[i], NULL);
    dt = now_ns() - t0;
    wal_stats_get(wt.w, &st);
    printf("bench: wal_always_c%d %.0f commits/s\n", clients,
           total / ((double)dt / 1e9));
    printf("bench: wal_always_c%d_records_per_fsync %.1f records\n", clients,
           total / (double)(st.fsyncs ? st.fsyncs : 1));
    wal_close(wt.w);
    pthread_mutex_destroy(&wt.mu);
    pthread_cond_destroy(&wt.cv);
    free(t);
}

static int count_apply(void *arg, const eff_rec *r, int from_snapshot)
{
    (void)r;
    (void)from_snapshot;
    (*(uint64_t *)arg)++;
    return 0;
}

static void bench_recovery(void)
{
    const char *e = getenv("BENCH_WAL_RECOVERY_MB");
    uint64_t mb = e ? strtoull(e, NULL, 10) : 64, n = 0;
    wal *w = open_dir(WAL_FSYNC_NO, NULL, NULL, NULL);
    char dir[300];
    eff_rec r;
    wal_stats st;

    snprintf(dir, sizeof dir, "%s/d%d", base, ndirs - 1);
    push_rec(&r);
    for (uint64_t bytes = 0; bytes < mb << 20; bytes += eff_size(&r)) {
        wal_append(w, &r, NULL);
        if (++n % 4096 == 0)
            wal_flush(w);
    }
    wal_close(w);
    n = 0;
    w = open_dir(WAL_FSYNC_NO, count_apply, &n, dir);
    wal_stats_get(w, &st);
    printf("bench: wal_recovery_%" PRIu64 "MiB %.1f ms\n", mb,
           (double)st.recovery_ns / 1e6);
    printf("bench: wal_recovery_rate %.0f MiB/s\n",
           (double)st.log_bytes / (1 << 20) / ((double)st.recovery_ns / 1e9));
    printf("bench: wal_recovery_records %.0f records/s\n",
           (double)n / ((double)st.recovery_ns / 1e9));
    wal_close(w);
}

int main(void)
{
    const char *d = getenv("BENCH_WAL_DIR");
    char cmd[300];

    log_set_level(LOG_LVL_WARN);
    snprintf(base, sizeof base, "%s/bench_wal.XXXXXX", d ? d : "/var/tmp");
    if (!mkdtemp(base))
        die("mkdtemp", strerror(errno));
    bench_append();
    bench_append_parallel();
    bench_raw_fdatasync();
    bench_always(1, 200);
    bench_always(50, 40);
    bench_recovery();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_wal: could not remove %s\n", base);
    return 0;
}
