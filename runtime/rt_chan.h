/*
 * rt_chan.h - the channel's layout and the helpers chan.c shares with
 * select.c, await.c and chan_ack.c.  Private to the runtime core.
 */
#ifndef CHAND_RT_CHAN_H
#define CHAND_RT_CHAN_H

#include "rt_sched.h"

#include <string.h>

struct rt_chan {
    rt__lock lock;
    _Atomic int refs;
    bool closed;
    size_t elemsize, cap;
    size_t qcount, sendx, recvx;
    rt__waitq recvq, sendq;
    char *buf;
    /* rt_chan_observe: told of every change of the buffer, under lock. */
    rt_chan_observer obs;
    void *obs_arg;
    /* Acknowledged delivery (chan_ack.c).  inflight: taken by acknowledged
     * receives, not yet acked or requeued.  redq: requeued values, sorted
     * by key, served before buf.  heldq: unbuffered senders whose value
     * is in flight or requeued (claimed; waiter.held_seq names it). */
    size_t inflight;
    uint64_t dseq;
    rt__waitq heldq;
    unsigned char *redq;
    size_t nredq, redq_cap;
    rt_chan_hold_hook hook; /* rt_chan_set_hold_hook */
    void *hook_arg;
};

RT__HIDDEN void rt__chan_buf_put(rt_chan *c, const void *elem);
RT__HIDDEN void rt__chan_buf_get(rt_chan *c, void *elem);

/* chan_ack.c.  All under c->lock; goroutines to ready once it is released
 * are pushed on *wake (linked by schedlink; rt__chan_wake readies them). */

/* Takes a value for a receiver if one is ready: requeued ones first, then
 * the buffer, then a parked sender.  hold non-NULL: an acknowledged receive.
 * Returns 1 (a value in elem), 0 (closed, drained, nothing in flight:
 * elem zeroed) or -1 (must wait). */
RT__HIDDEN int rt__chan_take(rt_chan *c, void *elem, rt_chan_hold *hold,
                             rt_g **wake);
/* Puts a sender's value: to a parked receiver, or into the buffer.
 * Returns 0, RT_ESENDCLOSED or RT_EAGAIN (must wait). */
RT__HIDDEN int rt__chan_give(rt_chan *c, const void *elem, rt_g **wake);
/* Matches whatever can proceed after a change (an ack, a requeue, a waiter
 * queued on an unbuffered channel where acknowledged receivers wait). */
RT__HIDDEN void rt__chan_settle(rt_chan *c, rt_g **wake);
RT__HIDDEN void rt__chan_wake(rt_g *list);
/* rt__park_ex's unlock for a parked sender: settle, unlock, wake. */
RT__HIDDEN void rt__chan_settle_unlock(void *c);

/* Completes a send to a claimed parked receiver w.  Lock held.  Inline:
 * it is the whole of an unbuffered hand-off. */
static inline void rt__chan_send_to(rt_chan *c, rt__waiter *w, const void *elem)
{
    if (w->elem && c->elemsize)
        memcpy(w->elem, elem, c->elemsize);
    w->success = true;
    w->result = 0;
}

/* The part of a send that completes at once, shared by rt_chan_send and
 * rt_chan_send_await.  Called with c->lock held: returns 0 (handed to a
 * parked receiver, or buffered) or RT_ESENDCLOSED with the lock released,
 * or RT_EAGAIN with it still held (the caller waits or gives up). */
static inline int rt__chan_send_now(rt_chan *c, const void *elem)
{
    /* The common buffered case inline: room, nobody waiting. */
    if (!c->closed && c->cap > 0 && !c->recvq.head &&
        c->qcount + c->nredq + c->inflight < c->cap) {
        rt__chan_buf_put(c, elem);
        rt__lock_release(&c->lock);
        return 0;
    }
    /* The unbuffered cases inline, as rt__chan_give decides them: nobody
     * parked, wait; a plain receiver first in line, hand it the value. */
    if (c->cap == 0 && !c->closed) {
        rt__waiter *w = c->recvq.head;
        if (!w)
            return RT_EAGAIN;
        if (!w->hold && rt__waitq_claim(&c->recvq, w)) {
            rt_g *g = w->g;
            rt__chan_send_to(c, w, elem);
            rt__lock_release(&c->lock);
            rt__ready(g);
            return 0;
        }
    }
    /* Declared here: the inline paths above do not pay for its store. */
    rt_g *wake = NULL;
    int rc = rt__chan_give(c, elem, &wake);
    if (rc == RT_EAGAIN)
        return rc;
    rt__lock_release(&c->lock);
    rt__chan_wake(wake);
    return rc;
}

/* The same for a receive: 0 with *ok (a value, or closed and drained)
 * and the lock released, or RT_EAGAIN with it held. */
static inline int rt__chan_recv_now(rt_chan *c, void *elem, bool *ok,
                                    rt_chan_hold *hold)
{
    /* The common buffered case inline: a value, nobody else to move. */
    if (!hold && c->qcount > 0 && !c->nredq && !c->sendq.head) {
        rt__chan_buf_get(c, elem);
        rt__lock_release(&c->lock);
        *ok = true;
        return 0;
    }
    /* The unbuffered cases inline, as rt__chan_take decides them: open
     * and nobody parked, wait; a parked sender, a plain receive takes its
     * value (an acknowledged one holds the sender: rt__chan_take). */
    if (c->cap == 0 && !c->nredq) {
        rt__waiter *w;
        if (!c->sendq.head) {
            if (!c->closed)
                return RT_EAGAIN;
        } else if (!hold && (w = rt__waitq_pop_claim(&c->sendq)) != NULL) {
            rt_g *g = w->g;
            if (elem && c->elemsize)
                memcpy(elem, w->elem, c->elemsize);
            w->success = true;
            w->result = 0;
            rt__lock_release(&c->lock);
            rt__ready(g);
            *ok = true;
            return 0;
        }
    }
    rt_g *wake = NULL;
    int got = rt__chan_take(c, elem, hold, &wake);
    if (got < 0)
        return RT_EAGAIN;
    rt__lock_release(&c->lock);
    rt__chan_wake(wake);
    *ok = got == 1;
    return 0;
}

#endif /* CHAND_RT_CHAN_H */
