/*
 * chand.h - libchand, the C client library of the chand daemon.
 *
 * chand hosts Go's concurrency primitives (channels, select, Mutex,
 * RWMutex, WaitGroup, Once, Cond, Pool, Map, atomics, timers) by name and
 * serves them over TCP with JSON-RPC 2.0, one message per line
 * (proto/PROTOCOL.md).  This header is the whole public API of libchand:
 * a blocking API (chand_conn) and an asynchronous one on the caller's
 * libevent event_base (chand_async).  Build with
 * `pkg-config --cflags --libs libchand`.
 *
 * Conventions (one rule for the whole header):
 * - Errors: functions return 0 (or a documented non-negative value) on
 *   success and a negative CHAND_E* code on failure.  chand_strerror()
 *   names the code; chand_last_error() gives the server's reason and
 *   message for the last failed call on a connection.  errno is never used.
 * - Timeouts: every call that can block takes int64_t timeout_ms:
 *   CHAND_FOREVER (-1) waits forever, 0 does not wait, N gives up after N
 *   milliseconds with CHAND_ETIMEOUT.  The timeout is carried to the server
 *   (timeout_ms) which enforces it; the client itself waits a grace period
 *   longer (CHAND_GRACE_MS) so that an answer is never lost to a race.  If
 *   even that expires, the connection is closed (see "Connection loss").
 * - Values are jansson json_t.  Arguments are *borrowed* unless a comment
 *   says the function *steals* them; json_t ** out-parameters receive a
 *   *new* reference that the caller must json_decref.  char ** outputs are
 *   malloc'd and the caller frees them.  Out-pointers may be NULL when the
 *   caller does not care.
 * - Threads, call by call:
 *   - thread-safe (any thread, any time): chand_strerror,
 *     chand_code_from_reason, chand_version, chand_parse_address,
 *     chand_connect (it makes a new handle);
 *   - one thread at a time per connection: every other chand_* call taking
 *     a chand_conn, chand_close_conn and chand_reconnect included.  A
 *     chand_conn has no lock: one connection per thread is the intended
 *     shape (connections are cheap; each is one session on the server).
 *     Calls on different connections never interfere;
 *   - the thread running the event_base only: every chand_async_* call
 *     and every callback.
 * - Signals: the blocking API never raises SIGPIPE (it sends with
 *   MSG_NOSIGNAL).  The asynchronous API writes through libevent, which
 *   can: programs using it should ignore SIGPIPE.
 *
 * Connection loss and reconnecting:
 * - Calls in flight when the connection drops fail with CHAND_ECONN; every
 *   later call on the same handle fails with CHAND_ECONN too.  The library
 *   never retries on its own: a send or lock that may or may not have
 *   reached the server cannot be replayed safely.
 * - The server ends the session: its waiters are cancelled (no value is
 *   taken on behalf of a dead client) and the locks it holds are released,
 *   except locks taken with a lease (lease_ms), which live until the lease
 *   ends or someone unlocks them with the token.  Fencing tokens let a
 *   protected resource refuse a stale holder.
 * - chand_reconnect() dials the same address again and starts a new
 *   session; locks of the old session are not carried over.
 *
 * A replicated chand (three nodes or more, one leader):
 * - chand_connect_url and chand_async_connect_url take several servers,
 *   "a,b,c" (as chanctl -s and CHAND_SERVER do).  A follower answers calls
 *   with not_leader and the leader's address; the library then connects to
 *   that leader (or, during an election, to the next server, pausing
 *   between rounds) and sends the call again, for up to the failover
 *   timeout (option "failover_ms", default 10000) from the call's first
 *   not_leader; after that the call fails with CHAND_ENOTLEADER (or the
 *   last dial's error).  Sending again is safe there: a not_leader answer
 *   means the node did nothing.  Each move is a new session.
 * - The asynchronous API does the same without blocking: once a not_leader
 *   came, its later calls wait in the handle, the session is left when the
 *   calls in flight on it have their answers, and the refused calls are
 *   sent to the leader first, in the order they were made, then the ones
 *   that waited.
 * - A call in flight when the leader dies still fails with CHAND_ECONN:
 *   requests carry no client session and request id, so a new leader could
 *   not tell a retried send from a second one, and the library does not
 *   retry (issue 19's first option).  The caller decides, then calls
 *   chand_reconnect, which tries the servers in turn (the current one
 *   first) for the longer of its timeout and the failover timeout; an
 *   asynchronous handle is closed (its close callback runs) and a new one
 *   is made instead.
 */
#ifndef CHAND_CLIENT_H
#define CHAND_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CHAND_API __attribute__((visibility("default")))

#define CHAND_DEFAULT_HOST "127.0.0.1"
#define CHAND_DEFAULT_PORT 2426
#define CHAND_DEFAULT_TLS_PORT 2428
/* Where a local chand listens (its unix socket), for clients' defaults. */
#define CHAND_DEFAULT_UNIX "/run/chand/chand.sock"
#define CHAND_FOREVER (-1)
/* How much longer than the server's timeout the client waits. */
#define CHAND_GRACE_MS 5000
/* The protocol version this library speaks (hello). */
#define CHAND_PROTOCOL_VERSION 1

/* ------------------------------------------------------------------ */
/* Errors                                                             */
/* ------------------------------------------------------------------ */

/* The first block mirrors the server's stable reasons (data.reason); the
 * second is the client's own. */
enum {
    CHAND_OK = 0,
    CHAND_ECLOSED = -1,      /* closed: channel closed */
    CHAND_ETIMEOUT = -2,     /* timeout: the timeout passed */
    CHAND_ENOTFOUND = -3,    /* not_found: no object of that name */
    CHAND_EEXISTS = -4,      /* exists: name taken (by another kind) */
    CHAND_EWRONGTYPE = -5,   /* wrong_type: value or object of wrong type */
    CHAND_ENEGATIVE = -6,    /* negative_counter: WaitGroup below zero */
    CHAND_ENOTLOCKED = -7,   /* not_locked: unlock of unlocked / bad token */
    CHAND_EDEADLOCK = -8,    /* deadlock: lock cycle between sessions */
    CHAND_ETOOLARGE = -9,    /* too_large: line or value over the limit */
    CHAND_ELIMIT = -10,      /* limit: a server limit was reached */
    CHAND_ECANCELLED = -11,  /* cancelled: the wait was cancelled */
    CHAND_EMISUSE = -12,     /* misuse: operation not allowed here */
    CHAND_EINVALID = -13,    /* invalid: bad request/params/method */
    CHAND_ESERVER = -14,     /* any other error answered by the server */
    CHAND_EUNAUTH = -15,     /* unauthenticated: authenticate first, or
                              * wrong user or password */
    CHAND_EDENIED = -16,     /* denied: outside the user's rules */
    CHAND_ENOTPENDING = -17, /* not_pending: the delivery is no longer in
                              * flight (acked, expired, redelivered) */
    CHAND_ENOTLEADER = -18,  /* not_leader: the node is a cluster follower */

    CHAND_ECONNECT = -20, /* cannot connect (resolve, refuse, timeout) */
    CHAND_ECONN = -21,    /* connection lost or closed */
    CHAND_EPROTO = -22,   /* the server's answer is not valid */
    CHAND_ENOMEM = -23,   /* out of memory */
    CHAND_EARG = -24,     /* invalid argument given to the library */
};

/* Details of a failed call.  reason is the server's data.reason ("closed",
 * "timeout", ...) or "" for client-side errors; rpc_code is the JSON-RPC
 * error code (0 for client-side errors). */
typedef struct chand_error {
    int code; /* CHAND_E* */
    int rpc_code;
    char reason[32];
    char message[256];
} chand_error;

/* Returns a static description of a CHAND_E* code.  Thread-safe. */
CHAND_API const char *chand_strerror(int code);
/* Returns the CHAND_E* code for a server reason name ("closed", ...), or
 * CHAND_ESERVER for an unknown one. */
CHAND_API int chand_code_from_reason(const char *reason);
/* Returns the library version string, e.g. "1.0.0". */
CHAND_API const char *chand_version(void);

/* ------------------------------------------------------------------ */
/* Connections (blocking API)                                         */
/* ------------------------------------------------------------------ */

typedef struct chand_conn chand_conn;

/* Connects to host:port (a name, IPv4 or IPv6 address; NULL means
 * CHAND_DEFAULT_HOST; port 0 means CHAND_DEFAULT_PORT), trying every
 * address getaddrinfo returns, then says hello, all within timeout_ms in
 * total (a listener that is not chand fails with CHAND_ECONNECT).
 * Returns 0 and a new connection in *out, or a negative code with err
 * (may be NULL) filled. */
CHAND_API int chand_connect(const char *host, int port, int64_t timeout_ms,
                            chand_conn **out, chand_error *err);
/* Options of chand_connect_url (opaque: new, set, free). */
typedef struct chand_options chand_options;
/* Returns new, empty options, or NULL when out of memory. */
CHAND_API chand_options *chand_options_new(void);
/* Frees o (NULL is ok), wiping the password. */
CHAND_API void chand_options_free(chand_options *o);
/* Sets option key to value (copied; NULL unsets it).  Keys:
 * "failover_ms" (how long a call looks for the cluster's leader, 0 to
 * 86400000 ms, default 10000; checked by chand_connect_url), "user" and
 * "password" (hello authenticates with them), "tls_ca" (PEM file of the
 * CAs that sign the server's certificate; unset: the system's), "tls_cert"
 * and "tls_key" (a client certificate and its key, PEM),
 * "tls_servername" (the name the server's certificate must carry; unset:
 * the URL's host).  Returns 0, or CHAND_EARG for an unknown key. */
CHAND_API int chand_options_set(chand_options *o, const char *key,
                                const char *value);
/* Connects to url and says hello (with the user and password of opts,
 * which may be NULL), all within timeout_ms.  url is one of
 *   chand://HOST[:PORT]    TCP (default port CHAND_DEFAULT_PORT)
 *   chands://HOST[:PORT]   TLS (default port CHAND_DEFAULT_TLS_PORT)
 *   unix:/PATH             a unix socket
 *   HOST[:PORT]            as chand://
 * or several of them separated by commas: the servers of a cluster, tried
 * in turn until one says hello (see "A replicated chand" above).
 * Returns 0 and a new connection in *out, or a negative code with err
 * (may be NULL) filled: CHAND_EARG for a bad URL, CHAND_ECONNECT,
 * CHAND_EUNAUTH when the credentials are refused.  chand_reconnect
 * dials the same URL with the same options. */
CHAND_API int chand_connect_url(const char *url, const chand_options *opts,
                                int64_t timeout_ms, chand_conn **out,
                                chand_error *err);
/* Parses "host:port", "host", ":port", "[v6]:port" into a malloc'd host
 * (*host) and a port; returns 0 or CHAND_EARG. */
CHAND_API int chand_parse_address(const char *addr, char **host, int *port);
/* Closes the connection (ends the session) and frees it.  NULL is ok. */
CHAND_API void chand_close_conn(chand_conn *conn);
/* Drops the current connection if any, dials the same address again and
 * says hello: a new session.  With several servers, tries each in turn
 * (the current one first) until one answers or the longer of timeout_ms
 * and the failover timeout has passed.  Returns 0 or a negative code. */
CHAND_API int chand_reconnect(chand_conn *conn, int64_t timeout_ms);
/* Returns true while the connection is usable. */
CHAND_API bool chand_connected(const chand_conn *conn);
/* Returns the session id the server gave in hello (borrowed), or "". */
CHAND_API const char *chand_session(const chand_conn *conn);
/* Returns the server's name/version string from hello (borrowed), or "". */
CHAND_API const char *chand_server(const chand_conn *conn);
/* Returns the details of the last failed call on conn (borrowed; code is
 * 0 after a successful call). */
CHAND_API const chand_error *chand_last_error(const chand_conn *conn);

/* The generic call: sends method with params (borrowed; NULL = {}), with
 * timeout_ms carried to the server when not CHAND_FOREVER.  Returns 0 and
 * a new reference to the result object in *result (may be NULL), or a
 * negative code (details in chand_last_error). */
CHAND_API int chand_call(chand_conn *conn, const char *method, json_t *params,
                         int64_t timeout_ms, json_t **result);

/* ---- session ---- */

/* Round trip to the server.  Returns 0 or a negative code. */
CHAND_API int chand_ping(chand_conn *conn);
/* Asks the server to end this session (as a disconnect: waits cancelled,
 * locks without a lease released) once nothing arrived from it for ms
 * (0: never; else at least 100).  While a blocking call waits, the
 * library itself sends a ping whenever nothing was sent for ms/3; between
 * calls the application must call chand_ping (or anything) often enough.
 * Kept across chand_reconnect.  Returns 0 or a negative code. */
CHAND_API int chand_set_heartbeat(chand_conn *conn, int64_t ms);
/* Says hello again; returns 0 and a new reference to {version, server,
 * session} in *result. */
CHAND_API int chand_hello(chand_conn *conn, json_t **result);

/* ---- channels ---- */

/* Makes channel name with a buffer of cap values (0: unbuffered) carrying
 * values of type (NULL or "any", "string", "number", "bool", "object",
 * "array").  Returns 0 or a negative code (CHAND_EEXISTS ...). */
CHAND_API int chand_make(chand_conn *conn, const char *name, int64_t cap,
                         const char *type);
/* Sends value (borrowed) on channel name, waiting up to timeout_ms for a
 * receiver or buffer room.  Returns 0, CHAND_ECLOSED (send on closed
 * channel), CHAND_ETIMEOUT or another negative code. */
CHAND_API int chand_send(chand_conn *conn, const char *name, json_t *value,
                         int64_t timeout_ms);
/* chand_send with a JSON string value. */
CHAND_API int chand_send_str(chand_conn *conn, const char *name, const char *s,
                             int64_t timeout_ms);
/* Receives from channel name.  Returns 1 with a new reference in *value
 * when a value arrived, 0 when the channel is closed and drained (*value
 * is the null zero value), or a negative code (CHAND_ETIMEOUT ...). */
CHAND_API int chand_recv(chand_conn *conn, const char *name, int64_t timeout_ms,
                         json_t **value);
/* chand_recv giving the value as text: a string value as is, any other
 * value as compact JSON; *out is malloc'd.  Same returns as chand_recv. */
CHAND_API int chand_recv_str(chand_conn *conn, const char *name,
                             int64_t timeout_ms, char **out);
/* Closes channel name.  Returns 0, CHAND_ECLOSED (close of closed
 * channel) or another negative code. */
CHAND_API int chand_close(chand_conn *conn, const char *name);
/* Gets the number of queued values and the capacity of channel name. */
CHAND_API int chand_len(chand_conn *conn, const char *name, int64_t *len,
                        int64_t *cap);
/* Removes object name (of any kind) from the server.  Returns 0 or a
 * negative code. */
CHAND_API int chand_drop(chand_conn *conn, const char *name);
/* Lists objects whose name starts with prefix (NULL: all); *objects gets a
 * new reference to the server's array. */
CHAND_API int chand_list(chand_conn *conn, const char *prefix,
                         json_t **objects);

/* One case of a select. */
typedef enum chand_dir {
    CHAND_RECV = 1,
    CHAND_SEND = 2,
    CHAND_RECV_ACK = 3 /* a receive with acknowledgement (chand_select_ack) */
} chand_dir;
typedef struct chand_case {
    chand_dir dir;
    const char *name;
    json_t *value; /* CHAND_SEND: borrowed value to send */
} chand_case;

/* Waits until one of n cases can proceed and performs it (a uniformly
 * random one among those ready).  With has_default it does not wait and
 * *index is -1 when nothing was ready.  Returns 0 with *index set (and for
 * a receive a new reference in *value and *ok false when that channel was
 * closed), or a negative code (CHAND_ETIMEOUT ...). */
CHAND_API int chand_select(chand_conn *conn, const chand_case *cases, size_t n,
                           bool has_default, int64_t timeout_ms, int *index,
                           json_t **value, bool *ok);
/* chand_select whose CHAND_RECV_ACK cases receive with acknowledgement
 * (ack_wait_ms as chand_recv_ack): when such a case took a value, *id and
 * *attempt (may be NULL) name the delivery to chand_ack; else they are 0.
 * chand_select refuses CHAND_RECV_ACK cases (CHAND_EARG). */
CHAND_API int chand_select_ack(chand_conn *conn, const chand_case *cases,
                               size_t n, bool has_default, int64_t ack_wait_ms,
                               int64_t timeout_ms, int *index, json_t **value,
                               bool *ok, int64_t *id, int64_t *attempt);

/* ---- acknowledged delivery (PROTOCOL.md "Acknowledged delivery") ---- */

/* How a channel made by chand_make_opts treats values; opaque: new, set,
 * free.  Unset fields keep the server's defaults. */
typedef struct chand_chan_opts chand_chan_opts;
/* Returns new, empty channel options, or NULL when out of memory. */
CHAND_API chand_chan_opts *chand_chan_opts_new(void);
/* Frees o (NULL is ok). */
CHAND_API void chand_chan_opts_free(chand_chan_opts *o);
/* The value type ("any", "string", ...; NULL: "any").  Returns 0 or
 * CHAND_ENOMEM. */
CHAND_API int chand_chan_opts_type(chand_chan_opts *o, const char *type);
/* After n attempts (1..1000000; 0: unlimited, the default) a value goes to
 * the dead-letter channel.  Returns 0 or CHAND_EARG. */
CHAND_API int chand_chan_opts_max_deliver(chand_chan_opts *o, int64_t n);
/* The dead-letter channel's name (copied; NULL: none).  Returns 0 or
 * CHAND_ENOMEM. */
CHAND_API int chand_chan_opts_dead_letter(chand_chan_opts *o, const char *name);
/* chand_make with options (o NULL: as chand_make(conn, name, cap, NULL)).
 * Returns 0 or a negative code (CHAND_EEXISTS when the channel exists with
 * other options). */
CHAND_API int chand_make_opts(chand_conn *conn, const char *name, int64_t cap,
                              const chand_chan_opts *o);
/* chand_len that also gives the deliveries in flight (received with
 * acknowledgement, not yet acknowledged); out-pointers may be NULL. */
CHAND_API int chand_len_inflight(chand_conn *conn, const char *name,
                                 int64_t *len, int64_t *cap, int64_t *inflight);
/* Receives from channel name with acknowledgement: the value stays the
 * channel's until chand_ack, and is redelivered when ack_wait_ms (<= 0:
 * the server's default, 30 s) passes or this session ends.  Returns 1
 * with a new reference in *value, the delivery's id in *id and its attempt
 * (from 1) in *attempt; 0 when the channel is closed, drained and has
 * nothing in flight (*value null, *id and *attempt 0); or a negative code
 * (CHAND_ETIMEOUT ...). */
CHAND_API int chand_recv_ack(chand_conn *conn, const char *name,
                             int64_t ack_wait_ms, int64_t timeout_ms,
                             json_t **value, int64_t *id, int64_t *attempt);
/* Completes delivery id of channel name.  Returns 0, CHAND_ENOTPENDING
 * when the delivery is no longer in flight (acknowledged, expired and
 * redelivered, terminated), or another negative code. */
CHAND_API int chand_ack(chand_conn *conn, const char *name, int64_t id);
/* Gives the value of delivery id back: redelivered at once (delay_ms <=
 * 0) or after delay_ms; reason (may be NULL) is kept for a dead letter.
 * Returns as chand_ack. */
CHAND_API int chand_nack(chand_conn *conn, const char *name, int64_t id,
                         int64_t delay_ms, const char *reason);
/* Extends delivery id: it expires ack_wait_ms (<= 0: the wait it was
 * received with) from now; *granted (may be NULL) gets the wait the
 * server applied.  Returns as chand_ack. */
CHAND_API int chand_touch(chand_conn *conn, const char *name, int64_t id,
                          int64_t ack_wait_ms, int64_t *granted);
/* Dead-letters the value of delivery id at once; reason may be NULL.
 * Returns as chand_ack. */
CHAND_API int chand_term(chand_conn *conn, const char *name, int64_t id,
                         const char *reason);

/* ---- Mutex and RWMutex ---- */

/* Locks mutex name (made on first use).  lease_ms > 0 keeps the lock past
 * the end of this session for up to lease_ms; 0 or -1 ties it to the
 * session.  Returns 0 with the fencing token in *token (strictly growing
 * per mutex) and *owner_dead true when the previous holder's session died
 * while holding it; or a negative code (CHAND_ETIMEOUT, CHAND_EDEADLOCK). */
CHAND_API int chand_mutex_lock(chand_conn *conn, const char *name,
                               int64_t timeout_ms, int64_t lease_ms,
                               int64_t *token, bool *owner_dead);
/* Unlocks mutex name; token < 0 means "the lock this session holds", a
 * token unlocks a lock held under a lease by any session.  Returns 0 or
 * CHAND_ENOTLOCKED / another negative code. */
CHAND_API int chand_mutex_unlock(chand_conn *conn, const char *name,
                                 int64_t token);
/* The write side of RWMutex name: as chand_mutex_lock/unlock. */
CHAND_API int chand_rwmutex_lock(chand_conn *conn, const char *name,
                                 int64_t timeout_ms, int64_t lease_ms,
                                 int64_t *token, bool *owner_dead);
CHAND_API int chand_rwmutex_unlock(chand_conn *conn, const char *name,
                                   int64_t token);
/* The read side of RWMutex name (many readers at once). */
CHAND_API int chand_rwmutex_rlock(chand_conn *conn, const char *name,
                                  int64_t timeout_ms, int64_t lease_ms,
                                  int64_t *token, bool *owner_dead);
CHAND_API int chand_rwmutex_runlock(chand_conn *conn, const char *name,
                                    int64_t token);

/* ---- WaitGroup, Once, Cond ---- */

/* Adds delta (may be negative) to WaitGroup name; *count gets the new
 * counter.  Returns 0 or CHAND_ENEGATIVE / another negative code. */
CHAND_API int chand_wg_add(chand_conn *conn, const char *name, int64_t delta,
                           int64_t *count);
/* chand_wg_add(conn, name, -1, count). */
CHAND_API int chand_wg_done(chand_conn *conn, const char *name, int64_t *count);
/* Waits until the counter of WaitGroup name is zero.  Returns 0 or a
 * negative code (CHAND_ETIMEOUT ...). */
CHAND_API int chand_wg_wait(chand_conn *conn, const char *name,
                            int64_t timeout_ms);
/* Once name: returns 1 when this caller must run the function (and then
 * call chand_once_done), 0 when it already ran (waiting until the running
 * caller called chand_once_done), or a negative code. */
CHAND_API int chand_once_do(chand_conn *conn, const char *name,
                            int64_t timeout_ms);
/* Marks once name as done, releasing the callers waiting in
 * chand_once_do.  Returns 0 or a negative code. */
CHAND_API int chand_once_done(chand_conn *conn, const char *name);
/* chand_once_do that also gives the once's value (as Go's sync.OnceValue):
 * when it returns 0, *value (if not NULL) gets a new reference to the value
 * the runner stored with chand_once_done_value (JSON null when it stored
 * none); when it returns 1 or a negative code, *value is set to NULL. */
CHAND_API int chand_once_do_value(chand_conn *conn, const char *name,
                                  int64_t timeout_ms, json_t **value);
/* chand_once_done that stores value (borrowed; NULL stores JSON null) as
 * the once's result, handed to every caller that gets 0 from
 * chand_once_do_value.  Returns 0 or a negative code (CHAND_ETOOLARGE when
 * the value is over the server's max_value). */
CHAND_API int chand_once_done_value(chand_conn *conn, const char *name,
                                    json_t *value);
/* Waits on Cond name whose Locker is mutex (held by this session): the
 * server unlocks it, waits for a signal and locks it again.  Returns 0 with
 * the new hold's fencing token in *token, or a negative code (after a
 * timeout the mutex is held again too). */
CHAND_API int chand_cond_wait(chand_conn *conn, const char *name,
                              const char *mutex, int64_t timeout_ms,
                              int64_t *token);
/* Wakes one / all waiters of Cond name. */
CHAND_API int chand_cond_signal(chand_conn *conn, const char *name);
CHAND_API int chand_cond_broadcast(chand_conn *conn, const char *name);

/* ---- Pool ---- */

/* Puts value (borrowed) into Pool name. */
CHAND_API int chand_pool_put(chand_conn *conn, const char *name, json_t *value);
/* Takes a value from Pool name: returns 1 with a new reference in *value,
 * 0 when the pool was empty, or a negative code. */
CHAND_API int chand_pool_get(chand_conn *conn, const char *name,
                             json_t **value);

/* ---- Map (sync.Map); keys are strings, values JSON ---- */

CHAND_API int chand_map_store(chand_conn *conn, const char *name,
                              const char *key, json_t *value);
/* Returns 1 with a new reference in *value when key exists, else 0. */
CHAND_API int chand_map_load(chand_conn *conn, const char *name,
                             const char *key, json_t **value);
CHAND_API int chand_map_delete(chand_conn *conn, const char *name,
                               const char *key);
/* Returns 1 when key was present (*actual: its value), 0 when value was
 * stored (*actual: value). */
CHAND_API int chand_map_load_or_store(chand_conn *conn, const char *name,
                                      const char *key, json_t *value,
                                      json_t **actual);
/* Returns 1 when key was present and is now deleted (*value: it), else 0. */
CHAND_API int chand_map_load_and_delete(chand_conn *conn, const char *name,
                                        const char *key, json_t **value);
/* Stores value; returns 1 when key was present (*previous: old value),
 * else 0. */
CHAND_API int chand_map_swap(chand_conn *conn, const char *name,
                             const char *key, json_t *value, json_t **previous);
/* Returns 1 when key held old and now holds new_value, else 0. */
CHAND_API int chand_map_compare_and_swap(chand_conn *conn, const char *name,
                                         const char *key, json_t *old,
                                         json_t *new_value);
/* Returns 1 when key held old and was deleted, else 0. */
CHAND_API int chand_map_compare_and_delete(chand_conn *conn, const char *name,
                                           const char *key, json_t *old);
/* *entries gets a new reference to an object of every key and value. */
CHAND_API int chand_map_range(chand_conn *conn, const char *name,
                              json_t **entries);
CHAND_API int chand_map_len(chand_conn *conn, const char *name, int64_t *len);
CHAND_API int chand_map_clear(chand_conn *conn, const char *name);

/* ---- atomics (an int64 counter per name) ---- */

CHAND_API int chand_atomic_load(chand_conn *conn, const char *name,
                                int64_t *value);
CHAND_API int chand_atomic_store(chand_conn *conn, const char *name,
                                 int64_t value);
/* Adds delta; *value gets the new value. */
CHAND_API int chand_atomic_add(chand_conn *conn, const char *name,
                               int64_t delta, int64_t *value);
/* Stores value; *old gets the previous one. */
CHAND_API int chand_atomic_swap(chand_conn *conn, const char *name,
                                int64_t value, int64_t *old);
/* Returns 1 when the value was old and is now new_value, else 0. */
CHAND_API int chand_atomic_compare_and_swap(chand_conn *conn, const char *name,
                                            int64_t old, int64_t new_value);

/* ---- timers; a timer's events arrive on the channel of its name ---- */

/* One event on channel name after ms (time.After / NewTimer). */
CHAND_API int chand_timer_after(chand_conn *conn, const char *name, int64_t ms);
/* An event on channel name every ms until stopped (time.NewTicker). */
CHAND_API int chand_timer_ticker(chand_conn *conn, const char *name,
                                 int64_t ms);
/* Stops timer or ticker name; returns 1 when it was still pending, else 0
 * (as Go's Stop), or a negative code. */
CHAND_API int chand_timer_stop(chand_conn *conn, const char *name);
/* Re-arms timer or ticker name for ms; returns 1 when it was pending,
 * else 0, or a negative code. */
CHAND_API int chand_timer_reset(chand_conn *conn, const char *name, int64_t ms);
/* Runs request {method, params} (params borrowed, NULL = {}) on the server
 * after ms (time.AfterFunc); *timer gets a malloc'd timer name usable with
 * chand_timer_stop.  Returns 0 or a negative code. */
CHAND_API int chand_timer_afterfunc(chand_conn *conn, int64_t ms,
                                    const char *method, json_t *params,
                                    char **timer);
/* Runs request {method, params} on a new server goroutine (go f());
 * *goroutine gets its id. */
CHAND_API int chand_go(chand_conn *conn, const char *method, json_t *params,
                       int64_t *goroutine);

/* ---- cluster (a replicated chand; the leader answers) ---- */

/* Returns 0 and a new reference to the cluster's status in *status:
 * this node's role, term, commit index, the leader and the peers
 * (cluster.status; PROTOCOL.md has the fields). */
CHAND_API int chand_cluster_status(chand_conn *conn, json_t **status);
/* Adds node id, reached at address "host:client_port:raft_port" (an entry
 * of the `cluster` setting), as a voter once it caught up.  Returns 0 or
 * a negative code (CHAND_EEXISTS: the id is taken). */
CHAND_API int chand_cluster_add(chand_conn *conn, uint64_t id,
                                const char *address);
/* Removes node id from the cluster.  Returns 0 or a negative code
 * (CHAND_ENOTFOUND: no such node). */
CHAND_API int chand_cluster_remove(chand_conn *conn, uint64_t id);

/* ---- runtime ---- */

/* *stats gets a new reference to the server's runtime.stats object. */
CHAND_API int chand_stats(chand_conn *conn, json_t **stats);
/* *dump gets a new reference to runtime.dump (who waits on what). */
CHAND_API int chand_dump(chand_conn *conn, json_t **dump);
/* Sets GOMAXPROCS to n (n < 1: only read it); *previous gets the value
 * before. */
CHAND_API int chand_gomaxprocs(chand_conn *conn, int64_t n, int64_t *previous);

/* ------------------------------------------------------------------ */
/* Asynchronous API (libevent)                                        */
/* ------------------------------------------------------------------ */

struct event_base;
typedef struct chand_async chand_async;

/* Called once when the connection is up (rc 0) or failed (rc < 0, err
 * filled).  On failure the handle stays valid until chand_async_free. */
typedef void (*chand_connect_cb)(chand_async *a, int rc, const chand_error *err,
                                 void *arg);
/* Called exactly once per request: rc 0 with the result object (borrowed,
 * valid during the callback; json_incref to keep it), or rc < 0 with err
 * filled and result NULL.  Requests still in flight when the connection
 * drops, or when the handle is freed, fail with CHAND_ECONN; requests
 * answered not_leader are sent to the leader first (see "A replicated
 * chand" above). */
typedef void (*chand_reply_cb)(chand_async *a, int rc, json_t *result,
                               const chand_error *err, void *arg);

/* Starts connecting to host:port on base (name resolution blocks briefly;
 * pass a numeric address to avoid that).  Requests may be queued at once:
 * they are written when the connection is up.  A not_leader answer is
 * followed to the leader it names, as chand_connect does.  Returns 0 and
 * a new handle in *out, or a negative code.  Call from base's thread. */
CHAND_API int chand_async_connect(struct event_base *base, const char *host,
                                  int port, int64_t timeout_ms,
                                  chand_connect_cb cb, void *arg,
                                  chand_async **out);
/* As chand_async_connect, to url (chand://, chands://, unix:/PATH or
 * HOST[:PORT], or several of them separated by commas, as
 * chand_connect_url) with opts (may be NULL: TLS options, a user and
 * password that hello authenticates with, failover_ms).  With several
 * servers, each is dialed in turn (timeout_ms each, pausing between
 * rounds) until one answers hello, for up to the longer of timeout_ms and
 * the failover timeout.  hello opens every session; cb runs with rc 0
 * once it is answered, or with the reason the connection or the
 * credentials were refused (CHAND_ECONNECT, CHAND_EUNAUTH, ...), after
 * which the requests queued meanwhile fail with CHAND_ECONN.  Returns 0
 * and a new handle in *out, or a negative code with err (may be NULL)
 * filled (CHAND_EARG for a bad URL or option). */
CHAND_API int chand_async_connect_url(struct event_base *base, const char *url,
                                      const chand_options *opts,
                                      int64_t timeout_ms, chand_connect_cb cb,
                                      void *arg, chand_async **out,
                                      chand_error *err);
/* Queues method with params (stolen; NULL = {}) and timeout_ms (carried to
 * the server unless CHAND_FOREVER; the client fails the request with
 * CHAND_ETIMEOUT CHAND_GRACE_MS after that, counted from when it was
 * written: a request waiting for the session, or sent again to the
 * leader, starts over).  cb (may be NULL) runs on base's thread when the
 * answer comes; answers may come in any order.  Returns 0, or a negative
 * code (cb is then not called). */
CHAND_API int chand_async_call(chand_async *a, const char *method,
                               json_t *params, int64_t timeout_ms,
                               chand_reply_cb cb, void *arg);
/* Returns the number of requests in flight or waiting to be sent (hello
 * included). */
CHAND_API size_t chand_async_pending(const chand_async *a);
/* Acknowledged delivery, asynchronously: as the blocking calls above.
 * The callback of chand_async_recv_ack gets rc 1 with the value
 * (borrowed, valid during the callback), the delivery's id and attempt;
 * rc 0 when the channel is closed, drained and has nothing in flight; or
 * rc < 0 with err filled.  The others answer through a chand_reply_cb
 * (chand_async_touch's result is {ack_wait_ms}).  Each returns 0, or a
 * negative code (the callback is then not called). */
typedef void (*chand_delivery_cb)(chand_async *a, int rc, json_t *value,
                                  int64_t id, int64_t attempt,
                                  const chand_error *err, void *arg);
CHAND_API int chand_async_recv_ack(chand_async *a, const char *name,
                                   int64_t ack_wait_ms, int64_t timeout_ms,
                                   chand_delivery_cb cb, void *arg);
CHAND_API int chand_async_ack(chand_async *a, const char *name, int64_t id,
                              chand_reply_cb cb, void *arg);
CHAND_API int chand_async_nack(chand_async *a, const char *name, int64_t id,
                               int64_t delay_ms, const char *reason,
                               chand_reply_cb cb, void *arg);
CHAND_API int chand_async_touch(chand_async *a, const char *name, int64_t id,
                                int64_t ack_wait_ms, chand_reply_cb cb,
                                void *arg);
CHAND_API int chand_async_term(chand_async *a, const char *name, int64_t id,
                               const char *reason, chand_reply_cb cb,
                               void *arg);
/* select with CHAND_RECV_ACK cases (as chand_select_ack): the result is
 * {index, value?, ok?, delivery?: {id, attempt}}. */
CHAND_API int chand_async_select_ack(chand_async *a, const chand_case *cases,
                                     size_t n, bool has_default,
                                     int64_t ack_wait_ms, int64_t timeout_ms,
                                     chand_reply_cb cb, void *arg);
/* make with channel options (as chand_make_opts; o may be NULL); the
 * result is {closed?}. */
CHAND_API int chand_async_make_opts(chand_async *a, const char *name,
                                    int64_t cap, const chand_chan_opts *o,
                                    chand_reply_cb cb, void *arg);
/* Registers cb to run once when the connection drops for good (after the
 * pending requests failed): lost while it was up, or no server found
 * while moving to the leader; rc is CHAND_ECONN. */
CHAND_API void chand_async_on_close(chand_async *a, chand_connect_cb cb,
                                    void *arg);
/* Fails the requests in flight with CHAND_ECONN (their callbacks run),
 * closes the connection and frees the handle.  May be called from a
 * callback of the same handle.  NULL is ok. */
CHAND_API void chand_async_free(chand_async *a);

#ifdef __cplusplus
}
#endif

#endif /* CHAND_CLIENT_H */
