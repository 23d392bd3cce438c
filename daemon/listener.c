/*
 * listener.c - the listening socket: bind (or the socket systemd passed),
 * accept, hand each connection to an I/O thread in turn, refuse over
 * max-conns or while draining, and pause on EMFILE instead of spinning.
 * Runs on io[0].
 */
#include "server.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/listener.h>

/* Refuses a connection over max_conns with one error line. */
static void srv_refuse(evutil_socket_t fd)
{
    json_t *a = proto_error_answer(NULL, proto_reason_code(PROTO_R_LIMIT),
                                   PROTO_R_LIMIT, "too many connections", NULL);
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
    (void)lis;

    if (atomic_load(&srv_stat.sessions) >= srv_conf.max_conns ||
        srv_draining()) {
        log_warn("connection refused: %d connections (max-conns)",
                 (int)atomic_load(&srv_stat.sessions));
        srv_refuse(fd);
        return;
    }
    sess__open(io, fd, addr, alen);
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
    struct timeval tv = {0, 100 * 1000};

    log_warn("accept: %s: pausing for 100 ms",
             evutil_socket_error_to_string(err));
    evconnlistener_disable(lis);
    evtimer_add(v->ev_resume, &tv);
}

int srv__listen(srv *v, const conf *c, int afd, char *err, size_t errlen)
{
    struct addrinfo hints, *ai = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char portstr[16];
    int rc;

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
            evutil_closesocket(afd);
            return -1;
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
        snprintf(err, errlen, "bind address %s: %s", c->bind, gai_strerror(rc));
        return -1;
    }
    v->lis = evconnlistener_new_bind(v->base, srv_accept_cb, v,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                         LEV_OPT_CLOSE_ON_EXEC,
                                     4096, ai->ai_addr, (int)ai->ai_addrlen);
    freeaddrinfo(ai);
    if (!v->lis) {
        snprintf(err, errlen, "listen on %s port %d: %s", c->bind, c->port,
                 strerror(errno));
        return -1;
    }
listening:
    evconnlistener_set_error_cb(v->lis, srv_accept_error_cb);
    if (getsockname(evconnlistener_get_fd(v->lis), (struct sockaddr *)&ss,
                    &sl) != 0) {
        snprintf(err, errlen, "getsockname: %s", strerror(errno));
        goto out_lis;
    }
    v->port =
        ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                       : ((struct sockaddr_in *)&ss)->sin_port);
    v->ev_resume = evtimer_new(v->base, srv_resume_cb, v);
    if (!v->ev_resume) {
        snprintf(err, errlen, "cannot set up events");
        goto out_lis;
    }
    return 0;

out_lis:
    evconnlistener_free(v->lis);
    v->lis = NULL;
    return -1;
}

void srv__listen_stop(srv *v)
{
    evconnlistener_disable(v->lis);
}

void srv__listen_free(srv *v)
{
    if (v->ev_resume)
        event_free(v->ev_resume);
    v->ev_resume = NULL;
    if (v->lis)
        evconnlistener_free(v->lis);
    v->lis = NULL;
}
