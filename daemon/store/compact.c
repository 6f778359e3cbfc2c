/*
 * daemon/store/compact.c — st_table_compact: the live files rewritten into one segment,
 * a commit whose actions carry data_change = false (STORE.md §4).
 */
#include <errno.h>
#include <limits.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "daemon/store/write_int.h"
#include "format/expr.h"
#include "format/segment.h"
/* Append the selected rows of b to w. */
static int append_selected(struct seg_writer *w, const struct st_scan_batch *b,
			   struct st_err *err)
{
	struct st_vec *v = calloc(b->ncols + 1, sizeof *v);
	void **bufs = calloc((size_t)b->ncols * 3 + 1, sizeof *bufs);
	int rc = v && bufs ? ST_OK : st_seterr(err, ST_ENOMEM, "out of memory");
	for (uint32_t k = 0; k < b->ncols && rc == ST_OK; k++)
		if (store_gather(&b->cols[k], b->sel, b->nsel, &v[k], &bufs[3 * k]) != ST_OK)
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
	if (rc == ST_OK)
		rc = seg_writer_append(w, v, b->nsel, err);
	for (uint32_t k = 0; bufs && k < (size_t)b->ncols * 3; k++)
		free(bufs[k]);
	free(bufs);
	free(v);
	return rc;
}

int st_table_compact(st_store *s, const char *table, struct st_commit_result *res,
		     struct st_err *err)
{
	int rc = ST_OK;
	st_scan *sc = NULL;
	st_txn *t = NULL;
	struct seg_writer *w = NULL;
	memset(res, 0, sizeof *res);
	if ((rc = st_txn_begin(s, &t, err)) != ST_OK)
		return rc;
	struct staged *g = calloc(1, sizeof *g);
	if (!g) {
		st_txn_abort(t);
		return st_seterr(err, ST_ENOMEM, "out of memory");
	}
	t->w = g;
	t->n = 1;
	snprintf(g->table, sizeof g->table, "%s", table);
	g->compaction = true;
	g->t0 = store_now_us();
	if ((rc = st_scan_open(s, table, (struct st_at){ST_AT_LATEST, 0}, NULL, 0, NULL, &sc, err)) != ST_OK)
		goto out;
	uint64_t rows = 0;
	if ((rc = store_scan_files(sc, &g->read_files, &g->nread, &rows)) != ST_OK) {
		rc = st_seterr(err, rc, "out of memory");
		goto out;
	}
	/* The metadata the scan read is the head's: compaction changes none. */
	MDB_txn *rt = NULL;
	struct table_head h = {0};
	int mrc = store_read_begin(s, &rt);
	if (mrc != 0)
		rc = store_lmdb_err(err, mrc, "compacting: reading the table head");
	else
		rc = head_get(s, rt, table, &h, err);
	store_read_end(s, rt);
	if (rc != ST_OK || h.version != st_scan_version(sc)) {
		head_fini(&h);
		if (rc == ST_OK)
			rc = st_seterr(err, ST_ECONFLICT, "table '%s' moved while compaction started; retry",
				       table);
		goto out;
	}
	g->tid = h.tid;
	g->read_version = h.version;
	g->isolation = store_isolation_of(h.meta);
	g->m.meta = h.meta;
	h.meta = NULL;
	head_fini(&h);
	if (g->nread < 2 && rows > 0) {
		/* One file (or none) is already compact: nothing to commit. */
		bool inline_left = false;
		for (uint32_t i = 0; i < store_scan_nfiles(sc); i++)
			inline_left |= store_scan_file_inline(sc, i) || store_scan_file_dv(sc, i);
		if (!inline_left) {
			res->noop = true;
			res->version = g->read_version;
			goto out;
		}
	}
	if (g->nread == 0) {
		res->noop = true;
		res->version = g->read_version;
		goto out;
	}
	struct act_add *a = &g->add;
	a->file_id = store_next_fid(s);
	if ((rc = store_staged_path(s, g, err)) != ST_OK)
		goto out;
	struct seg_writer_opts o = {.row_group_rows = s->opts.row_group_rows, .io = s->opts.io,
				    .threads = s->enc_threads};
	if ((rc = store_segment_failed(s, seg_writer_open(g->path, &g->m.meta->schema, &o, &w, err),
				       err)) != ST_OK)
		goto out;
	const struct st_scan_batch *b;
	while ((rc = st_scan_next(sc, &b, err)) == ST_OK && b) {
		if (!b->sel) {
			if ((rc = store_seg_append(s, w, b->cols, b->rows, err)) != ST_OK)
				break;
			continue;
		}
		/* Rows deleted by a deletion vector are left out: compaction
		 * purges the vectors. */
		rc = store_segment_failed(s, append_selected(w, b, err), err);
		if (rc != ST_OK)
			break;
	}
	if (rc != ST_OK)
		goto out;
	rc = store_segment_failed(s, seg_writer_close(w, &g->info, err), err);
	w = NULL;
	if (rc != ST_OK)
		goto out;
	g->written = true;
	g->rows = g->info.rows;
	if ((rc = store_add_from_info(a, &g->info, &g->m.meta->schema, false, err)) != ST_OK)
		goto out;
	st_scan_close(sc);
	sc = NULL;
	rc = st_txn_commit(t, res, err);
	t = NULL;
	if (rc == ST_OK)
		res->rows = 0; /* no rows were added: the same rows, rearranged */
out:
	seg_writer_abort(w);
	st_scan_close(sc);
	st_txn_abort(t);
	return rc;
}

