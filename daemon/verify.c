/*
 * daemon/verify.c — st_verify: every retained commit's chain and every
 * live segment's checksums.
 */
#include <lmdb.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/store_int.h"
#include "format/segment.h"

static void problem(struct st_verify_result *r, const char *fmt, ...)
{
	char line[ST_ERR_MSG_MAX + 300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	char **p = realloc(r->problems, (r->nproblems + 1) * sizeof *p);
	if (!p)
		return;
	r->problems = p;
	if ((p[r->nproblems] = strdup(line)))
		r->nproblems++;
}

/* Verify the live segments of table h. */
static int verify_table(st_store *s, MDB_txn *txn, const struct table_head *h,
			struct st_verify_result *r, struct st_err *err)
{
	struct file_rec *f;
	uint32_t n;
	int rc = store_files_at(s, txn, h->tid, h->version, &f, &n, err);
	if (rc != ST_OK)
		return rc;
	for (uint32_t i = 0; i < n; i++) {
		char path[PATH_MAX];
		struct seg_reader *rd = NULL;
		struct st_err e;
		uint8_t *bytes = NULL;
		size_t len;
		store_seg_path(s, h->tid, f[i].fid, path, sizeof path);
		int vrc;
		if (f[i].flags & 1) {
			vrc = store_inline_copy(s, txn, h->tid, &f[i], &bytes, &len, &e);
			if (vrc == ST_OK)
				vrc = seg_reader_open_mem(path, bytes, len, &rd, &e);
		} else {
			vrc = seg_reader_open(path, NULL, &rd, &e);
		}
		if (vrc == ST_OK)
			vrc = seg_reader_verify(rd, &e);
		r->segments++;
		if (vrc != ST_OK)
			problem(r, "table '%s': %s segment %llu: %s", h->meta->name,
				(f[i].flags & 1) ? "inline" : "file", (unsigned long long)f[i].fid, e.msg);
		seg_reader_close(rd);
		free(bytes);
	}
	file_recs_free(f, n);
	return ST_OK;
}

int st_verify(st_store *s, struct st_verify_result *res, struct st_err *err)
{
	MDB_txn *txn;
	MDB_cursor *cur = NULL;
	struct st_err e;
	memset(res, 0, sizeof *res);
	int mrc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn), rc = ST_OK;
	if (mrc != 0)
		return store_lmdb_err(err, mrc, "verifying");
	if (store_verify_chains(s, txn, UINT32_MAX, &res->commits, &e) != ST_OK)
		problem(res, "%s", e.msg);
	if ((mrc = mdb_cursor_open(txn, s->db[DB_TABLES], &cur)) != 0) {
		rc = store_lmdb_err(err, mrc, "verifying");
		goto out;
	}
	MDB_val k, v;
	for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == ST_OK;
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct table_head h;
		if (k.mv_size != 8)
			continue;
		if (head_get_tid(s, txn, get_be64(k.mv_data), &h, &e) != ST_OK) {
			problem(res, "table id %llu: %s", (unsigned long long)get_be64(k.mv_data), e.msg);
			continue;
		}
		if (!(h.flags & 1)) /* dropped tables have nothing live */
			rc = verify_table(s, txn, &h, res, err);
		head_fini(&h);
	}
out:
	if (cur)
		mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	if (rc != ST_OK)
		st_verify_result_fini(res);
	return rc;
}

void st_verify_result_fini(struct st_verify_result *r)
{
	for (uint32_t i = 0; i < r->nproblems; i++)
		free(r->problems[i]);
	free(r->problems);
	memset(r, 0, sizeof *r);
}
