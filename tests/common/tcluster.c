/*
 * tcluster.c - the cluster suites' calls to single nodes, their leader
 * search and their free ports (see tcluster.h).
 */
#include "tcluster.h"

#include <stdlib.h>
#include <unistd.h>

json_t *tcluster_call(int port, const char *method, const char *params,
                      int timeout_ms)
{
    testd_conn *c = testd_connect_port(port);
    json_t *p = params ? json_loads(params, 0, NULL) : NULL, *a;

    if (!c) {
        json_decref(p);
        return NULL;
    }
    a = testd_call(c, 1, method, p, timeout_ms);
    testd_close(c);
    return a;
}

json_t *tcluster_status(int port)
{
    json_t *a = tcluster_call(port, "cluster.status", NULL, 5000), *r;

    r = a ? json_incref(testd_result(a)) : NULL;
    json_decref(a);
    return r;
}

int64_t tcluster_status_int(int port, const char *key)
{
    json_t *st = tcluster_status(port);
    int64_t v = st ? json_integer_value(json_object_get(st, key)) : -1;

    json_decref(st);
    return v;
}

int tcluster_find_leader(const testd *nd, const bool *stopped, int n,
                         int timeout_ms)
{
    int64_t end = testd_now_ms() + timeout_ms;

    do {
        for (int i = 0; i < n; i++) {
            if (!nd[i].pid || (stopped && stopped[i]))
                continue;
            json_t *st = tcluster_status(nd[i].port);
            bool lead = st && json_is_true(json_object_get(st, "serving"));
            json_decref(st);
            if (lead)
                return i;
        }
        testd_sleep_ms(50);
    } while (testd_now_ms() < end);
    return -1;
}

int tcluster_ports(int *cport, int *rport, int n)
{
    int *fds = calloc((size_t)(2 * n), sizeof *fds), nfd = 0;
    bool ok = fds != NULL;

    for (int i = 0; i < n && ok; i++) {
        int a = testd_bind_loopback(&cport[i]);
        int b = a >= 0 ? testd_bind_loopback(&rport[i]) : -1;
        if (a >= 0)
            fds[nfd++] = a;
        if (b >= 0)
            fds[nfd++] = b;
        ok = a >= 0 && b >= 0;
    }
    while (nfd > 0)
        close(fds[--nfd]);
    free(fds);
    return ok ? 0 : -1;
}
