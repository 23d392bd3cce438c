/*
 * wal_repair.c - wal_repair: rebuilding a lost or bad MANIFEST from the
 * files in data_dir, then recovery in repair mode (cutting the damage).
 */
#include "wal_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* ---- repair ---------------------------------------------------------------
 */

/* Writes a new MANIFEST from the files in dir, for repair: the oldest
 * snapshot (or none) whose next segment exists, then every segment after
 * it in order (recovery then cuts at the first gap or damage).  The
 * oldest, because a newer snapshot may be one whose swap never happened
 * (and whose log was not synced); once a swap happened, the files before
 * it were deleted.  Returns 0 or -EBADMSG with err set. */
static int manifest_rebuild(wal *w, char *err, size_t errlen)
{
    int rc = -EBADMSG;
    DIR *d = wal__dir_list(w->dirfd);
    struct dirent *e;
    uint64_t *snaps = NULL, best = UINT64_MAX;
    wal_seg *segs = NULL;
    size_t nsnaps = 0, nsegs = 0, keep = 0;

    if (!d)
        return -errno;
    while ((e = readdir(d))) {
        char want[WAL_NAME_MAX];
        uint64_t l;
        if (sscanf(e->d_name, "wal-%" SCNu64 ".log", &l) == 1) {
            wal_seg *t;
            wal__seg_name(want, l);
            if (strcmp(want, e->d_name) != 0 || l == 0)
                continue;
            t = realloc(segs, (nsegs + 1) * sizeof *t);
            if (!t)
                goto out;
            segs = t;
            segs[nsegs].first = l;
            segs[nsegs++].bytes = 0;
        } else if (sscanf(e->d_name, "snap-%" SCNu64 ".snap", &l) == 1) {
            uint64_t *t;
            wal__snap_name(want, l);
            if (strcmp(want, e->d_name) != 0 || l == 0)
                continue;
            t = realloc(snaps, (nsnaps + 1) * sizeof *t);
            if (!t)
                goto out;
            snaps = t;
            snaps[nsnaps++] = l;
        }
    }
    /* Sort the segments (few: insertion sort). */
    for (size_t i = 1; i < nsegs; i++)
        for (size_t j = i; j > 0 && segs[j - 1].first > segs[j].first; j--) {
            wal_seg t = segs[j];
            segs[j] = segs[j - 1];
            segs[j - 1] = t;
        }
    for (size_t i = 0; i < nsegs; i++) {
        if (segs[i].first == 1) {
            best = 0;
            break;
        }
        for (size_t k = 0; k < nsnaps; k++)
            if (snaps[k] + 1 == segs[i].first && snaps[k] < best)
                best = snaps[k];
    }
    if (best == UINT64_MAX) {
        wal__fmt(err, errlen,
                 "%s: cannot rebuild the manifest: no log segment follows a "
                 "snapshot or starts at LSN 1",
                 w->dir);
        goto out;
    }
    while (keep < nsegs && segs[keep].first <= best)
        keep++;
    rc = wal__manifest_write(w->dirfd, best, segs + keep, nsegs - keep);
    if (rc)
        wal__fmt(err, errlen, "%s: cannot write the manifest: %s", w->dir,
                 strerror(-rc));
    else
        log_warn("wal: %s: manifest rebuilt from the files (%s%" PRIu64
                 ", %zu segment(s))",
                 w->dir, best ? "snapshot of LSN " : "no snapshot, LSN ", best,
                 nsegs - keep);
out:
    closedir(d);
    free(segs);
    free(snaps);
    return rc;
}

int wal_repair(const char *dir, char *msg, size_t msglen)
{
    wal *w = wal__alloc(dir);
    char what[512] = "";
    const char *rebuilt = "";
    manifest m;
    int rc;

    if (!w)
        return -ENOMEM;
    rc = wal__open_dir(w, msg, msglen);
    if (rc)
        goto out;
    rc = wal__manifest_read(w->dirfd, &m, what, sizeof what);
    free(m.segs);
    if (rc == -EBADMSG || (rc == -ENOENT && wal__dir_has_data(w->dirfd))) {
        rc = manifest_rebuild(w, msg, msglen);
        if (rc)
            goto out;
        rebuilt = "manifest rebuilt; ";
    }
    what[0] = 0;
    rc = wal__recover(w, NULL, NULL, 1, what, sizeof what);
    if (rc) {
        wal__fmt(msg, msglen, "%s", what);
        goto out;
    }
    wal__fmt(msg, msglen,
             "%s: %s%s; %" PRIu64 " records kept (last LSN %" PRIu64 ")", dir,
             rebuilt, what[0] ? what : "no damage found",
             w->rec.recovered_records, atomic_load(&w->appended));
out:
    wal__free(w);
    return rc;
}
