/*
 * check.h - asserts that are safe anywhere: on a goroutine stack, on
 * another OS thread, in a forked child.  cmocka's asserts longjmp back to
 * the test runner, which must never happen from a goroutine (the jump
 * would leave its stack and the scheduler's state behind), so code that
 * runs on the runtime checks with these instead.  A failed check prints
 * file:line, the expression and both operands to stderr, and aborts the
 * process (as libuv's test/task.h ASSERT_* do): tests/run.sh then counts
 * the case that was running as failed.
 *
 * No cmocka here: the bench and soak binaries link tests/common too.
 */
#ifndef CHAND_CHECK_H
#define CHAND_CHECK_H

#include <stdint.h>
#include <string.h>

/* Prints "file:line: check failed: " and the printf-style text to stderr,
 * then aborts.  Never returns. */
void check_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            check_fail(__FILE__, __LINE__, "%s", #cond);                       \
    } while (0)

/* Integer comparisons: both operands are printed as signed 64-bit. */
#define CHECK_CMP_(a, op, b)                                                   \
    do {                                                                       \
        long long a_ = (long long)(a), b_ = (long long)(b);                    \
        if (!(a_ op b_))                                                       \
            check_fail(__FILE__, __LINE__, "%s %s %s (%lld %s %lld)", #a, #op, \
                       #b, a_, #op, b_);                                       \
    } while (0)
#define CHECK_EQ(a, b) CHECK_CMP_(a, ==, b)
#define CHECK_NE(a, b) CHECK_CMP_(a, !=, b)
#define CHECK_LT(a, b) CHECK_CMP_(a, <, b)
#define CHECK_LE(a, b) CHECK_CMP_(a, <=, b)
#define CHECK_GT(a, b) CHECK_CMP_(a, >, b)
#define CHECK_GE(a, b) CHECK_CMP_(a, >=, b)

#define CHECK_PTR_EQ(a, b)                                                     \
    do {                                                                       \
        const void *a_ = (a), *b_ = (b);                                       \
        if (a_ != b_)                                                          \
            check_fail(__FILE__, __LINE__, "%s == %s (%p != %p)", #a, #b, a_,  \
                       b_);                                                    \
    } while (0)
#define CHECK_NULL(p) CHECK_PTR_EQ(p, NULL)
#define CHECK_NOT_NULL(p)                                                      \
    do {                                                                       \
        if ((p) == NULL)                                                       \
            check_fail(__FILE__, __LINE__, "%s != NULL", #p);                  \
    } while (0)

#define CHECK_STR_EQ(a, b)                                                     \
    do {                                                                       \
        const char *a_ = (a), *b_ = (b);                                       \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                 \
            check_fail(__FILE__, __LINE__, "%s == %s (\"%s\" != \"%s\")", #a,  \
                       #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");            \
    } while (0)

#define CHECK_MEM_EQ(a, b, n)                                                  \
    do {                                                                       \
        if (memcmp((a), (b), (n)) != 0)                                        \
            check_fail(__FILE__, __LINE__, "%s and %s differ in %zu bytes",    \
                       #a, #b, (size_t)(n));                                   \
    } while (0)

/* Fails unconditionally with a printf-style message. */
#define CHECK_FAIL(...) check_fail(__FILE__, __LINE__, __VA_ARGS__)

#endif /* CHAND_CHECK_H */
