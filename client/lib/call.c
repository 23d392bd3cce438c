/*
 * call.c - libchand's blocking call: framing (one JSON line each way), the
 * read loop with its heartbeat, and the generic chand_call.
 *
 * The socket stays non-blocking and every wait goes through poll() with
 * the call's deadline, so no call can hang past its timeout plus grace.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int chand_set_heartbeat(chand_conn *c, int64_t ms)
{
    json_t *params;
    int rc;

    if (!c || ms < 0 || (ms > 0 && ms < 100))
        return c ? chand__seterr(&c->err, CHAND_EARG, 0, "",
                                 "heartbeat must be 0 or at least 100 ms")
                 : CHAND_EARG;
    params = json_pack("{s:i, s:I}", "version", CHAND_PROTOCOL_VERSION,
                       "heartbeat_ms", (json_int_t)ms);
    if (!params)
        return chand__seterr(&c->err, CHAND_ENOMEM, 0, "", "out of memory");
    rc = chand_call(c, "hello", params, -1, NULL);
    json_decref(params);
    if (rc == 0)
        c->hb_ms = ms;
    return rc;
}

/* Framing                                                            */
/* ------------------------------------------------------------------ */

/* Writes all of buf before deadline.  Returns 0 or a negative code with
 * the connection dropped. */
static int conn_write(chand_conn *c, const char *buf, size_t len,
                      int64_t deadline)
{
    c->last_sent = chand__now_ms();
    while (len > 0) {
        short want;
        ssize_t n = chand__send(c, buf, len, &want);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = chand__poll(c->fd, want, deadline);
            if (rc > 0)
                continue;
            chand__conn_drop(c);
            if (rc == 0)
                return chand__seterr(&c->err, CHAND_ETIMEOUT, 0, "",
                                     "timed out writing to the server; "
                                     "connection closed");
            return chand__seterr(&c->err, CHAND_ECONN, 0, "", "poll: %s",
                                 strerror(errno));
        }
        /* The socket stays open: the server may have hung up after
         * answering why (a line over its limit), and the caller reads
         * that answer before giving up. */
        return chand__seterr(&c->err, CHAND_ECONN, 0, "", "connection lost: %s",
                             n < 0 ? strerror(errno) : "short write");
    }
    return 0;
}

/* Waits for want until deadline as chand__poll does; with a heartbeat,
 * sends a ping (a notification: no answer to read) whenever nothing was
 * sent for a third of it, so that a call blocked for long (a lock wait)
 * keeps the session alive.  Returns 1, 0 (deadline) or -1. */
static int conn_poll_hb(chand_conn *c, short want, int64_t deadline)
{
    static const char ping[] = "{\"jsonrpc\":\"2.0\",\"method\":\"ping\"}\n";

    for (;;) {
        int64_t beat, until = deadline;
        int rc;

        if (c->hb_ms <= 0)
            return chand__poll(c->fd, want, deadline);
        beat = c->last_sent + c->hb_ms / 3;
        if (until < 0 || beat < until)
            until = beat;
        rc = chand__poll(c->fd, want, until);
        if (rc != 0 || until == deadline)
            return rc;
        if (deadline >= 0 && chand__now_ms() >= deadline)
            return 0;
        if (conn_write(c, ping, sizeof ping - 1, deadline) < 0)
            return -1;
    }
}

/* Reads one line (without \n) before deadline into a new malloc'd string.
 * Returns its length or a negative code with the connection dropped. */
static ssize_t conn_readline(chand_conn *c, char **line, int64_t deadline)
{
    size_t scanned = 0;

    for (;;) {
        char *nl = c->rlen > scanned
                       ? memchr(c->rbuf + scanned, '\n', c->rlen - scanned)
                       : NULL;
        ssize_t n;
        short want;

        if (nl) {
            size_t len = (size_t)(nl - c->rbuf);
            *line = malloc(len + 1);
            if (!*line)
                return chand__seterr(&c->err, CHAND_ENOMEM, 0, "",
                                     "out of memory");
            memcpy(*line, c->rbuf, len);
            (*line)[len] = '\0';
            memmove(c->rbuf, nl + 1, c->rlen - len - 1);
            c->rlen -= len + 1;
            return (ssize_t)len;
        }
        scanned = c->rlen;
        if (c->rlen > CHAND__MAX_LINE) {
            chand__conn_drop(c);
            return chand__seterr(&c->err, CHAND_EPROTO, 0, "",
                                 "answer longer than %zu bytes",
                                 CHAND__MAX_LINE);
        }
        if (c->rcap - c->rlen < 4096) {
            size_t ncap = c->rcap ? c->rcap * 2 : 16384;
            char *nb = realloc(c->rbuf, ncap);
            if (!nb)
                return chand__seterr(&c->err, CHAND_ENOMEM, 0, "",
                                     "out of memory");
            c->rbuf = nb;
            c->rcap = ncap;
        }
        n = chand__recv(c, c->rbuf + c->rlen, c->rcap - c->rlen, &want);
        if (n > 0) {
            c->rlen += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = conn_poll_hb(c, want, deadline);
            if (rc > 0)
                continue;
            chand__conn_drop(c);
            if (rc == 0)
                /* The server did not answer within its own timeout plus
                 * the grace period.  The answer may still come, so the
                 * connection cannot be trusted to stay in step: close it,
                 * which also makes the server release this session. */
                return chand__seterr(&c->err, CHAND_ETIMEOUT, 0, "",
                                     "no answer from the server in time; "
                                     "connection closed");
            return chand__seterr(&c->err, CHAND_ECONN, 0, "", "poll: %s",
                                 strerror(errno));
        }
        chand__conn_drop(c);
        return chand__seterr(&c->err, CHAND_ECONN, 0, "", "connection lost: %s",
                             n == 0 ? "closed by the server" : strerror(errno));
    }
}

/* Reads answers until the one for id; returns 0 with *msg (new) and *ans
 * (borrowing from *msg), or a negative code. */
static int conn_await(chand_conn *c, int64_t id, int64_t deadline, json_t **msg,
                      proto_answer *ans)
{
    const proto_limits lim = {CHAND__MAX_LINE, CHAND__MAX_DEPTH};

    for (;;) {
        char *line = NULL;
        proto_error perr;
        ssize_t n = conn_readline(c, &line, deadline);
        json_t *m;

        if (n < 0)
            return (int)n;
        m = proto_parse_line(line, (size_t)n, &lim, &perr);
        if (!m || proto_answer_read(m, ans, &perr) < 0) {
            char seen[64];
            size_t k = (size_t)n < 60 ? (size_t)n : 60;

            /* What came, printable, so that "it said HTTP/1.1 400" tells
             * the user where they are pointed. */
            for (size_t i = 0; i < k; i++)
                seen[i] = (unsigned char)line[i] < 0x20 ||
                                  (unsigned char)line[i] >= 0x7f
                              ? '?'
                              : line[i];
            seen[k] = '\0';
            free(line);
            json_decref(m);
            chand__conn_drop(c);
            return chand__seterr(&c->err, CHAND_EPROTO, 0, "",
                                 "bad answer from the server: %s; it "
                                 "said '%s'",
                                 perr.message, seen);
        }
        free(line);
        /* Answers to other ids are late answers to calls this client gave
         * up on; a null id is the server complaining about a line it could
         * not read, which can only be ours. */
        if (ans->id == id || ans->id < 0) {
            *msg = m;
            return 0;
        }
        json_decref(m);
    }
}

int chand__call_once(chand_conn *c, const char *method, json_t *params,
                     int64_t timeout_ms, int64_t deadline, json_t **result)
{
    json_t *p, *req, *msg = NULL;
    proto_answer ans;
    int64_t id;
    char *line;
    size_t len;
    int rc;

    if (result)
        *result = NULL;
    if (!c || !method)
        return CHAND_EARG;
    if (c->fd < 0)
        return chand__seterr(&c->err, CHAND_ECONN, 0, "", "not connected");
    p = chand__params(method, params, timeout_ms);
    if (!p)
        return chand__seterr(&c->err, CHAND_EARG, 0, "",
                             "params must be a JSON object");
    id = c->next_id++;
    req = proto_request_new(id, method, p);
    if (!req)
        return chand__seterr(&c->err, CHAND_ENOMEM, 0, "", "out of memory");
    line = proto_dump_line(req, &len);
    json_decref(req);
    if (!line)
        return chand__seterr(&c->err, CHAND_ENOMEM, 0, "",
                             "cannot encode the request");
    rc = conn_write(c, line, len, deadline);
    free(line);
    if (rc == CHAND_ECONN && c->fd >= 0) {
        /* Writing failed because the server hung up: keep its last word
         * (say, too_large) if it is already here, else report the loss. */
        chand_error lost = c->err;
        rc = conn_await(c, id, chand__now_ms() + 100, &msg, &ans);
        chand__conn_drop(c);
        if (rc < 0) {
            c->err = lost;
            return CHAND_ECONN;
        }
    } else if (rc < 0) {
        return rc;
    } else {
        rc = conn_await(c, id, deadline, &msg, &ans);
        if (rc < 0)
            return rc;
    }
    if (ans.code != 0) {
        rc = chand__answer_error(&ans, &c->err);
        if (rc == CHAND_ENOTLEADER)
            chand__route_note(&c->rt, &ans);
        json_decref(msg);
        return rc;
    }
    if (!json_is_object(ans.result)) {
        json_decref(msg);
        return chand__seterr(&c->err, CHAND_EPROTO, 0, "",
                             "result is not an object");
    }
    if (result)
        *result = json_incref(ans.result);
    json_decref(msg);
    c->err = (chand_error){0};
    return 0;
}

int chand_call(chand_conn *c, const char *method, json_t *params,
               int64_t timeout_ms, json_t **result)
{
    int64_t deadline =
        timeout_ms < 0 ? -1 : chand__now_ms() + timeout_ms + CHAND_GRACE_MS;

    return chand__call_until(c, method, params, timeout_ms, deadline, result);
}
