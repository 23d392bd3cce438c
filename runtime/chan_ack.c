/*
 * chan_ack.c - the channel's value moves, with acknowledged delivery.
 *
 * Owns where a value may go next: the one take (a receiver's) and give (a
 * sender's) that chan.c, await.c and select.c share, and rt__chan_settle,
 * which matches whatever can proceed after a change.  An acknowledged
 * receive leaves its value "in flight": counted against cap until
 * rt_chan_ack ends it or rt_chan_requeue gives it back into redq, a small
 * array kept sorted by delivery key and served before the buffer, so
 * redeliveries go first and in their original order.
 *
 * Unbuffered channels: a sender whose value an acknowledged receive took
 * is claimed (its deadline and token can no longer end it) and parked on
 * heldq, named by the delivery key, until the ack readies it.  A sender
 * never hands its value straight to a parked acknowledged receiver: it
 * parks, and the settle run by its park's unlock (rt__chan_settle_unlock)
 * moves its value to redq as held and hands it over; so the sender is
 * always a claimed waiter when its value goes in flight.
 */
#include "rt_chan.h"

#include <stdlib.h>
#include <string.h>

/* ---- the redelivery queue: entries of a key, the meta, the element ---- */

#define REDQ_HDR (sizeof(uint64_t) + sizeof(void *))

static size_t redq_stride(const rt_chan *c)
{
    return REDQ_HDR + ((c->elemsize + 7) & ~(size_t)7);
}

static unsigned char *redq_at(rt_chan *c, size_t i)
{
    return c->redq + i * redq_stride(c);
}

/* Room for one more entry.  Under the lock: realloc there is rare (the
 * array only grows) and keeps the insert atomic with its check. */
static bool redq_reserve(rt_chan *c)
{
    if (c->nredq < c->redq_cap)
        return true;
    size_t n = c->redq_cap ? c->redq_cap * 2 : 8;
    unsigned char *p = realloc(c->redq, n * redq_stride(c));
    if (!p)
        return false;
    c->redq = p;
    c->redq_cap = n;
    return true;
}

/* Inserts (after redq_reserve) in key order; usually at an end. */
static void redq_insert(rt_chan *c, const void *elem, uint64_t seq, void *meta)
{
    size_t i = c->nredq, st = redq_stride(c);
    uint64_t k;

    while (i > 0) {
        memcpy(&k, redq_at(c, i - 1), sizeof k);
        if (k < seq)
            break;
        i--;
    }
    memmove(redq_at(c, i + 1), redq_at(c, i), (c->nredq - i) * st);
    memcpy(redq_at(c, i), &seq, sizeof seq);
    memcpy(redq_at(c, i) + sizeof seq, &meta, sizeof meta);
    if (c->elemsize)
        memcpy(redq_at(c, i) + REDQ_HDR, elem, c->elemsize);
    __atomic_store_n(&c->nredq, c->nredq + 1, __ATOMIC_RELAXED);
}

static uint64_t redq_pop(rt_chan *c, void *elem, void **meta)
{
    uint64_t seq;

    memcpy(&seq, redq_at(c, 0), sizeof seq);
    memcpy(meta, redq_at(c, 0) + sizeof seq, sizeof *meta);
    if (elem && c->elemsize)
        memcpy(elem, redq_at(c, 0) + REDQ_HDR, c->elemsize);
    memmove(redq_at(c, 0), redq_at(c, 1), (c->nredq - 1) * redq_stride(c));
    __atomic_store_n(&c->nredq, c->nredq - 1, __ATOMIC_RELAXED);
    return seq;
}

/* ---- helpers ---- */

static void push_wake(rt_g **wake, rt__waiter *w)
{
    w->g->schedlink = *wake;
    *wake = w->g;
}

static bool has_room(const rt_chan *c)
{
    return c->qcount + c->nredq + c->inflight < c->cap;
}

/* The first plain (not acknowledged) receiver this caller claims. */
static rt__waiter *claim_plain(rt__waitq *q)
{
    rt__waiter *w = q->head, *next;

    for (; w; w = next) {
        next = w->next;
        if (!w->hold && rt__waitq_claim(q, w))
            return w;
    }
    return NULL;
}

/* The unbuffered sender waiting on delivery seq, if any, completes. */
static void held_done(rt_chan *c, uint64_t seq, rt_g **wake)
{
    for (rt__waiter *w = c->heldq.head; w; w = w->next) {
        if (w->held_seq == seq) {
            rt__waitq_remove(&c->heldq, w);
            w->success = true;
            w->result = 0;
            push_wake(wake, w);
            return;
        }
    }
}

static void hold_new(rt_chan *c, rt_chan_hold *hold, uint64_t seq, void *meta)
{
    hold->seq = seq;
    hold->meta = meta;
    /* Atomic stores: send_would_block and select peek without the lock. */
    __atomic_store_n(&c->inflight, c->inflight + 1, __ATOMIC_RELAXED);
}

/* Tells the hook an acknowledged receive took a value without meta;
 * returns the meta it gives it. */
static void *hook_taken(rt_chan *c, const void *elem, uint64_t seq,
                        bool from_buf)
{
    rt_chan_hold_ev ev = {elem, seq, NULL, from_buf};

    if (c->hook)
        c->hook(c->hook_arg, true, &ev);
    return ev.meta;
}

/* rt__chan_take without the settle. */
static int take_core(rt_chan *c, void *elem, rt_chan_hold *hold, rt_g **wake)
{
    rt__waiter *w;

    if (c->nredq) {
        void *meta;
        uint64_t seq = redq_pop(c, elem, &meta);
        if (hold) {
            if (!meta)
                meta = hook_taken(c, elem, seq, false);
            hold_new(c, hold, seq, meta);
            return 1;
        }
        held_done(c, seq, wake);
        if (meta && c->hook) {
            rt_chan_hold_ev ev = {elem, seq, meta, false};
            c->hook(c->hook_arg, false, &ev);
        }
        return 1;
    }
    if (c->qcount > 0) {
        if (!hold || !c->hook) {
            rt__chan_buf_get(c, elem);
            if (hold)
                hold_new(c, hold, c->dseq++, NULL);
            return 1;
        }
        /* The hook records the GET with the delivery it starts. */
        rt_chan_observer obs = c->obs;
        c->obs = NULL;
        rt__chan_buf_get(c, elem);
        c->obs = obs;
        uint64_t seq = c->dseq++;
        hold_new(c, hold, seq, hook_taken(c, elem, seq, true));
        return 1;
    }
    if (c->cap == 0 && (w = rt__waitq_pop_claim(&c->sendq)) != NULL) {
        if (elem && c->elemsize)
            memcpy(elem, w->elem, c->elemsize);
        if (hold) {
            w->held_seq = c->dseq++;
            hold_new(c, hold, w->held_seq,
                     hook_taken(c, w->elem, w->held_seq, false));
            rt__waitq_push(&c->heldq, w);
        } else {
            w->success = true;
            w->result = 0;
            push_wake(wake, w);
        }
        return 1;
    }
    if (c->closed && c->inflight == 0) {
        if (elem && c->elemsize)
            memset(elem, 0, c->elemsize);
        return 0;
    }
    return -1;
}

int rt__chan_take(rt_chan *c, void *elem, rt_chan_hold *hold, rt_g **wake)
{
    int got = take_core(c, elem, hold, wake);

    /* A slot freed: a parked sender may now fit. */
    if (got == 1 && c->cap > 0 && c->sendq.head)
        rt__chan_settle(c, wake);
    return got;
}

int rt__chan_give(rt_chan *c, const void *elem, rt_g **wake)
{
    rt__waiter *w;

    if (c->closed)
        return RT_ESENDCLOSED;
    if (c->cap == 0) {
        if ((w = claim_plain(&c->recvq)) == NULL)
            return RT_EAGAIN;
        rt__chan_send_to(c, w, elem);
        push_wake(wake, w);
        return 0;
    }
    if (!has_room(c))
        return RT_EAGAIN;
    if ((w = rt__waitq_pop_claim(&c->recvq)) != NULL) {
        if (w->hold) { /* straight to an acknowledged receiver */
            uint64_t seq = c->dseq++;
            hold_new(c, w->hold, seq, hook_taken(c, elem, seq, false));
        }
        rt__chan_send_to(c, w, elem);
        push_wake(wake, w);
        return 0;
    }
    rt__chan_buf_put(c, elem);
    return 0;
}

void rt__chan_settle(rt_chan *c, rt_g **wake)
{
    rt__waiter *w;
    bool again = true;

    while (again) {
        again = false;
        /* Values for parked receivers. */
        while ((c->nredq || c->qcount) && c->recvq.head &&
               (w = rt__waitq_pop_claim(&c->recvq)) != NULL) {
            take_core(c, w->elem, w->hold, wake);
            w->success = true;
            w->result = 0;
            push_wake(wake, w);
        }
        /* Parked senders into freed slots. */
        while (c->cap > 0 && has_room(c) && c->sendq.head &&
               (w = rt__waitq_pop_claim(&c->sendq)) != NULL) {
            rt__chan_buf_put(c, w->elem);
            w->success = true;
            w->result = 0;
            push_wake(wake, w);
            again = c->recvq.head != NULL;
        }
        /* Unbuffered, acknowledged receivers waiting and a sender parked:
         * its value becomes a held requeued one, handed over above. */
        if (c->cap == 0 && c->recvq.head && c->sendq.head && redq_reserve(c) &&
            (w = rt__waitq_pop_claim(&c->sendq)) != NULL) {
            w->held_seq = c->dseq++;
            redq_insert(c, w->elem, w->held_seq, NULL);
            rt__waitq_push(&c->heldq, w);
            again = true;
        }
    }
    /* Closed and nothing left anywhere: receivers get ok=false. */
    if (c->closed && !c->qcount && !c->nredq && !c->inflight) {
        while ((w = rt__waitq_pop_claim(&c->recvq)) != NULL) {
            if (w->elem && c->elemsize)
                memset(w->elem, 0, c->elemsize);
            w->success = false;
            w->result = 0;
            push_wake(wake, w);
        }
    }
}

void rt__chan_wake(rt_g *list)
{
    while (list) {
        rt_g *g = list;
        list = g->schedlink;
        g->schedlink = NULL;
        rt__ready(g);
    }
}

void rt__chan_settle_unlock(void *arg)
{
    rt_chan *c = arg;
    rt_g *wake = NULL;

    if (c->recvq.head)
        rt__chan_settle(c, &wake);
    rt__lock_release(&c->lock);
    rt__chan_wake(wake);
}

/* ---- the API ---- */

int rt_chan_ack(rt_chan *c, uint64_t seq)
{
    rt_g *wake = NULL;

    if (!c)
        return RT_EINVAL;
    rt__lock_acquire(&c->lock);
    if (c->inflight == 0) {
        rt__lock_release(&c->lock);
        return RT_EINVAL;
    }
    __atomic_store_n(&c->inflight, c->inflight - 1, __ATOMIC_RELAXED);
    held_done(c, seq, &wake);
    rt__chan_settle(c, &wake);
    rt__lock_release(&c->lock);
    rt__chan_wake(wake);
    return 0;
}

int rt_chan_requeue(rt_chan *c, const void *elem, uint64_t seq, void *meta,
                    bool was_inflight)
{
    rt_g *wake = NULL;

    if (!c || (!elem && c->elemsize))
        return RT_EINVAL;
    rt__lock_acquire(&c->lock);
    if (was_inflight && c->inflight == 0) {
        rt__lock_release(&c->lock);
        return RT_EINVAL;
    }
    if (!redq_reserve(c)) {
        rt__lock_release(&c->lock);
        return RT_ENOMEM;
    }
    redq_insert(c, elem, seq, meta);
    if (was_inflight)
        __atomic_store_n(&c->inflight, c->inflight - 1, __ATOMIC_RELAXED);
    if (seq >= c->dseq)
        c->dseq = seq + 1;
    rt__chan_settle(c, &wake);
    rt__lock_release(&c->lock);
    rt__chan_wake(wake);
    return 0;
}

int rt_chan_restore_inflight(rt_chan *c, uint64_t seq)
{
    if (!c || !seq)
        return RT_EINVAL;
    rt__lock_acquire(&c->lock);
    __atomic_store_n(&c->inflight, c->inflight + 1, __ATOMIC_RELAXED);
    if (seq >= c->dseq)
        c->dseq = seq + 1;
    rt__lock_release(&c->lock);
    return 0;
}

size_t rt_chan_inflight(rt_chan *c)
{
    if (!c)
        return 0;
    rt__lock_acquire(&c->lock);
    size_t n = c->inflight;
    rt__lock_release(&c->lock);
    return n;
}

void rt_chan_set_hold_hook(rt_chan *c, rt_chan_hold_hook fn, void *arg)
{
    rt__lock_acquire(&c->lock);
    c->hook = fn;
    c->hook_arg = arg;
    rt__lock_release(&c->lock);
}

void rt_chan_set_seq(rt_chan *c, uint64_t next)
{
    rt__lock_acquire(&c->lock);
    if (next > c->dseq)
        c->dseq = next;
    rt__lock_release(&c->lock);
}

void rt_chan_each_requeued(rt_chan *c,
                           void (*fn)(void *arg, const void *elem, uint64_t seq,
                                      void *meta),
                           void *arg)
{
    uint64_t seq;
    void *meta;

    rt__lock_acquire(&c->lock);
    for (size_t i = 0; i < c->nredq; i++) {
        memcpy(&seq, redq_at(c, i), sizeof seq);
        memcpy(&meta, redq_at(c, i) + sizeof seq, sizeof meta);
        fn(arg, redq_at(c, i) + REDQ_HDR, seq, meta);
    }
    rt__lock_release(&c->lock);
}
