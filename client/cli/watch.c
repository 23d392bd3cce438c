/*
 * watch.c - `chanctl watch NAME`: polls runtime.dump at a short interval
 * and prints a line each time the object's length, holders or waiters
 * change (times alone are no change).  Ends on Ctrl-C (exit 130), after
 * --timeout (exit 0: watching for that long is what was asked), or when
 * the connection is lost.
 */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

/* Returns object name of a runtime.dump result (borrowed) or NULL. */
static json_t *find_object(json_t *res, const char *name)
{
    json_t *o;
    size_t i;

    json_array_foreach(json_object_get(res, "objects"), i, o)
    {
        const char *n = json_string_value(json_object_get(o, "name"));
        if (n && strcmp(n, name) == 0)
            return o;
    }
    return NULL;
}

static volatile sig_atomic_t watch_stop;

/* Ctrl-C ends the watch, not chanctl: at the interactive prompt the
 * session (and what it holds) goes on. */
static void on_sigint(int sig)
{
    (void)sig;
    watch_stop = 1;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000,
                          .tv_nsec = (long)(ms % 1000) * 1000000};

    while (!watch_stop && nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Prints the wall-clock time of day with milliseconds. */
static void print_now(void)
{
    struct timeval tv;
    struct tm tm;
    char buf[32];

    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    strftime(buf, sizeof buf, "%H:%M:%S", &tm);
    printf("%s.%03ld ", buf, (long)(tv.tv_usec / 1000));
}

int cli_h_watch(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    const char *name = argv[0];
    int64_t end = c->timeout_ms >= 0 ? cli_mono_ms() + c->timeout_ms : -1;
    int64_t interval = c->interval_ms > 0 ? c->interval_ms : 200;
    struct sigaction sa = {.sa_handler = on_sigint}, old_int;
    char *prev = NULL;
    int ret = EXIT_OK;

    (void)k;
    (void)argc;
    watch_stop = 0;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    while (!watch_stop) {
        json_t *res = NULL, *o;
        char *state;
        int rc = chand_dump(c->conn, &res);

        if (rc < 0) {
            ret = cli_fail(c, rc);
            break;
        }
        o = find_object(res, name);
        state = o ? cli_dump_state(o) : strdup("(no such object)");
        if (!state) {
            json_decref(res);
            ret = cli_fail(c, CHAND_ENOMEM);
            break;
        }
        if (!prev || strcmp(prev, state) != 0) {
            if (c->json) {
                json_t *line =
                    json_pack("{s:s, s:O?}", "name", name, "object", o);
                cli_print_object(c, line);
                json_decref(line);
            } else {
                print_now();
                printf("%s: %s\n", name, state);
            }
            if (fflush(stdout) != 0) {
                free(state);
                json_decref(res);
                ret = errno == EPIPE ? 128 + SIGPIPE : EXIT_SERVER;
                break;
            }
        }
        free(prev);
        prev = state;
        json_decref(res);
        if (end >= 0 && cli_mono_ms() + interval > end) {
            if (end > cli_mono_ms())
                sleep_ms(end - cli_mono_ms());
            break;
        }
        sleep_ms(interval);
    }
    if (watch_stop && ret == EXIT_OK)
        ret = 128 + SIGINT; /* as if killed by it, as a shell reports */
    sigaction(SIGINT, &old_int, NULL);
    free(prev);
    return ret;
}
