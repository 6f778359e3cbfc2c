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

/* ---- a set of keys ----------------------------------------------------------- */

void store_keyset_fini(struct store_keyset *ks)
{
	st_buf_free(&ks->bytes);
	free(ks->hash);
	free(ks->off);
	free(ks->len);
	free(ks->slot);
	memset(ks, 0, sizeof *ks);
}

const uint8_t *store_keyset_key(const struct store_keyset *ks, uint32_t i, uint32_t *len)
{
	*len = ks->len[i];
	return ks->bytes.data + ks->off[i];
}

/* Twice the room (keys and slots); false when out of memory. */
static bool keyset_grow(struct store_keyset *ks)
{
	uint32_t cap = ks->cap ? 2 * ks->cap : 1024;
	uint64_t *h = realloc(ks->hash, cap * sizeof *h);
	if (h)
		ks->hash = h;
	uint32_t *o = h ? realloc(ks->off, cap * sizeof *o) : NULL;
	if (o)
		ks->off = o;
	uint32_t *l = o ? realloc(ks->len, cap * sizeof *l) : NULL;
	if (l)
		ks->len = l;
	uint32_t ns = 2 * cap;
	uint32_t *sl = l ? calloc(ns, sizeof *sl) : NULL;
	if (!sl)
		return false;
	for (uint32_t i = 0; i < ks->n; i++) {
		uint32_t s = (uint32_t)ks->hash[i] & (ns - 1);
		while (sl[s])
			s = (s + 1) & (ns - 1);
		sl[s] = i + 1;
	}
	free(ks->slot);
	ks->slot = sl;
	ks->nslot = ns;
	ks->cap = cap;
	return true;
}

int64_t store_keyset_find(struct store_keyset *ks, const uint8_t *kb, size_t kn, bool add)
{
	if (add && 2 * (ks->n + 1) > ks->nslot && !keyset_grow(ks))
		return -2;
	if (!ks->nslot)
		return -1;
	uint64_t h = store_key_hash(kb, kn);
	uint32_t s = (uint32_t)h & (ks->nslot - 1);
	for (; ks->slot[s]; s = (s + 1) & (ks->nslot - 1)) {
		uint32_t i = ks->slot[s] - 1;
		if (ks->hash[i] == h && ks->len[i] == kn && !memcmp(ks->bytes.data + ks->off[i], kb, kn))
			return i;
	}
	if (!add)
		return -1;
	uint32_t i = ks->n;
	ks->hash[i] = h;
	ks->off[i] = (uint32_t)ks->bytes.len;
	ks->len[i] = (uint32_t)kn;
	st_buf_append(&ks->bytes, kb, kn);
	if (ks->bytes.oom || ks->bytes.len > UINT32_MAX)
		return -2;
	ks->slot[s] = i + 1;
	ks->n++;
	return -3 - (int64_t)i;
}

/* ---- a write's keys ------------------------------------------------------------- */

struct store_keys {
	uint32_t n;                  /* key columns */
	int col[KEYS_MAX];           /* their schema indexes */
	uint8_t type[KEYS_MAX];      /* and types */
	struct st_buf tmp;           /* a key being built */
	struct store_keyset set;     /* the keys held */
	uint64_t *row;               /* per key: its row in the write */
	uint32_t rcap;               /* entries of row */
	bool numeric, any;           /* the first column's range: lo..hi */
	double lo, hi;
};

void store_keys_free(struct store_keys *k)
{
	if (!k)
		return;
	st_buf_free(&k->tmp);
	store_keyset_fini(&k->set);
	free(k->row);
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
	if (k->set.n == k->rcap) {
		uint32_t c = k->rcap ? 2 * k->rcap : 1024;
		uint64_t *g = realloc(k->row, c * sizeof *g);
		if (!g)
			return st_seterr(err, ST_ENOMEM, "out of memory holding the write's keys");
		k->row = g;
		k->rcap = c;
	}
	int64_t e = store_keyset_find(&k->set, k->tmp.data, k->tmp.len, true);
	if (e == -2)
		return st_seterr(err, ST_ENOMEM, "out of memory holding the write's keys");
	if (e >= 0) {
		char kt[256];
		key_text(k, cols, r, kt, sizeof kt);
		return st_seterr(err, ST_ESCHEMA, "table '%s': key (%s) appears twice in the write: "
				 "rows %llu and %llu", table, kt, (unsigned long long)k->row[e],
				 (unsigned long long)row);
	}
	k->row[-3 - e] = row; /* added */
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
	for (uint32_t i = 0; rc == ST_OK && i < k->set.n; i++) {
		uint32_t f, pos, kl;
		const uint8_t *kb = store_keyset_key(&k->set, i, &kl);
		int found = store_kix_find(s, v, kb, kl, &f, &pos, err);
		if (found < 0 || found > 1)
			rc = found;
		else if (found) {
			char kt[256];
			store_key_bytes_text(kb, kl, k->type, k->n, kt, sizeof kt);
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
		if (!key_of(k, v, sel[j], &first))
			continue;
		int64_t e = store_keyset_find(&k->set, k->tmp.data, k->tmp.len, false);
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
	if (!k || !k->set.n || w->overwrite)
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
	if (rc == ST_OK && rows && !(replaced && *replaced) && rows >= (uint64_t)k->set.n * 8) {
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
