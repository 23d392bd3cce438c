/*
 * test_scan.c - unit tests of proto_scan_request, the single-pass reader of
 * the common request: it accepts every example request of PROTOCOL.md
 * (every method) as the general path reads it; its names cache shares a
 * busy name's string; it declines every invalid request and every shape
 * it leaves to the general path; and over corpora and a quarter of a
 * million mutated lines, under tight and default limits, whatever it
 * accepts the general path accepts as the same request (fuzz_scan_agrees,
 * shared with tests/fuzz/fuzz_proto.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LLVMFuzzerTestOneInput fuzz_proto_one
#include "../common/testpath.h"
#include "../common/testrand.h"
#include "../fuzz/fuzz_proto.c"
#undef LLVMFuzzerTestOneInput

#define MAX_EXAMPLES 256

/* PROTOCOL.md's example request lines (static storage). */
static char examples[MAX_EXAMPLES][1024];
static size_t nexamples;

static void load_examples(void)
{
    FILE *f;
    char line[1024];

    if (nexamples)
        return;
    f = fopen("proto/PROTOCOL.md", "r");
    assert_non_null(f); /* the tests run from the repository's top */
    while (fgets(line, sizeof line, f) && nexamples < MAX_EXAMPLES) {
        char *p = line;
        size_t n;
        while (*p == ' ')
            p++;
        if (strncmp(p, "{\"jsonrpc\":\"2.0\",", 17) != 0 ||
            !strstr(p, "\"method\""))
            continue;
        n = strcspn(p, "\n");
        memcpy(examples[nexamples], p, n);
        examples[nexamples][n] = '\0';
        nexamples++;
    }
    fclose(f);
    assert_true(nexamples >= 50);
}

static bool scan_ok(const char *s)
{
    return fuzz_scan_agrees(s, strlen(s), NULL);
}

static void test_scan_examples(void **state)
{
    size_t nm = 0;
    const proto_method *t = proto_methods(&nm);
    bool *seen = calloc(nm, sizeof *seen);
    (void)state;

    assert_non_null(seen);
    load_examples();
    for (size_t i = 0; i < nexamples; i++) {
        proto_request req;
        if (!proto_scan_request(examples[i], strlen(examples[i]), NULL, &req))
            fail_msg("the scanner declines PROTOCOL.md's %s", examples[i]);
        seen[req.method->id] = true;
        proto_request_clear(&req);
        assert_true(scan_ok(examples[i]));
    }
    for (size_t i = 0; i < nm; i++)
        if (!seen[i])
            fail_msg("no accepted example for %s", t[i].name);
    free(seen);
}

static void test_scan_fields(void **state)
{
    const char *line =
        "{\"jsonrpc\":\"2.0\",\"id\":17,\"method\":\"recv\",\"params\":"
        "{\"name\":\"jobs\",\"timeout_ms\":250}}";
    proto_request req;
    (void)state;

    assert_true(proto_scan_request(line, strlen(line), NULL, &req));
    assert_string_equal(req.method->name, "recv");
    assert_int_equal(json_integer_value(req.id), 17);
    assert_int_equal(req.timeout_ms, 250);
    assert_true(req.owned);
    assert_null(req.params);
    assert_string_equal(
        json_string_value(req.args[proto_param_index(req.method, "name")]),
        "jobs");
    proto_request_clear(&req);
    assert_null(req.id);
    assert_int_equal(req.timeout_ms, -1);

    /* Whitespace anywhere JSON allows it, a notification, a null id, a
     * string id, nested values. */
    assert_true(scan_ok(" { \"jsonrpc\" : \"2.0\" , \"method\" : \"ping\" } "));
    assert_true(
        scan_ok("{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}"));
    assert_true(scan_ok("{\"id\":\"a\\u00e9\",\"jsonrpc\":\"2.0\",\"method\":"
                        "\"send\",\"params\":{\"value\":{\"a\":[1,{\"b\":"
                        "null}],\"c\":\"\\n\"},\"name\":\"q\"}}"));
}

/* "any" values already in compact form are left as their text: plain
 * strings and integers; everything else is built as a JSON value, and
 * every one of these lines reads the same either way (scan_ok). */
static void test_scan_text_values(void **state)
{
    static const struct {
        const char *v;
        const char *text;
    } cases[] = {
        {"\"abc\"", "\"abc\""},
        {"\"\"", "\"\""},
        {" \"a b\" ", "\"a b\""},
        {"0", "0"},
        {"-7", "-7"},
        {"123456789012345678", "123456789012345678"},
        {"1234567890123456789", NULL}, /* 19 digits: jansson's */
        {"-0", NULL},                  /* jansson writes 0 */
        {"1.5", NULL},                 /* reals: declined */
        {"1e3", NULL},
        {"\"a\\nb\"", NULL}, /* an escape */
        {"\"caf\u00e9\"", NULL},
        {"\"caf\xc3\xa9\"", NULL}, /* UTF-8: left to jansson */
        {"true", NULL},
        {"null", NULL},
        {"[1]", NULL},
        {"{\"a\":1}", NULL},
    };
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char line[256];
        proto_request req;
        int iv;
        snprintf(line, sizeof line,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"send\","
                 "\"params\":{\"name\":\"q\",\"value\":%s}}",
                 cases[i].v);
        if (!proto_scan_request(line, strlen(line), NULL, &req)) {
            /* reals: the general path's (jfast declines them) */
            if (cases[i].text || !strpbrk(cases[i].v, ".e"))
                fail_msg("%s: declined", cases[i].v);
            continue;
        }
        iv = proto_param_index(req.method, "value");
        if (cases[i].text) {
            assert_null(req.args[iv]);
            assert_non_null(req.text[iv].p);
            assert_int_equal(req.text[iv].n, strlen(cases[i].text));
            assert_memory_equal(req.text[iv].p, cases[i].text, req.text[iv].n);
        } else {
            if (!req.args[iv])
                fail_msg("%s: not read as a JSON value", cases[i].v);
            assert_null(req.text[iv].p);
        }
        proto_request_clear(&req);
        assert_true(scan_ok(line));
    }
    /* A value followed by what cannot follow it is declined as before. */
    assert_false(
        scan_ok("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":"
                "\"send\",\"params\":{\"name\":\"q\",\"value\":12x}}"));
    assert_false(scan_ok("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":"
                         "\"send\",\"params\":{\"name\":\"q\",\"value\":1,"
                         "\"value\":2}}"));
}

/* The names cache: a busy name is one shared string; other names, names
 * with escapes and other parameters are read as ever. */
static void test_scan_names(void **state)
{
    const char *l1 = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"send\","
                     "\"params\":{\"name\":\"jobs\",\"value\":\"jobs\"}}";
    const char *l2 = "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"recv\","
                     "\"params\":{\"name\":\"jobs\"}}";
    const char *l3 = "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"recv\","
                     "\"params\":{\"name\":\"j\\u006fbs\"}}";
    proto_names *names = proto_names_new();
    proto_request a, b, c;
    int ia, iv;
    (void)state;

    assert_non_null(names);
    assert_true(proto_scan_request_names(l1, strlen(l1), NULL, names, &a));
    assert_true(proto_scan_request_names(l2, strlen(l2), NULL, names, &b));
    assert_true(proto_scan_request_names(l3, strlen(l3), NULL, names, &c));
    ia = proto_param_index(a.method, "name");
    iv = proto_param_index(a.method, "value");
    assert_ptr_equal(a.args[ia], b.args[ia]); /* one string, two refs */
    assert_null(a.args[iv]); /* values: not cached (kept as text) */
    assert_int_equal(a.text[iv].n, 6);
    assert_ptr_not_equal(c.args[ia], b.args[ia]); /* escaped: read anew */
    assert_string_equal(json_string_value(c.args[ia]), "jobs");
    proto_request_clear(&a);
    proto_request_clear(&b);
    proto_names_free(names); /* c's string outlives the cache */
    assert_string_equal(json_string_value(c.args[ia]), "jobs");
    proto_request_clear(&c);
}

/* Lines the general path rejects, or reads in a way the scanner leaves to
 * it: all declined. */
static void test_scan_declines(void **state)
{
    static const char *const lines[] = {
        "",
        "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\r",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"} x",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"",
        "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}",
        "{\"jsonrpc\":\"2.0\",\"jsonrpc\":\"2.0\",\"id\":1,\"method\":"
        "\"ping\"}",
        "{\"id\":1,\"method\":\"ping\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1}",
        "{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"ping\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"fly\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"x\":1}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"params\":{},\"method\":\"ping\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\\u0069ng\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\",\"params\":[]}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\",\"params\":{}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\",\"params\":"
        "{\"name\":\"a\",\"name\":\"b\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\",\"params\":"
        "{\"name\":\"a\",\"nme\":1}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\",\"params\":"
        "{\"name\":5}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\",\"params\":"
        "{\"name\":\"\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"make\",\"params\":"
        "{\"name\":\"a\",\"cap\":-1}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"close\",\"params\":"
        "{\"name\":\"a\",\"timeout_ms\":1}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\",\"params\":"
        "{\"name\":\"a\",\"timeout_ms\":-1}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\",\"params\":"
        "{\"name\":\"a\",\"timeout_ms\":1,\"timeout_ms\":2}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\",\"params\":"
        "{\"name\":\"a\",\"timeout_ms\":1000000000001}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"timer.after\",\"params\":"
        "{\"name\":\"a\",\"ms\":1000000000001}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"send\",\"params\":"
        "{\"name\":\"a\",\"value\":1x}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"send\",\"params\":"
        "{\"name\":\"a\",\"value\":01}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"send\",\"params\":"
        "{\"name\":\"a\",\"value\":\"\\u0000\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"send\",\"params\":"
        "{\"name\":\"a\",\"value\":\"\xff\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":99999999999999999999,\"method\":\"ping\"}",
    };
    proto_request req;
    (void)state;

    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        if (proto_scan_request(lines[i], strlen(lines[i]), NULL, &req))
            fail_msg("the scanner accepts %s", lines[i]);
    /* Limits: too long, and values deeper than max_depth allows (the
     * envelope and params take two levels). */
    {
        const char *l = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"send\","
                        "\"params\":{\"name\":\"a\",\"value\":[[1]]}}";
        proto_limits deep3 = {0, 3}, deep4 = {0, 4}, short_ = {20, 0};
        assert_false(proto_scan_request(l, strlen(l), &deep3, &req));
        assert_true(fuzz_scan_agrees(l, strlen(l), &deep4));
        assert_false(proto_scan_request(l, strlen(l), &short_, &req));
    }
}

/* Every line of the seed corpora and the malformed-input collection. */
static void test_scan_corpora(void **state)
{
    static const char *const dirs[] = {
        "tests/fuzz/corpus/proto",
        "tests/fuzz/corpus/broker",
        "tests/fuzz/corpus/jfast",
        "tests/data/malformed",
    };
    proto_limits tight = {4096, 16};
    size_t files = 0, accepted = 0;
    (void)state;

    for (size_t d = 0; d < sizeof dirs / sizeof dirs[0]; d++) {
        DIR *dir = opendir(dirs[d]);
        struct dirent *e;
        assert_non_null(dir);
        while ((e = readdir(dir)) != NULL) {
            char path[512], *buf;
            size_t n;
            if (e->d_name[0] == '.')
                continue;
            snprintf(path, sizeof path, "%s/%s", dirs[d], e->d_name);
            buf = testfile_read(path, &n);
            if (!buf)
                continue;
            /* The whole file, and each of its lines. */
            accepted += fuzz_scan_agrees(buf, (size_t)n, NULL);
            accepted += fuzz_scan_agrees(buf, (size_t)n, &tight);
            for (char *p = buf, *end = buf + n; p < end;) {
                char *nl = memchr(p, '\n', (size_t)(end - p));
                size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
                accepted += fuzz_scan_agrees(p, len, NULL);
                p += len + 1;
            }
            free(buf);
            files++;
        }
        closedir(dir);
    }
    assert_true(files > 100);
    assert_true(accepted > 50);
}

/* Writes pre, n raw bytes of mid (NULs included) and post into line;
 * returns the length. */
static size_t splice3(char *line, const char *pre, const char *mid, size_t n,
                      const char *post)
{
    size_t a = strlen(pre), c = strlen(post);

    memcpy(line, pre, a);
    memcpy(line + a, mid, n);
    memcpy(line + a + n, post, c);
    return a + n + c;
}

/* Every byte value at every position of a name and of a key, across the
 * eight-byte steps of the plain-string scan: the scanner takes the line
 * exactly when the byte is printable ASCII other than '"' and '\\', and
 * agrees with the general path either way. */
static void test_scan_plain_bytes(void **state)
{
    char line[256];
    proto_request req;
    (void)state;

    for (int pos = 0; pos < 19; pos++) {
        for (int c = 0; c < 256; c++) {
            char name[19], key[19];
            bool plain = c >= 0x20 && c <= 0x7e && c != '"' && c != '\\';
            size_t len;
            bool took;

            memset(name, 'n', sizeof name);
            name[pos] = (char)c;
            len = splice3(line,
                          "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"send\","
                          "\"params\":{\"name\":\"",
                          name, sizeof name, "\",\"value\":1}}");
            took = proto_scan_request(line, len, NULL, &req);
            assert_int_equal(took, plain);
            if (took)
                proto_request_clear(&req);
            assert_int_equal(fuzz_scan_agrees(line, len, NULL), took);

            /* In a parameter key (never a parameter): always declined. */
            memcpy(key, "timeout_ms_and_mor", sizeof key);
            key[pos] = (char)c;
            len = splice3(line,
                          "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\","
                          "\"params\":{\"name\":\"q\",\"",
                          key, sizeof key, "\":1}}");
            assert_false(proto_scan_request(line, len, NULL, &req));
            assert_false(fuzz_scan_agrees(line, len, NULL));
        }
    }
}

/* select's cases: the usual compact shapes are read into proto_case
 * entries (names, values, order), anything else into the general JSON
 * array; both agree with the general path. */
static void test_scan_select_cases(void **state)
{
    static const char *const as_cases[] = {
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"select\",\"params\":"
        "{\"cases\":[{\"recv\":\"a\"},{\"send\":\"b\",\"value\":{\"x\":[1,2]}},"
        "{\"send\":\"c\",\"value\":\"v\"}]}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"select\",\"params\":"
        "{\"cases\":[],\"default\":true}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"select\",\"params\":"
        "{\"cases\":[{\"send\":\"c\",\"value\":-12},{\"send\":\"c\","
        "\"value\":\"a\\\"b\"},{\"send\":\"c\",\"value\":-0}]}}",
    };
    static const char *const as_array[] = {
        /* whitespace, value before send, an unknown key, an escape */
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"select\",\"params\":"
        "{\"cases\":[ {\"recv\":\"a\"} ]}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"select\",\"params\":"
        "{\"cases\":[{\"value\":1,\"send\":\"b\"}]}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"select\",\"params\":"
        "{\"cases\":[{\"recv\":\"a\",\"x\":1}]}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"select\",\"params\":"
        "{\"cases\":[{\"recv\":\"\\u0061\"}]}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"select\",\"params\":"
        "{\"cases\":[1,2]}}",
    };
    proto_request req;
    (void)state;

    assert_true(
        proto_scan_request(as_cases[0], strlen(as_cases[0]), NULL, &req));
    assert_null(req.args[0]);
    assert_int_equal(req.ncases, 3);
    assert_string_equal(json_string_value(req.cases[0].name), "a");
    assert_null(req.cases[0].value);
    assert_string_equal(json_string_value(req.cases[1].name), "b");
    assert_true(json_is_object(req.cases[1].value));
    assert_null(req.cases[1].text.p);
    /* a plain string: kept as its text */
    assert_null(req.cases[2].value);
    assert_int_equal(req.cases[2].text.n, 3);
    assert_memory_equal(req.cases[2].text.p, "\"v\"", 3);
    proto_request_clear(&req);
    assert_null(req.cases);
    assert_true(
        proto_scan_request(as_cases[1], strlen(as_cases[1]), NULL, &req));
    assert_non_null(req.cases);
    assert_int_equal(req.ncases, 0);
    assert_true(json_is_true(req.args[1]));
    proto_request_clear(&req);
    for (size_t i = 0; i < sizeof as_cases / sizeof as_cases[0]; i++)
        assert_true(scan_ok(as_cases[i]));
    for (size_t i = 0; i < sizeof as_array / sizeof as_array[0]; i++) {
        assert_true(
            proto_scan_request(as_array[i], strlen(as_array[i]), NULL, &req));
        assert_null(req.cases);
        assert_true(json_is_array(req.args[0]));
        proto_request_clear(&req);
        assert_true(scan_ok(as_array[i]));
    }
    /* A second cases member is jansson's duplicate-key error: declined. */
    assert_false(scan_ok("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"select\","
                         "\"params\":{\"cases\":[],\"cases\":[]}}"));
    /* The depth limit counts the array and the case: [[1]] inside a
     * case is 6 deep (envelope, params, cases, case, two arrays). */
    const char *deep = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"select\","
                       "\"params\":{\"cases\":[{\"send\":\"a\",\"value\":"
                       "[[1]]}]}}";
    proto_limits lim5 = {0, 5}, lim6 = {0, 6};
    assert_false(fuzz_scan_agrees(deep, strlen(deep), &lim5));
    assert_true(fuzz_scan_agrees(deep, strlen(deep), &lim6));
    assert_true(proto_scan_request(deep, strlen(deep), &lim6, &req));
    assert_int_equal(req.ncases, 1);
    proto_request_clear(&req);
}

static uint64_t rng_state;

static uint32_t rng(void)
{
    return (uint32_t)(testrand_next(&rng_state) >> 32);
}

/* Mutates the examples: byte changes to the characters that matter to a
 * JSON reader, deletions, insertions, duplicated spans, truncation. */
static void test_scan_mutations(void **state)
{
    static const char specials[] = "{}[]\",:\\ \t\r\n0123456789-+.eEtfnu\x7f"
                                   "\x80\xc3\xff";
    proto_limits lims[] = {{0, 0}, {4096, 16}, {0, 4}, {0, 3}};
    char buf[4096];
    size_t accepted = 0, runs = 250000;
    (void)state;

    load_examples();
    rng_state = 20261126;
    for (size_t r = 0; r < runs; r++) {
        const char *src = examples[rng() % nexamples];
        size_t n = strlen(src);
        int edits = 1 + (int)(rng() % 3);
        if (n >= sizeof buf / 2)
            continue;
        memcpy(buf, src, n);
        for (int e = 0; e < edits && n > 0; e++) {
            size_t at = rng() % n;
            switch (rng() % 5) {
            case 0: /* replace */
                buf[at] = specials[rng() % (sizeof specials - 1)];
                break;
            case 1: /* delete */
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
                break;
            case 2: /* insert */
                if (n + 1 < sizeof buf) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = specials[rng() % (sizeof specials - 1)];
                    n++;
                }
                break;
            case 3: { /* duplicate a span (members, keys, values) */
                size_t len = 1 + rng() % 24;
                if (at + len > n)
                    len = n - at;
                if (n + len < sizeof buf) {
                    memmove(buf + at + len, buf + at, n - at);
                    n += len;
                }
                break;
            }
            default: /* truncate */
                n = at;
                break;
            }
        }
        accepted += fuzz_scan_agrees(buf, n, &lims[r % 4]);
    }
    /* Edits in a value's text mostly leave a valid request: the scanner
     * must be taking part, not declining everything. */
    printf("scan: %zu of %zu mutated lines accepted\n", accepted, runs);
    assert_true(accepted > runs / 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scan_examples),
        cmocka_unit_test(test_scan_fields),
        cmocka_unit_test(test_scan_text_values),
        cmocka_unit_test(test_scan_names),
        cmocka_unit_test(test_scan_declines),
        cmocka_unit_test(test_scan_corpora),
        cmocka_unit_test(test_scan_plain_bytes),
        cmocka_unit_test(test_scan_select_cases),
        cmocka_unit_test(test_scan_mutations),
    };
    return cmocka_run_group_tests_name("scan", tests, NULL, NULL);
}
