/*
 * repl_read.c - the read index (raft thread): a leader confirms that it
 * still leads with one round of small messages to its peers, instead of
 * appending a barrier entry that every node must write and fsync.
 *
 * libraft 0.15 has no ReadIndex (dissertation 6.4), so the round is ours.
 * It travels over the raft port, through a second raft_uv_tcp transport
 * whose handshake names a marked id (RI_MARK) and RI_ADDRESS; each node's
 * listener, wrapped here, hands such a connection to this file instead of
 * raft.  So the round needs no port, credentials or TLS of its own, and is
 * reachable wherever raft is.
 *
 * A group of reads (one wake-up's repl_barrier calls) is given a sequence
 * number S, the raft index of its node's last entry (idx0) and its term T.
 * The leader sends S to every voter.  A peer answers, from its raft thread
 * and so from raft's own state at that moment, its current term and the
 * leader it follows.  The group completes once
 *   - a majority of voters (this node included) answered "term T, you
 *     lead" to a query numbered S or later, so sent after the reads came:
 *     any leader of a later term needs one of those voters, whose term
 *     only moves forward, and can only have been elected after the reads
 *     arrived (the argument of the dissertation's 6.4, with our query for
 *     its heartbeat);
 *   - this node still leads term T and serves (its first entry of T is
 *     committed, so its commit index is current);
 *   - everything up to idx0 is applied: every batch proposed before the
 *     reads is committed, and its completion queued before theirs.
 * That is what the barrier entry promised, without the entry.
 *
 * Anything else falls back to the barrier entry, for this group and every
 * later pending one, in order: a peer answering a later term, a round not
 * confirmed within a heartbeat (a partition: the barrier then waits or
 * fails as it always did), a node not serving.
 *
 * Wire (little-endian u64s): query {RI_MAGIC, seq}; answer {seq, term,
 * leader id, raft state}.  A node without this file would take the marked
 * handshake for a raft peer and drop it at the first message: a cluster's
 * nodes must all run a version with the read index (see README).
 */
#include "repl_internal.h"

#include <stdlib.h>
#include <string.h>

#define RI_MAGIC 0x3158444e49524843ull /* "CHRINDX1" */
#define RI_MARK ((uint64_t)1 << 63)
#define RI_QUERY 16
#define RI_ANSWER 32

static const char ri_address[] = "chand-read-index";

enum { RI_IDLE, RI_CONNECTING, RI_UP, RI_CLOSING };

/* A voter this node asks (the leader side). */
typedef struct ri_peer {
    struct repl_ri *ri;
    uint64_t id;
    char addr[CLUSTER_HOST_MAX + 8];
    int state;
    struct raft_uv_connect req;
    uv_stream_t *stream;
    unsigned char in[RI_ANSWER];
    size_t n_in;
    uint64_t confirmed; /* the last seq it answered with "term T, you" */
    uint64_t retry_at;  /* uv_now ms: no connect before */
} ri_peer;

/* A node that asks this one (the answering side). */
typedef struct ri_conn {
    struct repl_ri *ri;
    struct ri_conn *next, **pprev;
    uv_stream_t *stream;
    unsigned char in[RI_QUERY];
    size_t n_in;
} ri_conn;

typedef struct ri_write {
    uv_write_t w;
    unsigned char b[RI_ANSWER];
} ri_write;

struct repl_ri {
    repl_node *n;
    struct raft_uv_transport ctl; /* connects with the marked handshake */
    bool ctl_ready, closing;
    uint64_t seq;
    barrier_group *head, **tail; /* pending groups, oldest first */
    ri_peer peers[REPL_MAX_PEERS];
    ri_conn *conns;
};

static repl_node *node_of_transport(struct raft_uv_transport *t)
{
    return (repl_node *)((char *)t - offsetof(repl_node, transport));
}

static void ri_free_handle(uv_handle_t *h)
{
    raft_free(h); /* the transports allocate streams with raft_malloc */
}

static struct repl_ri *ri_get(repl_node *n)
{
    if (n->ri == NULL && !n->closing) {
        n->ri = calloc(1, sizeof *n->ri);
        if (n->ri != NULL) {
            n->ri->n = n;
            n->ri->tail = &n->ri->head;
        }
    }
    return n->ri;
}

/* ---- writes ---------------------------------------------------------- */

static void ri_write_done(uv_write_t *w, int status)
{
    (void)status; /* a failed write shows as a read error too */
    free(w);
}

static int ri_send(uv_stream_t *s, const unsigned char *b, size_t len)
{
    ri_write *w = malloc(sizeof *w);
    uv_buf_t buf;
    int rv;

    if (w == NULL)
        return -1;
    memcpy(w->b, b, len);
    buf = uv_buf_init((char *)w->b, (unsigned)len);
    rv = uv_write(&w->w, s, &buf, 1, ri_write_done);
    if (rv != 0)
        free(w);
    return rv;
}

/* ---- the answering side ---------------------------------------------- */

static void conn_closed(uv_handle_t *h)
{
    ri_conn *c = h->data;
    if (c != NULL) {
        *c->pprev = c->next;
        if (c->next != NULL)
            c->next->pprev = c->pprev;
        free(c);
    }
    ri_free_handle(h);
}

static void conn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    ri_conn *c = h->data;
    (void)hint;
    *buf = uv_buf_init((char *)c->in + c->n_in,
                       (unsigned)(sizeof c->in - c->n_in));
}

static void conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    ri_conn *c = s->data;
    struct raft *r = &c->ri->n->raft;
    unsigned char out[RI_ANSWER];
    raft_id leader;
    const char *addr;
    (void)buf;

    if (nread < 0) {
        uv_close((uv_handle_t *)s, conn_closed);
        return;
    }
    c->n_in += (size_t)nread;
    if (c->n_in < sizeof c->in)
        return;
    c->n_in = 0;
    if (get64(c->in) != RI_MAGIC) {
        uv_close((uv_handle_t *)s, conn_closed);
        return;
    }
    /* Read on the raft thread, between raft's own steps: a vote for a
     * later term has already moved current_term when it is sent. */
    raft_leader(r, &leader, &addr);
    put64(out, get64(c->in + 8));
    put64(out + 8, r->current_term);
    put64(out + 16, leader);
    put64(out + 24, (uint64_t)raft_state(r));
    if (ri_send(s, out, sizeof out) != 0)
        uv_close((uv_handle_t *)s, conn_closed);
}

static void ri_serve(repl_node *n, uv_stream_t *s)
{
    struct repl_ri *ri = ri_get(n);
    ri_conn *c = ri != NULL && !ri->closing ? calloc(1, sizeof *c) : NULL;

    if (c == NULL) {
        s->data = NULL;
        uv_close((uv_handle_t *)s, ri_free_handle);
        return;
    }
    c->ri = ri;
    c->stream = s;
    c->next = ri->conns;
    c->pprev = &ri->conns;
    if (ri->conns != NULL)
        ri->conns->pprev = &c->next;
    ri->conns = c;
    s->data = c;
    uv_tcp_nodelay((uv_tcp_t *)s, 1);
    if (uv_read_start(s, conn_alloc, conn_read) != 0)
        uv_close((uv_handle_t *)s, conn_closed);
}

static void ri_accept(struct raft_uv_transport *t, raft_id id,
                      const char *address, struct uv_stream_s *stream)
{
    repl_node *n = node_of_transport(t);

    if ((id & RI_MARK) != 0 && address != NULL &&
        strcmp(address, ri_address) == 0)
        ri_serve(n, stream);
    else
        n->raft_accept(t, id, address, stream);
}

int repl__ri_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    repl_node *n = node_of_transport(t);
    n->raft_accept = cb;
    return n->tr_listen(t, ri_accept);
}

/* ---- the asking side ------------------------------------------------- */

static void ri_fallback(struct repl_ri *ri);
static void peer_answer(ri_peer *p, const unsigned char *b);

static uint64_t ri_wait_ms(const repl_node *n)
{
    unsigned hb = n->raft.heartbeat_timeout;
    return hb > 20 ? hb : 20;
}

static void peer_closed(uv_handle_t *h)
{
    ri_peer *p = h->data;
    if (p != NULL) {
        p->stream = NULL;
        p->state = RI_IDLE;
    }
    ri_free_handle(h);
}

static void peer_drop(ri_peer *p)
{
    if (p->state == RI_UP) {
        p->state = RI_CLOSING;
        p->retry_at = uv_now(&p->ri->n->loop) + ri_wait_ms(p->ri->n);
        uv_close((uv_handle_t *)p->stream, peer_closed);
    }
}

static void peer_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    ri_peer *p = h->data;
    (void)hint;
    *buf = uv_buf_init((char *)p->in + p->n_in,
                       (unsigned)(sizeof p->in - p->n_in));
}

static void peer_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    ri_peer *p = s->data;
    (void)buf;

    if (nread < 0) {
        peer_drop(p);
        return;
    }
    p->n_in += (size_t)nread;
    if (p->n_in < sizeof p->in)
        return;
    p->n_in = 0;
    peer_answer(p, p->in);
}

static void peer_query(ri_peer *p, uint64_t seq)
{
    unsigned char q[RI_QUERY];
    put64(q, RI_MAGIC);
    put64(q + 8, seq);
    if (ri_send(p->stream, q, sizeof q) != 0)
        peer_drop(p);
}

static void peer_connected(struct raft_uv_connect *req, uv_stream_t *s,
                           int status)
{
    ri_peer *p = req->data;
    struct repl_ri *ri = p->ri;

    if (status != 0 || ri->closing) {
        if (s != NULL)
            uv_close((uv_handle_t *)s, ri_free_handle);
        p->state = RI_IDLE;
        p->retry_at = uv_now(&ri->n->loop) + ri_wait_ms(ri->n);
        return;
    }
    p->stream = s;
    p->n_in = 0;
    s->data = p;
    p->state = RI_UP;
    uv_tcp_nodelay((uv_tcp_t *)s, 1);
    if (uv_read_start(s, peer_alloc, peer_read) != 0) {
        peer_drop(p);
        return;
    }
    /* One query numbered after every pending group covers them all. */
    if (ri->head != NULL)
        peer_query(p, ri->seq);
}

static bool ri_ctl(struct repl_ri *ri)
{
    repl_node *n = ri->n;
    if (ri->ctl_ready)
        return true;
    if (raft_uv_tcp_init(&ri->ctl, &n->loop) != 0)
        return false;
    if (ri->ctl.init(&ri->ctl, RI_MARK | n->id, ri_address) != 0) {
        raft_uv_tcp_close(&ri->ctl);
        return false;
    }
    ri->ctl_ready = true;
    return true;
}

static ri_peer *peer_find(struct repl_ri *ri, uint64_t id)
{
    for (size_t i = 0; i < REPL_MAX_PEERS; i++)
        if (ri->peers[i].id == id)
            return &ri->peers[i];
    return NULL;
}

static bool in_config(const struct raft *r, uint64_t id)
{
    for (unsigned i = 0; i < r->configuration.n; i++)
        if (r->configuration.servers[i].id == id)
            return true;
    return false;
}

/* The slot of voter id at address, taking one no voter uses any more. */
static ri_peer *peer_slot(struct repl_ri *ri, uint64_t id, const char *addr)
{
    ri_peer *p = peer_find(ri, id);

    for (size_t i = 0; p == NULL && i < REPL_MAX_PEERS; i++) {
        ri_peer *q = &ri->peers[i];
        if ((q->id == 0 || !in_config(&ri->n->raft, q->id)) &&
            q->state == RI_IDLE) {
            memset(q, 0, sizeof *q);
            q->ri = ri;
            q->id = id;
            p = q;
        }
    }
    if (p != NULL && strcmp(p->addr, addr) != 0) {
        peer_drop(p); /* moved: ask it at the new address */
        snprintf(p->addr, sizeof p->addr, "%s", addr);
    }
    return p;
}

/* Sends seq to every voter but this node, connecting those not up. */
static void ri_round(struct repl_ri *ri, uint64_t seq)
{
    repl_node *n = ri->n;
    const struct raft_configuration *c = &n->raft.configuration;
    uint64_t now = uv_now(&n->loop);

    for (unsigned i = 0; i < c->n; i++) {
        const struct raft_server *s = &c->servers[i];
        ri_peer *p;
        if (s->role != RAFT_VOTER || s->id == n->id || s->address == NULL)
            continue;
        p = peer_slot(ri, s->id, s->address);
        if (p == NULL)
            continue;
        if (p->state == RI_UP) {
            peer_query(p, seq);
        } else if (p->state == RI_IDLE && now >= p->retry_at && ri_ctl(ri)) {
            p->req.data = p;
            p->state = RI_CONNECTING;
            if (ri->ctl.connect(&ri->ctl, &p->req, p->id, p->addr,
                                peer_connected) != 0) {
                p->state = RI_IDLE;
                p->retry_at = now + ri_wait_ms(n);
            }
        }
    }
}

/* True once a majority of voters confirmed a query numbered seq or later. */
static bool ri_quorum(struct repl_ri *ri, uint64_t seq)
{
    const repl_node *n = ri->n;
    const struct raft_configuration *c = &n->raft.configuration;
    unsigned voters = 0, yes = 0;

    for (unsigned i = 0; i < c->n; i++) {
        const ri_peer *p;
        if (c->servers[i].role != RAFT_VOTER)
            continue;
        voters++;
        if (c->servers[i].id == n->id)
            yes++;
        else if ((p = peer_find(ri, c->servers[i].id)) != NULL &&
                 p->confirmed >= seq)
            yes++;
    }
    return voters > 0 && yes > voters / 2;
}

/* Pending groups, oldest first, go to raft_barrier: later ones must not
 * complete around an earlier one's entry. */
static void ri_fallback(struct repl_ri *ri)
{
    barrier_group *g;
    int rv;

    while ((g = ri->head) != NULL) {
        ri->head = g->next;
        g->req.data = g;
        ri->n->read_barriers++;
        rv = raft_barrier(&ri->n->raft, &g->req, repl__barrier_cb);
        if (rv != 0)
            repl__barrier_cb(&g->req, rv);
    }
    ri->tail = &ri->head;
}

static void peer_answer(ri_peer *p, const unsigned char *b)
{
    struct repl_ri *ri = p->ri;
    struct raft *r = &ri->n->raft;
    uint64_t seq = get64(b), term = get64(b + 8), leader = get64(b + 16);

    if (term > r->current_term) {
        ri_fallback(ri); /* deposed, or about to be: let raft tell */
        return;
    }
    if (term == r->current_term && leader == ri->n->id && seq > p->confirmed)
        p->confirmed = seq;
    repl__ri_check(ri->n);
}

void repl__ri_check(repl_node *n)
{
    struct repl_ri *ri = n->ri;
    struct raft *r = &n->raft;
    barrier_group *g;

    if (ri == NULL)
        return;
    while ((g = ri->head) != NULL) {
        if (raft_state(r) != RAFT_LEADER || r->current_term != g->term ||
            !n->serving) {
            ri_fallback(ri);
            return;
        }
        if (!ri_quorum(ri, g->seq) || raft_last_applied(r) < g->idx0) {
            if (uv_now(&n->loop) - g->since >= ri_wait_ms(n))
                ri_fallback(ri);
            return;
        }
        ri->head = g->next;
        if (ri->head == NULL)
            ri->tail = &ri->head;
        n->read_rounds++;
        g->req.index = g->idx0; /* the read index: all of it is applied */
        repl__barrier_cb(&g->req, 0);
    }
}

void repl__ri_start(repl_node *n, barrier_group *g)
{
    struct raft *r = &n->raft;
    struct repl_ri *ri = n->barrier_reads ? NULL : ri_get(n);
    int rv;

    g->req.data = g;
    g->next = NULL;
    if (ri == NULL || ri->closing || !n->serving ||
        raft_state(r) != RAFT_LEADER) {
        n->read_barriers++;
        rv = raft_barrier(r, &g->req, repl__barrier_cb);
        if (rv != 0)
            repl__barrier_cb(&g->req, rv);
        return;
    }
    g->seq = ++ri->seq;
    g->term = r->current_term;
    g->idx0 = raft_last_index(r);
    g->since = uv_now(&n->loop);
    *ri->tail = g;
    ri->tail = &g->next;
    ri_round(ri, g->seq);
    repl__ri_check(n); /* a lone voter needs no one */
}

static void ctl_closed(struct raft_uv_transport *t)
{
    (void)t;
}

void repl__ri_close(repl_node *n)
{
    struct repl_ri *ri = n->ri;
    barrier_group *g;

    if (ri == NULL)
        return;
    ri->closing = true;
    while ((g = ri->head) != NULL) {
        ri->head = g->next;
        repl__barrier_cb(&g->req, RAFT_SHUTDOWN);
    }
    ri->tail = &ri->head;
    while (ri->conns != NULL) {
        ri_conn *c = ri->conns;
        ri->conns = c->next;
        if (c->next != NULL)
            c->next->pprev = &ri->conns;
        c->stream->data = NULL;
        uv_close((uv_handle_t *)c->stream, ri_free_handle);
        free(c);
    }
    for (size_t i = 0; i < REPL_MAX_PEERS; i++)
        peer_drop(&ri->peers[i]);
    if (ri->ctl_ready)
        ri->ctl.close(&ri->ctl, ctl_closed); /* cancels the connects */
}

void repl__ri_free(repl_node *n)
{
    if (n->ri == NULL)
        return;
    if (n->ri->ctl_ready)
        raft_uv_tcp_close(&n->ri->ctl);
    free(n->ri);
    n->ri = NULL;
}
