/*
 * cmd_chan.c - chanctl's session and channel commands: ping, hello, call,
 * make, send, recv, range, len, list, select, and the commands that take
 * only a name (close, drop, cond signal, ...).
 */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

int cli_h_ping(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    int rc = chand_ping(c->conn);

    (void)k;
    (void)argc;
    (void)argv;
    if (rc < 0)
        return cli_fail(c, rc);
    if (c->json)
        puts("{}");
    else
        puts("pong");
    return 0;
}

int cli_h_hello(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    json_t *res = NULL;
    int rc = chand_hello(c->conn, &res);

    (void)k;
    (void)argc;
    (void)argv;
    return cli_end_object(c, rc, res);
}

int cli_h_call(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    json_t *params = NULL, *res = NULL;
    int rc;

    (void)k;
    if (argc > 1) {
        params = cli_arg_value(argv[1]);
        if (!json_is_object(params)) {
            json_decref(params);
            return cli_usage_error(c, "PARAMS must be a JSON object");
        }
    }
    rc = chand_call(c->conn, argv[0], params, c->timeout_ms, &res);
    json_decref(params);
    return cli_end_object(c, rc, res);
}

int cli_h_make(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    int64_t cap = c->cap;

    (void)k;
    if (argc > 1 && cli_parse_int(argv[1], &cap) < 0)
        return cli_usage_error(c, "bad capacity '%s'", argv[1]);
    if (cap < 0)
        return cli_usage_error(c, "capacity must be >= 0");
    return cli_end_quiet(c, chand_make(c->conn, argv[0], cap, c->type));
}

/* Sends each line of stdin as one value, in order. */
static int send_lines(cli_ctx *c, const char *name)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;

    while ((n = getline(&line, &cap, stdin)) >= 0) {
        json_t *v;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        v = cli_text_value(line, CLI_VAL_AUTO);
        if (!v) {
            rc = CHAND_ENOMEM;
            break;
        }
        rc = chand_send(c->conn, name, v, c->timeout_ms);
        json_decref(v);
        if (rc < 0)
            break;
    }
    free(line);
    return cli_end_quiet(c, rc);
}

int cli_h_send(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    json_t *v;
    int rc;

    (void)k;
    (void)argc;
    if (strcmp(argv[1], "-") == 0)
        return send_lines(c, argv[0]);
    v = cli_text_value(argv[1], CLI_VAL_AUTO);
    if (!v)
        return cli_usage_error(c, "cannot make a value of '%s'", argv[1]);
    rc = chand_send(c->conn, argv[0], v, c->timeout_ms);
    json_decref(v);
    return cli_end_quiet(c, rc);
}

int cli_h_recv(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    json_t *v = NULL;
    int rc = chand_recv(c->conn, argv[0], c->timeout_ms, &v);

    (void)k;
    (void)argc;
    if (rc < 0)
        return cli_fail(c, rc);
    cli_print_flagged(c, v, "ok", rc == 1);
    json_decref(v);
    if (rc == 0 && !c->json)
        fprintf(stderr, "%s: recv: channel %s is closed\n", cli_prog, argv[0]);
    return rc == 1 ? EXIT_OK : EXIT_CLOSED;
}

int cli_h_range(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    (void)k;
    (void)argc;
    for (;;) {
        json_t *v = NULL;
        int rc = chand_recv(c->conn, argv[0], c->timeout_ms, &v);

        if (rc < 0)
            return cli_fail(c, rc);
        if (rc == 0) {
            json_decref(v);
            return EXIT_OK; /* range ends when the channel is closed */
        }
        cli_print_value(c, v);
        json_decref(v);
        /* A consumer downstream in a pipe sees each value at once; one
         * that went away (`| head -1`) must stop us before we take more
         * values off the channel for nobody. */
        if (fflush(stdout) != 0 || ferror(stdout)) {
            if (errno == EPIPE)
                return 128 + SIGPIPE; /* as if killed by it, quietly */
            fprintf(stderr, "%s: range: stdout: %s\n", cli_prog,
                    strerror(errno));
            return EXIT_SERVER;
        }
    }
}

/* A command that takes only an object name and answers nothing but
 * success: close, drop, cond signal, cond broadcast, map clear. */
int cli_h_byname(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    (void)argc;
    return cli_end_quiet(c, k->byname(c->conn, argv[0]));
}

int cli_h_len(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    int64_t len, cap;
    int rc = chand_len(c->conn, argv[0], &len, &cap);

    (void)k;
    (void)argc;
    if (rc < 0)
        return cli_fail(c, rc);
    if (c->json)
        printf("{\"len\":%lld,\"cap\":%lld}\n", (long long)len, (long long)cap);
    else
        printf("%lld %lld\n", (long long)len, (long long)cap);
    return 0;
}

int cli_h_list(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    json_t *objs, *o;
    size_t i;
    int rc = chand_list(c->conn, argc ? argv[0] : NULL, &objs);

    (void)k;
    if (rc < 0)
        return cli_fail(c, rc);
    if (c->json) {
        cli_print_wrapped(c, "objects", objs);
    } else {
        /* One object a line: name, type, then what else the server says. */
        json_array_foreach(objs, i, o)
        {
            json_t *rest = json_copy(o);
            const char *name = json_string_value(json_object_get(o, "name"));
            const char *type = json_string_value(json_object_get(o, "type"));
            char *s;

            json_object_del(rest, "name");
            json_object_del(rest, "type");
            s = json_dumps(rest, JSON_COMPACT | JSON_SORT_KEYS);
            printf("%s\t%s\t%s\n", name ? name : "?", type ? type : "?",
                   s ? s : "");
            free(s);
            json_decref(rest);
        }
    }
    json_decref(objs);
    return 0;
}

int cli_h_select(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    chand_case *cases = calloc((size_t)argc, sizeof *cases);
    json_t *v = NULL;
    bool ok = false;
    int index = -1, rc, i, ret;

    (void)k;
    if (!cases)
        return cli_fail(c, CHAND_ENOMEM);
    for (i = 0; i < argc; i++) {
        char *a = argv[i];
        if (strncmp(a, "recv:", 5) == 0 && a[5]) {
            cases[i].dir = CHAND_RECV;
            cases[i].name = a + 5;
        } else if (strncmp(a, "send:", 5) == 0 && strchr(a + 5, '=') &&
                   a[5] != '=') {
            char *eq = strchr(a + 5, '=');
            *eq = '\0';
            cases[i].dir = CHAND_SEND;
            cases[i].name = a + 5;
            cases[i].value = cli_arg_value(eq + 1);
            if (!cases[i].value) {
                ret = cli_usage_error(c, "bad value in '%s'", a);
                goto out;
            }
        } else {
            ret = cli_usage_error(c,
                                  "bad case '%s' (recv:NAME or "
                                  "send:NAME=VALUE)",
                                  a);
            goto out;
        }
    }
    rc = chand_select(c->conn, cases, (size_t)argc, c->dflt, c->timeout_ms,
                      &index, &v, &ok);
    if (rc < 0) {
        ret = cli_fail(c, rc);
        goto out;
    }
    ret = EXIT_OK;
    if (c->json) {
        json_t *o = json_pack("{s:i}", "index", index);
        if (index >= 0 && cases[index].dir == CHAND_RECV) {
            json_object_set(o, "value", v ? v : json_null());
            json_object_set_new(o, "ok", json_boolean(ok));
        }
        cli_print_object(c, o);
        json_decref(o);
    } else if (index >= 0 && cases[index].dir == CHAND_RECV && ok) {
        printf("%d\t", index);
        cli_print_value(c, v);
    } else {
        printf("%d\n", index);
    }
    /* A receive case that found its channel closed is "closed", as recv. */
    if (index >= 0 && cases[index].dir == CHAND_RECV && !ok)
        ret = EXIT_CLOSED;
out:
    for (i = 0; i < argc; i++)
        json_decref(cases[i].value);
    json_decref(v);
    free(cases);
    return ret;
}
