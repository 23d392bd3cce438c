/*
 * repl_disk.c - keeps libraft 0.15's disk requests from overlapping where
 * its raft_uv backend loses one (raft thread): a truncation and a snapshot
 * write, or two truncations, are never in raft_uv's hands at once.
 *
 * raft_uv runs both through a "barrier" that closes the open segments
 * first.  A second barrier requested while one is active is attached to no
 * segment and never fires (canonical/raft#372, fixed upstream by #435 after
 * the 0.15 Debian ships).  A lost truncation leaves the conflicting tail on
 * disk while raft's memory has the new leader's entries: a restart then
 * reloads entries that never committed, or two copies of one index (seen
 * here in a Jepsen run's kept data_dir).  A lost snapshot write leaves raft
 * waiting for it, and no snapshot is ever taken again.
 *
 * So this file wraps raft_io's append, truncate, snapshot_put and close,
 * and holds a request back while the other kind is in raft_uv's hands:
 *   - a truncation waits for a snapshot write to finish, and for an earlier
 *     truncation to take effect;
 *   - a snapshot write waits for a truncation to take effect;
 *   - an append waits only behind a held truncation (it must land after
 *     it); it may pass a held snapshot write, which covers entries already
 *     applied and so already stored.
 * A truncation's barrier blocks every append requested after it until the
 * truncation is done, so the first of those appends to complete says that
 * it took effect.  raft asks for a truncation only together with the
 * append of the leader's entries that replace the tail, so one comes.
 *
 * Held requests are released in raft's order as what they wait for
 * completes; raft sees only a slower disk.  On close, held requests are
 * cancelled as raft_uv cancels its own pending ones.
 */
#include "repl_internal.h"

#include <stddef.h>
#include <stdlib.h>

typedef enum { DOP_APPEND, DOP_TRUNCATE, DOP_SNAPSHOT } dop_kind;

struct repl_disk_op {
    struct repl_disk_op *next;
    dop_kind kind;
    struct repl_disk *d;
    struct raft_io *io;
    /* What raft_uv is given: its callbacks lead back here through data. */
    union {
        struct raft_io_append append;
        struct raft_io_snapshot_put put;
    } inner;
    void *outer; /* raft's own request */
    union {
        raft_io_append_cb append;
        raft_io_snapshot_put_cb put;
    } cb;
    const struct raft_entry *entries;
    unsigned n;
    raft_index index;
    unsigned trailing;
    const struct raft_snapshot *snapshot;
    uint64_t seq; /* an append's place among those handed to raft_uv */
};

static struct repl_disk *disk_of(struct raft_io *io)
{
    return &((repl_node *)((char *)io - offsetof(repl_node, io)))->disk;
}

static void hold(struct repl_disk *d, struct repl_disk_op *op)
{
    op->next = NULL;
    *d->tail = op;
    d->tail = &op->next;
    if (op->kind == DOP_TRUNCATE)
        d->held_truncs++;
    if (op->kind != DOP_APPEND) /* the appends only follow a truncation */
        d->holds++;
}

/* Notes that an append requested after the pending truncation completed:
 * the truncation's barrier had let it through, so the truncation is done. */
static void appended(struct repl_disk *d, const struct repl_disk_op *op)
{
    if (d->trunc_pending && op->seq > d->trunc_mark)
        d->trunc_pending = false;
}

static void drain(struct repl_disk *d);

static void append_done(struct raft_io_append *inner, int status)
{
    struct repl_disk_op *op = inner->data;
    struct repl_disk *d = op->d;
    struct raft_io_append *outer = op->outer;
    raft_io_append_cb cb = op->cb.append;

    appended(d, op);
    free(op);
    cb(outer, status);
    drain(d);
}

static void put_done(struct raft_io_snapshot_put *inner, int status)
{
    struct repl_disk_op *op = inner->data;
    struct repl_disk *d = op->d;
    struct raft_io_snapshot_put *outer = op->outer;
    raft_io_snapshot_put_cb cb = op->cb.put;

    d->snap_inflight = false;
    free(op);
    cb(outer, status);
    drain(d);
}

/* Hands an append to raft_uv; on failure the caller still owns op. */
static int issue_append(struct repl_disk *d, struct repl_disk_op *op)
{
    int rv;

    if (d->broken)
        return RAFT_IOERR;
    op->seq = ++d->issued;
    op->inner.append.data = op;
    rv = d->append(op->io, &op->inner.append, op->entries, op->n, append_done);
    if (rv != 0)
        appended(d, op); /* no later append must be awaited for nothing */
    return rv;
}

static int issue_truncate(struct repl_disk *d, struct raft_io *io,
                          raft_index index)
{
    int rv = d->truncate(io, index);

    if (rv == 0) {
        d->trunc_pending = true;
        d->trunc_mark = d->issued;
    }
    return rv;
}

static int issue_put(struct repl_disk *d, struct repl_disk_op *op)
{
    int rv;

    if (d->broken)
        return RAFT_IOERR;
    op->inner.put.data = op;
    rv = d->snapshot_put(op->io, op->trailing, &op->inner.put, op->snapshot,
                         put_done);
    if (rv == 0)
        d->snap_inflight = true;
    return rv;
}

/* Releases what may go now, in order.  A held snapshot write that must
 * still wait is stepped over by the appends behind it, never by a
 * truncation; a truncation that must wait stops the walk. */
static void drain(struct repl_disk *d)
{
    struct repl_disk_op **pp = &d->head, *op;
    int rv;

    if (d->draining || d->closing)
        return;
    d->draining = true;
    while ((op = *pp) != NULL) {
        if (op->kind == DOP_TRUNCATE && (d->snap_inflight || d->trunc_pending))
            break;
        if (op->kind == DOP_SNAPSHOT &&
            (d->snap_inflight || d->trunc_pending)) {
            pp = &op->next;
            continue;
        }
        *pp = op->next;
        if (d->tail == &op->next)
            d->tail = pp;
        switch (op->kind) {
        case DOP_TRUNCATE:
            d->held_truncs--;
            /* Appends behind a truncation that failed would write after a
             * tail that is still there: fail them, as raft_uv fails every
             * request once a write of its own failed. */
            if (issue_truncate(d, op->io, op->index) != 0)
                d->broken = true;
            free(op);
            break;
        case DOP_APPEND:
            if ((rv = issue_append(d, op)) != 0) {
                struct raft_io_append *outer = op->outer;
                raft_io_append_cb cb = op->cb.append;
                free(op);
                cb(outer, rv);
            }
            break;
        case DOP_SNAPSHOT:
            if ((rv = issue_put(d, op)) != 0) {
                struct raft_io_snapshot_put *outer = op->outer;
                raft_io_snapshot_put_cb cb = op->cb.put;
                free(op);
                cb(outer, rv);
            }
            break;
        }
    }
    d->draining = false;
}

/* A request of raft's, for hold or issue; NULL when out of memory. */
static struct repl_disk_op *new_op(struct raft_io *io, dop_kind kind,
                                   void *outer)
{
    struct repl_disk_op *op = calloc(1, sizeof *op);

    if (op != NULL) {
        op->kind = kind;
        op->d = disk_of(io);
        op->io = io;
        op->outer = outer;
    }
    return op;
}

static int disk_append(struct raft_io *io, struct raft_io_append *req,
                       const struct raft_entry entries[], unsigned n,
                       raft_io_append_cb cb)
{
    struct repl_disk *d = disk_of(io);
    struct repl_disk_op *op = new_op(io, DOP_APPEND, req);
    int rv;

    if (op == NULL)
        return RAFT_NOMEM;
    op->cb.append = cb;
    op->entries = entries;
    op->n = n;
    /* A held append always has a held truncation before it (the walk in
     * drain stops only at one), so this keeps appends in order too. */
    if (d->held_truncs > 0) {
        hold(d, op);
        return 0;
    }
    if ((rv = issue_append(d, op)) != 0)
        free(op);
    return rv;
}

static int disk_truncate(struct raft_io *io, raft_index index)
{
    struct repl_disk *d = disk_of(io);
    struct repl_disk_op *op;

    if (d->broken)
        return RAFT_IOERR;
    if (!d->snap_inflight && !d->trunc_pending && d->held_truncs == 0)
        return issue_truncate(d, io, index);
    if ((op = new_op(io, DOP_TRUNCATE, NULL)) == NULL)
        return RAFT_NOMEM;
    op->index = index;
    hold(d, op);
    return 0;
}

static int disk_snapshot_put(struct raft_io *io, unsigned trailing,
                             struct raft_io_snapshot_put *req,
                             const struct raft_snapshot *snapshot,
                             raft_io_snapshot_put_cb cb)
{
    struct repl_disk *d = disk_of(io);
    struct repl_disk_op *op = new_op(io, DOP_SNAPSHOT, req);
    int rv;

    if (op == NULL)
        return RAFT_NOMEM;
    op->cb.put = cb;
    op->trailing = trailing;
    op->snapshot = snapshot;
    if (d->snap_inflight || d->trunc_pending || d->held_truncs > 0) {
        hold(d, op);
        return 0;
    }
    if ((rv = issue_put(d, op)) != 0)
        free(op);
    return rv;
}

static void disk_close(struct raft_io *io, raft_io_close_cb cb)
{
    struct repl_disk *d = disk_of(io);
    struct repl_disk_op *op;

    d->closing = true;
    while ((op = d->head) != NULL) {
        d->head = op->next;
        if (op->kind == DOP_APPEND)
            op->cb.append(op->outer, RAFT_CANCELED);
        else if (op->kind == DOP_SNAPSHOT)
            op->cb.put(op->outer, RAFT_CANCELED);
        free(op);
    }
    d->tail = &d->head;
    d->held_truncs = 0;
    d->close(io, cb);
}

void repl__disk_wrap(repl_node *n)
{
    struct repl_disk *d = &n->disk;

    d->head = NULL;
    d->tail = &d->head;
    d->append = n->io.append;
    d->truncate = n->io.truncate;
    d->snapshot_put = n->io.snapshot_put;
    d->close = n->io.close;
    n->io.append = disk_append;
    n->io.truncate = disk_truncate;
    n->io.snapshot_put = disk_snapshot_put;
    n->io.close = disk_close;
}
