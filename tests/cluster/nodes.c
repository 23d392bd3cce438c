/*
 * nodes.c - a local chand cluster for tests/cluster (nodes.h).
 */
#include "nodes.h"

#include "chand.h"

#include "../common/testd.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct nodes {
    int n, election_ms, died;
    pid_t pid[NODES_MAX];
    bool paused[NODES_MAX], crashed[NODES_MAX];
    int cport[NODES_MAX], rport[NODES_MAX];
    char addr[NODES_MAX][32];
    char dir[128];
    char spec[NODES_MAX * 48];
    char list[NODES_MAX * 32];
};

int64_t nodes_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Binds a socket to 127.0.0.1:0 to learn a free port.  The socket is
 * kept open (out) until all ports are picked, so none repeats. */
static int free_port(int *out)
{
    int port, fd = testd_bind_loopback(&port);

    if (fd < 0)
        return -1;
    *out = fd;
    return port;
}

static int spawn(nodes *c, int i)
{
    const char *bin = getenv("CHAND_BIN"), *lvl = getenv("CHAND_TEST_LOG");
    char port[16], id[16], et[16], data[160], log[160];
    pid_t pid;

    if (!bin || !*bin)
        bin = "build/chand";
    if (!lvl || !*lvl)
        lvl = "warn";
    snprintf(port, sizeof port, "%d", c->cport[i]);
    snprintf(id, sizeof id, "%d", i + 1);
    snprintf(et, sizeof et, "%d", c->election_ms);
    snprintf(data, sizeof data, "%s/node%d", c->dir, i + 1);
    snprintf(log, sizeof log, "%s/node%d.log", c->dir, i + 1);
    if (mkdir(data, 0700) < 0 && errno != EEXIST)
        return -1;
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(bin, bin, "--bind", "127.0.0.1", "--port", port, "--cluster",
              c->spec, "--node-id", id, "--data-dir", data,
              "--election-timeout-ms", et, "--log-level", lvl, (char *)NULL);
        _exit(127);
    }
    c->pid[i] = pid;
    c->paused[i] = false;
    return 0;
}

nodes *nodes_start(int n, int election_ms)
{
    nodes *c = calloc(1, sizeof *c);
    int fds[2 * NODES_MAX], nfd = 0;
    size_t off = 0, loff = 0;

    if (!c || n < 1 || n > NODES_MAX) {
        free(c);
        return NULL;
    }
    c->n = n;
    c->election_ms = election_ms;
    snprintf(c->dir, sizeof c->dir, "/tmp/chand-cluster.XXXXXX");
    if (!mkdtemp(c->dir)) {
        free(c);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        c->cport[i] = free_port(&fds[nfd++]);
        c->rport[i] = free_port(&fds[nfd++]);
        if (c->cport[i] < 0 || c->rport[i] < 0) {
            fprintf(stderr, "nodes: no free port\n");
            goto fail;
        }
        snprintf(c->addr[i], sizeof c->addr[i], "127.0.0.1:%d", c->cport[i]);
        off += (size_t)snprintf(c->spec + off, sizeof c->spec - off,
                                "%s%d=127.0.0.1:%d:%d", i ? "," : "", i + 1,
                                c->cport[i], c->rport[i]);
        loff += (size_t)snprintf(c->list + loff, sizeof c->list - loff, "%s%s",
                                 i ? "," : "", c->addr[i]);
    }
    while (nfd > 0)
        close(fds[--nfd]);
    for (int i = 0; i < n; i++)
        if (spawn(c, i) < 0) {
            fprintf(stderr, "nodes: cannot start node %d\n", i + 1);
            goto fail;
        }
    if (nodes_wait_leader(c, nodes_now_ms() + 30000) < 0) {
        fprintf(stderr, "nodes: no leader within 30 s (logs in %s)\n", c->dir);
        nodes_stop(c, true);
        return NULL;
    }
    return c;
fail:
    while (nfd > 0)
        close(fds[--nfd]);
    nodes_stop(c, false);
    return NULL;
}

void nodes_stop(nodes *c, bool keep)
{
    char cmd[200];

    if (!c)
        return;
    for (int i = 0; i < c->n; i++)
        if (c->pid[i] > 0) {
            kill(c->pid[i], SIGKILL);
            waitpid(c->pid[i], NULL, 0);
            c->pid[i] = 0;
        }
    if (keep) {
        fprintf(stderr, "nodes: logs kept in %s\n", c->dir);
    } else {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", c->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "nodes: could not remove %s\n", c->dir);
    }
    free(c);
}

const char *nodes_list(const nodes *c)
{
    return c->list;
}

const char *nodes_addr(const nodes *c, int i)
{
    return c->addr[i];
}

/* Reaps node i if it exited on its own, saying so.  A daemon that dies
 * under the harness is a bug the run must not hide. */
static void reap(nodes *c, int i)
{
    int st;

    if (c->pid[i] <= 0 || waitpid(c->pid[i], &st, WNOHANG) != c->pid[i])
        return;
    if (WIFSIGNALED(st))
        fprintf(
            stderr,
            "nodes: node %d (pid %d) died of signal %d (log %s/node%d.log)\n",
            i + 1, (int)c->pid[i], WTERMSIG(st), c->dir, i + 1);
    else
        fprintf(stderr,
                "nodes: node %d (pid %d) exited with status %d (log "
                "%s/node%d.log)\n",
                i + 1, (int)c->pid[i], WEXITSTATUS(st), c->dir, i + 1);
    c->pid[i] = 0;
    c->paused[i] = false;
    c->crashed[i] = true;
    c->died++;
}

int nodes_revive(nodes *c)
{
    int n = 0;

    nodes_died(c);
    for (int i = 0; i < c->n; i++)
        if (c->crashed[i] && spawn(c, i) == 0) {
            c->crashed[i] = false;
            n++;
        }
    return n;
}

int nodes_died(nodes *c)
{
    for (int i = 0; i < c->n; i++)
        reap(c, i);
    return c->died;
}

/* Asks node i for cluster.status; returns the result (new) or NULL. */
static json_t *status_of(nodes *c, int i)
{
    chand_conn *k = NULL;
    json_t *st = NULL;

    reap(c, i);
    if (c->pid[i] <= 0 || c->paused[i])
        return NULL;
    if (chand_connect("127.0.0.1", c->cport[i], 500, &k, NULL) < 0)
        return NULL;
    if (chand_call(k, "cluster.status", NULL, 0, &st) < 0)
        st = NULL;
    chand_close_conn(k);
    return st;
}

int nodes_leader(nodes *c)
{
    for (int i = 0; i < c->n; i++) {
        json_t *st = status_of(c, i);
        const char *role = json_string_value(json_object_get(st, "role"));
        bool lead = role && !strcmp(role, "leader") &&
                    json_is_true(json_object_get(st, "serving"));

        json_decref(st);
        if (lead)
            return i;
    }
    return -1;
}

int nodes_wait_leader(nodes *c, int64_t deadline_ms)
{
    for (;;) {
        int l = nodes_leader(c);

        if (l >= 0 || nodes_now_ms() >= deadline_ms)
            return l;
        sleep_ms(50);
    }
}

bool nodes_follows(nodes *c, int i, int64_t index)
{
    json_t *st = status_of(c, i);
    bool ok = st && json_integer_value(json_object_get(st, "leader_id")) > 0 &&
              json_integer_value(json_object_get(st, "last_applied")) >= index;

    json_decref(st);
    return ok;
}

int64_t nodes_commit(nodes *c, int i)
{
    json_t *st = status_of(c, i);
    int64_t v =
        st ? json_integer_value(json_object_get(st, "commit_index")) : -1;

    json_decref(st);
    return v;
}

int nodes_kill(nodes *c, int i)
{
    if (c->pid[i] <= 0)
        return -1;
    kill(c->pid[i], SIGKILL);
    waitpid(c->pid[i], NULL, 0);
    c->pid[i] = 0;
    c->paused[i] = false;
    return 0;
}

int nodes_pause(nodes *c, int i)
{
    if (c->pid[i] <= 0 || kill(c->pid[i], SIGSTOP) < 0)
        return -1;
    c->paused[i] = true;
    return 0;
}

int nodes_resume(nodes *c, int i)
{
    if (c->pid[i] <= 0 || kill(c->pid[i], SIGCONT) < 0)
        return -1;
    c->paused[i] = false;
    return 0;
}

int nodes_transfer(nodes *c, int i)
{
    chand_conn *k = NULL;
    json_t *res = NULL, *params;
    int rc;

    if (c->pid[i] <= 0 || c->paused[i])
        return -1;
    if ((params = json_pack("{s:i}", "id", 0)) == NULL)
        return -1;
    if (chand_connect("127.0.0.1", c->cport[i], 500, &k, NULL) < 0) {
        json_decref(params);
        return -1;
    }
    /* The answer rarely comes: the old leader ends its sessions, this one
     * too, as it steps down.  Whether leadership moved shows in who
     * leads next. */
    rc = chand_call(k, "cluster.transfer", params, 5000, &res);
    json_decref(params);
    json_decref(res);
    chand_close_conn(k);
    return rc < 0 && rc != CHAND_ECONN ? -1 : 0;
}

int nodes_restart(nodes *c, int i)
{
    if (c->pid[i] > 0)
        return -1;
    return spawn(c, i);
}

void nodes_describe(nodes *c, FILE *f)
{
    for (int i = 0; i < c->n; i++) {
        json_t *st = status_of(c, i);

        if (st)
            fprintf(
                f,
                "  node %d (pid %d): %s, term %lld, leader %lld, commit "
                "%lld, applied %lld, last index %lld, snapshot %lld, disk "
                "holds %lld, serving %s, raft loop %lld ms ago\n",
                i + 1, (int)c->pid[i],
                json_string_value(json_object_get(st, "role")),
                (long long)json_integer_value(json_object_get(st, "term")),
                (long long)json_integer_value(json_object_get(st, "leader_id")),
                (long long)json_integer_value(
                    json_object_get(st, "commit_index")),
                (long long)json_integer_value(
                    json_object_get(st, "last_applied")),
                (long long)json_integer_value(
                    json_object_get(st, "last_index")),
                (long long)json_integer_value(
                    json_object_get(st, "snapshot_index")),
                (long long)json_integer_value(
                    json_object_get(st, "disk_holds")),
                json_is_true(json_object_get(st, "serving")) ? "yes" : "no",
                (long long)json_integer_value(
                    json_object_get(st, "loop_age_ms")));
        else
            fprintf(f, "  node %d (pid %d): %s\n", i + 1, (int)c->pid[i],
                    c->pid[i] <= 0 ? "down"
                    : c->paused[i] ? "stopped"
                                   : "does not answer cluster.status");
        json_decref(st);
    }
}
