/*
 * ack_worker.c - workers that may crash, with acknowledged delivery
 * (README "Acknowledged delivery").
 *
 *   ack_worker [HOST:PORT] [WORKERS] [JOBS]
 *
 * The parent makes channel "ackex.jobs" (a value is tried at most 3
 * times, then goes to "ackex.dead"), sends JOBS numbers, closes it and
 * forks WORKERS processes.  Each receives with acknowledgement: it adds
 * n to the counter "ackex.sum" and acks; a multiple of 7 it refuses
 * (nack), so that one ends as a dead letter; and worker 0 dies on its
 * first job without acking.  Its job is not lost: its session ended, so
 * the daemon gives the job to another worker.  Every receive ends once
 * the channel is closed, drained and nothing is in flight.
 */
#include <chand.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static char *host;
static int port;

static int worker(int id)
{
    int64_t did, attempt;
    long done = 0;
    chand_conn *c;
    chand_error err;
    json_t *v;
    int rc;

    if (chand_connect(host, port, 5000, &c, &err) < 0) {
        fprintf(stderr, "worker %d: %s\n", id, err.message);
        return 1;
    }
    /* 1: a delivery to settle; 0: closed, drained, nothing in flight. */
    while ((rc = chand_recv_ack(c, "ackex.jobs", 5000, CHAND_FOREVER, &v, &did,
                                &attempt)) == 1) {
        json_int_t n = json_integer_value(v);
        json_decref(v);
        if (id == 0) {
            printf("worker 0: dies holding job %lld\n", (long long)n);
            fflush(stdout);
            _exit(0); /* no ack: the job goes to another worker */
        }
        if (n % 7 == 0) {
            rc = chand_nack(c, "ackex.jobs", did, 0, "multiple of 7");
        } else {
            rc = chand_atomic_add(c, "ackex.sum", n, NULL);
            if (rc == 0)
                rc = chand_ack(c, "ackex.jobs", did);
            done++;
        }
        if (rc < 0)
            break;
    }
    if (rc < 0)
        fprintf(stderr, "worker %d: %s\n", id, chand_last_error(c)->message);
    else
        json_decref(v);
    printf("worker %d: %ld jobs\n", id, done);
    fflush(stdout); /* the child ends with _exit */
    chand_close_conn(c);
    return rc < 0;
}

int main(int argc, char **argv)
{
    int workers = argc > 2 ? atoi(argv[2]) : 4;
    int jobs = argc > 3 ? atoi(argv[3]) : 100;
    chand_chan_opts *o = chand_chan_opts_new();
    chand_conn *c;
    chand_error err;
    int64_t sum = 0, dead = 0;
    json_t *v;
    int ret = 1, status;

    if (chand_parse_address(argc > 1 ? argv[1] : "127.0.0.1:2426", &host,
                            &port) < 0 ||
        workers < 2 || !o) {
        fprintf(stderr, "usage: ack_worker [HOST:PORT] [WORKERS>=2] [JOBS]\n");
        return 2;
    }
    if (chand_connect(host, port, 5000, &c, &err) < 0) {
        fprintf(stderr, "ack_worker: %s\n", err.message);
        goto out_free;
    }
    chand_drop(c, "ackex.jobs"); /* fresh for this run */
    chand_drop(c, "ackex.dead");
    chand_atomic_store(c, "ackex.sum", 0);
    if (chand_chan_opts_max_deliver(o, 3) < 0 ||
        chand_chan_opts_dead_letter(o, "ackex.dead") < 0 ||
        chand_make(c, "ackex.dead", jobs, NULL) < 0 ||
        chand_make_opts(c, "ackex.jobs", jobs, o) < 0)
        goto out_err;
    for (int n = 1; n <= jobs; n++) {
        json_t *j = json_integer(n);
        int rc = chand_send(c, "ackex.jobs", j, CHAND_FOREVER);
        json_decref(j);
        if (rc < 0)
            goto out_err;
    }
    if (chand_close(c, "ackex.jobs") < 0)
        goto out_err;
    fflush(stdout);
    for (int i = 0; i < workers; i++)
        if (fork() == 0)
            _exit(worker(i));
    for (int i = 0; i < workers; i++)
        if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
            goto out_err;
    if (chand_atomic_load(c, "ackex.sum", &sum) < 0)
        goto out_err;
    /* Each dead letter: {"origin", "value", "attempts", "reason"}. */
    while (chand_recv(c, "ackex.dead", 0, &v) == 1) {
        dead++;
        json_decref(v);
    }
    printf("sum of the jobs acknowledged = %lld, %lld dead letters\n",
           (long long)sum, (long long)dead);
    ret = 0;
    goto out_close;
out_err:
    fprintf(stderr, "ack_worker: %s\n", chand_last_error(c)->message);
out_close:
    chand_close_conn(c);
out_free:
    chand_chan_opts_free(o);
    free(host);
    return ret;
}
