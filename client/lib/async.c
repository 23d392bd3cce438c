/*
 * async.c - libchand's asynchronous API on the caller's libevent
 * event_base: one bufferevent per connection (a socket one for TCP and
 * unix sockets, an OpenSSL one for chands://), requests pipelined on it,
 * answers matched to their callbacks by id in a hash table (they may come
 * in any order), an optional client-side timer per request, and one pass
 * that fails every request in flight when the connection drops.
 * Connecting by URL says hello first (with the user and password, as the
 * blocking API does: conn.c's URL parser and hello params, tls.c's
 * context) and reports the connection up only once hello was answered.
 *
 * Callbacks run on the base's thread and may call chand_async_call and
 * chand_async_free on their own handle: the handle counts how deep it is
 * in callbacks and frees itself only once the outermost one returned.
 */
#include "internal.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <openssl/ssl.h>

typedef struct pending {
    int64_t id;
    chand_reply_cb cb;
    void *arg;
    struct event *timer; /* client-side timeout, or NULL */
    struct chand_async *a;
    struct pending *next; /* hash chain */
} pending;

struct chand_async {
    struct event_base *base;
    struct bufferevent *bev;
    struct addrinfo *addrs;  /* resolved addresses */
    struct addrinfo *trying; /* the address being connected */
    struct event *connect_timer;
    char *host; /* the path of a unix socket */
    int port;
    int kind;           /* CHAND__TCP, CHAND__UNIX, CHAND__TLS */
    chand_options opts; /* owned copies (chand_async_connect_url) */
    void *ssl_ctx;      /* TLS: the SSL_CTX every attempt shares */
    int64_t next_id;
    pending **buckets; /* id & (nbuckets - 1) */
    size_t nbuckets, npending;
    chand_connect_cb connect_cb;
    void *connect_arg;
    chand_connect_cb close_cb;
    void *close_arg;
    bool connected;
    bool hello;    /* connected, but hello is not answered yet */
    bool reported; /* connect_cb was called */
    bool dead;     /* connection failed or lost: no new calls */
    bool freeing;  /* chand_async_free was called */
    int depth;     /* nesting of user callbacks */
};

/* ------------------------------------------------------------------ */
/* The table of requests in flight                                    */
/* ------------------------------------------------------------------ */

static int pend_grow(chand_async *a)
{
    size_t n = a->nbuckets ? a->nbuckets * 2 : 64;
    pending **nb = calloc(n, sizeof *nb);

    if (!nb)
        return CHAND_ENOMEM;
    for (size_t i = 0; i < a->nbuckets; i++) {
        pending *p = a->buckets[i], *next;
        for (; p; p = next) {
            next = p->next;
            p->next = nb[(size_t)p->id & (n - 1)];
            nb[(size_t)p->id & (n - 1)] = p;
        }
    }
    free(a->buckets);
    a->buckets = nb;
    a->nbuckets = n;
    return 0;
}

/* Removes and returns the request with id, or NULL. */
static pending *pend_take(chand_async *a, int64_t id)
{
    pending **pp;

    if (!a->nbuckets || id < 0)
        return NULL;
    for (pp = &a->buckets[(size_t)id & (a->nbuckets - 1)]; *pp;
         pp = &(*pp)->next) {
        pending *p = *pp;
        if (p->id == id) {
            *pp = p->next;
            a->npending--;
            return p;
        }
    }
    return NULL;
}

/* Removes and returns any request in flight, or NULL. */
static pending *pend_take_any(chand_async *a)
{
    for (size_t i = 0; i < a->nbuckets && a->npending; i++)
        if (a->buckets[i])
            return pend_take(a, a->buckets[i]->id);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Callbacks into the user                                            */
/* ------------------------------------------------------------------ */

static void async_destroy(chand_async *a)
{
    if (a->connect_timer)
        event_free(a->connect_timer);
    if (a->bev)
        bufferevent_free(a->bev);
    if (a->addrs)
        freeaddrinfo(a->addrs);
    chand__tls_ctx_free(a->ssl_ctx);
    chand__options_clear(&a->opts);
    free(a->buckets);
    free(a->host);
    free(a);
}

static void enter(chand_async *a)
{
    a->depth++;
}

/* Leaves a user callback; returns true when the handle was freed and the
 * caller must not touch it any more. */
static bool leave(chand_async *a)
{
    if (--a->depth == 0 && a->freeing) {
        async_destroy(a);
        return true;
    }
    return false;
}

/* Completes request p (taken out of the table) and frees it. */
static void pend_finish(chand_async *a, pending *p, int rc, json_t *result,
                        const chand_error *err)
{
    if (p->timer)
        event_free(p->timer);
    if (p->cb)
        p->cb(a, rc, result, err, p->arg);
    free(p);
}

/* Fails every request in flight with code; the caller holds a depth. */
static void fail_all(chand_async *a, int code, const char *why)
{
    chand_error err;
    pending *p;

    chand__seterr(&err, code, 0, "", "%s", why);
    while ((p = pend_take_any(a)) != NULL)
        pend_finish(a, p, code, NULL, &err);
}

/* The connection is gone (or never came): fail what is in flight and tell
 * whoever asked.  Returns true when the handle was freed. */
static bool async_lost(chand_async *a, int code, const char *why)
{
    chand_error err;
    bool was_reported = a->reported;

    chand__seterr(&err, code, 0, "", "%s", why);
    a->reported = true;
    a->dead = true;
    a->connected = false;
    if (a->connect_timer)
        event_del(a->connect_timer);
    if (a->bev) {
        bufferevent_free(a->bev);
        a->bev = NULL;
    }
    enter(a);
    fail_all(a, CHAND_ECONN, why);
    if (!was_reported && a->connect_cb && !a->freeing)
        a->connect_cb(a, code, &err, a->connect_arg);
    else if (was_reported && a->close_cb && !a->freeing)
        a->close_cb(a, CHAND_ECONN, &err, a->close_arg);
    return leave(a);
}

/* ------------------------------------------------------------------ */
/* libevent callbacks                                                 */
/* ------------------------------------------------------------------ */

/* Handles one answer line.  Returns true when the handle was freed. */
static bool async_answer(chand_async *a, const char *line, size_t len)
{
    const proto_limits lim = {CHAND__MAX_LINE, CHAND__MAX_DEPTH};
    proto_error perr;
    proto_answer ans;
    chand_error err;
    json_t *msg = proto_parse_line(line, len, &lim, &perr);
    pending *p;
    bool freed;

    if (!msg || proto_answer_read(msg, &ans, &perr) < 0) {
        json_decref(msg);
        char why[300];
        snprintf(why, sizeof why, "bad answer from the server: %s",
                 perr.message);
        return async_lost(a, CHAND_EPROTO, why);
    }
    /* An unknown id is a late answer to a request that timed out on this
     * side; a null id answers a line the server could not read. */
    p = pend_take(a, ans.id);
    if (!p) {
        json_decref(msg);
        return false;
    }
    enter(a);
    if (ans.code != 0) {
        int code = chand__answer_error(&ans, &err);
        pend_finish(a, p, code, NULL, &err);
    } else if (!json_is_object(ans.result)) {
        chand__seterr(&err, CHAND_EPROTO, 0, "", "result is not an object");
        pend_finish(a, p, CHAND_EPROTO, NULL, &err);
    } else {
        pend_finish(a, p, 0, ans.result, NULL);
    }
    json_decref(msg);
    freed = leave(a);
    return freed;
}

/* Handles every complete answer line in bev's input.  Returns true when
 * the handle was freed. */
static bool async_drain(chand_async *a, struct bufferevent *bev)
{
    struct evbuffer *in = bufferevent_get_input(bev);

    while (!a->freeing && a->bev == bev) {
        size_t len;
        char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);
        bool freed;

        if (!line) {
            if (evbuffer_get_length(in) > CHAND__MAX_LINE)
                return async_lost(a, CHAND_EPROTO, "answer line too long");
            return false;
        }
        freed = async_answer(a, line, len);
        free(line);
        if (freed)
            return true;
    }
    return false;
}

static void async_read_cb(struct bufferevent *bev, void *arg)
{
    async_drain(arg, bev);
}

static int async_try_connect(chand_async *a);

/* Writes "cannot connect to <where>" into buf. */
static void async_target(const chand_async *a, char *buf, size_t len)
{
    if (a->kind == CHAND__UNIX)
        snprintf(buf, len, "cannot connect to unix:%s", a->host);
    else
        snprintf(buf, len, "cannot connect to %s:%d", a->host, a->port);
}

static void async_event_cb(struct bufferevent *bev, short what, void *arg)
{
    chand_async *a = arg;

    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        setsockopt(bufferevent_getfd(a->bev), IPPROTO_TCP, TCP_NODELAY, &one,
                   sizeof one);
        a->connected = true;
        if (a->hello)
            return; /* up once hello is answered (async_hello_cb) */
        a->reported = true;
        if (a->connect_timer)
            event_del(a->connect_timer);
        if (a->connect_cb) {
            enter(a);
            a->connect_cb(a, 0, NULL, a->connect_arg);
            leave(a);
        }
        return;
    }
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    if (!a->connected && a->trying && a->trying->ai_next) {
        /* Try the next address, keeping the requests already queued. */
        a->trying = a->trying->ai_next;
        if (async_try_connect(a) == 0)
            return;
    }
    if (a->connected) {
        /* Answers the server sent before it hung up may still sit in the
         * socket (a write error can be noticed before they were read):
         * those requests completed, so hand their answers out first. */
        struct evbuffer *in = bufferevent_get_input(bev);
        while (a->kind != CHAND__TLS &&
               evbuffer_read(in, bufferevent_getfd(bev), 65536) > 0)
            ;
        if (async_drain(a, bev) || a->bev != bev)
            return;
        async_lost(a, CHAND_ECONN,
                   (what & BEV_EVENT_EOF) ? "connection closed by the server"
                                          : "connection lost");
    } else {
        char why[300];
        async_target(a, why, sizeof why);
        if (a->kind == CHAND__TLS && a->bev) {
            chand_error terr;
            SSL *ssl = bufferevent_openssl_get_ssl(a->bev);
            if (ssl && bufferevent_get_openssl_error(a->bev)) {
                chand__tls_verify_error(ssl, &terr);
                snprintf(why + strlen(why), sizeof why - strlen(why), ": %s",
                         terr.message);
            }
        }
        async_lost(a, CHAND_ECONNECT, why);
    }
}

static void async_connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    chand_async *a = arg;
    char why[300];

    (void)fd;
    (void)what;
    if (a->reported || a->dead)
        return;
    async_target(a, why, sizeof why);
    snprintf(why + strlen(why), sizeof why - strlen(why), ": %s",
             a->connected ? "no answer to hello in time" : "timed out");
    async_lost(a, CHAND_ECONNECT, why);
}

static void async_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    pending *p = arg;
    chand_async *a = p->a;
    chand_error err;

    (void)fd;
    (void)what;
    p = pend_take(a, p->id);
    if (!p)
        return;
    chand__seterr(&err, CHAND_ETIMEOUT, 0, "",
                  "no answer from the server in time");
    enter(a);
    pend_finish(a, p, CHAND_ETIMEOUT, NULL, &err);
    leave(a);
}

/* Returns a new bufferevent for one connection attempt: an OpenSSL one
 * (a fresh SSL from the shared context) for TLS, else a socket one. */
static struct bufferevent *async_bev_new(chand_async *a)
{
    struct bufferevent *bev;
    chand_error err;
    SSL *ssl;

    if (a->kind != CHAND__TLS)
        return bufferevent_socket_new(a->base, -1, BEV_OPT_CLOSE_ON_FREE);
    ssl = chand__tls_ssl_new(a->ssl_ctx, &a->opts, a->host, &err);
    if (!ssl)
        return NULL;
    bev = bufferevent_openssl_socket_new(
        a->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    /* A server that closes without close_notify is an EOF, not an
     * error. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

/* Connects a new bufferevent to a->trying (or the unix socket), moving
 * over whatever the old one had queued.  Returns 0 or a negative code. */
static int async_try_connect(chand_async *a)
{
    struct bufferevent *bev = async_bev_new(a);

    if (!bev)
        return CHAND_ENOMEM;
    bufferevent_setcb(bev, async_read_cb, NULL, async_event_cb, a);
    if (a->bev) {
        evbuffer_add_buffer(bufferevent_get_output(bev),
                            bufferevent_get_output(a->bev));
        bufferevent_free(a->bev);
    }
    a->bev = bev;
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    if (a->kind == CHAND__UNIX) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        memcpy(sa.sun_path, a->host, strlen(a->host) + 1);
        return bufferevent_socket_connect(bev, (struct sockaddr *)&sa,
                                          (int)sizeof sa) == 0
                   ? 0
                   : CHAND_ECONNECT;
    }
    for (; a->trying; a->trying = a->trying->ai_next)
        if (bufferevent_socket_connect(bev, a->trying->ai_addr,
                                       (int)a->trying->ai_addrlen) == 0)
            return 0;
    return CHAND_ECONNECT;
}

/* hello's answer: the connection is up, or refused (say, bad
 * credentials: the handle is closed with that reason). */
static void async_hello_cb(chand_async *a, int rc, json_t *res,
                           const chand_error *err, void *arg)
{
    (void)arg;
    (void)res;
    a->hello = false;
    if (a->reported || a->freeing)
        return;
    /* A server that does not know hello (an older one) is accepted. */
    if (rc < 0 &&
        !(rc == CHAND_EINVALID && err->rpc_code == PROTO_METHOD_NOT_FOUND)) {
        async_lost(a, rc, err->message);
        return;
    }
    a->reported = true;
    if (a->connect_timer)
        event_del(a->connect_timer);
    if (a->connect_cb)
        a->connect_cb(a, 0, NULL, a->connect_arg);
}

/* ------------------------------------------------------------------ */
/* Public API                                                         */
/* ------------------------------------------------------------------ */

/* Returns a new handle on base with kind, host (stolen, even on failure)
 * and port, or NULL when out of memory. */
static chand_async *async_new(struct event_base *base, int kind, char *host,
                              int port, chand_connect_cb cb, void *arg)
{
    chand_async *a = calloc(1, sizeof *a);

    if (!a || !host || pend_grow(a) < 0) {
        if (a)
            async_destroy(a);
        free(host);
        return NULL;
    }
    a->base = base;
    a->next_id = 1;
    a->connect_cb = cb;
    a->connect_arg = arg;
    a->kind = kind;
    a->host = host;
    a->port = port;
    return a;
}

/* Resolves (TCP, TLS), starts connecting and arms the connect timer.
 * Returns 0, or a negative code (the caller frees a). */
static int async_start(chand_async *a, int64_t timeout_ms)
{
    struct addrinfo hints = {0};
    char portstr[16];
    int rc;

    if (a->kind == CHAND__UNIX) {
        if (strlen(a->host) >= sizeof((struct sockaddr_un *)0)->sun_path)
            return CHAND_EARG;
    } else {
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_ADDRCONFIG;
        snprintf(portstr, sizeof portstr, "%d", a->port);
        if (getaddrinfo(a->host, portstr, &hints, &a->addrs) != 0) {
            a->addrs = NULL;
            return CHAND_ECONNECT;
        }
        a->trying = a->addrs;
    }
    rc = async_try_connect(a);
    if (rc < 0)
        return rc;
    if (timeout_ms >= 0) {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        a->connect_timer = evtimer_new(a->base, async_connect_timeout_cb, a);
        if (!a->connect_timer || evtimer_add(a->connect_timer, &tv) < 0)
            return CHAND_ENOMEM;
    }
    return 0;
}

int chand_async_connect(struct event_base *base, const char *host, int port,
                        int64_t timeout_ms, chand_connect_cb cb, void *arg,
                        chand_async **out)
{
    chand_async *a;
    int rc;

    if (!base || !out || port < 0 || port > 65535)
        return CHAND_EARG;
    *out = NULL;
    a = async_new(base, CHAND__TCP,
                  strdup(host && *host ? host : CHAND_DEFAULT_HOST),
                  port ? port : CHAND_DEFAULT_PORT, cb, arg);
    if (!a)
        return CHAND_ENOMEM;
    rc = async_start(a, timeout_ms);
    if (rc < 0) {
        async_destroy(a);
        return rc;
    }
    *out = a;
    return 0;
}

int chand_async_connect_url(struct event_base *base, const char *url,
                            const chand_options *opts, int64_t timeout_ms,
                            chand_connect_cb cb, void *arg, chand_async **out,
                            chand_error *err)
{
    chand_async *a;
    json_t *hp;
    char *host;
    int kind, port, rc;

    if (!base || !url || !out)
        return chand__seterr(err, CHAND_EARG, 0, "",
                             "base, url or out is NULL");
    *out = NULL;
    rc = chand__url_parse(url, &kind, &host, &port);
    if (rc < 0)
        return chand__url_error(url, rc, err);
    a = async_new(base, kind, host, port, cb, arg);
    if (!a)
        return chand__seterr(err, CHAND_ENOMEM, 0, "", "out of memory");
    if (chand__options_copy(&a->opts, opts) < 0) {
        rc = chand__seterr(err, CHAND_ENOMEM, 0, "", "out of memory");
        goto out_free;
    }
    if (kind == CHAND__TLS &&
        (rc = chand__tls_ctx_new(&a->opts, &a->ssl_ctx, err)) < 0)
        goto out_free;
    rc = async_start(a, timeout_ms);
    if (rc < 0) {
        char why[300];
        async_target(a, why, sizeof why);
        rc = chand__seterr(err, rc, 0, "", "%s", why);
        goto out_free;
    }
    /* hello goes first: whatever the caller queues runs after it, as the
     * authenticated user. */
    a->hello = true;
    hp = chand__hello_params(&a->opts, 0);
    rc = hp ? chand_async_call(a, "hello", hp, CHAND_FOREVER, async_hello_cb,
                               NULL)
            : CHAND_ENOMEM;
    if (rc < 0) {
        rc = chand__seterr(err, rc, 0, "", "out of memory");
        goto out_free;
    }
    *out = a;
    return 0;
out_free:
    async_destroy(a);
    return rc;
}

int chand_async_call(chand_async *a, const char *method, json_t *params,
                     int64_t timeout_ms, chand_reply_cb cb, void *arg)
{
    json_t *p, *req;
    pending *pd;
    char *line;
    size_t len;
    int rc = CHAND_ENOMEM;

    if (!a || !method) {
        json_decref(params);
        return CHAND_EARG;
    }
    if (a->dead || a->freeing || !a->bev) {
        json_decref(params);
        return CHAND_ECONN;
    }
    p = chand__params(method, params, timeout_ms);
    json_decref(params);
    if (!p)
        return CHAND_EARG;
    pd = calloc(1, sizeof *pd);
    if (!pd) {
        json_decref(p);
        return CHAND_ENOMEM;
    }
    pd->id = a->next_id++;
    pd->cb = cb;
    pd->arg = arg;
    pd->a = a;
    req = proto_request_new(pd->id, method, p);
    if (!req)
        goto out_free;
    line = proto_dump_line(req, &len);
    json_decref(req);
    if (!line)
        goto out_free;
    if (timeout_ms >= 0) {
        int64_t ms = timeout_ms + CHAND_GRACE_MS;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        pd->timer = evtimer_new(a->base, async_timeout_cb, pd);
        if (!pd->timer || evtimer_add(pd->timer, &tv) < 0)
            goto out_free_line;
    }
    if (a->npending >= a->nbuckets && pend_grow(a) < 0)
        goto out_free_line;
    if (bufferevent_write(a->bev, line, len) < 0)
        goto out_free_line;
    free(line);
    pd->next = a->buckets[(size_t)pd->id & (a->nbuckets - 1)];
    a->buckets[(size_t)pd->id & (a->nbuckets - 1)] = pd;
    a->npending++;
    return 0;
out_free_line:
    free(line);
out_free:
    if (pd->timer)
        event_free(pd->timer);
    free(pd);
    return rc;
}

size_t chand_async_pending(const chand_async *a)
{
    return a ? a->npending : 0;
}

void chand_async_on_close(chand_async *a, chand_connect_cb cb, void *arg)
{
    if (!a)
        return;
    a->close_cb = cb;
    a->close_arg = arg;
}

void chand_async_free(chand_async *a)
{
    if (!a || a->freeing)
        return;
    a->freeing = true;
    a->dead = true;
    enter(a);
    fail_all(a, CHAND_ECONN, "connection handle freed");
    leave(a);
}
