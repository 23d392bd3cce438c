/*
 * jcheck.h - the Jepsen-style checker of tests/cluster: a history of what
 * clients did against a replicated chand (sends, receives, lock holds,
 * atomic adds, each with its outcome) and the final state read back, then
 * the checks issue 19 asks for:
 *   - every acknowledged send was received exactly once or is still
 *     queued (a value missing is a loss; one seen twice, a duplicate);
 *   - no two lock holds overlapped;
 *   - fencing tokens strictly increased (a grant acknowledged before
 *     another lock was even asked carries the smaller token);
 *   - the atomic equals the sum of the acknowledged adds;
 *   - every read of the atomic is linearizable against the adds: it counts
 *     every add acknowledged before the read was sent, no add sent after
 *     the read's answer came, and no less than a read answered before it
 *     was sent (a stale read from a deposed leader fails this).
 *
 * Outcomes are three, as in Jepsen: an answer said it happened (JC_OK),
 * an answer said it did not (JC_FAIL), or no answer came (JC_UNKNOWN: the
 * connection died in flight; it may or may not have happened).  The checks
 * allow exactly what unknown operations explain: a receive that got no
 * answer may have taken one value, an add that got no answer may have
 * counted.  Times are milliseconds on one monotonic clock.
 *
 * Recording is thread-safe; jc_check runs once every client stopped.
 */
#ifndef CHAND_JCHECK_H
#define CHAND_JCHECK_H

#include <stdint.h>
#include <stdio.h>

enum { JC_OK = 0, JC_FAIL = 1, JC_UNKNOWN = 2 };

typedef struct jc_hist jc_hist;

/* Returns a new empty history, or NULL when out of memory. */
jc_hist *jc_new(void);
/* Frees h (NULL is ok). */
void jc_free(jc_hist *h);

/* A send of the unique value v, and how it ended. */
void jc_send(jc_hist *h, int64_t v, int outcome);
/* A receive: JC_OK with the value v, or JC_UNKNOWN (v ignored).  Receives
 * that definitely took nothing (timeouts) need not be recorded. */
void jc_recv(jc_hist *h, int64_t v, int outcome);
/* A value still queued when the run ended (drained at the end). */
void jc_queued(jc_hist *h, int64_t v);
/* A lock hold: asked at lock_sent, granted with token (answer read at
 * acked), released when unlock was sent at unlock_sent (-1: never sent),
 * under a lease of lease_ms (0: none).  Only granted holds are recorded. */
void jc_hold(jc_hist *h, int64_t lock_sent, int64_t acked, int64_t unlock_sent,
             int64_t lease_ms, int64_t token);
/* An add of delta (> 0) to the atomic, and how it ended; untimed (then
 * reads are not checked). */
void jc_add(jc_hist *h, int64_t delta, int outcome);
/* The same, sent at `sent` and its answer (or failure) read at `done`. */
void jc_add_at(jc_hist *h, int64_t delta, int outcome, int64_t sent,
               int64_t done);
/* A read of the atomic that answered v: sent at `sent`, answer at `done`. */
void jc_read(jc_hist *h, int64_t sent, int64_t done, int64_t v);
/* The atomic's value read at the end. */
void jc_final_atomic(jc_hist *h, int64_t v);

/* Checks h; writes one line per violation (at most a few of each kind)
 * and a summary line to report (may be NULL).  Returns the number of
 * violations, or -1 when out of memory. */
int jc_check(jc_hist *h, FILE *report);

#endif /* CHAND_JCHECK_H */
