/*
 * h_chan_internal.h - what the h_chan*.c files share: struct hchan and the
 * hchan__ calls between the files.  Only daemon/h_chan*.c include it;
 * everyone else uses daemon.h's h_chan section.
 *
 * The files:
 *  h_chan_obj.c     the channel object: ops, element types, recovery's
 *                   builders, snapshot, make
 *  h_chan.c         send, recv, close, len
 *  h_chan_select.c  select
 *  h_ack.c          recv with ack, ack, nack, touch, term (dlv.c keeps
 *                   the deliveries and includes this header too)
 */
#ifndef CHAND_H_CHAN_INTERNAL_H
#define CHAND_H_CHAN_INTERNAL_H

#include "daemon.h"

typedef enum hchan_elem {
    HE_ANY = 0,
    HE_STRING,
    HE_NUMBER,
    HE_BOOL,
    HE_OBJECT,
    HE_ARRAY,
} hchan_elem;

typedef struct hchan {
    obj o;
    rt_chan *c;
    size_t cap;
    hchan_elem elem;
    void *timer; /* timer.after/ticker state, or NULL */
    void (*timer_fini)(void *timer);
    uint32_t max_deliver; /* 0: unlimited */
    char *dead_letter;    /* owned; NULL: none */
    struct dlv *dlvs;     /* dlv.c's live deliveries of it (dlv_mu) */
} hchan;

/* Returns true when h carries values of JSON type t. */
bool hchan__type_ok(const hchan *h, json_type t);
/* Returns the JSON type of a value given as v, else as the scanner's text
 * t (a plain string or an integer). */
json_type hchan__text_type(const json_t *v, proto_text t);
/* Fails r: o's channel does not carry the value's type. */
void hchan__fail_type(dreq *r, obj *o);
/* Fails r: o was dropped while r waited. */
void hchan__fail_dropped(dreq *r, obj *o);

/* h_ack.c: fails r (misuse) and returns true when nobody could ack what
 * it receives (a notification, a detached request). */
bool hchan__ack_refused(dreq *r);
/* Returns the ack_wait_ms in v (NULL: the default), or -1 after failing
 * r with invalid params. */
int64_t hchan__ack_wait(dreq *r, const json_t *v);
/* recv with ack on o (the reference is the callee's). */
void hchan__recv_ack(dreq *r, obj *o);
/* Answers an acknowledged receive of v (stolen) taken as hold: starts the
 * delivery, then {index?, value, ok, delivery}. */
void hchan__answer_ack(dreq *r, obj *o, int index, hval v,
                       const rt_chan_hold *hold, int64_t wait_ms);

#endif
