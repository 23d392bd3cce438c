/*
 * failover.c - libchand and a replicated chand: a connection's route (the
 * servers given, "a,b,c", the one in use, the leader the last not_leader
 * answer named) and the rules both APIs follow with it: which server to
 * try next, when to pause, how long to look for the leader, which errors
 * end the search, and what a call that gave up reports.  The blocking
 * API's loops are here too (chand_reconnect, chand__call_until); the
 * asynchronous API runs the same rules from its event loop (async_dial.c).
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
/* The pause between rounds during an election grows from FO_PAUSE_MIN to
 * FO_PAUSE_MAX ms: short enough that finding the new leader adds little
 * to the election (a timeout of 1 s or more), long enough not to flood
 * the followers. */
#define FO_PAUSE_MIN 20
#define FO_PAUSE_MAX 200

/* ------------------------------------------------------------------ */
/* The route: servers and the current one                             */
/* ------------------------------------------------------------------ */

/* Points r at one URL, freeing the old host.  Returns 0, CHAND_EARG or
 * CHAND_ENOMEM. */
static int route_go(chand__route *r, const char *url)
{
    free(r->host);
    r->host = NULL;
    return chand__url_parse(url, &r->kind, &r->host, &r->port);
}

void chand__route_free(chand__route *r)
{
    for (size_t i = 0; i < r->nservers; i++)
        free(r->servers[i]);
    free(r->servers);
    free(r->host);
    r->servers = NULL;
    r->host = NULL;
    r->nservers = r->cur = 0;
}

int chand__route_host(chand__route *r, const char *host, int port)
{
    r->kind = CHAND__TCP;
    r->port = port ? port : CHAND_DEFAULT_PORT;
    r->failover_ms = CHAND__FAILOVER_MS;
    r->host = strdup(host && *host ? host : CHAND_DEFAULT_HOST);
    return r->host ? 0 : CHAND_ENOMEM;
}

/* Appends the n bytes at s, trimmed of blanks, to r->servers after
 * checking they parse.  Returns 0 or a code with err filled. */
static int servers_add(chand__route *r, const char *s, size_t n,
                       chand_error *err)
{
    char *url, **grown;
    int rc;

    while (n > 0 && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (r->nservers == FO_MAX_SERVERS)
        return chand__seterr(err, CHAND_EARG, 0, "",
                             "bad server URL list: more than %d servers",
                             FO_MAX_SERVERS);
    url = strndup(s, n);
    if (!url)
        return chand__seterr(err, CHAND_ENOMEM, 0, "", "out of memory");
    rc = n ? route_go(r, url) : CHAND_EARG;
    if (rc < 0) {
        rc = chand__seterr(err, rc, 0, "",
                           rc == CHAND_EARG
                               ? "bad server URL '%.200s' (chand://HOST:PORT, "
                                 "chands://HOST:PORT or unix:/PATH; a comma "
                                 "between servers)"
                               : "out of memory (%.200s)",
                           url);
        free(url);
        return rc;
    }
    grown = realloc(r->servers, (r->nservers + 1) * sizeof *grown);
    if (!grown) {
        free(url);
        return chand__seterr(err, CHAND_ENOMEM, 0, "", "out of memory");
    }
    r->servers = grown;
    r->servers[r->nservers++] = url;
    return 0;
}

int chand__route_set(chand__route *r, const char *list, const char *failover_ms,
                     chand_error *err)
{
    const char *p = list;
    int rc;

    chand__route_free(r);
    r->failover_ms = CHAND__FAILOVER_MS;
    if (failover_ms) {
        char *end;
        long long v = strtoll(failover_ms, &end, 10);

        if (!*failover_ms || *end || v < 0 || v > 86400000)
            return chand__seterr(err, CHAND_EARG, 0, "",
                                 "bad failover_ms '%.40s' (0 to 86400000)",
                                 failover_ms);
        r->failover_ms = v;
    }
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);

        rc = servers_add(r, p, n, err);
        if (rc < 0)
            goto out_free;
        if (!comma)
            break;
        p = comma + 1;
    }
    rc = route_go(r, r->servers[0]);
    if (rc < 0) {
        chand__seterr(err, rc, 0, "", "out of memory");
        goto out_free;
    }
    return 0;
out_free:
    chand__route_free(r);
    return rc;
}

int chand__route_first(chand__route *r)
{
    return r->nservers ? route_go(r, r->servers[0]) : 0;
}

void chand__route_note(chand__route *r, const proto_answer *ans)
{
    const char *l = json_string_value(json_object_get(ans->data, "leader"));

    snprintf(r->leader, sizeof r->leader, "%s", l ? l : "");
}

int chand__route_next(chand__route *r)
{
    if (r->leader[0] && r->kind != CHAND__UNIX) {
        char url[sizeof r->leader + 16];
        chand__route hint = {.kind = CHAND__TCP};
        int rc;

        snprintf(url, sizeof url, "%s%s",
                 r->kind == CHAND__TLS ? "chands://" : "chand://", r->leader);
        r->leader[0] = '\0';
        /* Parsed aside: an address we cannot read leaves r as it was. */
        rc = route_go(&hint, url);
        if (rc == CHAND_ENOMEM)
            return rc;
        if (rc == 0) {
            free(r->host);
            r->host = hint.host;
            r->kind = hint.kind;
            r->port = hint.port;
            for (size_t i = 0; i < r->nservers; i++) {
                chand__route probe = {.kind = CHAND__TCP};

                if (route_go(&probe, r->servers[i]) == 0 &&
                    probe.kind == r->kind && probe.port == r->port &&
                    !strcmp(probe.host, r->host))
                    r->cur = i;
                free(probe.host);
            }
            return 0;
        }
        /* A leader address we cannot read: ask the next server. */
    }
    if (r->nservers == 0)
        return 0;
    r->cur = (r->cur + 1) % r->nservers;
    return route_go(r, r->servers[r->cur]);
}

/* ------------------------------------------------------------------ */
/* The rules of a search                                              */
/* ------------------------------------------------------------------ */

bool chand__route_fatal(int rc)
{
    return rc == CHAND_EUNAUTH || rc == CHAND_EDENIED || rc == CHAND_ENOMEM ||
           rc == CHAND_EARG;
}

int64_t chand__route_until(const chand__route *r, int64_t timeout_ms)
{
    if (timeout_ms < 0)
        return -1;
    return chand__now_ms() +
           (timeout_ms > r->failover_ms ? timeout_ms : r->failover_ms);
}

int64_t chand__route_dial_ms(int64_t dial_ms, int64_t deadline)
{
    if (deadline >= 0) {
        int64_t left = deadline - chand__now_ms();

        if (left < 1)
            left = 1;
        if (dial_ms < 0 || dial_ms > left)
            dial_ms = left;
    }
    return dial_ms;
}

void chand__route_walk(chand__route *r)
{
    r->tried = 0;
    r->pause = FO_PAUSE_MIN;
}

int64_t chand__route_failed(chand__route *r, int64_t deadline)
{
    size_t round = r->nservers > 1 ? r->nservers : 1;
    int64_t ms = r->pause;

    if (++r->tried < round || r->leader[0])
        return 0;
    /* Every server refused or is a follower that knows no leader: give
     * the election time, more each round. */
    r->tried = 0;
    r->pause = r->pause * 2 > FO_PAUSE_MAX ? FO_PAUSE_MAX : r->pause * 2;
    if (deadline >= 0 && ms > deadline - chand__now_ms())
        ms = deadline - chand__now_ms();
    return ms > 0 ? ms : 0;
}

void chand__route_hops(chand__route *r)
{
    r->hops = 0;
    r->hop_pause = FO_PAUSE_MIN;
}

int64_t chand__route_hop(chand__route *r)
{
    int64_t ms = r->hop_pause;

    if (r->hops++ == 0 && r->leader[0])
        return 0;
    /* An election (no leader named, or the one named did not lead after
     * all): wait a little before asking around, so that clients do not
     * flood the nodes that are electing. */
    r->hop_pause =
        r->hop_pause * 2 > FO_PAUSE_MAX ? FO_PAUSE_MAX : r->hop_pause * 2;
    return ms;
}

int chand__route_giveup(int64_t failover_ms, const chand_error *why, int rc,
                        const chand_error *last, bool expired, chand_error *err)
{
    /* Copies: err may be either of them. */
    chand_error w = *why, l = last ? *last : (chand_error){0};

    /* A dial cut short by the failover deadline says nothing of the
     * servers: the answer they gave, not_leader, stands.  A server that
     * could not be reached in time leaves its code. */
    if (expired && l.message[0])
        return chand__seterr(
            err, w.code, w.rpc_code, w.reason,
            "no leader within %lld ms (%.100s; last dial: %.100s)",
            (long long)failover_ms, w.message, l.message);
    if (expired)
        return chand__seterr(err, w.code, w.rpc_code, w.reason,
                             "no leader within %lld ms (%.100s)",
                             (long long)failover_ms, w.message);
    return chand__seterr(err, rc, 0, l.reason,
                         "no leader within %lld ms (%.100s): %.120s",
                         (long long)failover_ms, w.message, l.message);
}

/* ------------------------------------------------------------------ */
/* The blocking API's searches                                        */
/* ------------------------------------------------------------------ */

/* Sleeps ms milliseconds (a pause between rounds of servers that all
 * refused: an election is under way). */
static void fo_sleep(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000,
                          .tv_nsec = (long)(ms % 1000) * 1000000L};

    if (ms <= 0)
        return;
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Dials servers (the current one first when current) until one says
 * hello or deadline (-1: none) passes; each dial gets at most
 * c->dial_ms.  Returns 0 or the last dial's code. */
static int fo_connect(chand_conn *c, bool current, int64_t deadline)
{
    chand__route_walk(&c->rt);
    for (;;) {
        int rc;

        if (!current && (rc = chand__route_next(&c->rt)) < 0)
            return chand__seterr(&c->err, rc, 0, "", "out of memory");
        current = false;
        rc = chand__dial(c, chand__route_dial_ms(c->dial_ms, deadline));
        if (rc == 0 || chand__route_fatal(rc))
            return rc;
        if (deadline >= 0 && chand__now_ms() >= deadline)
            return rc;
        fo_sleep(chand__route_failed(&c->rt, deadline));
    }
}

int chand_reconnect(chand_conn *c, int64_t timeout_ms)
{
    if (!c)
        return CHAND_EARG;
    c->rt.leader[0] = '\0';
    c->dial_ms = timeout_ms;
    if (c->rt.nservers <= 1) {
        /* One server: the one given, even after a redirect elsewhere. */
        if (chand__route_first(&c->rt) < 0)
            return chand__seterr(&c->err, CHAND_ENOMEM, 0, "", "out of memory");
        return chand__dial(c, timeout_ms);
    }
    /* Several: the current one, then the others in turn, for as long as
     * the longer of the connect timeout and the failover timeout. */
    return fo_connect(c, true, chand__route_until(&c->rt, timeout_ms));
}

int chand__call_until(chand_conn *c, const char *method, json_t *params,
                      int64_t timeout_ms, int64_t deadline, json_t **result)
{
    int rc = chand__call_once(c, method, params, timeout_ms, deadline, result);
    int64_t start, until;

    if (rc != CHAND_ENOTLEADER)
        return rc;
    start = chand__now_ms();
    until = start + c->rt.failover_ms;
    chand__route_hops(&c->rt);
    while (rc == CHAND_ENOTLEADER && chand__now_ms() < until) {
        chand_error why = c->err;

        fo_sleep(chand__route_hop(&c->rt));
        rc = fo_connect(c, false, until);
        if (rc < 0)
            return chand__route_giveup(c->rt.failover_ms, &why, rc, &c->err,
                                       chand__now_ms() >= until, &c->err);
        /* The server's timeout is carried in the request; the client's
         * deadline moves with the time spent finding the leader. */
        rc = chand__call_once(
            c, method, params, timeout_ms,
            deadline < 0 ? -1 : deadline + chand__now_ms() - start, result);
    }
    return rc;
}
