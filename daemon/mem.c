/*
 * mem.c - the one count of the bytes that clients make the daemon hold,
 * against max_memory: values in channels (hval blobs), Map and Pool
 * values, timers and their requests, parked goroutines and awaits, and
 * sessions' input and output buffers.  Each is charged where it is
 * allocated and released where it is freed, on one relaxed atomic, so a
 * check costs a load.  The count is an estimate of the allocations (their
 * payload plus a fixed overhead), not of the allocator's pages: the
 * daemon's RSS also holds its code, free lists and fragmentation, which is
 * why the systemd unit's MemoryMax= sits above max_memory.
 *
 * A request that would make the daemon hold more (send, map.store,
 * pool.put, go, a wait, a timer) is refused with reason limit once the
 * count plus its line passes max_memory (dispatch.c asks mem_full);
 * requests that read or free memory always run, so a full daemon drains.
 */
#include "daemon.h"

#include <string.h>
#include <unistd.h>

static _Atomic int64_t mem_bytes;

void mem_add(int64_t n)
{
    atomic_fetch_add_explicit(&mem_bytes, n, memory_order_relaxed);
}

void mem_sub(int64_t n)
{
    atomic_fetch_sub_explicit(&mem_bytes, n, memory_order_relaxed);
}

int64_t mem_used(void)
{
    return atomic_load_explicit(&mem_bytes, memory_order_relaxed) +
           hval_bytes();
}

bool mem_full(int64_t more)
{
    return mem_used() + more > (int64_t)srv_conf.max_memory;
}

/* jansson's per-value overhead, roughly: the json_t and its allocation. */
#define MEM_JSON_NODE 48

int64_t mem_json_cost(const json_t *v)
{
    int64_t n = MEM_JSON_NODE;
    const char *k;
    json_t *x;
    size_t i;

    switch (json_typeof(v)) {
    case JSON_STRING:
        return n + (int64_t)json_string_length(v) + 1;
    case JSON_ARRAY:
        json_array_foreach((json_t *)v, i, x) n += 8 + mem_json_cost(x);
        return n;
    case JSON_OBJECT:
        json_object_foreach((json_t *)v, k, x) n +=
            48 + (int64_t)strlen(k) + mem_json_cost(x);
        return n;
    default:
        return n;
    }
}
