/*
 * time.c - Go's time package on the runtime's internal timers: rt_sleep,
 * Timer (rt_timer_*, rt_after, rt_after_func) and Ticker (rt_ticker_*,
 * rt_tick).  The timer heap itself is timer.c's (rt__timer_*): its
 * callbacks run on a scheduler thread and must not block, so every send
 * from here is an RT_POLL send into a channel of capacity 1.
 *
 * Go 1.23's rule that no stale value is received after Stop or Reset is
 * kept by draining the channel once rt__timer_stop has returned (from
 * then on the callback is neither running nor going to run, so nothing
 * can refill the buffer).  As in Go 1.23, draining a value the program
 * had not received counts as stopping a pending timer: Stop and Reset
 * then return true.  Stop/Reset/free on one timer are serialised by the
 * timer's lock (the callback never takes it, so rt__timer_stop may wait
 * for a running callback while we hold it).
 *
 * rt_after's timer belongs to nobody but its channel's holder, so it is
 * reclaimed here: its callback pushes it on a lock-free list after
 * sending, and the next rt_after/rt_timer_new call frees what is there
 * (rt__timer_stop first guarantees the callback has returned).
 */
#include "rt_internal.h"

#include <stdlib.h>
#include <time.h>

struct rt_timer {
    rt__timer t;
    rt__lock lock;
    rt_chan *c;         /* NULL for AfterFunc timers */
    void (*fn)(void *); /* AfterFunc */
    void *arg;
    bool detached;         /* rt_after: reclaimed after firing */
    struct rt_timer *reap; /* link in time_reap_list */
};

struct rt_ticker {
    rt__timer t;
    rt__lock lock;
    rt_chan *c;
    struct rt_ticker *tick_next; /* link in time_tick_list (rt_tick) */
};

/* Tick's tickers live forever; the list keeps them reachable, so that
 * leak checkers see them as intended, not lost. */
static _Atomic(rt_ticker *) time_tick_list;

static _Atomic(rt_timer *) time_reap_list;

/* Returns now + d, saturating instead of overflowing. */
static int64_t time_when(int64_t d)
{
    int64_t now = rt_now();
    if (d <= 0)
        return now;
    if (d > INT64_MAX - now)
        return INT64_MAX;
    return now + d;
}

/* Empties a timer channel's buffer; returns true if it held a value. */
static bool time_drain(rt_chan *c)
{
    bool drained = false;
    int64_t v;
    bool ok;
    while (rt_chan_recv(c, &v, &ok, RT_POLL) == 0 && ok)
        drained = true;
    return drained;
}

/* ---- sleep ---- */

int rt_sleep(int64_t d_ns)
{
    if (!rt_in_goroutine()) {
        /* A foreign thread cannot park; it can still sleep (no cancel). */
        if (d_ns > 0) {
            struct timespec ts = {d_ns / 1000000000, d_ns % 1000000000};
            while (nanosleep(&ts, &ts) != 0)
                ;
        }
        return 0;
    }
    if (d_ns <= 0)
        return 0; /* Go's Sleep returns at once */
    rt__waiter w;
    rt__waiter_init(&w);
    /* No queue holds w: only the deadline or the cancel token can end
     * the wait. */
    int r = rt__park(&w, 1, time_when(d_ns), NULL, "sleep");
    return r == RT_ECANCELED ? r : 0;
}

/* ---- Timer ---- */

static void time_reap(void)
{
    if (atomic_load_explicit(&time_reap_list, memory_order_relaxed) == NULL)
        return;
    rt_timer *t = atomic_exchange(&time_reap_list, NULL);
    while (t) {
        rt_timer *next = t->reap;
        (void)rt__timer_stop(&t->t); /* returns once the callback has */
        rt_chan_release(t->c);
        free(t);
        t = next;
    }
}

static void time_timer_fire(rt__timer *tt, int64_t now)
{
    rt_timer *t = tt->arg;
    if (t->c) {
        /* A fresh clock read: `now` is when the batch of due timers
         * started, which may be a while ago when many are due at once. */
        now = rt_now();
        /* Full means a value is still unreceived: Go drops the new one. */
        (void)rt_chan_send(t->c, &now, RT_POLL);
    } else {
        (void)rt_go(t->fn, t->arg);
    }
    if (t->detached) {
        rt_timer *head = atomic_load(&time_reap_list);
        do {
            t->reap = head;
        } while (!atomic_compare_exchange_weak(&time_reap_list, &head, t));
    }
}

static rt_timer *time_timer_alloc(bool with_chan)
{
    time_reap();
    rt_timer *t = rt__zalloc(sizeof(*t));
    if (t == NULL)
        return NULL;
    if (with_chan) {
        t->c = rt_chan_make(sizeof(int64_t), 1);
        if (t->c == NULL) {
            free(t);
            return NULL;
        }
    }
    rt__timer_init(&t->t, time_timer_fire, t);
    return t;
}

rt_timer *rt_timer_new(int64_t d_ns)
{
    rt_timer *t = time_timer_alloc(true);
    if (t)
        rt__timer_start(&t->t, time_when(d_ns), 0);
    return t;
}

rt_timer *rt_after_func(int64_t d_ns, void (*fn)(void *), void *arg)
{
    rt_timer *t = time_timer_alloc(false);
    if (t == NULL)
        return NULL;
    t->fn = fn;
    t->arg = arg;
    rt__timer_start(&t->t, time_when(d_ns), 0);
    return t;
}

rt_chan *rt_timer_chan(rt_timer *t)
{
    return t->c;
}

bool rt_timer_stop(rt_timer *t)
{
    rt__lock_acquire(&t->lock);
    bool pending = rt__timer_stop(&t->t);
    if (t->c && time_drain(t->c))
        pending = true;
    rt__lock_release(&t->lock);
    return pending;
}

bool rt_timer_reset(rt_timer *t, int64_t d_ns)
{
    rt__lock_acquire(&t->lock);
    bool pending = rt__timer_stop(&t->t);
    if (t->c && time_drain(t->c))
        pending = true;
    rt__timer_start(&t->t, time_when(d_ns), 0);
    rt__lock_release(&t->lock);
    return pending;
}

void rt_timer_free(rt_timer *t)
{
    if (t == NULL)
        return;
    (void)rt__timer_stop(&t->t);
    if (t->c)
        rt_chan_release(t->c);
    free(t);
}

rt_chan *rt_after(int64_t d_ns)
{
    rt_timer *t = time_timer_alloc(true);
    if (t == NULL)
        return NULL;
    t->detached = true;
    rt_chan *c = rt_chan_retain(t->c);
    rt__timer_start(&t->t, time_when(d_ns), 0);
    return c;
}

/* ---- Ticker ---- */

static void time_ticker_fire(rt__timer *tt, int64_t now)
{
    rt_ticker *t = tt->arg;
    now = rt_now();
    /* A slow receiver misses ticks instead of queueing them (Go). */
    (void)rt_chan_send(t->c, &now, RT_POLL);
}

rt_ticker *rt_ticker_new(int64_t d_ns, int *err)
{
    int dummy;
    if (err == NULL)
        err = &dummy;
    if (d_ns <= 0) {
        *err = RT_ENONPOSTICK;
        return NULL;
    }
    rt_ticker *t = rt__zalloc(sizeof(*t));
    if (t == NULL)
        goto out_nomem;
    t->c = rt_chan_make(sizeof(int64_t), 1);
    if (t->c == NULL)
        goto out_free;
    rt__timer_init(&t->t, time_ticker_fire, t);
    rt__timer_start(&t->t, time_when(d_ns), d_ns);
    *err = 0;
    return t;
out_free:
    free(t);
out_nomem:
    *err = RT_ENOMEM;
    return NULL;
}

rt_chan *rt_ticker_chan(rt_ticker *t)
{
    return t->c;
}

void rt_ticker_stop(rt_ticker *t)
{
    rt__lock_acquire(&t->lock);
    (void)rt__timer_stop(&t->t);
    (void)time_drain(t->c);
    rt__lock_release(&t->lock);
}

int rt_ticker_reset(rt_ticker *t, int64_t d_ns)
{
    if (d_ns <= 0)
        return RT_ENONPOSRESET;
    rt__lock_acquire(&t->lock);
    (void)rt__timer_stop(&t->t);
    (void)time_drain(t->c);
    rt__timer_start(&t->t, time_when(d_ns), d_ns);
    rt__lock_release(&t->lock);
    return 0;
}

void rt_ticker_free(rt_ticker *t)
{
    if (t == NULL)
        return;
    (void)rt__timer_stop(&t->t);
    rt_chan_release(t->c);
    free(t);
}

rt_chan *rt_tick(int64_t d_ns)
{
    /* As Go's time.Tick before 1.23: the ticker can never be stopped, so
     * it lives (and keeps its channel) for the rest of the process. */
    rt_ticker *t = rt_ticker_new(d_ns, NULL);
    if (t == NULL)
        return NULL;
    rt_ticker *head = atomic_load(&time_tick_list);
    do {
        t->tick_next = head;
    } while (!atomic_compare_exchange_weak(&time_tick_list, &head, t));
    return rt_chan_retain(t->c);
}
