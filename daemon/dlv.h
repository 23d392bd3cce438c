/*
 * dlv.h - acknowledged deliveries (issue 18): what h_ack.c, h_chan*.c,
 * dispatch.c and stats.c call in dlv.c.
 *
 * A delivery is one value of one channel taken by an acknowledged receive,
 * from its first attempt until it is acknowledged, dead-lettered or
 * dropped.  Its record lives in the runtime's redelivery queue (as the
 * value's meta) between attempts, so the attempts and the last reason
 * follow the value.
 */
#ifndef CHAND_DLV_H
#define CHAND_DLV_H

#include "daemon.h"

/* ack_wait_ms when a receive gives none. */
#define DLV_ACK_WAIT_MS 30000
/* nack's and term's reason: longer ones are invalid params. */
#define DLV_REASON_MAX 1024

/* What an answer names. */
typedef struct dlv_ref {
    uint64_t id;
    uint32_t attempt;
} dlv_ref;

/* Starts the attempt of value v (borrowed: the record keeps its own copy,
 * made here, so v stays the caller's to answer with and free) that an
 * acknowledged receive took from o's channel as hold, for session sid
 * (s: its session, NULL when detached), expiring after wait_ms.  Returns
 * 0 with *ref, or -1 (out of memory: the value went back to the channel,
 * v is untouched). */
int dlv_begin(obj *o, const hval *v, const rt_chan_hold *hold, sess *s,
              int64_t wait_ms, dlv_ref *ref);

/* The four calls on a delivery in flight of o named by id: 0, or
 * PROTO_R_NOT_PENDING when id names no attempt in flight of o. */
int dlv_ack(obj *o, uint64_t id);
int dlv_nack(obj *o, uint64_t id, int64_t delay_ms, const char *reason);
/* wait_ms < 0: the delivery's own; *used gets the one applied. */
int dlv_touch(obj *o, uint64_t id, int64_t wait_ms, int64_t *used);
int dlv_term(obj *o, uint64_t id, const char *reason);

/* The dispatcher's session-end hook: every delivery s holds is
 * redelivered (or dead-lettered after its last attempt). */
void dlv_session_end(sess *s);
/* o was dropped: every delivery of it ends (its waiting unbuffered
 * senders complete), their records go. */
void dlv_chan_dropped(obj *o);
/* Every channel's hold hook (rt_chan_set_hold_hook, arg: its obj): a
 * delivery begins (the record is made, and logged with the buffer's GET
 * in one effect) or a plain receive ends one. */
void dlv_hook(void *arg, bool taken, rt_chan_hold_ev *ev);

/* The snapshot (hchan_snap): dlv_snap_take copies o's live deliveries,
 * called under the channel's lock before it reads the channel's LSN, so
 * the copy holds every delivery that LSN covers; dlv_snap_emit writes
 * them as dlv_inflight records tagged lsn.  NULL is an empty copy. */
typedef struct dlv_snap dlv_snap;
dlv_snap *dlv_snap_take(obj *o);
bool dlv_snap_failed(const dlv_snap *s);
int dlv_snap_emit(const dlv_snap *s, obj *o, void *snap, uint64_t lsn);
void dlv_snap_free(dlv_snap *s);

/* dlv_persist.c: the log records of a delivery (no-ops without a log).
 * taken: a value becomes a delivery (attempt 1), with the buffer's GET
 * when from_buf; attempt: a later attempt begins; redeliver: requeued
 * (the last reason), not before not_before_ms (wall clock; 0: now); end:
 * acknowledged (dead false) or dead-lettered. */
void dlvp_taken(obj *o, uint64_t seq, const char *text, size_t n,
                bool from_buf);
void dlvp_attempt(obj *o, uint64_t seq, uint64_t id, uint32_t attempt,
                  int64_t wait_ms);
void dlvp_touch(obj *o, uint64_t seq, int64_t wait_ms);
void dlvp_redeliver(obj *o, uint64_t seq, const char *reason, int64_t delay_ms);
void dlvp_end(obj *o, uint64_t seq, bool dead, const char *reason);
/* The wall-clock millisecond a deadline in_ns from now falls in, rounded
 * up: a node that restores it (a cluster's new leader) then never fires
 * it before the wait the worker was promised (rounded down, it did, by
 * up to a millisecond: the Jepsen early check). */
int64_t dlvp_deadline_ms(int64_t in_ns);
/* A cluster's new leader: a delivery still in flight keeps its id (id,
 * attempts) and expires at deadline_ms (wall clock; past: at once). */
int dlv_restore_inflight(obj *o, uint64_t seq, uint64_t id, uint32_t attempts,
                         int64_t deadline_ms, const char *text, size_t n,
                         const char *reason);
/* A start with a data_dir (its token epoch's first token), or a cluster's
 * new leader before it restores anything (its term's, epoch_token(term,
 * 1)): ids issued from here on are at least floor.
 * Only the leader of a term issues ids, so each term's lie between its
 * base and the next term's: a new leader never issues an id a predecessor
 * issued, even one whose delivery has ended (raised only above the ids
 * still in flight, it did, and a worker's late ack of the old delivery
 * acknowledged the new one: its value was lost). */
void dlv_id_floor(uint64_t floor);
/* Recovery's end: a delivery restored as requeued, with its history. */
int dlv_restore(obj *o, uint64_t seq, uint32_t attempts, const char *text,
                size_t n, const char *reason);

/* runtime.stats' deliveries. */
typedef struct dlv_stats {
    int64_t inflight, redelivered, dead_letters, dropped;
} dlv_stats;
void dlv_stats_get(dlv_stats *st);

#endif
