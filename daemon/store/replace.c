/*
 * daemon/store/replace.c — reading one file's rows against a predicate, for
 * DELETE, UPDATE, replace-where and OPTIMIZE (STORE.md §4.1-§4.3): the
 * file's columns mapped onto the table's schema by field id (widened, NULL
 * where the file predates a column), the predicate evaluated per row
 * group, the rows its deletion vector deletes left out; and the helpers
 * those share (file statistics in schema order, gathering rows).
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
		if (len) /* an empty string's bytes may be NULL */
			memcpy(bytes + offs[i], p, len);
		offs[i + 1] = offs[i] + len;
	}
	out->offsets = offs;
	out->bytes = bytes;
	return ST_OK;
}

bool store_push_u32(uint32_t **a, uint32_t *n, uint32_t *cap, uint32_t v)
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

bool store_push_u64(uint64_t **a, uint32_t *n, uint32_t *cap, uint64_t v)
{
	if (*n == *cap) {
		uint32_t c = *cap ? *cap * 2 : 256;
		uint64_t *g = realloc(*a, (size_t)c * sizeof *g);
		if (!g)
			return false;
		*a = g;
		*cap = c;
	}
	(*a)[(*n)++] = v;
	return true;
}

int store_file_match(st_store *s, uint64_t tid, const struct file_rec *f,
		     const struct st_schema *sch, const struct expr *pred, uint32_t **pos,
		     uint32_t *npos, store_match_fn fn, void *arg, struct st_err *err)
{
	return store_file_match_cols(s, tid, f, sch, pred, pos, npos, fn, arg, NULL, err);
}

int store_file_match_cols(st_store *s, uint64_t tid, const struct file_rec *f,
			  const struct st_schema *sch, const struct expr *pred, uint32_t **pos,
			  uint32_t *npos, store_match_fn fn, void *arg, const bool *cols,
			  struct st_err *err)
{
	uint32_t *del = NULL, ndel = 0, pcap = 0, *sel = NULL;
	uint64_t row0 = 0;
	int rc = ST_OK;
	struct seg_reader *rd = NULL;
	uint8_t *inl_src = NULL, *zeros = NULL;
	struct st_vec *tv = calloc(sch->nfields + 1, sizeof *tv);
	int *col = calloc(sch->nfields + 1, sizeof *col);
	void **wbuf = calloc(sch->nfields + 1, sizeof *wbuf); /* widened columns */
	size_t *wcap = calloc(sch->nfields + 1, sizeof *wcap);
	bool *need = calloc(sch->nfields + 1, sizeof *need), *want = NULL;
	char src[PATH_MAX];
	if (pos) {
		*pos = NULL;
		*npos = 0;
	}
	if (!tv || !col || !wbuf || !wcap || !need) {
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
	if (f->dv && (f->rows > UINT32_MAX ||
		      (rc = dv_decode(f->dv, f->dv_len, (uint32_t)f->rows, &del, &ndel, err)) != ST_OK)) {
		if (rc == ST_OK)
			rc = st_seterr(err, ST_ECORRUPT, "a deletion vector on %llu rows",
				       (unsigned long long)f->rows);
		goto out;
	}
	const struct st_schema *fs = seg_reader_schema(rd);
	if (!(want = calloc(fs->nfields + 1, sizeof *want))) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	/* Positions alone need the predicate's columns; a callback sees all,
	 * or those it names (the others come as NULLs). */
	if (fn && !cols)
		memset(need, 1, sch->nfields * sizeof *need);
	else
		expr_columns(pred, need);
	for (uint32_t i = 0; fn && cols && i < sch->nfields; i++)
		need[i] |= cols[i];
	for (uint32_t i = 0; i < sch->nfields; i++) {
		col[i] = -1;
		for (uint32_t k = 0; k < fs->nfields && need[i]; k++)
			if (fs->fields[k].id == sch->fields[i].id &&
			    (fs->fields[k].type == sch->fields[i].type ||
			     store_widens(fs->fields[k].type, sch->fields[i].type))) {
				col[i] = (int)k;
				want[k] = true;
			}
	}
	for (uint32_t g = 0; g < seg_reader_row_groups(rd) && rc == ST_OK; g++) {
		struct seg_batch *b;
		if ((rc = seg_reader_read(rd, g, want, &b, err)) != ST_OK)
			break;
		free(sel);
		free(zeros);
		sel = malloc(((size_t)b->rows + 1) * 4);
		zeros = calloc(((size_t)b->rows + 1) * 8, 1);
		if (!sel || !zeros) {
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			break;
		}
		for (uint32_t i = 0; i < sch->nfields && rc == ST_OK; i++) {
			/* A column not read, or that the file predates: all NULL. */
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
		uint32_t nsel;
		if (rc != ST_OK || (rc = expr_eval(pred, tv, b->rows, sel, &nsel, err)) != ST_OK)
			break;
		/* Rows a deletion vector already deletes do not match. */
		uint32_t dlo = dv_lower(del, ndel, (uint32_t)row0);
		uint32_t dhi = dv_lower(del, ndel, (uint32_t)(row0 + b->rows));
		if (dhi > dlo)
			nsel = dv_filter(del + dlo, dhi - dlo, row0, sel, nsel, NULL);
		for (uint32_t j = 0; pos && j < nsel && rc == ST_OK; j++)
			if (!store_push_u32(pos, npos, &pcap, (uint32_t)(row0 + sel[j])))
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
		if (fn && nsel && rc == ST_OK)
			rc = fn(arg, tv, b->rows, sel, nsel, row0, err);
		row0 += b->rows;
	}
out:
	seg_reader_close(rd);
	free(del);
	if (rc != ST_OK && pos) {
		free(*pos);
		*pos = NULL;
		*npos = 0;
	}
	free(inl_src);
	free(tv);
	free(col);
	for (uint32_t i = 0; wbuf && i < sch->nfields; i++)
		free(wbuf[i]);
	free(wbuf);
	free(wcap);
	free(need);
	free(want);
	free(sel);
	free(zeros);
	return rc;
}

/* ---- rows held in memory -------------------------------------------------- */

void store_held_free(struct store_held *h)
{
	for (uint32_t b = 0; b < h->n; b++) {
		for (uint32_t k = 0; k < 3 * h->nf; k++)
			free(h->bufs[b][k]);
		free(h->bufs[b]);
		free(h->vecs[b]);
	}
	free(h->vecs);
	free(h->bufs);
	free(h->rows);
	memset(h, 0, sizeof *h);
}

int store_held_push(struct store_held *h, struct st_vec *v, void **bufs, uint32_t rows,
		    struct st_err *err)
{
	if (h->n == h->cap) {
		uint32_t cap = h->cap ? 2 * h->cap : 64;
		struct st_vec **nv = realloc(h->vecs, cap * sizeof *nv);
		if (nv)
			h->vecs = nv;
		void ***nb = nv ? realloc(h->bufs, cap * sizeof *nb) : NULL;
		if (nb)
			h->bufs = nb;
		uint32_t *nr = nb ? realloc(h->rows, cap * sizeof *nr) : NULL;
		if (nr)
			h->rows = nr;
		if (!nr)
			return st_seterr(err, ST_ENOMEM, "out of memory holding rows");
		h->cap = cap;
	}
	h->vecs[h->n] = v;
	h->bufs[h->n] = bufs;
	h->rows[h->n] = rows;
	h->n++;
	h->total += rows;
	return ST_OK;
}

int store_held_gather(const struct store_held *h, const struct store_ref *refs, uint32_t n,
		      struct st_vec *v, void **bufs, struct st_err *err)
{
	for (uint32_t f = 0; f < h->nf; f++) {
		int t = h->vecs[0][f].type;
		size_t w = st_type_width(t), total = 0;
		uint8_t *valid = calloc((size_t)n / 8 + 1, 1);
		bufs[3 * f] = valid;
		if (!valid)
			return st_seterr(err, ST_ENOMEM, "out of memory");
		for (uint32_t i = 0; i < n; i++) {
			const struct st_vec *src = &h->vecs[refs[i].b][f];
			if (st_vec_is_valid(src, refs[i].r))
				valid[i >> 3] |= (uint8_t)(1u << (i & 7));
			if (!w) {
				const uint8_t *p;
				uint32_t len;
				st_vec_str(src, refs[i].r, &p, &len);
				total += len;
			}
		}
		if (w) {
			uint8_t *d = malloc((size_t)n * w + 1);
			bufs[3 * f + 1] = d;
			if (!d)
				return st_seterr(err, ST_ENOMEM, "out of memory");
			for (uint32_t i = 0; i < n; i++)
				memcpy(d + (size_t)i * w,
				       (const uint8_t *)h->vecs[refs[i].b][f].data + (size_t)refs[i].r * w, w);
			v[f] = (struct st_vec){.type = (uint8_t)t, .n = n, .validity = valid, .data = d};
			continue;
		}
		uint32_t *offs = malloc(((size_t)n + 1) * sizeof *offs);
		uint8_t *bytes = malloc(total + 1);
		bufs[3 * f + 1] = offs;
		bufs[3 * f + 2] = bytes;
		if (!offs || !bytes || total > UINT32_MAX)
			return st_seterr(err, ST_ENOMEM, "out of memory");
		offs[0] = 0;
		for (uint32_t i = 0; i < n; i++) {
			const uint8_t *p;
			uint32_t len;
			st_vec_str(&h->vecs[refs[i].b][f], refs[i].r, &p, &len);
			if (len)
				memcpy(bytes + offs[i], p, len);
			offs[i + 1] = offs[i] + len;
		}
		v[f] = (struct st_vec){.type = (uint8_t)t, .n = n, .validity = valid, .offsets = offs,
				       .bytes = bytes};
	}
	return ST_OK;
}
