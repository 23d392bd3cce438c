/*
 * wal_internal.h - what the wal*.c files share: struct wal, the on-disk
 * constants and types, and the wal__ calls between the files.  Only
 * daemon/wal*.c include it; everyone else uses wal.h.
 *
 * The files:
 *  wal.c          the public calls: open, close, append, flush, sync,
 *                 the durability callback, errors, stats
 *  wal_file.c     file primitives: headers, names, atomic replace, the
 *                 manifest, mapping a file
 *  wal_scan.c     reading the log: the snapshot filter, segment scans,
 *                 snapshot loading and cutting
 *  wal_recover.c  opening data_dir: the lock file, stray files, recovery
 *  wal_flush.c    the flusher thread: group commit, fsync policy,
 *                 disk-full retries, the compaction thread
 *  wal_snap.c     fuzzy snapshots: segment rotation, emit, manifest swap
 *  wal_repair.c   wal_repair: rebuilding the manifest, cutting damage
 *
 * Locks, in the order they nest:
 *  - snap_mu: one snapshot at a time;
 *  - sync_mu: everysec's once-a-second fdatasync, which runs outside
 *    io_mu (so that the I/O thread's writes never wait for it), and a
 *    segment switch, which must not close the file under it;
 *  - io_mu: every write to the segment and manifest files (the flusher's
 *    rounds and a snapshot's segment switch), so fsyncs never run under mu;
 *  - mu: the append buffer (cur), the LSN counters' writers, requests,
 *    the error.  Held by appenders for a memcpy, never across a syscall.
 */
#ifndef CHAND_WAL_INTERNAL_H
#define CHAND_WAL_INTERNAL_H

#include "wal.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define WAL_HDR 32
#define WAL_MAGIC_SEG "CHANDWAL"
#define WAL_MAGIC_SNAP "CHANDSNP"
#define WAL_FORMAT 1
#define WAL_NAME_MAX 64
#define WAL_SNAP_BUF (1u << 20)

/* A growable byte buffer (wal__wbuf_reserve). */
typedef struct wbuf {
    uint8_t *p;
    size_t len, cap;
} wbuf;

/* A live log segment. */
typedef struct wal_seg {
    uint64_t first; /* LSN of its first record */
    uint64_t bytes; /* whole bytes on disk */
} wal_seg;

struct wal {
    char *dir;
    int dirfd, lockfd;
    wal_fsync policy;
    uint64_t floor;
    int retry_ms;
    wal_io io;

    pthread_mutex_t mu;
    pthread_cond_t cv;      /* the flusher waits for work */
    pthread_cond_t done_cv; /* wal_sync waits for rounds */
    wbuf cur;
    _Atomic uint64_t appended, written, durable;
    int flush_req, sync_req, stop;
    uint64_t rounds;
    /* Written under mu; read without it by wal_error's fast path, which
     * every request that changes state takes. */
    _Atomic int err;
    char errmsg[256];
    void (*on_durable)(void *, uint64_t);
    void *on_durable_arg;
    pthread_t thr;
    int thr_started;

    pthread_mutex_t sync_mu;
    /* The flusher is in everysec's fdatasync: it cannot write meanwhile,
     * so a large turn is written by its own thread instead of waiting. */
    _Atomic int syncing;
    /* Under io_mu. */
    pthread_mutex_t io_mu;
    wbuf spare; /* taken from cur, not yet joined to out */
    uint64_t spare_last;
    wbuf out;        /* taken from cur: file bytes from base on */
    size_t out_done; /* of out, written */
    uint64_t out_last;
    uint64_t base; /* bytes of the segment synced (or final, under NO) */
    int seg_fd;
    wal_seg *segs; /* live segments, the last is open */
    size_t nsegs;
    uint64_t snap_lsn;
    int64_t next_sync_ns;

    pthread_mutex_t snap_mu;
    pthread_mutex_t notify_mu; /* serializes the durability callback */
    uint64_t notified;         /* the last LSN it was given */
    /* Compaction on a thread of its own (wal_set_compactor). */
    wal_snap_iter_fn compactor, compact_iter;
    void *compactor_arg, *compact_arg; /* compact_*: the running one's */
    pthread_t compact_thr;
    int compact_thr_started;
    _Atomic int compacting;
    int64_t compact_retry_at;
    _Atomic uint64_t log_closed_bytes, seg_bytes, snap_bytes;
    _Atomic uint64_t fsyncs, last_fsync_ns, pending, snapshots;
    _Atomic uint64_t out_pending; /* of out, unwritten */
    _Atomic uint64_t snap_lsn_pub;
    wal_stats rec; /* recovery figures */
};

struct wal_snap {
    wal *w;
    int fd;
    wbuf buf;
    uint64_t count, bytes;
    int err;
};

/* What MANIFEST names: the live snapshot and segments. */
typedef struct manifest {
    uint64_t snap_lsn; /* 0: no snapshot */
    wal_seg *segs;
    size_t nsegs;
} manifest;

/* The snapshot filter (wal_scan.c): object key -> its LSN in the
 * snapshot, an open-addressing table. */
typedef struct fent {
    char *key;
    size_t n;
    uint64_t lsn;
} fent;

typedef struct filter {
    fent *t;
    size_t cap, used;
} filter;

/* A file mapped for reading (wal__map_file). */
typedef struct mapped {
    const uint8_t *p;
    size_t n;
    int fd;
} mapped;

/* What a scan found. */
typedef struct scan_res {
    uint64_t last; /* LSN of the last good record */
    size_t good;   /* bytes of whole good records, header included */
    int damaged;   /* a bad record at offset good */
    int followed;  /* ... followed by a valid one */
    char why[160];
} scan_res;

/* A replay in progress: where records go and what happened. */
typedef struct replay {
    wal_apply_fn apply;
    void *arg;
    filter f;
    uint64_t applied, skipped;
    int apply_failed;
    char failed[200]; /* eff_format of the record apply refused */
} replay;

/* ---- little helpers (tiny, so inline) ------------------------------ */

static inline int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static inline uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* ---- wal_file.c ---------------------------------------------------------- */

/* Formats into buf (if any), like snprintf. */
void wal__fmt(char *buf, size_t len, const char *f, ...)
    __attribute__((format(printf, 3, 4)));
/* Returns 0 or -ENOMEM; grows b to hold n more bytes. */
int wal__wbuf_reserve(wbuf *b, size_t n);
/* Fills the WAL_HDR bytes at h: magic, format, lsn, checksum. */
void wal__hdr_make(uint8_t *h, const char *magic, uint64_t lsn);
/* Returns 0 and *lsn when h is a valid header of the given magic. */
int wal__hdr_check(const uint8_t *h, size_t n, const char *magic,
                   uint64_t *lsn);
/* Writes the segment file name of first into b (WAL_NAME_MAX bytes). */
void wal__seg_name(char *b, uint64_t first);
/* Writes the snapshot file name of l0 into b (WAL_NAME_MAX bytes). */
void wal__snap_name(char *b, uint64_t l0);
/* Returns 0 or -errno; writes all n bytes, retrying short writes. */
int wal__write_all(int fd, const void *p, size_t n);
/* Returns 0 or -errno; replaces name atomically (tmp, fsync, rename). */
int wal__file_replace(int dirfd, const char *name, const void *p, size_t n);
/* Returns 0 or -errno; writes MANIFEST naming snap_lsn and segs. */
int wal__manifest_write(int dirfd, uint64_t snap_lsn, const wal_seg *segs,
                        size_t nsegs);
/* Returns 0, -ENOENT or -EBADMSG (err); m->segs is new (caller frees). */
int wal__manifest_read(int dirfd, manifest *m, char *err, size_t errlen);
/* Returns 0 or -errno; maps name read-only (or writable) into m. */
int wal__map_file(int dirfd, const char *name, int writable, mapped *m);
/* Unmaps and closes what wal__map_file gave m. */
void wal__unmap_file(mapped *m);

/* ---- wal_scan.c ---------------------------------------------------------- */

/* Frees the filter's keys and table. */
void wal__filter_free(filter *f);
/* Returns 0 or -EBADMSG/-ENOTSUP/...; scans (and applies, when rp) one
 * segment; *next is the LSN expected first and is advanced. */
int wal__scan_seg(const mapped *m, uint64_t first, uint64_t *next, replay *rp,
                  scan_res *sr);
/* Returns 0 or -EBADMSG (err); loads the snapshot of l0 through rp. */
int wal__load_snapshot(int dirfd, const char *dir, uint64_t l0, replay *rp,
                       int repair, uint64_t *bytes, char *err, size_t errlen);

/* ---- wal_recover.c ------------------------------------------------------- */

/* Returns 0 or -errno (err); flock()s data_dir's LOCK file. */
int wal__lock_dir(wal *w, char *err, size_t errlen);
/* Returns a new DIR over dirfd's directory (own offset), NULL on error. */
DIR *wal__dir_list(int dirfd);
/* Returns 1 if dir holds any segment or snapshot file. */
int wal__dir_has_data(int dirfd);
/* Returns 0 or -errno; creates the segment of first, its fd in *fdp. */
int wal__seg_create(wal *w, uint64_t first, int *fdp);
/* Returns 0 or negative (err); recovers w's directory (repair: cuts). */
int wal__recover(wal *w, wal_apply_fn apply, void *arg, int repair, char *err,
                 size_t errlen);

/* ---- wal_flush.c --------------------------------------------------------- */

/* The default wal_io: pwrite(2) and fdatasync(2). */
ssize_t wal__sys_pwrite(void *ctx, int fd, const void *p, size_t n, off_t o);
int wal__sys_fdatasync(void *ctx, int fd);
/* Returns 0 or negative; one round under io_mu (sync: fdatasync too). */
int wal__flush_locked(wal *w, int sync, uint64_t *taken);
/* Calls cb with the durable LSN if it advanced (or after a failure). */
void wal__notify(wal *w, void (*cb)(void *, uint64_t), void *arg, int failed);
/* Returns 0, -EINVAL (no compactor), -EBUSY (one runs) or -errno;
 * starts the compaction thread. */
int wal__compact_start(wal *w);
/* wal_flush writes (and under always syncs) a turn of at most this many
 * bytes itself: about a hundred small records.  Under everysec and no,
 * where the turn's answers wait for the write alone (no fdatasync), up to
 * WAL_INLINE_LAZY_MAX: a pipelined turn (50 clients x 16 requests, some
 * 40 KiB) costs the I/O thread less to write than to hand over (a futex
 * wake per turn, the flusher's switch, the notification back); only a
 * turn of large values, whose write could wait on the kernel's dirty-page
 * throttling, still goes to the flusher. */
#define WAL_INLINE_MAX 4096
#define WAL_INLINE_LAZY_MAX (256u << 10)
/* Writes what is pending on the calling thread (an I/O thread at the end
 * of its turn), and with sync fdatasyncs it.  Returns 0 when done, or -1
 * when the flusher must do it instead (io_mu busy, a failing disk). */
int wal__flush_inline(wal *w, int sync);
void wal__flush_wake(wal *w);
/* The flusher thread's body; arg is the wal. */
void *wal__flusher_main(void *arg);

/* ---- wal.c --------------------------------------------------------------- */

/* Frees w and what it owns (NULL is fine). */
void wal__free(wal *w);
/* Returns a new wal for dir, or NULL. */
wal *wal__alloc(const char *dir);
/* Returns 0 or -errno (err); creates and opens w's directory. */
int wal__open_dir(wal *w, char *err, size_t errlen);

#endif
