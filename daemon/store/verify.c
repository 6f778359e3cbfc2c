/*
 * daemon/store/verify.c — st_verify: every retained commit's CRC chain,
 * the whole commit log's hash chain in LSN order (chain.c), every live
 * segment's checksums, and each table's file records against the files its
 * retained commits add and remove.
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

/* What the commit log says about one file of a table. */
struct logged_file {
	uint64_t fid, added, removed; /* removed: STORE_LIVE while live */
	uint64_t size, rows;
	uint32_t crc;
	bool is_inline, seen;         /* seen: a file record matched it */
};

static int cmp_logged(const void *a, const void *b)
{
	uint64_t x = ((const struct logged_file *)a)->fid, y = ((const struct logged_file *)b)->fid;
	return x < y ? -1 : x > y;
}

/*
 * Cross-check table h's file records against its retained commits: the
 * files the commits add and remove, replayed from the oldest retained
 * version, must be the file records — every file a commit added has its
 * record (live unless a later commit removed it; a removed one may have
 * been vacuumed), with the size, rows and CRC the commit gave it, and every
 * record of a file added at a retained version is one a commit added. A
 * record lost to a damaged page would otherwise make its rows vanish from
 * every answer without an error.
 */
static int cross_check(st_store *s, MDB_txn *txn, const struct table_head *h,
		       struct st_verify_result *r, struct st_err *err)
{
	struct logged_file *lf = NULL;
	size_t n = 0, cap = 0;
	int rc = ST_OK;
	for (uint64_t v = h->oldest; v <= h->version && rc == ST_OK; v++) {
		uint8_t key[COMMIT_KEY_LEN];
		commit_key(key, h->tid, v);
		MDB_val k = {sizeof key, key}, d;
		struct act_commit *c = NULL;
		if (store_get(s, txn, &k, &d) != 0 || act_decode(d.mv_data, d.mv_size, &c, NULL))
			break; /* the chain check reports it */
		for (uint32_t i = 0; i < c->nadd; i++) {
			if (n == cap) {
				cap = cap ? 2 * cap : 64;
				struct logged_file *g = realloc(lf, cap * sizeof *g);
				if (!g) {
					rc = st_seterr(err, ST_ENOMEM, "out of memory");
					break;
				}
				lf = g;
			}
			const struct act_add *a = &c->adds[i];
			lf[n++] = (struct logged_file){a->file_id, v, STORE_LIVE, a->size, a->rows,
						       a->crc, a->is_inline, false};
		}
		for (uint32_t i = 0; i < c->nremove; i++)
			for (size_t j = n; j-- > 0;)
				if (lf[j].fid == c->removes[i].file_id && lf[j].removed == STORE_LIVE) {
					lf[j].removed = v;
					break;
				}
		act_commit_free(c);
	}
	if (rc != ST_OK) {
		free(lf);
		return rc;
	}
	if (n)
		qsort(lf, n, sizeof *lf, cmp_logged);
	MDB_cursor *cur;
	int mrc = mdb_cursor_open(txn, s->dbi, &cur);
	if (mrc != 0) {
		free(lf);
		return store_lmdb_err(err, mrc, "verifying");
	}
	uint8_t key[FILE_KEY_LEN];
	file_key(key, h->tid, 0, 0);
	MDB_val k = {sizeof key, key}, v;
	const char *name = h->meta->name;
	for (mrc = store_cget(s, cur, &k, &v, MDB_SET_RANGE);
	     mrc == 0 && k.mv_size == FILE_KEY_LEN && table_range(&k, key);
	     mrc = store_cget(s, cur, &k, &v, MDB_NEXT)) {
		struct file_rec f;
		uint64_t fid = file_key_fid(&k);
		if (file_rec_decode(fid, v.mv_data, v.mv_size, &f) != ST_OK) {
			problem(r, "table '%s': file record %llu is damaged", name,
				(unsigned long long)fid);
			continue;
		}
		struct logged_file want = {.fid = fid},
				   *l = n ? bsearch(&want, lf, n, sizeof *lf, cmp_logged) : NULL;
		if (!l) {
			if (f.added >= h->oldest)
				problem(r, "table '%s': file %llu (%llu rows, added in version %llu) has a "
					"record but no commit added it: the record does not belong to the "
					"table's history", name, (unsigned long long)fid,
					(unsigned long long)f.rows, (unsigned long long)f.added);
		} else {
			l->seen = true;
			if (f.added != l->added || f.size != l->size || f.rows != l->rows ||
			    f.crc != l->crc || !!(f.flags & 1) != l->is_inline)
				problem(r, "table '%s': file %llu's record differs from the commit that "
					"added it: version %llu, %llu rows, %llu bytes against version %llu, "
					"%llu rows, %llu bytes", name, (unsigned long long)fid,
					(unsigned long long)f.added, (unsigned long long)f.rows,
					(unsigned long long)f.size, (unsigned long long)l->added,
					(unsigned long long)l->rows, (unsigned long long)l->size);
			else if (f.removed != l->removed)
				problem(r, "table '%s': file %llu (%llu rows) is %s in its record but %s "
					"per the commit log", name, (unsigned long long)fid,
					(unsigned long long)f.rows,
					f.removed == STORE_LIVE ? "live" : "removed",
					l->removed == STORE_LIVE ? "live" : "removed");
		}
		file_rec_fini(&f);
	}
	mdb_cursor_close(cur);
	if (mrc != 0 && mrc != MDB_NOTFOUND) {
		free(lf);
		return store_lmdb_err(err, mrc, "verifying");
	}
	uint64_t lost = 0, nlost = 0;
	for (size_t i = 0; i < n; i++)
		if (!lf[i].seen && lf[i].removed == STORE_LIVE) { /* removed ones may be vacuumed */
			nlost++;
			lost += lf[i].rows;
			if (nlost <= 16)
				problem(r, "table '%s': file %llu (%llu rows, added in version %llu) is "
					"live per the commit log but has no file record: its rows are "
					"missing from every read of versions %llu on", name,
					(unsigned long long)lf[i].fid, (unsigned long long)lf[i].rows,
					(unsigned long long)lf[i].added, (unsigned long long)lf[i].added);
		}
	if (nlost > 16)
		problem(r, "table '%s': %llu files live per the commit log have no file record in all "
			"(%llu rows missing from the latest version)", name, (unsigned long long)nlost,
			(unsigned long long)lost);
	free(lf);
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
	if (rc == ST_OK && !(h.flags & 1))
		rc = cross_check(w->s, w->txn, &h, w->res, w->err);
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
