/*
 * daemon/server/members.c — membership changes of the replication driver
 * (REPLICATION.md §13, §13.1): the membership record and its encoding, its
 * application to the core and the links, the changes an operator asks for
 * (add, promote, remove, force-promote) and the leader's auto-promotion.
 * The loop thread applies; server threads and the upkeep thread propose,
 * one change at a time (mlock).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/server/cluster_int.h"
#include "daemon/server/log.h"
#include "format/bytes.h"

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

int cl_members_decode(const uint8_t *p, size_t len, struct sd_members *m, struct st_err *err)
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

struct sd_member *cl_member_find(struct sd_members *m, uint64_t id)
{
	for (uint32_t i = 0; i < m->n; i++)
		if (m->m[i].id == id)
			return &m->m[i];
	return NULL;
}

/* The config's membership: self and its peers, all voters (self a
 * learner with cluster.join). */
void cl_members_from_config(const struct sd_node *nd, struct sd_members *m)
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
int cl_members_apply(struct sd_node *nd, const struct sd_members *m, struct st_err *err)
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
	if (!cl_member_find((struct sd_members *)m, self) && !member_removed(m, self) &&
	    nl < RAFT_MAX_NODES - nv)
		learners[nl++] = self;
	struct raft_status st;
	raft_status(nd->r, &st);
	/* Before the core forgets them: the removed peers' progress. */
	for (size_t i = 1; i < nd->nids; i++) {
		uint64_t id = nd->ids[i], match = 0;
		bool voter;
		if (cl_member_find((struct sd_members *)m, id) || nd->ndepart == RAFT_MAX_NODES)
			continue;
		raft_progress(nd->r, id, &match, &voter);
		nd->depart[nd->ndepart++] = (struct departing){
		    id, match < st.hs.commit ? match : st.hs.commit,
		    cl_mono_us() + 2 * nd->election_us};
	}
	if (raft_set_members(nd->r, voters, nv, learners, nl) != ST_OK)
		return st_seterr(err, ST_ECORRUPT, "the membership record names no voter, or an id "
				 "twice");
	for (uint32_t i = 0; i < m->n; i++) {
		const struct sd_member *x = &m->m[i];
		if (!nd->client_of[x->id][0])
			snprintf(nd->client_of[x->id], LINK_ADDR_MAX, "%s", x->client);
		if (x->id == self || cl_id_index(nd, x->id) != SIZE_MAX)
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
int cl_members_reload(struct sd_node *nd, struct st_err *err)
{
	struct st_buf b = {0};
	struct sd_members m;
	int rc = st_repl_members_get(nd->s, &b, err);
	if (rc == ST_OK)
		rc = cl_members_decode(b.data, b.len, &m, err);
	st_buf_free(&b);
	if (rc == ST_OK)
		rc = cl_members_apply(nd, &m, err);
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
void cl_tell_departing(struct sd_node *nd)
{
	int64_t now = cl_mono_us();
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
		link_send(nd->l, &m, cl_entry_bytes, nd, NULL);
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
	int64_t heard = id <= LINK_MAX_ID ? nd->heard_pub[id] : 0;
	pthread_mutex_unlock(&nd->plock);
	struct sd_member *x = cl_member_find(&m, id);
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
		else if (!heard || cl_mono_us() - heard > nd->election_us)
			rc = st_seterr(err, ST_EUNAVAIL, "learner %llu has not been heard from within an "
				       "election timeout: is it running? (a voter that never answers "
				       "costs the cluster its margin)", (unsigned long long)id);
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
void cl_force_local(struct sd_node *nd)
{
	struct sd_members m;
	struct st_err err;
	pthread_mutex_lock(&nd->plock);
	m = nd->mem;
	pthread_mutex_unlock(&nd->plock);
	for (uint32_t i = 0; i < m.n; i++)
		m.m[i].voter = m.m[i].id == nd->cc->node_id;
	if (!cl_member_find(&m, nd->cc->node_id)) {
		sd_log(SD_LOG_WARN, "force-promote: this node is not a member");
	} else if (cl_members_apply(nd, &m, &err) != ST_OK) {
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
void cl_record_forced(struct sd_node *nd)
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

/* The upkeep thread's part: with cluster.cl_auto_promote, a leader promotes
 * a learner that is within promote_lag. */
void cl_auto_promote(struct sd_node *nd)
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
