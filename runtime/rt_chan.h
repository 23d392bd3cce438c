/*
 * rt_chan.h - the channel's layout and the helpers chan.c shares with
 * select.c.  Private to the runtime core.
 */
#ifndef CHAND_RT_CHAN_H
#define CHAND_RT_CHAN_H

#include "rt_sched.h"

struct rt_chan {
    rt__lock lock;
    _Atomic int refs;
    bool closed;
    size_t elemsize, cap;
    size_t qcount, sendx, recvx;
    rt__waitq recvq, sendq;
    char *buf;
};

RT__HIDDEN void rt__chan_send_to(rt_chan *c, rt__waiter *w,
                                 const void *elem);
RT__HIDDEN void rt__chan_recv_from(rt_chan *c, rt__waiter *w, void *elem);
RT__HIDDEN void rt__chan_buf_put(rt_chan *c, const void *elem);
RT__HIDDEN void rt__chan_buf_get(rt_chan *c, void *elem);

#endif /* CHAND_RT_CHAN_H */
