/*
 * format/dv.c — deletion vectors (FORMAT.md §10, dv.h).
 */
#include "format/dv.h"

#include <lz4.h>
#include <stdlib.h>
#include <string.h>

#include "format/crc32c.h"

static void gaps_put(const uint32_t *pos, uint32_t n, struct st_buf *b)
{
	for (uint32_t i = 0; i < n; i++)
		st_buf_uleb32(b, i ? pos[i] - pos[i - 1] - 1 : pos[0]);
}

static void header(uint8_t *h, uint8_t enc, uint32_t n, uint32_t u, uint32_t raw)
{
	h[0] = DV_FORMAT;
	h[1] = enc;
	h[2] = h[3] = 0;
	st_put_le32(h + 4, n);
	st_put_le32(h + 8, u);
	st_put_le32(h + 12, raw);
}

int dv_encode(const uint32_t *pos, uint32_t n, uint32_t universe, struct st_buf *out,
	      struct st_err *err)
{
	if (n == 0 || n > universe)
		return st_seterr(err, ST_EINVAL, "a deletion vector holds 1 to %u positions, not %u",
				 universe, n);
	for (uint32_t i = 0; i < n; i++)
		if ((i && pos[i] <= pos[i - 1]) || pos[i] >= universe)
			return st_seterr(err, ST_EINVAL,
					 "deletion vector positions must increase and stay below %u "
					 "(position %u at index %u)", universe, pos[i], i);
	struct st_buf gaps = {0};
	gaps_put(pos, n, &gaps);
	if (gaps.oom) {
		st_buf_free(&gaps);
		return st_seterr(err, ST_ENOMEM, "out of memory");
	}
	size_t bitmap = ((size_t)universe + 7) / 8;
	uint8_t enc = DV_GAPS;
	size_t best = gaps.len;
	char *z = NULL;
	int zn = 0;
	if (gaps.len <= (size_t)LZ4_MAX_INPUT_SIZE) {
		int bound = LZ4_compressBound((int)gaps.len);
		if ((z = malloc((size_t)bound)) &&
		    (zn = LZ4_compress_default((const char *)gaps.data, z, (int)gaps.len, bound)) > 0 &&
		    (size_t)zn < best) {
			enc = DV_GAPS_LZ4;
			best = (size_t)zn;
		}
	}
	if (bitmap < best)
		enc = DV_BITMAP;
	size_t start = out->len;
	uint8_t *h = st_buf_reserve(out, DV_HEADER);
	if (h) {
		header(h, enc, n, universe, enc == DV_BITMAP ? (uint32_t)bitmap : (uint32_t)gaps.len);
		out->len += DV_HEADER;
		if (enc == DV_GAPS) {
			st_buf_append(out, gaps.data, gaps.len);
		} else if (enc == DV_GAPS_LZ4) {
			st_buf_append(out, z, (size_t)zn);
		} else {
			uint8_t *bm = st_buf_reserve(out, bitmap);
			if (bm) {
				memset(bm, 0, bitmap);
				for (uint32_t i = 0; i < n; i++)
					bm[pos[i] >> 3] |= (uint8_t)(1u << (pos[i] & 7));
				out->len += bitmap;
			}
		}
		if (!out->oom)
			st_buf_u32(out, st_crc32c(0, out->data + start, out->len - start));
	}
	free(z);
	st_buf_free(&gaps);
	return out->oom ? st_seterr(err, ST_ENOMEM, "out of memory") : ST_OK;
}

uint32_t dv_cardinality(const uint8_t *p, size_t len)
{
	return len >= DV_MIN ? st_get_le32(p + 4) : 0;
}

static int bad(struct st_err *err, const char *what)
{
	return st_seterr(err, ST_ECORRUPT, "deletion vector: %s", what);
}

int dv_decode(const uint8_t *p, size_t len, uint32_t universe, uint32_t **pos, uint32_t *n,
	      struct st_err *err)
{
	*pos = NULL;
	*n = 0;
	if (len < DV_MIN)
		return bad(err, "shorter than its header and checksum");
	if (st_crc32c(0, p, len - 4) != st_get_le32(p + len - 4))
		return bad(err, "checksum mismatch");
	if (p[0] != DV_FORMAT)
		return bad(err, "unknown format");
	if (p[1] > DV_BITMAP || p[2] || p[3])
		return bad(err, "unknown encoding or reserved bytes set");
	uint32_t card = st_get_le32(p + 4), u = st_get_le32(p + 8), raw = st_get_le32(p + 12);
	if (u != universe)
		return bad(err, "its universe is not the segment's row count");
	if (card == 0 || card > u)
		return bad(err, "cardinality out of range");
	const uint8_t *pl = p + DV_HEADER;
	size_t plen = len - DV_MIN;
	uint8_t *dec = NULL;
	if (p[1] == DV_BITMAP) {
		if (raw != ((uint64_t)u + 7) / 8 || plen != raw)
			return bad(err, "bitmap length is not the universe's");
	} else if (p[1] == DV_GAPS) {
		if (plen != raw || raw > 5ull * card || raw < card)
			return bad(err, "gaps length out of range");
	} else {
		if (raw > 5ull * card || raw < card || plen > (size_t)LZ4_MAX_INPUT_SIZE)
			return bad(err, "compressed gaps length out of range");
		if (!(dec = malloc(raw ? raw : 1)))
			return st_seterr(err, ST_ENOMEM, "out of memory");
		if (LZ4_decompress_safe((const char *)pl, (char *)dec, (int)plen, (int)raw) != (int)raw) {
			free(dec);
			return bad(err, "LZ4 payload does not decompress to its raw length");
		}
		pl = dec;
		plen = raw;
	}
	uint32_t *out = malloc((size_t)card * sizeof *out);
	if (!out) {
		free(dec);
		return st_seterr(err, ST_ENOMEM, "out of memory");
	}
	uint32_t k = 0;
	int rc = ST_OK;
	if (p[1] == DV_BITMAP) {
		for (uint32_t b = 0; b < raw && rc == ST_OK; b++)
			for (uint8_t x = pl[b]; x && rc == ST_OK; x &= (uint8_t)(x - 1)) {
				uint32_t q = b * 8 + (uint32_t)__builtin_ctz(x);
				if (q >= u || k == card)
					rc = bad(err, "bitmap has bits past the universe or cardinality");
				else
					out[k++] = q;
			}
	} else {
		struct st_cur c;
		st_cur_init(&c, pl, plen);
		uint64_t q = 0;
		for (uint32_t i = 0; i < card; i++) {
			uint32_t g = st_cur_uleb32(&c);
			q = i ? q + 1 + g : g;
			if (c.bad || q >= u) {
				rc = bad(err, "gaps run past the payload or the universe");
				break;
			}
			out[k++] = (uint32_t)q;
		}
		if (rc == ST_OK && st_cur_left(&c))
			rc = bad(err, "bytes left after the last gap");
	}
	if (rc == ST_OK && k != card)
		rc = bad(err, "fewer positions than its cardinality");
	free(dec);
	if (rc != ST_OK) {
		free(out);
		return rc;
	}
	*pos = out;
	*n = card;
	return ST_OK;
}

int dv_union(const uint32_t *a, uint32_t na, const uint32_t *b, uint32_t nb, uint32_t **out,
	     uint32_t *n)
{
	uint32_t *o = malloc(((size_t)na + nb + 1) * sizeof *o), i = 0, j = 0, k = 0;
	*out = o;
	*n = 0;
	if (!o)
		return ST_ENOMEM;
	while (i < na || j < nb) {
		if (j == nb || (i < na && a[i] < b[j]))
			o[k++] = a[i++];
		else if (i == na || b[j] < a[i])
			o[k++] = b[j++];
		else {
			o[k++] = a[i++];
			j++;
		}
	}
	*n = k;
	return ST_OK;
}

uint32_t dv_lower(const uint32_t *pos, uint32_t n, uint32_t p)
{
	uint32_t lo = 0, hi = n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (pos[mid] < p)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

bool dv_has(const uint32_t *pos, uint32_t n, uint32_t p)
{
	uint32_t i = dv_lower(pos, n, p);
	return i < n && pos[i] == p;
}

uint32_t dv_filter(const uint32_t *del, uint32_t ndel, uint64_t row0, uint32_t *sel,
		   uint32_t nsel, uint32_t *out)
{
	uint32_t k = 0, j = 0;
	if (!sel) {
		/* The runs between deleted rows: plain counting loops. */
		uint32_t start = 0;
		for (; j < ndel; j++) {
			uint32_t d = (uint32_t)(del[j] - row0);
			uint32_t *restrict o = out + k;
			for (uint32_t r = start; r < d; r++)
				*o++ = r;
			k += d - start;
			start = d + 1;
		}
		for (uint32_t r = start; r < nsel; r++)
			out[k++] = r;
		return k;
	}
	for (uint32_t i = 0; i < nsel; i++) {
		uint32_t r = sel[i];
		while (j < ndel && del[j] - row0 < r)
			j++;
		if (j < ndel && del[j] - row0 == r)
			continue;
		sel[k++] = r;
	}
	return k;
}
