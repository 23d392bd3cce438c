/*
 * bench_net.c - the broker's load generator, in the manner of
 * redis-benchmark: N connections, pipeline depth P, payload size S, a
 * request count or a duration, one shape per run.  It speaks chand's
 * JSON-RPC lines (--proto chand) or Redis's RESP (--proto resp), so the
 * same client, with the same costs and the same clock, measures both
 * servers; tests/bench/net.sh runs the pairs and prints the ratios.
 *
 * Two client paths for chand:
 *   --api raw    (default) one epoll loop, requests pre-formatted with
 *                snprintf, answers matched by id with a scan of the line.
 *                This is what redis-benchmark does for Redis; libchand's
 *                async API builds a jansson tree for every request and
 *                parses every answer into one, plus a hash lookup and a
 *                bufferevent per connection, which costs the load
 *                generator (sharing 2 cores with the server) about as much
 *                CPU as the server spends, so it would measure the client.
 *   --api async  the same shapes through libchand's async API
 *                (chand_async_call on a libevent base), to measure the
 *                library itself.
 *
 * Shapes (-t): send, recv (a buffered channel / LPUSH, RPOP), sendrecv
 * (alternating on one buffered channel / LPUSH+RPOP), handoff (unbuffered
 * channel, producers and consumers on separate connections / LPUSH +
 * BRPOP), select4 (select over 4 buffered channels, alternately 4 send
 * cases and 4 recv cases / LPUSH + BRPOP on 4 keys), mutex (lock, unlock
 * of one mutex per connection / SET NX + DEL), map (store, load on random
 * keys / HSET, HGET), atomic (atomic.add / INCR), idle (every connection
 * parks one recv / BLPOP and the program waits: the memory test),
 * acksend and ackrecv (issue 18: acknowledged delivery; acksend fills the
 * channel / XADD to a stream, ackrecv takes each value with recv ack:true
 * and acknowledges it with ack, the ack sent as soon as the recv's answer
 * names the delivery / XREADGROUP COUNT 1 then XACK; one operation is the
 * pair, its latency from the recv's issue to the ack's answer).  With
 * --ack-list, Redis's side is the list pattern instead: LPUSH, then
 * LMOVE to KEY:proc and LREM of the value from it.
 *
 * Transports (raw API): TCP (default), --unix PATH (a unix socket), and
 * --tls [--cacert FILE] (TLS over TCP with OpenSSL, the server's
 * certificate verified against FILE), for both protocols: the same client
 * costs on both sides, as for TCP.
 *
 * Output: `bench: <name>_<metric> <value> <unit>` lines: ops (ops/s), p50,
 * p99, p999 (us), errors when any.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/un.h>

#include "chand.h"

enum shape {
    SH_SEND,
    SH_RECV,
    SH_SENDRECV,
    SH_HANDOFF,
    SH_SELECT4,
    SH_MUTEX,
    SH_MAP,
    SH_ATOMIC,
    SH_IDLE,
    SH_ACKSEND,
    SH_ACKRECV,
    SH_NSHAPES
};
static const char *const shape_names[] = {
    "send", "recv",   "sendrecv", "handoff", "select4", "mutex",
    "map",  "atomic", "idle",     "acksend", "ackrecv"};

/* ---- options ---------------------------------------------------------- */

static struct {
    const char *host;
    int port;
    bool resp;  /* --proto resp */
    bool async; /* --api async */
    enum shape shape;
    int conns;
    int depth;
    int size;
    int64_t count; /* requests (messages for handoff); 0: duration */
    double seconds;
    const char *unix_path; /* --unix: connect there instead */
    bool tls;              /* --tls */
    const char *cacert;    /* --cacert */
    const char *key;       /* object name prefix */
    const char *name;      /* bench line prefix */
    int64_t cap;           /* capacity for make (chand) */
    int keyspace;
    bool ack_list; /* --ack-list: Redis LPUSH, LMOVE + LREM */
} opt = {
    .host = "127.0.0.1",
    .conns = 50,
    .depth = 1,
    .size = 3,
    .seconds = 0,
    .key = "bench",
    .keyspace = 10000,
};

static char *payload; /* size chars of 'x' */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- latency histogram: 1 us buckets below 10 ms, 100 us above -------- */

#define H_FINE 10000
#define H_COARSE 100000
static uint64_t hist[H_FINE + H_COARSE + 1];
static uint64_t hist_n;

static void hist_add(int64_t ns)
{
    int64_t us = ns / 1000;
    size_t i;
    if (us < H_FINE)
        i = (size_t)us;
    else if ((us - H_FINE) / 100 < H_COARSE)
        i = H_FINE + (size_t)((us - H_FINE) / 100);
    else
        i = H_FINE + H_COARSE;
    hist[i]++;
    hist_n++;
}

static double hist_pct(double p)
{
    uint64_t want = (uint64_t)(p * (double)hist_n), seen = 0;
    if (want >= hist_n && hist_n)
        want = hist_n - 1;
    for (size_t i = 0; i <= H_FINE + H_COARSE; i++) {
        seen += hist[i];
        if (seen > want)
            return i < H_FINE ? (double)i + 0.5
                              : (double)(H_FINE + (i - H_FINE) * 100) + 50;
    }
    return 0;
}

/* ---- the run's counters ------------------------------------------------ */

static int64_t issued, issued_prod, done_counted, errors;
static int64_t t_start, t_end_issue;
static bool stop_issue;

static bool handoff_like(void)
{
    return opt.shape == SH_HANDOFF;
}

/* Returns true when connection ci may issue one more request. */
static bool may_issue(int ci)
{
    if (stop_issue)
        return false;
    if (opt.count > 0) {
        if (handoff_like() && ci < opt.conns / 2)
            return issued_prod < opt.count;
        return issued < opt.count;
    }
    return true;
}

static void note_issue(int ci)
{
    if (handoff_like() && ci < opt.conns / 2)
        issued_prod++;
    else
        issued++;
}

/* Whether an answer of connection ci counts as an operation. */
static bool counts(int ci)
{
    return !handoff_like() || ci >= opt.conns / 2;
}

/* The group and consumer names of the Redis stream (ackrecv). */
#define XGROUP "g"

/* ackrecv --ack-list: the list values are moved to while in flight. */
static const char *proc_key(void)
{
    static char buf[300];

    if (!buf[0])
        snprintf(buf, sizeof buf, "%s:proc", opt.key);
    return buf;
}

static bool run_done(void)
{
    if (opt.count > 0)
        return done_counted >= opt.count;
    return false;
}

/* ---- request text ------------------------------------------------------ */

/* Formats request number seq of connection ci into buf (chand: with id).
 * Returns its length. */
static int fmt_chand(char *buf, size_t cap, int ci, uint64_t seq, int id)
{
    const char *k = opt.key;
    const char *pre = "{\"jsonrpc\":\"2.0\",\"id\":";
    bool odd = seq & 1;
    unsigned r;

    switch (opt.shape) {
    case SH_SEND:
    send:
        return snprintf(buf, cap,
                        "%s%d,\"method\":\"send\",\"params\":{\"name\":\"%s\","
                        "\"value\":\"%s\"}}\n",
                        pre, id, k, payload);
    case SH_RECV:
    recv:
        return snprintf(buf, cap,
                        "%s%d,\"method\":\"recv\",\"params\":{\"name\":\"%s\""
                        "}}\n",
                        pre, id, k);
    case SH_SENDRECV:
        if (odd)
            goto recv;
        goto send;
    case SH_HANDOFF:
        if (ci < opt.conns / 2)
            goto send;
        goto recv;
    case SH_SELECT4:
        if (odd)
            return snprintf(buf, cap,
                            "%s%d,\"method\":\"select\",\"params\":{\"cases\":"
                            "[{\"recv\":\"%s0\"},{\"recv\":\"%s1\"},"
                            "{\"recv\":\"%s2\"},{\"recv\":\"%s3\"}]}}\n",
                            pre, id, k, k, k, k);
        return snprintf(buf, cap,
                        "%s%d,\"method\":\"select\",\"params\":{\"cases\":"
                        "[{\"send\":\"%s0\",\"value\":\"%s\"},"
                        "{\"send\":\"%s1\",\"value\":\"%s\"},"
                        "{\"send\":\"%s2\",\"value\":\"%s\"},"
                        "{\"send\":\"%s3\",\"value\":\"%s\"}]}}\n",
                        pre, id, k, payload, k, payload, k, payload, k,
                        payload);
    case SH_MUTEX:
        return snprintf(buf, cap,
                        "%s%d,\"method\":\"mutex.%s\",\"params\":{\"name\":"
                        "\"%s%d\"}}\n",
                        pre, id, odd ? "unlock" : "lock", k, ci);
    case SH_MAP:
        r = (unsigned)rand() % (unsigned)opt.keyspace;
        if (odd)
            return snprintf(buf, cap,
                            "%s%d,\"method\":\"map.load\",\"params\":{\"name\""
                            ":\"%s\",\"key\":\"k%u\"}}\n",
                            pre, id, k, r);
        return snprintf(buf, cap,
                        "%s%d,\"method\":\"map.store\",\"params\":{\"name\":"
                        "\"%s\",\"key\":\"k%u\",\"value\":\"%s\"}}\n",
                        pre, id, k, r, payload);
    case SH_ATOMIC:
        return snprintf(buf, cap,
                        "%s%d,\"method\":\"atomic.add\",\"params\":{\"name\":"
                        "\"%s\",\"delta\":1}}\n",
                        pre, id, k);
    case SH_IDLE:
        goto recv;
    case SH_ACKSEND:
        goto send;
    case SH_ACKRECV:
        return snprintf(buf, cap,
                        "%s%d,\"method\":\"recv\",\"params\":{\"name\":\"%s\""
                        ",\"ack\":true,\"ack_wait_ms\":600000}}\n",
                        pre, id, k);
    case SH_NSHAPES:
        break;
    }
    return 0;
}

/* Appends one RESP command of argc arguments. */
static int fmt_resp_argv(char *buf, size_t cap, int argc, const char **argv)
{
    int n = snprintf(buf, cap, "*%d\r\n", argc);
    for (int i = 0; i < argc && n > 0 && (size_t)n < cap; i++)
        n += snprintf(buf + n, cap - (size_t)n, "$%zu\r\n%s\r\n",
                      strlen(argv[i]), argv[i]);
    return n;
}

static int fmt_resp(char *buf, size_t cap, int ci, uint64_t seq)
{
    const char *k = opt.key;
    bool odd = seq & 1;
    char a[64], b[64], c4[4][64];

    switch (opt.shape) {
    case SH_SEND:
    send:
        return fmt_resp_argv(buf, cap, 3,
                             (const char *[]){"LPUSH", k, payload});
    case SH_RECV:
        return fmt_resp_argv(buf, cap, 2, (const char *[]){"RPOP", k});
    case SH_SENDRECV:
        if (odd)
            return fmt_resp_argv(buf, cap, 2, (const char *[]){"RPOP", k});
        goto send;
    case SH_HANDOFF:
        if (ci < opt.conns / 2)
            goto send;
        return fmt_resp_argv(buf, cap, 3, (const char *[]){"BRPOP", k, "0"});
    case SH_SELECT4:
        for (int i = 0; i < 4; i++)
            snprintf(c4[i], sizeof c4[i], "%s%d", k, i);
        if (odd)
            return fmt_resp_argv(
                buf, cap, 6,
                (const char *[]){"BRPOP", c4[0], c4[1], c4[2], c4[3], "0"});
        return fmt_resp_argv(
            buf, cap, 3, (const char *[]){"LPUSH", c4[(seq / 2) % 4], payload});
    case SH_MUTEX:
        snprintf(a, sizeof a, "%s%d", k, ci);
        if (odd)
            return fmt_resp_argv(buf, cap, 2, (const char *[]){"DEL", a});
        return fmt_resp_argv(buf, cap, 4,
                             (const char *[]){"SET", a, "1", "NX"});
    case SH_MAP:
        snprintf(b, sizeof b, "k%u", (unsigned)rand() % (unsigned)opt.keyspace);
        if (odd)
            return fmt_resp_argv(buf, cap, 3, (const char *[]){"HGET", k, b});
        return fmt_resp_argv(buf, cap, 4,
                             (const char *[]){"HSET", k, b, payload});
    case SH_ATOMIC:
        return fmt_resp_argv(buf, cap, 2, (const char *[]){"INCR", k});
    case SH_IDLE:
        return fmt_resp_argv(buf, cap, 3, (const char *[]){"BLPOP", k, "0"});
    case SH_ACKSEND:
        if (opt.ack_list)
            goto send;
        return fmt_resp_argv(buf, cap, 5,
                             (const char *[]){"XADD", k, "*", "v", payload});
    case SH_ACKRECV:
        if (opt.ack_list)
            return fmt_resp_argv(
                buf, cap, 5,
                (const char *[]){"LMOVE", k, proc_key(), "RIGHT", "LEFT"});
        snprintf(a, sizeof a, "c%d", ci);
        return fmt_resp_argv(buf, cap, 9,
                             (const char *[]){"XREADGROUP", "GROUP", XGROUP, a,
                                              "COUNT", "1", "STREAMS", k, ">"});
    case SH_NSHAPES:
        break;
    }
    return 0;
}

/* Returns the length of the first complete RESP reply in p[0..n), 0 when
 * incomplete; *err set for an error reply. */
static size_t resp_reply(const char *p, size_t n, bool *err)
{
    const char *e = memchr(p, '\n', n);
    size_t hl;
    long v;

    if (!e)
        return 0;
    hl = (size_t)(e - p) + 1;
    switch (p[0]) {
    case '-':
        *err = true;
        return hl;
    case '+':
    case ':':
        return hl;
    case '$':
        v = strtol(p + 1, NULL, 10);
        if (v < 0)
            return hl;
        return n >= hl + (size_t)v + 2 ? hl + (size_t)v + 2 : 0;
    case '*': {
        size_t off = hl;
        v = strtol(p + 1, NULL, 10);
        for (long i = 0; i < v; i++) {
            size_t m = resp_reply(p + off, n - off, err);
            if (!m)
                return 0;
            off += m;
        }
        return off;
    }
    default:
        *err = true;
        return hl;
    }
}

/* ---- the raw client ---------------------------------------------------- */

typedef struct conn {
    int fd, idx;
    char *in;
    size_t inlen, incap;
    char *out;
    size_t outlen, outcap, outoff;
    int64_t *t0;    /* per slot */
    int *freeslots; /* chand: stack of free ids */
    int nfree;
    int rhead, rtail;      /* resp: ring of slots in order */
    unsigned char *is_ack; /* ackrecv: per slot, 1 for an ack request */
    int inflight;
    uint64_t seq;
    bool want_out;
} conn;

static conn *conns;
static int epfd;

/* TLS: one SSL per descriptor (the raw loop knows connections by fd). */
static SSL_CTX *tls_ctx;
static SSL **fd_ssl;
static int fd_ssl_n;

static SSL *ssl_of(int fd)
{
    return fd >= 0 && fd < fd_ssl_n ? fd_ssl[fd] : NULL;
}

/* Starts TLS on the blocking fd; exits on failure. */
static void tls_start(int fd)
{
    SSL *ssl;

    if (!tls_ctx) {
        tls_ctx = SSL_CTX_new(TLS_client_method());
        if (!tls_ctx)
            goto out_fail;
        SSL_CTX_set_mode(tls_ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                      SSL_MODE_ENABLE_PARTIAL_WRITE);
        if (opt.cacert) {
            if (SSL_CTX_load_verify_locations(tls_ctx, opt.cacert, NULL) != 1)
                goto out_fail;
            SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
        }
    }
    if (fd >= fd_ssl_n) {
        int n = fd + 1024;
        SSL **v = realloc(fd_ssl, (size_t)n * sizeof *v);
        if (!v)
            goto out_fail;
        memset(v + fd_ssl_n, 0, (size_t)(n - fd_ssl_n) * sizeof *v);
        fd_ssl = v;
        fd_ssl_n = n;
    }
    ssl = SSL_new(tls_ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1 || SSL_connect(ssl) != 1)
        goto out_fail;
    fd_ssl[fd] = ssl;
    return;
out_fail:
    fprintf(stderr, "bench_net: TLS: %s\n",
            ERR_error_string(ERR_get_error(), NULL));
    exit(1);
}

static int dial(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)opt.port)};
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    int fd, one = 1;

    if (opt.unix_path) {
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        snprintf(su.sun_path, sizeof su.sun_path, "%s", opt.unix_path);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&su, sizeof su) != 0) {
            close(fd);
            return -1;
        }
        return fd;
    }
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    inet_pton(AF_INET, opt.host, &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (opt.tls)
        tls_start(fd);
    return fd;
}

/* Maps an SSL result to read/write's: -1 with EAGAIN when it must wait. */
static ssize_t tls_result(SSL *ssl, int r)
{
    int e;

    if (r > 0)
        return r;
    e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    errno = EPROTO;
    return -1;
}

static ssize_t io_write(int fd, const void *buf, size_t len)
{
    SSL *ssl = ssl_of(fd);

    return ssl ? tls_result(ssl, SSL_write(ssl, buf, (int)len))
               : write(fd, buf, len);
}

static ssize_t io_read(int fd, void *buf, size_t len)
{
    SSL *ssl = ssl_of(fd);

    return ssl ? tls_result(ssl, SSL_read(ssl, buf, (int)len))
               : read(fd, buf, len);
}

static void io_close(int fd)
{
    SSL *ssl = ssl_of(fd);

    if (ssl) {
        SSL_free(ssl);
        fd_ssl[fd] = NULL;
    }
    close(fd);
}

static void out_reserve(conn *c, size_t more)
{
    if (c->outlen + more <= c->outcap)
        return;
    while (c->outlen + more > c->outcap)
        c->outcap = c->outcap ? c->outcap * 2 : 4096;
    c->out = realloc(c->out, c->outcap);
    if (!c->out) {
        fprintf(stderr, "bench_net: out of memory\n");
        exit(1);
    }
}

/* Queues one request on c (when allowed) at time now. */
static bool issue_one(conn *c, int64_t now)
{
    int slot, n;
    size_t need = (size_t)opt.size * 4 + 512;

    if (c->inflight >= opt.depth || !may_issue(c->idx))
        return false;
    out_reserve(c, need);
    if (opt.resp) {
        slot = c->rtail;
        c->rtail = (c->rtail + 1) % opt.depth;
        n = fmt_resp(c->out + c->outlen, need, c->idx, c->seq);
    } else {
        slot = c->freeslots[--c->nfree];
        n = fmt_chand(c->out + c->outlen, need, c->idx, c->seq, slot);
    }
    if (n <= 0 || (size_t)n >= need) {
        fprintf(stderr, "bench_net: request too large\n");
        exit(1);
    }
    c->outlen += (size_t)n;
    c->t0[slot] = now;
    c->seq++;
    c->inflight++;
    note_issue(c->idx);
    return true;
}

static void flush_out(conn *c)
{
    while (c->outoff < c->outlen) {
        ssize_t w = io_write(c->fd, c->out + c->outoff, c->outlen - c->outoff);
        if (w < 0) {
            if (errno == EAGAIN)
                break;
            if (errno == EINTR)
                continue;
            fprintf(stderr, "bench_net: write: %s\n", strerror(errno));
            exit(1);
        }
        c->outoff += (size_t)w;
    }
    if (c->outoff == c->outlen)
        c->outoff = c->outlen = 0;
    bool want = c->outlen > 0;
    if (want != c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0),
                                 .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = want;
    }
}

/* Finds the delivery in an answer to an acknowledged recv: chand's
 * delivery id, or the stream entry's id (the second bulk string of the
 * XREADGROUP reply, after the stream's name).  Copies it into id (size
 * n); returns false when there is none. */
static bool ack_id(const char *p, size_t len, char *id, size_t n)
{
    const char *e = p + len, *q;
    size_t k = 0;

    if (!opt.resp) {
        q = strstr(p, "\"delivery\":{\"id\":");
        if (!q)
            return false;
        q += strlen("\"delivery\":{\"id\":");
        while (q < e && *q >= '0' && *q <= '9' && k + 1 < n)
            id[k++] = *q++;
        id[k] = '\0';
        return k > 0;
    }
    /* LMOVE's reply is the value itself: the first bulk string. */
    for (int bulk = opt.ack_list ? 1 : 0; p < e; p++) {
        if (*p != '$' || (p > e - 1))
            continue;
        long l = strtol(p + 1, NULL, 10);
        q = memchr(p, '\n', (size_t)(e - p));
        if (!q || l < 0 || q + 1 + l > e)
            return false;
        if (++bulk == 2) {
            if ((size_t)l >= n)
                return false;
            memcpy(id, q + 1, (size_t)l);
            id[l] = '\0';
            return true;
        }
        p = q + l;
    }
    return false;
}

/* ackrecv: queues the ack of delivery id on c, in a slot of its own, the
 * recv's issue time t0 kept so that the latency is the pair's. */
static void issue_ack(conn *c, const char *id, int64_t t0)
{
    size_t need = strlen(opt.key) + 256;
    int slot, n;

    out_reserve(c, need);
    if (opt.resp) {
        slot = c->rtail;
        c->rtail = (c->rtail + 1) % opt.depth;
        n = opt.ack_list
                ? fmt_resp_argv(c->out + c->outlen, need, 4,
                                (const char *[]){"LREM", proc_key(), "1", id})
                : fmt_resp_argv(c->out + c->outlen, need, 4,
                                (const char *[]){"XACK", opt.key, XGROUP, id});
    } else {
        slot = c->freeslots[--c->nfree];
        n = snprintf(c->out + c->outlen, need,
                     "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"ack\","
                     "\"params\":{\"name\":\"%s\",\"id\":%s}}\n",
                     slot, opt.key, id);
    }
    c->outlen += (size_t)n;
    c->t0[slot] = t0;
    c->is_ack[slot] = 1;
    c->inflight++;
}

/* One answer (text p, len bytes) for slot arrived at now. */
static void answered(conn *c, int slot, bool err, int64_t now, const char *p,
                     size_t len)
{
    bool recv_of_pair = opt.shape == SH_ACKRECV && !c->is_ack[slot];
    int64_t t0 = c->t0[slot];
    char id[64];

    if (err)
        errors++;
    if (counts(c->idx) && !recv_of_pair) {
        hist_add(now - t0);
        done_counted++;
    }
    c->inflight--;
    c->is_ack[slot] = 0;
    if (!opt.resp)
        c->freeslots[c->nfree++] = slot;
    if (recv_of_pair && !err) {
        if (ack_id(p, len, id, sizeof id))
            issue_ack(c, id, t0);
        else if (errors++ < 3)
            fprintf(stderr, "bench_net: no delivery in: %.200s\n", p);
    }
}

/* Parses the answers in c->in; returns how many. */
static int parse_in(conn *c, int64_t now)
{
    size_t off = 0;
    int n = 0;

    while (off < c->inlen) {
        if (opt.resp) {
            bool err = false;
            size_t m = resp_reply(c->in + off, c->inlen - off, &err);
            if (!m)
                break;
            answered(c, c->rhead, err, now, c->in + off, m);
            c->rhead = (c->rhead + 1) % opt.depth;
            off += m;
        } else {
            char *p = c->in + off;
            char *e = memchr(p, '\n', c->inlen - off);
            if (!e)
                break;
            *e = '\0';
            char *id = strstr(p, "\"id\":");
            int slot = id ? atoi(id + 5) : -1;
            if (slot < 0 || slot >= opt.depth) {
                fprintf(stderr, "bench_net: unexpected answer: %.200s\n", p);
                exit(1);
            }
            bool err = strstr(p, "\"error\":") != NULL;
            if (err && errors < 3)
                fprintf(stderr, "bench_net: error answer: %.200s\n", p);
            answered(c, slot, err, now, p, (size_t)(e - p));
            off = (size_t)(e - c->in) + 1;
        }
        n++;
    }
    memmove(c->in, c->in + off, c->inlen - off);
    c->inlen -= off;
    return n;
}

static void read_conn(conn *c, int64_t now)
{
    for (;;) {
        if (c->incap - c->inlen < 4096) {
            c->incap = c->incap ? c->incap * 2 : 16384;
            c->in = realloc(c->in, c->incap);
            if (!c->in) {
                fprintf(stderr, "bench_net: out of memory\n");
                exit(1);
            }
        }
        ssize_t r = io_read(c->fd, c->in + c->inlen, c->incap - c->inlen);
        if (r == 0) {
            fprintf(stderr, "bench_net: server closed connection %d\n", c->idx);
            exit(1);
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            fprintf(stderr, "bench_net: read: %s\n", strerror(errno));
            exit(1);
        }
        c->inlen += (size_t)r;
        /* What TLS already decrypted raises no epoll event: take it. */
        if ((size_t)r < 4096 && !(ssl_of(c->fd) && SSL_pending(ssl_of(c->fd))))
            break;
    }
    parse_in(c, now);
}

/* Sends one line or command on a blocking fd and reads one answer line
 * (chand) or reply (resp).  For set-up only. */
static void setup_call(int fd, const char *req)
{
    char buf[4096];
    size_t len = 0;

    if (io_write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
        fprintf(stderr, "bench_net: set-up write failed\n");
        exit(1);
    }
    for (;;) {
        ssize_t r = io_read(fd, buf + len, sizeof buf - 1 - len);
        if (r <= 0) {
            fprintf(stderr, "bench_net: set-up read failed\n");
            exit(1);
        }
        len += (size_t)r;
        buf[len] = '\0';
        if (memchr(buf, '\n', len))
            break;
    }
    if (strstr(buf, "\"error\"") || buf[0] == '-')
        fprintf(stderr, "bench_net: set-up: %s", buf);
}

/* Makes the channels the shape needs (chand) or clears the keys (resp). */
static void setup(void)
{
    int fd = dial();
    char req[1024];
    const char *k = opt.key;
    int64_t cap = opt.cap > 0 ? opt.cap : 1000000;

    if (fd < 0) {
        fprintf(stderr, "bench_net: cannot connect to %s:%d\n", opt.host,
                opt.port);
        exit(1);
    }
    if (opt.resp) {
        if (opt.shape == SH_ACKRECV && opt.ack_list) {
            fmt_resp_argv(req, sizeof req, 2,
                          (const char *[]){"DEL", proc_key()});
            setup_call(fd, req);
        } else if (opt.shape == SH_ACKRECV) {
            /* The stream acksend filled, read by a group from its start. */
            fmt_resp_argv(req, sizeof req, 6,
                          (const char *[]){"XGROUP", "CREATE", k, XGROUP, "0",
                                           "MKSTREAM"});
            setup_call(fd, req);
        } else if (opt.shape != SH_RECV) {
            snprintf(req, sizeof req,
                     "*6\r\n$3\r\nDEL\r\n$%zu\r\n%s\r\n$%zu\r\n%s0\r\n"
                     "$%zu\r\n%s1\r\n$%zu\r\n%s2\r\n$%zu\r\n%s3\r\n",
                     strlen(k), k, strlen(k) + 1, k, strlen(k) + 1, k,
                     strlen(k) + 1, k, strlen(k) + 1, k);
            setup_call(fd, req);
        }
        io_close(fd);
        return;
    }
    switch (opt.shape) {
    case SH_SEND:
    case SH_RECV:
    case SH_SENDRECV:
    case SH_ACKSEND:
    case SH_ACKRECV:
        snprintf(req, sizeof req,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"make\",\"params\""
                 ":{\"name\":\"%s\",\"cap\":%lld}}\n",
                 k, (long long)cap);
        setup_call(fd, req);
        break;
    case SH_HANDOFF:
    case SH_IDLE:
        snprintf(req, sizeof req,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"make\",\"params\""
                 ":{\"name\":\"%s\",\"cap\":0}}\n",
                 k);
        setup_call(fd, req);
        break;
    case SH_SELECT4:
        for (int i = 0; i < 4; i++) {
            snprintf(req, sizeof req,
                     "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"make\","
                     "\"params\":{\"name\":\"%s%d\",\"cap\":%lld}}\n",
                     k, i, (long long)cap);
            setup_call(fd, req);
        }
        break;
    default:
        break;
    }
    io_close(fd);
}

static void open_conns(void)
{
    conns = calloc((size_t)opt.conns, sizeof *conns);
    epfd = epoll_create1(0);
    if (!conns || epfd < 0) {
        fprintf(stderr, "bench_net: set-up failed\n");
        exit(1);
    }
    for (int i = 0; i < opt.conns; i++) {
        conn *c = &conns[i];
        c->idx = i;
        c->fd = dial();
        if (c->fd < 0) {
            fprintf(stderr, "bench_net: connection %d: %s\n", i,
                    strerror(errno));
            exit(1);
        }
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        c->t0 = calloc((size_t)opt.depth, sizeof *c->t0);
        c->freeslots = calloc((size_t)opt.depth, sizeof *c->freeslots);
        c->is_ack = calloc((size_t)opt.depth, 1);
        if (!c->t0 || !c->freeslots || !c->is_ack) {
            fprintf(stderr, "bench_net: out of memory\n");
            exit(1);
        }
        for (int s = opt.depth - 1; s >= 0; s--)
            c->freeslots[c->nfree++] = s;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    }
}

static volatile sig_atomic_t got_term;
static void on_term(int sig)
{
    (void)sig;
    got_term = 1;
}

/* The memory test: park one request per connection, say "ready", wait. */
static int run_idle(void)
{
    int64_t now = now_ns();
    struct epoll_event evs[64];

    for (int i = 0; i < opt.conns; i++) {
        issue_one(&conns[i], now);
        flush_out(&conns[i]);
    }
    /* A ping on a fresh connection answers after every earlier request
     * was read; give the server a moment to park them all. */
    usleep(500000);
    printf("ready %d\n", opt.conns);
    fflush(stdout);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    int64_t end =
        now_ns() + (int64_t)((opt.seconds > 0 ? opt.seconds : 60) * 1e9);
    while (!got_term && now_ns() < end) {
        int n = epoll_wait(epfd, evs, 64, 100);
        for (int i = 0; i < n; i++)
            read_conn(evs[i].data.ptr, now_ns());
    }
    return 0;
}

static int run_raw(void)
{
    struct epoll_event evs[256];
    int64_t deadline = opt.count > 0 ? INT64_MAX : (int64_t)(opt.seconds * 1e9);
    int64_t last = 0;

    t_start = now_ns();
    deadline = deadline == INT64_MAX ? INT64_MAX : t_start + deadline;
    for (int i = 0; i < opt.conns; i++) {
        while (issue_one(&conns[i], t_start))
            ;
        flush_out(&conns[i]);
    }
    for (;;) {
        int n = epoll_wait(epfd, evs, 256, 1000);
        int64_t now = now_ns();
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            return 1;
        }
        if (now >= deadline) {
            stop_issue = true;
            if (!t_end_issue)
                t_end_issue = now;
        }
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                read_conn(c, now);
            while (issue_one(c, now))
                ;
            flush_out(c);
        }
        if (n > 0)
            last = now;
        if (run_done())
            break;
        if (stop_issue) {
            /* Duration mode: everything issued is counted only if it
             * completed; stop once what is left has had 1 s. */
            int64_t left = 0;
            for (int i = 0; i < opt.conns; i++)
                left += counts(i) ? conns[i].inflight : 0;
            if (left == 0 || now - t_end_issue > 1000000000LL)
                break;
        }
        if (n == 0 && now - last > 10000000000LL) {
            fprintf(stderr, "bench_net: no answer for 10 s: stuck\n");
            return 1;
        }
    }
    t_end_issue = last ? last : now_ns();
    return 0;
}

/* ---- the libchand async client ----------------------------------------- */

typedef struct aconn {
    chand_async *a;
    int idx, inflight;
    uint64_t seq;
} aconn;

static struct event_base *abase;
static aconn *aconns;
static int aconnected;
static int64_t ainflight;

static json_t *async_params(int ci, uint64_t seq, const char **method)
{
    const char *k = opt.key;
    bool odd = seq & 1;
    char name[300], key[32];

    switch (opt.shape) {
    case SH_SEND:
    send:
        *method = "send";
        return json_pack("{s:s, s:s}", "name", k, "value", payload);
    case SH_RECV:
    case SH_IDLE:
    recv:
        *method = "recv";
        return json_pack("{s:s}", "name", k);
    case SH_SENDRECV:
        if (odd)
            goto recv;
        goto send;
    case SH_HANDOFF:
        if (ci < opt.conns / 2)
            goto send;
        goto recv;
    case SH_SELECT4: {
        json_t *cases = json_array();
        for (int i = 0; i < 4; i++) {
            snprintf(name, sizeof name, "%s%d", k, i);
            json_array_append_new(
                cases,
                odd ? json_pack("{s:s}", "recv", name)
                    : json_pack("{s:s, s:s}", "send", name, "value", payload));
        }
        *method = "select";
        return json_pack("{s:o}", "cases", cases);
    }
    case SH_MUTEX:
        snprintf(name, sizeof name, "%s%d", k, ci);
        *method = odd ? "mutex.unlock" : "mutex.lock";
        return json_pack("{s:s}", "name", name);
    case SH_MAP:
        snprintf(key, sizeof key, "k%u",
                 (unsigned)rand() % (unsigned)opt.keyspace);
        if (odd) {
            *method = "map.load";
            return json_pack("{s:s, s:s}", "name", k, "key", key);
        }
        *method = "map.store";
        return json_pack("{s:s, s:s, s:s}", "name", k, "key", key, "value",
                         payload);
    case SH_ATOMIC:
        *method = "atomic.add";
        return json_pack("{s:s, s:i}", "name", k, "delta", 1);
    case SH_ACKSEND: /* refused with --api async (main) */
    case SH_ACKRECV:
    case SH_NSHAPES:
        break;
    }
    return NULL;
}

static void async_issue(aconn *c);

typedef struct areq {
    aconn *c;
    int64_t t0;
} areq;

static void async_reply(chand_async *a, int rc, json_t *result,
                        const chand_error *err, void *arg)
{
    areq *q = arg;
    aconn *c = q->c;
    int64_t now = now_ns();
    (void)a;
    (void)result;

    ainflight--;
    if (stop_issue && rc == CHAND_ECONN) {
        free(q); /* handles freed at the end: not an answer */
        return;
    }
    if (rc < 0) {
        errors++;
        if (errors < 3)
            fprintf(stderr, "bench_net: error: %s %s\n", err->reason,
                    err->message);
    }
    if (counts(c->idx)) {
        hist_add(now - q->t0);
        done_counted++;
    }
    free(q);
    c->inflight--;
    t_end_issue = now;
    if (opt.count == 0 && now - t_start >= (int64_t)(opt.seconds * 1e9))
        stop_issue = true;
    if (run_done() || (stop_issue && ainflight == 0)) {
        event_base_loopbreak(abase);
        return;
    }
    async_issue(c);
}

static void async_issue(aconn *c)
{
    while (c->inflight < opt.depth && may_issue(c->idx)) {
        const char *method;
        json_t *params = async_params(c->idx, c->seq, &method);
        areq *q = malloc(sizeof *q);
        if (!q || !params) {
            fprintf(stderr, "bench_net: out of memory\n");
            exit(1);
        }
        q->c = c;
        q->t0 = now_ns();
        if (chand_async_call(c->a, method, params, CHAND_FOREVER, async_reply,
                             q) != 0) {
            fprintf(stderr, "bench_net: chand_async_call failed\n");
            exit(1);
        }
        c->seq++;
        c->inflight++;
        ainflight++;
        note_issue(c->idx);
    }
}

static void async_connected(chand_async *a, int rc, const chand_error *err,
                            void *arg)
{
    (void)a;
    (void)arg;
    if (rc < 0) {
        fprintf(stderr, "bench_net: connect: %s\n", err->message);
        exit(1);
    }
    if (++aconnected == opt.conns)
        event_base_loopbreak(abase);
}

static int run_async(void)
{
    abase = event_base_new();
    aconns = calloc((size_t)opt.conns, sizeof *aconns);
    if (!abase || !aconns)
        return 1;
    for (int i = 0; i < opt.conns; i++) {
        aconns[i].idx = i;
        if (chand_async_connect(abase, opt.host, opt.port, 10000,
                                async_connected, NULL, &aconns[i].a) != 0) {
            fprintf(stderr, "bench_net: chand_async_connect failed\n");
            return 1;
        }
    }
    event_base_dispatch(abase);
    t_start = now_ns();
    if (opt.count == 0) {
        /* Parked requests (handoff producers) may never answer: the run
         * ends 1 s after the duration at the latest. */
        struct timeval tv = {
            (time_t)opt.seconds + 1,
            (suseconds_t)((opt.seconds - (double)(time_t)opt.seconds) * 1e6)};
        event_base_loopexit(abase, &tv);
    }
    for (int i = 0; i < opt.conns; i++)
        async_issue(&aconns[i]);
    event_base_dispatch(abase);
    /* Requests still parked (handoff producers) fail with ECONN here;
     * they are not counted any more. */
    stop_issue = true;
    int64_t end = t_end_issue;
    int64_t counted = done_counted, errs = errors;
    for (int i = 0; i < opt.conns; i++)
        chand_async_free(aconns[i].a);
    done_counted = counted;
    errors = errs;
    t_end_issue = end;
    event_base_free(abase);
    return 0;
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_net -p PORT [-h HOST] [-t SHAPE] [-c CONNS] "
               "[-P DEPTH] [-S SIZE]\n"
               "                 [-n COUNT | -d SECONDS] [--proto chand|resp] "
               "[--api raw|async]\n"
               "                 [--key NAME] [--name LABEL] [--cap N] "
               "[--keyspace N]\n"
               "                 [--unix PATH | --tls [--cacert FILE]] "
               "[--ack-list]\n"
               "shapes: send recv sendrecv handoff select4 mutex map atomic "
               "idle acksend ackrecv\n");
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"proto", 1, NULL, 'R'},    {"api", 1, NULL, 'A'},
        {"key", 1, NULL, 'k'},      {"name", 1, NULL, 'N'},
        {"cap", 1, NULL, 'C'},      {"keyspace", 1, NULL, 'K'},
        {"help", 0, NULL, 'H'},     {"unix", 1, NULL, 'U'},
        {"tls", 0, NULL, 'T'},      {"cacert", 1, NULL, 'a'},
        {"ack-list", 0, NULL, 'L'}, {0, 0, 0, 0},
    };
    int ch, rc;

    while ((ch = getopt_long(argc, argv, "h:p:t:c:P:S:n:d:", lo, NULL)) != -1) {
        switch (ch) {
        case 'h':
            opt.host = optarg;
            break;
        case 'p':
            opt.port = atoi(optarg);
            break;
        case 't':
            opt.shape = SH_NSHAPES;
            for (int i = 0; i < SH_NSHAPES; i++)
                if (strcmp(optarg, shape_names[i]) == 0)
                    opt.shape = (enum shape)i;
            if (opt.shape == SH_NSHAPES) {
                fprintf(stderr, "bench_net: unknown shape %s\n", optarg);
                return 2;
            }
            break;
        case 'c':
            opt.conns = atoi(optarg);
            break;
        case 'P':
            opt.depth = atoi(optarg);
            break;
        case 'S':
            opt.size = atoi(optarg);
            break;
        case 'n':
            opt.count = atoll(optarg);
            break;
        case 'd':
            opt.seconds = atof(optarg);
            break;
        case 'R':
            opt.resp = strcmp(optarg, "resp") == 0;
            break;
        case 'A':
            opt.async = strcmp(optarg, "async") == 0;
            break;
        case 'k':
            opt.key = optarg;
            break;
        case 'N':
            opt.name = optarg;
            break;
        case 'C':
            opt.cap = atoll(optarg);
            break;
        case 'K':
            opt.keyspace = atoi(optarg);
            break;
        case 'U':
            opt.unix_path = optarg;
            break;
        case 'T':
            opt.tls = true;
            break;
        case 'a':
            opt.cacert = optarg;
            break;
        case 'L':
            opt.ack_list = true;
            break;
        case 'H':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (opt.port <= 0 || opt.conns < 1 || opt.depth < 1 || opt.size < 1 ||
        opt.size > 1 << 20 || opt.keyspace < 1 ||
        (opt.count <= 0 && opt.seconds <= 0 && opt.shape != SH_IDLE)) {
        usage(stderr);
        return 2;
    }
    if (opt.shape == SH_HANDOFF && opt.conns < 2)
        opt.conns = 2;
    if ((opt.tls || opt.unix_path) && (opt.async || opt.shape == SH_IDLE)) {
        fprintf(stderr, "bench_net: --tls and --unix: raw API, no idle\n");
        return 2;
    }
    if (opt.async && (opt.shape == SH_ACKSEND || opt.shape == SH_ACKRECV)) {
        fprintf(stderr, "bench_net: acksend/ackrecv: raw API only\n");
        return 2;
    }
    if (opt.resp && opt.async) {
        fprintf(stderr, "bench_net: --api async speaks chand only\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    payload = malloc((size_t)opt.size + 1);
    memset(payload, 'x', (size_t)opt.size);
    payload[opt.size] = '\0';
    if (!opt.name)
        opt.name = shape_names[opt.shape];

    setup();
    if (opt.shape == SH_IDLE) {
        open_conns();
        return run_idle();
    }
    if (opt.async) {
        rc = run_async();
    } else {
        open_conns();
        rc = run_raw();
    }
    if (rc != 0)
        return rc;

    double secs = (double)(t_end_issue - t_start) / 1e9;
    if (secs <= 0)
        secs = 1e-9;
    printf("bench: %s_ops %.0f ops/s\n", opt.name, (double)done_counted / secs);
    printf("bench: %s_count %lld ops\n", opt.name, (long long)done_counted);
    printf("bench: %s_p50 %.1f us\n", opt.name, hist_pct(0.50));
    printf("bench: %s_p99 %.1f us\n", opt.name, hist_pct(0.99));
    printf("bench: %s_p999 %.1f us\n", opt.name, hist_pct(0.999));
    if (errors)
        printf("bench: %s_errors %lld answers\n", opt.name, (long long)errors);
    return 0;
}
