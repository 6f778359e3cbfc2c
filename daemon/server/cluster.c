/*
 * daemon/server/cluster.c — the replication driver (see cluster.h).
 *
 * The loop: wait for a peer message or the next tick; feed the message
 * (after fetching any segment file its entries reference) and the queued
 * proposals and ticks to the core; then drain every Ready in the order of
 * the contract in replication/raft.h. Its store calls take the store's
 * write lock; proposers hold that lock only while they queue (under qlock)
 * or wait on the store's condition (which releases it).
 */
#include "daemon/server/cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "daemon/server/log.h"
#include "format/io.h"
#include "format/bytes.h"
#include "format/crc32c.h"
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

static int64_t mono_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

const char *sd_role_name(int role)
{
	switch (role) {
	case SD_ROLE_LEADER: return "leader";
	case SD_ROLE_CANDIDATE: return "candidate";
	case SD_ROLE_FAILED: return "failed";
	case SD_ROLE_LEARNER: return "learner";
	case SD_ROLE_REMOVED: return "removed";
	default: return "follower";
	}
}

/* ---- the store's hooks ------------------------------------------------- */

static int hook_propose(void *ctx, const struct st_repl_entry *e, uint32_t n, struct st_err *err)
{
	struct sd_node *nd = ctx;
	int role = __atomic_load_n(&nd->a_role, __ATOMIC_ACQUIRE);
	if (role != RAFT_LEADER) {
		uint64_t lid = __atomic_load_n(&nd->a_leader, __ATOMIC_ACQUIRE);
		return lid ? st_seterr(err, ST_ENOTLEADER, "not the leader: node %llu leads, at %s",
				       (unsigned long long)lid, sd_node_client(nd, lid))
			   : st_seterr(err, ST_ENOTLEADER,
				       "not the leader, and no leader is known yet (an election "
				       "is under way, or no quorum is reachable)");
	}
	size_t bytes = 0;
	for (uint32_t i = 0; i < n; i++)
		bytes += e[i].len;
	struct proposal *p = calloc(1, sizeof *p);
	struct st_repl_entry *c = p ? malloc(n * sizeof *c + bytes) : NULL;
	if (!c) {
		free(p);
		return st_seterr(err, ST_ENOMEM, "out of memory");
	}
	uint8_t *b = (uint8_t *)(c + n);
	for (uint32_t i = 0; i < n; i++) {
		c[i] = e[i];
		memcpy(b, e[i].body, e[i].len);
		c[i].body = b;
		b += e[i].len;
	}
	p->e = c;
	p->n = n;
	pthread_mutex_lock(&nd->qlock);
	if (nd->qtail)
		nd->qtail->next = p;
	else
		nd->q = p;
	nd->qtail = p;
	pthread_mutex_unlock(&nd->qlock);
	link_wake(nd->l);
	return ST_OK;
}

static uint64_t hook_stable(void *ctx)
{
	return __atomic_load_n(&((struct sd_node *)ctx)->a_stable, __ATOMIC_ACQUIRE);
}

static uint64_t hook_all(void *ctx)
{
	return __atomic_load_n(&((struct sd_node *)ctx)->a_all, __ATOMIC_ACQUIRE);
}

static uint64_t hook_min_match(void *ctx)
{
	return __atomic_load_n(&((struct sd_node *)ctx)->a_min_match, __ATOMIC_ACQUIRE);
}

static uint64_t hook_last(void *ctx)
{
	return __atomic_load_n(&((struct sd_node *)ctx)->a_last, __ATOMIC_ACQUIRE);
}

/* ---- the core's callbacks ---------------------------------------------- */

static void noop_hash(void *ctx, const uint8_t prev[RAFT_HASH_LEN], uint64_t lsn, uint64_t epoch,
		      const void *data, size_t len, uint8_t out[RAFT_HASH_LEN])
{
	(void)ctx, (void)epoch, (void)data, (void)len;
	st_repl_noop_hash(prev, lsn, out);
}

static int entry_bytes(void *ctx, uint64_t lsn, struct st_buf *out, struct st_err *err)
{
	struct sd_node *nd = ctx;
	return st_repl_log_get(nd->s, lsn, out, err);
}

#define SNAP_REUSE_US (60 * 1000000) /* a snapshot younger than this is served again */

/* Read up to len bytes of path at off; the whole file's CRC32C once per
 * (table, file, size, gen) (segment and snapshot files never change). */
static int read_chunk(struct sd_node *nd, const char *path, uint64_t table, uint64_t file,
		      uint64_t gen, uint64_t off, void *buf, size_t len, size_t *got,
		      uint64_t *file_size, uint32_t *file_crc, struct st_err *err)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return st_seterr(err, ST_ENOTFOUND, "file %llu of table id %llu: %s",
				 (unsigned long long)file, (unsigned long long)table, strerror(errno));
	struct stat st;
	int rc = ST_OK;
	*got = 0;
	if (fstat(fileno(f), &st) != 0) {
		rc = st_seterr(err, errno, "stat '%s': %s", path, strerror(errno));
		goto out;
	}
	*file_size = (uint64_t)st.st_size;
	if (nd->seg_tid != table || nd->seg_fid != file || nd->seg_size != *file_size ||
	    nd->seg_gen != gen) {
		uint32_t crc = 0;
		size_t k;
		while ((k = fread(buf, 1, len, f)) > 0)
			crc = st_crc32c(crc, buf, k);
		if (ferror(f)) {
			rc = st_seterr(err, EIO, "reading '%s'", path);
			goto out;
		}
		nd->seg_tid = table, nd->seg_fid = file, nd->seg_size = *file_size;
		nd->seg_gen = gen, nd->seg_crc = crc;
	}
	*file_crc = nd->seg_crc;
	if (off < *file_size && fseeko(f, (off_t)off, SEEK_SET) == 0)
		*got = fread(buf, 1, len, f);
out:
	fclose(f);
	return rc;
}

/* File `file` of this node's snapshot: 0 its MANIFEST, k its k-th file.
 * A request for the MANIFEST from offset 0 when no snapshot is fresh asks
 * the upkeep thread for one and is answered ST_EBUSY (retry). */
static int snap_read(struct sd_node *nd, uint64_t file, uint64_t off, void *buf, size_t len,
		     size_t *got, uint64_t *file_size, uint32_t *file_crc, struct st_err *err)
{
	char path[PATH_MAX + 300];
	int rc;
	pthread_mutex_lock(&nd->slock);
	bool stale = !nd->snap_ready ||
		     (file == 0 && off == 0 && mono_us() - nd->snap_made_us > SNAP_REUSE_US);
	if (stale) {
		__atomic_store_n(&nd->a_snap_want, 1, __ATOMIC_RELEASE);
		rc = st_seterr(err, ST_EBUSY, "node %llu is making a snapshot: retry shortly",
			       (unsigned long long)nd->cc->node_id);
	} else if (file > nd->n_snap_files) {
		rc = st_seterr(err, ST_ENOTFOUND, "the snapshot has %zu files, not %llu",
			       nd->n_snap_files, (unsigned long long)file);
	} else {
		snprintf(path, sizeof path, "%s/%s", nd->snap_dir,
			 file ? nd->snap_files[file - 1].rel : "MANIFEST");
		rc = read_chunk(nd, path, LINK_SNAPSHOT_TABLE, file, nd->snap_gen, off, buf, len,
				got, file_size, file_crc, err);
	}
	pthread_mutex_unlock(&nd->slock);
	return rc;
}

static int seg_read(void *ctx, uint64_t table, uint64_t file, uint64_t off, void *buf, size_t len,
		    size_t *got, uint64_t *file_size, uint32_t *file_crc, struct st_err *err)
{
	struct sd_node *nd = ctx;
	if (table == LINK_SNAPSHOT_TABLE)
		return snap_read(nd, file, off, buf, len, got, file_size, file_crc, err);
	char path[4096];
	st_segment_path(nd->s, table, file, path, sizeof path);
	return read_chunk(nd, path, table, file, 0, off, buf, len, got, file_size, file_crc, err);
}

/* The files of a backup's MANIFEST in its order ("file REL SIZE CRC" lines). */
static int manifest_files(const char *dir, struct snap_file **out, size_t *n, struct st_err *err)
{
	char path[PATH_MAX + 16], line[PATH_MAX + 64];
	snprintf(path, sizeof path, "%s/MANIFEST", dir);
	FILE *f = fopen(path, "r");
	*out = NULL;
	*n = 0;
	if (!f)
		return st_seterr(err, errno, "cannot open %s: %s", path, strerror(errno));
	int rc = ST_OK;
	while (rc == ST_OK && fgets(line, sizeof line, f)) {
		struct snap_file x;
		unsigned crc;
		if (sscanf(line, "file %255s %" SCNu64 " %x", x.rel, &x.size, &crc) != 3)
			continue;
		x.crc = crc;
		if (strstr(x.rel, "..") || x.rel[0] == '/') {
			rc = st_seterr(err, ST_ECORRUPT, "%s names %s", path, x.rel);
			break;
		}
		struct snap_file *g = realloc(*out, (*n + 1) * sizeof *g);
		if (!g) {
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			break;
		}
		*out = g;
		g[(*n)++] = x;
	}
	fclose(f);
	if (rc != ST_OK) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return rc;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)ftw;
	return flag == FTW_DP ? rmdir(p) : unlink(p);
}

/* Remove dir and everything in it (absent is fine). */
static void rm_tree(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* The upkeep thread's part: a snapshot when a peer asked for one. */
static void make_snapshot(struct sd_node *nd)
{
	if (!__atomic_exchange_n(&nd->a_snap_want, 0, __ATOMIC_ACQ_REL))
		return;
	char dir[PATH_MAX], old[PATH_MAX] = "";
	struct st_backup_result r;
	struct st_err err;
	struct snap_file *files = NULL;
	size_t n = 0;
	snprintf(dir, sizeof dir, "%s/snapshots", nd->cfg->data_dir);
	mkdir(dir, 0755);
	snprintf(dir, sizeof dir, "%s/snapshots/%" PRId64, nd->cfg->data_dir, mono_us());
	if (st_backup(nd->s, dir, &r, &err) != ST_OK ||
	    manifest_files(dir, &files, &n, &err) != ST_OK) {
		sd_log(SD_LOG_WARN, "snapshot for a joining node failed: %s", err.msg);
		rm_tree(dir);
		return;
	}
	pthread_mutex_lock(&nd->slock);
	if (nd->snap_ready)
		snprintf(old, sizeof old, "%s", nd->snap_dir);
	snprintf(nd->snap_dir, sizeof nd->snap_dir, "%s", dir);
	free(nd->snap_files);
	nd->snap_files = files;
	nd->n_snap_files = n;
	nd->snap_made_us = mono_us();
	nd->snap_gen++;
	nd->snap_ready = true;
	pthread_mutex_unlock(&nd->slock);
	if (old[0])
		rm_tree(old);
	sd_log(SD_LOG_INFO, "snapshot at LSN %llu for a joining node: %llu files, %.1f MB "
	       "(segment files hard-linked: vacuum cannot take them)", (unsigned long long)r.lsn,
	       (unsigned long long)r.files, (double)r.bytes / 1e6);
}

/* ---- state ------------------------------------------------------------- */

static size_t id_index(const struct sd_node *nd, uint64_t id)
{
	for (size_t i = 0; i < nd->nids; i++)
		if (nd->ids[i] == id)
			return i;
	return SIZE_MAX;
}

/* Publish the core's state (loop thread). */
static void publish(struct sd_node *nd, bool failed, const char *why)
{
	struct raft_status st;
	raft_status(nd->r, &st);
	int64_t now = mono_us();
	uint64_t all = UINT64_MAX, stable = 0;
	size_t fresh = 1, voters = 0;
	uint64_t match[LINK_MAX_ID + 1] = {0};
	for (size_t i = 0; i < nd->nids; i++) {
		bool voter = false;
		uint64_t id = nd->ids[i];
		raft_progress(nd->r, id, &match[id], &voter);
		if (i == 0)
			stable = match[id];
		if (voter) {
			voters++;
			if (match[id] < all)
				all = match[id];
			if (i > 0 && nd->heard_us[id] && now - nd->heard_us[id] < nd->election_us / 2)
				fresh++;
		}
	}
	/* Vacuum keeps the files of entries a follower within the lag budget
	 * (cluster.max_lag entries) may still fetch; one further behind needs
	 * a snapshot (the cluster-operations issue). A follower keeps all. */
	uint64_t min_match = st.role == RAFT_LEADER ? UINT64_MAX : 0;
	for (size_t i = 1; st.role == RAFT_LEADER && i < nd->nids; i++)
		if (st.last_lsn - match[nd->ids[i]] <= nd->cc->max_lag &&
		    match[nd->ids[i]] < min_match)
			min_match = match[nd->ids[i]];
	__atomic_store_n(&nd->a_min_match, min_match, __ATOMIC_RELEASE);
	if (st.role != RAFT_LEADER)
		all = 0;
	__atomic_store_n(&nd->a_stable, stable, __ATOMIC_RELEASE);
	__atomic_store_n(&nd->a_all, all == UINT64_MAX ? 0 : all, __ATOMIC_RELEASE);
	__atomic_store_n(&nd->a_last, st.last_lsn, __ATOMIC_RELEASE);
	__atomic_store_n(&nd->a_leader, st.leader, __ATOMIC_RELEASE);
	__atomic_store_n(&nd->a_role, failed ? -1 : (int)st.role, __ATOMIC_RELEASE);
	/* A change of role, epoch or leader is logged: an operator's (and a
	 * fault checker's) record of who led each epoch. */
	if (!failed && ((int)st.role != nd->log_role || st.hs.epoch != nd->log_epoch ||
			st.leader != nd->log_leader)) {
		if (st.role == RAFT_LEADER)
			sd_log(SD_LOG_INFO, "replication: leader in epoch %llu",
			       (unsigned long long)st.hs.epoch);
		else if (st.role == RAFT_FOLLOWER && st.leader)
			sd_log(SD_LOG_INFO, "replication: follower of node %llu in epoch %llu",
			       (unsigned long long)st.leader, (unsigned long long)st.hs.epoch);
		else if ((int)st.role != nd->log_role || st.hs.epoch != nd->log_epoch)
			sd_log(SD_LOG_INFO, "replication: %s in epoch %llu, no leader known",
			       st.role == RAFT_CANDIDATE     ? "candidate"
			       : st.role == RAFT_FOLLOWER ? "follower"
							  : "pre-candidate",
			       (unsigned long long)st.hs.epoch);
		nd->log_role = (int)st.role;
		nd->log_epoch = st.hs.epoch;
		nd->log_leader = st.leader;
	}
	pthread_mutex_lock(&nd->plock);
	struct sd_node_state *p = &nd->pub;
	p->self = st.self;
	p->leader = st.leader;
	p->epoch = st.hs.epoch;
	p->commit = st.hs.commit;
	p->applied = st_repl_applied(nd->s);
	p->last_lsn = st.last_lsn;
	p->role = failed ? SD_ROLE_FAILED
		  : st.removed ? SD_ROLE_REMOVED
		  : st.is_learner ? SD_ROLE_LEARNER
		  : st.role == RAFT_LEADER ? SD_ROLE_LEADER
		  : st.role == RAFT_FOLLOWER ? SD_ROLE_FOLLOWER
					     : SD_ROLE_CANDIDATE;
	p->contact_age_us = st.role == RAFT_LEADER ? 0
			    : nd->leader_contact_us ? now - nd->leader_contact_us
						    : INT64_MAX;
	p->lease = st.role == RAFT_LEADER && fresh * 2 > voters;
	const struct raft_entry *ce = raft_entry_at(nd->r, st.hs.commit);
	p->epoch_committed = st.role == RAFT_LEADER && ce && ce->epoch == st.hs.epoch;
	if (why)
		snprintf(p->failure, sizeof p->failure, "%s", why);
	memcpy(nd->match, match, sizeof match);
	memcpy(nd->heard_pub, nd->heard_us, sizeof nd->heard_us);
	pthread_mutex_unlock(&nd->plock);
}


/* ---- membership (REPLICATION.md §13) ------------------------------------ */

/* The record: format 1, counts, then each member (id u64le, flags u8 with
 * bit 0 voter, peer and client lengths u8, the two addresses), then each
 * removed id (u64le). The store keeps it opaque, checksummed like every
 * record. */
static void members_encode(const struct sd_members *m, struct st_buf *b)
{
	st_buf_u8(b, 1);
	st_buf_u8(b, (uint8_t)m->n);
	st_buf_u8(b, (uint8_t)m->nremoved);
	st_buf_u8(b, 0);
	for (uint32_t i = 0; i < m->n; i++) {
		size_t pl = strlen(m->m[i].peer), cl = strlen(m->m[i].client);
		st_buf_u64(b, m->m[i].id);
		st_buf_u8(b, m->m[i].voter ? 1 : 0);
		st_buf_u8(b, (uint8_t)pl);
		st_buf_u8(b, (uint8_t)cl);
		st_buf_append(b, m->m[i].peer, pl);
		st_buf_append(b, m->m[i].client, cl);
	}
	for (uint32_t i = 0; i < m->nremoved; i++)
		st_buf_u64(b, m->removed[i]);
}

static int members_decode(const uint8_t *p, size_t len, struct sd_members *m, struct st_err *err)
{
	const uint8_t *end = p + len;
	memset(m, 0, sizeof *m);
	if (len < 4 || p[0] != 1 || p[1] > RAFT_MAX_NODES || p[2] > RAFT_MAX_NODES)
		goto bad;
	m->n = p[1];
	m->nremoved = p[2];
	p += 4;
	for (uint32_t i = 0; i < m->n; i++) {
		if (end - p < 11)
			goto bad;
		size_t pl = p[9], cl = p[10];
		if (pl >= LINK_ADDR_MAX || cl >= LINK_ADDR_MAX || (size_t)(end - p) < 11 + pl + cl)
			goto bad;
		m->m[i].id = st_get_le64(p);
		m->m[i].voter = p[8] & 1;
		memcpy(m->m[i].peer, p + 11, pl);
		memcpy(m->m[i].client, p + 11 + pl, cl);
		if (m->m[i].id == 0 || m->m[i].id > LINK_MAX_ID)
			goto bad;
		p += 11 + pl + cl;
	}
	if ((size_t)(end - p) != 8u * m->nremoved)
		goto bad;
	for (uint32_t i = 0; i < m->nremoved; i++)
		m->removed[i] = st_get_le64(p + 8 * i);
	return ST_OK;
bad:
	return st_seterr(err, ST_ECORRUPT, "the membership record is malformed");
}

static struct sd_member *member_find(struct sd_members *m, uint64_t id)
{
	for (uint32_t i = 0; i < m->n; i++)
		if (m->m[i].id == id)
			return &m->m[i];
	return NULL;
}

/* The config's membership: self and its peers, all voters (self a
 * learner with cluster.join). */
static void members_from_config(const struct sd_node *nd, struct sd_members *m)
{
	const struct sd_cluster *cc = nd->cc;
	memset(m, 0, sizeof *m);
	m->m[0].id = cc->node_id;
	m->m[0].voter = !cc->join;
	snprintf(m->m[0].peer, sizeof m->m[0].peer, "%s", cc->peer_listen);
	snprintf(m->m[0].client, sizeof m->m[0].client, "%s", sd_node_client(nd, cc->node_id));
	m->n = 1;
	for (uint32_t i = 0; i < cc->npeers; i++, m->n++) {
		m->m[m->n].id = cc->peers[i].id;
		m->m[m->n].voter = true;
		snprintf(m->m[m->n].peer, sizeof m->m[m->n].peer, "%s", cc->peers[i].peer);
		snprintf(m->m[m->n].client, sizeof m->m[m->n].client, "%s",
			 cc->peers[i].client ? cc->peers[i].client : "");
	}
}

static bool member_removed(const struct sd_members *m, uint64_t id)
{
	for (uint32_t i = 0; i < m->nremoved; i++)
		if (m->removed[i] == id)
			return true;
	return false;
}

/* Make m the membership of the core, the links and ids[] (loop thread, or
 * start before the thread runs). A removed peer is told about its removal
 * for two election timeouts before its link closes. */
static int members_apply(struct sd_node *nd, const struct sd_members *m, struct st_err *err)
{
	uint64_t voters[RAFT_MAX_NODES], learners[RAFT_MAX_NODES];
	size_t nv = 0, nl = 0;
	uint64_t self = nd->cc->node_id;
	for (uint32_t i = 0; i < m->n; i++) {
		if (m->m[i].voter)
			voters[nv++] = m->m[i].id;
		else
			learners[nl++] = m->m[i].id;
	}
	/* A node that joined from a snapshot taken before its own addition
	 * applied: a learner until the log says more. */
	if (!member_find((struct sd_members *)m, self) && !member_removed(m, self) &&
	    nl < RAFT_MAX_NODES - nv)
		learners[nl++] = self;
	struct raft_status st;
	raft_status(nd->r, &st);
	/* Before the core forgets them: the removed peers' progress. */
	for (size_t i = 1; i < nd->nids; i++) {
		uint64_t id = nd->ids[i], match = 0;
		bool voter;
		if (member_find((struct sd_members *)m, id) || nd->ndepart == RAFT_MAX_NODES)
			continue;
		raft_progress(nd->r, id, &match, &voter);
		nd->depart[nd->ndepart++] = (struct departing){
		    id, match < st.hs.commit ? match : st.hs.commit,
		    mono_us() + 2 * nd->election_us};
	}
	if (raft_set_members(nd->r, voters, nv, learners, nl) != ST_OK)
		return st_seterr(err, ST_ECORRUPT, "the membership record names no voter, or an id "
				 "twice");
	for (uint32_t i = 0; i < m->n; i++) {
		const struct sd_member *x = &m->m[i];
		if (!nd->client_of[x->id][0])
			snprintf(nd->client_of[x->id], LINK_ADDR_MAX, "%s", x->client);
		if (x->id == self || id_index(nd, x->id) != SIZE_MAX)
			continue;
		struct link_peer lp = {.id = x->id};
		snprintf(lp.address, sizeof lp.address, "%s", x->peer);
		int rc = link_add_peer(nd->l, &lp, err);
		if (rc != ST_OK)
			return rc;
	}
	pthread_mutex_lock(&nd->plock);
	nd->mem = *m;
	nd->nids = 1;
	nd->ids[0] = self;
	for (uint32_t i = 0; i < m->n; i++)
		if (m->m[i].id != self)
			nd->ids[nd->nids++] = m->m[i].id;
	pthread_mutex_unlock(&nd->plock);
	return ST_OK;
}

/* The loop's part of a committed change: the new record, applied. */
static int members_reload(struct sd_node *nd, struct st_err *err)
{
	struct st_buf b = {0};
	struct sd_members m;
	int rc = st_repl_members_get(nd->s, &b, err);
	if (rc == ST_OK)
		rc = members_decode(b.data, b.len, &m, err);
	st_buf_free(&b);
	if (rc == ST_OK)
		rc = members_apply(nd, &m, err);
	if (rc != ST_OK)
		return rc;
	__atomic_add_fetch(&nd->a_changes, 1, __ATOMIC_RELAXED);
	char line[512];
	size_t k = 0;
	for (uint32_t i = 0; i < m.n && k < sizeof line - 40; i++)
		k += (size_t)snprintf(line + k, sizeof line - k, "%s%llu%s", i ? ", " : "",
				      (unsigned long long)m.m[i].id, m.m[i].voter ? "" : " (learner)");
	sd_log(SD_LOG_INFO, "membership: %s%s", line,
	       !member_removed(&m, nd->cc->node_id) ? "" : "; this node was removed: it no longer votes "
						       "or campaigns (stop it; its id is never reused)");
	return ST_OK;
}

/* Leader: the last word to departing members, then their links close. */
static void tell_departing(struct sd_node *nd)
{
	int64_t now = mono_us();
	struct raft_status st;
	raft_status(nd->r, &st);
	for (size_t i = 0; i < nd->ndepart;) {
		struct departing *d = &nd->depart[i];
		if (now >= d->until_us || st.role != RAFT_LEADER) {
			link_remove_peer(nd->l, d->id);
			*d = nd->depart[--nd->ndepart];
			continue;
		}
		struct raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .epoch = st.hs.epoch,
				     .from = st.self, .to = d->id, .commit = d->commit};
		link_send(nd->l, &m, entry_bytes, nd, NULL);
		i++;
	}
}

/* Replicate m as the membership record (mlock held) and wait until the
 * loop has taken it into effect here, so that the next change starts from
 * it. */
static int members_commit(struct sd_node *nd, const struct sd_members *m, struct st_err *err)
{
	struct st_buf b = {0};
	uint64_t before = __atomic_load_n(&nd->a_changes, __ATOMIC_ACQUIRE);
	members_encode(m, &b);
	int rc = b.oom ? st_seterr(err, ST_ENOMEM, "out of memory")
		       : st_repl_members_put(nd->s, b.data, b.len, err);
	st_buf_free(&b);
	for (int64_t waited = 0; rc == ST_OK &&
				 __atomic_load_n(&nd->a_changes, __ATOMIC_ACQUIRE) == before;
	     waited += 10000) {
		if (waited >= nd->cc->write_timeout_us)
			return st_seterr(err, ST_EUNAVAIL, "the membership change committed but was "
					 "not applied here in time");
		struct timespec ts = {0, 10 * 1000000};
		nanosleep(&ts, NULL);
	}
	return rc;
}

int sd_node_member_change(struct sd_node *nd, int op, uint64_t id, const char *peer,
			  const char *client, char *msg, size_t msglen, struct st_err *err)
{
	struct sd_node_state st;
	struct sd_members m;
	int rc = ST_OK;
	pthread_mutex_lock(&nd->mlock);
	sd_node_state(nd, &st);
	pthread_mutex_lock(&nd->plock);
	m = nd->mem;
	uint64_t match = id <= LINK_MAX_ID ? nd->match[id] : 0;
	pthread_mutex_unlock(&nd->plock);
	struct sd_member *x = member_find(&m, id);
	if (st.role != SD_ROLE_LEADER) {
		rc = st.leader ? st_seterr(err, ST_ENOTLEADER, "not the leader: node %llu leads",
					   (unsigned long long)st.leader)
			       : st_seterr(err, ST_ENOTLEADER, "not the leader; no leader known");
		goto out;
	}
	if (!st.epoch_committed) {
		rc = st_seterr(err, ST_EUNAVAIL, "the leader has not committed an entry of its epoch "
			       "yet (it was elected a moment ago): retry shortly");
		goto out;
	}
	switch (op) {
	case SD_MEMBER_ADD:
		if (id == 0 || id > LINK_MAX_ID) {
			rc = st_seterr(err, ST_EINVAL, "node ids are 1..%d (the port scheme of "
				       "REPLICATION.md §5)", LINK_MAX_ID);
		} else if (x || member_removed(&m, id)) {
			rc = st_seterr(err, ST_EINVAL, "node id %llu is %s: a new node gets a new id",
				       (unsigned long long)id, x ? "a member already"
					: "a removed member's (ids are never reused)");
		} else if (!peer || strncmp(peer, "tcp://", 6) || strlen(peer) >= LINK_ADDR_MAX ||
			   !strrchr(peer + 6, ':')) {
			rc = st_seterr(err, ST_EINVAL, "the new node's peer address must be "
				       "tcp://HOST:PORT (its cluster.peer_listen)");
		} else if (client && strlen(client) >= LINK_ADDR_MAX) {
			rc = st_seterr(err, ST_EINVAL, "the client address is too long");
		} else if (m.n + m.nremoved >= RAFT_MAX_NODES) {
			rc = st_seterr(err, ST_EINVAL, "a cluster uses %d node ids in its life at most, "
				       "removed ones included", RAFT_MAX_NODES);
		} else {
			x = &m.m[m.n++];
			*x = (struct sd_member){.id = id, .voter = false};
			snprintf(x->peer, sizeof x->peer, "%s", peer);
			snprintf(x->client, sizeof x->client, "%s", client ? client : "");
		}
		break;
	case SD_MEMBER_PROMOTE:
		if (!x || x->voter)
			rc = st_seterr(err, ST_EINVAL, "node %llu is %s", (unsigned long long)id,
				       x ? "a voter already" : "not a member (strata cluster add first)");
		else if (st.last_lsn > match && st.last_lsn - match > nd->cc->promote_lag)
			rc = st_seterr(err, ST_EUNAVAIL, "learner %llu is %llu entries behind the leader "
				       "(cluster.promote_lag is %llu): retry once it has caught up",
				       (unsigned long long)id, (unsigned long long)(st.last_lsn - match),
				       (unsigned long long)nd->cc->promote_lag);
		else
			x->voter = true;
		break;
	case SD_MEMBER_REMOVE: {
		uint32_t voters = 0;
		for (uint32_t i = 0; i < m.n; i++)
			voters += m.m[i].voter;
		if (!x)
			rc = st_seterr(err, ST_EINVAL, "node %llu is not a member", (unsigned long long)id);
		else if (id == st.self)
			rc = st_seterr(err, ST_EINVAL, "node %llu is the leader: move leadership first "
				       "(strata cluster transfer --to ID), then remove it",
				       (unsigned long long)id);
		else if (x->voter && voters == 1)
			rc = st_seterr(err, ST_EINVAL, "node %llu is the last voter",
				       (unsigned long long)id);
		else {
			*x = m.m[--m.n];
			m.removed[m.nremoved++] = id;
		}
		break;
	}
	default:
		rc = st_seterr(err, ST_EINVAL, "unknown membership change %d", op);
	}
	if (rc != ST_OK)
		goto out;
	rc = members_commit(nd, &m, err);
	if (rc == ST_OK)
		snprintf(msg, msglen, "node %llu %s", (unsigned long long)id,
			 op == SD_MEMBER_ADD ? "added as a learner: it receives the log and does not "
					       "vote until promoted"
			 : op == SD_MEMBER_PROMOTE ? "promoted to voter"
						   : "removed: it is sent nothing more and never "
						     "votes; stop it (its id is never reused)");
out:
	pthread_mutex_unlock(&nd->mlock);
	return rc;
}

/* Loop thread: force-promote (§13.1): this node the one voter, the other
 * members learners, in the core only; the election that follows bumps the
 * epoch and, alone, wins it. The upkeep thread then commits the record. */
static void force_local(struct sd_node *nd)
{
	struct sd_members m;
	struct st_err err;
	pthread_mutex_lock(&nd->plock);
	m = nd->mem;
	pthread_mutex_unlock(&nd->plock);
	for (uint32_t i = 0; i < m.n; i++)
		m.m[i].voter = m.m[i].id == nd->cc->node_id;
	if (!member_find(&m, nd->cc->node_id)) {
		sd_log(SD_LOG_WARN, "force-promote: this node is not a member");
	} else if (members_apply(nd, &m, &err) != ST_OK) {
		sd_log(SD_LOG_WARN, "force-promote: %s", err.msg);
	} else {
		__atomic_store_n(&nd->force_record, true, __ATOMIC_RELEASE);
		sd_log(SD_LOG_WARN, "force-promote: node %llu is now the only voter (the others are "
		       "learners until promoted again); it elects itself in a new epoch",
		       (unsigned long long)nd->cc->node_id);
	}
	__atomic_store_n(&nd->a_force, 2, __ATOMIC_RELEASE);
}

int sd_node_force_promote(struct sd_node *nd, char *msg, size_t msglen, struct st_err *err)
{
	struct sd_node_state st;
	sd_node_state(nd, &st);
	if (st.role == SD_ROLE_LEADER)
		return st_seterr(err, ST_EINVAL, "node %llu leads already: nothing to force",
				 (unsigned long long)st.self);
	if (st.role == SD_ROLE_REMOVED || st.role == SD_ROLE_FAILED)
		return st_seterr(err, ST_EINVAL, "node %llu is %s: it cannot lead",
				 (unsigned long long)st.self, sd_role_name(st.role));
	if (st.leader && st.contact_age_us < nd->election_us)
		return st_seterr(err, ST_EINVAL, "node %llu leads and was heard %lld ms ago: "
				 "force-promote is for a cluster that lost its quorum for good",
				 (unsigned long long)st.leader, (long long)(st.contact_age_us / 1000));
	int want = 0;
	if (!__atomic_compare_exchange_n(&nd->a_force, &want, 1, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		return st_seterr(err, ST_EBUSY, "a force-promote is under way already");
	link_wake(nd->l);
	while (__atomic_load_n(&nd->a_force, __ATOMIC_ACQUIRE) == 1) {
		struct timespec ts = {0, 10 * 1000000};
		nanosleep(&ts, NULL);
	}
	snprintf(msg, msglen, "node %llu is the only voter and elects itself in a new epoch (above "
		 "%llu). Its log ends at LSN %llu: what another node holds past it is lost when that "
		 "node rejoins (it is truncated there): writes acknowledged with durability local by "
		 "another node, and, when more than one voter was lost, writes acknowledged at quorum "
		 "by the lost ones. The other members are learners now: strata cluster promote them "
		 "when they are back", (unsigned long long)st.self, (unsigned long long)st.epoch,
		 (unsigned long long)st.last_lsn);
	return ST_OK;
}

/* The upkeep thread's part after a force-promote: once this node leads,
 * the forced membership becomes the log's record (so the others learn
 * they are learners, and a restart keeps it). */
static void record_forced(struct sd_node *nd)
{
	struct sd_node_state st;
	sd_node_state(nd, &st);
	if (!__atomic_load_n(&nd->force_record, __ATOMIC_ACQUIRE) || st.role != SD_ROLE_LEADER ||
	    !st.epoch_committed)
		return;
	struct sd_members m;
	struct st_err err;
	pthread_mutex_lock(&nd->mlock);
	pthread_mutex_lock(&nd->plock);
	m = nd->mem;
	pthread_mutex_unlock(&nd->plock);
	int rc = members_commit(nd, &m, &err);
	pthread_mutex_unlock(&nd->mlock);
	if (rc == ST_OK)
		__atomic_store_n(&nd->force_record, false, __ATOMIC_RELEASE);
	else
		sd_log(SD_LOG_WARN, "force-promote: recording the membership: %s", err.msg);
}

/* The upkeep thread's part: with cluster.auto_promote, a leader promotes
 * a learner that is within promote_lag. */
static void auto_promote(struct sd_node *nd)
{
	struct sd_node_state st;
	sd_node_state(nd, &st);
	if (!nd->cc->auto_promote || st.role != SD_ROLE_LEADER || !st.epoch_committed)
		return;
	uint64_t cand = 0;
	pthread_mutex_lock(&nd->plock);
	for (uint32_t i = 0; i < nd->mem.n && !cand; i++) {
		uint64_t id = nd->mem.m[i].id;
		if (!nd->mem.m[i].voter && st.last_lsn - nd->match[id] <= nd->cc->promote_lag &&
		    nd->match[id])
			cand = id;
	}
	pthread_mutex_unlock(&nd->plock);
	char msg[256];
	struct st_err err;
	if (cand && sd_node_member_change(nd, SD_MEMBER_PROMOTE, cand, NULL, NULL, msg, sizeof msg,
					  &err) == ST_OK)
		sd_log(SD_LOG_INFO, "membership: learner %llu caught up: %s",
		       (unsigned long long)cand, msg);
}

/* ---- the loop ---------------------------------------------------------- */

struct fetch_ctx {
	struct sd_node *nd;
	uint64_t from;
	int rc;
	struct st_err *err;
};

static int fetch_one(void *arg, uint64_t tid, uint64_t fid, uint64_t size, uint32_t crc)
{
	struct fetch_ctx *f = arg;
	char path[4096];
	struct stat st;
	st_segment_path(f->nd->s, tid, fid, path, sizeof path);
	if (stat(path, &st) == 0 && (uint64_t)st.st_size == size)
		return 0;
	char *slash = strrchr(path, '/');
	*slash = '\0';
	mkdir(path, 0755); /* the table may be created by an entry not yet applied */
	*slash = '/';
	f->rc = link_fetch_segment(f->nd->l, f->from, tid, fid, size, crc, path, f->err);
	return f->rc != ST_OK;
}

/* Every entry of an APPEND checked, and every segment file its entries
 * reference in place and durable, before the core may acknowledge them. */
static int fetch_segments(struct sd_node *nd, const struct raft_msg *m, struct st_err *err)
{
	struct fetch_ctx f = {nd, m->from, ST_OK, err};
	for (size_t i = 0; i < m->n_entries && f.rc == ST_OK; i++) {
		const struct raft_entry *e = &m->entries[i];
		if (!e->data || !e->len)
			continue;
		/* Refused before anything is persisted: a damaged or hostile
		 * body never reaches the log. */
		int rc = st_repl_body_check(e->data, e->len, e->lsn, err);
		if (rc == ST_OK)
			rc = st_repl_body_files(e->data, e->len, fetch_one, &f, err);
		if (rc != ST_OK)
			return rc;
	}
	return f.rc;
}

static void take_proposals(struct sd_node *nd)
{
	pthread_mutex_lock(&nd->qlock);
	struct proposal *p = nd->q;
	nd->q = nd->qtail = NULL;
	pthread_mutex_unlock(&nd->qlock);
	while (p) {
		struct proposal *next = p->next;
		struct raft_status st;
		uint64_t last;
		uint8_t hash[RAFT_HASH_LEN];
		raft_status(nd->r, &st);
		raft_last(nd->r, &last, hash);
		bool ok = st.role == RAFT_LEADER && !st.transferee && last + 1 == p->e[0].lsn;
		struct raft_entry *re = ok ? calloc(p->n, sizeof *re) : NULL;
		for (uint32_t i = 0; re && i < p->n; i++) {
			re[i].data = p->e[i].body;
			re[i].len = p->e[i].len;
			memcpy(re[i].hash, p->e[i].hash, RAFT_HASH_LEN);
		}
		uint64_t first = 0;
		/* One batch, one APPEND per peer (a group commit's entries). */
		ok = re && raft_propose_n(nd->r, re, p->n, &first) == ST_OK && first == p->e[0].lsn;
		free(re);
		if (!ok)
			st_repl_fail(nd->s, p->e[0].lsn);
		free(p->e);
		free(p);
		p = next;
	}
}

static void send_all(struct sd_node *nd, const struct raft_ready *rd)
{
	for (size_t i = 0; i < rd->n_msgs; i++) {
		size_t sent = 0;
		link_send(nd->l, &rd->msgs[i], entry_bytes, nd, &sent);
	}
}

/* Drain the core's Readies. Returns ST_OK, or an error that stops the node. */
static int drain(struct sd_node *nd, struct st_err *err)
{
	struct raft_ready rd;
	while (raft_ready(nd->r, &rd)) {
		int rc = ST_OK;
		if (rd.alarm) {
			uint64_t lsn = 0, from = 0;
			raft_alarm(nd->r, &lsn, &from);
			return st_seterr(err, ST_ECORRUPT,
					 "the log diverges from node %llu's at LSN %llu: this node "
					 "stops serving until an operator acts",
					 (unsigned long long)from, (unsigned long long)lsn);
		}
		bool hs_sync = rd.hs_changed &&
			       (rd.hs.epoch != nd->saved.epoch || rd.hs.vote != nd->saved.vote);
		/* A leader's APPENDs and heartbeats may leave before its own
		 * entries are durable (Raft thesis §10.2.1): it counts itself
		 * for a quorum from its durable log only (the core's `stable`),
		 * and promises nothing else. Votes wait for the hard state. */
		struct raft_status st;
		raft_status(nd->r, &st);
		bool early = st.role == RAFT_LEADER && !hs_sync;
		if (early)
			send_all(nd, &rd);
		if (hs_sync || rd.truncate_from || rd.n_entries) {
			struct st_repl_entry *e = rd.n_entries ? calloc(rd.n_entries, sizeof *e) : NULL;
			if (rd.n_entries && !e)
				return st_seterr(err, ST_ENOMEM, "out of memory");
			for (size_t i = 0; i < rd.n_entries; i++) {
				const struct raft_entry *r = &rd.entries[i];
				e[i] = (struct st_repl_entry){.lsn = r->lsn, .epoch = r->epoch,
							      .body = r->data, .len = r->len};
				memcpy(e[i].hash, r->hash, RAFT_HASH_LEN);
			}
			struct st_repl_hs hs = {rd.hs.epoch, rd.hs.vote, rd.hs.commit};
			rc = st_repl_persist(nd->s, hs_sync ? &hs : NULL, rd.truncate_from, e,
					     (uint32_t)rd.n_entries, err);
			free(e);
			if (rc != ST_OK)
				return rc;
		}
		nd->saved = rd.hs;
		if (!early)
			send_all(nd, &rd);
		if (rd.n_committed &&
		    (rc = st_repl_apply(nd->s, rd.committed[rd.n_committed - 1].lsn, err)) != ST_OK)
			return rc;
		raft_advance(nd->r);
		raft_release(nd->r, UINT64_MAX);
		if (st_repl_members_changed(nd->s) && (rc = members_reload(nd, err)) != ST_OK)
			return rc;
		publish(nd, false, NULL);
		st_repl_notify(nd->s);
	}
	return ST_OK;
}

/* Messages stepped before one drain of the Readies. */
#define LOOP_BURST 64

/* Feed one peer message to the core (its segments fetched first). */
static void step_one(struct sd_node *nd, const struct raft_msg *m)
{
	int64_t now = mono_us();
	if (m->from <= LINK_MAX_ID)
		nd->heard_us[m->from] = now;
	struct raft_status st;
	raft_status(nd->r, &st);
	if ((m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
	     m->type == RAFT_MSG_TIMEOUT_NOW) && m->epoch >= st.hs.epoch)
		nd->leader_contact_us = now;
	struct st_err ferr;
	if (m->type == RAFT_MSG_APPEND && m->n_entries && fetch_segments(nd, m, &ferr) != ST_OK)
		sd_log(SD_LOG_WARN, "replication: APPEND from node %llu refused: %s",
		       (unsigned long long)m->from, ferr.msg);
	else if (raft_step(nd->r, m) == ST_ENOMEM)
		sd_log(SD_LOG_WARN, "replication: out of memory on a message");
}

static void *loop(void *arg)
{
	struct sd_node *nd = arg;
	int64_t next_tick = mono_us() + nd->tick_us;
	struct st_err err = {0};
	int rc = ST_OK;
	while (!__atomic_load_n(&nd->stop, __ATOMIC_ACQUIRE) && rc == ST_OK) {
		int64_t now = mono_us(), wait = next_tick - now;
		struct raft_msg m;
		int got = link_recv(nd->l, wait > 0 ? (int)((wait + 999) / 1000) : 0, &m);
		/* Every message already here is stepped before the Readies are
		 * drained: one persist (one fsync) for a burst, not one each. */
		for (int burst = 1; got == 1; burst++) {
			step_one(nd, &m);
			got = burst < LOOP_BURST ? link_recv(nd->l, 0, &m) : 0;
		}
		now = mono_us();
		take_proposals(nd);
		if (__atomic_load_n(&nd->a_force, __ATOMIC_ACQUIRE) == 1)
			force_local(nd);
		uint64_t to = __atomic_exchange_n(&nd->a_transfer, 0, __ATOMIC_ACQ_REL);
		if (to && raft_transfer(nd->r, to) != ST_OK)
			sd_log(SD_LOG_WARN, "replication: transfer to node %llu refused",
			       (unsigned long long)to);
		while (now >= next_tick) {
			raft_tick(nd->r);
			next_tick += nd->tick_us;
			if (nd->ndepart)
				tell_departing(nd);
		}
		rc = drain(nd, &err);
		if (now - nd->unauth_checked_us >= 1000000) {
			struct link_stats ls;
			link_stats(nd->l, &ls);
			if (ls.unauthenticated > nd->unauth_logged)
				sd_log(SD_LOG_WARN, "replication: %llu peer messages refused since start: "
				       "not authenticated with this cluster's key (a node without "
				       "cluster.key_file, with another key, or a replay)",
				       (unsigned long long)ls.unauthenticated);
			nd->unauth_logged = ls.unauthenticated;
			nd->unauth_checked_us = now;
		}
		/* A leader hears itself: a staleness bound after it steps down
		 * counts from then, not from never. */
		struct raft_status me;
		raft_status(nd->r, &me);
		if (me.role == RAFT_LEADER)
			nd->leader_contact_us = mono_us();
		publish(nd, false, NULL);
	}
	if (rc != ST_OK) {
		sd_log(SD_LOG_ERROR, "replication stopped: %s", err.msg);
		publish(nd, true, err.msg);
		st_repl_fail(nd->s, 0);
	}
	return NULL;
}


/* ---- bootstrap of a joining node from a peer's snapshot (§14) ----------- */

static int load_key(const char *path, uint8_t key[32], struct st_err *err);

#define BOOT_BUSY_WAIT_US (120 * 1000000) /* a peer making its snapshot is waited for this long */

static bool file_has_size(const char *path, uint64_t size)
{
	struct stat st;
	return stat(path, &st) == 0 && (uint64_t)st.st_size == size;
}

static int write_marker(const char *dir, const char *name, struct st_err *err)
{
	char path[PATH_MAX + 16];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || fsync(fd) != 0 || close(fd) != 0 || st_io_fsync_dir(&st_io_posix, path) != 0)
		return st_seterr(err, errno, "cannot write %s: %s", path, strerror(errno));
	return ST_OK;
}

/* Every file of peer's snapshot into dir (resuming what is there), the
 * MANIFEST last, then checked whole. */
static int fetch_snapshot(struct link *l, uint64_t peer, const char *dir, struct st_err *err)
{
	char path[PATH_MAX + 300], part[PATH_MAX + 16];
	snprintf(part, sizeof part, "%s/MANIFEST.part", dir);
	unlink(part);
	int rc;
	int64_t until = mono_us() + BOOT_BUSY_WAIT_US;
	while ((rc = link_fetch_segment(l, peer, LINK_SNAPSHOT_TABLE, 0, LINK_SIZE_ANY, 0, part,
					err)) == ST_EBUSY && mono_us() < until) {
		struct timespec ts = {0, 200 * 1000000};
		nanosleep(&ts, NULL);
	}
	if (rc != ST_OK)
		return rc;
	snprintf(path, sizeof path, "%s/MANIFEST", dir);
	if (rename(part, path) != 0)
		return st_seterr(err, errno, "cannot rename %s: %s", part, strerror(errno));
	struct snap_file *files = NULL;
	size_t n = 0;
	if ((rc = manifest_files(dir, &files, &n, err)) != ST_OK)
		return rc;
	uint64_t bytes = 0;
	for (size_t i = 0; i < n; i++)
		bytes += files[i].size;
	sd_log(SD_LOG_INFO, "bootstrap: fetching node %llu's snapshot: %zu files, %.1f MB",
	       (unsigned long long)peer, n, (double)bytes / 1e6);
	for (size_t i = 0; i < n && rc == ST_OK; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, files[i].rel);
		for (char *p = path + strlen(dir) + 1; (p = strchr(p, '/')); p++) {
			*p = '\0';
			mkdir(path, 0755);
			*p = '/';
		}
		if (!file_has_size(path, files[i].size)) /* a resumed bootstrap has it */
			rc = link_fetch_segment(l, peer, LINK_SNAPSHOT_TABLE, i + 1, files[i].size,
						files[i].crc, path, err);
	}
	free(files);
	if (rc != ST_OK)
		return rc;
	struct st_backup_result r;
	char **problems = NULL;
	uint32_t np = 0;
	rc = st_backup_check(dir, &r, &problems, &np, err);
	if (rc == ST_OK && np)
		rc = st_seterr(err, ST_ECORRUPT, "node %llu's snapshot does not check: %s",
			       (unsigned long long)peer, problems[0]);
	for (uint32_t i = 0; i < np; i++)
		free(problems[i]);
	free(problems);
	return rc;
}

int sd_node_bootstrap(const struct sd_config *cfg, struct st_err *err)
{
	const struct sd_cluster *cc = &cfg->cluster;
	char boot[PATH_MAX], path[PATH_MAX + 32];
	struct stat st;
	int rc = ST_OK;
	snprintf(path, sizeof path, "%s/store/data.mdb", cfg->data_dir);
	if (!cc->enabled || !cc->join || stat(path, &st) == 0)
		return ST_OK; /* not joining, or joined already */
	snprintf(boot, sizeof boot, "%s.bootstrap", cfg->data_dir);
	snprintf(path, sizeof path, "%s/READY", boot);
	if (stat(path, &st) != 0) {
		struct link *l = NULL;
		struct link_config lc = {.self = cc->node_id, .max_message = cfg->max_message_size,
					 .fetch_timeout_ms = 10000};
		memcpy(lc.cluster, cc->cluster_id, 16);
		snprintf(lc.self_address, sizeof lc.self_address, "%s", cc->peer_listen);
		for (uint32_t i = 0; i < cc->npeers; i++) {
			lc.peers[i].id = cc->peers[i].id;
			snprintf(lc.peers[i].address, sizeof lc.peers[i].address, "%s",
				 cc->peers[i].peer);
		}
		lc.n_peers = cc->npeers;
		if (mkdir(boot, 0755) != 0 && errno != EEXIST)
			return st_seterr(err, errno, "cannot create %s: %s", boot, strerror(errno));
		if ((cc->key_file && (rc = load_key(cc->key_file, lc.key, err)) != ST_OK))
			return rc;
		lc.auth = cc->key_file != NULL;
		rc = link_open(&lc, &l, err);
		sodium_memzero(lc.key, sizeof lc.key);
		if (rc != ST_OK)
			return rc;
		rc = ST_EUNAVAIL;
		st_seterr(err, rc, "cluster.peers is empty: nobody to join");
		for (uint32_t i = 0; i < cc->npeers && rc != ST_OK; i++) {
			struct st_err e;
			rc = fetch_snapshot(l, cc->peers[i].id, boot, &e);
			if (rc == ST_OK)
				break;
			sd_log(SD_LOG_WARN, "bootstrap: from node %llu: %s",
			       (unsigned long long)cc->peers[i].id, e.msg);
			*err = e;
			if (rc == ST_ECORRUPT) { /* a damaged or changed copy: start over */
				rm_tree(boot);
				mkdir(boot, 0755);
			}
		}
		link_close(l);
		if (rc != ST_OK)
			return st_seterr(err, rc, "cannot bootstrap from any peer (was it added with "
					 "strata cluster add first?): %s", err->msg);
		/* The snapshot becomes this node's before it is put in place. */
		st_store *s = NULL;
		if ((rc = st_store_open(boot, NULL, &s, err)) == ST_OK)
			rc = st_repl_adopt(s, cc->node_id, cc->cluster_id, err);
		st_store_close(s);
		if (rc == ST_OK)
			rc = write_marker(boot, "READY", err);
		if (rc != ST_OK)
			return rc;
	}
	/* Installed by one rename: the old (empty) state or the new one. */
	rmdir(cfg->data_dir); /* an empty one; anything else makes the rename fail */
	if (rename(boot, cfg->data_dir) != 0 || st_io_fsync_dir(&st_io_posix, cfg->data_dir) != 0)
		return st_seterr(err, errno, "cannot install the snapshot as %s: %s (is it a "
				 "non-empty directory?)", cfg->data_dir, strerror(errno));
	snprintf(path, sizeof path, "%s/READY", cfg->data_dir);
	unlink(path);
	snprintf(path, sizeof path, "%s/MANIFEST", cfg->data_dir);
	unlink(path);
	sd_log(SD_LOG_INFO, "bootstrap: the snapshot is installed as %s; replaying the log from "
	       "its LSN", cfg->data_dir);
	return ST_OK;
}

/* ---- start and stop ---------------------------------------------------- */

struct reload {
	struct raft_entry *e;
	size_t n, cap;
	int rc;
};

static int reload_one(void *arg, const struct st_repl_entry *e)
{
	struct reload *r = arg;
	if (r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 1024;
		struct raft_entry *g = realloc(r->e, cap * sizeof *g);
		if (!g) {
			r->rc = ST_ENOMEM;
			return 1;
		}
		r->e = g;
		r->cap = cap;
	}
	/* Data stays in the store: the core needs LSN, epoch and hash. */
	struct raft_entry *x = &r->e[r->n++];
	*x = (struct raft_entry){.lsn = e->lsn, .epoch = e->epoch, .data = NULL, .len = e->len};
	memcpy(x->hash, e->hash, RAFT_HASH_LEN);
	return 0;
}

/* The cluster key from path: 32 bytes, or 64 hex digits (and whitespace). */
static int load_key(const char *path, uint8_t key[32], struct st_err *err)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return st_seterr(err, errno, "cluster.key_file %s: %s", path, strerror(errno));
	uint8_t buf[256];
	size_t n = fread(buf, 1, sizeof buf, f);
	struct stat st;
	bool open_to_all = fstat(fileno(f), &st) == 0 && (st.st_mode & 077);
	fclose(f);
	if (n == 32) {
		memcpy(key, buf, 32);
	} else {
		while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
			n--;
		size_t bin = 0;
		if (n != 64 || sodium_hex2bin(key, 32, (const char *)buf, 64, NULL, &bin, NULL) != 0 ||
		    bin != 32)
			return st_seterr(err, ST_EINVAL, "cluster.key_file %s: a cluster key is 32 bytes "
					 "(head -c 32 /dev/urandom > FILE) or 64 hex digits; this file "
					 "holds %zu bytes", path, n);
	}
	sodium_memzero(buf, sizeof buf);
	if (open_to_all)
		sd_log(SD_LOG_WARN, "cluster.key_file %s can be read by other users: chmod 600 it",
		       path);
	return ST_OK;
}

/* ---- repair from peers (STORE.md §8; REPLICATION.md §6) ------------------ */

#define REPAIR_POLL_US 500000      /* the damaged-segment list is read this often */
#define REPAIR_RETRY_US 2000000    /* a failed repair is tried again after this, doubling */
#define REPAIR_RETRY_MAX_US 300000000

static struct retry *retry_slot(struct sd_node *nd, const struct st_bad_segment *b)
{
	struct retry *free_slot = NULL, *oldest = &nd->retry[0];
	for (size_t i = 0; i < sizeof nd->retry / sizeof nd->retry[0]; i++) {
		struct retry *r = &nd->retry[i];
		if (r->tid == b->tid && r->fid == b->fid && r->wait_us)
			return r;
		if (!r->wait_us && !free_slot)
			free_slot = r;
		if (r->next_us < oldest->next_us)
			oldest = r;
	}
	struct retry *r = free_slot ? free_slot : oldest;
	*r = (struct retry){b->tid, b->fid, 0, 0};
	return r;
}

/* Fetch a good copy of b from a peer (the leader first) and put it in
 * place; true when repaired. */
static bool repair_one(struct sd_node *nd, const struct st_bad_segment *b)
{
	char path[4096], fetched[4200];
	st_segment_path(nd->s, b->tid, b->fid, path, sizeof path);
	snprintf(fetched, sizeof fetched, "%s.repair", path);
	uint64_t leader = __atomic_load_n(&nd->a_leader, __ATOMIC_ACQUIRE), order[RAFT_MAX_NODES];
	size_t n = 0;
	pthread_mutex_lock(&nd->plock);
	if (leader && leader != nd->ids[0])
		order[n++] = leader;
	for (size_t i = 1; i < nd->nids; i++)
		if (nd->ids[i] != leader)
			order[n++] = nd->ids[i];
	pthread_mutex_unlock(&nd->plock);
	for (size_t i = 0; i < n && !__atomic_load_n(&nd->stop, __ATOMIC_ACQUIRE); i++) {
		struct st_err err;
		int rc = link_fetch_segment(nd->l, order[i], b->tid, b->fid, b->size, b->crc, fetched,
					    &err);
		if (rc == ST_OK)
			rc = st_segment_repair(nd->s, b->tid, b->fid, fetched, &err);
		if (rc == ST_OK) {
			__atomic_add_fetch(&nd->a_repaired, 1, __ATOMIC_RELAXED);
			sd_log(SD_LOG_WARN, "repair: segment %llu of table id %llu was damaged here; "
			       "replaced with node %llu's copy (%llu bytes, CRC32C %08x as its commit "
			       "records)", (unsigned long long)b->fid, (unsigned long long)b->tid,
			       (unsigned long long)order[i], (unsigned long long)b->size, b->crc);
			return true;
		}
		__atomic_add_fetch(&nd->a_repair_failures, 1, __ATOMIC_RELAXED);
		sd_log(SD_LOG_WARN, "repair: segment %llu of table id %llu from node %llu: %s",
		       (unsigned long long)b->fid, (unsigned long long)b->tid,
		       (unsigned long long)order[i], err.msg);
	}
	return false;
}

/* The repair thread: every damaged segment file the store knows of is
 * fetched from a peer that has a good copy, verified against the size and
 * CRC32C its commit recorded and chunk by chunk, and put in place; its
 * table is served again when that was its only damage. Off the replication
 * loop: a fetch may take seconds. */
static void *repair_loop(void *arg)
{
	struct sd_node *nd = arg;
	while (!__atomic_load_n(&nd->stop, __ATOMIC_ACQUIRE)) {
		struct timespec ts = {0, REPAIR_POLL_US * 1000};
		nanosleep(&ts, NULL);
		make_snapshot(nd);
		record_forced(nd);
		auto_promote(nd);
		struct st_bad_segment bad[16];
		uint32_t n = st_bad_segments(nd->s, bad, 16);
		for (uint32_t i = 0; i < n && i < 16 && !__atomic_load_n(&nd->stop, __ATOMIC_ACQUIRE);
		     i++) {
			struct retry *r = retry_slot(nd, &bad[i]);
			int64_t now = mono_us();
			if (r->wait_us && now < r->next_us)
				continue;
			if (repair_one(nd, &bad[i])) {
				r->wait_us = 0;
				continue;
			}
			r->wait_us = r->wait_us ? 2 * r->wait_us : REPAIR_RETRY_US;
			if (r->wait_us > REPAIR_RETRY_MAX_US)
				r->wait_us = REPAIR_RETRY_MAX_US;
			r->next_us = mono_us() + r->wait_us;
		}
	}
	return NULL;
}

void sd_node_repairs(struct sd_node *nd, uint64_t *repaired, uint64_t *failures,
		     uint64_t *pending)
{
	*repaired = __atomic_load_n(&nd->a_repaired, __ATOMIC_RELAXED);
	*failures = __atomic_load_n(&nd->a_repair_failures, __ATOMIC_RELAXED);
	struct st_bad_segment one;
	*pending = st_bad_segments(nd->s, &one, 0);
}

int sd_node_start(st_store *s, const struct sd_config *cfg, struct sd_node **out,
		  struct st_err *err)
{
	const struct sd_cluster *cc = &cfg->cluster;
	struct sd_node *nd = calloc(1, sizeof *nd);
	struct reload rl = {0};
	int rc;
	*out = NULL;
	if (!nd)
		return st_seterr(err, ST_ENOMEM, "out of memory");
	nd->s = s;
	nd->cfg = cfg;
	nd->cc = cc;
	nd->tick_us = cc->heartbeat_us;
	nd->election_us = cc->election_timeout_us;
	pthread_mutex_init(&nd->qlock, NULL);
	pthread_mutex_init(&nd->plock, NULL);
	pthread_mutex_init(&nd->mlock, NULL);
	pthread_mutex_init(&nd->slock, NULL);
	{
		char snaps[PATH_MAX];
		snprintf(snaps, sizeof snaps, "%s/snapshots", cfg->data_dir);
		rm_tree(snaps); /* a snapshot is served by the process that made it */
	}
	if ((rc = st_repl_identity(s, cc->node_id, cc->cluster_id, err)) != ST_OK)
		goto fail;
	/* The membership: the log's record once there is one, else the config's. */
	struct sd_members mem;
	struct st_buf mb = {0};
	rc = st_repl_members_get(s, &mb, err);
	if (rc == ST_OK)
		rc = members_decode(mb.data, mb.len, &mem, err);
	st_buf_free(&mb);
	if (rc == ST_ENOTFOUND)
		members_from_config(nd, &mem);
	else if (rc != ST_OK)
		goto fail;
	else
		sd_log(SD_LOG_INFO, "membership: %u members from the replicated log (cluster.peers "
		       "is used only before the first change)", mem.n);
	uint64_t voters[RAFT_MAX_NODES], learners[RAFT_MAX_NODES];
	size_t nv = 0, nl = 0;
	for (uint32_t i = 0; i < mem.n; i++) {
		if (mem.m[i].voter)
			voters[nv++] = mem.m[i].id;
		else
			learners[nl++] = mem.m[i].id;
	}
	if (!member_find(&mem, cc->node_id))
		learners[nl++] = cc->node_id; /* members_apply says which: removed or joining */
	struct st_repl_hs hs;
	if ((rc = st_repl_hs_load(s, &hs, err)) != ST_OK ||
	    (rc = st_repl_log_each(s, reload_one, &rl, err)) != ST_OK)
		goto fail;
	if (rl.rc != ST_OK) {
		rc = st_seterr(err, rl.rc, "out of memory reloading the log");
		goto fail;
	}
	if (hs.commit > rl.n)
		hs.commit = rl.n; /* may lag; never trusted upward */
	struct raft_hard_state rhs = {hs.epoch, hs.vote, hs.commit};
	unsigned eticks = (unsigned)(cc->election_timeout_us / cc->heartbeat_us);
	struct raft_config rcfg = {
		.self = cc->node_id,
		.voters = voters,
		.n_voters = nv,
		.learners = learners,
		.n_learners = nl,
		.election_ticks = eticks < 2 ? 2 : eticks,
		.heartbeat_ticks = 1,
		.seed = cc->node_id * 0x9e3779b97f4a7c15ull ^ (uint64_t)mono_us(),
		.max_append = 256,
		.hash_fn = noop_hash,
		.hash_ctx = nd,
		.hs = &rhs,
		.entries = rl.e,
		.n_entries = rl.n,
	};
	nd->saved = rhs;
	if ((rc = raft_new(&rcfg, &nd->r, err)) != ST_OK)
		goto fail;
	free(rl.e);
	rl.e = NULL;
	struct link_config lc = {.self = cc->node_id, .max_message = cfg->max_message_size};
	memcpy(lc.cluster, cc->cluster_id, 16);
	snprintf(lc.self_address, sizeof lc.self_address, "%s", cc->peer_listen);
	if (cc->key_file && (rc = load_key(cc->key_file, lc.key, err)) != ST_OK)
		goto fail;
	lc.auth = cc->key_file != NULL;
	rc = link_open(&lc, &nd->l, err);
	sodium_memzero(lc.key, sizeof lc.key);
	if (rc != ST_OK)
		goto fail;
	if (!lc.auth)
		sd_log(SD_LOG_INFO, "replication: peer messages are not authenticated (no "
		       "cluster.key_file): run the cluster on a trusted network only");
	link_serve_segments(nd->l, seg_read, nd);
	if ((rc = members_apply(nd, &mem, err)) != ST_OK) /* the peer links */
		goto fail;
	publish(nd, false, NULL);
	struct st_repl_hooks h = {.ctx = nd, .propose = hook_propose, .stable = hook_stable,
				  .all_matched = hook_all, .log_last = hook_last,
				  .min_match = hook_min_match,
				  .timeout_us = cc->write_timeout_us, .durability = (int)cc->durability};
	if ((rc = st_repl_attach(s, &h, err)) != ST_OK)
		goto fail;
	if (pthread_create(&nd->th, NULL, loop, nd) != 0) {
		rc = st_seterr(err, errno, "cannot start the replication thread");
		goto fail;
	}
	nd->started = true;
	if (pthread_create(&nd->rth, NULL, repair_loop, nd) != 0) {
		rc = st_seterr(err, errno, "cannot start the repair thread");
		goto fail;
	}
	nd->rstarted = true;
	*out = nd;
	return ST_OK;
fail:
	free(rl.e);
	sd_node_stop(nd);
	return rc;
}

void sd_node_stop(struct sd_node *nd)
{
	if (!nd)
		return;
	__atomic_store_n(&nd->stop, 1, __ATOMIC_RELEASE);
	if (nd->rstarted)
		pthread_join(nd->rth, NULL);
	if (nd->started) {
		link_wake(nd->l);
		pthread_join(nd->th, NULL);
	}
	/* Writers still waiting fail rather than wait for a loop that is gone. */
	__atomic_store_n(&nd->a_role, -1, __ATOMIC_RELEASE);
	if (nd->started)
		st_repl_fail(nd->s, 0);
	link_close(nd->l);
	raft_free(nd->r);
	for (struct proposal *p = nd->q, *next; p; p = next) {
		next = p->next;
		free(p->e);
		free(p);
	}
	pthread_mutex_destroy(&nd->qlock);
	pthread_mutex_destroy(&nd->plock);
	pthread_mutex_destroy(&nd->mlock);
	pthread_mutex_destroy(&nd->slock);
	if (nd->snap_ready) {
		char snaps[PATH_MAX];
		snprintf(snaps, sizeof snaps, "%s/snapshots", nd->cfg->data_dir);
		rm_tree(snaps);
	}
	free(nd->snap_files);
	free(nd);
}

/* ---- server threads ---------------------------------------------------- */

void sd_node_state(struct sd_node *nd, struct sd_node_state *st)
{
	pthread_mutex_lock(&nd->plock);
	*st = nd->pub;
	pthread_mutex_unlock(&nd->plock);
	st->applied = st_repl_applied(nd->s);
}

const char *sd_node_client(const struct sd_node *nd, uint64_t id)
{
	const struct sd_cluster *cc = nd->cc;
	if (id == cc->node_id) {
		for (uint32_t i = 0; i < nd->cfg->nlisten; i++)
			if (!strncmp(nd->cfg->listen[i], "tcp://", 6))
				return nd->cfg->listen[i];
		return nd->cfg->nlisten ? nd->cfg->listen[0] : "";
	}
	return id <= LINK_MAX_ID ? nd->client_of[id] : "";
}

size_t sd_node_peers(struct sd_node *nd, struct sd_node_peer *out, size_t max)
{
	int64_t now = mono_us();
	size_t n = 0;
	struct link_stats ls;
	link_stats(nd->l, &ls);
	pthread_mutex_lock(&nd->plock);
	for (size_t i = 0; i < nd->nids && n < max; i++, n++) {
		uint64_t id = nd->ids[i];
		out[n].id = id;
		out[n].client = sd_node_client(nd, id);
		out[n].match = nd->match[id];
		out[n].contact_ms = i == 0 ? 0
				    : nd->heard_pub[id] ? (now - nd->heard_pub[id]) / 1000
							: -1;
		out[n].bytes_sent = i == 0 ? 0 : ls.bytes_sent[id - 1];
		out[n].voter = false;
		for (uint32_t k = 0; k < nd->mem.n; k++)
			if (nd->mem.m[k].id == id)
				out[n].voter = nd->mem.m[k].voter;
	}
	pthread_mutex_unlock(&nd->plock);
	return n;
}

int sd_node_transfer(struct sd_node *nd, uint64_t to, struct st_err *err)
{
	struct sd_node_state st;
	sd_node_state(nd, &st);
	if (st.role != SD_ROLE_LEADER)
		return st.leader ? st_seterr(err, ST_ENOTLEADER, "not the leader: node %llu leads",
					     (unsigned long long)st.leader)
				 : st_seterr(err, ST_ENOTLEADER, "not the leader; no leader known");
	pthread_mutex_lock(&nd->plock);
	size_t at = id_index(nd, to);
	pthread_mutex_unlock(&nd->plock);
	if (to == nd->cc->node_id || at == SIZE_MAX)
		return st_seterr(err, ST_EINVAL, "node %llu is %s", (unsigned long long)to,
				 to == nd->cc->node_id ? "this node, the leader already"
						       : "not a member of the cluster");
	/* The core belongs to the loop thread: it takes the request there. */
	__atomic_store_n(&nd->a_transfer, to, __ATOMIC_RELEASE);
	link_wake(nd->l);
	return ST_OK;
}

void sd_node_cluster_hex(const struct sd_node *nd, char out[33])
{
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", nd->cc->cluster_id[i]);
}

uint64_t sd_node_bytes_sent(struct sd_node *nd)
{
	struct link_stats ls;
	link_stats(nd->l, &ls);
	uint64_t b = 0;
	for (size_t i = 0; i < sizeof ls.bytes_sent / sizeof ls.bytes_sent[0]; i++)
		b += ls.bytes_sent[i];
	return b;
}

int64_t sd_node_heartbeat_us(const struct sd_node *nd)
{
	return nd->cc->heartbeat_us;
}

int64_t sd_node_timeout_us(const struct sd_node *nd)
{
	return nd->cc->write_timeout_us;
}

int64_t sd_node_max_staleness_us(const struct sd_node *nd)
{
	return nd->cc->max_staleness_us;
}
