/*
 * authlimit.h - slowing down failed authentication, per peer address, in
 * bounded memory.
 *
 * This module owns the failure score of each recent peer and the delay it
 * earns.  Each failure adds 1 to the peer's score, and the score decays
 * exponentially (it halves every half_life_ms).  With n recent failures
 * (the score rounded), an attempt waits 0 ms for n <= free_fails, then
 * base_ms, 2 * base_ms, 4 * base_ms, ... up to max_ms: with the defaults
 * 0, 0, 100, 200, 400, ... 3200, 5000, 5000 ms.  Attempts from one peer
 * are also serialised: each one reserves the next free moment, so that
 * opening many connections at once does not multiply a brute force.  A
 * success forgets the peer.
 *
 * Memory is a fixed table (slots entries, 8-way buckets, keyed hash); a
 * new peer takes an empty entry of its bucket or the one with the lowest
 * score, so a flood of fresh addresses evicts the idle peers first and the
 * persistent ones last.  Every call is O(1).
 *
 * Peers are named by authlimit_key: IPv4 addresses whole, IPv6 addresses
 * by their /64 (one host usually holds a whole /64), unix socket peers by
 * uid.
 *
 * Integration (the auth method and hello's credentials):
 *   1. k from the session's peer (authlimit_key_sockaddr at accept time,
 *      or authlimit_key_uid for a unix socket peer);
 *   2. wait = authlimit_begin(al, &k, now_ms): answer nothing and read
 *      nothing from the session for wait ms (a timer), then verify; when
 *      wait is beyond the pre-authentication deadline, refuse at once
 *      (reason `limit`) instead;
 *   3. on failure authlimit_fail(al, &k, now_ms) and log it (user, peer,
 *      count); on success authlimit_success(al, &k).
 * now_ms is a monotonic clock in ms.  Thread safety: one mutex per table;
 * any thread may call any function.
 */
#ifndef CHAND_AUTHLIMIT_H
#define CHAND_AUTHLIMIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

typedef struct authlimit_key {
    unsigned char b[17]; /* family, then up to 16 bytes of address */
} authlimit_key;

typedef struct authlimit_conf {
    size_t slots;          /* entries (rounded up to a power of two, at
                            * least 8); default 4096 */
    unsigned free_fails;   /* failures without delay; default 2 */
    unsigned base_ms;      /* first delay; default 100 */
    unsigned max_ms;       /* cap; default 5000 */
    unsigned half_life_ms; /* score decay; default 60000 */
} authlimit_conf;

typedef struct authlimit authlimit;

/* Returns a new table with conf (NULL or 0 fields: the defaults), or
 * NULL when out of memory. */
authlimit *authlimit_new(const authlimit_conf *conf);
/* Frees the table (al may be NULL). */
void authlimit_free(authlimit *al);

/* Names the peer at sa (AF_INET: the address; AF_INET6: its /64, or the
 * IPv4 address of a v4-mapped one).  Returns 0, or -EAFNOSUPPORT for
 * another family. */
int authlimit_key_sockaddr(const struct sockaddr *sa, socklen_t len,
                           authlimit_key *k);
/* Names a unix socket peer by its uid. */
void authlimit_key_uid(uid_t uid, authlimit_key *k);

/* An attempt from k begins at now_ms: returns the ms it must wait before
 * it is verified (0: at once), reserving that moment for it. */
unsigned authlimit_begin(authlimit *al, const authlimit_key *k, int64_t now_ms);
/* Records a failed attempt from k at now_ms.  Returns the delay the next
 * attempt from k will wait (if no other comes first). */
unsigned authlimit_fail(authlimit *al, const authlimit_key *k, int64_t now_ms);
/* Forgets k (it authenticated). */
void authlimit_success(authlimit *al, const authlimit_key *k);
/* Returns k's recent failures (its decayed score, rounded) at now_ms. */
unsigned authlimit_failures(authlimit *al, const authlimit_key *k,
                            int64_t now_ms);

#endif /* CHAND_AUTHLIMIT_H */
