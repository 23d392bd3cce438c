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
    case RT__G_RUNNABLE: return "runnable";
    case RT__G_RUNNING: return "running";
    case RT__G_PARKING:
    case RT__G_READY_EARLY: return "runnable";
    default: return "unknown";
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

void rt_dump(FILE *out)
{
    if (!out)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    int n = 0;
    rt__allg_lock();
    for (rt_g *g = rt__allg_head(); g; g = g->allnext) {
        int s = atomic_load(&g->status);
        if (s == RT__G_IDLE || s == RT__G_DEAD)
            continue;
        n++;
        if (s == RT__G_PARKED) {
            fprintf(out, "goroutine %lld [%s", (long long)g->id,
                    g->wait_reason ? g->wait_reason : "waiting");
            fmt_wait(out, now - g->wait_since);
            fprintf(out, "]:\n");
        } else {
            fprintf(out, "goroutine %lld [%s]:\n", (long long)g->id,
                    state_name(s));
        }
        if (g->cancel)
            fprintf(out, "\tcancel token %p%s\n", (void *)g->cancel,
                    rt_cancel_fired(g->cancel) ? " (fired)" : "");
        fprintf(out, "\n");
    }
    rt__allg_unlock();
    fprintf(out, "%d goroutines, GOMAXPROCS=%d, %d threads\n", n,
            rt__nprocs(), rt_num_threads());
}
