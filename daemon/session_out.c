/*
 * session_out.c - a session's output: writes with a per-session cap, the
 * answer queue that other threads use to reach a session, the write list
 * that sends a loop turn's answers in one write each, and give-back of
 * values whose answer never reached the socket.
 *
 * Each session lives on one I/O thread, and only that thread touches its
 * bufferevent.  Every other thread -- goroutines, other I/O threads
 * answering it (a send completing its receive) -- hands serialised answer
 * lines to sess_deliver(), which appends them to the session's locked
 * queue and activates its flush event; its own thread writes them.  A
 * session that has ended ("dead") refuses answers, and values that were
 * to be handed over with them are given back to their channels
 * (gback_run).
 */
#include "server.h"
#include "persist.h"
#include "tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

/* ------------------------------------------------------------------ */
/* Give-back                                                          */
/* ------------------------------------------------------------------ */

gback *gback_new(rt_chan *c, hval value)
{
    gback *g = malloc(sizeof *g);

    if (!g)
        return NULL;
    g->chan = rt_chan_retain(c);
    g->value = value;
    g->end = 0;
    g->next = NULL;
    return g;
}

static void gback_go(void *arg)
{
    gback *g = arg;
    int rc = rt_chan_send(g->chan, &g->value, RT_FOREVER);

    if (rc != 0)
        hval_free(g->value);
    rt_chan_release(g->chan);
    free(g);
}

void gback_run(gback *g)
{
    while (g) {
        gback *next = g->next;
        int rc = rt_chan_send(g->chan, &g->value, RT_POLL);
        g->next = NULL;
        if (rc == RT_EAGAIN && rt_go(gback_go, g) == 0) {
            g = next;
            continue; /* the goroutine owns g now */
        }
        if (rc != 0) {
            log_debug("give-back dropped a value: %s", rt_strerror(rc));
            hval_free(g->value);
        }
        rt_chan_release(g->chan);
        free(g);
        g = next;
    }
}

void gback_free(gback *g)
{
    while (g) {
        gback *next = g->next;
        hval_free(g->value);
        rt_chan_release(g->chan);
        free(g);
        g = next;
    }
}

/* Frees the give-back records of answers whose last byte has left the
 * output buffer for the socket: those values were handed over.  I/O
 * thread. */
void sess__mem_sync(sess *s)
{
    int64_t now = 0;

    if (s->bev)
        now = (int64_t)(evbuffer_get_length(bufferevent_get_output(s->bev)) +
                        evbuffer_get_length(bufferevent_get_input(s->bev)));
    if (now != s->mem_charged) {
        mem_add(now - s->mem_charged);
        s->mem_charged = now;
    }
}

void sess__settle(sess *s)
{
    uint64_t drained;

    if (!s->bev)
        return;
    size_t left = evbuffer_get_length(bufferevent_get_output(s->bev)) +
                  (s->tls_stage ? evbuffer_get_length(s->tls_stage) : 0);

    atomic_store_explicit(&s->outq, left, memory_order_relaxed);
    sess__mem_sync(s);
    drained = s->out_added - left;
    while (s->phead && s->phead->end <= drained) {
        gback *g = s->phead;
        s->phead = g->next;
        g->next = NULL;
        gback_free(g);
    }
    if (!s->phead)
        s->ptail = NULL;
}

/* Keeps gb (steals it) until the answer just added to the output buffer
 * has been written to the socket.  I/O thread. */
static void sess_hold(sess *s, gback *gb)
{
    gback *last = gb;

    if (!gb)
        return;
    for (gback *g = gb; g; g = g->next) { /* (several: a batch's) */
        g->end = s->out_added;
        last = g;
    }
    if (s->ptail)
        s->ptail->next = gb;
    else
        s->phead = gb;
    s->ptail = last;
    sess__settle(s);
}

/* Gives back the values of every answer that never reached the socket. */
void sess__giveback_pending(sess *s)
{
    gback_run(s->phead);
    s->phead = s->ptail = NULL;
}

/* Writes line to the session's socket buffer and checks the output cap.
 * I/O thread.  Returns false when the session was ended for it. */
bool sess__write(sess *s, const char *line, size_t len)
{
    struct evbuffer *out =
        s->tls_stage ? s->tls_stage : bufferevent_get_output(s->bev);
    size_t queued;

    if (evbuffer_add(out, line, len) != 0) {
        sess__end(s, false);
        return false;
    }
    s->out_added += len;
    if (persist__gate && !sess__gate_mark(s, len)) {
        sess__end(s, false);
        return false;
    }
    if (!s->tls_stage && s->ghead < s->gn &&
        (bufferevent_get_enabled(s->bev) & EV_WRITE))
        bufferevent_disable(s->bev, EV_WRITE); /* see sess__push */
    queued = evbuffer_get_length(out);
    if (s->tls_stage)
        queued += evbuffer_get_length(bufferevent_get_output(s->bev));
    atomic_store_explicit(&s->outq, queued, memory_order_relaxed);
    sess__mem_sync(s);
    srv_count_bytes_out(len);
    if (queued > srv_conf.max_outbuf) {
        log_warn("session %llu: output buffer over %zu bytes (client not "
                 "reading): disconnected",
                 (unsigned long long)s->id, srv_conf.max_outbuf);
        sess__end(s, false);
        return false;
    }
    return true;
}

/* Writes the session's pending output now (I/O thread).  The
 * bufferevent's write event stays disabled while the socket takes
 * everything: with it enabled, every answer cost two epoll_ctl calls (add
 * the write event, then delete it once drained) on top of the write, the
 * largest share of the daemon's time per request.  Only when the socket
 * buffer is full (or the write fails) is the event enabled, and the
 * bufferevent finishes the job (sess__write_cb disables it again). */
void sess__push(sess *s)
{
    struct evbuffer *out;

    if (!s->bev)
        return;
    out = bufferevent_get_output(s->bev);
    if (s->tls_stage) {
        /* TLS: the bufferevent encrypts and writes whatever reaches its
         * output at once, one record and one write(2) per addition; this
         * turn's answers gathered in tls_stage, and they go in one move
         * (a record per chunk, not per answer).  Under fsync=always only
         * the part whose effects are on disk. */
        size_t staged = evbuffer_get_length(s->tls_stage), ok = staged;
        if (staged > 0 && persist__gate)
            ok = sess__gate_allowed(s, staged);
        if (ok == staged && staged > 0) {
            /* Straight to the socket when it takes it all (as TCP's
             * path does, and for the same reason: tls_write_now). */
            if (tls_write_now(s->bev, s->tls_stage) > 0)
                sess__settle(s);
            if (evbuffer_get_length(s->tls_stage) > 0)
                evbuffer_add_buffer(out, s->tls_stage);
        } else if (ok > 0) {
            evbuffer_remove_buffer(s->tls_stage, out, ok);
        }
        return;
    }
    size_t len = evbuffer_get_length(out), allowed = len;
    if (len == 0)
        return;
    if (persist__gate && (allowed = sess__gate_allowed(s, len)) == 0)
        return; /* held: sess__durable_cb pushes again */
    if (!(bufferevent_get_enabled(s->bev) & EV_WRITE)) {
        /* A socket bufferevent keeps its output's start frozen outside
         * its own write callback. */
        evbuffer_unfreeze(out, 1);
        evbuffer_write_atmost(out, bufferevent_getfd(s->bev),
                              (ev_ssize_t)allowed);
        evbuffer_freeze(out, 1);
        sess__settle(s);
    }
    /* The bufferevent writes all it has: only once nothing is held. */
    if (evbuffer_get_length(out) > 0 && s->ghead == s->gn)
        bufferevent_enable(s->bev, EV_WRITE);
}

/* Writes s's answers once every session made ready by this loop turn has
 * been served, as Redis writes its replies before it sleeps: a write that
 * wakes a client costs the writer an inter-processor interrupt, and a
 * client woken by each session's write in turn went back to sleep between
 * them (7 times the context switches of the same load on Redis, a third of
 * the daemon's time in wake-ups).  sess__wflush_cb's event is activated
 * after the turn's socket events, so it runs after them in the same pass
 * of the loop.  I/O thread of s. */
void sess__push_later(sess *s)
{
    srv_io *io = s->io;

    if (s->wqueued)
        return;
    sess_retain(s);
    s->wqueued = true;
    s->wnext = NULL;
    if (io->wtail)
        io->wtail->wnext = s;
    else
        io->whead = s;
    io->wtail = s;
    if (io->whead == s)
        event_active(io->ev_wflush, EV_READ, 0);
}

void sess__wflush_cb(evutil_socket_t fd, short what, void *arg)
{
    srv_io *io = arg;
    sess *s = io->whead;
    (void)fd;
    (void)what;

    /* The end of a loop turn: one write (and under always one fdatasync)
     * for every effect of the turn (group commit). */
    persist_flush_turn();
    io->whead = io->wtail = NULL;
    while (s) {
        sess *next = s->wnext;
        s->wqueued = false;
        s->wnext = NULL;
        if (!s->ended)
            sess__push(s);
        sess_release(s);
        s = next;
    }
}

/* Queues line (stolen) for s's flush event (any thread). */
static void sess_enqueue(sess *s, char *line, size_t len, gback *gb)
{
    bool wake;
    outent *e;

    pthread_mutex_lock(&s->mu);
    if (s->dead || !(e = malloc(sizeof *e))) {
        pthread_mutex_unlock(&s->mu);
        gback_run(gb);
        free(line);
        return;
    }
    e->line = line;
    e->len = len;
    e->gb = gb;
    e->next = NULL;
    wake = s->qhead == NULL;
    if (s->qtail)
        s->qtail->next = e;
    else
        s->qhead = e;
    s->qtail = e;
    /* Activated under mu, so that sess__end (which sets dead under mu
     * before freeing the event) cannot free it under us. */
    if (wake)
        event_active(s->ev_flush, EV_READ, 0);
    pthread_mutex_unlock(&s->mu);
}

void sess_deliver_io(sess *s, const char *line, size_t len, gback *gb)
{
    char *copy;

    if (s->ended) {
        gback_run(gb);
    } else if (s->batching) {
        /* s's own turn: its answers go out in one write at the end. */
        if (sess__write(s, line, len))
            sess_hold(s, gb);
        else
            gback_run(gb);
    } else if ((copy = malloc(len ? len : 1)) != NULL) {
        /* Another session's request answered s (a send completing s's
         * receive): through s's flush event, so that the answers of one
         * loop turn leave in one write, and a value is not written to a
         * peer whose close is already pending (sess__flush_cb). */
        memcpy(copy, line, len);
        sess_enqueue(s, copy, len, gb);
    } else {
        gback_run(gb);
    }
}

void sess_deliver(sess *s, char *line, size_t len, gback *gb)
{
    if (sess__on_own_thread(s)) {
        sess_deliver_io(s, line, len, gb);
        free(line);
        return;
    }
    sess_enqueue(s, line, len, gb);
}

static outent *sess_take_queue(sess *s)
{
    outent *q;
    pthread_mutex_lock(&s->mu);
    q = s->qhead;
    s->qhead = s->qtail = NULL;
    pthread_mutex_unlock(&s->mu);
    return q;
}

/* Returns true when the peer has closed its side (EOF, or an error, is
 * already pending on the socket) although the loop has not seen it yet. */
static bool sess_peer_gone(sess *s)
{
    char c;
    ssize_t n;

    if (!s->bev)
        return true;
    n = recv(bufferevent_getfd(s->bev), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 ||
           (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

void sess__flush_cb(evutil_socket_t fd, short what, void *arg)
{
    sess *s = arg;
    outent *q = sess_take_queue(s);
    (void)fd;
    (void)what;

    sess_retain(s);
    /* A value must not be written to a client that is already gone (a
     * killed client's FIN can arrive in the same loop turn as the send
     * that woke its receive): if its EOF is pending, end the session
     * first, and the values queued here go back to their channels. */
    for (outent *e = q; e && !s->ended; e = e->next)
        if (e->gb) {
            if (sess_peer_gone(s))
                sess__event(s, BEV_EVENT_EOF);
            break;
        }
    while (q) {
        outent *next = q->next;
        if (!s->ended && sess__write(s, q->line, q->len))
            sess_hold(s, q->gb);
        else
            gback_run(q->gb);
        free(q->line);
        free(q);
        q = next;
    }
    if (!s->ended)
        sess__push_later(s);
    sess_release(s);
}

void sess__write_cb(struct bufferevent *bev, void *arg)
{
    sess *s = arg;
    sess__settle(s);
    if (s->ended && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        sess__close_conn(s);
    else if (!s->ended && !s->tls_stage)
        bufferevent_disable(bev, EV_WRITE); /* drained: see sess__push */
}
