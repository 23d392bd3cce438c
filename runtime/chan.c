/*
 * chan.c - channels: Go's hchan in C.
 *
 * One lock per channel, a ring buffer of cap elements, and two queues of
 * parked waiters (senders, receivers) following the wait protocol of
 * rt_internal.h.  A value meets a parked partner by direct hand-off: the
 * sender copies straight into the receiver's destination (or out of the
 * sender's source), so an unbuffered exchange copies once.  A full buffer
 * with parked senders: the receiver takes the head and the first sender's
 * value goes to the tail, keeping FIFO order.
 *
 * Where a value goes next (take, give, settle) lives in chan_ack.c, which
 * adds acknowledged delivery; select.c and await.c share it so all follow
 * the same rules.  rt_chan_recv_ack is rt_chan_recv with a hold: both go
 * through the one receive below.
 */
#include "rt_chan.h"

#include <stdlib.h>
#include <string.h>

rt_chan *rt_chan_make(size_t elem_size, size_t cap)
{
    if (elem_size > (1u << 16) || cap > ((size_t)1 << 40) ||
        (elem_size && cap > SIZE_MAX / elem_size - sizeof(rt_chan)))
        return NULL;
    rt_chan *c = calloc(1, sizeof(*c) + elem_size * cap);
    if (!c)
        return NULL;
    atomic_store(&c->refs, 1);
    c->elemsize = elem_size;
    c->cap = cap;
    c->dseq = 1; /* delivery keys start at 1: 0 names none (rt.h) */
    c->buf = (char *)(c + 1);
    return c;
}

rt_chan *rt_chan_retain(rt_chan *c)
{
    if (c)
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void rt_chan_release(rt_chan *c)
{
    if (c &&
        atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) {
        free(c->redq);
        free(c);
    }
}

static inline char *slot(rt_chan *c, size_t i)
{
    return c->buf + i * c->elemsize;
}

static inline void copy_elem(rt_chan *c, void *dst, const void *src)
{
    if (dst && c->elemsize)
        memcpy(dst, src, c->elemsize);
}

void rt__chan_buf_put(rt_chan *c, const void *elem)
{
    if (c->obs)
        c->obs(c->obs_arg, RT_CHAN_PUT, elem);
    if (c->elemsize)
        memcpy(slot(c, c->sendx), elem, c->elemsize);
    if (++c->sendx == c->cap)
        c->sendx = 0;
    /* Atomic stores: select peeks at qcount without the lock. */
    __atomic_store_n(&c->qcount, c->qcount + 1, __ATOMIC_RELAXED);
}

void rt__chan_buf_get(rt_chan *c, void *elem)
{
    char *s = slot(c, c->recvx);
    if (c->obs)
        c->obs(c->obs_arg, RT_CHAN_GET, s);
    copy_elem(c, elem, s);
    if (++c->recvx == c->cap)
        c->recvx = 0;
    __atomic_store_n(&c->qcount, c->qcount - 1, __ATOMIC_RELAXED);
}

/* Lock-free "cannot proceed" checks for polls, as Go's chansend/chanrecv
 * fast paths: the channel was open and full (empty) at the moment of the
 * reads, so failing is a valid outcome.  Fields are written with atomic
 * stores under the lock (rt__chan_buf_*, rt__waitq_*). */
static bool send_would_block(rt_chan *c)
{
    if (__atomic_load_n(&c->closed, __ATOMIC_RELAXED))
        return false;
    if (c->cap == 0)
        return __atomic_load_n(&c->recvq.head, __ATOMIC_RELAXED) == NULL;
    return __atomic_load_n(&c->qcount, __ATOMIC_RELAXED) +
               __atomic_load_n(&c->nredq, __ATOMIC_RELAXED) +
               __atomic_load_n(&c->inflight, __ATOMIC_RELAXED) >=
           c->cap;
}

static bool recv_would_block(rt_chan *c)
{
    if (__atomic_load_n(&c->closed, __ATOMIC_RELAXED))
        return false;
    if (__atomic_load_n(&c->nredq, __ATOMIC_RELAXED) > 0)
        return false;
    if (c->cap == 0)
        return __atomic_load_n(&c->sendq.head, __ATOMIC_RELAXED) == NULL;
    return __atomic_load_n(&c->qcount, __ATOMIC_RELAXED) == 0;
}

int rt_chan_send(rt_chan *c, const void *elem, rt_deadline_t dl)
{
    if (!c || (!elem && c->elemsize))
        return RT_EINVAL;
    if (dl == RT_POLL && send_would_block(c))
        return RT_EAGAIN;
    rt__lock_acquire(&c->lock);
    int now = rt__chan_send_now(c, elem);
    if (now != RT_EAGAIN)
        return now;
    if (dl == RT_POLL) {
        rt__lock_release(&c->lock);
        return RT_EAGAIN;
    }
    if (!rt__getg()) {
        rt__lock_release(&c->lock);
        return RT_EPERM;
    }
    rt__waiter me;
    rt__waiter_init(&me);
    me.elem = (void *)elem;
    rt__waitq_push(&c->sendq, &me);
    /* Unbuffered with acknowledged receivers waiting: the park's unlock
     * hands them the value (see chan_ack.c).  recvq cannot change before
     * that unlock, so without them a plain unlock does the same. */
    int r =
        c->cap == 0 && c->recvq.head
            ? rt__park_ex(&me, 1, dl, rt__chan_settle_unlock, c, "chan send")
            : rt__park(&me, 1, dl, &c->lock, "chan send");
    if (r) {
        rt__lock_acquire(&c->lock);
        rt__waitq_remove(&c->sendq, &me);
        rt__lock_release(&c->lock);
        return r;
    }
    return me.result;
}

/* The one receive: plain (h NULL) or acknowledged (h names the delivery,
 * see chan_ack.c).  Inlined into both entry points so that the plain one
 * folds h away and pays nothing for it. */
static inline __attribute__((always_inline)) int
chan_recv(rt_chan *c, void *elem, bool *ok, rt_chan_hold *h, rt_deadline_t dl)
{
    bool dummy;
    if (!ok)
        ok = &dummy;
    if (!c)
        return RT_EINVAL;
    /* Only a plain poll may fail on the lock-free peek (Go's fast path);
     * an acknowledged poll always decides under the lock. */
    if (dl == RT_POLL && !h && recv_would_block(c))
        return RT_EAGAIN;
    rt__lock_acquire(&c->lock);
    if (rt__chan_recv_now(c, elem, ok, h) == 0)
        return 0;
    if (dl == RT_POLL) {
        rt__lock_release(&c->lock);
        return RT_EAGAIN;
    }
    if (!rt__getg()) {
        rt__lock_release(&c->lock);
        return RT_EPERM;
    }
    size_t esize = c->elemsize;
    rt__waiter me;
    rt__waiter_init(&me);
    me.elem = elem;
    me.hold = h;
    rt__waitq_push(&c->recvq, &me);
    int r = rt__park(&me, 1, dl, &c->lock, "chan receive");
    if (r) {
        rt__lock_acquire(&c->lock);
        rt__waitq_remove(&c->recvq, &me);
        rt__lock_release(&c->lock);
        return r;
    }
    /* Woken by a waker: c may be gone already (closed and released by
     * its owner), so only the waiter and the saved size are read. */
    *ok = me.success;
    if (!me.success && elem && esize)
        memset(elem, 0, esize);
    return 0;
}

int rt_chan_recv(rt_chan *c, void *elem, bool *ok, rt_deadline_t dl)
{
    return chan_recv(c, elem, ok, NULL, dl);
}

int rt_chan_recv_ack(rt_chan *c, void *elem, bool *ok, rt_chan_hold *h,
                     rt_deadline_t dl)
{
    if (!h)
        return RT_EINVAL;
    return chan_recv(c, elem, ok, h, dl);
}

int rt_chan_close(rt_chan *c)
{
    if (!c)
        return RT_ECLOSENIL;
    rt__lock_acquire(&c->lock);
    if (c->closed) {
        rt__lock_release(&c->lock);
        return RT_ECLOSECLOSED;
    }
    __atomic_store_n(&c->closed, true, __ATOMIC_RELAXED);
    if (c->obs)
        c->obs(c->obs_arg, RT_CHAN_CLOSE, NULL);
    /* Claim every waiter first, then ready them all: a waiter must not
     * run (and return, freeing its waiter) while we still walk a queue. */
    rt_g *list = NULL;
    rt__waiter *w;
    /* Receivers wait on while deliveries are in flight: one may yet be
     * requeued.  (Parked receivers mean nothing is buffered.) */
    while (c->inflight == 0 && (w = rt__waitq_pop_claim(&c->recvq)) != NULL) {
        w->success = false;
        w->result = 0;
        w->g->schedlink = list;
        list = w->g;
    }
    while ((w = rt__waitq_pop_claim(&c->sendq)) != NULL) {
        w->success = false;
        w->result = RT_ESENDCLOSED;
        w->g->schedlink = list;
        list = w->g;
    }
    rt__lock_release(&c->lock);
    while (list) {
        rt_g *g = list;
        list = g->schedlink;
        g->schedlink = NULL;
        rt__ready(g);
    }
    return 0;
}

size_t rt_chan_len(rt_chan *c)
{
    if (!c)
        return 0;
    rt__lock_acquire(&c->lock);
    size_t n = c->qcount + c->nredq;
    rt__lock_release(&c->lock);
    return n;
}

size_t rt_chan_cap(rt_chan *c)
{
    return c ? c->cap : 0;
}

void rt_chan_observe(rt_chan *c, rt_chan_observer fn, void *arg)
{
    rt__lock_acquire(&c->lock);
    c->obs = fn;
    c->obs_arg = arg;
    rt__lock_release(&c->lock);
}

bool rt_chan_each(rt_chan *c, void (*fn)(void *arg, const void *elem),
                  void *arg)
{
    rt__lock_acquire(&c->lock);
    fn(arg, NULL);
    for (size_t i = 0, x = c->recvx; i < c->qcount; i++) {
        fn(arg, slot(c, x));
        if (++x == c->cap)
            x = 0;
    }
    bool closed = c->closed;
    rt__lock_release(&c->lock);
    return closed;
}

bool rt_chan_closed(rt_chan *c)
{
    if (!c)
        return false;
    rt__lock_acquire(&c->lock);
    bool closed = c->closed;
    rt__lock_release(&c->lock);
    return closed;
}
