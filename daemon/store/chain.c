/*
 * daemon/store/chain.c — the store's commit log in LSN order and its
 * BLAKE2b-256 hash chain (STORE.md §2.4, §4).
 *
 * Every commit of every table gets one LSN record, keyed by LSN, in the
 * same LMDB write transaction as the commit itself (store_commit_apply is
 * the one place that does it). The record holds the chain hash after the
 * commit, the commit's digest, its table and version, so that
 *  - the commits of the whole data directory are read in LSN order by one
 *    cursor walk (st_log_read: what replication ships), and
 *  - a changed, dropped or reordered commit of any table breaks the chain
 *    (store_verify_log, st_verify; an anchor kept elsewhere with
 *    st_verify_head).
 * The per-table CRC32C chain of ACTIONS.md stays: it checks each table's
 * records cheaply; the hash chain is the tamper-evident one.
 *
 * Threading: LSN records are written under the write lock (s->txn_hash
 * follows the open write transaction); reads use any transaction.
 */
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/store/store_int.h"

void store_chain_step(const uint8_t prev[ST_HASH_LEN], uint64_t lsn, const uint8_t *rec,
		      uint8_t out[ST_HASH_LEN])
{
	crypto_generichash_state st;
	uint8_t l[8];
	st_put_le64(l, lsn);
	crypto_generichash_init(&st, NULL, 0, ST_HASH_LEN);
	crypto_generichash_update(&st, prev, ST_HASH_LEN);
	crypto_generichash_update(&st, l, sizeof l);
	crypto_generichash_update(&st, rec + ST_HASH_LEN, LSN_REC_LEN - ST_HASH_LEN);
	crypto_generichash_final(&st, out, ST_HASH_LEN);
}

int store_chain_base(st_store *s, MDB_txn *txn, uint64_t *first, uint8_t hash[ST_HASH_LEN],
		     struct st_err *err)
{
	uint8_t kb[16];
	MDB_val k = kind_key(kb, KEY_META, "chain_base", 10), v;
	int mrc = store_get(s, txn, &k, &v);
	*first = 1;
	memset(hash, 0, ST_HASH_LEN);
	if (mrc == MDB_NOTFOUND)
		return ST_OK;
	if (mrc != 0)
		return store_lmdb_err(err, mrc, "reading the chain base");
	if (v.mv_size != 8 + ST_HASH_LEN)
		return st_seterr(err, ST_ECORRUPT, "the chain base record is damaged (%zu bytes)",
				 v.mv_size);
	*first = st_get_le64(v.mv_data);
	memcpy(hash, (uint8_t *)v.mv_data + 8, ST_HASH_LEN);
	return ST_OK;
}

/* Position cur on the newest LSN record; MDB_NOTFOUND when there is none. */
static int last_record(st_store *s, MDB_cursor *cur, MDB_val *k, MDB_val *v)
{
	int mrc = store_cget(s, cur, k, v, MDB_LAST);
	if (mrc == 0 && (k->mv_size != LSN_KEY_LEN || ((uint8_t *)k->mv_data)[0] != KEY_LSN))
		mrc = MDB_NOTFOUND; /* LSN records sort last: none at all */
	return mrc;
}

int store_chain_last(st_store *s, MDB_txn *txn, uint64_t *lsn, uint8_t hash[ST_HASH_LEN],
		     struct st_err *err)
{
	MDB_cursor *cur;
	MDB_val k, v;
	uint64_t first;
	int rc = store_chain_base(s, txn, &first, hash, err), mrc;
	*lsn = first - 1;
	if (rc != ST_OK)
		return rc;
	if ((mrc = mdb_cursor_open(txn, s->dbi, &cur)) != 0)
		return store_lmdb_err(err, mrc, "reading the commit log");
	mrc = last_record(s, cur, &k, &v);
	if (mrc == 0 && v.mv_size < LSN_REC_LEN)
		rc = st_seterr(err, ST_ECORRUPT, "LSN record %llu is damaged (%zu bytes)",
			       (unsigned long long)get_be64((uint8_t *)k.mv_data + 1), v.mv_size);
	else if (mrc == 0) {
		*lsn = get_be64((uint8_t *)k.mv_data + 1);
		memcpy(hash, v.mv_data, ST_HASH_LEN);
	} else if (mrc != MDB_NOTFOUND)
		rc = store_lmdb_err(err, mrc, "reading the commit log");
	mdb_cursor_close(cur);
	return rc;
}

/* The oldest retained version of table tid from its head (fixed part),
 * or UINT64_MAX when the table has no head. */
static uint64_t oldest_of(st_store *s, MDB_txn *txn, uint64_t tid)
{
	uint8_t key[HEAD_KEY_LEN];
	table_key(key, tid, REC_HEAD);
	MDB_val k = {sizeof key, key}, v;
	if (store_get(s, txn, &k, &v) != 0 || v.mv_size < STORE_HEAD_FIXED)
		return UINT64_MAX;
	return st_get_le64((uint8_t *)v.mv_data + 32);
}

struct log_check {
	void (*problem)(void *arg, const char *line); /* NULL: stop at the first */
	void *arg;
	int rc;                      /* first problem as ST_ECORRUPT, when problem is NULL */
	struct st_err *err;
};

static void log_problem(struct log_check *lc, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void log_problem(struct log_check *lc, const char *fmt, ...)
{
	char line[ST_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (lc->problem)
		lc->problem(lc->arg, line);
	else if (lc->rc == ST_OK)
		lc->rc = st_seterr(lc->err, ST_ECORRUPT, "%s", line);
}

/* Check the commit an LSN record names: present (or pruned), with the
 * record's digest. The digest was taken over the bytes the funnel stamped
 * with this LSN and version, so a match proves those too without decoding
 * (the per-table walk of store_verify_chains decodes each commit once). */
static void check_commit(st_store *s, MDB_txn *txn, uint64_t lsn, const uint8_t *rec,
			 struct log_check *lc)
{
	uint64_t tid = st_get_le64(rec + 64), ver = st_get_le64(rec + 72);
	uint8_t key[COMMIT_KEY_LEN], dig[ST_HASH_LEN];
	commit_key(key, tid, ver);
	MDB_val k = {sizeof key, key}, v;
	int mrc = store_get(s, txn, &k, &v);
	if (mrc == MDB_NOTFOUND) {
		if (ver >= oldest_of(s, txn, tid))
			log_problem(lc, "LSN %llu: commit %llu of table id %llu is missing (the log "
				    "names it and it is not pruned)", (unsigned long long)lsn,
				    (unsigned long long)ver, (unsigned long long)tid);
		return;
	}
	if (mrc != 0) {
		log_problem(lc, "LSN %llu: reading commit %llu of table id %llu: %s",
			    (unsigned long long)lsn, (unsigned long long)ver,
			    (unsigned long long)tid,
			    mrc == STORE_EBADREC ? store_rec_last_bad() : mdb_strerror(mrc));
		return;
	}
	crypto_generichash(dig, sizeof dig, v.mv_data, v.mv_size, NULL, 0);
	if (memcmp(dig, rec + ST_HASH_LEN, ST_HASH_LEN) != 0)
		log_problem(lc, "LSN %llu: commit %llu of table id %llu does not match its digest in "
			    "the log: the commit was changed", (unsigned long long)lsn,
			    (unsigned long long)ver, (unsigned long long)tid);
}

/* store_cget for the log walk: with a problem callback, a record that
 * fails its checksum is reported and skipped (the walk then reports the gap
 * it leaves); without, it is the error. */
static int cget_log(st_store *s, MDB_cursor *cur, MDB_val *k, MDB_val *v, MDB_cursor_op op,
		    struct log_check *lc)
{
	return lc->problem ? store_cget_skip(s, cur, k, v, op, lc->problem, lc->arg)
			   : store_cget(s, cur, k, v, op);
}

int store_verify_log(st_store *s, MDB_txn *txn, uint64_t from, const uint8_t *head,
		     uint64_t *found, uint64_t *checked,
		     void (*problem)(void *arg, const char *line), void *arg, struct st_err *err)
{
	struct log_check lc = {problem, arg, ST_OK, err};
	uint8_t prev[ST_HASH_LEN], hash[ST_HASH_LEN], key[LSN_KEY_LEN];
	uint64_t first;
	MDB_cursor *cur = NULL;
	int rc, mrc;
	if (found)
		*found = 0;
	if ((rc = store_chain_base(s, txn, &first, prev, err)) != ST_OK)
		return rc;
	if (head && from <= first && !memcmp(head, prev, ST_HASH_LEN) && found)
		*found = first - 1; /* the base itself (0 for an empty store) */
	if ((mrc = mdb_cursor_open(txn, s->dbi, &cur)) != 0)
		return store_lmdb_err(err, mrc, "verifying the commit log");
	uint64_t expect = first;
	if (from > first) {
		/* Start after a trusted record: its stored hash is the anchor. */
		lsn_key(key, from - 1);
		MDB_val k = {sizeof key, key}, v;
		mrc = store_cget(s, cur, &k, &v, MDB_SET_KEY);
		if (mrc == 0 && v.mv_size >= LSN_REC_LEN) {
			memcpy(prev, v.mv_data, ST_HASH_LEN);
			expect = from;
		}
	}
	lsn_key(key, expect);
	MDB_val k = {sizeof key, key}, v;
	for (mrc = cget_log(s, cur, &k, &v, MDB_SET_RANGE, &lc);
	     mrc == 0 && k.mv_size == LSN_KEY_LEN && ((uint8_t *)k.mv_data)[0] == KEY_LSN;
	     mrc = cget_log(s, cur, &k, &v, MDB_NEXT, &lc)) {
		uint64_t lsn = get_be64((uint8_t *)k.mv_data + 1);
		const uint8_t *rec = v.mv_data;
		if (lsn != expect)
			log_problem(&lc, "LSNs %llu to %llu are missing from the commit log",
				    (unsigned long long)expect, (unsigned long long)lsn - 1);
		if (v.mv_size < LSN_REC_LEN) {
			log_problem(&lc, "LSN record %llu is damaged (%zu bytes)",
				    (unsigned long long)lsn, v.mv_size);
			expect = lsn + 1;
			continue;
		}
		store_chain_step(prev, lsn, rec, hash);
		if (lsn == expect && memcmp(hash, rec, ST_HASH_LEN) != 0)
			log_problem(&lc, "LSN %llu: the chain hash does not follow from LSN %llu's: the "
				    "log was changed", (unsigned long long)lsn,
				    (unsigned long long)lsn - 1);
		check_commit(s, txn, lsn, rec, &lc);
		if (head && found && !memcmp(head, rec, ST_HASH_LEN))
			*found = lsn;
		memcpy(prev, rec, ST_HASH_LEN); /* go on from what is stored */
		expect = lsn + 1;
		if (checked)
			(*checked)++;
		if (!problem && lc.rc != ST_OK)
			break;
	}
	if (mrc != 0 && mrc != MDB_NOTFOUND && lc.rc == ST_OK)
		rc = store_lmdb_err(err, mrc, "verifying the commit log");
	mdb_cursor_close(cur);
	return rc != ST_OK ? rc : lc.rc;
}

int store_log_trim(st_store *s, MDB_txn *txn, struct st_err *err)
{
	uint8_t hash[ST_HASH_LEN], key[LSN_KEY_LEN];
	uint64_t first;
	MDB_cursor *cur = NULL;
	int rc = store_chain_base(s, txn, &first, hash, err), mrc;
	bool moved = false;
	if (rc != ST_OK)
		return rc;
	if ((mrc = mdb_cursor_open(txn, s->dbi, &cur)) != 0)
		return store_lmdb_err(err, mrc, "trimming the commit log");
	lsn_key(key, first);
	MDB_val k = {sizeof key, key}, v;
	for (mrc = store_cget(s, cur, &k, &v, MDB_SET_RANGE);
	     mrc == 0 && k.mv_size == LSN_KEY_LEN && ((uint8_t *)k.mv_data)[0] == KEY_LSN;
	     mrc = store_cget(s, cur, &k, &v, MDB_NEXT)) {
		uint64_t lsn = get_be64((uint8_t *)k.mv_data + 1);
		if (lsn != first || v.mv_size < LSN_REC_LEN)
			break; /* a gap or damage: leave it for verify to report */
		const uint8_t *rec = v.mv_data;
		uint8_t ck[COMMIT_KEY_LEN];
		commit_key(ck, st_get_le64(rec + 64), st_get_le64(rec + 72));
		MDB_val cv = {sizeof ck, ck}, cd;
		if ((mrc = store_get(s, txn, &cv, &cd)) != MDB_NOTFOUND)
			break; /* retained (or unreadable): the log starts here */
		if (lsn >= s->txn_lsn)
			break; /* never the newest record: the chain's head */
		memcpy(hash, rec, ST_HASH_LEN);
		store_cap_del(s, &k);
		if ((mrc = mdb_cursor_del(cur, 0)) != 0)
			break;
		first = lsn + 1;
		moved = true;
	}
	if (mrc != 0 && mrc != MDB_NOTFOUND)
		rc = store_lmdb_err(err, mrc, "trimming the commit log");
	mdb_cursor_close(cur);
	if (rc == ST_OK && moved) {
		uint8_t kb[16], b[8 + ST_HASH_LEN];
		st_put_le64(b, first);
		memcpy(b + 8, hash, ST_HASH_LEN);
		MDB_val bk = kind_key(kb, KEY_META, "chain_base", 10), bv = {sizeof b, b};
		if ((mrc = store_put(s, txn, NULL, &bk, &bv, 0)) != 0)
			rc = store_lmdb_err(err, mrc, "moving the chain base");
	}
	return rc;
}

int store_log_append(st_store *s, MDB_txn *txn, uint64_t lsn, uint64_t tid, uint64_t version,
		     const uint8_t *enc, size_t len, struct st_err *err)
{
	uint8_t rec[LSN_REC_LEN], key[LSN_KEY_LEN];
	crypto_generichash(rec + ST_HASH_LEN, ST_HASH_LEN, enc, len, NULL, 0);
	st_put_le64(rec + 64, tid);
	st_put_le64(rec + 72, version);
	store_chain_step(s->txn_hash, lsn, rec, rec);
	lsn_key(key, lsn);
	MDB_val k = {sizeof key, key}, v = {sizeof rec, rec};
	int mrc = store_put(s, txn, NULL, &k, &v, MDB_APPEND);
	if (mrc != 0)
		return store_lmdb_err(err, mrc, "appending to the commit log");
	memcpy(s->txn_hash, rec, ST_HASH_LEN);
	return ST_OK;
}

/* ---- public ------------------------------------------------------------ */

int st_chain_head(st_store *s, struct st_chain_head *out, struct st_err *err)
{
	MDB_txn *txn = NULL;
	int mrc = store_read_begin(s, &txn), rc;
	memset(out, 0, sizeof *out);
	if (mrc != 0)
		return store_lmdb_err(err, mrc, "reading the chain head");
	rc = store_chain_last(s, txn, &out->lsn, out->hash, err);
	store_read_end(s, txn);
	return rc;
}

int st_chain_hash(st_store *s, uint64_t lsn, uint8_t out[ST_HASH_LEN], struct st_err *err)
{
	MDB_txn *txn = NULL;
	uint8_t key[LSN_KEY_LEN];
	int mrc = store_read_begin(s, &txn), rc = ST_OK;
	if (mrc != 0)
		return store_lmdb_err(err, mrc, "reading the commit log");
	lsn_key(key, lsn);
	MDB_val k = {sizeof key, key}, v;
	mrc = store_get(s, txn, &k, &v);
	if (mrc == MDB_NOTFOUND)
		rc = st_seterr(err, ST_ENOTFOUND, "LSN %llu is not in the commit log",
			       (unsigned long long)lsn);
	else if (mrc != 0)
		rc = store_lmdb_err(err, mrc, "reading the commit log");
	else if (v.mv_size < LSN_REC_LEN)
		rc = st_seterr(err, ST_ECORRUPT, "LSN record %llu is damaged (%zu bytes)",
			       (unsigned long long)lsn, v.mv_size);
	else
		memcpy(out, v.mv_data, ST_HASH_LEN);
	store_read_end(s, txn);
	return rc;
}

void st_log_entries_free(struct st_log_entry *e, uint32_t n)
{
	for (uint32_t i = 0; e && i < n; i++)
		free(e[i].commit);
	free(e);
}

int st_log_read(st_store *s, uint64_t from, uint32_t max, struct st_log_entry **out, uint32_t *n,
		struct st_err *err)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	struct st_log_entry *e = NULL;
	uint32_t cnt = 0, cap = 0;
	uint8_t hash[ST_HASH_LEN], key[LSN_KEY_LEN];
	uint64_t first;
	int rc = ST_OK, mrc;
	*out = NULL;
	*n = 0;
	if ((mrc = store_read_begin(s, &txn)) != 0)
		return store_lmdb_err(err, mrc, "reading the commit log");
	if ((rc = store_chain_base(s, txn, &first, hash, err)) != ST_OK)
		goto out;
	if ((from ? from : 1) < first) {
		rc = st_seterr(err, ST_ERANGE,
			       "LSN %llu is no longer in the commit log: it starts at LSN %llu "
			       "(older commits were pruned by vacuum)",
			       (unsigned long long)from, (unsigned long long)first);
		goto out;
	}
	if ((mrc = mdb_cursor_open(txn, s->dbi, &cur)) != 0) {
		rc = store_lmdb_err(err, mrc, "reading the commit log");
		goto out;
	}
	lsn_key(key, from);
	MDB_val k = {sizeof key, key}, v;
	for (mrc = store_cget(s, cur, &k, &v, MDB_SET_RANGE);
	     mrc == 0 && k.mv_size == LSN_KEY_LEN && ((uint8_t *)k.mv_data)[0] == KEY_LSN &&
	     (!max || cnt < max);
	     mrc = store_cget(s, cur, &k, &v, MDB_NEXT)) {
		uint64_t lsn = get_be64((uint8_t *)k.mv_data + 1);
		if (v.mv_size < LSN_REC_LEN) {
			rc = st_seterr(err, ST_ECORRUPT, "LSN record %llu is damaged (%zu bytes)",
				       (unsigned long long)lsn, v.mv_size);
			goto out;
		}
		if (cnt == cap) {
			struct st_log_entry *ne = realloc(e, (cap = cap ? 2 * cap : 16) * sizeof *e);
			if (!ne) {
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
				goto out;
			}
			e = ne;
		}
		struct st_log_entry *x = &e[cnt++];
		const uint8_t *rec = v.mv_data;
		*x = (struct st_log_entry){.lsn = lsn, .table_id = st_get_le64(rec + 64),
					   .version = st_get_le64(rec + 72)};
		memcpy(x->hash, rec, ST_HASH_LEN);
		memcpy(x->digest, rec + ST_HASH_LEN, ST_HASH_LEN);
		uint8_t ck[COMMIT_KEY_LEN];
		commit_key(ck, x->table_id, x->version);
		MDB_val cv = {sizeof ck, ck}, cd;
		int grc = store_get(s, txn, &cv, &cd);
		if (grc == 0) {
			if (!(x->commit = malloc(cd.mv_size ? cd.mv_size : 1))) {
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
				goto out;
			}
			memcpy(x->commit, cd.mv_data, cd.mv_size);
			x->len = cd.mv_size;
		} else if (grc != MDB_NOTFOUND) {
			rc = store_lmdb_err(err, grc, "reading the commit log");
			goto out;
		}
	}
	if (mrc != 0 && mrc != MDB_NOTFOUND)
		rc = store_lmdb_err(err, mrc, "reading the commit log");
out:
	if (cur)
		mdb_cursor_close(cur);
	store_read_end(s, txn);
	if (rc == ST_OK) {
		*out = e;
		*n = cnt;
	} else {
		st_log_entries_free(e, cnt);
	}
	return rc;
}
