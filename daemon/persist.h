/*
 * persist.h - durability's one narrow interface for the handlers (issue
 * 15): start-up (epoch, recovery through the registry), the effects the
 * handlers emit, the write gate on a full disk, and what the sessions need
 * to hold answers under fsync=always.  Everything is a no-op costing one
 * branch when data_dir is empty (state in memory only).
 *
 * Per object, effects are appended in the order they happen in memory:
 * channels through the runtime's observer (under the channel's lock: a
 * value entering or leaving the buffer, the close), the other families
 * under persist_lock(o) around "change, append".
 */
#ifndef CHAND_PERSIST_H
#define CHAND_PERSIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon.h"
#include "wal.h"

/* The open log, or NULL (in memory; or during recovery). */
extern wal *persist__wal;
/* True when answers wait for fdatasync (fsync = always). */
extern bool persist__gate;

/* Returns the open log, or NULL.  An acquire load: it is set once
 * recovery is done, while recovered leases and timers may already be
 * firing on other threads. */
static inline wal *persist__w(void)
{
    return __atomic_load_n(&persist__wal, __ATOMIC_ACQUIRE);
}

/* Returns true when effects are logged. */
static inline bool persist_on(void)
{
    return persist__w() != NULL;
}

/* With c->data_dir set: bumps the epoch, recovers (objects rebuilt
 * through the registry), logs the epoch and raises the token counter
 * above it.  Before listening.  Returns 0 (also when data_dir is empty),
 * or -1 with a message in err (damage: file, offset and the repair). */
int persist_start(const conf *c, char *err, size_t errlen);
/* Before the server is freed: the log's durability callback stops
 * waking its I/O threads. */
void persist_quiesce(void);
/* Writes and fsyncs what is pending and closes the log.  After the server
 * is freed (its sessions' last flushes use the log). */
void persist_stop(void);
/* chand --repair: repairs c->data_dir and prints the report.  Returns the
 * exit code. */
int persist_repair(const conf *c);

/* Fills the durability figures of *sn (stats.c). */
void persist_stats(stats_snap *sn);

/* Stripe lock around "change, append" for the families without a lock of
 * their own (map, atomic, wg); nothing when not persisting. */
void persist_lock(obj *o);
void persist_unlock(obj *o);

/* Called by hchan_init: logs the make and attaches the observer. */
void persist_chan_made(obj *o, rt_chan *c, size_t cap, const char *elem);
/* Called by reg_drop under the registry lock. */
void persist_drop(obj *o);
/* Effects (o's name; strings borrowed). */
void persist_map_store(obj *o, const char *k, size_t kl, const json_t *v);
void persist_map_delete(obj *o, const char *k, size_t kl);
void persist_map_clear(obj *o);
void persist_atomic_set(obj *o, int64_t v);
void persist_wg_set(obj *o, int64_t v);
void persist_once_done(obj *o, const json_t *value);
/* A leased hold's grant or release (holds.c, under its lock). */
void persist_hold(obj *o, const eff_rec *r);

/* Timers (h_timer_dur.c): appends r; returns its LSN, 0 when not
 * logged. */
uint64_t persist_timer(const eff_rec *r);
/* A timer's firing: the decided r (borrowed until the end call) goes in
 * with the push the firing's send makes onto a channel (the channel's
 * observer, on this thread) as one group, or alone at
 * persist_timer_fire_end when the send pushed nothing (a hand-off to a
 * waiting receiver, a full ticker channel, an afterfunc).  _end returns
 * r's LSN (0: not logged). */
void persist_timer_fire_begin(const eff_rec *r);
uint64_t persist_timer_fire_end(void);

/* Returns false after failing r (reason limit, "disk full ...") while the
 * log cannot be written; true otherwise.  For requests that change
 * state. */
bool persist_write_ok(dreq *r);

/* Set while persist_write_ok answers a refusal: it reveals no state, so
 * it need not wait for the log (which cannot be written). */
extern __thread bool persist__nogate;

/* Returns the LSN an answer built now must wait for (0: none). */
static inline uint64_t persist_gate_lsn(void)
{
    return persist__gate && !persist__nogate ? wal_appended_lsn(persist__w())
                                             : 0;
}
/* Returns the LSN up to which the log is on disk. */
uint64_t persist_durable_lsn(void);
/* Hands the loop turn's records to the flusher (end of a turn). */
static inline void persist_flush(void)
{
    wal *w = persist__w();
    if (w)
        wal_flush(w);
}

/* Emits r (borrowed) into the snapshot s (an obj_ops.snap's argument),
 * tagged with lsn.  Returns 0 or -1. */
int persist_snap_emit(void *s, eff_rec *r, uint64_t lsn);

/* Recovery's builders, in the families' files (h_chan_obj.c, h_map.c,
 * h_sync.c); names NUL-terminated, strings borrowed.  Each returns 0 or
 * -1 (memory). */
int hchan__restore_make(const char *name, size_t cap, const char *elem);
int hchan__restore_push(const char *name, const char *v, size_t n);
int hchan__restore_pop(const char *name, uint64_t count);
int hchan__restore_close(const char *name);
int hmap__restore(const char *name, const char *k, size_t kl, const char *v,
                  size_t vn, int what);
int hatomic__restore(const char *name, int64_t v);
int hlock__restore(const char *name, unsigned kind, uint64_t token,
                   int64_t end_ms, bool grant);
int hwg__restore(const char *name, int64_t v);
int honce__restore(const char *name, const char *v, size_t vn);
/* Timers (h_timer_dur.c): rebuilds one timer record; after recovery,
 * arms what was pending (overdue ones fire at once, once). */
int htimer__restore(const eff_rec *r);
void htimer__restart(void);

#endif /* CHAND_PERSIST_H */
