/*
 * daemon/write.c — st_write: append and overwrite (issue 3 §4, §6).
 *
 * Order (DESIGN.md §4): check every batch against the schema → write the
 * segment (temp file, fsync, rename, directory fsync: format/segment.h) →
 * one LMDB write transaction appends the commit, the file records and the
 * new head → return. A refused batch writes nothing; a failed LMDB commit
 * removes the new segment and makes the store refuse writes until reopen.
 *
 * Writers are serialized by the store's write_lock (group commit and
 * optimistic conflict checks are the next step, issue 3 §5).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <limits.h>

#include "daemon/store_int.h"
#include "format/segment.h"

/* How the columns of the write map onto the (possibly evolved) schema. */
struct colmap {
	struct act_metadata *meta; /* metadata after this write (owned, may be new) */
	bool meta_changed;         /* merge_schema added columns */
	int *field_of;             /* batch column -> schema field index */
	int *batch_of;             /* schema field -> batch column, -1 if missing */
};

static void colmap_fini(struct colmap *m)
{
	free(m->field_of);
	free(m->batch_of);
	m->field_of = m->batch_of = NULL;
}

/* Deep copy of metadata with room for `extra` more fields. */
static int meta_dup(const struct act_metadata *src, uint32_t extra, struct act_metadata **out)
{
	struct st_buf b = {0};
	int rc = act_metadata_encode(src, &b, NULL);
	if (rc == ST_OK)
		rc = act_metadata_decode(b.data, b.len, out, NULL);
	st_buf_free(&b);
	if (rc != ST_OK)
		return rc;
	struct st_field *f = realloc((*out)->schema.fields,
				     ((*out)->schema.nfields + extra) * sizeof *f);
	if (!f) {
		act_metadata_free(*out);
		*out = NULL;
		return ST_ENOMEM;
	}
	(*out)->schema.fields = f;
	return ST_OK;
}

/* Check the batches against the table (DESIGN.md §7) and build the map. */
static int map_columns(const char *table, const struct act_metadata *meta,
		       const struct st_batch *b, uint32_t nb, bool merge, struct colmap *m,
		       struct st_err *err)
{
	int rc = ST_OK;
	const struct st_batch *b0 = &b[0];
	memset(m, 0, sizeof *m);
	m->field_of = calloc(b0->ncols + 1, sizeof *m->field_of);
	if (!m->field_of || (rc = meta_dup(meta, b0->ncols, &m->meta)) != ST_OK) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	struct st_schema *sc = &m->meta->schema;
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
			rc = st_seterr(err, ST_ESCHEMA,
				       "table '%s': column '%s' expects type %s, the write has %s%s",
				       table, sc->fields[f].name, st_type_name(sc->fields[f].type),
				       st_type_name(type),
				       merge ? " (type widening is not supported yet)" : "");
			goto out;
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
	/* Every batch has the same columns; NOT NULL holds in every row. */
	uint64_t row0 = 0;
	for (uint32_t k = 0; k < nb; k++) {
		if (b[k].ncols != b0->ncols) {
			rc = st_seterr(err, ST_EINVAL, "table '%s': batch %u has %u columns, batch 0 has %u",
				       table, k, b[k].ncols, b0->ncols);
			goto out;
		}
		for (uint32_t i = 0; i < b0->ncols; i++)
			if (strcasecmp(b[k].names[i], b0->names[i]) || b[k].cols[i].type != b0->cols[i].type ||
			    b[k].cols[i].n != b[k].nrows) {
				rc = st_seterr(err, ST_EINVAL,
					       "table '%s': batch %u column %u ('%s') differs from batch 0 "
					       "or has the wrong row count", table, k, i, b[k].names[i]);
				goto out;
			}
		for (uint32_t f = 0; f < sc->nfields; f++) {
			if (sc->fields[f].nullable)
				continue;
			int i = m->batch_of[f];
			if (i < 0) {
				rc = st_seterr(err, ST_ESCHEMA,
					       "table '%s': column '%s' is NOT NULL (type %s) and missing "
					       "from the write", table, sc->fields[f].name,
					       st_type_name(sc->fields[f].type));
				goto out;
			}
			for (uint32_t r = 0; r < b[k].nrows; r++)
				if (!st_vec_is_valid(&b[k].cols[i], r)) {
					rc = st_seterr(err, ST_ESCHEMA,
						       "table '%s': column '%s' is NOT NULL (type %s) but "
						       "row %llu of the write is null", table,
						       sc->fields[f].name, st_type_name(sc->fields[f].type),
						       (unsigned long long)(row0 + r));
					goto out;
				}
		}
		row0 += b[k].nrows;
	}
out:
	if (rc != ST_OK) {
		act_metadata_free(m->meta);
		m->meta = NULL;
		colmap_fini(m);
	}
	return rc;
}

/* Write the batches as one segment at path; fills info. */
/*
 * Write the batches as one segment. A small write (at most
 * STORE_INLINE_ROWS rows) is encoded in memory; when it comes out at most
 * inline_max bytes, *inl receives the bytes (the caller stores them in
 * LMDB: no fsync besides LMDB's own commit), else they are written to path
 * durably. Larger writes stream to path. Fills info.
 */
static int write_segment(st_store *s, const char *path, const struct colmap *m,
			 const struct st_batch *b, uint32_t nb, uint64_t rows,
			 struct seg_file_info *info, uint8_t **inl, size_t *inl_len,
			 struct st_err *err)
{
	int rc = ST_OK;
	const struct st_schema *sc = &m->meta->schema;
	struct seg_writer *w = NULL;
	struct st_vec *vecs = calloc(sc->nfields, sizeof *vecs);
	uint8_t *zeros = NULL;
	size_t zlen = 0;
	struct seg_writer_opts o = {.row_group_rows = s->opts.row_group_rows};
	if (!vecs) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	bool mem = rows <= STORE_INLINE_ROWS;
	*inl = NULL;
	if ((rc = mem ? seg_writer_open_mem(sc, &o, &w, err) : seg_writer_open(path, sc, &o, &w, err)) != ST_OK)
		goto out;
	for (uint32_t k = 0; k < nb; k++) {
		/* A zeroed buffer serves as an all-null column: validity 0, values 0. */
		size_t need = ((size_t)b[k].nrows + 1) * 8;
		if (need > zlen) {
			free(zeros);
			zlen = need;
			if (!(zeros = calloc(zlen, 1))) {
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
				goto out;
			}
		}
		for (uint32_t f = 0; f < sc->nfields; f++) {
			int i = m->batch_of[f];
			if (i >= 0) {
				vecs[f] = b[k].cols[i];
			} else {
				vecs[f] = (struct st_vec){.type = sc->fields[f].type, .n = b[k].nrows,
							  .validity = zeros, .data = zeros,
							  .offsets = (const uint32_t *)zeros,
							  .bytes = zeros};
			}
		}
		if ((rc = seg_writer_append(w, vecs, b[k].nrows, err)) != ST_OK)
			goto out;
	}
	if (!mem) {
		rc = seg_writer_close(w, info, err);
		w = NULL;
		goto out;
	}
	uint8_t *bytes;
	size_t len;
	rc = seg_writer_close_mem(w, info, &bytes, &len, err);
	w = NULL;
	if (rc != ST_OK)
		goto out;
	if (len <= s->opts.inline_max) {
		*inl = bytes;
		*inl_len = len;
	} else {
		rc = store_write_file(path, bytes, len, err);
		free(bytes);
	}
out:
	seg_writer_abort(w);
	free(vecs);
	free(zeros);
	return rc;
}

int st_write(st_store *s, const char *table, const struct st_batch *batches, uint32_t nb,
	     const struct st_write_opts *opts, struct st_commit_result *res, struct st_err *err)
{
	static const struct st_write_opts defaults = {0};
	int rc = ST_OK, mrc;
	MDB_txn *txn = NULL;
	struct table_head h = {0};
	struct colmap m = {0};
	struct seg_file_info info = {0};
	struct act_add add = {0};
	struct act_remove *rm = NULL;
	uint64_t *live = NULL;
	uint32_t nlive = 0;
	struct st_buf rec = {0};
	char path[PATH_MAX] = "";
	uint8_t *inl = NULL;  /* an inline segment's bytes */
	size_t inl_len = 0;
	bool written = false;
	int64_t t0 = store_now_us();
	uint64_t rows = 0;
	if (!opts)
		opts = &defaults;
	memset(res, 0, sizeof *res);
	if (nb == 0 || !batches) {
		return st_seterr(err, ST_EINVAL, "table '%s': a write needs at least one batch", table);
	}
	for (uint32_t k = 0; k < nb; k++)
		rows += batches[k].nrows;
	if ((rc = store_write_begin(s, &txn, "writing", err)) != ST_OK)
		goto out;
	if ((rc = head_get(s, txn, table, &h, err)) != ST_OK)
		goto out;
	uint8_t key[16 + 256];
	if (opts->app_id) {
		size_t alen = strlen(opts->app_id);
		if (alen == 0 || alen > 255) {
			rc = st_seterr(err, ST_EINVAL, "app id must be 1 to 255 bytes");
			goto out;
		}
		be64(key, h.tid);
		memcpy(key + 8, opts->app_id, alen);
		MDB_val k = {8 + alen, key}, v;
		if (mdb_get(txn, s->db[DB_TXNS], &k, &v) == 0 && v.mv_size == 8 &&
		    st_get_le64(v.mv_data) >= opts->app_version) {
			res->noop = true;
			res->version = h.version;
			res->time_us = h.time_us;
			goto out; /* already committed: nothing to do */
		}
	}
	if ((rc = map_columns(table, h.meta, batches, nb, opts->merge_schema, &m, err)) != ST_OK)
		goto out;
	if (rows > 0) {
		add.file_id = h.next_fid++;
		store_seg_path(s, h.tid, add.file_id, path, sizeof path);
		if ((rc = write_segment(s, path, &m, batches, nb, rows, &info, &inl, &inl_len,
					err)) != ST_OK)
			goto out;
		written = inl == NULL;
		add.is_inline = inl != NULL;
		add.size = info.size;
		add.rows = info.rows;
		add.crc = info.crc;
		add.data_change = true;
		add.ncols = info.ncols;
		add.stats = info.stats;
		add.field_ids = calloc(info.ncols + 1, sizeof *add.field_ids);
		if (!add.field_ids) {
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			goto out;
		}
		for (uint32_t i = 0; i < info.ncols; i++)
			add.field_ids[i] = m.meta->schema.fields[i].id;
	}
	if (opts->mode == ST_WRITE_OVERWRITE &&
	    (rc = store_live_files(s, txn, h.tid, &live, &nlive, err)) != ST_OK)
		goto out;
	if (!(rm = calloc(nlive + 1, sizeof *rm))) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < nlive; i++)
		rm[i] = (struct act_remove){live[i], true};

	struct act_kv params[1] = {{"mode", opts->mode == ST_WRITE_OVERWRITE ? "overwrite" : "append"}};
	struct act_txn tx = {(char *)opts->app_id, opts->app_version};
	struct act_commit c = {0};
	c.metadata = m.meta_changed ? m.meta : NULL;
	c.adds = &add;
	c.nadd = rows > 0;
	c.removes = rm;
	c.nremove = nlive;
	c.txns = &tx;
	c.ntxn = opts->app_id != NULL;
	c.info.operation = "WRITE";
	c.info.params = params;
	c.info.nparams = 1;
	c.info.read_version = (int64_t)h.version;
	c.info.isolation = ACT_ISO_SERIALIZABLE;
	c.info.rows_added = rows;
	c.info.files_added = rows > 0;
	c.info.bytes_added = info.size;
	c.info.files_removed = nlive;
	c.info.duration_us = (uint64_t)(store_now_us() - t0);
	if ((rc = store_put_commit(s, txn, &h, &c, err)) != ST_OK)
		goto out;
	for (uint32_t i = 0; i < nlive && rc == ST_OK; i++)
		rc = store_mark_removed(s, txn, h.tid, live[i], h.version, h.time_us, err);
	if (rc != ST_OK)
		goto out;
	if (rows > 0) {
		struct file_rec f = {.fid = add.file_id, .added = h.version, .removed = STORE_LIVE,
				     .size = add.size, .rows = add.rows, .crc = add.crc,
				     .flags = 2u | (inl ? 1u : 0u),
				     .ncols = add.ncols, .field_ids = add.field_ids, .stats = add.stats};
		uint8_t types[ST_MAX_COLUMNS];
		for (uint32_t i = 0; i < add.ncols; i++)
			types[i] = m.meta->schema.fields[i].type;
		f.types = types;
		if (file_rec_encode(&f, &rec) != ST_OK) {
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			goto out;
		}
		be64(key, h.tid);
		be64(key + 8, add.file_id);
		MDB_val k = {16, key}, v = {rec.len, rec.data}, empty = {0, ""};
		MDB_val iv = {inl_len, inl};
		if ((mrc = mdb_put(txn, s->db[DB_FILES], &k, &v, MDB_NOOVERWRITE)) != 0 ||
		    (mrc = mdb_put(txn, s->db[DB_LIVE], &k, &empty, 0)) != 0 ||
		    (inl && (mrc = mdb_put(txn, s->db[DB_INLINE], &k, &iv, MDB_NOOVERWRITE)) != 0)) {
			rc = store_lmdb_err(err, mrc, "recording a file");
			goto out;
		}
	}
	if (opts->app_id) {
		size_t alen = strlen(opts->app_id);
		uint8_t ver[8];
		be64(key, h.tid);
		memcpy(key + 8, opts->app_id, alen);
		st_put_le64(ver, opts->app_version);
		MDB_val k = {8 + alen, key}, v = {8, ver};
		if ((mrc = mdb_put(txn, s->db[DB_TXNS], &k, &v, 0)) != 0) {
			rc = store_lmdb_err(err, mrc, "recording an app version");
			goto out;
		}
	}
	if (m.meta_changed) {
		act_metadata_free(h.meta);
		h.meta = m.meta;
		m.meta = NULL;
	}
	if ((rc = head_put(s, txn, &h, err)) != ST_OK)
		goto out;
	/* From here the file is never unlinked by us: if the LMDB commit failed
	 * after all, recovery removes it as an orphan (it may still be durable). */
	written = false;
	rc = store_commit_txn(s, txn, "committing a write", err);
	txn = NULL;
	if (rc == ST_OK) {
		res->version = h.version;
		res->time_us = h.time_us;
		res->rows = rows;
		res->lsn = c.lsn;
	}
out:
	store_write_end(s, txn);
	if (written)
		unlink(path); /* no commit references it */
	head_fini(&h);
	act_metadata_free(m.meta);
	colmap_fini(&m);
	seg_file_info_fini(&info);
	free(add.field_ids);
	free(inl);
	free(rm);
	free(live);
	st_buf_free(&rec);
	return rc;
}
