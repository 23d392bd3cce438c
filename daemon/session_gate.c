/*
 * session_gate.c - fsync = always (and a cluster): holds each session's
 * answers back until the log is durable (raft committed) up to the
 * effects they reveal; a cluster node that lost leadership ends them.
 */
#include "server.h"
#include "persist.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A cluster node lost leadership (persist_kicks moved) and s's thread has
 * not ended its sessions yet: s is about to end, and nothing more of its
 * output may leave.  Without this, an answer written in that window went
 * out ungated (a node that does not serve gates nothing), although it
 * could reveal an effect of the old term that never commits, or a value
 * handed over from an entry that commits on the new leader too: the
 * Jepsen run's values received twice (issue 19). */
static bool sess_doomed(const sess *s)
{
    return persist_kicks() != s->io->kicks;
}

/* fsync = always: marks the len bytes just added to the output as held
 * until the log is durable up to the LSN appended now (which covers every
 * effect the answer could reveal).  Returns false when out of memory. */
bool sess__gate_mark(sess *s, size_t len)
{
    uint64_t lsn = persist_gate_lsn();

    /* After the gate: persist_gate_lsn read the node as not serving, so
     * the kick count it read next is already the new one (pr_do_rebuild
     * counts the kick first). */
    if (sess_doomed(s))
        lsn = UINT64_MAX; /* held until the session ends */
    if (lsn <= persist_durable_lsn())
        return true; /* nothing to hold (earlier marks still order it) */
    if (s->gn > s->ghead && s->gmarks[s->gn - 1].lsn >= lsn) {
        s->gmarks[s->gn - 1].end = s->out_added;
        return true;
    }
    if (s->gn == s->gcap) {
        if (s->ghead > 0) {
            memmove(s->gmarks, s->gmarks + s->ghead,
                    (s->gn - s->ghead) * sizeof *s->gmarks);
            s->gn -= s->ghead;
            s->ghead = 0;
        } else {
            size_t cap = s->gcap ? s->gcap * 2 : 16;
            void *p = realloc(s->gmarks, cap * sizeof *s->gmarks);
            if (!p)
                return false;
            s->gmarks = p;
            s->gcap = cap;
        }
    }
    s->gmarks[s->gn++] =
        (struct sess_gmark){s->out_added - len, s->out_added, lsn};
    return true;
}

/* Returns how many of the buffered bytes of s's output may leave now:
 * those before the first answer whose effects are not yet durable. */
size_t sess__gate_allowed(sess *s, size_t buffered)
{
    uint64_t durable = persist_durable_lsn();
    uint64_t first = s->out_added - buffered;

    if (sess_doomed(s))
        return 0;
    while (s->ghead < s->gn && s->gmarks[s->ghead].lsn <= durable)
        s->ghead++;
    if (s->ghead == s->gn) {
        s->ghead = s->gn = 0;
        return buffered;
    }
    uint64_t held = s->gmarks[s->ghead].start;
    return held > first ? (size_t)(held - first) : 0;
}

static bool sess_push_held(sess *s, void *arg)
{
    (void)arg;
    if (!s->ended && s->ghead < s->gn)
        sess__push_later(s);
    return true;
}

typedef struct sess_kick {
    sess **v;
    size_t n, cap;
} sess_kick;

static bool sess_collect(sess *s, void *arg)
{
    sess_kick *k = arg;

    if (s->ended)
        return true;
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 64;
        void *p = realloc(k->v, cap * sizeof *k->v);
        if (!p)
            return false;
        k->v = p;
        k->cap = cap;
    }
    sess_retain(s);
    k->v[k->n++] = s;
    return true;
}

/* A cluster node lost leadership: sessions live on the leader, so every
 * one of io's ends (the disconnect rules apply; clients reconnect). */
static void sess_kick_all(srv_io *io)
{
    sess_kick k = {0};
    bool all;

    do {
        all = sess__each(io, sess_collect, &k);
        for (size_t i = 0; i < k.n; i++) {
            sess__end(k.v[i], false);
            sess_release(k.v[i]);
        }
        k.n = 0;
    } while (!all && k.v);
    free(k.v);
}

void sess__durable_cb(evutil_socket_t fd, short what, void *arg)
{
    srv_io *io = arg;
    uint64_t kicks;
    (void)fd;
    (void)what;

    persist_poll();
    kicks = persist_kicks();
    if (kicks != io->kicks) {
        io->kicks = kicks;
        sess_kick_all(io);
    }
    sess__each(io, sess_push_held, NULL);
    sess__hold_over(io);
}
