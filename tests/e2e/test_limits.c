/*
 * test_limits.c - end-to-end: limits and liveness (issue 16).  Lock
 * safety: drop of a held lock or a running once is misuse, detached holds
 * need a lease, cond.wait keeps the hold's lease.  Liveness: heartbeat,
 * lease renewal.  Memory and counts: max_memory, max_goroutines,
 * max_timers, min_ticker_ms.  Paging (list, map.range) and reclaim of
 * zero-state objects.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chand.h"

#include "../common/e2e.h"
#include "../common/testd.h"

/* Returns holders[0].key of lock name as list shows it (-1: no holder). */
static json_int_t holder_field(testd_conn *c, const char *name, const char *key)
{
    char p[128];
    json_t *objs, *h;

    snprintf(p, sizeof p, "{\"prefix\":\"%s\"}", name);
    objs = json_object_get(e2e_ok(c, 0, "list", p), "objects");
    for (size_t i = 0; i < json_array_size(objs); i++) {
        json_t *o = json_array_get(objs, i);
        if (strcmp(json_string_value(json_object_get(o, "name")), name))
            continue;
        h = json_array_get(json_object_get(o, "holders"), 0);
        return h ? json_integer_value(json_object_get(h, key)) : -1;
    }
    return -1;
}

/* ------------------------------------------------------------------ */
/* Lock safety                                                        */
/* ------------------------------------------------------------------ */

static void test_drop_held(void **state)
{
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D);
    json_int_t t1, t2;
    (void)state;

    /* A held mutex stays: drop is misuse, the holder keeps it. */
    t1 = e2e_ok_int(a, 1, "mutex.lock", "{\"name\":\"m\"}", "token");
    e2e_expect_reason_msg(b, 2, "drop", "{\"name\":\"m\"}", "misuse", "held");
    e2e_expect_reason(b, 3, "mutex.lock", "{\"name\":\"m\",\"timeout_ms\":0}",
                      "timeout");
    e2e_ok(a, 4, "mutex.unlock", "{\"name\":\"m\"}");
    /* Unlocked, it left the registry by itself (a zero value). */
    e2e_expect_reason(b, 5, "drop", "{\"name\":\"m\"}", "not_found");
    /* Made again, its tokens still go on from the server-wide counter. */
    t2 = e2e_ok_int(b, 6, "mutex.lock", "{\"name\":\"m\"}", "token");
    assert_true(t2 > t1);
    e2e_ok(b, 7, "mutex.unlock", "{\"name\":\"m\"}");

    /* A read-held rwmutex, a write-held one. */
    e2e_ok(a, 8, "rwmutex.rlock", "{\"name\":\"rw\"}");
    e2e_expect_reason(b, 9, "drop", "{\"name\":\"rw\"}", "misuse");
    e2e_ok(a, 10, "rwmutex.runlock", "{\"name\":\"rw\"}");
    e2e_ok(a, 11, "rwmutex.lock", "{\"name\":\"rw\"}");
    e2e_expect_reason(b, 12, "drop", "{\"name\":\"rw\"}", "misuse");
    e2e_ok(a, 13, "rwmutex.unlock", "{\"name\":\"rw\"}");
    e2e_expect_reason(b, 14, "drop", "{\"name\":\"rw\"}", "not_found");

    /* A once in progress; once done it may go. */
    assert_true(e2e_ok_bool(a, 15, "once.do", "{\"name\":\"o\"}", "run"));
    e2e_expect_reason(b, 16, "drop", "{\"name\":\"o\"}", "misuse");
    e2e_ok(a, 17, "once.done", "{\"name\":\"o\"}");
    e2e_ok(b, 18, "drop", "{\"name\":\"o\"}");
    testd_close(a);
    testd_close(b);
}

static void test_detached_needs_lease(void **state)
{
    testd_conn *a = testd_connect(&D);
    json_t *ans;
    static const char *const bad[][2] = {
        {"go", "{\"request\":{\"method\":\"mutex.lock\","
               "\"params\":{\"name\":\"g\"}}}"},
        {"go", "{\"request\":{\"method\":\"rwmutex.rlock\","
               "\"params\":{\"name\":\"g2\"}}}"},
        {"go", "{\"request\":{\"method\":\"once.do\","
               "\"params\":{\"name\":\"g3\"}}}"},
        {"timer.afterfunc", "{\"ms\":10,\"request\":{\"method\":"
                            "\"rwmutex.lock\",\"params\":{\"name\":\"g\"}}}"},
        /* nested: checked when the outer one is made */
        {"go", "{\"request\":{\"method\":\"go\",\"params\":{\"request\":"
               "{\"method\":\"mutex.lock\",\"params\":{\"name\":\"g\"}}}}}"},
        {"timer.afterfunc", "{\"ms\":10,\"request\":{\"method\":\"go\","
                            "\"params\":{\"request\":{\"method\":"
                            "\"once.do\",\"params\":{\"name\":\"g\"}}}}}"},
    };
    (void)state;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ans = e2e_call(a, (int64_t)i + 1, bad[i][0], bad[i][1]);
        if (testd_code(ans) != -32602 ||
            !strstr(testd_message(ans), "lease_ms"))
            fail_msg("%s %s: %s", bad[i][0], bad[i][1],
                     json_dumps(ans, JSON_COMPACT));
        json_decref(ans);
    }
    /* Nothing was taken. */
    assert_int_equal(e2e_stat_of(&D, "held_locks"), 0);
    /* With a lease a detached lock is taken, and ends with its lease. */
    e2e_ok(a, 20, "go",
           "{\"request\":{\"method\":\"mutex.lock\","
           "\"params\":{\"name\":\"g\",\"lease_ms\":300}}}");
    e2e_wait_stat(&D, "held_locks", 1);
    ans = e2e_call(a, 21, "mutex.lock", "{\"name\":\"g\"}"); /* waits */
    assert_true(json_is_true(json_object_get(testd_result(ans), "owner_dead")));
    json_decref(ans);
    e2e_ok(a, 22, "mutex.unlock", "{\"name\":\"g\"}");
    /* A detached once.do with a lease: the once reopens when it ends. */
    e2e_ok(a, 23, "go",
           "{\"request\":{\"method\":\"once.do\","
           "\"params\":{\"name\":\"g3\",\"lease_ms\":300}}}");
    assert_true(e2e_ok_bool(a, 24, "once.do", "{\"name\":\"g3\"}", "run"));
    e2e_ok(a, 25, "once.done", "{\"name\":\"g3\"}");
    testd_close(a);
}

static void test_cond_keeps_lease(void **state)
{
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D);
    json_t *ans;
    (void)state;

    e2e_ok(a, 1, "mutex.lock", "{\"name\":\"cm\",\"lease_ms\":60000}");
    assert_int_equal(holder_field(b, "cm", "lease_ms"), 60000);
    e2e_post(a, 2, "cond.wait", "{\"name\":\"cv\",\"mutex\":\"cm\"}");
    e2e_wait_stat(&D, "waiters", 1);
    e2e_ok(b, 3, "cond.signal", "{\"name\":\"cv\"}");
    ans = testd_wait_id(a, 2, 20000);
    assert_non_null(testd_result(ans));
    json_decref(ans);
    /* Re-acquired with the same lease, so it outlives a's session. */
    assert_int_equal(holder_field(b, "cm", "lease_ms"), 60000);
    testd_close(a);
    e2e_wait_stat(&D, "sessions", 2);
    assert_int_equal(e2e_stat_of(&D, "held_locks"), 1);
    e2e_expect_reason(b, 4, "mutex.lock", "{\"name\":\"cm\",\"timeout_ms\":50}",
                      "timeout");
    testd_close(b);
}

/* ------------------------------------------------------------------ */
/* Liveness                                                           */
/* ------------------------------------------------------------------ */

/* A client asks for a 500 ms heartbeat, takes a lock and is SIGSTOPped:
 * its session ends (as a disconnect) at the heartbeat's deadline and the
 * waiter gets the lock, owner_dead, within a second of it. */
static void test_heartbeat_stopped_client(void **state)
{
    testd_conn *b = testd_connect(&D);
    json_t *ans;
    int64_t t_stop, took;
    pid_t pid;
    (void)state;

    pid = testd_fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        testd_conn *c = testd_connect(&D);
        json_t *h = c ? testd_call(c, 1, "hello",
                                   json_pack("{s:i, s:i}", "version", 1,
                                             "heartbeat_ms", 500),
                                   10000)
                      : NULL;
        json_t *a = h && testd_result(h)
                        ? testd_call(c, 2, "mutex.lock",
                                     json_pack("{s:s}", "name", "hb"), 10000)
                        : NULL;
        if (!a || !testd_result(a))
            _exit(1);
        pause();
        _exit(0);
    }
    e2e_wait_stat(&D, "held_locks", 1);
    assert_int_equal(kill(pid, SIGSTOP), 0);
    t_stop = testd_now_ms();
    /* Its last byte arrived before t_stop: the deadline is at most
     * t_stop + 500. */
    ans =
        e2e_call(b, 1, "mutex.lock", "{\"name\":\"hb\",\"timeout_ms\":10000}");
    took = testd_now_ms() - t_stop;
    assert_non_null(testd_result(ans));
    assert_true(json_is_true(json_object_get(testd_result(ans), "owner_dead")));
    json_decref(ans);
    printf("# stopped client lost its lock %lld ms after SIGSTOP "
           "(heartbeat_ms 500)\n",
           (long long)took);
    assert_true(took <= 500 + 1000);
    kill(pid, SIGKILL);
    testd_reap(pid, NULL, -1);
    testd_close(b);
}

/* Any request resets the heartbeat; silence ends the session. */
static void test_heartbeat_reset(void **state)
{
    testd_conn *a = testd_connect(&D);
    json_t *r;
    (void)state;

    e2e_expect_reason(a, 1, "hello", "{\"version\":1,\"heartbeat_ms\":50}",
                      "invalid");
    r = e2e_ok(a, 2, "hello", "{\"version\":1,\"heartbeat_ms\":300}");
    assert_int_equal(json_integer_value(json_object_get(r, "heartbeat_ms")),
                     300);
    /* 12 pings 100 ms apart: 1.2 s, four heartbeats, still alive. */
    for (int i = 0; i < 12; i++) {
        e2e_ok(a, 10 + i, "ping", NULL);
        testd_sleep_ms(100);
    }
    e2e_ok(a, 30, "mutex.lock", "{\"name\":\"hr\"}");
    assert_int_equal(e2e_stat_of(&D, "held_locks"), 1);
    /* Silence: the session ends and its lock is released. */
    assert_true(testd_wait_eof(a, 10000));
    e2e_wait_stat(&D, "held_locks", 0);
    testd_close(a);
}

/* libchand pings by itself while a blocking call waits longer than the
 * heartbeat: the session survives a 1.2 s lock wait with a 300 ms
 * heartbeat. */
static void test_heartbeat_libchand(void **state)
{
    testd_conn *a = testd_connect(&D);
    chand_conn *c = NULL;
    chand_error err;
    int64_t token = 0;
    bool dead = false;
    (void)state;

    assert_int_equal(chand_connect("127.0.0.1", D.port, 5000, &c, &err), 0);
    assert_int_equal(chand_set_heartbeat(c, 50), CHAND_EARG);
    assert_int_equal(chand_set_heartbeat(c, 300), 0);
    e2e_ok(a, 1, "mutex.lock", "{\"name\":\"lh\",\"lease_ms\":1200}");
    assert_int_equal(chand_mutex_lock(c, "lh", 10000, -1, &token, &dead), 0);
    assert_true(dead); /* the lease expired, 4 heartbeats later */
    assert_int_equal(chand_ping(c), 0);
    assert_int_equal(chand_mutex_unlock(c, "lh", token), 0);
    chand_close_conn(c);
    testd_close(a);
}

/* Returns the keepalive timer of the daemon's end of connection c, in
 * seconds left, from /proc/net/tcp (timer 2 is keepalive); -1: no
 * keepalive timer, -2: not found. */
static double server_keepalive_s(testd_conn *c, int port)
{
    struct sockaddr_in me;
    socklen_t len = sizeof me;
    char line[512];
    double found = -2;
    FILE *f;

    assert_int_equal(getsockname(testd_fd(c), (struct sockaddr *)&me, &len), 0);
    f = fopen("/proc/net/tcp", "r");
    assert_non_null(f);
    while (fgets(line, sizeof line, f)) {
        unsigned lport, rport, tr, when;
        if (sscanf(line, " %*d: %*8x:%x %*8x:%x %*x %*x:%*x %x:%x", &lport,
                   &rport, &tr, &when) != 4)
            continue;
        if ((int)lport == port && rport == ntohs(me.sin_port))
            found = tr == 2 ? when / 100.0 : -1; /* USER_HZ */
    }
    fclose(f);
    return found;
}

/* Every client socket gets keepalive, socket-activated ones included:
 * the daemon's end carries a keepalive timer of at most tcp_keepalive. */
static void test_keepalive(void **state)
{
    static const char *const args[] = {"--tcp-keepalive", "7", NULL};
    struct sockaddr_in sa = {.sin_family = AF_INET};
    testd_conn *c = testd_connect(&D);
    testd d2;
    double left;
    int lfd;
    (void)state;

    e2e_ok(c, 1, "ping", NULL);
    left = server_keepalive_s(c, D.port);
    printf("# default: keepalive timer %.2f s\n", left);
    assert_true(left > 0 && left <= 30);
    testd_close(c);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 16), 0);
    assert_int_equal(testd_start_opts(&d2, &(testd_opts){.args = args,
                                                         .log = "/dev/null",
                                                         .listen_fd = lfd}),
                     0);
    close(lfd);
    c = testd_connect_port(d2.port);
    assert_non_null(c);
    e2e_ok(c, 2, "ping", NULL);
    left = server_keepalive_s(c, d2.port);
    printf("# socket-activated, tcp_keepalive 7: keepalive timer %.2f s\n",
           left);
    assert_true(left > 0 && left <= 7);
    testd_close(c);
    assert_int_equal(testd_stop(&d2), 0);
}

/* mutex.renew keeps a lease alive past its first end; a token that does
 * not hold the lock gets not_locked. */
static void test_renew(void **state)
{
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D);
    json_int_t tok;
    int64_t t0;
    char p[128];
    (void)state;

    t0 = testd_now_ms();
    tok = e2e_ok_int(a, 1, "mutex.lock", "{\"name\":\"rn\",\"lease_ms\":300}",
                     "token");
    snprintf(p, sizeof p, "{\"name\":\"rn\",\"token\":%lld,\"lease_ms\":5000}",
             (long long)tok);
    assert_int_equal(e2e_ok_int(a, 2, "mutex.renew", p, "lease_ms"), 5000);
    testd_close(a); /* the lease, not the session, keeps it */
    /* Past the first lease's end (300 ms) it is still held. */
    while (testd_now_ms() - t0 < 600)
        testd_sleep_ms(20);
    e2e_expect_reason(b, 3, "mutex.lock", "{\"name\":\"rn\",\"timeout_ms\":0}",
                      "timeout");
    assert_int_equal(e2e_stat_of(&D, "held_locks"), 1);
    assert_int_equal(holder_field(b, "rn", "lease_ms"), 5000);
    /* Wrong token, unknown lock, rwmutex by token. */
    e2e_expect_reason(b, 4, "mutex.renew",
                      "{\"name\":\"rn\",\"token\":999999,\"lease_ms\":100}",
                      "not_locked");
    e2e_expect_reason(b, 5, "rwmutex.renew",
                      "{\"name\":\"nope\",\"token\":1,\"lease_ms\":100}",
                      "not_locked");
    e2e_expect_reason(b, 6, "mutex.renew",
                      "{\"name\":\"rn\",\"token\":1,\"lease_ms\":0}",
                      "invalid");
    snprintf(p, sizeof p, "{\"name\":\"rn\",\"token\":%lld}", (long long)tok);
    e2e_ok(b, 7, "mutex.unlock", p);
    snprintf(p, sizeof p, "{\"name\":\"rn\",\"token\":%lld,\"lease_ms\":100}",
             (long long)tok);
    e2e_expect_reason(b, 8, "mutex.renew", p, "not_locked");
    tok = e2e_ok_int(b, 9, "rwmutex.rlock", "{\"name\":\"rr\"}", "token");
    snprintf(p, sizeof p, "{\"name\":\"rr\",\"token\":%lld,\"lease_ms\":60000}",
             (long long)tok);
    e2e_ok(b, 10, "rwmutex.renew", p);
    assert_int_equal(holder_field(b, "rr", "lease_ms"), 60000);
    testd_close(b);
}

/* ------------------------------------------------------------------ */
/* Memory and counts                                                  */
/* ------------------------------------------------------------------ */

#define MIB (1024 * 1024)
/* What the daemon's RSS may exceed max_memory by: its code and libraries,
 * the runtime's stacks and the allocator's free lists (measured: see the
 * figure printed). */
#define RSS_OVERHEAD (64 * MIB)

/* One client floods 1 MiB values into a channel while another keeps being
 * served: the flooder gets limit naming max_memory, RSS stays below
 * max_memory plus RSS_OVERHEAD, and after a recv it can send again. */
static void test_max_memory_flood(void **state)
{
    static const char *const args[] = {
        "--max-memory", "64m", "--max-line", "4m", "--max-value", "4m", NULL};
    testd d;
    testd_conn *a, *b;
    char *big = malloc(MIB + 64), *fill;
    size_t room;
    json_t *ans, *st;
    int sent = 0, refused = 0;
    json_int_t rss, used;
    (void)state;

    assert_non_null(big);
    assert_int_equal(testd_start(&d, args), 0);
    a = testd_connect_port(d.port);
    b = testd_connect_port(d.port);
    e2e_ok(a, 1, "make", "{\"name\":\"flood\",\"cap\":1000}");
    memset(big, 'x', MIB);
    big[MIB] = '\0';
    for (int i = 0; i < 200 && !refused; i++) {
        assert_int_equal(
            testd_sendf(a,
                        "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":"
                        "\"send\",\"params\":{\"name\":\"flood\","
                        "\"value\":\"%s\"}}",
                        100 + i, big),
            0);
        ans = testd_wait_id(a, 100 + i, 20000);
        assert_non_null(ans);
        if (testd_result(ans)) {
            sent++;
        } else {
            e2e_check_reason(ans, "limit", "max_memory reached");
            refused++;
        }
        json_decref(ans);
        e2e_ok(b, 0, "ping", NULL); /* the other client is served */
    }
    st = testd_stats(&d);
    assert_non_null(st);
    rss = json_integer_value(json_object_get(st, "rss_bytes"));
    used = json_integer_value(json_object_get(st, "memory_bytes"));
    printf("# flood: %d values of 1 MiB sent before limit; memory_bytes %lld, "
           "rss %lld MiB (max_memory 64 MiB, overhead allowed %d MiB)\n",
           sent, (long long)used, (long long)(rss / MIB), RSS_OVERHEAD / MIB);
    assert_int_equal(json_integer_value(json_object_get(st, "max_memory")),
                     64 * MIB);
    json_decref(st);
    assert_int_equal(refused, 1);
    assert_true(sent >= 32 && sent < 64);
    assert_true(used >= (json_int_t)sent * MIB && used <= 64 * MIB);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    /* (A sanitizer's quarantine and shadow memory are not the daemon's.) */
    assert_true(rss < 64 * MIB + RSS_OVERHEAD);
#endif
    /* Full: growing requests refused, reads and frees still work. */
    /* A value just over the room left. */
    room = 64 * MIB - (size_t)used + 4096;
    assert_true(room < 4 * MIB);
    fill = malloc(room + 1);
    assert_non_null(fill);
    memset(fill, 'y', room);
    fill[room] = '\0';
    assert_int_equal(testd_sendf(b,
                                 "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":"
                                 "\"map.store\",\"params\":{\"name\":\"mm\","
                                 "\"key\":\"k\",\"value\":\"%s\"}}",
                                 fill),
                     0);
    free(fill);
    ans = testd_wait_id(b, 2, 20000);
    e2e_check_reason(ans, "limit", "max_memory");
    json_decref(ans);
    e2e_ok(b, 3, "len", "{\"name\":\"flood\"}");
    e2e_ok(b, 4, "recv", "{\"name\":\"flood\"}");
    e2e_ok(b, 5, "recv", "{\"name\":\"flood\"}");
    /* Freed: the flooder may send again. */
    assert_int_equal(testd_sendf(a,
                                 "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":"
                                 "\"send\",\"params\":{\"name\":\"flood\","
                                 "\"value\":\"%s\"}}",
                                 big),
                     0);
    ans = testd_wait_id(a, 9, 20000);
    assert_non_null(testd_result(ans));
    json_decref(ans);
    /* Dropping the channel gives everything back. */
    e2e_ok(b, 6, "drop", "{\"name\":\"flood\"}");
    used = e2e_stat_of(&d, "memory_bytes");
    printf("# after drop: memory_bytes %lld\n", (long long)used);
    assert_true(used < MIB);
    free(big);
    testd_close(a);
    testd_close(b);
    assert_int_equal(testd_stop(&d), 0);
}

/* max_timers, min_ticker_ms and max_goroutines, each with its number. */
static void test_count_limits(void **state)
{
    static const char *const args[] = {
        "--max-timers", "5", "--min-ticker-ms", "50", "--max-goroutines",
        "64",           NULL};
    testd d;
    testd_conn *a;
    char p[96];
    int limited = 0, ok = 0;
    (void)state;

    assert_int_equal(testd_start(&d, args), 0);
    a = testd_connect_port(d.port);
    e2e_expect_reason_msg(a, 1, "timer.ticker", "{\"name\":\"t0\",\"ms\":49}",
                          "limit", "min_ticker_ms");
    e2e_ok(a, 2, "timer.ticker", "{\"name\":\"t0\",\"ms\":50}");
    for (int i = 1; i < 5; i++) {
        snprintf(p, sizeof p, "{\"name\":\"t%d\",\"ms\":600000}", i);
        e2e_ok(a, 10 + i, "timer.after", p);
    }
    e2e_expect_reason_msg(a, 20, "timer.after",
                          "{\"name\":\"t5\",\"ms\":600000}", "limit",
                          "max_timers");
    e2e_expect_reason_msg(a, 21, "timer.afterfunc",
                          "{\"ms\":1000,\"request\":{\"method\":\"ping\","
                          "\"params\":{}}}",
                          "limit", "max_timers");
    e2e_ok(a, 22, "drop", "{\"name\":\"t0\"}");
    e2e_ok(a, 23, "timer.after", "{\"name\":\"t5\",\"ms\":600000}");

    /* Waits park goroutines: at most 64 in all. */
    e2e_ok(a, 30, "wg.add", "{\"name\":\"w\",\"delta\":1}");
    for (int i = 0; i < 100; i++)
        e2e_post(a, 100 + i, "wg.wait", "{\"name\":\"w\"}");
    /* The refused ones answer at once, the others once the wg is done. */
    e2e_ok(a, 31, "runtime.stats", NULL);
    assert_true(e2e_stat_of(&d, "goroutines") <= 64);
    e2e_ok(a, 32, "wg.done", "{\"name\":\"w\"}");
    for (int i = 0; i < 100; i++) {
        json_t *ans = testd_wait_id(a, 100 + i, 20000);
        assert_non_null(ans);
        if (testd_result(ans))
            ok++;
        else if (strstr(testd_message(ans), "max_goroutines"))
            limited++;
        json_decref(ans);
    }
    printf("# max_goroutines 64: %d waits parked, %d refused\n", ok, limited);
    assert_int_equal(ok + limited, 100);
    assert_true(limited >= 36 && ok > 0);
    testd_close(a);
    assert_int_equal(testd_stop(&d), 0);
}

/* Writes n requests "method" with params p and ids id0.. in one write. */
static void post_many(testd_conn *c, int64_t id0, int n, const char *method,
                      const char *p)
{
    size_t cap = (size_t)n * (strlen(method) + strlen(p) + 64), len = 0;
    char *buf = malloc(cap);

    assert_non_null(buf);
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, cap - len,
                                "{\"jsonrpc\":\"2.0\",\"id\":%lld,"
                                "\"method\":\"%s\",\"params\":%s}\n",
                                (long long)(id0 + i), method, p);
    assert_int_equal(testd_write(c, buf, len), 0);
    free(buf);
}

/* Polls runtime.stats until key == want, for up to ms. */
static void wait_stat_long(const testd *d, const char *key, json_int_t want,
                           int ms)
{
    int64_t t0 = testd_now_ms();

    while (e2e_stat_of(d, key) != want) {
        if (testd_now_ms() - t0 > ms)
            fail_msg("stats %s stayed %lld, want %lld", key,
                     (long long)e2e_stat_of(d, key), (long long)want);
        testd_sleep_ms(20);
    }
}

/* runtime.stats is O(1): the waiters count is kept by the requests that
 * start and stop waiting (and by the runtime as their goroutines park),
 * not by walking every goroutine.  With 10k parked goroutines (wg.wait)
 * and 10k awaits (recv), one line of 100 runtime.stats is answered, each
 * with the exact count, and runtime.dump agrees.  Under TSan, 3k each:
 * every goroutine is a TSan fiber, and TSan dies past 8128 threads. */
#ifdef __SANITIZE_THREAD__
#define MANY_WAITS 3000
#else
#define MANY_WAITS 10000
#endif
static void test_stats_many_waiters(void **state)
{
    testd_conn *g = testd_connect(&D), *w = testd_connect(&D),
               *a = testd_connect(&D);
    json_int_t base = e2e_stat_of(&D, "waiters");
    int64_t t0;
    json_t *ans;
    (void)state;

    e2e_ok(a, 1, "wg.add", "{\"name\":\"sw\",\"delta\":1}");
    e2e_ok(a, 2, "make", "{\"name\":\"sc\"}");
    post_many(g, 1000, MANY_WAITS, "wg.wait", "{\"name\":\"sw\"}");
    post_many(w, 1000, MANY_WAITS, "recv", "{\"name\":\"sc\"}");
    wait_stat_long(&D, "waiters", base + 2 * MANY_WAITS, 180000);

    t0 = testd_now_ms();
    post_many(a, 100, 100, "runtime.stats", "{}");
    for (int i = 0; i < 100; i++) {
        ans = testd_wait_id(a, 100 + i, 60000);
        assert_non_null(testd_result(ans));
        json_t *res = testd_result(ans);
        assert_int_equal(json_integer_value(json_object_get(res, "waiters")),
                         base + 2 * MANY_WAITS);
        json_decref(ans);
    }
    printf("# 100 runtime.stats with %d parked waits: %lld ms\n",
           2 * MANY_WAITS, (long long)(testd_now_ms() - t0));
    ans = e2e_call(a, 3, "runtime.dump", NULL);
    assert_int_equal(
        json_integer_value(json_object_get(testd_result(ans), "waiters")),
        base + 2 * MANY_WAITS);
    json_decref(ans);

    e2e_ok(a, 4, "wg.done", "{\"name\":\"sw\"}");
    e2e_ok(a, 5, "close", "{\"name\":\"sc\"}");
    for (int i = 0; i < MANY_WAITS; i++) {
        json_decref(testd_wait_id(g, 1000 + i, 60000));
        json_decref(testd_wait_id(w, 1000 + i, 60000));
    }
    wait_stat_long(&D, "waiters", base, 60000);
    testd_close(g);
    testd_close(w);
    testd_close(a);
}

/* ------------------------------------------------------------------ */
/* Paging                                                             */
/* ------------------------------------------------------------------ */

#define NOBJ 100000

/* Makes n atomics prefix0..prefix<n-1> (value 1) with pipelined
 * notifications, then waits for them by a ping. */
static void make_atomics(testd_conn *c, const char *prefix, int from, int n)
{
    char *buf = malloc(4096 * 96), *p;

    assert_non_null(buf);
    for (int i = from; i < from + n;) {
        p = buf;
        for (int k = 0; k < 4096 && i < from + n; k++, i++)
            p += sprintf(p,
                         "{\"jsonrpc\":\"2.0\",\"method\":\"atomic.store\","
                         "\"params\":{\"name\":\"%s%d\",\"value\":1}}\n",
                         prefix, i);
        assert_int_equal(testd_write(c, buf, (size_t)(p - buf)), 0);
    }
    free(buf);
    e2e_ok(c, 0, "ping", NULL);
}

typedef struct pinger {
    int port;
    _Atomic bool stop;
    int64_t worst_us;
    int n;
} pinger;

static void *pinger_run(void *arg)
{
    pinger *pg = arg;
    testd_conn *c = testd_connect_port(pg->port);

    while (c && !atomic_load(&pg->stop)) {
        struct timespec t0, t1;
        json_t *a;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        a = testd_call(c, pg->n + 1, "ping", NULL, 20000);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (!a)
            break;
        json_decref(a);
        int64_t us = (t1.tv_sec - t0.tv_sec) * 1000000 +
                     (t1.tv_nsec - t0.tv_nsec) / 1000;
        if (us > pg->worst_us)
            pg->worst_us = us;
        pg->n++;
    }
    testd_close(c);
    return NULL;
}

/* A paged list of 100k objects: pages bounded by limit, the cursor walk
 * sees every object present throughout exactly once while others are
 * added, and another client's pings go on (their worst delay printed:
 * a timing figure, not asserted). */
static void test_list_paging(void **state)
{
    static const char *const args[] = {"--max-objects", "200000", NULL};
    unsigned char *seen = calloc(NOBJ, 1);
    testd d;
    testd_conn *a, *w;
    pinger pg = {0};
    pthread_t th;
    json_int_t cursor = 0;
    int pages = 0, added = 0, total = 0;
    (void)state;

    assert_non_null(seen);
    assert_int_equal(testd_start(&d, args), 0);
    a = testd_connect_port(d.port);
    w = testd_connect_port(d.port);
    make_atomics(w, "o", 0, NOBJ);
    assert_int_equal(e2e_stat_of(&d, "objects"), NOBJ);
    /* The default page. */
    {
        json_t *r = e2e_ok(a, 1, "list", NULL);
        size_t n = json_array_size(json_object_get(r, "objects"));
        assert_true(n <= 1000 && n >= 900); /* whole buckets: up to 1000 */
        assert_true(json_integer_value(json_object_get(r, "cursor")) > 0);
    }
    e2e_expect_reason(a, 2, "list", "{\"limit\":0}", "invalid");
    pg.port = d.port;
    assert_int_equal(pthread_create(&th, NULL, pinger_run, &pg), 0);
    do {
        char p[64];
        json_t *objs;
        snprintf(p, sizeof p, "{\"cursor\":%lld,\"limit\":500}",
                 (long long)cursor);
        json_t *r = e2e_ok(a, 10 + pages, "list", p);
        objs = json_object_get(r, "objects");
        assert_true(json_array_size(objs) <= 500);
        for (size_t i = 0; i < json_array_size(objs); i++) {
            const char *n = json_string_value(
                json_object_get(json_array_get(objs, i), "name"));
            if (n[0] == 'o') {
                int k = atoi(n + 1);
                assert_true(k >= 0 && k < NOBJ);
                if (seen[k]++)
                    fail_msg("%s listed twice", n);
                total++;
            }
        }
        cursor = json_integer_value(json_object_get(r, "cursor"));
        pages++;
        /* Objects come while the walk goes on. */
        if (pages % 10 == 0) {
            make_atomics(w, "n", added, 100);
            added += 100;
        }
    } while (cursor != 0);
    atomic_store(&pg.stop, true);
    pthread_join(th, NULL);
    printf("# list of %d objects: %d pages of <= 500, %d added meanwhile; "
           "another client's worst ping %.2f ms over %d pings\n",
           NOBJ, pages, added, pg.worst_us / 1000.0, pg.n);
    assert_int_equal(total, NOBJ); /* none missed */
    assert_true(pages >= NOBJ / 500);
    free(seen);
    testd_close(a);
    testd_close(w);
    assert_int_equal(testd_stop(&d), 0);
}

#define NKEYS 20000

/* map.range pages likewise, while the map grows between pages. */
static void test_map_range_paging(void **state)
{
    testd_conn *a = testd_connect(&D);
    unsigned char *seen = calloc(NKEYS, 1);
    char *buf = malloc(4096 * 96), *p;
    json_int_t cursor = 0;
    int pages = 0, total = 0, added = 0;
    (void)state;

    assert_non_null(seen);
    assert_non_null(buf);
    for (int i = 0; i < NKEYS;) {
        p = buf;
        for (int k = 0; k < 4096 && i < NKEYS; k++, i++)
            p += sprintf(p,
                         "{\"jsonrpc\":\"2.0\",\"method\":\"map.store\","
                         "\"params\":{\"name\":\"big\",\"key\":\"k%d\","
                         "\"value\":%d}}\n",
                         i, i);
        assert_int_equal(testd_write(a, buf, (size_t)(p - buf)), 0);
    }
    assert_int_equal(e2e_ok_int(a, 1, "map.len", "{\"name\":\"big\"}", "len"),
                     NKEYS);
    do {
        char q[96];
        const char *key;
        json_t *v, *r;
        snprintf(q, sizeof q,
                 "{\"name\":\"big\",\"cursor\":%lld,\"limit\":300}",
                 (long long)cursor);
        r = e2e_ok(a, 0, "map.range", q);
        assert_true(json_object_size(json_object_get(r, "entries")) <= 300);
        json_object_foreach(json_object_get(r, "entries"), key, v)
        {
            if (key[0] != 'k')
                continue;
            int k = atoi(key + 1);
            assert_true(k >= 0 && k < NKEYS);
            assert_int_equal(json_integer_value(v), k);
            if (seen[k]++)
                fail_msg("key %s twice", key);
            total++;
        }
        cursor = json_integer_value(json_object_get(r, "cursor"));
        pages++;
        /* The map grows (its buckets double) while the walk goes on. */
        if (pages % 5 == 0 && added < 20000) {
            p = buf;
            for (int k = 0; k < 2000; k++, added++)
                p += sprintf(p,
                             "{\"jsonrpc\":\"2.0\",\"method\":\"map.store\","
                             "\"params\":{\"name\":\"big\",\"key\":\"n%d\","
                             "\"value\":0}}\n",
                             added);
            assert_int_equal(testd_write(a, buf, (size_t)(p - buf)), 0);
        }
    } while (cursor != 0);
    printf("# map.range of %d keys: %d pages of <= 300, %d keys added "
           "meanwhile\n",
           NKEYS, pages, added);
    assert_int_equal(total, NKEYS);
    e2e_expect_reason(a, 2, "map.range", "{\"name\":\"big\",\"limit\":0}",
                      "invalid");
    free(buf);
    free(seen);
    testd_close(a);
}

/* ------------------------------------------------------------------ */
/* Reclaim                                                            */
/* ------------------------------------------------------------------ */

/* Objects in their zero state leave the registry; tokens stay monotonic;
 * channels and onces stay until dropped. */
static void test_reclaim(void **state)
{
    testd_conn *a = testd_connect(&D), *b = testd_connect(&D);
    json_int_t base, last = 0, t;
    char p[96];
    json_t *ans;
    (void)state;

    base = e2e_stat_of(&D, "objects");
    for (int i = 0; i < 1000; i++) {
        snprintf(p, sizeof p, "{\"name\":\"lk%d\"}", i);
        t = e2e_ok_int(a, 1, "mutex.lock", p, "token");
        assert_true(t > last); /* server-wide, never repeating */
        last = t;
        e2e_ok(a, 2, "mutex.unlock", p);
    }
    printf("# 1000 lock/unlock pairs on distinct names: %lld extra objects\n",
           (long long)(e2e_stat_of(&D, "objects") - base));
    assert_int_equal(e2e_stat_of(&D, "objects"), base);
    /* Each family in its zero state, and one that is not. */
    e2e_ok(a, 3, "rwmutex.rlock", "{\"name\":\"rw\"}");
    e2e_ok(a, 4, "rwmutex.runlock", "{\"name\":\"rw\"}");
    e2e_ok(a, 5, "wg.add", "{\"name\":\"wg\",\"delta\":2}");
    e2e_ok(a, 6, "atomic.add", "{\"name\":\"at\",\"delta\":5}");
    e2e_ok(a, 7, "map.store", "{\"name\":\"mp\",\"key\":\"k\",\"value\":1}");
    assert_int_equal(e2e_stat_of(&D, "objects"), base + 3);
    e2e_ok(a, 8, "wg.add", "{\"name\":\"wg\",\"delta\":-2}");
    e2e_ok(a, 9, "atomic.store", "{\"name\":\"at\",\"value\":0}");
    e2e_ok(a, 10, "map.delete", "{\"name\":\"mp\",\"key\":\"k\"}");
    e2e_ok(a, 11, "atomic.load", "{\"name\":\"never\"}");
    e2e_ok(a, 12, "cond.signal", "{\"name\":\"cv\"}");
    assert_int_equal(e2e_stat_of(&D, "objects"), base);
    /* Zero values read as zero values: nobody can tell. */
    assert_int_equal(
        e2e_ok_int(a, 13, "atomic.load", "{\"name\":\"at\"}", "value"), 0);
    assert_int_equal(e2e_ok_int(a, 14, "map.len", "{\"name\":\"mp\"}", "len"),
                     0);
    /* A lock someone waits for stays; then it goes. */
    e2e_ok(a, 15, "mutex.lock", "{\"name\":\"w\"}");
    e2e_post(b, 16, "mutex.lock", "{\"name\":\"w\"}");
    e2e_wait_stat(&D, "waiters", 1);
    e2e_ok(a, 17, "mutex.unlock", "{\"name\":\"w\"}");
    ans = testd_wait_id(b, 16, 20000);
    assert_non_null(testd_result(ans));
    json_decref(ans);
    assert_int_equal(e2e_stat_of(&D, "objects"), base + 1);
    e2e_ok(b, 18, "mutex.unlock", "{\"name\":\"w\"}");
    assert_int_equal(e2e_stat_of(&D, "objects"), base);
    /* Channels and onces stay. */
    e2e_ok(a, 19, "make", "{\"name\":\"ch\"}");
    assert_true(e2e_ok_bool(a, 20, "once.do", "{\"name\":\"on\"}", "run"));
    e2e_ok(a, 21, "once.done", "{\"name\":\"on\"}");
    assert_int_equal(e2e_stat_of(&D, "objects"), base + 2);
    testd_close(a);
    testd_close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_drop_held, e2e_setup,
                                        e2e_teardown),
        cmocka_unit_test_setup_teardown(test_detached_needs_lease, e2e_setup,
                                        e2e_teardown),
        cmocka_unit_test_setup_teardown(test_cond_keeps_lease, e2e_setup,
                                        e2e_teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_stopped_client,
                                        e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_reset, e2e_setup,
                                        e2e_teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_libchand, e2e_setup,
                                        e2e_teardown),
        cmocka_unit_test_setup_teardown(test_renew, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_keepalive, e2e_setup,
                                        e2e_teardown),
        cmocka_unit_test_setup_teardown(test_max_memory_flood, e2e_setup,
                                        e2e_teardown),
        cmocka_unit_test_setup_teardown(test_count_limits, e2e_setup,
                                        e2e_teardown),
        cmocka_unit_test_setup_teardown(test_stats_many_waiters, e2e_setup,
                                        e2e_teardown),
        cmocka_unit_test_setup_teardown(test_list_paging, e2e_setup,
                                        e2e_teardown),
        cmocka_unit_test_setup_teardown(test_map_range_paging, e2e_setup,
                                        e2e_teardown),
        cmocka_unit_test_setup_teardown(test_reclaim, e2e_setup, e2e_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
