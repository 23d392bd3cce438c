/*
 * main.c - chanctl's entry: options (flag > environment > default), which
 * command of the table the words name, connecting, and running it.  All
 * talking to the server goes through the blocking libchand API.
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A word that starts with '-' but is a negative number, or "-" (stdin),
 * is an argument, not an option. */
static bool is_option(const char *a)
{
    if (a[0] != '-' || a[1] == '\0')
        return false;
    if (isdigit((unsigned char)a[1]) || a[1] == '.')
        return false;
    return true;
}

/* Returns the value of option opt at argv[*i] ("--opt V", "--opt=V",
 * "-sV"), advancing *i, or NULL. */
static const char *opt_value(char **argv, int argc, int *i, size_t optlen)
{
    const char *a = argv[*i];

    if (a[optlen] == '=')
        return a + optlen + 1;
    if (a[optlen] != '\0' && a[1] != '-')
        return a + optlen;
    if (*i + 1 >= argc)
        return NULL;
    return argv[++*i];
}

/* Matches option a against a short and a long name (with = or not). */
static size_t opt_match(const char *a, const char *shortname,
                        const char *longname)
{
    size_t n;

    if (shortname && strncmp(a, shortname, 2) == 0 && a[1] != '-')
        return 2;
    n = strlen(longname);
    if (strncmp(a, longname, n) == 0 && (a[n] == '\0' || a[n] == '='))
        return n;
    return 0;
}

/* What one command line says. */
typedef struct words {
    cli_ctx c;
    char **pos; /* the positional words */
    int npos;
    unsigned used; /* O_* options given */
    bool help;
    const char *timeout_arg, *server_arg;
    /* Identity and TLS (issue 17): never a password on the command line,
     * where ps(1) shows it; it comes from CHAND_PASSWORD or a file. */
    const char *user_arg, *password_file_arg;
    const char *tls_ca_arg, *tls_cert_arg, *tls_key_arg;
} words;

/* Reads the options of argv into w.  Returns -1 to go on, or the exit
 * code to end with (a usage error, or --version done). */
static int read_options(int argc, char **argv, words *w)
{
    cli_ctx *c = &w->c;

    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v;
        size_t n;

        if (strcmp(a, "--") == 0) {
            c->cmdv = argv + i + 1;
            break;
        }
        if (!is_option(a)) {
            w->pos[w->npos++] = argv[i];
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            w->help = true;
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("chanctl %s (protocol %d)\n", chand_version(),
                   CHAND_PROTOCOL_VERSION);
            return EXIT_OK;
        } else if (strcmp(a, "--json") == 0) {
            c->json = true;
        } else if (strcmp(a, "--raw") == 0) {
            c->raw = true;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            c->quiet = true;
        } else if (strcmp(a, "--string") == 0) {
            c->valmode = CLI_VAL_STRING;
            w->used |= O_STRING;
        } else if ((n = opt_match(a, NULL, "--file"))) {
            w->used |= O_FILE;
            if (!(c->file = opt_value(argv, argc, &i, n)))
                goto out_missing;
        } else if ((n = opt_match(a, NULL, "--make"))) {
            w->used |= O_MAKE;
            if (!(v = opt_value(argv, argc, &i, n)))
                goto out_missing;
            if (cli_parse_int(v, &c->make_cap) < 0 || c->make_cap < 0)
                return cli_usage_error(NULL, "bad capacity '%s'", v);
        } else if ((n = opt_match(a, NULL, "--grace"))) {
            w->used |= O_GRACE;
            if (!(v = opt_value(argv, argc, &i, n)))
                goto out_missing;
            if (cli_parse_duration(v, &c->grace_ms) < 0 ||
                c->grace_ms == CHAND_FOREVER)
                return cli_usage_error(NULL, "bad duration '%s'", v);
        } else if ((n = opt_match(a, NULL, "--interval"))) {
            w->used |= O_INTERVAL;
            if (!(v = opt_value(argv, argc, &i, n)))
                goto out_missing;
            if (cli_parse_duration(v, &c->interval_ms) < 0 ||
                c->interval_ms <= 0 || c->interval_ms == CHAND_FOREVER)
                return cli_usage_error(NULL, "bad duration '%s'", v);
        } else if (strcmp(a, "--ack") == 0) {
            c->ack = true;
            w->used |= O_ACK;
        } else if ((n = opt_match(a, NULL, "--ack-wait"))) {
            w->used |= O_ACKWAIT;
            if (!(v = opt_value(argv, argc, &i, n)))
                goto out_missing;
            if (cli_parse_duration(v, &c->ack_wait_ms) < 0 ||
                c->ack_wait_ms <= 0 || c->ack_wait_ms == CHAND_FOREVER)
                return cli_usage_error(NULL, "bad duration '%s'", v);
        } else if ((n = opt_match(a, NULL, "--max"))) {
            w->used |= O_MAXN;
            if (!(v = opt_value(argv, argc, &i, n)))
                goto out_missing;
            if (cli_parse_int(v, &c->max_n) < 0 || c->max_n < 1)
                return cli_usage_error(NULL, "bad count '%s'", v);
        } else if ((n = opt_match(a, NULL, "--max-deliver"))) {
            w->used |= O_MAXDELIV;
            if (!(v = opt_value(argv, argc, &i, n)))
                goto out_missing;
            if (cli_parse_int(v, &c->max_deliver) < 0 || c->max_deliver < 1 ||
                c->max_deliver > 1000000)
                return cli_usage_error(NULL, "bad count '%s' (1 to 1000000)",
                                       v);
        } else if ((n = opt_match(a, NULL, "--dead-letter"))) {
            w->used |= O_DEADLTR;
            if (!(c->dead_letter = opt_value(argv, argc, &i, n)))
                goto out_missing;
        } else if ((n = opt_match(a, NULL, "--delay"))) {
            w->used |= O_DELAY;
            if (!(v = opt_value(argv, argc, &i, n)))
                goto out_missing;
            if (cli_parse_duration(v, &c->delay_ms) < 0 ||
                c->delay_ms == CHAND_FOREVER)
                return cli_usage_error(NULL, "bad duration '%s'", v);
        } else if ((n = opt_match(a, NULL, "--reason"))) {
            w->used |= O_REASON;
            if (!(c->reason = opt_value(argv, argc, &i, n)))
                goto out_missing;
        } else if (strcmp(a, "--default") == 0) {
            c->dflt = true;
            w->used |= O_DEFAULT;
        } else if (strcmp(a, "--read") == 0) {
            c->read = true;
            w->used |= O_READ;
        } else if ((n = opt_match(a, "-s", "--server"))) {
            if (!(w->server_arg = opt_value(argv, argc, &i, n)))
                goto out_missing;
        } else if ((n = opt_match(a, "-t", "--timeout"))) {
            if (!(w->timeout_arg = opt_value(argv, argc, &i, n)))
                goto out_missing;
        } else if ((n = opt_match(a, "-u", "--user"))) {
            if (!(w->user_arg = opt_value(argv, argc, &i, n)))
                goto out_missing;
        } else if ((n = opt_match(a, NULL, "--password-file"))) {
            if (!(w->password_file_arg = opt_value(argv, argc, &i, n)))
                goto out_missing;
        } else if ((n = opt_match(a, NULL, "--tls-ca"))) {
            if (!(w->tls_ca_arg = opt_value(argv, argc, &i, n)))
                goto out_missing;
        } else if ((n = opt_match(a, NULL, "--tls-cert"))) {
            if (!(w->tls_cert_arg = opt_value(argv, argc, &i, n)))
                goto out_missing;
        } else if ((n = opt_match(a, NULL, "--tls-key"))) {
            if (!(w->tls_key_arg = opt_value(argv, argc, &i, n)))
                goto out_missing;
        } else if ((n = opt_match(a, NULL, "--lease"))) {
            w->used |= O_LEASE;
            if (!(v = opt_value(argv, argc, &i, n)))
                goto out_missing;
            if (cli_parse_duration(v, &c->lease_ms) < 0)
                return cli_usage_error(NULL, "bad duration '%s'", v);
        } else if ((n = opt_match(a, NULL, "--token"))) {
            w->used |= O_TOKEN;
            if (!(v = opt_value(argv, argc, &i, n)))
                goto out_missing;
            if (cli_parse_int(v, &c->token) < 0 || c->token < 0)
                return cli_usage_error(NULL, "bad token '%s'", v);
        } else if ((n = opt_match(a, NULL, "--cap"))) {
            w->used |= O_CAP;
            if (!(v = opt_value(argv, argc, &i, n)))
                goto out_missing;
            if (cli_parse_int(v, &c->cap) < 0 || c->cap < 0)
                return cli_usage_error(NULL, "bad capacity '%s'", v);
        } else if ((n = opt_match(a, NULL, "--type"))) {
            w->used |= O_TYPE;
            if (!(c->type = opt_value(argv, argc, &i, n)))
                goto out_missing;
        } else {
            return cli_usage_error(NULL, "unknown option '%s'", a);
        }
        continue;
    out_missing:
        return cli_usage_error(NULL, "option '%s' needs a value", a);
    }
    if (c->cmdv)
        w->used |= O_CMD;
    return -1;
}

/* Says that word is no command, with the nearest one if any; returns
 * EXIT_USAGE. */
static int unknown(const char *group, const char *word)
{
    const char *near = cli_suggest(group, word);

    if (group)
        fprintf(stderr, "%s: %s: unknown subcommand '%s'\n", cli_prog, group,
                word);
    else
        fprintf(stderr, "%s: unknown command '%s'\n", cli_prog, word);
    if (near)
        fprintf(stderr, "Did you mean '%s%s%s'?\n", group ? group : "",
                group ? " " : "", near);
    fprintf(stderr, "Try '%s %s%s--help'.\n", cli_prog, group ? group : "",
            group ? " " : "");
    return EXIT_USAGE;
}

/* `chanctl help [GROUP] [COMMAND]`. */
static int help_words(words *w)
{
    const char *a = w->npos > 1 ? w->pos[1] : NULL;
    const cli_cmd *k;

    if (!a) {
        cli_help_main();
        return EXIT_OK;
    }
    if (cli_is_group(a)) {
        k = w->npos > 2 ? cli_find_cmd(a, w->pos[2]) : NULL;
        if (k)
            cli_help_cmd(k);
        else if (w->npos > 2)
            return unknown(a, w->pos[2]);
        else
            cli_help_group(a);
        return EXIT_OK;
    }
    k = cli_find_cmd(NULL, a);
    if (!k)
        return unknown(NULL, a);
    cli_help_cmd(k);
    return EXIT_OK;
}

/* Finds the command the words name into *kp and the index of its first
 * argument into *first.  Returns -1 to go on, or the exit code to end
 * with (help given, usage error). */
static int find_command(words *w, const cli_cmd **kp, int *first)
{
    const cli_cmd *k;

    if (w->npos == 0) {
        if (w->help) {
            cli_help_main();
            return EXIT_OK;
        }
        return cli_usage_error(NULL, "missing COMMAND");
    }
    if (strcmp(w->pos[0], "help") == 0)
        return help_words(w);
    if (cli_is_group(w->pos[0])) {
        k = w->npos > 1 ? cli_find_cmd(w->pos[0], w->pos[1]) : NULL;
        if (!k) {
            if (w->help && w->npos == 1) {
                cli_help_group(w->pos[0]);
                return EXIT_OK;
            }
            if (w->npos == 1)
                return cli_usage_error(NULL, "%s: missing subcommand",
                                       w->pos[0]);
            return unknown(w->pos[0], w->pos[1]);
        }
        *first = 2;
    } else {
        k = cli_find_cmd(NULL, w->pos[0]);
        if (!k)
            return unknown(NULL, w->pos[0]);
        *first = 1;
    }
    *kp = k;
    /* Past "--" a command that runs no COMMAND takes arguments that look
     * like options: `send q -- -x` sends "-x". */
    if (!(k->opts & O_CMD) && w->c.cmdv) {
        for (char **p = w->c.cmdv; *p; p++)
            w->pos[w->npos++] = *p;
        w->c.cmdv = NULL;
        w->used &= ~(unsigned)O_CMD;
    }
    return -1;
}

/* Checks the command's options and arguments.  Returns -1 to go on, or
 * the exit code to end with. */
static int check_command(words *w, const cli_cmd *k, int first)
{
    cli_ctx *c = &w->c;
    int min = k->min, max = k->max;

    if (w->help) {
        cli_help_cmd(k);
        return EXIT_OK;
    }
    if (c->raw && (k->opts & O_NORAW))
        return cli_usage_error(c,
                               "--raw is for printing values, and %s "
                               "prints none (--string sends text as a "
                               "string)",
                               c->cmdname);
    if (w->used & ~k->opts)
        return cli_usage_error(c, "option not valid for this command");
    if ((k->opts & O_CMD) && (!c->cmdv || !c->cmdv[0]))
        return cli_usage_error(c, "missing -- COMMAND");
    /* send NAME --file PATH takes no VALUE. */
    if ((k->opts & O_FILE) && c->file)
        min = max = 1;
    if (w->npos - first < min || (max >= 0 && w->npos - first > max))
        return cli_usage_error(c, "expected %s", k->usage ? k->usage : "");
    return -1;
}

/* Reads --timeout (flag > environment > default) into the context.
 * Returns -1 to go on, or EXIT_USAGE. */
static int resolve_timeout(words *w)
{
    const char *env;

    if (!w->timeout_arg && (env = getenv("CHAND_TIMEOUT")) && *env)
        w->timeout_arg = env;
    if (w->timeout_arg &&
        cli_parse_duration(w->timeout_arg, &w->c.timeout_ms) < 0)
        return cli_usage_error(NULL, "bad duration '%s'", w->timeout_arg);
    return -1;
}

/* Returns the flag's value, else the environment's (empty: unset). */
static const char *flag_or_env(const char *flag, const char *env)
{
    const char *v = getenv(env);

    return flag ? flag : v && *v ? v : NULL;
}

/* Reads the first line of path into a new string (without its end), for
 * --password-file.  Returns NULL with a message printed. */
static char *read_password_file(const char *path)
{
    char buf[1100];
    FILE *f = fopen(path, "r");
    char *pw = NULL;

    if (!f) {
        fprintf(stderr, "%s: --password-file %s: %s\n", cli_prog, path,
                strerror(errno));
        return NULL;
    }
    if (fgets(buf, sizeof buf, f)) {
        buf[strcspn(buf, "\r\n")] = '\0';
        pw = strdup(buf);
    } else {
        fprintf(stderr, "%s: --password-file %s: empty\n", cli_prog, path);
    }
    explicit_bzero(buf, sizeof buf);
    fclose(f);
    return pw;
}

/* The options of chand_connect_url from --user, the password and the TLS
 * flags (and their environment).  Returns -1 to go on with *out (NULL
 * when there are none), or the exit code to end with. */
static int connect_options(words *w, chand_options **out)
{
    const char *user = flag_or_env(w->user_arg, "CHAND_USER");
    const char *pwf = flag_or_env(w->password_file_arg, "CHAND_PASSWORD_FILE");
    const char *ca = flag_or_env(w->tls_ca_arg, "CHAND_TLS_CA");
    const char *cert = flag_or_env(w->tls_cert_arg, "CHAND_TLS_CERT");
    const char *key = flag_or_env(w->tls_key_arg, "CHAND_TLS_KEY");
    const char *env_pw = getenv("CHAND_PASSWORD");
    char *pw = NULL;
    chand_options *o;
    int rc = 0;

    *out = NULL;
    if (!user && !ca && !cert && !key)
        return -1;
    if (!(o = chand_options_new()))
        return EXIT_SERVER;
    if (user) {
        if (pwf)
            pw = read_password_file(pwf);
        else if (env_pw)
            pw = strdup(env_pw);
        if (!pw) {
            chand_options_free(o);
            if (!pwf)
                return cli_usage_error(NULL,
                                       "--user %s: the password comes from "
                                       "CHAND_PASSWORD or --password-file",
                                       user);
            return EXIT_USAGE;
        }
        rc |= chand_options_set(o, "user", user);
        rc |= chand_options_set(o, "password", pw);
        explicit_bzero(pw, strlen(pw));
        free(pw);
    }
    rc |= chand_options_set(o, "tls_ca", ca);
    rc |= chand_options_set(o, "tls_cert", cert);
    rc |= chand_options_set(o, "tls_key", key);
    if (rc) {
        chand_options_free(o);
        return EXIT_SERVER;
    }
    *out = o;
    return -1;
}

/* Connects as -s/CHAND_SERVER, --user and --timeout say, into w->c.conn:
 * by default the local unix socket when it exists, else TCP.  Returns -1
 * to go on, or the exit code to end with. */
static int connect_server(words *w)
{
    cli_ctx *c = &w->c;
    const char *env;
    int rc;
    int64_t connect_ms = CLI_CONNECT_TIMEOUT_MS;
    chand_error err;
    chand_options *opts;

    if (!w->server_arg && (env = getenv("CHAND_SERVER")) && *env)
        w->server_arg = env;
    if (!w->server_arg)
        w->server_arg = access(CHAND_DEFAULT_UNIX, F_OK) == 0
                            ? "unix:" CHAND_DEFAULT_UNIX
                            : CHAND_DEFAULT_HOST ":2426";
    c->server = w->server_arg;
    rc = connect_options(w, &opts);
    if (rc >= 0)
        return rc;
    /* A shorter --timeout bounds connecting too, down to a floor: the
     * timeout is about waiting on channels and locks, and a 100 ms one
     * must not fail to connect because the machine is busy. */
    if (c->timeout_ms >= 0 && c->timeout_ms < connect_ms)
        connect_ms = c->timeout_ms < CLI_CONNECT_FLOOR_MS ? CLI_CONNECT_FLOOR_MS
                                                          : c->timeout_ms;
    rc = chand_connect_url(w->server_arg, opts, connect_ms, &c->conn, &err);
    chand_options_free(opts);
    if (rc == CHAND_EARG && strstr(err.message, "bad server URL"))
        return cli_usage_error(NULL, "bad server address '%s'", w->server_arg);
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", cli_prog, err.message);
        return cli_exit_code(err.code);
    }
    return -1;
}

int cli_run_words(int argc, char **argv, chand_conn *conn, const char *server)
{
    static char name[64];
    words w = {.c = {.timeout_ms = CHAND_FOREVER,
                     .lease_ms = -1,
                     .token = -1,
                     .make_cap = -1,
                     .max_n = -1,
                     .grace_ms = 10000,
                     .interval_ms = 0}};
    cli_ctx *c = &w.c;
    const cli_cmd *k = NULL;
    int ret, first = 0;

    w.pos = calloc((size_t)argc + 1, sizeof *w.pos);
    if (!w.pos)
        return EXIT_SERVER;
    ret = read_options(argc, argv, &w);
    if (ret >= 0)
        goto out;
    if (conn && w.server_arg) {
        ret = cli_usage_error(NULL, "-s: the server is chosen when "
                                    "chanctl starts");
        goto out;
    }
    ret = resolve_timeout(&w);
    if (ret >= 0)
        goto out;
    /* No command, on a terminal: the interactive mode. */
    if (!conn && w.npos == 0 && !w.help && !c->cmdv && isatty(STDIN_FILENO) &&
        isatty(STDOUT_FILENO)) {
        ret = connect_server(&w);
        if (ret >= 0)
            goto out;
        /* The startup line's --timeout holds for every command after. */
        if (w.timeout_arg)
            setenv("CHAND_TIMEOUT", w.timeout_arg, 1);
        ret = cli_repl(c->conn, c->server);
        chand_close_conn(c->conn);
        goto out;
    }
    ret = find_command(&w, &k, &first);
    if (ret >= 0)
        goto out;
    snprintf(name, sizeof name, "%s%s%s", k->group ? k->group : "",
             k->group ? " " : "", k->name);
    c->cmdname = name;
    ret = check_command(&w, k, first);
    if (ret >= 0)
        goto out;
    if (conn) {
        c->conn = conn;
        c->interactive = true;
        c->server = server;
    } else {
        ret = connect_server(&w);
        if (ret >= 0)
            goto out;
    }
    ret = k->fn(c, k, w.npos - first, w.pos + first);
    if (fflush(stdout) != 0 && ret == 0)
        ret = EXIT_SERVER;
    if (!conn)
        chand_close_conn(c->conn);
out:
    free(w.pos);
    return ret;
}

int main(int argc, char **argv)
{
    /* A reader that went away (`chanctl range q | head -1`) ends us
     * quietly through EPIPE on stdout instead of a signal. */
    signal(SIGPIPE, SIG_IGN);
    return cli_run_words(argc - 1, argv + 1, NULL, NULL);
}
