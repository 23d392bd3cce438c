/*
 * conf.h - every setting of the daemon in one struct.
 *
 * Command-line flags, and later a config file, go through conf_set(key,
 * value) so that both share one parser and one set of names.  Keys are the
 * long flag names without "--" ("max-line"); '_' and '-' are equivalent.
 */
#ifndef CHAND_CONF_H
#define CHAND_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define CONF_DEFAULT_PORT 2426
/* Room that max_line keeps above max_value for the rest of a request (the
 * envelope, the method, the name, a map key), so that a value of
 * max_value bytes can be sent: the default max_line is max_value plus it. */
#define CONF_ENVELOPE (64 * 1024)

typedef struct conf {
    char bind[256];       /* address to listen on */
    int port;             /* 0: any free port */
    char port_file[4096]; /* write the bound port here ("" none) */
    char config[4096];    /* config file path ("" none), for later use */
    int gomaxprocs;       /* <= 0: number of CPUs */
    int io_threads;       /* <= 0: one per CPU */
    log_level log_level;
    size_t max_line;   /* bytes of one request line */
    int max_depth;     /* JSON nesting */
    size_t max_value;  /* bytes of one serialised value */
    int max_conns;     /* concurrent connections */
    int max_objects;   /* named objects */
    size_t max_outbuf; /* bytes queued to one slow reader */
    int max_batch;     /* requests in one batch */
    int max_select;    /* cases in one select */
    int fair_batch;    /* requests served per session per loop turn */
    /* Service settings (metrics.c, cfgfile.c, the drain). */
    char metrics_bind[256];       /* address of the metrics HTTP server */
    int metrics_port;             /* 0: no metrics server; -1 ("auto"): any */
    char metrics_port_file[4096]; /* write the metrics port here ("") */
    int shutdown_grace_ms;        /* SIGTERM: longest wait for answers to go */
    /* Durability (persist.c, wal.h). */
    char data_dir[4096];  /* "" : state in memory only */
    int fsync;            /* wal_fsync: 0 no, 1 everysec, 2 always */
    int repair;           /* --repair: repair data_dir and exit */
    size_t compact_floor; /* bytes of log before compaction */
    /* Replication (persist_repl.c, cluster.h, repl.h; issue 19). */
    char cluster[4096];      /* id=host:client_port:raft_port,... ("") */
    char node_id[32];        /* this node's id in cluster */
    int election_timeout_ms; /* raft's; heartbeats every tenth of it */
    int cluster_join;        /* 1: join a running cluster, no bootstrap */
    /* Limits and liveness (issue 16). */
    int tcp_keepalive;  /* s idle before keepalive probes; 0: off */
    size_t max_memory;  /* bytes clients may make the daemon hold */
    int max_goroutines; /* goroutines (parked requests, go, ...) */
    int max_timers;     /* timers, tickers and afterfuncs */
    int min_ticker_ms;  /* shortest ticker period */
    /* Security (security.c, listener.c; issue 17). */
    char unix_socket[4096];   /* listen on this unix socket too ("" none) */
    int unix_socket_mode;     /* its permissions (octal in text) */
    char users_file[4096];    /* users, passwords and rules ("" none) */
    int allow_anonymous;      /* 1: a non-loopback bind without users */
    int auth_timeout_ms;      /* a session must authenticate within it */
    int auth_hash_slots;      /* password hashes at once (0: auto) */
    int auth_hash_queue;      /* attempts waiting for a slot, at most */
    int tls_port;             /* TLS listener port (0: none; -1: any) */
    char tls_port_file[4096]; /* write the TLS port here ("" none) */
    char tls_cert[4096];      /* PEM server certificate (and chain) */
    char tls_key[4096];       /* PEM private key */
    char tls_ca[4096];        /* PEM CAs for client certificates ("") */
} conf;

/* Fills c with the defaults. */
void conf_defaults(conf *c);
/* Sets one key from its text value.  Returns 0, or -1 with a message in
 * err (unknown key, bad value). */
int conf_set(conf *c, const char *key, const char *value, char *err,
             size_t errlen);
/* Returns true when key is a switch (a yes/no setting that takes no value
 * on the command line: `--allow-anonymous`). */
bool conf_key_is_switch(const char *key);
/* Checks the settings together.  Returns NULL when they agree, else a
 * warning in buf (e.g. max_line leaves no room for a max_value value). */
const char *conf_warning(const conf *c, char *buf, size_t n);
/* Writes port to path atomically (temporary file + rename).  Returns 0, or
 * -1 with "<label> <path>: <strerror>" in err. */
int conf_write_port_file(const char *label, const char *path, int port,
                         char *err, size_t errlen);
/* Writes the list of keys, defaults and meanings (for --help). */
void conf_usage(const conf *defaults, void *file);

#endif /* CHAND_CONF_H */
