/*
 * conn.c - libchand's connecting: addresses and URLs, dialing (getaddrinfo,
 * IPv4 and IPv6, unix sockets, a total connect timeout), the hello,
 * reconnecting, closing, and the connection's accessors.
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
    struct pollfd pfd = {.fd = fd, .events = events};

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
static int conn_dial(const char *host, int port, int64_t deadline, int *fdp,
                     chand_error *err)
{
    struct addrinfo hints = {0}, *res, *ai;
    char portstr[16];
    int rc, last = -ECONNREFUSED;

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    snprintf(portstr, sizeof portstr, "%d", port);
    rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0)
        return chand__seterr(err, CHAND_ECONNECT, 0, "",
                             "cannot resolve %s: %s", host, gai_strerror(rc));
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
void chand__conn_drop(chand_conn *c)
{
    chand__tls_drop(c, false);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->rlen = 0;
}

json_t *chand__hello_params(const chand_options *o, int64_t hb_ms)
{
    json_t *params = json_pack("{s:i}", "version", CHAND_PROTOCOL_VERSION);

    if (params && hb_ms > 0 &&
        json_object_set_new(params, "heartbeat_ms", json_integer(hb_ms))) {
        json_decref(params);
        return NULL;
    }
    if (params && o->user &&
        (json_object_set_new(params, "user", json_string(o->user)) ||
         json_object_set_new(params, "password",
                             json_string(o->password ? o->password : "")))) {
        json_decref(params);
        return NULL;
    }
    return params;
}

void chand__hello_done(const json_t *res, char *session, size_t slen,
                       char *server, size_t srvlen)
{
    const json_t *sv = json_object_get(res, "session");
    const char *s = json_string_value(sv);

    if (!s && json_is_integer(sv))
        snprintf(session, slen, "%lld", (long long)json_integer_value(sv));
    else
        snprintf(session, slen, "%s", s ? s : "");
    if (server) {
        s = json_string_value(json_object_get(res, "server"));
        snprintf(server, srvlen, "%s", s ? s : "");
    }
}

/* Says hello before deadline (the one connecting had: a listener that
 * never answers costs the connect timeout, not that plus a grace) and
 * remembers the session.  A server that does not know hello (an older
 * one) is accepted as is. */
static int conn_hello(chand_conn *c, int64_t deadline)
{
    json_t *res = NULL, *params;
    int rc;

    params = chand__hello_params(&c->opts, c->hb_ms);
    if (!params)
        return chand__seterr(&c->err, CHAND_ENOMEM, 0, "", "out of memory");
    rc = chand__call_once(c, "hello", params, -1, deadline, &res);
    json_decref(params);
    if (rc == CHAND_EINVALID && c->err.rpc_code == PROTO_METHOD_NOT_FOUND)
        return 0;
    if (rc < 0)
        return rc;
    chand__hello_done(res, c->session, sizeof c->session, c->server,
                      sizeof c->server);
    json_decref(res);
    return 0;
}

/* Opens the first session of c (made by the caller, stolen): on success
 * *out = c, else c is freed and err has the reason. */
static int conn_open(chand_conn *c, int64_t timeout_ms, chand_conn **out,
                     chand_error *err)
{
    int rc = chand_reconnect(c, timeout_ms);

    if (rc < 0) {
        if (err)
            *err = c->err;
        chand_close_conn(c);
        return rc;
    }
    *out = c;
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
    c->dial_ms = timeout_ms;
    if (chand__route_host(&c->rt, host, port) < 0) {
        rc = chand__seterr(err, CHAND_ENOMEM, 0, "", "out of memory");
        goto out_free;
    }
    return conn_open(c, timeout_ms, out, err);
out_free:
    chand_close_conn(c);
    return rc;
}

int chand__dial(chand_conn *c, int64_t timeout_ms)
{
    int64_t deadline;
    int rc;

    chand__conn_drop(c);
    c->session[0] = c->server[0] = '\0';
    deadline = timeout_ms < 0 ? -1 : chand__now_ms() + timeout_ms;
    if (c->rt.kind == CHAND__UNIX)
        rc = conn_dial_unix(c->rt.host, deadline, &c->fd, &c->err);
    else
        rc = conn_dial(c->rt.host, c->rt.port, deadline, &c->fd, &c->err);
    if (rc < 0)
        return rc;
    if (c->rt.kind == CHAND__TLS && (rc = chand__tls_start(c, deadline)) < 0) {
        chand__conn_drop(c);
        return rc;
    }
    rc = conn_hello(c, deadline);
    if (rc < 0) {
        char why[sizeof c->err.message];

        chand__conn_drop(c);
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
                                 c->rt.host, c->rt.port, (long long)timeout_ms);
        if (rc == CHAND_EPROTO)
            return chand__seterr(&c->err, CHAND_ECONNECT, 0, "",
                                 "%s:%d is not a chand server (%.180s)",
                                 c->rt.host, c->rt.port, why);
        if (rc == CHAND_ECONN)
            return chand__seterr(&c->err, CHAND_ECONNECT, 0, "",
                                 "no hello from %s:%d (%.160s): is it a "
                                 "chand server?",
                                 c->rt.host, c->rt.port, why);
        return rc;
    }
    c->err = (chand_error){0};
    return 0;
}

void chand_close_conn(chand_conn *c)
{
    if (!c)
        return;
    chand__conn_drop(c);
    chand__tls_drop(c, true);
    chand__options_clear(&c->opts);
    chand__route_free(&c->rt);
    free(c->rbuf);
    free(c);
}

int chand__url_parse(const char *url, int *kind, char **host, int *port)
{
    int rc;

    *kind = CHAND__TCP;
    *host = NULL;
    *port = 0;
    if (strncmp(url, "unix:", 5) == 0) {
        const char *path = url + 5;
        if (strncmp(path, "//", 2) == 0)
            path += 2; /* unix:///run/x.sock */
        if (path[0] != '/')
            return CHAND_EARG;
        *kind = CHAND__UNIX;
        *host = strdup(path);
        return *host ? 0 : CHAND_ENOMEM;
    }
    if (strncmp(url, "chands://", 9) == 0) {
        *kind = CHAND__TLS;
        url += 9;
    } else if (strncmp(url, "chand://", 8) == 0) {
        url += 8;
    } else if (strstr(url, "://")) {
        return CHAND_EARG;
    }
    rc = chand_parse_address(url, host, port);
    if (rc < 0)
        return rc;
    /* chand_parse_address gives the TCP port when none is named. */
    if (*kind == CHAND__TLS &&
        !strchr(url[0] == '[' ? strchr(url, ']') : url, ':'))
        *port = CHAND_DEFAULT_TLS_PORT;
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
    c->dial_ms = timeout_ms;
    if (chand__options_copy(&c->opts, opts) < 0) {
        rc = chand__seterr(err, CHAND_ENOMEM, 0, "", "out of memory");
        goto out_free;
    }
    rc = chand__route_set(&c->rt, url, c->opts.failover_ms, err);
    if (rc < 0)
        goto out_free;
    return conn_open(c, timeout_ms, out, err);
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
