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
    json_t *params, *res = NULL;
    bool closed;
    int rc;

    (void)k;
    if (argc > 1 && cli_parse_int(argv[1], &cap) < 0)
        return cli_usage_error(c, "bad capacity '%s'", argv[1]);
    if (cap < 0)
        return cli_usage_error(c, "capacity must be >= 0");
    params = json_pack("{s:s, s:I, s:s}", "name", argv[0], "cap",
                       (json_int_t)cap, "type", c->type ? c->type : "any");
    if (params && c->max_deliver > 0 &&
        json_object_set_new(params, "max_deliver",
                            json_integer(c->max_deliver)))
        params = (json_decref(params), NULL);
    if (params && c->dead_letter &&
        json_object_set_new(params, "dead_letter", json_string(c->dead_letter)))
        params = (json_decref(params), NULL);
    if (!params)
        return cli_fail(c, CHAND_ENOMEM);
    rc = chand_call(c->conn, "make", params, CHAND_FOREVER, &res);
    json_decref(params);
    if (rc < 0)
        return cli_fail(c, rc);
    closed = json_is_true(json_object_get(res, "closed"));
    json_decref(res);
    if (!closed)
        return EXIT_OK;
    /* Found closed (by an earlier run): exit 1, closed, as send would. */
    fprintf(stderr,
            "%s: make: channel \"%s\" exists and is closed (drop it to "
            "start over)\n",
            cli_prog, argv[0]);
    return EXIT_CLOSED;
}

/* Returns the mode VALUE is read in: --string, --json (which for send
 * means "must be JSON": send prints nothing), else JSON-or-string. */
static cli_valmode send_mode(const cli_ctx *c)
{
    if (c->json)
        return CLI_VAL_JSON;
    return c->valmode;
}

/* Makes a new value of the len bytes at buf in mode into *v.  Returns 0,
 * or a usage error's exit code saying why (what names the text). */
static int make_value(const cli_ctx *c, const char *buf, size_t len,
                      cli_valmode mode, const char *what, json_t **v)
{
    json_error_t jerr;

    *v = NULL;
    if (mode != CLI_VAL_STRING) {
        *v = json_loadb(buf, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
                        &jerr);
        if (*v)
            return 0;
        if (mode == CLI_VAL_JSON)
            return cli_usage_error(c, "%s is not valid JSON: %s", what,
                                   jerr.text);
    }
    *v = json_stringn(buf, len);
    if (!*v)
        return cli_usage_error(c, "%s is not UTF-8 text", what);
    return 0;
}

/* Sends each line of stdin as one value, in order. */
static int send_lines(cli_ctx *c, const char *name, cli_valmode mode)
{
    char *line = NULL, what[48];
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    int rc = 0;

    while ((n = getline(&line, &cap, stdin)) >= 0) {
        json_t *v;
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        snprintf(what, sizeof what, "line %ld", lineno);
        rc = make_value(c, line, (size_t)n, mode, what, &v);
        if (rc) {
            free(line);
            return rc;
        }
        rc = chand_send(c->conn, name, v, c->timeout_ms);
        json_decref(v);
        if (rc < 0)
            break;
    }
    free(line);
    return cli_end_quiet(c, rc);
}

/* Sends the whole of c->file ("-": stdin), its bytes as they are, as one
 * value. */
static int send_file(cli_ctx *c, const char *name, cli_valmode mode)
{
    bool is_stdin = strcmp(c->file, "-") == 0;
    FILE *fp = is_stdin ? stdin : fopen(c->file, "rb");
    json_t *v;
    size_t len;
    char *buf;
    int rc;

    if (!fp)
        return cli_usage_error(c, "cannot open '%s': %s", c->file,
                               strerror(errno));
    buf = cli_read_all(fp, &len, false);
    if (!buf) {
        rc = cli_usage_error(c, "cannot read '%s'", c->file);
        goto out_close;
    }
    rc = make_value(c, buf, len, mode, is_stdin ? "stdin" : c->file, &v);
    free(buf);
    if (rc)
        goto out_close;
    rc = cli_end_quiet(c, chand_send(c->conn, name, v, c->timeout_ms));
    json_decref(v);
out_close:
    if (!is_stdin)
        fclose(fp);
    return rc;
}

int cli_h_send(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    cli_valmode mode = send_mode(c);
    json_t *v;
    int rc;

    (void)k;
    if (c->json && c->valmode == CLI_VAL_STRING)
        return cli_usage_error(c, "--string and --json exclude each other");
    if (c->file) {
        if (argc > 1)
            return cli_usage_error(c, "give VALUE or --file, not both");
        return send_file(c, argv[0], mode);
    }
    if (argc < 2)
        return cli_usage_error(c, "expected %s", k->usage);
    if (strcmp(argv[1], "-") == 0)
        return send_lines(c, argv[0], mode);
    rc = make_value(c, argv[1], strlen(argv[1]), mode, "VALUE", &v);
    if (rc)
        return rc;
    rc = chand_send(c->conn, argv[0], v, c->timeout_ms);
    json_decref(v);
    return cli_end_quiet(c, rc);
}

/* recv --make CAP: makes the channel when it is missing, so a consumer
 * may start before its producer.  A channel that exists (made by the
 * producer, perhaps in a race with us, perhaps with another capacity) is
 * fine.  Returns 0 or cli_fail(). */
static int make_missing(cli_ctx *c, const char *name)
{
    int rc;

    if (c->make_cap < 0)
        return 0;
    rc = chand_make(c->conn, name, c->make_cap, NULL);
    if (rc == CHAND_EEXISTS)
        return 0;
    return rc < 0 ? cli_fail(c, rc) : 0;
}

int cli_h_recv(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    json_t *v = NULL;
    int rc;

    (void)k;
    (void)argc;
    if (c->ack_wait_ms > 0 && !c->ack)
        return cli_usage_error(c, "--ack-wait is for --ack");
    rc = make_missing(c, argv[0]);
    if (rc)
        return rc;
    if (c->ack)
        return cli_recv_ack(c, argv[0]);
    rc = chand_recv(c->conn, argv[0], c->timeout_ms, &v);
    if (rc < 0)
        return cli_fail(c, rc);
    cli_print_flagged(c, v, "ok", rc == 1);
    json_decref(v);
    if (rc == 0 && !c->json && !c->quiet)
        fprintf(stderr, "%s: recv: channel %s is closed\n", cli_prog, argv[0]);
    return rc == 1 ? EXIT_OK : EXIT_CLOSED;
}

int cli_h_range(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    int mrc = make_missing(c, argv[0]);

    (void)k;
    (void)argc;
    if (mrc)
        return mrc;
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
    int64_t len, cap, inflight = 0;
    int rc = chand_len_inflight(c->conn, argv[0], &len, &cap, &inflight);

    (void)k;
    (void)argc;
    if (rc < 0)
        return cli_fail(c, rc);
    if (c->json)
        printf("{\"len\":%lld,\"cap\":%lld,\"inflight\":%lld}\n",
               (long long)len, (long long)cap, (long long)inflight);
    else
        printf("%lld %lld %lld\n", (long long)len, (long long)cap,
               (long long)inflight);
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
    int64_t id = 0, attempt = 0;
    int index = -1, rc, i, ret;

    (void)k;
    if (!cases)
        return cli_fail(c, CHAND_ENOMEM);
    if (c->ack_wait_ms > 0 && !c->ack) {
        free(cases);
        return cli_usage_error(c, "--ack-wait is for --ack");
    }
    for (i = 0; i < argc; i++) {
        char *a = argv[i];
        if (strncmp(a, "recv:", 5) == 0 && a[5]) {
            cases[i].dir = c->ack ? CHAND_RECV_ACK : CHAND_RECV;
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
    rc = chand_select_ack(c->conn, cases, (size_t)argc, c->dflt, c->ack_wait_ms,
                          c->timeout_ms, &index, &v, &ok, &id, &attempt);
    if (rc < 0) {
        ret = cli_fail(c, rc);
        goto out;
    }
    ret = EXIT_OK;
    if (c->json) {
        json_t *o = json_pack("{s:i}", "index", index);
        if (index >= 0 && cases[index].dir != CHAND_SEND) {
            json_object_set(o, "value", v ? v : json_null());
            json_object_set_new(o, "ok", json_boolean(ok));
        }
        if (id > 0)
            json_object_set_new(o, "delivery",
                                json_pack("{s:I, s:I}", "id", (json_int_t)id,
                                          "attempt", (json_int_t)attempt));
        cli_print_object(c, o);
        json_decref(o);
    } else if (index >= 0 && cases[index].dir != CHAND_SEND && ok) {
        printf("%d\t", index);
        cli_print_value(c, v);
        if (id > 0) {
            fflush(stdout);
            fprintf(stderr, "%lld\n", (long long)id);
        }
    } else {
        printf("%d\n", index);
    }
    /* A receive case that found its channel closed is "closed", as recv. */
    if (index >= 0 && cases[index].dir != CHAND_SEND && !ok)
        ret = EXIT_CLOSED;
out:
    for (i = 0; i < argc; i++)
        json_decref(cases[i].value);
    json_decref(v);
    free(cases);
    return ret;
}
