/*
 * repl.h - the Raft glue: one chand node of a replicated cluster, on
 * canonical's raft (libraft 0.15, libuv backend; core API only, so that
 * cowsql/raft is a relink).
 *
 * A node runs raft's libuv loop on a thread of its own.  The daemon's I/O
 * thread talks to it through this header only:
 *
 *   - repl_propose() hands over one batch of opaque records (the effect
 *     records of one loop turn, daemon/effect.h); the batch becomes ONE
 *     raft entry (one raft_apply), so a turn costs one replication round;
 *   - repl_barrier() asks for a read barrier; every barrier requested
 *     before the raft thread wakes shares one round: a read index round
 *     (repl_read.c), in which the voters confirm that this node still
 *     leads, or, failing that, one raft_barrier entry;
 *   - requests cross threads through a mutex-protected queue and a
 *     uv_async_t; their completions come back the other way, through a
 *     queue and the wakeup callback the daemon registers.  The wakeup runs
 *     on the raft thread and must only poke the I/O thread (event_active,
 *     an eventfd); the I/O thread then calls repl_drain(), which runs the
 *     completion callbacks on the I/O thread.  No daemon code but the FSM
 *     runs on the raft thread.
 *
 * The FSM (repl_fsm) is the daemon's: raft calls it on the raft thread with
 * each committed batch, in log order, on every node (apply), to write a
 * snapshot (snapshot), and to load one (restore).  The daemon's FSM is the
 * effect-record applier of daemon/wal.h.
 *
 * Notes for the integrator (how the daemon must use this, issue 19):
 *
 *  1. Apply locally, answer on commit.  The leader's I/O thread decides and
 *     applies effects at once (a select's choice must see the previous
 *     pop), collects the turn's records, calls repl_propose() once, and
 *     parks the turn's answers.  The batch's completion (status 0, with its
 *     raft index) releases them: an answer leaves only once the batch that
 *     holds its records is committed on a majority.  A read-only answer
 *     waits for repl_barrier(): its completion means that every batch
 *     proposed before it is committed and applied, so every effect the
 *     read could reveal is, and that this node still led after the read
 *     was asked.  The FSM's apply sees `own == true` for the batches this very
 *     node proposed under its current origin (repl_start, then
 *     repl_new_origin): the leader has already applied
 *     them and must skip them; followers apply everything.
 *
 *  2. A deposed leader rebuilds.  A batch that completes with REPL_ELOST
 *     may or may not commit later, and the leader's in-memory state holds
 *     effects that may never commit.  So when serving ends (on_role with
 *     serving == false after it was true), or a batch of its own fails,
 *     the daemon fails every parked answer (the client sees CHAND_ECONN as
 *     its session ends) and rebuilds its state from committed entries
 *     only, with raft still running: under repl_fsm_lock it drops the
 *     state, replays the copy it keeps of its last snapshot and of every
 *     batch applied since (own ones included), and calls repl_new_origin,
 *     so that its earlier batches, should they commit, apply like anyone
 *     else's.  (Stopping raft and starting it again on the same data_dir
 *     reread libraft 0.15's log while a truncation of the deposed tail was
 *     still settling: it refused to load, or kept a stale copy of an
 *     entry.)  The snapshot hook must describe the state at `index`
 *     exactly: a leader whose state runs ahead of what is applied
 *     (proposed, uncommitted batches) returns -EBUSY and raft asks again
 *     after a later apply.  repl_in_flight() tells whether this node has
 *     proposals not yet applied, or had one of the current origin fail
 *     (then the state is not the log's until the rebuild: every snapshot
 *     is refused).
 *
 *  3. Fencing tokens strictly increase across failovers when they come
 *     from the committed durability counter (EFF_TOKEN_EPOCH/the token
 *     counter inside the records: every node applies the same records, so a
 *     new leader continues from the last committed value; anything a
 *     deposed leader granted but never committed was never answered), or
 *     from the raft index of the grant's batch (repl_status.term and the
 *     completion's index increase monotonically across leaders).  The
 *     counter is the better fit: it is already in the records, it needs no
 *     answer to wait for an index it cannot know when it decides, and it
 *     survives restarts without raft.
 *
 *  4. Clients: a call in flight when the leader dies fails with
 *     CHAND_ECONN and is not retried silently (the first option of issue
 *     19 / Raft dissertation 6.3).  Exactly-once retries need a client
 *     session and request ids recorded in the replicated state; that is a
 *     later step, not in this module.
 *
 *  5. Leadership: on_role (run by repl_drain) reports when this node starts
 *     or stops serving as leader and when the known leader changes.  A new
 *     leader serves only after a barrier of its own term commits, so its
 *     FSM holds every entry committed by earlier leaders before the daemon
 *     decides anything.  When serving ends, sessions end (clients
 *     reconnect to the new leader).  Followers answer `not_leader` with
 *     repl_leader()'s client address.
 *
 * Threads: every repl_* call below is for the daemon's I/O thread (one
 * thread), except where it says "any thread".  The FSM hooks run on the
 * raft thread; they may take a lock the I/O thread holds for a loop turn,
 * but must never wait for the I/O thread to act, since repl_stop joins the
 * raft thread from it.
 */
#ifndef CHAND_REPL_H
#define CHAND_REPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster.h"

/* Status codes beyond the negative errno values used elsewhere. */
#define REPL_ENOTLEADER (-20001) /* this node is not the leader */
#define REPL_ELOST (-20002)      /* leadership lost: outcome unknown */

/* Raft roles, as raft_state() reports them. */
typedef enum repl_role {
    REPL_UNAVAILABLE = 0,
    REPL_FOLLOWER = 1,
    REPL_CANDIDATE = 2,
    REPL_LEADER = 3,
} repl_role;

/* One opaque record: borrowed bytes. */
typedef struct repl_record {
    const void *data;
    size_t len;
} repl_record;

/* The state machine the daemon supplies.  Every hook runs on the raft
 * thread; a non-zero return is an error raft reports (apply and restore
 * errors are fatal to the node's progress: the state would diverge). */
typedef struct repl_fsm {
    void *arg;
    /* Applies one committed batch of n records (borrowed for the call) at
     * raft index `index`.  own: proposed by this node under its current
     * origin (repl_new_origin). */
    int (*apply)(void *arg, uint64_t index, const repl_record *recs, size_t n,
                 bool own);
    /* Writes the state as of raft index `index` (everything applied so
     * far) into *data (new, malloc'd; repl steals it) and *len.  Returns
     * 0, -EBUSY to be asked again later, or another negative code. */
    int (*snapshot)(void *arg, uint64_t index, void **data, size_t *len);
    /* Replaces the whole state by a snapshot's (borrowed for the call). */
    int (*restore)(void *arg, const void *data, size_t len);
} repl_fsm;

/* Called by repl_drain for a batch, barrier, membership change or
 * transfer: status 0 or a negative code (REPL_ENOTLEADER, REPL_ELOST,
 * -ESHUTDOWN, ...), index the raft index of the committed entry (0 on
 * error). */
typedef void (*repl_done_fn)(void *arg, int status, uint64_t index);

/* Called by repl_drain when this node starts or stops serving as leader,
 * or when the known leader changes (leader_id 0: none known). */
typedef void (*repl_role_fn)(void *arg, bool serving, uint64_t term,
                             uint64_t leader_id);

typedef struct repl_config {
    const cluster *cluster; /* borrowed for repl_start; copied */
    const char *data_dir;   /* the raft log lives in data_dir/raft */
    repl_fsm fsm;
    /* Defaults when 0: election 1000 ms (the floor the issue asks of the
     * daemon), heartbeat 100 ms, snapshot every 1024 entries keeping the
     * last 128. */
    unsigned election_timeout_ms;
    unsigned heartbeat_timeout_ms;
    unsigned snapshot_threshold;
    unsigned snapshot_trailing;
    /* How long the leader waits for an InstallSnapshot before sending it
     * again; default 10 s (raft's own 30 s stalls a node that restarts
     * while a snapshot to it was in flight).  Large snapshots on slow links
     * need more. */
    unsigned install_snapshot_timeout_ms;
    /* A node that joins a running cluster (repl_add on the leader) starts
     * with join = true: it never bootstraps and waits for the leader. */
    bool join;
    /* Reads confirm leadership with a raft barrier entry each (the only
     * way before the read index, repl_read.c); for tests and A/B runs. */
    bool barrier_reads;
    /* Called on the raft thread when repl_drain has work; may be NULL
     * (then the I/O thread polls repl_drain). */
    void (*wakeup)(void *arg);
    void *wakeup_arg;
    repl_role_fn on_role; /* may be NULL */
    void *role_arg;
} repl_config;

/* Counters and membership for runtime.stats and /metrics. */
#define REPL_MAX_PEERS CLUSTER_MAX_PEERS
typedef struct repl_peer {
    uint64_t id;
    int voter;                          /* 1 voter, 0 stand-by or spare */
    char address[CLUSTER_HOST_MAX + 8]; /* raft address */
} repl_peer;

typedef struct repl_status {
    repl_role role;
    bool serving; /* leader, and its first barrier has committed */
    uint64_t id, term, commit_index, last_applied, last_index;
    uint64_t leader_id; /* 0: none known */
    /* Batches or snapshots the FSM refused, plus malformed batches.  raft
     * stops applying at the first one and retries it at the next commit:
     * the daemon should log it and stop, its state can no longer follow. */
    uint64_t fsm_errors;
    /* The applied index of the last snapshot this node took since it
     * started (0: none): a log that stops being compacted shows here. */
    uint64_t snapshot_index;
    /* Read groups the leader confirmed by a read index round, and those
     * that took a barrier entry (not leading, a late round, a later term
     * seen, or barrier_reads). */
    uint64_t read_rounds, read_barriers;
    /* Truncations and snapshot writes held back so that the two never
     * overlap in libraft 0.15's raft_uv (repl_disk.c). */
    uint64_t disk_holds;
    /* uv_hrtime() (CLOCK_MONOTONIC ns, as rt_now) of the raft thread's
     * last pass over its loop, which runs at least every heartbeat: an old
     * one means a stuck loop (a diagnostic for elections that never end). */
    int64_t refreshed_ns;
    size_t n_peers;
    repl_peer peers[REPL_MAX_PEERS];
} repl_status;

typedef struct repl_node repl_node;

/* Opens data_dir/raft (created if missing), bootstraps the configured
 * membership on a pristine directory (unless cfg->join), starts raft and
 * its thread.  Returns 0 and a new node in *out, or a negative code with a
 * sentence in err. */
int repl_start(const repl_config *cfg, repl_node **out, char *err,
               size_t errlen);

/* Stops the node: raft_close, then the loop and the thread.  Requests still
 * pending complete (0, -ESHUTDOWN or REPL_ELOST) from within this call, on
 * the calling thread; on_role is not called any more.  The wakeup must stay
 * callable until this returns.  Not from within a repl callback.  Frees n;
 * NULL is a no-op. */
void repl_stop(repl_node *n);

/* Queues one batch of n records (copied into one raft entry) for
 * raft_apply.  done runs from repl_drain once the entry is committed and
 * applied here, or failed.  Returns 0, -EINVAL (n == 0), -E2BIG, -ENOMEM
 * or -ESHUTDOWN; on error done is not called.  Any thread. */
int repl_propose(repl_node *n, const repl_record *recs, size_t nrecs,
                 repl_done_fn done, void *arg);

/* Queues a read barrier; the barriers queued before the raft thread wakes
 * share one read index round or raft_barrier.  Same contract as
 * repl_propose; done's index is the read index (the last entry when the
 * barrier was asked, all of it applied) or the barrier entry's.  Any
 * thread. */
int repl_barrier(repl_node *n, repl_done_fn done, void *arg);

/* Adds server id at raft address "host:port" as a voter (raft_add, then
 * raft_assign RAFT_VOTER once it caught up).  Leader only; done reports.
 * client_addr (may be NULL) is remembered for repl_leader's answer. */
int repl_add(repl_node *n, uint64_t id, const char *raft_addr,
             const char *client_addr, repl_done_fn done, void *arg);

/* Removes server id from the configuration (raft_remove).  Leader only. */
int repl_remove(repl_node *n, uint64_t id, repl_done_fn done, void *arg);

/* Asks the leader to hand leadership to id (0: raft picks a voter).  done
 * runs when the transfer ended; check repl_leader for the outcome. */
int repl_transfer(repl_node *n, uint64_t id, repl_done_fn done, void *arg);

/* Runs the completions and role changes that are ready, on the calling
 * thread.  Returns how many callbacks ran. */
int repl_drain(repl_node *n);

/* Returns 0 and the known leader's id and client address "host:port"
 * (from the cluster setting or repl_add on this node; "" when neither
 * names it), or -ENOENT during an election; -ENAMETOOLONG if addr is too
 * small.  addr may be NULL.  Any thread. */
int repl_leader(repl_node *n, uint64_t *id, char *addr, size_t len);

/* Copies the current status into *st.  Any thread. */
void repl_status_get(repl_node *n, repl_status *st);

/* Holds off the FSM hooks: while held, raft applies, snapshots and
 * restores nothing (its thread waits).  For a rebuild of the state from a
 * copy the daemon keeps.  Not on the raft thread. */
void repl_fsm_lock(repl_node *n);
void repl_fsm_unlock(repl_node *n);

/* Starts a new origin, with the FSM lock held, once the state was rebuilt
 * from committed entries only: batches proposed before are no longer own
 * (if they commit they apply as anyone's), and their failures no longer
 * count in repl_in_flight. */
void repl_new_origin(repl_node *n);

/* From an FSM hook only (the raft thread, which owns raft's state): true
 * if raft leads now, with its current term in *term. */
bool repl_fsm_leading(repl_node *n, uint64_t *term);

/* Returns true if batches proposed by this node are not yet applied, or
 * if one of them failed under the current origin (its effects, applied when
 * decided, may never be in the log, or only at a later index). */
bool repl_in_flight(repl_node *n);

/* Returns a static description of a status code from this module. */
const char *repl_strerror(int status);

/* Returns "leader", "follower", "candidate" or "unavailable". */
const char *repl_role_name(repl_role role);

#endif
