/*
 * replication/raft.c — the consensus core (raft.h; REPLICATION.md §3, §5;
 * Raft Figure 2 plus PreVote, CheckQuorum and leadership transfer, §9.6 and
 * §6.4 of Ongaro's thesis).
 *
 * Invariants kept here:
 *   - log[i] holds LSN i + 1; LSNs are consecutive from 1.
 *   - applied <= hs.commit <= n_log; nothing at or below hs.commit is ever
 *     truncated (a peer that demands it raises the alarm).
 *   - entries below persist_from are durable (the caller said so through
 *     raft_advance); the leader counts itself only up to `stable`.
 *   - queued APPEND messages carry LSN ranges, not pointers: the pointers
 *     are filled in by raft_ready() when the log can no longer move.
 *   - a leader never deletes or rewrites its log (it only appends).
 * Threading: none. No clock: time is raft_tick(). Randomness: a xorshift
 * generator seeded from the config, so a run replays from its seed.
 *
 * Test-only bugs (negative controls of tests/sim, never in a release build):
 *   RAFT_BUG_VOTE_WITHOUT_UPTODATE  grant (pre)votes without the log check
 *   RAFT_BUG_COMMIT_OLD_EPOCH       commit by counting an older epoch's entry
 */
#include "replication/raft.h"

#include <stdlib.h>
#include <string.h>

#define RAFT_DEFAULT_MAX_APPEND 64

/* A member as this node sees it (the leader's progress, a candidate's tally). */
struct raft_node {
	uint64_t id;    /* node id */
	bool voter;     /* counts for quorum and votes */
	uint64_t match; /* leader: highest LSN known replicated there */
	uint64_t next;  /* leader: next LSN to send */
	bool active;    /* leader: heard from within this election timeout */
	int granted;    /* (pre)candidate: 0 no answer, 1 granted, -1 refused */
};

struct raft {
	uint64_t self;                          /* this node's id */
	struct raft_node nodes[RAFT_MAX_NODES]; /* voters, then learners */
	size_t n_nodes;                         /* count of nodes */
	size_t n_voters;                        /* voters among them */
	struct raft_node *me;                   /* self's row in nodes */
	unsigned election_ticks;                /* base election timeout */
	unsigned heartbeat_ticks;               /* heartbeat interval */
	unsigned rand_timeout;                  /* this round's timeout, [et, 2et) */
	uint64_t rng;                           /* xorshift64 state, never 0 */
	size_t max_append;                      /* entries per APPEND */
	raft_hash_fn hash_fn;                   /* no-op hash, NULL = built-in */
	void *hash_ctx;                         /* its context */

	struct raft_hard_state hs;       /* current hard state */
	struct raft_hard_state hs_saved; /* last hard state the caller persisted */
	enum raft_role role;             /* current role */
	uint64_t leader;                 /* leader of hs.epoch, 0 = unknown */
	unsigned election_elapsed;       /* ticks since leader contact / election */
	unsigned heartbeat_elapsed;      /* leader: ticks since heartbeat */
	uint64_t transferee;             /* leader: transfer target, 0 = none */
	unsigned transfer_elapsed;       /* leader: ticks since transfer began */

	struct raft_entry *log; /* the log, data owned; log[i].lsn = i+1 */
	size_t n_log;           /* entries in log */
	size_t cap_log;         /* allocated entries */
	uint64_t stable;        /* last LSN durable at the caller */
	uint64_t persist_from;  /* first LSN not yet handed out durable */
	uint64_t applied;       /* last LSN handed out as committed */
	uint64_t ready_commit;  /* commit handed out by the open Ready */
	uint64_t released;      /* entries up to this LSN have no data (raft_release) */

	struct raft_msg *msgs; /* outgoing messages of the next Ready */
	size_t n_msgs;         /* count */
	size_t cap_msgs;       /* allocated */

	bool removed;        /* self is no longer a member (raft_set_members) */
	bool alarm;          /* a divergence was seen */
	bool alarm_reported; /* a Ready has carried it */
	uint64_t alarm_lsn;  /* where */
	uint64_t alarm_from; /* from whom */
};

static const uint8_t raft_zero_hash[RAFT_HASH_LEN];

/* ---- small helpers ------------------------------------------------------ */

static uint64_t raft_rand(struct raft *r)
{
	r->rng ^= r->rng << 13;
	r->rng ^= r->rng >> 7;
	r->rng ^= r->rng << 17;
	return r->rng;
}

static void raft_reset_timeout(struct raft *r)
{
	r->rand_timeout = r->election_ticks + (unsigned)(raft_rand(r) % r->election_ticks);
}

static uint64_t raft_last_lsn(const struct raft *r)
{
	return r->n_log;
}

static uint64_t raft_last_epoch(const struct raft *r)
{
	return r->n_log ? r->log[r->n_log - 1].epoch : 0;
}

/* Epoch at lsn (0 for lsn 0); lsn must be <= n_log. */
static uint64_t raft_epoch_at(const struct raft *r, uint64_t lsn)
{
	return lsn ? r->log[lsn - 1].epoch : 0;
}

static const uint8_t *raft_hash_at(const struct raft *r, uint64_t lsn)
{
	return lsn ? r->log[lsn - 1].hash : raft_zero_hash;
}

static struct raft_node *raft_node_find(struct raft *r, uint64_t id)
{
	struct raft_node *n = NULL;
	for (size_t i = 0; i < r->n_nodes && !n; i++)
		if (r->nodes[i].id == id)
			n = &r->nodes[i];
	return n;
}

static size_t raft_quorum(const struct raft *r)
{
	return r->n_voters / 2 + 1;
}

/* The built-in no-op hash: a 64-bit FNV-1a mix spread over 32 bytes. Not a
 * cryptographic hash: daemons pass their BLAKE2b chain function. */
static void raft_default_hash(void *ctx, const uint8_t prev[RAFT_HASH_LEN], uint64_t lsn,
                              uint64_t epoch, const void *data, size_t len,
                              uint8_t out[RAFT_HASH_LEN])
{
	(void)ctx;
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < RAFT_HASH_LEN; i++)
		h = (h ^ prev[i]) * 1099511628211ull;
	h = (h ^ lsn) * 1099511628211ull;
	h = (h ^ epoch) * 1099511628211ull;
	for (size_t i = 0; i < len; i++)
		h = (h ^ ((const uint8_t *)data)[i]) * 1099511628211ull;
	for (size_t i = 0; i < RAFT_HASH_LEN; i++) {
		h = (h ^ i) * 1099511628211ull;
		out[i] = (uint8_t)(h >> 56);
	}
}

/* Queue a message; a message that cannot be queued (out of memory) is
 * dropped, which Raft treats like a lost packet. */
static struct raft_msg *raft_send(struct raft *r, enum raft_msg_type type, uint64_t to,
                                  uint64_t epoch)
{
	struct raft_msg *m = NULL;
	if (r->n_msgs == r->cap_msgs) {
		size_t cap = r->cap_msgs ? r->cap_msgs * 2 : 16;
		struct raft_msg *grown = realloc(r->msgs, cap * sizeof(*grown));
		if (!grown)
			goto out;
		r->msgs = grown;
		r->cap_msgs = cap;
	}
	m = &r->msgs[r->n_msgs++];
	memset(m, 0, sizeof(*m));
	m->type = type;
	m->from = r->self;
	m->to = to;
	m->epoch = epoch;
out:
	return m;
}

/* Append a copy of e (its lsn must be n_log + 1). */
static int raft_log_append(struct raft *r, const struct raft_entry *e)
{
	int rc = ST_OK;
	void *copy = NULL;
	if (r->n_log == r->cap_log) {
		size_t cap = r->cap_log ? r->cap_log * 2 : 64;
		struct raft_entry *grown = realloc(r->log, cap * sizeof(*grown));
		if (!grown) {
			rc = ST_ENOMEM;
			goto out;
		}
		r->log = grown;
		r->cap_log = cap;
	}
	if (e->len && e->data) {
		copy = malloc(e->len);
		if (!copy) {
			rc = ST_ENOMEM;
			goto out;
		}
		memcpy(copy, e->data, e->len);
	}
	struct raft_entry *dst = &r->log[r->n_log++];
	*dst = *e;
	dst->lsn = r->n_log;
	dst->data = copy;
	if (r->persist_from > dst->lsn)
		r->persist_from = dst->lsn;
out:
	return rc;
}

/* Drop every entry above keep (never a committed one: callers check). */
static void raft_log_truncate(struct raft *r, uint64_t keep)
{
	while (r->n_log > keep) {
		r->n_log--;
		free((void *)r->log[r->n_log].data);
	}
	if (r->persist_from > keep + 1)
		r->persist_from = keep + 1;
	if (r->stable > keep)
		r->stable = keep;
	if (r->released > keep)
		r->released = keep;
}

static void raft_raise_alarm(struct raft *r, uint64_t lsn, uint64_t from)
{
	if (!r->alarm) {
		r->alarm = true;
		r->alarm_lsn = lsn;
		r->alarm_from = from;
	}
}

/* ---- roles ---------------------------------------------------------------
 * Every role change goes through these three. A leader that steps down drops
 * its queued APPENDs: they name LSN ranges of a log a new leader may now
 * truncate, and an unsent message is as good as a lost one.
 */

static void raft_become_follower(struct raft *r, uint64_t epoch, uint64_t leader)
{
	if (epoch > r->hs.epoch) {
		r->hs.epoch = epoch;
		r->hs.vote = 0;
	}
	if (r->role == RAFT_LEADER) {
		size_t k = 0;
		for (size_t i = 0; i < r->n_msgs; i++)
			if (r->msgs[i].type != RAFT_MSG_APPEND &&
			    r->msgs[i].type != RAFT_MSG_TIMEOUT_NOW)
				r->msgs[k++] = r->msgs[i];
		r->n_msgs = k;
	}
	r->role = RAFT_FOLLOWER;
	r->leader = leader;
	r->election_elapsed = 0;
	r->transferee = 0;
	raft_reset_timeout(r);
}

/* Send the entries from node's next LSN (up to max_append); with
 * allow_empty, an APPEND without entries (a probe or a commit update). */
static void raft_send_append(struct raft *r, struct raft_node *n, bool allow_empty)
{
	uint64_t last = raft_last_lsn(r);
	if (n->next > last + 1)
		n->next = last + 1;
	if (n->next < 1)
		n->next = 1;
	uint64_t prev = n->next - 1;
	uint64_t count = last - prev;
	if (count > r->max_append)
		count = r->max_append;
	/* Never end inside an atomic unit: a follower holding part of one
	 * could, as the next leader, commit the part alone. */
	while (count > 0 && prev + count < last && r->log[prev + count - 1].more)
		count++;
	struct raft_msg *m = NULL;
	if (count || allow_empty)
		m = raft_send(r, RAFT_MSG_APPEND, n->id, r->hs.epoch);
	if (m) {
		m->prev_lsn = prev;
		m->prev_epoch = raft_epoch_at(r, prev);
		memcpy(m->prev_hash, raft_hash_at(r, prev), RAFT_HASH_LEN);
		m->n_entries = count;
		m->commit = r->hs.commit;
		/* Pipelined: the next APPEND follows on; a reject or a
		 * heartbeat answer from a lagging node rewinds next. */
		n->next = prev + count + 1;
	}
}

static void raft_bcast_append(struct raft *r)
{
	for (size_t i = 0; i < r->n_nodes; i++)
		if (&r->nodes[i] != r->me)
			raft_send_append(r, &r->nodes[i], true);
}

static void raft_bcast_heartbeat(struct raft *r)
{
	for (size_t i = 0; i < r->n_nodes; i++) {
		struct raft_node *n = &r->nodes[i];
		if (n == r->me)
			continue;
		struct raft_msg *m = raft_send(r, RAFT_MSG_HEARTBEAT, n->id, r->hs.epoch);
		if (m)
			m->commit = n->match < r->hs.commit ? n->match : r->hs.commit;
	}
}

/* Leader: the highest LSN a quorum of voters holds durably; commit it when
 * it is of this epoch (Figure 8: an older epoch's entry is committed only
 * indirectly, by a later entry of the current epoch). */
static void raft_maybe_commit(struct raft *r)
{
	uint64_t m[RAFT_MAX_NODES] = {0};
	size_t k = 0;
	r->me->match = r->stable;
	for (size_t i = 0; i < r->n_nodes; i++)
		if (r->nodes[i].voter)
			m[k++] = r->nodes[i].match;
	/* Insertion sort, descending: at most RAFT_MAX_NODES values. */
	for (size_t i = 1; i < k; i++)
		for (size_t j = i; j > 0 && m[j] > m[j - 1]; j--) {
			uint64_t t = m[j];
			m[j] = m[j - 1];
			m[j - 1] = t;
		}
	uint64_t q = m[raft_quorum(r) - 1];
	if (q > raft_last_lsn(r))
		q = raft_last_lsn(r);
	bool ok = q > r->hs.commit && raft_epoch_at(r, q) == r->hs.epoch;
#ifdef RAFT_BUG_COMMIT_OLD_EPOCH
	ok = q > r->hs.commit;
#endif
	if (ok) {
		r->hs.commit = q;
		raft_bcast_append(r);
	}
}

static void raft_become_leader(struct raft *r)
{
	r->role = RAFT_LEADER;
	r->leader = r->self;
	r->transferee = 0;
	r->heartbeat_elapsed = 0;
	r->election_elapsed = 0;
	for (size_t i = 0; i < r->n_nodes; i++) {
		r->nodes[i].next = raft_last_lsn(r) + 1;
		r->nodes[i].match = 0;
		r->nodes[i].active = false;
	}
	r->me->active = true;
	/* The epoch's no-op: commits every earlier entry once it is. */
	struct raft_entry noop = {.lsn = raft_last_lsn(r) + 1, .epoch = r->hs.epoch};
	raft_hash_fn fn = r->hash_fn ? r->hash_fn : raft_default_hash;
	fn(r->hash_ctx, raft_hash_at(r, raft_last_lsn(r)), noop.lsn, noop.epoch, NULL, 0,
	   noop.hash);
	if (raft_log_append(r, &noop) != ST_OK) {
		/* Out of memory: no leader without its no-op. */
		raft_become_follower(r, r->hs.epoch, 0);
	} else {
		raft_bcast_append(r);
		raft_maybe_commit(r);
	}
}

/* 1: a quorum granted, -1: a quorum refused, 0: undecided. */
static int raft_tally(const struct raft *r)
{
	size_t yes = 0, no = 0;
	for (size_t i = 0; i < r->n_nodes; i++) {
		if (!r->nodes[i].voter)
			continue;
		if (r->nodes[i].granted > 0)
			yes++;
		else if (r->nodes[i].granted < 0)
			no++;
	}
	return yes >= raft_quorum(r) ? 1 : no >= raft_quorum(r) ? -1 : 0;
}

/* Start a pre-election (pre) or an election; force skips the receivers'
 * leader lease (leadership transfer). */
static void raft_campaign(struct raft *r, bool pre, bool force)
{
	uint64_t epoch;
	if (pre) {
		r->role = RAFT_PRECANDIDATE;
		epoch = r->hs.epoch + 1;
	} else {
		r->role = RAFT_CANDIDATE;
		r->hs.epoch++;
		r->hs.vote = r->self;
		epoch = r->hs.epoch;
	}
	r->leader = 0;
	r->election_elapsed = 0;
	raft_reset_timeout(r);
	for (size_t i = 0; i < r->n_nodes; i++)
		r->nodes[i].granted = 0;
	r->me->granted = 1;
	if (raft_tally(r) > 0 && pre)
		raft_campaign(r, false, force); /* a cluster of one */
	else if (raft_tally(r) > 0)
		raft_become_leader(r);
	for (size_t i = 0; i < r->n_nodes && r->role != RAFT_LEADER; i++) {
		struct raft_node *n = &r->nodes[i];
		if (!n->voter || n == r->me)
			continue;
		struct raft_msg *m =
		    raft_send(r, pre ? RAFT_MSG_PREVOTE : RAFT_MSG_VOTE, n->id, epoch);
		if (m) {
			m->last_lsn = raft_last_lsn(r);
			m->last_epoch = raft_last_epoch(r);
			m->force = force;
		}
	}
}

/* ---- message handlers ---------------------------------------------------- */

static void raft_handle_vote(struct raft *r, const struct raft_msg *m)
{
	bool pre = m->type == RAFT_MSG_PREVOTE;
	bool can = r->hs.vote == m->from || (r->hs.vote == 0 && r->leader == 0) ||
	           (pre && m->epoch > r->hs.epoch);
	bool up_to_date = m->last_epoch > raft_last_epoch(r) ||
	                  (m->last_epoch == raft_last_epoch(r) && m->last_lsn >= raft_last_lsn(r));
#ifdef RAFT_BUG_VOTE_WITHOUT_UPTODATE
	up_to_date = true;
#endif
	/* A learner votes too when asked (etcd/raft): it may be a voter in a
	 * configuration it holds but has not applied yet (promoted while it was
	 * cut off); a candidate asks only its own voters. Removed nodes never. */
	bool grant = can && up_to_date && !r->removed;
	enum raft_msg_type t = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
	struct raft_msg *resp = raft_send(r, t, m->from, grant ? m->epoch : r->hs.epoch);
	if (grant && !pre) {
		r->hs.vote = m->from;
		r->election_elapsed = 0;
	}
	if (resp)
		resp->success = grant;
}

static void raft_handle_vote_resp(struct raft *r, const struct raft_msg *m)
{
	bool pre = m->type == RAFT_MSG_PREVOTE_RESP;
	/* A granted PreVote answers epoch + 1; a refusal our own epoch. */
	uint64_t want = pre && m->success ? r->hs.epoch + 1 : r->hs.epoch;
	struct raft_node *n = raft_node_find(r, m->from);
	int t = 0;
	if ((pre ? r->role == RAFT_PRECANDIDATE : r->role == RAFT_CANDIDATE) && m->epoch == want &&
	    n->voter && !n->granted) {
		n->granted = m->success ? 1 : -1; /* a duplicate counts once */
		t = raft_tally(r);
	}
	if (t > 0 && pre)
		raft_campaign(r, false, false);
	else if (t > 0)
		raft_become_leader(r);
	else if (t < 0)
		raft_become_follower(r, r->hs.epoch, 0);
}

static void raft_commit_to(struct raft *r, uint64_t lsn)
{
	if (lsn > raft_last_lsn(r))
		lsn = raft_last_lsn(r);
	if (lsn > r->hs.commit)
		r->hs.commit = lsn;
}

/* Follower side of APPEND (m->epoch == hs.epoch). */
static int raft_handle_append(struct raft *r, const struct raft_msg *m)
{
	int rc = ST_OK;
	struct raft_msg *resp = NULL;
	uint64_t last = raft_last_lsn(r);
	for (size_t i = 0; i < m->n_entries; i++)
		if (m->entries[i].lsn != m->prev_lsn + 1 + i || m->entries[i].epoch > m->epoch) {
			rc = ST_EPROTO;
			goto out;
		}
	if (m->prev_lsn > last) {
		resp = raft_send(r, RAFT_MSG_APPEND_RESP, m->from, r->hs.epoch);
		if (resp) {
			resp->match_lsn = m->prev_lsn;
			resp->hint_lsn = last;
			resp->hint_epoch = raft_epoch_at(r, last);
		}
		goto out;
	}
	uint64_t pe = raft_epoch_at(r, m->prev_lsn);
	if (pe != m->prev_epoch) {
		if (m->prev_lsn <= r->hs.commit) {
			raft_raise_alarm(r, m->prev_lsn, m->from);
			rc = ST_ECORRUPT;
			goto out;
		}
		/* Hint: below every entry of the conflicting epoch. */
		uint64_t hint = m->prev_lsn - 1;
		while (hint > r->hs.commit && raft_epoch_at(r, hint) == pe)
			hint--;
		resp = raft_send(r, RAFT_MSG_APPEND_RESP, m->from, r->hs.epoch);
		if (resp) {
			resp->match_lsn = m->prev_lsn;
			resp->hint_lsn = hint;
			resp->hint_epoch = raft_epoch_at(r, hint);
		}
		goto out;
	}
	if (memcmp(raft_hash_at(r, m->prev_lsn), m->prev_hash, RAFT_HASH_LEN) != 0) {
		raft_raise_alarm(r, m->prev_lsn, m->from);
		rc = ST_ECORRUPT;
		goto out;
	}
	for (size_t i = 0; i < m->n_entries; i++) {
		const struct raft_entry *e = &m->entries[i];
		if (e->lsn <= raft_last_lsn(r)) {
			if (raft_epoch_at(r, e->lsn) == e->epoch) {
				if (memcmp(raft_hash_at(r, e->lsn), e->hash, RAFT_HASH_LEN) != 0) {
					raft_raise_alarm(r, e->lsn, m->from);
					rc = ST_ECORRUPT;
					goto out;
				}
				continue;
			}
			if (e->lsn <= r->hs.commit) {
				/* A committed entry is never truncated. */
				raft_raise_alarm(r, e->lsn, m->from);
				rc = ST_ECORRUPT;
				goto out;
			}
			raft_log_truncate(r, e->lsn - 1);
		}
		rc = raft_log_append(r, e);
		if (rc != ST_OK)
			goto out;
	}
	uint64_t last_new = m->prev_lsn + m->n_entries;
	raft_commit_to(r, m->commit < last_new ? m->commit : last_new);
	resp = raft_send(r, RAFT_MSG_APPEND_RESP, m->from, r->hs.epoch);
	if (resp) {
		resp->success = true;
		resp->match_lsn = last_new;
	}
out:
	return rc;
}

/* Leader side of APPEND_RESP. */
static void raft_handle_append_resp(struct raft *r, struct raft_node *n, const struct raft_msg *m)
{
	uint64_t last = raft_last_lsn(r);
	n->active = true;
	if (m->success) {
		uint64_t match = m->match_lsn < last ? m->match_lsn : last;
		if (match > n->match) {
			n->match = match;
			raft_maybe_commit(r);
		}
		if (n->next < n->match + 1)
			n->next = n->match + 1;
		if (r->transferee == n->id && n->match == raft_last_lsn(r))
			raft_send(r, RAFT_MSG_TIMEOUT_NOW, n->id, r->hs.epoch);
		else
			raft_send_append(r, n, false);
	} else if (m->match_lsn >= n->match) {
		/* Rewind to the hint (a reject below match is stale). */
		uint64_t next = m->match_lsn;
		if (m->hint_lsn + 1 < next)
			next = m->hint_lsn + 1;
		/* Our entries of an epoch above the node's there cannot match. */
		while (next - 1 > n->match && next - 1 <= last &&
		       raft_epoch_at(r, next - 1) > m->hint_epoch)
			next--;
		if (next < n->match + 1)
			next = n->match + 1;
		n->next = next;
		raft_send_append(r, n, true);
	}
}

int raft_step(struct raft *r, const struct raft_msg *m)
{
	int rc = ST_OK;
	struct raft_node *from = raft_node_find(r, m->from);
	/* A sender outside this node's membership may be a member of one it
	 * has not applied yet (a leader added later): its APPENDs, heartbeats
	 * and vote requests are taken (etcd/raft does); answers about
	 * progress and votes count only from members. */
	bool any_sender = m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
	                  m->type == RAFT_MSG_PREVOTE || m->type == RAFT_MSG_VOTE;
	if ((!from && !any_sender) || from == r->me || m->from == r->self || m->from == 0 ||
	    m->to != r->self || m->type < RAFT_MSG_APPEND || m->type > RAFT_MSG_TIMEOUT_NOW ||
	    (m->n_entries && !m->entries)) {
		rc = ST_EPROTO;
		goto out;
	}
	if (r->alarm)
		goto out; /* diverged: refuse everything until an operator acts */

	/* Epochs first (Figure 2 "all servers"), with PreVote's exceptions. */
	if (m->epoch > r->hs.epoch) {
		bool in_lease = r->leader != 0 && r->election_elapsed < r->election_ticks;
		if ((m->type == RAFT_MSG_PREVOTE || (m->type == RAFT_MSG_VOTE && !m->force)) &&
		    in_lease)
			goto out; /* a leader is alive: do not let a rejoiner disrupt it */
		if (m->type == RAFT_MSG_PREVOTE ||
		    (m->type == RAFT_MSG_PREVOTE_RESP && m->success)) {
			/* no epoch change: PreVote persists nothing */
		} else {
			bool from_leader =
			    m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT;
			raft_become_follower(r, m->epoch, from_leader ? m->from : 0);
		}
	} else if (m->epoch < r->hs.epoch) {
		if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT) {
			/* A stale leader: our epoch makes it step down. */
			raft_send(r, RAFT_MSG_APPEND_RESP, m->from, r->hs.epoch);
		} else if (m->type == RAFT_MSG_PREVOTE) {
			struct raft_msg *resp =
			    raft_send(r, RAFT_MSG_PREVOTE_RESP, m->from, r->hs.epoch);
			if (resp)
				resp->success = false;
		}
		goto out;
	}

	switch (m->type) {
	case RAFT_MSG_PREVOTE:
	case RAFT_MSG_VOTE:
		raft_handle_vote(r, m);
		break;
	case RAFT_MSG_PREVOTE_RESP:
	case RAFT_MSG_VOTE_RESP:
		raft_handle_vote_resp(r, m);
		break;
	case RAFT_MSG_APPEND:
	case RAFT_MSG_HEARTBEAT:
		if (r->role == RAFT_LEADER)
			break; /* one leader per epoch: cannot happen */
		if (r->role != RAFT_FOLLOWER)
			raft_become_follower(r, m->epoch, m->from);
		r->leader = m->from;
		r->election_elapsed = 0;
		if (m->type == RAFT_MSG_APPEND) {
			rc = raft_handle_append(r, m);
		} else {
			raft_commit_to(r, m->commit);
			struct raft_msg *resp =
			    raft_send(r, RAFT_MSG_HEARTBEAT_RESP, m->from, r->hs.epoch);
			if (resp)
				resp->ctx = m->ctx;
		}
		break;
	case RAFT_MSG_APPEND_RESP:
		if (r->role == RAFT_LEADER)
			raft_handle_append_resp(r, from, m);
		break;
	case RAFT_MSG_HEARTBEAT_RESP:
		if (r->role == RAFT_LEADER) {
			from->active = true;
			if (from->match < raft_last_lsn(r)) {
				from->next = from->match + 1;
				raft_send_append(r, from, false);
			}
		}
		break;
	case RAFT_MSG_TIMEOUT_NOW:
		if (r->role != RAFT_LEADER && r->me->voter)
			raft_campaign(r, false, true);
		break;
	}
out:
	return rc;
}

/* ---- inputs from the owner ------------------------------------------------ */

static void raft_tick_leader(struct raft *r);

void raft_tick(struct raft *r)
{
	bool lead = r->role == RAFT_LEADER;
	if (!lead) {
		r->election_elapsed++;
		if (r->me->voter && !r->alarm && r->election_elapsed >= r->rand_timeout)
			raft_campaign(r, true, false);
	} else {
		raft_tick_leader(r);
	}
}

/* Leader: heartbeats, CheckQuorum, the transfer deadline. */
static void raft_tick_leader(struct raft *r)
{
	bool quorum_ok = true;
	r->heartbeat_elapsed++;
	r->election_elapsed++;
	if (r->transferee && ++r->transfer_elapsed >= r->election_ticks)
		r->transferee = 0; /* the target did not take over in time */
	if (r->election_elapsed >= r->election_ticks) {
		/* CheckQuorum: without a majority heard from, step down. */
		size_t active = 0;
		r->election_elapsed = 0;
		for (size_t i = 0; i < r->n_nodes; i++) {
			if (r->nodes[i].voter && r->nodes[i].active)
				active++;
			if (&r->nodes[i] != r->me)
				r->nodes[i].active = false;
		}
		if (active < raft_quorum(r)) {
			raft_become_follower(r, r->hs.epoch, 0);
			quorum_ok = false;
		}
	}
	if (quorum_ok && r->heartbeat_elapsed >= r->heartbeat_ticks) {
		r->heartbeat_elapsed = 0;
		raft_bcast_heartbeat(r);
	}
}

int raft_propose_n(struct raft *r, const struct raft_entry *e, size_t n, uint64_t *first_lsn)
{
	int rc = ST_OK;
	size_t done = 0;
	if (r->role != RAFT_LEADER) {
		rc = RAFT_ENOTLEADER;
		goto out;
	}
	if (r->transferee) {
		rc = ST_EBUSY;
		goto out;
	}
	if (first_lsn)
		*first_lsn = raft_last_lsn(r) + 1;
	for (; done < n; done++) {
		struct raft_entry x = {.lsn = raft_last_lsn(r) + 1, .epoch = r->hs.epoch,
				       .data = e[done].data, .len = e[done].len,
				       .more = e[done].more};
		memcpy(x.hash, e[done].hash, RAFT_HASH_LEN);
		if ((rc = raft_log_append(r, &x)) != ST_OK)
			break;
	}
	/* One APPEND per peer for the whole batch. */
	if (done > 0) {
		for (size_t i = 0; i < r->n_nodes; i++)
			if (&r->nodes[i] != r->me)
				raft_send_append(r, &r->nodes[i], false);
		raft_maybe_commit(r);
	}
out:
	return rc;
}

int raft_propose(struct raft *r, const void *data, size_t len, const uint8_t hash[RAFT_HASH_LEN],
                 uint64_t *lsn_out)
{
	struct raft_entry e = {.data = data, .len = len};
	memcpy(e.hash, hash, RAFT_HASH_LEN);
	return raft_propose_n(r, &e, 1, lsn_out);
}

int raft_transfer(struct raft *r, uint64_t to)
{
	int rc = ST_OK;
	struct raft_node *n = raft_node_find(r, to);
	if (r->role != RAFT_LEADER) {
		rc = RAFT_ENOTLEADER;
		goto out;
	}
	if (!n || n == r->me || !n->voter) {
		rc = ST_EINVAL;
		goto out;
	}
	r->transferee = to;
	r->transfer_elapsed = 0;
	if (n->match == raft_last_lsn(r))
		raft_send(r, RAFT_MSG_TIMEOUT_NOW, to, r->hs.epoch);
	else
		raft_send_append(r, n, true);
out:
	return rc;
}

bool raft_ready(struct raft *r, struct raft_ready *rd)
{
	memset(rd, 0, sizeof(*rd));
	rd->hs = r->hs;
	rd->hs_changed = memcmp(&r->hs, &r->hs_saved, sizeof(r->hs)) != 0;
	if (r->persist_from <= r->stable)
		rd->truncate_from = r->persist_from;
	if (r->persist_from <= raft_last_lsn(r)) {
		rd->entries = &r->log[r->persist_from - 1];
		rd->n_entries = raft_last_lsn(r) - r->persist_from + 1;
		rd->truncate_from = r->persist_from;
	}
	for (size_t i = 0; i < r->n_msgs; i++) {
		struct raft_msg *m = &r->msgs[i];
		if (m->type == RAFT_MSG_APPEND && m->n_entries)
			m->entries = &r->log[m->prev_lsn];
	}
	rd->msgs = r->msgs;
	rd->n_msgs = r->n_msgs;
	r->ready_commit = r->hs.commit;
	if (r->hs.commit > r->applied) {
		rd->committed = &r->log[r->applied];
		rd->n_committed = r->hs.commit - r->applied;
	}
	rd->alarm = r->alarm && !r->alarm_reported;
	return rd->hs_changed || rd->truncate_from || rd->n_entries || rd->n_msgs ||
	       rd->n_committed || rd->alarm;
}

void raft_advance(struct raft *r)
{
	r->hs_saved = r->hs;
	r->stable = raft_last_lsn(r);
	r->persist_from = r->stable + 1;
	r->applied = r->ready_commit;
	r->n_msgs = 0;
	if (r->alarm)
		r->alarm_reported = true;
	if (r->role == RAFT_LEADER)
		raft_maybe_commit(r);
}

/* ---- lifecycle and queries --------------------------------------------- */

static int raft_add_node(struct raft *r, uint64_t id, bool voter, struct st_err *err)
{
	int rc = ST_OK;
	if (id == 0 || raft_node_find(r, id)) {
		rc = st_seterr(err, ST_EINVAL,
		               "raft: node id %llu is %s; give every node a distinct id above 0",
		               (unsigned long long)id, id ? "listed twice" : "0");
		goto out;
	}
	if (r->n_nodes == RAFT_MAX_NODES) {
		rc = st_seterr(err, ST_EINVAL, "raft: more than %d nodes", RAFT_MAX_NODES);
		goto out;
	}
	r->nodes[r->n_nodes].id = id;
	r->nodes[r->n_nodes].voter = voter;
	r->n_nodes++;
	if (voter)
		r->n_voters++;
out:
	return rc;
}

int raft_new(const struct raft_config *cfg, struct raft **out, struct st_err *err)
{
	int rc = ST_OK;
	struct raft *r = NULL;
	*out = NULL;
	if (cfg->election_ticks < 2 || cfg->heartbeat_ticks < 1 ||
	    cfg->heartbeat_ticks >= cfg->election_ticks || cfg->n_voters < 1) {
		rc = st_seterr(
		    err, ST_EINVAL,
		    "raft: election_ticks %u and heartbeat_ticks %u with %zu voters: need "
		    "1 <= heartbeat < election, election >= 2 and at least one voter",
		    cfg->election_ticks, cfg->heartbeat_ticks, cfg->n_voters);
		goto out;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		rc = ST_ENOMEM;
		goto out;
	}
	r->self = cfg->self;
	for (size_t i = 0; i < cfg->n_voters && rc == ST_OK; i++)
		rc = raft_add_node(r, cfg->voters[i], true, err);
	for (size_t i = 0; i < cfg->n_learners && rc == ST_OK; i++)
		rc = raft_add_node(r, cfg->learners[i], false, err);
	if (rc != ST_OK)
		goto out;
	r->me = raft_node_find(r, r->self);
	if (!r->me) {
		rc =
		    st_seterr(err, ST_EINVAL, "raft: self id %llu is neither a voter nor a learner",
		              (unsigned long long)r->self);
		goto out;
	}
	r->election_ticks = cfg->election_ticks;
	r->heartbeat_ticks = cfg->heartbeat_ticks;
	r->max_append = cfg->max_append ? cfg->max_append : RAFT_DEFAULT_MAX_APPEND;
	r->hash_fn = cfg->hash_fn;
	r->hash_ctx = cfg->hash_ctx;
	/* splitmix64 of seed and id: distinct, never-zero generator states. */
	uint64_t z = cfg->seed + r->self * 0x9e3779b97f4a7c15ull + 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	r->rng = (z ^ (z >> 31)) | 1;
	r->persist_from = 1;
	for (size_t i = 0; i < cfg->n_entries; i++) {
		const struct raft_entry *e = &cfg->entries[i];
		if (e->lsn != i + 1 || (i && e->epoch < cfg->entries[i - 1].epoch)) {
			rc = st_seterr(
			    err, ST_EINVAL,
			    "raft: persisted entry %zu has LSN %llu epoch %llu: LSNs must run "
			    "1..n with epochs never decreasing; the log is damaged",
			    i, (unsigned long long)e->lsn, (unsigned long long)e->epoch);
			goto out;
		}
		rc = raft_log_append(r, e);
		if (rc != ST_OK)
			goto out;
	}
	if (cfg->hs)
		r->hs = *cfg->hs;
	r->hs_saved = r->hs;
	/* The commit LSN may be durable before its entries (a crash between
	 * the two writes): take it down to the log; the first Ready persists
	 * the lowered value. */
	if (r->hs.commit > raft_last_lsn(r))
		r->hs.commit = raft_last_lsn(r);
	r->stable = raft_last_lsn(r);
	r->persist_from = r->stable + 1;
	r->applied = r->hs.commit; /* the owner applied these before the crash */
	r->role = RAFT_FOLLOWER;
	raft_reset_timeout(r);
	*out = r;
	r = NULL; /* the caller owns it from here */
out:
	raft_free(r);
	return rc;
}

void raft_free(struct raft *r)
{
	if (r) {
		raft_log_truncate(r, 0);
		free(r->log);
		free(r->msgs);
		free(r);
	}
}

void raft_status(const struct raft *r, struct raft_status *st)
{
	st->self = r->self;
	st->role = r->role;
	st->leader = r->leader;
	st->hs = r->hs;
	st->last_lsn = raft_last_lsn(r);
	st->last_epoch = raft_last_epoch(r);
	st->applied = r->applied;
	st->transferee = r->transferee;
	st->is_learner = !r->me->voter;
	st->removed = r->removed;
}

bool raft_progress(const struct raft *r, uint64_t id, uint64_t *match, bool *voter)
{
	for (size_t i = 0; i < r->n_nodes; i++)
		if (r->nodes[i].id == id) {
			*match = r->nodes[i].id == r->self ? r->stable : r->nodes[i].match;
			*voter = r->nodes[i].voter;
			return true;
		}
	return false;
}

void raft_release(struct raft *r, uint64_t upto)
{
	if (upto > r->stable)
		upto = r->stable;
	for (uint64_t i = r->released; i < upto && i < r->n_log; i++) {
		free((void *)r->log[i].data);
		r->log[i].data = NULL;
	}
	if (upto > r->released)
		r->released = upto;
}

const struct raft_entry *raft_entry_at(const struct raft *r, uint64_t lsn)
{
	return lsn && lsn <= r->n_log ? &r->log[lsn - 1] : NULL;
}

void raft_last(const struct raft *r, uint64_t *lsn, uint8_t hash[RAFT_HASH_LEN])
{
	*lsn = raft_last_lsn(r);
	memcpy(hash, raft_hash_at(r, *lsn), RAFT_HASH_LEN);
}

bool raft_alarm(const struct raft *r, uint64_t *lsn, uint64_t *from)
{
	if (lsn)
		*lsn = r->alarm_lsn;
	if (from)
		*from = r->alarm_from;
	return r->alarm;
}

int raft_set_members(struct raft *r, const uint64_t *voters, size_t n_voters,
                     const uint64_t *learners, size_t n_learners)
{
	struct raft_node old[RAFT_MAX_NODES];
	size_t n_old = r->n_nodes;
	bool self_in = false;
	if (n_voters < 1 || n_voters + n_learners > RAFT_MAX_NODES)
		return ST_EINVAL;
	for (size_t i = 0; i < n_voters + n_learners; i++) {
		uint64_t id = i < n_voters ? voters[i] : learners[i - n_voters];
		if (id == 0)
			return ST_EINVAL;
		for (size_t j = 0; j < i; j++)
			if (id == (j < n_voters ? voters[j] : learners[j - n_voters]))
				return ST_EINVAL;
		self_in |= id == r->self;
	}
	/* Removed, self stays a row of its own: it keeps its log and state,
	 * never votes, campaigns or counts. */
	if (!self_in && n_voters + n_learners == RAFT_MAX_NODES)
		return ST_EINVAL;
	memcpy(old, r->nodes, sizeof old);
	r->n_nodes = r->n_voters = 0;
	for (size_t i = 0; i < n_voters + n_learners + !self_in; i++) {
		uint64_t id = i < n_voters                  ? voters[i]
		              : i < n_voters + n_learners ? learners[i - n_voters]
		                                          : r->self;
		struct raft_node *n = &r->nodes[r->n_nodes++];
		*n = (struct raft_node){.id = id, .next = raft_last_lsn(r) + 1};
		for (size_t j = 0; j < n_old; j++)
			if (old[j].id == id)
				*n = old[j]; /* progress carries over */
		n->voter = i < n_voters;
		r->n_voters += n->voter;
	}
	r->me = raft_node_find(r, r->self);
	r->removed = !self_in;
	if (r->transferee && !raft_node_find(r, r->transferee))
		r->transferee = 0;
	if (r->role != RAFT_FOLLOWER && !r->me->voter) {
		raft_become_follower(r, r->hs.epoch, r->role == RAFT_LEADER ? 0 : r->leader);
	} else if (r->role == RAFT_LEADER) {
		/* A new member is probed at once; a smaller quorum may commit. */
		for (size_t i = 0; i < r->n_nodes; i++)
			if (&r->nodes[i] != r->me && r->nodes[i].match == 0)
				raft_send_append(r, &r->nodes[i], true);
		raft_maybe_commit(r);
	}
	return ST_OK;
}

const char *raft_role_name(enum raft_role role)
{
	switch (role) {
	case RAFT_FOLLOWER:
		return "follower";
	case RAFT_PRECANDIDATE:
		return "pre-candidate";
	case RAFT_CANDIDATE:
		return "candidate";
	case RAFT_LEADER:
		return "leader";
	}
	return "unknown";
}
