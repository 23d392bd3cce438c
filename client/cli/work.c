/*
 * work.c - `chanctl work NAME -- COMMAND`: a worker over acknowledged
 * delivery.  Each value is received with ack, handed to one run of
 * COMMAND (stdin and $CHAND_VALUE), kept alive with touch while COMMAND
 * runs, and settled by its exit status: 0 acks, anything else nacks.
 *
 * What can go wrong and what then happens:
 * - chanctl dies or is stopped: its session ends, or the deadline passes,
 *   and the server redelivers the value to another worker.
 * - chanctl was stopped past the deadline and resumes: the next touch
 *   says not_pending; the value is someone else's now, so COMMAND is
 *   stopped (SIGTERM, SIGKILL after --grace) and the value left alone.
 * - the connection is lost: COMMAND is stopped the same way and chanctl
 *   exits 4 (the value is redelivered by the server).
 * Outside a run, signals have their default effect: a worker killed
 * while it waits for a value holds no delivery.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* $CHAND_VALUE stays below the kernel's limit for one string of the
 * environment (MAX_ARG_STRLEN, 128 KiB). */
#define WORK_ENV_MAX (128 * 1024 - 1)
#define WORK_DEFAULT_WAIT_MS 30000

static volatile sig_atomic_t work_child;
static volatile sig_atomic_t work_stop; /* the signal that asks to stop */

static void work_signal(int sig)
{
    work_stop = sig;
    if (work_child > 0)
        kill((pid_t)work_child, sig);
}

/* The value as COMMAND sees it: a string's text, else compact JSON.
 * Returns a new malloc'd string or NULL. */
static char *value_text(json_t *v)
{
    if (json_is_string(v))
        return strndup(json_string_value(v), json_string_length(v));
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* A file holding text and a newline, at its start, for COMMAND's stdin
 * (a file, not a pipe: COMMAND need not read it for us to go on).
 * Returns the stream or NULL. */
static FILE *stdin_file(const char *text)
{
    FILE *fp = tmpfile();

    if (!fp)
        return NULL;
    if (fputs(text, fp) < 0 || fputc('\n', fp) < 0 || fflush(fp) != 0 ||
        fseek(fp, 0, SEEK_SET) != 0) {
        fclose(fp);
        return NULL;
    }
    return fp;
}

/* In the child: the environment and stdin, then COMMAND.  When COMMAND
 * cannot be started, errno goes to errfd (closed on exec) for the parent.
 * Never returns. */
static void exec_command(cli_ctx *c, FILE *in, int errfd, const char *text,
                         int64_t id, int64_t attempt)
{
    sigset_t chld;
    char buf[32];
    int err;

    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_UNBLOCK, &chld, NULL);
    signal(SIGPIPE, SIG_DFL);
    if (dup2(fileno(in), STDIN_FILENO) < 0)
        _exit(126);
    if (strlen(text) <= WORK_ENV_MAX)
        setenv("CHAND_VALUE", text, 1);
    else
        unsetenv("CHAND_VALUE");
    snprintf(buf, sizeof buf, "%lld", (long long)id);
    setenv("CHAND_DELIVERY", buf, 1);
    snprintf(buf, sizeof buf, "%lld", (long long)attempt);
    setenv("CHAND_ATTEMPT", buf, 1);
    execvp(c->cmdv[0], c->cmdv);
    err = errno;
    if (write(errfd, &err, sizeof err) < 0)
        fprintf(stderr, "%s: %s: %s\n", cli_prog, c->cmdv[0], strerror(err));
    _exit(err == ENOENT ? 127 : 126);
}

/* How one run ended: RUN_NOEXEC when COMMAND could not be started at
 * all (every value would fail alike: stop rather than spin). */
enum { RUN_DONE, RUN_LOST, RUN_CONN, RUN_ERR, RUN_NOEXEC };

/* Runs COMMAND on the delivery's value, touching the delivery every
 * third of the wait.  Returns RUN_DONE with *status, RUN_LOST when the
 * delivery is no longer ours (COMMAND stopped), RUN_CONN when the
 * connection is lost (COMMAND stopped), RUN_ERR on a local error or
 * another failed touch (said on stderr). */
static int run_one(cli_ctx *c, const char *name, const char *text, int64_t id,
                   int64_t attempt, int *status)
{
    int64_t wait = c->ack_wait_ms > 0 ? c->ack_wait_ms : WORK_DEFAULT_WAIT_MS;
    int64_t every = wait / 3 > 10 ? wait / 3 : 10, next;
    FILE *in = stdin_file(text);
    int errp[2], err = 0;
    pid_t pid;

    if (!in || pipe2(errp, O_CLOEXEC) < 0) {
        fprintf(stderr, "%s: work: temporary file: %s\n", cli_prog,
                strerror(errno));
        if (in)
            fclose(in);
        return RUN_ERR;
    }
    fflush(stdout);
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "%s: fork: %s\n", cli_prog, strerror(errno));
        fclose(in);
        close(errp[0]);
        close(errp[1]);
        return RUN_ERR;
    }
    if (pid == 0)
        exec_command(c, in, errp[1], text, id, attempt);
    fclose(in);
    close(errp[1]);
    work_child = pid;
    if (work_stop) /* asked to stop before the child could be told */
        kill(pid, (int)work_stop);
    next = cli_mono_ms() + every;
    for (;;) {
        int64_t left = next - cli_mono_ms();
        int rc = cli_wait_child(pid, left > 0 ? left : 0, status);
        char why[320];

        if (rc == 1)
            break;
        if (rc < 0) {
            fprintf(stderr, "%s: waitpid: %s\n", cli_prog, strerror(errno));
            cli_stop_child(c, pid, "cannot wait for it");
            work_child = 0;
            close(errp[0]);
            return RUN_ERR;
        }
        if (cli_mono_ms() < next)
            continue;
        rc = chand_touch(c->conn, name, id, c->ack_wait_ms, NULL);
        next = cli_mono_ms() + every;
        if (rc == 0)
            continue;
        snprintf(why, sizeof why, "delivery %lld: %s", (long long)id,
                 rc == CHAND_ENOTPENDING
                     ? "no longer ours (it expired and was redelivered)"
                     : chand_last_error(c->conn)->message);
        cli_stop_child(c, pid, why);
        work_child = 0;
        close(errp[0]);
        if (rc == CHAND_ENOTPENDING)
            return RUN_LOST;
        return chand_connected(c->conn) ? RUN_ERR : RUN_CONN;
    }
    work_child = 0;
    /* The child is gone: the pipe holds its exec's errno, or nothing. */
    if (read(errp[0], &err, sizeof err) == (ssize_t)sizeof err) {
        fprintf(stderr, "%s: work: cannot run %s: %s\n", cli_prog, c->cmdv[0],
                strerror(err));
        close(errp[0]);
        return RUN_NOEXEC;
    }
    close(errp[0]);
    return RUN_DONE;
}

/* Acks or nacks by COMMAND's status.  Returns 0, or the exit code to end
 * with. */
static int settle(cli_ctx *c, const char *name, int64_t id, int status)
{
    char reason[32];
    int rc;

    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        rc = chand_ack(c->conn, name, id);
    } else {
        if (WIFSIGNALED(status))
            snprintf(reason, sizeof reason, "signal %d", WTERMSIG(status));
        else
            snprintf(reason, sizeof reason, "exit %d", WEXITSTATUS(status));
        rc = chand_nack(c->conn, name, id, 0, reason);
    }
    if (rc == CHAND_ENOTPENDING) {
        /* The deadline passed while we were not looking (stopped, or
         * the machine too busy to touch in time): the value went to
         * another attempt, which will be settled there. */
        fprintf(stderr,
                "%s: work: delivery %lld expired before it was settled; "
                "it was redelivered\n",
                cli_prog, (long long)id);
        return 0;
    }
    return rc < 0 ? cli_fail(c, rc) : 0;
}

/* Runs and settles one delivery with termination signals passed on to
 * COMMAND (chanctl stays to settle).  Returns -1 to go on, or the exit
 * code to end with. */
static int work_held(cli_ctx *c, const char *name, const char *text, int64_t id,
                     int64_t attempt)
{
    static const int sigs[3] = {SIGTERM, SIGINT, SIGHUP};
    struct sigaction fwd = {.sa_handler = work_signal}, old[3];
    sigset_t chld, old_mask;
    int status = 0, rc = -1, run;

    sigemptyset(&fwd.sa_mask);
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &old_mask);
    for (int i = 0; i < 3; i++)
        sigaction(sigs[i], &fwd, &old[i]);
    run = run_one(c, name, text, id, attempt, &status);
    if (run == RUN_DONE) {
        rc = settle(c, name, id, status);
        if (rc == 0)
            rc = -1;
    } else if (run == RUN_CONN) {
        rc = EXIT_CONNECT;
    } else if (run == RUN_ERR) {
        chand_nack(c->conn, name, id, 0, "worker error");
        rc = EXIT_SERVER;
    } else if (run == RUN_NOEXEC) {
        /* Not the value's fault: given back without a reason of its own. */
        chand_nack(c->conn, name, id, 0, NULL);
        rc = 127;
    }
    for (int i = 0; i < 3; i++)
        sigaction(sigs[i], &old[i], NULL);
    sigprocmask(SIG_SETMASK, &old_mask, NULL);
    if (rc < 0 && work_stop)
        rc = 128 + (int)work_stop;
    return rc;
}

/* One value: received, run, settled.  Waiting for it, chanctl holds
 * nothing, so signals keep their default effect.  Returns -1 to go on,
 * or the exit code to end with. */
static int work_one(cli_ctx *c, const char *name)
{
    json_t *v = NULL;
    int64_t id, attempt;
    char *text;
    int rc;

    rc = chand_recv_ack(c->conn, name, c->ack_wait_ms, c->timeout_ms, &v, &id,
                        &attempt);
    if (rc < 0)
        return cli_fail(c, rc);
    if (rc == 0) {
        json_decref(v);
        return EXIT_OK; /* closed, drained, nothing in flight */
    }
    text = value_text(v);
    json_decref(v);
    if (!text) {
        chand_nack(c->conn, name, id, 0, "worker out of memory");
        return cli_fail(c, CHAND_ENOMEM);
    }
    rc = work_held(c, name, text, id, attempt);
    free(text);
    return rc;
}

int cli_h_work(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    int64_t done = 0;
    int ret = -1;

    (void)k;
    (void)argc;
    while (ret < 0) {
        if (c->max_n >= 0 && done >= c->max_n)
            return EXIT_OK;
        ret = work_one(c, argv[0]);
        done++;
    }
    return ret;
}
