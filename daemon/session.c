/*
 * session.c - one connection's life: open, end, close, references,
 * liveness (TCP keepalive, heartbeat).  Its output is session_out.c's, the
 * durability gate on that output session_gate.c's, its input (framing,
 * fair turns) framing.c's.
 */
#include "server.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "tls.h"

__thread srv_io *srv__tls_io;
static _Atomic uint64_t sess_next_id = 1;

/* True on the I/O thread that serves s. */
bool sess__on_own_thread(const sess *s)
{
    return srv__tls_io && srv__tls_io == s->io;
}

sess_local *sess_local_get(sess *s)
{
    return sess__on_own_thread(s) ? &s->io->local : NULL;
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
    sess__settle(s);
    sess__giveback_pending(s); /* their bytes die with the connection */
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
        sess__push(s); /* the last answers, before a graceful close */
    if (graceful && s->bev &&
        evbuffer_get_length(bufferevent_get_output(s->bev)) > 0) {
        struct timeval tv = {5, 0};
        bufferevent_disable(s->bev, EV_READ);
        bufferevent_enable(s->bev, EV_WRITE);
        s->ev_kill = evtimer_new(s->io->base, sess_kill_cb, s);
        if (s->ev_kill && evtimer_add(s->ev_kill, &tv) == 0)
            return; /* sess__write_cb closes once the output drained */
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
        sess__write(s, line, len);
        free(line);
    }
    json_decref(a);
    sess__end(s, true);
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
         * reads (ev_read) and no raw writes (sess__push). */
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
    s->ev_flush = event_new(io->base, -1, 0, sess__flush_cb, s);
    s->ev_more = event_new(io->base, -1, 0, sess__more_cb, s);
    if (kind != SESS_TLS)
        s->ev_read =
            event_new(io->base, fd, EV_READ | EV_PERSIST, sess__recv_cb, s);
    if (!s->ev_flush || !s->ev_more || (kind != SESS_TLS && !s->ev_read))
        goto out_free_events;
    if (sec__sess_open(s, fd, addr, alen) != 0)
        goto out_free_events;
    if (kind == SESS_TLS) {
        bufferevent_setcb(s->bev, sess__tls_read_cb, sess__write_cb,
                          sess__tls_event_cb, s);
        bufferevent_setwatermark(s->bev, EV_READ, 0, srv_conf.max_line + 1);
        bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    } else {
        bufferevent_setcb(s->bev, NULL, sess__write_cb, sess__event_cb, s);
        /* sess__recv_cb reads (never more than one line's worth of
         * unterminated input), sess__push writes. */
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
