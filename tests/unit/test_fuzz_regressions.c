/*
 * test_fuzz_regressions.c - replays the fuzz harnesses' regression
 * inputs (every file of tests/fuzz/regressions/HARNESS/: each crash, leak
 * or hang that fuzzing found, kept after its fix) and their seed corpora
 * (tests/fuzz/corpus/HARNESS/) through the same harness code, built here
 * with gcc and no libFuzzer, so that `make test` (and `make asan`) guards
 * every fix.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/testpath.h"
#define LLVMFuzzerTestOneInput fuzz_proto_one
#include "../fuzz/fuzz_proto.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_broker_one
#include "../fuzz/fuzz_broker.c"
#undef LLVMFuzzerTestOneInput

typedef int (*harness_fn)(const uint8_t *data, size_t size);

/* Returns the tests/fuzz directory (static buffer), found from the working
 * directory or from $CHAND_BIN (build/.../chand). */
static const char *fuzz_dir(void)
{
    return testpath("tests/fuzz/corpus") ? testpath("tests/fuzz") : NULL;
}

/* Runs fn over every file of dir/sub/harness; returns how many. */
static int replay(const char *sub, const char *harness, harness_fn fn)
{
    const char *top = fuzz_dir();
    char dir[PATH_MAX + 200];
    struct dirent *e;
    DIR *d;
    int n = 0;

    assert_non_null(top);
    snprintf(dir, sizeof dir, "%s/%s/%s", top, sub, harness);
    d = opendir(dir);
    if (!d)
        return 0;
    while ((e = readdir(d))) {
        char p[PATH_MAX + 600];
        size_t sz;
        uint8_t *buf;
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        buf = (uint8_t *)testfile_read(p, &sz);
        if (!buf)
            continue;
        assert_int_equal(fn(buf, sz), 0);
        free(buf);
        n++;
    }
    closedir(d);
    return n;
}

static void test_proto_inputs(void **state)
{
    (void)state;
    int seeds = replay("corpus", "proto", fuzz_proto_one);
    int regs = replay("regressions", "proto", fuzz_proto_one);
    fprintf(stderr, "proto: %d seeds, %d regressions replayed\n", seeds, regs);
    assert_true(seeds > 0);
}

static void test_broker_inputs(void **state)
{
    (void)state;
    int seeds = replay("corpus", "broker", fuzz_broker_one);
    int regs = replay("regressions", "broker", fuzz_broker_one);
    fprintf(stderr, "broker: %d seeds, %d regressions replayed\n", seeds, regs);
    assert_true(seeds > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proto_inputs),
        cmocka_unit_test(test_broker_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
