/*
 * hashgate.c - the cap on concurrent password hashes (model in
 * hashgate.h): a buffered channel of `slots` tokens is the semaphore (a
 * goroutine that waits on it is parked and holds no P), and an atomic
 * count bounds its waiters.
 */
#include "hashgate.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

static rt_chan *hg_sem; /* one element per running hash */
static int hg_slots, hg_queue;
static _Atomic int64_t hg_waiting;

int hashgate_default_slots(int ncpu)
{
    int n = ncpu / 2;
    return n < 1 ? 1 : n > 4 ? 4 : n;
}

int hashgate_init(int slots, int queue)
{
    hg_slots = slots > 0 ? slots : hashgate_default_slots(rt_num_cpu());
    hg_queue = queue > 0 ? queue : 0;
    atomic_store(&hg_waiting, 0);
    hg_sem = rt_chan_make(1, (size_t)hg_slots);
    return hg_sem ? 0 : -ENOMEM;
}

void hashgate_fini(void)
{
    if (hg_sem)
        rt_chan_release(hg_sem);
    hg_sem = NULL;
}

int hashgate_enter(rt_deadline_t dl)
{
    const char tok = 0;
    int rc;

    if (!hg_sem)
        return -EINVAL;
    rc = rt_chan_send(hg_sem, &tok, RT_POLL);
    if (rc != RT_EAGAIN)
        return rc == 0 ? 0 : -EINVAL;
    if (atomic_fetch_add(&hg_waiting, 1) >= hg_queue) {
        atomic_fetch_sub(&hg_waiting, 1);
        return -EBUSY;
    }
    rc = rt_chan_send(hg_sem, &tok, dl);
    atomic_fetch_sub(&hg_waiting, 1);
    switch (rc) {
    case 0:
        return 0;
    case RT_ETIMEDOUT:
        return -ETIMEDOUT;
    case RT_ECANCELED:
        return -ECANCELED;
    case RT_EPERM:
        return -EBUSY; /* not a goroutine: it could only have tried */
    default:
        return -EINVAL;
    }
}

void hashgate_leave(void)
{
    char tok;
    bool ok;

    if (hg_sem)
        rt_chan_recv(hg_sem, &tok, &ok, RT_POLL);
}

void hashgate_counts(int64_t *running, int64_t *waiting)
{
    *running = hg_sem ? (int64_t)rt_chan_len(hg_sem) : 0;
    *waiting = atomic_load(&hg_waiting);
}

void hashgate_sizes(int *slots, int *queue)
{
    *slots = hg_slots;
    *queue = hg_queue;
}
