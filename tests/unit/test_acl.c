/*
 * test_acl.c - unit tests of the permission rules: the rule syntax and its
 * errors, every permission letter, prefix boundaries (jobs / jobs2 / job),
 * `*`, several rules adding up, deny by default, the method table covering
 * every method of proto's table, each method's check through both of
 * proto's parsing paths (select's cases, cond.wait's mutex, go and
 * timer.afterfunc's nested requests, the server-wide methods), and the
 * list/runtime.dump filter.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl.h"
#include "proto.h"

/* Builds rules from a space-separated list of rule tokens. */
static acl_rules rules_of(const char *text)
{
    acl_rules r = {0};
    char err[256];
    const char *p = text;

    while (*p) {
        size_t n;
        while (*p == ' ')
            p++;
        n = strcspn(p, " ");
        if (n == 0)
            break;
        r.v = realloc(r.v, (r.n + 1) * sizeof *r.v);
        assert_non_null(r.v);
        if (acl_rule_parse(p, n, &r.v[r.n], err, sizeof err) != 0)
            fail_msg("rule %.*s: %s", (int)n, p, err);
        r.n++;
        p += n;
    }
    return r;
}

static bool allows(const acl_rules *r, unsigned perm, const char *name)
{
    return acl_allows(r, perm, name, strlen(name));
}

static const proto_limits lim = {PROTO_MAX_LINE_DEFAULT,
                                 PROTO_MAX_DEPTH_DEFAULT};

/* Checks one request line against r through proto's general path, and
 * through its scanner when the scanner reads the line; both must agree.
 * Returns acl_check_request's answer, why filled. */
static int check_line(const acl_rules *r, const char *line, char *why,
                      size_t whylen)
{
    proto_error err;
    proto_request req, sreq;
    json_t *msg = proto_parse_line(line, strlen(line), &lim, &err);
    int rc;

    if (!msg)
        fail_msg("parse %s: %s", line, err.message);
    if (proto_check_request(msg, &req, &err) != 0)
        fail_msg("check %s: %s", line, err.message);
    rc = acl_check_request(r, &req, why, whylen);
    proto_request_clear(&req);
    json_decref(msg);
    if (proto_scan_request(line, strlen(line), &lim, &sreq)) {
        char why2[256];
        int rc2 = acl_check_request(r, &sreq, why2, sizeof why2);
        proto_request_clear(&sreq);
        assert_int_equal(rc, rc2);
        if (rc)
            assert_string_equal(why, why2);
    }
    return rc;
}

#define REQ(m, params)                                                         \
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"" m "\",\"params\":" params "}"

static int check(const acl_rules *r, const char *line)
{
    char why[256];
    return check_line(r, line, why, sizeof why);
}

/* ---- the table ---- */

static void test_table_covers_every_method(void **state)
{
    size_t n;
    const proto_method *pm = proto_methods(&n);
    (void)state;

    assert_true(n > 40);
    for (size_t i = 0; i < n; i++) {
        const acl_method *e = acl_method_of(&pm[i]);
        if (!e || e->kind == ACL_K_UNKNOWN)
            fail_msg("method %s has no permission class in acl.c", pm[i].name);
        assert_string_equal(e->method, pm[i].name);
        switch (e->kind) {
        case ACL_K_NAME:
            /* The parameters the check reads exist, and are names. */
            if (proto_param_index(&pm[i], "name") < 0)
                fail_msg("%s is checked on name but has none", pm[i].name);
            assert_int_not_equal(e->perm, 0);
            if (e->name2) {
                int j = proto_param_index(&pm[i], e->name2);
                assert_true(j >= 0);
                assert_int_equal(pm[i].params[j].type, PROTO_T_NAME);
            }
            break;
        case ACL_K_SELECT:
            assert_true(proto_param_index(&pm[i], "cases") >= 0);
            break;
        case ACL_K_NESTED:
            assert_true(proto_param_index(&pm[i], "request") >= 0);
            break;
        case ACL_K_SERVER:
            if (e->name2)
                assert_true(proto_param_index(&pm[i], e->name2) >= 0);
            break;
        default:
            break;
        }
    }
    /* Every method with a name parameter is checked on it (no named
     * method slips through as open or filtered). */
    for (size_t i = 0; i < n; i++)
        if (proto_param_index(&pm[i], "name") >= 0)
            assert_int_equal(acl_method_of(&pm[i])->kind, ACL_K_NAME);
}

static void test_table_classes(void **state)
{
    static const struct {
        const char *m;
        unsigned perm;
    } want[] = {
        {"make", ACL_W},       {"send", ACL_W},          {"recv", ACL_W},
        {"close", ACL_W},      {"len", ACL_R},           {"drop", ACL_A},
        {"mutex.lock", ACL_L}, {"rwmutex.rlock", ACL_L}, {"cond.wait", ACL_L},
        {"wg.add", ACL_L},     {"wg.wait", ACL_L},       {"once.do", ACL_L},
        {"once.done", ACL_L},  {"pool.put", ACL_W},      {"pool.get", ACL_W},
        {"map.load", ACL_R},   {"map.range", ACL_R},     {"map.len", ACL_R},
        {"map.store", ACL_W},  {"map.clear", ACL_W},     {"atomic.load", ACL_R},
        {"atomic.add", ACL_W}, {"timer.after", ACL_W},   {"timer.stop", ACL_W},
    };
    (void)state;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const acl_method *e = acl_method_named(want[i].m);
        assert_non_null(e);
        assert_int_equal(e->kind, ACL_K_NAME);
        assert_int_equal(e->perm, want[i].perm);
    }
    assert_true(acl_method_open(proto_method_find("hello")));
    assert_true(acl_method_open(proto_method_find("ping")));
    assert_non_null(acl_method_named("auth"));
    assert_int_equal(acl_method_named("auth")->kind, ACL_K_OPEN);
    assert_false(acl_method_open(proto_method_find("list")));
    assert_false(acl_method_open(proto_method_find("send")));
    assert_false(acl_method_open(NULL));
    assert_null(acl_method_named("no.such"));
}

/* ---- rules ---- */

static void test_rule_parse(void **state)
{
    acl_rule r;
    char err[256];
    (void)state;

    assert_int_equal(acl_rule_parse("rwla:jobs.", 10, &r, err, sizeof err), 0);
    assert_int_equal(r.perms, ACL_R | ACL_W | ACL_L | ACL_A);
    assert_string_equal(r.prefix, "jobs.");
    assert_int_equal(r.plen, 5);
    free(r.prefix);

    assert_int_equal(acl_rule_parse("r:*", 3, &r, err, sizeof err), 0);
    assert_int_equal(r.perms, ACL_R);
    assert_int_equal(r.plen, 0);
    free(r.prefix);

    /* A trailing * is the prefix without it. */
    assert_int_equal(acl_rule_parse("w:jobs.*", 8, &r, err, sizeof err), 0);
    assert_string_equal(r.prefix, "jobs.");
    free(r.prefix);

    /* Letters repeat harmlessly; the token is not NUL-terminated. */
    assert_int_equal(acl_rule_parse("wwl:ab XYZ", 6, &r, err, sizeof err), 0);
    assert_int_equal(r.perms, ACL_W | ACL_L);
    assert_string_equal(r.prefix, "ab");
    free(r.prefix);
}

static void expect_rule_error(const char *tok, const char *words)
{
    acl_rule r;
    char err[256] = "";
    assert_int_equal(acl_rule_parse(tok, strlen(tok), &r, err, sizeof err),
                     -EINVAL);
    assert_null(r.prefix);
    if (!strstr(err, words))
        fail_msg("rule %s: message \"%s\" lacks \"%s\"", tok, err, words);
}

static void test_rule_errors(void **state)
{
    char longr[400];
    (void)state;
    expect_rule_error("rw", "is not PERMS:PREFIX");
    expect_rule_error(":jobs", "has no permissions");
    expect_rule_error("rx:jobs", "unknown permission 'x'");
    expect_rule_error("R:jobs", "unknown permission 'R'");
    expect_rule_error("r:", "empty prefix");
    expect_rule_error("r:jo*bs", "'*' may only end");
    expect_rule_error("r:**", "'*' may only end");
    expect_rule_error("r:a\x01", "control character");
    memset(longr, 'a', sizeof longr);
    memcpy(longr, "r:", 2);
    longr[sizeof longr - 1] = '\0';
    expect_rule_error(longr, "longer than 255");
    /* The message shows a hostile token without its control bytes. */
    {
        acl_rule r;
        char err[256];
        assert_int_equal(acl_rule_parse("q\x1b[2J:x", 7, &r, err, sizeof err),
                         -EINVAL);
        assert_null(strchr(err, '\x1b'));
    }
}

static void test_each_letter(void **state)
{
    static const struct {
        const char *rule;
        unsigned yes;
    } cases[] = {
        {"r:x", ACL_R},
        {"w:x", ACL_W},
        {"l:x", ACL_L},
        {"a:x", ACL_A},
        {"rwla:x", ACL_R | ACL_W | ACL_L | ACL_A},
    };
    static const unsigned bits[] = {ACL_R, ACL_W, ACL_L, ACL_A};
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        acl_rules r = rules_of(cases[i].rule);
        for (size_t b = 0; b < 4; b++)
            assert_int_equal(allows(&r, bits[b], "x"),
                             (cases[i].yes & bits[b]) != 0);
        acl_rules_free(&r);
    }
}

static void test_prefix_boundaries(void **state)
{
    acl_rules r = rules_of("rw:jobs");
    acl_rules dot = rules_of("rw:jobs.");
    (void)state;

    /* A prefix is a byte prefix: jobs covers jobs2, not job. */
    assert_true(allows(&r, ACL_R, "jobs"));
    assert_true(allows(&r, ACL_W, "jobs2"));
    assert_true(allows(&r, ACL_W, "jobs.a"));
    assert_false(allows(&r, ACL_W, "job"));
    assert_false(allows(&r, ACL_W, "Jobs"));
    assert_false(allows(&r, ACL_W, "xjobs"));
    assert_false(allows(&r, ACL_L, "jobs"));
    /* A separator fences a namespace. */
    assert_true(allows(&dot, ACL_W, "jobs.a"));
    assert_true(allows(&dot, ACL_W, "jobs."));
    assert_false(allows(&dot, ACL_W, "jobs"));
    assert_false(allows(&dot, ACL_W, "jobs2"));
    /* Lengths are explicit: a name is not read past len. */
    assert_false(acl_allows(&r, ACL_W, "jobs", 3));
    assert_true(acl_allows(&r, ACL_W, "jobs2xyz", 5));
    acl_rules_free(&r);
    acl_rules_free(&dot);
}

static void test_star_and_several_rules(void **state)
{
    acl_rules star = rules_of("r:*");
    acl_rules sev = rules_of("r:* w:jobs. l:locks. a:tmp.");
    (void)state;

    assert_true(allows(&star, ACL_R, "anything"));
    assert_true(allows(&star, ACL_R, "x"));
    assert_false(allows(&star, ACL_W, "anything"));

    assert_true(allows(&sev, ACL_R, "locks.a"));
    assert_true(allows(&sev, ACL_W, "jobs.a"));
    assert_false(allows(&sev, ACL_W, "locks.a"));
    assert_true(allows(&sev, ACL_L, "locks.a"));
    assert_false(allows(&sev, ACL_L, "jobs.a"));
    assert_true(allows(&sev, ACL_A, "tmp.x"));
    assert_false(allows(&sev, ACL_A, "jobs.a"));
    /* Two bits at once need one rule holding both. */
    assert_false(allows(&sev, ACL_R | ACL_W, "jobs.a") &&
                 !allows(&sev, ACL_W, "jobs.a"));
    assert_true(acl_allows_any(&sev, ACL_A));
    assert_false(acl_allows_any(&star, ACL_W));
    acl_rules_free(&star);
    acl_rules_free(&sev);
}

static void test_deny_by_default(void **state)
{
    acl_rules none = {0};
    size_t n;
    const proto_method *pm = proto_methods(&n);
    (void)state;

    assert_false(allows(&none, ACL_R, "x"));
    assert_false(acl_allows(NULL, ACL_R, "x", 1));
    assert_false(acl_allows(&none, 0, "x", 1));
    /* With no rules, only the open and filtered methods pass. */
    assert_int_equal(check(&none, REQ("send", "{\"name\":\"a\",\"value\":1}")),
                     -EACCES);
    assert_int_equal(check(&none, REQ("len", "{\"name\":\"a\"}")), -EACCES);
    assert_int_equal(check(&none, REQ("runtime.stats", "{}")), -EACCES);
    assert_int_equal(check(&none, REQ("ping", "{}")), 0);
    assert_int_equal(check(&none, REQ("hello", "{\"version\":1}")), 0);
    assert_int_equal(check(&none, REQ("list", "{}")), 0);
    assert_int_equal(check(&none, REQ("runtime.dump", "{}")), 0);
    /* Every named method is denied on any name. */
    for (size_t i = 0; i < n; i++) {
        const acl_method *e = acl_method_of(&pm[i]);
        if (e->kind == ACL_K_NAME) {
            char why[256];
            proto_request req;
            json_t *name = json_string("a");
            memset(&req, 0, sizeof req);
            req.method = &pm[i];
            req.args[proto_param_index(&pm[i], "name")] = name;
            if (e->name2)
                req.args[proto_param_index(&pm[i], e->name2)] = name;
            assert_int_equal(acl_check_request(&none, &req, why, sizeof why),
                             -EACCES);
            json_decref(name);
        }
    }
}

/* ---- requests ---- */

static void test_named_requests(void **state)
{
    acl_rules r = rules_of("r:* w:jobs. l:locks. a:tmp.");
    char why[256];
    (void)state;

    assert_int_equal(
        check(&r, REQ("send", "{\"name\":\"jobs.a\",\"value\":\"x\"}")), 0);
    assert_int_equal(
        check_line(&r, REQ("send", "{\"name\":\"other\",\"value\":\"x\"}"), why,
                   sizeof why),
        -EACCES);
    assert_string_equal(why, "send on \"other\" needs w");
    assert_int_equal(check(&r, REQ("recv", "{\"name\":\"jobs.a\"}")), 0);
    assert_int_equal(check(&r, REQ("recv", "{\"name\":\"other\"}")), -EACCES);
    assert_int_equal(check(&r, REQ("len", "{\"name\":\"other\"}")), 0);
    assert_int_equal(check(&r, REQ("drop", "{\"name\":\"jobs.a\"}")), -EACCES);
    assert_int_equal(check(&r, REQ("drop", "{\"name\":\"tmp.a\"}")), 0);
    assert_int_equal(check(&r, REQ("mutex.lock", "{\"name\":\"locks.db\"}")),
                     0);
    assert_int_equal(
        check_line(&r, REQ("mutex.unlock", "{\"name\":\"jobs.a\",\"token\":3}"),
                   why, sizeof why),
        -EACCES);
    assert_string_equal(why, "mutex.unlock on \"jobs.a\" needs l");
    assert_int_equal(
        check(&r, REQ("wg.add", "{\"name\":\"jobs.wg\",\"delta\":-3}")),
        -EACCES);
    assert_int_equal(check(&r, REQ("once.done", "{\"name\":\"migr\"}")),
                     -EACCES);
    assert_int_equal(
        check(&r, REQ("map.load", "{\"name\":\"cfg\",\"key\":\"k\"}")), 0);
    assert_int_equal(
        check(&r, REQ("map.store", "{\"name\":\"cfg\",\"key\":\"k\","
                                   "\"value\":1}")),
        -EACCES);
    assert_int_equal(check(&r, REQ("atomic.load", "{\"name\":\"n\"}")), 0);
    assert_int_equal(
        check(&r, REQ("atomic.add", "{\"name\":\"jobs.n\",\"delta\":1}")), 0);
    /* cond.wait needs l on the cond and on its mutex. */
    assert_int_equal(check(&r, REQ("cond.wait", "{\"name\":\"locks.c\","
                                                "\"mutex\":\"locks.m\"}")),
                     0);
    assert_int_equal(check_line(&r,
                                REQ("cond.wait", "{\"name\":\"locks.c\","
                                                 "\"mutex\":\"jobs.m\"}"),
                                why, sizeof why),
                     -EACCES);
    assert_string_equal(why, "cond.wait on \"jobs.m\" needs l");
    acl_rules_free(&r);
}

static void test_select(void **state)
{
    acl_rules r = rules_of("w:a w:b r:*");
    char why[256];
    (void)state;

    assert_int_equal(check(&r, REQ("select", "{\"cases\":[{\"recv\":\"a\"},"
                                             "{\"send\":\"b\",\"value\":1}]}")),
                     0);
    assert_int_equal(
        check_line(&r,
                   REQ("select", "{\"cases\":[{\"recv\":\"a\"},"
                                 "{\"recv\":\"c\"}],\"default\":true}"),
                   why, sizeof why),
        -EACCES);
    assert_string_equal(why, "select on \"c\" needs w");
    assert_int_equal(check(&r, REQ("select", "{\"cases\":[{\"send\":\"c\","
                                             "\"value\":[1,{\"x\":2}]}]}")),
                     -EACCES);
    /* No cases: nothing to check. */
    assert_int_equal(
        check(&r, REQ("select", "{\"cases\":[],\"timeout_ms\":0}")), 0);
    acl_rules_free(&r);
}

static void test_nested(void **state)
{
    acl_rules r = rules_of("w:jobs. l:locks.");
    acl_rules af = rules_of("w:jobs. w:afterfunc.");
    char why[256];
    (void)state;

    assert_int_equal(
        check(&r, REQ("go", "{\"request\":{\"method\":\"send\",\"params\":"
                            "{\"name\":\"jobs.a\",\"value\":1}}}")),
        0);
    assert_int_equal(
        check_line(&r,
                   REQ("go", "{\"request\":{\"method\":\"send\",\"params\":"
                             "{\"name\":\"other\",\"value\":1}}}"),
                   why, sizeof why),
        -EACCES);
    assert_string_equal(why, "send on \"other\" needs w");
    /* A go in a go is checked all the way down. */
    assert_int_equal(
        check(&r, REQ("go", "{\"request\":{\"method\":\"go\",\"params\":"
                            "{\"request\":{\"method\":\"mutex.lock\","
                            "\"params\":{\"name\":\"x\"}}}}}")),
        -EACCES);
    assert_int_equal(
        check(&r, REQ("go", "{\"request\":{\"method\":\"go\",\"params\":"
                            "{\"request\":{\"method\":\"mutex.lock\","
                            "\"params\":{\"name\":\"locks.x\"}}}}}")),
        0);
    /* A nested select, and a nested request that cannot be read. */
    assert_int_equal(
        check(&r, REQ("go", "{\"request\":{\"method\":\"select\",\"params\":"
                            "{\"cases\":[{\"recv\":\"jobs.a\"},"
                            "{\"recv\":\"x\"}]}}}")),
        -EACCES);
    assert_int_equal(
        check(&r, REQ("go", "{\"request\":{\"method\":\"nope\"}}")), -EACCES);
    assert_int_equal(check(&r, REQ("go", "{\"request\":{\"method\":\"send\","
                                         "\"params\":{\"name\":7}}}")),
                     -EACCES);
    assert_int_equal(check(&r, REQ("go", "{\"request\":{\"method\":\"send\","
                                         "\"params\":[1]}}")),
                     -EACCES);
    /* timer.afterfunc also needs w on the name it makes. */
    assert_int_equal(
        check_line(&r,
                   REQ("timer.afterfunc",
                       "{\"ms\":10,\"request\":{\"method\":\"close\","
                       "\"params\":{\"name\":\"jobs.a\"}}}"),
                   why, sizeof why),
        -EACCES);
    assert_string_equal(why, "timer.afterfunc on \"afterfunc.\" needs w");
    assert_int_equal(
        check(&af, REQ("timer.afterfunc", "{\"ms\":10,\"request\":{\"method\":"
                                          "\"close\",\"params\":{\"name\":"
                                          "\"jobs.a\"}}}")),
        0);
    assert_int_equal(
        check(&af, REQ("timer.afterfunc", "{\"ms\":10,\"request\":{\"method\":"
                                          "\"drop\",\"params\":{\"name\":"
                                          "\"jobs.a\"}}}")),
        -EACCES);
    acl_rules_free(&r);
    acl_rules_free(&af);
}

/* A request is decided by one walk over the rules per 32 names it
 * touches: a select with more cases than that is decided whole, and the
 * first case short of its permission is the one named, wherever it is. */
static void test_many_names(void **state)
{
    acl_rules r = rules_of("w:q. r:*");
    char line[8192], why[256];
    size_t off;
    (void)state;

    for (int bad = -1; bad < 80; bad += 27) {
        off = (size_t)snprintf(line, sizeof line,
                               "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":"
                               "\"select\",\"params\":{\"cases\":[");
        for (int i = 0; i < 80; i++)
            off += (size_t)snprintf(line + off, sizeof line - off,
                                    "%s{\"recv\":\"%s%d\"}", i ? "," : "",
                                    i == bad ? "x" : "q.", i);
        snprintf(line + off, sizeof line - off, "]}}");
        if (bad < 0) {
            assert_int_equal(check_line(&r, line, why, sizeof why), 0);
        } else {
            char want[64];
            assert_int_equal(check_line(&r, line, why, sizeof why), -EACCES);
            snprintf(want, sizeof want, "select on \"x%d\" needs w", bad);
            assert_string_equal(why, want);
        }
    }
    acl_rules_free(&r);
}

/* What several rules grant on one name adds up, and a nested request's
 * names are decided with the outer one's, by the same rules. */
static void test_rules_add_up(void **state)
{
    acl_rules r = rules_of("l:locks. l:conds. w:jobs");
    char why[256];
    (void)state;

    assert_int_equal(check(&r, REQ("cond.wait", "{\"name\":\"conds.c\","
                                                "\"mutex\":\"locks.m\"}")),
                     0);
    assert_int_equal(
        check_line(&r,
                   REQ("go", "{\"request\":{\"method\":\"go\",\"params\":"
                             "{\"request\":{\"method\":\"cond.wait\","
                             "\"params\":{\"name\":\"conds.c\",\"mutex\":"
                             "\"jobs.m\"}}}}}"),
                   why, sizeof why),
        -EACCES);
    assert_string_equal(why, "cond.wait on \"jobs.m\" needs l");
    acl_rules_free(&r);
}

static void test_nesting_limit(void **state)
{
    acl_rules r = rules_of("rwla:*");
    char why[256];
    json_t *req = json_pack("{s:s, s:{}}", "method", "ping", "params");
    (void)state;

    /* 20 levels of go: denied past the limit rather than recursing. */
    for (int i = 0; i < 20; i++)
        req = json_pack("{s:s, s:{s:o}}", "method", "go", "params", "request",
                        req);
    assert_int_equal(acl_check_json(&r, req, why, sizeof why), -EACCES);
    assert_non_null(strstr(why, "nested too deeply"));
    json_decref(req);
    req = json_pack("{s:s, s:{s:{s:s}}}", "method", "go", "params", "request",
                    "method", "ping");
    assert_int_equal(acl_check_json(&r, req, why, sizeof why), 0);
    json_decref(req);
    assert_int_equal(acl_check_json(&r, NULL, why, sizeof why), -EACCES);
    acl_rules_free(&r);
}

static void test_server_methods(void **state)
{
    acl_rules rd = rules_of("r:jobs.");
    acl_rules w = rules_of("w:*");
    acl_rules adm = rules_of("a:*");
    acl_rules apart = rules_of("a:jobs.");
    char why[256];
    (void)state;

    assert_int_equal(check(&rd, REQ("runtime.stats", "{}")), 0);
    assert_int_equal(
        check_line(&w, REQ("runtime.stats", "{}"), why, sizeof why), -EACCES);
    assert_string_equal(why, "runtime.stats needs r");
    assert_int_equal(check(&rd, REQ("runtime.gomaxprocs", "{}")), 0);
    assert_int_equal(check(&rd, REQ("runtime.gomaxprocs", "{\"n\":1}")),
                     -EACCES);
    assert_int_equal(check_line(&apart, REQ("runtime.gomaxprocs", "{\"n\":1}"),
                                why, sizeof why),
                     -EACCES);
    assert_string_equal(why, "runtime.gomaxprocs on \"*\" needs a");
    assert_int_equal(check(&adm, REQ("runtime.gomaxprocs", "{\"n\":1}")), 0);
    acl_rules_free(&rd);
    acl_rules_free(&w);
    acl_rules_free(&adm);
    acl_rules_free(&apart);
}

static void test_filter(void **state)
{
    acl_rules r = rules_of("r:jobs w:other");
    json_t *res = json_pack("{s:[{s:s},{s:s},{s:s},{s:i},{s:s},i]}", "objects",
                            "name", "jobs", "name", "job", "name", "jobs2",
                            "name", 5, "name", "other", 7);
    json_t *objs;
    (void)state;

    assert_int_equal(acl_filter_objects(&r, res), 4);
    objs = json_object_get(res, "objects");
    assert_int_equal(json_array_size(objs), 2);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(objs, 0), "name")),
        "jobs");
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(objs, 1), "name")),
        "jobs2");
    assert_true(acl_may_read(&r, "jobs", 4));
    assert_false(acl_may_read(&r, "other", 5));
    json_decref(res);
    res = json_object();
    assert_int_equal(acl_filter_objects(&r, res), -EINVAL);
    json_decref(res);
    acl_rules_free(&r);
}

static void test_perms_str(void **state)
{
    char b[8];
    (void)state;
    assert_string_equal(acl_perms_str(ACL_R | ACL_A, b), "ra");
    assert_string_equal(acl_perms_str(0, b), "");
    assert_string_equal(acl_perms_str(ACL_R | ACL_W | ACL_L | ACL_A, b),
                        "rwla");
    {
        char out[80], big[100];
        assert_string_equal(acl_shown("a\x1b[0m\n", 6, out, sizeof out),
                            "a?[0m?");
        memset(big, 'x', sizeof big);
        acl_shown(big, sizeof big, out, sizeof out);
        assert_int_equal(strlen(out), 67);
        assert_string_equal(out + 64, "...");
        acl_shown(big, sizeof big, out, 10);
        assert_string_equal(out, "xxxxxx...");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_covers_every_method),
        cmocka_unit_test(test_table_classes),
        cmocka_unit_test(test_rule_parse),
        cmocka_unit_test(test_rule_errors),
        cmocka_unit_test(test_each_letter),
        cmocka_unit_test(test_prefix_boundaries),
        cmocka_unit_test(test_star_and_several_rules),
        cmocka_unit_test(test_deny_by_default),
        cmocka_unit_test(test_named_requests),
        cmocka_unit_test(test_select),
        cmocka_unit_test(test_nested),
        cmocka_unit_test(test_many_names),
        cmocka_unit_test(test_rules_add_up),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_server_methods),
        cmocka_unit_test(test_filter),
        cmocka_unit_test(test_perms_str),
    };
    return cmocka_run_group_tests_name("acl", tests, NULL, NULL);
}
