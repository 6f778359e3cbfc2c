/*
 * format/decode.c — decoding one column chunk (FORMAT.md §5, §6).
 *
 * Every length is checked against the end of the chunk's bytes before it
 * is used (st_cur), every section must end exactly where the next begins,
 * and dictionary codes are checked against the dictionary size, so a
 * hostile chunk gives ST_ECORRUPT and never an out-of-bounds access.
 * The value loops work on whole chunks and allocate nothing: buffers live
 * in struct chunk_out and are reused across calls.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/bitpack.h"
#include "format/chunk_int.h"

void chunk_out_fini(struct chunk_out *o)
{
	free(o->vals);
	free(o->tmp);
	free(o->validity);
	free(o->dict_offsets);
	free(o->dict_vals);
	memset(o, 0, sizeof *o);
}

/* Grow *p to at least n bytes (contents not kept). */
static int grow(void **p, size_t *cap, size_t n)
{
	if (n <= *cap)
		return ST_OK;
	free(*p);
	*p = malloc(n);
	if (!*p) {
		*cap = 0;
		return ST_ENOMEM;
	}
	*cap = n;
	return ST_OK;
}

#define CORRUPT(off, ...)                                                    \
	do {                                                                 \
		st_seterr(err, ST_ECORRUPT, __VA_ARGS__);                    \
		size_t l_ = strlen(err ? err->msg : "");                     \
		if (err && l_ < sizeof err->msg)                             \
			snprintf(err->msg + l_, sizeof err->msg - l_,        \
				 " (at byte %zu of the chunk)", (size_t)(off)); \
		rc = ST_ECORRUPT;                                            \
		goto out;                                                    \
	} while (0)

static size_t popcount_bits(const uint8_t *b, uint32_t n)
{
	size_t c = 0, full = n / 8;
	for (size_t i = 0; i < full; i++)
		c += (size_t)__builtin_popcount(b[i]);
	if (n & 7)
		c += (size_t)__builtin_popcount(b[full] & ((1u << (n & 7)) - 1));
	return c;
}

/* Expand an RLE section (§6.7) of n values into one byte per value (bytes)
 * or into a bitmap. False when malformed. */
static bool rle_expand(struct st_cur *c, uint32_t n, uint8_t *out, bool bitmap)
{
	uint8_t v = st_cur_u8(c);
	uint32_t i = 0;
	if (c->bad || v > 1)
		return false;
	if (bitmap)
		memset(out, 0, ((size_t)n + 7) / 8);
	while (i < n) {
		uint32_t run = st_cur_uleb32(c);
		if (c->bad || run == 0 || run > n - i)
			return false;
		if (bitmap) {
			for (uint32_t k = 0; v && k < run; k++)
				out[(i + k) >> 3] |= (uint8_t)(1u << ((i + k) & 7));
		} else {
			memset(out + i, v, run);
		}
		i += run;
		v ^= 1;
	}
	return true;
}

/* Read a BP(n, w) section header and check its size; returns the packed
 * bytes or NULL. */
static const uint8_t *take_bp(struct st_cur *c, size_t n, unsigned maxw, unsigned *w)
{
	*w = st_cur_u8(c);
	if (c->bad || *w > maxw) {
		c->bad = true;
		return NULL;
	}
	return st_cur_take(c, bp_bytes(n, *w));
}


/* Integers (FOR, DELTA, PLAIN, DICT) into o->vals as int32 or int64. */
static int decode_int(int type, int enc, uint32_t n, struct st_cur *c,
		      struct chunk_out *o, struct st_err *err)
{
	int rc = ST_OK;
	size_t width = st_type_width(type);
	size_t pad = bp_padded(n) + 64;
	unsigned w;
	if ((rc = grow(&o->vals, &o->cap_vals, pad * 8)) != ST_OK)
		goto out;
	if (enc == CHUNK_ENC_PLAIN) {
		const uint8_t *p = st_cur_take(c, (size_t)n * width);
		if (!p)
			CORRUPT(st_cur_off(c), "PLAIN values are cut short");
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
		memcpy(o->vals, p, (size_t)n * width);
#else
		for (uint32_t i = 0; i < n; i++) {
			if (width == 4)
				((uint32_t *)o->vals)[i] = st_get_le32(p + 4 * i);
			else
				((uint64_t *)o->vals)[i] = st_get_le64(p + 8 * i);
		}
#endif
	} else if (enc == CHUNK_ENC_FOR) {
		uint64_t base = st_cur_u64(c);
		const uint8_t *p = take_bp(c, n, 64, &w);
		if (!p)
			CORRUPT(st_cur_off(c), "FOR section is malformed (width or size)");
		if (width == 8) {
			uint64_t *v = o->vals;
			bp_unpack64(p, n, w, v);
			for (uint32_t i = 0; i < n; i++)
				v[i] += base;
		} else if (w <= 32) {
			uint32_t *v = o->vals;
			bp_unpack32(p, n, w, v);
			for (uint32_t i = 0; i < n; i++)
				v[i] += (uint32_t)base;
		} else {
			CORRUPT(st_cur_off(c), "FOR width %u is too wide for a 32-bit column", w);
		}
	} else if (enc == CHUNK_ENC_DELTA) {
		uint64_t first = st_cur_u64(c);
		uint64_t dmin = st_cur_u64(c);
		const uint8_t *p = take_bp(c, n - 1, 64, &w);
		if (!p)
			CORRUPT(st_cur_off(c), "DELTA section is malformed (width or size)");
		if (width == 8) {
			uint64_t *v = o->vals;
			if (w == 0) {
				for (uint32_t i = 0; i < n; i++)
					v[i] = first + (uint64_t)i * dmin;
			} else {
				bp_unpack64(p, n - 1, w, v + 1);
				v[0] = first;
				for (uint32_t i = 1; i < n; i++)
					v[i] += v[i - 1] + dmin;
			}
		} else {
			uint32_t *v = o->vals;
			uint32_t f32 = (uint32_t)first, d32 = (uint32_t)dmin;
			if (w <= 32) {
				bp_unpack32(p, n - 1, w, v + 1);
			} else {
				if ((rc = grow((void **)&o->tmp, &o->cap_tmp, pad * 8)) != ST_OK)
					goto out;
				bp_unpack64(p, n - 1, w, o->tmp);
				for (uint32_t i = 1; i < n; i++)
					v[i] = (uint32_t)o->tmp[i - 1];
			}
			v[0] = f32;
			for (uint32_t i = 1; i < n; i++)
				v[i] += v[i - 1] + d32;
		}
	} else { /* DICT */
		uint32_t d = st_cur_u32(c);
		if (c->bad || d == 0 || d > n)
			CORRUPT(st_cur_off(c), "dictionary size %u is out of range 1..%u", d, n);
		const uint8_t *dv = st_cur_take(c, (size_t)d * width);
		const uint8_t *p = take_bp(c, n, 32, &w);
		if (!dv || !p)
			CORRUPT(st_cur_off(c), "DICT section is malformed");
		uint32_t *codes = (uint32_t *)(void *)o->tmp;
		if ((rc = grow((void **)&o->tmp, &o->cap_tmp, pad * 8)) != ST_OK)
			goto out;
		codes = (uint32_t *)(void *)o->tmp;
		bp_unpack32(p, n, w, codes);
		uint32_t mx = 0;
		for (uint32_t i = 0; i < n; i++)
			mx = codes[i] > mx ? codes[i] : mx;
		if (mx >= d)
			CORRUPT(st_cur_off(c), "dictionary code %u is not below the dictionary size %u", mx, d);
		for (uint32_t i = 0; i < n; i++) {
			if (width == 8)
				((uint64_t *)o->vals)[i] = st_get_le64(dv + 8 * (size_t)codes[i]);
			else
				((uint32_t *)o->vals)[i] = st_get_le32(dv + 4 * (size_t)codes[i]);
		}
	}
	o->vec.data = o->vals;
out:
	return rc;
}

static int decode_f64(int enc, uint32_t n, struct st_cur *c, struct chunk_out *o,
		      struct st_err *err)
{
	int rc = ST_OK;
	if ((rc = grow(&o->vals, &o->cap_vals, (bp_padded(n) + 64) * 8)) != ST_OK)
		goto out;
	if (enc == CHUNK_ENC_PLAIN) {
		const uint8_t *p = st_cur_take(c, (size_t)n * 8);
		if (!p)
			CORRUPT(st_cur_off(c), "PLAIN values are cut short");
		uint64_t *v = o->vals;
		for (uint32_t i = 0; i < n; i++)
			v[i] = st_get_le64(p + 8 * (size_t)i);
	} else {
		uint8_t e = st_cur_u8(c);
		int64_t base = (int64_t)st_cur_u64(c);
		unsigned w;
		const uint8_t *p = take_bp(c, n, 52, &w);
		if (!p || e > 18)
			CORRUPT(st_cur_off(c), "DECIMAL section is malformed (exponent, width or size)");
		uint64_t *u = o->vals;
		double *v = o->vals;
		bp_unpack64(p, n, w, u);
		/* u < 2^52: OR-ing it into the mantissa of 2^52 and subtracting
		 * 2^52 converts it exactly, in a loop the compiler vectorizes. */
		const double two52 = 4503599627370496.0, fbase = (double)base;
		const double p10 = chunk_pow10[e];
		for (uint32_t i = 0; i < n; i++) {
			uint64_t bits = u[i] | 0x4330000000000000ull;
			double x;
			memcpy(&x, &bits, 8);
			v[i] = ((x - two52) + fbase) / p10;
		}
	}
	o->vec.data = o->vals;
out:
	return rc;
}

static int decode_bool(int enc, uint32_t n, struct st_cur *c, struct chunk_out *o,
		       struct st_err *err)
{
	int rc = ST_OK;
	if ((rc = grow(&o->vals, &o->cap_vals, (size_t)n + 64)) != ST_OK)
		goto out;
	uint8_t *v = o->vals;
	if (enc == CHUNK_ENC_PLAIN) {
		const uint8_t *p = st_cur_take(c, ((size_t)n + 7) / 8);
		if (!p)
			CORRUPT(st_cur_off(c), "bool bitmap is cut short");
		if ((n & 7) && (p[n / 8] >> (n & 7)))
			CORRUPT(st_cur_off(c), "bool bitmap has bits set past the last row");
		for (uint32_t i = 0; i < n; i++)
			v[i] = (p[i >> 3] >> (i & 7)) & 1;
	} else if (!rle_expand(c, n, v, false)) {
		CORRUPT(st_cur_off(c), "bool RLE runs are malformed or do not sum to %u", n);
	}
	o->vec.data = v;
out:
	return rc;
}

/* n lengths then bytes: offsets into *offs (n + 1 entries), bytes borrowed. */
static bool plain_strings(struct st_cur *c, uint32_t n, uint32_t *offs,
			  const uint8_t **bytes, size_t *total)
{
	const uint8_t *lens = st_cur_take(c, (size_t)n * 4);
	if (!lens)
		return false;
	uint64_t sum = 0;
	offs[0] = 0;
	for (uint32_t i = 0; i < n; i++) {
		sum += st_get_le32(lens + 4 * (size_t)i);
		if (sum > UINT32_MAX)
			return false;
		offs[i + 1] = (uint32_t)sum;
	}
	*bytes = st_cur_take(c, sum);
	*total = sum;
	return *bytes != NULL;
}

static int decode_str(int type, int enc, uint32_t n, struct st_cur *c,
		      struct chunk_out *o, struct st_err *err)
{
	int rc = ST_OK;
	size_t total;
	if ((rc = grow(&o->vals, &o->cap_vals, (bp_padded(n) + 64) * 4)) != ST_OK)
		goto out;
	if (enc == CHUNK_ENC_PLAIN) {
		if (!plain_strings(c, n, o->vals, &o->vec.bytes, &total))
			CORRUPT(st_cur_off(c), "PLAIN string lengths run past the chunk");
		o->vec.offsets = o->vals;
		if (type == ST_TYPE_STRING && !chunk_utf8_is_valid(o->vec.bytes, total))
			CORRUPT(st_cur_off(c), "string bytes are not valid UTF-8");
		goto out;
	}
	uint32_t d = st_cur_u32(c);
	if (c->bad || d == 0 || d > n)
		CORRUPT(st_cur_off(c), "dictionary size %u is out of range 1..%u", d, n);
	if ((rc = grow((void **)&o->dict_offsets, &o->cap_dict, ((size_t)d + 1) * 4)) != ST_OK)
		goto out;
	const uint8_t *dbytes;
	if (!plain_strings(c, d, o->dict_offsets, &dbytes, &total))
		CORRUPT(st_cur_off(c), "dictionary string lengths run past the chunk");
	if (type == ST_TYPE_STRING && !chunk_utf8_is_valid(dbytes, total))
		CORRUPT(st_cur_off(c), "dictionary strings are not valid UTF-8");
	unsigned w;
	const uint8_t *p = take_bp(c, n, 32, &w);
	if (!p)
		CORRUPT(st_cur_off(c), "dictionary codes are malformed (width or size)");
	uint32_t *codes = o->vals;
	bp_unpack32(p, n, w, codes);
	if (d < (1ull << w)) {
		uint32_t mx = 0;
		for (uint32_t i = 0; i < n; i++)
			mx = codes[i] > mx ? codes[i] : mx;
		if (mx >= d)
			CORRUPT(st_cur_off(c), "dictionary code %u is not below the dictionary size %u", mx, d);
	}
	memset(&o->dict, 0, sizeof o->dict);
	o->dict.type = (uint8_t)type;
	o->dict.n = d;
	o->dict.offsets = o->dict_offsets;
	o->dict.bytes = dbytes;
	o->vec.codes = codes;
	o->vec.dict = &o->dict;
out:
	return rc;
}

int chunk_decode(int type, int enc, int val_enc, uint32_t n,
		 uint32_t null_count, const uint8_t *body, size_t len,
		 struct chunk_out *o, struct st_err *err)
{
	int rc = ST_OK;
	struct st_cur c;
	st_cur_init(&c, body, len);
	memset(&o->vec, 0, sizeof o->vec);
	o->vec.type = (uint8_t)type;
	o->vec.n = n;
	if (enc >= CHUNK_ENC_COUNT) {
		rc = st_seterr(err, ST_EVERSION,
			       "encoding id %d is unknown to this reader (written by a newer strata?)", enc);
		goto out;
	}
	if (!chunk_encoding_allowed(enc, type))
		CORRUPT(0, "encoding %s is not allowed for type %s",
			chunk_encoding_name(enc), st_type_name(type));
	if ((null_count > 0) != (val_enc != CHUNK_VAL_NONE) || val_enc > CHUNK_VAL_RLE)
		CORRUPT(0, "validity encoding %d does not fit null count %u", val_enc, null_count);
	if (null_count > 0) {
		uint32_t vlen = st_cur_u32(&c);
		const uint8_t *vb = st_cur_take(&c, vlen);
		if (!vb)
			CORRUPT(st_cur_off(&c), "validity section of %u bytes runs past the chunk", vlen);
		if ((rc = grow((void **)&o->validity, &o->cap_validity, (size_t)n / 8 + 8)) != ST_OK)
			goto out;
		struct st_cur vc;
		st_cur_init(&vc, vb, vlen);
		if (val_enc == CHUNK_VAL_BITMAP) {
			if (vlen != ((size_t)n + 7) / 8 ||
			    ((n & 7) && (vb[n / 8] >> (n & 7))))
				CORRUPT(4, "validity bitmap has the wrong size or stray bits");
			memcpy(o->validity, vb, vlen);
		} else if (!rle_expand(&vc, n, o->validity, true) || st_cur_left(&vc)) {
			CORRUPT(4, "validity RLE runs are malformed or do not sum to %u", n);
		}
		if (popcount_bits(o->validity, n) != (size_t)n - null_count)
			CORRUPT(4, "validity marks %zu nulls, the chunk record says %u",
				(size_t)n - popcount_bits(o->validity, n), null_count);
		o->vec.validity = o->validity;
	}
	switch (type) {
	case ST_TYPE_BOOL:
		rc = decode_bool(enc, n, &c, o, err);
		break;
	case ST_TYPE_FLOAT64:
		rc = decode_f64(enc, n, &c, o, err);
		break;
	case ST_TYPE_STRING:
	case ST_TYPE_BINARY:
		rc = decode_str(type, enc, n, &c, o, err);
		break;
	default:
		rc = decode_int(type, enc, n, &c, o, err);
		break;
	}
	if (rc == ST_OK && st_cur_left(&c) != 0)
		CORRUPT(st_cur_off(&c), "%zu unexpected bytes after the values", st_cur_left(&c));
out:
	return rc;
}
