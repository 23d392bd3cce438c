/*
 * test_jfast.c - proto/jfast.c held differentially to jansson: every input
 * goes to both jfast_parse and json_loadb (JSON_REJECT_DUPLICATES |
 * JSON_DECODE_ANY); when jfast accepts, jansson must accept the same tree
 * (json_equal and the same dumped bytes, so types and key order too); when
 * jansson refuses, jfast must have declined.  jfast_dump must write
 * json_dumpb's bytes (JSON_COMPACT | JSON_ENCODE_ANY) for every tree.
 *
 * Inputs: a table of hand-written cases for each jansson rule, the
 * malformed-input files and the fuzz corpora, and randomly generated texts
 * and trees (JFAST_SEED and JFAST_ITERS override the seed and the count;
 * a failure prints both and the input).  Some cases must be accepted, so
 * that the fast path cannot silently go dead.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jfast.h"
#include "../common/testpath.h"
#include "../common/testrand.h"
#include "proto.h"

#define LLVMFuzzerTestOneInput fuzz_jfast_one
#include "../fuzz/fuzz_jfast.c"
#undef LLVMFuzzerTestOneInput

#define LOAD_FLAGS (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY)
#define DUMP_FLAGS (JSON_COMPACT | JSON_ENCODE_ANY)

/* ------------------------------------------------------------------ */
/* Helpers                                                            */
/* ------------------------------------------------------------------ */

static uint64_t seed_used; /* printed with every failure */

/* Prints s (n bytes) with C escapes, for failure messages. */
static void print_input(const char *what, const char *s, size_t n)
{
    fprintf(stderr, "%s (%zu bytes, seed %llu): \"", what, n,
            (unsigned long long)seed_used);
    for (size_t i = 0; i < n && i < 2000; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(stderr, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f)
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\"\n");
}

/* Returns json_dumpb's text of v in a new buffer (NULL if it fails). */
static char *ref_dump(const json_t *v, size_t *n)
{
    char *s;

    *n = json_dumpb(v, NULL, 0, DUMP_FLAGS);
    if (*n == 0)
        return NULL;
    s = malloc(*n);
    assert_non_null(s);
    assert_int_equal(json_dumpb(v, s, *n, DUMP_FLAGS), *n);
    return s;
}

/* Asserts jfast_dump(v) is json_dumpb(v), or that both fail. */
static void check_dump(const json_t *v, const char *what)
{
    jfast_buf b = {0};
    size_t n;
    char *ref = ref_dump(v, &n);
    int rc = jfast_dump(&b, v);

    if (!ref) {
        if (rc == 0) {
            print_input("jfast_dump succeeded where json_dumpb failed", b.p,
                        b.len);
            fail_msg("%s", what);
        }
        assert_int_equal(b.len, 0);
        free(b.p);
        return;
    }
    if (rc != 0 || b.len != n || memcmp(b.p, ref, n) != 0) {
        print_input("json_dumpb", ref, n);
        print_input("jfast_dump", b.p ? b.p : "", rc ? 0 : b.len);
        fail_msg("dump differs: %s", what);
    }
    free(ref);
    free(b.p);
}

/* Runs one input through both parsers and compares.  Returns 1 when jfast
 * accepted it, 0 when it declined; *jansson_ok tells whether jansson
 * accepted it. */
static int check_parse(const char *s, size_t n, bool *jansson_ok)
{
    json_error_t err;
    json_t *fast = jfast_parse(s, n);
    json_t *ref = json_loadb(s, n, LOAD_FLAGS, &err);

    if (jansson_ok)
        *jansson_ok = ref != NULL;
    if (fast) {
        size_t nf, nr;
        char *df, *dr;
        if (!ref) {
            print_input("input", s, n);
            fail_msg("jfast accepted what jansson refuses: %s", err.text);
        }
        df = ref_dump(fast, &nf);
        dr = ref_dump(ref, &nr);
        assert_non_null(df);
        assert_non_null(dr);
        if (!json_equal(fast, ref) || nf != nr || memcmp(df, dr, nf) != 0) {
            print_input("input", s, n);
            print_input("jansson's tree", dr, nr);
            print_input("jfast's tree", df, nf);
            fail_msg("trees differ");
        }
        free(df);
        free(dr);
        json_decref(fast);
    }
    if (ref) {
        check_dump(ref, "parsed tree");
        json_decref(ref);
    }
    return fast != NULL;
}

/* ------------------------------------------------------------------ */
/* (a) hand-written cases                                             */
/* ------------------------------------------------------------------ */

enum { ACCEPT, REFUSE, EITHER };

typedef struct pcase {
    const char *text;
    size_t len; /* 0: strlen */
    int want;   /* ACCEPT: both accept; REFUSE: jansson refuses (so jfast
                   must decline); EITHER: valid, jfast may decline */
} pcase;

#define A(s)                                                                   \
    {                                                                          \
        s, 0, ACCEPT                                                           \
    }
#define R(s)                                                                   \
    {                                                                          \
        s, 0, REFUSE                                                           \
    }
#define E(s)                                                                   \
    {                                                                          \
        s, 0, EITHER                                                           \
    }
#define RN(s)                                                                  \
    {                                                                          \
        s, sizeof s - 1, REFUSE                                                \
    } /* with NUL bytes */

static const pcase cases[] = {
    /* the request and answer shapes of the protocol */
    A("{\"jsonrpc\":\"2.0\",\"id\":17,\"method\":\"send\",\"params\":"
      "{\"name\":\"q\",\"value\":\"abc\"}}"),
    A("{\"jsonrpc\":\"2.0\",\"id\":17,\"result\":{\"value\":\"abc\","
      "\"ok\":true}}"),
    A("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\",\"params\":"
      "{\"name\":\"jobs\",\"timeout_ms\":250}}"),
    A("{\"jsonrpc\":\"2.0\",\"method\":\"ping\"}"),
    A("{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,"
      "\"message\":\"parse error\",\"data\":{\"reason\":\"invalid\"}}}"),
    A("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},"
      "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"len\",\"params\":"
      "{\"name\":\"a\"}}]"),
    A("{\"jsonrpc\":\"2.0\",\"id\":\"abc\",\"method\":\"send\",\"params\":"
      "{\"name\":\"q\",\"value\":{\"task\":\"test\",\"n\":[1,2,{}],"
      "\"ok\":false,\"x\":null}}}"),
    A("{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"select\",\"params\":"
      "{\"cases\":[{\"op\":\"recv\",\"name\":\"a\"},{\"op\":\"send\","
      "\"name\":\"b\",\"value\":\"hi\\n\"}],\"default\":true}}"),
    /* top-level scalars (JSON_DECODE_ANY) and structures */
    A("{}"),
    A("[]"),
    A("\"\""),
    A("\"abc\""),
    A("0"),
    A("-0"),
    A("7"),
    A("-1"),
    A("123456789"),
    A("true"),
    A("false"),
    A("null"),
    A("[1,2,3]"),
    A("[[],{},[[]],[{}]]"),
    A("{\"a\":{\"b\":{\"c\":{}}}}"),
    A("[\"a\",1,true,false,null,[],{}]"),
    /* integers: the int64 edges, -0, leading zeros */
    A("9223372036854775807"),
    A("-9223372036854775808"),
    A("1000000000000000000"),
    A("-999999999999999999"),
    R("9223372036854775808"),
    R("-9223372036854775809"),
    R("12345678901234567890"),
    R("-12345678901234567890"),
    R("99999999999999999999999"),
    R("01"),
    R("-01"),
    R("00"),
    R("-00"),
    R("[01]"),
    R("-"),
    R("--1"),
    R("+1"),
    R("- 1"),
    R("0x10"),
    R("1a"),
    R("[1a]"),
    R("Infinity"),
    R("-Infinity"),
    R("NaN"),
    R("[-]"),
    /* reals: valid, left to jansson */
    E("1.5"),
    E("-0.0"),
    E("1e3"),
    E("1E3"),
    E("1e+3"),
    E("1e-3"),
    E("0.1e5"),
    E("[1.5,2]"),
    E("{\"a\":-0.0}"),
    R("1e400"),
    R("1."),
    R(".5"),
    R("1e"),
    R("1e+"),
    R("1.e3"),
    R("-.5"),
    R("1.5.5"),
    /* keywords */
    R("tru"),
    R("truex"),
    R("True"),
    R("nul"),
    R("nulll"),
    R("fals"),
    R("[true1]"),
    R("[true,]"),
    R("[null null]"),
    R("t"),
    R("n"),
    R("f"),
    /* whitespace: space, \t, \n, \r only */
    A(" {\"a\" : [ 1 , 2 ] } "),
    A("\t\n\r {\t\"a\"\n:\r1\t}\n\r\t"),
    A("\n7\n"),
    A("  \"x\"  "),
    A("[ ]"),
    A("{ }"),
    A("[\n]"),
    R("\f1"),
    R("1\f"),
    R("\v1"),
    R("1\v"),
    R("\xc2\xa0"
      "1"),
    R("1\xc2\xa0"),
    R("[1,\f2]"),
    /* empty and trailing input */
    R(""),
    R(" "),
    R("\n"),
    R("{"),
    R("}"),
    R("["),
    R("]"),
    R("[1"),
    R("[1,"),
    R("{\"a\""),
    R("{\"a\":"),
    R("{\"a\":1"),
    R("{\"a\":1,"),
    R("1 2"),
    R("{} x"),
    R("[]]"),
    R("{}}"),
    R("[],"),
    R("\"a\" \"b\""),
    R("{}{}"),
    R("[1]x"),
    R("nullx"),
    RN("[1]\0"),
    RN("\0[1]"),
    RN("\0"),
    RN("[1]\0 "),
    RN("\"a\"\0"),
    /* jansson drops a NUL right after a number or a word (its unget of the
     * NUL looks like an empty buffer); valid to it, declined here */
    {"1\0", 2, EITHER},
    {"[1\0]", 4, EITHER},
    {"true\0", 5, EITHER},
    /* syntax */
    R("[1,]"),
    R("[,1]"),
    R("[,]"),
    R("{\"a\":1,}"),
    R("{,}"),
    R("{\"a\"}"),
    R("{\"a\":}"),
    R("{1:2}"),
    R("{a:1}"),
    R("{'a':1}"),
    R("[1 2]"),
    R("{\"a\" 1}"),
    R("{\"a\"::1}"),
    R("{\"a\":1 \"b\":2}"),
    R("['a']"),
    R("[\"a\":1]"),
    R("{\"a\",1}"),
    /* strings: simple escapes */
    A("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\""),
    A("\"\\/\""),
    A("\"/\""),
    A("{\"k\\n\\t\":\"v\\\\\"}"),
    A("\"\\\"\""),
    A("\"\\\\\""),
    R("\"\\x\""),
    R("\"\\a\""),
    R("\"\\'\""),
    R("\"\\U0041\""),
    R("\"\\\""),
    R("\"\\"),
    R("\"abc"),
    R("\""),
    R("\"\\ \""),
    /* \u escapes and surrogate pairs */
    A("\"\\u0041\""),
    A("\"\\u00e9\""),
    A("\"\\u00E9\""),
    A("\"\\u20AC\""),
    A("\"\\u20ac\""),
    A("\"\\u0001\""),
    A("\"\\u001f\""),
    A("\"\\u007f\""),
    A("\"\\u0080\""),
    A("\"\\u07ff\""),
    A("\"\\u0800\""),
    A("\"\\uffff\""),
    A("\"\\ufeff\""),
    A("\"\\ud83d\\ude00\""),
    A("\"\\uD83D\\uDE00\""),
    A("\"\\ud800\\udc00\""),
    A("\"\\udbff\\udfff\""),
    A("\"x\\u0041y\\u00e9z\\ud83d\\ude00!\""),
    R("\"\\u0000\""),
    R("\"a\\u0000b\""),
    R("{\"\\u0000\":1}"),
    R("{\"a\\u0000\":1}"),
    R("\"\\u12\""),
    R("\"\\u12G4\""),
    R("\"\\u\""),
    R("\"\\u123\""),
    R("\"\\uzzzz\""),
    R("\"\\ud800\""),
    R("\"\\udbff\""),
    R("\"\\ud800x\""),
    R("\"\\ud800\\u0041\""),
    R("\"\\ud800\\ud800\""),
    R("\"\\udc00\""),
    R("\"\\udfff\""),
    R("\"\\udc00\\ud800\""),
    R("\"\\ud800\\\""),
    R("\"\\ud800\\u\""),
    R("\"\\ud800\\udc0\""),
    R("\"\\ud800\\n\""),
    R("\"\\u00\"00\""),
    /* raw control characters are errors; DEL is not */
    R("\"a\x01\""),
    R("\"\x1f\""),
    R("\"a\nb\""),
    R("\"a\tb\""),
    R("\"\r\""),
    RN("\"a\0b\""),
    RN("\"\0\""),
    A("\"\x7f\""),
    A("\"a\x7f"
      "b\""),
    /* raw UTF-8: valid passes, invalid is an error */
    A("\"\xc3\xa9\""),
    A("\"\xe2\x82\xac\""),
    A("\"\xf0\x9f\x98\x80\""),
    A("\"\xc2\x80\""),
    A("\"\xdf\xbf\""),
    A("\"\xe0\xa0\x80\""),
    A("\"\xef\xbf\xbf\""),
    A("\"\xf0\x90\x80\x80\""),
    A("\"\xf4\x8f\xbf\xbf\""),
    A("{\"\xc3\xa9t\xc3\xa9\":\"\xe2\x82\xac\"}"),
    A("\"\xc3\xa9\\n\xe2\x82\xac\""),
    A("\"\xee\x80\x80\""),
    R("\"\xff\""),
    R("\"\xfe\""),
    R("\"\x80\""),
    R("\"\xbf\""),
    R("\"\xc0\x80\""),
    R("\"\xc1\xbf\""),
    R("\"\xe0\x80\x80\""),
    R("\"\xe0\x9f\xbf\""),
    R("\"\xed\xa0\x80\""),
    R("\"\xed\xbf\xbf\""),
    R("\"\xf0\x80\x80\x80\""),
    R("\"\xf0\x8f\xbf\xbf\""),
    R("\"\xf4\x90\x80\x80\""),
    R("\"\xf5\x80\x80\x80\""),
    R("\"\xf8\x88\x80\x80\x80\""),
    R("\"\xe2\x82\""),
    R("\"\xc3\""),
    R("\"\xe2\x82"),
    R("\"\xc3"),
    R("\"\xc3\xc3\""),
    R("\"\xe2\x28\xa1\""),
    R("{\"\xff\":1}"),
    R("\xc3\xa9"),
    R("[\xc3\xa9]"),
    R("\"\\\xc3\xa9\""),
    R("\xef\xbb\xbf{}"),
    /* duplicate keys, at every level, also spelled differently */
    R("{\"a\":1,\"a\":2}"),
    R("{\"a\":1,\"b\":2,\"a\":3}"),
    R("{\"\":1,\"\":2}"),
    R("{\"a\":1,\"\\u0061\":2}"),
    R("{\"\\u0061\":1,\"a\":2}"),
    R("{\"\\u0061\":1,\"\\u0061\":2}"),
    R("{\"\xc3\xa9\":1,\"\\u00e9\":2}"),
    R("{\"a\":{\"b\":1,\"b\":2}}"),
    R("{\"a\":{\"b\":1},\"a\":2}"),
    R("[{\"x\":1},{\"y\":1,\"y\":2}]"),
    R("{\"a\":{\"b\":{\"c\":1}},\"d\":{\"c\":2,\"c\":3}}"),
    A("{\"a\":{\"a\":1},\"b\":{\"a\":2}}"),
    A("{\"a\":{\"b\":1,\"c\":2},"
      "\"b\":3,\"c\":{\"b\":4}}"),
    A("{\"\":1}"),
    A("{\"a\":1,\"A\":2,\"aa\":3,\"a \":4}"),
    A("{\"\\u0061\":1,\"b\":2}"),
    A("[{\"a\":1},{\"a\":2}]"),
    A("{\"ab\":1,\"a\":2,\"b\":3}"),
};

static void test_table(void **state)
{
    (void)state;
    seed_used = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const pcase *c = &cases[i];
        size_t n = c->len ? c->len : strlen(c->text);
        bool ok;
        int fast = check_parse(c->text, n, &ok);

        if ((c->want == ACCEPT && (!ok || !fast)) ||
            (c->want == REFUSE && ok) || (c->want == EITHER && !ok)) {
            print_input("case", c->text, n);
            fail_msg("case %zu: want %s, jansson %s, jfast %s", i,
                     c->want == ACCEPT   ? "accept"
                     : c->want == REFUSE ? "refuse"
                                         : "either",
                     ok ? "accepts" : "refuses", fast ? "accepts" : "declines");
        }
        fuzz_jfast_one((const uint8_t *)c->text, n);
    }
}

/* Objects with many members: past the fast duplicate table (64 keys). */
static void test_many_keys(void **state)
{
    char *s = malloc(64 * 1024);
    size_t n;

    (void)state;
    assert_non_null(s);
    for (int keys = 1; keys <= 300; keys += (keys < 80 ? 1 : 37)) {
        for (int dup = -1; dup < keys; dup += (keys < 80 ? 1 : 11)) {
            bool ok;
            n = 0;
            s[n++] = '{';
            for (int k = 0; k < keys; k++) {
                /* Every 7th key escaped, so that both checks are mixed. */
                int id = k == keys - 1 && dup >= 0 ? dup : k;
                n += (size_t)sprintf(
                    s + n, k % 7 == 3 ? "%s\"\\u006b%d\":%d" : "%s\"k%d\":%d",
                    k ? "," : "", id, k);
            }
            s[n++] = '}';
            int fast = check_parse(s, n, &ok);
            assert_true(ok == (dup < 0 || dup == keys - 1));
            assert_true(fast == ok);
        }
    }
    /* Nested objects each with many keys, and a duplicate in the outer one
     * after the inner ones have filled and emptied the table. */
    n = (size_t)sprintf(s, "{");
    for (int k = 0; k < 40; k++) {
        n += (size_t)sprintf(s + n, "%s\"o%d\":{", k ? "," : "", k);
        for (int j = 0; j < 50; j++)
            n += (size_t)sprintf(s + n, "%s\"i%d\":%d", j ? "," : "", j, j);
        n += (size_t)sprintf(s + n, "}");
    }
    strcpy(s + n, ",\"o3\":1}");
    assert_int_equal(check_parse(s, strlen(s), NULL), 0);
    s[n] = '}';
    assert_int_equal(check_parse(s, n + 1, NULL), 1);
    free(s);
}

/* Nesting: accepted up to jfast's depth (128), declined beyond, refused by
 * jansson past its 2048. */
static void test_depth(void **state)
{
    size_t max = 5000;
    char *s = malloc(7 * max + 8);

    (void)state;
    assert_non_null(s);
    for (size_t d = 1; d <= max; d = d < 300 ? d + 1 : d * 2) {
        for (int kind = 0; kind < 2; kind++) {
            size_t n = 0;
            bool ok;
            for (size_t i = 0; i < d; i++) {
                if (kind)
                    n += (size_t)sprintf(s + n, "{\"a\":");
                else
                    s[n++] = '[';
            }
            s[n++] = '1';
            for (size_t i = 0; i < d; i++)
                s[n++] = kind ? '}' : ']';
            int fast = check_parse(s, n, &ok);
            if (d <= 120)
                assert_true(fast && ok);
            if (d >= 2048)
                assert_false(ok);
        }
    }
    free(s);
}

/* ------------------------------------------------------------------ */
/* (b) files: malformed inputs and the fuzz corpora                   */
/* ------------------------------------------------------------------ */

/* Returns the tests/ directory (static buffer): from the working directory
 * or from $CHAND_BIN (build/.../chand), as test_fuzz_regressions does. */
static const char *tests_dir(void)
{
    return testpath("tests/data/malformed") ? testpath("tests") : NULL;
}

typedef struct file_stats {
    int files, whole_ok, whole_fast;  /* whole files */
    int pieces, accepted, jansson_ok; /* their lines */
} file_stats;

/* Checks one file whole, without its final newline, and line by line. */
static void check_file(const char *buf, size_t n, file_stats *st)
{
    bool ok;
    size_t i = 0;

    st->files++;
    st->whole_fast += check_parse(buf, n, &ok);
    st->whole_ok += ok;
    fuzz_jfast_one((const uint8_t *)buf, n);
    while (i < n) {
        const char *nl = memchr(buf + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - buf) : n;
        st->pieces++;
        st->accepted += check_parse(buf + i, end - i, &ok);
        st->jansson_ok += ok;
        i = end + 1;
    }
}

static bool opendir_is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Checks every file of tests/<sub> (and of its subdirectories). */
static void check_dir(const char *sub, file_stats *st)
{
    const char *top = tests_dir();
    char dir[PATH_MAX + 200];
    struct dirent *e;
    DIR *d;

    assert_non_null(top);
    snprintf(dir, sizeof dir, "%s/%s", top, sub);
    d = opendir(dir);
    assert_non_null(d);
    while ((e = readdir(d))) {
        char p[PATH_MAX + 600], subp[600];
        size_t sz;
        char *buf;

        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        snprintf(subp, sizeof subp, "%s/%s", sub, e->d_name);
        if (opendir_is_dir(p)) {
            check_dir(subp, st);
            continue;
        }
        buf = testfile_read(p, &sz);
        if (!buf)
            continue;
        check_file(buf, sz, st);
        free(buf);
    }
    closedir(d);
}

static void test_files(void **state)
{
    file_stats mal = {0}, proto = {0}, broker = {0}, jf = {0};
    file_stats regs = {0};

    (void)state;
    seed_used = 0;
    check_dir("data/malformed", &mal);
    check_dir("fuzz/corpus/proto", &proto);
    check_dir("fuzz/corpus/broker", &broker);
    check_dir("fuzz/corpus/jfast", &jf);
    check_dir("fuzz/regressions", &regs);
    fprintf(stderr,
            "malformed: %d files, %d valid; proto seeds: %d files, %d valid, "
            "%d by jfast; broker seeds: %d files, %d lines, %d valid, %d by "
            "jfast; jfast seeds: %d files; regressions: %d files\n",
            mal.files, mal.whole_ok, proto.files, proto.whole_ok,
            proto.whole_fast, broker.files, broker.pieces, broker.jansson_ok,
            broker.accepted, jf.files, regs.files);
    assert_true(mal.files >= 60);
    assert_true(broker.files > 0 && jf.files > 0);
    /* The proto seeds are one request per method, without reals: the fast
     * path must take every one of them. */
    assert_true(proto.files >= 50);
    assert_int_equal(proto.whole_ok, proto.files);
    assert_int_equal(proto.whole_fast, proto.files);
}

/* ------------------------------------------------------------------ */
/* (c) random texts, mutated texts and random trees                   */
/* ------------------------------------------------------------------ */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    return testrand_next(&rng_state);
}

static uint32_t rndn(uint32_t n)
{
    return (uint32_t)((rnd() >> 32) % n);
}

typedef struct tbuf {
    char *p;
    size_t len, cap;
} tbuf;

static void tput(tbuf *t, const char *s, size_t n)
{
    if (t->len + n > t->cap) {
        t->cap = (t->len + n) * 2 + 64;
        t->p = realloc(t->p, t->cap);
        assert_non_null(t->p);
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
}

static void tputs(tbuf *t, const char *s)
{
    tput(t, s, strlen(s));
}

static void tputc(tbuf *t, char c)
{
    tput(t, &c, 1);
}

static void gen_ws(tbuf *t)
{
    static const char ws[] = " \t\n\r";
    if (rndn(4) == 0) {
        int n = 1 + (int)rndn(3);
        while (n--)
            tputc(t, ws[rndn(4)]);
    }
}

/* Returns a random code point: mostly small, sometimes astral; never a
 * surrogate, never 0. */
static uint32_t gen_cp(void)
{
    switch (rndn(4)) {
    case 0:
        return 1 + rndn(0x7f);
    case 1:
        return 0x80 + rndn(0x800 - 0x80);
    case 2: {
        uint32_t v = 0x800 + rndn(0x10000 - 0x800);
        return v >= 0xd800 && v <= 0xdfff ? v - 0x800 : v;
    }
    default:
        return 0x10000 + rndn(0x110000 - 0x10000);
    }
}

static void put_utf8(tbuf *t, uint32_t v)
{
    char d[4];
    size_t n;
    if (v < 0x80) {
        d[0] = (char)v;
        n = 1;
    } else if (v < 0x800) {
        d[0] = (char)(0xc0 | (v >> 6));
        d[1] = (char)(0x80 | (v & 0x3f));
        n = 2;
    } else if (v < 0x10000) {
        d[0] = (char)(0xe0 | (v >> 12));
        d[1] = (char)(0x80 | ((v >> 6) & 0x3f));
        d[2] = (char)(0x80 | (v & 0x3f));
        n = 3;
    } else {
        d[0] = (char)(0xf0 | (v >> 18));
        d[1] = (char)(0x80 | ((v >> 12) & 0x3f));
        d[2] = (char)(0x80 | ((v >> 6) & 0x3f));
        d[3] = (char)(0x80 | (v & 0x3f));
        n = 4;
    }
    tput(t, d, n);
}

static void put_u(tbuf *t, uint32_t v)
{
    char s[8];
    snprintf(s, sizeof s, rndn(2) ? "\\u%04x" : "\\u%04X", v);
    tputs(t, s);
}

/* A string body.  clean: only what jfast must accept. */
static void gen_string_body(tbuf *t, bool clean)
{
    static const char esc[] = "\"\\/bfnrt";
    int n = (int)rndn(rndn(8) ? 10 : 80);

    for (int i = 0; i < n; i++) {
        uint32_t r = rndn(100), v;
        if (r < 55) {
            char c;
            do
                c = (char)(0x20 + rndn(0x60));
            while (c == '"' || c == '\\');
            tputc(t, c);
        } else if (r < 67) {
            tputc(t, '\\');
            tputc(t, esc[rndn(8)]);
        } else if (r < 77) {
            v = gen_cp();
            if (v < 0x10000) {
                put_u(t, v);
            } else {
                v -= 0x10000;
                put_u(t, 0xd800 | (v >> 10));
                put_u(t, 0xdc00 | (v & 0x3ff));
            }
        } else if (r < 90 || clean) {
            /* raw: no control character, quote or backslash */
            do
                v = gen_cp();
            while (v < 0x20 || v == '"' || v == '\\');
            put_utf8(t, v);
        } else {
            /* things jansson refuses */
            static const char *const bad[] = {
                "\\u0000", "\\ud800",  "\\udc00",        "\\ud800\\u0041",
                "\\x",     "\\u12",    "\x01",           "\n",
                "\xff",    "\xc0\x80", "\xed\xa0\x80",   "\xf4\x90\x80\x80",
                "\xc3",    "\x80",     "\\uD83D\\uD83D",
            };
            tputs(t, bad[rndn(sizeof bad / sizeof bad[0])]);
            if (rndn(2) == 0)
                tput(t, "\0", 1);
        }
    }
}

static void gen_int(tbuf *t, bool clean)
{
    static const char *const edge[] = {
        "0",
        "-0",
        "9223372036854775807",
        "-9223372036854775808",
        "999999999999999999",
        "-999999999999999999",
        "1000000000000000000",
    };
    static const char *const bad_or_real[] = {
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616",
        "123456789012345678901",
        "01",
        "-01",
        "1.5",
        "-0.0",
        "1e3",
        "2E-2",
        "0.1e+5",
        "1e400",
        "3.141592653589793",
        "-",
        "1.",
        ".5",
    };
    char s[32];
    uint32_t r = rndn(100);

    if (r < 60)
        snprintf(s, sizeof s, "%d", (int)rndn(2000) - 1000);
    else if (r < 75)
        snprintf(s, sizeof s, "%lld",
                 (long long)(rnd() >> rndn(64)) * (rndn(2) ? 1 : -1));
    else if (r < 85 || clean)
        snprintf(s, sizeof s, "%s", edge[rndn(sizeof edge / sizeof edge[0])]);
    else
        snprintf(s, sizeof s, "%s",
                 bad_or_real[rndn(sizeof bad_or_real / sizeof bad_or_real[0])]);
    tputs(t, s);
}

static void gen_value(tbuf *t, int depth, bool clean)
{
    uint32_t r = rndn(100);

    if (depth > 6 || r < 45) {
        r = rndn(100);
        if (r < 40) {
            tputc(t, '"');
            gen_string_body(t, clean);
            tputc(t, '"');
        } else if (r < 80) {
            gen_int(t, clean);
        } else {
            static const char *const kw[] = {"true", "false", "null"};
            tputs(t, kw[rndn(3)]);
        }
        return;
    }
    if (r < 75) {
        int n = (int)rndn(depth < 2 && rndn(5) == 0 ? 30 : 5);
        tputc(t, '{');
        gen_ws(t);
        for (int i = 0; i < n; i++) {
            if (i) {
                tputc(t, ',');
                gen_ws(t);
            }
            tputc(t, '"');
            if (clean || rndn(3)) {
                /* unique: the member index, sometimes spelled with an
                 * escape, after a random body */
                char k[24];
                gen_string_body(t, true);
                snprintf(k, sizeof k, rndn(4) ? "#%d" : "\\u0023%d", i);
                tputs(t, k);
            } else {
                /* a tiny alphabet, so duplicates happen */
                static const char *const keys[] = {"a", "b", "\\u0061", ""};
                tputs(t, keys[rndn(4)]);
            }
            tputc(t, '"');
            gen_ws(t);
            tputc(t, ':');
            gen_ws(t);
            gen_value(t, depth + 1, clean);
            gen_ws(t);
        }
        tputc(t, '}');
    } else {
        int n = (int)rndn(depth < 2 && rndn(5) == 0 ? 30 : 5);
        tputc(t, '[');
        gen_ws(t);
        for (int i = 0; i < n; i++) {
            if (i) {
                tputc(t, ',');
                gen_ws(t);
            }
            gen_value(t, depth + 1, clean);
            gen_ws(t);
        }
        tputc(t, ']');
    }
}

static void mutate(tbuf *t)
{
    static const char interesting[] = "\"\\{}[],: 09-.eEu+tfn\x00\x01\x1f"
                                      "\x7f\x80\xbf\xc3\xed\xf0\xf4\xff\t\n";
    int n = 1 + (int)rndn(3);

    while (n--) {
        size_t at = t->len ? rndn((uint32_t)t->len) : 0;
        char c = rndn(4) ? interesting[rndn(sizeof interesting - 1)]
                         : (char)rndn(256);
        switch (rndn(5)) {
        case 0: /* replace */
            if (t->len)
                t->p[at] = c;
            break;
        case 1: /* insert */
            tputc(t, 0);
            memmove(t->p + at + 1, t->p + at, t->len - 1 - at);
            t->p[at] = c;
            break;
        case 2: /* delete */
            if (t->len) {
                memmove(t->p + at, t->p + at + 1, t->len - at - 1);
                t->len--;
            }
            break;
        case 3: /* truncate */
            t->len = at;
            break;
        default: { /* duplicate a slice at the end */
            size_t k = t->len - at > 8 ? 8 : t->len - at;
            char tmp[8];
            memcpy(tmp, t->p + at, k);
            tput(t, tmp, k);
            break;
        }
        }
    }
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *s = getenv(name);
    return s && *s ? strtoull(s, NULL, 0) : dflt;
}

/* Iterations of the random tests: fewer under ASan, which is ~5x slower
 * and runs in `make asan` beside everything else. */
#if defined(__SANITIZE_ADDRESS__)
#define JFAST_ITERS_DEFAULT 60000
#else
#define JFAST_ITERS_DEFAULT 150000
#endif

static void test_random_texts(void **state)
{
    uint64_t iters = env_u64("JFAST_ITERS", JFAST_ITERS_DEFAULT);
    tbuf t = {0};
    uint64_t clean_ok = 0, clean_fast = 0, any_ok = 0, any_fast = 0;
    uint64_t mut_ok = 0, mut_fast = 0;

    (void)state;
    seed_used = env_u64("JFAST_SEED", 0x6a66617374ULL);
    rng_state = seed_used;
    fprintf(stderr, "random texts: seed %llu, %llu iterations\n",
            (unsigned long long)seed_used, (unsigned long long)iters);
    for (uint64_t i = 0; i < iters; i++) {
        bool clean = (i & 1) == 0, ok;
        int fast;

        t.len = 0;
        gen_ws(&t);
        gen_value(&t, 0, clean);
        gen_ws(&t);
        fast = check_parse(t.p, t.len, &ok);
        if (clean) {
            /* Only what the fast path handles: it must take it all. */
            if (!ok || !fast) {
                print_input("clean input", t.p, t.len);
                fail_msg("iteration %llu: jansson %d, jfast %d",
                         (unsigned long long)i, ok, fast);
            }
            clean_ok += ok;
            clean_fast += fast;
        } else {
            any_ok += ok;
            any_fast += fast;
        }
        mutate(&t);
        mut_fast += check_parse(t.p, t.len, &ok);
        mut_ok += ok;
    }
    fprintf(stderr,
            "clean: %llu valid, %llu by jfast; mixed: %llu valid, %llu by "
            "jfast; mutated: %llu valid, %llu by jfast\n",
            (unsigned long long)clean_ok, (unsigned long long)clean_fast,
            (unsigned long long)any_ok, (unsigned long long)any_fast,
            (unsigned long long)mut_ok, (unsigned long long)mut_fast);
    /* The mixed and mutated sets must reach both sides of each rule. */
    assert_true(any_ok > iters / 20 && any_ok < iters / 2);
    assert_true(mut_ok > iters / 50 && mut_ok < iters);
    free(t.p);
}

/* A random string of every kind of byte: ASCII 0x00-0x7f and valid
 * multi-byte UTF-8 (json_stringn checks it). */
static json_t *gen_tree_string(tbuf *t)
{
    int n = (int)rndn(rndn(6) ? 12 : 200);

    t->len = 0;
    for (int i = 0; i < n; i++) {
        if (rndn(3))
            tputc(t, (char)rndn(0x80));
        else
            put_utf8(t, gen_cp());
    }
    return json_stringn(t->p ? t->p : "", t->len);
}

static json_t *gen_tree(tbuf *t, int depth)
{
    uint32_t r = rndn(100);

    if (depth > 5 || r < 50) {
        r = rndn(100);
        if (r < 35)
            return gen_tree_string(t);
        if (r < 55) {
            static const json_int_t edge[] = {
                0, 1, -1, INT64_MAX, INT64_MIN, INT64_MIN + 1, 1000000000000LL};
            return json_integer(rndn(2) ? (json_int_t)(rnd() >> rndn(64))
                                        : edge[rndn(7)]);
        }
        if (r < 80) {
            static const double edge[] = {0.0,
                                          -0.0,
                                          1.0,
                                          -1.5,
                                          0.1,
                                          1e300,
                                          -1e-300,
                                          5e-324,
                                          1.7976931348623157e308,
                                          123456789.0,
                                          1e16,
                                          1e17,
                                          3.14159265358979};
            double d;
            if (rndn(2)) {
                d = edge[rndn(sizeof edge / sizeof edge[0])];
            } else {
                uint64_t bits = rnd();
                memcpy(&d, &bits, sizeof d);
                if (!isfinite(d))
                    d = (double)(int64_t)bits / 1e6;
            }
            return json_real(d);
        }
        return r < 87 ? json_true() : r < 94 ? json_false() : json_null();
    }
    if (r < 75) {
        json_t *o = json_object();
        int n = (int)rndn(8);
        assert_non_null(o);
        for (int i = 0; i < n; i++) {
            json_t *k = gen_tree_string(t);
            assert_non_null(k);
            assert_int_equal(json_object_setn_new(o, json_string_value(k),
                                                  json_string_length(k),
                                                  gen_tree(t, depth + 1)),
                             0);
            json_decref(k);
        }
        return o;
    }
    json_t *a = json_array();
    int n = (int)rndn(8);
    assert_non_null(a);
    for (int i = 0; i < n; i++)
        assert_int_equal(json_array_append_new(a, gen_tree(t, depth + 1)), 0);
    return a;
}

static void test_random_trees(void **state)
{
    uint64_t iters = env_u64("JFAST_ITERS", JFAST_ITERS_DEFAULT) / 3;
    tbuf t = {0};

    (void)state;
    seed_used = env_u64("JFAST_SEED", 0x6a66617374ULL) ^ 0x7472656573ULL;
    rng_state = seed_used;
    for (uint64_t i = 0; i < iters; i++) {
        json_t *v = gen_tree(&t, 0);
        assert_non_null(v);
        check_dump(v, "random tree");
        json_decref(v);
    }
    free(t.p);
}

/* Every single byte and code point as a string value and as a key. */
static void test_dump_strings(void **state)
{
    tbuf t = {0};

    (void)state;
    seed_used = 0;
    for (uint32_t c = 0; c < 0x110000; c += c < 0x1000 ? 1 : 97) {
        json_t *s, *o;
        if (c >= 0xd800 && c <= 0xdfff)
            continue;
        t.len = 0;
        tputs(&t, "a");
        put_utf8(&t, c);
        tputs(&t, "z");
        s = json_stringn(t.p, t.len);
        assert_non_null(s);
        check_dump(s, "one code point");
        o = json_object();
        assert_non_null(o);
        assert_int_equal(json_object_setn(o, t.p, t.len, s), 0);
        check_dump(o, "one code point as a key");
        json_decref(o);
        json_decref(s);
    }
    /* Bytes that are not UTF-8: jansson fails a value and, oddly, goes on
     * after a key (jfast copies both behaviours). */
    static const char *const bad[] = {
        "\xff",      "a\xff",    "a\\\n\"\xc3", "\xed\xa0\x80", "\xc0\x80",
        "x\ty\xf8z", "\xe2\x82", "ok\x01\x80",  "\n\n\xfe\t",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *s = json_string_nocheck(bad[i]);
        json_t *o = json_object(), *a = json_array();
        assert_non_null(s);
        assert_non_null(o);
        assert_non_null(a);
        check_dump(s, "invalid UTF-8 value");
        assert_int_equal(json_object_set_nocheck(o, bad[i], json_true()), 0);
        assert_int_equal(json_object_set_nocheck(o, "k", s), 0);
        check_dump(o, "invalid UTF-8 key and value");
        assert_int_equal(json_object_del(o, "k"), 0);
        check_dump(o, "invalid UTF-8 key");
        assert_int_equal(json_array_append(a, o), 0);
        assert_int_equal(json_array_append_new(a, json_integer(5)), 0);
        check_dump(a, "invalid UTF-8 key inside an array");
        json_decref(a);
        json_decref(o);
        json_decref(s);
    }
    free(t.p);
}

/* Deep trees go to json_dumpb past jfast's depth; cycles fail in both. */
static void test_dump_deep_and_cycles(void **state)
{
    json_t *root = json_array(), *cur = root, *a, *b;
    jfast_buf buf = {0};

    (void)state;
    assert_non_null(root);
    for (int i = 0; i < 1000; i++) {
        json_t *next = i % 2 ? json_array() : json_object();
        assert_non_null(next);
        if (json_is_array(cur))
            assert_int_equal(json_array_append_new(cur, next), 0);
        else
            assert_int_equal(json_object_set_new(cur, "k\n", next), 0);
        if (json_is_array(cur))
            assert_int_equal(json_array_append_new(cur, json_real(0.5)), 0);
        cur = next;
    }
    check_dump(root, "deep tree");

    a = json_array();
    b = json_object();
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(json_array_append(a, b), 0);
    assert_int_equal(json_object_set(b, "a", a), 0);
    assert_int_equal(json_array_append(cur, a), 0);
    check_dump(a, "cycle");
    check_dump(root, "cycle deep down");
    assert_int_equal(jfast_put(&buf, "x", 1), 0);
    assert_int_equal(jfast_dump(&buf, a), -1);
    assert_int_equal(buf.len, 1); /* untouched on failure */
    assert_int_equal(jfast_dump(&buf, NULL), -1);
    assert_int_equal(buf.len, 1);
    json_object_clear(b);
    json_decref(a);
    json_decref(b);
    json_decref(root);
    free(buf.p);
}

/* Parses "[0,1,...,1099]" n times; 0 when every value read back right. */
static void *small_ints_parse(void *arg)
{
    const char *text = arg;
    for (int round = 0; round < 200; round++) {
        json_t *a = jfast_parse(text, strlen(text));
        if (!a || json_array_size(a) != 1100)
            return (void *)1;
        for (size_t i = 0; i < 1100; i++)
            if (json_integer_value(json_array_get(a, i)) != (json_int_t)i)
                return (void *)1;
        json_decref(a);
    }
    return NULL;
}

/* Small non-negative integers are shared (jfast.c: one allocation each,
 * kept), larger and negative ones are fresh; either way the tree equals
 * jansson's.  Threads parsing at once fill the shared slots without a
 * wrong value or a leak (ASan). */
static void test_small_ints_shared(void **state)
{
    char text[8192], *q = text;
    json_t *a, *b, *j;
    pthread_t th[4];
    (void)state;

    *q++ = '[';
    for (int i = 0; i < 1100; i++)
        q += sprintf(q, "%s%d", i ? "," : "", i);
    *q++ = ']';
    *q = 0;
    for (int t = 0; t < 4; t++)
        assert_int_equal(pthread_create(&th[t], NULL, small_ints_parse, text),
                         0);
    for (int t = 0; t < 4; t++) {
        void *rc;
        assert_int_equal(pthread_join(th[t], &rc), 0);
        assert_null(rc);
    }
    a = jfast_parse(text, strlen(text));
    b = jfast_parse(text, strlen(text));
    j = json_loadb(text, strlen(text), JSON_DECODE_ANY, NULL);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(j);
    assert_true(json_equal(a, j));
    assert_ptr_equal(json_array_get(a, 1), json_array_get(b, 1));
    assert_ptr_equal(json_array_get(a, 1023), json_array_get(b, 1023));
    assert_ptr_not_equal(json_array_get(a, 1024), json_array_get(b, 1024));
    json_decref(a);
    json_decref(b);
    json_decref(j);
    a = jfast_parse("[-1,-0,0]", 9);
    b = jfast_parse("[-1,-0,0]", 9);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(json_array_get(a, 0), json_array_get(b, 0));
    assert_int_equal(json_integer_value(json_array_get(a, 0)), -1);
    assert_int_equal(json_integer_value(json_array_get(a, 1)), 0);
    assert_ptr_equal(json_array_get(a, 2), json_array_get(b, 2));
    json_decref(a);
    json_decref(b);
}

/* jfast_put_int against printf at every length's edges (0, 9, 10, 99,
 * 100, ... 10^18 - 1, 10^18, the int64 ends) and both signs, appended
 * after other bytes so that the length it reserves is checked too. */
static void test_put_int(void **state)
{
    (void)state;
    for (int k = 0; k <= 19; k++) {
        int64_t p = 1;
        for (int i = 0; i < k && i < 18; i++)
            p *= 10;
        int64_t vals[] = {p - 1,
                          p,
                          p + 1,
                          -(p - 1),
                          -p,
                          -p - 1,
                          k == 19 ? INT64_MAX : p * 7 + 3,
                          k == 19 ? INT64_MIN : -(p * 7 + 3)};
        for (size_t j = 0; j < sizeof vals / sizeof vals[0]; j++) {
            jfast_buf b = {0};
            char want[32];
            int n = snprintf(want, sizeof want, "x%lld", (long long)vals[j]);
            assert_int_equal(jfast_put(&b, "x", 1), 0);
            assert_int_equal(jfast_put_int(&b, (json_int_t)vals[j]), 0);
            assert_int_equal(b.len, (size_t)n);
            assert_memory_equal(b.p, want, b.len);
            free(b.p);
        }
    }
}

/* The buffer: appends, growth, a line built from pieces. */
static void test_buffer(void **state)
{
    jfast_buf b = {0};
    json_t *v = json_pack("{s:s,s:i}", "value", "abc", "n", 5);
    char *big = malloc(1 << 20);

    (void)state;
    assert_non_null(v);
    assert_non_null(big);
    assert_int_equal(jfast_put(&b, "", 0), 0);
    assert_int_equal(jfast_put(&b, "{\"result\":", 10), 0);
    assert_int_equal(jfast_dump(&b, v), 0);
    assert_int_equal(jfast_put(&b, "}\n", 2), 0);
    assert_int_equal(b.len,
                     strlen("{\"result\":{\"value\":\"abc\",\"n\":5}}\n"));
    assert_memory_equal(b.p, "{\"result\":{\"value\":\"abc\",\"n\":5}}\n",
                        b.len);
    assert_true(b.cap >= b.len);
    /* a megabyte string with an escape every 1000 bytes */
    memset(big, 'x', 1 << 20);
    for (size_t i = 0; i < (1 << 20); i += 1000)
        big[i] = i % 2000 ? '\n' : '"';
    json_t *s = json_stringn(big, 1 << 20);
    assert_non_null(s);
    check_dump(s, "a megabyte string");
    json_decref(s);
    json_decref(v);
    free(big);
    free(b.p);
}

/* proto_parse_line and proto_dump_line: unchanged on the wire. */
static void test_proto_lines(void **state)
{
    static const char req[] = "{\"jsonrpc\":\"2.0\",\"id\":17,\"method\":"
                              "\"send\",\"params\":{\"name\":\"q\","
                              "\"value\":\"abc\"}}";
    proto_error err;
    size_t len;
    json_t *v = proto_parse_line(req, sizeof req - 1, NULL, &err), *ans, *id;
    char *line;

    (void)state;
    assert_non_null(v);
    line = proto_dump_line(v, &len);
    assert_non_null(line);
    assert_int_equal(len, sizeof req);
    assert_memory_equal(line, req, sizeof req - 1);
    assert_int_equal(line[len - 1], '\n');
    free(line);
    json_decref(v);

    /* Errors still come from jansson, word for word. */
    assert_null(proto_parse_line("{\"a\":1,\"a\":2}", 13, NULL, &err));
    assert_int_equal(err.code, PROTO_PARSE_ERROR);
    assert_non_null(strstr(err.message, "duplicate object key"));
    assert_null(proto_parse_line("[1.5,", 5, NULL, &err));
    assert_int_equal(err.code, PROTO_PARSE_ERROR);
    v = proto_parse_line("[1.5]", 5, NULL, &err);
    assert_non_null(v);
    assert_true(json_is_real(json_array_get(v, 0)));
    json_decref(v);

    id = json_integer(17);
    assert_non_null(id);
    /* the id is borrowed, the result stolen */
    ans = proto_result(id, json_pack("{s:s,s:b}", "value", "abc", "ok", 1));
    json_decref(id);
    assert_non_null(ans);
    line = proto_dump_line(ans, &len);
    assert_non_null(line);
    assert_int_equal(len, strlen("{\"jsonrpc\":\"2.0\",\"id\":17,\"result\":"
                                 "{\"value\":\"abc\",\"ok\":true}}\n"));
    assert_memory_equal(line,
                        "{\"jsonrpc\":\"2.0\",\"id\":17,\"result\":"
                        "{\"value\":\"abc\",\"ok\":true}}\n",
                        len);
    free(line);
    json_decref(ans);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_many_keys),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_random_texts),
        cmocka_unit_test(test_random_trees),
        cmocka_unit_test(test_dump_strings),
        cmocka_unit_test(test_dump_deep_and_cycles),
        cmocka_unit_test(test_small_ints_shared),
        cmocka_unit_test(test_put_int),
        cmocka_unit_test(test_buffer),
        cmocka_unit_test(test_proto_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
