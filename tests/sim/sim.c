/*
 * tests/sim/sim.c — deterministic simulator of the consensus core
 * (replication/raft.h; issue 11 §7; TigerBeetle's VOPR in spirit).
 *
 * One seed drives everything: a cluster of 3 or 5 voters (sometimes with a
 * learner) of the REAL core over an in-memory durable store and an
 * in-memory network that drops, duplicates, delays and so reorders
 * messages; symmetric, asymmetric and leader-isolating partitions; crashes
 * that lose everything not yet persisted (a node restarts from its durable
 * hard state and log only); restarts; skewed ticks (each node ticks with
 * its own probability); random proposals and leadership transfers; and
 * membership changes (REPLICATION.md §13): every run has one spare node,
 * on the network but in nobody's config, that the leader may add as a
 * learner and later promote, and the leader may remove any other member
 * (down to 3 voters of 5, 2 of 3). A change is an entry whose data starts
 * with SIM_MEMBERS_TAG; each node applies it when its Ready hands it out
 * as committed (raft_set_members after raft_advance), and the leader
 * proposes one only under rule 2 of §13 (an entry of its epoch committed,
 * the previous change applied). A restart takes the last change at or
 * below the durable commit LSN, as stratad reads its membership record.
 *
 * After every step it checks Raft's invariants: election safety (one leader
 * per epoch), leader append-only, log matching, leader completeness and
 * state-machine safety (no two nodes commit different entries at one LSN),
 * plus the hash chain of every durable entry and no divergence alarm;
 * with membership: every node applies the same sequence of changes, a
 * node that applied its removal never leads, no leader holds two changes
 * above its commit LSN, and "committed is safe" counts each voter's own
 * applied config. At
 * the end it heals everything, requires a leader within a bound and every
 * member of its config caught up, and checks that every ACKNOWLEDGED proposal (committed at
 * the leader that took it) is in every node's committed log exactly once.
 *
 *   sim --seed N [--nodes 3|5] [--steps S] [--trace]   one seed
 *   sim --seeds N [--from S] [--steps S]               N seeds, S.. (3 and 5 nodes)
 *   sim --expect-violation --seeds N                   negative control: passes
 *                                                      when some seed fails
 * The run ends with "N passed, N failed"; a failing seed prints the command
 * that replays it (same seed, nodes and steps give the same run: the only
 * randomness is the seed's generator, and the core's timeouts are seeded
 * from it).
 *
 * Budget: 3000 steps a seed (an election timeout is 10-20 ticks, so a run
 * sees about 30 leaders and 40 crashes), about 4 ms a seed on this 2-core
 * machine: make test's 2000 seeds take about 8 s; make sim SEEDS=N runs more.
 * The "committed entry is safe" check (a voter lacking the highest
 * committed entry must not be as up to date as a majority's durable logs)
 * is stronger than waiting for a loss to happen: it is what finds
 * RAFT_BUG_COMMIT_OLD_EPOCH within a few seeds rather than ~1 in 700.
 *
 * Single-threaded; all memory is freed at the end of each seed.
 */
#include "replication/raft.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIM_MAX          7   /* 5 voters + a learner + the spare */
#define SIM_ELECTION     10  /* election timeout, ticks */
#define SIM_HEARTBEAT    2   /* heartbeat interval, ticks */
#define SIM_SETTLE_STEPS 400 /* bound on the healed cluster's recovery */

/* A membership change is an entry of SIM_MEMBERS_LEN bytes: the tag, the
 * counts of voters, learners and removed ids, then the ids one byte each.
 * Proposals are 8 bytes, so the length alone keeps the two apart. */
#define SIM_MEMBERS_TAG 0xC0
#define SIM_MEMBERS_LEN 16
#define SIM_MAX_CHANGES 32 /* a run's changes: ids are never reused, so few */

/* A membership: voters, learners and the ids removed for good (a removed
 * node learns from the removed list that it must never take part again,
 * as stratad does; a node in no list is a learner-to-be, §13 rule 6). */
struct sim_members {
	uint8_t nv, nl, nr;                          /* counts */
	uint8_t v[SIM_MAX], l[SIM_MAX], rm[SIM_MAX]; /* ids */
};

/* A node's simulated disk: its durable log (entries and data owned). */
struct sim_dlog {
	struct raft_entry *e; /* entries, LSN i + 1 at i */
	size_t n;             /* count */
	size_t cap;           /* allocated */
};

struct sim_node {
	uint64_t id;                      /* node id, 1.. */
	bool learner;                     /* a non-voting member */
	struct raft *r;                   /* the core, NULL while down */
	struct raft_hard_state hs;        /* durable hard state */
	struct sim_dlog disk;             /* durable log */
	unsigned tick_pct;                /* chance of ticking at a step (skew) */
	uint64_t checked_commit;          /* committed LSNs checked so far */
	uint64_t lead_epoch;              /* epoch in which it was last seen leading */
	uint64_t lead_last;               /* its last LSN then */
	uint8_t lead_hash[RAFT_HASH_LEN]; /* the hash at lead_last then */
	struct sim_members m;             /* applied membership (down: the restart's) */
	uint64_t m_lsn;                   /* LSN of the change m came from, 0 = initial */
	size_t m_count;                   /* changes applied (m is the m_count-th) */
	uint32_t known;                   /* bit id: the core knows node id */
};

/* A message in flight (entries and their data owned). */
struct sim_msg {
	uint64_t at;       /* step at which it arrives */
	struct raft_msg m; /* the message */
};

/* What the cluster as a whole has committed. */
struct sim_commit {
	uint64_t epoch;              /* entry's epoch */
	uint8_t hash[RAFT_HASH_LEN]; /* entry's hash */
	uint64_t seen_epoch;         /* epoch of the first node seen to commit it */
};

struct sim {
	uint64_t seed;                       /* this run's seed */
	uint64_t rng;                        /* xorshift state */
	bool trace;                          /* print every event */
	size_t n;                            /* nodes (voters + learners) */
	size_t n_voters;                     /* voters at the start */
	size_t min_voters;                   /* removals stop here */
	uint64_t spare;                      /* id of the node no config holds yet */
	struct sim_members init;             /* the membership before any change */
	uint64_t mseq[SIM_MAX_CHANGES];      /* LSN of each committed change, in order */
	size_t n_mseq;                       /* count */
	struct sim_members mlast;            /* the change at mseq[n_mseq - 1] */
	struct sim_node nodes[SIM_MAX];      /* nodes[i].id = i + 1 */
	bool link[SIM_MAX + 1][SIM_MAX + 1]; /* link[from][to] carries messages */
	struct sim_msg *msgs;                /* network */
	size_t n_msgs;                       /* in flight */
	size_t cap_msgs;                     /* allocated */
	unsigned drop_pct;                   /* chance a message is lost */
	unsigned dup_pct;                    /* chance a message is duplicated */
	unsigned max_delay;                  /* steps a message may take */
	uint64_t now;                        /* current step */
	struct sim_commit *gc;               /* cluster commits, LSN i + 1 at i */
	size_t n_gc;                         /* count */
	size_t cap_gc;                       /* allocated */
	uint64_t *leaders;                   /* leader of each epoch (0 = none) */
	size_t cap_leaders;                  /* allocated epochs */
	bool *acked;                         /* acked[id]: proposal id acknowledged */
	uint64_t next_id;                    /* next proposal id (ids 1..) */
	size_t cap_ids;                      /* allocated ids */
	bool failed;                         /* an invariant broke */
	char why[256];                       /* what broke */
	uint64_t acks;                       /* proposals acknowledged */
	bool chaos;                          /* faults allowed (not while settling) */
	const uint8_t *in;                   /* fuzz input: each draw's low byte while it lasts */
	size_t in_len, in_pos;
};

/* What the runs exercised, summed over seeds (printed at the end). */
static struct {
	uint64_t leaders;      /* epochs that had a leader */
	uint64_t crashes;      /* crashes, torn ones included */
	uint64_t torn;         /* crashes in the middle of persisting a Ready */
	uint64_t truncated;    /* durable entries removed by a truncation */
	uint64_t settle_steps; /* steps the healed clusters needed, in total */
	uint64_t adds;         /* membership changes committed: the spare added */
	uint64_t promotions;   /* a learner promoted */
	uint64_t removals;     /* a member removed */
	uint64_t removed;      /* removals applied by the removed node itself */
	uint64_t new_leaders;  /* epochs led by a node that began as a learner */
} sim_stats;

static uint64_t sim_rand(struct sim *s)
{
	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 7;
	s->rng ^= s->rng << 17;
	if (s->in_pos < s->in_len) /* a fuzzer chooses, then the generator goes on */
		return (s->rng & ~(uint64_t)0xff) | s->in[s->in_pos++];
	return s->rng;
}

static unsigned sim_pct(struct sim *s)
{
	return (unsigned)(sim_rand(s) % 100);
}

__attribute__((format(printf, 2, 3))) static void sim_fail(struct sim *s, const char *fmt, ...)
{
	if (s->failed)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->why, sizeof(s->why), fmt, ap);
	va_end(ap);
	s->failed = true;
}

static void *sim_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q) {
		fprintf(stderr, "sim: out of memory\n");
		abort();
	}
	return q;
}

/* The chain hash of the simulated store: FNV-1a over the previous hash,
 * LSN, epoch and data, spread over 32 bytes (collisions are not the point). */
static void sim_hash(void *ctx, const uint8_t prev[RAFT_HASH_LEN], uint64_t lsn, uint64_t epoch,
                     const void *data, size_t len, uint8_t out[RAFT_HASH_LEN])
{
	(void)ctx;
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < RAFT_HASH_LEN; i++)
		h = (h ^ prev[i]) * 0x100000001b3ull;
	for (int i = 0; i < 8; i++)
		h = (h ^ ((lsn >> (8 * i)) & 0xff)) * 0x100000001b3ull;
	for (int i = 0; i < 8; i++)
		h = (h ^ ((epoch >> (8 * i)) & 0xff)) * 0x100000001b3ull;
	for (size_t i = 0; i < len; i++)
		h = (h ^ ((const uint8_t *)data)[i]) * 0x100000001b3ull;
	for (size_t i = 0; i < RAFT_HASH_LEN; i++) {
		h = (h ^ (i + 1)) * 0x100000001b3ull;
		out[i] = (uint8_t)(h >> 40);
	}
}

static void sim_entry_copy(struct raft_entry *dst, const struct raft_entry *src)
{
	*dst = *src;
	if (src->len) {
		void *d = sim_xrealloc(NULL, src->len);
		memcpy(d, src->data, src->len);
		dst->data = d;
	} else {
		dst->data = NULL;
	}
}

static void sim_msg_free(struct raft_msg *m)
{
	for (size_t i = 0; i < m->n_entries; i++)
		free((void *)m->entries[i].data);
	free((void *)m->entries);
	m->entries = NULL;
	m->n_entries = 0;
}

static void sim_enqueue(struct sim *s, const struct raft_msg *m, uint64_t at)
{
	if (s->n_msgs == s->cap_msgs) {
		s->cap_msgs = s->cap_msgs ? 2 * s->cap_msgs : 64;
		s->msgs = sim_xrealloc(s->msgs, s->cap_msgs * sizeof(*s->msgs));
	}
	struct sim_msg *q = &s->msgs[s->n_msgs++];
	q->at = at;
	q->m = *m;
	if (m->n_entries) {
		struct raft_entry *e = sim_xrealloc(NULL, m->n_entries * sizeof(*e));
		for (size_t i = 0; i < m->n_entries; i++)
			sim_entry_copy(&e[i], &m->entries[i]);
		q->m.entries = e;
	} else {
		q->m.entries = NULL;
	}
}

static void sim_send(struct sim *s, const struct raft_msg *m)
{
	if (sim_pct(s) < s->drop_pct)
		return;
	int copies = sim_pct(s) < s->dup_pct ? 2 : 1;
	for (int c = 0; c < copies; c++)
		sim_enqueue(s, m, s->now + 1 + sim_rand(s) % s->max_delay);
}

/* ---- membership ---------------------------------------------------------- */

enum { SIM_NONE, SIM_VOTER, SIM_LEARNER, SIM_REMOVED };

/* What id is in m: SIM_VOTER, SIM_LEARNER, SIM_REMOVED or SIM_NONE. */
static int sim_members_role(const struct sim_members *m, uint64_t id)
{
	for (size_t i = 0; i < m->nv; i++)
		if (m->v[i] == id)
			return SIM_VOTER;
	for (size_t i = 0; i < m->nl; i++)
		if (m->l[i] == id)
			return SIM_LEARNER;
	for (size_t i = 0; i < m->nr; i++)
		if (m->rm[i] == id)
			return SIM_REMOVED;
	return SIM_NONE;
}

static void sim_members_encode(const struct sim_members *m, uint8_t out[SIM_MEMBERS_LEN])
{
	memset(out, 0, SIM_MEMBERS_LEN);
	out[0] = SIM_MEMBERS_TAG;
	out[1] = m->nv;
	out[2] = m->nl;
	out[3] = m->nr;
	memcpy(out + 4, m->v, m->nv);
	memcpy(out + 4 + m->nv, m->l, m->nl);
	memcpy(out + 4 + m->nv + m->nl, m->rm, m->nr);
}

/* True when e is a membership change; *m is it. */
static bool sim_members_decode(const struct raft_entry *e, struct sim_members *m)
{
	if (!e || e->len != SIM_MEMBERS_LEN || !e->data)
		return false;
	const uint8_t *d = e->data;
	if (d[0] != SIM_MEMBERS_TAG || d[1] > SIM_MAX || d[2] > SIM_MAX || d[3] > SIM_MAX ||
	    d[1] + d[2] + d[3] > SIM_MEMBERS_LEN - 4)
		return false;
	m->nv = d[1];
	m->nl = d[2];
	m->nr = d[3];
	memcpy(m->v, d + 4, m->nv);
	memcpy(m->l, d + 4 + m->nv, m->nl);
	memcpy(m->rm, d + 4 + m->nv + m->nl, m->nr);
	return true;
}

/* The lists node self's core is given for m. Self in neither list (the
 * spare before its addition, or a removed node) joins the learners when
 * with_self: raft_new wants self in a list, and a node in no list is a
 * learner until the log says more (§13 rule 6). *known gets the ids the
 * core will know (self always: a removed core keeps its own row). */
static void sim_members_lists(const struct sim_members *m, uint64_t self, bool with_self,
                              uint64_t *v, size_t *nv, uint64_t *l, size_t *nl, uint32_t *known)
{
	*known = (uint32_t)1 << self;
	for (size_t i = 0; i < m->nv; i++) {
		v[i] = m->v[i];
		*known |= (uint32_t)1 << m->v[i];
	}
	for (size_t i = 0; i < m->nl; i++) {
		l[i] = m->l[i];
		*known |= (uint32_t)1 << m->l[i];
	}
	*nv = m->nv;
	*nl = m->nl;
	int role = sim_members_role(m, self);
	if (with_self && (role == SIM_NONE || role == SIM_REMOVED))
		l[(*nl)++] = self;
}

/* A node applies its k-th change (from 0) at lsn: the k-th change of every
 * node is the same LSN (and state-machine safety makes it the same entry). */
static void sim_seq_note(struct sim *s, uint64_t id, size_t k, uint64_t lsn,
                         const struct sim_members *m)
{
	if (k < s->n_mseq) {
		if (s->mseq[k] != lsn)
			sim_fail(s,
			         "membership: node %" PRIu64 " applies change %zu at LSN %" PRIu64
			         ", another node at LSN %" PRIu64,
			         id, k + 1, lsn, s->mseq[k]);
		return;
	}
	if (k > s->n_mseq || k >= SIM_MAX_CHANGES) {
		sim_fail(s, "membership: node %" PRIu64 " applies change %zu of %zu known", id,
		         k + 1, s->n_mseq);
		return;
	}
	s->mseq[s->n_mseq++] = lsn;
	if (m->nr > s->mlast.nr)
		sim_stats.removals++;
	else if (m->nv > s->mlast.nv)
		sim_stats.promotions++;
	else
		sim_stats.adds++;
	s->mlast = *m;
}

/* The membership a restart takes: the last change at or below the durable
 * commit LSN (what was applied before the crash, or what is applied at
 * once: the core counts every LSN up to it applied), else the initial one.
 * Also called at a crash, so that a down node's m is the one it will use. */
static void sim_members_load(struct sim *s, struct sim_node *nd)
{
	uint64_t upto = nd->hs.commit < nd->disk.n ? nd->hs.commit : nd->disk.n;
	nd->m = s->init;
	nd->m_lsn = 0;
	nd->m_count = 0;
	for (uint64_t lsn = 1; lsn <= upto; lsn++) {
		struct sim_members m;
		if (!sim_members_decode(&nd->disk.e[lsn - 1], &m))
			continue;
		sim_seq_note(s, nd->id, nd->m_count++, lsn, &m);
		nd->m = m;
		nd->m_lsn = lsn;
	}
}

/* A committed change reaches the core (after raft_advance: the Ready
 * contract allows no call between raft_ready and raft_advance). */
static void sim_apply_members(struct sim *s, struct sim_node *nd, uint64_t lsn,
                              const struct sim_members *m)
{
	if (lsn <= nd->m_lsn)
		sim_fail(s, "membership: node %" PRIu64 " applies LSN %" PRIu64 " after %" PRIu64,
		         nd->id, lsn, nd->m_lsn);
	sim_seq_note(s, nd->id, nd->m_count++, lsn, m);
	nd->m = *m;
	nd->m_lsn = lsn;
	uint64_t v[SIM_MAX], l[SIM_MAX];
	size_t nv, nl;
	int role = sim_members_role(m, nd->id);
	/* The spare applying a change made before its addition stays a
	 * learner-to-be; a removed node leaves both lists for good. */
	sim_members_lists(m, nd->id, role == SIM_NONE, v, &nv, l, &nl, &nd->known);
	int rc = raft_set_members(nd->r, v, nv, l, nl);
	if (rc != ST_OK) {
		sim_fail(s, "node %" PRIu64 " refuses the change at LSN %" PRIu64 ": %d", nd->id,
		         lsn, rc);
		return;
	}
	struct raft_status st;
	raft_status(nd->r, &st);
	if (st.removed != (role == SIM_REMOVED) || st.is_learner != (role != SIM_VOTER) ||
	    (role != SIM_VOTER && st.role != RAFT_FOLLOWER))
		sim_fail(s,
		         "node %" PRIu64 " after the change at LSN %" PRIu64
		         ": removed %d, learner %d, role %s",
		         nd->id, lsn, st.removed, st.is_learner, raft_role_name(st.role));
	if (role == SIM_REMOVED)
		sim_stats.removed++;
}

/* ---- one node's Ready: persist, check the chain, send, apply ---------- */

static void sim_ack(struct sim *s, const struct raft_entry *e)
{
	uint64_t id = 0;
	if (e->len != 8)
		return;
	memcpy(&id, e->data, 8);
	if (id == 0 || id >= s->next_id) {
		sim_fail(s, "committed entry carries unknown proposal id %" PRIu64, id);
		return;
	}
	if (!s->acked[id]) {
		s->acked[id] = true;
		s->acks++;
	}
}

static void sim_crash(struct sim *s, struct sim_node *nd);
static void sim_trace(struct sim *s, const char *what);

static void sim_process(struct sim *s, struct sim_node *nd)
{
	struct raft_ready rd;
	while (nd->r && raft_ready(nd->r, &rd)) {
		/* A torn Ready: the node dies after the hard state and part of
		 * the entries are durable, before anything is sent. */
		bool torn = s->chaos && sim_rand(s) % 2000 == 0;
		size_t n_persist = torn ? (size_t)(sim_rand(s) % (rd.n_entries + 1)) : rd.n_entries;
		/* (The Ready contract: a torn persist keeps whole atomic units.) */
		while (n_persist > 0 && rd.entries[n_persist - 1].more)
			n_persist--;
		if (rd.alarm) {
			uint64_t lsn = 0, from = 0;
			raft_alarm(nd->r, &lsn, &from);
			sim_fail(s,
			         "node %" PRIu64 " raised the divergence alarm at LSN %" PRIu64
			         " (message from %" PRIu64 ")",
			         nd->id, lsn, from);
		}
		if (rd.truncate_from) {
			if (rd.truncate_from <= nd->hs.commit && rd.truncate_from <= nd->disk.n)
				sim_fail(s,
				         "node %" PRIu64 " truncates its log at LSN %" PRIu64
				         " at or below its durable commit LSN %" PRIu64,
				         nd->id, rd.truncate_from, nd->hs.commit);
			while (nd->disk.n >= rd.truncate_from) {
				sim_stats.truncated++;
				nd->disk.n--;
				free((void *)nd->disk.e[nd->disk.n].data);
			}
		}
		if (rd.hs_changed) {
			if (rd.hs.epoch < nd->hs.epoch)
				sim_fail(s,
				         "node %" PRIu64 " persisted epoch %" PRIu64
				         " after %" PRIu64,
				         nd->id, rd.hs.epoch, nd->hs.epoch);
			nd->hs = rd.hs;
		}
		for (size_t i = 0; i < n_persist; i++) {
			const struct raft_entry *e = &rd.entries[i];
			struct sim_dlog *d = &nd->disk;
			uint8_t want[RAFT_HASH_LEN];
			const uint8_t *prev =
			    d->n ? d->e[d->n - 1].hash : (const uint8_t[RAFT_HASH_LEN]){0};
			if (e->lsn != d->n + 1)
				sim_fail(s, "node %" PRIu64 " appends LSN %" PRIu64 " after %zu",
				         nd->id, e->lsn, d->n);
			sim_hash(NULL, prev, e->lsn, e->epoch, e->data, e->len, want);
			if (memcmp(want, e->hash, RAFT_HASH_LEN) != 0)
				sim_fail(s,
				         "node %" PRIu64 " appends LSN %" PRIu64
				         " whose hash does not chain from LSN %" PRIu64,
				         nd->id, e->lsn, e->lsn - 1);
			if (d->n == d->cap) {
				d->cap = d->cap ? 2 * d->cap : 64;
				d->e = sim_xrealloc(d->e, d->cap * sizeof(*d->e));
			}
			sim_entry_copy(&d->e[d->n++], e);
		}
		if (torn) {
			sim_stats.torn++;
			sim_crash(s, nd);
			sim_trace(s, "torn crash");
			break;
		}
		if (nd->hs.commit > nd->disk.n)
			sim_fail(s,
			         "node %" PRIu64 " made commit LSN %" PRIu64
			         " durable with %zu entries",
			         nd->id, nd->hs.commit, nd->disk.n);
		/* Durable now: the messages may leave. */
		for (size_t i = 0; i < rd.n_msgs; i++)
			sim_send(s, &rd.msgs[i]);
		struct raft_status st;
		raft_status(nd->r, &st);
		struct {
			uint64_t lsn;
			struct sim_members m;
		} chg[SIM_MAX_CHANGES];
		size_t n_chg = 0;
		for (size_t i = 0; i < rd.n_committed; i++) {
			if (st.role == RAFT_LEADER)
				sim_ack(s, &rd.committed[i]);
			if (n_chg < SIM_MAX_CHANGES &&
			    sim_members_decode(&rd.committed[i], &chg[n_chg].m))
				chg[n_chg++].lsn = rd.committed[i].lsn;
		}
		raft_advance(nd->r);
		/* Applied: each change in LSN order (the Ready's entries were
		 * copied out above, its pointers end at raft_advance). */
		for (size_t k = 0; k < n_chg; k++)
			sim_apply_members(s, nd, chg[k].lsn, &chg[k].m);
	}
}

/* ---- invariants ---------------------------------------------------------- */

static void sim_check(struct sim *s)
{
	struct raft_status st[SIM_MAX];
	for (size_t i = 0; i < s->n; i++) {
		struct sim_node *nd = &s->nodes[i];
		if (!nd->r)
			continue;
		raft_status(nd->r, &st[i]);
		/* State-machine safety: one entry per committed LSN, cluster-wide. */
		for (uint64_t lsn = nd->checked_commit + 1; lsn <= st[i].hs.commit; lsn++) {
			const struct raft_entry *e = raft_entry_at(nd->r, lsn);
			if (lsn <= s->n_gc) {
				struct sim_commit *c = &s->gc[lsn - 1];
				if (c->epoch != e->epoch || memcmp(c->hash, e->hash, RAFT_HASH_LEN))
					sim_fail(s,
					         "state-machine safety: node %" PRIu64
					         " commits LSN %" PRIu64 " epoch %" PRIu64
					         ", another node epoch %" PRIu64,
					         nd->id, lsn, e->epoch, c->epoch);
				continue;
			}
			if (s->n_gc == s->cap_gc) {
				s->cap_gc = s->cap_gc ? 2 * s->cap_gc : 256;
				s->gc = sim_xrealloc(s->gc, s->cap_gc * sizeof(*s->gc));
			}
			struct sim_commit *c = &s->gc[s->n_gc++];
			c->epoch = e->epoch;
			memcpy(c->hash, e->hash, RAFT_HASH_LEN);
			c->seen_epoch = st[i].hs.epoch;
		}
		if (st[i].hs.commit > nd->checked_commit)
			nd->checked_commit = st[i].hs.commit;
		/* Atomic units whole (REPLICATION.md §5.3): no log ends inside
		 * one, and no commit LSN stops inside one. */
		const struct raft_entry *le = raft_entry_at(nd->r, st[i].last_lsn);
		const struct raft_entry *ce = raft_entry_at(nd->r, st[i].hs.commit);
		if ((le && le->more) || (ce && ce->more))
			sim_fail(s,
			         "atomic unit split: node %" PRIu64 "'s %s LSN %" PRIu64
			         " is inside a unit",
			         nd->id, le && le->more ? "last" : "commit",
			         le && le->more ? st[i].last_lsn : st[i].hs.commit);
		if (st[i].role != RAFT_LEADER) {
			nd->lead_epoch = 0;
			continue;
		}
		uint64_t ep = st[i].hs.epoch;
		if (st[i].is_learner)
			sim_fail(s, "learner %" PRIu64 " became leader", nd->id);
		if (sim_members_role(&nd->m, nd->id) == SIM_REMOVED)
			sim_fail(s,
			         "node %" PRIu64 " leads epoch %" PRIu64
			         " after it applied its removal",
			         nd->id, st[i].hs.epoch);
		/* One change in flight (§13 rule 2): a leader proposes a change
		 * only once the previous one is applied, hence committed, and
		 * every log that holds a change got it with a commit LSN at or
		 * past the one before, so no leader holds two above its commit. */
		size_t pending = 0;
		for (uint64_t lsn = st[i].hs.commit + 1; lsn <= st[i].last_lsn; lsn++) {
			struct sim_members m;
			if (sim_members_decode(raft_entry_at(nd->r, lsn), &m) && ++pending > 1)
				sim_fail(s,
				         "membership: leader %" PRIu64 " holds two changes above "
				         "its commit LSN %" PRIu64 ", the second at LSN %" PRIu64,
				         nd->id, st[i].hs.commit, lsn);
		}
		/* Election safety. */
		if (ep >= s->cap_leaders) {
			size_t cap = (ep + 1) * 2;
			s->leaders = sim_xrealloc(s->leaders, cap * sizeof(*s->leaders));
			memset(s->leaders + s->cap_leaders, 0,
			       (cap - s->cap_leaders) * sizeof(*s->leaders));
			s->cap_leaders = cap;
		}
		if (!s->leaders[ep])
			sim_stats.leaders++;
		if (!s->leaders[ep] && nd->id > s->n_voters)
			sim_stats.new_leaders++;
		if (s->leaders[ep] && s->leaders[ep] != nd->id)
			sim_fail(s,
			         "election safety: nodes %" PRIu64 " and %" PRIu64
			         " both lead epoch %" PRIu64,
			         s->leaders[ep], nd->id, ep);
		s->leaders[ep] = nd->id;
		/* Leader append-only. */
		if (nd->lead_epoch == ep) {
			const struct raft_entry *e = raft_entry_at(nd->r, nd->lead_last);
			if (st[i].last_lsn < nd->lead_last ||
			    (nd->lead_last && memcmp(e->hash, nd->lead_hash, RAFT_HASH_LEN)))
				sim_fail(s,
				         "leader append-only: leader %" PRIu64 " of epoch %" PRIu64
				         " rewrote its log at or below LSN %" PRIu64,
				         nd->id, ep, nd->lead_last);
		}
		nd->lead_epoch = ep;
		raft_last(nd->r, &nd->lead_last, nd->lead_hash);
		/* Leader completeness: every entry committed in an earlier epoch.
		 * The hash chain makes the highest such LSN stand for all below. */
		for (size_t k = s->n_gc; k > 0; k--) {
			if (s->gc[k - 1].seen_epoch >= ep)
				continue;
			const struct raft_entry *e = raft_entry_at(nd->r, k);
			if (!e || e->epoch != s->gc[k - 1].epoch ||
			    memcmp(e->hash, s->gc[k - 1].hash, RAFT_HASH_LEN))
				sim_fail(s,
				         "leader completeness: leader %" PRIu64 " of epoch %" PRIu64
				         " lacks LSN %zu committed in epoch %" PRIu64,
				         nd->id, ep, k, s->gc[k - 1].seen_epoch);
			break;
		}
	}
	/* Committed means safe from every future election: a voter whose
	 * durable log lacks the highest committed entry must not be at least
	 * as up to date as a majority of the voters' durable logs (down nodes
	 * included), or it could win and drop the entry (Figure 8). Each
	 * voter is judged by its own membership (a down node's is the one it
	 * restarts with): the voters it would ask for votes. */
	if (s->n_gc) {
		const struct sim_commit *c = &s->gc[s->n_gc - 1];
		for (size_t v = 0; v < s->n; v++) {
			const struct sim_members *mv = &s->nodes[v].m;
			if (sim_members_role(mv, v + 1) != SIM_VOTER)
				continue; /* learners and removed nodes never campaign */
			const struct sim_dlog *dv = &s->nodes[v].disk;
			if (dv->n >= s->n_gc &&
			    !memcmp(dv->e[s->n_gc - 1].hash, c->hash, RAFT_HASH_LEN))
				continue;
			uint64_t ve = dv->n ? dv->e[dv->n - 1].epoch : 0;
			size_t below = 0;
			for (size_t k = 0; k < mv->nv; k++) {
				const struct sim_dlog *du = &s->nodes[mv->v[k] - 1].disk;
				uint64_t ue = du->n ? du->e[du->n - 1].epoch : 0;
				if (ue < ve || (ue == ve && du->n <= dv->n))
					below++;
			}
			if (below >= (size_t)mv->nv / 2 + 1)
				sim_fail(s,
				         "committed LSN %zu (epoch %" PRIu64
				         ") could be lost: node %zu "
				         "lacks it and its log is as up to date as a majority's",
				         s->n_gc, c->epoch, v + 1);
		}
	}
	/* Log matching: same LSN and epoch means the same entry and prefix; the
	 * chain (checked on append) makes the highest such LSN stand for all. */
	for (size_t i = 0; i < s->n; i++) {
		for (size_t j = i + 1; j < s->n; j++) {
			if (!s->nodes[i].r || !s->nodes[j].r)
				continue;
			uint64_t k =
			    st[i].last_lsn < st[j].last_lsn ? st[i].last_lsn : st[j].last_lsn;
			for (; k > 0; k--) {
				const struct raft_entry *a = raft_entry_at(s->nodes[i].r, k);
				const struct raft_entry *b = raft_entry_at(s->nodes[j].r, k);
				if (a->epoch != b->epoch)
					continue;
				if (memcmp(a->hash, b->hash, RAFT_HASH_LEN))
					sim_fail(s,
					         "log matching: nodes %zu and %zu hold different "
					         "entries "
					         "at LSN %" PRIu64 " epoch %" PRIu64,
					         i + 1, j + 1, k, a->epoch);
				break;
			}
		}
	}
}

/* ---- nodes, faults and the schedule ----------------------------------- */

static void sim_start(struct sim *s, struct sim_node *nd)
{
	uint64_t voters[SIM_MAX], learners[SIM_MAX];
	size_t nv, nl;
	sim_members_load(s, nd);
	sim_members_lists(&nd->m, nd->id, true, voters, &nv, learners, &nl, &nd->known);
	struct raft_config cfg = {
	    .self = nd->id,
	    .voters = voters,
	    .n_voters = nv,
	    .learners = learners,
	    .n_learners = nl,
	    .election_ticks = SIM_ELECTION,
	    .heartbeat_ticks = SIM_HEARTBEAT,
	    .seed = s->seed * 1000003 + s->now,
	    .max_append = 1 + sim_rand(s) % 4,
	    .hash_fn = sim_hash,
	    .hs = &nd->hs,
	    .entries = nd->disk.e,
	    .n_entries = nd->disk.n,
	};
	struct st_err err;
	int rc = raft_new(&cfg, &nd->r, &err);
	if (rc != ST_OK) {
		sim_fail(s, "node %" PRIu64 " does not restart: %s", nd->id, err.msg);
		return;
	}
	nd->lead_epoch = 0;
	/* A removed node comes back removed: raft_new wants self in a list,
	 * so it starts as a learner and leaves at once (stratad reads its id
	 * in the removed list of its membership record). */
	if (sim_members_role(&nd->m, nd->id) == SIM_REMOVED) {
		sim_members_lists(&nd->m, nd->id, false, voters, &nv, learners, &nl, &nd->known);
		rc = raft_set_members(nd->r, voters, nv, learners, nl);
		if (rc != ST_OK)
			sim_fail(s, "removed node %" PRIu64 " refuses its membership: %d", nd->id,
			         rc);
	}
}

static void sim_crash(struct sim *s, struct sim_node *nd)
{
	sim_stats.crashes++;
	raft_free(nd->r);
	nd->r = NULL;
	nd->lead_epoch = 0;
	sim_members_load(s, nd);
}

static struct sim_node *sim_leader(struct sim *s)
{
	struct sim_node *best = NULL;
	uint64_t best_epoch = 0;
	for (size_t i = 0; i < s->n; i++) {
		struct raft_status st;
		if (!s->nodes[i].r)
			continue;
		raft_status(s->nodes[i].r, &st);
		if (st.role == RAFT_LEADER && st.hs.epoch >= best_epoch) {
			best = &s->nodes[i];
			best_epoch = st.hs.epoch;
		}
	}
	return best;
}

static void sim_heal(struct sim *s)
{
	for (size_t i = 0; i <= SIM_MAX; i++)
		for (size_t j = 0; j <= SIM_MAX; j++)
			s->link[i][j] = true;
}

static void sim_partition(struct sim *s)
{
	unsigned kind = sim_rand(s) % 3;
	if (kind == 0) {
		/* Symmetric: a random side against the rest. */
		bool side[SIM_MAX + 1];
		for (size_t i = 1; i <= s->n; i++)
			side[i] = sim_rand(s) & 1;
		for (size_t i = 1; i <= s->n; i++)
			for (size_t j = 1; j <= s->n; j++)
				s->link[i][j] = side[i] == side[j];
	} else if (kind == 1) {
		/* Asymmetric: one direction of one link. */
		size_t a = 1 + sim_rand(s) % s->n, b = 1 + sim_rand(s) % s->n;
		s->link[a][b] = false;
	} else {
		/* Isolate the leader (both directions). */
		struct sim_node *l = sim_leader(s);
		if (!l)
			return;
		for (size_t j = 1; j <= s->n; j++) {
			s->link[l->id][j] = j == l->id;
			s->link[j][l->id] = j == l->id;
		}
	}
}

static void sim_propose(struct sim *s)
{
	struct sim_node *nd = sim_leader(s);
	if (!nd || sim_pct(s) < 10) {
		nd = &s->nodes[sim_rand(s) % s->n];
		if (!nd->r)
			return;
	}
	/* One entry, or (a fifth of the time) an atomic unit of 2-4 entries
	 * (`more` on all but the last), which no APPEND may split. */
	uint64_t ids[4];
	struct raft_entry u[4];
	size_t k = sim_pct(s) < 20 ? 2 + sim_rand(s) % 3 : 1;
	uint64_t last;
	uint8_t prev[RAFT_HASH_LEN];
	struct raft_status st;
	raft_status(nd->r, &st);
	raft_last(nd->r, &last, prev);
	for (size_t i = 0; i < k; i++) {
		ids[i] = s->next_id + i;
		u[i] = (struct raft_entry){.data = &ids[i], .len = 8, .more = i + 1 < k};
		sim_hash(NULL, i ? u[i - 1].hash : prev, last + 1 + i, st.hs.epoch, &ids[i], 8,
			 u[i].hash);
	}
	int rc = raft_propose_n(nd->r, u, k, NULL);
	if (rc == ST_OK) {
		for (size_t i = 0; i < k; i++) {
			s->next_id++;
			if (s->next_id >= s->cap_ids) {
				size_t cap = s->cap_ids ? 2 * s->cap_ids : 256;
				s->acked = sim_xrealloc(s->acked, cap * sizeof(*s->acked));
				memset(s->acked + s->cap_ids, 0,
				       (cap - s->cap_ids) * sizeof(*s->acked));
				s->cap_ids = cap;
			}
		}
	} else if (st.role == RAFT_LEADER && rc != ST_EBUSY) {
		sim_fail(s, "leader %" PRIu64 " refused a proposal: %d", nd->id, rc);
	} else if (st.role != RAFT_LEADER && rc != RAFT_ENOTLEADER) {
		sim_fail(s, "follower %" PRIu64 " answered a proposal with %d", nd->id, rc);
	}
	sim_process(s, nd);
}

/* The leader changes the membership, under §13 rule 2: an entry of its own
 * epoch is committed (which commits every earlier change: the single-server
 * change safety condition) and its log holds no change above the last one
 * it applied. One change: add the spare as a learner, promote a learner
 * whose match is close, or remove a member other than itself (never below
 * min_voters voters, so the cluster keeps a quorum to make progress with). */
static void sim_change(struct sim *s)
{
	struct sim_node *nd = sim_leader(s);
	if (!nd)
		return;
	struct raft_status st;
	raft_status(nd->r, &st);
	const struct raft_entry *ce = raft_entry_at(nd->r, st.hs.commit);
	if (!ce || ce->epoch != st.hs.epoch)
		return;
	struct sim_members t;
	for (uint64_t lsn = nd->m_lsn + 1; lsn <= st.last_lsn; lsn++)
		if (sim_members_decode(raft_entry_at(nd->r, lsn), &t))
			return;
	/* The kind first, then the node: removals, having the most
	 * candidates, would otherwise shrink most runs to min_voters early
	 * (and fewer voters make the negative controls' bugs rarer). */
	const struct sim_members *m = &nd->m;
	struct sim_members opt[3][SIM_MAX];
	size_t n_opt[3] = {0, 0, 0};
	if (sim_members_role(m, s->spare) == SIM_NONE) {
		t = *m;
		t.l[t.nl++] = (uint8_t)s->spare;
		opt[0][n_opt[0]++] = t;
	}
	for (size_t i = 0; i < m->nl; i++) {
		uint64_t match = 0;
		bool voter;
		if (!raft_progress(nd->r, m->l[i], &match, &voter) || match + 8 < st.last_lsn)
			continue;
		t = *m;
		t.v[t.nv++] = m->l[i];
		memmove(&t.l[i], &t.l[i + 1], t.nl - i - 1);
		t.nl--;
		opt[1][n_opt[1]++] = t;
	}
	for (size_t i = 0; i < m->nv && m->nv > s->min_voters; i++) {
		if (m->v[i] == nd->id)
			continue;
		t = *m;
		t.rm[t.nr++] = m->v[i];
		memmove(&t.v[i], &t.v[i + 1], t.nv - i - 1);
		t.nv--;
		opt[2][n_opt[2]++] = t;
	}
	for (size_t i = 0; i < m->nl; i++) {
		t = *m;
		t.rm[t.nr++] = m->l[i];
		memmove(&t.l[i], &t.l[i + 1], t.nl - i - 1);
		t.nl--;
		opt[2][n_opt[2]++] = t;
	}
	size_t kinds[3], n_kinds = 0;
	for (size_t k = 0; k < 3; k++)
		if (n_opt[k])
			kinds[n_kinds++] = k;
	if (!n_kinds)
		return;
	size_t kind = kinds[sim_rand(s) % n_kinds];
	const struct sim_members *to = &opt[kind][sim_rand(s) % n_opt[kind]];
	uint8_t data[SIM_MEMBERS_LEN];
	sim_members_encode(to, data);
	uint64_t last;
	uint8_t prev[RAFT_HASH_LEN], hash[RAFT_HASH_LEN];
	raft_last(nd->r, &last, prev);
	sim_hash(NULL, prev, last + 1, st.hs.epoch, data, sizeof(data), hash);
	int rc = raft_propose(nd->r, data, sizeof(data), hash, NULL);
	if (rc != ST_OK && rc != ST_EBUSY)
		sim_fail(s, "leader %" PRIu64 " refused a membership change: %d", nd->id, rc);
	sim_process(s, nd);
	if (rc == ST_OK && s->trace) {
		char what[128];
		int k = snprintf(what, sizeof(what), "membership change at LSN %" PRIu64 " to",
		                 last + 1);
		/* Voters, learners (3*) and removed ids (-3). */
		const uint8_t *ids[3] = {to->v, to->l, to->rm};
		const size_t n_ids[3] = {to->nv, to->nl, to->nr};
		const char *pre[3] = {"", "", "-"}, *post[3] = {"", "*", ""};
		for (size_t j = 0; j < 3; j++)
			for (size_t i = 0; i < n_ids[j]; i++)
				k += snprintf(what + k, sizeof(what) - (size_t)k, " %s%u%s", pre[j],
				              (unsigned)ids[j][i], post[j]);
		sim_trace(s, what);
	}
}

/* Deliver every message due by now, in a random order. */
static void sim_deliver(struct sim *s)
{
	size_t k = 0;
	struct sim_msg *due = NULL;
	size_t n_due = 0;
	for (size_t i = 0; i < s->n_msgs; i++) {
		if (s->msgs[i].at <= s->now) {
			due = sim_xrealloc(due, (n_due + 1) * sizeof(*due));
			due[n_due++] = s->msgs[i];
		} else {
			s->msgs[k++] = s->msgs[i];
		}
	}
	s->n_msgs = k;
	for (size_t i = n_due; i > 1; i--) {
		size_t j = sim_rand(s) % i;
		struct sim_msg t = due[i - 1];
		due[i - 1] = due[j];
		due[j] = t;
	}
	for (size_t i = 0; i < n_due; i++) {
		struct raft_msg *m = &due[i].m;
		struct sim_node *to = &s->nodes[m->to - 1];
		if (to->r && s->link[m->from][m->to]) {
			int rc = raft_step(to->r, m);
			/* A core refuses a sender it does not know (a removed
			 * node, or one it has not learned was added yet). */
			if (rc == ST_EPROTO && ((to->known >> m->from) & 1))
				sim_fail(s,
				         "node %" PRIu64 " calls a message of type %d from %" PRIu64
				         " malformed",
				         to->id, (int)m->type, m->from);
			sim_process(s, to);
		}
		sim_msg_free(m);
	}
	free(due);
}

static void sim_tick_all(struct sim *s, bool skew)
{
	for (size_t i = 0; i < s->n; i++) {
		struct sim_node *nd = &s->nodes[i];
		if (!nd->r || (skew && sim_pct(s) >= nd->tick_pct))
			continue;
		raft_tick(nd->r);
		sim_process(s, nd);
	}
}

static void sim_trace(struct sim *s, const char *what)
{
	if (!s->trace)
		return;
	printf("step %" PRIu64 " %s |", s->now, what);
	for (size_t i = 0; i < s->n; i++) {
		struct raft_status st;
		if (!s->nodes[i].r) {
			printf(" %zu:down", i + 1);
			continue;
		}
		raft_status(s->nodes[i].r, &st);
		const char *mark = ""; /* "-" removed, "*" learner */
		if (st.removed || st.is_learner)
			mark = st.removed ? "-" : "*";
		printf(" %zu:%c%s e%" PRIu64 " l%" PRIu64 " c%" PRIu64, i + 1, "FPCL"[st.role],
		       mark, st.hs.epoch, st.last_lsn, st.hs.commit);
	}
	printf("\n");
}

/* The schedule: per step one event, chosen by these weights (per mille;
 * the rest of the time nothing but ticks and deliveries happens). */
enum sim_event {
	SIM_PROPOSE,
	SIM_CRASH,
	SIM_CRASH_LEADER,
	SIM_RESTART,
	SIM_PARTITION,
	SIM_HEAL,
	SIM_TRANSFER,
	SIM_MEMBERS,
	SIM_N_EVENTS
};
static const unsigned sim_weights[SIM_N_EVENTS] = {
    [SIM_PROPOSE] = 250,  [SIM_CRASH] = 8, [SIM_CRASH_LEADER] = 8, [SIM_RESTART] = 30,
    [SIM_PARTITION] = 10, [SIM_HEAL] = 15, [SIM_TRANSFER] = 3,     [SIM_MEMBERS] = 2,
};

static void sim_step(struct sim *s)
{
	s->now++;
	unsigned r = (unsigned)(sim_rand(s) % 1000);
	int ev = 0;
	while (ev < SIM_N_EVENTS && r >= sim_weights[ev])
		r -= sim_weights[ev++];
	struct sim_node *nd = NULL;
	switch (ev) {
	case SIM_PROPOSE:
		sim_propose(s);
		break;
	case SIM_CRASH:
		nd = &s->nodes[sim_rand(s) % s->n];
		if (nd->r) {
			sim_crash(s, nd);
			sim_trace(s, "crash");
		}
		break;
	case SIM_CRASH_LEADER:
		nd = sim_leader(s);
		if (nd) {
			sim_crash(s, nd);
			sim_trace(s, "crash leader");
		}
		break;
	case SIM_RESTART: {
		/* Restart a node that is down, if any. */
		size_t k = sim_rand(s) % s->n;
		for (size_t i = 0; i < s->n; i++) {
			nd = &s->nodes[(k + i) % s->n];
			if (!nd->r) {
				sim_start(s, nd);
				sim_trace(s, "restart");
				break;
			}
		}
		break;
	}
	case SIM_PARTITION:
		sim_partition(s);
		sim_trace(s, "partition");
		break;
	case SIM_HEAL:
		sim_heal(s);
		sim_trace(s, "heal");
		break;
	case SIM_MEMBERS:
		sim_change(s);
		break;
	case SIM_TRANSFER:
		nd = sim_leader(s);
		if (nd) {
			raft_transfer(nd->r, nd->m.v[sim_rand(s) % nd->m.nv]);
			sim_process(s, nd);
			sim_trace(s, "transfer");
		}
		break;
	default:
		break;
	}
	sim_tick_all(s, true);
	sim_deliver(s);
	sim_check(s);
}

/* Heal, restart everyone, and require a leader and a caught-up cluster. */
static void sim_settle(struct sim *s)
{
	sim_heal(s);
	s->drop_pct = 0;
	s->dup_pct = 0;
	for (size_t i = 0; i < s->n; i++)
		if (!s->nodes[i].r)
			sim_start(s, &s->nodes[i]);
	bool done = false;
	s->chaos = false;
	struct sim_node *l = NULL;
	/* A member added late (the spare) starts from an empty log and is
	 * shipped it a few entries a round trip: the bound grows by a step
	 * per entry of the longest log. */
	size_t longest = 0;
	for (size_t i = 0; i < s->n; i++)
		if (s->nodes[i].disk.n > longest)
			longest = s->nodes[i].disk.n;
	unsigned bound = SIM_SETTLE_STEPS + (unsigned)longest;
	for (unsigned k = 0; k < bound && !done && !s->failed; k++) {
		s->now++;
		sim_stats.settle_steps++;
		sim_tick_all(s, false);
		sim_deliver(s);
		sim_check(s);
		l = sim_leader(s);
		if (!l)
			continue;
		struct raft_status ls;
		raft_status(l->r, &ls);
		done = ls.hs.commit == ls.last_lsn && ls.last_epoch == ls.hs.epoch;
		/* Every member of the leader's membership (applied: its
		 * commit covers its log) catches up; removed nodes and a
		 * spare never added are left behind by design. */
		for (size_t i = 0; i < s->n && done; i++) {
			struct raft_status st;
			if (sim_members_role(&l->m, i + 1) != SIM_VOTER &&
			    sim_members_role(&l->m, i + 1) != SIM_LEARNER)
				continue;
			raft_status(s->nodes[i].r, &st);
			done = st.hs.commit == ls.last_lsn && st.hs.epoch == ls.hs.epoch;
		}
	}
	if (!done) {
		sim_trace(s, "not settled");
		sim_fail(s, "no leader with every member caught up within %u steps of healing",
		         bound);
		return;
	}
	/* Every acknowledged proposal, once, on every node. */
	uint32_t *count = sim_xrealloc(NULL, s->next_id * sizeof(*count));
	for (size_t i = 0; i < s->n && !s->failed; i++) {
		struct raft_status st;
		int role = sim_members_role(&l->m, i + 1);
		if (role != SIM_VOTER && role != SIM_LEARNER)
			continue;
		raft_status(s->nodes[i].r, &st);
		memset(count, 0, s->next_id * sizeof(*count));
		for (uint64_t lsn = 1; lsn <= st.hs.commit; lsn++) {
			const struct raft_entry *e = raft_entry_at(s->nodes[i].r, lsn);
			uint64_t id = 0;
			if (e->len != 8)
				continue;
			memcpy(&id, e->data, 8);
			if (id && id < s->next_id && ++count[id] > 1)
				sim_fail(s, "node %zu commits proposal %" PRIu64 " twice", i + 1,
				         id);
		}
		for (uint64_t id = 1; id < s->next_id; id++)
			if (s->acked[id] && count[id] != 1)
				sim_fail(s,
				         "acknowledged proposal %" PRIu64 " is not in node %zu's "
				         "committed log",
				         id, i + 1);
	}
	free(count);
}

static void sim_fini(struct sim *s)
{
	for (size_t i = 0; i < s->n; i++) {
		struct sim_node *nd = &s->nodes[i];
		raft_free(nd->r);
		for (size_t k = 0; k < nd->disk.n; k++)
			free((void *)nd->disk.e[k].data);
		free(nd->disk.e);
	}
	for (size_t i = 0; i < s->n_msgs; i++)
		sim_msg_free(&s->msgs[i].m);
	free(s->msgs);
	free(s->gc);
	free(s->leaders);
	free(s->acked);
}

/* Run one seed: true when every invariant held. */
static bool sim_run_input(uint64_t seed, size_t nodes, unsigned steps, bool trace,
                          const uint8_t *in, size_t in_len, char *why, size_t why_len,
                          uint64_t *acks)
{
	struct sim s;
	memset(&s, 0, sizeof(s));
	s.seed = seed;
	s.in = in;
	s.in_len = in_len;
	s.rng = (seed * 0x9e3779b97f4a7c15ull) | 1;
	for (int i = 0; i < 4; i++)
		sim_rand(&s);
	s.trace = trace;
	s.n_voters = nodes;
	s.min_voters = nodes == 5 ? 3 : 2;
	s.n = nodes + (sim_pct(&s) < 25 ? 1 : 0); /* sometimes a learner */
	s.spare = ++s.n;                          /* always a spare, in no config */
	for (size_t i = 0; i < s.n - 1; i++) {
		if (i < nodes)
			s.init.v[s.init.nv++] = (uint8_t)(i + 1);
		else
			s.init.l[s.init.nl++] = (uint8_t)(i + 1);
	}
	s.mlast = s.init;
	s.drop_pct = (unsigned)(sim_rand(&s) % 20);
	s.dup_pct = (unsigned)(sim_rand(&s) % 10);
	s.max_delay = 1 + (unsigned)(sim_rand(&s) % 4);
	s.next_id = 1;
	s.cap_ids = 256;
	s.acked = sim_xrealloc(NULL, s.cap_ids * sizeof(*s.acked));
	memset(s.acked, 0, s.cap_ids * sizeof(*s.acked));
	sim_heal(&s);
	for (size_t i = 0; i < s.n; i++) {
		s.nodes[i].id = i + 1;
		s.nodes[i].learner = i >= s.n_voters;
		s.nodes[i].tick_pct = 60 + (unsigned)(sim_rand(&s) % 41);
		sim_start(&s, &s.nodes[i]);
	}
	s.chaos = true;
	for (unsigned k = 0; k < steps && !s.failed; k++)
		sim_step(&s);
	if (!s.failed)
		sim_settle(&s);
	bool ok = !s.failed;
	if (!ok)
		snprintf(why, why_len, "step %" PRIu64 ": %s", s.now, s.why);
	*acks = s.acks;
	sim_fini(&s);
	return ok;
}

static bool sim_run(uint64_t seed, size_t nodes, unsigned steps, bool trace, char *why,
                    size_t why_len, uint64_t *acks)
{
	return sim_run_input(seed, nodes, steps, trace, NULL, 0, why, why_len, acks);
}

int main(int argc, char **argv)
{
	uint64_t seed = 0, from = 1, seeds = 0;
	size_t nodes = 0;
	unsigned steps = 3000;
	bool trace = false, expect = false, one = false;
	int rc = 0;
	for (int a = 1; a < argc; a++) {
		if (!strcmp(argv[a], "--seed") && a + 1 < argc) {
			seed = strtoull(argv[++a], NULL, 10);
			one = true;
		} else if (!strcmp(argv[a], "--seeds") && a + 1 < argc) {
			seeds = strtoull(argv[++a], NULL, 10);
		} else if (!strcmp(argv[a], "--from") && a + 1 < argc) {
			from = strtoull(argv[++a], NULL, 10);
		} else if (!strcmp(argv[a], "--nodes") && a + 1 < argc) {
			nodes = (size_t)strtoul(argv[++a], NULL, 10);
		} else if (!strcmp(argv[a], "--steps") && a + 1 < argc) {
			steps = (unsigned)strtoul(argv[++a], NULL, 10);
		} else if (!strcmp(argv[a], "--trace")) {
			trace = true;
		} else if (!strcmp(argv[a], "--expect-violation")) {
			expect = true;
		} else {
			fprintf(stderr,
			        "usage: %s --seed N [--nodes 3|5] [--steps S] [--trace]\n"
			        "       %s --seeds N [--from S] [--steps S] [--expect-violation]\n",
			        argv[0], argv[0]);
			return 2;
		}
	}
	if (nodes && nodes != 3 && nodes != 5) {
		fprintf(stderr, "%s: --nodes is 3 or 5\n", argv[0]);
		return 2;
	}
	if (one) {
		from = seed;
		seeds = 1;
	}
	if (!seeds)
		seeds = 100;
	unsigned long passed = 0, failed = 0;
	uint64_t acks = 0;
	for (uint64_t sd = from; sd < from + seeds; sd++) {
		size_t n = nodes ? nodes : (sd % 2 ? 3 : 5);
		char why[300] = "";
		uint64_t a = 0;
		bool ok = sim_run(sd, n, steps, trace, why, sizeof(why), &a);
		acks += a;
		if (ok) {
			passed++;
			continue;
		}
		failed++;
		printf("%s seed %" PRIu64 " (%zu nodes): %s\n", expect ? "violation:" : "FAIL", sd,
		       n, why);
		printf("  replay: %s --seed %" PRIu64 " --nodes %zu --steps %u\n", argv[0], sd, n,
		       steps);
		if (expect)
			break;
	}
	if (expect) {
		/* A negative control passes when the bug was seen. */
		if (failed)
			printf("negative control: the bug was found after %lu seeds\n",
			       passed + failed);
		else
			printf("negative control: %lu seeds passed; the simulator did not see the "
			       "bug\n",
			       passed);
		printf("%d passed, %d failed\n", failed ? 1 : 0, failed ? 0 : 1);
		rc = failed ? 0 : 1;
	} else {
		printf("%" PRIu64 " proposals acknowledged over %lu seeds of %u steps; %" PRIu64
		       " leaders, %" PRIu64 " crashes (%" PRIu64 " torn), %" PRIu64
		       " durable entries truncated; membership: %" PRIu64 " adds, %" PRIu64
		       " promotions, %" PRIu64 " removals (%" PRIu64
		       " applied by the removed node), %" PRIu64
		       " epochs led by a promoted learner; %.1f steps to settle on average\n",
		       acks, passed + failed, steps, sim_stats.leaders, sim_stats.crashes,
		       sim_stats.torn, sim_stats.truncated, sim_stats.adds, sim_stats.promotions,
		       sim_stats.removals, sim_stats.removed, sim_stats.new_leaders,
		       passed + failed ? (double)sim_stats.settle_steps / (double)(passed + failed)
		                       : 0.0);
		printf("%lu passed, %lu failed\n", passed, failed);
		rc = failed ? 1 : 0;
	}
	return rc;
}
