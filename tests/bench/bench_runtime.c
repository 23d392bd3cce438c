/*
 * bench_runtime.c - the runtime core's benchmarks, in the shapes of
 * ../shared/anchors/go/main_test.go so that tests/bench/run.sh can set them
 * beside Go's: spawn_wait, chan_unbuf_pingpong, chan_buf128, select2 (ns
 * per op) and parked_goroutine_rss (bytes of RSS per parked goroutine), at
 * GOMAXPROCS=2.  Each time benchmark also reports OS context switches per
 * op (getrusage), the thing that makes a runtime slow on these machines,
 * and the process's CPU time per op (all threads; spinning included).
 *
 * Output: one line per figure, "bench: <name> <value> <unit>".
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "rt.h"

static int64_t csw(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_nvcsw + ru.ru_nivcsw;
}

/* CPU time of the whole process (every thread), in ns: on a loaded
 * machine wall time per op says more about the neighbours than about us. */
static int64_t cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
           (int64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}

typedef struct bench {
    const char *name;
    void (*fn)(int64_t n);
} bench;

/* Runs fn with growing n until it takes >= 0.3 s, then once sized for
 * ~1 s, and prints ns/op and context switches/op of that last run. */
static void measure(const bench *b)
{
    int64_t n = 1000, el = 0;
    for (;;) {
        int64_t t0 = rt_now();
        b->fn(n);
        el = rt_now() - t0;
        if (el >= 300000000 || n >= ((int64_t)1 << 30))
            break;
        n *= el < 10000000 ? 10 : 2;
    }
    n = (int64_t)((double)n * 1e9 / (double)(el > 0 ? el : 1));
    if (n < 1)
        n = 1;
    int64_t c0 = csw(), u0 = cpu_ns(), t0 = rt_now();
    b->fn(n);
    el = rt_now() - t0;
    int64_t c1 = csw(), u1 = cpu_ns();
    printf("bench: %s %.1f ns/op\n", b->name, (double)el / (double)n);
    printf("bench: %s_cpu %.1f cpu-ns/op\n", b->name,
           (double)(u1 - u0) / (double)n);
    printf("bench: %s_csw %.4f csw/op\n", b->name,
           (double)(c1 - c0) / (double)n);
    fflush(stdout);
}

/* ---- spawn_wait: go func() { wg.Done() } ---- */

static void spawn_child(void *arg)
{
    rt_wg_done(arg);
}

static void b_spawn_wait(int64_t n)
{
    rt_wg *wg = rt_wg_new();
    for (int64_t i = 0; i < n; i++) {
        rt_wg_add(wg, 1);
        if (rt_go(spawn_child, wg) != 0)
            abort();
    }
    rt_wg_wait(wg, RT_FOREVER);
    rt_wg_free(wg);
}

/* ---- chan_unbuf_pingpong: one round trip over two channels ---- */

typedef struct pp {
    rt_chan *a, *c;
} pp;

static void pp_echo(void *arg)
{
    pp *p = arg;
    int64_t v;
    bool ok;
    while (rt_chan_recv(p->a, &v, &ok, RT_FOREVER) == 0 && ok)
        rt_chan_send(p->c, &v, RT_FOREVER);
    rt_chan_close(p->c);
}

static void b_pingpong(int64_t n)
{
    pp p = {rt_chan_make(sizeof(int64_t), 0), rt_chan_make(sizeof(int64_t), 0)};
    rt_go(pp_echo, &p);
    int64_t v;
    for (int64_t i = 0; i < n; i++) {
        rt_chan_send(p.a, &i, RT_FOREVER);
        rt_chan_recv(p.c, &v, NULL, RT_FOREVER);
    }
    rt_chan_close(p.a);
    bool ok = true;
    while (ok)
        rt_chan_recv(p.c, &v, &ok, RT_FOREVER);
    rt_chan_release(p.a);
    rt_chan_release(p.c);
}

/* ---- chan_buf128: producer and consumer over cap 128 ---- */

static void buf_consumer(void *arg)
{
    pp *p = arg;
    int64_t v;
    bool ok;
    while (rt_chan_recv(p->a, &v, &ok, RT_FOREVER) == 0 && ok) {
    }
    bool t = true;
    rt_chan_send(p->c, &t, RT_FOREVER);
}

static void b_buf128(int64_t n)
{
    pp p = {rt_chan_make(sizeof(int64_t), 128), rt_chan_make(sizeof(bool), 0)};
    rt_go(buf_consumer, &p);
    for (int64_t i = 0; i < n; i++)
        rt_chan_send(p.a, &i, RT_FOREVER);
    rt_chan_close(p.a);
    bool t;
    rt_chan_recv(p.c, &t, NULL, RT_FOREVER);
    rt_chan_release(p.a);
    rt_chan_release(p.c);
}

/* ---- select2: two buffered cases, one ready ---- */

static void b_select2(int64_t n)
{
    rt_chan *a = rt_chan_make(sizeof(int64_t), 1);
    rt_chan *c = rt_chan_make(sizeof(int64_t), 1);
    int64_t v;
    for (int64_t i = 0; i < n; i++) {
        rt_chan_send(i & 1 ? c : a, &i, RT_FOREVER);
        rt_select_case cs[2] = {{.dir = RT_SELECT_RECV, .chan = a, .elem = &v},
                                {.dir = RT_SELECT_RECV, .chan = c, .elem = &v}};
        rt_select(cs, 2, RT_FOREVER, NULL);
    }
    rt_chan_release(a);
    rt_chan_release(c);
}

/* ---- parked_goroutine_rss ---- */

#define NPARKED 100000

static long rss_bytes(void)
{
    long size = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    if (fscanf(f, "%ld %ld", &size, &res) != 2)
        res = 0;
    fclose(f);
    return res * sysconf(_SC_PAGESIZE);
}

static void parked_child(void *arg)
{
    rt_chan_recv(arg, NULL, NULL, RT_FOREVER);
}

static void b_parked_rss(void)
{
    rt_chan *ch = rt_chan_make(sizeof(int), 0);
    long before = rss_bytes();
    int64_t t0 = rt_now();
    for (int i = 0; i < NPARKED; i++)
        if (rt_go(parked_child, ch) != 0)
            abort();
    while (rt_num_goroutine() < NPARKED + 1)
        rt_gosched();
    /* Let every child reach its receive. */
    rt_chan *idle = rt_chan_make(sizeof(int), 0);
    rt_chan_recv(idle, NULL, NULL, rt_deadline_ms(100));
    long after = rss_bytes();
    int64_t el = rt_now() - t0;
    printf("bench: parked_goroutine_rss %.0f bytes\n",
           (double)(after - before) / NPARKED);
    printf("bench: parked_spawn %.1f ns/op\n", (double)el / NPARKED);
    rt_chan_close(ch);
    while (rt_num_goroutine() > 1)
        rt_chan_recv(idle, NULL, NULL, rt_deadline_ms(5));
    rt_chan_release(idle);
    rt_chan_release(ch);
}

static const bench benches[] = {
    {"spawn_wait", b_spawn_wait},
    {"chan_unbuf_pingpong", b_pingpong},
    {"chan_buf128", b_buf128},
    {"select2", b_select2},
};

static const char *only;

static void bench_main(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < sizeof(benches) / sizeof(benches[0]); i++)
        if (!only || strstr(benches[i].name, only))
            measure(&benches[i]);
    if (!only || strstr("parked_goroutine_rss", only))
        b_parked_rss();
}

int main(int argc, char **argv)
{
    rt_config cfg = {.gomaxprocs = 2, .stack_size = 0};
    if (argc > 1)
        only = argv[1];
    char err[4096];
    int r = rt_main(&cfg, bench_main, NULL, err, sizeof(err));
    if (r) {
        fprintf(stderr, "bench_runtime: %s\n%s\n", rt_strerror(r), err);
        return 1;
    }
    return 0;
}
