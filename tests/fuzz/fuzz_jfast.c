/*
 * fuzz_jfast.c - differential libFuzzer harness for proto/jfast.c against
 * jansson, which stays the reference:
 *
 *  - the input as JSON text: when jfast_parse accepts it, json_loadb
 *    (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY) must accept it too and both
 *    trees must be json_equal and dump to the same bytes; when json_loadb
 *    refuses it, jfast_parse must have declined;
 *  - jansson's tree, the input as a string value (json_stringn_nocheck: any
 *    bytes, invalid UTF-8 included) and as an object key: jfast_dump must
 *    fail exactly when json_dumpb does and otherwise write the same bytes.
 *
 * Any difference aborts.  Built by `make fuzz`; tests/unit/test_jfast.c
 * replays the seeds in tests/fuzz/corpus/jfast/ through the same function.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jfast.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_JFAST_FLAGS (JSON_COMPACT | JSON_ENCODE_ANY)

/* Aborts unless jfast_dump and json_dumpb agree on v (borrowed). */
static void fuzz_jfast_same_dump(const json_t *v)
{
    jfast_buf b = {0};
    size_t n = json_dumpb(v, NULL, 0, FUZZ_JFAST_FLAGS);
    int rc = jfast_dump(&b, v);
    char *ref;

    if (n == 0) {
        if (rc == 0 || b.len != 0)
            abort();
        free(b.p);
        return;
    }
    if (rc != 0 || b.len != n)
        abort();
    ref = malloc(n);
    if (!ref)
        abort();
    if (json_dumpb(v, ref, n, FUZZ_JFAST_FLAGS) != n ||
        memcmp(ref, b.p, n) != 0)
        abort();
    free(ref);
    free(b.p);
}

/* Returns a new malloc'd buffer holding json_dumpb's text of v, *n set. */
static char *fuzz_jfast_ref_dump(const json_t *v, size_t *n)
{
    char *s;

    *n = json_dumpb(v, NULL, 0, FUZZ_JFAST_FLAGS);
    if (*n == 0)
        abort(); /* a parsed tree always dumps */
    s = malloc(*n);
    if (!s || json_dumpb(v, s, *n, FUZZ_JFAST_FLAGS) != *n)
        abort();
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    json_t *fast = jfast_parse(text, size);
    json_t *ref =
        json_loadb(text, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
    json_t *s, *o;

    if (fast) {
        size_t nf, nr;
        char *df, *dr;
        if (!ref || !json_equal(fast, ref))
            abort();
        df = fuzz_jfast_ref_dump(fast, &nf);
        dr = fuzz_jfast_ref_dump(ref, &nr);
        if (nf != nr || memcmp(df, dr, nf) != 0)
            abort();
        free(df);
        free(dr);
        json_decref(fast);
    }
    if (ref) {
        fuzz_jfast_same_dump(ref);
        json_decref(ref);
    }

    s = json_stringn_nocheck(text, size);
    if (s) {
        fuzz_jfast_same_dump(s);
        o = json_object();
        if (o && json_object_setn_new_nocheck(o, text, size, s) == 0)
            fuzz_jfast_same_dump(o);
        else if (!o)
            json_decref(s);
        json_decref(o);
    }
    return 0;
}
