/*
 * repl_fsm.c - the raft FSM adapter (raft thread): applies batches to the
 * daemon's repl_fsm, takes and restores its snapshots.
 */
#include "repl_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- FSM adapter (raft thread) ------------------------------------------ */

int repl__fsm_apply(struct raft_fsm *f, const struct raft_buffer *buf,
                    void **result)
{
    repl_node *n = f->data;
    const unsigned char *p = buf->base, *end = p + buf->len;
    repl_record stack[16], *recs = stack;
    uint32_t count, i;
    uint64_t origin, nonce;
    int rc;

    *result = NULL;
    rc = RAFT_MALFORMED;
    if (buf->len < BATCH_HDR || get32(p) != BATCH_MAGIC)
        goto out;
    count = get32(p + 4);
    origin = get64(p + 8);
    nonce = get64(p + 16);
    p += BATCH_HDR;
    if (count > (size_t)(end - p) / 4)
        goto out;
    if (count > 16) {
        recs = malloc(count * sizeof *recs);
        if (recs == NULL) {
            rc = RAFT_NOMEM;
            goto out;
        }
    }
    for (i = 0; i < count; i++) {
        uint32_t len;
        if (end - p < 4)
            break;
        len = get32(p);
        p += 4;
        if ((size_t)(end - p) < len)
            break;
        recs[i].data = p;
        recs[i].len = len;
        p += len;
    }
    /* Up to 7 bytes of zero padding may follow the last record. */
    if (i == count && end - p < 8)
        while (p < end && *p == 0)
            p++;
    if (i < count || p != end) {
        rc = RAFT_MALFORMED;
        goto out;
    }
    /* raft sets last_applied after this call returns: the entry's index is
     * the next one.  `own` is decided under the lock a rebuild holds while
     * it changes the nonce (repl_new_origin). */
    pthread_mutex_lock(&n->fsm_mu);
    rc = n->fsm.apply(n->fsm.arg, raft_last_applied(&n->raft) + 1, recs, count,
                      origin == n->id && nonce == n->nonce);
    pthread_mutex_unlock(&n->fsm_mu);
    rc = rc == 0 ? 0 : RAFT_IOERR;
out:
    if (rc != 0)
        n->fsm_errors++;
    if (recs != stack)
        free(recs);
    return rc;
}

int repl__fsm_snapshot(struct raft_fsm *f, struct raft_buffer *bufs[],
                       unsigned *n_bufs)
{
    repl_node *n = f->data;
    void *data = NULL;
    size_t len = 0;
    unsigned char *hdr;
    size_t padded;
    int rc;

    pthread_mutex_lock(&n->fsm_mu);
    rc = n->fsm.snapshot(n->fsm.arg, raft_last_applied(&n->raft), &data, &len);
    pthread_mutex_unlock(&n->fsm_mu);
    if (rc == -EBUSY)
        return RAFT_BUSY;
    if (rc != 0)
        return RAFT_IOERR;
    n->snapshot_index = raft_last_applied(&n->raft);
    padded = (len + 7) & ~(size_t)7;
    if (padded != len) {
        void *grown = realloc(data, padded);
        if (grown == NULL) {
            free(data);
            return RAFT_NOMEM;
        }
        data = grown;
        memset((char *)data + len, 0, padded - len);
    }
    *bufs = raft_calloc(2, sizeof **bufs);
    hdr = raft_malloc(SNAP_HDR);
    if (*bufs == NULL || hdr == NULL) {
        raft_free(*bufs);
        raft_free(hdr);
        free(data);
        return RAFT_NOMEM;
    }
    put32(hdr, SNAP_MAGIC);
    put32(hdr + 4, SNAP_VERSION);
    put64(hdr + 8, len);
    (*bufs)[0].base = hdr;
    (*bufs)[0].len = SNAP_HDR;
    *n_bufs = 1;
    if (len > 0) {
        /* raft frees the buffers with raft_free, the C library's free by
         * default, which is what allocated data. */
        (*bufs)[1].base = data;
        (*bufs)[1].len = padded;
        *n_bufs = 2;
    } else {
        free(data);
    }
    return 0;
}

int repl__fsm_restore(struct raft_fsm *f, struct raft_buffer *buf)
{
    repl_node *n = f->data;
    const unsigned char *p = buf->base;
    int rc;

    if (buf->len < SNAP_HDR || get32(p) != SNAP_MAGIC ||
        get32(p + 4) != SNAP_VERSION || get64(p + 8) > buf->len - SNAP_HDR)
        return RAFT_MALFORMED;
    pthread_mutex_lock(&n->fsm_mu);
    rc = n->fsm.restore(n->fsm.arg, p + SNAP_HDR, get64(p + 8));
    pthread_mutex_unlock(&n->fsm_mu);
    if (rc != 0) {
        n->fsm_errors++;
        return RAFT_IOERR;
    }
    /* On success the FSM owns the buffer (raft's contract). */
    raft_free(buf->base);
    return 0;
}
