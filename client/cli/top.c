/*
 * top.c - `chanctl top`: a live view of the server, redrawn every second
 * (--interval) with plain ANSI escapes: sessions, goroutines, memory,
 * requests per second (runtime.stats), and the objects sorted by how
 * many wait on them or by their rate of requests (runtime.dump's ops
 * counters, differenced between frames; r toggles).  q or Ctrl-C quits;
 * the terminal is given back as it was.
 */
#include "cli.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t top_stop;

static void on_signal(int sig)
{
    (void)sig;
    top_stop = 1;
}

static int64_t get_int(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);

    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

/* An object of a frame with its rate of requests (-1: not known yet). */
typedef struct top_row {
    json_t *o; /* borrowed from the frame's dump */
    double rate;
} top_row;

/* How busy an object is, for sorting: waiters first, then holders. */
static int by_waiters(const void *a, const void *b)
{
    json_t *x = ((const top_row *)a)->o, *y = ((const top_row *)b)->o;
    size_t wx = json_array_size(json_object_get(x, "waiters"));
    size_t wy = json_array_size(json_object_get(y, "waiters"));
    size_t hx = json_array_size(json_object_get(x, "holders"));
    size_t hy = json_array_size(json_object_get(y, "holders"));
    const char *nx = json_string_value(json_object_get(x, "name"));
    const char *ny = json_string_value(json_object_get(y, "name"));

    if (wx != wy)
        return wx > wy ? -1 : 1;
    if (hx != hy)
        return hx > hy ? -1 : 1;
    return strcmp(nx ? nx : "", ny ? ny : "");
}

/* By requests per second, then as by_waiters. */
static int by_rate(const void *a, const void *b)
{
    double rx = ((const top_row *)a)->rate, ry = ((const top_row *)b)->rate;

    if (rx != ry)
        return rx > ry ? -1 : 1;
    return by_waiters(a, b);
}

/* Fills each row's rate from the ops counters of this frame and of the
 * last (prev: name -> ops, updated; dt_ms: time between them, <= 0 at the
 * first frame).  A name new since the last frame has no rate yet. */
static void fill_rates(top_row *rows, size_t n, json_t *prev, int64_t dt_ms)
{
    json_t *now = json_object();

    for (size_t i = 0; i < n; i++) {
        const char *name =
            json_string_value(json_object_get(rows[i].o, "name"));
        json_t *was = name ? json_object_get(prev, name) : NULL;
        int64_t ops = get_int(rows[i].o, "ops");

        rows[i].rate = -1;
        if (was && dt_ms > 0 && ops >= json_integer_value(was))
            rows[i].rate = (double)(ops - json_integer_value(was)) * 1000.0 /
                           (double)dt_ms;
        if (name && now)
            json_object_set_new(now, name, json_integer(ops));
    }
    /* Only the names still there, so a dropped object's count goes. */
    json_object_clear(prev);
    if (now)
        json_object_update(prev, now);
    json_decref(now);
}

/* A short state for the table: a channel's len/cap, a counter, ... */
static void short_state(json_t *o, char *buf, size_t n)
{
    const char *type = json_string_value(json_object_get(o, "type"));

    buf[0] = '\0';
    if (!type)
        return;
    if (strcmp(type, "chan") == 0)
        snprintf(buf, n, "%lld/%lld%s", (long long)get_int(o, "len"),
                 (long long)get_int(o, "cap"),
                 json_is_true(json_object_get(o, "closed")) ? " closed" : "");
    else if (json_object_get(o, "locked"))
        snprintf(buf, n, "%s",
                 json_is_true(json_object_get(o, "locked")) ? "locked"
                                                            : "unlocked");
    else if (json_object_get(o, "count"))
        snprintf(buf, n, "count %lld", (long long)get_int(o, "count"));
    else if (json_object_get(o, "len"))
        snprintf(buf, n, "len %lld", (long long)get_int(o, "len"));
    else if (json_object_get(o, "value"))
        snprintf(buf, n, "%lld", (long long)get_int(o, "value"));
}

static void fmt_bytes(int64_t b, char *buf, size_t n)
{
    if (b >= 1024 * 1024)
        snprintf(buf, n, "%.1f MiB", (double)b / (1024 * 1024));
    else if (b >= 1024)
        snprintf(buf, n, "%.1f KiB", (double)b / 1024);
    else
        snprintf(buf, n, "%lld B", (long long)b);
}

/* Draws one frame; rate < 0 when not known yet.  sorted holds the
 * frame's objects with their rates (sorted here, by_rate or not). */
static void draw(const cli_ctx *c, json_t *stats, top_row *sorted, size_t n,
                 bool rate_sort, double rate, int rows)
{
    size_t i;
    char mem[32], out[32], now[16], r[32];
    time_t t = time(NULL);
    struct tm tm;
    int line;

    localtime_r(&t, &tm);
    strftime(now, sizeof now, "%H:%M:%S", &tm);
    fmt_bytes(get_int(stats, "rss_bytes"), mem, sizeof mem);
    fmt_bytes(get_int(stats, "output_buffer_bytes"), out, sizeof out);
    if (rate < 0)
        snprintf(r, sizeof r, "-");
    else
        snprintf(r, sizeof r, "%.1f", rate);
    /* Home, clear to the end of the screen: one redraw, no flicker of a
     * full clear. */
    printf("\033[H\033[J");
    printf("chanctl top - %s - %s   (q or Ctrl-C quits)\r\n", c->server, now);
    printf("sessions %lld  goroutines %lld  threads %lld  gomaxprocs %lld\r\n",
           (long long)get_int(stats, "sessions"),
           (long long)get_int(stats, "goroutines"),
           (long long)get_int(stats, "threads"),
           (long long)get_int(stats, "gomaxprocs"));
    printf("objects %lld  waiters %lld  held locks %lld\r\n",
           (long long)get_int(stats, "objects"),
           (long long)get_int(stats, "waiters"),
           (long long)get_int(stats, "held_locks"));
    printf("memory %s rss  output buffers %s  requests %lld  req/s %s\r\n", mem,
           out, (long long)get_int(stats, "requests"), r);
    printf("objects by %s (r: by %s)\r\n", rate_sort ? "rate" : "waiters",
           rate_sort ? "waiters" : "rate");
    printf("\033[7m%-24s %-8s %-14s %7s %7s %12s %9s\033[0m\r\n", "NAME",
           "TYPE", "STATE", "HOLDERS", "WAITERS", "LONGEST WAIT", "OPS/S");
    line = 6;
    qsort(sorted, n, sizeof *sorted, rate_sort ? by_rate : by_waiters);
    for (i = 0; i < n && line < rows; i++, line++) {
        json_t *o = sorted[i].o, *ws = json_object_get(o, "waiters"), *w;
        const char *name = json_string_value(json_object_get(o, "name"));
        const char *type = json_string_value(json_object_get(o, "type"));
        int64_t longest = -1;
        char st[32], lw[32], ops[32];
        size_t j;

        json_array_foreach(ws, j, w)
        {
            int64_t ms = get_int(w, "waited_ms");
            if (ms > longest)
                longest = ms;
        }
        short_state(o, st, sizeof st);
        if (longest >= 0)
            cli_fmt_ms(longest, lw, sizeof lw);
        else
            snprintf(lw, sizeof lw, "-");
        if (sorted[i].rate >= 0)
            snprintf(ops, sizeof ops, "%.1f", sorted[i].rate);
        else
            snprintf(ops, sizeof ops, "-");
        printf("%-24.24s %-8.8s %-14.14s %7zu %7zu %12s %9s\r\n",
               name ? name : "?", type ? type : "?", st,
               json_array_size(json_object_get(o, "holders")),
               json_array_size(ws), lw, ops);
    }
    if (i < n)
        printf("... %zu more\r\n", n - i);
}

enum { KEY_NONE, KEY_QUIT, KEY_SORT };

/* Waits until end (mono ms) for a key; returns KEY_QUIT when it asks to
 * quit, KEY_SORT for r (at once), else KEY_NONE when end comes. */
static int wait_key(int64_t end, bool tty)
{
    while (!top_stop) {
        int64_t left = end - cli_mono_ms();
        struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
        int rc;
        char ch;

        if (left <= 0)
            return KEY_NONE;
        rc = poll(&pfd, tty ? 1 : 0, (int)left);
        if (rc < 0 && errno != EINTR)
            return KEY_NONE;
        if (rc > 0) {
            ssize_t got = read(STDIN_FILENO, &ch, 1);
            if (got == 0)
                return KEY_NONE; /* no more keys: stay until a signal */
            if (got == 1 && (ch == 'q' || ch == 'Q' || ch == 3))
                return KEY_QUIT;
            if (got == 1 && (ch == 'r' || ch == 'R'))
                return KEY_SORT;
        }
    }
    return KEY_QUIT;
}

int cli_h_top(cli_ctx *c, const cli_cmd *k, int argc, char **argv)
{
    bool tty = isatty(STDIN_FILENO);
    struct termios saved, raw;
    struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
    int64_t prev_req = -1, prev_at = 0, end;
    int ret = EXIT_OK;
    int64_t interval = c->interval_ms > 0 ? c->interval_ms : 1000;
    json_t *prev_ops = json_object();
    bool rate_sort = false;

    (void)k;
    (void)argc;
    (void)argv;
    end = c->timeout_ms >= 0 ? cli_mono_ms() + c->timeout_ms : -1;
    if (tty && tcgetattr(STDIN_FILENO, &saved) == 0) {
        raw = saved;
        /* Keys one at a time, unechoed; Ctrl-C still signals. */
        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    } else {
        tty = false;
    }
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    printf("\033[?25l"); /* hide the cursor while drawing */
    while (!top_stop && prev_ops) {
        json_t *stats = NULL, *dump = NULL, *objs;
        struct winsize ws = {0};
        double rate = -1;
        int rc = chand_stats(c->conn, &stats);
        int64_t now, req, next;
        top_row *rows;
        size_t n;
        int key;

        if (rc == 0)
            rc = chand_dump(c->conn, &dump);
        if (rc < 0) {
            json_decref(stats);
            printf("\033[?25h\r\n");
            ret = cli_fail(c, rc);
            break;
        }
        now = cli_mono_ms();
        req = get_int(stats, "requests");
        if (prev_req >= 0 && now > prev_at)
            rate = (double)(req - prev_req) * 1000.0 / (double)(now - prev_at);
        /* Our own two requests a frame are not the server's load. */
        if (rate >= 0) {
            rate -= 2000.0 / (double)(now - prev_at);
            if (rate < 0)
                rate = 0;
        }
        objs = json_object_get(dump, "objects");
        n = json_array_size(objs);
        rows = calloc(n + 1, sizeof *rows);
        if (!rows) {
            json_decref(stats);
            json_decref(dump);
            printf("\033[?25h\r\n");
            ret = cli_fail(c, CHAND_ENOMEM);
            break;
        }
        for (size_t i = 0; i < n; i++)
            rows[i].o = json_array_get(objs, i);
        fill_rates(rows, n, prev_ops, prev_req >= 0 ? now - prev_at : 0);
        prev_req = req;
        prev_at = now;
        if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) < 0 || ws.ws_row == 0)
            ws.ws_row = 24;
        next = now + interval;
        if (end >= 0 && end < next)
            next = end;
        /* r redraws this frame in the other order at once. */
        do {
            draw(c, stats, rows, n, rate_sort, rate, ws.ws_row - 1);
            if (fflush(stdout) != 0) {
                key = KEY_QUIT;
                break;
            }
            if (end >= 0 && cli_mono_ms() >= end) {
                key = KEY_QUIT;
                break;
            }
            key = wait_key(next, tty);
            if (key == KEY_SORT)
                rate_sort = !rate_sort;
        } while (key == KEY_SORT);
        free(rows);
        json_decref(stats);
        json_decref(dump);
        if (key == KEY_QUIT)
            break;
    }
    json_decref(prev_ops);
    printf("\033[?25h");
    fflush(stdout);
    if (tty)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    return ret;
}
