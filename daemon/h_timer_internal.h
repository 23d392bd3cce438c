/*
 * h_timer_internal.h - what h_timer.c (the timer methods, arming and
 * firing) and h_timer_dur.c (their durability: records, snapshot,
 * recovery) share: the timer state and its few operations.
 */
#ifndef CHAND_H_TIMER_INTERNAL_H
#define CHAND_H_TIMER_INTERNAL_H

#include "daemon.h"

typedef struct htimer htimer;

/* One arming: a runtime AfterFunc timer and the state it fires. */
typedef struct harm {
    htimer *ht; /* holds a reference */
    rt_timer *t;
} harm;

struct htimer {
    _Atomic int refs;
    pthread_mutex_t mu;
    bool stopped;        /* by timer.stop, or its owner let go */
    int kind;            /* EFF_TIMER_AFTER, _TICKER, _AFTERFUNC */
    uint64_t id;         /* names it in the log; unique per data_dir */
    int64_t period_ns;   /* ticker: > 0 */
    int64_t deadline_ms; /* wall clock of the pending arming; 0: none */
    uint64_t lsn;        /* of its last record (mu) */
    rt_chan *c;          /* retained; NULL for afterfunc */
    json_t *request;     /* afterfunc's request (owned) */
    char *name;          /* its channel's or afterfunc object's name */
    harm *cur;           /* the pending arming, or NULL */
    int64_t mem;         /* charged to max_memory's count */
};

/* The afterfunc object (timer.afterfunc's name). */
typedef struct hafter {
    obj o;
    htimer *ht;
} hafter;

extern const obj_ops htimer__after_ops;

/* h_timer.c */
/* Returns a new timer state (one reference) on c (retained; NULL for
 * afterfunc) named name (copied), or NULL. */
htimer *htimer__new(rt_chan *c, int kind, int64_t period_ns, const char *name);
/* Drops a reference. */
void htimer__put(htimer *ht);
/* Arms ht for ns from now (ht->mu held).  Returns 0 or -1. */
int htimer__arm(htimer *ht, int64_t ns);
/* The owner lets go (fini of its channel or afterfunc object). */
void htimer__fini(void *arg);
/* Returns the wall clock in ms. */
int64_t htimer__now_ms(void);
/* Charges request (owned from now on) to ht. */
void htimer__set_request(htimer *ht, json_t *request);

/* h_timer_dur.c (all no-ops when not persisting; ht->mu held) */
/* Returns a new timer id. */
uint64_t htimer__next_id(void);
/* Logs ht's arming at ht->deadline_ms (timer_add). */
void htimer__log_add(htimer *ht);
/* Logs timer.stop. */
void htimer__log_stop(htimer *ht);
/* Around a firing's send: the decided timer_fire record (next deadline
 * ht->deadline_ms) goes in with the push the send makes, as one group,
 * or alone when the send pushed nothing. */
void htimer__log_fire_begin(htimer *ht);
void htimer__log_fire_end(htimer *ht);
/* obj_ops.snap's part for a timer: emits its timer_add.  Returns 0 or
 * -1. */
int htimer__snap(htimer *ht, void *s);

#endif /* CHAND_H_TIMER_INTERNAL_H */
