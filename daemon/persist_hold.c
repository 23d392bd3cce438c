/*
 * persist_hold.c - a cluster leader's snapshot hold: whether its I/O
 * threads hold new requests now (persist_holding), and for how long.
 *
 * A busy leader's state is always ahead of raft's (a ticket open or in
 * flight), so its snapshot hook always refused: its raft log grew without
 * end, and so did a restart's replay of it (libraft 0.15 loads a log by
 * growing one array an entry at a time, which under ASan took 6 minutes
 * for 150k entries).  So when the hook refuses for that reason it starts a
 * hold (persist__hold_start): the I/O threads hold every session's next
 * request (framing.c, session_hold.c) while the tickets in flight commit;
 * the hook, asked again as the last one applies, finds the state quiet and
 * walks it, the hold lasting the whole walk (persist__hold_walk).  The hold
 * ends with that walk (persist__hold_end), or after HOLD_MS when the state
 * never became quiet; the next one starts HOLD_GAP_MS after that at the
 * earliest, so a leader whose state never settles (timers firing) loses a
 * few percent of its time at most.  Requests already running are not
 * held: the walk's own check (persist_repl.c) still catches them.
 *
 * The start, walk and end run on the raft thread, in the snapshot hook;
 * persist_holding on any thread.
 */
#include "persist.h"

#include <stdatomic.h>
#include <stdint.h>

#define HOLD_MS 50
#define HOLD_GAP_MS 1000

static _Atomic bool hold_on;
static _Atomic int64_t hold_end_ms;
static int64_t hold_next_ms;        /* raft thread */
static _Atomic uint64_t hold_count; /* holds started, ever */

static int64_t hold_now_ms(void)
{
    return rt_now() / 1000000;
}

int64_t persist_holding(void)
{
    int64_t left;

    /* Only a serving leader holds: one deposed meanwhile serves nothing. */
    if (!atomic_load_explicit(&hold_on, memory_order_relaxed) ||
        !persist_may_decide())
        return 0;
    left = atomic_load(&hold_end_ms) - hold_now_ms();
    return left > 0 ? left : 0;
}

void persist__hold_start(void)
{
    int64_t now = hold_now_ms();

    if (now < hold_next_ms)
        return;
    atomic_store(&hold_end_ms, now + HOLD_MS);
    atomic_store(&hold_on, true);
    atomic_fetch_add(&hold_count, 1);
    hold_next_ms = now + HOLD_MS + HOLD_GAP_MS;
}

void persist__hold_walk(void)
{
    /* A queue of 100k values takes longer than HOLD_MS to walk under
     * ASan: requests let go midway would spoil the walk. */
    if (persist_holding() > 0)
        atomic_store(&hold_end_ms, INT64_MAX / 2);
}

void persist__hold_end(void)
{
    if (atomic_exchange(&hold_on, false))
        persist__wake();
}

uint64_t persist__holds(void)
{
    return atomic_load(&hold_count);
}
