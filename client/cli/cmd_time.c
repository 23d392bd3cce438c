/*
 * cmd_time.c - chanctl's timer, goroutine and runtime commands: after,
 * ticker, stop, reset, afterfunc, go, stats, dump, gomaxprocs.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>

/* NAME DURATION: starts a timer with k->timer (after, ticker). */
int cli_h_timer(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    int64_t ms;
    int rc = cli_read_duration(c, argv[1], &ms);

    (void)argc;
    if (rc)
        return rc;
    return cli_end_quiet(c, k->timer(c->conn, argv[0], ms));
}

int cli_h_stop(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    int rc = chand_timer_stop(c->conn, argv[0]);

    (void)k;
    (void)argc;
    return cli_end_bool(c, rc, "stopped", EXIT_OK);
}

int cli_h_reset(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    int64_t ms;
    int rc;

    (void)k;
    (void)argc;
    rc = cli_read_duration(c, argv[1], &ms);
    if (rc)
        return rc;
    rc = chand_timer_reset(c->conn, argv[0], ms);
    return cli_end_bool(c, rc, "active", EXIT_OK);
}

/* Reads METHOD [PARAMS] into a new params object (or NULL = {}). */
static int inner_params(cli_ctx *c, int argc, char **argv, json_t **params)
{
    *params = NULL;
    if (argc < 1)
        return 0;
    *params = cli_arg_value(argv[0]);
    if (!json_is_object(*params)) {
        json_decref(*params);
        *params = NULL;
        return cli_usage_error(c, "PARAMS must be a JSON object");
    }
    return 0;
}

int cli_h_afterfunc(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    json_t *params;
    int64_t ms;
    char *timer = NULL;
    int rc;

    (void)k;
    rc = cli_read_duration(c, argv[0], &ms);
    if (rc)
        return rc;
    rc = inner_params(c, argc - 2, argv + 2, &params);
    if (rc)
        return rc;
    rc = chand_timer_afterfunc(c->conn, ms, argv[1], params, &timer);
    json_decref(params);
    if (rc < 0)
        return cli_fail(c, rc);
    if (c->json) {
        json_t *o = json_pack("{s:s}", "timer", timer);
        cli_print_object(c, o);
        json_decref(o);
    } else {
        puts(timer);
    }
    free(timer);
    return 0;
}

int cli_h_go(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    json_t *params;
    int64_t g;
    int rc = inner_params(c, argc - 1, argv + 1, &params);

    (void)k;
    if (rc)
        return rc;
    rc = chand_go(c->conn, argv[0], params, &g);
    json_decref(params);
    return cli_end_int(c, rc, "goroutine", &g);
}

int cli_h_stats(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    json_t *res = NULL;
    int rc = chand_stats(c->conn, &res);

    (void)k;
    (void)argc;
    (void)argv;
    return cli_end_object(c, rc, res);
}

int cli_h_gomaxprocs(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    int64_t n = 0, prev;
    int rc;

    (void)k;
    if (argc > 0 && (cli_parse_int(argv[0], &n) < 0 || n < 1))
        return cli_usage_error(c, "N must be an integer >= 1");
    rc = chand_gomaxprocs(c->conn, n, &prev);
    return cli_end_int(c, rc, "previous", &prev);
}
