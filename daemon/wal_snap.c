/*
 * wal_snap.c - fuzzy snapshots: segment rotation, wal_snap_emit, and the
 * manifest swap that makes a snapshot live.
 */
#include "wal_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* ---- snapshots --------------------------------------------------------------
 */

/* Starts a new segment at the next LSN; returns 0 and *l0, the last LSN
 * of the old segments.  Called with snap_mu held. */
static int rotate(wal *w, uint64_t *l0)
{
    wal_seg *segs;
    int fd, rc;
    uint64_t last;

    /* sync_mu: the file must not be closed under everysec's sync. */
    pthread_mutex_lock(&w->sync_mu);
    pthread_mutex_lock(&w->io_mu);
    rc = wal__flush_locked(w, 1, &last);
    if (rc)
        goto out;
    if (w->out.len || w->spare.len) { /* out of memory to join them */
        rc = -ENOMEM;
        goto out;
    }
    *l0 = last;
    if (last + 1 == w->segs[w->nsegs - 1].first)
        goto out; /* the open segment is still empty: it serves */
    segs = realloc(w->segs, (w->nsegs + 1) * sizeof *segs);
    if (!segs) {
        rc = -ENOMEM;
        goto out;
    }
    w->segs = segs;
    rc = wal__seg_create(w, last + 1, &fd);
    if (rc)
        goto out;
    w->segs[w->nsegs - 1].bytes = w->base;
    w->segs[w->nsegs].first = last + 1;
    w->segs[w->nsegs].bytes = WAL_HDR;
    rc = wal__manifest_write(w->dirfd, w->snap_lsn, w->segs, w->nsegs + 1);
    if (rc) {
        char name[WAL_NAME_MAX];
        close(fd);
        wal__seg_name(name, last + 1);
        unlinkat(w->dirfd, name, 0);
        goto out;
    }
    atomic_fetch_add(&w->log_closed_bytes, w->base);
    w->nsegs++;
    close(w->seg_fd);
    w->seg_fd = fd;
    w->base = WAL_HDR;
    atomic_store(&w->seg_bytes, WAL_HDR);
out:
    pthread_mutex_unlock(&w->io_mu);
    pthread_mutex_unlock(&w->sync_mu);
    {
        void (*cb)(void *, uint64_t);
        void *arg;
        pthread_mutex_lock(&w->mu);
        cb = w->on_durable;
        arg = w->on_durable_arg;
        pthread_mutex_unlock(&w->mu);
        wal__notify(w, cb, arg, 0);
    }
    return rc;
}

static int snap_flush(wal_snap *s)
{
    int rc = wal__write_all(s->fd, s->buf.p, s->buf.len);
    s->bytes += s->buf.len;
    s->buf.len = 0;
    return rc;
}

int wal_snap_emit(wal_snap *s, const eff_rec *r)
{
    size_t n = eff_size(r);

    if (s->err)
        return s->err;
    if (!n || r->type == EFF_SNAP_BEGIN || r->type == EFF_SNAP_END)
        return s->err = -EINVAL;
    if (s->buf.len + n > WAL_SNAP_BUF && s->buf.len &&
        (s->err = snap_flush(s)) != 0)
        return s->err;
    if (wal__wbuf_reserve(&s->buf, n) != 0)
        return s->err = -ENOMEM;
    eff_encode_as(r, r->lsn, 0, n, s->buf.p + s->buf.len);
    s->buf.len += n;
    s->count++;
    return 0;
}

int wal_snapshot(wal *w, wal_snap_iter_fn iter, void *arg, char *err,
                 size_t errlen)
{
    wal_snap s = {.w = w, .fd = -1};
    char name[WAL_NAME_MAX], tmp[WAL_NAME_MAX + 8];
    uint8_t h[WAL_HDR];
    eff_rec r = {0};
    uint64_t l0 = 0, old_snap;
    size_t keep_from;
    int rc;

    pthread_mutex_lock(&w->snap_mu);
    rc = rotate(w, &l0);
    if (rc) {
        wal__fmt(err, errlen, "snapshot: starting a new log segment: %s",
                 strerror(-rc));
        goto out_unlock;
    }
    if (l0 == 0) {
        /* Nothing was ever logged: there is nothing to compact. */
        rc = 0;
        goto out_unlock;
    }
    wal__snap_name(name, l0);
    snprintf(tmp, sizeof tmp, "%s.tmp", name);
    s.fd =
        openat(w->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (s.fd < 0) {
        rc = -errno;
        wal__fmt(err, errlen, "snapshot: %s/%s: %s", w->dir, tmp,
                 strerror(errno));
        goto out_unlock;
    }
    wal__hdr_make(h, WAL_MAGIC_SNAP, l0);
    rc = wal__wbuf_reserve(&s.buf, WAL_HDR);
    if (rc)
        goto out_remove;
    memcpy(s.buf.p, h, WAL_HDR);
    s.buf.len = WAL_HDR;
    r.type = EFF_SNAP_BEGIN;
    r.lsn = l0;
    r.u.snap.start_lsn = l0;
    {
        size_t n = eff_size(&r);
        rc = wal__wbuf_reserve(&s.buf, n);
        if (rc)
            goto out_remove;
        eff_encode(&r, s.buf.p + s.buf.len);
        s.buf.len += n;
    }
    s.count = 1;
    if (iter(arg, &s) != 0) {
        rc = s.err ? s.err : -ECANCELED;
        wal__fmt(err, errlen, "snapshot: the walk stopped: %s", strerror(-rc));
        goto out_remove;
    }
    if (s.err) {
        rc = s.err;
        goto out_write_err;
    }
    memset(&r, 0, sizeof r);
    r.type = EFF_SNAP_END;
    r.lsn = l0;
    r.u.snap.count = s.count;
    {
        size_t n = eff_size(&r);
        rc = wal__wbuf_reserve(&s.buf, n);
        if (rc)
            goto out_remove;
        eff_encode(&r, s.buf.p + s.buf.len);
        s.buf.len += n;
    }
    rc = snap_flush(&s);
    if (rc == 0 && fsync(s.fd) != 0)
        rc = -errno;
    if (rc)
        goto out_write_err;
    close(s.fd);
    s.fd = -1;
    /* Objects were walked while the log ran: their state may hold effects
     * the log has not synced.  Sync them, so that no crash can keep a
     * later effect (in the snapshot) and lose an earlier one (in the log).
     * Before the rename: when nothing was logged since the live snapshot,
     * L0 is its L0 and the rename replaces the file the manifest names. */
    rc = wal_sync(w, wal_appended_lsn(w));
    if (rc) {
        wal__fmt(err, errlen, "snapshot: syncing the log: %s", strerror(-rc));
        goto out_remove;
    }
    if (renameat(w->dirfd, tmp, w->dirfd, name) != 0 || fsync(w->dirfd) != 0) {
        rc = -errno;
        goto out_write_err;
    }
    pthread_mutex_lock(&w->io_mu);
    keep_from = 0;
    while (keep_from < w->nsegs && w->segs[keep_from].first <= l0)
        keep_from++;
    rc = wal__manifest_write(w->dirfd, l0, w->segs + keep_from,
                             w->nsegs - keep_from);
    if (rc) {
        pthread_mutex_unlock(&w->io_mu);
        wal__fmt(err, errlen, "snapshot: writing the manifest: %s",
                 strerror(-rc));
        unlinkat(w->dirfd, name, 0);
        goto out_unlock_buf;
    }
    old_snap = w->snap_lsn;
    for (size_t i = 0; i < keep_from; i++) {
        char old[WAL_NAME_MAX];
        wal__seg_name(old, w->segs[i].first);
        unlinkat(w->dirfd, old, 0);
        atomic_fetch_sub(&w->log_closed_bytes, w->segs[i].bytes);
    }
    memmove(w->segs, w->segs + keep_from,
            (w->nsegs - keep_from) * sizeof *w->segs);
    w->nsegs -= keep_from;
    w->snap_lsn = l0;
    atomic_store(&w->snap_lsn_pub, l0);
    pthread_mutex_unlock(&w->io_mu);
    if (old_snap && old_snap != l0) {
        char old[WAL_NAME_MAX];
        wal__snap_name(old, old_snap);
        unlinkat(w->dirfd, old, 0);
    }
    atomic_store(&w->snap_bytes, s.bytes);
    atomic_fetch_add(&w->snapshots, 1);
    log_info("wal: %s: snapshot %s written (%" PRIu64 " records, %" PRIu64
             " bytes)",
             w->dir, name, s.count + 1, s.bytes);
    rc = 0;
    goto out_unlock_buf;
out_write_err:
    wal__fmt(err, errlen, "snapshot: writing %s/%s: %s", w->dir, tmp,
             strerror(-rc));
out_remove:
    if (s.fd >= 0)
        close(s.fd);
    unlinkat(w->dirfd, tmp, 0);
out_unlock_buf:
out_unlock:
    free(s.buf.p);
    pthread_mutex_unlock(&w->snap_mu);
    return rc;
}
