/*
 * repl.c - chanctl's interactive mode: `chanctl` with no command on a
 * terminal.  A prompt with line editing, history (~/.chanctl_history) and
 * completion of command names, by libedit; each line is split as a shell
 * would (quotes, backslashes) and run as a command line on the one
 * session opened at start, so a lock taken here stays held until it is
 * unlocked or the user leaves (exit, quit, Ctrl-D).
 */
#include "cli.h"

#include <editline/readline.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HISTORY_MAX 1000

/* Splits line into words as sh does for the common cases: blanks
 * separate; '...' is literal; "..." keeps blanks and takes \" \\ \$ \`;
 * a backslash outside quotes escapes the next character.  Returns the
 * number of words with *argvp (new: one malloc'd block, NULL-terminated),
 * or -1 with *errp naming the problem. */
static int split_words(const char *line, char ***argvp, const char **errp)
{
    size_t n = strlen(line), nw = 0;
    char **argv = malloc((n / 2 + 2) * sizeof *argv + n + 1);
    char *out = (char *)(argv + n / 2 + 2);
    const char *p = line;

    if (!argv) {
        *errp = "out of memory";
        return -1;
    }
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        argv[nw++] = out;
        while (*p && *p != ' ' && *p != '\t') {
            if (*p == '\'') {
                const char *q = strchr(p + 1, '\'');
                if (!q)
                    goto out_unterminated;
                memcpy(out, p + 1, (size_t)(q - p - 1));
                out += q - p - 1;
                p = q + 1;
            } else if (*p == '"') {
                for (p++; *p && *p != '"'; p++) {
                    if (*p == '\\' && p[1] && strchr("\"\\$`", p[1]))
                        p++;
                    *out++ = *p;
                }
                if (!*p)
                    goto out_unterminated;
                p++;
            } else if (*p == '\\' && p[1]) {
                *out++ = p[1];
                p += 2;
            } else {
                *out++ = *p++;
            }
        }
        *out++ = '\0';
    }
    argv[nw] = NULL;
    *argvp = argv;
    return (int)nw;
out_unterminated:
    free(argv);
    *errp = "unterminated quote";
    return -1;
}

/* ---- completion: the first word from the table, a group's second ---- */

static char comp_group[32];

static char *complete_word(const char *text, int state)
{
    static size_t i;
    static const char *last;
    size_t len = strlen(text);

    if (state == 0) {
        i = 0;
        last = NULL;
    }
    for (; i < cli_ncmds; i++) {
        const cli_cmd *k = &cli_cmds[i];
        const char *cand;

        if (comp_group[0]) {
            if (!k->group || strcmp(k->group, comp_group) != 0)
                continue;
            cand = k->name;
        } else {
            cand = k->group ? k->group : k->name;
        }
        /* A group's rows are together: offer its name once. */
        if (last && strcmp(last, cand) == 0)
            continue;
        last = cand;
        if (strncmp(cand, text, len) == 0) {
            i++;
            return strdup(cand);
        }
    }
    return NULL;
}

static char **complete(const char *text, int start, int end)
{
    char first[32] = "";
    int words = 0;
    const char *p = rl_line_buffer;

    (void)end;
    rl_attempted_completion_over = 1; /* no file names */
    /* Which word is being completed, and the first one's text. */
    while (p < rl_line_buffer + start) {
        const char *w;
        while (p < rl_line_buffer + start && (*p == ' ' || *p == '\t'))
            p++;
        if (p >= rl_line_buffer + start)
            break;
        w = p;
        while (p < rl_line_buffer + start && *p != ' ' && *p != '\t')
            p++;
        if (words == 0)
            snprintf(first, sizeof first, "%.*s", (int)(p - w), w);
        words++;
    }
    if (text[0] == '-')
        return NULL;
    if (words == 0) {
        comp_group[0] = '\0';
    } else if (words == 1 && cli_is_group(first)) {
        snprintf(comp_group, sizeof comp_group, "%s", first);
    } else {
        return NULL;
    }
    return rl_completion_matches(text, complete_word);
}

/* ---- the loop ---- */

static char *history_path(void)
{
    const char *home = getenv("HOME");
    char *path = NULL;

    if (!home || !*home)
        return NULL;
    if (asprintf(&path, "%s/.chanctl_history", home) < 0)
        return NULL;
    return path;
}

static volatile sig_atomic_t repl_interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    repl_interrupted = 1;
}

int cli_repl(chand_conn *conn, const char *server)
{
    char *hist = history_path(), prompt[160];
    struct sigaction on_int = {.sa_handler = on_sigint}, old_int;
    int last = EXIT_OK;

    sigemptyset(&on_int.sa_mask);
    rl_readline_name = "chanctl";
    rl_attempted_completion_function = complete;
    using_history();
    stifle_history(HISTORY_MAX);
    if (hist)
        read_history(hist);
    snprintf(prompt, sizeof prompt, "%s> ", server);
    printf("chanctl %s connected to %s (%s), session %s.\n"
           "Every command runs on this session: a lock taken here is held "
           "until you\nunlock it or leave.  'help' lists the commands, "
           "'exit' or Ctrl-D leaves.\n",
           chand_version(), server, chand_server(conn), chand_session(conn));
    for (;;) {
        char *line, **argv;
        const char *err = "";
        int argc;

        /* At the prompt Ctrl-C drops the line, as in a shell; while a
         * command runs it ends chanctl as it always has (a blocked recv
         * must stay interruptible). */
        repl_interrupted = 0;
        sigaction(SIGINT, &on_int, &old_int);
        line = readline(prompt);
        sigaction(SIGINT, &old_int, NULL);
        if (!line && repl_interrupted) {
            putchar('\n');
            continue;
        }
        if (!line) {
            putchar('\n');
            break;
        }
        if (repl_interrupted) {
            putchar('\n');
            free(line);
            continue;
        }
        argc = split_words(line, &argv, &err);
        if (argc < 0) {
            fprintf(stderr, "%s: %s\n", cli_prog, err);
            free(line);
            continue;
        }
        if (argc > 0)
            add_history(line);
        free(line);
        if (argc > 0 &&
            (strcmp(argv[0], "exit") == 0 || strcmp(argv[0], "quit") == 0)) {
            free(argv);
            break;
        }
        if (argc > 0) {
            if (!chand_connected(conn)) {
                /* The old session is gone, and with it what it held. */
                if (chand_reconnect(conn, CLI_CONNECT_TIMEOUT_MS) == 0)
                    printf("(reconnected: session %s; what the old one held "
                           "was released)\n",
                           chand_session(conn));
            }
            last = cli_run_words(argc, argv, conn, server);
            if (last != EXIT_OK)
                printf("(exit %d)\n", last);
        }
        fflush(stdout);
        free(argv);
    }
    if (hist) {
        write_history(hist);
        free(hist);
    }
    return EXIT_OK;
}
