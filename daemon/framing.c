/*
 * framing.c - a session's input: one read() per readable event, line
 * framing with a cap (max-line), and fair turns between sessions (at most
 * fair-batch lines, then the session yields through its ev_more event).
 * Lines wait while an auth is verified or a snapshot hold is on.
 * Each complete line goes to dispatch (disp_line); the session's answers
 * of one turn leave in one write (sess__push_later).  I/O thread of the
 * session, always.
 */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls.h"

/* Serves one complete line (without its \n).  Returns false when the
 * session ended (the line was too long, or a handler ended it). */
static bool sess_line(sess *s, const char *line, size_t len)
{
    if (len > sec__max_line(s)) {
        sess__fail_close(s, PROTO_R_TOO_LARGE, "line too long: closing");
        return false;
    }
    srv_count_bytes_in(len + 1);
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
             sec__max_line(s));
    sess__fail_close(s, PROTO_R_TOO_LARGE, msg);
}

/* Serves up to fair_batch lines of s, then yields to other sessions via
 * ev_more.  all: serve everything buffered (EOF). */
static void sess_process(sess *s, bool all)
{
    struct evbuffer *in;
    int n = 0;

    while (!s->ended && (all || n < srv_conf.fair_batch)) {
        const char *line;
        /* An auth is being verified: the lines behind it wait for its
         * answer (sec_auth_resume activates ev_more). */
        /* A snapshot hold does not hold the lines a closed connection
         * left (all): they would be lost with the session. */
        if (atomic_load_explicit(&s->auth_busy, memory_order_acquire) ||
            (!all && sess__held(s)))
            return;
        in = bufferevent_get_input(s->bev);
        /* The line is served in place (pulled up to be contiguous, which
         * it nearly always is already) and drained afterwards: no copy and
         * no allocation per request.  Nothing but this loop touches the
         * input buffer meanwhile; a handler may end the session, which
         * frees it, so the drain checks first. */
        struct evbuffer_ptr eol =
            evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
        if (eol.pos < 0) {
            if (evbuffer_get_length(in) > sec__max_line(s))
                sess_fail_long(s);
            return;
        }
        line = (const char *)evbuffer_pullup(in, (ev_ssize_t)eol.pos + 1);
        if (!line) {
            sess__fail_close(s, PROTO_R_INTERNAL, "out of memory: closing");
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
    bool busy = false;

    while (p < end && served < srv_conf.fair_batch) {
        const char *nl;
        if (atomic_load_explicit(&s->auth_busy, memory_order_acquire) ||
            sess__held(s)) {
            busy = true; /* see sess_process */
            break;
        }
        nl = memchr(p, '\n', (size_t)(end - p));
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
        sess__fail_close(s, PROTO_R_INTERNAL, "out of memory: closing");
        return;
    }
    evbuffer_freeze(in, 0);
    if (busy)
        return;
    if (served == srv_conf.fair_batch)
        event_active(s->ev_more, EV_READ, 0); /* its next turn */
    else if ((size_t)(end - p) > sec__max_line(s))
        sess_fail_long(s); /* a partial line, already too long */
}

/* Callbacks hold a reference across their work: a write inside them may
 * end the session and drop the connection's reference. */
/* Reads only while less than a line's worth (max_line + 1) is buffered,
 * as the bufferevent's read watermark did. */
static void sess_read_ctl(sess *s)
{
    if (s->kind == SESS_TLS) {
        /* The bufferevent reads; its watermark bounds the input.  What
         * OpenSSL read ahead is pulled here, and served next turn. */
        size_t have = evbuffer_get_length(bufferevent_get_input(s->bev));
        if (have > srv_conf.max_line) {
            bufferevent_disable(s->bev, EV_READ);
        } else {
            bufferevent_enable(s->bev, EV_READ);
            if (tls_read_pending(s->bev, srv_conf.max_line + 1 - have) > 0)
                event_active(s->ev_more, EV_READ, 0);
        }
        return;
    }
    if (evbuffer_get_length(bufferevent_get_input(s->bev)) > srv_conf.max_line)
        event_del(s->ev_read);
    else if (!event_pending(s->ev_read, EV_READ, NULL))
        event_add(s->ev_read, NULL);
}

/* After a turn of requests: its answers go out with the loop turn's
 * writes, reading resumes or pauses by the input held, and the memory
 * budget learns the buffers' new size. */
static void sess_after_turn(sess *s)
{
    if (!s->ended) {
        sess__push_later(s);
        sess_read_ctl(s);
        sess__mem_sync(s);
    }
}

/* A fair turn of the requests already in the input buffer. */
static void sess_turn(sess *s)
{
    s->batching = true;
    sess_process(s, false);
    s->batching = false;
    sess_after_turn(s);
}

/* The socket is readable: one read() into the session's input buffer,
 * then a fair turn of requests and one write of their answers.  The
 * bufferevent's own reading is not used: its evbuffer_read asks the
 * kernel how much is readable (ioctl FIONREAD) before every read, one of
 * the three syscalls a request cost. */
void sess__recv_cb(evutil_socket_t fd, short what, void *arg)
{
    sess *s = arg;
    struct evbuffer *in = bufferevent_get_input(s->bev);
    size_t have = evbuffer_get_length(in);
    size_t room =
        srv_conf.max_line + 1 > have ? srv_conf.max_line + 1 - have : 0;
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
            sess__event(s, BEV_EVENT_EOF);
            goto out;
        }
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                sess__event(s, BEV_EVENT_ERROR);
            goto out;
        }
        if (s->hb_ms)
            s->last_in_ms = sess__now_ms();
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
                if (s->hb_ms)
                    s->last_in_ms = sess__now_ms();
            }
        }
        evbuffer_freeze(in, 0);
        if (n == 0) {
            sess__event(s, BEV_EVENT_EOF);
            goto out;
        }
        if (n < 0 && err != EAGAIN && err != EWOULDBLOCK) {
            sess__event(s, BEV_EVENT_ERROR);
            goto out;
        }
    }
    s->batching = true;
    sess_process(s, false);
    s->batching = false;
served:
    sess_after_turn(s);
out:
    sess_release(s);
}

void sess__more_cb(evutil_socket_t fd, short what, void *arg)
{
    sess *s = arg;
    (void)fd;
    (void)what;
    sess_retain(s);
    if (s->bev) {
        sess_turn(s);
    }
    sess_release(s);
}

void sess__event_cb(struct bufferevent *bev, short what, void *arg)
{
    sess *s = arg;
    (void)bev;

    sess_retain(s);
    sess__event(s, what);
    sess_release(s);
}

void sess__event(sess *s, short what)
{
    if (what & BEV_EVENT_EOF) {
        /* Serve what the client sent before closing its side (a script's
         * `echo ... | nc`), then end: waits are cancelled, since a killed
         * client looks exactly like this. */
        if (!s->ended)
            sess_process(s, true);
        sess__end(s, true);
    } else if (what & BEV_EVENT_ERROR) {
        if (s->ended)
            sess__close_conn(s);
        else
            sess__end(s, false);
    }
}

/* ------------------------------------------------------------------ */
/* TLS sessions: the bufferevent reads and decrypts                   */
/* ------------------------------------------------------------------ */

void sess__tls_read_cb(struct bufferevent *bev, void *arg)
{
    sess *s = arg;
    (void)bev;

    sess_retain(s);
    if (s->hb_ms)
        s->last_in_ms = sess__now_ms();
    if (s->bev && !s->ended) {
        sess_turn(s);
    }
    sess_release(s);
}

void sess__tls_event_cb(struct bufferevent *bev, short what, void *arg)
{
    sess *s = arg;

    sess_retain(s);
    if (what & BEV_EVENT_CONNECTED) {
        tls_handshake_done(bev);
        sec__sess_tls_ready(s);
        /* The first requests may have come with the handshake's last
         * flight, read ahead with it. */
        if (!s->ended)
            sess_read_ctl(s);
    } else if (what & BEV_EVENT_TIMEOUT) {
        log_info("session %llu from %s: TLS handshake deadline: closing",
                 (unsigned long long)s->id, s->peer);
        srv_count_sec(SRV_TLS_HANDSHAKE_FAILED);
        if (s->ended)
            sess__close_conn(s);
        else
            sess__end(s, false);
    } else {
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        /* A peer that goes away mid-handshake failed it too: a scanner,
         * or a client that refused our certificate. */
        if (!s->ended && ssl && !SSL_is_init_finished(ssl))
            srv_count_sec(SRV_TLS_HANDSHAKE_FAILED);
        if ((what & BEV_EVENT_ERROR) && !s->ended) {
            unsigned long e = bufferevent_get_openssl_error(bev);
            if (e) {
                char buf[256];
                ERR_error_string_n(e, buf, sizeof buf);
                log_info("session %llu from %s: TLS: %s",
                         (unsigned long long)s->id, s->peer, buf);
            }
        }
        sess__event(s, what);
    }
    sess_release(s);
}
