/*
 * wal.h - durability: the log of effect records (daemon/effect.h) in
 * data_dir, group commit, fuzzy snapshots, the manifest, recovery and
 * repair.  Self-contained: it knows records, not objects; the caller
 * applies records (recovery) and emits them (appends, snapshots).
 *
 * ---------------------------------------------------------------------
 * Integration (how the handlers use it)
 * ---------------------------------------------------------------------
 *  1. Before listening: epoch_bump() (daemon/epoch.h), then wal_open(),
 *     which replays the snapshot and the log through the apply callback
 *     (records in order; see "Recovery" for what apply must tolerate),
 *     then append an EFF_TOKEN_EPOCH record with the new epoch.
 *  2. A handler decides (select case, timer fired, session ended, token),
 *     then, while it still holds the object's lock, calls wal_append()
 *     and applies the effect; it stores the returned LSN in the object
 *     (obj->lsn), still under the lock.  An effect that is several
 *     records (a delivery: chan_pop + dlv_inflight; a timer's fire:
 *     timer_fire + chan_push; a dead letter: dlv_dead + chan_push onto the
 *     dead-letter channel) goes in with one wal_append_group(), so that a
 *     torn tail never keeps half of it.  So per object the order in the
 *     log is the order of the effects, and a snapshot can tell which
 *     effects an object's state already holds.  (Atomics updated without
 *     a lock must take one around "compute, append, store", or the log's
 *     order of two adds could differ from memory's.)
 *  3. Before a write request is applied, wal_error() == 0; otherwise the
 *     request fails with the reason (disk full); reads keep working.
 *  4. Answers: an answer built when wal_appended_lsn() was A is held
 *     until wal_safe_lsn() >= A: under WAL_FSYNC_ALWAYS wal_durable_lsn()
 *     (reading the global LSN, not the request's own, covers every effect
 *     the answer could reveal, such as a recv of a value another session
 *     pushed).  At the end of each loop turn the I/O thread calls
 *     wal_flush(); the flusher thread writes the turn's records and issues
 *     one fdatasync for all of them, then calls the callback given to
 *     wal_on_durable() (e.g. a write to the I/O threads' eventfd), which
 *     releases the held answers.  Under EVERYSEC and NO wal_safe_lsn() is
 *     the written LSN: wal_flush() hands the records to the kernel each
 *     turn (a small turn with a pwrite on the I/O thread itself, a large
 *     one on the flusher, whose callback then releases its answers), so
 *     a kill -9 loses nothing acknowledged, and power loss at most ~1 s
 *     (EVERYSEC).
 *  5. Compaction: wal_set_compactor() once, and the log compacts itself
 *     when wal_should_compact() says so: a background thread (never the
 *     I/O thread) calls wal_snapshot() with an iterator that
 *     visits the objects one at a time: lock the object, wal_snap_emit()
 *     its state as records whose lsn is obj->lsn, unlock.  The I/O thread
 *     is held only for a buffer swap.  A large object (a channel holding a
 *     million values) would hold its lock for the whole encoding: copy
 *     its state and obj->lsn in one critical section, then emit the copy
 *     unlocked.  State records of one object come in the order that
 *     rebuilds it (chan_make, its values in order, its deliveries, then
 *     chan_close), and are applied with from_snapshot = 1.
 *  6. Shutdown: wal_close() writes and fsyncs what is pending.
 *
 * ---------------------------------------------------------------------
 * Files in data_dir
 * ---------------------------------------------------------------------
 *  LOCK                  flock()ed by the running daemon (holds its pid)
 *  EPOCH                 the token epoch (daemon/epoch.h)
 *  MANIFEST              which snapshot and which log segments are live
 *  snap-<L0>.snap        a snapshot begun when the log's last LSN was L0
 *  wal-<first>.log       a log segment whose first record has LSN <first>
 *  (numbers are 20 decimal digits, so names sort in LSN order)
 *
 * Segment and snapshot files start with a 32-byte header:
 *     8 bytes magic "CHANDWAL" (segment) or "CHANDSNP" (snapshot),
 *     u32 format version (1), u32 0, u64 first LSN (segment) or L0
 *     (snapshot), u32 CRC-32C of the 24 bytes before it, u32 0;
 * then records (effect.h frames), back to back.  In a segment, LSNs are
 * consecutive: the first record has the header's LSN, each next one +1,
 * across segments too.  A snapshot is EFF_SNAP_BEGIN {start_lsn = L0},
 * the objects' records (each with its object's LSN), EFF_SNAP_END {count}.
 *
 * MANIFEST is text: "chand-manifest 1", "snapshot <file>|- <L0>", one
 * "segment <file>" line per live segment in order, then "crc <hex>" (CRC-32C
 * of the lines before).  It is replaced by writing MANIFEST.tmp, fsync,
 * rename over MANIFEST, fsync of the directory: a crash leaves the old or
 * the new one, whole.
 *
 * ---------------------------------------------------------------------
 * Recovery rules
 * ---------------------------------------------------------------------
 *  - The snapshot is read whole; every record is applied (from_snapshot =
 *    1) and the object's snapshot LSN remembered.  A snapshot the manifest
 *    names was fsynced before it was named, and the log synced up to every
 *    LSN its objects hold (so no crash keeps a later effect in the
 *    snapshot and loses an earlier one from the log): any damage in it is
 *    refused; repair keeps its whole records before the damage.
 *  - Log records are applied in order, except a record whose object
 *    (eff_object()) is in the snapshot with an LSN >= the record's: the
 *    snapshot already holds that effect (it was taken while the log ran).
 *  - A record for an object that does not exist must be skipped by apply,
 *    without error: the object was dropped after the snapshot began and
 *    before the walk reached it.  Likewise a drop of a missing object.
 *  - Records of a group (EFF_F_MORE) are applied when the group's last
 *    record is read; a group the log ends inside of is a torn write.
 *  - A damaged record (bad length, CRC, or body, or an LSN out of
 *    sequence) at the end of the last segment, with no valid record after
 *    it, is a torn write: the tail is truncated (from the start of an
 *    unfinished group) and a warning logged.
 *  - A damaged record followed by a valid one, or in a segment other than
 *    the last, makes wal_open() fail with a message naming the file, the
 *    offset and the repair (`chand --repair --data-dir DIR`), which keeps
 *    everything before the damage (wal_repair()).
 *  - A damaged or missing MANIFEST (with log files present) is refused;
 *    repair rebuilds it from the files: the oldest snapshot whose next
 *    segment exists (a newer one may never have been swapped in), and the
 *    segments after it.
 *  - Files no manifest names (an interrupted snapshot, *.tmp) are removed
 *    once the manifest is read.
 *  - A record of an unknown type is refused: written by a newer chand.
 *  - Known limit: a file system that wrote a later page of an unsynced
 *    tail before an earlier one (none of ext4's or XFS's default modes
 *    expose that for appends) would show damage followed by valid
 *    records, and be refused rather than truncated; repair then keeps
 *    the prefix, which is all that was acknowledged under "always".
 *
 * Disk full: a failed write or fsync sets wal_error() (-ENOSPC and a
 * message); the bytes stay in memory and are rewritten from the last
 * synced offset (never a half record in the middle of the file) by
 * retries every retry_ms, until one succeeds and the error clears.
 */
#ifndef CHAND_WAL_H
#define CHAND_WAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "effect.h"

typedef enum wal_fsync {
    WAL_FSYNC_NO = 0,   /* write every turn; the kernel flushes */
    WAL_FSYNC_EVERYSEC, /* write every turn, fdatasync once a second */
    WAL_FSYNC_ALWAYS,   /* write and fdatasync every flush (group commit) */
} wal_fsync;

/* The default compaction floor: the log must pass it to be compacted. */
#define WAL_COMPACT_FLOOR (64ull << 20)

/* I/O functions a test may replace to simulate a full disk; they return
 * what pwrite(2) and fdatasync(2) do, with errno set. */
typedef struct wal_io {
    ssize_t (*pwrite)(void *ctx, int fd, const void *p, size_t n, off_t off);
    int (*fdatasync)(void *ctx, int fd);
    void *ctx;
} wal_io;

typedef struct wal_opts {
    const char *dir; /* data_dir; created if missing */
    wal_fsync fsync;
    uint64_t compact_floor; /* bytes; 0 for WAL_COMPACT_FLOOR */
    int retry_ms;           /* after a write error; 0 for 1000 */
    const wal_io *io;       /* NULL for the real system calls */
} wal_opts;

typedef struct wal_stats {
    uint64_t appended_lsn;
    uint64_t written_lsn;    /* handed to the kernel */
    uint64_t durable_lsn;    /* fdatasynced */
    uint64_t log_bytes;      /* live segments */
    uint64_t snapshot_bytes; /* the live snapshot */
    uint64_t snapshot_lsn;   /* its L0; 0 for none */
    uint64_t pending_bytes;  /* appended, not yet written */
    uint64_t fsyncs;
    uint64_t last_fsync_ns;
    uint64_t snapshots;
    int error; /* wal_error()'s code */
    /* The last recovery (wal_open). */
    uint64_t recovered_records; /* applied, snapshot included */
    uint64_t skipped_records;   /* held by the snapshot already */
    uint64_t truncated_bytes;   /* a torn tail */
    uint64_t recovery_ns;
} wal_stats;

typedef struct wal wal;
typedef struct wal_snap wal_snap;

/* Recovery's callback: applies r (borrowed, valid during the call);
 * returns 0, or nonzero to make wal_open fail. */
typedef int (*wal_apply_fn)(void *arg, const eff_rec *r, int from_snapshot);

/* A snapshot's iterator: emits every object with wal_snap_emit; returns 0,
 * or nonzero to abandon the snapshot. */
typedef int (*wal_snap_iter_fn)(void *arg, wal_snap *s);

/* Opens o->dir (creating it), takes its lock, recovers through apply
 * (which may be NULL to only check) and starts the flusher thread.
 * Returns 0 and a new *out, or a negative code with a message in err
 * (data_dir in use, damage with file, offset and repair advice). */
int wal_open(const wal_opts *o, wal_apply_fn apply, void *arg, wal **out,
             char *err, size_t errlen);

/* Writes and fsyncs what is pending, stops the flusher, releases the
 * lock and frees w.  No append, snapshot or other call may be running or
 * come later.  Returns 0, or the error that lost pending records. */
int wal_close(wal *w);

/* Appends r (borrowed; r->lsn is ignored) to the in-memory buffer;
 * returns 0 and the record's LSN in *lsn (may be NULL), or -EINVAL (a
 * record that cannot be encoded) or -ENOMEM.  Thread-safe, no syscall. */
int wal_append(wal *w, const eff_rec *r, uint64_t *lsn);

/* Appends n records (borrowed) as one effect: consecutive LSNs, and
 * recovery applies them all or none (EFF_F_MORE).  Returns 0 and the last
 * record's LSN in *lsn (may be NULL), or -EINVAL / -ENOMEM (then nothing
 * is appended).  Thread-safe, no syscall. */
int wal_append_group(wal *w, const eff_rec *recs, size_t n, uint64_t *lsn);

/* Returns the LSN of the last record appended. */
uint64_t wal_appended_lsn(wal *w);
/* Returns the LSN up to which every record is fdatasynced. */
uint64_t wal_durable_lsn(wal *w);
/* Returns the LSN up to which answers may reveal effects: the durable
 * LSN under ALWAYS; under EVERYSEC and NO the LSN up to which every record
 * is written to the kernel (a kill -9 then loses none of them). */
uint64_t wal_safe_lsn(wal *w);

/* Hands what is pending to the kernel.  Under ALWAYS: asks the flusher to
 * write and fdatasync it, never blocking.  Under EVERYSEC and NO, when
 * little is pending (a few KiB: a quiet turn): writes it on the calling
 * thread (one pwrite into the page cache, cheaper than waking the
 * flusher), unless io_mu is busy or the disk fails; else the flusher
 * writes it, and the callback says when.  Never waits for a lock or the
 * disk.  Cheap when nothing is pending. */
void wal_flush(wal *w);

/* As wal_flush, at the end of an event-loop turn that can afford to wait
 * for the disk: under ALWAYS a small turn is also written and
 * fdatasynced here (and the durable callback runs) when no round is
 * running, as Redis's event loop does; a large turn, a busy flusher or a
 * failing disk still go to the flusher.  At c=1 that saves the two
 * thread wake-ups of a round trip through the flusher (about 30 us of the
 * 220 us a request took on this machine's disk). */
void wal_flush_turn(wal *w);

/* Writes and fdatasyncs up to lsn whatever the policy, and waits; returns
 * 0, or the write error.  Not for the I/O thread. */
int wal_sync(wal *w, uint64_t lsn);

/* Sets fn, called with the new wal_safe_lsn() (the durable LSN under
 * ALWAYS, the written one otherwise) each time it advances past the last
 * call's (and after a failed round, with the old one): on the flusher
 * thread, an I/O thread that synced its own turn, or a snapshot's (whose
 * segment switch syncs the log).  Calls are
 * serialized and their LSNs never go back.  fn must be quick and must not
 * call wal_sync, wal_snapshot or wal_close. */
void wal_on_durable(wal *w, void (*fn)(void *arg, uint64_t durable), void *arg);

/* Returns 0, or a negative code while writes fail, with the reason in
 * buf (when buf is not NULL). */
int wal_error(wal *w, char *buf, size_t len);

/* Fills *s. */
void wal_stats_get(wal *w, wal_stats *s);

/* Returns 1 when the log has outgrown both the floor and twice the last
 * snapshot, else 0. */
int wal_should_compact(wal *w);

/* Writes a fuzzy snapshot (iter visits the objects), fsyncs it, swaps the
 * manifest and deletes what it replaces.  Blocks for as long as that
 * takes: call it from a background thread.  One at a time (others wait).
 * Returns 0, or a negative code with the reason in err. */
int wal_snapshot(wal *w, wal_snap_iter_fn iter, void *arg, char *err,
                 size_t errlen);

/* Sets the iterator of automatic compaction (NULL: none).  From then on,
 * after a flush round that finds wal_should_compact() true, wal_snapshot
 * (iter, arg) runs on a thread of its own, one at a time; a failure is
 * logged and retried 10 s later.  wal_close waits for a running one, so
 * the objects iter visits must outlive wal_close. */
void wal_set_compactor(wal *w, wal_snap_iter_fn iter, void *arg);

/* Starts a compaction now with the compactor's iterator, on its thread;
 * returns 0, -EBUSY (one runs), -EINVAL (no compactor) or -errno. */
int wal_compact(wal *w);

/* Writes r (borrowed; r->lsn must be its object's LSN) into the snapshot
 * being written; returns 0 or a negative code (abandon the walk). */
int wal_snap_emit(wal_snap *s, const eff_rec *r);

/* Repairs dir: keeps every record before the first damage, truncates the
 * damaged segment there and removes the segments after it.  Returns 0
 * with a report in msg (what was kept and dropped), or a negative code
 * with the reason.  The daemon must not be running on dir. */
int wal_repair(const char *dir, char *msg, size_t msglen);

/* Returns the name of a policy ("always"). */
const char *wal_fsync_name(wal_fsync f);
/* Returns 0 and sets *f for "always", "everysec", "no"; else -EINVAL. */
int wal_fsync_parse(const char *s, wal_fsync *f);

#endif /* CHAND_WAL_H */
