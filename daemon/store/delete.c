/*
 * daemon/store/delete.c — st_delete: row-level DELETE with deletion vectors
 * (STORE.md §4.1). Files whose statistics exclude the predicate are not
 * read; files whose statistics say every row matches, or where every row
 * left matches, are removed whole; the others are removed and added again
 * under a new file id sharing the same segment (a hard link, or the same
 * inline bytes) with a deletion vector of every deleted position. No
 * segment is rewritten. The commit goes through the group commit like any
 * write: its conflict check (conflict.c) treats it as a replace-where with
 * no new rows.
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
	a->base_fid = f->base_fid ? f->base_fid : f->fid;
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

/* Stage w's removals and re-adds for predicate pred over the live files. */
static int stage_delete(st_store *s, MDB_txn *txn, struct staged *w, const char *pred,
			struct st_delete_result *dr, struct st_err *err)
{
	int rc;
	struct file_rec *live = NULL;
	uint32_t nlive = 0;
	struct st_col_stats *st = NULL;
	const struct st_schema *sc = &w->m.meta->schema;
	if ((rc = expr_parse(pred, sc, &w->pred, err)) != ST_OK ||
	    (rc = store_files_at(s, txn, w->tid, STORE_LIVE, &live, &nlive, err)) != ST_OK)
		goto out;
	st = calloc(sc->nfields + 1, sizeof *st);
	w->read_files = calloc(nlive + 1, sizeof *w->read_files);
	w->rw = calloc(nlive + 1, sizeof *w->rw);
	if (!st || !w->read_files || !w->rw) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	bool linked = false;
	for (uint32_t i = 0; i < nlive && rc == ST_OK; i++) {
		const struct file_rec *f = &live[i];
		store_file_stats(sc, f, st);
		enum expr_match m = expr_may_match(w->pred, st);
		if (m == EXPR_MATCH_NONE) {
			dr->files_skipped++;
			continue;
		}
		dr->files_read += m == EXPR_MATCH_SOME;
		uint32_t *pos = NULL, npos = 0, *all = NULL, nall = 0;
		uint64_t gone = 0;
		if (m == EXPR_MATCH_SOME) {
			if (f->rows > UINT32_MAX) {
				rc = st_seterr(err, ST_ETOOBIG, "table '%s': file %llu has %llu rows, above "
					       "what a deletion vector covers", w->table,
					       (unsigned long long)f->fid, (unsigned long long)f->rows);
				break;
			}
			rc = store_file_match(s, w->tid, f, sc, w->pred, NULL, &gone, &pos, &npos, err);
			if (rc != ST_OK || npos == 0) {
				free(pos);
				continue; /* nothing (more) matched: the file stays */
			}
			uint32_t *old = NULL, nold = 0;
			if (f->dv && (rc = dv_decode(f->dv, f->dv_len, (uint32_t)f->rows, &old, &nold,
						     err)) != ST_OK) {
				free(pos);
				break;
			}
			rc = dv_union(old, nold, pos, npos, &all, &nall);
			free(old);
			free(pos);
			if (rc != ST_OK) {
				free(all);
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
				break;
			}
		}
		w->read_files[w->nread++] = f->fid;
		if (m == EXPR_MATCH_ALL || nall == f->rows) {
			/* Every row left matches: the file goes whole. */
			w->rows_removed += file_live_rows(f);
			dr->files_removed++;
		} else {
			w->rows_removed += npos;
			struct store_rewrite *r = &w->rw[w->nrw++];
			rc = readd(s, w->tid, f, all, nall, r, err);
			linked |= r->written;
			dr->dvs_written++;
		}
		free(all);
	}
	/* The links share one directory: one sync makes them durable before
	 * the commit. */
	for (uint32_t i = 0; rc == ST_OK && linked && i < w->nrw; i++)
		if (w->rw[i].written) {
			int e = st_io_fsync_dir(&st_io_posix, w->rw[i].path);
			if (e)
				rc = st_seterr(err, e, "table '%s': fsync of its directory: %s",
					       w->table, strerror(e));
			break;
		}
out:
	file_recs_free(live, nlive);
	free(st);
	return rc;
}

int st_delete(st_store *s, const char *table, const char *predicate,
	      const struct st_delete_opts *opts, struct st_delete_result *res,
	      struct st_err *err)
{
	static const struct st_delete_opts defaults = {0};
	int rc, mrc;
	st_txn *t = NULL;
	MDB_txn *txn = NULL;
	struct table_head h = {0};
	struct meta_ref *ref = NULL;
	memset(res, 0, sizeof *res);
	if (!opts)
		opts = &defaults;
	if (!predicate || !*predicate)
		return st_seterr(err, ST_EINVAL,
				 "table '%s': DELETE needs a predicate (to delete every row, use "
				 "an overwrite with no rows, or --where 'true')", table);
	if (opts->app_id && (!opts->app_id[0] || strlen(opts->app_id) > 255))
		return st_seterr(err, ST_EINVAL, "app id must be 1 to 255 bytes");
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
	w->del = true;
	if ((mrc = store_read_begin(s, &txn)) != 0) {
		rc = store_lmdb_err(err, mrc, "deleting");
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
	if ((rc = store_stage_app(s, txn, w, opts->app_id, opts->app_version, err)) != ST_OK)
		goto out;
	if (w->noop) {
		res->commit.noop = true;
		res->commit.version = h.version;
		goto out;
	}
	if ((rc = stage_delete(s, txn, w, predicate, res, err)) != ST_OK)
		goto out;
	store_read_end(s, txn);
	txn = NULL;
	if (w->nread == 0 && !w->app_id) {
		/* Nothing matched: nothing to commit. */
		res->commit.version = h.version;
		res->commit.lsn = h.lsn;
		res->commit.time_us = h.time_us;
		res->commit.noop = true;
		goto out;
	}
	res->rows_deleted = w->rows_removed;
	rc = st_txn_commit(t, &res->commit, err);
	t = NULL;
	if (rc == ST_OK)
		res->commit.rows = 0;
	else
		res->rows_deleted = 0;
out:
	store_read_end(s, txn);
	store_meta_put(ref);
	head_fini(&h);
	st_txn_abort(t);
	if (rc != ST_OK) {
		struct st_commit_result keep = {0};
		*res = (struct st_delete_result){.commit = keep};
	}
	return rc;
}
