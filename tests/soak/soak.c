/*
 * soak.c - the soak driver behind `make soak`: a real daemon, SOAK_CLIENTS
 * (default 50) client threads each on its own connection, a mixed workload
 * over every method family for SOAK_SECONDS (default 600), and random
 * disconnects -- between requests, while parked in a recv (the client
 * half-closes and reads to EOF), and while holding a mutex.  At the end:
 *  - conservation: every value whose send succeeded was received exactly
 *    once (by a client, or drained from its channel at the end), and no
 *    value was received that was not sent;
 *  - atomic counter: its value equals the sum of the successful adds;
 *  - mutual exclusion held and fencing tokens only increased;
 *  - the ledger (sessions, waiters, held locks, fds, output bytes) is back
 *    to its baseline, and RSS is flat: end RSS within 1.5x + 32 MiB of the
 *    RSS after the first tenth of the run (both printed).
 * With SOAK_MAX_MEMORY (make soak: 128k) the daemon runs under memory pressure
 * (--max-memory): requests refused with reason limit are expected (a
 * refused send is not counted as sent) and counted; every check above
 * still holds, and the daemon must survive and drain.
 * Prints "soak: ..." lines; exits 0 when every check holds.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/testd.h"
#include "../common/testrand.h"
#include "ledger.h"

#define NCHAN 4

static testd D;
static int SECONDS_ = 600, CLIENTS = 50;
static _Atomic bool stop_flag;
static _Atomic long ops, disconnects, parked_disconnects, holder_deaths;
static _Atomic long adds_total, overlap, bad_token;
static _Atomic int inside;
static _Atomic long last_token;
static _Atomic int failures;
static _Atomic long limits;    /* requests refused by max_memory */
static const char *max_memory; /* SOAK_MAX_MEMORY, or NULL */

typedef struct vlist {
    uint64_t *v;
    size_t n, cap;
} vlist;

static void vl_add(vlist *l, uint64_t v)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 1024;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        if (!l->v)
            abort();
    }
    l->v[l->n++] = v;
}

typedef struct client {
    int idx;
    pthread_t th;
    testd_conn *c;
    uint64_t rng, seq;
    int64_t id;
    vlist sent, recvd;
} client;

#define FAIL(...)                                                              \
    do {                                                                       \
        fprintf(stderr, "soak: FAIL: " __VA_ARGS__);                           \
        fprintf(stderr, "\n");                                                 \
        atomic_fetch_add(&failures, 1);                                        \
    } while (0)

static uint64_t rnd(client *k)
{
    return testrand_next(&k->rng);
}

static int rn(client *k, int n)
{
    return (int)(rnd(k) % (uint64_t)n);
}

static const char *chan_name(int i)
{
    static const char *const n[NCHAN] = {"soak.q0", "soak.q1", "soak.q2",
                                         "soak.q3"};
    return n[i];
}

static void reconnect(client *k)
{
    testd_close(k->c);
    k->c = NULL;
    for (int i = 0; i < 100 && !k->c; i++) {
        k->c = testd_connect(&D);
        if (!k->c)
            usleep(10000);
    }
    if (!k->c) {
        FAIL("client %d cannot reconnect", k->idx);
        atomic_store(&stop_flag, true);
    }
}

/* Returns the answer (new reference) or NULL after failing the run. */
static json_t *call(client *k, const char *m, json_t *params)
{
    json_t *a = testd_call(k->c, ++k->id, m, params, 60000);
    atomic_fetch_add(&ops, 1);
    if (!a) {
        FAIL("client %d: no answer to %s", k->idx, m);
        reconnect(k);
    }
    return a;
}

static void call_free(client *k, const char *m, json_t *params)
{
    json_decref(call(k, m, params));
}

/* Records a received value (an integer made by some client's send). */
static void got_value(client *k, json_t *res)
{
    json_t *v = json_object_get(res, "value");
    if (json_is_true(json_object_get(res, "ok")) || json_is_integer(v)) {
        if (!json_is_integer(v))
            FAIL("received a value that no one sent");
        else
            vl_add(&k->recvd, (uint64_t)json_integer_value(v));
    }
}

/* Half-closes and reads every answer to EOF: an answer the daemon had
 * already queued still arrives (graceful end), values in answers that
 * never left are given back to their channels. */
static void disconnect_graceful(client *k)
{
    shutdown(testd_fd(k->c), SHUT_WR);
    for (;;) {
        json_t *a = testd_recv(k->c, 30000);
        if (!a)
            break;
        json_t *r = testd_result(a);
        if (r)
            got_value(k, r);
        json_decref(a);
    }
    atomic_fetch_add(&disconnects, 1);
    reconnect(k);
}

static void op_send(client *k)
{
    uint64_t v = ((uint64_t)(k->idx + 1) << 32) | ++k->seq;
    json_t *a =
        call(k, "send",
             json_pack("{s:s, s:I, s:i}", "name", chan_name(rn(k, NCHAN)),
                       "value", (json_int_t)v, "timeout_ms", rn(k, 30)));
    if (a && testd_result(a))
        vl_add(&k->sent, v);
    else if (a && max_memory && strcmp(testd_reason(a), "limit") == 0)
        atomic_fetch_add(&limits, 1);
    else if (a && strcmp(testd_reason(a), "timeout") != 0)
        FAIL("send: %s", testd_message(a));
    json_decref(a);
}

static void op_recv(client *k)
{
    json_t *a = call(k, "recv",
                     json_pack("{s:s, s:i}", "name", chan_name(rn(k, NCHAN)),
                               "timeout_ms", rn(k, 30)));
    if (a && testd_result(a))
        got_value(k, testd_result(a));
    json_decref(a);
}

static void op_select(client *k)
{
    int i = rn(k, NCHAN), j = (i + 1 + rn(k, NCHAN - 1)) % NCHAN;
    json_t *a =
        call(k, "select",
             json_pack("{s:[{s:s},{s:s}], s:i}", "cases", "recv", chan_name(i),
                       "recv", chan_name(j), "timeout_ms", rn(k, 30)));
    if (a && testd_result(a))
        got_value(k, testd_result(a));
    json_decref(a);
}

/* A recv without timeout, then a disconnect while it is (probably)
 * parked: the value comes with the answer, or stays in the channel. */
static void op_parked_disconnect(client *k)
{
    char line[160];
    snprintf(line, sizeof line,
             "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"method\":\"recv\","
             "\"params\":{\"name\":\"%s\"}}",
             (long long)++k->id, chan_name(rn(k, NCHAN)));
    testd_send(k->c, line);
    usleep((useconds_t)rn(k, 5000));
    atomic_fetch_add(&parked_disconnects, 1);
    disconnect_graceful(k);
}

static void op_mutex(client *k)
{
    json_t *a =
        call(k, "mutex.lock",
             json_pack("{s:s, s:i}", "name", "soak.m", "timeout_ms", 200));
    if (!a || !testd_result(a)) {
        json_decref(a);
        return;
    }
    long tok =
        (long)json_integer_value(json_object_get(testd_result(a), "token"));
    if (json_is_true(json_object_get(testd_result(a), "owner_dead")))
        atomic_store(&inside, 0);
    if (atomic_fetch_add(&inside, 1) != 0)
        atomic_fetch_add(&overlap, 1);
    if (tok <= atomic_load(&last_token))
        atomic_fetch_add(&bad_token, 1);
    atomic_store(&last_token, tok);
    json_decref(a);
    if (rn(k, 50) == 0) {
        /* Dies holding it: the next holder hears owner_dead. */
        atomic_fetch_add(&holder_deaths, 1);
        disconnect_graceful(k);
        return;
    }
    atomic_fetch_sub(&inside, 1);
    call_free(
        k, "mutex.unlock",
        json_pack("{s:s, s:I}", "name", "soak.m", "token", (json_int_t)tok));
}

static void op_rw(client *k)
{
    bool w = rn(k, 4) == 0;
    json_t *a =
        call(k, w ? "rwmutex.lock" : "rwmutex.rlock",
             json_pack("{s:s, s:i}", "name", "soak.rw", "timeout_ms", 100));
    bool ok = a && testd_result(a);
    json_decref(a);
    if (ok)
        call_free(k, w ? "rwmutex.unlock" : "rwmutex.runlock",
                  json_pack("{s:s}", "name", "soak.rw"));
}

static void op_wg(client *k)
{
    char name[32];
    snprintf(name, sizeof name, "soak.wg%d", k->idx % 5);
    call_free(k, "wg.add", json_pack("{s:s, s:i}", "name", name, "delta", 1));
    call_free(k, "wg.done", json_pack("{s:s}", "name", name));
    call_free(k, "wg.wait",
              json_pack("{s:s, s:i}", "name", name, "timeout_ms", 20));
}

static void op_once(client *k)
{
    char name[32];
    snprintf(name, sizeof name, "soak.once%d", rn(k, 1000));
    json_t *a = call(k, "once.do",
                     json_pack("{s:s, s:i}", "name", name, "timeout_ms", 100));
    if (a && json_is_true(json_object_get(testd_result(a), "run")))
        call_free(k, "once.done", json_pack("{s:s}", "name", name));
    json_decref(a);
}

static void op_cond(client *k)
{
    if (rn(k, 2)) {
        call_free(k, rn(k, 2) ? "cond.signal" : "cond.broadcast",
                  json_pack("{s:s}", "name", "soak.cv"));
        return;
    }
    json_t *a =
        call(k, "mutex.lock",
             json_pack("{s:s, s:i}", "name", "soak.cm", "timeout_ms", 200));
    bool ok = a && testd_result(a);
    json_decref(a);
    if (!ok)
        return;
    /* Timeout or not, cond.wait answers holding the mutex again. */
    call_free(k, "cond.wait",
              json_pack("{s:s, s:s, s:i}", "name", "soak.cv", "mutex",
                        "soak.cm", "timeout_ms", 20));
    call_free(k, "mutex.unlock", json_pack("{s:s}", "name", "soak.cm"));
}

static void op_misc(client *k)
{
    char key[16], tname[48];
    snprintf(key, sizeof key, "k%d", rn(k, 100));
    switch (rn(k, 8)) {
    case 0:
        call_free(k, "map.store",
                  json_pack("{s:s, s:s, s:i}", "name", "soak.map", "key", key,
                            "value", rn(k, 1000)));
        break;
    case 1:
        call_free(k, "map.load",
                  json_pack("{s:s, s:s}", "name", "soak.map", "key", key));
        break;
    case 2:
        call_free(k, "map.compare_and_swap",
                  json_pack("{s:s, s:s, s:i, s:i}", "name", "soak.map", "key",
                            key, "old", rn(k, 1000), "new", rn(k, 1000)));
        break;
    case 3: {
        json_t *a = call(k, "atomic.add",
                         json_pack("{s:s, s:i}", "name", "soak.n", "delta", 3));
        if (a && testd_result(a))
            atomic_fetch_add(&adds_total, 3);
        json_decref(a);
        break;
    }
    case 4:
        call_free(k, "pool.put",
                  json_pack("{s:s, s:[i]}", "name", "soak.pool", "value", 1));
        call_free(k, "pool.get", json_pack("{s:s}", "name", "soak.pool"));
        break;
    case 5:
        snprintf(tname, sizeof tname, "soak.t%d.%llu", k->idx,
                 (unsigned long long)++k->seq);
        call_free(k, "timer.after",
                  json_pack("{s:s, s:i}", "name", tname, "ms", rn(k, 10)));
        call_free(k, "recv",
                  json_pack("{s:s, s:i}", "name", tname, "timeout_ms", 5000));
        call_free(k, "drop", json_pack("{s:s}", "name", tname));
        break;
    case 6:
        snprintf(tname, sizeof tname, "soak.tk%d", k->idx);
        call_free(k, "timer.ticker",
                  json_pack("{s:s, s:i}", "name", tname, "ms", 5));
        call_free(k, "recv",
                  json_pack("{s:s, s:i}", "name", tname, "timeout_ms", 5000));
        call_free(k, "timer.stop", json_pack("{s:s}", "name", tname));
        call_free(k, "drop", json_pack("{s:s}", "name", tname));
        break;
    default:
        if (rn(k, 2))
            call_free(k, "len",
                      json_pack("{s:s}", "name", chan_name(rn(k, NCHAN))));
        else
            call_free(k, "ping", NULL);
        break;
    }
}

static void *client_main(void *arg)
{
    client *k = arg;
    reconnect(k);
    while (!atomic_load(&stop_flag) && k->c) {
        int r = rn(k, 100);
        if (r < 25)
            op_send(k);
        else if (r < 45)
            op_recv(k);
        else if (r < 52)
            op_select(k);
        else if (r < 60)
            op_mutex(k);
        else if (r < 65)
            op_rw(k);
        else if (r < 68)
            op_wg(k);
        else if (r < 71)
            op_once(k);
        else if (r < 76)
            op_cond(k);
        else if (r < 97)
            op_misc(k);
        else if (r < 98)
            op_parked_disconnect(k);
        else if (r < 99)
            disconnect_graceful(k);
        else {
            /* Between requests: a plain close loses nothing. */
            atomic_fetch_add(&disconnects, 1);
            reconnect(k);
        }
    }
    testd_close(k->c);
    k->c = NULL;
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(void)
{
    client *ks;
    ledger base, warm, end;
    vlist all_sent = {0}, all_recv = {0};
    const char *args[] = {"--max-conns", "1000", NULL, NULL, NULL};

    if (getenv("SOAK_SECONDS"))
        SECONDS_ = atoi(getenv("SOAK_SECONDS"));
    if (getenv("SOAK_CLIENTS"))
        CLIENTS = atoi(getenv("SOAK_CLIENTS"));
    max_memory = getenv("SOAK_MAX_MEMORY");
    if (max_memory && *max_memory) {
        args[2] = "--max-memory";
        args[3] = max_memory;
        printf("soak: under memory pressure: max_memory %s\n", max_memory);
    } else {
        max_memory = NULL;
    }
    signal(SIGPIPE, SIG_IGN);
    if (testd_start(&D, args) != 0) {
        fprintf(stderr, "soak: cannot start the daemon\n");
        return 1;
    }
    if (ledger_read(&D, &base) != 0)
        return 1;
    ledger_print("start", &base);
    {
        testd_conn *c = testd_connect(&D);
        for (int i = 0; i < NCHAN; i++) {
            json_t *a = testd_call(c, i + 1, "make",
                                   json_pack("{s:s, s:i}", "name", chan_name(i),
                                             "cap", i == NCHAN - 1 ? 0 : 16),
                                   10000);
            json_decref(a);
        }
        testd_close(c);
    }
    ks = calloc((size_t)CLIENTS, sizeof *ks);
    for (int i = 0; i < CLIENTS; i++) {
        ks[i].idx = i;
        ks[i].rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1);
        pthread_create(&ks[i].th, NULL, client_main, &ks[i]);
    }
    int64_t t0 = testd_now_ms(), warm_at = t0 + SECONDS_ * 100;
    bool warmed = false;
    long last_ops = 0;
    while (testd_now_ms() - t0 < (int64_t)SECONDS_ * 1000 &&
           !atomic_load(&stop_flag)) {
        sleep(1);
        ledger l;
        if (!warmed && testd_now_ms() >= warm_at) {
            ledger_read(&D, &warm);
            warmed = true;
        }
        if (((testd_now_ms() - t0) / 1000) % 10 == 0 &&
            ledger_read(&D, &l) == 0) {
            long o = atomic_load(&ops);
            fprintf(stderr,
                    "soak: t=%llds ops %ld (+%ld) sessions %lld "
                    "waiters %lld rss %lld KiB\n",
                    (long long)((testd_now_ms() - t0) / 1000), o, o - last_ops,
                    l.sessions, l.waiters, l.rss / 1024);
            last_ops = o;
        }
    }
    if (!warmed)
        ledger_read(&D, &warm);
    atomic_store(&stop_flag, true);
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(ks[i].th, NULL);

    /* Drain the channels: what is left was sent and not yet received. */
    testd_conn *c = testd_connect(&D);
    long drained = 0;
    for (int i = 0; i < NCHAN; i++) {
        for (int64_t id = 100;; id++) {
            json_t *a = testd_call(
                c, id, "recv",
                json_pack("{s:s, s:i}", "name", chan_name(i), "timeout_ms", 0),
                10000);
            json_t *r = testd_result(a);
            if (!r) {
                json_decref(a);
                break;
            }
            vl_add(&all_recv,
                   (uint64_t)json_integer_value(json_object_get(r, "value")));
            drained++;
            json_decref(a);
        }
    }
    json_t *a = testd_call(c, 1, "atomic.load",
                           json_pack("{s:s}", "name", "soak.n"), 10000);
    long atom =
        (long)json_integer_value(json_object_get(testd_result(a), "value"));
    json_decref(a);
    testd_close(c);

    for (int i = 0; i < CLIENTS; i++) {
        for (size_t j = 0; j < ks[i].sent.n; j++)
            vl_add(&all_sent, ks[i].sent.v[j]);
        for (size_t j = 0; j < ks[i].recvd.n; j++)
            vl_add(&all_recv, ks[i].recvd.v[j]);
    }
    qsort(all_sent.v, all_sent.n, sizeof *all_sent.v, cmp_u64);
    qsort(all_recv.v, all_recv.n, sizeof *all_recv.v, cmp_u64);
    size_t lost = 0, dup = 0, unknown = 0, i = 0, j = 0;
    while (i < all_sent.n || j < all_recv.n) {
        if (j >= all_recv.n ||
            (i < all_sent.n && all_sent.v[i] < all_recv.v[j])) {
            lost++;
            i++;
        } else if (i >= all_sent.n || all_recv.v[j] < all_sent.v[i]) {
            if (j > 0 && all_recv.v[j] == all_recv.v[j - 1])
                dup++;
            else
                unknown++;
            j++;
        } else {
            i++;
            j++;
        }
    }
    fprintf(stderr,
            "soak: %d clients, %d s, %ld requests, %ld disconnects "
            "(%ld while parked in recv, %ld holding the mutex)\n",
            CLIENTS, SECONDS_, atomic_load(&ops), atomic_load(&disconnects),
            atomic_load(&parked_disconnects), atomic_load(&holder_deaths));
    fprintf(stderr,
            "soak: values sent %zu, received %zu (%ld drained at "
            "the end), lost %zu, duplicated %zu, unknown %zu\n",
            all_sent.n, all_recv.n, drained, lost, dup, unknown);
    fprintf(stderr,
            "soak: atomic %ld, adds %ld; mutex overlaps %ld, token "
            "regressions %ld\n",
            atom, atomic_load(&adds_total), atomic_load(&overlap),
            atomic_load(&bad_token));
    if (lost || dup || unknown)
        FAIL("conservation");
    if (atom != atomic_load(&adds_total))
        FAIL("atomic counter %ld != %ld", atom, atomic_load(&adds_total));
    if (atomic_load(&overlap) || atomic_load(&bad_token))
        FAIL("mutual exclusion or fencing");
    if (ledger_wait(&D, &base, 0, 30000) != 0)
        FAIL("ledger not back to baseline");
    ledger_read(&D, &end);
    fprintf(stderr,
            "soak: rss start %lld KiB, after warm-up %lld KiB, "
            "end %lld KiB\n",
            base.rss / 1024, warm.rss / 1024, end.rss / 1024);
    if (end.rss > warm.rss * 3 / 2 + 32LL * 1024 * 1024)
        FAIL("rss grew from %lld to %lld KiB", warm.rss / 1024, end.rss / 1024);
    int st = testd_stop(&D);
    if (st != 0)
        FAIL("daemon exit status %d", st);
    if (max_memory)
        printf("soak: %ld sends refused with reason limit (max_memory %s)\n",
               atomic_load(&limits), max_memory);
    fprintf(stderr, "soak: %s\n", atomic_load(&failures) ? "FAILED" : "ok");
    return atomic_load(&failures) ? 1 : 0;
}
