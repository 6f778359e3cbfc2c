/*
 * daemon/store/store.c — opening and closing a data directory, and the LMDB
 * records every other part of the store uses: table heads, file records and
 * commits, all in LMDB's main database (daemon/STORE.md).
 *
 * Threading: the LMDB environment is opened with MDB_NOTLS so read
 * transactions may move between threads (scans); writes are serialized by
 * write_lock and LMDB's own writer lock. The failed state is sticky: once
 * an fsync or an LMDB commit fails, writes are refused until reopen
 * (DESIGN.md §10).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>

#include "daemon/store/pagewalk.h"
#include "daemon/store/store_int.h"
#include "format/io.h"
#include "format/segment.h"

int64_t store_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * LMDB's codes by what the caller can do about them: a full map or
 * transaction is a size limit (retryable after map_size grows or the write
 * is split), full reader slots are a passing shortage, a version mismatch
 * is a format question, a panic leaves the environment unusable, a damaged
 * page is corruption; the rest are strata's own misuse of LMDB (bugs),
 * reported as such instead of as corruption.
 */
int store_lmdb_err(struct st_err *err, int rc, const char *what)
{
	switch (rc) {
	case MDB_MAP_FULL:
		return st_seterr(err, ST_ETOOBIG,
				 "%s: the store's LMDB map is full: reopen it with a larger map_size",
				 what);
	case MDB_TXN_FULL:
		return st_seterr(err, ST_ETOOBIG,
				 "%s: the commit changes more pages than one LMDB transaction holds: "
				 "split it into smaller ones", what);
	case MDB_READERS_FULL:
		return st_seterr(err, ST_EBUSY,
				 "%s: all %d LMDB reader slots are in use (open scans, or slots left "
				 "by dead processes): retry; stale slots are cleared periodically",
				 what, STORE_MAX_READERS);
	case MDB_MAP_RESIZED:
		return st_seterr(err, ST_EBUSY,
				 "%s: the LMDB map was resized by another process: retry", what);
	case MDB_VERSION_MISMATCH:
		return st_seterr(err, ST_EVERSION,
				 "%s: LMDB: %s (the store was written by another LMDB version)", what,
				 mdb_strerror(rc));
	case MDB_PANIC:
		return st_seterr(err, ST_EFAILED,
				 "%s: LMDB: %s: reopen the store", what, mdb_strerror(rc));
	case STORE_EBADREC:
	case STORE_EFAULT:
		return st_seterr(err, ST_ECORRUPT, "%s: %s", what, store_rec_last_bad());
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
	case MDB_PAGE_FULL:
	case MDB_KEYEXIST:
	case MDB_NOTFOUND:
		/* A damaged page, or a record that is (or is not) there when the
		 * store's own invariants say otherwise. */
		return st_seterr(err, ST_ECORRUPT, "%s: LMDB: %s", what, mdb_strerror(rc));
	default:
		if (rc > 0)
			return st_seterr(err, rc, "%s: %s", what, strerror(rc));
		return st_seterr(err, ST_EINVAL, "%s: LMDB: %s (a strata bug: please report it)",
				 what, mdb_strerror(rc));
	}
}

int store_fail(st_store *s, struct st_err *err, const char *fmt, ...)
{
	char m[ST_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m, sizeof m, fmt, ap);
	va_end(ap);
	int z = 0;
	if (__atomic_compare_exchange_n(&s->failclaim, &z, 1, 0, __ATOMIC_ACQ_REL,
					__ATOMIC_ACQUIRE)) {
		memcpy(s->failmsg, m, sizeof m);
		__atomic_store_n(&s->failed, ST_EFAILED, __ATOMIC_RELEASE);
	}
	return st_seterr(err, ST_EFAILED, "%s; the store refuses writes until it is reopened", m);
}

int store_refuse_failed(st_store *s, struct st_err *err)
{
	if (!__atomic_load_n(&s->failed, __ATOMIC_ACQUIRE))
		return ST_OK;
	return st_seterr(err, ST_EFAILED, "%s; reopen the store", s->failmsg);
}

int st_store_failure(st_store *s, char *buf, size_t n)
{
	if (!__atomic_load_n(&s->failed, __ATOMIC_ACQUIRE))
		return 0;
	if (n)
		snprintf(buf, n, "%s", s->failmsg);
	return 1;
}

static char *hex16(char *p, uint64_t v)
{
	for (int i = 15; i >= 0; i--, v >>= 4)
		p[i] = "0123456789abcdef"[v & 15];
	return p + 16;
}

void store_seg_path(const st_store *s, uint64_t tid, uint64_t fid, char *buf, size_t len)
{
	/* DIR/tables/<tid %016x>/<fid %016x>.seg, formatted by hand: this
	 * runs once per write. */
	size_t dl = strlen(s->dir);
	if (len < dl + 8 + 17 + 21) {
		snprintf(buf, len, "%s", s->dir);
		return;
	}
	char *p = memcpy(buf, s->dir, dl);
	p = (char *)memcpy(p + dl, "/tables/", 8) + 8;
	p = hex16(p, tid);
	*p++ = '/';
	p = hex16(p, fid);
	memcpy(p, ".seg", 5);
}

/*
 * Recovery (STORE.md §5): remove what interrupted writes left behind —
 * *.seg.tmp files, and *.seg files that no file record references (written
 * and renamed, but their LMDB commit never happened). We hold the
 * directory's exclusive lock, so no writer can be between its rename and
 * its commit: no grace period is needed. Returns the files removed.
 */
static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Every file id of table tid that has a record, live or removed, sorted
 * into *out (freed by the caller). False when they could not be listed. */
bool store_recorded_fids(st_store *s, MDB_txn *txn, uint64_t tid, uint64_t **out, size_t *n)
{
	MDB_cursor *cur;
	uint8_t key[FILE_KEY_LEN];
	uint64_t *ids = NULL;
	size_t cap = 0;
	bool ok = true;
	*n = 0;
	*out = NULL;
	if (mdb_cursor_open(txn, s->dbi, &cur) != 0)
		return false;
	file_key(key, tid, 0, 0);
	MDB_val k = {sizeof key, key}, v;
	int mrc;
	for (mrc = store_cget(s, cur, &k, &v, MDB_SET_RANGE);
	     mrc == 0 && k.mv_size == FILE_KEY_LEN && table_range(&k, key);
	     mrc = store_cget(s, cur, &k, &v, MDB_NEXT)) {
		if (*n == cap) {
			uint64_t *g = realloc(ids, (cap = cap ? 2 * cap : 64) * sizeof *g);
			if (!g) {
				ok = false;
				break;
			}
			ids = g;
		}
		ids[(*n)++] = file_key_fid(&k);
	}
	if (mrc != 0 && mrc != MDB_NOTFOUND)
		ok = false; /* unreadable: remove nothing */
	mdb_cursor_close(cur);
	/* Cluster mode: files of log entries not applied yet (fetched, or
	 * written by a leader whose proposal is still open). */
	if (ok && !store_repl_unapplied_fids(s, txn, tid, &ids, n, &cap))
		ok = false;
	if (*n)
		qsort(ids, *n, sizeof *ids, cmp_u64);
	*out = ids;
	return ok;
}

int store_seg_name(const char *name, uint64_t *fid)
{
	char *end;
	*fid = strtoull(name, &end, 16);
	if (end != name + 16 || !isxdigit((unsigned char)name[0]))
		return SEG_NAME_OTHER;
	if (!strcmp(end, ".seg"))
		return SEG_NAME_SEGMENT;
	if (!strcmp(end, ".seg.tmp") || !strcmp(end, ".seg.repair") ||
	    !strcmp(end, ".seg.repair.tmp"))
		return SEG_NAME_TRANSIENT;
	return SEG_NAME_OTHER;
}

static uint64_t remove_leftovers(st_store *s, MDB_txn *txn)
{
	char path[PATH_MAX];
	uint64_t removed = 0;
	snprintf(path, sizeof path, "%s/tables", s->dir);
	DIR *d = opendir(path);
	struct dirent *t;
	while (d && (t = readdir(d))) {
		char *end;
		unsigned long long tid = strtoull(t->d_name, &end, 16);
		if (t->d_name[0] == '.' || *end || strlen(t->d_name) != 16)
			continue;
		char sub[PATH_MAX];
		snprintf(sub, sizeof sub, "%s/%s", path, t->d_name);
		DIR *sd = opendir(sub);
		struct dirent *f;
		size_t nids = 0;
		uint64_t *ids = NULL;
		bool listed = false;
		while (sd && (f = readdir(sd))) {
			uint64_t fid;
			int kind = store_seg_name(f->d_name, &fid);
			if (kind == SEG_NAME_OTHER)
				continue;
			if (kind == SEG_NAME_SEGMENT) {
				if (!listed && !store_recorded_fids(s, txn, tid, &ids, &nids))
					break; /* unsure what is referenced: remove nothing */
				listed = true;
				if (nids && bsearch(&fid, ids, nids, sizeof *ids, cmp_u64))
					continue;
				/* No record: a write that never committed, unless the
				 * commit log says the file is live (its record was lost
				 * to damage: keep the file for a repair, refuse the
				 * table). */
				int live = store_log_says_live(s, txn, tid, fid);
				if (live != 0)
					continue;
			}
			char p[PATH_MAX];
			snprintf(p, sizeof p, "%s/%s", sub, f->d_name);
			removed += unlink(p) == 0;
		}
		free(ids);
		if (sd)
			closedir(sd);
	}
	if (d)
		closedir(d);
	return removed;
}

int store_each_head(st_store *s, MDB_txn *txn, int (*fn)(void *arg, uint64_t tid, MDB_val *v),
		    void *arg, int *mrc)
{
	MDB_cursor *cur;
	uint8_t key[HEAD_KEY_LEN];
	int r = 0;
	if ((*mrc = mdb_cursor_open(txn, s->dbi, &cur)) != 0)
		return 0;
	/* Heads are one per table: seek each table's head, then past it. */
	uint64_t tid = 0;
	for (;;) {
		table_key(key, tid, REC_HEAD);
		MDB_val k = {sizeof key, key}, v;
		if ((*mrc = store_cget(s, cur, &k, &v, MDB_SET_RANGE)) == STORE_EBADREC &&
		    k.mv_size >= TABLE_PREFIX_LEN && ((uint8_t *)k.mv_data)[0] == KEY_TABLE) {
			/* A damaged record (its table is refused now): go past it. */
			uint64_t at = key_tid(&k);
			*mrc = at < tid ? MDB_CORRUPTED : 0;
			if (at < tid || (tid = at + 1) == 0)
				break;
			continue;
		}
		if (*mrc != 0)
			break;
		const uint8_t *p = k.mv_data;
		if (k.mv_size < TABLE_PREFIX_LEN || p[0] != KEY_TABLE)
			break;
		uint64_t at = key_tid(&k);
		if (at < tid) { /* keys out of order: a damaged page (else: a loop) */
			*mrc = MDB_CORRUPTED;
			break;
		}
		if (at == tid && p[9] == REC_HEAD && k.mv_size == HEAD_KEY_LEN &&
		    (r = fn(arg, tid, &v)) != 0)
			break;
		if (at == tid && (tid = at + 1) == 0)
			break;
		if (at > tid)
			tid = at; /* a table's first record: seek its head */
	}
	if (*mrc == MDB_NOTFOUND)
		*mrc = 0;
	mdb_cursor_close(cur);
	return r;
}

struct verify_walk {
	st_store *s;
	MDB_txn *txn;
	uint32_t depth;
	uint64_t *checked;
	void (*problem)(void *arg, const char *line);
	void *arg;
	struct st_err *err;
};

/* Commit c of table tid must have its LSN record, naming it. */
static int check_lsn_record(st_store *s, MDB_txn *txn, const char *name, uint64_t tid,
			    const struct act_commit *c, struct st_err *err)
{
	uint8_t key[LSN_KEY_LEN];
	lsn_key(key, c->lsn);
	MDB_val k = {sizeof key, key}, v;
	int mrc = store_get(s, txn, &k, &v);
	if (mrc != 0 && mrc != MDB_NOTFOUND)
		return store_lmdb_err(err, mrc, "verifying commits");
	if (mrc == MDB_NOTFOUND || v.mv_size < LSN_REC_LEN ||
	    st_get_le64((uint8_t *)v.mv_data + 64) != tid ||
	    st_get_le64((uint8_t *)v.mv_data + 72) != c->version)
		return st_seterr(err, ST_ECORRUPT,
				 "table '%s': commit %llu (LSN %llu) is %s the commit log: the log "
				 "was changed", name, (unsigned long long)c->version,
				 (unsigned long long)c->lsn,
				 mrc == MDB_NOTFOUND ? "missing from" : "not the one named by");
	return ST_OK;
}

static int verify_chain(void *arg, uint64_t tid, MDB_val *hv)
{
	struct verify_walk *w = arg;
	struct table_head h;
	int rc, mrc;
	(void)hv;
	if ((rc = head_get_tid(w->s, w->txn, tid, &h, w->err)) != ST_OK)
		goto out;
	uint64_t first = h.version >= w->depth ? h.version - w->depth + 1 : 0;
	if (first < h.oldest)
		first = h.oldest;
	uint32_t expect = 0;
	bool have_expect = false;
	for (uint64_t ver = first; ver <= h.version && rc == ST_OK; ver++) {
		uint8_t key[COMMIT_KEY_LEN];
		commit_key(key, h.tid, ver);
		MDB_val ck = {sizeof key, key}, cv;
		struct act_commit *c = NULL;
		if ((mrc = store_get(w->s, w->txn, &ck, &cv)) != 0)
			rc = st_seterr(w->err, ST_ECORRUPT, "table '%s': commit %llu is missing",
				       h.meta->name, (unsigned long long)ver);
		else if ((rc = act_decode(cv.mv_data, cv.mv_size, &c, w->err)) == ST_OK &&
			 ((have_expect && c->prev_checksum != expect) || c->version != ver))
			rc = st_seterr(w->err, ST_ECORRUPT,
				       "table '%s': commit %llu does not chain to commit %llu "
				       "(checksum mismatch): the log was changed",
				       h.meta->name, (unsigned long long)ver,
				       (unsigned long long)ver - 1);
		if (rc == ST_OK)
			rc = check_lsn_record(w->s, w->txn, h.meta->name, h.tid, c, w->err);
		if (rc == ST_OK) {
			expect = act_checksum(c->prev_checksum, cv.mv_data, cv.mv_size);
			have_expect = true;
			if (w->checked)
				(*w->checked)++;
		}
		act_commit_free(c);
	}
	if (rc == ST_OK && have_expect && expect != h.checksum)
		rc = st_seterr(w->err, ST_ECORRUPT,
			       "table '%s': head checksum does not match commit %llu",
			       h.meta->name, (unsigned long long)h.version);
	head_fini(&h);
out:
	if (rc == ST_ECORRUPT && w->problem) {
		/* This table is damaged: refuse it, check the others. */
		store_damage(w->s, tid, w->err->msg);
		w->problem(w->arg, w->err->msg);
		rc = ST_OK;
	}
	return rc;
}

int store_verify_chain(st_store *s, MDB_txn *txn, uint64_t tid, uint64_t *checked,
		       void (*problem)(void *arg, const char *line), void *arg, struct st_err *err)
{
	struct verify_walk w = {s, txn, UINT32_MAX, checked, problem, arg, err};
	return verify_chain(&w, tid, NULL);
}

int store_verify_chains(st_store *s, MDB_txn *txn, uint32_t depth, uint64_t *checked,
			void (*problem)(void *arg, const char *line), void *arg,
			struct st_err *err)
{
	struct verify_walk w = {s, txn, depth, checked, problem, arg, err};
	int mrc, rc = store_each_head(s, txn, verify_chain, &w, &mrc);
	if (rc == ST_OK && mrc != 0)
		rc = store_lmdb_err(err, mrc, "verifying commits");
	return rc;
}

/* Open: the next file id is the largest of any table's (file ids come
 * from one store-wide counter so that concurrent writers never need the
 * write lock to name their segments), the last LSN the largest head's. */
static int scan_head(void *arg, uint64_t tid, MDB_val *v)
{
	st_store *s = arg;
	(void)tid;
	s->opened.tables++;
	if (v->mv_size >= STORE_HEAD_FIXED) {
		const uint8_t *p = v->mv_data;
		if (st_get_le64(p + 24) > s->next_fid)
			s->next_fid = st_get_le64(p + 24);
		if (st_get_le64(p + 48) > s->last_lsn)
			s->last_lsn = st_get_le64(p + 48);
	}
	return 0;
}

/* Format 8 added the key index (STORE.md §2.1): the tables with a declared
 * key (dropped ones aside) get theirs, every retained file record indexed
 * under its own id as segment id. */
struct keyed {
	uint64_t *tids;
	uint32_t n, cap;
};

static int keyed_head(void *arg, uint64_t tid, MDB_val *v)
{
	struct keyed *k = arg;
	struct act_metadata *m = NULL;
	if (v->mv_size < STORE_HEAD_FIXED || (st_get_le32((uint8_t *)v->mv_data + 20) & 1) ||
	    act_metadata_decode((uint8_t *)v->mv_data + STORE_HEAD_FIXED,
				v->mv_size - STORE_HEAD_FIXED, &m, NULL) != ST_OK)
		return 0;
	bool keyed = m->nkey > 0;
	act_metadata_free(m);
	return keyed && !store_push_u64(&k->tids, &k->n, &k->cap, tid);
}

static int upgrade7(st_store *s, MDB_txn *txn, struct st_err *err)
{
	struct keyed k = {0};
	int mrc = 0, rc = ST_OK;
	if (store_each_head(s, txn, keyed_head, &k, &mrc) != 0 || mrc != 0) {
		free(k.tids);
		return mrc ? store_lmdb_err(err, mrc, "upgrading the store to format 8")
			   : st_seterr(err, ST_ENOMEM, "out of memory");
	}
	for (uint32_t i = 0; i < k.n && rc == ST_OK; i++) {
		struct table_head h = {0};
		struct file_rec *f = NULL;
		uint32_t nf = 0;
		if ((rc = head_get_tid(s, txn, k.tids[i], &h, err)) == ST_OK)
			rc = store_files_retained(s, txn, k.tids[i], &f, &nf, err);
		for (uint32_t j = 0; j < nf && rc == ST_OK; j++)
			rc = store_kix_index_file(s, txn, h.meta, k.tids[i], &f[j], err);
		file_recs_free(f, nf);
		head_fini(&h);
	}
	free(k.tids);
	return rc;
}

/* Open: a table whose newest commits do not chain is refused (its damage
 * is recorded by store_verify_chains), the others serve. */
static void open_problem(void *arg, const char *line)
{
	(void)arg;
	(void)line;
}

uint64_t store_next_fid(st_store *s)
{
	return __atomic_fetch_add(&s->next_fid, 1, __ATOMIC_RELAXED);
}

/* Open: the commit log's newest record is the chain's head; its LSN must
 * be the newest head's (a dropped or added LSN record shows here), and the
 * newest STORE_VERIFY_DEPTH records must chain. */
static int open_log(st_store *s, MDB_txn *txn, const char *dir, struct st_err *err)
{
	uint64_t lsn;
	int rc = store_chain_last(s, txn, &lsn, s->last_hash, err);
	if (rc != ST_OK)
		return rc;
	if (lsn > s->last_lsn && (rc = store_repl_check_tail(s, txn, lsn, err)) != ST_OK)
		return rc;
	if (lsn != s->last_lsn)
		return st_seterr(err, ST_ECORRUPT,
				 "store '%s': the commit log ends at LSN %llu but the tables' newest "
				 "commit is LSN %llu: the log was changed; run stratad --verify %s",
				 dir, (unsigned long long)lsn, (unsigned long long)s->last_lsn, dir);
	return store_verify_log(s, txn, lsn > STORE_VERIFY_DEPTH ? lsn - STORE_VERIFY_DEPTH + 1 : 0,
				NULL, NULL, &s->opened.log_records, NULL, NULL, err);
}

void st_store_open_report(st_store *s, struct st_open_report *out)
{
	*out = s->opened;
}

/* Format 5 to 6: every record gets its checksum trailer, in transactions
 * of UPGRADE_BATCH records (a large store fits no single one). Meta key
 * `upgrade6` holds the last key converted, so an interrupted upgrade goes
 * on where it stopped; the format record changes last. */
#define UPGRADE_BATCH 20000
static int upgrade5(st_store *s, struct st_err *err)
{
	static const char marker[] = "upgrade6";
	uint8_t mk[16];
	MDB_val mkv = kind_key(mk, KEY_META, marker, sizeof marker - 1);
	struct st_buf b = {0};
	int mrc = 0, rc = ST_OK;
	/* The upgrade reads every record through LMDB's cursors, which trust
	 * the pages: walk them first, and upgrade only a sound tree. */
	MDB_txn *rt;
	if ((mrc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &rt)) != 0)
		return store_lmdb_err(err, mrc, "upgrading the store to format 6");
	struct pw_report pr;
	char msg[ST_ERR_MSG_MAX];
	rc = pw_walk(s->env, rt, &pr, msg, sizeof msg);
	mdb_txn_abort(rt);
	if (rc != ST_OK)
		return st_seterr(err, ST_ECORRUPT, "not upgraded to format 6: LMDB's pages: %s", msg);
	if (pr.problems_total) {
		rc = st_seterr(err, ST_ECORRUPT, "not upgraded to format 6: LMDB's pages are damaged "
			       "(%llu problems; first: %s); restore the data directory from a copy",
			       (unsigned long long)pr.problems_total,
			       pr.nproblems ? pr.problems[0] : "?");
		pw_report_fini(&pr);
		return rc;
	}
	pw_report_fini(&pr);
	for (bool done = false; !done && rc == ST_OK;) {
		MDB_txn *txn;
		MDB_cursor *cur;
		MDB_val k, v;
		if ((mrc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0)
			return store_lmdb_err(err, mrc, "upgrading the store to format 6");
		if ((mrc = mdb_cursor_open(txn, s->dbi, &cur)) != 0) {
			mdb_txn_abort(txn);
			return store_lmdb_err(err, mrc, "upgrading the store to format 6");
		}
		/* Resume after the marker's key, or start at the first record. */
		b.len = 0;
		if ((mrc = store_get(s, txn, &mkv, &v)) == 0) {
			st_buf_append(&b, v.mv_data, v.mv_size);
			k = (MDB_val){b.len, b.data};
			mrc = store_mcget(s, cur, &k, &v, MDB_SET_RANGE);
			if (mrc == 0 && k.mv_size == b.len && !memcmp(k.mv_data, b.data, b.len))
				mrc = store_mcget(s, cur, &k, &v, MDB_NEXT);
		} else if (mrc == MDB_NOTFOUND) {
			mrc = store_mcget(s, cur, &k, &v, MDB_FIRST);
		}
		/* Copy a batch (LMDB's pointers die at the first put), then put. */
		struct st_buf batch = {0};
		uint32_t n = 0;
		for (; mrc == 0 && n < UPGRADE_BATCH; mrc = store_mcget(s, cur, &k, &v, MDB_NEXT)) {
			if (k.mv_size == mkv.mv_size && !memcmp(k.mv_data, mk, mkv.mv_size))
				continue;
			uint8_t hd[8];
			st_put_le32(hd, (uint32_t)k.mv_size);
			st_put_le32(hd + 4, (uint32_t)v.mv_size);
			st_buf_append(&batch, hd, 8);
			st_buf_append(&batch, k.mv_data, k.mv_size);
			st_buf_append(&batch, v.mv_data, v.mv_size);
			n++;
		}
		done = mrc == MDB_NOTFOUND;
		if (mrc == MDB_NOTFOUND)
			mrc = 0;
		mdb_cursor_close(cur);
		const uint8_t *p = batch.data, *last = NULL;
		size_t lastlen = 0;
		for (uint32_t i = 0; i < n && mrc == 0 && !batch.oom; i++) {
			MDB_val bk = {st_get_le32(p), (void *)(p + 8)};
			MDB_val bv = {st_get_le32(p + 4), (void *)(p + 8 + bk.mv_size)};
			mrc = store_rec_put(s, txn, NULL, &bk, &bv, 0);
			last = bk.mv_data;
			lastlen = bk.mv_size;
			p += 8 + bk.mv_size + bv.mv_size;
		}
		if (mrc == 0 && !batch.oom && last && !done) {
			MDB_val mv = {lastlen, (void *)last};
			mrc = store_rec_put(s, txn, NULL, &mkv, &mv, 0);
		}
		if (mrc == 0 && !batch.oom && done) {
			uint8_t fb[4];
			uint8_t kb[16];
			MDB_val fk = kind_key(kb, KEY_META, "format", 6), fv = {4, fb};
			st_put_le32(fb, STORE_FORMAT);
			mrc = store_rec_put(s, txn, NULL, &fk, &fv, 0);
			if (mrc == 0 && (mrc = mdb_del(txn, s->dbi, &mkv, NULL)) == MDB_NOTFOUND)
				mrc = 0;
		}
		if (batch.oom)
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
		else if (mrc == 0)
			mrc = mdb_txn_commit(txn);
		else
			mdb_txn_abort(txn);
		if (batch.oom)
			mdb_txn_abort(txn);
		st_buf_free(&batch);
		if (rc == ST_OK && mrc != 0)
			rc = store_lmdb_err(err, mrc, "upgrading the store to format 6");
	}
	st_buf_free(&b);
	return rc;
}

/* Where LMDB mapped its data file (mdb_env_info gives no address without
 * MDB_FIXEDMAP): the mapping of the data file's inode in /proc/self/maps.
 * Without it, record reads are not bounds-checked against the file. */
static void find_map(st_store *s)
{
	struct stat fst;
	FILE *f = fopen("/proc/self/maps", "r");
	char line[PATH_MAX + 128];
	if (!f || fstat(s->prealloc_fd, &fst) != 0) {
		if (f)
			fclose(f);
		return;
	}
	while (fgets(line, sizeof line, f)) {
		unsigned long long lo, hi, off, ino;
		char perms[8], dev[16];
		if (sscanf(line, "%llx-%llx %7s %llx %15s %llu", &lo, &hi, perms, &off, dev, &ino) == 6 &&
		    ino == (unsigned long long)fst.st_ino && off == 0 && strstr(line, "data.mdb")) {
			s->map_base = (const uint8_t *)(uintptr_t)lo;
			s->map_size = hi - lo;
			s->file_size = (uint64_t)fst.st_size;
			break;
		}
	}
	fclose(f);
}

static int mkdir_p(const char *path, struct st_err *err)
{
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		return st_seterr(err, errno, "cannot create directory '%s': %s", path,
				 strerror(errno));
	return ST_OK;
}

int st_store_open(const char *dir, const struct st_store_opts *opts, st_store **out,
		  struct st_err *err)
{
	int rc = ST_OK, mrc;
	MDB_txn *txn = NULL;
	char path[PATH_MAX];
	st_store *s = calloc(1, sizeof *s);
	*out = NULL;
	store_guard_init();
	if (sodium_init() < 0) {
		free(s);
		return st_seterr(err, ST_EFAILED, "libsodium could not be initialized");
	}
	if (!s || !(s->dir = strdup(dir))) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	s->lock_fd = -1;
	s->prealloc_fd = -1;
	s->enc_threads = sysconf(_SC_NPROCESSORS_ONLN) > 1 ? 2 : 1;
	pthread_mutex_init(&s->write_lock, NULL);
	pthread_mutex_init(&s->gc.lock, NULL);
	pthread_mutex_init(&s->pin_lock, NULL);
	pthread_mutex_init(&s->meta_lock, NULL);
	pthread_mutex_init(&s->pool_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->gc.arrive, &ca);
	pthread_cond_init(&s->repl.cond, &ca);
	pthread_condattr_destroy(&ca);
	if (opts)
		s->opts = *opts;
	const char *ni = getenv("STRATA_TEST_NO_INTEGRITY");
	s->no_integrity = ni && !strcmp(ni, "1");
	if (!s->opts.map_size)
		s->opts.map_size = 16ull << 30;
	if (!s->opts.row_group_rows)
		s->opts.row_group_rows = ST_DEFAULT_ROW_GROUP_ROWS;
	if (!s->opts.inline_max)
		s->opts.inline_max = STORE_INLINE_MAX;
	if (!s->opts.io)
		s->opts.io = &st_io_posix;
	if ((rc = mkdir_p(dir, err)) != ST_OK)
		goto out;
	snprintf(path, sizeof path, "%s/store", dir);
	if ((rc = mkdir_p(path, err)) != ST_OK)
		goto out;
	snprintf(path, sizeof path, "%s/tables", dir);
	if ((rc = mkdir_p(path, err)) != ST_OK)
		goto out;
	snprintf(path, sizeof path, "%s/strata.lock", dir);
	s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (s->lock_fd < 0) {
		rc = st_seterr(err, errno, "cannot open '%s': %s", path, strerror(errno));
		goto out;
	}
	if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		rc = st_seterr(err, ST_EEXIST,
			       "data directory '%s' is in use by another process (lock on %s)", dir,
			       path);
		goto out;
	}
	/* Reader slots: one per concurrent reader (up to 256 daemon workers,
	 * each with a scan or a write being staged) plus the read pool. */
	if ((mrc = mdb_env_create(&s->env)) != 0 ||
	    (mrc = mdb_env_set_assert(s->env, store_on_assert)) != 0 ||
	    (mrc = mdb_env_set_maxreaders(s->env, STORE_MAX_READERS)) != 0 ||
	    (mrc = mdb_env_set_mapsize(s->env, (size_t)s->opts.map_size)) != 0) {
		rc = store_lmdb_err(err, mrc, "creating the LMDB environment");
		goto out;
	}
	snprintf(path, sizeof path, "%s/store", dir);
	if ((mrc = store_env_open(s->env, path,
				  MDB_NOTLS | (s->opts.nosync ? MDB_NOSYNC | MDB_NOMETASYNC : 0))) != 0) {
		rc = store_lmdb_err(err, mrc, path);
		goto out;
	}
	int dead = 0;
	mdb_reader_check(s->env, &dead);
	MDB_stat est;
	if ((mrc = mdb_env_stat(s->env, &est)) != 0 ||
	    (mrc = mdb_env_get_fd(s->env, &s->prealloc_fd)) != 0) {
		rc = store_lmdb_err(err, mrc, path);
		goto out;
	}
	s->psize = est.ms_psize;
	find_map(s);
	if ((mrc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0) {
		rc = store_lmdb_err(err, mrc, "opening the store");
		goto out;
	}
	MDB_stat st;
	if ((mrc = mdb_dbi_open(txn, NULL, 0, &s->dbi)) != 0 ||
	    (mrc = mdb_stat(txn, s->dbi, &st)) != 0) {
		rc = store_lmdb_err(err, mrc, "opening the store");
		goto out;
	}
	uint8_t kb[16];
	MDB_val k = kind_key(kb, KEY_META, "format", 6), v;
	uint32_t f = 0;
	if ((mrc = store_mget(s, txn, &k, &v)) == MDB_NOTFOUND && st.ms_entries == 0) {
		uint8_t fb[4];
		st_put_le32(fb, STORE_FORMAT);
		v = (MDB_val){4, fb};
		mrc = store_rec_put(s, txn, NULL, &k, &v, 0);
		f = STORE_FORMAT;
	} else if (mrc == 0) {
		f = v.mv_size == 4 ? st_get_le32(v.mv_data) : 0;
		if (v.mv_size == 4 + STORE_REC_CRC && store_rec_check(s, txn, &k, &v) == 0)
			f = st_get_le32(v.mv_data); /* 5 here: an upgrade was interrupted */
	}
	s->opened.format_from = f;
	if (f == 5) {
		/* Format 5 had no record checksums: add them (STORE.md §2.1). */
		mdb_txn_abort(txn);
		txn = NULL;
		if ((rc = upgrade5(s, err)) != ST_OK)
			goto out;
		if ((mrc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0) {
			rc = store_lmdb_err(err, mrc, "opening the store");
			goto out;
		}
		f = STORE_FORMAT;
	}
	if (mrc == 0 && (f == 6 || f == 7)) {
		/* Format 7 added deletion vectors to file records (a flag format 6
		 * never sets): every format 6 record is a format 7 one. Format 8
		 * added the key index and segment ids (a flag format 7 never
		 * sets). */
		uint8_t fb[4];
		st_put_le32(fb, STORE_FORMAT);
		MDB_val fv = {4, fb};
		if ((rc = upgrade7(s, txn, err)) != ST_OK)
			goto out;
		if ((mrc = store_rec_put(s, txn, NULL, &k, &fv, 0)) != 0) {
			rc = store_lmdb_err(err, mrc, "upgrading the store to format 8");
			goto out;
		}
		f = STORE_FORMAT;
	}
	if (mrc == MDB_NOTFOUND || (mrc == 0 && f != STORE_FORMAT)) {
		/* Formats 1 and 2 kept named databases: no format record here. */
		f = mrc ? 2 : f;
		rc = st_seterr(err, f ? ST_EVERSION : ST_ECORRUPT,
			       "store '%s' has format %s%u; this strata reads format %d%s", dir,
			       mrc ? "<= " : "", f, STORE_FORMAT,
			       f == 4 ? " (format 4, strata 0.4, has no LSN-ordered log and no hash "
					"chain: no in-place upgrade; export its tables with strata 0.4 "
					"`strata scan --format csv` and load them into a new data "
					"directory)"
			       : f && f < 4 ? " (formats 1 to 3 were development formats: no upgrade "
					      "path)"
			       : !f ? " (its format record is damaged)"
			       : "");
		goto out;
	}
	if (mrc == 0 && (rc = store_verify_chains(s, txn, STORE_VERIFY_DEPTH, &s->opened.commits,
						       open_problem, NULL, err)) != ST_OK)
		goto out;
	if (mrc == 0)
		s->opened.leftovers = remove_leftovers(s, txn);
	if (mrc == 0) {
		s->next_fid = 1;
		store_each_head(s, txn, scan_head, s, &mrc);
	}
	if (mrc == 0 && (rc = open_log(s, txn, dir, err)) != ST_OK)
		goto out;
	if (mrc == 0)
		mrc = mdb_txn_commit(txn);
	else
		mdb_txn_abort(txn);
	txn = NULL;
	if (mrc != 0) {
		rc = store_lmdb_err(err, mrc, "initializing the store");
		goto out;
	}
	s->opened.damaged = s->ndamaged;
	s->opened.format = STORE_FORMAT;
	*out = s;
	s = NULL;
out:
	if (txn)
		mdb_txn_abort(txn);
	st_store_close(s);
	return rc;
}

void st_store_close(st_store *s)
{
	if (!s)
		return;
	for (uint32_t i = 0; i < s->npool; i++)
		mdb_txn_abort(s->pool[i]);
	if (s->env)
		mdb_env_close(s->env);
	if (s->lock_fd >= 0)
		close(s->lock_fd); /* releases the flock */
	pthread_mutex_destroy(&s->write_lock);
	pthread_mutex_destroy(&s->gc.lock);
	pthread_mutex_destroy(&s->pin_lock);
	pthread_mutex_destroy(&s->meta_lock);
	for (uint32_t i = 0; i < META_CACHE_SLOTS; i++)
		store_meta_put(s->meta_cache[i]);
	pthread_mutex_destroy(&s->pool_lock);
	pthread_cond_destroy(&s->gc.arrive);
	pthread_cond_destroy(&s->repl.cond);
	st_buf_free(&s->cap.ops);
	free(s->cap.marks);
	free(s->pins);
	free(s->dir);
	free(s);
}

/*
 * Zero-fill the LMDB data file ahead of the pages LMDB will use next
 * (STORE.md §4): a commit whose pages land in already-written blocks is
 * synced without an ext4 journal commit for the new blocks and file size
 * (the reason databases zero-fill their logs). Called under the write
 * lock, when LMDB writes nothing: every page it has written is at or
 * below its last page, and the file ends at or beyond that. Failures are
 * harmless (LMDB extends the file itself) and leave the rest for later.
 */
void store_prealloc(st_store *s)
{
	MDB_envinfo info;
	if (s->opts.nosync || s->prealloc_fd < 0 || mdb_env_info(s->env, &info) != 0)
		return;
	uint64_t used = ((uint64_t)info.me_last_pgno + 1) * s->psize;
	uint64_t ahead = store_prealloc_ahead(used);
	if (used + ahead / 2 <= s->prealloc_end)
		return;
	struct stat st;
	if (fstat(s->prealloc_fd, &st) != 0)
		return;
	uint64_t from = (uint64_t)st.st_size, to = used + ahead;
	if (to > s->opts.map_size)
		to = s->opts.map_size;
	static const uint8_t zeros[65536];
	for (uint64_t at = from; at < to;) {
		size_t n = to - at < sizeof zeros ? (size_t)(to - at) : sizeof zeros;
		ssize_t w = pwrite(s->prealloc_fd, zeros, n, (off_t)at);
		if (w <= 0)
			return;
		at += (uint64_t)w;
	}
	if (to > from && fdatasync(s->prealloc_fd) != 0)
		return;
	s->prealloc_end = to > from ? to : from;
}

int store_read_begin(st_store *s, MDB_txn **txn)
{
	MDB_txn *t = NULL;
	pthread_mutex_lock(&s->pool_lock);
	if (s->npool)
		t = s->pool[--s->npool];
	pthread_mutex_unlock(&s->pool_lock);
	if (t) {
		int mrc = mdb_txn_renew(t);
		if (mrc != 0)
			mdb_txn_abort(t);
		*txn = mrc ? NULL : t;
		return mrc;
	}
	return mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
}

void store_read_end(st_store *s, MDB_txn *txn)
{
	if (!txn)
		return;
	mdb_txn_reset(txn);
	pthread_mutex_lock(&s->pool_lock);
	if (s->npool < STORE_READ_POOL) {
		s->pool[s->npool++] = txn;
		txn = NULL;
	}
	pthread_mutex_unlock(&s->pool_lock);
	if (txn)
		mdb_txn_abort(txn);
}

int store_write_begin(st_store *s, MDB_txn **txn, const char *what, struct st_err *err)
{
	int mrc;
	*txn = NULL;
	pthread_mutex_lock(&s->write_lock);
	int rc;
	if ((rc = store_refuse_failed(s, err)) != ST_OK)
		return rc;
	if (s->repl.on && (rc = store_repl_wait_quiet(s, what, err)) != ST_OK)
		return rc;
	store_prealloc(s);
	if ((mrc = mdb_txn_begin(s->env, NULL, 0, txn)) != 0) {
		*txn = NULL;
		return store_lmdb_err(err, mrc, what);
	}
	s->txn_lsn = s->last_lsn;
	memcpy(s->txn_hash, s->last_hash, ST_HASH_LEN);
	if (s->repl.on) {
		s->cap.ops.len = 0;
		s->cap.ops.oom = false;
		s->cap.nops = s->cap.nmarks = 0;
		s->cap.on = true;
	}
	return ST_OK;
}

void store_write_end(st_store *s, MDB_txn *txn)
{
	s->cap.on = false;
	if (txn)
		mdb_txn_abort(txn);
	pthread_mutex_unlock(&s->write_lock);
}

int store_write_file(st_store *s, const char *path, const uint8_t *bytes, size_t len,
		     struct st_err *err)
{
	const struct st_io *io = s->opts.io;
	char tmp[PATH_MAX];
	int rc = ST_OK, e;
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	int fd = io->open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return st_seterr(err, errno, "cannot create '%s': %s", tmp, strerror(errno));
	if ((e = st_io_write_all(io, fd, bytes, len, 0)) != 0 || (io->fsync(fd) != 0 && (e = errno))) {
		rc = st_seterr(err, e, "writing '%s': %s", tmp, strerror(e));
		io->close(fd);
		io->unlink(tmp);
		return rc;
	}
	io->close(fd);
	if (io->rename(tmp, path) != 0) {
		rc = st_seterr(err, errno, "renaming '%s': %s", tmp, strerror(errno));
		io->unlink(tmp);
	} else if ((e = st_io_fsync_dir(io, path)) != 0) {
		rc = st_seterr(err, e, "fsync of the directory of '%s': %s", path, strerror(e));
		io->unlink(path);
	}
	return rc;
}

int st_store_check_readers(st_store *s)
{
	int dead = 0, mrc = mdb_reader_check(s->env, &dead);
	if (mrc == 0)
		return dead;
	int rc = store_lmdb_err(NULL, mrc, "checking readers");
	return rc < 0 ? rc : ST_EBUSY; /* an errno: the reader table's lock failed */
}
