/*
 * cli.h - what chanctl's files share: the per-run context, the command
 * table's shape, the documented exit codes, and the helpers every command
 * uses (argument parsing, printing, failing).  Nothing here is a library:
 * the prefix cli_ marks what crosses files inside the one program.
 */
#ifndef CHAND_CLI_H
#define CHAND_CLI_H

#include "chand.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define EXIT_OK 0
#define EXIT_CLOSED 1
#define EXIT_USAGE 2
#define EXIT_SERVER 3
#define EXIT_CONNECT 4
#define EXIT_TIMEOUT 124
/* mutex run / rwmutex run / once do: the hold was lost while the command
 * ran (connection lost, lease expired), and the command was stopped. */
#define EXIT_LOST 125

/* How long connecting (and hello) may take, separate from --timeout
 * (which is about waiting on channels and locks, and is "forever" by
 * default); a shorter --timeout shortens it, to no less than the floor. */
#define CLI_CONNECT_TIMEOUT_MS 5000
#define CLI_CONNECT_FLOOR_MS 1000

/* Options a command may take (bits of cli_cmd.opts). */
enum {
    O_DEFAULT = 1 << 0,   /* --default */
    O_LEASE = 1 << 1,     /* --lease DUR */
    O_TOKEN = 1 << 2,     /* --token N */
    O_CAP = 1 << 3,       /* --cap N */
    O_TYPE = 1 << 4,      /* --type T */
    O_READ = 1 << 5,      /* --read */
    O_CMD = 1 << 6,       /* -- CMD... */
    O_FILE = 1 << 7,      /* --file PATH */
    O_STRING = 1 << 8,    /* --string */
    O_JSONVAL = 1 << 9,   /* --json as "VALUE must be JSON" (send) */
    O_QUIET = 1 << 10,    /* -q, --quiet */
    O_MAKE = 1 << 11,     /* --make CAP */
    O_GRACE = 1 << 12,    /* --grace DUR */
    O_INTERVAL = 1 << 13, /* --interval DUR */
    O_NORAW = 1 << 14,    /* refuses --raw (prints no values) */
    O_ACK = 1 << 15,      /* --ack */
    O_ACKWAIT = 1 << 16,  /* --ack-wait DUR */
    O_MAXN = 1 << 17,     /* --max N */
    O_MAXDELIV = 1 << 18, /* --max-deliver N */
    O_DEADLTR = 1 << 19,  /* --dead-letter NAME */
    O_DELAY = 1 << 20,    /* --delay DUR */
    O_REASON = 1 << 21,   /* --reason TEXT */
};

/* How a VALUE argument becomes JSON (send, pool put, map store...). */
typedef enum {
    CLI_VAL_AUTO,   /* JSON if it parses as JSON, else a string */
    CLI_VAL_STRING, /* always a string (--string) */
    CLI_VAL_JSON,   /* must be JSON (send --json) */
} cli_valmode;

typedef struct cli_ctx {
    chand_conn *conn;
    const char *server;
    int64_t timeout_ms; /* CHAND_FOREVER unless --timeout */
    bool json, raw, dflt, read, quiet, interactive;
    cli_valmode valmode;
    const char *file; /* send --file PATH ("-": stdin) */
    int64_t lease_ms; /* -1: none */
    int64_t token;    /* -1: none */
    int64_t cap;
    int64_t make_cap;    /* recv --make CAP; -1: none */
    int64_t grace_ms;    /* run: SIGTERM to SIGKILL */
    int64_t interval_ms; /* watch, top: 0 for their default */
    const char *type;
    bool ack;                /* recv, select: --ack */
    int64_t ack_wait_ms;     /* --ack-wait; 0: the server's default */
    int64_t max_n;           /* work --max; -1: no limit */
    int64_t max_deliver;     /* make --max-deliver; 0: unlimited */
    const char *dead_letter; /* make --dead-letter */
    int64_t delay_ms;        /* nack --delay */
    const char *reason;      /* nack, term --reason */
    char **cmdv;             /* after "--", NULL-terminated */
    const char *cmdname;     /* "send", "mutex lock", ... for messages */
} cli_ctx;

typedef int (*cli_name_fn)(chand_conn *, const char *);
typedef int (*cli_lock_fn)(chand_conn *, const char *, int64_t, int64_t,
                           int64_t *, bool *);
typedef int (*cli_unlock_fn)(chand_conn *, const char *, int64_t);
typedef int (*cli_timer_fn)(chand_conn *, const char *, int64_t);
typedef int (*cli_xchg_fn)(chand_conn *, const char *, const char *, json_t *,
                           json_t **);

struct cli_cmd;
typedef int (*cli_handler)(cli_ctx *c, const struct cli_cmd *k, int argc,
                           char **argv);

/* One row of the command table: a command, its arguments, a one-line
 * description, its handler and what the handler is generic over. */
typedef struct cli_cmd {
    const char *group; /* "mutex", ... or NULL */
    const char *name;
    cli_handler fn;
    int min, max; /* positional arguments; max -1: any */
    unsigned opts;
    const char *usage; /* the arguments */
    const char *brief; /* one line for `chanctl --help` */
    const char *help;  /* the paragraph for `chanctl COMMAND --help` */
    /* What a shared handler calls (only the one it needs is set). */
    cli_name_fn byname;
    cli_lock_fn lock;
    cli_unlock_fn unlock;
    cli_timer_fn timer;
    cli_xchg_fn xchg;
    const char *key; /* the JSON key of the answer under --json */
} cli_cmd;

/* The table (cli_table.c), in the order `chanctl --help` lists it. */
extern const cli_cmd cli_cmds[];
extern const size_t cli_ncmds;

/* ---- args.c: durations, numbers, values ---- */

/* Parses a duration in Go's syntax ("1h30m", "1.5s", "300ms", "100us"),
 * or "inf", or a bare number of seconds (as timeout(1)) into milliseconds
 * (CHAND_FOREVER for inf).  Returns 0 or -1. */
int cli_parse_duration(const char *s, int64_t *ms);
/* Parses a base-10 int64.  Returns 0 or -1. */
int cli_parse_int(const char *s, int64_t *out);
/* Returns all of fp in a new malloc'd string (length in *len, NUL-ended),
 * without its final newlines when trim is set; NULL on error. */
char *cli_read_all(FILE *fp, size_t *len, bool trim);
/* Returns a new JSON value for text under mode; NULL when mode is
 * CLI_VAL_JSON and text is not JSON (or out of memory). */
json_t *cli_text_value(const char *s, cli_valmode mode);
/* Returns a new value for an argument ("-" reads stdin); NULL on error. */
json_t *cli_arg_value(const char *arg);

/* ---- out.c: messages, exit codes, printing ---- */

extern const char *cli_prog;

/* Prints a usage error naming the command; returns EXIT_USAGE. */
int cli_usage_error(const cli_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Maps a libchand code to the documented exit code. */
int cli_exit_code(int rc);
/* Reports a failed call on stderr and returns its exit code. */
int cli_fail(const cli_ctx *c, int rc);
/* Prints v on one line: raw text for a string under --raw, else JSON. */
void cli_print_value(const cli_ctx *c, json_t *v);
/* Prints a whole result: indented for humans, compact under --json. */
void cli_print_object(const cli_ctx *c, json_t *v);
/* Under --json prints {"value":v,key:flag}; else v when flag is set. */
void cli_print_flagged(const cli_ctx *c, json_t *v, const char *key, bool flag);
/* Under --json prints {key:v} (v borrowed). */
void cli_print_wrapped(const cli_ctx *c, const char *key, json_t *v);
/* Returns cli_fail() when rc < 0, else prints res and drops it (steals
 * res on success only). */
int cli_end_object(const cli_ctx *c, int rc, json_t *res);
/* Returns cli_fail() when rc < 0, else prints *v under key. */
int cli_end_int(const cli_ctx *c, int rc, const char *key, const int64_t *v);
/* Returns cli_fail() when rc < 0, else prints whether rc == 1 under key
 * and returns EXIT_OK when it is, if_false when not. */
int cli_end_bool(const cli_ctx *c, int rc, const char *key, int if_false);
/* Returns cli_fail() when rc < 0, else prints v flagged with key, drops it
 * (steals v on success only) and returns EXIT_OK when rc == 1, else
 * EXIT_CLOSED. */
int cli_end_flagged(const cli_ctx *c, int rc, json_t *v, const char *key);
/* Returns cli_fail() when rc < 0, else 0: for commands that print
 * nothing on success. */
int cli_end_quiet(const cli_ctx *c, int rc);
/* Reads a VALUE argument into *v (new).  Returns 0, or the usage error's
 * exit code with *v NULL. */
int cli_read_value(const cli_ctx *c, const char *arg, json_t **v);
/* Reads a DURATION argument (>= 0) into *ms.  Returns 0 or EXIT_USAGE. */
int cli_read_duration(const cli_ctx *c, const char *arg, int64_t *ms);

/* ---- main.c and repl.c: running command lines ---- */

/* Runs one command line (argv[0..argc), NULL-terminated, without the
 * program's name): options, command, arguments.  conn NULL connects as
 * -s/CHAND_SERVER say (and with no command on a terminal starts the
 * interactive mode); else runs on conn, the interactive session (borrowed)
 * with server its address, where -s is refused.  Returns the exit code. */
int cli_run_words(int argc, char **argv, chand_conn *conn, const char *server);
/* The interactive mode on conn (borrowed; server names it in the prompt):
 * a prompt with line editing and history until exit, quit or end of
 * input.  Returns the exit code. */
int cli_repl(chand_conn *conn, const char *server);

/* ---- help.c: help texts and "did you mean" ---- */

/* `chanctl --help`: every command in one line, options, exit codes. */
void cli_help_main(void);
/* `chanctl GROUP --help`: the group's subcommands. */
void cli_help_group(const char *group);
/* `chanctl COMMAND --help`: that command only. */
void cli_help_cmd(const cli_cmd *k);
/* Returns the command named group/name (group NULL: top level) or NULL. */
const cli_cmd *cli_find_cmd(const char *group, const char *name);
/* Returns whether s names a group of subcommands. */
bool cli_is_group(const char *s);
/* Returns the closest known command or group to word (under group when
 * given) within a small edit distance, or NULL; borrowed. */
const char *cli_suggest(const char *group, const char *word);

/* ---- run.c: running a command while holding something ---- */

/* Runs c->cmdv as a child while the hold is kept: returns its exit
 * status the shell's way (128 + signal when killed, 127 when it cannot be
 * started), or EXIT_LOST when the hold was lost while it ran and the child
 * was stopped (SIGTERM, then SIGKILL after c->grace_ms).  The hold is
 * lost when the connection is, unless lease_ms > 0: then when the lease,
 * taken at held_since (mono ms), runs out.  token >= 0 goes to the child
 * as $CHAND_TOKEN. */
int cli_run_child(cli_ctx *c, int64_t token, int64_t held_since,
                  int64_t lease_ms);
/* Waits up to ms for child pid to exit.  Returns 1 with *status when it
 * has, 0 when not yet, -1 on error.  SIGCHLD must be blocked in the
 * caller, so that sigtimedwait wakes at once when the child exits. */
int cli_wait_child(pid_t pid, int64_t ms, int *status);
/* Stops child pid because of why (said on stderr): SIGTERM, then SIGKILL
 * when it is still there after c->grace_ms.  Returns once it exited. */
void cli_stop_child(const cli_ctx *c, pid_t pid, const char *why);
/* Returns the monotonic clock in ms. */
int64_t cli_mono_ms(void);

/* ---- dump.c: objects drawn for people ---- */

/* Formats ms as Go prints a duration (500ms, 1.5s, 2m3s) into buf. */
void cli_fmt_ms(int64_t ms, char *buf, size_t n);
/* Prints object o of runtime.dump (borrowed) as a tree: a line for the
 * object, one per holder and one per waiter. */
void cli_dump_object(FILE *fp, json_t *o);
/* Returns a new malloc'd line of o's state without times (length,
 * holders, waiters): it changes only when the object does.  NULL when
 * out of memory. */
char *cli_dump_state(json_t *o);

/* ---- the handlers, by family ----
 * Each runs its table row's command on c->conn with argv[0..argc) the
 * command's arguments (already counted against the row's min and max),
 * prints what the command prints, and returns its exit code. */
int cli_h_ping(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_hello(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_call(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_make(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_send(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_recv(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_range(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_len(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_list(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_select(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_byname(cli_ctx *, const cli_cmd *, int, char **);
int cli_recv_ack(cli_ctx *, const char *name);
int cli_h_ack(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_nack(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_touch(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_term(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_work(cli_ctx *, const cli_cmd *, int, char **);

int cli_h_lock(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_unlock(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_run(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_rw_run(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_wg_add(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_wg_done(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_wg_wait(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_once_do(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_cond_wait(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_pool_put(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_pool_get(cli_ctx *, const cli_cmd *, int, char **);

int cli_h_map_store(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_map_load(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_map_delete(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_map_xchg(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_map_cas(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_map_cad(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_map_load_and_delete(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_map_range(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_map_len(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_atomic_load(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_atomic_store(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_atomic_add(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_atomic_swap(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_atomic_cas(cli_ctx *, const cli_cmd *, int, char **);

int cli_h_timer(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_stop(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_reset(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_afterfunc(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_go(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_stats(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_dump(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_gomaxprocs(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_watch(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_top(cli_ctx *, const cli_cmd *, int, char **);

int cli_h_cluster_status(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_cluster_add(cli_ctx *, const cli_cmd *, int, char **);
int cli_h_cluster_remove(cli_ctx *, const cli_cmd *, int, char **);

#endif /* CHAND_CLI_H */
