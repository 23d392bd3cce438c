/*
 * test_client_cluster.c - libchand against a cluster: server lists, the
 * not_leader redirect (to data.leader, or to the next server during an
 * election), the failover timeout, a call lost in flight (CHAND_ECONN and
 * never sent twice), reconnecting to the next leader, and the cluster.*
 * calls' wire shape; then the same for the asynchronous API, with the
 * order of pipelined calls kept across a move.
 *
 * The nodes are fakes run by a thread of this test on 127.0.0.1 and free
 * ports: each says hello and answers ping (as any real node does), and
 * then, as the test scripts it, executes calls (the leader: it answers
 * {"node": i, "method": m, "params": p}), refuses them (a follower:
 * not_leader with or without data.leader), or hangs up on them
 * unanswered (a leader dying in flight).  Every node counts the calls it
 * received and logs their params' names in order, so a test can prove no
 * call was sent twice, or out of order.  A real three-node cluster is in
 * test_cluster.c, and the Jepsen-style runs in tests/cluster/.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "chand.h"

#include <event2/event.h>

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
    int hangup_after;  /* follower: hangs up on every call after this
                        * many (0: never) */
    int closing;       /* the fake thread is to close its listener */
    int calls;         /* requests other than hello and ping received */
    int hellos;
    char names[256]; /* the params' "name" of each call, comma-ended */
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
    if (!strcmp(method, "ping") && n->role != HANGUP) {
        send_json(k->fd, json_pack("{s:s, s:O, s:{}}", "jsonrpc", "2.0", "id",
                                   id, "result"));
        json_decref(req);
        return 0;
    }
    n->calls++;
    if (json_is_string(json_object_get(params, "name")) &&
        strlen(n->names) + 64 < sizeof n->names) {
        strcat(n->names, json_string_value(json_object_get(params, "name")));
        strcat(n->names, ",");
    }
    snprintf(n->last_method, sizeof n->last_method, "%s", method);
    json_decref(n->last_params);
    n->last_params = params ? json_deep_copy(params) : json_object();
    if (n->role == FOLLOWER && n->promote_after > 0 &&
        n->calls > n->promote_after)
        n->role = LEADER;
    if (n->role == HANGUP || (n->role == FOLLOWER && n->hangup_after > 0 &&
                              n->calls > n->hangup_after)) {
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
        g_nodes[i].promote_after = g_nodes[i].hangup_after = 0;
        g_nodes[i].calls = g_nodes[i].hellos = 0;
        g_nodes[i].names[0] = '\0';
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

/* Copies the names of node i's calls, in order, into buf (256 bytes). */
static void names(int i, char *buf)
{
    pthread_mutex_lock(&g_lock);
    snprintf(buf, 256, "%s", g_nodes[i].names);
    pthread_mutex_unlock(&g_lock);
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

/* Scripts node 2 to lead (the others name it) and writes into list (160
 * bytes) a port nobody listens on, then nodes 1 and 2. */
static void dead_first_list(char *list)
{
    const enum role roles[NODES] = {FOLLOWER, FOLLOWER, LEADER};
    const int hints[NODES] = {2, 2, -1}, order[2] = {1, 2};
    int port, fd = listen_free_port(&port);

    assert_true(fd >= 0);
    close(fd); /* nobody listens there now */
    script(roles, hints);
    snprintf(list, 160, "127.0.0.1:%d,", port);
    list_of(list + strlen(list), 160 - strlen(list), order, 2);
}

/* A dead first server: connecting goes on to the next. */
static void test_dead_server_skipped(void **state)
{
    char list[160];
    chand_conn *c;
    int rc;

    (void)state;
    dead_first_list(list);
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
    struct event_base *base = event_base_new();
    chand_async *a = NULL;
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
    /* The asynchronous API reads lists and options the same way. */
    assert_non_null(base);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(chand_async_connect_url(base, bad[i], NULL, 1000, NULL,
                                                 NULL, &a, &err),
                         CHAND_EARG);
        assert_null(a);
        assert_non_null(strstr(err.message, "bad server URL"));
    }
    assert_int_equal(chand_async_connect_url(base, "127.0.0.1:1", o, 1000, NULL,
                                             NULL, &a, &err),
                     CHAND_EARG);
    assert_non_null(strstr(err.message, "failover_ms"));
    event_base_free(base);
    chand_options_free(o);
}

/* ------------------------------------------------------------------ */
/* The asynchronous API                                               */
/* ------------------------------------------------------------------ */

/* How long a test waits for its callbacks before it fails. */
#define ASYNC_WAIT_MS 20000

typedef struct aset aset;

/* One map.load of name (or ping, when name is NULL) on the handle. */
typedef struct acall {
    aset *s;
    const char *name;
    int rc;             /* 1 until the callback ran */
    int node;           /* the node that executed it, else -1 */
    chand_error err;    /* when rc < 0 */
    struct acall *then; /* started from this one's callback */
} acall;

/* One handle on its own event_base, and what its callbacks saw. */
struct aset {
    struct event_base *base;
    chand_async *a;
    int up;         /* the connect callback's rc, 1 before it ran */
    int closed;     /* close callbacks */
    char why[256];  /* the last close callback's message */
    char done[256]; /* the calls' names in callback order, comma-ended */
};

static void aset_up(chand_async *a, int rc, const chand_error *err, void *arg)
{
    aset *s = arg;

    (void)a;
    s->up = rc;
    if (rc < 0)
        fprintf(stderr, "async connect: %s\n", err->message);
}

static void aset_closed(chand_async *a, int rc, const chand_error *err,
                        void *arg)
{
    aset *s = arg;

    (void)a;
    s->closed += rc == CHAND_ECONN;
    snprintf(s->why, sizeof s->why, "%s", err ? err->message : "");
}

static void acall_start(aset *s, acall *c, const char *name);

static void acall_cb(chand_async *a, int rc, json_t *res,
                     const chand_error *err, void *arg)
{
    acall *c = arg;

    (void)a;
    c->rc = rc;
    if (rc == 0 && c->name)
        c->node = (int)json_integer_value(json_object_get(res, "node"));
    if (rc < 0)
        c->err = *err;
    if (strlen(c->s->done) + 16 < sizeof c->s->done) {
        strcat(c->s->done, c->name ? c->name : "ping");
        strcat(c->s->done, ",");
    }
    if (c->then)
        acall_start(c->s, c->then, c->then->name);
}

/* Queues c: map.load of name, or ping when name is NULL. */
static void acall_start(aset *s, acall *c, const char *name)
{
    json_t *p = name ? json_pack("{s:s}", "name", name) : NULL;

    c->s = s;
    c->name = name;
    c->rc = 1;
    c->node = -1;
    assert_int_equal(chand_async_call(s->a, name ? "map.load" : "ping", p,
                                      CHAND_FOREVER, acall_cb, c),
                     0);
}

/* Connects s to list with failover_ms (NULL: the default); the calls
 * queued next go out once the connection is up. */
static void aset_open(aset *s, const char *list, const char *failover_ms)
{
    chand_options *o = chand_options_new();
    chand_error err;
    int rc;

    memset(s, 0, sizeof *s);
    s->up = 1;
    s->base = event_base_new();
    assert_non_null(s->base);
    assert_non_null(o);
    if (failover_ms)
        assert_int_equal(chand_options_set(o, "failover_ms", failover_ms), 0);
    rc = chand_async_connect_url(s->base, list, o, 2000, aset_up, s, &s->a,
                                 &err);
    chand_options_free(o);
    if (rc != 0)
        fprintf(stderr, "async connect %s: %s\n", list, err.message);
    assert_int_equal(rc, 0);
    chand_async_on_close(s->a, aset_closed, s);
}

/* Scripts the nodes and opens s on the n of them in order[]. */
static void aset_scripted(aset *s, const enum role roles[NODES],
                          const int hints[NODES], const int *order, int n,
                          const char *failover_ms)
{
    char list[128];

    script(roles, hints);
    list_of(list, sizeof list, order, n);
    aset_open(s, list, failover_ms);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Runs s's loop until the n calls at c have had their callbacks (and
 * those they started); fails the test after ASYNC_WAIT_MS.  Its tick is
 * gone when it returns: the base holds only what the handle added. */
static void aset_wait(aset *s, acall *c, int n)
{
    int64_t deadline = testd_now_ms() + ASYNC_WAIT_MS;
    struct timeval tv = {0, 100000};
    struct event *tick = evtimer_new(s->base, tick_cb, NULL);

    assert_non_null(tick);
    for (;;) {
        int left = 0;

        for (int i = 0; i < n; i++)
            for (acall *k = &c[i]; k; k = k->then)
                left += k->rc == 1;
        if (!left)
            break;
        assert_true(testd_now_ms() < deadline);
        assert_int_equal(evtimer_add(tick, &tv), 0);
        assert_true(event_base_loop(s->base, EVLOOP_ONCE) >= 0);
    }
    event_free(tick);
}

static void aset_free(aset *s)
{
    chand_async_free(s->a);
    event_base_free(s->base);
}

/* Pipelined calls to a follower that names the leader: each is sent
 * again to the leader, once, in the order they were made, and so is a
 * call made (from a callback) while the handle was moving; the next call
 * goes straight to the leader. */
static void test_async_redirect_to_leader(void **state)
{
    const enum role roles[NODES] = {FOLLOWER, FOLLOWER, LEADER};
    const int hints[NODES] = {2, 2, -1}, order[NODES] = {0, 1, 2};
    acall c[4] = {{0}}, later = {0};
    char seen[256];
    aset s;

    (void)state;
    aset_scripted(&s, roles, hints, order, NODES, NULL);
    acall_start(&s, &c[0], "a");
    /* The ping is answered by the follower itself, after it refused a:
     * its callback's call waits for the move. */
    c[1].then = &c[3];
    c[3].name = "c";
    acall_start(&s, &c[1], NULL);
    acall_start(&s, &c[2], "b");
    aset_wait(&s, c, 3);
    assert_int_equal(s.up, 0);
    assert_int_equal(c[1].rc, 0);
    for (int i = 0; i < 4; i++)
        if (i != 1) {
            assert_int_equal(c[i].rc, 0);
            assert_int_equal(c[i].node, 2);
        }
    assert_string_equal(s.done, "ping,a,b,c,");
    names(0, seen);
    assert_string_equal(seen, "a,b,"); /* refused once each */
    names(2, seen);
    assert_string_equal(seen, "a,b,c,"); /* executed once, in order */
    assert_int_equal(calls(1), 0);       /* the hint was followed */
    acall_start(&s, &later, "d");
    aset_wait(&s, &later, 1);
    assert_int_equal(later.node, 2);
    assert_int_equal(calls(0), 2);
    assert_int_equal(calls(2), 4);
    assert_int_equal(s.closed, 0);
    aset_free(&s);
}

/* No leader named (an election): the call walks the list, pausing
 * between rounds, until a node leads. */
static void test_async_election_walks_the_list(void **state)
{
    const enum role roles[NODES] = {FOLLOWER, FOLLOWER, FOLLOWER};
    const int hints[NODES] = {-1, -1, -1}, order[NODES] = {0, 1, 2};
    acall c = {0};
    aset s;

    (void)state;
    aset_scripted(&s, roles, hints, order, NODES, NULL);
    pthread_mutex_lock(&g_lock);
    g_nodes[1].promote_after = 2; /* wins on the third question */
    pthread_mutex_unlock(&g_lock);
    acall_start(&s, &c, "e");
    aset_wait(&s, &c, 1);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.node, 1);
    assert_int_equal(calls(1), 3);
    assert_true(calls(0) >= 1 && calls(2) >= 1);
    aset_free(&s);
}

/* Nobody leads: the call gets CHAND_ENOTLEADER once the failover timeout
 * has passed; the handle stays usable, and finds a leader later. */
static void test_async_failover_timeout(void **state)
{
    const enum role roles[NODES] = {FOLLOWER, FOLLOWER, FOLLOWER};
    const int hints[NODES] = {-1, -1, -1}, order[NODES] = {0, 1, 2};
    acall c = {0}, later = {0};
    int64_t t0;
    aset s;

    (void)state;
    aset_scripted(&s, roles, hints, order, NODES, "300");
    t0 = testd_now_ms();
    acall_start(&s, &c, "f");
    aset_wait(&s, &c, 1);
    assert_int_equal(c.rc, CHAND_ENOTLEADER);
    assert_string_equal(c.err.reason, "not_leader");
    /* A lower bound only: it did keep asking for the failover time. */
    assert_true(testd_now_ms() - t0 >= 300);
    assert_true(calls(0) + calls(1) + calls(2) >= 3);
    assert_int_equal(s.closed, 0);
    /* Node 0 wins; whichever node the handle is on names it. */
    pthread_mutex_lock(&g_lock);
    g_nodes[0].role = LEADER;
    g_nodes[1].hint = g_nodes[2].hint = 0;
    pthread_mutex_unlock(&g_lock);
    acall_start(&s, &later, "g");
    aset_wait(&s, &later, 1);
    assert_int_equal(later.rc, 0);
    assert_int_equal(later.node, 0);
    aset_free(&s);
}

/* A dead first server: the first connect goes on to the next one, from
 * the event loop. */
static void test_async_dead_server_skipped(void **state)
{
    char list[160];
    acall c = {0};
    aset s;

    (void)state;
    dead_first_list(list);
    aset_open(&s, list, NULL);
    acall_start(&s, &c, "h");
    aset_wait(&s, &c, 1);
    assert_int_equal(s.up, 0);
    assert_int_equal(c.node, 2);
    assert_int_equal(calls(1), 1);
    assert_int_equal(calls(2), 1);
    aset_free(&s);
}

/* chand_async_connect (one host and port) follows the redirect too. */
static void test_async_single_server_redirect(void **state)
{
    const enum role roles[NODES] = {FOLLOWER, LEADER, FOLLOWER};
    const int hints[NODES] = {1, -1, 1};
    acall c = {0};
    aset s = {0};

    (void)state;
    script(roles, hints);
    s.base = event_base_new();
    assert_non_null(s.base);
    assert_int_equal(chand_async_connect(s.base, "127.0.0.1", g_nodes[0].port,
                                         2000, NULL, NULL, &s.a),
                     0);
    acall_start(&s, &c, "i");
    aset_wait(&s, &c, 1);
    assert_int_equal(c.node, 1);
    assert_int_equal(calls(0), 1);
    aset_free(&s);
}

/* The follower hangs up while the handle waits for its answers before
 * moving: the call it refused goes to the leader, the one in flight fails
 * with CHAND_ECONN and is not sent again, and the handle lives on. */
static void test_async_loss_while_moving(void **state)
{
    const enum role roles[NODES] = {FOLLOWER, FOLLOWER, LEADER};
    const int hints[NODES] = {2, 2, -1}, order[NODES] = {0, 1, 2};
    acall c[2] = {{0}};
    char seen[256];
    aset s;

    (void)state;
    aset_scripted(&s, roles, hints, order, NODES, NULL);
    pthread_mutex_lock(&g_lock);
    g_nodes[0].hangup_after = 1; /* refuses k, hangs up on l */
    pthread_mutex_unlock(&g_lock);
    acall_start(&s, &c[0], "k");
    acall_start(&s, &c[1], "l");
    aset_wait(&s, c, 2);
    assert_int_equal(c[0].rc, 0);
    assert_int_equal(c[0].node, 2);
    assert_int_equal(c[1].rc, CHAND_ECONN);
    names(0, seen);
    assert_string_equal(seen, "k,l,");
    names(2, seen);
    assert_string_equal(seen, "k,");
    assert_int_equal(calls(1), 0);
    assert_int_equal(s.closed, 0);
    aset_free(&s);
}

/* The leader dies with a call in flight: CHAND_ECONN, the call reached
 * that node once and nobody else, the handle is closed, and nothing is
 * left scheduled that could send it again. */
static void test_async_in_flight_loss_not_retried(void **state)
{
    const enum role roles[NODES] = {FOLLOWER, FOLLOWER, HANGUP};
    const int hints[NODES] = {2, 2, -1}, order[NODES] = {2, 0, 1};
    acall c = {0};
    aset s;

    (void)state;
    aset_scripted(&s, roles, hints, order, NODES, NULL);
    acall_start(&s, &c, "j");
    aset_wait(&s, &c, 1);
    assert_int_equal(c.rc, CHAND_ECONN);
    assert_int_equal(s.closed, 1);
    assert_non_null(strstr(s.why, "closed by the server"));
    assert_int_equal(
        chand_async_call(s.a, "ping", NULL, CHAND_FOREVER, NULL, NULL),
        CHAND_ECONN);
    /* No event left on the base: no dial, pause or timer pending. */
    assert_int_equal(event_base_dispatch(s.base), 1);
    assert_int_equal(calls(2), 1);
    assert_int_equal(calls(0) + calls(1), 0);
    aset_free(&s);
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
    /* Fresh nodes: the last test above closed node 2 for good. */
    const struct CMUnitTest async[] = {
        cmocka_unit_test(test_async_redirect_to_leader),
        cmocka_unit_test(test_async_election_walks_the_list),
        cmocka_unit_test(test_async_failover_timeout),
        cmocka_unit_test(test_async_dead_server_skipped),
        cmocka_unit_test(test_async_single_server_redirect),
        cmocka_unit_test(test_async_loss_while_moving),
        cmocka_unit_test(test_async_in_flight_loss_not_retried),
    };
    int failed = cmocka_run_group_tests_name("client_cluster_offline", offline,
                                             NULL, NULL);

    failed += cmocka_run_group_tests_name("client_cluster_fake", fake,
                                          fake_setup, fake_teardown);
    failed += cmocka_run_group_tests_name("client_cluster_async", async,
                                          fake_setup, fake_teardown);
    return failed ? 1 : 0;
}
