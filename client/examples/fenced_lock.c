/*
 * fenced_lock.c - a lock whose fencing token is checked by the protected
 * resource (README example).
 *
 *   fenced_lock [HOST:PORT]
 *
 * A lease-based lock can expire while its holder is stalled (GC pause,
 * swapped out, network partition): the holder then writes believing it
 * still holds the lock.  chand hands out a token that grows with every
 * acquisition, and the resource remembers the highest token it has seen
 * and refuses anything older.  Here the resource is a small in-process
 * "storage"; in real life it is a database row or a file server that
 * stores the token next to the data.
 */
#include <chand.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* The protected resource: it accepts a write only with a token at least
 * as new as the newest it has seen. */
static int64_t storage_max_token;
static char storage_data[64];

static int storage_write(int64_t token, const char *data)
{
    if (token < storage_max_token) {
        printf("storage: refused write \"%s\" with stale token %lld "
               "(seen %lld)\n",
               data, (long long)token, (long long)storage_max_token);
        return -1;
    }
    storage_max_token = token;
    snprintf(storage_data, sizeof storage_data, "%s", data);
    printf("storage: wrote \"%s\" with token %lld\n", data, (long long)token);
    return 0;
}

int main(int argc, char **argv)
{
    chand_conn *slow, *fast;
    chand_error err;
    int64_t t_slow, t_fast;
    char *host;
    int port, ret = 1;

    if (chand_parse_address(argc > 1 ? argv[1] : "127.0.0.1:2426", &host,
                            &port) < 0)
        return 2;
    if (chand_connect(host, port, 5000, &slow, &err) < 0) {
        fprintf(stderr, "fenced_lock: %s\n", err.message);
        goto out_free;
    }
    if (chand_connect(host, port, 5000, &fast, &err) < 0) {
        fprintf(stderr, "fenced_lock: %s\n", err.message);
        goto out_close_slow;
    }
    /* Client 1 takes the lock with a 200 ms lease... */
    if (chand_mutex_lock(slow, "fenced.res", 5000, 200, &t_slow, NULL) < 0)
        goto out_err;
    printf("client 1: locked, token %lld\n", (long long)t_slow);
    /* ...and stalls past the lease.  Client 2 gets the lock. */
    usleep(400000);
    if (chand_mutex_lock(fast, "fenced.res", 5000, -1, &t_fast, NULL) < 0)
        goto out_err;
    printf("client 2: locked, token %lld\n", (long long)t_fast);
    storage_write(t_fast, "from client 2");
    /* Client 1 wakes up and writes: the token gives it away. */
    if (storage_write(t_slow, "from client 1") == 0) {
        fprintf(stderr, "fenced_lock: the stale write went through\n");
        goto out_close;
    }
    chand_mutex_unlock(fast, "fenced.res", t_fast);
    printf("storage holds \"%s\"\n", storage_data);
    ret = 0;
    goto out_close;
out_err:
    fprintf(stderr, "fenced_lock: %s\n",
            chand_last_error(slow)->code ? chand_last_error(slow)->message
                                         : chand_last_error(fast)->message);
out_close:
    chand_close_conn(fast);
out_close_slow:
    chand_close_conn(slow);
out_free:
    free(host);
    return ret;
}
