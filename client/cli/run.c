/*
 * run.c - running a command while chanctl holds something (mutex run,
 * rwmutex run, once do): the child's environment, which signals are
 * passed on, and what its exit status becomes.
 */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t child_pid;

/* Passes a termination request on to the command: chanctl itself stays
 * until the command has exited, so the lock is held exactly as long. */
static void forward_signal(int sig)
{
    if (child_pid > 0)
        kill((pid_t)child_pid, sig);
}

/* Like system(3), the parent ignores SIGINT and SIGQUIT while it waits
 * (the terminal sends them to the child too) and forwards SIGTERM and
 * SIGHUP: whatever ends the command, chanctl outlives it and only then
 * lets go. */
int cli_run_child(cli_ctx *c, int64_t token, int64_t lease_ms)
{
    struct sigaction ign = {.sa_handler = SIG_IGN}, fwd = {0};
    struct sigaction old_int, old_quit, old_term, old_hup;
    char **argv = c->cmdv;
    pid_t pid;
    int status, ret;

    (void)lease_ms;
    fflush(stdout);
    fwd.sa_handler = forward_signal;
    sigemptyset(&fwd.sa_mask);
    sigemptyset(&ign.sa_mask);
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
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "%s: waitpid: %s\n", cli_prog, strerror(errno));
            ret = EXIT_SERVER;
            goto out_restore;
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
    return ret;
}
