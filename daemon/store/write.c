/*
 * daemon/store/write.c — staging a write (st_write, st_txn_write; the
 * streaming load in load.c uses the same steps): check every batch against
 * the schema (schema.c), write the segment (in memory for small writes,
 * else temp file, fsync, rename, directory fsync: format/segment.h),
 * remember the version read; then st_txn_commit (group_commit.c) decides
 * it. A refused batch writes nothing; an I/O error writing a segment makes
 * the store refuse writes until reopen (DESIGN.md §10).
 */
#include <errno.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <limits.h>

#include "daemon/store/write_int.h"
#include "format/expr.h"
#include "format/segment.h"


static int app_open(st_store *s, const char *path, const struct colmap *m, bool mem,
		    struct appender *a, struct st_err *err)
{
	const struct st_schema *sc = &m->meta->schema;
	/* Small writes (in memory) encode on the caller's thread alone. */
	struct seg_writer_opts o = {.row_group_rows = s->opts.row_group_rows, .io = s->opts.io,
				    .threads = mem ? 1 : s->enc_threads};
	memset(a, 0, sizeof *a);
	a->mem = mem;
	if (!(a->vecs = malloc((sc->nfields + 1) * sizeof *a->vecs))) /* app_add sets them */
		return st_seterr(err, ST_ENOMEM, "out of memory");
	return mem ? seg_writer_open_mem(sc, &o, &a->w, err) : seg_writer_open(path, sc, &o, &a->w, err);
}

/* Append batches (already checked by check_batches) after the table's
 * CHECK constraints pass on them. */
static int app_add(struct appender *a, const struct colmap *m, const struct st_batch *b,
		   uint32_t nb, struct st_err *err)
{
	const struct st_schema *sc = &m->meta->schema;
	int rc = ST_OK;
	for (uint32_t k = 0; k < nb && rc == ST_OK; k++) {
		/* A zeroed buffer serves as an all-null column: validity 0, values 0
		 * (needed when the write leaves out some of the table's columns). */
		size_t need = ((size_t)b[k].nrows + 1) * 8;
		if (m->ncols < sc->nfields && need > a->zlen) {
			free(a->zeros);
			a->zlen = need;
			if (!(a->zeros = calloc(a->zlen, 1))) {
				a->zlen = 0;
				return st_seterr(err, ST_ENOMEM, "out of memory");
			}
		}
		for (uint32_t f = 0; f < sc->nfields; f++) {
			int i = m->batch_of[f];
			a->vecs[f] = i >= 0 ? b[k].cols[i]
				: (struct st_vec){.type = sc->fields[f].type, .n = b[k].nrows,
						  .validity = a->zeros, .data = a->zeros,
						  .offsets = (const uint32_t *)a->zeros, .bytes = a->zeros};
		}
		if ((rc = store_check_constraints(m->meta->name, m->meta, a->vecs, b[k].nrows, a->rows,
						   err)) == ST_OK &&
		    (rc = seg_writer_append(a->w, a->vecs, b[k].nrows, err)) == ST_OK)
			a->rows += b[k].nrows;
	}
	return rc;
}

/*
 * Finish the segment: fills info. A streamed one is durable at its path;
 * an in-memory one goes to *bytes (malloc'd; stage_finish decides where
 * it lives).
 */
static int app_close(struct appender *a, struct seg_file_info *info, uint8_t **bytes,
		     size_t *len, struct st_err *err)
{
	int rc;
	*bytes = NULL;
	*len = 0;
	if (!a->mem)
		rc = seg_writer_close(a->w, info, err);
	else
		rc = seg_writer_close_mem(a->w, info, bytes, len, err);
	a->w = NULL;
	return rc;
}

static void app_fini(struct appender *a)
{
	seg_writer_abort(a->w);
	free(a->vecs);
	free(a->zeros);
	memset(a, 0, sizeof *a);
}

int store_segment_failed(st_store *s, int rc, struct st_err *err)
{
	if (rc > 0 && rc != ENOSPC && rc != EDQUOT && rc != ENOMEM) {
		char m[ST_ERR_MSG_MAX];
		snprintf(m, sizeof m, "%s", err ? err->msg : strerror(rc));
		store_fail(s, err, "%s", m);
		rc = ST_EFAILED;
	}
	return rc;
}

int store_seg_append(st_store *s, struct seg_writer *w, const struct st_vec *v, uint32_t n,
		     struct st_err *err)
{
	return store_segment_failed(s, seg_writer_append(w, v, n, err), err);
}

/* ---- transactions ------------------------------------------------------ */



/* The segment path of w's new file (w->tid, w->add.file_id). */
int store_staged_path(st_store *s, struct staged *w, struct st_err *err)
{
	size_t len = strlen(s->dir) + 48; /* what store_seg_path needs */
	if (!(w->path = malloc(len)))
		return st_seterr(err, ST_ENOMEM, "out of memory");
	store_seg_path(s, w->tid, w->add.file_id, w->path, len);
	return ST_OK;
}

static void staged_fini(struct staged *w)
{
	if (w->written)
		unlink(w->path); /* no commit references it */
	free(w->path);
	store_colmap_meta_fini(&w->m);
	store_colmap_fini(&w->m);
	seg_file_info_fini(&w->info);
	free(w->add.field_ids);
	free(w->inl);
	free(w->read_files);
	for (uint32_t i = 0; w->rm_deletes && i < w->nread; i++)
		st_buf_free(&w->rm_deletes[i]);
	free(w->rm_deletes);
	free(w->app_id);
	free(w->set_text);
	free(w->where_text);
	store_keys_free(w->keys);
	expr_free(w->key_pred);
	free(w->keys_replaced);
	store_kix_fini(&w->kix);
	expr_free(w->pred);
	for (uint32_t i = 0; i < w->nrw; i++)
		store_rewrite_fini(&w->rw[i]);
	free(w->rw);
	st_buf_free(&w->crec);
	st_buf_free(&w->frec);
}

int st_txn_begin(st_store *s, st_txn **out, struct st_err *err)
{
	if (!(*out = malloc(sizeof **out)))
		return st_seterr(err, ST_ENOMEM, "out of memory");
	**out = (st_txn){.s = s};
	return ST_OK;
}

void st_txn_abort(st_txn *t)
{
	if (!t)
		return;
	for (uint32_t i = 0; i < t->n; i++)
		staged_fini(&t->w[i]);
	free(t->w);
	free(t);
}

uint8_t store_isolation_of(const struct act_metadata *m)
{
	for (uint32_t i = 0; i < m->nprops; i++)
		if (!strcasecmp(m->props[i].key, "isolation") &&
		    !strcasecmp(m->props[i].val, "WriteSerializable"))
			return ACT_ISO_WRITE_SERIALIZABLE;
	return ACT_ISO_SERIALIZABLE;
}

/* The recorded app version of app_id on table tid into *v (0 when the app
 * never committed). A failed lookup is an error, never "absent": taking it
 * for 0 would apply an idempotent write twice. */
int store_app_version_of(st_store *s, MDB_txn *txn, uint64_t tid, const char *app_id,
			  uint64_t *v, struct st_err *err)
{
	uint8_t key[APP_KEY_MAX];
	MDB_val k = app_key(key, tid, app_id), d;
	int mrc = store_get(s, txn, &k, &d);
	*v = 0;
	if (mrc == MDB_NOTFOUND)
		return ST_OK;
	if (mrc != 0)
		return store_lmdb_err(err, mrc, "reading the app version of an idempotent write");
	if (d.mv_size != 8)
		return st_seterr(err, ST_ECORRUPT,
				 "table id %llu: the app version record of '%s' is damaged (%zu bytes, "
				 "expected 8)", (unsigned long long)tid, app_id, d.mv_size);
	*v = st_get_le64(d.mv_data);
	return ST_OK;
}

int store_stage_app(st_store *s, MDB_txn *txn, struct staged *w, const char *app_id,
		    uint64_t app_version, struct st_err *err)
{
	uint64_t have;
	int rc;
	if (!app_id)
		return ST_OK;
	if (!(w->app_id = strdup(app_id)))
		return st_seterr(err, ST_ENOMEM, "out of memory");
	w->app_version = app_version;
	if ((rc = store_app_version_of(s, txn, w->tid, app_id, &have, err)) != ST_OK)
		return rc;
	w->noop = have >= app_version;
	return ST_OK;
}

/* Every new row must match the predicate it replaces. */
static int rows_match(const struct staged *w, const struct st_batch *b, uint32_t nb,
		      uint64_t row_base, struct st_err *err)
{
	const struct st_schema *sc = &w->m.meta->schema;
	int rc = ST_OK;
	uint64_t row0 = row_base;
	struct st_vec *vecs = calloc(sc->nfields, sizeof *vecs);
	uint32_t *sel = NULL;
	uint8_t *zeros = NULL;
	for (uint32_t k = 0; k < nb && rc == ST_OK; k++) {
		free(sel);
		free(zeros);
		sel = malloc(((size_t)b[k].nrows + 1) * 4);
		zeros = calloc(((size_t)b[k].nrows + 1) * 8, 1);
		if (!vecs || !sel || !zeros) {
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			break;
		}
		for (uint32_t f = 0; f < sc->nfields; f++)
			vecs[f] = w->m.batch_of[f] >= 0 ? b[k].cols[w->m.batch_of[f]]
				  : (struct st_vec){.type = sc->fields[f].type, .n = b[k].nrows,
						    .validity = zeros, .data = zeros,
						    .offsets = (const uint32_t *)zeros, .bytes = zeros};
		uint32_t n;
		if ((rc = expr_eval(w->pred, vecs, b[k].nrows, sel, &n, err)) != ST_OK)
			break;
		if (n < b[k].nrows) {
			uint32_t bad = 0;
			while (bad < n && sel[bad] == bad)
				bad++;
			rc = st_seterr(err, ST_ESCHEMA,
				       "table '%s': row %llu of the write does not match the replace-where "
				       "predicate, so it would not be replaced by this write", w->table,
				       (unsigned long long)(row0 + bad));
		}
		row0 += b[k].nrows;
	}
	free(vecs);
	free(sel);
	free(zeros);
	return rc;
}

/*
 * A staged write is built in three steps, so that a load can stream:
 * stage_begin (read the head, map the columns from the first batch, stage
 * what an overwrite or replace-where removes, open the segment),
 * stage_add (check and append rows, any number of times), stage_finish
 * (close the segment; the write then counts in t). The entry being built
 * is t->w[t->n]; stage_fail discards it.
 */
int store_stage_begin(st_txn *t, const char *table, const struct st_batch *hdr,
		       const struct st_write_opts *opts, bool mem, struct appender *app,
		       struct st_err *err)
{
	static const struct st_write_opts defaults = {0};
	st_store *s = t->s;
	int rc = ST_OK, mrc;
	MDB_txn *txn = NULL;
	struct table_head h = {0};
	struct meta_ref *ref = NULL;
	memset(app, 0, sizeof *app);
	/* The entry exists (zeroed) from here, so stage_fail always has one. */
	struct staged *grown = realloc(t->w, (t->n + 1) * sizeof *grown);
	if (!grown)
		return st_seterr(err, ST_ENOMEM, "out of memory");
	t->w = grown;
	struct staged *w = &t->w[t->n];
	memset(w, 0, sizeof *w);
	if (!opts)
		opts = &defaults;
	if (opts->overwrite_schema && opts->mode != ST_WRITE_OVERWRITE)
		return st_seterr(err, ST_EINVAL,
				 "table '%s': overwrite_schema goes only with a full overwrite", table);
	if (opts->replace_where && opts->mode != ST_WRITE_APPEND)
		return st_seterr(err, ST_EINVAL, "table '%s': replace-where goes with append mode", table);
	if (opts->app_id && (!opts->app_id[0] || strlen(opts->app_id) > 255))
		return st_seterr(err, ST_EINVAL, "app id must be 1 to 255 bytes");
	for (uint32_t i = 0; i < t->n; i++)
		if (!strcmp(t->w[i].table, table))
			return st_seterr(err, ST_EINVAL,
					 "table '%s' is already written in this transaction", table);
	size_t tlen = strnlen(table, sizeof w->table - 1); /* longer: head_get refuses it */
	memcpy(w->table, table, tlen);
	w->table[tlen] = '\0';
	w->t0 = store_now_us();
	w->overwrite = opts->mode == ST_WRITE_OVERWRITE;
	if ((mrc = store_read_begin(s, &txn)) != 0) {
		rc = store_lmdb_err(err, mrc, "writing");
		goto out;
	}
	if ((rc = store_meta_get(s, txn, table, &h, &ref, err)) != ST_OK)
		goto out;
	w->tid = h.tid;
	w->read_version = h.version;
	w->isolation = store_isolation_of(ref->meta);
	if ((rc = store_stage_app(s, txn, w, opts->app_id, opts->app_version, err)) != ST_OK ||
	    w->noop)
		goto out; /* an error, or already committed: nothing to write */
	rc = store_map_columns(table, ref, hdr, opts->merge_schema, opts->overwrite_schema, &w->m, err);
	ref = NULL; /* w->m has it now */
	if (rc != ST_OK || (rc = store_keys_new(w->m.meta, &w->keys, err)) != ST_OK)
		goto out;
	if (w->keys && opts->replace_where && !(w->keys_replaced = strdup(opts->replace_where))) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	if (w->overwrite && (rc = store_live_files(s, txn, h.tid, false, &w->read_files, &w->nread, err)) != ST_OK)
		goto out;
	/* Replace-where: the matching rows are deleted as by DELETE (deletion
	 * vectors, STORE.md §4.1); the new rows must match the predicate. */
	if (opts->replace_where &&
	    (rc = store_stage_delete(s, txn, w, opts->replace_where, NULL, NULL, NULL, NULL,
				     err)) != ST_OK)
		goto out;
	store_read_end(s, txn);
	txn = NULL;
	w->add.file_id = store_next_fid(s);
	/* An in-memory segment gets a path only if it turns out too big to
	 * live inline (stage_finish). */
	if (!mem && (rc = store_staged_path(s, w, err)) != ST_OK)
		goto out;
	if ((rc = app_open(s, w->path, &w->m, mem, app, err)) != ST_OK)
		rc = store_segment_failed(s, rc, err);
out:
	store_read_end(s, txn);
	store_meta_put(ref);
	return rc;
}

int store_stage_add(st_txn *t, struct appender *app, const struct st_batch *b, uint32_t nb,
		     struct st_err *err)
{
	struct staged *w = &t->w[t->n];
	int rc;
	if (w->noop)
		return ST_OK;
	if ((rc = store_check_batches(w->table, &w->m, b, nb, app->rows, err)) != ST_OK ||
	    (w->pred && (rc = rows_match(w, b, nb, app->rows, err)) != ST_OK))
		return rc;
	uint64_t row0 = app->rows;
	for (uint32_t k = 0; w->keys && k < nb && rc == ST_OK; k++) {
		const struct st_vec *v[ST_MAX_COLUMNS];
		for (uint32_t f = 0; f < w->m.meta->schema.nfields; f++)
			v[f] = w->m.batch_of[f] >= 0 ? &b[k].cols[w->m.batch_of[f]] : NULL;
		rc = store_keys_add(w->keys, w->table, v, b[k].nrows, row0, err);
		row0 += b[k].nrows;
	}
	if (rc != ST_OK)
		return rc;
	rc = app_add(app, &w->m, b, nb, err);
	return rc < 0 ? rc : store_segment_failed(t->s, rc, err);
}

int store_stage_finish(st_txn *t, struct appender *app, struct st_err *err)
{
	struct staged *w = &t->w[t->n];
	int rc = ST_OK;
	if (!w->noop) {
		w->rows = app->rows;
		if ((rc = app_close(app, &w->info, &w->inl, &w->inl_len, err)) != ST_OK)
			return store_segment_failed(t->s, rc, err);
		if (w->inl && w->inl_len > t->s->opts.inline_max) {
			/* Too big to live inline in LMDB: a file, made durable now. */
			if ((rc = store_staged_path(t->s, w, err)) == ST_OK)
				rc = store_write_file(t->s, w->path, w->inl, w->inl_len, err);
			free(w->inl);
			w->inl = NULL;
			if (rc != ST_OK)
				return store_segment_failed(t->s, rc, err);
		}
		/* A declared key: the write's keys must not be in the table. */
		if (w->keys && (rc = store_keys_check(t->s, w, w->keys_replaced, err)) != ST_OK) {
			w->written = !w->inl;
			return rc;
		}
		/* A small segment lives inline in LMDB: no fsync besides LMDB's
		 * own commit. */
		w->written = !w->inl;
		if (w->rows == 0) { /* nothing to add (an overwrite with no rows empties the table) */
			if (w->written)
				unlink(w->path);
			w->written = false;
		} else {
			w->add.is_inline = w->inl != NULL;
			rc = store_add_from_info(&w->add, &w->info, &w->m.meta->schema, true, err);
		}
	}
	app_fini(app);
	if (rc == ST_OK)
		t->n++;
	return rc;
}

void store_stage_fail(st_txn *t, struct appender *app)
{
	app_fini(app);
	staged_fini(&t->w[t->n]);
}

int st_txn_write(st_txn *t, const char *table, const struct st_batch *batches, uint32_t nb,
		 const struct st_write_opts *opts, struct st_err *err)
{
	struct appender app;
	uint64_t rows = 0;
	if (nb == 0 || !batches)
		return st_seterr(err, ST_EINVAL, "table '%s': a write needs at least one batch", table);
	for (uint32_t k = 0; k < nb; k++)
		rows += batches[k].nrows;
	int rc = store_stage_begin(t, table, &batches[0], opts, rows <= STORE_INLINE_ROWS, &app, err);
	if (rc == ST_OK)
		rc = store_stage_add(t, &app, batches, nb, err);
	if (rc == ST_OK)
		rc = store_stage_finish(t, &app, err);
	if (rc != ST_OK)
		store_stage_fail(t, &app);
	return rc;
}

/* ---- streaming loads ---------------------------------------------------- */

int st_write(st_store *s, const char *table, const struct st_batch *batches, uint32_t nb,
	     const struct st_write_opts *opts, struct st_commit_result *res, struct st_err *err)
{
	st_txn *t;
	int rc;
	memset(res, 0, sizeof *res);
	if ((rc = st_txn_begin(s, &t, err)) != ST_OK)
		return rc;
	if ((rc = st_txn_write(t, table, batches, nb, opts, err)) != ST_OK) {
		st_txn_abort(t);
		return rc;
	}
	return st_txn_commit(t, res, err);
}

