/*
 * iothread.c - the server object: its I/O threads (io_threads event loops,
 * one by default; io[0] is the thread that calls srv_run), their start and
 * stop, and the SIGTERM/SIGINT drain (no new connections, every waiting
 * request cancelled, then the loops stop once the answers have left or
 * shutdown-grace-ms has passed).
 */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

static _Atomic bool srv_io_stop; /* the other I/O loops end */
static _Atomic int64_t srv_out_bytes;

int srv_port(const srv *v)
{
    return v->port;
}

int srv_tls_port(const srv *v)
{
    return v->tls_port;
}

struct event_base *srv_base(srv *v)
{
    return v->base;
}

/* ------------------------------------------------------------------ */
/* Drain                                                              */
/* ------------------------------------------------------------------ */

/* Calls fn for every session of every I/O thread, under its list's lock
 * (fn must not close sessions); stops early when fn returns false.
 * Returns false if it stopped early. */
static bool srv_each_sess(srv *v, bool (*fn)(sess *s, void *arg), void *arg)
{
    for (int i = 0; i < v->nio; i++)
        if (!sess__each(&v->io[i], fn, arg))
            return false;
    return true;
}

/* Returns false while s still has a waiting request or unsent output. */
static bool sess_drained(sess *s, void *arg)
{
    (void)arg;
    return sess__drained(s);
}

static bool srv_drained(srv *v)
{
    return srv_each_sess(v, sess_drained, NULL);
}

static void srv_drain_cb(evutil_socket_t fd, short what, void *arg)
{
    srv *v = arg;
    struct timeval tv = {0, 20 * 1000};
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

void srv_drain(srv *v)
{
    if (!srv__set_draining())
        return;
    log_info("draining: cancelling every waiting request");
    srv__listen_stop(v);
    v->drain_start = rt_now();
    /* Fired outside the lists' locks: a completion may reach anything.
     * Their answers reach each session through its flush event. */
    {
        sess_list l = {0};
        if (!srv_each_sess(v, sess_collect, &l))
            log_error("drain: out of memory listing sessions");
        for (size_t i = 0; i < l.n; i++) {
            rt_cancel_fire(sess_cancel(l.v[i]));
            sess_release(l.v[i]);
        }
        free(l.v);
    }
    srv_drain_cb(-1, 0, v);
}

static bool sess_add_output(sess *s, void *arg)
{
    *(int64_t *)arg += (int64_t)sess__outq(s);
    return true;
}

/* The server srv_output_bytes counts for (one per process). */
static srv *srv_current;

int64_t srv_output_bytes(void)
{
    srv *v = __atomic_load_n(&srv_current, __ATOMIC_ACQUIRE);

    if (v && srv__tls_io) {
        int64_t n = 0;
        srv_each_sess(v, sess_add_output, &n);
        atomic_store(&srv_out_bytes, n);
        return n;
    }
    return atomic_load(&srv_out_bytes);
}

/* ------------------------------------------------------------------ */
/* Setup                                                              */
/* ------------------------------------------------------------------ */

/* Frees the I/O threads' bases and scratch (their threads have ended):
 * every one set up, also those whose thread could not start. */
static void srv_free_ios(srv *v)
{
    for (int i = 0; i < v->nmade; i++) {
        srv_io *io = &v->io[i];
        if (io->ev_wflush)
            event_free(io->ev_wflush);
        if (io->ev_durable)
            event_free(io->ev_durable);
        if (io->ev_hold)
            event_free(io->ev_hold);
        if (io->base)
            event_base_free(io->base);
        proto_names_free(io->local.names);
        free(io->local.out.p);
        pthread_mutex_destroy(&io->mu);
        memset(io, 0, sizeof *io);
    }
}

srv *srv_new(const conf *c, int listen_fd, char *err, size_t errlen)
{
    return srv_new_fds(c, &listen_fd, listen_fd >= 0 ? 1 : 0, err, errlen);
}

/* Closes the sockets systemd passed (srv_new_fds failed before taking
 * them). */
static void srv_close_fds(const int *fds, int nfds)
{
    for (int i = 0; i < nfds; i++)
        evutil_closesocket(fds[i]);
}

srv *srv_new_fds(const conf *c, const int *fds, int nfds, char *err,
                 size_t errlen)
{
    srv *v;

    srv_conf = *c;
    v = calloc(1, sizeof *v);
    if (!v) {
        snprintf(err, errlen, "out of memory");
        srv_close_fds(fds, nfds);
        return NULL;
    }
    v->nio = c->io_threads > 0 ? c->io_threads : rt_num_cpu();
    if (v->nio > SRV_MAX_IO)
        v->nio = SRV_MAX_IO;
    if (v->nio < 1)
        v->nio = 1;
    for (int i = 0; i < v->nio; i++) {
        srv_io *io = &v->io[i];
        pthread_mutex_init(&io->mu, NULL);
        v->nmade = i + 1;
        io->base = event_base_new();
        io->local.names = proto_names_new();
        if (io->base) {
            io->ev_wflush = event_new(io->base, -1, 0, sess__wflush_cb, io);
            io->ev_durable = event_new(io->base, -1, 0, sess__durable_cb, io);
            io->ev_hold = evtimer_new(io->base, sess__hold_cb, io);
        }
        if (!io->base || !io->local.names || !io->ev_wflush ||
            !io->ev_durable || !io->ev_hold) {
            snprintf(err, errlen, "cannot set up I/O thread %d", i);
            srv_close_fds(fds, nfds);
            goto out_ios;
        }
    }
    v->base = v->io[0].base;
    if (srv__listen(v, c, fds, nfds, err, errlen) != 0)
        goto out_ios;
    v->ev_drain = evtimer_new(v->base, srv_drain_cb, v);
    if (!v->ev_drain) {
        snprintf(err, errlen, "cannot set up events");
        goto out_lis;
    }
    /* Published whole: the log's flusher reads it (srv_durable_wake),
     * and restored timers may already be firing. */
    __atomic_store_n(&srv_current, v, __ATOMIC_RELEASE);
    return v;

out_lis:
    srv__listen_free(v);
out_ios:
    srv_free_ios(v);
    free(v);
    return NULL;
}

static void *srv_io_main(void *arg)
{
    srv_io *io = arg;

    srv__tls_io = io;
    while (!atomic_load(&srv_io_stop))
        event_base_loop(io->base, EVLOOP_NO_EXIT_ON_EMPTY);
    srv__tls_io = NULL;
    return NULL;
}

void srv_durable_wake(void)
{
    srv *v = __atomic_load_n(&srv_current, __ATOMIC_ACQUIRE);

    if (!v)
        return;
    for (int i = 0; i < v->nmade; i++)
        if (v->io[i].ev_durable)
            event_active(v->io[i].ev_durable, EV_READ, 0);
}

int srv_run(srv *v)
{
    v->io[0].tid = pthread_self();
    srv__tls_io = &v->io[0];
    atomic_store(&srv_io_stop, false);
    for (int i = 1; i < v->nio; i++) {
        if (pthread_create(&v->io[i].tid, NULL, srv_io_main, &v->io[i]) != 0) {
            log_warn("cannot start I/O thread %d: serving with %d", i, i);
            v->nio = i; /* accepts go to the ones that run */
            break;
        }
        v->io[i].started = true;
    }
    if (v->lis)
        log_info("listening on %s port %d (%d I/O thread%s)", srv_conf.bind,
                 v->port, v->nio, v->nio > 1 ? "s" : "");
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
        srv__tls_io = &v->io[i];
        sess__close_all(&v->io[i]);
    }
    srv__tls_io = NULL;
    event_free(v->ev_drain);
    srv__listen_free(v);
    if (__atomic_load_n(&srv_current, __ATOMIC_ACQUIRE) == v)
        __atomic_store_n(&srv_current, NULL, __ATOMIC_RELEASE);
    srv_free_ios(v);
    free(v);
}
