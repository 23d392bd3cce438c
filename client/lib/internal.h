/*
 * internal.h - what libchand's own files share and nobody else sees:
 * the connection struct, error helpers, and the answer-to-code mapping
 * used by both the blocking and the asynchronous API.
 */
#ifndef CHAND_CLIENT_INTERNAL_H
#define CHAND_CLIENT_INTERNAL_H

#include "chand.h"
#include "proto.h"

/* Answers may carry big values (runtime.dump, map.range), so the client
 * accepts longer lines than the server's default request limit. */
#define CHAND__MAX_LINE ((size_t)64 * 1024 * 1024)
#define CHAND__MAX_DEPTH (PROTO_MAX_DEPTH_DEFAULT + 16)

struct chand_conn {
    char *host;                /* as given to chand_connect */
    int port;
    int fd;                    /* -1 when not connected */
    int64_t next_id;
    char *rbuf;                /* bytes read, not yet consumed */
    size_t rlen, rcap;
    chand_error err;           /* the last failed call */
    char session[64];
    char server[128];
    int64_t hb_ms;             /* heartbeat asked for (0: none) */
    int64_t last_sent;         /* ms when a line was last written */
};

/* Fills err (may be NULL) and returns code. */
int chand__seterr(chand_error *err, int code, int rpc_code,
                  const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Turns a server error answer into err; returns its CHAND_E* code. */
int chand__answer_error(const proto_answer *ans, chand_error *err);
/* Returns params (a new reference: a shallow copy of params, or {}) with
 * timeout_ms added when the method blocks and timeout_ms >= 0; NULL when
 * out of memory or params is not an object. */
json_t *chand__params(const char *method, json_t *params,
                      int64_t timeout_ms);
/* Milliseconds on the monotonic clock. */
int64_t chand__now_ms(void);

#endif /* CHAND_CLIENT_INTERNAL_H */
