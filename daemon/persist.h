/*
 * persist.h - durability's one narrow interface for the handlers (issue
 * 15): start-up (epoch, recovery through the registry), the effects the
 * handlers emit, the write gate on a full disk, and what the sessions need
 * to hold answers under fsync=always.  Everything is a no-op costing one
 * branch when data_dir is empty (state in memory only).
 *
 * With `cluster` set the same effects go to raft instead of the local log
 * (persist_repl.c): a loop turn's records become one raft entry, answers
 * wait for its commit as they wait for fdatasync under fsync = always
 * (tickets play the LSNs), and followers apply the committed records
 * through persist__apply, the path recovery uses.
 *
 * Hooks for new record types (timers, acknowledged deliveries): emit them
 * with a persist_* function that builds the eff_rec and calls the static
 * persist_append (one path for the log and for raft), and rebuild them in
 * persist__apply's switch (recovery and followers alike).  Anything that
 * DECIDES (a timer firing, a delivery's deadline, a lease's end) must first
 * ask persist_may_decide(): on a follower the leader decides, and the
 * follower only applies what it decided.
 *
 * Per object, effects are appended in the order they happen in memory:
 * channels through the runtime's observer (under the channel's lock: a
 * value entering or leaving the buffer, the close), the other families
 * under persist_lock(o) around "change, append".
 */
#ifndef CHAND_PERSIST_H
#define CHAND_PERSIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon.h"
#include "wal.h"

/* The open log, or NULL (in memory; during recovery; in a cluster). */
extern wal *persist__wal;
/* True when effects are emitted (a log or a cluster). */
extern bool persist__on;
/* True when the node is in a cluster (persist_repl.c). */
extern bool persist__cluster;
/* True when answers wait for the log: written to the kernel, on disk
 * (fsync = always) or committed (a cluster). */
extern bool persist__gate;

/* Returns the open log, or NULL.  An acquire load: it is set once
 * recovery is done, while recovered leases and timers may already be
 * firing on other threads. */
static inline wal *persist__w(void)
{
    return __atomic_load_n(&persist__wal, __ATOMIC_ACQUIRE);
}

/* Returns true when effects are logged. */
static inline bool persist_on(void)
{
    return __atomic_load_n(&persist__on, __ATOMIC_ACQUIRE);
}

/* Returns true when this node may decide (a select's choice, a timer, a
 * lease's end): always, but on a cluster node that is not the serving
 * leader.  Any thread. */
bool persist_may_decide(void);
/* Returns true in a cluster. */
bool persist_clustered(void);
/* Runs the cluster's completions, a deposed leader's rebuild and the
 * turn's proposal; called by every I/O thread's durable event.  Cheap
 * and a no-op outside a cluster. */
void persist_poll(void);
/* On a cluster's leader waiting for a quiet moment to take a snapshot:
 * the milliseconds its I/O threads hold new requests for at most, else 0
 * (persist_hold.c).  Any thread; one atomic load when there is no hold. */
int64_t persist_holding(void);
/* Counts the times a cluster node ended every session (leadership lost):
 * each I/O thread ends its sessions when it sees the count move. */
uint64_t persist_kicks(void);
/* Writes the leader's client address into addr; returns 0, or -1 (no
 * leader known, not a cluster). */
int persist_leader(char *addr, size_t len);
/* cluster.status's result (new), or json_null() outside a cluster. */
json_t *persist_cluster_status(void);
/* cluster.add (what 0: id, raft and client addresses), cluster.remove (1)
 * and cluster.transfer (2: id, 0 for any): finishes r once raft did. */
void persist_cluster_change(dreq *r, int what, uint64_t id, const char *raft,
                            const char *client);
/* Fills the cluster figures of *sn. */
void persist_cluster_stats(stats_snap *sn);

/* persist_repl.c's side of persist.c (internal). */
/* srv_durable_wake() unless persist_quiesce() ran (any thread). */
void persist__wake(void);
/* persist_hold.c, from the cluster's snapshot hook (raft thread): start a
 * hold (at most once a second), make the one on last a walk's whole
 * length, end it (the held sessions go on); and the holds started. */
void persist__hold_start(void);
void persist__hold_walk(void);
void persist__hold_end(void);
uint64_t persist__holds(void);
int persist__repl_start(const conf *c, char *err, size_t errlen);
void persist__repl_stop(void);
void persist__repl_append(const eff_rec *r);
/* Appends n records as one effect (they share one raft entry). */
void persist__repl_append_group(const eff_rec *recs, size_t n);
uint64_t persist__repl_gate(void);
uint64_t persist__repl_durable(void);
void persist__repl_flush(void);
bool persist__repl_snapping(void);
int persist__repl_snap_emit(eff_rec *r);
/* persist_repl_admin.c's view of the node: its raft node (NULL without a
 * cluster) and its id. */
struct repl_node *persist__repl_node(void);
uint64_t persist__repl_self_id(void);
/* persist_shadow.c: the committed state's copy (under the FSM lock). */
void persist__shadow_batch(const void *data, size_t len);
void persist__shadow_snapshot(const void *data, size_t len);
int persist__shadow_replay(int (*apply)(const uint8_t *p, size_t n));
void persist__shadow_free(void);
/* Applies one record to the state (recovery's and followers' path). */
int persist__apply(void *arg, const eff_rec *r, int from_snapshot);

/* With c->data_dir set: bumps the epoch, recovers (objects rebuilt
 * through the registry), logs the epoch and raises the token counter
 * above it.  Before listening.  Returns 0 (also when data_dir is empty),
 * or -1 with a message in err (damage: file, offset and the repair). */
int persist_start(const conf *c, char *err, size_t errlen);
/* Before the server is freed: the log's durability callback stops
 * waking its I/O threads. */
void persist_quiesce(void);
/* Writes and fsyncs what is pending and closes the log.  After the server
 * is freed (its sessions' last flushes use the log). */
void persist_stop(void);
/* chand --repair: repairs c->data_dir and prints the report.  Returns the
 * exit code. */
int persist_repair(const conf *c);

/* Fills the durability figures of *sn (stats.c). */
void persist_stats(stats_snap *sn);

/* Stripe lock around "change, append" for the families without a lock of
 * their own (map, atomic, wg); nothing when not persisting. */
void persist_lock(obj *o);
void persist_unlock(obj *o);

/* Called by hchan_init: logs the make and attaches the observer. */
void persist_chan_made(obj *o, rt_chan *c, size_t cap, const char *elem,
                       uint32_t max_deliver, const char *dead_letter);
/* Called by reg_drop under the registry lock. */
void persist_drop(obj *o);
/* Effects (o's name; strings borrowed). */
void persist_map_store(obj *o, const char *k, size_t kl, const json_t *v);
void persist_map_delete(obj *o, const char *k, size_t kl);
void persist_map_clear(obj *o);
void persist_atomic_set(obj *o, int64_t v);
void persist_wg_set(obj *o, int64_t v);
void persist_once_done(obj *o, const json_t *value);
/* A leased hold's grant or release (holds.c, under its lock). */
void persist_hold(obj *o, const eff_rec *r);
/* A delivery's records, n as one effect (dlv_persist.c: under the
 * channel's lock or dlv.c's, as the change they record). */
void persist_dlv(obj *o, const eff_rec *recs, size_t n);

/* Timers (h_timer_dur.c): appends r; returns its LSN, 0 when not
 * logged. */
uint64_t persist_timer(const eff_rec *r);
/* A timer's firing: the decided r (borrowed until the end call) goes in
 * with the push the firing's send makes onto a channel (the channel's
 * observer, on this thread) as one group, or alone at
 * persist_timer_fire_end when the send pushed nothing (a hand-off to a
 * waiting receiver, a full ticker channel, an afterfunc).  _end returns
 * r's LSN (0: not logged). */
void persist_timer_fire_begin(const eff_rec *r);
uint64_t persist_timer_fire_end(void);

/* Returns false after failing r (reason limit, "disk full ...") while the
 * log cannot be written; true otherwise.  For requests that change
 * state. */
bool persist_write_ok(dreq *r);

/* Set while persist_write_ok answers a refusal: it reveals no state, so
 * it need not wait for the log (which cannot be written). */
extern __thread bool persist__nogate;

/* Returns the LSN an answer built now must wait for (0: none). */
static inline uint64_t persist_gate_lsn(void)
{
    if (persist__cluster)
        return persist__nogate ? 0 : persist__repl_gate();
    return persist__gate && !persist__nogate ? wal_appended_lsn(persist__w())
                                             : 0;
}
/* Returns the LSN up to which answers may reveal effects: on disk under
 * fsync=always, written to the kernel under everysec and no, committed in
 * a cluster. */
uint64_t persist_durable_lsn(void);
/* Hands the loop turn's records to the flusher (end of a turn). */
static inline void persist_flush(void)
{
    if (persist__cluster)
        persist__repl_flush();
    else if (persist__w())
        wal_flush(persist__w());
}
/* The same at the end of an I/O thread's turn, which may wait for the
 * disk itself under fsync = always (wal_flush_turn). */
static inline void persist_flush_turn(void)
{
    if (persist__cluster)
        persist__repl_flush();
    else if (persist__w())
        wal_flush_turn(persist__w());
}

/* Emits r (borrowed) into the snapshot s (an obj_ops.snap's argument),
 * tagged with lsn.  Returns 0 or -1. */
int persist_snap_emit(void *s, eff_rec *r, uint64_t lsn);

/* Recovery's builders, in the families' files (h_chan_obj.c, h_map.c,
 * h_sync.c); names NUL-terminated, strings borrowed.  Each returns 0 or
 * -1 (memory). */
int hchan__restore_make(const char *name, size_t cap, const char *elem);
int hchan__restore_push(const char *name, const char *v, size_t n);
int hchan__restore_pop(const char *name, uint64_t count, uint64_t check);
/* The check a chan_pop record carries for the value at elem (an hval),
 * and for a value's text. */
uint64_t hchan__value_check(const void *elem);
uint64_t hchan__text_check(const char *text, size_t n);
int hchan__restore_close(const char *name);
int hchan__restore_make_dlv(const char *name, size_t cap, const char *elem,
                            uint32_t max_deliver, const char *dead_letter);
/* dlv_persist.c: the delivery records, the end of recovery. */
int dlv__restore_rec(const char *name, const eff_rec *r);
void dlv__restore_drop(const char *name);
void dlv__restore_finish(void);
/* The same for a cluster's new leader: deliveries in flight at the log's
 * end stay in flight with their ids and deadlines (a worker that
 * reconnects may still ack; past deadlines redeliver at once). */
void dlv__restore_leader(void);
/* How many deliveries in flight recovery (or a cluster follower) holds
 * aside, not in any object until dlv__restore_finish. */
size_t dlv__restore_pending(void);
int hmap__restore(const char *name, const char *k, size_t kl, const char *v,
                  size_t vn, int what);
int hatomic__restore(const char *name, int64_t v);
int hlock__restore(const char *name, unsigned kind, uint64_t token,
                   int64_t end_ms, bool grant);
int hwg__restore(const char *name, int64_t v);
int honce__restore(const char *name, const char *v, size_t vn);
/* Timers (h_timer_dur.c): rebuilds one timer record; after recovery,
 * arms what was pending (overdue ones fire at once, once). */
int htimer__restore(const eff_rec *r);
void htimer__restart(void);

#endif /* CHAND_PERSIST_H */
