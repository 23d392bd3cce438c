/*
 * dump.c - rt_dump: every live goroutine with its state, Go's wait reason
 * and how long it has waited, in the shape of Go's traceback headers
 * ("goroutine 7 [chan receive, 2 minutes]:").
 */
#include "rt_sched.h"

#include <time.h>

static const char *state_name(int s)
{
    switch (s) {
    case RT__G_RUNNABLE:
        return "runnable";
    case RT__G_RUNNING:
        return "running";
    case RT__G_PARKING:
    case RT__G_READY_EARLY:
        return "runnable";
    default:
        return "unknown";
    }
}

static void fmt_wait(FILE *out, int64_t ns)
{
    int64_t s = ns / 1000000000;
    if (s >= 120)
        fprintf(out, ", %lld minutes", (long long)(s / 60));
    else
        fprintf(out, ", %.3fs", (double)ns / 1e9);
}

typedef struct dump_ctx {
    FILE *out;
    int64_t now;
    int n;
} dump_ctx;

static void dump_one(rt_g *g, void *arg)
{
    dump_ctx *d = arg;
    int s = atomic_load(&g->status);
    if (s == RT__G_IDLE || s == RT__G_DEAD)
        return;
    d->n++;
    if (s == RT__G_PARKED) {
        fprintf(d->out, "goroutine %lld [%s", (long long)g->id,
                g->wait_reason ? g->wait_reason : "waiting");
        fmt_wait(d->out, d->now - g->wait_since);
        fprintf(d->out, "]:\n");
    } else {
        fprintf(d->out, "goroutine %lld [%s]:\n", (long long)g->id,
                state_name(s));
    }
    /* g->cancel is not shown: it belongs to the goroutine, which may
     * detach and free its token while the dump runs. */
    fprintf(d->out, "\n");
}

void rt_dump(FILE *out)
{
    if (!out)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    dump_ctx d = {out, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec, 0};
    rt__allg_each(dump_one, &d);
    fprintf(out, "%d goroutines, GOMAXPROCS=%d, %d threads\n", d.n,
            rt__nprocs(), rt_num_threads());
}

typedef struct info_ctx {
    void (*f)(const rt_ginfo *gi, void *arg);
    void *arg;
    int64_t now;
} info_ctx;

static void info_one(rt_g *g, void *arg)
{
    info_ctx *c = arg;
    int s = atomic_load(&g->status);
    if (s == RT__G_IDLE || s == RT__G_DEAD)
        return;
    rt_ginfo gi = {g->id, s == RT__G_PARKED, NULL, 0};
    if (gi.parked) {
        gi.wait_reason = g->wait_reason ? g->wait_reason : "waiting";
        gi.waited_ns = c->now - g->wait_since;
    }
    c->f(&gi, c->arg);
}

/* The structured twin of rt_dump, so that hosts (the daemon's stats) need
 * not parse text. */
void rt_goroutines(void (*f)(const rt_ginfo *gi, void *arg), void *arg)
{
    if (!f)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    info_ctx c = {f, arg, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec};
    rt__allg_each(info_one, &c);
}
