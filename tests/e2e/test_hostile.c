/*
 * test_hostile.c - end-to-end: hostile input against a real daemon.
 *
 * Owns: the malformed-JSON corpus replay (tests/data/malformed/n_*.json,
 * JSONTestSuite-style cases written for chand), the generator of >= 10k bad
 * requests (mutated valid requests of every method, wrong types, missing
 * and extra fields, huge and negative numbers, duplicate keys, NUL bytes,
 * invalid UTF-8, 100k-deep nesting, select with 0 or 10k cases, odd
 * batches), and the checks that hold for all of them: exactly one answer
 * per line that asks for one (none for notifications), no crash, the daemon
 * keeps serving, and the ledger (tests/soak/ledger.h) returns to baseline.
 *
 * How answers are counted: every line is followed by a sentinel ping with
 * id "s<i>".  Answers that complete at once are written in order, so an
 * answer with a null id between sentinels s<i-1> and s<i> belongs to line
 * i; answers that may come later (a request that waited) carry a unique id
 * that this test put in the line.  Lines that parse are rewritten so that
 * nothing waits longer than 20 ms (a mutated recv could otherwise wait
 * forever, and then answer nothing while the test runs).
 *
 * CHAND_HOSTILE_N (default 12000) sets the number of generated lines,
 * CHAND_HOSTILE_SEED the generator's seed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto.h"
#include "../common/testd.h"
#include "../common/testpath.h"
#include "../common/testpath.h"
#include "../common/testrand.h"
#include "../soak/ledger.h"

#define ID_BASE 1000000000LL /* line i, member k: ID_BASE + i * 2048 + k */
#define WINDOW 64            /* lines in flight before reading answers */

static testd D;
static ledger BASE;
static uint64_t rng_state;

static size_t rndn(size_t n)
{
    return (size_t)testrand_below(&rng_state, n);
}

static int setup(void **state)
{
    (void)state;
    rng_state = testrand_seed("CHAND_HOSTILE_SEED", 88172645463325252ULL);
    if (testd_start(&D, NULL) != 0)
        return -1;
    return ledger_read(&D, &BASE);
}

static int teardown(void **state)
{
    (void)state;
    return testd_stop(&D) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* Lines, their expected answer count, and the sentinel protocol      */
/* ------------------------------------------------------------------ */

typedef struct line {
    char *buf; /* without '\n'; may hold NULs */
    size_t len;
    int expect; /* answers the line must get: 0 or 1 */
    bool json;  /* the line parses (and was rewritten) */
    int got;
    int errors; /* answers that were errors */
} line;

/* Returns the answers a request object gets: none for a notification (an
 * object without id whose method is a string, valid or not). */
static int expect_member(json_t *m)
{
    if (json_is_object(m) && !json_object_get(m, "id") &&
        json_is_string(json_object_get(m, "method")))
        return 0;
    return 1;
}

static int answers_due(json_t *v)
{
    size_t i, n;
    json_t *m;

    if (!json_is_array(v))
        return expect_member(v);
    n = json_array_size(v);
    if (n == 0 || n > 1000)
        return 1;
    json_array_foreach(v, i, m) if (expect_member(m)) return 1;
    return 0;
}

static bool is_lasting(const char *m)
{
    static const char *const lasting[] = {
        "mutex.lock",   "rwmutex.lock", "rwmutex.rlock",
        "once.do",      "cond.wait",    "wg.wait",
        "send",         "recv",         "select",
        "timer.ticker", "go",           "timer.afterfunc",
    };
    for (size_t i = 0; i < sizeof lasting / sizeof lasting[0]; i++)
        if (strcmp(m, lasting[i]) == 0)
            return true;
    return false;
}

static void sanitize_req(json_t *o, size_t li, size_t k, bool nested);

/* Keeps a request from waiting (or holding) long: clamps timeout_ms to
 * 0..20 ms, ticker periods to >= 50 ms, gomaxprocs to <= 4; nested
 * requests (go, afterfunc) that could wait or hold forever become pings,
 * since a detached holder is never released. */
static void sanitize_params(json_t *o, const char *m, size_t li, bool nested)
{
    json_t *p = json_object_get(o, "params");
    const proto_method *pm = proto_method_find(m);
    json_t *v;

    if (!json_is_object(p) || !pm)
        return;
    if (pm->blocking) {
        v = json_object_get(p, "timeout_ms");
        if (!v || (json_is_integer(v) && json_integer_value(v) > 20))
            json_object_set_new(p, "timeout_ms",
                                json_integer((json_int_t)rndn(21)));
    }
    v = json_object_get(p, "ms");
    if (strcmp(m, "timer.ticker") == 0 && json_is_integer(v) &&
        json_integer_value(v) < 50)
        json_object_set_new(p, "ms", json_integer(50));
    if (strcmp(m, "timer.afterfunc") == 0 && json_is_integer(v) &&
        json_integer_value(v) > 20)
        json_object_set_new(p, "ms", json_integer(20));
    v = json_object_get(p, "n");
    if (strcmp(m, "runtime.gomaxprocs") == 0 && json_is_integer(v) &&
        json_integer_value(v) > 4)
        json_object_set_new(p, "n", json_integer(2));
    v = json_object_get(p, "lease_ms");
    if (json_is_integer(v) && json_integer_value(v) > 20)
        json_object_set_new(p, "lease_ms", json_integer(20));
    v = json_object_get(p, "request");
    if (json_is_object(v))
        sanitize_req(v, li, 0, true);
    (void)nested;
}

/* Set while preparing lines that must reach the daemon as written (huge
 * durations on requests that cannot wait). */
static bool keep_params;

static void sanitize_req(json_t *o, size_t li, size_t k, bool nested)
{
    json_t *id, *m;

    if (!json_is_object(o))
        return;
    id = json_object_get(o, "id");
    if (!nested && id &&
        (json_is_string(id) || json_is_number(id) || json_is_null(id)))
        json_object_set_new(
            o, "id",
            json_integer(ID_BASE + (json_int_t)li * 2048 + (json_int_t)k));
    m = json_object_get(o, "method");
    if (!json_is_string(m))
        return;
    if (keep_params)
        return;
    if (nested && is_lasting(json_string_value(m))) {
        json_object_set_new(o, "method", json_string("ping"));
        json_object_del(o, "params");
        return;
    }
    sanitize_params(o, json_string_value(m), li, nested);
}

/* Makes line li ready to send: lines that parse are rewritten (unique ids,
 * short waits) and their expected answers computed; others are sent as
 * they are (one parse error each).  Takes buf (malloc'd). */
static void line_prepare(line *l, size_t li, char *buf, size_t len)
{
    static const proto_limits lim = {PROTO_MAX_LINE_DEFAULT,
                                     PROTO_MAX_DEPTH_DEFAULT};
    proto_error err;
    json_t *v;

    /* A '\n' would make two lines. */
    for (size_t i = 0; i < len; i++)
        if (buf[i] == '\n')
            buf[i] = ' ';
    v = proto_parse_line(buf, len, &lim, &err);
    l->got = l->errors = 0;
    l->json = v != NULL;
    if (!v) {
        l->buf = buf;
        l->len = len;
        l->expect = 1;
        return;
    }
    free(buf);
    if (json_is_array(v) && json_array_size(v) <= 1000) {
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m) sanitize_req(m, li, i, false);
        /* A member with an id makes the batch's answer attributable even
         * when it comes after other members waited. */
        if (json_array_size(v) > 0 && json_array_size(v) < 1000)
            json_array_append_new(
                v,
                json_pack("{s:s, s:I, s:s}", "jsonrpc", "2.0", "id",
                          (json_int_t)(ID_BASE + (json_int_t)li * 2048 + 2000),
                          "method", "ping"));
    } else if (!json_is_array(v)) {
        sanitize_req(v, li, 0, false);
    }
    l->expect = answers_due(v);
    l->buf = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    l->len = strlen(l->buf);
    json_decref(v);
}

/* Returns the line an answer belongs to by its id, or -1 (null id). */
static long owner_of(json_t *a, size_t nlines)
{
    json_t *id;
    if (json_is_array(a)) {
        size_t i;
        json_t *m;
        json_array_foreach(a, i, m)
        {
            long o = owner_of(m, nlines);
            if (o >= 0)
                return o;
        }
        return -1;
    }
    id = json_object_get(a, "id");
    if (json_is_integer(id) && json_integer_value(id) >= ID_BASE) {
        long o = (long)((json_integer_value(id) - ID_BASE) / 2048);
        return (size_t)o < nlines ? o : -1;
    }
    return -1;
}

/* Returns true when every line got at least the answers it expects. */
static bool all_answered(const line *ls, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ls[i].got < ls[i].expect)
            return false;
    return true;
}

/* Reads answers until sentinel s<want> (want == n: until every line has
 * its answers); counts each into its line. */
static void read_until(testd_conn *c, line *ls, size_t n, size_t want)
{
    char sent[32];
    snprintf(sent, sizeof sent, "s%zu", want);
    while (want < n || !all_answered(ls, n)) {
        char *raw = testd_recv_line(c, 30000);
        if (!raw)
            fail_msg("no answer up to sentinel %s (line %zu: %.200s)", sent,
                     want, ls[want].buf);
        json_t *a = json_loads(raw, JSON_DECODE_ANY, NULL);
        if (!a)
            fail_msg("answer is not JSON: %.200s", raw);
        free(raw);
        json_t *id = json_object_get(a, "id");
        if (json_is_string(id) && json_string_value(id)[0] == 's') {
            const char *s = json_string_value(id);
            bool done = strcmp(s, sent) == 0;
            assert_non_null(testd_result(a));
            json_decref(a);
            if (done)
                return;
            continue;
        }
        long o = owner_of(a, n);
        line *l = &ls[o >= 0 ? (size_t)o : want];
        l->got++;
        l->errors += json_object_get(a, "error") != NULL;
        json_decref(a);
    }
}

/* Sends every line with its sentinel (pipelined, WINDOW at a time), waits
 * for the waits to finish, and checks each line got what it expected. */
static void run_lines(line *ls, size_t n)
{
    testd_conn *c = testd_connect(&D);
    size_t sent = 0, read = 0;
    char sbuf[96];

    assert_non_null(c);
    while (read < n) {
        while (sent < n && sent - read < WINDOW) {
            char *b = malloc(ls[sent].len + 1);
            memcpy(b, ls[sent].buf, ls[sent].len);
            b[ls[sent].len] = '\n';
            assert_int_equal(testd_write(c, b, ls[sent].len + 1), 0);
            free(b);
            snprintf(sbuf, sizeof sbuf,
                     "{\"jsonrpc\":\"2.0\",\"id\":\"s%zu\",\"method\":"
                     "\"ping\"}",
                     sent);
            assert_int_equal(testd_send(c, sbuf), 0);
            sent++;
        }
        read_until(c, ls, n, read);
        read++;
    }
    /* Requests that waited (<= 20 ms each) answer late: wait until none
     * is parked. */
    for (int64_t t0 = testd_now_ms(); testd_now_ms() - t0 < 30000;) {
        ledger l;
        assert_int_equal(ledger_read(&D, &l), 0);
        if (l.waiters == BASE.waiters)
            break;
        testd_sleep_ms(5);
    }
    /* Their answers are on their way: read until each line has its own,
     * then a last sentinel shows no line gets one too many. */
    read_until(c, ls, n, n);
    snprintf(sbuf, sizeof sbuf,
             "{\"jsonrpc\":\"2.0\",\"id\":\"s%zu\",\"method\":\"ping\"}", n);
    assert_int_equal(testd_send(c, sbuf), 0);
    read_until(c, ls, n + 1, n);
    for (size_t i = 0; i < n; i++)
        if (ls[i].got != ls[i].expect)
            fail_msg("line %zu got %d answers, expected %d: %.300s", i,
                     ls[i].got, ls[i].expect, ls[i].buf);
    testd_close(c);
}

static void lines_free(line *ls, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ls[i].buf);
    free(ls);
}

/* Drops every object (timers, tickers and channels the lines made), then
 * checks the ledger is back to its baseline and no object remains. */
static void check_clean(void)
{
    testd_conn *c = testd_connect(&D);
    json_t *a = testd_call(c, 1, "list", NULL, 10000), *o;
    size_t i;
    ledger l;

    assert_non_null(testd_result(a));
    json_array_foreach(json_object_get(testd_result(a), "objects"), i, o)
    {
        json_t *d = testd_call(
            c, 2, "drop",
            json_pack("{s:O}", "name", json_object_get(o, "name")), 10000);
        assert_non_null(d);
        json_decref(d);
    }
    json_decref(a);
    testd_close(c);
    assert_true(testd_running(&D));
    assert_int_equal(ledger_wait(&D, &BASE, 0, 10000), 0);
    assert_int_equal(ledger_read(&D, &l), 0);
    assert_int_equal(l.objects, 0);
    ledger_print("after", &l);
}

/* ------------------------------------------------------------------ */
/* The malformed-JSON corpus                                          */
/* ------------------------------------------------------------------ */

/* Returns the directory of the malformed corpus (static buffer). */
static const char *corpus_dir(void)
{
    return testpath("tests/data/malformed");
}

static void test_corpus(void **state)
{
    const char *dir = corpus_dir();
    struct dirent *e;
    DIR *dp;
    line *ls = calloc(512, sizeof *ls);
    size_t n = 0;
    (void)state;

    assert_non_null(dir);
    dp = opendir(dir);
    assert_non_null(dp);
    while ((e = readdir(dp)) && n < 512) {
        char p[PATH_MAX + 400], *buf;
        size_t sz;
        if (strncmp(e->d_name, "n_", 2) != 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        buf = testfile_read(p, &sz);
        assert_non_null(buf);
        /* Every n_ case must be refused by the parser itself. */
        proto_limits lim = {PROTO_MAX_LINE_DEFAULT, PROTO_MAX_DEPTH_DEFAULT};
        proto_error err;
        json_t *v = proto_parse_line(buf, sz, &lim, &err);
        if (v)
            fail_msg("%s parses but is malformed", e->d_name);
        line_prepare(&ls[n], n, buf, sz);
        assert_int_equal(ls[n].expect, 1);
        n++;
    }
    closedir(dp);
    assert_true(n >= 50);
    run_lines(ls, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ls[i].errors, 1);
    fprintf(stderr, "corpus: %zu malformed lines, one error each\n", n);
    lines_free(ls, n);
    check_clean();
}

/* ------------------------------------------------------------------ */
/* Generated bad requests                                             */
/* ------------------------------------------------------------------ */

/* One valid request per method (the fuzz seed corpus has the same). */
static const char *const valid[] = {
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"hello\",\"params\":{"
    "\"version\":1}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"make\",\"params\":{\"name\":"
    "\"a\",\"cap\":2,\"type\":\"any\"}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"make\",\"params\":{\"name\":"
    "\"q\"}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"send\",\"params\":{\"name\":"
    "\"a\",\"value\":\"x\",\"timeout_ms\":0}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\",\"params\":{\"name\":"
    "\"a\",\"timeout_ms\":5}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"close\",\"params\":{\"name\":"
    "\"b\"}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"len\",\"params\":{\"name\":"
    "\"a\"}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"drop\",\"params\":{\"name\":"
    "\"b\"}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"list\",\"params\":{\"prefix\":"
    "\"a\"}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"select\",\"params\":{\"cases\":"
    "[{\"recv\":\"a\"},{\"send\":\"q\",\"value\":1}],\"default\":true}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"mutex.lock\",\"params\":{"
    "\"name\":\"m\",\"timeout_ms\":10}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"mutex.unlock\",\"params\":{"
    "\"name\":\"m\"}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"rwmutex.lock\",\"params\":{"
    "\"name\":\"rw\",\"lease_ms\":10}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"rwmutex.unlock\",\"params\":{"
    "\"name\":\"rw\",\"token\":1}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"rwmutex.rlock\",\"params\":{"
    "\"name\":\"rw\"}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"rwmutex.runlock\",\"params\":{"
    "\"name\":\"rw\"}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"cond.wait\",\"params\":{"
    "\"name\":\"c\",\"mutex\":\"m\",\"timeout_ms\":5}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"cond.signal\",\"params\":{"
    "\"name\":\"c\"}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"cond.broadcast\",\"params\":{"
    "\"name\":\"c\"}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"wg.add\",\"params\":{\"name\":"
    "\"w\",\"delta\":1}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"wg.done\",\"params\":{\"name\":"
    "\"w\"}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"wg.wait\",\"params\":{\"name\":"
    "\"w\",\"timeout_ms\":5}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"once.do\",\"params\":{\"name\":"
    "\"o\"}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"once.done\",\"params\":{"
    "\"name\":\"o\"}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"pool.put\",\"params\":{"
    "\"name\":\"p\",\"value\":[1,2]}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"pool.get\",\"params\":{"
    "\"name\":\"p\"}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"map.store\",\"params\":{"
    "\"name\":\"mp\",\"key\":\"k\",\"value\":{\"x\":1}}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"map.load\",\"params\":{"
    "\"name\":\"mp\",\"key\":\"k\"}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"map.delete\",\"params\":{"
    "\"name\":\"mp\",\"key\":\"k\"}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"map.load_or_store\",\"params\":"
    "{\"name\":\"mp\",\"key\":\"k\",\"value\":1}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"map.load_and_delete\","
    "\"params\":{\"name\":\"mp\",\"key\":\"k\"}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"map.swap\",\"params\":{"
    "\"name\":\"mp\",\"key\":\"k\",\"value\":2}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"map.compare_and_swap\","
    "\"params\":{\"name\":\"mp\",\"key\":\"k\",\"old\":2,\"new\":3}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"map.compare_and_delete\","
    "\"params\":{\"name\":\"mp\",\"key\":\"k\",\"old\":3}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"map.range\",\"params\":{"
    "\"name\":\"mp\"}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"map.len\",\"params\":{\"name\":"
    "\"mp\"}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"map.clear\",\"params\":{"
    "\"name\":\"mp\"}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"atomic.load\",\"params\":{"
    "\"name\":\"n\"}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"atomic.store\",\"params\":{"
    "\"name\":\"n\",\"value\":5}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"atomic.add\",\"params\":{"
    "\"name\":\"n\",\"delta\":-1}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"atomic.swap\",\"params\":{"
    "\"name\":\"n\",\"value\":7}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"atomic.compare_and_swap\","
    "\"params\":{\"name\":\"n\",\"old\":7,\"new\":8}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"timer.after\",\"params\":{"
    "\"name\":\"t\",\"ms\":5}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"timer.ticker\",\"params\":{"
    "\"name\":\"tk\",\"ms\":50}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"timer.stop\",\"params\":{"
    "\"name\":\"tk\"}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"timer.reset\",\"params\":{"
    "\"name\":\"t\",\"ms\":5}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"timer.afterfunc\",\"params\":{"
    "\"ms\":5,\"request\":{\"method\":\"close\",\"params\":{\"name\":\"b\"}}}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"go\",\"params\":{\"request\":{"
    "\"method\":\"send\",\"params\":{\"name\":\"a\",\"value\":1}}}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"runtime.stats\"}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"runtime.gomaxprocs\","
    "\"params\":{\"n\":2}}",
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"runtime.dump\"}",
    "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},{\"jsonrpc\":\"2.0\","
    "\"method\":\"len\",\"params\":{\"name\":\"a\"}}]",
};
#define NVALID (sizeof valid / sizeof valid[0])

/* Odd values to put anywhere: wrong types, huge and negative numbers,
 * NULs, long strings.  Raw JSON text, spliced in as is. */
static const char *const weird[] = {
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1.5",
    "-0",
    "1e308",
    "-1e308",
    "9223372036854775807",
    "-9223372036854775808",
    "4294967296",
    "18446744073709551616",
    "99999999999999999999999",
    "\"\"",
    "\"a\"",
    "\"\\u0000\"",
    "\"a\\u0000b\"",
    "\"\\ud800\"",
    "\"\\udfff\\ud800\"",
    "[]",
    "{}",
    "[[]]",
    "{\"\":{}}",
    "[1,2,3]",
    "\"\xff\"",
    "\"\xc0\x80\"",
    "\"\x7f\"",
    "\"\\n\"",
    "\"\\t\\r\"",
    "\"ping\"",
    "\"recv\"",
    "\"2.0\"",
    "\"mutex.lock\"",
    "-2147483649",
    "2147483648",
    "0.0000001",
    "\"\xe2\x80\xa8\"",
    "\"\xf4\x90\x80\x80\"",
    "\"\xed\xa0\x80\"",
};
#define NWEIRD (sizeof weird / sizeof weird[0])

static const char *const keys[] = {
    "jsonrpc", "id",   "method",  "params",  "name",     "value", "timeout_ms",
    "cap",     "type", "cases",   "default", "delta",    "key",   "old",
    "new",     "ms",   "request", "token",   "lease_ms", "mutex", "version",
    "prefix",  "n",    "recv",    "send",    "extra",    "",
};
#define NKEYS (sizeof keys / sizeof keys[0])

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static void sb_add(sbuf *b, const void *d, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

/* Finds the byte offsets of every value that follows a "key": in src. */
static size_t value_spots(const char *src, size_t *spots, size_t max)
{
    size_t n = 0;
    bool in = false;
    for (size_t i = 0; src[i] && n < max; i++) {
        if (src[i] == '"' && (i == 0 || src[i - 1] != '\\'))
            in = !in;
        else if (!in && src[i] == ':')
            spots[n++] = i + 1;
    }
    return n;
}

/* Returns the end of the JSON value starting at p (a small scanner that
 * balances brackets and strings; good enough for our own templates). */
static size_t value_end(const char *s, size_t p)
{
    int depth = 0;
    bool in = false;
    size_t i = p;
    for (; s[i]; i++) {
        char ch = s[i];
        if (in) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in = false;
            if (!in && depth == 0)
                return i + 1;
            continue;
        }
        if (ch == '"')
            in = true;
        else if (ch == '{' || ch == '[')
            depth++;
        else if (ch == '}' || ch == ']') {
            if (depth == 0)
                return i;
            if (--depth == 0)
                return i + 1;
        } else if (ch == ',' && depth == 0)
            return i;
    }
    return i;
}

/* Structured mutation: replace a value, drop a member, add a member,
 * duplicate a member, rename a key, or change the method name. */
static void mutate_structured(sbuf *out, const char *src)
{
    size_t spots[64], n = value_spots(src, spots, 64);
    size_t at = n ? spots[rndn(n)] : 0, end = value_end(src, at);
    int kind = (int)rndn(6);

    switch (kind) {
    case 0: /* replace a value with a weird one */
        sb_add(out, src, at);
        sb_str(out, weird[rndn(NWEIRD)]);
        sb_str(out, src + end);
        break;
    case 1: { /* drop the member "key":value (and one comma) */
        size_t ks = at - 1;
        while (ks > 0 && src[ks - 1] != ',' && src[ks - 1] != '{')
            ks--;
        size_t e = end;
        if (src[e] == ',')
            e++;
        else if (ks > 0 && src[ks - 1] == ',')
            ks--;
        sb_add(out, src, ks);
        sb_str(out, src + e);
        break;
    }
    case 2: { /* add a member, possibly a duplicate key */
        const char *o = strchr(src + (rndn(2) ? 0 : at), '{');
        size_t pos = o ? (size_t)(o - src) + 1 : 1;
        char mem[256];
        snprintf(mem, sizeof mem, "\"%s\":%s,", keys[rndn(NKEYS)],
                 weird[rndn(NWEIRD)]);
        sb_add(out, src, pos);
        sb_str(out, mem);
        sb_str(out, src + pos);
        break;
    }
    case 3: /* replace a value with a deep or long one */
        sb_add(out, src, at);
        if (rndn(2)) {
            size_t d = 1 + rndn(200);
            for (size_t i = 0; i < d; i++)
                sb_str(out, "[");
            for (size_t i = 0; i < d; i++)
                sb_str(out, "]");
        } else {
            size_t l = rndn(70000);
            sb_str(out, "\"");
            char *s = malloc(l + 1);
            memset(s, 'a' + (int)rndn(26), l);
            s[l] = '\0';
            sb_str(out, s);
            free(s);
            sb_str(out, "\"");
        }
        sb_str(out, src + end);
        break;
    case 4: { /* a method name that almost exists */
        const char *m = strstr(src, "\"method\":\"");
        if (!m) {
            sb_str(out, src);
            break;
        }
        size_t pos = (size_t)(m - src) + 10;
        sb_add(out, src, pos);
        static const char *const odd[] = {"X",    "",  ".",     "\\u0000",
                                          "\xff", " ", "mutex."};
        sb_str(out, odd[rndn(7)]);
        sb_str(out, src + pos);
        break;
    }
    default: { /* params becomes another type, or goes away */
        const char *p = strstr(src, "\"params\":");
        if (!p) {
            sb_str(out, src);
            break;
        }
        size_t pos = (size_t)(p - src) + 9;
        sb_add(out, src, pos);
        sb_str(out, weird[rndn(NWEIRD)]);
        sb_str(out, src + value_end(src, pos));
        break;
    }
    }
}

/* Byte mutation: flip, insert (NULs and high bytes too), delete,
 * truncate, or repeat a span. */
static void mutate_bytes(sbuf *out, const char *src)
{
    size_t len = strlen(src), pos = rndn(len);
    static const char ins[] = {'\0', '\xff', '\x80', '"',    '{', '[',
                               ',',  ':',    '\\',   '\x01', '}', ']'};

    switch (rndn(5)) {
    case 0:
        sb_add(out, src, len);
        out->p[pos] ^= (char)(1 << rndn(8));
        break;
    case 1:
        sb_add(out, src, pos);
        sb_add(out, &ins[rndn(sizeof ins)], 1);
        sb_add(out, src + pos, len - pos);
        break;
    case 2:
        sb_add(out, src, pos);
        if (pos + 1 < len)
            sb_add(out, src + pos + 1, len - pos - 1);
        break;
    case 3:
        sb_add(out, src, pos);
        break;
    default: {
        size_t span = 1 + rndn(len - pos);
        sb_add(out, src, pos + span);
        sb_add(out, src + pos, len - pos);
        break;
    }
    }
}

/* The fixed special lines: deep nesting, select extremes, odd batches. */
static size_t special_lines(line *ls, size_t base)
{
    size_t n = 0;
    sbuf b = {0};

    /* 100k-deep arrays and objects */
    for (int i = 0; i < 100000; i++)
        sb_str(&b, "[");
    for (int i = 0; i < 100000; i++)
        sb_str(&b, "]");
    line_prepare(&ls[n], base + n, b.p, b.len);
    n++;
    b = (sbuf){0};
    sb_str(&b, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"send\",\"params\":"
               "{\"name\":\"a\",\"value\":");
    for (int i = 0; i < 100000; i++)
        sb_str(&b, "{\"a\":");
    sb_str(&b, "1");
    for (int i = 0; i < 100000; i++)
        sb_str(&b, "}");
    sb_str(&b, "}}");
    line_prepare(&ls[n], base + n, b.p, b.len);
    n++;
    /* unterminated 100k-deep opening */
    b = (sbuf){0};
    for (int i = 0; i < 100000; i++)
        sb_str(&b, "[{\"\":");
    line_prepare(&ls[n], base + n, b.p, b.len);
    n++;
    /* select with 0 and 10k cases */
    b = (sbuf){0};
    sb_str(&b, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"select\","
               "\"params\":{\"cases\":[]}}");
    line_prepare(&ls[n], base + n, b.p, b.len);
    n++;
    b = (sbuf){0};
    sb_str(&b, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"select\","
               "\"params\":{\"cases\":[");
    for (int i = 0; i < 10000; i++)
        sb_str(&b, i ? ",{\"recv\":\"a\"}" : "{\"recv\":\"a\"}");
    sb_str(&b, "],\"timeout_ms\":1}}");
    line_prepare(&ls[n], base + n, b.p, b.len);
    n++;
    b = (sbuf){0};
    sb_str(&b, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"select\","
               "\"params\":{\"cases\":[");
    for (int i = 0; i < 10000; i++)
        sb_str(&b, i ? ",{\"send\":\"q\",\"value\":1}"
                     : "{\"send\":\"q\",\"value\":1}");
    sb_str(&b, "],\"default\":true}}");
    line_prepare(&ls[n], base + n, b.p, b.len);
    n++;
    /* batches: empty, too big, all notifications, nested, of junk */
    static const char *const batches[] = {
        "[]",
        "[[]]",
        "[1,2,3]",
        "[null]",
        "[{}]",
        "[{\"jsonrpc\":\"2.0\",\"method\":\"ping\"}]",
        "[{\"jsonrpc\":\"2.0\",\"method\":\"ping\"},{\"jsonrpc\":\"2.0\","
        "\"method\":\"nope\"}]",
        "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},7]",
        "[[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]]",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"go\",\"params\":"
        "{\"request\":{\"method\":\"go\",\"params\":{\"request\":"
        "{\"method\":\"ping\"}}}}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"timer.afterfunc\","
        "\"params\":{\"ms\":1,\"request\":{\"method\":\"nope\"}}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"make\",\"params\":"
        "{\"name\":\"\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"make\",\"params\":"
        "{\"name\":\"a\\u0001b\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"wg.add\",\"params\":"
        "{\"name\":\"w2\",\"delta\":-9223372036854775808}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"atomic.add\",\"params\":"
        "{\"name\":\"n2\",\"delta\":9223372036854775807}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"atomic.add\",\"params\":"
        "{\"name\":\"n2\",\"delta\":9223372036854775807}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"make\",\"params\":"
        "{\"name\":\"big\",\"cap\":9223372036854775807}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"make\",\"params\":"
        "{\"name\":\"big2\",\"cap\":4294967296}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"timer.after\",\"params\":"
        "{\"name\":\"t2\",\"ms\":9223372036854775807}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\",\"params\":"
        "{\"name\":\"a\",\"timeout_ms\":-1}}",
    };
    for (size_t i = 0; i < sizeof batches / sizeof batches[0]; i++) {
        b = (sbuf){0};
        sb_str(&b, batches[i]);
        line_prepare(&ls[n], base + n, b.p, b.len);
        n++;
    }
    /* Huge durations: refused (they once overflowed ms * 1000000). */
    static const char *const huge[] = {
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"recv\",\"params\":"
        "{\"name\":\"nochan\",\"timeout_ms\":9223372036854775807}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"mutex.lock\",\"params\":"
        "{\"name\":\"hl\",\"lease_ms\":9223372036854775807}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"timer.after\",\"params\":"
        "{\"name\":\"t3\",\"ms\":9223372036854775807}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"timer.ticker\",\"params\":"
        "{\"name\":\"t4\",\"ms\":9223372036854775807}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"timer.afterfunc\","
        "\"params\":"
        "{\"ms\":9223372036854775807,\"request\":{\"method\":\"ping\"}}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"go\",\"params\":"
        "{\"request\":{\"method\":\"recv\",\"params\":{\"name\":\"nochan\","
        "\"timeout_ms\":9223372036854775807}}}}",
    };
    keep_params = true;
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        b = (sbuf){0};
        sb_str(&b, huge[i]);
        line_prepare(&ls[n], base + n, b.p, b.len);
        n++;
    }
    keep_params = false;
    /* A batch of 1001 and one of 1000 pings. */
    for (int size = 1000; size <= 1001; size++) {
        b = (sbuf){0};
        sb_str(&b, "[");
        for (int i = 0; i < size; i++)
            sb_str(&b,
                   i ? ",{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}"
                     : "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}");
        sb_str(&b, "]");
        line_prepare(&ls[n], base + n, b.p, b.len);
        n++;
    }
    return n;
}

static void test_generated(void **state)
{
    size_t want = getenv("CHAND_HOSTILE_N")
                      ? strtoul(getenv("CHAND_HOSTILE_N"), NULL, 10)
                      : 12000;
    line *ls = calloc(want + 64, sizeof *ls);
    size_t n = 0, parsed = 0;
    (void)state;

    /* The valid ones first, so that the objects mutations name exist. */
    for (size_t i = 0; i < NVALID; i++, n++) {
        sbuf b = {0};
        sb_str(&b, valid[i]);
        line_prepare(&ls[n], n, b.p, b.len);
    }
    n += special_lines(ls + n, n);
    while (n < want + NVALID) {
        sbuf b = {0};
        const char *src = valid[rndn(NVALID)];
        if (rndn(2))
            mutate_structured(&b, src);
        else
            mutate_bytes(&b, src);
        /* Sometimes twice. */
        if (rndn(4) == 0) {
            sbuf c = {0};
            mutate_bytes(&c, b.p ? b.p : "");
            free(b.p);
            b = c;
        }
        if (!b.p)
            sb_str(&b, "");
        if (b.len == 0)
            sb_str(&b, " ");
        line_prepare(&ls[n], n, b.p, b.len);
        n++;
    }
    for (size_t i = 0; i < n; i++)
        parsed += ls[i].json;
    run_lines(ls, n);
    fprintf(stderr,
            "generated: %zu lines (%zu of them valid JSON), "
            "one answer each where one is due\n",
            n, parsed);
    lines_free(ls, n);
    /* The daemon still serves everyone. */
    testd_conn *c = testd_connect(&D);
    json_t *a =
        testd_call(c, 1, "hello", json_pack("{s:i}", "version", 1), 10000);
    assert_non_null(testd_result(a));
    json_decref(a);
    testd_close(c);
    check_clean();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_corpus, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generated, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
