/*
 * effect.c - the codec of the durability records (format in effect.h).
 *
 * Each type is a row of a table: its name and its fields in wire order,
 * each an offset into eff_rec and a kind.  Encoding, decoding and sizing
 * all walk that row, so a type gains a field in one place, at the end.
 */
#include "effect.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stddef.h>
#include <string.h>

#include "crc32c.h"

typedef enum eff_fk { FK_END = 0, FK_U32, FK_U64, FK_I64, FK_STR } eff_fk;

typedef struct eff_field {
    eff_fk kind;
    unsigned short off;
    const char *name; /* "push.value": eff_format prints what follows '.' */
} eff_field;

#define EFF_MAX_FIELDS 7

typedef struct eff_row {
    const char *name;
    eff_field f[EFF_MAX_FIELDS];
} eff_row;

#define F(kind, member)                                                        \
    {                                                                          \
        kind, (unsigned short)offsetof(eff_rec, u.member), #member             \
    }
#define S(m) F(FK_STR, m)
#define U32(m) F(FK_U32, m)
#define U64(m) F(FK_U64, m)
#define I64(m) F(FK_I64, m)

#define HOLD_FIELDS                                                            \
    {                                                                          \
        S(hold.name), U32(hold.kind), U64(hold.token), I64(hold.deadline_ms)   \
    }
#define TIMER_FIELDS                                                           \
    {                                                                          \
        U64(timer.id), U32(timer.kind), I64(timer.deadline_ms),                \
            I64(timer.period_ms), S(timer.target), S(timer.request)            \
    }
#define DLV_FIELDS                                                             \
    {                                                                          \
        S(dlv.name), U64(dlv.id), U32(dlv.attempt), I64(dlv.deadline_ms),      \
            S(dlv.value), S(dlv.reason), U64(dlv.prev_id)                      \
    }

/* Every delivery record carries the same fields (unused ones are empty
 * and cost one byte each), so that the set is one shape to extend. */
static const eff_row eff_rows[EFF_TYPE_MAX] = {
    [EFF_CHAN_MAKE] = {"chan_make",
                       {S(make.name), U64(make.cap), S(make.elem),
                        U32(make.max_deliver), S(make.dead_letter)}},
    [EFF_CHAN_PUSH] = {"chan_push", {S(push.name), S(push.value)}},
    [EFF_CHAN_POP] = {"chan_pop",
                      {S(pop.name), U64(pop.count), U64(pop.check)}},
    [EFF_CHAN_CLOSE] = {"chan_close", {S(obj.name)}},
    [EFF_DROP] = {"drop", {S(obj.name)}},
    [EFF_MAP_STORE] = {"map_store", {S(map.name), S(map.key), S(map.value)}},
    [EFF_MAP_DELETE] = {"map_delete", {S(map.name), S(map.key)}},
    [EFF_MAP_CLEAR] = {"map_clear", {S(obj.name)}},
    [EFF_ATOMIC_SET] = {"atomic_set", {S(num.name), I64(num.v)}},
    [EFF_WG_SET] = {"wg_set", {S(num.name), I64(num.v)}},
    [EFF_ONCE_DONE] = {"once_done",
                       {S(once.name), U32(once.has_value), S(once.value)}},
    [EFF_HOLD_GRANT] = {"hold_grant", HOLD_FIELDS},
    [EFF_HOLD_RENEW] = {"hold_renew", HOLD_FIELDS},
    [EFF_HOLD_RELEASE] = {"hold_release", HOLD_FIELDS},
    [EFF_TIMER_ADD] = {"timer_add", TIMER_FIELDS},
    [EFF_TIMER_FIRE] = {"timer_fire", {U64(timer.id), I64(timer.deadline_ms)}},
    [EFF_TIMER_STOP] = {"timer_stop", {U64(timer.id)}},
    [EFF_TOKEN_EPOCH] = {"token_epoch", {U64(epoch.epoch)}},
    [EFF_DLV_INFLIGHT] = {"dlv_inflight", DLV_FIELDS},
    [EFF_DLV_ACK] = {"dlv_ack", DLV_FIELDS},
    [EFF_DLV_REDELIVER] = {"dlv_redeliver", DLV_FIELDS},
    [EFF_DLV_TOUCH] = {"dlv_touch", DLV_FIELDS},
    [EFF_DLV_DEAD] = {"dlv_dead", DLV_FIELDS},
    [EFF_SNAP_BEGIN] = {"snap_begin", {U64(snap.start_lsn)}},
    [EFF_SNAP_END] = {"snap_end", {U64(snap.count)}},
};

const char *eff_type_name(unsigned type)
{
    if (type < EFF_TYPE_MAX && eff_rows[type].name)
        return eff_rows[type].name;
    return "unknown";
}

int eff_type_known(unsigned type)
{
    return type < EFF_TYPE_MAX && eff_rows[type].name != NULL;
}

eff_str eff_s(const char *s)
{
    eff_str r = {s, s ? strlen(s) : 0};
    return r;
}

/* ---- little-endian and varint primitives -------------------------- */

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static size_t varint_put(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Returns bytes used (1..10), 0 at the end of input or on an overlong or
 * overflowing varint. */
static size_t varint_get(const uint8_t *p, size_t n, uint64_t *v)
{
    uint64_t r = 0;

    for (size_t i = 0; i < n && i < 10; i++) {
        uint64_t b = p[i] & 0x7f;
        if (i == 9 && b > 1)
            return 0;
        r |= b << (7 * i);
        if (!(p[i] & 0x80)) {
            *v = r;
            return i + 1;
        }
    }
    return 0;
}

static uint64_t zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* ---- field access --------------------------------------------------- */

#define AT(r, off, T) ((T *)(void *)((char *)(r) + (off)))
#define CAT(r, off, T) ((const T *)(const void *)((const char *)(r) + (off)))

static uint64_t field_int(const eff_rec *r, const eff_field *f)
{
    switch (f->kind) {
    case FK_U32:
        return *CAT(r, f->off, uint32_t);
    case FK_U64:
        return *CAT(r, f->off, uint64_t);
    case FK_I64:
        return zigzag(*CAT(r, f->off, int64_t));
    default:
        return 0;
    }
}

/* Returns the body size of r, or 0 for an unknown type; sets *big when
 * the size passes EFF_MAX_BODY. */
static size_t body_size(const eff_rec *r, int *big)
{
    size_t n = EFF_BODY_HDR;

    *big = 0;
    if (!eff_type_known(r->type))
        return 0;
    for (const eff_field *f = eff_rows[r->type].f;
         f < eff_rows[r->type].f + EFF_MAX_FIELDS && f->kind; f++) {
        if (f->kind == FK_STR) {
            size_t l = CAT(r, f->off, eff_str)->n;
            if (l > EFF_MAX_BODY) {
                *big = 1;
                return 0;
            }
            n += varint_size(l) + l;
        } else {
            n += varint_size(field_int(r, f));
        }
    }
    if (n > EFF_MAX_BODY)
        *big = 1;
    return n;
}

size_t eff_size(const eff_rec *r)
{
    int big;
    size_t n = body_size(r, &big);

    return n && !big ? EFF_FRAME_HDR + n : 0;
}

size_t eff_encode(const eff_rec *r, uint8_t *p)
{
    size_t size = eff_size(r);

    return size ? eff_encode_as(r, r->lsn, r->flags, size, p) : 0;
}

size_t eff_encode_as(const eff_rec *r, uint64_t lsn, uint8_t flags, size_t size,
                     uint8_t *p)
{
    size_t body = size - EFF_FRAME_HDR;
    uint8_t *q = p + EFF_FRAME_HDR;

    put_u32(p, (uint32_t)body);
    put_u16(q, r->type);
    q[2] = EFF_VERSION;
    q[3] = flags & EFF_F_MORE;
    put_u64(q + 4, lsn);
    q += EFF_BODY_HDR;
    for (const eff_field *f = eff_rows[r->type].f;
         f < eff_rows[r->type].f + EFF_MAX_FIELDS && f->kind; f++) {
        if (f->kind == FK_STR) {
            const eff_str *s = CAT(r, f->off, eff_str);
            q += varint_put(q, s->n);
            if (s->n)
                memcpy(q, s->p, s->n);
            q += s->n;
        } else {
            q += varint_put(q, field_int(r, f));
        }
    }
    put_u32(p + 4, crc32c_update(crc32c(p, 4), p + EFF_FRAME_HDR, body));
    return size;
}

int eff_decode(const uint8_t *p, size_t n, eff_rec *r, size_t *used)
{
    uint32_t len;
    const uint8_t *q, *end;

    memset(r, 0, sizeof *r);
    if (n < EFF_FRAME_HDR)
        return -EAGAIN;
    len = get_u32(p);
    if (len < EFF_BODY_HDR || len > EFF_MAX_BODY)
        return -EBADMSG;
    if (n - EFF_FRAME_HDR < len)
        return -EAGAIN;
    if (crc32c_update(crc32c(p, 4), p + EFF_FRAME_HDR, len) != get_u32(p + 4))
        return -EBADMSG;
    q = p + EFF_FRAME_HDR;
    end = q + len;
    r->type = (uint16_t)(q[0] | q[1] << 8);
    r->ver = q[2];
    r->lsn = get_u64(q + 4);
    r->flags = q[3];
    if (!eff_type_known(r->type) || (q[3] & ~EFF_F_MORE) != 0)
        return -ENOTSUP;
    if (r->ver == 0)
        return -EINVAL;
    q += EFF_BODY_HDR;
    for (const eff_field *f = eff_rows[r->type].f;
         f < eff_rows[r->type].f + EFF_MAX_FIELDS && f->kind; f++) {
        uint64_t v;
        size_t k;
        if (q == end)
            break; /* an older layout: the remaining fields are 0 */
        k = varint_get(q, (size_t)(end - q), &v);
        if (!k)
            return -EINVAL;
        q += k;
        switch (f->kind) {
        case FK_STR:
            if (v > (uint64_t)(end - q))
                return -EINVAL;
            AT(r, f->off, eff_str)->p = v ? (const char *)q : NULL;
            AT(r, f->off, eff_str)->n = (size_t)v;
            q += v;
            break;
        case FK_U32:
            if (v > UINT32_MAX)
                return -EINVAL;
            *AT(r, f->off, uint32_t) = (uint32_t)v;
            break;
        case FK_U64:
            *AT(r, f->off, uint64_t) = v;
            break;
        case FK_I64:
            *AT(r, f->off, int64_t) = unzigzag(v);
            break;
        default:
            return -EINVAL;
        }
    }
    /* Bytes after the known fields belong to a newer layout: skipped. */
    *used = EFF_FRAME_HDR + len;
    return 0;
}

eff_objkind eff_object(const eff_rec *r, eff_str *name, uint64_t *id)
{
    switch (r->type) {
    case EFF_TIMER_ADD:
    case EFF_TIMER_FIRE:
    case EFF_TIMER_STOP:
        *id = r->u.timer.id;
        return EFF_OBJ_TIMER;
    case EFF_TOKEN_EPOCH:
    case EFF_SNAP_BEGIN:
    case EFF_SNAP_END:
        return EFF_OBJ_NONE;
    default:
        if (!eff_type_known(r->type))
            return EFF_OBJ_NONE;
        /* Every other type's first field is the object's name. */
        *name = *CAT(r, eff_rows[r->type].f[0].off, eff_str);
        return EFF_OBJ_NAME;
    }
}

/* Appends the bytes of s to the line, as a JSON-ish quoted string when
 * they are not a value's text (values are JSON already). */
static size_t fmt_str(char *b, size_t len, size_t n, eff_str s, int raw,
                      size_t max)
{
    size_t shown = s.n < max ? s.n : max;

    if (n >= len)
        return n;
    n += (size_t)snprintf(b + n, len - n, raw ? "" : "\"");
    for (size_t i = 0; i < shown && n + 5 < len; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c < 0x20 || c == 0x7f || (!raw && (c == '"' || c == '\\')))
            n += (size_t)snprintf(b + n, len - n, "\\x%02x", c);
        else
            b[n++] = (char)c;
    }
    if (n < len)
        n += (size_t)snprintf(b + n, len - n, "%s%s", shown < s.n ? "..." : "",
                              raw ? "" : "\"");
    if (n < len)
        b[n] = 0;
    return n;
}

size_t eff_format(const eff_rec *r, char *b, size_t len)
{
    size_t n;

    if (!len)
        return 0;
    n = (size_t)snprintf(b, len, "%" PRIu64 " %s%s", r->lsn,
                         eff_type_name(r->type),
                         r->flags & EFF_F_MORE ? "+" : "");
    if (!eff_type_known(r->type))
        return n < len ? n : len - 1;
    for (const eff_field *f = eff_rows[r->type].f;
         f < eff_rows[r->type].f + EFF_MAX_FIELDS && f->kind && n < len; f++) {
        const char *fname = strchr(f->name, '.') + 1;
        n += (size_t)snprintf(b + n, len - n, " %s=", fname);
        if (n >= len)
            break;
        switch (f->kind) {
        case FK_STR: {
            /* Values and requests are JSON texts: shown as they are. */
            int raw = !strcmp(fname, "value") || !strcmp(fname, "request");
            n = fmt_str(b, len, n, *CAT(r, f->off, eff_str), raw, 64);
            break;
        }
        case FK_I64:
            n += (size_t)snprintf(b + n, len - n, "%" PRId64,
                                  *CAT(r, f->off, int64_t));
            break;
        case FK_U32:
            n += (size_t)snprintf(b + n, len - n, "%" PRIu32,
                                  *CAT(r, f->off, uint32_t));
            break;
        default:
            n += (size_t)snprintf(b + n, len - n, "%" PRIu64,
                                  *CAT(r, f->off, uint64_t));
            break;
        }
    }
    return n < len ? n : len - 1;
}
