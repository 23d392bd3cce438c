/*
 * proto.h - chand's wire protocol, shared by the daemon and libchand.
 *
 * JSON-RPC 2.0 over TCP, one message per line (PROTOCOL.md is the spec).
 * This module owns: the limits of a line, the method table (names, which
 * ones block, their parameters and types), request parsing and validation,
 * the error codes and stable reasons, and building/parsing answer lines.
 * It has no sockets and no runtime: it turns bytes into checked C values
 * and back.
 *
 * Ownership follows jansson's words: "new" references are the caller's to
 * json_decref, "borrowed" ones live as long as their container.
 */
#ifndef CHAND_PROTO_H
#define CHAND_PROTO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION 1
#define PROTO_MAX_LINE_DEFAULT (1024 * 1024) /* bytes, without the \n */
#define PROTO_MAX_DEPTH_DEFAULT 64           /* JSON nesting */
#define PROTO_NAME_MAX 255                   /* object name bytes */
/* Largest duration in ms (timeout_ms, lease_ms, ms): about 31 years, so
 * that ms * 1000000 plus a monotonic clock fits in an int64. */
#define PROTO_MAX_MS 1000000000000LL

/* JSON-RPC 2.0's own error codes. */
#define PROTO_PARSE_ERROR -32700
#define PROTO_INVALID_REQUEST -32600
#define PROTO_METHOD_NOT_FOUND -32601
#define PROTO_INVALID_PARAMS -32602
#define PROTO_INTERNAL_ERROR -32603

/* Stable machine-readable causes (data.reason).  Each application error
 * has the code PROTO_APP_CODE_BASE - reason (documented in PROTOCOL.md). */
typedef enum proto_reason {
    PROTO_R_NONE = 0,
    PROTO_R_CLOSED,
    PROTO_R_TIMEOUT,
    PROTO_R_NOT_FOUND,
    PROTO_R_EXISTS,
    PROTO_R_WRONG_TYPE,
    PROTO_R_NEGATIVE_COUNTER,
    PROTO_R_NOT_LOCKED,
    PROTO_R_DEADLOCK,
    PROTO_R_TOO_LARGE,
    PROTO_R_LIMIT,
    PROTO_R_CANCELLED,
    PROTO_R_MISUSE,
    PROTO_R_INVALID,  /* parse error, invalid request/params, no method */
    PROTO_R_INTERNAL, /* a server bug or resource failure (out of memory) */
    PROTO_R_UNAUTHENTICATED, /* users configured, session not authenticated
                              * (or wrong credentials) */
    PROTO_R_DENIED,          /* outside the user's rules: nothing changed */
    PROTO_R_NOT_PENDING,     /* ack/nack/touch/term of a delivery that is
                              * no longer in flight (acked, expired) */
    PROTO_R_NOT_LEADER,      /* a cluster follower: ask data.leader */
    PROTO_R_COUNT
} proto_reason;
#define PROTO_APP_CODE_BASE -32000

/* Returns the reason's wire name ("closed", ...), or NULL. */
const char *proto_reason_name(proto_reason r);
/* Returns the reason for a wire name, or PROTO_R_NONE. */
proto_reason proto_reason_from_name(const char *name);
/* Returns the JSON-RPC error code used for an application reason. */
int proto_reason_code(proto_reason r);

/* ---- the method table ---- */

typedef enum proto_ptype {
    PROTO_T_STRING = 1, /* JSON string */
    PROTO_T_NAME,       /* string, 1..255 bytes, printable UTF-8 */
    PROTO_T_INT,        /* JSON integer (int64) */
    PROTO_T_UINT,       /* JSON integer >= 0 */
    PROTO_T_ANY,        /* any JSON value */
    PROTO_T_OBJECT,     /* JSON object */
    PROTO_T_ARRAY,      /* JSON array */
    PROTO_T_CASES,      /* select's cases: an array to the general path;
                         * the scanner reads the usual shapes into
                         * proto_request.cases instead */
    PROTO_T_BOOL,       /* JSON true/false */
} proto_ptype;

typedef struct proto_param {
    const char *name;
    proto_ptype type;
    bool required;
} proto_param;

#define PROTO_MAX_PARAMS 8

typedef struct proto_method {
    const char *name;                     /* "send", "mutex.lock", ... */
    int id;                               /* index in the table */
    bool blocking;                        /* accepts timeout_ms and may wait */
    proto_param params[PROTO_MAX_PARAMS]; /* ends at name == NULL */
} proto_method;

/* Returns the method named name, or NULL. */
const proto_method *proto_method_find(const char *name);
/* Returns the method table and its length. */
const proto_method *proto_methods(size_t *n);

/* ---- requests ---- */

/* A parameter's value as the text the request holds, for an "any" value
 * that the scanner found already in the form a compact dump writes (a
 * string of printable ASCII without escapes, an integer): a channel keeps
 * values as text, and need not build and dump a JSON value.  p borrows
 * from the line; NULL: not read so. */
typedef struct proto_text {
    const char *p;
    size_t n;
} proto_text;

/* Returns a new JSON value for t (a string or an integer), or NULL. */
json_t *proto_text_json(proto_text t);

/* One case of a select as the scanner read it: {"recv":name} or
 * {"send":name,"value":value}, so that the handler need not build and
 * search one JSON object per case. */
typedef struct proto_case {
    json_t *name;    /* a string (new reference) */
    json_t *value;   /* send: new reference, or NULL when in
                      * text; recv: NULL */
    proto_text text; /* send: the value as text (see
                      * proto_text), or {NULL} */
} proto_case;

/* Frees n cases and their values (c may be NULL). */
void proto_cases_free(proto_case *c, size_t n);

typedef struct proto_request {
    json_t *id;                     /* NULL for a notification */
    const proto_method *method;     /* NULL when invalid */
    json_t *params;                 /* borrowed object (empty if absent); NULL
                                     * when read by proto_scan_request */
    json_t *args[PROTO_MAX_PARAMS]; /* by method->params index; NULL:
                                     * absent, or in text[] */
    proto_text text[PROTO_MAX_PARAMS]; /* "any" values the scanner left
                                        * as text (borrowed from the line) */
    int64_t timeout_ms;                /* -1 absent (forever), else >= 0 */
    bool owned;                        /* id and args are new references
                                        * (proto_scan_request), else borrowed */
    proto_case *cases;                 /* a PROTO_T_CASES parameter read by the
                                        * scanner (owned array of ncases; its
                                        * args[] slot then stays NULL) */
    size_t ncases;
} proto_request;

typedef struct proto_error {
    int code; /* JSON-RPC error code */
    proto_reason reason;
    char message[256];
} proto_error;

typedef struct proto_limits {
    size_t max_line; /* bytes */
    int max_depth;   /* JSON nesting */
} proto_limits;

/* Parses one line (without its \n) into a new JSON value, checking UTF-8,
 * the depth limit and duplicate keys.  Returns the new value, or NULL with
 * err filled (parse error). */
json_t *proto_parse_line(const char *line, size_t len, const proto_limits *lim,
                         proto_error *err);

/* Checks one request object (an element of a batch, or the whole line):
 * envelope, method, parameter names and types, timeout_ms.  Returns 0 and
 * fills req (borrowing from msg) or -1 with err filled; req->id is still
 * set when it could be read, so the error can be answered. */
int proto_check_request(json_t *msg, proto_request *req, proto_error *err);

/* Reads one request line (an object, not a batch) in a single pass,
 * without building the envelope: only the id and the parameter values
 * become JSON values (new references: req->owned; release them with
 * proto_request_clear).  Returns true with req filled for a valid request
 * of the common shape; false, with nothing to release, for anything else --
 * batches, any invalid or unusual text, any invalid request.  The caller
 * then takes the general path (proto_parse_line, proto_check_request),
 * which accepts the same requests and words every error. */
bool proto_scan_request(const char *line, size_t len, const proto_limits *lim,
                        proto_request *req);

/* A cache of recent object names as JSON strings, so that a request
 * naming a busy channel takes a reference instead of building a string.
 * Not thread-safe: one per reading thread.  The strings it hands out are
 * ordinary (immutable) values. */
typedef struct proto_names proto_names;
proto_names *proto_names_new(void);
void proto_names_free(proto_names *c);
/* proto_scan_request with names (may be NULL) for the name parameters. */
bool proto_scan_request_names(const char *line, size_t len,
                              const proto_limits *lim, proto_names *names,
                              proto_request *req);
/* Releases what req owns (nothing when it borrows) and clears it. */
void proto_request_clear(proto_request *req);
/* Returns the index of parameter key in m->params, or -1. */
int proto_param_index(const proto_method *m, const char *key);

/* ---- answers ---- */

/* Returns a new JSON-RPC answer object with result (stolen; NULL = {}). */
json_t *proto_result(json_t *id, json_t *result);
/* Returns a new JSON-RPC error answer; data (stolen, may be NULL) gets the
 * reason added. */
json_t *proto_error_answer(json_t *id, int code, proto_reason reason,
                           const char *message, json_t *data);
/* Serialises msg compactly followed by \n into a new malloc'd buffer;
 * returns it with *len set, or NULL. */
char *proto_dump_line(const json_t *msg, size_t *len);

/* ---- client side ---- */

/* Returns a new request object {"jsonrpc":"2.0","id":id,"method":...,
 * "params":params} (params stolen; NULL = {}); id < 0 makes a notification. */
json_t *proto_request_new(int64_t id, const char *method, json_t *params);

typedef struct proto_answer {
    int64_t id;     /* -1 when null/absent */
    json_t *result; /* borrowed; NULL on error */
    int code;       /* 0 on success */
    proto_reason reason;
    const char *message; /* borrowed; NULL on success */
    json_t *data;        /* borrowed error data, or NULL */
} proto_answer;

/* Reads one answer object.  Returns 0, or -1 when msg is not a valid
 * JSON-RPC 2.0 answer (err filled). */
int proto_answer_read(json_t *msg, proto_answer *ans, proto_error *err);

/* ---- helpers ---- */

/* Fills err with code, reason and a printf-style message; returns -1. */
int proto_error_set(proto_error *err, int code, proto_reason reason,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Returns a new error answer for err (id borrowed, may be NULL). */
json_t *proto_error_answer_from(json_t *id, const proto_error *err);
/* Returns the nesting depth of the JSON text (brackets outside strings),
 * stopping early once it exceeds limit; never recurses. */
int proto_json_depth(const char *text, size_t len, int limit);
/* Returns true when s (len bytes, valid UTF-8) is a valid object name:
 * 1..PROTO_NAME_MAX bytes with no control characters. */
bool proto_name_valid(const char *s, size_t len);
/* Returns the wire name of a parameter type ("string", "integer", ...). */
const char *proto_ptype_name(proto_ptype t);

#endif /* CHAND_PROTO_H */
