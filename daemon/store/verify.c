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

#include "daemon/store/store_int.h"
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

struct verify_walk {
	st_store *s;
	MDB_txn *txn;
	struct st_verify_result *res;
	struct st_err *err;
};

static int verify_one(void *arg, uint64_t tid, MDB_val *v)
{
	struct verify_walk *w = arg;
	struct table_head h;
	struct st_err e;
	int rc = ST_OK;
	(void)v;
	if (head_get_tid(w->s, w->txn, tid, &h, &e) != ST_OK) {
		problem(w->res, "table id %llu: %s", (unsigned long long)tid, e.msg);
		return ST_OK;
	}
	if (!(h.flags & 1)) /* dropped tables have nothing live */
		rc = verify_table(w->s, w->txn, &h, w->res, w->err);
	head_fini(&h);
	return rc;
}

int st_verify(st_store *s, struct st_verify_result *res, struct st_err *err)
{
	MDB_txn *txn;
	struct st_err e;
	memset(res, 0, sizeof *res);
	int mrc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn), rc = ST_OK;
	if (mrc != 0)
		return store_lmdb_err(err, mrc, "verifying");
	if (store_verify_chains(s, txn, UINT32_MAX, &res->commits, &e) != ST_OK)
		problem(res, "%s", e.msg);
	struct verify_walk w = {s, txn, res, err};
	rc = store_each_head(s, txn, verify_one, &w, &mrc);
	if (rc == ST_OK && mrc != 0)
		rc = store_lmdb_err(err, mrc, "verifying");
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
