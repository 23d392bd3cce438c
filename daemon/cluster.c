/*
 * cluster.c - parses the `cluster` and `node_id` settings (cluster.h).
 *
 * Every refusal names the entry (its position and text) and the rule it
 * breaks, because the setting is typed by hand into a config file on three
 * machines and a vague "bad cluster" costs an operator an evening.
 */
#include "cluster.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/* Parses a positive decimal integer of at most max from s[0..len).  Returns
 * 0, or -EINVAL (empty, not all digits, zero, or above max). */
static int parse_uint(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;
    if (len == 0)
        return -EINVAL;
    for (i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -EINVAL;
        if (v > (max - (uint64_t)(s[i] - '0')) / 10)
            return -EINVAL;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v == 0)
        return -EINVAL;
    *out = v;
    return 0;
}

/* An IPv4 address other nodes can reach: libraft 0.15's TCP transport
 * neither resolves names nor speaks IPv6, and 0.0.0.0 names no host. */
static int host_ok(const char *s, size_t len)
{
    char buf[INET_ADDRSTRLEN];
    struct in_addr a;
    if (len >= sizeof buf)
        return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return inet_pton(AF_INET, buf, &a) == 1 && a.s_addr != INADDR_ANY;
}

/* Parses one trimmed entry "id=host:client:raft" (pos counts from 1). */
static int parse_entry(const char *s, size_t len, size_t pos, cluster_peer *p,
                       char *err, size_t errlen)
{
    const char *eq = memchr(s, '=', len);
    const char *rest, *c1, *c2, *end = s + len;
    uint64_t v;
    int ilen = (int)len;

    if (eq == NULL)
        return fail(err, errlen,
                    "cluster entry %zu \"%.*s\": expected "
                    "id=host:client_port:raft_port",
                    pos, ilen, s);
    if (parse_uint(s, (size_t)(eq - s), INT64_MAX, &v) != 0)
        return fail(err, errlen,
                    "cluster entry %zu \"%.*s\": the node id must be an "
                    "integer from 1 to %lld",
                    pos, ilen, s, (long long)INT64_MAX);
    p->id = v;
    rest = eq + 1;
    c1 = memchr(rest, ':', (size_t)(end - rest));
    c2 = c1 ? memchr(c1 + 1, ':', (size_t)(end - c1 - 1)) : NULL;
    if (c1 == NULL || c2 == NULL)
        return fail(err, errlen,
                    "cluster entry %zu \"%.*s\": expected "
                    "id=host:client_port:raft_port (two ports)",
                    pos, ilen, s);
    if (memchr(c2 + 1, ':', (size_t)(end - c2 - 1)) != NULL)
        return fail(err, errlen,
                    "cluster entry %zu \"%.*s\": too many ':' (IPv6 "
                    "addresses are not supported; use a host name)",
                    pos, ilen, s);
    if (c1 == rest)
        return fail(err, errlen, "cluster entry %zu \"%.*s\": empty host", pos,
                    ilen, s);
    if ((size_t)(c1 - rest) > CLUSTER_HOST_MAX)
        return fail(err, errlen,
                    "cluster entry %zu: host longer than %d characters", pos,
                    CLUSTER_HOST_MAX);
    if (!host_ok(rest, (size_t)(c1 - rest)))
        return fail(err, errlen,
                    "cluster entry %zu \"%.*s\": the host must be an IPv4 "
                    "address the other nodes reach, such as 10.0.0.1 (host "
                    "names are not resolved)",
                    pos, ilen, s);
    memcpy(p->host, rest, (size_t)(c1 - rest));
    p->host[c1 - rest] = '\0';
    if (parse_uint(c1 + 1, (size_t)(c2 - c1 - 1), 65535, &v) != 0)
        return fail(err, errlen,
                    "cluster entry %zu \"%.*s\": the client port must be an "
                    "integer from 1 to 65535",
                    pos, ilen, s);
    p->client_port = (uint16_t)v;
    if (parse_uint(c2 + 1, (size_t)(end - c2 - 1), 65535, &v) != 0)
        return fail(err, errlen,
                    "cluster entry %zu \"%.*s\": the raft port must be an "
                    "integer from 1 to 65535",
                    pos, ilen, s);
    p->raft_port = (uint16_t)v;
    if (p->raft_port == p->client_port)
        return fail(err, errlen,
                    "cluster entry %zu \"%.*s\": the client and raft ports "
                    "must differ",
                    pos, ilen, s);
    return 0;
}

/* Refuses a second use of an id, or of a host:port pair. */
static int check_unique(const cluster *c, const cluster_peer *p, size_t pos,
                        char *err, size_t errlen)
{
    size_t i;
    for (i = 0; i < c->n; i++) {
        const cluster_peer *q = &c->peers[i];
        if (q->id == p->id)
            return fail(err, errlen,
                        "cluster entry %zu: node id %llu is listed twice", pos,
                        (unsigned long long)p->id);
        if (strcmp(q->host, p->host) != 0)
            continue;
        if (q->raft_port == p->raft_port || q->client_port == p->raft_port ||
            q->raft_port == p->client_port || q->client_port == p->client_port)
            return fail(err, errlen,
                        "cluster entry %zu: node %llu uses a port of node "
                        "%llu on host %s",
                        pos, (unsigned long long)p->id,
                        (unsigned long long)q->id, p->host);
    }
    return 0;
}

int cluster_parse(cluster *c, const char *spec, const char *node_id, char *err,
                  size_t errlen)
{
    const char *s = spec, *comma, *a, *b;
    uint64_t self_id;
    size_t i, pos = 0;
    int rc;

    memset(c, 0, sizeof *c);
    if (spec == NULL || spec[strspn(spec, " \t")] == '\0')
        return fail(err, errlen,
                    "cluster is empty: list every node as "
                    "id=host:client_port:raft_port,...");
    if (node_id == NULL || node_id[0] == '\0')
        return fail(err, errlen,
                    "node_id is not set: it names this node "
                    "in the cluster setting");
    if (parse_uint(node_id, strlen(node_id), INT64_MAX, &self_id) != 0)
        return fail(err, errlen,
                    "node_id \"%s\": must be an integer from 1 to %lld",
                    node_id, (long long)INT64_MAX);
    c->peers = calloc(CLUSTER_MAX_PEERS, sizeof *c->peers);
    if (c->peers == NULL)
        return -ENOMEM;
    for (;;) {
        comma = strchr(s, ',');
        a = s;
        b = comma ? comma : s + strlen(s);
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        pos++;
        if (a == b) {
            rc = fail(err, errlen, "cluster entry %zu is empty", pos);
            goto out_free;
        }
        if (c->n == CLUSTER_MAX_PEERS) {
            rc = fail(err, errlen, "cluster lists more than %d nodes",
                      CLUSTER_MAX_PEERS);
            goto out_free;
        }
        rc = parse_entry(a, (size_t)(b - a), pos, &c->peers[c->n], err, errlen);
        if (rc != 0)
            goto out_free;
        rc = check_unique(c, &c->peers[c->n], pos, err, errlen);
        if (rc != 0)
            goto out_free;
        c->n++;
        if (comma == NULL)
            break;
        s = comma + 1;
    }
    for (i = 0; i < c->n; i++)
        if (c->peers[i].id == self_id)
            break;
    if (i == c->n) {
        rc = fail(err, errlen, "node_id %llu is not in the cluster setting",
                  (unsigned long long)self_id);
        goto out_free;
    }
    c->self = i;
    return 0;

out_free:
    cluster_free(c);
    return rc;
}

void cluster_free(cluster *c)
{
    free(c->peers);
    memset(c, 0, sizeof *c);
}

const cluster_peer *cluster_find(const cluster *c, uint64_t id)
{
    size_t i;
    for (i = 0; i < c->n; i++)
        if (c->peers[i].id == id)
            return &c->peers[i];
    return NULL;
}

const cluster_peer *cluster_self(const cluster *c)
{
    return c->n > 0 ? &c->peers[c->self] : NULL;
}

int cluster_raft_address(const cluster_peer *p, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s:%u", p->host, (unsigned)p->raft_port);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int cluster_client_address(const cluster_peer *p, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s:%u", p->host, (unsigned)p->client_port);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}
