/*
 * server.c - the daemon's network side: the listener, sessions (one per
 * connection), line framing with a cap, fair scheduling between sessions,
 * output with a per-session cap, the answer queue that other threads use
 * to reach a session, the I/O threads, and the SIGTERM/SIGINT drain.
 *
 * Each session lives on one I/O thread (io_threads of them, one by
 * default; io[0] also has the listener, signals and metrics), and only
 * that thread touches its bufferevent.  Every other thread -- goroutines,
 * other I/O threads answering it (a send completing its receive) -- hands
 * serialised answer lines to sess_deliver(), which appends them to the
 * session's locked queue and activates its flush event; its own thread
 * writes them.  A session that has ended ("dead") refuses answers, and
 * values that were to be handed over with them are given back to their
 * channels (gback_run).
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <event2/util.h>

#include "metrics.h"
#include "signals.h"

srv_stats srv_stat;
conf srv_conf;

typedef struct srv_io srv_io;

typedef struct outent {
    char *line;
    size_t len;
    gback *gb;
    struct outent *next;
} outent;

struct sess {
    uint64_t id;
    _Atomic int refs;
    rt_cancel *cancel;
    pthread_mutex_t mu;          /* guards the queue, and dead's change */
    _Atomic bool dead;           /* no more answers accepted (read
                                  * without mu by sess_alive) */
    outent *qhead, *qtail;
    _Atomic int parked;          /* requests waiting on goroutines */
    /* its I/O thread only: */
    srv_io *io;                  /* the I/O thread that serves it */
    struct bufferevent *bev;
    struct event *ev_flush;      /* answers queued by goroutines */
    struct event *ev_more;       /* more input after a fair share */
    struct event *ev_read;       /* the socket is readable (sess_recv_cb) */
    struct event *ev_kill;       /* hard close if a graceful one stalls */
    sess *prev, *next;
    bool ended;                  /* sess_end ran */
    bool batching;               /* in sess_process: sess_push follows */
    bool wqueued;                /* on its I/O thread's write list */
    sess *wnext;                 /* link in that list */
    uint64_t out_added;          /* bytes ever added to the output */
    /* The values of answers that are in the output buffer but not yet in
     * the socket (gback.end: out_added once the answer was added): if the
     * session ends before those bytes leave, they go back to their
     * channels (a cut slow reader loses nothing). */
    gback *phead, *ptail;
    _Atomic size_t outq;         /* bytes in the output buffer, for the
                                  * drain and stats on other threads */
};

/* One I/O thread: an event base and the sessions it serves.  io[0] runs
 * on the thread that calls srv_run, with the listener, signals and the
 * metrics server; the others serve only sessions. */
struct srv_io {
    srv *srv;
    struct event_base *base;
    pthread_t tid;
    bool started;
    pthread_mutex_t mu;          /* guards sessions (accept on io[0],
                                  * close here, stats/drain anywhere) */
    sess *sessions;
    sess *whead, *wtail;         /* sessions with answers to write */
    struct event *ev_wflush;     /* writes them (srv_wflush_cb) */
    char rbuf[16384];            /* reads while a session's input is empty */
    sess_local local;            /* dispatch's scratch (sess_local_get) */
};

#define SRV_MAX_IO 64

struct srv {
    struct event_base *base;     /* io[0].base */
    struct evconnlistener *lis;
    struct event *ev_sigterm, *ev_sigint, *ev_resume, *ev_drain;
    int nio;
    unsigned next_io;            /* round-robin for new sessions */
    srv_io io[SRV_MAX_IO];
    int port;
    int64_t drain_start;
};

/* Set on each I/O thread (they never run goroutines, so thread-local
 * storage is safe there). */
static __thread srv_io *srv_tls_io;
static _Atomic bool srv_drain_flag;
static _Atomic bool srv_io_stop;         /* the other I/O loops end */
static _Atomic int64_t srv_out_bytes;
static _Atomic uint64_t srv_next_sid = 1;

static void sess_end(sess *s, bool graceful);
static void sess_event(sess *s, short what);

bool srv_on_io_thread(void)
{
    return srv_tls_io != NULL;
}

/* True on the I/O thread that serves s. */
static bool sess_on_own_thread(const sess *s)
{
    return srv_tls_io && srv_tls_io == s->io;
}

sess_local *sess_local_get(sess *s)
{
    return sess_on_own_thread(s) ? &s->io->local : NULL;
}

bool srv_draining(void)
{
    return atomic_load(&srv_drain_flag);
}

int srv_port(const srv *s)
{
    return s->port;
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
    rt_cancel_free(s->cancel);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void srv__sess_parked(sess *s, int delta);
/* Counts requests of s waiting on goroutines (dispatch.c), for the drain. */
void srv__sess_parked(sess *s, int delta)
{
    atomic_fetch_add(&s->parked, delta);
}

/* Frees the give-back records of answers whose last byte has left the
 * output buffer for the socket: those values were handed over.  I/O
 * thread. */
static void sess_settle(sess *s)
{
    uint64_t drained;

    if (!s->bev)
        return;
    size_t left = evbuffer_get_length(bufferevent_get_output(s->bev));

    atomic_store_explicit(&s->outq, left, memory_order_relaxed);
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

/* Writes line to the session's socket buffer and checks the output cap.
 * I/O thread.  Returns false when the session was ended for it. */
static bool sess_write(sess *s, const char *line, size_t len)
{
    struct evbuffer *out = bufferevent_get_output(s->bev);

    if (evbuffer_add(out, line, len) != 0) {
        sess_end(s, false);
        return false;
    }
    s->out_added += len;
    atomic_store_explicit(&s->outq, evbuffer_get_length(out),
                          memory_order_relaxed);
    metrics_bytes_out(len);
    if (evbuffer_get_length(out) > srv_conf.max_outbuf) {
        log_warn("session %llu: output buffer over %zu bytes (client not "
                 "reading): disconnected",
                 (unsigned long long)s->id, srv_conf.max_outbuf);
        sess_end(s, false);
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
    if (evbuffer_get_length(out) == 0)
        return;
    if (!(bufferevent_get_enabled(s->bev) & EV_WRITE)) {
        /* A socket bufferevent keeps its output's start frozen outside
         * its own write callback. */
        evbuffer_unfreeze(out, 1);
        evbuffer_write(out, bufferevent_getfd(s->bev));
        evbuffer_freeze(out, 1);
        sess_settle(s);
    }
    if (evbuffer_get_length(out) > 0)
        bufferevent_enable(s->bev, EV_WRITE);
}

/* Writes s's answers once every session made ready by this loop turn has
 * been served, as Redis writes its replies before it sleeps: a write that
 * wakes a client costs the writer an inter-processor interrupt, and a
 * client woken by each session's write in turn went back to sleep between
 * them (7 times the context switches of the same load on Redis, a third of
 * the daemon's time in wake-ups).  srv_wflush_cb's event is activated
 * after the turn's socket events, so it runs after them in the same pass
 * of the loop.  I/O thread of s. */
static void sess_push_later(sess *s)
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

static void srv_wflush_cb(evutil_socket_t fd, short what, void *arg)
{
    srv_io *io = arg;
    sess *s = io->whead;
    (void)fd;
    (void)what;

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
    /* Activated under mu, so that sess_end (which sets dead under mu
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
                sess_event(s, BEV_EVENT_EOF);
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
        sess_push_later(s);
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
static void sess_close_conn(sess *s)
{
    if (!s->bev)
        return;
    sess_settle(s);
    sess_giveback_pending(s); /* their bytes die with the connection */
    bufferevent_free(s->bev);
    s->bev = NULL;
    atomic_store(&s->outq, 0);
    event_free(s->ev_flush);
    event_free(s->ev_more);
    event_free(s->ev_read);
    if (s->ev_kill)
        event_free(s->ev_kill);
    sess_unlink(s);
    log_info("session %llu closed", (unsigned long long)s->id);
    sess_release(s);
}

static void sess_kill_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sess_close_conn(arg);
}

/* Ends the session: no more answers, every wait cancelled, holds released
 * (disp_session_end), queued values given back.  graceful: the bytes
 * already in the socket buffer are still sent before the close. */
static void sess_end(sess *s, bool graceful)
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
    rt_cancel_fire(s->cancel);
    disp_session_end(s);
    while (q) {
        outent *next = q->next;
        gback_run(q->gb);
        free(q->line);
        free(q);
        q = next;
    }
    if (graceful && s->bev &&
        evbuffer_get_length(bufferevent_get_output(s->bev)) > 0) {
        struct timeval tv = { 5, 0 };
        bufferevent_disable(s->bev, EV_READ);
        bufferevent_enable(s->bev, EV_WRITE);
        s->ev_kill = evtimer_new(s->io->base, sess_kill_cb, s);
        if (s->ev_kill && evtimer_add(s->ev_kill, &tv) == 0)
            return; /* sess_write_cb closes once the output drained */
    }
    sess_close_conn(s);
}

/* Answers a framing-level error (id null) and ends the session. */
static void sess_fail_close(sess *s, proto_reason reason, const char *msg)
{
    json_t *a = proto_error_answer(NULL, proto_reason_code(reason), reason,
                                   msg, NULL);
    size_t len;
    char *line = a ? proto_dump_line(a, &len) : NULL;

    if (line) {
        sess_write(s, line, len);
        free(line);
    }
    json_decref(a);
    sess_end(s, true);
}

/* Serves up to fair_batch lines of s, then yields to other sessions via
 * ev_more.  all: serve everything buffered (EOF). */
/* Serves one complete line (without its \n).  Returns false when the
 * session ended (the line was too long, or a handler ended it). */
static bool sess_line(sess *s, const char *line, size_t len)
{
    if (len > srv_conf.max_line) {
        sess_fail_close(s, PROTO_R_TOO_LARGE, "line too long: closing");
        return false;
    }
    metrics_bytes_in(len + 1);
    /* Each request at debug (the level can be raised by SIGHUP). */
    log_debug("session %llu: %.*s", (unsigned long long)s->id,
              len > 300 ? 300 : (int)len, line);
    if (len > 0)
        disp_line(s, line, len);
    return !s->ended;
}

/* Closes s for a partial line already over the limit. */
static void sess_fail_long(sess *s)
{
    char msg[128];

    snprintf(msg, sizeof msg, "line longer than %zu bytes: closing",
             srv_conf.max_line);
    sess_fail_close(s, PROTO_R_TOO_LARGE, msg);
}

static void sess_process(sess *s, bool all)
{
    struct evbuffer *in;
    int n = 0;

    while (!s->ended && (all || n < srv_conf.fair_batch)) {
        const char *line;
        in = bufferevent_get_input(s->bev);
        /* The line is served in place (pulled up to be contiguous, which
         * it nearly always is already) and drained afterwards: no copy and
         * no allocation per request.  Nothing but this loop touches the
         * input buffer meanwhile; a handler may end the session, which
         * frees it, so the drain checks first. */
        struct evbuffer_ptr eol =
            evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
        if (eol.pos < 0) {
            if (evbuffer_get_length(in) > srv_conf.max_line)
                sess_fail_long(s);
            return;
        }
        line = (const char *)evbuffer_pullup(in, (ev_ssize_t)eol.pos + 1);
        if (!line) {
            sess_fail_close(s, PROTO_R_INTERNAL, "out of memory: closing");
            return;
        }
        if (!sess_line(s, line, (size_t)eol.pos))
            return;
        evbuffer_drain(in, (size_t)eol.pos + 1);
        n++;
    }
    if (!s->ended && evbuffer_get_length(bufferevent_get_input(s->bev)))
        event_active(s->ev_more, EV_READ, 0);
}

/* Serves up to a fair turn of the complete lines at the start of buf (a
 * read into the I/O thread's buffer while the session's input buffer was
 * empty, the common case); what is left -- a partial line, or lines past
 * the turn -- goes to the input buffer, as if read there.  Saves the input
 * buffer a chain allocation, a search and a drain per read. */
static void sess_process_flat(sess *s, const char *buf, size_t n)
{
    struct evbuffer *in;
    const char *p = buf, *end = buf + n;
    int served = 0;

    while (p < end && served < srv_conf.fair_batch) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;
        if (!sess_line(s, p, (size_t)(nl - p)))
            return;
        p = nl + 1;
        served++;
    }
    if (p == end)
        return;
    in = bufferevent_get_input(s->bev);
    evbuffer_unfreeze(in, 0);
    if (evbuffer_add(in, p, (size_t)(end - p)) != 0) {
        evbuffer_freeze(in, 0);
        sess_fail_close(s, PROTO_R_INTERNAL, "out of memory: closing");
        return;
    }
    evbuffer_freeze(in, 0);
    if (served == srv_conf.fair_batch)
        event_active(s->ev_more, EV_READ, 0); /* its next turn */
    else if ((size_t)(end - p) > srv_conf.max_line)
        sess_fail_long(s); /* a partial line, already too long */
}

/* Callbacks hold a reference across their work: a write inside them may
 * end the session and drop the connection's reference. */
/* Reads only while less than a line's worth (max_line + 1) is buffered,
 * as the bufferevent's read watermark did. */
static void sess_read_ctl(sess *s)
{
    if (evbuffer_get_length(bufferevent_get_input(s->bev)) >
        srv_conf.max_line)
        event_del(s->ev_read);
    else if (!event_pending(s->ev_read, EV_READ, NULL))
        event_add(s->ev_read, NULL);
}

/* The socket is readable: one read() into the session's input buffer,
 * then a fair turn of requests and one write of their answers.  The
 * bufferevent's own reading is not used: its evbuffer_read asks the
 * kernel how much is readable (ioctl FIONREAD) before every read, one of
 * the three syscalls a request cost. */
static void sess_recv_cb(evutil_socket_t fd, short what, void *arg)
{
    sess *s = arg;
    struct evbuffer *in = bufferevent_get_input(s->bev);
    size_t have = evbuffer_get_length(in);
    size_t room = srv_conf.max_line + 1 > have
                      ? srv_conf.max_line + 1 - have : 0;
    struct evbuffer_iovec vec;
    ssize_t n = -1;
    int err = EAGAIN;
    (void)what;

    sess_retain(s);
    /* 16 KiB a read: a session holding a partial line keeps its chain,
     * so this bounds what idle sessions cost. */
    if (room > sizeof s->io->rbuf)
        room = sizeof s->io->rbuf;
    if (have == 0 && room > 0) {
        do
            n = read(fd, s->io->rbuf, room);
        while (n < 0 && errno == EINTR);
        if (n == 0) {
            sess_event(s, BEV_EVENT_EOF);
            goto out;
        }
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                sess_event(s, BEV_EVENT_ERROR);
            goto out;
        }
        s->batching = true;
        sess_process_flat(s, s->io->rbuf, (size_t)n);
        s->batching = false;
        goto served;
    }
    if (room > 0) {
        /* The bufferevent keeps its input's end frozen. */
        evbuffer_unfreeze(in, 0);
        if (evbuffer_reserve_space(in, (ev_ssize_t)room, &vec, 1) >= 1) {
            if (vec.iov_len > room)
                vec.iov_len = room;
            do
                n = read(fd, vec.iov_base, vec.iov_len);
            while (n < 0 && errno == EINTR);
            if (n < 0)
                err = errno;
            if (n > 0) {
                vec.iov_len = (size_t)n;
                evbuffer_commit_space(in, &vec, 1);
            }
        }
        evbuffer_freeze(in, 0);
        if (n == 0) {
            sess_event(s, BEV_EVENT_EOF);
            goto out;
        }
        if (n < 0 && err != EAGAIN && err != EWOULDBLOCK) {
            sess_event(s, BEV_EVENT_ERROR);
            goto out;
        }
    }
    s->batching = true;
    sess_process(s, false);
    s->batching = false;
served:
    if (!s->ended) {
        sess_push_later(s);
        sess_read_ctl(s);
    }
out:
    sess_release(s);
}

static void sess_more_cb(evutil_socket_t fd, short what, void *arg)
{
    sess *s = arg;
    (void)fd;
    (void)what;
    sess_retain(s);
    if (s->bev) {
        s->batching = true;
        sess_process(s, false);
        s->batching = false;
        if (!s->ended) {
            sess_push_later(s);
            sess_read_ctl(s);
        }
    }
    sess_release(s);
}

static void sess_write_cb(struct bufferevent *bev, void *arg)
{
    sess *s = arg;
    sess_settle(s);
    if (s->ended && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        sess_close_conn(s);
    else if (!s->ended)
        bufferevent_disable(bev, EV_WRITE); /* drained: see sess_push */
}

static void sess_event_cb(struct bufferevent *bev, short what, void *arg)
{
    sess *s = arg;
    (void)bev;

    sess_retain(s);
    sess_event(s, what);
    sess_release(s);
}

static void sess_event(sess *s, short what)
{
    if (what & BEV_EVENT_EOF) {
        /* Serve what the client sent before closing its side (a script's
         * `echo ... | nc`), then end: waits are cancelled, since a killed
         * client looks exactly like this. */
        if (!s->ended)
            sess_process(s, true);
        sess_end(s, true);
    } else if (what & BEV_EVENT_ERROR) {
        if (s->ended)
            sess_close_conn(s);
        else
            sess_end(s, false);
    }
}

/* ------------------------------------------------------------------ */
/* Listener                                                           */
/* ------------------------------------------------------------------ */

/* Refuses a connection over max_conns with one error line. */
static void srv_refuse(evutil_socket_t fd)
{
    json_t *a = proto_error_answer(NULL, proto_reason_code(PROTO_R_LIMIT),
                                   PROTO_R_LIMIT, "too many connections",
                                   NULL);
    size_t len;
    char *line = a ? proto_dump_line(a, &len) : NULL;

    if (line && send(fd, line, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        log_debug("refusal not sent: %s", strerror(errno));
    free(line);
    json_decref(a);
    evutil_closesocket(fd);
}

static void srv_accept_cb(struct evconnlistener *lis, evutil_socket_t fd,
                          struct sockaddr *addr, int alen, void *arg)
{
    srv *v = arg;
    srv_io *io = &v->io[v->next_io++ % (unsigned)v->nio];
    sess *s;
    int one = 1;
    (void)lis;

    if (atomic_load(&srv_stat.sessions) >= srv_conf.max_conns ||
        srv_draining()) {
        log_warn("connection refused: %d connections (max-conns)",
                 (int)atomic_load(&srv_stat.sessions));
        srv_refuse(fd);
        return;
    }
    s = calloc(1, sizeof *s);
    if (!s)
        goto out_close_fd;
    s->cancel = rt_cancel_new();
    if (!s->cancel)
        goto out_free_sess;
    pthread_mutex_init(&s->mu, NULL);
    s->refs = 1;
    s->io = io;
    s->id = atomic_fetch_add(&srv_next_sid, 1);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    s->bev = bufferevent_socket_new(io->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!s->bev)
        goto out_free_cancel;
    s->ev_flush = event_new(io->base, -1, 0, sess_flush_cb, s);
    s->ev_more = event_new(io->base, -1, 0, sess_more_cb, s);
    s->ev_read = event_new(io->base, fd, EV_READ | EV_PERSIST, sess_recv_cb,
                           s);
    if (!s->ev_flush || !s->ev_more || !s->ev_read)
        goto out_free_events;
    bufferevent_setcb(s->bev, NULL, sess_write_cb, sess_event_cb, s);
    /* sess_recv_cb reads (never more than one line's worth of
     * unterminated input), sess_push writes. */
    bufferevent_disable(s->bev, EV_READ | EV_WRITE);
    {
        char host[NI_MAXHOST] = "?", serv[NI_MAXSERV] = "?";
        if (getnameinfo(addr, (socklen_t)alen, host, sizeof host, serv,
                        sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
            snprintf(host, sizeof host, "?");
        log_info("session %llu opened from %s port %s",
                 (unsigned long long)s->id, host, serv);
    }
    /* Listed and counted before its read event is added: from then on
     * its own I/O thread may serve (and even close) it. */
    pthread_mutex_lock(&io->mu);
    s->next = io->sessions;
    if (io->sessions)
        io->sessions->prev = s;
    io->sessions = s;
    pthread_mutex_unlock(&io->mu);
    atomic_fetch_add(&srv_stat.sessions, 1);
    if (event_add(s->ev_read, NULL) != 0) {
        sess_unlink(s);
        atomic_fetch_sub(&srv_stat.sessions, 1);
        goto out_free_events;
    }
    return;

out_free_events:
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
    rt_cancel_free(s->cancel);
    pthread_mutex_destroy(&s->mu);
out_free_sess:
    free(s);
out_close_fd:
    if (fd >= 0)
        evutil_closesocket(fd);
    log_error("out of memory accepting a connection");
}

static void srv_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    srv *v = arg;
    (void)fd;
    (void)what;
    if (!srv_draining())
        evconnlistener_enable(v->lis);
}

/* accept() failed: on EMFILE/ENFILE/ENOMEM pause accepting for a moment
 * instead of spinning on a listener that stays readable. */
static void srv_accept_error_cb(struct evconnlistener *lis, void *arg)
{
    srv *v = arg;
    int err = EVUTIL_SOCKET_ERROR();
    struct timeval tv = { 0, 100 * 1000 };

    log_warn("accept: %s: pausing for 100 ms",
             evutil_socket_error_to_string(err));
    evconnlistener_disable(lis);
    evtimer_add(v->ev_resume, &tv);
}

/* ------------------------------------------------------------------ */
/* Drain                                                              */
/* ------------------------------------------------------------------ */

/* Calls fn for every session of every I/O thread, under its list's lock
 * (fn must not close sessions); stops early when fn returns false.
 * Returns false if it stopped early. */
static bool srv_each_sess(srv *v, bool (*fn)(sess *s, void *arg), void *arg)
{
    for (int i = 0; i < v->nio; i++) {
        srv_io *io = &v->io[i];
        bool go_on = true;
        pthread_mutex_lock(&io->mu);
        for (sess *s = io->sessions; s && go_on; s = s->next)
            go_on = fn(s, arg);
        pthread_mutex_unlock(&io->mu);
        if (!go_on)
            return false;
    }
    return true;
}

/* Returns false while s still has a waiting request or unsent output. */
static bool sess_drained(sess *s, void *arg)
{
    bool q;
    (void)arg;

    if (atomic_load(&s->parked) > 0)
        return false;
    pthread_mutex_lock(&s->mu);
    q = s->qhead != NULL;
    pthread_mutex_unlock(&s->mu);
    return !q && atomic_load(&s->outq) == 0;
}

static bool srv_drained(srv *v)
{
    return srv_each_sess(v, sess_drained, NULL);
}

static void srv_drain_cb(evutil_socket_t fd, short what, void *arg)
{
    srv *v = arg;
    struct timeval tv = { 0, 20 * 1000 };
    (void)fd;
    (void)what;

    /* shutdown-grace-ms bounds the wait for answers to reach clients. */
    if (srv_drained(v) || rt_now() - v->drain_start >
                              (int64_t)srv_conf.shutdown_grace_ms * 1000000) {
        for (int i = 0; i < v->nio; i++)
            event_base_loopbreak(v->io[i].base);
        return;
    }
    evtimer_add(v->ev_drain, &tv);
}

typedef struct sess_list {
    sess **v;
    size_t n, cap;
} sess_list;

/* Adds s, retained, to the list in arg (srv_each_sess). */
static bool sess_collect(sess *s, void *arg)
{
    sess_list *l = arg;

    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 256;
        sess **nv = realloc(l->v, ncap * sizeof *nv);
        if (!nv)
            return false;
        l->v = nv;
        l->cap = ncap;
    }
    sess_retain(s);
    l->v[l->n++] = s;
    return true;
}

/* Starts the drain: no new connections, every waiting request of every
 * session answered with reason cancelled, then the loop stops. */
static void srv_begin_drain(srv *v)
{
    if (atomic_exchange(&srv_drain_flag, true))
        return;
    log_info("draining: cancelling every waiting request");
    sig_stopping();
    evconnlistener_disable(v->lis);
    v->drain_start = rt_now();
    /* Fired outside the lists' locks: a completion may reach anything.
     * Their answers reach each session through its flush event. */
    {
        sess_list l = { 0 };
        if (!srv_each_sess(v, sess_collect, &l))
            log_error("drain: out of memory listing sessions");
        for (size_t i = 0; i < l.n; i++) {
            rt_cancel_fire(l.v[i]->cancel);
            sess_release(l.v[i]);
        }
        free(l.v);
    }
    srv_drain_cb(-1, 0, v);
}

static void srv_signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    log_info("signal %d", (int)sig);
    srv_begin_drain(arg);
}

static void srv_stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    srv_begin_drain(arg);
}

void srv_stop(srv *v)
{
    event_base_once(v->base, -1, EV_TIMEOUT, srv_stop_cb, v, NULL);
}

int64_t srv_output_bytes(void)
{
    return atomic_load(&srv_out_bytes);
}

/* Recomputes the output byte total; for runtime.stats. */
void srv__count_output(srv *v);
static bool sess_add_output(sess *s, void *arg)
{
    *(int64_t *)arg += (int64_t)atomic_load(&s->outq);
    return true;
}

void srv__count_output(srv *v)
{
    int64_t n = 0;
    srv_each_sess(v, sess_add_output, &n);
    atomic_store(&srv_out_bytes, n);
}

static srv *srv_current;
/* Refreshes derived stats if called on an I/O thread. */
void srv__refresh_stats(void);
void srv__refresh_stats(void)
{
    if (srv_current && srv_on_io_thread())
        srv__count_output(srv_current);
}

/* ------------------------------------------------------------------ */
/* Setup                                                              */
/* ------------------------------------------------------------------ */

/* Frees the I/O threads' bases and scratch (their threads have ended). */
static void srv_free_ios(srv *v)
{
    for (int i = 0; i < v->nio; i++) {
        srv_io *io = &v->io[i];
        if (io->ev_wflush)
            event_free(io->ev_wflush);
        if (io->base)
            event_base_free(io->base);
        proto_names_free(io->local.names);
        free(io->local.out.p);
        pthread_mutex_destroy(&io->mu);
        memset(io, 0, sizeof *io);
    }
}

srv *srv_new(const conf *c, char *err, size_t errlen)
{
    struct addrinfo hints, *ai = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char portstr[16];
    srv *v;
    int rc, afd;

    srv_conf = *c;
    v = calloc(1, sizeof *v);
    if (!v) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    v->nio = c->io_threads > 0 ? c->io_threads : rt_num_cpu();
    if (v->nio > SRV_MAX_IO)
        v->nio = SRV_MAX_IO;
    if (v->nio < 1)
        v->nio = 1;
    for (int i = 0; i < v->nio; i++) {
        srv_io *io = &v->io[i];
        io->srv = v;
        pthread_mutex_init(&io->mu, NULL);
        io->base = event_base_new();
        io->local.names = proto_names_new();
        if (io->base)
            io->ev_wflush = event_new(io->base, -1, 0, srv_wflush_cb, io);
        if (!io->base || !io->local.names || !io->ev_wflush) {
            snprintf(err, errlen, "cannot set up I/O thread %d", i);
            goto out_ios;
        }
    }
    v->base = v->io[0].base;
    afd = sig_activation_fd();
    if (afd >= 0) {
        /* Socket activation (chand.socket): systemd bound and listens;
         * bind and port do not apply. */
        evutil_make_socket_nonblocking(afd);
        v->lis = evconnlistener_new(
            v->base, srv_accept_cb, v,
            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, afd);
        if (!v->lis) {
            snprintf(err, errlen, "socket activation: fd %d: %s", afd,
                     strerror(errno));
            goto out_base;
        }
        log_info("listening on the socket passed by systemd");
        goto listening;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(portstr, sizeof portstr, "%d", c->port);
    rc = getaddrinfo(c->bind, portstr, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "bind address %s: %s", c->bind,
                 gai_strerror(rc));
        goto out_base;
    }
    v->lis = evconnlistener_new_bind(
        v->base, srv_accept_cb, v,
        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        4096, ai->ai_addr, (int)ai->ai_addrlen);
    freeaddrinfo(ai);
    if (!v->lis) {
        snprintf(err, errlen, "listen on %s port %d: %s", c->bind, c->port,
                 strerror(errno));
        goto out_base;
    }
listening:
    evconnlistener_set_error_cb(v->lis, srv_accept_error_cb);
    if (getsockname(evconnlistener_get_fd(v->lis), (struct sockaddr *)&ss,
                    &sl) != 0) {
        snprintf(err, errlen, "getsockname: %s", strerror(errno));
        goto out_lis;
    }
    v->port = ntohs(ss.ss_family == AF_INET6
                        ? ((struct sockaddr_in6 *)&ss)->sin6_port
                        : ((struct sockaddr_in *)&ss)->sin_port);
    v->ev_resume = evtimer_new(v->base, srv_resume_cb, v);
    v->ev_drain = evtimer_new(v->base, srv_drain_cb, v);
    v->ev_sigterm = evsignal_new(v->base, SIGTERM, srv_signal_cb, v);
    v->ev_sigint = evsignal_new(v->base, SIGINT, srv_signal_cb, v);
    if (!v->ev_resume || !v->ev_drain || !v->ev_sigterm || !v->ev_sigint ||
        evsignal_add(v->ev_sigterm, NULL) != 0 ||
        evsignal_add(v->ev_sigint, NULL) != 0) {
        snprintf(err, errlen, "cannot set up events");
        goto out_events;
    }
    /* SIGHUP and the metrics server, before the port file announces us. */
    if (sig_attach(v->base, err, errlen) != 0)
        goto out_events;
    if (c->port_file[0] &&
        conf_write_port_file("port file", c->port_file, v->port, err,
                             errlen) != 0)
        goto out_events;
    srv_current = v;
    return v;

out_events:
    sig_detach();
    if (v->ev_resume)
        event_free(v->ev_resume);
    if (v->ev_drain)
        event_free(v->ev_drain);
    if (v->ev_sigterm)
        event_free(v->ev_sigterm);
    if (v->ev_sigint)
        event_free(v->ev_sigint);
out_lis:
    evconnlistener_free(v->lis);
out_base:
out_ios:
    srv_free_ios(v);
    free(v);
    return NULL;
}

static void *srv_io_main(void *arg)
{
    srv_io *io = arg;

    srv_tls_io = io;
    while (!atomic_load(&srv_io_stop))
        event_base_loop(io->base, EVLOOP_NO_EXIT_ON_EMPTY);
    srv_tls_io = NULL;
    return NULL;
}

int srv_run(srv *v)
{
    v->io[0].tid = pthread_self();
    srv_tls_io = &v->io[0];
    atomic_store(&srv_io_stop, false);
    for (int i = 1; i < v->nio; i++) {
        if (pthread_create(&v->io[i].tid, NULL, srv_io_main, &v->io[i]) != 0) {
            log_warn("cannot start I/O thread %d: serving with %d", i, i);
            v->nio = i; /* accepts go to the ones that run */
            break;
        }
        v->io[i].started = true;
    }
    log_info("listening on %s port %d (%d I/O thread%s)", srv_conf.bind,
             v->port, v->nio, v->nio > 1 ? "s" : "");
    sig_ready(v->port);
    event_base_dispatch(v->base);
    /* Drained: stop the other loops.  A break that reaches a loop before
     * it runs is lost, so it is repeated until the thread has ended. */
    atomic_store(&srv_io_stop, true);
    for (int i = 1; i < SRV_MAX_IO; i++) {
        struct timespec ts;
        if (!v->io[i].started)
            continue;
        for (;;) {
            event_base_loopbreak(v->io[i].base);
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 10 * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            if (pthread_timedjoin_np(v->io[i].tid, NULL, &ts) == 0)
                break;
        }
        v->io[i].started = false;
    }
    return 0;
}

void srv_free(srv *v)
{
    /* Every I/O thread has ended: this thread may close their sessions
     * (as each one's thread, for the checks that look). */
    for (int i = 0; i < v->nio; i++) {
        srv_io *io = &v->io[i];
        srv_tls_io = io;
        while (io->sessions) {
            sess *s = io->sessions;
            sess_retain(s);
            sess_end(s, false);
            sess_close_conn(s);
            sess_release(s);
        }
        srv_wflush_cb(-1, 0, io); /* drops the write list's references */
    }
    srv_tls_io = NULL;
    event_free(v->ev_resume);
    event_free(v->ev_drain);
    event_free(v->ev_sigterm);
    event_free(v->ev_sigint);
    sig_detach();
    evconnlistener_free(v->lis);
    if (srv_current == v)
        srv_current = NULL;
    srv_free_ios(v);
    free(v);
}
