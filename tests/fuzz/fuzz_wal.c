/*
 * fuzz_wal.c - libFuzzer harness for the durability loader (daemon/wal.c)
 * and the record codec (daemon/effect.c): the input becomes the files of
 * a data_dir, which wal_open must either recover or refuse with a message,
 * never crash on; a refusal must be cured by wal_repair (which rebuilds a
 * damaged manifest from the files).
 *
 * Input format: byte 0 is the mode, the rest the payload.
 *   mode & 1   0: the payload follows a valid segment header (records);
 *              1: the payload is the whole segment file, header included.
 *   mode & 2   the payload's first two bytes (little-endian, clamped) are
 *              the length of a snapshot part, which follows a valid header
 *              of snap-...1.snap (the manifest then names the snapshot of
 *              L0 = 1 and the segment of LSN 2); the rest is the segment
 *              as above.
 *   mode & 4   first of all, the payload's first byte is a length L and
 *              the next L bytes are the MANIFEST (in place of a valid
 *              one); repair must then rebuild it from the files.
 * Every record recovery applies is read whole (ASan checks its strings
 * lie in the mapped file).  The payload also goes through eff_decode
 * frame by frame.
 *
 * The data_dir lives under $TMPDIR (default /dev/shm, else /tmp) and is
 * removed at exit.  tests/unit/test_wal_fuzz.c replays the seeds in
 * tests/fuzz/corpus/wal/ through this same function.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "effect.h"
#include "log.h"
#include "wal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_wal_dir[256];

static void fuzz_wal_cleanup(void)
{
    char cmd[300];
    if (!fuzz_wal_dir[0])
        return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_wal_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_wal: could not remove %s\n", fuzz_wal_dir);
}

/* Empties the data_dir but for LOCK: each input starts afresh. */
static void fuzz_wal_clear(void)
{
    DIR *d = opendir(fuzz_wal_dir);
    struct dirent *e;

    if (!d)
        abort();
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && strcmp(e->d_name, "LOCK") != 0)
            unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
}

static void fuzz_wal_put(const char *name, const void *a, size_t an,
                         const void *b, size_t bn)
{
    char path[400];
    int fd;

    snprintf(path, sizeof path, "%s/%s", fuzz_wal_dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || (an && write(fd, a, an) != (ssize_t)an) ||
        (bn && write(fd, b, bn) != (ssize_t)bn))
        abort();
    close(fd);
}

static void fuzz_wal_hdr(uint8_t *h, const char *magic, uint64_t lsn)
{
    uint32_t c;
    memset(h, 0, 32);
    memcpy(h, magic, 8);
    h[8] = 1;
    for (int i = 0; i < 8; i++)
        h[16 + i] = (uint8_t)(lsn >> (8 * i));
    c = crc32c(h, 24);
    for (int i = 0; i < 4; i++)
        h[24 + i] = (uint8_t)(c >> (8 * i));
}

static void fuzz_wal_manifest(uint64_t snap)
{
    char t[256];
    int n;

    if (snap)
        n = snprintf(t, sizeof t,
                     "chand-manifest 1\nsnapshot snap-%020llu.snap %llu\n"
                     "segment wal-%020llu.log\n",
                     (unsigned long long)snap, (unsigned long long)snap,
                     (unsigned long long)snap + 1);
    else
        n = snprintf(t, sizeof t,
                     "chand-manifest 1\nsnapshot - 0\n"
                     "segment wal-%020llu.log\n",
                     1ull);
    n += snprintf(t + n, sizeof t - (size_t)n, "crc %08x\n",
                  crc32c(t, (size_t)n));
    fuzz_wal_put("MANIFEST", t, (size_t)n, NULL, 0);
}

/* Reads every byte of r's strings: ASan checks they are in bounds. */
static int fuzz_wal_apply(void *arg, const eff_rec *r, int from_snapshot)
{
    volatile uint8_t sink = 0;
    (void)arg;
    (void)from_snapshot;
    if (!eff_type_known(r->type))
        abort();
    switch (r->type) {
    case EFF_CHAN_PUSH:
        for (size_t i = 0; i < r->u.push.value.n; i++)
            sink ^= (uint8_t)r->u.push.value.p[i];
        break;
    case EFF_MAP_STORE:
        for (size_t i = 0; i < r->u.map.value.n; i++)
            sink ^= (uint8_t)r->u.map.value.p[i];
        break;
    case EFF_TIMER_ADD:
        for (size_t i = 0; i < r->u.timer.request.n; i++)
            sink ^= (uint8_t)r->u.timer.request.p[i];
        break;
    default:
        break;
    }
    {
        eff_str name;
        uint64_t id;
        if (eff_object(r, &name, &id) == EFF_OBJ_NAME)
            for (size_t i = 0; i < name.n; i++)
                sink ^= (uint8_t)name.p[i];
    }
    (void)sink;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    uint8_t mode, h[32];
    const uint8_t *seg, *snap = NULL, *man = NULL;
    size_t segn, snapn = 0, off, man_n = 0;
    wal_opts o = {.fsync = WAL_FSYNC_NO};
    char err[1024], name[64];
    wal *w = NULL;
    uint64_t first = 1;
    int rc;

    if (!ready) {
        const char *t = getenv("TMPDIR");
        struct stat st;
        if (!t || !t[0])
            t = stat("/dev/shm", &st) == 0 ? "/dev/shm" : "/tmp";
        snprintf(fuzz_wal_dir, sizeof fuzz_wal_dir, "%s/fuzz_wal.XXXXXX", t);
        if (!mkdtemp(fuzz_wal_dir))
            abort();
        atexit(fuzz_wal_cleanup);
        log_set_level(LOG_LVL_ERROR + (getenv("FUZZ_WAL_LOG") ? 3 : 0));
        ready = 1;
    }
    if (size < 1)
        return 0;
    mode = data[0];
    seg = data + 1;
    segn = size - 1;

    /* The codec alone, frame after frame. */
    for (off = 0; off < segn;) {
        eff_rec r;
        size_t used;
        if (eff_decode(seg + off, segn - off, &r, &used) != 0)
            break;
        if (used < EFF_FRAME_HDR + EFF_BODY_HDR || used > segn - off)
            abort();
        off += used;
    }

    if ((mode & 4) && segn >= 1) {
        man_n = seg[0] < segn - 1 ? seg[0] : segn - 1;
        man = seg + 1;
        seg += 1 + man_n;
        segn -= 1 + man_n;
    }
    if ((mode & 2) && segn >= 2) {
        size_t cut = (size_t)seg[0] | (size_t)seg[1] << 8;
        if (cut > segn - 2)
            cut = segn - 2;
        snap = seg + 2;
        snapn = cut;
        seg = snap + cut;
        segn = segn - 2 - cut;
        first = 2;
    }
    fuzz_wal_clear();
    if (man)
        fuzz_wal_put("MANIFEST", man, man_n, NULL, 0);
    else
        fuzz_wal_manifest(first - 1);
    if (snap) {
        fuzz_wal_hdr(h, "CHANDSNP", 1);
        snprintf(name, sizeof name, "snap-%020llu.snap", 1ull);
        fuzz_wal_put(name, h, sizeof h, snap, snapn);
    }
    snprintf(name, sizeof name, "wal-%020llu.log", (unsigned long long)first);
    if (mode & 1) {
        fuzz_wal_put(name, seg, segn, NULL, 0);
    } else {
        fuzz_wal_hdr(h, "CHANDWAL", first);
        fuzz_wal_put(name, h, sizeof h, seg, segn);
    }

    o.dir = fuzz_wal_dir;
    rc = wal_open(&o, fuzz_wal_apply, NULL, &w, err, sizeof err);
    if (rc == 0) {
        eff_rec r;
        memset(&r, 0, sizeof r);
        r.type = EFF_CHAN_CLOSE;
        r.u.obj.name = eff_s("x");
        if (wal_append(w, &r, NULL) != 0)
            abort();
        if (wal_close(w) != 0)
            abort();
        return 0;
    }
    if (!err[0] || w)
        abort(); /* a refusal always says why */
    rc = wal_repair(fuzz_wal_dir, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "fuzz_wal: repair: %s\n", err);
        abort(); /* repair always brings a data_dir back */
    }
    /* What repair leaves opens cleanly. */
    rc = wal_open(&o, fuzz_wal_apply, NULL, &w, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "fuzz_wal: after repair: %s\n", err);
        abort();
    }
    wal_close(w);
    return 0;
}
