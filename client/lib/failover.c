/*
 * failover.c - libchand and a replicated chand: a connection's list of
 * servers ("a,b,c"), reconnecting to whichever answers, and following
 * not_leader answers to the leader (data.leader, else the next server)
 * for as long as the failover timeout allows.
 *
 * Which retry this is (issue 19 leaves two options): a call is sent again
 * only after a not_leader answer, which says the node did nothing with
 * it.  A call whose connection dies in flight fails with CHAND_ECONN, as
 * with one server: requests carry no client session and request id, so a
 * new leader could not tell a retried send from a second one, and the
 * library never guesses.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* More would be a typo, not a cluster (raft clusters are 3, 5, 7). */
#define FO_MAX_SERVERS 64
/* The pause between rounds during an election grows from 20 ms to this:
 * short enough that finding the new leader adds little to the election
 * (a timeout of 1 s or more), long enough not to flood the followers. */
#define FO_PAUSE_MAX 200

void chand__servers_free(chand_conn *c)
{
    for (size_t i = 0; i < c->nservers; i++)
        free(c->servers[i]);
    free(c->servers);
    c->servers = NULL;
    c->nservers = c->cur = 0;
}

/* Appends the n bytes at s, trimmed of blanks, to c->servers after
 * checking they parse.  Returns 0 or a code with c->err filled. */
static int servers_add(chand_conn *c, const char *s, size_t n)
{
    char *url, **grown;
    int rc;

    while (n > 0 && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (c->nservers == FO_MAX_SERVERS)
        return chand__seterr(&c->err, CHAND_EARG, 0, "",
                             "bad server URL list: more than %d servers",
                             FO_MAX_SERVERS);
    url = strndup(s, n);
    if (!url)
        return chand__seterr(&c->err, CHAND_ENOMEM, 0, "", "out of memory");
    rc = n ? chand__parse_url(c, url) : CHAND_EARG;
    if (rc < 0) {
        rc = chand__seterr(&c->err, rc, 0, "",
                           rc == CHAND_EARG
                               ? "bad server URL '%.200s' (chand://HOST:PORT, "
                                 "chands://HOST:PORT or unix:/PATH; a comma "
                                 "between servers)"
                               : "out of memory (%.200s)",
                           url);
        free(url);
        return rc;
    }
    grown = realloc(c->servers, (c->nservers + 1) * sizeof *grown);
    if (!grown) {
        free(url);
        return chand__seterr(&c->err, CHAND_ENOMEM, 0, "", "out of memory");
    }
    c->servers = grown;
    c->servers[c->nservers++] = url;
    return 0;
}

int chand__servers_set(chand_conn *c, const char *list)
{
    const char *p = list;

    chand__servers_free(c);
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        int rc = servers_add(c, p, n);

        if (rc < 0) {
            chand__servers_free(c);
            return rc;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    return chand__parse_url(c, c->servers[0]);
}

/* Sleeps ms milliseconds (a pause between rounds of servers that all
 * refused: an election is under way). */
static void fo_sleep(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000,
                          .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Points c at the leader the last not_leader answer named (keeping c->cur
 * on it when it is one of the list), else at the next server of the list;
 * a connection without a list stays where it is.  Returns 0 or
 * CHAND_ENOMEM. */
static int fo_next(chand_conn *c)
{
    if (c->leader[0] && c->kind != CHAND__UNIX) {
        char url[sizeof c->leader + 16];
        chand_conn hint = {.kind = CHAND__TCP};
        int rc;

        snprintf(url, sizeof url, "%s%s",
                 c->kind == CHAND__TLS ? "chands://" : "chand://", c->leader);
        c->leader[0] = '\0';
        /* Parsed aside: an address we cannot read leaves c as it was. */
        rc = chand__parse_url(&hint, url);
        if (rc == CHAND_ENOMEM)
            return rc;
        if (rc == 0) {
            free(c->host);
            c->host = hint.host;
            c->kind = hint.kind;
            c->port = hint.port;
            for (size_t i = 0; i < c->nservers; i++) {
                chand_conn probe = {.kind = CHAND__TCP};

                if (chand__parse_url(&probe, c->servers[i]) == 0 &&
                    probe.kind == c->kind && probe.port == c->port &&
                    !strcmp(probe.host, c->host))
                    c->cur = i;
                free(probe.host);
            }
            return 0;
        }
        /* A leader address we cannot read: ask the next server. */
    }
    if (c->nservers == 0)
        return 0;
    c->cur = (c->cur + 1) % c->nservers;
    return chand__parse_url(c, c->servers[c->cur]);
}

/* Errors that another server would give as well. */
static bool fo_fatal(int rc)
{
    return rc == CHAND_EUNAUTH || rc == CHAND_EDENIED || rc == CHAND_ENOMEM ||
           rc == CHAND_EARG;
}

/* Dials servers (the current one first when current) until one says
 * hello or deadline (-1: none) passes; each dial gets at most
 * c->dial_ms.  Returns 0 or the last dial's code. */
static int fo_connect(chand_conn *c, bool current, int64_t deadline)
{
    size_t round = c->nservers > 1 ? c->nservers : 1, tried = 0;
    int64_t pause = 20;

    for (;;) {
        int64_t t = c->dial_ms;
        int rc;

        if (!current && (rc = fo_next(c)) < 0)
            return chand__seterr(&c->err, rc, 0, "", "out of memory");
        current = false;
        if (deadline >= 0) {
            int64_t left = deadline - chand__now_ms();
            if (left < 1)
                left = 1;
            if (t < 0 || t > left)
                t = left;
        }
        rc = chand__dial(c, t);
        if (rc == 0 || fo_fatal(rc))
            return rc;
        if (deadline >= 0 && chand__now_ms() >= deadline)
            return rc;
        if (++tried >= round && !c->leader[0]) {
            /* Every server refused or is a follower that knows no leader:
             * give the election time, more each round. */
            tried = 0;
            if (deadline >= 0 && pause > deadline - chand__now_ms())
                pause = deadline - chand__now_ms();
            if (pause > 0)
                fo_sleep(pause);
            pause = pause * 2 > FO_PAUSE_MAX ? FO_PAUSE_MAX : pause * 2;
        }
    }
}

int chand_reconnect(chand_conn *c, int64_t timeout_ms)
{
    int64_t wait;

    if (!c)
        return CHAND_EARG;
    c->leader[0] = '\0';
    c->dial_ms = timeout_ms;
    if (c->nservers <= 1) {
        /* One server: the one given, even after a redirect elsewhere. */
        if (c->nservers == 1 && chand__parse_url(c, c->servers[0]) < 0)
            return chand__seterr(&c->err, CHAND_ENOMEM, 0, "", "out of memory");
        return chand__dial(c, timeout_ms);
    }
    /* Several: the current one, then the others in turn, for as long as
     * the longer of the connect timeout and the failover timeout. */
    if (timeout_ms < 0)
        return fo_connect(c, true, -1);
    wait = timeout_ms > c->failover_ms ? timeout_ms : c->failover_ms;
    return fo_connect(c, true, chand__now_ms() + wait);
}

int chand__call_until(chand_conn *c, const char *method, json_t *params,
                      int64_t timeout_ms, int64_t deadline, json_t **result)
{
    int rc = chand__call_once(c, method, params, timeout_ms, deadline, result);
    int64_t start, until, pause = 20;

    if (rc != CHAND_ENOTLEADER)
        return rc;
    start = chand__now_ms();
    until = start + c->failover_ms;
    for (int hop = 0; rc == CHAND_ENOTLEADER && chand__now_ms() < until;
         hop++) {
        chand_error why = c->err;

        if (hop > 0 || !c->leader[0]) {
            /* An election (no leader named, or the one named did not
             * lead after all): wait a little before asking around, so
             * that clients do not flood the nodes that are electing. */
            fo_sleep(pause);
            pause = pause * 2 > FO_PAUSE_MAX ? FO_PAUSE_MAX : pause * 2;
        }
        rc = fo_connect(c, false, until);
        if (rc < 0) {
            chand_error last = c->err;

            /* A dial cut short by the failover deadline says nothing of
             * the servers: the answer they gave, not_leader, stands.  A
             * server that could not be reached in time leaves its code. */
            if (chand__now_ms() >= until)
                return chand__seterr(
                    &c->err, why.code, why.rpc_code, why.reason,
                    "no leader within %lld ms (%.100s; last dial: %.100s)",
                    (long long)c->failover_ms, why.message, last.message);
            return chand__seterr(&c->err, rc, 0, last.reason,
                                 "no leader within %lld ms (%.100s): %.120s",
                                 (long long)c->failover_ms, why.message,
                                 last.message);
        }
        /* The server's timeout is carried in the request; the client's
         * deadline moves with the time spent finding the leader. */
        rc = chand__call_once(
            c, method, params, timeout_ms,
            deadline < 0 ? -1 : deadline + chand__now_ms() - start, result);
    }
    return rc;
}
