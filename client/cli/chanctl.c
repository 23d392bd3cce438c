/*
 * chanctl.c - the command-line client of chand: every protocol method as
 * a subcommand, for shell scripts and humans.
 *
 * This file owns the CLI's contract: option parsing (flag > environment >
 * default), durations, how arguments become JSON values, what each command
 * prints, and the exit codes (0 ok, 1 closed / nothing there, 2 usage,
 * 3 other server error, 4 cannot connect, 124 timeout), which scripts rely
 * on and chanctl.1 documents.  All talking to the server goes through the
 * blocking libchand API.
 */
#include "chand.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define EXIT_OK 0
#define EXIT_CLOSED 1
#define EXIT_USAGE 2
#define EXIT_SERVER 3
#define EXIT_CONNECT 4
#define EXIT_TIMEOUT 124

/* How long connecting may take, separate from --timeout (which is about
 * waiting on channels and locks, and is "forever" by default). */
#define CONNECT_TIMEOUT_MS 5000

/* Options a command may take (bits of cmd.opts). */
enum {
    O_DEFAULT = 1 << 0,  /* --default */
    O_LEASE = 1 << 1,    /* --lease DUR */
    O_TOKEN = 1 << 2,    /* --token N */
    O_CAP = 1 << 3,      /* --cap N */
    O_TYPE = 1 << 4,     /* --type T */
    O_READ = 1 << 5,     /* --read */
    O_CMD = 1 << 6,      /* -- CMD... */
};

typedef struct ctx {
    chand_conn *conn;
    const char *server;
    int64_t timeout_ms;      /* CHAND_FOREVER unless --timeout */
    bool json, raw, dflt, read;
    int64_t lease_ms;        /* -1: none */
    int64_t token;           /* -1: none */
    int64_t cap;
    const char *type;
    char **cmdv;             /* after "--", NULL-terminated */
    const char *cmdname;     /* "send", "mutex lock", ... for messages */
} ctx;

typedef struct cmd {
    const char *group;       /* "mutex", ... or NULL */
    const char *name;
    int (*fn)(ctx *c, int argc, char **argv);
    int min, max;            /* positional arguments; max -1: any */
    unsigned opts;
    const char *usage;
    const char *help;
} cmd;

static const char *prog = "chanctl";

/* ------------------------------------------------------------------ */
/* Messages, errors and exit codes                                    */
/* ------------------------------------------------------------------ */

static int usage_error(const ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const ctx *c, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: %s%s", prog, c && c->cmdname ? c->cmdname : "",
            c && c->cmdname ? ": " : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s %s%s--help'.\n", prog,
            c && c->cmdname ? c->cmdname : "", c && c->cmdname ? " " : "");
    return EXIT_USAGE;
}

/* Maps a libchand code to the documented exit code. */
static int exit_code(int rc)
{
    switch (rc) {
    case 0:
        return EXIT_OK;
    case CHAND_ECLOSED:
        return EXIT_CLOSED;
    case CHAND_ETIMEOUT:
        return EXIT_TIMEOUT;
    case CHAND_ECONNECT:
    case CHAND_ECONN:
        return EXIT_CONNECT;
    case CHAND_EARG:
        return EXIT_USAGE;
    default:
        return EXIT_SERVER;
    }
}

/* Reports a failed call on stderr and returns its exit code. */
static int fail(const ctx *c, int rc)
{
    const chand_error *e = chand_last_error(c->conn);
    const char *msg = e && e->code == rc && e->message[0]
                          ? e->message
                          : chand_strerror(rc);

    if (e && e->code == rc && e->reason[0] && strcmp(e->reason, msg) != 0)
        fprintf(stderr, "%s: %s: %s (%s)\n", prog, c->cmdname, msg,
                e->reason);
    else
        fprintf(stderr, "%s: %s: %s\n", prog, c->cmdname, msg);
    return exit_code(rc);
}

/* ------------------------------------------------------------------ */
/* Arguments: durations, numbers, values                              */
/* ------------------------------------------------------------------ */

/* Parses "500ms", "5s", "1.5s", "1m", "2h", "inf", or a bare number of
 * seconds (as timeout(1)) into milliseconds (CHAND_FOREVER for inf).
 * Returns 0 or -1. */
static int parse_duration(const char *s, int64_t *ms)
{
    char *end;
    double v, mult = 1000;

    if (!s || !*s)
        return -1;
    if (strcmp(s, "inf") == 0 || strcmp(s, "infinity") == 0 ||
        strcmp(s, "forever") == 0) {
        *ms = CHAND_FOREVER;
        return 0;
    }
    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || v < 0 || !isfinite(v))
        return -1;
    if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "s") == 0 || *end == '\0')
        mult = 1000;
    else if (strcmp(end, "m") == 0)
        mult = 60 * 1000;
    else if (strcmp(end, "h") == 0)
        mult = 3600 * 1000;
    else
        return -1;
    if (v * mult > 9e15)
        return -1;
    *ms = (int64_t)llround(v * mult);
    return 0;
}

static int parse_int(const char *s, int64_t *out)
{
    char *end;
    long long v;

    if (!s || !*s)
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

/* Reads all of stdin into a malloc'd string without its final newline. */
static char *read_stdin(void)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);

    if (!buf)
        return NULL;
    for (;;) {
        size_t n;
        if (cap - len < 2) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        n = fread(buf + len, 1, cap - len - 1, stdin);
        len += n;
        if (n == 0)
            break;
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    buf[len] = '\0';
    return buf;
}

/* Returns a new JSON value for text: the JSON it parses as, else the
 * string itself (so `chanctl send q build` sends "build"). */
static json_t *text_value(const char *s)
{
    json_t *v = json_loads(s, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
                           NULL);

    return v ? v : json_string(s);
}

/* Returns a new value for an argument; "-" reads stdin.  NULL on error. */
static json_t *arg_value(const char *arg)
{
    json_t *v;
    char *s;

    if (strcmp(arg, "-") != 0)
        return text_value(arg);
    s = read_stdin();
    if (!s)
        return NULL;
    v = text_value(s);
    free(s);
    return v;
}

/* Prints v on one line: raw text for a string under --raw, else JSON. */
static void print_value(const ctx *c, json_t *v)
{
    char *s;

    if (c->raw && json_is_string(v)) {
        fwrite(json_string_value(v), 1, json_string_length(v), stdout);
        fputc('\n', stdout);
        return;
    }
    s = json_dumps(v ? v : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
    if (s) {
        puts(s);
        free(s);
    }
}

/* Prints a whole result: indented for humans, compact under --json. */
static void print_object(const ctx *c, json_t *v)
{
    char *s = json_dumps(v, c->json ? JSON_COMPACT | JSON_ENCODE_ANY
                                    : JSON_INDENT(2) | JSON_ENCODE_ANY);

    if (s) {
        puts(s);
        free(s);
    }
}

static void print_int(const char *key, int64_t v, const ctx *c)
{
    if (c->json)
        printf("{\"%s\":%lld}\n", key, (long long)v);
    else
        printf("%lld\n", (long long)v);
}

static void print_bool(const char *key, bool v, const ctx *c)
{
    if (c->json)
        printf("{\"%s\":%s}\n", key, v ? "true" : "false");
    else
        puts(v ? "true" : "false");
}

/* Under --json prints {"value":v,key:flag}; else v when flag is set. */
static void print_flagged(const ctx *c, json_t *v, const char *key,
                          bool flag)
{
    if (c->json) {
        json_t *o = json_pack("{s:O?, s:b}", "value", v, key, flag);
        print_object(c, o);
        json_decref(o);
    } else if (flag) {
        print_value(c, v);
    }
}

/* The tail of a command whose answer is one object: returns fail() when
 * rc < 0, else prints res and drops it (steals res on success only; on
 * failure the library handed back nothing). */
static int end_object(const ctx *c, int rc, json_t *res)
{
    if (rc < 0)
        return fail(c, rc);
    print_object(c, res);
    json_decref(res);
    return 0;
}

/* The tail of a command whose answer is one integer *v (read only when
 * rc >= 0): returns fail() when rc < 0, else prints it under key. */
static int end_int(const ctx *c, int rc, const char *key, const int64_t *v)
{
    if (rc < 0)
        return fail(c, rc);
    print_int(key, *v, c);
    return 0;
}

/* The tail of a command whose answer is rc == 1: returns fail() when
 * rc < 0, else prints the flag under key and returns EXIT_OK when it is
 * set, if_false when not. */
static int end_bool(const ctx *c, int rc, const char *key, int if_false)
{
    if (rc < 0)
        return fail(c, rc);
    print_bool(key, rc == 1, c);
    return rc == 1 ? EXIT_OK : if_false;
}

/* The tail of a command that may find a value: returns fail() when
 * rc < 0, else prints v flagged with key (see print_flagged), drops it
 * (steals v on success only) and returns EXIT_OK when found, else
 * EXIT_CLOSED. */
static int end_flagged(const ctx *c, int rc, json_t *v, const char *key)
{
    if (rc < 0)
        return fail(c, rc);
    print_flagged(c, v, key, rc == 1);
    json_decref(v);
    return rc == 1 ? EXIT_OK : EXIT_CLOSED;
}

/* Under --json prints {key:v}; v is borrowed. */
static void print_wrapped(const ctx *c, const char *key, json_t *v)
{
    json_t *o = json_pack("{s:O}", key, v);

    print_object(c, o);
    json_decref(o);
}

/* Reads a VALUE argument into *v (a new reference).  Returns 0, or the
 * usage error's exit code with *v NULL. */
static int read_value(const ctx *c, const char *arg, json_t **v)
{
    *v = arg_value(arg);
    return *v ? 0 : usage_error(c, "cannot read the value");
}

/* Reads a DURATION argument (>= 0) into *ms.  Returns 0, or the usage
 * error's exit code. */
static int read_duration(const ctx *c, const char *arg, int64_t *ms)
{
    if (parse_duration(arg, ms) < 0 || *ms < 0)
        return usage_error(c, "bad duration '%s'", arg);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Running a command while holding something                          */
/* ------------------------------------------------------------------ */

static volatile sig_atomic_t child_pid;

/* Passes a termination request on to the command: chanctl itself stays
 * until the command has exited, so the lock is held exactly as long. */
static void forward_signal(int sig)
{
    if (child_pid > 0)
        kill((pid_t)child_pid, sig);
}

/* Runs argv as a child and returns its exit status the shell's way
 * (128 + signal when killed, 127 when it cannot be started).  Like
 * system(3), the parent ignores SIGINT and SIGQUIT while it waits (the
 * terminal sends them to the child too) and forwards SIGTERM and SIGHUP:
 * whatever ends the command, chanctl outlives it and only then lets go. */
static int run_child(char **argv, int64_t token)
{
    struct sigaction ign = { .sa_handler = SIG_IGN }, fwd = { 0 };
    struct sigaction old_int, old_quit, old_term, old_hup;
    pid_t pid;
    int status, ret;

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
        fprintf(stderr, "%s: fork: %s\n", prog, strerror(errno));
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
        fprintf(stderr, "%s: %s: %s\n", prog, argv[0], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    child_pid = pid;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "%s: waitpid: %s\n", prog, strerror(errno));
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

/* ------------------------------------------------------------------ */
/* Commands: session and channels                                     */
/* ------------------------------------------------------------------ */

static int c_ping(ctx *c, int argc, char **argv)
{
    int rc = chand_ping(c->conn);

    (void)argc;
    (void)argv;
    if (rc < 0)
        return fail(c, rc);
    if (c->json)
        puts("{}");
    else
        puts("pong");
    return 0;
}

static int c_hello(ctx *c, int argc, char **argv)
{
    json_t *res = NULL;
    int rc = chand_hello(c->conn, &res);

    (void)argc;
    (void)argv;
    return end_object(c, rc, res);
}

static int c_call(ctx *c, int argc, char **argv)
{
    json_t *params = NULL, *res = NULL;
    int rc;

    if (argc > 1) {
        params = arg_value(argv[1]);
        if (!json_is_object(params)) {
            json_decref(params);
            return usage_error(c, "PARAMS must be a JSON object");
        }
    }
    rc = chand_call(c->conn, argv[0], params, c->timeout_ms, &res);
    json_decref(params);
    return end_object(c, rc, res);
}

static int c_make(ctx *c, int argc, char **argv)
{
    int64_t cap = c->cap;
    int rc;

    if (argc > 1 && parse_int(argv[1], &cap) < 0)
        return usage_error(c, "bad capacity '%s'", argv[1]);
    if (cap < 0)
        return usage_error(c, "capacity must be >= 0");
    rc = chand_make(c->conn, argv[0], cap, c->type);
    return rc < 0 ? fail(c, rc) : 0;
}

/* Sends each line of stdin as one value, in order. */
static int send_lines(ctx *c, const char *name)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;

    while ((n = getline(&line, &cap, stdin)) >= 0) {
        json_t *v;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        v = text_value(line);
        if (!v) {
            rc = CHAND_ENOMEM;
            break;
        }
        rc = chand_send(c->conn, name, v, c->timeout_ms);
        json_decref(v);
        if (rc < 0)
            break;
    }
    free(line);
    return rc < 0 ? fail(c, rc) : 0;
}

static int c_send(ctx *c, int argc, char **argv)
{
    json_t *v;
    int rc;

    (void)argc;
    if (strcmp(argv[1], "-") == 0)
        return send_lines(c, argv[0]);
    v = text_value(argv[1]);
    if (!v)
        return usage_error(c, "cannot make a value of '%s'", argv[1]);
    rc = chand_send(c->conn, argv[0], v, c->timeout_ms);
    json_decref(v);
    return rc < 0 ? fail(c, rc) : 0;
}

static int c_recv(ctx *c, int argc, char **argv)
{
    json_t *v = NULL;
    int rc = chand_recv(c->conn, argv[0], c->timeout_ms, &v);

    (void)argc;
    if (rc < 0)
        return fail(c, rc);
    print_flagged(c, v, "ok", rc == 1);
    json_decref(v);
    if (rc == 0 && !c->json)
        fprintf(stderr, "%s: recv: channel %s is closed\n", prog, argv[0]);
    return rc == 1 ? EXIT_OK : EXIT_CLOSED;
}

static int c_range(ctx *c, int argc, char **argv)
{
    (void)argc;
    for (;;) {
        json_t *v = NULL;
        int rc = chand_recv(c->conn, argv[0], c->timeout_ms, &v);

        if (rc < 0)
            return fail(c, rc);
        if (rc == 0) {
            json_decref(v);
            return EXIT_OK; /* range ends when the channel is closed */
        }
        print_value(c, v);
        json_decref(v);
        /* A consumer downstream in a pipe sees each value at once; one
         * that went away (`| head -1`) must stop us before we take more
         * values off the channel for nobody. */
        if (fflush(stdout) != 0 || ferror(stdout)) {
            if (errno == EPIPE)
                return 128 + SIGPIPE; /* as if killed by it, quietly */
            fprintf(stderr, "%s: range: stdout: %s\n", prog,
                    strerror(errno));
            return EXIT_SERVER;
        }
    }
}

/* Runs a command that takes only an object name and answers nothing but
 * success: returns 0 or fail(). */
typedef int (*name_fn)(chand_conn *, const char *);
static int do_name(ctx *c, name_fn fn, const char *name)
{
    int rc = fn(c->conn, name);

    return rc < 0 ? fail(c, rc) : 0;
}

static int c_close(ctx *c, int argc, char **argv)
{
    (void)argc;
    return do_name(c, chand_close, argv[0]);
}

static int c_len(ctx *c, int argc, char **argv)
{
    int64_t len, cap;
    int rc = chand_len(c->conn, argv[0], &len, &cap);

    (void)argc;
    if (rc < 0)
        return fail(c, rc);
    if (c->json)
        printf("{\"len\":%lld,\"cap\":%lld}\n", (long long)len,
               (long long)cap);
    else
        printf("%lld %lld\n", (long long)len, (long long)cap);
    return 0;
}

static int c_drop(ctx *c, int argc, char **argv)
{
    (void)argc;
    return do_name(c, chand_drop, argv[0]);
}

static int c_list(ctx *c, int argc, char **argv)
{
    json_t *objs, *o;
    size_t i;
    int rc = chand_list(c->conn, argc ? argv[0] : NULL, &objs);

    if (rc < 0)
        return fail(c, rc);
    if (c->json) {
        print_wrapped(c, "objects", objs);
    } else {
        /* One object a line: name, type, then what else the server says. */
        json_array_foreach(objs, i, o)
        {
            json_t *rest = json_copy(o);
            const char *name = json_string_value(json_object_get(o, "name"));
            const char *type = json_string_value(json_object_get(o, "type"));
            char *s;

            json_object_del(rest, "name");
            json_object_del(rest, "type");
            s = json_dumps(rest, JSON_COMPACT | JSON_SORT_KEYS);
            printf("%s\t%s\t%s\n", name ? name : "?", type ? type : "?",
                   s ? s : "");
            free(s);
            json_decref(rest);
        }
    }
    json_decref(objs);
    return 0;
}

static int c_select(ctx *c, int argc, char **argv)
{
    chand_case *cases = calloc((size_t)argc, sizeof *cases);
    json_t *v = NULL;
    bool ok = false;
    int index = -1, rc, i, ret;

    if (!cases)
        return fail(c, CHAND_ENOMEM);
    for (i = 0; i < argc; i++) {
        char *a = argv[i];
        if (strncmp(a, "recv:", 5) == 0 && a[5]) {
            cases[i].dir = CHAND_RECV;
            cases[i].name = a + 5;
        } else if (strncmp(a, "send:", 5) == 0 && strchr(a + 5, '=') &&
                   a[5] != '=') {
            char *eq = strchr(a + 5, '=');
            *eq = '\0';
            cases[i].dir = CHAND_SEND;
            cases[i].name = a + 5;
            cases[i].value = arg_value(eq + 1);
            if (!cases[i].value) {
                ret = usage_error(c, "bad value in '%s'", a);
                goto out;
            }
        } else {
            ret = usage_error(c, "bad case '%s' (recv:NAME or "
                                 "send:NAME=VALUE)",
                              a);
            goto out;
        }
    }
    rc = chand_select(c->conn, cases, (size_t)argc, c->dflt, c->timeout_ms,
                      &index, &v, &ok);
    if (rc < 0) {
        ret = fail(c, rc);
        goto out;
    }
    ret = EXIT_OK;
    if (c->json) {
        json_t *o = json_pack("{s:i}", "index", index);
        if (index >= 0 && cases[index].dir == CHAND_RECV) {
            json_object_set(o, "value", v ? v : json_null());
            json_object_set_new(o, "ok", json_boolean(ok));
        }
        print_object(c, o);
        json_decref(o);
    } else if (index >= 0 && cases[index].dir == CHAND_RECV && ok) {
        printf("%d\t", index);
        print_value(c, v);
    } else {
        printf("%d\n", index);
    }
    /* A receive case that found its channel closed is "closed", as recv. */
    if (index >= 0 && cases[index].dir == CHAND_RECV && !ok)
        ret = EXIT_CLOSED;
out:
    for (i = 0; i < argc; i++)
        json_decref(cases[i].value);
    json_decref(v);
    free(cases);
    return ret;
}

/* ------------------------------------------------------------------ */
/* Commands: locks                                                    */
/* ------------------------------------------------------------------ */

typedef int (*lock_fn)(chand_conn *, const char *, int64_t, int64_t,
                       int64_t *, bool *);
typedef int (*unlock_fn)(chand_conn *, const char *, int64_t);

static int do_lock(ctx *c, lock_fn fn, const char *name)
{
    int64_t token;
    bool dead = false;
    int rc = fn(c->conn, name, c->timeout_ms, c->lease_ms, &token, &dead);

    if (rc < 0)
        return fail(c, rc);
    if (c->lease_ms <= 0)
        fprintf(stderr,
                "%s: warning: the lock is released when chanctl exits; "
                "use --lease DUR to keep it\n",
                prog);
    if (c->json)
        printf("{\"token\":%lld,\"owner_dead\":%s}\n", (long long)token,
               dead ? "true" : "false");
    else
        printf("%lld\n", (long long)token);
    return 0;
}

static int do_unlock(ctx *c, unlock_fn fn, const char *name)
{
    int rc = fn(c->conn, name, c->token);

    return rc < 0 ? fail(c, rc) : 0;
}

/* Holds the lock exactly while the command runs; the lock belongs to this
 * session, so it is released even if chanctl is killed. */
static int do_run(ctx *c, lock_fn lock, unlock_fn unlock, const char *name)
{
    int64_t token;
    bool dead;
    int rc, status;

    if (!c->cmdv || !c->cmdv[0])
        return usage_error(c, "missing -- COMMAND");
    rc = lock(c->conn, name, c->timeout_ms, c->lease_ms, &token, &dead);
    if (rc < 0)
        return fail(c, rc);
    status = run_child(c->cmdv, token);
    rc = unlock(c->conn, name, token);
    if (rc < 0) {
        fail(c, rc);
        /* The command's status wins, unless it succeeded. */
        if (status == 0)
            status = exit_code(rc);
    }
    return status;
}

static int c_mutex_lock(ctx *c, int argc, char **argv)
{
    (void)argc;
    return do_lock(c, chand_mutex_lock, argv[0]);
}

static int c_mutex_unlock(ctx *c, int argc, char **argv)
{
    (void)argc;
    return do_unlock(c, chand_mutex_unlock, argv[0]);
}

static int c_mutex_run(ctx *c, int argc, char **argv)
{
    (void)argc;
    return do_run(c, chand_mutex_lock, chand_mutex_unlock, argv[0]);
}

static int c_rw_lock(ctx *c, int argc, char **argv)
{
    (void)argc;
    return do_lock(c, chand_rwmutex_lock, argv[0]);
}

static int c_rw_unlock(ctx *c, int argc, char **argv)
{
    (void)argc;
    return do_unlock(c, chand_rwmutex_unlock, argv[0]);
}

static int c_rw_rlock(ctx *c, int argc, char **argv)
{
    (void)argc;
    return do_lock(c, chand_rwmutex_rlock, argv[0]);
}

static int c_rw_runlock(ctx *c, int argc, char **argv)
{
    (void)argc;
    return do_unlock(c, chand_rwmutex_runlock, argv[0]);
}

static int c_rw_run(ctx *c, int argc, char **argv)
{
    (void)argc;
    if (c->read)
        return do_run(c, chand_rwmutex_rlock, chand_rwmutex_runlock,
                      argv[0]);
    return do_run(c, chand_rwmutex_lock, chand_rwmutex_unlock, argv[0]);
}

/* ------------------------------------------------------------------ */
/* Commands: WaitGroup, Once, Cond, Pool                              */
/* ------------------------------------------------------------------ */

static int c_wg_add(ctx *c, int argc, char **argv)
{
    int64_t delta = 1, count;
    int rc;

    if (argc > 1 && parse_int(argv[1], &delta) < 0)
        return usage_error(c, "bad delta '%s'", argv[1]);
    rc = chand_wg_add(c->conn, argv[0], delta, &count);
    return end_int(c, rc, "count", &count);
}

static int c_wg_done(ctx *c, int argc, char **argv)
{
    int64_t count;
    int rc = chand_wg_done(c->conn, argv[0], &count);

    (void)argc;
    return end_int(c, rc, "count", &count);
}

static int c_wg_wait(ctx *c, int argc, char **argv)
{
    int rc = chand_wg_wait(c->conn, argv[0], c->timeout_ms);

    (void)argc;
    return rc < 0 ? fail(c, rc) : 0;
}

static int c_once_do(ctx *c, int argc, char **argv)
{
    int rc, status;

    (void)argc;
    if (!c->cmdv || !c->cmdv[0])
        return usage_error(c, "missing -- COMMAND");
    rc = chand_once_do(c->conn, argv[0], c->timeout_ms);
    if (rc < 0)
        return fail(c, rc);
    if (rc == 0)
        return EXIT_OK; /* someone else ran it, and it has finished */
    status = run_child(c->cmdv, -1);
    /* Done whatever the command's status: Go's Once does not retry a
     * function that panicked either. */
    rc = chand_once_done(c->conn, argv[0]);
    if (rc < 0) {
        fail(c, rc);
        if (status == 0)
            status = exit_code(rc);
    }
    return status;
}

static int c_cond_wait(ctx *c, int argc, char **argv)
{
    int64_t token;
    int rc, rc2;

    (void)argc;
    /* A one-shot process holds nothing yet: take the Locker, wait (which
     * releases and re-takes it), and let it go. */
    rc = chand_mutex_lock(c->conn, argv[1], c->timeout_ms, -1, &token, NULL);
    if (rc < 0)
        return fail(c, rc);
    rc = chand_cond_wait(c->conn, argv[0], argv[1], c->timeout_ms, &token);
    rc2 = chand_mutex_unlock(c->conn, argv[1], -1);
    if (rc < 0)
        return fail(c, rc);
    if (rc2 < 0)
        return fail(c, rc2);
    return 0;
}

static int c_cond_signal(ctx *c, int argc, char **argv)
{
    (void)argc;
    return do_name(c, chand_cond_signal, argv[0]);
}

static int c_cond_broadcast(ctx *c, int argc, char **argv)
{
    (void)argc;
    return do_name(c, chand_cond_broadcast, argv[0]);
}

static int c_pool_put(ctx *c, int argc, char **argv)
{
    json_t *v;
    int rc = read_value(c, argv[1], &v);

    (void)argc;
    if (rc)
        return rc;
    rc = chand_pool_put(c->conn, argv[0], v);
    json_decref(v);
    return rc < 0 ? fail(c, rc) : 0;
}

static int c_pool_get(ctx *c, int argc, char **argv)
{
    json_t *v = NULL;
    int rc = chand_pool_get(c->conn, argv[0], &v);

    (void)argc;
    return end_flagged(c, rc, v, "ok");
}

/* ------------------------------------------------------------------ */
/* Commands: Map                                                      */
/* ------------------------------------------------------------------ */

static int c_map_store(ctx *c, int argc, char **argv)
{
    json_t *v;
    int rc = read_value(c, argv[2], &v);

    (void)argc;
    if (rc)
        return rc;
    rc = chand_map_store(c->conn, argv[0], argv[1], v);
    json_decref(v);
    return rc < 0 ? fail(c, rc) : 0;
}

static int c_map_load(ctx *c, int argc, char **argv)
{
    json_t *v = NULL;
    int rc = chand_map_load(c->conn, argv[0], argv[1], &v);

    (void)argc;
    return end_flagged(c, rc, v, "ok");
}

static int c_map_delete(ctx *c, int argc, char **argv)
{
    int rc = chand_map_delete(c->conn, argv[0], argv[1]);

    (void)argc;
    return rc < 0 ? fail(c, rc) : 0;
}

/* Runs a Map command NAME KEY VALUE that stores VALUE and answers the value
 * it found (a new reference in *out, NULL when none).  Under --json prints
 * {out_key: found, "loaded": rc == 1}; else prints the value found when
 * one was loaded, or always when always is set.  Returns 0, a usage error
 * or fail(). */
typedef int (*map_xchg_fn)(chand_conn *, const char *, const char *,
                           json_t *, json_t **);
static int do_map_exchange(ctx *c, char **argv, map_xchg_fn fn,
                           const char *out_key, bool always)
{
    json_t *v, *out = NULL;
    int rc = read_value(c, argv[2], &v);

    if (rc)
        return rc;
    rc = fn(c->conn, argv[0], argv[1], v, &out);
    json_decref(v);
    if (rc < 0)
        return fail(c, rc);
    if (c->json) {
        json_t *o = json_pack("{s:O?, s:b}", out_key, out, "loaded",
                              rc == 1);
        print_object(c, o);
        json_decref(o);
    } else if (always || rc == 1) {
        print_value(c, out);
    }
    json_decref(out);
    return 0;
}

static int c_map_load_or_store(ctx *c, int argc, char **argv)
{
    (void)argc;
    return do_map_exchange(c, argv, chand_map_load_or_store, "value", true);
}

static int c_map_swap(ctx *c, int argc, char **argv)
{
    (void)argc;
    return do_map_exchange(c, argv, chand_map_swap, "previous", false);
}

static int c_map_cas(ctx *c, int argc, char **argv)
{
    json_t *old = arg_value(argv[2]), *nv = arg_value(argv[3]);
    int rc;

    (void)argc;
    if (!old || !nv) {
        json_decref(old);
        json_decref(nv);
        return usage_error(c, "cannot read the values");
    }
    rc = chand_map_compare_and_swap(c->conn, argv[0], argv[1], old, nv);
    json_decref(old);
    json_decref(nv);
    return end_bool(c, rc, "swapped", EXIT_CLOSED);
}

static int c_map_cad(ctx *c, int argc, char **argv)
{
    json_t *old;
    int rc = read_value(c, argv[2], &old);

    (void)argc;
    if (rc)
        return rc;
    rc = chand_map_compare_and_delete(c->conn, argv[0], argv[1], old);
    json_decref(old);
    return end_bool(c, rc, "deleted", EXIT_CLOSED);
}

static int c_map_load_and_delete(ctx *c, int argc, char **argv)
{
    json_t *v = NULL;
    int rc = chand_map_load_and_delete(c->conn, argv[0], argv[1], &v);

    (void)argc;
    return end_flagged(c, rc, v, "loaded");
}

static int c_map_range(ctx *c, int argc, char **argv)
{
    json_t *entries, *v;
    const char *key;
    int rc = chand_map_range(c->conn, argv[0], &entries);

    (void)argc;
    if (rc < 0)
        return fail(c, rc);
    if (c->json) {
        print_wrapped(c, "entries", entries);
    } else {
        json_object_foreach(entries, key, v)
        {
            printf("%s\t", key);
            print_value(c, v);
        }
    }
    json_decref(entries);
    return 0;
}

static int c_map_len(ctx *c, int argc, char **argv)
{
    int64_t len;
    int rc = chand_map_len(c->conn, argv[0], &len);

    (void)argc;
    return end_int(c, rc, "len", &len);
}

static int c_map_clear(ctx *c, int argc, char **argv)
{
    (void)argc;
    return do_name(c, chand_map_clear, argv[0]);
}

/* ------------------------------------------------------------------ */
/* Commands: atomics                                                  */
/* ------------------------------------------------------------------ */

static int c_atomic_load(ctx *c, int argc, char **argv)
{
    int64_t v;
    int rc = chand_atomic_load(c->conn, argv[0], &v);

    (void)argc;
    return end_int(c, rc, "value", &v);
}

static int c_atomic_store(ctx *c, int argc, char **argv)
{
    int64_t v;
    int rc;

    (void)argc;
    if (parse_int(argv[1], &v) < 0)
        return usage_error(c, "bad integer '%s'", argv[1]);
    rc = chand_atomic_store(c->conn, argv[0], v);
    return rc < 0 ? fail(c, rc) : 0;
}

static int c_atomic_add(ctx *c, int argc, char **argv)
{
    int64_t delta = 1, v;
    int rc;

    if (argc > 1 && parse_int(argv[1], &delta) < 0)
        return usage_error(c, "bad integer '%s'", argv[1]);
    rc = chand_atomic_add(c->conn, argv[0], delta, &v);
    return end_int(c, rc, "value", &v);
}

static int c_atomic_swap(ctx *c, int argc, char **argv)
{
    int64_t v, old;
    int rc;

    (void)argc;
    if (parse_int(argv[1], &v) < 0)
        return usage_error(c, "bad integer '%s'", argv[1]);
    rc = chand_atomic_swap(c->conn, argv[0], v, &old);
    return end_int(c, rc, "old", &old);
}

static int c_atomic_cas(ctx *c, int argc, char **argv)
{
    int64_t old, nv;
    int rc;

    (void)argc;
    if (parse_int(argv[1], &old) < 0 || parse_int(argv[2], &nv) < 0)
        return usage_error(c, "OLD and NEW must be integers");
    rc = chand_atomic_compare_and_swap(c->conn, argv[0], old, nv);
    return end_bool(c, rc, "swapped", EXIT_CLOSED);
}

/* ------------------------------------------------------------------ */
/* Commands: timers, goroutines, runtime                              */
/* ------------------------------------------------------------------ */

/* Runs a command NAME DURATION that starts a timer with fn: returns 0, a
 * usage error or fail(). */
typedef int (*timer_fn)(chand_conn *, const char *, int64_t);
static int do_timer(ctx *c, timer_fn fn, char **argv)
{
    int64_t ms;
    int rc = read_duration(c, argv[1], &ms);

    if (rc)
        return rc;
    rc = fn(c->conn, argv[0], ms);
    return rc < 0 ? fail(c, rc) : 0;
}

static int c_after(ctx *c, int argc, char **argv)
{
    (void)argc;
    return do_timer(c, chand_timer_after, argv);
}

static int c_ticker(ctx *c, int argc, char **argv)
{
    (void)argc;
    return do_timer(c, chand_timer_ticker, argv);
}

static int c_stop(ctx *c, int argc, char **argv)
{
    int rc = chand_timer_stop(c->conn, argv[0]);

    (void)argc;
    return end_bool(c, rc, "stopped", EXIT_OK);
}

static int c_reset(ctx *c, int argc, char **argv)
{
    int64_t ms;
    int rc;

    (void)argc;
    rc = read_duration(c, argv[1], &ms);
    if (rc)
        return rc;
    rc = chand_timer_reset(c->conn, argv[0], ms);
    return end_bool(c, rc, "active", EXIT_OK);
}

/* Reads METHOD [PARAMS] into a new params object (or NULL = {}). */
static int inner_params(ctx *c, int argc, char **argv, json_t **params)
{
    *params = NULL;
    if (argc < 1)
        return 0;
    *params = arg_value(argv[0]);
    if (!json_is_object(*params)) {
        json_decref(*params);
        *params = NULL;
        return usage_error(c, "PARAMS must be a JSON object");
    }
    return 0;
}

static int c_afterfunc(ctx *c, int argc, char **argv)
{
    json_t *params;
    int64_t ms;
    char *timer = NULL;
    int rc;

    rc = read_duration(c, argv[0], &ms);
    if (rc)
        return rc;
    rc = inner_params(c, argc - 2, argv + 2, &params);
    if (rc)
        return rc;
    rc = chand_timer_afterfunc(c->conn, ms, argv[1], params, &timer);
    json_decref(params);
    if (rc < 0)
        return fail(c, rc);
    if (c->json) {
        json_t *o = json_pack("{s:s}", "timer", timer);
        print_object(c, o);
        json_decref(o);
    } else {
        puts(timer);
    }
    free(timer);
    return 0;
}

static int c_go(ctx *c, int argc, char **argv)
{
    json_t *params;
    int64_t g;
    int rc = inner_params(c, argc - 1, argv + 1, &params);

    if (rc)
        return rc;
    rc = chand_go(c->conn, argv[0], params, &g);
    json_decref(params);
    return end_int(c, rc, "goroutine", &g);
}

static int c_stats(ctx *c, int argc, char **argv)
{
    json_t *res = NULL;
    int rc = chand_stats(c->conn, &res);

    (void)argc;
    (void)argv;
    return end_object(c, rc, res);
}

static int c_dump(ctx *c, int argc, char **argv)
{
    json_t *res = NULL;
    int rc = chand_dump(c->conn, &res);

    (void)argc;
    (void)argv;
    return end_object(c, rc, res);
}

static int c_gomaxprocs(ctx *c, int argc, char **argv)
{
    int64_t n = 0, prev;
    int rc;

    if (argc > 0 && (parse_int(argv[0], &n) < 0 || n < 1))
        return usage_error(c, "N must be an integer >= 1");
    rc = chand_gomaxprocs(c->conn, n, &prev);
    return end_int(c, rc, "previous", &prev);
}

/* ------------------------------------------------------------------ */
/* The command table and help                                         */
/* ------------------------------------------------------------------ */

#define LOCK_HELP                                                       \
    "Prints the fencing token.  The lock belongs to chanctl's session, "  \
    "which ends when chanctl exits: without --lease the lock is released " \
    "at once.  With --lease DUR it outlives the process for DUR; release " \
    "it with 'unlock NAME --token T'."

static const cmd cmds[] = {
    { NULL, "ping", c_ping, 0, 0, 0, "", "Checks that the server answers." },
    { NULL, "hello", c_hello, 0, 0, 0, "",
      "Prints the server's version and this session's id." },
    { NULL, "call", c_call, 1, 2, 0, "METHOD [PARAMS]",
      "Sends any request (PARAMS a JSON object) and prints its result; "
      "--timeout is carried as timeout_ms for blocking methods." },
    { NULL, "make", c_make, 1, 2, O_CAP | O_TYPE, "NAME [CAP] [--cap N] "
      "[--type T]",
      "Makes channel NAME with a buffer of CAP values (0: unbuffered), "
      "carrying values of type T: any, string, number, bool, object, "
      "array." },
    { NULL, "send", c_send, 2, 2, 0, "NAME VALUE|-",
      "Sends VALUE on channel NAME, waiting for a receiver or buffer room. "
      "VALUE is JSON if it parses as JSON, else a string; '-' sends each "
      "line of stdin as one value.  Exits 1 if the channel is closed." },
    { NULL, "recv", c_recv, 1, 1, 0, "NAME",
      "Receives one value from channel NAME and prints it (JSON; a raw "
      "string with --raw).  Exits 1 when the channel is closed and "
      "drained." },
    { NULL, "range", c_range, 1, 1, 0, "NAME",
      "Receives and prints values, one a line, until channel NAME is "
      "closed (then exits 0).  --timeout applies to each receive." },
    { NULL, "close", c_close, 1, 1, 0, "NAME",
      "Closes channel NAME.  Exits 1 if it was already closed." },
    { NULL, "len", c_len, 1, 1, 0, "NAME",
      "Prints the number of queued values and the capacity: 'LEN CAP'." },
    { NULL, "drop", c_drop, 1, 1, 0, "NAME",
      "Removes object NAME from the server." },
    { NULL, "list", c_list, 0, 1, 0, "[PREFIX]",
      "Lists objects (whose name starts with PREFIX), one a line: name, "
      "type, details." },
    { NULL, "select", c_select, 1, -1, O_DEFAULT,
      "CASE... [--default]",
      "Waits until one case can proceed and performs it.  CASE is "
      "recv:NAME or send:NAME=VALUE.  Prints the index of the case taken "
      "(from 0), and for a receive a tab and the value; with --default "
      "prints -1 when nothing is ready.  Exits 1 when the receive found its "
      "channel closed." },
    { "mutex", "lock", c_mutex_lock, 1, 1, O_LEASE, "NAME [--lease DUR]",
      "Locks mutex NAME.  " LOCK_HELP },
    { "mutex", "unlock", c_mutex_unlock, 1, 1, O_TOKEN, "NAME [--token T]",
      "Unlocks mutex NAME (a lease-held lock needs its --token)." },
    { "mutex", "run", c_mutex_run, 1, 1, O_CMD | O_LEASE,
      "NAME -- COMMAND [ARG...]",
      "Holds mutex NAME exactly while COMMAND runs (as flock(1)) and exits "
      "with COMMAND's status.  COMMAND gets the fencing token in "
      "$CHAND_TOKEN.  SIGTERM and SIGHUP are passed on to COMMAND, and "
      "chanctl lets go only once it has exited.  If chanctl is killed "
      "outright, its session ends and the server releases the lock." },
    { "rwmutex", "lock", c_rw_lock, 1, 1, O_LEASE, "NAME [--lease DUR]",
      "Write-locks rwmutex NAME.  " LOCK_HELP },
    { "rwmutex", "unlock", c_rw_unlock, 1, 1, O_TOKEN, "NAME [--token T]",
      "Write-unlocks rwmutex NAME." },
    { "rwmutex", "rlock", c_rw_rlock, 1, 1, O_LEASE, "NAME [--lease DUR]",
      "Read-locks rwmutex NAME.  " LOCK_HELP },
    { "rwmutex", "runlock", c_rw_runlock, 1, 1, O_TOKEN,
      "NAME [--token T]", "Read-unlocks rwmutex NAME." },
    { "rwmutex", "run", c_rw_run, 1, 1, O_CMD | O_READ | O_LEASE,
      "NAME [--read] -- COMMAND [ARG...]",
      "Holds rwmutex NAME (the read side with --read) while COMMAND runs "
      "and exits with its status." },
    { "wg", "add", c_wg_add, 1, 2, 0, "NAME [DELTA]",
      "Adds DELTA (default 1, may be negative) to WaitGroup NAME and "
      "prints the counter." },
    { "wg", "done", c_wg_done, 1, 1, 0, "NAME",
      "Decrements WaitGroup NAME and prints the counter." },
    { "wg", "wait", c_wg_wait, 1, 1, 0, "NAME",
      "Waits until the counter of WaitGroup NAME is zero." },
    { "once", "do", c_once_do, 1, 1, O_CMD, "NAME -- COMMAND [ARG...]",
      "Runs COMMAND only in the first caller of NAME across all processes "
      "and exits with its status; the others wait until it has finished "
      "and exit 0 without running it." },
    { "cond", "wait", c_cond_wait, 2, 2, 0, "NAME MUTEX",
      "Locks MUTEX, waits for a signal on Cond NAME, and unlocks MUTEX." },
    { "cond", "signal", c_cond_signal, 1, 1, 0, "NAME",
      "Wakes one waiter of Cond NAME." },
    { "cond", "broadcast", c_cond_broadcast, 1, 1, 0, "NAME",
      "Wakes every waiter of Cond NAME." },
    { "pool", "put", c_pool_put, 2, 2, 0, "NAME VALUE|-",
      "Puts VALUE into Pool NAME." },
    { "pool", "get", c_pool_get, 1, 1, 0, "NAME",
      "Takes a value from Pool NAME and prints it; exits 1 when empty." },
    { "map", "store", c_map_store, 3, 3, 0, "NAME KEY VALUE|-",
      "Stores VALUE under KEY in Map NAME." },
    { "map", "load", c_map_load, 2, 2, 0, "NAME KEY",
      "Prints the value of KEY; exits 1 when KEY is absent." },
    { "map", "delete", c_map_delete, 2, 2, 0, "NAME KEY", "Deletes KEY." },
    { "map", "load-or-store", c_map_load_or_store, 3, 3, 0,
      "NAME KEY VALUE|-",
      "Prints the value of KEY, storing VALUE first when KEY is absent." },
    { "map", "load-and-delete", c_map_load_and_delete, 2, 2, 0, "NAME KEY",
      "Deletes KEY and prints its value; exits 1 when KEY was absent." },
    { "map", "swap", c_map_swap, 3, 3, 0, "NAME KEY VALUE|-",
      "Stores VALUE under KEY and prints the previous value, if any." },
    { "map", "cas", c_map_cas, 4, 4, 0, "NAME KEY OLD NEW",
      "Stores NEW under KEY if it holds OLD; prints true/false and exits "
      "1 when not swapped." },
    { "map", "cad", c_map_cad, 3, 3, 0, "NAME KEY OLD",
      "Deletes KEY if it holds OLD; prints true/false and exits 1 when "
      "not deleted." },
    { "map", "range", c_map_range, 1, 1, 0, "NAME",
      "Prints every entry, one a line: KEY, a tab, the value." },
    { "map", "len", c_map_len, 1, 1, 0, "NAME",
      "Prints the number of entries." },
    { "map", "clear", c_map_clear, 1, 1, 0, "NAME",
      "Deletes every entry." },
    { "atomic", "load", c_atomic_load, 1, 1, 0, "NAME",
      "Prints the int64 counter NAME." },
    { "atomic", "store", c_atomic_store, 2, 2, 0, "NAME N",
      "Sets counter NAME to N." },
    { "atomic", "add", c_atomic_add, 1, 2, 0, "NAME [DELTA]",
      "Adds DELTA (default 1, may be negative) and prints the new value." },
    { "atomic", "swap", c_atomic_swap, 2, 2, 0, "NAME N",
      "Sets counter NAME to N and prints the old value." },
    { "atomic", "cas", c_atomic_cas, 3, 3, 0, "NAME OLD NEW",
      "Sets counter NAME to NEW if it is OLD; prints true/false and exits "
      "1 when not swapped." },
    { NULL, "after", c_after, 2, 2, 0, "NAME DUR",
      "Makes channel NAME that receives one value (the time it fired) "
      "after DUR." },
    { NULL, "ticker", c_ticker, 2, 2, 0, "NAME DUR",
      "Makes channel NAME that receives a tick every DUR until stopped." },
    { NULL, "stop", c_stop, 1, 1, 0, "NAME",
      "Stops timer or ticker NAME; prints whether it was still pending." },
    { NULL, "reset", c_reset, 2, 2, 0, "NAME DUR",
      "Re-arms timer or ticker NAME for DUR; prints whether it was "
      "pending." },
    { NULL, "afterfunc", c_afterfunc, 2, 3, 0, "DUR METHOD [PARAMS]",
      "Runs request METHOD PARAMS on the server after DUR; prints the "
      "timer's name (for stop)." },
    { NULL, "go", c_go, 1, 2, 0, "METHOD [PARAMS]",
      "Runs request METHOD PARAMS in a new server goroutine; prints its "
      "id." },
    { NULL, "stats", c_stats, 0, 0, 0, "", "Prints the runtime's stats." },
    { NULL, "dump", c_dump, 0, 0, 0, "",
      "Prints every object with its holders and waiters." },
    { NULL, "gomaxprocs", c_gomaxprocs, 0, 1, 0, "[N]",
      "Sets GOMAXPROCS to N (or only reads it); prints the previous "
      "value." },
};
#define NCMDS (sizeof cmds / sizeof cmds[0])

static const char *exit_help =
    "Exit status:\n"
    "  0    ok\n"
    "  1    closed: recv on a closed and drained channel, send or close on "
    "a closed\n"
    "       channel; or nothing there: pool empty, map key absent, cas "
    "failed\n"
    "  2    usage error\n"
    "  3    other error answered by the server\n"
    "  4    cannot connect, or the connection was lost\n"
    "  124  timeout (as timeout(1))\n"
    "  N    mutex run / rwmutex run / once do: the command's status\n";

static const char *opt_help =
    "Options (anywhere before --):\n"
    "  -s, --server HOST:PORT  server address (env CHAND_SERVER; default "
    "127.0.0.1:2426)\n"
    "  -t, --timeout DUR       give up waiting after DUR (env "
    "CHAND_TIMEOUT; default inf)\n"
    "                          DUR: 500ms, 5s, 1.5m, 2h, a number of "
    "seconds, 0, inf\n"
    "      --json              print results as JSON objects, one a line\n"
    "      --raw               print string values without JSON quotes\n"
    "  -h, --help              this help (also after any command)\n"
    "  -V, --version           print the version\n";

static void print_cmd_line(const cmd *k)
{
    char buf[64];

    snprintf(buf, sizeof buf, "%s%s%s", k->group ? k->group : "",
             k->group ? " " : "", k->name);
    printf("  %-22s %s\n", buf, k->usage);
}

static void help_main(void)
{
    printf("Usage: %s [OPTIONS] COMMAND [ARGS]\n\n"
           "Go's concurrency primitives on a chand server, from the shell.\n"
           "Values: an argument that parses as JSON is that value; anything "
           "else is a string.\n\nCommands:\n",
           prog);
    for (size_t i = 0; i < NCMDS; i++)
        print_cmd_line(&cmds[i]);
    printf("\n%s\n%s\nSee '%s COMMAND --help' and chanctl(1).\n", opt_help,
           exit_help, prog);
}

static void help_group(const char *group)
{
    printf("Usage: %s [OPTIONS] %s SUBCOMMAND ARGS\n\n", prog, group);
    for (size_t i = 0; i < NCMDS; i++)
        if (cmds[i].group && strcmp(cmds[i].group, group) == 0)
            print_cmd_line(&cmds[i]);
    printf("\n%s\n%s", opt_help, exit_help);
}

static void help_cmd(const cmd *k)
{
    const char *h = k->help;

    printf("Usage: %s [OPTIONS] %s%s%s %s\n\n", prog,
           k->group ? k->group : "", k->group ? " " : "", k->name, k->usage);
    /* Wrap the description at 76 columns. */
    while (*h) {
        size_t n = strlen(h), cut = n;
        if (n > 76) {
            cut = 76;
            while (cut > 0 && h[cut] != ' ')
                cut--;
            if (cut == 0)
                cut = 76;
        }
        printf("%.*s\n", (int)cut, h);
        h += cut;
        while (*h == ' ')
            h++;
    }
    printf("\n%s\n%s", opt_help, exit_help);
}

static const cmd *find_cmd(const char *group, const char *name)
{
    for (size_t i = 0; i < NCMDS; i++) {
        const cmd *k = &cmds[i];
        if (group ? (k->group && strcmp(k->group, group) == 0)
                  : k->group == NULL)
            if (name && strcmp(k->name, name) == 0)
                return k;
    }
    return NULL;
}

static bool is_group(const char *s)
{
    for (size_t i = 0; i < NCMDS; i++)
        if (cmds[i].group && strcmp(cmds[i].group, s) == 0)
            return true;
    return false;
}

/* ------------------------------------------------------------------ */
/* main: options, then the command                                    */
/* ------------------------------------------------------------------ */

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

int main(int argc, char **argv)
{
    ctx c = { .timeout_ms = CHAND_FOREVER, .lease_ms = -1, .token = -1 };
    char **pos = calloc((size_t)argc + 1, sizeof *pos);
    const char *env, *timeout_arg = NULL, *server_arg = NULL;
    unsigned used = 0;
    bool help = false;
    int npos = 0, ret = EXIT_USAGE, first;
    const cmd *k;
    char *host = NULL;
    int port;
    chand_error err;

    if (!pos)
        return EXIT_SERVER;
    /* A reader that went away (`chanctl range q | head -1`) ends us
     * quietly through EPIPE on stdout instead of a signal. */
    signal(SIGPIPE, SIG_IGN);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        size_t n;

        if (strcmp(a, "--") == 0) {
            c.cmdv = argv + i + 1;
            break;
        }
        if (!is_option(a)) {
            pos[npos++] = argv[i];
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            help = true;
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("chanctl %s (protocol %d)\n", chand_version(),
                   CHAND_PROTOCOL_VERSION);
            free(pos);
            return EXIT_OK;
        } else if (strcmp(a, "--json") == 0) {
            c.json = true;
        } else if (strcmp(a, "--raw") == 0) {
            c.raw = true;
        } else if (strcmp(a, "--default") == 0) {
            c.dflt = true;
            used |= O_DEFAULT;
        } else if (strcmp(a, "--read") == 0) {
            c.read = true;
            used |= O_READ;
        } else if ((n = opt_match(a, "-s", "--server"))) {
            if (!(server_arg = opt_value(argv, argc, &i, n)))
                goto out_missing;
        } else if ((n = opt_match(a, "-t", "--timeout"))) {
            if (!(timeout_arg = opt_value(argv, argc, &i, n)))
                goto out_missing;
        } else if ((n = opt_match(a, NULL, "--lease"))) {
            used |= O_LEASE;
            if (!(v = opt_value(argv, argc, &i, n)))
                goto out_missing;
            if (parse_duration(v, &c.lease_ms) < 0) {
                ret = usage_error(NULL, "bad duration '%s'", v);
                goto out;
            }
        } else if ((n = opt_match(a, NULL, "--token"))) {
            used |= O_TOKEN;
            if (!(v = opt_value(argv, argc, &i, n)))
                goto out_missing;
            if (parse_int(v, &c.token) < 0 || c.token < 0) {
                ret = usage_error(NULL, "bad token '%s'", v);
                goto out;
            }
        } else if ((n = opt_match(a, NULL, "--cap"))) {
            used |= O_CAP;
            if (!(v = opt_value(argv, argc, &i, n)))
                goto out_missing;
            if (parse_int(v, &c.cap) < 0 || c.cap < 0) {
                ret = usage_error(NULL, "bad capacity '%s'", v);
                goto out;
            }
        } else if ((n = opt_match(a, NULL, "--type"))) {
            used |= O_TYPE;
            if (!(c.type = opt_value(argv, argc, &i, n)))
                goto out_missing;
        } else {
            ret = usage_error(NULL, "unknown option '%s'", a);
            goto out;
        }
        continue;
    out_missing:
        ret = usage_error(NULL, "option '%s' needs a value", a);
        goto out;
    }
    if (c.cmdv)
        used |= O_CMD;

    /* Which command: a group takes the next word as its subcommand. */
    if (npos == 0 || strcmp(pos[0], "help") == 0) {
        if (npos > 1 && strcmp(pos[0], "help") == 0) {
            k = find_cmd(is_group(pos[1]) ? pos[1] : NULL,
                         is_group(pos[1]) ? (npos > 2 ? pos[2] : NULL)
                                          : pos[1]);
            if (k)
                help_cmd(k);
            else if (is_group(pos[1]))
                help_group(pos[1]);
            else
                goto out_unknown;
            ret = EXIT_OK;
            goto out;
        }
        if (help || npos > 0) {
            help_main();
            ret = EXIT_OK;
        } else {
            ret = usage_error(NULL, "missing COMMAND");
        }
        goto out;
    }
    if (is_group(pos[0])) {
        k = npos > 1 ? find_cmd(pos[0], pos[1]) : NULL;
        if (!k) {
            if (help && npos == 1) {
                help_group(pos[0]);
                ret = EXIT_OK;
            } else if (npos == 1) {
                ret = usage_error(NULL, "%s: missing subcommand", pos[0]);
            } else {
                ret = usage_error(NULL, "%s: unknown subcommand '%s'",
                                  pos[0], pos[1]);
            }
            goto out;
        }
        first = 2;
    } else {
        k = find_cmd(NULL, pos[0]);
        if (!k)
            goto out_unknown;
        first = 1;
    }
    {
        static char name[64];
        snprintf(name, sizeof name, "%s%s%s", k->group ? k->group : "",
                 k->group ? " " : "", k->name);
        c.cmdname = name;
    }
    if (help) {
        help_cmd(k);
        ret = EXIT_OK;
        goto out;
    }
    if (used & ~k->opts) {
        ret = usage_error(&c, "option not valid for this command");
        goto out;
    }
    if ((k->opts & O_CMD) && (!c.cmdv || !c.cmdv[0])) {
        ret = usage_error(&c, "missing -- COMMAND");
        goto out;
    }
    if (npos - first < k->min || (k->max >= 0 && npos - first > k->max)) {
        ret = usage_error(&c, "expected %s", k->usage);
        goto out;
    }

    /* Flag > environment > default. */
    if (!timeout_arg && (env = getenv("CHAND_TIMEOUT")) && *env)
        timeout_arg = env;
    if (timeout_arg && parse_duration(timeout_arg, &c.timeout_ms) < 0) {
        ret = usage_error(NULL, "bad duration '%s'", timeout_arg);
        goto out;
    }
    if (!server_arg && (env = getenv("CHAND_SERVER")) && *env)
        server_arg = env;
    if (!server_arg)
        server_arg = CHAND_DEFAULT_HOST ":2426";
    if (chand_parse_address(server_arg, &host, &port) < 0) {
        ret = usage_error(NULL, "bad server address '%s'", server_arg);
        goto out;
    }
    c.server = server_arg;
    if (chand_connect(host, port, CONNECT_TIMEOUT_MS, &c.conn, &err) < 0) {
        fprintf(stderr, "%s: %s\n", prog, err.message);
        ret = exit_code(err.code);
        goto out;
    }
    ret = k->fn(&c, npos - first, pos + first);
    if (fflush(stdout) != 0 && ret == 0)
        ret = EXIT_SERVER;
    chand_close_conn(c.conn);
    goto out;

out_unknown:
    ret = usage_error(NULL, "unknown command '%s'",
                      npos > 1 && strcmp(pos[0], "help") == 0 ? pos[1]
                                                              : pos[0]);
out:
    free(host);
    free(pos);
    return ret;
}
