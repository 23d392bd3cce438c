/*
 * test_client.c - libchand against a real chand daemon: every blocking
 * call, errors with their reasons, 10k pipelined asynchronous requests on
 * one connection with answers out of order, and connection loss (the
 * daemon killed under blocked and in-flight calls).
 *
 * Each group starts its own daemon on 127.0.0.1 and a free port (port 0
 * and --port-file) and stops it by pid.  Timing asserts only check lower
 * bounds or generous upper ones: the machine is shared.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "chand.h"

#include "../common/e2e.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* A daemon per test group (tests/common/e2e.h)                       */
/* ------------------------------------------------------------------ */

/* e2e_dial, with the handle itself checked as well as the code. */
static chand_conn *dial(void)
{
    chand_conn *c = e2e_dial();

    assert_non_null(c);
    return c;
}

/* Asserts that the last call failed with code and reason, and that the
 * error says the same code as the call returned. */
static void assert_error(chand_conn *c, int rc, int code, const char *reason)
{
    e2e_expect_rc(c, rc, code, NULL);
    assert_int_equal(chand_last_error(c)->code, code);
    if (reason)
        assert_string_equal(chand_last_error(c)->reason, reason);
}

/* Fails clearly when the daemon does not serve a method (rc is the first
 * call's result), rather than with a puzzling code mismatch later. */
static int require_method(chand_conn *c, int rc, const char *method)
{
    if (rc == CHAND_EINVALID && chand_last_error(c)->rpc_code == -32601)
        fail_msg("the daemon lacks %s", method);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Without a daemon                                                   */
/* ------------------------------------------------------------------ */

static void test_parse_address(void **state)
{
    char *h;
    int p;

    (void)state;
    assert_int_equal(chand_parse_address("example.org:99", &h, &p), 0);
    assert_string_equal(h, "example.org");
    assert_int_equal(p, 99);
    free(h);
    assert_int_equal(chand_parse_address("[::1]:7", &h, &p), 0);
    assert_string_equal(h, "::1");
    assert_int_equal(p, 7);
    free(h);
    assert_int_equal(chand_parse_address("::1", &h, &p), 0);
    assert_string_equal(h, "::1");
    assert_int_equal(p, CHAND_DEFAULT_PORT);
    free(h);
    assert_int_equal(chand_parse_address(":5", &h, &p), 0);
    assert_string_equal(h, CHAND_DEFAULT_HOST);
    assert_int_equal(p, 5);
    free(h);
    assert_int_equal(chand_parse_address("h:0", &h, &p), CHAND_EARG);
    assert_int_equal(chand_parse_address("h:x", &h, &p), CHAND_EARG);
    assert_int_equal(chand_parse_address("[::1", &h, &p), CHAND_EARG);
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(chand_strerror(0), "success");
    assert_string_equal(chand_strerror(CHAND_ECLOSED), "channel closed");
    assert_int_equal(chand_code_from_reason("timeout"), CHAND_ETIMEOUT);
    assert_int_equal(chand_code_from_reason("negative_counter"),
                     CHAND_ENEGATIVE);
    assert_int_equal(chand_code_from_reason("nonsense"), CHAND_ESERVER);
}

static void test_connect_refused(void **state)
{
    chand_conn *c = (chand_conn *)1;
    chand_error err;
    int rc;

    (void)state;
    /* Port 1 on loopback: nothing listens there. */
    rc = chand_connect("127.0.0.1", 1, 2000, &c, &err);
    assert_int_equal(rc, CHAND_ECONNECT);
    assert_null(c);
    assert_int_equal(err.code, CHAND_ECONNECT);
    assert_non_null(strstr(err.message, "127.0.0.1"));
    rc = chand_connect("no-such-host.invalid", 1, 2000, &c, &err);
    assert_int_equal(rc, CHAND_ECONNECT);
}

/* A TCP listener that never accepts nor answers: the kernel completes
 * connections into its backlog.  Returns the fd, with the port in *port. */
static int silent_listener(int *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

static struct event_base *silent_base;

static void silent_cb(chand_async *a, int rc, json_t *res,
                      const chand_error *err, void *arg)
{
    int *out = arg;

    (void)a;
    (void)res;
    (void)err;
    *out = rc;
    event_base_loopbreak(silent_base);
}

/* A server that never answers: chand_connect gives up at its timeout,
 * and a call gives up by itself, the grace period after the timeout it
 * asked the server to enforce. */
static void test_silent_server(void **state)
{
    struct event_base *base = event_base_new();
    struct timeval limit = {30, 0};
    chand_conn *c = (chand_conn *)1;
    chand_async *a;
    chand_error err;
    int port, fd = silent_listener(&port), rc = 1;
    int64_t t0 = testd_now_ms();

    (void)state;
    silent_base = base;
    assert_int_equal(chand_connect("127.0.0.1", port, 200, &c, &err),
                     CHAND_ECONNECT);
    assert_null(c);
    assert_non_null(strstr(err.message, "hello"));
    /* The connect timeout bounds hello too: no grace period on top. */
    assert_true(testd_now_ms() - t0 >= 200 - 50);
    assert_true(testd_now_ms() - t0 < 200 + CHAND_GRACE_MS);

    assert_int_equal(
        chand_async_connect(base, "127.0.0.1", port, 5000, NULL, NULL, &a), 0);
    t0 = testd_now_ms();
    assert_int_equal(chand_async_call(a, "recv",
                                      json_pack("{s:s}", "name", "x"), 0,
                                      silent_cb, &rc),
                     0);
    event_base_loopexit(base, &limit);
    event_base_dispatch(base);
    assert_int_equal(rc, CHAND_ETIMEOUT);
    assert_true(testd_now_ms() - t0 >= CHAND_GRACE_MS - 50);
    assert_int_equal(chand_async_pending(a), 0);
    chand_async_free(a);
    event_base_free(base);
    close(fd);
}

/* ------------------------------------------------------------------ */
/* Blocking API                                                       */
/* ------------------------------------------------------------------ */

static void test_session(void **state)
{
    chand_conn *c = dial();
    json_t *res = NULL;

    (void)state;
    assert_true(chand_connected(c));
    assert_true(strlen(chand_session(c)) > 0);
    assert_non_null(strstr(chand_server(c), "chand"));
    assert_int_equal(chand_ping(c), 0);
    assert_int_equal(chand_hello(c, &res), 0);
    assert_int_equal(json_integer_value(json_object_get(res, "version")), 1);
    json_decref(res);
    /* localhost resolves to several addresses; one of them answers. */
    e2e_hang_up(c);
    {
        chand_conn *c2 = NULL;
        assert_int_equal(chand_connect("localhost", D.port, 5000, &c2, NULL),
                         0);
        assert_int_equal(chand_ping(c2), 0);
        chand_close_conn(c2);
    }
}

static void test_generic_call(void **state)
{
    chand_conn *c = dial();
    json_t *res = NULL, *p;
    int rc;

    (void)state;
    rc = chand_call(c, "no.such.method", NULL, CHAND_FOREVER, &res);
    assert_error(c, rc, CHAND_EINVALID, "invalid");
    assert_int_equal(chand_last_error(c)->rpc_code, -32601);
    assert_null(res);
    p = json_pack("{s:s, s:i}", "name", "gc", "cap", 2);
    assert_int_equal(chand_call(c, "make", p, CHAND_FOREVER, &res), 0);
    json_decref(p);
    assert_true(json_is_object(res));
    json_decref(res);
    /* Unknown parameters are refused by the server, not dropped. */
    p = json_pack("{s:s, s:i}", "name", "gc", "bogus", 1);
    rc = chand_call(c, "len", p, CHAND_FOREVER, NULL);
    json_decref(p);
    assert_error(c, rc, CHAND_EINVALID, "invalid");
    /* The connection survives errors. */
    assert_int_equal(chand_ping(c), 0);
    assert_int_equal(chand_last_error(c)->code, 0);
    chand_drop(c, "gc");
    e2e_hang_up(c);
}

static void test_channels(void **state)
{
    chand_conn *c = dial();
    json_t *v = NULL, *objs = NULL;
    char *s = NULL;
    int64_t len = -1, cap = -1, t0;
    int rc;

    (void)state;
    assert_int_equal(chand_make(c, "t.ch", 3, NULL), 0);
    /* Making it again the same way is fine; differently is "exists". */
    assert_int_equal(chand_make(c, "t.ch", 3, NULL), 0);
    assert_error(c, chand_make(c, "t.ch", 5, NULL), CHAND_EEXISTS, "exists");
    assert_int_equal(chand_send_str(c, "t.ch", "a", 1000), 0);
    v = json_pack("{s:i}", "n", 42);
    assert_int_equal(chand_send(c, "t.ch", v, CHAND_FOREVER), 0);
    json_decref(v);
    assert_int_equal(chand_len(c, "t.ch", &len, &cap), 0);
    assert_int_equal(len, 2);
    assert_int_equal(cap, 3);
    assert_int_equal(chand_list(c, "t.", &objs), 0);
    assert_true(json_is_array(objs));
    assert_int_equal(json_array_size(objs), 1);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(objs, 0), "name")),
        "t.ch");
    json_decref(objs);

    assert_int_equal(chand_recv_str(c, "t.ch", 1000, &s), 1);
    assert_string_equal(s, "a");
    free(s);
    assert_int_equal(chand_recv(c, "t.ch", 1000, &v), 1);
    assert_int_equal(json_integer_value(json_object_get(v, "n")), 42);
    json_decref(v);

    /* Empty: timeout_ms 0 does not wait, N waits at least N ms. */
    rc = chand_recv(c, "t.ch", 0, &v);
    assert_error(c, rc, CHAND_ETIMEOUT, "timeout");
    assert_null(v);
    t0 = testd_now_ms();
    rc = chand_recv(c, "t.ch", 150, &v);
    assert_error(c, rc, CHAND_ETIMEOUT, "timeout");
    assert_true(testd_now_ms() - t0 >= 140);
    assert_true(chand_connected(c)); /* a server timeout keeps the link */

    /* Closed: buffered values drain first, then ok=false. */
    assert_int_equal(chand_send_str(c, "t.ch", "last", 1000), 0);
    assert_int_equal(chand_close(c, "t.ch"), 0);
    rc = chand_send_str(c, "t.ch", "x", 1000);
    assert_error(c, rc, CHAND_ECLOSED, "closed");
    assert_string_equal(chand_last_error(c)->message, "send on closed channel");
    assert_error(c, chand_close(c, "t.ch"), CHAND_ECLOSED, "closed");
    assert_int_equal(chand_recv_str(c, "t.ch", 1000, &s), 1);
    assert_string_equal(s, "last");
    free(s);
    assert_int_equal(chand_recv(c, "t.ch", 1000, &v), 0);
    assert_true(json_is_null(v));
    json_decref(v);

    assert_int_equal(chand_drop(c, "t.ch"), 0);
    assert_error(c, chand_recv(c, "t.ch", 0, &v), CHAND_ENOTFOUND, "not_found");

    /* Typed channels. */
    assert_int_equal(chand_make(c, "t.str", 1, "string"), 0);
    v = json_integer(1);
    assert_error(c, chand_send(c, "t.str", v, 0), CHAND_EWRONGTYPE,
                 "wrong_type");
    json_decref(v);
    chand_drop(c, "t.str");
    /* A line over the server's limit: too_large, and the server hangs up
     * (it cannot find the next line), which the next call reports. */
    {
        chand_conn *big = dial();
        size_t n = 16 * 1024 * 1024; /* more than the socket buffers */
        char *s2 = malloc(n + 1);

        assert_non_null(s2);
        memset(s2, 'x', n);
        s2[n] = '\0';
        assert_error(big, chand_send_str(big, "t.str", s2, 1000),
                     CHAND_ETOOLARGE, "too_large");
        free(s2);
        assert_int_equal(chand_ping(big), CHAND_ECONN);
        e2e_hang_up(big);
    }
    /* Bad arguments never reach the server. */
    assert_int_equal(chand_send(c, "t.ch", NULL, 0), CHAND_EARG);
    assert_int_equal(chand_send_str(c, NULL, "x", 0), CHAND_EARG);
    e2e_hang_up(c);
}

/* Receives one value on its own connection (for unbuffered hand-offs). */
typedef struct recv_job {
    const char *name;
    int rc;
    json_t *value;
} recv_job;

static void *recv_thread(void *arg)
{
    recv_job *j = arg;
    chand_conn *c = dial();

    j->rc = chand_recv(c, j->name, 10000, &j->value);
    e2e_hang_up(c);
    return NULL;
}

static void test_unbuffered_and_select(void **state)
{
    chand_conn *c = dial();
    recv_job j = {"t.unbuf", 0, NULL};
    chand_case cases[2];
    json_t *v = NULL, *one = json_integer(1);
    pthread_t th;
    bool ok = false;
    int index = -7, rc;

    (void)state;
    assert_int_equal(chand_make(c, "t.unbuf", 0, NULL), 0);
    assert_int_equal(chand_make(c, "t.sel", 1, NULL), 0);
    /* Nobody receives: an unbuffered send times out. */
    assert_error(c, chand_send_str(c, "t.unbuf", "x", 50), CHAND_ETIMEOUT,
                 "timeout");
    assert_int_equal(pthread_create(&th, NULL, recv_thread, &j), 0);
    assert_int_equal(chand_send_str(c, "t.unbuf", "hand", 10000), 0);
    pthread_join(th, NULL);
    assert_int_equal(j.rc, 1);
    assert_string_equal(json_string_value(j.value), "hand");
    json_decref(j.value);

    cases[0] = (chand_case){CHAND_RECV, "t.sel", NULL};
    cases[1] = (chand_case){CHAND_SEND, "t.unbuf", one};
    /* Nothing ready: default. */
    assert_int_equal(
        chand_select(c, cases, 2, true, CHAND_FOREVER, &index, &v, &ok), 0);
    assert_int_equal(index, -1);
    assert_null(v);
    /* Nothing ready and no default: the timeout. */
    rc = chand_select(c, cases, 2, false, 100, &index, &v, &ok);
    assert_error(c, rc, CHAND_ETIMEOUT, "timeout");
    /* The receive case ready. */
    assert_int_equal(chand_send_str(c, "t.sel", "s", 0), 0);
    assert_int_equal(chand_select(c, cases, 2, false, 1000, &index, &v, &ok),
                     0);
    assert_int_equal(index, 0);
    assert_true(ok);
    assert_string_equal(json_string_value(v), "s");
    json_decref(v);
    /* The send case ready: its buffer has room. */
    cases[1].name = "t.sel";
    assert_int_equal(
        chand_select(c, cases + 1, 1, false, 1000, &index, &v, &ok), 0);
    assert_int_equal(index, 0);
    assert_null(v);
    /* A closed channel's receive case: ok false. */
    assert_int_equal(chand_recv(c, "t.sel", 0, &v), 1);
    json_decref(v);
    assert_int_equal(chand_close(c, "t.sel"), 0);
    assert_int_equal(chand_select(c, cases, 1, false, 1000, &index, &v, &ok),
                     0);
    assert_int_equal(index, 0);
    assert_false(ok);
    json_decref(v);
    json_decref(one);
    chand_drop(c, "t.sel");
    chand_drop(c, "t.unbuf");
    e2e_hang_up(c);
}

static void test_mutex(void **state)
{
    chand_conn *a = dial(), *b = dial();
    int64_t t1 = 0, t2 = 0, t3 = 0;
    bool dead = true;
    int rc;

    (void)state;
    rc = chand_mutex_lock(a, "t.mu", 1000, -1, &t1, &dead);
    require_method(a, rc, "mutex.lock");
    assert_int_equal(rc, 0);
    assert_true(t1 > 0);
    assert_false(dead);
    rc = chand_mutex_lock(b, "t.mu", 100, -1, &t2, NULL);
    assert_error(b, rc, CHAND_ETIMEOUT, "timeout");
    assert_int_equal(chand_mutex_unlock(a, "t.mu", -1), 0);
    assert_error(a, chand_mutex_unlock(a, "t.mu", -1), CHAND_ENOTLOCKED,
                 "not_locked");
    /* Tokens grow. */
    assert_int_equal(chand_mutex_lock(b, "t.mu", 1000, -1, &t2, NULL), 0);
    assert_true(t2 > t1);
    /* The holder's session ends: the lock is released, owner_dead. */
    e2e_hang_up(b);
    assert_int_equal(chand_mutex_lock(a, "t.mu", 5000, -1, &t3, &dead), 0);
    assert_true(t3 > t2);
    assert_true(dead);
    /* A stale token does not unlock. */
    assert_error(a, chand_mutex_unlock(a, "t.mu", t1), CHAND_ENOTLOCKED,
                 "not_locked");
    assert_int_equal(chand_mutex_unlock(a, "t.mu", t3), 0);

    /* A lease outlives the session, and its token unlocks it. */
    b = dial();
    assert_int_equal(chand_mutex_lock(b, "t.mu", 1000, 60000, &t1, NULL), 0);
    e2e_hang_up(b);
    rc = chand_mutex_lock(a, "t.mu", 100, -1, &t2, NULL);
    assert_error(a, rc, CHAND_ETIMEOUT, "timeout");
    assert_int_equal(chand_mutex_unlock(a, "t.mu", t1), 0);
    assert_int_equal(chand_mutex_lock(a, "t.mu", 1000, -1, &t2, NULL), 0);
    assert_int_equal(chand_mutex_unlock(a, "t.mu", -1), 0);
    e2e_hang_up(a);
}

static void test_rwmutex(void **state)
{
    chand_conn *a = dial(), *b = dial(), *c = dial();
    int64_t r1, r2, w;
    int rc;

    (void)state;
    rc = chand_rwmutex_rlock(a, "t.rw", 1000, -1, &r1, NULL);
    require_method(a, rc, "rwmutex.rlock");
    assert_int_equal(rc, 0);
    assert_int_equal(chand_rwmutex_rlock(b, "t.rw", 1000, -1, &r2, NULL), 0);
    assert_true(r1 != r2);
    /* A writer waits for both readers (a reader asking for the write lock
     * would wait on itself: the server calls that a deadlock). */
    rc = chand_rwmutex_lock(c, "t.rw", 100, -1, &w, NULL);
    assert_error(c, rc, CHAND_ETIMEOUT, "timeout");
    rc = chand_rwmutex_lock(a, "t.rw", 100, -1, &w, NULL);
    assert_error(a, rc, CHAND_EDEADLOCK, "deadlock");
    assert_int_equal(chand_rwmutex_runlock(a, "t.rw", -1), 0);
    assert_int_equal(chand_rwmutex_runlock(b, "t.rw", -1), 0);
    assert_int_equal(chand_rwmutex_lock(a, "t.rw", 1000, -1, &w, NULL), 0);
    rc = chand_rwmutex_rlock(b, "t.rw", 100, -1, &r2, NULL);
    assert_error(b, rc, CHAND_ETIMEOUT, "timeout");
    assert_int_equal(chand_rwmutex_unlock(a, "t.rw", -1), 0);
    assert_error(a, chand_rwmutex_unlock(a, "t.rw", -1), CHAND_ENOTLOCKED,
                 "not_locked");
    e2e_hang_up(a);
    e2e_hang_up(b);
    e2e_hang_up(c);
}

static void test_wg_once(void **state)
{
    chand_conn *a = dial(), *b = dial();
    int64_t count = -1;
    int rc;

    (void)state;
    rc = chand_wg_add(a, "t.wg", 2, &count);
    require_method(a, rc, "wg.add");
    require_method(a, chand_once_do(a, "t.probe", 0), "once.do");
    assert_int_equal(rc, 0);
    assert_int_equal(count, 2);
    rc = chand_wg_wait(b, "t.wg", 100);
    assert_error(b, rc, CHAND_ETIMEOUT, "timeout");
    assert_int_equal(chand_wg_done(a, "t.wg", &count), 0);
    assert_int_equal(count, 1);
    assert_int_equal(chand_wg_done(b, "t.wg", &count), 0);
    assert_int_equal(count, 0);
    assert_int_equal(chand_wg_wait(b, "t.wg", 1000), 0);
    rc = chand_wg_done(a, "t.wg", &count);
    assert_error(a, rc, CHAND_ENEGATIVE, "negative_counter");

    assert_int_equal(chand_once_do(a, "t.once", 1000), 1);
    /* b would wait for a's once.done: with 0 it cannot. */
    rc = chand_once_do(b, "t.once", 0);
    assert_error(b, rc, CHAND_ETIMEOUT, "timeout");
    assert_error(b, chand_once_done(b, "t.once"), CHAND_EMISUSE, "misuse");
    assert_int_equal(chand_once_done(a, "t.once"), 0);
    assert_int_equal(chand_once_do(b, "t.once", 1000), 0);
    assert_int_equal(chand_once_do(a, "t.once", 1000), 0);

    /* The value kept by the once (sync.OnceValue). */
    {
        json_t *v = json_true(), *st = json_pack("{s:i}", "rc", 9);

        assert_int_equal(chand_once_do_value(b, "t.val", 1000, &v), 1);
        assert_null(v);
        rc = chand_once_done_value(a, "t.val", st);
        assert_error(a, rc, CHAND_EMISUSE, "misuse");
        assert_int_equal(chand_once_done_value(b, "t.val", st), 0);
        json_decref(st);
        assert_int_equal(chand_once_do_value(a, "t.val", 1000, &v), 0);
        assert_int_equal(json_integer_value(json_object_get(v, "rc")), 9);
        json_decref(v);
        assert_int_equal(chand_once_do_value(a, "t.val", 1000, NULL), 0);
        /* chand_once_done stores null. */
        assert_int_equal(chand_once_do_value(a, "t.null", 1000, &v), 1);
        assert_int_equal(chand_once_done(a, "t.null"), 0);
        assert_int_equal(chand_once_do_value(b, "t.null", 1000, &v), 0);
        assert_true(json_is_null(v));
        json_decref(v);
        /* The old call on a once with a value still says 0. */
        assert_int_equal(chand_once_do(b, "t.val", 1000), 0);
    }
    e2e_hang_up(a);
    e2e_hang_up(b);
}

typedef struct cond_job {
    int rc;
    int64_t token;
    int done; /* set (atomically) when the thread ends */
} cond_job;

static void *cond_thread(void *arg)
{
    cond_job *j = arg;
    chand_conn *c = dial();
    int64_t t;

    j->rc = chand_mutex_lock(c, "t.cm", 5000, -1, &t, NULL);
    if (j->rc == 0)
        j->rc = chand_cond_wait(c, "t.cond", "t.cm", 10000, &j->token);
    if (j->rc == 0)
        j->rc = chand_mutex_unlock(c, "t.cm", -1);
    e2e_hang_up(c);
    __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void test_cond(void **state)
{
    chand_conn *c = dial();
    cond_job j = {-100, 0, 0};
    pthread_t th;
    int rc;

    (void)state;
    /* Not holding the mutex is an error. */
    rc = chand_cond_wait(c, "t.cond", "t.cm", 100, NULL);
    require_method(c, rc, "cond.wait");
    require_method(c, chand_mutex_unlock(c, "t.cm", -1), "mutex.unlock");
    assert_error(c, rc, CHAND_ENOTLOCKED, "not_locked");
    assert_int_equal(pthread_create(&th, NULL, cond_thread, &j), 0);
    /* Signal until the waiter has gone: a signal before it waits is
     * lost, as in Go. */
    for (int64_t t0 = testd_now_ms();
         !__atomic_load_n(&j.done, __ATOMIC_ACQUIRE) &&
         testd_now_ms() - t0 < 20000;
         testd_sleep_ms(20))
        assert_int_equal(chand_cond_signal(c, "t.cond"), 0);
    pthread_join(th, NULL);
    assert_int_equal(j.rc, 0);
    assert_true(j.token > 0);
    assert_int_equal(chand_cond_broadcast(c, "t.cond"), 0);
    e2e_hang_up(c);
}

static void test_pool_map_atomic(void **state)
{
    chand_conn *c = dial();
    json_t *v = NULL, *one, *two;
    json_t *entries = NULL;
    int64_t n = -1;

    (void)state;
    require_method(c, chand_pool_get(c, "t.probe", &v), "pool.get");
    require_method(c, chand_map_len(c, "t.probe", &n), "map.len");
    require_method(c, chand_atomic_load(c, "t.probe", &n), "atomic.load");
    one = json_integer(1);
    two = json_integer(2);
    /* Pool */
    assert_int_equal(chand_pool_get(c, "t.pool", &v), 0);
    json_decref(v);
    assert_int_equal(chand_pool_put(c, "t.pool", one), 0);
    assert_int_equal(chand_pool_get(c, "t.pool", &v), 1);
    assert_true(json_equal(v, one));
    json_decref(v);

    /* Map */
    assert_int_equal(chand_map_load(c, "t.map", "k", &v), 0);
    json_decref(v);
    assert_int_equal(chand_map_store(c, "t.map", "k", one), 0);
    assert_int_equal(chand_map_load(c, "t.map", "k", &v), 1);
    assert_true(json_equal(v, one));
    json_decref(v);
    assert_int_equal(chand_map_load_or_store(c, "t.map", "k", two, &v), 1);
    assert_true(json_equal(v, one));
    json_decref(v);
    assert_int_equal(chand_map_load_or_store(c, "t.map", "j", two, &v), 0);
    assert_true(json_equal(v, two));
    json_decref(v);
    assert_int_equal(chand_map_swap(c, "t.map", "j", one, &v), 1);
    assert_true(json_equal(v, two));
    json_decref(v);
    assert_int_equal(chand_map_compare_and_swap(c, "t.map", "j", two, one), 0);
    assert_int_equal(chand_map_compare_and_swap(c, "t.map", "j", one, two), 1);
    assert_int_equal(chand_map_compare_and_delete(c, "t.map", "j", one), 0);
    assert_int_equal(chand_map_compare_and_delete(c, "t.map", "j", two), 1);
    assert_int_equal(chand_map_len(c, "t.map", &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(chand_map_range(c, "t.map", &entries), 0);
    assert_true(json_equal(json_object_get(entries, "k"), one));
    assert_int_equal(json_object_size(entries), 1);
    json_decref(entries);
    assert_int_equal(chand_map_load_and_delete(c, "t.map", "k", &v), 1);
    json_decref(v);
    assert_int_equal(chand_map_load_and_delete(c, "t.map", "k", &v), 0);
    json_decref(v);
    assert_int_equal(chand_map_store(c, "t.map", "z", two), 0);
    assert_int_equal(chand_map_delete(c, "t.map", "z"), 0);
    assert_int_equal(chand_map_store(c, "t.map", "z", two), 0);
    assert_int_equal(chand_map_clear(c, "t.map"), 0);
    assert_int_equal(chand_map_len(c, "t.map", &n), 0);
    assert_int_equal(n, 0);
    /* One namespace: a map is not a pool.  (Empty, the map left the
     * registry, a zero value: an entry makes the name a map's.) */
    assert_int_equal(chand_map_store(c, "t.map", "z", two), 0);
    assert_error(c, chand_pool_get(c, "t.map", &v), CHAND_EWRONGTYPE,
                 "wrong_type");

    /* Atomics */
    assert_int_equal(chand_atomic_load(c, "t.at", &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(chand_atomic_store(c, "t.at", 10), 0);
    assert_int_equal(chand_atomic_add(c, "t.at", -3, &n), 0);
    assert_int_equal(n, 7);
    assert_int_equal(chand_atomic_swap(c, "t.at", 100, &n), 0);
    assert_int_equal(n, 7);
    assert_int_equal(chand_atomic_compare_and_swap(c, "t.at", 7, 1), 0);
    assert_int_equal(chand_atomic_compare_and_swap(c, "t.at", 100, 1), 1);
    assert_int_equal(chand_atomic_load(c, "t.at", &n), 0);
    assert_int_equal(n, 1);
    json_decref(one);
    json_decref(two);
    e2e_hang_up(c);
}

static void test_timers_go(void **state)
{
    chand_conn *c = dial();
    json_t *v = NULL, *p;
    char *timer = NULL;
    int64_t t0, g = -1;

    (void)state;
    t0 = testd_now_ms();
    assert_int_equal(
        require_method(c, chand_timer_after(c, "t.after", 100), "timer.after"),
        0);
    assert_int_equal(chand_recv(c, "t.after", 10000, &v), 1);
    assert_true(testd_now_ms() - t0 >= 90);
    assert_true(json_is_number(v));
    json_decref(v);
    chand_drop(c, "t.after");

    assert_int_equal(chand_timer_after(c, "t.after2", 60000), 0);
    assert_int_equal(chand_timer_stop(c, "t.after2"), 1);
    assert_int_equal(chand_timer_stop(c, "t.after2"), 0);
    assert_int_equal(chand_timer_reset(c, "t.after2", 10), 0);
    assert_int_equal(chand_recv(c, "t.after2", 10000, &v), 1);
    json_decref(v);
    chand_drop(c, "t.after2");

    assert_int_equal(chand_timer_ticker(c, "t.tick", 20), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(chand_recv(c, "t.tick", 10000, &v), 1);
        json_decref(v);
    }
    assert_int_equal(chand_timer_stop(c, "t.tick"), 1);
    chand_drop(c, "t.tick");

    /* AfterFunc closes a channel later; go sends on it now. */
    assert_int_equal(chand_make(c, "t.af", 1, NULL), 0);
    p = json_pack("{s:s}", "name", "t.af");
    assert_int_equal(chand_timer_afterfunc(c, 50, "close", p, &timer), 0);
    assert_non_null(timer);
    free(timer);
    json_decref(p);
    p = json_pack("{s:s, s:s}", "name", "t.af", "value", "from go");
    assert_int_equal(chand_go(c, "send", p, &g), 0);
    json_decref(p);
    assert_true(g >= 0);
    assert_int_equal(chand_recv(c, "t.af", 10000, &v), 1);
    assert_string_equal(json_string_value(v), "from go");
    json_decref(v);
    assert_int_equal(chand_recv(c, "t.af", 10000, &v), 0);
    json_decref(v);
    chand_drop(c, "t.af");
    e2e_hang_up(c);
}

static void test_runtime(void **state)
{
    chand_conn *c = dial();
    json_t *s = NULL;
    int64_t prev = 0, prev2 = 0;

    (void)state;
    assert_int_equal(chand_stats(c, &s), 0);
    assert_true(json_is_integer(json_object_get(s, "goroutines")));
    assert_true(json_integer_value(json_object_get(s, "sessions")) >= 1);
    json_decref(s);
    assert_int_equal(chand_dump(c, &s), 0);
    assert_true(json_is_array(json_object_get(s, "objects")));
    json_decref(s);
    assert_int_equal(chand_gomaxprocs(c, 0, &prev), 0);
    assert_true(prev >= 1);
    assert_int_equal(chand_gomaxprocs(c, 1, &prev2), 0);
    assert_int_equal(prev2, prev);
    assert_int_equal(chand_gomaxprocs(c, prev, &prev2), 0);
    assert_int_equal(prev2, 1);
    e2e_hang_up(c);
}

/* ------------------------------------------------------------------ */
/* Async API                                                          */
/* ------------------------------------------------------------------ */

#define NPIPE 10000

typedef struct pipe_state {
    struct event_base *base;
    chand_async *a;
    int connected;
    int answered;
    int failed;
    int recv_order; /* answers seen before the recv's */
    int64_t last;   /* index of the last ping answered */
    bool out_of_order;
    json_t *recv_value;
} pipe_state;

static void pipe_connect_cb(chand_async *a, int rc, const chand_error *err,
                            void *arg)
{
    pipe_state *ps = arg;

    (void)a;
    (void)err;
    ps->connected = rc == 0 ? 1 : -1;
}

/* One per pipelined ping: its index, to check the order of answers. */
typedef struct pipe_slot {
    pipe_state *ps;
    int64_t index;
} pipe_slot;

static void pipe_ping_cb(chand_async *a, int rc, json_t *res,
                         const chand_error *err, void *arg)
{
    pipe_slot *slot = arg;
    pipe_state *ps = slot->ps;

    (void)a;
    (void)err;
    if (rc != 0 || !json_is_object(res)) {
        ps->failed++;
        return;
    }
    /* Answers that complete at once come in request order. */
    if (slot->index != ps->last + 1)
        ps->out_of_order = true;
    ps->last = slot->index;
    ps->answered++;
    if (ps->answered == NPIPE + 2)
        event_base_loopbreak(ps->base);
}

static void pipe_recv_cb(chand_async *a, int rc, json_t *res,
                         const chand_error *err, void *arg)
{
    pipe_state *ps = arg;

    (void)a;
    (void)err;
    if (rc != 0) {
        ps->failed++;
        return;
    }
    ps->recv_order = ps->answered;
    ps->recv_value = json_incref(json_object_get(res, "value"));
    ps->answered++;
    if (ps->answered == NPIPE + 2)
        event_base_loopbreak(ps->base);
}

static void pipe_send_cb(chand_async *a, int rc, json_t *res,
                         const chand_error *err, void *arg)
{
    pipe_state *ps = arg;

    (void)a;
    (void)res;
    (void)err;
    if (rc != 0)
        ps->failed++;
    else
        ps->answered++;
    if (ps->answered == NPIPE + 2)
        event_base_loopbreak(ps->base);
}

static void test_async_pipeline(void **state)
{
    pipe_state ps = {0};
    pipe_slot *slots = calloc(NPIPE, sizeof *slots);
    struct timeval limit = {60, 0};
    chand_conn *c = dial();

    (void)state;
    assert_non_null(slots);
    assert_int_equal(chand_make(c, "t.async", 0, NULL), 0);
    ps.last = -1;
    ps.base = event_base_new();
    assert_non_null(ps.base);
    assert_int_equal(chand_async_connect(ps.base, "127.0.0.1", D.port, 5000,
                                         pipe_connect_cb, &ps, &ps.a),
                     0);
    /* Queued before the connection is even up: a receive that blocks,
     * 10k pings, then the send that completes the receive. */
    assert_int_equal(chand_async_call(ps.a, "recv",
                                      json_pack("{s:s}", "name", "t.async"),
                                      30000, pipe_recv_cb, &ps),
                     0);
    for (int i = 0; i < NPIPE; i++) {
        slots[i] = (pipe_slot){&ps, i};
        assert_int_equal(chand_async_call(ps.a, "ping", NULL, CHAND_FOREVER,
                                          pipe_ping_cb, &slots[i]),
                         0);
    }
    assert_int_equal(chand_async_pending(ps.a), NPIPE + 1);
    assert_int_equal(chand_async_call(ps.a, "send",
                                      json_pack("{s:s, s:s}", "name", "t.async",
                                                "value", "late"),
                                      30000, pipe_send_cb, &ps),
                     0);
    event_base_loopexit(ps.base, &limit);
    event_base_dispatch(ps.base);
    assert_int_equal(ps.connected, 1);
    assert_int_equal(ps.failed, 0);
    assert_int_equal(ps.answered, NPIPE + 2);
    assert_false(ps.out_of_order);
    assert_int_equal(ps.last, NPIPE - 1);
    /* The receive was asked first and answered after the pings. */
    assert_true(ps.recv_order >= NPIPE);
    assert_string_equal(json_string_value(ps.recv_value), "late");
    json_decref(ps.recv_value);
    assert_int_equal(chand_async_pending(ps.a), 0);
    chand_async_free(ps.a);
    event_base_free(ps.base);
    free(slots);
    chand_drop(c, "t.async");
    e2e_hang_up(c);
}

typedef struct err_state {
    struct event_base *base;
    int rc;
    chand_error err;
    int calls;
} err_state;

static void err_cb(chand_async *a, int rc, json_t *res, const chand_error *err,
                   void *arg)
{
    err_state *es = arg;

    (void)a;
    (void)res;
    es->rc = rc;
    if (err)
        es->err = *err;
    if (++es->calls == 1)
        event_base_loopbreak(es->base);
}

/* Frees its handle from inside the first callback; the other requests in
 * flight must still get exactly one callback each, with CHAND_ECONN. */
static void free_in_cb(chand_async *a, int rc, json_t *res,
                       const chand_error *err, void *arg)
{
    err_state *es = arg;

    (void)res;
    (void)err;
    if (es->calls++ == 0) {
        es->rc = rc;
        chand_async_free(a);
        event_base_loopbreak(es->base);
    } else if (rc != CHAND_ECONN) {
        es->rc = -999;
    }
}

static void rc_cb(chand_async *a, int rc, json_t *res, const chand_error *err,
                  void *arg)
{
    (void)a;
    (void)res;
    (void)err;
    *(int *)arg = rc;
}

static void big_close_cb(chand_async *a, int rc, const chand_error *err,
                         void *arg)
{
    err_state *es = arg;

    (void)a;
    (void)err;
    es->rc = rc;
    es->calls++;
    event_base_loopbreak(es->base);
}

static void test_async_errors(void **state)
{
    err_state es = {0};
    struct timeval limit = {30, 0};
    chand_async *a;

    (void)state;
    es.base = event_base_new();
    assert_int_equal(
        chand_async_connect(es.base, "127.0.0.1", D.port, 5000, NULL, NULL, &a),
        0);
    assert_int_equal(chand_async_call(a, "recv",
                                      json_pack("{s:s}", "name", "t.none"), 0,
                                      err_cb, &es),
                     0);
    event_base_loopexit(es.base, &limit);
    event_base_dispatch(es.base);
    assert_int_equal(es.calls, 1);
    assert_int_equal(es.rc, CHAND_ENOTFOUND);
    assert_string_equal(es.err.reason, "not_found");
    chand_async_free(a);

    /* Refused: the connect callback and queued calls fail. */
    es = (err_state){.base = es.base};
    assert_int_equal(
        chand_async_connect(es.base, "127.0.0.1", 1, 5000, NULL, NULL, &a), 0);
    assert_int_equal(
        chand_async_call(a, "ping", NULL, CHAND_FOREVER, err_cb, &es), 0);
    event_base_loopexit(es.base, &limit);
    event_base_dispatch(es.base);
    assert_int_equal(es.calls, 1);
    assert_int_equal(es.rc, CHAND_ECONN);
    assert_int_equal(
        chand_async_call(a, "ping", NULL, CHAND_FOREVER, err_cb, &es),
        CHAND_ECONN);
    chand_async_free(a);

    /* Requests answered before the server hangs up on an oversized line
     * keep their answers; the rest fail with CHAND_ECONN. */
    {
        int rcs[4] = {1, 1, 1, 1};
        size_t n = 16 * 1024 * 1024;
        char *big = malloc(n + 1);

        assert_non_null(big);
        memset(big, 'x', n);
        big[n] = '\0';
        es = (err_state){.base = es.base};
        assert_int_equal(chand_async_connect(es.base, "127.0.0.1", D.port, 5000,
                                             NULL, NULL, &a),
                         0);
        chand_async_on_close(a, big_close_cb, &es);
        for (int i = 0; i < 3; i++)
            assert_int_equal(chand_async_call(a, "ping", NULL, CHAND_FOREVER,
                                              rc_cb, &rcs[i]),
                             0);
        assert_int_equal(
            chand_async_call(a, "len",
                             json_pack("{s:s, s:s}", "name", big, "x", "y"),
                             CHAND_FOREVER, rc_cb, &rcs[3]),
            0);
        free(big);
        event_base_loopexit(es.base, &limit);
        event_base_dispatch(es.base);
        assert_int_equal(es.calls, 1); /* the close callback */
        for (int i = 0; i < 3; i++)
            assert_int_equal(rcs[i], 0);
        assert_int_equal(rcs[3], CHAND_ECONN);
        chand_async_free(a);
    }

    /* chand_async_free from a callback, with more requests in flight. */
    es = (err_state){.base = es.base};
    assert_int_equal(
        chand_async_connect(es.base, "127.0.0.1", D.port, 5000, NULL, NULL, &a),
        0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(
            chand_async_call(a, "ping", NULL, CHAND_FOREVER, free_in_cb, &es),
            0);
    event_base_loopexit(es.base, &limit);
    event_base_dispatch(es.base);
    assert_int_equal(es.calls, 5);
    assert_int_equal(es.rc, 0);
    event_base_free(es.base);
}

/* ------------------------------------------------------------------ */
/* Connection loss                                                    */
/* ------------------------------------------------------------------ */

typedef struct blocked {
    chand_conn *c;
    int rc;
} blocked;

static void *blocked_recv(void *arg)
{
    blocked *b = arg;
    json_t *v = NULL;

    b->rc = chand_recv(b->c, "t.loss", CHAND_FOREVER, &v);
    json_decref(v);
    return NULL;
}

typedef struct loss_state {
    struct event_base *base;
    testd *d;
    int failed, closed, ok;
} loss_state;

static void loss_cb(chand_async *a, int rc, json_t *res, const chand_error *err,
                    void *arg)
{
    loss_state *ls = arg;

    (void)a;
    (void)res;
    (void)err;
    if (rc == CHAND_ECONN) {
        ls->failed++;
    } else if (rc == 0) {
        /* The ping is answered: the connection is up and the two receives
         * behind it are on their way.  Now the daemon dies. */
        ls->ok++;
        kill(ls->d->pid, SIGKILL);
    }
}

static void loss_close_cb(chand_async *a, int rc, const chand_error *err,
                          void *arg)
{
    loss_state *ls = arg;

    (void)a;
    (void)err;
    if (rc == CHAND_ECONN)
        ls->closed++;
    event_base_loopbreak(ls->base);
}

static void test_connection_loss(void **state)
{
    testd d;
    chand_conn *c, *idle;
    blocked b = {0};
    loss_state ls = {0};
    struct timeval limit = {30, 0};
    chand_async *a;
    pthread_t th;
    int port;

    (void)state;
    assert_int_equal(testd_start(&d, NULL), 0);
    assert_int_equal(chand_connect("127.0.0.1", d.port, 5000, &c, NULL), 0);
    assert_int_equal(chand_connect("127.0.0.1", d.port, 5000, &idle, NULL), 0);
    assert_int_equal(chand_make(c, "t.loss", 0, NULL), 0);
    b.c = c;
    assert_int_equal(pthread_create(&th, NULL, blocked_recv, &b), 0);

    /* An async connection with one answered and two blocked requests; the
     * blocked blocking receive above is in flight too. */
    ls.base = event_base_new();
    ls.d = &d;
    assert_int_equal(
        chand_async_connect(ls.base, "127.0.0.1", d.port, 5000, NULL, NULL, &a),
        0);
    chand_async_on_close(a, loss_close_cb, &ls);
    assert_int_equal(
        chand_async_call(a, "ping", NULL, CHAND_FOREVER, loss_cb, &ls), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(chand_async_call(a, "recv",
                                          json_pack("{s:s}", "name", "t.loss"),
                                          CHAND_FOREVER, loss_cb, &ls),
                         0);
    event_base_loopexit(ls.base, &limit);
    event_base_dispatch(ls.base);
    assert_int_equal(ls.ok, 1);
    assert_int_equal(ls.failed, 2);
    assert_int_equal(ls.closed, 1);
    assert_int_equal(chand_async_pending(a), 0);
    assert_int_equal(
        chand_async_call(a, "ping", NULL, CHAND_FOREVER, NULL, NULL),
        CHAND_ECONN);
    chand_async_free(a);
    event_base_free(ls.base);

    /* The blocked blocking call fails cleanly, and so do later calls. */
    pthread_join(th, NULL);
    assert_int_equal(b.rc, CHAND_ECONN);
    assert_false(chand_connected(c));
    assert_int_equal(chand_ping(c), CHAND_ECONN);
    assert_int_equal(chand_ping(idle), CHAND_ECONN);
    assert_int_equal(chand_last_error(idle)->code, CHAND_ECONN);
    /* No automatic reconnect; an explicit one fails while down... */
    assert_int_equal(chand_reconnect(idle, 1000), CHAND_ECONNECT);
    assert_int_equal(testd_wait_exit(&d, 20000), -1); /* SIGKILLed */
    port = d.port;
    testd_stop(&d);
    /* ...and works once a daemon is back: a new session. */
    assert_int_equal(testd_start_opts(&d, &(testd_opts){.port = port}), 0);
    assert_int_equal(chand_reconnect(c, 5000), 0);
    assert_true(chand_connected(c));
    assert_int_equal(chand_ping(c), 0);
    assert_true(strlen(chand_session(c)) > 0);
    /* The old channel died with the old daemon. */
    assert_error(c, chand_recv(c, "t.loss", 0, NULL), CHAND_ENOTFOUND,
                 "not_found");
    chand_close_conn(c);
    chand_close_conn(idle);
    assert_int_equal(testd_stop(&d), 0);
}

int main(void)
{
    const struct CMUnitTest offline[] = {
        cmocka_unit_test(test_parse_address),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_silent_server),
    };
    const struct CMUnitTest online[] = {
        cmocka_unit_test_teardown(test_session, e2e_close_all),
        cmocka_unit_test_teardown(test_generic_call, e2e_close_all),
        cmocka_unit_test_teardown(test_channels, e2e_close_all),
        cmocka_unit_test_teardown(test_unbuffered_and_select, e2e_close_all),
        cmocka_unit_test_teardown(test_mutex, e2e_close_all),
        cmocka_unit_test_teardown(test_rwmutex, e2e_close_all),
        cmocka_unit_test_teardown(test_wg_once, e2e_close_all),
        cmocka_unit_test_teardown(test_cond, e2e_close_all),
        cmocka_unit_test_teardown(test_pool_map_atomic, e2e_close_all),
        cmocka_unit_test_teardown(test_timers_go, e2e_close_all),
        cmocka_unit_test_teardown(test_runtime, e2e_close_all),
        cmocka_unit_test_teardown(test_async_pipeline, e2e_close_all),
        cmocka_unit_test_teardown(test_async_errors, e2e_close_all),
        cmocka_unit_test_teardown(test_connection_loss, e2e_close_all),
    };
    int failed =
        cmocka_run_group_tests_name("client_offline", offline, NULL, NULL);

    failed += cmocka_run_group_tests_name("client_daemon", online,
                                          e2e_client_group_setup,
                                          e2e_client_group_teardown);
    return failed ? 1 : 0;
}
