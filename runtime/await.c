/*
 * await.c - rt_await: a channel receive or send that waits without a
 * goroutine.
 *
 * The daemon parks thousands of requests in recv; a goroutine each costs a
 * stack page and two thread hand-offs (start it, then answer from it).  An
 * await instead queues a waiter whose "goroutine" is a stand-in g with no
 * stack: it takes part in the one wait protocol of rt_internal.h (wakers,
 * the deadline timer and the cancel token claim it through its wait_state
 * word), and rt__ready, seeing g->wakef, completes it on the spot instead of
 * scheduling it.  So a sender that finds a parked await hands its value over
 * and runs the host's completion in its own call (and a receiver that finds
 * a sending await takes its value likewise).
 *
 * Completion order matters because fn may free the await: unlink the waiter
 * (a waker already did; timeout and cancel must), stop the deadline timer
 * (waiting for its callback if it runs elsewhere), leave the token, drop the
 * channel reference, and only then call fn.  A timeout is claimed inside
 * the timer's own callback, and the timer module touches the timer after
 * its callback returns, so that completion moves to a goroutine.
 */
#include "rt_chan.h"

#include <stdlib.h>
#include <string.h>

struct rt_await {
    rt_g g; /* stand-in: never runs, has no stack */
    rt__waiter w;
    rt_chan *c;   /* retained while waiting */
    rt__waitq *q; /* c's recvq or sendq */
    rt_await_fn fn;
    void *arg;
    size_t elemsize;
    bool ok;
    rt_chan_hold hold; /* an acknowledged receive's delivery */
    _Alignas(16) unsigned char elem[];
};

rt_await *rt_await_new(size_t elem_size, rt_await_fn fn, void *arg)
{
    rt_await *a;

    if (!fn || elem_size > (1u << 16))
        return NULL;
    a = rt__zalloc(sizeof *a + elem_size);
    if (!a)
        return NULL;
    a->fn = fn;
    a->arg = arg;
    a->elemsize = elem_size;
    return a;
}

void rt_await_free(rt_await *a)
{
    free(a);
}

void *rt_await_elem(rt_await *a)
{
    return a->elem;
}

bool rt_await_ok(const rt_await *a)
{
    return a->ok;
}

rt_chan_hold rt_await_hold(const rt_await *a)
{
    return a->hold;
}

/* Everything but fn; after it a belongs to fn alone. */
static void await_settle(rt_await *a)
{
    rt_chan *c = a->c;

    if (!a->g.wake_waiter) { /* timeout, cancel: no waker unlinked it */
        rt__lock_acquire(&c->lock);
        rt__waitq_remove(a->q, &a->w);
        rt__lock_release(&c->lock);
    }
    if (a->g.timer_armed) {
        rt__timer_stop(&a->g.park_timer);
        a->g.timer_armed = false;
    }
    rt__cancel_detach(&a->g);
    a->c = NULL;
    rt_chan_release(c);
}

static void await_finish(rt_await *a)
{
    int rc = a->g.wake_reason;

    if (rc == 0) { /* a waker's outcome: a value, or the close */
        rc = a->w.result;
        a->ok = a->w.success;
    }
    await_settle(a);
    a->fn(a, rc, a->arg);
}

static void await_timeout_go(void *arg)
{
    await_finish(arg);
}

static void await_timeout_retry(rt__timer *t, int64_t now);

/* From the deadline timer's callback: finish on a goroutine, which the
 * timer stop in await_settle makes wait until this callback has left. */
static void await_defer(rt_await *a, int64_t now)
{
    if (rt_go(await_timeout_go, a) == 0)
        return;
    /* No memory for a goroutine: try again shortly (the wait stays
     * claimed, so nothing else can complete it meanwhile). */
    a->g.park_timer.fn = await_timeout_retry;
    rt__timer_start(&a->g.park_timer, now + 1000000, 0);
}

static void await_timeout_retry(rt__timer *t, int64_t now)
{
    await_defer(t->arg, now);
}

static void await_wake(rt_g *g)
{
    rt_await *a = (rt_await *)((char *)g - offsetof(rt_await, g));

    if (g->wake_reason == RT_ETIMEDOUT)
        await_defer(a, rt_now());
    else
        await_finish(a);
}

static void await_timer_fn(rt__timer *t, int64_t now)
{
    rt_await *a = t->arg;
    int s = RT__WS_WAITING;

    (void)now;
    if (atomic_compare_exchange_strong(&a->g.wait_state, &s, RT__WS_CLAIMED)) {
        a->g.wake_reason = RT_ETIMEDOUT;
        a->g.wake_waiter = NULL;
        rt__ready(&a->g);
    }
}

/* Claims a's own wait (it is set up under the channel lock, so no waker
 * can have claimed it yet; the token or the timer may have). */
static bool await_self_claim(rt_await *a, int reason)
{
    int s = RT__WS_WAITING;

    if (!atomic_compare_exchange_strong(&a->g.wait_state, &s, RT__WS_CLAIMED))
        return false;
    a->g.wake_reason = reason;
    return true;
}

/* Queues a on q of c (whose lock the caller holds; released here) to
 * wait until dl or tok.  Returns RT_EINPROGRESS, or RT_ECANCELED when tok
 * fired as it was attached. */
static int await_wait(rt_await *a, rt_chan *c, rt__waitq *q, rt_deadline_t dl,
                      rt_cancel *tok, const char *reason, rt_chan_hold *hold)
{
    int rc = 0;

    /* Wait.  Everything is set up before the channel lock is released, so
     * a waker (which needs that lock) finds a complete await; the token
     * and the timer may claim it sooner, but their completion also takes
     * the lock first. */
    memset(&a->g, 0, sizeof a->g);
    memset(&a->w, 0, sizeof a->w);
    a->g.wakef = await_wake;
    a->g.wait_reason = reason;
    a->g.status = RT__G_PARKED;
    atomic_store(&a->g.wait_state, RT__WS_WAITING);
    a->w.g = &a->g;
    a->w.elem = a->elem;
    a->w.hold = hold;
    a->c = rt_chan_retain(c);
    rt__waitq_push(q, &a->w);
    a->q = q;
    if (tok) {
        rt__cancel_attach_g(&a->g, tok);
        /* Dekker with rt_cancel_fire, as rt__park: wait published, then
         * the flag read. */
        if (rt_cancel_fired(tok) && await_self_claim(a, RT_ECANCELED))
            rc = RT_ECANCELED;
    }
    if (rc == 0 && dl != RT_FOREVER) {
        rt__timer_init(&a->g.park_timer, await_timer_fn, a);
        a->g.timer_armed = true;
        rt__timer_start(&a->g.park_timer, dl, 0);
    }
    if (rc != 0) {
        rt__waitq_remove(q, &a->w);
        rt__lock_release(&c->lock);
        rt__cancel_detach(&a->g);
        a->c = NULL;
        rt_chan_release(c);
        return rc;
    }
    /* A sender queued on an unbuffered channel where acknowledged
     * receivers wait is handed to them now (chan_ack.c). */
    if (q == &c->sendq && c->cap == 0 && c->recvq.head) {
        rt__chan_settle_unlock(c);
        return RT_EINPROGRESS;
    }
    rt__lock_release(&c->lock);
    return RT_EINPROGRESS;
}

/* The checks both entry points make before taking the lock. */
static int await_check(rt_chan *c, rt_await *a, rt_deadline_t dl,
                       rt_cancel *tok)
{
    if (!c || !a || a->elemsize != c->elemsize)
        return RT_EINVAL;
    if (dl != RT_POLL && tok && rt_cancel_fired(tok))
        return RT_ECANCELED;
    return 0;
}

/* After a *_now that could not complete (lock held): gives up for a poll
 * or a past deadline, else waits. */
static int await_or_wait(rt_await *a, rt_chan *c, rt__waitq *q,
                         rt_deadline_t dl, rt_cancel *tok, const char *reason)
{
    if (dl == RT_POLL || (dl != RT_FOREVER && dl <= rt_now())) {
        rt__lock_release(&c->lock);
        return dl == RT_POLL ? RT_EAGAIN : RT_ETIMEDOUT;
    }
    return await_wait(a, c, q, dl, tok, reason, NULL);
}

static int recv_await(rt_chan *c, rt_await *a, rt_deadline_t dl, rt_cancel *tok,
                      rt_chan_hold *hold)
{
    int rc = await_check(c, a, dl, tok);

    if (rc)
        return rc;
    rt__lock_acquire(&c->lock);
    if (rt__chan_recv_now(c, a->elem, &a->ok, hold) == 0)
        return 0;
    if (dl == RT_POLL || (dl != RT_FOREVER && dl <= rt_now())) {
        rt__lock_release(&c->lock);
        return dl == RT_POLL ? RT_EAGAIN : RT_ETIMEDOUT;
    }
    return await_wait(a, c, &c->recvq, dl, tok, "chan receive", hold);
}

int rt_chan_recv_await(rt_chan *c, rt_await *a, rt_deadline_t dl,
                       rt_cancel *tok)
{
    return recv_await(c, a, dl, tok, NULL);
}

int rt_chan_recv_ack_await(rt_chan *c, rt_await *a, rt_deadline_t dl,
                           rt_cancel *tok)
{
    return recv_await(c, a, dl, tok, &a->hold);
}

int rt_chan_send_await(rt_chan *c, rt_await *a, rt_deadline_t dl,
                       rt_cancel *tok)
{
    int rc = await_check(c, a, dl, tok);

    if (rc)
        return rc;
    rt__lock_acquire(&c->lock);
    rc = rt__chan_send_now(c, a->elem);
    if (rc != RT_EAGAIN)
        return rc;
    return await_or_wait(a, c, &c->sendq, dl, tok, "chan send");
}
