/*
 * holds.h - the lock family's bookkeeping (holds.c), which h_lock.c's
 * methods use: who holds each lock (session, fencing token, lease), the
 * server-wide token counter, and who waits for which lock (the wait-for
 * graph that refuses a deadlock).
 *
 * One mutex guards all of it (hold_lock/hold_unlock), together with the
 * fields of hlock below last_token and the bindings of conds.  The runtime
 * lock and its bookkeeping change in a fixed order (take the runtime lock,
 * then record the hold; drop the record, then unlock), so the bookkeeping
 * may briefly lag the runtime, never lead it.
 */
#ifndef CHAND_HOLDS_H
#define CHAND_HOLDS_H

#include "daemon.h"

typedef struct hhold hhold;
typedef struct hwait hwait;

/* A mutex or rwmutex object: the runtime lock and its bookkeeping. */
typedef struct hlock {
    obj o;
    bool rw;
    rt_mutex *m;
    rt_rwmutex *rwm;
    /* guarded by hold_lock(): */
    uint64_t last_token; /* the last token granted on this lock */
    hhold *holds;
    bool owner_dead;       /* the next holder is told */
    uint64_t stale_warned; /* hold_restore's divergence warning, said once */
    unsigned visit;        /* deadlock search generation */
} hlock;

/* Take and drop the bookkeeping mutex (never held across a blocking
 * call). */
void hold_lock(void);
void hold_unlock(void);

/* Tokens stay below this, 2^53: a JSON number any client reads exactly
 * (a double holds it), JavaScript's included. */
#define HOLD_TOKEN_MAX (UINT64_C(1) << 53)
/* Returns the last fencing token issued by the server (0: none yet), for
 * a durable store to persist as an epoch: every later token exceeds it. */
uint64_t hold_token_last(void);
/* Raises the token counter to at least floor (a recovered epoch), so that
 * tokens issued after a restart exceed every one issued before it.  Call
 * before the server listens. */
void hold_token_floor(uint64_t floor);

/* Records a new hold of l (whose runtime lock the caller has just taken)
 * by session sid (0: detached), with a new token (*token) and a lease of
 * lease_ms (0: none); *owner_dead
 * says whether the last holder died holding it (and is then cleared).
 * Returns the hold (owned by l; valid only under hold_lock() once it has
 * returned), or NULL when out of memory or tokens, or l was dropped
 * (l->o.dropped): the runtime lock is then given back. */
hhold *hold_add(hlock *l, uint64_t sid, bool write, int64_t lease_ms,
                bool *owner_dead, uint64_t *token);
/* Returns h's lease in ms, 0: none (hold_lock() held). */
int64_t hold_lease_ms(const hhold *h);
/* The busy op of mutexes and rwmutexes (obj_ops.busy): returns true while
 * a hold exists, else marks the lock dropped (hold_add then refuses it). */
bool hold_busy(obj *o);
/* The forget op (daemon.h): every hold ends, unlogged; o is dropped. */
void hold_forget(obj *o);
/* The idle op of mutexes and rwmutexes: no hold, no owner_dead to tell. */
bool hold_idle(obj *o);
/* Sets the lease of l's hold with token to lease_ms from now (a hold
 * without one gets one).  Returns 0, -1 when token holds nothing on l (or
 * its lease has just expired), -2 when out of memory. */
int hold_renew(hlock *l, uint64_t token, int64_t lease_ms);
/* Removes hold h from its lock and frees it (hold_lock() held).
 * owner_dead: the next holder is told.  unlock: also unlocks the runtime
 * lock (false in cond.wait, where rt_cond_wait unlocks it). */
void hold_drop_locked(hhold *h, bool owner_dead, bool unlock);
/* Returns l's hold with *token (token given) or of session sid (token
 * NULL), of the wanted kind (rwmutex: writer or reader), or NULL
 * (hold_lock() held). */
hhold *hold_find_locked(hlock *l, uint64_t sid, const uint64_t *token,
                        bool write);
/* Returns true while h is still one of l's holds (hold_lock() held). */
bool hold_live_locked(hlock *l, hhold *h);
/* What hold_wait_begin returns besides 0. */
#define HOLD_EDEADLK (-1) /* the wait would close a cycle */
#define HOLD_ENOMEM (-2)
/* Records that session sid waits for l (*w, for hold_wait_end).  Returns
 * 0; or HOLD_EDEADLK when some chain of holders and their waits leads
 * from l back to sid (leases and detached holds excepted: they end
 * without their holder), with Go's message and the path in msg and
 * *cycle (a new array of {session, waits_for, held_by}); or HOLD_ENOMEM.
 */
int hold_wait_begin(hlock *l, uint64_t sid, hwait **w, char *msg, size_t msglen,
                    json_t **cycle);
/* Removes and frees a wait hold_wait_begin recorded. */
void hold_wait_end(hwait *w);
/* The info op of mutexes and rwmutexes: holders, locked, token. */
void hold_info(obj *o, json_t *into);
/* Durability (persist.c): rebuilds a leased hold of l with its token,
 * taking the runtime lock now, with the lease ending at end_ms on the wall
 * clock (overdue: at once after the start).  Returns 0 (also when the
 * lock is taken already: skipped) or -1 (memory). */
int hold_restore(hlock *l, bool write, uint64_t token, int64_t end_ms);
/* Drops l's hold with token, if any (a logged release). */
void hold_restore_release(hlock *l, uint64_t token);
/* obj_ops.snap of mutexes and rwmutexes: their leased holds (the first
 * 64; a lock has more only with readers, each their own lease). */
int hold_snap(obj *o, void *s);

/* Releases the holds of session sid, an ended one, except leases; the
 * next holder of each is told owner_dead. */
void hold_end_session(uint64_t sid);

#endif /* CHAND_HOLDS_H */
