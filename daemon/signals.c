/*
 * signals.c - SIGHUP reload and the readiness notifications.
 *
 * Signals are delivered through libevent's evsignal, so the work runs on
 * the I/O thread as an ordinary callback, never inside an asynchronous
 * signal handler.  A reload rebuilds the settings the way start-up did
 * (defaults, file, flags: cfg_reload) and applies what can change while
 * running: the log level, GOMAXPROCS and the limits.  Addresses and ports
 * need a restart and are only reported.  A bad file is logged and the old
 * settings stay, so a typo never takes a running daemon down.
 *
 * Limits are plain ints and size_ts in srv_conf, read without a lock by
 * the I/O thread and, for a few, by goroutines; they are word-sized and
 * each is used once per check, so a reader sees the old or the new value,
 * both valid.  New sessions see a new max-line; open ones keep theirs.
 */
#include "signals.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "cfgfile.h"
#include "daemon.h"
#include "metrics.h"
#include "notify.h"

static struct event *sig_ev_hup;

/* Sends state and logs a failure (there is nothing else to do about it). */
static void sig_notify(const char *state)
{
    int rc = notify_send(state);

    if (rc < 0)
        log_warn("sd_notify %s: %s", state, strerror(-rc));
}

void sig_ready(int port)
{
    char msg[128];

    snprintf(msg, sizeof msg, "READY=1\nSTATUS=listening on port %d", port);
    sig_notify(msg);
}

void sig_stopping(void)
{
    sig_notify("STOPPING=1\nSTATUS=draining");
}

/* Applies one numeric setting if it changed; returns 1 if it did. */
#define SIG_NUM(field, name, fmt, cast)                                    \
    do {                                                                   \
        if (cur->field != nw->field) {                                     \
            log_info("reload: %s " fmt " -> " fmt, name, (cast)cur->field, \
                     (cast)nw->field);                                     \
            cur->field = nw->field;                                        \
            changed++;                                                     \
        }                                                                  \
    } while (0)

/* Reports a setting that only a restart applies. */
#define SIG_FIXED_STR(field, name)                                         \
    do {                                                                   \
        if (strcmp(cur->field, nw->field) != 0)                            \
            log_warn("reload: %s changed to '%s': needs a restart", name,  \
                     nw->field);                                           \
    } while (0)
#define SIG_FIXED_INT(field, name)                                         \
    do {                                                                   \
        if (cur->field != nw->field)                                       \
            log_warn("reload: %s changed to %d: needs a restart", name,    \
                     nw->field);                                           \
    } while (0)

/* Moves what can change at run time from nw into cur (srv_conf) and logs
 * every difference.  Returns the number of settings applied. */
static int sig_apply(conf *cur, const conf *nw)
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
    SIG_NUM(max_line, "max-line", "%zu", size_t);
    SIG_NUM(max_depth, "max-depth", "%d", int);
    SIG_NUM(max_value, "max-value", "%zu", size_t);
    SIG_NUM(max_conns, "max-conns", "%d", int);
    SIG_NUM(max_objects, "max-objects", "%d", int);
    SIG_NUM(max_outbuf, "max-outbuf", "%zu", size_t);
    SIG_NUM(max_batch, "max-batch", "%d", int);
    SIG_NUM(max_select, "max-select", "%d", int);
    SIG_NUM(fair_batch, "fair-batch", "%d", int);
    SIG_NUM(shutdown_grace_ms, "shutdown-grace-ms", "%d", int);
    SIG_FIXED_STR(bind, "bind");
    SIG_FIXED_INT(port, "port");
    SIG_FIXED_INT(io_threads, "io-threads");
    SIG_FIXED_STR(port_file, "port-file");
    SIG_FIXED_STR(metrics_bind, "metrics-bind");
    SIG_FIXED_INT(metrics_port, "metrics-port");
    SIG_FIXED_STR(metrics_port_file, "metrics-port-file");
    return changed;
}

int sig_reload(void)
{
    char err[600];
    conf nw;
    char msg[96];
    int rc = 0;

    /* systemd wants the monotonic time with RELOADING=1 (v253+) to tell
     * this reload from an earlier one. */
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
             notify_monotonic_usec());
    sig_notify(msg);
    if (cfg_reload(&nw, err, sizeof err) != 0) {
        log_error("reload failed, keeping the old settings: %s", err);
        rc = -1;
    } else {
        int n = sig_apply(&srv_conf, &nw);
        log_info("reloaded %s: %d setting%s changed",
                 srv_conf.config[0] ? srv_conf.config : "(no config file)",
                 n, n == 1 ? "" : "s");
    }
    /* READY=1 either way: the daemon serves, with old or new settings. */
    sig_notify(rc == 0 ? "READY=1\nSTATUS=reloaded"
                       : "READY=1\nSTATUS=reload failed; old settings kept");
    return rc;
}

static void sig_hup_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    log_info("SIGHUP: reloading");
    sig_reload();
}

int sig_activation_fd(void)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    char *end;
    long n;
    int fd = 3; /* SD_LISTEN_FDS_START */

    if (!pid || !fds)
        return -1;
    errno = 0;
    if (strtol(pid, &end, 10) != (long)getpid() || *end || errno)
        return -1;
    n = strtol(fds, &end, 10);
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (*end || n < 1)
        return -1;
    if (n > 1)
        log_warn("socket activation: %ld sockets passed, using the first",
                 n);
    /* Ours now: not to be inherited by anything chand might exec. */
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
        log_error("socket activation: fd %d: %s", fd, strerror(errno));
        return -1;
    }
    return fd;
}

int sig_attach(struct event_base *base, char *err, size_t errlen)
{
    sig_ev_hup = evsignal_new(base, SIGHUP, sig_hup_cb, NULL);
    if (!sig_ev_hup || evsignal_add(sig_ev_hup, NULL) != 0) {
        snprintf(err, errlen, "cannot set up the SIGHUP event");
        goto out_free;
    }
    if (metrics_start(base, &srv_conf, err, errlen) != 0)
        goto out_free;
    return 0;

out_free:
    if (sig_ev_hup)
        event_free(sig_ev_hup);
    sig_ev_hup = NULL;
    return -1;
}

void sig_detach(void)
{
    metrics_stop();
    if (sig_ev_hup)
        event_free(sig_ev_hup);
    sig_ev_hup = NULL;
}
