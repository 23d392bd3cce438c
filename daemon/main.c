/*
 * main.c - the chand program: flags, then the runtime, then the server.
 *
 *   chand [--config FILE] [--test-config] [--bind ADDR] [--port N]
 *         [--port-file PATH] [--gomaxprocs N]
 *         [--log-level error|warn|info|debug] [--max-...] [--help] [--version]
 *
 * Every flag is a conf key (conf.c) shared with the config file; cfgfile.c
 * applies the file first and the flags over it.
 *
 * main wires the pieces: the server (srv_*), the service side (svc_*:
 * readiness, socket activation, reload), the metrics server, and the
 * signals, delivered through libevent on io[0]'s loop: SIGTERM/SIGINT
 * drain (every waiting request is answered with reason cancelled, then
 * the process exits 0), SIGHUP reloads the settings.
 */
#include "daemon.h"
#include "cfgfile.h"
#include "metrics.h"
#include "persist.h"
#include "service.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <event2/event.h>
#include <event2/thread.h>

/* Every connection is a descriptor: lift the soft limit to the hard one
 * (often 1024 -> 4096 or more), so max-conns is the limit that bites. */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        log_warn("cannot raise the descriptor limit");
}

static void main_stop_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    log_info("signal %d", (int)sig);
    if (!srv_draining())
        svc_stopping();
    srv_drain(arg);
}

static void main_hup_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    log_info("SIGHUP: reloading");
    svc_reload();
}

/* The signal events, on io[0]'s loop. */
static const struct {
    int sig;
    event_callback_fn fn;
} main_signals[] = {
    {SIGTERM, main_stop_cb},
    {SIGINT, main_stop_cb},
    {SIGHUP, main_hup_cb},
};
#define MAIN_NSIGNALS (sizeof main_signals / sizeof main_signals[0])

/* Serves until a drain ends: signals, metrics, the port file (which tells
 * scripts and tests that everything listens), readiness, then the loops.
 * Returns 0, or -1 with a message in err. */
static int main_serve(srv *v, const conf *c, char *err, size_t errlen)
{
    struct event *ev[MAIN_NSIGNALS] = {0};
    int rc = -1;

    for (size_t i = 0; i < MAIN_NSIGNALS; i++) {
        ev[i] = evsignal_new(srv_base(v), main_signals[i].sig,
                             main_signals[i].fn, v);
        if (!ev[i] || evsignal_add(ev[i], NULL) != 0) {
            snprintf(err, errlen, "cannot set up the signal events");
            goto out_events;
        }
    }
    if (metrics_start(srv_base(v), c, err, errlen) != 0)
        goto out_events;
    /* Before the port file, which tells that everything listens. */
    if (c->tls_port_file[0] &&
        conf_write_port_file("tls port file", c->tls_port_file, srv_tls_port(v),
                             err, errlen) != 0)
        goto out_metrics;
    if (c->port_file[0] && conf_write_port_file("port file", c->port_file,
                                                srv_port(v), err, errlen) != 0)
        goto out_metrics;
    svc_ready(srv_port(v));
    srv_run(v);
    rc = 0;

out_metrics:
    metrics_stop();
out_events:
    for (size_t i = 0; i < MAIN_NSIGNALS; i++)
        if (ev[i])
            event_free(ev[i]);
    return rc;
}

int main(int argc, char **argv)
{
    char err[512];
    rt_config rc = {0};
    conf c;
    srv *v;
    int r;

    if (argc == 2 && strcmp(argv[1], "--hash-password") == 0)
        return sec_hash_password_main();
    /* Defaults, then --config's file, then the other flags (cfgfile.c). */
    if (cfg_from_args(argc, argv, &c, &r) != 0)
        return r;
    log_set_level(c.log_level);
    if (c.repair)
        return persist_repair(&c);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    /* Both before any thread or event base exists. */
    if (evthread_use_pthreads() != 0) {
        log_error("evthread_use_pthreads failed");
        return 1;
    }
    json_object_seed(0);

    rc.gomaxprocs = c.gomaxprocs;
    rc.stack_size = 256 * 1024;
    if (rt_start(&rc) != 0) {
        log_error("cannot start the runtime");
        return 1;
    }
    if (disp_init() != 0) {
        log_error("cannot build the dispatch table");
        goto out_rt;
    }
    /* State first (recovery), then the socket: nothing is served before
     * the epoch is on disk and the state rebuilt. */
    if (persist_start(&c, err, sizeof err) != 0) {
        log_error("%s", err);
        goto out_disp;
    }
    if (sec_init(&c, err, sizeof err) != 0) {
        log_error("%s", err);
        goto out_persist;
    }
    {
        int fds[8];
        int nfds = svc_activation_fds(fds, 8);
        v = srv_new_fds(&c, fds, nfds, err, sizeof err);
    }
    if (!v) {
        log_error("%s", err);
        goto out_sec;
    }
    /* A cluster node's raft thread may have news from before the server
     * existed (its wakeups found none): drain them now. */
    srv_durable_wake();
    r = main_serve(v, &c, err, sizeof err);
    if (r != 0)
        log_error("%s", err);
    persist_quiesce();
    srv_free(v);
    persist_stop();
    sec_fini();
    disp_fini();
    if (r != 0)
        goto out_rt;
    log_info("stopped");
    rt_stop();
    return 0;

out_sec:
    sec_fini();
out_persist:
    persist_stop();
out_disp:
    disp_fini();
out_rt:
    rt_stop();
    return 1;
}
