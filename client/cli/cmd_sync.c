/*
 * cmd_sync.c - chanctl's sync commands: Mutex and RWMutex (lock, unlock,
 * run), WaitGroup, Once, Cond and Pool.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

int cli_h_lock(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    int64_t token;
    bool dead = false;
    int rc;

    (void)argc;
    rc = k->lock(c->conn, argv[0], c->timeout_ms, c->lease_ms, &token, &dead);
    if (rc < 0)
        return cli_fail(c, rc);
    if (c->lease_ms <= 0 && !c->interactive && !c->quiet)
        fprintf(stderr,
                "%s: warning: the lock is released when chanctl exits; "
                "use --lease DUR to keep it\n",
                cli_prog);
    if (c->json)
        printf("{\"token\":%lld,\"owner_dead\":%s}\n", (long long)token,
               dead ? "true" : "false");
    else
        printf("%lld\n", (long long)token);
    return 0;
}

int cli_h_unlock(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    (void)argc;
    return cli_end_quiet(c, k->unlock(c->conn, argv[0], c->token));
}

/* The heartbeat chanctl asks for while it holds something for a command:
 * a chanctl that is stopped (SIGSTOP, a frozen VM) loses the hold within
 * this, where the TCP connection alone would keep it.  The run loop pings
 * every 500 ms, libchand every third of it while a lock is awaited. */
#define CLI_HEARTBEAT_MS 3000

/* Asks for the heartbeat; a server too old to know it is used without. */
static int cli_heartbeat(cli_ctx *c)
{
    int rc = chand_set_heartbeat(c->conn, CLI_HEARTBEAT_MS);

    return rc == CHAND_EINVALID ? 0 : rc;
}

/* Holds the lock exactly while the command runs; the lock belongs to this
 * session, so it is released even if chanctl is killed. */
static int do_run(cli_ctx *c, cli_lock_fn lock, cli_unlock_fn unlock,
                  const char *name)
{
    int64_t token, since = cli_mono_ms();
    bool dead;
    int rc, status;

    if (!c->cmdv || !c->cmdv[0])
        return cli_usage_error(c, "missing -- COMMAND");
    if ((rc = cli_heartbeat(c)) < 0)
        return cli_fail(c, rc);
    rc = lock(c->conn, name, c->timeout_ms, c->lease_ms, &token, &dead);
    if (rc < 0)
        return cli_fail(c, rc);
    status = cli_run_child(c, token, since, c->lease_ms);
    if (status == EXIT_LOST)
        return status; /* nothing left to unlock */
    rc = unlock(c->conn, name, token);
    if (rc < 0) {
        cli_fail(c, rc);
        /* The command's status wins, unless it succeeded. */
        if (status == 0)
            status = cli_exit_code(rc);
    }
    return status;
}

int cli_h_run(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    (void)argc;
    return do_run(c, k->lock, k->unlock, argv[0]);
}

int cli_h_rw_run(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    (void)k;
    (void)argc;
    if (c->read)
        return do_run(c, chand_rwmutex_rlock, chand_rwmutex_runlock, argv[0]);
    return do_run(c, chand_rwmutex_lock, chand_rwmutex_unlock, argv[0]);
}

int cli_h_wg_add(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    int64_t delta = 1, count;
    int rc;

    (void)k;
    if (argc > 1 && cli_parse_int(argv[1], &delta) < 0)
        return cli_usage_error(c, "bad delta '%s'", argv[1]);
    rc = chand_wg_add(c->conn, argv[0], delta, &count);
    return cli_end_int(c, rc, "count", &count);
}

int cli_h_wg_done(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    int64_t count;
    int rc = chand_wg_done(c->conn, argv[0], &count);

    (void)k;
    (void)argc;
    return cli_end_int(c, rc, "count", &count);
}

int cli_h_wg_wait(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    (void)k;
    (void)argc;
    return cli_end_quiet(c, chand_wg_wait(c->conn, argv[0], c->timeout_ms));
}

/* The exit status of a once do that did not run: the status the runner
 * stored (an integer 0..255), else 0 (a once done by a program that
 * stored another value, or none).  Steals value. */
static int once_status(cli_ctx *c, const char *name, json_t *value)
{
    int status = 0;

    if (json_is_integer(value) && json_integer_value(value) >= 0 &&
        json_integer_value(value) <= 255)
        status = (int)json_integer_value(value);
    json_decref(value);
    if (status != 0 && !c->quiet)
        fprintf(stderr, "chanctl: once \"%s\" already ran and exited %d\n",
                name, status);
    return status;
}

int cli_h_once_do(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    json_t *value;
    int rc, status;

    (void)k;
    (void)argc;
    if (!c->cmdv || !c->cmdv[0])
        return cli_usage_error(c, "missing -- COMMAND");
    if ((rc = cli_heartbeat(c)) < 0)
        return cli_fail(c, rc);
    rc = chand_once_do_value(c->conn, argv[0], c->timeout_ms, &value);
    if (rc < 0)
        return cli_fail(c, rc);
    if (rc == 0)
        return once_status(c, argv[0], value); /* someone else ran it */
    status = cli_run_child(c, -1, 0, -1);
    if (status == EXIT_LOST)
        return status; /* the server gave the once to the next caller */
    /* Done whatever the command's status: Go's Once does not retry a
     * function that panicked either.  The status is the once's value, so
     * that the callers that did not run it exit as the runner did. */
    value = json_integer(status);
    rc = chand_once_done_value(c->conn, argv[0], value);
    json_decref(value);
    if (rc < 0) {
        cli_fail(c, rc);
        if (status == 0)
            status = cli_exit_code(rc);
    }
    return status;
}

int cli_h_cond_wait(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    int64_t token;
    int rc, rc2;

    (void)k;
    (void)argc;
    /* A one-shot process holds nothing yet: take the Locker, wait (which
     * releases and re-takes it), and let it go. */
    rc = chand_mutex_lock(c->conn, argv[1], c->timeout_ms, -1, &token, NULL);
    if (rc < 0)
        return cli_fail(c, rc);
    rc = chand_cond_wait(c->conn, argv[0], argv[1], c->timeout_ms, &token);
    rc2 = chand_mutex_unlock(c->conn, argv[1], -1);
    if (rc < 0)
        return cli_fail(c, rc);
    if (rc2 < 0)
        return cli_fail(c, rc2);
    return 0;
}

int cli_h_pool_put(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    json_t *v;
    int rc = cli_read_value(c, argv[1], &v);

    (void)k;
    (void)argc;
    if (rc)
        return rc;
    rc = chand_pool_put(c->conn, argv[0], v);
    json_decref(v);
    return cli_end_quiet(c, rc);
}

int cli_h_pool_get(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    json_t *v = NULL;
    int rc = chand_pool_get(c->conn, argv[0], &v);

    (void)k;
    (void)argc;
    return cli_end_flagged(c, rc, v, "ok");
}
