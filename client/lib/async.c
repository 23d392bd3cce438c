/*
 * async.c - libchand's asynchronous API on the caller's libevent
 * event_base, its requests: pipelined on the session, answers matched to
 * their callbacks by id in a hash table (they may come in any order), an
 * optional client-side timer per request, a queue of the requests that
 * wait for a session (made before it was up, or answered not_leader and
 * to be sent to the leader), and the passes that fail requests when the
 * connection drops or the handle is freed.  The connection itself, and
 * the moves to another server, are async_dial.c's.
 *
 * Callbacks run on the base's thread and may call chand_async_call and
 * chand_async_free on their own handle: the handle counts how deep it is
 * in callbacks and frees itself only once the outermost one returned.
 */
#include "async.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* The table of requests in flight on the session                     */
/* ------------------------------------------------------------------ */

static int pend_grow(chand_async *a)
{
    size_t n = a->nbuckets ? a->nbuckets * 2 : 64;
    chand__areq **nb = calloc(n, sizeof *nb);

    if (!nb)
        return CHAND_ENOMEM;
    for (size_t i = 0; i < a->nbuckets; i++) {
        chand__areq *p = a->buckets[i], *next;
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
static chand__areq *pend_take(chand_async *a, int64_t id)
{
    chand__areq **pp;

    if (!a->nbuckets || id < 0)
        return NULL;
    for (pp = &a->buckets[(size_t)id & (a->nbuckets - 1)]; *pp;
         pp = &(*pp)->next) {
        chand__areq *p = *pp;
        if (p->id == id) {
            *pp = p->next;
            a->nsent--;
            return p;
        }
    }
    return NULL;
}

/* Removes and returns any request in flight, or NULL. */
static chand__areq *pend_take_any(chand_async *a)
{
    for (size_t i = 0; i < a->nbuckets && a->nsent; i++)
        if (a->buckets[i])
            return pend_take(a, a->buckets[i]->id);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* The queues of requests waiting for a session                       */
/* ------------------------------------------------------------------ */

/* Puts p into q in id order.  Answers come back mostly in the order
 * they were sent, so p usually goes last. */
static void queue_insert(chand__aqueue *q, chand__areq *p)
{
    chand__areq **pp = &q->head;

    if (q->tail && q->tail->id < p->id)
        pp = &q->tail->next;
    else
        while (*pp && (*pp)->id < p->id)
            pp = &(*pp)->next;
    p->next = *pp;
    *pp = p;
    if (!p->next)
        q->tail = p;
}

static chand__areq *queue_pop(chand__aqueue *q)
{
    chand__areq *p = q->head;

    if (p) {
        q->head = p->next;
        if (!q->head)
            q->tail = NULL;
        p->next = NULL;
    }
    return p;
}

/* ------------------------------------------------------------------ */
/* Requests and callbacks into the user                               */
/* ------------------------------------------------------------------ */

static void areq_free(chand__areq *p)
{
    if (p->timer)
        event_free(p->timer);
    free(p->line);
    free(p);
}

void chand__async_destroy(chand_async *a)
{
    chand__async_close(a);
    if (a->dial_timer)
        event_free(a->dial_timer);
    if (a->pause_timer)
        event_free(a->pause_timer);
    chand__tls_ctx_free(a->ssl_ctx);
    chand__options_clear(&a->opts);
    chand__route_free(&a->rt);
    free(a->buckets);
    free(a);
}

void chand__async_enter(chand_async *a)
{
    a->depth++;
}

bool chand__async_leave(chand_async *a)
{
    if (--a->depth == 0 && a->freeing) {
        chand__async_destroy(a);
        return true;
    }
    return false;
}

/* Completes request p (out of the table and the queues) and frees it;
 * the caller holds a depth. */
static void areq_finish(chand_async *a, chand__areq *p, int rc, json_t *result,
                        const chand_error *err)
{
    if (p->cb)
        p->cb(a, rc, result, err, p->arg);
    areq_free(p);
}

static void async_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    chand__areq *p = arg;
    chand_async *a = p->a;
    chand_error err;

    (void)fd;
    (void)what;
    p = pend_take(a, p->id);
    if (!p)
        return;
    chand__seterr(&err, CHAND_ETIMEOUT, 0, "",
                  "no answer from the server in time");
    chand__async_enter(a);
    areq_finish(a, p, CHAND_ETIMEOUT, NULL, &err);
    chand__async_settled(a);
    chand__async_leave(a);
}

/* Writes p on the session, arms its timer and puts it in the table.
 * Returns 0 or CHAND_ENOMEM (p is then still the caller's). */
static int areq_send(chand_async *a, chand__areq *p)
{
    if (a->nsent >= a->nbuckets && pend_grow(a) < 0)
        return CHAND_ENOMEM;
    if (p->timeout_ms >= 0) {
        /* Armed again at each send: the time spent finding the leader
         * does not count, as with the blocking API. */
        int64_t ms = p->timeout_ms + CHAND_GRACE_MS;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

        if (!p->timer)
            p->timer = evtimer_new(a->base, async_timeout_cb, p);
        if (!p->timer || evtimer_add(p->timer, &tv) < 0)
            return CHAND_ENOMEM;
    }
    if (bufferevent_write(a->bev, p->line, p->len) < 0) {
        if (p->timer)
            event_del(p->timer);
        return CHAND_ENOMEM;
    }
    p->next = a->buckets[(size_t)p->id & (a->nbuckets - 1)];
    a->buckets[(size_t)p->id & (a->nbuckets - 1)] = p;
    a->nsent++;
    return 0;
}

/* Returns a new request of method with params (borrowed; NULL = {}), or
 * NULL (bad params, no memory: *rc says which). */
static chand__areq *areq_new(chand_async *a, const char *method, json_t *params,
                             int64_t timeout_ms, chand_reply_cb cb, void *arg,
                             int *rc)
{
    json_t *p = chand__params(method, params, timeout_ms), *req;
    chand__areq *r;

    *rc = p ? CHAND_ENOMEM : CHAND_EARG;
    if (!p)
        return NULL;
    r = calloc(1, sizeof *r);
    if (!r) {
        json_decref(p);
        return NULL;
    }
    r->id = a->next_id++;
    r->cb = cb;
    r->arg = arg;
    r->a = a;
    r->timeout_ms = timeout_ms;
    req = proto_request_new(r->id, method, p);
    r->line = req ? proto_dump_line(req, &r->len) : NULL;
    json_decref(req);
    if (!r->line) {
        free(r);
        return NULL;
    }
    return r;
}

int chand__async_send_now(chand_async *a, const char *method, json_t *params,
                          chand_reply_cb cb, int64_t *id)
{
    int rc;
    chand__areq *p = areq_new(a, method, params, CHAND_FOREVER, cb, NULL, &rc);

    json_decref(params);
    if (!p)
        return rc;
    rc = areq_send(a, p);
    if (rc < 0) {
        areq_free(p);
        return rc;
    }
    *id = p->id;
    return 0;
}

void chand__async_forget(chand_async *a, int64_t id)
{
    chand__areq *p = pend_take(a, id);

    if (p)
        areq_free(p);
}

void chand__async_flush(chand_async *a)
{
    chand_error err;
    chand__areq *p;

    chand__seterr(&err, CHAND_ENOMEM, 0, "", "out of memory");
    while (a->up && !a->moving && !a->freeing &&
           ((p = queue_pop(&a->resend)) || (p = queue_pop(&a->held)))) {
        a->nqueued--;
        if (areq_send(a, p) < 0)
            areq_finish(a, p, CHAND_ENOMEM, NULL, &err);
    }
}

void chand__async_fail(chand_async *a, bool queued, int code, const char *why)
{
    chand_error err;
    chand__areq *p;

    if (a->hello_id) {
        chand__async_forget(a, a->hello_id);
        a->hello_id = 0;
    }
    chand__seterr(&err, code, 0, "", "%s", why);
    while ((p = pend_take_any(a)) != NULL)
        areq_finish(a, p, code, NULL, &err);
    while (queued &&
           ((p = queue_pop(&a->resend)) || (p = queue_pop(&a->held)))) {
        a->nqueued--;
        areq_finish(a, p, code, NULL, &err);
    }
}

int64_t chand__async_expire(chand_async *a, bool all, int rc,
                            const chand_error *last, bool expired)
{
    int64_t now = chand__now_ms(), first = 0;
    chand__aqueue keep = {0};
    chand__areq *p;

    /* The queue is rebuilt: callbacks may queue more meanwhile (held). */
    while ((p = queue_pop(&a->resend)) != NULL) {
        if (all || p->until <= now) {
            chand_error err;
            int code = chand__route_giveup(a->rt.failover_ms, &a->why, rc, last,
                                           expired, &err);

            a->nqueued--;
            areq_finish(a, p, code, NULL, &err);
            continue;
        }
        if (!first || p->until < first)
            first = p->until;
        queue_insert(&keep, p);
    }
    a->resend = keep;
    /* A callback above freed the handle: what it set aside fails too. */
    if (a->freeing)
        chand__async_fail(a, true, CHAND_ECONN, "connection handle freed");
    return first;
}

void chand__async_not_leader(chand_async *a, chand__areq *p,
                             const proto_answer *ans, const chand_error *err)
{
    int64_t now = chand__now_ms();

    /* The window opens at the call's first not_leader, as the blocking
     * call's does; a later one means the leader named did not lead. */
    if (p->until == 0)
        p->until = now + a->rt.failover_ms;
    else
        a->hopped = true;
    if (now >= p->until || a->dead) {
        areq_finish(a, p, CHAND_ENOTLEADER, NULL, err);
        return;
    }
    if (p->timer)
        event_del(p->timer);
    chand__route_note(&a->rt, ans);
    a->why = *err;
    a->moving = true;
    queue_insert(&a->resend, p);
    a->nqueued++;
}

/* Handles one answer line.  Returns true when the handle was freed. */
static bool async_answer(chand_async *a, const char *line, size_t len)
{
    const proto_limits lim = {CHAND__MAX_LINE, CHAND__MAX_DEPTH};
    proto_error perr;
    proto_answer ans;
    chand_error err;
    json_t *msg = proto_parse_line(line, len, &lim, &perr);
    chand__areq *p;

    if (!msg || proto_answer_read(msg, &ans, &perr) < 0) {
        char why[300];

        json_decref(msg);
        snprintf(why, sizeof why, "bad answer from the server: %s",
                 perr.message);
        chand__async_enter(a);
        chand__async_lost(a, CHAND_EPROTO, why);
        return chand__async_leave(a);
    }
    /* An unknown id is a late answer to a request that timed out on this
     * side; a null id answers a line the server could not read. */
    p = pend_take(a, ans.id);
    if (!p) {
        json_decref(msg);
        return false;
    }
    chand__async_enter(a);
    if (ans.code != 0) {
        int code = chand__answer_error(&ans, &err);

        if (code == CHAND_ENOTLEADER && p->id != a->hello_id)
            chand__async_not_leader(a, p, &ans, &err);
        else
            areq_finish(a, p, code, NULL, &err);
    } else if (!json_is_object(ans.result)) {
        chand__seterr(&err, CHAND_EPROTO, 0, "", "result is not an object");
        areq_finish(a, p, CHAND_EPROTO, NULL, &err);
    } else {
        areq_finish(a, p, 0, ans.result, NULL);
    }
    json_decref(msg);
    chand__async_settled(a);
    return chand__async_leave(a);
}

bool chand__async_drain(chand_async *a, struct bufferevent *bev)
{
    struct evbuffer *in = bufferevent_get_input(bev);

    /* Checked before each line: an answer may end the connection (a
     * refused hello, a move) and free bev. */
    while (!a->freeing && a->bev == bev) {
        size_t len;
        char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);
        bool freed;

        if (!line) {
            if (evbuffer_get_length(in) > CHAND__MAX_LINE) {
                chand__async_enter(a);
                chand__async_lost(a, CHAND_EPROTO, "answer line too long");
                return chand__async_leave(a);
            }
            return false;
        }
        freed = async_answer(a, line, len);
        free(line);
        if (freed)
            return true;
    }
    return false;
}

/* ------------------------------------------------------------------ */
/* Public API                                                         */
/* ------------------------------------------------------------------ */

/* Returns a new handle on base, or NULL when out of memory. */
static chand_async *async_new(struct event_base *base, chand_connect_cb cb,
                              void *arg)
{
    chand_async *a = calloc(1, sizeof *a);

    if (!a)
        return NULL;
    a->base = base;
    a->next_id = 1;
    a->connect_cb = cb;
    a->connect_arg = arg;
    if (pend_grow(a) < 0) {
        chand__async_destroy(a);
        return NULL;
    }
    return a;
}

int chand_async_connect(struct event_base *base, const char *host, int port,
                        int64_t timeout_ms, chand_connect_cb cb, void *arg,
                        chand_async **out)
{
    chand_error err;
    chand_async *a;
    int rc;

    if (!base || !out || port < 0 || port > 65535)
        return CHAND_EARG;
    *out = NULL;
    a = async_new(base, cb, arg);
    if (!a)
        return CHAND_ENOMEM;
    rc = chand__route_host(&a->rt, host, port);
    if (rc == 0)
        rc = chand__async_start(a, timeout_ms, &err);
    if (rc < 0) {
        chand__async_destroy(a);
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
    int rc;

    if (!base || !url || !out)
        return chand__seterr(err, CHAND_EARG, 0, "",
                             "base, url or out is NULL");
    *out = NULL;
    a = async_new(base, cb, arg);
    if (!a)
        return chand__seterr(err, CHAND_ENOMEM, 0, "", "out of memory");
    if (chand__options_copy(&a->opts, opts) < 0) {
        rc = chand__seterr(err, CHAND_ENOMEM, 0, "", "out of memory");
        goto out_free;
    }
    rc = chand__route_set(&a->rt, url, a->opts.failover_ms, err);
    if (rc < 0)
        goto out_free;
    /* hello opens every session: whatever the caller queues runs after
     * it, as the authenticated user. */
    a->say_hello = true;
    rc = chand__async_start(a, timeout_ms, err);
    if (rc < 0)
        goto out_free;
    *out = a;
    return 0;
out_free:
    chand__async_destroy(a);
    return rc;
}

int chand_async_call(chand_async *a, const char *method, json_t *params,
                     int64_t timeout_ms, chand_reply_cb cb, void *arg)
{
    chand__areq *p;
    int rc;

    if (!a || !method) {
        json_decref(params);
        return CHAND_EARG;
    }
    if (a->dead || a->freeing) {
        json_decref(params);
        return CHAND_ECONN;
    }
    p = areq_new(a, method, params, timeout_ms, cb, arg, &rc);
    json_decref(params);
    if (!p)
        return rc;
    /* Until a session is up, and while one is left for the leader, calls
     * wait their turn in the queue. */
    if (!a->up || a->moving) {
        queue_insert(&a->held, p);
        a->nqueued++;
        return 0;
    }
    rc = areq_send(a, p);
    if (rc < 0)
        areq_free(p);
    return rc;
}

size_t chand_async_pending(const chand_async *a)
{
    return a ? a->nsent + a->nqueued : 0;
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
    chand__async_enter(a);
    chand__async_close(a);
    chand__async_fail(a, true, CHAND_ECONN, "connection handle freed");
    chand__async_leave(a);
}
