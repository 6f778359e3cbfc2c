/*
 * daemon/server/rows.c — the handlers that move rows (PROTOCOL.md §3, §4):
 * WRITE, the streaming load (LOAD_BEGIN, LOAD_DATA, LOAD_COMMIT,
 * LOAD_ABORT), SCAN with its cursor pages (SCAN_NEXT, SCAN_CLOSE), and
 * QUERY.
 *
 * Same discipline as requests.c: every local released at `out:` is
 * initialised before the first exit. A session taken by a handler is, at
 * `out:`, either given back (it stays open) or ended; `x` is NULL once the
 * handler no longer holds one. A failed LOAD_DATA ends its load (§4).
 * Threading: a held session is the calling worker's alone.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/server/log.h"
#include "daemon/server/server_int.h"

/* ---- writes and loads ------------------------------------------------------ */

int sd_h_write(struct sd_ctx *c)
{
	struct st_err err;
	struct st_write_opts w;
	struct st_commit_result r;
	struct wire_batch wb = {0};
	struct st_batch b;
	char pred[8192], app[256];
	int rc = ST_OK;
	if ((rc = sd_need_table(c, WIRE_WRITE_Q_TABLE)) ||
	    (rc = sd_get_write_opts(c, WIRE_WRITE_Q_OPTIONS, &w, pred, sizeof pred, app, sizeof app,
				    NULL)) ||
	    (rc = sd_get_batch(c, WIRE_WRITE_Q_BATCH, "batch", &wb, &b)))
		goto out;
	if ((rc = st_write(c->srv->s, c->table, &b, 1, &w, &r, &err)) != ST_OK) {
		rc = sd_fail_err(c, rc, &err);
		goto out;
	}
	sd_begin(c, WIRE_RESULT_NKEYS);
	sd_pack_result(c, &r);
out:
	wire_batch_fini(&wb);
	return rc;
}

int sd_h_load_begin(struct sd_ctx *c)
{
	struct st_err err;
	struct st_write_opts w;
	struct wire_batch wb = {0};
	struct st_batch b;
	struct sd_session *x = NULL;
	char pred[8192], app[256];
	bool source;
	uint64_t v;
	int rc = ST_OK;
	if ((rc = sd_need_table(c, WIRE_LOAD_BEGIN_Q_TABLE)) ||
	    (rc = sd_get_write_opts(c, WIRE_LOAD_BEGIN_Q_OPTIONS, &w, pred, sizeof pred, app,
				    sizeof app, &source)) ||
	    (rc = sd_get_batch(c, WIRE_LOAD_BEGIN_Q_HEADER, "header batch", &wb, &b)))
		goto out;
	if (!(x = sd_sess_new(c->srv, SD_SESS_LOAD))) {
		rc = sd_fail(c, ST_ENOMEM, "out of memory");
		goto out;
	}
	snprintf(x->table, sizeof x->table, "%s", c->table);
	/* A merge source: rows held for a MERGE into the table (PROTOCOL.md §4). */
	rc = source ? st_table_version(c->srv->s, c->table, &v, &err) : ST_OK;
	if (rc == ST_OK && source && (rc = st_merge_src_new(&x->msrc, &err)) == ST_OK)
		rc = st_merge_src_add(x->msrc, &b, &err);
	if (rc == ST_OK && !source)
		rc = st_load_begin(c->srv->s, c->table, &b, &w, &x->load, &err);
	if (rc != ST_OK) {
		rc = sd_fail_err(c, rc, &err);
		goto out;
	}
	sd_log(SD_LOG_DEBUG, "%s %" PRIu64 " on table '%s' begins",
	       source ? "merge source load" : "load", x->id, c->table);
	sd_begin(c, 1);
	wire_key_u64(&c->out.pk, WIRE_LOAD_BEGIN_R_ID, x->id);
out:
	if (x && rc == ST_OK)
		sd_sess_release(c->srv, x);
	else if (x)
		sd_sess_end(c->srv, x);
	wire_batch_fini(&wb);
	return rc;
}

int sd_h_load_data(struct sd_ctx *c)
{
	struct st_err err;
	struct wire_batch wb = {0};
	struct st_batch b;
	struct sd_session *x = NULL;
	const msgpack_object *bo = NULL;
	uint64_t id = 0, num = 0;
	bool ends = false; /* a failure from here on aborts the load */
	int rc = ST_OK;
	/* Every key is checked before the load is touched: a malformed request
	 * leaves the load as it was. */
	if ((rc = sd_need_u64(c, WIRE_LOAD_DATA_Q_ID, "load id", &id)) ||
	    (rc = sd_need_map(c, WIRE_LOAD_DATA_Q_BATCH, "batch", &bo)) ||
	    (rc = sd_need_u64(c, WIRE_LOAD_DATA_Q_NUMBER, "batch number", &num)))
		goto out;
	if (!(x = sd_sess_get(c, id, SD_SESS_LOAD))) {
		rc = c->e.code;
		goto out;
	}
	snprintf(c->table, sizeof c->table, "%s", x->table);
	if (num != x->next_batch) {
		rc = sd_fail(c, ST_EINVAL, "load %" PRIu64 ": batch %" PRIu64 " arrived, batch %"
			     PRIu64 " was expected", id, num, x->next_batch);
		goto out;
	}
	ends = true;
	if ((rc = sd_get_batch(c, WIRE_LOAD_DATA_Q_BATCH, "batch", &wb, &b)))
		goto out;
	if (x->msrc && st_merge_src_bytes(x->msrc) > SD_MERGE_SOURCE_MAX)
		rc = st_seterr(&err, ST_ETOOBIG, "load %" PRIu64 ": a merge source holds at most %d "
			       "MiB in the daemon's memory; load the rows into a table and merge "
			       "from it instead", id, SD_MERGE_SOURCE_MAX >> 20);
	else
		rc = x->msrc ? st_merge_src_add(x->msrc, &b, &err) : st_load_write(x->load, &b, 1, &err);
	if (rc != ST_OK) {
		rc = sd_fail_err(c, rc, &err);
		goto out;
	}
	x->next_batch++;
	sd_begin(c, 1);
	wire_key_u64(&c->out.pk, WIRE_LOAD_DATA_R_ROWS,
		     x->msrc ? st_merge_src_rows(x->msrc) : st_load_rows(x->load));
out:
	if (x && rc != ST_OK && ends) { /* nothing of a failed load is committed */
		sd_log(SD_LOG_INFO, "load %" PRIu64 " on table '%s' failed: %s", id, x->table,
		       c->e.msg);
		sd_sess_end(c->srv, x);
	} else if (x) {
		sd_sess_release(c->srv, x);
	}
	wire_batch_fini(&wb);
	return rc;
}

int sd_h_load_end(struct sd_ctx *c)
{
	struct st_err err;
	struct st_commit_result r;
	struct sd_session *x = NULL;
	uint64_t id = 0;
	int rc = ST_OK;
	if ((rc = sd_need_u64(c, WIRE_LOAD_END_Q_ID, "load id", &id)))
		goto out;
	if (!(x = sd_sess_get(c, id, SD_SESS_LOAD))) {
		rc = c->e.code;
		goto out;
	}
	snprintf(c->table, sizeof c->table, "%s", x->table);
	if (c->m.type == WIRE_LOAD_ABORT) {
		sd_begin(c, 0);
		goto out;
	}
	if (x->msrc) { /* stays open for its MERGE */
		rc = sd_fail(c, ST_EINVAL, "load %" PRIu64 " is a merge source: send MERGE with key %d "
			     "= its id (or LOAD_ABORT)", id, WIRE_MERGE_Q_SOURCE_LOAD);
		sd_sess_release(c->srv, x);
		x = NULL;
		goto out;
	}
	st_load *l = x->load;
	x->load = NULL; /* st_load_commit frees it either way */
	if ((rc = st_load_commit(l, &r, &err)) != ST_OK) {
		rc = sd_fail_err(c, rc, &err);
		goto out;
	}
	sd_log(SD_LOG_INFO, "table '%s' version %" PRIu64 ": %" PRIu64 " rows loaded", c->table,
	       r.version, r.rows);
	sd_begin(c, WIRE_RESULT_NKEYS);
	sd_pack_result(c, &r);
out:
	if (x) /* committed, aborted or failed: the load is over */
		sd_sess_end(c->srv, x);
	return rc;
}

/* ---- scans ------------------------------------------------------------------ */

/* Pack the next page of cursor x as a batch; *more = rows remain. On
 * error nothing usable is packed (the caller replies with the error). */
static int scan_page(struct sd_ctx *c, struct sd_session *x, bool *more)
{
	struct st_err err;
	st_scan *sc = x->scan;
	uint32_t nc = st_scan_ncolumns(sc);
	const char *names[ST_MAX_COLUMNS];
	size_t budget = c->srv->o.max_message_size > SD_REPLY_MARGIN
				? c->srv->o.max_message_size - SD_REPLY_MARGIN : 0;
	int rc = ST_OK;
	*more = false;
	for (uint32_t i = 0; i < nc; i++)
		names[i] = st_scan_column_name(sc, i);
	for (;;) {
		if (x->limited && x->left == 0) {
			x->b = NULL;
			break;
		}
		if (!x->b || x->off >= x->b->nsel) {
			if ((rc = st_scan_next(sc, &x->b, &err)) != ST_OK) {
				x->b = NULL;
				rc = sd_fail_err(c, rc, &err);
				goto out;
			}
			x->off = 0;
			if (!x->b)
				break;
			continue;
		}
		const struct st_scan_batch *b = x->b;
		uint32_t n = b->nsel - x->off;
		if (x->limited && n > x->left)
			n = (uint32_t)x->left;
		/* The selection of these rows, as indices. */
		if (!b->sel && n > c->idx_cap) {
			free(c->idx);
			c->idx_cap = b->rows;
			if (!(c->idx = malloc((size_t)c->idx_cap * sizeof *c->idx))) {
				c->idx_cap = 0;
				rc = sd_fail(c, ST_ENOMEM, "out of memory");
				goto out;
			}
		}
		const uint32_t *sel = b->sel ? b->sel + x->off : c->idx;
		if (!b->sel)
			for (uint32_t i = 0; i < n; i++)
				c->idx[i] = x->off + i;
		while (n > 1 && wire_batch_bytes(nc, names, b->cols, sel, n) > budget)
			n /= 2;
		if (wire_batch_bytes(nc, names, b->cols, sel, n) > budget) {
			rc = sd_fail(c, ST_ETOOBIG, "one row of '%s' is larger than the %zu-byte "
				     "message limit: raise max_message_size", c->table,
				     c->srv->o.max_message_size);
			goto out;
		}
		wire_pack_batch(&c->out, nc, names, b->cols, sel, n);
		x->off += n;
		x->left -= x->limited ? n : 0;
		*more = !(x->limited && x->left == 0);
		goto out;
	}
	/* No rows left: an empty batch with the columns' types. */
	struct st_vec empty[ST_MAX_COLUMNS];
	static const uint32_t zero[1] = {0};
	for (uint32_t i = 0; i < nc; i++)
		empty[i] = (struct st_vec){.type = (uint8_t)st_scan_column_type(sc, i), .n = 0,
					   .data = zero, .offsets = zero, .bytes = (const uint8_t *)""};
	wire_pack_batch(&c->out, nc, names, empty, NULL, 0);
out:
	return rc;
}

int sd_h_scan(struct sd_ctx *c)
{
	struct st_err err;
	struct st_at at = {ST_AT_LATEST, 0}, from = {ST_AT_LATEST, 0}, to = {ST_AT_LATEST, 0};
	struct sd_session *x = NULL;
	char **cols = NULL, *pred = NULL;
	uint32_t ncols = 0;
	uint64_t limit = 0;
	bool more = false;
	int rc = ST_OK;
	if ((rc = sd_need_table(c, WIRE_SCAN_Q_TABLE)) ||
	    (rc = sd_get_strs(c, WIRE_SCAN_Q_COLUMNS, "columns", &cols, &ncols)) ||
	    (rc = sd_opt_strdup(c, WIRE_SCAN_Q_PREDICATE, "predicate", &pred)) ||
	    (rc = sd_get_at(c, WIRE_SCAN_Q_AT, "at", false, &at)) ||
	    (rc = sd_opt_u64(c, WIRE_SCAN_Q_LIMIT, "row limit", &limit)) ||
	    (rc = sd_get_at(c, WIRE_SCAN_Q_CHANGES_FROM, "changes from", false, &from)) ||
	    (rc = sd_get_at(c, WIRE_SCAN_Q_CHANGES_TO, "changes to", false, &to)))
		goto out;
	bool changes = wire_get(c->m.body, WIRE_SCAN_Q_CHANGES_FROM) != NULL;
	if (!(x = sd_sess_new(c->srv, SD_SESS_CURSOR))) {
		rc = sd_fail(c, ST_ENOMEM, "out of memory");
		goto out;
	}
	snprintf(x->table, sizeof x->table, "%s", c->table);
	x->limited = wire_get(c->m.body, WIRE_SCAN_Q_LIMIT) != NULL;
	x->left = limit;
	if ((rc = changes ? st_changes_open(c->srv->s, c->table, from, to,
					    (const char *const *)cols, ncols, pred, &x->scan, &err)
			  : st_scan_open(c->srv->s, c->table, at, (const char *const *)cols, ncols, pred,
					 &x->scan, &err)) != ST_OK) {
		rc = sd_fail_err(c, rc, &err);
		goto out;
	}
	st_scan *sc = x->scan;
	uint32_t nc = st_scan_ncolumns(sc);
	msgpack_packer *pk = &c->out.pk;
	sd_begin(c, WIRE_SCAN_R_NKEYS);
	wire_key_u64(pk, WIRE_SCAN_R_VERSION, st_scan_version(sc));
	msgpack_pack_uint32(pk, WIRE_SCAN_R_COLUMNS);
	msgpack_pack_array(pk, nc);
	for (uint32_t i = 0; i < nc; i++) {
		msgpack_pack_array(pk, 2);
		wire_pack_str(pk, st_scan_column_name(sc, i));
		msgpack_pack_uint32(pk, (uint32_t)st_scan_column_type(sc, i));
	}
	msgpack_pack_uint32(pk, WIRE_SCAN_R_BATCH);
	if ((rc = scan_page(c, x, &more)))
		goto out;
	wire_key_u64(pk, WIRE_SCAN_R_CURSOR, more ? x->id : 0);
out:
	if (x && rc == ST_OK && more)
		sd_sess_release(c->srv, x);
	else if (x)
		sd_sess_end(c->srv, x);
	free(pred);
	free(cols);
	return rc;
}

int sd_h_scan_next(struct sd_ctx *c)
{
	struct sd_session *x = NULL;
	uint64_t id = 0;
	bool more = false;
	int rc = ST_OK;
	if ((rc = sd_need_u64(c, WIRE_SCAN_NEXT_Q_CURSOR, "cursor id", &id)))
		goto out;
	if (!(x = sd_sess_get(c, id, SD_SESS_CURSOR))) {
		rc = c->e.code;
		goto out;
	}
	snprintf(c->table, sizeof c->table, "%s", x->table);
	if (c->m.type == WIRE_SCAN_CLOSE) {
		sd_begin(c, 0);
		goto out;
	}
	sd_begin(c, WIRE_SCAN_NEXT_R_NKEYS);
	msgpack_pack_uint32(&c->out.pk, WIRE_SCAN_NEXT_R_BATCH);
	if ((rc = scan_page(c, x, &more)))
		goto out;
	wire_key_u64(&c->out.pk, WIRE_SCAN_NEXT_R_CURSOR, more ? x->id : 0);
out:
	if (x && rc == ST_OK && more)
		sd_sess_release(c->srv, x);
	else if (x)
		sd_sess_end(c->srv, x);
	return rc;
}

/* ---- queries ---------------------------------------------------------------- */

int sd_h_query(struct sd_ctx *c)
{
	struct st_err err;
	struct st_at at = {ST_AT_LATEST, 0};
	const msgpack_object *ao = NULL;
	char **group = NULL, **aggtext = NULL, *pred = NULL;
	uint32_t ngroup = 0, naggs = 0;
	struct sd_agg *aggs = NULL;
	struct sd_query_result r = {0};
	int rc = ST_OK;
	if ((rc = sd_need_table(c, WIRE_QUERY_Q_TABLE)) ||
	    (rc = sd_get_strs(c, WIRE_QUERY_Q_GROUP_BY, "group-by columns", &group, &ngroup)) ||
	    (rc = sd_opt_array(c, WIRE_QUERY_Q_AGGREGATES, "aggregates", &ao)) ||
	    (rc = sd_opt_strdup(c, WIRE_QUERY_Q_PREDICATE, "predicate", &pred)) ||
	    (rc = sd_get_at(c, WIRE_QUERY_Q_AT, "at", false, &at)))
		goto out;
	if (ao && ao->via.array.size > 256) {
		rc = sd_fail(c, ST_ETOOBIG, "key 2 (aggregates) of QUERY has %u entries; at most 256",
			     ao->via.array.size);
		goto out;
	}
	naggs = ao ? ao->via.array.size : 0;
	aggs = calloc(naggs + 1, sizeof *aggs);
	aggtext = calloc(naggs + 1, sizeof *aggtext);
	if (!aggs || !aggtext) {
		rc = sd_fail(c, ST_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < naggs; i++) {
		const msgpack_object *a = &ao->via.array.ptr[i];
		char fn[16], col[ST_NAME_MAX + 1];
		if (a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size != 2 ||
		    !wire_obj_strbuf(&a->via.array.ptr[0], fn, sizeof fn) ||
		    !wire_obj_strbuf(&a->via.array.ptr[1], col, sizeof col)) {
			rc = sd_fail(c, ST_EPROTO, "key 2 (aggregates) of QUERY: aggregate %u must be "
				     "[function (str), column (str)]", i);
			goto out;
		}
		size_t len = strlen(fn) + strlen(col) + 3;
		if (!(aggtext[i] = malloc(len))) {
			rc = sd_fail(c, ST_ENOMEM, "out of memory");
			goto out;
		}
		snprintf(aggtext[i], len, "%s(%s)", fn, col);
		if (!sd_agg_parse(aggtext[i], &aggs[i])) {
			rc = sd_fail(c, ST_EINVAL, "unknown aggregate %s(%s): use count, sum, min, max "
				     "or avg", fn, col);
			goto out;
		}
	}
	if ((rc = sd_query(c->srv->s, c->table, at, (const char *const *)group, ngroup, aggs, naggs,
			   pred, SD_MAX_GROUPS, &r, &err)) != ST_OK) {
		rc = sd_fail_err(c, rc, &err);
		goto out;
	}
	if (wire_batch_bytes(r.ncols, (const char *const *)r.names, r.cols, NULL, r.nrows) >
	    c->srv->o.max_message_size - SD_REPLY_MARGIN) {
		rc = sd_fail(c, ST_ETOOBIG, "the result (%u groups) is larger than the %zu-byte "
			     "message limit: narrow the query", r.nrows, c->srv->o.max_message_size);
		goto out;
	}
	sd_begin(c, WIRE_QUERY_R_NKEYS);
	msgpack_pack_uint32(&c->out.pk, WIRE_QUERY_R_BATCH);
	wire_pack_batch(&c->out, r.ncols, (const char *const *)r.names, r.cols, NULL, r.nrows);
	wire_key_u64(&c->out.pk, WIRE_QUERY_R_VERSION, r.version);
	wire_key_u64(&c->out.pk, WIRE_QUERY_R_MATCHED, r.rows_matched);
	wire_key_u64(&c->out.pk, WIRE_QUERY_R_ROWS_READ, r.read.rows_read);
	wire_key_u64(&c->out.pk, WIRE_QUERY_R_FILES_READ, r.read.files_read);
	wire_key_u64(&c->out.pk, WIRE_QUERY_R_FILES_PRUNED, r.read.files_pruned);
out:
	sd_query_result_fini(&r);
	for (uint32_t i = 0; aggtext && i < naggs; i++)
		free(aggtext[i]);
	free(aggtext);
	free(aggs);
	free(pred);
	free(group);
	return rc;
}
