/*
 * answer.h - writing a success answer's line straight to text (answer.c),
 * for the daemon's hot path: no envelope or result object is built.
 */
#ifndef CHAND_ANSWER_H
#define CHAND_ANSWER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "jfast.h"

/* A success answer's result.  With k0 and k1 NULL, v1 is the whole result
 * (NULL: {}).  Else an object: "k0": n0 first when k0 is set; then, when
 * k1 is set, "k1": n1 (is_int), or the t1n bytes of JSON text at t1 (t1
 * set), or v1 (NULL: null); then "k2": b2 when k2 is set; then the
 * delivery when dlv is set (only with k1).  Keys are plain
 * ASCII names, written as they are.  Every pointer is borrowed. */
typedef struct proto_res {
    const char *k0;
    const char *k1, *k2;
    const json_t *v1;
    const char *t1;
    size_t t1n;
    int64_t n0, n1;
    bool is_int, b2;
    /* Acknowledged receives: then "delivery":{"id":did,"attempt":datt}
     * last. */
    bool dlv;
    uint64_t did;
    uint32_t datt;
} proto_res;

/* Appends {"jsonrpc":"2.0","id":ID,"result":RESULT}\n to b (id borrowed;
 * NULL writes null): the bytes of proto_dump_line(proto_result(id,
 * result)).  Returns 0, or -1 when out of memory. */
int proto_res_line(jfast_buf *b, const json_t *id, const proto_res *d);
/* Returns a new value of d's result (NULL: when k0 and k1 are NULL and
 * v1 is NULL, or out of memory), for answers built as values (batches,
 * detached requests). */
json_t *proto_res_json(const proto_res *d);

#endif /* CHAND_ANSWER_H */
