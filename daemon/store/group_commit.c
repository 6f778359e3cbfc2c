/*
 * daemon/store/group_commit.c — st_txn_commit and group commit (STORE.md
 * §4). A committer encodes its commit and file record before it queues
 * (prepare); one committer leads: it takes the store's write lock, checks
 * each member against the commits since its read version (conflict.c) and
 * applies it through the commit funnel (commits.c) in the group's one LMDB
 * write transaction: one durable commit for all, each member with its own
 * versions, LSNs and result. The queue's state is struct group_commit
 * (store_int.h), guarded by its lock.
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
/* A keyed table's write: the key index entries of each new segment it
 * adds (its own and replace-where's or OPTIMIZE's rewrites; a file re-added
 * with a deletion vector keeps its segment's), read back from the segment. */
static int prepare_keys(struct staged *w, struct st_err *err)
{
	const struct act_metadata *m = w->m.meta;
	int rc = ST_OK;
	if (!m->nkey)
		return ST_OK;
	store_kix_fini(&w->kix);
	if (w->rows > 0)
		rc = store_kix_segment(m, w->tid, w->add.file_id, w->path ? w->path : w->table, w->inl,
				       w->inl_len, &w->kix, err);
	for (uint32_t i = 0; rc == ST_OK && i < w->nrw; i++) {
		const struct store_rewrite *r = &w->rw[i];
		if (!r->add.dv && r->add.file_id && r->add.rows)
			rc = store_kix_segment(m, w->tid, r->add.file_id, r->path, NULL, 0, &w->kix, err);
	}
	return rc;
}

/*
 * Encode w's commit and its new file's record before w queues for a group
 * (outside the write lock): everything in them is known by now except the
 * version, LSN and times, which apply stamps in.
 */
static int prepare(struct staged *w, struct st_err *err)
{
	int rc = ST_OK;
	/* On the stack for the common case (an append: no removes, one add). */
	struct act_remove rm1[1], *rm = w->nread ? calloc(w->nread, sizeof *rm) : rm1;
	struct act_add adds1[1], *adds = w->nrw ? calloc(w->nrw + 1, sizeof *adds) : adds1;
	if (!rm || !adds) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < w->nread; i++)
		rm[i] = (struct act_remove){w->read_files[i], !w->compaction,
					    w->rm_deletes ? w->rm_deletes[i].data : NULL,
					    w->rm_deletes ? (uint32_t)w->rm_deletes[i].len : 0};
	uint32_t nadd = 0;
	if (w->rows > 0)
		adds[nadd++] = w->add;
	for (uint32_t i = 0; i < w->nrw; i++)
		adds[nadd++] = w->rw[i].add;
	struct act_kv params[3] = {{"mode", w->overwrite ? "overwrite" : w->pred ? "replace-where" : "append"}};
	uint32_t np = w->dml ? 0 : 1;
	uint64_t bytes = w->info.size, dvs = 0;
	for (uint32_t i = 0; i < w->nrw; i++) {
		bytes += w->rw[i].add.dv ? w->rw[i].add.dv_len : w->rw[i].add.size;
		dvs += w->rw[i].add.dv != NULL;
	}
	char ptext[1024] = "";
	if (w->pred)
		expr_format(w->pred, &w->m.meta->schema, ptext, sizeof ptext);
	if (w->pred || w->where_text)
		params[np++] = (struct act_kv){"predicate", w->pred ? ptext : w->where_text};
	if (w->set_text)
		params[np++] = (struct act_kv){w->set_key ? (char *)w->set_key : "set", w->set_text};
	struct act_txn tx = {w->app_id, w->app_version};
	struct act_commit c = {.table_id = w->tid};
	c.metadata = w->m.meta_changed ? w->m.meta : NULL;
	c.adds = adds;
	c.nadd = nadd;
	c.removes = rm;
	c.nremove = w->nread;
	c.txns = &tx;
	c.ntxn = w->app_id != NULL;
	c.info.operation = w->dml ? (char *)w->dml : w->compaction ? "COMPACT" : "WRITE";
	c.info.params = params;
	c.info.nparams = np;
	c.info.dvs_added = dvs;
	c.info.rows_deleted = w->info_deleted;
	c.info.rows_updated = w->info_updated;
	c.info.read_version = (int64_t)w->read_version;
	c.info.isolation = w->isolation;
	c.info.rows_added = w->compaction ? 0 : w->rows;
	c.info.rows_removed = w->rows_removed;
	c.info.files_added = nadd;
	c.info.bytes_added = bytes;
	c.info.files_removed = w->nread;
	w->crec.len = 0;
	if ((rc = act_encode(&c, &w->crec, &w->cat, err)) != ST_OK ||
	    (rc = prepare_keys(w, err)) != ST_OK || w->rows == 0)
		goto out;
	const struct act_add *a = &w->add;
	uint8_t types[ST_MAX_COLUMNS];
	for (uint32_t i = 0; i < a->ncols; i++)
		types[i] = w->m.meta->schema.fields[i].type;
	struct file_rec f = {.fid = a->file_id, .removed = STORE_LIVE, .size = a->size,
			     .rows = a->rows, .crc = a->crc,
			     .flags = (a->data_change ? 2u : 0u) | (w->inl ? 1u : 0u),
			     .ncols = a->ncols, .field_ids = a->field_ids, .types = types,
			     .stats = a->stats};
	w->frec.len = 0;
	if (file_rec_encode(&f, &w->frec) == ST_OK && w->inl)
		st_buf_append(&w->frec, w->inl, w->inl_len);
	if (w->frec.oom || w->frec.len == 0)
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
out:
	if (rm != rm1)
		free(rm);
	if (adds != adds1)
		free(adds);
	return rc;
}

/*
 * Cursors of a group's transaction, one for commit records and one for new
 * files' records: each stays on the leaf where its kind of record lands
 * (a table's commits, newest first, after its head; its live files, newest
 * last, before it), so a put there skips the search from the root. NULL
 * members: plain mdb_put. LMDB closes them when the transaction ends.
 */
struct group_cursors {
	MDB_cursor *commits;
	MDB_cursor *files;
};

/* Apply w (prepared) to table h inside txn; the caller stores the advanced
 * head and its metadata. */
static int apply(st_store *s, MDB_txn *txn, struct group_cursors *gcur, struct staged *w,
		 struct table_head *h, struct st_commit_result *res, struct st_err *err)
{
	int rc = ST_OK, mrc;
	uint8_t key[APP_KEY_MAX];
	/* The new file (its record encoded in advance), then the files
	 * replace-where rewrote. */
	struct store_add add1, *adds = w->nrw ? calloc(w->nrw + 1, sizeof *adds) : &add1;
	struct file_rec *rw = w->nrw ? calloc(w->nrw, sizeof *rw) : NULL;
	uint32_t nadd = 0;
	if (!adds || (w->nrw && !rw)) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	if (w->rows > 0)
		adds[nadd++] = (struct store_add){.fid = w->add.file_id, .enc = w->frec.data,
						  .len = w->frec.len};
	for (uint32_t j = 0; j < w->nrw; j++) {
		const struct act_add *a = &w->rw[j].add;
		rw[j] = (struct file_rec){.size = a->size, .rows = a->rows, .crc = a->crc,
					  .flags = (a->data_change ? 2u : 0u) | (a->is_inline ? 1u : 0u) |
						   (a->dv ? FILE_DV : 0u),
					  .ncols = a->ncols, .field_ids = a->field_ids,
					  .types = w->rw[j].types, .stats = a->stats,
					  .base_fid = a->base_fid, .deleted = a->deleted, .dv = a->dv,
					  .dv_len = a->dv_len, .seg = a->dv ? w->rw[j].seg : 0};
		if (a->dv)
			rw[j].flags |= FILE_SEG;
		adds[nadd++] = (struct store_add){.fid = a->file_id, .rec = &rw[j],
						  .inl = w->rw[j].inl, .inl_len = w->rw[j].inl_len};
	}
	struct store_change ch = {.enc = w->crec.data, .len = w->crec.len, .at = &w->cat,
				  .metadata = w->m.meta_changed,
				  .duration_us = (uint64_t)(store_now_us() - w->t0),
				  .removes = w->read_files, .nremove = w->nread, .adds = adds,
				  .nadd = nadd, .commit_cur = gcur->commits, .file_cur = gcur->files};
	if ((rc = store_commit_apply(s, txn, h, &ch, err)) != ST_OK ||
	    (rc = store_kix_put(s, txn, &w->kix, err)) != ST_OK)
		goto out;
	if (w->app_id) {
		uint8_t ver[8];
		st_put_le64(ver, w->app_version);
		MDB_val k = app_key(key, h->tid, w->app_id), v = {8, ver};
		if ((mrc = store_put(s, txn, NULL, &k, &v, 0)) != 0) {
			rc = store_lmdb_err(err, mrc, "recording an app version");
			goto out;
		}
	}
	store_result(res, h);
	res->rows = w->rows;
out:
	if (adds != &add1)
		free(adds);
	free(rw);
	return rc;
}

/*
 * The heads of the tables a group writes, read once per group and stored
 * once at its end (a group of appends to one table reads and writes its
 * head once, not once per committer).
 */
struct head_cache {
	struct table_head *h;        /* heads as advanced by this group */
	bool *dirty;                 /* head i changed: store it at the end */
	uint32_t n, cap;
};

static void head_cache_reset(struct head_cache *hc)
{
	/* A changed head's metadata is borrowed from the staged write that
	 * changed it (it lives until the group is done): not freed here. */
	for (uint32_t i = 0; i < hc->n; i++)
		hc->h[i].meta = NULL;
	hc->n = 0;
}

/* The head of the table w writes, as this group left it. ST_ECONFLICT
 * when the name now belongs to another table than the one w read. */
static int head_cached(st_store *s, MDB_txn *txn, struct head_cache *hc, const struct staged *w,
		       uint32_t *at, struct st_err *err)
{
	for (uint32_t i = 0; i < hc->n; i++)
		if (hc->h[i].tid == w->tid) {
			*at = i;
			return ST_OK;
		}
	if (hc->n == hc->cap) {
		uint32_t cap = hc->cap ? 2 * hc->cap : 4;
		struct table_head *h = realloc(hc->h, cap * sizeof *h);
		if (h)
			hc->h = h;
		bool *d = realloc(hc->dirty, cap * sizeof *d);
		if (d)
			hc->dirty = d;
		if (!h || !d)
			return st_seterr(err, ST_ENOMEM, "out of memory");
		hc->cap = cap;
	}
	struct table_head *h = &hc->h[hc->n];
	int rc = head_get_fixed(s, txn, w->table, h, err);
	if (rc == ST_OK && h->tid != w->tid) {
		head_fini(h);
		return st_seterr(err, ST_ECONFLICT,
				 "table '%s' was dropped or replaced after this write read it", w->table);
	}
	if (rc == ST_OK) {
		hc->dirty[hc->n] = false;
		*at = hc->n++;
	}
	return rc;
}

/*
 * Decide t inside the group's transaction txn: first every conflict check
 * (read-only, so a conflict leaves txn untouched), then every apply.
 * Returns ST_OK, an error before anything was written (*dirty false), or
 * an error after txn was modified (*dirty true: txn must be aborted).
 */
static int commit_one(st_store *s, MDB_txn *txn, struct group_cursors *gcur,
		      struct head_cache *hc, st_txn *t, struct st_commit_result *res, bool *dirty,
		      struct st_err *err)
{
	int rc = ST_OK;
	/* On the stack for transactions of up to 8 tables. */
	uint32_t at8[8], *at = t->n <= 8 ? at8 : calloc(t->n, sizeof *at);
	bool noop8[8], *noop = t->n <= 8 ? noop8 : calloc(t->n, sizeof *noop);
	*dirty = false;
	if (!at || !noop) {
		if (at != at8)
			free(at);
		if (noop != noop8)
			free(noop);
		return st_seterr(err, ST_ENOMEM, "out of memory");
	}
	for (uint32_t i = 0; i < t->n && rc == ST_OK; i++) {
		struct staged *w = &t->w[i];
		if ((rc = head_cached(s, txn, hc, w, &at[i], err)) != ST_OK)
			break;
		struct table_head *h = &hc->h[at[i]];
		/* A concurrent retry that won is the same outcome: a no-op. */
		uint64_t have = 0;
		if (!w->noop && w->app_id &&
		    (rc = store_app_version_of(s, txn, h->tid, w->app_id, &have, err)) != ST_OK)
			break;
		noop[i] = w->noop || (w->app_id && have >= w->app_version);
		if (!noop[i])
			rc = store_check_conflicts(s, txn, w, h, err);
	}
	for (uint32_t i = 0; i < t->n && rc == ST_OK; i++) {
		struct staged *w = &t->w[i];
		struct table_head *h = &hc->h[at[i]];
		if (noop[i]) {
			res[i] = (struct st_commit_result){.version = h->version,
							   .time_us = h->time_us, .noop = true};
			w->noop = true; /* its staged files are nobody's: unlinked at the end */
			continue;
		}
		*dirty = true;
		hc->dirty[at[i]] = true;
		rc = apply(s, txn, gcur, w, h, &res[i], err);
		if (rc == ST_OK && w->m.meta_changed)
			h->meta = w->m.meta; /* borrowed, see head_cache_reset */
		/* Cluster mode: each entry carries its table's head as it left it
		 * (an entry is applied alone; the group's heads are stored once). */
		if (rc == ST_OK && s->cap.on)
			rc = head_put(s, txn, h, err);
	}
	if (rc == ST_OK)
		store_cap_boundary(s);
	if (at != at8)
		free(at);
	if (noop != noop8)
		free(noop);
	return rc;
}

/* Store the heads a group changed. */
static int head_cache_flush(st_store *s, MDB_txn *txn, struct head_cache *hc, struct st_err *err)
{
	int rc = ST_OK;
	for (uint32_t i = 0; i < hc->n && rc == ST_OK; i++)
		if (hc->dirty[i])
			rc = head_put(s, txn, &hc->h[i], err);
	return rc;
}

/* A committer waiting in the group-commit queue. */
struct gc_entry {
	st_txn *t;                  /* its transaction */
	struct st_commit_result *res; /* where its results go */
	struct st_err *err;         /* where its error goes */
	int rc;                     /* its outcome */
	bool decided;               /* rc is final (within lead_group) */
	int durability;             /* its level (cluster mode, enum st_durability) */
	bool done;                  /* decided and published */
	sem_t wake;                 /* posted when done, or (not done) to lead */
	uint64_t group;             /* once done, the number of its group (gc_groups) */
	struct gc_entry *next;      /* next in the queue; once done, a child to wake */
	struct gc_entry *next2;     /* once done, the other child to wake */
};

/* A leader leads the groups that queue up behind its own, at most this
 * many in all, before it passes leadership on (its own caller waits). */
#define GC_LEAD_ROUNDS 8

/* The longest a leader waits for the last group's committers (gc_gather). */
#define GC_GATHER_MAX_NS 1000000u

/* The leader is woken to decide arrivals once this many have queued
 * (deciding them while the others still prepare), or all it waits for. */
#define GC_GATHER_STEP 4

/*
 * The group a thread's last commit went into (gc_gather tells from it who
 * of the last group has queued again).
 */
static _Thread_local const st_store *gc_my_store;
static _Thread_local uint64_t gc_my_group;

/* t + ns. */
static struct timespec ts_add(struct timespec t, uint64_t ns)
{
	ns += (uint64_t)t.tv_nsec;
	t.tv_sec += (time_t)(ns / 1000000000);
	t.tv_nsec = (long)(ns % 1000000000);
	return t;
}

static bool ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/*
 * Wait (gc_lock held) while the committers of the last group are coming
 * back: until GC_GATHER_STEP of them have queued again (the caller decides
 * those while the rest still prepare, then comes back), or all that are
 * missing. Returns false when waiting stops paying: none of them came
 * back for a quarter of the last commit's time (the rest are not writing
 * in a loop: a committer that does not return costs that much, once), or
 * the group has waited until *deadline (one commit's time after it began:
 * a bound on what waiting adds to a commit's latency). Committers that
 * write in a loop come back after a short preparation; without the wait
 * each group would hold only those that came back during the previous
 * commit, more commits for the same work.
 */
static bool gc_gather(st_store *s, const struct timespec *deadline)
{
	uint32_t missing = s->gc.nprev > s->gc.nback ? s->gc.nprev - s->gc.nback : 0;
	if (!missing)
		return true;
	uint64_t gap = s->gc.commit_ns / 4;
	struct timespec now, until = ts_add(s->gc.back_at, gap);
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (ts_before(deadline, &until))
		until = *deadline;
	if (!ts_before(&now, &until))
		return false;
	s->gc.want = missing < GC_GATHER_STEP ? missing : GC_GATHER_STEP;
	s->gc.queued = 0;
	s->gc.gathering = true;
	int r = 0;
	while (r == 0 && s->gc.queued < s->gc.want)
		r = pthread_cond_timedwait(&s->gc.arrive, &s->gc.lock, &until);
	s->gc.gathering = false;
	if (r != ETIMEDOUT)
		return true;
	/* Timed out: go on only if one of them came back meanwhile. */
	until = ts_add(s->gc.back_at, gap);
	clock_gettime(CLOCK_MONOTONIC, &now);
	return ts_before(&now, &until) && ts_before(&now, deadline);
}

/*
 * Decide one group in one LMDB write transaction, each committer with its
 * own versions, its own conflict check and its own result, then one
 * durable LMDB commit for all. Committers that queue up while the group is
 * being decided join it (up to GC_MAX_GROUP): they would otherwise wait a
 * whole commit for the next group. Conflict checks write nothing, so a
 * conflict costs no undo; an error after a committer began writing (map
 * full, out of memory) aborts the group's transaction and the group is
 * redone without that committer (each round decides at least one, so this
 * ends).
 */
static void lead_group(st_store *s, struct gc_entry *batch)
{
	struct head_cache hc = {0};
	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline = ts_add(deadline, s->gc.commit_ns);
	uint32_t size = 0;
	bool gather = true; /* until waiting stops paying (gc_gather) */
	struct gc_entry *tail = batch;
	for (struct gc_entry *e = batch; e; e = e->next, size++)
		tail = e;
	for (;;) {
		MDB_txn *txn = NULL;
		struct st_err gerr;
		struct gc_entry *failed = NULL;
		int grc = store_write_begin(s, &txn, "committing", &gerr);
		struct group_cursors gcur = {NULL, NULL};
		if (grc == ST_OK && (mdb_cursor_open(txn, s->dbi, &gcur.commits) != 0 ||
				     mdb_cursor_open(txn, s->dbi, &gcur.files) != 0))
			gcur.commits = gcur.files = NULL; /* plain puts (LMDB frees either) */
		bool any = false;
		head_cache_reset(&hc);
		for (struct gc_entry *e = batch; e && !failed; e = e->next) {
			if (!e->decided) {
				memset(e->res, 0, e->t->n * sizeof *e->res);
				if (grc != ST_OK) {
					e->rc = st_seterr(e->err, grc, "%s", gerr.msg);
					e->decided = true;
				} else {
					bool dirty;
					e->rc = commit_one(s, txn, &gcur, &hc, e->t, e->res, &dirty,
							   e->err);
					if (e->rc == ST_OK)
						any = true;
					else if (dirty)
						failed = e;
					else
						e->decided = true;
				}
			}
			if (!e->next && !failed && grc == ST_OK && size < GC_MAX_GROUP) {
				/* Take in whoever queued up meanwhile, after waiting a
				 * little for the last group's committers (gc_gather). */
				pthread_mutex_lock(&s->gc.lock);
				if (!s->gc.head && gather)
					gather = gc_gather(s, &deadline);
				for (struct gc_entry *q = s->gc.head; q && size < GC_MAX_GROUP;
				     q = s->gc.head) {
					s->gc.head = q->next;
					q->next = NULL;
					tail = tail->next = q;
					size++;
				}
				if (!s->gc.head)
					s->gc.tail = NULL;
				pthread_mutex_unlock(&s->gc.lock);
			}
		}
		if (!failed && grc == ST_OK && any &&
		    (grc = head_cache_flush(s, txn, &hc, &gerr)) != ST_OK) {
			/* Nothing of this group can commit. */
			mdb_txn_abort(txn);
			txn = NULL;
		}
		if (failed) {
			/* txn is unusable: decide the one that broke it, redo the rest. */
			store_write_end(s, txn);
			failed->decided = true;
			memset(failed->res, 0, failed->t->n * sizeof *failed->res);
			for (struct gc_entry *e = batch; e; e = e->next)
				if (!e->decided) /* applied in the aborted txn, or not reached */
					e->rc = ST_OK;
			continue;
		}
		if (grc == ST_OK && any) {
			struct timespec c0, c1;
			clock_gettime(CLOCK_MONOTONIC, &c0);
			/* Cluster mode: the group waits for its most demanding member. */
			int level = 0, mine = store_repl_level();
			for (struct gc_entry *e = batch; e; e = e->next)
				if (!e->decided && e->durability > level)
					level = e->durability;
			st_repl_set_durability(level);
			grc = store_commit_txn(s, txn, "committing", &gerr);
			st_repl_set_durability(mine);
			txn = NULL;
			clock_gettime(CLOCK_MONOTONIC, &c1);
			uint64_t took = (uint64_t)(c1.tv_sec - c0.tv_sec) * 1000000000u +
					(uint64_t)c1.tv_nsec - (uint64_t)c0.tv_nsec;
			s->gc.commit_ns = took < GC_GATHER_MAX_NS ? took : GC_GATHER_MAX_NS;
		}
		for (struct gc_entry *e = batch; e; e = e->next) {
			if (e->decided)
				continue;
			e->decided = true;
			if (grc != ST_OK) {
				e->rc = st_seterr(e->err, grc, "%s", gerr.msg);
				memset(e->res, 0, e->t->n * sizeof *e->res);
				if (grc != ST_EUNAVAIL)
					continue;
				/* Proposed, not acknowledged: it may still commit, so its
				 * files stay (an orphan sweep removes them if not). */
			}
			/* From here its files are never unlinked by us: if the LMDB
			 * commit failed after all, recovery removes them as orphans. */
			for (uint32_t i = 0; i < e->t->n; i++) {
				struct staged *w = &e->t->w[i];
				if (w->noop)
					continue; /* nothing of it was committed */
				if (w->written) /* (no store otherwise: the line stays the committer's) */
					w->written = false;
				for (uint32_t j = 0; j < w->nrw; j++)
					w->rw[j].written = false;
			}
		}
		store_write_end(s, txn);
		head_cache_reset(&hc);
		free(hc.h);
		free(hc.dirty);
		return;
	}
}

/*
 * Group commit: committers queue up; whoever finds no leader becomes one
 * and takes the whole queue as its group (lead_group). When the group is
 * committed the leader hands leadership straight to the head of the queue
 * and wakes its own group's members, each with one targeted wake-up.
 */
int st_txn_commit(st_txn *t, struct st_commit_result *res, struct st_err *err)
{
	st_store *s = t->s;
	struct gc_entry me = {.t = t, .res = res, .err = err, .durability = store_repl_level()};
	for (uint32_t i = 0; i < t->n; i++) {
		int rc = t->w[i].noop ? ST_OK : prepare(&t->w[i], err);
		if (rc != ST_OK) {
			memset(res, 0, t->n * sizeof *res);
			st_txn_abort(t);
			return rc;
		}
	}
	sem_init(&me.wake, 0, 0);
	pthread_mutex_lock(&s->gc.lock);
	if (s->gc.tail)
		s->gc.tail->next = &me;
	else
		s->gc.head = &me;
	s->gc.tail = &me;
	if (gc_my_store == s && gc_my_group == s->gc.groups) {
		s->gc.nback++; /* one of the last group, back */
		clock_gettime(CLOCK_MONOTONIC, &s->gc.back_at);
	}
	if (s->gc.gathering && ++s->gc.queued >= s->gc.want)
		pthread_cond_signal(&s->gc.arrive);
	/* No leader means an empty queue: then I lead at once. Otherwise I
	 * sleep on my own semaphore (no lock to take again on waking) until
	 * my group is done or leadership is handed to me. */
	bool lead = !s->gc.leader;
	s->gc.leader = true;
	pthread_mutex_unlock(&s->gc.lock);
	if (!lead) {
		while (sem_wait(&me.wake) != 0)
			;
		if (me.done) {
			gc_my_store = s;
			gc_my_group = me.group;
			/* Woken in a tree: wake my two children in it. */
			if (me.next)
				sem_post(&me.next->wake);
			if (me.next2)
				sem_post(&me.next2->wake);
			goto out;
		}
	}
	pthread_mutex_lock(&s->gc.lock);
	for (int round = 1;; round++) {
		/* Lead: take the queue (at most GC_MAX_GROUP) as the group. */
		struct gc_entry *batch = s->gc.head, *last = batch, *wake[GC_MAX_GROUP];
		for (uint32_t n = 1; n < GC_MAX_GROUP && last->next; n++)
			last = last->next;
		s->gc.head = last->next;
		if (!s->gc.head)
			s->gc.tail = NULL;
		last->next = NULL;
		pthread_mutex_unlock(&s->gc.lock);
		lead_group(s, batch);
		/* Publish: the members form a binary tree in which each one, once
		 * woken, wakes its two children (log-depth wake-up, one post from
		 * here); everything they read is written before that post. */
		uint32_t n = 0;
		uint64_t group = s->gc.groups + 1; /* only the leader changes it */
		for (struct gc_entry *e = batch; e; e = e->next) {
			e->done = true;
			e->group = group;
			if (e != &me)
				wake[n++] = e;
		}
		for (uint32_t i = 0; i < n; i++) {
			wake[i]->next = 2 * i + 1 < n ? wake[2 * i + 1] : NULL;
			wake[i]->next2 = 2 * i + 2 < n ? wake[2 * i + 2] : NULL;
		}
		pthread_mutex_lock(&s->gc.lock);
		/* The next group's leader waits for these n (gc_gather); they
		 * count as back when they queue again (group numbers). */
		s->gc.groups = group;
		s->gc.nprev = n;
		s->gc.nback = 0;
		clock_gettime(CLOCK_MONOTONIC, &s->gc.back_at);
		if (n)
			sem_post(&wake[0]->wake);
		if (!s->gc.head) {
			s->gc.leader = false;
			break;
		}
		if (round == GC_LEAD_ROUNDS) { /* pass leadership on: woken, not done */
			sem_post(&s->gc.head->wake);
			break;
		}
	}
	pthread_mutex_unlock(&s->gc.lock);
out:
	sem_destroy(&me.wake);
	st_txn_abort(t);
	return me.rc;
}

