/*
 * dump.c - `chanctl dump` as a person reads it: runtime.dump's JSON drawn
 * as a tree, like a goroutine dump (each object with its length, its
 * holders with tokens and leases, its waiters with their session, what
 * they wait for and for how long); --json keeps the server's form.  The
 * one-line state of an object, for `watch`, is drawn here too.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cli_fmt_ms(int64_t ms, char *buf, size_t n)
{
    if (ms < 0)
        snprintf(buf, n, "?");
    else if (ms < 1000)
        snprintf(buf, n, "%lldms", (long long)ms);
    else if (ms < 60000)
        snprintf(buf, n, "%lld.%03llds", (long long)(ms / 1000),
                 (long long)(ms % 1000));
    else if (ms < 3600000)
        snprintf(buf, n, "%lldm%llds", (long long)(ms / 60000),
                 (long long)(ms % 60000 / 1000));
    else
        snprintf(buf, n, "%lldh%lldm%llds", (long long)(ms / 3600000),
                 (long long)(ms % 3600000 / 60000),
                 (long long)(ms % 60000 / 1000));
    /* 1.500s reads better as 1.5s, as Go prints it. */
    if (ms >= 1000 && ms < 60000) {
        char *s = strchr(buf, 's'), *p = s - 1;
        while (*p == '0')
            p--;
        if (*p == '.')
            p--;
        memmove(p + 1, s, strlen(s) + 1);
    }
}

static int64_t get_int(json_t *o, const char *key, int64_t dflt)
{
    json_t *v = json_object_get(o, key);

    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

/* The attributes of o other than name, type, holders, waiters and ops, as
 * "k v, k v": a channel's "len 2/10" first, then the rest in key order,
 * so that a field the server adds later shows without a change here. */
static void attrs(json_t *o, char *buf, size_t n)
{
    const char *type = json_string_value(json_object_get(o, "type"));
    bool chan = type && strcmp(type, "chan") == 0;
    size_t len = 0;
    const char **keys;
    size_t nkeys = 0, i;
    const char *k;
    json_t *v;

    buf[0] = '\0';
    if (chan)
        len += (size_t)snprintf(buf, n, "len %lld/%lld",
                                (long long)get_int(o, "len", 0),
                                (long long)get_int(o, "cap", 0));
    keys = calloc(json_object_size(o) + 1, sizeof *keys);
    if (!keys)
        return;
    json_object_foreach(o, k, v)
    {
        /* ops is a running count (top's rates), not a state: watch
         * would print a line for every request. */
        if (strcmp(k, "name") == 0 || strcmp(k, "type") == 0 ||
            strcmp(k, "holders") == 0 || strcmp(k, "waiters") == 0 ||
            strcmp(k, "ops") == 0 ||
            (chan && (strcmp(k, "len") == 0 || strcmp(k, "cap") == 0)))
            continue;
        /* Deliveries in flight (acknowledged receives) show only when
         * there are some, as false flags do not show. */
        if (chan && strcmp(k, "inflight") == 0 && get_int(o, k, 0) == 0)
            continue;
        keys[nkeys++] = k;
    }
    for (i = 1; i < nkeys; i++)
        for (size_t j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
            const char *t = keys[j];
            keys[j] = keys[j - 1];
            keys[j - 1] = t;
        }
    for (i = 0; i < nkeys && len < n; i++) {
        char *s;
        v = json_object_get(o, keys[i]);
        if (json_is_true(v)) {
            s = strdup(keys[i]); /* "closed", "locked", "done" */
        } else if (json_is_false(v)) {
            continue;
        } else {
            char *j = json_is_string(v)
                          ? strdup(json_string_value(v))
                          : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            s = NULL;
            if (j && asprintf(&s, "%s %s", keys[i], j) < 0)
                s = NULL;
            free(j);
        }
        if (s)
            len += (size_t)snprintf(buf + len, n - len, "%s%s", len ? ", " : "",
                                    s);
        free(s);
    }
    free(keys);
}

void cli_dump_object(FILE *fp, json_t *o)
{
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *type = json_string_value(json_object_get(o, "type"));
    json_t *hs = json_object_get(o, "holders");
    json_t *ws = json_object_get(o, "waiters");
    json_t *h;
    char a[512], t1[32], t2[32];
    size_t i;

    attrs(o, a, sizeof a);
    fprintf(fp, "%s %s%s%s%s\n", type ? type : "?", name ? name : "?",
            a[0] ? " (" : "", a, a[0] ? ")" : "");
    json_array_foreach(hs, i, h)
    {
        int64_t lease = get_int(h, "lease_ms", -1);
        json_t *wr = json_object_get(h, "write");

        cli_fmt_ms(get_int(h, "held_ms", -1), t1, sizeof t1);
        fprintf(fp, "    held by session %lld: token %lld, %sfor %s",
                (long long)get_int(h, "session", -1),
                (long long)get_int(h, "token", -1),
                json_is_boolean(wr) ? (json_is_true(wr) ? "write, " : "read, ")
                                    : "",
                t1);
        if (lease >= 0) {
            cli_fmt_ms(lease, t2, sizeof t2);
            fprintf(fp, ", lease %s", t2);
        }
        fputc('\n', fp);
    }
    json_array_foreach(ws, i, h)
    {
        const char *why = json_string_value(json_object_get(h, "reason"));

        cli_fmt_ms(get_int(h, "waited_ms", -1), t1, sizeof t1);
        fprintf(fp, "    session %lld [%s, %s]\n",
                (long long)get_int(h, "session", -1), why ? why : "?", t1);
    }
}

char *cli_dump_state(json_t *o)
{
    json_t *hs = json_object_get(o, "holders");
    json_t *ws = json_object_get(o, "waiters");
    json_t *h;
    char a[512], *s = NULL;
    size_t i, len;
    FILE *fp = open_memstream(&s, &len);

    if (!fp)
        return NULL;
    attrs(o, a, sizeof a);
    fprintf(fp, "%s", a);
    fprintf(fp, "%sholders [", a[0] ? "; " : "");
    json_array_foreach(hs, i, h)
        fprintf(fp, "%ssession %lld token %lld", i ? ", " : "",
                (long long)get_int(h, "session", -1),
                (long long)get_int(h, "token", -1));
    fprintf(fp, "]; waiters [");
    json_array_foreach(ws, i, h)
    {
        const char *why = json_string_value(json_object_get(h, "reason"));
        fprintf(fp, "%ssession %lld %s", i ? ", " : "",
                (long long)get_int(h, "session", -1), why ? why : "?");
    }
    fprintf(fp, "]");
    if (fclose(fp) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

static int by_name(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(json_t **)a, "name"));
    const char *y = json_string_value(json_object_get(*(json_t **)b, "name"));

    return strcmp(x ? x : "", y ? y : "");
}

int cli_h_dump(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    json_t *res = NULL, *objs, **sorted;
    size_t i, n;
    int rc = chand_dump(c->conn, &res);

    (void)k;
    (void)argc;
    (void)argv;
    if (rc < 0 || c->json)
        return cli_end_object(c, rc, res);
    objs = json_object_get(res, "objects");
    n = json_array_size(objs);
    printf("%zu object%s, %lld waiter%s, %lld goroutine%s\n", n,
           n == 1 ? "" : "s", (long long)get_int(res, "waiters", 0),
           get_int(res, "waiters", 0) == 1 ? "" : "s",
           (long long)get_int(res, "goroutines", 0),
           get_int(res, "goroutines", 0) == 1 ? "" : "s");
    sorted = calloc(n + 1, sizeof *sorted);
    if (!sorted) {
        json_decref(res);
        return cli_fail(c, CHAND_ENOMEM);
    }
    for (i = 0; i < n; i++)
        sorted[i] = json_array_get(objs, i);
    qsort(sorted, n, sizeof *sorted, by_name);
    for (i = 0; i < n; i++) {
        putchar('\n');
        cli_dump_object(stdout, sorted[i]);
    }
    free(sorted);
    json_decref(res);
    return 0;
}
