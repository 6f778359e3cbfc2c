/*
 * replication/raft.h — the consensus core of replication/REPLICATION.md, as a
 * pure state machine (Raft, Figure 2 of the paper; shaped like etcd/raft).
 *
 * The core does no I/O, reads no clock, starts no thread and keeps no global
 * state: its inputs are messages (raft_step), ticks (raft_tick), proposals
 * (raft_propose) and transfer requests (raft_transfer); its output is a
 * struct raft_ready. Given the same config (seed included) and the same
 * inputs in the same order it produces the same outputs, so the simulator in
 * tests/sim/ can replay any run from its seed.
 *
 * Words: an epoch is Raft's term, an LSN is Raft's log index (1-based; LSN 0
 * is "before the first entry", the empty log). The commit LSN is the highest
 * LSN known committed.
 *
 * THE READY CONTRACT (the durability rule). After any input, the caller asks
 * raft_ready(); when it returns true the caller, IN THIS ORDER:
 *   1. makes rd.hs durable when rd.hs_changed (epoch, vote, commit LSN);
 *   2. when rd.n_entries > 0 or rd.truncate_from > 0: deletes every persisted
 *      entry with LSN >= rd.truncate_from, then appends rd.entries durably
 *      (a crash may keep a prefix of them, but never one that ends on an
 *      entry with `more`: an atomic unit is durable whole or not at all);
 *   3. only then sends rd.msgs (any order; each may be lost);
 *   4. applies rd.committed (in LSN order; they are durable after step 2);
 *   5. calls raft_advance().
 * No message of a Ready may leave the node before steps 1 and 2 are durable:
 * a vote or an acknowledgement is a promise about what is on disk. One
 * exception is safe and allowed: while the node is leader and the Ready
 * changes neither epoch nor vote, its messages (APPENDs, heartbeats) may be
 * sent before its own entries are durable (Raft thesis §10.2.1) — the core
 * counts the leader for a quorum from its durable log only (raft_advance). Between
 * raft_ready() and raft_advance() the caller makes no other call on the core
 * (the Ready's pointers borrow the core's memory until raft_advance()).
 *
 * Restart: raft_new() with the persisted hard state and persisted entries
 * (config.hs, config.entries); nothing else survives a crash, and nothing
 * else is needed. The core never truncates an entry at or below its commit
 * LSN; a peer that asks it to raises the alarm (rd.alarm) instead.
 *
 * Threading: none. A struct raft is used by one thread at a time.
 * Memory: the core keeps every entry's LSN, epoch and hash in memory, and
 * a copy of its data until the caller releases it once durable
 * (raft_release: the caller's storage then serves the bytes); snapshots
 * and log compaction are not built yet.
 *
 * Membership: the config's voters and learners at raft_new, then each
 * raft_set_members (one change at a time, applied when its entry commits:
 * etcd/raft's rule; the owner proposes a change only once the leader has
 * committed an entry of its own epoch, and only after the previous change
 * was applied).
 */
#ifndef STRATA_REPLICATION_RAFT_H
#define STRATA_REPLICATION_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format/error.h"

/* The error raft_propose and raft_transfer return on a node that is not the
 * leader (format/error.h). */
#define RAFT_ENOTLEADER ST_ENOTLEADER

#define RAFT_HASH_LEN  32 /* bytes of an entry's chain hash */
#define RAFT_MAX_NODES 16 /* voters + learners of one cluster */

/* Wire type ids of REPLICATION.md §5.2: fixed numbers, never reordered. */
enum raft_msg_type {
	RAFT_MSG_APPEND = 1,
	RAFT_MSG_APPEND_RESP = 2,
	RAFT_MSG_PREVOTE = 3,
	RAFT_MSG_PREVOTE_RESP = 4,
	RAFT_MSG_VOTE = 5,
	RAFT_MSG_VOTE_RESP = 6,
	RAFT_MSG_HEARTBEAT = 7,
	RAFT_MSG_HEARTBEAT_RESP = 8,
	RAFT_MSG_TIMEOUT_NOW = 9,
};

/* In-memory roles (never on the wire or disk). A learner is always a
 * follower: it receives entries, never campaigns, votes or counts. */
enum raft_role {
	RAFT_FOLLOWER = 0,     /* follows the leader of its epoch (or waits) */
	RAFT_PRECANDIDATE = 1, /* asks whether a majority would vote; epoch unchanged */
	RAFT_CANDIDATE = 2,    /* epoch + 1, voted for itself, asks for votes */
	RAFT_LEADER = 3,       /* the one node that takes proposals in its epoch */
};

/* One log entry (one strata commit). In a struct raft_ready or a message
 * the core hands out, data is borrowed until raft_advance(); in a message
 * given to raft_step() or a config given to raft_new(), data is borrowed for
 * the call and copied. len 0 with data NULL is an epoch's no-op entry; len >
 * 0 with data NULL is an entry whose bytes the caller keeps (raft_release,
 * or a restart's persisted log given without its data). */
struct raft_entry {
	uint64_t lsn;                /* log index, >= 1 */
	uint64_t epoch;              /* epoch of the leader that created it */
	uint8_t hash[RAFT_HASH_LEN]; /* chain hash (opaque to the core) */
	const void *data;            /* the commit record, len bytes */
	size_t len;                  /* bytes at data */
	bool more;                   /* the next entry is of the same atomic unit (the
	                              * owner's multi-entry commit): no APPEND ends
	                              * after this one */
};

/* What must be durable before anything that depends on it is sent. */
struct raft_hard_state {
	uint64_t epoch;  /* current epoch */
	uint64_t vote;   /* node voted for in epoch, 0 = none */
	uint64_t commit; /* commit LSN (may lag; never ahead of the log) */
};

/*
 * One peer message, all types in one struct; the fields a type does not use
 * are 0. Per type:
 *   APPEND          prev_lsn, prev_epoch, prev_hash, entries/n_entries, commit
 *   APPEND_RESP     success; success: match_lsn = last LSN now durable here;
 *                   reject: match_lsn = the rejected prev_lsn, hint_lsn = this
 *                   node's last LSN or a lower LSN to retry from, hint_epoch =
 *                   this node's epoch at hint_lsn (the leader skips back over
 *                   its entries of higher epochs, which cannot match)
 *   PREVOTE, VOTE   last_lsn, last_epoch (of the candidate's log); force (a
 *                   VOTE sent on TIMEOUT_NOW: the receiver ignores its leader
 *                   lease); a PREVOTE's epoch is the candidate's epoch + 1
 *   PREVOTE_RESP,
 *   VOTE_RESP       success = granted
 *   HEARTBEAT       commit (capped at the follower's match LSN)
 *   HEARTBEAT_RESP  —
 *   TIMEOUT_NOW     —
 */
struct raft_msg {
	enum raft_msg_type type;          /* RAFT_MSG_* */
	uint64_t epoch;                   /* sender's epoch (PREVOTE: + 1) */
	uint64_t from;                    /* sender's node id */
	uint64_t to;                      /* receiver's node id */
	uint64_t prev_lsn;                /* APPEND: LSN before entries[0] */
	uint64_t prev_epoch;              /* APPEND: epoch at prev_lsn */
	uint8_t prev_hash[RAFT_HASH_LEN]; /* APPEND: hash at prev_lsn */
	const struct raft_entry *entries; /* APPEND: entries, LSNs prev_lsn+1.. */
	size_t n_entries;                 /* APPEND: count of entries */
	uint64_t commit;                  /* APPEND, HEARTBEAT: leader commit */
	bool success;                     /* *_RESP: accepted / granted */
	bool force;                       /* VOTE: leadership transfer */
	uint64_t match_lsn;               /* APPEND_RESP: see above */
	uint64_t hint_lsn;                /* APPEND_RESP reject: retry hint */
	uint64_t hint_epoch;              /* APPEND_RESP reject: epoch at hint_lsn */
	uint64_t last_lsn;                /* (PRE)VOTE: candidate's last LSN */
	uint64_t last_epoch;              /* (PRE)VOTE: its epoch */
	uint64_t ctx;                     /* HEARTBEAT: the owner's read context (the
	                                   * core sends 0); HEARTBEAT_RESP: echoed */
};

/* Computes the hash of the no-op entry the leader appends at the start of
 * its epoch: prev_hash is the hash at lsn - 1 (zeros when lsn is 1). */
typedef void (*raft_hash_fn)(void *ctx, const uint8_t prev_hash[RAFT_HASH_LEN], uint64_t lsn,
                             uint64_t epoch, const void *data, size_t len,
                             uint8_t out[RAFT_HASH_LEN]);

struct raft_config {
	uint64_t self;                    /* this node's id (!= 0) */
	const uint64_t *voters;           /* voting members, self included if it votes */
	size_t n_voters;                  /* 1 .. RAFT_MAX_NODES */
	const uint64_t *learners;         /* non-voting members (receive entries) */
	size_t n_learners;                /* voters + learners <= RAFT_MAX_NODES */
	unsigned election_ticks;          /* election timeout, ticks (>= 2) */
	unsigned heartbeat_ticks;         /* heartbeat interval, ticks (< election) */
	uint64_t seed;                    /* randomizes the election timeout */
	size_t max_append;                /* entries per APPEND (0 = 64) */
	raft_hash_fn hash_fn;             /* no-op entry hash; NULL = built-in mix */
	void *hash_ctx;                   /* passed to hash_fn */
	const struct raft_hard_state *hs; /* persisted hard state, NULL = fresh */
	const struct raft_entry *entries; /* persisted log, LSNs 1..n in order */
	size_t n_entries;                 /* count of entries */
};

struct raft_ready {
	bool hs_changed;                    /* hs differs from the last persisted */
	struct raft_hard_state hs;          /* the hard state to make durable */
	uint64_t truncate_from;             /* >0: drop persisted LSNs >= this first */
	const struct raft_entry *entries;   /* to append durably, in LSN order */
	size_t n_entries;                   /* count of entries */
	const struct raft_msg *msgs;        /* to send after the above is durable */
	size_t n_msgs;                      /* count of msgs */
	const struct raft_entry *committed; /* newly committed, to apply */
	size_t n_committed;                 /* count of committed */
	bool alarm;                         /* a divergence was seen (raft_alarm) */
};

/* A copy of the core's state, for status lines, tests and the simulator. */
struct raft_status {
	uint64_t self;             /* this node's id */
	enum raft_role role;       /* current role */
	uint64_t leader;           /* known leader of epoch, 0 = none */
	struct raft_hard_state hs; /* current (maybe not yet durable) hard state */
	uint64_t last_lsn;         /* last LSN in the log */
	uint64_t last_epoch;       /* epoch of that entry (0 = empty log) */
	uint64_t applied;          /* last LSN handed out as committed */
	uint64_t transferee;       /* leadership transfer target, 0 = none */
	bool is_learner;           /* self is a learner (or removed) */
	bool removed;              /* self is no longer a member (raft_set_members) */
};

struct raft;

/*
 * Create a core from cfg (copied; cfg's arrays and entries are borrowed for
 * the call). Returns ST_OK and *out (free with raft_free), ST_EINVAL with a
 * message in err (may be NULL) for a bad config or an inconsistent persisted
 * state (LSNs not 1..n, epochs decreasing, commit past the log, self not a
 * member), ST_ENOMEM.
 */
int raft_new(const struct raft_config *cfg, struct raft **out, struct st_err *err);

/* Free the core and everything it owns (NULL is allowed). */
void raft_free(struct raft *r);

/* Advance logical time by one tick: elections, heartbeats, CheckQuorum. */
void raft_tick(struct raft *r);

/*
 * Feed one peer message (borrowed for the call). Returns ST_OK (also for a
 * stale or duplicate message, which is ignored or answered), ST_EPROTO for a
 * malformed message (entries not consecutive after prev_lsn, an unknown
 * type, from/to wrong), ST_ECORRUPT when the message shows a divergence (a
 * hash mismatch at a matching LSN and epoch, or a demand to truncate a
 * committed entry): the message is refused and the alarm is raised; from
 * then on every message is ignored (the node stops serving until an operator
 * acts). ST_ENOMEM: the entries appended before the failure stay (a valid
 * prefix of the leader's log), nothing is acknowledged; a reply that cannot
 * be queued for lack of memory is dropped like a lost packet.
 */
int raft_step(struct raft *r, const struct raft_msg *m);

/*
 * Propose one entry on the leader: data (len bytes, copied) and its chain
 * hash, computed by the caller over the hash of the current last entry
 * (raft_last). On ST_OK, *lsn_out (may be NULL) is its LSN; it is
 * acknowledged when a Ready's committed list holds it. Returns
 * RAFT_ENOTLEADER on a non-leader, ST_EBUSY during a leadership transfer,
 * ST_ENOMEM.
 */
int raft_propose(struct raft *r, const void *data, size_t len, const uint8_t hash[RAFT_HASH_LEN],
                 uint64_t *lsn_out);

/*
 * Propose n entries at once (data, len and hash of each as raft_propose's;
 * lsn and epoch are assigned): the same as n raft_propose calls, but the
 * peers get one APPEND for all of them. *first_lsn (may be NULL) is the
 * LSN of the first. On ST_ENOMEM the entries appended before it stay
 * proposed. Errors as raft_propose.
 */
int raft_propose_n(struct raft *r, const struct raft_entry *e, size_t n, uint64_t *first_lsn);

/*
 * Transfer leadership to voter `to`: the leader stops taking proposals,
 * catches `to` up and sends it TIMEOUT_NOW; abandoned after an election
 * timeout. Returns ST_OK, RAFT_ENOTLEADER, ST_EINVAL (to is self, unknown or
 * a learner).
 */
int raft_transfer(struct raft *r, uint64_t to);

/* True when there is something to persist, send or apply; fills *rd. See the
 * Ready contract at the top. */
bool raft_ready(struct raft *r, struct raft_ready *rd);

/* The Ready last returned is durable, sent and applied. */
void raft_advance(struct raft *r);

/* Fill *st with the current state. */
void raft_status(const struct raft *r, struct raft_status *st);

/* The entry at lsn, or NULL when lsn is 0 or past the log. Borrowed until
 * the next call that changes the core. */
const struct raft_entry *raft_entry_at(const struct raft *r, uint64_t lsn);

/* Leader's view of node id: *match is the highest LSN known durable there
 * (self: the durable log). False for an unknown id. */
bool raft_progress(const struct raft *r, uint64_t id, uint64_t *match, bool *voter);

/*
 * Change the membership to voters and learners (REPLICATION.md §13): called
 * by the owner when a membership entry is applied (committed), one change
 * at a time. Progress of members that stay carries over; a new member
 * starts at match 0 (the leader probes it at once); a smaller quorum may
 * commit at once. When self is in neither list it is removed: it keeps its
 * log, never votes, campaigns or counts, and a leader steps down (as does a
 * voter made a learner). Returns ST_OK or ST_EINVAL (no voter, more than
 * RAFT_MAX_NODES, an id 0 or listed twice); on ST_EINVAL nothing changes.
 */
int raft_set_members(struct raft *r, const uint64_t *voters, size_t n_voters,
                     const uint64_t *learners, size_t n_learners);

/* Free the data of durable entries up to upto: the caller's storage holds
 * them (entries then have data NULL and their original len; a message or
 * Ready handing them out leaves fetching the bytes to the caller). No-ops
 * keep len 0. */
void raft_release(struct raft *r, uint64_t upto);

/* The hash of the last entry (zeros for the empty log) and its LSN. */
void raft_last(const struct raft *r, uint64_t *lsn, uint8_t hash[RAFT_HASH_LEN]);

/* True once a divergence was seen; *lsn and *from (may be NULL) say where
 * and from whom. The operator must act: the core keeps refusing. */
bool raft_alarm(const struct raft *r, uint64_t *lsn, uint64_t *from);

const char *raft_role_name(enum raft_role role);

#endif
