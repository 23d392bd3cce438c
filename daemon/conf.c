/*
 * conf.c - defaults and the one key=value parser for every setting.
 */
#include "conf.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto.h"

/* A quarter of physical memory (1 GiB when it cannot be read): room for
 * the daemon's own overhead and for the rest of the host. */
static size_t conf_default_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);

    if (pages <= 0 || psz <= 0)
        return (size_t)1 << 30;
    return (size_t)pages / 4 * (size_t)psz;
}

void conf_defaults(conf *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->bind, sizeof c->bind, "127.0.0.1");
    c->port = CONF_DEFAULT_PORT;
    c->gomaxprocs = 0;
    c->io_threads = 1;
    c->log_level = LOG_LVL_INFO;
    c->max_depth = PROTO_MAX_DEPTH_DEFAULT;
    c->max_value = 1024 * 1024;
    c->max_line = c->max_value + CONF_ENVELOPE;
    c->max_conns = 10000;
    c->max_objects = 100000;
    c->max_outbuf = 8 * 1024 * 1024;
    c->max_batch = 1000;
    c->max_select = 1024;
    c->fair_batch = 64;
    snprintf(c->metrics_bind, sizeof c->metrics_bind, "127.0.0.1");
    c->metrics_port = 0;
    c->shutdown_grace_ms = 3000;
    c->fsync = 1; /* everysec */
    c->compact_floor = 64 * 1024 * 1024;
    c->election_timeout_ms = 1000;
    c->tcp_keepalive = 30;
    c->max_memory = conf_default_memory();
    c->max_goroutines = 100000;
    c->max_timers = 100000;
    c->min_ticker_ms = 10;
    c->unix_socket_mode = 0660;
    c->auth_timeout_ms = 5000;
    c->auth_hash_queue = 64;
}

const char *conf_warning(const conf *c, char *buf, size_t n)
{
    if (c->max_line >= c->max_value + CONF_ENVELOPE)
        return NULL;
    snprintf(buf, n,
             "max-line (%zu) leaves less than %d bytes above max-value "
             "(%zu) for the rest of a request: a value near max-value "
             "cannot be sent (set max-line to at least %zu)",
             c->max_line, CONF_ENVELOPE, c->max_value,
             c->max_value + CONF_ENVELOPE);
    return buf;
}

/* Parses a non-negative integer with an optional k/m/g suffix (x1024). */
static int conf_parse_size(const char *s, long long max, long long *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0)
        return -1;
    switch (*end) {
    case 'k':
    case 'K':
        v *= 1024;
        end++;
        break;
    case 'm':
    case 'M':
        v *= 1024 * 1024;
        end++;
        break;
    case 'g':
    case 'G':
        v *= 1024LL * 1024 * 1024;
        end++;
        break;
    default:
        break;
    }
    if (*end || v > max)
        return -1;
    *out = v;
    return 0;
}

/* CK_PORT: a port, or "auto" (-1) for any free one.  CK_MODE: file
 * permissions in octal.  CK_BOOL: yes/no (a switch on the command line).
 * CK_FSYNC: always, everysec or no (wal_fsync's numbers). */
typedef enum {
    CK_STR,
    CK_INT,
    CK_SIZE,
    CK_LEVEL,
    CK_PORT,
    CK_FSYNC,
    CK_MODE,
    CK_BOOL
} conf_kind;

static const char *const conf_fsync_names[] = {"no", "everysec", "always"};

typedef struct conf_key {
    const char *name;
    conf_kind kind;
    size_t off;
    long long min, max;
    const char *help;
} conf_key;

#define OFF(f) offsetof(conf, f)
static const conf_key conf_keys[] = {
    {"bind", CK_STR, OFF(bind), 0, 0, "address to listen on"},
    {"port", CK_INT, OFF(port), 0, 65535, "TCP port (0: any free port)"},
    {"port-file", CK_STR, OFF(port_file), 0, 0,
     "write the bound port to this file once listening"},
    {"config", CK_STR, OFF(config), 0, 0, "configuration file"},
    {"gomaxprocs", CK_INT, OFF(gomaxprocs), 0, 256,
     "runtime processors (0: number of CPUs)"},
    {"io-threads", CK_INT, OFF(io_threads), 0, 64,
     "threads serving connections (0: one per CPU)"},
    {"log-level", CK_LEVEL, OFF(log_level), 0, 0, "error, warn, info or debug"},
    {"max-line", CK_SIZE, OFF(max_line), 64, 1LL << 30,
     "bytes in one request line"},
    {"max-depth", CK_INT, OFF(max_depth), 2, 1000, "JSON nesting depth"},
    {"max-value", CK_SIZE, OFF(max_value), 1, 1LL << 30,
     "bytes in one serialised value"},
    {"max-conns", CK_INT, OFF(max_conns), 1, 1000000, "concurrent connections"},
    {"max-objects", CK_INT, OFF(max_objects), 1, 100000000, "named objects"},
    {"max-outbuf", CK_SIZE, OFF(max_outbuf), 1024, 1LL << 34,
     "bytes queued to a client that does not read"},
    {"max-batch", CK_INT, OFF(max_batch), 1, 1000000, "requests in one batch"},
    {"max-select", CK_INT, OFF(max_select), 1, 1000000, "cases in one select"},
    {"fair-batch", CK_INT, OFF(fair_batch), 1, 1000000,
     "requests served per connection per event-loop turn"},
    {"metrics-bind", CK_STR, OFF(metrics_bind), 0, 0,
     "address of the metrics HTTP server"},
    {"metrics-port", CK_PORT, OFF(metrics_port), 0, 65535,
     "metrics HTTP port (0: disabled, auto: any free port)"},
    {"metrics-port-file", CK_STR, OFF(metrics_port_file), 0, 0,
     "write the bound metrics port to this file"},
    {"shutdown-grace-ms", CK_INT, OFF(shutdown_grace_ms), 0, 3600000,
     "SIGTERM: ms to let cancelled answers reach clients"},
    {"data-dir", CK_STR, OFF(data_dir), 0, 0,
     "keep state in this directory (empty: in memory only)"},
    {"fsync", CK_FSYNC, OFF(fsync), 0, 0,
     "with data-dir: always, everysec or no"},
    {"compact-floor", CK_SIZE, OFF(compact_floor), 4096, 1LL << 40,
     "with data-dir: compact once the log passes this and twice the "
     "snapshot"},
    {"cluster", CK_STR, OFF(cluster), 0, 0,
     "replicate over raft with these nodes: id=host:client_port:raft_port,"
     "... (needs data-dir and node-id)"},
    {"node-id", CK_STR, OFF(node_id), 0, sizeof(((conf *)0)->node_id),
     "with cluster: this node's id in the list"},
    {"election-timeout-ms", CK_INT, OFF(election_timeout_ms), 100, 600000,
     "with cluster: raft election timeout (heartbeat: a tenth)"},
    {"cluster-join", CK_BOOL, OFF(cluster_join), 0, 1,
     "with cluster: join a running cluster (after cluster.add on its "
     "leader) instead of bootstrapping"},
    {"max-memory", CK_SIZE, OFF(max_memory), 64 << 10, 1LL << 50,
     "bytes clients may make the daemon hold (values, waits, timers, "
     "buffers); default a quarter of RAM"},
    {"max-goroutines", CK_INT, OFF(max_goroutines), 16, 100000000,
     "goroutines: waiting requests, go, afterfunc"},
    {"max-timers", CK_INT, OFF(max_timers), 1, 100000000,
     "timers, tickers and afterfuncs in existence"},
    {"min-ticker-ms", CK_INT, OFF(min_ticker_ms), 1, 3600000,
     "shortest timer.ticker period"},
    {"tcp-keepalive", CK_INT, OFF(tcp_keepalive), 0, 86400,
     "s of silence before keepalive probes; a vanished peer is dropped "
     "after twice this (0: off)"},
    /* security (issue 17) */
    {"unix-socket", CK_STR, OFF(unix_socket), 0, 0,
     "also listen on this unix socket path"},
    {"unix-socket-mode", CK_MODE, OFF(unix_socket_mode), 0, 0777,
     "permissions of the unix socket, octal"},
    {"users-file", CK_STR, OFF(users_file), 0, 0,
     "users, password hashes and rules (reloaded on SIGHUP)"},
    {"allow-anonymous", CK_BOOL, OFF(allow_anonymous), 0, 1,
     "serve a non-loopback address without users (unsafe)"},
    {"auth-timeout-ms", CK_INT, OFF(auth_timeout_ms), 10, 3600000,
     "with users: ms a connection has to authenticate"},
    {"auth-hash-slots", CK_INT, OFF(auth_hash_slots), 0, 256,
     "password hashes verified at once (0: half the cores, 1 to 4)"},
    {"auth-hash-queue", CK_INT, OFF(auth_hash_queue), 0, 100000,
     "auth attempts waiting for a hash slot; more are refused (limit)"},
    {"tls-port", CK_PORT, OFF(tls_port), 0, 65535,
     "TLS port on the bind address (0: no TLS, auto: any free port)"},
    {"tls-port-file", CK_STR, OFF(tls_port_file), 0, 0,
     "write the bound TLS port to this file"},
    {"tls-cert", CK_STR, OFF(tls_cert), 0, 0,
     "PEM server certificate (and its chain)"},
    {"tls-key", CK_STR, OFF(tls_key), 0, 0, "PEM server private key"},
    {"tls-ca", CK_STR, OFF(tls_ca), 0, 0,
     "PEM CAs: client certificates required, signed by one"},
};
#undef OFF

static bool conf_key_eq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = *a == '_' ? '-' : *a, y = *b == '_' ? '-' : *b;
        if (x != y)
            return false;
    }
    return *a == *b;
}

bool conf_key_is_switch(const char *key)
{
    for (size_t i = 0; i < sizeof conf_keys / sizeof conf_keys[0]; i++)
        if (conf_key_eq(key, conf_keys[i].name))
            return conf_keys[i].kind == CK_BOOL;
    return false;
}

int conf_set(conf *c, const char *key, const char *value, char *err,
             size_t errlen)
{
    const conf_key *k = NULL;
    long long v;

    for (size_t i = 0; i < sizeof conf_keys / sizeof conf_keys[0]; i++)
        if (conf_key_eq(key, conf_keys[i].name))
            k = &conf_keys[i];
    if (!k) {
        snprintf(err, errlen, "unknown key '%s'", key);
        return -1;
    }
    if (!value) {
        snprintf(err, errlen, "%s needs a value", k->name);
        return -1;
    }
    char *field = (char *)c + k->off;
    switch (k->kind) {
    case CK_STR: {
        /* max, when set, is the field's size */
        size_t cap = k->max ? (size_t)k->max
                     : k->off == offsetof(conf, bind) ||
                             k->off == offsetof(conf, metrics_bind)
                         ? sizeof c->bind
                         : sizeof c->port_file;
        if (strlen(value) >= cap) {
            snprintf(err, errlen, "%s: value too long", k->name);
            return -1;
        }
        memcpy(field, value, strlen(value) + 1);
        return 0;
    }
    case CK_LEVEL:
        if (log_level_parse(value, (log_level *)(void *)field) != 0) {
            snprintf(err, errlen, "%s: '%s' is not error, warn, info or debug",
                     k->name, value);
            return -1;
        }
        return 0;
    case CK_FSYNC:
        for (int i = 0; i < 3; i++)
            if (strcmp(value, conf_fsync_names[i]) == 0) {
                *(int *)(void *)field = i;
                return 0;
            }
        snprintf(err, errlen, "%s: '%s' is not always, everysec or no", k->name,
                 value);
        return -1;
    case CK_MODE: {
        char *end;
        long m;
        errno = 0;
        m = strtol(value, &end, 8);
        if (errno || end == value || *end || m < 0 || m > k->max) {
            snprintf(err, errlen, "%s: '%s' is not an octal mode (0660)",
                     k->name, value);
            return -1;
        }
        *(int *)(void *)field = (int)m;
        return 0;
    }
    case CK_BOOL:
        if (!strcmp(value, "1") || !strcmp(value, "yes") ||
            !strcmp(value, "true") || !strcmp(value, "on"))
            *(int *)(void *)field = 1;
        else if (!strcmp(value, "0") || !strcmp(value, "no") ||
                 !strcmp(value, "false") || !strcmp(value, "off"))
            *(int *)(void *)field = 0;
        else {
            snprintf(err, errlen, "%s: '%s' is not yes or no", k->name, value);
            return -1;
        }
        return 0;
    case CK_PORT:
        if (strcmp(value, "auto") == 0) {
            *(int *)(void *)field = -1;
            return 0;
        }
        /* fall through */
    case CK_INT:
    case CK_SIZE:
        if (conf_parse_size(value, k->max, &v) != 0 || v < k->min) {
            snprintf(err, errlen, "%s: '%s' is not a number in %lld..%lld",
                     k->name, value, k->min, k->max);
            return -1;
        }
        if (k->kind != CK_SIZE)
            *(int *)(void *)field = (int)v;
        else
            *(size_t *)(void *)field = (size_t)v;
        return 0;
    }
    return -1;
}

void conf_usage(const conf *d, void *file)
{
    FILE *f = file;
    for (size_t i = 0; i < sizeof conf_keys / sizeof conf_keys[0]; i++) {
        const conf_key *k = &conf_keys[i];
        const char *field = (const char *)d + k->off;
        fprintf(f, "  --%-12s %s", k->name, k->help);
        switch (k->kind) {
        case CK_STR:
            if (*field)
                fprintf(f, " (default %s)", field);
            break;
        case CK_INT:
            fprintf(f, " (default %d)", *(const int *)(const void *)field);
            break;
        case CK_PORT:
            fprintf(f, " (default %d)", *(const int *)(const void *)field);
            break;
        case CK_MODE:
            fprintf(f, " (default %04o)",
                    (unsigned)*(const int *)(const void *)field);
            break;
        case CK_BOOL:
            fprintf(f, " (a switch; default %s)",
                    *(const int *)(const void *)field ? "yes" : "no");
            break;
        case CK_SIZE:
            fprintf(f, " (default %zu)", *(const size_t *)(const void *)field);
            break;
        case CK_LEVEL:
            fprintf(f, " (default %s)",
                    log_level_name(*(const log_level *)(const void *)field));
            break;
        case CK_FSYNC:
            fprintf(f, " (default %s)",
                    conf_fsync_names[*(const int *)(const void *)field]);
            break;
        }
        fputc('\n', f);
    }
}

/* Writes port (decimal and a newline) to path through a temporary file and
 * a rename, so that a reader polling for the file (a test, a supervisor)
 * never sees it half written.  Returns 0, or -1 with a message naming what
 * (label) and path in err. */
int conf_write_port_file(const char *label, const char *path, int port,
                         char *err, size_t errlen)
{
    char tmp[4200];
    FILE *f;

    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    f = fopen(tmp, "w");
    if (!f)
        goto out_err;
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0)
        goto out_unlink;
    if (rename(tmp, path) != 0)
        goto out_unlink;
    return 0;
out_unlink:
    unlink(tmp);
out_err:
    snprintf(err, errlen, "%s %s: %s", label, path, strerror(errno));
    return -1;
}
