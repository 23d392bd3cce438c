/*
 * listener.c - the listening sockets: TCP on bind:port, the unix socket
 * (unix_socket, its mode, a stale file removed at start and the file
 * removed at exit) and TLS on bind:tls_port, or the sockets systemd
 * passed (told apart by getsockname); protected mode (a non-loopback
 * address without users is refused, security.c); accept, hand each
 * connection to an I/O thread in turn, refuse over max-conns or while
 * draining, and pause on EMFILE instead of spinning.  Runs on io[0].
 */
#include "server.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "metrics.h"

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
    srv_lis *l = arg;
    srv *v = l->v;
    srv_io *io = &v->io[v->next_io++ % (unsigned)v->nio];
    (void)lis;

    /* max_conns bounds the metrics connections too (metrics.c). */
    if (atomic_load(&srv_stat.sessions) +
            atomic_load(&srv_stat.metrics_conns) >=
        srv_conf.max_conns)
        metrics_sweep();
    if (atomic_load(&srv_stat.sessions) +
                atomic_load(&srv_stat.metrics_conns) >=
            srv_conf.max_conns ||
        srv_draining()) {
        log_warn("connection refused: %d connections (max-conns)",
                 (int)atomic_load(&srv_stat.sessions));
        srv_refuse(fd);
        return;
    }
    sess__open(io, fd, addr, alen, l->kind);
}

static void srv_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    srv *v = arg;
    (void)fd;
    (void)what;
    if (srv_draining())
        return;
    for (size_t i = 0; i < sizeof v->lists / sizeof v->lists[0]; i++)
        if (v->lists[i].lis)
            evconnlistener_enable(v->lists[i].lis);
}

/* accept() failed: on EMFILE/ENFILE/ENOMEM pause accepting for a moment
 * instead of spinning on a listener that stays readable. */
static void srv_accept_error_cb(struct evconnlistener *lis, void *arg)
{
    srv_lis *l = arg;
    int err = EVUTIL_SOCKET_ERROR();
    struct timeval tv = {0, 100 * 1000};

    log_warn("accept: %s: pausing for 100 ms",
             evutil_socket_error_to_string(err));
    evconnlistener_disable(lis);
    evtimer_add(l->v->ev_resume, &tv);
}

/* Makes l a listener of kind on fd (stolen: closed on failure).  Returns 0
 * or -1 with err filled. */
static int srv_adopt(srv *v, srv_lis *l, int kind, int fd, char *err,
                     size_t errlen)
{
    evutil_make_socket_nonblocking(fd);
    l->v = v;
    l->kind = kind;
    l->lis = evconnlistener_new(v->base, srv_accept_cb, l,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                0, fd);
    if (!l->lis) {
        snprintf(err, errlen, "socket activation: fd %d: %s", fd,
                 strerror(errno));
        evutil_closesocket(fd);
        return -1;
    }
    evconnlistener_set_error_cb(l->lis, srv_accept_error_cb);
    return 0;
}

/* Returns the port of an inet socket's address. */
static int srv_sa_port(const struct sockaddr_storage *ss)
{
    return ntohs(ss->ss_family == AF_INET6
                     ? ((const struct sockaddr_in6 *)ss)->sin6_port
                     : ((const struct sockaddr_in *)ss)->sin_port);
}

/* Binds bind:port (what: "TCP" or "TLS") into l, after protected mode's
 * check of the address.  Returns 0 or -1 with err filled. */
static int srv_listen_inet(srv *v, srv_lis *l, int kind, const char *bind,
                           int port, char *err, size_t errlen)
{
    struct addrinfo hints, *ai = NULL;
    char portstr[16];
    int rc;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(portstr, sizeof portstr, "%d", port);
    rc = getaddrinfo(bind, portstr, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "bind address %s: %s", bind, gai_strerror(rc));
        return -1;
    }
    if (sec_protect_check(ai->ai_addr, ai->ai_addrlen,
                          kind == SESS_TLS ? "tls_port" : "port", err,
                          errlen) != 0) {
        freeaddrinfo(ai);
        return -1;
    }
    l->v = v;
    l->kind = kind;
    l->lis = evconnlistener_new_bind(v->base, srv_accept_cb, l,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                         LEV_OPT_CLOSE_ON_EXEC,
                                     4096, ai->ai_addr, (int)ai->ai_addrlen);
    freeaddrinfo(ai);
    if (!l->lis) {
        snprintf(err, errlen, "listen on %s port %d: %s", bind, port,
                 strerror(errno));
        return -1;
    }
    evconnlistener_set_error_cb(l->lis, srv_accept_error_cb);
    return 0;
}

/* Makes room for the unix socket at sa's path: nothing there, or a socket
 * file nobody listens on any more (a daemon that was killed), which is
 * removed.  Returns 0, or -1 with err filled (another process listens, or
 * the path is not a socket). */
static int srv_unix_clear(const struct sockaddr_un *sa, char *err,
                          size_t errlen)
{
    struct stat st;
    int fd, rc;

    if (lstat(sa->sun_path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "unix_socket %s: %s", sa->sun_path,
                 strerror(errno));
        return -1;
    }
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "unix_socket %s: exists and is not a socket",
                 sa->sun_path);
        return -1;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "unix_socket: %s", strerror(errno));
        return -1;
    }
    rc = connect(fd, (const struct sockaddr *)sa, sizeof *sa);
    if (rc == 0 || errno != ECONNREFUSED) {
        snprintf(err, errlen, "unix_socket %s: %s", sa->sun_path,
                 rc == 0 ? "another process listens on it" : strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    if (unlink(sa->sun_path) != 0) {
        snprintf(err, errlen, "unix_socket %s: stale, cannot remove: %s",
                 sa->sun_path, strerror(errno));
        return -1;
    }
    log_info("removed the stale unix socket %s", sa->sun_path);
    return 0;
}

/* Listens on the unix socket path with mode.  Returns 0 or -1. */
static int srv_listen_unix(srv *v, srv_lis *l, const char *path, int mode,
                           char *err, size_t errlen)
{
    struct sockaddr_un sa;
    struct stat st;
    mode_t old;

    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, errlen, "unix_socket %s: longer than %zu bytes", path,
                 sizeof sa.sun_path - 1);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    {
        /* /run/chand may not exist outside systemd (RuntimeDirectory=):
         * make the last directory of the path, as systemd would. */
        char dir[sizeof sa.sun_path];
        char *slash;
        snprintf(dir, sizeof dir, "%s", path);
        slash = strrchr(dir, '/');
        if (slash && slash != dir) {
            *slash = '\0';
            if (mkdir(dir, 0755) == 0)
                log_info("made the directory %s for the unix socket", dir);
        }
    }
    if (srv_unix_clear(&sa, err, errlen) != 0)
        return -1;
    l->v = v;
    l->kind = SESS_UNIX;
    /* Made unreachable by others until its mode is set: no window in
     * which a looser umask lets anyone connect. */
    old = umask(0177);
    l->lis =
        evconnlistener_new_bind(v->base, srv_accept_cb, l,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                4096, (struct sockaddr *)&sa, (int)sizeof sa);
    umask(old);
    if (!l->lis) {
        snprintf(err, errlen, "unix_socket %s: %s", path, strerror(errno));
        return -1;
    }
    evconnlistener_set_error_cb(l->lis, srv_accept_error_cb);
    if (chmod(path, (mode_t)mode) != 0 || stat(path, &st) != 0) {
        snprintf(err, errlen, "unix_socket %s: %s", path, strerror(errno));
        unlink(path);
        return -1;
    }
    snprintf(v->unix_path, sizeof v->unix_path, "%s", path);
    v->unix_dev = (unsigned long long)st.st_dev;
    v->unix_ino = (unsigned long long)st.st_ino;
    log_info("listening on the unix socket %s (mode %04o)", path, mode);
    return 0;
}

/* Takes the sockets systemd passed: unix ones become the unix listener,
 * an inet one on tls_port the TLS listener, the others TCP (the first
 * one only; more are closed with a warning).  Returns 0 or -1. */
static int srv_listen_activated(srv *v, const conf *c, const int *fds, int nfds,
                                char *err, size_t errlen)
{
    int i, rc = 0;

    for (i = 0; i < nfds && rc == 0; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int kind, slot;

        if (getsockname(fds[i], (struct sockaddr *)&ss, &sl) != 0) {
            snprintf(err, errlen, "socket activation: fd %d: %s", fds[i],
                     strerror(errno));
            rc = -1;
            break;
        }
        if (ss.ss_family == AF_UNIX) {
            kind = SESS_UNIX;
            slot = 1;
        } else if (c->tls_port > 0 && srv_sa_port(&ss) == c->tls_port) {
            kind = SESS_TLS;
            slot = 2;
        } else {
            kind = SESS_TCP;
            slot = 0;
        }
        if (kind != SESS_UNIX &&
            sec_protect_check((struct sockaddr *)&ss, sl,
                              kind == SESS_TLS ? "tls_port" : "port", err,
                              errlen) != 0) {
            rc = -1;
            break;
        }
        if (v->lists[slot].lis) {
            log_warn("socket activation: fd %d: a second socket of its "
                     "kind, closed",
                     fds[i]);
            evutil_closesocket(fds[i]);
            continue;
        }
        rc = srv_adopt(v, &v->lists[slot], kind, fds[i], err, errlen);
        if (rc == 0 && kind == SESS_TLS)
            v->tls_port = srv_sa_port(&ss);
    }
    for (; i < nfds; i++) /* after an error: the rest are ours to close */
        evutil_closesocket(fds[i]);
    if (rc == 0)
        log_info("listening on the %d socket%s passed by systemd", nfds,
                 nfds == 1 ? "" : "s");
    return rc;
}

int srv__listen(srv *v, const conf *c, const int *fds, int nfds, char *err,
                size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;

    if (nfds > 0) {
        if (srv_listen_activated(v, c, fds, nfds, err, errlen) != 0)
            goto out_lis;
    } else {
        if (srv_listen_inet(v, &v->lists[0], SESS_TCP, c->bind, c->port, err,
                            errlen) != 0)
            goto out_lis;
        if (c->unix_socket[0] &&
            srv_listen_unix(v, &v->lists[1], c->unix_socket,
                            c->unix_socket_mode, err, errlen) != 0)
            goto out_lis;
    }
    if (!v->lists[2].lis && c->tls_port != 0) {
        if (srv_listen_inet(v, &v->lists[2], SESS_TLS, c->bind,
                            c->tls_port < 0 ? 0 : c->tls_port, err,
                            errlen) != 0)
            goto out_lis;
    }
    if (v->lists[2].lis) {
        sl = sizeof ss;
        if (getsockname(evconnlistener_get_fd(v->lists[2].lis),
                        (struct sockaddr *)&ss, &sl) == 0)
            v->tls_port = srv_sa_port(&ss);
        if (!sec_tls_on()) {
            snprintf(err, errlen, "a TLS socket needs tls_cert and tls_key");
            goto out_lis;
        }
        log_info("listening for TLS on %s port %d", c->bind, v->tls_port);
    }
    v->lis = v->lists[0].lis;
    if (v->lis) {
        sl = sizeof ss;
        if (getsockname(evconnlistener_get_fd(v->lis), (struct sockaddr *)&ss,
                        &sl) != 0) {
            snprintf(err, errlen, "getsockname: %s", strerror(errno));
            goto out_lis;
        }
        v->port = srv_sa_port(&ss);
    }
    v->ev_resume = evtimer_new(v->base, srv_resume_cb, v);
    if (!v->ev_resume) {
        snprintf(err, errlen, "cannot set up events");
        goto out_lis;
    }
    return 0;

out_lis:
    srv__listen_free(v);
    return -1;
}

void srv__listen_stop(srv *v)
{
    for (size_t i = 0; i < sizeof v->lists / sizeof v->lists[0]; i++)
        if (v->lists[i].lis)
            evconnlistener_disable(v->lists[i].lis);
}

void srv__listen_free(srv *v)
{
    struct stat st;

    if (v->ev_resume)
        event_free(v->ev_resume);
    v->ev_resume = NULL;
    for (size_t i = 0; i < sizeof v->lists / sizeof v->lists[0]; i++) {
        if (v->lists[i].lis)
            evconnlistener_free(v->lists[i].lis);
        v->lists[i].lis = NULL;
    }
    v->lis = NULL;
    /* The socket file goes with the daemon, unless another one has
     * replaced it meanwhile (then it is that one's). */
    if (v->unix_path[0] && stat(v->unix_path, &st) == 0 &&
        (unsigned long long)st.st_dev == v->unix_dev &&
        (unsigned long long)st.st_ino == v->unix_ino)
        unlink(v->unix_path);
    v->unix_path[0] = '\0';
}
