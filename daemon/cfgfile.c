/*
 * cfgfile.c - the config file parser and the order in which settings are
 * applied (defaults, file, flags), for start-up, --test-config and SIGHUP.
 *
 * Every value goes through conf_set(), the one parser that flags use too,
 * so a key means the same thing in both places; this file only adds the
 * file syntax and the "file:line:" in front of conf_set's message.
 */
#include "cfgfile.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"

/* A config file is small; a bigger one is a mistake (a binary, a log). */
#define CFG_MAX_FILE (1024 * 1024)

/* The command line, kept for cfg_reload (borrowed from main). */
static int cfg_argc;
static char **cfg_argv;
static char cfg_path[4096];

static bool cfg_is_key_char(char ch)
{
    return isalnum((unsigned char)ch) || ch == '_' || ch == '-';
}

static bool cfg_key_is(const char *key, const char *name)
{
    for (; *key && *name; key++, name++) {
        char a = *key == '_' ? '-' : *key, b = *name == '_' ? '-' : *name;
        if (a != b)
            return false;
    }
    return *key == *name;
}

/* Parses one line (NUL-terminated, no '\n') and applies it.  Returns 0 or
 * -1 with the message (without the "file:line: " prefix) in err. */
static int cfg_line(conf *c, char *p, char *err, size_t errlen)
{
    char *key, *val, *end;

    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0' || *p == '#')
        return 0;
    key = p;
    while (cfg_is_key_char(*p))
        p++;
    if (p == key) {
        snprintf(err, errlen, "expected 'key = value', found '%.40s'", key);
        return -1;
    }
    end = p;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '=') {
        *end = '\0';
        snprintf(err, errlen, "expected '=' after '%.64s'", key);
        return -1;
    }
    *end = '\0';
    p++;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '"') {
        val = ++p;
        while (*p && *p != '"')
            p++;
        if (*p != '"') {
            snprintf(err, errlen, "%.64s: missing closing '\"'", key);
            return -1;
        }
        *p++ = '\0';
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p && *p != '#') {
            snprintf(err, errlen, "%.64s: text after the quoted value", key);
            return -1;
        }
    } else {
        val = p;
        /* A '#' after white space starts a comment; one inside a word
         * (a path like /srv/a#b) does not. */
        for (; *p; p++)
            if (*p == '#' && (p == val || p[-1] == ' ' || p[-1] == '\t'))
                break;
        *p = '\0';
        while (p > val && (p[-1] == ' ' || p[-1] == '\t'))
            *--p = '\0';
    }
    if (cfg_key_is(key, "config")) {
        snprintf(err, errlen, "'%.64s' cannot be set in a config file", key);
        return -1;
    }
    return conf_set(c, key, val, err, errlen);
}

int cfg_load_text(conf *c, const char *name, const char *text, char *err,
                  size_t errlen)
{
    char line[8192], msg[512];
    int lineno = 0;

    while (*text) {
        const char *nl = strchr(text, '\n');
        size_t len = nl ? (size_t)(nl - text) : strlen(text);

        lineno++;
        if (len >= sizeof line) {
            snprintf(err, errlen, "%s:%d: line longer than %zu bytes", name,
                     lineno, sizeof line - 1);
            return -1;
        }
        memcpy(line, text, len);
        if (len > 0 && line[len - 1] == '\r')
            len--;
        line[len] = '\0';
        if (cfg_line(c, line, msg, sizeof msg) != 0) {
            snprintf(err, errlen, "%s:%d: %s", name, lineno, msg);
            return -1;
        }
        text = nl ? nl + 1 : text + strlen(text);
    }
    return 0;
}

int cfg_load_file(conf *c, const char *path, char *err, size_t errlen)
{
    FILE *f;
    char *buf;
    size_t n;
    int rc = -1;

    f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    buf = malloc(CFG_MAX_FILE + 1);
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out_close;
    }
    n = fread(buf, 1, CFG_MAX_FILE + 1, f);
    if (ferror(f)) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto out_free;
    }
    if (n > CFG_MAX_FILE) {
        snprintf(err, errlen, "%s: larger than %d bytes", path, CFG_MAX_FILE);
        goto out_free;
    }
    if (memchr(buf, '\0', n)) {
        snprintf(err, errlen, "%s: not a text file (NUL byte)", path);
        goto out_free;
    }
    buf[n] = '\0';
    rc = cfg_load_text(c, path, buf, err, errlen);
out_free:
    free(buf);
out_close:
    fclose(f);
    return rc;
}

/* Finds PROTOCOL.md for --help from where the program is: `make install`
 * puts it in PREFIX/share/doc/chand beside PREFIX/sbin/chand, and a
 * build in the source tree has proto/ one level up.  Computed, not
 * compiled in, so that the binary need not be rebuilt for another PREFIX
 * (or DESTDIR).  Returns 0 with the path in buf, or -1. */
static int cfg_protocol_path(char *buf, size_t n)
{
    static const char *const rel[] = {"../share/doc/chand/PROTOCOL.md",
                                      "../proto/PROTOCOL.md",
                                      "../../proto/PROTOCOL.md"};
    char exe[4096], *slash;
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);

    if (len <= 0)
        return -1;
    exe[len] = '\0';
    slash = strrchr(exe, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        char path[4096 + 64], real[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", exe, rel[i]);
        if (realpath(path, real) && access(real, R_OK) == 0) {
            snprintf(buf, n, "%s", real);
            return 0;
        }
    }
    return -1;
}

static void cfg_usage(FILE *f)
{
    char proto[PATH_MAX];
    conf d;

    conf_defaults(&d);
    fprintf(f,
            "usage: chand [--config FILE] [--test-config] [--KEY VALUE | "
            "--KEY=VALUE]...\n"
            "       chand -h | -V\n"
            "Hosts a Go-style goroutine runtime and serves its channels,\n"
            "locks and the rest by name over TCP (JSON-RPC 2.0, one\n"
            "message per line).\n\n"
            "  --config FILE    read settings from FILE (chand.conf(5));\n"
            "                   flags override the file\n"
            "  --test-config    check the settings and exit (0: valid)\n"
            "  --repair         with data-dir: keep the log up to its first\n"
            "                   damage, drop the rest, and exit\n"
            "  --hash-password  read a password on stdin, print its hash\n"
            "                   for the users file, and exit\n"
            "  -h, --help       this text\n"
            "  -V, --version    print the version and exit\n\n"
            "keys (flags, and `key = value` in the file):\n");
    conf_usage(&d, f);
    fprintf(f, "\nSignals: TERM/INT drain and exit 0; HUP reloads the "
               "file.\n");
    if (cfg_protocol_path(proto, sizeof proto) != 0)
        snprintf(proto, sizeof proto, "PREFIX/share/doc/chand/PROTOCOL.md");
    fprintf(f,
            "\nThe protocol (every method, with examples):\n  %s\n"
            "See also chand(8), chand.conf(5), chanctl(1).\n",
            proto);
}

/* Splits argv[*i] ("--key", "--key=value") into key and value, taking
 * the value from the next argument when there is no '='.  Returns 0, or
 * -1 when it is not a flag. */
static int cfg_split(int argc, char **argv, int *i, char *key, size_t klen,
                     const char **val)
{
    const char *a = argv[*i], *eq;
    size_t n;

    if (strncmp(a, "--", 2) != 0)
        return -1;
    a += 2;
    eq = strchr(a, '=');
    n = eq ? (size_t)(eq - a) : strlen(a);
    if (n >= klen)
        n = klen - 1; /* too long for any key: conf_set says unknown */
    memcpy(key, a, n);
    key[n] = '\0';
    if (eq)
        *val = eq + 1;
    else if (conf_key_is_switch(key))
        *val = "yes"; /* `--allow-anonymous` takes no value */
    else if (*i + 1 < argc)
        *val = argv[++*i];
    else
        *val = NULL;
    return 0;
}

static bool cfg_is_switch(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 ||
           strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0 ||
           strcmp(a, "--test-config") == 0 || strcmp(a, "--repair") == 0;
}

/* Applies every flag but --config and the switches.  Returns 0 or -1. */
static int cfg_apply_flags(conf *c, char *err, size_t errlen)
{
    for (int i = 1; i < cfg_argc; i++) {
        char key[64];
        const char *val;

        if (cfg_is_switch(cfg_argv[i]))
            continue;
        if (cfg_split(cfg_argc, cfg_argv, &i, key, sizeof key, &val) != 0) {
            snprintf(err, errlen, "unexpected argument '%s'", cfg_argv[i]);
            return -1;
        }
        if (cfg_key_is(key, "config"))
            continue;
        if (conf_set(c, key, val, err, errlen) != 0)
            return -1;
    }
    return 0;
}

int cfg_from_args(int argc, char **argv, conf *c, int *exit_code)
{
    char err[600];
    bool test = false, repair = false;

    cfg_argc = argc;
    cfg_argv = argv;
    cfg_path[0] = '\0';
    /* First pass: switches and the file, whose settings come first. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val;
        char key[64];

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            cfg_usage(stdout);
            *exit_code = 0;
            return 1;
        }
        if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
            printf("chand %s (protocol %d)\n", CHAND_VERSION, PROTO_VERSION);
            *exit_code = 0;
            return 1;
        }
        if (strcmp(a, "--test-config") == 0) {
            test = true;
            continue;
        }
        if (strcmp(a, "--repair") == 0) {
            repair = true;
            continue;
        }
        if (cfg_split(argc, argv, &i, key, sizeof key, &val) != 0) {
            fprintf(stderr, "chand: unexpected argument '%s' (try --help)\n",
                    a);
            *exit_code = 2;
            return 1;
        }
        if (cfg_key_is(key, "config")) {
            if (!val || !*val || strlen(val) >= sizeof cfg_path) {
                fprintf(stderr, "chand: --config needs a file name\n");
                *exit_code = 2;
                return 1;
            }
            snprintf(cfg_path, sizeof cfg_path, "%s", val);
        }
    }
    conf_defaults(c);
    if (cfg_path[0] && cfg_load_file(c, cfg_path, err, sizeof err) != 0) {
        fprintf(stderr, "chand: %s\n", err);
        *exit_code = 1;
        return 1;
    }
    if (cfg_apply_flags(c, err, sizeof err) != 0) {
        fprintf(stderr, "chand: %s (try --help)\n", err);
        *exit_code = 2;
        return 1;
    }
    snprintf(c->config, sizeof c->config, "%s", cfg_path);
    c->repair = repair;
    /* A limit that cannot be reached is worth a warning, not a refusal:
     * the daemon still serves every smaller value. */
    if (conf_warning(c, err, sizeof err)) {
        if (test)
            fprintf(stderr, "chand: warning: %s\n", err);
        else
            log_warn("%s", err);
    }
    if (test) {
        printf("chand: %s: configuration ok\n",
               cfg_path[0] ? cfg_path : "(no file)");
        *exit_code = 0;
        return 1;
    }
    return 0;
}

int cfg_reload(conf *c, char *err, size_t errlen)
{
    conf_defaults(c);
    if (cfg_path[0] && cfg_load_file(c, cfg_path, err, errlen) != 0)
        return -1;
    if (cfg_argv && cfg_apply_flags(c, err, errlen) != 0)
        return -1;
    snprintf(c->config, sizeof c->config, "%s", cfg_path);
    return 0;
}
