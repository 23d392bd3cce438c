/*
 * log.c - leveled logging to stderr.  Each message is formatted into one
 * buffer and written with a single write(2), so that lines from several
 * threads never interleave.
 */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static _Atomic int log_cur = LOG_LVL_INFO;

static const char *const log_names[] = {"error", "warn", "info", "debug"};

void log_set_level(log_level l)
{
    atomic_store_explicit(&log_cur, (int)l, memory_order_relaxed);
}

log_level log_get_level(void)
{
    return (log_level)atomic_load_explicit(&log_cur, memory_order_relaxed);
}

int log_level_parse(const char *s, log_level *l)
{
    for (int i = 0; i <= LOG_LVL_DEBUG; i++)
        if (strcmp(s, log_names[i]) == 0) {
            *l = (log_level)i;
            return 0;
        }
    if (strcmp(s, "warning") == 0) {
        *l = LOG_LVL_WARN;
        return 0;
    }
    return -1;
}

const char *log_level_name(log_level l)
{
    if ((int)l < 0 || l > LOG_LVL_DEBUG)
        return "?";
    return log_names[l];
}

void log_msg(log_level l, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    int n, m;

    if ((int)l > (int)log_get_level())
        return;
    n = snprintf(buf, sizeof buf, "chand[%d]: %s: ", (int)getpid(),
                 log_level_name(l));
    if (n < 0)
        return;
    va_start(ap, fmt);
    m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    n += m;
    if ((size_t)n > sizeof buf - 2)
        n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    /* A failed write to stderr has nowhere to be reported. */
    if (write(STDERR_FILENO, buf, (size_t)n) < 0)
        return;
}
