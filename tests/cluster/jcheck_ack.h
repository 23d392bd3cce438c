/*
 * jcheck_ack.h - acknowledged delivery in the Jepsen-style run of
 * tests/cluster: a history of sends to an acknowledged channel, the
 * deliveries workers received from it (recv with ack) and their acks, and
 * the values drained at the end; then the checks:
 *   - nothing lost: every acknowledged send was acknowledged by a worker
 *     (or its ack got no answer, and may have been); the run drains the
 *     channel at the end with acknowledged receives, recorded as any;
 *   - nothing invented: every delivered value was sent, and its send did
 *     not fail;
 *   - at most one ack succeeds per value (an expired attempt's worker can
 *     never acknowledge the redelivery);
 *   - no value is delivered again once an ack of it was answered;
 *   - deliveries keep their deadlines: an ack answered not_pending before
 *     ack_wait_ms had passed since its recv was sent is a delivery lost
 *     (a failover that forgot it, or redelivered it early), unless an
 *     earlier ack of that delivery went unanswered; and a delivery nobody
 *     acked is not delivered again before ack_wait_ms has passed since its
 *     recv was sent;
 *   - no delivery id is given twice (a new leader that reissued one let a
 *     worker's retried ack end another value's delivery).
 *
 * Outcomes and times are jcheck.h's (JC_OK, JC_FAIL, JC_UNKNOWN;
 * milliseconds on one monotonic clock).  Recording is thread-safe;
 * jca_check runs once every client stopped.
 */
#ifndef CHAND_JCHECK_ACK_H
#define CHAND_JCHECK_ACK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct jca_hist jca_hist;

/* Returns a new empty history, or NULL when out of memory. */
jca_hist *jca_new(void);
/* Frees h (NULL is ok). */
void jca_free(jca_hist *h);

/* A send of the unique value v, sent at sent, and how it ended (its
 * outcome read at done). */
void jca_send(jca_hist *h, int64_t v, int outcome, int64_t sent, int64_t done);
/* Delivery id of v (a recv with ack that answered it), the recv sent at
 * sent and answered at done. */
void jca_deliver(jca_hist *h, int64_t v, int64_t id, int64_t sent,
                 int64_t done);

/* An ack of a delivery. */
typedef struct jca_ack_info {
    int64_t v, id;      /* the value and the delivery's id */
    int64_t recv_sent;  /* when the recv that delivered it was sent */
    int64_t sent, done; /* when the ack was sent, and its outcome read */
    int outcome;
    int code;         /* the client's code, for reports (0: none) */
    bool not_pending; /* the answer was not_pending (outcome JC_FAIL) */
} jca_ack_info;

void jca_ack(jca_hist *h, const jca_ack_info *a);
/* The workers begin to close their connections at t: from then on a
 * delivery may come back early because its worker's session ended (the
 * disconnect rule), so the early check stops there. */
void jca_stop(jca_hist *h, int64_t t);
/* Checks h against deliveries made with ack_wait_ms; writes one line per
 * violation (at most a few of each kind) and a summary line to report
 * (may be NULL).  Returns the number of violations, or -1 when out of
 * memory. */
int jca_check(jca_hist *h, int64_t ack_wait_ms, FILE *report);

#endif /* CHAND_JCHECK_ACK_H */
