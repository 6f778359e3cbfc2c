/*
 * daemon/store/optimize.c — st_optimize (STORE.md §4.3): small files binned
 * into target-sized ones, deletion vectors purged by rewriting, and with
 * cluster_by the rows of the chosen files sorted by a Z-order of up to 4
 * columns, so that range predicates on each of them skip most files. The
 * commit's adds and removes carry data_change = false: streams and the
 * change feed do not see it, and concurrent appends never conflict with it.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "daemon/store/write_int.h"
#include "format/expr.h"
#include "format/segment.h"

#define OPT_TARGET_DEFAULT (64ull << 20)
#define OPT_CLUSTER_MAX 4

/* Where the rows of one bin go. */
struct opt {
	st_store *s;
	struct staged *w;
	const struct st_schema *sc;
	struct seg_writer *out;      /* the open output file (bin packing) */
	struct store_held *held;     /* clustering: every row, held */
	uint64_t rows;               /* rows read */
};

/* Copy the selected rows of a row group (table schema order). */
static int gather_all(const struct st_vec *cols, uint32_t nf, const uint32_t *sel, uint32_t nsel,
		      struct st_vec *out, void **bufs, struct st_err *err)
{
	for (uint32_t f = 0; f < nf; f++)
		if (store_gather(&cols[f], sel, nsel, &out[f], &bufs[3 * f]) != ST_OK)
			return st_seterr(err, ST_ENOMEM, "out of memory");
	return ST_OK;
}

static int take_rows(void *arg, const struct st_vec *cols, uint32_t rows, const uint32_t *sel,
		     uint32_t nsel, uint64_t row0, struct st_err *err)
{
	struct opt *o = arg;
	uint32_t nf = o->sc->nfields;
	(void)rows;
	(void)row0;
	struct st_vec *v = calloc(nf + 1, sizeof *v);
	void **bufs = calloc(3 * (size_t)nf + 1, sizeof *bufs);
	int rc = v && bufs ? gather_all(cols, nf, sel, nsel, v, bufs, err)
			   : st_seterr(err, ST_ENOMEM, "out of memory");
	o->rows += nsel;
	if (rc == ST_OK && !o->held) {
		rc = store_seg_append(o->s, o->out, v, nsel, err);
	} else if (rc == ST_OK) {
		if ((rc = store_held_push(o->held, v, bufs, nsel, err)) == ST_OK)
			return ST_OK; /* held: freed with it */
	}
	for (uint32_t k = 0; bufs && k < 3 * nf; k++)
		free(bufs[k]);
	free(bufs);
	free(v);
	return rc;
}

/* ---- Z-order ---------------------------------------------------------------- */

/* An order-preserving 64-bit key of value (b, r) of column f; strings use
 * the 8 bytes after the prefix every value shares (skip). */
static uint64_t zkey(const struct store_held *h, uint32_t b, uint32_t r, uint32_t f, size_t skip)
{
	const struct st_vec *v = &h->vecs[b][f];
	if (!st_vec_is_valid(v, r))
		return 0; /* NULLs first */
	switch (v->type) {
	case ST_TYPE_BOOL:
		return 1 + ((const uint8_t *)v->data)[r];
	case ST_TYPE_INT32:
	case ST_TYPE_DATE:
		return (uint64_t)(int64_t)((const int32_t *)v->data)[r] ^ (1ull << 63);
	case ST_TYPE_FLOAT64: {
		uint64_t x;
		memcpy(&x, (const double *)v->data + r, 8);
		return x >> 63 ? ~x : x | (1ull << 63);
	}
	case ST_TYPE_STRING:
	case ST_TYPE_BINARY: {
		const uint8_t *p;
		uint32_t len;
		st_vec_str(v, r, &p, &len);
		uint64_t x = 0;
		for (size_t i = 0; i < 8; i++)
			x = x << 8 | (skip + i < len ? p[skip + i] : 0);
		return x;
	}
	default:
		return (uint64_t)((const int64_t *)v->data)[r] ^ (1ull << 63);
	}
}

struct zrow {
	uint64_t z;                  /* the interleaved key */
	struct store_ref ref;        /* the row */
};

static int zcmp(const void *a, const void *b)
{
	const struct zrow *x = a, *y = b;
	if (x->z != y->z)
		return x->z < y->z ? -1 : 1;
	if (x->ref.b != y->ref.b)
		return x->ref.b < y->ref.b ? -1 : 1;
	return (x->ref.r > y->ref.r) - (x->ref.r < y->ref.r);
}

/* The held rows in Z-order of columns cols (n of them): each column's key
 * scaled linearly from its [min, max] into 64/n bits, the bits
 * interleaved (the first column's highest bit first). */
static struct zrow *zorder(const struct store_held *h, const int *cols, uint32_t n)
{
	struct zrow *z = malloc((h->total + 1) * sizeof *z);
	uint64_t lo[OPT_CLUSTER_MAX], hi[OPT_CLUSTER_MAX];
	size_t skip[OPT_CLUSTER_MAX] = {0};
	unsigned bits = 64 / n;
	if (!z)
		return NULL;
	for (uint32_t c = 0; c < n; c++) {
		/* Strings: the prefix that the smallest and largest share. */
		int t = h->n ? h->vecs[0][cols[c]].type : 0;
		if (st_type_is_varlen(t)) {
			const uint8_t *mn = NULL, *mx = NULL;
			uint32_t lmn = 0, lmx = 0;
			for (uint32_t b = 0; b < h->n; b++)
				for (uint32_t r = 0; r < h->rows[b]; r++) {
					const struct st_vec *v = &h->vecs[b][cols[c]];
					const uint8_t *p;
					uint32_t len;
					if (!st_vec_is_valid(v, r))
						continue;
					st_vec_str(v, r, &p, &len);
					if (!mn || memcmp(p, mn, len < lmn ? len : lmn) < 0 ||
					    (!memcmp(p, mn, len < lmn ? len : lmn) && len < lmn))
						mn = p, lmn = len;
					if (!mx || memcmp(p, mx, len < lmx ? len : lmx) > 0 ||
					    (!memcmp(p, mx, len < lmx ? len : lmx) && len > lmx))
						mx = p, lmx = len;
				}
			while (mn && skip[c] < lmn && skip[c] < lmx && mn[skip[c]] == mx[skip[c]])
				skip[c]++;
		}
		lo[c] = UINT64_MAX;
		hi[c] = 0;
		for (uint32_t b = 0; b < h->n; b++)
			for (uint32_t r = 0; r < h->rows[b]; r++) {
				uint64_t k = zkey(h, b, r, (uint32_t)cols[c], skip[c]);
				lo[c] = k < lo[c] ? k : lo[c];
				hi[c] = k > hi[c] ? k : hi[c];
			}
	}
	uint64_t i = 0;
	for (uint32_t b = 0; b < h->n; b++)
		for (uint32_t r = 0; r < h->rows[b]; r++, i++) {
			uint64_t s[OPT_CLUSTER_MAX], key = 0;
			for (uint32_t c = 0; c < n; c++) {
				uint64_t k = zkey(h, b, r, (uint32_t)cols[c], skip[c]) - lo[c];
				uint64_t span = hi[c] - lo[c];
				s[c] = span ? (uint64_t)(((unsigned __int128)k << bits) / ((unsigned __int128)span + 1))
					    : 0;
			}
			for (int bit = (int)bits - 1; bit >= 0; bit--)
				for (uint32_t c = 0; c < n; c++)
					key = key << 1 | ((s[c] >> bit) & 1);
			z[i] = (struct zrow){key, {b, r}};
		}
	qsort(z, h->total, sizeof *z, zcmp);
	return z;
}

/* ---- output files ------------------------------------------------------------ */

static int out_open(struct opt *o, struct st_err *err)
{
	st_store *s = o->s;
	struct staged *w = o->w;
	struct store_rewrite *r = &w->rw[w->nrw];
	memset(r, 0, sizeof *r);
	r->add.file_id = store_next_fid(s);
	store_seg_path(s, w->tid, r->add.file_id, r->path, sizeof r->path);
	struct seg_writer_opts so = {.row_group_rows = s->opts.row_group_rows, .io = s->opts.io,
				     .threads = s->enc_threads};
	return store_segment_failed(s, seg_writer_open(r->path, o->sc, &so, &o->out, err), err);
}

/* Close the open output as the next add (data_change = false). */
static int out_close(struct opt *o, struct st_err *err)
{
	struct staged *w = o->w;
	struct store_rewrite *r = &w->rw[w->nrw];
	int rc = seg_writer_close(o->out, &r->info, err);
	o->out = NULL;
	if (rc != ST_OK)
		return store_segment_failed(o->s, rc, err);
	r->written = true;
	w->nrw++;
	if (r->info.rows == 0) /* every row of the bin was deleted */
		return ST_OK;
	if ((rc = store_add_from_info(&r->add, &r->info, o->sc, false, err)) != ST_OK)
		return rc;
	if (!(r->types = calloc(o->sc->nfields + 1, 1)))
		return st_seterr(err, ST_ENOMEM, "out of memory");
	for (uint32_t k = 0; k < o->sc->nfields; k++)
		r->types[k] = o->sc->fields[k].type;
	return ST_OK;
}

/* Whether file f was written by an OPTIMIZE clustering by spec (its add's
 * commit says so). */
static bool clustered_by(st_store *s, MDB_txn *txn, uint64_t tid, const struct file_rec *f,
			 const char *spec)
{
	uint8_t key[COMMIT_KEY_LEN];
	commit_key(key, tid, f->added);
	MDB_val k = {sizeof key, key}, d;
	struct act_commit *c = NULL;
	if (store_get(s, txn, &k, &d) != 0 || act_decode(d.mv_data, d.mv_size, &c, NULL) != ST_OK)
		return false;
	bool yes = !strcmp(c->info.operation, "OPTIMIZE");
	bool named = false;
	for (uint32_t i = 0; yes && i < c->info.nparams; i++)
		if (!strcmp(c->info.params[i].key, "cluster_by"))
			named = !strcmp(c->info.params[i].val, spec);
	act_commit_free(c);
	return yes && named;
}

static int cmp_added(const void *a, const void *b)
{
	const struct file_rec *x = *(const struct file_rec *const *)a,
			      *y = *(const struct file_rec *const *)b;
	return (x->added > y->added) - (x->added < y->added) ?: (x->fid > y->fid) - (x->fid < y->fid);
}

int st_optimize(st_store *s, const char *table, const struct st_optimize_opts *opts,
		struct st_optimize_result *res, struct st_err *err)
{
	static const struct st_optimize_opts defaults = {0};
	int rc = ST_OK, mrc;
	st_txn *t = NULL;
	MDB_txn *txn = NULL;
	struct table_head h = {0};
	struct meta_ref *ref = NULL;
	struct file_rec *live = NULL;
	uint32_t nlive = 0, nbin = 0;
	struct file_rec **cand = NULL;
	uint32_t *bin_of = NULL;
	struct expr *where = NULL, *all = NULL;
	struct store_held held = {0};
	struct zrow *z = NULL;
	struct opt o = {.s = s};
	char spec[4 * (ST_NAME_MAX + 1) + 16] = "";
	int ccol[OPT_CLUSTER_MAX];
	uint32_t ncc = 0;
	memset(res, 0, sizeof *res);
	if (!opts)
		opts = &defaults;
	uint64_t target = opts->target_size ? opts->target_size : OPT_TARGET_DEFAULT;
	if ((rc = st_txn_begin(s, &t, err)) != ST_OK)
		return rc;
	struct staged *w = calloc(1, sizeof *w);
	if (!w) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	t->w = w;
	t->n = 1;
	snprintf(w->table, sizeof w->table, "%s", table);
	w->t0 = store_now_us();
	w->compaction = true;
	w->dml = "OPTIMIZE";
	w->set_key = "cluster_by";
	if ((mrc = store_read_begin(s, &txn)) != 0) {
		rc = store_lmdb_err(err, mrc, "optimizing");
		goto out;
	}
	if ((rc = store_meta_get(s, txn, table, &h, &ref, err)) != ST_OK)
		goto out;
	w->tid = h.tid;
	w->read_version = h.version;
	w->isolation = store_isolation_of(ref->meta);
	w->m.meta = ref->meta;
	w->m.shared = ref;
	ref = NULL;
	const struct st_schema *sc = &w->m.meta->schema;
	o.w = w;
	o.sc = sc;
	if (opts->where && *opts->where) {
		if ((rc = expr_parse(opts->where, sc, &where, err)) != ST_OK)
			goto out;
		char text[1024];
		expr_format(where, sc, text, sizeof text);
		if (!(w->where_text = strdup(text))) {
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			goto out;
		}
	}
	/* The clustering columns, canonical: "a,b" by the schema's names. */
	if (opts->cluster_by && *opts->cluster_by) {
		const char *p = opts->cluster_by;
		while (*p) {
			while (*p == ' ' || *p == ',')
				p++;
			size_t len = strcspn(p, ", ");
			if (!len)
				break;
			int c = st_schema_find(sc, p, len);
			if (c < 0) {
				rc = st_seterr(err, ST_ENOTFOUND, "table '%s' has no column '%.*s' to cluster "
					       "by", table, (int)len, p);
				goto out;
			}
			if (ncc == OPT_CLUSTER_MAX) {
				rc = st_seterr(err, ST_EINVAL, "cluster by at most %d columns",
					       OPT_CLUSTER_MAX);
				goto out;
			}
			for (uint32_t i = 0; i < ncc; i++)
				if (ccol[i] == c) {
					rc = st_seterr(err, ST_EINVAL, "column '%s' is named twice",
						       sc->fields[c].name);
					goto out;
				}
			ccol[ncc++] = c;
			snprintf(spec + strlen(spec), sizeof spec - strlen(spec), "%s%s", ncc > 1 ? "," : "",
				 sc->fields[c].name);
			p += len;
		}
		if (!(w->set_text = strdup(spec))) {
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			goto out;
		}
	}
	if ((rc = store_files_at(s, txn, h.tid, STORE_LIVE, &live, &nlive, err)) != ST_OK)
		goto out;
	cand = calloc(nlive + 1, sizeof *cand);
	bin_of = calloc(nlive + 1, sizeof *bin_of);
	struct st_col_stats *st = calloc(sc->nfields + 1, sizeof *st);
	if (!cand || !bin_of || !st) {
		free(st);
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	/* The candidates: live files the filter may match, oldest first. */
	uint32_t ncand = 0;
	bool all_clustered = true;
	for (uint32_t i = 0; i < nlive; i++) {
		if (where) {
			store_file_stats(sc, &live[i], st);
			if (expr_may_match(where, st) == EXPR_MATCH_NONE)
				continue;
		}
		cand[ncand++] = &live[i];
		if (ncc)
			all_clustered &= !live[i].dv && clustered_by(s, txn, h.tid, &live[i], spec);
	}
	free(st);
	store_read_end(s, txn);
	txn = NULL;
	qsort(cand, ncand, sizeof *cand, cmp_added);
	/* Bins: clustering rewrites every candidate as one group (nothing to do
	 * when an OPTIMIZE with the same clustering wrote them all); bin packing
	 * puts files below half the target, and files with a deletion vector,
	 * first-fit into bins of at most the target, and rewrites the bins of
	 * two or more files or holding a vector. So a second run finds at most
	 * one file below half the target and nothing to do. */
	if (ncc) {
		if (!all_clustered)
			for (uint32_t i = 0; i < ncand; i++)
				bin_of[i] = 1;
		nbin = all_clustered ? 0 : 1;
	} else {
		uint64_t *fill = calloc(ncand + 1, sizeof *fill);
		uint32_t *nfiles = calloc(ncand + 2, sizeof *nfiles);
		bool *dv = calloc(ncand + 2, sizeof *dv);
		if (!fill || !nfiles || !dv) {
			free(fill);
			free(nfiles);
			free(dv);
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			goto out;
		}
		for (uint32_t i = 0; i < ncand; i++) {
			const struct file_rec *f = cand[i];
			if (f->size >= target / 2 && !f->dv)
				continue;
			uint64_t sz = f->rows ? f->size * file_live_rows(f) / f->rows : f->size;
			uint32_t b = 0;
			while (b < nbin && fill[b] + sz > target)
				b++;
			if (b == nbin)
				nbin++;
			fill[b] += sz;
			nfiles[b + 1]++;
			dv[b + 1] |= f->dv != NULL;
			bin_of[i] = b + 1;
		}
		/* Keep bins worth rewriting, renumbered 1..nbin. */
		uint32_t *keep = calloc(nbin + 2, sizeof *keep), nk = 0;
		if (!keep) {
			free(fill);
			free(nfiles);
			free(dv);
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			goto out;
		}
		for (uint32_t b = 1; b <= nbin; b++)
			keep[b] = nfiles[b] >= 2 || dv[b] ? ++nk : 0;
		for (uint32_t i = 0; i < ncand; i++)
			bin_of[i] = keep[bin_of[i]];
		nbin = nk;
		free(keep);
		free(fill);
		free(nfiles);
		free(dv);
	}
	if (nbin == 0) {
		res->commit.noop = true;
		res->commit.version = h.version;
		res->commit.lsn = h.lsn;
		res->commit.time_us = h.time_us;
		goto out;
	}
	uint32_t chosen = 0;
	for (uint32_t i = 0; i < ncand; i++)
		chosen += bin_of[i] != 0;
	w->read_files = calloc(chosen + 1, sizeof *w->read_files);
	/* Outputs: one per bin; clustering splits its rows into files of the
	 * target size (by the inputs' bytes per row). */
	uint64_t in_rows = 0, in_bytes = 0;
	for (uint32_t i = 0; i < ncand; i++)
		if (bin_of[i]) {
			in_rows += file_live_rows(cand[i]);
			in_bytes += cand[i]->size;
		}
	uint64_t per_file = in_bytes ? target * in_rows / in_bytes : in_rows;
	per_file = per_file ? per_file : 1;
	size_t nout = ncc ? in_rows / per_file + 2 : nbin + 1;
	w->rw = calloc(nout + 1, sizeof *w->rw);
	if ((rc = expr_parse("TRUE", sc, &all, err)) != ST_OK)
		goto out;
	if (!w->read_files || !w->rw) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	if (ncc) {
		held.nf = sc->nfields;
		o.held = &held;
	}
	for (uint32_t b = 1; b <= nbin && rc == ST_OK; b++) {
		if (!ncc && (rc = out_open(&o, err)) != ST_OK)
			break;
		for (uint32_t i = 0; i < ncand && rc == ST_OK; i++) {
			if (bin_of[i] != b)
				continue;
			w->read_files[w->nread++] = cand[i]->fid;
			res->files_removed++;
			res->bytes_removed += cand[i]->size;
			res->rows_purged += cand[i]->deleted;
			res->dvs_purged += cand[i]->dv != NULL;
			rc = store_file_match(s, w->tid, cand[i], sc, all, NULL, NULL, take_rows, &o, err);
		}
		if (rc == ST_OK && !ncc)
			rc = out_close(&o, err);
	}
	if (rc == ST_OK && ncc) {
		/* Sort by Z-order and write files of per_file rows. */
		if (held.total && !(z = zorder(&held, ccol, ncc))) {
			rc = st_seterr(err, ST_ENOMEM, "out of memory sorting %llu rows",
				       (unsigned long long)held.total);
			goto out;
		}
		uint32_t chunk = s->opts.row_group_rows ? s->opts.row_group_rows
							: ST_DEFAULT_ROW_GROUP_ROWS;
		for (uint64_t at = 0; at < held.total && rc == ST_OK;) {
			if ((rc = out_open(&o, err)) != ST_OK)
				break;
			uint64_t end = at + per_file < held.total ? at + per_file : held.total;
			while (at < end && rc == ST_OK) {
				uint32_t n = end - at < chunk ? (uint32_t)(end - at) : chunk;
				struct st_vec *v = calloc(held.nf + 1, sizeof *v);
				void **bufs = calloc(3 * (size_t)held.nf + 1, sizeof *bufs);
				struct store_ref *refs = malloc(((size_t)n + 1) * sizeof *refs);
				for (uint32_t q = 0; refs && q < n; q++)
					refs[q] = z[at + q].ref;
				rc = v && bufs && refs ? store_held_gather(&held, refs, n, v, bufs, err)
						       : st_seterr(err, ST_ENOMEM, "out of memory");
				free(refs);
				if (rc == ST_OK)
					rc = store_seg_append(s, o.out, v, n, err);
				for (uint32_t k = 0; bufs && k < 3 * held.nf; k++)
					free(bufs[k]);
				free(bufs);
				free(v);
				at += n;
			}
			if (rc == ST_OK)
				rc = out_close(&o, err);
		}
	}
	if (rc != ST_OK)
		goto out;
	/* Outputs of no rows (a bin whose rows were all deleted) add nothing. */
	uint32_t k = 0;
	for (uint32_t i = 0; i < w->nrw; i++) {
		if (w->rw[i].info.rows == 0) {
			store_rewrite_fini(&w->rw[i]);
			continue;
		}
		res->files_added++;
		res->bytes_added += w->rw[i].add.size;
		w->rw[k++] = w->rw[i];
	}
	w->nrw = k;
	res->rows = o.rows;
	rc = store_dml_commit(s, &t, &res->commit, err);
out:
	seg_writer_abort(o.out);
	store_read_end(s, txn);
	store_meta_put(ref);
	head_fini(&h);
	st_txn_abort(t);
	expr_free(where);
	expr_free(all);
	file_recs_free(live, nlive);
	free(cand);
	free(bin_of);
	free(z);
	store_held_free(&held);
	if (rc != ST_OK) {
		memset(res, 0, sizeof *res);
	}
	return rc;
}
