/*
 * daemon/store/query.c — grouped aggregation (query.h).
 */
#include "daemon/store/query.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- group keys --------------------------------------------------------- */

/* Groups by serialized key: per group column a null flag byte, then the
 * fixed-width value or u32 length + bytes. Open addressing on a 64-bit hash. */
struct groups {
	uint32_t n;          /* groups */
	uint32_t cap;        /* slots, a power of two, >= 2n */
	uint32_t *slot;      /* gid + 1, or 0 when empty */
	uint64_t *hash;      /* per gid */
	uint32_t *koff;      /* per gid: offset of its key in keys; koff[n] = keys.len */
	struct st_buf keys;  /* the keys, back to back */
	struct st_buf tmp;   /* the key being looked up */
};

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h ^ (h >> 29);
}

static bool groups_grow(struct groups *g)
{
	uint32_t cap = g->cap ? g->cap * 2 : 64;
	uint32_t *slot = calloc(cap, sizeof *slot);
	uint64_t *hash = realloc(g->hash, (cap / 2 + 1) * sizeof *hash);
	uint32_t *koff = realloc(g->koff, (cap / 2 + 2) * sizeof *koff);
	if (hash)
		g->hash = hash;
	if (koff)
		g->koff = koff;
	if (!slot || !hash || !koff) {
		free(slot);
		return false;
	}
	for (uint32_t i = 0; i < g->n; i++) {
		uint32_t s = (uint32_t)g->hash[i] & (cap - 1);
		while (slot[s])
			s = (s + 1) & (cap - 1);
		slot[s] = i + 1;
	}
	free(g->slot);
	g->slot = slot;
	g->cap = cap;
	return true;
}

/* The gid of the key in g->tmp, adding it if new; -1 when out of memory
 * or above max groups. */
static int64_t groups_find(struct groups *g, uint32_t max)
{
	const uint8_t *k = g->tmp.data;
	size_t kn = g->tmp.len;
	uint64_t h = hash_bytes(k, kn);
	if (g->cap) {
		for (uint32_t s = (uint32_t)h & (g->cap - 1);; s = (s + 1) & (g->cap - 1)) {
			uint32_t id = g->slot[s];
			if (!id)
				break;
			id--;
			if (g->hash[id] == h && g->koff[id + 1] - g->koff[id] == kn &&
			    !memcmp(g->keys.data + g->koff[id], k, kn))
				return id;
		}
	}
	if (g->n >= max)
		return -2;
	if ((2 * (g->n + 1) > g->cap && !groups_grow(g)))
		return -1;
	uint32_t id = g->n++;
	g->hash[id] = h;
	g->koff[id] = (uint32_t)g->keys.len;
	st_buf_append(&g->keys, k, kn);
	g->koff[id + 1] = (uint32_t)g->keys.len;
	if (g->keys.oom)
		return -1;
	uint32_t s = (uint32_t)h & (g->cap - 1);
	while (g->slot[s])
		s = (s + 1) & (g->cap - 1);
	g->slot[s] = id + 1;
	return id;
}

/* Append row r of v to the key in g->tmp. */
static void key_put(struct groups *g, const struct st_vec *v, uint32_t r)
{
	if (!st_vec_is_valid(v, r)) {
		st_buf_u8(&g->tmp, 0);
		return;
	}
	st_buf_u8(&g->tmp, 1);
	if (st_type_is_varlen(v->type)) {
		const uint8_t *p;
		uint32_t n;
		st_vec_str(v, r, &p, &n);
		st_buf_u32(&g->tmp, n);
		st_buf_append(&g->tmp, p, n);
	} else {
		size_t w = st_type_width(v->type);
		st_buf_append(&g->tmp, (const uint8_t *)v->data + w * r, w);
	}
}

static void groups_fini(struct groups *g)
{
	free(g->slot);
	free(g->hash);
	free(g->koff);
	st_buf_free(&g->keys);
	st_buf_free(&g->tmp);
}

/* ---- accumulators ------------------------------------------------------- */

struct acc {
	enum sd_agg_fn fn;
	int col;            /* index among the scanned columns, -1 for count(*) */
	int type;           /* column type */
	uint64_t *cnt;      /* non-null values per group */
	int64_t *i;         /* integer sums / integer-like min/max */
	double *f;          /* float sums / float min/max */
	uint8_t **s;        /* string min/max (owned copies) */
	uint32_t *slen;     /* their lengths */
};

static bool acc_grow(struct acc *a, uint32_t from, uint32_t to)
{
	uint64_t *cnt = realloc(a->cnt, to * sizeof *cnt);
	if (!cnt)
		return false;
	a->cnt = cnt;
	memset(cnt + from, 0, (to - from) * sizeof *cnt);
	if (a->fn == SD_AGG_COUNT)
		return true;
	if (st_type_is_varlen(a->type)) {
		uint8_t **s = realloc(a->s, to * sizeof *s);
		uint32_t *l = s ? realloc(a->slen, to * sizeof *l) : NULL;
		if (s)
			a->s = s;
		if (l)
			a->slen = l;
		if (!s || !l)
			return false;
		memset(s + from, 0, (to - from) * sizeof *s);
		return true;
	}
	if (a->type == ST_TYPE_FLOAT64 || a->fn == SD_AGG_AVG) {
		double *f = realloc(a->f, to * sizeof *f);
		if (!f)
			return false;
		a->f = f;
		memset(f + from, 0, (to - from) * sizeof *f);
	}
	if (a->type != ST_TYPE_FLOAT64) {
		int64_t *i = realloc(a->i, to * sizeof *i);
		if (!i)
			return false;
		a->i = i;
		memset(i + from, 0, (to - from) * sizeof *i);
	}
	return true;
}

static int64_t int_at(const struct st_vec *v, uint32_t r)
{
	return v->type == ST_TYPE_INT32 || v->type == ST_TYPE_DATE ? ((const int32_t *)v->data)[r]
								    : ((const int64_t *)v->data)[r];
}

/* Fold the selected rows of one batch into a. */
static bool acc_add(struct acc *a, const struct st_vec *v, const uint32_t *sel, uint32_t nsel,
		    const uint32_t *gid)
{
	if (a->col < 0) { /* count(*) */
		for (uint32_t k = 0; k < nsel; k++)
			a->cnt[gid[k]]++;
		return true;
	}
	bool isf = v->type == ST_TYPE_FLOAT64;
	const double *fd = v->data;
	for (uint32_t k = 0; k < nsel; k++) {
		uint32_t r = sel ? sel[k] : k, g = gid[k];
		if (v->validity && !st_vec_is_valid(v, r))
			continue;
		uint64_t first = a->cnt[g]++ == 0;
		switch (a->fn) {
		case SD_AGG_COUNT:
			break;
		case SD_AGG_SUM:
		case SD_AGG_AVG:
			if (a->f)
				a->f[g] += isf ? fd[r] : (double)int_at(v, r);
			if (a->i && a->fn == SD_AGG_SUM)
				a->i[g] = (int64_t)((uint64_t)a->i[g] + (uint64_t)int_at(v, r));
			break;
		case SD_AGG_MIN:
		case SD_AGG_MAX: {
			int sign = a->fn == SD_AGG_MIN ? -1 : 1;
			if (st_type_is_varlen(v->type)) {
				const uint8_t *p;
				uint32_t n;
				st_vec_str(v, r, &p, &n);
				int c = 0;
				if (!first) {
					uint32_t m = n < a->slen[g] ? n : a->slen[g];
					c = memcmp(p, a->s[g], m);
					if (!c)
						c = n < a->slen[g] ? -1 : n > a->slen[g];
				}
				if (first || c * sign > 0) {
					uint8_t *cp = malloc(n + 1);
					if (!cp)
						return false;
					memcpy(cp, p, n);
					free(a->s[g]);
					a->s[g] = cp;
					a->slen[g] = n;
				}
			} else if (isf) {
				double x = fd[r];
				if (first || (sign < 0 ? x < a->f[g] : x > a->f[g]))
					a->f[g] = x;
			} else {
				int64_t x = int_at(v, r);
				if (first || (sign < 0 ? x < a->i[g] : x > a->i[g]))
					a->i[g] = x;
			}
			break;
		}
		}
	}
	return true;
}

/* A tight loop for the common case: sum/avg of a float64 column without
 * nulls. */
static void acc_add_f64(struct acc *a, const double *d, const uint32_t *sel, uint32_t nsel,
			const uint32_t *gid)
{
	if (!gid) { /* no group-by: one accumulator */
		double sum = a->f[0];
		if (sel)
			for (uint32_t k = 0; k < nsel; k++)
				sum += d[sel[k]];
		else
			for (uint32_t k = 0; k < nsel; k++)
				sum += d[k];
		a->f[0] = sum;
		a->cnt[0] += nsel;
		return;
	}
	/* Local restrict copies: the compiler may keep them in registers. */
	double *restrict f = a->f;
	uint64_t *restrict cnt = a->cnt;
	if (sel)
		for (uint32_t k = 0; k < nsel; k++) {
			f[gid[k]] += d[sel[k]];
			cnt[gid[k]]++;
		}
	else
		for (uint32_t k = 0; k < nsel; k++) {
			f[gid[k]] += d[k];
			cnt[gid[k]]++;
		}
}

/* Room in every accumulator for all g->n groups (plus headroom). */
static bool accs_fit(struct acc *acc, uint32_t naggs, uint32_t *acap, const struct groups *g)
{
	if (g->n <= *acap)
		return true;
	uint32_t cap = g->cap / 2 + 1 > g->n ? g->cap / 2 + 1 : g->n;
	for (uint32_t a = 0; a < naggs; a++)
		if (!acc_grow(&acc[a], *acap, cap))
			return false;
	*acap = cap;
	return true;
}

static void acc_fini(struct acc *a, uint32_t ngroups)
{
	for (uint32_t g = 0; a->s && g < ngroups; g++)
		free(a->s[g]);
	free(a->s);
	free(a->slen);
	free(a->cnt);
	free(a->i);
	free(a->f);
}

/*
 * One dictionary group column, aggregates that are count(*) or sum/avg of
 * float64 columns without NULLs (Q1's shape): fold each batch into
 * per-dictionary-code partials (a direct index, no group lookup per row),
 * then add each code's partials to its group once. Returns false when the
 * batch does not have that shape (the general path runs instead).
 */
struct code_partials {
	double *sum;     /* naggs x (dict size + 1) partial sums */
	uint64_t *cnt;   /* dict size + 1 row counts (last: NULL key) */
	uint32_t cap;    /* codes room */
	/* Row groups of one file usually share a dictionary: the last one
	 * seen, and the group of each of its codes (-1 not looked up yet). */
	uint8_t *dict;   /* its offsets then its bytes */
	size_t dict_len; /* their length */
	uint32_t dict_n; /* its entries */
	int64_t *gid;    /* dict_n + 1 groups (last: NULL key) */
};

/* Point pc's code -> group map at dictionary d: kept when d is the
 * dictionary seen last, else reset. False when out of memory. */
static bool partials_dict(struct code_partials *pc, const struct st_vec *d)
{
	size_t olen = ((size_t)d->n + 1) * sizeof *d->offsets;
	size_t blen = d->offsets[d->n] - d->offsets[0];
	if (pc->dict && pc->dict_n == d->n && pc->dict_len == olen + blen &&
	    !memcmp(pc->dict, d->offsets, olen) &&
	    !memcmp(pc->dict + olen, d->bytes + d->offsets[0], blen))
		return true;
	uint8_t *copy = realloc(pc->dict, olen + blen + 1);
	int64_t *gid = copy ? realloc(pc->gid, ((size_t)d->n + 1) * sizeof *gid) : NULL;
	if (copy)
		pc->dict = copy;
	if (!gid)
		return false;
	pc->gid = gid;
	memcpy(copy, d->offsets, olen);
	memcpy(copy + olen, d->bytes + d->offsets[0], blen);
	pc->dict_len = olen + blen;
	pc->dict_n = d->n;
	for (uint32_t i = 0; i <= d->n; i++)
		gid[i] = -1;
	return true;
}

static bool partials_fit(const struct acc *acc, uint32_t naggs, const struct st_scan_batch *b)
{
	for (uint32_t a = 0; a < naggs; a++) {
		if (acc[a].col < 0 && acc[a].fn == SD_AGG_COUNT)
			continue;
		const struct st_vec *v = acc[a].col >= 0 ? &b->cols[acc[a].col] : NULL;
		if (!v || v->type != ST_TYPE_FLOAT64 || v->validity ||
		    (acc[a].fn != SD_AGG_SUM && acc[a].fn != SD_AGG_AVG))
			return false;
	}
	return true;
}

static bool partials_fold(struct code_partials *pc, const struct acc *acc, uint32_t naggs,
			  const struct st_scan_batch *b, uint32_t nsel)
{
	const struct st_vec *v = &b->cols[0];
	uint32_t nd = v->dict->n, ncode = nd + 1;
	if (ncode > pc->cap) {
		free(pc->sum);
		free(pc->cnt);
		pc->cap = ncode;
		pc->sum = malloc((size_t)(naggs + 1) * ncode * sizeof *pc->sum);
		pc->cnt = malloc(ncode * sizeof *pc->cnt);
		if (!pc->sum || !pc->cnt) {
			pc->cap = 0;
			return false;
		}
	}
	memset(pc->cnt, 0, ncode * sizeof *pc->cnt);
	memset(pc->sum, 0, (size_t)naggs * ncode * sizeof *pc->sum);
	const uint32_t *codes = v->codes, *sel = b->sel;
	uint64_t *restrict cnt = pc->cnt;
	int fused = -1; /* the aggregate summed in the counting pass */
	for (uint32_t a = 0; a < naggs && fused < 0; a++)
		if (acc[a].col >= 0)
			fused = (int)a;
	if (!sel && !v->validity && fused >= 0) {
		/* The common case in one pass: count and first sum together. */
		const double *d = b->cols[acc[fused].col].data;
		double *restrict sum = pc->sum + (size_t)fused * ncode;
		for (uint32_t k = 0; k < nsel; k++) {
			uint32_t c = codes[k];
			cnt[c]++;
			sum[c] += d[k];
		}
	} else if (!sel && !v->validity) {
		fused = -1;
		for (uint32_t k = 0; k < nsel; k++)
			cnt[codes[k]]++;
	} else if (!v->validity && fused >= 0) {
		/* A selection (a deletion vector's holes): count and sum in one pass. */
		const double *d = b->cols[acc[fused].col].data;
		double *restrict sum = pc->sum + (size_t)fused * ncode;
		for (uint32_t k = 0; k < nsel; k++) {
			uint32_t r = sel[k], c = codes[r];
			cnt[c]++;
			sum[c] += d[r];
		}
	} else {
		fused = -1;
		for (uint32_t k = 0; k < nsel; k++) {
			uint32_t r = sel ? sel[k] : k;
			cnt[st_vec_is_valid(v, r) ? codes[r] : nd]++;
		}
	}
	for (uint32_t a = 0; a < naggs; a++) {
		if (acc[a].col < 0 || (int)a == fused)
			continue;
		const double *d = b->cols[acc[a].col].data;
		double *restrict sum = pc->sum + (size_t)a * ncode;
		if (!sel && !v->validity)
			for (uint32_t k = 0; k < nsel; k++)
				sum[codes[k]] += d[k];
		else
			for (uint32_t k = 0; k < nsel; k++) {
				uint32_t r = sel ? sel[k] : k;
				sum[st_vec_is_valid(v, r) ? codes[r] : nd] += d[r];
			}
	}
	return true;
}

/* ---- the query ---------------------------------------------------------- */

bool sd_agg_parse(char *text, struct sd_agg *out)
{
	static const struct {
		const char *name;
		enum sd_agg_fn fn;
	} fns[] = {{"count", SD_AGG_COUNT}, {"sum", SD_AGG_SUM}, {"min", SD_AGG_MIN},
		   {"max", SD_AGG_MAX},     {"avg", SD_AGG_AVG}};
	char *open = strchr(text, '('), *close = strrchr(text, ')');
	if (!open || !close || close < open || close[1])
		return false;
	*open = *close = '\0';
	while (open[1] == ' ')
		open++;
	for (char *e = close - 1; e > open && *e == ' '; e--)
		*e = '\0';
	for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
		if (!strcasecmp(text, fns[i].name)) {
			out->fn = fns[i].fn;
			out->column = strcmp(open + 1, "*") ? open + 1 : NULL;
			return *(open + 1) && (out->column || out->fn == SD_AGG_COUNT);
		}
	return false;
}

static const char *fn_name(enum sd_agg_fn f)
{
	static const char *const n[] = {"count", "sum", "min", "max", "avg"};
	return n[f];
}

static int result_col(struct sd_query_result *r, const char *name, int type, uint32_t n,
		      void *data, uint8_t *validity, uint32_t *offsets, uint8_t *bytes)
{
	uint32_t c = r->ncols++;
	r->names[c] = strdup(name);
	r->cols[c] = (struct st_vec){.type = (uint8_t)type, .n = n, .validity = validity,
				     .data = data, .offsets = offsets, .bytes = bytes};
	void *own[4] = {data, validity, offsets, bytes};
	for (int i = 0; i < 4; i++)
		if (own[i])
			r->owned[r->nowned++] = own[i];
	return r->names[c] ? ST_OK : ST_ENOMEM;
}

int sd_query(st_store *s, const char *table, struct st_at at, const char *const *group,
	     uint32_t ngroup, const struct sd_agg *aggs, uint32_t naggs, const char *predicate,
	     uint32_t max_groups, struct sd_query_result *out, struct st_err *err)
{
	int rc = ST_OK;
	st_scan *sc = NULL;
	struct groups g = {0};
	struct acc *acc = calloc(naggs + 1, sizeof *acc);
	const char **cols = calloc(ngroup + naggs + 1, sizeof *cols);
	uint32_t ncols = 0, *gid = NULL, gcap = 0, dmap_cap = 0, acap = 0;
	int64_t *dmap = NULL;
	struct code_partials pc = {0};
	memset(out, 0, sizeof *out);
	if (!acc || !cols) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	if (ngroup + naggs == 0) {
		rc = st_seterr(err, ST_EINVAL, "a query needs a group-by column or an aggregate");
		goto out;
	}
	/* Scan the group columns, then each aggregate's column once. */
	for (uint32_t i = 0; i < ngroup; i++)
		cols[ncols++] = group[i];
	for (uint32_t a = 0; a < naggs; a++) {
		acc[a].fn = aggs[a].fn;
		acc[a].col = -1;
		if (!aggs[a].column)
			continue;
		for (uint32_t j = ngroup; j < ncols && acc[a].col < 0; j++)
			if (!strcasecmp(cols[j], aggs[a].column))
				acc[a].col = (int)j;
		if (acc[a].col < 0) {
			acc[a].col = (int)ncols;
			cols[ncols++] = aggs[a].column;
		}
	}
	if ((rc = st_scan_open(s, table, at, cols, ncols, predicate, &sc, err)) != ST_OK)
		goto out;
	/* Types come from the schema at the scanned version, not from a first
	 * batch: a scan of no rows (an empty table, version 0, every file
	 * pruned) has no batch, and its result must still be typed. Batches
	 * carry these same types (older files are widened to them). */
	for (uint32_t a = 0; a < naggs; a++) {
		if (acc[a].col < 0)
			continue;
		int t = st_scan_column_type(sc, (uint32_t)acc[a].col);
		acc[a].type = t;
		bool num = t == ST_TYPE_INT32 || t == ST_TYPE_INT64 || t == ST_TYPE_FLOAT64;
		bool ord = t != ST_TYPE_BOOL;
		if (((acc[a].fn == SD_AGG_SUM || acc[a].fn == SD_AGG_AVG) && !num) ||
		    ((acc[a].fn == SD_AGG_MIN || acc[a].fn == SD_AGG_MAX) && !ord)) {
			rc = st_seterr(err, ST_EINVAL, "%s(%s): column '%s' is %s", fn_name(acc[a].fn),
				       aggs[a].column, aggs[a].column, st_type_name(t));
			goto out;
		}
	}
	const struct st_scan_batch *b;
	while ((rc = st_scan_next(sc, &b, err)) == ST_OK && b) {
		uint32_t nsel = b->nsel;
		if (nsel == 0)
			continue;
		out->rows_matched += nsel;
		if (nsel > gcap) {
			free(gid);
			gcap = nsel;
			if (!(gid = malloc(gcap * sizeof *gid))) {
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
				goto out;
			}
		}
		int64_t id;
		bool gid_zeroed = true;
		if (ngroup == 0) {
			if (g.n == 0) {
				g.tmp.len = 0;
				if (groups_find(&g, 1) < 0) {
					rc = st_seterr(err, ST_ENOMEM, "out of memory");
					goto out;
				}
			}
			gid_zeroed = false; /* zeroed only if a slow path needs it */
		} else if (ngroup == 1 && b->cols[0].dict && partials_fit(acc, naggs, b)) {
			/* Per-code partials, then one group lookup per code. */
			if (!partials_fold(&pc, acc, naggs, b, nsel)) {
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
				goto out;
			}
			const struct st_vec *v = &b->cols[0];
			uint32_t nd = v->dict->n;
			if (!partials_dict(&pc, v->dict)) {
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
				goto out;
			}
			for (uint32_t code = 0; code <= nd; code++) {
				if (!pc.cnt[code])
					continue;
				if ((id = pc.gid[code]) < 0) {
					g.tmp.len = 0;
					if (code < nd) /* the same key as a row with this code */
						key_put(&g, v->dict, code);
					else /* the NULL key */
						st_buf_u8(&g.tmp, 0);
					if ((id = groups_find(&g, max_groups)) < 0)
						goto toomany;
					pc.gid[code] = id;
				}
				if (!accs_fit(acc, naggs, &acap, &g)) {
					rc = st_seterr(err, ST_ENOMEM, "out of memory");
					goto out;
				}
				for (uint32_t a = 0; a < naggs; a++) {
					acc[a].cnt[id] += pc.cnt[code];
					if (acc[a].col >= 0)
						acc[a].f[id] += pc.sum[(size_t)a * (nd + 1) + code];
				}
			}
			continue;
		} else if (ngroup == 1 && b->cols[0].dict) {
			/* One dictionary column: find each dictionary entry's group
			 * once, then map codes to groups. */
			const struct st_vec *v = &b->cols[0];
			uint32_t nd = v->dict->n;
			if (nd + 1 > dmap_cap) {
				free(dmap);
				dmap_cap = nd + 1;
				if (!(dmap = malloc(dmap_cap * sizeof *dmap))) {
					rc = st_seterr(err, ST_ENOMEM, "out of memory");
					goto out;
				}
			}
			for (uint32_t d = 0; d <= nd; d++)
				dmap[d] = -3; /* not looked up yet */
			if (!b->sel && !v->validity) {
				/* Every row, no NULLs: one load per row once an
				 * entry is known. */
				for (uint32_t k = 0; k < nsel; k++) {
					uint32_t code = v->codes[k];
					if (__builtin_expect(dmap[code] == -3, 0)) {
						g.tmp.len = 0;
						key_put(&g, v, k);
						dmap[code] = groups_find(&g, max_groups);
					}
					if ((id = dmap[code]) < 0)
						goto toomany;
					gid[k] = (uint32_t)id;
				}
			} else
			for (uint32_t k = 0; k < nsel; k++) {
				uint32_t r = b->sel ? b->sel[k] : k;
				uint32_t code = st_vec_is_valid(v, r) ? v->codes[r] : nd;
				if (dmap[code] == -3) {
					g.tmp.len = 0;
					key_put(&g, v, r);
					dmap[code] = groups_find(&g, max_groups);
				}
				if ((id = dmap[code]) < 0)
					goto toomany;
				gid[k] = (uint32_t)id;
			}
		} else {
			for (uint32_t k = 0; k < nsel; k++) {
				uint32_t r = b->sel ? b->sel[k] : k;
				g.tmp.len = 0;
				for (uint32_t c = 0; c < ngroup; c++)
					key_put(&g, &b->cols[c], r);
				if ((id = groups_find(&g, max_groups)) < 0)
					goto toomany;
				gid[k] = (uint32_t)id;
			}
		}
		if (!accs_fit(acc, naggs, &acap, &g)) {
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			goto out;
		}
		for (uint32_t a = 0; a < naggs; a++) {
			const struct st_vec *v = acc[a].col >= 0 ? &b->cols[acc[a].col] : NULL;
			bool one = ngroup == 0;
			if (one && !v) {
				acc[a].cnt[0] += nsel; /* count(*) */
				continue;
			}
			if (v && v->type == ST_TYPE_FLOAT64 && !v->validity &&
			    (acc[a].fn == SD_AGG_SUM || acc[a].fn == SD_AGG_AVG)) {
				acc_add_f64(&acc[a], v->data, b->sel, nsel, one ? NULL : gid);
				continue;
			}
			if (one && !gid_zeroed) {
				memset(gid, 0, nsel * sizeof *gid);
				gid_zeroed = true;
			}
			if (!acc_add(&acc[a], v, b->sel, nsel, gid)) {
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
				goto out;
			}
		}
		continue;
toomany:
		rc = id == -2 ? st_seterr(err, ST_ETOOBIG, "the query has more than %u groups; "
					  "narrow it with a predicate", max_groups)
			      : st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	if (rc != ST_OK)
		goto out;
	out->version = st_scan_version(sc);
	/* With no group-by there is always one row, even over no rows. */
	if (ngroup == 0 && g.n == 0) {
		g.tmp.len = 0;
		if (groups_find(&g, 1) < 0) {
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			goto out;
		}
		for (uint32_t a = 0; a < naggs; a++)
			if (!acc_grow(&acc[a], 0, 2)) {
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
				goto out;
			}
		acap = 2;
	}
	/* Build the result vectors. */
	uint32_t n = g.n, nc = ngroup + naggs;
	out->names = calloc(nc, sizeof *out->names);
	out->cols = calloc(nc, sizeof *out->cols);
	out->owned = calloc(4 * (size_t)nc + 1, sizeof *out->owned);
	out->nrows = n;
	if (!out->names || !out->cols || !out->owned) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	/* Decode group keys column by column. */
	int *gtype = calloc(ngroup + 1, sizeof *gtype);
	if (!gtype) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t c = 0; c < ngroup; c++)
		gtype[c] = st_scan_column_type(sc, c);
	for (uint32_t c = 0; c < ngroup && rc == ST_OK; c++) {
		int t = gtype[c];
		bool varlen = st_type_is_varlen(t);
		size_t w = st_type_width(t);
		uint8_t *valid = calloc(n / 8 + 1, 1);
		uint8_t *data = varlen ? NULL : calloc((size_t)n * w + 1, 1);
		uint32_t *offs = varlen ? calloc((size_t)n + 1, sizeof *offs) : NULL;
		struct st_buf bytes = {0};
		bool nulls = false;
		if (!valid || (!varlen && !data) || (varlen && !offs)) {
			free(valid);
			free(data);
			free(offs);
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			break;
		}
		for (uint32_t k = 0; k < n; k++) {
			const uint8_t *p = g.keys.data + g.koff[k];
			for (uint32_t j = 0; j < c; j++) { /* skip earlier columns */
				bool present = *p++;
				if (present && st_type_is_varlen(gtype[j])) {
					uint32_t len = st_get_le32(p);
					p += 4 + len;
				} else if (present) {
					p += st_type_width(gtype[j]);
				}
			}
			bool present = *p++;
			nulls |= !present;
			if (present)
				valid[k >> 3] |= (uint8_t)(1u << (k & 7));
			if (varlen) {
				uint32_t len = present ? st_get_le32(p) : 0;
				if (present)
					st_buf_append(&bytes, p + 4, len);
				offs[k + 1] = (uint32_t)bytes.len;
			} else if (present) {
				memcpy(data + w * k, p, w);
			}
		}
		if (!nulls) {
			free(valid);
			valid = NULL;
		}
		if (varlen && !bytes.data)
			st_buf_append(&bytes, "", 1), bytes.len = 0;
		if (bytes.oom ||
		    result_col(out, group[c], t, n, data, valid, offs, varlen ? bytes.data : NULL))
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
	}
	for (uint32_t a = 0; a < naggs && rc == ST_OK; a++) {
		struct acc *x = &acc[a];
		char name[ST_NAME_MAX + 16];
		snprintf(name, sizeof name, "%s(%s)", fn_name(x->fn), aggs[a].column ? aggs[a].column : "*");
		uint8_t *valid = calloc(n / 8 + 1, 1);
		bool nulls = false;
		if (!valid) {
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			break;
		}
		for (uint32_t k = 0; k < n; k++) {
			bool has = x->fn == SD_AGG_COUNT || x->cnt[k] > 0;
			nulls |= !has;
			if (has)
				valid[k >> 3] |= (uint8_t)(1u << (k & 7));
		}
		if (!nulls) {
			free(valid);
			valid = NULL;
		}
		int t = x->type;
		if (x->fn == SD_AGG_COUNT) {
			int64_t *d = malloc((size_t)n * 8 + 8);
			for (uint32_t k = 0; d && k < n; k++)
				d[k] = (int64_t)x->cnt[k];
			rc = d ? result_col(out, name, ST_TYPE_INT64, n, d, valid, NULL, NULL) : ST_ENOMEM;
		} else if (x->fn == SD_AGG_AVG || (x->fn == SD_AGG_SUM && t == ST_TYPE_FLOAT64) ||
			   ((x->fn == SD_AGG_MIN || x->fn == SD_AGG_MAX) && t == ST_TYPE_FLOAT64)) {
			double *d = malloc((size_t)n * 8 + 8);
			for (uint32_t k = 0; d && k < n; k++)
				d[k] = x->fn == SD_AGG_AVG ? (x->cnt[k] ? x->f[k] / (double)x->cnt[k] : 0)
							   : x->f[k];
			rc = d ? result_col(out, name, ST_TYPE_FLOAT64, n, d, valid, NULL, NULL) : ST_ENOMEM;
		} else if (x->fn == SD_AGG_SUM) {
			int64_t *d = malloc((size_t)n * 8 + 8);
			if (d && n) /* no groups: x->i was never allocated */
				memcpy(d, x->i, (size_t)n * 8);
			rc = d ? result_col(out, name, ST_TYPE_INT64, n, d, valid, NULL, NULL) : ST_ENOMEM;
		} else if (st_type_is_varlen(t)) {
			uint32_t *offs = calloc((size_t)n + 1, sizeof *offs);
			struct st_buf bytes = {0};
			for (uint32_t k = 0; offs && k < n; k++) {
				if (x->s[k])
					st_buf_append(&bytes, x->s[k], x->slen[k]);
				offs[k + 1] = (uint32_t)bytes.len;
			}
			if (!bytes.data)
				st_buf_append(&bytes, "", 1), bytes.len = 0;
			rc = offs && !bytes.oom ? result_col(out, name, t, n, NULL, valid, offs, bytes.data)
						: ST_ENOMEM;
		} else { /* min/max of an integer-like column, back to its own width */
			size_t w = st_type_width(t);
			uint8_t *d = malloc((size_t)n * w + 8);
			for (uint32_t k = 0; d && k < n; k++) {
				if (w == 4) {
					int32_t v = (int32_t)x->i[k];
					memcpy(d + 4 * (size_t)k, &v, 4);
				} else {
					memcpy(d + 8 * (size_t)k, &x->i[k], 8);
				}
			}
			rc = d ? result_col(out, name, t, n, d, valid, NULL, NULL) : ST_ENOMEM;
		}
		if (rc != ST_OK)
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
	}
	free(gtype);
out:
	free(pc.sum);
	free(pc.cnt);
	free(pc.dict);
	free(pc.gid);
	for (uint32_t a = 0; acc && a < naggs; a++)
		acc_fini(&acc[a], acap < g.n ? acap : g.n);
	free(acc);
	free(cols);
	free(gid);
	free(dmap);
	groups_fini(&g);
	if (sc)
		st_scan_stats(sc, &out->read);
	st_scan_close(sc);
	if (rc != ST_OK)
		sd_query_result_fini(out);
	return rc;
}

void sd_query_result_fini(struct sd_query_result *r)
{
	for (uint32_t i = 0; r->names && i < r->ncols; i++)
		free(r->names[i]);
	for (uint32_t i = 0; i < r->nowned; i++)
		free(r->owned[i]);
	free(r->names);
	free(r->cols);
	free(r->owned);
	memset(r, 0, sizeof *r);
}
