/*
 * daemon/server/gate.c — requests on a cluster node (REPLICATION.md §7,
 * §8): the gate every request passes before its handler (writes only on
 * the leader, at the durability the envelope asks; reads within their
 * consistency, staleness and version bounds), the leader's address in
 * ST_ENOTLEADER errors, and CLUSTER_STATUS / CLUSTER_TRANSFER.
 *
 * Leader reads use a lease, not a ReadIndex round: the leader serves a
 * read only while a majority of voters answered heartbeats it sent less
 * than half an election timeout ago (send times, judged at the read:
 * cluster.c's publish and sd_node_state). A follower grants no vote within an election timeout
 * of hearing from its leader (the core's leader stickiness), so no other
 * leader can exist then — provided the nodes' monotonic clocks run within
 * a factor of two of each other. See REPLICATION.md §8.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "daemon/server/cluster.h"
#include "daemon/server/server_int.h"

#define GATE_POLL_NS 2000000 /* 2 ms between checks while a read waits */

static void nap(void)
{
	struct timespec t = {0, GATE_POLL_NS};
	nanosleep(&t, NULL);
}

static bool is_write(int type)
{
	switch (type) {
	case WIRE_CREATE: case WIRE_DROP: case WIRE_ALTER: case WIRE_WRITE:
	case WIRE_LOAD_BEGIN: case WIRE_LOAD_DATA: case WIRE_LOAD_COMMIT:
	case WIRE_RESTORE: case WIRE_COMPACT: case WIRE_DELETE: case WIRE_UPDATE: case WIRE_OPTIMIZE: case WIRE_MERGE:
	case WIRE_VACUUM: /* on the leader only: see REPLICATION.md §6 */
		return true;
	default:
		return false;
	}
}

static bool is_read(int type)
{
	switch (type) {
	case WIRE_SCAN: case WIRE_QUERY: case WIRE_DESCRIBE: case WIRE_HISTORY: case WIRE_TABLES:
		return true;
	default:
		return false;
	}
}

/* The leader this follower can vouch for: one it heard from within three
 * heartbeats (a dead leader's address would cost the client a timeout). */
static uint64_t fresh_leader(struct sd_node *nd, const struct sd_node_state *st)
{
	if (!st->leader || st->leader == st->self || st->contact_age_us > 3 * sd_node_heartbeat_us(nd))
		return 0;
	return st->leader;
}

void sd_gate_leader(struct sd_ctx *c)
{
	struct sd_node *nd = c->srv->o.node;
	struct sd_node_state st;
	if (!nd || c->e.code != ST_ENOTLEADER)
		return;
	sd_node_state(nd, &st);
	if (fresh_leader(nd, &st)) {
		c->e.leader_id = st.leader;
		snprintf(c->e.leader, sizeof c->e.leader, "%s", sd_node_client(nd, st.leader));
	}
}

static int not_leader(struct sd_ctx *c, const struct sd_node_state *st, const char *what)
{
	if (st->leader && st->leader != st->self && !fresh_leader(c->srv->o.node, st))
		return sd_fail(c, ST_ENOTLEADER, "node %llu is a %s; the last leader, node %llu, has "
			       "not been heard from for %lld ms (an election is under way, or no "
			       "quorum is reachable): %s retry shortly", (unsigned long long)st->self,
			       sd_role_name(st->role), (unsigned long long)st->leader,
			       (long long)(st->contact_age_us / 1000), what);
	if (st->leader && st->leader != st->self)
		return sd_fail(c, ST_ENOTLEADER, "node %llu is a %s, not the leader: %s go to the "
			       "leader, node %llu at %s", (unsigned long long)st->self,
			       sd_role_name(st->role), what, (unsigned long long)st->leader,
			       sd_node_client(c->srv->o.node, st->leader));
	return sd_fail(c, ST_ENOTLEADER, "node %llu is a %s and no leader is known (an election "
		       "is under way, or no quorum is reachable): %s wait for one",
		       (unsigned long long)st->self, sd_role_name(st->role), what);
}

int sd_gate(struct sd_ctx *c)
{
	struct sd_node *nd = c->srv->o.node;
	const struct wire_env_opts *env = &c->m.env;
	struct sd_node_state st;
	if (env->durability > WIRE_DUR_ALL)
		return sd_fail(c, ST_EINVAL, "durability (envelope key 7) %u is not 0 to 3",
			       env->durability);
	if (env->consistency > WIRE_CONS_ANY)
		return sd_fail(c, ST_EINVAL, "consistency (envelope key 10) %u is not 0 to 3",
			       env->consistency);
	st_repl_set_durability((int)env->durability);
	if (!nd)
		return ST_OK;
	sd_node_state(nd, &st);
	if (st.role == SD_ROLE_FAILED && (is_write(c->m.type) || is_read(c->m.type)))
		return sd_fail(c, ST_EFAILED, "node %llu stopped replicating: %s; it serves nothing "
			       "until an operator acts", (unsigned long long)st.self, st.failure);
	if (is_write(c->m.type))
		return st.role == SD_ROLE_LEADER ? ST_OK : not_leader(c, &st, "writes");
	if (!is_read(c->m.type))
		return ST_OK;
	int64_t wait_us = sd_node_timeout_us(nd), waited = 0;
	if (st.role == SD_ROLE_LEADER) {
		while (!st.lease && waited < wait_us) {
			nap();
			waited += GATE_POLL_NS / 1000;
			sd_node_state(nd, &st);
		}
		if (st.role != SD_ROLE_LEADER)
			return not_leader(c, &st, "linearizable reads");
		if (!st.lease)
			return sd_fail(c, ST_EUNAVAIL, "node %llu leads but cannot confirm it: no "
				       "majority of voters answered within half an election timeout "
				       "(no quorum?)", (unsigned long long)st.self);
	} else {
		if (env->consistency == WIRE_CONS_LEADER)
			return not_leader(c, &st, "reads with consistency leader");
		int64_t bound = env->has_max_staleness ? (int64_t)env->max_staleness * 1000
				: env->consistency == WIRE_CONS_ANY ? INT64_MAX
								   : sd_node_max_staleness_us(nd);
		if (st.contact_age_us > bound) {
			char ago[64];
			if (st.contact_age_us == INT64_MAX)
				snprintf(ago, sizeof ago, "has never heard from a leader");
			else
				snprintf(ago, sizeof ago, "last heard from a leader %lld ms ago",
					 (long long)(st.contact_age_us / 1000));
			if (!fresh_leader(nd, &st))
				return sd_fail(c, ST_EUNAVAIL, "node %llu knows no live leader (an election "
					       "is under way, or no quorum is reachable) and %s, more than "
					       "the staleness bound of %lld ms: writes fail until there is "
					       "a leader; reads need more staleness (--max-staleness, "
					       "--consistency any)", (unsigned long long)st.self, ago,
					       (long long)(bound / 1000));
			return sd_fail(c, ST_EUNAVAIL, "node %llu %s, more than the staleness bound of "
				       "%lld ms: read at the leader, or allow more staleness "
				       "(--max-staleness, --consistency any)",
				       (unsigned long long)st.self, ago, (long long)(bound / 1000));
		}
	}
	if (env->has_min_version) {
		char table[ST_NAME_MAX + 1] = "";
		struct st_err err;
		uint64_t v = 0;
		int rc = sd_opt_strbuf(c, 0, "table", table, sizeof table);
		if (rc != ST_OK)
			return rc;
		if (!table[0] || c->m.type == WIRE_TABLES)
			return sd_fail(c, ST_EINVAL, "min version (envelope key 8) needs a request on "
				       "one table");
		for (;;) {
			rc = st_table_version(c->srv->s, table, &v, &err);
			if (rc == ST_OK && v >= env->min_version)
				break;
			if (rc != ST_OK && rc != ST_ENOTFOUND)
				return sd_fail_err(c, rc, &err);
			if (waited >= wait_us)
				return sd_fail(c, ST_EUNAVAIL, "table '%s' version %llu is not applied on "
					       "node %llu within %lld ms (it has %s)", table,
					       (unsigned long long)env->min_version,
					       (unsigned long long)st.self, (long long)(wait_us / 1000),
					       rc == ST_OK ? "an older version" : "no such table yet");
			nap();
			waited += GATE_POLL_NS / 1000;
		}
		sd_node_state(nd, &st);
	}
	c->out.env.served = true;
	c->out.env.served_by = st.self;
	c->out.env.read_lsn = st.applied;
	c->out.env.staleness = st.role == SD_ROLE_LEADER ? 0
			       : st.contact_age_us == INT64_MAX ? UINT64_MAX
								: (uint64_t)st.contact_age_us / 1000;
	return ST_OK;
}

void sd_status_cluster(struct sd_ctx *c)
{
	msgpack_packer *pk = &c->out.pk;
	struct sd_node *nd = c->srv->o.node;
	struct sd_node_state st = {0};
	if (nd)
		sd_node_state(nd, &st);
	else
		st.applied = st.commit = st.last_lsn = st_store_lsn(c->srv->s);
	wire_key_str(pk, WIRE_STATUS_R_ROLE, nd ? sd_role_name(st.role) : "single");
	wire_key_u64(pk, WIRE_STATUS_R_EPOCH, st.epoch);
	wire_key_u64(pk, WIRE_STATUS_R_NODE, st.self);
	wire_key_u64(pk, WIRE_STATUS_R_LEADER, st.leader);
	wire_key_u64(pk, WIRE_STATUS_R_COMMIT_LSN, st.commit);
	wire_key_u64(pk, WIRE_STATUS_R_APPLIED_LSN, st.applied);
}

int sd_h_cluster_status(struct sd_ctx *c)
{
	struct sd_node *nd = c->srv->o.node;
	if (!nd)
		return sd_fail(c, ST_EINVAL, "not a cluster: this stratad runs as a single node (its "
			       "config has no cluster: section)");
	struct sd_node_state st;
	struct sd_node_peer p[16];
	char hex[33];
	sd_node_state(nd, &st);
	size_t n = sd_node_peers(nd, p, 16);
	sd_node_cluster_hex(nd, hex);
	msgpack_packer *pk = &c->out.pk;
	sd_begin(c, WIRE_CLUSTER_R_NKEYS);
	wire_key_u64(pk, WIRE_CLUSTER_R_NODE, st.self);
	wire_key_u64(pk, WIRE_CLUSTER_R_LEADER, st.leader);
	wire_key_u64(pk, WIRE_CLUSTER_R_EPOCH, st.epoch);
	msgpack_pack_uint32(pk, WIRE_CLUSTER_R_NODES);
	msgpack_pack_array(pk, (uint32_t)n);
	bool leading = st.role == SD_ROLE_LEADER;
	for (size_t i = 0; i < n; i++) {
		bool self = i == 0;
		msgpack_pack_map(pk, WIRE_CNODE_NKEYS);
		wire_key_u64(pk, WIRE_CNODE_ID, p[i].id);
		wire_key_str(pk, WIRE_CNODE_ROLE, self ? sd_role_name(st.role)
					: p[i].id == st.leader ? "leader"
					: leading ? (p[i].voter ? "follower" : "learner") : "unknown");
		wire_key_str(pk, WIRE_CNODE_ADDRESS, p[i].client);
		uint64_t match = self ? st.last_lsn : leading ? p[i].match : 0;
		wire_key_u64(pk, WIRE_CNODE_MATCH, match);
		wire_key_u64(pk, WIRE_CNODE_LAG, self ? st.last_lsn - st.applied
					   : leading && st.last_lsn > match ? st.last_lsn - match : 0);
		wire_key_i64(pk, WIRE_CNODE_CONTACT_MS,
			     self ? 0 : p[i].id == st.leader && !leading
					? (st.contact_age_us == INT64_MAX ? -1 : st.contact_age_us / 1000)
					: p[i].contact_ms);
		wire_key_u64(pk, WIRE_CNODE_COMMIT, self ? st.commit : 0);
		wire_key_u64(pk, WIRE_CNODE_APPLIED, self ? st.applied : 0);
		wire_key_u64(pk, WIRE_CNODE_BYTES_SENT, p[i].bytes_sent);
	}
	wire_key_str(pk, WIRE_CLUSTER_R_CLUSTER, hex);
	uint64_t repaired, failures, pending;
	sd_node_repairs(nd, &repaired, &failures, &pending);
	wire_key_u64(pk, WIRE_CLUSTER_R_REPAIRED, repaired);
	wire_key_u64(pk, WIRE_CLUSTER_R_REPAIR_FAILURES, failures);
	wire_key_u64(pk, WIRE_CLUSTER_R_REPAIR_PENDING, pending);
	return ST_OK;
}

int sd_h_cluster_transfer(struct sd_ctx *c)
{
	struct sd_node *nd = c->srv->o.node;
	struct st_err err;
	uint64_t to = 0;
	int rc;
	if (!nd)
		return sd_fail(c, ST_EINVAL, "not a cluster: this stratad runs as a single node");
	if ((rc = sd_need_u64(c, WIRE_TRANSFER_Q_TO, "to", &to)) != ST_OK)
		return rc;
	if ((rc = sd_node_transfer(nd, to, &err)) != ST_OK)
		return sd_fail_err(c, rc, &err);
	sd_begin(c, 0);
	return ST_OK;
}

int sd_h_cluster_member(struct sd_ctx *c)
{
	struct sd_node *nd = c->srv->o.node;
	struct st_err err;
	uint64_t op = 0, id = 0;
	char peer[256] = "", client[256] = "", msg[1024];
	int rc;
	if (!nd)
		return sd_fail(c, ST_EINVAL, "not a cluster: this stratad runs as a single node");
	if ((rc = sd_need_u64(c, WIRE_MEMBER_Q_OP, "op", &op)) != ST_OK ||
	    (rc = sd_need_u64(c, WIRE_MEMBER_Q_ID, "id", &id)) != ST_OK ||
	    (rc = sd_opt_strbuf(c, WIRE_MEMBER_Q_PEER, "peer", peer, sizeof peer)) != ST_OK ||
	    (rc = sd_opt_strbuf(c, WIRE_MEMBER_Q_CLIENT, "client", client, sizeof client)) != ST_OK)
		return rc;
	if (op == SD_MEMBER_ADD && !peer[0])
		return sd_fail(c, ST_EPROTO, "CLUSTER_MEMBER add needs key 2 (peer)");
	if (op == SD_MEMBER_FORCE_PROMOTE) {
		bool accept = false;
		if ((rc = sd_opt_bool(c, WIRE_MEMBER_Q_ACCEPT_LOSS, "accept_data_loss", &accept)) != ST_OK)
			return rc;
		if (!accept)
			return sd_fail(c, ST_EINVAL, "force-promote may lose acknowledged writes: it "
				       "needs --accept-data-loss (key 4 true)");
		rc = sd_node_force_promote(nd, msg, sizeof msg, &err);
	} else {
		rc = sd_node_member_change(nd, (int)op, id, peer[0] ? peer : NULL,
					   client[0] ? client : NULL, msg, sizeof msg, &err);
	}
	if (rc != ST_OK)
		return sd_fail_err(c, rc, &err);
	sd_begin(c, WIRE_MEMBER_R_NKEYS);
	wire_key_str(&c->out.pk, WIRE_MEMBER_R_MESSAGE, msg);
	return ST_OK;
}
