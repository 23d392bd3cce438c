/*
 * main.c - the chand program: flags, then the runtime, then the server.
 *
 *   chand [--bind ADDR] [--port N] [--port-file PATH] [--gomaxprocs N]
 *         [--log-level error|warn|info|debug] [--max-...] [--help] [--version]
 *
 * Every flag is a conf key (conf.c), so a config file can share them.
 * SIGTERM/SIGINT drain: every waiting request is answered with reason
 * cancelled, then the process exits 0.
 */
#include "daemon.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/thread.h>

static void usage(FILE *f)
{
    conf d;
    conf_defaults(&d);
    fprintf(f,
            "usage: chand [--KEY VALUE | --KEY=VALUE]... [--help] "
            "[--version]\n"
            "Hosts a Go-style goroutine runtime and serves its channels,\n"
            "locks and the rest by name over TCP (JSON-RPC 2.0, one\n"
            "message per line; see proto/PROTOCOL.md).\n\nkeys:\n");
    conf_usage(&d, f);
}

/* Parses argv into c; returns 0, 1 (exit 0: help/version), or -1. */
static int parse_args(int argc, char **argv, conf *c)
{
    char err[256];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        char key[64];

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(a, "--version") == 0) {
            printf("chand %s (protocol %d)\n", CHAND_VERSION, PROTO_VERSION);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "chand: unexpected argument '%s'\n", a);
            return -1;
        }
        a += 2;
        const char *eq = strchr(a, '=');
        size_t klen = eq ? (size_t)(eq - a) : strlen(a);
        if (klen >= sizeof key) {
            fprintf(stderr, "chand: unknown flag '%s'\n", argv[i]);
            return -1;
        }
        memcpy(key, a, klen);
        key[klen] = '\0';
        if (eq)
            val = eq + 1;
        else if (i + 1 < argc)
            val = argv[++i];
        if (conf_set(c, key, val, err, sizeof err) != 0) {
            fprintf(stderr, "chand: %s (try --help)\n", err);
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    char err[512];
    rt_config rc = { 0 };
    conf c;
    srv *v;
    int r;

    conf_defaults(&c);
    r = parse_args(argc, argv, &c);
    if (r != 0)
        return r > 0 ? 0 : 2;
    log_set_level(c.log_level);
    signal(SIGPIPE, SIG_IGN);
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
    log_info("stopped");
    rt_stop();
    return 0;

out_rt:
    rt_stop();
    return 1;
}
