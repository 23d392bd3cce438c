/*
 * conn.c - libchand's blocking connection: connecting (getaddrinfo, IPv4
 * and IPv6, a total connect timeout), framing (one JSON line each way),
 * the generic chand_call, and the error vocabulary (codes, reasons,
 * chand_strerror) shared with the asynchronous API.
 *
 * The socket stays non-blocking and every wait goes through poll() with
 * the call's deadline, so no call can hang past its timeout plus grace.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* The Makefile passes its VERSION (chand's, one for everything). */
#ifndef CHAND_VERSION
#define CHAND_VERSION "1.0.0"
#endif

/* ------------------------------------------------------------------ */
/* Errors                                                             */
/* ------------------------------------------------------------------ */

static const struct {
    const char *reason;
    int code;
    const char *text;
} chand_errors[] = {
    { "closed", CHAND_ECLOSED, "channel closed" },
    { "timeout", CHAND_ETIMEOUT, "timed out" },
    { "not_found", CHAND_ENOTFOUND, "no such object" },
    { "exists", CHAND_EEXISTS, "object exists" },
    { "wrong_type", CHAND_EWRONGTYPE, "wrong type" },
    { "negative_counter", CHAND_ENEGATIVE, "negative WaitGroup counter" },
    { "not_locked", CHAND_ENOTLOCKED, "not locked" },
    { "deadlock", CHAND_EDEADLOCK, "deadlock" },
    { "too_large", CHAND_ETOOLARGE, "too large" },
    { "limit", CHAND_ELIMIT, "server limit reached" },
    { "cancelled", CHAND_ECANCELLED, "cancelled" },
    { "misuse", CHAND_EMISUSE, "misuse" },
    { "invalid", CHAND_EINVALID, "invalid request" },
    { "unauthenticated", CHAND_EUNAUTH, "not authenticated" },
    { "denied", CHAND_EDENIED, "denied by the user's rules" },
    { NULL, CHAND_ESERVER, "server error" },
    { NULL, CHAND_ECONNECT, "cannot connect" },
    { NULL, CHAND_ECONN, "connection lost" },
    { NULL, CHAND_EPROTO, "protocol error" },
    { NULL, CHAND_ENOMEM, "out of memory" },
    { NULL, CHAND_EARG, "invalid argument" },
};
#define CHAND_NERRORS (sizeof chand_errors / sizeof chand_errors[0])

const char *chand_strerror(int code)
{
    if (code == 0)
        return "success";
    for (size_t i = 0; i < CHAND_NERRORS; i++)
        if (chand_errors[i].code == code)
            return chand_errors[i].text;
    return "unknown error";
}

int chand_code_from_reason(const char *reason)
{
    if (!reason)
        return CHAND_ESERVER;
    for (size_t i = 0; i < CHAND_NERRORS && chand_errors[i].reason; i++)
        if (strcmp(chand_errors[i].reason, reason) == 0)
            return chand_errors[i].code;
    return CHAND_ESERVER;
}

const char *chand_version(void)
{
    return CHAND_VERSION;
}

int chand__seterr(chand_error *err, int code, int rpc_code,
                  const char *reason, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return code;
    err->code = code;
    err->rpc_code = rpc_code;
    snprintf(err->reason, sizeof err->reason, "%s", reason ? reason : "");
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return code;
}

int chand__answer_error(const proto_answer *ans, chand_error *err)
{
    json_t *r = json_object_get(ans->data, "reason");
    const char *reason = json_is_string(r) ? json_string_value(r) : NULL;
    int code;

    if (reason)
        code = chand_code_from_reason(reason);
    else if (ans->code <= -32600 && ans->code >= -32700)
        code = CHAND_EINVALID; /* JSON-RPC's own errors */
    else
        code = CHAND_ESERVER;
    return chand__seterr(err, code, ans->code, reason ? reason : "", "%s",
                         ans->message ? ans->message : "");
}

json_t *chand__params(const char *method, json_t *params,
                      int64_t timeout_ms)
{
    const proto_method *m = proto_method_find(method);
    json_t *p;

    if (params && !json_is_object(params))
        return NULL;
    p = params ? json_copy(params) : json_object();
    if (!p)
        return NULL;
    /* Only blocking methods accept timeout_ms: the server rejects unknown
     * parameters.  An unknown method gets it too; the server will answer
     * "method not found" anyway. */
    if (timeout_ms >= 0 && (!m || m->blocking)) {
        if (json_object_set_new(p, "timeout_ms", json_integer(timeout_ms))) {
            json_decref(p);
            return NULL;
        }
    }
    return p;
}

int64_t chand__now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ */
/* Addresses and connecting                                           */
/* ------------------------------------------------------------------ */

int chand_parse_address(const char *addr, char **host, int *port)
{
    const char *colon, *h = addr, *hend;
    char *end;
    long p = CHAND_DEFAULT_PORT;

    if (!addr || !host || !port)
        return CHAND_EARG;
    if (addr[0] == '[') {
        /* [v6]:port or [v6] */
        h = addr + 1;
        hend = strchr(h, ']');
        if (!hend)
            return CHAND_EARG;
        colon = hend[1] == ':' ? hend + 1 : NULL;
        if (!colon && hend[1] != '\0')
            return CHAND_EARG;
    } else {
        colon = strrchr(addr, ':');
        /* A bare IPv6 address has several colons and no port. */
        if (colon && strchr(addr, ':') != colon)
            colon = NULL;
        hend = colon ? colon : addr + strlen(addr);
    }
    if (colon) {
        errno = 0;
        p = strtol(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end != '\0' || p < 1 || p > 65535)
            return CHAND_EARG;
    }
    if (hend == h)
        *host = strdup(CHAND_DEFAULT_HOST);
    else
        *host = strndup(h, (size_t)(hend - h));
    if (!*host)
        return CHAND_ENOMEM;
    *port = (int)p;
    return 0;
}

int chand__poll(int fd, short events, int64_t deadline)
{
    struct pollfd pfd = { .fd = fd, .events = events };

    for (;;) {
        int wait = -1, rc;

        if (deadline >= 0) {
            int64_t left = deadline - chand__now_ms();
            if (left < 0)
                left = 0;
            wait = left > 1000000000 ? 1000000000 : (int)left;
        }
        rc = poll(&pfd, 1, wait);
        if (rc > 0)
            return 1;
        if (rc == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

/* Connects one address before deadline; returns the fd or -errno. */
static int conn_dial_one(const struct addrinfo *ai, int64_t deadline)
{
    int fd, one = 1, soerr = 0, rc;
    socklen_t len = sizeof soerr;

    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                ai->ai_protocol);
    if (fd < 0)
        return -errno;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        goto out_ok;
    if (errno != EINPROGRESS) {
        rc = -errno;
        goto out_close;
    }
    rc = chand__poll(fd, POLLOUT, deadline);
    if (rc <= 0) {
        rc = rc == 0 ? -ETIMEDOUT : -errno;
        goto out_close;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) {
        rc = -errno;
        goto out_close;
    }
    if (soerr) {
        rc = -soerr;
        goto out_close;
    }
out_ok:
    /* Requests are small and answered one by one: Nagle would only add
     * latency. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
out_close:
    close(fd);
    return rc;
}

/* Resolves host and connects to the first address that answers. */
static int conn_dial(const char *host, int port, int64_t deadline,
                     int *fdp, chand_error *err)
{
    struct addrinfo hints = { 0 }, *res, *ai;
    char portstr[16];
    int rc, last = -ECONNREFUSED;

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    snprintf(portstr, sizeof portstr, "%d", port);
    rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0)
        return chand__seterr(err, CHAND_ECONNECT, 0, "",
                             "cannot resolve %s: %s", host,
                             gai_strerror(rc));
    for (ai = res; ai; ai = ai->ai_next) {
        int fd = conn_dial_one(ai, deadline);
        if (fd >= 0) {
            freeaddrinfo(res);
            *fdp = fd;
            return 0;
        }
        last = fd;
        if (last == -ETIMEDOUT)
            break;
    }
    freeaddrinfo(res);
    return chand__seterr(err, CHAND_ECONNECT, 0, "",
                         "cannot connect to %s:%d: %s", host, port,
                         strerror(-last));
}

/* Connects the unix socket at path; returns 0 with *fdp or a code. */
static int conn_dial_unix(const char *path, int64_t deadline, int *fdp,
                          chand_error *err)
{
    struct sockaddr_un sa;
    int fd, rc;

    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path)
        return chand__seterr(err, CHAND_EARG, 0, "",
                             "unix socket path too long: %s", path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return chand__seterr(err, CHAND_ECONNECT, 0, "", "socket: %s",
                             strerror(errno));
    /* A unix connect completes at once, or says EAGAIN while the
     * listener's backlog is full: wait for room as for TCP. */
    while ((rc = connect(fd, (struct sockaddr *)&sa, sizeof sa)) != 0 &&
           (errno == EAGAIN || errno == EINTR)) {
        if (chand__poll(fd, POLLOUT, deadline) <= 0) {
            errno = ETIMEDOUT;
            break;
        }
    }
    if (rc != 0) {
        int e = errno;
        close(fd);
        return chand__seterr(err, CHAND_ECONNECT, 0, "",
                             "cannot connect to unix:%s: %s", path,
                             strerror(e));
    }
    *fdp = fd;
    return 0;
}

/* Drops the socket; the handle stays, failing calls with CHAND_ECONN. */
static void conn_drop(chand_conn *c)
{
    chand__tls_drop(c, false);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->rlen = 0;
}

static int conn_call_until(chand_conn *c, const char *method,
                           json_t *params, int64_t timeout_ms,
                           int64_t deadline, json_t **result);

/* Says hello before deadline (the one connecting had: a listener that
 * never answers costs the connect timeout, not that plus a grace) and
 * remembers the session.  A server that does not know hello (an older
 * one) is accepted as is. */
static int conn_hello(chand_conn *c, int64_t deadline)
{
    json_t *res = NULL, *params;
    const char *s;
    int rc;

    params = json_pack("{s:i}", "version", CHAND_PROTOCOL_VERSION);
    if (params && c->hb_ms > 0)
        json_object_set_new(params, "heartbeat_ms", json_integer(c->hb_ms));
    if (params && c->opts.user &&
        (json_object_set_new(params, "user", json_string(c->opts.user)) ||
         json_object_set_new(params, "password",
                             json_string(c->opts.password
                                             ? c->opts.password
                                             : "")))) {
        json_decref(params);
        params = NULL;
    }
    if (!params)
        return chand__seterr(&c->err, CHAND_ENOMEM, 0, "", "out of memory");
    rc = conn_call_until(c, "hello", params, -1, deadline, &res);
    json_decref(params);
    if (rc == CHAND_EINVALID && c->err.rpc_code == PROTO_METHOD_NOT_FOUND)
        return 0;
    if (rc < 0)
        return rc;
    s = json_string_value(json_object_get(res, "session"));
    if (!s && json_is_integer(json_object_get(res, "session")))
        snprintf(c->session, sizeof c->session, "%lld",
                 (long long)json_integer_value(
                     json_object_get(res, "session")));
    else
        snprintf(c->session, sizeof c->session, "%s", s ? s : "");
    s = json_string_value(json_object_get(res, "server"));
    snprintf(c->server, sizeof c->server, "%s", s ? s : "");
    json_decref(res);
    return 0;
}

int chand_connect(const char *host, int port, int64_t timeout_ms,
                  chand_conn **out, chand_error *err)
{
    chand_conn *c;
    int rc;

    if (!out)
        return chand__seterr(err, CHAND_EARG, 0, "", "out is NULL");
    *out = NULL;
    if (port < 0 || port > 65535)
        return chand__seterr(err, CHAND_EARG, 0, "", "bad port %d", port);
    c = calloc(1, sizeof *c);
    if (!c)
        return chand__seterr(err, CHAND_ENOMEM, 0, "", "out of memory");
    c->fd = -1;
    c->next_id = 1;
    c->port = port ? port : CHAND_DEFAULT_PORT;
    c->host = strdup(host && *host ? host : CHAND_DEFAULT_HOST);
    if (!c->host) {
        rc = chand__seterr(err, CHAND_ENOMEM, 0, "", "out of memory");
        goto out_free;
    }
    rc = chand_reconnect(c, timeout_ms);
    if (rc < 0) {
        if (err)
            *err = c->err;
        goto out_free;
    }
    *out = c;
    return 0;
out_free:
    chand_close_conn(c);
    return rc;
}

int chand_reconnect(chand_conn *c, int64_t timeout_ms)
{
    int64_t deadline;
    int rc;

    if (!c)
        return CHAND_EARG;
    conn_drop(c);
    c->session[0] = c->server[0] = '\0';
    deadline = timeout_ms < 0 ? -1 : chand__now_ms() + timeout_ms;
    if (c->kind == CHAND__UNIX)
        rc = conn_dial_unix(c->host, deadline, &c->fd, &c->err);
    else
        rc = conn_dial(c->host, c->port, deadline, &c->fd, &c->err);
    if (rc < 0)
        return rc;
    if (c->kind == CHAND__TLS && (rc = chand__tls_start(c, deadline)) < 0) {
        conn_drop(c);
        return rc;
    }
    rc = conn_hello(c, deadline);
    if (rc < 0) {
        char why[sizeof c->err.message];

        conn_drop(c);
        snprintf(why, sizeof why, "%s", c->err.message);
        /* A server that refuses us (say, another protocol version) keeps
         * its own error; one that does not answer, or not in our protocol,
         * is a failure to connect, said in words that point at the likely
         * cause: the address is not a chand server's. */
        if (rc == CHAND_ETIMEOUT)
            return chand__seterr(&c->err, CHAND_ECONNECT, 0, "",
                                 "%s:%d accepted the connection but did "
                                 "not answer hello within %lld ms: is it "
                                 "a chand server?",
                                 c->host, c->port, (long long)timeout_ms);
        if (rc == CHAND_EPROTO)
            return chand__seterr(&c->err, CHAND_ECONNECT, 0, "",
                                 "%s:%d is not a chand server (%.180s)",
                                 c->host, c->port, why);
        if (rc == CHAND_ECONN)
            return chand__seterr(&c->err, CHAND_ECONNECT, 0, "",
                                 "no hello from %s:%d (%.160s): is it a "
                                 "chand server?",
                                 c->host, c->port, why);
        return rc;
    }
    c->err = (chand_error){ 0 };
    return 0;
}

int chand_set_heartbeat(chand_conn *c, int64_t ms)
{
    json_t *params;
    int rc;

    if (!c || ms < 0 || (ms > 0 && ms < 100))
        return c ? chand__seterr(&c->err, CHAND_EARG, 0, "",
                                 "heartbeat must be 0 or at least 100 ms")
                 : CHAND_EARG;
    params = json_pack("{s:i, s:I}", "version", CHAND_PROTOCOL_VERSION,
                       "heartbeat_ms", (json_int_t)ms);
    if (!params)
        return chand__seterr(&c->err, CHAND_ENOMEM, 0, "", "out of memory");
    rc = chand_call(c, "hello", params, -1, NULL);
    json_decref(params);
    if (rc == 0)
        c->hb_ms = ms;
    return rc;
}

void chand_close_conn(chand_conn *c)
{
    if (!c)
        return;
    conn_drop(c);
    chand__tls_drop(c, true);
    chand__options_clear(&c->opts);
    free(c->rbuf);
    free(c->host);
    free(c);
}

/* Fills c's kind, host (the path of a unix socket) and port from url.
 * Returns 0, CHAND_EARG or CHAND_ENOMEM. */
static int conn_parse_url(chand_conn *c, const char *url)
{
    int rc;

    if (strncmp(url, "unix:", 5) == 0) {
        const char *path = url + 5;
        if (strncmp(path, "//", 2) == 0)
            path += 2; /* unix:///run/x.sock */
        if (path[0] != '/')
            return CHAND_EARG;
        c->kind = CHAND__UNIX;
        c->host = strdup(path);
        return c->host ? 0 : CHAND_ENOMEM;
    }
    if (strncmp(url, "chands://", 9) == 0) {
        c->kind = CHAND__TLS;
        url += 9;
    } else if (strncmp(url, "chand://", 8) == 0) {
        url += 8;
    } else if (strstr(url, "://")) {
        return CHAND_EARG;
    }
    rc = chand_parse_address(url, &c->host, &c->port);
    if (rc < 0)
        return rc;
    /* chand_parse_address gives the TCP port when none is named. */
    if (c->kind == CHAND__TLS && !strchr(url[0] == '[' ? strchr(url, ']')
                                                       : url, ':'))
        c->port = CHAND_DEFAULT_TLS_PORT;
    return 0;
}

int chand_connect_url(const char *url, const chand_options *opts,
                      int64_t timeout_ms, chand_conn **out, chand_error *err)
{
    chand_conn *c;
    int rc;

    if (!out || !url)
        return chand__seterr(err, CHAND_EARG, 0, "", "url or out is NULL");
    *out = NULL;
    c = calloc(1, sizeof *c);
    if (!c)
        return chand__seterr(err, CHAND_ENOMEM, 0, "", "out of memory");
    c->fd = -1;
    c->next_id = 1;
    rc = conn_parse_url(c, url);
    if (rc < 0) {
        rc = chand__seterr(err, rc, 0, "",
                           rc == CHAND_EARG
                               ? "bad server URL '%.200s' (chand://HOST:PORT, "
                                 "chands://HOST:PORT or unix:/PATH)"
                               : "out of memory (%.200s)",
                           url);
        goto out_free;
    }
    if (chand__options_copy(&c->opts, opts) < 0) {
        rc = chand__seterr(err, CHAND_ENOMEM, 0, "", "out of memory");
        goto out_free;
    }
    rc = chand_reconnect(c, timeout_ms);
    if (rc < 0) {
        if (err)
            *err = c->err;
        goto out_free;
    }
    *out = c;
    return 0;
out_free:
    chand_close_conn(c);
    return rc;
}

bool chand_connected(const chand_conn *c)
{
    return c && c->fd >= 0;
}

const char *chand_session(const chand_conn *c)
{
    return c ? c->session : "";
}

const char *chand_server(const chand_conn *c)
{
    return c ? c->server : "";
}

const chand_error *chand_last_error(const chand_conn *c)
{
    return c ? &c->err : NULL;
}

/* ------------------------------------------------------------------ */
/* Framing                                                            */
/* ------------------------------------------------------------------ */

/* Writes all of buf before deadline.  Returns 0 or a negative code with
 * the connection dropped. */
static int conn_write(chand_conn *c, const char *buf, size_t len,
                      int64_t deadline)
{
    c->last_sent = chand__now_ms();
    while (len > 0) {
        short want;
        ssize_t n = chand__send(c, buf, len, &want);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = chand__poll(c->fd, want, deadline);
            if (rc > 0)
                continue;
            conn_drop(c);
            if (rc == 0)
                return chand__seterr(&c->err, CHAND_ETIMEOUT, 0, "",
                                     "timed out writing to the server; "
                                     "connection closed");
            return chand__seterr(&c->err, CHAND_ECONN, 0, "", "poll: %s",
                                 strerror(errno));
        }
        /* The socket stays open: the server may have hung up after
         * answering why (a line over its limit), and the caller reads
         * that answer before giving up. */
        return chand__seterr(&c->err, CHAND_ECONN, 0, "",
                             "connection lost: %s",
                             n < 0 ? strerror(errno) : "short write");
    }
    return 0;
}

/* Waits for want until deadline as chand__poll does; with a heartbeat,
 * sends a ping (a notification: no answer to read) whenever nothing was
 * sent for a third of it, so that a call blocked for long (a lock wait)
 * keeps the session alive.  Returns 1, 0 (deadline) or -1. */
static int conn_poll_hb(chand_conn *c, short want, int64_t deadline)
{
    static const char ping[] = "{\"jsonrpc\":\"2.0\",\"method\":\"ping\"}\n";

    for (;;) {
        int64_t beat, until = deadline;
        int rc;

        if (c->hb_ms <= 0)
            return chand__poll(c->fd, want, deadline);
        beat = c->last_sent + c->hb_ms / 3;
        if (until < 0 || beat < until)
            until = beat;
        rc = chand__poll(c->fd, want, until);
        if (rc != 0 || until == deadline)
            return rc;
        if (deadline >= 0 && chand__now_ms() >= deadline)
            return 0;
        if (conn_write(c, ping, sizeof ping - 1, deadline) < 0)
            return -1;
    }
}

/* Reads one line (without \n) before deadline into a new malloc'd string.
 * Returns its length or a negative code with the connection dropped. */
static ssize_t conn_readline(chand_conn *c, char **line, int64_t deadline)
{
    size_t scanned = 0;

    for (;;) {
        char *nl = c->rlen > scanned
                       ? memchr(c->rbuf + scanned, '\n', c->rlen - scanned)
                       : NULL;
        ssize_t n;
        short want;

        if (nl) {
            size_t len = (size_t)(nl - c->rbuf);
            *line = malloc(len + 1);
            if (!*line)
                return chand__seterr(&c->err, CHAND_ENOMEM, 0, "",
                                     "out of memory");
            memcpy(*line, c->rbuf, len);
            (*line)[len] = '\0';
            memmove(c->rbuf, nl + 1, c->rlen - len - 1);
            c->rlen -= len + 1;
            return (ssize_t)len;
        }
        scanned = c->rlen;
        if (c->rlen > CHAND__MAX_LINE) {
            conn_drop(c);
            return chand__seterr(&c->err, CHAND_EPROTO, 0, "",
                                 "answer longer than %zu bytes",
                                 CHAND__MAX_LINE);
        }
        if (c->rcap - c->rlen < 4096) {
            size_t ncap = c->rcap ? c->rcap * 2 : 16384;
            char *nb = realloc(c->rbuf, ncap);
            if (!nb)
                return chand__seterr(&c->err, CHAND_ENOMEM, 0, "",
                                     "out of memory");
            c->rbuf = nb;
            c->rcap = ncap;
        }
        n = chand__recv(c, c->rbuf + c->rlen, c->rcap - c->rlen, &want);
        if (n > 0) {
            c->rlen += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = conn_poll_hb(c, want, deadline);
            if (rc > 0)
                continue;
            conn_drop(c);
            if (rc == 0)
                /* The server did not answer within its own timeout plus
                 * the grace period.  The answer may still come, so the
                 * connection cannot be trusted to stay in step: close it,
                 * which also makes the server release this session. */
                return chand__seterr(&c->err, CHAND_ETIMEOUT, 0, "",
                                     "no answer from the server in time; "
                                     "connection closed");
            return chand__seterr(&c->err, CHAND_ECONN, 0, "", "poll: %s",
                                 strerror(errno));
        }
        conn_drop(c);
        return chand__seterr(&c->err, CHAND_ECONN, 0, "",
                             "connection lost: %s",
                             n == 0 ? "closed by the server"
                                    : strerror(errno));
    }
}

/* Reads answers until the one for id; returns 0 with *msg (new) and *ans
 * (borrowing from *msg), or a negative code. */
static int conn_await(chand_conn *c, int64_t id, int64_t deadline,
                      json_t **msg, proto_answer *ans)
{
    const proto_limits lim = { CHAND__MAX_LINE, CHAND__MAX_DEPTH };

    for (;;) {
        char *line = NULL;
        proto_error perr;
        ssize_t n = conn_readline(c, &line, deadline);
        json_t *m;

        if (n < 0)
            return (int)n;
        m = proto_parse_line(line, (size_t)n, &lim, &perr);
        if (!m || proto_answer_read(m, ans, &perr) < 0) {
            char seen[64];
            size_t k = (size_t)n < 60 ? (size_t)n : 60;

            /* What came, printable, so that "it said HTTP/1.1 400" tells
             * the user where they are pointed. */
            for (size_t i = 0; i < k; i++)
                seen[i] = (unsigned char)line[i] < 0x20 ||
                                  (unsigned char)line[i] >= 0x7f
                              ? '?'
                              : line[i];
            seen[k] = '\0';
            free(line);
            json_decref(m);
            conn_drop(c);
            return chand__seterr(&c->err, CHAND_EPROTO, 0, "",
                                 "bad answer from the server: %s; it "
                                 "said '%s'",
                                 perr.message, seen);
        }
        free(line);
        /* Answers to other ids are late answers to calls this client gave
         * up on; a null id is the server complaining about a line it could
         * not read, which can only be ours. */
        if (ans->id == id || ans->id < 0) {
            *msg = m;
            return 0;
        }
        json_decref(m);
    }
}

/* Sends one request and reads its answer before deadline (ms on the
 * monotonic clock, -1 forever); timeout_ms is what the request carries.
 * Returns 0 with *result (new) or a negative code. */
static int conn_call_until(chand_conn *c, const char *method,
                           json_t *params, int64_t timeout_ms,
                           int64_t deadline, json_t **result)
{
    json_t *p, *req, *msg = NULL;
    proto_answer ans;
    int64_t id;
    char *line;
    size_t len;
    int rc;

    if (result)
        *result = NULL;
    if (!c || !method)
        return CHAND_EARG;
    if (c->fd < 0)
        return chand__seterr(&c->err, CHAND_ECONN, 0, "",
                             "not connected");
    p = chand__params(method, params, timeout_ms);
    if (!p)
        return chand__seterr(&c->err, CHAND_EARG, 0, "",
                             "params must be a JSON object");
    id = c->next_id++;
    req = proto_request_new(id, method, p);
    if (!req)
        return chand__seterr(&c->err, CHAND_ENOMEM, 0, "", "out of memory");
    line = proto_dump_line(req, &len);
    json_decref(req);
    if (!line)
        return chand__seterr(&c->err, CHAND_ENOMEM, 0, "",
                             "cannot encode the request");
    rc = conn_write(c, line, len, deadline);
    free(line);
    if (rc == CHAND_ECONN && c->fd >= 0) {
        /* Writing failed because the server hung up: keep its last word
         * (say, too_large) if it is already here, else report the loss. */
        chand_error lost = c->err;
        rc = conn_await(c, id, chand__now_ms() + 100, &msg, &ans);
        conn_drop(c);
        if (rc < 0) {
            c->err = lost;
            return CHAND_ECONN;
        }
    } else if (rc < 0) {
        return rc;
    } else {
        rc = conn_await(c, id, deadline, &msg, &ans);
        if (rc < 0)
            return rc;
    }
    if (ans.code != 0) {
        rc = chand__answer_error(&ans, &c->err);
        json_decref(msg);
        return rc;
    }
    if (!json_is_object(ans.result)) {
        json_decref(msg);
        return chand__seterr(&c->err, CHAND_EPROTO, 0, "",
                             "result is not an object");
    }
    if (result)
        *result = json_incref(ans.result);
    json_decref(msg);
    c->err = (chand_error){ 0 };
    return 0;
}

int chand_call(chand_conn *c, const char *method, json_t *params,
               int64_t timeout_ms, json_t **result)
{
    int64_t deadline = timeout_ms < 0 ? -1
                                      : chand__now_ms() + timeout_ms +
                                            CHAND_GRACE_MS;

    return conn_call_until(c, method, params, timeout_ms, deadline, result);
}
