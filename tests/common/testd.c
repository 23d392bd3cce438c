/*
 * testd.c - starting, talking to and stopping a real chand for tests.
 */
#include "testd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct testd_conn {
    int fd;
    char *buf;
    size_t len, cap;
    json_t *stash;           /* answers read while looking for another id */
    testd_conn *prev, *next; /* in testd_open, while open */
    bool kept;               /* testd_stats' own */
};

/* Every open connection, so that a test's teardown can close those an
 * assertion left open (testd_close_all). */
static testd_conn *testd_open;
/* testd_open_lock guards testd_open; testd_stats_lock guards testd_statc
 * and every use of its connections (the soak driver's clients are
 * threads). */
static pthread_mutex_t testd_open_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t testd_stats_lock = PTHREAD_MUTEX_INITIALIZER;
static void testd_stats_drop(int port);

/* The connections testd_stats keeps (one per daemon, by port). */
static struct {
    int port;
    testd_conn *c;
} testd_statc[8];

int64_t testd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void testd_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int testd_bind_loopback(int *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

static int testd_rm_one(const char *p, const struct stat *sb, int flag,
                        struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

bool testd_file_has(const char *path, const char *needle, int wait_ms)
{
    int64_t end = testd_now_ms() + wait_ms;
    char line[2048];

    for (;;) {
        FILE *f = fopen(path, "r");
        bool found = false;

        while (f && !found && fgets(line, sizeof line, f))
            found = strstr(line, needle) != NULL;
        if (f)
            fclose(f);
        if (found)
            return true;
        if (testd_now_ms() >= end)
            return false;
        testd_sleep_ms(20);
    }
}

void testd_rm_rf(const char *dir)
{
    /* Depth first: a directory is empty by the time it is removed. */
    nftw(dir, testd_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- children: every process a test forks, so none outlives it ---- */

/* The children forked and not yet reaped (a test forks a few dozen at a
 * time at most). */
static struct {
    pid_t pid;
    bool daemon;
} testd_kids[256];

static void testd_track(pid_t pid, bool daemon)
{
    for (size_t i = 0; i < sizeof testd_kids / sizeof testd_kids[0]; i++)
        if (testd_kids[i].pid <= 0) {
            testd_kids[i].pid = pid;
            testd_kids[i].daemon = daemon;
            return;
        }
}

static void testd_forget(pid_t pid)
{
    for (size_t i = 0; i < sizeof testd_kids / sizeof testd_kids[0]; i++)
        if (testd_kids[i].pid == pid)
            testd_kids[i].pid = 0;
}

/* A child forked while another thread held a lock must not inherit it
 * held: fork takes both, and each side lets them go. */
static void testd_fork_prepare(void)
{
    pthread_mutex_lock(&testd_stats_lock);
    pthread_mutex_lock(&testd_open_lock);
}

static void testd_fork_done(void)
{
    pthread_mutex_unlock(&testd_open_lock);
    pthread_mutex_unlock(&testd_stats_lock);
}

static void testd_fork_init(void)
{
    pthread_atfork(testd_fork_prepare, testd_fork_done, testd_fork_done);
}

static pid_t testd_fork_as(bool daemon)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pid_t parent = getpid();
    pid_t pid;

    pthread_once(&once, testd_fork_init);
    pid = fork();

    if (pid == 0) {
        /* Dies with the test, whichever way the test ends; a test that
         * died between fork and prctl is caught by the getppid check. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        memset(testd_kids, 0, sizeof testd_kids); /* the parent's, not ours */
        /* The parent's stats connections are not ours either. */
        for (size_t i = 0; i < sizeof testd_statc / sizeof testd_statc[0]; i++)
            if (testd_statc[i].c) {
                close(testd_statc[i].c->fd);
                testd_statc[i].c->fd = -1;
                testd_statc[i].c = NULL;
            }
        return 0;
    }
    if (pid > 0)
        testd_track(pid, daemon);
    return pid;
}

pid_t testd_fork(void)
{
    return testd_fork_as(false);
}

pid_t testd_reap(pid_t pid, int *status, int timeout_ms)
{
    int64_t t0 = testd_now_ms();
    int st = 0;

    for (;;) {
        pid_t r = waitpid(pid, &st, timeout_ms < 0 ? 0 : WNOHANG);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == pid || r < 0) {
            testd_forget(pid);
            if (r == pid && status)
                *status = st;
            return r;
        }
        if (testd_now_ms() - t0 >= timeout_ms)
            return 0;
        testd_sleep_ms(2);
    }
}

void testd_kill_children(bool daemons)
{
    for (size_t i = 0; i < sizeof testd_kids / sizeof testd_kids[0]; i++) {
        pid_t pid = testd_kids[i].pid;
        if (pid <= 0 || (testd_kids[i].daemon && !daemons))
            continue;
        kill(pid, SIGKILL);
        testd_reap(pid, NULL, -1);
    }
}

/* ---- the daemon ---- */

static int testd_read_port(const char *path)
{
    FILE *f = fopen(path, "r");
    int port = 0;

    if (!f)
        return 0;
    if (fscanf(f, "%d", &port) != 1)
        port = 0;
    fclose(f);
    return port;
}

/* The daemon's side of the fork: stderr, environment, exec. */
static void testd_exec(const testd_opts *o, const char *const *args)
{
    if (o->log) {
        int fd = open(o->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0 || dup2(fd, 2) < 0)
            _exit(126);
        close(fd);
    }
    if (o->notify)
        setenv("NOTIFY_SOCKET", o->notify, 1);
    else
        unsetenv("NOTIFY_SOCKET");
    if (o->listen_fd > 0) {
        char pid[16];
        /* Out of the way first: dup2 onto 3 must not close the second. */
        int fd2 = o->listen_fd2 > 0 ? fcntl(o->listen_fd2, F_DUPFD, 10) : -1;
        if (o->listen_fd != 3 && dup2(o->listen_fd, 3) < 0)
            _exit(126);
        if (fd2 >= 0 && dup2(fd2, 4) < 0)
            _exit(126);
        snprintf(pid, sizeof pid, "%d", (int)getpid());
        setenv("LISTEN_PID", pid, 1);
        setenv("LISTEN_FDS", fd2 >= 0 ? "2" : "1", 1);
    }
    execv(args[0], (char *const *)args);
    fprintf(stderr, "testd: cannot run %s: %s\n", args[0], strerror(errno));
    _exit(127);
}

int testd_start_opts(testd *d, const testd_opts *o)
{
    static const testd_opts defaults = {0};
    const char *bin = getenv("CHAND_BIN");
    const char *args[64];
    char tmpl[] = "/tmp/chand-test-XXXXXX", portarg[16];
    int n = 0;

    memset(d, 0, sizeof *d);
    if (!o)
        o = &defaults;
    if (!bin || !*bin)
        bin = "build/chand";
    if (!mkdtemp(tmpl))
        return -1;
    snprintf(d->dir, sizeof d->dir, "%s", tmpl);
    snprintf(d->port_file, sizeof d->port_file, "%s/port", d->dir);

    args[n++] = bin;
    if (o->config) {
        args[n++] = "--config";
        args[n++] = o->config;
        if (o->port_file)
            snprintf(d->port_file, sizeof d->port_file, "%s", o->port_file);
    } else if (o->listen_fd <= 0) {
        snprintf(portarg, sizeof portarg, "%d", o->port);
        args[n++] = "--bind";
        args[n++] = "127.0.0.1";
        args[n++] = "--port";
        args[n++] = portarg;
        args[n++] = "--port-file";
        args[n++] = d->port_file;
        args[n++] = "--log-level";
        args[n++] =
            getenv("CHAND_TEST_LOG") ? getenv("CHAND_TEST_LOG") : "warn";
        /* tests/run.sh runs the daemon suites a second time with several
         * I/O threads. */
        if (getenv("CHAND_IO_THREADS")) {
            args[n++] = "--io-threads";
            args[n++] = getenv("CHAND_IO_THREADS");
        }
    }
    for (int i = 0; o->args && o->args[i] && n < 62; i++)
        args[n++] = o->args[i];
    args[n] = NULL;
    unlink(d->port_file);
    if (o->mport_file)
        unlink(o->mport_file);

    d->pid = testd_fork_as(true);
    if (d->pid < 0) {
        d->pid = 0;
        goto out_rmdir;
    }
    if (d->pid == 0)
        testd_exec(o, args);
    if (o->listen_fd > 0) {
        struct sockaddr_in sa;
        socklen_t sl = sizeof sa;
        if (getsockname(o->listen_fd, (struct sockaddr *)&sa, &sl) != 0)
            goto out_stop;
        d->port = ntohs(sa.sin_port);
        return 0;
    }
    for (int64_t t0 = testd_now_ms(); testd_now_ms() - t0 < 20000;) {
        d->port = testd_read_port(d->port_file);
        d->mport = o->mport_file ? testd_read_port(o->mport_file) : 0;
        if (d->port > 0 && (!o->mport_file || d->mport > 0))
            return 0;
        if (!testd_running(d))
            goto out_stop;
        testd_sleep_ms(5);
    }
out_stop:
    testd_stop(d);
    return -1;
out_rmdir:
    rmdir(d->dir);
    return -1;
}

int testd_start(testd *d, const char *const *extra_args)
{
    testd_opts o = {.args = extra_args};
    return testd_start_opts(d, &o);
}

bool testd_running(testd *d)
{
    if (d->pid <= 0)
        return false;
    if (testd_reap(d->pid, &d->status, 0) != 0) {
        d->pid = -1; /* exited: reaped */
        return false;
    }
    return true;
}

/* Removes the directory testd_start_opts made (its port file only): a
 * daemon that has exited needs it no more, and a test that restarts
 * gets a new one. */
static void testd_rmdir(testd *d)
{
    char own[300];

    if (!d->dir[0])
        return;
    snprintf(own, sizeof own, "%s/port", d->dir);
    unlink(own);
    rmdir(d->dir);
    d->dir[0] = '\0';
}

int testd_wait_exit(testd *d, int timeout_ms)
{
    int st = 0;
    pid_t r;

    if (d->pid <= 0) {
        testd_rmdir(d);
        return -1;
    }
    r = testd_reap(d->pid, &st, timeout_ms);
    if (r == 0) {
        fprintf(stderr, "testd: daemon %d did not exit in %d ms: killed\n",
                (int)d->pid, timeout_ms);
        kill(d->pid, SIGKILL);
        testd_reap(d->pid, NULL, -1);
    }
    d->pid = 0;
    testd_rmdir(d);
    return r > 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int testd_stop(testd *d)
{
    int rc = -1;

    pthread_mutex_lock(&testd_stats_lock);
    testd_stats_drop(d->port);
    pthread_mutex_unlock(&testd_stats_lock);
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        rc = testd_wait_exit(d, 20000);
    }
    testd_rmdir(d);
    return rc;
}

/* Returns a new connection on a socket of domain connected to sa, one
 * of testd_open (so testd_close_all finds it), or NULL. */
static testd_conn *testd_conn_open(int domain, const void *sa, socklen_t len)
{
    testd_conn *c = calloc(1, sizeof *c);

    if (!c)
        return NULL;
    c->fd = socket(domain, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        goto out_free;
    if (connect(c->fd, sa, len) != 0)
        goto out_close;
    c->stash = json_array();
    pthread_mutex_lock(&testd_open_lock);
    c->next = testd_open;
    if (testd_open)
        testd_open->prev = c;
    testd_open = c;
    pthread_mutex_unlock(&testd_open_lock);
    return c;
out_close:
    close(c->fd);
out_free:
    free(c);
    return NULL;
}

testd_conn *testd_connect_port(int port)
{
    struct sockaddr_in sa;
    int one = 1;
    testd_conn *c;

    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c = testd_conn_open(AF_INET, &sa, sizeof sa);
    if (c)
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return c;
}

testd_conn *testd_connect_unix(const char *path)
{
    struct sockaddr_un sa;

    if (strlen(path) >= sizeof sa.sun_path)
        return NULL;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    return testd_conn_open(AF_UNIX, &sa, sizeof sa);
}

testd_conn *testd_connect(const testd *d)
{
    return testd_connect_port(d->port);
}

static void testd_unlink(testd_conn *c)
{
    pthread_mutex_lock(&testd_open_lock);
    if (c->prev)
        c->prev->next = c->next;
    else if (testd_open == c)
        testd_open = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    pthread_mutex_unlock(&testd_open_lock);
}

void testd_close(testd_conn *c)
{
    if (!c)
        return;
    testd_unlink(c);
    close(c->fd);
    free(c->buf);
    json_decref(c->stash);
    free(c);
}

void testd_close_all(void)
{
    for (;;) {
        testd_conn *c;

        pthread_mutex_lock(&testd_open_lock);
        for (c = testd_open; c && c->kept; c = c->next)
            ;
        pthread_mutex_unlock(&testd_open_lock);
        if (!c)
            return;
        testd_close(c); /* takes the lock itself */
    }
}

int testd_fd(const testd_conn *c)
{
    return c->fd;
}

int testd_write(testd_conn *c, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int testd_send(testd_conn *c, const char *line)
{
    size_t n = strlen(line);
    char *b = malloc(n + 1);
    int rc;
    if (!b)
        return -1;
    memcpy(b, line, n);
    b[n] = '\n';
    rc = testd_write(c, b, n + 1);
    free(b);
    return rc;
}

int testd_sendf(testd_conn *c, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    int rc;
    va_start(ap, fmt);
    rc = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (rc < 0)
        return -1;
    rc = testd_send(c, s);
    free(s);
    return rc;
}

char *testd_recv_line(testd_conn *c, int timeout_ms)
{
    int64_t t0 = testd_now_ms();

    for (;;) {
        char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - c->buf);
            char *line = malloc(n + 1);
            if (!line)
                return NULL;
            memcpy(line, c->buf, n);
            line[n] = '\0';
            memmove(c->buf, nl + 1, c->len - n - 1);
            c->len -= n + 1;
            return line;
        }
        int wait = -1;
        if (timeout_ms >= 0) {
            int64_t left = timeout_ms - (testd_now_ms() - t0);
            if (left <= 0)
                return NULL;
            wait = (int)left;
        }
        struct pollfd p = {c->fd, POLLIN, 0};
        int r = poll(&p, 1, wait);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return NULL;
        if (c->cap - c->len < 65536) {
            size_t ncap = c->cap ? c->cap * 2 : 131072;
            char *nb = realloc(c->buf, ncap);
            if (!nb)
                return NULL;
            c->buf = nb;
            c->cap = ncap;
        }
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return NULL;
        c->len += (size_t)n;
    }
}

json_t *testd_recv(testd_conn *c, int timeout_ms)
{
    char *line = testd_recv_line(c, timeout_ms);
    json_t *v;
    if (!line)
        return NULL;
    v = json_loads(line, JSON_DECODE_ANY, NULL);
    free(line);
    return v;
}

bool testd_wait_eof(testd_conn *c, int timeout_ms)
{
    int64_t t0 = testd_now_ms();
    char tmp[65536];

    c->len = 0;
    for (;;) {
        int64_t left = timeout_ms - (testd_now_ms() - t0);
        if (left <= 0)
            return false;
        struct pollfd p = {c->fd, POLLIN, 0};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        ssize_t n = recv(c->fd, tmp, sizeof tmp, 0);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
            return true;
    }
}

static bool testd_has_id(json_t *a, int64_t id)
{
    json_t *v = json_object_get(a, "id");
    return json_is_integer(v) && json_integer_value(v) == id;
}

json_t *testd_wait_id(testd_conn *c, int64_t id, int timeout_ms)
{
    int64_t t0 = testd_now_ms();
    size_t i;
    json_t *a;

    json_array_foreach(c->stash, i, a)
    {
        if (testd_has_id(a, id)) {
            json_incref(a);
            json_array_remove(c->stash, i);
            return a;
        }
    }
    for (;;) {
        int left = -1;
        if (timeout_ms >= 0) {
            left = (int)(timeout_ms - (testd_now_ms() - t0));
            if (left <= 0)
                return NULL;
        }
        a = testd_recv(c, left);
        if (!a)
            return NULL;
        if (testd_has_id(a, id))
            return a;
        json_array_append_new(c->stash, a);
    }
}

json_t *testd_call(testd_conn *c, int64_t id, const char *method,
                   json_t *params, int timeout_ms)
{
    json_t *req = json_pack("{s:s, s:I, s:s, s:o}", "jsonrpc", "2.0", "id",
                            (json_int_t)id, "method", method, "params",
                            params ? params : json_object());
    char *line;
    int rc;

    if (!req)
        return NULL;
    line = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!line)
        return NULL;
    rc = testd_send(c, line);
    free(line);
    if (rc != 0)
        return NULL;
    return testd_wait_id(c, id, timeout_ms);
}

json_t *testd_result(json_t *answer)
{
    return json_object_get(answer, "result");
}

const char *testd_reason(json_t *answer)
{
    json_t *e = json_object_get(answer, "error");
    return json_string_value(
        json_object_get(json_object_get(e, "data"), "reason"));
}

int testd_code(json_t *answer)
{
    json_t *e = json_object_get(answer, "error");
    return (int)json_integer_value(json_object_get(e, "code"));
}

const char *testd_message(json_t *answer)
{
    json_t *e = json_object_get(answer, "error");
    return json_string_value(json_object_get(e, "message"));
}

/* One runtime.stats connection per daemon (by port), kept open between
 * readings.  A fresh connection per reading raced its own predecessor:
 * the daemon may answer the new one (on another I/O thread) before it has
 * seen the old one close, so a reading could count one session and one
 * descriptor too many, and did, often enough to fail a test that wants a
 * stable count.  The kept connection is in every reading, baselines
 * included. */
static testd_conn **testd_stats_slot(int port)
{
    size_t n = sizeof testd_statc / sizeof testd_statc[0], i;

    for (i = 0; i < n; i++)
        if (testd_statc[i].c && testd_statc[i].port == port)
            return &testd_statc[i].c;
    for (i = 0; i < n; i++)
        if (!testd_statc[i].c) {
            testd_statc[i].port = port;
            return &testd_statc[i].c;
        }
    testd_close(testd_statc[0].c); /* eight daemons at once: recycle */
    testd_statc[0].c = NULL;
    testd_statc[0].port = port;
    return &testd_statc[0].c;
}

/* Closes the kept connection to port; the caller holds testd_stats_lock. */
static void testd_stats_drop(int port)
{
    for (size_t i = 0; i < sizeof testd_statc / sizeof testd_statc[0]; i++)
        if (testd_statc[i].c && testd_statc[i].port == port) {
            testd_close(testd_statc[i].c);
            testd_statc[i].c = NULL;
        }
}

json_t *testd_stats(const testd *d)
{
    static int64_t id;
    json_t *r = NULL;

    /* A slow daemon (sanitizers, a loaded machine) may miss one call's
     * time limit, or the kept connection may have gone with a restarted
     * daemon: ask again on a fresh connection before giving up. */
    pthread_mutex_lock(&testd_stats_lock);
    for (int tries = 0; !r && tries < 6; tries++) {
        testd_conn **slot = testd_stats_slot(d->port);
        json_t *a;

        if (!*slot && (*slot = testd_connect(d)) != NULL)
            (*slot)->kept = true;
        if (!*slot)
            break; /* no daemon: asking again will not help */
        a = testd_call(*slot, ++id, "runtime.stats", NULL, 10000);
        if (a && testd_result(a))
            r = json_incref(testd_result(a));
        else
            testd_stats_drop(d->port);
        json_decref(a);
    }
    pthread_mutex_unlock(&testd_stats_lock);
    return r;
}
