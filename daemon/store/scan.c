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
	bool key_point;              /* pred fixes the declared key: only file key_fid can */
	uint64_t key_fid;            /* match (0: none), per the key index (STORE.md §4.6) */
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
	bool pinned;                 /* (tid, pin_version) registered against vacuum */
	uint64_t pin_version;        /* the version pinned (a change feed: before its first) */
	void **wbuf;                 /* per schema field: widened values */
	size_t *wcap;                /* their sizes */
	uint32_t *del;               /* the open file's deleted positions (its DV), or NULL */
	uint32_t ndel;               /* their count */
	uint64_t rg_row0;            /* position of row group rg's first row in the file */
	struct st_scan_stats read;   /* what was read and pruned */
	/* A change feed (st_changes_open): per entry of files, what it is. */
	bool changes;
	uint8_t *ctype;              /* enum change_type */
	uint64_t *cver;              /* its commit's version */
	int64_t *ctime;              /* and time */
	uint32_t **keep;             /* positions to emit (NULL: every live row) */
	uint32_t *nkeep;
	uint64_t *xver;              /* extra columns' storage, per batch */
	int64_t *xtime;
	uint32_t *xcode;
	size_t xcap;                 /* rows of those */
	struct st_vec xdict[4];      /* one-value dictionaries of the change types */
};

/* The change feed's _change_type values (STORE.md §4.4). */
enum change_type { CH_INSERT, CH_DELETE, CH_PRE, CH_POST };
static const char *const change_names[4] = {"insert", "delete", "update_preimage",
					    "update_postimage"};
static const uint32_t change_offs[4][2] = {{0, 6}, {0, 6}, {0, 15}, {0, 16}};
#define CHANGE_COLS 3

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
	for (uint32_t i = 0; sc->keep && i < sc->nfiles; i++)
		free(sc->keep[i]);
	free(sc->keep);
	free(sc->nkeep);
	free(sc->ctype);
	free(sc->cver);
	free(sc->ctime);
	free(sc->xver);
	free(sc->xtime);
	free(sc->xcode);
	if (sc->pinned)
		store_unpin(sc->s, sc->tid, sc->pin_version);
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

/* The projection and predicate of sc (its metadata set). */
static int scan_columns(st_scan *sc, const char *const *columns, uint32_t ncolumns,
			const char *predicate, struct st_err *err)
{
	int rc = ST_OK;
	const char *table = sc->table;
	const struct st_schema *sch = &sc->meta->schema;
	uint32_t F = sch->nfields;
	sc->nproj = columns ? ncolumns : F;
	sc->proj = calloc(sc->nproj + 1, sizeof *sc->proj);
	sc->need = calloc(F, sizeof *sc->need);
	sc->seg_col = calloc(F, sizeof *sc->seg_col);
	sc->vecs = calloc(F, sizeof *sc->vecs);
	sc->out = calloc(sc->nproj + CHANGE_COLS + 1, sizeof *sc->out);
	sc->stats = calloc(F, sizeof *sc->stats);
	sc->wbuf = calloc(F, sizeof *sc->wbuf);
	sc->wcap = calloc(F, sizeof *sc->wcap);
	if (!sc->wbuf || !sc->wcap || !sc->proj || !sc->need || !sc->seg_col || !sc->vecs || !sc->out || !sc->stats) {
		return st_seterr(err, ST_ENOMEM, "out of memory");
	}
	for (uint32_t j = 0; j < sc->nproj; j++) {
		int f = columns ? st_schema_find(sch, columns[j], strlen(columns[j])) : (int)j;
		if (f < 0) {
			rc = st_seterr(err, ST_ENOTFOUND, "table '%s' (version %llu) has no column '%s'",
				       table, (unsigned long long)sc->version, columns[j]);
			return rc;
		}
		sc->proj[j] = (uint32_t)f;
		sc->need[f] = true;
	}
	if (predicate && *predicate) {
		if ((rc = expr_parse(predicate, sch, &sc->pred, err)) != ST_OK)
			return rc;
		expr_columns(sc->pred, sc->need);
	}
	return rc;
}

static int key_point(st_scan *sc, struct st_err *err);

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
	sc->pin_version = sc->version;
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

	if ((rc = scan_columns(sc, columns, ncolumns, predicate, err)) != ST_OK ||
	    (rc = key_point(sc, err)) != ST_OK)
		goto out;
	*out = sc;
	sc = NULL;
out:
	store_read_end(s, txn);
	head_fini(&h);
	st_scan_close(sc);
	return rc;
}

/* A table with a declared key and a predicate that fixes every key column
 * (`k = literal` among its top ANDs): the key index names the one file
 * live at the scan's version that holds the row, if any; the others are
 * pruned. */
static int key_point(st_scan *sc, struct st_err *err)
{
	const struct act_metadata *m = sc->meta;
	const struct st_schema *sch = &m->schema;
	if (!sc->pred || !m->nkey || m->nkey > ST_MAX_COLUMNS)
		return ST_OK;
	struct st_vec v[ST_MAX_COLUMNS];
	const struct st_vec *pv[ST_MAX_COLUMNS];
	int idx[ST_MAX_COLUMNS];
	uint8_t types[ST_MAX_COLUMNS];
	union {
		int32_t i32;
		int64_t i64;
		double f64;
		uint8_t b;
	} val[ST_MAX_COLUMNS];
	uint32_t offs[ST_MAX_COLUMNS][2];
	for (uint32_t i = 0; i < m->nkey; i++) {
		int f = -1;
		for (uint32_t k = 0; k < sch->nfields; k++)
			if (sch->fields[k].id == m->key[i])
				f = (int)k;
		struct st_value lit;
		if (f < 0 || !expr_eq_literal(sc->pred, f, &lit) || lit.type != sch->fields[f].type)
			return ST_OK;
		int t = sch->fields[f].type;
		v[i] = (struct st_vec){.type = (uint8_t)t, .n = 1, .data = &val[i]};
		if (st_type_is_varlen(t)) {
			offs[i][0] = 0;
			offs[i][1] = lit.v.s.len;
			v[i].offsets = offs[i];
			v[i].bytes = lit.v.s.ptr;
			v[i].data = NULL;
		} else if (t == ST_TYPE_FLOAT64) {
			val[i].f64 = lit.v.f64;
		} else if (t == ST_TYPE_BOOL) {
			val[i].b = lit.v.b;
		} else if (st_type_width(t) == 4) {
			val[i].i32 = lit.v.i32;
		} else {
			val[i].i64 = lit.v.i64;
		}
		pv[i] = &v[i];
		idx[i] = (int)i;
		types[i] = (uint8_t)t;
	}
	struct st_buf kb = {0};
	MDB_txn *txn = NULL;
	struct store_kix_view *view = NULL;
	int rc = ST_OK, mrc;
	if (!store_key_bytes(&kb, pv, idx, types, m->nkey, 0, NULL))
		rc = kb.oom ? st_seterr(err, ST_ENOMEM, "out of memory") : ST_OK;
	else if ((mrc = store_read_begin(sc->s, &txn)) != 0)
		rc = store_lmdb_err(err, mrc, "looking a key up");
	else if ((rc = store_kix_view_files_open(sc->s, txn, m, sc->tid, sc->version, sc->files,
						   sc->nfiles, &view, err)) == ST_OK) {
		uint32_t fi, pos, nf;
		int found = store_kix_find(sc->s, view, kb.data, kb.len, &fi, &pos, err);
		if (found >= 0) {
			sc->key_point = true;
			sc->key_fid = found ? store_kix_view_files(view, &nf)[fi].fid : 0;
		}
		rc = found < 0 ? found : ST_OK;
	}
	store_kix_view_free(view);
	store_read_end(sc->s, txn);
	st_buf_free(&kb);
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
	if (sc->key_point && f->fid != sc->key_fid)
		return false;
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

/* A change feed batch's _change_type, _commit_version and _commit_timestamp
 * (constant over the batch's rows) after its projected columns. */
static int change_columns(st_scan *sc, uint32_t fi, uint32_t rows, struct st_err *err)
{
	if (rows > sc->xcap) {
		free(sc->xver);
		free(sc->xtime);
		free(sc->xcode);
		sc->xver = malloc(((size_t)rows + 1) * sizeof *sc->xver);
		sc->xtime = malloc(((size_t)rows + 1) * sizeof *sc->xtime);
		sc->xcode = calloc((size_t)rows + 1, sizeof *sc->xcode);
		sc->xcap = sc->xver && sc->xtime && sc->xcode ? rows : 0;
		if (!sc->xcap)
			return st_seterr(err, ST_ENOMEM, "out of memory");
	}
	for (uint32_t i = 0; i < rows; i++) {
		sc->xver[i] = sc->cver[fi];
		sc->xtime[i] = sc->ctime[fi];
	}
	struct st_vec *x = sc->out + sc->nproj;
	x[0] = (struct st_vec){.type = ST_TYPE_STRING, .n = rows, .codes = sc->xcode,
			       .dict = &sc->xdict[sc->ctype[fi]]};
	x[1] = (struct st_vec){.type = ST_TYPE_INT64, .n = rows, .data = sc->xver};
	x[2] = (struct st_vec){.type = ST_TYPE_TIMESTAMP, .n = rows, .data = sc->xtime};
	sc->batch.ncols = sc->nproj + CHANGE_COLS;
	return ST_OK;
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
		/* A change feed entry that emits some positions only: kp[0, nk). */
		const uint32_t *kp = NULL;
		uint32_t nk = 0, fi = sc->next_file - 1;
		if (sc->changes && sc->keep[fi]) {
			uint32_t klo = dv_lower(sc->keep[fi], sc->nkeep[fi], (uint32_t)row0);
			uint32_t khi = dv_lower(sc->keep[fi], sc->nkeep[fi], (uint32_t)(row0 + m->rows));
			if (khi == klo)
				continue;
			kp = sc->keep[fi] + klo;
			nk = khi - klo;
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
		if (kp) {
			/* Keep the selected rows that kp lists (both increasing). */
			if (grow((void **)&sc->sel, &sc->sel_cap, ((size_t)b->rows + 1) * 4) != ST_OK)
				return st_seterr(err, ST_ENOMEM, "out of memory");
			uint32_t n = 0, j = 0;
			for (uint32_t q = 0; q < sc->batch.nsel; q++) {
				uint32_t r = sc->batch.sel ? sc->batch.sel[q] : q;
				while (j < nk && kp[j] - row0 < r)
					j++;
				if (j < nk && kp[j] - row0 == r)
					sc->sel[n++] = r;
			}
			if (n == 0)
				continue;
			sc->batch.sel = sc->sel;
			sc->batch.nsel = n;
		}
		for (uint32_t j = 0; j < sc->nproj; j++)
			sc->out[j] = sc->vecs[sc->proj[j]];
		sc->batch.ncols = sc->nproj;
		if (sc->changes && (rc = change_columns(sc, fi, b->rows, err)) != ST_OK)
			return rc;
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
	static const char *const names[CHANGE_COLS] = {"_change_type", "_commit_version",
						       "_commit_timestamp"};
	if (i >= sc->nproj)
		return names[i - sc->nproj];
	return sc->meta->schema.fields[sc->proj[i]].name;
}

int st_scan_column_type(const st_scan *sc, uint32_t i)
{
	static const int types[CHANGE_COLS] = {ST_TYPE_STRING, ST_TYPE_INT64, ST_TYPE_TIMESTAMP};
	if (i >= sc->nproj)
		return types[i - sc->nproj];
	return sc->meta->schema.fields[sc->proj[i]].type;
}

uint32_t st_scan_ncolumns(const st_scan *sc)
{
	return sc->nproj + (sc->changes ? CHANGE_COLS : 0);
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

/* ---- the change data feed (STORE.md §4.4) ----------------------------------- */

static bool feed_on(const struct act_metadata *m)
{
	for (uint32_t i = 0; m && i < m->nprops; i++)
		if (!strcasecmp(m->props[i].key, "change_feed"))
			return !strcasecmp(m->props[i].val, "true");
	return false;
}

static int cmp_fid(const void *a, const void *b)
{
	uint64_t x = ((const struct file_rec *)a)->fid, y = ((const struct file_rec *)b)->fid;
	return (x > y) - (x < y);
}

/* A deep copy of f. */
static int file_rec_copy(struct file_rec *dst, const struct file_rec *f)
{
	*dst = *f;
	dst->field_ids = malloc(((size_t)f->ncols + 1) * sizeof *dst->field_ids);
	dst->types = malloc((size_t)f->ncols + 1);
	dst->stats = malloc(((size_t)f->ncols + 1) * sizeof *dst->stats);
	dst->dv = f->dv ? malloc(f->dv_len) : NULL;
	if (!dst->field_ids || !dst->types || !dst->stats || (f->dv && !dst->dv)) {
		file_rec_fini(dst);
		return ST_ENOMEM;
	}
	memcpy(dst->field_ids, f->field_ids, f->ncols * sizeof *dst->field_ids);
	memcpy(dst->types, f->types, f->ncols);
	for (uint32_t i = 0; i < f->ncols; i++)
		st_stats_copy(&dst->stats[i], &f->stats[i]);
	if (f->dv)
		memcpy(dst->dv, f->dv, f->dv_len);
	return ST_OK;
}

/* Append entry (a copy of f, what, version, time, keep) to sc's files. */
static int feed_add(st_scan *sc, uint32_t *cap, const struct file_rec *f, enum change_type what,
		    uint64_t v, int64_t t, uint32_t *keep, uint32_t nkeep)
{
	if (sc->nfiles == *cap) {
		uint32_t c = *cap ? 2 * *cap : 16;
		struct file_rec *nf = realloc(sc->files, c * sizeof *nf);
		if (nf)
			sc->files = nf;
		uint8_t *ty = nf ? realloc(sc->ctype, c) : NULL;
		if (ty)
			sc->ctype = ty;
		uint64_t *ve = ty ? realloc(sc->cver, c * sizeof *ve) : NULL;
		if (ve)
			sc->cver = ve;
		int64_t *ti = ve ? realloc(sc->ctime, c * sizeof *ti) : NULL;
		if (ti)
			sc->ctime = ti;
		uint32_t **kp = ti ? realloc(sc->keep, c * sizeof *kp) : NULL;
		if (kp)
			sc->keep = kp;
		uint32_t *nk = kp ? realloc(sc->nkeep, c * sizeof *nk) : NULL;
		if (nk)
			sc->nkeep = nk;
		if (!nk) {
			free(keep);
			return ST_ENOMEM;
		}
		*cap = c;
	}
	uint32_t i = sc->nfiles;
	if (file_rec_copy(&sc->files[i], f) != ST_OK) {
		free(keep);
		return ST_ENOMEM;
	}
	sc->ctype[i] = (uint8_t)what;
	sc->cver[i] = v;
	sc->ctime[i] = t;
	sc->keep[i] = keep;
	sc->nkeep[i] = nkeep;
	sc->nfiles++;
	return ST_OK;
}

/* Positions in b not in a (both increasing) into *out (malloc'ed). */
static int dv_minus(const uint32_t *b, uint32_t nb, const uint32_t *a, uint32_t na,
		    uint32_t **out, uint32_t *n)
{
	uint32_t *o = malloc(((size_t)nb + 1) * sizeof *o), k = 0;
	if (!o)
		return ST_ENOMEM;
	for (uint32_t i = 0, j = 0; i < nb; i++) {
		while (j < na && a[j] < b[i])
			j++;
		if (j == na || a[j] != b[i])
			o[k++] = b[i];
	}
	*out = o;
	*n = k;
	return ST_OK;
}

/* A MERGE's new segment f: its first nupd rows post-images, the rest
 * inserts (a MERGE adds one new file and no deletion vector on it). */
static int feed_merge_add(st_scan *sc, uint32_t *cap, const struct file_rec *f, uint64_t nupd,
			  uint64_t v, int64_t t, struct st_err *err)
{
	uint64_t rows = f->rows;
	if (f->dv || rows > UINT32_MAX)
		return feed_add(sc, cap, f, CH_INSERT, v, t, NULL, 0) == ST_OK
			       ? ST_OK : st_seterr(err, ST_ENOMEM, "out of memory");
	uint64_t np = nupd < rows ? nupd : rows;
	uint32_t *post = malloc((np + 1) * sizeof *post), *ins = malloc((rows - np + 1) * sizeof *ins);
	if (!post || !ins) {
		free(post);
		free(ins);
		return st_seterr(err, ST_ENOMEM, "out of memory");
	}
	for (uint64_t i = 0; i < np; i++)
		post[i] = (uint32_t)i;
	for (uint64_t i = np; i < rows; i++)
		ins[i - np] = (uint32_t)i;
	int rc = np ? feed_add(sc, cap, f, CH_POST, v, t, post, (uint32_t)np) : (free(post), ST_OK);
	if (rc == ST_OK)
		rc = rows > np ? feed_add(sc, cap, f, CH_INSERT, v, t, ins, (uint32_t)(rows - np))
			       : (free(ins), ST_OK);
	else
		free(ins);
	return rc == ST_OK ? ST_OK : st_seterr(err, ST_ENOMEM, "out of memory");
}

/* A MERGE's removed file old whose rows keep (nkeep; NULL: every live row,
 * taken over) changed: those rm->deletes names are deletes, the others
 * update pre-images. */
static int feed_split(st_scan *sc, uint32_t *cap, const struct file_rec *old,
		      const struct act_remove *rm, uint32_t *keep, uint32_t nkeep, uint64_t v,
		      int64_t t, struct st_err *err)
{
	uint32_t *dels = NULL, ndels = 0, *od = NULL, no = 0, *pre = NULL, *del = NULL, np = 0,
		 nd = 0;
	int rc = old->rows > UINT32_MAX ? ST_ECORRUPT : ST_OK;
	if (rc == ST_OK &&
	    ((rc = dv_decode(rm->deletes, rm->deletes_len, (uint32_t)old->rows, &dels, &ndels,
			     err)) != ST_OK ||
	     (!keep && old->dv &&
	      (rc = dv_decode(old->dv, old->dv_len, (uint32_t)old->rows, &od, &no, err)) != ST_OK)))
		rc = ST_ECORRUPT;
	if (rc == ST_OK && !keep) { /* every live row */
		keep = malloc((old->rows - no + 1) * sizeof *keep);
		for (uint32_t p = 0, j = 0; keep && p < old->rows; p++) {
			if (j < no && od[j] == p)
				j++;
			else
				keep[nkeep++] = p;
		}
		rc = keep ? ST_OK : ST_ENOMEM;
	}
	pre = rc == ST_OK ? malloc(((size_t)nkeep + 1) * sizeof *pre) : NULL;
	del = pre ? malloc(((size_t)nkeep + 1) * sizeof *del) : NULL;
	if (rc == ST_OK && !del)
		rc = ST_ENOMEM;
	for (uint32_t i = 0, j = 0; rc == ST_OK && i < nkeep; i++) {
		while (j < ndels && dels[j] < keep[i])
			j++;
		if (j < ndels && dels[j] == keep[i])
			del[nd++] = keep[i];
		else
			pre[np++] = keep[i];
	}
	free(keep);
	free(dels);
	free(od);
	if (rc == ST_OK && np)
		rc = feed_add(sc, cap, old, CH_PRE, v, t, pre, np);
	else
		free(pre);
	if (rc == ST_OK && nd)
		rc = feed_add(sc, cap, old, CH_DELETE, v, t, del, nd);
	else
		free(del);
	if (rc == ST_ECORRUPT)
		return st_seterr(err, ST_ECORRUPT, "table '%s': the deleted rows of file %llu in "
				 "version %llu are unreadable", sc->table,
				 (unsigned long long)old->fid, (unsigned long long)v);
	return rc == ST_ENOMEM ? st_seterr(err, ST_ENOMEM, "out of memory") : rc;
}

/* The feed entries of commit c (version v) from recs (nrecs, by fid). */
static int feed_commit(st_scan *sc, uint32_t *cap, const struct act_commit *c, uint64_t v,
		       const struct file_rec *recs, uint32_t nrecs, struct st_err *err)
{
	bool upd = c->info.operation && !strcmp(c->info.operation, "UPDATE");
	/* A MERGE that updated: its removed rows are the pre-images (but those
	 * a remove's `deletes` names, which it deleted), the first rows_updated
	 * rows of its new segment the post-images (it writes them first), the
	 * rest inserts. */
	bool merge_upd = c->info.operation && !strcmp(c->info.operation, "MERGE") &&
			 c->info.rows_updated;
	upd |= merge_upd;
	bool *paired = calloc(c->nadd + 1, sizeof *paired);
	int rc = paired ? ST_OK : st_seterr(err, ST_ENOMEM, "out of memory");
	for (uint32_t i = 0; i < c->nremove && rc == ST_OK; i++) {
		if (!c->removes[i].data_change)
			continue; /* compaction: no change */
		struct file_rec key = {.fid = c->removes[i].file_id};
		const struct file_rec *old = bsearch(&key, recs, nrecs, sizeof *recs, cmp_fid);
		if (!old) {
			rc = st_seterr(err, ST_ERANGE, "table '%s': file %llu of version %llu was vacuumed",
				       sc->table, (unsigned long long)key.fid, (unsigned long long)v);
			break;
		}
		/* Re-added in the same commit with a deletion vector: only the
		 * rows that vector newly deletes changed. */
		uint32_t *keep = NULL, nkeep = 0;
		for (uint32_t a = 0; a < c->nadd && rc == ST_OK; a++) {
			const struct act_add *ad = &c->adds[a];
			if (paired[a] || !ad->dv || ad->base_fid != old->fid)
				continue;
			uint32_t *nd = NULL, nn = 0, *od = NULL, no = 0;
			if (old->rows > UINT32_MAX ||
			    dv_decode(ad->dv, ad->dv_len, (uint32_t)old->rows, &nd, &nn, err) != ST_OK ||
			    (old->dv && dv_decode(old->dv, old->dv_len, (uint32_t)old->rows, &od, &no,
						  err) != ST_OK) ||
			    dv_minus(nd, nn, od, no, &keep, &nkeep) != ST_OK)
				rc = st_seterr(err, ST_ECORRUPT, "table '%s': the deletion vector of file "
					       "%llu (version %llu) is unreadable", sc->table,
					       (unsigned long long)ad->file_id, (unsigned long long)v);
			free(nd);
			free(od);
			paired[a] = true;
			break;
		}
		if (rc == ST_OK && merge_upd && c->removes[i].deletes)
			rc = feed_split(sc, cap, old, &c->removes[i], keep, nkeep, v, c->time_us, err);
		else if (rc == ST_OK && (!keep || nkeep))
			rc = feed_add(sc, cap, old, upd ? CH_PRE : CH_DELETE, v, c->time_us, keep, nkeep);
		else
			free(keep);
		if (rc == ST_ENOMEM)
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
	}
	for (uint32_t a = 0; a < c->nadd && rc == ST_OK; a++) {
		if (paired[a] || !c->adds[a].data_change)
			continue;
		struct file_rec key = {.fid = c->adds[a].file_id};
		const struct file_rec *f = bsearch(&key, recs, nrecs, sizeof *recs, cmp_fid);
		if (!f)
			rc = st_seterr(err, ST_ERANGE, "table '%s': file %llu of version %llu was vacuumed",
				       sc->table, (unsigned long long)key.fid, (unsigned long long)v);
		else if (merge_upd)
			rc = feed_merge_add(sc, cap, f, c->info.rows_updated, v, c->time_us, err);
		else if (feed_add(sc, cap, f, upd ? CH_POST : CH_INSERT, v, c->time_us, NULL, 0) != ST_OK)
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
	}
	free(paired);
	return rc;
}

int st_changes_open(st_store *s, const char *table, struct st_at from, struct st_at to,
		    const char *const *columns, uint32_t ncolumns, const char *predicate,
		    st_scan **out, struct st_err *err)
{
	int rc = ST_OK, mrc;
	MDB_txn *txn = NULL;
	struct table_head h = {0};
	struct file_rec *recs = NULL;
	uint32_t nrecs = 0, cap = 0, rcap = 0;
	MDB_cursor *cur = NULL;
	st_scan *sc = calloc(1, sizeof *sc);
	*out = NULL;
	if (!sc)
		return st_seterr(err, ST_ENOMEM, "out of memory");
	sc->s = s;
	sc->changes = true;
	snprintf(sc->table, sizeof sc->table, "%s", table);
	for (int k = 0; k < 4; k++)
		sc->xdict[k] = (struct st_vec){.type = ST_TYPE_STRING, .n = 1,
					       .offsets = change_offs[k],
					       .bytes = (const uint8_t *)change_names[k]};
	if ((mrc = store_read_begin(s, &txn)) != 0) {
		rc = store_lmdb_err(err, mrc, "reading changes");
		goto out;
	}
	if ((rc = head_get(s, txn, table, &h, err)) != ST_OK)
		goto out;
	sc->tid = h.tid;
	/* The range: from the first version at or after `from` to the last at
	 * or before `to`. */
	uint64_t a, b = h.version;
	if (from.kind == ST_AT_VERSION && from.value >= 0) {
		a = (uint64_t)from.value;
	} else if (from.kind == ST_AT_TIME) {
		uint64_t lsn;
		int64_t when;
		if (store_version_at_time(s, txn, h.tid, from.value, &a, NULL) != ST_OK)
			a = h.oldest; /* before every retained commit */
		else if (store_commit_stamp(s, txn, h.tid, a, &lsn, &when) && when < from.value)
			a++;
	} else if (from.kind == ST_AT_LATEST) {
		a = h.version;
	} else {
		rc = st_seterr(err, ST_EINVAL, "changes need a start version or time");
		goto out;
	}
	if (to.kind == ST_AT_VERSION && to.value >= 0)
		b = (uint64_t)to.value < h.version ? (uint64_t)to.value : h.version;
	else if (to.kind == ST_AT_TIME &&
		 (rc = store_version_at_time(s, txn, h.tid, to.value, &b, err)) != ST_OK)
		goto out;
	if (a == 0)
		a = 1; /* version 0 creates the table: no rows */
	if (a <= h.oldest && a > 0 && h.oldest > 0 && a - 1 < h.oldest) {
		rc = st_seterr(err, ST_ERANGE, "table '%s': changes are kept from version %llu on "
			       "(versions before it were vacuumed); %llu is too old", table,
			       (unsigned long long)(h.oldest + 1), (unsigned long long)a);
		goto out;
	}
	if (a > h.version + 1) {
		rc = st_seterr(err, ST_ERANGE, "table '%s' has versions up to %llu; no changes from "
			       "version %llu", table, (unsigned long long)h.version,
			       (unsigned long long)a);
		goto out;
	}
	sc->version = b;
	sc->oldest = h.oldest;
	/* The schema of the last version read; the feed must be on at every
	 * version of the range. */
	if (b == h.version) {
		sc->meta = h.meta;
		h.meta = NULL;
	} else if ((rc = store_meta_at(s, txn, &h, b, &sc->meta, err)) != ST_OK) {
		goto out;
	}
	struct act_metadata *m0 = NULL;
	if (a <= b && (rc = store_meta_at(s, txn, &h, a, &m0, err)) != ST_OK)
		goto out;
	bool on = a > b || feed_on(m0);
	act_metadata_free(m0);
	if (!on) {
		rc = st_seterr(err, ST_EINVAL, "table '%s': the change feed is off at version %llu "
			       "(alter %s set-property change_feed=true: changes are kept from that "
			       "commit on)", table, (unsigned long long)a, table);
		goto out;
	}
	/* Vacuum keeps every file removed after a - 1 while this is open. */
	sc->pin_version = a - 1;
	if (store_pin(s, sc->tid, a - 1) != ST_OK) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	sc->pinned = true;
	/* Every file record removed at a or later, or live: the range's files. */
	if ((mrc = mdb_cursor_open(txn, s->dbi, &cur)) != 0) {
		rc = store_lmdb_err(err, mrc, "reading changes");
		goto out;
	}
	uint8_t key[FILE_KEY_LEN];
	file_key(key, h.tid, a, 0);
	MDB_val k = {sizeof key, key}, d;
	for (mrc = store_cget(s, cur, &k, &d, MDB_SET_RANGE);
	     mrc == 0 && k.mv_size == FILE_KEY_LEN && table_range(&k, key);
	     mrc = store_cget(s, cur, &k, &d, MDB_NEXT)) {
		if (d.mv_size >= 8 && st_get_le64(d.mv_data) > b)
			continue; /* added after the range */
		if (nrecs == rcap) {
			rcap = rcap ? 2 * rcap : 64;
			struct file_rec *g = realloc(recs, rcap * sizeof *g);
			if (!g) {
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
				goto out;
			}
			recs = g;
		}
		if (file_rec_decode(file_key_fid(&k), d.mv_data, d.mv_size, &recs[nrecs]) != ST_OK) {
			rc = st_seterr(err, ST_ECORRUPT, "table '%s': the record of file %llu is damaged",
				       table, (unsigned long long)file_key_fid(&k));
			goto out;
		}
		nrecs++;
	}
	if (mrc != 0 && mrc != MDB_NOTFOUND) {
		rc = store_lmdb_err(err, mrc, "reading changes");
		goto out;
	}
	if (nrecs)
		qsort(recs, nrecs, sizeof *recs, cmp_fid);
	for (uint64_t v = a; v <= b && rc == ST_OK; v++) {
		uint8_t ck[COMMIT_KEY_LEN];
		commit_key(ck, h.tid, v);
		MDB_val kk = {sizeof ck, ck}, dd;
		struct act_commit *c = NULL;
		if ((mrc = store_get(s, txn, &kk, &dd)) != 0) {
			rc = store_lmdb_err(err, mrc, "reading changes");
			break;
		}
		if ((rc = act_decode(dd.mv_data, dd.mv_size, &c, err)) != ST_OK)
			break;
		if (c->metadata && !feed_on(c->metadata))
			rc = st_seterr(err, ST_EINVAL, "table '%s': the change feed is off at version "
				       "%llu (turned off by that commit)", table, (unsigned long long)v);
		else
			rc = feed_commit(sc, &cap, c, v, recs, nrecs, err);
		act_commit_free(c);
	}
	if (rc != ST_OK)
		goto out;
	mdb_cursor_close(cur);
	cur = NULL;
	store_read_end(s, txn);
	txn = NULL;
	if ((rc = scan_columns(sc, columns, ncolumns, predicate, err)) != ST_OK)
		goto out;
	sc->lsn = h.lsn;
	*out = sc;
	sc = NULL;
out:
	if (cur)
		mdb_cursor_close(cur);
	store_read_end(s, txn);
	head_fini(&h);
	file_recs_free(recs, nrecs);
	st_scan_close(sc);
	return rc;
}
