/*
 * dlv_persist.c - acknowledged deliveries in the durability log: the
 * records dlv.c's changes write (through persist.c's API), and recovery,
 * which gathers the deliveries still live at the log's end and gives them
 * back to their channels, requeued, once the whole log is applied.
 *
 * The records (effect.h's dlv_*) name a delivery by its key in the
 * channel (the runtime's seq, stable across attempts), not by the ids
 * answers carry: those name one attempt of one run, and every delivery
 * live at a restart is redelivered under a new id anyway.
 *   dlv_inflight prev_id 0    a value becomes a delivery (value, attempt
 *                             1); grouped with the chan_pop when it left
 *                             the buffer.  Snapshots write one per live
 *                             delivery, with its attempts and reason, and
 *                             for an attempt in flight its id (prev_id)
 *                             and deadline.
 *   dlv_inflight prev_id=id   a later attempt (attempt, deadline)
 *   dlv_redeliver             requeued, or nacked with a delay (reason)
 *   dlv_ack / dlv_dead        the delivery ended (dead: its reason)
 */
#include "dlv.h"
#include "h_chan_internal.h"
#include "persist.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t dlvp_deadline_ms(int64_t in_ns)
{
    struct timespec ts;
    int64_t ns;

    clock_gettime(CLOCK_REALTIME, &ts);
    ns = (int64_t)ts.tv_nsec + in_ns;
    /* Division truncates: up for a negative ns (overdue), down for a
     * positive one, which a remainder then rounds up. */
    return (int64_t)ts.tv_sec * 1000 + ns / 1000000 + (ns % 1000000 > 0);
}

void dlvp_taken(obj *o, uint64_t seq, const char *text, size_t n, bool from_buf)
{
    eff_rec r[2] = {{.type = EFF_CHAN_POP}, {.type = EFF_DLV_INFLIGHT}};

    if (!persist_on())
        return;
    r[0].u.pop.name = eff_s(o->name);
    r[0].u.pop.count = 1;
    /* As a plain receive's pop: a node whose buffer drifted from the
     * log's (a diverged copy) refuses the group instead of dropping
     * another value than the one the delivery carries. */
    r[0].u.pop.check = hchan__text_check(text, n);
    r[1].u.dlv.name = eff_s(o->name);
    r[1].u.dlv.id = seq;
    r[1].u.dlv.attempt = 1;
    r[1].u.dlv.value = (eff_str){text, n};
    if (from_buf)
        persist_dlv(o, r, 2);
    else
        persist_dlv(o, &r[1], 1);
}

void dlvp_attempt(obj *o, uint64_t seq, uint64_t id, uint32_t attempt,
                  int64_t wait_ms)
{
    eff_rec r = {.type = EFF_DLV_INFLIGHT};

    if (!persist_on())
        return;
    r.u.dlv.name = eff_s(o->name);
    r.u.dlv.id = seq;
    r.u.dlv.prev_id = id; /* the attempt's id, as answers name it */
    r.u.dlv.attempt = attempt;
    r.u.dlv.deadline_ms = dlvp_deadline_ms(wait_ms * 1000000);
    persist_dlv(o, &r, 1);
}

void dlvp_touch(obj *o, uint64_t seq, int64_t wait_ms)
{
    eff_rec r = {.type = EFF_DLV_TOUCH};

    if (!persist_on())
        return;
    r.u.dlv.name = eff_s(o->name);
    r.u.dlv.id = seq;
    r.u.dlv.deadline_ms = dlvp_deadline_ms(wait_ms * 1000000);
    persist_dlv(o, &r, 1);
}

void dlvp_redeliver(obj *o, uint64_t seq, const char *reason, int64_t delay_ms)
{
    eff_rec r = {.type = EFF_DLV_REDELIVER};

    if (!persist_on())
        return;
    r.u.dlv.name = eff_s(o->name);
    r.u.dlv.id = seq;
    r.u.dlv.reason = eff_s(reason ? reason : "");
    r.u.dlv.deadline_ms =
        delay_ms > 0 ? dlvp_deadline_ms(delay_ms * 1000000) : 0;
    persist_dlv(o, &r, 1);
}

void dlvp_end(obj *o, uint64_t seq, bool dead, const char *reason)
{
    eff_rec r = {.type = dead ? EFF_DLV_DEAD : EFF_DLV_ACK};

    if (!persist_on())
        return;
    r.u.dlv.name = eff_s(o->name);
    r.u.dlv.id = seq;
    r.u.dlv.reason = eff_s(reason ? reason : "");
    persist_dlv(o, &r, 1);
}

/* ------------------------------------------------------------------ */
/* Recovery                                                           */
/* ------------------------------------------------------------------ */

/* The deliveries live so far in the log, in an array: recovery's, or in a
 * cluster the raft thread's applies and a new leader's restore, always
 * under the FSM lock (persist_repl.c).  Few are live at a time, so a
 * linear search is enough. */
typedef struct rdlv {
    char *name, *text, *reason;
    size_t tn;
    uint64_t seq;
    uint64_t id;         /* in flight at the log's end: its attempt's id */
    int64_t deadline_ms; /* ... and when it expires (wall clock) */
    uint32_t attempts;
} rdlv;

static rdlv *rd;
static size_t rd_n, rd_cap;

static void rd_clear(rdlv *e)
{
    free(e->name);
    free(e->text);
    free(e->reason);
}

static rdlv *rd_find(const char *name, uint64_t seq)
{
    for (size_t i = 0; i < rd_n; i++)
        if (rd[i].seq == seq && strcmp(rd[i].name, name) == 0)
            return &rd[i];
    return NULL;
}

static void rd_del(rdlv *e)
{
    rd_clear(e);
    *e = rd[--rd_n];
}

static char *dup_n(const char *p, size_t n)
{
    char *s = malloc(n + 1);

    if (s) {
        if (n)
            memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static int rd_reason(rdlv *e, eff_str r)
{
    char *s;

    if (!r.n)
        return 0;
    if (!(s = dup_n(r.p, r.n)))
        return -1;
    free(e->reason);
    e->reason = s;
    return 0;
}

int dlv__restore_rec(const char *name, const eff_rec *r)
{
    rdlv *e = rd_find(name, r->u.dlv.id);

    switch (r->type) {
    case EFF_DLV_INFLIGHT:
        /* A later attempt; a record without a value cannot be a new
         * delivery either (a value is never empty JSON). */
        if ((r->u.dlv.prev_id || !r->u.dlv.value.n) && e) {
            e->attempts = r->u.dlv.attempt;
            e->id = r->u.dlv.prev_id;
            e->deadline_ms = r->u.dlv.deadline_ms;
            return 0;
        }
        if (!r->u.dlv.value.n)
            return 0;
        if (e && (e->tn != r->u.dlv.value.n ||
                  memcmp(e->text, r->u.dlv.value.p, e->tn) != 0)) {
            /* A live key given to another value: the node that wrote
             * this did not know the first delivery (its state had
             * drifted), and replacing it would lose that value without a
             * word.  In a cluster this node stops applying, as for a pop
             * of the wrong value. */
            log_error("state diverged from the log: chan \"%s\" delivery "
                      "%llu begins again with another value while live "
                      "(value %.*s)",
                      name, (unsigned long long)e->seq,
                      (int)(e->tn > 64 ? 64 : e->tn), e->text);
            if (persist_clustered())
                return -1;
        }
        if (e) /* the snapshot's copy and the log's: the same delivery */
            rd_del(e);
        if (rd_n == rd_cap) {
            size_t cap = rd_cap ? 2 * rd_cap : 64;
            rdlv *g = realloc(rd, cap * sizeof *g);
            if (!g)
                return -1;
            rd = g;
            rd_cap = cap;
        }
        e = &rd[rd_n];
        memset(e, 0, sizeof *e);
        e->seq = r->u.dlv.id;
        e->attempts = r->u.dlv.attempt;
        e->id = r->u.dlv.prev_id; /* a snapshot's attempt in flight */
        e->deadline_ms = r->u.dlv.deadline_ms;
        e->name = dup_n(name, strlen(name));
        e->text = dup_n(r->u.dlv.value.p, r->u.dlv.value.n);
        e->tn = r->u.dlv.value.n;
        if (!e->name || !e->text || rd_reason(e, r->u.dlv.reason) != 0) {
            rd_clear(e);
            return -1;
        }
        rd_n++;
        return 0;
    case EFF_DLV_REDELIVER:
        if (e)
            e->id = 0; /* back in the channel */
        return e ? rd_reason(e, r->u.dlv.reason) : 0;
    case EFF_DLV_TOUCH:
        if (e)
            e->deadline_ms = r->u.dlv.deadline_ms;
        return 0;
    case EFF_DLV_ACK:
    case EFF_DLV_DEAD:
        if (e)
            rd_del(e);
        return 0;
    default:
        return 0;
    }
}

void dlv__restore_drop(const char *name)
{
    for (size_t i = 0; i < rd_n;)
        if (strcmp(rd[i].name, name) == 0)
            rd_del(&rd[i]);
        else
            i++;
}

size_t dlv__restore_pending(void)
{
    return rd_n;
}

/* keep: a cluster's new leader keeps what was in flight in flight, with
 * its id and deadline; a restart requeues everything (its sessions are
 * gone). */
static void restore_all(bool keep)
{
    size_t back = 0, kept = 0, lost = 0;

    for (size_t i = 0; i < rd_n; i++) {
        reg_found f;
        rdlv *e = &rd[i];
        if (reg_lookup(e->name, &hchan_ops, false, NULL, &f) != REG_OK) {
            lost++;
        } else {
            int rc;
            if (keep && e->id) {
                rc = dlv_restore_inflight(f.o, e->seq, e->id, e->attempts,
                                          e->deadline_ms, e->text, e->tn,
                                          e->reason);
                kept += rc == 0;
            } else {
                rc = dlv_restore(f.o, e->seq, e->attempts, e->text, e->tn,
                                 e->reason);
                back += rc == 0;
            }
            lost += rc != 0;
            obj_release(f.o);
        }
        rd_clear(e);
    }
    if (back || kept)
        log_info("recovered %zu deliveries in flight: %zu requeued for "
                 "redelivery, %zu kept in flight to their deadline",
                 back + kept, back, kept);
    if (lost) /* their values are gone: never silent */
        log_warn("%zu deliveries in flight could not be restored (their "
                 "channel is gone, or out of memory): their values are "
                 "lost",
                 lost);
    free(rd);
    rd = NULL;
    rd_n = rd_cap = 0;
}

void dlv__restore_finish(void)
{
    restore_all(false);
}

void dlv__restore_leader(void)
{
    restore_all(true);
}
