/*
 * wal_flush.c - the flusher thread: group commit rounds, the fsync
 * policy, disk-full retries, durability callbacks, the compaction thread.
 */
#include "wal_internal.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* ---- the flusher ----------------------------------------------------------
 */

ssize_t wal__sys_pwrite(void *ctx, int fd, const void *p, size_t n, off_t o)
{
    (void)ctx;
    return pwrite(fd, p, n, o);
}

int wal__sys_fdatasync(void *ctx, int fd)
{
    (void)ctx;
    return fdatasync(fd);
}

static void set_error(wal *w, int e, const char *what)
{
    char name[WAL_NAME_MAX];

    wal__seg_name(name, w->segs[w->nsegs - 1].first);
    pthread_mutex_lock(&w->mu);
    if (!w->err)
        log_error("wal: %s/%s: %s failed: %s; writes are refused until it "
                  "succeeds (retried every %d ms)",
                  w->dir, name, what, strerror(-e), w->retry_ms);
    w->err = e;
    wal__fmt(w->errmsg, sizeof w->errmsg,
             "durability log: %s of %s/%s failed: %s", what, w->dir, name,
             strerror(-e));
    pthread_mutex_unlock(&w->mu);
}

/* fdatasync's outcome (io_mu held): on success the stats and durable up
 * to lsn; on failure (e, negative) the error, and everything since the
 * last good sync is written again, as the kernel may have dropped the
 * pages it failed to write. */
static void sync_result(wal *w, int e, int64_t t0, uint64_t lsn)
{
    if (e) {
        w->out_done = 0;
        set_error(w, e, "fdatasync");
        return;
    }
    atomic_store(&w->last_fsync_ns, (uint64_t)(now_ns() - t0));
    atomic_fetch_add(&w->fsyncs, 1);
    if (atomic_load(&w->durable) < lsn)
        atomic_store(&w->durable, lsn);
}

/* One round under io_mu: takes cur, writes what is unwritten, and
 * fdatasyncs when sync.  *taken gets the appended LSN at the take. */
int wal__flush_locked(wal *w, int sync, uint64_t *taken)
{
    uint64_t last;
    int rc = 0;

    /* Under mu only an O(1) swap: appenders must never wait for a copy
     * or a realloc of the (up to a second's worth, under everysec)
     * buffer being written. */
    pthread_mutex_lock(&w->mu);
    if (w->cur.len && w->spare.len == 0) {
        wbuf t = w->spare;
        w->spare = w->cur;
        w->cur = t;
        w->spare_last = atomic_load(&w->appended);
    }
    pthread_mutex_unlock(&w->mu);
    if (w->spare.len) {
        /* A swap when out is empty, unless spare is the smaller buffer:
         * under everysec out holds a second's bytes until the sync, and
         * handing its capacity to cur (and growing the small one again)
         * cost a page fault per 4 KiB written, on every round. */
        if (w->out.len == 0 && w->spare.cap >= w->out.cap) {
            wbuf t = w->out;
            w->out = w->spare;
            w->spare = t;
            w->out_last = w->spare_last;
        } else if (wal__wbuf_reserve(&w->out, w->spare.len) == 0) {
            memcpy(w->out.p + w->out.len, w->spare.p, w->spare.len);
            w->out.len += w->spare.len;
            w->spare.len = 0;
            w->out_last = w->spare_last;
        } /* else: out of memory; spare waits for the next round */
    }
    last = w->out.len ? w->out_last : atomic_load(&w->written);
    if (taken)
        *taken = last;
    while (w->out_done < w->out.len) {
        ssize_t k = w->io.pwrite(w->io.ctx, w->seg_fd, w->out.p + w->out_done,
                                 w->out.len - w->out_done,
                                 (off_t)(w->base + w->out_done));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            rc = k < 0 ? -errno : -EIO;
            atomic_store(&w->out_pending,
                         w->out.len - w->out_done + w->spare.len);
            set_error(w, rc, "write");
            return rc;
        }
        w->out_done += (size_t)k;
    }
    if (w->out.len && atomic_load(&w->written) < w->out_last)
        atomic_store(&w->written, w->out_last);
    atomic_store(&w->seg_bytes, w->base + w->out.len);
    if (sync && atomic_load(&w->durable) < atomic_load(&w->written)) {
        int64_t t0 = now_ns();
        rc = w->io.fdatasync(w->io.ctx, w->seg_fd) != 0 ? -errno : 0;
        sync_result(w, rc, t0, atomic_load(&w->written));
        if (rc)
            return rc;
    }
    if (sync || w->policy == WAL_FSYNC_NO) {
        /* Synced, or never to be: the buffer is no longer needed. */
        w->base += w->out.len;
        w->out.len = 0;
        w->out_done = 0;
    }
    pthread_mutex_lock(&w->mu);
    if (w->err) {
        log_info("wal: %s: writing again", w->dir);
        w->err = 0;
        w->errmsg[0] = 0;
    }
    atomic_store(&w->pending, w->cur.len);
    pthread_mutex_unlock(&w->mu);
    atomic_store(&w->out_pending, w->out.len - w->out_done + w->spare.len);
    return 0;
}

/* Calls cb with the durable LSN if it advanced since the last call (or
 * always, after a failure); serialized, so the values never go back.
 * Durability also advances outside the flusher (a snapshot's segment
 * switch syncs the log): every path that syncs ends here. */
void wal__notify(wal *w, void (*cb)(void *, uint64_t), void *arg, int failed)
{
    uint64_t d;

    if (!cb)
        return;
    pthread_mutex_lock(&w->notify_mu);
    d = wal_safe_lsn(w);
    if (d > w->notified || failed) {
        if (d > w->notified)
            w->notified = d;
        cb(arg, d);
    }
    pthread_mutex_unlock(&w->notify_mu);
}

static void *compact_main(void *arg)
{
    wal *w = arg;
    char err[512];
    int rc = wal_snapshot(w, w->compact_iter, w->compact_arg, err, sizeof err);

    if (rc) {
        /* Not again at once: a full disk would make it spin. */
        log_warn("wal: %s: compaction failed (%s); next try in 10 s", w->dir,
                 err);
        pthread_mutex_lock(&w->mu);
        w->compact_retry_at = now_ns() + 10 * (int64_t)1000000000;
        pthread_mutex_unlock(&w->mu);
    }
    atomic_store(&w->compacting, 0);
    return NULL;
}

/* Starts compact_main when a compactor is set, none runs, and the log has
 * outgrown its floor and twice the snapshot.  On the flusher thread (or
 * wal_compact's caller, under mu's protection of the fields). */
int wal__compact_start(wal *w)
{
    int rc;

    if (!w->compactor)
        return -EINVAL;
    if (atomic_exchange(&w->compacting, 1))
        return -EBUSY;
    if (w->compact_thr_started) {
        pthread_join(w->compact_thr, NULL); /* finished: compacting was 0 */
        w->compact_thr_started = 0;
    }
    w->compact_iter = w->compactor;
    w->compact_arg = w->compactor_arg;
    rc = -pthread_create(&w->compact_thr, NULL, compact_main, w);
    if (rc) {
        atomic_store(&w->compacting, 0);
        return rc;
    }
    w->compact_thr_started = 1;
    return 0;
}

static void compact_maybe(wal *w)
{
    pthread_mutex_lock(&w->mu);
    if (w->compactor && !atomic_load(&w->compacting) && !w->stop &&
        now_ns() >= w->compact_retry_at && wal_should_compact(w))
        wal__compact_start(w);
    pthread_mutex_unlock(&w->mu);
}

/* A pwrite into the page cache costs the I/O thread less than waking
 * the flusher and the switch to it (about one context switch per request
 * at c=1, each way).  With sync (always, from wal_flush_turn only: the
 * end of an I/O thread's turn) the fdatasync too, then the durable
 * callback.  The flusher keeps the rest: everysec's fdatasync, a busy
 * io_mu (a round or a snapshot's switch running: it will see the bytes or
 * be woken), and a failing disk, which only its timed retries touch. */
int wal__flush_inline(wal *w, int sync)
{
    void (*cb)(void *, uint64_t);
    void *cb_arg;

    int err;

    pthread_mutex_lock(&w->mu);
    err = w->err || w->stop;
    cb = w->on_durable;
    cb_arg = w->on_durable_arg;
    pthread_mutex_unlock(&w->mu);
    if (err || pthread_mutex_trylock(&w->io_mu) != 0)
        return -1;
    int rc = wal__flush_locked(w, sync, NULL);
    pthread_mutex_unlock(&w->io_mu);
    if (rc != 0)
        return -1; /* the flusher's retries take over from here */
    if (sync)
        wal__notify(w, cb, cb_arg, 0);
    compact_maybe(w);
    return 0;
}

/* everysec's sync: the round's writes under io_mu, then the fdatasync
 * without it (under sync_mu, which keeps the file open), so that the I/O
 * thread's inline writes go on meanwhile, then the synced bytes let go.
 * What was written during the sync waits for the next one.  A failing
 * disk takes the plain round instead (no write is accepted meanwhile). */
static int sync_round(wal *w)
{
    uint64_t lsn;
    size_t upto;
    int fd, rc, e = 0;
    int64_t t0;

    pthread_mutex_lock(&w->sync_mu);
    pthread_mutex_lock(&w->io_mu);
    rc = wal__flush_locked(w, 0, NULL);
    fd = w->seg_fd;
    upto = w->out.len; /* all written: out_done == out.len */
    lsn = atomic_load(&w->written);
    pthread_mutex_unlock(&w->io_mu);
    if (rc || atomic_load(&w->durable) >= lsn) {
        pthread_mutex_unlock(&w->sync_mu);
        return rc;
    }
    t0 = now_ns();
    atomic_store(&w->syncing, 1);
    if (w->io.fdatasync(w->io.ctx, fd) != 0)
        e = -errno;
    atomic_store(&w->syncing, 0);
    pthread_mutex_lock(&w->io_mu);
    sync_result(w, e, t0, lsn);
    if (!e) {
        /* The synced prefix is no longer needed to write again. */
        memmove(w->out.p, w->out.p + upto, w->out.len - upto);
        w->out.len -= upto;
        w->out_done -= upto;
        w->base += upto;
        atomic_store(&w->out_pending, w->out.len - w->out_done + w->spare.len);
    }
    pthread_mutex_unlock(&w->io_mu);
    pthread_mutex_unlock(&w->sync_mu);
    return e;
}

void *wal__flusher_main(void *arg)
{
    wal *w = arg;
    int64_t retry_at = 0;

    pthread_mutex_lock(&w->mu);
    w->next_sync_ns = now_ns() + 1000000000;
    while (!w->stop) {
        int64_t now = now_ns(), wake = INT64_MAX;
        int sync = 0, work, failing;
        void (*cb)(void *, uint64_t);
        void *cb_arg;
        if (w->err) {
            /* Only the retries touch a failing disk. */
            work = now >= retry_at;
            wake = retry_at;
            sync = w->policy != WAL_FSYNC_NO;
        } else {
            work = w->flush_req || w->sync_req;
        }
        if (w->policy == WAL_FSYNC_EVERYSEC && !w->err) {
            if (now >= w->next_sync_ns &&
                (w->cur.len ||
                 atomic_load(&w->durable) < atomic_load(&w->written))) {
                work = 1;
                sync = 1;
            } else if (now >= w->next_sync_ns) {
                /* Nothing to sync: the next second's turn. */
                w->next_sync_ns = now + 1000000000;
            }
            if (w->next_sync_ns < wake)
                wake = w->next_sync_ns;
        }
        if (!work) {
            if (wake == INT64_MAX) {
                pthread_cond_wait(&w->cv, &w->mu);
            } else {
                struct timespec ts = {.tv_sec = wake / 1000000000,
                                      .tv_nsec = wake % 1000000000};
                pthread_cond_timedwait(&w->cv, &w->mu, &ts);
            }
            continue;
        }
        if (w->policy == WAL_FSYNC_ALWAYS || w->sync_req)
            sync = 1;
        w->flush_req = 0;
        w->sync_req = 0;
        failing = w->err != 0;
        cb = w->on_durable;
        cb_arg = w->on_durable_arg;
        pthread_mutex_unlock(&w->mu);

        int rc;
        if (sync && w->policy == WAL_FSYNC_EVERYSEC && !failing) {
            rc = sync_round(w);
        } else {
            pthread_mutex_lock(&w->io_mu);
            rc = wal__flush_locked(w, sync, NULL);
            pthread_mutex_unlock(&w->io_mu);
        }
        if (sync && rc == 0 && w->policy == WAL_FSYNC_EVERYSEC)
            w->next_sync_ns = now_ns() + 1000000000;
        wal__notify(w, cb, cb_arg, rc != 0);

        if (rc == 0)
            compact_maybe(w);
        pthread_mutex_lock(&w->mu);
        if (rc) {
            retry_at = now_ns() + (int64_t)w->retry_ms * 1000000;
            if (sync)
                w->sync_req = 1; /* still owed */
        }
        w->rounds++;
        pthread_cond_broadcast(&w->done_cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}
