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

int store_dml_commit(st_store *s, st_txn **t, struct st_commit_result *res, struct st_err *err)
{
	if (store_test_dml_staged)
		store_test_dml_staged(s, store_test_dml_arg);
	int rc = st_txn_commit(*t, res, err);
	*t = NULL;
	if (rc == ST_OK)
		res->rows = 0;
	return rc;
}

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
	r->seg = file_seg(f);
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
	res->rows_deleted = w->info_deleted = w->rows_removed;
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

/* The new segment of an UPDATE or MERGE (its rows in schema sc): in
 * memory when small (it may live inline), else streamed to its file. */
static int dml_segment_open(st_store *s, struct staged *w, const struct st_schema *sc, bool mem,
			    struct seg_writer **out, struct st_err *err)
{
	int rc;
	w->add.file_id = store_next_fid(s);
	if (!mem && (rc = store_staged_path(s, w, err)) != ST_OK)
		return rc;
	struct seg_writer_opts o = {.row_group_rows = s->opts.row_group_rows, .io = s->opts.io,
				    .threads = mem ? 1 : s->enc_threads};
	return store_segment_failed(s, mem ? seg_writer_open_mem(sc, &o, out, err)
					   : seg_writer_open(w->path, sc, &o, out, err), err);
}

/* Close it (*out taken) as w's add: inline when it fits, else a durable
 * file. */
static int dml_segment_close(st_store *s, struct staged *w, struct seg_writer **out, bool mem,
			     const struct st_schema *sc, struct st_err *err)
{
	int rc;
	if (mem) {
		rc = seg_writer_close_mem(*out, &w->info, &w->inl, &w->inl_len, err);
		*out = NULL;
		if (rc == ST_OK && w->inl_len > s->opts.inline_max) {
			if ((rc = store_staged_path(s, w, err)) == ST_OK)
				rc = store_write_file(s, w->path, w->inl, w->inl_len, err);
			free(w->inl);
			w->inl = NULL;
		}
	} else {
		rc = seg_writer_close(*out, &w->info, err);
		*out = NULL;
	}
	if (rc != ST_OK)
		return store_segment_failed(s, rc, err);
	w->written = !w->inl;
	w->rows = w->info.rows;
	w->add.is_inline = w->inl != NULL;
	return store_add_from_info(&w->add, &w->info, sc, true, err);
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
	if (rc == ST_OK && (rc = store_seg_append(u->s, u->out, g, nsel, err)) == ST_OK)
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
	/* A declared key stays as it is: a row with another key is another row. */
	for (uint32_t i = 0; i < expr_assign_count(as); i++)
		for (uint32_t k = 0; k < w->m.meta->nkey; k++)
			if (sc->fields[expr_assign_column(as, i)].id == w->m.meta->key[k]) {
				rc = st_seterr(err, ST_EINVAL, "table '%s': UPDATE cannot change key column "
					       "'%s' (delete the row and insert it with the new key)", table,
					       sc->fields[expr_assign_column(as, i)].name);
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
	if ((rc = dml_segment_open(s, w, sc, mem, &u.out, err)) != ST_OK)
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
	if ((rc = dml_segment_close(s, w, &u.out, mem, sc, err)) != ST_OK)
		goto out;
	res->rows_updated = w->info_updated = w->rows_removed;
	rc = store_dml_commit(s, &t, &res->commit, err);
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

/* ---- MERGE (STORE.md §4.5) ------------------------------------------------------ */

#define MERGE_KEYS_MAX 8

/* The source's rows by key: one entry per distinct key of the key set
 * (its first row, how many rows share it, whether a target row matched
 * it). */
struct mkey {
	struct store_ref ref;        /* the first source row with it */
	uint32_t nrows;              /* source rows with this key */
	bool matched;
};

struct merge {
	st_store *s;
	struct staged *w;
	const struct st_merge_opts *o;
	const struct st_schema *tsc;  /* the target's schema */
	const struct st_schema *ssc;  /* the source's */
	int tkey[MERGE_KEYS_MAX], skey[MERGE_KEYS_MAX];
	uint32_t nkeys;
	struct store_held held;      /* the source's rows */
	struct store_keyset keys;    /* their distinct keys */
	struct mkey *ent;            /* per key */
	int64_t *row_ent;            /* per source row (in held order): its entry, -1 NULL key */
	struct store_ref *out;       /* rows to write: updated, then inserted */
	uint32_t nout, cout;
	uint32_t *pos;               /* the current file's positions going */
	uint32_t npos, cpos;
	uint32_t *dpos;              /* updating and deleting: those of them deleted */
	uint32_t ndpos, cdpos;
	uint64_t fid;                /* the current file (messages) */
	struct st_buf tmp;           /* a key being built */
	/* update "SET ...": the matched pairs of a row group, their new rows */
	struct expr_assign *set;     /* parsed over the combined schema (cs) */
	struct st_schema cs;         /* target columns, t.<col>, s.<col> */
	int *set_col;                /* per assignment: the target column it sets */
	uint32_t *psel;              /* a row group's matched target rows */
	struct store_ref *pref;      /* and their source rows */
	uint32_t npair, cpair;
	struct store_held upd;       /* the updated rows (target schema) */
};

/* The key of row r of vectors v (columns cols, the target's or the
 * source's key columns) into m->tmp, normalized to the target key columns'
 * types; false when a key column is NULL. */
static bool key_of(struct merge *m, const struct st_vec *v, const int *cols, uint32_t r)
{
	const struct st_vec *pv[MERGE_KEYS_MAX];
	int idx[MERGE_KEYS_MAX];
	uint8_t types[MERGE_KEYS_MAX];
	for (uint32_t k = 0; k < m->nkeys; k++) {
		pv[k] = &v[cols[k]];
		idx[k] = (int)k;
		types[k] = m->tsc->fields[m->tkey[k]].type;
	}
	return store_key_bytes(&m->tmp, pv, idx, types, m->nkeys, r, NULL);
}

/* The entry of the key in m->tmp, or -1; with add, a new one (-2: out of
 * memory). */
static int64_t key_find(struct merge *m, bool add, struct store_ref ref)
{
	int64_t e = store_keyset_find(&m->keys, m->tmp.data, m->tmp.len, add);
	if (e >= 0 && add)
		m->ent[e].nrows++;
	if (e <= -3) {
		e = -3 - e;
		m->ent[e] = (struct mkey){ref, 1, false};
	}
	return e;
}

static bool push_ref(struct merge *m, struct store_ref r)
{
	if (m->nout == m->cout) {
		uint32_t c = m->cout ? 2 * m->cout : 256;
		struct store_ref *g = realloc(m->out, c * sizeof *g);
		if (!g)
			return false;
		m->out = g;
		m->cout = c;
	}
	m->out[m->nout++] = r;
	return true;
}

/* A key as text for messages. */
static void key_text(const struct merge *m, const struct st_vec *v, const int *cols, uint32_t r,
		     char *buf, size_t len)
{
	const struct st_vec *pv[MERGE_KEYS_MAX];
	int idx[MERGE_KEYS_MAX];
	for (uint32_t k = 0; k < m->nkeys; k++) {
		pv[k] = &v[cols[k]];
		idx[k] = (int)k;
	}
	store_key_text(pv, idx, m->nkeys, r, buf, len);
}

/* update "SET ...": the matched pairs of one target row group (its
 * columns cols) evaluated over the combined schema (target columns, t.,
 * s.) into new target rows, held for the new segment. */
static int merge_set_rows(struct merge *m, const struct st_vec *cols, uint64_t row0,
			  struct st_err *err)
{
	uint32_t T = m->tsc->nfields, S = m->ssc->nfields, n = m->npair;
	uint32_t na = expr_assign_count(m->set);
	struct st_vec *cv = calloc(2 * T + S + 1, sizeof *cv), *nv = calloc(na + 1, sizeof *nv);
	struct st_vec *out = calloc(T + 1, sizeof *out);
	void **tb = calloc(3 * (size_t)T + 1, sizeof *tb), **sb = calloc(3 * (size_t)S + 1, sizeof *sb);
	void **ab = calloc(3 * (size_t)na + 1, sizeof *ab), **ob = calloc(3 * (size_t)T + 1, sizeof *ob);
	uint32_t *all = malloc(((size_t)n + 1) * sizeof *all);
	int rc = cv && nv && out && tb && sb && ab && ob && all ? ST_OK
		 : st_seterr(err, ST_ENOMEM, "out of memory");
	for (uint32_t f = 0; f < T && rc == ST_OK; f++)
		if (store_gather(&cols[f], m->psel, n, &cv[f], &tb[3 * f]) != ST_OK)
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
	if (rc == ST_OK)
		rc = store_held_gather(&m->held, m->pref, n, cv + 2 * T, sb, err);
	for (uint32_t f = 0; f < T && rc == ST_OK; f++)
		cv[T + f] = cv[f];
	uint32_t bad = 0;
	for (uint32_t i = 0; i < na && rc == ST_OK; i++)
		if ((rc = expr_assign_eval(m->set, i, cv, n, &nv[i], &ab[3 * i], &bad, err)) != ST_OK) {
			char msg[ST_ERR_MSG_MAX];
			snprintf(msg, sizeof msg, "%s", err->msg);
			rc = st_seterr(err, rc, "table '%s': MERGE refused, nothing changed: the row at "
				       "position %llu of file %llu: %s", m->w->table,
				       (unsigned long long)(row0 + m->psel[bad]),
				       (unsigned long long)m->fid, msg);
		}
	for (uint32_t i = 0; i < n && all; i++)
		all[i] = i;
	/* The new rows: the target's, with the assigned columns replaced,
	 * copied out whole (the held batch owns its buffers). */
	for (uint32_t f = 0; f < T && rc == ST_OK; f++) {
		const struct st_vec *src = &cv[f];
		for (uint32_t i = 0; i < na; i++)
			if (m->set_col[i] == (int)f)
				src = &nv[i];
		if (store_gather(src, all, n, &out[f], &ob[3 * f]) != ST_OK)
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
	}
	if (rc == ST_OK && (rc = store_held_push(&m->upd, out, ob, n, err)) == ST_OK) {
		out = NULL; /* held now */
		ob = NULL;
	}
	for (uint32_t k = 0; k < 3 * T; k++) {
		if (tb)
			free(tb[k]);
		if (ob)
			free(ob[k]);
	}
	for (uint32_t k = 0; sb && k < 3 * S; k++)
		free(sb[k]);
	for (uint32_t k = 0; ab && k < 3 * na; k++)
		free(ab[k]);
	free(tb);
	free(sb);
	free(ab);
	free(ob);
	free(cv);
	free(nv);
	free(out);
	free(all);
	m->npair = 0;
	return rc;
}

/* The combined schema of update "SET ...": the target's columns by their
 * names and as t.<name>, the source's as s.<name>; the SET list parsed over
 * it, each assignment's target column found. */
static int merge_set_parse(struct merge *m, const char *set, const char *table,
			   struct st_err *err)
{
	uint32_t T = m->tsc->nfields, S = m->ssc->nfields;
	struct st_field *f = calloc(2 * T + S + 1, sizeof *f);
	if (!f)
		return st_seterr(err, ST_ENOMEM, "out of memory");
	for (uint32_t i = 0; i < T; i++) {
		f[i] = m->tsc->fields[i];
		f[T + i] = m->tsc->fields[i];
		snprintf(f[T + i].name, sizeof f[T + i].name, "t.%s", m->tsc->fields[i].name);
	}
	for (uint32_t i = 0; i < S; i++) {
		f[2 * T + i] = m->ssc->fields[i];
		snprintf(f[2 * T + i].name, sizeof f[2 * T + i].name, "s.%s", m->ssc->fields[i].name);
	}
	m->cs = (struct st_schema){2 * T + S, f};
	int rc = expr_assign_parse(set, &m->cs, &m->set, err);
	if (rc != ST_OK) {
		char msg[ST_ERR_MSG_MAX];
		snprintf(msg, sizeof msg, "%s", err->msg);
		return st_seterr(err, rc, "table '%s': MERGE update SET list: %s", table, msg);
	}
	uint32_t na = expr_assign_count(m->set);
	if (!(m->set_col = calloc(na + 1, sizeof *m->set_col)))
		return st_seterr(err, ST_ENOMEM, "out of memory");
	for (uint32_t i = 0; i < na; i++) {
		int c = expr_assign_column(m->set, i);
		if (c >= (int)(2 * T))
			return st_seterr(err, ST_EINVAL, "table '%s': MERGE update sets target columns, "
					 "not the source's '%s'", table, f[c].name);
		m->set_col[i] = c % (int)T;
		for (uint32_t k = 0; k < m->w->m.meta->nkey; k++)
			if (m->tsc->fields[m->set_col[i]].id == m->w->m.meta->key[k])
				return st_seterr(err, ST_EINVAL, "table '%s': MERGE update cannot change "
						 "key column '%s'", table,
						 m->tsc->fields[m->set_col[i]].name);
	}
	return ST_OK;
}

/* One target row group: its rows matched against the source. */
static int merge_rows(void *arg, const struct st_vec *cols, uint32_t rows, const uint32_t *sel,
		      uint32_t nsel, uint64_t row0, struct st_err *err)
{
	struct merge *m = arg;
	(void)rows;
	for (uint32_t j = 0; j < nsel; j++) {
		uint32_t r = sel[j];
		int64_t e = key_of(m, cols, m->tkey, r) ? key_find(m, false, (struct store_ref){0, 0})
							: -1;
		bool gone = false;
		if (e >= 0) {
			struct mkey *k = &m->ent[e];
			/* Two source rows would both change this row (Delta's rule; a
			 * MERGE that ignores matches changes nothing here). */
			if (k->nrows > 1 && m->o->matched != ST_MERGE_MATCHED_IGNORE) {
				char kt[256];
				key_text(m, cols, m->tkey, r, kt, sizeof kt);
				return st_seterr(err, ST_EINVAL, "table '%s': MERGE refused, nothing changed: "
						 "the target row with key (%s) is matched by %u source "
						 "rows", m->w->table, kt, k->nrows);
			}
			k->matched = true;
			if (m->o->matched == ST_MERGE_MATCHED_UPDATE_ALL && !push_ref(m, k->ref))
				return st_seterr(err, ST_ENOMEM, "out of memory");
			if (m->o->matched == ST_MERGE_MATCHED_UPDATE_SET) {
				if (m->npair == m->cpair) {
					uint32_t c = m->cpair ? 2 * m->cpair : 256;
					uint32_t *ps = realloc(m->psel, c * sizeof *ps);
					if (ps)
						m->psel = ps;
					struct store_ref *pr = ps ? realloc(m->pref, c * sizeof *pr) : NULL;
					if (!pr)
						return st_seterr(err, ST_ENOMEM, "out of memory");
					m->pref = pr;
					m->cpair = c;
				}
				m->psel[m->npair] = r;
				m->pref[m->npair++] = k->ref;
			}
			gone = m->o->matched != ST_MERGE_MATCHED_IGNORE;
			m->w->info_updated += m->o->matched == ST_MERGE_MATCHED_UPDATE_ALL ||
					      m->o->matched == ST_MERGE_MATCHED_UPDATE_SET;
			m->w->info_deleted += m->o->matched == ST_MERGE_MATCHED_DELETE;
		} else if (m->o->by_source == ST_MERGE_BY_SOURCE_DELETE) {
			gone = true;
			m->w->info_deleted++;
			if (m->w->rm_deletes &&
			    !store_push_u32(&m->dpos, &m->ndpos, &m->cdpos, (uint32_t)(row0 + r)))
				return st_seterr(err, ST_ENOMEM, "out of memory");
		}
		if (gone && !store_push_u32(&m->pos, &m->npos, &m->cpos, (uint32_t)(row0 + r)))
			return st_seterr(err, ST_ENOMEM, "out of memory");
	}
	return m->npair ? merge_set_rows(m, cols, row0, err) : ST_OK;
}

struct hitpos {
	uint32_t file, pos;
};

static int cmp_hitpos(const void *a, const void *b)
{
	const struct hitpos *x = a, *y = b;
	return x->file != y->file ? (x->file > y->file) - (x->file < y->file)
				  : (x->pos > y->pos) - (x->pos < y->pos);
}

/* A keyed target (STORE.md §4.6): each source key looked up in the key
 * index at the read version. update-all, delete and ignore read no target
 * file: the matched positions go by vector straight away; update SET reads
 * the files holding a match (merge_rows, as without an index). */
static int merge_by_index(struct merge *m, struct st_dml_result *res, struct st_err *err)
{
	st_store *s = m->s;
	struct staged *w = m->w;
	MDB_txn *txn = NULL;
	struct store_kix_view *v = NULL;
	struct hitpos *hp = NULL;
	uint32_t nhp = 0, nf = 0;
	bool *hit = NULL;
	bool set = m->o->matched == ST_MERGE_MATCHED_UPDATE_SET;
	int rc = ST_OK, mrc = store_read_begin(s, &txn);
	if (mrc != 0)
		rc = store_lmdb_err(err, mrc, "merging");
	else
		rc = store_kix_view_open(s, txn, w->m.meta, w->tid, w->read_version, &v, err);
	const struct file_rec *files = rc == ST_OK ? store_kix_view_files(v, &nf) : NULL;
	w->read_files = calloc(nf + 1, sizeof *w->read_files);
	w->rw = calloc(nf + 1, sizeof *w->rw);
	hit = calloc(nf + 1, sizeof *hit);
	hp = malloc(((size_t)m->keys.n + 1) * sizeof *hp);
	if (rc == ST_OK && (!w->read_files || !w->rw || !hit || !hp))
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
	for (uint32_t e = 0; e < m->keys.n && rc == ST_OK; e++) {
		struct mkey *k = &m->ent[e];
		uint32_t f, pos, kl;
		const uint8_t *kb = store_keyset_key(&m->keys, e, &kl);
		int found = store_kix_find(s, v, kb, kl, &f, &pos, err);
		if (found <= 0) {
			rc = found;
			continue;
		}
		hit[f] = true;
		if (set)
			continue; /* merge_rows matches the file's rows */
		if (k->nrows > 1 && m->o->matched != ST_MERGE_MATCHED_IGNORE) {
			char kt[256];
			uint8_t types[MERGE_KEYS_MAX];
			for (uint32_t i = 0; i < m->nkeys; i++)
				types[i] = m->tsc->fields[m->tkey[i]].type;
			store_key_bytes_text(kb, kl, types, m->nkeys, kt, sizeof kt);
			rc = st_seterr(err, ST_EINVAL, "table '%s': MERGE refused, nothing changed: the "
				       "target row with key (%s) is matched by %u source rows", w->table,
				       kt, k->nrows);
			break;
		}
		k->matched = true;
		if (m->o->matched == ST_MERGE_MATCHED_IGNORE)
			continue;
		if (m->o->matched == ST_MERGE_MATCHED_UPDATE_ALL && !push_ref(m, k->ref)) {
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			break;
		}
		w->info_updated += m->o->matched == ST_MERGE_MATCHED_UPDATE_ALL;
		w->info_deleted += m->o->matched == ST_MERGE_MATCHED_DELETE;
		hp[nhp++] = (struct hitpos){f, pos};
	}
	qsort(hp, nhp, sizeof *hp, cmp_hitpos);
	for (uint32_t i = 0; i < nhp && rc == ST_OK;) {
		uint32_t j = i;
		m->npos = 0;
		for (; j < nhp && hp[j].file == hp[i].file && rc == ST_OK; j++)
			if (!store_push_u32(&m->pos, &m->npos, &m->cpos, hp[j].pos))
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
		const struct file_rec *fr = &files[hp[i].file];
		if (rc == ST_OK)
			rc = stage_rows_gone(s, w, fr, m->npos == file_live_rows(fr) ? NULL : m->pos,
					     m->npos, res, err);
		i = j;
	}
	for (uint32_t i = 0; i < nf && rc == ST_OK; i++) {
		if (!hit[i] || !set) {
			res->files_skipped += !hit[i];
			continue;
		}
		res->files_read++;
		m->npos = 0;
		m->fid = files[i].fid;
		rc = store_file_match_cols(s, w->tid, &files[i], m->tsc, w->pred, NULL, NULL, merge_rows,
					   m, NULL, err);
		if (rc == ST_OK && m->npos)
			rc = stage_rows_gone(s, w, &files[i], m->npos == file_live_rows(&files[i]) ? NULL
							     : m->pos, m->npos, res, err);
	}
	free(hp);
	free(hit);
	store_kix_view_free(v);
	store_read_end(s, txn);
	return rc;
}

/* One side of an ON term: "t.col" (target) or "s.col" (source); the
 * prefix may also be the table's own name, or target./source. */
static int on_side(const char *p, size_t n, const char *table, const char *source,
		   bool *is_target, const char **col, size_t *clen)
{
	const char *dot = memchr(p, '.', n);
	if (!dot)
		return ST_EINVAL;
	size_t pl = (size_t)(dot - p);
	bool t = (pl == 1 && (*p == 't' || *p == 'T')) || (pl == 6 && !strncasecmp(p, "target", 6)) ||
		 (pl == strlen(table) && !strncmp(p, table, pl));
	bool s = (pl == 1 && (*p == 's' || *p == 'S')) || (pl == 6 && !strncasecmp(p, "source", 6)) ||
		 (pl == strlen(source) && !strncmp(p, source, pl));
	if (t == s)
		return ST_EINVAL;
	*is_target = t;
	*col = dot + 1;
	*clen = n - pl - 1;
	if (*clen >= 2 && (*col)[0] == '"' && (*col)[*clen - 1] == '"') { /* t."a b" */
		(*col)++;
		*clen -= 2;
	}
	return *clen ? ST_OK : ST_EINVAL;
}

/* ON: "X = Y {AND X = Y}" into m's key columns. */
static int merge_on(struct merge *m, const char *on, const char *table, const char *source,
		    struct st_err *err)
{
	const char *p = on;
	while (*p) {
		while (*p == ' ' || *p == '(' || *p == ')')
			p++;
		const char *end = p;
		/* the term runs to the next AND (a word) or the end */
		while (*end && !(end > p && end[-1] == ' ' && !strncasecmp(end, "AND ", 4)))
			end++;
		const char *eq = memchr(p, '=', (size_t)(end - p));
		if (!eq || m->nkeys == MERGE_KEYS_MAX)
			return st_seterr(err, ST_EINVAL, "MERGE --on: expected 't.col = s.col [AND ...]' "
					 "(at most %d terms), not '%s'", MERGE_KEYS_MAX, on);
		const char *a = p, *ae = eq, *b = eq + 1, *be = end;
		while (ae > a && (ae[-1] == ' ' || ae[-1] == ')'))
			ae--;
		while (*b == ' ' || *b == '(')
			b++;
		while (be > b && (be[-1] == ' ' || be[-1] == ')'))
			be--;
		bool ta, tb;
		const char *ca, *cb;
		size_t la, lb;
		if (on_side(a, (size_t)(ae - a), table, source, &ta, &ca, &la) != ST_OK ||
		    on_side(b, (size_t)(be - b), table, source, &tb, &cb, &lb) != ST_OK || ta == tb)
			return st_seterr(err, ST_EINVAL, "MERGE --on: each term compares a target column "
					 "(t.col) with a source column (s.col): '%.*s'",
					 (int)(end - p), p);
		if (!ta) {
			const char *c = ca;
			size_t l = la;
			ca = cb, la = lb, cb = c, lb = l;
		}
		int tc = st_schema_find(m->tsc, ca, la), sc = st_schema_find(m->ssc, cb, lb);
		if (tc < 0 || sc < 0)
			return st_seterr(err, ST_ENOTFOUND, "MERGE --on: %s has no column '%.*s'",
					 tc < 0 ? table : source, tc < 0 ? (int)la : (int)lb,
					 tc < 0 ? ca : cb);
		int tt = m->tsc->fields[tc].type, st = m->ssc->fields[sc].type;
		bool ok = tt == st || store_widens(st, tt) ||
			  (st_type_is_varlen(tt) && st_type_is_varlen(st));
		if (!ok)
			return st_seterr(err, ST_ETYPE, "MERGE --on: target column '%s' is %s, source "
					 "column '%s' is %s", m->tsc->fields[tc].name, st_type_name(tt),
					 m->ssc->fields[sc].name, st_type_name(st));
		m->tkey[m->nkeys] = tc;
		m->skey[m->nkeys] = sc;
		m->nkeys++;
		p = *end ? end + 4 : end;
	}
	return m->nkeys ? ST_OK : st_seterr(err, ST_EINVAL, "MERGE needs --on 't.col = s.col'");
}

/* Source rows refs (n) as target-schema vectors into v: columns by name
 * (widened), NULL where the source has none; NOT NULL checked. */
static int merge_batch(struct merge *m, const struct store_ref *refs, uint32_t n,
		       struct st_vec *v, void **bufs, void **wide, size_t *wcap, uint8_t *zeros,
		       struct st_err *err)
{
	struct st_vec *sv = calloc(m->ssc->nfields + 1, sizeof *sv);
	int rc = sv ? store_held_gather(&m->held, refs, n, sv, bufs, err)
		    : st_seterr(err, ST_ENOMEM, "out of memory");
	for (uint32_t f = 0; f < m->tsc->nfields && rc == ST_OK; f++) {
		const struct st_field *tf = &m->tsc->fields[f];
		int sc = st_schema_find(m->ssc, tf->name, strlen(tf->name));
		if (sc < 0) {
			v[f] = (struct st_vec){.type = tf->type, .n = n, .validity = zeros, .data = zeros,
					       .offsets = (const uint32_t *)zeros, .bytes = zeros};
		} else if (sv[sc].type != tf->type && !st_type_is_varlen(tf->type)) {
			if (store_vec_widen(&sv[sc], tf->type, &v[f], &wide[f], &wcap[f]) != ST_OK)
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
		} else {
			v[f] = sv[sc];
			v[f].type = tf->type;
		}
		for (uint32_t i = 0; rc == ST_OK && !tf->nullable && i < n; i++)
			if (!st_vec_is_valid(&v[f], i))
				rc = st_seterr(err, ST_ESCHEMA, "table '%s': MERGE refused, nothing changed: "
					       "column '%s' is NOT NULL and a row it would write has no "
					       "value for it", m->w->table, tf->name);
	}
	free(sv);
	return rc;
}

struct st_merge_src {
	struct st_schema sc;         /* the first batch's columns */
	struct store_held held;      /* the rows */
	uint64_t bytes;              /* their values' and strings' bytes */
};

uint64_t st_merge_src_bytes(const st_merge_src *src)
{
	return src->bytes;
}

int st_merge_src_new(st_merge_src **out, struct st_err *err)
{
	*out = calloc(1, sizeof **out);
	return *out ? ST_OK : st_seterr(err, ST_ENOMEM, "out of memory");
}

void st_merge_src_free(st_merge_src *src)
{
	if (!src)
		return;
	store_held_free(&src->held);
	free(src->sc.fields);
	free(src);
}

uint64_t st_merge_src_rows(const st_merge_src *src)
{
	return src->held.total;
}

/* Rows sel[0..n) of vectors v (nf of them) copied onto held. */
static int held_add(struct store_held *held, const struct st_vec *cols, const uint32_t *sel,
		    uint32_t n, struct st_err *err)
{
	uint32_t nf = held->nf;
	struct st_vec *v = calloc(nf + 1, sizeof *v);
	void **bufs = calloc(3 * (size_t)nf + 1, sizeof *bufs);
	int rc = v && bufs ? ST_OK : st_seterr(err, ST_ENOMEM, "out of memory");
	for (uint32_t f = 0; f < nf && rc == ST_OK; f++)
		if (store_gather(&cols[f], sel, n, &v[f], &bufs[3 * f]) != ST_OK)
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
	if (rc == ST_OK && (rc = store_held_push(held, v, bufs, n, err)) == ST_OK)
		return ST_OK;
	for (uint32_t k = 0; bufs && k < 3 * nf; k++)
		free(bufs[k]);
	free(bufs);
	free(v);
	return rc;
}

/* Every row i < n as a selection (NULL: out of memory). */
static uint32_t *all_rows(uint32_t n)
{
	uint32_t *all = malloc(((size_t)n + 1) * sizeof *all);
	for (uint32_t i = 0; all && i < n; i++)
		all[i] = i;
	return all;
}

int st_merge_src_add(st_merge_src *src, const struct st_batch *b, struct st_err *err)
{
	if (!src->sc.fields) {
		if (b->ncols == 0 || b->ncols > ST_MAX_COLUMNS)
			return st_seterr(err, ST_EINVAL, "a MERGE source has 1 to %d columns, not %u",
					 ST_MAX_COLUMNS, b->ncols);
		if (!(src->sc.fields = calloc(b->ncols, sizeof *src->sc.fields)))
			return st_seterr(err, ST_ENOMEM, "out of memory");
		for (uint32_t f = 0; f < b->ncols; f++) {
			struct st_field *fd = &src->sc.fields[f];
			size_t len = strlen(b->names[f]);
			if (len == 0 || len > ST_NAME_MAX || !st_type_is_supported(b->cols[f].type) ||
			    st_schema_find(&src->sc, b->names[f], len) >= 0)
				return st_seterr(err, ST_EINVAL, "MERGE source column %u ('%s'): a name of "
						 "1 to %d bytes, used once, and a known type", f,
						 b->names[f], ST_NAME_MAX);
			memcpy(fd->name, b->names[f], len + 1);
			fd->type = b->cols[f].type;
			fd->nullable = true;
			fd->id = f + 1;
			src->sc.nfields = f + 1;
		}
		src->held.nf = b->ncols;
	}
	if (b->ncols != src->sc.nfields)
		return st_seterr(err, ST_EINVAL, "a MERGE source batch has %u columns, the first had %u",
				 b->ncols, src->sc.nfields);
	for (uint32_t f = 0; f < b->ncols; f++)
		if (strcmp(b->names[f], src->sc.fields[f].name) || b->cols[f].type != src->sc.fields[f].type)
			return st_seterr(err, ST_EINVAL, "a MERGE source batch's column %u is '%s' %s, the "
					 "first batch's '%s' %s", f, b->names[f],
					 st_type_name(b->cols[f].type), src->sc.fields[f].name,
					 st_type_name(src->sc.fields[f].type));
	if (!b->nrows)
		return ST_OK;
	for (uint32_t f = 0; f < b->ncols; f++) {
		const struct st_vec *v = &b->cols[f];
		src->bytes += st_type_is_varlen(v->type)
				      ? (uint64_t)(v->dict ? v->dict->offsets[v->dict->n] : v->offsets[b->nrows]) +
					      4ull * b->nrows
				      : (uint64_t)st_type_width(v->type) * b->nrows;
	}
	uint32_t *all = all_rows(b->nrows);
	int rc = all ? held_add(&src->held, b->cols, all, b->nrows, err)
		     : st_seterr(err, ST_ENOMEM, "out of memory");
	free(all);
	return rc;
}

static int merge_impl(st_store *s, const char *table, const char *source, st_merge_src *src,
		      const struct st_merge_opts *opts, struct st_dml_result *res,
		      struct st_err *err);

int st_merge(st_store *s, const char *table, const char *source,
	     const struct st_merge_opts *opts, struct st_dml_result *res, struct st_err *err)
{
	return merge_impl(s, table, source, NULL, opts, res, err);
}

int st_merge_from(st_store *s, const char *table, st_merge_src *src, const char *name,
		  const struct st_merge_opts *opts, struct st_dml_result *res, struct st_err *err)
{
	int rc = merge_impl(s, table, name, src, opts, res, err);
	st_merge_src_free(src);
	return rc;
}

/* MERGE from the table source, or from src's rows when src is given. */
static int merge_impl(st_store *s, const char *table, const char *source, st_merge_src *src,
		      const struct st_merge_opts *opts, struct st_dml_result *res,
		      struct st_err *err)
{
	static const struct st_merge_opts none = {0};
	st_txn *t = NULL;
	MDB_txn *txn = NULL;
	st_scan *sc = NULL;
	struct table_head h = {0};
	struct file_rec *live = NULL;
	uint32_t nlive = 0;
	struct seg_writer *out = NULL;
	struct merge m = {.s = s, .o = opts ? opts : &none};
	struct st_dml_opts dopts = {m.o->app_id, m.o->app_version};
	struct st_col_stats *st = NULL;
	memset(res, 0, sizeof *res);
	if (!source || !*source)
		return st_seterr(err, ST_EINVAL, "table '%s': MERGE needs a source table", table);
	int rc = dml_begin(s, table, "MERGE", "true", &dopts, &t, &txn, &h, res, err);
	if (rc != ST_OK || !t)
		goto out;
	struct staged *w = &t->w[0];
	m.w = w;
	m.tsc = &w->m.meta->schema;
	store_read_end(s, txn);
	txn = NULL;
	/* The source, whole, in memory. */
	if (src) {
		if (!src->sc.fields) {
			rc = st_seterr(err, ST_EINVAL, "table '%s': MERGE: the source '%s' has no columns",
				       table, source);
			goto out;
		}
		m.ssc = &src->sc;
		m.held = src->held; /* taken over */
		memset(&src->held, 0, sizeof src->held);
	} else {
		if ((rc = st_scan_open(s, source, (struct st_at){ST_AT_LATEST, 0}, NULL, 0, NULL, &sc,
				       err)) != ST_OK)
			goto out;
		m.ssc = &st_scan_metadata(sc)->schema;
		m.held.nf = m.ssc->nfields;
	}
	if ((rc = merge_on(&m, m.o->on ? m.o->on : "", table, source, err)) != ST_OK)
		goto out;
	/* A table with a declared key merges on exactly that key: then updated
	 * rows keep their keys and inserted ones are new (checked below for
	 * repeats among themselves). */
	const struct act_metadata *tm = w->m.meta;
	bool key_on = tm->nkey == m.nkeys;
	for (uint32_t i = 0; key_on && i < tm->nkey; i++) {
		bool found = false;
		for (uint32_t j = 0; j < m.nkeys; j++)
			found |= m.tsc->fields[m.tkey[j]].id == tm->key[i];
		key_on = found;
	}
	if (tm->nkey && !key_on) {
		rc = st_seterr(err, ST_EINVAL, "table '%s' has a declared key: MERGE --on must "
			       "match exactly its key columns", table);
		goto out;
	}
	if (m.o->matched == ST_MERGE_MATCHED_UPDATE_SET &&
	    (rc = merge_set_parse(&m, m.o->set ? m.o->set : "", table, err)) != ST_OK)
		goto out;
	m.upd.nf = m.tsc->nfields;
	bool writes = m.o->matched == ST_MERGE_MATCHED_UPDATE_ALL ||
		      m.o->not_matched == ST_MERGE_NOT_MATCHED_INSERT_ALL;
	for (uint32_t f = 0; writes && f < m.ssc->nfields; f++) {
		const struct st_field *sf = &m.ssc->fields[f];
		int tc = st_schema_find(m.tsc, sf->name, strlen(sf->name));
		if (tc < 0) {
			rc = st_seterr(err, ST_ESCHEMA, "table '%s': MERGE: source column '%s' is not in "
				       "the table (add it with alter add-column first)", table, sf->name);
			goto out;
		}
		int tt = m.tsc->fields[tc].type;
		if (tt != sf->type && !store_widens(sf->type, tt) &&
		    !(st_type_is_varlen(tt) && st_type_is_varlen(sf->type))) {
			rc = st_seterr(err, ST_ESCHEMA, "table '%s': MERGE: source column '%s' is %s, the "
				       "table's is %s", table, sf->name, st_type_name(sf->type),
				       st_type_name(tt));
			goto out;
		}
	}
	const struct st_scan_batch *b;
	while (sc && rc == ST_OK && (rc = st_scan_next(sc, &b, err)) == ST_OK && b) {
		uint32_t *all = b->sel ? NULL : all_rows(b->rows);
		const uint32_t *sel = b->sel ? b->sel : all;
		rc = sel ? held_add(&m.held, b->cols, sel, b->nsel, err)
			 : st_seterr(err, ST_ENOMEM, "out of memory");
		free(all);
	}
	if (rc != ST_OK)
		goto out;
	/* The hash of the source keys; the key range of the first column
	 * prunes target files (and makes the conflict check's predicate). */
	uint64_t nsrc = m.held.total;
	m.ent = malloc((nsrc + 1) * sizeof *m.ent);
	m.row_ent = malloc((nsrc + 1) * sizeof *m.row_ent);
	if (!m.ent || !m.row_ent) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory for %llu source rows",
			       (unsigned long long)nsrc);
		goto out;
	}
	bool range = m.o->by_source != ST_MERGE_BY_SOURCE_DELETE &&
		     !st_type_is_varlen(m.tsc->fields[m.tkey[0]].type) &&
		     m.tsc->fields[m.tkey[0]].type != ST_TYPE_BOOL;
	double lo = 0, hi = 0;
	bool any = false, fl = m.tsc->fields[m.tkey[0]].type == ST_TYPE_FLOAT64;
	uint64_t gi = 0;
	bool oom = false;
	for (uint32_t bi = 0; bi < m.held.n; bi++)
		for (uint32_t r = 0; r < m.held.rows[bi]; r++, gi++) {
			struct store_ref ref = {bi, r};
			int64_t e = key_of(&m, m.held.vecs[bi], m.skey, r) ? key_find(&m, true, ref) : -1;
			oom |= e == -2;
			m.row_ent[gi] = e < 0 ? -1 : e;
			if (m.row_ent[gi] < 0 || !range)
				continue;
			const uint8_t *kb = m.tmp.data; /* the first key column's 8 bytes */
			double x;
			if (fl)
				memcpy(&x, kb, 8);
			else
				x = (double)(int64_t)st_get_le64(kb);
			lo = any && lo < x ? lo : x;
			hi = any && hi > x ? hi : x;
			any = true;
		}
	if (oom || m.tmp.oom) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	char pred[256] = "true";
	if (range && any && fl)
		snprintf(pred, sizeof pred, "\"%s\" >= %.17g AND \"%s\" <= %.17g",
			 m.tsc->fields[m.tkey[0]].name, lo, m.tsc->fields[m.tkey[0]].name, hi);
	else if (range && any)
		snprintf(pred, sizeof pred, "\"%s\" >= %lld AND \"%s\" <= %lld",
			 m.tsc->fields[m.tkey[0]].name, (long long)lo, m.tsc->fields[m.tkey[0]].name,
			 (long long)hi);
	else if (range)
		snprintf(pred, sizeof pred, "false");
	if ((rc = expr_parse(pred, m.tsc, &w->pred, err)) != ST_OK)
		goto out;
	/* The target: with a declared key, the rows the index finds; else the
	 * files the key range may touch, their rows matched. */
	if (tm->nkey && m.o->by_source != ST_MERGE_BY_SOURCE_DELETE) {
		rc = merge_by_index(&m, res, err);
		goto matched;
	}
	if ((rc = store_read_begin(s, &txn)) != 0) {
		rc = store_lmdb_err(err, rc, "merging");
		goto out;
	}
	rc = store_files_at(s, txn, w->tid, w->read_version, &live, &nlive, err);
	store_read_end(s, txn);
	txn = NULL;
	st = calloc(m.tsc->nfields + 1, sizeof *st);
	w->read_files = calloc(nlive + 1, sizeof *w->read_files);
	w->rw = calloc(nlive + 1, sizeof *w->rw);
	/* Updating and deleting: each file's deleted rows are recorded with its
	 * remove, for the change feed (ACTIONS.md). */
	bool both = m.o->by_source == ST_MERGE_BY_SOURCE_DELETE &&
		    (m.o->matched == ST_MERGE_MATCHED_UPDATE_ALL ||
		     m.o->matched == ST_MERGE_MATCHED_UPDATE_SET);
	if (both)
		w->rm_deletes = calloc(nlive + 1, sizeof *w->rm_deletes);
	if (rc == ST_OK && (!st || !w->read_files || !w->rw || (both && !w->rm_deletes)))
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
	bool keycols[ST_MAX_COLUMNS] = {false};
	for (uint32_t k = 0; k < m.nkeys; k++)
		keycols[m.tkey[k]] = true;
	for (uint32_t i = 0; i < nlive && rc == ST_OK; i++) {
		store_file_stats(m.tsc, &live[i], st);
		if (expr_may_match(w->pred, st) == EXPR_MATCH_NONE) {
			res->files_skipped++;
			continue;
		}
		res->files_read++;
		m.npos = m.ndpos = 0;
		m.fid = live[i].fid;
		/* Matching needs the key columns; update SET reads the whole row. */
		rc = store_file_match_cols(s, w->tid, &live[i], m.tsc, w->pred, NULL, NULL, merge_rows,
					   &m, m.set ? NULL : keycols, err);
		if (rc == ST_OK && m.npos)
			rc = stage_rows_gone(s, w, &live[i], m.npos == file_live_rows(&live[i]) ? NULL
							     : m.pos, m.npos, res, err);
		if (rc == ST_OK && m.ndpos && live[i].rows <= UINT32_MAX)
			rc = dv_encode(m.dpos, m.ndpos, (uint32_t)live[i].rows,
				       &w->rm_deletes[w->nread - 1], err);
	}
matched:
	if (rc == ST_OK)
		rc = stage_links_sync(w, err);
	uint32_t nupd = m.nout;
	for (uint64_t r = 0; rc == ST_OK && m.o->not_matched == ST_MERGE_NOT_MATCHED_INSERT_ALL &&
			     r < nsrc; r++)
		if (m.row_ent[r] < 0 || !m.ent[m.row_ent[r]].matched) {
			/* source row r in held order */
			uint32_t bi = 0;
			uint64_t at = r;
			while (at >= m.held.rows[bi])
				at -= m.held.rows[bi++];
			if (!push_ref(&m, (struct store_ref){bi, (uint32_t)at}))
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
		}
	if (rc == ST_OK && tm->nkey && m.nout > nupd) {
		/* Inserted rows: keys no target row has; not twice either. */
		struct store_keys *ks = NULL;
		if ((rc = store_keys_new(tm, &ks, err)) == ST_OK) {
			const struct st_vec *v[ST_MAX_COLUMNS];
			for (uint32_t i = nupd; i < m.nout && rc == ST_OK; i++) {
				struct store_ref ref = m.out[i];
				for (uint32_t f = 0; f < m.tsc->nfields; f++) {
					int c = st_schema_find(m.ssc, m.tsc->fields[f].name,
							       strlen(m.tsc->fields[f].name));
					v[f] = c >= 0 ? &m.held.vecs[ref.b][c] : NULL;
				}
				rc = store_keys_add_row(ks, table, v, ref.r, i - nupd, err);
			}
		}
		store_keys_free(ks);
	}
	if (rc != ST_OK)
		goto out;
	res->rows_updated = nupd;
	res->rows_inserted = m.nout - nupd;
	res->rows_deleted = w->info_deleted;
	nupd += (uint32_t)m.upd.total;
	res->rows_updated = nupd;
	if (!w->nread && !m.nout && !m.upd.total && !w->app_id) {
		res->commit = (struct st_commit_result){.version = h.version, .lsn = h.lsn,
							.time_us = h.time_us, .noop = true};
		goto out;
	}
	/* The rows written: updated ones, then inserted ones, in one segment. */
	if (m.nout || m.upd.total) {
		bool mem = m.nout + m.upd.total <= STORE_INLINE_ROWS;
		if ((rc = dml_segment_open(s, w, m.tsc, mem, &out, err)) != ST_OK)
			goto out;
		uint32_t chunk = 65536, F = m.tsc->nfields;
		struct st_vec *v = calloc(F + 1, sizeof *v);
		void **bufs = calloc(3 * (size_t)m.ssc->nfields + 1, sizeof *bufs);
		void **wide = calloc(F + 1, sizeof *wide);
		size_t *wcap = calloc(F + 1, sizeof *wcap);
		uint8_t *zeros = calloc((size_t)chunk * 8 + 8, 1);
		if (!v || !bufs || !wide || !wcap || !zeros)
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
		/* update "SET ..."'s rows first, already in the target's schema */
		for (uint32_t bi = 0; bi < m.upd.n && rc == ST_OK; bi++)
			if ((rc = store_check_constraints(table, w->m.meta, m.upd.vecs[bi], m.upd.rows[bi],
							  0, err)) == ST_OK)
				rc = store_seg_append(s, out, m.upd.vecs[bi], m.upd.rows[bi], err);
		for (uint32_t at = 0; at < m.nout && rc == ST_OK;) {
			uint32_t n = m.nout - at < chunk ? m.nout - at : chunk;
			if ((rc = merge_batch(&m, m.out + at, n, v, bufs, wide, wcap, zeros, err)) ==
				    ST_OK &&
			    (rc = store_check_constraints(table, w->m.meta, v, n, at, err)) == ST_OK)
				rc = store_seg_append(s, out, v, n, err);
			for (uint32_t k = 0; bufs && k < 3 * m.ssc->nfields; k++) {
				free(bufs[k]);
				bufs[k] = NULL;
			}
			at += n;
		}
		for (uint32_t f = 0; wide && f < F; f++)
			free(wide[f]);
		free(v);
		free(bufs);
		free(wide);
		free(wcap);
		free(zeros);
		if (rc != ST_OK)
			goto out;
		if ((rc = dml_segment_close(s, w, &out, mem, m.tsc, err)) != ST_OK)
			goto out;
	}
	static const char *const mn[] = {"ignore", "update-all", "delete", "update"};
	char clauses[1024], settext[600] = "";
	if (m.set) {
		char stext[512];
		expr_assign_format(m.set, &m.cs, stext, sizeof stext);
		snprintf(settext, sizeof settext, " SET %s", stext);
	}
	snprintf(clauses, sizeof clauses, "source=%s on=%s matched=%s%s not-matched=%s "
		 "not-matched-by-source=%s", source, m.o->on, mn[m.o->matched & 3], settext,
		 m.o->not_matched == ST_MERGE_NOT_MATCHED_INSERT_ALL ? "insert-all" : "ignore",
		 m.o->by_source == ST_MERGE_BY_SOURCE_DELETE ? "delete" : "ignore");
	w->set_key = "merge";
	if (!(w->set_text = strdup(clauses))) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	st_scan_close(sc);
	sc = NULL;
	rc = store_dml_commit(s, &t, &res->commit, err);
out:
	seg_writer_abort(out);
	st_scan_close(sc);
	store_read_end(s, txn);
	head_fini(&h);
	st_txn_abort(t);
	file_recs_free(live, nlive);
	free(st);
	store_held_free(&m.held);
	store_keyset_fini(&m.keys);
	st_buf_free(&m.tmp);
	free(m.ent);
	free(m.row_ent);
	free(m.out);
	free(m.pos);
	free(m.dpos);
	free(m.psel);
	free(m.pref);
	free(m.set_col);
	free(m.cs.fields);
	expr_assign_free(m.set);
	store_held_free(&m.upd);
	if (rc != ST_OK)
		memset(res, 0, sizeof *res);
	return rc;
}
