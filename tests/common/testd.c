/*
 * testd.c - starting, talking to and stopping a real chand for tests.
 */
#include "testd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct testd_conn {
    int fd;
    char *buf;
    size_t len, cap;
    json_t *stash; /* answers read while looking for another id */
};

int64_t testd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void testd_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

int testd_start(testd *d, const char *const *extra_args)
{
    const char *bin = getenv("CHAND_BIN");
    const char *args[64];
    int n = 0;
    char tmpl[] = "/tmp/chand-test-XXXXXX";

    memset(d, 0, sizeof *d);
    if (!bin || !*bin)
        bin = "build/chand";
    if (!mkdtemp(tmpl))
        return -1;
    snprintf(d->dir, sizeof d->dir, "%s", tmpl);
    snprintf(d->port_file, sizeof d->port_file, "%s/port", d->dir);

    args[n++] = bin;
    args[n++] = "--bind";
    args[n++] = "127.0.0.1";
    args[n++] = "--port";
    args[n++] = "0";
    args[n++] = "--port-file";
    args[n++] = d->port_file;
    args[n++] = "--log-level";
    args[n++] = getenv("CHAND_TEST_LOG") ? getenv("CHAND_TEST_LOG") : "warn";
    /* tests/run.sh runs the daemon suites a second time with several I/O
     * threads. */
    if (getenv("CHAND_IO_THREADS")) {
        args[n++] = "--io-threads";
        args[n++] = getenv("CHAND_IO_THREADS");
    }
    for (int i = 0; extra_args && extra_args[i] && n < 62; i++)
        args[n++] = extra_args[i];
    args[n] = NULL;

    d->pid = fork();
    if (d->pid < 0) {
        d->pid = 0;
        return -1;
    }
    if (d->pid == 0) {
        /* A test that dies (timeout, crash) takes its daemon with it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execv(bin, (char *const *)args);
        fprintf(stderr, "testd: cannot run %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    for (int64_t t0 = testd_now_ms(); testd_now_ms() - t0 < 10000;) {
        FILE *f = fopen(d->port_file, "r");
        if (f) {
            int port = 0;
            int ok = fscanf(f, "%d", &port);
            fclose(f);
            if (ok == 1 && port > 0) {
                d->port = port;
                return 0;
            }
        }
        if (!testd_running(d))
            return -1;
        testd_sleep_ms(5);
    }
    testd_stop(d);
    return -1;
}

bool testd_running(testd *d)
{
    int st;
    if (d->pid <= 0)
        return false;
    pid_t r = waitpid(d->pid, &st, WNOHANG);
    if (r == d->pid) {
        d->pid = -1; /* exited: reaped */
        return false;
    }
    return r == 0;
}

int testd_stop(testd *d)
{
    int st = 0, rc = -1;

    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        for (int64_t t0 = testd_now_ms(); testd_now_ms() - t0 < 10000;) {
            pid_t r = waitpid(d->pid, &st, WNOHANG);
            if (r == d->pid) {
                rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
                d->pid = 0;
                break;
            }
            testd_sleep_ms(5);
        }
        if (d->pid > 0) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, &st, 0);
            d->pid = 0;
            rc = -1;
        }
    }
    if (d->port_file[0])
        unlink(d->port_file);
    if (d->dir[0])
        rmdir(d->dir);
    return rc;
}

testd_conn *testd_connect_port(int port)
{
    struct sockaddr_in sa;
    int one = 1;
    testd_conn *c = calloc(1, sizeof *c);

    if (!c)
        return NULL;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        goto out_free;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        goto out_close;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->stash = json_array();
    return c;
out_close:
    close(c->fd);
out_free:
    free(c);
    return NULL;
}

testd_conn *testd_connect(const testd *d)
{
    return testd_connect_port(d->port);
}

void testd_close(testd_conn *c)
{
    if (!c)
        return;
    close(c->fd);
    free(c->buf);
    json_decref(c->stash);
    free(c);
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
        struct pollfd p = { c->fd, POLLIN, 0 };
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
        struct pollfd p = { c->fd, POLLIN, 0 };
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

    json_array_foreach(c->stash, i, a) {
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

json_t *testd_stats(const testd *d)
{
    json_t *r = NULL;

    /* A slow daemon (sanitizers, a loaded machine) may miss one call's
     * time limit: ask again, on a fresh connection, before giving up. */
    for (int tries = 0; !r && tries < 6; tries++) {
        testd_conn *c = testd_connect(d);
        json_t *a;

        if (!c)
            return NULL; /* no daemon: asking again will not help */
        a = testd_call(c, 1, "runtime.stats", NULL, 10000);
        if (a && testd_result(a))
            r = json_incref(testd_result(a));
        json_decref(a);
        testd_close(c);
    }
    return r;
}
