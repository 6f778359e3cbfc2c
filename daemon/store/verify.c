/*
 * daemon/store/verify.c — st_verify: every retained commit's CRC chain,
 * the whole commit log's hash chain in LSN order (chain.c), every live
 * segment's checksums, and each table's file records against the files its
 * retained commits add and remove.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>
#include <lmdb.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/store/pagewalk.h"
#include "daemon/store/store_int.h"
#include "format/crc32c.h"
#include "format/dv.h"
#include "format/io.h"
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

/* Check segment f of table tid (inline ones read in txn, or in a read txn
 * of their own when txn is NULL): every chunk's checksum and encoding, and
 * its size and rows equal to its record's. ST_ECORRUPT (or an open error)
 * says what is wrong in e. */
static int check_segment_at(st_store *s, MDB_txn *txn, uint64_t tid, const struct file_rec *f,
			    const char *at /* its path; NULL: where the store keeps it */,
			    struct st_err *e)
{
	char path[PATH_MAX];
	struct seg_reader *rd = NULL;
	uint8_t *bytes = NULL;
	size_t len;
	if (at)
		snprintf(path, sizeof path, "%s", at);
	else
		store_seg_path(s, tid, f->fid, path, sizeof path);
	int vrc;
	if (f->flags & 1) {
		vrc = store_inline_copy(s, txn, tid, f, &bytes, &len, e);
		if (vrc == ST_OK)
			vrc = seg_reader_open_mem(path, bytes, len, &rd, e);
	} else {
		vrc = seg_reader_open(path, NULL, &rd, e);
	}
	if (vrc == ST_OK)
		vrc = seg_reader_verify(rd, e);
	if (vrc == ST_OK && !s->no_integrity &&
	    (seg_reader_size(rd) != f->size || seg_reader_rows(rd) != f->rows))
		vrc = st_seterr(e, ST_ECORRUPT, "%llu bytes and %llu rows, its record says %llu "
				"and %llu", (unsigned long long)seg_reader_size(rd),
				(unsigned long long)seg_reader_rows(rd), (unsigned long long)f->size,
				(unsigned long long)f->rows);
	if (vrc == ST_OK && f->dv) {
		uint32_t *pos = NULL, n = 0;
		if (f->rows > UINT32_MAX)
			vrc = st_seterr(e, ST_ECORRUPT, "a deletion vector on %llu rows",
					(unsigned long long)f->rows);
		else
			vrc = dv_decode(f->dv, f->dv_len, (uint32_t)f->rows, &pos, &n, e);
		free(pos);
	}
	seg_reader_close(rd);
	free(bytes);
	return vrc;
}

/* Report damaged segment f of table name (tid) and refuse the table. */
static void segment_problem(st_store *s, struct st_verify_result *r, uint64_t tid,
			    const char *name, const struct file_rec *f, const struct st_err *e)
{
	problem(r, "table '%s': %s segment %llu (%llu rows, added in version %llu): %s", name,
		(f->flags & 1) ? "inline" : "file", (unsigned long long)f->fid,
		(unsigned long long)f->rows, (unsigned long long)f->added, e->msg);
	char why[ST_ERR_MSG_MAX];
	snprintf(why, sizeof why, "table '%s': segment %llu is damaged", name,
		 (unsigned long long)f->fid);
	if (f->flags & 1)
		store_damage(s, tid, why);
	else
		store_damage_segment(s, tid, f, why); /* a peer's copy can replace it */
}

/* Verify one segment of table h in txn. */
static void verify_segment(st_store *s, MDB_txn *txn, const struct table_head *h,
			   const struct file_rec *f, struct st_verify_result *r)
{
	struct st_err e;
	r->segments++;
	if (check_segment_at(s, txn, h->tid, f, NULL, &e) != ST_OK)
		segment_problem(s, r, h->tid, h->meta->name, f, &e);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* What the commit log says about one file of a table. */
struct logged_file {
	uint64_t fid, added, removed; /* removed: STORE_LIVE while live */
	uint64_t size, rows;
	uint32_t crc;
	bool is_inline, seen;         /* seen: a file record matched it */
	uint64_t deleted;             /* rows its deletion vector deletes */
	uint32_t dv_crc;              /* CRC32C of the vector's bytes (0: none) */
};

static int cmp_logged(const void *a, const void *b)
{
	uint64_t x = ((const struct logged_file *)a)->fid, y = ((const struct logged_file *)b)->fid;
	return x < y ? -1 : x > y;
}

/* The files table h's retained commits add, replayed from its oldest
 * retained version, each with the version that removed it (or
 * STORE_LIVE), sorted by file id into *out. A commit that cannot be read
 * ends the replay early (the chain check reports it). */
static int replay(st_store *s, MDB_txn *txn, const struct table_head *h,
		  struct logged_file **out, size_t *nout, struct st_err *err)
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
						       a->crc, a->is_inline, false, a->deleted,
						       a->dv ? st_crc32c(0, a->dv, a->dv_len) : 0};
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
	*out = lf;
	*nout = n;
	return ST_OK;
}

int store_log_says_live(st_store *s, MDB_txn *txn, uint64_t tid, uint64_t fid)
{
	struct table_head h;
	struct logged_file *lf = NULL, want = {.fid = fid}, *l;
	size_t n = 0;
	if (head_get_tid(s, txn, tid, &h, NULL) != ST_OK)
		return -1;
	int live = -1;
	if (replay(s, txn, &h, &lf, &n, NULL) == ST_OK) {
		l = n ? bsearch(&want, lf, n, sizeof *lf, cmp_logged) : NULL;
		live = l && l->removed == STORE_LIVE && !(h.flags & 1);
		if (live) {
			char why[ST_ERR_MSG_MAX];
			snprintf(why, sizeof why, "table '%s': file %llu (%llu rows) is live per the "
				 "commit log but has no file record", h.meta->name,
				 (unsigned long long)fid, (unsigned long long)l->rows);
			store_damage(s, tid, why);
		}
	}
	free(lf);
	head_fini(&h);
	return live;
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
	size_t n = 0;
	uint32_t before = r->nproblems;
	int rc = replay(s, txn, h, &lf, &n, err);
	if (rc != ST_OK)
		return rc;
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
	for (mrc = store_cget_skip(s, cur, &k, &v, MDB_SET_RANGE, NULL, NULL);
	     mrc == 0 && k.mv_size == FILE_KEY_LEN && table_range(&k, key);
	     mrc = store_cget_skip(s, cur, &k, &v, MDB_NEXT, NULL, NULL)) {
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
			    f.crc != l->crc || !!(f.flags & 1) != l->is_inline ||
			    f.deleted != l->deleted ||
			    (f.dv ? st_crc32c(0, f.dv, f.dv_len) : 0) != l->dv_crc)
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
	if (r->nproblems > before)
		store_damage(s, h->tid, r->problems[before]);
	free(lf);
	return ST_OK;
}

static void chain_problem(void *arg, const char *line);

struct verify_walk {
	st_store *s;
	MDB_txn *txn;
	bool quick;
	struct st_verify_result *res;
	struct st_err *err;
};

/* Table tid: every live segment's checksums, then (full) its file records
 * against its commits. Live records that fail their checksum are skipped:
 * the record sweep reports them, and the cross-check what they hide. */
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
	if (h.flags & 1) { /* dropped tables have nothing live */
		head_fini(&h);
		return ST_OK;
	}
	MDB_cursor *cur;
	int mrc = mdb_cursor_open(w->txn, w->s->dbi, &cur);
	if (mrc != 0) {
		head_fini(&h);
		return store_lmdb_err(w->err, mrc, "verifying");
	}
	uint8_t key[FILE_KEY_LEN];
	file_key(key, tid, STORE_LIVE, 0);
	MDB_val k = {sizeof key, key}, d;
	for (mrc = store_cget_skip(w->s, cur, &k, &d, MDB_SET_RANGE, NULL, NULL);
	     mrc == 0 && k.mv_size == FILE_KEY_LEN && table_range(&k, key);
	     mrc = store_cget_skip(w->s, cur, &k, &d, MDB_NEXT, NULL, NULL)) {
		struct file_rec f;
		if (file_rec_decode(file_key_fid(&k), d.mv_data, d.mv_size, &f) != ST_OK)
			continue; /* the cross-check reports it */
		verify_segment(w->s, w->txn, &h, &f, w->res);
		file_rec_fini(&f);
	}
	mdb_cursor_close(cur);
	if (mrc != 0 && mrc != MDB_NOTFOUND)
		rc = store_lmdb_err(w->err, mrc, "verifying");
	if (rc == ST_OK && !w->quick && !w->s->no_integrity)
		rc = cross_check(w->s, w->txn, &h, w->res, w->err);
	if (rc == ST_OK && !w->quick && h.meta->nkey) {
		uint32_t before = w->res->nproblems;
		rc = store_kix_verify(w->s, w->txn, tid, h.meta, chain_problem, w->res, w->err);
		if (w->res->nproblems > before)
			store_damage(w->s, tid, w->res->problems[before]);
	}
	head_fini(&h);
	return rc;
}

static void log_problem(void *arg, const char *line)
{
	problem(arg, "commit log: %s", line);
}

/* LMDB's pages (pagewalk.c), problems into r; *broken when there are any:
 * LMDB trusts its pages, so its cursors must not walk damaged ones. A
 * snapshot whose meta page a running daemon's writes have reused since is
 * not walked (said in a note, not a problem). */
static int page_check(st_store *s, MDB_txn *txn, struct st_verify_result *r, bool *broken,
		      struct st_err *err)
{
	struct pw_report pr;
	char msg[ST_ERR_MSG_MAX];
	*broken = false;
	int rc = pw_walk(s->env, txn, &pr, msg, sizeof msg);
	if (rc == ST_ECORRUPT && strstr(msg, "retry")) {
		r->page_walk_skipped = true;
		return ST_OK;
	}
	if (rc == ST_ECORRUPT) {
		problem(r, "LMDB: %s", msg);
		*broken = true;
		return ST_OK;
	}
	if (rc != ST_OK)
		return st_seterr(err, rc, "walking LMDB's pages: %s", msg);
	for (uint32_t i = 0; i < pr.nproblems; i++)
		problem(r, "LMDB %s", pr.problems[i]);
	*broken = pr.problems_total > 0;
	r->pages = pr.pages_total;
	pw_report_fini(&pr);
	return ST_OK;
}

static void chain_problem(void *arg, const char *line)
{
	problem(arg, "%s", line);
}

/* LMDB's default key order: bytes, then length. */
static int cmp_keys(const MDB_val *k, const uint8_t *key, size_t len)
{
	size_t n = k->mv_size < len ? k->mv_size : len;
	int c = memcmp(k->mv_data, key, n);
	return c ? c : (k->mv_size > len) - (k->mv_size < len);
}

/* The first 32 bytes of a key in hex (a static buffer: one at a time). */
static const char *hex_key(const uint8_t *key, size_t len)
{
	static _Thread_local char hex[2 * 32 + 4];
	size_t n = len < 32 ? len : 32;
	for (size_t i = 0; i < n; i++)
		snprintf(hex + 2 * i, 3, "%02x", key[i]);
	if (len > 32)
		strcpy(hex + 2 * n, "...");
	hex[len > 32 ? 2 * n + 3 : 2 * n] = 0;
	return hex;
}

/* Where a record sweep is: the last key seen (the next chunk starts after
 * it) and the table whose records it is counting. */
struct sweep_pos {
	uint8_t key[512];  /* LMDB keys are at most 511 bytes */
	size_t len;
	bool started, done;
	bool have_tid, headless;
	uint64_t tid, orphans;
	uint64_t bytes;    /* keys and values read */
	bool one;          /* only the records of table only (scrub of one table) */
	uint64_t only;
};

static void orphan_problem(struct st_verify_result *r, const struct sweep_pos *p)
{
	if (p->have_tid && p->headless && p->orphans)
		problem(r, "table id %llu: %llu records but no head: they belong to no table "
			"(orphans)", (unsigned long long)p->tid, (unsigned long long)p->orphans);
}

/* Up to max records from p on (all: UINT64_MAX): each one's checksum (each
 * failure reported, and its table refused), its kind, and that each table
 * record belongs to a table with a head. p->done at the end of the store. */
static int sweep(st_store *s, MDB_txn *txn, struct st_verify_result *r, struct sweep_pos *p,
		 uint64_t max, struct st_err *err)
{
	MDB_cursor *cur;
	int mrc = mdb_cursor_open(txn, s->dbi, &cur);
	if (mrc != 0)
		return store_lmdb_err(err, mrc, "verifying");
	MDB_val k = {p->len, p->key}, v;
	if (!p->started)
		mrc = store_mcget(s, cur, &k, &v, MDB_FIRST);
	else if ((mrc = store_mcget(s, cur, &k, &v, MDB_SET_RANGE)) == 0 && k.mv_size == p->len &&
		 !memcmp(k.mv_data, p->key, p->len))
		mrc = store_mcget(s, cur, &k, &v, MDB_NEXT);
	for (uint64_t n = 0; mrc == 0; mrc = store_mcget(s, cur, &k, &v, MDB_NEXT)) {
		if (n++ == max)
			break;
		if (k.mv_size > sizeof p->key || !store_readable(s, k.mv_data, k.mv_size)) {
			/* A damaged node: the position is lost with it. */
			problem(r, "a record with a damaged key (%zu bytes): a page of the store is "
				"damaged; the record sweep stops there", k.mv_size);
			p->done = true;
			break;
		}
		if (p->started && cmp_keys(&k, p->key, p->len) <= 0) {
			/* Keys out of order (a damaged page): a resumed sweep would
			 * go round in circles. */
			problem(r, "LMDB's keys are out of order after key %s: a page of the store "
				"is damaged; the record sweep stops there", hex_key(p->key, p->len));
			p->done = true;
			break;
		}
		if (p->one && (k.mv_size < TABLE_PREFIX_LEN || ((uint8_t *)k.mv_data)[0] != KEY_TABLE ||
			       key_tid(&k) != p->only)) {
			p->done = true; /* past the table's records */
			break;
		}
		p->started = true;
		r->records++;
		p->bytes += k.mv_size + v.mv_size;
		memcpy(p->key, k.mv_data, k.mv_size);
		p->len = k.mv_size;
		if (store_rec_check(s, txn, &k, &v) != 0) {
			problem(r, "%s", store_rec_last_bad());
			continue;
		}
		const uint8_t *kp = k.mv_data;
		if (k.mv_size == 0 || kp[0] > KEY_LSN) {
			problem(r, "a record of unknown kind (key of %zu bytes starting %02x)",
				k.mv_size, k.mv_size ? kp[0] : 0);
			continue;
		}
		if (kp[0] != KEY_TABLE)
			continue;
		if (k.mv_size < TABLE_PREFIX_LEN) {
			problem(r, "a table record with a %zu-byte key", k.mv_size);
			continue;
		}
		if (!p->have_tid || key_tid(&k) != p->tid) {
			orphan_problem(r, p);
			p->tid = key_tid(&k);
			p->have_tid = true;
			p->orphans = 0;
			uint8_t hk[HEAD_KEY_LEN];
			table_key(hk, p->tid, REC_HEAD);
			MDB_val hkv = {sizeof hk, hk}, hv;
			p->headless = store_mget(s, txn, &hkv, &hv) == MDB_NOTFOUND;
		}
		p->orphans++;
	}
	mdb_cursor_close(cur);
	if (mrc == MDB_NOTFOUND) {
		orphan_problem(r, p);
		p->done = true;
	} else if (mrc != 0 && !p->done) {
		return store_lmdb_err(err, mrc, "verifying");
	}
	return ST_OK;
}

/* Files under tables/ that no record names: segments of writes that never
 * committed (removed at the next open) or of tables that are gone. */
static void orphan_files(st_store *s, MDB_txn *txn, struct st_verify_result *r)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/tables", s->dir);
	DIR *d = opendir(path);
	struct dirent *t;
	while (d && (t = readdir(d))) {
		char *end;
		unsigned long long tid = strtoull(t->d_name, &end, 16);
		if (t->d_name[0] == '.')
			continue;
		if (*end || strlen(t->d_name) != 16) {
			problem(r, "tables/%s: not a table directory", t->d_name);
			continue;
		}
		uint8_t hk[HEAD_KEY_LEN];
		table_key(hk, tid, REC_HEAD);
		MDB_val hkv = {sizeof hk, hk}, hv;
		bool headless = store_mget(s, txn, &hkv, &hv) == MDB_NOTFOUND;
		uint64_t *ids = NULL;
		size_t nids = 0;
		bool listed = store_recorded_fids(s, txn, tid, &ids, &nids);
		char sub[PATH_MAX];
		snprintf(sub, sizeof sub, "%s/%s", path, t->d_name);
		DIR *sd = opendir(sub);
		struct dirent *f;
		while (listed && sd && (f = readdir(sd))) {
			if (f->d_name[0] == '.')
				continue;
			uint64_t fid;
			int kind = store_seg_name(f->d_name, &fid);
			bool seg = kind == SEG_NAME_SEGMENT;
			if (kind == SEG_NAME_TRANSIENT)
				continue; /* a write or a repair in flight (removed at open) */
			if (seg && nids && bsearch(&fid, ids, nids, sizeof *ids, cmp_u64))
				continue;
			r->orphans++;
			problem(r, "tables/%s/%s: %s", t->d_name, f->d_name,
				headless ? "a file of a table that has no head (orphan)"
				: seg ? "a segment no file record names (orphan: a write that did not "
					"commit, removed at the next open unless the commit log names it)"
				      : "not a segment (orphan)");
		}
		if (sd)
			closedir(sd);
		free(ids);
	}
	if (d)
		closedir(d);
}

int st_verify_ex(st_store *s, const struct st_verify_opts *o, struct st_verify_result *res,
		 struct st_err *err)
{
	MDB_txn *txn = NULL;
	struct st_err e;
	uint64_t records = 0;
	const uint8_t *head = o ? o->head : NULL;
	bool quick = o && o->quick;
	memset(res, 0, sizeof *res);
	int mrc = store_read_begin(s, &txn), rc = ST_OK;
	if (mrc != 0)
		return store_lmdb_err(err, mrc, "verifying");
	/* Every record's checksum; each table's CRC chain and its commits' LSN
	 * records; the whole log's hash chain in LSN order; every live
	 * segment; each table's file records against its commits; files no
	 * record names; LMDB's pages. */
	if (!quick && !s->no_integrity) {
		/* LMDB's pages first: LMDB trusts them, so a walk of the whole
		 * tree through its cursors waits until they are known sound. */
		bool broken;
		if ((rc = page_check(s, txn, res, &broken, err)) != ST_OK)
			goto out;
		if (broken) {
			problem(res, "LMDB's pages are damaged: the record checks were not run (they "
				"would walk the damaged pages); every table of this store is suspect");
			goto out;
		}
		struct sweep_pos pos = {0};
		if ((rc = sweep(s, txn, res, &pos, UINT64_MAX, err)) != ST_OK)
			goto out;
	}
	if ((rc = store_verify_chains(s, txn, UINT32_MAX, &res->commits, chain_problem, res,
				      &e)) != ST_OK)
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
	struct verify_walk w = {s, txn, quick, res, err};
	rc = store_each_head(s, txn, verify_one, &w, &mrc);
	if (rc == ST_OK && mrc != 0)
		rc = store_lmdb_err(err, mrc, "verifying");
	if (rc == ST_OK && !quick)
		orphan_files(s, txn, res);
out:
	store_read_end(s, txn);
	if (rc != ST_OK)
		st_verify_result_fini(res);
	return rc;
}

int st_verify_head(st_store *s, const uint8_t head[ST_HASH_LEN], struct st_verify_result *res,
		   struct st_err *err)
{
	struct st_verify_opts o = {.head = head};
	return st_verify_ex(s, &o, res, err);
}

int st_verify(st_store *s, struct st_verify_result *res, struct st_err *err)
{
	return st_verify_ex(s, NULL, res, err);
}

void st_verify_result_fini(struct st_verify_result *r)
{
	for (uint32_t i = 0; i < r->nproblems; i++)
		free(r->problems[i]);
	free(r->problems);
	memset(r, 0, sizeof *r);
}

/* ---- scrub (st_scrub): verify in short snapshots, at a rate ------------- */

#define SCRUB_SWEEP_CHUNK 10000 /* records per read txn of the record sweep */

struct pace {
	int64_t t0;
	uint64_t done;
	uint32_t rate;                 /* MB/s = bytes per µs; 0: unthrottled */
	const int *stop;
	struct st_scrub_progress *pg;
	struct st_verify_result *res;
};

static int64_t mono_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static bool pace_stopped(const struct pace *p)
{
	return p->stop && __atomic_load_n(p->stop, __ATOMIC_RELAXED);
}

/* Count n bytes read and sleep until the pass is back under its rate
 * (in slices of at most 100 ms, so that a stop is seen). false: stop. */
static bool pace(struct pace *p, uint64_t n)
{
	p->done += n;
	if (p->pg) {
		__atomic_store_n(&p->pg->bytes_done, p->done, __ATOMIC_RELAXED);
		__atomic_store_n(&p->pg->problems, p->res->nproblems, __ATOMIC_RELAXED);
	}
	if (p->rate) {
		int64_t due = p->t0 + (int64_t)(p->done / p->rate);
		for (int64_t now; !pace_stopped(p) && (now = mono_us()) < due;) {
			int64_t d = due - now < 100000 ? due - now : 100000;
			struct timespec ts = {0, (long)d * 1000};
			nanosleep(&ts, NULL);
		}
	}
	return !pace_stopped(p);
}

/* Whether fid is still a live file of table tid (a failed segment of a
 * file removed since is no damage: compaction and vacuum run meanwhile). */
static bool still_live(st_store *s, uint64_t tid, uint64_t fid)
{
	MDB_txn *txn;
	if (store_read_begin(s, &txn) != 0)
		return true;
	uint8_t key[FILE_KEY_LEN];
	file_key(key, tid, STORE_LIVE, fid);
	MDB_val k = {sizeof key, key}, v;
	bool live = store_mget(s, txn, &k, &v) != MDB_NOTFOUND;
	store_read_end(s, txn);
	return live;
}

/* One table: its chain, its file records against its commits and its live
 * file list in one read txn; then each live segment. */
static int scrub_table(st_store *s, uint64_t tid, struct pace *p, struct st_verify_result *r,
		       struct st_err *err)
{
	MDB_txn *txn;
	struct st_err e;
	int mrc = store_read_begin(s, &txn), rc = ST_OK;
	if (mrc != 0)
		return store_lmdb_err(err, mrc, "scrubbing");
	struct table_head h;
	if (head_get_tid(s, txn, tid, &h, &e) != ST_OK) {
		if (e.code != ST_ENOTFOUND) /* dropped and vacuumed meanwhile: nothing to check */
			problem(r, "table id %llu: %s", (unsigned long long)tid, e.msg);
		store_read_end(s, txn);
		return ST_OK;
	}
	char name[ST_NAME_MAX + 1];
	snprintf(name, sizeof name, "%s", h.meta->name);
	struct file_rec *f = NULL;
	uint32_t nf = 0;
	if (!(h.flags & 1)) {
		rc = store_verify_chain(s, txn, tid, &r->commits, chain_problem, r, err);
		if (rc == ST_OK && !s->no_integrity)
			rc = cross_check(s, txn, &h, r, err);
		if (rc == ST_OK && store_files_at(s, txn, tid, h.version, &f, &nf, &e) != ST_OK) {
			if (e.code != ST_ECORRUPT) {
				*err = e;
				rc = e.code;
			} else {
				problem(r, "table '%s': its live files cannot be listed: %s", name, e.msg);
				store_damage(s, tid, e.msg);
			}
		}
	}
	head_fini(&h);
	store_read_end(s, txn);
	for (uint32_t i = 0; rc == ST_OK && i < nf; i++) {
		r->segments++;
		if (check_segment_at(s, NULL, tid, &f[i], NULL, &e) != ST_OK && still_live(s, tid, f[i].fid))
			segment_problem(s, r, tid, name, &f[i], &e);
		if (!pace(p, f[i].size))
			break;
	}
	file_recs_free(f, nf);
	return rc;
}

struct tid_list {
	uint64_t *v;
	size_t n, cap;
};

static int add_tid(void *arg, uint64_t tid, MDB_val *v)
{
	struct tid_list *l = arg;
	(void)v;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		uint64_t *g = realloc(l->v, cap * sizeof *g);
		if (!g)
			return ST_ENOMEM;
		l->v = g;
		l->cap = cap;
	}
	l->v[l->n++] = tid;
	return 0;
}

/* The tables of the pass (all, or the one named) and its size estimate:
 * their live segments, and the data file for the record sweep. */
static int scrub_plan(st_store *s, const char *table, struct tid_list *l, uint64_t *total,
		      struct st_err *err)
{
	MDB_txn *txn;
	int mrc = store_read_begin(s, &txn), rc = ST_OK;
	if (mrc != 0)
		return store_lmdb_err(err, mrc, "scrubbing");
	if (table) {
		struct table_head h;
		if ((rc = head_get_damaged(s, txn, table, &h, err)) == ST_OK) {
			if (add_tid(l, h.tid, NULL))
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
			head_fini(&h);
		}
	} else if ((rc = store_each_head(s, txn, add_tid, l, &mrc)) != 0) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
	} else if (mrc != 0) {
		rc = store_lmdb_err(err, mrc, "scrubbing");
	}
	*total = 0;
	for (size_t i = 0; rc == ST_OK && i < l->n; i++) {
		struct table_head h;
		struct file_rec *f;
		uint32_t nf;
		if (head_get_tid(s, txn, l->v[i], &h, NULL) != ST_OK)
			continue;
		if (!(h.flags & 1) && store_files_at(s, txn, h.tid, h.version, &f, &nf, NULL) == ST_OK) {
			for (uint32_t j = 0; j < nf; j++)
				*total += f[j].size;
			file_recs_free(f, nf);
		}
		head_fini(&h);
	}
	store_read_end(s, txn);
	char path[PATH_MAX];
	struct stat st;
	snprintf(path, sizeof path, "%s/store/data.mdb", s->dir);
	if (rc == ST_OK && stat(path, &st) == 0)
		*total += (uint64_t)st.st_size / (table ? 64 : 1); /* one table: a share of it */
	return rc;
}

int st_scrub(st_store *s, const struct st_scrub_opts *o, struct st_verify_result *res,
	     bool *stopped, struct st_err *err)
{
	struct st_scrub_opts none = {0};
	if (!o)
		o = &none;
	memset(res, 0, sizeof *res);
	*stopped = false;
	struct pace p = {mono_us(), 0, o->rate_mb_s, o->stop, o->progress, res};
	struct tid_list l = {0};
	uint64_t total = 0;
	int rc = scrub_plan(s, o->table, &l, &total, err);
	if (rc == ST_OK && p.pg) {
		__atomic_store_n(&p.pg->bytes_total, total, __ATOMIC_RELAXED);
		__atomic_store_n(&p.pg->tables_total, (uint64_t)l.n, __ATOMIC_RELAXED);
	}
	for (size_t i = 0; rc == ST_OK && i < l.n && !pace_stopped(&p); i++) {
		rc = scrub_table(s, l.v[i], &p, res, err);
		if (p.pg)
			__atomic_store_n(&p.pg->tables_done, (uint64_t)i + 1, __ATOMIC_RELAXED);
	}
	/* Every record's checksum (of the one table, or of the store). */
	struct sweep_pos pos = {0};
	if (o->table && l.n) {
		table_key(pos.key, l.v[0], 0);
		pos.len = TABLE_PREFIX_LEN - 1;
		pos.started = pos.one = true;
		pos.only = l.v[0];
	}
	while (rc == ST_OK && l.n && !pos.done && !pace_stopped(&p) && !s->no_integrity) {
		MDB_txn *txn;
		int mrc = store_read_begin(s, &txn);
		if (mrc != 0) {
			rc = store_lmdb_err(err, mrc, "scrubbing");
			break;
		}
		uint64_t b0 = pos.bytes;
		rc = sweep(s, txn, res, &pos, SCRUB_SWEEP_CHUNK, err);
		store_read_end(s, txn);
		pace(&p, pos.bytes - b0);
	}
	/* The store's hash chain in LSN order. */
	if (rc == ST_OK && !o->table && !pace_stopped(&p)) {
		MDB_txn *txn;
		int mrc = store_read_begin(s, &txn);
		uint64_t found, records = 0;
		if (mrc != 0)
			rc = store_lmdb_err(err, mrc, "scrubbing");
		else
			rc = store_verify_log(s, txn, 0, NULL, &found, &records, log_problem, res, err);
		if (mrc == 0)
			store_read_end(s, txn);
	}
	*stopped = pace_stopped(&p);
	pace(&p, 0);
	free(l.v);
	if (rc != ST_OK)
		st_verify_result_fini(res);
	return rc;
}

/* ---- repair (st_segment_repair) ------------------------------------------ */

/* The file record of (tid, fid), live or removed, into f (ST_ENOTFOUND:
 * none: vacuumed). */
static int find_file_rec(st_store *s, uint64_t tid, uint64_t fid, struct file_rec *f,
			 struct st_err *err)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	int mrc = store_read_begin(s, &txn), rc = ST_ENOTFOUND;
	if (mrc != 0)
		return store_lmdb_err(err, mrc, "repairing a segment");
	if ((mrc = mdb_cursor_open(txn, s->dbi, &cur)) != 0) {
		store_read_end(s, txn);
		return store_lmdb_err(err, mrc, "repairing a segment");
	}
	uint8_t key[FILE_KEY_LEN];
	file_key(key, tid, 0, 0);
	MDB_val k = {sizeof key, key}, v;
	for (mrc = store_cget(s, cur, &k, &v, MDB_SET_RANGE);
	     mrc == 0 && k.mv_size == FILE_KEY_LEN && table_range(&k, key);
	     mrc = store_cget(s, cur, &k, &v, MDB_NEXT))
		if (file_key_fid(&k) == fid) {
			rc = file_rec_decode(fid, v.mv_data, v.mv_size, f);
			if (rc != ST_OK)
				rc = st_seterr(err, ST_ECORRUPT, "the record of file %llu is damaged",
					       (unsigned long long)fid);
			break;
		}
	if (mrc != 0 && mrc != MDB_NOTFOUND)
		rc = store_lmdb_err(err, mrc, "repairing a segment");
	mdb_cursor_close(cur);
	store_read_end(s, txn);
	if (rc == ST_ENOTFOUND)
		st_seterr(err, rc, "file %llu of table id %llu has no record", (unsigned long long)fid,
			  (unsigned long long)tid);
	return rc;
}

int st_segment_repair(st_store *s, uint64_t tid, uint64_t fid, const char *fetched,
		      struct st_err *err)
{
	struct st_bad_segment bad[STORE_BAD_SEGS_MAX];
	uint32_t n = st_bad_segments(s, bad, STORE_BAD_SEGS_MAX), i;
	for (i = 0; i < n && !(bad[i].tid == tid && bad[i].fid == fid); i++)
		;
	if (i >= n || i >= STORE_BAD_SEGS_MAX)
		return st_seterr(err, ST_ENOTFOUND, "segment %llu of table id %llu is not known to "
				 "be damaged", (unsigned long long)fid, (unsigned long long)tid);
	struct file_rec f;
	int rc = find_file_rec(s, tid, fid, &f, err);
	if (rc == ST_ENOTFOUND) { /* vacuumed meanwhile: nothing reads it any more */
		unlink(fetched);
		store_forget_segment(s, tid, fid);
		return ST_OK;
	}
	if (rc != ST_OK)
		return rc;
	uint32_t crc = 0;
	uint64_t size = 0;
	struct st_err e;
	if ((rc = store_file_crc(fetched, &crc, &size, err)) == ST_OK &&
	    (size != f.size || crc != f.crc))
		rc = st_seterr(err, ST_ECORRUPT, "the copy of segment %llu of table id %llu is not "
			       "the file its record names (%llu bytes, CRC %08x; the record: %llu, "
			       "%08x)", (unsigned long long)fid, (unsigned long long)tid,
			       (unsigned long long)size, crc, (unsigned long long)f.size, f.crc);
	if (rc == ST_OK && (f.flags & 1))
		rc = st_seterr(err, ST_EINVAL, "segment %llu of table id %llu is inline: a copy of "
			       "the record, not of a file, repairs it", (unsigned long long)fid,
			       (unsigned long long)tid);
	if (rc == ST_OK && check_segment_at(s, NULL, tid, &f, fetched, &e) != ST_OK)
		rc = st_seterr(err, ST_ECORRUPT, "the copy of segment %llu of table id %llu fails "
			       "its checks: %s", (unsigned long long)fid, (unsigned long long)tid,
			       e.msg);
	file_rec_fini(&f);
	if (rc == ST_ECORRUPT)
		unlink(fetched);
	if (rc != ST_OK)
		return rc;
	char path[PATH_MAX];
	store_seg_path(s, tid, fid, path, sizeof path);
	int fd = open(fetched, O_RDONLY);
	int en = fd < 0 || fsync(fd) != 0 ? errno : 0;
	if (fd >= 0)
		close(fd);
	if (!en && rename(fetched, path) != 0)
		en = errno;
	if (!en)
		en = st_io_fsync_dir(&st_io_posix, path); /* the directory holding it */
	if (en)
		return st_seterr(err, en, "cannot put the copy of segment %llu in place: %s",
				 (unsigned long long)fid, strerror(en));
	store_forget_segment(s, tid, fid);
	return ST_OK;
}
