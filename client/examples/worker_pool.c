/*
 * worker_pool.c - a worker pool pulling jobs from a chand channel until it
 * is closed (README example).
 *
 *   worker_pool [HOST:PORT] [WORKERS] [JOBS]
 *
 * The main thread makes channel "pool.jobs", sends JOBS numbers and closes
 * it, as Go's `close(jobs)` after the last send.  Each worker has its own
 * connection (a chand_conn is used by one thread at a time) and receives
 * until the channel is closed and drained, adding n*n to the counter
 * "pool.sum".  Workers could just as well be separate processes or hosts.
 */
#include <chand.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static char *host;
static int port;

static void *worker(void *arg)
{
    long id = (long)arg, done = 0;
    chand_conn *c;
    chand_error err;
    json_t *v;
    int rc;

    if (chand_connect(host, port, 5000, &c, &err) < 0) {
        fprintf(stderr, "worker %ld: %s\n", id, err.message);
        return NULL;
    }
    /* 1: a value; 0: closed and drained (Go's ok == false); < 0: error. */
    while ((rc = chand_recv(c, "pool.jobs", CHAND_FOREVER, &v)) == 1) {
        json_int_t n = json_integer_value(v);
        chand_atomic_add(c, "pool.sum", n * n, NULL);
        json_decref(v);
        done++;
    }
    if (rc < 0)
        fprintf(stderr, "worker %ld: %s\n", id, chand_last_error(c)->message);
    else
        json_decref(v);
    printf("worker %ld: %ld jobs\n", id, done);
    chand_close_conn(c);
    return NULL;
}

int main(int argc, char **argv)
{
    int workers = argc > 2 ? atoi(argv[2]) : 4;
    int jobs = argc > 3 ? atoi(argv[3]) : 100;
    pthread_t th[64];
    chand_conn *c;
    chand_error err;
    int64_t sum = 0;
    int ret = 1;

    if (chand_parse_address(argc > 1 ? argv[1] : "127.0.0.1:2426", &host,
                            &port) < 0 ||
        workers < 1 || workers > 64) {
        fprintf(stderr, "usage: worker_pool [HOST:PORT] [WORKERS] [JOBS]\n");
        return 2;
    }
    if (chand_connect(host, port, 5000, &c, &err) < 0) {
        fprintf(stderr, "worker_pool: %s\n", err.message);
        goto out_free;
    }
    chand_drop(c, "pool.jobs"); /* a fresh queue for this run */
    chand_atomic_store(c, "pool.sum", 0);
    if (chand_make(c, "pool.jobs", 16, "number") < 0)
        goto out_err;
    for (long i = 0; i < workers; i++)
        pthread_create(&th[i], NULL, worker, (void *)i);
    for (int n = 1; n <= jobs; n++) {
        json_t *v = json_integer(n);
        int rc = chand_send(c, "pool.jobs", v, CHAND_FOREVER);
        json_decref(v);
        if (rc < 0)
            goto out_err;
    }
    /* No more jobs: the workers' receives end once the queue drains. */
    if (chand_close(c, "pool.jobs") < 0)
        goto out_err;
    for (int i = 0; i < workers; i++)
        pthread_join(th[i], NULL);
    if (chand_atomic_load(c, "pool.sum", &sum) < 0)
        goto out_err;
    printf("sum of squares 1..%d = %lld\n", jobs, (long long)sum);
    ret = 0;
    goto out_close;
out_err:
    fprintf(stderr, "worker_pool: %s\n", chand_last_error(c)->message);
out_close:
    chand_close_conn(c);
out_free:
    free(host);
    return ret;
}
