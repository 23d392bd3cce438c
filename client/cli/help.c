/*
 * help.c - chanctl's help, all of it drawn from the command table: the
 * main help (one line per command), a group's subcommands, one command's
 * usage with only the options it takes, and "did you mean" for a
 * misspelt command (Levenshtein distance, as git's).
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *exit_help =
    "Exit status:\n"
    "  0    ok\n"
    "  1    closed: recv on a closed and drained channel, send or close on "
    "a closed\n"
    "       channel, make of a closed channel; or nothing there: pool "
    "empty, map key\n"
    "       absent, cas failed\n"
    "  2    usage error\n"
    "  3    other error answered by the server\n"
    "  4    cannot connect, or the connection was lost\n"
    "  124  timeout (as timeout(1))\n"
    "  125  mutex run / rwmutex run / once do: the hold was lost while the "
    "command\n"
    "       ran, and the command was stopped\n"
    "  N    mutex run / rwmutex run / once do: the command's status (once "
    "do that did\n"
    "       not run it: the status of the caller that did)\n";

static const char *opt_help =
    "Options (anywhere before --):\n"
    "  -s, --server URL        server (env CHAND_SERVER): HOST:PORT,\n"
    "                          chand://HOST:PORT, chands://HOST:PORT (TLS)"
    " or\n"
    "                          unix:/PATH; default unix:/run/chand/chand.sock"
    "\n"
    "                          when it exists, else 127.0.0.1:2426; a\n"
    "                          cluster's nodes as URL,URL,...: calls go to\n"
    "                          the leader\n"
    "  -u, --user NAME         authenticate as NAME (env CHAND_USER); the\n"
    "                          password from env CHAND_PASSWORD or\n"
    "      --password-file F   its first line (env CHAND_PASSWORD_FILE)\n"
    "      --tls-ca FILE       CAs for chands:// (env CHAND_TLS_CA; default"
    "\n"
    "                          the system's)\n"
    "      --tls-cert FILE     client certificate, PEM (env CHAND_TLS_CERT)"
    "\n"
    "      --tls-key FILE      its key, PEM (env CHAND_TLS_KEY)\n"
    "  -t, --timeout DUR       give up waiting after DUR (env "
    "CHAND_TIMEOUT; default inf)\n"
    "                          DUR in Go's syntax: 300ms, 1.5s, 5m30s, "
    "1h30m, 100us;\n"
    "                          a bare number is seconds; 0; inf\n"
    "  -q, --quiet             no notes on stderr at a normal end "
    "(recv's \"closed\")\n"
    "      --json              print results as JSON objects, one a line\n"
    "      --raw               print string values without JSON quotes\n"
    "  -h, --help              this help (also after any command)\n"
    "  -V, --version           print the version\n";

/* The options a command may take, for its own help. */
static const struct {
    unsigned bit;
    const char *text;
} cmd_opts[] = {
    {O_CAP, "      --cap N             buffer capacity (as CAP)"},
    {O_TYPE, "      --type T            type of the values"},
    {O_DEFAULT, "      --default           do not wait: -1 when nothing "
                "is ready"},
    {O_LEASE, "      --lease DUR         keep the lock DUR after chanctl "
              "exits"},
    {O_TOKEN, "      --token T           the token a lease-held lock was "
              "given"},
    {O_READ, "      --read              hold the read side"},
    {O_FILE, "      --file PATH         send the whole file (- for stdin) "
             "as one value"},
    {O_STRING, "      --string            send the text as a JSON string"},
    {O_JSONVAL, "      --json              VALUE must be valid JSON"},
    {O_MAKE, "      --make CAP          make the channel first if it is "
             "missing"},
    {O_GRACE, "      --grace DUR         after SIGTERM, wait DUR before "
              "SIGKILL (10s)"},
    {O_INTERVAL, "      --interval DUR      poll every DUR (200ms)"},
    {O_ACK, "      --ack               receive with acknowledgement: "
            "the delivery id\n                          goes to stderr "
            "(in --json, to the output)"},
    {O_ACKWAIT, "      --ack-wait DUR      time to acknowledge before "
                "the value is\n                          redelivered "
                "(the server's default: 30s)"},
    {O_MAXN, "      --max N             stop after N values"},
    {O_MAXDELIV, "      --max-deliver N     dead-letter a value after N "
                 "attempts"},
    {O_DEADLTR, "      --dead-letter NAME  the channel dead letters go to"},
    {O_DELAY, "      --delay DUR         redeliver only after DUR"},
    {O_REASON, "      --reason TEXT       kept with the value for its dead "
               "letter"},
};

static void print_cmd_line(const cli_cmd *k)
{
    char buf[64];

    snprintf(buf, sizeof buf, "%s%s%s", k->group ? k->group : "",
             k->group ? " " : "", k->name);
    printf("  %-22s %s\n", buf, k->brief);
}

void cli_help_main(void)
{
    printf("Usage: %s [OPTIONS] COMMAND [ARGS]\n\n"
           "Go's concurrency primitives on a chand server, from the shell.\n"
           "Values: an argument that parses as JSON is that value; anything "
           "else is a string.\n\nCommands:\n",
           cli_prog);
    for (size_t i = 0; i < cli_ncmds; i++)
        print_cmd_line(&cli_cmds[i]);
    printf("\n%s\n%s\nSee '%s COMMAND --help' and chanctl(1).\n", opt_help,
           exit_help, cli_prog);
}

void cli_help_group(const char *group)
{
    printf("Usage: %s [OPTIONS] %s SUBCOMMAND ARGS\n\n", cli_prog, group);
    for (size_t i = 0; i < cli_ncmds; i++)
        if (cli_cmds[i].group && strcmp(cli_cmds[i].group, group) == 0)
            print_cmd_line(&cli_cmds[i]);
    printf("\nSee '%s %s SUBCOMMAND --help', and '%s --help' for the "
           "options and exit codes.\n",
           cli_prog, group, cli_prog);
}

/* Prints text wrapped at 76 columns. */
static void print_wrapped(const char *h)
{
    while (*h) {
        size_t n = strlen(h), cut = n;
        if (n > 76) {
            cut = 76;
            while (cut > 0 && h[cut] != ' ')
                cut--;
            if (cut == 0)
                cut = 76;
        }
        size_t end = cut;
        while (end > 0 && h[end - 1] == ' ')
            end--; /* no trailing blanks where a sentence ended */
        printf("%.*s\n", (int)end, h);
        h += cut;
        while (*h == ' ')
            h++;
    }
}

void cli_help_cmd(const cli_cmd *k)
{
    bool any = false;

    printf("Usage: %s [OPTIONS] %s%s%s%s%s\n\n", cli_prog,
           k->group ? k->group : "", k->group ? " " : "", k->name,
           k->usage ? " " : "", k->usage ? k->usage : "");
    print_wrapped(k->help);
    for (size_t i = 0; i < sizeof cmd_opts / sizeof cmd_opts[0]; i++) {
        if (!(k->opts & cmd_opts[i].bit))
            continue;
        if (!any)
            printf("\nOptions of this command:\n");
        any = true;
        puts(cmd_opts[i].text);
    }
    printf("\nGlobal options and exit codes: '%s --help'.\n", cli_prog);
}

const cli_cmd *cli_find_cmd(const char *group, const char *name)
{
    for (size_t i = 0; i < cli_ncmds; i++) {
        const cli_cmd *k = &cli_cmds[i];
        if (group ? (k->group && strcmp(k->group, group) == 0)
                  : k->group == NULL)
            if (name && strcmp(k->name, name) == 0)
                return k;
    }
    return NULL;
}

bool cli_is_group(const char *s)
{
    for (size_t i = 0; i < cli_ncmds; i++)
        if (cli_cmds[i].group && strcmp(cli_cmds[i].group, s) == 0)
            return true;
    return false;
}

/* Returns the edit distance between a and b (insert, delete, substitute,
 * and swap of two neighbours, which is the commonest typo), capped for
 * long words. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), d;
    size_t *base, *row0, *row1, *row2;

    if (la > 64 || lb > 64)
        return (size_t)-1;
    base = calloc(3 * (lb + 1), sizeof *base);
    if (!base)
        return (size_t)-1;
    row0 = base;
    row1 = row0 + lb + 1;
    row2 = row1 + lb + 1;
    /* row0: two rows up, row1: the previous row, row2: this row. */
    for (size_t j = 0; j <= lb; j++)
        row1[j] = j;
    for (size_t i = 1; i <= la; i++) {
        row2[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            size_t v = row1[j - 1] + cost;
            if (row1[j] + 1 < v)
                v = row1[j] + 1;
            if (row2[j - 1] + 1 < v)
                v = row2[j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] &&
                a[i - 2] == b[j - 1] && row0[j - 2] + 1 < v)
                v = row0[j - 2] + 1;
            row2[j] = v;
        }
        size_t *t = row0;
        row0 = row1;
        row1 = row2;
        row2 = t;
    }
    d = row1[lb];
    free(base);
    return d;
}

const char *cli_suggest(const char *group, const char *word)
{
    const char *best = NULL;
    size_t bestd = (size_t)-1, limit = strlen(word) <= 3 ? 1 : 2;

    for (size_t i = 0; i < cli_ncmds; i++) {
        const cli_cmd *k = &cli_cmds[i];
        const char *cand;
        size_t d;

        if (group) {
            if (!k->group || strcmp(k->group, group) != 0)
                continue;
            cand = k->name;
        } else {
            cand = k->group ? k->group : k->name;
        }
        d = edit_distance(word, cand);
        if (d < bestd) {
            bestd = d;
            best = cand;
        }
    }
    return bestd <= limit ? best : NULL;
}
