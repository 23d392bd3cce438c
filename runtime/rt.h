/*
 * rt.h - the public contract of chand's goroutine runtime (libchandrt).
 *
 * A Go-shaped M:N runtime in C: goroutines (stackful coroutines) scheduled on
 * GOMAXPROCS processors, channels, select, the sync package, atomics and
 * timers.  No networking and no JSON live here; the daemon builds on this.
 *
 * Conventions (one rule for the whole header):
 * - Errors: functions return 0 (or a documented non-negative value) on
 *   success and a negative RT_E* code on failure; rt_strerror() gives Go's
 *   own words for it.  errno is never used to report errors.
 * - Deadlines: every call that can block takes an rt_deadline_t, an absolute
 *   time on the monotonic clock in nanoseconds.  RT_FOREVER waits forever,
 *   RT_POLL does not wait at all (Go's select with default) and fails with
 *   RT_EAGAIN when the operation cannot complete now; any other value gives
 *   up with RT_ETIMEDOUT once rt_now() passes it.
 * - Threads: blocking calls (a deadline other than RT_POLL) may only be made
 *   from a goroutine.  With RT_POLL, and every non-blocking call (close,
 *   unlock, signal, rt_go, ...), may be made from any thread, including
 *   threads the runtime does not own ("foreign threads").
 * - Ownership: *_new and *_make return a new object owned by the caller, who
 *   frees it with the matching *_free or *_release once no goroutine can use
 * it.
 * - Cancellation: a goroutine may attach an rt_cancel; firing it wakes every
 *   blocking call of every attached goroutine with RT_ECANCELED (and makes
 *   later blocking calls fail the same way).
 * - Code that runs on goroutines must not cache the address of a
 *   thread-local (including errno) across a call that can block or yield: a
 *   goroutine may resume on another OS thread.  The runtime saves and
 *   restores errno per goroutine so that errno itself stays coherent.
 */
#ifndef CHAND_RT_H
#define CHAND_RT_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RT_API __attribute__((visibility("default")))

/* ------------------------------------------------------------------ */
/* Errors                                                             */
/* ------------------------------------------------------------------ */

enum {
    RT_OK = 0,
    RT_ENOMEM = -ENOMEM,
    RT_EINVAL = -EINVAL,
    RT_EAGAIN = -EAGAIN,           /* RT_POLL and not ready now */
    RT_ETIMEDOUT = -ETIMEDOUT,     /* the deadline passed */
    RT_ECANCELED = -ECANCELED,     /* the goroutine's rt_cancel fired */
    RT_EDEADLK = -EDEADLK,         /* all goroutines are asleep - deadlock! */
    RT_EPERM = -EPERM,             /* blocking call from a foreign thread */
    RT_EINPROGRESS = -EINPROGRESS, /* an await is waiting (rt_await) */
    RT_ESENDCLOSED = -1001,        /* send on closed channel */
    RT_ECLOSECLOSED = -1002,       /* close of closed channel */
    RT_ECLOSENIL = -1003,          /* close of nil channel */
    RT_EUNLOCK = -1004,            /* sync: unlock of unlocked mutex */
    RT_ERUNLOCK = -1005,           /* sync: RUnlock of unlocked RWMutex */
    RT_EWUNLOCK = -1006,           /* sync: Unlock of unlocked RWMutex */
    RT_ENEGWG = -1007,             /* sync: negative WaitGroup counter */
    RT_EWGREUSE = -1008,           /* sync: WaitGroup is reused before ... */
    RT_ENONPOSTICK = -1009,        /* non-positive interval for NewTicker */
    RT_ENONPOSRESET = -1010,       /* non-positive interval for Ticker.Reset */
    RT_ESTACKOVF = -1011,          /* goroutine stack overflow */
};

/* Returns a static string: Go's message for code, or a description. */
RT_API const char *rt_strerror(int code);

/* ------------------------------------------------------------------ */
/* Time and deadlines                                                 */
/* ------------------------------------------------------------------ */

typedef int64_t rt_deadline_t;
#define RT_FOREVER ((rt_deadline_t)-1)
#define RT_POLL ((rt_deadline_t)0)

/* Returns the monotonic clock in nanoseconds (always > 0). */
RT_API int64_t rt_now(void);
/* Returns a deadline ms from now; ms < 0 gives RT_FOREVER, 0 gives RT_POLL. */
RT_API rt_deadline_t rt_deadline_ms(int64_t ms);

/* ------------------------------------------------------------------ */
/* Runtime lifecycle and introspection                                */
/* ------------------------------------------------------------------ */

typedef struct rt_config {
    int gomaxprocs;    /* number of Ps; <= 0: rt_num_cpu() */
    size_t stack_size; /* bytes reserved per goroutine; 0: default */
} rt_config;

/* Runs fn(arg) as the main goroutine of a fresh runtime, as a Go program:
 * returns 0 when fn returns (other goroutines are abandoned and the
 * scheduler stops), or RT_EDEADLK when every goroutine is blocked and
 * nothing (timer, foreign reference) can wake one; then errbuf (if given)
 * receives "all goroutines are asleep - deadlock!" and a goroutine dump.
 * Must be called from a thread that is not a goroutine. cfg may be NULL. */
RT_API int rt_main(const rt_config *cfg, void (*fn)(void *), void *arg,
                   char *errbuf, size_t errlen);

/* Starts the scheduler in the background for a long-running host (the
 * daemon): returns 0 or a negative code.  No deadlock detection runs. */
RT_API int rt_start(const rt_config *cfg);
/* Stops a runtime started by rt_start: threads are joined; goroutines still
 * parked are abandoned.  Call from a foreign thread. */
RT_API void rt_stop(void);

/* A foreign thread that may still wake goroutines holds a reference, so
 * that rt_main does not report a deadlock meanwhile (like libuv's ref). */
RT_API void rt_ref(void);
RT_API void rt_unref(void);

/* Returns the number of live goroutines (Go's runtime.NumGoroutine). */
RT_API int rt_num_goroutine(void);
/* Sets GOMAXPROCS when n > 0; returns the previous value. */
RT_API int rt_gomaxprocs(int n);
/* Returns the number of usable CPUs. */
RT_API int rt_num_cpu(void);
/* Returns the number of OS threads (Ms) the runtime has created. */
RT_API int rt_num_threads(void);
/* Returns true when the caller runs on a goroutine. */
RT_API bool rt_in_goroutine(void);

/* One live goroutine as rt_goroutines reports it. */
typedef struct rt_ginfo {
    int64_t id;              /* rt_goid() of the goroutine */
    bool parked;             /* blocked in a runtime wait */
    const char *wait_reason; /* Go's words when parked (static), else NULL */
    int64_t waited_ns;       /* how long it has been parked */
} rt_ginfo;
/* Calls f(info, arg) for every live goroutine (a snapshot that may be stale
 * by the time f runs).  f must not block or spawn goroutines. */
RT_API void rt_goroutines(void (*f)(const rt_ginfo *gi, void *arg), void *arg);

/* Writes every live goroutine with its state, wait reason in Go's words
 * ("chan receive", "sync.Mutex.Lock", ...) and how long it has waited. */
RT_API void rt_dump(FILE *out);

/* ------------------------------------------------------------------ */
/* Goroutines                                                         */
/* ------------------------------------------------------------------ */

/* Starts fn(arg) on a new goroutine (Go's `go f()`); callable from any
 * thread.  Returns 0, or RT_ENOMEM.  Called on a goroutine whose P's run
 * queue is full (it spawns faster than any P runs them), it yields once
 * so the backlog drains, as Go's preemption would: do not hold a thread
 * lock (pthread mutex) across it. */
RT_API int rt_go(void (*fn)(void *), void *arg);
/* Yields the processor (runtime.Gosched). */
RT_API void rt_gosched(void);
/* Returns the current goroutine's id, or 0 on a foreign thread. */
RT_API int64_t rt_goid(void);
/* While n is attached (NULL detaches), each time the calling goroutine is
 * parked off its stack in a runtime wait it adds 1 to *n, and takes it
 * back when it resumes: an O(1) count of parked goroutines for a host
 * (rt_goroutines walks them all).  The caller keeps n alive while
 * attached.  No-op on a foreign thread. */
RT_API void rt_park_count_attach(_Atomic int64_t *n);

/* Cancellation sources.  rt_cancel_new returns a new token (not fired). */
typedef struct rt_cancel rt_cancel;
RT_API rt_cancel *rt_cancel_new(void);
/* Fires the token (idempotent, any thread): every goroutine attached to it
 * that is blocked returns RT_ECANCELED, and so do its later blocking calls. */
RT_API void rt_cancel_fire(rt_cancel *c);
RT_API bool rt_cancel_fired(const rt_cancel *c);
/* Frees a token that no goroutine is attached to any more. */
RT_API void rt_cancel_free(rt_cancel *c);
/* Attaches (c != NULL) or detaches (c == NULL) the calling goroutine. The
 * caller keeps c alive while attached. */
RT_API void rt_cancel_attach(rt_cancel *c);

/* ------------------------------------------------------------------ */
/* Channels                                                           */
/* ------------------------------------------------------------------ */

typedef struct rt_chan rt_chan;

/* Returns a new channel of elements of elem_size bytes (copied in and out)
 * and capacity cap (0: unbuffered), with one reference; NULL on ENOMEM. */
RT_API rt_chan *rt_chan_make(size_t elem_size, size_t cap);
/* Adds a reference; returns c. */
RT_API rt_chan *rt_chan_retain(rt_chan *c);
/* Drops a reference; the last one frees the channel (buffered elements are
 * discarded as bytes: drain pointer elements first). */
RT_API void rt_chan_release(rt_chan *c);

/* Sends *elem.  Returns 0, RT_ESENDCLOSED, RT_EAGAIN (RT_POLL),
 * RT_ETIMEDOUT, RT_ECANCELED, RT_EINVAL (c == NULL). */
RT_API int rt_chan_send(rt_chan *c, const void *elem, rt_deadline_t dl);
/* Receives into *elem (may be NULL to discard).  Returns 0 with *ok true for
 * a value, 0 with *ok false and a zeroed *elem when closed and drained;
 * RT_EAGAIN, RT_ETIMEDOUT, RT_ECANCELED, RT_EINVAL otherwise. */
RT_API int rt_chan_recv(rt_chan *c, void *elem, bool *ok, rt_deadline_t dl);
/* Closes c, waking every parked receiver (ok=false) and sender
 * (RT_ESENDCLOSED).  Returns 0, RT_ECLOSECLOSED or RT_ECLOSENIL. */
RT_API int rt_chan_close(rt_chan *c);

/* Awaits: a receive or send that waits without a goroutine, for an
 * event-driven host (the daemon) whose waiting requests would otherwise
 * each cost a goroutine and its stack page.  An await is a heap object holding
 * the wait's state and a buffer for one element; its completion function runs
 * exactly once, on whichever thread completed the wait. */
typedef struct rt_await rt_await;
/* rc: 0 (receive: a value or the close arrived, see rt_await_elem and
 * rt_await_ok; send: a receiver took the element), RT_ESENDCLOSED (send),
 * RT_ETIMEDOUT or RT_ECANCELED.  Once it is called the runtime no longer
 * touches a: fn may free it.  fn must not block (it may run on a
 * scheduler thread, in a sender's call, or inside rt_cancel_fire). */
typedef void (*rt_await_fn)(rt_await *a, int rc, void *arg);
/* Returns a new await for elements of elem_size bytes, or NULL (ENOMEM). */
RT_API rt_await *rt_await_new(size_t elem_size, rt_await_fn fn, void *arg);
/* Frees an await that is not waiting (never started, completed at once,
 * or its fn was called). */
RT_API void rt_await_free(rt_await *a);
/* The element (elem_size bytes): received, or to send (the caller writes
 * it before rt_chan_send_await); and whether a receive got a value (true)
 * or the channel's close (false). */
RT_API void *rt_await_elem(rt_await *a);
RT_API bool rt_await_ok(const rt_await *a);
/* Receives from c into a.  Returns 0 when done at once (fn is not
 * called), RT_EINPROGRESS when a waits (fn will be called -- possibly on
 * another thread before this call returns, so the caller must not touch a
 * after this return), RT_ETIMEDOUT when dl has passed, RT_ECANCELED when
 * tok (may be NULL) has fired, RT_EINVAL.  dl == RT_POLL never waits
 * (RT_EAGAIN). */
RT_API int rt_chan_recv_await(rt_chan *c, rt_await *a, rt_deadline_t dl,
                              rt_cancel *tok);
/* Sends a's element on c, as rt_chan_recv_await receives: 0 when it was
 * handed over or buffered at once, RT_EINPROGRESS (fn gets 0 once a
 * receiver took it, RT_ESENDCLOSED when c was closed first, RT_ETIMEDOUT,
 * RT_ECANCELED: then the element is still in a), RT_ESENDCLOSED,
 * RT_EAGAIN (RT_POLL), RT_ETIMEDOUT, RT_ECANCELED, RT_EINVAL. */
RT_API int rt_chan_send_await(rt_chan *c, rt_await *a, rt_deadline_t dl,
                              rt_cancel *tok);
/* Acknowledged receives (the daemon's issue 18).  A value taken by one stays
 * owned by the channel, "in flight", until rt_chan_ack (done with it) or
 * rt_chan_requeue (give it back): it counts against cap, and a receiver of
 * a closed channel gets ok=false only once nothing is buffered, requeued or
 * in flight.  Requeued values go before the never-delivered ones, in the
 * order of their keys.  On an unbuffered channel the sender of a value
 * taken by an acknowledged receive stays blocked until rt_chan_ack (or a
 * plain receive of the requeued value): its send completes only then. */
typedef struct rt_chan_hold {
    uint64_t seq; /* the delivery's key (never 0): for ack and requeue */
    void *meta;   /* the host's record given to rt_chan_requeue, or NULL */
} rt_chan_hold;
/* rt_chan_recv, acknowledged: with a value (*ok true), *h names it. */
RT_API int rt_chan_recv_ack(rt_chan *c, void *elem, bool *ok, rt_chan_hold *h,
                            rt_deadline_t dl);
/* rt_chan_recv_await, acknowledged; rt_await_hold gives the key. */
RT_API int rt_chan_recv_ack_await(rt_chan *c, rt_await *a, rt_deadline_t dl,
                                  rt_cancel *tok);
RT_API rt_chan_hold rt_await_hold(const rt_await *a);
/* Ends the delivery seq: it leaves the in-flight count (freeing its slot
 * of cap; an unbuffered sender waiting on it completes).  0 or RT_EINVAL. */
RT_API int rt_chan_ack(rt_chan *c, uint64_t seq);
/* Gives elem (copied), delivered as seq, back to c ahead of every value
 * never delivered, with meta (the host's record of it: attempts...), which
 * the next acknowledged receive of it gets in its hold.  was_inflight
 * false: restoring a value (recovery) that was not counted in flight.  0,
 * RT_ENOMEM (nothing changed), RT_EINVAL. */
RT_API int rt_chan_requeue(rt_chan *c, const void *elem, uint64_t seq,
                           void *meta, bool was_inflight);
/* The host's hook on deliveries, called under c's lock in the same
 * critical section as the change (so a durability log records it
 * atomically with it); it must be quick and must not call into c.
 * taken: an acknowledged receive took a value without meta (never
 * delivered: the buffer's head when from_buf -- the observer is then not
 * told of that GET: the hook records it --, an unbuffered sender's, or a
 * requeued one without meta); the hook may set ev->meta, which the hold
 * then carries.  !taken: a plain receive took a requeued value whose meta
 * is ev->meta: its delivery ends. */
typedef struct rt_chan_hold_ev {
    const void *elem;
    uint64_t seq;
    void *meta;
    bool from_buf;
} rt_chan_hold_ev;
typedef void (*rt_chan_hold_hook)(void *arg, bool taken, rt_chan_hold_ev *ev);
RT_API void rt_chan_set_hold_hook(rt_chan *c, rt_chan_hold_hook fn, void *arg);
/* Counts one more delivery, seq, in flight without a receive: a cluster's
 * new leader restoring a delivery its predecessor had handed out.  0 or
 * RT_EINVAL (seq 0). */
RT_API int rt_chan_restore_inflight(rt_chan *c, uint64_t seq);
/* Deliveries in flight (taken by acknowledged receives, not yet acked or
 * requeued). */
RT_API size_t rt_chan_inflight(rt_chan *c);
/* The next delivery key; rt_chan_set_seq raises it (recovery). */
RT_API void rt_chan_set_seq(rt_chan *c, uint64_t next);
/* Calls fn for each requeued element, in delivery order, under c's lock. */
RT_API void rt_chan_each_requeued(rt_chan *c,
                                  void (*fn)(void *arg, const void *elem,
                                             uint64_t seq, void *meta),
                                  void *arg);
/* Buffered plus requeued elements (what a receive could take now). */
RT_API size_t rt_chan_len(rt_chan *c);
RT_API size_t rt_chan_cap(rt_chan *c);
RT_API bool rt_chan_closed(rt_chan *c);

/* A channel's observer: told, with the channel's lock held and in the
 * order they happen, of each element entering the buffer's tail (PUT),
 * leaving its head (GET; elem is the element) and of the close.  A
 * hand-off from a sender to a receiver changes no state and is not told.
 * It must be quick and must not call back into c.  (The daemon's
 * durability log records these as effects, in the buffer's own order.) */
typedef enum { RT_CHAN_PUT = 1, RT_CHAN_GET, RT_CHAN_CLOSE } rt_chan_event;
typedef void (*rt_chan_observer)(void *arg, rt_chan_event ev, const void *elem);
/* Sets c's observer (fn NULL: none). */
RT_API void rt_chan_observe(rt_chan *c, rt_chan_observer fn, void *arg);
/* Calls fn(arg, NULL) and then fn for each buffered element, head first,
 * and returns whether c is closed, all under c's lock (so no change comes
 * between: the first call reads what goes with the state); fn as an
 * observer's. */
RT_API bool rt_chan_each(rt_chan *c, void (*fn)(void *arg, const void *elem),
                         void *arg);

/* ------------------------------------------------------------------ */
/* select                                                             */
/* ------------------------------------------------------------------ */

typedef enum { RT_SELECT_SEND = 1, RT_SELECT_RECV = 2 } rt_select_dir;

typedef struct rt_select_case {
    rt_select_dir dir;
    rt_chan *chan;     /* NULL: this case never proceeds (Go's nil channel) */
    void *elem;        /* send: value to send; recv: where to store (or NULL) */
    bool ok;           /* recv: set to false when the channel was closed */
    bool ack;          /* recv: an acknowledged receive (rt_chan_recv_ack) */
    rt_chan_hold hold; /* recv with ack: the delivery taken */
} rt_select_case;

/* Waits until one case can proceed, chosen uniformly at random among the
 * ready ones, and performs it.  Returns its index (>= 0); RT_EAGAIN when
 * dl is RT_POLL and none is ready (Go's default); RT_ESENDCLOSED when the
 * chosen send case's channel is closed (*chosen gets its index, if given);
 * RT_ETIMEDOUT; RT_ECANCELED; RT_EINVAL for bad cases. */
RT_API int rt_select(rt_select_case *cases, size_t n, rt_deadline_t dl,
                     int *chosen);

/* ------------------------------------------------------------------ */
/* sync                                                               */
/* ------------------------------------------------------------------ */

typedef struct rt_mutex rt_mutex;
RT_API rt_mutex *rt_mutex_new(void);
RT_API void rt_mutex_free(rt_mutex *m);
/* Returns 0 with m held, RT_EAGAIN (RT_POLL), RT_ETIMEDOUT, RT_ECANCELED. */
RT_API int rt_mutex_lock(rt_mutex *m, rt_deadline_t dl);
RT_API bool rt_mutex_trylock(rt_mutex *m);
/* Returns 0 or RT_EUNLOCK.  Any goroutine or thread may unlock (as Go). */
RT_API int rt_mutex_unlock(rt_mutex *m);

typedef struct rt_rwmutex rt_rwmutex;
RT_API rt_rwmutex *rt_rwmutex_new(void);
RT_API void rt_rwmutex_free(rt_rwmutex *rw);
RT_API int rt_rwmutex_lock(rt_rwmutex *rw, rt_deadline_t dl);
RT_API int rt_rwmutex_rlock(rt_rwmutex *rw, rt_deadline_t dl);
RT_API bool rt_rwmutex_trylock(rt_rwmutex *rw);
RT_API bool rt_rwmutex_tryrlock(rt_rwmutex *rw);
/* Returns 0 or RT_EWUNLOCK. */
RT_API int rt_rwmutex_unlock(rt_rwmutex *rw);
/* Returns 0 or RT_ERUNLOCK. */
RT_API int rt_rwmutex_runlock(rt_rwmutex *rw);

/* A Locker for Cond: lock/unlock with an object. */
typedef struct rt_locker {
    int (*lock)(void *obj, rt_deadline_t dl);
    int (*unlock)(void *obj);
    void *obj;
} rt_locker;
RT_API rt_locker rt_mutex_locker(rt_mutex *m);
RT_API rt_locker rt_rwmutex_locker(rt_rwmutex *rw);  /* write side */
RT_API rt_locker rt_rwmutex_rlocker(rt_rwmutex *rw); /* read side */

typedef struct rt_wg rt_wg;
RT_API rt_wg *rt_wg_new(void);
RT_API void rt_wg_free(rt_wg *wg);
/* Adds delta; returns the new counter (>= 0), RT_ENEGWG or RT_EWGREUSE. */
RT_API int64_t rt_wg_add(rt_wg *wg, int64_t delta);
RT_API int64_t rt_wg_done(rt_wg *wg);
/* Returns 0 once the counter is zero; RT_EAGAIN, RT_ETIMEDOUT, ... */
RT_API int rt_wg_wait(rt_wg *wg, rt_deadline_t dl);
RT_API int64_t rt_wg_count(rt_wg *wg);

typedef struct rt_once rt_once;
RT_API rt_once *rt_once_new(void);
RT_API void rt_once_free(rt_once *o);
/* Runs fn(arg) if no call on o has run it yet; every caller returns only
 * after fn has returned.  Returns 1 if this call ran fn, else 0. */
RT_API int rt_once_do(rt_once *o, void (*fn)(void *), void *arg);

typedef struct rt_cond rt_cond;
/* Returns a new Cond over L (Go's sync.NewCond). */
RT_API rt_cond *rt_cond_new(rt_locker L);
RT_API void rt_cond_free(rt_cond *c);
/* Unlocks L, waits for Signal/Broadcast (or the deadline), re-locks L.
 * Returns 0, RT_ETIMEDOUT or RT_ECANCELED; L is held again in every case. */
RT_API int rt_cond_wait(rt_cond *c, rt_deadline_t dl);
RT_API void rt_cond_signal(rt_cond *c);
RT_API void rt_cond_broadcast(rt_cond *c);

typedef struct rt_pool rt_pool;
/* new_fn (may be NULL) makes an object when the pool is empty. */
RT_API rt_pool *rt_pool_new(void *(*new_fn)(void *arg), void *arg);
/* Frees the pool, passing each cached object to dtor (may be NULL). */
RT_API void rt_pool_free(rt_pool *p, void (*dtor)(void *obj));
/* Returns a cached object, a new one from new_fn, or NULL. */
RT_API void *rt_pool_get(rt_pool *p);
RT_API void rt_pool_put(rt_pool *p, void *obj);

/* sync.Map with byte-string keys and opaque values.  ops.retain is applied
 * to every value the map hands out (Load...) and ops.release to every value
 * it drops; ops.equal compares values for the CompareAnd* calls. */
typedef struct rt_map_ops {
    void *(*retain)(void *v);                    /* may be NULL */
    void (*release)(void *v);                    /* may be NULL */
    bool (*equal)(const void *a, const void *b); /* NULL: pointer equality */
} rt_map_ops;
typedef struct rt_map rt_map;
RT_API rt_map *rt_map_new(const rt_map_ops *ops);
RT_API void rt_map_free(rt_map *m);
/* Returns true and a retained *v when key is present. */
RT_API bool rt_map_load(rt_map *m, const void *key, size_t klen, void **v);
/* Stores v (the map retains it). */
RT_API int rt_map_store(rt_map *m, const void *key, size_t klen, void *v);
/* Returns true (loaded) with the existing value in *actual, or stores v and
 * returns false with v in *actual; *actual is retained either way. */
RT_API bool rt_map_load_or_store(rt_map *m, const void *key, size_t klen,
                                 void *v, void **actual);
/* Returns true with the removed value in *v (the caller owns it). */
RT_API bool rt_map_load_and_delete(rt_map *m, const void *key, size_t klen,
                                   void **v);
RT_API void rt_map_delete(rt_map *m, const void *key, size_t klen);
/* Stores v; returns true with the previous value in *prev (caller owns). */
RT_API bool rt_map_swap(rt_map *m, const void *key, size_t klen, void *v,
                        void **prev);
RT_API bool rt_map_compare_and_swap(rt_map *m, const void *key, size_t klen,
                                    const void *old, void *new_v);
RT_API bool rt_map_compare_and_delete(rt_map *m, const void *key, size_t klen,
                                      const void *old);
/* Calls f for each entry (value borrowed) until it returns false. */
/* Calls f for one page of the map's entries (value borrowed), from
 * cursor (0: the start): at most limit of them, in whole buckets (a
 * page's first bucket may pass it; out of memory gives a shorter, maybe
 * empty, page).  Returns the next page's cursor (opaque), 0 when the walk
 * is complete or f returned false.  As with Redis's SCAN, a key present
 * for the whole walk is seen exactly once, even if the map grows between
 * pages (its tables never shrink); a key stored or deleted during the
 * walk may or may not be, and one deleted and stored again may be seen
 * twice.  f runs under no lock and may call back into the map. */
RT_API uint64_t rt_map_range_page(rt_map *m, uint64_t cursor, size_t limit,
                                  bool (*f)(const void *key, size_t klen,
                                            void *v, void *arg),
                                  void *arg);
RT_API void rt_map_range(rt_map *m,
                         bool (*f)(const void *key, size_t klen, void *v,
                                   void *arg),
                         void *arg);
RT_API size_t rt_map_len(rt_map *m);
RT_API void rt_map_clear(rt_map *m);

/* ------------------------------------------------------------------ */
/* sync/atomic: see rt_atomic.h (header-only, over <stdatomic.h>)      */
/* ------------------------------------------------------------------ */

/* ------------------------------------------------------------------ */
/* time                                                               */
/* ------------------------------------------------------------------ */

/* Parks the goroutine for d ns.  Returns 0 or RT_ECANCELED. */
RT_API int rt_sleep(int64_t d_ns);

/* Timer channels carry int64_t values: rt_now() at the moment of firing. */
typedef struct rt_timer rt_timer;
/* Returns a new timer that sends on its channel after d ns (NewTimer). */
RT_API rt_timer *rt_timer_new(int64_t d_ns);
/* Returns a new timer that runs fn(arg) in its own goroutine after d ns
 * (AfterFunc); it has no channel. */
RT_API rt_timer *rt_after_func(int64_t d_ns, void (*fn)(void *), void *arg);
/* Returns the timer's channel (borrowed; NULL for AfterFunc timers). */
RT_API rt_chan *rt_timer_chan(rt_timer *t);
/* Returns true if the call stopped the timer, false if it had already
 * fired or been stopped.  No stale value is received after it (Go 1.23). */
RT_API bool rt_timer_stop(rt_timer *t);
/* Returns true if the timer had been active, as Go's Reset. */
RT_API bool rt_timer_reset(rt_timer *t, int64_t d_ns);
/* Stops and frees t. */
RT_API void rt_timer_free(rt_timer *t);
/* Returns a new reference to the channel of a one-shot timer (After); the
 * caller releases it with rt_chan_release. */
RT_API rt_chan *rt_after(int64_t d_ns);

typedef struct rt_ticker rt_ticker;
/* Returns a new ticker, or NULL with *err = RT_ENONPOSTICK for d <= 0. */
RT_API rt_ticker *rt_ticker_new(int64_t d_ns, int *err);
RT_API rt_chan *rt_ticker_chan(rt_ticker *t); /* borrowed; cap 1 */
RT_API void rt_ticker_stop(rt_ticker *t);
/* Returns 0 or RT_ENONPOSRESET. */
RT_API int rt_ticker_reset(rt_ticker *t, int64_t d_ns);
RT_API void rt_ticker_free(rt_ticker *t);
/* Returns a new reference to a ticker's channel (Tick), NULL for d <= 0. */
RT_API rt_chan *rt_tick(int64_t d_ns);

#ifdef __cplusplus
}
#endif
#endif /* CHAND_RT_H */
