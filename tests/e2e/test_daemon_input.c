/*
 * test_daemon_input.c - end-to-end: malformed and hostile input gets the
 * documented errors (codes and reasons), and the daemon keeps serving the
 * same connection (when the line was framed) and everyone else; plus the
 * limits: line length, depth, value size, batch size, select cases,
 * connections, and the output buffer of a client that does not read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto.h"
#include "../common/e2e.h"
#include "../common/testd.h"

static int start_with(const char *const *args)
{
    return testd_start(&D, args);
}

/* Sends a raw line and returns the next answer (new reference). */
static json_t *raw(testd_conn *c, const char *line)
{
    assert_int_equal(testd_send(c, line), 0);
    json_t *a = testd_recv(c, 10000);
    assert_non_null(a);
    return a;
}

static void expect_error(testd_conn *c, const char *line, int code,
                         const char *reason, bool id_null)
{
    json_t *a = raw(c, line);
    assert_int_equal(testd_code(a), code);
    assert_string_equal(testd_reason(a), reason);
    assert_non_null(testd_message(a));
    if (id_null)
        assert_true(json_is_null(json_object_get(a, "id")));
    json_decref(a);
}

static void expect_ping_ok(testd_conn *c, int id)
{
    json_t *a = testd_call(c, id, "ping", NULL, 10000);
    assert_non_null(a);
    assert_non_null(testd_result(a));
    json_decref(a);
}

static void test_hello_ping(void **state)
{
    testd_conn *c = testd_connect(&D);
    json_t *a;
    (void)state;

    assert_non_null(c);
    a = testd_call(c, 1, "hello", json_pack("{s:i}", "version", 1), 10000);
    assert_non_null(testd_result(a));
    assert_int_equal(
        json_integer_value(json_object_get(testd_result(a), "version")), 1);
    assert_true(
        json_integer_value(json_object_get(testd_result(a), "session")) > 0);
    assert_non_null(
        json_string_value(json_object_get(testd_result(a), "server")));
    json_decref(a);
    a = testd_call(c, 2, "hello", json_pack("{s:i}", "version", 99), 10000);
    assert_string_equal(testd_reason(a), "misuse");
    json_decref(a);
    /* A string id comes back as it was sent. */
    a = raw(c, "{\"jsonrpc\":\"2.0\",\"id\":\"abc\",\"method\":\"ping\"}");
    assert_string_equal(json_string_value(json_object_get(a, "id")), "abc");
    assert_true(json_is_object(testd_result(a)));
    json_decref(a);
    testd_close(c);
}

static void test_malformed(void **state)
{
    testd_conn *c = testd_connect(&D), *other = testd_connect(&D);
    (void)state;

    assert_non_null(c);
    assert_non_null(other);
    expect_error(c, "not json", PROTO_PARSE_ERROR, "invalid", true);
    expect_error(c, "{\"jsonrpc\":\"2.0\",\"id\":1,", PROTO_PARSE_ERROR,
                 "invalid", true);
    /* invalid UTF-8 */
    expect_error(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\xfe\"}",
                 PROTO_PARSE_ERROR, "invalid", true);
    /* duplicate keys */
    expect_error(c,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":"
                 "\"ping\"}",
                 PROTO_PARSE_ERROR, "invalid", true);
    /* wrong envelope */
    expect_error(c, "42", PROTO_INVALID_REQUEST, "invalid", true);
    expect_error(c, "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}",
                 PROTO_INVALID_REQUEST, "invalid", false);
    expect_error(c, "{\"jsonrpc\":\"2.0\",\"id\":[1],\"method\":\"ping\"}",
                 PROTO_INVALID_REQUEST, "invalid", true);
    expect_error(c, "{\"jsonrpc\":\"2.0\",\"id\":1}", PROTO_INVALID_REQUEST,
                 "invalid", false);
    expect_error(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"fly\"}",
                 PROTO_METHOD_NOT_FOUND, "invalid", false);
    /* params: positional, missing, unknown, wrong types */
    expect_error(c,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\","
                 "\"params\":[\"q\"]}",
                 PROTO_INVALID_PARAMS, "invalid", false);
    expect_error(c,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\","
                 "\"params\":{}}",
                 PROTO_INVALID_PARAMS, "invalid", false);
    expect_error(c,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\","
                 "\"params\":{\"name\":\"q\",\"x\":1}}",
                 PROTO_INVALID_PARAMS, "invalid", false);
    expect_error(c,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\","
                 "\"params\":{\"name\":7}}",
                 PROTO_INVALID_PARAMS, "invalid", false);
    expect_error(c,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"make\","
                 "\"params\":{\"name\":\"q\",\"cap\":\"3\"}}",
                 PROTO_INVALID_PARAMS, "invalid", false);
    expect_error(c,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"make\","
                 "\"params\":{\"name\":\"q\",\"type\":\"float\"}}",
                 PROTO_INVALID_PARAMS, "invalid", false);
    expect_error(c,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\","
                 "\"params\":{\"name\":\"a\\nb\"}}",
                 PROTO_INVALID_PARAMS, "invalid", false);
    expect_error(c,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\","
                 "\"params\":{\"name\":\"q\",\"timeout_ms\":-5}}",
                 PROTO_INVALID_PARAMS, "invalid", false);
    /* deep nesting: too_large, and the connection stays usable */
    {
        char deep[512];
        size_t n = 0;
        n += (size_t)snprintf(deep, sizeof deep,
                              "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":"
                              "\"send\",\"params\":{\"name\":\"q\","
                              "\"value\":");
        for (int i = 0; i < 100; i++)
            deep[n++] = '[';
        for (int i = 0; i < 100; i++)
            deep[n++] = ']';
        snprintf(deep + n, sizeof deep - n, "}}");
        expect_error(c, deep, proto_reason_code(PROTO_R_TOO_LARGE), "too_large",
                     true);
    }
    expect_ping_ok(c, 50);
    expect_ping_ok(other, 51);
    testd_close(c);
    testd_close(other);
}

static void test_huge_line(void **state)
{
    testd_conn *c = testd_connect(&D), *other = testd_connect(&D);
    size_t n = 2 * 1024 * 1024;
    char *big = malloc(n + 1);
    json_t *a;
    (void)state;

    assert_non_null(c);
    assert_non_null(big);
    /* A 2 MiB value inside a well-formed request. */
    memset(big, 'x', n);
    static const char head[] =
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"x\":\"";
    memcpy(big, head, strlen(head));
    big[n - 2] = '"';
    big[n - 1] = '}';
    big[n] = '\n';
    /* The daemon may close before reading it all: ignore write errors. */
    (void)testd_write(c, big, n + 1);
    a = testd_recv(c, 10000);
    assert_non_null(a);
    assert_string_equal(testd_reason(a), "too_large");
    assert_true(json_is_null(json_object_get(a, "id")));
    json_decref(a);
    assert_true(testd_wait_eof(c, 10000));
    testd_close(c);
    /* Everyone else is still served. */
    expect_ping_ok(other, 2);
    testd_close(other);
    c = testd_connect(&D);
    expect_ping_ok(c, 3);
    /* An unterminated tail past the cap is refused the same way. */
    memset(big, 'y', n);
    (void)testd_write(c, big, n);
    a = testd_recv(c, 10000);
    assert_non_null(a);
    assert_string_equal(testd_reason(a), "too_large");
    json_decref(a);
    testd_close(c);
    free(big);
}

/* The default max_line leaves room for a value of exactly max_value
 * bytes (1 MiB) with its envelope: that value goes through, and comes
 * back; one byte more is too_large, and the connection stays usable. */
static void test_value_limit_reachable(void **state)
{
    testd_conn *c = testd_connect(&D);
    size_t n = 1024 * 1024; /* the default max_value */
    char *s = malloc(n);
    json_t *a, *v;
    (void)state;

    assert_non_null(c);
    assert_non_null(s);
    /* A JSON string of n bytes: n - 2 characters and its quotes. */
    memset(s, 'v', n - 2);
    s[n - 2] = '\0';
    a = testd_call(c, 1, "make",
                   json_pack("{s:s,s:i}", "name", "big", "cap", 2), 10000);
    assert_non_null(testd_result(a));
    json_decref(a);
    a = testd_call(c, 2, "send",
                   json_pack("{s:s,s:s}", "name", "big", "value", s), 10000);
    if (!testd_result(a))
        fail_msg("max_value bytes: %s", a ? testd_reason(a) : "no answer");
    json_decref(a);
    a = testd_call(c, 3, "recv", json_pack("{s:s}", "name", "big"), 10000);
    v = json_object_get(testd_result(a), "value");
    assert_int_equal(json_string_length(v), n - 2);
    json_decref(a);
    /* One byte more. */
    memset(s, 'w', n - 1);
    s[n - 1] = '\0';
    a = testd_call(c, 4, "send",
                   json_pack("{s:s,s:s}", "name", "big", "value", s), 10000);
    assert_non_null(a);
    assert_string_equal(testd_reason(a), "too_large");
    json_decref(a);
    a = testd_call(
        c, 5, "map.store",
        json_pack("{s:s,s:s,s:s}", "name", "m", "key", "k", "value", s), 10000);
    assert_non_null(a);
    assert_string_equal(testd_reason(a), "too_large");
    json_decref(a);
    expect_ping_ok(c, 6);
    free(s);
    testd_close(c);
}

static void test_batches_and_notifications(void **state)
{
    testd_conn *c = testd_connect(&D);
    json_t *a;
    (void)state;

    expect_error(c, "[]", PROTO_INVALID_REQUEST, "invalid", true);
    a = raw(c, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},"
               "{\"jsonrpc\":\"2.0\",\"method\":\"ping\"},"
               "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"fly\"},"
               "5]");
    assert_true(json_is_array(a));
    assert_int_equal(json_array_size(a), 3);
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(a, 0), "id")), 1);
    assert_int_equal(testd_code(json_array_get(a, 1)), PROTO_METHOD_NOT_FOUND);
    assert_int_equal(testd_code(json_array_get(a, 2)), PROTO_INVALID_REQUEST);
    json_decref(a);
    /* Notifications (even invalid ones) get no answer at all. */
    assert_int_equal(testd_send(c, "{\"jsonrpc\":\"2.0\",\"method\":\"ping\"}"),
                     0);
    assert_int_equal(testd_send(c, "{\"jsonrpc\":\"2.0\",\"method\":\"recv\"}"),
                     0);
    assert_int_equal(testd_send(c, "[{\"jsonrpc\":\"2.0\",\"method\":"
                                   "\"ping\"}]"),
                     0);
    a = testd_call(c, 9, "ping", NULL, 10000);
    assert_non_null(a);
    json_decref(a);
    assert_null(testd_recv(c, 200));
    /* A batch that waits answers once every member completed. */
    a = raw(c, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"make\","
               "\"params\":{\"name\":\"b\",\"cap\":1}},"
               "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"recv\","
               "\"params\":{\"name\":\"b\",\"timeout_ms\":100}},"
               "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"len\","
               "\"params\":{\"name\":\"b\"}}]");
    assert_int_equal(json_array_size(a), 3);
    assert_string_equal(testd_reason(json_array_get(a, 1)), "timeout");
    json_decref(a);
    testd_close(c);
}

static void test_limits(void **state)
{
    static const char *const args[] = {
        "--max-value", "1000",        "--max-batch", "3",  "--max-select",
        "2",           "--max-conns", "4",           NULL,
    };
    testd_conn *c, *cs[4];
    char *v;
    json_t *a, *cases;
    (void)state;

    assert_int_equal(testd_stop(&D), 0);
    assert_int_equal(start_with(args), 0);
    c = testd_connect(&D);
    a = testd_call(c, 1, "make", json_pack("{s:s, s:i}", "name", "q", "cap", 4),
                   10000);
    assert_non_null(testd_result(a));
    json_decref(a);
    v = malloc(2001);
    memset(v, 'v', 2000);
    v[2000] = 0;
    a = testd_call(c, 2, "send",
                   json_pack("{s:s, s:s}", "name", "q", "value", v), 10000);
    assert_string_equal(testd_reason(a), "too_large");
    json_decref(a);
    free(v);
    expect_error(c,
                 "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},"
                 "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"},"
                 "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"},"
                 "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"ping\"}]",
                 proto_reason_code(PROTO_R_LIMIT), "limit", true);
    cases =
        json_pack("[{s:s},{s:s},{s:s}]", "recv", "q", "recv", "q", "recv", "q");
    a = testd_call(c, 3, "select",
                   json_pack("{s:o, s:b}", "cases", cases, "default", 1),
                   10000);
    assert_string_equal(testd_reason(a), "limit");
    json_decref(a);
    /* Connections: c plus three more fill max-conns 4; the fifth is
     * refused with one line, then closed. */
    for (int i = 0; i < 3; i++) {
        cs[i] = testd_connect(&D);
        assert_non_null(cs[i]);
        expect_ping_ok(cs[i], 10 + i);
    }
    cs[3] = testd_connect(&D);
    assert_non_null(cs[3]);
    a = testd_recv(cs[3], 10000);
    assert_non_null(a);
    assert_string_equal(testd_reason(a), "limit");
    json_decref(a);
    assert_true(testd_wait_eof(cs[3], 10000));
    testd_close(cs[3]);
    /* Freeing a slot lets a new client in. */
    testd_close(cs[0]);
    for (int64_t t0 = testd_now_ms();; testd_sleep_ms(20)) {
        cs[0] = testd_connect(&D);
        assert_non_null(cs[0]);
        a = testd_call(cs[0], 20, "ping", NULL, 10000);
        if (a && testd_result(a)) {
            json_decref(a);
            break;
        }
        json_decref(a);
        testd_close(cs[0]);
        /* The close may take a moment. */
        assert_true(testd_now_ms() - t0 < 20000);
    }
    for (int i = 0; i < 3; i++)
        testd_close(cs[i]);
    testd_close(c);
}

static void test_slow_reader(void **state)
{
    static const char *const args[] = {"--max-outbuf", "65536", NULL};
    enum { N = 64, VSIZE = 256 * 1024 };
    testd_conn *feeder, *slow, *check;
    char *v = malloc(VSIZE + 1);
    int rcv = 4096;
    json_t *a;
    (void)state;

    assert_int_equal(testd_stop(&D), 0);
    assert_int_equal(start_with(args), 0);
    feeder = testd_connect(&D);
    a = testd_call(feeder, 1, "make",
                   json_pack("{s:s, s:i}", "name", "big", "cap", N), 10000);
    assert_non_null(testd_result(a));
    json_decref(a);
    memset(v, 'z', VSIZE);
    v[VSIZE] = 0;
    for (int i = 0; i < N; i++) {
        a = testd_call(feeder, 2 + i, "send",
                       json_pack("{s:s, s:s}", "name", "big", "value", v),
                       10000);
        assert_non_null(testd_result(a));
        json_decref(a);
    }
    /* A client that asks for everything and never reads. */
    slow = testd_connect(&D);
    setsockopt(testd_fd(slow), SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    /* (A write may fail once the daemon has already hung up on it.) */
    for (int i = 0; i < N; i++)
        if (testd_sendf(slow,
                        "{\"jsonrpc\":\"2.0\",\"id\":%d,"
                        "\"method\":\"recv\",\"params\":"
                        "{\"name\":\"big\"}}",
                        i) != 0) {
            assert_true(i > 0);
            break;
        }
    /* The daemon disconnects it; the values it was not handed stay. */
    int64_t t0 = testd_now_ms();
    json_int_t left = N;
    for (;;) {
        check = testd_connect(&D);
        a = testd_call(check, 1, "runtime.stats", NULL, 10000);
        json_int_t sessions =
            json_integer_value(json_object_get(testd_result(a), "sessions"));
        json_decref(a);
        a = testd_call(check, 2, "len", json_pack("{s:s}", "name", "big"),
                       10000);
        left = json_integer_value(json_object_get(testd_result(a), "len"));
        json_decref(a);
        testd_close(check);
        if (sessions == 2) /* feeder + check: slow is gone */
            break;
        assert_true(testd_now_ms() - t0 < 20000);
        testd_sleep_ms(20);
    }
    /* Answers already queued to the socket are gone with it; every value
     * not yet handed over is still in the channel. */
    assert_true(left > 0);
    assert_true(left <= N);
    testd_close(slow);
    testd_close(feeder);
    free(v);
}

/* A client pipelining a flood of requests does not starve another: the
 * daemon serves at most fair-batch lines per session per loop turn. */
static void test_fair_turns(void **state)
{
    enum { N = 200000 };
    static const char ping[] = "{\"jsonrpc\":\"2.0\",\"id\":1,"
                               "\"method\":\"ping\"}\n";
    testd_conn *b = testd_connect(&D);
    json_t *a;
    int p[2];
    pid_t pid;
    (void)state;

    assert_non_null(b);
    assert_int_equal(pipe(p), 0);
    pid = testd_fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The flooder: N pings in big writes, then reads every answer. */
        testd_conn *f = testd_connect(&D);
        size_t one = sizeof ping - 1, chunk = 1000 * one;
        char *buf = malloc(chunk);
        if (!f || !buf)
            _exit(1);
        for (size_t i = 0; i < 1000; i++)
            memcpy(buf + i * one, ping, one);
        if (write(p[1], "g", 1) != 1)
            _exit(1);
        for (int i = 0; i < N / 1000; i++)
            if (testd_write(f, buf, chunk) != 0)
                _exit(1);
        for (int i = 0; i < N; i++) {
            char *l = testd_recv_line(f, 60000);
            if (!l)
                _exit(2);
            free(l);
        }
        _exit(0);
    }
    char g;
    json_int_t seen = 0;
    assert_int_equal(read(p[0], &g, 1), 1);
    /* Ask until the flood is being served (more requests than b's own):
     * with fair turns that answer comes within a turn or two, not after
     * the flood.  (A fixed sleep raced a fast daemon on a second I/O
     * thread, which can serve the whole flood within it.) */
    for (int id = 2; seen <= id - 2; id++) {
        a = testd_call(b, id, "runtime.stats", NULL, 30000);
        assert_non_null(testd_result(a));
        seen = json_integer_value(json_object_get(testd_result(a), "requests"));
        json_decref(a);
    }
    /* b was answered while the flood was still being served. */
    assert_true(seen < N);
    int st;
    assert_int_equal(testd_reap(pid, &st, 120000), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(p[0]);
    close(p[1]);
    testd_close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        E2E_TEST(test_hello_ping),
        E2E_TEST(test_malformed),
        E2E_TEST(test_value_limit_reachable),
        E2E_TEST(test_huge_line),
        E2E_TEST(test_batches_and_notifications),
        E2E_TEST(test_limits),
        E2E_TEST(test_slow_reader),
        E2E_TEST(test_fair_turns),
    };
    return cmocka_run_group_tests_name("daemon_input", tests, NULL, NULL);
}
