/*
 * daemon/write.c — st_write: append and overwrite (issue 3 §4, §6).
 *
 * Order (DESIGN.md §4): check every batch against the schema → write the
 * segment (temp file, fsync, rename, directory fsync: format/segment.h) →
 * one LMDB write transaction appends the commit, the file records and the
 * new head → return. A refused batch writes nothing; a failed LMDB commit
 * removes the new segment and makes the store refuse writes until reopen.
 *
 * Transactions: st_txn_write maps and writes the data outside any lock,
 * remembering the version it read; st_txn_commit encodes the commit, then
 * queues for a group (STORE.md §4): its leader takes the store's write
 * lock, checks the conflict rules against every commit since (DESIGN.md
 * §6) and applies each member's staged tables in one LMDB transaction
 * for the whole group: one durable commit for all, each member with its
 * own versions and result.
 */
#include <errno.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <limits.h>

#include "daemon/store/store_int.h"
#include "format/expr.h"
#include "format/segment.h"

/* How the columns of the write map onto the (possibly evolved) schema. */
struct colmap {
	struct act_metadata *meta; /* metadata after this write (owned, may be new,
				    * or shared->meta, read-only) */
	struct meta_ref *shared;   /* the store's shared metadata, when unchanged */
	bool meta_changed;         /* merge_schema added columns */
	int *field_of;             /* batch column -> schema field index */
	int *batch_of;             /* schema field -> batch column, -1 if missing */
	uint32_t ncols;            /* columns of every batch */
};

/* Let go of m->meta (owned or shared). */
static void colmap_meta_fini(struct colmap *m)
{
	if (m->shared)
		store_meta_put(m->shared);
	else
		act_metadata_free(m->meta);
	m->meta = NULL;
	m->shared = NULL;
}

static void colmap_fini(struct colmap *m)
{
	free(m->field_of);
	free(m->batch_of);
	m->field_of = m->batch_of = NULL;
}

/* Make room in meta's schema for `extra` more fields. */
static int meta_grow(struct act_metadata *meta, uint32_t extra)
{
	struct st_field *f = realloc(meta->schema.fields,
				     (meta->schema.nfields + extra) * sizeof *f);
	if (!f)
		return ST_ENOMEM;
	meta->schema.fields = f;
	return ST_OK;
}

/* Every batch has the header's columns (names and types); NOT NULL holds
 * in every row. Rows are numbered from row_base in messages. */
static int check_batches(const char *table, const struct colmap *m, const struct st_batch *b,
			 uint32_t nb, uint64_t row_base, struct st_err *err)
{
	const struct st_schema *sc = &m->meta->schema;
	uint64_t row0 = row_base;
	for (uint32_t k = 0; k < nb; k++) {
		if (b[k].ncols != m->ncols)
			return st_seterr(err, ST_EINVAL, "table '%s': batch %u has %u columns, the write "
					 "has %u", table, k, b[k].ncols, m->ncols);
		for (uint32_t i = 0; i < m->ncols; i++) {
			const struct st_field *f = &sc->fields[m->field_of[i]];
			if (strcasecmp(b[k].names[i], f->name) || b[k].cols[i].type != f->type ||
			    b[k].cols[i].n != b[k].nrows)
				return st_seterr(err, ST_EINVAL,
						 "table '%s': batch %u column %u ('%s') differs from the "
						 "write's first batch or has the wrong row count", table, k,
						 i, b[k].names[i]);
		}
		for (uint32_t f = 0; f < sc->nfields; f++) {
			if (sc->fields[f].nullable)
				continue;
			int i = m->batch_of[f];
			if (i < 0)
				return st_seterr(err, ST_ESCHEMA,
						 "table '%s': column '%s' is NOT NULL (type %s) and missing "
						 "from the write", table, sc->fields[f].name,
						 st_type_name(sc->fields[f].type));
			if (!b[k].cols[i].validity)
				continue;
			for (uint32_t r = 0; r < b[k].nrows; r++)
				if (!st_vec_is_valid(&b[k].cols[i], r))
					return st_seterr(err, ST_ESCHEMA,
							 "table '%s': column '%s' is NOT NULL (type %s) but "
							 "row %llu of the write is null", table,
							 sc->fields[f].name, st_type_name(sc->fields[f].type),
							 (unsigned long long)(row0 + r));
		}
		row0 += b[k].nrows;
	}
	return ST_OK;
}

/* Whether mapping b0 changes the schema (columns to add or widen). */
static bool changes_schema(const struct st_schema *sc, const struct st_batch *b0)
{
	for (uint32_t i = 0; i < b0->ncols; i++) {
		int f = st_schema_find(sc, b0->names[i], strlen(b0->names[i]));
		if (f < 0 || sc->fields[f].type != b0->cols[i].type)
			return true;
	}
	return false;
}

/* A private copy of m (encoded and decoded again). */
static int meta_copy(const struct act_metadata *m, struct act_metadata **out,
		     struct st_err *err)
{
	struct st_buf b = {0};
	int rc = act_metadata_encode(m, &b, err);
	if (rc == ST_OK)
		rc = act_metadata_decode(b.data, b.len, out, err);
	st_buf_free(&b);
	return rc;
}

/* Check the write's columns (those of its first batch, b0) against the
 * table (DESIGN.md §7) and build the map; check_batches checks the rows.
 * Takes over ref (the table's metadata as read): m shares it while the
 * write leaves the schema as it is, else m->meta is a private copy. */
static int map_columns(const char *table, struct meta_ref *ref,
		       const struct st_batch *b0, bool merge, bool replace_schema,
		       struct colmap *m, struct st_err *err)
{
	int rc = ST_OK;
	memset(m, 0, sizeof *m);
	m->shared = ref;
	m->meta = ref->meta;
	if (replace_schema || changes_schema(&ref->meta->schema, b0)) {
		m->shared = NULL;
		m->meta = NULL;
		rc = meta_copy(ref->meta, &m->meta, err);
		store_meta_put(ref);
		if (rc != ST_OK)
			return rc;
		if (meta_grow(m->meta, b0->ncols) != ST_OK) {
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			goto out;
		}
	}
	m->field_of = malloc((b0->ncols + 1) * sizeof *m->field_of); /* each one set below */
	if (!m->field_of) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	struct st_schema *sc = &m->meta->schema;
	if (replace_schema) {
		/* overwrite_schema: the write's columns become the table's. A column
		 * of the same name and type keeps its field id and nullability. */
		struct st_field *old = sc->fields;
		uint32_t nold = sc->nfields;
		sc->fields = calloc(b0->ncols + 1, sizeof *sc->fields);
		sc->nfields = 0;
		if (!sc->fields) {
			sc->fields = old;
			sc->nfields = nold;
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			goto out;
		}
		for (uint32_t i = 0; i < b0->ncols && rc == ST_OK; i++) {
			const char *name = b0->names[i];
			size_t len = strlen(name);
			struct st_field *nf = &sc->fields[i];
			if (len == 0 || len > ST_NAME_MAX || !st_type_is_supported(b0->cols[i].type))
				rc = st_seterr(err, ST_ESCHEMA, "table '%s': cannot make column '%s' of type %s",
					       table, name, st_type_name(b0->cols[i].type));
			nf->type = b0->cols[i].type;
			nf->nullable = true;
			nf->id = 0;
			memcpy(nf->name, name, len < ST_NAME_MAX ? len + 1 : ST_NAME_MAX);
			for (uint32_t k = 0; k < nold; k++)
				if (!strcasecmp(old[k].name, name) && old[k].type == nf->type) {
					nf->id = old[k].id;
					nf->nullable = old[k].nullable;
				}
			if (!nf->id)
				nf->id = m->meta->next_field_id++;
			sc->nfields++;
		}
		free(old);
		for (uint32_t p = 0; rc == ST_OK && p < m->meta->npartition; p++) {
			bool found = false;
			for (uint32_t i = 0; i < sc->nfields; i++)
				found |= sc->fields[i].id == m->meta->partition[p];
			if (!found)
				rc = st_seterr(err, ST_ESCHEMA, "table '%s': overwrite_schema would drop a "
					       "partition column", table);
		}
		for (uint32_t k = 0; rc == ST_OK && k < m->meta->nconstraints; k++) {
			struct expr *e;
			struct st_err perr;
			if (expr_parse(m->meta->constraints[k].expr, sc, &e, &perr) != ST_OK)
				rc = st_seterr(err, ST_ESCHEMA, "table '%s': constraint '%s' (%s) does not fit "
					       "the new schema: drop it first", table,
					       m->meta->constraints[k].name, m->meta->constraints[k].expr);
			else
				expr_free(e);
		}
		if (rc != ST_OK)
			goto out;
		m->meta_changed = true;
	}
	for (uint32_t i = 0; i < b0->ncols; i++) {
		const char *name = b0->names[i];
		size_t len = strlen(name);
		for (uint32_t j = 0; j < i; j++)
			if (!strcasecmp(b0->names[j], name)) {
				rc = st_seterr(err, ST_ESCHEMA,
					       "table '%s': column '%s' appears twice in the write "
					       "(names are case-insensitive)", table, name);
				goto out;
			}
		int f = st_schema_find(sc, name, len);
		int type = b0->cols[i].type;
		if (f < 0) {
			if (!merge) {
				rc = st_seterr(err, ST_ESCHEMA,
					       "table '%s' has no column '%s' (found type %s in the write); "
					       "write with merge_schema to add it", table, name,
					       st_type_name(type));
				goto out;
			}
			if (len == 0 || len > ST_NAME_MAX || !st_type_is_supported(type) ||
			    sc->nfields >= ST_MAX_COLUMNS) {
				rc = st_seterr(err, ST_ESCHEMA, "table '%s': cannot add column '%s' of type %s",
					       table, name, st_type_name(type));
				goto out;
			}
			struct st_field *nf = &sc->fields[sc->nfields];
			memset(nf, 0, sizeof *nf);
			nf->id = m->meta->next_field_id++;
			nf->type = (uint8_t)type;
			nf->nullable = true;
			memcpy(nf->name, name, len + 1);
			f = (int)sc->nfields++;
			m->meta_changed = true;
		} else if (sc->fields[f].type != type) {
			if (!merge || !store_widens(sc->fields[f].type, type)) {
				rc = st_seterr(err, ST_ESCHEMA,
					       "table '%s': column '%s' expects type %s, the write has %s%s",
					       table, sc->fields[f].name, st_type_name(sc->fields[f].type),
					       st_type_name(type),
					       merge ? " (merge_schema widens only int32 to int64, int32/int64 "
						       "to float64 and date to timestamp)"
						     : "; write with merge_schema to widen the column");
				goto out;
			}
			sc->fields[f].type = (uint8_t)type; /* older segments are widened on read */
			m->meta_changed = true;
		}
		m->field_of[i] = f;
	}
	m->batch_of = malloc((sc->nfields + 1) * sizeof *m->batch_of);
	if (!m->batch_of) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t f = 0; f < sc->nfields; f++)
		m->batch_of[f] = -1;
	for (uint32_t i = 0; i < b0->ncols; i++)
		m->batch_of[m->field_of[i]] = (int)i;
	m->ncols = b0->ncols;
out:
	if (rc != ST_OK) {
		colmap_meta_fini(m);
		colmap_fini(m);
	}
	return rc;
}

/*
 * The segment a write produces, filled batch by batch. In memory
 * (`mem`: a small write, which may end up inline in LMDB) or streamed to
 * its path, one row group buffered at a time.
 */
struct appender {
	struct seg_writer *w;       /* the open writer */
	bool mem;                   /* in memory */
	struct st_vec *vecs;        /* per schema field, for one batch */
	uint8_t *zeros;             /* all-null column storage */
	size_t zlen;                /* its bytes */
	uint64_t rows;              /* rows appended */
};

static int app_open(st_store *s, const char *path, const struct colmap *m, bool mem,
		    struct appender *a, struct st_err *err)
{
	const struct st_schema *sc = &m->meta->schema;
	/* Small writes (in memory) encode on the caller's thread alone. */
	struct seg_writer_opts o = {.row_group_rows = s->opts.row_group_rows, .io = s->opts.io,
				    .threads = mem ? 1 : s->enc_threads};
	memset(a, 0, sizeof *a);
	a->mem = mem;
	if (!(a->vecs = malloc((sc->nfields + 1) * sizeof *a->vecs))) /* app_add sets them */
		return st_seterr(err, ST_ENOMEM, "out of memory");
	return mem ? seg_writer_open_mem(sc, &o, &a->w, err) : seg_writer_open(path, sc, &o, &a->w, err);
}

/* Append batches (already checked by check_batches) after the table's
 * CHECK constraints pass on them. */
static int app_add(struct appender *a, const struct colmap *m, const struct st_batch *b,
		   uint32_t nb, struct st_err *err)
{
	const struct st_schema *sc = &m->meta->schema;
	int rc = ST_OK;
	for (uint32_t k = 0; k < nb && rc == ST_OK; k++) {
		/* A zeroed buffer serves as an all-null column: validity 0, values 0
		 * (needed when the write leaves out some of the table's columns). */
		size_t need = ((size_t)b[k].nrows + 1) * 8;
		if (m->ncols < sc->nfields && need > a->zlen) {
			free(a->zeros);
			a->zlen = need;
			if (!(a->zeros = calloc(a->zlen, 1))) {
				a->zlen = 0;
				return st_seterr(err, ST_ENOMEM, "out of memory");
			}
		}
		for (uint32_t f = 0; f < sc->nfields; f++) {
			int i = m->batch_of[f];
			a->vecs[f] = i >= 0 ? b[k].cols[i]
				: (struct st_vec){.type = sc->fields[f].type, .n = b[k].nrows,
						  .validity = a->zeros, .data = a->zeros,
						  .offsets = (const uint32_t *)a->zeros, .bytes = a->zeros};
		}
		if ((rc = store_check_constraints(m->meta->name, m->meta, a->vecs, b[k].nrows, a->rows,
						   err)) == ST_OK &&
		    (rc = seg_writer_append(a->w, a->vecs, b[k].nrows, err)) == ST_OK)
			a->rows += b[k].nrows;
	}
	return rc;
}

/*
 * Finish the segment: fills info. A streamed one is durable at its path;
 * an in-memory one goes to *bytes (malloc'd; stage_finish decides where
 * it lives).
 */
static int app_close(struct appender *a, struct seg_file_info *info, uint8_t **bytes,
		     size_t *len, struct st_err *err)
{
	int rc;
	*bytes = NULL;
	*len = 0;
	if (!a->mem)
		rc = seg_writer_close(a->w, info, err);
	else
		rc = seg_writer_close_mem(a->w, info, bytes, len, err);
	a->w = NULL;
	return rc;
}

static void app_fini(struct appender *a)
{
	seg_writer_abort(a->w);
	free(a->vecs);
	free(a->zeros);
	memset(a, 0, sizeof *a);
}

/* An I/O error (EIO from write or fsync) is sticky, as a failed LMDB
 * commit is (DESIGN.md §10); a full disk is not. */
static int segment_failed(st_store *s, int rc, struct st_err *err)
{
	if (rc > 0 && rc != ENOSPC && rc != EDQUOT && rc != ENOMEM) {
		char m[ST_ERR_MSG_MAX];
		snprintf(m, sizeof m, "%s", err ? err->msg : strerror(rc));
		store_fail(s, err, "%s", m);
		rc = ST_EFAILED;
	}
	return rc;
}

/* ---- transactions ------------------------------------------------------ */

/* One table's staged write inside a transaction. */
struct staged {
	char table[STORE_NAME_MAX + 1]; /* table name */
	uint64_t tid;               /* table id at read time */
	uint64_t read_version;      /* head version when the write was staged */
	uint8_t isolation;          /* ACT_ISO_* from the table's properties */
	bool overwrite;             /* reads (and removes) every live file */
	bool compaction;            /* rewrites the live files, data unchanged */
	struct colmap m;            /* column map and the metadata after the write */
	uint64_t rows;              /* rows written */
	struct seg_file_info info;  /* the new segment, when rows > 0 */
	struct act_add add;         /* its add action */
	uint8_t *inl;               /* inline segment bytes, or NULL */
	size_t inl_len;             /* their size */
	char *path;                 /* segment file, when not inline (staged_fini frees) */
	bool written;               /* path exists and no commit references it yet */
	struct expr *pred;          /* replace-where predicate, or NULL */
	struct store_rewrite *rw;   /* files rewritten without the replaced rows */
	uint32_t nrw;               /* their count */
	uint64_t rows_removed;      /* rows replaced */
	uint64_t *read_files;       /* files read at read_version (overwrite, replace-where) */
	uint32_t nread;             /* their count */
	char *app_id;               /* idempotent writer id, or NULL */
	uint64_t app_version;       /* its version */
	bool noop;                  /* already committed under app_id */
	int64_t t0;                 /* when the write was staged (metrics) */
	struct st_buf crec;         /* its commit, encoded before it queues (prepare) */
	struct act_stamps cat;      /* where crec's version, LSN, time... are stamped */
	struct st_buf frec;         /* the new file's record and inline bytes (rows > 0) */
};

struct st_txn {
	st_store *s;                /* the store */
	struct staged *w;           /* staged writes, one per table */
	uint32_t n;                 /* their count */
};

/* The segment path of w's new file (w->tid, w->add.file_id). */
static int staged_path(st_store *s, struct staged *w, struct st_err *err)
{
	size_t len = strlen(s->dir) + 48; /* what store_seg_path needs */
	if (!(w->path = malloc(len)))
		return st_seterr(err, ST_ENOMEM, "out of memory");
	store_seg_path(s, w->tid, w->add.file_id, w->path, len);
	return ST_OK;
}

static void staged_fini(struct staged *w)
{
	if (w->written)
		unlink(w->path); /* no commit references it */
	free(w->path);
	colmap_meta_fini(&w->m);
	colmap_fini(&w->m);
	seg_file_info_fini(&w->info);
	free(w->add.field_ids);
	free(w->inl);
	free(w->read_files);
	free(w->app_id);
	expr_free(w->pred);
	for (uint32_t i = 0; i < w->nrw; i++)
		store_rewrite_fini(&w->rw[i]);
	free(w->rw);
	st_buf_free(&w->crec);
	st_buf_free(&w->frec);
}

int st_txn_begin(st_store *s, st_txn **out, struct st_err *err)
{
	if (!(*out = malloc(sizeof **out)))
		return st_seterr(err, ST_ENOMEM, "out of memory");
	**out = (st_txn){.s = s};
	return ST_OK;
}

void st_txn_abort(st_txn *t)
{
	if (!t)
		return;
	for (uint32_t i = 0; i < t->n; i++)
		staged_fini(&t->w[i]);
	free(t->w);
	free(t);
}

static uint8_t isolation_of(const struct act_metadata *m)
{
	for (uint32_t i = 0; i < m->nprops; i++)
		if (!strcasecmp(m->props[i].key, "isolation") &&
		    !strcasecmp(m->props[i].val, "WriteSerializable"))
			return ACT_ISO_WRITE_SERIALIZABLE;
	return ACT_ISO_SERIALIZABLE;
}

/* The recorded app version of app_id on table tid into *v (0 when the app
 * never committed). A failed lookup is an error, never "absent": taking it
 * for 0 would apply an idempotent write twice. */
static int app_version_of(st_store *s, MDB_txn *txn, uint64_t tid, const char *app_id,
			  uint64_t *v, struct st_err *err)
{
	uint8_t key[APP_KEY_MAX];
	MDB_val k = app_key(key, tid, app_id), d;
	int mrc = mdb_get(txn, s->dbi, &k, &d);
	*v = 0;
	if (mrc == MDB_NOTFOUND)
		return ST_OK;
	if (mrc != 0)
		return store_lmdb_err(err, mrc, "reading the app version of an idempotent write");
	if (d.mv_size != 8)
		return st_seterr(err, ST_ECORRUPT,
				 "table id %llu: the app version record of '%s' is damaged (%zu bytes, "
				 "expected 8)", (unsigned long long)tid, app_id, d.mv_size);
	*v = st_get_le64(d.mv_data);
	return ST_OK;
}

/* Every new row must match the predicate it replaces. */
static int rows_match(const struct staged *w, const struct st_batch *b, uint32_t nb,
		      uint64_t row_base, struct st_err *err)
{
	const struct st_schema *sc = &w->m.meta->schema;
	int rc = ST_OK;
	uint64_t row0 = row_base;
	struct st_vec *vecs = calloc(sc->nfields, sizeof *vecs);
	uint32_t *sel = NULL;
	uint8_t *zeros = NULL;
	for (uint32_t k = 0; k < nb && rc == ST_OK; k++) {
		free(sel);
		free(zeros);
		sel = malloc(((size_t)b[k].nrows + 1) * 4);
		zeros = calloc(((size_t)b[k].nrows + 1) * 8, 1);
		if (!vecs || !sel || !zeros) {
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			break;
		}
		for (uint32_t f = 0; f < sc->nfields; f++)
			vecs[f] = w->m.batch_of[f] >= 0 ? b[k].cols[w->m.batch_of[f]]
				  : (struct st_vec){.type = sc->fields[f].type, .n = b[k].nrows,
						    .validity = zeros, .data = zeros,
						    .offsets = (const uint32_t *)zeros, .bytes = zeros};
		uint32_t n;
		if ((rc = expr_eval(w->pred, vecs, b[k].nrows, sel, &n, err)) != ST_OK)
			break;
		if (n < b[k].nrows) {
			uint32_t bad = 0;
			while (bad < n && sel[bad] == bad)
				bad++;
			rc = st_seterr(err, ST_ESCHEMA,
				       "table '%s': row %llu of the write does not match the replace-where "
				       "predicate, so it would not be replaced by this write", w->table,
				       (unsigned long long)(row0 + bad));
		}
		row0 += b[k].nrows;
	}
	free(vecs);
	free(sel);
	free(zeros);
	return rc;
}

/* Replace-where: parse the predicate, and for each live file that may hold
 * matching rows, remove it (all rows match) or rewrite it without them.
 * The new rows are checked against the predicate as they come (stage_add). */
static int stage_replace(st_store *s, MDB_txn *txn, struct staged *w, const char *pred,
			 struct st_err *err)
{
	int rc;
	struct file_rec *live = NULL;
	uint32_t nlive = 0;
	struct st_col_stats *st = NULL;
	const struct st_schema *sc = &w->m.meta->schema;
	if ((rc = expr_parse(pred, sc, &w->pred, err)) != ST_OK ||
	    (rc = store_files_at(s, txn, w->tid, STORE_LIVE, &live, &nlive, err)) != ST_OK)
		goto out;
	st = calloc(sc->nfields, sizeof *st);
	w->read_files = calloc(nlive + 1, sizeof *w->read_files);
	w->rw = calloc(nlive + 1, sizeof *w->rw);
	if (!st || !w->read_files || !w->rw) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < nlive && rc == ST_OK; i++) {
		const struct file_rec f = live[i];
		store_file_stats(sc, &f, st);
		enum expr_match m = expr_may_match(w->pred, st);
		if (m == EXPR_MATCH_ALL) {
			w->read_files[w->nread++] = f.fid;
			w->rows_removed += f.rows;
		} else if (m == EXPR_MATCH_SOME) {
			uint64_t gone = 0;
			struct store_rewrite *r = &w->rw[w->nrw];
			rc = store_rewrite_without(s, w->tid, &f, sc, w->pred, r, &gone, err);
			if (rc == ST_OK && gone > 0) {
				w->read_files[w->nread++] = f.fid;
				w->rows_removed += gone;
				if (r->add.rows > 0)
					w->nrw++;
			} else if (rc == ST_OK) {
				store_rewrite_fini(r); /* nothing matched after all: keep the file */
			}
		}
	}
out:
	file_recs_free(live, nlive);
	free(st);
	return rc;
}

int st_table_compact(st_store *s, const char *table, struct st_commit_result *res,
		     struct st_err *err)
{
	int rc = ST_OK;
	st_scan *sc = NULL;
	st_txn *t = NULL;
	struct seg_writer *w = NULL;
	memset(res, 0, sizeof *res);
	if ((rc = st_txn_begin(s, &t, err)) != ST_OK)
		return rc;
	struct staged *g = calloc(1, sizeof *g);
	if (!g) {
		st_txn_abort(t);
		return st_seterr(err, ST_ENOMEM, "out of memory");
	}
	t->w = g;
	t->n = 1;
	snprintf(g->table, sizeof g->table, "%s", table);
	g->compaction = true;
	g->t0 = store_now_us();
	if ((rc = st_scan_open(s, table, (struct st_at){ST_AT_LATEST, 0}, NULL, 0, NULL, &sc, err)) != ST_OK)
		goto out;
	uint64_t rows = 0;
	if ((rc = store_scan_files(sc, &g->read_files, &g->nread, &rows)) != ST_OK) {
		rc = st_seterr(err, rc, "out of memory");
		goto out;
	}
	/* The metadata the scan read is the head's: compaction changes none. */
	MDB_txn *rt = NULL;
	struct table_head h = {0};
	int mrc = store_read_begin(s, &rt);
	if (mrc != 0)
		rc = store_lmdb_err(err, mrc, "compacting: reading the table head");
	else
		rc = head_get(s, rt, table, &h, err);
	store_read_end(s, rt);
	if (rc != ST_OK || h.version != st_scan_version(sc)) {
		head_fini(&h);
		if (rc == ST_OK)
			rc = st_seterr(err, ST_ECONFLICT, "table '%s' moved while compaction started; retry",
				       table);
		goto out;
	}
	g->tid = h.tid;
	g->read_version = h.version;
	g->isolation = isolation_of(h.meta);
	g->m.meta = h.meta;
	h.meta = NULL;
	head_fini(&h);
	if (g->nread < 2 && rows > 0) {
		/* One file (or none) is already compact: nothing to commit. */
		bool inline_left = false;
		for (uint32_t i = 0; i < store_scan_nfiles(sc); i++)
			inline_left |= store_scan_file_inline(sc, i);
		if (!inline_left) {
			res->noop = true;
			res->version = g->read_version;
			goto out;
		}
	}
	if (g->nread == 0) {
		res->noop = true;
		res->version = g->read_version;
		goto out;
	}
	struct act_add *a = &g->add;
	a->file_id = store_next_fid(s);
	if ((rc = staged_path(s, g, err)) != ST_OK)
		goto out;
	struct seg_writer_opts o = {.row_group_rows = s->opts.row_group_rows, .io = s->opts.io,
				    .threads = s->enc_threads};
	if ((rc = seg_writer_open(g->path, &g->m.meta->schema, &o, &w, err)) != ST_OK)
		goto out;
	const struct st_scan_batch *b;
	while ((rc = st_scan_next(sc, &b, err)) == ST_OK && b)
		if ((rc = seg_writer_append(w, b->cols, b->rows, err)) != ST_OK)
			break;
	if (rc != ST_OK)
		goto out;
	rc = seg_writer_close(w, &g->info, err);
	w = NULL;
	if (rc != ST_OK)
		goto out;
	g->written = true;
	g->rows = g->info.rows;
	if ((rc = store_add_from_info(a, &g->info, &g->m.meta->schema, false, err)) != ST_OK)
		goto out;
	st_scan_close(sc);
	sc = NULL;
	rc = st_txn_commit(t, res, err);
	t = NULL;
	if (rc == ST_OK)
		res->rows = 0; /* no rows were added: the same rows, rearranged */
out:
	seg_writer_abort(w);
	st_scan_close(sc);
	st_txn_abort(t);
	return rc;
}

/*
 * A staged write is built in three steps, so that a load can stream:
 * stage_begin (read the head, map the columns from the first batch, stage
 * what an overwrite or replace-where removes, open the segment),
 * stage_add (check and append rows, any number of times), stage_finish
 * (close the segment; the write then counts in t). The entry being built
 * is t->w[t->n]; stage_fail discards it.
 */
static int stage_begin(st_txn *t, const char *table, const struct st_batch *hdr,
		       const struct st_write_opts *opts, bool mem, struct appender *app,
		       struct st_err *err)
{
	static const struct st_write_opts defaults = {0};
	st_store *s = t->s;
	int rc = ST_OK, mrc;
	MDB_txn *txn = NULL;
	struct table_head h = {0};
	struct meta_ref *ref = NULL;
	memset(app, 0, sizeof *app);
	/* The entry exists (zeroed) from here, so stage_fail always has one. */
	struct staged *grown = realloc(t->w, (t->n + 1) * sizeof *grown);
	if (!grown)
		return st_seterr(err, ST_ENOMEM, "out of memory");
	t->w = grown;
	struct staged *w = &t->w[t->n];
	memset(w, 0, sizeof *w);
	if (!opts)
		opts = &defaults;
	if (opts->overwrite_schema && opts->mode != ST_WRITE_OVERWRITE)
		return st_seterr(err, ST_EINVAL,
				 "table '%s': overwrite_schema goes only with a full overwrite", table);
	if (opts->replace_where && opts->mode != ST_WRITE_APPEND)
		return st_seterr(err, ST_EINVAL, "table '%s': replace-where goes with append mode", table);
	if (opts->app_id && (!opts->app_id[0] || strlen(opts->app_id) > 255))
		return st_seterr(err, ST_EINVAL, "app id must be 1 to 255 bytes");
	for (uint32_t i = 0; i < t->n; i++)
		if (!strcmp(t->w[i].table, table))
			return st_seterr(err, ST_EINVAL,
					 "table '%s' is already written in this transaction", table);
	size_t tlen = strnlen(table, sizeof w->table - 1); /* longer: head_get refuses it */
	memcpy(w->table, table, tlen);
	w->table[tlen] = '\0';
	w->t0 = store_now_us();
	w->overwrite = opts->mode == ST_WRITE_OVERWRITE;
	if ((mrc = store_read_begin(s, &txn)) != 0) {
		rc = store_lmdb_err(err, mrc, "writing");
		goto out;
	}
	if ((rc = store_meta_get(s, txn, table, &h, &ref, err)) != ST_OK)
		goto out;
	w->tid = h.tid;
	w->read_version = h.version;
	w->isolation = isolation_of(ref->meta);
	if (opts->app_id) {
		if (!(w->app_id = strdup(opts->app_id))) {
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			goto out;
		}
		w->app_version = opts->app_version;
		uint64_t have;
		if ((rc = app_version_of(s, txn, h.tid, opts->app_id, &have, err)) != ST_OK)
			goto out;
		w->noop = have >= opts->app_version;
		if (w->noop)
			goto out; /* already committed: nothing to write */
	}
	rc = map_columns(table, ref, hdr, opts->merge_schema, opts->overwrite_schema, &w->m, err);
	ref = NULL; /* w->m has it now */
	if (rc != ST_OK)
		goto out;
	if (w->overwrite && (rc = store_live_files(s, txn, h.tid, &w->read_files, &w->nread, err)) != ST_OK)
		goto out;
	if (opts->replace_where &&
	    (rc = stage_replace(s, txn, w, opts->replace_where, err)) != ST_OK)
		goto out;
	store_read_end(s, txn);
	txn = NULL;
	w->add.file_id = store_next_fid(s);
	/* An in-memory segment gets a path only if it turns out too big to
	 * live inline (stage_finish). */
	if (!mem && (rc = staged_path(s, w, err)) != ST_OK)
		goto out;
	if ((rc = app_open(s, w->path, &w->m, mem, app, err)) != ST_OK)
		rc = segment_failed(s, rc, err);
out:
	store_read_end(s, txn);
	store_meta_put(ref);
	return rc;
}

static int stage_add(st_txn *t, struct appender *app, const struct st_batch *b, uint32_t nb,
		     struct st_err *err)
{
	struct staged *w = &t->w[t->n];
	int rc;
	if (w->noop)
		return ST_OK;
	if ((rc = check_batches(w->table, &w->m, b, nb, app->rows, err)) != ST_OK ||
	    (w->pred && (rc = rows_match(w, b, nb, app->rows, err)) != ST_OK))
		return rc;
	rc = app_add(app, &w->m, b, nb, err);
	return rc < 0 ? rc : segment_failed(t->s, rc, err);
}

static int stage_finish(st_txn *t, struct appender *app, struct st_err *err)
{
	struct staged *w = &t->w[t->n];
	int rc = ST_OK;
	if (!w->noop) {
		w->rows = app->rows;
		if ((rc = app_close(app, &w->info, &w->inl, &w->inl_len, err)) != ST_OK)
			return segment_failed(t->s, rc, err);
		if (w->inl && w->inl_len > t->s->opts.inline_max) {
			/* Too big to live inline in LMDB: a file, made durable now. */
			if ((rc = staged_path(t->s, w, err)) == ST_OK)
				rc = store_write_file(t->s, w->path, w->inl, w->inl_len, err);
			free(w->inl);
			w->inl = NULL;
			if (rc != ST_OK)
				return segment_failed(t->s, rc, err);
		}
		/* A small segment lives inline in LMDB: no fsync besides LMDB's
		 * own commit. */
		w->written = !w->inl;
		if (w->rows == 0) { /* nothing to add (an overwrite with no rows empties the table) */
			if (w->written)
				unlink(w->path);
			w->written = false;
		} else {
			w->add.is_inline = w->inl != NULL;
			rc = store_add_from_info(&w->add, &w->info, &w->m.meta->schema, true, err);
		}
	}
	app_fini(app);
	if (rc == ST_OK)
		t->n++;
	return rc;
}

static void stage_fail(st_txn *t, struct appender *app)
{
	app_fini(app);
	staged_fini(&t->w[t->n]);
}

int st_txn_write(st_txn *t, const char *table, const struct st_batch *batches, uint32_t nb,
		 const struct st_write_opts *opts, struct st_err *err)
{
	struct appender app;
	uint64_t rows = 0;
	if (nb == 0 || !batches)
		return st_seterr(err, ST_EINVAL, "table '%s': a write needs at least one batch", table);
	for (uint32_t k = 0; k < nb; k++)
		rows += batches[k].nrows;
	int rc = stage_begin(t, table, &batches[0], opts, rows <= STORE_INLINE_ROWS, &app, err);
	if (rc == ST_OK)
		rc = stage_add(t, &app, batches, nb, err);
	if (rc == ST_OK)
		rc = stage_finish(t, &app, err);
	if (rc != ST_OK)
		stage_fail(t, &app);
	return rc;
}

/* ---- streaming loads ---------------------------------------------------- */

struct st_load {
	st_txn *t;                  /* its transaction (one staged write) */
	struct appender app;        /* the segment being streamed */
	bool failed;                /* a step failed: only abort is left */
};

int st_load_begin(st_store *s, const char *table, const struct st_batch *header,
		  const struct st_write_opts *opts, st_load **out, struct st_err *err)
{
	st_load *l = calloc(1, sizeof *l);
	int rc;
	*out = NULL;
	if (!l)
		return st_seterr(err, ST_ENOMEM, "out of memory");
	if ((rc = st_txn_begin(s, &l->t, err)) != ST_OK) {
		free(l);
		return rc;
	}
	if ((rc = stage_begin(l->t, table, header, opts, false, &l->app, err)) != ST_OK) {
		stage_fail(l->t, &l->app);
		st_txn_abort(l->t);
		free(l);
		return rc;
	}
	*out = l;
	return ST_OK;
}

int st_load_write(st_load *l, const struct st_batch *b, uint32_t nb, struct st_err *err)
{
	if (l->failed)
		return st_seterr(err, ST_EINVAL, "this load already failed; abort it");
	int rc = stage_add(l->t, &l->app, b, nb, err);
	l->failed = rc != ST_OK;
	return rc;
}

uint64_t st_load_rows(const st_load *l)
{
	return l->app.rows;
}

int st_load_commit(st_load *l, struct st_commit_result *res, struct st_err *err)
{
	int rc = l->failed ? st_seterr(err, ST_EINVAL, "this load already failed; abort it")
			   : stage_finish(l->t, &l->app, err);
	if (rc != ST_OK) {
		st_load_abort(l);
		return rc;
	}
	rc = st_txn_commit(l->t, res, err); /* frees the transaction */
	free(l);
	return rc;
}

void st_load_abort(st_load *l)
{
	if (!l)
		return;
	if (l->t && l->t->n == 0)
		stage_fail(l->t, &l->app); /* still being built */
	st_txn_abort(l->t);
	free(l);
}

static bool has_file(const uint64_t *f, uint32_t n, uint64_t fid)
{
	for (uint32_t i = 0; i < n; i++)
		if (f[i] == fid)
			return true;
	return false;
}

/*
 * The conflict rules of DESIGN.md §6, in order, against every commit that
 * landed on the table after w's read version. Returns ST_ECONFLICT naming
 * the winning version and the rule.
 */
static int check_conflicts(st_store *s, MDB_txn *txn, const struct staged *w,
			   const struct table_head *h, struct st_err *err)
{
	int rc = ST_OK;
	/* A blind append (reads nothing, removes nothing, no app id) can only
	 * lose to a metadata change, which the head records: no decoding. */
	if (!w->overwrite && !w->pred && !w->app_id && !w->compaction &&
	    h->meta_version <= w->read_version)
		return ST_OK;
	for (uint64_t v = w->read_version + 1; v <= h->version && rc == ST_OK; v++) {
		uint8_t key[COMMIT_KEY_LEN];
		commit_key(key, h->tid, v);
		MDB_val k = {sizeof key, key}, d;
		struct act_commit *c = NULL;
		int mrc = mdb_get(txn, s->dbi, &k, &d);
		if (mrc != 0)
			return store_lmdb_err(err, mrc, "checking conflicts");
		if ((rc = act_decode(d.mv_data, d.mv_size, &c, err)) != ST_OK)
			return rc;
		const char *rule = NULL;
		bool blind_append = c->nremove == 0 && !c->metadata;
		if (c->metadata) {
			rule = "it changed the table's metadata";
		} else {
			for (uint32_t i = 0; !rule && w->app_id && i < c->ntxn; i++)
				if (!strcmp(c->txns[i].app_id, w->app_id))
					rule = "it committed for the same app id";
			bool adds_data = false;
			for (uint32_t i = 0; i < c->nadd; i++)
				adds_data |= c->adds[i].data_change;
			/* Overwrite reads the whole table, replace-where the rows of its
			 * predicate: new data there is something it read, except blind
			 * appends under WriteSerializable. */
			bool counts = w->isolation == ACT_ISO_SERIALIZABLE || !blind_append;
			if (!rule && w->overwrite && adds_data && counts)
				rule = "it added rows this write read (Serializable)";
			for (uint32_t i = 0; !rule && w->pred && counts && i < c->nadd; i++) {
				struct file_rec f = {.rows = c->adds[i].rows, .ncols = c->adds[i].ncols,
						     .field_ids = c->adds[i].field_ids,
						     .stats = c->adds[i].stats};
				const struct st_schema *sc = &w->m.meta->schema;
				struct st_col_stats *st = calloc(sc->nfields + 1, sizeof *st);
				uint8_t *types = calloc(f.ncols + 1, 1);
				if (!st || !types) {
					free(st);
					free(types);
					act_commit_free(c);
					return st_seterr(err, ST_ENOMEM, "out of memory");
				}
				for (uint32_t col = 0; col < f.ncols; col++)
					types[col] = c->adds[i].stats[col].min.type;
				f.types = types;
				store_file_stats(sc, &f, st);
				if (c->adds[i].data_change && expr_may_match(w->pred, st) != EXPR_MATCH_NONE)
					rule = "it added rows that match this write's replace-where predicate";
				free(st);
				free(types);
			}
			for (uint32_t i = 0; !rule && i < c->nremove; i++)
				if (has_file(w->read_files, w->nread, c->removes[i].file_id))
					rule = "it removed a file this write read";
		}
		if (rule)
			rc = st_seterr(err, ST_ECONFLICT,
				       "table '%s': conflict with version %llu, committed after this "
				       "write read version %llu: %s; retry the write",
				       w->table, (unsigned long long)v,
				       (unsigned long long)w->read_version, rule);
		act_commit_free(c);
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
		rm[i] = (struct act_remove){w->read_files[i], !w->compaction};
	uint32_t nadd = 0;
	if (w->rows > 0)
		adds[nadd++] = w->add;
	for (uint32_t i = 0; i < w->nrw; i++)
		adds[nadd++] = w->rw[i].add;
	struct act_kv params[2] = {{"mode", w->overwrite ? "overwrite" : w->pred ? "replace-where" : "append"},
				   {"predicate", ""}};
	char ptext[1024] = "";
	if (w->pred) {
		expr_format(w->pred, &w->m.meta->schema, ptext, sizeof ptext);
		params[1].val = ptext;
	}
	struct act_txn tx = {w->app_id, w->app_version};
	struct act_commit c = {.table_id = w->tid};
	c.metadata = w->m.meta_changed ? w->m.meta : NULL;
	c.adds = adds;
	c.nadd = nadd;
	c.removes = rm;
	c.nremove = w->nread;
	c.txns = &tx;
	c.ntxn = w->app_id != NULL;
	c.info.operation = w->compaction ? "COMPACT" : "WRITE";
	c.info.params = params;
	c.info.nparams = w->pred ? 2 : 1;
	c.info.read_version = (int64_t)w->read_version;
	c.info.isolation = w->isolation;
	c.info.rows_added = w->compaction ? 0 : w->rows;
	c.info.rows_removed = w->rows_removed;
	c.info.files_added = nadd;
	c.info.bytes_added = w->info.size;
	c.info.files_removed = w->nread;
	w->crec.len = 0;
	if ((rc = act_encode(&c, &w->crec, &w->cat, err)) != ST_OK || w->rows == 0)
		goto out;
	const struct act_add *a = &w->add;
	uint8_t types[ST_MAX_COLUMNS];
	for (uint32_t i = 0; i < a->ncols; i++)
		types[i] = w->m.meta->schema.fields[i].type;
	struct file_rec f = {.fid = a->file_id, .removed = STORE_LIVE, .size = a->size,
			     .rows = a->rows, .crc = a->crc, .flags = 2u | (w->inl ? 1u : 0u),
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
					  .flags = 2u, .ncols = a->ncols, .field_ids = a->field_ids,
					  .types = w->rw[j].types, .stats = a->stats};
		adds[nadd++] = (struct store_add){.fid = a->file_id, .rec = &rw[j]};
	}
	struct store_change ch = {.enc = w->crec.data, .len = w->crec.len, .at = &w->cat,
				  .metadata = w->m.meta_changed,
				  .duration_us = (uint64_t)(store_now_us() - w->t0),
				  .removes = w->read_files, .nremove = w->nread, .adds = adds,
				  .nadd = nadd, .commit_cur = gcur->commits, .file_cur = gcur->files};
	if ((rc = store_commit_apply(s, txn, h, &ch, err)) != ST_OK)
		goto out;
	if (w->app_id) {
		uint8_t ver[8];
		st_put_le64(ver, w->app_version);
		MDB_val k = app_key(key, h->tid, w->app_id), v = {8, ver};
		if ((mrc = mdb_put(txn, s->dbi, &k, &v, 0)) != 0) {
			rc = store_lmdb_err(err, mrc, "recording an app version");
			goto out;
		}
	}
	res->version = h->version;
	res->time_us = h->time_us;
	res->rows = w->rows;
	res->lsn = h->lsn;
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
		    (rc = app_version_of(s, txn, h->tid, w->app_id, &have, err)) != ST_OK)
			break;
		noop[i] = w->noop || (w->app_id && have >= w->app_version);
		if (!noop[i])
			rc = check_conflicts(s, txn, w, h, err);
	}
	for (uint32_t i = 0; i < t->n && rc == ST_OK; i++) {
		struct staged *w = &t->w[i];
		struct table_head *h = &hc->h[at[i]];
		if (noop[i]) {
			res[i] = (struct st_commit_result){.version = h->version,
							   .time_us = h->time_us, .noop = true};
			continue;
		}
		*dirty = true;
		hc->dirty[at[i]] = true;
		rc = apply(s, txn, gcur, w, h, &res[i], err);
		if (rc == ST_OK && w->m.meta_changed)
			h->meta = w->m.meta; /* borrowed, see head_cache_reset */
	}
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
	uint32_t missing = s->gc_nprev > s->gc_nback ? s->gc_nprev - s->gc_nback : 0;
	if (!missing)
		return true;
	uint64_t gap = s->gc_commit_ns / 4;
	struct timespec now, until = ts_add(s->gc_back_at, gap);
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (ts_before(deadline, &until))
		until = *deadline;
	if (!ts_before(&now, &until))
		return false;
	s->gc_want = missing < GC_GATHER_STEP ? missing : GC_GATHER_STEP;
	s->gc_queued = 0;
	s->gc_gathering = true;
	int r = 0;
	while (r == 0 && s->gc_queued < s->gc_want)
		r = pthread_cond_timedwait(&s->gc_arrive, &s->gc_lock, &until);
	s->gc_gathering = false;
	if (r != ETIMEDOUT)
		return true;
	/* Timed out: go on only if one of them came back meanwhile. */
	until = ts_add(s->gc_back_at, gap);
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
	deadline = ts_add(deadline, s->gc_commit_ns);
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
				pthread_mutex_lock(&s->gc_lock);
				if (!s->gc_head && gather)
					gather = gc_gather(s, &deadline);
				for (struct gc_entry *q = s->gc_head; q && size < GC_MAX_GROUP;
				     q = s->gc_head) {
					s->gc_head = q->next;
					q->next = NULL;
					tail = tail->next = q;
					size++;
				}
				if (!s->gc_head)
					s->gc_tail = NULL;
				pthread_mutex_unlock(&s->gc_lock);
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
			grc = store_commit_txn(s, txn, "committing", &gerr);
			txn = NULL;
			clock_gettime(CLOCK_MONOTONIC, &c1);
			uint64_t took = (uint64_t)(c1.tv_sec - c0.tv_sec) * 1000000000u +
					(uint64_t)c1.tv_nsec - (uint64_t)c0.tv_nsec;
			s->gc_commit_ns = took < GC_GATHER_MAX_NS ? took : GC_GATHER_MAX_NS;
		}
		for (struct gc_entry *e = batch; e; e = e->next) {
			if (e->decided)
				continue;
			e->decided = true;
			if (grc != ST_OK) {
				e->rc = st_seterr(e->err, grc, "%s", gerr.msg);
				memset(e->res, 0, e->t->n * sizeof *e->res);
				continue;
			}
			/* From here its files are never unlinked by us: if the LMDB
			 * commit failed after all, recovery removes them as orphans. */
			for (uint32_t i = 0; i < e->t->n; i++) {
				struct staged *w = &e->t->w[i];
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
	struct gc_entry me = {.t = t, .res = res, .err = err};
	for (uint32_t i = 0; i < t->n; i++) {
		int rc = t->w[i].noop ? ST_OK : prepare(&t->w[i], err);
		if (rc != ST_OK) {
			memset(res, 0, t->n * sizeof *res);
			st_txn_abort(t);
			return rc;
		}
	}
	sem_init(&me.wake, 0, 0);
	pthread_mutex_lock(&s->gc_lock);
	if (s->gc_tail)
		s->gc_tail->next = &me;
	else
		s->gc_head = &me;
	s->gc_tail = &me;
	if (gc_my_store == s && gc_my_group == s->gc_groups) {
		s->gc_nback++; /* one of the last group, back */
		clock_gettime(CLOCK_MONOTONIC, &s->gc_back_at);
	}
	if (s->gc_gathering && ++s->gc_queued >= s->gc_want)
		pthread_cond_signal(&s->gc_arrive);
	/* No leader means an empty queue: then I lead at once. Otherwise I
	 * sleep on my own semaphore (no lock to take again on waking) until
	 * my group is done or leadership is handed to me. */
	bool lead = !s->gc_leader;
	s->gc_leader = true;
	pthread_mutex_unlock(&s->gc_lock);
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
	pthread_mutex_lock(&s->gc_lock);
	for (int round = 1;; round++) {
		/* Lead: take the queue (at most GC_MAX_GROUP) as the group. */
		struct gc_entry *batch = s->gc_head, *last = batch, *wake[GC_MAX_GROUP];
		for (uint32_t n = 1; n < GC_MAX_GROUP && last->next; n++)
			last = last->next;
		s->gc_head = last->next;
		if (!s->gc_head)
			s->gc_tail = NULL;
		last->next = NULL;
		pthread_mutex_unlock(&s->gc_lock);
		lead_group(s, batch);
		/* Publish: the members form a binary tree in which each one, once
		 * woken, wakes its two children (log-depth wake-up, one post from
		 * here); everything they read is written before that post. */
		uint32_t n = 0;
		uint64_t group = s->gc_groups + 1; /* only the leader changes it */
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
		pthread_mutex_lock(&s->gc_lock);
		/* The next group's leader waits for these n (gc_gather); they
		 * count as back when they queue again (group numbers). */
		s->gc_groups = group;
		s->gc_nprev = n;
		s->gc_nback = 0;
		clock_gettime(CLOCK_MONOTONIC, &s->gc_back_at);
		if (n)
			sem_post(&wake[0]->wake);
		if (!s->gc_head) {
			s->gc_leader = false;
			break;
		}
		if (round == GC_LEAD_ROUNDS) { /* pass leadership on: woken, not done */
			sem_post(&s->gc_head->wake);
			break;
		}
	}
	pthread_mutex_unlock(&s->gc_lock);
out:
	sem_destroy(&me.wake);
	st_txn_abort(t);
	return me.rc;
}

int st_write(st_store *s, const char *table, const struct st_batch *batches, uint32_t nb,
	     const struct st_write_opts *opts, struct st_commit_result *res, struct st_err *err)
{
	st_txn *t;
	int rc;
	memset(res, 0, sizeof *res);
	if ((rc = st_txn_begin(s, &t, err)) != ST_OK)
		return rc;
	if ((rc = st_txn_write(t, table, batches, nb, opts, err)) != ST_OK) {
		st_txn_abort(t);
		return rc;
	}
	return st_txn_commit(t, res, err);
}
