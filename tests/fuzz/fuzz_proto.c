/*
 * fuzz_proto.c - libFuzzer harness for the request parser and validator:
 * proto_parse_line, then proto_check_request on the request (or on each
 * member of a batch), then the answer builders, and proto_answer_read (the
 * client's side of the same bytes).  Nothing here may crash, leak, hang or
 * trip ASan/UBSan on any input.  And differentially: whatever the
 * single-pass proto_scan_request accepts, the general path must accept as
 * the same request (fuzz_scan_agrees aborts otherwise).
 *
 * Built by `make fuzz` with clang -fsanitize=fuzzer,address,undefined; the
 * same function is replayed over tests/fuzz/regressions/proto/ by
 * tests/unit/test_fuzz_regressions.c (gcc, no libFuzzer).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jfast.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Same dump and same type: json_equal alone takes 1 and 1.0 as unequal
 * but not, say, key order into account. */
static bool fuzz_same_value(const json_t *a, const json_t *b)
{
    char *da, *db;
    bool same;

    if (!a || !b)
        return a == b;
    if (json_typeof(a) != json_typeof(b) || !json_equal(a, b))
        return false;
    da = json_dumps(a, JSON_COMPACT | JSON_ENCODE_ANY);
    db = json_dumps(b, JSON_COMPACT | JSON_ENCODE_ANY);
    same = da && db && strcmp(da, db) == 0;
    free(da);
    free(db);
    return same;
}

/* Returns whether proto_scan_request accepted s; aborts when it accepted
 * something the general path rejects or reads differently. */
static bool fuzz_scan_agrees(const char *s, size_t n, const proto_limits *lim)
{
    proto_request fast, slow;
    proto_error err;
    json_t *msg;

    static proto_names *names;
    static unsigned turn;

    /* Every other input with a names cache, so that its strings are held
     * to the same agreement (it is kept across inputs, as the daemon's). */
    if (!names)
        names = proto_names_new();
    if (!proto_scan_request_names(s, n, lim, turn++ % 2 ? names : NULL, &fast))
        return false;
    msg = proto_parse_line(s, n, lim, &err);
    if (!msg || json_is_array(msg) ||
        proto_check_request(msg, &slow, &err) != 0)
        abort();
    if (fast.method != slow.method || fast.timeout_ms != slow.timeout_ms ||
        !fast.owned || slow.owned || fast.params ||
        !fuzz_same_value(fast.id, slow.id))
        abort();
    for (int i = 0; i < PROTO_MAX_PARAMS; i++) {
        json_t *mine = fast.args[i];
        bool same;
        if (fast.cases && fast.method->params[i].type == PROTO_T_CASES) {
            /* select's cases, read into proto_case: the same cases as
             * the general path's array of objects */
            if (mine)
                abort();
            mine = json_array();
            for (size_t c = 0; c < fast.ncases; c++) {
                proto_case *k = &fast.cases[c];
                json_t *v = k->value ? json_incref(k->value) : NULL;
                if (k->text.p) {
                    /* the text is the compact dump of the general
                     * path's value, byte for byte */
                    json_t *sv = json_object_get(
                        json_array_get(slow.args[i], c), "value");
                    jfast_buf d = {0};
                    if (v || !sv || jfast_dump(&d, sv) != 0 ||
                        d.len != k->text.n ||
                        memcmp(d.p, k->text.p, d.len) != 0)
                        abort();
                    free(d.p);
                    v = proto_text_json(k->text);
                }
                json_array_append_new(
                    mine,
                    v ? json_pack("{s:O, s:o}", "send", k->name, "value", v)
                      : json_pack("{s:O}", "recv", k->name));
            }
            same = fuzz_same_value(mine, slow.args[i]);
            json_decref(mine);
        } else if (fast.text[i].p) {
            /* an "any" value left as text: the same value, and its text
             * is the compact dump's byte for byte (a channel answers
             * with it as it is) */
            jfast_buf d = {0};
            if (mine || jfast_dump(&d, slow.args[i]) != 0 ||
                d.len != fast.text[i].n ||
                memcmp(d.p, fast.text[i].p, d.len) != 0)
                abort();
            free(d.p);
            mine = proto_text_json(fast.text[i]);
            same = fuzz_same_value(mine, slow.args[i]);
            json_decref(mine);
        } else {
            same = fuzz_same_value(mine, slow.args[i]);
        }
        if (!same)
            abort();
    }
    json_decref(msg);
    proto_request_clear(&fast);
    return true;
}

static void fuzz_one_request(json_t *msg)
{
    proto_request req;
    proto_error err;
    json_t *ans;
    size_t len;
    char *line;

    if (proto_check_request(msg, &req, &err) == 0)
        ans = proto_result(req.id, NULL);
    else
        ans = proto_error_answer_from(req.id, &err);
    if (!ans)
        return;
    line = proto_dump_line(ans, &len);
    /* The answer must read back as a valid answer (libchand's reader
     * takes integer or null ids only: those are the ids it sends). */
    if (line && (!req.id || json_is_integer(req.id) || json_is_null(req.id))) {
        proto_answer pa;
        json_t *back = json_loadb(line, len, 0, NULL);
        if (!back || proto_answer_read(back, &pa, &err) != 0)
            abort();
        json_decref(back);
    }
    free(line);
    json_decref(ans);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Small limits, so that the limit paths are reached too. */
    proto_limits lim = {4096, 16};
    proto_error err;
    proto_answer pa;
    json_t *v;

    (void)fuzz_scan_agrees((const char *)data, size, &lim);
    v = proto_parse_line((const char *)data, size, &lim, &err);
    if (!v)
        return 0;
    if (json_is_array(v)) {
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m) fuzz_one_request(m);
    } else {
        fuzz_one_request(v);
    }
    /* The client reads the same bytes as if they were an answer. */
    (void)proto_answer_read(v, &pa, &err);
    json_decref(v);
    return 0;
}
