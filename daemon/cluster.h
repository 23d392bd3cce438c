/*
 * cluster.h - the `cluster` and `node_id` settings, parsed into a peer list.
 *
 * The setting lists every node of a replicated chand as
 *
 *     id=host:client_port:raft_port,id=host:client_port:raft_port,...
 *
 * where id is a positive integer (the Raft server id, stable for the life
 * of the node's data_dir), host the IPv4 address the other nodes and the
 * clients reach (libraft's transport resolves no names), client_port
 * the port clients reach (named in `not_leader` answers) and raft_port the
 * port the nodes talk Raft on.  `node_id` names this node in the list.
 * Blanks around entries are ignored.  Everything else is refused with a
 * message that names the entry and what is wrong with it.
 *
 * The module only parses and looks up; it knows nothing of Raft (repl.h).
 */
#ifndef CHAND_CLUSTER_H
#define CHAND_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

/* Bounds of the setting (the host field is checked as an IPv4 address;
 * the buffer is sized for names should a later transport resolve them). */
#define CLUSTER_MAX_PEERS 64
#define CLUSTER_HOST_MAX 253

typedef struct cluster_peer {
    uint64_t id;
    char host[CLUSTER_HOST_MAX + 1];
    uint16_t client_port;
    uint16_t raft_port;
} cluster_peer;

typedef struct cluster {
    cluster_peer *peers; /* n entries, in the order of the setting */
    size_t n;
    size_t self; /* index of node_id in peers */
} cluster;

/* Parses spec and node_id into c (zeroed first).  Returns 0, or -EINVAL
 * with a sentence in err (never longer than errlen) and c left empty, or
 * -ENOMEM.  On success the caller frees c with cluster_free. */
int cluster_parse(cluster *c, const char *spec, const char *node_id, char *err,
                  size_t errlen);

/* Frees what cluster_parse allocated; c is empty afterwards (safe twice). */
void cluster_free(cluster *c);

/* Returns the peer with that id (borrowed from c), or NULL. */
const cluster_peer *cluster_find(const cluster *c, uint64_t id);

/* Returns this node's peer (borrowed from c). */
const cluster_peer *cluster_self(const cluster *c);

/* Writes "host:raft_port" into buf; returns 0, or -ENAMETOOLONG. */
int cluster_raft_address(const cluster_peer *p, char *buf, size_t len);

/* Writes "host:client_port" into buf; returns 0, or -ENAMETOOLONG. */
int cluster_client_address(const cluster_peer *p, char *buf, size_t len);

#endif
