/*
 * wal.c - the durability log: append buffer, flusher thread (group
 * commit), segments, fuzzy snapshots, manifest, recovery and repair.  The
 * file format and the rules are in wal.h.
 *
 * Locks, in the order they nest:
 *  - snap_mu: one snapshot at a time;
 *  - io_mu: every write to the segment and manifest files (the flusher's
 *    rounds and a snapshot's segment switch), so fsyncs never run under mu;
 *  - mu: the append buffer (cur), the LSN counters' writers, requests,
 *    the error.  Held by appenders for a memcpy, never across a syscall.
 */
#include "wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crc32c.h"
#include "log.h"

#define WAL_HDR 32
#define WAL_MAGIC_SEG "CHANDWAL"
#define WAL_MAGIC_SNAP "CHANDSNP"
#define WAL_FORMAT 1
#define WAL_NAME_MAX 64
#define WAL_SNAP_BUF (1u << 20)

typedef struct wbuf {
    uint8_t *p;
    size_t len, cap;
} wbuf;

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
    int err;
    char errmsg[256];
    void (*on_durable)(void *, uint64_t);
    void *on_durable_arg;
    pthread_t thr;
    int thr_started;

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

int wal_should_compact(wal *w);

/* ---- small helpers --------------------------------------------------- */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void fmt(char *buf, size_t len, const char *f, ...)
    __attribute__((format(printf, 3, 4)));
static void fmt(char *buf, size_t len, const char *f, ...)
{
    va_list ap;
    if (!buf || !len)
        return;
    va_start(ap, f);
    vsnprintf(buf, len, f, ap);
    va_end(ap);
}

static int wbuf_reserve(wbuf *b, size_t n)
{
    size_t cap = b->cap ? b->cap : 4096;
    uint8_t *p;

    if (b->len + n <= b->cap)
        return 0;
    while (cap < b->len + n)
        cap *= 2;
    p = realloc(b->p, cap);
    if (!p)
        return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void hdr_make(uint8_t *h, const char *magic, uint64_t lsn)
{
    memset(h, 0, WAL_HDR);
    memcpy(h, magic, 8);
    put32(h + 8, WAL_FORMAT);
    put64(h + 16, lsn);
    put32(h + 24, crc32c(h, 24));
}

/* Returns 0 and *lsn when h is a valid header of the given magic. */
static int hdr_check(const uint8_t *h, size_t n, const char *magic,
                     uint64_t *lsn)
{
    if (n < WAL_HDR || memcmp(h, magic, 8) != 0 ||
        crc32c(h, 24) != get32(h + 24))
        return -EBADMSG;
    if (get32(h + 8) != WAL_FORMAT)
        return -ENOTSUP;
    *lsn = get64(h + 16);
    return 0;
}

static void seg_name(char *b, uint64_t first)
{
    snprintf(b, WAL_NAME_MAX, "wal-%020" PRIu64 ".log", first);
}

static void snap_name(char *b, uint64_t l0)
{
    snprintf(b, WAL_NAME_MAX, "snap-%020" PRIu64 ".snap", l0);
}

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t k = write(fd, b, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Writes a whole small file atomically: tmp, fsync, rename, dir fsync. */
static int file_replace(int dirfd, const char *name, const void *p, size_t n)
{
    char tmp[WAL_NAME_MAX + 8];
    int fd, rc;

    snprintf(tmp, sizeof tmp, "%s.tmp", name);
    fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    rc = write_all(fd, p, n);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && renameat(dirfd, tmp, dirfd, name) != 0)
        rc = -errno;
    if (rc == 0 && fsync(dirfd) != 0)
        rc = -errno;
    if (rc != 0)
        unlinkat(dirfd, tmp, 0);
    return rc;
}

/* ---- the manifest ----------------------------------------------------- */

typedef struct manifest {
    uint64_t snap_lsn; /* 0: no snapshot */
    wal_seg *segs;
    size_t nsegs;
} manifest;

static int manifest_write(int dirfd, uint64_t snap_lsn, const wal_seg *segs,
                          size_t nsegs)
{
    size_t cap = 128 + nsegs * 48, n = 0;
    char *t = malloc(cap), name[WAL_NAME_MAX];
    int rc;

    if (!t)
        return -ENOMEM;
    if (snap_lsn)
        snap_name(name, snap_lsn);
    n += (size_t)snprintf(t + n, cap - n,
                          "chand-manifest 1\nsnapshot %s %" PRIu64 "\n",
                          snap_lsn ? name : "-", snap_lsn);
    for (size_t i = 0; i < nsegs; i++) {
        seg_name(name, segs[i].first);
        n += (size_t)snprintf(t + n, cap - n, "segment %s\n", name);
    }
    n += (size_t)snprintf(t + n, cap - n, "crc %08x\n", crc32c(t, n));
    rc = file_replace(dirfd, "MANIFEST", t, n);
    free(t);
    return rc;
}

/* Reads MANIFEST: 0, -ENOENT when there is none, or -EBADMSG (message in
 * err). */
static int manifest_read(int dirfd, manifest *m, char *err, size_t errlen)
{
    char *t = NULL, *line, *save = NULL;
    int fd, rc = -EBADMSG;
    struct stat st;
    size_t body;
    char *crcl;

    memset(m, 0, sizeof *m);
    fd = openat(dirfd, "MANIFEST", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) != 0 || st.st_size > (1 << 24)) {
        fmt(err, errlen, "MANIFEST: unreadable or too large");
        goto out_close;
    }
    t = malloc((size_t)st.st_size + 1);
    if (!t) {
        rc = -ENOMEM;
        goto out_close;
    }
    if (read(fd, t, (size_t)st.st_size) != st.st_size) {
        fmt(err, errlen, "MANIFEST: short read");
        goto out_free;
    }
    t[st.st_size] = 0;
    if (strlen(t) != (size_t)st.st_size)
        goto out_bad;
    crcl = strstr(t, "crc ");
    if (!crcl || (crcl != t && crcl[-1] != '\n'))
        goto out_bad;
    body = (size_t)(crcl - t);
    {
        unsigned c;
        char nl;
        if (sscanf(crcl, "crc %8x%c", &c, &nl) != 2 || nl != '\n' ||
            crcl + 13 != t + st.st_size || c != crc32c(t, body))
            goto out_bad;
    }
    *crcl = 0;
    line = strtok_r(t, "\n", &save);
    if (!line || strcmp(line, "chand-manifest 1") != 0)
        goto out_bad;
    line = strtok_r(NULL, "\n", &save);
    {
        char nm[WAL_NAME_MAX + 1], want[WAL_NAME_MAX];
        uint64_t l;
        if (!line || sscanf(line, "snapshot %64s %" SCNu64, nm, &l) != 2)
            goto out_bad;
        if (l) {
            snap_name(want, l);
            if (strcmp(nm, want) != 0)
                goto out_bad;
        } else if (strcmp(nm, "-") != 0) {
            goto out_bad;
        }
        m->snap_lsn = l;
    }
    while ((line = strtok_r(NULL, "\n", &save))) {
        uint64_t first;
        char want[WAL_NAME_MAX], nm[WAL_NAME_MAX + 1];
        wal_seg *s;
        if (sscanf(line, "segment %64s", nm) != 1 ||
            sscanf(nm, "wal-%" SCNu64 ".log", &first) != 1)
            goto out_bad;
        seg_name(want, first);
        if (strcmp(want, nm) != 0 ||
            (m->nsegs && first <= m->segs[m->nsegs - 1].first))
            goto out_bad;
        s = realloc(m->segs, (m->nsegs + 1) * sizeof *s);
        if (!s) {
            rc = -ENOMEM;
            goto out_free;
        }
        m->segs = s;
        m->segs[m->nsegs].first = first;
        m->segs[m->nsegs++].bytes = 0;
    }
    if (m->nsegs == 0 || m->segs[0].first != m->snap_lsn + 1)
        goto out_bad;
    rc = 0;
    goto out_free;
out_bad:
    fmt(err, errlen, "MANIFEST is damaged");
    rc = -EBADMSG;
out_free:
    free(t);
    if (rc) {
        free(m->segs);
        m->segs = NULL;
        m->nsegs = 0;
    }
out_close:
    close(fd);
    return rc;
}

/* ---- the snapshot filter: object -> its LSN in the snapshot ---------- */

typedef struct fent {
    char *key;
    size_t n;
    uint64_t lsn;
} fent;

typedef struct filter {
    fent *t;
    size_t cap, used;
} filter;

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

static void filter_free(filter *f)
{
    for (size_t i = 0; i < f->cap; i++)
        free(f->t[i].key);
    free(f->t);
}

/* ---- reading files ----------------------------------------------------- */

typedef struct mapped {
    const uint8_t *p;
    size_t n;
    int fd;
} mapped;

static int map_file(int dirfd, const char *name, int writable, mapped *m)
{
    struct stat st;

    m->p = NULL;
    m->n = 0;
    m->fd = openat(dirfd, name, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (m->fd < 0)
        return -errno;
    if (fstat(m->fd, &st) != 0) {
        int e = -errno;
        close(m->fd);
        return e;
    }
    m->n = (size_t)st.st_size;
    if (m->n) {
        void *p = mmap(NULL, m->n, PROT_READ, MAP_PRIVATE, m->fd, 0);
        if (p == MAP_FAILED) {
            int e = -errno;
            close(m->fd);
            return e;
        }
        m->p = p;
    }
    return 0;
}

static void unmap_file(mapped *m)
{
    if (m->n)
        munmap((void *)m->p, m->n);
    if (m->fd >= 0)
        close(m->fd);
    m->fd = -1;
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

/* What a scan found. */
typedef struct scan_res {
    uint64_t last; /* LSN of the last good record */
    size_t good;   /* bytes of whole good records, header included */
    int damaged;   /* a bad record at offset good */
    int followed;  /* ... followed by a valid one */
    char why[160];
} scan_res;

typedef struct replay {
    wal_apply_fn apply;
    void *arg;
    filter f;
    uint64_t applied, skipped;
    int apply_failed;
    char failed[200]; /* eff_format of the record apply refused */
} replay;

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
static int scan_seg(const mapped *m, uint64_t first, uint64_t *next, replay *rp,
                    scan_res *sr)
{
    size_t off = WAL_HDR, ngroup = 0, capgroup = 0;
    eff_rec *group = NULL;
    uint64_t hl, lsn = *next;
    int rc = 0;

    memset(sr, 0, sizeof *sr);
    sr->last = *next - 1;
    if (hdr_check(m->p, m->n, WAL_MAGIC_SEG, &hl) != 0 || hl != first) {
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

    rc = wbuf_reserve(&b, WAL_HDR + keep + 64);
    if (rc)
        return rc;
    hdr_make(b.p, WAL_MAGIC_SNAP, l0);
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
    rc = file_replace(dirfd, name, b.p, b.len);
    free(b.p);
    return rc;
}

/* Loads the snapshot of L0 through rp; 0 or -EBADMSG with err set.  In
 * repair mode, a damaged snapshot is cut before the damage (its objects
 * from there on are lost; their later log records find no object). */
static int load_snapshot(int dirfd, const char *dir, uint64_t l0, replay *rp,
                         int repair, uint64_t *bytes, char *err, size_t errlen)
{
    char name[WAL_NAME_MAX];
    mapped m;
    size_t off = WAL_HDR, keep = WAL_HDR;
    uint64_t hl, count = 0;
    int rc, ended = 0;
    const char *why = NULL;

    snap_name(name, l0);
    rc = map_file(dirfd, name, 0, &m);
    if (rc) {
        fmt(err, errlen, "%s/%s: %s", dir, name, strerror(-rc));
        return rc;
    }
    *bytes = m.n;
    if (hdr_check(m.p, m.n, WAL_MAGIC_SNAP, &hl) != 0 || hl != l0) {
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
                fmt(err, errlen,
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
        fmt(err, errlen,
            "%s/%s: damaged at offset %zu (%s); run `chand --repair "
            "--data-dir %s` to keep what precedes it",
            dir, name, off, why, dir);
        rc = -EBADMSG;
        goto out;
    }
    rc = snap_cut(dirfd, name, l0, &m, off == 0 ? WAL_HDR : keep,
                  off == 0 ? 0 : count);
    if (rc) {
        fmt(err, errlen, "%s/%s: cannot rewrite: %s", dir, name, strerror(-rc));
        goto out;
    }
    fmt(err, errlen,
        "cut %s at offset %zu (%s): kept %" PRIu64 " records of it", name, off,
        why, count ? count - 1 : 0);
    rc = 0;
out:
    unmap_file(&m);
    return rc;
}

/* ---- opening ------------------------------------------------------------ */

static int lock_dir(wal *w, char *err, size_t errlen)
{
    char pid[32];
    int n;

    w->lockfd = openat(w->dirfd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (w->lockfd < 0) {
        int e = -errno;
        fmt(err, errlen, "%s/LOCK: %s", w->dir, strerror(-e));
        return e;
    }
    if (flock(w->lockfd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno == EWOULDBLOCK ? -EBUSY : -errno;
        ssize_t k = pread(w->lockfd, pid, sizeof pid - 1, 0);
        pid[k > 0 ? k : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        fmt(err, errlen, "data_dir %s is in use by another chand (pid %s)",
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
static DIR *dir_list(int dirfd)
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
static int dir_has_data(int dirfd)
{
    int found = 0;
    DIR *d = dir_list(dirfd);
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
        seg_name(first, 1);
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
    DIR *d = dir_list(w->dirfd);
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
            seg_name(want, l);
            live = 0;
            for (size_t i = 0; i < w->nsegs && strcmp(nm, want) == 0; i++)
                if (w->segs[i].first == l)
                    live = 1;
            if (strcmp(nm, want) != 0)
                live = 1; /* not one of ours */
        } else if (sscanf(nm, "snap-%" SCNu64 ".snap", &l) == 1) {
            snap_name(want, l);
            live = strcmp(nm, want) != 0 || l == w->snap_lsn;
        }
        if (!live && unlinkat(w->dirfd, nm, 0) == 0)
            n++;
    }
    closedir(d);
    if (n)
        log_info("wal: %s: removed %d file(s) no manifest names", w->dir, n);
}

static int seg_create(wal *w, uint64_t first, int *fdp)
{
    char name[WAL_NAME_MAX];
    uint8_t h[WAL_HDR];
    int fd, rc;

    seg_name(name, first);
    fd = openat(w->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    hdr_make(h, WAL_MAGIC_SEG, first);
    rc = write_all(fd, h, sizeof h);
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
static int recover(wal *w, wal_apply_fn apply, void *arg, int repair, char *err,
                   size_t errlen)
{
    manifest m;
    replay rp = {.apply = apply, .arg = arg};
    uint64_t next, snapbytes = 0, closed = 0;
    int64_t t0 = now_ns();
    int rc;
    char name[WAL_NAME_MAX];

    rc = manifest_read(w->dirfd, &m, err, errlen);
    if (rc == -ENOENT) {
        if (dir_has_data(w->dirfd)) {
            fmt(err, errlen, "%s/MANIFEST is missing but log files exist",
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
        rc = seg_create(w, 1, &w->seg_fd);
        if (rc == 0)
            rc = manifest_write(w->dirfd, 0, w->segs, 1);
        if (rc)
            fmt(err, errlen, "%s: cannot create the log: %s", w->dir,
                strerror(-rc));
        w->base = WAL_HDR;
        return rc;
    }
    if (rc) {
        if (rc != -EBADMSG)
            fmt(err, errlen, "%s/MANIFEST: %s", w->dir, strerror(-rc));
        else
            fmt(err, errlen, "%s/MANIFEST is damaged", w->dir);
        return rc;
    }
    w->segs = m.segs;
    w->nsegs = m.nsegs;
    w->snap_lsn = m.snap_lsn;
    if (m.snap_lsn) {
        rc = load_snapshot(w->dirfd, w->dir, m.snap_lsn, &rp, repair,
                           &snapbytes, err, errlen);
        if (rc)
            goto out;
    }
    next = m.snap_lsn + 1;
    for (size_t i = 0; i < w->nsegs; i++) {
        mapped mp;
        scan_res sr;
        int last = i + 1 == w->nsegs;
        seg_name(name, w->segs[i].first);
        if (w->segs[i].first != next) {
            fmt(err, errlen,
                "%s/%s: starts at LSN %" PRIu64 ", expected %" PRIu64
                "; run `chand --repair --data-dir %s`",
                w->dir, name, w->segs[i].first, next, w->dir);
            rc = -EBADMSG;
            if (repair && i > 0) {
                /* Keep the segments before the gap. */
                for (size_t j = i; j < w->nsegs; j++) {
                    seg_name(name, w->segs[j].first);
                    unlinkat(w->dirfd, name, 0);
                }
                w->nsegs = i;
                fmt(err, errlen, "removed %zu segment(s) after a gap",
                    (size_t)0 + (m.nsegs - i));
                rc = 0;
                break;
            }
            goto out;
        }
        rc = map_file(w->dirfd, name, 0, &mp);
        if (rc) {
            fmt(err, errlen, "%s/%s: %s", w->dir, name, strerror(-rc));
            goto out;
        }
        rc = scan_seg(&mp, w->segs[i].first, &next, &rp, &sr);
        unmap_file(&mp);
        if (rc) {
            fmt(err, errlen, "%s/%s: applying a record failed: %s", w->dir,
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
            fmt(err, errlen,
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
                seg_name(name, w->segs[j].first);
                unlinkat(w->dirfd, name, 0);
            }
            w->nsegs = i + 1;
            fmt(err, errlen,
                "cut %s at offset %zu (%s): dropped %zu bytes and %zu later "
                "segment(s)",
                name, sr.good, sr.why, mp.n - sr.good, dropped);
            if (sr.good < WAL_HDR) {
                /* Even the header is bad: rewrite the segment empty. */
                int fd;
                rc = seg_create(w, w->segs[i].first, &fd);
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
                fmt(err, errlen, "%s/%s: cannot truncate: %s", w->dir, name,
                    strerror(errno));
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
        rc = manifest_write(w->dirfd, w->snap_lsn, w->segs, w->nsegs);
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
        seg_name(name, w->segs[w->nsegs - 1].first);
        w->seg_fd = openat(w->dirfd, name, O_WRONLY | O_CLOEXEC);
        if (w->seg_fd < 0) {
            rc = -errno;
            fmt(err, errlen, "%s/%s: %s", w->dir, name, strerror(errno));
            goto out;
        }
    }
    rc = 0;
out:
    filter_free(&rp.f);
    return rc;
}

/* ---- the flusher ----------------------------------------------------------
 */

static ssize_t sys_pwrite(void *ctx, int fd, const void *p, size_t n, off_t o)
{
    (void)ctx;
    return pwrite(fd, p, n, o);
}

static int sys_fdatasync(void *ctx, int fd)
{
    (void)ctx;
    return fdatasync(fd);
}

static void set_error(wal *w, int e, const char *what)
{
    char name[WAL_NAME_MAX];

    seg_name(name, w->segs[w->nsegs - 1].first);
    pthread_mutex_lock(&w->mu);
    if (!w->err)
        log_error("wal: %s/%s: %s failed: %s; writes are refused until it "
                  "succeeds (retried every %d ms)",
                  w->dir, name, what, strerror(-e), w->retry_ms);
    w->err = e;
    fmt(w->errmsg, sizeof w->errmsg, "durability log: %s of %s/%s failed: %s",
        what, w->dir, name, strerror(-e));
    pthread_mutex_unlock(&w->mu);
}

/* One round under io_mu: takes cur, writes what is unwritten, and
 * fdatasyncs when sync.  *taken gets the appended LSN at the take. */
static int flush_locked(wal *w, int sync, uint64_t *taken)
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
        if (w->out.len == 0) {
            wbuf t = w->out;
            w->out = w->spare;
            w->spare = t;
            w->out_last = w->spare_last;
        } else if (wbuf_reserve(&w->out, w->spare.len) == 0) {
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
        if (w->io.fdatasync(w->io.ctx, w->seg_fd) != 0) {
            rc = -errno;
            /* The kernel may have dropped the pages it failed to write:
             * everything since the last good sync is written again. */
            w->out_done = 0;
            set_error(w, rc, "fdatasync");
            return rc;
        }
        atomic_store(&w->last_fsync_ns, (uint64_t)(now_ns() - t0));
        atomic_fetch_add(&w->fsyncs, 1);
        atomic_store(&w->durable, atomic_load(&w->written));
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
static void notify(wal *w, void (*cb)(void *, uint64_t), void *arg, int failed)
{
    uint64_t d;

    if (!cb)
        return;
    pthread_mutex_lock(&w->notify_mu);
    d = atomic_load(&w->durable);
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
static int compact_start(wal *w)
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
        compact_start(w);
    pthread_mutex_unlock(&w->mu);
}

static void *flusher_main(void *arg)
{
    wal *w = arg;
    int64_t retry_at = 0;

    pthread_mutex_lock(&w->mu);
    w->next_sync_ns = now_ns() + 1000000000;
    while (!w->stop) {
        int64_t now = now_ns(), wake = INT64_MAX;
        int sync = 0, work;
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
        cb = w->on_durable;
        cb_arg = w->on_durable_arg;
        pthread_mutex_unlock(&w->mu);

        pthread_mutex_lock(&w->io_mu);
        int rc = flush_locked(w, sync, NULL);
        pthread_mutex_unlock(&w->io_mu);
        if (sync && rc == 0 && w->policy == WAL_FSYNC_EVERYSEC)
            w->next_sync_ns = now_ns() + 1000000000;
        notify(w, cb, cb_arg, rc != 0);

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

/* ---- the public calls ---------------------------------------------------- */

static void wal_free(wal *w)
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

static wal *wal_alloc(const char *dir)
{
    wal *w = calloc(1, sizeof *w);
    pthread_condattr_t ca;

    if (!w)
        return NULL;
    w->dirfd = w->lockfd = w->seg_fd = -1;
    w->dir = strdup(dir);
    pthread_mutex_init(&w->mu, NULL);
    pthread_mutex_init(&w->io_mu, NULL);
    pthread_mutex_init(&w->snap_mu, NULL);
    pthread_mutex_init(&w->notify_mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_cond_init(&w->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (!w->dir) {
        wal_free(w);
        return NULL;
    }
    return w;
}

static int open_dir(wal *w, char *err, size_t errlen)
{
    if (mkdir(w->dir, 0700) != 0 && errno != EEXIST) {
        int e = -errno;
        fmt(err, errlen, "data_dir %s: cannot create: %s", w->dir,
            strerror(errno));
        return e;
    }
    w->dirfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dirfd < 0) {
        int e = -errno;
        fmt(err, errlen, "data_dir %s: %s", w->dir, strerror(errno));
        return e;
    }
    return lock_dir(w, err, errlen);
}

int wal_open(const wal_opts *o, wal_apply_fn apply, void *arg, wal **out,
             char *err, size_t errlen)
{
    wal *w;
    int rc;

    *out = NULL;
    if (!o || !o->dir || !o->dir[0]) {
        fmt(err, errlen, "no data_dir");
        return -EINVAL;
    }
    w = wal_alloc(o->dir);
    if (!w) {
        fmt(err, errlen, "out of memory");
        return -ENOMEM;
    }
    w->policy = o->fsync;
    w->floor = o->compact_floor ? o->compact_floor : WAL_COMPACT_FLOOR;
    w->retry_ms = o->retry_ms > 0 ? o->retry_ms : 1000;
    w->io.pwrite = sys_pwrite;
    w->io.fdatasync = sys_fdatasync;
    if (o->io) {
        w->io = *o->io;
        if (!w->io.pwrite)
            w->io.pwrite = sys_pwrite;
        if (!w->io.fdatasync)
            w->io.fdatasync = sys_fdatasync;
    }
    rc = open_dir(w, err, errlen);
    if (rc)
        goto out_free;
    rc = recover(w, apply, arg, 0, err, errlen);
    if (rc)
        goto out_free;
    rc = -pthread_create(&w->thr, NULL, flusher_main, w);
    if (rc) {
        fmt(err, errlen, "cannot start the flusher thread: %s", strerror(-rc));
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
    wal_free(w);
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
    rc = w->stop ? -ECANCELED : compact_start(w);
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
        rc = flush_locked(w, 1, NULL);
    pthread_mutex_unlock(&w->io_mu);
    if (rc)
        log_error("wal: %s: %" PRIu64 " records could not be written: %s",
                  w->dir, atomic_load(&w->appended) - atomic_load(&w->durable),
                  strerror(-rc));
    wal_free(w);
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
    if (wbuf_reserve(&w->cur, total) != 0) {
        pthread_mutex_unlock(&w->mu);
        rc = -ENOMEM;
        goto out;
    }
    l = atomic_load(&w->appended);
    for (size_t i = 0; i < n; i++) {
        eff_rec c = recs[i];
        c.lsn = ++l;
        c.flags = i + 1 < n ? EFF_F_MORE : 0;
        eff_encode(&c, w->cur.p + w->cur.len);
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

void wal_flush(wal *w)
{
    /* An unlocked look first: most turns of a read-only load append
     * nothing, and must not touch the mutex. */
    if (atomic_load(&w->pending) == 0 &&
        atomic_load(&w->written) == atomic_load(&w->appended))
        return;
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

    pthread_mutex_lock(&w->mu);
    e = w->err;
    if (buf && len)
        fmt(buf, len, "%s", e ? w->errmsg : "");
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

/* ---- snapshots --------------------------------------------------------------
 */

/* Starts a new segment at the next LSN; returns 0 and *l0, the last LSN
 * of the old segments.  Called with snap_mu held. */
static int rotate(wal *w, uint64_t *l0)
{
    wal_seg *segs;
    int fd, rc;
    uint64_t last;

    pthread_mutex_lock(&w->io_mu);
    rc = flush_locked(w, 1, &last);
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
    rc = seg_create(w, last + 1, &fd);
    if (rc)
        goto out;
    w->segs[w->nsegs - 1].bytes = w->base;
    w->segs[w->nsegs].first = last + 1;
    w->segs[w->nsegs].bytes = WAL_HDR;
    rc = manifest_write(w->dirfd, w->snap_lsn, w->segs, w->nsegs + 1);
    if (rc) {
        char name[WAL_NAME_MAX];
        close(fd);
        seg_name(name, last + 1);
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
    {
        void (*cb)(void *, uint64_t);
        void *arg;
        pthread_mutex_lock(&w->mu);
        cb = w->on_durable;
        arg = w->on_durable_arg;
        pthread_mutex_unlock(&w->mu);
        notify(w, cb, arg, 0);
    }
    return rc;
}

static int snap_flush(wal_snap *s)
{
    int rc = write_all(s->fd, s->buf.p, s->buf.len);
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
    if (wbuf_reserve(&s->buf, n) != 0)
        return s->err = -ENOMEM;
    {
        eff_rec c = *r;
        c.flags = 0;
        eff_encode(&c, s->buf.p + s->buf.len);
    }
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
        fmt(err, errlen, "snapshot: starting a new log segment: %s",
            strerror(-rc));
        goto out_unlock;
    }
    if (l0 == 0) {
        /* Nothing was ever logged: there is nothing to compact. */
        rc = 0;
        goto out_unlock;
    }
    snap_name(name, l0);
    snprintf(tmp, sizeof tmp, "%s.tmp", name);
    s.fd =
        openat(w->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (s.fd < 0) {
        rc = -errno;
        fmt(err, errlen, "snapshot: %s/%s: %s", w->dir, tmp, strerror(errno));
        goto out_unlock;
    }
    hdr_make(h, WAL_MAGIC_SNAP, l0);
    rc = wbuf_reserve(&s.buf, WAL_HDR);
    if (rc)
        goto out_remove;
    memcpy(s.buf.p, h, WAL_HDR);
    s.buf.len = WAL_HDR;
    r.type = EFF_SNAP_BEGIN;
    r.lsn = l0;
    r.u.snap.start_lsn = l0;
    {
        size_t n = eff_size(&r);
        rc = wbuf_reserve(&s.buf, n);
        if (rc)
            goto out_remove;
        eff_encode(&r, s.buf.p + s.buf.len);
        s.buf.len += n;
    }
    s.count = 1;
    if (iter(arg, &s) != 0) {
        rc = s.err ? s.err : -ECANCELED;
        fmt(err, errlen, "snapshot: the walk stopped: %s", strerror(-rc));
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
        rc = wbuf_reserve(&s.buf, n);
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
    if (renameat(w->dirfd, tmp, w->dirfd, name) != 0 || fsync(w->dirfd) != 0) {
        rc = -errno;
        goto out_write_err;
    }
    /* Objects were walked while the log ran: their state may hold effects
     * the log has not synced.  Sync them, so that after the swap no crash
     * can keep a later effect (in the snapshot) and lose an earlier one. */
    rc = wal_sync(w, wal_appended_lsn(w));
    if (rc) {
        fmt(err, errlen, "snapshot: syncing the log: %s", strerror(-rc));
        unlinkat(w->dirfd, name, 0);
        goto out_unlock_buf;
    }
    pthread_mutex_lock(&w->io_mu);
    keep_from = 0;
    while (keep_from < w->nsegs && w->segs[keep_from].first <= l0)
        keep_from++;
    rc =
        manifest_write(w->dirfd, l0, w->segs + keep_from, w->nsegs - keep_from);
    if (rc) {
        pthread_mutex_unlock(&w->io_mu);
        fmt(err, errlen, "snapshot: writing the manifest: %s", strerror(-rc));
        unlinkat(w->dirfd, name, 0);
        goto out_unlock_buf;
    }
    old_snap = w->snap_lsn;
    for (size_t i = 0; i < keep_from; i++) {
        char old[WAL_NAME_MAX];
        seg_name(old, w->segs[i].first);
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
        snap_name(old, old_snap);
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
    fmt(err, errlen, "snapshot: writing %s/%s: %s", w->dir, tmp, strerror(-rc));
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
    DIR *d = dir_list(w->dirfd);
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
            seg_name(want, l);
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
            snap_name(want, l);
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
        fmt(err, errlen,
            "%s: cannot rebuild the manifest: no log segment follows a "
            "snapshot or starts at LSN 1",
            w->dir);
        goto out;
    }
    while (keep < nsegs && segs[keep].first <= best)
        keep++;
    rc = manifest_write(w->dirfd, best, segs + keep, nsegs - keep);
    if (rc)
        fmt(err, errlen, "%s: cannot write the manifest: %s", w->dir,
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
    wal *w = wal_alloc(dir);
    char what[512] = "";
    const char *rebuilt = "";
    manifest m;
    int rc;

    if (!w)
        return -ENOMEM;
    rc = open_dir(w, msg, msglen);
    if (rc)
        goto out;
    rc = manifest_read(w->dirfd, &m, what, sizeof what);
    free(m.segs);
    if (rc == -EBADMSG || (rc == -ENOENT && dir_has_data(w->dirfd))) {
        rc = manifest_rebuild(w, msg, msglen);
        if (rc)
            goto out;
        rebuilt = "manifest rebuilt; ";
    }
    what[0] = 0;
    rc = recover(w, NULL, NULL, 1, what, sizeof what);
    if (rc) {
        fmt(msg, msglen, "%s", what);
        goto out;
    }
    fmt(msg, msglen,
        "%s: %s%s; %" PRIu64 " records kept (last LSN %" PRIu64 ")", dir,
        rebuilt, what[0] ? what : "no damage found", w->rec.recovered_records,
        atomic_load(&w->appended));
out:
    wal_free(w);
    return rc;
}
