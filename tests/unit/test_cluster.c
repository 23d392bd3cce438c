/*
 * test_cluster.c - unit tests of the `cluster` / `node_id` parser: a good
 * setting, lookups, and one test per refusal, each checking the message
 * names the fault and that nothing is left allocated.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cluster.h"

static void test_parse_ok(void **state)
{
    cluster c;
    char err[256] = "", buf[64];
    (void)state;
    assert_int_equal(cluster_parse(&c,
                                   " 1=127.0.0.1:7001:7101, "
                                   "2=192.168.1.2:7002:7102,3=10.0.0.3:7003:"
                                   "7103 ",
                                   "2", err, sizeof err),
                     0);
    assert_int_equal(c.n, 3);
    assert_int_equal(c.self, 1);
    assert_int_equal(cluster_self(&c)->id, 2);
    assert_string_equal(cluster_self(&c)->host, "192.168.1.2");
    assert_int_equal(c.peers[2].client_port, 7003);
    assert_int_equal(c.peers[2].raft_port, 7103);
    assert_non_null(cluster_find(&c, 3));
    assert_null(cluster_find(&c, 4));
    assert_int_equal(cluster_raft_address(&c.peers[0], buf, sizeof buf), 0);
    assert_string_equal(buf, "127.0.0.1:7101");
    assert_int_equal(cluster_client_address(&c.peers[0], buf, sizeof buf), 0);
    assert_string_equal(buf, "127.0.0.1:7001");
    assert_int_equal(cluster_client_address(&c.peers[0], buf, 5),
                     -ENAMETOOLONG);
    cluster_free(&c);
    assert_null(c.peers);
    cluster_free(&c); /* twice is harmless */
}

static void test_single_node(void **state)
{
    cluster c;
    char err[256];
    (void)state;
    assert_int_equal(cluster_parse(&c, "7=10.1.1.1:1:2", "7", err, sizeof err),
                     0);
    assert_int_equal(c.n, 1);
    assert_int_equal(cluster_self(&c)->id, 7);
    cluster_free(&c);
}

/* Parses spec/node_id, expects -EINVAL and a message containing want. */
static void expect_refusal(const char *spec, const char *node_id,
                           const char *want)
{
    cluster c;
    char err[256] = "";
    int rc = cluster_parse(&c, spec, node_id, err, sizeof err);
    if (rc != -EINVAL || strstr(err, want) == NULL)
        fail_msg("cluster_parse(\"%s\", \"%s\") = %d, \"%s\"; want -EINVAL "
                 "and \"%s\"",
                 spec ? spec : "(null)", node_id ? node_id : "(null)", rc, err,
                 want);
    assert_null(c.peers);
    assert_int_equal(c.n, 0);
}

static void test_empty(void **state)
{
    (void)state;
    expect_refusal("", "1", "cluster is empty");
    expect_refusal("   ", "1", "cluster is empty");
    expect_refusal(NULL, "1", "cluster is empty");
}

static void test_node_id_missing(void **state)
{
    (void)state;
    expect_refusal("1=10.0.0.1:1:2", "", "node_id is not set");
    expect_refusal("1=10.0.0.1:1:2", NULL, "node_id is not set");
}

static void test_node_id_bad(void **state)
{
    (void)state;
    expect_refusal("1=10.0.0.1:1:2", "one",
                   "node_id \"one\": must be an integer");
    expect_refusal("1=10.0.0.1:1:2", "0", "node_id \"0\"");
    expect_refusal("1=10.0.0.1:1:2", "99999999999999999999",
                   "must be an integer");
}

static void test_node_id_absent(void **state)
{
    (void)state;
    expect_refusal("1=10.0.0.1:1:2,2=10.0.0.1:3:4", "3",
                   "node_id 3 is not in the cluster setting");
}

static void test_empty_entry(void **state)
{
    (void)state;
    expect_refusal("1=10.0.0.1:1:2,,2=10.0.0.1:3:4", "1",
                   "cluster entry 2 is empty");
    expect_refusal("1=10.0.0.1:1:2,", "1", "cluster entry 2 is empty");
}

static void test_no_equals(void **state)
{
    (void)state;
    expect_refusal("h:1:2", "1",
                   "cluster entry 1 \"h:1:2\": expected "
                   "id=host:client_port:raft_port");
}

static void test_bad_id(void **state)
{
    (void)state;
    expect_refusal("x=10.0.0.1:1:2", "1", "the node id must be an integer");
    expect_refusal("0=10.0.0.1:1:2", "1", "the node id must be an integer");
    expect_refusal("=10.0.0.1:1:2", "1", "the node id must be an integer");
    expect_refusal("-1=10.0.0.1:1:2", "1", "the node id must be an integer");
}

static void test_missing_port(void **state)
{
    (void)state;
    expect_refusal("1=10.0.0.1:1", "1", "(two ports)");
    expect_refusal("1=h", "1", "(two ports)");
}

static void test_ipv6(void **state)
{
    (void)state;
    expect_refusal("1=::1:1:2", "1", "IPv6 addresses are not supported");
}

static void test_empty_host(void **state)
{
    (void)state;
    expect_refusal("1=:1:2", "1", "empty host");
}

static void test_bad_host(void **state)
{
    char spec[400];
    (void)state;
    expect_refusal("1=a/b:1:2", "1", "the host must be an IPv4 address");
    expect_refusal("1=localhost:1:2", "1", "(host names are not resolved)");
    expect_refusal("1=0.0.0.0:1:2", "1", "the host must be an IPv4 address");
    expect_refusal("1=256.1.1.1:1:2", "1", "the host must be an IPv4 address");
    memset(spec, 'a', sizeof spec);
    memcpy(spec, "1=", 2);
    snprintf(spec + 300, sizeof spec - 300, ":1:2");
    expect_refusal(spec, "1", "host longer than 253");
}

static void test_bad_ports(void **state)
{
    (void)state;
    expect_refusal("1=10.0.0.1:0:2", "1", "the client port must be");
    expect_refusal("1=10.0.0.1:65536:2", "1", "the client port must be");
    expect_refusal("1=10.0.0.1::2", "1", "the client port must be");
    expect_refusal("1=10.0.0.1:1:x", "1", "the raft port must be");
    expect_refusal("1=10.0.0.1:1:", "1", "the raft port must be");
    expect_refusal("1=10.0.0.1:5:5", "1",
                   "the client and raft ports must differ");
}

static void test_duplicate_id(void **state)
{
    (void)state;
    expect_refusal("1=10.0.0.1:1:2,1=10.0.0.2:1:2", "1",
                   "node id 1 is listed twice");
}

static void test_duplicate_port(void **state)
{
    (void)state;
    expect_refusal("1=10.0.0.1:1:2,2=10.0.0.1:3:2", "1",
                   "uses a port of node 1 on host 10.0.0.1");
    expect_refusal("1=10.0.0.1:1:2,2=10.0.0.1:2:3", "1",
                   "uses a port of node 1 on host 10.0.0.1");
    /* The same ports on another host are fine. */
    cluster c;
    char err[256];
    assert_int_equal(cluster_parse(&c, "1=10.0.0.1:1:2,2=10.0.0.2:1:2", "1",
                                   err, sizeof err),
                     0);
    cluster_free(&c);
}

static void test_too_many(void **state)
{
    char spec[CLUSTER_MAX_PEERS * 24 + 64];
    size_t off = 0;
    int i;
    (void)state;
    for (i = 1; i <= CLUSTER_MAX_PEERS + 1; i++)
        off += (size_t)snprintf(spec + off, sizeof spec - off,
                                "%s%d=10.0.0.1:%d:%d", i > 1 ? "," : "", i,
                                2 * i, 2 * i + 1);
    expect_refusal(spec, "1", "more than 64 nodes");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ok),
        cmocka_unit_test(test_single_node),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_node_id_missing),
        cmocka_unit_test(test_node_id_bad),
        cmocka_unit_test(test_node_id_absent),
        cmocka_unit_test(test_empty_entry),
        cmocka_unit_test(test_no_equals),
        cmocka_unit_test(test_bad_id),
        cmocka_unit_test(test_missing_port),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_empty_host),
        cmocka_unit_test(test_bad_host),
        cmocka_unit_test(test_bad_ports),
        cmocka_unit_test(test_duplicate_id),
        cmocka_unit_test(test_duplicate_port),
        cmocka_unit_test(test_too_many),
    };
    return cmocka_run_group_tests_name("cluster", tests, NULL, NULL);
}
