/*
 * jepsen.c - the Jepsen-style run of issue 19: three chand nodes on
 * loopback (nodes.h); client threads send, receive, lock, add and read through
 * libchand's redirects, and workers take values from a second channel with
 * acknowledgement (abandoning some, which must be redelivered), while the
 * leader is SIGKILLed or SIGSTOPped every
 * few seconds and then restarted or continued; afterwards the queue is
 * drained, the atomic read, and the history checked (jcheck.h,
 * jcheck_ack.h).  Also
 * measures failover: from the leader's kill to the first successful write.
 *
 *   jepsen [--kills N] [--interval-ms MS] [--election-ms MS] [--seed S]
 *          [--nemesis LIST]
 *          [--crashed fail|restart] [--stalled fail|restart]
 *
 * --nemesis picks what happens to the leader, taken in turn from a comma
 * list of kill (SIGKILL), stop (SIGSTOP) and transfer (cluster.transfer,
 * which deposes a leader that stays alive and serving until the moment it
 * steps down); both is kill,stop (the default), all is kill,stop,transfer.
 * A transfer counts as a kill in the figures.  --crashed says what a node
 * that dies on its own does to the run: fail it (the default), or be
 * restarted on its data_dir as a supervisor would, counted and reported,
 * the history still checked (libraft 0.15 can crash a leader continued
 * after a SIGSTOP: README, Running a cluster).  --stalled says what a
 * kill after which no write comes within 30 s does: fail the run (the
 * default), or count as a stall, after which the killed node is brought
 * back at once, as a supervisor would, and writes must then resume within
 * 30 s (the two survivors of a SIGKILL stayed candidates of one term for
 * 30 s in about one kill in 200, cause not found: README).
 * Prints the check's report, "failover: ..." and bench lines; exits 0 when
 * the history is clean, 1 on a violation, 2 when the run itself failed.
 */
#include "jcheck.h"
#include "jcheck_ack.h"
#include "nodes.h"

#include "chand.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SENDERS 2
#define LOCKERS 2
#define ADDERS 2
#define READERS 1
#define AWORKERS 2
#define ACK_WAIT_MS 2000
/* A worker abandons one delivery in this many, as if it had died: the
 * value must come back after ACK_WAIT_MS. */
#define ABANDON_EVERY 16
#define LEASE_MS 3000
#define QUEUE_CAP 1000000

static nodes *g_c;
static jc_hist *g_h;
static jca_hist *g_a;
static atomic_bool g_stop;
static atomic_long g_ops;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* A connection to the whole cluster, or NULL once the run stops. */
static chand_conn *dial(void)
{
    chand_options *o = chand_options_new();
    chand_conn *k = NULL;

    if (!o || chand_options_set(o, "failover_ms", "20000") < 0) {
        chand_options_free(o);
        return NULL;
    }
    while (!atomic_load(&g_stop) &&
           chand_connect_url(nodes_list(g_c), o, 500, &k, NULL) < 0)
        sleep_ms(50);
    chand_options_free(o);
    return k;
}

/* After a call without a definite answer: reconnect (a new session). */
static void redial(chand_conn *k)
{
    while (!atomic_load(&g_stop) && chand_reconnect(k, 500) < 0)
        sleep_ms(50);
}

/* How rc ended: an answer (ok or a server's refusal) is definite; no
 * answer (the connection died, the client gave up) is unknown. */
static int outcome(chand_conn *k, int rc)
{
    if (rc >= 0)
        return JC_OK;
    return chand_last_error(k)->reason[0] ? JC_FAIL : JC_UNKNOWN;
}

/* A client thread: op, over and over on one connection until the run
 * stops; an outcome JC_UNKNOWN redials before the next. */
typedef struct client {
    pthread_t th;
    int (*op)(chand_conn *k, struct client *cl);
    int64_t last; /* a sender's: the last value it sent */
} client;

static void *client_run(void *arg)
{
    client *cl = arg;
    chand_conn *k = dial();

    while (k && !atomic_load(&g_stop))
        if (cl->op(k, cl) == JC_UNKNOWN)
            redial(k);
    chand_close_conn(k);
    return NULL;
}

static void client_start(client *cl, int (*op)(chand_conn *k, client *cl),
                         int64_t last)
{
    cl->op = op;
    cl->last = last;
    pthread_create(&cl->th, NULL, client_run, cl);
}

/* Sends the sender's next value to channel name; returns the outcome. */
static int send_next(chand_conn *k, client *cl, const char *name)
{
    json_t *v = json_integer(++cl->last);
    int rc = chand_send(k, name, v, 1000);

    json_decref(v);
    atomic_fetch_add(&g_ops, 1);
    return outcome(k, rc);
}

static int send_op(chand_conn *k, client *cl)
{
    int o = send_next(k, cl, "q");

    jc_send(g_h, cl->last, o);
    return o;
}

static int recv_op(chand_conn *k, client *cl)
{
    json_t *v = NULL;
    int rc = chand_recv(k, "q", 200, &v), o = outcome(k, rc);

    (void)cl;
    if (rc == 1)
        jc_recv(g_h, json_integer_value(v), JC_OK);
    else if (o == JC_UNKNOWN)
        jc_recv(g_h, 0, JC_UNKNOWN);
    json_decref(v);
    return o;
}

static int lock_op(chand_conn *k, client *cl)
{
    int64_t sent = nodes_now_ms(), acked, token = -1;
    bool dead;
    int rc = chand_mutex_lock(k, "L", 1000, LEASE_MS, &token, &dead);

    (void)cl;
    if (rc < 0)
        return outcome(k, rc);
    acked = nodes_now_ms();
    sleep_ms(10);
    jc_hold(g_h, sent, acked, nodes_now_ms(), LEASE_MS, token);
    atomic_fetch_add(&g_ops, 1);
    rc = chand_mutex_unlock(k, "L", token);
    return rc < 0 ? outcome(k, rc) : JC_OK;
}

static int add_op(chand_conn *k, client *cl)
{
    int64_t sent = nodes_now_ms();
    int rc = chand_atomic_add(k, "ctr", 1, NULL), o = outcome(k, rc);

    (void)cl;
    jc_add_at(g_h, 1, o, sent, nodes_now_ms());
    atomic_fetch_add(&g_ops, 1);
    return o;
}

/* Reads go through the leader's read index: each one is checked against
 * the adds around it (jcheck.h). */
static int read_op(chand_conn *k, client *cl)
{
    int64_t sent = nodes_now_ms(), v = 0;
    int rc = chand_atomic_load(k, "ctr", &v), o = outcome(k, rc);

    (void)cl;
    if (rc >= 0)
        jc_read(g_h, sent, nodes_now_ms(), v);
    atomic_fetch_add(&g_ops, 1);
    return o;
}

/* Sends to the acknowledged channel aq (the same unique values). */
static int asend_op(chand_conn *k, client *cl)
{
    int64_t sent = nodes_now_ms();
    int o = send_next(k, cl, "aq");

    jca_send(g_a, cl->last, o, sent, nodes_now_ms());
    return o;
}

/* Acks delivery id of val (its recv sent at recv_sent); after an ack with
 * no answer, once more on a new connection (the same delivery, acked on
 * the next leader).  Returns the last outcome. */
static int ack_delivery(chand_conn *k, int64_t val, int64_t id,
                        int64_t recv_sent)
{
    int o = JC_UNKNOWN;

    for (int tries = 0; tries < 2 && o == JC_UNKNOWN; tries++) {
        jca_ack_info a = {.v = val, .id = id, .recv_sent = recv_sent};
        a.sent = nodes_now_ms();
        a.code = chand_ack(k, "aq", id);
        a.done = nodes_now_ms();
        a.outcome = o = outcome(k, a.code);
        a.not_pending = a.code == CHAND_ENOTPENDING;
        jca_ack(g_a, &a);
        if (o == JC_UNKNOWN && tries == 0)
            redial(k);
    }
    return o;
}

/* Receives from aq with acknowledgement, then acks at once (or, one time
 * in ABANDON_EVERY, never: the delivery must expire and come back). */
static int awork_op(chand_conn *k, client *cl)
{
    int64_t sent = nodes_now_ms(), id = 0, val;
    json_t *v = NULL;
    int rc = chand_recv_ack(k, "aq", ACK_WAIT_MS, 200, &v, &id, NULL);

    if (rc != 1) {
        json_decref(v);
        return outcome(k, rc);
    }
    val = json_integer_value(v);
    json_decref(v);
    jca_deliver(g_a, val, id, sent, nodes_now_ms());
    atomic_fetch_add(&g_ops, 1);
    if (++cl->last % ABANDON_EVERY == 0)
        return JC_OK;
    return ack_delivery(k, val, id, sent);
}

/* Nodes that died on their own since *crashes was counted: with crashed
 * "restart" they are started again and counted; else the run fails.
 * Returns 0, or -1 to stop the run. */
static int revive_crashed(int *crashes, const char *crashed)
{
    if (nodes_died(g_c) > *crashes) {
        if (strcmp(crashed, "restart"))
            return -1;
        *crashes = nodes_died(g_c);
        nodes_revive(g_c);
    }
    return 0;
}

/* Milliseconds from now until a write succeeds through a fresh client
 * (-1 after 30 s). */
static int64_t first_write(int64_t t0)
{
    chand_conn *k = NULL;
    chand_options *o = chand_options_new();
    int64_t took = -1;

    if (o && chand_options_set(o, "failover_ms", "1000") == 0) {
        while (nodes_now_ms() - t0 < 30000) {
            if (!k &&
                chand_connect_url(nodes_list(g_c), o, 300, &k, NULL) < 0) {
                k = NULL;
                sleep_ms(10);
                continue;
            }
            if (chand_atomic_add(k, "probe", 1, NULL) == 0) {
                took = nodes_now_ms() - t0;
                break;
            }
            chand_close_conn(k);
            k = NULL;
            sleep_ms(10);
        }
    }
    chand_close_conn(k);
    chand_options_free(o);
    return took;
}

/* Drains aq as a worker would, until nothing has come for longer than a
 * delivery's wait (abandoned ones come back within ACK_WAIT_MS + 100 ms).
 * Returns 0 or -1. */
static int drain_acked(chand_conn *k)
{
    int64_t len = -1, inflight = -1;

    for (;;) {
        int64_t sent = nodes_now_ms(), id = 0, val;
        json_t *v = NULL;
        int rc = chand_recv_ack(k, "aq", ACK_WAIT_MS, ACK_WAIT_MS + 1500, &v,
                                &id, NULL);
        if (rc == 1) {
            val = json_integer_value(v);
            json_decref(v);
            jca_deliver(g_a, val, id, sent, nodes_now_ms());
            if (ack_delivery(k, val, id, sent) == JC_UNKNOWN)
                redial(k);
            continue;
        }
        json_decref(v);
        if (rc == CHAND_ETIMEOUT && outcome(k, rc) == JC_FAIL)
            break; /* nothing more */
        if (outcome(k, rc) == JC_UNKNOWN) {
            redial(k);
            continue;
        }
        fprintf(stderr, "jepsen: draining aq: %s\n",
                chand_last_error(k)->message);
        return -1;
    }
    if (chand_len_inflight(k, "aq", &len, NULL, &inflight) == 0)
        printf("jepsen: aq drained: len %lld, in flight %lld\n", (long long)len,
               (long long)inflight);
    return 0;
}

/* Drains the queues and reads the atomic into the history. */
static int final_state(void)
{
    chand_conn *k = dial();
    int64_t v;
    int rc;

    if (!k)
        return -1;
    if (drain_acked(k) < 0) {
        chand_close_conn(k);
        return -1;
    }
    for (;;) {
        json_t *val = NULL;

        rc = chand_recv(k, "q", 0, &val);
        if (rc == 1) {
            jc_queued(g_h, json_integer_value(val));
            json_decref(val);
            continue;
        }
        json_decref(val);
        if (rc == CHAND_ETIMEOUT && outcome(k, rc) == JC_FAIL)
            break; /* empty */
        if (outcome(k, rc) == JC_UNKNOWN) {
            jc_recv(g_h, 0, JC_UNKNOWN);
            redial(k);
            continue;
        }
        fprintf(stderr, "jepsen: draining: %s\n", chand_last_error(k)->message);
        chand_close_conn(k);
        return -1;
    }
    while ((rc = chand_atomic_load(k, "ctr", &v)) < 0 &&
           outcome(k, rc) == JC_UNKNOWN)
        redial(k);
    if (rc < 0) {
        fprintf(stderr, "jepsen: atomic load: %s\n",
                chand_last_error(k)->message);
        chand_close_conn(k);
        return -1;
    }
    jc_final_atomic(g_h, v);
    chand_close_conn(k);
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

/* Makes the queues (idempotent: exists is fine). */
static int setup_queue(void)
{
    chand_conn *k = dial();
    int rc = k ? chand_make(k, "q", QUEUE_CAP, NULL) : -1;

    if (rc == CHAND_EEXISTS)
        rc = 0;
    if (rc == 0) {
        rc = chand_make(k, "aq", QUEUE_CAP, NULL);
        if (rc == CHAND_EEXISTS)
            rc = 0;
    }
    if (rc < 0)
        fprintf(stderr, "jepsen: make q: %s\n",
                k ? chand_last_error(k)->message : "no connection");
    chand_close_conn(k);
    return rc;
}

enum { NEM_KILL, NEM_STOP, NEM_TRANSFER, NEM_MAX = 8 };

/* Parses --nemesis into what[] (one entry per turn); returns how many,
 * or 0 when it names something else. */
static int nemesis_parse(const char *spec, int what[NEM_MAX])
{
    static const char *const names[] = {"kill", "stop", "transfer"};
    char buf[128], *save = NULL;
    int n = 0;

    if (!strcmp(spec, "both"))
        spec = "kill,stop";
    else if (!strcmp(spec, "all"))
        spec = "kill,stop,transfer";
    if (strlen(spec) >= sizeof buf)
        return 0;
    strcpy(buf, spec);
    for (char *t = strtok_r(buf, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        int k = 0;
        while (k < 3 && strcmp(t, names[k]))
            k++;
        if (k == 3 || n == NEM_MAX)
            return 0;
        what[n++] = k;
    }
    return n;
}

int main(int argc, char **argv)
{
    int kills = 5, interval = 1500, election = 1000, failed_kills = 0;
    const char *nemesis = "both", *crashed = "fail", *stalled = "fail";
    int crashes = 0, stalls = 0;
    unsigned seed = (unsigned)time(NULL);
    client cl[SENDERS + 1 + LOCKERS + ADDERS + READERS + 1 + AWORKERS];
    int ncl = 0, violations, ret = 0;
    int64_t *fo, t_start;
    int nfo = 0;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--kills"))
            kills = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--interval-ms"))
            interval = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--election-ms"))
            election = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--crashed"))
            crashed = argv[i + 1];
        else if (!strcmp(argv[i], "--stalled"))
            stalled = argv[i + 1];
        else if (!strcmp(argv[i], "--nemesis"))
            nemesis = argv[i + 1];
        else if (!strcmp(argv[i], "--seed"))
            seed = (unsigned)strtoul(argv[i + 1], NULL, 10);
        else {
            fprintf(stderr, "jepsen: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    int nem[NEM_MAX], nnem = nemesis_parse(nemesis, nem);
    if (argc % 2 == 0 || kills < 1 || interval < 100 || election < 100 ||
        nnem == 0 || (strcmp(crashed, "fail") && strcmp(crashed, "restart")) ||
        (strcmp(stalled, "fail") && strcmp(stalled, "restart"))) {
        fprintf(stderr, "usage: jepsen [--kills N] [--interval-ms MS] "
                        "[--election-ms MS] [--seed S] "
                        "[--nemesis both|all|kill,stop,transfer...] "
                        "[--crashed fail|restart] [--stalled fail|restart]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    srand(seed);
    fo = calloc((size_t)kills, sizeof *fo);
    g_h = jc_new();
    g_a = jca_new();
    g_c = fo && g_h && g_a ? nodes_start(3, election) : NULL;
    if (!g_c || setup_queue() < 0) {
        nodes_stop(g_c, true);
        jc_free(g_h);
        jca_free(g_a);
        free(fo);
        return 2;
    }
    printf("jepsen: 3 nodes %s, election %d ms, seed %u, %d kills\n",
           nodes_list(g_c), election, seed, kills);
    /* Each sender's values are its own: i+1 billion and up. */
    for (int i = 0; i < SENDERS; i++)
        client_start(&cl[ncl++], send_op, (i + 1) * 1000000000LL);
    client_start(&cl[ncl++], recv_op, 0);
    for (int i = 0; i < LOCKERS; i++)
        client_start(&cl[ncl++], lock_op, 0);
    for (int i = 0; i < ADDERS; i++)
        client_start(&cl[ncl++], add_op, 0);
    for (int i = 0; i < READERS; i++)
        client_start(&cl[ncl++], read_op, 0);
    client_start(&cl[ncl++], asend_op, 9000000000LL);
    for (int i = 0; i < AWORKERS; i++)
        client_start(&cl[ncl++], awork_op, 0);
    t_start = nodes_now_ms();

    for (int k = 0; k < kills; k++) {
        int leader, what = nem[k % nnem];
        int stop = what == NEM_STOP, transfer = what == NEM_TRANSFER;
        int64_t t0, took;
        bool back = false; /* the killed node is back already */

        sleep_ms(interval / 2 + rand() % interval);
        if (revive_crashed(&crashes, crashed) < 0) {
            ret = 2;
            break;
        }
        leader = nodes_wait_leader(g_c, nodes_now_ms() + 30000);
        if (leader < 0) {
            fprintf(stderr, "jepsen: no leader before kill %d\n", k + 1);
            ret = 2;
            break;
        }
        t0 = nodes_now_ms();
        if ((transfer ? nodes_transfer(g_c, leader)
             : stop   ? nodes_pause(g_c, leader)
                      : nodes_kill(g_c, leader)) < 0) {
            ret = 2;
            break;
        }
        took = first_write(t0);
        if (took < 0) {
            /* A node that crashed on its own (libraft 0.15, README) may
             * have taken the majority with it: with --crashed restart
             * that kill proves nothing about failover, and the history
             * is still checked. */
            bool crash =
                nodes_died(g_c) > crashes && !strcmp(crashed, "restart");
            fprintf(stderr, "jepsen: kill %d: no write within 30 s; nodes:\n",
                    k + 1);
            nodes_describe(g_c, stderr);
            if (!crash && !strcmp(stalled, "restart")) {
                /* A stall: the killed node comes back now, and the
                 * three must then write again. */
                stalls++;
                if (!transfer && (stop ? nodes_resume(g_c, leader)
                                       : nodes_restart(g_c, leader)) < 0) {
                    ret = 2;
                    break;
                }
                back = true;
                int64_t t1 = nodes_now_ms();
                int64_t again = first_write(t1);
                if (again < 0)
                    failed_kills++;
                fprintf(stderr,
                        "jepsen: kill %d: stall; writes resumed %lld ms "
                        "after the killed node came back\n",
                        k + 1, (long long)again);
            } else if (!crash) {
                failed_kills++;
            }
        } else {
            fo[nfo++] = took;
        }
        if (revive_crashed(&crashes, crashed) < 0) {
            ret = 2;
            break;
        }
        /* What the node must catch up to before the next kill. */
        int now = nodes_wait_leader(g_c, nodes_now_ms() + 5000);
        int64_t target = now >= 0 ? nodes_commit(g_c, now) : 0;
        /* A stopped node that crashed was revived above: continuing the
         * new process is harmless. */
        if (!back && !transfer &&
            (stop ? nodes_resume(g_c, leader) : nodes_restart(g_c, leader)) <
                0) {
            ret = 2;
            break;
        }
        /* The next kill waits for the node to be back in the cluster and
         * caught up to the commit index of the moment, so that a majority
         * that can elect a leader stays alive (under ASan a node behind by
         * 100k entries took longer than knowing the leader did). */
        int64_t back_t0 = nodes_now_ms();
        bool caught_up;
        while (!(caught_up = nodes_follows(g_c, leader, target)) &&
               nodes_now_ms() - back_t0 < 60000)
            sleep_ms(50);
        if (!caught_up) {
            /* The next kill leaves no majority that can elect: a stall
             * after it says nothing about elections. */
            fprintf(stderr,
                    "jepsen: kill %d: node %d not caught up to %lld within "
                    "60 s of its restart; nodes:\n",
                    k + 1, leader + 1, (long long)target);
            nodes_describe(g_c, stderr);
        }
        /* "at": the history's clock, to place a violation's operations. */
        printf("jepsen: kill %d/%d (%s node %d) at %lld: first write after "
               "%lld ms\n",
               k + 1, kills,
               transfer ? "transfer from"
               : stop   ? "SIGSTOP"
                        : "SIGKILL",
               leader + 1, (long long)t0, (long long)took);
        fflush(stdout);
    }
    /* From here workers close their sessions, which gives their
     * abandoned deliveries back at once: the early check ends here. */
    jca_stop(g_a, nodes_now_ms());
    atomic_store(&g_stop, true);
    for (int i = 0; i < ncl; i++)
        pthread_join(cl[i].th, NULL);
    atomic_store(&g_stop, false);
    printf("jepsen: %ld operations in %lld ms\n", atomic_load(&g_ops),
           (long long)(nodes_now_ms() - t_start));
    if (!strcmp(crashed, "restart") && nodes_died(g_c) > crashes) {
        crashes = nodes_died(g_c);
        nodes_revive(g_c);
    }
    if (crashes > 0)
        printf("jepsen: %d nodes crashed on their own and were restarted "
               "(see their logs)\n",
               crashes);
    if (stalls > 0)
        printf("jepsen: %d stalls: no write within 30 s of a kill, until the "
               "killed node came back\n",
               stalls);
    if (nodes_died(g_c) > crashes) {
        /* With a node gone the cluster may have no majority left: say
         * so rather than wait for a final state that cannot come. */
        fprintf(stderr, "jepsen: %d nodes died on their own; no check\n",
                nodes_died(g_c));
        nodes_stop(g_c, true);
        jc_free(g_h);
        jca_free(g_a);
        free(fo);
        return 2;
    }
    if (final_state() < 0)
        ret = 2;
    /* Each node's snapshot index shows its log is being compacted; disk
     * holds count the truncations and snapshot writes kept apart. */
    printf("jepsen: nodes at the end:\n");
    nodes_describe(g_c, stdout);
    violations = jc_check(g_h, stdout);
    if (violations >= 0) {
        int av = jca_check(g_a, ACK_WAIT_MS, stdout);
        violations = av < 0 ? av : violations + av;
    }
    if (violations != 0 && ret == 0)
        ret = violations < 0 ? 2 : 1;
    if (failed_kills && ret == 0)
        ret = 2;
    if (nfo > 0) {
        qsort(fo, (size_t)nfo, sizeof *fo, cmp_i64);
        printf("failover: %d kills, kill to first write min %lld ms, median "
               "%lld ms, max %lld ms\n",
               nfo, (long long)fo[0], (long long)fo[nfo / 2],
               (long long)fo[nfo - 1]);
        printf("bench: cluster_failover_min %lld ms\n", (long long)fo[0]);
        printf("bench: cluster_failover_median %lld ms\n",
               (long long)fo[nfo / 2]);
        printf("bench: cluster_failover_max %lld ms\n", (long long)fo[nfo - 1]);
    }
    nodes_stop(g_c, ret != 0 || crashes > 0 || stalls > 0);
    jc_free(g_h);
    jca_free(g_a);
    free(fo);
    return ret;
}
