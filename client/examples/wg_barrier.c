/*
 * wg_barrier.c - a WaitGroup as a barrier across processes (README
 * example).
 *
 *   wg_barrier [HOST:PORT] NAME PARTIES
 *
 * Start PARTIES copies (on any hosts).  The first to arrive sets the
 * counter to PARTIES, exactly once across all of them thanks to a Once;
 * each then does its part of the work, calls Done and Waits: nobody gets
 * past the barrier before everybody has arrived.
 */
#include <chand.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    char *host, once_name[300];
    int port, parties, rc, ret = 1;
    chand_conn *c;
    chand_error err;
    int64_t left;

    if (argc < 3) {
        fprintf(stderr, "usage: wg_barrier [HOST:PORT] NAME PARTIES\n");
        return 2;
    }
    if (chand_parse_address(argc > 3 ? argv[1] : "127.0.0.1:2426", &host,
                            &port) < 0)
        return 2;
    argv += argc > 3;
    parties = atoi(argv[2]);
    snprintf(once_name, sizeof once_name, "%s.init", argv[1]);
    if (chand_connect(host, port, 5000, &c, &err) < 0) {
        fprintf(stderr, "wg_barrier: %s\n", err.message);
        goto out_free;
    }
    /* wg.add must happen before anyone waits: the first caller does it,
     * the others wait in once.do until it has. */
    rc = chand_once_do(c, once_name, CHAND_FOREVER);
    if (rc == 1) {
        if (chand_wg_add(c, argv[1], parties, NULL) < 0)
            goto out_err;
        if (chand_once_done(c, once_name) < 0)
            goto out_err;
    } else if (rc < 0) {
        goto out_err;
    }

    printf("[%d] working\n", (int)getpid());
    usleep(100000 + (unsigned)(getpid() % 5) * 100000);

    if (chand_wg_done(c, argv[1], &left) < 0)
        goto out_err;
    printf("[%d] arrived, %lld to go\n", (int)getpid(), (long long)left);
    if (chand_wg_wait(c, argv[1], 60000) < 0)
        goto out_err;
    printf("[%d] past the barrier\n", (int)getpid());
    ret = 0;
    goto out_close;
out_err:
    fprintf(stderr, "wg_barrier: %s\n", chand_last_error(c)->message);
out_close:
    chand_close_conn(c);
out_free:
    free(host);
    return ret;
}
