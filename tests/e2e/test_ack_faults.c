/*
 * test_ack_faults.c - acknowledged delivery under faults (issue 18):
 * worker processes receiving with ack are SIGKILLed and SIGSTOPped at
 * random while they hold deliveries; afterwards every value sent was
 * acknowledged exactly once or sits in the dead-letter channel, and no
 * stale acknowledgement was ever accepted.  A second run does the same
 * with a data_dir while the daemon itself is SIGKILLed and restarted.
 * A third part measures how late redelivery comes after ack_wait.
 *
 * The ledger lives in shared memory, written by the workers with atomic
 * operations, in an order that makes a kill at any instruction
 * decidable: a worker records the highest attempt it received for a
 * value, then marks its intent to ack that attempt, acks, and only then
 * counts the ack.  A worker killed between its ack and the count leaves
 * an intent; the ack took effect exactly when no later attempt of the
 * value was ever received and it is not a dead letter (it was the last
 * word on the value).  An ack left unanswered because the daemon died
 * is the one case the client cannot decide (kept or never logged look
 * alike); those are counted apart and reported.
 *
 * ACK_FAULTS (default 60) is the number of worker faults of the first run
 * (the persistent run takes half, plus ACK_DAEMON_KILLS daemon kills,
 * default 2); ACK_SEED repeats a run.  `make soak-ack` runs 400 faults
 * and 20 daemon kills.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "chand.h"

#include "../common/testd.h"
#include "../common/testrand.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NWORKERS 4
#define MAX_VALUES 20000
#define MAX_DELIVER 8
#define CAP 16
#define POISON 23      /* every 23rd value always fails: a dead letter */
#define ACK_WAIT 200   /* ms, the workers' ack_wait */
#define SLACK_RULE 100 /* ms: redelivery within ack_wait + this */

/* What the workers and the test share (MAP_SHARED). */
typedef struct vslot {
    int32_t max_att;  /* highest attempt received */
    int32_t oks;      /* acks answered 0 */
    int32_t ok_att;   /* the attempt of the (last) successful ack */
    uint64_t cintent; /* bit a-1: the ack of attempt a got no answer: the
                       * daemon died under it */
    uint64_t intent;  /* bit a-1: an ack of attempt a was begun and its
                       * answer not recorded */
} vslot;

typedef struct shared {
    int port;      /* the daemon's, changed on restarts */
    int64_t stale; /* acks refused with not_pending */
    int64_t nacks; /* nacks answered 0 */
    int64_t reconnects;
    int holding[NWORKERS]; /* 1 while the worker holds a delivery */
    vslot v[MAX_VALUES];
} shared;

static shared *S;
static testd g_d;
static char g_ddir[256];
static uint64_t g_rng;

static int32_t ld32(int32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

static void max32(int32_t *p, int32_t v)
{
    int32_t cur = ld32(p);

    while (cur < v &&
           !__atomic_compare_exchange_n(p, &cur, v, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST))
        ;
}

/* ------------------------------------------------------------------ */
/* A worker (a forked process)                                        */
/* ------------------------------------------------------------------ */

/* Connects to the daemon's current port, trying for up to 30 s (it may
 * be restarting).  Returns the connection or NULL. */
static chand_conn *w_connect(void)
{
    int64_t end = testd_now_ms() + 30000;

    while (testd_now_ms() < end) {
        chand_conn *c = NULL;
        int port = __atomic_load_n(&S->port, __ATOMIC_SEQ_CST);
        if (chand_connect("127.0.0.1", port, 2000, &c, NULL) == 0)
            return c;
        testd_sleep_ms(20);
    }
    return NULL;
}

/* Works on channel f.q until it is closed, drained and settled.  Never
 * returns: exits 0 then, 2 when the daemon is gone for good. */
static void worker(int w, uint64_t seed)
{
    uint64_t rng = seed;
    chand_conn *c = w_connect();

    if (!c)
        _exit(2);
    for (;;) {
        json_t *v = NULL;
        int64_t id, att, val;
        int rc =
            chand_recv_ack(c, "f.q", ACK_WAIT, CHAND_FOREVER, &v, &id, &att);

        if (rc == 0)
            _exit(0);
        if (rc < 0) {
            json_decref(v);
            chand_close_conn(c);
            __atomic_add_fetch(&S->reconnects, 1, __ATOMIC_SEQ_CST);
            if (!(c = w_connect()))
                _exit(2);
            continue;
        }
        val = json_integer_value(v);
        json_decref(v);
        if (val < 0 || val >= MAX_VALUES || att < 1 || att > 63) {
            fprintf(stderr, "worker: value %lld attempt %lld out of range\n",
                    (long long)val, (long long)att);
            _exit(3);
        }
        __atomic_store_n(&S->holding[w], 1, __ATOMIC_SEQ_CST);
        max32(&S->v[val].max_att, (int32_t)att);
        /* The work: up to 5 ms. */
        usleep((useconds_t)testrand_below(&rng, 5000));
        if (val % POISON == 0 || testrand_below(&rng, 10) == 0) {
            if (chand_nack(c, "f.q", id, 0, "worker says no") == 0)
                __atomic_add_fetch(&S->nacks, 1, __ATOMIC_SEQ_CST);
        } else {
            uint64_t bit = 1ULL << (att - 1);
            __atomic_or_fetch(&S->v[val].intent, bit, __ATOMIC_SEQ_CST);
            rc = chand_ack(c, "f.q", id);
            if (rc == 0) {
                __atomic_store_n(&S->v[val].ok_att, (int32_t)att,
                                 __ATOMIC_SEQ_CST);
                __atomic_add_fetch(&S->v[val].oks, 1, __ATOMIC_SEQ_CST);
            }
            /* Without an answer (the daemon died) the ack may or may not
             * have taken effect: said apart from a worker killed in it. */
            if (rc < 0 && rc != CHAND_ENOTPENDING)
                __atomic_or_fetch(&S->v[val].cintent, bit, __ATOMIC_SEQ_CST);
            __atomic_and_fetch(&S->v[val].intent, ~bit, __ATOMIC_SEQ_CST);
            if (rc == CHAND_ENOTPENDING)
                __atomic_add_fetch(&S->stale, 1, __ATOMIC_SEQ_CST);
        }
        __atomic_store_n(&S->holding[w], 0, __ATOMIC_SEQ_CST);
    }
}

/* ------------------------------------------------------------------ */
/* The run                                                            */
/* ------------------------------------------------------------------ */

typedef struct wproc {
    pid_t pid;
    int64_t resume_at; /* > 0: stopped, SIGCONT then */
} wproc;

static wproc g_w[NWORKERS];

static void spawn(int w)
{
    uint64_t seed = testrand_next(&g_rng);
    pid_t pid = testd_fork();

    assert_true(pid >= 0);
    if (pid == 0)
        worker(w, seed);
    g_w[w] = (wproc){.pid = pid};
}

/* Reaps exited workers; respawns those killed (by us) while the work
 * goes on.  Returns how many are running. */
static int reap(bool respawn)
{
    int running = 0;

    for (int w = 0; w < NWORKERS; w++) {
        int st;
        if (g_w[w].pid <= 0)
            continue;
        if (testd_reap(g_w[w].pid, &st, 0) == g_w[w].pid) {
            g_w[w].pid = 0;
            S->holding[w] = 0;
            if (WIFEXITED(st) && WEXITSTATUS(st) != 0)
                fail_msg("worker exited %d", WEXITSTATUS(st));
            if (WIFSIGNALED(st) && respawn)
                spawn(w);
        }
        if (g_w[w].pid > 0)
            running++;
    }
    return running;
}

/* One fault on a worker holding a delivery (any worker when none does):
 * SIGKILL, or SIGSTOP for 0.5 to 2.5 ack_waits (so some outlive their
 * deadline and, resumed, try a stale ack).  Returns 1 when done. */
static int fault(int64_t now)
{
    int order[NWORKERS], n = 0, w;

    for (w = 0; w < NWORKERS; w++)
        if (g_w[w].pid > 0 && g_w[w].resume_at == 0 &&
            __atomic_load_n(&S->holding[w], __ATOMIC_SEQ_CST))
            order[n++] = w;
    if (n == 0)
        return 0;
    w = order[testrand_below(&g_rng, (uint64_t)n)];
    if (testrand_below(&g_rng, 2) == 0) {
        kill(g_w[w].pid, SIGKILL);
    } else {
        kill(g_w[w].pid, SIGSTOP);
        g_w[w].resume_at =
            now + ACK_WAIT / 2 + (int64_t)testrand_below(&g_rng, 2 * ACK_WAIT);
    }
    return 1;
}

static void resume_due(int64_t now, bool all)
{
    for (int w = 0; w < NWORKERS; w++)
        if (g_w[w].pid > 0 && g_w[w].resume_at > 0 &&
            (all || now >= g_w[w].resume_at)) {
            kill(g_w[w].pid, SIGCONT);
            g_w[w].resume_at = 0;
        }
}

static chand_conn *t_connect(void)
{
    chand_conn *c = NULL;

    S->port = g_d.port;
    assert_int_equal(chand_connect("127.0.0.1", g_d.port, 5000, &c, NULL), 0);
    return c;
}

static void restart_daemon(chand_conn **c)
{
    const char *args[] = {"--data-dir", g_ddir, "--fsync", "always", NULL};

    chand_close_conn(*c);
    kill(g_d.pid, SIGKILL);
    testd_wait_exit(&g_d, 20000);
    assert_int_equal(testd_start(&g_d, args), 0);
    *c = t_connect();
}

/* Checks the ledger against the dead letters; prints the figures. */
static void verify(chand_conn *c, int nvalues, const char *run,
                   const unsigned char *ambiguous, int faults, int dkills)
{
    unsigned char *dead = calloc((size_t)nvalues, 1);
    int nacked = 0, ndead = 0, inferred = 0, dinferred = 0, lost_ambiguous = 0;
    int64_t len = -1, cap = -1, in = -1;

    assert_non_null(dead);
    assert_int_equal(chand_len_inflight(c, "f.q", &len, &cap, &in), 0);
    assert_int_equal(len, 0);
    assert_int_equal(in, 0);
    for (;;) {
        json_t *d = NULL;
        int64_t v;
        int rc = chand_recv(c, "f.dlq", 0, &d);
        if (rc == CHAND_ETIMEOUT)
            break;
        assert_int_equal(rc, 1);
        assert_string_equal(json_string_value(json_object_get(d, "origin")),
                            "f.q");
        v = json_integer_value(json_object_get(d, "value"));
        assert_true(v >= 0 && v < nvalues);
        if (dead[v])
            fail_msg("%s: value %lld dead-lettered twice", run, (long long)v);
        dead[v] = 1;
        json_decref(d);
    }
    for (int v = 0; v < nvalues; v++) {
        vslot *s = &S->v[v];
        int last = s->max_att;
        bool open_last = last > 0 && (s->intent & (1ULL << (last - 1)));
        bool conn_last = last > 0 && (s->cintent & (1ULL << (last - 1)));

        if (s->oks > 1)
            fail_msg("%s: value %d acknowledged %d times", run, v, s->oks);
        if (s->oks == 1 && s->ok_att != last)
            fail_msg("%s: value %d: attempt %d acknowledged, yet attempt %d "
                     "was delivered (a stale ack accepted)",
                     run, v, s->ok_att, last);
        if (dead[v]) {
            if (s->oks)
                fail_msg("%s: value %d acknowledged and dead-lettered", run, v);
            ndead++;
        } else if (s->oks == 1) {
            nacked++;
        } else if (open_last) {
            inferred++; /* killed between its ack and the count */
        } else if (conn_last) {
            dinferred++; /* the daemon died under the ack, which it kept */
        } else if (ambiguous[v]) {
            lost_ambiguous++; /* its send was never answered */
        } else {
            fail_msg("%s: value %d lost (attempts %d, intent %llx)", run, v,
                     last, (unsigned long long)s->intent);
        }
    }
    fprintf(stderr,
            "ack-faults %s: %d values: %d acked once, %d acked as their "
            "worker died, %d acks unanswered as the daemon died (kept), %d "
            "dead letters, %d unanswered sends absent; %d worker faults, %d "
            "daemon kills, %lld stale acks refused, %lld nacks, %lld "
            "reconnects\n",
            run, nvalues, nacked, inferred, dinferred, ndead, lost_ambiguous,
            faults, dkills, (long long)S->stale, (long long)S->nacks,
            (long long)S->reconnects);
    free(dead);
}

/* Sends values while injecting nfaults worker faults (and dkills daemon
 * kills, evenly among them), then closes the channel and lets the
 * workers finish; then checks. */
static void run(const char *name, int nfaults, int dkills)
{
    chand_chan_opts *o = chand_chan_opts_new();
    unsigned char *ambiguous = calloc(MAX_VALUES, 1);
    chand_conn *c;
    int sent = 0, faults = 0, killed = 0;
    int64_t next_fault, t_end;
    bool closed = false;

    assert_non_null(o);
    assert_non_null(ambiguous);
    memset(S, 0, sizeof *S);
    c = t_connect();
    assert_int_equal(chand_chan_opts_max_deliver(o, MAX_DELIVER), 0);
    assert_int_equal(chand_chan_opts_dead_letter(o, "f.dlq"), 0);
    assert_int_equal(chand_make(c, "f.dlq", MAX_VALUES, NULL), 0);
    assert_int_equal(chand_make_opts(c, "f.q", CAP, o), 0);
    chand_chan_opts_free(o);
    for (int w = 0; w < NWORKERS; w++)
        spawn(w);
    next_fault = testd_now_ms() + 20;
    t_end = testd_now_ms() + 600000;
    while (!closed) {
        int64_t now = testd_now_ms();
        int rc;

        assert_true(now < t_end);
        resume_due(now, false);
        reap(true);
        if (faults < nfaults && now >= next_fault) {
            faults += fault(now);
            next_fault = now + 5 + (int64_t)testrand_below(&g_rng, 30);
            if (killed < dkills &&
                faults * (dkills + 1) >= (killed + 1) * nfaults) {
                restart_daemon(&c);
                killed++;
            }
        }
        if (faults >= nfaults && killed >= dkills) {
            rc = chand_close(c, "f.q");
            if (rc == 0 || rc == CHAND_ECLOSED) {
                closed = true;
                continue;
            }
        } else if (sent < MAX_VALUES) {
            json_t *jv = json_integer(sent);
            /* Now and then a pause: the channel drains and the next sends
             * meet receivers already waiting (the hand-off path). */
            if (testrand_below(&g_rng, 8) == 0)
                testd_sleep_ms(3);
            rc = chand_send(c, "f.q", jv, 10);
            json_decref(jv);
            if (rc == 0) {
                sent++;
                continue;
            }
            if (rc == CHAND_ETIMEOUT)
                continue; /* full: the workers are behind */
        } else {
            fail_msg("%s: %d values sent before the faults were done", name,
                     sent);
        }
        /* Connection lost (the daemon was killed under a send: that
         * value may or may not be in the channel). */
        assert_true(rc == CHAND_ECONN || rc == CHAND_ETIMEOUT);
        if (rc == CHAND_ECONN) {
            ambiguous[sent++] = 1;
            chand_close_conn(c);
            c = t_connect();
        }
    }
    /* No more faults: let the stopped go and wait for every worker. */
    resume_due(0, true);
    while (reap(true) > 0) {
        assert_true(testd_now_ms() < t_end);
        testd_sleep_ms(10);
    }
    verify(c, sent, name, ambiguous, faults, killed);
    chand_close_conn(c);
    free(ambiguous);
}

static void test_worker_faults(void **state)
{
    int n = (int)strtol(getenv("ACK_FAULTS") ? getenv("ACK_FAULTS") : "60",
                        NULL, 10);

    (void)state;
    assert_int_equal(testd_start(&g_d, NULL), 0);
    run("memory", n, 0);
    assert_int_equal(testd_stop(&g_d), 0);
}

static void test_daemon_kills(void **state)
{
    const char *args[] = {"--data-dir", g_ddir, "--fsync", "always", NULL};
    int n = (int)strtol(getenv("ACK_FAULTS") ? getenv("ACK_FAULTS") : "60",
                        NULL, 10);
    int k = (int)strtol(getenv("ACK_DAEMON_KILLS") ? getenv("ACK_DAEMON_KILLS")
                                                   : "2",
                        NULL, 10);

    (void)state;
    snprintf(g_ddir, sizeof g_ddir, "/tmp/chand-ackf.%d", (int)getpid());
    testd_rm_rf(g_ddir);
    assert_int_equal(mkdir(g_ddir, 0700), 0);
    assert_int_equal(testd_start(&g_d, args), 0);
    run("data_dir", n / 2, k);
    assert_int_equal(testd_stop(&g_d), 0);
    testd_rm_rf(g_ddir);
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* A process that keeps the daemon busy until killed: send, recv with
 * ack, ack, on its own channel. */
static void loader(int port, int i)
{
    chand_conn *c = NULL;
    char name[32];

    snprintf(name, sizeof name, "r.load%d", i);
    if (chand_connect("127.0.0.1", port, 5000, &c, NULL) != 0 ||
        chand_make(c, name, 4, NULL) != 0)
        _exit(2);
    for (;;) {
        json_t *v = NULL;
        int64_t id;
        if (chand_send_str(c, name, "load", 5000) != 0 ||
            chand_recv_ack(c, name, 0, 5000, &v, &id, NULL) != 1 ||
            chand_ack(c, name, id) != 0)
            _exit(3);
        json_decref(v);
    }
}

/* n redeliveries: A takes a value with ack_wait and lets it lapse; B
 * then waits for it.  The slack is B's receipt minus the moment A's
 * request was sent minus ack_wait: an upper bound of the server's
 * lateness whatever the load (the deadline was set after A's request was
 * sent; B's answer left after the redelivery), and >= 0 unless the
 * redelivery came early.  Fills slack[] sorted. */
static void probe_slack(chand_conn *a, chand_conn *b, int64_t *slack, int n)
{
    for (int i = 0; i < n; i++) {
        json_t *v = NULL;
        int64_t id, id2, att, t0;
        assert_int_equal(chand_send_str(a, "r.q", "x", 5000), 0);
        t0 = testd_now_ms();
        assert_int_equal(
            chand_recv_ack(a, "r.q", ACK_WAIT, 5000, &v, &id, NULL), 1);
        json_decref(v);
        assert_int_equal(chand_recv_ack(b, "r.q", 0, 10000, &v, &id2, &att), 1);
        slack[i] = testd_now_ms() - t0 - ACK_WAIT;
        json_decref(v);
        assert_true(att >= 2);
        if (slack[i] < -1) /* the millisecond clocks' rounding */
            fail_msg("redelivered %lld ms before its deadline",
                     (long long)-slack[i]);
        assert_int_equal(chand_ack(a, "r.q", id), CHAND_ENOTPENDING);
        assert_int_equal(chand_ack(b, "r.q", id2), 0);
    }
    qsort(slack, (size_t)n, sizeof slack[0], cmp64);
}

static void report_slack(const char *what, const int64_t *slack, int n)
{
    printf("bench: ack_redelivery_slack%s_p50 %lld ms\n", what,
           (long long)slack[n / 2]);
    printf("bench: ack_redelivery_slack%s_max %lld ms\n", what,
           (long long)slack[n - 1]);
    fprintf(stderr,
            "redelivery after ack_wait %d ms%s: slack min %lld, p50 %lld, "
            "p90 %lld, max %lld ms (rule: %d)\n",
            ACK_WAIT, what, (long long)slack[0], (long long)slack[n / 2],
            (long long)slack[n * 9 / 10], (long long)slack[n - 1], SLACK_RULE);
}

/* How late after its deadline a value comes back, on an idle daemon and
 * on one kept busy by two loader processes.  Never early; the idle
 * median within the rule.  The figures are printed; the busy run and the
 * tails are reported, not failed: on a shared machine they measure the
 * machine as much as the daemon. */
static void test_redelivery_slack(void **state)
{
    enum { N = 20 };
    int64_t slack[N];
    chand_conn *a = NULL, *b = NULL;
    pid_t load[2];

    (void)state;
    assert_int_equal(testd_start(&g_d, NULL), 0);
    assert_int_equal(chand_connect("127.0.0.1", g_d.port, 5000, &a, NULL), 0);
    assert_int_equal(chand_connect("127.0.0.1", g_d.port, 5000, &b, NULL), 0);
    assert_int_equal(chand_make(a, "r.q", 1, NULL), 0);
    probe_slack(a, b, slack, N);
    report_slack("", slack, N);
    assert_true(slack[N / 2] <= SLACK_RULE);
    for (int i = 0; i < 2; i++) {
        load[i] = testd_fork();
        assert_true(load[i] >= 0);
        if (load[i] == 0)
            loader(g_d.port, i);
    }
    probe_slack(a, b, slack, N);
    report_slack("_loaded", slack, N);
    for (int i = 0; i < 2; i++) {
        int st = 0;
        kill(load[i], SIGKILL);
        assert_int_equal(testd_reap(load[i], &st, 10000), load[i]);
        assert_true(WIFSIGNALED(st)); /* not an early exit of its own */
    }
    chand_close_conn(a);
    chand_close_conn(b);
    assert_int_equal(testd_stop(&g_d), 0);
}

static int teardown(void **state)
{
    (void)state;
    testd_kill_children(true);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_redelivery_slack, teardown),
        cmocka_unit_test_teardown(test_worker_faults, teardown),
        cmocka_unit_test_teardown(test_daemon_kills, teardown),
    };

    signal(SIGPIPE, SIG_IGN);
    S = mmap(NULL, sizeof *S, PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (S == MAP_FAILED)
        return 1;
    g_rng = testrand_seed("ACK_SEED", 0x5eedac);
    return cmocka_run_group_tests_name("ack_faults", tests, NULL, NULL);
}
