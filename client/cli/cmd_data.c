/*
 * cmd_data.c - chanctl's shared-state commands: Map and the int64
 * atomics.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

int cli_h_map_store(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    json_t *v;
    int rc = cli_read_value(c, argv[2], &v);

    (void)k;
    (void)argc;
    if (rc)
        return rc;
    rc = chand_map_store(c->conn, argv[0], argv[1], v);
    json_decref(v);
    return cli_end_quiet(c, rc);
}

int cli_h_map_load(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    json_t *v = NULL;
    int rc = chand_map_load(c->conn, argv[0], argv[1], &v);

    (void)k;
    (void)argc;
    return cli_end_flagged(c, rc, v, "ok");
}

int cli_h_map_delete(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    (void)k;
    (void)argc;
    return cli_end_quiet(c, chand_map_delete(c->conn, argv[0], argv[1]));
}

/* NAME KEY VALUE that stores VALUE and answers the value it found (load-
 * or-store, swap).  Under --json prints {k->key: found, "loaded": bool};
 * else prints the value found when one was loaded, and for load-or-store
 * (k->key "value") always. */
int cli_h_map_xchg(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    json_t *v, *out = NULL;
    bool always = strcmp(k->key, "value") == 0;
    int rc = cli_read_value(c, argv[2], &v);

    (void)argc;
    if (rc)
        return rc;
    rc = k->xchg(c->conn, argv[0], argv[1], v, &out);
    json_decref(v);
    if (rc < 0)
        return cli_fail(c, rc);
    if (c->json) {
        json_t *o = json_pack("{s:O?, s:b}", k->key, out, "loaded", rc == 1);
        cli_print_object(c, o);
        json_decref(o);
    } else if (always || rc == 1) {
        cli_print_value(c, out);
    }
    json_decref(out);
    return 0;
}

int cli_h_map_cas(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    json_t *old = cli_arg_value(argv[2]), *nv = cli_arg_value(argv[3]);
    int rc;

    (void)k;
    (void)argc;
    if (!old || !nv) {
        json_decref(old);
        json_decref(nv);
        return cli_usage_error(c, "cannot read the values");
    }
    rc = chand_map_compare_and_swap(c->conn, argv[0], argv[1], old, nv);
    json_decref(old);
    json_decref(nv);
    return cli_end_bool(c, rc, "swapped", EXIT_CLOSED);
}

int cli_h_map_cad(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    json_t *old;
    int rc = cli_read_value(c, argv[2], &old);

    (void)k;
    (void)argc;
    if (rc)
        return rc;
    rc = chand_map_compare_and_delete(c->conn, argv[0], argv[1], old);
    json_decref(old);
    return cli_end_bool(c, rc, "deleted", EXIT_CLOSED);
}

int cli_h_map_load_and_delete(cli_ctx *c, const cli_cmd *k, int argc,
                              char **argv)
{
    json_t *v = NULL;
    int rc = chand_map_load_and_delete(c->conn, argv[0], argv[1], &v);

    (void)k;
    (void)argc;
    return cli_end_flagged(c, rc, v, "loaded");
}

int cli_h_map_range(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    json_t *entries, *v;
    const char *key;
    int rc = chand_map_range(c->conn, argv[0], &entries);

    (void)k;
    (void)argc;
    if (rc < 0)
        return cli_fail(c, rc);
    if (c->json) {
        cli_print_wrapped(c, "entries", entries);
    } else {
        json_object_foreach(entries, key, v)
        {
            printf("%s\t", key);
            cli_print_value(c, v);
        }
    }
    json_decref(entries);
    return 0;
}

int cli_h_map_len(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    int64_t len;
    int rc = chand_map_len(c->conn, argv[0], &len);

    (void)k;
    (void)argc;
    return cli_end_int(c, rc, "len", &len);
}

int cli_h_atomic_load(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    int64_t v;
    int rc = chand_atomic_load(c->conn, argv[0], &v);

    (void)k;
    (void)argc;
    return cli_end_int(c, rc, "value", &v);
}

int cli_h_atomic_store(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    int64_t v;

    (void)k;
    (void)argc;
    if (cli_parse_int(argv[1], &v) < 0)
        return cli_usage_error(c, "bad integer '%s'", argv[1]);
    return cli_end_quiet(c, chand_atomic_store(c->conn, argv[0], v));
}

int cli_h_atomic_add(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    int64_t delta = 1, v;
    int rc;

    (void)k;
    if (argc > 1 && cli_parse_int(argv[1], &delta) < 0)
        return cli_usage_error(c, "bad integer '%s'", argv[1]);
    rc = chand_atomic_add(c->conn, argv[0], delta, &v);
    return cli_end_int(c, rc, "value", &v);
}

int cli_h_atomic_swap(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    int64_t v, old;
    int rc;

    (void)k;
    (void)argc;
    if (cli_parse_int(argv[1], &v) < 0)
        return cli_usage_error(c, "bad integer '%s'", argv[1]);
    rc = chand_atomic_swap(c->conn, argv[0], v, &old);
    return cli_end_int(c, rc, "old", &old);
}

int cli_h_atomic_cas(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    int64_t old, nv;
    int rc;

    (void)k;
    (void)argc;
    if (cli_parse_int(argv[1], &old) < 0 || cli_parse_int(argv[2], &nv) < 0)
        return cli_usage_error(c, "OLD and NEW must be integers");
    rc = chand_atomic_compare_and_swap(c->conn, argv[0], old, nv);
    return cli_end_bool(c, rc, "swapped", EXIT_CLOSED);
}
