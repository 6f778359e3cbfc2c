/*
 * daemon/store/keyindex.c — the key index of a table with a declared key
 * (STORE.md §4.6): one record per row of every retained segment, keyed by
 * the row's key and the segment id, valued by its position. Entries are
 * built from a new segment before its commit queues and put in the
 * commit's transaction; a lookup keeps the entries whose segment a file
 * live at the version names and whose position its deletion vector
 * keeps; vacuum deletes the entries of the segments it frees.
 */
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/store/write_int.h"
#include "format/dv.h"
#include "format/segment.h"

#define KIX_RAW_MAX 400 /* a longer form-0 body is stored as its digest */

/* One key column's bytes in store_key_bytes form, for type t: their length. */
static size_t part_len(const uint8_t *p, size_t n, int t)
{
	size_t w = t == ST_TYPE_BOOL ? 1 : st_type_is_varlen(t) ? 4 : 8;
	if (n < w)
		return 0;
	if (st_type_is_varlen(t))
		w += st_get_le32(p);
	return n < w ? 0 : w;
}

/* The form-0 body of key kb (kn bytes, types[nk]) into out when it is
 * given (its bytes then at most max), else into the digest st: its length,
 * or 0 when kb is not such a key. */
static size_t kix_body(const uint8_t *kb, size_t kn, const uint8_t *types, uint32_t nk,
		       uint8_t *out, size_t max, crypto_generichash_state *st)
{
	size_t at = 0;
	for (uint32_t i = 0; i < nk; i++) {
		int t = types[i];
		size_t l = part_len(kb, kn, t), sl = 8;
		uint8_t part[8];
		const uint8_t *rest = NULL; /* a string's bytes after its length */
		if (!l)
			return 0;
		if (st_type_is_varlen(t)) {
			st_put_be(part, 4, st_get_le32(kb));
			sl = 4;
			rest = kb + 4;
		} else if (t == ST_TYPE_BOOL) {
			part[0] = kb[0];
			sl = 1;
		} else if (t == ST_TYPE_FLOAT64) {
			uint64_t b = st_get_le64(kb);
			st_put_be(part, 8, (b >> 63) ? ~b : b | (1ull << 63));
		} else {
			st_put_be(part, 8, st_get_le64(kb) ^ (1ull << 63));
		}
		size_t rl = l - (rest ? 4 : l);
		if (out && at + sl + rl > max)
			return at + sl + rl; /* too long for the raw form */
		if (out) {
			memcpy(out + at, part, sl);
			if (rl)
				memcpy(out + at + sl, rest, rl);
		} else {
			crypto_generichash_update(st, part, sl);
			if (rl)
				crypto_generichash_update(st, rest, rl);
		}
		at += sl + rl;
		kb += l;
		kn -= l;
	}
	return at;
}

size_t store_kix_key(uint8_t *out, uint64_t tid, const uint8_t *kb, size_t kn,
		     const uint8_t *types, uint32_t nk)
{
	table_key(out, tid, REC_KEY);
	size_t n = kix_body(kb, kn, types, nk, out + TABLE_PREFIX_LEN + 1, KIX_RAW_MAX, NULL);
	if (!n)
		return 0;
	if (n <= KIX_RAW_MAX) {
		out[TABLE_PREFIX_LEN] = 0;
		return TABLE_PREFIX_LEN + 1 + n;
	}
	crypto_generichash_state st;
	crypto_generichash_init(&st, NULL, 0, 32);
	if (!kix_body(kb, kn, types, nk, NULL, 0, &st))
		return 0;
	out[TABLE_PREFIX_LEN] = 1;
	crypto_generichash_final(&st, out + TABLE_PREFIX_LEN + 1, 32);
	return TABLE_PREFIX_LEN + 1 + 32;
}

/* ---- entries of a new segment ---------------------------------------------------- */

void store_kix_fini(struct store_kix *x)
{
	st_buf_free(&x->b);
	free(x->off);
	memset(x, 0, sizeof *x);
}

/* Entry at offset o: u16le key length, the key (segment id last), u32le row. */
static int kix_cmp(const void *a, const void *b, void *arg)
{
	const uint8_t *base = arg;
	const uint8_t *p = base + *(const size_t *)a, *q = base + *(const size_t *)b;
	size_t lp = st_get_le16(p), lq = st_get_le16(q);
	int c = memcmp(p + 2, q + 2, lp < lq ? lp : lq);
	return c ? c : (lp > lq) - (lp < lq);
}

static int kix_push(struct store_kix *x, const uint8_t *key, size_t klen, uint64_t seg, uint32_t row)
{
	if (x->n == x->cap) {
		uint32_t c = x->cap ? 2 * x->cap : 1024;
		size_t *o = realloc(x->off, c * sizeof *o);
		if (!o)
			return ST_ENOMEM;
		x->off = o;
		x->cap = c;
	}
	size_t at = x->b.len;
	st_buf_u16(&x->b, (uint16_t)(klen + 8));
	st_buf_append(&x->b, key, klen);
	uint8_t sb[8];
	st_put_be(sb, 8, seg);
	st_buf_append(&x->b, sb, 8);
	st_buf_u32(&x->b, row);
	if (x->b.oom)
		return ST_ENOMEM;
	x->off[x->n++] = at;
	if (x->n > 1 && kix_cmp(&x->off[x->n - 2], &x->off[x->n - 1], x->b.data) >= 0)
		x->unsorted = true;
	return ST_OK;
}

int store_kix_segment(const struct act_metadata *m, uint64_t tid, uint64_t seg, const char *path,
		      const uint8_t *mem, size_t len, struct store_kix *x, struct st_err *err)
{
	struct seg_reader *rd = NULL;
	struct st_buf kb = {0};
	int rc = mem ? seg_reader_open_mem(path, mem, len, &rd, err)
		     : seg_reader_open(path, NULL, &rd, err);
	if (rc != ST_OK)
		return rc;
	const struct st_schema *fs = seg_reader_schema(rd);
	bool *want = calloc(fs->nfields + 1, sizeof *want);
	int idx[ST_MAX_COLUMNS];
	uint8_t types[ST_MAX_COLUMNS];
	uint32_t nk = 0;
	if (!want) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < m->nkey && i < ST_MAX_COLUMNS; i++) {
		int f = -1;
		for (uint32_t k = 0; k < fs->nfields; k++)
			if (fs->fields[k].id == m->key[i])
				f = (int)k;
		for (uint32_t k = 0; k < m->schema.nfields; k++)
			if (m->schema.fields[k].id == m->key[i])
				types[nk] = m->schema.fields[k].type;
		if (f < 0) {
			rc = st_seterr(err, ST_ECORRUPT, "segment '%s' has no key column (field id %u)",
				       path, m->key[i]);
			goto out;
		}
		want[f] = true;
		idx[nk++] = f;
	}
	uint64_t row = 0;
	uint8_t key[KIX_KEY_MAX];
	for (uint32_t g = 0; g < seg_reader_row_groups(rd) && rc == ST_OK; g++) {
		struct seg_batch *b;
		if ((rc = seg_reader_read(rd, g, want, &b, err)) != ST_OK)
			break;
		const struct st_vec *cols[ST_MAX_COLUMNS];
		for (uint32_t k = 0; k < fs->nfields; k++)
			cols[k] = &b->cols[k];
		for (uint32_t r = 0; r < b->rows && rc == ST_OK; r++, row++) {
			size_t kl = 0;
			if (!store_key_bytes(&kb, cols, idx, types, nk, r, NULL) ||
			    !(kl = store_kix_key(key, tid, kb.data, kb.len, types, nk))) {
				rc = kb.oom ? st_seterr(err, ST_ENOMEM, "out of memory")
					    : st_seterr(err, ST_ECORRUPT, "segment '%s': row %llu has a "
							"NULL key", path, (unsigned long long)row);
				break;
			}
			if (row > UINT32_MAX || kix_push(x, key, kl, seg, (uint32_t)row) != ST_OK) {
				rc = row > UINT32_MAX
					     ? st_seterr(err, ST_ETOOBIG, "segment '%s' has more rows than "
							 "the key index numbers", path)
					     : st_seterr(err, ST_ENOMEM, "out of memory indexing keys");
				break;
			}
		}
	}
out:
	st_buf_free(&kb);
	free(want);
	seg_reader_close(rd);
	return rc;
}

int store_kix_put(st_store *s, MDB_txn *txn, struct store_kix *x, struct st_err *err)
{
	if (!x->n)
		return ST_OK;
	if (x->unsorted)
		qsort_r(x->off, x->n, sizeof *x->off, kix_cmp, x->b.data);
	MDB_cursor *cur;
	int mrc = mdb_cursor_open(txn, s->dbi, &cur);
	for (uint32_t i = 0; i < x->n && mrc == 0; i++) {
		uint8_t *p = x->b.data + x->off[i];
		MDB_val k = {st_get_le16(p), p + 2}, v = {4, p + 2 + st_get_le16(p)};
		mrc = store_put(s, txn, cur, &k, &v, 0);
	}
	if (mrc == 0 || cur)
		mdb_cursor_close(cur);
	return mrc ? store_lmdb_err(err, mrc, "writing the key index") : ST_OK;
}

/* ---- lookups ----------------------------------------------------------------- */

struct kix_file {
	uint64_t seg;
	uint32_t at;                 /* its index in files */
};

struct store_kix_view {
	uint64_t tid;
	struct file_rec *files;      /* live at the version */
	uint32_t nfiles;
	bool borrowed;               /* files are the caller's */
	uint32_t *slot;              /* file + 1 by segment id, open addressing */
	uint32_t nslot;
	uint32_t **del;              /* per file: its deletion vector's positions, when decoded */
	uint32_t *ndel;
	uint8_t types[ST_MAX_COLUMNS];
	uint32_t nk;
	MDB_cursor *cur;
};

void store_kix_view_free(struct store_kix_view *v)
{
	if (!v)
		return;
	for (uint32_t i = 0; v->del && i < v->nfiles; i++)
		free(v->del[i]);
	free(v->del);
	free(v->ndel);
	free(v->slot);
	if (!v->borrowed)
		file_recs_free(v->files, v->nfiles);
	if (v->cur)
		mdb_cursor_close(v->cur);
	free(v);
}

static uint32_t seg_hash(uint64_t seg)
{
	return (uint32_t)((seg * 0x9e3779b97f4a7c15ull) >> 32);
}

int store_kix_view_open(st_store *s, MDB_txn *txn, const struct act_metadata *m, uint64_t tid,
			uint64_t version, struct store_kix_view **out, struct st_err *err)
{
	return store_kix_view_files_open(s, txn, m, tid, version, NULL, 0, out, err);
}

int store_kix_view_files_open(st_store *s, MDB_txn *txn, const struct act_metadata *m,
			      uint64_t tid, uint64_t version, struct file_rec *files, uint32_t n,
			      struct store_kix_view **out, struct st_err *err)
{
	struct store_kix_view *v = calloc(1, sizeof *v);
	*out = NULL;
	if (!v)
		return st_seterr(err, ST_ENOMEM, "out of memory");
	v->tid = tid;
	v->borrowed = files != NULL;
	v->files = files;
	v->nfiles = n;
	int rc = files ? ST_OK : store_files_at(s, txn, tid, version, &v->files, &v->nfiles, err);
	for (v->nslot = 16; rc == ST_OK && v->nslot < 2 * v->nfiles + 2; v->nslot *= 2)
		;
	if (rc == ST_OK && (!(v->slot = calloc(v->nslot, sizeof *v->slot)) ||
			    !(v->del = calloc(v->nfiles + 1, sizeof *v->del)) ||
			    !(v->ndel = calloc(v->nfiles + 1, sizeof *v->ndel))))
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
	for (uint32_t i = 0; rc == ST_OK && i < v->nfiles; i++) {
		uint32_t h = seg_hash(file_seg(&v->files[i])) & (v->nslot - 1);
		while (v->slot[h])
			h = (h + 1) & (v->nslot - 1);
		v->slot[h] = i + 1;
	}
	for (uint32_t i = 0; i < m->nkey && i < ST_MAX_COLUMNS; i++)
		for (uint32_t k = 0; k < m->schema.nfields; k++)
			if (m->schema.fields[k].id == m->key[i])
				v->types[v->nk++] = m->schema.fields[k].type;
	int mrc = rc == ST_OK ? mdb_cursor_open(txn, s->dbi, &v->cur) : 0;
	if (mrc != 0) {
		v->cur = NULL;
		rc = store_lmdb_err(err, mrc, "reading the key index");
	}
	if (rc != ST_OK) {
		store_kix_view_free(v);
		return rc;
	}
	*out = v;
	return ST_OK;
}

const struct file_rec *store_kix_view_files(const struct store_kix_view *v, uint32_t *n)
{
	*n = v->nfiles;
	return v->files;
}

static int64_t file_of_seg(const struct store_kix_view *v, uint64_t seg)
{
	for (uint32_t h = seg_hash(seg) & (v->nslot - 1); v->slot[h]; h = (h + 1) & (v->nslot - 1))
		if (file_seg(&v->files[v->slot[h] - 1]) == seg)
			return v->slot[h] - 1;
	return -1;
}

/* Whether file i's deletion vector deletes position pos. */
static int deleted(struct store_kix_view *v, uint32_t i, uint32_t pos, bool *out,
		   struct st_err *err)
{
	const struct file_rec *f = &v->files[i];
	*out = false;
	if (!f->dv)
		return ST_OK;
	if (!v->del[i]) {
		int rc = f->rows > UINT32_MAX
				 ? st_seterr(err, ST_ECORRUPT, "a deletion vector on %llu rows",
					     (unsigned long long)f->rows)
				 : dv_decode(f->dv, f->dv_len, (uint32_t)f->rows, &v->del[i], &v->ndel[i],
					     err);
		if (rc != ST_OK)
			return rc;
	}
	uint32_t lo = 0, hi = v->ndel[i];
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (v->del[i][mid] < pos)
			lo = mid + 1;
		else
			hi = mid;
	}
	*out = lo < v->ndel[i] && v->del[i][lo] == pos;
	return ST_OK;
}

int store_kix_find(st_store *s, struct store_kix_view *v, const uint8_t *kb, size_t kn,
		   uint32_t *file, uint32_t *pos, struct st_err *err)
{
	uint8_t key[KIX_KEY_MAX];
	size_t kl = store_kix_key(key, v->tid, kb, kn, v->types, v->nk);
	if (!kl)
		return st_seterr(err, ST_EINVAL, "a key of the wrong shape for the table's key");
	MDB_val k = {kl, key}, d;
	int mrc;
	for (mrc = store_cget(s, v->cur, &k, &d, MDB_SET_RANGE);
	     mrc == 0 && k.mv_size == kl + 8 && !memcmp(k.mv_data, key, kl);
	     mrc = store_cget(s, v->cur, &k, &d, MDB_NEXT)) {
		if (d.mv_size != 4)
			return st_seterr(err, ST_ECORRUPT, "a key index record of %zu bytes", d.mv_size);
		int64_t i = file_of_seg(v, get_be64((const uint8_t *)k.mv_data + kl));
		uint32_t p = st_get_le32(d.mv_data);
		bool gone;
		if (i < 0)
			continue;
		if (p >= v->files[i].rows)
			return st_seterr(err, ST_ECORRUPT, "a key index record names row %u of file %llu, "
					 "which has %llu", p, (unsigned long long)v->files[i].fid,
					 (unsigned long long)v->files[i].rows);
		int rc = deleted(v, (uint32_t)i, p, &gone, err);
		if (rc != ST_OK)
			return rc;
		if (gone)
			continue;
		*file = (uint32_t)i;
		*pos = p;
		return 1;
	}
	if (mrc != 0 && mrc != MDB_NOTFOUND)
		return store_lmdb_err(err, mrc, "reading the key index");
	return 0;
}

/* ---- vacuum and upgrade ------------------------------------------------------------ */

int store_kix_drop_segs(st_store *s, MDB_txn *txn, uint64_t tid, const uint64_t *segs,
			uint32_t n, uint64_t *dropped, struct st_err *err)
{
	*dropped = 0;
	if (!n)
		return ST_OK;
	uint8_t pre[TABLE_PREFIX_LEN];
	table_key(pre, tid, REC_KEY);
	MDB_cursor *cur;
	int mrc = mdb_cursor_open(txn, s->dbi, &cur);
	if (mrc != 0)
		return store_lmdb_err(err, mrc, "vacuuming the key index");
	MDB_val k = {sizeof pre, pre}, d;
	for (mrc = store_cget(s, cur, &k, &d, MDB_SET_RANGE); mrc == 0 && table_range(&k, pre);) {
		uint64_t seg = get_be64((const uint8_t *)k.mv_data + k.mv_size - 8);
		uint32_t lo = 0, hi = n;
		while (lo < hi) { /* segs is sorted */
			uint32_t mid = lo + (hi - lo) / 2;
			if (segs[mid] < seg)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo < n && segs[lo] == seg) {
			store_cap_del(s, &k);
			if ((mrc = mdb_cursor_del(cur, 0)) != 0)
				break;
			(*dropped)++;
		}
		mrc = store_cget(s, cur, &k, &d, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	return mrc != 0 && mrc != MDB_NOTFOUND ? store_lmdb_err(err, mrc, "vacuuming the key index")
					       : ST_OK;
}

int store_kix_index_file(st_store *s, MDB_txn *txn, const struct act_metadata *m, uint64_t tid,
			 const struct file_rec *f, struct st_err *err)
{
	struct store_kix x = {0};
	char path[PATH_MAX];
	uint8_t *inl = NULL;
	size_t len = 0;
	store_seg_path(s, tid, f->fid, path, sizeof path);
	int rc = (f->flags & 1) ? store_inline_copy(s, txn, tid, f, &inl, &len, err) : ST_OK;
	if (rc == ST_OK)
		rc = store_kix_segment(m, tid, file_seg(f), path, inl, len, &x, err);
	if (rc == ST_OK)
		rc = store_kix_put(s, txn, &x, err);
	free(inl);
	store_kix_fini(&x);
	return rc;
}

/* ---- verify ------------------------------------------------------------------ */

struct vseg {
	uint64_t seg;
	uint32_t file;               /* a record naming it */
	uint64_t entries;            /* entries found */
};

static int cmp_vseg(const void *a, const void *b)
{
	uint64_t x = ((const struct vseg *)a)->seg, y = ((const struct vseg *)b)->seg;
	return (x > y) - (x < y);
}

int store_kix_verify(st_store *s, MDB_txn *txn, uint64_t tid, const struct act_metadata *m,
		     void (*problem)(void *arg, const char *line), void *arg, struct st_err *err)
{
	struct file_rec *f = NULL;
	struct vseg *vs = NULL;
	uint32_t nf = 0, nv = 0;
	uint64_t unknown = 0;
	char line[512];
	int rc, mrc;
	MDB_cursor *cur = NULL;
	MDB_val k, d;
	if ((rc = store_files_retained(s, txn, tid, &f, &nf, err)) != ST_OK)
		return rc;
	if ((mrc = mdb_cursor_open(txn, s->dbi, &cur)) != 0) {
		file_recs_free(f, nf);
		return store_lmdb_err(err, mrc, "verifying the key index");
	}
	if (!(vs = calloc(nf + 1, sizeof *vs))) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < nf; i++)
		vs[nv++] = (struct vseg){file_seg(&f[i]), i, 0};
	qsort(vs, nv, sizeof *vs, cmp_vseg);
	uint32_t u = 0;
	for (uint32_t i = 0; i < nv; i++)
		if (!u || vs[i].seg != vs[u - 1].seg)
			vs[u++] = vs[i];
	nv = u;
	/* Every entry names a retained segment; count them per segment. */
	uint8_t pre[TABLE_PREFIX_LEN];
	table_key(pre, tid, REC_KEY);
	k = (MDB_val){sizeof pre, pre};
	for (mrc = store_cget_skip(s, cur, &k, &d, MDB_SET_RANGE, NULL, NULL);
	     mrc == 0 && table_range(&k, pre);
	     mrc = store_cget_skip(s, cur, &k, &d, MDB_NEXT, NULL, NULL)) {
		struct vseg want = {.seg = k.mv_size >= TABLE_PREFIX_LEN + 9
						    ? get_be64((const uint8_t *)k.mv_data + k.mv_size - 8)
						    : 0};
		struct vseg *hit = bsearch(&want, vs, nv, sizeof *vs, cmp_vseg);
		if (hit && d.mv_size == 4)
			hit->entries++;
		else if (unknown++ < 4) {
			snprintf(line, sizeof line, "table '%s': a key index record (%zu-byte key) names "
				 "segment %llu, which no file record has%s", m->name, k.mv_size,
				 (unsigned long long)want.seg, d.mv_size == 4 ? "" : ", and is malformed");
			problem(arg, line);
		}
	}
	if (mrc != 0 && mrc != MDB_NOTFOUND) {
		rc = store_lmdb_err(err, mrc, "verifying the key index");
		goto out;
	}
	/* Each segment: one entry per row, each the row's key and position. */
	for (uint32_t i = 0; i < nv && rc == ST_OK; i++) {
		const struct file_rec *fr = &f[vs[i].file];
		struct store_kix x = {0};
		char path[PATH_MAX];
		uint8_t *inl = NULL;
		size_t len = 0;
		store_seg_path(s, tid, fr->fid, path, sizeof path);
		struct st_err e;
		if (((fr->flags & 1) && store_inline_copy(s, txn, tid, fr, &inl, &len, &e) != ST_OK) ||
		    store_kix_segment(m, tid, vs[i].seg, path, inl, len, &x, &e) != ST_OK) {
			free(inl);
			store_kix_fini(&x);
			continue; /* the segment checks report it */
		}
		uint64_t missing = 0;
		for (uint32_t j = 0; j < x.n; j++) {
			uint8_t *p = x.b.data + x.off[j];
			MDB_val ek = {st_get_le16(p), p + 2}, ev;
			if (store_get(s, txn, &ek, &ev) != 0 || ev.mv_size != 4 ||
			    memcmp(ev.mv_data, p + 2 + ek.mv_size, 4))
				missing++;
		}
		if (missing || vs[i].entries != fr->rows) {
			snprintf(line, sizeof line, "table '%s': the key index of segment %llu (%llu rows) "
				 "has %llu records, %llu of its rows without their record: key "
				 "lookups (writes, merge) see the wrong rows", m->name,
				 (unsigned long long)vs[i].seg, (unsigned long long)fr->rows,
				 (unsigned long long)vs[i].entries, (unsigned long long)missing);
			problem(arg, line);
		}
		free(inl);
		store_kix_fini(&x);
	}
	if (unknown > 4) {
		snprintf(line, sizeof line, "table '%s': %llu key index records name no retained "
			 "segment in all", m->name, (unsigned long long)unknown);
		problem(arg, line);
	}
out:
	mdb_cursor_close(cur);
	file_recs_free(f, nf);
	free(vs);
	return rc;
}
