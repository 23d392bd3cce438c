/*
 * server.c - server-wide state: the settings in force, the counters that
 * runtime.stats and /metrics report, and the drain flag.  It calls nothing
 * else in the daemon, so every module may use it without a cycle.
 */
#include "daemon.h"

srv_stats srv_stat;
conf srv_conf;

static _Atomic bool srv_drain_flag;

bool srv_draining(void)
{
    return atomic_load(&srv_drain_flag);
}

bool srv__set_draining(void)
{
    return !atomic_exchange(&srv_drain_flag, true);
}

void srv_count_answer(const proto_method *m, bool ok)
{
    if (m && m->id >= 0 && m->id < SRV_MAX_METHODS)
        atomic_fetch_add_explicit(&srv_stat.answers[m->id][ok ? 0 : 1], 1,
                                  memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&srv_stat.answers_invalid[ok ? 0 : 1], 1,
                                  memory_order_relaxed);
}

void srv_count_sec(srv_sec_event ev)
{
    if (ev >= 0 && ev < SRV_SEC_N)
        atomic_fetch_add_explicit(&srv_stat.sec[ev], 1, memory_order_relaxed);
}

void srv_count_bytes_in(size_t n)
{
    atomic_fetch_add_explicit(&srv_stat.bytes_in, n, memory_order_relaxed);
}

void srv_count_bytes_out(size_t n)
{
    atomic_fetch_add_explicit(&srv_stat.bytes_out, n, memory_order_relaxed);
}
