/*
 * async_dial.c - the asynchronous API's connection: dialing the route's
 * current server on the event loop (resolving, a socket or an OpenSSL
 * bufferevent, each address in turn, a timer per dial), hello, and the
 * search failover.c's rules describe.  The first connect walks the
 * servers given until one answers.  A session that answered not_leader
 * is left, once nothing is in flight on it, for the leader named (or,
 * after a pause, the next server); the requests queued meanwhile are
 * sent there in their order, a new session, as the blocking API does.
 * Every wait is a timer: only name resolution (getaddrinfo) can hold the
 * loop, and numeric addresses do not wait.
 */
#include "async.h"

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <openssl/ssl.h>

static int dial(chand_async *a);

/* Writes "cannot connect to <where>" into buf. */
static void dial_target(const chand_async *a, char *buf, size_t len)
{
    if (a->rt.kind == CHAND__UNIX)
        snprintf(buf, len, "cannot connect to unix:%s", a->rt.host);
    else
        snprintf(buf, len, "cannot connect to %s:%d", a->rt.host, a->rt.port);
}

/* Ends the dial or session in progress (not its requests). */
static void dial_drop(chand_async *a)
{
    if (a->dial_timer)
        event_del(a->dial_timer);
    if (a->hello_id) {
        chand__async_forget(a, a->hello_id);
        a->hello_id = 0;
    }
    if (a->bev) {
        bufferevent_free(a->bev);
        a->bev = NULL;
    }
    if (a->addrs) {
        freeaddrinfo(a->addrs);
        a->addrs = NULL;
    }
    a->trying = NULL;
    a->connected = a->up = false;
}

void chand__async_close(chand_async *a)
{
    dial_drop(a);
    if (a->pause_timer)
        event_del(a->pause_timer);
}

static int pause_arm(chand_async *a, int64_t ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    return evtimer_add(a->pause_timer, &tv) == 0 ? 0 : CHAND_ENOMEM;
}

/* No session and none to come (rc: the last dial's code): the queued
 * requests fail with CHAND_ECONN, then the connect callback (the first
 * connect) or the close callback says why.  The caller holds a depth. */
static void give_up(chand_async *a, int rc)
{
    chand_error err = a->last;

    a->dead = true;
    chand__async_close(a);
    chand__async_fail(a, true, CHAND_ECONN, err.message);
    if (a->freeing)
        return;
    if (!a->reported) {
        a->reported = true;
        if (a->connect_cb)
            a->connect_cb(a, rc, &err, a->connect_arg);
    } else if (a->close_cb) {
        a->close_cb(a, CHAND_ECONN, &err, a->close_arg);
    }
}

/* A dial failed with rc (why: its message, NULL when a->last has it):
 * the next server after the pause the rules give, unless the search is
 * over. */
static void dial_failed(chand_async *a, int rc, const char *why)
{
    bool fatal = chand__route_fatal(rc);

    if (why)
        chand__seterr(&a->last, rc, 0, "", "%s", why);
    dial_drop(a);
    chand__async_enter(a);
    if (!a->reported) {
        /* The first connect: one server once, several until the
         * deadline. */
        if (a->once || fatal ||
            (a->deadline >= 0 && chand__now_ms() >= a->deadline)) {
            give_up(a, rc);
            goto out;
        }
    } else {
        /* A move: each request looks for the leader in its own window;
         * an error any server would give ends them all. */
        a->deadline = chand__async_expire(a, fatal, rc, &a->last, !fatal);
        if (!a->resend.head) {
            give_up(a, rc);
            goto out;
        }
    }
    if (!a->freeing &&
        pause_arm(a, chand__route_failed(&a->rt, a->deadline)) < 0) {
        chand__seterr(&a->last, CHAND_ENOMEM, 0, "", "out of memory");
        give_up(a, CHAND_ENOMEM);
    }
out:
    chand__async_leave(a);
}

/* The session is up: the queued requests go out in order, then the
 * first connect is reported. */
static void session_up(chand_async *a)
{
    a->up = true;
    a->once = false;
    event_del(a->dial_timer);
    chand__async_enter(a);
    chand__async_flush(a);
    if (!a->reported && !a->freeing) {
        a->reported = true;
        if (a->connect_cb)
            a->connect_cb(a, 0, NULL, a->connect_arg);
    }
    chand__async_leave(a);
}

/* hello's answer: the session is up, or refused (say, bad credentials:
 * an error every server gives, which ends the search). */
static void hello_cb(chand_async *a, int rc, json_t *res,
                     const chand_error *err, void *arg)
{
    (void)res;
    (void)arg;
    a->hello_id = 0;
    if (a->freeing)
        return;
    /* A server that does not know hello (an older one) is accepted. */
    if (rc < 0 &&
        !(rc == CHAND_EINVALID && err->rpc_code == PROTO_METHOD_NOT_FOUND)) {
        dial_failed(a, rc, err->message);
        return;
    }
    session_up(a);
}

static void hello_send(chand_async *a)
{
    json_t *hp = chand__hello_params(&a->opts, 0);
    int rc = hp ? chand__async_send_now(a, "hello", hp, hello_cb, &a->hello_id)
                : CHAND_ENOMEM;

    if (rc < 0)
        dial_failed(a, rc, "out of memory");
}

/* Leaves the session, on which nothing is in flight any more, for the
 * leader named (or the next server, after a pause).  The caller holds a
 * depth. */
static void move_start(chand_async *a)
{
    a->deadline = chand__async_expire(a, false, 0, NULL, true);
    a->moving = false;
    if (a->freeing)
        return;
    if (!a->resend.head) {
        /* Every window closed meanwhile: the rest goes out here, or, the
         * connection gone, nowhere. */
        if (a->up)
            chand__async_flush(a);
        else
            give_up(a, a->last.code);
        return;
    }
    dial_drop(a);
    if (!a->hopped)
        chand__route_hops(&a->rt);
    a->hopped = false;
    a->last = (chand_error){0};
    chand__route_walk(&a->rt);
    if (pause_arm(a, chand__route_hop(&a->rt)) < 0) {
        chand__seterr(&a->last, CHAND_ENOMEM, 0, "", "out of memory");
        give_up(a, CHAND_ENOMEM);
    }
}

void chand__async_settled(chand_async *a)
{
    if (a->moving && a->up && a->nsent == 0 && !a->freeing)
        move_start(a);
}

void chand__async_lost(chand_async *a, int code, const char *why)
{
    chand_error err;

    if (!a->up) {
        dial_failed(a, code, why);
        return;
    }
    chand__seterr(&err, code, 0, "", "%s", why);
    dial_drop(a);
    /* Calls made from the callbacks below wait for the leader while the
     * handle moves, and fail at once when it is closed. */
    if (!a->moving)
        a->dead = true;
    chand__async_fail(a, false, CHAND_ECONN, why);
    if (a->freeing)
        return;
    if (a->moving) {
        a->last = err;
        move_start(a);
        return;
    }
    chand__async_fail(a, true, CHAND_ECONN, why);
    if (a->close_cb)
        a->close_cb(a, CHAND_ECONN, &err, a->close_arg);
}

/* ------------------------------------------------------------------ */
/* libevent callbacks                                                 */
/* ------------------------------------------------------------------ */

static void dial_read_cb(struct bufferevent *bev, void *arg)
{
    chand__async_drain(arg, bev);
}

static int dial_connect(chand_async *a);

static void dial_event_cb(struct bufferevent *bev, short what, void *arg)
{
    chand_async *a = arg;
    char why[300];

    if (a->in_connect) {
        /* bufferevent_socket_connect failing at once: it says so. */
        if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
            a->refused = true;
        return;
    }
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;

        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one,
                   sizeof one);
        a->connected = true;
        if (a->say_hello)
            hello_send(a);
        else
            session_up(a);
        return;
    }
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    if (!a->connected && a->trying && a->trying->ai_next) {
        a->trying = a->trying->ai_next;
        if (dial_connect(a) < 0)
            dial_failed(a, CHAND_ECONNECT, NULL);
        return;
    }
    if (a->connected) {
        /* Answers the server sent before it hung up may still sit in the
         * socket (a write error can be noticed before they were read):
         * those requests completed, so hand their answers out first. */
        struct evbuffer *in = bufferevent_get_input(bev);

        while (a->rt.kind != CHAND__TLS &&
               evbuffer_read(in, bufferevent_getfd(bev), 65536) > 0)
            ;
        if (chand__async_drain(a, bev) || a->bev != bev)
            return;
        if (!a->up) {
            dial_target(a, why, sizeof why);
            snprintf(why + strlen(why), sizeof why - strlen(why),
                     ": closed before answering hello");
            dial_failed(a, CHAND_ECONNECT, why);
            return;
        }
        chand__async_enter(a);
        chand__async_lost(a, CHAND_ECONN,
                          (what & BEV_EVENT_EOF)
                              ? "connection closed by the server"
                              : "connection lost");
        chand__async_leave(a);
        return;
    }
    dial_target(a, why, sizeof why);
    if (a->rt.kind == CHAND__TLS) {
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        chand_error terr;

        if (ssl && bufferevent_get_openssl_error(bev)) {
            chand__tls_verify_error(ssl, &terr);
            snprintf(why + strlen(why), sizeof why - strlen(why), ": %s",
                     terr.message);
        }
    }
    dial_failed(a, CHAND_ECONNECT, why);
}

static void dial_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    chand_async *a = arg;
    char why[300];

    (void)fd;
    (void)what;
    dial_target(a, why, sizeof why);
    snprintf(why + strlen(why), sizeof why - strlen(why), ": %s",
             a->connected ? "no answer to hello in time" : "timed out");
    dial_failed(a, CHAND_ECONNECT, why);
}

/* The pause is over: the next server (or the leader named). */
static void dial_pause_cb(evutil_socket_t fd, short what, void *arg)
{
    chand_async *a = arg;
    int rc;

    (void)fd;
    (void)what;
    rc = chand__route_next(&a->rt);
    if (rc < 0)
        chand__seterr(&a->last, rc, 0, "", "out of memory");
    else
        rc = dial(a);
    if (rc < 0)
        dial_failed(a, rc, NULL);
}

/* ------------------------------------------------------------------ */
/* Dialing                                                            */
/* ------------------------------------------------------------------ */

/* Returns a new bufferevent for one connection attempt: an OpenSSL one
 * (a fresh SSL from the shared context) for TLS, else a socket one; or
 * NULL with a->last filled. */
static struct bufferevent *dial_bev_new(chand_async *a)
{
    struct bufferevent *bev;
    SSL *ssl;

    if (a->rt.kind != CHAND__TLS) {
        bev = bufferevent_socket_new(a->base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (!bev)
            chand__seterr(&a->last, CHAND_ENOMEM, 0, "", "out of memory");
        return bev;
    }
    ssl = chand__tls_ssl_new(a->ssl_ctx, &a->opts, a->rt.host, &a->last);
    if (!ssl)
        return NULL;
    bev = bufferevent_openssl_socket_new(
        a->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        chand__seterr(&a->last, CHAND_ENOMEM, 0, "", "out of memory");
        return NULL;
    }
    /* A server that closes without close_notify is an EOF, not an
     * error. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

/* Connects a new bufferevent to a->trying (or the unix socket), going on
 * to the next address while one fails at once.  Returns 0, or a negative
 * code with a->last filled and no bufferevent left. */
static int dial_connect(chand_async *a)
{
    char why[300];

    for (;;) {
        struct bufferevent *bev = dial_bev_new(a);
        int r;

        if (!bev)
            return a->last.code;
        bufferevent_setcb(bev, dial_read_cb, NULL, dial_event_cb, a);
        bufferevent_enable(bev, EV_READ | EV_WRITE);
        if (a->bev)
            bufferevent_free(a->bev);
        a->bev = bev;
        a->in_connect = true;
        a->refused = false;
        if (a->rt.kind == CHAND__UNIX) {
            struct sockaddr_un sa = {.sun_family = AF_UNIX};

            memcpy(sa.sun_path, a->rt.host, strlen(a->rt.host) + 1);
            r = bufferevent_socket_connect(bev, (struct sockaddr *)&sa,
                                           (int)sizeof sa);
        } else {
            r = bufferevent_socket_connect(bev, a->trying->ai_addr,
                                           (int)a->trying->ai_addrlen);
        }
        a->in_connect = false;
        if (r == 0 && !a->refused)
            return 0;
        bufferevent_free(bev);
        a->bev = NULL;
        if (a->rt.kind == CHAND__UNIX || !(a->trying = a->trying->ai_next))
            break;
    }
    dial_target(a, why, sizeof why);
    return chand__seterr(&a->last, CHAND_ECONNECT, 0, "", "%s", why);
}

/* Starts dialing the route's current server: resolves it, connects the
 * first address that takes, arms the dial timer (the first connect to
 * one server: its timeout; else cut at the search's deadline).  Returns
 * 0, or a negative code with a->last filled. */
static int dial(chand_async *a)
{
    int64_t ms =
        a->once ? a->dial_ms : chand__route_dial_ms(a->dial_ms, a->deadline);
    int rc;

    dial_drop(a);
    if (a->rt.kind == CHAND__UNIX) {
        if (strlen(a->rt.host) >= sizeof((struct sockaddr_un *)0)->sun_path)
            return chand__seterr(&a->last, CHAND_EARG, 0, "",
                                 "unix socket path too long: %.200s",
                                 a->rt.host);
    } else {
        struct addrinfo hints = {0};
        char portstr[16];

        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_ADDRCONFIG;
        snprintf(portstr, sizeof portstr, "%d", a->rt.port);
        rc = getaddrinfo(a->rt.host, portstr, &hints, &a->addrs);
        if (rc != 0) {
            a->addrs = NULL;
            return chand__seterr(&a->last, CHAND_ECONNECT, 0, "",
                                 "cannot resolve %.200s: %s", a->rt.host,
                                 gai_strerror(rc));
        }
        a->trying = a->addrs;
    }
    /* Made at the first chands:// server, then shared by every dial. */
    if (a->rt.kind == CHAND__TLS && !a->ssl_ctx &&
        (rc = chand__tls_ctx_new(&a->opts, &a->ssl_ctx, &a->last)) < 0)
        return rc;
    rc = dial_connect(a);
    if (rc < 0)
        return rc;
    if (ms >= 0) {
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

        if (evtimer_add(a->dial_timer, &tv) < 0) {
            dial_drop(a);
            return chand__seterr(&a->last, CHAND_ENOMEM, 0, "",
                                 "out of memory");
        }
    }
    return 0;
}

int chand__async_start(chand_async *a, int64_t timeout_ms, chand_error *err)
{
    int rc;

    a->dial_ms = timeout_ms;
    a->once = a->rt.nservers <= 1;
    a->deadline = a->once ? -1 : chand__route_until(&a->rt, timeout_ms);
    a->dial_timer = evtimer_new(a->base, dial_timeout_cb, a);
    a->pause_timer = evtimer_new(a->base, dial_pause_cb, a);
    if (!a->dial_timer || !a->pause_timer)
        return chand__seterr(err, CHAND_ENOMEM, 0, "", "out of memory");
    chand__route_walk(&a->rt);
    rc = dial(a);
    if (rc == 0)
        return 0;
    if (a->once || chand__route_fatal(rc)) {
        if (err)
            *err = a->last;
        return rc;
    }
    /* Several servers: the next one, from the loop (no callback may run
     * before the caller has its handle). */
    if (pause_arm(a, chand__route_failed(&a->rt, a->deadline)) < 0)
        return chand__seterr(err, CHAND_ENOMEM, 0, "", "out of memory");
    return 0;
}
