/*
 * tests/unit/test_dml.c — row-level DELETE and UPDATE with deletion vectors:
 * the DV encoding of format/dv.c (FORMAT.md §10) against brute force, and
 * st_delete / st_update (STORE.md §4.1, §4.2) on inline and file segments:
 * semantics, time travel, counts, constraints, compaction, restore,
 * replace-where, verify, reopen, and the conflict rules (DESIGN.md §6)
 * exercised through the store_test_dml_staged hook.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>

#include "daemon/store/query.h"
#include "daemon/store/store_int.h"
#include "daemon/store/strata.h"
#include "format/crc32c.h"
#include "format/dv.h"
#include "tests/test.h"

/* ---- deletion vectors ------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	rng_state = x;
	return (uint32_t)(x >> 16);
}

/* Bytes of the ULEB128 encoding of v. */
static size_t uleb_len(uint32_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* The GAPS payload of a set, written by hand (FORMAT.md §10). */
static size_t gaps_bytes(const uint32_t *pos, uint32_t n, uint8_t *out)
{
	size_t k = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t v = i ? pos[i] - pos[i - 1] - 1 : pos[0];
		do {
			uint8_t b = v & 0x7f;
			v >>= 7;
			if (out)
				out[k] = (uint8_t)(b | (v ? 0x80 : 0));
			k++;
		} while (v);
	}
	return k;
}

/* The encoding FORMAT.md §10 says a writer keeps: the smallest of GAPS,
 * GAPS_LZ4 and BITMAP payloads, ties to the lower id. */
static int expected_encoding(const uint32_t *pos, uint32_t n, uint32_t u, size_t *payload)
{
	size_t g = gaps_bytes(pos, n, NULL);
	uint8_t *raw = malloc(g + 1);
	gaps_bytes(pos, n, raw);
	int bound = LZ4_compressBound((int)g);
	char *z = malloc((size_t)bound + 1);
	int zn = LZ4_compress_default((const char *)raw, z, (int)g, bound);
	free(raw);
	free(z);
	size_t bm = ((size_t)u + 7) / 8;
	int enc = DV_GAPS;
	size_t best = g;
	if (zn > 0 && (size_t)zn < best) {
		enc = DV_GAPS_LZ4;
		best = (size_t)zn;
	}
	if (bm < best) {
		enc = DV_BITMAP;
		best = bm;
	}
	*payload = best;
	return enc;
}

/* Positions 0..u-1 for which keep(i) into pos (room for u); the count. */
static uint32_t make_set(uint32_t u, int kind, uint32_t *pos)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < u; i++) {
		bool in;
		switch (kind) {
		case 0: in = i == u / 2; break;                       /* single element */
		case 1: in = i >= u / 4 && i < u / 4 + u / 3; break;  /* one dense run */
		case 2: in = (i & 1) == 0; break;                     /* every other position */
		case 3: in = true; break;                             /* the full universe */
		case 4: in = rnd() % 97 == 0; break;                  /* random sparse */
		case 5: in = rnd() % 3 != 0; break;                   /* random dense */
		case 6: in = i % 100 == 7; break;                     /* evenly spaced */
		case 7: in = (i / 64) % 5 == 0; break;                /* several runs */
		default: in = i == u - 1; break;                      /* the last position */
		}
		if (in)
			pos[n++] = i;
	}
	return n;
}

/* Encode pos, check the bytes (header, encoding choice, size bound) and the
 * decode round trip. Returns the encoding byte, or -1. */
static int check_roundtrip(const uint32_t *pos, uint32_t n, uint32_t u, bool strict_choice,
			   struct st_buf *out)
{
	struct st_err err;
	out->len = 0;
	int rc = dv_encode(pos, n, u, out, &err);
	CHECK_EQ(rc, ST_OK);
	if (rc != ST_OK)
		return -1;
	CHECK(out->len >= DV_MIN);
	const uint8_t *p = out->data;
	CHECK_EQ(p[0], DV_FORMAT);
	CHECK_EQ(p[2] | p[3], 0);
	CHECK_EQ(st_get_le32(p + 4), n);
	CHECK_EQ(st_get_le32(p + 8), u);
	CHECK_EQ(dv_cardinality(p, out->len), n);
	CHECK_EQ(st_get_le32(p + out->len - 4), st_crc32c(0, p, out->len - 4));
	/* Never larger than min(5n, u/8 + 1) + 20. */
	uint64_t cap = 5ull * n < (uint64_t)u / 8 + 1 ? 5ull * n : (uint64_t)u / 8 + 1;
	CHECK(out->len <= cap + DV_MIN);
	size_t want_len;
	int want = expected_encoding(pos, n, u, &want_len);
	if (strict_choice) {
		if (p[1] != want || out->len - DV_MIN != want_len)
			fprintf(stderr, "  dv n=%u u=%u: encoding %u payload %zu, smallest is %d "
				"payload %zu\n", n, u, p[1], out->len - DV_MIN, want, want_len);
		CHECK_EQ(p[1], want);
		CHECK_EQ(out->len - DV_MIN, want_len);
	} else {
		/* Whatever it chose is no larger than GAPS and BITMAP. */
		size_t g = gaps_bytes(pos, n, NULL), bm = ((size_t)u + 7) / 8;
		CHECK(out->len - DV_MIN <= g && out->len - DV_MIN <= bm);
	}
	if (p[1] == DV_BITMAP)
		CHECK_EQ(st_get_le32(p + 12), ((uint64_t)u + 7) / 8);
	else
		CHECK_EQ(st_get_le32(p + 12), gaps_bytes(pos, n, NULL));
	uint32_t *dec = NULL, nd = 0;
	rc = dv_decode(p, out->len, u, &dec, &nd, &err);
	CHECK_EQ(rc, ST_OK);
	CHECK_EQ(nd, n);
	CHECK(rc == ST_OK && nd == n && !memcmp(dec, pos, (size_t)n * 4));
	free(dec);
	return p[1];
}

static void t_dv_roundtrip_and_choice(void)
{
	struct st_err err;
	struct st_buf out = {0};
	uint32_t one = 0;
	/* Refused: the empty set, out of order, duplicates, past the universe. */
	CHECK_EQ(dv_encode(&one, 0, 10, &out, &err), ST_EINVAL);
	uint32_t bad1[3] = {1, 5, 3}, bad2[2] = {4, 4}, bad3[2] = {4, 10};
	CHECK_EQ(dv_encode(bad1, 3, 10, &out, &err), ST_EINVAL);
	CHECK_EQ(dv_encode(bad2, 2, 10, &out, &err), ST_EINVAL);
	CHECK_EQ(dv_encode(bad3, 2, 10, &out, &err), ST_EINVAL);
	CHECK_EQ(dv_encode(&one, 1, 0, &out, &err), ST_EINVAL);
	static const uint32_t universes[] = {1, 2, 7, 8, 9, 63, 64, 65, 100, 1000, 4096, 10007, 100000};
	bool seen[3] = {false, false, false};
	uint32_t *pos = malloc(100000 * sizeof *pos);
	for (size_t ui = 0; ui < sizeof universes / sizeof *universes; ui++) {
		uint32_t u = universes[ui];
		for (int kind = 0; kind <= 8; kind++) {
			uint32_t n = make_set(u, kind, pos);
			if (n == 0)
				continue;
			int enc = check_roundtrip(pos, n, u, true, &out);
			if (enc >= 0 && enc <= 2)
				seen[enc] = true;
		}
	}
	/* Each encoding is chosen somewhere. */
	CHECK(seen[DV_GAPS]);
	CHECK(seen[DV_GAPS_LZ4]);
	CHECK(seen[DV_BITMAP]);
	/* Sets made to select one encoding. */
	uint32_t sp[3] = {10, 500000, 999999};
	CHECK_EQ(check_roundtrip(sp, 3, 1000000, true, &out), DV_GAPS);
	for (uint32_t i = 0; i < 5000; i++)
		pos[i] = 1000 + i; /* a range delete: zeros that LZ4 squeezes */
	CHECK_EQ(check_roundtrip(pos, 5000, 1000000, true, &out), DV_GAPS_LZ4);
	uint32_t n = make_set(1000, 5, pos);
	CHECK_EQ(check_roundtrip(pos, n, 1000, true, &out), DV_BITMAP);
	/* A short run in a big universe: 40 zero gap bytes; LZ4 makes them
	 * smaller, so §10's "smallest of the three" is GAPS_LZ4. */
	for (uint32_t i = 0; i < 40; i++)
		pos[i] = 2000 + i;
	check_roundtrip(pos, 40, 1000000, true, &out);
	/* Many random sets (choice checked loosely: no larger than GAPS and
	 * BITMAP; the strict check ran above). */
	for (int r = 0; r < 300; r++) {
		uint32_t u = 1 + rnd() % 3000, k = 0, mod = 1 + rnd() % 40;
		for (uint32_t i = 0; i < u; i++)
			if (rnd() % mod == 0)
				pos[k++] = i;
		if (k == 0)
			pos[k++] = rnd() % u;
		check_roundtrip(pos, k, u, false, &out);
	}
	free(pos);
	st_buf_free(&out);
}

/* Every single-byte change, every truncation, an extra byte and a wrong
 * universe are ST_ECORRUPT. */
static void corrupt_all(const uint32_t *pos, uint32_t n, uint32_t u)
{
	struct st_err err;
	struct st_buf out = {0};
	REQUIRE(dv_encode(pos, n, u, &out, &err) == ST_OK);
	uint8_t *c = malloc(out.len + 1);
	uint32_t *dec;
	uint32_t nd;
	int bad_flip = 0, bad_trunc = 0;
	static const uint8_t xors[] = {0x01, 0x80, 0xff, 0x5a};
	for (size_t i = 0; i < out.len; i++)
		for (size_t x = 0; x < sizeof xors; x++) {
			memcpy(c, out.data, out.len);
			c[i] ^= xors[x];
			int rc = dv_decode(c, out.len, u, &dec, &nd, &err);
			if (rc != ST_ECORRUPT) {
				if (!bad_flip++)
					fprintf(stderr, "  flip of byte %zu by %02x: rc %d\n", i, xors[x], rc);
				if (rc == ST_OK)
					free(dec);
			}
		}
	CHECK_EQ(bad_flip, 0);
	for (size_t l = 0; l < out.len; l++) {
		int rc = dv_decode(out.data, l, u, &dec, &nd, &err);
		if (rc != ST_ECORRUPT) {
			if (!bad_trunc++)
				fprintf(stderr, "  truncation to %zu: rc %d\n", l, rc);
			if (rc == ST_OK)
				free(dec);
		}
	}
	CHECK_EQ(bad_trunc, 0);
	memcpy(c, out.data, out.len);
	c[out.len] = 0;
	CHECK_EQ(dv_decode(c, out.len + 1, u, &dec, &nd, &err), ST_ECORRUPT);
	CHECK_EQ(dv_decode(out.data, out.len, u + 1, &dec, &nd, &err), ST_ECORRUPT);
	CHECK_CONTAINS(err.msg, "universe");
	if (u > 1)
		CHECK_EQ(dv_decode(out.data, out.len, u - 1, &dec, &nd, &err), ST_ECORRUPT);
	CHECK(dec == NULL);
	free(c);
	st_buf_free(&out);
}

/* Rewrite a header field and the CRC after it: checks past the CRC. */
static int decode_patched(const struct st_buf *b, size_t off, uint8_t v, uint32_t u)
{
	uint8_t *c = malloc(b->len);
	memcpy(c, b->data, b->len);
	c[off] = v;
	st_put_le32(c + b->len - 4, st_crc32c(0, c, b->len - 4));
	uint32_t *dec = NULL, nd;
	struct st_err err;
	int rc = dv_decode(c, b->len, u, &dec, &nd, &err);
	if (rc == ST_OK)
		free(dec);
	free(c);
	return rc;
}

static void t_dv_corruption(void)
{
	uint32_t *pos = malloc(5000 * sizeof *pos);
	uint32_t sp[3] = {10, 500, 999};
	corrupt_all(sp, 3, 1000); /* GAPS */
	for (uint32_t i = 0; i < 2000; i++)
		pos[i] = 100 + i;
	corrupt_all(pos, 2000, 5000); /* GAPS_LZ4 */
	uint32_t n = make_set(1000, 2, pos);
	corrupt_all(pos, n, 1000); /* BITMAP */
	n = make_set(37, 3, pos);
	corrupt_all(pos, n, 37); /* the full universe, bits in a partial byte */
	uint32_t z = 0;
	corrupt_all(&z, 1, 1); /* one element, a universe of one */
	/* Header checks behind a valid CRC. */
	struct st_buf b = {0};
	struct st_err err;
	REQUIRE(dv_encode(sp, 3, 1000, &b, &err) == ST_OK);
	CHECK_EQ(decode_patched(&b, 0, 2, 1000), ST_ECORRUPT);  /* format */
	CHECK_EQ(decode_patched(&b, 1, 3, 1000), ST_ECORRUPT);  /* encoding */
	CHECK_EQ(decode_patched(&b, 2, 1, 1000), ST_ECORRUPT);  /* reserved */
	CHECK_EQ(decode_patched(&b, 3, 1, 1000), ST_ECORRUPT);  /* reserved */
	CHECK_EQ(decode_patched(&b, 4, 0, 1000), ST_ECORRUPT);  /* cardinality 0 */
	CHECK_EQ(decode_patched(&b, 4, 4, 1000), ST_ECORRUPT);  /* cardinality too big */
	CHECK_EQ(decode_patched(&b, 4, 2, 1000), ST_ECORRUPT);  /* too small */
	CHECK_EQ(decode_patched(&b, 12, 5, 1000), ST_ECORRUPT); /* raw length */
	CHECK_EQ(decode_patched(&b, 1, DV_BITMAP, 1000), ST_ECORRUPT);
	CHECK_EQ(decode_patched(&b, 1, DV_GAPS_LZ4, 1000), ST_ECORRUPT);
	st_buf_free(&b);
	/* A bitmap with a bit at or past the universe, CRC fixed. */
	REQUIRE(dv_encode(pos, make_set(37, 2, pos), 37, &b, &err) == ST_OK);
	if (b.data[1] == DV_BITMAP) {
		CHECK_EQ(decode_patched(&b, DV_HEADER + 4, b.data[DV_HEADER + 4] | 0x80, 37),
			 ST_ECORRUPT);
	}
	st_buf_free(&b);
	free(pos);
}

static void t_dv_union_lower_filter(void)
{
	enum { U = 300 };
	uint32_t a[U], b[U], *o = NULL, na, nb, no;
	bool ina[U], inb[U];
	for (int round = 0; round < 400; round++) {
		uint32_t ma = 1 + rnd() % 8, mb = 1 + rnd() % 8;
		na = nb = 0;
		for (uint32_t i = 0; i < U; i++) {
			ina[i] = round % 17 != 0 && rnd() % ma == 0;
			inb[i] = round % 13 != 0 && rnd() % mb == 0;
			if (ina[i])
				a[na++] = i;
			if (inb[i])
				b[nb++] = i;
		}
		REQUIRE(dv_union(a, na, b, nb, &o, &no) == ST_OK);
		uint32_t k = 0;
		bool ok = true;
		for (uint32_t i = 0; i < U; i++)
			if (ina[i] || inb[i]) {
				if (k >= no || o[k] != i)
					ok = false;
				k++;
			}
		CHECK(ok && k == no);
		free(o);
		/* dv_lower and dv_has against a linear walk. */
		ok = true;
		for (uint32_t p = 0; p <= U + 1; p++) {
			uint32_t want = 0;
			while (want < na && a[want] < p)
				want++;
			if (dv_lower(a, na, p) != want || dv_has(a, na, p) != (p < U && ina[p]))
				ok = false;
		}
		CHECK(ok);
		/* dv_filter over a row group [row0, row0 + rows). */
		uint64_t row0 = 1000 + rnd() % 5000;
		uint32_t rows = 1 + rnd() % U;
		uint32_t del[U], nd = 0, sel[U], nsel = 0, out[U];
		bool isdel[U];
		for (uint32_t i = 0; i < rows; i++) {
			isdel[i] = rnd() % ma == 0;
			if (isdel[i])
				del[nd++] = (uint32_t)(row0 + i);
		}
		uint32_t kept = dv_filter(del, nd, row0, NULL, rows, out);
		k = 0;
		ok = true;
		for (uint32_t i = 0; i < rows; i++)
			if (!isdel[i]) {
				if (k >= kept || out[k] != i)
					ok = false;
				k++;
			}
		CHECK(ok && k == kept);
		for (uint32_t i = 0; i < rows; i++)
			if (rnd() % mb == 0)
				sel[nsel++] = i;
		uint32_t want[U], nw = 0;
		for (uint32_t i = 0; i < nsel; i++)
			if (!isdel[sel[i]])
				want[nw++] = sel[i];
		kept = dv_filter(del, nd, row0, sel, nsel, NULL);
		CHECK(kept == nw && !memcmp(sel, want, (size_t)nw * 4));
	}
	/* Empty inputs. */
	REQUIRE(dv_union(NULL, 0, NULL, 0, &o, &no) == ST_OK);
	CHECK_EQ(no, 0);
	free(o);
	CHECK_EQ(dv_lower(NULL, 0, 5), 0);
}

/* ---- the store ------------------------------------------------------- */

/* Options of every open: the default keeps these small writes inline in
 * LMDB; the *_files tests set inline_max 1 to put them in segment files. */
static struct st_store_opts store_opts;

static const struct st_column_def cols3[] = {
	{"id", ST_TYPE_INT64, false},
	{"a", ST_TYPE_INT32, false},
	{"b", ST_TYPE_INT32, true},
};

static st_store *open_store(const char *dir)
{
	st_store *s = NULL;
	struct st_err err;
	int rc = st_store_open(dir, &store_opts, &s, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  open: %s\n", err.msg);
	REQUIRE(rc == ST_OK);
	return s;
}

static void create(st_store *s, const char *table, const char *isolation)
{
	struct st_err err;
	struct act_kv kv = {(char *)"isolation", (char *)isolation};
	struct st_table_spec spec = {.name = table, .cols = cols3, .ncols = 3,
				     .props = isolation ? &kv : NULL, .nprops = isolation ? 1 : 0};
	int rc = st_table_create(s, &spec, ST_CREATE_ERROR, NULL, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  create: %s\n", err.msg);
	REQUIRE(rc == ST_OK);
}

/* Rows id = from..from+n-1, a = id, b = 2 id (NULL when id % 50 = 49). */
static int put(st_store *s, const char *table, int64_t from, uint32_t n,
	       const struct st_write_opts *o, struct st_commit_result *res, struct st_err *err)
{
	int64_t *id = malloc(n * 8 + 8);
	int32_t *a = malloc(n * 4 + 4), *b = malloc(n * 4 + 4);
	uint8_t *valid = calloc(n / 8 + 1, 1);
	for (uint32_t i = 0; i < n; i++) {
		id[i] = from + i;
		a[i] = (int32_t)(from + i);
		b[i] = (int32_t)(2 * (from + i));
		if ((from + i) % 50 != 49)
			valid[i >> 3] |= (uint8_t)(1u << (i & 7));
		else
			b[i] = 0;
	}
	const char *names[3] = {"id", "a", "b"};
	struct st_vec v[3] = {{.type = ST_TYPE_INT64, .n = n, .data = id},
			      {.type = ST_TYPE_INT32, .n = n, .data = a},
			      {.type = ST_TYPE_INT32, .n = n, .data = b, .validity = valid}};
	struct st_batch bt = {3, names, v, n};
	struct st_commit_result r;
	int rc = st_write(s, table, &bt, 1, o, res ? res : &r, err);
	if (rc != ST_OK)
		fprintf(stderr, "  put: %s\n", err->msg);
	free(id);
	free(a);
	free(b);
	free(valid);
	return rc;
}

struct row {
	int64_t id;
	int32_t a, b;
	bool bnull;
};

static int row_cmp(const void *x, const void *y)
{
	const struct row *p = x, *q = y;
	return p->id < q->id ? -1 : p->id > q->id;
}

#define MAXROWS 4096

/* The rows of table at version v (-1: latest) matching pred, sorted by id,
 * into rows (MAXROWS); their count, or -1. info (may be NULL) gets the
 * scan's info. */
static int64_t rows_at(st_store *s, const char *table, int64_t v, const char *pred,
		       struct row *rows, struct st_scan_info *info)
{
	st_scan *sc;
	struct st_err err;
	struct st_at at = v < 0 ? (struct st_at){ST_AT_LATEST, 0} : (struct st_at){ST_AT_VERSION, v};
	const char *cn[3] = {"id", "a", "b"};
	if (st_scan_open(s, table, at, cn, 3, pred, &sc, &err) != ST_OK) {
		fprintf(stderr, "  scan: %s\n", err.msg);
		return -1;
	}
	if (info)
		st_scan_info(sc, info);
	int64_t n = 0;
	const struct st_scan_batch *b;
	int rc;
	while ((rc = st_scan_next(sc, &b, &err)) == ST_OK && b) {
		const int64_t *id = b->cols[0].data;
		const int32_t *a = b->cols[1].data, *bb = b->cols[2].data;
		for (uint32_t i = 0; i < b->nsel; i++) {
			uint32_t r = b->sel ? b->sel[i] : i;
			if (rows && n < MAXROWS) {
				rows[n].id = id[r];
				rows[n].a = a[r];
				rows[n].bnull = !st_vec_is_valid(&b->cols[2], r);
				rows[n].b = rows[n].bnull ? 0 : bb[r];
			}
			n++;
		}
	}
	if (rc != ST_OK) {
		fprintf(stderr, "  scan next: %s\n", err.msg);
		n = -1;
	}
	st_scan_close(sc);
	if (rows && n > 0)
		qsort(rows, (size_t)(n < MAXROWS ? n : MAXROWS), sizeof *rows, row_cmp);
	return n;
}

static int64_t count_at(st_store *s, const char *table, int64_t v, const char *pred)
{
	return rows_at(s, table, v, pred, NULL, NULL);
}

/* Sum of ids at v (-1 latest) by a scan. */
static int64_t idsum_at(st_store *s, const char *table, int64_t v)
{
	static struct row rows[MAXROWS];
	int64_t n = rows_at(s, table, v, NULL, rows, NULL), sum = 0;
	for (int64_t i = 0; i < n && i < MAXROWS; i++)
		sum += rows[i].id;
	return sum;
}

/* count(*) and sum(col) by sd_query at v (-1 latest). */
static void agg_at(st_store *s, const char *table, int64_t v, const char *col, const char *pred,
		   int64_t *count, int64_t *sum)
{
	struct sd_agg aggs[2] = {{SD_AGG_COUNT, NULL}, {SD_AGG_SUM, col}};
	struct sd_query_result res;
	struct st_err err;
	struct st_at at = v < 0 ? (struct st_at){ST_AT_LATEST, 0} : (struct st_at){ST_AT_VERSION, v};
	*count = *sum = -1;
	int rc = sd_query(s, table, at, NULL, 0, aggs, 2, pred, 10, &res, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  query: %s\n", err.msg);
	CHECK_EQ(rc, ST_OK);
	if (rc != ST_OK)
		return;
	if (res.nrows == 1) {
		*count = ((const int64_t *)res.cols[0].data)[0];
		*sum = st_vec_is_valid(&res.cols[1], 0) ? ((const int64_t *)res.cols[1].data)[0] : 0;
	}
	sd_query_result_fini(&res);
}

static uint64_t head_version(st_store *s, const char *table)
{
	uint64_t v = UINT64_MAX;
	struct st_err err;
	CHECK_EQ(st_table_version(s, table, &v, &err), ST_OK);
	return v;
}

static void verify_clean(st_store *s)
{
	struct st_verify_result vr;
	struct st_err err;
	memset(&vr, 0, sizeof vr);
	int rc = st_verify(s, &vr, &err);
	CHECK_EQ(rc, ST_OK);
	for (uint32_t i = 0; i < vr.nproblems; i++)
		fprintf(stderr, "  verify: %s\n", vr.problems[i]);
	CHECK_EQ(vr.nproblems, 0);
	CHECK_EQ(vr.orphans, 0);
	st_verify_result_fini(&vr);
}

static int del(st_store *s, const char *table, const char *pred, struct st_dml_result *r)
{
	struct st_err err;
	int rc = st_delete(s, table, pred, NULL, r, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  delete '%s': %s\n", pred, err.msg);
	return rc;
}

static int upd(st_store *s, const char *table, const char *set, const char *pred,
	       struct st_dml_result *r, struct st_err *err)
{
	return st_update(s, table, set, pred, NULL, r, err);
}

static int64_t range_sum(int64_t lo, int64_t hi) /* lo..hi-1 */
{
	return (lo + hi - 1) * (hi - lo) / 2;
}

/* ---- DELETE ----------------------------------------------------------- */

static void delete_semantics(void)
{
	st_store *s = open_store(test_new_dir("dml"));
	struct st_err err;
	struct st_dml_result r;
	struct st_scan_info info;
	int64_t c, sum;
	create(s, "t", NULL);
	REQUIRE(put(s, "t", 0, 100, NULL, NULL, &err) == ST_OK);   /* v1 */
	REQUIRE(put(s, "t", 100, 100, NULL, NULL, &err) == ST_OK); /* v2 */
	/* A range in the second file: the first is skipped by statistics. */
	REQUIRE(del(s, "t", "id >= 150 AND id < 160", &r) == ST_OK);
	CHECK(!r.commit.noop);
	CHECK_EQ(r.commit.version, 3);
	CHECK_EQ(r.rows_deleted, 10);
	CHECK_EQ(r.files_skipped, 1);
	CHECK_EQ(r.files_read, 1);
	CHECK_EQ(r.files_removed, 0);
	CHECK_EQ(r.dvs_written, 1);
	CHECK_EQ(r.rows_updated, 0);
	CHECK_EQ(rows_at(s, "t", -1, NULL, NULL, &info), 190);
	CHECK_EQ(info.version, 3);
	CHECK_EQ(info.files, 2);
	CHECK_EQ(info.dvs, 1);
	CHECK_EQ(info.deleted, 10);
	CHECK_EQ(info.rows, 190);
	CHECK_EQ(idsum_at(s, "t", -1), range_sum(0, 200) - range_sum(150, 160));
	CHECK_EQ(count_at(s, "t", -1, "id >= 150 AND id < 160"), 0);
	CHECK_EQ(count_at(s, "t", -1, "id >= 140 AND id < 170"), 20);
	/* Time travel: the rows are there at the version before. */
	CHECK_EQ(count_at(s, "t", 2, "id >= 150 AND id < 160"), 10);
	CHECK_EQ(count_at(s, "t", 2, NULL), 200);
	agg_at(s, "t", -1, "id", NULL, &c, &sum);
	CHECK_EQ(c, 190);
	CHECK_EQ(sum, range_sum(0, 200) - range_sum(150, 160));
	agg_at(s, "t", 2, "id", NULL, &c, &sum);
	CHECK_EQ(c, 200);
	CHECK_EQ(sum, range_sum(0, 200));
	agg_at(s, "t", -1, "a", "id >= 100", &c, &sum);
	CHECK_EQ(c, 90);
	CHECK_EQ(sum, range_sum(100, 200) - range_sum(150, 160));
	/* The same DELETE again matches nothing: no commit. */
	REQUIRE(del(s, "t", "id >= 150 AND id < 160", &r) == ST_OK);
	CHECK(r.commit.noop);
	CHECK_EQ(r.commit.version, 3);
	CHECK_EQ(r.rows_deleted, 0);
	CHECK_EQ(r.dvs_written, 0);
	CHECK_EQ(head_version(s, "t"), 3);
	/* Arithmetic: never pruned, read in both files; 153 is already gone. */
	REQUIRE(del(s, "t", "id % 10 = 3", &r) == ST_OK);
	CHECK_EQ(r.commit.version, 4);
	CHECK_EQ(r.rows_deleted, 19);
	CHECK_EQ(r.files_read, 2);
	CHECK_EQ(r.files_skipped, 0);
	CHECK_EQ(r.dvs_written, 2);
	CHECK_EQ(r.files_removed, 0);
	CHECK_EQ(count_at(s, "t", -1, NULL), 171);
	CHECK_EQ(count_at(s, "t", -1, "id % 10 = 3"), 0);
	CHECK_EQ(count_at(s, "t", 3, "id % 10 = 3"), 19);
	CHECK_EQ(rows_at(s, "t", -1, NULL, NULL, &info), 171);
	CHECK_EQ(info.dvs, 2);
	CHECK_EQ(info.deleted, 29);
	/* Deleting what is left of a file, in two steps: the second leaves no
	 * row, so the file goes whole. */
	REQUIRE(put(s, "t", 200, 10, NULL, NULL, &err) == ST_OK); /* v5 */
	REQUIRE(del(s, "t", "id >= 200 AND id % 2 = 0", &r) == ST_OK);
	CHECK_EQ(r.commit.version, 6);
	CHECK_EQ(r.rows_deleted, 5);
	CHECK_EQ(r.dvs_written, 1);
	CHECK_EQ(r.files_skipped, 2);
	REQUIRE(del(s, "t", "id >= 200 AND id % 2 = 1", &r) == ST_OK);
	CHECK_EQ(r.commit.version, 7);
	CHECK_EQ(r.rows_deleted, 5);
	CHECK_EQ(r.files_removed, 1);
	CHECK_EQ(r.dvs_written, 0);
	CHECK_EQ(rows_at(s, "t", -1, NULL, NULL, &info), 171);
	CHECK_EQ(info.files, 2);
	/* Statistics say every row of the first file matches: removed unread. */
	REQUIRE(del(s, "t", "id < 100", &r) == ST_OK);
	CHECK_EQ(r.commit.version, 8);
	CHECK_EQ(r.rows_deleted, 90);
	CHECK_EQ(r.files_removed, 1);
	CHECK_EQ(r.files_read, 0);
	CHECK_EQ(r.dvs_written, 0);
	CHECK_EQ(r.files_skipped, 1);
	CHECK_EQ(rows_at(s, "t", -1, NULL, NULL, &info), 81);
	CHECK_EQ(info.files, 1);
	CHECK_EQ(info.dvs, 1);
	CHECK_EQ(info.deleted, 19);
	/* Every version reads as it was. */
	static const int64_t want[] = {0, 100, 200, 190, 171, 181, 176, 171, 81};
	for (int v = 0; v <= 8; v++)
		CHECK_EQ(count_at(s, "t", v, NULL), want[v]);
	agg_at(s, "t", 5, "id", "id >= 200", &c, &sum);
	CHECK_EQ(c, 10);
	agg_at(s, "t", 6, "id", "id >= 200", &c, &sum);
	CHECK_EQ(c, 5);
	CHECK_EQ(sum, 201 + 203 + 205 + 207 + 209);
	/* The commit says what it did. */
	struct act_commit **h;
	uint32_t n;
	REQUIRE(st_history(s, "t", 1, &h, &n, &err) == ST_OK);
	REQUIRE(n == 1);
	CHECK(!strcmp(h[0]->info.operation, "DELETE"));
	act_commit_free(h[0]);
	free(h);
	/* Refused: no predicate, a bad one, an unknown table; nothing changes. */
	CHECK_EQ(st_delete(s, "t", "", NULL, &r, &err), ST_EINVAL);
	CHECK_EQ(st_delete(s, "t", NULL, NULL, &r, &err), ST_EINVAL);
	CHECK(st_delete(s, "t", "nope = 1", NULL, &r, &err) != ST_OK);
	CHECK(st_delete(s, "t", "id = ", NULL, &r, &err) != ST_OK);
	CHECK_EQ(st_delete(s, "nosuch", "id = 1", NULL, &r, &err), ST_ENOTFOUND);
	CHECK_EQ(head_version(s, "t"), 8);
	/* Delete everything left. */
	REQUIRE(del(s, "t", "true", &r) == ST_OK);
	CHECK_EQ(r.rows_deleted, 81);
	CHECK_EQ(r.files_removed, 1);
	CHECK_EQ(count_at(s, "t", -1, NULL), 0);
	CHECK_EQ(count_at(s, "t", 8, NULL), 81);
	verify_clean(s);
	st_store_close(s);
}

static void t_delete_inline(void)
{
	delete_semantics();
}

static void t_delete_files(void)
{
	TEST_SET(store_opts.inline_max, 1);
	delete_semantics();
}

/* ---- UPDATE ----------------------------------------------------------- */

static void update_semantics(void)
{
	st_store *s = open_store(test_new_dir("dml"));
	struct st_err err;
	struct st_dml_result r;
	static struct row rows[MAXROWS];
	int64_t c, sum;
	create(s, "t", NULL);
	REQUIRE(put(s, "t", 0, 100, NULL, NULL, &err) == ST_OK); /* v1 */
	int rc = upd(s, "t", "a = a + 1000", "id < 10", &r, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  update: %s\n", err.msg);
	REQUIRE(rc == ST_OK);
	CHECK_EQ(r.commit.version, 2);
	CHECK_EQ(r.rows_updated, 10);
	CHECK_EQ(r.files_read, 1);
	CHECK_EQ(r.dvs_written, 1);
	REQUIRE(rows_at(s, "t", -1, NULL, rows, NULL) == 100);
	bool ok = true;
	for (int i = 0; i < 100; i++)
		if (rows[i].id != i || rows[i].a != (i < 10 ? i + 1000 : i) ||
		    rows[i].bnull != (i % 50 == 49) || (!rows[i].bnull && rows[i].b != 2 * i))
			ok = false;
	CHECK(ok);
	REQUIRE(rows_at(s, "t", 1, NULL, rows, NULL) == 100);
	ok = true;
	for (int i = 0; i < 100; i++)
		if (rows[i].id != i || rows[i].a != i)
			ok = false;
	CHECK(ok);
	agg_at(s, "t", -1, "a", NULL, &c, &sum);
	CHECK_EQ(c, 100);
	CHECK_EQ(sum, range_sum(0, 100) + 10000);
	agg_at(s, "t", 1, "a", NULL, &c, &sum);
	CHECK_EQ(sum, range_sum(0, 100));
	/* The updated rows can be updated again (they live in the new segment). */
	REQUIRE(upd(s, "t", "a = a + 1", "a >= 1000", &r, &err) == ST_OK);
	CHECK_EQ(r.commit.version, 3);
	CHECK_EQ(r.rows_updated, 10);
	agg_at(s, "t", -1, "a", NULL, &c, &sum);
	CHECK_EQ(c, 100);
	CHECK_EQ(sum, range_sum(0, 100) + 10010);
	/* A swap: every value from the old row. */
	REQUIRE(upd(s, "t", "a = b, b = a", "id >= 20 AND id < 30", &r, &err) == ST_OK);
	CHECK_EQ(r.commit.version, 4);
	CHECK_EQ(r.rows_updated, 10);
	REQUIRE(rows_at(s, "t", -1, "id >= 20 AND id < 30", rows, NULL) == 10);
	ok = true;
	for (int i = 0; i < 10; i++)
		if (rows[i].id != 20 + i || rows[i].a != 2 * (20 + i) || rows[i].bnull ||
		    rows[i].b != 20 + i)
			ok = false;
	CHECK(ok);
	/* Nothing matches: no commit. */
	REQUIRE(upd(s, "t", "a = 0", "id > 100000", &r, &err) == ST_OK);
	CHECK(r.commit.noop);
	CHECK_EQ(r.rows_updated, 0);
	CHECK_EQ(head_version(s, "t"), 4);
	/* NOT NULL: b is NULL at id 49; the whole UPDATE fails. */
	CHECK_EQ(upd(s, "t", "a = b", "id >= 40 AND id < 60", &r, &err), ST_ESCHEMA);
	CHECK_EQ(r.rows_updated, 0);
	CHECK_EQ(head_version(s, "t"), 4);
	CHECK_EQ(upd(s, "t", "a = NULL", "id = 1", &r, &err), ST_ESCHEMA);
	CHECK_EQ(upd(s, "t", "id = NULL", "id = 1", &r, &err), ST_ESCHEMA);
	CHECK_EQ(head_version(s, "t"), 4);
	/* An int32 overflow is refused. */
	rc = upd(s, "t", "a = a + 2147483600", "id >= 80", &r, &err);
	CHECK_EQ(rc, ST_ERANGE);
	CHECK_EQ(head_version(s, "t"), 4);
	rc = upd(s, "t", "a = a * 100000000", "id = 90", &r, &err);
	CHECK_EQ(rc, ST_ERANGE);
	CHECK_EQ(head_version(s, "t"), 4);
	/* Bad SET lists. */
	CHECK(upd(s, "t", "nope = 1", "id = 1", &r, &err) != ST_OK);
	CHECK(upd(s, "t", "", "id = 1", &r, &err) != ST_OK);
	CHECK(upd(s, "t", "a = 1.5", "id = 1", &r, &err) != ST_OK);
	CHECK_EQ(head_version(s, "t"), 4);
	/* A CHECK constraint: a violating UPDATE changes nothing. */
	struct st_alter al = {.op = ST_ALTER_ADD_CONSTRAINT, .column = "a_small", .arg = "a < 100000"};
	struct st_commit_result cr;
	rc = st_table_alter(s, "t", &al, &cr, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  alter: %s\n", err.msg);
	REQUIRE(rc == ST_OK);
	CHECK_EQ(cr.version, 5);
	rc = upd(s, "t", "a = a + 200000", "id >= 60 AND id < 80", &r, &err);
	CHECK(rc == ST_ESCHEMA || rc == ST_ERANGE);
	CHECK(rc != ST_OK);
	CHECK_EQ(r.rows_updated, 0);
	CHECK_EQ(head_version(s, "t"), 5);
	REQUIRE(upd(s, "t", "a = a + 1", "id = 70", &r, &err) == ST_OK);
	CHECK_EQ(r.commit.version, 6);
	/* Every version reads as it was, and the failed ones left no trace. */
	agg_at(s, "t", -1, "a", "id >= 40 AND id < 100", &c, &sum);
	CHECK_EQ(c, 60);
	CHECK_EQ(sum, range_sum(40, 100) + 1);
	agg_at(s, "t", 4, "a", "id >= 40 AND id < 100", &c, &sum);
	CHECK_EQ(sum, range_sum(40, 100));
	for (int v = 1; v <= 6; v++)
		CHECK_EQ(count_at(s, "t", v, NULL), 100);
	REQUIRE(rows_at(s, "t", 3, "id >= 20 AND id < 30", rows, NULL) == 10);
	CHECK(rows[0].a == 20 && rows[0].b == 40);
	struct act_commit **h;
	uint32_t n;
	REQUIRE(st_history(s, "t", 1, &h, &n, &err) == ST_OK);
	REQUIRE(n == 1);
	CHECK(!strcmp(h[0]->info.operation, "UPDATE"));
	act_commit_free(h[0]);
	free(h);
	verify_clean(s);
	st_store_close(s);
}

static void t_update_inline(void)
{
	update_semantics();
}

static void t_update_files(void)
{
	TEST_SET(store_opts.inline_max, 1);
	update_semantics();
}

/* ---- compaction, restore, replace-where, verify, reopen ---------------- */

static void maintenance(void)
{
	const char *d = test_new_dir("dml");
	char dir[160];
	snprintf(dir, sizeof dir, "%s", d);
	st_store *s = open_store(dir);
	struct st_err err;
	struct st_dml_result r;
	struct st_commit_result cr;
	struct st_scan_info info;
	create(s, "t", NULL);
	REQUIRE(put(s, "t", 0, 100, NULL, NULL, &err) == ST_OK);   /* v1 */
	REQUIRE(put(s, "t", 100, 100, NULL, NULL, &err) == ST_OK); /* v2 */
	REQUIRE(del(s, "t", "id % 10 = 3", &r) == ST_OK);         /* v3 */
	CHECK_EQ(r.rows_deleted, 20);
	CHECK_EQ(r.dvs_written, 2);
	int64_t sum3 = idsum_at(s, "t", -1);
	CHECK_EQ(sum3, range_sum(0, 200) - (3 + 193) * 20 / 2);
	/* Compaction drops the deleted rows and the vectors. */
	int rc = st_table_compact(s, "t", &cr, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  compact: %s\n", err.msg);
	REQUIRE(rc == ST_OK);
	CHECK(!cr.noop);
	CHECK_EQ(cr.version, 4);
	CHECK_EQ(rows_at(s, "t", -1, NULL, NULL, &info), 180);
	CHECK_EQ(info.files, 1);
	CHECK_EQ(info.dvs, 0);
	CHECK_EQ(info.deleted, 0);
	CHECK_EQ(info.rows, 180);
	CHECK_EQ(idsum_at(s, "t", -1), sum3);
	CHECK_EQ(count_at(s, "t", -1, "id % 10 = 3"), 0);
	REQUIRE(st_table_compact(s, "t", &cr, &err) == ST_OK);
	CHECK(cr.noop);
	/* A table whose only file has a vector is not already compact. */
	REQUIRE(del(s, "t", "id = 0", &r) == ST_OK); /* v5 */
	CHECK_EQ(r.dvs_written, 1);
	REQUIRE(st_table_compact(s, "t", &cr, &err) == ST_OK); /* v6 */
	CHECK(!cr.noop);
	CHECK_EQ(rows_at(s, "t", -1, NULL, NULL, &info), 179);
	CHECK_EQ(info.dvs, 0);
	/* Restore before the DELETE brings the rows back. */
	rc = st_table_restore(s, "t", (struct st_at){ST_AT_VERSION, 2}, &cr, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  restore: %s\n", err.msg);
	REQUIRE(rc == ST_OK);
	CHECK_EQ(cr.version, 7);
	CHECK_EQ(rows_at(s, "t", -1, NULL, NULL, &info), 200);
	CHECK_EQ(info.dvs, 0);
	CHECK_EQ(idsum_at(s, "t", -1), range_sum(0, 200));
	CHECK_EQ(count_at(s, "t", -1, "id % 10 = 3"), 20);
	/* Restore to the version with the vectors revives them. */
	REQUIRE(st_table_restore(s, "t", (struct st_at){ST_AT_VERSION, 3}, &cr, &err) == ST_OK);
	CHECK_EQ(cr.version, 8);
	CHECK_EQ(rows_at(s, "t", -1, NULL, NULL, &info), 180);
	CHECK_EQ(info.dvs, 2);
	CHECK_EQ(info.deleted, 20);
	CHECK_EQ(count_at(s, "t", -1, "id % 10 = 3"), 0);
	/* Replace-where over files with vectors keeps the deleted rows deleted. */
	REQUIRE(del(s, "t", "id % 10 = 7", &r) == ST_OK); /* v9: 20 more */
	CHECK_EQ(count_at(s, "t", -1, NULL), 160);
	struct st_write_opts rw = {.replace_where = "id < 50"};
	REQUIRE(put(s, "t", 0, 50, &rw, &cr, &err) == ST_OK); /* v10 */
	CHECK_EQ(cr.version, 10);
	/* 50 new rows + ids 50..199 less those ending in 3 or 7 (30). */
	CHECK_EQ(count_at(s, "t", -1, NULL), 50 + 150 - 30);
	CHECK_EQ(count_at(s, "t", -1, "id >= 50 AND (id % 10 = 3 OR id % 10 = 7)"), 0);
	CHECK_EQ(count_at(s, "t", -1, "id < 50 AND (id % 10 = 3 OR id % 10 = 7)"), 10);
	CHECK_EQ(count_at(s, "t", -1, "id < 50"), 50);
	/* A replace-where over a range whose rows are partly deleted: none of
	 * those come back. */
	struct st_write_opts rw2 = {.replace_where = "id >= 100 AND id < 105"};
	REQUIRE(put(s, "t", 100, 5, &rw2, &cr, &err) == ST_OK); /* v11 */
	CHECK_EQ(count_at(s, "t", -1, NULL), 170 + 1);
	CHECK_EQ(count_at(s, "t", -1, "id >= 105 AND id % 10 = 7"), 0);
	int64_t final_count = count_at(s, "t", -1, NULL), final_sum = idsum_at(s, "t", -1);
	int64_t v9 = count_at(s, "t", 9, NULL);
	CHECK_EQ(v9, 160);
	verify_clean(s);
	/* Compact again, then verify and reopen. */
	REQUIRE(st_table_compact(s, "t", &cr, &err) == ST_OK); /* v12 */
	CHECK(!cr.noop);
	CHECK_EQ(rows_at(s, "t", -1, NULL, NULL, &info), final_count);
	CHECK_EQ(info.dvs, 0);
	CHECK_EQ(info.files, 1);
	CHECK_EQ(idsum_at(s, "t", -1), final_sum);
	verify_clean(s);
	st_store_close(s);
	s = open_store(dir);
	CHECK_EQ(head_version(s, "t"), 12);
	CHECK_EQ(count_at(s, "t", -1, NULL), final_count);
	CHECK_EQ(idsum_at(s, "t", -1), final_sum);
	CHECK_EQ(rows_at(s, "t", 3, NULL, NULL, &info), 180);
	CHECK_EQ(info.dvs, 2);
	CHECK_EQ(count_at(s, "t", 2, NULL), 200);
	CHECK_EQ(count_at(s, "t", 9, NULL), 160);
	CHECK_EQ(count_at(s, "t", 8, "id % 10 = 3"), 0);
	/* And DML keeps working after the reopen. */
	REQUIRE(del(s, "t", "id = 199", &r) == ST_OK);
	CHECK_EQ(r.rows_deleted, 1);
	CHECK_EQ(count_at(s, "t", -1, NULL), final_count - 1);
	verify_clean(s);
	st_store_close(s);
}

static void t_maintenance_inline(void)
{
	maintenance();
}

static void t_maintenance_files(void)
{
	TEST_SET(store_opts.inline_max, 1);
	maintenance();
}

/* ---- conflicts -------------------------------------------------------- */

enum hook_kind { H_DELETE, H_APPEND, H_COMPACT, H_UPDATE };

struct hook_arg {
	enum hook_kind kind;
	const char *table;
	const char *pred;      /* H_DELETE, H_UPDATE */
	int64_t from;          /* H_APPEND */
	uint32_t n;
	int calls;
	int rc;
	uint64_t version;
	struct st_err err;
};

/* Called by st_delete / st_update between staging and commit: commit a
 * concurrent change on this thread. Disarms itself first (the change may
 * be a DML statement too). */
static void staged_hook(st_store *s, void *p)
{
	struct hook_arg *h = p;
	store_test_dml_staged = NULL;
	store_test_dml_arg = NULL;
	h->calls++;
	struct st_dml_result r;
	struct st_commit_result cr;
	switch (h->kind) {
	case H_DELETE:
		h->rc = st_delete(s, h->table, h->pred, NULL, &r, &h->err);
		h->version = r.commit.version;
		break;
	case H_UPDATE:
		h->rc = st_update(s, h->table, "a = a + 1", h->pred, NULL, &r, &h->err);
		h->version = r.commit.version;
		break;
	case H_APPEND:
		h->rc = put(s, h->table, h->from, h->n, NULL, &cr, &h->err);
		h->version = cr.version;
		break;
	case H_COMPACT:
		h->rc = st_table_compact(s, h->table, &cr, &h->err);
		h->version = cr.version;
		break;
	}
}

static void hook_reset(void *unused)
{
	(void)unused;
	store_test_dml_staged = NULL;
	store_test_dml_arg = NULL;
}

static void arm(struct hook_arg *h)
{
	h->calls = 0;
	h->rc = -12345;
	store_test_dml_arg = h;
	store_test_dml_staged = staged_hook;
}

static void conflicts(void)
{
	test_defer(hook_reset, NULL);
	st_store *s = open_store(test_new_dir("dml"));
	struct st_err err;
	struct st_dml_result r;
	struct hook_arg h;
	int rc;

	/* Two DELETEs of the same row: the second loses, nothing of it lands. */
	create(s, "c1", NULL);
	REQUIRE(put(s, "c1", 0, 100, NULL, NULL, &err) == ST_OK);
	h = (struct hook_arg){.kind = H_DELETE, .table = "c1", .pred = "id = 5"};
	arm(&h);
	rc = st_delete(s, "c1", "id = 5 OR id = 6", NULL, &r, &err);
	hook_reset(NULL);
	CHECK_EQ(h.calls, 1);
	CHECK_EQ(h.rc, ST_OK);
	CHECK_EQ(h.version, 2);
	CHECK_EQ(rc, ST_ECONFLICT);
	CHECK_EQ(r.rows_deleted, 0);
	CHECK_EQ(head_version(s, "c1"), 2);
	CHECK_EQ(count_at(s, "c1", -1, NULL), 99);
	CHECK_EQ(count_at(s, "c1", -1, "id = 6"), 1);
	/* Retried, it succeeds. */
	REQUIRE(del(s, "c1", "id = 5 OR id = 6", &r) == ST_OK);
	CHECK_EQ(r.rows_deleted, 1);
	CHECK_EQ(count_at(s, "c1", -1, NULL), 98);

	/* DELETE vs a blind append of rows that match: Serializable conflicts. */
	create(s, "c2", NULL);
	REQUIRE(put(s, "c2", 0, 100, NULL, NULL, &err) == ST_OK);
	h = (struct hook_arg){.kind = H_APPEND, .table = "c2", .from = 200, .n = 10};
	arm(&h);
	rc = st_delete(s, "c2", "id > 50", NULL, &r, &err);
	hook_reset(NULL);
	CHECK_EQ(h.rc, ST_OK);
	CHECK_EQ(h.version, 2);
	CHECK_EQ(rc, ST_ECONFLICT);
	CHECK_EQ(head_version(s, "c2"), 2);
	CHECK_EQ(count_at(s, "c2", -1, NULL), 110);
	/* ... and WriteSerializable (set by ALTER) lets it through. */
	struct st_alter al = {.op = ST_ALTER_SET_PROPERTY, .column = "isolation",
			      .arg = "WriteSerializable"};
	struct st_commit_result cr;
	REQUIRE(st_table_alter(s, "c2", &al, &cr, &err) == ST_OK); /* v3 */
	h = (struct hook_arg){.kind = H_APPEND, .table = "c2", .from = 300, .n = 10};
	arm(&h);
	rc = st_delete(s, "c2", "id > 50", NULL, &r, &err);
	hook_reset(NULL);
	if (rc != ST_OK)
		fprintf(stderr, "  delete under WriteSerializable: %s\n", err.msg);
	CHECK_EQ(h.rc, ST_OK);
	CHECK_EQ(h.version, 4);
	CHECK_EQ(rc, ST_OK);
	CHECK_EQ(r.commit.version, 5);
	CHECK_EQ(r.rows_deleted, 59);
	/* The concurrent rows were not seen: they stay. */
	CHECK_EQ(count_at(s, "c2", -1, NULL), 51 + 10);
	CHECK_EQ(count_at(s, "c2", -1, "id >= 300"), 10);

	/* WriteSerializable at create, through the table's properties. */
	create(s, "c3", "WriteSerializable");
	REQUIRE(put(s, "c3", 0, 100, NULL, NULL, &err) == ST_OK);
	h = (struct hook_arg){.kind = H_APPEND, .table = "c3", .from = 200, .n = 10};
	arm(&h);
	rc = st_delete(s, "c3", "id > 50", NULL, &r, &err);
	hook_reset(NULL);
	if (rc != ST_OK)
		fprintf(stderr, "  delete under WriteSerializable: %s\n", err.msg);
	CHECK_EQ(h.rc, ST_OK);
	CHECK_EQ(rc, ST_OK);
	CHECK_EQ(r.commit.version, 3);
	CHECK_EQ(count_at(s, "c3", -1, NULL), 61);
	/* WriteSerializable does not excuse a removed file: DELETE vs DELETE. */
	h = (struct hook_arg){.kind = H_DELETE, .table = "c3", .pred = "id = 1"};
	arm(&h);
	rc = st_delete(s, "c3", "id = 1", NULL, &r, &err);
	hook_reset(NULL);
	CHECK_EQ(h.rc, ST_OK);
	CHECK_EQ(rc, ST_ECONFLICT);
	CHECK_EQ(count_at(s, "c3", -1, NULL), 60);

	/* DELETE vs an append whose statistics cannot match: no conflict. */
	create(s, "c4", NULL);
	REQUIRE(put(s, "c4", 0, 100, NULL, NULL, &err) == ST_OK);
	h = (struct hook_arg){.kind = H_APPEND, .table = "c4", .from = 100000, .n = 10};
	arm(&h);
	rc = st_delete(s, "c4", "id < 50", NULL, &r, &err);
	hook_reset(NULL);
	if (rc != ST_OK)
		fprintf(stderr, "  delete vs a disjoint append: %s\n", err.msg);
	CHECK_EQ(h.rc, ST_OK);
	CHECK_EQ(h.version, 2);
	CHECK_EQ(rc, ST_OK);
	CHECK_EQ(r.commit.version, 3);
	CHECK_EQ(r.rows_deleted, 50);
	CHECK_EQ(count_at(s, "c4", -1, NULL), 60);
	/* The same with a partial match (a vector written). */
	h = (struct hook_arg){.kind = H_APPEND, .table = "c4", .from = 200000, .n = 10};
	arm(&h);
	rc = st_delete(s, "c4", "id >= 60 AND id < 70", NULL, &r, &err);
	hook_reset(NULL);
	CHECK_EQ(h.rc, ST_OK);
	CHECK_EQ(rc, ST_OK);
	CHECK_EQ(r.dvs_written, 1);
	CHECK_EQ(count_at(s, "c4", -1, NULL), 60);

	/* UPDATE vs a concurrent DELETE of a row it read: conflict. */
	create(s, "c5", NULL);
	REQUIRE(put(s, "c5", 0, 100, NULL, NULL, &err) == ST_OK);
	h = (struct hook_arg){.kind = H_DELETE, .table = "c5", .pred = "id = 3"};
	arm(&h);
	rc = st_update(s, "c5", "a = 0", "id < 10", NULL, &r, &err);
	hook_reset(NULL);
	CHECK_EQ(h.rc, ST_OK);
	CHECK_EQ(rc, ST_ECONFLICT);
	CHECK_EQ(r.rows_updated, 0);
	CHECK_EQ(head_version(s, "c5"), 2);
	CHECK_EQ(count_at(s, "c5", -1, NULL), 99);
	CHECK_EQ(count_at(s, "c5", -1, "a = 0"), 1); /* id 0 only */
	/* DELETE vs a concurrent UPDATE of the same rows: conflict too. */
	h = (struct hook_arg){.kind = H_UPDATE, .table = "c5", .pred = "id = 7"};
	arm(&h);
	rc = st_delete(s, "c5", "id >= 5 AND id < 9", NULL, &r, &err);
	hook_reset(NULL);
	CHECK_EQ(h.rc, ST_OK);
	CHECK_EQ(rc, ST_ECONFLICT);
	CHECK_EQ(count_at(s, "c5", -1, NULL), 99);
	CHECK_EQ(count_at(s, "c5", -1, "id = 7 AND a = 8"), 1);

	/* DELETE vs a concurrent compaction: conflict. */
	create(s, "c6", NULL);
	REQUIRE(put(s, "c6", 0, 50, NULL, NULL, &err) == ST_OK);
	REQUIRE(put(s, "c6", 50, 50, NULL, NULL, &err) == ST_OK);
	h = (struct hook_arg){.kind = H_COMPACT, .table = "c6"};
	arm(&h);
	rc = st_delete(s, "c6", "id = 5", NULL, &r, &err);
	hook_reset(NULL);
	CHECK_EQ(h.rc, ST_OK);
	CHECK_EQ(h.version, 3);
	CHECK_EQ(rc, ST_ECONFLICT);
	CHECK_EQ(head_version(s, "c6"), 3);
	CHECK_EQ(count_at(s, "c6", -1, NULL), 100);
	/* Retried over the compacted file, it succeeds. */
	REQUIRE(del(s, "c6", "id = 5", &r) == ST_OK);
	CHECK_EQ(count_at(s, "c6", -1, NULL), 99);

	/* Nothing the losers staged is left behind. */
	verify_clean(s);
	st_store_close(s);
}

static void t_conflicts_inline(void)
{
	conflicts();
}

static void t_conflicts_files(void)
{
	TEST_SET(store_opts.inline_max, 1);
	conflicts();
}

static const struct test_case tests[] = {
	{"dv_roundtrip_and_choice", t_dv_roundtrip_and_choice},
	{"dv_corruption", t_dv_corruption},
	{"dv_union_lower_filter", t_dv_union_lower_filter},
	{"delete_inline", t_delete_inline},
	{"delete_files", t_delete_files},
	{"update_inline", t_update_inline},
	{"update_files", t_update_files},
	{"maintenance_inline", t_maintenance_inline},
	{"maintenance_files", t_maintenance_files},
	{"conflicts_inline", t_conflicts_inline},
	{"conflicts_files", t_conflicts_files},
};

TEST_MAIN(tests)
