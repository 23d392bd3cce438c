/*
 * ledger.h - the reliability tests' bookkeeping of daemon resources.
 *
 * The "ledger" is the part of runtime.stats that must come back exactly to
 * its baseline once the clients that used the daemon are gone: sessions,
 * parked waiters, held locks, open descriptors and bytes queued in output
 * buffers.  RSS is reported beside it (it is not exact: allocators keep
 * freed memory).  Shared by test_hostile.c, test_faults*.c and the soak
 * driver; header-only so that it needs no Makefile rule.
 *
 * Every reading goes through testd_stats' kept connection, which is
 * itself one session and one descriptor: baseline and later readings both
 * include it, so they compare equal.
 */
#ifndef CHAND_LEDGER_H
#define CHAND_LEDGER_H

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../common/testd.h"

typedef struct ledger {
    long long sessions, waiters, held_locks, open_fds, outbuf, rss, objects;
    long long goroutines;
} ledger;

/* Fills l from runtime.stats.  Returns 0, or -1 when the daemon did not
 * answer. */
static inline int ledger_read(const testd *d, ledger *l)
{
    json_t *st = testd_stats(d);
    memset(l, 0, sizeof *l);
#define LEDGER_GET(f, k)                                                       \
    l->f = (long long)json_integer_value(json_object_get(st, k))
    if (!st)
        return -1;
    LEDGER_GET(sessions, "sessions");
    LEDGER_GET(waiters, "waiters");
    LEDGER_GET(held_locks, "held_locks");
    LEDGER_GET(open_fds, "open_fds");
    LEDGER_GET(outbuf, "output_buffer_bytes");
    LEDGER_GET(rss, "rss_bytes");
    LEDGER_GET(objects, "objects");
    LEDGER_GET(goroutines, "goroutines");
#undef LEDGER_GET
    json_decref(st);
    return 0;
}

static inline void ledger_print(const char *tag, const ledger *l)
{
    fprintf(stderr,
            "ledger %s: sessions %lld waiters %lld held_locks %lld "
            "open_fds %lld outbuf %lld rss %lld objects %lld goroutines "
            "%lld\n",
            tag, l->sessions, l->waiters, l->held_locks, l->open_fds, l->outbuf,
            l->rss, l->objects, l->goroutines);
}

/* Returns true when the exact fields of a equal b's, with extra_sessions
 * more sessions (and as many more descriptors) in a. */
static inline bool ledger_same(const ledger *a, const ledger *b,
                               int extra_sessions)
{
    return a->sessions == b->sessions + extra_sessions &&
           a->waiters == b->waiters && a->held_locks == b->held_locks &&
           a->open_fds == b->open_fds + extra_sessions &&
           a->outbuf == b->outbuf;
}

/* Waits (up to timeout_ms: a session's end is processed asynchronously)
 * until the ledger equals base with extra_sessions more sessions.  Returns
 * 0, or -1 after printing both readings. */
static inline int ledger_wait(const testd *d, const ledger *base,
                              int extra_sessions, int timeout_ms)
{
    ledger now = {0};
    int64_t t0 = testd_now_ms();

    for (;;) {
        if (ledger_read(d, &now) == 0 &&
            ledger_same(&now, base, extra_sessions))
            return 0;
        if (testd_now_ms() - t0 > timeout_ms)
            break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "ledger did not return to baseline (+%d sessions)\n",
            extra_sessions);
    ledger_print("baseline", base);
    ledger_print("now", &now);
    return -1;
}

/* Waits (up to timeout_ms) until no client is connected but the one that
 * reads the stats, and the reading has held still for 50 ms: whatever
 * clients there were (an earlier test's, killed children's) are gone and
 * the daemon is done with them.  Fills *idle with that reading: a test's
 * own baseline.  Returns 0, or -1 after printing the last reading. */
static inline int ledger_wait_idle(const testd *d, ledger *idle, int timeout_ms)
{
    ledger now = {0}, prev = {0};
    int64_t t0 = testd_now_ms(), same_since = -1;

    for (;;) {
        if (ledger_read(d, &now) == 0 && now.sessions == 1 &&
            ledger_same(&now, &prev, 0)) {
            if (same_since < 0)
                same_since = testd_now_ms();
            else if (testd_now_ms() - same_since >= 50) {
                *idle = now;
                return 0;
            }
        } else {
            same_since = -1;
        }
        prev = now;
        if (testd_now_ms() - t0 > timeout_ms)
            break;
        testd_sleep_ms(5);
    }
    ledger_print("not idle", &now);
    return -1;
}

/* Waits until runtime.stats shows at least n parked waiters (the clients'
 * requests have reached the daemon and parked).  Returns 0 or -1. */
static inline int ledger_wait_waiters(const testd *d, long long n,
                                      int timeout_ms)
{
    ledger now = {0};
    int64_t t0 = testd_now_ms();

    while (testd_now_ms() - t0 <= timeout_ms) {
        if (ledger_read(d, &now) == 0 && now.waiters >= n)
            return 0;
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "expected %lld parked waiters\n", n);
    return -1;
}

#endif /* CHAND_LEDGER_H */
