/*
 * test_persist_shadow.c - the committed-state copy a deposed cluster
 * leader rebuilds from (daemon/persist_shadow.c): replay gives the last
 * snapshot, then every batch kept since, in order; a snapshot cuts the
 * batches back; an empty copy replays nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../../daemon/persist.h"

static char seen[4096];
static size_t seen_len;
static int fail_at = -1, calls;

/* Collects each replayed piece as "<bytes>|". */
static int collect(const uint8_t *p, size_t n)
{
    if (calls++ == fail_at)
        return -1;
    assert_true(seen_len + n + 1 < sizeof seen);
    memcpy(seen + seen_len, p, n);
    seen_len += n;
    seen[seen_len++] = '|';
    seen[seen_len] = 0;
    return 0;
}

/* Checks that the pieces come back numbered 0, 1, 2, ... */
static int in_sequence(const uint8_t *p, size_t n)
{
    char want[16];

    if (calls == fail_at)
        return -1;
    snprintf(want, sizeof want, "%05d", calls++);
    assert_int_equal(n, 5);
    assert_memory_equal(p, want, 5);
    return 0;
}

static int reset(void **state)
{
    (void)state;
    persist__shadow_free();
    seen_len = 0;
    seen[0] = 0;
    fail_at = -1;
    calls = 0;
    return 0;
}

static void test_empty_replays_nothing(void **state)
{
    (void)state;
    assert_int_equal(persist__shadow_replay(collect), 0);
    assert_string_equal(seen, "");
}

static void test_batches_in_order(void **state)
{
    (void)state;
    persist__shadow_batch("a", 1);
    persist__shadow_batch("bb", 2);
    persist__shadow_batch("", 0);
    persist__shadow_batch("ccc", 3);
    assert_int_equal(persist__shadow_replay(collect), 0);
    assert_string_equal(seen, "a|bb||ccc|");
    /* Replaying does not consume: a second rebuild sees the same. */
    seen_len = 0;
    assert_int_equal(persist__shadow_replay(collect), 0);
    assert_string_equal(seen, "a|bb||ccc|");
}

static void test_snapshot_cuts_batches(void **state)
{
    (void)state;
    persist__shadow_batch("old1", 4);
    persist__shadow_batch("old2", 4);
    persist__shadow_snapshot("SNAP", 4);
    persist__shadow_batch("new", 3);
    assert_int_equal(persist__shadow_replay(collect), 0);
    assert_string_equal(seen, "SNAP|new|");
    /* An empty snapshot (an empty state) replays as nothing. */
    persist__shadow_snapshot(NULL, 0);
    persist__shadow_batch("x", 1);
    seen_len = 0;
    assert_int_equal(persist__shadow_replay(collect), 0);
    assert_string_equal(seen, "x|");
}

static void test_many_batches_grow(void **state)
{
    char want[16];
    (void)state;
    /* Past the first 64 KiB of the copy: it grows without losing any. */
    for (int i = 0; i < 20000; i++) {
        snprintf(want, sizeof want, "%05d", i);
        persist__shadow_batch(want, 5);
    }
    assert_int_equal(persist__shadow_replay(in_sequence), 0);
    assert_int_equal(calls, 20000);
    calls = 0;
    fail_at = 19999; /* fail the last one: its error comes back */
    assert_int_equal(persist__shadow_replay(in_sequence), -EIO);
    assert_int_equal(calls, 19999);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_empty_replays_nothing, reset),
        cmocka_unit_test_setup(test_batches_in_order, reset),
        cmocka_unit_test_setup(test_snapshot_cuts_batches, reset),
        cmocka_unit_test_setup(test_many_batches_grow, reset),
    };
    return cmocka_run_group_tests(tests, NULL, reset);
}
