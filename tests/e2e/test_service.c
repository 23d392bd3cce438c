/*
 * test_service.c - end-to-end: chand as a system service.  The daemon is
 * started from a config file (port 0, metrics port "auto", both written to
 * files), with its stderr captured and, where a test needs it, a
 * NOTIFY_SOCKET bound by the test.  Covers --test-config, settings from
 * the file taking effect, SIGHUP (log level, GOMAXPROCS, limits; a bad
 * file keeps the old settings), SIGTERM with parked clients (cancelled,
 * exit 0), /metrics syntax and counters, /healthz, /readyz, the
 * READY/RELOADING/STOPPING datagrams, and socket activation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/e2e.h"
#include "../common/testd.h"
#include "../common/testpath.h"

/* Generous: two cores shared with parallel builds and tests. */
#define WAIT_MS 15000

typedef struct svc {
    testd d; /* the daemon (tests/common/testd.c) */
    char dir[64];
    char conf[128], log[128], port_file[128], mport_file[128];
    char notify[128]; /* NOTIFY_SOCKET value ("" none) */
    int nfd;          /* the test's end of it, -1 none */
    int port, mport;
} svc;

/* Kills the daemons (and commands) the running test started and did not
 * stop, when an assertion ended it early. */
static int teardown(void **state)
{
    (void)state;
    testd_kill_children(true);
    return 0;
}

static const char *chand_bin(void)
{
    const char *b = getenv("CHAND_BIN");
    return b && *b ? b : "build/chand";
}

static int svc_seq; /* makes abstract socket names unique in the run */

/* Makes the directory and paths; notify: 0 none, 1 a path, 2 abstract. */
static void svc_init(svc *s, int notify)
{
    memset(s, 0, sizeof *s);
    s->nfd = -1;
    snprintf(s->dir, sizeof s->dir, "/tmp/chand-svc-XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    snprintf(s->conf, sizeof s->conf, "%s/chand.conf", s->dir);
    snprintf(s->log, sizeof s->log, "%s/stderr", s->dir);
    snprintf(s->port_file, sizeof s->port_file, "%s/port", s->dir);
    snprintf(s->mport_file, sizeof s->mport_file, "%s/mport", s->dir);
    if (notify) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        socklen_t len;
        if (notify == 1)
            snprintf(s->notify, sizeof s->notify, "%s/notify", s->dir);
        else
            snprintf(s->notify, sizeof s->notify, "@chand-test-%d-%d",
                     (int)getpid(), ++svc_seq);
        memcpy(sa.sun_path, s->notify, strlen(s->notify));
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
                          strlen(s->notify));
        if (notify == 2)
            sa.sun_path[0] = '\0';
        s->nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        assert_true(s->nfd >= 0);
        assert_int_equal(bind(s->nfd, (struct sockaddr *)&sa, len), 0);
    }
}

/* Writes the config: free ports announced in files, then extra lines. */
static void svc_write_conf(svc *s, const char *extra)
{
    FILE *f = fopen(s->conf, "w");

    assert_non_null(f);
    fprintf(f,
            "# written by test_service\n"
            "bind = 127.0.0.1\n"
            "port = 0\n"
            "port_file = %s\n"
            "metrics_port = auto\n"
            "metrics_port_file = %s\n"
            "%s",
            s->port_file, s->mport_file, extra ? extra : "");
    assert_int_equal(fclose(f), 0);
}

/* Runs chand --config conf args... with stderr to the log and
 * NOTIFY_SOCKET set when the test has one; waits for both ports. */
static int svc_start(svc *s, const char *const *args)
{
    testd_opts o = {
        .config = s->conf,
        .args = args,
        .log = s->log,
        .notify = s->notify[0] ? s->notify : NULL,
        .port_file = s->port_file,
        .mport_file = s->mport_file,
    };

    if (testd_start_opts(&s->d, &o) != 0)
        return -1;
    s->port = s->d.port;
    s->mport = s->d.mport;
    return 0;
}

/* Waits for the daemon to exit (after a signal, or on its own).  Returns
 * its exit status, or -1 when it had to be killed or died of a signal. */
static int svc_wait_exit(svc *s)
{
    return testd_wait_exit(&s->d, WAIT_MS);
}

static int svc_stop(svc *s)
{
    return testd_stop(&s->d);
}

static void svc_cleanup(svc *s)
{
    char cmd[128];

    testd_stop(&s->d);
    if (s->nfd >= 0)
        close(s->nfd);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
    if (system(cmd) != 0)
        print_message("could not remove %s\n", s->dir);
}

/* Returns the whole file (malloc'd, NUL-terminated) or "" if absent. */
static char *slurp(const char *path)
{
    char *b = testfile_read(path, NULL);

    if (!b)
        b = strdup("");
    assert_non_null(b);
    return b;
}

/* Waits until the daemon's stderr contains needle; returns true if so. */
static bool log_wait(svc *s, const char *needle)
{
    for (int64_t t0 = testd_now_ms(); testd_now_ms() - t0 < WAIT_MS;) {
        char *t = slurp(s->log);
        bool found = strstr(t, needle) != NULL;
        free(t);
        if (found)
            return true;
        testd_sleep_ms(20);
    }
    char *t = slurp(s->log);
    print_message("log lacks \"%s\":\n%s\n", needle, t);
    free(t);
    return false;
}

static bool log_has(svc *s, const char *needle)
{
    char *t = slurp(s->log);
    bool found = strstr(t, needle) != NULL;
    free(t);
    return found;
}

/* Receives one notify datagram into buf; returns its length or -1. */
static int notify_recv(svc *s, char *buf, size_t len)
{
    struct pollfd p = {.fd = s->nfd, .events = POLLIN};
    ssize_t n;

    if (poll(&p, 1, WAIT_MS) != 1)
        return -1;
    n = recv(s->nfd, buf, len - 1, 0);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return (int)n;
}

/* True if the datagram holds the assignment line (whole line). */
static bool has_line(const char *msg, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = msg; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
        if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
            return true;
    return false;
}

/* Runs a command; returns its exit status with stdout and stderr in
 * files under s->dir (out, err). */
static int run_cmd(svc *s, const char *const *argv)
{
    char out[128], err[128];
    pid_t pid;
    int st;

    snprintf(out, sizeof out, "%s/out", s->dir);
    snprintf(err, sizeof err, "%s/err", s->dir);
    pid = testd_fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
            _exit(126);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    assert_int_equal(testd_reap(pid, &st, WAIT_MS), pid);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

/* One HTTP/1.0 GET; returns the status code, the whole response (headers
 * and body, malloc'd) in *resp. */
static int http_get(int port, const char *path, char **resp)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port)};
    char req[256], *b;
    size_t n = 0, cap = 1 << 16;
    int fd, code = -1;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path);
    assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    b = malloc(cap);
    assert_non_null(b);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t r;
        assert_int_equal(poll(&p, 1, WAIT_MS), 1);
        r = read(fd, b + n, cap - n - 1);
        assert_true(r >= 0);
        if (r == 0)
            break;
        n += (size_t)r;
        if (cap - n < 2) {
            cap *= 2;
            b = realloc(b, cap);
            assert_non_null(b);
        }
    }
    close(fd);
    b[n] = '\0';
    if (sscanf(b, "HTTP/1.%*d %d", &code) != 1)
        code = -1;
    *resp = b;
    return code;
}

/* Returns the body of an HTTP response (borrowed from resp). */
static const char *http_body(const char *resp)
{
    const char *p = strstr(resp, "\r\n\r\n");
    assert_non_null(p);
    return p + 4;
}

/* ---- Prometheus text format 0.0.4 ----------------------------------- */

static bool prom_name_ok(const char *p, const char *end)
{
    if (p == end || !(isalpha((unsigned char)*p) || *p == '_' || *p == ':'))
        return false;
    for (; p < end; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_' || *p == ':'))
            return false;
    return true;
}

/* Checks every line of the exposition; fails the test naming the line.
 * Also checks that each sample's family was given a TYPE before it, and
 * that no family is TYPEd twice.  Returns the number of samples. */
static int prom_check(const char *body)
{
    char types[128][96];
    int ntypes = 0, samples = 0, lineno = 0;
    const char *p = body;

    assert_true(*body);
    assert_int_equal(body[strlen(body) - 1], '\n');
    while (*p) {
        const char *eol = strchr(p, '\n');
        char line[512];
        size_t len = (size_t)(eol - p);

        lineno++;
        assert_true(len < sizeof line);
        memcpy(line, p, len);
        line[len] = '\0';
        p = eol + 1;
        if (strncmp(line, "# HELP ", 7) == 0) {
            const char *n = line + 7, *sp = strchr(n, ' ');
            if (!sp || !prom_name_ok(n, sp) || !sp[1])
                fail_msg("line %d: bad HELP: %s", lineno, line);
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            const char *n = line + 7, *sp = strchr(n, ' ');
            if (!sp || !prom_name_ok(n, sp))
                fail_msg("line %d: bad TYPE: %s", lineno, line);
            if (strcmp(sp + 1, "counter") && strcmp(sp + 1, "gauge") &&
                strcmp(sp + 1, "histogram") && strcmp(sp + 1, "summary") &&
                strcmp(sp + 1, "untyped"))
                fail_msg("line %d: bad type: %s", lineno, line);
            for (int i = 0; i < ntypes; i++)
                if (strlen(types[i]) == (size_t)(sp - n) &&
                    strncmp(types[i], n, (size_t)(sp - n)) == 0)
                    fail_msg("line %d: second TYPE for %s", lineno, types[i]);
            assert_true(ntypes < 128);
            snprintf(types[ntypes++], sizeof types[0], "%.*s", (int)(sp - n),
                     n);
            continue;
        }
        if (line[0] == '#')
            continue; /* other comments are allowed */
        /* name{label="value",...} value */
        const char *q = line, *name_end;
        while (*q && *q != '{' && *q != ' ')
            q++;
        name_end = q;
        if (!prom_name_ok(line, name_end))
            fail_msg("line %d: bad metric name: %s", lineno, line);
        if (*q == '{') {
            q++;
            while (*q != '}') {
                const char *ls = q;
                while (isalnum((unsigned char)*q) || *q == '_')
                    q++;
                if (q == ls || isdigit((unsigned char)*ls) || *q != '=' ||
                    q[1] != '"')
                    fail_msg("line %d: bad label: %s", lineno, line);
                q += 2;
                while (*q && *q != '"') {
                    if (*q == '\\') {
                        if (q[1] != '\\' && q[1] != '"' && q[1] != 'n')
                            fail_msg("line %d: bad escape: %s", lineno, line);
                        q++;
                    }
                    q++;
                }
                if (*q != '"')
                    fail_msg("line %d: unterminated value: %s", lineno, line);
                q++;
                if (*q == ',')
                    q++;
                else if (*q != '}')
                    fail_msg("line %d: bad label list: %s", lineno, line);
            }
            q++;
        }
        if (*q != ' ')
            fail_msg("line %d: no value: %s", lineno, line);
        char *end;
        errno = 0;
        strtod(q + 1, &end);
        if (end == q + 1 || (*end && *end != ' '))
            fail_msg("line %d: bad value: %s", lineno, line);
        bool typed = false;
        for (int i = 0; i < ntypes; i++)
            if (strlen(types[i]) == (size_t)(name_end - line) &&
                strncmp(types[i], line, (size_t)(name_end - line)) == 0)
                typed = true;
        if (!typed)
            fail_msg("line %d: sample before its TYPE: %s", lineno, line);
        samples++;
    }
    return samples;
}

/* Returns the value of the sample whose name-and-labels is exactly key;
 * fails the test when there is none. */
static double prom_value(const char *body, const char *key)
{
    size_t n = strlen(key);

    for (const char *p = body; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
        if (strncmp(p, key, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    fail_msg("no sample %s", key);
    return -1;
}

/* Scrapes /metrics, checks its syntax and content type; returns the
 * response (malloc'd). */
static char *scrape(svc *s)
{
    char *resp;

    assert_int_equal(http_get(s->mport, "/metrics", &resp), 200);
    assert_non_null(strstr(resp, "text/plain; version=0.0.4"));
    assert_true(prom_check(http_body(resp)) > 20);
    return resp;
}

/* ---- helpers on the JSON-RPC side ------------------------------------- */

/* Sends a batch of n pings; returns the error reason of the answer (or
 * NULL when the batch was served), as a static copy. */
static const char *batch_reason(testd_conn *c, int n)
{
    static char reason[32];
    char line[1024];
    size_t off = 0;
    json_t *a;

    off += (size_t)snprintf(line + off, sizeof line - off, "[");
    for (int i = 0; i < n; i++)
        off += (size_t)snprintf(line + off, sizeof line - off,
                                "%s{\"jsonrpc\":\"2.0\",\"id\":%d,"
                                "\"method\":\"ping\"}",
                                i ? "," : "", 900 + i);
    snprintf(line + off, sizeof line - off, "]");
    assert_int_equal(testd_send(c, line), 0);
    a = testd_recv(c, WAIT_MS);
    assert_non_null(a);
    if (json_is_array(a)) {
        assert_int_equal(json_array_size(a), n);
        json_decref(a);
        return NULL;
    }
    snprintf(reason, sizeof reason, "%s",
             testd_reason(a) ? testd_reason(a) : "?");
    json_decref(a);
    return reason;
}

/* ---- tests ------------------------------------------------------------ */

static void test_test_config(void **state)
{
    svc s;
    char *t;
    (void)state;

    svc_init(&s, 0);
    svc_write_conf(&s, "log_level = debug\nmax_conns = 7\n");
    const char *good[] = {chand_bin(), "--config", s.conf, "--test-config",
                          NULL};
    assert_int_equal(run_cmd(&s, good), 0);
    t = slurp(strcat(strcpy((char[160]){0}, s.dir), "/out"));
    assert_non_null(strstr(t, "configuration ok"));
    free(t);
    t = slurp(strcat(strcpy((char[160]){0}, s.dir), "/err"));
    assert_null(strstr(t, "warning"));
    free(t);

    /* A line that cannot hold a max_value value: valid, with a warning. */
    svc_write_conf(&s, "max_line = 1m\nmax_value = 1m\n");
    assert_int_equal(run_cmd(&s, good), 0);
    t = slurp(strcat(strcpy((char[160]){0}, s.dir), "/err"));
    if (!strstr(t, "warning: max-line (1048576) leaves less than 65536 bytes "
                   "above max-value (1048576)"))
        fail_msg("stderr \"%s\" lacks the max-line warning", t);
    free(t);

    /* Line 8: the six lines of svc_write_conf, then two more. */
    svc_write_conf(&s, "log_level = debug\nbogus_key = 1\n");
    assert_int_equal(run_cmd(&s, good), 1);
    t = slurp(strcat(strcpy((char[160]){0}, s.dir), "/err"));
    char want[300];
    snprintf(want, sizeof want, "%s:8: unknown key 'bogus_key'", s.conf);
    if (!strstr(t, want))
        fail_msg("stderr \"%s\" lacks \"%s\"", t, want);
    free(t);

    svc_write_conf(&s, "max_conns = lots\n");
    assert_int_equal(run_cmd(&s, good), 1);
    t = slurp(strcat(strcpy((char[160]){0}, s.dir), "/err"));
    snprintf(want, sizeof want, "%s:7: max-conns: 'lots'", s.conf);
    if (!strstr(t, want))
        fail_msg("stderr \"%s\" lacks \"%s\"", t, want);
    free(t);

    /* Without --test-config a bad file stops the daemon from starting. */
    const char *run[] = {chand_bin(), "--config", s.conf, NULL};
    assert_int_equal(run_cmd(&s, run), 1);
    assert_int_equal(access(s.port_file, F_OK), -1);

    /* A missing file, and a bad flag (usage: 2). */
    const char *missing[] = {chand_bin(), "--config", "/nonexistent/c.conf",
                             "--test-config", NULL};
    assert_int_equal(run_cmd(&s, missing), 1);
    svc_write_conf(&s, NULL);
    const char *badflag[] = {chand_bin(), "--config",      s.conf, "--port",
                             "99999",     "--test-config", NULL};
    assert_int_equal(run_cmd(&s, badflag), 2);
    const char *version[] = {chand_bin(), "--version", NULL};
    assert_int_equal(run_cmd(&s, version), 0);
    svc_cleanup(&s);
}

/* The daemon started with a config file serves on its port with the
 * file's settings, and a flag overrides the file. */
static void test_config_serves(void **state)
{
    svc s;
    testd_conn *c;
    (void)state;

    svc_init(&s, 0);
    svc_write_conf(&s, "max_batch = 2\ngomaxprocs = 1\n");
    /* max-line 1m leaves no room above max-value 1m: served, warned. */
    const char *args[] = {"--max-batch", "3", "--max-line", "1m", NULL};
    assert_int_equal(svc_start(&s, args), 0);
    c = testd_connect_port(s.port);
    assert_non_null(c);
    e2e_ok(c, 1, "ping", NULL);
    assert_null(batch_reason(c, 3)); /* flag: 3 */
    assert_string_equal(batch_reason(c, 4), "limit");
    assert_int_equal(e2e_stat_of(&s.d, "gomaxprocs"), 1); /* file */
    testd_close(c);
    assert_true(log_wait(&s, "listening on 127.0.0.1 port"));
    assert_true(log_has(&s, "warn: max-line (1048576) leaves less than"));
    assert_int_equal(svc_stop(&s), 0);
    svc_cleanup(&s);
}

static void test_sighup(void **state)
{
    svc s;
    testd_conn *c;
    char want[300];
    (void)state;

    svc_init(&s, 0);
    svc_write_conf(&s, "log_level = info\ngomaxprocs = 1\nmax_batch = 10\n");
    assert_int_equal(svc_start(&s, NULL), 0);
    c = testd_connect_port(s.port);
    assert_non_null(c);
    e2e_ok(c, 1, "ping", NULL);
    /* info: the connection is logged, the request is not. */
    assert_true(log_wait(&s, "info: session 1 opened from 127.0.0.1"));
    assert_false(log_has(&s, "debug:"));
    assert_null(batch_reason(c, 3));

    svc_write_conf(&s, "log_level = debug\ngomaxprocs = 2\nmax_batch = 2\n");
    assert_int_equal(kill(s.d.pid, SIGHUP), 0);
    assert_true(log_wait(&s, "reload: log-level info -> debug"));
    assert_true(log_wait(&s, "reload: gomaxprocs 1 -> 2"));
    assert_true(log_wait(&s, "reload: max-batch 10 -> 2"));
    e2e_ok(c, 4242, "ping", NULL);
    assert_true(log_wait(&s, "debug: session 1: {\"jsonrpc\":\"2.0\","
                             "\"id\":4242,\"method\":\"ping\""));
    assert_int_equal(e2e_stat_of(&s.d, "gomaxprocs"), 2);
    assert_string_equal(batch_reason(c, 3), "limit");

    /* A bad file is logged, with file:line, and the old settings stay. */
    svc_write_conf(&s, "log_level = info\nmax_batch = 100\n"
                       "log_level = loud\n");
    assert_int_equal(kill(s.d.pid, SIGHUP), 0);
    snprintf(want, sizeof want,
             "reload failed, keeping the old settings: %s:9: log-level: "
             "'loud'",
             s.conf);
    assert_true(log_wait(&s, want));
    e2e_ok(c, 4343, "ping", NULL);
    assert_true(log_wait(&s, "\"id\":4343,\"method\":\"ping\"")); /* debug */
    assert_string_equal(batch_reason(c, 3), "limit");
    assert_int_equal(e2e_stat_of(&s.d, "gomaxprocs"), 2);

    /* A max-line with no room for a max-value value: applied, warned. */
    svc_write_conf(&s, "log_level = info\nmax_line = 1m\n");
    assert_int_equal(kill(s.d.pid, SIGHUP), 0);
    assert_true(log_wait(&s, "warn: max-line (1048576) leaves less than"));
    testd_close(c);
    assert_int_equal(svc_stop(&s), 0);
    svc_cleanup(&s);
}

/* Reads answers on c until one with id arrives; returns it. */
static json_t *answer_of(testd_conn *c, int64_t id)
{
    json_t *a = testd_wait_id(c, id, WAIT_MS);
    assert_non_null(a);
    return a;
}

static void test_sigterm_parked(void **state)
{
    svc s;
    testd_conn *a, *b, *h, *d;
    (void)state;

    svc_init(&s, 0);
    svc_write_conf(&s, "shutdown_grace_ms = 10000\n");
    assert_int_equal(svc_start(&s, NULL), 0);
    a = testd_connect_port(s.port);
    b = testd_connect_port(s.port);
    h = testd_connect_port(s.port);
    d = testd_connect_port(s.port);
    assert_true(a && b && h && d);
    e2e_ok(a, 1, "make", "{\"name\":\"q\"}");
    e2e_ok(h, 1, "mutex.lock", "{\"name\":\"mx\"}");
    /* Three requests that wait forever. */
    assert_int_equal(testd_send(a, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":"
                                   "\"recv\",\"params\":{\"name\":\"q\"}}"),
                     0);
    assert_int_equal(testd_send(b, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":"
                                   "\"mutex.lock\",\"params\":{\"name\":"
                                   "\"mx\"}}"),
                     0);
    assert_int_equal(testd_send(d, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":"
                                   "\"select\",\"params\":{\"cases\":[{"
                                   "\"recv\":\"q\"}]}}"),
                     0);
    for (int64_t t0 = testd_now_ms();
         e2e_stat_of(&s.d, "waiters") < 3 && testd_now_ms() - t0 < WAIT_MS;)
        testd_sleep_ms(20);
    assert_true(e2e_stat_of(&s.d, "waiters") >= 3);

    assert_int_equal(kill(s.d.pid, SIGTERM), 0);
    json_t *ra = answer_of(a, 2), *rb = answer_of(b, 3), *rd = answer_of(d, 4);
    assert_string_equal(testd_reason(ra), "cancelled");
    assert_string_equal(testd_reason(rb), "cancelled");
    assert_string_equal(testd_reason(rd), "cancelled");
    json_decref(ra);
    json_decref(rb);
    json_decref(rd);
    assert_int_equal(svc_wait_exit(&s), 0);
    assert_true(log_has(&s, "draining"));
    testd_close(a);
    testd_close(b);
    testd_close(h);
    testd_close(d);
    svc_cleanup(&s);
}

static void test_metrics(void **state)
{
    svc s;
    testd_conn *c;
    char *r0, *r1, *resp;
    const char *b0, *b1;
    (void)state;

    svc_init(&s, 0);
    svc_write_conf(&s, NULL);
    assert_int_equal(svc_start(&s, NULL), 0);

    assert_int_equal(http_get(s.mport, "/healthz", &resp), 200);
    assert_string_equal(http_body(resp), "ok\n");
    free(resp);
    assert_int_equal(http_get(s.mport, "/readyz", &resp), 200);
    assert_string_equal(http_body(resp), "ready\n");
    free(resp);
    assert_int_equal(http_get(s.mport, "/nothing", &resp), 404);
    free(resp);

    r0 = scrape(&s);
    b0 = http_body(r0);
    assert_true(prom_value(b0, "chand_gomaxprocs") >= 1);
    assert_true(prom_value(b0, "chand_threads") >= 0); /* lazily made */
    assert_true(prom_value(b0, "chand_goroutines") >= 0);
    assert_true(prom_value(b0, "chand_waiters") == 0);
    /* security (issue 17): every family present, nothing counted yet */
    assert_true(prom_value(b0, "chand_users") == 0);
    assert_true(prom_value(b0, "chand_auth_total{result=\"ok\"}") == 0);
    assert_true(prom_value(b0, "chand_auth_total{result=\"failed\"}") == 0);
    assert_true(prom_value(b0, "chand_auth_delayed_total") == 0);
    assert_true(prom_value(b0, "chand_refused_total{reason=\"denied\"}") == 0);
    assert_true(prom_value(b0, "chand_refused_total{reason=\"limit\"}") == 0);
    assert_true(prom_value(b0, "chand_tls_handshake_failures_total") == 0);
    assert_true(prom_value(b0, "chand_auth_hashing") == 0);
    assert_true(prom_value(b0, "chand_auth_hash_waiting") == 0);
    assert_true(prom_value(b0, "chand_sessions") == 0);
    assert_true(prom_value(b0, "chand_objects{type=\"chan\"}") == 0);

    c = testd_connect_port(s.port);
    assert_non_null(c);
    for (int i = 0; i < 10; i++)
        e2e_ok(c, 10 + i, "ping", NULL);
    e2e_ok(c, 30, "make", "{\"name\":\"m1\",\"cap\":1}");
    json_t *a = e2e_call(c, 31, "drop", "{\"name\":\"no-such-object\"}");
    assert_string_equal(testd_reason(a), "not_found");
    json_decref(a);
    assert_int_equal(testd_send(c, "{not json"), 0);
    a = testd_recv(c, WAIT_MS);
    assert_non_null(a);
    json_decref(a);

    r1 = scrape(&s);
    b1 = http_body(r1);
    assert_true(prom_value(b1, "chand_sessions") == 1);
    assert_true(prom_value(b1, "chand_objects{type=\"chan\"}") == 1);
    assert_true(
        prom_value(b1, "chand_requests_total{method=\"ping\",result=\"ok\"}") ==
        prom_value(b0, "chand_requests_total{method=\"ping\",result=\"ok\"}") +
            10);
    assert_true(
        prom_value(b1, "chand_requests_total{method=\"make\",result=\"ok\"}") ==
        1);
    assert_true(
        prom_value(
            b1, "chand_requests_total{method=\"drop\",result=\"error\"}") == 1);
    assert_true(
        prom_value(b1, "chand_requests_total{method=\"drop\",result=\"ok\"}") ==
        0);
    assert_true(
        prom_value(b1, "chand_requests_total{method=\"\",result=\"error\"}") ==
        1);
    /* 12 request lines of 40+ bytes and the garbage, 12 answers. */
    assert_true(prom_value(b1, "chand_bytes_in_total") >=
                prom_value(b0, "chand_bytes_in_total") + 12 * 40);
    assert_true(prom_value(b1, "chand_bytes_out_total") >=
                prom_value(b0, "chand_bytes_out_total") + 12 * 30);
    free(r0);
    free(r1);
    /* Waiters have one definition: a receive parked on the empty m1 is
     * counted by runtime.stats, runtime.dump and /metrics alike. */
    assert_int_equal(testd_send(c, "{\"jsonrpc\":\"2.0\",\"id\":40,"
                                   "\"method\":\"recv\",\"params\":{"
                                   "\"name\":\"m1\"}}"),
                     0);
    e2e_wait_stat(&s.d, "waiters", 1);
    r1 = scrape(&s);
    assert_true(prom_value(http_body(r1), "chand_waiters") == 1);
    free(r1);
    {
        testd_conn *d = testd_connect_port(s.port);
        json_t *a2;
        assert_non_null(d);
        a2 = e2e_call(d, 1, "runtime.dump", NULL);
        assert_int_equal(
            json_integer_value(json_object_get(testd_result(a2), "waiters")),
            1);
        json_decref(a2);
        testd_close(d);
    }
    testd_close(c);
    assert_int_equal(svc_stop(&s), 0);
    svc_cleanup(&s);
}

/* Returns a socket connected to 127.0.0.1:port. */
static int tcp_connect(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

/* Returns true if the peer closed fd within ms (nothing is sent on it). */
static bool fd_wait_eof(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char b[64];

    return poll(&p, 1, ms) == 1 && read(fd, b, sizeof b) == 0;
}

/* Metrics connections count in max_conns.  max_conns 6, two client
 * sessions: of six idle metrics connections the first four are kept and
 * the last two closed; a third client is refused; once the four are
 * served and gone, clients connect again. */
static void test_metrics_max_conns(void **state)
{
    enum { NM = 6, KEPT = 4 };
    svc s;
    testd_conn *c0, *c1, *c2 = NULL;
    int m[NM];
    char *line, req[] = "GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n";
    int64_t t0;
    (void)state;

    svc_init(&s, 0);
    svc_write_conf(&s, "max_conns = 6\n");
    assert_int_equal(svc_start(&s, NULL), 0);
    c0 = testd_connect_port(s.port);
    c1 = testd_connect_port(s.port);
    e2e_ok(c0, 1, "ping", NULL);
    e2e_ok(c1, 1, "ping", NULL);
    for (int i = 0; i < NM; i++)
        m[i] = tcp_connect(s.mport);
    for (int i = KEPT; i < NM; i++)
        assert_true(fd_wait_eof(m[i], WAIT_MS));
    line = NULL;
    c2 = testd_connect_port(s.port);
    if (c2)
        line = testd_recv_line(c2, WAIT_MS);
    assert_non_null(line);
    assert_non_null(strstr(line, "too many connections"));
    free(line);
    testd_close(c2);
    /* The kept ones are served, then closed (HTTP/1.0). */
    for (int i = 0; i < KEPT; i++) {
        char resp[512];
        ssize_t n, got = 0;
        assert_int_equal(write(m[i], req, strlen(req)), (ssize_t)strlen(req));
        while ((n = read(m[i], resp + got, sizeof resp - 1 - (size_t)got)) > 0)
            got += n;
        resp[got] = '\0';
        assert_non_null(strstr(resp, " 200 "));
    }
    for (int i = 0; i < NM; i++)
        close(m[i]);
    for (t0 = testd_now_ms();; testd_sleep_ms(10)) {
        json_t *ans;
        assert_true(testd_now_ms() - t0 < WAIT_MS);
        c2 = testd_connect_port(s.port);
        if (!c2)
            continue;
        ans = testd_call(c2, 1, "ping", NULL, WAIT_MS);
        if (ans && testd_result(ans)) {
            json_decref(ans);
            break;
        }
        json_decref(ans);
        testd_close(c2);
    }
    testd_close(c2);
    testd_close(c1);
    testd_close(c0);
    assert_int_equal(svc_stop(&s), 0);
    svc_cleanup(&s);
}

/* Connects with a tiny receive window, so that answers pile up in the
 * daemon's output buffer while the test does not read. */
static int connect_slow(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), small = 4096;

    assert_true(fd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* Before connect: the window is negotiated at the handshake. */
    assert_int_equal(
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

/* While a drain waits for answers to reach a client that does not read,
 * /readyz says 503 draining, /healthz still 200, chand_draining is 1;
 * once that client goes, the daemon exits 0 well before the grace. */
static void test_readyz_draining(void **state)
{
    enum { NVAL = 10, VLEN = 1000 * 1000 };
    svc s;
    testd_conn *c;
    char *line, *resp;
    size_t off;
    int slow;
    int64_t t0;
    (void)state;

    svc_init(&s, 0);
    svc_write_conf(&s, "max_line = 8m\nmax_value = 4m\nmax_outbuf = 64m\n"
                       "shutdown_grace_ms = 60000\n");
    assert_int_equal(svc_start(&s, NULL), 0);
    c = testd_connect_port(s.port);
    assert_non_null(c);
    e2e_ok(c, 1, "make", "{\"name\":\"big\",\"cap\":10}");
    line = malloc(VLEN + 200);
    assert_non_null(line);
    for (int i = 0; i < NVAL; i++) {
        off = (size_t)sprintf(line,
                              "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":"
                              "\"send\",\"params\":{\"name\":\"big\","
                              "\"value\":\"",
                              100 + i);
        memset(line + off, 'x', VLEN);
        off += VLEN;
        strcpy(line + off, "\"}}");
        assert_int_equal(testd_send(c, line), 0);
        json_t *a = testd_wait_id(c, 100 + i, WAIT_MS);
        assert_non_null(a);
        assert_non_null(testd_result(a));
        json_decref(a);
    }
    free(line);
    /* 10 MB of answers to a reader that never reads. */
    slow = connect_slow(s.port);
    for (int i = 0; i < NVAL; i++) {
        char req[128];
        int n = snprintf(req, sizeof req,
                         "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"recv\","
                         "\"params\":{\"name\":\"big\"}}\n",
                         i);
        assert_int_equal(write(slow, req, (size_t)n), n);
    }
    for (t0 = testd_now_ms();
         testd_now_ms() - t0 < WAIT_MS &&
         e2e_stat_of(&s.d, "output_buffer_bytes") < 1000 * 1000;)
        testd_sleep_ms(20);
    assert_true(e2e_stat_of(&s.d, "output_buffer_bytes") >= 1000 * 1000);

    assert_int_equal(http_get(s.mport, "/readyz", &resp), 200);
    free(resp);
    assert_int_equal(kill(s.d.pid, SIGTERM), 0);
    assert_true(log_wait(&s, "draining"));
    assert_int_equal(http_get(s.mport, "/readyz", &resp), 503);
    assert_string_equal(http_body(resp), "draining\n");
    free(resp);
    assert_int_equal(http_get(s.mport, "/healthz", &resp), 200);
    free(resp);
    resp = scrape(&s);
    assert_true(prom_value(http_body(resp), "chand_draining") == 1);
    free(resp);
    assert_true(testd_running(&s.d)); /* still draining */

    close(slow);
    t0 = testd_now_ms();
    assert_int_equal(svc_wait_exit(&s), 0);
    assert_true(testd_now_ms() - t0 < 50000); /* not the 60 s grace */
    testd_close(c);
    svc_cleanup(&s);
}

/* READY=1 once listening, RELOADING=1 + MONOTONIC_USEC then READY=1 on
 * SIGHUP, STOPPING=1 on SIGTERM; path and abstract NOTIFY_SOCKETs. */
static void test_notify(void **state)
{
    char msg[512];
    (void)state;

    for (int kind = 1; kind <= 2; kind++) {
        svc s;
        testd_conn *c;

        svc_init(&s, kind);
        svc_write_conf(&s, NULL);
        assert_int_equal(svc_start(&s, NULL), 0);
        assert_true(notify_recv(&s, msg, sizeof msg) > 0);
        if (!has_line(msg, "READY=1"))
            fail_msg("first datagram: %s", msg);
        /* Ready means serving. */
        c = testd_connect_port(s.port);
        assert_non_null(c);
        e2e_ok(c, 1, "ping", NULL);
        testd_close(c);

        assert_int_equal(kill(s.d.pid, SIGHUP), 0);
        assert_true(notify_recv(&s, msg, sizeof msg) > 0);
        if (!has_line(msg, "RELOADING=1") || !strstr(msg, "MONOTONIC_USEC="))
            fail_msg("reload datagram: %s", msg);
        unsigned long long usec = 0;
        assert_int_equal(sscanf(strstr(msg, "MONOTONIC_USEC="),
                                "MONOTONIC_USEC=%llu", &usec),
                         1);
        assert_true(usec > 0);
        assert_true(notify_recv(&s, msg, sizeof msg) > 0);
        if (!has_line(msg, "READY=1"))
            fail_msg("after reload: %s", msg);

        assert_int_equal(kill(s.d.pid, SIGTERM), 0);
        assert_true(notify_recv(&s, msg, sizeof msg) > 0);
        if (!has_line(msg, "STOPPING=1"))
            fail_msg("stop datagram: %s", msg);
        assert_int_equal(svc_wait_exit(&s), 0);
        svc_cleanup(&s);
    }
}

/* systemd's socket activation: the listening socket arrives as fd 3 with
 * LISTEN_FDS=1 and LISTEN_PID=the daemon; bind/port are not used (here
 * they could not work: 192.0.2.1 is not a local address). */
static void test_socket_activation(void **state)
{
    static const char *const args[] = {
        "--bind", "192.0.2.1", "--port", "2426", "--log-level", "warn", NULL};
    struct sockaddr_in sa = {.sin_family = AF_INET};
    testd d;
    int lfd;
    testd_conn *c;
    (void)state;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 16), 0);
    assert_int_equal(testd_start_opts(&d, &(testd_opts){.args = args,
                                                        .log = "/dev/null",
                                                        .listen_fd = lfd}),
                     0);
    close(lfd);
    c = testd_connect_port(d.port);
    assert_non_null(c);
    e2e_ok(c, 1, "ping", NULL);
    testd_close(c);
    assert_int_equal(testd_stop(&d), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_test_config, teardown),
        cmocka_unit_test_teardown(test_config_serves, teardown),
        cmocka_unit_test_teardown(test_sighup, teardown),
        cmocka_unit_test_teardown(test_sigterm_parked, teardown),
        cmocka_unit_test_teardown(test_metrics, teardown),
        cmocka_unit_test_teardown(test_metrics_max_conns, teardown),
        cmocka_unit_test_teardown(test_readyz_draining, teardown),
        cmocka_unit_test_teardown(test_notify, teardown),
        cmocka_unit_test_teardown(test_socket_activation, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests_name("service", tests, NULL, NULL);
}
