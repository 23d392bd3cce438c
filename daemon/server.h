/*
 * server.h - the contract between the files of the network side:
 * iothread.c (the server object, its I/O threads and the drain),
 * listener.c (accepting connections) and one connection's files:
 * session.c (its life), session_out.c (output, give-back), session_gate.c
 * (output held for durability), framing.c (input, fair turns).  Nothing
 * else includes it; the rest of the daemon sees the server through
 * daemon.h.
 *
 * Threads: each session lives on one I/O thread, and only that thread
 * touches its bufferevent.  io[0] runs on the thread that calls srv_run,
 * with the listener, the signal events and the metrics server; the others
 * serve only sessions.
 */
#ifndef CHAND_SERVER_H
#define CHAND_SERVER_H

#include "daemon.h"

#include <event2/util.h>

struct bufferevent;
struct event;
struct event_base;
struct evconnlistener;
struct sockaddr;

typedef struct srv_io srv_io;

/* One I/O thread: an event base and the sessions it serves. */
struct srv_io {
    struct event_base *base;
    pthread_t tid;
    bool started;
    pthread_mutex_t mu; /* guards sessions (accept on io[0],
                         * close here, stats/drain anywhere) */
    sess *sessions;
    sess *whead, *wtail;      /* sessions with answers to write */
    struct event *ev_wflush;  /* writes them (sess__wflush_cb) */
    struct event *ev_durable; /* the log synced: release held answers */
    uint64_t kicks;           /* persist_kicks() its sessions saw */
    struct event *ev_hold;    /* a snapshot hold's deadline */
    bool holding;             /* sessions wait on the hold (session_hold.c) */
    char rbuf[16384];         /* reads while a session's input is empty */
    sess_local local;         /* dispatch's scratch (sess_local_get) */
};

#define SRV_MAX_IO 64

/* An answer line queued for a session by another thread. */
typedef struct outent {
    char *line;
    size_t len;
    gback *gb;
    struct outent *next;
} outent;

struct sess {
    uint64_t id;
    _Atomic int refs;
    rt_cancel *cancel;
    pthread_mutex_t mu; /* guards the queue, and dead's change */
    _Atomic bool dead;  /* no more answers accepted (read
                         * without mu by sess_alive) */
    outent *qhead, *qtail;
    _Atomic int parked; /* requests waiting on goroutines */
    /* its I/O thread only: */
    srv_io *io; /* the I/O thread that serves it */
    struct bufferevent *bev;
    struct event *ev_flush; /* answers queued by goroutines */
    struct event *ev_more;  /* more input after a fair share */
    struct event *ev_read;  /* the socket is readable (sess__recv_cb) */
    struct event *ev_kill;  /* hard close if a graceful one stalls */
    struct event *ev_hb;    /* heartbeat check (hello's heartbeat_ms) */
    int64_t hb_ms;          /* 0: no heartbeat asked for */
    int64_t last_in_ms;     /* when input last arrived (with hb_ms) */
    int64_t mem_charged;    /* its buffers' bytes, as charged (mem.c) */
    sess *prev, *next;
    bool ended;         /* sess__end ran */
    bool batching;      /* in sess_process: sess_push follows */
    bool held;          /* its input waits for a snapshot hold's end */
    bool wqueued;       /* on its I/O thread's write list */
    sess *wnext;        /* link in that list */
    uint64_t out_added; /* bytes ever added to the output */
    /* The values of answers that are in the output buffer but not yet in
     * the socket (gback.end: out_added once the answer was added): if the
     * session ends before those bytes leave, they go back to their
     * channels (a cut slow reader loses nothing). */
    gback *phead, *ptail;
    _Atomic size_t outq; /* bytes in the output buffer, for the
                          * drain and stats on other threads */
    /* fsync = always: answers held in the output until the log is
     * synced up to the LSN read when they were added (persist.h): marks
     * [ghead, gn) of ([start, end) in out_added, lsn), oldest first. */
    struct sess_gmark {
        uint64_t start, end, lsn;
    } * gmarks;
    size_t ghead, gn, gcap;
    /* Identity (security.c).  users: the users table the session was
     * opened or authenticated with (a reference; NULL: no users are
     * configured and everything is allowed); user: borrowed from it, NULL
     * until authenticated.  Written on the I/O thread, or by the auth
     * goroutine while auth_busy holds the session's input. */
    int kind;     /* SESS_TCP, SESS_UNIX, SESS_TLS */
    bool guarded; /* users were configured at open: the
                   * checks apply (set once, at open) */
    struct users_table *users;
    const struct users_user *user;
    _Atomic bool auth_busy;     /* an auth is being verified: no line is
                                 * served until it answers */
    _Atomic bool authed;        /* user is set (release: user's store) */
    bool has_alkey;             /* alkey names the peer (authlimit) */
    unsigned char alkey[17];    /* authlimit_key of the peer */
    char peer[64];              /* the peer, for the log */
    struct event *ev_auth;      /* the pre-authentication deadline */
    struct evbuffer *tls_stage; /* TLS: this turn's answers (sess_push) */
};

/* How a session came in (sess.kind). */
enum { SESS_TCP = 0, SESS_UNIX, SESS_TLS };

struct srv;
/* One listening socket and what comes in through it (listener.c). */
typedef struct srv_lis {
    struct srv *v;
    struct evconnlistener *lis;
    int kind; /* SESS_TCP, SESS_UNIX, SESS_TLS */
} srv_lis;

struct srv {
    struct event_base *base;    /* io[0].base */
    struct evconnlistener *lis; /* the TCP listener (lists[0].lis) */
    srv_lis lists[3];           /* TCP, unix, TLS (lis NULL: none) */
    char unix_path[108];        /* the socket file made here ("": none) */
    unsigned long long unix_dev, unix_ino; /* ... and its identity */
    int tls_port;                          /* the TLS port bound (0: none) */
    struct event *ev_resume;               /* accepting again after EMFILE */
    struct event *ev_drain;                /* polls the drain's progress */
    int nio;                               /* I/O threads serving */
    int nmade;                             /* io[] set up (nio, or more when a
                                            * thread could not start) */
    unsigned next_io;                      /* round-robin for new sessions */
    srv_io io[SRV_MAX_IO];
    int port;
    int64_t drain_start;
};

/* The I/O thread the caller runs on, NULL on any other thread (defined in
 * session.c, its main reader; set by iothread.c).  A thread-local is safe
 * here because I/O threads never run goroutines (a goroutine may resume
 * on another thread). */
extern __thread srv_io *srv__tls_io;

/* listener.c */

/* Listens per c on v->base (TCP; the unix socket and TLS when
 * configured), or on the nfds sockets systemd passed in fds (told apart
 * by getsockname: unix, else TLS on tls_port, else TCP; bind and port do
 * not apply), and sets v->lists, v->lis, v->port and v->ev_resume.
 * Refuses a non-loopback address without users (protected mode).
 * Returns 0, or -1 with a message in err (the fds are then closed). */
int srv__listen(srv *v, const conf *c, const int *fds, int nfds, char *err,
                size_t errlen);
/* Stops accepting for good (the drain).  io[0]. */
void srv__listen_stop(srv *v);
/* Frees what srv__listen made, closing the socket. */
void srv__listen_free(srv *v);

/* session.c, session_out.c (output), session_gate.c (fsync = always) */

/* Makes a session of kind (SESS_*) for the accepted socket fd (stolen)
 * and lists it on io.
 * io[0].  Returns 0, or -1 when out of memory (fd closed, logged). */
int sess__open(srv_io *io, evutil_socket_t fd, const struct sockaddr *addr,
               int alen, int kind);
/* Calls fn for every session of io under the list's lock (fn must not
 * close sessions); stops early when fn returns false.  Returns false if it
 * stopped early.  Any thread. */
bool sess__each(srv_io *io, bool (*fn)(sess *s, void *arg), void *arg);
/* Returns false while s still has a waiting request or unsent output.
 * Any thread. */
bool sess__drained(sess *s);
/* Returns the bytes in s's output buffer (as its thread last saw them). */
size_t sess__outq(sess *s);
/* The event callback of io->ev_wflush: writes the answers of the sessions
 * on io's write list (see sess__push_later). */
void sess__wflush_cb(evutil_socket_t fd, short what, void *arg);
/* The event callback of io->ev_durable: pushes the sessions whose
 * answers wait for the log (fsync = always). */
void sess__durable_cb(evutil_socket_t fd, short what, void *arg);
/* session_hold.c: true when s's next request must wait for a cluster
 * leader's snapshot hold to end (s is then resumed by its I/O thread);
 * sess__hold_over lets io's waiting sessions go on once it has ended;
 * sess__hold_cb is io->ev_hold's callback. */
bool sess__held(sess *s);
void sess__hold_over(srv_io *io);
void sess__hold_cb(evutil_socket_t fd, short what, void *arg);
/* Ends the session: no more answers, every wait cancelled, holds released
 * (disp_session_end), queued values given back.  graceful: the bytes
 * already in the socket buffer are still sent before the close. */
void sess__end(sess *s, bool graceful);
/* Frees the connection side of s: its socket, events and unsent values
 * (given back).  I/O thread of s. */
void sess__close_conn(sess *s);
/* Charges s's input and output buffers to max_memory's count as they are
 * now (released when the connection closes).  I/O thread of s. */
void sess__mem_sync(sess *s);
/* Milliseconds on the monotonic clock (the heartbeat's). */
int64_t sess__now_ms(void);
/* Answers a framing-level error (id null) and ends the session. */
void sess__fail_close(sess *s, proto_reason reason, const char *msg);
/* Writes s's answers once every session made ready by this loop turn has
 * been served (see session_out.c).  I/O thread of s. */
void sess__push_later(sess *s);
/* Ends and closes every session of io, and empties its write list.  Only
 * after io's thread has ended, with srv__tls_io set to io. */
void sess__close_all(srv_io *io);
/* Returns true on the I/O thread that serves s. */
bool sess__on_own_thread(const sess *s);
/* Appends line (borrowed) to s's output and checks the output cap.  I/O
 * thread of s.  Returns false when the session was ended for it. */
bool sess__write(sess *s, const char *line, size_t len);
/* Writes s's pending output now, what the gate lets out.  I/O thread. */
void sess__push(sess *s);
/* Frees the give-back records of answers that reached the socket and
 * updates s's output count.  I/O thread of s. */
void sess__settle(sess *s);
/* Gives back the values of every answer that never reached the socket. */
void sess__giveback_pending(sess *s);
/* The event callback of s->ev_flush: writes s's queued answers. */
void sess__flush_cb(evutil_socket_t fd, short what, void *arg);
/* The bufferevent's write callback: output drained (arg is the sess). */
void sess__write_cb(struct bufferevent *bev, void *arg);
/* fsync = always: holds the len bytes just added to s's output until the
 * log is durable up to now.  Returns false when out of memory. */
bool sess__gate_mark(sess *s, size_t len);
/* Returns how many of the buffered bytes of s's output may leave now. */
size_t sess__gate_allowed(sess *s, size_t buffered);

/* security.c: a session's identity */

/* Sets s's identity at open (io[0]; s's fd and addr): the users table in
 * force, the peer for the log and the failure limiter, a unix peer's
 * credentials mapped to a user, and the pre-authentication deadline.
 * Returns 0 or -1 (out of memory). */
int sec__sess_open(sess *s, evutil_socket_t fd, const struct sockaddr *addr,
                   int alen);
/* TLS handshake done: names the user by the client certificate's CN. */
void sec__sess_tls_ready(sess *s);
/* Frees the session's deadline event (I/O thread of s). */
void sec__sess_close(sess *s);
/* Drops the session's users table (its last reference went). */
void sec__sess_free(sess *s);
/* Returns the longest line s may send now: a small one before it has
 * authenticated. */
size_t sec__max_line(const sess *s);

/* framing.c */

/* The event callbacks of a session's socket: readable (ev_read), more
 * input after a fair turn (ev_more), and the bufferevent's events. */
void sess__recv_cb(evutil_socket_t fd, short what, void *arg);
void sess__more_cb(evutil_socket_t fd, short what, void *arg);
void sess__event_cb(struct bufferevent *bev, short what, void *arg);
/* A TLS session's callbacks: input decrypted by the bufferevent, and its
 * events (the handshake's end or deadline, EOF, errors). */
void sess__tls_read_cb(struct bufferevent *bev, void *arg);
void sess__tls_event_cb(struct bufferevent *bev, short what, void *arg);
/* Handles EOF (serve what was sent, then end gracefully) or an error on
 * s's socket.  I/O thread of s. */
void sess__event(sess *s, short what);

#endif /* CHAND_SERVER_H */
