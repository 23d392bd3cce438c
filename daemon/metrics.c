/*
 * metrics.c - Prometheus text exposition, /healthz and /readyz over evhttp.
 *
 * The HTTP server shares the I/O thread's event base: a scrape is a few
 * microseconds of formatting, cheaper than a thread of its own, and being
 * on the I/O thread lets it take the same snapshot runtime.stats renders
 * (stats_take) and walk the registry the way runtime.list does.  The
 * counters live in server.c (srv_stat); this file only renders them.
 *
 * Its connections count in max_conns with the sessions.  libevent 2.1's
 * evhttp has no hook for a connection's start and end, but it asks
 * evhttp_set_bevcb for each accepted connection's bufferevent: we make it,
 * count it and keep a reference; bufferevent_free clears its callbacks,
 * so a sweep (on a full house, and every second) uncounts those evhttp
 * has let go and drops our reference, which closes the socket.  One past
 * max_conns is shut down at once, which evhttp reads as end-of-file.
 */
#include "metrics.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "daemon.h"

static struct evhttp *metrics_http;

/* Object type names, in obj_type order (the families' obj_ops names). */
static const char *const metrics_type_names[OBJ_TYPE_COUNT] = {
    [OBJ_CHAN] = "chan",   [OBJ_MUTEX] = "mutex", [OBJ_RWMUTEX] = "rwmutex",
    [OBJ_WG] = "wg",       [OBJ_ONCE] = "once",   [OBJ_COND] = "cond",
    [OBJ_POOL] = "pool",   [OBJ_MAP] = "map",     [OBJ_ATOMIC] = "atomic",
    [OBJ_TIMER] = "timer",
};

static void metrics_count_obj(obj *o, void *arg)
{
    int64_t *by_type = arg;

    if ((int)o->ops->type > 0 && o->ops->type < OBJ_TYPE_COUNT)
        by_type[o->ops->type]++;
}

/* Writes "# HELP" and "# TYPE" for one metric family. */
static void metrics_head(struct evbuffer *b, const char *name, const char *type,
                         const char *help)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
                        type);
}

static void metrics_gauge(struct evbuffer *b, const char *name,
                          const char *help, long long v)
{
    metrics_head(b, name, "gauge", help);
    evbuffer_add_printf(b, "%s %lld\n", name, v);
}

/* Authentication and refusals: a brute force shows as auth failures,
 * delayed attempts and refusals with reason limit; a client with the
 * wrong rules as denied. */
static void metrics_security(struct evbuffer *b, const stats_snap *sn)
{
    static const struct {
        srv_sec_event ev;
        const char *label;
    } refused[] = {
        {SRV_REFUSED_UNAUTH, "unauthenticated"},
        {SRV_REFUSED_DENIED, "denied"},
        {SRV_REFUSED_LIMIT, "limit"},
        {SRV_REFUSED_BUSY, "busy"},
        {SRV_REFUSED_AUTH_TIMEOUT, "auth_timeout"},
    };
    const uint64_t *c = sn->sec;

    metrics_gauge(b, "chand_users", "Users in the users file in force.",
                  (long long)sn->users);
    metrics_head(b, "chand_auth_total", "counter",
                 "Authentication attempts (auth, hello with credentials) by "
                 "result.");
    evbuffer_add_printf(b, "chand_auth_total{result=\"ok\"} %llu\n",
                        (unsigned long long)c[SRV_AUTH_OK]);
    evbuffer_add_printf(b, "chand_auth_total{result=\"failed\"} %llu\n",
                        (unsigned long long)c[SRV_AUTH_FAILED]);
    metrics_head(b, "chand_auth_delayed_total", "counter",
                 "Attempts held back by the failure limiter (per peer).");
    evbuffer_add_printf(b, "chand_auth_delayed_total %llu\n",
                        (unsigned long long)c[SRV_AUTH_DELAYED]);
    metrics_head(b, "chand_refused_total", "counter",
                 "Requests and sessions refused, by reason: before "
                 "authentication, outside the rules, too many failures, "
                 "every hash slot busy, no authentication in time.");
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        evbuffer_add_printf(b, "chand_refused_total{reason=\"%s\"} %llu\n",
                            refused[i].label,
                            (unsigned long long)c[refused[i].ev]);
    metrics_head(b, "chand_tls_handshake_failures_total", "counter",
                 "TLS handshakes that failed or passed their deadline.");
    evbuffer_add_printf(b, "chand_tls_handshake_failures_total %llu\n",
                        (unsigned long long)c[SRV_TLS_HANDSHAKE_FAILED]);
    metrics_gauge(b, "chand_auth_hashing",
                  "Password hashes being verified now.",
                  (long long)sn->hashing);
    metrics_gauge(b, "chand_auth_hash_waiting",
                  "Authentication attempts waiting for a hash slot.",
                  (long long)sn->hash_waiting);
}

static void metrics_render(struct evbuffer *b)
{
    int64_t by_type[OBJ_TYPE_COUNT] = {0};
    const proto_method *t;
    stats_snap sn;
    size_t n;

    stats_take(&sn);
    reg_foreach(NULL, metrics_count_obj, by_type);

    metrics_head(b, "chand_info", "gauge", "Version of the running chand.");
    evbuffer_add_printf(b, "chand_info{version=\"%s\",protocol=\"%d\"} 1\n",
                        CHAND_VERSION, PROTO_VERSION);
    metrics_gauge(b, "chand_goroutines", "Goroutines in the runtime.",
                  sn.goroutines);
    metrics_gauge(b, "chand_threads", "OS threads of the runtime.", sn.threads);
    metrics_gauge(b, "chand_gomaxprocs", "Runtime processors (GOMAXPROCS).",
                  sn.gomaxprocs);
    metrics_gauge(b, "chand_sessions", "Open client connections.",
                  (long long)sn.sessions);
    metrics_gauge(b, "chand_metrics_connections",
                  "Open metrics HTTP connections (they count in max_conns).",
                  (long long)atomic_load(&srv_stat.metrics_conns));
    metrics_head(b, "chand_objects", "gauge", "Named objects by type.");
    for (int i = 1; i < OBJ_TYPE_COUNT; i++)
        if (metrics_type_names[i])
            evbuffer_add_printf(b, "chand_objects{type=\"%s\"} %lld\n",
                                metrics_type_names[i], (long long)by_type[i]);
    metrics_gauge(b, "chand_waiters", "Requests parked waiting.",
                  (long long)sn.waiters);
    metrics_gauge(b, "chand_held_locks", "Locks held by clients.",
                  (long long)sn.held_locks);
    metrics_gauge(b, "chand_deliveries_inflight",
                  "Acknowledged deliveries not yet acknowledged.",
                  (long long)sn.dlv_inflight);
    metrics_head(b, "chand_deliveries_redelivered_total", "counter",
                 "Deliveries given back for another attempt.");
    evbuffer_add_printf(b, "chand_deliveries_redelivered_total %lld\n",
                        (long long)sn.dlv_redelivered);
    metrics_head(b, "chand_dead_letters_total", "counter",
                 "Values sent to a dead-letter channel.");
    evbuffer_add_printf(b, "chand_dead_letters_total %lld\n",
                        (long long)sn.dlv_dead_letters);
    metrics_head(b, "chand_dead_letters_dropped_total", "counter",
                 "Dead letters dropped (no, missing, full or closed "
                 "dead-letter channel).");
    evbuffer_add_printf(b, "chand_dead_letters_dropped_total %lld\n",
                        (long long)sn.dlv_dropped);
    metrics_gauge(b, "chand_memory_bytes",
                  "Bytes clients make the daemon hold (max_memory counts "
                  "these).",
                  (long long)sn.memory_bytes);
    metrics_gauge(b, "chand_max_memory_bytes", "The max_memory setting.",
                  (long long)sn.max_memory);
    metrics_gauge(b, "chand_output_buffer_bytes",
                  "Bytes queued to clients that have not read them yet.",
                  (long long)sn.output_buffer_bytes);
    metrics_gauge(b, "chand_draining", "1 while shutting down.",
                  sn.draining ? 1 : 0);
    if (sn.persist) {
        metrics_gauge(b, "chand_wal_log_bytes",
                      "Bytes of the durability log's live segments.",
                      (long long)sn.log_bytes);
        metrics_gauge(b, "chand_wal_snapshot_bytes",
                      "Bytes of the live snapshot.",
                      (long long)sn.snapshot_bytes);
        metrics_gauge(b, "chand_wal_pending_bytes",
                      "Log bytes appended, not yet written.",
                      (long long)sn.pending_bytes);
        metrics_head(b, "chand_wal_fsyncs_total", "counter",
                     "fdatasync calls on the log.");
        evbuffer_add_printf(b, "chand_wal_fsyncs_total %lld\n",
                            (long long)sn.fsyncs);
        metrics_head(b, "chand_wal_last_fsync_seconds", "gauge",
                     "Duration of the last fdatasync.");
        evbuffer_add_printf(b, "chand_wal_last_fsync_seconds %.6f\n",
                            (double)sn.last_fsync_ns / 1e9);
        metrics_gauge(b, "chand_wal_write_error",
                      "1 while the log cannot be written (disk full): "
                      "writes fail.",
                      sn.wal_error ? 1 : 0);
    }
    if (sn.cluster) {
        metrics_gauge(b, "chand_raft_role",
                      "Raft role: 0 unavailable, 1 follower, 2 candidate, "
                      "3 leader.",
                      (long long)sn.raft_role);
        metrics_gauge(b, "chand_raft_term", "The current raft term.",
                      (long long)sn.raft_term);
        metrics_gauge(b, "chand_raft_commit_index",
                      "The highest raft index known committed.",
                      (long long)sn.raft_commit);
        metrics_gauge(b, "chand_raft_peers",
                      "Servers in the raft configuration.",
                      (long long)sn.raft_peers);
        metrics_gauge(b, "chand_raft_leader_id",
                      "The leader's id (0: none known).",
                      (long long)sn.raft_leader);
        metrics_head(b, "chand_raft_rebuilds_total", "counter",
                     "Times this node stopped leading and rebuilt its state "
                     "from committed entries.");
        evbuffer_add_printf(b, "chand_raft_rebuilds_total %lld\n",
                            (long long)sn.raft_rebuilds);
    }

    metrics_head(b, "chand_requests_total", "counter",
                 "Requests answered, by method and result.");
    t = proto_methods(&n);
    for (size_t i = 0; i < n && i < SRV_MAX_METHODS; i++)
        for (int r = 0; r < 2; r++)
            evbuffer_add_printf(
                b, "chand_requests_total{method=\"%s\",result=\"%s\"} %llu\n",
                t[i].name, r ? "error" : "ok",
                (unsigned long long)atomic_load(&srv_stat.answers[t[i].id][r]));
    for (int r = 0; r < 2; r++)
        evbuffer_add_printf(
            b, "chand_requests_total{method=\"\",result=\"%s\"} %llu\n",
            r ? "error" : "ok",
            (unsigned long long)atomic_load(&srv_stat.answers_invalid[r]));
    metrics_security(b, &sn);
    metrics_head(b, "chand_bytes_in_total", "counter",
                 "Request bytes read from clients.");
    evbuffer_add_printf(b, "chand_bytes_in_total %llu\n",
                        (unsigned long long)atomic_load(&srv_stat.bytes_in));
    metrics_head(b, "chand_bytes_out_total", "counter",
                 "Answer bytes written to clients.");
    evbuffer_add_printf(b, "chand_bytes_out_total %llu\n",
                        (unsigned long long)atomic_load(&srv_stat.bytes_out));
}

static void metrics_reply(struct evhttp_request *req, int code,
                          const char *reason, const char *ctype,
                          struct evbuffer *body)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      ctype);
    evhttp_send_reply(req, code, reason, body);
}

static void metrics_cb(struct evhttp_request *req, void *arg)
{
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    struct evbuffer *b = evbuffer_new();
    (void)arg;

    if (!b) {
        evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
        return;
    }
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evbuffer_add_printf(b, "only GET\n");
        metrics_reply(req, 405, "Method Not Allowed", "text/plain", b);
    } else if (path && strcmp(path, "/metrics") == 0) {
        metrics_render(b);
        metrics_reply(req, HTTP_OK, "OK",
                      "text/plain; version=0.0.4; charset=utf-8", b);
    } else if (path && strcmp(path, "/healthz") == 0) {
        evbuffer_add_printf(b, "ok\n");
        metrics_reply(req, HTTP_OK, "OK", "text/plain", b);
    } else if (path && strcmp(path, "/readyz") == 0) {
        if (srv_draining()) {
            evbuffer_add_printf(b, "draining\n");
            metrics_reply(req, 503, "Service Unavailable", "text/plain", b);
        } else {
            evbuffer_add_printf(b, "ready\n");
            metrics_reply(req, HTTP_OK, "OK", "text/plain", b);
        }
    } else {
        evbuffer_add_printf(b, "not found: try /metrics, /healthz, "
                               "/readyz\n");
        metrics_reply(req, HTTP_NOTFOUND, "Not Found", "text/plain", b);
    }
    evbuffer_free(b);
}

/* The bufferevents given to evhttp, each with a reference of ours, so
 * that one evhttp has freed stays readable until a sweep notices it. */
static struct bufferevent **metrics_bevs;
static size_t metrics_nbevs, metrics_capbevs;
static struct event *metrics_ev_sweep;

void metrics_sweep(void)
{
    size_t j = 0;

    for (size_t i = 0; i < metrics_nbevs; i++) {
        struct bufferevent *bev = metrics_bevs[i];
        bufferevent_event_cb ecb = NULL;

        /* evhttp sets an event callback on every connection it serves,
         * and bufferevent_free clears it. */
        bufferevent_getcb(bev, NULL, NULL, &ecb, NULL);
        if (ecb) {
            metrics_bevs[j++] = bev;
            continue;
        }
        bufferevent_decref(bev); /* the last reference: closes the socket */
        atomic_fetch_sub(&srv_stat.metrics_conns, 1);
    }
    metrics_nbevs = j;
}

static void metrics_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    metrics_sweep();
}

/* Runs once evhttp has given the refused connection its socket: shutting
 * it makes evhttp read end-of-file and free the connection. */
static void metrics_refuse_cb(evutil_socket_t fd, short what, void *arg)
{
    evutil_socket_t s = bufferevent_getfd(arg);
    (void)fd;
    (void)what;

    if (s >= 0)
        shutdown(s, SHUT_RDWR);
    bufferevent_decref(arg);
}

/* evhttp's bufferevent for a new connection.  NULL makes evhttp build its
 * own (uncounted), so only allocation failure returns it. */
static struct bufferevent *metrics_bevcb(struct event_base *base, void *arg)
{
    struct bufferevent *bev;
    struct timeval now = {0, 0};
    (void)arg;

    if (metrics_nbevs == metrics_capbevs) {
        size_t ncap = metrics_capbevs ? metrics_capbevs * 2 : 16;
        struct bufferevent **n =
            realloc(metrics_bevs, ncap * sizeof *metrics_bevs);
        if (!n)
            return NULL;
        metrics_bevs = n;
        metrics_capbevs = ncap;
    }
    bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        return NULL;
    metrics_sweep();
    bufferevent_incref(bev);
    metrics_bevs[metrics_nbevs++] = bev;
    if (atomic_fetch_add(&srv_stat.metrics_conns, 1) +
            atomic_load(&srv_stat.sessions) >=
        srv_conf.max_conns) {
        log_warn("metrics connection refused: %d connections (max-conns)",
                 (int)(atomic_load(&srv_stat.sessions) +
                       atomic_load(&srv_stat.metrics_conns) - 1));
        /* A reference of the callback's own: a sweep may drop ours. */
        bufferevent_incref(bev);
        if (event_base_once(base, -1, EV_TIMEOUT, metrics_refuse_cb, bev,
                            &now) != 0) {
            bufferevent_decref(bev);
            log_warn("metrics connection not refused: served");
        }
    }
    return bev;
}

int metrics_start(struct event_base *base, const conf *c, char *err,
                  size_t errlen)
{
    struct evhttp_bound_socket *bs;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int port;
    size_t n;

    if (c->metrics_port == 0)
        return 0;
    proto_methods(&n);
    if (n > SRV_MAX_METHODS) {
        snprintf(err, errlen, "metrics: %zu methods, room for %d", n,
                 SRV_MAX_METHODS);
        return -1;
    }
    metrics_http = evhttp_new(base);
    if (!metrics_http) {
        snprintf(err, errlen, "metrics: evhttp_new failed");
        return -1;
    }
    evhttp_set_allowed_methods(
        metrics_http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                          EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
    evhttp_set_gencb(metrics_http, metrics_cb, NULL);
    evhttp_set_bevcb(metrics_http, metrics_bevcb, NULL);
    /* Closes the sockets of connections evhttp has let go, even when no
     * new connection comes to sweep them. */
    metrics_ev_sweep = event_new(base, -1, EV_PERSIST, metrics_sweep_cb, NULL);
    if (!metrics_ev_sweep ||
        event_add(metrics_ev_sweep, &(struct timeval){1, 0}) != 0) {
        snprintf(err, errlen, "metrics: cannot start the sweep timer");
        goto out_free;
    }
    /* A scrape is tiny; refuse anything big rather than buffer it. */
    evhttp_set_max_headers_size(metrics_http, 16384);
    evhttp_set_max_body_size(metrics_http, 4096);
    evhttp_set_timeout(metrics_http, 30);
    bs = evhttp_bind_socket_with_handle(
        metrics_http, c->metrics_bind,
        (ev_uint16_t)(c->metrics_port < 0 ? 0 : c->metrics_port));
    if (!bs) {
        snprintf(err, errlen, "metrics: cannot listen on %s port %d: %s",
                 c->metrics_bind, c->metrics_port < 0 ? 0 : c->metrics_port,
                 strerror(errno));
        goto out_free;
    }
    if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss,
                    &sl) != 0) {
        snprintf(err, errlen, "metrics: getsockname: %s", strerror(errno));
        goto out_free;
    }
    port =
        ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                       : ((struct sockaddr_in *)&ss)->sin_port);
    if (c->metrics_port_file[0] &&
        conf_write_port_file("metrics port file", c->metrics_port_file, port,
                             err, errlen) != 0)
        goto out_free;
    log_info("metrics on http://%s:%d/metrics", c->metrics_bind, port);
    return 0;

out_free:
    metrics_stop();
    return -1;
}

void metrics_stop(void)
{
    if (!metrics_http)
        return;
    if (metrics_ev_sweep)
        event_free(metrics_ev_sweep);
    metrics_ev_sweep = NULL;
    evhttp_free(metrics_http);
    metrics_http = NULL;
    metrics_sweep();
    for (size_t i = 0; i < metrics_nbevs; i++) {
        bufferevent_decref(metrics_bevs[i]);
        atomic_fetch_sub(&srv_stat.metrics_conns, 1);
    }
    free(metrics_bevs);
    metrics_bevs = NULL;
    metrics_nbevs = metrics_capbevs = 0;
}
