/*
 * daemon/store/head.c — table heads (STORE.md §2.2): read by tid or by
 * name, stored, and the small cache of decoded metadata that concurrent
 * writes share (STORE.md §4, "Writes share decoded metadata").
 *
 * Threading: heads are read in any transaction and stored in the write
 * transaction; the metadata cache is guarded by meta_lock and its entries
 * are reference counted.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/store/store_int.h"

/* ---- table heads ------------------------------------------------------- */

void head_fini(struct table_head *h)
{
	act_metadata_free(h->meta);
	h->meta = NULL;
}

/* Fill h from table tid's head record; the metadata is decoded only when
 * with_meta (otherwise h->meta stays NULL and head_put keeps the stored one).
 * *raw, when given, receives the record (valid while txn is). */
static int head_read(st_store *s, MDB_txn *txn, uint64_t tid, struct table_head *h,
		     bool with_meta, MDB_val *raw, struct st_err *err)
{
	uint8_t key[HEAD_KEY_LEN];
	table_key(key, tid, REC_HEAD);
	MDB_val k = {sizeof key, key}, v;
	memset(h, 0, sizeof *h);
	int mrc = store_get(s, txn, &k, &v);
	if (mrc == MDB_NOTFOUND)
		return st_seterr(err, ST_ENOTFOUND, "table id %llu does not exist",
				 (unsigned long long)tid);
	if (mrc != 0)
		return store_lmdb_err(err, mrc, "reading a table head");
	if (v.mv_size < STORE_HEAD_FIXED)
		return st_seterr(err, ST_ECORRUPT, "table id %llu: head record is %zu bytes",
				 (unsigned long long)tid, v.mv_size);
	const uint8_t *p = v.mv_data;
	h->tid = tid;
	h->version = st_get_le64(p);
	h->time_us = (int64_t)st_get_le64(p + 8);
	h->checksum = st_get_le32(p + 16);
	h->flags = st_get_le32(p + 20);
	h->next_fid = st_get_le64(p + 24);
	h->oldest = st_get_le64(p + 32);
	h->meta_version = st_get_le64(p + 40);
	h->lsn = st_get_le64(p + 48);
	if (h->oldest > h->version)
		return st_seterr(err, ST_ECORRUPT, "table id %llu: its head says versions %llu on are "
				 "retained but its version is %llu: the head is damaged",
				 (unsigned long long)tid, (unsigned long long)h->oldest,
				 (unsigned long long)h->version);
	if (raw)
		*raw = v;
	if (!with_meta)
		return ST_OK;
	return act_metadata_decode(p + STORE_HEAD_FIXED, v.mv_size - STORE_HEAD_FIXED, &h->meta,
				   err);
}

int head_get_tid(st_store *s, MDB_txn *txn, uint64_t tid, struct table_head *h,
		 struct st_err *err)
{
	return head_read(s, txn, tid, h, true, NULL, err);
}

/* head_lookup's raw for a lookup that takes a damaged table too. */
static MDB_val any_ok;

static int head_lookup(st_store *s, MDB_txn *txn, const char *name, struct table_head *h,
		       bool with_meta, MDB_val *raw, struct st_err *err)
{
	uint8_t kb[1 + STORE_NAME_MAX];
	size_t len = strlen(name);
	memset(h, 0, sizeof *h);
	if (len > STORE_NAME_MAX)
		return st_seterr(err, ST_ENOTFOUND, "table '%s' does not exist", name);
	MDB_val k = kind_key(kb, KEY_NAME, name, len), v;
	int mrc = store_get(s, txn, &k, &v);
	if (mrc == MDB_NOTFOUND)
		return st_seterr(err, ST_ENOTFOUND, "table '%s' does not exist", name);
	if (mrc != 0)
		return store_lmdb_err(err, mrc, name);
	if (v.mv_size != 8)
		return st_seterr(err, ST_ECORRUPT, "table '%s': name record is %zu bytes", name,
				 v.mv_size);
	uint64_t tid = get_be64(v.mv_data);
	int rc = raw != &any_ok ? store_damaged(s, tid, err) : ST_OK;
	return rc != ST_OK ? rc : head_read(s, txn, tid, h, with_meta, raw == &any_ok ? NULL : raw, err);
}

int head_get(st_store *s, MDB_txn *txn, const char *name, struct table_head *h,
	     struct st_err *err)
{
	return head_lookup(s, txn, name, h, true, NULL, err);
}

int head_get_damaged(st_store *s, MDB_txn *txn, const char *name, struct table_head *h,
		     struct st_err *err)
{
	return head_lookup(s, txn, name, h, true, &any_ok, err);
}

int head_get_fixed(st_store *s, MDB_txn *txn, const char *name, struct table_head *h,
		   struct st_err *err)
{
	return head_lookup(s, txn, name, h, false, NULL, err);
}

static bool meta_named(const struct meta_ref *r, const char *name)
{
	return r->meta->name && !strcmp(r->meta->name, name);
}

/* The cached metadata of table tid at meta_version mv (or, tid 0, of the
 * table named name), with one more holder, or NULL. meta_lock held. */
static struct meta_ref *meta_cached(st_store *s, uint64_t tid, uint64_t mv, const char *name)
{
	for (uint32_t i = 0; i < META_CACHE_SLOTS; i++) {
		struct meta_ref *r = s->meta_cache[i];
		if (r && (tid ? r->tid == tid && r->meta_version == mv : meta_named(r, name))) {
			__atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
			return r;
		}
	}
	return NULL;
}

void store_meta_cache_clear(st_store *s)
{
	struct meta_ref *drop[META_CACHE_SLOTS];
	pthread_mutex_lock(&s->meta_lock);
	for (uint32_t i = 0; i < META_CACHE_SLOTS; i++) {
		drop[i] = s->meta_cache[i];
		s->meta_cache[i] = NULL;
	}
	pthread_mutex_unlock(&s->meta_lock);
	for (uint32_t i = 0; i < META_CACHE_SLOTS; i++)
		store_meta_put(drop[i]);
}

int store_meta_get(st_store *s, MDB_txn *txn, const char *name, struct table_head *h,
		   struct meta_ref **ref, struct st_err *err)
{
	MDB_val raw;
	int rc;
	/* (tid, meta_version) names one metadata for good: every change of it
	 * is a commit, and committed versions are never reused. So when the
	 * cache holds a metadata with this name, and its table's head in txn
	 * is live at the same metadata version, the name is that table's now
	 * (live names are unique): no lookup of the name record. */
	pthread_mutex_lock(&s->meta_lock);
	struct meta_ref *r = meta_cached(s, 0, 0, name);
	pthread_mutex_unlock(&s->meta_lock);
	if (r) {
		rc = head_read(s, txn, r->tid, h, false, NULL, NULL);
		if (rc == ST_OK && !(h->flags & 1) && h->meta_version == r->meta_version) {
			*ref = r;
			return ST_OK;
		}
		store_meta_put(r);
	}
	*ref = NULL;
	if ((rc = head_lookup(s, txn, name, h, false, &raw, err)) != ST_OK)
		return rc;
	pthread_mutex_lock(&s->meta_lock);
	*ref = meta_cached(s, h->tid, h->meta_version, "");
	pthread_mutex_unlock(&s->meta_lock);
	if (*ref)
		return ST_OK;
	if (!(r = calloc(1, sizeof *r)))
		return st_seterr(err, ST_ENOMEM, "out of memory");
	if ((rc = act_metadata_decode((const uint8_t *)raw.mv_data + STORE_HEAD_FIXED,
				      raw.mv_size - STORE_HEAD_FIXED, &r->meta, err)) != ST_OK) {
		free(r);
		return rc;
	}
	r->tid = h->tid;
	r->meta_version = h->meta_version;
	struct meta_ref *drop[META_CACHE_SLOTS + 1];
	uint32_t ndrop = 0;
	pthread_mutex_lock(&s->meta_lock);
	if ((*ref = meta_cached(s, h->tid, h->meta_version, "")) != NULL) {
		r->refs = 1; /* another write decoded it meanwhile: use that one */
		drop[ndrop++] = r;
	} else {
		/* One entry per table and per name: older ones go. */
		uint32_t slot = s->meta_next;
		for (uint32_t i = 0; i < META_CACHE_SLOTS; i++) {
			struct meta_ref *o = s->meta_cache[i];
			if (o && (o->tid == r->tid || (r->meta->name && meta_named(o, r->meta->name)))) {
				drop[ndrop++] = o;
				s->meta_cache[i] = NULL;
				slot = i;
			}
		}
		if (slot == s->meta_next) {
			if (s->meta_cache[slot])
				drop[ndrop++] = s->meta_cache[slot];
			s->meta_next = (s->meta_next + 1) % META_CACHE_SLOTS;
		}
		r->refs = 2; /* the caller's and the cache's */
		s->meta_cache[slot] = r;
		*ref = r;
	}
	pthread_mutex_unlock(&s->meta_lock);
	for (uint32_t i = 0; i < ndrop; i++)
		store_meta_put(drop[i]);
	return ST_OK;
}

void store_meta_put(struct meta_ref *ref)
{
	if (ref && __atomic_sub_fetch(&ref->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		act_metadata_free(ref->meta);
		free(ref);
	}
}

int head_put(st_store *s, MDB_txn *txn, const struct table_head *h, struct st_err *err)
{
	struct st_buf b = {0};
	int rc = ST_OK;
	uint8_t *p = st_buf_reserve(&b, STORE_HEAD_FIXED);
	if (p) {
		st_put_le64(p, h->version);
		st_put_le64(p + 8, (uint64_t)h->time_us);
		st_put_le32(p + 16, h->checksum);
		st_put_le32(p + 20, h->flags);
		st_put_le64(p + 24, h->next_fid);
		st_put_le64(p + 32, h->oldest);
		st_put_le64(p + 40, h->meta_version);
		st_put_le64(p + 48, h->lsn);
		b.len = STORE_HEAD_FIXED;
	}
	uint8_t key[HEAD_KEY_LEN];
	table_key(key, h->tid, REC_HEAD);
	MDB_val k = {sizeof key, key}, v;
	if (h->meta) {
		if ((rc = act_metadata_encode(h->meta, &b, err)) != ST_OK)
			goto out;
	} else {
		/* Metadata unchanged and not decoded: keep the stored bytes. */
		int grc = store_get(s, txn, &k, &v);
		if (grc != 0 || v.mv_size < STORE_HEAD_FIXED) {
			rc = grc ? store_lmdb_err(err, grc, "updating a table head")
				 : st_seterr(err, ST_ECORRUPT, "table id %llu: damaged head",
					     (unsigned long long)h->tid);
			goto out;
		}
		st_buf_append(&b, (uint8_t *)v.mv_data + STORE_HEAD_FIXED,
			      v.mv_size - STORE_HEAD_FIXED);
	}
	if (b.oom) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	v = (MDB_val){b.len, b.data};
	int mrc = store_put(s, txn, NULL, &k, &v, 0);
	if (mrc != 0)
		rc = store_lmdb_err(err, mrc, "writing a table head");
out:
	st_buf_free(&b);
	return rc;
}

int store_meta_copy(const struct act_metadata *m, struct act_metadata **out, struct st_err *err)
{
	struct st_buf b = {0};
	int rc = act_metadata_encode(m, &b, err);
	if (rc == ST_OK)
		rc = act_metadata_decode(b.data, b.len, out, err);
	st_buf_free(&b);
	return rc;
}
