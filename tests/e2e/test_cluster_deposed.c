/*
 * test_cluster_deposed.c - issue 19: a deposed leader rebuilds its state
 * from committed entries only.  Three real nodes on loopback; the leader
 * is SIGSTOPped with a send waiting in its socket, another node leads and
 * takes more sends, then the old leader continues: it may decide the
 * waiting send on its own state, but that send never commits, so it must
 * never be answered as done nor be found later.  Leadership is then handed
 * back to the old leader, which must serve exactly the committed queue.
 * A leader whose followers died grants a lock and starts a once alone,
 * then rebuilds: neither may survive it (test_rebuild_forgets_...).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/e2e.h"
#include "../common/tcluster.h"

#define NODES 3

static testd nd[NODES];
static bool stopped[NODES];
static int cport[NODES], rport[NODES];
static char base[256], spec[1024];

static void log_path(int i, char *buf, size_t len)
{
    snprintf(buf, len, "%s/node%d.log", base, i + 1);
}

static int start_node(int i)
{
    char port[16], id[16], dir[300], log[300];
    const char *args[] = {"--cluster",
                          spec,
                          "--node-id",
                          id,
                          "--data-dir",
                          dir,
                          "--election-timeout-ms",
                          "1000",
                          "--log-level",
                          "info",
                          NULL};
    testd_opts o = {0};

    snprintf(port, sizeof port, "%d", cport[i]);
    snprintf(id, sizeof id, "%d", i + 1);
    snprintf(dir, sizeof dir, "%s/node%d", base, i + 1);
    log_path(i, log, sizeof log);
    o.port = cport[i];
    o.args = args;
    o.log = log;
    return testd_start_opts(&nd[i], &o);
}

/* Picks free ports (the sockets held open until all are picked, so that
 * they differ) and starts the three nodes; 0 or -1. */
static int start_all(void)
{
    size_t off = 0;

    if (tcluster_ports(cport, rport, NODES) != 0)
        return -1;
    for (int i = 0; i < NODES; i++)
        off += (size_t)snprintf(spec + off, sizeof spec - off,
                                "%s%d=127.0.0.1:%d:%d", i ? "," : "", i + 1,
                                cport[i], rport[i]);
    for (int i = 0; i < NODES; i++)
        if (start_node(i) != 0)
            return -1;
    return 0;
}

static int setup(void **state)
{
    (void)state;

    snprintf(base, sizeof base, "/tmp/chand-deposed-XXXXXX");
    if (!mkdtemp(base))
        return -1;
    /* A port found free can be taken by another process before the node
     * binds it: start again on new ports (and fresh data_dirs). */
    for (int attempt = 0; attempt < 3; attempt++) {
        if (start_all() == 0)
            return 0;
        for (int i = 0; i < NODES; i++)
            if (nd[i].pid)
                testd_stop(&nd[i]);
        for (int i = 0; i < NODES; i++) {
            char dir[300];
            snprintf(dir, sizeof dir, "%s/node%d", base, i + 1);
            testd_rm_rf(dir);
        }
    }
    return -1;
}

static int teardown(void **state)
{
    (void)state;
    testd_close_all();
    for (int i = 0; i < NODES; i++)
        if (nd[i].pid) {
            if (stopped[i])
                kill(nd[i].pid, SIGCONT);
            testd_stop(&nd[i]);
        }
    testd_kill_children(true);
    testd_rm_rf(base);
    return 0;
}

/* One call to node i on a fresh connection (tcluster_call). */
static json_t *call(int i, const char *method, const char *params)
{
    return tcluster_call(cport[i], method, params, 5000);
}

/* The serving leader among the nodes not stopped, polled up to
 * timeout_ms; -1 if none. */
static int find_leader(int timeout_ms)
{
    return tcluster_find_leader(nd, stopped, NODES, timeout_ms);
}

static void must_ok(int i, const char *method, const char *params)
{
    json_t *a = call(i, method, params);

    assert_non_null(a);
    if (!testd_result(a))
        fail_msg("%s %s on node %d: %s", method, params, i + 1,
                 testd_message(a) ? testd_message(a) : "?");
    json_decref(a);
}

static bool log_has(int i, const char *what)
{
    char path[300];

    log_path(i, path, sizeof path);
    return testd_file_has(path, what, 0);
}

/* Prints every running node's cluster.status, for a failure's message. */
static void print_status(void)
{
    for (int i = 0; i < NODES; i++) {
        json_t *st = stopped[i] ? NULL : tcluster_status(cport[i]);
        char *t = st ? json_dumps(st, JSON_COMPACT) : NULL;
        print_message("node %d: %s\n", i + 1,
                      t            ? t
                      : stopped[i] ? "stopped"
                                   : "?");
        free(t);
        json_decref(st);
    }
}

/* Signals node i (SIGSTOP or SIGCONT) and keeps stopped[] true to it. */
static void sig(int i, int signo)
{
    assert_int_equal(kill(nd[i].pid, signo), 0);
    stopped[i] = signo == SIGSTOP;
}

/* Waits until node i has applied everything node at has committed. */
static void wait_caught_up(int i, int at)
{
    int64_t commit = tcluster_status_int(cport[at], "commit_index");
    int64_t end = testd_now_ms() + 30000;

    assert_true(commit > 0);
    while (tcluster_status_int(cport[i], "last_applied") < commit) {
        if (testd_now_ms() >= end)
            fail_msg("node %d never applied node %d's commit index %lld", i + 1,
                     at + 1, (long long)commit);
        testd_sleep_ms(50);
    }
}

/* Hands leadership to node i (cluster.transfer on whoever leads). */
static void lead_with(int i)
{
    int64_t end = testd_now_ms() + 30000;
    char p[32];

    for (;;) {
        int l = find_leader(5000);
        if (l == i)
            return;
        assert_true(testd_now_ms() < end);
        if (l >= 0) {
            snprintf(p, sizeof p, "{\"id\":%d}", i + 1);
            json_decref(call(l, "cluster.transfer", p));
        }
        testd_sleep_ms(200);
    }
}

static void test_deposed_leader_rebuilds(void **state)
{
    int old, now;
    char p[128];
    testd_conn *c;
    json_t *a;
    int64_t end;
    (void)state;

    old = find_leader(20000);
    assert_true(old >= 0);
    must_ok(old, "make", "{\"name\":\"q\",\"cap\":100}");
    for (int k = 1; k <= 5; k++) {
        snprintf(p, sizeof p, "{\"name\":\"q\",\"value\":\"a%d\"}", k);
        must_ok(old, "send", p);
    }

    /* The send waits in the stopped leader's socket. */
    c = testd_connect_port(cport[old]);
    assert_non_null(c);
    assert_int_equal(kill(nd[old].pid, SIGSTOP), 0);
    stopped[old] = true;
    assert_int_equal(
        testd_send(c, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"send\","
                      "\"params\":{\"name\":\"q\",\"value\":\"X\"}}"),
        0);

    now = find_leader(20000);
    assert_true(now >= 0 && now != old);
    for (int k = 1; k <= 5; k++) {
        snprintf(p, sizeof p, "{\"name\":\"q\",\"value\":\"b%d\"}", k);
        must_ok(now, "send", p);
    }

    assert_int_equal(kill(nd[old].pid, SIGCONT), 0);
    stopped[old] = false;
    /* X was never committed: no success for it, ever (the session ends,
     * or not_leader). */
    a = testd_wait_id(c, 7, 15000);
    if (a)
        assert_null(testd_result(a));
    json_decref(a);
    testd_close(c);

    /* The old leader follows, rebuilt from committed entries (up to the
     * leader's commit index as of now: read once, as later reads there
     * add barrier entries). */
    int64_t commit = tcluster_status_int(cport[now], "commit_index");
    assert_true(commit > 0);
    end = testd_now_ms() + 30000;
    for (;;) {
        int64_t rb = tcluster_status_int(cport[old], "rebuilds"),
                applied = tcluster_status_int(cport[old], "last_applied");
        if (rb >= 1 && applied >= commit)
            break;
        if (testd_now_ms() >= end) {
            print_status();
            fail_msg("node %d: rebuilds %lld, applied %lld, fsm_errors %lld;"
                     " node %d: commit %lld",
                     old + 1, (long long)rb, (long long)applied,
                     (long long)tcluster_status_int(cport[old], "fsm_errors"),
                     now + 1, (long long)commit);
        }
        testd_sleep_ms(50);
    }
    assert_true(log_has(old, "state rebuilt from committed entries"));

    /* Leadership back to the old leader: it serves the committed queue,
     * a1..a5 then b1..b5, and never X. */
    lead_with(old);
    for (int k = 1; k <= 10; k++) {
        char want[8];
        a = call(old, "recv", "{\"name\":\"q\",\"timeout_ms\":0}");
        assert_non_null(a);
        assert_non_null(testd_result(a));
        snprintf(want, sizeof want, "%c%d", k <= 5 ? 'a' : 'b',
                 k <= 5 ? k : k - 5);
        assert_string_equal(
            json_string_value(json_object_get(testd_result(a), "value")), want);
        json_decref(a);
    }
    a = call(old, "recv", "{\"name\":\"q\",\"timeout_ms\":0}");
    assert_non_null(a);
    assert_string_equal(testd_reason(a), "timeout");
    json_decref(a);
}

/* A deposed leader rebuilds over what it decided alone: a leased lock it
 * granted, and a detached once.do it started, while no follower could
 * hear it.  Neither ever commits, so neither may outlive the rebuild (a
 * busy object used to refuse the rebuild's drop and keep its state, and
 * the replay then skipped the committed grants: two holders at once).
 * The followers are killed, not stopped: a stopped one would still find
 * the leader's entries in its socket when it continues. */
static void test_rebuild_forgets_uncommitted_holds(void **state)
{
    int l0, f[2], k = 0, now;
    int64_t rebuilds, end, t2;
    testd_conn *c;
    json_t *a;
    char p[128];
    (void)state;

    l0 = find_leader(20000);
    assert_true(l0 >= 0);
    for (int i = 0; i < NODES; i++)
        if (i != l0)
            f[k++] = i;
    rebuilds = tcluster_status_int(cport[l0], "rebuilds");
    c = testd_connect_port(cport[l0]);
    assert_non_null(c);
    e2e_ok(c, 1, "ping", NULL);

    /* Alone: the leader decides both at once (it steps down only after an
     * election timeout without a majority), and can commit neither. */
    for (k = 0; k < 2; k++) {
        assert_int_equal(kill(nd[f[k]].pid, SIGKILL), 0);
        testd_stop(&nd[f[k]]); /* reaps it */
    }
    assert_int_equal(
        testd_send(c, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"mutex.lock\","
                      "\"params\":{\"name\":\"rb\",\"lease_ms\":120000}}"),
        0);
    assert_int_equal(
        testd_send(c, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"go\","
                      "\"params\":{\"request\":{\"method\":\"once.do\","
                      "\"params\":{\"name\":\"rb_once\","
                      "\"lease_ms\":120000}}}}"),
        0);
    a = testd_wait_id(c, 2, 15000);
    if (a)
        assert_null(testd_result(a)); /* never a success */
    json_decref(a);
    testd_close(c);
    end = testd_now_ms() + 30000;
    while (tcluster_status_int(cport[l0], "rebuilds") <= rebuilds) {
        if (testd_now_ms() >= end)
            fail_msg("node %d never rebuilt alone", l0 + 1);
        testd_sleep_ms(50);
    }

    /* The others come back, elect one of them and grant the lock for
     * real (the old leader stopped, so that it cannot lead again and
     * commit its own grant). */
    sig(l0, SIGSTOP);
    for (k = 0; k < 2; k++)
        assert_int_equal(start_node(f[k]), 0);
    now = find_leader(20000);
    assert_true(now == f[0] || now == f[1]);
    a = tcluster_call(cport[now], "mutex.lock",
                      "{\"name\":\"rb\",\"lease_ms\":120000}", 20000);
    if (!a || !testd_result(a)) {
        json_t *l = tcluster_call(cport[now], "list", NULL, 5000);
        char *t = l ? json_dumps(l, JSON_COMPACT) : NULL;
        print_status();
        print_message("node %d's list: %s\n", now + 1, t ? t : "?");
        free(t);
        json_decref(l);
        fail_msg("mutex.lock on node %d: %s", now + 1,
                 a ? testd_message(a) : "no answer");
    }
    t2 = json_integer_value(json_object_get(testd_result(a), "token"));
    json_decref(a);
    assert_true(t2 > 0);

    /* The old leader catches up, then leads: it must hold exactly what the
     * log says. */
    sig(l0, SIGCONT);
    wait_caught_up(l0, now);
    lead_with(l0);
    snprintf(p, sizeof p, "{\"name\":\"rb\",\"token\":%lld}", (long long)t2);
    a = call(l0, "mutex.unlock", p);
    assert_non_null(a);
    if (!testd_result(a))
        fail_msg("unlock of the committed token %lld on node %d: %s",
                 (long long)t2, l0 + 1,
                 testd_message(a) ? testd_message(a) : "?");
    json_decref(a);
    a = call(l0, "once.do", "{\"name\":\"rb_once\",\"timeout_ms\":0}");
    assert_non_null(a);
    assert_non_null(testd_result(a));
    assert_true(json_is_true(json_object_get(testd_result(a), "run")));
    json_decref(a);
    assert_false(log_has(l0, "the log grants token"));
}

/* A delivery in flight survives a rebuild from the leader's snapshot
 * with its id and deadline: the leader takes a snapshot while a worker
 * holds a delivery, hands leadership over (and so rebuilds from that
 * snapshot), then leads again; the worker's ack must still be taken.
 * Snapshots used to record a delivery without its attempt's id, and the
 * leader then redelivered at once the value the worker held. */
static void test_rebuild_keeps_delivery_in_flight(void **state)
{
    int l = find_leader(20000), other;
    int64_t before, snap, rebuilds, end;
    json_t *r, *a;
    json_int_t id;
    testd_conn *c;
    char p[96];
    (void)state;

    assert_true(l >= 0);
    other = (l + 1) % NODES;
    c = testd_connect_port(cport[l]);
    assert_non_null(c);
    e2e_ok(c, 1, "make", "{\"name\":\"dq\",\"cap\":10}");
    e2e_ok(c, 2, "send", "{\"name\":\"dq\",\"value\":\"job\"}");
    r = e2e_ok(c, 3, "recv",
               "{\"name\":\"dq\",\"ack\":true,\"ack_wait_ms\":120000}");
    id = json_integer_value(
        json_object_get(json_object_get(r, "delivery"), "id"));
    assert_true(id > 0);

    /* Enough entries for a snapshot (every 4096), one call each. */
    before = tcluster_status_int(cport[l], "commit_index");
    end = testd_now_ms() + 60000;
    for (int k = 0;; k++) {
        snprintf(p, sizeof p, "{\"name\":\"fill\",\"key\":\"k\",\"value\":%d}",
                 k);
        e2e_ok(c, 10 + k, "map.store", p);
        if (k % 256 == 255 &&
            (snap = tcluster_status_int(cport[l], "snapshot_index")) > before)
            break;
        assert_true(testd_now_ms() < end);
    }

    /* The worker's session lives on until l is deposed (a session that
     * ends on a live leader gives its deliveries back at once). */
    rebuilds = tcluster_status_int(cport[l], "rebuilds");
    lead_with(other);
    end = testd_now_ms() + 30000;
    while (tcluster_status_int(cport[l], "rebuilds") <= rebuilds) {
        assert_true(testd_now_ms() < end);
        testd_sleep_ms(50);
    }
    testd_close(c);
    lead_with(l);

    snprintf(p, sizeof p, "{\"name\":\"dq\",\"id\":%lld}", (long long)id);
    a = call(l, "ack", p);
    assert_non_null(a);
    if (!testd_result(a))
        fail_msg("ack of delivery %lld after the rebuild (snapshot at %lld): "
                 "%s",
                 (long long)id, (long long)snap,
                 testd_message(a) ? testd_message(a) : "?");
    json_decref(a);
}

/* The delivery id of value v received with ack on c (request id rid). */
static json_int_t recv_id(testd_conn *c, int rid, const char *chan, int v)
{
    char p[96];
    json_t *r;

    snprintf(p, sizeof p,
             "{\"name\":\"%s\",\"ack\":true,\"ack_wait_ms\":120000}", chan);
    r = e2e_ok(c, rid, "recv", p);
    assert_int_equal(json_integer_value(json_object_get(r, "value")), v);
    return json_integer_value(
        json_object_get(json_object_get(r, "delivery"), "id"));
}

/* A delivery id names one attempt in the whole cluster: a new leader
 * issues none its predecessor issued.  It raised its counter only above
 * the ids still in flight, so a node whose counter was behind gave an id
 * whose delivery had just been acked to a new one, and a worker's retry
 * of that ack (its first answer lost with the old leader) acknowledged
 * the new value, which was then lost (a Jepsen run with leadership
 * transfers).  So: each node issues an id, the one whose counter is
 * furthest ahead leads, acks one delivery and keeps another in flight,
 * and the one furthest behind takes over. */
static void test_delivery_ids_unique_across_leaders(void **state)
{
    json_int_t id[NODES], id1, id2, id3;
    int l = 0, o = 0;
    char *fired;
    const char *made;
    json_t *a;
    testd_conn *c;
    char p[96];
    (void)state;

    must_ok(find_leader(20000), "make", "{\"name\":\"iq\",\"cap\":10}");
    for (int i = 0; i < NODES; i++) {
        lead_with(i);
        c = testd_connect_port(cport[i]);
        assert_non_null(c);
        e2e_ok(c, 1, "send", "{\"name\":\"iq\",\"value\":0}");
        id[i] = recv_id(c, 2, "iq", 0);
        snprintf(p, sizeof p, "{\"name\":\"iq\",\"id\":%lld}",
                 (long long)id[i]);
        e2e_ok(c, 3, "ack", p);
        testd_close(c);
        l = id[i] > id[l] ? i : l;
        o = id[i] < id[o] ? i : o;
    }
    assert_true(l != o);

    lead_with(l);
    c = testd_connect_port(cport[l]);
    assert_non_null(c);
    e2e_ok(c, 1, "send", "{\"name\":\"iq\",\"value\":1}");
    e2e_ok(c, 2, "send", "{\"name\":\"iq\",\"value\":2}");
    id1 = recv_id(c, 3, "iq", 1); /* stays in flight */
    id2 = recv_id(c, 4, "iq", 2);
    snprintf(p, sizeof p, "{\"name\":\"iq\",\"id\":%lld}", (long long)id2);
    e2e_ok(c, 5, "ack", p); /* ended: no longer live anywhere */
    /* The same for the names of afterfuncs: one fires on l ... */
    e2e_ok(c, 6, "make", "{\"name\":\"afq\",\"cap\":4}");
    fired = strdup(json_string_value(
        json_object_get(e2e_ok(c, 7, "timer.afterfunc",
                               "{\"ms\":1,\"request\":{\"method\":\"send\","
                               "\"params\":{\"name\":\"afq\",\"value\":1}}}"),
                        "timer")));
    assert_non_null(fired);
    e2e_ok(c, 8, "recv", "{\"name\":\"afq\",\"timeout_ms\":10000}");
    lead_with(o);
    testd_close(c);

    c = testd_connect_port(cport[o]);
    assert_non_null(c);
    e2e_ok(c, 1, "send", "{\"name\":\"iq\",\"value\":3}");
    id3 = recv_id(c, 2, "iq", 3);
    if (id3 <= id2)
        fail_msg("node %d, leading after node %d, issued delivery id %lld; "
                 "node %d had issued %lld and %lld",
                 o + 1, l + 1, (long long)id3, l + 1, (long long)id1,
                 (long long)id2);
    /* The retried ack of the old delivery names nothing now ... */
    a = call(o, "ack", p);
    assert_non_null(a);
    assert_null(testd_result(a));
    assert_non_null(strstr(testd_message(a), "not pending"));
    json_decref(a);
    /* ... and the new delivery is still the worker's to ack. */
    snprintf(p, sizeof p, "{\"name\":\"iq\",\"id\":%lld}", (long long)id3);
    e2e_ok(c, 3, "ack", p);
    /* ... and o, leading next, names its own afterfunc otherwise. */
    made = json_string_value(json_object_get(
        e2e_ok(c, 4, "timer.afterfunc",
               "{\"ms\":600000,\"request\":{\"method\":\"send\","
               "\"params\":{\"name\":\"afq\",\"value\":2}}}"),
        "timer"));
    assert_non_null(made);
    if (strcmp(made, fired) == 0)
        fail_msg("node %d named a new afterfunc %s, as node %d named the one "
                 "that fired",
                 o + 1, made, l + 1);
    free(fired);
    testd_close(c);
}

/* Answers that reveal no state (ping, hello, cluster.status) leave the
 * leader without a raft barrier: they add no entry to the log. */
static void test_stateless_answers_add_no_entries(void **state)
{
    int l = find_leader(20000);
    testd_conn *c;
    int64_t before, after;
    (void)state;

    assert_true(l >= 0);
    c = testd_connect_port(cport[l]);
    assert_non_null(c);
    e2e_ok(c, 1, "ping", NULL);
    before = tcluster_status_int(cport[l], "commit_index");
    for (int k = 0; k < 20; k++) {
        e2e_ok(c, 2 + k, "ping", NULL);
        e2e_ok(c, 100 + k, "cluster.status", NULL);
    }
    e2e_ok(c, 200, "hello", "{\"version\":1}");
    after = tcluster_status_int(cport[l], "commit_index");
    testd_close(c);
    assert_true(before > 0);
    assert_int_equal(after, before);
}

/* Reads on the leader wait for a read index round, not a barrier entry:
 * they see the last committed values and add to the raft log only the
 * entries of the rounds that fell back to a barrier (a round that took
 * over a heartbeat, as may happen under valgrind), one each. */
static void test_reads_add_no_entries(void **state)
{
    int l = find_leader(20000);
    testd_conn *c;
    int64_t commit0, commit1, rounds0, rounds1, barriers0, barriers1;
    (void)state;

    assert_true(l >= 0);
    c = testd_connect_port(cport[l]);
    assert_non_null(c);
    e2e_ok(c, 1, "map.store", "{\"name\":\"ri\",\"key\":\"k\",\"value\":1}");
    e2e_ok(c, 2, "atomic.add", "{\"name\":\"ri_n\",\"delta\":5}");
    commit0 = tcluster_status_int(cport[l], "commit_index");
    rounds0 = tcluster_status_int(cport[l], "read_rounds");
    barriers0 = tcluster_status_int(cport[l], "read_barriers");
    for (int k = 0; k < 20; k++) {
        json_t *r = e2e_ok(c, 10 + 2 * k, "map.load",
                           "{\"name\":\"ri\",\"key\":\"k\"}");
        assert_int_equal(json_integer_value(json_object_get(r, "value")), 1);
        assert_int_equal(e2e_ok_int(c, 11 + 2 * k, "atomic.load",
                                    "{\"name\":\"ri_n\"}", "value"),
                         5);
    }
    commit1 = tcluster_status_int(cport[l], "commit_index");
    rounds1 = tcluster_status_int(cport[l], "read_rounds");
    barriers1 = tcluster_status_int(cport[l], "read_barriers");
    testd_close(c);
    print_message("40 reads: %lld rounds, %lld barriers\n",
                  (long long)(rounds1 - rounds0),
                  (long long)(barriers1 - barriers0));
    assert_true(rounds1 > rounds0);
    assert_true(rounds1 - rounds0 + barriers1 - barriers0 >= 40);
    assert_int_equal(commit1 - commit0, barriers1 - barriers0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deposed_leader_rebuilds),
        cmocka_unit_test(test_rebuild_forgets_uncommitted_holds),
        cmocka_unit_test(test_rebuild_keeps_delivery_in_flight),
        cmocka_unit_test(test_delivery_ids_unique_across_leaders),
        cmocka_unit_test(test_stateless_answers_add_no_entries),
        cmocka_unit_test(test_reads_add_no_entries),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
