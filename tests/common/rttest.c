/*
 * rttest.c - the non-cmocka half of rttest.h: the failed-check record that
 * goroutines write, the rt_main wrapper that reads it, and a thread sleep.
 */
#define RTTEST_NO_CMOCKA
#include "rttest.h"

#include <stdatomic.h>
#include <time.h>

static char rttest_msg[512];
static _Atomic int rttest_failed;

void rttest_check_fail(const char *file, int line, const char *what)
{
    if (atomic_exchange(&rttest_failed, 1) == 0)
        snprintf(rttest_msg, sizeof(rttest_msg), "%s:%d: check failed: %s",
                 file, line, what);
}

int rttest_main(int procs, void (*fn)(void *), void *arg, char *msg,
                size_t len)
{
    char err[4096] = "";
    atomic_store(&rttest_failed, 0);
    rt_config cfg = {.gomaxprocs = procs};
    int r = rt_main(&cfg, fn, arg, err, sizeof(err));
    if (r != 0) {
        snprintf(msg, len, "rt_main: %d %s\n%s", r, rt_strerror(r), err);
        return -1;
    }
    if (atomic_load(&rttest_failed)) {
        snprintf(msg, len, "%s", rttest_msg);
        return -1;
    }
    return 0;
}

void rttest_msleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}
