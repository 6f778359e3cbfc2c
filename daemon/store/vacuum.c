/*
 * daemon/store/vacuum.c — deleting data files no version needs any more
 * (issue 3 §8), and the reader pins that protect open snapshots.
 *
 * A file removed in version R at time T is deleted by vacuum once
 * T < now - file_retention and no open scan reads a version in
 * [added, R). Versions before R then lose a file, so the table's oldest
 * readable version moves up to R: time travel further back is a clear
 * ST_ERANGE, never a silently incomplete answer.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "daemon/store/store_int.h"

#define DAY_US (86400LL * 1000000)

int store_pin(st_store *s, uint64_t tid, uint64_t version)
{
	int rc = ST_OK;
	pthread_mutex_lock(&s->pin_lock);
	if (s->npins == s->cap_pins) {
		uint32_t cap = s->cap_pins ? s->cap_pins * 2 : 16;
		struct store_pin *p = realloc(s->pins, cap * sizeof *p);
		if (!p)
			rc = ST_ENOMEM;
		else {
			s->pins = p;
			s->cap_pins = cap;
		}
	}
	if (rc == ST_OK)
		s->pins[s->npins++] = (struct store_pin){tid, version};
	pthread_mutex_unlock(&s->pin_lock);
	return rc;
}

void store_unpin(st_store *s, uint64_t tid, uint64_t version)
{
	pthread_mutex_lock(&s->pin_lock);
	for (uint32_t i = 0; i < s->npins; i++)
		if (s->pins[i].tid == tid && s->pins[i].version == version) {
			s->pins[i] = s->pins[--s->npins];
			break;
		}
	pthread_mutex_unlock(&s->pin_lock);
}

bool store_pinned_below(st_store *s, uint64_t tid, uint64_t removed)
{
	pthread_mutex_lock(&s->pin_lock);
	bool pinned = s->backups > 0;
	for (uint32_t i = 0; i < s->npins && !pinned; i++)
		pinned = s->pins[i].tid == tid && s->pins[i].version < removed;
	pthread_mutex_unlock(&s->pin_lock);
	return pinned;
}

/* True when an open scan reads table tid at a version in [added, removed). */
static bool is_pinned(st_store *s, uint64_t tid, uint64_t added, uint64_t removed)
{
	pthread_mutex_lock(&s->pin_lock);
	bool pinned = s->backups > 0;
	for (uint32_t i = 0; i < s->npins && !pinned; i++)
		pinned = s->pins[i].tid == tid && s->pins[i].version >= added &&
			 s->pins[i].version < removed;
	pthread_mutex_unlock(&s->pin_lock);
	return pinned;
}

/* True when the commit that removed a file (version `removed` of tid) has
 * an LSN above lsn: a follower that holds only up to lsn may still need
 * the file for an entry it has not persisted. A pruned commit is older
 * than any lag budget. */
static bool removed_after(st_store *s, MDB_txn *txn, uint64_t tid, uint64_t removed, uint64_t lsn)
{
	uint64_t at;
	int64_t t;
	return lsn != UINT64_MAX && store_commit_stamp(s, txn, tid, removed, &at, &t) && at > lsn;
}

/* A duration property of the table, or its default. */
static int retention(const struct act_metadata *m, const char *key, int64_t def, int64_t *us,
		     struct st_err *err)
{
	*us = def;
	for (uint32_t i = 0; i < m->nprops; i++)
		if (!strcasecmp(m->props[i].key, key) &&
		    st_parse_duration(m->props[i].val, us) != ST_OK)
			return st_seterr(err, ST_EINVAL,
					 "table '%s': property %s='%s' is not a duration like 7d, 12h, 30m",
					 m->name, key, m->props[i].val);
	return ST_OK;
}

/* Commit (tid, v) decoded, or NULL. */
static struct act_commit *commit_get(st_store *s, MDB_txn *txn, uint64_t tid, uint64_t v,
				     MDB_val *raw)
{
	uint8_t key[COMMIT_KEY_LEN];
	commit_key(key, tid, v);
	MDB_val k = {sizeof key, key};
	struct act_commit *c = NULL;
	if (store_get(s, txn, &k, raw) == 0)
		act_decode(raw->mv_data, raw->mv_size, &c, NULL);
	return c;
}

/* The oldest version to keep for a log cutoff time: the newest commit with
 * metadata at or before the newest commit older than cutoff. */
static int prune_point(st_store *s, MDB_txn *txn, const struct table_head *h, int64_t cutoff,
		       uint64_t *keep_from, struct st_err *err)
{
	uint64_t v;
	*keep_from = h->oldest;
	if (store_version_at_time(s, txn, h->tid, cutoff, &v, NULL) != ST_OK || v <= h->oldest)
		return ST_OK; /* nothing old enough */
	for (;; v--) {
		MDB_val raw;
		struct act_commit *c = commit_get(s, txn, h->tid, v, &raw);
		if (!c)
			return st_seterr(err, ST_ECORRUPT, "table '%s': commit %llu is unreadable",
					 h->meta->name, (unsigned long long)v);
		bool meta = c->metadata != NULL;
		act_commit_free(c);
		if (meta || v == h->oldest) {
			*keep_from = v;
			return ST_OK;
		}
	}
}

/* Delete commits oldest .. keep_from-1 of table h. */
static int prune_commits(st_store *s, MDB_txn *txn, const struct table_head *h,
			 uint64_t keep_from, struct st_err *err)
{
	for (uint64_t v = h->oldest; v < keep_from; v++) {
		uint8_t key[COMMIT_KEY_LEN];
		commit_key(key, h->tid, v);
		MDB_val k = {sizeof key, key};
		int mrc = store_del(s, txn, &k);
		if (mrc != 0 && mrc != MDB_NOTFOUND)
			return store_lmdb_err(err, mrc, "pruning history");
	}
	return ST_OK;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* The key index entries of the segments (segs, n) whose last record vacuum
 * deleted: those no record of table tid left in txn names. */
static int kix_vacuum(st_store *s, MDB_txn *txn, uint64_t tid, uint64_t *segs, uint32_t n,
		      struct st_err *err)
{
	struct file_rec *f = NULL;
	uint32_t nf = 0;
	int rc = store_files_retained(s, txn, tid, &f, &nf, err);
	uint64_t *left = rc == ST_OK ? calloc(nf + 1, sizeof *left) : NULL;
	if (rc == ST_OK && !left)
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
	uint32_t nleft = 0;
	for (uint32_t i = 0; left && i < nf; i++)
		left[nleft++] = file_seg(&f[i]);
	file_recs_free(f, nf);
	if (rc != ST_OK)
		return rc;
	qsort(left, nleft, sizeof *left, cmp_u64);
	qsort(segs, n, sizeof *segs, cmp_u64);
	uint32_t ngone = 0;
	for (uint32_t i = 0; i < n; i++)
		if ((i == 0 || segs[i] != segs[i - 1]) &&
		    !bsearch(&segs[i], left, nleft, sizeof *left, cmp_u64))
			segs[ngone++] = segs[i];
	free(left);
	uint64_t dropped;
	return store_kix_drop_segs(s, txn, tid, segs, ngone, &dropped, err);
}

int st_vacuum(st_store *s, const char *table, const struct st_vacuum_opts *opts,
	      struct st_vacuum_result *res, struct st_err *err)
{
	static const struct st_vacuum_opts defaults = {0};
	int rc = ST_OK, mrc;
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	struct table_head h = {0};
	char **paths = NULL;
	uint32_t npaths = 0, nsegs = 0, csegs = 0;
	uint64_t *segs = NULL; /* a keyed table: the segment ids of the records deleted */
	if (!opts)
		opts = &defaults;
	memset(res, 0, sizeof *res);
	if ((rc = store_write_begin(s, &txn, "vacuuming", err)) != ST_OK ||
	    (rc = head_get(s, txn, table, &h, err)) != ST_OK)
		goto out;
	int64_t keep;
	if ((rc = retention(h.meta, "file_retention",
			    s->opts.file_retention_us ? s->opts.file_retention_us : 7 * DAY_US, &keep, err)) != ST_OK)
		goto out;
	if (opts->retain_us > 0) {
		if (opts->retain_us < keep && !opts->force) {
			rc = st_seterr(err, ST_EINVAL,
				       "table '%s': retaining removed files for less than the table's "
				       "file_retention (%lld s) can break readers and time travel; "
				       "force it to do so anyway (strata vacuum --force)", table, (long long)(keep / 1000000));
			goto out;
		}
		keep = opts->retain_us;
	}
	int64_t cutoff = store_now_us() - keep;
	/* The index runs in removal order: removed files first, oldest removal
	 * first, live files last (STORE.md §2). */
	uint8_t key[FILE_KEY_LEN];
	file_key(key, h.tid, 0, 0);
	MDB_val k = {sizeof key, key}, v;
	if ((mrc = mdb_cursor_open(txn, s->dbi, &cur)) != 0) {
		rc = store_lmdb_err(err, mrc, "vacuuming");
		goto out;
	}
	uint64_t new_oldest = h.oldest;
	uint64_t min_match = s->repl.on && s->repl.hooks.min_match
				     ? s->repl.hooks.min_match(s->repl.hooks.ctx)
				     : UINT64_MAX;
	for (mrc = store_cget(s, cur, &k, &v, MDB_SET_RANGE);
	     mrc == 0 && k.mv_size == FILE_KEY_LEN && table_range(&k, key);
	     mrc = store_cget(s, cur, &k, &v, MDB_NEXT)) {
		if (v.mv_size < 52)
			continue;
		const uint8_t *p = v.mv_data;
		uint64_t fid = file_key_fid(&k);
		uint64_t added = st_get_le64(p), removed = st_get_le64(p + 8);
		int64_t removed_us = (int64_t)st_get_le64(p + 16);
		uint32_t flags = st_get_le32(p + 44);
		if (removed == STORE_LIVE || removed_us >= cutoff)
			break; /* removal times grow with removal versions */
		if (is_pinned(s, h.tid, added, removed)) {
			res->pinned++;
			continue;
		}
		if (s->repl.on && !(flags & 1) && removed_after(s, txn, h.tid, removed, min_match)) {
			res->followers++; /* it may still fetch the file (REPLICATION.md §6) */
			continue;
		}
		char path[PATH_MAX];
		store_seg_path(s, h.tid, fid, path, sizeof path);
		char **np = realloc(paths, (npaths + 1) * sizeof *np);
		if (!np || !(np[npaths] = strdup(flags & 1 ? "(inline)" : path))) {
			paths = np ? np : paths;
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			goto out;
		}
		paths = np;
		npaths++;
		res->files++;
		res->bytes += st_get_le64(p + 24);
		if (removed > new_oldest)
			new_oldest = removed;
		if (opts->dry_run)
			continue;
		if (flags & 1) { /* its bytes go with the record */
			free(paths[npaths - 1]);
			paths[npaths - 1] = strdup("");
		}
		if (h.meta->nkey) {
			struct file_rec fr;
			if (file_rec_decode(fid, p, v.mv_size, &fr) == ST_OK) {
				bool ok = store_push_u64(&segs, &nsegs, &csegs, file_seg(&fr));
				file_rec_fini(&fr);
				if (!ok) {
					rc = st_seterr(err, ST_ENOMEM, "out of memory");
					goto out;
				}
			}
		}
		store_cap_del(s, &k);
		if ((mrc = mdb_cursor_del(cur, 0)) != 0)
			break;
	}
	if (mrc != 0 && mrc != MDB_NOTFOUND) {
		rc = store_lmdb_err(err, mrc, "vacuuming");
		goto out;
	}
	mdb_cursor_close(cur);
	cur = NULL;
	/* History older than log_retention goes too, down to a commit that
	 * carries metadata, so every retained version can still be described. */
	int64_t log_keep;
	uint64_t log_oldest = h.oldest;
	if ((rc = retention(h.meta, "log_retention",
			    s->opts.log_retention_us ? s->opts.log_retention_us : 30 * DAY_US, &log_keep, err)) != ST_OK ||
	    (rc = prune_point(s, txn, &h, store_now_us() - log_keep, &log_oldest, err)) != ST_OK)
		goto out;
	if (log_oldest > new_oldest)
		new_oldest = log_oldest;
	res->oldest_version = new_oldest;
	res->commits_pruned = log_oldest - h.oldest;
	if (opts->dry_run || (res->files == 0 && res->commits_pruned == 0))
		goto out;
	if ((rc = prune_commits(s, txn, &h, log_oldest, err)) != ST_OK ||
	    (nsegs && (rc = kix_vacuum(s, txn, h.tid, segs, nsegs, err)) != ST_OK))
		goto out;
	h.oldest = new_oldest;
	if ((rc = head_put(s, txn, &h, err)) != ST_OK ||
	    (res->commits_pruned && (rc = store_log_trim(s, txn, err)) != ST_OK) ||
	    (rc = store_repl_upkeep(s, txn, err)) != ST_OK)
		goto out;
	rc = store_commit_txn(s, txn, "vacuuming", err);
	txn = NULL;
	/* The records are gone durably: now the files can go (in a cluster,
	 * every node's apply of the entry removes them). */
	for (uint32_t i = 0; rc == ST_OK && !s->repl.on && i < npaths; i++)
		if (paths[i][0] && paths[i][0] != '(')
			unlink(paths[i]);
out:
	if (cur)
		mdb_cursor_close(cur);
	store_write_end(s, txn);
	head_fini(&h);
	if (rc == ST_OK && opts->dry_run) {
		res->paths = paths;
		res->npaths = npaths;
	} else {
		for (uint32_t i = 0; i < npaths; i++)
			free(paths[i]);
		free(paths);
	}
	free(segs);
	return rc;
}

void st_vacuum_result_fini(struct st_vacuum_result *r)
{
	for (uint32_t i = 0; i < r->npaths; i++)
		free(r->paths[i]);
	free(r->paths);
	r->paths = NULL;
	r->npaths = 0;
}
