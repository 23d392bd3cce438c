/*
 * main.c - the chand program: flags, then the runtime, then the server.
 *
 *   chand [--config FILE] [--test-config] [--bind ADDR] [--port N]
 *         [--port-file PATH] [--gomaxprocs N]
 *         [--log-level error|warn|info|debug] [--max-...] [--help] [--version]
 *
 * Every flag is a conf key (conf.c) shared with the config file; cfgfile.c
 * applies the file first and the flags over it.
 * SIGTERM/SIGINT drain: every waiting request is answered with reason
 * cancelled, then the process exits 0.
 */
#include "daemon.h"
#include "cfgfile.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

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

int main(int argc, char **argv)
{
    char err[512];
    rt_config rc = { 0 };
    conf c;
    srv *v;
    int r;

    /* Defaults, then --config's file, then the other flags (cfgfile.c). */
    if (cfg_from_args(argc, argv, &c, &r) != 0)
        return r;
    log_set_level(c.log_level);
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
    v = srv_new(&c, err, sizeof err);
    if (!v) {
        log_error("%s", err);
        goto out_rt;
    }
    srv_run(v);
    srv_free(v);
    disp_fini();
    log_info("stopped");
    rt_stop();
    return 0;

out_rt:
    rt_stop();
    return 1;
}
