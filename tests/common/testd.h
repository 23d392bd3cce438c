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
    pid_t pid;     /* the daemon's pid, 0 when not running */
    int status;    /* its wait status once testd_running saw it exit */
    int port;      /* the port it bound */
    int mport;     /* its metrics port, when asked to wait for it */
    char dir[256]; /* its private temp directory */
    char port_file[300];
} testd;

/* How to start a daemon; zero-initialise and set what differs. */
typedef struct testd_opts {
    /* NULL: --bind 127.0.0.1 --port PORT --port-file (in dir), --log-level
     * ($CHAND_TEST_LOG or warn) and --io-threads $CHAND_IO_THREADS when
     * set.  Else --config FILE alone: the file names the ports and their
     * files (port_file, mport_file below). */
    const char *config;
    int port;                /* without config: the port, 0 a free one */
    const char *const *args; /* more arguments, NULL-terminated, or NULL */
    const char *log;         /* append the daemon's stderr here (NULL: ours) */
    const char *notify;      /* NOTIFY_SOCKET for it (NULL: unset) */
    const char *port_file;   /* with config: the port file to wait for */
    const char *mport_file;  /* also wait for the metrics port (or NULL) */
    int listen_fd;           /* > 0: socket activation (fd 3, LISTEN_FDS=1):
                              * the port is the socket's, nothing to wait */
    int listen_fd2;          /* > 0 with listen_fd: a second socket (fd 4,
                              * LISTEN_FDS=2), e.g. a unix one */
} testd_opts;

/* Starts $CHAND_BIN (default build/chand) as o says (NULL: all defaults)
 * and waits (up to 20 s) until it listens, i.e. has written its port
 * file(s).  The daemon dies with the test process (PR_SET_PDEATHSIG) and
 * is killed by testd_kill_children(true) unless stopped before.  Returns 0
 * or -1 (the daemon stopped). */
int testd_start_opts(testd *d, const testd_opts *o);
/* testd_start_opts with the defaults and the NULL-terminated extra args
 * (may be NULL). */
int testd_start(testd *d, const char *const *extra_args);
/* Waits (up to timeout_ms, then SIGKILL) for the daemon to exit, and
 * removes its directory.  Returns its exit status, or -1 when it had to be
 * killed, died of a signal or was not running. */
int testd_wait_exit(testd *d, int timeout_ms);
/* Sends SIGTERM and testd_wait_exit(d, 20 s); removes its directory.
 * Returns the exit status (0 for a clean exit), or -1. */
int testd_stop(testd *d);
/* Returns true while the daemon process exists (not exited). */
bool testd_running(testd *d);

/* Forks a child that is SIGKILLed when the test process dies (it exits at
 * once if the test already has) and is remembered until testd_reap().
 * Returns the pid (0 in the child), or -1. */
pid_t testd_fork(void);
/* Waits up to timeout_ms (-1 forever) for child pid to exit, reaps it and
 * forgets it.  Returns pid with *status set (status may be NULL), or 0 on
 * timeout, or -1. */
pid_t testd_reap(pid_t pid, int *status, int timeout_ms);
/* SIGKILLs and reaps every child of testd_fork() still remembered, and
 * with daemons also every daemon not yet stopped: a test's teardown calls
 * it so that a failed test leaves no process behind. */
void testd_kill_children(bool daemons);

typedef struct testd_conn testd_conn;

/* Returns a new blocking connection to the daemon, or NULL. */
testd_conn *testd_connect(const testd *d);
/* Returns a new connection to 127.0.0.1:port, or NULL. */
testd_conn *testd_connect_port(int port);
/* Returns a new connection to the unix socket at path, or NULL. */
testd_conn *testd_connect_unix(const char *path);
/* Closes and frees c (NULL ok). */
void testd_close(testd_conn *c);
/* Closes every connection still open (but testd_stats' own): a test's
 * teardown calls it, so that a failed test leaves no session behind. */
void testd_close_all(void);
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
const char *testd_reason(json_t *answer);  /* error.data.reason */
int testd_code(json_t *answer);            /* error.code, 0 if none */
const char *testd_message(json_t *answer); /* error.message */

/* Returns a new reference to runtime.stats' result, or NULL.  Asks on a
 * connection kept open for the purpose (one per daemon, closed by
 * testd_stop, counted in every reading), asking again on a fresh one when
 * a call times out. */
json_t *testd_stats(const testd *d);
/* Milliseconds on the monotonic clock. */
int64_t testd_now_ms(void);
/* Sleeps ms milliseconds: the pause between two polls of a condition that
 * has a deadline, never a wait by itself. */
void testd_sleep_ms(int ms);

/* Binds a TCP socket (close-on-exec) to 127.0.0.1 and a port the kernel
 * picks.  Returns it, not listening, with the port in *port (untouched on
 * failure), or -1.  While it stays open no other call picks that port,
 * which is how a caller gets several distinct ones. */
int testd_bind_loopback(int *port);
/* Removes dir and everything below it, not following links; best effort
 * (teardowns), so what cannot be removed stays. */
void testd_rm_rf(const char *dir);
/* Returns true once a line of the file at path holds needle, reading it
 * again every 20 ms until wait_ms have passed (0: read once). */
bool testd_file_has(const char *path, const char *needle, int wait_ms);

#endif /* CHAND_TESTD_H */
