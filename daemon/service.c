/*
 * service.c - chand as a system service: systemd's readiness protocol
 * (READY, STOPPING, RELOADING), socket activation, and the SIGHUP reload.
 * main.c wires the signals to these; the work runs on io[0] as ordinary
 * event callbacks, never inside an asynchronous signal handler.
 *
 * sd_notify without libsystemd (sd_notify(3) and its "Notify socket"
 * notes): the service manager passes a socket address in $NOTIFY_SOCKET;
 * a path ("/run/systemd/notify") or, with a leading '@', an abstract name
 * whose first byte is NUL.  The service sends one SOCK_DGRAM datagram per
 * state change, newline-separated KEY=VALUE assignments.  systemd checks
 * the sender's credentials itself, so nothing else is needed.  vsock
 * addresses ("vsock:...") are not supported: chand never runs in a VM's
 * init.  Without $NOTIFY_SOCKET every notification is a no-op.
 *
 * A reload rebuilds the settings the way start-up did (defaults, file,
 * flags: cfg_reload) and applies what can change while running: the log
 * level, GOMAXPROCS and the limits.  Addresses and ports need a restart
 * and are only reported.  A bad file is logged and the old settings stay,
 * so a typo never takes a running daemon down.
 *
 * Limits are plain ints and size_ts in srv_conf, read without a lock by
 * the I/O thread and, for a few, by goroutines; they are word-sized and
 * each is used once per check, so a reader sees the old or the new value,
 * both valid.  New sessions see a new max-line; open ones keep theirs.
 */
#include "service.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cfgfile.h"
#include "daemon.h"

/* Sends state ("READY=1", "STOPPING=1", ...) to $NOTIFY_SOCKET.  Returns
 * 1 when sent, 0 when there is no NOTIFY_SOCKET, or a negative errno. */
static int svc_notify_send(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa;
    socklen_t salen;
    size_t len;
    int fd, rc;

    if (!path || !*path)
        return 0;
    len = strlen(path);
    if (path[0] != '/' && path[0] != '@')
        return -EAFNOSUPPORT;
    if (len >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, len);
    /* An abstract name is exactly len bytes long, NUL first and none
     * after; a path may carry its terminating NUL. */
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = '\0';
    salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    rc = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
                salen) < 0
             ? -errno
             : 1;
    close(fd);
    return rc;
}

/* Returns CLOCK_MONOTONIC in microseconds, for MONOTONIC_USEC=. */
static unsigned long long svc_monotonic_usec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000ULL +
           (unsigned long long)ts.tv_nsec / 1000ULL;
}

/* Sends state and logs a failure (there is nothing else to do about it). */
static void svc_notify(const char *state)
{
    int rc = svc_notify_send(state);

    if (rc < 0)
        log_warn("sd_notify %s: %s", state, strerror(-rc));
}

void svc_ready(int port)
{
    char msg[128];

    snprintf(msg, sizeof msg, "READY=1\nSTATUS=listening on port %d", port);
    svc_notify(msg);
}

void svc_stopping(void)
{
    svc_notify("STOPPING=1\nSTATUS=draining");
}

/* Applies one numeric setting if it changed; returns 1 if it did. */
#define SVC_NUM(field, name, fmt, cast)                                        \
    do {                                                                       \
        if (cur->field != nw->field) {                                         \
            log_info("reload: %s " fmt " -> " fmt, name, (cast)cur->field,     \
                     (cast)nw->field);                                         \
            cur->field = nw->field;                                            \
            changed++;                                                         \
        }                                                                      \
    } while (0)

/* Reports a setting that only a restart applies. */
#define SVC_FIXED_STR(field, name)                                             \
    do {                                                                       \
        if (strcmp(cur->field, nw->field) != 0)                                \
            log_warn("reload: %s changed to '%s': needs a restart", name,      \
                     nw->field);                                               \
    } while (0)
#define SVC_FIXED_INT(field, name)                                             \
    do {                                                                       \
        if (cur->field != nw->field)                                           \
            log_warn("reload: %s changed to %d: needs a restart", name,        \
                     nw->field);                                               \
    } while (0)

/* Moves what can change at run time from nw into cur (srv_conf) and logs
 * every difference.  Returns the number of settings applied. */
static int svc_apply(conf *cur, const conf *nw)
{
    int changed = 0;

    if (cur->log_level != nw->log_level) {
        /* Logged at warn so that a change to "error" is still visible. */
        log_warn("reload: log-level %s -> %s", log_level_name(cur->log_level),
                 log_level_name(nw->log_level));
        cur->log_level = nw->log_level;
        log_set_level(nw->log_level);
        changed++;
    }
    if (cur->gomaxprocs != nw->gomaxprocs) {
        int n = nw->gomaxprocs > 0 ? nw->gomaxprocs : rt_num_cpu();
        int prev = rt_gomaxprocs(n);
        log_info("reload: gomaxprocs %d -> %d (%d processors, were %d)",
                 cur->gomaxprocs, nw->gomaxprocs, n, prev);
        cur->gomaxprocs = nw->gomaxprocs;
        changed++;
    }
    SVC_NUM(max_line, "max-line", "%zu", size_t);
    SVC_NUM(max_depth, "max-depth", "%d", int);
    SVC_NUM(max_value, "max-value", "%zu", size_t);
    SVC_NUM(max_conns, "max-conns", "%d", int);
    SVC_NUM(max_objects, "max-objects", "%d", int);
    SVC_NUM(max_outbuf, "max-outbuf", "%zu", size_t);
    SVC_NUM(max_batch, "max-batch", "%d", int);
    SVC_NUM(max_select, "max-select", "%d", int);
    SVC_NUM(fair_batch, "fair-batch", "%d", int);
    SVC_NUM(shutdown_grace_ms, "shutdown-grace-ms", "%d", int);
    SVC_NUM(tcp_keepalive, "tcp-keepalive", "%d", int);
    SVC_NUM(max_memory, "max-memory", "%zu", size_t);
    SVC_NUM(max_goroutines, "max-goroutines", "%d", int);
    SVC_NUM(max_timers, "max-timers", "%d", int);
    SVC_NUM(min_ticker_ms, "min-ticker-ms", "%d", int);
    SVC_FIXED_STR(bind, "bind");
    SVC_FIXED_INT(port, "port");
    SVC_FIXED_INT(io_threads, "io-threads");
    SVC_FIXED_STR(port_file, "port-file");
    SVC_FIXED_STR(metrics_bind, "metrics-bind");
    SVC_FIXED_INT(metrics_port, "metrics-port");
    SVC_FIXED_STR(metrics_port_file, "metrics-port-file");
    SVC_FIXED_STR(unix_socket, "unix-socket");
    SVC_FIXED_INT(tls_port, "tls-port");
    SVC_FIXED_STR(tls_port_file, "tls-port-file");
    SVC_NUM(auth_timeout_ms, "auth-timeout-ms", "%d", int);
    SVC_FIXED_INT(auth_hash_slots, "auth-hash-slots");
    SVC_FIXED_INT(auth_hash_queue, "auth-hash-queue");
    sec_reload(nw); /* the users file and the certificates, in place */
    return changed;
}

int svc_reload(void)
{
    char err[600];
    conf nw;
    char msg[96];
    int rc = 0;

    /* systemd wants the monotonic time with RELOADING=1 (v253+) to tell
     * this reload from an earlier one. */
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
             svc_monotonic_usec());
    svc_notify(msg);
    if (cfg_reload(&nw, err, sizeof err) != 0) {
        log_error("reload failed, keeping the old settings: %s", err);
        rc = -1;
    } else {
        int n = svc_apply(&srv_conf, &nw);
        char warn[400];
        if (conf_warning(&srv_conf, warn, sizeof warn))
            log_warn("%s", warn);
        log_info("reloaded %s: %d setting%s changed",
                 srv_conf.config[0] ? srv_conf.config : "(no config file)", n,
                 n == 1 ? "" : "s");
    }
    /* READY=1 either way: the daemon serves, with old or new settings. */
    svc_notify(rc == 0 ? "READY=1\nSTATUS=reloaded"
                       : "READY=1\nSTATUS=reload failed; old settings kept");
    return rc;
}

int svc_activation_fd(void)
{
    int fds[8];
    int n = svc_activation_fds(fds, 8);

    for (int i = 1; i < n; i++)
        close(fds[i]);
    return n > 0 ? fds[0] : -1;
}

int svc_activation_fds(int *out, int max)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    char *end;
    long n;
    int fd = 3; /* SD_LISTEN_FDS_START */

    if (!pid || !fds)
        return 0;
    errno = 0;
    if (strtol(pid, &end, 10) != (long)getpid() || *end || errno)
        return 0;
    n = strtol(fds, &end, 10);
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (*end || n < 1)
        return 0;
    if (n > max) {
        log_warn("socket activation: %ld sockets passed, using %d", n, max);
        n = max;
    }
    for (long i = 0; i < n; i++, fd++) {
        /* Ours now: not to be inherited by anything chand might exec. */
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
            log_error("socket activation: fd %d: %s", fd, strerror(errno));
            return 0;
        }
        out[i] = fd;
    }
    return (int)n;
}
