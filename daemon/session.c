/*
 * session.c - one connection: its life (open, end, close, references),
 * output with a per-session cap, the answer queue that other threads use
 * to reach a session, the write list that sends a loop turn's answers in
 * one write each, and give-back of values whose answer never reached the
 * socket.  Its input (framing, fair turns) is framing.c's.
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

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "tls.h"

__thread srv_io *srv__tls_io;
static _Atomic uint64_t sess_next_id = 1;

/* True on the I/O thread that serves s. */
static bool sess_on_own_thread(const sess *s)
{
    return srv__tls_io && srv__tls_io == s->io;
}

sess_local *sess_local_get(sess *s)
{
    return sess_on_own_thread(s) ? &s->io->local : NULL;
}

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

/* ------------------------------------------------------------------ */
/* Sessions                                                           */
/* ------------------------------------------------------------------ */

uint64_t sess_id(const sess *s)
{
    return s->id;
}

rt_cancel *sess_cancel(sess *s)
{
    return s->cancel;
}

bool sess_alive(sess *s)
{
    return !atomic_load_explicit(&s->dead, memory_order_acquire);
}

void sess_retain(sess *s)
{
    atomic_fetch_add(&s->refs, 1);
}

void sess_release(sess *s)
{
    if (atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    /* Counted until here, not until the socket closed: a session whose
     * requests are still finishing on goroutines still exists, and a
     * client that waits for the count to drop knows it has no effect
     * left in flight. */
    atomic_fetch_sub(&srv_stat.sessions, 1);
    sec__sess_free(s);
    rt_cancel_free(s->cancel);
    pthread_mutex_destroy(&s->mu);
    free(s->gmarks);
    free(s);
}

void sess_parked(sess *s, int delta)
{
    atomic_fetch_add(&s->parked, delta);
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

static void sess_settle(sess *s)
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
    sess_settle(s);
}

/* Gives back the values of every answer that never reached the socket. */
static void sess_giveback_pending(sess *s)
{
    gback_run(s->phead);
    s->phead = s->ptail = NULL;
}

/* fsync = always: marks the len bytes just added to the output as held
 * until the log is durable up to the LSN appended now (which covers every
 * effect the answer could reveal).  Returns false when out of memory. */
static bool sess_gate_mark(sess *s, size_t len)
{
    uint64_t lsn = persist_gate_lsn();

    if (lsn <= persist_durable_lsn())
        return true; /* nothing to hold (earlier marks still order it) */
    if (s->gn > s->ghead && s->gmarks[s->gn - 1].lsn >= lsn) {
        s->gmarks[s->gn - 1].end = s->out_added;
        return true;
    }
    if (s->gn == s->gcap) {
        if (s->ghead > 0) {
            memmove(s->gmarks, s->gmarks + s->ghead,
                    (s->gn - s->ghead) * sizeof *s->gmarks);
            s->gn -= s->ghead;
            s->ghead = 0;
        } else {
            size_t cap = s->gcap ? s->gcap * 2 : 16;
            void *p = realloc(s->gmarks, cap * sizeof *s->gmarks);
            if (!p)
                return false;
            s->gmarks = p;
            s->gcap = cap;
        }
    }
    s->gmarks[s->gn++] =
        (struct sess_gmark){s->out_added - len, s->out_added, lsn};
    return true;
}

/* Returns how many of the buffered bytes of s's output may leave now:
 * those before the first answer whose effects are not yet durable. */
static size_t sess_gate_allowed(sess *s, size_t buffered)
{
    uint64_t durable = persist_durable_lsn();
    uint64_t first = s->out_added - buffered;

    while (s->ghead < s->gn && s->gmarks[s->ghead].lsn <= durable)
        s->ghead++;
    if (s->ghead == s->gn) {
        s->ghead = s->gn = 0;
        return buffered;
    }
    uint64_t held = s->gmarks[s->ghead].start;
    return held > first ? (size_t)(held - first) : 0;
}

/* Writes line to the session's socket buffer and checks the output cap.
 * I/O thread.  Returns false when the session was ended for it. */
static bool sess_write(sess *s, const char *line, size_t len)
{
    struct evbuffer *out =
        s->tls_stage ? s->tls_stage : bufferevent_get_output(s->bev);
    size_t queued;

    if (evbuffer_add(out, line, len) != 0) {
        sess__end(s, false);
        return false;
    }
    s->out_added += len;
    if (persist__gate && !sess_gate_mark(s, len)) {
        sess__end(s, false);
        return false;
    }
    if (!s->tls_stage && s->ghead < s->gn &&
        (bufferevent_get_enabled(s->bev) & EV_WRITE))
        bufferevent_disable(s->bev, EV_WRITE); /* see sess_push */
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
 * bufferevent finishes the job (sess_write_cb disables it again). */
static void sess_push(sess *s)
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
            ok = sess_gate_allowed(s, staged);
        if (ok == staged && staged > 0)
            evbuffer_add_buffer(out, s->tls_stage);
        else if (ok > 0)
            evbuffer_remove_buffer(s->tls_stage, out, ok);
        return;
    }
    size_t len = evbuffer_get_length(out), allowed = len;
    if (len == 0)
        return;
    if (persist__gate && (allowed = sess_gate_allowed(s, len)) == 0)
        return; /* held: sess__durable_cb pushes again */
    if (!(bufferevent_get_enabled(s->bev) & EV_WRITE)) {
        /* A socket bufferevent keeps its output's start frozen outside
         * its own write callback. */
        evbuffer_unfreeze(out, 1);
        evbuffer_write_atmost(out, bufferevent_getfd(s->bev),
                              (ev_ssize_t)allowed);
        evbuffer_freeze(out, 1);
        sess_settle(s);
    }
    /* The bufferevent writes all it has: only once nothing is held. */
    if (evbuffer_get_length(out) > 0 && s->ghead == s->gn)
        bufferevent_enable(s->bev, EV_WRITE);
}

static bool sess_push_held(sess *s, void *arg)
{
    (void)arg;
    if (!s->ended && s->ghead < s->gn)
        sess__push_later(s);
    return true;
}

void sess__durable_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sess__each(arg, sess_push_held, NULL);
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
    persist_flush();
    io->whead = io->wtail = NULL;
    while (s) {
        sess *next = s->wnext;
        s->wqueued = false;
        s->wnext = NULL;
        if (!s->ended)
            sess_push(s);
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
        if (sess_write(s, line, len))
            sess_hold(s, gb);
        else
            gback_run(gb);
    } else if ((copy = malloc(len ? len : 1)) != NULL) {
        /* Another session's request answered s (a send completing s's
         * receive): through s's flush event, so that the answers of one
         * loop turn leave in one write, and a value is not written to a
         * peer whose close is already pending (sess_flush_cb). */
        memcpy(copy, line, len);
        sess_enqueue(s, copy, len, gb);
    } else {
        gback_run(gb);
    }
}

void sess_deliver(sess *s, char *line, size_t len, gback *gb)
{
    if (sess_on_own_thread(s)) {
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

static void sess_flush_cb(evutil_socket_t fd, short what, void *arg)
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
        if (!s->ended && sess_write(s, q->line, q->len))
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

static void sess_unlink(sess *s)
{
    srv_io *io = s->io;

    pthread_mutex_lock(&io->mu);
    if (s->prev)
        s->prev->next = s->next;
    else
        io->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    pthread_mutex_unlock(&io->mu);
}

/* Frees the connection side of s (I/O thread). */
void sess__close_conn(sess *s)
{
    if (!s->bev)
        return;
    sess_settle(s);
    sess_giveback_pending(s); /* their bytes die with the connection */
    if (s->kind == SESS_TLS)
        tls_close_notify(s->bev);
    bufferevent_free(s->bev);
    if (s->tls_stage)
        evbuffer_free(s->tls_stage);
    s->tls_stage = NULL;
    s->bev = NULL;
    atomic_store(&s->outq, 0);
    sess__mem_sync(s); /* releases all */
    event_free(s->ev_flush);
    event_free(s->ev_more);
    if (s->ev_read)
        event_free(s->ev_read);
    if (s->ev_kill)
        event_free(s->ev_kill);
    if (s->ev_hb)
        event_free(s->ev_hb);
    s->ev_hb = NULL;
    sec__sess_close(s);
    sess_unlink(s);
    log_info("session %llu closed", (unsigned long long)s->id);
    sess_release(s);
}

static void sess_kill_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sess__close_conn(arg);
}

/* ------------------------------------------------------------------ */
/* Liveness: TCP keepalive, heartbeat                                  */
/* ------------------------------------------------------------------ */

int64_t sess__now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Keepalive probes after tcp_keepalive idle seconds, a third of that
 * apart, three of them; and the same bound (TCP_USER_TIMEOUT) on data
 * left unacknowledged, so that a peer whose host vanished is noticed
 * whether we were sending to it or not.  The default 30 s finds it within
 * a minute, where the kernel's defaults take 2 h 11 min. */
static void sess_keepalive(evutil_socket_t fd)
{
    int idle = srv_conf.tcp_keepalive, one = 1, cnt = 3, intvl;
    unsigned user_ms;

    if (idle <= 0)
        return;
    intvl = idle / 3 > 0 ? idle / 3 : 1;
    user_ms = (unsigned)(idle + cnt * intvl) * 1000u;
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) != 0)
        return; /* not TCP (a test's socketpair): nothing to tune */
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_ms, sizeof user_ms);
}

static void sess_hb_cb(evutil_socket_t fd, short what, void *arg)
{
    sess *s = arg;
    int64_t idle = sess__now_ms() - s->last_in_ms;
    (void)fd;
    (void)what;

    if (s->ended || !s->hb_ms)
        return;
    if (idle >= s->hb_ms) {
        log_info("session %llu: nothing received for %lld ms (heartbeat_ms "
                 "%lld): ended",
                 (unsigned long long)s->id, (long long)idle,
                 (long long)s->hb_ms);
        sess_retain(s);
        sess__end(s, false);
        sess_release(s);
        return;
    }
    {
        int64_t left = s->hb_ms - idle;
        struct timeval tv = {left / 1000, (left % 1000) * 1000};
        evtimer_add(s->ev_hb, &tv);
    }
}

int sess_set_heartbeat(sess *s, int64_t ms)
{
    if (!s->ev_hb) {
        if (!ms)
            return 0;
        s->ev_hb = evtimer_new(s->io->base, sess_hb_cb, s);
        if (!s->ev_hb)
            return -1;
    }
    s->hb_ms = ms;
    s->last_in_ms = sess__now_ms();
    if (!ms) {
        evtimer_del(s->ev_hb);
        return 0;
    }
    sess_hb_cb(-1, 0, s); /* arms it for ms from now */
    return 0;
}

/* Ends the session: no more answers, every wait cancelled, holds released
 * (disp_session_end), queued values given back.  graceful: the bytes
 * already in the socket buffer are still sent before the close. */
void sess__end(sess *s, bool graceful)
{
    outent *q;

    if (s->ended)
        return;
    s->ended = true;
    pthread_mutex_lock(&s->mu);
    s->dead = true;
    q = s->qhead;
    s->qhead = s->qtail = NULL;
    pthread_mutex_unlock(&s->mu);
    if (s->ev_read)
        event_del(s->ev_read); /* no more requests */
    if (s->ev_hb)
        evtimer_del(s->ev_hb);
    rt_cancel_fire(s->cancel);
    disp_session_end(s);
    while (q) {
        outent *next = q->next;
        gback_run(q->gb);
        free(q->line);
        free(q);
        q = next;
    }
    if (s->tls_stage && s->bev)
        sess_push(s); /* the last answers, before a graceful close */
    if (graceful && s->bev &&
        evbuffer_get_length(bufferevent_get_output(s->bev)) > 0) {
        struct timeval tv = {5, 0};
        bufferevent_disable(s->bev, EV_READ);
        bufferevent_enable(s->bev, EV_WRITE);
        s->ev_kill = evtimer_new(s->io->base, sess_kill_cb, s);
        if (s->ev_kill && evtimer_add(s->ev_kill, &tv) == 0)
            return; /* sess_write_cb closes once the output drained */
    }
    sess__close_conn(s);
}

/* Answers a framing-level error (id null) and ends the session. */
void sess__fail_close(sess *s, proto_reason reason, const char *msg)
{
    json_t *a =
        proto_error_answer(NULL, proto_reason_code(reason), reason, msg, NULL);
    size_t len;
    char *line = a ? proto_dump_line(a, &len) : NULL;

    if (line) {
        sess_write(s, line, len);
        free(line);
    }
    json_decref(a);
    sess__end(s, true);
}
static void sess_write_cb(struct bufferevent *bev, void *arg)
{
    sess *s = arg;
    sess_settle(s);
    if (s->ended && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        sess__close_conn(s);
    else if (!s->ended && !s->tls_stage)
        bufferevent_disable(bev, EV_WRITE); /* drained: see sess_push */
}

/* ------------------------------------------------------------------ */
/* Opening, and what the I/O threads ask of sessions                  */
/* ------------------------------------------------------------------ */

int sess__open(srv_io *io, evutil_socket_t fd, const struct sockaddr *addr,
               int alen, int kind)
{
    sess *s;
    int one = 1;
    SSL *ssl = NULL;

    s = calloc(1, sizeof *s);
    if (!s)
        goto out_close_fd;
    s->cancel = rt_cancel_new();
    if (!s->cancel)
        goto out_free_sess;
    pthread_mutex_init(&s->mu, NULL);
    s->refs = 1;
    s->io = io;
    s->kind = kind;
    s->id = atomic_fetch_add(&sess_next_id, 1);
    if (kind != SESS_UNIX) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        sess_keepalive(fd);
    }
    if (kind == SESS_TLS) {
        /* The bufferevent reads and writes through OpenSSL: no raw
         * reads (ev_read) and no raw writes (sess_push). */
        s->tls_stage = evbuffer_new();
        if (!s->tls_stage)
            goto out_free_cancel;
        ssl = tls_server_ssl(sec_tls());
        s->bev = ssl ? tls_bufferevent_accept(io->base, fd, ssl,
                                              BEV_OPT_CLOSE_ON_FREE,
                                              TLS_HANDSHAKE_MS)
                     : NULL;
        if (!s->bev) {
            SSL_free(ssl);
            goto out_free_cancel;
        }
    } else {
        s->bev = bufferevent_socket_new(io->base, fd, BEV_OPT_CLOSE_ON_FREE);
        if (!s->bev)
            goto out_free_cancel;
    }
    s->ev_flush = event_new(io->base, -1, 0, sess_flush_cb, s);
    s->ev_more = event_new(io->base, -1, 0, sess__more_cb, s);
    if (kind != SESS_TLS)
        s->ev_read =
            event_new(io->base, fd, EV_READ | EV_PERSIST, sess__recv_cb, s);
    if (!s->ev_flush || !s->ev_more || (kind != SESS_TLS && !s->ev_read))
        goto out_free_events;
    if (sec__sess_open(s, fd, addr, alen) != 0)
        goto out_free_events;
    if (kind == SESS_TLS) {
        bufferevent_setcb(s->bev, sess__tls_read_cb, sess_write_cb,
                          sess__tls_event_cb, s);
        bufferevent_setwatermark(s->bev, EV_READ, 0, srv_conf.max_line + 1);
        bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    } else {
        bufferevent_setcb(s->bev, NULL, sess_write_cb, sess__event_cb, s);
        /* sess__recv_cb reads (never more than one line's worth of
         * unterminated input), sess_push writes. */
        bufferevent_disable(s->bev, EV_READ | EV_WRITE);
    }
    log_info("session %llu opened from %s%s", (unsigned long long)s->id,
             s->peer, kind == SESS_TLS ? " (TLS)" : "");
    /* Listed and counted before its read event is added: from then on
     * its own I/O thread may serve (and even close) it. */
    pthread_mutex_lock(&io->mu);
    s->next = io->sessions;
    if (io->sessions)
        io->sessions->prev = s;
    io->sessions = s;
    pthread_mutex_unlock(&io->mu);
    atomic_fetch_add(&srv_stat.sessions, 1);
    if (s->ev_read && event_add(s->ev_read, NULL) != 0) {
        sess_unlink(s);
        atomic_fetch_sub(&srv_stat.sessions, 1);
        goto out_free_events;
    }
    return 0;

out_free_events:
    sec__sess_close(s);
    sec__sess_free(s);
    if (s->ev_flush)
        event_free(s->ev_flush);
    if (s->ev_more)
        event_free(s->ev_more);
    if (s->ev_read)
        event_free(s->ev_read);
    if (s->bev) {
        bufferevent_free(s->bev); /* closes fd */
        fd = -1;
    }
out_free_cancel:
    if (s->tls_stage)
        evbuffer_free(s->tls_stage);
    rt_cancel_free(s->cancel);
    pthread_mutex_destroy(&s->mu);
out_free_sess:
    free(s);
out_close_fd:
    if (fd >= 0)
        evutil_closesocket(fd);
    log_error("out of memory accepting a connection");
    return -1;
}

bool sess__each(srv_io *io, bool (*fn)(sess *s, void *arg), void *arg)
{
    bool go_on = true;

    pthread_mutex_lock(&io->mu);
    for (sess *s = io->sessions; s && go_on; s = s->next)
        go_on = fn(s, arg);
    pthread_mutex_unlock(&io->mu);
    return go_on;
}

bool sess__drained(sess *s)
{
    bool q;

    if (atomic_load(&s->parked) > 0)
        return false;
    pthread_mutex_lock(&s->mu);
    q = s->qhead != NULL;
    pthread_mutex_unlock(&s->mu);
    return !q && atomic_load(&s->outq) == 0;
}

size_t sess__outq(sess *s)
{
    return atomic_load(&s->outq);
}

void sess__close_all(srv_io *io)
{
    while (io->sessions) {
        sess *s = io->sessions;
        sess_retain(s);
        sess__end(s, false);
        sess__close_conn(s);
        sess_release(s);
    }
    sess__wflush_cb(-1, 0, io); /* drops the write list's references */
}
