/*
 * error.c - rt_strerror: Go's own words for every RT_E* code in rt.h.
 */
#include "rt.h"

#include <string.h>

const char *rt_strerror(int code)
{
    switch (code) {
    case RT_OK:
        return "success";
    case RT_ENOMEM:
        return "out of memory";
    case RT_EINVAL:
        return "invalid argument";
    case RT_EAGAIN:
        return "operation would block";
    case RT_ETIMEDOUT:
        return "deadline exceeded";
    case RT_ECANCELED:
        return "operation canceled";
    case RT_EDEADLK:
        return "all goroutines are asleep - deadlock!";
    case RT_EPERM:
        return "blocking call outside a goroutine";
    case RT_EINPROGRESS:
        return "waiting (await)";
    case RT_ESENDCLOSED:
        return "send on closed channel";
    case RT_ECLOSECLOSED:
        return "close of closed channel";
    case RT_ECLOSENIL:
        return "close of nil channel";
    case RT_EUNLOCK:
        return "sync: unlock of unlocked mutex";
    case RT_ERUNLOCK:
        return "sync: RUnlock of unlocked RWMutex";
    case RT_EWUNLOCK:
        return "sync: Unlock of unlocked RWMutex";
    case RT_ENEGWG:
        return "sync: negative WaitGroup counter";
    case RT_EWGREUSE:
        return "sync: WaitGroup is reused before previous Wait has returned";
    case RT_ENONPOSTICK:
        return "non-positive interval for NewTicker";
    case RT_ENONPOSRESET:
        return "non-positive interval for Ticker.Reset";
    case RT_ESTACKOVF:
        return "goroutine stack exceeds limit (stack overflow)";
    default:
        break;
    }
    /* Any other negative errno: the C library's words (static strings for
     * known codes in glibc). */
    if (code < 0 && code > -4096)
        return strerror(-code);
    return "unknown error";
}
