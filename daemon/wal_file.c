/*
 * wal_file.c - the log's file primitives: headers, file names, whole
 * writes, atomic replace, the MANIFEST, and mapping a file to read it.
 */
#include "wal_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"

/* ---- small helpers --------------------------------------------------- */

void wal__fmt(char *buf, size_t len, const char *f, ...)
{
    va_list ap;
    if (!buf || !len)
        return;
    va_start(ap, f);
    vsnprintf(buf, len, f, ap);
    va_end(ap);
}

int wal__wbuf_reserve(wbuf *b, size_t n)
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

void wal__hdr_make(uint8_t *h, const char *magic, uint64_t lsn)
{
    memset(h, 0, WAL_HDR);
    memcpy(h, magic, 8);
    put32(h + 8, WAL_FORMAT);
    put64(h + 16, lsn);
    put32(h + 24, crc32c(h, 24));
}

/* Returns 0 and *lsn when h is a valid header of the given magic. */
int wal__hdr_check(const uint8_t *h, size_t n, const char *magic, uint64_t *lsn)
{
    if (n < WAL_HDR || memcmp(h, magic, 8) != 0 ||
        crc32c(h, 24) != get32(h + 24))
        return -EBADMSG;
    if (get32(h + 8) != WAL_FORMAT)
        return -ENOTSUP;
    *lsn = get64(h + 16);
    return 0;
}

void wal__seg_name(char *b, uint64_t first)
{
    snprintf(b, WAL_NAME_MAX, "wal-%020" PRIu64 ".log", first);
}

void wal__snap_name(char *b, uint64_t l0)
{
    snprintf(b, WAL_NAME_MAX, "snap-%020" PRIu64 ".snap", l0);
}

int wal__write_all(int fd, const void *p, size_t n)
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
int wal__file_replace(int dirfd, const char *name, const void *p, size_t n)
{
    char tmp[WAL_NAME_MAX + 8];
    int fd, rc;

    snprintf(tmp, sizeof tmp, "%s.tmp", name);
    fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    rc = wal__write_all(fd, p, n);
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

int wal__manifest_write(int dirfd, uint64_t snap_lsn, const wal_seg *segs,
                        size_t nsegs)
{
    size_t cap = 128 + nsegs * 48, n = 0;
    char *t = malloc(cap), name[WAL_NAME_MAX];
    int rc;

    if (!t)
        return -ENOMEM;
    if (snap_lsn)
        wal__snap_name(name, snap_lsn);
    n += (size_t)snprintf(t + n, cap - n,
                          "chand-manifest 1\nsnapshot %s %" PRIu64 "\n",
                          snap_lsn ? name : "-", snap_lsn);
    for (size_t i = 0; i < nsegs; i++) {
        wal__seg_name(name, segs[i].first);
        n += (size_t)snprintf(t + n, cap - n, "segment %s\n", name);
    }
    n += (size_t)snprintf(t + n, cap - n, "crc %08x\n", crc32c(t, n));
    rc = wal__file_replace(dirfd, "MANIFEST", t, n);
    free(t);
    return rc;
}

/* Reads MANIFEST: 0, -ENOENT when there is none, or -EBADMSG (message in
 * err). */
int wal__manifest_read(int dirfd, manifest *m, char *err, size_t errlen)
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
        wal__fmt(err, errlen, "MANIFEST: unreadable or too large");
        goto out_close;
    }
    t = malloc((size_t)st.st_size + 1);
    if (!t) {
        rc = -ENOMEM;
        goto out_close;
    }
    if (read(fd, t, (size_t)st.st_size) != st.st_size) {
        wal__fmt(err, errlen, "MANIFEST: short read");
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
            wal__snap_name(want, l);
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
        wal__seg_name(want, first);
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
    wal__fmt(err, errlen, "MANIFEST is damaged");
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

/* ---- reading files ----------------------------------------------------- */

int wal__map_file(int dirfd, const char *name, int writable, mapped *m)
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

void wal__unmap_file(mapped *m)
{
    if (m->n)
        munmap((void *)m->p, m->n);
    if (m->fd >= 0)
        close(m->fd);
    m->fd = -1;
}
