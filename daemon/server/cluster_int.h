/*
 * daemon/server/cluster_int.h — what the replication driver's files share
 * (cluster.c: the loop, hooks, start and stop; members.c: membership
 * changes, REPLICATION.md §13; snapshot.c: snapshots and the bootstrap of
 * a joining node, §14). Private to daemon/server/.
 */
#ifndef STRATA_DAEMON_CLUSTER_INT_H
#define STRATA_DAEMON_CLUSTER_INT_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "daemon/server/cluster.h"
#include "replication/link.h"
#include "replication/raft.h"

/* A batch of proposed entries waiting for the loop (bodies copied). */
struct proposal {
	struct st_repl_entry *e;
	uint32_t n;
	struct proposal *next;
};

/* The membership (REPLICATION.md §13): the config's until the first change,
 * then the record the log replicates. */
struct sd_member {
	uint64_t id;
	bool voter;
	char peer[LINK_ADDR_MAX];   /* its peer address */
	char client[LINK_ADDR_MAX]; /* its client address ("" unknown) */
};
struct sd_members {
	uint32_t n;                          /* members, self included unless removed */
	struct sd_member m[RAFT_MAX_NODES];
	uint32_t nremoved;                   /* ids removed, never to be used again */
	uint64_t removed[RAFT_MAX_NODES];
};

/* A removed member the leader still tells about its removal (one
 * heartbeat per tick that carries the commit of the removal) before its
 * link closes. */
struct departing {
	uint64_t id, commit;
	int64_t until_us;
};

struct sd_node {
	st_store *s;
	const struct sd_config *cfg;
	const struct sd_cluster *cc;
	struct raft *r;
	struct link *l;
	pthread_t th;
	bool started;
	int stop;                     /* atomic */
	int64_t tick_us;              /* one core tick (the heartbeat interval) */
	int64_t election_us;

	pthread_mutex_t qlock;        /* guards q */
	struct proposal *q, *qtail;

	/* Read by the store's hooks without a lock. */
	uint64_t a_stable, a_all, a_last; /* atomics */
	int a_role;                   /* atomic enum raft_role, or -1 when failed */
	uint64_t a_leader;            /* atomic */
	uint64_t a_transfer;          /* atomic: a transfer asked for, 0 none */
	int a_force;                  /* atomic: force-promote asked (1), done by the loop (2) */
	bool force_record;            /* the forced membership is not in the log yet */
	uint64_t a_min_match;         /* atomic: vacuum's bound (hook_min_match) */

	/* The loop's own. */
	struct raft_hard_state saved; /* hard state as last persisted */
	int64_t leader_contact_us;    /* last message from the leader of our epoch */
	int64_t heard_us[LINK_MAX_ID + 1]; /* per node id, last message */
	int64_t gone_since_us;        /* the leader's files missing since (0: not) */
	int64_t toobig_logged_us;     /* an APPEND too big to send, last logged */
	char need_snapshot[ST_ERR_MSG_MAX]; /* why this node needs one ("": it does not) */
	int64_t acked_us[LINK_MAX_ID + 1]; /* per node id, when the newest heartbeat it
	                                    * answered (in acked_epoch) was sent */
	uint64_t acked_epoch[LINK_MAX_ID + 1];
	int64_t lease_until_us;       /* under plock: the leader's lease ends (0: none) */
	uint64_t no_lease_epoch;      /* under plock: a transfer began in this epoch */
	uint64_t ids[RAFT_MAX_NODES];  /* self, then the other members (plock to write;
	                                * other threads read under plock) */
	size_t nids;
	struct sd_members mem;         /* the membership (as ids[]) */
	char client_of[LINK_MAX_ID + 1][LINK_ADDR_MAX]; /* per id, written once (ids are never reused) */
	struct departing depart[RAFT_MAX_NODES];
	size_t ndepart;
	pthread_mutex_t mlock;         /* one membership change at a time */
	uint64_t a_changes;            /* atomic: membership changes applied since start */

	uint64_t seg_tid, seg_fid, seg_size, seg_gen; /* the last file served (loop thread) */
	uint32_t seg_crc;             /* its CRC32C */

	int log_role;                 /* the role, epoch and leader last logged (publish) */
	uint64_t log_epoch, log_leader;
	uint64_t unauth_logged;       /* link_stats.unauthenticated already logged */
	int64_t unauth_checked_us;
	pthread_t rth;                /* the repair thread (repair_loop) */
	bool rstarted;
	uint64_t a_repaired, a_repair_failures; /* atomics: segments repaired, fetches that failed */
	struct retry {                /* the repair thread's: when to try a segment again */
		uint64_t tid, fid;
		int64_t next_us, wait_us;
	} retry[16];

	/* The snapshot this node serves (REPLICATION.md §14): made by the
	 * upkeep thread when a peer asks and none is fresh, read by the loop. */
	pthread_mutex_t slock;        /* guards the snap_* fields */
	int a_snap_want;              /* atomic: a peer asked; make one */
	bool snap_ready;
	char snap_fail[256];          /* why the last one failed, told to the next asker */
	char snap_dir[PATH_MAX];
	int64_t snap_made_us;
	uint64_t snap_gen;            /* +1 per snapshot (the CRC cache's key) */
	struct snap_file {
		char rel[256];
		uint64_t size;
		uint32_t crc;
	} *snap_files;
	size_t n_snap_files;

	pthread_mutex_t plock;        /* guards pub, match[], ids[] */
	struct sd_node_state pub;
	uint64_t match[LINK_MAX_ID + 1];   /* per node id */
	int64_t heard_pub[LINK_MAX_ID + 1];
};


static inline int64_t cl_mono_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* cluster.c */
size_t cl_id_index(const struct sd_node *nd, uint64_t id); /* in ids[], SIZE_MAX when absent */
int cl_entry_bytes(void *ctx, uint64_t lsn, struct st_buf *out, struct st_err *err);
int cl_load_key(const char *path, uint8_t key[32], struct st_err *err);
/* The peer links of cfg's node (its key loaded, then wiped): with_peers,
 * the config's peers (a bootstrap), else none (members_apply adds them);
 * fetch_timeout_ms 0 is the link's default. */
int cl_link_open(const struct sd_config *cfg, bool with_peers, int fetch_timeout_ms,
		 struct link **out, struct st_err *err);

/* members.c (loop thread unless said otherwise) */
int cl_members_decode(const uint8_t *p, size_t len, struct sd_members *m, struct st_err *err);
void cl_members_from_config(const struct sd_node *nd, struct sd_members *m);
struct sd_member *cl_member_find(struct sd_members *m, uint64_t id);
int cl_members_apply(struct sd_node *nd, const struct sd_members *m, struct st_err *err);
int cl_members_reload(struct sd_node *nd, struct st_err *err);
void cl_tell_departing(struct sd_node *nd);
void cl_force_local(struct sd_node *nd);
void cl_record_forced(struct sd_node *nd); /* upkeep thread */
void cl_auto_promote(struct sd_node *nd);  /* upkeep thread */

/* snapshot.c */
int cl_read_chunk(struct sd_node *nd, const char *path, uint64_t table, uint64_t file,
		  uint64_t gen, uint64_t off, void *buf, size_t len, size_t *got,
		  uint64_t *file_size, uint32_t *file_crc, struct st_err *err);
int cl_snap_read(struct sd_node *nd, uint64_t file, uint64_t off, void *buf, size_t len,
		 size_t *got, uint64_t *file_size, uint32_t *file_crc, struct st_err *err);
void cl_make_snapshot(struct sd_node *nd); /* upkeep thread */
void cl_rm_tree(const char *dir);
/* Durably mark data_dir for a bootstrap from a peer's snapshot at the next
 * start, keeping k (REPLICATION.md §14). */
int cl_mark_resnapshot(const char *data_dir, const struct st_repl_keep *k, const char *why,
		       struct st_err *err);

#endif
