/*
 * persist_repl.c - durability's cluster mode (issue 19): with `cluster`
 * set, the effect records go to raft (repl.h) instead of the local log.
 *
 * Tickets play the role the log's LSNs play under fsync = always.  The
 * records of a loop turn, and the answers built during it, belong to the
 * open ticket T.  At the end of the turn (persist_flush) T is closed: its
 * records become ONE raft entry (repl_propose), or, when the turn only
 * read, one shared barrier (repl_barrier).  When that entry commits,
 * `committed` becomes T and the sessions' gate (session_gate.c) releases
 * every answer marked with T or less.  Tickets are submitted under pr_mu
 * in order, and raft completes entries in log order, so `committed` only
 * moves forward over whole tickets.
 *
 * Followers apply committed entries on the raft thread through
 * persist__apply (the path recovery uses).  Only the serving leader emits
 * effects; anything else that would emit (the raft thread applying, a
 * node not leading) is dropped.  A leader that loses its place rebuilds:
 * every session ends, the state is dropped and rebuilt from the copy of
 * the committed state (persist_shadow.c) with raft running on, and own
 * batches proposed before count as anyone's from then on (repl.h, 2).
 * What requests ask of the cluster (status, membership, transfers) is
 * persist_repl_admin.c's.
 */
#include "persist.h"
#include "dlv.h"
#include "epoch.h"
#include "holds.h"
#include "repl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static repl_node *pr_node;
static repl_config pr_cfg;
static cluster pr_cluster;
static char pr_dir[4096];

static pthread_mutex_t pr_mu = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *pr_buf; /* the open ticket's encoded records (pr_mu) */
static size_t pr_len, pr_cap;
static uint64_t pr_ticket = 1; /* the open ticket (pr_mu) */
static bool pr_used;           /* an answer waits on it (pr_mu) */
static _Atomic uint64_t pr_committed;
static _Atomic bool pr_serving;
static _Atomic uint64_t pr_appends; /* records taken, ever (snapshot check) */
static _Atomic uint64_t pr_term;
static _Atomic bool pr_rebuild;   /* deposed: rebuild at the next poll */
static _Atomic bool pr_failed;    /* a ticket failed: hold every answer */
static _Atomic uint64_t pr_kicks; /* times sessions had to end */
/* The first ticket since the last rebuild: earlier ones belong to ended
 * sessions and a state that was dropped, whatever becomes of them. */
static _Atomic uint64_t pr_epoch = 1;
/* Rebuilt while raft still leads the same term: serve again once every
 * earlier batch of ours is applied or failed (persist_poll). */
static bool pr_resume;
/* The copy could not rebuild the state: raft restarts (persist_poll, out
 * of repl_drain's callbacks). */
static bool pr_restart;
/* The term whose decisions the live state holds (FSM lock): set when this
 * node starts serving, 0 again once a rebuild made the state the log's. */
static uint64_t pr_decided;
static pthread_mutex_t pr_poll_mu = PTHREAD_MUTEX_INITIALIZER;

/* Set on the raft thread inside the FSM hooks: effects the builders emit
 * there are the log's own, never new ones. */
static __thread bool pr_in_fsm;
/* Set while the FSM's snapshot walks the objects (persist_snap_emit). */
static __thread struct pr_snap *pr_snap_tls;

bool persist__cluster;

bool persist_clustered(void)
{
    return persist__cluster;
}

bool persist_may_decide(void)
{
    return !persist__cluster || atomic_load(&pr_serving);
}

uint64_t persist_kicks(void)
{
    return atomic_load(&pr_kicks);
}

/* ------------------------------------------------------------------ */
/* The leader's side: records and tickets                             */
/* ------------------------------------------------------------------ */

void persist__repl_append_group(const eff_rec *recs, size_t nrec)
{
    size_t n = 0, k;
    bool first;

    if (pr_in_fsm || !atomic_load(&pr_serving))
        return;
    for (size_t i = 0; i < nrec; i++) {
        if ((k = eff_size(&recs[i])) == 0) {
            log_error("cluster: cannot encode %s", eff_type_name(recs[i].type));
            return;
        }
        n += k;
    }
    pthread_mutex_lock(&pr_mu);
    if (!atomic_load(&pr_serving)) { /* stopped meanwhile */
        pthread_mutex_unlock(&pr_mu);
        return;
    }
    if (pr_len + n > pr_cap) {
        size_t cap = pr_cap ? pr_cap : 4096;
        while (cap < pr_len + n)
            cap *= 2;
        void *p = realloc(pr_buf, cap);
        if (!p) {
            pthread_mutex_unlock(&pr_mu);
            log_error("cluster: out of memory logging %s",
                      eff_type_name(recs[0].type));
            return;
        }
        pr_buf = p;
        pr_cap = cap;
    }
    first = pr_len == 0;
    /* One lock hold: a group's records always share one raft entry. */
    for (size_t i = 0; i < nrec; i++)
        pr_len += eff_encode(&recs[i], pr_buf + pr_len);
    atomic_fetch_add(&pr_appends, 1);
    pthread_mutex_unlock(&pr_mu);
    /* An effect no answer follows (a lease ends, a session ends) must
     * still reach raft: the I/O threads' poll closes the ticket. */
    if (first)
        persist__wake();
}

void persist__repl_append(const eff_rec *r)
{
    persist__repl_append_group(r, 1);
}

uint64_t persist__repl_gate(void)
{
    uint64_t t;

#ifdef CHAND_UNSAFE_ACK_BEFORE_COMMIT
    /* make UNSAFE_ACK_BEFORE_COMMIT=1: answers leave before raft commits,
     * so that the cluster checker can be seen to catch the loss. */
    return 0;
#endif
    if (!atomic_load(&pr_serving))
        return 0; /* not_leader and the like reveal no state */
    pthread_mutex_lock(&pr_mu);
    pr_used = true;
    t = pr_ticket;
    pthread_mutex_unlock(&pr_mu);
    return t;
}

uint64_t persist__repl_durable(void)
{
    return atomic_load(&pr_committed);
}

static void pr_done(void *arg, int status, uint64_t index)
{
    uint64_t t = (uint64_t)(uintptr_t)arg, c;
    (void)index;

    if (t < atomic_load(&pr_epoch))
        return;
    if (status != 0) {
        log_warn("cluster: ticket %llu failed: %s; ending sessions",
                 (unsigned long long)t, repl_strerror(status));
        atomic_store(&pr_failed, true);
        atomic_store(&pr_rebuild, true);
        return;
    }
    /* After a failed ticket nothing is released until the rebuild ended
     * the sessions: a later ticket of a new term could commit while the
     * failed one's effects never do. */
    if (atomic_load(&pr_failed))
        return;
    c = atomic_load(&pr_committed);
    while (t > c && !atomic_compare_exchange_weak(&pr_committed, &c, t))
        ;
    persist__wake();
}

void persist__repl_flush(void)
{
    repl_record rec;
    uint64_t t;
    int rc;

    if (!pr_node)
        return;
    pthread_mutex_lock(&pr_mu);
    if (pr_len == 0 && !pr_used) {
        pthread_mutex_unlock(&pr_mu);
        return;
    }
    t = pr_ticket++;
    pr_used = false;
    if (pr_len > 0) {
        rec.data = pr_buf;
        rec.len = pr_len;
        rc = repl_propose(pr_node, &rec, 1, pr_done, (void *)(uintptr_t)t);
        pr_len = 0;
    } else {
        rc = repl_barrier(pr_node, pr_done, (void *)(uintptr_t)t);
    }
    pthread_mutex_unlock(&pr_mu);
    if (rc != 0) {
        log_error("cluster: cannot submit ticket %llu: %s",
                  (unsigned long long)t, repl_strerror(rc));
        atomic_store(&pr_failed, true);
        atomic_store(&pr_rebuild, true);
        persist__wake();
    }
}

/* ------------------------------------------------------------------ */
/* The FSM (raft thread)                                              */
/* ------------------------------------------------------------------ */

/* On the raft thread, FSM lock held: the live state holds decisions of a
 * term this node no longer serves.  A deposed leader keeps them until its
 * rebuild (an I/O thread's next poll) throws them away: effects whose
 * entries failed, and some that were never logged at all (a request past
 * the dispatcher's leader check as serving stopped, its records dropped).
 * That state is not the log's at any index. */
static bool pr_stale(void)
{
    uint64_t term;

    if (!pr_decided)
        return false;
    return !repl_fsm_leading(pr_node, &term) || term != pr_decided ||
           !atomic_load(&pr_serving) || atomic_load(&pr_rebuild);
}

/* Applies every record of the frames in p[0..n). */
static int pr_apply_frames(const uint8_t *p, size_t n)
{
    size_t off = 0, used;
    eff_rec r;

    while (off < n) {
        int rc = eff_decode(p + off, n - off, &r, &used);
        if (rc != 0) {
            log_error("cluster: malformed record at %zu: %s", off,
                      strerror(-rc));
            return -1;
        }
        if (r.type != EFF_SNAP_BEGIN && r.type != EFF_SNAP_END &&
            persist__apply(NULL, &r, 0) != 0)
            return -1;
        off += used;
    }
    return 0;
}

static int pr_fsm_apply(void *arg, uint64_t index, const repl_record *recs,
                        size_t n, bool own)
{
    int rc = 0;
    bool skip = own || pr_stale();
    (void)arg;

    /* own: the leader applied its effects when it decided.  Stale: the
     * rebuild replaces the live state by the copy, which gets the batch;
     * applied to the stale one it only hands values to ending sessions
     * and reports drifts that are not the log's. */
    pr_in_fsm = true;
    for (size_t i = 0; i < n && rc == 0 && !skip; i++)
        rc = pr_apply_frames(recs[i].data, recs[i].len);
    pr_in_fsm = false;
    if (rc != 0)
        log_error("cluster: entry %llu cannot be applied: this node's state "
                  "no longer follows the log (fsm_errors); it stops applying",
                  (unsigned long long)index);
    /* Kept once applied: raft applies a failed batch again later. */
    for (size_t i = 0; i < n && rc == 0; i++)
        persist__shadow_batch(recs[i].data, recs[i].len);
    return rc;
}

typedef struct pr_snap {
    uint8_t *p;
    size_t len, cap;
    int rc;
} pr_snap;

int persist__repl_snap_emit(eff_rec *r)
{
    pr_snap *s = pr_snap_tls;
    size_t n = eff_size(r);

    if (!s || n == 0)
        return -1;
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 65536;
        while (cap < s->len + n)
            cap *= 2;
        void *p = realloc(s->p, cap);
        if (!p)
            return -1;
        s->p = p;
        s->cap = cap;
    }
    eff_encode(r, s->p + s->len);
    s->len += n;
    return 0;
}

bool persist__repl_snapping(void)
{
    return pr_snap_tls != NULL;
}

static void pr_snap_one(obj *o, void *arg)
{
    pr_snap *s = arg;

    if (s->rc == 0 && o->ops->snap && !atomic_load(&o->dropped))
        s->rc = o->ops->snap(o, s);
}

static int64_t pr_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* After a walk that changes made useless, the next one waits (raft thread
 * only): raft asks again after every apply, and a busy leader draining a
 * queue of 100k values spent all its CPU walking it, a few values a time
 * (a Jepsen run's drain, at 150 receives a second). */
static int64_t pr_snap_next_ms;

static int pr_fsm_snapshot(void *arg, uint64_t index, void **data, size_t *len)
{
    pr_snap s = {0};
    int64_t t0;
    (void)arg;
    (void)index;

    /* The leader's state runs ahead of raft's while a ticket is open or
     * proposed (or failed: repl_in_flight): ask again later.  Both under
     * pr_mu, which persist__repl_flush holds while it moves the open
     * ticket to raft: checked apart, a ticket flushed between the two
     * checks passed both, and the snapshot held its effects at an index
     * before their entry, which a restore then applied again (a send
     * queued twice). */
    /* A deposed leader's state is no index's (pr_stale): written, it
     * would become the copy its rebuild replays and the snapshot a
     * restart loads, a state the log never had. */
    if (pr_stale())
        return -EBUSY;
    pthread_mutex_lock(&pr_mu);
    bool open = pr_len > 0 || repl_in_flight(pr_node);
    uint64_t before = atomic_load(&pr_appends);
    pthread_mutex_unlock(&pr_mu);
    if (open) {
        /* The state is ahead of raft's: hold requests for a moment. */
        if (atomic_load(&pr_serving) && pr_mono_ms() >= pr_snap_next_ms)
            persist__hold_start();
        return -EBUSY;
    }
    /* A follower keeps the deliveries in flight aside (they live on the
     * leader): the objects' snapshot would miss them. */
    if (dlv__restore_pending() > 0)
        return -EBUSY;
    t0 = pr_mono_ms();
    if (t0 < pr_snap_next_ms)
        return -EBUSY;
    persist__hold_walk();
    pr_snap_tls = &s;
    reg_foreach(NULL, pr_snap_one, &s);
    pr_snap_tls = NULL;
    if (s.rc != 0 || atomic_load(&pr_appends) != before) {
        /* Ten times the walk's own time, within 50 ms-1 s: a tenth of
         * the thread at most, and still a try every second for the quiet
         * moment a busy leader needs (a longer wait left its log, and a
         * restart's replay, growing). */
        int64_t took = pr_mono_ms() - t0, b = 10 * took;
        b = b < 50 ? 50 : b > 1000 ? 1000 : b;
        pr_snap_next_ms = t0 + took + b;
        free(s.p);
        persist__hold_end();
        return s.rc != 0 ? -ENOMEM : -EBUSY;
    }
    persist__hold_end();
    if (!s.p && !(s.p = malloc(1)))
        return -ENOMEM;
    persist__shadow_snapshot(s.p, s.len);
    *data = s.p;
    *len = s.len;
    return 0;
}

static void pr_collect(obj *o, void *arg)
{
    json_t *names = arg;
    json_array_append_new(names, json_string(o->name));
}

/* Drops every object (a restore, a rebuild). */
static void pr_drop_all(void)
{
    json_t *names = json_array();
    size_t i;
    json_t *v;

    if (!names)
        return;
    reg_foreach(NULL, pr_collect, names);
    json_array_foreach(names, i, v)
    {
        /* Forced: a held lock refused a plain drop and kept its holds
         * through the rebuild, so the replay skipped the committed
         * grants and the node served a lock state the log never had
         * (leased holds overlapping across failovers in Jepsen runs). */
        reg_drop_forced(json_string_value(v));
        dlv__restore_drop(json_string_value(v));
    }
    json_decref(names);
}

static int pr_fsm_restore(void *arg, const void *data, size_t len)
{
    int rc;
    (void)arg;

    pr_in_fsm = true;
    pr_drop_all();
    persist__shadow_snapshot(data, len);
    rc = pr_apply_frames(data, len);
    pr_in_fsm = false;
    return rc;
}

/* ------------------------------------------------------------------ */
/* Leadership                                                         */
/* ------------------------------------------------------------------ */

static void pr_wakeup(void *arg)
{
    (void)arg;
    persist__wake();
}

/* This node serves as the leader of `term` from now on. */
static void pr_become_leader(uint64_t term)
{
    /* Tokens strictly increase across failovers: the new leader's first
     * entry raises every node's token floor to its term's epoch (terms
     * only grow, and a node leads one term at most). */
    eff_rec r = {.type = EFF_TOKEN_EPOCH};
    r.u.epoch.epoch = term;
    hold_token_floor(epoch_token(term, 0));
    dlv_id_floor(epoch_token(term, 1));
    reg_name_floor(epoch_token(term, 1));
    pr_resume = false;
    /* Under the FSM lock from before the first decision: a snapshot
     * never sees this term's decisions without pr_decided. */
    repl_fsm_lock(pr_node);
    pr_decided = term;
    atomic_store(&pr_serving, true);
    persist__repl_append(&r);
    /* What followers only recorded comes to life on the leader:
     * deliveries in flight stay in flight under their ids until their
     * deadlines (then they are redelivered), pending timers are armed
     * (overdue ones fire at once, once).  Under the FSM lock: the raft
     * thread may still be applying entries (this node's batches from
     * before a rebuild count as anyone's), and those records go to the
     * same tables; unlocked, this freed names the raft thread was
     * comparing (ASan, a Jepsen run): the likely cause of a node that
     * restored a channel with another channel's values. */
    dlv__restore_leader();
    htimer__restart();
    repl_fsm_unlock(pr_node);
    log_info("cluster: node %llu leads term %llu",
             (unsigned long long)pr_cluster.peers[pr_cluster.self].id,
             (unsigned long long)term);
}

static bool pr_do_rebuild(void);

static void pr_on_role(void *arg, bool serving, uint64_t term,
                       uint64_t leader_id)
{
    (void)arg;
    atomic_store(&pr_term, term);
    if (serving) {
        /* Deposed and elected again since the last poll: the old term's
         * state goes first. */
        if (atomic_exchange(&pr_rebuild, false) && !pr_do_rebuild())
            return;
        if (!atomic_load(&pr_serving) && !pr_restart)
            pr_become_leader(term);
    } else if (atomic_load(&pr_serving)) {
        log_warn("cluster: no longer leader (term %llu, leader %llu)",
                 (unsigned long long)term, (unsigned long long)leader_id);
        atomic_store(&pr_rebuild, true);
    }
}

static int pr_start_node(char *err, size_t errlen)
{
    return repl_start(&pr_cfg, &pr_node, err, errlen);
}

/* The last resort, when the copy of the committed state was lost (out of
 * memory): raft stops and starts again on the same data_dir, which
 * replays its snapshot and committed entries. */
static void pr_restart_node(void)
{
    char err[256];

    repl_stop(pr_node);
    pr_node = NULL;
    pr_in_fsm = true;
    pr_drop_all();
    persist__shadow_free();
    pr_in_fsm = false;
    pr_decided = 0; /* raft stopped: no hook runs until the replay */
    if (pr_start_node(err, sizeof err) != 0) {
        log_error("cluster: cannot restart replication: %s", err);
        exit(1); /* a node that cannot follow must not serve */
    }
    log_info("cluster: state dropped; replaying the raft log");
}

/* The deposed leader's rebuild (see the top): on an I/O thread, from
 * repl_drain's callbacks or after them.  Returns false when it has to be
 * done by restarting raft (pr_restart). */
static bool pr_do_rebuild(void)
{
    repl_status st;
    int rc;

    /* The kick is counted before the node stops serving: an answer whose
     * gate sees it not serving sees the kick too, and is held until its
     * session ends (session_gate.c), never sent ungated. */
    atomic_fetch_add(&pr_kicks, 1);
    atomic_store(&pr_serving, false);
    atomic_store(&pr_failed, false); /* the sessions that waited end */
    persist__wake();                 /* every I/O thread ends its sessions */
    pthread_mutex_lock(&pr_mu);
    pr_len = 0;
    pr_used = false;
    atomic_store(&pr_epoch, pr_ticket);
    pthread_mutex_unlock(&pr_mu);
    repl_fsm_lock(pr_node);
    pr_in_fsm = true; /* the drops and replays are not effects to log */
    pr_drop_all();
    rc = persist__shadow_replay(pr_apply_frames);
    pr_in_fsm = false;
    if (rc == 0) {
        repl_new_origin(pr_node);
        pr_decided = 0; /* the log's state again */
    }
    repl_fsm_unlock(pr_node);
    if (rc != 0) {
        log_error("cluster: cannot rebuild from the committed state in "
                  "memory (%s); restarting replication",
                  rc == -ENOMEM ? "out of memory" : "a record failed");
        pr_restart = true;
        return false;
    }
    repl_status_get(pr_node, &st);
    pr_resume = st.serving;
    log_info("cluster: state rebuilt from committed entries (applied %llu)",
             (unsigned long long)st.last_applied);
    return true;
}

void persist_poll(void)
{
    if (!pr_node || pthread_mutex_trylock(&pr_poll_mu) != 0)
        return;
    repl_drain(pr_node);
    if (atomic_exchange(&pr_rebuild, false))
        pr_do_rebuild();
    if (pr_restart) {
        pr_restart = false;
        pr_resume = false;
        pr_restart_node();
    }
    if (pr_resume && !atomic_load(&pr_serving) && !repl_in_flight(pr_node)) {
        /* Every batch of the old origin is applied or failed: the state
         * is the log's, and this node may decide again if it still leads
         * (otherwise an on_role event brings it back when it does). */
        repl_status st;
        repl_status_get(pr_node, &st);
        pr_resume = false;
        if (st.serving)
            pr_become_leader(st.term);
    }
    pthread_mutex_unlock(&pr_poll_mu);
    persist__repl_flush();
}

/* ------------------------------------------------------------------ */
/* Start, stop, status                                                */
/* ------------------------------------------------------------------ */

int persist__repl_start(const conf *c, char *err, size_t errlen)
{
    int rc;

    if (!c->data_dir[0]) {
        snprintf(err, errlen, "cluster needs data_dir (the raft log)");
        return -1;
    }
    rc = cluster_parse(&pr_cluster, c->cluster, c->node_id, err, errlen);
    if (rc != 0)
        return -1;
    if (c->port != 0 && c->port != cluster_self(&pr_cluster)->client_port)
        log_warn("cluster: port %d differs from node %s's client port %u in "
                 "the cluster setting, which not_leader answers name",
                 c->port, c->node_id,
                 (unsigned)cluster_self(&pr_cluster)->client_port);
    char manifest[4200];
    snprintf(manifest, sizeof manifest, "%s/MANIFEST", c->data_dir);
    if (access(manifest, F_OK) == 0)
        log_warn("cluster: %s holds a single node's log, which a cluster "
                 "node ignores: its state comes from the raft log only",
                 c->data_dir);
    snprintf(pr_dir, sizeof pr_dir, "%s", c->data_dir);
    pr_cfg.cluster = &pr_cluster;
    pr_cfg.data_dir = pr_dir;
    pr_cfg.fsm.apply = pr_fsm_apply;
    pr_cfg.fsm.snapshot = pr_fsm_snapshot;
    pr_cfg.fsm.restore = pr_fsm_restore;
    pr_cfg.election_timeout_ms = (unsigned)c->election_timeout_ms;
    pr_cfg.heartbeat_timeout_ms = (unsigned)c->election_timeout_ms / 10;
    pr_cfg.join = c->cluster_join != 0;
    /* libraft 0.15 crashes a follower (strlen of a NULL leader address in
     * its InstallSnapshot reply) when the leader changes while the
     * follower installs a snapshot.  Keeping a long tail of entries after
     * each snapshot lets a node that was down for seconds catch up from
     * the log, so installs (and that window) become rare. */
    pr_cfg.snapshot_threshold = 4096;
    pr_cfg.snapshot_trailing = 32768;
    pr_cfg.wakeup = pr_wakeup;
    pr_cfg.on_role = pr_on_role;
    persist__cluster = true;
    if (pr_start_node(err, errlen) != 0) {
        persist__cluster = false;
        cluster_free(&pr_cluster);
        return -1;
    }
    log_info("cluster: node %s of %zu, raft log in %s/raft", c->node_id,
             pr_cluster.n, c->data_dir);
    return 0;
}

void persist__repl_stop(void)
{
    if (!persist__cluster)
        return;
    atomic_store(&pr_serving, false);
    repl_stop(pr_node);
    pr_node = NULL;
    persist__shadow_free();
    pthread_mutex_lock(&pr_mu); /* a lease's end may still be appending */
    free(pr_buf);
    pr_buf = NULL;
    pr_len = pr_cap = 0;
    pthread_mutex_unlock(&pr_mu);
    cluster_free(&pr_cluster);
}

repl_node *persist__repl_node(void)
{
    return pr_node;
}

uint64_t persist__repl_self_id(void)
{
    return pr_cluster.peers[pr_cluster.self].id;
}
