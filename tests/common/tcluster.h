/*
 * tcluster.h - what the cluster end-to-end suites (tests/e2e/test_cluster*.c)
 * ask of their nodes, each a testd on its own client port: one call on a
 * fresh connection, a node's cluster.status, which node leads, and free
 * ports for them.
 * No cmocka (every test and bench links tests/common): failures come back
 * as NULL or -1 for the suite to assert on.
 */
#ifndef CHAND_TCLUSTER_H
#define CHAND_TCLUSTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "testd.h"

/* Calls method with params (JSON text, or NULL for none) on a fresh
 * connection to 127.0.0.1:port, closed after.  Returns the answer (new),
 * or NULL: no connection, or no answer within timeout_ms. */
json_t *tcluster_call(int port, const char *method, const char *params,
                      int timeout_ms);
/* Returns the result of the node's cluster.status (new; within 5 s), or
 * NULL. */
json_t *tcluster_status(int port);
/* Returns the integer key of the node's cluster.status (0 when it is
 * missing or not an integer), or -1 when the node does not answer. */
int64_t tcluster_status_int(int port, const char *key);
/* Fills cport[0..n-1] and rport[0..n-1] with free loopback ports, all
 * different: every socket stays bound until all are picked (one bound and
 * closed at a time, the kernel can hand a port out twice).  Returns 0, or
 * -1 when a port cannot be had. */
int tcluster_ports(int *cport, int *rport, int n);
/* Returns the index in nd[0..n-1] of a node whose cluster.status says it
 * serves, asking every running node (pid set) that stopped (may be NULL)
 * does not mark; polls every 50 ms up to timeout_ms, then -1.  A
 * SIGSTOPped node must be marked: it would hold each poll for 5 s. */
int tcluster_find_leader(const testd *nd, const bool *stopped, int n,
                         int timeout_ms);

#endif /* CHAND_TCLUSTER_H */
