/*
 * cancel.c - rt_cancel, the cancellation token a goroutine attaches to.
 *
 * The token keeps a list of attached goroutines.  Firing it (any thread)
 * marks it fired, then claims the current wait of every attached goroutine
 * that is parked, through the same claim word wakers and deadline timers
 * use, so exactly one party wakes a wait.  rt__park checks the flag after
 * publishing its wait, so a token fired just before a goroutine parks is
 * seen by one side or the other (both sides use sequentially consistent
 * atomics).
 */
#include "rt_sched.h"

#include <stdlib.h>

struct rt_cancel {
    rt__lock lock;
    _Atomic bool fired;
    rt_g *head;
};

rt_cancel *rt_cancel_new(void)
{
    return calloc(1, sizeof(rt_cancel));
}

bool rt_cancel_fired(const rt_cancel *c)
{
    return c && atomic_load(&((rt_cancel *)c)->fired);
}

/* Takes g off c's list (c's lock held). */
static void cancel_unlink_locked(rt_cancel *c, rt_g *g)
{
    if (g->cprev)
        g->cprev->cnext = g->cnext;
    else
        c->head = g->cnext;
    if (g->cnext)
        g->cnext->cprev = g->cprev;
    g->cnext = g->cprev = NULL;
    g->cancel = NULL;
}

void rt_cancel_fire(rt_cancel *c)
{
    if (!c || atomic_exchange(&c->fired, true))
        return;
    rt_g *awaits = NULL;
    rt__lock_acquire(&c->lock);
    for (rt_g *g = c->head, *next; g; g = next) {
        next = g->cnext;
        int s = RT__WS_WAITING;
        if (!atomic_compare_exchange_strong(&g->wait_state, &s, RT__WS_CLAIMED))
            continue;
        g->wake_reason = RT_ECANCELED;
        g->wake_waiter = NULL;
        if (!g->wakef) {
            rt__ready(g);
            continue;
        }
        /* An await's completion takes other locks and may free it: unlink
         * it here and complete it once the token's lock is released. */
        cancel_unlink_locked(c, g);
        g->schedlink = awaits;
        awaits = g;
    }
    rt__lock_release(&c->lock);
    while (awaits) {
        rt_g *g = awaits;
        awaits = g->schedlink;
        g->schedlink = NULL;
        rt__ready(g);
    }
}

void rt_cancel_free(rt_cancel *c)
{
    free(c);
}

void rt__cancel_detach(rt_g *g)
{
    rt_cancel *c = g->cancel;
    if (!c)
        return;
    rt__lock_acquire(&c->lock);
    cancel_unlink_locked(c, g);
    rt__lock_release(&c->lock);
}

void rt_cancel_attach(rt_cancel *c)
{
    rt_g *g = rt__getg();
    if (!g)
        return;
    rt__cancel_attach_g(g, c);
}

void rt__cancel_attach_g(rt_g *g, rt_cancel *c)
{
    rt__cancel_detach(g);
    if (!c)
        return;
    rt__lock_acquire(&c->lock);
    g->cprev = NULL;
    g->cnext = c->head;
    if (c->head)
        c->head->cprev = g;
    c->head = g;
    g->cancel = c;
    rt__lock_release(&c->lock);
}

/* Cond's Wait re-takes its lock with the token detached so that a fired
 * token cannot stop it from doing so; it needs to know the token to put it
 * back afterwards. */
rt_cancel *rt__cancel_current(void)
{
    rt_g *g = rt__getg();
    return g ? g->cancel : NULL;
}
