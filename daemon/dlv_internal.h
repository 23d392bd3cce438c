/*
 * dlv_internal.h - what dlv.c and dlv_tab.c share: the delivery record
 * and the id table's calls.  Only daemon/dlv*.c include it; everyone else
 * uses dlv.h.
 *
 * The files:
 *  dlv.c          the records, their timers, the outcomes, the API
 *  dlv_tab.c      the hash of attempts in flight by id, and the ids
 *  dlv_persist.c  the log records and recovery (needs none of this)
 *
 * The table has no lock of its own: every dlv__tab_* and dlv__id_next
 * call, and every use of dlv__next_id, is under dlv.c's dlv_mu.
 */
#ifndef CHAND_DLV_INTERNAL_H
#define CHAND_DLV_INTERNAL_H

#include "dlv.h"

typedef enum dlv_state {
    DS_TAKEN = 0, /* taken by a receive that has not begun it yet */
    DS_INFLIGHT,  /* in the table, id valid */
    DS_DELAYED,   /* nacked with a delay: the timer requeues it */
    DS_QUEUED,    /* in the runtime's redelivery queue (as meta) */
    DS_DONE,      /* ended; only references keep it */
} dlv_state;

typedef struct dlv {
    struct dlv *hnext;         /* id hash chain */
    struct dlv *lprev, *lnext; /* its channel's list (hchan.dlvs) */
    struct dlv *sprev, *snext; /* its session's bucket (in flight) */
    bool listed, in_sess;
    uint64_t id, seq, sid;
    uint32_t attempts;
    dlv_state st;
    int refs;
    obj *o;   /* retained */
    hval val; /* the value, owned (counted in max_memory as hvals are);
               * the channel holds its own while the value is requeued */
    int64_t wait_ns, due;
    rt_timer *t;
    char *reason; /* the last nack/term reason, or NULL */
} dlv;

/* The next id to issue, 0 until the first; dlv.c's restore of an attempt
 * in flight raises it above the predecessor's ids. */
extern uint64_t dlv__next_id;

/* Adds d under its id: 0, or -1 (memory). */
int dlv__tab_add(dlv *d);
/* Gives d a new id and adds it.  0 or -1 (memory). */
int dlv__tab_add_id(dlv *d);
dlv *dlv__tab_find(uint64_t id);
void dlv__tab_del(dlv *d);
uint64_t dlv__id_next(void);

#endif
