/*
 * cond.c - sync.Cond: rt_cond_* over any rt_locker.
 *
 * Wait queues itself under the Cond's internal lock, then unlocks L while
 * still holding that lock, and parks (rt__park drops the internal lock
 * once the goroutine is off its stack).  So a Signal or Broadcast that
 * follows L.Unlock -- they take the internal lock -- always finds the
 * waiter: no wake-up is lost between unlocking L and sleeping, as Go's
 * notifyList tickets guarantee.  A signal with no waiter is lost, as Go's.
 * L.Unlock runs under the internal lock, so it must not block: true of
 * every Locker the runtime makes (unlock never blocks).
 *
 * L is re-locked in every case, also after a timeout or cancellation.
 * The re-lock must not be cut short by the goroutine's (fired) cancel
 * token, so it runs with the token detached (and retries should it still
 * fail).
 */
#include "rt_internal.h"

#include <stdlib.h>

struct rt_cond {
    rt_locker L;
    rt__lock lock;
    rt__waitq waiters;
};

rt_cond *rt_cond_new(rt_locker L)
{
    rt_cond *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->L = L;
    return c;
}

void rt_cond_free(rt_cond *c)
{
    free(c);
}

/* Re-locks L whatever the goroutine's cancel token says. */
static void cond_relock(rt_cond *c)
{
    rt_cancel *tok = rt__cancel_current();
    int r;

    if (tok)
        rt_cancel_attach(NULL);
    r = c->L.lock(c->L.obj, RT_FOREVER);
    if (tok)
        rt_cancel_attach(tok);
    if (r == 0)
        return;
    while (c->L.lock(c->L.obj, RT_FOREVER) != 0)
        rt_gosched();
}

int rt_cond_wait(rt_cond *c, rt_deadline_t dl)
{
    if (!rt_in_goroutine())
        return RT_EPERM;
    rt__waiter w;
    rt__waiter_init(&w);
    w.result = 0;
    rt__lock_acquire(&c->lock);
    rt__waitq_push(&c->waiters, &w);
    c->L.unlock(c->L.obj);
    int r;
    if (dl == RT_POLL) {
        /* Nothing can have signalled us yet: we hold c->lock. */
        rt__waitq_remove(&c->waiters, &w);
        rt__lock_release(&c->lock);
        r = RT_EAGAIN;
    } else {
        r = rt__park(&w, 1, dl, &c->lock, "sync.Cond.Wait");
        if (r != 0) {
            rt__lock_acquire(&c->lock);
            rt__waitq_remove(&c->waiters, &w);
            rt__lock_release(&c->lock);
        }
    }
    cond_relock(c);
    return r;
}

void rt_cond_signal(rt_cond *c)
{
    rt__lock_acquire(&c->lock);
    rt__waiter *w = rt__waitq_pop_claim(&c->waiters);
    rt_g *g = NULL;
    if (w) {
        w->result = 0;
        g = w->g;
    }
    rt__lock_release(&c->lock);
    if (g)
        rt__ready(g);
}

void rt_cond_broadcast(rt_cond *c)
{
    /* Every waiter is popped under one hold of the lock and readied only
     * after it is released: a woken waiter may free the Cond at once. */
    rt__waiter *chain = NULL, **tail = &chain, *w;
    rt__lock_acquire(&c->lock);
    while ((w = rt__waitq_pop_claim(&c->waiters)) != NULL) {
        w->result = 0;
        w->next = NULL;
        *tail = w;
        tail = &w->next;
    }
    rt__lock_release(&c->lock);
    while (chain) {
        w = chain;
        chain = w->next; /* read before w's goroutine may run */
        rt__ready(w->g);
    }
}
