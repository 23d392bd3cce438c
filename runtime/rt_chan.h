/*
 * rt_chan.h - the channel's layout and the helpers chan.c shares with
 * select.c.  Private to the runtime core.
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
};

RT__HIDDEN void rt__chan_send_to(rt_chan *c, rt__waiter *w, const void *elem);
RT__HIDDEN void rt__chan_recv_from(rt_chan *c, rt__waiter *w, void *elem);
RT__HIDDEN void rt__chan_buf_put(rt_chan *c, const void *elem);
RT__HIDDEN void rt__chan_buf_get(rt_chan *c, void *elem);

/* The part of a send that completes at once, shared by rt_chan_send and
 * rt_chan_send_await.  Called with c->lock held: returns 0 (handed to a
 * parked receiver, or buffered) or RT_ESENDCLOSED with the lock released,
 * or RT_EAGAIN with it still held (the caller waits or gives up). */
static inline int rt__chan_send_now(rt_chan *c, const void *elem)
{
    rt__waiter *w;

    if (c->closed) {
        rt__lock_release(&c->lock);
        return RT_ESENDCLOSED;
    }
    if ((w = rt__waitq_pop_claim(&c->recvq)) != NULL) {
        rt_g *g = w->g;
        rt__chan_send_to(c, w, elem);
        rt__lock_release(&c->lock);
        rt__ready(g);
        return 0;
    }
    if (c->qcount < c->cap) {
        rt__chan_buf_put(c, elem);
        rt__lock_release(&c->lock);
        return 0;
    }
    return RT_EAGAIN;
}

/* The same for a receive: 0 with *ok (a value, or closed and drained)
 * and the lock released, or RT_EAGAIN with it held. */
static inline int rt__chan_recv_now(rt_chan *c, void *elem, bool *ok)
{
    rt__waiter *w;

    if (c->closed && c->qcount == 0) {
        rt__lock_release(&c->lock);
        if (elem && c->elemsize)
            memset(elem, 0, c->elemsize);
        *ok = false;
        return 0;
    }
    if ((w = rt__waitq_pop_claim(&c->sendq)) != NULL) {
        rt_g *g = w->g;
        rt__chan_recv_from(c, w, elem);
        rt__lock_release(&c->lock);
        rt__ready(g);
        *ok = true;
        return 0;
    }
    if (c->qcount > 0) {
        rt__chan_buf_get(c, elem);
        rt__lock_release(&c->lock);
        *ok = true;
        return 0;
    }
    return RT_EAGAIN;
}

#endif /* CHAND_RT_CHAN_H */
