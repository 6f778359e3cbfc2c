/*
 * daemon/store/repl.c — the store's side of replication (STORE.md §7,
 * replication/REPLICATION.md §4): capturing a decided write transaction as
 * log entries, proposing them and waiting for their durability, and the
 * ops the replication driver calls: persist (hard state, truncate,
 * append), apply, read.
 *
 * Entries are applied verbatim: an entry's body is the list of records
 * the leader's funnel put and deleted for one LSN, so every node's store
 * holds the same bytes. Each entry's LSN record is checked against the
 * applier's own chain (hash before, LSN, commit digest) before it lands.
 *
 * Threading: everything that writes LMDB runs under the write lock; the
 * proposer waits on repl.cond with the write lock released, which is how
 * the driver's thread gets in to persist and apply.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "daemon/store/store_int.h"
#include "format/crc32c.h"

enum { OP_PUT = 1, OP_DEL = 2 };
enum { BODY_COMMIT = 0, BODY_NOOP = 1, BODY_UPKEEP = 2 };
#define BODY_FORMAT 1
#define BODY_HEAD 8  /* format, kind, flags, 0, nops u32le */
#define BODY_MORE 1u /* flags: the next entry belongs to the same atomic unit */
#define RLOG_KEY_LEN 9
#define RLOG_HEAD (8 + ST_HASH_LEN) /* epoch, hash, then the body */

static _Thread_local int tl_durability;

void st_repl_set_durability(int level)
{
	tl_durability = level;
}

int store_repl_level(void)
{
	return tl_durability;
}

static void rlog_key(uint8_t *k, uint64_t lsn)
{
	k[0] = KEY_RLOG;
	be64(k + 1, lsn);
}

static bool is_rlog(const MDB_val *k)
{
	return k->mv_size == RLOG_KEY_LEN && ((const uint8_t *)k->mv_data)[0] == KEY_RLOG;
}

/* ---- capture ----------------------------------------------------------- */

static void cap_op(st_store *s, uint8_t op, const MDB_val *k, const MDB_val *v)
{
	struct store_cap *c = &s->cap;
	st_buf_u8(&c->ops, op);
	uint8_t *p = st_buf_reserve(&c->ops, 6);
	if (p) {
		st_put_le16(p, (uint16_t)k->mv_size);
		st_put_le32(p + 2, v ? (uint32_t)v->mv_size : 0);
		c->ops.len += 6;
	}
	st_buf_append(&c->ops, k->mv_data, k->mv_size);
	if (v)
		st_buf_append(&c->ops, v->mv_data, v->mv_size);
	c->nops++;
	if (op == OP_PUT && k->mv_size == LSN_KEY_LEN && ((uint8_t *)k->mv_data)[0] == KEY_LSN &&
	    v->mv_size >= LSN_REC_LEN) {
		if (c->nmarks == c->cap_marks) {
			uint32_t n = c->cap_marks ? 2 * c->cap_marks : 16;
			struct cap_mark *m = realloc(c->marks, n * sizeof *m);
			if (!m) {
				c->ops.oom = true;
				return;
			}
			c->marks = m;
			c->cap_marks = n;
		}
		struct cap_mark *m = &c->marks[c->nmarks++];
		m->end = c->ops.len;
		m->nops = c->nops;
		m->lsn = get_be64((uint8_t *)k->mv_data + 1);
		memcpy(m->hash, v->mv_data, ST_HASH_LEN);
		m->boundary = false;
		m->upkeep = st_get_le64((const uint8_t *)v->mv_data + 64) == 0; /* table 0 */
	}
}

int store_put(st_store *s, MDB_txn *txn, MDB_cursor *cur, MDB_val *k, MDB_val *v, unsigned flags)
{
	if (s->cap.on)
		cap_op(s, OP_PUT, k, v);
	return store_rec_put(s, txn, cur, k, v, flags);
}

void store_cap_del(st_store *s, const MDB_val *k)
{
	if (s->cap.on)
		cap_op(s, OP_DEL, k, NULL);
}

int store_repl_upkeep(st_store *s, MDB_txn *txn, struct st_err *err)
{
	if (!s->repl.on)
		return ST_OK;
	uint64_t lsn = s->txn_lsn + 1;
	int rc = store_log_append(s, txn, lsn, 0, 0, NULL, 0, err);
	if (rc == ST_OK)
		s->txn_lsn = lsn;
	return rc;
}

int store_del(st_store *s, MDB_txn *txn, MDB_val *k)
{
	if (s->cap.on)
		cap_op(s, OP_DEL, k, NULL);
	return mdb_del(txn, s->dbi, k, NULL);
}

void store_cap_boundary(st_store *s)
{
	if (s->cap.on && s->cap.nmarks)
		s->cap.marks[s->cap.nmarks - 1].boundary = true;
}

static void cap_reset(st_store *s)
{
	s->cap.ops.len = 0;
	s->cap.ops.oom = false;
	s->cap.nops = 0;
	s->cap.nmarks = 0;
}

/* An entry body: header, ops[from, to) bytes, CRC32C. */
static int body_build(struct st_buf *b, uint8_t kind, uint8_t flags, uint32_t nops,
		      const uint8_t *ops, size_t len)
{
	uint8_t *p = st_buf_reserve(b, BODY_HEAD);
	if (!p)
		return ST_ENOMEM;
	p[0] = BODY_FORMAT;
	p[1] = kind;
	p[2] = flags;
	p[3] = 0;
	st_put_le32(p + 4, nops);
	b->len += BODY_HEAD;
	st_buf_append(b, ops, len);
	uint8_t c[4];
	st_put_le32(c, st_crc32c(0, b->data, b->len));
	st_buf_append(b, c, 4);
	return b->oom ? ST_ENOMEM : ST_OK;
}

/* ---- the proposer's side ----------------------------------------------- */

static struct timespec deadline_after(int64_t us)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += us / 1000000;
	t.tv_nsec += (us % 1000000) * 1000;
	if (t.tv_nsec >= 1000000000) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000;
	}
	return t;
}

int store_repl_wait_quiet(st_store *s, const char *what, struct st_err *err)
{
	const struct st_repl_hooks *h = &s->repl.hooks;
	struct timespec dl = deadline_after(h->timeout_us);
	while (s->repl.inflight || s->last_lsn < h->log_last(h->ctx)) {
		int rc = store_refuse_failed(s, err);
		if (rc != ST_OK)
			return rc;
		if (pthread_cond_timedwait(&s->repl.cond, &s->write_lock, &dl) == ETIMEDOUT)
			return st_seterr(err, ST_EUNAVAIL,
					 "%s: the log holds entries up to LSN %llu that are not "
					 "committed yet (applied: %llu): no quorum within %lld ms",
					 what, (unsigned long long)h->log_last(h->ctx),
					 (unsigned long long)s->last_lsn,
					 (long long)(h->timeout_us / 1000));
	}
	return ST_OK;
}

static int rlog_hash_at(st_store *s, uint64_t lsn, uint8_t hash[ST_HASH_LEN]);

/* How far this node's log holds the proposal e[0..n) up to LSN upto: n
 * when every entry there is its own (or upto is below them all), the index
 * of the first entry that is another leader's, or -1 when an entry cannot
 * be read. The log is hash-chained: one match vouches for every entry
 * before it. */
static int64_t own_upto(st_store *s, const struct st_repl_entry *e, uint32_t n, uint64_t upto)
{
	uint8_t h[ST_HASH_LEN];
	uint32_t k = 0; /* entries at or below upto */
	while (k < n && e[k].lsn <= upto)
		k++;
	if (k == 0)
		return n;
	int found = rlog_hash_at(s, e[k - 1].lsn, h);
	if (found == 1 && !memcmp(h, e[k - 1].hash, ST_HASH_LEN))
		return n;
	for (uint32_t i = 0; found >= 0 && i < k; i++)
		if ((found = rlog_hash_at(s, e[i].lsn, h)) == 1 && memcmp(h, e[i].hash, ST_HASH_LEN))
			return i;
	return -1;
}

/* The proposal e[0..n) can no longer commit whole: from LSN from on, the
 * log is another leader's (committed there, or never given the entries). */
static int lost_err(const char *what, const struct st_repl_entry *e, uint32_t n, uint64_t from,
		    struct st_err *err)
{
	uint64_t last = e[n - 1].lsn;
	if (from <= e[0].lsn)
		return st_seterr(err, ST_ENOTLEADER,
				 "%s: leadership moved before LSN %llu was committed; the "
				 "write was not applied: retry at the leader",
				 what, (unsigned long long)last);
	return st_seterr(err, ST_EUNAVAIL,
			 "%s: leadership moved before LSN %llu was committed; it is not "
			 "acknowledged: its entries before LSN %llu committed (a unit cut short "
			 "by the failover), the rest did not",
			 what, (unsigned long long)last, (unsigned long long)from);
}

int store_repl_commit(st_store *s, MDB_txn *txn, const char *what, struct st_err *err)
{
	struct store_cap *c = &s->cap;
	const struct st_repl_hooks *h = &s->repl.hooks;
	uint32_t n = c->nmarks;
	struct st_repl_entry *e = calloc(n, sizeof *e);
	struct st_buf *bodies = calloc(n, sizeof *bodies);
	int rc = ST_OK;
	c->on = false;
	mdb_txn_abort(txn);
	s->txn_lsn = s->last_lsn;
	memcpy(s->txn_hash, s->last_hash, ST_HASH_LEN);
	if (!e || !bodies || c->ops.oom) {
		rc = st_seterr(err, ST_ENOMEM, "%s: out of memory", what);
		goto out;
	}
	size_t start = 0;
	uint32_t sops = 0;
	for (uint32_t i = 0; i < n; i++) {
		bool last = i + 1 == n;
		size_t end = last ? c->ops.len : c->marks[i].end;
		uint32_t nops = last ? c->nops : c->marks[i].nops;
		uint8_t flags = !last && !c->marks[i].boundary ? BODY_MORE : 0;
		uint8_t kind = c->marks[i].upkeep ? BODY_UPKEEP : BODY_COMMIT;
		if (body_build(&bodies[i], kind, flags, nops - sops, c->ops.data + start,
			       end - start) != ST_OK) {
			rc = st_seterr(err, ST_ENOMEM, "%s: out of memory", what);
			goto out;
		}
		e[i] = (struct st_repl_entry){.lsn = c->marks[i].lsn, .body = bodies[i].data,
					      .len = bodies[i].len};
		memcpy(e[i].hash, c->marks[i].hash, ST_HASH_LEN);
		start = end;
		sops = nops;
	}
	int level = tl_durability ? tl_durability : h->durability;
	if (level < ST_DUR_LOCAL || level > ST_DUR_ALL)
		level = ST_DUR_QUORUM;
	uint64_t last = e[n - 1].lsn;
	/* An entry already at its first LSN (a new leader's, persisted while
	 * this node still published itself as the leader) means the
	 * transaction was built on a superseded log: it is not proposed. */
	uint8_t there[ST_HASH_LEN];
	int found = rlog_hash_at(s, e[0].lsn, there);
	if (found != 0) {
		rc = found > 0 ? st_seterr(err, ST_ENOTLEADER,
					   "%s: not the leader any more (this node's log holds "
					   "another leader's entry at LSN %llu); the write was not "
					   "applied: retry at the leader",
					   what, (unsigned long long)e[0].lsn)
			       : st_seterr(err, EIO,
					   "%s: this node's log cannot be read at LSN %llu; the "
					   "write was not applied", what, (unsigned long long)e[0].lsn);
		goto out;
	}
	s->repl.refused = false;
	s->repl.want_lsn = e[0].lsn;
	memcpy(s->repl.want_hash, e[0].hash, ST_HASH_LEN);
	if ((rc = h->propose(h->ctx, e, n, err)) != ST_OK)
		goto out;
	s->repl.inflight = true;
	struct timespec dl = deadline_after(h->timeout_us);
	for (;;) {
		if (s->repl.refused) {
			rc = lost_err(what, e, n, e[0].lsn, err);
			break;
		}
		if (store_refuse_failed(s, err) != ST_OK) {
			/* Proposed already: the others may commit it. */
			char why[ST_ERR_MSG_MAX];
			snprintf(why, sizeof why, "%s", err->msg);
			rc = st_seterr(err, ST_EFAILED,
				       "%s: the store failed before LSN %llu was acknowledged (%s); "
				       "it is not acknowledged, and may still commit on the other "
				       "nodes", what, (unsigned long long)last, why);
			break;
		}
		if (s->repl.stopped) {
			/* The entry may have reached the followers before this node's
			 * driver stopped: it may commit without this node. */
			rc = st_seterr(err, ST_EUNAVAIL,
				       "%s: replication stopped on this node before LSN %llu was "
				       "acknowledged; it is not acknowledged, and may still commit",
				       what, (unsigned long long)last);
			break;
		}
		/* Only the committed log decides: what is applied here at the
		 * proposal's LSNs is final. An entry truncated or replaced before
		 * it commits may still commit under a later leader that holds it,
		 * so a deposed leader's writer waits for the decision (or times
		 * out), and an applied LSN past the proposal's with another
		 * leader's entries there is a loss, never an acknowledgement. */
		int64_t own = own_upto(s, e, n, s->last_lsn);
		if (own >= 0 && own < n) {
			rc = lost_err(what, e, n, e[own].lsn, err);
			break;
		}
		if (own < 0) {
			rc = st_seterr(err, ST_EUNAVAIL,
				       "%s: LSN %llu cannot be checked against this node's log; it "
				       "is not acknowledged, and may still commit",
				       what, (unsigned long long)last);
			break;
		}
		bool done = level == ST_DUR_LOCAL ? h->stable(h->ctx) >= last &&
							   own_upto(s, e, n, last) == n
			    : level == ST_DUR_ALL ? s->last_lsn >= last && h->all_matched(h->ctx) >= last
						  : s->last_lsn >= last;
		if (done)
			break;
		if (pthread_cond_timedwait(&s->repl.cond, &s->write_lock, &dl) == ETIMEDOUT) {
			rc = st_seterr(err, ST_EUNAVAIL,
				       "%s: %s: LSN %llu was not acknowledged by %s within %lld ms; "
				       "it is not acknowledged, and may still commit",
				       what, level == ST_DUR_QUORUM ? "no quorum" : "durability not met",
				       (unsigned long long)last,
				       level == ST_DUR_ALL ? "every voter" : level == ST_DUR_LOCAL
										 ? "this node's disk"
										 : "a majority of voters",
				       (long long)(h->timeout_us / 1000));
			break;
		}
	}
	s->repl.inflight = false;
	pthread_cond_broadcast(&s->repl.cond);
out:
	for (uint32_t i = 0; bodies && i < n; i++)
		st_buf_free(&bodies[i]);
	free(bodies);
	free(e);
	cap_reset(s);
	return rc;
}

/* ---- attach, identity, hard state -------------------------------------- */

static int meta_get(st_store *s, MDB_txn *txn, const char *name, MDB_val *v)
{
	uint8_t kb[32];
	MDB_val k = kind_key(kb, KEY_META, name, strlen(name));
	return store_get(s, txn, &k, v);
}

static int meta_put(st_store *s, MDB_txn *txn, const char *name, const void *p, size_t len)
{
	uint8_t kb[32];
	MDB_val k = kind_key(kb, KEY_META, name, strlen(name)), v = {len, (void *)p};
	return store_rec_put(s, txn, NULL, &k, &v, 0);
}

/* The meta record of the cluster's membership (REPLICATION.md §13): opaque
 * to the store, written only through the log. */
#define MEMBERS_NAME "members"

int st_repl_members_get(st_store *s, struct st_buf *out, struct st_err *err)
{
	MDB_txn *txn = NULL;
	MDB_val v;
	int mrc = store_read_begin(s, &txn), rc = ST_OK;
	if (mrc != 0)
		return store_lmdb_err(err, mrc, "reading the membership");
	mrc = meta_get(s, txn, MEMBERS_NAME, &v);
	if (mrc == MDB_NOTFOUND)
		rc = st_seterr(err, ST_ENOTFOUND, "no membership record");
	else if (mrc != 0)
		rc = store_lmdb_err(err, mrc, "reading the membership");
	else if (st_buf_append(out, v.mv_data, v.mv_size), out->oom)
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
	store_read_end(s, txn);
	return rc;
}

int st_repl_members_put(st_store *s, const void *rec, size_t len, struct st_err *err)
{
	MDB_txn *txn = NULL;
	uint8_t kb[32];
	MDB_val k = kind_key(kb, KEY_META, MEMBERS_NAME, sizeof MEMBERS_NAME - 1),
		v = {len, (void *)rec};
	int rc = s->repl.on ? store_write_begin(s, &txn, "changing the membership", err)
			    : st_seterr(err, ST_EINVAL, "not in cluster mode");
	if (rc == ST_OK) {
		int mrc = store_put(s, txn, NULL, &k, &v, 0);
		if (mrc != 0)
			rc = store_lmdb_err(err, mrc, "changing the membership");
		else if ((rc = store_repl_upkeep(s, txn, err)) == ST_OK) {
			rc = store_commit_txn(s, txn, "changing the membership", err);
			txn = NULL;
		}
	}
	if (s->repl.on)
		store_write_end(s, txn);
	return rc;
}

bool st_repl_members_changed(st_store *s)
{
	return __atomic_exchange_n(&s->repl.members_changed, 0, __ATOMIC_ACQ_REL) != 0;
}

/* Run fn in a write transaction of its own under the write lock, committed
 * durably. */
static int own_write(st_store *s, const char *what,
		     int (*fn)(st_store *s, MDB_txn *txn, void *arg, struct st_err *err), void *arg,
		     struct st_err *err)
{
	MDB_txn *txn = NULL;
	pthread_mutex_lock(&s->write_lock);
	int rc = store_refuse_failed(s, err), mrc;
	if (rc == ST_OK && (mrc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0)
		rc = store_lmdb_err(err, mrc, what);
	if (rc == ST_OK && (rc = fn(s, txn, arg, err)) == ST_OK) {
		rc = store_lmdb_commit(s, txn, what, err);
		txn = NULL;
	}
	if (txn)
		mdb_txn_abort(txn);
	pthread_cond_broadcast(&s->repl.cond);
	pthread_mutex_unlock(&s->write_lock);
	return rc;
}

struct ident {
	uint64_t node;
	const uint8_t *cluster;
};

static int ident_txn(st_store *s, MDB_txn *txn, void *arg, struct st_err *err)
{
	struct ident *id = arg;
	MDB_val v;
	uint8_t b[24];
	int mrc = meta_get(s, txn, "cluster", &v);
	if (mrc == 0 && v.mv_size == 24) {
		uint64_t node = st_get_le64(v.mv_data);
		if (memcmp((uint8_t *)v.mv_data + 8, id->cluster, 16) != 0) {
			char a[33], c[33];
			for (int i = 0; i < 16; i++) {
				sprintf(a + 2 * i, "%02x", ((uint8_t *)v.mv_data)[8 + i]);
				sprintf(c + 2 * i, "%02x", id->cluster[i]);
			}
			return st_seterr(err, ST_EINVAL,
					 "data directory '%s' belongs to cluster %s, not to cluster %s "
					 "of the config: refusing to serve another cluster's data",
					 s->dir, a, c);
		}
		if (node != id->node)
			return st_seterr(err, ST_EINVAL,
					 "data directory '%s' is node %llu's, not node %llu's (the "
					 "config's node_id): node ids are never reused; a node whose "
					 "data is lost rejoins under a new id",
					 s->dir, (unsigned long long)node, (unsigned long long)id->node);
		return ST_OK;
	}
	if (mrc != MDB_NOTFOUND)
		return mrc ? store_lmdb_err(err, mrc, "reading the cluster identity")
			   : st_seterr(err, ST_ECORRUPT, "the cluster identity record is damaged");
	if (s->last_lsn > 0)
		return st_seterr(err, ST_EINVAL,
				 "data directory '%s' holds %llu commits made as a single node and "
				 "no replicated log: a cluster node starts on an empty data directory",
				 s->dir, (unsigned long long)s->last_lsn);
	st_put_le64(b, id->node);
	memcpy(b + 8, id->cluster, 16);
	return (mrc = meta_put(s, txn, "cluster", b, sizeof b))
		       ? store_lmdb_err(err, mrc, "writing the cluster identity")
		       : ST_OK;
}

static int hs_get(st_store *s, MDB_txn *txn, struct st_repl_hs *hs);
static int hs_put(st_store *s, MDB_txn *txn, const struct st_repl_hs *hs);
static int decode_rlog(const MDB_val *k, const MDB_val *v, struct st_repl_entry *e);
static void bump_fids(st_store *s, const uint8_t *body, size_t len);

struct adopt {
	struct ident id;
	const struct st_repl_keep *keep;
};

/* A snapshot of another node made this node's (st_repl_adopt). */
static int adopt_txn(st_store *s, MDB_txn *txn, void *arg, struct st_err *err)
{
	const struct adopt *ad = arg;
	const struct ident *id = &ad->id;
	const struct st_repl_keep *keep = ad->keep;
	if (keep && s->last_lsn < keep->last)
		return st_seterr(err, ST_EUNAVAIL,
				 "the snapshot ends at LSN %llu, before this node's log (LSN %llu): "
				 "adopting it would forget entries this node may have acknowledged",
				 (unsigned long long)s->last_lsn, (unsigned long long)keep->last);
	MDB_val v;
	uint8_t b[24];
	int mrc = meta_get(s, txn, "cluster", &v);
	if (mrc != 0 || v.mv_size != 24 || memcmp((uint8_t *)v.mv_data + 8, id->cluster, 16))
		return st_seterr(err, ST_EINVAL, "the snapshot in '%s' is not of this cluster",
				 s->dir);
	st_put_le64(b, id->node);
	memcpy(b + 8, id->cluster, 16);
	struct st_repl_hs hs;
	if ((mrc = meta_put(s, txn, "cluster", b, sizeof b)) != 0 ||
	    ((mrc = hs_get(s, txn, &hs)) != 0 && mrc != MDB_NOTFOUND))
		return mrc == -1 ? st_seterr(err, ST_ECORRUPT, "the hard state record is damaged")
				 : store_lmdb_err(err, mrc, "adopting a snapshot");
	/* The epoch stays (it only grows); a new node cast no vote, a member
	 * keeps its own (never two votes in one epoch); the applied prefix is
	 * committed. Log records past it may never commit. */
	if (keep && keep->epoch >= hs.epoch) {
		hs.vote = keep->vote;
		hs.epoch = keep->epoch;
	} else {
		hs.vote = 0;
	}
	hs.commit = s->last_lsn;
	if ((mrc = hs_put(s, txn, &hs)) != 0)
		return store_lmdb_err(err, mrc, "adopting a snapshot");
	MDB_cursor *cur;
	uint8_t key[RLOG_KEY_LEN];
	rlog_key(key, s->last_lsn + 1);
	MDB_val k = {sizeof key, key};
	if ((mrc = mdb_cursor_open(txn, s->dbi, &cur)) != 0)
		return store_lmdb_err(err, mrc, "adopting a snapshot");
	for (mrc = store_cget(s, cur, &k, &v, MDB_SET_RANGE); mrc == 0 && is_rlog(&k);
	     mrc = store_cget(s, cur, &k, &v, MDB_NEXT))
		if ((mrc = mdb_cursor_del(cur, 0)) != 0)
			break;
	mdb_cursor_close(cur);
	return mrc == 0 || mrc == MDB_NOTFOUND ? ST_OK : store_lmdb_err(err, mrc, "adopting a snapshot");
}

int st_repl_adopt(st_store *s, uint64_t node_id, const uint8_t cluster_id[16],
		  const struct st_repl_keep *keep, struct st_err *err)
{
	struct adopt ad = {{node_id, cluster_id}, keep};
	return own_write(s, "adopting a snapshot", adopt_txn, &ad, err);
}

int st_repl_identity(st_store *s, uint64_t node_id, const uint8_t cluster_id[16],
		     struct st_err *err)
{
	struct ident id = {node_id, cluster_id};
	return own_write(s, "recording the cluster identity", ident_txn, &id, err);
}

int st_repl_attach(st_store *s, const struct st_repl_hooks *h, struct st_err *err)
{
	if (!h || !h->propose || !h->stable || !h->all_matched || !h->log_last)
		return st_seterr(err, ST_EINVAL, "cluster mode needs every hook");
	MDB_txn *txn = NULL;
	MDB_val v;
	int mrc = store_read_begin(s, &txn);
	if (mrc != 0)
		return store_lmdb_err(err, mrc, "entering cluster mode");
	mrc = meta_get(s, txn, "cluster", &v);
	store_read_end(s, txn);
	if (mrc == MDB_NOTFOUND && s->last_lsn > 0)
		return st_seterr(err, ST_EINVAL,
				 "data directory '%s' holds %llu commits made as a single node and "
				 "no replicated log: a cluster node starts on an empty data directory",
				 s->dir, (unsigned long long)s->last_lsn);
	/* Log records past the applied LSN (a restart) hold file ids too. */
	if ((mrc = store_read_begin(s, &txn)) != 0)
		return store_lmdb_err(err, mrc, "entering cluster mode");
	MDB_cursor *cur = NULL;
	uint8_t key[RLOG_KEY_LEN];
	rlog_key(key, s->last_lsn + 1);
	MDB_val k = {sizeof key, key};
	if ((mrc = mdb_cursor_open(txn, s->dbi, &cur)) == 0) {
		for (mrc = store_cget(s, cur, &k, &v, MDB_SET_RANGE); mrc == 0 && is_rlog(&k);
		     mrc = store_cget(s, cur, &k, &v, MDB_NEXT)) {
			struct st_repl_entry e;
			if (decode_rlog(&k, &v, &e) == ST_OK && e.len)
				bump_fids(s, e.body, e.len);
		}
		mdb_cursor_close(cur);
	}
	store_read_end(s, txn);
	if (mrc != 0 && mrc != MDB_NOTFOUND)
		return store_lmdb_err(err, mrc, "entering cluster mode");
	pthread_mutex_lock(&s->write_lock);
	s->repl.hooks = *h;
	if (s->repl.hooks.timeout_us <= 0)
		s->repl.hooks.timeout_us = 5000000;
	if (!s->repl.hooks.durability)
		s->repl.hooks.durability = ST_DUR_QUORUM;
	s->repl.on = true;
	pthread_mutex_unlock(&s->write_lock);
	return ST_OK;
}

/* The hard state record in txn into *hs (zeros when absent): 0,
 * MDB_NOTFOUND, another LMDB code, or -1 when the record is damaged. */
static int hs_get(st_store *s, MDB_txn *txn, struct st_repl_hs *hs)
{
	MDB_val v;
	memset(hs, 0, sizeof *hs);
	int mrc = meta_get(s, txn, "raft_hs", &v);
	if (mrc != 0)
		return mrc;
	if (v.mv_size != 24)
		return -1;
	hs->epoch = st_get_le64(v.mv_data);
	hs->vote = st_get_le64((uint8_t *)v.mv_data + 8);
	hs->commit = st_get_le64((uint8_t *)v.mv_data + 16);
	return 0;
}

int st_repl_hs_load(st_store *s, struct st_repl_hs *hs, struct st_err *err)
{
	MDB_txn *txn = NULL;
	int mrc = store_read_begin(s, &txn), rc = ST_OK;
	if (mrc != 0)
		return store_lmdb_err(err, mrc, "reading the hard state");
	if ((mrc = hs_get(s, txn, hs)) != 0 && mrc != MDB_NOTFOUND)
		rc = mrc != -1 ? store_lmdb_err(err, mrc, "reading the hard state")
			     : st_seterr(err, ST_ECORRUPT, "the hard state record is damaged");
	store_read_end(s, txn);
	return rc;
}

static int hs_put(st_store *s, MDB_txn *txn, const struct st_repl_hs *hs)
{
	uint8_t b[24];
	st_put_le64(b, hs->epoch);
	st_put_le64(b + 8, hs->vote);
	st_put_le64(b + 16, hs->commit);
	return meta_put(s, txn, "raft_hs", b, sizeof b);
}

/* ---- the log ----------------------------------------------------------- */

static int decode_rlog(const MDB_val *k, const MDB_val *v, struct st_repl_entry *e)
{
	if (v->mv_size < RLOG_HEAD + BODY_HEAD + 4)
		return ST_ECORRUPT;
	const uint8_t *p = v->mv_data;
	e->lsn = get_be64((const uint8_t *)k->mv_data + 1);
	e->epoch = st_get_le64(p);
	memcpy(e->hash, p + 8, ST_HASH_LEN);
	e->body = p + RLOG_HEAD;
	e->len = v->mv_size - RLOG_HEAD;
	if (e->body[1] == BODY_NOOP)
		e->len = 0; /* the core's no-op */
	return ST_OK;
}

int st_repl_log_each(st_store *s, int (*fn)(void *arg, const struct st_repl_entry *e), void *arg,
		     struct st_err *err)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	int mrc = store_read_begin(s, &txn), rc = ST_OK;
	if (mrc == 0)
		mrc = mdb_cursor_open(txn, s->dbi, &cur);
	uint8_t key[RLOG_KEY_LEN];
	rlog_key(key, 0);
	MDB_val k = {sizeof key, key}, v;
	for (mrc = mrc ? mrc : store_cget(s, cur, &k, &v, MDB_SET_RANGE); mrc == 0 && is_rlog(&k);
	     mrc = store_cget(s, cur, &k, &v, MDB_NEXT)) {
		struct st_repl_entry e;
		if (decode_rlog(&k, &v, &e) != ST_OK) {
			rc = st_seterr(err, ST_ECORRUPT, "log record %llu is damaged",
				       (unsigned long long)get_be64((uint8_t *)k.mv_data + 1));
			break;
		}
		if (fn(arg, &e))
			break;
	}
	if (rc == ST_OK && mrc != 0 && mrc != MDB_NOTFOUND)
		rc = store_lmdb_err(err, mrc, "reading the replicated log");
	if (cur)
		mdb_cursor_close(cur);
	store_read_end(s, txn);
	return rc;
}

int st_repl_log_get(st_store *s, uint64_t lsn, struct st_buf *out, struct st_err *err)
{
	MDB_txn *txn = NULL;
	uint8_t key[RLOG_KEY_LEN];
	rlog_key(key, lsn);
	MDB_val k = {sizeof key, key}, v;
	int mrc = store_read_begin(s, &txn), rc = ST_OK;
	if (mrc == 0)
		mrc = store_get(s, txn, &k, &v);
	if (mrc == MDB_NOTFOUND)
		rc = st_seterr(err, ST_ENOTFOUND, "log record %llu is not here",
			       (unsigned long long)lsn);
	else if (mrc != 0)
		rc = store_lmdb_err(err, mrc, "reading the replicated log");
	else if (v.mv_size < RLOG_HEAD + BODY_HEAD + 4)
		rc = st_seterr(err, ST_ECORRUPT, "log record %llu is damaged",
			       (unsigned long long)lsn);
	else
		st_buf_append(out, (uint8_t *)v.mv_data + RLOG_HEAD, v.mv_size - RLOG_HEAD);
	if (rc == ST_OK && out->oom)
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
	store_read_end(s, txn);
	return rc;
}

bool st_repl_entry_more(const void *body, size_t len)
{
	return body && len >= BODY_HEAD && (((const uint8_t *)body)[2] & BODY_MORE);
}

/* The hash of this node's log record at lsn: 1, 0 when there is none, -1
 * when it cannot be read. */
static int rlog_hash_at(st_store *s, uint64_t lsn, uint8_t hash[ST_HASH_LEN])
{
	MDB_txn *txn = NULL;
	uint8_t key[RLOG_KEY_LEN];
	rlog_key(key, lsn);
	MDB_val k = {sizeof key, key}, v;
	struct st_repl_entry e;
	int mrc = store_read_begin(s, &txn), found = -1;
	if (mrc == 0)
		mrc = store_get(s, txn, &k, &v);
	if (mrc == MDB_NOTFOUND)
		found = 0;
	else if (mrc == 0 && decode_rlog(&k, &v, &e) == ST_OK) {
		memcpy(hash, e.hash, ST_HASH_LEN);
		found = 1;
	}
	store_read_end(s, txn);
	return found;
}

struct persist {
	const struct st_repl_hs *hs;
	uint64_t from;
	const struct st_repl_entry *e;
	uint32_t n;
};

static int persist_txn(st_store *s, MDB_txn *txn, void *arg, struct st_err *err)
{
	struct persist *p = arg;
	int mrc = 0;
	if (p->hs && (mrc = hs_put(s, txn, p->hs)) != 0)
		return store_lmdb_err(err, mrc, "saving the hard state");
	if (p->from) {
		if (p->from <= s->last_lsn)
			return st_seterr(err, ST_ECORRUPT,
					 "asked to drop log entries from LSN %llu, but LSN %llu is "
					 "applied (committed): refused; this node's log and the "
					 "leader's diverge",
					 (unsigned long long)p->from, (unsigned long long)s->last_lsn);
		MDB_cursor *cur;
		if ((mrc = mdb_cursor_open(txn, s->dbi, &cur)) != 0)
			return store_lmdb_err(err, mrc, "truncating the replicated log");
		uint8_t key[RLOG_KEY_LEN];
		rlog_key(key, p->from);
		MDB_val k = {sizeof key, key}, v;
		bool dropped = false;
		for (mrc = store_cget(s, cur, &k, &v, MDB_SET_RANGE); mrc == 0 && is_rlog(&k);
		     mrc = store_cget(s, cur, &k, &v, MDB_NEXT)) {
			if ((mrc = mdb_cursor_del(cur, 0)) != 0)
				break;
			dropped = true;
		}
		mdb_cursor_close(cur);
		if (mrc != 0 && mrc != MDB_NOTFOUND)
			return store_lmdb_err(err, mrc, "truncating the replicated log");
		if (dropped)
			store_meta_cache_clear(s);
	}
	for (uint32_t i = 0; i < p->n; i++) {
		const struct st_repl_entry *e = &p->e[i];
		struct st_buf b = {0};
		if (e->len)
			bump_fids(s, e->body, e->len);
		uint8_t hd[RLOG_HEAD], key[RLOG_KEY_LEN];
		st_put_le64(hd, e->epoch);
		memcpy(hd + 8, e->hash, ST_HASH_LEN);
		st_buf_append(&b, hd, sizeof hd);
		if (e->len)
			st_buf_append(&b, e->body, e->len);
		else
			body_build(&b, BODY_NOOP, 0, 0, NULL, 0);
		rlog_key(key, e->lsn);
		MDB_val k = {sizeof key, key}, v = {b.len, b.data};
		mrc = b.oom ? ENOMEM : store_rec_put(s, txn, NULL, &k, &v, 0);
		st_buf_free(&b);
		if (mrc != 0)
			return mrc == ENOMEM ? st_seterr(err, ST_ENOMEM, "out of memory")
					     : store_lmdb_err(err, mrc, "appending to the replicated log");
	}
	return ST_OK;
}

int st_repl_persist(st_store *s, const struct st_repl_hs *hs, uint64_t truncate_from,
		    const struct st_repl_entry *e, uint32_t n, struct st_err *err)
{
	struct persist p = {hs, truncate_from, e, n};
	return own_write(s, "persisting the replicated log", persist_txn, &p, err);
}

void st_repl_fail(st_store *s, uint64_t from, const uint8_t *hash)
{
	pthread_mutex_lock(&s->write_lock);
	if (from == 0)
		s->repl.stopped = true;
	else if (s->repl.inflight && from == s->repl.want_lsn &&
		 !memcmp(hash, s->repl.want_hash, ST_HASH_LEN))
		s->repl.refused = true; /* not an earlier proposal at the same LSN */
	pthread_cond_broadcast(&s->repl.cond);
	pthread_mutex_unlock(&s->write_lock);
}

void st_repl_notify(st_store *s)
{
	pthread_mutex_lock(&s->write_lock);
	pthread_cond_broadcast(&s->repl.cond);
	pthread_mutex_unlock(&s->write_lock);
}

int st_table_version(st_store *s, const char *table, uint64_t *version, struct st_err *err)
{
	MDB_txn *txn = NULL;
	struct table_head h = {0};
	int mrc = store_read_begin(s, &txn), rc;
	if (mrc != 0)
		return store_lmdb_err(err, mrc, "reading a table's version");
	if ((rc = head_get_fixed(s, txn, table, &h, err)) == ST_OK)
		*version = h.version;
	head_fini(&h);
	store_read_end(s, txn);
	return rc;
}

uint64_t st_repl_applied(st_store *s)
{
	return __atomic_load_n(&s->last_lsn, __ATOMIC_ACQUIRE);
}

void st_repl_noop_hash(const uint8_t prev[ST_HASH_LEN], uint64_t lsn, uint8_t out[ST_HASH_LEN])
{
	uint8_t rec[LSN_REC_LEN] = {0};
	crypto_generichash(rec + ST_HASH_LEN, ST_HASH_LEN, NULL, 0, NULL, 0);
	store_chain_step(prev, lsn, rec, out);
}

void st_segment_path(st_store *s, uint64_t tid, uint64_t fid, char *buf, size_t len)
{
	snprintf(buf, len, "%s/tables/%016llx/%016llx.seg", s->dir, (unsigned long long)tid,
		 (unsigned long long)fid);
}

/* ---- bodies ------------------------------------------------------------ */

/* One op of a body. */
struct op {
	uint8_t op;
	MDB_val k, v;
};

/* Check a body's header and CRC; *nops and the ops' start. */
static int body_open(const uint8_t *b, size_t len, uint32_t *nops, struct st_cur *c,
		     struct st_err *err)
{
	*nops = 0;
	st_cur_init(c, b, 0);
	if (len < BODY_HEAD + 4 || b[0] != BODY_FORMAT || b[1] > BODY_UPKEEP)
		return st_seterr(err, ST_ECORRUPT, "a log entry's body is malformed (%zu bytes)", len);
	if (st_get_le32(b + len - 4) != st_crc32c(0, b, len - 4))
		return st_seterr(err, ST_ECORRUPT, "a log entry's body fails its CRC32C");
	*nops = st_get_le32(b + 4);
	st_cur_init(c, b + BODY_HEAD, len - BODY_HEAD - 4);
	return ST_OK;
}

static bool body_next(struct st_cur *c, struct op *o)
{
	if (c->end - c->p < 7)
		return false;
	const uint8_t *p = c->p;
	o->op = p[0];
	o->k.mv_size = st_get_le16(p + 1);
	o->v.mv_size = st_get_le32(p + 3);
	c->p += 7;
	if ((o->op != OP_PUT && o->op != OP_DEL) || o->k.mv_size == 0 ||
	    (uint64_t)(c->end - c->p) < o->k.mv_size + (uint64_t)o->v.mv_size)
		return false;
	o->k.mv_data = (void *)c->p;
	o->v.mv_data = (void *)(c->p + o->k.mv_size);
	c->p += o->k.mv_size + o->v.mv_size;
	return true;
}

static bool is_file_key(const MDB_val *k)
{
	const uint8_t *p = k->mv_data;
	return k->mv_size == FILE_KEY_LEN && p[0] == KEY_TABLE && p[9] == REC_FILE;
}

/* File ids of a logged entry not applied yet are taken: a node that leads
 * before applying it must not hand them out again (its writes name their
 * segment files before their decision). Raises s->next_fid past every file
 * record and table head of the body. */
static void bump_fids(st_store *s, const uint8_t *body, size_t len)
{
	struct st_cur c;
	uint32_t nops;
	struct op o;
	uint64_t want = 0;
	if (body_open(body, len, &nops, &c, NULL) != ST_OK)
		return;
	for (uint32_t i = 0; i < nops && body_next(&c, &o); i++) {
		const uint8_t *kp = o.k.mv_data;
		if (o.op != OP_PUT)
			continue;
		if (is_file_key(&o.k) && file_key_fid(&o.k) + 1 > want)
			want = file_key_fid(&o.k) + 1;
		else if (o.k.mv_size == HEAD_KEY_LEN && kp[0] == KEY_TABLE && kp[9] == REC_HEAD &&
			 o.v.mv_size >= STORE_HEAD_FIXED && st_get_le64((uint8_t *)o.v.mv_data + 24) > want)
			want = st_get_le64((uint8_t *)o.v.mv_data + 24);
	}
	uint64_t nf = __atomic_load_n(&s->next_fid, __ATOMIC_RELAXED);
	while (want > nf && !__atomic_compare_exchange_n(&s->next_fid, &nf, want, false,
							 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

int st_repl_body_segments(const uint8_t *body, size_t len,
			  int (*fn)(void *arg, const struct st_repl_file *f), void *arg,
			  struct st_err *err)
{
	struct st_cur c;
	uint32_t nops;
	int rc = body_open(body, len, &nops, &c, err);
	struct op o;
	for (uint32_t i = 0; rc == ST_OK && i < nops; i++) {
		if (!body_next(&c, &o))
			return st_seterr(err, ST_ECORRUPT, "a log entry's op %u is malformed", i);
		/* A live file's record (removed = STORE_LIVE) that is not inline. */
		if (o.op == OP_PUT && is_file_key(&o.k) &&
		    get_be64((uint8_t *)o.k.mv_data + TABLE_PREFIX_LEN) == STORE_LIVE &&
		    o.v.mv_size >= 52 && !(st_get_le32((uint8_t *)o.v.mv_data + 44) & 1u)) {
			const uint8_t *v = o.v.mv_data;
			struct st_repl_file f = {key_tid(&o.k), file_key_fid(&o.k), st_get_le64(v + 24),
						 0, st_get_le32(v + 40)};
			struct file_rec r;
			/* A file with a deletion vector shares the segment of the file
			 * it was made from (STORE.md §2.3). */
			if ((st_get_le32(v + 44) & FILE_DV) &&
			    file_rec_decode(f.fid, v, o.v.mv_size, &r) == ST_OK) {
				f.base = r.base_fid;
				file_rec_fini(&r);
			}
			if (fn(arg, &f))
				break;
		}
	}
	return rc;
}

struct files_cb {
	int (*fn)(void *arg, uint64_t tid, uint64_t fid, uint64_t size, uint32_t crc);
	void *arg;
};

static int files_cb(void *arg, const struct st_repl_file *f)
{
	const struct files_cb *c = arg;
	return c->fn(c->arg, f->tid, f->fid, f->size, f->crc);
}

int st_repl_body_files(const uint8_t *body, size_t len,
		       int (*fn)(void *arg, uint64_t tid, uint64_t fid, uint64_t size, uint32_t crc),
		       void *arg, struct st_err *err)
{
	struct files_cb c = {fn, arg};
	return st_repl_body_segments(body, len, fn ? files_cb : NULL, &c, err);
}

int st_repl_body_check(const uint8_t *body, size_t len, uint64_t lsn, struct st_err *err)
{
	struct st_cur c;
	uint32_t nops;
	int rc = body_open(body, len, &nops, &c, err);
	if (rc != ST_OK || body[1] == BODY_NOOP)
		return rc == ST_OK && nops ? st_seterr(err, ST_ECORRUPT, "a no-op entry holds ops")
					   : rc;
	bool upkeep = body[1] == BODY_UPKEEP;
	const uint8_t *rec = NULL;
	uint8_t ck[COMMIT_KEY_LEN];
	bool commit = false;
	struct op o;
	for (uint32_t i = 0; i < nops; i++) {
		if (!body_next(&c, &o))
			return st_seterr(err, ST_ECORRUPT, "LSN %llu: op %u of %u is malformed",
					 (unsigned long long)lsn, i, nops);
		const uint8_t *kp = o.k.mv_data;
		if (o.op == OP_PUT && o.k.mv_size == LSN_KEY_LEN && kp[0] == KEY_LSN) {
			if (rec || get_be64(kp + 1) != lsn || o.v.mv_size != LSN_REC_LEN)
				return st_seterr(err, ST_ECORRUPT,
						 "LSN %llu: its entry holds a wrong LSN record",
						 (unsigned long long)lsn);
			rec = o.v.mv_data;
		} else if (is_rlog(&o.k)) {
			return st_seterr(err, ST_ECORRUPT, "LSN %llu: an op writes a log record",
					 (unsigned long long)lsn);
		}
	}
	if (c.p != c.end)
		return st_seterr(err, ST_ECORRUPT, "LSN %llu: bytes after the last op",
				 (unsigned long long)lsn);
	if (!rec)
		return st_seterr(err, ST_ECORRUPT, "LSN %llu: its entry has no LSN record",
				 (unsigned long long)lsn);
	if (upkeep || st_get_le64(rec + 64) == 0)
		return upkeep && st_get_le64(rec + 64) == 0 && st_get_le64(rec + 72) == 0
			       ? ST_OK
			       : st_seterr(err, ST_ECORRUPT, "LSN %llu: an upkeep entry names a table, "
					   "or a commit names none", (unsigned long long)lsn);
	commit_key(ck, st_get_le64(rec + 64), st_get_le64(rec + 72));
	st_cur_init(&c, body + BODY_HEAD, len - BODY_HEAD - 4);
	for (uint32_t i = 0; i < nops && body_next(&c, &o); i++)
		if (o.op == OP_PUT && o.k.mv_size == COMMIT_KEY_LEN && !memcmp(o.k.mv_data, ck, COMMIT_KEY_LEN))
			commit = true;
	return commit ? ST_OK
		      : st_seterr(err, ST_ECORRUPT, "LSN %llu: the commit its LSN record names is "
				  "not in the entry", (unsigned long long)lsn);
}

/* ---- apply ------------------------------------------------------------- */

struct applied {
	uint64_t lsn;
	uint8_t hash[ST_HASH_LEN];
	uint64_t next_fid;
	struct st_buf *gone;          /* file keys vacuum deleted (FILE_KEY_LEN each) */
};

/* Apply one entry in txn after a->hash (the chain so far). */
static int apply_entry(st_store *s, MDB_txn *txn, const struct st_repl_entry *e,
		       const uint8_t *body, size_t len, struct applied *a, struct st_err *err)
{
	uint8_t want[ST_HASH_LEN];
	int mrc;
	if (body[1] == BODY_NOOP) {
		uint8_t rec[LSN_REC_LEN] = {0}, key[LSN_KEY_LEN];
		crypto_generichash(rec + ST_HASH_LEN, ST_HASH_LEN, NULL, 0, NULL, 0);
		store_chain_step(a->hash, e->lsn, rec, rec);
		if (memcmp(rec, e->hash, ST_HASH_LEN))
			return st_seterr(err, ST_ECORRUPT,
					 "LSN %llu (a no-op) does not chain to LSN %llu: this node's "
					 "log diverges from the leader's",
					 (unsigned long long)e->lsn, (unsigned long long)a->lsn);
		lsn_key(key, e->lsn);
		MDB_val k = {sizeof key, key}, v = {sizeof rec, rec};
		if ((mrc = store_rec_put(s, txn, NULL, &k, &v, MDB_APPEND)) != 0)
			return store_lmdb_err(err, mrc, "applying a no-op entry");
		memcpy(a->hash, rec, ST_HASH_LEN);
		a->lsn = e->lsn;
		return ST_OK;
	}
	struct st_cur c;
	uint32_t nops;
	int rc = body_open(body, len, &nops, &c, err);
	const uint8_t *lsnrec = NULL;
	uint8_t digest[ST_HASH_LEN] = {0};
	bool have_digest = false;
	struct op o;
	uint8_t ck[COMMIT_KEY_LEN] = {0};
	for (uint32_t i = 0; rc == ST_OK && i < nops; i++) {
		if (!body_next(&c, &o))
			return st_seterr(err, ST_ECORRUPT, "LSN %llu: op %u is malformed",
					 (unsigned long long)e->lsn, i);
		const uint8_t *kp = o.k.mv_data;
		if (o.op == OP_DEL) {
			mrc = mdb_del(txn, s->dbi, &o.k, NULL);
			if (mrc == MDB_NOTFOUND)
				mrc = 0;
			/* Vacuum's: the file goes once the batch is durable. */
			if (mrc == 0 && body[1] == BODY_UPKEEP && is_file_key(&o.k) && a->gone)
				st_buf_append(a->gone, kp, FILE_KEY_LEN);
		} else {
			if (o.k.mv_size == LSN_KEY_LEN && kp[0] == KEY_LSN) {
				if (get_be64(kp + 1) != e->lsn || o.v.mv_size != LSN_REC_LEN || lsnrec)
					return st_seterr(err, ST_ECORRUPT,
							 "LSN %llu: its entry holds a wrong LSN record",
							 (unsigned long long)e->lsn);
				lsnrec = o.v.mv_data;
			} else if (o.k.mv_size == COMMIT_KEY_LEN && kp[0] == KEY_TABLE &&
				   kp[9] == REC_COMMIT) {
				crypto_generichash(digest, ST_HASH_LEN, o.v.mv_data, o.v.mv_size, NULL,
						   0);
				memcpy(ck, kp, COMMIT_KEY_LEN);
				have_digest = true;
			} else if (o.k.mv_size == HEAD_KEY_LEN && kp[0] == KEY_TABLE &&
				   kp[9] == REC_HEAD && o.v.mv_size >= STORE_HEAD_FIXED) {
				uint64_t nf = st_get_le64((uint8_t *)o.v.mv_data + 24);
				if (nf > a->next_fid)
					a->next_fid = nf;
				char dir[PATH_MAX];
				snprintf(dir, sizeof dir, "%s/tables/%016llx", s->dir,
					 (unsigned long long)key_tid(&o.k));
				if (mkdir(dir, 0755) != 0 && errno != EEXIST)
					return st_seterr(err, errno, "cannot create '%s': %s", dir,
							 strerror(errno));
			}
			if (o.k.mv_size == 1 + sizeof MEMBERS_NAME - 1 && kp[0] == KEY_META &&
			    !memcmp(kp + 1, MEMBERS_NAME, sizeof MEMBERS_NAME - 1))
				__atomic_store_n(&s->repl.members_changed, 1, __ATOMIC_RELEASE);
			mrc = store_rec_put(s, txn, NULL, &o.k, &o.v, 0);
		}
		if (mrc != 0)
			return store_lmdb_err(err, mrc, "applying a log entry");
	}
	if (rc != ST_OK)
		return rc;
	if (!lsnrec)
		return st_seterr(err, ST_ECORRUPT, "LSN %llu: its entry has no LSN record",
				 (unsigned long long)e->lsn);
	store_chain_step(a->hash, e->lsn, lsnrec, want);
	if (memcmp(want, lsnrec, ST_HASH_LEN) || memcmp(want, e->hash, ST_HASH_LEN))
		return st_seterr(err, ST_ECORRUPT,
				 "LSN %llu does not chain to LSN %llu: this node's log diverges from "
				 "the leader's (or the entry was damaged)",
				 (unsigned long long)e->lsn, (unsigned long long)a->lsn);
	uint8_t want_ck[COMMIT_KEY_LEN];
	commit_key(want_ck, st_get_le64(lsnrec + 64), st_get_le64(lsnrec + 72));
	if (body[1] == BODY_UPKEEP) {
		if (st_get_le64(lsnrec + 64) != 0)
			return st_seterr(err, ST_ECORRUPT, "LSN %llu: an upkeep entry names a table",
					 (unsigned long long)e->lsn);
	} else if (!have_digest || memcmp(ck, want_ck, COMMIT_KEY_LEN) ||
		   memcmp(digest, lsnrec + ST_HASH_LEN, ST_HASH_LEN))
		return st_seterr(err, ST_ECORRUPT,
				 "LSN %llu: the commit in its entry does not match the digest of its "
				 "LSN record", (unsigned long long)e->lsn);
	memcpy(a->hash, want, ST_HASH_LEN);
	a->lsn = e->lsn;
	return ST_OK;
}

int st_repl_apply(st_store *s, uint64_t upto, struct st_err *err)
{
	struct st_buf gone = {0};
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	int rc = ST_OK, mrc;
	pthread_mutex_lock(&s->write_lock);
	if ((rc = store_refuse_failed(s, err)) != ST_OK)
		goto out;
	if (upto <= s->last_lsn)
		goto out;
	store_prealloc(s);
	if ((mrc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0 ||
	    (mrc = mdb_cursor_open(txn, s->dbi, &cur)) != 0) {
		rc = store_lmdb_err(err, mrc, "applying the replicated log");
		goto out;
	}
	struct applied a = {.lsn = s->last_lsn, .next_fid = 0, .gone = &gone};
	memcpy(a.hash, s->last_hash, ST_HASH_LEN);
	uint64_t unit_start = 0; /* first LSN of an atomic unit not yet closed */
	struct applied at_unit = a;
	uint8_t key[RLOG_KEY_LEN];
	rlog_key(key, a.lsn + 1);
	MDB_val k = {sizeof key, key}, v;
	uint64_t unit_epoch = 0;
	struct st_buf body_copy = {0};
	for (mrc = store_cget(s, cur, &k, &v, MDB_SET_RANGE); mrc == 0 && is_rlog(&k);
	     mrc = store_cget(s, cur, &k, &v, MDB_NEXT)) {
		struct st_repl_entry e;
		if (decode_rlog(&k, &v, &e) != ST_OK || e.lsn != a.lsn + 1) {
			rc = st_seterr(err, ST_ECORRUPT, "log record %llu is damaged or out of place",
				       (unsigned long long)get_be64((uint8_t *)k.mv_data + 1));
			break;
		}
		/* A copy: the puts of an entry may move the records this write
		 * transaction already touched, the next log record among them. */
		size_t blen = v.mv_size - RLOG_HEAD;
		body_copy.len = 0;
		st_buf_append(&body_copy, (const uint8_t *)v.mv_data + RLOG_HEAD, blen);
		if (body_copy.oom) {
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			break;
		}
		const uint8_t *body = body_copy.data;
		if (unit_start && e.epoch != unit_epoch) {
			/* A unit cut short, followed by another epoch's entry: only
			 * a log shipped before units went whole (REPLICATION.md
			 * §5.3) has one; what committed of it stays applied. */
			unit_start = 0;
			at_unit = a;
		}
		if (e.lsn > upto)
			break;
		if ((rc = apply_entry(s, txn, &e, body, blen, &a, err)) != ST_OK)
			break;
		if (body[2] & BODY_MORE) {
			if (!unit_start) {
				unit_start = e.lsn;
				unit_epoch = e.epoch;
			}
		} else {
			unit_start = 0;
			at_unit = a;
		}
	}
	st_buf_free(&body_copy);
	if (rc == ST_OK && mrc != 0 && mrc != MDB_NOTFOUND)
		rc = store_lmdb_err(err, mrc, "applying the replicated log");
	if (rc == ST_OK && unit_start) {
		/* The log ends inside an atomic unit: apply none of it yet. */
		mdb_cursor_close(cur);
		cur = NULL;
		mdb_txn_abort(txn);
		txn = NULL;
		if (at_unit.lsn == s->last_lsn)
			goto out;
		/* Redo up to the unit's start. */
		st_buf_free(&gone);
		pthread_mutex_unlock(&s->write_lock);
		return st_repl_apply(s, at_unit.lsn, err);
	}
	if (rc != ST_OK)
		goto out;
	if (a.lsn == s->last_lsn)
		goto out;
	/* The stored commit LSN is never below what is applied. */
	struct st_repl_hs hs;
	if (hs_get(s, txn, &hs) == 0 && hs.commit < a.lsn) {
		hs.commit = a.lsn;
		hs_put(s, txn, &hs);
	}
	mdb_cursor_close(cur);
	cur = NULL;
	/* Durability comes from the log records: the apply may be undone by a
	 * crash (it is redone then), never torn (MDB_NOMETASYNC keeps ACI). */
	if (!s->opts.nosync)
		mdb_env_set_flags(s->env, MDB_NOMETASYNC, 1);
	rc = store_lmdb_commit(s, txn, "applying the replicated log", err);
	if (!s->opts.nosync)
		mdb_env_set_flags(s->env, MDB_NOMETASYNC, 0);
	txn = NULL;
	if (rc != ST_OK)
		goto out;
	memcpy(s->last_hash, a.hash, ST_HASH_LEN);
	__atomic_store_n(&s->last_lsn, a.lsn, __ATOMIC_RELEASE);
	/* The segment files vacuum's entries removed, now that their records
	 * are gone durably; one an open scan may still read stays (an orphan
	 * that recovery removes). */
	for (size_t off = 0; off + FILE_KEY_LEN <= gone.len; off += FILE_KEY_LEN) {
		MDB_val fk = {FILE_KEY_LEN, gone.data + off};
		uint64_t tid = key_tid(&fk), fid = file_key_fid(&fk);
		if (store_pinned_below(s, tid, get_be64(gone.data + off + TABLE_PREFIX_LEN)))
			continue;
		char path[PATH_MAX];
		st_segment_path(s, tid, fid, path, sizeof path);
		unlink(path); /* inline files have none */
	}
	uint64_t nf = __atomic_load_n(&s->next_fid, __ATOMIC_RELAXED);
	while (a.next_fid > nf &&
	       !__atomic_compare_exchange_n(&s->next_fid, &nf, a.next_fid, false, __ATOMIC_RELAXED,
					    __ATOMIC_RELAXED))
		;
out:
	if (cur)
		mdb_cursor_close(cur);
	if (txn)
		mdb_txn_abort(txn);
	st_buf_free(&gone);
	pthread_cond_broadcast(&s->repl.cond);
	pthread_mutex_unlock(&s->write_lock);
	return rc;
}

/* ---- open -------------------------------------------------------------- */

struct fid_list {
	uint64_t tid;
	uint64_t **ids;
	size_t *n, *cap;
	bool oom;
};

static int add_fid(void *arg, uint64_t tid, uint64_t fid, uint64_t size, uint32_t crc)
{
	struct fid_list *l = arg;
	(void)size, (void)crc;
	if (tid != l->tid)
		return 0;
	if (*l->n == *l->cap) {
		size_t cap = *l->cap ? 2 * *l->cap : 64;
		uint64_t *g = realloc(*l->ids, cap * sizeof *g);
		if (!g) {
			l->oom = true;
			return 1;
		}
		*l->ids = g;
		*l->cap = cap;
	}
	(*l->ids)[(*l->n)++] = fid;
	return 0;
}

bool store_repl_unapplied_fids(st_store *s, MDB_txn *txn, uint64_t tid, uint64_t **ids,
			       size_t *n, size_t *cap)
{
	uint64_t last = 0;
	uint8_t hash[ST_HASH_LEN], key[RLOG_KEY_LEN];
	MDB_cursor *cur;
	if (store_chain_last(s, txn, &last, hash, NULL) != ST_OK ||
	    mdb_cursor_open(txn, s->dbi, &cur) != 0)
		return false;
	struct fid_list l = {tid, ids, n, cap, false};
	rlog_key(key, last + 1);
	MDB_val k = {sizeof key, key}, v;
	int mrc;
	for (mrc = store_cget(s, cur, &k, &v, MDB_SET_RANGE); mrc == 0 && is_rlog(&k) && !l.oom;
	     mrc = store_cget(s, cur, &k, &v, MDB_NEXT)) {
		struct st_repl_entry e;
		if (decode_rlog(&k, &v, &e) == ST_OK && e.len)
			st_repl_body_files(e.body, e.len, add_fid, &l, NULL);
	}
	mdb_cursor_close(cur);
	return !l.oom && (mrc == 0 || mrc == MDB_NOTFOUND);
}

int store_repl_check_tail(st_store *s, MDB_txn *txn, uint64_t last, struct st_err *err)
{
	for (uint64_t lsn = s->last_lsn + 1; lsn <= last; lsn++) {
		uint8_t key[LSN_KEY_LEN];
		lsn_key(key, lsn);
		MDB_val k = {sizeof key, key}, v;
		int mrc = store_get(s, txn, &k, &v);
		if (mrc != 0 || v.mv_size < LSN_REC_LEN ||
		    st_get_le64((uint8_t *)v.mv_data + 64) != 0)
			return st_seterr(err, ST_ECORRUPT,
					 "store '%s': the commit log ends at LSN %llu but the tables' "
					 "newest commit is LSN %llu, and LSN %llu is not a no-op: the "
					 "log was changed; run stratad --verify %s",
					 s->dir, (unsigned long long)last,
					 (unsigned long long)s->last_lsn, (unsigned long long)lsn,
					 s->dir);
	}
	s->last_lsn = last;
	return ST_OK;
}
