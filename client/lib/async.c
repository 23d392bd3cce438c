/*
 * async.c - libchand's asynchronous API on the caller's libevent
 * event_base: one bufferevent per connection, requests pipelined on it,
 * answers matched to their callbacks by id in a hash table (they may come
 * in any order), an optional client-side timer per request, and one pass
 * that fails every request in flight when the connection drops.
 *
 * Callbacks run on the base's thread and may call chand_async_call and
 * chand_async_free on their own handle: the handle counts how deep it is
 * in callbacks and frees itself only once the outermost one returned.
 */
#include "internal.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

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
    char *host;
    int port;
    int64_t next_id;
    pending **buckets; /* id & (nbuckets - 1) */
    size_t nbuckets, npending;
    chand_connect_cb connect_cb;
    void *connect_arg;
    chand_connect_cb close_cb;
    void *close_arg;
    bool connected;
    bool dead;    /* connection failed or lost: no new calls */
    bool freeing; /* chand_async_free was called */
    int depth;    /* nesting of user callbacks */
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
    bool was_connected = a->connected;

    chand__seterr(&err, code, 0, "", "%s", why);
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
    if (!was_connected && a->connect_cb && !a->freeing)
        a->connect_cb(a, code, &err, a->connect_arg);
    else if (was_connected && a->close_cb && !a->freeing)
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

static void async_event_cb(struct bufferevent *bev, short what, void *arg)
{
    chand_async *a = arg;

    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        setsockopt(bufferevent_getfd(a->bev), IPPROTO_TCP, TCP_NODELAY, &one,
                   sizeof one);
        a->connected = true;
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
        while (evbuffer_read(in, bufferevent_getfd(bev), 65536) > 0)
            ;
        if (async_drain(a, bev) || a->bev != bev)
            return;
        async_lost(a, CHAND_ECONN,
                   (what & BEV_EVENT_EOF) ? "connection closed by the server"
                                          : "connection lost");
    } else {
        char why[300];
        snprintf(why, sizeof why, "cannot connect to %s:%d", a->host, a->port);
        async_lost(a, CHAND_ECONNECT, why);
    }
}

static void async_connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    chand_async *a = arg;
    char why[300];

    (void)fd;
    (void)what;
    if (a->connected || a->dead)
        return;
    snprintf(why, sizeof why, "cannot connect to %s:%d: timed out", a->host,
             a->port);
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

/* Connects a new bufferevent to a->trying, moving over whatever the old
 * one had queued.  Returns 0 or a negative code. */
static int async_try_connect(chand_async *a)
{
    struct bufferevent *bev;

    bev = bufferevent_socket_new(a->base, -1, BEV_OPT_CLOSE_ON_FREE);
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
    for (; a->trying; a->trying = a->trying->ai_next)
        if (bufferevent_socket_connect(bev, a->trying->ai_addr,
                                       (int)a->trying->ai_addrlen) == 0)
            return 0;
    return CHAND_ECONNECT;
}

/* ------------------------------------------------------------------ */
/* Public API                                                         */
/* ------------------------------------------------------------------ */

int chand_async_connect(struct event_base *base, const char *host, int port,
                        int64_t timeout_ms, chand_connect_cb cb, void *arg,
                        chand_async **out)
{
    struct addrinfo hints = {0};
    char portstr[16];
    chand_async *a;
    int rc;

    if (!base || !out || port < 0 || port > 65535)
        return CHAND_EARG;
    *out = NULL;
    a = calloc(1, sizeof *a);
    if (!a)
        return CHAND_ENOMEM;
    a->base = base;
    a->next_id = 1;
    a->connect_cb = cb;
    a->connect_arg = arg;
    a->port = port ? port : CHAND_DEFAULT_PORT;
    a->host = strdup(host && *host ? host : CHAND_DEFAULT_HOST);
    if (!a->host) {
        rc = CHAND_ENOMEM;
        goto out_free;
    }
    rc = pend_grow(a);
    if (rc < 0)
        goto out_free;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    snprintf(portstr, sizeof portstr, "%d", a->port);
    if (getaddrinfo(a->host, portstr, &hints, &a->addrs) != 0) {
        a->addrs = NULL;
        rc = CHAND_ECONNECT;
        goto out_free;
    }
    a->trying = a->addrs;
    rc = async_try_connect(a);
    if (rc < 0)
        goto out_free;
    if (timeout_ms >= 0) {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        a->connect_timer = evtimer_new(base, async_connect_timeout_cb, a);
        if (!a->connect_timer) {
            rc = CHAND_ENOMEM;
            goto out_free;
        }
        evtimer_add(a->connect_timer, &tv);
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
