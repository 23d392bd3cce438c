/*
 * bench_sync.c - benchmarks of the runtime's sync package and timers, in
 * the shapes of the Go benchmarks in the anchors (main_test.go), at
 * GOMAXPROCS=2.  "Parallel" ones run one goroutine per P doing N/2
 * operations each (Go's RunParallel), and report wall time / N.
 *
 * Output: one line per benchmark, `bench: <name> <value> <unit>`.
 * Each benchmark doubles N until a run takes at least BENCH_MIN_NS, then
 * reports that run (as Go's testing package does, roughly).
 * BENCH_FILTER=substring runs only the matching benchmarks.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

#define BENCH_MIN_NS 300000000LL /* 0.3 s per reported run */
#define NPROCS 2

typedef struct bench {
    const char *name;
    /* Runs n operations; returns elapsed ns (the bench times itself so
     * that set-up and tear-down stay outside). */
    int64_t (*run)(int64_t n);
    int64_t max_n;
} bench;

/* ---- running n ops split over one goroutine per P ---- */

typedef struct par {
    void (*body)(struct par *p, int64_t n);
    int64_t n;
    rt_wg *start, *done;
    _Atomic int ready;
    void *ctx;
} par;

static void par_worker(void *arg)
{
    par *p = arg;
    atomic_fetch_add(&p->ready, 1);
    rt_wg_wait(p->start, RT_FOREVER);
    p->body(p, p->n / NPROCS);
    rt_wg_done(p->done);
}

/* Starts NPROCS workers, releases them together, returns the wall time
 * until the last one finished. */
static int64_t par_run(void (*body)(par *, int64_t), int64_t n, void *ctx)
{
    par p = {.body = body, .n = n, .ctx = ctx};
    p.start = rt_wg_new();
    p.done = rt_wg_new();
    rt_wg_add(p.start, 1);
    rt_wg_add(p.done, NPROCS);
    for (int i = 0; i < NPROCS; i++)
        rt_go(par_worker, &p);
    while (atomic_load(&p.ready) < NPROCS)
        rt_sleep(100000);
    int64_t t0 = rt_now();
    rt_wg_done(p.start);
    rt_wg_wait(p.done, RT_FOREVER);
    int64_t dt = rt_now() - t0;
    rt_wg_free(p.start);
    rt_wg_free(p.done);
    return dt;
}

/* ---- Mutex ---- */

static long shared_n;

static void mutex_body(par *p, int64_t n)
{
    rt_mutex *m = p->ctx;
    for (int64_t i = 0; i < n; i++) {
        rt_mutex_lock(m, RT_FOREVER);
        shared_n++;
        rt_mutex_unlock(m);
    }
}

static int64_t b_mutex_contended(int64_t n)
{
    rt_mutex *m = rt_mutex_new();
    int64_t dt = par_run(mutex_body, n, m);
    rt_mutex_free(m);
    return dt;
}

/* ---- RWMutex: RLock/RUnlock, a Lock every 100 ops ---- */

static void rw_body(par *p, int64_t n)
{
    rt_rwmutex *rw = p->ctx;
    for (int64_t i = 1; i <= n; i++) {
        if (i % 100 == 0) {
            rt_rwmutex_lock(rw, RT_FOREVER);
            shared_n++;
            rt_rwmutex_unlock(rw);
        } else {
            rt_rwmutex_rlock(rw, RT_FOREVER);
            __asm__ __volatile__("" ::"r"(shared_n));
            rt_rwmutex_runlock(rw);
        }
    }
}

static int64_t b_rwmutex_read_mostly(int64_t n)
{
    rt_rwmutex *rw = rt_rwmutex_new();
    int64_t dt = par_run(rw_body, n, rw);
    rt_rwmutex_free(rw);
    return dt;
}

/* ---- WaitGroup: Add(1), Done, Wait in one goroutine ---- */

static int64_t b_wg_add_done_wait(int64_t n)
{
    rt_wg *wg = rt_wg_new();
    int64_t t0 = rt_now();
    for (int64_t i = 0; i < n; i++) {
        rt_wg_add(wg, 1);
        rt_wg_done(wg);
        rt_wg_wait(wg, RT_FOREVER);
    }
    int64_t dt = rt_now() - t0;
    rt_wg_free(wg);
    return dt;
}

/* ---- Map: Load of one of 1000 present keys ---- */

static void map_body(par *p, int64_t n)
{
    rt_map *m = p->ctx;
    int k = 0;
    for (int64_t i = 0; i < n; i++) {
        void *v;
        rt_map_load(m, &k, sizeof(k), &v);
        if (++k == 1000)
            k = 0;
    }
}

static int64_t b_map_load_read_mostly(int64_t n)
{
    rt_map *m = rt_map_new(NULL);
    for (int k = 0; k < 1000; k++)
        rt_map_store(m, &k, sizeof(k), (void *)(intptr_t)(k + 1));
    int64_t dt = par_run(map_body, n, m);
    rt_map_free(m);
    return dt;
}

/* ---- Pool: Get then Put ---- */

static void *pool_new64(void *arg)
{
    (void)arg;
    return calloc(1, 64);
}

static void pool_body(par *p, int64_t n)
{
    rt_pool *pool = p->ctx;
    for (int64_t i = 0; i < n; i++)
        rt_pool_put(pool, rt_pool_get(pool));
}

static int64_t b_pool_get_put(int64_t n)
{
    rt_pool *pool = rt_pool_new(pool_new64, NULL);
    int64_t dt = par_run(pool_body, n, pool);
    rt_pool_free(pool, free);
    return dt;
}

/* ---- Timer: start and stop before it fires ---- */

static int64_t b_timer_start_stop(int64_t n)
{
    int64_t t0 = rt_now();
    for (int64_t i = 0; i < n; i++) {
        rt_timer *t = rt_timer_new(3600LL * 1000000000LL);
        rt_timer_stop(t);
        rt_timer_free(t); /* Go's garbage collector does this part */
    }
    return rt_now() - t0;
}

/* ---- 100k AfterFuncs of 1..100 ms; ns per timer until all fired ---- */

static void wg_done_fn(void *arg)
{
    rt_wg_done(arg);
}

static int64_t b_after_fire_100k(int64_t n)
{
    rt_timer **t = malloc(100000 * sizeof(*t));
    rt_wg *wg = rt_wg_new();
    int64_t total = 0;
    static bool warm;
    for (int64_t r = warm ? 0 : -1; r < n; r++) {
        int64_t t0 = rt_now();
        rt_wg_add(wg, 100000);
        for (int j = 0; j < 100000; j++)
            t[j] = rt_after_func((1 + j % 100) * 1000000LL, wg_done_fn, wg);
        rt_wg_wait(wg, RT_FOREVER);
        if (r >= 0)
            total += rt_now() - t0;
        warm = true;
        for (int j = 0; j < 100000; j++)
            rt_timer_free(t[j]);
    }
    rt_wg_free(wg);
    free(t);
    /* Reported per timer: scale so that value = total / (n * 100000). */
    return total / 100000;
}

static const bench benches[] = {
    {"mutex_contended", b_mutex_contended, 1LL << 30},
    {"rwmutex_read_mostly", b_rwmutex_read_mostly, 1LL << 30},
    {"wg_add_done_wait", b_wg_add_done_wait, 1LL << 30},
    {"map_load_read_mostly", b_map_load_read_mostly, 1LL << 30},
    {"pool_get_put", b_pool_get_put, 1LL << 30},
    {"timer_start_stop", b_timer_start_stop, 1LL << 30},
    /* A first, unreported round pays for creating the goroutine stacks,
     * as Go's first b.N=1 run does. */
    {"after_fire_100k", b_after_fire_100k, 3},
};

static void bench_main(void *arg)
{
    const char *filter = arg;
    for (size_t i = 0; i < sizeof(benches) / sizeof(benches[0]); i++) {
        const bench *b = &benches[i];
        if (filter && !strstr(b->name, filter))
            continue;
        int64_t n = 1000, dt = 0;
        if (b->max_n < n)
            n = b->max_n;
        for (;;) {
            dt = b->run(n);
            if (dt >= BENCH_MIN_NS || n >= b->max_n)
                break;
            /* Aim straight for the target, as Go's predictN does. */
            int64_t want = dt > 0 ? n * (BENCH_MIN_NS * 12 / 10) / dt : n * 100;
            if (want > n * 100)
                want = n * 100;
            if (want <= n)
                want = n * 2;
            n = want < b->max_n ? want : b->max_n;
        }
        const char *unit =
            strcmp(b->name, "after_fire_100k") == 0 ? "ns/timer" : "ns/op";
        printf("bench: %s %.1f %s\n", b->name, (double)dt / (double)n, unit);
        fflush(stdout);
    }
}

int main(int argc, char **argv)
{
    const char *filter = getenv("BENCH_FILTER");
    if (argc > 1)
        filter = argv[1];
    rt_config cfg = {.gomaxprocs = NPROCS};
    char err[4096] = "";
    int r = rt_main(&cfg, bench_main, (void *)filter, err, sizeof(err));
    if (r != 0) {
        fprintf(stderr, "bench_sync: %s\n%s\n", rt_strerror(r), err);
        return 1;
    }
    return 0;
}
