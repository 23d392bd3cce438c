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
};

struct chand_conn {
    char *host; /* as given to chand_connect; the path of
                 * a unix socket */
    int port;
    int kind;            /* CHAND__TCP, CHAND__UNIX, CHAND__TLS */
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
 * Returns 0 with *result (new) or a negative code (call.c). */
int chand__call_until(chand_conn *c, const char *method, json_t *params,
                      int64_t timeout_ms, int64_t deadline, json_t **result);

/* tls.c: TLS on c->fd, and the I/O both kinds share. */

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
