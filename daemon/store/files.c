/*
 * daemon/store/files.c — file records (STORE.md §2.3): their encoding, the
 * snapshot of a version read straight from the index, live files, inline
 * segments, removal (a record moves to its removal version's place), and
 * durable segment files.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/store/store_int.h"
#include "format/dv.h"
#include "format/io.h"

/* ---- file records ------------------------------------------------------ */

int file_rec_encode(const struct file_rec *f, struct st_buf *out)
{
	uint8_t *p = st_buf_reserve(out, 52);
	if (!p)
		return ST_ENOMEM;
	st_put_le64(p, f->added);
	st_put_le64(p + 8, f->removed);
	st_put_le64(p + 16, (uint64_t)f->removed_us);
	st_put_le64(p + 24, f->size);
	st_put_le64(p + 32, f->rows);
	st_put_le32(p + 40, f->crc);
	st_put_le32(p + 44, f->flags);
	st_put_le32(p + 48, f->ncols);
	out->len += 52;
	for (uint32_t i = 0; i < f->ncols; i++) {
		st_buf_u32(out, f->field_ids[i]);
		st_buf_u8(out, f->types[i]);
		seg_stats_put(out, &f->stats[i], f->types[i]);
	}
	if (f->flags & FILE_DV) {
		st_buf_u64(out, f->base_fid);
		st_buf_u64(out, f->deleted);
		st_buf_u32(out, f->dv_len);
		st_buf_append(out, f->dv, f->dv_len);
	}
	if (f->flags & FILE_SEG)
		st_buf_u64(out, f->seg);
	return out->oom ? ST_ENOMEM : ST_OK;
}

int file_rec_decode(uint64_t fid, const uint8_t *p, size_t n, struct file_rec *f)
{
	struct st_cur c;
	memset(f, 0, sizeof *f);
	st_cur_init(&c, p, n);
	f->fid = fid;
	f->added = st_cur_u64(&c);
	f->removed = st_cur_u64(&c);
	f->removed_us = (int64_t)st_cur_u64(&c);
	f->size = st_cur_u64(&c);
	f->rows = st_cur_u64(&c);
	f->crc = st_cur_u32(&c);
	f->flags = st_cur_u32(&c);
	f->ncols = st_cur_u32(&c);
	if (c.bad || f->ncols > ST_MAX_COLUMNS)
		return ST_ECORRUPT;
	f->field_ids = calloc(f->ncols + 1, sizeof *f->field_ids);
	f->types = calloc(f->ncols + 1, 1);
	f->stats = calloc(f->ncols + 1, sizeof *f->stats);
	if (!f->field_ids || !f->types || !f->stats) {
		file_rec_fini(f);
		return ST_ENOMEM;
	}
	for (uint32_t i = 0; i < f->ncols; i++) {
		f->field_ids[i] = st_cur_u32(&c);
		f->types[i] = st_cur_u8(&c);
		if (c.bad || !st_type_is_supported(f->types[i]) ||
		    !seg_stats_get(&c, f->types[i], &f->stats[i])) {
			file_rec_fini(f);
			return ST_ECORRUPT;
		}
		f->stats[i].rows = f->rows;
	}
	if (f->flags & FILE_DV) {
		f->base_fid = st_cur_u64(&c);
		f->deleted = st_cur_u64(&c);
		f->dv_len = st_cur_u32(&c);
		const uint8_t *dv = st_cur_take(&c, f->dv_len);
		if (c.bad || f->deleted == 0 || f->deleted > f->rows || f->dv_len < DV_MIN ||
		    dv_cardinality(dv, f->dv_len) != f->deleted) {
			file_rec_fini(f);
			return ST_ECORRUPT;
		}
		if (!(f->dv = malloc(f->dv_len))) {
			file_rec_fini(f);
			return ST_ENOMEM;
		}
		memcpy(f->dv, dv, f->dv_len);
	}
	if (f->flags & FILE_SEG) {
		f->seg = st_cur_u64(&c);
		if (c.bad || f->seg == 0 || f->seg == fid) {
			file_rec_fini(f);
			return ST_ECORRUPT;
		}
	}
	/* An inline file's segment follows the record: exactly `size` bytes. */
	if (st_cur_left(&c) != ((f->flags & 1) ? f->size : 0)) {
		file_rec_fini(f);
		return ST_ECORRUPT;
	}
	return ST_OK;
}

void file_rec_fini(struct file_rec *f)
{
	free(f->field_ids);
	free(f->types);
	free(f->stats);
	free(f->dv);
	f->field_ids = NULL;
	f->types = NULL;
	f->stats = NULL;
	f->dv = NULL;
}

/* The file records of table tid removed at or after `from` and added at
 * or before v; a damaged one is an error, or skipped with skip. */
static int files_range(st_store *s, MDB_txn *txn, uint64_t tid, uint64_t from, uint64_t v,
		       bool skip, struct file_rec **out, uint32_t *n, struct st_err *err)
{
	int rc = ST_OK, mrc;
	MDB_cursor *cur;
	uint8_t key[FILE_KEY_LEN];
	uint32_t cap = 0;
	*out = NULL;
	*n = 0;
	if ((mrc = mdb_cursor_open(txn, s->dbi, &cur)) != 0)
		return store_lmdb_err(err, mrc, "opening a snapshot");
	file_key(key, tid, from, 0);
	MDB_val k = {sizeof key, key}, d;
	for (mrc = store_cget(s, cur, &k, &d, MDB_SET_RANGE);
	     mrc == 0 && k.mv_size == FILE_KEY_LEN && table_range(&k, key);
	     mrc = store_cget(s, cur, &k, &d, MDB_NEXT)) {
		if (d.mv_size >= 8 && st_get_le64(d.mv_data) > v)
			continue; /* added after v */
		if (*n == cap) {
			struct file_rec *f = realloc(*out, (cap = cap ? cap * 2 : 16) * sizeof *f);
			if (!f) {
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
				break;
			}
			*out = f;
		}
		uint64_t fid = file_key_fid(&k);
		if (file_rec_decode(fid, d.mv_data, d.mv_size, &(*out)[*n]) != ST_OK) {
			if (skip)
				continue;
			rc = st_seterr(err, ST_ECORRUPT, "table id %llu: the record of file %llu is damaged",
				       (unsigned long long)tid, (unsigned long long)fid);
			break;
		}
		(*n)++;
	}
	if (rc == ST_OK && mrc != 0 && mrc != MDB_NOTFOUND)
		rc = store_lmdb_err(err, mrc, "opening a snapshot");
	mdb_cursor_close(cur);
	if (rc != ST_OK) {
		file_recs_free(*out, *n);
		*out = NULL;
		*n = 0;
	}
	return rc;
}

int store_files_at(st_store *s, MDB_txn *txn, uint64_t tid, uint64_t v, struct file_rec **out,
		   uint32_t *n, struct st_err *err)
{
	/* Every file live at v was removed after v (or is live): the range
	 * starts at removed = v + 1 and runs to the table's end. */
	return files_range(s, txn, tid, v == STORE_LIVE ? v : v + 1, v, false, out, n, err);
}

int store_files_retained(st_store *s, MDB_txn *txn, uint64_t tid, struct file_rec **out,
			 uint32_t *n, struct st_err *err)
{
	return files_range(s, txn, tid, 0, STORE_LIVE, true, out, n, err);
}

void file_recs_free(struct file_rec *f, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		file_rec_fini(&f[i]);
	free(f);
}

int store_live_files(st_store *s, MDB_txn *txn, uint64_t tid, bool damaged, uint64_t **fids,
		     uint32_t *n, struct st_err *err)
{
	int rc = ST_OK, mrc;
	MDB_cursor *cur;
	uint8_t key[FILE_KEY_LEN];
	uint32_t cap = 0;
	*fids = NULL;
	*n = 0;
	if ((mrc = mdb_cursor_open(txn, s->dbi, &cur)) != 0)
		return store_lmdb_err(err, mrc, "listing live files");
	file_key(key, tid, STORE_LIVE, 0);
	MDB_val k = {sizeof key, key}, v;
	for (mrc = store_cget(s, cur, &k, &v, MDB_SET_RANGE);
	     (mrc == 0 || (damaged && mrc == STORE_EBADREC)) && k.mv_size == FILE_KEY_LEN &&
	     table_range(&k, key);
	     mrc = store_cget(s, cur, &k, &v, MDB_NEXT)) {
		if (*n == cap) {
			uint64_t *f = realloc(*fids, (cap = cap ? cap * 2 : 16) * sizeof *f);
			if (!f) {
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
				break;
			}
			*fids = f;
		}
		(*fids)[(*n)++] = file_key_fid(&k);
	}
	if (rc == ST_OK && mrc != 0 && mrc != MDB_NOTFOUND)
		rc = store_lmdb_err(err, mrc, "listing live files");
	mdb_cursor_close(cur);
	if (rc != ST_OK) {
		free(*fids);
		*fids = NULL;
		*n = 0;
	}
	return rc;
}

int store_file_put_encoded(st_store *s, MDB_txn *txn, MDB_cursor *cur, uint64_t tid,
			   uint64_t fid, uint8_t *rec, size_t len, uint64_t added,
			   struct st_err *err)
{
	uint8_t key[FILE_KEY_LEN];
	st_put_le64(rec, added);
	file_key(key, tid, STORE_LIVE, fid);
	MDB_val k = {sizeof key, key}, v = {len, rec};
	int mrc = store_put_new(s, txn, cur, &k, &v);
	return mrc ? store_lmdb_err(err, mrc, "recording a file") : ST_OK;
}

int store_file_put(st_store *s, MDB_txn *txn, uint64_t tid, const struct file_rec *f,
		   const uint8_t *inl, size_t inl_len, struct st_err *err)
{
	struct st_buf rec = {0};
	int rc = file_rec_encode(f, &rec);
	if (rc == ST_OK && inl)
		st_buf_append(&rec, inl, inl_len);
	if (rc != ST_OK || rec.oom)
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
	else
		rc = store_file_put_encoded(s, txn, NULL, tid, f->fid, rec.data, rec.len, f->added, err);
	st_buf_free(&rec);
	return rc;
}

int store_inline_copy(st_store *s, MDB_txn *txn, uint64_t tid, const struct file_rec *f,
		      uint8_t **out, size_t *len, struct st_err *err)
{
	MDB_txn *own = NULL;
	uint8_t key[FILE_KEY_LEN];
	int mrc = 0;
	*out = NULL;
	*len = 0;
	if (!txn && (mrc = store_read_begin(s, &own)) != 0)
		return store_lmdb_err(err, mrc, "reading an inline segment");
	file_key(key, tid, f->removed, f->fid);
	MDB_val k = {sizeof key, key}, v;
	int rc = ST_OK;
	mrc = store_get(s, txn ? txn : own, &k, &v);
	if (mrc == MDB_NOTFOUND && f->removed == STORE_LIVE) {
		/* Removed since f was read (a reader's pin keeps it from vacuum):
		 * its record moved to the removed range, after its added version. */
		MDB_cursor *cur;
		if ((mrc = mdb_cursor_open(txn ? txn : own, s->dbi, &cur)) == 0) {
			file_key(key, tid, f->added + 1, 0);
			k = (MDB_val){sizeof key, key};
			for (mrc = store_cget(s, cur, &k, &v, MDB_SET_RANGE);
			     mrc == 0 && k.mv_size == FILE_KEY_LEN && table_range(&k, key);
			     mrc = store_cget(s, cur, &k, &v, MDB_NEXT))
				if (file_key_fid(&k) == f->fid)
					break;
			if (mrc == 0 && !(k.mv_size == FILE_KEY_LEN && table_range(&k, key)))
				mrc = MDB_NOTFOUND;
			mdb_cursor_close(cur);
		}
	}
	if (mrc != 0 || v.mv_size < f->size)
		rc = st_seterr(err, ST_ECORRUPT, "table id %llu: inline segment %llu is missing",
			       (unsigned long long)tid, (unsigned long long)f->fid);
	else if (!(*out = malloc(f->size + 1)))
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
	else {
		/* The segment is the record's last `size` bytes (STORE.md §2.3). */
		memcpy(*out, (uint8_t *)v.mv_data + v.mv_size - f->size, f->size);
		*len = f->size;
	}
	store_read_end(s, own);
	return rc;
}

int store_mark_removed(st_store *s, MDB_txn *txn, uint64_t tid, uint64_t fid, uint64_t version,
		       int64_t time_us, bool dropping, struct st_err *err)
{
	uint8_t key[FILE_KEY_LEN];
	file_key(key, tid, STORE_LIVE, fid);
	MDB_val k = {sizeof key, key}, v;
	int mrc = store_get(s, txn, &k, &v);
	if (mrc == STORE_EBADREC && dropping) { /* deleted, not moved: see store_int.h */
		mrc = store_del(s, txn, &k);
		return mrc ? store_lmdb_err(err, mrc, "removing a file") : ST_OK;
	}
	if (mrc == 0 && v.mv_size < 52)
		return st_seterr(err, ST_ECORRUPT, "file record %llu of table id %llu is damaged",
				 (unsigned long long)fid, (unsigned long long)tid);
	if (mrc == 0) {
		/* Copy first: LMDB's pointer is invalid once the txn writes.
		 * The record moves to its removal version's place in the index. */
		uint8_t *old = malloc(v.mv_size);
		if (!old)
			return st_seterr(err, ST_ENOMEM, "out of memory");
		memcpy(old, v.mv_data, v.mv_size);
		st_put_le64(old + 8, version);
		st_put_le64(old + 16, (uint64_t)time_us);
		MDB_val nv = {v.mv_size, old};
		if ((mrc = store_del(s, txn, &k)) == 0) {
			file_key(key, tid, version, fid);
			mrc = store_put(s, txn, NULL, &k, &nv, MDB_NOOVERWRITE);
		}
		free(old);
	}
	return mrc ? store_lmdb_err(err, mrc, "removing a file") : ST_OK;
}

int store_add_from_info(struct act_add *a, const struct seg_file_info *info,
			const struct st_schema *sc, bool data_change, struct st_err *err)
{
	a->size = info->size;
	a->rows = info->rows;
	a->crc = info->crc;
	a->data_change = data_change;
	a->ncols = info->ncols;
	a->stats = info->stats; /* borrowed: info owns them */
	a->field_ids = malloc((info->ncols + 1) * sizeof *a->field_ids);
	if (!a->field_ids)
		return st_seterr(err, ST_ENOMEM, "out of memory");
	for (uint32_t i = 0; i < info->ncols; i++)
		a->field_ids[i] = sc->fields[i].id;
	return ST_OK;
}
