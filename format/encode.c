/*
 * format/encode.c — encoding one column chunk (FORMAT.md §5–§7).
 *
 * chunk_encode measures every encoding the column's type allows, keeps the
 * smallest (or the forced one), writes the chunk bytes and the chunk's
 * statistics. Statistics are computed from the values themselves, never
 * from the encoding's side results, so they are right whatever encoding
 * wins. Single-threaded per chunk_scratch; no global state.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "format/bitpack.h"
#include "format/chunk_int.h"

static const char *const enc_names[CHUNK_ENC_COUNT] = {
	"PLAIN", "FOR", "DELTA", "DICT", "DECIMAL", "RLE"};

const char *chunk_encoding_name(int enc)
{
	return enc >= 0 && enc < CHUNK_ENC_COUNT ? enc_names[enc] : "?";
}

bool chunk_encoding_allowed(int enc, int type)
{
	switch (enc) {
	case CHUNK_ENC_PLAIN:
		return st_type_is_supported(type);
	case CHUNK_ENC_FOR:
	case CHUNK_ENC_DELTA:
		return st_type_is_integer(type);
	case CHUNK_ENC_DICT:
		return st_type_is_integer(type) || st_type_is_varlen(type);
	case CHUNK_ENC_DECIMAL:
		return type == ST_TYPE_FLOAT64;
	case CHUNK_ENC_RLE:
		return type == ST_TYPE_BOOL;
	default:
		return false;
	}
}

/* ---- scratch ----------------------------------------------------------- */

void chunk_scratch_fini(struct chunk_scratch *s)
{
	free(s->u64);
	free(s->u32); /* and entries, order */
	free(s->slots);
	memset(s, 0, sizeof *s);
}

/* Room for n rows. u32, entries and order share one allocation, u64 has
 * its own: for a small chunk both stay small enough for malloc's fast
 * path. Their contents do not survive a call. */
static int scratch_reserve(struct chunk_scratch *s, size_t n)
{
	if (n <= s->cap_n)
		return ST_OK;
	size_t cap = bp_padded(n);
	free(s->u64);
	free(s->u32);
	s->u64 = malloc(cap * sizeof *s->u64);
	s->u32 = malloc(cap * 3 * sizeof *s->u32);
	s->bytes -= s->cap_n * (8 + 3 * 4);
	s->cap_n = 0;
	if (!s->u64 || !s->u32) {
		free(s->u64);
		free(s->u32);
		s->u64 = NULL;
		s->u32 = s->entries = s->order = NULL;
		return ST_ENOMEM;
	}
	s->entries = s->u32 + cap;
	s->order = s->entries + cap;
	s->bytes += cap * (8 + 3 * 4);
	s->cap_n = cap;
	return ST_OK;
}

/* ---- helpers ----------------------------------------------------------- */

static inline bool col_valid(const struct chunk_col *c, uint32_t i)
{
	return c->null_count == 0 || ((c->validity[i >> 3] >> (i & 7)) & 1);
}

static inline uint64_t hash64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

static inline uint64_t hash_bytes(const uint8_t *p, uint32_t len)
{
	uint64_t h = 0x9E3779B97F4A7C15ull ^ len, t = 0;
	if (len >= 8) {
		/* Whole words, the last one overlapping its predecessor: no
		 * byte loop for the tail (an in-memory hash, never stored). */
		const uint8_t *last = p + len - 8;
		for (; p < last; p += 8)
			h = hash64(h ^ st_get_le64(p));
		t = st_get_le64(last);
	} else {
		for (uint32_t i = 0; i < len; i++)
			t |= (uint64_t)p[i] << (8 * i);
	}
	return hash64(h ^ t ^ 0x5bd1e995);
}

/* Size of the RLE form of n bits given by get(i); 0 when it is not worth
 * measuring (more runs than a bitmap could ever lose to). */
static size_t rle_size(const uint8_t *bits_or_bytes, bool is_bitmap, uint32_t n)
{
	size_t size = 1;
	uint32_t run = 0;
	int prev = -1;
	for (uint32_t i = 0; i < n; i++) {
		int b = is_bitmap ? (bits_or_bytes[i >> 3] >> (i & 7)) & 1
				  : bits_or_bytes[i] != 0;
		if (b == prev) {
			run++;
			continue;
		}
		if (prev >= 0)
			size += run < 128 ? 1 : run < 16384 ? 2 : run < (1u << 21) ? 3 : 4;
		prev = b;
		run = 1;
	}
	size += run < 128 ? 1 : run < 16384 ? 2 : run < (1u << 21) ? 3 : 4;
	return size;
}

static void rle_put(struct st_buf *b, const uint8_t *bits_or_bytes, bool is_bitmap,
		    uint32_t n)
{
	uint32_t run = 0;
	int prev = -1;
	for (uint32_t i = 0; i < n; i++) {
		int v = is_bitmap ? (bits_or_bytes[i >> 3] >> (i & 7)) & 1
				  : bits_or_bytes[i] != 0;
		if (prev < 0) {
			st_buf_u8(b, (uint8_t)v);
			prev = v;
			run = 1;
		} else if (v == prev) {
			run++;
		} else {
			st_buf_uleb32(b, run);
			prev = v;
			run = 1;
		}
	}
	st_buf_uleb32(b, run);
}

static void put_bp(struct st_buf *b, const uint64_t *v, size_t n, unsigned w)
{
	st_buf_u8(b, (uint8_t)w);
	uint8_t *d = st_buf_reserve(b, bp_bytes(n, w));
	if (d) {
		bp_pack(v, n, w, d);
		b->len += bp_bytes(n, w);
	}
}

static void put_bp32(struct st_buf *b, const uint32_t *v, size_t n, unsigned w)
{
	st_buf_u8(b, (uint8_t)w);
	uint8_t *d = st_buf_reserve(b, bp_bytes(n, w));
	if (d) {
		bp_pack32(v, n, w, d);
		b->len += bp_bytes(n, w);
	}
}

/* ---- statistics -------------------------------------------------------- */

static void stats_set_str(struct st_col_stats *st, bool is_max, const uint8_t *p,
			  uint32_t len)
{
	struct st_value *v = is_max ? &st->max : &st->min;
	uint8_t *buf = is_max ? st->max_buf : st->min_buf;
	bool exact = len <= ST_STAT_PREFIX_MAX;
	uint32_t keep = exact ? len : ST_STAT_PREFIX_MAX;
	if (keep)
		memcpy(buf, p, keep);
	if (!exact && is_max) {
		/* Shortest prefix with its last byte incremented bounds the value. */
		while (keep > 0 && buf[keep - 1] == 0xff)
			keep--;
		if (keep == 0) {
			st->has_minmax = false; /* no finite bound exists */
			return;
		}
		buf[keep - 1]++;
	}
	v->v.s.ptr = buf;
	v->v.s.len = keep;
	if (is_max)
		st->max_exact = exact;
	else
		st->min_exact = exact;
}

/* Stats for a string column given the index of its min and max rows. */
static void stats_strings(const struct chunk_col *c, int64_t imin, int64_t imax,
			  struct st_col_stats *st)
{
	st->min.type = st->max.type = c->type;
	if (imin < 0)
		return;
	st->has_minmax = true;
	stats_set_str(st, false, c->bytes + c->offsets[imin],
		      c->offsets[imin + 1] - c->offsets[imin]);
	stats_set_str(st, true, c->bytes + c->offsets[imax],
		      c->offsets[imax + 1] - c->offsets[imax]);
}

void chunk_put_stats(struct st_buf *b, const struct st_col_stats *st, int type)
{
	/* Built on the stack (this runs several times per segment and file
	 * record): u16 length, flags, null count, dict size, min, max. */
	uint8_t r[2 + 1 + 8 + 4 + 2 * (1 + UINT8_MAX)], *p = r + 2;
	*p++ = (uint8_t)((st->has_minmax ? 1 : 0) | (st->has_minmax && st->min_exact ? 2 : 0) |
			 (st->has_minmax && st->max_exact ? 4 : 0));
	st_put_le64(p, st->null_count);
	st_put_le32(p + 8, st->dict_size);
	p += 12;
	for (int k = 0; st->has_minmax && k < 2; k++) {
		const struct st_value *v = k ? &st->max : &st->min;
		switch (type) {
		case ST_TYPE_BOOL: *p++ = v->v.b; break;
		case ST_TYPE_INT32: case ST_TYPE_DATE: st_put_le32(p, (uint32_t)v->v.i32); p += 4; break;
		case ST_TYPE_INT64: case ST_TYPE_TIMESTAMP: st_put_le64(p, (uint64_t)v->v.i64); p += 8; break;
		case ST_TYPE_FLOAT64: {
			uint64_t bits;
			memcpy(&bits, &v->v.f64, 8);
			st_put_le64(p, bits);
			p += 8;
			break;
		}
		default: {
			size_t n = v->v.s.len < UINT8_MAX ? v->v.s.len : UINT8_MAX; /* u8 length */
			*p++ = (uint8_t)n;
			if (n)
				memcpy(p, v->v.s.ptr, n);
			p += n;
		}
		}
	}
	st_put_le16(r, (uint16_t)(p - r - 2));
	st_buf_append(b, r, (size_t)(p - r));
}

bool chunk_get_stats(struct st_cur *c, int type, struct st_col_stats *st)
{
	uint16_t len = st_cur_u16(c);
	const uint8_t *body = st_cur_take(c, len);
	if (!body)
		return false;
	struct st_cur r;
	st_cur_init(&r, body, len);
	uint8_t flags = st_cur_u8(&r);
	memset(st, 0, sizeof *st);
	st->null_count = st_cur_u64(&r);
	st->dict_size = st_cur_u32(&r);
	st->has_minmax = flags & 1;
	st->min_exact = (flags >> 1) & 1;
	st->max_exact = (flags >> 2) & 1;
	st->min.type = st->max.type = (uint8_t)type;
	if (flags & ~7u)
		return false;
	for (int k = 0; st->has_minmax && k < 2; k++) {
		struct st_value *v = k ? &st->max : &st->min;
		switch (type) {
		case ST_TYPE_BOOL: {
			uint8_t b = st_cur_u8(&r);
			if (b > 1)
				return false;
			v->v.b = b;
			break;
		}
		case ST_TYPE_INT32: case ST_TYPE_DATE: v->v.i32 = (int32_t)st_cur_u32(&r); break;
		case ST_TYPE_INT64: case ST_TYPE_TIMESTAMP: v->v.i64 = (int64_t)st_cur_u64(&r); break;
		case ST_TYPE_FLOAT64: {
			uint64_t bits = st_cur_u64(&r);
			memcpy(&v->v.f64, &bits, 8);
			if (isnan(v->v.f64))
				return false;
			break;
		}
		default: {
			uint8_t n = st_cur_u8(&r);
			const uint8_t *p = st_cur_take(&r, n);
			if (!p || n > ST_STAT_PREFIX_MAX)
				return false;
			uint8_t *buf = k ? st->max_buf : st->min_buf;
			memcpy(buf, p, n);
			v->v.s.ptr = buf;
			v->v.s.len = n;
		}
		}
	}
	if (r.bad)
		return false;
	if (st->has_minmax && st_value_cmp(&st->min, &st->max) > 0)
		return false;
	return true;
}

/* ---- UTF-8 ------------------------------------------------------------- */

bool chunk_utf8_is_valid(const uint8_t *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		/* Fast path: eight ASCII bytes at a time. */
		if (i + 8 <= len && !(st_get_le64(s + i) & 0x8080808080808080ull)) {
			i += 8;
			continue;
		}
		uint8_t c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t need;
		uint32_t cp;
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (len - i <= need)
			return false;
		for (size_t k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += need + 1;
	}
	return true;
}

/* ---- validity ---------------------------------------------------------- */

static void put_validity(const struct chunk_col *c, struct st_buf *out, uint8_t *val_enc)
{
	size_t bm = ((size_t)c->n + 7) / 8;
	size_t rl = rle_size(c->validity, true, c->n);
	if (rl < bm) {
		*val_enc = CHUNK_VAL_RLE;
		st_buf_u32(out, (uint32_t)rl);
		rle_put(out, c->validity, true, c->n);
	} else {
		*val_enc = CHUNK_VAL_BITMAP;
		st_buf_u32(out, (uint32_t)bm);
		uint8_t *d = st_buf_reserve(out, bm);
		if (d) {
			memcpy(d, c->validity, bm);
			if (c->n & 7) /* unused high bits are 0 */
				d[bm - 1] &= (uint8_t)((1u << (c->n & 7)) - 1);
			out->len += bm;
		}
	}
}

/* ---- integers ---------------------------------------------------------- */

static int64_t int_at(const struct chunk_col *c, uint32_t i)
{
	/* Per value: the 4-byte integer types spelled out, no call. */
	if (c->type == ST_TYPE_INT32 || c->type == ST_TYPE_DATE) {
		int32_t v;
		memcpy(&v, c->data + (size_t)i * 4, 4);
		return v;
	}
	int64_t v;
	memcpy(&v, c->data + (size_t)i * 8, 8);
	return v;
}

/* Try a dictionary of the integers in vals; returns its encoded size, or
 * SIZE_MAX when there are more than `limit` distinct values. On success
 * dict holds the sorted values and s->u32 the
 * codes. */
static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static size_t int_dict_try(const int64_t *vals, uint32_t n, size_t width,
			   uint32_t limit, struct chunk_scratch *s, int64_t *dict,
			   uint32_t *d_out)
{
	size_t nslots = 1;
	while (nslots < (size_t)limit * 2)
		nslots <<= 1;
	if (nslots > s->cap_slots) {
		uint32_t *sl = realloc(s->slots, nslots * sizeof *sl);
		if (!sl)
			return SIZE_MAX;
		s->bytes += (nslots - s->cap_slots) * 4;
		s->slots = sl;
		s->cap_slots = nslots;
	}
	memset(s->slots, 0, nslots * sizeof *s->slots);
	uint32_t d = 0;
	for (uint32_t i = 0; i < n; i++) {
		size_t h = hash64((uint64_t)vals[i]) & (nslots - 1);
		for (;;) {
			uint32_t e = s->slots[h];
			if (!e) {
				if (d == limit)
					return SIZE_MAX;
				dict[d] = vals[i];
				s->slots[h] = ++d;
				s->u32[i] = d - 1;
				break;
			}
			if (dict[e - 1] == vals[i]) {
				s->u32[i] = e - 1;
				break;
			}
			h = (h + 1) & (nslots - 1);
		}
	}
	/* Sort the dictionary and renumber the codes in value order. */
	int64_t sorted[4096]; /* d <= limit <= 4096 */
	memcpy(sorted, dict, d * sizeof *dict);
	qsort(sorted, d, sizeof *sorted, cmp_i64);
	for (uint32_t k = 0; k < d; k++) {
		size_t h = hash64((uint64_t)sorted[k]) & (nslots - 1);
		while (dict[s->slots[h] - 1] != sorted[k])
			h = (h + 1) & (nslots - 1);
		s->entries[s->slots[h] - 1] = k; /* entries[old code] = new code */
	}
	for (uint32_t i = 0; i < n; i++)
		s->u32[i] = s->entries[s->u32[i]];
	memcpy(dict, sorted, d * sizeof *dict);
	*d_out = d;
	return 4 + (size_t)d * width + 1 + bp_bytes(n, bp_width(d - 1));
}

static int encode_int(struct chunk_col *c, int force, struct chunk_scratch *s,
		      struct st_buf *out, uint8_t *enc, struct st_col_stats *st)
{
	uint32_t n = c->n;
	size_t width = st_type_width(c->type);
	int64_t *v = (int64_t *)(void *)s->u64;
	/* Widen into scratch, filling null slots with the first valid value. */
	int64_t fill = 0;
	for (uint32_t i = 0; i < n; i++)
		if (col_valid(c, i)) {
			fill = int_at(c, i);
			break;
		}
	for (uint32_t i = 0; i < n; i++)
		v[i] = col_valid(c, i) ? int_at(c, i) : fill;

	int64_t mn = v[0], mx = v[0];
	int64_t dmin = INT64_MAX, dmax = INT64_MIN;
	for (uint32_t i = 1; i < n; i++) {
		mn = v[i] < mn ? v[i] : mn;
		mx = v[i] > mx ? v[i] : mx;
		int64_t d = (int64_t)((uint64_t)v[i] - (uint64_t)v[i - 1]);
		dmin = d < dmin ? d : dmin;
		dmax = d > dmax ? d : dmax;
	}
	if (n == 1)
		dmin = dmax = 0;
	if (c->null_count < n) {
		st->has_minmax = st->min_exact = st->max_exact = true;
		if (width == 4) {
			st->min.v.i32 = (int32_t)mn;
			st->max.v.i32 = (int32_t)mx;
		} else {
			st->min.v.i64 = mn;
			st->max.v.i64 = mx;
		}
	}
	unsigned wf = bp_width((uint64_t)mx - (uint64_t)mn);
	unsigned wd = bp_width((uint64_t)dmax - (uint64_t)dmin);
	size_t sz[CHUNK_ENC_COUNT];
	for (int k = 0; k < CHUNK_ENC_COUNT; k++)
		sz[k] = SIZE_MAX;
	sz[CHUNK_ENC_PLAIN] = (size_t)n * width;
	sz[CHUNK_ENC_FOR] = 9 + bp_bytes(n, wf);
	sz[CHUNK_ENC_DELTA] = 17 + bp_bytes(n - 1, wd);

	/* A dictionary can only win with fewer distinct values than 2^(w-1)
	 * of the best packing so far; stop counting past that (or 4096). */
	unsigned wbest = wf < wd ? wf : wd;
	int64_t dict[4096];
	uint32_t d = 0;
	if (force == CHUNK_ENC_DICT || (force < 0 && wbest > 4)) {
		uint32_t limit = force == CHUNK_ENC_DICT || wbest - 1 >= 12 ? 4096
			       : 1u << (wbest - 1);
		sz[CHUNK_ENC_DICT] = int_dict_try(v, n, width, limit, s, dict, &d);
	}
	int best = CHUNK_ENC_PLAIN;
	if (force >= 0 && sz[force] != SIZE_MAX) {
		best = force;
	} else {
		for (int k = 0; k < CHUNK_ENC_COUNT; k++)
			if (sz[k] < sz[best])
				best = k;
	}
	*enc = (uint8_t)best;
	if (best == CHUNK_ENC_DICT)
		st->dict_size = d;

	uint64_t *u = s->u64;
	switch (best) {
	case CHUNK_ENC_PLAIN: {
		uint8_t *p = st_buf_reserve(out, (size_t)n * width);
		if (!p)
			break;
		for (uint32_t i = 0; i < n; i++, p += width) {
			if (width == 4)
				st_put_le32(p, (uint32_t)v[i]);
			else
				st_put_le64(p, (uint64_t)v[i]);
		}
		out->len += (size_t)n * width;
		break;
	}
	case CHUNK_ENC_FOR:
		st_buf_u64(out, (uint64_t)mn);
		for (uint32_t i = 0; i < n; i++)
			u[i] = (uint64_t)v[i] - (uint64_t)mn; /* in place: v aliases u */
		put_bp(out, u, n, wf);
		break;
	case CHUNK_ENC_DELTA: {
		st_buf_u64(out, (uint64_t)v[0]);
		st_buf_u64(out, (uint64_t)dmin);
		uint64_t prev = (uint64_t)v[0];
		for (uint32_t i = 1; i < n; i++) {
			uint64_t cur = (uint64_t)v[i];
			u[i - 1] = cur - prev - (uint64_t)dmin;
			prev = cur;
		}
		put_bp(out, u, n - 1, wd);
		break;
	}
	case CHUNK_ENC_DICT:
		st_buf_u32(out, d);
		for (uint32_t k = 0; k < d; k++) {
			if (width == 4)
				st_buf_u32(out, (uint32_t)dict[k]);
			else
				st_buf_u64(out, (uint64_t)dict[k]);
		}
		put_bp32(out, s->u32, n, bp_width(d - 1));
		break;
	}
	return out->oom ? ST_ENOMEM : ST_OK;
}

/* ---- float64 ----------------------------------------------------------- */

/* 10^e, exact as doubles for e <= 22; DECIMAL uses e <= 18. */
const double chunk_pow10[19] = {
	1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9,
	1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18};

static inline bool same_bits(double a, double b)
{
	uint64_t x, y;
	memcpy(&x, &a, 8);
	memcpy(&y, &b, 8);
	return x == y;
}

/* The DECIMAL form of v at exponent e, when v round-trips exactly. */
static inline bool decimal_of(double v, int e, int64_t *k)
{
	double s = v * chunk_pow10[e];
	if (!(fabs(s) < 9007199254740992.0)) /* 2^53; also false for NaN */
		return false;
	*k = llrint(s);
	return same_bits((double)*k / chunk_pow10[e], v);
}

static int encode_f64(struct chunk_col *c, int force, struct chunk_scratch *s,
		      struct st_buf *out, uint8_t *enc, struct st_col_stats *st)
{
	uint32_t n = c->n;
	const double *v = (const double *)(void *)c->data;
	double mn = INFINITY, mx = -INFINITY;
	bool nan = false, any = false;
	int e = 0;
	bool dec = force < 0 || force == CHUNK_ENC_DECIMAL;
	for (uint32_t i = 0; i < n; i++) {
		if (!col_valid(c, i))
			continue;
		double x;
		memcpy(&x, &v[i], 8);
		any = true;
		if (isnan(x)) {
			nan = true;
		} else {
			mn = x < mn ? x : mn;
			mx = x > mx ? x : mx;
		}
		int64_t k;
		while (dec && !decimal_of(x, e, &k))
			if (++e > 18)
				dec = false;
	}
	if (any && !nan) {
		st->has_minmax = st->min_exact = st->max_exact = true;
		st->min.v.f64 = mn;
		st->max.v.f64 = mx;
	}
	/* Second pass: the k of every value at the final exponent, verified. */
	int64_t kmin = INT64_MAX, kmax = INT64_MIN;
	int64_t *k = (int64_t *)(void *)s->u64;
	for (uint32_t i = 0; dec && i < n; i++) {
		if (!col_valid(c, i))
			continue;
		double x;
		memcpy(&x, &v[i], 8);
		if (!decimal_of(x, e, &k[i])) {
			dec = false;
			break;
		}
		kmin = k[i] < kmin ? k[i] : kmin;
		kmax = k[i] > kmax ? k[i] : kmax;
	}
	if (dec && !any)
		kmin = kmax = 0;
	if (dec && (uint64_t)kmax - (uint64_t)kmin >= (1ull << 52))
		dec = false;
	unsigned w = dec ? bp_width((uint64_t)kmax - (uint64_t)kmin) : 0;
	if (dec && 10 + bp_bytes(n, w) < (size_t)n * 8) {
		*enc = CHUNK_ENC_DECIMAL;
		st_buf_u8(out, (uint8_t)e);
		st_buf_u64(out, (uint64_t)kmin);
		uint64_t *u = s->u64;
		for (uint32_t i = 0; i < n; i++)
			u[i] = col_valid(c, i) ? (uint64_t)k[i] - (uint64_t)kmin : 0;
		put_bp(out, u, n, w);
	} else {
		*enc = CHUNK_ENC_PLAIN;
		uint8_t *p = st_buf_reserve(out, (size_t)n * 8);
		if (p) {
			for (uint32_t i = 0; i < n; i++) {
				uint64_t bits = 0;
				if (col_valid(c, i))
					memcpy(&bits, &v[i], 8);
				st_put_le64(p + (size_t)i * 8, bits);
			}
			out->len += (size_t)n * 8;
		}
	}
	return out->oom ? ST_ENOMEM : ST_OK;
}

/* ---- bool -------------------------------------------------------------- */

static int encode_bool(struct chunk_col *c, int force, struct st_buf *out,
		       uint8_t *enc, struct st_col_stats *st)
{
	uint32_t n = c->n;
	bool seen[2] = {false, false};
	for (uint32_t i = 0; i < n; i++) {
		if (!col_valid(c, i))
			c->data[i] = 0;
		else
			seen[c->data[i] != 0] = true;
	}
	if (seen[0] || seen[1]) {
		st->has_minmax = st->min_exact = st->max_exact = true;
		st->min.v.b = !seen[0];
		st->max.v.b = seen[1];
	}
	size_t bm = ((size_t)n + 7) / 8;
	size_t rl = rle_size(c->data, false, n);
	if (force == CHUNK_ENC_RLE || (force < 0 && rl < bm)) {
		*enc = CHUNK_ENC_RLE;
		rle_put(out, c->data, false, n);
	} else {
		*enc = CHUNK_ENC_PLAIN;
		uint8_t *p = st_buf_reserve(out, bm);
		if (p) {
			memset(p, 0, bm);
			for (uint32_t i = 0; i < n; i++)
				p[i >> 3] |= (uint8_t)((c->data[i] != 0) << (i & 7));
			out->len += bm;
		}
	}
	return out->oom ? ST_ENOMEM : ST_OK;
}

/* ---- strings and binary ------------------------------------------------ */

static inline int str_cmp_rows(const struct chunk_col *c, uint32_t a, uint32_t b)
{
	uint32_t la = c->offsets[a + 1] - c->offsets[a];
	uint32_t lb = c->offsets[b + 1] - c->offsets[b];
	uint32_t m = la < lb ? la : lb;
	int r = m ? memcmp(c->bytes + c->offsets[a], c->bytes + c->offsets[b], m) : 0;
	return r ? r : (la > lb) - (la < lb);
}

/* Whether n bytes at p and q are equal: two overlapping words for 8..16
 * bytes (short categories: no call), memcmp otherwise. */
static inline bool bytes_eq(const uint8_t *p, const uint8_t *q, uint32_t n)
{
	if (n >= 8 && n <= 16)
		return st_get_le64(p) == st_get_le64(q) &&
		       st_get_le64(p + n - 8) == st_get_le64(q + n - 8);
	return !n || !memcmp(p, q, n);
}

static inline bool str_eq_rows(const struct chunk_col *c, uint32_t a, uint32_t b)
{
	uint32_t la = c->offsets[a + 1] - c->offsets[a];
	return la == c->offsets[b + 1] - c->offsets[b] &&
	       bytes_eq(c->bytes + c->offsets[a], c->bytes + c->offsets[b], la);
}

/* qsort has no context argument in C11: the column being sorted. */
static _Thread_local const struct chunk_col *sort_col;

static int cmp_rows(const void *a, const void *b)
{
	return str_cmp_rows(sort_col, *(const uint32_t *)a, *(const uint32_t *)b);
}

void dict_memo_fini(struct dict_memo *m)
{
	free(m->off);
	free(m->bytes);
	free(m->slots);
	free(m->mark);
	memset(m, 0, sizeof *m);
}

/* Index of the value of row i in memo m, or UINT32_MAX. */
static uint32_t memo_find(const struct dict_memo *m, const struct chunk_col *c, uint32_t i)
{
	const uint8_t *p = c->bytes + c->offsets[i];
	uint32_t len = c->offsets[i + 1] - c->offsets[i];
	for (size_t h = hash_bytes(p, len) & (m->nslots - 1);; h = (h + 1) & (m->nslots - 1)) {
		uint32_t e = m->slots[h];
		if (!e)
			return UINT32_MAX;
		uint32_t k = e - 1;
		if (m->off[k + 1] - m->off[k] == len && bytes_eq(m->bytes + m->off[k], p, len))
			return k;
	}
}

/* Put the d entries of s in value order (s->order) from memo m; false,
 * leaving m as it was, when some value is not in m. */
static bool memo_order(struct dict_memo *m, const struct chunk_col *c, struct chunk_scratch *s,
		       uint32_t d)
{
	if (m->d < d || !m->nslots)
		return false;
	for (uint32_t k = 0; k < d; k++) {
		uint32_t at = memo_find(m, c, s->entries[k]);
		if (at == UINT32_MAX) {
			while (k--)
				m->mark[s->order[k]] = 0;
			return false;
		}
		s->order[k] = at;
		m->mark[at] = k + 1;
	}
	uint32_t j = 0;
	for (uint32_t at = 0; j < d && at < m->d; at++)
		if (m->mark[at]) {
			s->order[j++] = s->entries[m->mark[at] - 1];
			m->mark[at] = 0;
		}
	return true;
}

/* Remember the sorted dictionary (s->order, d values of c) in m. Out of
 * memory leaves m empty: the next chunk sorts. */
static void memo_store(struct dict_memo *m, const struct chunk_col *c,
		       const struct chunk_scratch *s, uint32_t d)
{
	size_t total = 0;
	for (uint32_t k = 0; k < d; k++)
		total += c->offsets[s->order[k] + 1] - c->offsets[s->order[k]];
	uint32_t nslots = 16;
	while (nslots < 2 * d)
		nslots *= 2;
	if (d + 1 > m->cap || total > m->cap_bytes || nslots > m->nslots) {
		dict_memo_fini(m);
		m->off = malloc((d + 1) * sizeof *m->off);
		m->mark = calloc(d + 1, sizeof *m->mark);
		m->bytes = malloc(total + 1);
		m->slots = malloc(nslots * sizeof *m->slots);
		if (!m->off || !m->mark || !m->bytes || !m->slots) {
			dict_memo_fini(m);
			return;
		}
		m->cap = d + 1;
		m->cap_bytes = total + 1;
		m->nslots = nslots;
	}
	memset(m->slots, 0, m->nslots * sizeof *m->slots);
	m->off[0] = 0;
	for (uint32_t k = 0; k < d; k++) {
		uint32_t r = s->order[k], len = c->offsets[r + 1] - c->offsets[r];
		if (len)
			memcpy(m->bytes + m->off[k], c->bytes + c->offsets[r], len);
		m->off[k + 1] = m->off[k] + len;
		size_t h = hash_bytes(m->bytes + m->off[k], len) & (m->nslots - 1);
		while (m->slots[h])
			h = (h + 1) & (m->nslots - 1);
		m->slots[h] = k + 1;
	}
	m->d = d;
}

/* Build the dictionary of a string column: entries (first row of each
 * distinct value, in value order) and the codes in s->u32. Returns the
 * distinct count, or UINT32_MAX when it passes limit or memory runs out. */
static uint32_t str_dict_build(const struct chunk_col *c, uint32_t limit,
			       struct chunk_scratch *s)
{
	size_t nslots = 1024;
	uint32_t d = 0;
	for (;;) {
		if (nslots > s->cap_slots) {
			uint32_t *sl = realloc(s->slots, nslots * sizeof *sl);
			if (!sl)
				return UINT32_MAX;
			s->bytes += (nslots - s->cap_slots) * 4;
			s->slots = sl;
			s->cap_slots = nslots;
		}
		memset(s->slots, 0, nslots * sizeof *s->slots);
		d = 0;
		bool grow = false;
		for (uint32_t i = 0; i < c->n && !grow; i++) {
			if (!col_valid(c, i)) {
				s->u32[i] = 0;
				continue;
			}
			const uint8_t *p = c->bytes + c->offsets[i];
			uint32_t len = c->offsets[i + 1] - c->offsets[i];
			size_t h = hash_bytes(p, len) & (nslots - 1);
			for (;;) {
				uint32_t e = s->slots[h];
				if (!e) {
					if (d == limit)
						return UINT32_MAX;
					if ((size_t)(d + 1) * 2 > nslots) {
						grow = true;
						break;
					}
					s->entries[d] = i;
					s->slots[h] = ++d;
					s->u32[i] = d - 1;
					break;
				}
				if (str_eq_rows(c, s->entries[e - 1], i)) {
					s->u32[i] = e - 1;
					break;
				}
				h = (h + 1) & (nslots - 1);
			}
		}
		if (!grow)
			break;
		nslots *= 2;
	}
	/* Sort entries by value (or take the order of the last chunk's
	 * dictionary); renumber codes so code order is value order. */
	if (!c->memo || !memo_order(c->memo, c, s, d)) {
		memcpy(s->order, s->entries, d * sizeof *s->order);
		sort_col = c;
		qsort(s->order, d, sizeof *s->order, cmp_rows);
		if (c->memo)
			memo_store(c->memo, c, s, d);
	}
	/* entries (no longer needed: order holds the rows) becomes the map
	 * old code -> new code; the old code of order[k] is u32[order[k]]. */
	for (uint32_t k = 0; k < d; k++)
		s->entries[s->u32[s->order[k]]] = k;
	for (uint32_t i = 0; i < c->n; i++)
		s->u32[i] = col_valid(c, i) ? s->entries[s->u32[i]] : 0;
	return d;
}

static int encode_str(struct chunk_col *c, int force, struct chunk_scratch *s,
		      struct st_buf *out, uint8_t *enc, struct st_col_stats *st)
{
	uint32_t n = c->n;
	size_t total = c->offsets[n] - c->offsets[0];
	size_t plain = (size_t)n * 4 + total;
	uint32_t d = UINT32_MAX;
	if (force < 0 || force == CHUNK_ENC_DICT)
		d = str_dict_build(c, force == CHUNK_ENC_DICT ? n : n / 2 + 1, s);
	size_t dsize = SIZE_MAX;
	if (d != UINT32_MAX && d > 0) {
		size_t dbytes = 0;
		for (uint32_t k = 0; k < d; k++)
			dbytes += c->offsets[s->order[k] + 1] - c->offsets[s->order[k]];
		dsize = 4 + (size_t)d * 4 + dbytes + 1 + bp_bytes(n, bp_width(d - 1));
	}
	if (d != UINT32_MAX && d > 0) {
		stats_strings(c, s->order[0], s->order[d - 1], st);
	} else {
		int64_t imin = -1, imax = -1;
		for (uint32_t i = 0; i < n; i++) {
			if (!col_valid(c, i))
				continue;
			if (imin < 0 || str_cmp_rows(c, i, (uint32_t)imin) < 0)
				imin = i;
			if (imax < 0 || str_cmp_rows(c, i, (uint32_t)imax) > 0)
				imax = i;
		}
		stats_strings(c, imin, imax, st);
	}
	if (dsize < plain || (force == CHUNK_ENC_DICT && dsize != SIZE_MAX)) {
		*enc = CHUNK_ENC_DICT;
		st->dict_size = d;
		st_buf_u32(out, d);
		for (uint32_t k = 0; k < d; k++)
			st_buf_u32(out, c->offsets[s->order[k] + 1] - c->offsets[s->order[k]]);
		for (uint32_t k = 0; k < d; k++)
			st_buf_append(out, c->bytes + c->offsets[s->order[k]],
				      c->offsets[s->order[k] + 1] - c->offsets[s->order[k]]);
		put_bp32(out, s->u32, n, bp_width(d - 1));
	} else {
		*enc = CHUNK_ENC_PLAIN;
		for (uint32_t i = 0; i < n; i++)
			st_buf_u32(out, c->offsets[i + 1] - c->offsets[i]);
		st_buf_append(out, c->bytes + c->offsets[0], total);
	}
	return out->oom ? ST_ENOMEM : ST_OK;
}

/* ---- entry point ------------------------------------------------------- */

int chunk_encode(struct chunk_col *col, int force_enc, struct chunk_scratch *s,
		 struct st_buf *out, uint8_t *enc, uint8_t *val_enc,
		 struct st_col_stats *stats)
{
	int rc = scratch_reserve(s, col->n);
	if (rc != ST_OK)
		return rc;
	/* A string column of empty values may come without bytes: give it an
	 * empty array, so that offsets into it are pointer arithmetic on an
	 * object (all of them are 0), never on NULL. */
	if (!col->bytes)
		col->bytes = (const uint8_t *)"";
	if (force_enc >= 0 && !chunk_encoding_allowed(force_enc, col->type))
		force_enc = -1;
	memset(stats, 0, sizeof *stats);
	stats->rows = col->n;
	stats->null_count = col->null_count;
	stats->min.type = stats->max.type = col->type;
	*val_enc = CHUNK_VAL_NONE;
	if (col->null_count > 0)
		put_validity(col, out, val_enc);
	switch (col->type) {
	case ST_TYPE_BOOL:
		rc = encode_bool(col, force_enc, out, enc, stats);
		break;
	case ST_TYPE_FLOAT64:
		rc = encode_f64(col, force_enc, s, out, enc, stats);
		break;
	case ST_TYPE_STRING:
	case ST_TYPE_BINARY:
		rc = encode_str(col, force_enc, s, out, enc, stats);
		break;
	default:
		rc = encode_int(col, force_enc, s, out, enc, stats);
		break;
	}
	return rc;
}
