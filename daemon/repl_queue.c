/*
 * repl_queue.c - the request queue into the raft thread, the completion
 * queue out of it, and raft's request callbacks that complete ops.
 */
#include "repl_internal.h"

#include <errno.h>
#include <stdlib.h>

/* ---- queues ------------------------------------------------------------- */

/* Moves a finished op to the completion queue and pokes the I/O thread. */
static void complete(repl_node *n, op *o, int status, uint64_t index)
{
    o->status = status;
    o->index = status == 0 ? index : 0;
    o->next = NULL;
    pthread_mutex_lock(&n->mu);
    if (!n->closing) {
        /* Whoever drains this completion may read the status at once: it
         * must already count the entry. */
        n->st.term = n->raft.current_term;
        n->st.commit_index = n->raft.commit_index;
        n->st.last_applied = raft_last_applied(&n->raft);
        n->st.last_index = raft_last_index(&n->raft);
    }
    *n->out_tail = o;
    n->out_tail = &o->next;
    pthread_mutex_unlock(&n->mu);
    if (n->wakeup != NULL)
        n->wakeup(n->wakeup_arg);
}

/* An own batch left raft's hands; a failed one leaves its effects in the
 * daemon's state (applied when decided) with no entry to account for them
 * before any index raft applies next (a deposed leader's, which may even
 * commit later): the node's snapshots stay refused (repl_in_flight). */
static void own_done(repl_node *n, const op *o, int status)
{
    /* A batch of an earlier origin (repl_new_origin) failing changes
     * nothing: the state was rebuilt without it. */
    if (status != 0 && o->nonce == __atomic_load_n(&n->nonce, __ATOMIC_ACQUIRE))
        __atomic_store_n(&n->own_lost, true, __ATOMIC_RELEASE);
    __atomic_sub_fetch(&n->own_in_flight, 1, __ATOMIC_RELEASE);
}

void repl__fail_op(repl_node *n, op *o, int status)
{
    if (o->kind == OP_PROPOSE) {
        raft_free(o->buf.base);
        o->buf.base = NULL;
        own_done(n, o, status);
    }
    complete(n, o, status, 0);
}

/* Queues a request for the raft thread; steals o (freed on error). */
int repl__submit(repl_node *n, op *o)
{
    o->node = n;
    o->next = NULL;
    pthread_mutex_lock(&n->mu);
    if (n->stopping) {
        pthread_mutex_unlock(&n->mu);
        if (o->kind == OP_PROPOSE) {
            raft_free(o->buf.base);
            own_done(n, o, -ESHUTDOWN);
        }
        free(o);
        return -ESHUTDOWN;
    }
    *n->in_tail = o;
    n->in_tail = &o->next;
    uv_async_send(&n->async);
    pthread_mutex_unlock(&n->mu);
    return 0;
}

/* ---- request callbacks (raft thread) ------------------------------------ */

void repl__apply_cb(struct raft_apply *req, int status, void *result)
{
    op *o = req->data;
    (void)result;
    own_done(o->node, o, status);
    complete(o->node, o, repl__map_raft(status), req->index);
}

void repl__barrier_cb(struct raft_barrier *req, int status)
{
    barrier_group *g = req->data;
    op *o, *next;
    for (o = g->ops; o != NULL; o = next) {
        next = o->next;
        complete(g->node, o, repl__map_raft(status), req->index);
    }
    free(g);
}

static void assign_cb(struct raft_change *req, int status)
{
    op *o = req->data;
    complete(o->node, o, repl__map_raft(status), 0);
}

void repl__add_cb(struct raft_change *req, int status)
{
    op *o = req->data;
    repl_node *n = o->node;
    int rv;
    if (status != 0) {
        complete(n, o, repl__map_raft(status), 0);
        return;
    }
    o->req.change[1].data = o;
    rv = raft_assign(&n->raft, &o->req.change[1], o->id, RAFT_VOTER, assign_cb);
    if (rv != 0)
        complete(n, o, repl__map_raft(rv), 0);
}

void repl__remove_cb(struct raft_change *req, int status)
{
    op *o = req->data;
    complete(o->node, o, repl__map_raft(status), 0);
}

void repl__transfer_cb(struct raft_transfer *req)
{
    op *o = req->data;
    complete(o->node, o, 0, 0);
}
