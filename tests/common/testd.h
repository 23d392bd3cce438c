/*
 * testd.h - end-to-end test helpers: start the real chand on 127.0.0.1 and
 * a free port (--port 0 --port-file), connect to it, send lines, read
 * answers, and stop it by pid.  Shared by every e2e test (daemon, client,
 * CLI), so kept general: nothing here knows a particular method.
 *
 * Every function returns 0 / a value on success and -1 / NULL on failure;
 * none calls exit or a cmocka assertion, so tests decide what is fatal.
 */
#ifndef CHAND_TESTD_H
#define CHAND_TESTD_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct testd {
    pid_t pid;            /* the daemon's pid, 0 when not running */
    int port;             /* the port it bound */
    char dir[256];        /* its private temp directory */
    char port_file[300];
} testd;

/* Starts $CHAND_BIN (default build/chand) with --port 0, --port-file,
 * --io-threads $CHAND_IO_THREADS when set, and the NULL-terminated extra
 * args (may be NULL), and waits (up to 10 s) for it to listen.  Returns 0
 * or -1. */
int testd_start(testd *d, const char *const *extra_args);
/* Sends SIGTERM and waits (10 s, then SIGKILL).  Returns the exit status
 * (0 for a clean exit), or -1 when it had to be killed or was not run. */
int testd_stop(testd *d);
/* Returns true while the daemon process exists (not exited). */
bool testd_running(testd *d);

typedef struct testd_conn testd_conn;

/* Returns a new blocking connection to the daemon, or NULL. */
testd_conn *testd_connect(const testd *d);
/* Returns a new connection to 127.0.0.1:port, or NULL. */
testd_conn *testd_connect_port(int port);
/* Closes and frees c (NULL ok). */
void testd_close(testd_conn *c);
/* Returns the socket (to shutdown it, poll it, ...). */
int testd_fd(const testd_conn *c);
/* Writes len bytes.  Returns 0 or -1. */
int testd_write(testd_conn *c, const void *data, size_t len);
/* Writes line and a '\n'.  Returns 0 or -1. */
int testd_send(testd_conn *c, const char *line);
/* printf-style testd_send. */
int testd_sendf(testd_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Returns the next line (malloc'd, without '\n'), or NULL on EOF, error
 * or after timeout_ms (-1: wait forever). */
char *testd_recv_line(testd_conn *c, int timeout_ms);
/* Returns the next line parsed as a new JSON value, or NULL. */
json_t *testd_recv(testd_conn *c, int timeout_ms);
/* Returns true if the peer closed the connection within timeout_ms
 * (pending lines are skipped). */
bool testd_wait_eof(testd_conn *c, int timeout_ms);
/* Sends {"jsonrpc":"2.0","id":id,"method":method,"params":params} (params
 * stolen; NULL = {}) and returns the answer with that id (new reference;
 * answers with other ids are kept for later calls), or NULL after
 * timeout_ms. */
json_t *testd_call(testd_conn *c, int64_t id, const char *method,
                   json_t *params, int timeout_ms);
/* Returns the answer with that id (new reference), waiting timeout_ms. */
json_t *testd_wait_id(testd_conn *c, int64_t id, int timeout_ms);

/* Accessors on an answer (borrowed; NULL when absent). */
json_t *testd_result(json_t *answer);
const char *testd_reason(json_t *answer);   /* error.data.reason */
int testd_code(json_t *answer);             /* error.code, 0 if none */
const char *testd_message(json_t *answer);  /* error.message */

/* Returns a new reference to runtime.stats' result through a fresh
 * connection (asking again when a call times out), or NULL. */
json_t *testd_stats(const testd *d);
/* Milliseconds on the monotonic clock. */
int64_t testd_now_ms(void);

#endif /* CHAND_TESTD_H */
