/*
 * dispatch_internal.h - the calls between the dispatch files.  Only
 * dispatch.c, dreq.c and dispatch_detached.c include it; everyone else
 * uses daemon.h's Requests section.
 *
 * The files:
 *  dispatch.c           the handler table, batches, from a line to handlers
 *  dreq.c               answers, failures, parameters, dreq_obj
 *  dispatch_detached.c  detached requests (go, timer.afterfunc)
 */
#ifndef CHAND_DISPATCH_INTERNAL_H
#define CHAND_DISPATCH_INTERNAL_H

#include "daemon.h"

/* dispatch.c */

/* The handler of each method, by method id (disp_init fills it). */
extern disp_handler *disp__tab;
/* Stores answer (stolen, may be NULL) into b's slot; the last one sends
 * the array.  slot == SIZE_MAX only drops the dispatcher's hold. */
void dbatch__put(dbatch *b, size_t slot, json_t *answer, gback *gb);
/* Returns a new request of s (retained; NULL: detached), or NULL. */
dreq *dreq__new(sess *s);
/* Takes req's id, method, deadline and arguments into r (as new
 * references) and clears req. */
void dreq__set(dreq *r, proto_request *req);

/* dreq.c */

/* Frees r and what it holds. */
void dreq__free(dreq *r);
/* Sends answer (stolen) for r and frees r. */
void dreq__finish(dreq *r, json_t *answer, gback *gb);
/* Answers r with the error e. */
void dreq__fail_code(dreq *r, const proto_error *e);

#endif
