/*
 * test_client_cluster.c - libchand against a cluster: server lists, the
 * not_leader redirect (to data.leader, or to the next server during an
 * election), the failover timeout, a call lost in flight (CHAND_ECONN and
 * never sent twice), reconnecting to the next leader, and the cluster.*
 * calls' wire shape.
 *
 * The nodes are fakes run by a thread of this test on 127.0.0.1 and free
 * ports: each says hello, and then, as the test scripts it, executes calls
 * (the leader: it answers {"node": i, "method": m, "params": p}), refuses
 * them (a follower: not_leader with or without data.leader), or hangs up
 * on them unanswered (a leader dying in flight).  Every node counts the
 * calls it received, so a test can prove no call was sent twice.  The real
 * three-node runs are in tests/cluster/.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "chand.h"

#include "../common/testd.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* The fake nodes                                                     */
/* ------------------------------------------------------------------ */

#define NODES 3
#define CONNS 32

enum role { FOLLOWER, LEADER, HANGUP };

typedef struct node {
    int lfd, port;
    enum role role;
    int hint;          /* follower: index of the leader named, -1: none,
                        * -2: an address that does not parse */
    int promote_after; /* follower: becomes LEADER after this many
                        * refusals (0: never) */
    int closing;       /* the fake thread is to close its listener */
    int calls;         /* requests other than hello received */
    int hellos;
    char last_method[64];
    json_t *last_params;
} node;

typedef struct fconn {
    int fd, node;
    char buf[8192];
    size_t len;
} fconn;

static node g_nodes[NODES];
static fconn g_conns[CONNS];
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t g_thread;
static int g_stop_pipe[2] = {-1, -1};

static int listen_free_port(int *port)
{
    int fd = testd_bind_loopback(port);

    if (fd >= 0 && listen(fd, 16) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void send_json(int fd, json_t *msg)
{
    char *s = json_dumps(msg, JSON_COMPACT);
    size_t n;

    json_decref(msg);
    if (!s)
        return;
    n = strlen(s);
    if (send(fd, s, n, MSG_NOSIGNAL) < 0 || send(fd, "\n", 1, MSG_NOSIGNAL) < 0)
        fprintf(stderr, "fake: send: %s\n", strerror(errno));
    free(s);
}

/* Answers one request line on connection k; returns -1 to hang up. */
static int fake_answer(fconn *k, const char *line)
{
    json_t *req = json_loads(line, 0, NULL), *id, *params;
    const char *method;
    node *n = &g_nodes[k->node];
    int rc = 0;

    if (!req)
        return -1;
    id = json_object_get(req, "id");
    method = json_string_value(json_object_get(req, "method"));
    params = json_object_get(req, "params");
    if (!method || !id) {
        json_decref(req); /* a notification (ping): nothing to answer */
        return 0;
    }
    if (!strcmp(method, "hello")) {
        n->hellos++;
        send_json(k->fd, json_pack("{s:s, s:O, s:{s:i, s:s, s:s}}", "jsonrpc",
                                   "2.0", "id", id, "result", "version", 1,
                                   "server", "fake", "session", "s1"));
        json_decref(req);
        return 0;
    }
    n->calls++;
    snprintf(n->last_method, sizeof n->last_method, "%s", method);
    json_decref(n->last_params);
    n->last_params = params ? json_deep_copy(params) : json_object();
    if (n->role == FOLLOWER && n->promote_after > 0 &&
        n->calls > n->promote_after)
        n->role = LEADER;
    if (n->role == HANGUP) {
        rc = -1;
    } else if (n->role == LEADER) {
        send_json(k->fd, json_pack("{s:s, s:O, s:{s:i, s:s, s:O}}", "jsonrpc",
                                   "2.0", "id", id, "result", "node", k->node,
                                   "method", method, "params", n->last_params));
    } else {
        json_t *data = json_pack("{s:s}", "reason", "not_leader");
        if (n->hint == -2) {
            json_object_set_new(data, "leader", json_string("[::1"));
        } else if (n->hint >= 0) {
            char addr[32];
            snprintf(addr, sizeof addr, "127.0.0.1:%d", g_nodes[n->hint].port);
            json_object_set_new(data, "leader", json_string(addr));
        }
        send_json(k->fd,
                  json_pack("{s:s, s:O, s:{s:i, s:s, s:o}}", "jsonrpc", "2.0",
                            "id", id, "error", "code", -32018, "message",
                            "this node is not the leader", "data", data));
    }
    json_decref(req);
    return rc;
}

static void fake_drop(fconn *k)
{
    close(k->fd);
    k->fd = -1;
    k->len = 0;
}

static void fake_read(fconn *k)
{
    ssize_t r = recv(k->fd, k->buf + k->len, sizeof k->buf - k->len - 1, 0);
    char *nl;

    if (r <= 0) {
        fake_drop(k);
        return;
    }
    k->len += (size_t)r;
    while (k->fd >= 0 && (nl = memchr(k->buf, '\n', k->len))) {
        size_t l = (size_t)(nl - k->buf);
        int rc;

        *nl = '\0';
        pthread_mutex_lock(&g_lock);
        rc = fake_answer(k, k->buf);
        pthread_mutex_unlock(&g_lock);
        memmove(k->buf, nl + 1, k->len - l - 1);
        k->len -= l + 1;
        if (rc < 0)
            fake_drop(k);
    }
    if (k->fd >= 0 && k->len >= sizeof k->buf - 1)
        fake_drop(k);
}

static void *fake_loop(void *arg)
{
    (void)arg;
    for (;;) {
        struct pollfd p[1 + NODES + CONNS];
        int map[1 + NODES + CONNS], np = 0;

        p[np] = (struct pollfd){.fd = g_stop_pipe[0], .events = POLLIN};
        map[np++] = -1;
        for (int i = 0; i < NODES; i++)
            if (g_nodes[i].lfd >= 0) {
                p[np] = (struct pollfd){.fd = g_nodes[i].lfd, .events = POLLIN};
                map[np++] = 100 + i;
            }
        for (int i = 0; i < CONNS; i++)
            if (g_conns[i].fd >= 0) {
                p[np] = (struct pollfd){.fd = g_conns[i].fd, .events = POLLIN};
                map[np++] = i;
            }
        if (poll(p, (nfds_t)np, -1) < 0 && errno != EINTR)
            return NULL;
        if (p[0].revents) {
            char why = 'x';
            if (read(g_stop_pipe[0], &why, 1) != 1 || why == 'x')
                return NULL;
            pthread_mutex_lock(&g_lock);
            for (int i = 0; i < NODES; i++)
                if (g_nodes[i].closing && g_nodes[i].lfd >= 0) {
                    close(g_nodes[i].lfd);
                    g_nodes[i].lfd = -1;
                }
            pthread_mutex_unlock(&g_lock);
            continue;
        }
        for (int j = 1; j < np; j++) {
            if (!p[j].revents)
                continue;
            if (map[j] >= 100) {
                int fd = accept4(p[j].fd, NULL, NULL, SOCK_CLOEXEC), slot = -1;
                for (int i = 0; i < CONNS && fd >= 0; i++)
                    if (g_conns[i].fd < 0) {
                        slot = i;
                        break;
                    }
                if (slot < 0) {
                    if (fd >= 0)
                        close(fd);
                    continue;
                }
                g_conns[slot] = (fconn){.fd = fd, .node = map[j] - 100};
            } else {
                fake_read(&g_conns[map[j]]);
            }
        }
    }
}

/* Starts the nodes: node 2 leads, nodes 0 and 1 name it. */
static int fake_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < CONNS; i++)
        g_conns[i].fd = -1;
    for (int i = 0; i < NODES; i++) {
        g_nodes[i] = (node){.role = i == 2 ? LEADER : FOLLOWER, .hint = 2};
        g_nodes[i].lfd = listen_free_port(&g_nodes[i].port);
        if (g_nodes[i].lfd < 0)
            return -1;
    }
    if (pipe2(g_stop_pipe, O_CLOEXEC) < 0)
        return -1;
    return pthread_create(&g_thread, NULL, fake_loop, NULL) == 0 ? 0 : -1;
}

static int fake_teardown(void **state)
{
    (void)state;
    if (write(g_stop_pipe[1], "x", 1) != 1)
        return -1;
    pthread_join(g_thread, NULL);
    for (int i = 0; i < CONNS; i++)
        if (g_conns[i].fd >= 0)
            fake_drop(&g_conns[i]);
    for (int i = 0; i < NODES; i++) {
        if (g_nodes[i].lfd >= 0)
            close(g_nodes[i].lfd);
        json_decref(g_nodes[i].last_params);
    }
    close(g_stop_pipe[0]);
    close(g_stop_pipe[1]);
    return 0;
}

/* Puts the nodes in a scripted state: roles[i], hints[i]; counts reset. */
static void script(const enum role roles[NODES], const int hints[NODES])
{
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < NODES; i++) {
        g_nodes[i].role = roles[i];
        g_nodes[i].hint = hints[i];
        g_nodes[i].promote_after = 0;
        g_nodes[i].calls = g_nodes[i].hellos = 0;
    }
    pthread_mutex_unlock(&g_lock);
}

static int calls(int i)
{
    int n;

    pthread_mutex_lock(&g_lock);
    n = g_nodes[i].calls;
    pthread_mutex_unlock(&g_lock);
    return n;
}

/* Copies node i's last method (64 bytes) and params (*params new). */
static void last_call(int i, char *method, json_t **params)
{
    pthread_mutex_lock(&g_lock);
    snprintf(method, 64, "%s", g_nodes[i].last_method);
    *params = json_incref(g_nodes[i].last_params);
    pthread_mutex_unlock(&g_lock);
}

/* "127.0.0.1:p0,127.0.0.1:p1,..." for the nodes in order[] (n of them). */
static void list_of(char *buf, size_t len, const int *order, int n)
{
    size_t off = 0;

    buf[0] = '\0';
    for (int i = 0; i < n && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s127.0.0.1:%d",
                                i ? "," : "", g_nodes[order[i]].port);
}

static chand_conn *dial_list(const char *list, const char *failover_ms)
{
    chand_options *o = chand_options_new();
    chand_conn *c = NULL;
    chand_error err;
    int rc;

    assert_non_null(o);
    if (failover_ms)
        assert_int_equal(chand_options_set(o, "failover_ms", failover_ms), 0);
    rc = chand_connect_url(list, o, 2000, &c, &err);
    chand_options_free(o);
    if (rc != 0)
        fprintf(stderr, "connect %s: %s\n", list, err.message);
    assert_int_equal(rc, 0);
    return c;
}

/* Scripts the nodes (script) and dials the n of them in order[], with
 * failover_ms as dial_list takes it. */
static chand_conn *dial_scripted(const enum role roles[NODES],
                                 const int hints[NODES], const int *order,
                                 int n, const char *failover_ms)
{
    char list[128];

    script(roles, hints);
    list_of(list, sizeof list, order, n);
    return dial_list(list, failover_ms);
}

/* Calls "x.y" and returns the node that executed it (-1 on error). */
static int call_node(chand_conn *c, int *rc)
{
    json_t *res = NULL, *p = json_pack("{s:s}", "name", "m");
    int n = -1;

    *rc = chand_call(c, "map.load", p, CHAND_FOREVER, &res);
    json_decref(p);
    if (*rc == 0)
        n = (int)json_integer_value(json_object_get(res, "node"));
    json_decref(res);
    return n;
}

/* ------------------------------------------------------------------ */
/* Tests                                                              */
/* ------------------------------------------------------------------ */

/* A follower's not_leader with data.leader: the call goes to the leader,
 * and is executed there once. */
static void test_redirect_to_leader(void **state)
{
    const enum role roles[NODES] = {FOLLOWER, FOLLOWER, LEADER};
    const int hints[NODES] = {2, 2, -1}, order[NODES] = {0, 1, 2};
    chand_conn *c;
    int rc;

    (void)state;
    c = dial_scripted(roles, hints, order, NODES, NULL);
    assert_int_equal(call_node(c, &rc), 2);
    assert_int_equal(calls(0), 1); /* refused once */
    assert_int_equal(calls(1), 0); /* never asked: the hint was followed */
    assert_int_equal(calls(2), 1);
    /* The next call goes straight to the leader. */
    assert_int_equal(call_node(c, &rc), 2);
    assert_int_equal(calls(0), 1);
    assert_int_equal(calls(2), 2);
    chand_close_conn(c);
}

/* No leader named (an election): the next servers are asked, with a
 * pause between rounds, until one leads. */
static void test_election_walks_the_list(void **state)
{
    const enum role roles[NODES] = {FOLLOWER, FOLLOWER, FOLLOWER};
    const int hints[NODES] = {-1, -1, -1}, order[NODES] = {0, 1, 2};
    char list[128];
    chand_conn *c;
    int rc;

    (void)state;
    script(roles, hints);
    pthread_mutex_lock(&g_lock);
    g_nodes[1].promote_after = 2; /* wins on the third question */
    pthread_mutex_unlock(&g_lock);
    list_of(list, sizeof list, order, NODES);
    c = dial_list(list, NULL);
    assert_int_equal(call_node(c, &rc), 1);
    assert_int_equal(calls(1), 3);
    chand_close_conn(c);
}

/* Nobody leads: the call gives up after the failover timeout with the
 * not_leader reason, and the message says so. */
static void test_failover_timeout(void **state)
{
    const enum role roles[NODES] = {FOLLOWER, FOLLOWER, FOLLOWER};
    const int hints[NODES] = {-1, -1, -1}, order[NODES] = {0, 1, 2};
    chand_conn *c;
    int64_t t0;
    struct timespec ts;
    int rc;

    (void)state;
    c = dial_scripted(roles, hints, order, NODES, "300");
    clock_gettime(CLOCK_MONOTONIC, &ts);
    t0 = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    assert_int_equal(call_node(c, &rc), -1);
    assert_int_equal(rc, CHAND_ENOTLEADER);
    assert_string_equal(chand_last_error(c)->reason, "not_leader");
    clock_gettime(CLOCK_MONOTONIC, &ts);
    /* A lower bound only: it did keep asking for the failover time. */
    assert_true((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - t0 >= 300);
    assert_true(calls(0) + calls(1) + calls(2) >= 3);
    chand_close_conn(c);
}

/* A dead first server: connecting goes on to the next. */
static void test_dead_server_skipped(void **state)
{
    const enum role roles[NODES] = {FOLLOWER, FOLLOWER, LEADER};
    const int hints[NODES] = {2, 2, -1}, order[2] = {1, 2};
    char list[160];
    int port, fd = listen_free_port(&port), rc;
    chand_conn *c;

    (void)state;
    assert_true(fd >= 0);
    close(fd); /* nobody listens there now */
    script(roles, hints);
    snprintf(list, sizeof list, "127.0.0.1:%d,", port);
    list_of(list + strlen(list), sizeof list - strlen(list), order, 2);
    c = dial_list(list, NULL);
    assert_int_equal(call_node(c, &rc), 2);
    assert_int_equal(calls(2), 1);
    chand_close_conn(c);
}

/* The leader dies with a call in flight: CHAND_ECONN, the call reached
 * one node once and nobody else (no silent retry); chand_reconnect then
 * finds the new leader. */
static void test_in_flight_loss_not_retried(void **state)
{
    const enum role roles[NODES] = {FOLLOWER, FOLLOWER, HANGUP};
    const int hints[NODES] = {2, 2, -1}, order[NODES] = {2, 0, 1};
    chand_conn *c;
    int rc;

    (void)state;
    c = dial_scripted(roles, hints, order, NODES, NULL);
    assert_int_equal(call_node(c, &rc), -1);
    assert_int_equal(rc, CHAND_ECONN);
    assert_int_equal(calls(2), 1);
    assert_int_equal(calls(0) + calls(1), 0);
    /* Later calls fail too until the caller reconnects. */
    assert_int_equal(call_node(c, &rc), -1);
    assert_int_equal(rc, CHAND_ECONN);
    /* Node 0 takes over; node 2 is gone. */
    pthread_mutex_lock(&g_lock);
    g_nodes[0].role = LEADER;
    g_nodes[1].hint = 0;
    g_nodes[2].closing = 1;
    pthread_mutex_unlock(&g_lock);
    assert_int_equal(write(g_stop_pipe[1], "w", 1), 1);
    for (int gone = 0; !gone;) {
        struct timespec pause = {0, 5000000};
        pthread_mutex_lock(&g_lock);
        gone = g_nodes[2].lfd < 0;
        pthread_mutex_unlock(&g_lock);
        nanosleep(&pause, NULL); /* polled; cmocka's timeout bounds it */
    }
    assert_int_equal(chand_reconnect(c, 1000), 0);
    assert_int_equal(call_node(c, &rc), 0);
    assert_int_equal(calls(2), 1);
    chand_close_conn(c);
}

/* One server given, a follower: the redirect works all the same. */
static void test_single_server_redirect(void **state)
{
    const enum role roles[NODES] = {FOLLOWER, LEADER, FOLLOWER};
    const int hints[NODES] = {1, -1, 1};
    chand_conn *c = NULL;
    chand_error err;
    int rc;

    (void)state;
    script(roles, hints);
    assert_int_equal(
        chand_connect("127.0.0.1", g_nodes[0].port, 2000, &c, &err), 0);
    assert_int_equal(call_node(c, &rc), 1);
    chand_close_conn(c);
}

/* A leader address that does not parse: the client stays on its server
 * (asking again until the failover timeout), and the handle still works
 * once that server leads. */
static void test_unreadable_leader_address(void **state)
{
    const enum role roles[NODES] = {FOLLOWER, FOLLOWER, FOLLOWER};
    const int hints[NODES] = {-2, -1, -1}, order[1] = {0};
    chand_conn *c;
    int rc;

    (void)state;
    c = dial_scripted(roles, hints, order, 1, "300");
    assert_int_equal(call_node(c, &rc), -1);
    assert_int_equal(rc, CHAND_ENOTLEADER);
    assert_true(calls(0) >= 2);
    assert_int_equal(calls(1) + calls(2), 0);
    pthread_mutex_lock(&g_lock);
    g_nodes[0].role = LEADER;
    pthread_mutex_unlock(&g_lock);
    assert_int_equal(call_node(c, &rc), 0);
    chand_close_conn(c);
}

/* cluster.status, cluster.add and cluster.remove: their wire shape. */
static void test_cluster_calls(void **state)
{
    const enum role roles[NODES] = {FOLLOWER, FOLLOWER, LEADER};
    const int hints[NODES] = {2, 2, -1}, order[NODES] = {0, 1, 2};
    char method[64];
    json_t *st = NULL, *p;
    chand_conn *c;

    (void)state;
    c = dial_scripted(roles, hints, order, NODES, NULL);
    assert_int_equal(chand_cluster_status(c, &st), 0);
    assert_string_equal(json_string_value(json_object_get(st, "method")),
                        "cluster.status");
    json_decref(st);
    assert_int_equal(chand_cluster_add(c, 4, "127.0.0.1:7004:7104"), 0);
    last_call(2, method, &p);
    assert_string_equal(method, "cluster.add");
    assert_int_equal(json_integer_value(json_object_get(p, "id")), 4);
    assert_string_equal(json_string_value(json_object_get(p, "raft")),
                        "127.0.0.1:7104");
    assert_string_equal(json_string_value(json_object_get(p, "client")),
                        "127.0.0.1:7004");
    json_decref(p);
    assert_int_equal(chand_cluster_remove(c, 4), 0);
    last_call(2, method, &p);
    assert_string_equal(method, "cluster.remove");
    assert_int_equal(json_integer_value(json_object_get(p, "id")), 4);
    json_decref(p);
    assert_int_equal(chand_cluster_remove(c, 0), CHAND_EARG);
    assert_int_equal(chand_cluster_add(c, 1, NULL), CHAND_EARG);
    assert_int_equal(chand_cluster_add(c, 5, "127.0.0.1:7005"), CHAND_EARG);
    assert_int_equal(chand_cluster_add(c, 5, "127.0.0.1:7005:x"), CHAND_EARG);
    assert_int_equal(chand_cluster_add(c, 5, "h:0:7105"), CHAND_EARG);
    chand_close_conn(c);
}

/* Bad lists and options are refused before dialling, saying why. */
static void test_bad_lists(void **state)
{
    static const char *const bad[] = {
        "127.0.0.1:1,,127.0.0.1:2", ",127.0.0.1:1", "127.0.0.1:1,",
        "127.0.0.1:1,http://x", "127.0.0.1:99999,127.0.0.1:1"};
    chand_options *o = chand_options_new();
    chand_conn *c = NULL;
    chand_error err;

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(chand_connect_url(bad[i], NULL, 1000, &c, &err),
                         CHAND_EARG);
        assert_null(c);
        assert_non_null(strstr(err.message, "bad server URL"));
    }
    assert_non_null(o);
    assert_int_equal(chand_options_set(o, "failover_ms", "soon"), 0);
    assert_int_equal(chand_connect_url("127.0.0.1:1", o, 1000, &c, &err),
                     CHAND_EARG);
    assert_non_null(strstr(err.message, "failover_ms"));
    chand_options_free(o);
}

int main(void)
{
    const struct CMUnitTest offline[] = {
        cmocka_unit_test(test_bad_lists),
    };
    const struct CMUnitTest fake[] = {
        cmocka_unit_test(test_redirect_to_leader),
        cmocka_unit_test(test_election_walks_the_list),
        cmocka_unit_test(test_failover_timeout),
        cmocka_unit_test(test_dead_server_skipped),
        cmocka_unit_test(test_single_server_redirect),
        cmocka_unit_test(test_unreadable_leader_address),
        cmocka_unit_test(test_cluster_calls),
        cmocka_unit_test(test_in_flight_loss_not_retried),
    };
    int failed = cmocka_run_group_tests_name("client_cluster_offline", offline,
                                             NULL, NULL);

    failed += cmocka_run_group_tests_name("client_cluster_fake", fake,
                                          fake_setup, fake_teardown);
    return failed ? 1 : 0;
}
