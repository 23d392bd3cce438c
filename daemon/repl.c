/*
 * repl.c - the Raft glue's public calls (repl.h): start and stop, propose,
 * barrier, membership, drain, leader and status; and raft error mapping.
 * The other parts are in repl_*.c; repl_internal.h lists them and holds
 * the batch format.
 *
 * Threads.  Everything that touches struct raft, the loop or the libuv
 * handles runs on the node's thread, except repl_start (before the thread
 * exists) and repl_stop (after it ended).  The I/O thread and the raft
 * thread share only what `mu` guards: the request queue, the completion
 * queue, the status copy and the address book.  uv_async_send is called
 * with `mu` held and only while `stopping` is false, so it never races the
 * uv_close of the async handle.
 */
#include "repl_internal.h"

#include <errno.h>
#include <stddef.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

/* ---- errors ------------------------------------------------------------- */

int repl__map_raft(int rv)
{
    switch (rv) {
    case 0:
        return 0;
    case RAFT_NOTLEADER:
        return REPL_ENOTLEADER;
    case RAFT_LEADERSHIPLOST:
        return REPL_ELOST;
    case RAFT_SHUTDOWN:
    case RAFT_CANCELED:
        return -ESHUTDOWN;
    case RAFT_NOMEM:
        return -ENOMEM;
    case RAFT_NOSPACE:
        return -ENOSPC;
    case RAFT_IOERR:
    case RAFT_CORRUPT:
        return -EIO;
    case RAFT_BUSY:
    case RAFT_CANTCHANGE:
        return -EBUSY;
    case RAFT_BADID:
    case RAFT_NOTFOUND:
        return -ENOENT;
    case RAFT_DUPLICATEID:
    case RAFT_DUPLICATEADDRESS:
        return -EEXIST;
    case RAFT_TOOBIG:
        return -E2BIG;
    case RAFT_BADROLE:
    case RAFT_INVALID:
    case RAFT_MALFORMED:
        return -EINVAL;
    default:
        return -EPROTO;
    }
}

const char *repl_strerror(int status)
{
    switch (status) {
    case 0:
        return "ok";
    case REPL_ENOTLEADER:
        return "this node is not the leader";
    case REPL_ELOST:
        return "leadership lost before the entry committed "
               "(it may still commit)";
    case -ESHUTDOWN:
        return "the replication node is stopping";
    case -EBUSY:
        return "a membership change is already in progress";
    case -ENOENT:
        return "no such server in the cluster";
    case -EEXIST:
        return "server id or address already in the cluster";
    default:
        return status < 0 ? strerror(-status) : "unknown status";
    }
}

const char *repl_role_name(repl_role role)
{
    switch (role) {
    case REPL_LEADER:
        return "leader";
    case REPL_FOLLOWER:
        return "follower";
    case REPL_CANDIDATE:
        return "candidate";
    default:
        return "unavailable";
    }
}

/* ---- the API ------------------------------------------------------------ */

static int errf(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int errf(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;
    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static int mkdir_one(const char *path)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST)
        return 0;
    return -errno;
}

/* raft_io.send, around raft_uv's.  libraft 0.15 sends a follower's
 * AppendEntries or InstallSnapshot result to its current leader's address
 * even when it has none any more (a leader that stepped down while its
 * append was in flight, a follower that became a candidate while it
 * installed a snapshot; fixed upstream later, canonical/raft#342 and
 * cowsql/raft#48), and raft_uv then takes strlen(NULL).  Worse, it reads
 * that address from the follower's part of a union: on a node that is a
 * candidate by then, the id is the candidate's votes array and the address
 * its pre-vote flags (0x100, seen in a core of a node that died of SIGSEGV
 * under ASan in a Jepsen run).  Such a message has nowhere to go: refuse
 * it, as an unreachable peer is refused; the core frees the request and
 * the peer retries.
 *
 * A result that is not a follower's and names no configured server is
 * such garbage (the votes array is no server's id), and is dropped before
 * its address is read.  It is dropped as if sent (the callback, which
 * only frees the request, then 0), not refused: a leader or candidate also
 * answers an AppendEntries of a stale term, to its sender, and an error
 * there makes libraft 0.15 free the entries twice. */
static bool repl__configured(struct raft *r, raft_id id)
{
    for (unsigned i = 0; i < r->configuration.n; i++)
        if (r->configuration.servers[i].id == id)
            return true;
    return false;
}

static int repl__io_send(struct raft_io *io, struct raft_io_send *req,
                         const struct raft_message *message, raft_io_send_cb cb)
{
    repl_node *n = (repl_node *)((char *)io - offsetof(repl_node, io));

    if (message->type == RAFT_IO_APPEND_ENTRIES_RESULT &&
        raft_state(&n->raft) != RAFT_FOLLOWER &&
        !repl__configured(&n->raft, message->server_id)) {
        cb(req, RAFT_NOCONNECTION);
        return 0;
    }
    if (message->server_address == NULL || message->server_address[0] == 0 ||
        message->server_id == 0)
        return RAFT_NOCONNECTION;
    return n->io_send(io, req, message, cb);
}

/* A fresh origin nonce: batches carrying another one are not this node's
 * to skip (repl_fsm.c). */
static uint64_t new_nonce(const repl_node *n)
{
    uint64_t v;
    if (getrandom(&v, sizeof v, 0) != sizeof v)
        v = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^
            (uint64_t)(uintptr_t)n ^
            __atomic_load_n(&n->nonce, __ATOMIC_ACQUIRE);
    return v;
}

static int bootstrap(repl_node *n, const cluster *c, char *err, size_t errlen)
{
    struct raft_configuration conf;
    char addr[CLUSTER_HOST_MAX + 8];
    size_t i;
    int rv = 0;

    raft_configuration_init(&conf);
    for (i = 0; i < c->n && rv == 0; i++) {
        cluster_raft_address(&c->peers[i], addr, sizeof addr);
        rv = raft_configuration_add(&conf, c->peers[i].id, addr, RAFT_VOTER);
    }
    if (rv == 0)
        rv = raft_bootstrap(&n->raft, &conf);
    raft_configuration_close(&conf);
    if (rv == RAFT_CANTBOOTSTRAP) /* not pristine: it was done before */
        return 0;
    if (rv != 0)
        return errf(err, errlen, repl__map_raft(rv), "raft bootstrap in %s: %s",
                    n->dir, raft_errmsg(&n->raft));
    return 0;
}

int repl_start(const repl_config *cfg, repl_node **out, char *err,
               size_t errlen)
{
    const cluster *c = cfg->cluster;
    const cluster_peer *self;
    sigset_t all, old;
    repl_node *n;
    size_t i;
    int rc, rv;

    *out = NULL;
    self = c != NULL ? cluster_self(c) : NULL;
    if (self == NULL || cfg->data_dir == NULL || cfg->fsm.apply == NULL ||
        cfg->fsm.snapshot == NULL || cfg->fsm.restore == NULL)
        return errf(err, errlen, -EINVAL,
                    "replication needs a cluster, a data_dir and an FSM");
    n = calloc(1, sizeof *n);
    if (n == NULL)
        return errf(err, errlen, -ENOMEM, "out of memory");
    pthread_mutex_init(&n->mu, NULL);
    pthread_mutex_init(&n->fsm_mu, NULL);
    n->in_tail = &n->in_head;
    n->out_tail = &n->out_head;
    n->id = self->id;
    n->fsm = cfg->fsm;
    n->wakeup = cfg->wakeup;
    n->wakeup_arg = cfg->wakeup_arg;
    n->on_role = cfg->on_role;
    n->role_arg = cfg->role_arg;
    n->st.id = n->id;
    n->nonce = new_nonce(n);
    for (i = 0; i < c->n && i < REPL_MAX_PEERS; i++) {
        n->book[i].id = c->peers[i].id;
        cluster_client_address(&c->peers[i], n->book[i].client,
                               sizeof n->book[i].client);
    }
    n->n_book = i;
    cluster_raft_address(self, n->address, sizeof n->address);

    if ((size_t)snprintf(n->dir, sizeof n->dir, "%s/raft", cfg->data_dir) >=
        sizeof n->dir) {
        rc = errf(err, errlen, -ENAMETOOLONG, "data_dir %s: path too long",
                  cfg->data_dir);
        goto out_free;
    }
    if ((rc = mkdir_one(cfg->data_dir)) != 0 || (rc = mkdir_one(n->dir)) != 0) {
        rc = errf(err, errlen, rc, "cannot create %s: %s", n->dir,
                  strerror(-rc));
        goto out_free;
    }

    rv = uv_loop_init(&n->loop);
    if (rv != 0) {
        rc = errf(err, errlen, rv, "uv_loop_init: %s", uv_strerror(rv));
        goto out_free;
    }
    uv_async_init(&n->loop, &n->async, repl__on_async);
    n->async.data = n;
    uv_check_init(&n->loop, &n->check);
    n->check.data = n;
    uv_check_start(&n->check, repl__on_check);

    rv = raft_uv_tcp_init(&n->transport, &n->loop);
    if (rv != 0) {
        rc = errf(err, errlen, repl__map_raft(rv), "raft transport: %s",
                  raft_strerror(rv));
        goto out_handles;
    }
    rv = raft_uv_init(&n->io, &n->loop, n->dir, &n->transport);
    if (rv != 0) {
        rc = errf(err, errlen, repl__map_raft(rv), "raft storage in %s: %s",
                  n->dir, raft_strerror(rv));
        goto out_transport;
    }
    n->io_send = n->io.send;
    n->io.send = repl__io_send;
    repl__disk_wrap(n);
    /* raft_uv_init set the transport up but listens only at raft_start. */
    n->tr_listen = n->transport.listen;
    n->transport.listen = repl__ri_listen;
    n->barrier_reads = cfg->barrier_reads;
    n->rfsm.version = 1;
    n->rfsm.data = n;
    n->rfsm.apply = repl__fsm_apply;
    n->rfsm.snapshot = repl__fsm_snapshot;
    n->rfsm.restore = repl__fsm_restore;
    rv = raft_init(&n->raft, &n->io, &n->rfsm, n->id, n->address);
    if (rv != 0) {
        rc = errf(err, errlen, repl__map_raft(rv), "raft init %s: %s",
                  n->address, raft_errmsg(&n->raft));
        goto out_io;
    }
    n->raft.data = n;
    raft_set_election_timeout(
        &n->raft, cfg->election_timeout_ms ? cfg->election_timeout_ms : 1000);
    raft_set_heartbeat_timeout(
        &n->raft, cfg->heartbeat_timeout_ms ? cfg->heartbeat_timeout_ms : 100);
    raft_set_snapshot_threshold(
        &n->raft, cfg->snapshot_threshold ? cfg->snapshot_threshold : 1024);
    raft_set_snapshot_trailing(
        &n->raft, cfg->snapshot_trailing ? cfg->snapshot_trailing : 128);
    raft_set_install_snapshot_timeout(&n->raft,
                                      cfg->install_snapshot_timeout_ms
                                          ? cfg->install_snapshot_timeout_ms
                                          : 10000);
    /* A node back from a partition or a restart must not depose a healthy
     * leader (dissertation 9.6). */
    raft_set_pre_vote(&n->raft, true);
    if (!cfg->join && (rc = bootstrap(n, c, err, errlen)) != 0)
        goto out_raft;
    rv = raft_start(&n->raft);
    if (rv != 0) {
        rc = errf(err, errlen, repl__map_raft(rv),
                  "raft start in %s on %s: %s%s%s", n->dir, n->address,
                  raft_strerror(rv), raft_errmsg(&n->raft)[0] ? ": " : "",
                  raft_errmsg(&n->raft));
        goto out_raft;
    }
    /* The raft thread takes no signals: the daemon's handlers stay on its
     * own threads, and a peer that hangs up gives EPIPE, not SIGPIPE. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rv = pthread_create(&n->thread, NULL, repl__node_main, n);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rv != 0) {
        rc = errf(err, errlen, -rv, "cannot start the raft thread: %s",
                  strerror(rv));
        goto out_raft;
    }
    *out = n;
    return 0;

out_raft:
    n->closing = true;
    raft_close(&n->raft, repl__on_raft_closed);
    repl__close_loop(n);
    goto out_mutex;
out_io:
    raft_uv_close(&n->io);
out_transport:
    raft_uv_tcp_close(&n->transport);
out_handles:
    uv_close((uv_handle_t *)&n->async, NULL);
    uv_close((uv_handle_t *)&n->check, NULL);
    uv_run(&n->loop, UV_RUN_DEFAULT);
    uv_loop_close(&n->loop);
out_mutex:
out_free:
    pthread_mutex_destroy(&n->mu);
    pthread_mutex_destroy(&n->fsm_mu);
    free(n);
    return rc;
}

void repl_stop(repl_node *n)
{
    op *o, *next;
    if (n == NULL)
        return;
    pthread_mutex_lock(&n->mu);
    n->stopping = true;
    uv_async_send(&n->async);
    pthread_mutex_unlock(&n->mu);
    pthread_join(n->thread, NULL);
    /* raft_close failed every pending request into the completion queue;
     * what is still queued was never started. */
    o = n->in_head;
    n->in_head = NULL;
    for (; o != NULL; o = next) {
        next = o->next;
        repl__fail_op(n, o, -ESHUTDOWN);
    }
    repl__ri_free(n);
    raft_uv_close(&n->io);
    raft_uv_tcp_close(&n->transport);
    uv_loop_close(&n->loop);
    n->wakeup = NULL;
    n->on_role = NULL; /* a stopped node reports no more leadership */
    repl_drain(n);
    pthread_mutex_destroy(&n->mu);
    pthread_mutex_destroy(&n->fsm_mu);
    free(n);
}

static op *new_op(op_kind kind, repl_done_fn done, void *arg)
{
    op *o = calloc(1, sizeof *o);
    if (o != NULL) {
        o->kind = kind;
        o->done = done;
        o->arg = arg;
    }
    return o;
}

int repl_propose(repl_node *n, const repl_record *recs, size_t nrecs,
                 repl_done_fn done, void *arg)
{
    size_t total = BATCH_HDR, i;
    unsigned char *p;
    op *o;

    if (nrecs == 0 || nrecs > UINT32_MAX)
        return -EINVAL;
    for (i = 0; i < nrecs; i++) {
        if (recs[i].len > UINT32_MAX || recs[i].len > BATCH_MAX - total - 4)
            return -E2BIG;
        total += 4 + recs[i].len;
    }
    total = (total + 7) & ~(size_t)7;
    o = new_op(OP_PROPOSE, done, arg);
    if (o == NULL)
        return -ENOMEM;
    o->buf.base = raft_malloc(total);
    if (o->buf.base == NULL) {
        free(o);
        return -ENOMEM;
    }
    o->buf.len = total;
    p = o->buf.base;
    memset(p + total - 8, 0, 8); /* the padding */
    put32(p, BATCH_MAGIC);
    put32(p + 4, (uint32_t)nrecs);
    put64(p + 8, n->id);
    o->nonce = __atomic_load_n(&n->nonce, __ATOMIC_ACQUIRE);
    put64(p + 16, o->nonce);
    p += BATCH_HDR;
    for (i = 0; i < nrecs; i++) {
        put32(p, (uint32_t)recs[i].len);
        if (recs[i].len > 0)
            memcpy(p + 4, recs[i].data, recs[i].len);
        p += 4 + recs[i].len;
    }
    __atomic_add_fetch(&n->own_in_flight, 1, __ATOMIC_ACQ_REL);
    return repl__submit(n, o);
}

int repl_barrier(repl_node *n, repl_done_fn done, void *arg)
{
    op *o = new_op(OP_BARRIER, done, arg);
    if (o == NULL)
        return -ENOMEM;
    return repl__submit(n, o);
}

int repl_add(repl_node *n, uint64_t id, const char *raft_addr,
             const char *client_addr, repl_done_fn done, void *arg)
{
    op *o;
    size_t i;
    if (id == 0 || raft_addr == NULL)
        return -EINVAL;
    o = new_op(OP_ADD, done, arg);
    if (o == NULL)
        return -ENOMEM;
    o->id = id;
    if ((size_t)snprintf(o->addr, sizeof o->addr, "%s", raft_addr) >=
        sizeof o->addr) {
        free(o);
        return -ENAMETOOLONG;
    }
    if (client_addr != NULL) {
        pthread_mutex_lock(&n->mu);
        for (i = 0; i < n->n_book && n->book[i].id != id; i++)
            ;
        if (i < REPL_MAX_PEERS) {
            n->book[i].id = id;
            snprintf(n->book[i].client, sizeof n->book[i].client, "%s",
                     client_addr);
            if (i == n->n_book)
                n->n_book++;
        }
        pthread_mutex_unlock(&n->mu);
    }
    return repl__submit(n, o);
}

int repl_remove(repl_node *n, uint64_t id, repl_done_fn done, void *arg)
{
    op *o = new_op(OP_REMOVE, done, arg);
    if (o == NULL)
        return -ENOMEM;
    o->id = id;
    return repl__submit(n, o);
}

int repl_transfer(repl_node *n, uint64_t id, repl_done_fn done, void *arg)
{
    op *o = new_op(OP_TRANSFER, done, arg);
    if (o == NULL)
        return -ENOMEM;
    o->id = id;
    return repl__submit(n, o);
}

int repl_drain(repl_node *n)
{
    op *o, *next;
    int ran = 0;

    pthread_mutex_lock(&n->mu);
    o = n->out_head;
    n->out_head = NULL;
    n->out_tail = &n->out_head;
    pthread_mutex_unlock(&n->mu);
    for (; o != NULL; o = next) {
        next = o->next;
        if (o->kind == OP_ROLE) {
            if (n->on_role != NULL) {
                n->on_role(n->role_arg, o->serving, o->term, o->leader_id);
                ran++;
            }
        } else if (o->done != NULL) {
            o->done(o->arg, o->status, o->index);
            ran++;
        }
        free(o);
    }
    return ran;
}

int repl_leader(repl_node *n, uint64_t *id, char *addr, size_t len)
{
    uint64_t leader;
    size_t i;
    int rc = -ENOENT;

    pthread_mutex_lock(&n->mu);
    leader = n->st.leader_id;
    if (leader != 0) {
        rc = 0;
        if (id != NULL)
            *id = leader;
        if (addr != NULL && len > 0) {
            addr[0] = '\0';
            for (i = 0; i < n->n_book; i++) {
                if (n->book[i].id != leader)
                    continue;
                if ((size_t)snprintf(addr, len, "%s", n->book[i].client) >= len)
                    rc = -ENAMETOOLONG;
                break;
            }
        }
    }
    pthread_mutex_unlock(&n->mu);
    return rc;
}

void repl_status_get(repl_node *n, repl_status *st)
{
    pthread_mutex_lock(&n->mu);
    *st = n->st;
    pthread_mutex_unlock(&n->mu);
}

void repl_fsm_lock(repl_node *n)
{
    pthread_mutex_lock(&n->fsm_mu);
}

void repl_fsm_unlock(repl_node *n)
{
    pthread_mutex_unlock(&n->fsm_mu);
}

void repl_new_origin(repl_node *n)
{
    __atomic_store_n(&n->nonce, new_nonce(n), __ATOMIC_RELEASE);
    __atomic_store_n(&n->own_lost, false, __ATOMIC_RELEASE);
}

bool repl_fsm_leading(repl_node *n, uint64_t *term)
{
    *term = n->raft.current_term;
    return raft_state(&n->raft) == RAFT_LEADER;
}

bool repl_in_flight(repl_node *n)
{
    /* The count first: own_done marks a failure lost before the batch
     * leaves the count, so a count that no longer holds it comes with
     * own_lost already set. */
    return __atomic_load_n(&n->own_in_flight, __ATOMIC_ACQUIRE) > 0 ||
           __atomic_load_n(&n->own_lost, __ATOMIC_ACQUIRE);
}
