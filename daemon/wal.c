/*
 * wal.c - the durability log's public calls (wal.h): open, close, append,
 * flush, sync, the durability callback, errors, stats.  The other parts
 * are in wal_*.c; wal_internal.h lists them and the lock order.
 */
#include "wal_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* ---- the public calls ---------------------------------------------------- */

void wal__free(wal *w)
{
    if (!w)
        return;
    if (w->seg_fd >= 0)
        close(w->seg_fd);
    if (w->lockfd >= 0)
        close(w->lockfd);
    if (w->dirfd >= 0)
        close(w->dirfd);
    pthread_mutex_destroy(&w->mu);
    pthread_mutex_destroy(&w->io_mu);
    pthread_mutex_destroy(&w->sync_mu);
    pthread_mutex_destroy(&w->snap_mu);
    pthread_mutex_destroy(&w->notify_mu);
    pthread_cond_destroy(&w->cv);
    pthread_cond_destroy(&w->done_cv);
    free(w->cur.p);
    free(w->out.p);
    free(w->spare.p);
    free(w->segs);
    free(w->dir);
    free(w);
}

wal *wal__alloc(const char *dir)
{
    wal *w = calloc(1, sizeof *w);
    pthread_condattr_t ca;

    if (!w)
        return NULL;
    w->dirfd = w->lockfd = w->seg_fd = -1;
    w->dir = strdup(dir);
    pthread_mutex_init(&w->mu, NULL);
    pthread_mutex_init(&w->io_mu, NULL);
    pthread_mutex_init(&w->sync_mu, NULL);
    pthread_mutex_init(&w->snap_mu, NULL);
    pthread_mutex_init(&w->notify_mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_cond_init(&w->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (!w->dir) {
        wal__free(w);
        return NULL;
    }
    return w;
}

int wal__open_dir(wal *w, char *err, size_t errlen)
{
    if (mkdir(w->dir, 0700) != 0 && errno != EEXIST) {
        int e = -errno;
        wal__fmt(err, errlen, "data_dir %s: cannot create: %s", w->dir,
                 strerror(errno));
        return e;
    }
    w->dirfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dirfd < 0) {
        int e = -errno;
        wal__fmt(err, errlen, "data_dir %s: %s", w->dir, strerror(errno));
        return e;
    }
    return wal__lock_dir(w, err, errlen);
}

int wal_open(const wal_opts *o, wal_apply_fn apply, void *arg, wal **out,
             char *err, size_t errlen)
{
    wal *w;
    int rc;

    *out = NULL;
    if (!o || !o->dir || !o->dir[0]) {
        wal__fmt(err, errlen, "no data_dir");
        return -EINVAL;
    }
    w = wal__alloc(o->dir);
    if (!w) {
        wal__fmt(err, errlen, "out of memory");
        return -ENOMEM;
    }
    w->policy = o->fsync;
    w->floor = o->compact_floor ? o->compact_floor : WAL_COMPACT_FLOOR;
    w->retry_ms = o->retry_ms > 0 ? o->retry_ms : 1000;
    w->io.pwrite = wal__sys_pwrite;
    w->io.fdatasync = wal__sys_fdatasync;
    if (o->io) {
        w->io = *o->io;
        if (!w->io.pwrite)
            w->io.pwrite = wal__sys_pwrite;
        if (!w->io.fdatasync)
            w->io.fdatasync = wal__sys_fdatasync;
    }
    rc = wal__open_dir(w, err, errlen);
    if (rc)
        goto out_free;
    rc = wal__recover(w, apply, arg, 0, err, errlen);
    if (rc)
        goto out_free;
    rc = -pthread_create(&w->thr, NULL, wal__flusher_main, w);
    if (rc) {
        wal__fmt(err, errlen, "cannot start the flusher thread: %s",
                 strerror(-rc));
        goto out_free;
    }
    w->thr_started = 1;
    log_info("wal: %s: recovered %" PRIu64 " records (%" PRIu64
             " held by the snapshot) in %.1f ms; last LSN %" PRIu64,
             w->dir, w->rec.recovered_records, w->rec.skipped_records,
             (double)w->rec.recovery_ns / 1e6, atomic_load(&w->appended));
    *out = w;
    return 0;
out_free:
    wal__free(w);
    return rc;
}

void wal_set_compactor(wal *w, wal_snap_iter_fn iter, void *arg)
{
    pthread_mutex_lock(&w->mu);
    w->compactor = iter;
    w->compactor_arg = arg;
    pthread_mutex_unlock(&w->mu);
}

int wal_compact(wal *w)
{
    int rc;

    pthread_mutex_lock(&w->mu);
    rc = w->stop ? -ECANCELED : wal__compact_start(w);
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int wal_close(wal *w)
{
    int rc = 0;

    if (!w)
        return 0;
    /* A compaction finishes first, while the flusher still serves its
     * syncs; none starts after. */
    pthread_mutex_lock(&w->mu);
    w->compactor = NULL;
    pthread_mutex_unlock(&w->mu);
    if (w->compact_thr_started)
        pthread_join(w->compact_thr, NULL);
    if (w->thr_started) {
        pthread_mutex_lock(&w->mu);
        w->stop = 1;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thr, NULL);
    }
    pthread_mutex_lock(&w->io_mu);
    if (w->seg_fd >= 0)
        rc = wal__flush_locked(w, 1, NULL);
    pthread_mutex_unlock(&w->io_mu);
    if (rc)
        log_error("wal: %s: %" PRIu64 " records could not be written: %s",
                  w->dir, atomic_load(&w->appended) - atomic_load(&w->durable),
                  strerror(-rc));
    wal__free(w);
    return rc;
}

int wal_append_group(wal *w, const eff_rec *recs, size_t n, uint64_t *lsn)
{
    size_t total = 0, sz[16], *szp = n <= 16 ? sz : malloc(n * sizeof *szp);
    uint64_t l;
    int rc = 0;

    if (!szp)
        return -ENOMEM;
    if (n == 0) {
        rc = -EINVAL;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        szp[i] = eff_size(&recs[i]);
        if (!szp[i] || recs[i].type == EFF_SNAP_BEGIN ||
            recs[i].type == EFF_SNAP_END) {
            rc = -EINVAL;
            goto out;
        }
        total += szp[i];
    }
    pthread_mutex_lock(&w->mu);
    if (wal__wbuf_reserve(&w->cur, total) != 0) {
        pthread_mutex_unlock(&w->mu);
        rc = -ENOMEM;
        goto out;
    }
    l = atomic_load(&w->appended);
    for (size_t i = 0; i < n; i++) {
        eff_encode_as(&recs[i], ++l, i + 1 < n ? EFF_F_MORE : 0, szp[i],
                      w->cur.p + w->cur.len);
        w->cur.len += szp[i];
    }
    atomic_store(&w->appended, l);
    atomic_store(&w->pending, w->cur.len);
    pthread_mutex_unlock(&w->mu);
    if (lsn)
        *lsn = l;
out:
    if (szp != sz)
        free(szp);
    return rc;
}

int wal_append(wal *w, const eff_rec *r, uint64_t *lsn)
{
    return wal_append_group(w, r, 1, lsn);
}

uint64_t wal_appended_lsn(wal *w)
{
    return atomic_load(&w->appended);
}

uint64_t wal_durable_lsn(wal *w)
{
    return atomic_load(&w->durable);
}

uint64_t wal_safe_lsn(wal *w)
{
    return atomic_load(w->policy == WAL_FSYNC_ALWAYS ? &w->durable
                                                     : &w->written);
}

void wal_flush(wal *w)
{
    /* An unlocked look first: most turns of a read-only load append
     * nothing, and must not touch the mutex. */
    if (atomic_load(&w->pending) == 0 &&
        atomic_load(&w->written) == atomic_load(&w->appended))
        return;
    /* A turn up to WAL_INLINE_LAZY_MAX (even a pipelined one: the
     * wake-up would cost more than the write) is written here; a larger
     * one goes to the flusher, which writes it on the other core while
     * this thread serves, unless it is in its fdatasync (milliseconds,
     * more on a slow disk).  Either way the turn's answers leave once it
     * is written (wal_safe_lsn). */
    if (w->policy != WAL_FSYNC_ALWAYS &&
        (atomic_load(&w->pending) <= WAL_INLINE_LAZY_MAX ||
         atomic_load(&w->syncing)) &&
        wal__flush_inline(w, 0) == 0)
        return;
    wal__flush_wake(w);
}

void wal_flush_turn(wal *w)
{
    if (w->policy != WAL_FSYNC_ALWAYS) {
        wal_flush(w);
        return;
    }
    if (atomic_load(&w->pending) == 0 &&
        atomic_load(&w->written) == atomic_load(&w->appended) &&
        atomic_load(&w->durable) == atomic_load(&w->written))
        return;
    if (atomic_load(&w->pending) <= WAL_INLINE_MAX &&
        wal__flush_inline(w, 1) == 0)
        return;
    wal__flush_wake(w);
}

/* Asks the flusher for a round. */
void wal__flush_wake(wal *w)
{
    pthread_mutex_lock(&w->mu);
    if (!w->flush_req) {
        w->flush_req = 1;
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
}

int wal_sync(wal *w, uint64_t lsn)
{
    int rc = 0;

    pthread_mutex_lock(&w->mu);
    if (lsn > atomic_load(&w->appended))
        lsn = atomic_load(&w->appended);
    while (atomic_load(&w->durable) < lsn) {
        uint64_t r0 = w->rounds;
        w->sync_req = 1;
        pthread_cond_signal(&w->cv);
        while (w->rounds == r0 && !w->stop)
            pthread_cond_wait(&w->done_cv, &w->mu);
        if (w->err) {
            rc = w->err;
            break;
        }
        if (w->stop) {
            rc = -ECANCELED;
            break;
        }
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

void wal_on_durable(wal *w, void (*fn)(void *arg, uint64_t durable), void *arg)
{
    pthread_mutex_lock(&w->mu);
    w->on_durable = fn;
    w->on_durable_arg = arg;
    pthread_mutex_unlock(&w->mu);
}

int wal_error(wal *w, char *buf, size_t len)
{
    int e;

    /* The healthy case without the mutex or a formatted copy: it is on
     * the path of every write request. */
    if (atomic_load_explicit(&w->err, memory_order_acquire) == 0) {
        if (buf && len)
            buf[0] = '\0';
        return 0;
    }
    pthread_mutex_lock(&w->mu);
    e = w->err;
    if (buf && len)
        wal__fmt(buf, len, "%s", e ? w->errmsg : "");
    pthread_mutex_unlock(&w->mu);
    return e;
}

void wal_stats_get(wal *w, wal_stats *s)
{
    *s = w->rec;
    s->appended_lsn = atomic_load(&w->appended);
    s->written_lsn = atomic_load(&w->written);
    s->durable_lsn = atomic_load(&w->durable);
    s->log_bytes =
        atomic_load(&w->log_closed_bytes) + atomic_load(&w->seg_bytes);
    s->snapshot_bytes = atomic_load(&w->snap_bytes);
    s->snapshot_lsn = atomic_load(&w->snap_lsn_pub);
    s->pending_bytes = atomic_load(&w->pending) + atomic_load(&w->out_pending);
    s->fsyncs = atomic_load(&w->fsyncs);
    s->last_fsync_ns = atomic_load(&w->last_fsync_ns);
    s->snapshots = atomic_load(&w->snapshots);
    pthread_mutex_lock(&w->mu);
    s->error = w->err;
    pthread_mutex_unlock(&w->mu);
}

int wal_should_compact(wal *w)
{
    uint64_t log = atomic_load(&w->log_closed_bytes) +
                   atomic_load(&w->seg_bytes) + atomic_load(&w->pending);
    return log > w->floor && log > 2 * atomic_load(&w->snap_bytes);
}

const char *wal_fsync_name(wal_fsync f)
{
    switch (f) {
    case WAL_FSYNC_ALWAYS:
        return "always";
    case WAL_FSYNC_EVERYSEC:
        return "everysec";
    default:
        return "no";
    }
}

int wal_fsync_parse(const char *s, wal_fsync *f)
{
    if (!strcmp(s, "always"))
        *f = WAL_FSYNC_ALWAYS;
    else if (!strcmp(s, "everysec"))
        *f = WAL_FSYNC_EVERYSEC;
    else if (!strcmp(s, "no"))
        *f = WAL_FSYNC_NO;
    else
        return -EINVAL;
    return 0;
}
