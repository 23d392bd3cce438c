/*
 * wal_scan.c - reading the log: the snapshot filter, segment scans
 * (replaying records and finding damage), loading and cutting snapshots.
 */
#include "wal_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the snapshot filter: object -> its LSN in the snapshot ---------- */

static uint64_t fhash(const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)k[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

/* Returns the key bytes of r's object in kb (malloc'd when large): *n
 * set; 0 when r has no object. */
static int fkey(const eff_rec *r, char *small, size_t cap, char **kb, size_t *n)
{
    eff_str name;
    uint64_t id;

    switch (eff_object(r, &name, &id)) {
    case EFF_OBJ_TIMER:
        small[0] = 't';
        memcpy(small + 1, &id, 8);
        *kb = small;
        *n = 9;
        return 1;
    case EFF_OBJ_NAME:
        *n = name.n + 1;
        *kb = *n <= cap ? small : malloc(*n);
        if (!*kb)
            return -ENOMEM;
        (*kb)[0] = 'n';
        if (name.n)
            memcpy(*kb + 1, name.p, name.n);
        return 1;
    default:
        return 0;
    }
}

static fent *filter_find(filter *f, const char *k, size_t n)
{
    size_t i;

    if (!f->cap)
        return NULL;
    for (i = fhash(k, n) & (f->cap - 1);; i = (i + 1) & (f->cap - 1)) {
        fent *e = &f->t[i];
        if (!e->key)
            return e;
        if (e->n == n && memcmp(e->key, k, n) == 0)
            return e;
    }
}

static int filter_put(filter *f, const char *k, size_t n, uint64_t lsn)
{
    fent *e;

    if ((f->used + 1) * 2 > f->cap) {
        filter g = {0};
        g.cap = f->cap ? f->cap * 2 : 64;
        g.t = calloc(g.cap, sizeof *g.t);
        if (!g.t)
            return -ENOMEM;
        for (size_t i = 0; i < f->cap; i++)
            if (f->t[i].key)
                *filter_find(&g, f->t[i].key, f->t[i].n) = f->t[i];
        g.used = f->used;
        free(f->t);
        *f = g;
    }
    e = filter_find(f, k, n);
    if (!e->key) {
        e->key = malloc(n);
        if (!e->key)
            return -ENOMEM;
        memcpy(e->key, k, n);
        e->n = n;
        f->used++;
    }
    if (lsn > e->lsn)
        e->lsn = lsn;
    return 0;
}

void wal__filter_free(filter *f)
{
    for (size_t i = 0; i < f->cap; i++)
        free(f->t[i].key);
    free(f->t);
}

static const char *decode_reason(int rc)
{
    switch (rc) {
    case -EAGAIN:
        return "record runs past the end of the file";
    case -EBADMSG:
        return "bad length or checksum";
    case -ENOTSUP:
        return "unknown record type (written by a newer chand?)";
    default:
        return "malformed record body";
    }
}

/* Returns 1 when a record that could be the log's continuation (valid,
 * LSN after last) starts anywhere in p[from..n). */
static int valid_after(const uint8_t *p, size_t n, size_t from, uint64_t last)
{
    for (size_t off = from; off + EFF_FRAME_HDR + EFF_BODY_HDR <= n; off++) {
        const uint8_t *b = p + off;
        uint32_t len = get32(b);
        eff_rec r;
        size_t used;
        /* Cheap checks first: most offsets fail them. */
        if (len < EFF_BODY_HDR || len > n - off - EFF_FRAME_HDR ||
            !eff_type_known((unsigned)(b[8] | b[9] << 8)) ||
            (b[11] & ~EFF_F_MORE) != 0)
            continue;
        if (eff_decode(b, n - off, &r, &used) == 0 && r.lsn > last)
            return 1;
    }
    return 0;
}

/* Applies r unless the snapshot holds it; returns 0 or nonzero. */
static int replay_one(replay *rp, const eff_rec *r)
{
    char small[128], *kb;
    size_t n;
    int k = fkey(r, small, sizeof small, &kb, &n);

    if (k < 0)
        return k;
    if (k) {
        fent *e = filter_find(&rp->f, kb, n);
        int held = e && e->key && r->lsn <= e->lsn;
        if (kb != small)
            free(kb);
        if (held) {
            rp->skipped++;
            return 0;
        }
    }
    rp->applied++;
    if (rp->apply && rp->apply(rp->arg, r, 0) != 0) {
        rp->apply_failed = 1;
        eff_format(r, rp->failed, sizeof rp->failed);
        return -ECANCELED;
    }
    return 0;
}

/* Scans (and applies, when rp) the records of one segment mapped at m;
 * *next is the LSN expected first and is advanced. */
int wal__scan_seg(const mapped *m, uint64_t first, uint64_t *next, replay *rp,
                  scan_res *sr)
{
    size_t off = WAL_HDR, ngroup = 0, capgroup = 0;
    eff_rec *group = NULL;
    uint64_t hl, lsn = *next;
    int rc = 0;

    memset(sr, 0, sizeof *sr);
    sr->last = *next - 1;
    if (wal__hdr_check(m->p, m->n, WAL_MAGIC_SEG, &hl) != 0 || hl != first) {
        sr->damaged = 1;
        sr->good = 0;
        snprintf(sr->why, sizeof sr->why, "bad segment header");
        sr->followed = m->n > WAL_HDR && valid_after(m->p, m->n, 0, 0);
        return 0;
    }
    sr->good = off;
    while (off < m->n) {
        eff_rec r;
        size_t used;
        rc = eff_decode(m->p + off, m->n - off, &r, &used);
        if (rc == 0 && r.lsn != lsn) {
            snprintf(sr->why, sizeof sr->why,
                     "record has LSN %" PRIu64 ", expected %" PRIu64, r.lsn,
                     lsn);
            rc = -EILSEQ;
        } else if (rc == 0 &&
                   (r.type == EFF_SNAP_BEGIN || r.type == EFF_SNAP_END)) {
            snprintf(sr->why, sizeof sr->why, "snapshot record in a log");
            rc = -EILSEQ;
        } else if (rc != 0) {
            snprintf(sr->why, sizeof sr->why, "%s", decode_reason(rc));
        }
        if (rc != 0) {
            sr->damaged = 1;
            /* A whole record of a type this build does not know is no
             * torn write: never cut it. */
            sr->followed =
                rc == -ENOTSUP || valid_after(m->p, m->n, off + 1, sr->last);
            rc = 0;
            goto out;
        }
        lsn++;
        if (r.flags & EFF_F_MORE) {
            /* One effect in several records: applied when whole. */
            if (ngroup == capgroup) {
                size_t c = capgroup ? capgroup * 2 : 8;
                eff_rec *g = realloc(group, c * sizeof *g);
                if (!g) {
                    rc = -ENOMEM;
                    goto out;
                }
                group = g;
                capgroup = c;
            }
            group[ngroup++] = r;
            off += used;
            continue;
        }
        for (size_t i = 0; rp && i < ngroup; i++) {
            rc = replay_one(rp, &group[i]);
            if (rc)
                goto out;
        }
        ngroup = 0;
        if (rp) {
            rc = replay_one(rp, &r);
            if (rc)
                goto out;
        }
        off += used;
        sr->last = r.lsn;
        sr->good = off;
    }
    if (ngroup) {
        /* The log ends inside a group: its end never reached the disk. */
        sr->damaged = 1;
        snprintf(sr->why, sizeof sr->why, "an unfinished group of records");
    }
out:
    *next = sr->last + 1;
    free(group);
    return rc;
}

/* Rewrites the snapshot of L0 as its header, m[WAL_HDR..keep) (count
 * whole records, SNAP_BEGIN first; when count is 0, a new SNAP_BEGIN) and
 * a SNAP_END: what repair keeps of a damaged snapshot. */
static int snap_cut(int dirfd, const char *name, uint64_t l0, const mapped *m,
                    size_t keep, uint64_t count)
{
    wbuf b = {0};
    eff_rec r = {0};
    size_t n;
    int rc;

    rc = wal__wbuf_reserve(&b, WAL_HDR + keep + 64);
    if (rc)
        return rc;
    wal__hdr_make(b.p, WAL_MAGIC_SNAP, l0);
    b.len = WAL_HDR;
    r.lsn = l0;
    if (count == 0) {
        r.type = EFF_SNAP_BEGIN;
        r.u.snap.start_lsn = l0;
        b.len += eff_encode(&r, b.p + b.len);
        count = 1;
    } else {
        memcpy(b.p + WAL_HDR, m->p + WAL_HDR, keep - WAL_HDR);
        b.len = keep;
    }
    memset(&r.u, 0, sizeof r.u);
    r.type = EFF_SNAP_END;
    r.u.snap.count = count;
    n = eff_encode(&r, b.p + b.len);
    b.len += n;
    rc = wal__file_replace(dirfd, name, b.p, b.len);
    free(b.p);
    return rc;
}

/* Loads the snapshot of L0 through rp; 0 or -EBADMSG with err set.  In
 * repair mode, a damaged snapshot is cut before the damage (its objects
 * from there on are lost; their later log records find no object). */
int wal__load_snapshot(int dirfd, const char *dir, uint64_t l0, replay *rp,
                       int repair, uint64_t *bytes, char *err, size_t errlen)
{
    char name[WAL_NAME_MAX];
    mapped m;
    size_t off = WAL_HDR, keep = WAL_HDR;
    uint64_t hl, count = 0;
    int rc, ended = 0;
    const char *why = NULL;

    wal__snap_name(name, l0);
    rc = wal__map_file(dirfd, name, 0, &m);
    if (rc) {
        wal__fmt(err, errlen, "%s/%s: %s", dir, name, strerror(-rc));
        return rc;
    }
    *bytes = m.n;
    if (wal__hdr_check(m.p, m.n, WAL_MAGIC_SNAP, &hl) != 0 || hl != l0) {
        why = "bad snapshot header";
        off = 0;
        goto out_damaged;
    }
    while (off < m.n && !ended) {
        eff_rec r;
        size_t used;
        char small[128], *kb;
        size_t kn;
        rc = eff_decode(m.p + off, m.n - off, &r, &used);
        if (rc)
            why = decode_reason(rc);
        else if (count == 0 &&
                 (r.type != EFF_SNAP_BEGIN || r.u.snap.start_lsn != l0))
            why = "no snapshot-begin record";
        else if (count > 0 && r.type == EFF_SNAP_BEGIN)
            why = "a second snapshot-begin record";
        else if (r.type == EFF_SNAP_END && r.u.snap.count != count)
            why = "record count differs from the snapshot-end record";
        if (why)
            goto out_damaged;
        if (r.type == EFF_SNAP_END) {
            ended = 1;
            off += used;
            break;
        }
        off += used;
        keep = off;
        if (r.type != EFF_SNAP_BEGIN) {
            int k = fkey(&r, small, sizeof small, &kb, &kn);
            if (k < 0 || (k && filter_put(&rp->f, kb, kn, r.lsn) != 0)) {
                if (k > 0 && kb != small)
                    free(kb);
                rc = -ENOMEM;
                goto out;
            }
            if (k > 0 && kb != small)
                free(kb);
            rp->applied++;
            if (rp->apply && rp->apply(rp->arg, &r, 1) != 0) {
                rp->apply_failed = 1;
                wal__fmt(err, errlen,
                         "%s/%s: applying the %s record at "
                         "offset %zu failed",
                         dir, name, eff_type_name(r.type), off - used);
                rc = -ECANCELED;
                goto out;
            }
        }
        count++;
    }
    if (ended && off == m.n) {
        rc = 0;
        goto out;
    }
    why = ended ? "bytes after the end" : "no end record";
    if (!ended)
        off = keep;
out_damaged:
    if (!repair) {
        wal__fmt(err, errlen,
                 "%s/%s: damaged at offset %zu (%s); run `chand --repair "
                 "--data-dir %s` to keep what precedes it",
                 dir, name, off, why, dir);
        rc = -EBADMSG;
        goto out;
    }
    rc = snap_cut(dirfd, name, l0, &m, off == 0 ? WAL_HDR : keep,
                  off == 0 ? 0 : count);
    if (rc) {
        wal__fmt(err, errlen, "%s/%s: cannot rewrite: %s", dir, name,
                 strerror(-rc));
        goto out;
    }
    wal__fmt(err, errlen,
             "cut %s at offset %zu (%s): kept %" PRIu64 " records of it", name,
             off, why, count ? count - 1 : 0);
    rc = 0;
out:
    wal__unmap_file(&m);
    return rc;
}
