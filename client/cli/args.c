/*
 * args.c - how chanctl reads its arguments: durations (Go's syntax),
 * integers, and how text becomes a JSON value.  The rules here are the
 * ones chanctl.1 documents under VALUES and DURATIONS.
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Go's units, longest suffix first where one is a prefix of another. */
static const struct {
    const char *suffix;
    double ns;
} units[] = {
    {"ns", 1},   {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"\xce\xbcs", 1e3},
    {"ms", 1e6}, {"s", 1e9},  {"m", 60e9},        {"h", 3600e9},
};

/* Reads one "<number><unit>" at *s, adding its nanoseconds to *ns.
 * Returns 0 (advancing *s) or -1. */
static int duration_term(const char **s, double *ns)
{
    const char *p = *s;
    char *end;
    double v;
    size_t best = 0, bi = 0;

    if (!isdigit((unsigned char)*p) && *p != '.')
        return -1;
    errno = 0;
    v = strtod(p, &end);
    if (errno || end == p || !isfinite(v) || v < 0)
        return -1;
    /* strtod also takes "1e3" and hex: Go's syntax does not. */
    for (const char *q = p; q < end; q++)
        if (!isdigit((unsigned char)*q) && *q != '.')
            return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        size_t n = strlen(units[i].suffix);
        if (strncmp(end, units[i].suffix, n) == 0 && n > best) {
            best = n;
            bi = i;
        }
    }
    if (!best)
        return -1;
    *ns += v * units[bi].ns;
    *s = end + best;
    return 0;
}

int cli_parse_duration(const char *s, int64_t *ms)
{
    char *end;
    double ns = 0, v;

    if (!s || !*s)
        return -1;
    if (strcmp(s, "inf") == 0 || strcmp(s, "infinity") == 0 ||
        strcmp(s, "forever") == 0) {
        *ms = CHAND_FOREVER;
        return 0;
    }
    /* A bare number is seconds, as timeout(1) and sleep(1) take it. */
    errno = 0;
    v = strtod(s, &end);
    if (*end == '\0' && end != s && !errno && isfinite(v) && v >= 0 &&
        (isdigit((unsigned char)*s) || *s == '.')) {
        ns = v * 1e9;
    } else {
        const char *p = s;
        while (*p)
            if (duration_term(&p, &ns) < 0)
                return -1;
    }
    if (ns / 1e6 > 9e15)
        return -1;
    /* The wire counts milliseconds; a positive duration shorter than
     * that still waits (1 ms) rather than becoming "do not wait". */
    *ms = (int64_t)ceil(ns / 1e6 - 1e-9);
    if (*ms == 0 && ns > 0)
        *ms = 1;
    return 0;
}

int cli_parse_int(const char *s, int64_t *out)
{
    char *end;
    long long v;

    if (!s || !*s)
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

char *cli_read_all(FILE *fp, size_t *lenp, bool trim)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);

    if (!buf)
        return NULL;
    for (;;) {
        size_t n;
        if (cap - len < 2) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        n = fread(buf + len, 1, cap - len - 1, fp);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(fp)) {
        free(buf);
        return NULL;
    }
    while (trim && len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    buf[len] = '\0';
    if (lenp)
        *lenp = len;
    return buf;
}

json_t *cli_text_value(const char *s, cli_valmode mode)
{
    json_t *v;

    if (mode == CLI_VAL_STRING)
        return json_string(s);
    /* JSON_DECODE_ANY: "42" is the number 42 and "042" is no JSON number
     * (JSON forbids leading zeros), so it stays the string "042". */
    v = json_loads(s, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    if (v || mode == CLI_VAL_JSON)
        return v;
    return json_string(s);
}

json_t *cli_arg_value(const char *arg)
{
    json_t *v;
    char *s;

    if (strcmp(arg, "-") != 0)
        return cli_text_value(arg, CLI_VAL_AUTO);
    s = cli_read_all(stdin, NULL, true);
    if (!s)
        return NULL;
    v = cli_text_value(s, CLI_VAL_AUTO);
    free(s);
    return v;
}
