/*
 * daemon.h - the daemon's internal contract between its modules, one job
 * per file:
 *
 * On top (they call the rest; nothing calls them):
 *   main.c       wiring: settings, runtime, server, signals, metrics
 *   service.c    sd_notify, socket activation, SIGHUP reload (service.h)
 *   metrics.c    /metrics, /healthz, /readyz over evhttp (metrics.h)
 *   conf.c, cfgfile.c   the settings and where they come from
 * The network side (server.h is its internal contract):
 *   iothread.c   the server object, its I/O threads, the drain
 *   listener.c   bind or the activated socket, accept, refuse
 *   session.c    one connection's life: open, end, close, refs, heartbeat
 *   session_out.c   its output: cap, answer queue, write list, give-back
 *   session_gate.c  fsync = always: output held until durable
 *   framing.c    one connection's input: reads, line framing, fair turns
 * The request side:
 *   dispatch.c   from a line to a handler: the handler table, batches
 *   dreq.c       a request's answers, failures, parameters, dreq_obj
 *   dispatch_detached.c   detached requests (go, timer.afterfunc)
 *                (dispatch_internal.h: the calls between these three)
 *   park.c       waiting requests: goroutines, awaits, the waiters count
 *   h_*.c        the handlers, one file per method family (channels:
 *                h_chan_obj.c, h_chan.c, h_chan_select.c, h_ack.c;
 *                h_chan_internal.h; timers: h_timer.c, and h_timer_dur.c
 *                their durability; h_timer_internal.h)
 *   dlv.c        acknowledged deliveries: ids, deadlines, redelivery,
 *                dead letters (dlv.h)
 *   stats.c      the one snapshot runtime.stats and /metrics render
 *   holds.c      lock holds, fencing tokens, leases, wait-for graph
 *                (holds.h, for h_lock.c)
 * Below both (they call nothing above them):
 *   registry.c   the namespace of named objects: codes, no answers
 *   server.c     server-wide state: settings in force, counters, the
 *                drain flag; it calls nothing at all
 *   hval.c, log.c   values as text; logging
 *   proto/ (the wire: parsing, checking, answer lines), runtime/ (rt.h)
 * The network side hands lines to the request side, which answers (and
 * reads its figures) through the session: that circle is inherent to a
 * server, and the only one.
 *
 * Adding a method family: write daemon/h_<family>.c with handlers of type
 * disp_handler, declare them below, and add one line per method to the
 * table in dispatch.c (the method itself, with its parameters, lives in
 * proto.c's table).  A handler is called with a checked request (parameter
 * names and types are already valid) and must finish it exactly once with
 * dreq_ok()/dreq_fail() -- at once on the I/O thread when it can complete
 * now (RT_POLL calls), later from a goroutine started by dreq_park(), or
 * from an rt_await's completion (send, recv: dreq_await_begin()).
 *
 * Threads: the I/O threads (io_threads, one by default; a session stays on
 * one) run libevent and every handler's first call.
 * Goroutines (dreq_park, go, afterfunc) run handlers' blocking parts, and
 * awaits complete on whichever thread woke them.  Every function here may
 * be called from any of them unless it says otherwise.
 */
#ifndef CHAND_DAEMON_H
#define CHAND_DAEMON_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "conf.h"
#include "hval.h"
#include "jfast.h"
#include "log.h"
#include "proto.h"
#include "rt.h"

/* The Makefile passes VERSION as -DCHAND_VERSION to every compile; this
 * is only for a build outside it. */
#ifndef CHAND_VERSION
#define CHAND_VERSION "1.0.0"
#endif

/* ------------------------------------------------------------------ */
/* Server-wide state                                                  */
/* ------------------------------------------------------------------ */

/* server.c: the state every module may read; it calls nothing else. */

/* Room for request counters: more methods than proto's table will ever
 * hold (metrics_start checks). */
#define SRV_MAX_METHODS 256

/* Security events counted in srv_stats.sec. */
typedef enum srv_sec_event {
    SRV_AUTH_OK,              /* auth or hello credentials accepted */
    SRV_AUTH_FAILED,          /* ... refused (wrong user or password) */
    SRV_AUTH_DELAYED,         /* attempts the failure limiter held back */
    SRV_REFUSED_UNAUTH,       /* a request before authentication */
    SRV_REFUSED_DENIED,       /* a request outside the user's rules */
    SRV_REFUSED_LIMIT,        /* an attempt refused: too many failures */
    SRV_REFUSED_BUSY,         /* an attempt refused: the hash queue full */
    SRV_REFUSED_AUTH_TIMEOUT, /* a session closed: no auth in time */
    SRV_TLS_HANDSHAKE_FAILED, /* a TLS handshake failed or timed out */
    SRV_SEC_N
} srv_sec_event;

/* Counters (relaxed atomics; stats.c reads them into one snapshot). */
typedef struct srv_stats {
    _Atomic int64_t sessions;
    _Atomic int64_t metrics_conns; /* open /metrics connections (metrics.c) */
    _Atomic int64_t objects;
    _Atomic int64_t waiters; /* requests at their wait (park.c) */
    _Atomic int64_t held_locks;
    _Atomic int64_t requests; /* total requests seen */
    _Atomic uint64_t bytes_in, bytes_out;
    /* Answered requests by method id and result (0 ok, 1 error), and
     * those answered before a method was known. */
    _Atomic uint64_t answers[SRV_MAX_METHODS][2];
    _Atomic uint64_t answers_invalid[2];
    /* Security (security.c, framing.c): what an operator watches for a
     * brute force or a misconfigured client. */
    _Atomic uint64_t sec[SRV_SEC_N];
    _Atomic int64_t users; /* users in the table in force (0: none) */
} srv_stats;

extern srv_stats srv_stat;
/* The settings in force (srv_new copies them; a reload changes the ones
 * that can change, word by word). */
extern conf srv_conf;

/* Returns true once a drain (SIGTERM) began. */
bool srv_draining(void);
/* Marks the drain begun.  Returns true the first time, false after. */
bool srv__set_draining(void);
/* Counts one answered request of method m (NULL: the request was invalid
 * before a method was known) that ended ok or with an error. */
void srv_count_answer(const proto_method *m, bool ok);
/* Counts one security event. */
void srv_count_sec(srv_sec_event ev);
/* Count bytes read from / written to clients. */
void srv_count_bytes_in(size_t n);
void srv_count_bytes_out(size_t n);

/* iothread.c, listener.c: the server object. */

typedef struct srv srv;
struct event_base;
/* Returns a new server listening per c, or on listen_fd when it is >= 0
 * (a socket systemd passed; stolen), or NULL with a message in err.  The
 * runtime must be started.  Copies c into srv_conf. */
srv *srv_new(const conf *c, int listen_fd, char *err, size_t errlen);
/* As srv_new with the nfds sockets systemd passed in fds (stolen; several:
 * TCP, the unix socket, TLS), or none (nfds 0). */
srv *srv_new_fds(const conf *c, const int *fds, int nfds, char *err,
                 size_t errlen);
/* Runs the event loops (io[0] on the calling thread) until a drain ends.
 * Returns 0. */
int srv_run(srv *v);
/* Starts the drain: no new connections, every waiting request of every
 * session answered with reason cancelled, then srv_run returns once the
 * answers have left (or shutdown-grace-ms passed).  io[0] only. */
void srv_drain(srv *v);
/* Wakes every I/O thread to release the answers that waited for the
 * durability log (persist.c's callback; any thread). */
void srv_durable_wake(void);
/* Frees the server after srv_run returned. */
void srv_free(srv *v);
/* Returns the bound port. */
int srv_port(const srv *v);
/* Returns the bound TLS port (0: no TLS listener). */
int srv_tls_port(const srv *v);
/* Returns io[0]'s event base (borrowed), for the signal events and the
 * metrics server. */
struct event_base *srv_base(srv *v);
/* Returns the bytes queued in sessions' output buffers: counted now on an
 * I/O thread, elsewhere the last count. */
int64_t srv_output_bytes(void);

/* mem.c: the bytes clients make the daemon hold, against max_memory. */
/* What a parked request costs besides its line: the goroutine's touched
 * stack and the request's records. */
#define MEM_PARK_COST 8192
/* What an await costs besides its line. */
#define MEM_AWAIT_COST 512
/* Charge / release n bytes (never refused: the check is mem_full). */
void mem_add(int64_t n);
void mem_sub(int64_t n);
/* Returns the bytes charged now. */
int64_t mem_used(void);
/* Returns true when holding more bytes would pass max_memory. */
bool mem_full(int64_t more);
/* Returns the bytes a jansson value (borrowed) is charged at: the same
 * for the same value, so a release matches its charge. */
int64_t mem_json_cost(const json_t *v);

/* stats.c: one snapshot that runtime.stats and /metrics both render. */
typedef struct stats_snap {
    int goroutines, gomaxprocs, numcpu, threads;
    int64_t sessions, objects, waiters, held_locks, requests;
    int64_t open_fds, rss_bytes, output_buffer_bytes;
    int64_t memory_bytes, max_memory; /* mem.c's count and its limit */
    /* Acknowledged deliveries (dlv.c): in flight now; totals since start. */
    int64_t dlv_inflight, dlv_redelivered, dlv_dead_letters, dlv_dropped;
    bool draining;
    /* Durability (persist.c): all 0 when data_dir is empty. */
    bool persist;
    int fsync; /* conf.fsync */
    int64_t log_bytes, snapshot_bytes, pending_bytes, fsyncs;
    int64_t last_fsync_ns, appended_lsn, durable_lsn, snapshots;
    int wal_error; /* 0, or -errno while the log cannot be written */
    /* Security: users 0 without users_file. */
    int64_t users;
    bool tls;
    uint64_t sec[SRV_SEC_N];       /* srv_stats.sec */
    int64_t hashing, hash_waiting; /* hashgate.h's counts */
    int hash_slots, hash_queue;    /* and its sizes */
    /* Cluster (persist_repl.c): all 0 outside one. */
    bool cluster;
    int raft_role; /* repl_role */
    int64_t raft_term, raft_commit, raft_peers, raft_leader, raft_rebuilds;
} stats_snap;
/* Fills *sn.  On an I/O thread (output bytes are counted there). */
void stats_take(stats_snap *sn);

/* ------------------------------------------------------------------ */
/* Sessions                                                           */
/* ------------------------------------------------------------------ */

typedef struct sess sess;

/* Returns the session's id (from 1, never reused). */
uint64_t sess_id(const sess *s);
/* Returns the session's cancel token (borrowed, lives as long as s). */
rt_cancel *sess_cancel(sess *s);
/* Returns false once the connection has ended. */
bool sess_alive(sess *s);
void sess_retain(sess *s);
void sess_release(sess *s);
/* Ends s as a disconnect does once nothing arrives from it for ms (0:
 * never; any input resets it).  Returns 0, or -1 when out of memory.  On
 * s's I/O thread (hello's first call). */
int sess_set_heartbeat(sess *s, int64_t ms);
/* Counts requests of s waiting on goroutines or awaits (park.c), so that
 * the drain waits for their answers. */
void sess_parked(sess *s, int delta);

/* Values handed to a session with its answer: given back to their
 * channels if the session is gone before the answer reached its socket. */
typedef struct gback {
    rt_chan *chan; /* retained */
    hval value;    /* owned */
    uint64_t end;  /* session.c: where its answer ends in the
                    * session's output */
    struct gback *next;
} gback;

/* Returns a new give-back record for value (stolen) on c (retained), or
 * NULL when out of memory (value is then still the caller's). */
gback *gback_new(rt_chan *c, hval value);
/* Gives every value back to its channel (RT_POLL, else from a goroutine)
 * and frees the list. */
void gback_run(gback *g);
/* Frees the list: the values were handed over. */
void gback_free(gback *g);

/* Queues one serialised answer line (stolen) to s; gives gb back if s is
 * gone.  Any thread. */
void sess_deliver(sess *s, char *line, size_t len, gback *gb);
/* The same on the I/O thread only, with line borrowed (copied out). */
void sess_deliver_io(sess *s, const char *line, size_t len, gback *gb);

/* Scratch that belongs to one I/O thread, for dispatch: the buffer an
 * answer is written into, and the names cache of its request scans. */
typedef struct sess_local {
    jfast_buf out;
    proto_names *names;
} sess_local;
/* Returns s's I/O thread's scratch when called on that thread, else NULL. */
sess_local *sess_local_get(sess *s);

/* ------------------------------------------------------------------ */
/* Security: who a session is and what it may do (security.c)         */
/* ------------------------------------------------------------------ */

/* security.c uses, below it: users.c (the users file, passwords), acl.c
 * (rules and the method table), authlimit.c (per-peer slowdown),
 * hashgate.c (the cap on concurrent password hashes; stats.c reads its
 * counts) and tls.c (the server's certificates). */

struct sockaddr;
struct tls_server;
typedef struct dreq dreq;

/* True once users are configured (users_file): checks apply. */
extern bool sec_on;

/* Loads the users file, the TLS certificates, the failure limiter and
 * the hash gate per c (main, before srv_new).  Returns 0 or -1 with err filled.
 */
int sec_init(const conf *c, char *err, size_t errlen);
/* SIGHUP: reloads the users file and the certificates; on error the old
 * ones stay (logged).  io[0]. */
void sec_reload(const conf *c);
/* Frees what sec_init made. */
void sec_fini(void);
/* Protected mode: returns 0 when serving sa (what: the setting, for the
 * message) is allowed -- a loopback address, users configured, or
 * allow_anonymous (logged as a warning) -- else -1 with err filled. */
int sec_protect_check(const struct sockaddr *sa, unsigned salen,
                      const char *what, char *err, size_t errlen);
/* Returns true when TLS certificates are loaded. */
bool sec_tls_on(void);
/* Returns the TLS server (borrowed), or NULL. */
struct tls_server *sec_tls(void);
/* chand --hash-password: reads a password on stdin, prints its hash.
 * Returns the exit code. */
int sec_hash_password_main(void);
/* Checks a validated request of s before it runs.  Returns 0 when it may
 * run, else -1 with *reason (unauthenticated or denied) and why filled. */
int sec_check(sess *s, const proto_request *req, proto_reason *reason,
              char *why, size_t whylen);
/* Removes from result's "objects" the names r's user may not read (list,
 * runtime.dump); result is borrowed. */
void sec_filter(dreq *r, json_t *result);
/* hello's credentials: returns true when r carries user/password and was
 * taken (answered later, authenticated or not); false: serve hello as
 * usual. */
bool sec_hello_auth(dreq *r);
/* The auth method. */
void h_auth(dreq *r);

/* ------------------------------------------------------------------ */
/* Named objects                                                      */
/* ------------------------------------------------------------------ */

typedef enum obj_type {
    OBJ_CHAN = 1,
    OBJ_MUTEX,
    OBJ_RWMUTEX,
    OBJ_WG,
    OBJ_ONCE,
    OBJ_COND,
    OBJ_POOL,
    OBJ_MAP,
    OBJ_ATOMIC,
    OBJ_TIMER,
    OBJ_TYPE_COUNT
} obj_type;

typedef struct obj obj;
typedef struct dreq dreq;

typedef struct obj_ops {
    obj_type type;
    const char *name;                   /* "chan", "mutex", ... */
    size_t size;                        /* bytes of the family's struct */
    int (*init)(obj *o, dreq *r);       /* zero-value init; 0 or -1 */
    void (*fini)(obj *o);               /* frees the family's resources */
    void (*drop)(obj *o);               /* removed from the namespace */
    void (*info)(obj *o, json_t *into); /* list/dump fields */
    /* Durability's snapshot (persist.c): emits o's state with
     * persist_snap_emit, tagged with o->lsn read under the same lock as
     * the state; 0 or -1.  NULL: nothing persists. */
    int (*snap)(obj *o, void *snap);
    /* Returns true while o may not be dropped (a held lock, a once in
     * progress); else marks o dropped under the family's own lock, so
     * that nothing takes it afterwards.  NULL: always droppable. */
    bool (*busy)(obj *o);
    /* Ends whatever makes o busy, as if its holders had gone, and marks o
     * dropped, for a rebuild that replaces the whole state (persist_repl.c):
     * nothing is logged, and its waiters are refused.  Required with
     * busy: a busy object would survive such a rebuild. */
    void (*forget)(obj *o);
    /* Returns true when o is in its zero state (unlocked, count 0, empty),
     * called under the registry's lock with no other reference to o (see
     * obj_done).  NULL: kept until dropped (channels, onces...). */
    bool (*idle)(obj *o);
} obj_ops;

/* Every object begins with this header; a family's struct embeds it first. */
struct obj {
    const obj_ops *ops;
    char *name;
    _Atomic int refs;
    _Atomic bool dropped;
    obj *hnext;            /* registry bucket chain */
    _Atomic uint64_t lsn;  /* durability: its last effect's
                            * log sequence number (persist.h) */
    pthread_mutex_t wmu;   /* guards the waiter list */
    dreq *waiters;         /* parked requests, for dump */
    _Atomic uint64_t nops; /* requests that named it (top) */
};

/* What reg_lookup returns: REG_OK, or why there is no object. */
enum {
    REG_OK = 0,
    REG_ENOENT = -1, /* no such name (and not created) */
    REG_ETYPE = -2,  /* the name is another type's */
    REG_ELIMIT = -3, /* creating it would pass max-objects */
    REG_ENOMEM = -4, /* out of memory, or the family's init failed */
    REG_EBUSY = -5   /* reg_drop: held or in progress (ops->busy) */
};

typedef struct reg_found {
    obj *o;              /* REG_OK: a new reference */
    const obj_ops *have; /* REG_ETYPE: the existing object's ops */
    bool created;        /* REG_OK: made by this call */
} reg_found;

/* Finds name, of type want (NULL: any type).  When it is absent and create
 * is true (want given), makes it with want->init(o, arg).  Returns REG_OK
 * or a REG_E* code, with f filled as its fields say.  Answers nothing. */
int reg_lookup(const char *name, const obj_ops *want, bool create, dreq *arg,
               reg_found *f);
/* As reg_lookup, but answers r on failure (not_found, wrong_type, limit,
 * internal), which finishes and frees r, and returns NULL; else returns a
 * new reference.  create: make name when absent (want must be given). */
obj *dreq_obj(dreq *r, const char *name, const obj_ops *want, bool create);
/* As dreq_obj with create, and *created set when this call made it. */
obj *dreq_obj_make(dreq *r, const char *name, const obj_ops *ops,
                   bool *created);
/* Removes name; returns 0, REG_ENOENT, or REG_EBUSY when its family's
 * busy op refuses (then it stays). */
int reg_drop(const char *name);
/* reg_drop, with a busy object's holders forgotten first (its forget op):
 * for a rebuild of the whole state, never for a client's drop. */
int reg_drop_forced(const char *name);
/* Drops a reference. */
void obj_release(obj *o);
/* Drops the caller's reference to o after a request that may have left it
 * in its zero state: when nothing else refers to it and ops->idle says it
 * is zero, it also leaves the registry (as with Go's zero values, nobody
 * can tell: the next use makes it again).  Called by the handlers of the
 * families that have idle. */
void obj_done(obj *o);
obj *obj_retain(obj *o);
/* Calls fn for every object (retained during the call) whose name starts
 * with prefix (may be NULL). */
void reg_foreach(const char *prefix, void (*fn)(obj *o, void *arg), void *arg);
/* Calls fn for a page of the objects whose name starts with prefix (may
 * be NULL), from cursor (0: the start) on: at most limit (>= 1) of them,
 * in bucket order.  Returns the cursor of the next page, 0 when the walk
 * is complete (as Redis's SCAN: an object present for the whole walk is
 * seen exactly once).  A cursor past the table also returns 0. */
uint64_t reg_scan(const char *prefix, uint64_t cursor, size_t limit,
                  void (*fn)(obj *o, void *arg), void *arg);
/* Returns a new "unique" name with the given prefix ("afterfunc.17"). */
void reg_unique_name(const char *prefix, char *buf, size_t len);
/* Numbers the names from floor on at least: a start with a data_dir
 * passes its epoch's first token, a cluster's new leader its term's, so
 * no run or leader hands out a name an earlier one gave (a fired
 * afterfunc's, which a late timer.stop would then cancel in another's
 * place). */
void reg_name_floor(uint64_t floor);

/* ------------------------------------------------------------------ */
/* Requests                                                           */
/* ------------------------------------------------------------------ */

typedef struct dbatch dbatch;

struct dreq {
    sess *s;                           /* retained; NULL when detached (go) */
    json_t *id;                        /* new ref; NULL: notification */
    json_t *args[PROTO_MAX_PARAMS];    /* new refs, by m->params index */
    proto_text text[PROTO_MAX_PARAMS]; /* the scanner's text values,
                                        * borrowed from the line: only until the
                                        * handler returns, or parks or awaits
                                        * (which build them into args[]) */
    proto_case *cases; /* select's cases as the scanner read them
                        * (owned; else in args[]) */
    size_t ncases;
    const proto_method *m;
    int64_t timeout_ms; /* -1: forever */
    rt_deadline_t dl;   /* absolute, fixed at arrival */
    dbatch *batch;      /* NULL, or the batch it answers into */
    size_t slot;
    /* Wait bookkeeping, for runtime.dump (guarded by wobj->wmu). */
    obj *wobj;
    const char *wreason;
    int64_t wsince;
    int64_t wgoid; /* the goroutine that waits; 0: an await */
    dreq *wnext, *wprev;
    void *ctx; /* the handler's own state */
};

typedef void (*disp_handler)(dreq *r);

/* Answers r with result (stolen; NULL = {}) and frees r. */
void dreq_ok(dreq *r, json_t *result);
/* Answers r with {k1: v1, k2: b2} (v1 borrowed, NULL = null; k2 NULL: no
 * second member), written without building the object; keys are plain
 * ASCII names, written as they are.  gb as dreq_ok_gb. */
void dreq_ok_pair(dreq *r, const char *k1, const json_t *v1, const char *k2,
                  bool b2, gback *gb);
/* Answers r with {"index": index} (select's send case or default). */
void dreq_ok_index(dreq *r, int index);
/* Answers a receive: {"value": v, "ok": true}, or with v NULL {"value":
 * null, "ok": false}; with "index": index first when index >= 0 (select).
 * v is borrowed (read before gb can run); gb as dreq_ok_gb. */
void dreq_ok_recv(dreq *r, int index, const hval *v, gback *gb);
/* The same for an acknowledged receive of v (borrowed): adds "delivery":
 * {"id": id, "attempt": attempt}. */
void dreq_ok_recv_dlv(dreq *r, int index, const hval *v, uint64_t id,
                      uint32_t attempt);
/* Answers r with {key: n}, likewise. */
void dreq_ok_int(dreq *r, const char *key, int64_t n);
/* As dreq_ok, handing gb's values with the answer (given back when the
 * session is gone). */
void dreq_ok_gb(dreq *r, json_t *result, gback *gb);
/* Answers r with an error of reason (message printf-style) and frees r. */
void dreq_fail(dreq *r, proto_reason reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* As dreq_fail with data (stolen) merged into error.data. */
void dreq_fail_data(dreq *r, proto_reason reason, json_t *data, const char *fmt,
                    ...) __attribute__((format(printf, 4, 5)));
/* Answers r with JSON-RPC's invalid params (-32602), data (stolen, may be
 * NULL) merged into error.data. */
void dreq_fail_params(dreq *r, json_t *data, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Answers r for a runtime error code (RT_E*): the reason that matches it
 * and rt_strerror's words. */
void dreq_fail_rt(dreq *r, int code);
/* Runs fn(r) on a goroutine with the session's cancel attached (detached
 * requests: none).  fn must finish r.  From a goroutine, runs fn now.
 * Returns 0, or -1 when no goroutine could be started: r is then answered
 * (internal error) and freed, and r->ctx is still the caller's to undo. */
int dreq_park(dreq *r, disp_handler fn);
/* Records that r waits on o for reason (Go's words) / stops waiting
 * (park.c, as the four functions around). */
void dreq_wait_begin(dreq *r, obj *o, const char *reason);
void dreq_wait_end(dreq *r);
/* For a wait without a goroutine (rt_await; sessions only): records it as
 * dreq_wait_begin does and counts it as parked for the drain.  Returns the
 * session's cancel token for the await.  dreq_await_end undoes both and
 * must run before r is finished. */
rt_cancel *dreq_await_begin(dreq *r, obj *o, const char *reason);
void dreq_await_end(dreq *r);
/* Returns the number of waiting requests (awaits, and parked requests
 * whose goroutine the runtime shows parked): the one definition that
 * runtime.stats, runtime.dump and /metrics report.  O(goroutines +
 * objects). */
int64_t park_waiters(void);
/* Builds every parameter the scanner left as text into args[] (before the
 * line goes: parking, awaits).  Internal to dreq.c and park.c. */
void dreq__keep_params(dreq *r);
/* Returns true when r's session has ended or the drain began.  A parked
 * handler checks it before its blocking call: the goroutine may first run
 * long after the request arrived, and the runtime's fast paths (a free
 * buffer slot, a parked partner) do not look at the cancel token, so the
 * operation would take effect for a session that is gone. */
bool dreq_cancelled(dreq *r);
/* Returns the session id or 0 when detached. */
uint64_t dreq_sid(const dreq *r);
/* Parameter helpers (borrowed values; types were checked by proto).  A
 * value the scanner left as text is built on first use. */
json_t *dreq_param(dreq *r, const char *key);
const char *dreq_str(dreq *r, const char *key);
int64_t dreq_int(dreq *r, const char *key, int64_t dflt);
/* Returns key's value as the scanner's text (compact JSON, borrowed from
 * the line) and forgets it, or {NULL, 0} when it was not read as text
 * (then dreq_param has it). */
proto_text dreq_take_text(dreq *r, const char *key);
/* Returns a human text for a runtime error received while waiting. */
proto_reason disp_rt_reason(int code);

/* Runs a nested {method, params} request detached from any session (go,
 * timer.afterfunc).  Returns 0, or -1 with err filled when it is invalid.
 * check_only validates without running. */
int disp_run_detached(json_t *request, bool check_only, proto_error *err);

/* Called by framing.c for each complete line of s (I/O thread). */
void disp_line(sess *s, const char *line, size_t len);
/* Called by session.c when s ended, after its cancel fired (I/O thread). */
void disp_session_end(sess *s);
/* Fills the handler table; returns 0 or -1 (a method lacks a handler is
 * only logged: it answers "method not found"). */
int disp_init(void);
/* Frees what disp_init made (after the server has stopped). */
void disp_fini(void);

/* ------------------------------------------------------------------ */
/* Handlers, by family (one file each)                                */
/* ------------------------------------------------------------------ */

/* h_core.c */
void h_hello(dreq *r);
void h_ping(dreq *r);
void h_list(dreq *r);
void h_drop(dreq *r);
void h_go(dreq *r);
void h_rt_stats(dreq *r);
void h_rt_gomaxprocs(dreq *r);
void h_rt_dump(dreq *r);
void h_cluster_status(dreq *r);
void h_cluster_add(dreq *r);
void h_cluster_remove(dreq *r);
void h_cluster_transfer(dreq *r);

/* h_chan*.c */
extern const obj_ops hchan_ops;
void h_make(dreq *r);
void h_send(dreq *r);
void h_recv(dreq *r);
void h_close(dreq *r);
void h_len(dreq *r);
void h_select(dreq *r);
/* h_ack.c */
void h_ack(dreq *r);
void h_nack(dreq *r);
void h_touch(dreq *r);
void h_term(dreq *r);
/* Creates channel name (cap, type "any") for the timer family; returns a
 * new reference or NULL after failing r. */
obj *hchan_make_for_timer(dreq *r, const char *name, size_t cap);
/* Returns the runtime channel of a channel object (borrowed). */
rt_chan *hchan_rt(obj *o);
/* Attaches timer state to a channel object; fini runs when it is freed. */
void hchan_set_timer(obj *o, void *timer, void (*fini)(void *timer));
/* Returns the timer state of o (NULL: not a timer channel). */
void *hchan_timer(obj *o);

/* h_sync.c */
void h_wg_add(dreq *r);
void h_wg_done(dreq *r);
void h_wg_wait(dreq *r);
void h_once_do(dreq *r);
void h_once_done(dreq *r);
void h_pool_put(dreq *r);
void h_pool_get(dreq *r);
/* Reopens the onces an ended session was running. */
void honce_session_end(sess *s);

/* h_map.c */
void h_map_store(dreq *r);
void h_map_load(dreq *r);
void h_map_delete(dreq *r);
void h_map_load_or_store(dreq *r);
void h_map_load_and_delete(dreq *r);
void h_map_swap(dreq *r);
void h_map_compare_and_swap(dreq *r);
void h_map_compare_and_delete(dreq *r);
void h_map_range(dreq *r);
void h_map_len(dreq *r);
void h_map_clear(dreq *r);
void h_atomic_load(dreq *r);
void h_atomic_store(dreq *r);
void h_atomic_add(dreq *r);
void h_atomic_swap(dreq *r);
void h_atomic_cas(dreq *r);

/* h_timer.c */
void h_timer_after(dreq *r);
void h_timer_ticker(dreq *r);
void h_timer_stop(dreq *r);
void h_timer_reset(dreq *r);
void h_timer_afterfunc(dreq *r);

/* h_lock.c */
void h_mutex_lock(dreq *r);
void h_mutex_unlock(dreq *r);
void h_rw_lock(dreq *r);
void h_rw_unlock(dreq *r);
void h_rw_rlock(dreq *r);
void h_rw_runlock(dreq *r);
void h_mutex_renew(dreq *r);
void h_rw_renew(dreq *r);
void h_cond_wait(dreq *r);
void h_cond_signal(dreq *r);
void h_cond_broadcast(dreq *r);
/* Releases the holds of an ended session (except leases). */
void hlock_session_end(sess *s);

#endif /* CHAND_DAEMON_H */
