/*
 * daemon/server/cluster.h — stratad's replication driver
 * (replication/REPLICATION.md): one thread that runs the consensus core
 * (replication/raft.h) over the peer links (replication/link.h) and the
 * store's log (st_repl_* of daemon/store/strata.h), following the core's
 * Ready contract: hard state and entries durable, then messages sent,
 * then committed entries applied.
 *
 * Threading: the driver's thread owns the core and the links. Server
 * threads read its published state (sd_node_state, under a small lock)
 * and the store reads its progress through atomics (the store's hooks),
 * so no lock is ever taken while the store's write lock is held.
 */
#ifndef STRATA_DAEMON_CLUSTER_H
#define STRATA_DAEMON_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/server/config.h"
#include "daemon/store/strata.h"

struct sd_node;

/* Roles as `strata status` shows them. */
enum sd_role { SD_ROLE_FOLLOWER = 0, SD_ROLE_CANDIDATE = 1, SD_ROLE_LEADER = 2,
	       SD_ROLE_FAILED = 3, SD_ROLE_LEARNER = 4, SD_ROLE_REMOVED = 5 };

/* Membership changes (REPLICATION.md §13). */
enum sd_member_op { SD_MEMBER_ADD = 1, SD_MEMBER_PROMOTE = 2, SD_MEMBER_REMOVE = 3,
		    SD_MEMBER_FORCE_PROMOTE = 4 };

/* A copy of the node's state. */
struct sd_node_state {
	uint64_t self;          /* this node's id */
	uint64_t leader;        /* leader's id, 0 unknown */
	uint64_t epoch;         /* current epoch */
	uint64_t commit;        /* commit LSN */
	uint64_t applied;       /* applied LSN (the store's) */
	uint64_t last_lsn;      /* last LSN of the local log */
	int role;               /* enum sd_role */
	int64_t contact_age_us; /* since the last message from a leader (0 on the leader) */
	bool lease;             /* leader: a majority of voters answered a heartbeat this node
	                         * sent less than half an election timeout ago (judged when
	                         * the state is read: a node paused since cannot see a stale
	                         * lease as valid) */
	bool epoch_committed;   /* leader: an entry of its epoch is committed */
	char failure[256];      /* SD_ROLE_FAILED: why */
};

/* The leader's view of one member. */
struct sd_node_peer {
	uint64_t id;
	const char *client;     /* its client address (borrowed from the config) */
	uint64_t match;         /* highest LSN known durable there (leader's view) */
	int64_t contact_ms;     /* since the last message from it, -1 never */
	uint64_t bytes_sent;    /* sent to it over the peer link (0 for self) */
	bool voter;             /* a voter (else a learner, or self removed) */
};

/*
 * Record the identity in the store (refusing another cluster's or node's
 * data), attach the store in cluster mode, reload the log and the hard
 * state, bind the peer links and start the thread. cfg must stay alive.
 */
int sd_node_start(st_store *s, const struct sd_config *cfg, struct sd_node **out,
		  struct st_err *err);
void sd_node_stop(struct sd_node *n);
/*
 * Before the store opens: a node with cluster.join whose data directory
 * holds no store fetches a peer's snapshot (REPLICATION.md §14) into
 * DATA_DIR.bootstrap (resuming one left by a kill), checks it against its
 * MANIFEST, makes it this node's (st_repl_adopt) and renames it into
 * place. ST_OK also when there is nothing to do.
 */
int sd_node_bootstrap(const struct sd_config *cfg, struct st_err *err);

void sd_node_state(struct sd_node *n, struct sd_node_state *st);
/* Client address of node id ("" unknown). */
const char *sd_node_client(const struct sd_node *n, uint64_t id);
/* The members as this node sees them, self first; returns the count. */
size_t sd_node_peers(struct sd_node *n, struct sd_node_peer *out, size_t max);
/* Leadership transfer to voter `to`. ST_ENOTLEADER, ST_EINVAL. */
int sd_node_transfer(struct sd_node *n, uint64_t to, struct st_err *err);
/*
 * On the leader, one change at a time: add node id (peer and client
 * addresses; a learner), promote learner id to voter (refused while it
 * lags more than cluster.promote_lag), or remove member id (not the
 * leader itself). The change is an entry of the log, replicated and
 * waited for like a write; msg says what was done. ST_ENOTLEADER,
 * ST_EUNAVAIL (no entry of the epoch committed yet, the learner lags, no
 * quorum), ST_EINVAL (an id in use or ever removed, a bad address).
 */
int sd_node_member_change(struct sd_node *n, int op, uint64_t id, const char *peer,
			  const char *client, char *msg, size_t msglen, struct st_err *err);
/*
 * Two-node appliances and a lost quorum (REPLICATION.md §13.1): make this
 * node the only voter (the others learners) and let it elect itself in a
 * new epoch; msg says what may be lost. ST_EINVAL when a leader is alive
 * or this node leads, is removed or failed.
 */
int sd_node_force_promote(struct sd_node *n, char *msg, size_t msglen, struct st_err *err);
/* Repair from peers: damaged segment files replaced with a peer's copy
 * since start, fetches of a copy that failed, segments waiting for one. */
void sd_node_repairs(struct sd_node *n, uint64_t *repaired, uint64_t *failures,
		     uint64_t *pending);
/* The cluster id as 32 hex digits. */
void sd_node_cluster_hex(const struct sd_node *n, char out[33]);
/* Bytes sent to peers so far (for benchmarks and status). */
uint64_t sd_node_bytes_sent(struct sd_node *n);
/* The heartbeat interval, µs. */
int64_t sd_node_heartbeat_us(const struct sd_node *n);
/* How long a read may wait for a version or a lease, µs. */
int64_t sd_node_timeout_us(const struct sd_node *n);
/* The configured default staleness bound of follower reads, µs. */
int64_t sd_node_max_staleness_us(const struct sd_node *n);

const char *sd_role_name(int role);

#endif
