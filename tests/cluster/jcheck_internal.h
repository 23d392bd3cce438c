/*
 * jcheck_internal.h - what the two checkers of tests/cluster (jcheck.c,
 * jcheck_ack.c) share: a growable array of records, and the way a
 * violation is reported.
 */
#ifndef CHAND_JCHECK_INTERNAL_H
#define CHAND_JCHECK_INTERNAL_H

#include <stddef.h>

/* A growable array of n elements of size sz (set sz; the rest zero). */
typedef struct jc_vec {
    void *p;
    size_t n, cap, sz;
} jc_vec;

/* Appends a copy of *e to v; returns 0, or -1 when out of memory (then
 * v is unchanged). */
int jc__vec_push(jc_vec *v, const void *e);

/* Prints the first few violations of a kind to report (a FILE *, may be
 * NULL), then only counts them in kind_count. */
#define JC_SAY(kind_count, ...)                                                \
    do {                                                                       \
        if (report && (kind_count) < 5)                                        \
            fprintf(report, __VA_ARGS__);                                      \
        (kind_count)++;                                                        \
    } while (0)

#endif /* CHAND_JCHECK_INTERNAL_H */
