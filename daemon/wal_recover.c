/*
 * wal_recover.c - opening data_dir: the LOCK file, listing and stray
 * files, new segments, and recovery (manifest, snapshot, then segments).
 */
#include "wal_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* ---- opening ------------------------------------------------------------ */

int wal__lock_dir(wal *w, char *err, size_t errlen)
{
    char pid[32];
    int n;

    w->lockfd = openat(w->dirfd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (w->lockfd < 0) {
        int e = -errno;
        wal__fmt(err, errlen, "%s/LOCK: %s", w->dir, strerror(-e));
        return e;
    }
    if (flock(w->lockfd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno == EWOULDBLOCK ? -EBUSY : -errno;
        ssize_t k = pread(w->lockfd, pid, sizeof pid - 1, 0);
        pid[k > 0 ? k : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        wal__fmt(err, errlen, "data_dir %s is in use by another chand (pid %s)",
                 w->dir, pid[0] ? pid : "unknown");
        return e;
    }
    n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(w->lockfd, 0) != 0 ||
        pwrite(w->lockfd, pid, (size_t)n, 0) < 0)
        log_warn("wal: %s/LOCK: cannot record the pid: %s", w->dir,
                 strerror(errno));
    return 0;
}

/* Returns a new DIR over dirfd's directory, with an offset of its own (a
 * dup'ed fd would share dirfd's, and a second listing would find it at
 * the end); NULL on error. */
DIR *wal__dir_list(int dirfd)
{
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d;

    if (fd < 0)
        return NULL;
    d = fdopendir(fd);
    if (!d)
        close(fd);
    return d;
}

/* Returns 1 if dir holds any segment or snapshot file. */
int wal__dir_has_data(int dirfd)
{
    int found = 0;
    DIR *d = wal__dir_list(dirfd);
    struct dirent *e;

    if (!d)
        return 0;
    while ((e = readdir(d))) {
        struct stat st;
        char first[WAL_NAME_MAX];
        if (strncmp(e->d_name, "wal-", 4) && strncmp(e->d_name, "snap-", 5))
            continue;
        if (strstr(e->d_name, ".tmp"))
            continue;
        /* A first start that crashed between creating its empty segment
         * and writing the manifest left nothing to lose. */
        wal__seg_name(first, 1);
        if (!strcmp(e->d_name, first) &&
            fstatat(dirfd, e->d_name, &st, 0) == 0 && st.st_size <= WAL_HDR)
            continue;
        found = 1;
    }
    closedir(d);
    return found;
}

/* Removes what no manifest names: segments and snapshots of a snapshot
 * that crashed or was replaced before its files were deleted, and *.tmp
 * files of interrupted writes.  Called once the manifest is read. */
static void remove_strays(wal *w)
{
    int n = 0;
    DIR *d = wal__dir_list(w->dirfd);
    struct dirent *e;

    if (!d)
        return;
    while ((e = readdir(d))) {
        char want[WAL_NAME_MAX];
        uint64_t l;
        int live = 1;
        const char *nm = e->d_name;
        size_t len = strlen(nm);
        if (len > 4 && !strcmp(nm + len - 4, ".tmp") &&
            (!strncmp(nm, "wal-", 4) || !strncmp(nm, "snap-", 5) ||
             !strncmp(nm, "MANIFEST", 8) || !strncmp(nm, "EPOCH", 5))) {
            live = 0;
        } else if (sscanf(nm, "wal-%" SCNu64 ".log", &l) == 1) {
            wal__seg_name(want, l);
            live = 0;
            for (size_t i = 0; i < w->nsegs && strcmp(nm, want) == 0; i++)
                if (w->segs[i].first == l)
                    live = 1;
            if (strcmp(nm, want) != 0)
                live = 1; /* not one of ours */
        } else if (sscanf(nm, "snap-%" SCNu64 ".snap", &l) == 1) {
            wal__snap_name(want, l);
            live = strcmp(nm, want) != 0 || l == w->snap_lsn;
        }
        if (!live && unlinkat(w->dirfd, nm, 0) == 0)
            n++;
    }
    closedir(d);
    if (n)
        log_info("wal: %s: removed %d file(s) no manifest names", w->dir, n);
}

int wal__seg_create(wal *w, uint64_t first, int *fdp)
{
    char name[WAL_NAME_MAX];
    uint8_t h[WAL_HDR];
    int fd, rc;

    wal__seg_name(name, first);
    fd = openat(w->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    wal__hdr_make(h, WAL_MAGIC_SEG, first);
    rc = wal__write_all(fd, h, sizeof h);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (rc == 0 && fsync(w->dirfd) != 0)
        rc = -errno;
    if (rc) {
        close(fd);
        unlinkat(w->dirfd, name, 0);
        return rc;
    }
    *fdp = fd;
    return 0;
}

/* Recovers w's directory; in repair mode, cuts the damage instead of
 * refusing.  Fills w->segs, w->snap_lsn and the LSNs. */
int wal__recover(wal *w, wal_apply_fn apply, void *arg, int repair, char *err,
                 size_t errlen)
{
    manifest m;
    replay rp = {.apply = apply, .arg = arg};
    uint64_t next, snapbytes = 0, closed = 0;
    int64_t t0 = now_ns();
    int rc;
    char name[WAL_NAME_MAX];

    rc = wal__manifest_read(w->dirfd, &m, err, errlen);
    if (rc == -ENOENT) {
        if (wal__dir_has_data(w->dirfd)) {
            wal__fmt(err, errlen, "%s/MANIFEST is missing but log files exist",
                     w->dir);
            return -EBADMSG;
        }
        /* A new data_dir: an empty first segment, then the manifest. */
        w->segs = calloc(1, sizeof *w->segs);
        if (!w->segs)
            return -ENOMEM;
        w->segs[0].first = 1;
        w->segs[0].bytes = WAL_HDR;
        w->nsegs = 1;
        rc = wal__seg_create(w, 1, &w->seg_fd);
        if (rc == 0)
            rc = wal__manifest_write(w->dirfd, 0, w->segs, 1);
        if (rc)
            wal__fmt(err, errlen, "%s: cannot create the log: %s", w->dir,
                     strerror(-rc));
        w->base = WAL_HDR;
        return rc;
    }
    if (rc) {
        if (rc != -EBADMSG)
            wal__fmt(err, errlen, "%s/MANIFEST: %s", w->dir, strerror(-rc));
        else
            wal__fmt(err, errlen, "%s/MANIFEST is damaged", w->dir);
        return rc;
    }
    w->segs = m.segs;
    w->nsegs = m.nsegs;
    w->snap_lsn = m.snap_lsn;
    if (m.snap_lsn) {
        rc = wal__load_snapshot(w->dirfd, w->dir, m.snap_lsn, &rp, repair,
                                &snapbytes, err, errlen);
        if (rc)
            goto out;
    }
    next = m.snap_lsn + 1;
    for (size_t i = 0; i < w->nsegs; i++) {
        mapped mp;
        scan_res sr;
        int last = i + 1 == w->nsegs;
        wal__seg_name(name, w->segs[i].first);
        if (w->segs[i].first != next) {
            wal__fmt(err, errlen,
                     "%s/%s: starts at LSN %" PRIu64 ", expected %" PRIu64
                     "; run `chand --repair --data-dir %s`",
                     w->dir, name, w->segs[i].first, next, w->dir);
            rc = -EBADMSG;
            if (repair && i > 0) {
                /* Keep the segments before the gap. */
                for (size_t j = i; j < w->nsegs; j++) {
                    wal__seg_name(name, w->segs[j].first);
                    unlinkat(w->dirfd, name, 0);
                }
                w->nsegs = i;
                wal__fmt(err, errlen, "removed %zu segment(s) after a gap",
                         (size_t)0 + (m.nsegs - i));
                rc = 0;
                break;
            }
            goto out;
        }
        rc = wal__map_file(w->dirfd, name, 0, &mp);
        if (rc) {
            wal__fmt(err, errlen, "%s/%s: %s", w->dir, name, strerror(-rc));
            goto out;
        }
        rc = wal__scan_seg(&mp, w->segs[i].first, &next, &rp, &sr);
        wal__unmap_file(&mp);
        if (rc) {
            wal__fmt(err, errlen, "%s/%s: applying a record failed: %s", w->dir,
                     name, rp.failed[0] ? rp.failed : strerror(-rc));
            goto out;
        }
        w->segs[i].bytes = sr.good;
        if (sr.damaged && last && !sr.followed && sr.good >= WAL_HDR) {
            log_warn("wal: %s/%s: torn write at offset %zu (%s): "
                     "truncating %zu bytes",
                     w->dir, name, sr.good, sr.why, mp.n - sr.good);
            w->rec.truncated_bytes = mp.n - sr.good;
        } else if (sr.damaged && !repair) {
            wal__fmt(err, errlen,
                     "%s/%s: damaged record at offset %zu (%s)%s; run `chand "
                     "--repair --data-dir %s` to keep the records before it",
                     w->dir, name, sr.good, sr.why,
                     sr.followed ? ", followed by valid records"
                     : !last     ? ", in a segment that is not the last"
                                 : "",
                     w->dir);
            rc = -EBADMSG;
            goto out;
        } else if (sr.damaged) {
            size_t dropped = w->nsegs - i - 1;
            for (size_t j = i + 1; j < w->nsegs; j++) {
                wal__seg_name(name, w->segs[j].first);
                unlinkat(w->dirfd, name, 0);
            }
            w->nsegs = i + 1;
            wal__fmt(
                err, errlen,
                "cut %s at offset %zu (%s): dropped %zu bytes and %zu later "
                "segment(s)",
                name, sr.good, sr.why, mp.n - sr.good, dropped);
            if (sr.good < WAL_HDR) {
                /* Even the header is bad: rewrite the segment empty. */
                int fd;
                rc = wal__seg_create(w, w->segs[i].first, &fd);
                if (rc)
                    goto out;
                close(fd);
                w->segs[i].bytes = WAL_HDR;
            }
        }
        if (sr.damaged) {
            int fd = openat(w->dirfd, name, O_WRONLY | O_CLOEXEC);
            if (fd < 0 || ftruncate(fd, (off_t)w->segs[i].bytes) != 0 ||
                fsync(fd) != 0) {
                rc = -errno;
                wal__fmt(err, errlen, "%s/%s: cannot truncate: %s", w->dir,
                         name, strerror(errno));
                if (fd >= 0)
                    close(fd);
                goto out;
            }
            close(fd);
            if (repair)
                break;
        }
        if (!last)
            closed += w->segs[i].bytes;
    }
    if (repair) {
        rc = wal__manifest_write(w->dirfd, w->snap_lsn, w->segs, w->nsegs);
        if (rc)
            goto out;
    }
    atomic_store(&w->appended, next - 1);
    atomic_store(&w->written, next - 1);
    atomic_store(&w->durable, next - 1);
    atomic_store(&w->snap_bytes, snapbytes);
    atomic_store(&w->log_closed_bytes, closed);
    atomic_store(&w->seg_bytes, w->segs[w->nsegs - 1].bytes);
    w->base = w->segs[w->nsegs - 1].bytes;
    atomic_store(&w->snap_lsn_pub, w->snap_lsn);
    w->rec.recovered_records = rp.applied;
    w->rec.skipped_records = rp.skipped;
    w->rec.recovery_ns = (uint64_t)(now_ns() - t0);
    remove_strays(w);
    if (!repair) {
        wal__seg_name(name, w->segs[w->nsegs - 1].first);
        w->seg_fd = openat(w->dirfd, name, O_WRONLY | O_CLOEXEC);
        if (w->seg_fd < 0) {
            rc = -errno;
            wal__fmt(err, errlen, "%s/%s: %s", w->dir, name, strerror(errno));
            goto out;
        }
    }
    rc = 0;
out:
    wal__filter_free(&rp.f);
    return rc;
}
