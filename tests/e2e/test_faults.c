/*
 * test_faults.c - end-to-end fault injection: client processes killed with
 * SIGKILL while parked in recv, send, select, mutex.lock, rwmutex.rlock,
 * wg.wait, cond.wait and once.do, and while holding a mutex or a once.
 *
 * Each scenario forks K client processes (separate processes, so that the
 * kernel closes their sockets exactly as it does for a crashed client),
 * kills a random subset at random moments -- some before they even reach
 * the daemon, some once they are parked, some while they hold a lock --
 * and then checks what Go's semantics and the session rules promise:
 *  - conservation: every value sent was received exactly once by a live
 *    client or is still in its channel; a killed sender's value is never
 *    delivered; a killed receiver takes nothing;
 *  - mutual exclusion: lock holds never overlapped (holders check a counter
 *    in shared memory; a holder told owner_dead resets it, since the dead
 *    holder could not);
 *  - fencing tokens only increase;
 *  - the ledger (sessions, waiters, held locks, descriptors, output bytes)
 *    is back to its baseline after every iteration.
 *
 * CHAND_FAULT_ITERS (default 40) is the number of iterations per scenario;
 * the total faults injected is printed at the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/e2e.h"
#include "../common/testd.h"
#include "../common/testrand.h"
#include "../soak/ledger.h"

#define MAXK 8

static ledger BASE;   /* the running test's baseline, taken at its start */
static testd_conn *C; /* the running test's own connection */
static int ITERS = 40;
static long faults, values_sent, values_recv;
static uint64_t rng_state;

/* Shared between the test and its children (MAP_SHARED). */
typedef struct shared {
    _Atomic int inside;      /* holders of the exclusive lock now */
    _Atomic int readers;     /* holders of a read lock now */
    _Atomic int writer;      /* the writer holds */
    _Atomic long last_token; /* highest token seen */
    _Atomic int overlap;     /* violations of exclusion */
    _Atomic int bad_token;   /* a token that did not increase */
    _Atomic int runs;        /* once bodies run */
} shared;
static shared *SH;

static uint64_t rnd(void)
{
    return testrand_next(&rng_state);
}

static int rndn(int n)
{
    return (int)testrand_below(&rng_state, (uint64_t)n);
}

static int setup(void **state)
{
    (void)state;
    if (getenv("CHAND_FAULT_ITERS"))
        ITERS = atoi(getenv("CHAND_FAULT_ITERS"));
    rng_state = testrand_seed("CHAND_FAULT_SEED", 0x9E3779B97F4A7C15ULL);
    SH = mmap(NULL, sizeof *SH, PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (SH == MAP_FAILED)
        return -1;
    if (testd_start(&D, NULL) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fprintf(stderr, "faults injected %ld, values sent %ld, received %ld\n",
            faults, values_sent, values_recv);
    munmap(SH, sizeof *SH);
    return testd_stop(&D) == 0 ? 0 : -1;
}

/* Each test's own baseline: once the clients of an earlier test (a failed
 * one's killed children included) are gone and the daemon has finished
 * with them (the reading holds still for 50 ms), whatever that test left
 * in the daemon is part of this test's starting point, so one failure
 * stays one failure. */
static int test_setup(void **state)
{
    (void)state;
    if (ledger_wait_idle(&D, &BASE, 30000) != 0)
        return -1;
    C = testd_connect(&D);
    return C ? 0 : -1;
}

/* Runs after a test, passed or failed: its children and its connection
 * go, whatever point it stopped at. */
static int test_teardown(void **state)
{
    (void)state;
    testd_kill_children(false);
    testd_close_all();
    C = NULL;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Children                                                           */
/* ------------------------------------------------------------------ */

typedef struct kid {
    pid_t pid;
    int rfd; /* its report pipe */
    bool killed;
    char out[4096]; /* what it reported */
    size_t outlen;
} kid;

typedef struct kargs {
    const char *scenario;
    char name[64], name2[64];
    int idx;
    long value;
} kargs;

/* Writes one report line to the test (atomic: shorter than PIPE_BUF). */
static void report(int fd, const char *fmt, ...)
{
    char b[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    if (write(fd, b, (size_t)n) != n)
        _exit(3);
}

static json_t *kcall(testd_conn *c, int fd, int64_t id, const char *m,
                     json_t *params)
{
    json_t *a = testd_call(c, id, m, params, 60000);
    if (!a) {
        report(fd, "ERR no answer to %s\n", m);
        _exit(2);
    }
    return a;
}

/* Takes the exclusive lock's critical section: checks nobody else is
 * inside (unless told the previous owner died inside), that the token
 * increased, stays a moment, leaves. */
static void critical(json_t *res, bool reader)
{
    long tok = (long)json_integer_value(json_object_get(res, "token"));
    bool dead = json_is_true(json_object_get(res, "owner_dead"));

    if (reader) {
        if (atomic_load(&SH->writer) != 0)
            atomic_fetch_add(&SH->overlap, 1);
        atomic_fetch_add(&SH->readers, 1);
        usleep((useconds_t)(rnd() % 300));
        atomic_fetch_sub(&SH->readers, 1);
        return;
    }
    if (dead)
        atomic_store(&SH->inside, 0);
    if (atomic_fetch_add(&SH->inside, 1) != 0)
        atomic_fetch_add(&SH->overlap, 1);
    long prev = atomic_load(&SH->last_token);
    if (tok <= prev)
        atomic_fetch_add(&SH->bad_token, 1);
    atomic_store(&SH->last_token, tok);
    usleep((useconds_t)(rnd() % 500));
    atomic_fetch_sub(&SH->inside, 1);
}

static void kid_main(int fd, const kargs *a)
{
    testd_conn *c = testd_connect(&D);
    const char *s = a->scenario;
    json_t *r = NULL;

    rng_state ^= (uint64_t)getpid() * 0x2545F4914F6CDD1DULL;
    if (!c) {
        report(fd, "ERR connect\n");
        _exit(2);
    }
    /* A round trip first: once "ready" is reported the daemon counts this
     * session, and keeps counting it until it is done with everything the
     * child sent (see settle). */
    json_decref(kcall(c, fd, 9, "ping", NULL));
    report(fd, "ready\n");
    if (strcmp(s, "recv") == 0) {
        r = kcall(c, fd, 1, "recv", json_pack("{s:s}", "name", a->name));
        json_t *v = json_object_get(testd_result(r), "value");
        if (json_is_integer(v))
            report(fd, "got %lld\n", (long long)json_integer_value(v));
        else
            report(fd, "ERR recv answer\n");
    } else if (strcmp(s, "send") == 0) {
        r = kcall(c, fd, 1, "send",
                  json_pack("{s:s, s:I}", "name", a->name, "value",
                            (json_int_t)a->value));
        report(fd, testd_result(r) ? "sent %ld\n" : "ERR send %ld\n", a->value);
    } else if (strcmp(s, "select") == 0) {
        r = kcall(c, fd, 1, "select",
                  json_pack("{s:[{s:s},{s:s}]}", "cases", "recv", a->name,
                            "recv", a->name2));
        json_t *v = json_object_get(testd_result(r), "value");
        if (json_is_integer(v))
            report(fd, "got %lld\n", (long long)json_integer_value(v));
        else
            report(fd, "ERR select answer\n");
    } else if (strcmp(s, "mutex") == 0) {
        r = kcall(c, fd, 1, "mutex.lock", json_pack("{s:s}", "name", a->name));
        if (!testd_result(r)) {
            report(fd, "ERR lock %s\n", testd_reason(r));
            _exit(2);
        }
        critical(testd_result(r), false);
        json_t *u = kcall(c, fd, 2, "mutex.unlock",
                          json_pack("{s:s, s:O}", "name", a->name, "token",
                                    json_object_get(testd_result(r), "token")));
        report(fd, testd_result(u) ? "held\n" : "ERR unlock\n");
        json_decref(u);
    } else if (strcmp(s, "rlock") == 0) {
        r = kcall(c, fd, 1, "rwmutex.rlock",
                  json_pack("{s:s}", "name", a->name));
        if (!testd_result(r)) {
            report(fd, "ERR rlock %s\n", testd_reason(r));
            _exit(2);
        }
        critical(testd_result(r), true);
        json_t *u = kcall(c, fd, 2, "rwmutex.runlock",
                          json_pack("{s:s}", "name", a->name));
        report(fd, testd_result(u) ? "held\n" : "ERR runlock\n");
        json_decref(u);
    } else if (strcmp(s, "wg") == 0) {
        r = kcall(c, fd, 1, "wg.wait", json_pack("{s:s}", "name", a->name));
        report(fd, testd_result(r) ? "woke\n" : "ERR wg\n");
    } else if (strcmp(s, "cond") == 0) {
        json_t *l =
            kcall(c, fd, 1, "mutex.lock", json_pack("{s:s}", "name", a->name2));
        if (!testd_result(l)) {
            report(fd, "ERR lock %s\n", testd_reason(l));
            _exit(2);
        }
        json_decref(l);
        r = kcall(c, fd, 2, "cond.wait",
                  json_pack("{s:s, s:s}", "name", a->name, "mutex", a->name2));
        if (!testd_result(r)) {
            report(fd, "ERR cond %s\n", testd_reason(r));
            _exit(2);
        }
        critical(testd_result(r), false);
        json_t *u = kcall(c, fd, 3, "mutex.unlock",
                          json_pack("{s:s}", "name", a->name2));
        report(fd, testd_result(u) ? "woke\n" : "ERR unlock\n");
        json_decref(u);
    } else if (strcmp(s, "once") == 0) {
        r = kcall(c, fd, 1, "once.do", json_pack("{s:s}", "name", a->name));
        if (!testd_result(r)) {
            report(fd, "ERR once %s\n", testd_reason(r));
            _exit(2);
        }
        if (json_is_true(json_object_get(testd_result(r), "run"))) {
            report(fd, "run\n");
            if (a->idx == 0)
                pause(); /* the first runner holds the once until killed */
            atomic_fetch_add(&SH->runs, 1);
            json_t *d = kcall(c, fd, 2, "once.done",
                              json_pack("{s:s}", "name", a->name));
            if (!testd_result(d))
                report(fd, "ERR done\n");
            json_decref(d);
        } else {
            report(fd, "norun\n");
        }
    }
    json_decref(r);
    testd_close(c);
    _exit(0);
}

static void kid_spawn(kid *k, const kargs *a)
{
    int p[2];

    memset(k, 0, sizeof *k);
    assert_int_equal(pipe(p), 0);
    k->pid = testd_fork();
    assert_true(k->pid >= 0);
    if (k->pid == 0) {
        close(p[0]);
        testd_close(C); /* the test's: it must close when the test does */
        kid_main(p[1], a);
        _exit(0);
    }
    close(p[1]);
    k->rfd = p[0];
}

static void kid_kill(kid *k)
{
    if (k->killed)
        return;
    kill(k->pid, SIGKILL);
    k->killed = true;
    faults++;
}

/* Reads the child's report to EOF and reaps it; a live child must exit 0. */
static void kid_reap(kid *k)
{
    int st;
    for (;;) {
        ssize_t n =
            read(k->rfd, k->out + k->outlen, sizeof k->out - 1 - k->outlen);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        k->outlen += (size_t)n;
    }
    k->out[k->outlen] = '\0';
    close(k->rfd);
    assert_int_equal(testd_reap(k->pid, &st, -1), k->pid);
    if (!k->killed) {
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || strstr(k->out, "ERR"))
            fail_msg("child %d failed: status %d, report: %s", (int)k->pid, st,
                     k->out);
    }
}

/* Reads what the child has reported so far, waiting up to wait_ms for
 * more.  Returns true when word is in its report. */
static bool kid_has(kid *k, const char *word, int wait_ms)
{
    struct pollfd p = {.fd = k->rfd, .events = POLLIN};

    if (strstr(k->out, word))
        return true;
    if (poll(&p, 1, wait_ms) > 0) {
        ssize_t n =
            read(k->rfd, k->out + k->outlen, sizeof k->out - 1 - k->outlen);
        if (n > 0) {
            k->outlen += (size_t)n;
            k->out[k->outlen] = '\0';
        }
    }
    return strstr(k->out, word) != NULL;
}

/* Waits (up to 60 s) until the child has reported word. */
static void kid_wait_for(kid *k, const char *word)
{
    for (int64_t t0 = testd_now_ms(); !kid_has(k, word, 100);)
        if (testd_now_ms() - t0 > 60000)
            fail_msg("child %d did not report \"%s\": %s", (int)k->pid, word,
                     k->out);
}

/* Kills each child with probability 1/3, at a random moment: right away
 * (maybe before it reached the daemon) or after a random pause. */
static int kill_some_early(kid *ks, int k)
{
    int killed = 0;
    for (int i = 0; i < k; i++) {
        if (rndn(3) != 0)
            continue;
        if (rndn(2))
            usleep((useconds_t)rndn(3000));
        kid_kill(&ks[i]);
        killed++;
    }
    return killed;
}

/* Kills each still-live child with probability 1/4 (they are parked). */
static void kill_some_parked(kid *ks, int k)
{
    for (int i = 0; i < k; i++)
        if (!ks[i].killed && rndn(4) == 0)
            kid_kill(&ks[i]);
}

static int live(const kid *ks, int k)
{
    int n = 0;
    for (int i = 0; i < k; i++)
        n += !ks[i].killed;
    return n;
}

/* Returns true when every live child has reported "ready". */
static bool all_ready(kid *ks, int k)
{
    bool all = true;
    for (int i = 0; i < k; i++)
        if (!ks[i].killed && !kid_has(&ks[i], "ready", 0))
            all = false;
    return all;
}

/* Waits until only the live children's sessions (plus extra of the
 * test's own) remain and all of them are parked.
 *
 * Counts alone cannot tell that: a killed child whose session the daemon
 * still counts offsets a live one it has not accepted yet, for as long as
 * a loaded machine takes -- and the sends that follow then meet the dead
 * child's wait (the value is lost in its socket, PROTOCOL.md) or miss the
 * live child that is not parked yet, which made test_kill_recv flaky.  So the
 * counts are only read once every live child has reported "ready" (after a
 * round trip: the daemon counts its session).  A killed child sent a waiting
 * request only after "ready" too, so its session was counted then and stays
 * counted until the daemon has finished with it: when the count is exactly the
 * live ones, no killed child has a wait left nor one still to come. */
static void settle(kid *ks, int k, int extra_sessions, int parked)
{
    int64_t t0 = testd_now_ms(), ok_since = -1;
    ledger l = {0};
    for (;;) {
        /* A reading may time out on a loaded machine (valgrind): only the
         * overall deadline below is fatal.  The counts must hold for 20 ms
         * too, a margin for the waiter count. */
        if (all_ready(ks, k) && ledger_read(&D, &l) == 0 &&
            l.sessions == BASE.sessions + live(ks, k) + extra_sessions &&
            l.waiters == BASE.waiters + parked) {
            if (ok_since < 0)
                ok_since = testd_now_ms();
            else if (testd_now_ms() - ok_since >= 20)
                return;
        } else {
            ok_since = -1;
        }
        if (testd_now_ms() - t0 > 60000) {
            for (int i = 0; i < k; i++)
                if (!ks[i].killed && !strstr(ks[i].out, "ready"))
                    fail_msg("child %d never got ready: %s", (int)ks[i].pid,
                             ks[i].out);
            ledger_print("settle", &l);
            fail_msg("daemon did not settle: want %d sessions, %d parked",
                     live(ks, k) + extra_sessions, parked);
        }
        testd_sleep_ms(2);
    }
}

static void drop(testd_conn *c, const char *name)
{
    json_decref(
        testd_call(c, 999999, "drop", json_pack("{s:s}", "name", name), 30000));
}

static void reset_shared(void)
{
    memset(SH, 0, sizeof *SH);
}

static void check_shared(void)
{
    assert_int_equal(atomic_load(&SH->overlap), 0);
    assert_int_equal(atomic_load(&SH->bad_token), 0);
}

/* The first half of every scenario: some children are killed at random
 * moments while they connect and park, the rest are parked (each round
 * waits until the daemon shows only the live children's sessions and
 * waits, besides the test's own session). */
static void kill_while_parking(kid *ks, int k)
{
    kill_some_early(ks, k);
    settle(ks, k, 1, live(ks, k));
    kill_some_parked(ks, k);
    settle(ks, k, 1, live(ks, k));
}

/* Spawns k children of the scenario in a. */
static void spawn_all(kid *ks, int k, const kargs *a)
{
    for (int i = 0; i < k; i++)
        kid_spawn(&ks[i], a);
}

/* After a release: kills each live child with probability 1/4 within
 * 2 ms (parked still, holding the lock, or done). */
static void kill_some_late(kid *ks, int k)
{
    for (int i = 0; i < k; i++)
        if (!ks[i].killed && rndn(4) == 0) {
            usleep((useconds_t)rndn(2000));
            kid_kill(&ks[i]);
        }
}

/* Reaps every child; each survivor must have reported word.  Returns how
 * many children (killed ones included) reported it. */
static int reap_expect(kid *ks, int k, const char *word)
{
    int n = 0;

    for (int i = 0; i < k; i++) {
        kid_reap(&ks[i]);
        n += strstr(ks[i].out, word) != NULL;
        if (!ks[i].killed && !strstr(ks[i].out, word))
            fail_msg("child %d lived but did not report \"%s\": %s", i, word,
                     ks[i].out);
    }
    return n;
}

/* Ends an iteration: drops its objects (name2 may be NULL) and waits for
 * the ledger to return to its baseline (the test's session only). */
static void end_iteration(testd_conn *c, const char *name, const char *name2)
{
    drop(c, name);
    if (name2)
        drop(c, name2);
    assert_int_equal(ledger_wait(&D, &BASE, 1, 30000), 0);
}

/* ------------------------------------------------------------------ */
/* Scenarios                                                          */
/* ------------------------------------------------------------------ */

/* Counts "got V" lines: each value in [lo, hi) at most once into seen. */
static void tally(kid *ks, int k, char *seen, long lo, long hi)
{
    for (int i = 0; i < k; i++) {
        const char *p = ks[i].out;
        while ((p = strstr(p, "got "))) {
            long v = strtol(p + 4, NULL, 10);
            assert_true(v >= lo && v < hi);
            if (seen[v - lo]++)
                fail_msg("value %ld received twice", v);
            values_recv++;
            p += 4;
        }
    }
}

static void test_kill_recv(void **state)
{
    testd_conn *c = C;
    (void)state;
    for (int it = 0; it < ITERS; it++) {
        kid ks[MAXK];
        kargs a = {.scenario = "recv"};
        int k = 2 + rndn(MAXK - 1), cap = rndn(2) ? 0 : 2;
        long base = (long)it * 100;
        char seen[100] = {0};

        snprintf(a.name, sizeof a.name, "recv%d", it);
        e2e_okj_free(c, 0, "make",
                     json_pack("{s:s, s:i}", "name", a.name, "cap", cap));
        spawn_all(ks, k, &a);
        kill_while_parking(ks, k);
        /* One value per live receiver: each send completes (unbuffered:
         * handed to a parked receiver).  Then cap + 1 more without
         * waiting: the buffer takes cap of them, the last times out -- a
         * killed receiver took nothing. */
        int n = live(ks, k);
        for (int i = 0; i < n; i++, values_sent++)
            e2e_okj_free(c, 0, "send",
                         json_pack("{s:s, s:I}", "name", a.name, "value",
                                   (json_int_t)(base + i)));
        /* Then cap + 1 more without waiting: the buffer takes cap of
         * them and the last finds no receiver -- unless a killed
         * receiver's cancelled recv took it in the race, which the
         * protocol allows on condition that the value is given back to
         * the channel.  Either way each extra value that was accepted is
         * found exactly once in the channel afterwards. */
        char extra[8] = {0};
        int accepted = 0;
        for (int i = 0; i <= cap; i++) {
            json_t *r = testd_call(
                c, 7, "send",
                json_pack("{s:s, s:I, s:i}", "name", a.name, "value",
                          (json_int_t)(base + 50 + i), "timeout_ms", 0),
                30000);
            if (testd_result(r)) {
                extra[i] = 1;
                accepted++;
                values_sent++;
            } else {
                e2e_check_reason(r, "timeout", NULL);
            }
            json_decref(r);
        }
        assert_true(accepted >= cap);
        for (int i = 0; i < k; i++)
            kid_reap(&ks[i]);
        tally(ks, k, seen, base, base + 100);
        for (int i = 0; i < n; i++)
            assert_int_equal(seen[i], 1);
        for (int got = 0; got < accepted; got++) {
            json_t *r = e2e_okj(
                c, 0, "recv",
                json_pack("{s:s, s:i}", "name", a.name, "timeout_ms", 10000));
            long v = (long)json_integer_value(
                json_object_get(testd_result(r), "value"));
            assert_true(v >= base + 50 && v <= base + 50 + cap);
            assert_int_equal(extra[v - base - 50], 1);
            extra[v - base - 50] = 0;
            values_recv++;
            json_decref(r);
        }
        json_t *none = testd_call(
            c, 8, "recv",
            json_pack("{s:s, s:i}", "name", a.name, "timeout_ms", 0), 30000);
        e2e_check_reason(none, "timeout", NULL);
        json_decref(none);
        end_iteration(c, a.name, NULL);
    }
}

static void test_kill_send(void **state)
{
    testd_conn *c = C;
    (void)state;
    for (int it = 0; it < ITERS; it++) {
        kid ks[MAXK];
        kargs a = {.scenario = "send"};
        int k = 2 + rndn(MAXK - 1), cap = rndn(2) ? 0 : 2;
        long base = (long)it * 100;
        char seen[100] = {0};

        snprintf(a.name, sizeof a.name, "send%d", it);
        e2e_okj_free(c, 0, "make",
                     json_pack("{s:s, s:i}", "name", a.name, "cap", cap));
        /* Fill the buffer so that the children's sends park. */
        for (int i = 0; i < cap; i++, values_sent++)
            e2e_okj_free(c, 0, "send",
                         json_pack("{s:s, s:I}", "name", a.name, "value",
                                   (json_int_t)(base + 90 + i)));
        for (int i = 0; i < k; i++) {
            a.value = base + i;
            kid_spawn(&ks[i], &a);
        }
        kill_while_parking(ks, k);
        /* Receive everything there is: the buffered values, then exactly
         * the live senders' values; never a killed sender's. */
        int n = live(ks, k), got = 0;
        for (;;) {
            json_t *r = testd_call(
                c, 8, "recv",
                json_pack("{s:s, s:i}", "name", a.name, "timeout_ms", 0),
                30000);
            assert_non_null(r);
            if (!testd_result(r)) {
                e2e_check_reason(r, "timeout", NULL);
                json_decref(r);
                break;
            }
            long v = (long)json_integer_value(
                json_object_get(testd_result(r), "value"));
            json_decref(r);
            assert_true(v >= base && v < base + 100);
            if (seen[v - base]++)
                fail_msg("value %ld received twice", v);
            if (v < base + 90) {
                assert_false(ks[v - base].killed);
                values_sent++;
            }
            values_recv++;
            got++;
        }
        assert_int_equal(got, n + cap);
        for (int i = 0; i < k; i++) {
            kid_reap(&ks[i]);
            if (!ks[i].killed)
                assert_int_equal(seen[i], 1);
        }
        end_iteration(c, a.name, NULL);
    }
}

static void test_kill_select(void **state)
{
    testd_conn *c = C;
    (void)state;
    for (int it = 0; it < ITERS; it++) {
        kid ks[MAXK];
        kargs a = {.scenario = "select"};
        int k = 2 + rndn(MAXK - 1);
        long base = (long)it * 100;
        char seen[100] = {0};

        snprintf(a.name, sizeof a.name, "sela%d", it);
        snprintf(a.name2, sizeof a.name2, "selb%d", it);
        e2e_okj_free(c, 0, "make", json_pack("{s:s}", "name", a.name));
        e2e_okj_free(c, 0, "make", json_pack("{s:s}", "name", a.name2));
        spawn_all(ks, k, &a);
        kill_while_parking(ks, k);
        int n = live(ks, k);
        for (int i = 0; i < n; i++, values_sent++)
            e2e_okj_free(c, 0, "send",
                         json_pack("{s:s, s:I}", "name",
                                   rndn(2) ? a.name : a.name2, "value",
                                   (json_int_t)(base + i)));
        /* No live select is left waiting on either channel: a send that
         * does not wait finds none, or a killed one's cancelled select
         * took it in the race and it is given back to the channel. */
        for (int j = 0; j < 2; j++) {
            const char *ch = j ? a.name : a.name2;
            json_t *r = testd_call(c, 9, "send",
                                   json_pack("{s:s, s:i, s:i}", "name", ch,
                                             "value", -1, "timeout_ms", 0),
                                   30000);
            if (testd_result(r)) {
                json_t *b = e2e_okj(
                    c, 0, "recv",
                    json_pack("{s:s, s:i}", "name", ch, "timeout_ms", 10000));
                assert_int_equal(json_integer_value(
                                     json_object_get(testd_result(b), "value")),
                                 -1);
                json_decref(b);
            } else {
                e2e_check_reason(r, "timeout", NULL);
            }
            json_decref(r);
        }
        for (int i = 0; i < k; i++)
            kid_reap(&ks[i]);
        tally(ks, k, seen, base, base + 100);
        for (int i = 0; i < n; i++)
            assert_int_equal(seen[i], 1);
        end_iteration(c, a.name, a.name2);
    }
}

/* Children queue on a mutex the test holds; some are killed while parked,
 * then, once it is released, others at random moments -- parked, holding
 * it, or after. */
static void test_kill_mutex(void **state)
{
    testd_conn *c = C;
    long holds = 0;
    (void)state;
    for (int it = 0; it < ITERS; it++) {
        kid ks[MAXK];
        kargs a = {.scenario = "mutex"};
        int k = 2 + rndn(MAXK - 1);

        reset_shared();
        snprintf(a.name, sizeof a.name, "mu%d", it);
        json_t *l =
            e2e_okj(c, 0, "mutex.lock", json_pack("{s:s}", "name", a.name));
        atomic_store(&SH->last_token, (long)json_integer_value(json_object_get(
                                          testd_result(l), "token")));
        json_decref(l);
        spawn_all(ks, k, &a);
        kill_while_parking(ks, k);
        e2e_okj_free(c, 0, "mutex.unlock", json_pack("{s:s}", "name", a.name));
        kill_some_late(ks, k);
        holds += reap_expect(ks, k, "held");
        check_shared();
        /* A child killed holding it leaves a hold that the daemon gives
         * back once it has seen the session end, a moment after the child
         * died: wait for that (no hold, no session but the test's), then
         * nobody holds it and the test takes it at once. */
        assert_int_equal(ledger_wait(&D, &BASE, 1, 30000), 0);
        json_t *r =
            e2e_okj(c, 0, "mutex.lock",
                    json_pack("{s:s, s:i}", "name", a.name, "timeout_ms", 0));
        assert_true(
            json_integer_value(json_object_get(testd_result(r), "token")) >
            atomic_load(&SH->last_token));
        json_decref(r);
        e2e_okj_free(c, 0, "mutex.unlock", json_pack("{s:s}", "name", a.name));
        end_iteration(c, a.name, NULL);
    }
    fprintf(stderr, "mutex: %ld holds completed\n", holds);
}

/* Readers queue behind the test's write lock; some are killed while
 * parked.  Then the test alternates write holds with the readers'. */
static void test_kill_rlock(void **state)
{
    testd_conn *c = C;
    (void)state;
    for (int it = 0; it < ITERS; it++) {
        kid ks[MAXK];
        kargs a = {.scenario = "rlock"};
        int k = 2 + rndn(MAXK - 1);

        reset_shared();
        snprintf(a.name, sizeof a.name, "rw%d", it);
        e2e_okj_free(c, 0, "rwmutex.lock", json_pack("{s:s}", "name", a.name));
        spawn_all(ks, k, &a);
        kill_while_parking(ks, k);
        e2e_okj_free(c, 0, "rwmutex.unlock",
                     json_pack("{s:s}", "name", a.name));
        /* The writer again: it waits for the readers; while it holds,
         * no reader may be inside. */
        json_t *w =
            e2e_okj(c, 0, "rwmutex.lock", json_pack("{s:s}", "name", a.name));
        atomic_store(&SH->writer, 1);
        if (atomic_load(&SH->readers) != 0)
            atomic_fetch_add(&SH->overlap, 1);
        atomic_store(&SH->writer, 0);
        json_decref(w);
        e2e_okj_free(c, 0, "rwmutex.unlock",
                     json_pack("{s:s}", "name", a.name));
        reap_expect(ks, k, "held");
        check_shared();
        end_iteration(c, a.name, NULL);
    }
}

static void test_kill_wg(void **state)
{
    testd_conn *c = C;
    (void)state;
    for (int it = 0; it < ITERS; it++) {
        kid ks[MAXK];
        kargs a = {.scenario = "wg"};
        int k = 2 + rndn(MAXK - 1);

        snprintf(a.name, sizeof a.name, "wg%d", it);
        e2e_okj_free(c, 0, "wg.add",
                     json_pack("{s:s, s:i}", "name", a.name, "delta", 1));
        spawn_all(ks, k, &a);
        kill_while_parking(ks, k);
        e2e_okj_free(c, 0, "wg.done", json_pack("{s:s}", "name", a.name));
        reap_expect(ks, k, "woke");
        end_iteration(c, a.name, NULL);
    }
}

/* Counts the waiters runtime.dump shows on object name. */
static int dump_waiters(testd_conn *c, const char *name)
{
    json_t *a = e2e_okj(c, 0, "runtime.dump", NULL), *o;
    size_t i;
    int n = 0;
    json_array_foreach(
        json_object_get(testd_result(a), "objects"), i,
        o) if (strcmp(json_string_value(json_object_get(o, "name")), name) == 0)
        n = (int)json_array_size(json_object_get(o, "waiters"));
    json_decref(a);
    return n;
}

static void test_kill_cond(void **state)
{
    testd_conn *c = C;
    (void)state;
    for (int it = 0; it < ITERS; it++) {
        kid ks[MAXK];
        kargs a = {.scenario = "cond"};
        int k = 2 + rndn(MAXK - 1);

        reset_shared();
        snprintf(a.name, sizeof a.name, "cv%d", it);
        snprintf(a.name2, sizeof a.name2, "cvm%d", it);
        spawn_all(ks, k, &a);
        kill_some_early(ks, k);
        settle(ks, k, 1, live(ks, k));
        /* Every live child is in cond.wait (not still queued on the
         * mutex), else the broadcast would miss it. */
        for (int64_t t0 = testd_now_ms();
             dump_waiters(c, a.name) != live(ks, k);) {
            assert_true(testd_now_ms() - t0 < 30000);
            testd_sleep_ms(2);
        }
        kill_some_parked(ks, k);
        settle(ks, k, 1, live(ks, k));
        e2e_okj_free(c, 0, "cond.broadcast",
                     json_pack("{s:s}", "name", a.name));
        /* They wake one at a time, each re-taking the mutex; some are
         * killed holding it. */
        kill_some_late(ks, k);
        reap_expect(ks, k, "woke");
        check_shared();
        end_iteration(c, a.name, a.name2);
    }
}

/* Child 0 runs the once and is killed while running it; waiters are
 * killed at random; exactly one survivor then runs it. */
static void test_kill_once(void **state)
{
    testd_conn *c = C;
    (void)state;
    for (int it = 0; it < ITERS; it++) {
        kid ks[MAXK];
        kargs a = {.scenario = "once"};
        int k = 2 + rndn(MAXK - 1), ran = 0;

        reset_shared();
        snprintf(a.name, sizeof a.name, "once%d", it);
        a.idx = 0;
        kid_spawn(&ks[0], &a);
        kid_wait_for(&ks[0], "run\n");
        for (int i = 1; i < k; i++) {
            a.idx = i;
            kid_spawn(&ks[i], &a);
        }
        kill_some_early(ks + 1, k - 1);
        settle(ks, k, 1, live(ks, k) - 1);
        kill_some_parked(ks + 1, k - 1);
        kid_kill(&ks[0]);
        for (int i = 0; i < k; i++) {
            kid_reap(&ks[i]);
            if (!ks[i].killed) {
                ran += strstr(ks[i].out, "run\n") != NULL &&
                       strstr(ks[i].out, "norun") == NULL;
                assert_true(strstr(ks[i].out, "run") != NULL);
            }
        }
        assert_int_equal(ran, live(ks, k) > 0 ? 1 : 0);
        assert_int_equal(atomic_load(&SH->runs), ran);
        end_iteration(c, a.name, NULL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kill_recv, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_kill_send, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_kill_select, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_kill_mutex, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_kill_rlock, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_kill_wg, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_kill_cond, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_kill_once, test_setup,
                                        test_teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    if (getenv("CHAND_FAULT_ONLY"))
        cmocka_set_test_filter(getenv("CHAND_FAULT_ONLY"));
    return cmocka_run_group_tests(tests, setup, teardown);
}
