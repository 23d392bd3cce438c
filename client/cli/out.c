/*
 * out.c - what chanctl says: usage errors, failed calls and their exit
 * codes (0 ok, 1 closed / nothing there, 2 usage, 3 other server error,
 * 4 cannot connect, 124 timeout, 125 hold lost), and how results are
 * printed (JSON for values, plain text for humans, compact JSON under
 * --json).  Scripts rely on every byte of it; chanctl.1 documents it.
 */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *cli_prog = "chanctl";

int cli_usage_error(const cli_ctx *c, const char *fmt, ...)
{
    va_list ap;
    const char *name = c && c->cmdname ? c->cmdname : NULL;

    fprintf(stderr, "%s: %s%s", cli_prog, name ? name : "", name ? ": " : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s %s%s--help'.\n", cli_prog, name ? name : "",
            name ? " " : "");
    return EXIT_USAGE;
}

int cli_exit_code(int rc)
{
    switch (rc) {
    case 0:
        return EXIT_OK;
    case CHAND_ECLOSED:
        return EXIT_CLOSED;
    case CHAND_ETIMEOUT:
        return EXIT_TIMEOUT;
    case CHAND_ECONNECT:
    case CHAND_ECONN:
        return EXIT_CONNECT;
    case CHAND_EARG:
        return EXIT_USAGE;
    default:
        return EXIT_SERVER;
    }
}

int cli_fail(const cli_ctx *c, int rc)
{
    const chand_error *e = chand_last_error(c->conn);
    const char *msg =
        e && e->code == rc && e->message[0] ? e->message : chand_strerror(rc);

    if (e && e->code == rc && e->reason[0] && strcmp(e->reason, msg) != 0)
        fprintf(stderr, "%s: %s: %s (%s)\n", cli_prog, c->cmdname, msg,
                e->reason);
    else
        fprintf(stderr, "%s: %s: %s\n", cli_prog, c->cmdname, msg);
    return cli_exit_code(rc);
}

void cli_print_value(const cli_ctx *c, json_t *v)
{
    char *s;

    if (c->raw && json_is_string(v)) {
        fwrite(json_string_value(v), 1, json_string_length(v), stdout);
        fputc('\n', stdout);
        return;
    }
    s = json_dumps(v ? v : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
    if (s) {
        puts(s);
        free(s);
    }
}

void cli_print_object(const cli_ctx *c, json_t *v)
{
    char *s = json_dumps(v, c->json ? JSON_COMPACT | JSON_ENCODE_ANY
                                    : JSON_INDENT(2) | JSON_ENCODE_ANY);

    if (s) {
        puts(s);
        free(s);
    }
}

static void print_int(const char *key, int64_t v, const cli_ctx *c)
{
    if (c->json)
        printf("{\"%s\":%lld}\n", key, (long long)v);
    else
        printf("%lld\n", (long long)v);
}

static void print_bool(const char *key, bool v, const cli_ctx *c)
{
    if (c->json)
        printf("{\"%s\":%s}\n", key, v ? "true" : "false");
    else
        puts(v ? "true" : "false");
}

void cli_print_flagged(const cli_ctx *c, json_t *v, const char *key, bool flag)
{
    if (c->json) {
        json_t *o = json_pack("{s:O?, s:b}", "value", v, key, flag);
        cli_print_object(c, o);
        json_decref(o);
    } else if (flag) {
        cli_print_value(c, v);
    }
}

void cli_print_wrapped(const cli_ctx *c, const char *key, json_t *v)
{
    json_t *o = json_pack("{s:O}", key, v);

    cli_print_object(c, o);
    json_decref(o);
}

int cli_end_object(const cli_ctx *c, int rc, json_t *res)
{
    if (rc < 0)
        return cli_fail(c, rc);
    cli_print_object(c, res);
    json_decref(res);
    return 0;
}

int cli_end_int(const cli_ctx *c, int rc, const char *key, const int64_t *v)
{
    if (rc < 0)
        return cli_fail(c, rc);
    print_int(key, *v, c);
    return 0;
}

int cli_end_bool(const cli_ctx *c, int rc, const char *key, int if_false)
{
    if (rc < 0)
        return cli_fail(c, rc);
    print_bool(key, rc == 1, c);
    return rc == 1 ? EXIT_OK : if_false;
}

int cli_end_flagged(const cli_ctx *c, int rc, json_t *v, const char *key)
{
    if (rc < 0)
        return cli_fail(c, rc);
    cli_print_flagged(c, v, key, rc == 1);
    json_decref(v);
    return rc == 1 ? EXIT_OK : EXIT_CLOSED;
}

int cli_end_quiet(const cli_ctx *c, int rc)
{
    return rc < 0 ? cli_fail(c, rc) : 0;
}

int cli_read_value(const cli_ctx *c, const char *arg, json_t **v)
{
    *v = cli_arg_value(arg);
    return *v ? 0 : cli_usage_error(c, "cannot read the value");
}

int cli_read_duration(const cli_ctx *c, const char *arg, int64_t *ms)
{
    if (cli_parse_duration(arg, ms) < 0 || *ms < 0)
        return cli_usage_error(c, "bad duration '%s'", arg);
    return 0;
}
