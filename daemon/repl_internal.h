/*
 * repl_internal.h - what the repl*.c files share: struct repl_node, the
 * op queue entries, the batch and snapshot constants, and the repl__
 * calls between the files.  Only daemon/repl*.c include it; everyone
 * else uses repl.h.
 *
 * The files:
 *  repl.c        the public calls (start, stop, propose, membership,
 *                drain, status) and raft error mapping
 *  repl_queue.c  the request and completion queues, and raft's request
 *                callbacks that complete ops
 *  repl_fsm.c    the FSM adapter: decoding batches, snapshot and restore
 *  repl_loop.c   the raft thread: its libuv loop, starting queued ops,
 *                publishing status, leadership and role events
 *  repl_read.c   the read index: leadership confirmed by a round of
 *                messages instead of a barrier entry
 *  repl_disk.c   raft_uv's disk requests, kept from overlapping where
 *                libraft 0.15 loses one
 *
 * Batch format (one raft entry per repl_propose; little-endian):
 *
 *     u32 magic "CHRB"   u32 n     u64 origin node id   u64 origin nonce
 *     n times: u32 len, len bytes
 *
 *     zero bytes up to a multiple of 8
 *
 * The origin (node id + a random nonce drawn at repl_start) lets the FSM
 * tell the batches this process proposed, and has applied already, from
 * every other one.  Snapshots are a 16-byte header ("CHRS", u32 version 1,
 * u64 length) followed by the daemon's bytes, zero-padded likewise.
 *
 * The padding is libraft 0.15's requirement, stated nowhere in raft.h: its
 * disk segments assume entry lengths that are multiples of 8, and a node
 * that reloads an unaligned entry from disk reads it shifted (found here by
 * test_repl's restart test; canonical/raft issues 189 and 304).
 */
#ifndef CHAND_REPL_INTERNAL_H
#define CHAND_REPL_INTERNAL_H

#include "repl.h"

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#define BATCH_MAGIC 0x42524843u /* "CHRB" */
#define SNAP_MAGIC 0x53524843u  /* "CHRS" */
#define SNAP_VERSION 1u
#define BATCH_HDR 24
#define SNAP_HDR 16
/* One raft entry stays well below what raft and the disk segments take. */
#define BATCH_MAX ((size_t)1 << 30)

typedef enum op_kind {
    OP_PROPOSE,
    OP_BARRIER,
    OP_ADD,
    OP_REMOVE,
    OP_TRANSFER,
    OP_ROLE,
} op_kind;

/* A request on its way through the queues (in: to the raft thread, out:
 * its completion), or a role event (OP_ROLE, out only). */
typedef struct op op;
struct op {
    op *next;
    op_kind kind;
    repl_node *node;
    repl_done_fn done;
    void *arg;
    int status;
    uint64_t index;
    struct raft_buffer buf; /* OP_PROPOSE: the encoded batch */
    uint64_t nonce;         /* OP_PROPOSE: the origin it was proposed under */
    uint64_t id;            /* OP_ADD, OP_REMOVE, OP_TRANSFER */
    char addr[CLUSTER_HOST_MAX + 8];
    bool serving; /* OP_ROLE */
    uint64_t term, leader_id;
    union {
        struct raft_apply apply;
        struct raft_change change[2]; /* add, then assign */
        struct raft_transfer transfer;
    } req;
};

/* The barriers of one wake-up share one raft_barrier. */
typedef struct barrier_group {
    struct raft_barrier req;
    repl_node *node;
    op *ops;
    /* While a read index round confirms it (repl_read.c). */
    struct barrier_group *next;
    uint64_t seq, term, idx0, since;
} barrier_group;

/* Id -> client address, for not_leader answers. */
typedef struct book_entry {
    uint64_t id;
    char client[CLUSTER_HOST_MAX + 8];
} book_entry;

/* One raft node; which thread may touch what is in repl.c's top comment. */
/* repl_disk.c's state: raft_uv's methods it wraps, what is in raft_uv's
 * hands, and the requests held back (raft thread only). */
struct repl_disk_op;
struct repl_disk {
    int (*append)(struct raft_io *io, struct raft_io_append *req,
                  const struct raft_entry entries[], unsigned n,
                  raft_io_append_cb cb);
    int (*truncate)(struct raft_io *io, raft_index index);
    int (*snapshot_put)(struct raft_io *io, unsigned trailing,
                        struct raft_io_snapshot_put *req,
                        const struct raft_snapshot *snapshot,
                        raft_io_snapshot_put_cb cb);
    void (*close)(struct raft_io *io, raft_io_close_cb cb);
    struct repl_disk_op *head, **tail; /* held, in raft's order */
    unsigned held_truncs;
    uint64_t issued;     /* appends handed to raft_uv */
    uint64_t trunc_mark; /* `issued` when the pending truncation went */
    bool trunc_pending;  /* a truncation not yet known to be done */
    bool snap_inflight;  /* a snapshot write in raft_uv's hands */
    bool broken;         /* a held truncation failed */
    bool closing, draining;
    uint64_t holds; /* truncations and snapshot writes held back, ever */
};

struct repl_node {
    /* Shared, under mu. */
    pthread_mutex_t mu;
    op *in_head, **in_tail;
    op *out_head, **out_tail;
    bool stopping;
    repl_status st;
    book_entry book[REPL_MAX_PEERS];
    size_t n_book;
    int own_in_flight; /* atomic: own batches neither applied nor failed */
    bool own_lost;     /* atomic: one of them failed (sticky, repl_in_flight) */

    /* Held by the FSM hooks and by repl_fsm_lock's caller. */
    pthread_mutex_t fsm_mu;
    /* The origin own batches carry (atomic; repl_new_origin changes it,
     * under fsm_mu, so an apply decides `own` against one value). */
    uint64_t nonce;

    /* Fixed after repl_start. */
    uint64_t id;
    repl_fsm fsm;
    void (*wakeup)(void *arg);
    void *wakeup_arg;
    repl_role_fn on_role;
    void *role_arg;
    char dir[PATH_MAX];
    char address[CLUSTER_HOST_MAX + 8];
    pthread_t thread;

    /* Raft thread only. */
    uv_loop_t loop;
    uv_async_t async;
    uv_check_t check;
    struct raft_uv_transport transport;
    struct raft_io io;
    /* raft_uv's send, which repl__io_send wraps (repl.c). */
    int (*io_send)(struct raft_io *io, struct raft_io_send *req,
                   const struct raft_message *message, raft_io_send_cb cb);
    struct raft_fsm rfsm;
    struct raft raft;
    bool closing;
    bool serving, ready_pending;
    struct raft_barrier ready_req;
    raft_term ready_term;
    bool emitted_serving;
    uint64_t emitted_leader;
    struct repl_disk disk;
    uint64_t fsm_errors;
    uint64_t snapshot_index; /* applied index of the last snapshot taken */
    /* The read index (repl_read.c): raft's listen, which repl__ri_listen
     * wraps, and the accept callback raft gave it. */
    int (*tr_listen)(struct raft_uv_transport *t, raft_uv_accept_cb cb);
    raft_uv_accept_cb raft_accept;
    struct repl_ri *ri;
    bool barrier_reads; /* repl_config's: every read takes a barrier */
    uint64_t read_rounds, read_barriers;
};

/* ---- little-endian helpers ---------------------------------------------- */

static inline void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint32_t get32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* ---- repl.c -------------------------------------------------------------- */

/* Returns the REPL_E* code (or 0) for a raft return or status code. */
int repl__map_raft(int rv);

/* ---- repl_queue.c -------------------------------------------------------- */

/* Completes o with status (releasing an OP_PROPOSE's batch). */
void repl__fail_op(repl_node *n, op *o, int status);
/* Returns 0 or -ESHUTDOWN; queues o for the raft thread; steals o. */
int repl__submit(repl_node *n, op *o);
/* raft's request callbacks: each completes its op (or group). */
void repl__apply_cb(struct raft_apply *req, int status, void *result);
void repl__barrier_cb(struct raft_barrier *req, int status);
void repl__add_cb(struct raft_change *req, int status);
void repl__remove_cb(struct raft_change *req, int status);
void repl__transfer_cb(struct raft_transfer *req);

/* ---- repl_fsm.c ---------------------------------------------------------- */

/* The raft_fsm callbacks over the daemon's repl_fsm (raft thread). */
int repl__fsm_apply(struct raft_fsm *f, const struct raft_buffer *buf,
                    void **result);
int repl__fsm_snapshot(struct raft_fsm *f, struct raft_buffer *bufs[],
                       unsigned *n_bufs);
int repl__fsm_restore(struct raft_fsm *f, struct raft_buffer *buf);

/* ---- repl_read.c --------------------------------------------------------- */

/* The transport's listen, wrapped: marked connections are read index
 * queries, the rest go to raft. */
int repl__ri_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb);
/* Confirms leadership for g's reads with a round to the voters, or falls
 * back to raft_barrier; completes g through repl__barrier_cb. */
void repl__ri_start(repl_node *n, barrier_group *g);
/* Completes confirmed groups, falls back when a round is late or
 * leadership moved (after each loop iteration and each answer). */
void repl__ri_check(repl_node *n);
/* Fails pending groups and closes the read index's handles (from
 * repl__on_raft_closed). */
void repl__ri_close(repl_node *n);
/* Frees the rest once the loop ran dry. */
void repl__ri_free(repl_node *n);

/* ---- repl_disk.c --------------------------------------------------------- */

/* Wraps n->io's append, truncate, snapshot_put and close (after
 * raft_uv_init, before raft_init). */
void repl__disk_wrap(repl_node *n);

/* ---- repl_loop.c --------------------------------------------------------- */

/* The check handle's callback: publishes status after each iteration. */
void repl__on_check(uv_check_t *h);
/* raft_close's callback: closes the loop's handles. */
void repl__on_raft_closed(struct raft *r);
/* The async handle's callback: starts the queued ops (or closes). */
void repl__on_async(uv_async_t *h);
/* The raft thread's body; arg is the node. */
void *repl__node_main(void *arg);
/* Releases the loop and raft's I/O objects once every handle is closed. */
void repl__close_loop(repl_node *n);

#endif
