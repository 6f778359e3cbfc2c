/*
 * daemon/store/dml.c — st_delete and st_update: row-level DELETE and UPDATE
 * with deletion vectors (STORE.md §4.1, §4.2). Files whose statistics exclude the predicate are not
 * read; files whose statistics say every row matches, or where every row
 * left matches, are removed whole; the others are removed and added again
 * under a new file id sharing the same segment (a hard link, or the same
 * inline bytes) with a deletion vector of every deleted position. No
 * segment is rewritten. The commit goes through the group commit like any
 * write: its conflict check (conflict.c) treats it as a replace-where with
 * no new rows. An UPDATE is the same DELETE plus one new segment holding
 * the matched rows with their new values, in the same commit.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/store/write_int.h"
#include "format/dv.h"
#include "format/expr.h"
#include "format/io.h"

void (*store_test_dml_staged)(st_store *s, void *arg);
void *store_test_dml_arg;

/* File f of table tid re-added as a new file with deletion vector
 * positions all (nall of them) into r: the segment is shared (hard link,
 * or the inline bytes copied into the new record). */
static int readd(st_store *s, uint64_t tid, const struct file_rec *f, const uint32_t *all,
		 uint32_t nall, struct store_rewrite *r, struct st_err *err)
{
	struct st_buf dv = {0};
	int rc = dv_encode(all, nall, (uint32_t)f->rows, &dv, err);
	if (rc != ST_OK)
		return rc;
	struct act_add *a = &r->add;
	a->file_id = store_next_fid(s);
	a->size = f->size;
	a->rows = f->rows;
	a->crc = f->crc;
	a->data_change = true;
	a->is_inline = f->flags & 1;
	a->base_fid = f->fid; /* the file it is made from: a follower links its own copy */
	a->dv = dv.data;
	a->dv_len = (uint32_t)dv.len;
	a->deleted = nall;
	a->ncols = f->ncols;
	a->field_ids = malloc(((size_t)f->ncols + 1) * sizeof *a->field_ids);
	a->stats = malloc(((size_t)f->ncols + 1) * sizeof *a->stats);
	r->types = malloc((size_t)f->ncols + 1);
	if (!a->field_ids || !a->stats || !r->types)
		return st_seterr(err, ST_ENOMEM, "out of memory");
	for (uint32_t i = 0; i < f->ncols; i++) {
		a->field_ids[i] = f->field_ids[i];
		st_stats_copy(&a->stats[i], &f->stats[i]);
		r->types[i] = f->types[i];
	}
	if (a->is_inline)
		return store_inline_copy(s, NULL, tid, f, &r->inl, &r->inl_len, err);
	char from[PATH_MAX];
	store_seg_path(s, tid, f->fid, from, sizeof from);
	store_seg_path(s, tid, a->file_id, r->path, sizeof r->path);
	if (link(from, r->path) != 0)
		return st_seterr(err, errno, "deleting: linking '%s' as '%s': %s", from, r->path,
				 strerror(errno));
	r->written = true;
	return ST_OK;
}

/* File f of w's table loses the rows at positions pos (npos, increasing,
 * none deleted yet; pos NULL: every live row): removed whole when no row
 * is left, else re-added with the union of its vectors. */
static int stage_rows_gone(st_store *s, struct staged *w, const struct file_rec *f,
			   const uint32_t *pos, uint32_t npos, struct st_dml_result *dr,
			   struct st_err *err)
{
	uint32_t *old = NULL, nold = 0, *all = NULL, nall = 0;
	int rc = ST_OK;
	if (pos && f->rows > UINT32_MAX)
		return st_seterr(err, ST_ETOOBIG, "table '%s': file %llu has %llu rows, above what a "
				 "deletion vector covers", w->table, (unsigned long long)f->fid,
				 (unsigned long long)f->rows);
	if (pos) {
		if (f->dv && (rc = dv_decode(f->dv, f->dv_len, (uint32_t)f->rows, &old, &nold, err)) !=
				     ST_OK)
			return rc;
		rc = dv_union(old, nold, pos, npos, &all, &nall);
		free(old);
		if (rc != ST_OK) {
			free(all);
			return st_seterr(err, ST_ENOMEM, "out of memory");
		}
	}
	w->read_files[w->nread++] = f->fid;
	if (!pos || nall == f->rows) {
		/* Every row left goes: the file goes whole. */
		w->rows_removed += file_live_rows(f);
		dr->files_removed++;
	} else {
		w->rows_removed += npos;
		struct store_rewrite *r = &w->rw[w->nrw++];
		rc = readd(s, w->tid, f, all, nall, r, err);
		dr->dvs_written++;
	}
	free(all);
	return rc;
}

/* The links of w's re-added files share one directory: one sync makes
 * them durable before the commit. */
static int stage_links_sync(const struct staged *w, struct st_err *err)
{
	for (uint32_t i = 0; i < w->nrw; i++)
		if (w->rw[i].written) {
			int e = st_io_fsync_dir(&st_io_posix, w->rw[i].path);
			return e ? st_seterr(err, e, "table '%s': fsync of its directory: %s", w->table,
					     strerror(e))
				 : ST_OK;
		}
	return ST_OK;
}

int store_stage_delete(st_store *s, MDB_txn *txn, struct staged *w, const char *pred,
		       struct st_dml_result *dr, struct file_rec **livep, uint32_t *nlivep,
		       bool **hitp, struct st_err *err)
{
	struct st_dml_result none;
	if (!dr)
		dr = &none;
	int rc;
	struct file_rec *live = NULL;
	uint32_t nlive = 0;
	struct st_col_stats *st = NULL;
	bool *hit = NULL;
	const struct st_schema *sc = &w->m.meta->schema;
	if ((rc = expr_parse(pred, sc, &w->pred, err)) != ST_OK ||
	    (rc = store_files_at(s, txn, w->tid, STORE_LIVE, &live, &nlive, err)) != ST_OK)
		goto out;
	st = calloc(sc->nfields + 1, sizeof *st);
	hit = calloc(nlive + 1, sizeof *hit);
	w->read_files = calloc(nlive + 1, sizeof *w->read_files);
	w->rw = calloc(nlive + 1, sizeof *w->rw);
	if (!st || !hit || !w->read_files || !w->rw) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < nlive && rc == ST_OK; i++) {
		const struct file_rec *f = &live[i];
		store_file_stats(sc, f, st);
		enum expr_match m = expr_may_match(w->pred, st);
		if (m == EXPR_MATCH_NONE) {
			dr->files_skipped++;
			continue;
		}
		dr->files_read += m == EXPR_MATCH_SOME;
		uint32_t *pos = NULL, npos = 0;
		if (m == EXPR_MATCH_SOME) {
			rc = f->rows > UINT32_MAX
				? st_seterr(err, ST_ETOOBIG, "table '%s': file %llu has %llu rows, above "
					    "what a deletion vector covers", w->table,
					    (unsigned long long)f->fid, (unsigned long long)f->rows)
				: store_file_match(s, w->tid, f, sc, w->pred, &pos, &npos, NULL, NULL, err);
			if (rc != ST_OK || npos == 0) {
				free(pos);
				continue; /* nothing (more) matched: the file stays */
			}
		}
		hit[i] = true;
		rc = stage_rows_gone(s, w, f, m == EXPR_MATCH_ALL ? NULL : pos, npos, dr, err);
		free(pos);
	}
	if (rc == ST_OK)
		rc = stage_links_sync(w, err);
out:
	free(st);
	if (rc != ST_OK || !livep) {
		file_recs_free(live, nlive);
		free(hit);
		return rc;
	}
	*livep = live;
	*nlivep = nlive;
	*hitp = hit;
	return rc;
}

/* Begin a DML statement on table: a transaction t holding one staged
 * write, its head read and its metadata shared, the app id checked (noop:
 * res says so and *t is NULL). */
static int dml_begin(st_store *s, const char *table, const char *op, const char *predicate,
		     const struct st_dml_opts *opts, st_txn **tp, MDB_txn **txnp,
		     struct table_head *h, struct st_dml_result *res, struct st_err *err)
{
	static const struct st_dml_opts defaults = {0};
	int rc, mrc;
	struct meta_ref *ref = NULL;
	*tp = NULL;
	*txnp = NULL;
	if (!opts)
		opts = &defaults;
	if (!predicate || !*predicate)
		return st_seterr(err, ST_EINVAL,
				 "table '%s': %s needs a predicate ('true' for every row)", table, op);
	if (opts->app_id && (!opts->app_id[0] || strlen(opts->app_id) > 255))
		return st_seterr(err, ST_EINVAL, "app id must be 1 to 255 bytes");
	st_txn *t;
	if ((rc = st_txn_begin(s, &t, err)) != ST_OK)
		return rc;
	struct staged *w = calloc(1, sizeof *w);
	if (!w) {
		st_txn_abort(t);
		return st_seterr(err, ST_ENOMEM, "out of memory");
	}
	t->w = w;
	t->n = 1;
	snprintf(w->table, sizeof w->table, "%s", table);
	w->t0 = store_now_us();
	w->dml = op;
	if ((mrc = store_read_begin(s, txnp)) != 0) {
		rc = store_lmdb_err(err, mrc, op);
		goto out;
	}
	if ((rc = store_meta_get(s, *txnp, table, h, &ref, err)) != ST_OK)
		goto out;
	w->tid = h->tid;
	w->read_version = h->version;
	w->isolation = store_isolation_of(ref->meta);
	w->m.meta = ref->meta;
	w->m.shared = ref;
	ref = NULL;
	if ((rc = store_stage_app(s, *txnp, w, opts->app_id, opts->app_version, err)) != ST_OK)
		goto out;
	if (w->noop) {
		res->commit.noop = true;
		res->commit.version = h->version;
		goto out;
	}
	*tp = t;
	t = NULL;
out:
	store_meta_put(ref);
	st_txn_abort(t);
	return rc;
}

/* Nothing matched (and no app version to record): report the head. */
static bool dml_nothing(const struct staged *w, const struct table_head *h,
			struct st_dml_result *res)
{
	if (w->nread || w->app_id)
		return false;
	res->commit.version = h->version;
	res->commit.lsn = h->lsn;
	res->commit.time_us = h->time_us;
	res->commit.noop = true;
	return true;
}

int st_delete(st_store *s, const char *table, const char *predicate,
	      const struct st_dml_opts *opts, struct st_dml_result *res, struct st_err *err)
{
	st_txn *t = NULL;
	MDB_txn *txn = NULL;
	struct table_head h = {0};
	memset(res, 0, sizeof *res);
	int rc = dml_begin(s, table, "DELETE", predicate, opts, &t, &txn, &h, res, err);
	if (rc != ST_OK || !t)
		goto out;
	struct staged *w = &t->w[0];
	if ((rc = store_stage_delete(s, txn, w, predicate, res, NULL, NULL, NULL, err)) != ST_OK)
		goto out;
	store_read_end(s, txn);
	txn = NULL;
	if (dml_nothing(w, &h, res))
		goto out;
	res->rows_deleted = w->rows_removed;
	if (store_test_dml_staged)
		store_test_dml_staged(s, store_test_dml_arg);
	rc = st_txn_commit(t, &res->commit, err);
	t = NULL;
out:
	store_read_end(s, txn);
	head_fini(&h);
	st_txn_abort(t);
	if (rc != ST_OK)
		memset(res, 0, sizeof *res);
	return rc;
}

/* UPDATE's new rows: what the match callback needs. */
struct upd {
	st_store *s;
	const struct staged *w;
	const struct expr_assign *set;
	struct seg_writer *out;      /* the new segment */
	uint64_t fid;                /* file being read (messages) */
	uint64_t rows;               /* rows written so far */
};

/* One row group's matching rows, with their new values, into the new
 * segment: every value is computed from the old row (SET a = b, b = a
 * swaps), then NOT NULL and the table's CHECK constraints are checked. */
static int upd_rows(void *arg, const struct st_vec *cols, uint32_t rows, const uint32_t *sel,
		    uint32_t nsel, uint64_t row0, struct st_err *err)
{
	struct upd *u = arg;
	const struct act_metadata *m = u->w->m.meta;
	uint32_t F = m->schema.nfields, na = expr_assign_count(u->set);
	struct st_vec *g = calloc(F + 1, sizeof *g), *nv = calloc(na + 1, sizeof *nv);
	void **bufs = calloc(3 * ((size_t)F + na) + 1, sizeof *bufs);
	int rc = g && nv && bufs ? ST_OK : st_seterr(err, ST_ENOMEM, "out of memory");
	(void)rows;
	for (uint32_t f = 0; f < F && rc == ST_OK; f++)
		if (store_gather(&cols[f], sel, nsel, &g[f], &bufs[3 * f]) != ST_OK)
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
	uint32_t bad = 0;
	for (uint32_t i = 0; i < na && rc == ST_OK; i++)
		if ((rc = expr_assign_eval(u->set, i, g, nsel, &nv[i], &bufs[3 * (F + i)], &bad,
					   err)) != ST_OK) {
			char m2[ST_ERR_MSG_MAX];
			snprintf(m2, sizeof m2, "%s", err->msg);
			rc = st_seterr(err, rc, "table '%s': UPDATE refused, nothing changed: the row "
				       "at position %llu of file %llu: %s", u->w->table,
				       (unsigned long long)(row0 + sel[bad]),
				       (unsigned long long)u->fid, m2);
		}
	for (uint32_t i = 0; i < na && rc == ST_OK; i++)
		g[expr_assign_column(u->set, i)] = nv[i];
	if (rc == ST_OK && (rc = store_check_constraints(u->w->table, m, g, nsel, u->rows, err)) !=
			       ST_OK) {
		char m2[ST_ERR_MSG_MAX];
		snprintf(m2, sizeof m2, "%s", err->msg);
		rc = st_seterr(err, rc, "UPDATE refused, nothing changed (rows counted among the "
			       "updated ones): %s", m2);
	}
	if (rc == ST_OK && (rc = seg_writer_append(u->out, g, nsel, err)) == ST_OK)
		u->rows += nsel;
	for (size_t k = 0; bufs && k < 3 * ((size_t)F + na); k++)
		free(bufs[k]);
	free(bufs);
	free(g);
	free(nv);
	return rc;
}

int st_update(st_store *s, const char *table, const char *set, const char *predicate,
	      const struct st_dml_opts *opts, struct st_dml_result *res, struct st_err *err)
{
	st_txn *t = NULL;
	MDB_txn *txn = NULL;
	struct table_head h = {0};
	struct expr_assign *as = NULL;
	struct file_rec *live = NULL;
	uint32_t nlive = 0;
	bool *hit = NULL;
	struct upd u = {.s = s};
	memset(res, 0, sizeof *res);
	int rc = dml_begin(s, table, "UPDATE", predicate, opts, &t, &txn, &h, res, err);
	if (rc != ST_OK || !t)
		goto out;
	struct staged *w = &t->w[0];
	const struct st_schema *sc = &w->m.meta->schema;
	if (!set || !*set) {
		rc = st_seterr(err, ST_EINVAL, "table '%s': UPDATE needs a SET list (col = value, ...)",
			       table);
		goto out;
	}
	if ((rc = expr_assign_parse(set, sc, &as, err)) != ST_OK) {
		char m[ST_ERR_MSG_MAX];
		snprintf(m, sizeof m, "%s", err->msg);
		rc = st_seterr(err, rc, "table '%s': SET list: %s", table, m);
		goto out;
	}
	size_t need = expr_assign_format(as, sc, NULL, 0) + 1;
	if (!(w->set_text = malloc(need))) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	expr_assign_format(as, sc, w->set_text, need);
	if ((rc = store_stage_delete(s, txn, w, predicate, res, &live, &nlive, &hit, err)) != ST_OK)
		goto out;
	store_read_end(s, txn);
	txn = NULL;
	if (dml_nothing(w, &h, res))
		goto out;
	/* The new segment: in memory when small (it may live inline), else
	 * streamed to its file. */
	bool mem = w->rows_removed <= STORE_INLINE_ROWS;
	w->add.file_id = store_next_fid(s);
	if (!mem && (rc = store_staged_path(s, w, err)) != ST_OK)
		goto out;
	struct seg_writer_opts o = {.row_group_rows = s->opts.row_group_rows, .io = s->opts.io,
				    .threads = mem ? 1 : s->enc_threads};
	if ((rc = mem ? seg_writer_open_mem(sc, &o, &u.out, err)
		      : seg_writer_open(w->path, sc, &o, &u.out, err)) != ST_OK)
		goto out;
	u.w = w;
	u.set = as;
	for (uint32_t i = 0; i < nlive && rc == ST_OK; i++) {
		if (!hit[i])
			continue;
		u.fid = live[i].fid;
		rc = store_file_match(s, w->tid, &live[i], sc, w->pred, NULL, NULL, upd_rows, &u, err);
	}
	if (rc == ST_OK && u.rows != w->rows_removed)
		rc = st_seterr(err, ST_ECORRUPT, "table '%s': UPDATE found %llu matching rows, then "
			       "%llu (a strata bug)", table, (unsigned long long)w->rows_removed,
			       (unsigned long long)u.rows);
	if (rc != ST_OK)
		goto out;
	if (mem) {
		rc = seg_writer_close_mem(u.out, &w->info, &w->inl, &w->inl_len, err);
		u.out = NULL;
		if (rc == ST_OK && w->inl_len > s->opts.inline_max) {
			if ((rc = store_staged_path(s, w, err)) == ST_OK)
				rc = store_write_file(s, w->path, w->inl, w->inl_len, err);
			free(w->inl);
			w->inl = NULL;
		}
	} else {
		rc = seg_writer_close(u.out, &w->info, err);
		u.out = NULL;
	}
	if (rc != ST_OK)
		goto out;
	w->written = !w->inl;
	w->rows = w->info.rows;
	w->add.is_inline = w->inl != NULL;
	if ((rc = store_add_from_info(&w->add, &w->info, sc, true, err)) != ST_OK)
		goto out;
	res->rows_updated = w->rows_removed;
	if (store_test_dml_staged)
		store_test_dml_staged(s, store_test_dml_arg);
	rc = st_txn_commit(t, &res->commit, err);
	t = NULL;
	if (rc == ST_OK)
		res->commit.rows = 0;
out:
	seg_writer_abort(u.out);
	store_read_end(s, txn);
	head_fini(&h);
	st_txn_abort(t);
	expr_assign_free(as);
	file_recs_free(live, nlive);
	free(hit);
	if (rc != ST_OK)
		memset(res, 0, sizeof *res);
	return rc;
}
