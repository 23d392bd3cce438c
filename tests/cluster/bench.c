/*
 * bench.c - the replicated shapes of issue 19 against running servers:
 * put/get (chand: map.store / map.load; etcd: /v3/kv/put and /v3/kv/range
 * on its JSON gateway) and lock/unlock (chand: mutex.lock / unlock; etcd:
 * its lock recipe, /v3/lock/lock and /v3/lock/unlock under a lease), each
 * with C clients on their own threads and connections for SECONDS.
 *
 *   bench chand NAME SERVERS C SECONDS
 *   bench etcd NAME HOST:PORT C SECONDS
 *
 * Prints "bench: NAME_<shape>_c<C> <ops/s> ops/s" per shape.  The servers
 * are started and stopped by tests/bench/cluster.sh.
 */
#include "chand.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum shape { PUT, GET, LOCK, NSHAPES };
static const char *const shape_names[] = {"put", "get", "lock"};

static const char *g_kind, *g_target;
static int g_secs;
static enum shape g_shape;
static atomic_bool g_stop;
static atomic_long g_ops, g_errs;

/* ---- etcd over its JSON gateway: HTTP/1.1 with keep-alive ---------- */

typedef struct http {
    int fd;
    char buf[65536];
    size_t len;
} http;

static int http_open(http *h, const char *hostport)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    char host[64];
    const char *colon = strrchr(hostport, ':');
    int one = 1;

    if (!colon || (size_t)(colon - hostport) >= sizeof host)
        return -1;
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    sa.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return -1;
    h->len = 0;
    h->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (h->fd < 0)
        return -1;
    setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(h->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(h->fd);
        return -1;
    }
    return 0;
}

/* POSTs body to path and reads the answer's body into out (NUL-ended).
 * Returns the HTTP status or -1. */
static int http_post(http *h, const char *path, const char *body, char *out,
                     size_t outlen)
{
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     "application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     path, strlen(body), body);
    long clen = -1;
    int status;
    char *end;

    if (n < 0 || (size_t)n >= sizeof req ||
        send(h->fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        return -1;
    for (;;) {
        ssize_t r;

        h->buf[h->len] = '\0';
        end = strstr(h->buf, "\r\n\r\n");
        if (end) {
            char *cl = strcasestr(h->buf, "\r\nContent-Length:");
            size_t head = (size_t)(end + 4 - h->buf);

            if (!cl || cl > end)
                return -1; /* the gateway sends lengths; chunked is not
                            * needed here */
            clen = strtol(cl + 17, NULL, 10);
            if (h->len >= head + (size_t)clen) {
                size_t k = (size_t)clen < outlen ? (size_t)clen : outlen - 1;

                status = atoi(h->buf + 9);
                memcpy(out, h->buf + head, k);
                out[k] = '\0';
                memmove(h->buf, h->buf + head + clen,
                        h->len - head - (size_t)clen);
                h->len -= head + (size_t)clen;
                return status;
            }
        }
        if (h->len >= sizeof h->buf - 1)
            return -1;
        r = recv(h->fd, h->buf + h->len, sizeof h->buf - 1 - h->len, 0);
        if (r <= 0)
            return -1;
        h->len += (size_t)r;
    }
}

/* base64 of "keyA".."keyH", the 8 keys (the gateway wants base64). */
static const char *const etcd_keys[8] = {
    "a2V5QQ==", "a2V5Qg==", "a2V5Qw==", "a2V5RA==",
    "a2V5RQ==", "a2V5Rg==", "a2V5Rw==", "a2V5SA=="};

/* Pulls "key": value of a flat JSON text (the gateway's answers). */
static int json_str_field(const char *text, const char *key, char *out,
                          size_t len)
{
    char pat[64];
    const char *p, *q;

    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    p = strstr(text, pat);
    if (!p)
        return -1;
    p += strlen(pat);
    q = strchr(p, '"');
    if (!q || (size_t)(q - p) >= len)
        return -1;
    memcpy(out, p, (size_t)(q - p));
    out[q - p] = '\0';
    return 0;
}

static void *etcd_worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    http *h = malloc(sizeof *h);
    char out[4096], body[512], lease[32] = "", key[256];

    if (!h || http_open(h, g_target) < 0) {
        atomic_fetch_add(&g_errs, 1);
        free(h);
        return NULL;
    }
    if (g_shape == LOCK) {
        /* The lock recipe needs a lease: one per client, long enough. */
        if (http_post(h, "/v3/lease/grant", "{\"TTL\":60}", out, sizeof out) !=
                200 ||
            json_str_field(out, "ID", lease, sizeof lease) < 0) {
            atomic_fetch_add(&g_errs, 1);
            close(h->fd);
            free(h);
            return NULL;
        }
    }
    while (!atomic_load(&g_stop)) {
        int st = -1;

        /* Keys and values in base64: "k<n>" and "value". */
        if (g_shape == PUT) {
            snprintf(body, sizeof body,
                     "{\"key\":\"%s\",\"value\":\"dmFsdWU=\"}",
                     etcd_keys[id % 8]);
            st = http_post(h, "/v3/kv/put", body, out, sizeof out);
        } else if (g_shape == GET) {
            snprintf(body, sizeof body, "{\"key\":\"%s\"}", etcd_keys[id % 8]);
            st = http_post(h, "/v3/kv/range", body, out, sizeof out);
        } else {
            snprintf(body, sizeof body, "{\"name\":\"bG9jaw==\",\"lease\":%s}",
                     lease);
            st = http_post(h, "/v3/lock/lock", body, out, sizeof out);
            if (st == 200 && json_str_field(out, "key", key, sizeof key) == 0) {
                snprintf(body, sizeof body, "{\"key\":\"%s\"}", key);
                st = http_post(h, "/v3/lock/unlock", body, out, sizeof out);
            } else {
                st = -1;
            }
        }
        if (st == 200) {
            atomic_fetch_add(&g_ops, 1);
        } else {
            atomic_fetch_add(&g_errs, 1);
            break;
        }
    }
    close(h->fd);
    free(h);
    return NULL;
}

/* ---- chand ------------------------------------------------------------ */

static void *chand_worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    chand_conn *c = NULL;
    char key[16];
    json_t *v = json_string("value");

    snprintf(key, sizeof key, "key%c", "ABCDEFGH"[id % 8]);
    if (chand_connect_url(g_target, NULL, 5000, &c, NULL) < 0) {
        atomic_fetch_add(&g_errs, 1);
        json_decref(v);
        return NULL;
    }
    while (!atomic_load(&g_stop)) {
        int rc;

        if (g_shape == PUT) {
            rc = chand_map_store(c, "bench", key, v);
        } else if (g_shape == GET) {
            json_t *got = NULL;
            rc = chand_map_load(c, "bench", key, &got);
            json_decref(got);
            rc = rc < 0 ? rc : 0;
        } else {
            int64_t token;
            bool dead;
            rc = chand_mutex_lock(c, "benchlock", CHAND_FOREVER, 0, &token,
                                  &dead);
            if (rc == 0)
                rc = chand_mutex_unlock(c, "benchlock", token);
        }
        if (rc == 0) {
            atomic_fetch_add(&g_ops, 1);
        } else {
            atomic_fetch_add(&g_errs, 1);
            fprintf(stderr, "bench: %s\n", chand_last_error(c)->message);
            break;
        }
    }
    chand_close_conn(c);
    json_decref(v);
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    const char *name;
    int conc;

    if (argc != 6 || (strcmp(argv[1], "chand") && strcmp(argv[1], "etcd"))) {
        fprintf(stderr, "usage: bench chand|etcd NAME TARGET C SECONDS\n");
        return 2;
    }
    g_kind = argv[1];
    name = argv[2];
    g_target = argv[3];
    conc = atoi(argv[4]);
    g_secs = atoi(argv[5]);
    if (conc < 1 || conc > 1000 || g_secs < 1)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    for (g_shape = PUT; g_shape < NSHAPES; g_shape++) {
        pthread_t *th = calloc((size_t)conc, sizeof *th);
        double t0, t1;
        long ops;

        if (!th)
            return 2;
        atomic_store(&g_stop, false);
        atomic_store(&g_ops, 0);
        atomic_store(&g_errs, 0);
        t0 = now_s();
        for (int i = 0; i < conc; i++)
            pthread_create(&th[i], NULL,
                           strcmp(g_kind, "etcd") ? chand_worker : etcd_worker,
                           (void *)(intptr_t)i);
        while (now_s() - t0 < g_secs)
            usleep(50000);
        atomic_store(&g_stop, true);
        for (int i = 0; i < conc; i++)
            pthread_join(th[i], NULL);
        t1 = now_s();
        free(th);
        ops = atomic_load(&g_ops);
        if (atomic_load(&g_errs))
            fprintf(stderr, "bench: %s %s: %ld clients failed\n", name,
                    shape_names[g_shape], atomic_load(&g_errs));
        printf("bench: %s_%s_c%d %.0f ops/s\n", name, shape_names[g_shape],
               conc, (double)ops / (t1 - t0));
        fflush(stdout);
    }
    return 0;
}
