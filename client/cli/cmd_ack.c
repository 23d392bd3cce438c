/*
 * cmd_ack.c - chanctl's acknowledged-delivery commands: recv --ack and
 * ack, nack, touch, term NAME ID (PROTOCOL.md "Acknowledged delivery").
 * `work`, which loops over deliveries running a command, is in work.c.
 */
#include "cli.h"

#include <stdio.h>

/* recv --ack: the value on stdout as recv prints it; the delivery id
 * alone on a line on stderr, where a script can take it apart from the
 * value (or all of it in one object under --json). */
int cli_recv_ack(cli_ctx *c, const char *name)
{
    json_t *v = NULL;
    int64_t id = 0, attempt = 0;
    int rc = chand_recv_ack(c->conn, name, c->ack_wait_ms, c->timeout_ms, &v,
                            &id, &attempt);

    if (rc < 0)
        return cli_fail(c, rc);
    if (c->json) {
        json_t *o = json_pack("{s:O, s:b}", "value", v, "ok", rc == 1);
        if (o && rc == 1)
            json_object_set_new(o, "delivery",
                                json_pack("{s:I, s:I}", "id", (json_int_t)id,
                                          "attempt", (json_int_t)attempt));
        if (!o) {
            json_decref(v);
            return cli_fail(c, CHAND_ENOMEM);
        }
        cli_print_object(c, o);
        json_decref(o);
    } else if (rc == 1) {
        cli_print_value(c, v);
        fflush(stdout);
        fprintf(stderr, "%lld\n", (long long)id);
    }
    json_decref(v);
    if (rc == 0 && !c->json && !c->quiet)
        fprintf(stderr, "%s: recv: channel %s is closed\n", cli_prog, name);
    return rc == 1 ? EXIT_OK : EXIT_CLOSED;
}

/* Reads the ID argument.  Returns 0 or EXIT_USAGE. */
static int read_id(const cli_ctx *c, const char *arg, int64_t *id)
{
    if (cli_parse_int(arg, id) < 0 || *id < 0)
        return cli_usage_error(c, "bad delivery id '%s'", arg);
    return 0;
}

int cli_h_ack(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    int64_t id;
    int rc = read_id(c, argv[1], &id);

    (void)k;
    (void)argc;
    return rc ? rc : cli_end_quiet(c, chand_ack(c->conn, argv[0], id));
}

int cli_h_nack(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    int64_t id;
    int rc = read_id(c, argv[1], &id);

    (void)k;
    (void)argc;
    if (rc)
        return rc;
    return cli_end_quiet(
        c, chand_nack(c->conn, argv[0], id, c->delay_ms, c->reason));
}

int cli_h_touch(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    int64_t id, granted = 0;
    int rc = read_id(c, argv[1], &id);

    (void)k;
    (void)argc;
    if (rc)
        return rc;
    rc = chand_touch(c->conn, argv[0], id, c->ack_wait_ms, &granted);
    return cli_end_int(c, rc, "ack_wait_ms", &granted);
}

int cli_h_term(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    int64_t id;
    int rc = read_id(c, argv[1], &id);

    (void)k;
    (void)argc;
    return rc ? rc
              : cli_end_quiet(c, chand_term(c->conn, argv[0], id, c->reason));
}
