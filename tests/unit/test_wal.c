/*
 * test_wal.c - unit tests of the durability core: CRC-32C (daemon/crc32c.c),
 * the effect records' codec (daemon/effect.c), the log, its recovery,
 * repair, snapshots, group commit and the end-of-turn flush
 * (daemon/wal.c), and the token epoch (daemon/epoch.c).
 *
 * Replay is checked against a small model of the server's state: random
 * effects are applied to a model and logged; recovery into a fresh model
 * must give the same state, with and without a fuzzy snapshot taken while
 * effects keep coming.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crc32c.h"
#include "effect.h"
#include "epoch.h"
#include "log.h"
#include "wal.h"

/* ---- helpers ------------------------------------------------------------ */

static char tmpdir[256];
static int dircount;

/* Returns a new, empty directory path (static buffer per call site's
 * copy). */
static void newdir(char *out, size_t n)
{
    snprintf(out, n, "%s/d%d", tmpdir, dircount++);
}

static int setup(void **state)
{
    (void)state;
    log_set_level(LOG_LVL_ERROR);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_wal.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[300];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static uint8_t *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    uint8_t *p;
    long sz;

    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    sz = ftell(f);
    rewind(f);
    p = malloc((size_t)sz + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return p;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void copy_file(const char *from, const char *to)
{
    size_t n;
    uint8_t *p = read_file(from, &n);
    write_file(to, p, n);
    free(p);
}

static void seg_path(char *out, size_t n, const char *dir, uint64_t first)
{
    snprintf(out, n, "%s/wal-%020" PRIu64 ".log", dir, first);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- CRC-32C --------------------------------------------------------------
 */

static void test_crc_vectors(void **state)
{
    uint8_t b[32];
    (void)state;

    /* RFC 3720 B.4 and the "check" value of the catalogue. */
    assert_int_equal(crc32c("123456789", 9), 0xE3069283);
    assert_int_equal(crc32c__sw(0, "123456789", 9), 0xE3069283);
    memset(b, 0, sizeof b);
    assert_int_equal(crc32c(b, 32), 0x8A9136AA);
    assert_int_equal(crc32c__sw(0, b, 32), 0x8A9136AA);
    memset(b, 0xff, sizeof b);
    assert_int_equal(crc32c(b, 32), 0x62A8AB43);
    assert_int_equal(crc32c__sw(0, b, 32), 0x62A8AB43);
    for (int i = 0; i < 32; i++)
        b[i] = (uint8_t)i;
    assert_int_equal(crc32c(b, 32), 0x46DD794E);
    assert_int_equal(crc32c__sw(0, b, 32), 0x46DD794E);
    for (int i = 0; i < 32; i++)
        b[i] = (uint8_t)(31 - i);
    assert_int_equal(crc32c(b, 32), 0x113FDB5C);
    assert_int_equal(crc32c("", 0), 0);
    /* Incremental, and the two paths agree at every length and alignment. */
    assert_int_equal(crc32c_update(crc32c("1234", 4), "56789", 5), 0xE3069283);
    {
        uint8_t big[300];
        for (size_t i = 0; i < sizeof big; i++)
            big[i] = (uint8_t)rnd();
        for (size_t off = 0; off < 9; off++)
            for (size_t n = 0; n + off <= sizeof big; n += 7)
                assert_int_equal(crc32c(big + off, n),
                                 crc32c__sw(0, big + off, n));
    }
    print_message("crc32c: %s\n", crc32c_hw() ? "sse4.2" : "table");
}

/* ---- the codec ------------------------------------------------------------
 */

/* Fills r with type t and distinctive field values. */
static void sample(eff_rec *r, unsigned t)
{
    memset(r, 0, sizeof *r);
    r->type = (uint16_t)t;
    r->lsn = 1000 + t;
    switch (t) {
    case EFF_CHAN_MAKE:
        r->u.make.name = eff_s("jobs");
        r->u.make.cap = 1u << 20;
        r->u.make.elem = eff_s("string");
        r->u.make.max_deliver = 5;
        r->u.make.dead_letter = eff_s("jobs.dead");
        break;
    case EFF_CHAN_PUSH:
        r->u.push.name = eff_s("jobs");
        r->u.push.value = eff_s("{\"a\":[1,2,\"\xc3\xa9\"]}");
        break;
    case EFF_CHAN_POP:
        r->u.pop.name = eff_s("jobs");
        r->u.pop.count = 3;
        break;
    case EFF_CHAN_CLOSE:
    case EFF_DROP:
    case EFF_MAP_CLEAR:
        r->u.obj.name = eff_s("thing");
        break;
    case EFF_MAP_STORE:
    case EFF_MAP_DELETE:
        r->u.map.name = eff_s("m");
        r->u.map.key = eff_s("k\0ey");
        if (t == EFF_MAP_STORE)
            r->u.map.value = eff_s("[true,null]");
        break;
    case EFF_ATOMIC_SET:
    case EFF_WG_SET:
        r->u.num.name = eff_s("n");
        r->u.num.v = t == EFF_ATOMIC_SET ? INT64_MIN : -7;
        break;
    case EFF_ONCE_DONE:
        r->u.once.name = eff_s("init");
        r->u.once.has_value = 1;
        r->u.once.value = eff_s("\"done\"");
        break;
    case EFF_HOLD_GRANT:
    case EFF_HOLD_RENEW:
    case EFF_HOLD_RELEASE:
        r->u.hold.name = eff_s("orders");
        r->u.hold.kind = EFF_HOLD_WRITE;
        r->u.hold.token = (3ull << 32) | 9001;
        r->u.hold.deadline_ms = 1767225600123;
        break;
    case EFF_TIMER_ADD:
    case EFF_TIMER_FIRE:
    case EFF_TIMER_STOP:
        r->u.timer.id = UINT64_MAX;
        if (t != EFF_TIMER_STOP)
            r->u.timer.deadline_ms = 1767225600999;
        if (t == EFF_TIMER_ADD) {
            r->u.timer.kind = EFF_TIMER_AFTERFUNC;
            r->u.timer.period_ms = 250;
            r->u.timer.target = eff_s("ticks");
            r->u.timer.request =
                eff_s("{\"method\":\"send\",\"params\":{\"name\":\"x\"}}");
        }
        break;
    case EFF_TOKEN_EPOCH:
        r->u.epoch.epoch = EPOCH_MAX;
        break;
    case EFF_DLV_INFLIGHT:
    case EFF_DLV_ACK:
    case EFF_DLV_REDELIVER:
    case EFF_DLV_TOUCH:
    case EFF_DLV_DEAD:
        r->u.dlv.name = eff_s("jobs");
        r->u.dlv.id = 77;
        r->u.dlv.attempt = 2;
        r->u.dlv.deadline_ms = -1;
        r->u.dlv.value = eff_s("\"v\"");
        r->u.dlv.reason = eff_s("boom");
        r->u.dlv.prev_id = 76;
        break;
    case EFF_SNAP_BEGIN:
        r->u.snap.start_lsn = 123;
        break;
    case EFF_SNAP_END:
        r->u.snap.count = 456;
        break;
    }
}

static int str_eq(eff_str a, eff_str b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

/* Returns 1 when a and b (same type) have equal fields. */
static int rec_eq(const eff_rec *a, const eff_rec *b)
{
    if (a->type != b->type || a->lsn != b->lsn || a->flags != b->flags)
        return 0;
    switch (a->type) {
    case EFF_CHAN_MAKE:
        return str_eq(a->u.make.name, b->u.make.name) &&
               a->u.make.cap == b->u.make.cap &&
               str_eq(a->u.make.elem, b->u.make.elem) &&
               a->u.make.max_deliver == b->u.make.max_deliver &&
               str_eq(a->u.make.dead_letter, b->u.make.dead_letter);
    case EFF_CHAN_PUSH:
        return str_eq(a->u.push.name, b->u.push.name) &&
               str_eq(a->u.push.value, b->u.push.value);
    case EFF_CHAN_POP:
        return str_eq(a->u.pop.name, b->u.pop.name) &&
               a->u.pop.count == b->u.pop.count;
    case EFF_CHAN_CLOSE:
    case EFF_DROP:
    case EFF_MAP_CLEAR:
        return str_eq(a->u.obj.name, b->u.obj.name);
    case EFF_MAP_STORE:
    case EFF_MAP_DELETE:
        return str_eq(a->u.map.name, b->u.map.name) &&
               str_eq(a->u.map.key, b->u.map.key) &&
               str_eq(a->u.map.value, b->u.map.value);
    case EFF_ATOMIC_SET:
    case EFF_WG_SET:
        return str_eq(a->u.num.name, b->u.num.name) && a->u.num.v == b->u.num.v;
    case EFF_ONCE_DONE:
        return str_eq(a->u.once.name, b->u.once.name) &&
               a->u.once.has_value == b->u.once.has_value &&
               str_eq(a->u.once.value, b->u.once.value);
    case EFF_HOLD_GRANT:
    case EFF_HOLD_RENEW:
    case EFF_HOLD_RELEASE:
        return str_eq(a->u.hold.name, b->u.hold.name) &&
               a->u.hold.kind == b->u.hold.kind &&
               a->u.hold.token == b->u.hold.token &&
               a->u.hold.deadline_ms == b->u.hold.deadline_ms;
    case EFF_TIMER_ADD:
    case EFF_TIMER_FIRE:
    case EFF_TIMER_STOP:
        return a->u.timer.id == b->u.timer.id &&
               a->u.timer.kind == b->u.timer.kind &&
               a->u.timer.deadline_ms == b->u.timer.deadline_ms &&
               a->u.timer.period_ms == b->u.timer.period_ms &&
               str_eq(a->u.timer.target, b->u.timer.target) &&
               str_eq(a->u.timer.request, b->u.timer.request);
    case EFF_TOKEN_EPOCH:
        return a->u.epoch.epoch == b->u.epoch.epoch;
    case EFF_SNAP_BEGIN:
    case EFF_SNAP_END:
        return a->u.snap.start_lsn == b->u.snap.start_lsn &&
               a->u.snap.count == b->u.snap.count;
    default:
        return str_eq(a->u.dlv.name, b->u.dlv.name) &&
               a->u.dlv.id == b->u.dlv.id &&
               a->u.dlv.attempt == b->u.dlv.attempt &&
               a->u.dlv.deadline_ms == b->u.dlv.deadline_ms &&
               str_eq(a->u.dlv.value, b->u.dlv.value) &&
               str_eq(a->u.dlv.reason, b->u.dlv.reason) &&
               a->u.dlv.prev_id == b->u.dlv.prev_id;
    }
}

static void test_codec_every_type(void **state)
{
    int types = 0;
    (void)state;

    for (unsigned t = 0; t < EFF_TYPE_MAX + 3; t++) {
        eff_rec r, d;
        size_t n, used;
        uint8_t *b;

        sample(&r, t);
        n = eff_size(&r);
        if (!eff_type_known(t)) {
            assert_int_equal(n, 0);
            assert_string_equal(eff_type_name(t), "unknown");
            continue;
        }
        types++;
        assert_true(n >= EFF_FRAME_HDR + EFF_BODY_HDR);
        assert_string_not_equal(eff_type_name(t), "unknown");
        b = malloc(n + 16);
        assert_int_equal(eff_encode(&r, b), n);
        memset(&d, 0xa5, sizeof d);
        assert_int_equal(eff_decode(b, n, &d, &used), 0);
        assert_int_equal(used, n);
        assert_true(rec_eq(&r, &d));
        assert_int_equal(d.ver, EFF_VERSION);
        /* Trailing bytes after a frame are not the frame's. */
        memset(b + n, 0x5a, 16);
        assert_int_equal(eff_decode(b, n + 16, &d, &used), 0);
        assert_int_equal(used, n);
        /* Every strict prefix is "need more", never a record. */
        for (size_t k = 0; k < n; k++)
            assert_int_equal(eff_decode(b, k, &d, &used), -EAGAIN);
        /* Every single-bit flip is caught (CRC-32C's promise). */
        for (size_t k = 0; k < n * 8; k++) {
            int rc;
            b[k / 8] ^= (uint8_t)(1u << (k % 8));
            rc = eff_decode(b, n, &d, &used);
            assert_true(rc != 0);
            b[k / 8] ^= (uint8_t)(1u << (k % 8));
        }
        free(b);
    }
    assert_int_equal(types, 25);
}

static void test_codec_format(void **state)
{
    char b[512];
    eff_rec r;
    (void)state;

    sample(&r, EFF_CHAN_PUSH);
    r.flags = EFF_F_MORE;
    eff_format(&r, b, sizeof b);
    assert_string_equal(b, "1002 chan_push+ name=\"jobs\" "
                           "value={\"a\":[1,2,\"\xc3\xa9\"]}");
    sample(&r, EFF_MAP_DELETE);
    r.u.map.key.p = "k\0ey";
    r.u.map.key.n = 4;
    eff_format(&r, b, sizeof b);
    assert_string_equal(b, "1007 map_delete name=\"m\" key=\"k\\x00ey\"");
    sample(&r, EFF_HOLD_GRANT);
    eff_format(&r, b, sizeof b);
    assert_non_null(strstr(b, "hold_grant name=\"orders\" kind=2 token="));
    /* Every type, every buffer size: NUL-terminated, never past len. */
    for (unsigned t = 0; t < EFF_TYPE_MAX + 2; t++) {
        sample(&r, t);
        for (size_t len = 1; len < 200; len += 3) {
            char *small = malloc(len);
            size_t n = eff_format(&r, small, len);
            assert_true(n < len);
            assert_int_equal(strlen(small), n);
            free(small);
        }
    }
}

/* Re-frames body (type already in it) with a good length and CRC. */
static size_t frame(uint8_t *out, const uint8_t *body, size_t blen)
{
    uint32_t len = (uint32_t)blen, crc;
    for (int i = 0; i < 4; i++)
        out[i] = (uint8_t)(len >> (8 * i));
    memcpy(out + 8, body, blen);
    crc = crc32c_update(crc32c(out, 4), body, blen);
    for (int i = 0; i < 4; i++)
        out[4 + i] = (uint8_t)(crc >> (8 * i));
    return blen + 8;
}

static void test_codec_compat(void **state)
{
    eff_rec r, d;
    uint8_t b[256], body[256];
    size_t n, used, bl;
    (void)state;

    /* A newer layout: extra trailing bytes after the known fields. */
    sample(&r, EFF_CHAN_POP);
    n = eff_encode(&r, b);
    bl = n - 8;
    memcpy(body, b + 8, bl);
    body[bl++] = 0x05; /* an unknown varint field */
    body[bl++] = 0x01;
    n = frame(b, body, bl);
    assert_int_equal(eff_decode(b, n, &d, &used), 0);
    assert_true(rec_eq(&r, &d));
    /* An older layout: chan_make without max_deliver and dead_letter. */
    memset(&r, 0, sizeof r);
    r.type = EFF_CHAN_MAKE;
    r.lsn = 9;
    r.u.make.name = eff_s("q");
    r.u.make.cap = 4;
    n = eff_encode(&r, b);
    /* Drop the last two fields (two empty varints: 0 and "" = 2 bytes). */
    bl = n - 8 - 2;
    memcpy(body, b + 8, bl);
    n = frame(b, body, bl);
    assert_int_equal(eff_decode(b, n, &d, &used), 0);
    assert_true(rec_eq(&r, &d));
    /* An unknown type and unknown flags are refused. */
    memcpy(body, b + 8, bl);
    body[0] = 50;
    n = frame(b, body, bl);
    assert_int_equal(eff_decode(b, n, &d, &used), -ENOTSUP);
    body[0] = EFF_CHAN_MAKE;
    body[3] = 2;
    n = frame(b, body, bl);
    assert_int_equal(eff_decode(b, n, &d, &used), -ENOTSUP);
    /* The group flag is kept. */
    body[3] = EFF_F_MORE;
    n = frame(b, body, bl);
    assert_int_equal(eff_decode(b, n, &d, &used), 0);
    assert_int_equal(d.flags, EFF_F_MORE);
    /* A string longer than the body, an overlong varint: refused. */
    memset(body, 0, sizeof body);
    body[0] = EFF_CHAN_PUSH;
    body[2] = 1;
    body[12] = 100; /* name length 100 in a 14-byte body */
    n = frame(b, body, 14);
    assert_int_equal(eff_decode(b, n, &d, &used), -EINVAL);
    memset(body + 12, 0xff, 11);
    n = frame(b, body, 23);
    assert_int_equal(eff_decode(b, n, &d, &used), -EINVAL);
    /* A u32 field above 2^32. */
    memset(body, 0, sizeof body);
    body[0] = EFF_ONCE_DONE;
    body[2] = 1;
    body[12] = 0;                                 /* name "" */
    memcpy(body + 13, "\x80\x80\x80\x80\x10", 5); /* 2^32 */
    n = frame(b, body, 18);
    assert_int_equal(eff_decode(b, n, &d, &used), -EINVAL);
    /* Lengths out of range. */
    memset(b, 0, 16);
    assert_int_equal(eff_decode(b, 16, &d, &used), -EBADMSG);
    b[0] = 0xff, b[1] = 0xff, b[2] = 0xff, b[3] = 0xff;
    assert_int_equal(eff_decode(b, 16, &d, &used), -EBADMSG);
}

static void test_codec_garbage(void **state)
{
    uint8_t b[512];
    (void)state;

    for (int i = 0; i < 20000; i++) {
        size_t n = rnd() % sizeof b, used;
        eff_rec d;
        for (size_t k = 0; k < n; k++)
            b[k] = (uint8_t)rnd();
        if (n >= 8 && (i & 1)) {
            /* A plausible length and a good CRC over random fields. */
            size_t bl = n - 8;
            uint8_t body[512];
            memcpy(body, b + 8, bl);
            if (bl >= 12) {
                body[0] = (uint8_t)(rnd() % EFF_TYPE_MAX);
                body[1] = 0;
                body[2] = 1;
                body[3] = 0;
            }
            frame(b, body, bl);
        }
        if (eff_decode(b, n, &d, &used) == 0)
            assert_true(used <= n);
    }
}

/* ---- a model of the state ----------------------------------------------- */

#define M_OBJS 12
#define M_TIMERS 8

enum { MT_NONE, MT_CHAN, MT_MAP, MT_NUM, MT_WG, MT_ONCE, MT_LOCK };

typedef struct mdlv {
    uint64_t id;
    uint32_t attempt;
    int64_t deadline;
    char *value;
    int requeued;
} mdlv;

typedef struct mobj {
    int type;
    uint64_t lsn;
    uint64_t cap;
    int closed;
    char **vals; /* chan values, or map "key=value" */
    size_t nvals;
    mdlv *dlv;
    size_t ndlv;
    int64_t num;
    int once_done;
    char *once_value;
    uint64_t token;
    uint32_t kind;
    int64_t deadline;
} mobj;

typedef struct mtimer {
    int live;
    uint64_t lsn;
    uint32_t kind;
    int64_t deadline, period;
    char *target;
} mtimer;

typedef struct model {
    mobj o[M_OBJS];
    mtimer t[M_TIMERS];
    uint64_t epoch;
    pthread_mutex_t mu;
    wal *w;         /* when set, the snapshot walk runs effects ... */
    int interleave; /* ... this many after each object */
    int trace_fd;   /* when > 0, "lsn hash" of the state after each effect */
    int noflush;    /* run_effects asks for no flush */
    int die_after_append; /* run_effects: _exit once a record is written */
} model;

static char *sdup(eff_str s)
{
    char *p = malloc(s.n + 1);
    assert_non_null(p);
    if (s.n)
        memcpy(p, s.p, s.n);
    p[s.n] = 0;
    return p;
}

static void mobj_clear(mobj *o)
{
    for (size_t i = 0; i < o->nvals; i++)
        free(o->vals[i]);
    free(o->vals);
    for (size_t i = 0; i < o->ndlv; i++)
        free(o->dlv[i].value);
    free(o->dlv);
    free(o->once_value);
    memset(o, 0, sizeof *o);
}

static void model_init(model *m)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}

static void model_free(model *m)
{
    for (int i = 0; i < M_OBJS; i++)
        mobj_clear(&m->o[i]);
    for (int i = 0; i < M_TIMERS; i++)
        free(m->t[i].target);
    pthread_mutex_destroy(&m->mu);
}

/* Object names are "o<i>"; returns i, or -1. */
static int mslot_s(eff_str name)
{
    char b[8];
    if (name.n < 2 || name.n > 3 || name.p[0] != 'o')
        return -1;
    memcpy(b, name.p + 1, name.n - 1);
    b[name.n - 1] = 0;
    return atoi(b);
}

static void push_val(mobj *o, char *v)
{
    o->vals = realloc(o->vals, (o->nvals + 1) * sizeof *o->vals);
    o->vals[o->nvals++] = v;
}

/* Applies r to m: the daemon's replay rules in small (a record for a
 * missing object is skipped; maps, numbers, onces and locks are made by
 * their first record). */
static int model_apply(void *arg, const eff_rec *r, int from_snap)
{
    model *m = arg;
    eff_str name;
    uint64_t id;
    mobj *o = NULL;
    int i;
    (void)from_snap;

    switch (eff_object(r, &name, &id)) {
    case EFF_OBJ_TIMER: {
        mtimer *t = &m->t[id % M_TIMERS];
        if (r->type == EFF_TIMER_ADD) {
            free(t->target);
            t->live = 1;
            t->kind = r->u.timer.kind;
            t->deadline = r->u.timer.deadline_ms;
            t->period = r->u.timer.period_ms;
            t->target = sdup(r->u.timer.target);
        } else if (r->type == EFF_TIMER_FIRE && t->live) {
            if (t->kind == EFF_TIMER_TICKER)
                t->deadline = r->u.timer.deadline_ms;
            else
                t->live = 0;
        } else if (r->type == EFF_TIMER_STOP) {
            t->live = 0;
        }
        t->lsn = r->lsn;
        return 0;
    }
    case EFF_OBJ_NONE:
        if (r->type == EFF_TOKEN_EPOCH && r->u.epoch.epoch > m->epoch)
            m->epoch = r->u.epoch.epoch;
        return 0;
    case EFF_OBJ_NAME:
        i = mslot_s(name);
        if (i < 0 || i >= M_OBJS)
            return -1;
        o = &m->o[i];
        break;
    }
    switch (r->type) {
    case EFF_CHAN_MAKE:
        mobj_clear(o);
        o->type = MT_CHAN;
        o->cap = r->u.make.cap;
        break;
    case EFF_CHAN_PUSH:
        if (o->type != MT_CHAN)
            return 0;
        push_val(o, sdup(r->u.push.value));
        break;
    case EFF_CHAN_POP:
        if (o->type != MT_CHAN)
            return 0;
        if (r->u.pop.count > o->nvals)
            return -1;
        for (size_t k = 0; k < r->u.pop.count; k++)
            free(o->vals[k]);
        memmove(o->vals, o->vals + r->u.pop.count,
                (o->nvals - r->u.pop.count) * sizeof *o->vals);
        o->nvals -= r->u.pop.count;
        break;
    case EFF_CHAN_CLOSE:
        if (o->type != MT_CHAN)
            return 0;
        o->closed = 1;
        break;
    case EFF_DROP:
        mobj_clear(o);
        return 0;
    case EFF_MAP_STORE:
    case EFF_MAP_DELETE:
    case EFF_MAP_CLEAR: {
        char *kv, *key;
        if (o->type != MT_MAP) {
            mobj_clear(o);
            o->type = MT_MAP;
        }
        if (r->type == EFF_MAP_CLEAR) {
            for (size_t k = 0; k < o->nvals; k++)
                free(o->vals[k]);
            o->nvals = 0;
            break;
        }
        key = sdup(r->u.map.key);
        for (size_t k = 0; k < o->nvals; k++) {
            size_t kl = strlen(key);
            if (!strncmp(o->vals[k], key, kl) && o->vals[k][kl] == '=') {
                free(o->vals[k]);
                o->vals[k] = o->vals[--o->nvals];
                break;
            }
        }
        if (r->type == EFF_MAP_STORE) {
            kv = malloc(strlen(key) + r->u.map.value.n + 2);
            sprintf(kv, "%s=%.*s", key, (int)r->u.map.value.n,
                    r->u.map.value.p);
            push_val(o, kv);
        }
        free(key);
        break;
    }
    case EFF_ATOMIC_SET:
    case EFF_WG_SET:
        if (o->type != MT_NUM && o->type != MT_WG) {
            mobj_clear(o);
        }
        o->type = r->type == EFF_ATOMIC_SET ? MT_NUM : MT_WG;
        o->num = r->u.num.v;
        break;
    case EFF_ONCE_DONE:
        mobj_clear(o);
        o->type = MT_ONCE;
        o->once_done = 1;
        if (r->u.once.has_value)
            o->once_value = sdup(r->u.once.value);
        break;
    case EFF_HOLD_GRANT:
    case EFF_HOLD_RENEW:
        if (o->type != MT_LOCK) {
            mobj_clear(o);
            o->type = MT_LOCK;
        }
        o->token = r->u.hold.token;
        o->kind = r->u.hold.kind;
        o->deadline = r->u.hold.deadline_ms;
        break;
    case EFF_HOLD_RELEASE:
        if (o->type != MT_LOCK)
            return 0;
        o->token = 0;
        o->deadline = 0;
        break;
    case EFF_DLV_INFLIGHT:
        if (o->type != MT_CHAN)
            return 0;
        o->dlv = realloc(o->dlv, (o->ndlv + 1) * sizeof *o->dlv);
        o->dlv[o->ndlv].id = r->u.dlv.id;
        o->dlv[o->ndlv].attempt = r->u.dlv.attempt;
        o->dlv[o->ndlv].deadline = r->u.dlv.deadline_ms;
        o->dlv[o->ndlv].value = sdup(r->u.dlv.value);
        o->dlv[o->ndlv].requeued = 0;
        o->ndlv++;
        break;
    default: /* the other deliveries, by id */
        if (o->type != MT_CHAN)
            return 0;
        for (size_t k = 0; k < o->ndlv; k++) {
            if (o->dlv[k].id != r->u.dlv.id)
                continue;
            if (r->type == EFF_DLV_ACK || r->type == EFF_DLV_DEAD) {
                free(o->dlv[k].value);
                o->dlv[k] = o->dlv[--o->ndlv];
            } else {
                o->dlv[k].deadline = r->u.dlv.deadline_ms;
                if (r->type == EFF_DLV_REDELIVER)
                    o->dlv[k].requeued = 1;
            }
            break;
        }
        break;
    }
    o->lsn = r->lsn;
    return 0;
}

/* Returns a new string describing m (LSNs left out: a snapshot keeps an
 * object's last LSN, replay the last record's). */
static char *model_dump(model *m)
{
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);

#define OUT(...)                                                               \
    do {                                                                       \
        int k_ = snprintf(s + n, cap - n, __VA_ARGS__);                        \
        while ((size_t)k_ >= cap - n) {                                        \
            cap *= 2;                                                          \
            s = realloc(s, cap);                                               \
            k_ = snprintf(s + n, cap - n, __VA_ARGS__);                        \
        }                                                                      \
        n += (size_t)k_;                                                       \
    } while (0)

    OUT("epoch %" PRIu64 "\n", m->epoch);
    for (int i = 0; i < M_OBJS; i++) {
        mobj *o = &m->o[i];
        if (o->type == MT_NONE)
            continue;
        OUT("o%d type %d cap %" PRIu64 " closed %d num %" PRId64
            " once %d %s lock %" PRIu64 " %u %" PRId64 "\n",
            i, o->type, o->cap, o->closed, o->num, o->once_done,
            o->once_value ? o->once_value : "-", o->token, o->kind,
            o->deadline);
        if (o->type == MT_MAP) {
            /* Map order is not state: sort. */
            for (size_t a = 0; a < o->nvals; a++)
                for (size_t b = a + 1; b < o->nvals; b++)
                    if (strcmp(o->vals[a], o->vals[b]) > 0) {
                        char *t = o->vals[a];
                        o->vals[a] = o->vals[b];
                        o->vals[b] = t;
                    }
        }
        for (size_t k = 0; k < o->nvals; k++)
            OUT("  v %s\n", o->vals[k]);
        for (size_t k = 0; k < o->ndlv; k++)
            OUT("  d %" PRIu64 " %u %" PRId64 " %s %d\n", o->dlv[k].id,
                o->dlv[k].attempt, o->dlv[k].deadline, o->dlv[k].value,
                o->dlv[k].requeued);
    }
    for (int i = 0; i < M_TIMERS; i++)
        if (m->t[i].live)
            OUT("t%d %u %" PRId64 " %" PRId64 " %s\n", i, m->t[i].kind,
                m->t[i].deadline, m->t[i].period, m->t[i].target);
#undef OUT
    return s;
}

/* Makes one random effect valid for m's state, into r (strings in sbuf).
 * Returns 0, or -1 when the pick has nothing to act on. */
static int random_effect(model *m, eff_rec *r, char sbuf[4][64])
{
    int i = (int)(rnd() % M_OBJS);
    mobj *o = &m->o[i];
    unsigned pick = (unsigned)(rnd() % 100);

    memset(r, 0, sizeof *r);
    snprintf(sbuf[0], 64, "o%d", i);
    if (pick < 6) {
        uint64_t id = rnd() % M_TIMERS;
        mtimer *t = &m->t[id];
        r->u.timer.id = id;
        if (!t->live) {
            r->type = EFF_TIMER_ADD;
            r->u.timer.kind = (uint32_t)(rnd() % 3);
            r->u.timer.deadline_ms = (int64_t)(rnd() % 100000);
            r->u.timer.period_ms = (int64_t)(rnd() % 1000);
            snprintf(sbuf[1], 64, "o%d", (int)(rnd() % M_OBJS));
            r->u.timer.target = eff_s(sbuf[1]);
        } else {
            r->type = rnd() % 2 ? EFF_TIMER_FIRE : EFF_TIMER_STOP;
            r->u.timer.deadline_ms = t->deadline + t->period;
        }
        return 0;
    }
    if (pick < 8) {
        r->type = EFF_TOKEN_EPOCH;
        r->u.epoch.epoch = m->epoch + 1 + rnd() % 3;
        return 0;
    }
    if (pick < 11 && o->type != MT_NONE) {
        r->type = EFF_DROP;
        r->u.obj.name = eff_s(sbuf[0]);
        return 0;
    }
    if (o->type == MT_NONE) {
        switch (rnd() % 6) {
        case 0:
        case 1:
            r->type = EFF_CHAN_MAKE;
            r->u.make.name = eff_s(sbuf[0]);
            r->u.make.cap = rnd() % 50;
            r->u.make.elem = eff_s("any");
            return 0;
        case 2:
            o->type = MT_MAP; /* made by its first record */
            break;
        case 3:
            r->type = rnd() % 2 ? EFF_ATOMIC_SET : EFF_WG_SET;
            r->u.num.name = eff_s(sbuf[0]);
            r->u.num.v = (int64_t)rnd();
            return 0;
        case 4:
            r->type = EFF_ONCE_DONE;
            r->u.once.name = eff_s(sbuf[0]);
            r->u.once.has_value = (uint32_t)(rnd() % 2);
            snprintf(sbuf[1], 64, "\"init %d\"", (int)(rnd() % 100));
            r->u.once.value = eff_s(sbuf[1]);
            return 0;
        default:
            o->type = MT_LOCK;
            break;
        }
        if (o->type == MT_MAP) {
            o->type = MT_NONE;
            r->type = EFF_MAP_STORE;
            r->u.map.name = eff_s(sbuf[0]);
            snprintf(sbuf[1], 64, "k%d", (int)(rnd() % 5));
            snprintf(sbuf[2], 64, "%d", (int)(rnd() % 1000));
            r->u.map.key = eff_s(sbuf[1]);
            r->u.map.value = eff_s(sbuf[2]);
            return 0;
        }
        o->type = MT_NONE;
        r->type = EFF_HOLD_GRANT;
        r->u.hold.name = eff_s(sbuf[0]);
        r->u.hold.kind = (uint32_t)(rnd() % 3);
        r->u.hold.token = rnd() >> 11;
        r->u.hold.deadline_ms = (int64_t)(rnd() % 1000000);
        return 0;
    }
    switch (o->type) {
    case MT_CHAN: {
        unsigned c = (unsigned)(rnd() % 10);
        if (c < 4 || (o->nvals == 0 && c < 8)) {
            if (o->closed)
                return -1;
            r->type = EFF_CHAN_PUSH;
            r->u.push.name = eff_s(sbuf[0]);
            snprintf(sbuf[1], 64, "{\"n\":%" PRIu64 "}", rnd() % 100000);
            r->u.push.value = eff_s(sbuf[1]);
        } else if (c < 6 && o->nvals) {
            r->type = EFF_CHAN_POP;
            r->u.pop.name = eff_s(sbuf[0]);
            r->u.pop.count = 1 + rnd() % o->nvals;
        } else if (c < 8 && o->nvals) {
            /* A delivery takes the head: the pop and the in-flight
             * record are two effects. */
            r->type = EFF_DLV_INFLIGHT;
            r->u.dlv.name = eff_s(sbuf[0]);
            r->u.dlv.id = rnd() >> 1;
            r->u.dlv.attempt = 1;
            r->u.dlv.deadline_ms = (int64_t)(rnd() % 100000);
            r->u.dlv.value = eff_s(o->vals[0]);
        } else if (c < 9 && o->ndlv) {
            static const uint16_t k[] = {EFF_DLV_ACK, EFF_DLV_REDELIVER,
                                         EFF_DLV_TOUCH, EFF_DLV_DEAD};
            r->type = k[rnd() % 4];
            r->u.dlv.name = eff_s(sbuf[0]);
            r->u.dlv.id = o->dlv[rnd() % o->ndlv].id;
            r->u.dlv.deadline_ms = (int64_t)(rnd() % 100000);
            r->u.dlv.reason = eff_s("nack");
        } else if (!o->closed) {
            r->type = EFF_CHAN_CLOSE;
            r->u.obj.name = eff_s(sbuf[0]);
        } else {
            return -1;
        }
        return 0;
    }
    case MT_MAP:
        r->u.map.name = eff_s(sbuf[0]);
        snprintf(sbuf[1], 64, "k%d", (int)(rnd() % 5));
        snprintf(sbuf[2], 64, "[%d]", (int)(rnd() % 1000));
        r->u.map.key = eff_s(sbuf[1]);
        r->u.map.value = eff_s(sbuf[2]);
        r->type = rnd() % 8 == 0   ? EFF_MAP_CLEAR
                  : rnd() % 3 == 0 ? EFF_MAP_DELETE
                                   : EFF_MAP_STORE;
        if (r->type == EFF_MAP_CLEAR)
            r->u.obj.name = eff_s(sbuf[0]);
        return 0;
    case MT_NUM:
    case MT_WG:
        r->type = o->type == MT_NUM ? EFF_ATOMIC_SET : EFF_WG_SET;
        r->u.num.name = eff_s(sbuf[0]);
        r->u.num.v = o->num + (int64_t)(rnd() % 7) - 3;
        return 0;
    case MT_LOCK:
        r->u.hold.name = eff_s(sbuf[0]);
        r->u.hold.kind = o->kind;
        r->u.hold.token = o->token ? o->token : rnd() >> 11;
        r->u.hold.deadline_ms = (int64_t)(rnd() % 1000000);
        r->type = !o->token   ? EFF_HOLD_GRANT
                  : rnd() % 2 ? EFF_HOLD_RENEW
                              : EFF_HOLD_RELEASE;
        return 0;
    default:
        return -1;
    }
}

/* Returns a hash of m's state (its dump). */
static uint64_t model_hash(model *m)
{
    char *d = model_dump(m);
    uint64_t h = 1469598103934665603ull;
    for (const char *p = d; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    free(d);
    return h;
}

/* Writes "lsn hash" to m->trace_fd, unbuffered: a kill -9 keeps it. */
static void model_trace(model *m, uint64_t lsn)
{
    char line[64];
    int n = snprintf(line, sizeof line, "%" PRIu64 " %016" PRIx64 "\n", lsn,
                     model_hash(m));
    if (write(m->trace_fd, line, (size_t)n) != n)
        _exit(5);
}

/* A kill -9 just after another thread's flush wrote the record of lsn:
 * waits until it is in the file, then dies. */
static void die_when_written(wal *w, uint64_t lsn)
{
    wal_stats st;

    wal_flush(w);
    do
        wal_stats_get(w, &st);
    while (st.written_lsn < lsn && !usleep(100));
    _exit(0);
}

/* Applies r (and the group's first record g, when set) to m as LSN
 * lsn, and traces the state after it. */
static void model_step(model *m, eff_rec *g, eff_rec *r, uint64_t lsn)
{
    if (g) {
        g->lsn = lsn - 1;
        assert_int_equal(model_apply(m, g, 0), 0);
    }
    r->lsn = lsn;
    assert_int_equal(model_apply(m, r, 0), 0);
    if (m->trace_fd > 0)
        model_trace(m, lsn);
}

/* Makes, logs and applies n random effects (each under m->mu, as a
 * handler holds its object's lock).
 *
 * When tracing (the kill -9 children), the trace line goes out before
 * the append: once wal_append() returns, another thread's flush (a
 * flusher round asked for earlier, a snapshot's segment switch) can put
 * the record in the file at once, so a kill before a trace written after
 * the append would recover an LSN the trace never named.  Every append
 * of a tracing model is made here under m->mu, so the LSN is known
 * beforehand; a kill between the trace and the append leaves a line for
 * an LSN never logged, which no recovery asks for. */
static void run_effects(model *m, wal *w, int n)
{
    for (int k = 0; k < n; k++) {
        eff_rec r;
        char sbuf[4][64];
        uint64_t lsn, want;
        pthread_mutex_lock(&m->mu);
        if (random_effect(m, &r, sbuf) == 0) {
            /* The in-flight value is read from the state the pop frees:
             * copy it first. */
            char *v = NULL;
            int first = m->trace_fd > 0;
            if (r.type == EFF_DLV_INFLIGHT) {
                /* A delivery is two records, one effect. */
                eff_rec g[2] = {{.type = EFF_CHAN_POP}};
                v = sdup(r.u.dlv.value);
                r.u.dlv.value = eff_s(v);
                g[0].u.pop.name = r.u.dlv.name;
                g[0].u.pop.count = 1;
                g[1] = r;
                want = wal_appended_lsn(w) + 2;
                if (first)
                    model_step(m, &g[0], &r, want);
                assert_int_equal(wal_append_group(w, g, 2, &lsn), 0);
                if (m->die_after_append)
                    die_when_written(w, lsn);
                if (!first)
                    model_step(m, &g[0], &r, lsn);
            } else {
                want = wal_appended_lsn(w) + 1;
                if (first)
                    model_step(m, NULL, &r, want);
                assert_int_equal(wal_append(w, &r, &lsn), 0);
                if (m->die_after_append)
                    die_when_written(w, lsn);
                if (!first)
                    model_step(m, NULL, &r, lsn);
            }
            if (first)
                assert_int_equal(lsn, want);
            free(v);
        }
        pthread_mutex_unlock(&m->mu);
        if (k % 16 == 0 && !m->noflush)
            wal_flush(w);
    }
}

static wal *open_ok(const char *dir, wal_fsync pol, model *m)
{
    wal_opts o = {.dir = dir, .fsync = pol};
    char err[512];
    wal *w = NULL;
    int rc = wal_open(&o, m ? model_apply : NULL, m, &w, err, sizeof err);
    if (rc)
        print_error("wal_open: %s\n", err);
    assert_int_equal(rc, 0);
    return w;
}

static void assert_same(model *a, model *b)
{
    char *da = model_dump(a), *db = model_dump(b);
    if (strcmp(da, db) != 0)
        print_error("model:\n%s\nrecovered:\n%s\n", da, db);
    assert_string_equal(da, db);
    free(da);
    free(db);
}

/* ---- the log ----------------------------------------------------------------
 */

static void test_open_lock_and_fresh(void **state)
{
    char dir[300], err[512];
    wal_opts o = {.fsync = WAL_FSYNC_ALWAYS};
    wal *w, *w2;
    wal_stats st;
    eff_rec r;
    uint64_t lsn;
    (void)state;

    newdir(dir, sizeof dir);
    o.dir = dir;
    assert_int_equal(wal_open(&o, NULL, NULL, &w, err, sizeof err), 0);
    assert_int_equal(wal_appended_lsn(w), 0);
    /* A second daemon on the same data_dir is refused, naming the pid. */
    assert_int_equal(wal_open(&o, NULL, NULL, &w2, err, sizeof err), -EBUSY);
    assert_non_null(strstr(err, "in use by another chand"));
    assert_null(w2);
    sample(&r, EFF_CHAN_MAKE);
    assert_int_equal(wal_append(w, &r, &lsn), 0);
    assert_int_equal(lsn, 1);
    assert_int_equal(wal_append(w, &r, &lsn), 0);
    assert_int_equal(lsn, 2);
    /* A record that cannot be encoded. */
    r.type = 99;
    assert_int_equal(wal_append(w, &r, &lsn), -EINVAL);
    assert_int_equal(wal_sync(w, 2), 0);
    assert_int_equal(wal_durable_lsn(w), 2);
    wal_stats_get(w, &st);
    assert_int_equal(st.appended_lsn, 2);
    assert_true(st.fsyncs >= 1);
    assert_int_equal(st.pending_bytes, 0);
    assert_true(st.log_bytes > 32);
    assert_int_equal(wal_close(w), 0);
    /* Reopened: the LSNs go on. */
    w = open_ok(dir, WAL_FSYNC_ALWAYS, NULL);
    wal_stats_get(w, &st);
    assert_int_equal(st.recovered_records, 2);
    assert_int_equal(wal_appended_lsn(w), 2);
    r.type = EFF_CHAN_CLOSE;
    assert_int_equal(wal_append(w, &r, &lsn), 0);
    assert_int_equal(lsn, 3);
    assert_int_equal(wal_close(w), 0);
    /* Bad options. */
    o.dir = "";
    assert_int_equal(wal_open(&o, NULL, NULL, &w, err, sizeof err), -EINVAL);
    o.dir = "/proc/no/such/dir";
    assert_true(wal_open(&o, NULL, NULL, &w, err, sizeof err) < 0);
    assert_non_null(strstr(err, "/proc/no/such/dir"));
    {
        wal_fsync f;
        assert_int_equal(wal_fsync_parse("always", &f), 0);
        assert_int_equal(f, WAL_FSYNC_ALWAYS);
        assert_int_equal(wal_fsync_parse("everysec", &f), 0);
        assert_int_equal(f, WAL_FSYNC_EVERYSEC);
        assert_int_equal(wal_fsync_parse("no", &f), 0);
        assert_int_equal(f, WAL_FSYNC_NO);
        assert_int_equal(wal_fsync_parse("sometimes", &f), -EINVAL);
        assert_string_equal(wal_fsync_name(WAL_FSYNC_EVERYSEC), "everysec");
    }
}

/* Collects the records recovery applies. */
typedef struct collect {
    eff_rec *r;
    uint8_t **bytes;
    size_t n, cap;
} collect;

/* Keeps each record's encoding in bytes[] (its strings in r[] are
 * borrowed, valid only during the call). */
static int collect_apply(void *arg, const eff_rec *r, int from_snap)
{
    collect *c = arg;
    size_t n = eff_size(r);
    (void)from_snap;
    /* Doubling: a kill -9 run replays long logs, and growing by one was
     * quadratic (past the time limit under ASan). */
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        eff_rec *nr = realloc(c->r, cap * sizeof *c->r);
        if (!nr)
            return -ENOMEM;
        c->r = nr;
        uint8_t **nb = realloc(c->bytes, cap * sizeof *c->bytes);
        if (!nb)
            return -ENOMEM;
        c->bytes = nb;
        c->cap = cap;
    }
    c->bytes[c->n] = malloc(n);
    if (!c->bytes[c->n])
        return -ENOMEM;
    eff_encode(r, c->bytes[c->n]);
    c->r[c->n] = *r;
    c->n++;
    return 0;
}

static void collect_free(collect *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->bytes[i]);
    free(c->bytes);
    free(c->r);
    memset(c, 0, sizeof *c);
}

/* Writes K sample records into dir (closed); returns the segment's
 * bytes and each record's end offset. */
static uint8_t *make_log(const char *dir, int k, size_t *len, size_t *ends)
{
    wal *w = open_ok(dir, WAL_FSYNC_NO, NULL);
    char path[400];
    uint8_t *p;
    size_t off = 32;

    for (int i = 0; i < k; i++) {
        eff_rec r;
        sample(&r, 1 + (unsigned)i % 23);
        assert_int_equal(wal_append(w, &r, NULL), 0);
        off += eff_size(&r);
        ends[i] = off;
    }
    assert_int_equal(wal_close(w), 0);
    seg_path(path, sizeof path, dir, 1);
    p = read_file(path, len);
    assert_int_equal(*len, off);
    return p;
}

static int fail_third(void *arg, const eff_rec *r, int from_snap)
{
    (void)arg;
    (void)from_snap;
    return r->lsn == 3 ? -1 : 0;
}

/* An apply that refuses a record stops the open, which names it. */
static void test_apply_failure(void **state)
{
    char dir[300], err[512];
    size_t len, ends[5];
    wal_opts o = {.fsync = WAL_FSYNC_NO};
    wal *w;
    uint8_t *full;
    (void)state;

    newdir(dir, sizeof dir);
    full = make_log(dir, 5, &len, ends);
    o.dir = dir;
    assert_int_equal(wal_open(&o, fail_third, NULL, &w, err, sizeof err),
                     -ECANCELED);
    assert_null(w);
    assert_non_null(strstr(err, "applying a record failed: 3 chan_pop"));
    free(full);
}

static void test_torn_tail_every_offset(void **state)
{
    char dir[300], path[400], man[400], src[400];
    size_t len, ends[12];
    uint8_t *full;
    (void)state;

    newdir(dir, sizeof dir);
    full = make_log(dir, 12, &len, ends);
    snprintf(src, sizeof src, "%s/MANIFEST", dir);
    /* Cut the last record at every byte: recovery keeps the 11 whole
     * records, truncates the rest, and appends after them. */
    for (size_t cut = ends[10]; cut < ends[11]; cut++) {
        char d2[300], err[512];
        collect c = {0};
        wal_opts o = {.fsync = WAL_FSYNC_ALWAYS};
        wal *w;
        wal_stats st;
        eff_rec r;
        uint64_t lsn;
        size_t n2;
        uint8_t *after;

        newdir(d2, sizeof d2);
        assert_int_equal(mkdir(d2, 0700), 0);
        snprintf(man, sizeof man, "%s/MANIFEST", d2);
        copy_file(src, man);
        seg_path(path, sizeof path, d2, 1);
        write_file(path, full, cut);
        o.dir = d2;
        assert_int_equal(wal_open(&o, collect_apply, &c, &w, err, sizeof err),
                         0);
        assert_int_equal(c.n, 11);
        wal_stats_get(w, &st);
        assert_int_equal(st.truncated_bytes, cut - ends[10]);
        assert_int_equal(wal_appended_lsn(w), 11);
        sample(&r, EFF_TOKEN_EPOCH);
        assert_int_equal(wal_append(w, &r, &lsn), 0);
        assert_int_equal(lsn, 12);
        assert_int_equal(wal_close(w), 0);
        after = read_file(path, &n2);
        assert_int_equal(n2, ends[10] + eff_size(&r));
        assert_memory_equal(after, full, ends[10]);
        free(after);
        collect_free(&c);
        /* And the result reads back whole. */
        assert_int_equal(wal_open(&o, collect_apply, &c, &w, err, sizeof err),
                         0);
        assert_int_equal(c.n, 12);
        assert_int_equal(c.r[11].type, EFF_TOKEN_EPOCH);
        assert_int_equal(wal_close(w), 0);
        collect_free(&c);
    }
    free(full);
}

/* A group cut anywhere is dropped whole: never half an effect. */
static void test_group_torn(void **state)
{
    char dir[300], path[400], man[400], src[400];
    eff_rec g[3], r;
    wal *w;
    size_t len, start;
    uint8_t *full;
    uint64_t lsn;
    (void)state;

    newdir(dir, sizeof dir);
    w = open_ok(dir, WAL_FSYNC_NO, NULL);
    sample(&r, EFF_CHAN_MAKE);
    assert_int_equal(wal_append(w, &r, NULL), 0);
    sample(&r, EFF_CHAN_PUSH);
    assert_int_equal(wal_append(w, &r, NULL), 0);
    sample(&g[0], EFF_CHAN_POP);
    sample(&g[1], EFF_DLV_INFLIGHT);
    sample(&g[2], EFF_TIMER_FIRE);
    {
        eff_rec mk;
        sample(&mk, EFF_CHAN_MAKE);
        start = 32 + eff_size(&mk) + eff_size(&r);
    }
    /* Bad groups append nothing. */
    assert_int_equal(wal_append_group(w, g, 0, &lsn), -EINVAL);
    g[2].type = 99;
    assert_int_equal(wal_append_group(w, g, 3, &lsn), -EINVAL);
    g[2].type = EFF_TIMER_FIRE;
    assert_int_equal(wal_appended_lsn(w), 2);
    assert_int_equal(wal_append_group(w, g, 3, &lsn), 0);
    assert_int_equal(lsn, 5);
    assert_int_equal(wal_close(w), 0);
    seg_path(path, sizeof path, dir, 1);
    full = read_file(path, &len);
    snprintf(src, sizeof src, "%s/MANIFEST", dir);
    for (size_t cut = start; cut <= len; cut++) {
        char d2[300], err[512];
        collect c = {0};
        wal_opts o = {.fsync = WAL_FSYNC_NO};
        newdir(d2, sizeof d2);
        assert_int_equal(mkdir(d2, 0700), 0);
        snprintf(man, sizeof man, "%s/MANIFEST", d2);
        copy_file(src, man);
        seg_path(path, sizeof path, d2, 1);
        write_file(path, full, cut);
        o.dir = d2;
        assert_int_equal(wal_open(&o, collect_apply, &c, &w, err, sizeof err),
                         0);
        if (cut == len) {
            assert_int_equal(c.n, 5);
            assert_int_equal(c.r[2].flags, EFF_F_MORE);
            assert_int_equal(c.r[3].flags, EFF_F_MORE);
            assert_int_equal(c.r[4].flags, 0);
        } else {
            assert_int_equal(c.n, 2);
            assert_int_equal(wal_appended_lsn(w), 2);
        }
        assert_int_equal(wal_close(w), 0);
        collect_free(&c);
    }
    free(full);
}

static void test_corrupt_middle_and_repair(void **state)
{
    char dir[300], path[400], err[512], msg[512], want[64];
    size_t len, ends[12];
    uint8_t *full;
    wal_opts o = {.fsync = WAL_FSYNC_ALWAYS};
    collect c = {0};
    wal *w;
    (void)state;

    newdir(dir, sizeof dir);
    full = make_log(dir, 12, &len, ends);
    seg_path(path, sizeof path, dir, 1);
    /* One flipped byte inside record 4 (index 3), 8 whole records after. */
    full[ends[2] + 10] ^= 0x40;
    write_file(path, full, len);
    o.dir = dir;
    assert_int_equal(wal_open(&o, collect_apply, &c, &w, err, sizeof err),
                     -EBADMSG);
    assert_null(w);
    assert_non_null(strstr(err, "wal-00000000000000000001.log"));
    snprintf(want, sizeof want, "offset %zu", ends[2]);
    assert_non_null(strstr(err, want));
    assert_non_null(strstr(err, "chand --repair"));
    assert_non_null(strstr(err, "followed by valid records"));
    collect_free(&c);
    /* The refusal changed nothing. */
    {
        size_t n2;
        uint8_t *now = read_file(path, &n2);
        assert_int_equal(n2, len);
        assert_memory_equal(now, full, len);
        free(now);
    }
    /* Repair keeps the 3 records before the damage. */
    assert_int_equal(wal_repair(dir, msg, sizeof msg), 0);
    assert_non_null(strstr(msg, "3 records kept"));
    assert_int_equal(wal_open(&o, collect_apply, &c, &w, err, sizeof err), 0);
    assert_int_equal(c.n, 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(c.r[i].lsn, i + 1);
    assert_int_equal(wal_appended_lsn(w), 3);
    assert_int_equal(wal_close(w), 0);
    collect_free(&c);
    /* Repair of a healthy directory changes nothing. */
    assert_int_equal(wal_repair(dir, msg, sizeof msg), 0);
    assert_non_null(strstr(msg, "no damage found"));
    free(full);
}

static void test_unknown_type_at_tail_refused(void **state)
{
    char dir[300], path[400], err[512];
    size_t len, ends[4];
    uint8_t *full, body[64], rec[80];
    wal_opts o = {.fsync = WAL_FSYNC_NO};
    wal *w;
    size_t rl;
    (void)state;

    newdir(dir, sizeof dir);
    full = make_log(dir, 4, &len, ends);
    /* A whole, valid record of a type from the future, LSN 5. */
    memset(body, 0, sizeof body);
    body[0] = 60;
    body[2] = 1;
    body[4] = 5;
    rl = frame(rec, body, 16);
    full = realloc(full, len + rl);
    memcpy(full + len, rec, rl);
    seg_path(path, sizeof path, dir, 1);
    write_file(path, full, len + rl);
    o.dir = dir;
    assert_int_equal(wal_open(&o, NULL, NULL, &w, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "newer chand"));
    free(full);
}

/* Recovery of damaged bytes: never a crash; either a clean open whose
 * records are a prefix of the originals, or a refusal naming the file. */
static void test_damage_random(void **state)
{
    char dir[300], path[400], man[400], src[400];
    size_t len, ends[40];
    uint8_t *full;
    int clean = 0, refused = 0;
    (void)state;

    newdir(dir, sizeof dir);
    full = make_log(dir, 40, &len, ends);
    snprintf(src, sizeof src, "%s/MANIFEST", dir);
    for (int it = 0; it < 300; it++) {
        char d2[300], err[512];
        collect c = {0};
        wal_opts o = {.fsync = WAL_FSYNC_NO};
        wal *w;
        uint8_t *b = malloc(len);
        size_t n = len, off;
        int rc;

        memcpy(b, full, len);
        switch (it % 4) {
        case 0: /* bit flips */
            for (int k = 0; k < 1 + (int)(rnd() % 3); k++) {
                off = rnd() % len;
                b[off] ^= (uint8_t)(1u << (rnd() % 8));
            }
            break;
        case 1: /* a run of zeros */
            off = rnd() % len;
            memset(b + off, 0, (size_t)(rnd() % 200) % (len - off) + 1);
            break;
        case 2: /* truncation */
            n = rnd() % (len + 1);
            break;
        default: /* zeros to the end (a lost tail) */
            off = 32 + rnd() % (len - 32);
            memset(b + off, 0, len - off);
            break;
        }
        newdir(d2, sizeof d2);
        assert_int_equal(mkdir(d2, 0700), 0);
        snprintf(man, sizeof man, "%s/MANIFEST", d2);
        copy_file(src, man);
        seg_path(path, sizeof path, d2, 1);
        write_file(path, b, n);
        o.dir = d2;
        rc = wal_open(&o, collect_apply, &c, &w, err, sizeof err);
        if (rc == 0) {
            clean++;
            for (size_t i = 0; i < c.n; i++) {
                size_t start = i ? ends[i - 1] : 32;
                assert_int_equal(c.r[i].lsn, i + 1);
                assert_memory_equal(c.bytes[i], full + start, ends[i] - start);
            }
            assert_int_equal(wal_close(w), 0);
        } else {
            refused++;
            assert_int_equal(rc, -EBADMSG);
            assert_non_null(strstr(err, "wal-00000000000000000001.log"));
            assert_non_null(strstr(err, "chand --repair"));
            /* Repair always brings it back to a clean open. */
            collect_free(&c);
            assert_int_equal(wal_repair(d2, err, sizeof err), 0);
            assert_int_equal(
                wal_open(&o, collect_apply, &c, &w, err, sizeof err), 0);
            for (size_t i = 0; i < c.n; i++)
                assert_int_equal(c.r[i].lsn, i + 1);
            assert_int_equal(wal_close(w), 0);
        }
        collect_free(&c);
        free(b);
    }
    print_message("damage: %d clean, %d refused\n", clean, refused);
    assert_true(clean > 0 && refused > 0);
    free(full);
}

static void test_replay_model(void **state)
{
    char dir[300];
    model a, b;
    wal *w;
    (void)state;

    newdir(dir, sizeof dir);
    model_init(&a);
    w = open_ok(dir, WAL_FSYNC_NO, NULL);
    for (int round = 0; round < 4; round++) {
        run_effects(&a, w, 1500);
        assert_int_equal(wal_close(w), 0);
        /* Recovery into a fresh model gives the same state. */
        model_init(&b);
        w = open_ok(dir, round % 2 ? WAL_FSYNC_EVERYSEC : WAL_FSYNC_NO, &b);
        assert_same(&a, &b);
        model_free(&b);
    }
    assert_int_equal(wal_close(w), 0);
    model_free(&a);
}

/* The snapshot iterator: one object at a time under the model's lock,
 * each with its own LSN. */
static int model_iter(void *arg, wal_snap *s)
{
    model *m = arg;

    for (int i = 0; i < M_OBJS + M_TIMERS + 1; i++) {
        eff_rec r;
        char name[16];
        int rc = 0;
        pthread_mutex_lock(&m->mu);
        memset(&r, 0, sizeof r);
        snprintf(name, sizeof name, "o%d", i);
        if (i == M_OBJS + M_TIMERS) {
            if (m->epoch) {
                r.type = EFF_TOKEN_EPOCH;
                r.u.epoch.epoch = m->epoch;
                rc = wal_snap_emit(s, &r);
            }
        } else if (i >= M_OBJS) {
            mtimer *t = &m->t[i - M_OBJS];
            if (t->live) {
                r.type = EFF_TIMER_ADD;
                r.lsn = t->lsn;
                r.u.timer.id = (uint64_t)(i - M_OBJS);
                r.u.timer.kind = t->kind;
                r.u.timer.deadline_ms = t->deadline;
                r.u.timer.period_ms = t->period;
                r.u.timer.target = eff_s(t->target);
                rc = wal_snap_emit(s, &r);
            }
        } else {
            mobj *o = &m->o[i];
            r.lsn = o->lsn;
            switch (o->type) {
            case MT_CHAN:
                r.type = EFF_CHAN_MAKE;
                r.u.make.name = eff_s(name);
                r.u.make.cap = o->cap;
                r.u.make.elem = eff_s("any");
                rc = wal_snap_emit(s, &r);
                for (size_t k = 0; k < o->nvals && !rc; k++) {
                    r.type = EFF_CHAN_PUSH;
                    r.u.push.name = eff_s(name);
                    r.u.push.value = eff_s(o->vals[k]);
                    rc = wal_snap_emit(s, &r);
                }
                for (size_t k = 0; k < o->ndlv && !rc; k++) {
                    memset(&r.u, 0, sizeof r.u);
                    r.type = EFF_DLV_INFLIGHT;
                    r.u.dlv.name = eff_s(name);
                    r.u.dlv.id = o->dlv[k].id;
                    r.u.dlv.attempt = o->dlv[k].attempt;
                    r.u.dlv.deadline_ms = o->dlv[k].deadline;
                    r.u.dlv.value = eff_s(o->dlv[k].value);
                    rc = wal_snap_emit(s, &r);
                    if (!rc && o->dlv[k].requeued) {
                        r.type = EFF_DLV_REDELIVER;
                        r.u.dlv.value = eff_s("");
                        rc = wal_snap_emit(s, &r);
                    }
                }
                if (!rc && o->closed) {
                    memset(&r.u, 0, sizeof r.u);
                    r.type = EFF_CHAN_CLOSE;
                    r.u.obj.name = eff_s(name);
                    rc = wal_snap_emit(s, &r);
                }
                break;
            case MT_MAP:
                r.type = EFF_MAP_CLEAR;
                r.u.obj.name = eff_s(name);
                rc = wal_snap_emit(s, &r);
                for (size_t k = 0; k < o->nvals && !rc; k++) {
                    char *eq = strchr(o->vals[k], '=');
                    r.type = EFF_MAP_STORE;
                    r.u.map.name = eff_s(name);
                    r.u.map.key.p = o->vals[k];
                    r.u.map.key.n = (size_t)(eq - o->vals[k]);
                    r.u.map.value = eff_s(eq + 1);
                    rc = wal_snap_emit(s, &r);
                }
                break;
            case MT_NUM:
            case MT_WG:
                r.type = o->type == MT_NUM ? EFF_ATOMIC_SET : EFF_WG_SET;
                r.u.num.name = eff_s(name);
                r.u.num.v = o->num;
                rc = wal_snap_emit(s, &r);
                break;
            case MT_ONCE:
                r.type = EFF_ONCE_DONE;
                r.u.once.name = eff_s(name);
                r.u.once.has_value = o->once_value != NULL;
                r.u.once.value = eff_s(o->once_value);
                rc = wal_snap_emit(s, &r);
                break;
            case MT_LOCK:
                r.type = EFF_HOLD_GRANT;
                r.u.hold.name = eff_s(name);
                r.u.hold.kind = o->kind;
                r.u.hold.token = o->token;
                r.u.hold.deadline_ms = o->deadline;
                rc = wal_snap_emit(s, &r);
                if (!rc && !o->token) {
                    r.type = EFF_HOLD_RELEASE;
                    rc = wal_snap_emit(s, &r);
                }
                break;
            }
        }
        pthread_mutex_unlock(&m->mu);
        if (rc)
            return rc;
        /* Effects between objects, deterministically: the snapshot is
         * fuzzy, and objects not yet walked change after L0. */
        if (m->w && m->interleave)
            run_effects(m, m->w, m->interleave);
    }
    return 0;
}

typedef struct snap_job {
    wal *w;
    model *m;
    int rc;
    char err[256];
} snap_job;

static void *snap_thread(void *arg)
{
    snap_job *j = arg;
    j->rc = wal_snapshot(j->w, model_iter, j->m, j->err, sizeof j->err);
    return NULL;
}

static int count_files(const char *dir, const char *prefix)
{
    char cmd[512];
    FILE *p;
    int n = 0;
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -c '^%s'", dir, prefix);
    p = popen(cmd, "r");
    assert_non_null(p);
    assert_int_equal(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

static void test_fuzzy_snapshot_model(void **state)
{
    char dir[300];
    model a, b;
    wal *w;
    wal_stats st;
    (void)state;

    uint64_t skipped = 0;

    for (int round = 0; round < 6; round++) {
        newdir(dir, sizeof dir);
        model_init(&a);
        w = open_ok(dir, WAL_FSYNC_NO, NULL);
        a.w = w;
        a.interleave = 10 * round;
        run_effects(&a, w, 800);
        for (int s = 0; s < 2; s++) {
            snap_job j = {.w = w, .m = &a};
            pthread_t t;
            /* Effects keep coming while the snapshot walks. */
            assert_int_equal(pthread_create(&t, NULL, snap_thread, &j), 0);
            run_effects(&a, w, 400);
            pthread_join(t, NULL);
            if (j.rc)
                print_error("snapshot: %s\n", j.err);
            assert_int_equal(j.rc, 0);
            run_effects(&a, w, 100 * round);
        }
        wal_stats_get(w, &st);
        assert_int_equal(st.snapshots, 2);
        assert_true(st.snapshot_lsn > 0);
        assert_true(st.snapshot_bytes > 0);
        assert_int_equal(wal_close(w), 0);
        /* One snapshot and only the segments after it remain. */
        assert_int_equal(count_files(dir, "snap-"), 1);
        assert_int_equal(count_files(dir, "wal-"), 1);
        model_init(&b);
        w = open_ok(dir, WAL_FSYNC_NO, &b);
        a.w = w;
        assert_same(&a, &b);
        wal_stats_get(w, &st);
        assert_true(st.recovered_records > 0);
        skipped += st.skipped_records;
        print_message("round %d: recovered %" PRIu64 " skipped %" PRIu64 "\n",
                      round, st.recovered_records, st.skipped_records);
        /* Records after the snapshot continue the LSNs. */
        run_effects(&a, w, 200);
        run_effects(&b, w, 0);
        assert_int_equal(wal_close(w), 0);
        model_free(&b);
        model_init(&b);
        w = open_ok(dir, WAL_FSYNC_NO, &b);
        assert_same(&a, &b);
        assert_int_equal(wal_close(w), 0);
        model_free(&b);
        model_free(&a);
    }
    /* The walk met objects that changed after L0: the filter was used. */
    assert_true(skipped > 0);
}

static void test_manifest_swap(void **state)
{
    char dir[300], path[400], err[512];
    model a;
    wal *w;
    uint8_t *t;
    size_t n;
    wal_opts o = {.fsync = WAL_FSYNC_NO};
    (void)state;

    newdir(dir, sizeof dir);
    model_init(&a);
    w = open_ok(dir, WAL_FSYNC_NO, NULL);
    run_effects(&a, w, 300);
    {
        snap_job j = {.w = w, .m = &a};
        snap_thread(&j);
        assert_int_equal(j.rc, 0);
    }
    run_effects(&a, w, 10);
    assert_int_equal(wal_close(w), 0);
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    t = read_file(path, &n);
    t[n] = 0;
    assert_non_null(strstr((char *)t, "chand-manifest 1\nsnapshot snap-"));
    assert_non_null(strstr((char *)t, "\nsegment wal-"));
    assert_non_null(strstr((char *)t, "\ncrc "));
    /* A leftover MANIFEST.tmp (a crash before the rename) is ignored. */
    snprintf(path, sizeof path, "%s/MANIFEST.tmp", dir);
    write_file(path, "garbage", 7);
    o.dir = dir;
    {
        model b;
        model_init(&b);
        assert_int_equal(wal_open(&o, model_apply, &b, &w, err, sizeof err), 0);
        assert_same(&a, &b);
        assert_int_equal(wal_close(w), 0);
        model_free(&b);
    }
    /* A damaged manifest is refused, by name. */
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    t[20] ^= 1;
    write_file(path, t, n);
    assert_int_equal(wal_open(&o, NULL, NULL, &w, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "MANIFEST is damaged"));
    /* Repair rebuilds it from the files: the same state. */
    {
        char msg[512];
        model b;
        assert_int_equal(wal_repair(dir, msg, sizeof msg), 0);
        assert_non_null(strstr(msg, "manifest rebuilt"));
        model_init(&b);
        w = open_ok(dir, WAL_FSYNC_NO, &b);
        assert_same(&a, &b);
        assert_int_equal(wal_close(w), 0);
        model_free(&b);
    }
    /* A missing manifest with log files present is refused too, and
     * rebuilt by repair. */
    unlink(path);
    assert_int_equal(wal_open(&o, NULL, NULL, &w, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "MANIFEST is missing"));
    {
        char msg[512];
        model b;
        assert_int_equal(wal_repair(dir, msg, sizeof msg), 0);
        assert_non_null(strstr(msg, "manifest rebuilt"));
        model_init(&b);
        w = open_ok(dir, WAL_FSYNC_NO, &b);
        assert_same(&a, &b);
        assert_int_equal(wal_close(w), 0);
        model_free(&b);
    }
    /* With the old snapshot's files still there (a crash before the swap
     * deleted them), the rebuild takes the oldest complete chain. */
    {
        char msg[512], p2[400];
        model b;
        unlink(path);
        snprintf(p2, sizeof p2, "%s/snap-%020d.snap", dir, 1000000);
        write_file(p2, "newer, never swapped in", 23);
        assert_int_equal(wal_repair(dir, msg, sizeof msg), 0);
        model_init(&b);
        w = open_ok(dir, WAL_FSYNC_NO, &b);
        assert_same(&a, &b);
        assert_int_equal(wal_close(w), 0);
        model_free(&b);
    }
    free(t);
    model_free(&a);
}

static void test_snapshot_damage_refused(void **state)
{
    char dir[300], path[400], err[512];
    model a;
    wal *w;
    wal_opts o = {.fsync = WAL_FSYNC_NO};
    wal_stats st;
    uint8_t *t;
    size_t n;
    (void)state;

    newdir(dir, sizeof dir);
    model_init(&a);
    w = open_ok(dir, WAL_FSYNC_NO, NULL);
    run_effects(&a, w, 300);
    {
        snap_job j = {.w = w, .m = &a};
        snap_thread(&j);
        assert_int_equal(j.rc, 0);
    }
    wal_stats_get(w, &st);
    assert_int_equal(wal_close(w), 0);
    snprintf(path, sizeof path, "%s/snap-%020" PRIu64 ".snap", dir,
             st.snapshot_lsn);
    t = read_file(path, &n);
    t[n / 2] ^= 0x10;
    write_file(path, t, n);
    o.dir = dir;
    assert_int_equal(wal_open(&o, NULL, NULL, &w, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, ".snap: damaged at offset"));
    /* Repair keeps the snapshot's records before the damage. */
    {
        char msg[512];
        collect c = {0};
        assert_int_equal(wal_repair(dir, msg, sizeof msg), 0);
        assert_non_null(strstr(msg, "cut snap-"));
        assert_int_equal(wal_open(&o, collect_apply, &c, &w, err, sizeof err),
                         0);
        assert_true(c.n > 0);
        assert_int_equal(wal_close(w), 0);
        collect_free(&c);
    }
    /* Cut short (no end record): refused too, and repaired. */
    t[n / 2] ^= 0x10;
    write_file(path, t, n - 3);
    assert_int_equal(wal_open(&o, NULL, NULL, &w, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "runs past the end"));
    assert_int_equal(wal_repair(dir, err, sizeof err), 0);
    assert_int_equal(wal_open(&o, NULL, NULL, &w, err, sizeof err), 0);
    assert_int_equal(wal_close(w), 0);
    /* A bad header. */
    t[3] ^= 1;
    write_file(path, t, n);
    assert_int_equal(wal_open(&o, NULL, NULL, &w, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "bad snapshot header"));
    assert_int_equal(wal_repair(dir, err, sizeof err), 0);
    assert_int_equal(wal_open(&o, NULL, NULL, &w, err, sizeof err), 0);
    assert_int_equal(wal_close(w), 0);
    free(t);
    model_free(&a);
}

/* Stops the walk half-way, as a crash in the middle of a snapshot. */
static int half_iter(void *arg, wal_snap *s)
{
    model *m = arg;
    eff_rec r;
    (void)m;
    memset(&r, 0, sizeof r);
    r.type = EFF_ATOMIC_SET;
    r.u.num.name = eff_s("o0");
    assert_int_equal(wal_snap_emit(s, &r), 0);
    return -1;
}

static void test_snapshot_abandoned_and_strays(void **state)
{
    char dir[300], err[256], path[400];
    model a, b;
    wal *w;
    wal_stats st;
    (void)state;

    newdir(dir, sizeof dir);
    model_init(&a);
    w = open_ok(dir, WAL_FSYNC_NO, NULL);
    run_effects(&a, w, 300);
    {
        snap_job j = {.w = w, .m = &a};
        snap_thread(&j);
        assert_int_equal(j.rc, 0);
    }
    run_effects(&a, w, 300);
    /* A second snapshot gives up after the segment switch: the state is
     * the old snapshot and both segments, and nothing is lost. */
    assert_true(wal_snapshot(w, half_iter, &a, err, sizeof err) < 0);
    assert_non_null(strstr(err, "the walk stopped"));
    wal_stats_get(w, &st);
    assert_int_equal(st.snapshots, 1);
    run_effects(&a, w, 300);
    assert_int_equal(wal_close(w), 0);
    assert_int_equal(count_files(dir, "wal-"), 2);
    assert_int_equal(count_files(dir, "snap-"), 1);
    /* Files no manifest names (a crash between a snapshot's rename and
     * the manifest swap, interrupted writes) are ignored, then removed. */
    snprintf(path, sizeof path, "%s/snap-%020d.snap", dir, 99999);
    write_file(path, "junk", 4);
    snprintf(path, sizeof path, "%s/wal-%020d.log", dir, 99999);
    write_file(path, "junk", 4);
    snprintf(path, sizeof path, "%s/snap-%020d.snap.tmp", dir, 5);
    write_file(path, "junk", 4);
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    write_file(path, "mine", 4);
    model_init(&b);
    w = open_ok(dir, WAL_FSYNC_NO, &b);
    assert_same(&a, &b);
    assert_int_equal(count_files(dir, "wal-"), 2);
    assert_int_equal(count_files(dir, "snap-"), 1);
    assert_int_equal(count_files(dir, "notes.txt"), 1);
    /* The next snapshot compacts both segments away. */
    {
        snap_job j = {.w = w, .m = &b};
        snap_thread(&j);
        assert_int_equal(j.rc, 0);
    }
    assert_int_equal(wal_close(w), 0);
    assert_int_equal(count_files(dir, "wal-"), 1);
    model_free(&b);
    model_init(&b);
    w = open_ok(dir, WAL_FSYNC_NO, &b);
    assert_same(&a, &b);
    assert_int_equal(wal_close(w), 0);
    model_free(&b);
    model_free(&a);
}

/* ---- group commit ------------------------------------------------------- */

typedef struct gc_state {
    wal *w;
    _Atomic uint64_t last_durable;
    _Atomic int regress;
    _Atomic int calls;
} gc_state;

static void gc_cb(void *arg, uint64_t durable)
{
    gc_state *g = arg;
    if (durable < atomic_load(&g->last_durable))
        atomic_store(&g->regress, 1);
    atomic_store(&g->last_durable, durable);
    atomic_fetch_add(&g->calls, 1);
}

static void *gc_appender(void *arg)
{
    gc_state *g = arg;
    for (int i = 0; i < 3000; i++) {
        eff_rec r;
        uint64_t lsn;
        char v[32];
        memset(&r, 0, sizeof r);
        r.type = EFF_CHAN_PUSH;
        r.u.push.name = eff_s("q");
        snprintf(v, sizeof v, "%d", i);
        r.u.push.value = eff_s(v);
        assert_int_equal(wal_append(g->w, &r, &lsn), 0);
        /* An I/O thread's end of turn. */
        if (i % 8 == 0)
            wal_flush(g->w);
        /* A durable LSN never passes the appended one. */
        assert_true(wal_durable_lsn(g->w) <= wal_appended_lsn(g->w));
    }
    return NULL;
}

static void test_group_commit(void **state)
{
    char dir[300];
    gc_state g = {0};
    pthread_t t[4];
    wal_stats st;
    uint64_t want;
    int64_t deadline;
    collect c = {0};
    wal_opts o = {.fsync = WAL_FSYNC_ALWAYS};
    char err[256];
    (void)state;

    newdir(dir, sizeof dir);
    g.w = open_ok(dir, WAL_FSYNC_ALWAYS, NULL);
    wal_on_durable(g.w, gc_cb, &g);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, gc_appender, &g), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    want = wal_appended_lsn(g.w);
    assert_int_equal(want, 12000);
    /* One flush request makes everything durable: poll, no sleep-assert. */
    wal_flush(g.w);
    deadline = mono_ms() + 20000;
    while (wal_durable_lsn(g.w) < want && mono_ms() < deadline)
        usleep(1000);
    assert_int_equal(wal_durable_lsn(g.w), want);
    assert_int_equal(atomic_load(&g.last_durable), want);
    assert_int_equal(atomic_load(&g.regress), 0);
    wal_stats_get(g.w, &st);
    assert_true(st.fsyncs >= 1 && st.fsyncs <= want);
    assert_int_equal(st.pending_bytes, 0);
    print_message("group commit: %" PRIu64 " records, %" PRIu64
                  " fdatasyncs, %d callbacks\n",
                  want, st.fsyncs, atomic_load(&g.calls));
    assert_int_equal(wal_close(g.w), 0);
    /* Every record is there, in LSN order. */
    o.dir = dir;
    assert_int_equal(wal_open(&o, collect_apply, &c, &g.w, err, sizeof err), 0);
    assert_int_equal(c.n, want);
    assert_int_equal(wal_close(g.w), 0);
    collect_free(&c);
}

/* Durability reached by a snapshot's segment switch wakes the waiters
 * too: an I/O thread holding answers must not wait for a flush that
 * finds nothing to do. */
static void test_snapshot_notifies(void **state)
{
    char dir[300], err[256];
    gc_state g = {0};
    model a;
    uint64_t want;
    (void)state;

    newdir(dir, sizeof dir);
    model_init(&a);
    g.w = open_ok(dir, WAL_FSYNC_ALWAYS, NULL);
    wal_on_durable(g.w, gc_cb, &g);
    run_effects(&a, g.w, 0);
    for (int i = 0; i < 100; i++) {
        eff_rec r;
        sample(&r, EFF_CHAN_PUSH);
        assert_int_equal(wal_append(g.w, &r, NULL), 0);
    }
    want = wal_appended_lsn(g.w);
    /* No flush asked: only the snapshot makes the records durable. */
    assert_int_equal(wal_snapshot(g.w, model_iter, &a, err, sizeof err), 0);
    assert_true(wal_durable_lsn(g.w) >= want);
    assert_true(atomic_load(&g.last_durable) >= want);
    assert_int_equal(atomic_load(&g.regress), 0);
    assert_int_equal(wal_close(g.w), 0);
    model_free(&a);
}

static void test_policies(void **state)
{
    char dir[300];
    wal *w;
    eff_rec r;
    uint64_t lsn;
    int64_t deadline;
    wal_stats st;
    (void)state;

    sample(&r, EFF_CHAN_PUSH);
    /* no: a flush hands the records to the kernel; only a sync fsyncs. */
    newdir(dir, sizeof dir);
    w = open_ok(dir, WAL_FSYNC_NO, NULL);
    assert_int_equal(wal_append(w, &r, &lsn), 0);
    wal_flush(w);
    deadline = mono_ms() + 20000;
    do {
        wal_stats_get(w, &st);
    } while (st.written_lsn < lsn && mono_ms() < deadline && !usleep(1000));
    assert_int_equal(st.written_lsn, lsn);
    assert_int_equal(st.fsyncs, 0);
    assert_int_equal(wal_sync(w, lsn), 0);
    assert_int_equal(wal_durable_lsn(w), lsn);
    assert_int_equal(wal_close(w), 0);
    /* everysec: durable without asking, within about a second. */
    newdir(dir, sizeof dir);
    w = open_ok(dir, WAL_FSYNC_EVERYSEC, NULL);
    assert_int_equal(wal_append(w, &r, &lsn), 0);
    deadline = mono_ms() + 20000;
    while (wal_durable_lsn(w) < lsn && mono_ms() < deadline)
        usleep(5000);
    assert_int_equal(wal_durable_lsn(w), lsn);
    assert_int_equal(wal_close(w), 0);
}

/* ---- wal_flush_turn: the end of an I/O thread's turn ------------------ */

/* I/O hooks that tell the calling thread from the flusher: the test sets
 * caller to its own thread before each wal_flush_turn, and each hook
 * counts where it ran.  fail_sync makes fdatasync fail with EIO. */
typedef struct turnctl {
    pthread_t caller;
    _Atomic int fail_sync;
    _Atomic int caller_writes, other_writes;
    _Atomic int caller_syncs, other_syncs; /* successful ones */
    _Atomic int failed_syncs;
    _Atomic uint64_t durable; /* the last on_durable value */
    _Atomic int cb_calls, cb_on_caller;
    _Atomic int hold_sync; /* fdatasync waits while set ... */
    _Atomic int in_sync;   /* ... and says it is waiting */
} turnctl;

static bool turn_on_caller(turnctl *t)
{
    return pthread_equal(pthread_self(), t->caller) != 0;
}

static ssize_t turn_pwrite(void *ctx, int fd, const void *p, size_t n,
                           off_t off)
{
    turnctl *t = ctx;

    atomic_fetch_add(turn_on_caller(t) ? &t->caller_writes : &t->other_writes,
                     1);
    return pwrite(fd, p, n, off);
}

static int turn_fdatasync(void *ctx, int fd)
{
    turnctl *t = ctx;

    if (atomic_load(&t->hold_sync)) {
        atomic_store(&t->in_sync, 1);
        while (atomic_load(&t->hold_sync))
            usleep(1000);
        atomic_store(&t->in_sync, 0);
    }
    if (atomic_load(&t->fail_sync)) {
        atomic_fetch_add(&t->failed_syncs, 1);
        errno = EIO;
        return -1;
    }
    if (fdatasync(fd) != 0)
        return -1;
    atomic_fetch_add(turn_on_caller(t) ? &t->caller_syncs : &t->other_syncs, 1);
    return 0;
}

static void turn_durable(void *arg, uint64_t durable)
{
    turnctl *t = arg;

    atomic_store(&t->durable, durable);
    atomic_fetch_add(&t->cb_calls, 1);
    if (turn_on_caller(t))
        atomic_fetch_add(&t->cb_on_caller, 1);
}

/* The log of the running turn test, its hooks and its buffer: static, so
 * that the flusher of a test that failed half-way never calls into a
 * dead stack frame; turn_teardown closes and frees what it left. */
static struct {
    turnctl t;
    wal_io io;
    wal *w;
    char *big;
    char dir[300];
} turn;

/* Opens a fresh log under pol with turn.t's hooks and callback (retries
 * every 10 ms), as turn.w; the caller is this thread. */
static wal *turn_open(wal_fsync pol)
{
    char err[512];
    wal_opts o = {.fsync = pol, .retry_ms = 10, .io = &turn.io};
    int rc;

    memset(&turn.t, 0, sizeof turn.t);
    turn.t.caller = pthread_self();
    turn.io = (wal_io){turn_pwrite, turn_fdatasync, &turn.t};
    newdir(turn.dir, sizeof turn.dir);
    o.dir = turn.dir;
    rc = wal_open(&o, NULL, NULL, &turn.w, err, sizeof err);
    if (rc)
        print_error("wal_open: %s\n", err);
    assert_int_equal(rc, 0);
    wal_on_durable(turn.w, turn_durable, &turn.t);
    return turn.w;
}

/* Closes turn.w, which must succeed. */
static void turn_close(void)
{
    wal *w = turn.w;

    turn.w = NULL;
    assert_int_equal(wal_close(w), 0);
}

/* cmocka teardown of the turn tests, passed or failed. */
static int turn_teardown(void **state)
{
    (void)state;
    atomic_store(&turn.t.fail_sync, 0);
    atomic_store(&turn.t.hold_sync, 0);
    if (turn.w)
        wal_close(turn.w); /* a failed test's: its result is moot */
    turn.w = NULL;
    free(turn.big);
    turn.big = NULL;
    return 0;
}

/* A push record of n bytes of value in turn.big (freed by teardown). */
static eff_rec turn_big_push(size_t n)
{
    eff_rec r;
    char *big = turn.big ? turn.big : (turn.big = malloc(n + 1));

    assert_non_null(big);
    memset(big, 'v', n);
    big[0] = big[n - 1] = '"';
    big[n] = 0;
    memset(&r, 0, sizeof r);
    r.type = EFF_CHAN_PUSH;
    r.u.push.name = eff_s("q");
    r.u.push.value = eff_s(big);
    return r;
}

/* Polls until wal_durable_lsn reaches lsn with no error set, and the
 * callback said so, or 10 s pass; returns whether it did. */
static bool turn_wait_durable(wal *w, turnctl *t, uint64_t lsn)
{
    int64_t deadline = mono_ms() + 10000;

    while (wal_durable_lsn(w) < lsn || wal_error(w, NULL, 0) != 0 ||
           atomic_load(&t->durable) < lsn) {
        if (mono_ms() >= deadline)
            return false;
        usleep(1000);
    }
    return true;
}

/* always, a small turn: written and fdatasynced by the caller before
 * wal_flush_turn returns, and the callback ran there with the new LSN;
 * the flusher never touched the disk. */
static void test_flush_turn_inline(void **state)
{
    turnctl *t = &turn.t;
    wal *w = turn_open(WAL_FSYNC_ALWAYS);
    eff_rec r;
    uint64_t lsn;
    (void)state;

    sample(&r, EFF_CHAN_PUSH);
    assert_int_equal(wal_append(w, &r, &lsn), 0);
    assert_true(wal_durable_lsn(w) < lsn);
    wal_flush_turn(w);
    assert_int_equal(wal_durable_lsn(w), lsn);
    assert_int_equal(atomic_load(&t->caller_syncs), 1);
    assert_int_equal(atomic_load(&t->other_syncs), 0);
    assert_int_equal(atomic_load(&t->other_writes), 0);
    assert_int_equal(atomic_load(&t->durable), lsn);
    assert_int_equal(atomic_load(&t->cb_calls), 1);
    assert_int_equal(atomic_load(&t->cb_on_caller), 1);
    /* Nothing left: a second turn touches nothing. */
    wal_flush_turn(w);
    assert_int_equal(atomic_load(&t->caller_syncs), 1);
    assert_int_equal(atomic_load(&t->caller_writes), 1);
    turn_close();
}

/* always, a turn above WAL_INLINE_MAX (4 KiB, daemon/wal_internal.h):
 * the flusher writes and fdatasyncs it, not the caller. */
static void test_flush_turn_large(void **state)
{
    turnctl *t = &turn.t;
    wal *w = turn_open(WAL_FSYNC_ALWAYS);
    eff_rec r = turn_big_push(64 << 10); /* 16 x WAL_INLINE_MAX */
    uint64_t lsn;
    (void)state;

    assert_int_equal(wal_append(w, &r, &lsn), 0);
    wal_flush_turn(w);
    assert_true(turn_wait_durable(w, t, lsn));
    assert_int_equal(wal_durable_lsn(w), lsn);
    assert_int_equal(atomic_load(&t->caller_writes), 0);
    assert_int_equal(atomic_load(&t->caller_syncs), 0);
    assert_true(atomic_load(&t->other_syncs) >= 1);
    assert_int_equal(atomic_load(&t->cb_on_caller), 0);
    turn_close();
}

/* always, fdatasync fails (EIO): the turn marks nothing durable and
 * leaves the error set; once the disk recovers, the flusher's timed
 * retries, which that turn started (no other call comes), make the
 * record durable and clear the error.  While the error is set, a turn
 * leaves the disk to those retries. */
static void test_flush_turn_failing_disk(void **state)
{
    turnctl *t = &turn.t;
    wal *w = turn_open(WAL_FSYNC_ALWAYS);
    eff_rec r;
    uint64_t lsn, before;
    int writes, syncs;
    int64_t deadline;
    char err[512];
    (void)state;

    sample(&r, EFF_CHAN_PUSH);
    /* A round of the flusher's own first: when wal_sync returns, the
     * flusher waits for a request, so only the failing turn can have
     * started its retries. */
    assert_int_equal(wal_append(w, &r, &lsn), 0);
    assert_int_equal(wal_sync(w, lsn), 0);
    before = wal_durable_lsn(w);
    assert_int_equal(before, lsn);
    assert_int_equal(wal_append(w, &r, &lsn), 0);
    atomic_store(&t->fail_sync, 1);
    wal_flush_turn(w);
    /* The failure is the caller's own: set before the call returns. */
    assert_true(atomic_load(&t->failed_syncs) >= 1);
    assert_int_equal(wal_error(w, err, sizeof err), -EIO);
    assert_non_null(strstr(err, "fdatasync"));
    assert_non_null(strstr(err, "Input/output error"));
    assert_int_equal(wal_durable_lsn(w), before);
    assert_true(atomic_load(&t->durable) < lsn);
    syncs = atomic_load(&t->other_syncs);
    atomic_store(&t->fail_sync, 0);
    assert_true(turn_wait_durable(w, t, lsn));
    assert_int_equal(wal_durable_lsn(w), lsn);
    assert_int_equal(wal_error(w, NULL, 0), 0);
    assert_int_equal(atomic_load(&t->caller_syncs), 0);
    assert_true(atomic_load(&t->other_syncs) > syncs);

    /* Failing again: the second turn does not touch the disk. */
    atomic_store(&t->fail_sync, 1);
    assert_int_equal(wal_append(w, &r, &lsn), 0);
    wal_flush_turn(w);
    deadline = mono_ms() + 10000;
    while (wal_error(w, NULL, 0) == 0 && mono_ms() < deadline)
        usleep(1000);
    assert_int_equal(wal_error(w, NULL, 0), -EIO);
    writes = atomic_load(&t->caller_writes);
    assert_int_equal(wal_append(w, &r, &lsn), 0);
    wal_flush_turn(w);
    assert_int_equal(atomic_load(&t->caller_writes), writes);
    assert_true(wal_durable_lsn(w) < lsn);
    atomic_store(&t->fail_sync, 0);
    assert_true(turn_wait_durable(w, t, lsn));
    assert_int_equal(atomic_load(&t->caller_syncs), 0);
    turn_close();
}

/* everysec: the turn is written by the caller (the written LSN advances
 * before the call returns) but not fdatasynced there: that is the
 * flusher's once a second. */
static void test_flush_turn_everysec(void **state)
{
    turnctl *t = &turn.t;
    wal *w = turn_open(WAL_FSYNC_EVERYSEC);
    eff_rec r;
    uint64_t lsn;
    wal_stats st;
    int tries = 0;
    (void)state;

    sample(&r, EFF_CHAN_PUSH);
    /* The flusher's own second may come between the append and the turn
     * (a stalled test thread) and take the record first: then again. */
    do {
        int writes = atomic_load(&t->caller_writes);
        assert_int_equal(wal_append(w, &r, &lsn), 0);
        wal_flush_turn(w);
        wal_stats_get(w, &st);
        if (atomic_load(&t->caller_writes) > writes)
            break;
    } while (++tries < 5);
    assert_true(tries < 5);
    assert_int_equal(st.written_lsn, lsn);
    assert_int_equal(atomic_load(&t->caller_syncs), 0);
    assert_int_equal(atomic_load(&t->cb_on_caller), 0);
    turn_close();
}

/* Replays turn.dir (closed) and returns how many records it holds. */
static size_t turn_replayed(void)
{
    collect c = {0};
    wal_opts o = {.dir = turn.dir, .fsync = WAL_FSYNC_NO};
    char err[512];
    wal *w;
    size_t n;

    assert_int_equal(wal_open(&o, collect_apply, &c, &w, err, sizeof err), 0);
    assert_int_equal(wal_close(w), 0);
    n = c.n;
    collect_free(&c);
    return n;
}

/* everysec, a pipelined turn (past WAL_INLINE_MAX, within
 * WAL_INLINE_LAZY_MAX): written by the caller before wal_flush_turn
 * returns, so its answers may leave at once; nothing is synced, and the
 * flusher never touched the disk. */
static void test_flush_turn_everysec_mid(void **state)
{
    turnctl *t = &turn.t;
    wal *w = turn_open(WAL_FSYNC_EVERYSEC);
    eff_rec r = turn_big_push(64 << 10); /* 16 x WAL_INLINE_MAX */
    uint64_t lsn;
    (void)state;

    assert_int_equal(wal_append(w, &r, &lsn), 0);
    wal_flush_turn(w);
    assert_int_equal(wal_safe_lsn(w), lsn);
    assert_int_equal(atomic_load(&t->caller_writes), 1);
    assert_int_equal(atomic_load(&t->other_writes), 0);
    assert_int_equal(atomic_load(&t->caller_syncs), 0);
    assert_true(wal_durable_lsn(w) < lsn);
    turn_close();
}

/* everysec, a turn past WAL_INLINE_LAZY_MAX: the flusher writes it while
 * the caller goes on, and the callback then gives the written LSN, which
 * is what releases the turn's answers (wal_safe_lsn): a killed daemon
 * loses nothing acknowledged, without waiting for the once-a-second
 * sync. */
static void test_flush_turn_everysec_large(void **state)
{
    turnctl *t = &turn.t;
    wal *w = turn_open(WAL_FSYNC_EVERYSEC);
    eff_rec r = turn_big_push(1 << 20); /* 4 x WAL_INLINE_LAZY_MAX */
    uint64_t lsn;
    int64_t deadline = mono_ms() + 10000;
    (void)state;

    assert_int_equal(wal_append(w, &r, &lsn), 0);
    wal_flush_turn(w);
    assert_int_equal(atomic_load(&t->caller_writes), 0);
    while (atomic_load(&t->durable) < lsn && mono_ms() < deadline)
        usleep(1000);
    assert_true(atomic_load(&t->durable) >= lsn);
    assert_true(wal_safe_lsn(w) >= lsn);
    assert_true(atomic_load(&t->other_writes) >= 1);
    assert_int_equal(atomic_load(&t->caller_syncs), 0);
    assert_int_equal(atomic_load(&t->cb_on_caller), 0);
    turn_close();
}

typedef struct sync_job {
    wal *w;
    uint64_t lsn;
    _Atomic int rc, done;
} sync_job;

static void *sync_thread(void *arg)
{
    sync_job *j = arg;

    atomic_store(&j->rc, wal_sync(j->w, j->lsn));
    atomic_store(&j->done, 1);
    return NULL;
}

typedef struct turn_job {
    wal *w;
    const eff_rec *a, *b;
    uint64_t la, lb;
    _Atomic int done;
} turn_job;

/* Appends a and b, then ends the turn, on a thread of its own (so that a
 * turn stuck behind the sync fails the test instead of hanging it). */
static void *turn_thread(void *arg)
{
    turn_job *j = arg;

    if (wal_append(j->w, j->a, &j->la) == 0 &&
        wal_append(j->w, j->b, &j->lb) == 0)
        wal_flush_turn(j->w);
    atomic_store(&j->done, 1);
    return NULL;
}

/* everysec: the flusher's fdatasync does not hold the log's writes.
 * While it is stuck (a slow disk), a turn, even a large one, is written
 * by its caller before the call returns (its answers leave at once, not
 * after the sync); the sync then makes durable what it had, the next one
 * the rest, and the log holds every record once. */
static void test_everysec_sync_unlocked(void **state)
{
    turnctl *t = &turn.t;
    wal *w = turn_open(WAL_FSYNC_EVERYSEC);
    eff_rec small, big = turn_big_push(1 << 20); /* > WAL_INLINE_LAZY_MAX */
    sync_job j = {0};
    turn_job tj = {0};
    pthread_t th, tth;
    uint64_t l1;
    int64_t deadline;
    wal_stats st = {0};
    bool seen, turned = false;
    (void)state;

    sample(&small, EFF_CHAN_PUSH);
    assert_int_equal(wal_append(w, &small, &l1), 0);
    wal_flush_turn(w);
    atomic_store(&t->hold_sync, 1);
    j.w = w;
    j.lsn = l1;
    assert_int_equal(pthread_create(&th, NULL, sync_thread, &j), 0);
    deadline = mono_ms() + 10000;
    while (!atomic_load(&t->in_sync) && mono_ms() < deadline)
        usleep(1000);
    seen = atomic_load(&t->in_sync);
    if (seen) {
        tj = (turn_job){.w = w, .a = &small, .b = &big};
        assert_int_equal(pthread_create(&tth, NULL, turn_thread, &tj), 0);
        while (!atomic_load(&tj.done) && mono_ms() < deadline)
            usleep(1000);
        turned = atomic_load(&tj.done);
        wal_stats_get(w, &st);
    }
    atomic_store(&t->hold_sync, 0); /* never leave a thread stuck */
    pthread_join(th, NULL);
    if (seen)
        pthread_join(tth, NULL);
    assert_true(seen);
    assert_true(turned); /* the turn did not wait for the sync */
    assert_int_equal(st.written_lsn, tj.lb);
    assert_int_equal(wal_safe_lsn(w), st.written_lsn);
    assert_true(st.durable_lsn < tj.la);
    assert_int_equal(atomic_load(&j.rc), 0);
    assert_true(wal_durable_lsn(w) >= l1);
    assert_int_equal(wal_sync(w, tj.lb), 0);
    assert_int_equal(wal_durable_lsn(w), tj.lb);
    turn_close();
    assert_int_equal(turn_replayed(), 3);
}

/* everysec, the flusher's fdatasync fails (EIO): nothing is marked
 * durable, the error is set, and once the disk recovers every record
 * since the last good sync is written again and synced; the log holds
 * each record once. */
static void test_everysec_sync_fails(void **state)
{
    turnctl *t = &turn.t;
    wal *w = turn_open(WAL_FSYNC_EVERYSEC);
    eff_rec r;
    uint64_t l1, l2;
    char err[512];
    int writes;
    (void)state;

    sample(&r, EFF_CHAN_PUSH);
    assert_int_equal(wal_append(w, &r, &l1), 0);
    assert_int_equal(wal_sync(w, l1), 0);
    assert_int_equal(wal_append(w, &r, &l2), 0);
    wal_flush_turn(w);
    writes = atomic_load(&t->other_writes);
    atomic_store(&t->fail_sync, 1);
    assert_int_equal(wal_sync(w, l2), -EIO);
    assert_int_equal(wal_error(w, err, sizeof err), -EIO);
    assert_non_null(strstr(err, "fdatasync"));
    assert_int_equal(wal_durable_lsn(w), l1);
    atomic_store(&t->fail_sync, 0);
    assert_true(turn_wait_durable(w, t, l2));
    assert_int_equal(wal_error(w, NULL, 0), 0);
    assert_true(atomic_load(&t->other_writes) > writes); /* written again */
    turn_close();
    assert_int_equal(turn_replayed(), 2);
}

/* ---- disk full ---------------------------------------------------------- */

typedef struct fullctl {
    _Atomic long budget; /* bytes pwrite may still write; <0: unlimited */
    _Atomic int fail_sync;
    _Atomic int writes_failed;
} fullctl;

static ssize_t full_pwrite(void *ctx, int fd, const void *p, size_t n,
                           off_t off)
{
    fullctl *f = ctx;
    long b = atomic_load(&f->budget);
    if (b >= 0 && (size_t)b < n) {
        if (b == 0) {
            atomic_fetch_add(&f->writes_failed, 1);
            errno = ENOSPC;
            return -1;
        }
        n = (size_t)b; /* a partial write, as a filling disk gives */
    }
    ssize_t k = pwrite(fd, p, n, off);
    if (k > 0 && b >= 0)
        atomic_fetch_sub(&f->budget, k);
    return k;
}

static int full_fdatasync(void *ctx, int fd)
{
    fullctl *f = ctx;
    if (atomic_load(&f->fail_sync)) {
        errno = ENOSPC;
        return -1;
    }
    return fdatasync(fd);
}

static void disk_full(wal_fsync pol)
{
    char dir[300], err[512];
    fullctl f;
    wal_io io = {full_pwrite, full_fdatasync, &f};
    wal_opts o = {.fsync = pol, .retry_ms = 10, .io = &io};
    wal *w;
    eff_rec r;
    uint64_t lsn = 0, durable;
    int64_t deadline;
    collect c = {0};

    atomic_store(&f.budget, -1);
    atomic_store(&f.fail_sync, 0);
    atomic_store(&f.writes_failed, 0);
    newdir(dir, sizeof dir);
    o.dir = dir;
    assert_int_equal(wal_open(&o, NULL, NULL, &w, err, sizeof err), 0);
    sample(&r, EFF_CHAN_PUSH);
    for (int i = 0; i < 10; i++)
        assert_int_equal(wal_append(w, &r, &lsn), 0);
    assert_int_equal(wal_sync(w, lsn), 0);
    durable = lsn;
    /* The disk fills in the middle of a record. */
    atomic_store(&f.budget, (long)eff_size(&r) / 2 + 3 * (long)eff_size(&r));
    for (int i = 0; i < 10; i++)
        assert_int_equal(wal_append(w, &r, &lsn), 0);
    wal_flush(w);
    deadline = mono_ms() + 20000;
    while (wal_error(w, NULL, 0) == 0 && mono_ms() < deadline)
        usleep(1000);
    assert_int_equal(wal_error(w, err, sizeof err), -ENOSPC);
    assert_non_null(strstr(err, "No space left on device"));
    assert_non_null(strstr(err, "wal-00000000000000000001.log"));
    assert_int_equal(wal_durable_lsn(w), durable);
    /* Appending still works (the integrator refuses writes meanwhile);
     * the sync reports the reason. */
    assert_int_equal(wal_sync(w, lsn), -ENOSPC);
    /* Space returns: the retries rewrite the tail from the buffer. */
    atomic_store(&f.budget, -1);
    deadline = mono_ms() + 20000;
    while ((wal_durable_lsn(w) < lsn || wal_error(w, NULL, 0)) &&
           mono_ms() < deadline)
        usleep(1000);
    assert_int_equal(wal_durable_lsn(w), lsn);
    assert_int_equal(wal_error(w, NULL, 0), 0);
    /* A failing fdatasync: nothing is durable until a sync succeeds. */
    atomic_store(&f.fail_sync, 1);
    assert_int_equal(wal_append(w, &r, &lsn), 0);
    wal_flush(w);
    deadline = mono_ms() + 20000;
    while (wal_error(w, NULL, 0) == 0 && mono_ms() < deadline)
        usleep(1000);
    assert_int_equal(wal_error(w, err, sizeof err), -ENOSPC);
    assert_non_null(strstr(err, "fdatasync"));
    assert_true(wal_durable_lsn(w) < lsn);
    atomic_store(&f.fail_sync, 0);
    assert_int_equal(wal_sync(w, lsn), 0);
    assert_int_equal(wal_close(w), 0);
    /* No half record in the middle: everything reads back. */
    o.io = NULL;
    assert_int_equal(wal_open(&o, collect_apply, &c, &w, err, sizeof err), 0);
    assert_int_equal(c.n, 21);
    assert_int_equal(wal_close(w), 0);
    collect_free(&c);
    assert_true(atomic_load(&f.writes_failed) > 0);
}

static void test_disk_full(void **state)
{
    (void)state;
    disk_full(WAL_FSYNC_ALWAYS);
    /* Under everysec the bytes since the last good sync are kept, and
     * written again after a failed fdatasync. */
    disk_full(WAL_FSYNC_EVERYSEC);
}

/* The real thing, where it can be had: a 256 KiB tmpfs in a private
 * mount namespace of a child process (it vanishes with the child; needs
 * root, else the test is skipped).  The child fills the disk with
 * records, checks the error, frees a ballast file and checks that the
 * log catches up, then that everything reads back.  Returns the child's
 * step that failed, 0, or 77 (skip). */
static int tmpfs_child(const char *mnt)
{
    char dir[400], ballast[400], err[512];
    wal_opts o = {.fsync = WAL_FSYNC_ALWAYS, .retry_ms = 10};
    wal *w;
    eff_rec r;
    char big[1024];
    uint64_t lsn = 0, n = 0;
    int64_t deadline;
    int fd;

    if (unshare(CLONE_NEWNS) != 0 ||
        mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", mnt, "tmpfs", 0, "size=256k") != 0)
        return 77;
    snprintf(ballast, sizeof ballast, "%s/ballast", mnt);
    fd = open(ballast, O_WRONLY | O_CREAT, 0600);
    memset(big, 'b', sizeof big);
    for (int i = 0; i < 64; i++)
        if (write(fd, big, sizeof big) != (ssize_t)sizeof big)
            return 1;
    close(fd);
    snprintf(dir, sizeof dir, "%s/data", mnt);
    o.dir = dir;
    if (wal_open(&o, NULL, NULL, &w, err, sizeof err) != 0)
        return 2;
    memset(big, 'v', sizeof big);
    big[0] = '"';
    big[sizeof big - 2] = '"';
    big[sizeof big - 1] = 0;
    memset(&r, 0, sizeof r);
    r.type = EFF_CHAN_PUSH;
    r.u.push.name = eff_s("q");
    r.u.push.value = eff_s(big);
    /* Fill the disk: at most 1 MiB of records into 256 KiB. */
    for (int i = 0; i < 1024 && wal_error(w, NULL, 0) == 0; i++) {
        if (wal_append(w, &r, &lsn) != 0)
            return 3;
        wal_flush(w);
        deadline = mono_ms() + 20000;
        while (wal_durable_lsn(w) < lsn && wal_error(w, NULL, 0) == 0 &&
               mono_ms() < deadline)
            usleep(200);
    }
    if (wal_error(w, err, sizeof err) != -ENOSPC ||
        !strstr(err, "No space left on device"))
        return 4;
    if (wal_durable_lsn(w) >= lsn)
        return 5;
    /* Space returns. */
    if (unlink(ballast) != 0)
        return 6;
    deadline = mono_ms() + 20000;
    while ((wal_durable_lsn(w) < lsn || wal_error(w, NULL, 0)) &&
           mono_ms() < deadline)
        usleep(1000);
    if (wal_durable_lsn(w) != lsn || wal_error(w, NULL, 0) != 0)
        return 7;
    if (wal_close(w) != 0)
        return 8;
    {
        collect c = {0};
        if (wal_open(&o, collect_apply, &c, &w, err, sizeof err) != 0)
            return 9;
        n = c.n;
        collect_free(&c);
        wal_close(w);
    }
    return n == lsn ? 0 : 10;
}

static void test_disk_full_tmpfs(void **state)
{
    char mnt[300];
    pid_t pid;
    int st;
    (void)state;

    newdir(mnt, sizeof mnt);
    assert_int_equal(mkdir(mnt, 0700), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(tmpfs_child(mnt));
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) == 77) {
        print_message("no tmpfs (not root?): skipped\n");
        skip();
    }
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* ---- kill -9 at random moments --------------------------------------------
 */

/* The record of LSN l is a function of l, so that what survives can be
 * checked: groups of three every 7th LSN, else single pushes. */
static void crash_rec(uint64_t l, eff_rec *r, char *v, size_t vn)
{
    memset(r, 0, sizeof *r);
    snprintf(v, vn, "\"value %" PRIu64 "\"", l);
    r->type = EFF_CHAN_PUSH;
    r->u.push.name = eff_s("q");
    r->u.push.value = eff_s(v);
}

/* The child: appends until killed, acknowledging on fd each LSN that the
 * policy promises to keep across a process crash (durable under always,
 * handed to the kernel otherwise). */
static void crash_child(const char *dir, wal_fsync pol, int fd)
{
    wal_opts o = {.dir = dir, .fsync = pol};
    char err[512];
    wal *w;

    if (wal_open(&o, NULL, NULL, &w, err, sizeof err) != 0)
        _exit(2);
    for (uint64_t l = wal_appended_lsn(w) + 1;;) {
        eff_rec g[3];
        char v[3][64];
        uint64_t lsn, ok;
        size_t n = l % 7 == 0 ? 3 : 1;
        wal_stats st;
        for (size_t i = 0; i < n; i++)
            crash_rec(l + i, &g[i], v[i], sizeof v[i]);
        if (wal_append_group(w, g, n, &lsn) != 0)
            _exit(3);
        l = lsn + 1;
        if (l % 5)
            continue;
        wal_flush(w);
        do {
            wal_stats_get(w, &st);
            ok = pol == WAL_FSYNC_ALWAYS ? st.durable_lsn : st.written_lsn;
        } while (ok < lsn && !usleep(100));
        if (write(fd, &ok, sizeof ok) != (ssize_t)sizeof ok)
            _exit(4);
    }
}

static void test_kill9(void **state)
{
    char dir[300], err[512];
    uint64_t total_acked = 0;
    (void)state;

    newdir(dir, sizeof dir);
    for (int it = 0; it < 24; it++) {
        wal_fsync pol = (wal_fsync)(it % 3);
        int p[2], st;
        uint64_t acked = 0, a;
        long want = 1 + (long)(rnd() % 60), got = 0;
        pid_t pid;
        collect c = {0};
        wal_opts o = {.dir = dir, .fsync = WAL_FSYNC_NO};
        wal *w;

        assert_int_equal(pipe(p), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            crash_child(dir, pol, p[1]);
        }
        close(p[1]);
        /* Kill it after a random number of acknowledgements, whatever it
         * is doing then. */
        while (got < want && read(p[0], &a, sizeof a) == (ssize_t)sizeof a) {
            acked = a;
            got++;
        }
        kill(pid, SIGKILL);
        while (read(p[0], &a, sizeof a) == (ssize_t)sizeof a)
            acked = a;
        close(p[0]);
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFSIGNALED(st));
        /* Every acknowledged record is there, in order, whole groups
         * only, each the one written. */
        assert_int_equal(wal_open(&o, collect_apply, &c, &w, err, sizeof err),
                         0);
        assert_true(c.n >= acked);
        for (size_t i = 0; i < c.n; i++) {
            eff_rec r, d;
            char v[64];
            size_t used;
            crash_rec(i + 1, &r, v, sizeof v);
            /* (c.r's strings pointed into the file, now unmapped.) */
            const uint8_t *b = c.bytes[i];
            size_t bn = 8 + ((size_t)b[0] | (size_t)b[1] << 8 |
                             (size_t)b[2] << 16 | (size_t)b[3] << 24);
            assert_int_equal(eff_decode(b, bn, &d, &used), 0);
            assert_int_equal(d.lsn, i + 1);
            assert_true(str_eq(d.u.push.value, r.u.push.value));
        }
        if (c.n)
            assert_int_equal(c.r[c.n - 1].flags, 0);
        assert_int_equal(wal_close(w), 0);
        total_acked = acked;
        collect_free(&c);
    }
    print_message("kill -9: 24 kills, %" PRIu64 " records acknowledged\n",
                  total_acked);
}

/* The child of test_kill9_compacting: recovers its model, then runs
 * effects with automatic compaction at a tiny floor, tracing the state's
 * hash after each LSN to trace_path and acknowledging on fd. */
static void compact_child(const char *dir, wal_fsync pol, int fd,
                          const char *trace_path, uint64_t seed)
{
    wal_opts o = {.dir = dir, .fsync = pol, .compact_floor = 16384};
    char err[512];
    model m;
    wal *w;

    model_init(&m);
    rng_state = seed;
    if (wal_open(&o, model_apply, &m, &w, err, sizeof err) != 0)
        _exit(2);
    m.trace_fd = open(trace_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (m.trace_fd <= 0)
        _exit(3);
    model_trace(&m, wal_appended_lsn(w)); /* the state it started from */
    /* The walks run effects between objects: objects change after L0. */
    m.w = w;
    m.interleave = 3;
    wal_set_compactor(w, model_iter, &m);
    for (;;) {
        uint64_t want, ok;
        wal_stats st;
        run_effects(&m, w, 5);
        want = wal_appended_lsn(w);
        wal_flush(w);
        do {
            wal_stats_get(w, &st);
            ok = pol == WAL_FSYNC_ALWAYS ? st.durable_lsn : st.written_lsn;
        } while (ok < want && !usleep(100));
        if (write(fd, &ok, sizeof ok) != (ssize_t)sizeof ok)
            _exit(4);
    }
}

/* Finds lsn in the trace; returns its hash, or 0 when absent. */
static uint64_t trace_find(const char *path, uint64_t lsn)
{
    FILE *f = fopen(path, "r");
    uint64_t l, h, found = 0;

    assert_non_null(f);
    while (fscanf(f, "%" SCNu64 " %" SCNx64, &l, &h) == 2)
        if (l == lsn)
            found = h; /* the last line for lsn: the state after it */
    fclose(f);
    return found;
}

/* The child of test_kill9_after_append: some effects, then one more
 * that another thread's flush writes before the child goes on: it dies
 * right there, as a kill -9 landing after the flusher's round can. */
static void append_child(const char *dir, wal_fsync pol, const char *trace_path,
                         int effects)
{
    wal_opts o = {.dir = dir, .fsync = pol};
    char err[512];
    model m;
    wal *w;

    model_init(&m);
    if (wal_open(&o, model_apply, &m, &w, err, sizeof err) != 0)
        _exit(2);
    m.trace_fd = open(trace_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (m.trace_fd <= 0)
        _exit(3);
    model_trace(&m, wal_appended_lsn(w));
    run_effects(&m, w, effects);
    m.die_after_append = 1;
    for (;;)
        run_effects(&m, w, 1); /* until one makes a record */
}

/* A record written before its effect is traced: the recovered state is
 * still one the trace names (the kill -9 tests' model of "a state the
 * child had" must hold whenever the kill lands). */
static void test_kill9_after_append(void **state)
{
    char dir[300], trace[320], err[512];
    (void)state;

    newdir(dir, sizeof dir);
    snprintf(trace, sizeof trace, "%s.trace", dir);
    for (int it = 0; it < 6; it++) {
        wal_opts o = {.dir = dir, .fsync = WAL_FSYNC_NO};
        int st;
        uint64_t h;
        pid_t pid;
        model b;
        wal *w;

        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            append_child(dir, (wal_fsync)(it % 3), trace, 10 * it);
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
        model_init(&b);
        assert_int_equal(wal_open(&o, model_apply, &b, &w, err, sizeof err), 0);
        h = trace_find(trace, wal_appended_lsn(w));
        if (h != model_hash(&b))
            print_error("run %d: LSN %" PRIu64 ": not traced, or differs\n", it,
                        wal_appended_lsn(w));
        assert_true(h != 0);
        assert_true(h == model_hash(&b));
        assert_int_equal(wal_close(w), 0);
        model_free(&b);
    }
    unlink(trace);
}

/* The pwrite of test_snapshot_same_l0's child: once armed, the process
 * dies before writing, as a kill -9 would before the flusher's round. */
static int die_armed;

static ssize_t die_pwrite(void *ctx, int fd, const void *p, size_t n, off_t off)
{
    (void)ctx;
    if (die_armed)
        _exit(0);
    return pwrite(fd, p, n, off);
}

/* The child of test_snapshot_same_l0: effects, a snapshot, then a second
 * snapshot with nothing logged in between (the same L0), whose walk runs
 * effects; it dies at the first write of the log after that. */
static void same_l0_child(const char *dir, const char *trace_path)
{
    wal_io io = {die_pwrite, NULL, NULL};
    wal_opts o = {.dir = dir, .fsync = WAL_FSYNC_NO, .io = &io};
    char err[512];
    model m;
    wal *w;

    model_init(&m);
    if (wal_open(&o, model_apply, &m, &w, err, sizeof err) != 0)
        _exit(2);
    m.trace_fd = open(trace_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (m.trace_fd <= 0)
        _exit(3);
    model_trace(&m, wal_appended_lsn(w));
    run_effects(&m, w, 200);
    if (wal_snapshot(w, model_iter, &m, err, sizeof err) != 0)
        _exit(4);
    /* The walk's effects wait in memory for the snapshot's log sync. */
    m.w = w;
    m.interleave = 3;
    m.noflush = 1;
    die_armed = 1;
    if (wal_snapshot(w, model_iter, &m, err, sizeof err) != 0)
        _exit(5);
    _exit(0);
}

/* A snapshot whose L0 is the live snapshot's must not replace that file
 * before the log holds what its walk saw: a crash then would keep later
 * effects (in the snapshot) and lose earlier ones (in the log). */
static void test_snapshot_same_l0(void **state)
{
    char dir[300], trace[320], err[512];
    wal_opts o = {.fsync = WAL_FSYNC_NO};
    int st;
    uint64_t h;
    pid_t pid;
    model b;
    wal *w;
    (void)state;

    newdir(dir, sizeof dir);
    snprintf(trace, sizeof trace, "%s.trace", dir);
    o.dir = dir;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        same_l0_child(dir, trace);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    model_init(&b);
    assert_int_equal(wal_open(&o, model_apply, &b, &w, err, sizeof err), 0);
    h = trace_find(trace, wal_appended_lsn(w));
    if (h != model_hash(&b))
        print_error("LSN %" PRIu64 ": state differs\n", wal_appended_lsn(w));
    assert_true(h != 0);
    assert_true(h == model_hash(&b));
    assert_int_equal(wal_close(w), 0);
    model_free(&b);
    unlink(trace);
}

/* kill -9 while compactions run: whatever the moment (a segment switch,
 * a snapshot half written, a manifest swap, old files being deleted),
 * the recovered state is exactly the state the child had after some LSN
 * at or past the last one it acknowledged. */
static void test_kill9_compacting(void **state)
{
    char dir[300], trace[320], err[512];
    int snaps = 0;
    (void)state;

    newdir(dir, sizeof dir);
    snprintf(trace, sizeof trace, "%s.trace", dir);
    for (int it = 0; it < 16; it++) {
        wal_fsync pol = (wal_fsync)(it % 3);
        int p[2], st;
        uint64_t acked = 0, a, h;
        long want = 5 + (long)(rnd() % 80), got = 0;
        pid_t pid;
        model b;
        wal *w;
        wal_opts o = {.dir = dir, .fsync = WAL_FSYNC_NO};
        wal_stats ws;

        assert_int_equal(pipe(p), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            compact_child(dir, pol, p[1], trace, rnd() | 1);
        }
        close(p[1]);
        while (got < want && read(p[0], &a, sizeof a) == (ssize_t)sizeof a) {
            acked = a;
            got++;
        }
        kill(pid, SIGKILL);
        while (read(p[0], &a, sizeof a) == (ssize_t)sizeof a)
            acked = a;
        close(p[0]);
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFSIGNALED(st));
        model_init(&b);
        assert_int_equal(wal_open(&o, model_apply, &b, &w, err, sizeof err), 0);
        wal_stats_get(w, &ws);
        snaps += ws.snapshot_lsn > 0;
        assert_true(wal_appended_lsn(w) >= acked);
        h = trace_find(trace, wal_appended_lsn(w));
        if (h != model_hash(&b))
            print_error("kill %d: LSN %" PRIu64 ": state differs\n", it,
                        wal_appended_lsn(w));
        assert_true(h != 0);
        assert_true(h == model_hash(&b));
        assert_int_equal(wal_close(w), 0);
        model_free(&b);
    }
    assert_true(snaps > 0);
    unlink(trace);
}

/* ---- power loss ------------------------------------------------------------
 */

/* The child's fdatasync: after each success, logs "segment size" to the
 * sync log, so the parent can cut every segment back to what was synced:
 * what a power loss keeps of a file written without O_SYNC. */
static int pl_fdatasync(void *ctx, int fd)
{
    int logfd = *(int *)ctx;
    char link[64], path[512], line[600];
    struct stat st;
    ssize_t n;
    int k;

    if (fdatasync(fd) != 0)
        return -1;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof path - 1);
    if (n <= 0 || fstat(fd, &st) != 0)
        _exit(6);
    path[n] = 0;
    k = snprintf(line, sizeof line, "%s %lld\n", strrchr(path, '/') + 1,
                 (long long)st.st_size);
    if (write(logfd, line, (size_t)k) != k)
        _exit(7);
    return 0;
}

/* The child of test_power_loss: like compact_child, under always, with
 * the sync log; when die_after_snapshot, it snapshots (its walk running
 * effects) and dies at once after the manifest swap. */
static void power_child(const char *dir, int fd, const char *trace_path,
                        int *logfd, uint64_t seed, int die_after_snapshot)
{
    wal_io io = {NULL, pl_fdatasync, logfd};
    wal_opts o = {.dir = dir, .fsync = WAL_FSYNC_ALWAYS, .io = &io};
    char err[512];
    model m;
    wal *w;

    model_init(&m);
    rng_state = seed;
    if (wal_open(&o, model_apply, &m, &w, err, sizeof err) != 0)
        _exit(2);
    m.trace_fd = open(trace_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (m.trace_fd <= 0)
        _exit(3);
    model_trace(&m, wal_appended_lsn(w));
    m.w = w;
    m.interleave = 3;
    for (int round = 0;; round++) {
        uint64_t want;
        run_effects(&m, w, 5);
        if (die_after_snapshot && round == 20) {
            /* The walk's effects are left for the snapshot to sync: they
             * are in its objects' state. */
            m.noflush = 1;
            if (wal_snapshot(w, model_iter, &m, err, sizeof err) != 0)
                _exit(8);
            _exit(0); /* the power goes: nothing more reaches the disk */
        }
        want = wal_appended_lsn(w);
        wal_flush(w);
        while (wal_durable_lsn(w) < want)
            usleep(100);
        if (write(fd, &want, sizeof want) != (ssize_t)sizeof want)
            _exit(4);
    }
}

/* Cuts every segment of dir back to its last synced size (the sync log
 * spans every run on dir; the last line for a file wins; a segment never
 * synced keeps its header, which seg_create fsyncs). */
static void power_cut(const char *dir, const char *synclog)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    assert_non_null(d);
    while ((e = readdir(d))) {
        FILE *f;
        char name[128], path[600];
        long long size, keep = 32;
        struct stat st;
        if (strncmp(e->d_name, "wal-", 4) != 0)
            continue;
        f = fopen(synclog, "r");
        while (f && fscanf(f, "%127s %lld", name, &size) == 2)
            if (!strcmp(name, e->d_name))
                keep = size;
        if (f)
            fclose(f);
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        assert_int_equal(stat(path, &st), 0);
        if (keep < st.st_size)
            assert_int_equal(truncate(path, keep), 0);
    }
    closedir(d);
}

/* Power loss under fsync=always: every file cut back to what was synced.
 * Every acknowledged effect survives, and the state is exactly one the
 * server had (no later effect kept while an earlier one is lost), also
 * when the power goes right after a snapshot's manifest swap. */
static void test_power_loss(void **state)
{
    char dir[300], trace[320], synclog[320], err[512];
    (void)state;

    newdir(dir, sizeof dir);
    snprintf(trace, sizeof trace, "%s.trace", dir);
    snprintf(synclog, sizeof synclog, "%s.synclog", dir);
    for (int it = 0; it < 12; it++) {
        int p[2], st, logfd;
        uint64_t acked = 0, a, h;
        long want = 3 + (long)(rnd() % 40), got = 0;
        int after_snap = it % 2;
        pid_t pid;
        model b;
        wal *w;
        wal_opts o = {.dir = dir, .fsync = WAL_FSYNC_NO};

        logfd = open(synclog, O_WRONLY | O_CREAT | O_APPEND, 0600);
        assert_true(logfd > 0);
        assert_int_equal(pipe(p), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            power_child(dir, p[1], trace, &logfd, rnd() | 1, after_snap);
        }
        close(p[1]);
        close(logfd);
        while (!after_snap && got < want &&
               read(p[0], &a, sizeof a) == (ssize_t)sizeof a) {
            acked = a;
            got++;
        }
        if (!after_snap)
            kill(pid, SIGKILL);
        while (read(p[0], &a, sizeof a) == (ssize_t)sizeof a)
            acked = a;
        close(p[0]);
        assert_int_equal(waitpid(pid, &st, 0), pid);
        if (after_snap)
            assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        power_cut(dir, synclog);
        model_init(&b);
        assert_int_equal(wal_open(&o, model_apply, &b, &w, err, sizeof err), 0);
        assert_true(wal_appended_lsn(w) >= acked);
        h = trace_find(trace, wal_appended_lsn(w));
        if (h != model_hash(&b))
            print_error("power loss %d: LSN %" PRIu64 ": state differs\n", it,
                        wal_appended_lsn(w));
        assert_true(h != 0 && h == model_hash(&b));
        assert_int_equal(wal_close(w), 0);
        model_free(&b);
    }
    unlink(trace);
    unlink(synclog);
}

/* ---- compaction trigger ------------------------------------------------- */

static void test_compaction_trigger(void **state)
{
    char dir[300], err[256];
    wal_opts o = {.fsync = WAL_FSYNC_NO, .compact_floor = 4096};
    model a;
    wal *w;
    (void)state;

    newdir(dir, sizeof dir);
    o.dir = dir;
    model_init(&a);
    assert_int_equal(wal_open(&o, NULL, NULL, &w, err, sizeof err), 0);
    assert_int_equal(wal_should_compact(w), 0);
    /* Nothing logged yet: a snapshot has nothing to do. */
    assert_int_equal(wal_snapshot(w, model_iter, &a, err, sizeof err), 0);
    assert_int_equal(count_files(dir, "snap-"), 0);
    while (!wal_should_compact(w))
        run_effects(&a, w, 10);
    assert_int_equal(wal_snapshot(w, model_iter, &a, err, sizeof err), 0);
    assert_int_equal(wal_should_compact(w), 0);
    assert_int_equal(wal_close(w), 0);
    model_free(&a);
}

static void test_auto_compaction(void **state)
{
    char dir[300], err[256];
    wal_opts o = {.fsync = WAL_FSYNC_NO, .compact_floor = 8192};
    model a, b;
    wal *w;
    wal_stats st;
    int64_t deadline;
    (void)state;

    newdir(dir, sizeof dir);
    o.dir = dir;
    model_init(&a);
    assert_int_equal(wal_open(&o, NULL, NULL, &w, err, sizeof err), 0);
    assert_int_equal(wal_compact(w), -EINVAL);
    wal_set_compactor(w, model_iter, &a);
    /* Effects keep coming; the flusher starts compactions on its own. */
    deadline = mono_ms() + 30000;
    do {
        run_effects(&a, w, 50);
        wal_flush(w);
        wal_stats_get(w, &st);
    } while (st.snapshots < 3 && mono_ms() < deadline);
    assert_true(st.snapshots >= 3);
    /* wal_close waits for a compaction still running. */
    run_effects(&a, w, 50);
    {
        int rc = wal_compact(w);
        assert_true(rc == 0 || rc == -EBUSY);
    }
    assert_int_equal(wal_close(w), 0);
    model_init(&b);
    w = open_ok(dir, WAL_FSYNC_NO, &b);
    assert_same(&a, &b);
    assert_int_equal(wal_close(w), 0);
    model_free(&b);
    model_free(&a);
}

/* ---- the token epoch ---------------------------------------------------- */

static void test_epoch(void **state)
{
    char dir[300], path[400], err[256];
    uint64_t e1, e2, e3;
    (void)state;

    newdir(dir, sizeof dir);
    assert_int_equal(epoch_bump(dir, &e1, err, sizeof err), 0);
    assert_int_equal(e1, 1);
    assert_int_equal(epoch_bump(dir, &e2, err, sizeof err), 0);
    assert_int_equal(e2, 2);
    /* Every token of a later epoch is above every token of an earlier. */
    assert_true(epoch_token(e2, 1) > epoch_token(e1, EPOCH_COUNTER_MAX));
    assert_true(epoch_token(EPOCH_MAX, EPOCH_COUNTER_MAX) < (1ull << 53));
    /* A damaged EPOCH is refused: tokens must never go back. */
    snprintf(path, sizeof path, "%s/EPOCH", dir);
    write_file(path, "chand-epoch 7 00000000\n", 23);
    assert_int_equal(epoch_bump(dir, &e3, err, sizeof err), -EBADMSG);
    assert_non_null(strstr(err, "EPOCH is damaged"));
    /* The last epoch refuses to wrap. */
    {
        char t[64];
        int n = snprintf(t, sizeof t, "chand-epoch %llu",
                         (unsigned long long)EPOCH_MAX);
        n += snprintf(t + n, sizeof t - (size_t)n, " %08x\n",
                      crc32c(t, (size_t)n));
        write_file(path, t, (size_t)n);
        assert_int_equal(epoch_bump(dir, &e3, err, sizeof err), -EOVERFLOW);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc_vectors),
        cmocka_unit_test(test_codec_every_type),
        cmocka_unit_test(test_codec_compat),
        cmocka_unit_test(test_codec_format),
        cmocka_unit_test(test_codec_garbage),
        cmocka_unit_test(test_open_lock_and_fresh),
        cmocka_unit_test(test_apply_failure),
        cmocka_unit_test(test_torn_tail_every_offset),
        cmocka_unit_test(test_group_torn),
        cmocka_unit_test(test_corrupt_middle_and_repair),
        cmocka_unit_test(test_unknown_type_at_tail_refused),
        cmocka_unit_test(test_damage_random),
        cmocka_unit_test(test_replay_model),
        cmocka_unit_test(test_fuzzy_snapshot_model),
        cmocka_unit_test(test_manifest_swap),
        cmocka_unit_test(test_snapshot_damage_refused),
        cmocka_unit_test(test_snapshot_abandoned_and_strays),
        cmocka_unit_test(test_group_commit),
        cmocka_unit_test(test_snapshot_notifies),
        cmocka_unit_test(test_policies),
        cmocka_unit_test_teardown(test_flush_turn_inline, turn_teardown),
        cmocka_unit_test_teardown(test_flush_turn_large, turn_teardown),
        cmocka_unit_test_teardown(test_flush_turn_failing_disk, turn_teardown),
        cmocka_unit_test_teardown(test_flush_turn_everysec, turn_teardown),
        cmocka_unit_test_teardown(test_flush_turn_everysec_mid, turn_teardown),
        cmocka_unit_test_teardown(test_flush_turn_everysec_large,
                                  turn_teardown),
        cmocka_unit_test_teardown(test_everysec_sync_unlocked, turn_teardown),
        cmocka_unit_test_teardown(test_everysec_sync_fails, turn_teardown),
        cmocka_unit_test(test_disk_full),
        cmocka_unit_test(test_disk_full_tmpfs),
        cmocka_unit_test(test_kill9),
        cmocka_unit_test(test_kill9_compacting),
        cmocka_unit_test(test_kill9_after_append),
        cmocka_unit_test(test_snapshot_same_l0),
        cmocka_unit_test(test_power_loss),
        cmocka_unit_test(test_compaction_trigger),
        cmocka_unit_test(test_auto_compaction),
        cmocka_unit_test(test_epoch),
    };
    /* WAL_TEST=name runs the cases whose names match it (to loop one). */
    if (getenv("WAL_TEST"))
        cmocka_set_test_filter(getenv("WAL_TEST"));
    return cmocka_run_group_tests(tests, setup, teardown);
}
