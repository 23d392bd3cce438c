/*
 * hashgate.h - how many password hashes run at once, and how many wait.
 *
 * A password hash is slow on purpose (yescrypt: ~15 ms of CPU and 16 MB
 * of memory each).  It runs on a goroutine, so every hash in progress
 * holds one of the runtime's Ps: without a cap, a flood of auth attempts
 * (even from many addresses, which authlimit.h does not slow down) would
 * take every P and starve the goroutines of everybody else.  This module
 * owns that cap: at most `slots` hashes run at once (default: half the
 * cores, clamped to 1..4), at most `queue` more wait for a slot (parked
 * goroutines: they hold no P), and anything beyond is refused at once
 * (the caller answers reason `limit`).
 *
 * Usage, on a goroutine:  rc = hashgate_enter(dl); if (rc == 0) { hash;
 * hashgate_leave(); }.  Thread safety: any thread; enter blocks only on a
 * goroutine (from another thread it only tries).
 */
#ifndef CHAND_HASHGATE_H
#define CHAND_HASHGATE_H

#include <stdint.h>

#include "rt.h"

/* Default slots for ncpu cores: ncpu / 2, clamped to 1..4. */
int hashgate_default_slots(int ncpu);
/* Sets the gate up with slots (<= 0: hashgate_default_slots of the
 * runtime's cores) and queue (< 0: 0) waiters.  Call once, after the
 * runtime started.  Returns 0 or -ENOMEM. */
int hashgate_init(int slots, int queue);
/* Frees the gate (nothing may be inside or waiting). */
void hashgate_fini(void);
/* Takes a slot, waiting until dl when none is free and fewer than queue
 * already wait.  Returns 0 (call hashgate_leave after the hash), -EBUSY
 * (the queue is full: refuse), -ETIMEDOUT, -ECANCELED (the goroutine's
 * session ended) or -EINVAL (no gate). */
int hashgate_enter(rt_deadline_t dl);
/* Gives the slot back. */
void hashgate_leave(void);
/* The hashes running now, and the attempts waiting for a slot. */
void hashgate_counts(int64_t *running, int64_t *waiting);
/* The gate's sizes in force. */
void hashgate_sizes(int *slots, int *queue);

#endif /* CHAND_HASHGATE_H */
