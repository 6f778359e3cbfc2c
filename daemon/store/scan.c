/*
 * daemon/store/scan.c — snapshots and scans (issue 3 §7).
 *
 * A scan resolves its version (latest, a version number, or the newest
 * commit at or before a time), takes the metadata in force then, and lists
 * the files with added <= v < removed straight from the files index: no
 * replay. Files and row groups whose statistics cannot match the predicate
 * are skipped (format/expr.h may_match); the rest are decoded column by
 * column, only the columns the projection and the predicate need, and
 * columns a file predates come out as NULL. Columns are matched between
 * table and file by field id, so renamed columns still read.
 *
 * One thread per scan. Memory: one row group of the needed columns.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/store/store_int.h"
#include "format/dv.h"
#include "format/expr.h"
#include "format/segment.h"

struct st_scan {
	st_store *s;                 /* the store */
	char table[STORE_NAME_MAX + 1]; /* for messages */
	uint64_t tid;                /* table id */
	uint64_t version;            /* version read */
	uint64_t lsn;                /* LSN of its commit */
	int64_t time_us;             /* its commit time */
	uint64_t oldest;             /* the table's oldest retained version */
	struct act_metadata *meta;   /* metadata at that version */
	struct expr *pred;           /* predicate, or NULL */
	uint32_t nproj;              /* projected columns */
	uint32_t *proj;              /* their schema field indexes */
	bool *need;                  /* per schema field: decode it */
	struct file_rec *files;      /* the snapshot's files */
	uint32_t nfiles;             /* count */
	uint32_t next_file;          /* next file to open */
	struct seg_reader *rd;       /* the open file, or NULL */
	uint8_t *inline_buf;         /* bytes of an inline segment rd reads */
	uint32_t rg;                 /* next row group of rd */
	int *seg_col;                /* schema field -> column of rd, -1 if absent */
	bool *want;                  /* per column of rd: decode it */
	uint32_t want_cap;           /* entries of want */
	struct st_vec *vecs;         /* per schema field, for the predicate */
	struct st_vec *out;          /* per projected column */
	struct st_col_stats *stats;  /* per schema field, for pruning */
	uint32_t *sel;               /* selection vector */
	size_t sel_cap;              /* its entries */
	uint8_t *zeros;              /* all-null column storage */
	size_t zeros_cap;            /* its bytes */
	struct st_scan_batch batch;  /* returned by st_scan_next */
	bool pinned;                 /* (tid, version) registered against vacuum */
	void **wbuf;                 /* per schema field: widened values */
	size_t *wcap;                /* their sizes */
	uint32_t *del;               /* the open file's deleted positions (its DV), or NULL */
	uint32_t ndel;               /* their count */
	uint64_t rg_row0;            /* position of row group rg's first row in the file */
	struct st_scan_stats read;   /* what was read and pruned */
};

uint64_t st_scan_version(const st_scan *sc)
{
	return sc->version;
}

void st_scan_close(st_scan *sc)
{
	if (!sc)
		return;
	seg_reader_close(sc->rd);
	free(sc->del);
	if (sc->pinned)
		store_unpin(sc->s, sc->tid, sc->version);
	free(sc->inline_buf);
	for (uint32_t i = 0; i < sc->nfiles; i++)
		file_rec_fini(&sc->files[i]);
	free(sc->files);
	for (uint32_t i = 0; sc->wbuf && sc->meta && i < sc->meta->schema.nfields; i++)
		free(sc->wbuf[i]);
	act_metadata_free(sc->meta);
	expr_free(sc->pred);
	free(sc->proj);
	free(sc->need);
	free(sc->seg_col);
	free(sc->want);
	free(sc->vecs);
	free(sc->out);
	free(sc->stats);
	free(sc->sel);
	free(sc->zeros);
	free(sc->wbuf);
	free(sc->wcap);
	free(sc);
}

/* LSN of commit (tid, v), or UINT64_MAX when unreadable. */
static uint64_t commit_lsn(st_store *s, MDB_txn *txn, uint64_t tid, uint64_t v)
{
	uint64_t lsn;
	int64_t t;
	return store_commit_stamp(s, txn, tid, v, &lsn, &t) ? lsn : UINT64_MAX;
}

/* The newest version of table h whose commit LSN is <= lsn (binary search:
 * LSNs grow with versions). */
static int version_at_lsn(st_store *s, MDB_txn *txn, const struct table_head *h, int64_t lsn,
			  uint64_t *v, struct st_err *err)
{
	uint64_t lo = h->oldest, hi = h->version;
	if (lsn < 0 || commit_lsn(s, txn, h->tid, lo) > (uint64_t)lsn)
		return st_seterr(err, ST_ERANGE,
				 "table '%s' has no retained version at LSN %lld (it was created or "
				 "vacuumed later)", h->meta->name, (long long)lsn);
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo + 1) / 2;
		if (commit_lsn(s, txn, h->tid, mid) <= (uint64_t)lsn)
			lo = mid;
		else
			hi = mid - 1;
	}
	*v = lo;
	return ST_OK;
}

uint64_t st_store_lsn(st_store *s)
{
	return __atomic_load_n(&s->last_lsn, __ATOMIC_ACQUIRE);
}

int st_scan_open(st_store *s, const char *table, struct st_at at, const char *const *columns,
		 uint32_t ncolumns, const char *predicate, st_scan **out, struct st_err *err)
{
	int rc = ST_OK, mrc;
	MDB_txn *txn = NULL;
	struct table_head h = {0};
	st_scan *sc = calloc(1, sizeof *sc);
	*out = NULL;
	if (!sc) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	sc->s = s;
	snprintf(sc->table, sizeof sc->table, "%s", table);
	if ((mrc = store_read_begin(s, &txn)) != 0) {
		rc = store_lmdb_err(err, mrc, "opening a scan");
		goto out;
	}
	if ((rc = head_get(s, txn, table, &h, err)) != ST_OK)
		goto out;
	sc->tid = h.tid;
	switch (at.kind) {
	case ST_AT_LATEST:
		sc->version = h.version;
		break;
	case ST_AT_VERSION:
		if (at.value < 0 || (uint64_t)at.value > h.version || (uint64_t)at.value < h.oldest) {
			rc = st_seterr(err, ST_ERANGE,
				       "table '%s' has versions %llu to %llu; version %lld is not among them",
				       table, (unsigned long long)h.oldest, (unsigned long long)h.version,
				       (long long)at.value);
			goto out;
		}
		sc->version = (uint64_t)at.value;
		break;
	case ST_AT_TIME:
		if ((rc = store_version_at_time(s, txn, h.tid, at.value, &sc->version, err)) != ST_OK) {
			char m[ST_ERR_MSG_MAX];
			snprintf(m, sizeof m, "%s", err ? err->msg : "");
			rc = st_seterr(err, rc, "table '%s': %s", table, m);
			goto out;
		}
		break;
	case ST_AT_LSN:
		if ((rc = version_at_lsn(s, txn, &h, at.value, &sc->version, err)) != ST_OK)
			goto out;
		break;
	default:
		rc = st_seterr(err, ST_EINVAL, "unknown version selector %d", (int)at.kind);
		goto out;
	}
	if (sc->version == h.version) {
		sc->meta = h.meta;
		h.meta = NULL;
		sc->lsn = h.lsn;
		sc->time_us = h.time_us;
	} else if ((rc = store_meta_at(s, txn, &h, sc->version, &sc->meta, err)) != ST_OK) {
		goto out;
	} else if (!store_commit_stamp(s, txn, h.tid, sc->version, &sc->lsn, &sc->time_us)) {
		rc = st_seterr(err, ST_ECORRUPT, "table '%s': commit %llu is unreadable", table,
			       (unsigned long long)sc->version);
		goto out;
	}
	/* Pin before listing: vacuum (which takes the write lock and a newer
	 * LMDB snapshot) then keeps every file listed here. */
	if (store_pin(s, sc->tid, sc->version) != ST_OK) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	sc->pinned = true;
	if ((rc = store_files_at(sc->s, txn, sc->tid, sc->version, &sc->files, &sc->nfiles, err)) !=
	    ST_OK)
		goto out;
	store_read_end(s, txn);
	txn = NULL;
	/* A vacuum between our read and the pin moved the oldest readable
	 * version past ours (it deleted a file we listed): say so. */
	struct table_head now = {0};
	if ((mrc = store_read_begin(s, &txn)) != 0) {
		rc = store_lmdb_err(err, mrc, "opening a scan");
		goto out;
	}
	if ((rc = head_get_tid(s, txn, sc->tid, &now, err)) == ST_OK)
		sc->oldest = now.oldest;
	if (rc == ST_OK && now.oldest > sc->version)
		rc = st_seterr(err, ST_ERANGE, "table '%s': version %llu was vacuumed while the scan opened",
			       table, (unsigned long long)sc->version);
	head_fini(&now);
	if (rc != ST_OK)
		goto out;
	store_read_end(s, txn);
	txn = NULL;

	const struct st_schema *sch = &sc->meta->schema;
	uint32_t F = sch->nfields;
	sc->nproj = columns ? ncolumns : F;
	sc->proj = calloc(sc->nproj + 1, sizeof *sc->proj);
	sc->need = calloc(F, sizeof *sc->need);
	sc->seg_col = calloc(F, sizeof *sc->seg_col);
	sc->vecs = calloc(F, sizeof *sc->vecs);
	sc->out = calloc(sc->nproj + 1, sizeof *sc->out);
	sc->stats = calloc(F, sizeof *sc->stats);
	sc->wbuf = calloc(F, sizeof *sc->wbuf);
	sc->wcap = calloc(F, sizeof *sc->wcap);
	if (!sc->wbuf || !sc->wcap || !sc->proj || !sc->need || !sc->seg_col || !sc->vecs || !sc->out || !sc->stats) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t j = 0; j < sc->nproj; j++) {
		int f = columns ? st_schema_find(sch, columns[j], strlen(columns[j])) : (int)j;
		if (f < 0) {
			rc = st_seterr(err, ST_ENOTFOUND, "table '%s' (version %llu) has no column '%s'",
				       table, (unsigned long long)sc->version, columns[j]);
			goto out;
		}
		sc->proj[j] = (uint32_t)f;
		sc->need[f] = true;
	}
	if (predicate && *predicate) {
		if ((rc = expr_parse(predicate, sch, &sc->pred, err)) != ST_OK)
			goto out;
		expr_columns(sc->pred, sc->need);
	}
	*out = sc;
	sc = NULL;
out:
	store_read_end(s, txn);
	head_fini(&h);
	st_scan_close(sc);
	return rc;
}

/* Statistics of schema field f for a set of rows where the column is
 * absent (every value NULL). */
static void null_stats(struct st_col_stats *st, int type, uint64_t rows)
{
	memset(st, 0, sizeof *st);
	st->rows = rows;
	st->null_count = rows;
	st->min.type = st->max.type = (uint8_t)type;
}

/* File-level pruning: false when no row of file f can match. */
static bool file_may_match(st_scan *sc, const struct file_rec *f)
{
	if (!sc->pred)
		return true;
	store_file_stats(&sc->meta->schema, f, sc->stats);
	return expr_may_match(sc->pred, sc->stats) != EXPR_MATCH_NONE;
}

/* Open an inline segment: copy its bytes out of LMDB (a short read txn). */
static int open_inline(st_scan *sc, const struct file_rec *f, const char *name, struct st_err *err)
{
	size_t len;
	free(sc->inline_buf);
	int rc = store_inline_copy(sc->s, NULL, sc->tid, f, &sc->inline_buf, &len, err);
	return rc ? rc : seg_reader_open_mem(name, sc->inline_buf, len, &sc->rd, err);
}

/* A segment that fails its checks (or is missing) damages its table: it is
 * refused from now on, and a file segment is remembered for a repair from a
 * peer (STORE.md §8). Returns rc. */
static int segment_failed(st_scan *sc, const struct file_rec *f, int rc, const struct st_err *err)
{
	if (rc != ST_ECORRUPT && rc != ENOENT)
		return rc;
	char why[ST_ERR_MSG_MAX];
	snprintf(why, sizeof why, "table '%s': segment %llu is damaged (%s)", sc->table,
		 (unsigned long long)f->fid, err->msg);
	if (f->flags & 1)
		store_damage(sc->s, sc->tid, why);
	else
		store_damage_segment(sc->s, sc->tid, f, why);
	return rc;
}

/* Open the next file that may match; false at the end. */
static int open_next_file(st_scan *sc, bool *opened, struct st_err *err)
{
	int rc = ST_OK;
	*opened = false;
	while (sc->next_file < sc->nfiles) {
		const struct file_rec *f = &sc->files[sc->next_file++];
		if (!file_may_match(sc, f)) {
			sc->read.files_pruned++;
			continue;
		}
		sc->read.files_read++;
		char path[PATH_MAX];
		store_seg_path(sc->s, sc->tid, f->fid, path, sizeof path);
		free(sc->del);
		sc->del = NULL;
		sc->ndel = 0;
		if (f->dv && (f->rows > UINT32_MAX ||
			      (rc = dv_decode(f->dv, f->dv_len, (uint32_t)f->rows, &sc->del, &sc->ndel,
					      err)) != ST_OK)) {
			if (f->rows > UINT32_MAX)
				rc = st_seterr(err, ST_ECORRUPT, "a deletion vector on a file of %llu rows",
					       (unsigned long long)f->rows);
			return segment_failed(sc, f, rc, err);
		}
		if ((rc = (f->flags & 1) ? open_inline(sc, f, path, err)
					 : seg_reader_open(path, NULL, &sc->rd, err)) != ST_OK)
			return segment_failed(sc, f, rc, err);
		const struct st_schema *fs = seg_reader_schema(sc->rd);
		const struct st_schema *sch = &sc->meta->schema;
		if (fs->nfields > sc->want_cap) {
			free(sc->want);
			sc->want = calloc(fs->nfields, sizeof *sc->want);
			if (!sc->want)
				return st_seterr(err, ST_ENOMEM, "out of memory");
			sc->want_cap = fs->nfields;
		}
		memset(sc->want, 0, fs->nfields * sizeof *sc->want);
		for (uint32_t i = 0; i < sch->nfields; i++) {
			sc->seg_col[i] = -1;
			for (uint32_t k = 0; k < fs->nfields; k++)
				if (fs->fields[k].id == sch->fields[i].id) {
					if (fs->fields[k].type != sch->fields[i].type &&
					    !store_widens(fs->fields[k].type, sch->fields[i].type))
						return st_seterr(err, ST_ECORRUPT,
								 "table '%s': file %s stores column '%s' as %s, "
								 "the table says %s", sc->table, path,
								 sch->fields[i].name,
								 st_type_name(fs->fields[k].type),
								 st_type_name(sch->fields[i].type));
					sc->seg_col[i] = (int)k;
					sc->want[k] = sc->need[i];
				}
		}
		sc->rg = 0;
		sc->rg_row0 = 0;
		*opened = true;
		break;
	}
	return rc;
}

static int grow(void **p, size_t *cap, size_t n)
{
	if (n <= *cap)
		return ST_OK;
	free(*p);
	*p = calloc(n, 1);
	*cap = *p ? n : 0;
	return *p ? ST_OK : ST_ENOMEM;
}

int st_scan_next(st_scan *sc, const struct st_scan_batch **out, struct st_err *err)
{
	int rc = ST_OK;
	const struct st_schema *sch = &sc->meta->schema;
	*out = NULL;
	for (;;) {
		if (!sc->rd) {
			bool opened;
			if ((rc = open_next_file(sc, &opened, err)) != ST_OK || !opened)
				return rc;
		}
		if (sc->rg >= seg_reader_row_groups(sc->rd)) {
			seg_reader_close(sc->rd);
			sc->rd = NULL;
			continue;
		}
		uint32_t g = sc->rg++;
		const struct seg_rg_meta *m = seg_reader_row_group(sc->rd, g);
		uint64_t row0 = sc->rg_row0;
		sc->rg_row0 += m->rows;
		/* This row group's deleted positions: del[dlo, dhi). */
		uint32_t dlo = 0, dhi = 0;
		if (sc->ndel) {
			dlo = dv_lower(sc->del, sc->ndel, (uint32_t)row0);
			dhi = dv_lower(sc->del, sc->ndel, (uint32_t)(row0 + m->rows));
			if (dhi - dlo == m->rows)
				continue; /* every row deleted */
		}
		if (sc->pred) {
			for (uint32_t i = 0; i < sch->nfields; i++) {
				if (sc->seg_col[i] >= 0)
				{
					st_stats_copy(&sc->stats[i], &m->chunks[sc->seg_col[i]].stats);
					if (sc->stats[i].min.type != sch->fields[i].type)
						store_stats_widen(&sc->stats[i], sch->fields[i].type);
				}
				else
					null_stats(&sc->stats[i], sch->fields[i].type, m->rows);
			}
			if (expr_may_match(sc->pred, sc->stats) == EXPR_MATCH_NONE) {
				sc->read.row_groups_pruned++;
				continue;
			}
		}
		sc->read.row_groups_read++;
		sc->read.rows_read += m->rows;
		struct seg_batch *b;
		if ((rc = seg_reader_read(sc->rd, g, sc->want, &b, err)) != ST_OK)
			return segment_failed(sc, &sc->files[sc->next_file - 1], rc, err);
		if (grow((void **)&sc->zeros, &sc->zeros_cap, ((size_t)b->rows + 1) * 8) != ST_OK)
			return st_seterr(err, ST_ENOMEM, "out of memory");
		for (uint32_t i = 0; i < sch->nfields; i++) {
			if (!sc->need[i])
				memset(&sc->vecs[i], 0, sizeof sc->vecs[i]);
			else if (sc->seg_col[i] >= 0 && b->cols[sc->seg_col[i]].type != sch->fields[i].type) {
				if (store_vec_widen(&b->cols[sc->seg_col[i]], sch->fields[i].type, &sc->vecs[i],
						    &sc->wbuf[i], &sc->wcap[i]) != ST_OK)
					return st_seterr(err, ST_ENOMEM, "out of memory");
			} else if (sc->seg_col[i] >= 0)
				sc->vecs[i] = b->cols[sc->seg_col[i]];
			else /* the file predates the column: all NULL */
				sc->vecs[i] = (struct st_vec){.type = sch->fields[i].type, .n = b->rows,
							      .validity = sc->zeros, .data = sc->zeros,
							      .offsets = (const uint32_t *)sc->zeros,
							      .bytes = sc->zeros};
		}
		sc->batch.sel = NULL;
		sc->batch.nsel = b->rows;
		if (sc->pred || dhi > dlo) {
			if (grow((void **)&sc->sel, &sc->sel_cap, ((size_t)b->rows + 1) * 4) != ST_OK)
				return st_seterr(err, ST_ENOMEM, "out of memory");
			uint32_t n = b->rows;
			if (sc->pred &&
			    (rc = expr_eval(sc->pred, sc->vecs, b->rows, sc->sel, &n, err)) != ST_OK)
				return rc;
			/* Deleted rows leave the selection (only where this row group
			 * has some: no per-row work otherwise). */
			if (dhi > dlo)
				n = dv_filter(sc->del + dlo, dhi - dlo, row0, sc->pred ? sc->sel : NULL,
					      sc->pred ? n : b->rows, sc->sel);
			if (n == 0)
				continue;
			sc->batch.sel = n == b->rows ? NULL : sc->sel;
			sc->batch.nsel = n;
		}
		for (uint32_t j = 0; j < sc->nproj; j++)
			sc->out[j] = sc->vecs[sc->proj[j]];
		sc->batch.ncols = sc->nproj;
		sc->batch.cols = sc->out;
		sc->batch.rows = b->rows;
		*out = &sc->batch;
		return ST_OK;
	}
}

int st_history(st_store *s, const char *table, uint32_t limit, struct act_commit ***commits,
	       uint32_t *n, struct st_err *err)
{
	int rc = ST_OK, mrc;
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	struct table_head h = {0};
	struct act_commit **arr = NULL;
	uint32_t cnt = 0;
	*commits = NULL;
	*n = 0;
	if ((mrc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn)) != 0 ||
	    (mrc = mdb_cursor_open(txn, s->dbi, &cur)) != 0) {
		rc = store_lmdb_err(err, mrc, "reading history");
		goto out;
	}
	if ((rc = head_get(s, txn, table, &h, err)) != ST_OK)
		goto out;
	uint64_t total = h.version - h.oldest + 1; /* head_get: oldest <= version */
	if (limit == 0 || limit > total)
		limit = (uint32_t)(total > UINT32_MAX ? UINT32_MAX : total);
	uint8_t key[COMMIT_KEY_LEN];
	commit_key(key, h.tid, h.version);
	MDB_val k = {sizeof key, key}, d;
	uint32_t cap = 0;
	for (mrc = store_cget(s, cur, &k, &d, MDB_SET_KEY);
	     mrc == 0 && cnt < limit && k.mv_size == COMMIT_KEY_LEN && table_range(&k, key);
	     mrc = store_cget(s, cur, &k, &d, MDB_NEXT)) {
		if (cnt == cap) { /* grown as commits are read: the head's count is not trusted */
			uint32_t ncap = cap ? (cap > limit / 2 ? limit : 2 * cap) : (limit < 64 ? limit : 64);
			struct act_commit **g = realloc(arr, (size_t)ncap * sizeof *g);
			if (!g) {
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
				goto out;
			}
			arr = g;
			cap = ncap;
		}
		if ((rc = act_decode(d.mv_data, d.mv_size, &arr[cnt], err)) != ST_OK)
			goto out;
		cnt++;
	}
	if (mrc != 0 && mrc != MDB_NOTFOUND && cnt < limit) {
		rc = store_lmdb_err(err, mrc, "reading the history");
		goto out;
	}
	*commits = arr;
	*n = cnt;
	arr = NULL;
out:
	for (uint32_t i = 0; arr && i < cnt; i++)
		act_commit_free(arr[i]);
	free(arr);
	if (cur)
		mdb_cursor_close(cur);
	if (txn)
		mdb_txn_abort(txn);
	head_fini(&h);
	return rc;
}

int store_scan_files(const st_scan *sc, uint64_t **fids, uint32_t *n, uint64_t *rows)
{
	*fids = calloc(sc->nfiles + 1, sizeof **fids);
	*n = 0;
	*rows = 0;
	if (!*fids)
		return ST_ENOMEM;
	for (uint32_t i = 0; i < sc->nfiles; i++) {
		(*fids)[(*n)++] = sc->files[i].fid;
		*rows += file_live_rows(&sc->files[i]);
	}
	return ST_OK;
}

uint32_t store_scan_nfiles(const st_scan *sc)
{
	return sc->nfiles;
}

bool store_scan_file_inline(const st_scan *sc, uint32_t i)
{
	return sc->files[i].flags & 1;
}

bool store_scan_file_dv(const st_scan *sc, uint32_t i)
{
	return sc->files[i].dv != NULL;
}

const char *st_scan_column_name(const st_scan *sc, uint32_t i)
{
	return sc->meta->schema.fields[sc->proj[i]].name;
}

int st_scan_column_type(const st_scan *sc, uint32_t i)
{
	return sc->meta->schema.fields[sc->proj[i]].type;
}

uint32_t st_scan_ncolumns(const st_scan *sc)
{
	return sc->nproj;
}

void st_scan_info(const st_scan *sc, struct st_scan_info *out)
{
	memset(out, 0, sizeof *out);
	out->version = sc->version;
	out->lsn = sc->lsn;
	out->time_us = sc->time_us;
	out->oldest = sc->oldest;
	out->files = sc->nfiles;
	for (uint32_t i = 0; i < sc->nfiles; i++) {
		out->rows += file_live_rows(&sc->files[i]);
		out->bytes += sc->files[i].size;
		out->deleted += sc->files[i].deleted;
		out->dvs += sc->files[i].dv != NULL;
	}
}

void st_scan_stats(const st_scan *sc, struct st_scan_stats *out)
{
	*out = sc->read;
}

const struct act_metadata *st_scan_metadata(const st_scan *sc)
{
	return sc->meta;
}
