/*
 * daemon/store/replace.c — replace-where (issue 3 §4): atomically replace the
 * rows that match a predicate. Files whose statistics say every row
 * matches are removed; files where some rows may match are rewritten
 * without the matching rows (a new segment with the file's own schema, so
 * field ids are kept) and removed; files that cannot match stay. The new
 * rows, which must themselves match the predicate, are added by the
 * caller in the same commit.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/store/store_int.h"
#include "format/dv.h"
#include "format/expr.h"
#include "format/segment.h"

void store_rewrite_fini(struct store_rewrite *r)
{
	if (r->written)
		unlink(r->path); /* no commit references it */
	seg_file_info_fini(&r->info);
	free(r->add.field_ids);
	free(r->add.dv);
	if (r->add.dv)
		free(r->add.stats); /* a re-added file's own copy */
	free(r->types);
	free(r->inl);
	memset(r, 0, sizeof *r);
}

/* Statistics of a file record in table-schema order (absent: all NULL). */
void store_file_stats(const struct st_schema *sch, const struct file_rec *f,
		      struct st_col_stats *out)
{
	for (uint32_t i = 0; i < sch->nfields; i++) {
		memset(&out[i], 0, sizeof out[i]);
		out[i].rows = out[i].null_count = f->rows;
		out[i].min.type = out[i].max.type = sch->fields[i].type;
		for (uint32_t k = 0; k < f->ncols; k++) {
			if (f->field_ids[k] != sch->fields[i].id)
				continue;
			if (f->types[k] == sch->fields[i].type) {
				st_stats_copy(&out[i], &f->stats[k]);
			} else if (store_widens(f->types[k], sch->fields[i].type)) {
				st_stats_copy(&out[i], &f->stats[k]);
				store_stats_widen(&out[i], sch->fields[i].type);
			}
		}
	}
}

/* Copy the rows of v listed in keep (n of them) into plain vector out,
 * with its buffers in *bufs (freed by the caller). */
int store_gather(const struct st_vec *v, const uint32_t *keep, uint32_t n, struct st_vec *out,
		 void *bufs[3])
{
	size_t width = st_type_width(v->type);
	uint8_t *valid = calloc(n / 8 + 1, 1);
	bufs[0] = valid;
	*out = (struct st_vec){.type = v->type, .n = n, .validity = valid};
	if (!valid)
		return ST_ENOMEM;
	for (uint32_t i = 0; i < n; i++)
		if (st_vec_is_valid(v, keep[i]))
			valid[i >> 3] |= (uint8_t)(1u << (i & 7));
	if (width) {
		uint8_t *d = malloc((size_t)n * width + 1);
		bufs[1] = d;
		if (!d)
			return ST_ENOMEM;
		for (uint32_t i = 0; i < n; i++)
			memcpy(d + (size_t)i * width, (const uint8_t *)v->data + (size_t)keep[i] * width,
			       width);
		out->data = d;
		return ST_OK;
	}
	size_t total = 0;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *p;
		uint32_t len;
		st_vec_str(v, keep[i], &p, &len);
		total += len;
	}
	uint32_t *offs = malloc(((size_t)n + 1) * 4);
	uint8_t *bytes = malloc(total + 1);
	bufs[1] = offs;
	bufs[2] = bytes;
	if (!offs || !bytes || total > UINT32_MAX)
		return ST_ENOMEM;
	offs[0] = 0;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *p;
		uint32_t len;
		st_vec_str(v, keep[i], &p, &len);
		memcpy(bytes + offs[i], p, len);
		offs[i + 1] = offs[i] + len;
	}
	out->offsets = offs;
	out->bytes = bytes;
	return ST_OK;
}

int store_rewrite_without(st_store *s, uint64_t tid, const struct file_rec *f,
			  const struct st_schema *sch, const struct expr *pred,
			  struct store_rewrite *out, uint64_t *removed_rows, struct st_err *err)
{
	return store_file_match(s, tid, f, sch, pred, out, removed_rows, NULL, NULL, NULL, NULL, err);
}

/* Append v to (*a, *n, *cap). */
static bool push(uint32_t **a, uint32_t *n, uint32_t *cap, uint32_t v)
{
	if (*n == *cap) {
		uint32_t c = *cap ? *cap * 2 : 256;
		uint32_t *g = realloc(*a, (size_t)c * sizeof *g);
		if (!g)
			return false;
		*a = g;
		*cap = c;
	}
	(*a)[(*n)++] = v;
	return true;
}

int store_file_match(st_store *s, uint64_t tid, const struct file_rec *f,
		     const struct st_schema *sch, const struct expr *pred,
		     struct store_rewrite *out, uint64_t *removed_rows, uint32_t **pos,
		     uint32_t *npos, store_match_fn fn, void *arg, struct st_err *err)
{
	uint32_t *del = NULL, ndel = 0, pcap = 0;
	uint64_t row0 = 0;
	struct store_rewrite none;
	bool rewrite = !pos && !fn; /* else: positions, or the callback, only */
	if (!out)
		out = &none; /* nothing is written */
	if (pos) {
		*pos = NULL;
		*npos = 0;
	}
	int rc = ST_OK;
	struct seg_reader *rd = NULL;
	struct seg_writer *w = NULL;
	uint8_t *inl_src = NULL;
	struct st_vec *tv = calloc(sch->nfields, sizeof *tv);
	int *col = calloc(sch->nfields, sizeof *col);
	void **wbuf = calloc(sch->nfields + 1, sizeof *wbuf); /* widened columns */
	size_t *wcap = calloc(sch->nfields + 1, sizeof *wcap);
	uint32_t *sel = NULL, *keep = NULL;
	uint8_t *zeros = NULL;
	char src[PATH_MAX];
	memset(out, 0, sizeof *out);
	*removed_rows = 0;
	if (!tv || !col || !wbuf || !wcap) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	store_seg_path(s, tid, f->fid, src, sizeof src);
	if (f->flags & 1) {
		size_t len;
		if ((rc = store_inline_copy(s, NULL, tid, f, &inl_src, &len, err)) == ST_OK)
			rc = seg_reader_open_mem(src, inl_src, len, &rd, err);
	} else {
		rc = seg_reader_open(src, NULL, &rd, err);
	}
	if (rc != ST_OK)
		goto out;
	const struct st_schema *fs = seg_reader_schema(rd);
	for (uint32_t i = 0; i < sch->nfields; i++) {
		col[i] = -1;
		for (uint32_t k = 0; k < fs->nfields; k++)
			if (fs->fields[k].id == sch->fields[i].id &&
			    (fs->fields[k].type == sch->fields[i].type ||
			     store_widens(fs->fields[k].type, sch->fields[i].type)))
				col[i] = (int)k;
	}
	if (f->dv && (rc = dv_decode(f->dv, f->dv_len, (uint32_t)f->rows, &del, &ndel, err)) != ST_OK)
		goto out;
	if (rewrite) {
		out->add.file_id = store_next_fid(s);
		store_seg_path(s, tid, out->add.file_id, out->path, sizeof out->path);
		struct seg_writer_opts o = {.row_group_rows = s->opts.row_group_rows,
					    .io = s->opts.io, .threads = s->enc_threads};
		if ((rc = seg_writer_open(out->path, fs, &o, &w, err)) != ST_OK)
			goto out;
	}
	struct st_vec *kept = calloc(fs->nfields, sizeof *kept);
	void **bufs = calloc((size_t)fs->nfields * 3, sizeof *bufs);
	if (!kept || !bufs) {
		free(kept);
		free(bufs);
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	/* Finding positions reads only the predicate's columns. */
	bool cols_only = pos && !fn; /* a callback sees every column */
	bool *need = cols_only ? calloc(sch->nfields + 1, sizeof *need) : NULL;
	bool *want = cols_only ? calloc(fs->nfields + 1, sizeof *want) : NULL;
	if (cols_only && (!need || !want))
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
	if (cols_only && rc == ST_OK) {
		expr_columns(pred, need);
		for (uint32_t i = 0; i < sch->nfields; i++)
			if (col[i] >= 0 && need[i])
				want[col[i]] = true;
			else
				col[i] = -1; /* not read: left as NULLs, which the predicate never sees */
	}
	for (uint32_t g = 0; g < seg_reader_row_groups(rd) && rc == ST_OK; g++) {
		struct seg_batch *b;
		if ((rc = seg_reader_read(rd, g, want, &b, err)) != ST_OK)
			break;
		free(sel);
		free(keep);
		free(zeros);
		sel = malloc(((size_t)b->rows + 1) * 4);
		keep = malloc(((size_t)b->rows + 1) * 4);
		zeros = calloc(((size_t)b->rows + 1) * 8, 1);
		if (!sel || !keep || !zeros) {
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			break;
		}
		for (uint32_t i = 0; i < sch->nfields && rc == ST_OK; i++) {
			tv[i] = col[i] >= 0 ? b->cols[col[i]]
					    : (struct st_vec){.type = sch->fields[i].type, .n = b->rows,
							      .validity = zeros, .data = zeros,
							      .offsets = (const uint32_t *)zeros,
							      .bytes = zeros};
			if (col[i] >= 0 && tv[i].type != sch->fields[i].type &&
			    store_vec_widen(&b->cols[col[i]], sch->fields[i].type, &tv[i], &wbuf[i],
					    &wcap[i]) != ST_OK)
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
		}
		if (rc != ST_OK)
			break;
		uint32_t nsel, nkeep = 0;
		if ((rc = expr_eval(pred, tv, b->rows, sel, &nsel, err)) != ST_OK)
			break;
		/* Rows a deletion vector already deletes neither match nor stay. */
		uint32_t dlo = dv_lower(del, ndel, (uint32_t)row0);
		uint32_t dhi = dv_lower(del, ndel, (uint32_t)(row0 + b->rows));
		if (dhi > dlo)
			nsel = dv_filter(del + dlo, dhi - dlo, row0, sel, nsel, NULL);
		for (uint32_t i = 0, j = 0, d = dlo; i < b->rows; i++) {
			if (j < nsel && sel[j] == i)
				j++;
			else if (d < dhi && del[d] - row0 == i)
				d++;
			else
				keep[nkeep++] = i;
		}
		*removed_rows += nsel;
		for (uint32_t j = 0; pos && j < nsel && rc == ST_OK; j++)
			if (!push(pos, npos, &pcap, (uint32_t)(row0 + sel[j])))
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
		if (fn && nsel && rc == ST_OK)
			rc = fn(arg, tv, b->rows, sel, nsel, row0, err);
		row0 += b->rows;
		if (nkeep == 0 || !rewrite)
			continue;
		for (uint32_t k = 0; k < fs->nfields && rc == ST_OK; k++)
			if (store_gather(&b->cols[k], keep, nkeep, &kept[k], &bufs[3 * k]) != ST_OK)
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
		if (rc == ST_OK)
			rc = seg_writer_append(w, kept, nkeep, err);
		for (uint32_t k = 0; k < (size_t)fs->nfields * 3; k++) {
			free(bufs[k]);
			bufs[k] = NULL;
		}
	}
	free(kept);
	free(bufs);
	free(need);
	free(want);
	if (rc != ST_OK || !rewrite)
		goto out;
	if ((rc = seg_writer_close(w, &out->info, err)) != ST_OK) {
		w = NULL;
		goto out;
	}
	w = NULL;
	out->written = true;
	if (out->info.rows == 0) { /* every row matched: no new file */
		store_rewrite_fini(out);
		goto out;
	}
	if ((rc = store_add_from_info(&out->add, &out->info, fs, true, err)) != ST_OK)
		goto out;
	if (!(out->types = calloc(fs->nfields + 1, 1))) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t k = 0; k < fs->nfields; k++)
		out->types[k] = fs->fields[k].type;
out:
	seg_writer_abort(w);
	seg_reader_close(rd);
	free(del);
	if (rc != ST_OK && pos) {
		free(*pos);
		*pos = NULL;
		*npos = 0;
	}
	if (rc != ST_OK && rewrite)
		store_rewrite_fini(out);
	free(inl_src);
	free(tv);
	free(col);
	for (uint32_t i = 0; wbuf && i < sch->nfields; i++)
		free(wbuf[i]);
	free(wbuf);
	free(wcap);
	free(sel);
	free(keep);
	free(zeros);
	return rc;
}
