/*
 * repl_loop.c - the raft thread: its libuv loop, starting queued ops,
 * publishing status, and leadership and role events.
 */
#include "repl_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- status and leadership (raft thread) -------------------------------- */

static void ready_cb(struct raft_barrier *req, int status)
{
    repl_node *n = req->data;
    n->ready_pending = false;
    if (status == 0 && raft_state(&n->raft) == RAFT_LEADER &&
        n->raft.current_term == n->ready_term)
        n->serving = true;
}

static void copy_peers(repl_node *n)
{
    const struct raft_configuration *c = &n->raft.configuration;
    unsigned i;
    n->st.n_peers = 0;
    for (i = 0; i < c->n && i < REPL_MAX_PEERS; i++) {
        repl_peer *p = &n->st.peers[n->st.n_peers++];
        p->id = c->servers[i].id;
        p->voter = c->servers[i].role == RAFT_VOTER;
        snprintf(p->address, sizeof p->address, "%s",
                 c->servers[i].address ? c->servers[i].address : "");
    }
}

/* Compares the published peers with raft's configuration by content: the
 * fields that index configurations differ between libraft 0.15 and its
 * fork, the servers array does not. */
static bool peers_changed(const repl_node *n)
{
    const struct raft_configuration *c = &n->raft.configuration;
    unsigned i;
    if (c->n != n->st.n_peers)
        return true;
    for (i = 0; i < c->n && i < REPL_MAX_PEERS; i++)
        if (c->servers[i].id != n->st.peers[i].id ||
            (c->servers[i].role == RAFT_VOTER) != n->st.peers[i].voter)
            return true;
    return false;
}

/* Runs after every loop iteration: publishes the status, starts the new
 * leader's first barrier, and reports serving/leader changes. */
static void refresh(repl_node *n)
{
    struct raft *r = &n->raft;
    int state = raft_state(r);
    raft_id leader = 0;
    const char *laddr = NULL;
    op *ev = NULL;

    if (n->closing)
        return;
    repl__ri_check(n);
    raft_leader(r, &leader, &laddr);
    if (state != RAFT_LEADER)
        n->serving = false;
    else if (!n->serving && !n->ready_pending) {
        n->ready_req.data = n;
        n->ready_term = r->current_term;
        if (raft_barrier(r, &n->ready_req, ready_cb) == 0)
            n->ready_pending = true;
    }
    if (n->serving != n->emitted_serving || leader != n->emitted_leader) {
        ev = calloc(1, sizeof *ev);
        if (ev != NULL) {
            ev->kind = OP_ROLE;
            ev->node = n;
            ev->serving = n->serving;
            ev->term = r->current_term;
            ev->leader_id = leader;
            n->emitted_serving = n->serving;
            n->emitted_leader = leader;
        }
    }
    pthread_mutex_lock(&n->mu);
    n->st.role = (repl_role)state;
    n->st.serving = n->serving;
    n->st.term = r->current_term;
    n->st.commit_index = r->commit_index;
    n->st.last_applied = raft_last_applied(r);
    n->st.last_index = raft_last_index(r);
    n->st.leader_id = leader;
    n->st.fsm_errors = n->fsm_errors;
    n->st.snapshot_index = n->snapshot_index;
    n->st.read_rounds = n->read_rounds;
    n->st.read_barriers = n->read_barriers;
    n->st.disk_holds = n->disk.holds;
    n->st.refreshed_ns = (int64_t)uv_hrtime();
    if (peers_changed(n))
        copy_peers(n);
    /* The event goes out with the status it describes: whoever sees the
     * new leader in the status finds the event queued. */
    if (ev != NULL) {
        *n->out_tail = ev;
        n->out_tail = &ev->next;
    }
    pthread_mutex_unlock(&n->mu);
    if (ev != NULL && n->wakeup != NULL)
        n->wakeup(n->wakeup_arg);
}

void repl__on_check(uv_check_t *h)
{
    refresh(h->data);
}

/* ---- the loop (raft thread) --------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

void repl__on_raft_closed(struct raft *r)
{
    repl_node *n = r->data;
    repl__ri_close(n);
    uv_close((uv_handle_t *)&n->async, on_handle_closed);
    uv_close((uv_handle_t *)&n->check, on_handle_closed);
}

static void start_op(repl_node *n, op *o, barrier_group **group)
{
    struct raft *r = &n->raft;
    int rv = 0;

    switch (o->kind) {
    case OP_PROPOSE:
        o->req.apply.data = o;
        rv = raft_apply(r, &o->req.apply, &o->buf, 1, repl__apply_cb);
        if (rv == 0)
            o->buf.base = NULL; /* raft owns it now */
        break;
    case OP_BARRIER:
        if (*group == NULL) {
            *group = calloc(1, sizeof **group);
            if (*group == NULL) {
                rv = RAFT_NOMEM;
                break;
            }
            (*group)->node = n;
        }
        o->next = (*group)->ops;
        (*group)->ops = o;
        return;
    case OP_ADD:
        o->req.change[0].data = o;
        rv = raft_add(r, &o->req.change[0], o->id, o->addr, repl__add_cb);
        break;
    case OP_REMOVE:
        o->req.change[0].data = o;
        rv = raft_remove(r, &o->req.change[0], o->id, repl__remove_cb);
        break;
    case OP_TRANSFER:
        o->req.transfer.data = o;
        rv = raft_transfer(r, &o->req.transfer, o->id, repl__transfer_cb);
        break;
    case OP_ROLE:
        break;
    }
    if (rv != 0)
        repl__fail_op(n, o, repl__map_raft(rv));
}

void repl__on_async(uv_async_t *h)
{
    repl_node *n = h->data;
    barrier_group *group = NULL;
    op *o, *next;
    bool stopping;

    pthread_mutex_lock(&n->mu);
    o = n->in_head;
    n->in_head = NULL;
    n->in_tail = &n->in_head;
    stopping = n->stopping;
    pthread_mutex_unlock(&n->mu);

    for (; o != NULL; o = next) {
        next = o->next;
        if (n->closing)
            repl__fail_op(n, o, -ESHUTDOWN);
        else
            start_op(n, o, &group);
    }
    if (group != NULL)
        repl__ri_start(n, group);
    if (stopping && !n->closing) {
        n->closing = true;
        raft_close(&n->raft, repl__on_raft_closed);
    }
}

void *repl__node_main(void *arg)
{
    repl_node *n = arg;
    uv_run(&n->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* Releases the loop and raft's I/O objects once every handle is closed. */
void repl__close_loop(repl_node *n)
{
    uv_run(&n->loop, UV_RUN_DEFAULT);
    repl__ri_free(n);
    raft_uv_close(&n->io);
    raft_uv_tcp_close(&n->transport);
    uv_loop_close(&n->loop);
}
