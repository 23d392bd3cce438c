/*
 * async.h - what the asynchronous API's two files share: the handle and
 * its requests.  async.c owns the requests (the table of those in flight,
 * the queues of those waiting for a session, answers and callbacks);
 * async_dial.c owns the connection (dialing, hello, walking the servers,
 * moving to the leader after not_leader).
 */
#ifndef CHAND_CLIENT_ASYNC_H
#define CHAND_CLIENT_ASYNC_H

#include "internal.h"

#include <event2/bufferevent.h>
#include <event2/event.h>

/* One request, from chand_async_call until its callback ran. */
typedef struct chand__areq {
    int64_t id; /* the same on every server it is sent to */
    chand_reply_cb cb;
    void *arg;
    struct chand_async *a;
    struct chand__areq *next; /* hash chain, or the queue */
    char *line;               /* the request with its \n, to send again */
    size_t len;
    int64_t timeout_ms;  /* as given: the client-side timer's */
    struct event *timer; /* that timer, armed while sent; or NULL */
    int64_t until;       /* 0, or when it stops looking for the leader */
} chand__areq;

/* A queue of requests, lowest id first. */
typedef struct chand__aqueue {
    chand__areq *head, *tail;
} chand__aqueue;

struct chand_async {
    struct event_base *base;
    chand__route rt;    /* the servers, the current one, the leader */
    chand_options opts; /* owned copies (chand_async_connect_url) */
    void *ssl_ctx;      /* TLS: the SSL_CTX every dial shares */
    bool say_hello;     /* each session opens with hello (by URL) */
    int64_t dial_ms;    /* one dial's timeout, -1: none */

    /* The connection (async_dial.c).  A session is up once connected and
     * hello was answered; requests go straight out only then. */
    struct bufferevent *bev;
    struct addrinfo *addrs;  /* resolved addresses */
    struct addrinfo *trying; /* the address being connected */
    struct event *dial_timer;
    struct event *pause_timer; /* the pause before the next dial */
    int64_t hello_id;          /* hello's request in flight, 0: none */
    int64_t deadline;          /* of the walk (-1: none): the first connect's,
                                * or the earliest window of a request moving */
    bool once;                 /* the first connect dials its one server once */
    bool connected;            /* the socket is connected */
    bool up;                   /* the session is up */
    bool moving;      /* a not_leader came: the session ends once nothing
                       * is in flight on it */
    bool hopped;      /* a request met not_leader again after a move */
    bool in_connect;  /* inside bufferevent_socket_connect */
    bool refused;     /* ... which failed at once */
    chand_error why;  /* the last not_leader answer */
    chand_error last; /* the last failed dial */

    /* The requests (async.c). */
    int64_t next_id;
    chand__areq **buckets; /* in flight on the session: id & (nbuckets-1) */
    size_t nbuckets, nsent;
    chand__aqueue resend; /* answered not_leader: sent again first */
    chand__aqueue held;   /* not sent yet, in the order of the calls */
    size_t nqueued;

    chand_connect_cb connect_cb;
    void *connect_arg;
    chand_connect_cb close_cb;
    void *close_arg;
    bool reported; /* connect_cb was called */
    bool dead;     /* no session and none to come: no new calls */
    bool freeing;  /* chand_async_free was called */
    int depth;     /* nesting of user callbacks */
};

/* async.c */

/* Enters a user callback (the handle stays alive until the matching
 * leave); chand__async_leave returns true when the handle was freed and
 * the caller must not touch it any more. */
void chand__async_enter(chand_async *a);
bool chand__async_leave(chand_async *a);
/* Frees a and what it holds (no callbacks). */
void chand__async_destroy(chand_async *a);
/* Sends an internal request (hello) on the connection now, ahead of the
 * queues, with params (stolen): cb gets its answer, *id its id.  Returns
 * 0 or a negative code. */
int chand__async_send_now(chand_async *a, const char *method, json_t *params,
                          chand_reply_cb cb, int64_t *id);
/* Drops request id from the table without a callback (the hello of a
 * dial that failed). */
void chand__async_forget(chand_async *a, int64_t id);
/* Writes the queued requests (the ones to send again, then the held
 * ones) on the session.  The caller holds a depth. */
void chand__async_flush(chand_async *a);
/* Fails the requests in flight on the session with code and why, and
 * when queued is true the queued ones too.  The caller holds a depth. */
void chand__async_fail(chand_async *a, bool queued, int code, const char *why);
/* Fails the queued requests whose search for the leader is over: all of
 * the ones answered not_leader when all is true, else those whose window
 * closed; rc and last (may be NULL) are the last dial's failure, expired
 * says the window closed (chand__route_giveup).  Returns the earliest
 * window still open (0: none).  The caller holds a depth. */
int64_t chand__async_expire(chand_async *a, bool all, int rc,
                            const chand_error *last, bool expired);
/* Request p (taken out of the table) was answered not_leader (ans, err):
 * queues it to be sent to the leader, or, its window closed, hands it
 * err.  The caller holds a depth. */
void chand__async_not_leader(chand_async *a, chand__areq *p,
                             const proto_answer *ans, const chand_error *err);
/* Reads answers from bev's input; returns true when the handle was
 * freed. */
bool chand__async_drain(chand_async *a, struct bufferevent *bev);

/* async_dial.c */

/* Starts the first connect (a walk through the servers when there are
 * several, for the longer of timeout_ms and the failover timeout).
 * Returns 0, or a negative code with err (may be NULL) filled: the
 * caller frees a. */
int chand__async_start(chand_async *a, int64_t timeout_ms, chand_error *err);
/* The connection broke (code, why): before the session was up, a failed
 * dial; after, the requests in flight fail with CHAND_ECONN and the
 * handle closes, unless it was leaving for the leader anyway.  The caller
 * holds a depth. */
void chand__async_lost(chand_async *a, int code, const char *why);
/* A request of the session was settled: the move starts once nothing is
 * in flight on it any more.  The caller holds a depth. */
void chand__async_settled(chand_async *a);
/* Closes the connection and stops the timers (chand_async_free). */
void chand__async_close(chand_async *a);

#endif /* CHAND_CLIENT_ASYNC_H */
