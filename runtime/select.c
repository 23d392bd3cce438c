/*
 * select.c - rt_select: Go's selectgo in C.
 *
 * Pass 1 locks every named channel in address order (each once, however
 * many cases name it), then polls the cases in a random order and performs
 * the first that can proceed: that gives the uniform choice among ready
 * cases and no lock-order deadlock between selects.  If none is ready and
 * the caller may wait, pass 2 queues one waiter per case, all sharing the
 * goroutine's single claim word, and parks, releasing every lock only once
 * off-stack.  The first waker to claim the wait wins; pass 3 relocks and
 * unlinks the losing waiters.  Small selects keep their arrays on the stack.
 */
#include "rt_chan.h"

#include <stdlib.h>
#include <string.h>

#define SELECT_SMALL 8

typedef struct select_ctx {
    rt_select_case *cases;
    uint32_t *lockorder;
    uint32_t nlock;
} select_ctx;

static void lock_all(const select_ctx *s)
{
    rt_chan *prev = NULL;
    for (uint32_t i = 0; i < s->nlock; i++) {
        rt_chan *c = s->cases[s->lockorder[i]].chan;
        if (c != prev)
            rt__lock_acquire(&c->lock);
        prev = c;
    }
}

static void unlock_all(void *arg)
{
    const select_ctx *s = arg;
    for (uint32_t i = s->nlock; i-- > 0;) {
        rt_chan *c = s->cases[s->lockorder[i]].chan;
        if (i == 0 || s->cases[s->lockorder[i - 1]].chan != c)
            rt__lock_release(&c->lock);
    }
}

/* The park's unlock: unbuffered send cases where acknowledged receivers
 * wait are handed to them first (chan_ack.c), then every lock goes. */
static void settle_unlock_all(void *arg)
{
    const select_ctx *s = arg;
    rt_g *wake = NULL;
    for (uint32_t i = 0; i < s->nlock; i++) {
        rt_select_case *k = &s->cases[s->lockorder[i]];
        if (k->dir == RT_SELECT_SEND && k->chan->cap == 0 &&
            k->chan->recvq.head)
            rt__chan_settle(k->chan, &wake);
    }
    unlock_all(arg);
    rt__chan_wake(wake);
}

static int cmp_case(const void *a, const void *b, void *arg)
{
    const rt_select_case *cases = arg;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    uintptr_t cx = (uintptr_t)cases[x].chan, cy = (uintptr_t)cases[y].chan;
    if (cx != cy)
        return cx < cy ? -1 : 1;
    return x < y ? -1 : (x > y);
}

static void sort_lockorder(rt_select_case *cases, uint32_t *lo, uint32_t n)
{
    if (n > 16) {
        qsort_r(lo, n, sizeof(*lo), cmp_case, cases);
        return;
    }
    for (uint32_t i = 1; i < n; i++) {
        uint32_t v = lo[i], j = i;
        while (j > 0 && cmp_case(&lo[j - 1], &v, cases) > 0) {
            lo[j] = lo[j - 1];
            j--;
        }
        lo[j] = v;
    }
}

/* Performs case i if it can proceed now; its channel's lock is held.
 * Returns true with *ret (the index or RT_ESENDCLOSED) and *partner (a
 * goroutine to ready after unlocking, or NULL). */
static bool try_case(rt_select_case *cs, uint32_t i, int *ret, rt_g **wake)
{
    rt_chan *c = cs->chan;
    if (cs->dir == RT_SELECT_RECV) {
        int got = rt__chan_take(c, cs->elem, cs->ack ? &cs->hold : NULL, wake);
        if (got < 0)
            return false;
        cs->ok = got == 1;
        *ret = (int)i;
        return true;
    }
    int rc = rt__chan_give(c, cs->elem, wake);
    if (rc == RT_EAGAIN)
        return false;
    *ret = rc ? rc : (int)i;
    return true;
}

/* A lock-free guess whether case cs could proceed (racy reads of fields
 * written with atomic stores under the channel's lock). */
static bool case_maybe_ready(const rt_select_case *cs)
{
    rt_chan *c = cs->chan;
    if (__atomic_load_n(&c->closed, __ATOMIC_RELAXED))
        return true;
    size_t q = __atomic_load_n(&c->qcount, __ATOMIC_RELAXED) +
               __atomic_load_n(&c->nredq, __ATOMIC_RELAXED);
    if (cs->dir == RT_SELECT_RECV)
        return q > 0 ||
               __atomic_load_n(&c->sendq.head, __ATOMIC_RELAXED) != NULL;
    return q + __atomic_load_n(&c->inflight, __ATOMIC_RELAXED) < c->cap ||
           __atomic_load_n(&c->recvq.head, __ATOMIC_RELAXED) != NULL;
}

int rt_select(rt_select_case *cases, size_t n, rt_deadline_t dl, int *chosen)
{
    if (n > 0 && !cases)
        return RT_EINVAL;
    if (n > (1u << 20))
        return RT_EINVAL;
    uint32_t nn = 0;
    for (size_t i = 0; i < n; i++) {
        rt_select_case *k = &cases[i];
        if (k->dir != RT_SELECT_SEND && k->dir != RT_SELECT_RECV)
            return RT_EINVAL;
        if (!k->chan)
            continue;
        if (k->dir == RT_SELECT_SEND && !k->elem && k->chan->elemsize)
            return RT_EINVAL;
        nn++;
    }

    uint32_t small_poll[SELECT_SMALL], small_lock[SELECT_SMALL];
    rt__waiter small_w[SELECT_SMALL];
    uint32_t *pollorder = small_poll, *lockorder = small_lock;
    rt__waiter *ws = small_w;
    void *heap = NULL;
    if (nn > SELECT_SMALL) {
        heap = malloc(nn * (2 * sizeof(uint32_t) + sizeof(rt__waiter)) + 16);
        if (!heap)
            return RT_ENOMEM;
        ws = heap;
        pollorder = (uint32_t *)(ws + nn);
        lockorder = pollorder + nn;
    }

    int ret;
    if (nn == 0) {
        /* Only nil channels: Go's select blocks forever (or defaults). */
        if (dl == RT_POLL) {
            ret = RT_EAGAIN;
        } else if (!rt__getg()) {
            ret = RT_EPERM;
        } else {
            ret = rt__park_ex(NULL, 0, dl, NULL, NULL, "select (no cases)");
        }
        goto out_free;
    }

    /* Random poll order (Fisher-Yates as it fills), address lock order. */
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (!cases[i].chan)
            continue;
        uint32_t j = rt__fastrand() % (k + 1);
        pollorder[k] = pollorder[j];
        pollorder[j] = i;
        lockorder[k] = i;
        k++;
    }
    sort_lockorder(cases, lockorder, nn);
    select_ctx sc = {cases, lockorder, nn};

    /* Fast path: in poll order, lock only a channel that looks ready;
     * the first case that really is wins.  This keeps the uniform choice
     * (random order) at one lock instead of all of them. */
    rt_g *partner = NULL; /* goroutines to ready (rt__chan_wake) */
    int idx = -1;
    for (uint32_t p = 0; p < nn; p++) {
        uint32_t i = pollorder[p];
        if (!case_maybe_ready(&cases[i]))
            continue;
        rt_chan *c = cases[i].chan;
        rt__lock_acquire(&c->lock);
        bool done = try_case(&cases[i], i, &ret, &partner);
        rt__lock_release(&c->lock);
        if (done) {
            rt__chan_wake(partner);
            if (chosen)
                *chosen = (int)i;
            goto out_free;
        }
    }

    /* Nothing seemed ready: Go's algorithm under every lock at once. */
    lock_all(&sc);
    for (uint32_t p = 0; p < nn; p++) {
        uint32_t i = pollorder[p];
        if (try_case(&cases[i], i, &ret, &partner)) {
            idx = (int)i;
            break;
        }
    }
    if (idx >= 0) {
        unlock_all(&sc);
        rt__chan_wake(partner);
        if (chosen)
            *chosen = idx;
        goto out_free;
    }
    if (dl == RT_POLL || !rt__getg()) {
        unlock_all(&sc);
        ret = dl == RT_POLL ? RT_EAGAIN : RT_EPERM;
        goto out_free;
    }

    /* Pass 2: one waiter per case, queued in lock order. */
    for (uint32_t q = 0; q < nn; q++) {
        uint32_t i = lockorder[q];
        rt__waiter *w = &ws[q];
        rt__waiter_init(w);
        w->elem = cases[i].elem;
        w->arg = i;
        if (cases[i].dir == RT_SELECT_RECV && cases[i].ack)
            w->hold = &cases[i].hold;
        rt_chan *c = cases[i].chan;
        rt__waitq_push(cases[i].dir == RT_SELECT_RECV ? &c->recvq : &c->sendq,
                       w);
    }
    int r = rt__park_ex(ws, (int)nn, dl, settle_unlock_all, &sc, "select");
    rt_g *g = rt__getg();
    rt__waiter *winner = r == 0 ? g->wake_waiter : NULL;

    /* Pass 3: unlink the waiters that lost. */
    lock_all(&sc);
    for (uint32_t q = 0; q < nn; q++) {
        uint32_t i = lockorder[q];
        rt_chan *c = cases[i].chan;
        rt__waitq_remove(cases[i].dir == RT_SELECT_RECV ? &c->recvq : &c->sendq,
                         &ws[q]);
    }
    unlock_all(&sc);
    if (r) {
        ret = r;
        goto out_free;
    }
    idx = (int)winner->arg;
    if (chosen)
        *chosen = idx;
    if (cases[idx].dir == RT_SELECT_SEND) {
        ret = winner->result ? winner->result : idx;
    } else {
        cases[idx].ok = winner->success;
        /* The channel is still referenced by the case: pass 3 locked it. */
        if (!winner->success && cases[idx].elem && cases[idx].chan->elemsize)
            memset(cases[idx].elem, 0, cases[idx].chan->elemsize);
        ret = idx;
    }
out_free:
    free(heap);
    return ret;
}
