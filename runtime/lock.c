/*
 * lock.c - rt__lock, the runtime's short-term lock, and the futex helpers
 * the scheduler sleeps on.
 *
 * The lock is the classic three-state futex mutex (0 free, 1 held, 2 held
 * with sleepers): an uncontended acquire/release is one atomic each and no
 * system call.  It spins briefly before sleeping because every critical
 * section in the runtime is a handful of instructions, and putting an OS
 * thread to sleep costs ~15 us on these machines.
 */
#include "rt_sched.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

void rt__futex_wait(_Atomic uint32_t *addr, uint32_t val, int64_t timeout_ns)
{
    struct timespec ts, *tsp = NULL;

    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        tsp = &ts;
    }
    /* EINTR, EAGAIN and ETIMEDOUT all mean "look again": callers loop. */
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, tsp, NULL, 0);
}

void rt__futex_wake(_Atomic uint32_t *addr, int n)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

void rt__lock_acquire(rt__lock *l)
{
    uint32_t c = 0;

    if (atomic_compare_exchange_strong_explicit(
            &l->state, &c, 1, memory_order_acquire, memory_order_relaxed))
        return;
    for (int i = 0; i < 100; i++) {
        rt__cpu_relax();
        c = atomic_load_explicit(&l->state, memory_order_relaxed);
        if (c == 0 &&
            atomic_compare_exchange_weak_explicit(
                &l->state, &c, 1, memory_order_acquire, memory_order_relaxed))
            return;
    }
    /* Mark the lock contended; whoever releases it will wake one of us. */
    while (atomic_exchange_explicit(&l->state, 2, memory_order_acquire) != 0)
        rt__futex_wait(&l->state, 2, -1);
}

void rt__lock_release(rt__lock *l)
{
    if (atomic_exchange_explicit(&l->state, 0, memory_order_release) == 2)
        rt__futex_wake(&l->state, 1);
}
