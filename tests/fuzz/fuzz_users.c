/*
 * fuzz_users.c - libFuzzer harness for what an operator's files and a
 * client's requests feed the security core: the bytes as a users file
 * (users_parse), as one rule token (acl_rule_parse), and as a request
 * checked against rules (acl_check_json).  Every parsed table must find
 * each of its users by name and check each one's rules against a fixed
 * set of requests; nothing may crash, leak or trip UBSan.
 *
 * Seeds: corpus/users/ (valid files, every error, requests).  They are
 * replayed by tests/unit/test_users.c in `make test`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "acl.h"
#include "users.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *fz_requests[] = {
    "{\"method\":\"send\",\"params\":{\"name\":\"jobs.a\",\"value\":1}}",
    "{\"method\":\"cond.wait\",\"params\":{\"name\":\"c\",\"mutex\":\"m\"}}",
    "{\"method\":\"select\",\"params\":{\"cases\":[{\"recv\":\"a\"},"
    "{\"send\":\"b\",\"value\":2}]}}",
    "{\"method\":\"go\",\"params\":{\"request\":{\"method\":\"drop\","
    "\"params\":{\"name\":\"x\"}}}}",
    "{\"method\":\"runtime.gomaxprocs\",\"params\":{\"n\":2}}",
    "{\"method\":\"runtime.stats\"}",
};

static void fz_check_rules(const acl_rules *r)
{
    char why[256];
    json_t *res;

    for (size_t i = 0; i < sizeof fz_requests / sizeof fz_requests[0]; i++) {
        json_t *req = json_loads(fz_requests[i], 0, NULL);
        if (!req)
            abort();
        (void)acl_check_json(r, req, why, sizeof why);
        json_decref(req);
    }
    res = json_pack("{s:[{s:s},{s:s},{}]}", "objects", "name", "jobs.a", "name",
                    "");
    if (!res || acl_filter_objects(r, res) < 1)
        abort();
    json_decref(res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    static const acl_rules none = {0};
    users_table *t;
    acl_rule rule;
    acl_rules one;
    json_t *req;
    char err[512], why[256];

    if (acl_rule_parse(text, size, &rule, err, sizeof err) == 0) {
        if (rule.plen > size || strlen(rule.prefix) != rule.plen)
            abort();
        one.n = 1;
        one.v = &rule;
        fz_check_rules(&one);
        free(rule.prefix);
    }
    if (users_parse("fuzz", text, size, &t, err, sizeof err) == 0) {
        for (size_t i = 0; i < users_count(t); i++) {
            const users_user *u = users_user_at(t, i);
            if (users_find(t, users_user_name(u)) != u)
                abort();
            fz_check_rules(users_user_rules(u));
        }
        users_unref(t);
    } else if (strncmp(err, "fuzz:", 5) != 0) {
        abort(); /* every error names the file */
    }
    req = json_loadb(text, size, JSON_REJECT_DUPLICATES, NULL);
    if (req) {
        (void)acl_check_json(&none, req, why, sizeof why);
        json_decref(req);
    }
    return 0;
}
