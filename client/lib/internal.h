/*
 * internal.h - what libchand's own files share and nobody else sees:
 * the connection struct, error helpers, and the answer-to-code mapping
 * used by both the blocking and the asynchronous API.
 */
#ifndef CHAND_CLIENT_INTERNAL_H
#define CHAND_CLIENT_INTERNAL_H

#include "chand.h"
#include "proto.h"

#include <sys/types.h>

/* Answers may carry big values (runtime.dump, map.range), so the client
 * accepts longer lines than the server's default request limit. */
#define CHAND__MAX_LINE ((size_t)64 * 1024 * 1024)
#define CHAND__MAX_DEPTH (PROTO_MAX_DEPTH_DEFAULT + 16)

/* How a connection reaches its server. */
enum { CHAND__TCP = 0, CHAND__UNIX, CHAND__TLS };

struct chand_options {
    char *user, *password;
    char *tls_ca, *tls_cert, *tls_key, *tls_servername;
    char *failover_ms; /* as given; read by chand_connect_url */
};

/* Where a connection goes (failover.c): the current server (kind, host,
 * port), the URLs given ("a,b,c"; owned, nservers of them, 0 for one
 * host and port), the one tried last, the leader's address from the last
 * not_leader answer ("" during an election) and how long a call looks for
 * the leader; then the pacing of a walk through the servers (dials failed
 * in this round, the next pause) and of a call's moves (moves so far, the
 * next pause). */
typedef struct chand__route {
    int kind;   /* CHAND__TCP, CHAND__UNIX, CHAND__TLS */
    char *host; /* the path of a unix socket */
    int port;
    char **servers;
    size_t nservers, cur;
    char leader[128];
    int64_t failover_ms;
    size_t tried;
    int64_t pause;
    int hops;
    int64_t hop_pause;
} chand__route;

struct chand_conn {
    chand__route rt;     /* the server(s) */
    chand_options opts;  /* owned copies (chand_connect_url) */
    void *ssl_ctx, *ssl; /* TLS: SSL_CTX, SSL (tls.c) */
    int fd;              /* -1 when not connected */
    int64_t next_id;
    char *rbuf; /* bytes read, not yet consumed */
    size_t rlen, rcap;
    chand_error err; /* the last failed call */
    char session[64];
    char server[128];
    int64_t hb_ms;     /* heartbeat asked for (0: none) */
    int64_t last_sent; /* ms when a line was last written */
    int64_t dial_ms;   /* the timeout of one dial */
};

/* The options of chand_make_opts (chanopts.c). */
struct chand_chan_opts {
    char *type;          /* NULL: "any" */
    int64_t max_deliver; /* 0: unlimited */
    char *dead_letter;   /* NULL: none */
};

/* Acknowledged delivery, shared by the blocking (methods.c) and the
 * asynchronous calls (async_ack.c). */
/* Reads res's delivery {id, attempt}; returns 0, or -1 when absent. */
int chand__delivery(json_t *res, int64_t *id, int64_t *attempt);
/* New params of an acknowledged recv, or NULL (bad name, no memory). */
json_t *chand__recv_ack_params(const char *name, int64_t ack_wait_ms);
/* New params {name, id} of ack/nack/touch/term, plus key: n when key and
 * n > 0, plus reason when not NULL; NULL on a bad name or no memory. */
json_t *chand__settle_params(const char *name, int64_t id, const char *key,
                             int64_t n, const char *reason);

/* methods.c: what the blocking calls (methods.c, methods_ack.c) share. */
/* Calls method with params (stolen); a NULL params is a bad argument. */
int chand__mcall(chand_conn *c, const char *method, json_t *params,
                 int64_t timeout_ms, json_t **res);
/* Reads integer key of res into *out (may be NULL); missing: EPROTO. */
int chand__get_int(chand_conn *c, json_t *res, const char *key, int64_t *out);
bool chand__get_bool(json_t *res, const char *key);
/* Stores a new reference to res[key] (null when absent) in *out. */
void chand__get_value(json_t *res, const char *key, json_t **out);
/* Calls method, params in, nothing out. */
int chand__call_void(chand_conn *c, const char *method, json_t *params,
                     int64_t timeout_ms);
/* Calls method and reads integer key of the result into *out. */
int chand__call_int(chand_conn *c, const char *method, json_t *params,
                    int64_t timeout_ms, const char *key, int64_t *out);

/* How long a call looks for the leader unless failover_ms says. */
#define CHAND__FAILOVER_MS 10000

/* New params of make with o's options (o may be NULL), or NULL (a bad
 * name or cap, no memory). */
json_t *chand__make_params(const char *name, int64_t cap,
                           const chand_chan_opts *o);
/* New params of select, or NULL with *bad the index of a bad case (n when
 * out of memory); CHAND_RECV_ACK cases only when ack. */
json_t *chand__select_params(const chand_case *cases, size_t n,
                             bool has_default, bool ack, int64_t ack_wait_ms,
                             size_t *bad);

/* Fills err (may be NULL) and returns code. */
int chand__seterr(chand_error *err, int code, int rpc_code, const char *reason,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Turns a server error answer into err; returns its CHAND_E* code. */
int chand__answer_error(const proto_answer *ans, chand_error *err);
/* Returns params (a new reference: a shallow copy of params, or {}) with
 * timeout_ms added when the method blocks and timeout_ms >= 0; NULL when
 * out of memory or params is not an object. */
json_t *chand__params(const char *method, json_t *params, int64_t timeout_ms);
/* Milliseconds on the monotonic clock. */
int64_t chand__now_ms(void);
/* Waits for events on fd until deadline (ms, -1 forever).  Returns 1 when
 * ready, 0 on timeout, -1 on error (conn.c). */
int chand__poll(int fd, short events, int64_t deadline);
/* Drops c's socket; the handle stays, failing calls with CHAND_ECONN
 * (conn.c). */
void chand__conn_drop(chand_conn *c);
/* Sends one request and reads its answer before deadline (ms on the
 * monotonic clock, -1 forever); timeout_ms is what the request carries.
 * A not_leader answer is returned as is, with c->leader set (call.c). */
int chand__call_once(chand_conn *c, const char *method, json_t *params,
                     int64_t timeout_ms, int64_t deadline, json_t **result);
/* chand__call_once, following not_leader answers to the leader (or the
 * next server) until c->failover_ms has passed.  Returns 0 with *result
 * (new) or a negative code (failover.c). */
int chand__call_until(chand_conn *c, const char *method, json_t *params,
                      int64_t timeout_ms, int64_t deadline, json_t **result);

/* conn.c: what connecting by URL shares between the blocking and the
 * asynchronous API. */

/* Parses url (chand://, chands://, unix:, HOST[:PORT]) into *kind
 * (CHAND__*), *host (new: a host name or a unix socket's path) and *port.
 * Returns 0, CHAND_EARG or CHAND_ENOMEM (*host then NULL). */
int chand__url_parse(const char *url, int *kind, char **host, int *port);
/* Returns hello's params (new): the protocol version, heartbeat_ms when
 * hb_ms > 0, and o's user and password; NULL when out of memory. */
json_t *chand__hello_params(const chand_options *o, int64_t hb_ms);
/* Copies the session id and the server's name (server may be NULL) out of
 * hello's result res. */
void chand__hello_done(const json_t *res, char *session, size_t slen,
                       char *server, size_t srvlen);

/* Dials c's current host and says hello within timeout_ms: a new
 * session.  Returns 0 or a negative code with c->err filled (conn.c). */
int chand__dial(chand_conn *c, int64_t timeout_ms);

/* failover.c: the route, shared by the blocking and the asynchronous
 * API. */

/* Points r at host (NULL: CHAND_DEFAULT_HOST) and port (0:
 * CHAND_DEFAULT_PORT) over TCP, with the default failover timeout.
 * Returns 0 or CHAND_ENOMEM. */
int chand__route_host(chand__route *r, const char *host, int port);
/* Splits list ("a,b,c") into r's servers, points r at the first and reads
 * failover_ms (the option as given; NULL: the default).  Returns 0, or
 * CHAND_EARG (err says which entry or option) or CHAND_ENOMEM with r
 * emptied. */
int chand__route_set(chand__route *r, const char *list, const char *failover_ms,
                     chand_error *err);
/* Frees r's strings (not r itself). */
void chand__route_free(chand__route *r);
/* Points r back at the first server of its list (none: stays).  Returns
 * 0 or CHAND_ENOMEM. */
int chand__route_first(chand__route *r);
/* Keeps the leader's address of a not_leader answer (borrowed) for
 * chand__route_next. */
void chand__route_note(chand__route *r, const proto_answer *ans);
/* Points r at the leader the last not_leader answer named (once), else at
 * the next server of the list; one host stays where it is.  Returns 0 or
 * CHAND_ENOMEM. */
int chand__route_next(chand__route *r);
/* True for a dial's code that any other server would give as well. */
bool chand__route_fatal(int rc);
/* The deadline (ms, monotonic; -1: none) of connecting to a list: the
 * longer of timeout_ms and the failover timeout from now. */
int64_t chand__route_until(const chand__route *r, int64_t timeout_ms);
/* One dial's timeout: dial_ms (-1: none), cut to what is left before
 * deadline (-1: none) but at least 1 ms. */
int64_t chand__route_dial_ms(int64_t dial_ms, int64_t deadline);
/* A walk through the servers begins. */
void chand__route_walk(chand__route *r);
/* A dial of the walk failed: returns how long to pause (ms, 0: none, cut
 * at deadline) before dialing the next server. */
int64_t chand__route_failed(chand__route *r, int64_t deadline);
/* A call's search for the leader begins (its first not_leader answer). */
void chand__route_hops(chand__route *r);
/* The call moves after another not_leader answer: returns how long to
 * pause first (0 when the first answer named a leader). */
int64_t chand__route_hop(chand__route *r);
/* Fills err for a call that found no leader within failover_ms: why is
 * its last not_leader answer, rc and last (may be NULL) the last dial's
 * failure; expired says the failover time ran out (the code is then why's,
 * else rc).  err may be why or last.  Returns the code. */
int chand__route_giveup(int64_t failover_ms, const chand_error *why, int rc,
                        const chand_error *last, bool expired,
                        chand_error *err);

/* tls.c: TLS on c->fd, and the I/O both kinds share. */

/* Makes a client context (SSL_CTX, new in *ctx) from o's tls_ca,
 * tls_cert and tls_key.  Returns 0 or a negative code with err filled. */
int chand__tls_ctx_new(const chand_options *o, void **ctx, chand_error *err);
/* Frees a context of chand__tls_ctx_new (NULL is ok; SSLs made from it
 * hold their own reference). */
void chand__tls_ctx_free(void *ctx);
/* Returns a new SSL from ctx that checks the server's certificate names
 * o's tls_servername, else host (and sends it as SNI), or NULL with err
 * filled. */
void *chand__tls_ssl_new(void *ctx, const chand_options *o, const char *host,
                         chand_error *err);
/* Fills err for a failed handshake of ssl (the certificate's verdict
 * when it was refused); returns CHAND_ECONNECT. */
int chand__tls_verify_error(void *ssl, chand_error *err);
/* Makes c's SSL over c->fd and does the handshake before deadline.
 * Returns 0 or a negative code with c->err filled. */
int chand__tls_start(chand_conn *c, int64_t deadline);
/* Frees c's SSL (after a close_notify when clean) and its context when
 * all is true. */
void chand__tls_drop(chand_conn *c, bool all);
/* Sends / receives up to len bytes on c (TLS or not).  Returns the bytes
 * moved (0 from recv: closed), or -1 with errno set; errno EAGAIN means
 * wait for *want (POLLIN or POLLOUT) and call again. */
ssize_t chand__send(chand_conn *c, const void *buf, size_t len, short *want);
ssize_t chand__recv(chand_conn *c, void *buf, size_t len, short *want);
/* Copies the options in o (may be NULL) into dst.  Returns 0 or
 * CHAND_ENOMEM. */
int chand__options_copy(chand_options *dst, const chand_options *o);
/* Frees the strings of o (not o itself), wiping the password. */
void chand__options_clear(chand_options *o);

#endif /* CHAND_CLIENT_INTERNAL_H */
