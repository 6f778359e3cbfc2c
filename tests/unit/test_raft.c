/*
 * tests/unit/test_raft.c — focused scenarios of the consensus core
 * (replication/raft.h). A tiny in-test cluster delivers messages in order,
 * with per-link cuts; the Ready contract is followed (persist, send,
 * advance). The randomized runs are tests/sim's job.
 */
#include "replication/raft.h"
#include "tests/test.h"

#include <stdbool.h>

#define TC_MAX  5
#define TC_QMAX 4096

/* A message copied out of a Ready (entries and their data owned). */
struct tc_msg {
	struct raft_msg m; /* the message; m.entries owned */
};

struct tc {
	size_t n;                         /* nodes, ids 1..n */
	struct raft *r[TC_MAX + 1];       /* r[id] */
	bool cut[TC_MAX + 1][TC_MAX + 1]; /* cut[from][to] drops messages */
	struct tc_msg q[TC_QMAX];         /* FIFO of messages */
	size_t head;                      /* next to deliver */
	size_t tail;                      /* next free */
	uint64_t truncated[TC_MAX + 1];   /* last truncate_from a Ready asked for */
	uint64_t committed[TC_MAX + 1];   /* entries handed out as committed */
};

static struct tc tc;

static void tc_hash(uint8_t out[RAFT_HASH_LEN], uint8_t v)
{
	memset(out, v, RAFT_HASH_LEN);
}

static struct raft *tc_node(size_t n_voters, size_t n_learners, uint64_t self,
                            const struct raft_hard_state *hs, const struct raft_entry *ents,
                            size_t n_ents)
{
	uint64_t voters[TC_MAX], learners[TC_MAX];
	for (size_t i = 0; i < n_voters; i++)
		voters[i] = i + 1;
	for (size_t i = 0; i < n_learners; i++)
		learners[i] = n_voters + i + 1;
	struct raft_config cfg = {
	    .self = self,
	    .voters = voters,
	    .n_voters = n_voters,
	    .learners = learners,
	    .n_learners = n_learners,
	    .election_ticks = 10,
	    .heartbeat_ticks = 1,
	    .seed = 42,
	    .hs = hs,
	    .entries = ents,
	    .n_entries = n_ents,
	};
	struct raft *r = NULL;
	struct st_err err;
	int rc = raft_new(&cfg, &r, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  raft_new: %s\n", err.msg);
	return r;
}

static void tc_free(void *unused)
{
	(void)unused;
	for (size_t i = 1; i <= TC_MAX; i++)
		raft_free(tc.r[i]);
	for (size_t i = tc.head; i < tc.tail; i++) {
		for (size_t k = 0; k < tc.q[i].m.n_entries; k++)
			free((void *)tc.q[i].m.entries[k].data);
		free((void *)tc.q[i].m.entries);
	}
	memset(&tc, 0, sizeof(tc));
}

static void tc_init(size_t voters, size_t learners)
{
	memset(&tc, 0, sizeof(tc));
	tc.n = voters + learners;
	for (size_t i = 1; i <= tc.n; i++)
		tc.r[i] = tc_node(voters, learners, i, NULL, NULL, 0);
	test_defer(tc_free, NULL);
	for (size_t i = 1; i <= tc.n; i++)
		REQUIRE(tc.r[i] != NULL);
}

/* Follow the Ready contract for node id: queue its messages, advance. */
static void tc_drain(uint64_t id)
{
	struct raft_ready rd;
	while (raft_ready(tc.r[id], &rd)) {
		if (rd.truncate_from)
			tc.truncated[id] = rd.truncate_from;
		tc.committed[id] += rd.n_committed;
		for (size_t i = 0; i < rd.n_msgs; i++) {
			REQUIRE(tc.tail < TC_QMAX);
			struct tc_msg *q = &tc.q[tc.tail++];
			q->m = rd.msgs[i];
			if (q->m.n_entries) {
				struct raft_entry *e = calloc(q->m.n_entries, sizeof(*e));
				REQUIRE(e != NULL);
				for (size_t k = 0; k < q->m.n_entries; k++) {
					e[k] = rd.msgs[i].entries[k];
					if (e[k].len) {
						void *d = malloc(e[k].len);
						REQUIRE(d != NULL);
						memcpy(d, e[k].data, e[k].len);
						e[k].data = d;
					}
				}
				q->m.entries = e;
			}
		}
		raft_advance(tc.r[id]);
	}
}

/* Deliver until the network is empty (cut links drop). */
static void tc_run(void)
{
	for (size_t i = 1; i <= tc.n; i++)
		tc_drain(i);
	while (tc.head < tc.tail) {
		struct tc_msg *q = &tc.q[tc.head++];
		if (!tc.cut[q->m.from][q->m.to] && tc.r[q->m.to]) {
			raft_step(tc.r[q->m.to], &q->m);
			tc_drain(q->m.to);
		}
		for (size_t k = 0; k < q->m.n_entries; k++)
			free((void *)q->m.entries[k].data);
		free((void *)q->m.entries);
		q->m.entries = NULL;
		q->m.n_entries = 0;
	}
	tc.head = tc.tail = 0;
}

static void tc_tick(uint64_t id, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		raft_tick(tc.r[id]);
		tc_run();
	}
}

static struct raft_status tc_status(uint64_t id)
{
	struct raft_status st;
	raft_status(tc.r[id], &st);
	return st;
}

/* Tick node id alone until it leads (at most 3 election timeouts). */
static bool tc_elect(uint64_t id)
{
	for (int i = 0; i < 30 && tc_status(id).role != RAFT_LEADER; i++)
		tc_tick(id, 1);
	return tc_status(id).role == RAFT_LEADER;
}

static int tc_propose(uint64_t id, uint8_t v)
{
	uint8_t h[RAFT_HASH_LEN];
	tc_hash(h, v);
	int rc = raft_propose(tc.r[id], &v, 1, h, NULL);
	tc_run();
	return rc;
}

/* ---- tests ----------------------------------------------------------------- */

static void t_single_node(void)
{
	tc_init(1, 0);
	REQUIRE(tc_elect(1));
	struct raft_status st = tc_status(1);
	CHECK_EQ(st.hs.epoch, 1);
	CHECK_EQ(st.hs.vote, 1);
	CHECK_EQ(st.hs.commit, 1); /* the epoch's no-op */
	CHECK_EQ(tc_propose(1, 7), ST_OK);
	st = tc_status(1);
	CHECK_EQ(st.last_lsn, 2);
	CHECK_EQ(st.hs.commit, 2);
	CHECK_EQ(tc.committed[1], 2);
	const struct raft_entry *e = raft_entry_at(tc.r[1], 2);
	REQUIRE(e != NULL);
	CHECK(e->len == 1 && ((const uint8_t *)e->data)[0] == 7);
	CHECK_EQ(raft_entry_at(tc.r[1], 1)->len, 0);
}

static void t_three_node_replication(void)
{
	tc_init(3, 0);
	REQUIRE(tc_elect(1));
	CHECK_EQ(tc_status(2).role, RAFT_FOLLOWER);
	CHECK_EQ(tc_status(2).leader, 1);
	for (uint8_t v = 1; v <= 3; v++)
		CHECK_EQ(tc_propose(1, v), ST_OK);
	for (uint64_t id = 1; id <= 3; id++) {
		struct raft_status st = tc_status(id);
		CHECK_EQ(st.last_lsn, 4);
		CHECK_EQ(st.hs.epoch, 1);
		CHECK_EQ(tc.committed[id], 4);
		CHECK(!memcmp(raft_entry_at(tc.r[id], 4)->hash, raft_entry_at(tc.r[1], 4)->hash,
		              RAFT_HASH_LEN));
	}
	CHECK_EQ(tc_status(1).hs.commit, 4);
	/* A follower refuses proposals. */
	uint8_t h[RAFT_HASH_LEN] = {0};
	CHECK_EQ(raft_propose(tc.r[2], "x", 1, h, NULL), RAFT_ENOTLEADER);
	CHECK_EQ(raft_transfer(tc.r[2], 1), RAFT_ENOTLEADER);
}

static void t_no_quorum_no_commit(void)
{
	tc_init(3, 0);
	REQUIRE(tc_elect(1));
	uint64_t commit = tc_status(1).hs.commit;
	for (uint64_t id = 2; id <= 3; id++)
		tc.cut[1][id] = true;
	CHECK_EQ(tc_propose(1, 9), ST_OK);
	CHECK_EQ(tc_status(1).hs.commit, commit); /* only the leader holds it */
	for (uint64_t id = 2; id <= 3; id++)
		tc.cut[1][id] = false;
	tc_tick(1, 1); /* heartbeat: the followers ask for what they lack */
	CHECK_EQ(tc_status(1).hs.commit, commit + 1);
}

static void t_conflicting_suffix_truncated(void)
{
	memset(&tc, 0, sizeof(tc));
	tc.n = 3;
	test_defer(tc_free, NULL);
	/* Nodes 1 and 2 hold LSN 2 of epoch 2; node 3 an uncommitted LSN 2..3
	 * of epoch 1 from a leader that never committed them. */
	struct raft_entry good[2] = {{.lsn = 1, .epoch = 1}, {.lsn = 2, .epoch = 2}};
	struct raft_entry bad[3] = {
	    {.lsn = 1, .epoch = 1}, {.lsn = 2, .epoch = 1}, {.lsn = 3, .epoch = 1}};
	tc_hash(good[0].hash, 1);
	tc_hash(good[1].hash, 2);
	tc_hash(bad[0].hash, 1);
	tc_hash(bad[1].hash, 0xb2);
	tc_hash(bad[2].hash, 0xb3);
	struct raft_hard_state hs12 = {.epoch = 2, .commit = 1}, hs3 = {.epoch = 1, .commit = 1};
	tc.r[1] = tc_node(3, 0, 1, &hs12, good, 2);
	tc.r[2] = tc_node(3, 0, 2, &hs12, good, 2);
	tc.r[3] = tc_node(3, 0, 3, &hs3, bad, 3);
	REQUIRE(tc.r[1] && tc.r[2] && tc.r[3]);
	REQUIRE(tc_elect(1));
	CHECK_EQ(tc_status(1).hs.epoch, 3);
	struct raft_status st = tc_status(3);
	CHECK_EQ(tc.truncated[3], 2);
	CHECK_EQ(st.last_lsn, 3); /* LSN 1, LSN 2 (epoch 2), the no-op of epoch 3 */
	CHECK_EQ(raft_entry_at(tc.r[3], 2)->epoch, 2);
	CHECK(!memcmp(raft_entry_at(tc.r[3], 2)->hash, good[1].hash, RAFT_HASH_LEN));
	CHECK_EQ(raft_entry_at(tc.r[3], 3)->epoch, 3);
	CHECK_EQ(st.hs.commit, 3);
	CHECK(!raft_alarm(tc.r[3], NULL, NULL));
}

static void t_up_to_date_vote(void)
{
	/* A candidate with a shorter log of the same epoch gets no vote. */
	struct raft_entry ents[2] = {{.lsn = 1, .epoch = 1}, {.lsn = 2, .epoch = 1}};
	struct raft_hard_state hs = {.epoch = 1, .commit = 0};
	struct raft *r = tc_node(3, 0, 2, &hs, ents, 2);
	REQUIRE(r != NULL);
	struct raft_msg m = {
	    .type = RAFT_MSG_VOTE, .epoch = 2, .from = 1, .to = 2, .last_lsn = 1, .last_epoch = 1};
	CHECK_EQ(raft_step(r, &m), ST_OK);
	struct raft_ready rd;
	REQUIRE(raft_ready(r, &rd));
	REQUIRE(rd.n_msgs == 1);
	CHECK_EQ(rd.msgs[0].type, RAFT_MSG_VOTE_RESP);
	CHECK(!rd.msgs[0].success);
	CHECK_EQ(rd.hs.vote, 0);
	CHECK_EQ(rd.hs.epoch, 2); /* the higher epoch is adopted all the same */
	raft_advance(r);
	m.from = 3;
	m.last_lsn = 2;
	CHECK_EQ(raft_step(r, &m), ST_OK);
	REQUIRE(raft_ready(r, &rd));
	CHECK(rd.hs_changed && rd.hs.vote == 3); /* durable before the reply */
	REQUIRE(rd.n_msgs == 1);
	CHECK(rd.msgs[0].success);
	raft_advance(r);
	raft_free(r);
}

static void t_divergence_alarm(void)
{
	struct raft_entry ents[2] = {{.lsn = 1, .epoch = 1}, {.lsn = 2, .epoch = 1}};
	tc_hash(ents[0].hash, 1);
	tc_hash(ents[1].hash, 2);
	struct raft_hard_state hs = {.epoch = 1, .commit = 2};
	struct raft *r = tc_node(3, 0, 2, &hs, ents, 2);
	REQUIRE(r != NULL);
	/* Same LSN and epoch, another hash: divergence, not a truncation. */
	struct raft_msg m = {.type = RAFT_MSG_APPEND,
	                     .epoch = 2,
	                     .from = 1,
	                     .to = 2,
	                     .prev_lsn = 2,
	                     .prev_epoch = 1,
	                     .commit = 2};
	tc_hash(m.prev_hash, 0xee);
	CHECK_EQ(raft_step(r, &m), ST_ECORRUPT);
	uint64_t lsn = 0, from = 0;
	CHECK(raft_alarm(r, &lsn, &from));
	CHECK_EQ(lsn, 2);
	CHECK_EQ(from, 1);
	struct raft_ready rd;
	REQUIRE(raft_ready(r, &rd));
	CHECK(rd.alarm);
	CHECK_EQ(rd.n_entries, 0);
	CHECK_EQ(rd.truncate_from, 0);
	raft_advance(r);
	raft_free(r);

	/* A demand to replace a committed entry is refused the same way. */
	r = tc_node(3, 0, 2, &hs, ents, 2);
	REQUIRE(r != NULL);
	struct raft_entry repl = {.lsn = 2, .epoch = 2};
	tc_hash(repl.hash, 0x22);
	struct raft_msg m2 = {.type = RAFT_MSG_APPEND,
	                      .epoch = 2,
	                      .from = 1,
	                      .to = 2,
	                      .prev_lsn = 1,
	                      .prev_epoch = 1,
	                      .entries = &repl,
	                      .n_entries = 1};
	tc_hash(m2.prev_hash, 1);
	CHECK_EQ(raft_step(r, &m2), ST_ECORRUPT);
	CHECK(raft_alarm(r, NULL, NULL));
	CHECK_EQ(raft_entry_at(r, 2)->epoch, 1);
	struct raft_status st;
	raft_status(r, &st);
	CHECK_EQ(st.last_lsn, 2);
	raft_free(r);
}

static void t_stale_leader_steps_down(void)
{
	tc_init(3, 0);
	REQUIRE(tc_elect(1));
	uint64_t e = tc_status(1).hs.epoch;
	/* An old-epoch APPEND is answered with the newer epoch. */
	struct raft_msg old = {.type = RAFT_MSG_HEARTBEAT, .epoch = e - 1, .from = 1, .to = 2};
	CHECK_EQ(raft_step(tc.r[2], &old), ST_OK);
	struct raft_ready rd;
	REQUIRE(raft_ready(tc.r[2], &rd));
	REQUIRE(rd.n_msgs == 1);
	CHECK_EQ(rd.msgs[0].type, RAFT_MSG_APPEND_RESP);
	CHECK_EQ(rd.msgs[0].epoch, e);
	raft_advance(tc.r[2]);
	/* A current heartbeat's read context comes back in the answer (the
	 * driver's lease counts from the time it put there). */
	struct raft_msg hb = {.type = RAFT_MSG_HEARTBEAT, .epoch = e, .from = 1, .to = 2,
			      .ctx = 0xfeedbeef12ULL};
	CHECK_EQ(raft_step(tc.r[2], &hb), ST_OK);
	REQUIRE(raft_ready(tc.r[2], &rd));
	REQUIRE(rd.n_msgs == 1);
	CHECK_EQ(rd.msgs[0].type, RAFT_MSG_HEARTBEAT_RESP);
	CHECK_EQ(rd.msgs[0].ctx, 0xfeedbeef12ULL);
	raft_advance(tc.r[2]);
	/* A higher epoch makes the leader a follower. */
	struct raft_msg hi = {.type = RAFT_MSG_APPEND_RESP, .epoch = e + 5, .from = 3, .to = 1};
	CHECK_EQ(raft_step(tc.r[1], &hi), ST_OK);
	struct raft_status st = tc_status(1);
	CHECK_EQ(st.role, RAFT_FOLLOWER);
	CHECK_EQ(st.hs.epoch, e + 5);
	CHECK_EQ(st.hs.vote, 0);
	uint8_t h[RAFT_HASH_LEN] = {0};
	CHECK_EQ(raft_propose(tc.r[1], "x", 1, h, NULL), RAFT_ENOTLEADER);
}

static void t_prevote_does_not_disrupt(void)
{
	tc_init(3, 0);
	REQUIRE(tc_elect(1));
	uint64_t e = tc_status(1).hs.epoch;
	for (uint64_t id = 1; id <= 2; id++) {
		tc.cut[id][3] = true;
		tc.cut[3][id] = true;
	}
	tc_tick(3, 100); /* isolated: pre-campaigns again and again */
	CHECK(tc_status(3).role == RAFT_PRECANDIDATE);
	CHECK_EQ(tc_status(3).hs.epoch, e); /* PreVote bumps nothing */
	for (uint64_t id = 1; id <= 2; id++) {
		tc.cut[id][3] = false;
		tc.cut[3][id] = false;
	}
	tc_tick(3, 25); /* its PreVotes now arrive; the others have a leader */
	tc_tick(1, 1);  /* and the leader's heartbeat brings it back */
	CHECK_EQ(tc_status(1).role, RAFT_LEADER);
	CHECK_EQ(tc_status(1).hs.epoch, e);
	CHECK_EQ(tc_status(3).role, RAFT_FOLLOWER);
	CHECK_EQ(tc_status(3).leader, 1);
	CHECK_EQ(tc_status(3).hs.epoch, e);
}

static void t_check_quorum(void)
{
	tc_init(3, 0);
	REQUIRE(tc_elect(1));
	for (uint64_t id = 2; id <= 3; id++) {
		tc.cut[1][id] = true;
		tc.cut[id][1] = true;
	}
	tc_tick(1, 9);
	CHECK_EQ(tc_status(1).role, RAFT_LEADER); /* heard from them at the start */
	tc_tick(1, 12);
	CHECK_EQ(tc_status(1).role, RAFT_FOLLOWER); /* a whole timeout of silence */
	CHECK_EQ(tc_status(1).leader, 0);
}

static void t_transfer(void)
{
	tc_init(3, 0);
	REQUIRE(tc_elect(1));
	uint64_t e = tc_status(1).hs.epoch;
	/* Node 2 is behind: the transfer catches it up first. */
	tc.cut[1][2] = true;
	CHECK_EQ(tc_propose(1, 5), ST_OK);
	tc.cut[1][2] = false;
	CHECK_EQ(raft_transfer(tc.r[1], 1), ST_EINVAL);
	CHECK_EQ(raft_transfer(tc.r[1], 9), ST_EINVAL);
	CHECK_EQ(raft_transfer(tc.r[1], 2), ST_OK);
	uint8_t h[RAFT_HASH_LEN] = {0};
	CHECK_EQ(raft_propose(tc.r[1], "x", 1, h, NULL), ST_EBUSY);
	tc_run();
	CHECK_EQ(tc_status(2).role, RAFT_LEADER);
	CHECK_EQ(tc_status(2).hs.epoch, e + 1);
	CHECK_EQ(tc_status(1).role, RAFT_FOLLOWER);
	CHECK_EQ(tc_status(1).leader, 2);
	CHECK_EQ(tc_propose(2, 6), ST_OK);
	CHECK_EQ(tc_status(1).hs.commit, tc_status(2).last_lsn);
}

static void t_learner(void)
{
	tc_init(3, 1);
	tc_tick(4, 100); /* a learner never campaigns */
	CHECK_EQ(tc_status(4).role, RAFT_FOLLOWER);
	CHECK_EQ(tc_status(4).hs.epoch, 0);
	CHECK(tc_status(4).is_learner);
	REQUIRE(tc_elect(1));
	CHECK_EQ(tc_propose(1, 3), ST_OK);
	CHECK_EQ(tc_status(4).last_lsn, 2);
	CHECK_EQ(tc_status(4).hs.commit, 2);
	/* Leadership cannot go to a learner. */
	CHECK_EQ(raft_transfer(tc.r[1], 4), ST_EINVAL);
	/* Two voters down: the learner does not make a quorum. */
	for (uint64_t id = 2; id <= 3; id++) {
		tc.cut[1][id] = true;
		tc.cut[id][1] = true;
	}
	uint64_t c = tc_status(1).hs.commit;
	CHECK_EQ(tc_propose(1, 4), ST_OK);
	CHECK_EQ(tc_status(1).hs.commit, c);
}

/* Membership changes (raft_set_members), applied on every node as the
 * owner would when the change's entry commits. */
static void tc_members(const uint64_t *v, size_t nv, const uint64_t *l, size_t nl)
{
	for (size_t i = 1; i <= tc.n; i++)
		CHECK_EQ(raft_set_members(tc.r[i], v, nv, l, nl), ST_OK);
	tc_run();
}

static void t_membership(void)
{
	tc_init(3, 1);
	/* Nodes 1-3 start without node 4; 4 knows itself as a learner. */
	for (uint64_t id = 1; id <= 3; id++) {
		raft_free(tc.r[id]);
		REQUIRE((tc.r[id] = tc_node(3, 0, id, NULL, NULL, 0)) != NULL);
	}
	REQUIRE(tc_elect(1));
	CHECK_EQ(tc_propose(1, 1), ST_OK);
	CHECK_EQ(tc_status(4).last_lsn, 0); /* not a member yet: sent nothing */
	uint64_t v3[] = {1, 2, 3}, l4[] = {4};
	tc_members(v3, 3, l4, 1);
	tc_tick(1, 2);
	CHECK_EQ(tc_status(4).last_lsn, tc_status(1).last_lsn);
	CHECK_EQ(tc_status(4).hs.commit, tc_status(1).hs.commit);
	CHECK(tc_status(4).is_learner);
	/* Promoted: 4 voters, a quorum of 3. */
	uint64_t v4[] = {1, 2, 3, 4};
	tc_members(v4, 4, NULL, 0);
	CHECK(!tc_status(4).is_learner);
	for (uint64_t id = 2; id <= 3; id++)
		tc.cut[1][id] = tc.cut[id][1] = true;
	uint64_t c = tc_status(1).hs.commit;
	CHECK_EQ(tc_propose(1, 2), ST_OK);
	CHECK_EQ(tc_status(1).hs.commit, c); /* 1 and 4 are not 3 of 4 */
	tc.cut[1][2] = tc.cut[2][1] = false;
	tc_tick(1, 1);
	CHECK_EQ(tc_status(1).hs.commit, c + 1);
	/* Node 3 removed: a quorum of 2 of {1, 2, 4}; 3 never campaigns. */
	uint64_t v124[] = {1, 2, 4};
	tc_members(v124, 3, NULL, 0);
	CHECK(tc_status(3).removed);
	uint64_t e3 = tc_status(3).hs.epoch;
	tc_tick(3, 100);
	CHECK_EQ(tc_status(3).hs.epoch, e3);
	CHECK_EQ(tc_status(3).role, RAFT_FOLLOWER);
	CHECK_EQ(raft_transfer(tc.r[1], 3), ST_EINVAL);
	tc.cut[1][2] = tc.cut[2][1] = true;
	c = tc_status(1).hs.commit;
	CHECK_EQ(tc_propose(1, 3), ST_OK);
	CHECK_EQ(tc_status(1).hs.commit, c + 1); /* 1 and 4 */
	tc.cut[1][2] = tc.cut[2][1] = false;
	/* The leader removed: it steps down and never campaigns again. */
	uint64_t v24[] = {2, 4};
	tc_members(v24, 2, NULL, 0);
	CHECK_EQ(tc_status(1).role, RAFT_FOLLOWER);
	CHECK(tc_status(1).removed);
	tc_tick(1, 100);
	CHECK(tc_status(1).role != RAFT_LEADER);
	uint64_t l = 0;
	for (int i = 0; i < 60 && !l; i++) {
		tc_tick(2, 1);
		tc_tick(4, 1);
		l = tc_status(2).role == RAFT_LEADER ? 2 : tc_status(4).role == RAFT_LEADER ? 4 : 0;
	}
	REQUIRE(l != 0);
	CHECK_EQ(tc_propose(l, 4), ST_OK);
	CHECK_EQ(tc_status(6 - l).hs.commit, tc_status(l).hs.commit);
	CHECK(tc_status(1).role != RAFT_LEADER && tc_status(3).role != RAFT_LEADER);
	/* Refused, and nothing changes: no voter, an id twice, id 0. */
	uint64_t dup[] = {2, 2}, zero[] = {0};
	CHECK_EQ(raft_set_members(tc.r[l], NULL, 0, v24, 2), ST_EINVAL);
	CHECK_EQ(raft_set_members(tc.r[l], dup, 2, NULL, 0), ST_EINVAL);
	CHECK_EQ(raft_set_members(tc.r[l], v24, 2, zero, 1), ST_EINVAL);
	CHECK_EQ(tc_status(l).role, RAFT_LEADER);
	uint64_t m = 0;
	bool voter = false;
	CHECK(raft_progress(tc.r[l], 6 - l, &m, &voter) && voter);
}

static void t_bad_config(void)
{
	uint64_t voters[2] = {1, 1};
	struct raft_config cfg = {
	    .self = 1, .voters = voters, .n_voters = 2, .election_ticks = 10, .heartbeat_ticks = 1};
	struct raft *r = NULL;
	struct st_err err;
	CHECK_EQ(raft_new(&cfg, &r, &err), ST_EINVAL);
	CHECK_CONTAINS(err.msg, "listed twice");
	CHECK(r == NULL);
	voters[1] = 2;
	cfg.self = 3;
	CHECK_EQ(raft_new(&cfg, &r, &err), ST_EINVAL);
	CHECK_CONTAINS(err.msg, "neither a voter nor a learner");
	cfg.self = 1;
	struct raft_entry ents[1] = {{.lsn = 2, .epoch = 1}};
	cfg.entries = ents;
	cfg.n_entries = 1;
	CHECK_EQ(raft_new(&cfg, &r, &err), ST_EINVAL);
	CHECK_CONTAINS(err.msg, "LSNs must run");
	cfg.n_entries = 0;
	cfg.heartbeat_ticks = 10;
	CHECK_EQ(raft_new(&cfg, &r, &err), ST_EINVAL);
	CHECK(r == NULL);
}

static void t_restart_commit_clamped(void)
{
	/* A crash between the hard state and the entries: the commit LSN is
	 * taken down to the log, and the first Ready persists it. */
	struct raft_entry ents[2] = {{.lsn = 1, .epoch = 1}, {.lsn = 2, .epoch = 1}};
	struct raft_hard_state hs = {.epoch = 1, .vote = 1, .commit = 5};
	struct raft *r = tc_node(3, 0, 2, &hs, ents, 2);
	REQUIRE(r != NULL);
	struct raft_status st;
	raft_status(r, &st);
	CHECK_EQ(st.hs.commit, 2);
	CHECK_EQ(st.applied, 2);
	CHECK_EQ(st.hs.vote, 1);
	struct raft_ready rd;
	CHECK(raft_ready(r, &rd));
	CHECK(rd.hs_changed);
	CHECK_EQ(rd.hs.commit, 2);
	CHECK_EQ(rd.n_committed, 0);
	raft_advance(r);
	CHECK(!raft_ready(r, &rd));
	raft_free(r);
}

/* A batch of proposals goes out as one APPEND per peer and commits whole;
 * released entry data (the caller's storage holds it) is handed out with
 * data NULL and its length. */
/* An APPEND never ends inside an atomic unit (entries with `more`): the
 * 64-entry batch grows to the unit's end. */
static void t_unit_not_split(void)
{
	tc_init(3, 0);
	REQUIRE(tc_elect(1));
	enum { N = 70 };
	struct raft_entry e[N];
	uint8_t v[N];
	for (int i = 0; i < N; i++) {
		v[i] = (uint8_t)i;
		e[i] = (struct raft_entry){.data = &v[i], .len = 1};
		tc_hash(e[i].hash, v[i]);
		e[i].more = i >= 62 && i < 65; /* LSNs 64..67 are one unit (after the no-op) */
	}
	uint64_t first = 0;
	REQUIRE(raft_propose_n(tc.r[1], e, N, &first) == ST_OK);
	CHECK_EQ(first, 2);
	struct raft_ready rd;
	REQUIRE(raft_ready(tc.r[1], &rd));
	size_t appends = 0;
	for (size_t i = 0; i < rd.n_msgs; i++) {
		const struct raft_msg *m = &rd.msgs[i];
		if (m->type != RAFT_MSG_APPEND || !m->n_entries)
			continue;
		appends++;
		/* From LSN 2: 64 entries would end at LSN 65, inside the unit. */
		CHECK_EQ(m->prev_lsn, 1);
		CHECK_EQ(m->n_entries, 66);
		CHECK(!m->entries[m->n_entries - 1].more);
		CHECK(m->entries[62].more && m->entries[64].more && !m->entries[61].more);
	}
	CHECK_EQ(appends, 2);
	tc_run();
	for (uint64_t id = 1; id <= 3; id++)
		CHECK_EQ(tc_status(id).last_lsn, N + 1);
}

static void t_propose_batch(void)
{
	tc_init(3, 0);
	REQUIRE(tc_elect(1));
	struct raft_entry e[5];
	uint8_t v[5];
	for (int i = 0; i < 5; i++) {
		v[i] = (uint8_t)(10 + i);
		e[i] = (struct raft_entry){.data = &v[i], .len = 1};
		tc_hash(e[i].hash, v[i]);
	}
	uint64_t first = 0;
	REQUIRE(raft_propose_n(tc.r[1], e, 5, &first) == ST_OK);
	CHECK_EQ(first, 2); /* after the epoch's no-op */
	struct raft_ready rd;
	REQUIRE(raft_ready(tc.r[1], &rd));
	size_t appends = 0;
	for (size_t i = 0; i < rd.n_msgs; i++)
		if (rd.msgs[i].type == RAFT_MSG_APPEND && rd.msgs[i].n_entries) {
			appends++;
			CHECK_EQ(rd.msgs[i].n_entries, 5);
		}
	CHECK_EQ(appends, 2);
	tc_run();
	for (uint64_t id = 1; id <= 3; id++) {
		CHECK_EQ(tc_status(id).last_lsn, 6);
		CHECK_EQ(tc.committed[id], 6);
	}
	/* Released: the bytes are gone, the length and hash stay. */
	raft_release(tc.r[1], 6);
	const struct raft_entry *x = raft_entry_at(tc.r[1], 4);
	REQUIRE(x != NULL);
	CHECK(x->data == NULL);
	CHECK_EQ(x->len, 1);
	uint64_t match = 0;
	bool voter = false;
	CHECK(raft_progress(tc.r[1], 2, &match, &voter));
	CHECK_EQ(match, 6);
	CHECK(voter);
	CHECK(!raft_progress(tc.r[1], 9, &match, &voter));
	/* Not the leader: refused whole. */
	CHECK_EQ(raft_propose_n(tc.r[2], e, 5, NULL), RAFT_ENOTLEADER);
	CHECK_EQ(tc_status(2).last_lsn, 6);
}

static const struct test_case tests[] = {
    {"propose_batch", t_propose_batch},
    {"unit_not_split", t_unit_not_split},
    {"restart_commit_clamped", t_restart_commit_clamped},
    {"single_node", t_single_node},
    {"three_node_replication", t_three_node_replication},
    {"no_quorum_no_commit", t_no_quorum_no_commit},
    {"conflicting_suffix_truncated", t_conflicting_suffix_truncated},
    {"up_to_date_vote", t_up_to_date_vote},
    {"divergence_alarm", t_divergence_alarm},
    {"stale_leader_steps_down", t_stale_leader_steps_down},
    {"prevote_does_not_disrupt", t_prevote_does_not_disrupt},
    {"check_quorum", t_check_quorum},
    {"transfer", t_transfer},
    {"learner", t_learner},
    {"membership", t_membership},
    {"bad_config", t_bad_config},
};

TEST_MAIN(tests)
