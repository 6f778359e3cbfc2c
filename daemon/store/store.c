/*
 * daemon/store.c — opening and closing a data directory, and the LMDB
 * records every other part of the store uses: table heads, file records and
 * commits, all in LMDB's main database (daemon/STORE.md).
 *
 * Threading: the LMDB environment is opened with MDB_NOTLS so read
 * transactions may move between threads (scans); writes are serialized by
 * write_lock and LMDB's own writer lock. The failed state is sticky: once
 * an fsync or an LMDB commit fails, writes are refused until reopen
 * (DESIGN.md §10).
 */
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
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->failmsg, sizeof s->failmsg, fmt, ap);
	va_end(ap);
	s->failed = ST_EFAILED;
	return st_seterr(err, ST_EFAILED, "%s; the store refuses writes until it is reopened",
			 s->failmsg);
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
static bool recorded_fids(st_store *s, MDB_txn *txn, uint64_t tid, uint64_t **out, size_t *n)
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
	for (int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	     mrc == 0 && k.mv_size == FILE_KEY_LEN && table_range(&k, key);
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
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
	mdb_cursor_close(cur);
	if (*n)
		qsort(ids, *n, sizeof *ids, cmp_u64);
	*out = ids;
	return ok;
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
			size_t n = strlen(f->d_name);
			bool tmp = n > 8 && !strcmp(f->d_name + n - 8, ".seg.tmp");
			bool seg = n == 20 && !strcmp(f->d_name + 16, ".seg");
			if (!tmp && !seg)
				continue;
			if (seg) {
				uint64_t fid = strtoull(f->d_name, &end, 16);
				if (!listed && !recorded_fids(s, txn, tid, &ids, &nids))
					break; /* unsure what is referenced: remove nothing */
				listed = true;
				if (end != f->d_name + 16 ||
				    bsearch(&fid, ids, nids, sizeof *ids, cmp_u64))
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
		if ((*mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)) != 0)
			break;
		const uint8_t *p = k.mv_data;
		if (k.mv_size < TABLE_PREFIX_LEN || p[0] != KEY_TABLE)
			break;
		uint64_t at = key_tid(&k);
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
	struct st_err *err;
};

/* Commit c of table tid must have its LSN record, naming it. */
static int check_lsn_record(st_store *s, MDB_txn *txn, const char *name, uint64_t tid,
			    const struct act_commit *c, struct st_err *err)
{
	uint8_t key[LSN_KEY_LEN];
	lsn_key(key, c->lsn);
	MDB_val k = {sizeof key, key}, v;
	int mrc = mdb_get(txn, s->dbi, &k, &v);
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
		return rc;
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
		if ((mrc = mdb_get(w->txn, w->s->dbi, &ck, &cv)) != 0)
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
	return rc;
}

int store_verify_chains(st_store *s, MDB_txn *txn, uint32_t depth, uint64_t *checked,
			struct st_err *err)
{
	struct verify_walk w = {s, txn, depth, checked, err};
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
	if (v->mv_size >= STORE_HEAD_FIXED) {
		const uint8_t *p = v->mv_data;
		if (st_get_le64(p + 24) > s->next_fid)
			s->next_fid = st_get_le64(p + 24);
		if (st_get_le64(p + 48) > s->last_lsn)
			s->last_lsn = st_get_le64(p + 48);
	}
	return 0;
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
	if (lsn != s->last_lsn)
		return st_seterr(err, ST_ECORRUPT,
				 "store '%s': the commit log ends at LSN %llu but the tables' newest "
				 "commit is LSN %llu: the log was changed; run stratad --verify %s",
				 dir, (unsigned long long)lsn, (unsigned long long)s->last_lsn, dir);
	return store_verify_log(s, txn, lsn > STORE_VERIFY_DEPTH ? lsn - STORE_VERIFY_DEPTH + 1 : 0,
				NULL, NULL, NULL, NULL, NULL, err);
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
	pthread_mutex_init(&s->gc_lock, NULL);
	pthread_mutex_init(&s->pin_lock, NULL);
	pthread_mutex_init(&s->meta_lock, NULL);
	pthread_mutex_init(&s->pool_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->gc_arrive, &ca);
	pthread_condattr_destroy(&ca);
	if (opts)
		s->opts = *opts;
	if (!s->opts.map_size)
		s->opts.map_size = 1ull << 30;
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
	    (mrc = mdb_env_set_maxreaders(s->env, STORE_MAX_READERS)) != 0 ||
	    (mrc = mdb_env_set_mapsize(s->env, (size_t)s->opts.map_size)) != 0) {
		rc = store_lmdb_err(err, mrc, "creating the LMDB environment");
		goto out;
	}
	snprintf(path, sizeof path, "%s/store", dir);
	if ((mrc = mdb_env_open(s->env, path,
				MDB_NOTLS | (s->opts.nosync ? MDB_NOSYNC | MDB_NOMETASYNC : 0),
				0644)) != 0) {
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
	if ((mrc = mdb_get(txn, s->dbi, &k, &v)) == MDB_NOTFOUND && st.ms_entries == 0) {
		uint8_t f[4];
		st_put_le32(f, STORE_FORMAT);
		v = (MDB_val){4, f};
		mrc = mdb_put(txn, s->dbi, &k, &v, 0);
	} else if (mrc == MDB_NOTFOUND ||
		   (mrc == 0 && (v.mv_size != 4 || st_get_le32(v.mv_data) != STORE_FORMAT))) {
		/* Formats 1 and 2 kept named databases: no format record here. */
		uint32_t f = mrc ? 2 : v.mv_size == 4 ? st_get_le32(v.mv_data) : 0;
		rc = st_seterr(err, f ? ST_EVERSION : ST_ECORRUPT,
			       "store '%s' has format %s%u; this strata reads format %d%s", dir,
			       mrc ? "<= " : "", f, STORE_FORMAT,
			       f == 4 ? " (format 4, strata 0.4, has no LSN-ordered log and no hash "
					"chain: no in-place upgrade; export its tables with strata 0.4 "
					"`strata scan --format csv` and load them into a new data "
					"directory)"
			       : f && f < 4 ? " (formats 1 to 3 were development formats: no upgrade "
					      "path)"
			       : "");
		goto out;
	}
	if (mrc == 0 && (rc = store_verify_chains(s, txn, STORE_VERIFY_DEPTH, NULL, err)) != ST_OK)
		goto out;
	if (mrc == 0)
		remove_leftovers(s, txn);
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
	pthread_mutex_destroy(&s->gc_lock);
	pthread_mutex_destroy(&s->pin_lock);
	pthread_mutex_destroy(&s->meta_lock);
	for (uint32_t i = 0; i < META_CACHE_SLOTS; i++)
		store_meta_put(s->meta_cache[i]);
	pthread_mutex_destroy(&s->pool_lock);
	pthread_cond_destroy(&s->gc_arrive);
	free(s->pins);
	free(s->dir);
	free(s);
}

/* ---- table heads ------------------------------------------------------- */

void head_fini(struct table_head *h)
{
	act_metadata_free(h->meta);
	h->meta = NULL;
}

/* Fill h from table tid's head record; the metadata is decoded only when
 * with_meta (otherwise h->meta stays NULL and head_put keeps the stored one).
 * *raw, when given, receives the record (valid while txn is). */
static int head_read(st_store *s, MDB_txn *txn, uint64_t tid, struct table_head *h,
		     bool with_meta, MDB_val *raw, struct st_err *err)
{
	uint8_t key[HEAD_KEY_LEN];
	table_key(key, tid, REC_HEAD);
	MDB_val k = {sizeof key, key}, v;
	memset(h, 0, sizeof *h);
	int mrc = mdb_get(txn, s->dbi, &k, &v);
	if (mrc == MDB_NOTFOUND)
		return st_seterr(err, ST_ENOTFOUND, "table id %llu does not exist",
				 (unsigned long long)tid);
	if (mrc != 0)
		return store_lmdb_err(err, mrc, "reading a table head");
	if (v.mv_size < STORE_HEAD_FIXED)
		return st_seterr(err, ST_ECORRUPT, "table id %llu: head record is %zu bytes",
				 (unsigned long long)tid, v.mv_size);
	const uint8_t *p = v.mv_data;
	h->tid = tid;
	h->version = st_get_le64(p);
	h->time_us = (int64_t)st_get_le64(p + 8);
	h->checksum = st_get_le32(p + 16);
	h->flags = st_get_le32(p + 20);
	h->next_fid = st_get_le64(p + 24);
	h->oldest = st_get_le64(p + 32);
	h->meta_version = st_get_le64(p + 40);
	h->lsn = st_get_le64(p + 48);
	if (raw)
		*raw = v;
	if (!with_meta)
		return ST_OK;
	return act_metadata_decode(p + STORE_HEAD_FIXED, v.mv_size - STORE_HEAD_FIXED, &h->meta,
				   err);
}

int head_get_tid(st_store *s, MDB_txn *txn, uint64_t tid, struct table_head *h,
		 struct st_err *err)
{
	return head_read(s, txn, tid, h, true, NULL, err);
}

static int head_lookup(st_store *s, MDB_txn *txn, const char *name, struct table_head *h,
		       bool with_meta, MDB_val *raw, struct st_err *err)
{
	uint8_t kb[1 + STORE_NAME_MAX];
	size_t len = strlen(name);
	memset(h, 0, sizeof *h);
	if (len > STORE_NAME_MAX)
		return st_seterr(err, ST_ENOTFOUND, "table '%s' does not exist", name);
	MDB_val k = kind_key(kb, KEY_NAME, name, len), v;
	int mrc = mdb_get(txn, s->dbi, &k, &v);
	if (mrc == MDB_NOTFOUND)
		return st_seterr(err, ST_ENOTFOUND, "table '%s' does not exist", name);
	if (mrc != 0)
		return store_lmdb_err(err, mrc, name);
	if (v.mv_size != 8)
		return st_seterr(err, ST_ECORRUPT, "table '%s': name record is %zu bytes", name,
				 v.mv_size);
	return head_read(s, txn, get_be64(v.mv_data), h, with_meta, raw, err);
}

int head_get(st_store *s, MDB_txn *txn, const char *name, struct table_head *h,
	     struct st_err *err)
{
	return head_lookup(s, txn, name, h, true, NULL, err);
}

int head_get_fixed(st_store *s, MDB_txn *txn, const char *name, struct table_head *h,
		   struct st_err *err)
{
	return head_lookup(s, txn, name, h, false, NULL, err);
}

static bool meta_named(const struct meta_ref *r, const char *name)
{
	return r->meta->name && !strcmp(r->meta->name, name);
}

/* The cached metadata of table tid at meta_version mv (or, tid 0, of the
 * table named name), with one more holder, or NULL. meta_lock held. */
static struct meta_ref *meta_cached(st_store *s, uint64_t tid, uint64_t mv, const char *name)
{
	for (uint32_t i = 0; i < META_CACHE_SLOTS; i++) {
		struct meta_ref *r = s->meta_cache[i];
		if (r && (tid ? r->tid == tid && r->meta_version == mv : meta_named(r, name))) {
			__atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
			return r;
		}
	}
	return NULL;
}

int store_meta_get(st_store *s, MDB_txn *txn, const char *name, struct table_head *h,
		   struct meta_ref **ref, struct st_err *err)
{
	MDB_val raw;
	int rc;
	/* (tid, meta_version) names one metadata for good: every change of it
	 * is a commit, and committed versions are never reused. So when the
	 * cache holds a metadata with this name, and its table's head in txn
	 * is live at the same metadata version, the name is that table's now
	 * (live names are unique): no lookup of the name record. */
	pthread_mutex_lock(&s->meta_lock);
	struct meta_ref *r = meta_cached(s, 0, 0, name);
	pthread_mutex_unlock(&s->meta_lock);
	if (r) {
		rc = head_read(s, txn, r->tid, h, false, NULL, NULL);
		if (rc == ST_OK && !(h->flags & 1) && h->meta_version == r->meta_version) {
			*ref = r;
			return ST_OK;
		}
		store_meta_put(r);
	}
	*ref = NULL;
	if ((rc = head_lookup(s, txn, name, h, false, &raw, err)) != ST_OK)
		return rc;
	pthread_mutex_lock(&s->meta_lock);
	*ref = meta_cached(s, h->tid, h->meta_version, "");
	pthread_mutex_unlock(&s->meta_lock);
	if (*ref)
		return ST_OK;
	if (!(r = calloc(1, sizeof *r)))
		return st_seterr(err, ST_ENOMEM, "out of memory");
	if ((rc = act_metadata_decode((const uint8_t *)raw.mv_data + STORE_HEAD_FIXED,
				      raw.mv_size - STORE_HEAD_FIXED, &r->meta, err)) != ST_OK) {
		free(r);
		return rc;
	}
	r->tid = h->tid;
	r->meta_version = h->meta_version;
	struct meta_ref *drop[META_CACHE_SLOTS + 1];
	uint32_t ndrop = 0;
	pthread_mutex_lock(&s->meta_lock);
	if ((*ref = meta_cached(s, h->tid, h->meta_version, "")) != NULL) {
		r->refs = 1; /* another write decoded it meanwhile: use that one */
		drop[ndrop++] = r;
	} else {
		/* One entry per table and per name: older ones go. */
		uint32_t slot = s->meta_next;
		for (uint32_t i = 0; i < META_CACHE_SLOTS; i++) {
			struct meta_ref *o = s->meta_cache[i];
			if (o && (o->tid == r->tid || (r->meta->name && meta_named(o, r->meta->name)))) {
				drop[ndrop++] = o;
				s->meta_cache[i] = NULL;
				slot = i;
			}
		}
		if (slot == s->meta_next) {
			if (s->meta_cache[slot])
				drop[ndrop++] = s->meta_cache[slot];
			s->meta_next = (s->meta_next + 1) % META_CACHE_SLOTS;
		}
		r->refs = 2; /* the caller's and the cache's */
		s->meta_cache[slot] = r;
		*ref = r;
	}
	pthread_mutex_unlock(&s->meta_lock);
	for (uint32_t i = 0; i < ndrop; i++)
		store_meta_put(drop[i]);
	return ST_OK;
}

void store_meta_put(struct meta_ref *ref)
{
	if (ref && __atomic_sub_fetch(&ref->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		act_metadata_free(ref->meta);
		free(ref);
	}
}

int head_put(st_store *s, MDB_txn *txn, const struct table_head *h, struct st_err *err)
{
	struct st_buf b = {0};
	int rc = ST_OK;
	uint8_t *p = st_buf_reserve(&b, STORE_HEAD_FIXED);
	if (p) {
		st_put_le64(p, h->version);
		st_put_le64(p + 8, (uint64_t)h->time_us);
		st_put_le32(p + 16, h->checksum);
		st_put_le32(p + 20, h->flags);
		st_put_le64(p + 24, h->next_fid);
		st_put_le64(p + 32, h->oldest);
		st_put_le64(p + 40, h->meta_version);
		st_put_le64(p + 48, h->lsn);
		b.len = STORE_HEAD_FIXED;
	}
	uint8_t key[HEAD_KEY_LEN];
	table_key(key, h->tid, REC_HEAD);
	MDB_val k = {sizeof key, key}, v;
	if (h->meta) {
		if ((rc = act_metadata_encode(h->meta, &b, err)) != ST_OK)
			goto out;
	} else {
		/* Metadata unchanged and not decoded: keep the stored bytes. */
		int grc = mdb_get(txn, s->dbi, &k, &v);
		if (grc != 0 || v.mv_size < STORE_HEAD_FIXED) {
			rc = grc ? store_lmdb_err(err, grc, "updating a table head")
				 : st_seterr(err, ST_ECORRUPT, "table id %llu: damaged head",
					     (unsigned long long)h->tid);
			goto out;
		}
		st_buf_append(&b, (uint8_t *)v.mv_data + STORE_HEAD_FIXED,
			      v.mv_size - STORE_HEAD_FIXED);
	}
	if (b.oom) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	v = (MDB_val){b.len, b.data};
	int mrc = mdb_put(txn, s->dbi, &k, &v, 0);
	if (mrc != 0)
		rc = store_lmdb_err(err, mrc, "writing a table head");
out:
	st_buf_free(&b);
	return rc;
}

/* ---- file records ------------------------------------------------------ */

int file_rec_encode(const struct file_rec *f, struct st_buf *out)
{
	uint8_t *p = st_buf_reserve(out, 52);
	if (!p)
		return ST_ENOMEM;
	st_put_le64(p, f->added);
	st_put_le64(p + 8, f->removed);
	st_put_le64(p + 16, (uint64_t)f->removed_us);
	st_put_le64(p + 24, f->size);
	st_put_le64(p + 32, f->rows);
	st_put_le32(p + 40, f->crc);
	st_put_le32(p + 44, f->flags);
	st_put_le32(p + 48, f->ncols);
	out->len += 52;
	for (uint32_t i = 0; i < f->ncols; i++) {
		st_buf_u32(out, f->field_ids[i]);
		st_buf_u8(out, f->types[i]);
		seg_stats_put(out, &f->stats[i], f->types[i]);
	}
	return out->oom ? ST_ENOMEM : ST_OK;
}

int file_rec_decode(uint64_t fid, const uint8_t *p, size_t n, struct file_rec *f)
{
	struct st_cur c;
	memset(f, 0, sizeof *f);
	st_cur_init(&c, p, n);
	f->fid = fid;
	f->added = st_cur_u64(&c);
	f->removed = st_cur_u64(&c);
	f->removed_us = (int64_t)st_cur_u64(&c);
	f->size = st_cur_u64(&c);
	f->rows = st_cur_u64(&c);
	f->crc = st_cur_u32(&c);
	f->flags = st_cur_u32(&c);
	f->ncols = st_cur_u32(&c);
	if (c.bad || f->ncols > ST_MAX_COLUMNS)
		return ST_ECORRUPT;
	f->field_ids = calloc(f->ncols + 1, sizeof *f->field_ids);
	f->types = calloc(f->ncols + 1, 1);
	f->stats = calloc(f->ncols + 1, sizeof *f->stats);
	if (!f->field_ids || !f->types || !f->stats) {
		file_rec_fini(f);
		return ST_ENOMEM;
	}
	for (uint32_t i = 0; i < f->ncols; i++) {
		f->field_ids[i] = st_cur_u32(&c);
		f->types[i] = st_cur_u8(&c);
		if (c.bad || !st_type_is_supported(f->types[i]) ||
		    !seg_stats_get(&c, f->types[i], &f->stats[i])) {
			file_rec_fini(f);
			return ST_ECORRUPT;
		}
		f->stats[i].rows = f->rows;
	}
	/* An inline file's segment follows the record: exactly `size` bytes. */
	if (st_cur_left(&c) != ((f->flags & 1) ? f->size : 0)) {
		file_rec_fini(f);
		return ST_ECORRUPT;
	}
	return ST_OK;
}

void file_rec_fini(struct file_rec *f)
{
	free(f->field_ids);
	free(f->types);
	free(f->stats);
	f->field_ids = NULL;
	f->types = NULL;
	f->stats = NULL;
}

/* ---- commits ----------------------------------------------------------- */

/* Put a new key: through cur when given, else with mdb_put. */
static int put_new(MDB_txn *txn, MDB_dbi dbi, MDB_cursor *cur, MDB_val *k, MDB_val *v)
{
	return cur ? mdb_cursor_put(cur, k, v, MDB_NOOVERWRITE)
		   : mdb_put(txn, dbi, k, v, MDB_NOOVERWRITE);
}

int store_put_encoded(st_store *s, MDB_txn *txn, MDB_cursor *cur, struct table_head *h,
		      uint8_t *enc, size_t len, const struct act_stamps *at, bool metadata,
		      uint64_t duration_us, struct st_err *err)
{
	/* A new table's head has version UINT64_MAX, time 0 and checksum 0,
	 * so its first commit is version 0 with prev_checksum 0. */
	uint64_t version = h->version + 1, lsn = s->txn_lsn + 1;
	int64_t now = store_now_us(), t = now > h->time_us ? now : h->time_us + 1;
	act_stamp(enc, at, version, lsn, t, h->checksum, duration_us);
	uint8_t key[COMMIT_KEY_LEN];
	commit_key(key, h->tid, version);
	MDB_val k = {sizeof key, key}, v = {len, enc};
	int mrc = put_new(txn, s->dbi, cur, &k, &v), rc;
	if (mrc != 0)
		return store_lmdb_err(err, mrc, "writing a commit");
	if ((rc = store_log_append(s, txn, lsn, h->tid, version, enc, len, err)) != ST_OK)
		return rc;
	s->txn_lsn = lsn;
	h->lsn = lsn;
	h->version = version;
	h->time_us = t;
	if (metadata)
		h->meta_version = version;
	h->checksum = act_checksum(h->checksum, enc, len);
	return ST_OK;
}

int store_put_commit(st_store *s, MDB_txn *txn, struct table_head *h, struct act_commit *c,
		     struct st_err *err)
{
	struct st_buf b = {0};
	struct act_stamps at;
	uint32_t prev = h->checksum;
	c->table_id = h->tid;
	int rc = act_encode(c, &b, &at, err);
	if (rc == ST_OK)
		rc = store_put_encoded(s, txn, NULL, h, b.data, b.len, &at, c->metadata != NULL,
				       c->info.duration_us, err);
	if (rc == ST_OK) {
		c->version = h->version;
		c->lsn = h->lsn;
		c->time_us = h->time_us;
		c->prev_checksum = prev;
	}
	st_buf_free(&b);
	return rc;
}

bool store_commit_stamp(st_store *s, MDB_txn *txn, uint64_t tid, uint64_t v, uint64_t *lsn,
			int64_t *time_us)
{
	uint8_t key[COMMIT_KEY_LEN];
	commit_key(key, tid, v);
	MDB_val k = {sizeof key, key}, d;
	struct act_commit *c;
	if (mdb_get(txn, s->dbi, &k, &d) != 0 ||
	    act_decode(d.mv_data, d.mv_size, &c, NULL) != ST_OK)
		return false;
	*lsn = c->lsn;
	*time_us = c->time_us;
	act_commit_free(c);
	return true;
}

int store_version_at_time(st_store *s, MDB_txn *txn, uint64_t tid, int64_t t, uint64_t *v,
			  struct st_err *err)
{
	/* Commit times strictly increase with versions (STORE.md §4): a binary
	 * search over the retained commits, no time index to keep per commit. */
	uint8_t key[HEAD_KEY_LEN];
	table_key(key, tid, REC_HEAD);
	MDB_val k = {sizeof key, key}, d;
	uint64_t lsn;
	int64_t when;
	int mrc = mdb_get(txn, s->dbi, &k, &d);
	if (mrc != 0 || d.mv_size < STORE_HEAD_FIXED)
		return mrc ? store_lmdb_err(err, mrc, "time travel")
			   : st_seterr(err, ST_ECORRUPT, "a table head is damaged");
	uint64_t lo = st_get_le64((uint8_t *)d.mv_data + 32), hi = st_get_le64(d.mv_data);
	if (!store_commit_stamp(s, txn, tid, lo, &lsn, &when) || when > t)
		return st_seterr(err, ST_ERANGE,
				 "no version at or before that time: it is before the table's first "
				 "retained commit");
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo + 1) / 2;
		if (!store_commit_stamp(s, txn, tid, mid, &lsn, &when))
			return st_seterr(err, ST_ECORRUPT, "commit %llu is unreadable",
					 (unsigned long long)mid);
		if (when <= t)
			lo = mid;
		else
			hi = mid - 1;
	}
	*v = lo;
	return ST_OK;
}

int store_files_at(st_store *s, MDB_txn *txn, uint64_t tid, uint64_t v, struct file_rec **out,
		   uint32_t *n, struct st_err *err)
{
	int rc = ST_OK, mrc;
	MDB_cursor *cur;
	uint8_t key[FILE_KEY_LEN];
	uint32_t cap = 0;
	*out = NULL;
	*n = 0;
	if ((mrc = mdb_cursor_open(txn, s->dbi, &cur)) != 0)
		return store_lmdb_err(err, mrc, "opening a snapshot");
	/* Every file live at v was removed after v (or is live): the range
	 * starts at removed = v + 1 and runs to the table's end. */
	file_key(key, tid, v == STORE_LIVE ? v : v + 1, 0);
	MDB_val k = {sizeof key, key}, d;
	for (mrc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
	     mrc == 0 && k.mv_size == FILE_KEY_LEN && table_range(&k, key);
	     mrc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
		if (d.mv_size >= 8 && st_get_le64(d.mv_data) > v)
			continue; /* added after v */
		if (*n == cap) {
			struct file_rec *f = realloc(*out, (cap = cap ? cap * 2 : 16) * sizeof *f);
			if (!f) {
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
				break;
			}
			*out = f;
		}
		uint64_t fid = file_key_fid(&k);
		if (file_rec_decode(fid, d.mv_data, d.mv_size, &(*out)[*n]) != ST_OK) {
			rc = st_seterr(err, ST_ECORRUPT, "table id %llu: the record of file %llu is damaged",
				       (unsigned long long)tid, (unsigned long long)fid);
			break;
		}
		(*n)++;
	}
	if (rc == ST_OK && mrc != 0 && mrc != MDB_NOTFOUND)
		rc = store_lmdb_err(err, mrc, "opening a snapshot");
	mdb_cursor_close(cur);
	if (rc != ST_OK) {
		file_recs_free(*out, *n);
		*out = NULL;
		*n = 0;
	}
	return rc;
}

void file_recs_free(struct file_rec *f, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		file_rec_fini(&f[i]);
	free(f);
}

int store_live_files(st_store *s, MDB_txn *txn, uint64_t tid, uint64_t **fids, uint32_t *n,
		     struct st_err *err)
{
	int rc = ST_OK, mrc;
	MDB_cursor *cur;
	uint8_t key[FILE_KEY_LEN];
	uint32_t cap = 0;
	*fids = NULL;
	*n = 0;
	if ((mrc = mdb_cursor_open(txn, s->dbi, &cur)) != 0)
		return store_lmdb_err(err, mrc, "listing live files");
	file_key(key, tid, STORE_LIVE, 0);
	MDB_val k = {sizeof key, key}, v;
	for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	     mrc == 0 && k.mv_size == FILE_KEY_LEN && table_range(&k, key);
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (*n == cap) {
			uint64_t *f = realloc(*fids, (cap = cap ? cap * 2 : 16) * sizeof *f);
			if (!f) {
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
				break;
			}
			*fids = f;
		}
		(*fids)[(*n)++] = file_key_fid(&k);
	}
	if (rc == ST_OK && mrc != 0 && mrc != MDB_NOTFOUND)
		rc = store_lmdb_err(err, mrc, "listing live files");
	mdb_cursor_close(cur);
	if (rc != ST_OK) {
		free(*fids);
		*fids = NULL;
		*n = 0;
	}
	return rc;
}

int store_file_put_encoded(st_store *s, MDB_txn *txn, MDB_cursor *cur, uint64_t tid,
			   uint64_t fid, uint8_t *rec, size_t len, uint64_t added,
			   struct st_err *err)
{
	uint8_t key[FILE_KEY_LEN];
	st_put_le64(rec, added);
	file_key(key, tid, STORE_LIVE, fid);
	MDB_val k = {sizeof key, key}, v = {len, rec};
	int mrc = put_new(txn, s->dbi, cur, &k, &v);
	return mrc ? store_lmdb_err(err, mrc, "recording a file") : ST_OK;
}

int store_file_put(st_store *s, MDB_txn *txn, uint64_t tid, const struct file_rec *f,
		   const uint8_t *inl, size_t inl_len, struct st_err *err)
{
	struct st_buf rec = {0};
	int rc = file_rec_encode(f, &rec);
	if (rc == ST_OK && inl)
		st_buf_append(&rec, inl, inl_len);
	if (rc != ST_OK || rec.oom)
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
	else
		rc = store_file_put_encoded(s, txn, NULL, tid, f->fid, rec.data, rec.len, f->added, err);
	st_buf_free(&rec);
	return rc;
}

int store_inline_copy(st_store *s, MDB_txn *txn, uint64_t tid, const struct file_rec *f,
		      uint8_t **out, size_t *len, struct st_err *err)
{
	MDB_txn *own = NULL;
	uint8_t key[FILE_KEY_LEN];
	int mrc = 0;
	*out = NULL;
	*len = 0;
	if (!txn && (mrc = store_read_begin(s, &own)) != 0)
		return store_lmdb_err(err, mrc, "reading an inline segment");
	file_key(key, tid, f->removed, f->fid);
	MDB_val k = {sizeof key, key}, v;
	int rc = ST_OK;
	mrc = mdb_get(txn ? txn : own, s->dbi, &k, &v);
	if (mrc == MDB_NOTFOUND && f->removed == STORE_LIVE) {
		/* Removed since f was read (a reader's pin keeps it from vacuum):
		 * its record moved to the removed range, after its added version. */
		MDB_cursor *cur;
		if ((mrc = mdb_cursor_open(txn ? txn : own, s->dbi, &cur)) == 0) {
			file_key(key, tid, f->added + 1, 0);
			k = (MDB_val){sizeof key, key};
			for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
			     mrc == 0 && k.mv_size == FILE_KEY_LEN && table_range(&k, key);
			     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
				if (file_key_fid(&k) == f->fid)
					break;
			if (mrc == 0 && !(k.mv_size == FILE_KEY_LEN && table_range(&k, key)))
				mrc = MDB_NOTFOUND;
			mdb_cursor_close(cur);
		}
	}
	if (mrc != 0 || v.mv_size < f->size)
		rc = st_seterr(err, ST_ECORRUPT, "table id %llu: inline segment %llu is missing",
			       (unsigned long long)tid, (unsigned long long)f->fid);
	else if (!(*out = malloc(f->size + 1)))
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
	else {
		/* The segment is the record's last `size` bytes (STORE.md §2.3). */
		memcpy(*out, (uint8_t *)v.mv_data + v.mv_size - f->size, f->size);
		*len = f->size;
	}
	store_read_end(s, own);
	return rc;
}

int store_mark_removed(st_store *s, MDB_txn *txn, uint64_t tid, uint64_t fid, uint64_t version,
		       int64_t time_us, struct st_err *err)
{
	uint8_t key[FILE_KEY_LEN];
	file_key(key, tid, STORE_LIVE, fid);
	MDB_val k = {sizeof key, key}, v;
	int mrc = mdb_get(txn, s->dbi, &k, &v);
	if (mrc == 0 && v.mv_size < 52)
		return st_seterr(err, ST_ECORRUPT, "file record %llu of table id %llu is damaged",
				 (unsigned long long)fid, (unsigned long long)tid);
	if (mrc == 0) {
		/* Copy first: LMDB's pointer is invalid once the txn writes.
		 * The record moves to its removal version's place in the index. */
		uint8_t *old = malloc(v.mv_size);
		if (!old)
			return st_seterr(err, ST_ENOMEM, "out of memory");
		memcpy(old, v.mv_data, v.mv_size);
		st_put_le64(old + 8, version);
		st_put_le64(old + 16, (uint64_t)time_us);
		MDB_val nv = {v.mv_size, old};
		if ((mrc = mdb_del(txn, s->dbi, &k, NULL)) == 0) {
			file_key(key, tid, version, fid);
			mrc = mdb_put(txn, s->dbi, &k, &nv, MDB_NOOVERWRITE);
		}
		free(old);
	}
	return mrc ? store_lmdb_err(err, mrc, "removing a file") : ST_OK;
}

int store_commit_txn(st_store *s, MDB_txn *txn, const char *what, struct st_err *err)
{
	int mrc = mdb_txn_commit(txn);
	if (mrc == MDB_MAP_FULL)
		return store_lmdb_err(err, mrc, what);
	if (mrc != 0)
		return store_fail(s, err, "%s: LMDB commit failed: %s", what, mdb_strerror(mrc));
	memcpy(s->last_hash, s->txn_hash, ST_HASH_LEN);
	__atomic_store_n(&s->last_lsn, s->txn_lsn, __ATOMIC_RELEASE);
	return ST_OK;
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
static void prealloc(st_store *s)
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
	if (s->failed)
		return st_seterr(err, ST_EFAILED, "%s; reopen the store", s->failmsg);
	prealloc(s);
	if ((mrc = mdb_txn_begin(s->env, NULL, 0, txn)) != 0) {
		*txn = NULL;
		return store_lmdb_err(err, mrc, what);
	}
	s->txn_lsn = s->last_lsn;
	memcpy(s->txn_hash, s->last_hash, ST_HASH_LEN);
	return ST_OK;
}

void store_write_end(st_store *s, MDB_txn *txn)
{
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

int store_add_from_info(struct act_add *a, const struct seg_file_info *info,
			const struct st_schema *sc, bool data_change, struct st_err *err)
{
	a->size = info->size;
	a->rows = info->rows;
	a->crc = info->crc;
	a->data_change = data_change;
	a->ncols = info->ncols;
	a->stats = info->stats; /* borrowed: info owns them */
	a->field_ids = malloc((info->ncols + 1) * sizeof *a->field_ids);
	if (!a->field_ids)
		return st_seterr(err, ST_ENOMEM, "out of memory");
	for (uint32_t i = 0; i < info->ncols; i++)
		a->field_ids[i] = sc->fields[i].id;
	return ST_OK;
}

int st_store_check_readers(st_store *s)
{
	int dead = 0, mrc = mdb_reader_check(s->env, &dead);
	if (mrc == 0)
		return dead;
	int rc = store_lmdb_err(NULL, mrc, "checking readers");
	return rc < 0 ? rc : ST_EBUSY; /* an errno: the reader table's lock failed */
}
