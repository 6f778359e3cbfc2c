/*
 * daemon/store/commits.c — the commit funnel (STORE.md §4): the one place
 * where a commit gets its version, LSN, commit time, CRC and hash-chain
 * links, and where its commit record, LSN record and file records are put;
 * the durable LMDB commit; and reading commit stamps (time travel).
 *
 * Threading: everything that writes runs under the write lock, inside
 * the caller's LMDB write transaction.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/store/store_int.h"

/* ---- commits ----------------------------------------------------------- */

int store_put_new(st_store *s, MDB_txn *txn, MDB_cursor *cur, MDB_val *k, MDB_val *v)
{
	return store_put(s, txn, cur, k, v, MDB_NOOVERWRITE);
}

int store_commit_apply(st_store *s, MDB_txn *txn, struct table_head *h,
		       const struct store_change *ch, struct st_err *err)
{
	/* A new table's head has version UINT64_MAX, time 0 and checksum 0,
	 * so its first commit is version 0 with prev_checksum 0. */
	uint64_t version = h->version + 1, lsn = s->txn_lsn + 1;
	int64_t now = store_now_us(), t = now > h->time_us ? now : h->time_us + 1;
	int rc = ST_OK, mrc;
	act_stamp(ch->enc, ch->at, version, lsn, t, h->checksum, ch->duration_us);
	uint8_t key[COMMIT_KEY_LEN];
	commit_key(key, h->tid, version);
	MDB_val k = {sizeof key, key}, v = {ch->len, ch->enc};
	if ((mrc = store_put_new(s, txn, ch->commit_cur, &k, &v)) != 0)
		return store_lmdb_err(err, mrc, "writing a commit");
	if ((rc = store_log_append(s, txn, lsn, h->tid, version, ch->enc, ch->len, err)) != ST_OK)
		return rc;
	s->txn_lsn = lsn;
	h->lsn = lsn;
	h->version = version;
	h->time_us = t;
	if (ch->metadata)
		h->meta_version = version;
	h->checksum = act_checksum(h->checksum, ch->enc, ch->len);
	for (uint32_t i = 0; i < ch->nremove && rc == ST_OK; i++)
		rc = store_mark_removed(s, txn, h->tid, ch->removes[i], version, t, h->flags & 1, err);
	for (uint32_t i = 0; i < ch->nadd && rc == ST_OK; i++) {
		const struct store_add *a = &ch->adds[i];
		if (a->enc) {
			rc = store_file_put_encoded(s, txn, ch->file_cur, h->tid, a->fid, a->enc,
						    a->len, version, err);
		} else {
			struct file_rec f = *a->rec;
			f.fid = a->fid;
			f.added = version;
			f.removed = STORE_LIVE;
			f.removed_us = 0;
			rc = store_file_put(s, txn, h->tid, &f, a->inl, a->inl_len, err);
		}
		if (a->fid >= h->next_fid)
			h->next_fid = a->fid + 1;
	}
	return rc;
}

int store_commit_table(st_store *s, MDB_txn *txn, struct table_head *h, struct act_commit *c,
		       const struct store_add *adds, uint32_t nadd, struct act_metadata **meta,
		       struct st_err *err)
{
	struct st_buf b = {0};
	struct act_stamps at;
	uint32_t prev = h->checksum;
	uint64_t rm8[8], *rm = c->nremove <= 8 ? rm8 : malloc(c->nremove * sizeof *rm);
	int rc = ST_OK;
	if (!rm) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < c->nremove; i++)
		rm[i] = c->removes[i].file_id;
	c->table_id = h->tid;
	if ((rc = act_encode(c, &b, &at, err)) != ST_OK)
		goto out;
	struct store_change ch = {.enc = b.data, .len = b.len, .at = &at,
				  .metadata = c->metadata != NULL,
				  .duration_us = c->info.duration_us, .removes = rm,
				  .nremove = c->nremove, .adds = adds, .nadd = nadd};
	if ((rc = store_commit_apply(s, txn, h, &ch, err)) != ST_OK)
		goto out;
	c->version = h->version;
	c->lsn = h->lsn;
	c->time_us = h->time_us;
	c->prev_checksum = prev;
	if (meta && *meta) {
		act_metadata_free(h->meta);
		h->meta = *meta;
		*meta = NULL;
	}
	rc = head_put(s, txn, h, err);
out:
	if (rm != rm8)
		free(rm);
	st_buf_free(&b);
	return rc;
}

bool store_commit_stamp(st_store *s, MDB_txn *txn, uint64_t tid, uint64_t v, uint64_t *lsn,
			int64_t *time_us)
{
	uint8_t key[COMMIT_KEY_LEN];
	commit_key(key, tid, v);
	MDB_val k = {sizeof key, key}, d;
	struct act_commit *c;
	if (store_get(s, txn, &k, &d) != 0 ||
	    act_decode(d.mv_data, d.mv_size, &c, NULL) != ST_OK)
		return false;
	*lsn = c->lsn;
	*time_us = c->time_us;
	act_commit_free(c);
	return true;
}

int store_version_at_time(st_store *s, MDB_txn *txn, uint64_t tid, int64_t t, uint64_t *v,
			  struct st_err *err)
{
	/* Commit times strictly increase with versions (STORE.md §4): a binary
	 * search over the retained commits, no time index to keep per commit. */
	uint8_t key[HEAD_KEY_LEN];
	table_key(key, tid, REC_HEAD);
	MDB_val k = {sizeof key, key}, d;
	uint64_t lsn;
	int64_t when;
	int mrc = store_get(s, txn, &k, &d);
	if (mrc != 0 || d.mv_size < STORE_HEAD_FIXED)
		return mrc ? store_lmdb_err(err, mrc, "time travel")
			   : st_seterr(err, ST_ECORRUPT, "a table head is damaged");
	uint64_t lo = st_get_le64((uint8_t *)d.mv_data + 32), hi = st_get_le64(d.mv_data);
	if (!store_commit_stamp(s, txn, tid, lo, &lsn, &when) || when > t)
		return st_seterr(err, ST_ERANGE,
				 "no version at or before that time: it is before the table's first "
				 "retained commit");
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo + 1) / 2;
		if (!store_commit_stamp(s, txn, tid, mid, &lsn, &when))
			return st_seterr(err, ST_ECORRUPT, "commit %llu is unreadable",
					 (unsigned long long)mid);
		if (when <= t)
			lo = mid;
		else
			hi = mid - 1;
	}
	*v = lo;
	return ST_OK;
}

int store_lmdb_commit(st_store *s, MDB_txn *txn, const char *what, struct st_err *err)
{
	int mrc = mdb_txn_commit(txn);
	if (mrc == MDB_MAP_FULL)
		return store_lmdb_err(err, mrc, what);
	if (mrc != 0)
		return store_fail(s, err, "%s: LMDB commit failed: %s", what, mdb_strerror(mrc));
	return ST_OK;
}

int store_commit_txn(st_store *s, MDB_txn *txn, const char *what, struct st_err *err)
{
	if (s->cap.on) {
		if (s->cap.nmarks)
			return store_repl_commit(s, txn, what, err);
		s->cap.on = false; /* local upkeep (vacuum): not replicated */
	}
	int rc = store_lmdb_commit(s, txn, what, err);
	if (rc != ST_OK)
		return rc;
	memcpy(s->last_hash, s->txn_hash, ST_HASH_LEN);
	__atomic_store_n(&s->last_lsn, s->txn_lsn, __ATOMIC_RELEASE);
	return ST_OK;
}
