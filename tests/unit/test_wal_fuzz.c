/*
 * test_wal_fuzz.c - replays the seeds of the durability loader's fuzz
 * harness (tests/fuzz/corpus/wal/) and its regressions
 * (tests/fuzz/regressions/wal/, when there are any) through the same
 * harness code, built here with gcc and no libFuzzer, so that `make test`
 * and `make asan` guard them; then random inputs derived from the seeds.
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

#include "../common/testpath.h"
#define LLVMFuzzerTestOneInput fuzz_wal_one
#include "../fuzz/fuzz_wal.c"
#undef LLVMFuzzerTestOneInput

typedef struct input {
    uint8_t *p;
    size_t n;
} input;

/* Loads every file of tests/fuzz/<sub>/wal into *v; returns how many. */
static size_t load(const char *sub, input **v, size_t have)
{
    char dir[PATH_MAX + 100];
    const char *top =
        testpath("tests/fuzz/corpus") ? testpath("tests/fuzz") : NULL;
    struct dirent *e;
    DIR *d;

    assert_non_null(top);
    snprintf(dir, sizeof dir, "%s/%s/wal", top, sub);
    d = opendir(dir);
    if (!d)
        return have;
    while ((e = readdir(d))) {
        char p[PATH_MAX + 400];
        FILE *f;
        long sz;
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        f = fopen(p, "rb");
        assert_non_null(f);
        fseek(f, 0, SEEK_END);
        sz = ftell(f);
        rewind(f);
        *v = realloc(*v, (have + 1) * sizeof **v);
        (*v)[have].p = malloc((size_t)sz + 1);
        (*v)[have].n = (size_t)sz;
        assert_int_equal(fread((*v)[have].p, 1, (size_t)sz, f), (size_t)sz);
        fclose(f);
        have++;
    }
    closedir(d);
    return have;
}

static void test_wal_seeds_and_mutants(void **state)
{
    input *v = NULL;
    size_t n = load("corpus", &v, 0);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    (void)state;

    n = load("regressions", &v, n);
    assert_true(n >= 5);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(fuzz_wal_one(v[i].p, v[i].n), 0);
    /* Mutants: a few random byte changes of each seed. */
    for (int it = 0; it < 400; it++) {
        input *s = &v[(size_t)it % n];
        uint8_t *b = malloc(s->n + 1);
        memcpy(b, s->p, s->n);
        for (int k = 0; k < 1 + it % 4 && s->n > 1; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            b[1 + x % (s->n - 1)] = (uint8_t)(x >> 32);
        }
        assert_int_equal(fuzz_wal_one(b, s->n), 0);
        free(b);
    }
    for (size_t i = 0; i < n; i++)
        free(v[i].p);
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wal_seeds_and_mutants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
