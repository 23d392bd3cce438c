/*
 * async_counter.c - libchand's asynchronous API on a libevent loop
 * (README example).
 *
 *   async_counter [HOST:PORT] [N]
 *
 * Queues N atomic.add requests on one connection without waiting for any
 * answer (pipelining), plus a recv that blocks until a timer fires: the
 * answers are matched to their callbacks by id, whatever their order.
 */
#include <chand.h>

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct state {
    struct event_base *base;
    int left; /* answers still to come */
    int errors;
    int64_t last; /* the counter after the last add */
} state;

static void one_done(state *st)
{
    if (--st->left == 0)
        event_base_loopbreak(st->base);
}

static void on_add(chand_async *a, int rc, json_t *result,
                   const chand_error *err, void *arg)
{
    state *st = arg;

    (void)a;
    if (rc < 0) {
        fprintf(stderr, "add: %s\n", err->message);
        st->errors++;
    } else {
        st->last = json_integer_value(json_object_get(result, "value"));
    }
    one_done(st);
}

static void on_tick(chand_async *a, int rc, json_t *result,
                    const chand_error *err, void *arg)
{
    state *st = arg;

    (void)a;
    (void)result;
    if (rc < 0) {
        fprintf(stderr, "recv: %s\n", err->message);
        st->errors++;
    } else {
        /* Asked before the adds, answered whenever the timer fired. */
        printf("timer fired; %lld adds had been answered by then\n",
               (long long)st->last);
    }
    one_done(st);
}

int main(int argc, char **argv)
{
    int n = argc > 2 ? atoi(argv[2]) : 10000;
    state st = {.left = 0};
    chand_async *a;
    char *host;
    int port, rc;

    if (chand_parse_address(argc > 1 ? argv[1] : "127.0.0.1:2426", &host,
                            &port) < 0 ||
        n < 1) {
        fprintf(stderr, "usage: async_counter [HOST:PORT] [N]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* libevent writes may raise it */
    st.base = event_base_new();
    if (!st.base)
        goto out_free;
    rc = chand_async_connect(st.base, host, port, 5000, NULL, NULL, &a);
    if (rc < 0) {
        fprintf(stderr, "async_counter: %s\n", chand_strerror(rc));
        goto out_base;
    }
    /* Requests may be queued before the connection is even up. */
    chand_async_call(a, "drop", json_pack("{s:s}", "name", "async.tick"),
                     CHAND_FOREVER, NULL, NULL);
    chand_async_call(a, "atomic.store",
                     json_pack("{s:s, s:i}", "name", "async.n", "value", 0),
                     CHAND_FOREVER, NULL, NULL);
    chand_async_call(a, "timer.after",
                     json_pack("{s:s, s:i}", "name", "async.tick", "ms", 200),
                     CHAND_FOREVER, NULL, NULL);
    if (chand_async_call(a, "recv", json_pack("{s:s}", "name", "async.tick"),
                         10000, on_tick, &st) == 0)
        st.left++;
    for (int i = 0; i < n; i++)
        if (chand_async_call(
                a, "atomic.add",
                json_pack("{s:s, s:i}", "name", "async.n", "delta", 1),
                CHAND_FOREVER, on_add, &st) == 0)
            st.left++;
    printf("%zu requests in flight\n", chand_async_pending(a));
    event_base_dispatch(st.base);
    printf("%d adds answered, counter %lld, %d errors\n", n, (long long)st.last,
           st.errors);
    chand_async_free(a);
out_base:
    event_base_free(st.base);
out_free:
    free(host);
    return st.errors || st.last != n ? 1 : 0;
}
