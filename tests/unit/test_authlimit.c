/*
 * test_authlimit.c - unit tests of the failed-authentication slowdown: the
 * delay sequence (0, 0, 100, 200, ... capped), the serialisation of
 * attempts from one peer, the decay, a success forgetting the peer,
 * separate peers (IPv4, an IPv6 /64, v4-mapped, uids), and the bounded
 * table under a flood of fresh addresses keeping the persistent attacker.
 * Time is passed in, so nothing here depends on the clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "authlimit.h"

static authlimit_key v4(const char *addr)
{
    struct sockaddr_in in = {.sin_family = AF_INET};
    authlimit_key k;
    assert_int_equal(inet_pton(AF_INET, addr, &in.sin_addr), 1);
    assert_int_equal(
        authlimit_key_sockaddr((struct sockaddr *)&in, sizeof in, &k), 0);
    return k;
}

static authlimit_key v6(const char *addr)
{
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    authlimit_key k;
    assert_int_equal(inet_pton(AF_INET6, addr, &in6.sin6_addr), 1);
    assert_int_equal(
        authlimit_key_sockaddr((struct sockaddr *)&in6, sizeof in6, &k), 0);
    return k;
}

static void test_sequence(void **state)
{
    authlimit *al = authlimit_new(NULL);
    authlimit_key k = v4("192.0.2.1");
    static const unsigned want[] = {0,    0,    100,  200,  400, 800,
                                    1600, 3200, 5000, 5000, 5000};
    (void)state;

    assert_non_null(al);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_int_equal(authlimit_fail(al, &k, 1000), want[i]);
        assert_int_equal(authlimit_failures(al, &k, 1000), i + 1);
    }
    authlimit_free(al);
}

static void test_begin_serialises(void **state)
{
    authlimit *al = authlimit_new(NULL);
    authlimit_key k = v4("192.0.2.1");
    (void)state;

    /* Unknown and fresh peers go at once. */
    assert_int_equal(authlimit_begin(al, &k, 0), 0);
    authlimit_fail(al, &k, 0);
    authlimit_fail(al, &k, 0);
    assert_int_equal(authlimit_begin(al, &k, 0), 0);
    authlimit_fail(al, &k, 0);
    /* Three failures: 100 ms each, one after the other, even when the
     * attempts come at once on several connections. */
    assert_int_equal(authlimit_begin(al, &k, 0), 100);
    assert_int_equal(authlimit_begin(al, &k, 0), 200);
    assert_int_equal(authlimit_begin(al, &k, 50), 250);
    /* Once the reservations are past, one delay again. */
    assert_int_equal(authlimit_begin(al, &k, 1000), 100);
    authlimit_free(al);
}

static void test_decay_and_success(void **state)
{
    authlimit *al = authlimit_new(NULL);
    authlimit_key k = v4("192.0.2.1");
    (void)state;

    for (int i = 0; i < 4; i++)
        authlimit_fail(al, &k, 0);
    assert_int_equal(authlimit_failures(al, &k, 0), 4);
    /* One half-life: 2 failures left, no delay. */
    assert_int_equal(authlimit_failures(al, &k, 60000), 2);
    assert_int_equal(authlimit_begin(al, &k, 60000), 0);
    assert_int_equal(authlimit_failures(al, &k, 240000), 0);
    /* A failure after the decay starts from what is left. */
    for (int i = 0; i < 4; i++)
        authlimit_fail(al, &k, 300000);
    assert_int_equal(authlimit_failures(al, &k, 300000), 4);
    authlimit_success(al, &k);
    assert_int_equal(authlimit_failures(al, &k, 300000), 0);
    assert_int_equal(authlimit_begin(al, &k, 300000), 0);
    assert_int_equal(authlimit_fail(al, &k, 300000), 0);
    authlimit_free(al);
}

static void test_keys(void **state)
{
    authlimit *al = authlimit_new(NULL);
    authlimit_key a = v4("192.0.2.1"), b = v4("192.0.2.2");
    authlimit_key m = v6("::ffff:192.0.2.1");
    authlimit_key p1 = v6("2001:db8:1:2::1"), p2 = v6("2001:db8:1:2:ffff::9");
    authlimit_key p3 = v6("2001:db8:1:3::1");
    authlimit_key u1, u2;
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    authlimit_key x;
    (void)state;

    authlimit_key_uid(1000, &u1);
    authlimit_key_uid(1001, &u2);
    for (int i = 0; i < 5; i++) {
        authlimit_fail(al, &a, 0);
        authlimit_fail(al, &p1, 0);
        authlimit_fail(al, &u1, 0);
    }
    assert_int_equal(authlimit_failures(al, &b, 0), 0);
    /* A v4-mapped address is the IPv4 peer. */
    assert_int_equal(authlimit_failures(al, &m, 0), 5);
    /* An IPv6 peer is its /64. */
    assert_int_equal(authlimit_failures(al, &p2, 0), 5);
    assert_int_equal(authlimit_failures(al, &p3, 0), 0);
    assert_int_equal(authlimit_failures(al, &u1, 0), 5);
    assert_int_equal(authlimit_failures(al, &u2, 0), 0);
    assert_int_equal(
        authlimit_key_sockaddr((struct sockaddr *)&un, sizeof un, &x),
        -EAFNOSUPPORT);
    authlimit_free(al);
}

static void test_bounded_table(void **state)
{
    authlimit_conf c = {.slots = 64};
    authlimit *al = authlimit_new(&c);
    authlimit_key att = v4("198.51.100.7");
    (void)state;

    for (int i = 0; i < 10; i++)
        authlimit_fail(al, &att, 0);
    /* 100000 fresh addresses, one failure each, in 64 entries. */
    for (uint32_t i = 0; i < 100000; i++) {
        struct sockaddr_in in = {.sin_family = AF_INET};
        authlimit_key k;
        in.sin_addr.s_addr = htonl(0x0a000000u + i);
        authlimit_key_sockaddr((struct sockaddr *)&in, sizeof in, &k);
        authlimit_fail(al, &k, 0);
    }
    /* The persistent peer is never the one evicted. */
    assert_int_equal(authlimit_failures(al, &att, 0), 10);
    assert_int_equal(authlimit_begin(al, &att, 0), 5000);
    authlimit_free(al);
}

static void test_conf(void **state)
{
    authlimit_conf c = {.free_fails = 1, .base_ms = 10, .max_ms = 35};
    authlimit *al = authlimit_new(&c);
    authlimit_key k = v4("192.0.2.1");
    (void)state;

    assert_int_equal(authlimit_fail(al, &k, 0), 0);
    assert_int_equal(authlimit_fail(al, &k, 0), 10);
    assert_int_equal(authlimit_fail(al, &k, 0), 20);
    assert_int_equal(authlimit_fail(al, &k, 0), 35);
    for (int i = 0; i < 100; i++)
        assert_int_equal(authlimit_fail(al, &k, 0), 35);
    authlimit_free(al);
    authlimit_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sequence),
        cmocka_unit_test(test_begin_serialises),
        cmocka_unit_test(test_decay_and_success),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_bounded_table),
        cmocka_unit_test(test_conf),
    };
    return cmocka_run_group_tests_name("authlimit", tests, NULL, NULL);
}
