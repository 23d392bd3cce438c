/*
 * cmd_cluster.c - chanctl's cluster commands: cluster status, cluster add,
 * cluster remove (a replicated chand's membership; the leader answers,
 * libchand follows the redirect there).
 */
#include "cli.h"

#include <stdio.h>

/* Reads a node id argument (a positive integer) into *id. */
static int read_id(const cli_ctx *c, const char *arg, uint64_t *id)
{
    int64_t v;

    if (cli_parse_int(arg, &v) < 0 || v < 1)
        return cli_usage_error(c, "ID must be a positive integer, not '%s'",
                               arg);
    *id = (uint64_t)v;
    return 0;
}

int cli_h_cluster_status(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    json_t *res = NULL;
    int rc = chand_cluster_status(c->conn, &res);

    (void)k;
    (void)argc;
    (void)argv;
    return cli_end_object(c, rc, res);
}

int cli_h_cluster_add(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    uint64_t id = 0;
    int rc;

    (void)k;
    (void)argc;
    if ((rc = read_id(c, argv[0], &id)) != 0)
        return rc;
    return cli_end_quiet(c, chand_cluster_add(c->conn, id, argv[1]));
}

int cli_h_cluster_remove(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    uint64_t id = 0;
    int rc;

    (void)k;
    (void)argc;
    if ((rc = read_id(c, argv[0], &id)) != 0)
        return rc;
    return cli_end_quiet(c, chand_cluster_remove(c->conn, id));
}
