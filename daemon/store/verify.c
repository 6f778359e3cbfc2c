/*
 * daemon/store/verify.c — st_verify: every retained commit's CRC chain,
 * the whole commit log's hash chain in LSN order (chain.c), and every live
 * segment's checksums.
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

static void log_problem(void *arg, const char *line)
{
	problem(arg, "commit log: %s", line);
}

int st_verify_head(st_store *s, const uint8_t head[ST_HASH_LEN], struct st_verify_result *res,
		   struct st_err *err)
{
	MDB_txn *txn = NULL;
	struct st_err e;
	uint64_t records = 0;
	memset(res, 0, sizeof *res);
	int mrc = store_read_begin(s, &txn), rc = ST_OK;
	if (mrc != 0)
		return store_lmdb_err(err, mrc, "verifying");
	/* Each table's CRC chain and its commits' LSN records, then the whole
	 * log's hash chain in LSN order, then every live segment. */
	if (store_verify_chains(s, txn, UINT32_MAX, &res->commits, &e) != ST_OK)
		problem(res, "%s", e.msg);
	if ((rc = store_verify_log(s, txn, 0, head, &res->head_lsn, &records, log_problem, res,
				   err)) != ST_OK)
		goto out;
	if ((rc = store_chain_last(s, txn, &res->last_lsn, res->last_hash, err)) != ST_OK)
		goto out;
	if (head && !res->head_lsn && memcmp(head, res->last_hash, ST_HASH_LEN)) {
		char hex[2 * ST_HASH_LEN + 1];
		for (int i = 0; i < ST_HASH_LEN; i++)
			snprintf(hex + 2 * i, 3, "%02x", head[i]);
		problem(res, "commit log: head %s is not in the chain (LSN 1 to %llu): the log was "
			"changed or rewritten since it was recorded, or it belongs to another store",
			hex, (unsigned long long)res->last_lsn);
	}
	struct verify_walk w = {s, txn, res, err};
	rc = store_each_head(s, txn, verify_one, &w, &mrc);
	if (rc == ST_OK && mrc != 0)
		rc = store_lmdb_err(err, mrc, "verifying");
out:
	store_read_end(s, txn);
	if (rc != ST_OK)
		st_verify_result_fini(res);
	return rc;
}

int st_verify(st_store *s, struct st_verify_result *res, struct st_err *err)
{
	return st_verify_head(s, NULL, res, err);
}

void st_verify_result_fini(struct st_verify_result *r)
{
	for (uint32_t i = 0; i < r->nproblems; i++)
		free(r->problems[i]);
	free(r->problems);
	memset(r, 0, sizeof *r);
}
