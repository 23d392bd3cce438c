/*
 * nodes.h - a local chand cluster for tests/cluster: N nodes of $CHAND_BIN
 * on 127.0.0.1 and free ports, each with its own data_dir under a private
 * temporary directory, started, SIGKILLed, SIGSTOPped, continued and
 * restarted by pid; and which one leads, asked of the nodes themselves.
 */
#ifndef CHAND_NODES_H
#define CHAND_NODES_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define NODES_MAX 5

typedef struct nodes nodes;

/* Starts n nodes (election timeout election_ms) and waits until one leads
 * (up to 30 s).  The daemon is $CHAND_BIN (default build/chand); its
 * output goes to DIR/node<i>.log.  Returns a new cluster, or NULL with a
 * line on stderr (whatever started is stopped). */
nodes *nodes_start(int n, int election_ms);
/* SIGKILLs every node, reaps them and removes the directory, unless
 * keep (the logs stay for a failed run; the path is printed). */
void nodes_stop(nodes *c, bool keep);
/* "127.0.0.1:p1,127.0.0.1:p2,..." (borrowed). */
const char *nodes_list(const nodes *c);
/* Node i's client address "127.0.0.1:p" (borrowed). */
const char *nodes_addr(const nodes *c, int i);
/* Returns the index of the node that says it leads and serves, asking
 * each live, running node with a short timeout; -1 when none does. */
int nodes_leader(nodes *c);
/* Returns the leader's index, polling until deadline_ms (monotonic) or -1. */
int nodes_wait_leader(nodes *c, int64_t deadline_ms);
/* SIGKILLs node i and reaps it. */
int nodes_kill(nodes *c, int i);
/* SIGSTOPs / SIGCONTs node i. */
int nodes_pause(nodes *c, int i);
int nodes_resume(nodes *c, int i);
/* Asks leader i to hand leadership to any up-to-date voter (a live
 * leader deposed).  Returns 0, or -1 if the request could not be made. */
int nodes_transfer(nodes *c, int i);
/* Starts node i again on its data_dir (after nodes_kill).  Returns 0 or
 * -1. */
int nodes_restart(nodes *c, int i);
/* Returns true when node i answers cluster.status, knows a leader and
 * has applied up to raft index `index`. */
bool nodes_follows(nodes *c, int i, int64_t index);
/* Returns node i's commit index, or -1 if it does not answer. */
int64_t nodes_commit(nodes *c, int i);
/* Prints each node's pid and what it says of itself (role, term,
 * leader, commit index) or that it does not answer, to f. */
void nodes_describe(nodes *c, FILE *f);
/* Returns how many nodes died on their own (not by nodes_kill) so far;
 * each is reported on stderr with its exit status when first seen. */
int nodes_died(nodes *c);
/* Starts again every node that died on its own (on its data_dir, as a
 * supervisor would).  Returns how many. */
int nodes_revive(nodes *c);
/* Milliseconds on the monotonic clock. */
int64_t nodes_now_ms(void);

#endif /* CHAND_NODES_H */
