/*
 * persist_repl_admin.c - the cluster seen from requests (issue 19): the
 * leader's address for not_leader answers, cluster.status, the figures
 * of runtime.stats and /metrics, and membership changes and leadership
 * transfers, which a request waits for on a goroutine.  The node itself
 * (raft, the FSM, leadership) is persist_repl.c's.
 */
#include "persist.h"
#include "repl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int persist_leader(char *addr, size_t len)
{
    repl_node *n = persist__repl_node();
    uint64_t id;

    if (!n)
        return -1;
    if (repl_leader(n, &id, addr, len) != 0 || !addr[0])
        return -1;
    /* This node won but does not serve yet: no one to send clients to. */
    if (id == persist__repl_self_id())
        return -1;
    return 0;
}

json_t *persist_cluster_status(void)
{
    repl_status st;
    char leader[CLUSTER_HOST_MAX + 8] = "";
    json_t *j, *peers;
    repl_node *n = persist__repl_node();

    if (!n)
        return json_null();
    repl_status_get(n, &st);
    persist_leader(leader, sizeof leader);
    peers = json_array();
    for (size_t i = 0; i < st.n_peers && peers; i++)
        json_array_append_new(peers,
                              json_pack("{s:I, s:s, s:b}", "id",
                                        (json_int_t)st.peers[i].id, "address",
                                        st.peers[i].address, "voter",
                                        st.peers[i].voter == 1));
    j = json_pack(
        "{s:I, s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "id",
        (json_int_t)st.id, "role", repl_role_name(st.role), "serving",
        st.serving, "term", (json_int_t)st.term, "commit_index",
        (json_int_t)st.commit_index, "last_applied",
        (json_int_t)st.last_applied, "last_index", (json_int_t)st.last_index,
        "leader_id", (json_int_t)st.leader_id, "fsm_errors",
        (json_int_t)st.fsm_errors, "rebuilds", (json_int_t)persist_kicks(),
        "loop_age_ms",
        (json_int_t)(st.refreshed_ns ? (rt_now() - st.refreshed_ns) / 1000000
                                     : -1),
        "peers", peers ? peers : json_array());
    if (j) {
        json_object_set_new(j, "snapshot_index",
                            json_integer((json_int_t)st.snapshot_index));
        json_object_set_new(j, "snapshot_holds",
                            json_integer((json_int_t)persist__holds()));
        json_object_set_new(j, "read_rounds",
                            json_integer((json_int_t)st.read_rounds));
        json_object_set_new(j, "read_barriers",
                            json_integer((json_int_t)st.read_barriers));
        json_object_set_new(j, "disk_holds",
                            json_integer((json_int_t)st.disk_holds));
    }
    if (j && leader[0])
        json_object_set_new(j, "leader", json_string(leader));
    return j ? j : json_null();
}

void persist_cluster_stats(stats_snap *sn)
{
    repl_status st;

    repl_node *n = persist__repl_node();

    sn->cluster = n != NULL;
    if (!n)
        return;
    repl_status_get(n, &st);
    sn->raft_role = (int)st.role;
    sn->raft_term = (int64_t)st.term;
    sn->raft_commit = (int64_t)st.commit_index;
    sn->raft_peers = (int64_t)st.n_peers;
    sn->raft_leader = (int64_t)st.leader_id;
    sn->raft_rebuilds = (int64_t)persist_kicks();
}

/* Membership and transfer: the request waits on a goroutine for the
 * completion, which repl_drain runs on an I/O thread and which hands the
 * outcome over through a one-slot runtime channel (two refs: one each). */
typedef struct pr_outcome {
    int status;
    uint64_t index;
} pr_outcome;

typedef struct pr_change {
    int what; /* 0 add, 1 remove, 2 transfer */
    uint64_t id;
    char raft[CLUSTER_HOST_MAX + 8], client[CLUSTER_HOST_MAX + 8];
} pr_change;

static void pr_change_done(void *arg, int status, uint64_t index)
{
    rt_chan *c = arg;
    pr_outcome o = {status, index};

    rt_chan_send(c, &o, RT_POLL); /* one slot, one send: never waits */
    rt_chan_release(c);
}

static void pr_change_run(dreq *r)
{
    pr_change *ch = r->ctx;
    rt_chan *c = rt_chan_make(sizeof(pr_outcome), 1);
    pr_outcome o = {0};
    bool ok = false;
    int rc = -ENOMEM;

    r->ctx = NULL;
    repl_node *n = persist__repl_node();

    if (c && n) {
        rt_chan_retain(c); /* the completion's */
        if (ch->what == 0)
            rc = repl_add(n, ch->id, ch->raft,
                          ch->client[0] ? ch->client : NULL, pr_change_done, c);
        else if (ch->what == 1)
            rc = repl_remove(n, ch->id, pr_change_done, c);
        else
            rc = repl_transfer(n, ch->id, pr_change_done, c);
        if (rc != 0)
            rt_chan_release(c);
        else {
            persist__wake();
            rc = rt_chan_recv(c, &o, &ok, RT_FOREVER) == 0 && ok ? o.status
                                                                 : -EINTR;
        }
    }
    if (c)
        rt_chan_release(c);
    free(ch);
    if (rc == 0)
        dreq_ok(r, json_pack("{s:I}", "index", (json_int_t)o.index));
    else
        dreq_fail(r,
                  rc == REPL_ENOTLEADER ? PROTO_R_NOT_LEADER : PROTO_R_INVALID,
                  "%s", repl_strerror(rc));
}

void persist_cluster_change(dreq *r, int what, uint64_t id, const char *raft,
                            const char *client)
{
    pr_change *ch = calloc(1, sizeof *ch);

    if (!persist__repl_node()) {
        free(ch);
        dreq_fail(r, PROTO_R_INVALID, "this node is not in a cluster");
        return;
    }
    if (!ch) {
        dreq_fail(r, PROTO_R_INTERNAL, "out of memory");
        return;
    }
    ch->what = what;
    ch->id = id;
    snprintf(ch->raft, sizeof ch->raft, "%s", raft ? raft : "");
    snprintf(ch->client, sizeof ch->client, "%s", client ? client : "");
    r->ctx = ch;
    if (dreq_park(r, pr_change_run) != 0)
        free(r->ctx);
}
