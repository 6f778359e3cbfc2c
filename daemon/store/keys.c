/*
 * daemon/store/keys.c — declared keys (STORE.md §4.6): the key values of a
 * write, held in a hash set as it is staged (a key repeated inside the
 * write is refused naming both rows), then looked up in the rows the table
 * already holds in the write's key range (files whose statistics exclude
 * the range are not read), and the range made the write's conflict
 * predicate so that two concurrent writes cannot both add one key. A few
 * keys into many rows are looked up in the key index (keyindex.c), more
 * keys by reading the files the range touches.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/store/write_int.h"
#include "format/expr.h"

#define KEYS_MAX 32

struct store_keys {
	uint32_t n;                  /* key columns */
	int col[KEYS_MAX];           /* their schema indexes */
	uint8_t type[KEYS_MAX];      /* and types */
	struct st_buf bytes;         /* the keys, back to back */
	struct st_buf tmp;           /* a key being built */
	uint32_t count, cap;         /* keys held */
	uint64_t *hash, *row;        /* per key: its hash, its row in the write */
	uint32_t *off, *len;         /* and its bytes */
	uint32_t *slot;              /* key + 1, or 0 */
	uint32_t nslot;              /* a power of two */
	bool numeric, any;           /* the first column's range: lo..hi */
	double lo, hi;
};

void store_keys_free(struct store_keys *k)
{
	if (!k)
		return;
	st_buf_free(&k->bytes);
	st_buf_free(&k->tmp);
	free(k->hash);
	free(k->row);
	free(k->off);
	free(k->len);
	free(k->slot);
	free(k);
}

int store_keys_new(const struct act_metadata *m, struct store_keys **out, struct st_err *err)
{
	*out = NULL;
	if (!m->nkey)
		return ST_OK;
	struct store_keys *k = calloc(1, sizeof *k);
	if (!k)
		return st_seterr(err, ST_ENOMEM, "out of memory");
	for (uint32_t i = 0; i < m->nkey && i < KEYS_MAX; i++)
		for (uint32_t f = 0; f < m->schema.nfields; f++)
			if (m->schema.fields[f].id == m->key[i]) {
				k->col[k->n] = (int)f;
				k->type[k->n++] = m->schema.fields[f].type;
			}
	int t = k->n ? k->type[0] : 0;
	k->numeric = k->n && !st_type_is_varlen(t) && t != ST_TYPE_BOOL;
	*out = k;
	return ST_OK;
}

bool store_key_bytes(struct st_buf *out, const struct st_vec *const *cols, const int *idx,
		     const uint8_t *types, uint32_t n, uint32_t r, double *first)
{
	out->len = 0;
	for (uint32_t i = 0; i < n; i++) {
		const struct st_vec *c = cols[idx[i]];
		if (!c || !st_vec_is_valid(c, r))
			return false;
		if (st_type_is_varlen(c->type)) {
			const uint8_t *p;
			uint32_t len;
			st_vec_str(c, r, &p, &len);
			st_buf_u32(out, len);
			st_buf_append(out, p, len);
			continue;
		}
		double d;
		if (c->type == ST_TYPE_FLOAT64) {
			d = ((const double *)c->data)[r];
			if (d == 0)
				d = 0; /* -0 and 0 are one key */
			if (types[i] == ST_TYPE_FLOAT64) {
				st_buf_append(out, &d, 8);
			} else {
				int64_t x = (int64_t)d;
				st_buf_u64(out, (uint64_t)x);
			}
		} else if (c->type == ST_TYPE_BOOL) {
			d = ((const uint8_t *)c->data)[r] != 0;
			st_buf_u8(out, (uint8_t)d);
		} else {
			int64_t x = st_type_width(c->type) == 4 ? ((const int32_t *)c->data)[r]
							       : ((const int64_t *)c->data)[r];
			if (c->type == ST_TYPE_DATE && types[i] == ST_TYPE_TIMESTAMP)
				x *= 86400000000LL;
			d = (double)x;
			if (types[i] == ST_TYPE_FLOAT64)
				st_buf_append(out, &d, 8);
			else
				st_buf_u64(out, (uint64_t)x);
		}
		if (i == 0 && first)
			*first = d;
	}
	return !out->oom;
}

void store_key_text(const struct st_vec *const *cols, const int *idx, uint32_t n, uint32_t r,
		    char *buf, size_t len)
{
	size_t at = 0;
	buf[0] = '\0';
	for (uint32_t i = 0; i < n && at + 1 < len; i++) {
		const struct st_vec *c = cols[idx[i]];
		const char *sep = i ? ", " : "";
		if (st_type_is_varlen(c->type)) {
			const uint8_t *p;
			uint32_t l;
			st_vec_str(c, r, &p, &l);
			at += (size_t)snprintf(buf + at, len - at, "%s'%.*s'", sep, (int)(l > 64 ? 64 : l),
					       (const char *)p);
		} else if (c->type == ST_TYPE_FLOAT64) {
			at += (size_t)snprintf(buf + at, len - at, "%s%.17g", sep, ((const double *)c->data)[r]);
		} else {
			int64_t x = c->type == ST_TYPE_BOOL ? ((const uint8_t *)c->data)[r]
				  : st_type_width(c->type) == 4 ? ((const int32_t *)c->data)[r]
								 : ((const int64_t *)c->data)[r];
			at += (size_t)snprintf(buf + at, len - at, "%s%lld", sep, (long long)x);
		}
	}
}

static bool key_of(struct store_keys *k, const struct st_vec *const *cols, uint32_t r,
		   double *first)
{
	return store_key_bytes(&k->tmp, cols, k->col, k->type, k->n, r, first);
}

uint64_t store_key_hash(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h ^ (h >> 29);
}

/* The held key equal to k->tmp, or -1. */
static int64_t find(const struct store_keys *k, uint64_t h, uint32_t *at)
{
	if (!k->nslot)
		return -1;
	uint32_t s = (uint32_t)h & (k->nslot - 1);
	for (; k->slot[s]; s = (s + 1) & (k->nslot - 1)) {
		uint32_t i = k->slot[s] - 1;
		if (k->hash[i] == h && k->len[i] == k->tmp.len &&
		    !memcmp(k->bytes.data + k->off[i], k->tmp.data, k->len[i]))
			return i;
	}
	*at = s;
	return -1;
}

static bool grow(struct store_keys *k)
{
	uint32_t cap = k->cap ? 2 * k->cap : 1024;
	uint64_t *h = realloc(k->hash, cap * sizeof *h);
	if (h)
		k->hash = h;
	uint64_t *r = h ? realloc(k->row, cap * sizeof *r) : NULL;
	if (r)
		k->row = r;
	uint32_t *o = r ? realloc(k->off, cap * sizeof *o) : NULL;
	if (o)
		k->off = o;
	uint32_t *l = o ? realloc(k->len, cap * sizeof *l) : NULL;
	if (l)
		k->len = l;
	uint32_t ns = 2 * cap;
	uint32_t *sl = l ? calloc(ns, sizeof *sl) : NULL;
	if (!sl)
		return false;
	for (uint32_t i = 0; i < k->count; i++) {
		uint32_t s = (uint32_t)k->hash[i] & (ns - 1);
		while (sl[s])
			s = (s + 1) & (ns - 1);
		sl[s] = i + 1;
	}
	free(k->slot);
	k->slot = sl;
	k->nslot = ns;
	k->cap = cap;
	return true;
}

static void key_text(const struct store_keys *k, const struct st_vec *const *cols, uint32_t r,
		     char *buf, size_t len)
{
	store_key_text(cols, k->col, k->n, r, buf, len);
}

int store_keys_add_row(struct store_keys *k, const char *table, const struct st_vec *const *cols,
		       uint32_t r, uint64_t row, struct st_err *err)
{
	double first = 0;
	if (!key_of(k, cols, r, &first))
		return k->tmp.oom ? st_seterr(err, ST_ENOMEM, "out of memory")
				  : st_seterr(err, ST_ESCHEMA, "table '%s': row %llu of the write has no "
					      "value for a key column", table, (unsigned long long)row);
	if (2 * (k->count + 1) > k->nslot && !grow(k))
		return st_seterr(err, ST_ENOMEM, "out of memory holding the write's keys");
	uint64_t h = store_key_hash(k->tmp.data, k->tmp.len);
	uint32_t at = 0;
	int64_t e = find(k, h, &at);
	if (e >= 0) {
		char kt[256];
		key_text(k, cols, r, kt, sizeof kt);
		return st_seterr(err, ST_ESCHEMA, "table '%s': key (%s) appears twice in the write: "
				 "rows %llu and %llu", table, kt, (unsigned long long)k->row[e],
				 (unsigned long long)row);
	}
	uint32_t i = k->count++;
	k->hash[i] = h;
	k->row[i] = row;
	k->off[i] = (uint32_t)k->bytes.len;
	k->len[i] = (uint32_t)k->tmp.len;
	st_buf_append(&k->bytes, k->tmp.data, k->tmp.len);
	if (k->bytes.oom || k->bytes.len > UINT32_MAX)
		return st_seterr(err, ST_ENOMEM, "out of memory holding the write's keys");
	k->slot[at] = i + 1;
	if (k->numeric) {
		k->lo = k->any && k->lo < first ? k->lo : first;
		k->hi = k->any && k->hi > first ? k->hi : first;
		k->any = true;
	}
	return ST_OK;
}

int store_keys_add(struct store_keys *k, const char *table, const struct st_vec *const *cols,
		   uint32_t n, uint64_t row0, struct st_err *err)
{
	int rc = ST_OK;
	for (uint32_t r = 0; r < n && rc == ST_OK; r++)
		rc = store_keys_add_row(k, table, cols, r, row0 + r, err);
	return rc;
}

void store_key_bytes_text(const uint8_t *kb, size_t kn, const uint8_t *types, uint32_t n,
			  char *buf, size_t len)
{
	size_t at = 0;
	buf[0] = '\0';
	for (uint32_t i = 0; i < n && at + 1 < len; i++) {
		const char *sep = i ? ", " : "";
		if (st_type_is_varlen(types[i]) && kn >= 4) {
			uint32_t l = st_get_le32(kb);
			l = l > kn - 4 ? (uint32_t)(kn - 4) : l;
			at += (size_t)snprintf(buf + at, len - at, "%s'%.*s'", sep, (int)(l > 64 ? 64 : l),
					       (const char *)kb + 4);
			kb += 4 + l;
			kn -= 4 + l;
		} else if (types[i] == ST_TYPE_BOOL && kn >= 1) {
			at += (size_t)snprintf(buf + at, len - at, "%s%d", sep, kb[0]);
			kb++;
			kn--;
		} else if (kn >= 8) {
			double d;
			memcpy(&d, kb, 8);
			if (types[i] == ST_TYPE_FLOAT64)
				at += (size_t)snprintf(buf + at, len - at, "%s%.17g", sep, d);
			else
				at += (size_t)snprintf(buf + at, len - at, "%s%lld", sep,
						       (long long)st_get_le64(kb));
			kb += 8;
			kn -= 8;
		}
	}
}

static int exists_error(struct st_err *err, const char *table, const char *kt, uint64_t row)
{
	return st_seterr(err, ST_ESCHEMA, "table '%s': key (%s) already exists: row %llu of the write "
			 "repeats it (use merge, or load --mode upsert, to replace rows by key)", table,
			 kt, (unsigned long long)row);
}

/* The write's keys looked up one by one in the key index at its read
 * version (STORE.md §4.6). */
static int check_by_index(st_store *s, struct staged *w, struct st_err *err)
{
	struct store_keys *k = w->keys;
	MDB_txn *txn = NULL;
	struct store_kix_view *v = NULL;
	int rc = ST_OK, mrc = store_read_begin(s, &txn);
	if (mrc != 0)
		rc = store_lmdb_err(err, mrc, "checking keys");
	else
		rc = store_kix_view_open(s, txn, w->m.meta, w->tid, w->read_version, &v, err);
	for (uint32_t i = 0; rc == ST_OK && i < k->count; i++) {
		uint32_t f, pos;
		int found = store_kix_find(s, v, k->bytes.data + k->off[i], k->len[i], &f, &pos, err);
		if (found < 0 || found > 1)
			rc = found;
		else if (found) {
			char kt[256];
			store_key_bytes_text(k->bytes.data + k->off[i], k->len[i], k->type, k->n, kt, sizeof kt);
			rc = exists_error(err, w->table, kt, k->row[i]);
		}
	}
	store_kix_view_free(v);
	store_read_end(s, txn);
	return rc;
}

struct probe {
	struct store_keys *k;
	const char *table;
};

static int probe_rows(void *arg, const struct st_vec *cols, uint32_t rows, const uint32_t *sel,
		      uint32_t nsel, uint64_t row0, struct st_err *err)
{
	struct probe *p = arg;
	struct store_keys *k = p->k;
	const struct st_vec *v[ST_MAX_COLUMNS];
	(void)rows;
	(void)row0;
	for (uint32_t i = 0; i < k->n; i++)
		v[k->col[i]] = &cols[k->col[i]];
	for (uint32_t j = 0; j < nsel; j++) {
		double first;
		uint32_t at;
		if (!key_of(k, v, sel[j], &first))
			continue;
		int64_t e = find(k, store_key_hash(k->tmp.data, k->tmp.len), &at);
		if (e >= 0) {
			char kt[256];
			key_text(k, v, sel[j], kt, sizeof kt);
			return exists_error(err, p->table, kt, k->row[e]);
		}
	}
	return ST_OK;
}

int store_keys_check(st_store *s, struct staged *w, const char *replaced, struct st_err *err)
{
	struct store_keys *k = w->keys;
	const struct st_schema *sc = &w->m.meta->schema;
	char range[2 * ST_NAME_MAX + 128] = "true", text[8192];
	int rc = ST_OK;
	if (!k || !k->count || w->overwrite)
		return ST_OK;
	const char *name = sc->fields[k->col[0]].name;
	if (k->numeric && k->type[0] == ST_TYPE_FLOAT64)
		snprintf(range, sizeof range, "\"%s\" >= %.17g AND \"%s\" <= %.17g", name, k->lo, name,
			 k->hi);
	else if (k->numeric)
		snprintf(range, sizeof range, "\"%s\" >= %lld AND \"%s\" <= %lld", name,
			 (long long)k->lo, name, (long long)k->hi);
	/* Rows a replace-where removes in the same commit do not count. */
	if (replaced && *replaced)
		snprintf(text, sizeof text, "(%s) AND NOT (%s)", range, replaced);
	else
		snprintf(text, sizeof text, "%s", range);
	struct expr *pred = NULL;
	if ((rc = expr_parse(text, sc, &pred, err)) != ST_OK ||
	    (rc = expr_parse(range, sc, &w->key_pred, err)) != ST_OK) {
		expr_free(pred);
		return rc;
	}
	MDB_txn *txn = NULL;
	struct file_rec *live = NULL;
	uint32_t nlive = 0;
	int mrc = store_read_begin(s, &txn);
	if (mrc != 0)
		rc = store_lmdb_err(err, mrc, "checking keys");
	else
		rc = store_files_at(s, txn, w->tid, w->read_version, &live, &nlive, err);
	store_read_end(s, txn);
	struct st_col_stats *st = calloc(sc->nfields + 1, sizeof *st);
	if (rc == ST_OK && !st)
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
	struct probe p = {k, w->table};
	bool kc[ST_MAX_COLUMNS] = {false}; /* the key columns only */
	for (uint32_t i = 0; i < k->n; i++)
		kc[k->col[i]] = true;
	/* The files in range; few keys into many rows are looked up in the
	 * index instead of reading them. */
	bool *in = calloc(nlive + 1, sizeof *in);
	uint64_t rows = 0;
	if (rc == ST_OK && !in)
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
	for (uint32_t i = 0; i < nlive && rc == ST_OK; i++) {
		store_file_stats(sc, &live[i], st);
		in[i] = expr_may_match(pred, st) != EXPR_MATCH_NONE;
		rows += in[i] ? file_live_rows(&live[i]) : 0;
	}
	if (rc == ST_OK && rows && !(replaced && *replaced) && rows >= (uint64_t)k->count * 8) {
		rc = check_by_index(s, w, err);
		rows = 0;
	}
	for (uint32_t i = 0; i < nlive && rc == ST_OK && rows; i++)
		if (in[i])
			rc = store_file_match_cols(s, w->tid, &live[i], sc, pred, NULL, NULL, probe_rows,
						   &p, kc, err);
	free(in);
	free(st);
	file_recs_free(live, nlive);
	expr_free(pred);
	return rc;
}
