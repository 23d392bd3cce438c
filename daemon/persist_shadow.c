/*
 * persist_shadow.c - cluster mode's copy of the committed state: the
 * FSM's last snapshot and every batch applied after it, own batches
 * included.  A deposed leader rebuilds from it in memory, raft running
 * on (repl.h, point 2), instead of rereading libraft 0.15's log from
 * disk while the truncation of its deposed tail is still settling.
 *
 * Every function runs under the FSM lock (repl_fsm_lock): the raft
 * thread's hooks hold it, and so does the rebuild.  The copy costs a
 * memcpy per applied batch and one per snapshot; it is cut back at every
 * snapshot, so it holds what raft's own log holds in memory.
 */
#include "persist.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint8_t *sh_snap; /* the last snapshot's frames (NULL: empty) */
static size_t sh_snap_len;
static uint8_t *sh_log; /* u32 length, then the frames, per batch */
static size_t sh_len, sh_cap;
static bool sh_broken; /* a copy failed: rebuild from disk instead */

static int sh_grow(size_t need)
{
    size_t cap = sh_cap ? sh_cap : 65536;
    void *p;

    if (sh_len + need <= sh_cap)
        return 0;
    while (cap < sh_len + need)
        cap *= 2;
    p = realloc(sh_log, cap);
    if (!p)
        return -ENOMEM;
    sh_log = p;
    sh_cap = cap;
    return 0;
}

void persist__shadow_batch(const void *data, size_t len)
{
    uint32_t n = (uint32_t)len;

    if (sh_broken)
        return;
    if (len > UINT32_MAX || sh_grow(4 + len) != 0) {
        sh_broken = true;
        return;
    }
    memcpy(sh_log + sh_len, &n, 4);
    memcpy(sh_log + sh_len + 4, data, len);
    sh_len += 4 + len;
}

void persist__shadow_snapshot(const void *data, size_t len)
{
    uint8_t *copy = NULL;

    if (len > 0 && !(copy = malloc(len))) {
        sh_broken = true;
        return;
    }
    if (len > 0)
        memcpy(copy, data, len);
    free(sh_snap);
    sh_snap = copy;
    sh_snap_len = len;
    sh_len = 0;
    /* A burst without snapshots may have grown the log a lot: give it
     * back rather than keep the peak for good. */
    if (sh_cap > (64u << 20)) {
        free(sh_log);
        sh_log = NULL;
        sh_cap = 0;
    }
    sh_broken = false;
}

int persist__shadow_replay(int (*apply)(const uint8_t *p, size_t n))
{
    size_t off = 0;
    uint32_t n;

    if (sh_broken)
        return -ENOMEM;
    if (sh_snap_len > 0 && apply(sh_snap, sh_snap_len) != 0)
        return -EIO;
    while (off < sh_len) {
        memcpy(&n, sh_log + off, 4);
        if (apply(sh_log + off + 4, n) != 0)
            return -EIO;
        off += 4 + (size_t)n;
    }
    return 0;
}

void persist__shadow_free(void)
{
    free(sh_snap);
    free(sh_log);
    sh_snap = sh_log = NULL;
    sh_snap_len = sh_len = sh_cap = 0;
    sh_broken = false;
}
