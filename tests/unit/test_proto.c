/*
 * test_proto.c - unit tests of proto/: line parsing (UTF-8, depth,
 * duplicates, size), envelope and parameter validation, the method table,
 * reasons and codes, answer building and reading.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

static json_t *parse(const char *s, proto_error *err)
{
    proto_limits lim = {.max_line = 4096, .max_depth = 8};
    return proto_parse_line(s, strlen(s), &lim, err);
}

/* Parses s (trailing newline allowed) with the default limits. */
static json_t *parse_big(const char *s, proto_error *err)
{
    size_t len = strlen(s);
    while (len && (s[len - 1] == '\n' || s[len - 1] == ' '))
        len--;
    return proto_parse_line(s, len, NULL, err);
}

/* Parses and checks s; returns the check's result, keeps msg for borrows. */
static int check(const char *s, json_t **msg, proto_request *req,
                 proto_error *err)
{
    *msg = parse(s, err);
    assert_non_null(*msg);
    return proto_check_request(*msg, req, err);
}

static void test_reasons(void **state)
{
    (void)state;
    for (int r = 1; r < PROTO_R_COUNT; r++) {
        const char *n = proto_reason_name((proto_reason)r);
        assert_non_null(n);
        assert_int_equal(proto_reason_from_name(n), r);
        assert_int_equal(proto_reason_code((proto_reason)r), -32000 - r);
    }
    assert_string_equal(proto_reason_name(PROTO_R_CLOSED), "closed");
    assert_string_equal(proto_reason_name(PROTO_R_DEADLOCK), "deadlock");
    assert_null(proto_reason_name(PROTO_R_NONE));
    assert_int_equal(proto_reason_from_name("nonsense"), PROTO_R_NONE);
}

static void test_table(void **state)
{
    size_t n = 0;
    const proto_method *t = proto_methods(&n);
    static const char *const must[] = {
        "hello",
        "ping",
        "make",
        "send",
        "recv",
        "close",
        "len",
        "drop",
        "list",
        "select",
        "mutex.lock",
        "mutex.unlock",
        "rwmutex.lock",
        "rwmutex.unlock",
        "rwmutex.rlock",
        "rwmutex.runlock",
        "wg.add",
        "wg.done",
        "wg.wait",
        "once.do",
        "once.done",
        "cond.wait",
        "cond.signal",
        "cond.broadcast",
        "pool.put",
        "pool.get",
        "map.store",
        "map.load",
        "map.delete",
        "map.load_or_store",
        "map.load_and_delete",
        "map.swap",
        "map.compare_and_swap",
        "map.compare_and_delete",
        "map.range",
        "map.len",
        "map.clear",
        "atomic.load",
        "atomic.store",
        "atomic.add",
        "atomic.swap",
        "atomic.compare_and_swap",
        "timer.after",
        "timer.ticker",
        "timer.stop",
        "timer.reset",
        "timer.afterfunc",
        "go",
        "runtime.stats",
        "runtime.gomaxprocs",
        "runtime.dump",
    };
    (void)state;
    assert_true(n >= sizeof must / sizeof must[0]);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(t[i].id, (int)i);
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++) {
        const proto_method *m = proto_method_find(must[i]);
        assert_non_null(m);
        assert_string_equal(m->name, must[i]);
    }
    assert_true(proto_method_find("recv")->blocking);
    assert_true(proto_method_find("select")->blocking);
    assert_false(proto_method_find("close")->blocking);
    assert_null(proto_method_find("nope"));
}

static void test_parse_ok(void **state)
{
    proto_error err;
    json_t *v = parse("{\"a\":[1,2,{\"b\":\"\xc3\xa9\"}]}", &err);
    (void)state;
    assert_non_null(v);
    assert_true(json_is_object(v));
    json_decref(v);
    v = parse("[1]", &err); /* a batch is an array */
    assert_non_null(v);
    json_decref(v);
}

static void test_parse_errors(void **state)
{
    proto_error err;
    proto_limits lim = {.max_line = 16, .max_depth = 8};
    char big[64];
    (void)state;

    assert_null(parse("not json", &err));
    assert_int_equal(err.code, PROTO_PARSE_ERROR);
    assert_int_equal(err.reason, PROTO_R_INVALID);

    assert_null(parse("{\"a\":1,\"a\":2}", &err)); /* duplicate key */
    assert_int_equal(err.code, PROTO_PARSE_ERROR);

    assert_null(parse("{\"a\":\"\xff\xfe\"}", &err)); /* invalid UTF-8 */
    assert_int_equal(err.code, PROTO_PARSE_ERROR);

    assert_null(parse("{\"a\":1} x", &err)); /* trailing garbage */
    assert_int_equal(err.code, PROTO_PARSE_ERROR);

    assert_null(parse("[[[[[[[[[1]]]]]]]]]", &err)); /* depth 9 > 8 */
    assert_int_equal(err.reason, PROTO_R_TOO_LARGE);
    assert_int_equal(err.code, proto_reason_code(PROTO_R_TOO_LARGE));
    /* Brackets inside strings do not count. */
    json_t *v = parse("{\"a\":\"[[[[[[[[[[[[[[[[\\\"[[[[\"}", &err);
    assert_non_null(v);
    json_decref(v);

    memset(big, ' ', sizeof big);
    big[0] = '1';
    assert_null(proto_parse_line(big, sizeof big, &lim, &err));
    assert_int_equal(err.reason, PROTO_R_TOO_LARGE);
}

static void test_depth(void **state)
{
    (void)state;
    assert_int_equal(proto_json_depth("1", 1, 10), 0);
    assert_int_equal(proto_json_depth("[{}]", 4, 10), 2);
    assert_int_equal(proto_json_depth("\"[[\"", 4, 10), 0);
    assert_int_equal(proto_json_depth("[[[[", 4, 2), 3); /* stops early */
}

static void test_names(void **state)
{
    char n256[256];
    (void)state;
    assert_true(proto_name_valid("jobs", 4));
    assert_true(proto_name_valid("caf\xc3\xa9 q", 7));
    assert_false(proto_name_valid("", 0));
    assert_false(proto_name_valid("a\nb", 3));
    assert_false(proto_name_valid("a\x7f", 2));
    assert_false(proto_name_valid("\xc2\x85", 2)); /* U+0085 NEL */
    memset(n256, 'x', sizeof n256);
    assert_true(proto_name_valid(n256, 255));
    assert_false(proto_name_valid(n256, 256));
}

static void test_check_ok(void **state)
{
    json_t *msg;
    proto_request req;
    proto_error err;
    (void)state;

    assert_int_equal(check("{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"recv\","
                           "\"params\":{\"name\":\"jobs\",\"timeout_ms\":5}}",
                           &msg, &req, &err),
                     0);
    assert_string_equal(req.method->name, "recv");
    assert_int_equal(json_integer_value(req.id), 7);
    assert_int_equal(req.timeout_ms, 5);
    assert_string_equal(json_string_value(json_object_get(req.params, "name")),
                        "jobs");
    json_decref(msg);

    /* Notification: no id; params absent means empty. */
    assert_int_equal(
        check("{\"jsonrpc\":\"2.0\",\"method\":\"ping\"}", &msg, &req, &err),
        0);
    assert_null(req.id);
    assert_true(json_is_object(req.params));
    assert_int_equal(req.timeout_ms, -1);
    json_decref(msg);

    /* String ids and null ids are allowed. */
    assert_int_equal(check("{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"method\":"
                           "\"send\",\"params\":{\"name\":\"a\",\"value\":"
                           "null}}",
                           &msg, &req, &err),
                     0);
    assert_true(json_is_string(req.id));
    json_decref(msg);
}

static void expect_err(const char *line, int code, bool id_kept)
{
    json_t *msg;
    proto_request req;
    proto_error err;

    assert_int_equal(check(line, &msg, &req, &err), -1);
    assert_int_equal(err.code, code);
    assert_int_equal(err.reason, PROTO_R_INVALID);
    assert_true(strlen(err.message) > 0);
    if (id_kept)
        assert_non_null(req.id);
    json_decref(msg);
}

static void test_check_errors(void **state)
{
    (void)state;
    expect_err("[]", PROTO_INVALID_REQUEST, false);
    expect_err("42", PROTO_INVALID_REQUEST, false);
    expect_err("{\"id\":1,\"method\":\"ping\"}", PROTO_INVALID_REQUEST, true);
    expect_err("{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}",
               PROTO_INVALID_REQUEST, true);
    expect_err("{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}",
               PROTO_INVALID_REQUEST, false);
    expect_err("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":5}",
               PROTO_INVALID_REQUEST, true);
    expect_err("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"x\":1}",
               PROTO_INVALID_REQUEST, true);
    expect_err("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"fly\"}",
               PROTO_METHOD_NOT_FOUND, true);
    /* positional params */
    expect_err("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\","
               "\"params\":[\"jobs\"]}",
               PROTO_INVALID_PARAMS, true);
    /* missing required */
    expect_err("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\","
               "\"params\":{}}",
               PROTO_INVALID_PARAMS, true);
    /* unknown param */
    expect_err("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\","
               "\"params\":{\"name\":\"a\",\"nme\":1}}",
               PROTO_INVALID_PARAMS, true);
    /* wrong types */
    expect_err("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\","
               "\"params\":{\"name\":5}}",
               PROTO_INVALID_PARAMS, true);
    expect_err("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"make\","
               "\"params\":{\"name\":\"a\",\"cap\":-1}}",
               PROTO_INVALID_PARAMS, true);
    expect_err("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"make\","
               "\"params\":{\"name\":\"a\",\"cap\":1.5}}",
               PROTO_INVALID_PARAMS, true);
    expect_err("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\","
               "\"params\":{\"name\":\"\"}}",
               PROTO_INVALID_PARAMS, true);
    /* timeout_ms only on blocking methods, and >= 0 */
    expect_err("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"close\","
               "\"params\":{\"name\":\"a\",\"timeout_ms\":1}}",
               PROTO_INVALID_PARAMS, true);
    expect_err("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\","
               "\"params\":{\"name\":\"a\",\"timeout_ms\":-1}}",
               PROTO_INVALID_PARAMS, true);
    expect_err("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\","
               "\"params\":{\"name\":\"a\",\"timeout_ms\":\"5\"}}",
               PROTO_INVALID_PARAMS, true);
}

static void test_answers(void **state)
{
    json_t *id = json_integer(9), *a, *b;
    proto_answer ans;
    proto_error err;
    size_t len;
    char *line;
    (void)state;

    a = proto_result(id, json_pack("{s:i}", "len", 3));
    line = proto_dump_line(a, &len);
    assert_non_null(line);
    assert_int_equal(line[len - 1], '\n');
    assert_int_equal(strlen("{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":"
                            "{\"len\":3}}\n"),
                     len);
    assert_memory_equal(line,
                        "{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":"
                        "{\"len\":3}}\n",
                        len);
    b = json_loadb(line, len - 1, 0, NULL);
    assert_int_equal(proto_answer_read(b, &ans, &err), 0);
    assert_int_equal(ans.id, 9);
    assert_int_equal(ans.code, 0);
    assert_int_equal(json_integer_value(json_object_get(ans.result, "len")), 3);
    free(line);
    json_decref(a);
    json_decref(b);

    a = proto_error_answer(id, proto_reason_code(PROTO_R_CLOSED),
                           PROTO_R_CLOSED, "send on closed channel", NULL);
    assert_int_equal(proto_answer_read(a, &ans, &err), 0);
    assert_int_equal(ans.code, -32001);
    assert_int_equal(ans.reason, PROTO_R_CLOSED);
    assert_string_equal(ans.message, "send on closed channel");
    assert_null(ans.result);
    json_decref(a);

    a = proto_error_answer(NULL, PROTO_PARSE_ERROR, PROTO_R_INVALID, "x", NULL);
    assert_int_equal(proto_answer_read(a, &ans, &err), 0);
    assert_int_equal(ans.id, -1);
    assert_true(json_is_null(json_object_get(a, "id")));
    json_decref(a);

    b = json_pack("{s:s,s:i}", "jsonrpc", "2.0", "id", 1);
    assert_int_equal(proto_answer_read(b, &ans, &err), -1);
    json_decref(b);
    json_decref(id);
}

static void test_request_new(void **state)
{
    json_t *r = proto_request_new(3, "recv", json_pack("{s:s}", "name", "q"));
    json_t *n = proto_request_new(-1, "ping", NULL);
    proto_request req;
    proto_error err;
    (void)state;
    assert_int_equal(proto_check_request(r, &req, &err), 0);
    assert_int_equal(json_integer_value(req.id), 3);
    assert_int_equal(proto_check_request(n, &req, &err), 0);
    assert_null(req.id);
    json_decref(r);
    json_decref(n);
}

/* Every request line in PROTOCOL.md's examples is valid, and every
 * method in the table has at least one example. */
static void test_protocol_md_examples(void **state)
{
    FILE *f = fopen("proto/PROTOCOL.md", "r");
    char line[4096];
    size_t n = 0, nm = 0;
    const proto_method *t = proto_methods(&nm);
    bool *seen = calloc(nm, sizeof *seen);
    (void)state;

    if (!f)
        skip(); /* run from the repository's top directory */
    while (fgets(line, sizeof line, f)) {
        char *p = line;
        proto_request req;
        proto_error err;
        while (*p == ' ')
            p++;
        if (strncmp(p, "{\"jsonrpc\":\"2.0\",\"id\":", 22) != 0 ||
            !strstr(p, "\"method\""))
            continue;
        json_t *msg = parse_big(p, &err);
        if (!msg || proto_check_request(msg, &req, &err) != 0)
            fail_msg("PROTOCOL.md example invalid: %s(%s)", p, err.message);
        seen[req.method->id] = true;
        json_decref(msg);
        n++;
    }
    fclose(f);
    for (size_t i = 0; i < nm; i++)
        if (!seen[i])
            fail_msg("PROTOCOL.md has no example for %s", t[i].name);
    assert_true(n >= nm);
    free(seen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reasons),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_parse_ok),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_check_ok),
        cmocka_unit_test(test_check_errors),
        cmocka_unit_test(test_answers),
        cmocka_unit_test(test_request_new),
        cmocka_unit_test(test_protocol_md_examples),
    };
    return cmocka_run_group_tests_name("proto", tests, NULL, NULL);
}
