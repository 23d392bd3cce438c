/*
 * test_hval.c - unit tests of channel values kept as text (daemon/hval.c):
 * the text is byte for byte jfast_dump's for every kind of value, short
 * texts live in the slot and long ones in a blob, the text parses back to
 * an equal value, the type read from the text is the value's, and
 * integers and given texts are kept as they are.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "hval.h"
#include "jfast.h"

/* Checks one value: text, placement, round trip and type. */
static void check_value(json_t *v)
{
    jfast_buf want = {0};
    hval h;
    size_t n;
    const char *t;
    json_t *back;

    assert_non_null(v);
    assert_int_equal(jfast_dump(&want, v), 0);
    assert_int_equal(hval_from_json(v, &h), 0);
    t = hval_text(&h, &n);
    assert_int_equal(n, want.len);
    assert_memory_equal(t, want.p, n);
    /* Short texts in the slot, long ones out of it. */
    assert_int_equal((int)(h.p & 1), n <= HVAL_INLINE_MAX);
    back = hval_json(&h);
    assert_non_null(back);
    assert_true(json_equal(back, v));
    if (json_is_real(v))
        assert_int_equal(hval_type(&h), JSON_REAL);
    else
        assert_int_equal(hval_type(&h), json_typeof(v));
    json_decref(back);
    hval_free(h);
    free(want.p);
    json_decref(v);
}

static void test_scalars(void **state)
{
    (void)state;
    check_value(json_true());
    check_value(json_false());
    check_value(json_null());
    check_value(json_integer(0));
    check_value(json_integer(-1));
    check_value(json_integer(9999999));  /* 7 bytes: inline */
    check_value(json_integer(10000000)); /* 8 bytes: a blob */
    check_value(json_integer(-999999));
    check_value(json_integer(-1000000));
    check_value(json_integer(INT64_MAX));
    check_value(json_integer(INT64_MIN));
    check_value(json_real(1.5));
    check_value(json_real(-0.0));
    check_value(json_real(1e300));
    check_value(json_real(0.1));
}

static void test_strings(void **state)
{
    static const char *const s[] = {
        "",
        "a",
        "abc",
        "abcde",
        "abcdef",
        "abcdefghijklmnop",
        "a\"b",
        "\\",
        "a\nb",
        "\t",
        "/",
        "\x7f",
        "caf\xc3\xa9",
        "\xe2\x82\xac",
        "\xf0\x9f\x98\x80",
        "x\x01y",
        " ",
        "~}",
    };
    (void)state;
    for (size_t i = 0; i < sizeof s / sizeof *s; i++)
        check_value(json_string(s[i]));
    /* Every byte that may stand alone in a string, at both ends of the
     * inline limit. */
    for (int c = 1; c < 0x80; c++) {
        char b[8];
        memset(b, 'q', sizeof b);
        b[0] = (char)c;
        b[5] = 0;
        check_value(json_string(b));
        b[5] = 'q';
        b[6] = 0;
        check_value(json_string(b));
    }
}

static void test_containers(void **state)
{
    (void)state;
    check_value(json_object());
    check_value(json_array());
    check_value(json_pack("[i]", 1));
    check_value(json_pack("{s:i}", "a", 1));
    check_value(
        json_pack("{s:[i,s,b,n], s:{s:f}}", "k", 1, "two", 1, "o", "x", 2.5));
    check_value(json_pack("[s,s]", "a\"", "\xc3\xa9"));
}

static void test_text_and_int(void **state)
{
    static const char *const texts[] = {
        "\"x\"",
        "1",
        "\"abcde\"",
        "\"abcdef\"",
        "{\"a\":[1,2,3],\"b\":\"a long enough value\"}",
    };
    hval h;
    size_t n;
    const char *t;
    (void)state;

    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        assert_int_equal(hval_from_text(texts[i], strlen(texts[i]), &h), 0);
        t = hval_text(&h, &n);
        assert_int_equal(n, strlen(texts[i]));
        assert_memory_equal(t, texts[i], n);
        hval_free(h);
    }
    static const struct {
        int64_t n;
        const char *t;
    } ints[] = {
        {0, "0"},
        {-7, "-7"},
        {1700000000000, "1700000000000"},
        {INT64_MIN, "-9223372036854775808"},
        {INT64_MAX, "9223372036854775807"},
    };
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        assert_int_equal(hval_from_int(ints[i].n, &h), 0);
        t = hval_text(&h, &n);
        assert_int_equal(n, strlen(ints[i].t));
        assert_memory_equal(t, ints[i].t, n);
        assert_int_equal(hval_type(&h), JSON_INTEGER);
        hval_free(h);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_containers),
        cmocka_unit_test(test_text_and_int),
    };
    return cmocka_run_group_tests_name("hval", tests, NULL, NULL);
}
