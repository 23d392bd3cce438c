/*
 * repl.c - the Raft glue (repl.h): one raft instance, its libuv loop and
 * thread, the queues that carry requests in and completions out, and the
 * batch format.
 *
 * Threads.  Everything that touches struct raft, the loop or the libuv
 * handles runs on the node's thread, except repl_start (before the thread
 * exists) and repl_stop (after it ended).  The I/O thread and the raft
 * thread share only what `mu` guards: the request queue, the completion
 * queue, the status copy and the address book.  uv_async_send is called
 * with `mu` held and only while `stopping` is false, so it never races the
 * uv_close of the async handle.
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
#include "repl.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
} barrier_group;

/* Id -> client address, for not_leader answers. */
typedef struct book_entry {
    uint64_t id;
    char client[CLUSTER_HOST_MAX + 8];
} book_entry;

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

    /* Fixed after repl_start. */
    uint64_t id, nonce;
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
    struct raft_fsm rfsm;
    struct raft raft;
    bool closing;
    bool serving, ready_pending;
    struct raft_barrier ready_req;
    raft_term ready_term;
    bool emitted_serving;
    uint64_t emitted_leader;
    uint64_t fsm_errors;
};

/* ---- errors ------------------------------------------------------------- */

static int map_raft(int rv)
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

/* ---- little-endian helpers ---------------------------------------------- */

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

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

static void own_done(repl_node *n)
{
    __atomic_sub_fetch(&n->own_in_flight, 1, __ATOMIC_RELEASE);
}

static void fail_op(repl_node *n, op *o, int status)
{
    if (o->kind == OP_PROPOSE) {
        raft_free(o->buf.base);
        o->buf.base = NULL;
        own_done(n);
    }
    complete(n, o, status, 0);
}

/* Queues a request for the raft thread; steals o (freed on error). */
static int submit(repl_node *n, op *o)
{
    o->node = n;
    o->next = NULL;
    pthread_mutex_lock(&n->mu);
    if (n->stopping) {
        pthread_mutex_unlock(&n->mu);
        if (o->kind == OP_PROPOSE) {
            raft_free(o->buf.base);
            own_done(n);
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

/* ---- FSM adapter (raft thread) ------------------------------------------ */

static int fsm_apply(struct raft_fsm *f, const struct raft_buffer *buf,
                     void **result)
{
    repl_node *n = f->data;
    const unsigned char *p = buf->base, *end = p + buf->len;
    repl_record stack[16], *recs = stack;
    uint32_t count, i;
    uint64_t origin, nonce;
    int rc;

    *result = NULL;
    rc = RAFT_MALFORMED;
    if (buf->len < BATCH_HDR || get32(p) != BATCH_MAGIC)
        goto out;
    count = get32(p + 4);
    origin = get64(p + 8);
    nonce = get64(p + 16);
    p += BATCH_HDR;
    if (count > (size_t)(end - p) / 4)
        goto out;
    if (count > 16) {
        recs = malloc(count * sizeof *recs);
        if (recs == NULL) {
            rc = RAFT_NOMEM;
            goto out;
        }
    }
    for (i = 0; i < count; i++) {
        uint32_t len;
        if (end - p < 4)
            break;
        len = get32(p);
        p += 4;
        if ((size_t)(end - p) < len)
            break;
        recs[i].data = p;
        recs[i].len = len;
        p += len;
    }
    /* Up to 7 bytes of zero padding may follow the last record. */
    if (i == count && end - p < 8)
        while (p < end && *p == 0)
            p++;
    if (i < count || p != end) {
        rc = RAFT_MALFORMED;
        goto out;
    }
    /* raft sets last_applied after this call returns: the entry's index is
     * the next one. */
    rc = n->fsm.apply(n->fsm.arg, raft_last_applied(&n->raft) + 1, recs, count,
                      origin == n->id && nonce == n->nonce);
    rc = rc == 0 ? 0 : RAFT_IOERR;
out:
    if (rc != 0)
        n->fsm_errors++;
    if (recs != stack)
        free(recs);
    return rc;
}

static int fsm_snapshot(struct raft_fsm *f, struct raft_buffer *bufs[],
                        unsigned *n_bufs)
{
    repl_node *n = f->data;
    void *data = NULL;
    size_t len = 0;
    unsigned char *hdr;
    size_t padded;
    int rc;

    rc = n->fsm.snapshot(n->fsm.arg, raft_last_applied(&n->raft), &data, &len);
    if (rc == -EBUSY)
        return RAFT_BUSY;
    if (rc != 0)
        return RAFT_IOERR;
    padded = (len + 7) & ~(size_t)7;
    if (padded != len) {
        void *grown = realloc(data, padded);
        if (grown == NULL) {
            free(data);
            return RAFT_NOMEM;
        }
        data = grown;
        memset((char *)data + len, 0, padded - len);
    }
    *bufs = raft_calloc(2, sizeof **bufs);
    hdr = raft_malloc(SNAP_HDR);
    if (*bufs == NULL || hdr == NULL) {
        raft_free(*bufs);
        raft_free(hdr);
        free(data);
        return RAFT_NOMEM;
    }
    put32(hdr, SNAP_MAGIC);
    put32(hdr + 4, SNAP_VERSION);
    put64(hdr + 8, len);
    (*bufs)[0].base = hdr;
    (*bufs)[0].len = SNAP_HDR;
    *n_bufs = 1;
    if (len > 0) {
        /* raft frees the buffers with raft_free, the C library's free by
         * default, which is what allocated data. */
        (*bufs)[1].base = data;
        (*bufs)[1].len = padded;
        *n_bufs = 2;
    } else {
        free(data);
    }
    return 0;
}

static int fsm_restore(struct raft_fsm *f, struct raft_buffer *buf)
{
    repl_node *n = f->data;
    const unsigned char *p = buf->base;
    int rc;

    if (buf->len < SNAP_HDR || get32(p) != SNAP_MAGIC ||
        get32(p + 4) != SNAP_VERSION || get64(p + 8) > buf->len - SNAP_HDR)
        return RAFT_MALFORMED;
    rc = n->fsm.restore(n->fsm.arg, p + SNAP_HDR, get64(p + 8));
    if (rc != 0) {
        n->fsm_errors++;
        return RAFT_IOERR;
    }
    /* On success the FSM owns the buffer (raft's contract). */
    raft_free(buf->base);
    return 0;
}

/* ---- request callbacks (raft thread) ------------------------------------ */

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    op *o = req->data;
    (void)result;
    own_done(o->node);
    complete(o->node, o, map_raft(status), req->index);
}

static void barrier_cb(struct raft_barrier *req, int status)
{
    barrier_group *g = req->data;
    op *o, *next;
    for (o = g->ops; o != NULL; o = next) {
        next = o->next;
        complete(g->node, o, map_raft(status), req->index);
    }
    free(g);
}

static void assign_cb(struct raft_change *req, int status)
{
    op *o = req->data;
    complete(o->node, o, map_raft(status), 0);
}

static void add_cb(struct raft_change *req, int status)
{
    op *o = req->data;
    repl_node *n = o->node;
    int rv;
    if (status != 0) {
        complete(n, o, map_raft(status), 0);
        return;
    }
    o->req.change[1].data = o;
    rv = raft_assign(&n->raft, &o->req.change[1], o->id, RAFT_VOTER, assign_cb);
    if (rv != 0)
        complete(n, o, map_raft(rv), 0);
}

static void remove_cb(struct raft_change *req, int status)
{
    op *o = req->data;
    complete(o->node, o, map_raft(status), 0);
}

static void transfer_cb(struct raft_transfer *req)
{
    op *o = req->data;
    complete(o->node, o, 0, 0);
}

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

static void on_check(uv_check_t *h)
{
    refresh(h->data);
}

/* ---- the loop (raft thread) --------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_raft_closed(struct raft *r)
{
    repl_node *n = r->data;
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
        rv = raft_apply(r, &o->req.apply, &o->buf, 1, apply_cb);
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
        rv = raft_add(r, &o->req.change[0], o->id, o->addr, add_cb);
        break;
    case OP_REMOVE:
        o->req.change[0].data = o;
        rv = raft_remove(r, &o->req.change[0], o->id, remove_cb);
        break;
    case OP_TRANSFER:
        o->req.transfer.data = o;
        rv = raft_transfer(r, &o->req.transfer, o->id, transfer_cb);
        break;
    case OP_ROLE:
        break;
    }
    if (rv != 0)
        fail_op(n, o, map_raft(rv));
}

static void on_async(uv_async_t *h)
{
    repl_node *n = h->data;
    barrier_group *group = NULL;
    op *o, *next;
    bool stopping;
    int rv;

    pthread_mutex_lock(&n->mu);
    o = n->in_head;
    n->in_head = NULL;
    n->in_tail = &n->in_head;
    stopping = n->stopping;
    pthread_mutex_unlock(&n->mu);

    for (; o != NULL; o = next) {
        next = o->next;
        if (n->closing)
            fail_op(n, o, -ESHUTDOWN);
        else
            start_op(n, o, &group);
    }
    if (group != NULL) {
        group->req.data = group;
        rv = raft_barrier(&n->raft, &group->req, barrier_cb);
        if (rv != 0)
            barrier_cb(&group->req, rv);
    }
    if (stopping && !n->closing) {
        n->closing = true;
        raft_close(&n->raft, on_raft_closed);
    }
}

static void *node_main(void *arg)
{
    repl_node *n = arg;
    uv_run(&n->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* Releases the loop and raft's I/O objects once every handle is closed. */
static void close_loop(repl_node *n)
{
    uv_run(&n->loop, UV_RUN_DEFAULT);
    raft_uv_close(&n->io);
    raft_uv_tcp_close(&n->transport);
    uv_loop_close(&n->loop);
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
        return errf(err, errlen, map_raft(rv), "raft bootstrap in %s: %s",
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
    n->in_tail = &n->in_head;
    n->out_tail = &n->out_head;
    n->id = self->id;
    n->fsm = cfg->fsm;
    n->wakeup = cfg->wakeup;
    n->wakeup_arg = cfg->wakeup_arg;
    n->on_role = cfg->on_role;
    n->role_arg = cfg->role_arg;
    n->st.id = n->id;
    if (getrandom(&n->nonce, sizeof n->nonce, 0) != sizeof n->nonce)
        n->nonce = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^
                   (uint64_t)(uintptr_t)n;
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
    uv_async_init(&n->loop, &n->async, on_async);
    n->async.data = n;
    uv_check_init(&n->loop, &n->check);
    n->check.data = n;
    uv_check_start(&n->check, on_check);

    rv = raft_uv_tcp_init(&n->transport, &n->loop);
    if (rv != 0) {
        rc = errf(err, errlen, map_raft(rv), "raft transport: %s",
                  raft_strerror(rv));
        goto out_handles;
    }
    rv = raft_uv_init(&n->io, &n->loop, n->dir, &n->transport);
    if (rv != 0) {
        rc = errf(err, errlen, map_raft(rv), "raft storage in %s: %s", n->dir,
                  raft_strerror(rv));
        goto out_transport;
    }
    n->rfsm.version = 1;
    n->rfsm.data = n;
    n->rfsm.apply = fsm_apply;
    n->rfsm.snapshot = fsm_snapshot;
    n->rfsm.restore = fsm_restore;
    rv = raft_init(&n->raft, &n->io, &n->rfsm, n->id, n->address);
    if (rv != 0) {
        rc = errf(err, errlen, map_raft(rv), "raft init %s: %s", n->address,
                  raft_errmsg(&n->raft));
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
        rc = errf(err, errlen, map_raft(rv), "raft start in %s on %s: %s%s%s",
                  n->dir, n->address, raft_strerror(rv),
                  raft_errmsg(&n->raft)[0] ? ": " : "", raft_errmsg(&n->raft));
        goto out_raft;
    }
    /* The raft thread takes no signals: the daemon's handlers stay on its
     * own threads, and a peer that hangs up gives EPIPE, not SIGPIPE. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rv = pthread_create(&n->thread, NULL, node_main, n);
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
    raft_close(&n->raft, on_raft_closed);
    close_loop(n);
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
        fail_op(n, o, -ESHUTDOWN);
    }
    raft_uv_close(&n->io);
    raft_uv_tcp_close(&n->transport);
    uv_loop_close(&n->loop);
    n->wakeup = NULL;
    n->on_role = NULL; /* a stopped node reports no more leadership */
    repl_drain(n);
    pthread_mutex_destroy(&n->mu);
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
    put64(p + 16, n->nonce);
    p += BATCH_HDR;
    for (i = 0; i < nrecs; i++) {
        put32(p, (uint32_t)recs[i].len);
        if (recs[i].len > 0)
            memcpy(p + 4, recs[i].data, recs[i].len);
        p += 4 + recs[i].len;
    }
    __atomic_add_fetch(&n->own_in_flight, 1, __ATOMIC_ACQ_REL);
    return submit(n, o);
}

int repl_barrier(repl_node *n, repl_done_fn done, void *arg)
{
    op *o = new_op(OP_BARRIER, done, arg);
    if (o == NULL)
        return -ENOMEM;
    return submit(n, o);
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
    return submit(n, o);
}

int repl_remove(repl_node *n, uint64_t id, repl_done_fn done, void *arg)
{
    op *o = new_op(OP_REMOVE, done, arg);
    if (o == NULL)
        return -ENOMEM;
    o->id = id;
    return submit(n, o);
}

int repl_transfer(repl_node *n, uint64_t id, repl_done_fn done, void *arg)
{
    op *o = new_op(OP_TRANSFER, done, arg);
    if (o == NULL)
        return -ENOMEM;
    o->id = id;
    return submit(n, o);
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

bool repl_in_flight(repl_node *n)
{
    return __atomic_load_n(&n->own_in_flight, __ATOMIC_ACQUIRE) > 0;
}
