/*
 * effect.h - the durability records: what the server did, never what a
 * client asked.  The server is a deterministic state machine fed by these
 * records: replaying them on an empty server gives the same state (that is
 * recovery, daemon/wal.h), and the same bytes are meant to become the
 * entries of a replicated log (issue 19: the leader decides, logs the
 * effect, every node applies it).
 *
 * Record frame (all integers little-endian):
 *
 *     u32 len      bytes of the body that follows the 8-byte frame header
 *     u32 crc      CRC-32C (crc32c.h) of the 4 len bytes, then the body
 *     body:
 *       u16 type   EFF_* below; numbers are never reused
 *       u8  ver    layout version of this type (1); informational
 *       u8  flags  EFF_F_MORE: the next record belongs to the same effect
 *                  (a group, applied all or nothing); other bits are
 *                  refused
 *       u64 lsn    log sequence number (in a snapshot: the object's LSN)
 *       fields     the type's fields, in the order of the table in
 *                  effect.c: integers as LEB128 varints (signed ones
 *                  zigzag-coded), strings as a varint length + bytes
 *
 * Compatibility rules, so that old logs stay readable:
 *  - a new kind of record gets a new type number;
 *  - a type may gain fields only at the end of its list; a decoder gives
 *    missing trailing fields the value 0 / "" and skips trailing bytes it
 *    does not know (so an older chand reads a newer record of a known type);
 *  - a type number the decoder does not know is refused (-ENOTSUP: "written
 *    by a newer chand"), never skipped: a state machine cannot apply half
 *    of its input.
 *
 * Decoding trusts no length or count: every length is checked against the
 * bytes that remain, so bad input gives a negative code, never a crash or
 * an over-read.  Decoded strings borrow from the input buffer.
 *
 * As raft entries (issue 19): one entry is one effect, i.e. the frames of
 * one group (EFF_F_MORE) back to back, CRC included, so a follower checks
 * what it applies.  The lsn field then carries the raft index of the
 * entry's records (or stays the leader's counter: apply never reads it
 * except to compare with a snapshot's object LSNs, which must use the
 * same numbering).  Deciding stays on the leader; an effect never asks
 * the applier for a choice (no "pop any", no "fire if due").
 *
 * Values (pushed, stored, once, delivery) are JSON texts, compact, as the
 * daemon holds them (daemon/hval.h); the codec does not parse them.
 * Deadlines are absolute wall-clock milliseconds (CLOCK_REALTIME), so a
 * restart or a failover keeps the time left.
 */
#ifndef CHAND_EFFECT_H
#define CHAND_EFFECT_H

#include <stddef.h>
#include <stdint.h>

/* Frame header bytes (len + crc) and the fixed body prefix. */
#define EFF_FRAME_HDR 8
#define EFF_BODY_HDR 12
/* The largest body accepted: a value of max_value's ceiling (1 GiB) plus
 * room for the names.  Anything longer is damage. */
#define EFF_MAX_BODY ((1u << 30) + (1u << 20))
/* Layout version written in each record. */
#define EFF_VERSION 1

typedef enum eff_type {
    EFF_NONE = 0,
    EFF_CHAN_MAKE = 1,     /* make: name, cap, elem, max_deliver, dead_letter */
    EFF_CHAN_PUSH = 2,     /* push: one value onto the buffer's tail */
    EFF_CHAN_POP = 3,      /* pop: count values off the buffer's head */
    EFF_CHAN_CLOSE = 4,    /* obj */
    EFF_DROP = 5,          /* obj: any object by name */
    EFF_MAP_STORE = 6,     /* map: key, value */
    EFF_MAP_DELETE = 7,    /* map: key */
    EFF_MAP_CLEAR = 8,     /* obj */
    EFF_ATOMIC_SET = 9,    /* num: the resulting value */
    EFF_WG_SET = 10,       /* num: the resulting counter */
    EFF_ONCE_DONE = 11,    /* once: has_value, value */
    EFF_HOLD_GRANT = 12,   /* hold */
    EFF_HOLD_RENEW = 13,   /* hold: the new deadline */
    EFF_HOLD_RELEASE = 14, /* hold: name, kind, token */
    EFF_TIMER_ADD = 15,    /* timer */
    EFF_TIMER_FIRE = 16,   /* timer: id, next deadline (ticker) or 0 */
    EFF_TIMER_STOP = 17,   /* timer: id */
    EFF_TOKEN_EPOCH = 18,  /* epoch */
    EFF_DLV_INFLIGHT = 19, /* dlv: name, id, attempt, deadline_ms, value,
                              prev_id */
    EFF_DLV_ACK = 20,      /* dlv: name, id */
    EFF_DLV_REDELIVER = 21, /* dlv: name, id, deadline_ms, reason */
    EFF_DLV_TOUCH = 22,     /* dlv: name, id, deadline_ms */
    EFF_DLV_DEAD = 23,      /* dlv: name, id, reason */
    EFF_SNAP_BEGIN = 64,    /* snap: start_lsn (first record of a snapshot) */
    EFF_SNAP_END = 65,      /* snap: count of records before it */
    EFF_TYPE_MAX = 66,
} eff_type;

/* eff_rec.flags: this record and the next are one effect (a group): a
 * delivery is a pop and an in-flight record, a timer's fire is the fire
 * and the push of its value, a dead letter the end of a delivery and a
 * push.  Recovery applies a group only when its last record (without the
 * flag) is whole, so a torn tail never keeps half an effect.  Set by
 * wal_append_group(), never by hand. */
#define EFF_F_MORE 0x01

/* Hold kinds (eff_rec.u.hold.kind). */
enum { EFF_HOLD_MUTEX = 0, EFF_HOLD_READ = 1, EFF_HOLD_WRITE = 2 };
/* Timer kinds (eff_rec.u.timer.kind). */
enum { EFF_TIMER_AFTER = 0, EFF_TIMER_TICKER = 1, EFF_TIMER_AFTERFUNC = 2 };

/* A byte string; borrowed (from the caller when encoding, from the input
 * buffer when decoded).  p may be NULL when n is 0. */
typedef struct eff_str {
    const char *p;
    size_t n;
} eff_str;

/* One record.  type selects the member of u; fields a type does not list
 * are not encoded and decode as 0. */
typedef struct eff_rec {
    uint16_t type;
    uint8_t ver;
    uint8_t flags; /* EFF_F_MORE */
    uint64_t lsn;
    union {
        struct { /* EFF_CHAN_MAKE */
            eff_str name;
            uint64_t cap;
            eff_str elem;         /* element type, "" for any */
            uint32_t max_deliver; /* issue 18; 0: unlimited */
            eff_str dead_letter;  /* issue 18; "" for none */
        } make;
        struct { /* EFF_CHAN_PUSH */
            eff_str name;
            eff_str value;
        } push;
        struct { /* EFF_CHAN_POP */
            eff_str name;
            uint64_t count;
            /* For count 1: 2^32 + the CRC-32C of the value taken, which
             * the applier checks against the head it pops (a node whose
             * queue drifted from the log says so).  0: not checked (an
             * older record). */
            uint64_t check;
        } pop;
        struct { /* EFF_CHAN_CLOSE, EFF_DROP, EFF_MAP_CLEAR */
            eff_str name;
        } obj;
        struct { /* EFF_MAP_STORE, EFF_MAP_DELETE */
            eff_str name;
            eff_str key;
            eff_str value;
        } map;
        struct { /* EFF_ATOMIC_SET, EFF_WG_SET */
            eff_str name;
            int64_t v;
        } num;
        struct { /* EFF_ONCE_DONE */
            eff_str name;
            uint32_t has_value;
            eff_str value;
        } once;
        /* A hold is named by (name, token): an rwmutex has one per
         * reader. */
        struct { /* EFF_HOLD_GRANT, EFF_HOLD_RENEW, EFF_HOLD_RELEASE */
            eff_str name;
            uint32_t kind;
            uint64_t token;
            int64_t deadline_ms; /* wall clock; the lease's end */
        } hold;
        struct { /* EFF_TIMER_ADD, EFF_TIMER_FIRE, EFF_TIMER_STOP */
            uint64_t id;
            uint32_t kind;
            int64_t deadline_ms; /* wall clock */
            int64_t period_ms;   /* ticker */
            eff_str target;      /* the channel it sends on */
            eff_str request;     /* afterfunc: the request line to run */
        } timer;
        struct { /* EFF_TOKEN_EPOCH */
            uint64_t epoch;
        } epoch;
        /* Deliveries (issue 18; dlv_persist.c): id is the value's
         * delivery key in its channel (stable across its attempts), not
         * the per-attempt id answers carry.  dlv_inflight with prev_id 0
         * makes a live delivery of value (after a chan_pop in the same
         * group when it left the buffer; alone for a sender's hand-off
         * or in a snapshot); with prev_id set it records an attempt:
         * prev_id is then the attempt's id as answers name it, and
         * deadline_ms its deadline (dlv_touch moves it).  dlv_redeliver
         * puts it back (keeps the reason), dlv_ack and dlv_dead end it.
         * What is live at the end of a restart's recovery is requeued; a
         * cluster's new leader keeps what was in flight in flight. */
        struct {          /* EFF_DLV_* */
            eff_str name; /* the channel */
            uint64_t id;
            uint32_t attempt;
            int64_t deadline_ms; /* wall clock: the ack deadline; for
                                    redeliver, not before (nack delay) */
            eff_str value;
            eff_str reason;   /* nack or term reason */
            uint64_t prev_id; /* inflight: the delivery it retries, or 0
                                 when the value leaves the buffer */
        } dlv;
        struct { /* EFF_SNAP_BEGIN, EFF_SNAP_END */
            uint64_t start_lsn;
            uint64_t count;
        } snap;
    } u;
} eff_rec;

/* What a record applies to, for the snapshot filter (wal.c). */
typedef enum eff_objkind {
    EFF_OBJ_NONE = 0, /* server-wide (token epoch) or snapshot framing */
    EFF_OBJ_NAME,     /* a named object: *name set */
    EFF_OBJ_TIMER,    /* a timer: *id set */
} eff_objkind;

/* Returns the name of a type ("chan_push"), or "unknown". */
const char *eff_type_name(unsigned type);

/* Returns 1 if type is one this build knows, else 0. */
int eff_type_known(unsigned type);

/* Returns the bytes eff_encode writes for r (frame included), or 0 when r
 * cannot be encoded (unknown type, or a body above EFF_MAX_BODY). */
size_t eff_size(const eff_rec *r);

/* Writes r (borrowed) at p, which has eff_size(r) bytes; returns that
 * size.  r->lsn is written as is. */
size_t eff_encode(const eff_rec *r, uint8_t *p);

/* eff_encode with the LSN and flags given (r's are ignored) and size,
 * eff_size(r) (nonzero), already known: an appender sizes each record
 * once, outside its lock, and need not copy it to stamp it. */
size_t eff_encode_as(const eff_rec *r, uint64_t lsn, uint8_t flags, size_t size,
                     uint8_t *p);

/* Decodes the frame at p[0..n): returns 0 with *r (strings borrowed from
 * p) and *used set; -EAGAIN when the frame runs past n (a torn tail, or
 * read more); -EBADMSG when len is out of range or the CRC differs;
 * -EINVAL when the body is malformed; -ENOTSUP for an unknown type or
 * flags.  Never reads outside p[0..n). */
int eff_decode(const uint8_t *p, size_t n, eff_rec *r, size_t *used);

/* Returns what r applies to, with *name (borrowed from r) or *id set. */
eff_objkind eff_object(const eff_rec *r, eff_str *name, uint64_t *id);

/* Writes a one-line description of r into b (NUL-terminated, cut to
 * len): "12 chan_push name="jobs" value={"n":1}" (a '+' after the type
 * marks EFF_F_MORE; strings longer than 64 bytes are cut with "...").
 * Returns the length written.  For logs and dumps. */
size_t eff_format(const eff_rec *r, char *b, size_t len);

/* Returns an eff_str over a NUL-terminated string (borrowed). */
eff_str eff_s(const char *s);

#endif /* CHAND_EFFECT_H */
