/*
 * run.c - running a command while chanctl holds something (mutex run,
 * rwmutex run, once do): the child's environment, which signals are
 * passed on, what its exit status becomes, and what happens when the
 * hold is lost while it runs.
 *
 * A hold is lost when the connection to the daemon is lost (the session
 * ended, so the server released the lock or gave the once to another
 * caller), or, for a lock taken with --lease, when the lease runs out
 * (the lease, not the session, keeps such a lock, so a lost connection
 * alone does not end it).  Then the command must stop, as consul lock
 * stops its child: SIGTERM, SIGKILL after --grace, and chanctl exits
 * EXIT_LOST.  Connection loss is noticed by a ping every CHECK_MS; the
 * lease by the clock, started before the lock was asked for, so chanctl
 * never believes in a lease longer than the server's.
 */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* How often the connection is checked while the command runs. */
#define CHECK_MS 500

static volatile sig_atomic_t child_pid;

/* Passes a termination request on to the command: chanctl itself stays
 * until the command has exited, so the lock is held exactly as long. */
static void forward_signal(int sig)
{
    if (child_pid > 0)
        kill((pid_t)child_pid, sig);
}

int64_t cli_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int cli_wait_child(pid_t pid, int64_t ms, int *status)
{
    sigset_t chld;
    struct timespec ts;
    pid_t got;

    got = waitpid(pid, status, WNOHANG);
    if (got == pid)
        return 1;
    if (got < 0 && errno != EINTR)
        return -1;
    if (ms <= 0)
        return 0;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000;
    sigtimedwait(&chld, NULL, &ts); /* EAGAIN or EINTR: look again */
    got = waitpid(pid, status, WNOHANG);
    if (got == pid)
        return 1;
    return got < 0 && errno != EINTR ? -1 : 0;
}

void cli_stop_child(const cli_ctx *c, pid_t pid, const char *why)
{
    char g[32];
    int64_t end;
    int status;

    cli_fmt_ms(c->grace_ms, g, sizeof g);
    fprintf(stderr, "%s: %s: %s; stopping %s (SIGTERM, SIGKILL after %s)\n",
            cli_prog, c->cmdname, why, c->cmdv[0], g);
    kill(pid, SIGTERM);
    end = cli_mono_ms() + c->grace_ms;
    for (;;) {
        int64_t left = end - cli_mono_ms();
        int rc = cli_wait_child(pid, left > 0 ? left : 0, &status);
        if (rc != 0)
            return;
        if (left <= 0)
            break;
    }
    fprintf(stderr, "%s: %s: %s still running after %s: SIGKILL\n", cli_prog,
            c->cmdname, c->cmdv[0], g);
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
}

/* Like system(3), the parent ignores SIGINT and SIGQUIT while it waits
 * (the terminal sends them to the child too) and forwards SIGTERM and
 * SIGHUP: whatever ends the command, chanctl outlives it and only then
 * lets go. */
int cli_run_child(cli_ctx *c, int64_t token, int64_t held_since,
                  int64_t lease_ms)
{
    struct sigaction ign = {.sa_handler = SIG_IGN}, fwd = {0};
    struct sigaction old_int, old_quit, old_term, old_hup;
    sigset_t chld, old_mask;
    char **argv = c->cmdv;
    int64_t lease_end = lease_ms > 0 ? held_since + lease_ms : -1;
    int64_t next_check;
    pid_t pid;
    int status = 0, ret;

    fflush(stdout);
    fwd.sa_handler = forward_signal;
    sigemptyset(&fwd.sa_mask);
    sigemptyset(&ign.sa_mask);
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &old_mask);
    sigaction(SIGINT, &ign, &old_int);
    sigaction(SIGQUIT, &ign, &old_quit);
    sigaction(SIGTERM, &fwd, &old_term);
    sigaction(SIGHUP, &fwd, &old_hup);
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "%s: fork: %s\n", cli_prog, strerror(errno));
        ret = EXIT_SERVER;
        goto out_restore;
    }
    if (pid == 0) {
        char buf[32];
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGQUIT, &old_quit, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        sigaction(SIGHUP, &old_hup, NULL);
        sigprocmask(SIG_SETMASK, &old_mask, NULL);
        signal(SIGPIPE, SIG_DFL);
        if (token >= 0) {
            /* The fencing token, for the protected resource to check. */
            snprintf(buf, sizeof buf, "%lld", (long long)token);
            setenv("CHAND_TOKEN", buf, 1);
        }
        execvp(argv[0], argv);
        fprintf(stderr, "%s: %s: %s\n", cli_prog, argv[0], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    child_pid = pid;
    next_check = cli_mono_ms() + CHECK_MS;
    for (;;) {
        int64_t now = cli_mono_ms(), wait = next_check - now;
        int rc;

        if (lease_end >= 0 && lease_end - now < wait)
            wait = lease_end - now;
        rc = cli_wait_child(pid, wait, &status);
        if (rc < 0) {
            fprintf(stderr, "%s: waitpid: %s\n", cli_prog, strerror(errno));
            ret = EXIT_SERVER;
            goto out_restore;
        }
        if (rc == 1)
            break;
        now = cli_mono_ms();
        if (lease_end >= 0 && now >= lease_end) {
            cli_stop_child(c, pid, "the lease ran out");
            ret = EXIT_LOST;
            goto out_restore;
        }
        if (now >= next_check) {
            /* A lease, not the session, keeps a leased lock: only without
             * one does a lost connection lose the hold. */
            /* The ping also feeds the session's heartbeat (cmd_sync.c
             * asked for one), with or without a lease. */
            int prc = chand_call(c->conn, "ping", NULL, CHECK_MS, NULL);
            if (lease_end < 0 && prc < 0 && !chand_connected(c->conn)) {
                const chand_error *e = chand_last_error(c->conn);
                char why[300];
                snprintf(why, sizeof why, "lost the %s (%s)",
                         token >= 0 ? "lock" : "once",
                         e && e->message[0] ? e->message : "connection lost");
                cli_stop_child(c, pid, why);
                ret = EXIT_LOST;
                goto out_restore;
            }
            next_check = cli_mono_ms() + CHECK_MS;
        }
    }
    if (WIFEXITED(status))
        ret = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        ret = 128 + WTERMSIG(status);
    else
        ret = EXIT_SERVER;
out_restore:
    child_pid = 0;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGQUIT, &old_quit, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGHUP, &old_hup, NULL);
    sigprocmask(SIG_SETMASK, &old_mask, NULL);
    return ret;
}
