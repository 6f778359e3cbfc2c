/*
 * daemon/server/cluster.c — the replication driver (see cluster.h; its
 * membership changes are members.c, its snapshots snapshot.c).
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "daemon/server/log.h"
#include "format/bytes.h"
#include "format/crc32c.h"
#include "format/io.h"
#include "replication/link.h"
#include "replication/raft.h"
#include "daemon/server/cluster_int.h"

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

int cl_entry_bytes(void *ctx, uint64_t lsn, struct st_buf *out, struct st_err *err)
{
	struct sd_node *nd = ctx;
	return st_repl_log_get(nd->s, lsn, out, err);
}

static int seg_read(void *ctx, uint64_t table, uint64_t file, uint64_t off, void *buf, size_t len,
		    size_t *got, uint64_t *file_size, uint32_t *file_crc, struct st_err *err)
{
	struct sd_node *nd = ctx;
	if (table == LINK_SNAPSHOT_TABLE)
		return cl_snap_read(nd, file, off, buf, len, got, file_size, file_crc, err);
	char path[4096];
	st_segment_path(nd->s, table, file, path, sizeof path);
	return cl_read_chunk(nd, path, table, file, 0, off, buf, len, got, file_size, file_crc, err);
}


/* ---- state ------------------------------------------------------------- */

size_t cl_id_index(const struct sd_node *nd, uint64_t id)
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
	int64_t now = cl_mono_us();
	uint64_t all = UINT64_MAX, stable = 0;
	size_t voters = 0, nacked = 0;
	int64_t acked[RAFT_MAX_NODES];
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
			if (i > 0 && nd->acked_epoch[id] == st.hs.epoch && nd->acked_us[id])
				acked[nacked++] = nd->acked_us[id];
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
	/* The lease (REPLICATION.md §8): with voters / 2 other voters' answers
	 * to heartbeats sent at or after time t, a majority counting this node
	 * grants no vote before t + an election timeout (on their clocks), so
	 * no other leader exists before t + half of it on ours. Sent times,
	 * not receipt times: answers that queued while this node was paused
	 * must not renew it. */
	size_t need = voters / 2;
	for (size_t i = 1; i < nacked; i++) /* descending */
		for (size_t j = i; j > 0 && acked[j] > acked[j - 1]; j--) {
			int64_t t = acked[j];
			acked[j] = acked[j - 1];
			acked[j - 1] = t;
		}
	nd->lease_until_us = st.role != RAFT_LEADER || nd->no_lease_epoch == st.hs.epoch ? 0
			     : need == 0	     ? INT64_MAX
			     : nacked >= need	     ? acked[need - 1] + nd->election_us / 2
						     : 0;
	const struct raft_entry *ce = raft_entry_at(nd->r, st.hs.commit);
	p->epoch_committed = st.role == RAFT_LEADER && ce && ce->epoch == st.hs.epoch;
	if (why)
		snprintf(p->failure, sizeof p->failure, "%s", why);
	memcpy(nd->match, match, sizeof match);
	memcpy(nd->heard_pub, nd->heard_us, sizeof nd->heard_us);
	pthread_mutex_unlock(&nd->plock);
}


/* ---- the loop ---------------------------------------------------------- */

struct fetch_ctx {
	struct sd_node *nd;
	uint64_t from;
	int rc;
	struct st_err *err;
};

static int fetch_one(void *arg, const struct st_repl_file *r)
{
	struct fetch_ctx *f = arg;
	char path[4096], base[4096];
	struct stat st;
	st_segment_path(f->nd->s, r->tid, r->fid, path, sizeof path);
	if (stat(path, &st) == 0 && (uint64_t)st.st_size == r->size)
		return 0;
	/* A file re-added with a deletion vector shares its segment: a hard
	 * link of this node's copy of the file it was made from (the same
	 * bytes, checked when that one was fetched), when it has one. */
	if (r->base) {
		st_segment_path(f->nd->s, r->tid, r->base, base, sizeof base);
		if (stat(base, &st) == 0 && (uint64_t)st.st_size == r->size &&
		    link(base, path) == 0) {
			int e = st_io_fsync_dir(&st_io_posix, path);
			if (!e)
				return 0;
			f->rc = st_seterr(f->err, e, "fsync of the directory of '%s': %s", path,
					  strerror(e));
			return 1;
		}
	}
	char *slash = strrchr(path, '/');
	*slash = '\0';
	mkdir(path, 0755); /* the table may be created by an entry not yet applied */
	*slash = '/';
	f->rc = link_fetch_segment(f->nd->l, f->from, r->tid, r->fid, r->size, r->crc, path, f->err);
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
			rc = st_repl_body_segments(e->data, e->len, fetch_one, &f, err);
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
			re[i].more = st_repl_entry_more(p->e[i].body, p->e[i].len);
			memcpy(re[i].hash, p->e[i].hash, RAFT_HASH_LEN);
		}
		uint64_t first = 0;
		/* One batch, one APPEND per peer (a group commit's entries). */
		ok = re && raft_propose_n(nd->r, re, p->n, &first) == ST_OK && first == p->e[0].lsn;
		free(re);
		if (!ok)
			st_repl_fail(nd->s, p->e[0].lsn, p->e[0].hash);
		free(p->e);
		free(p);
		p = next;
	}
}

static void send_all(struct sd_node *nd, const struct raft_ready *rd)
{
	int64_t now = cl_mono_us();
	for (size_t i = 0; i < rd->n_msgs; i++) {
		size_t sent = 0;
		struct raft_msg m = rd->msgs[i];
		if (m.type == RAFT_MSG_HEARTBEAT)
			m.ctx = (uint64_t)now; /* echoed: the lease counts from here */
		if (link_send(nd->l, &m, cl_entry_bytes, nd, &sent) == ST_ETOOBIG &&
		    now - nd->toobig_logged_us >= 10000000) {
			nd->toobig_logged_us = now;
			sd_log(SD_LOG_WARN, "replication: entries from LSN %llu cannot be sent to node "
			       "%llu: that entry (or its atomic unit) is above max_message_size; raise "
			       "it on every node", (unsigned long long)m.prev_lsn + 1,
			       (unsigned long long)m.to);
		}
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
		if (st_repl_members_changed(nd->s) && (rc = cl_members_reload(nd, err)) != ST_OK)
			return rc;
		publish(nd, false, NULL);
		st_repl_notify(nd->s);
	}
	return ST_OK;
}

/* Messages stepped before one drain of the Readies. */
#define LOOP_BURST 64
/* A leader's file missing this long means this node fell behind vacuum. */
#define GONE_US (3 * 1000000)

/* Feed one peer message to the core (its segments fetched first). */
static void step_one(struct sd_node *nd, const struct raft_msg *m)
{
	int64_t now = cl_mono_us();
	if (m->from <= LINK_MAX_ID)
		nd->heard_us[m->from] = now;
	struct raft_status st;
	raft_status(nd->r, &st);
	/* An answer to this leader's heartbeat, in its epoch: when that
	 * heartbeat was sent (never later than now: the context is ours). */
	if (m->type == RAFT_MSG_HEARTBEAT_RESP && m->from <= LINK_MAX_ID && st.role == RAFT_LEADER &&
	    m->epoch == st.hs.epoch && m->ctx && (int64_t)m->ctx <= now &&
	    (nd->acked_epoch[m->from] != m->epoch || (int64_t)m->ctx > nd->acked_us[m->from])) {
		nd->acked_us[m->from] = (int64_t)m->ctx;
		nd->acked_epoch[m->from] = m->epoch;
	}
	if ((m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
	     m->type == RAFT_MSG_TIMEOUT_NOW) && m->epoch >= st.hs.epoch)
		nd->leader_contact_us = now;
	struct st_err ferr;
	int frc = m->type == RAFT_MSG_APPEND && m->n_entries ? fetch_segments(nd, m, &ferr) : ST_OK;
	if (frc != ST_OK) {
		sd_log(SD_LOG_WARN, "replication: APPEND from node %llu refused: %s",
		       (unsigned long long)m->from, ferr.msg);
		/* The leader no longer has a file its entries name: vacuum removed
		 * it while this node was behind the lag budget (§6). Seen again
		 * and again for GONE_US, this node needs a snapshot. */
		if (frc == ST_ENOTFOUND && m->epoch >= st.hs.epoch) {
			if (!nd->gone_since_us)
				nd->gone_since_us = now;
			if (now - nd->gone_since_us >= GONE_US && !nd->need_snapshot[0])
				snprintf(nd->need_snapshot, sizeof nd->need_snapshot, "%s", ferr.msg);
		}
	} else {
		if (m->type == RAFT_MSG_APPEND && m->n_entries)
			nd->gone_since_us = 0;
		if (raft_step(nd->r, m) == ST_ENOMEM)
			sd_log(SD_LOG_WARN, "replication: out of memory on a message");
	}
}

/* Stop, marked for a bootstrap from a peer's snapshot under this node's
 * id at the next start (snapshot.c, REPLICATION.md §14): what it persisted
 * of its hard state and log is kept through it. */
static int mark_resnapshot(struct sd_node *nd, struct st_err *err)
{
	struct raft_status st;
	raft_status(nd->r, &st);
	struct st_repl_keep k = {nd->saved.epoch, nd->saved.vote, st.last_lsn};
	int rc = cl_mark_resnapshot(nd->cfg->data_dir, &k, nd->need_snapshot, err);
	if (rc != ST_OK)
		return rc;
	return st_seterr(err, ST_EUNAVAIL,
			 "fell behind the leader's vacuum (%s): this node needs a snapshot; "
			 "restart stratad and it bootstraps from a peer under the same id",
			 nd->need_snapshot);
}

static void *loop(void *arg)
{
	struct sd_node *nd = arg;
	int64_t next_tick = cl_mono_us() + nd->tick_us;
	struct st_err err = {0};
	int rc = ST_OK;
	while (!__atomic_load_n(&nd->stop, __ATOMIC_ACQUIRE) && rc == ST_OK) {
		int64_t now = cl_mono_us(), wait = next_tick - now;
		struct raft_msg m;
		int got = link_recv(nd->l, wait > 0 ? (int)((wait + 999) / 1000) : 0, &m);
		/* Every message already here is stepped before the Readies are
		 * drained: one persist (one fsync) for a burst, not one each. */
		for (int burst = 1; got == 1; burst++) {
			step_one(nd, &m);
			got = burst < LOOP_BURST ? link_recv(nd->l, 0, &m) : 0;
		}
		now = cl_mono_us();
		take_proposals(nd);
		if (__atomic_load_n(&nd->a_force, __ATOMIC_ACQUIRE) == 1)
			cl_force_local(nd);
		uint64_t to = __atomic_exchange_n(&nd->a_transfer, 0, __ATOMIC_ACQ_REL);
		if (to && raft_transfer(nd->r, to) != ST_OK) {
			sd_log(SD_LOG_WARN, "replication: transfer to node %llu refused",
			       (unsigned long long)to);
		} else if (to) {
			/* The target's forced vote overrides the followers' leader
			 * stickiness: no lease for the rest of this epoch, ended
			 * before TIMEOUT_NOW can leave. */
			struct raft_status ts;
			raft_status(nd->r, &ts);
			pthread_mutex_lock(&nd->plock);
			nd->lease_until_us = 0;
			nd->no_lease_epoch = ts.hs.epoch;
			pthread_mutex_unlock(&nd->plock);
		}
		while (now >= next_tick) {
			raft_tick(nd->r);
			next_tick += nd->tick_us;
			if (nd->ndepart)
				cl_tell_departing(nd);
		}
		rc = drain(nd, &err);
		/* A store that failed outside the log (an I/O error writing a
		 * segment, before any entry was proposed) stops the driver too: a
		 * leader that can no longer write must not go on heartbeating,
		 * and a follower that cannot persist must not vote. */
		char why[ST_ERR_MSG_MAX];
		if (rc == ST_OK && st_store_failure(nd->s, why, sizeof why))
			rc = st_seterr(&err, ST_EFAILED, "the store failed: %s", why);
		if (rc == ST_OK && nd->need_snapshot[0])
			rc = mark_resnapshot(nd, &err);
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
			nd->leader_contact_us = cl_mono_us();
		publish(nd, false, NULL);
	}
	if (rc != ST_OK) {
		sd_log(SD_LOG_ERROR, "replication stopped: %s", err.msg);
		publish(nd, true, err.msg);
		st_repl_fail(nd->s, 0, NULL);
	}
	return NULL;
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
	*x = (struct raft_entry){.lsn = e->lsn, .epoch = e->epoch, .data = NULL, .len = e->len,
				 .more = st_repl_entry_more(e->body, e->len)};
	memcpy(x->hash, e->hash, RAFT_HASH_LEN);
	return 0;
}

/* The cluster key from path: 32 bytes, or 64 hex digits (and whitespace). */
int cl_load_key(const char *path, uint8_t key[32], struct st_err *err)
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

int cl_link_open(const struct sd_config *cfg, bool with_peers, int fetch_timeout_ms,
		 struct link **out, struct st_err *err)
{
	const struct sd_cluster *cc = &cfg->cluster;
	struct link_config lc = {.self = cc->node_id, .max_message = cfg->max_message_size,
				 .fetch_timeout_ms = fetch_timeout_ms, .auth = cc->key_file != NULL};
	int rc = ST_OK;
	memcpy(lc.cluster, cc->cluster_id, 16);
	snprintf(lc.self_address, sizeof lc.self_address, "%s", cc->peer_listen);
	for (uint32_t i = 0; with_peers && i < cc->npeers; i++, lc.n_peers++) {
		lc.peers[i].id = cc->peers[i].id;
		snprintf(lc.peers[i].address, sizeof lc.peers[i].address, "%s", cc->peers[i].peer);
	}
	if (cc->key_file)
		rc = cl_load_key(cc->key_file, lc.key, err);
	if (rc == ST_OK)
		rc = link_open(&lc, out, err);
	sodium_memzero(lc.key, sizeof lc.key);
	return rc;
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
		cl_make_snapshot(nd);
		cl_record_forced(nd);
		cl_auto_promote(nd);
		struct st_bad_segment bad[16];
		uint32_t n = st_bad_segments(nd->s, bad, 16);
		for (uint32_t i = 0; i < n && i < 16 && !__atomic_load_n(&nd->stop, __ATOMIC_ACQUIRE);
		     i++) {
			struct retry *r = retry_slot(nd, &bad[i]);
			int64_t now = cl_mono_us();
			if (r->wait_us && now < r->next_us)
				continue;
			if (repair_one(nd, &bad[i])) {
				r->wait_us = 0;
				continue;
			}
			r->wait_us = r->wait_us ? 2 * r->wait_us : REPAIR_RETRY_US;
			if (r->wait_us > REPAIR_RETRY_MAX_US)
				r->wait_us = REPAIR_RETRY_MAX_US;
			r->next_us = cl_mono_us() + r->wait_us;
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
		cl_rm_tree(snaps); /* a snapshot is served by the process that made it */
	}
	if ((rc = st_repl_identity(s, cc->node_id, cc->cluster_id, err)) != ST_OK)
		goto fail;
	/* The membership: the log's record once there is one, else the config's. */
	struct sd_members mem;
	struct st_buf mb = {0};
	rc = st_repl_members_get(s, &mb, err);
	if (rc == ST_OK)
		rc = cl_members_decode(mb.data, mb.len, &mem, err);
	st_buf_free(&mb);
	if (rc == ST_ENOTFOUND)
		cl_members_from_config(nd, &mem);
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
	if (!cl_member_find(&mem, cc->node_id))
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
		.seed = cc->node_id * 0x9e3779b97f4a7c15ull ^ (uint64_t)cl_mono_us(),
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
	if ((rc = cl_link_open(cfg, false, 0, &nd->l, err)) != ST_OK) /* peers: members_apply */
		goto fail;
	if (!cc->key_file)
		sd_log(SD_LOG_INFO, "replication: peer messages are not authenticated (no "
		       "cluster.key_file): run the cluster on a trusted network only");
	link_serve_segments(nd->l, seg_read, nd);
	if ((rc = cl_members_apply(nd, &mem, err)) != ST_OK) /* the peer links */
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
		st_repl_fail(nd->s, 0, NULL);
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
		cl_rm_tree(snaps);
	}
	free(nd->snap_files);
	free(nd);
}

/* ---- server threads ---------------------------------------------------- */

void sd_node_state(struct sd_node *nd, struct sd_node_state *st)
{
	pthread_mutex_lock(&nd->plock);
	*st = nd->pub;
	int64_t until = nd->lease_until_us;
	pthread_mutex_unlock(&nd->plock);
	st->lease = st->role == SD_ROLE_LEADER && cl_mono_us() < until;
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
	int64_t now = cl_mono_us();
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
	size_t at = cl_id_index(nd, to);
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
