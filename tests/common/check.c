/*
 * check.c - check_fail(): the one place a failed CHECK reports and aborts
 * (see check.h).
 */
#include "check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void check_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    /* One fprintf per piece is fine: the process dies right after, and
     * stderr is unbuffered. */
    fprintf(stderr, "%s:%d: check failed: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stdout);
    abort();
}
