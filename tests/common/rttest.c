/*
 * rttest.c - the non-cmocka half of rttest.h: the rt_main wrapper and a
 * thread sleep.
 */
#define RTTEST_NO_CMOCKA
#include "rttest.h"

#include <time.h>

int rttest_main(int procs, void (*fn)(void *), void *arg, char *msg, size_t len)
{
    char err[4096] = "";
    rt_config cfg = {.gomaxprocs = procs};
    int r = rt_main(&cfg, fn, arg, err, sizeof(err));
    if (r != 0) {
        snprintf(msg, len, "rt_main: %d %s\n%s", r, rt_strerror(r), err);
        return -1;
    }
    return 0;
}

void rttest_msleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}
