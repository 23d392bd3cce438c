/*
 * answer.c - a success answer's line written straight to text: the bytes
 * proto_dump_line(proto_result(id, result)) would give, without building
 * and freeing an envelope and a result object (a third of a simple
 * request's cost in the daemon), or the result as a value for the paths
 * that need one.  The contract is in answer.h.
 */
#include "answer.h"

#include <string.h>

/* Returns a new value parsed from the n bytes of compact JSON at t (the
 * text of a value that was dumped valid), or NULL (memory). */
static json_t *proto_res_parse(const char *t, size_t n)
{
    json_t *j = jfast_parse(t, n);

    /* jansson reads what jfast declines (reals, long numbers). */
    return j ? j : json_loadb(t, n, JSON_DECODE_ANY, NULL);
}

/* Appends the result object of d to b.  Returns 0 or -1 (memory). */
static int proto_res_text(jfast_buf *b, const proto_res *d)
{
    if (!d->k0 && !d->k1)
        return d->v1 ? jfast_dump(b, d->v1) : jfast_put(b, "{}", 2);
    if (d->k0 &&
        (jfast_put(b, "{\"", 2) || jfast_put(b, d->k0, strlen(d->k0)) ||
         jfast_put(b, "\":", 2) || jfast_put_int(b, (json_int_t)d->n0)))
        return -1;
    if (!d->k1)
        return jfast_put(b, "}", 1);
    if (jfast_put(b, d->k0 ? ",\"" : "{\"", 2) ||
        jfast_put(b, d->k1, strlen(d->k1)) || jfast_put(b, "\":", 2))
        return -1;
    if (d->is_int) {
        if (jfast_put_int(b, (json_int_t)d->n1))
            return -1;
    } else if (d->t1) {
        if (jfast_put(b, d->t1, d->t1n))
            return -1;
    } else if (jfast_dump(b, d->v1 ? d->v1 : json_null())) {
        return -1;
    }
    if (d->k2 &&
        (jfast_put(b, ",\"", 2) || jfast_put(b, d->k2, strlen(d->k2)) ||
         jfast_put(b, d->b2 ? "\":true" : "\":false", d->b2 ? 6 : 7)))
        return -1;
    if (d->dlv &&
        (jfast_put(b, ",\"delivery\":{\"id\":", 18) ||
         jfast_put_int(b, (json_int_t)d->did) ||
         jfast_put(b, ",\"attempt\":", 11) ||
         jfast_put_int(b, (json_int_t)d->datt) || jfast_put(b, "}", 1)))
        return -1;
    return jfast_put(b, "}", 1);
}

json_t *proto_res_json(const proto_res *d)
{
    json_t *o;

    if (!d->k0 && !d->k1)
        return d->v1 ? json_incref((json_t *)d->v1) : NULL;
    o = json_object();
    if (!o)
        return NULL;
    if (d->k0)
        json_object_set_new(o, d->k0, json_integer((json_int_t)d->n0));
    if (!d->k1)
        return o;
    json_object_set_new(o, d->k1,
                        d->is_int ? json_integer(d->n1)
                        : d->t1   ? proto_res_parse(d->t1, d->t1n)
                        : d->v1   ? json_incref((json_t *)d->v1)
                                  : json_null());
    if (d->k2)
        json_object_set_new(o, d->k2, json_boolean(d->b2));
    if (d->dlv)
        json_object_set_new(o, "delivery",
                            json_pack("{s:I, s:I}", "id", (json_int_t)d->did,
                                      "attempt", (json_int_t)d->datt));
    return o;
}

int proto_res_line(jfast_buf *b, const json_t *id, const proto_res *d)
{
    static const char head[] = "{\"jsonrpc\":\"2.0\",\"id\":";
    static const char mid[] = ",\"result\":";

    /* Ids are mostly integers: written without the general dump (whose
     * code is a good share of an answer's instruction-cache misses). */
    if (jfast_put(b, head, sizeof head - 1) ||
        (json_is_integer(id) ? jfast_put_int(b, json_integer_value(id))
                             : jfast_dump(b, id ? id : json_null())) ||
        jfast_put(b, mid, sizeof mid - 1) || proto_res_text(b, d) ||
        jfast_put(b, "}\n", 2))
        return -1;
    return 0;
}
