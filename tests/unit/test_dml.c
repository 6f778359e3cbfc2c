/*
 * tests/unit/test_dml.c — row-level DELETE and UPDATE with deletion vectors:
 * the DV encoding of format/dv.c (FORMAT.md §10) against brute force, and
 * st_delete / st_update (STORE.md §4.1, §4.2) on inline and file segments:
 * semantics, time travel, counts, constraints, compaction, restore,
 * replace-where, verify, reopen, and the conflict rules (DESIGN.md §6)
 * exercised through the store_test_dml_staged hook.
 */
#include <errno.h>
#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>
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
			int enc = check_roundtrip(pos, n, u, false, &out);
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
	/* Many random sets (the choice checked loosely: no larger than GAPS
	 * and BITMAP; dv_smallest_encoding checks it strictly). */
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

/* FORMAT.md §10: "A writer keeps the smallest of the three encodings (ties
 * to the lower id)": every shape of set over many universes, the payload
 * compared with GAPS, LZ4 of GAPS and BITMAP computed here. */
static void t_dv_smallest_encoding(void)
{
	struct st_buf out = {0};
	static const uint32_t universes[] = {1, 2, 7, 8, 9, 63, 64, 65, 100, 1000, 4096, 10007, 100000};
	uint32_t *pos = malloc(100000 * sizeof *pos);
	for (size_t ui = 0; ui < sizeof universes / sizeof *universes; ui++) {
		uint32_t u = universes[ui];
		for (int kind = 0; kind <= 8; kind++) {
			uint32_t n = make_set(u, kind, pos);
			if (n)
				check_roundtrip(pos, n, u, true, &out);
		}
	}
	/* A short run in a big universe: 40 zero gap bytes (41 with the first
	 * position) that LZ4 makes 13, so the smallest is GAPS_LZ4. */
	for (uint32_t i = 0; i < 40; i++)
		pos[i] = 2000 + i;
	CHECK_EQ(check_roundtrip(pos, 40, 1000000, true, &out), DV_GAPS_LZ4);
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
	CHECK_EQ(decode_patched(&b, 12, 6, 1000), ST_ECORRUPT); /* raw length */
	CHECK_EQ(decode_patched(&b, 12, 4, 1000), ST_ECORRUPT);
	CHECK_EQ(decode_patched(&b, 8, 0xe9, 1000), ST_ECORRUPT); /* universe 1001 */
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
	/* Every column, in table order: id, a, b first (renames keep them). */
	if (st_scan_open(s, table, at, NULL, 0, pred, &sc, &err) != ST_OK) {
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
	/* The scrub checks the same (DV included) table by table. */
	struct st_scrub_opts so = {0};
	bool stopped = true;
	memset(&vr, 0, sizeof vr);
	rc = st_scrub(s, &so, &vr, &stopped, &err);
	CHECK_EQ(rc, ST_OK);
	CHECK(!stopped);
	for (uint32_t i = 0; i < vr.nproblems; i++)
		fprintf(stderr, "  scrub: %s\n", vr.problems[i]);
	CHECK_EQ(vr.nproblems, 0);
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
	{
		/* ... and by time: the DELETE's commit time, and just before. */
		st_scan *sc;
		struct st_scan_info ti;
		REQUIRE(st_scan_open(s, "t", (struct st_at){ST_AT_TIME, r.commit.time_us}, NULL, 0,
				     NULL, &sc, &err) == ST_OK);
		st_scan_info(sc, &ti);
		CHECK_EQ(ti.version, 3);
		CHECK_EQ(ti.rows, 190);
		st_scan_close(sc);
		REQUIRE(st_scan_open(s, "t", (struct st_at){ST_AT_TIME, r.commit.time_us - 1}, NULL, 0,
				     NULL, &sc, &err) == ST_OK);
		st_scan_info(sc, &ti);
		CHECK_EQ(ti.version, 2);
		CHECK_EQ(ti.rows, 200);
		CHECK_EQ(ti.dvs, 0);
		st_scan_close(sc);
	}
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
	CHECK_EQ(h[0]->version, 8);
	CHECK_EQ(h[0]->info.rows_deleted, 90);
	CHECK_EQ(h[0]->info.rows_removed, 90);
	CHECK_EQ(h[0]->info.rows_added, 0);
	CHECK_EQ(h[0]->info.dvs_added, 0);
	CHECK_EQ(h[0]->info.read_version, 7);
	CHECK_EQ(h[0]->nadd, 0);
	CHECK_EQ(h[0]->nremove, 1);
	act_commit_free(h[0]);
	free(h);
	REQUIRE(st_history(s, "t", 5, &h, &n, &err) == ST_OK);
	REQUIRE(n == 5);
	CHECK_EQ(h[4]->version, 4); /* id % 10 = 3: two files re-added with vectors */
	CHECK(!strcmp(h[4]->info.operation, "DELETE"));
	CHECK_EQ(h[4]->info.rows_deleted, 19);
	CHECK_EQ(h[4]->info.dvs_added, 2);
	CHECK_EQ(h[4]->nadd, 2);
	CHECK_EQ(h[4]->nremove, 2);
	bool has_pred = false;
	for (uint32_t i = 0; i < h[4]->info.nparams; i++)
		if (!strcmp(h[4]->info.params[i].key, "predicate"))
			has_pred = true;
	CHECK(has_pred);
	for (uint32_t i = 0; i < n; i++)
		act_commit_free(h[i]);
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
	CHECK_EQ(h[0]->info.rows_updated, 1);
	CHECK_EQ(h[0]->info.rows_added, 1);
	CHECK_EQ(h[0]->info.rows_removed, 1);
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

/* ---- NULLs, three-valued logic, schema changes --------------------- */

/* A DELETE must remove exactly the rows where its predicate is TRUE: a
 * NULL makes comparisons UNKNOWN, and statistics must not take a file for
 * "all match" past them. Each predicate on a table of its own (ids 0..99,
 * b = 2 id, NULL at ids 49 and 99), against the count worked out here and
 * against a scan with the same predicate. Then columns added, renamed. */
static void nulls_schema(void)
{
	static const struct {
		const char *pred;
		int64_t want;
	} cases[] = {
		{"b >= 0", 98},
		{"NOT (b < 0)", 98},
		{"b != 5", 98},
		{"b <> 5", 98},
		{"b IS NOT NULL", 98},
		{"b IS NULL", 2},
		{"NOT (b IS NULL)", 98},
		{"b >= 0 OR id < 200", 100},
		{"b >= 0 AND id < 200", 98},
		{"NOT (b < 0 AND id > 1000)", 100},
		{"NOT (b < 0 OR id > 1000)", 98},
		{"COALESCE(b, 0) >= 0", 100},
		{"b BETWEEN 0 AND 1000", 98},
		{"b NOT BETWEEN 0 AND 10", 92},
		{"b IN (0, 2, 4)", 3},
		{"NOT (b IN (0, 2, 4))", 95},
		{"b NOT IN (0, 2, 4)", 95},
		{"CASE WHEN b IS NULL THEN 1 ELSE 0 END = 1", 2},
		{"b / 0 IS NULL", 100},
		{"a % 0 = 1", 0},
		{"id BETWEEN 10 AND 19", 10},
		{"id NOT BETWEEN 10 AND 89", 20},
		{"id > 50 AND NOT (id > 50)", 0},
		{"-id < -90", 9},
		{"id * 2 = b", 98},
		{"a - id = 0", 100},
		{"a / 10 = 3", 10},
		{"CAST(a AS string) = '95'", 1},
		{"CAST(b AS string) IS NULL", 2},
		{"b + 1 > 0", 98},
		{"FALSE", 0},
		{"id < 0", 0},
	};
	st_store *s = open_store(test_new_dir("dml"));
	struct st_err err;
	struct st_dml_result r;
	int bad = 0;
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		char name[16];
		snprintf(name, sizeof name, "p%zu", i);
		create(s, name, NULL);
		REQUIRE(put(s, name, 0, 100, NULL, NULL, &err) == ST_OK);
		int64_t scanned = count_at(s, name, -1, cases[i].pred);
		int rc = st_delete(s, name, cases[i].pred, NULL, &r, &err);
		int64_t left = count_at(s, name, -1, NULL);
		if (rc != ST_OK || (int64_t)r.rows_deleted != cases[i].want || scanned != cases[i].want ||
		    left != 100 - cases[i].want || r.commit.noop != (cases[i].want == 0)) {
			fprintf(stderr, "  DELETE WHERE %s: rc %d (%s), %llu deleted, a scan selects "
				"%lld, %lld left; want %lld deleted\n", cases[i].pred, rc,
				rc ? err.msg : "", (unsigned long long)r.rows_deleted, (long long)scanned,
				(long long)left, (long long)cases[i].want);
			bad++;
		}
		CHECK_EQ(count_at(s, name, -1, cases[i].pred), 0);
	}
	CHECK_EQ(bad, 0);
	/* An added column reads NULL in the old files. */
	create(s, "t", NULL);
	REQUIRE(put(s, "t", 0, 100, NULL, NULL, &err) == ST_OK); /* v1 */
	struct st_alter add = {ST_ALTER_ADD_COLUMN, "c", NULL, ST_TYPE_INT64};
	struct st_commit_result cr;
	REQUIRE(st_table_alter(s, "t", &add, &cr, &err) == ST_OK); /* v2 */
	REQUIRE(del(s, "t", "c = 5", &r) == ST_OK);
	CHECK(r.commit.noop);
	CHECK_EQ(r.files_skipped, 1);
	REQUIRE(del(s, "t", "c IS NULL AND id < 10", &r) == ST_OK); /* v3 */
	CHECK_EQ(r.rows_deleted, 10);
	int rc = upd(s, "t", "c = id * 10", "id >= 10 AND id < 20", &r, &err); /* v4 */
	if (rc != ST_OK)
		fprintf(stderr, "  update of an added column: %s\n", err.msg);
	REQUIRE(rc == ST_OK);
	CHECK_EQ(r.rows_updated, 10);
	CHECK_EQ(count_at(s, "t", -1, "c IS NOT NULL"), 10);
	REQUIRE(del(s, "t", "c >= 150", &r) == ST_OK); /* v5 */
	CHECK_EQ(r.rows_deleted, 5);
	CHECK_EQ(count_at(s, "t", -1, NULL), 85);
	CHECK_EQ(count_at(s, "t", -1, "c IS NOT NULL"), 5);
	/* A renamed column: the old files answer to the new name. */
	struct st_alter ren = {ST_ALTER_RENAME_COLUMN, "a", "aa", 0};
	REQUIRE(st_table_alter(s, "t", &ren, &cr, &err) == ST_OK); /* v6 */
	REQUIRE(del(s, "t", "aa = 30 OR aa = 12", &r) == ST_OK);   /* v7 */
	CHECK_EQ(r.rows_deleted, 2);
	CHECK_EQ(count_at(s, "t", -1, NULL), 83);
	CHECK(st_delete(s, "t", "a = 31", NULL, &r, &err) != ST_OK);
	REQUIRE(upd(s, "t", "aa = aa + 1", "aa >= 90", &r, &err) == ST_OK);
	CHECK_EQ(r.rows_updated, 10);
	CHECK_EQ(count_at(s, "t", -1, "aa = 100"), 1);
	CHECK_EQ(count_at(s, "t", 7, "aa = 100"), 0);
	verify_clean(s);
	st_store_close(s);
}

static void t_nulls_schema_inline(void)
{
	nulls_schema();
}

static void t_nulls_schema_files(void)
{
	TEST_SET(store_opts.inline_max, 1);
	nulls_schema();
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
	/* A backup holds the vectors (and the shared segments), and restores. */
	char bdir[200], rdir[200];
	snprintf(bdir, sizeof bdir, "%s.backup", dir);
	snprintf(rdir, sizeof rdir, "%s.restored", dir);
	test_defer_rmtree(bdir);
	test_defer_rmtree(rdir);
	struct st_backup_result br;
	rc = st_backup(s, bdir, &br, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  backup: %s\n", err.msg);
	CHECK_EQ(rc, ST_OK);
	st_store_close(s);
	rc = st_restore_from(bdir, rdir, &br, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  restore from backup: %s\n", err.msg);
	REQUIRE(rc == ST_OK);
	s = open_store(rdir);
	CHECK_EQ(count_at(s, "t", -1, NULL), final_count - 1);
	CHECK_EQ(rows_at(s, "t", 3, NULL, NULL, &info), 180);
	CHECK_EQ(info.dvs, 2);
	CHECK_EQ(count_at(s, "t", 9, NULL), 160);
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

/* ---- random DML against a model ------------------------------------- */

enum { MN = 1000, MOPS = 40 };

struct mrow {
	bool alive;
	int32_t a, b;
	bool bnull;
};

/* Compare the table at v (-1 latest) with model m. */
static bool same_as_model(st_store *s, int64_t v, const struct mrow *m)
{
	static struct row rows[MAXROWS];
	int64_t n = rows_at(s, "t", v, NULL, rows, NULL), k = 0;
	bool ok = n >= 0;
	for (int i = 0; i < MN && ok; i++) {
		if (!m[i].alive)
			continue;
		if (k >= n || rows[k].id != i || rows[k].a != m[i].a || rows[k].bnull != m[i].bnull ||
		    (!m[i].bnull && rows[k].b != m[i].b)) {
			fprintf(stderr, "  version %lld: id %d differs (scan row %lld: id %lld a %d)\n",
				(long long)v, i, (long long)k, k < n ? (long long)rows[k].id : -1LL,
				k < n ? rows[k].a : -1);
			ok = false;
		}
		k++;
	}
	if (ok && k != n) {
		fprintf(stderr, "  version %lld: %lld rows, the model has %lld\n", (long long)v,
			(long long)n, (long long)k);
		ok = false;
	}
	return ok;
}

/* Random DELETEs and UPDATEs over many small row groups (so that vectors
 * span groups, and some groups lose every row), each checked against a
 * model at its version and at every earlier one; a compaction midway. */
static void random_dml(void)
{
	TEST_SET(store_opts.row_group_rows, 16);
	st_store *s = open_store(test_new_dir("dml"));
	struct st_err err;
	struct st_dml_result r;
	static struct mrow hist[MOPS + 8][MN];
	int64_t hv[MOPS + 8];
	int nh = 0;
	create(s, "t", NULL);
	for (int k = 0; k < 4; k++)
		REQUIRE(put(s, "t", k * (MN / 4), MN / 4, NULL, NULL, &err) == ST_OK);
	struct mrow m[MN];
	for (int i = 0; i < MN; i++)
		m[i] = (struct mrow){true, i, 2 * i, i % 50 == 49};
	uint64_t ver = 4;
	memcpy(hist[nh], m, sizeof m);
	hv[nh++] = (int64_t)ver;
	rng_state = 0x1234567ull;
	int bad = 0;
	for (int op = 0; op < MOPS; op++) {
		char pred[128], set[128] = "";
		int kind = (int)(rnd() % 5);
		uint32_t md = 2 + rnd() % 23, kk = rnd() % md, lo = rnd() % MN, len = 1 + rnd() % 120;
		bool match[MN];
		switch (kind) {
		case 0:
		case 3:
			snprintf(pred, sizeof pred, "id %% %u = %u", md, kk);
			for (int i = 0; i < MN; i++)
				match[i] = (uint32_t)i % md == kk;
			break;
		case 1:
			snprintf(pred, sizeof pred, "id >= %u AND id < %u", lo, lo + len);
			for (int i = 0; i < MN; i++)
				match[i] = (uint32_t)i >= lo && (uint32_t)i < lo + len;
			break;
		case 2:
			snprintf(pred, sizeof pred, "a %% %u = %u", md, kk);
			for (int i = 0; i < MN; i++)
				match[i] = (uint32_t)m[i].a % md == kk;
			break;
		default:
			snprintf(pred, sizeof pred, "b IS NULL OR (id >= %u AND id < %u)", lo, lo + len);
			for (int i = 0; i < MN; i++)
				match[i] = m[i].bnull || ((uint32_t)i >= lo && (uint32_t)i < lo + len);
			break;
		}
		bool update = kind >= 3;
		if (update)
			snprintf(set, sizeof set, "a = a + %u, b = COALESCE(b, 0) + a", 1 + op);
		uint64_t hits = 0;
		for (int i = 0; i < MN; i++)
			if (m[i].alive && match[i]) {
				hits++;
				if (update) {
					int32_t olda = m[i].a;
					m[i].a = olda + 1 + op;
					m[i].b = (m[i].bnull ? 0 : m[i].b) + olda;
					m[i].bnull = false;
				} else {
					m[i].alive = false;
				}
			}
		int rc = update ? upd(s, "t", set, pred, &r, &err) : st_delete(s, "t", pred, NULL, &r, &err);
		if (rc != ST_OK)
			fprintf(stderr, "  op %d (%s WHERE %s): %s\n", op, update ? set : "DELETE", pred,
				err.msg);
		REQUIRE(rc == ST_OK);
		CHECK_EQ(update ? r.rows_updated : r.rows_deleted, hits);
		CHECK_EQ(r.commit.noop, hits == 0);
		if (hits)
			ver++;
		CHECK_EQ(r.commit.version, ver);
		if (!same_as_model(s, -1, m) && !bad++)
			fprintf(stderr, "  after op %d: %s WHERE %s\n", op, update ? set : "DELETE", pred);
		int64_t c, sum, wc = 0, ws = 0;
		agg_at(s, "t", -1, "a", "id % 3 = 1", &c, &sum);
		for (int i = 0; i < MN; i++)
			if (m[i].alive && i % 3 == 1) {
				wc++;
				ws += m[i].a;
			}
		CHECK_EQ(c, wc);
		CHECK_EQ(sum, ws);
		/* A pruned range scan agrees too. */
		int64_t want = 0;
		for (uint32_t i = lo; i < lo + 40 && i < MN; i++)
			want += m[i].alive;
		snprintf(pred, sizeof pred, "id >= %u AND id < %u", lo, lo + 40);
		CHECK_EQ(count_at(s, "t", -1, pred), want);
		if (hits) {
			memcpy(hist[nh], m, sizeof m);
			hv[nh++] = (int64_t)ver;
		}
		if (op == MOPS / 2) {
			struct st_commit_result cr;
			REQUIRE(st_table_compact(s, "t", &cr, &err) == ST_OK);
			CHECK(!cr.noop);
			ver = cr.version;
			struct st_scan_info info;
			rows_at(s, "t", -1, NULL, NULL, &info);
			CHECK_EQ(info.dvs, 0);
			CHECK(same_as_model(s, -1, m));
			memcpy(hist[nh], m, sizeof m);
			hv[nh++] = (int64_t)ver;
		}
	}
	CHECK_EQ(bad, 0);
	/* Every version still reads as it was. */
	for (int k = 0; k < nh; k++)
		CHECK(same_as_model(s, hv[k], hist[k]));
	/* Restore to a version from the middle (vectors and all), then DML on. */
	int mid = nh / 3;
	struct st_commit_result cr;
	REQUIRE(st_table_restore(s, "t", (struct st_at){ST_AT_VERSION, hv[mid]}, &cr, &err) ==
		ST_OK);
	CHECK(same_as_model(s, -1, hist[mid]));
	memcpy(m, hist[mid], sizeof m);
	REQUIRE(st_delete(s, "t", "id % 7 = 2", NULL, &r, &err) == ST_OK);
	uint64_t hits = 0;
	for (int i = 0; i < MN; i++)
		if (m[i].alive && i % 7 == 2) {
			m[i].alive = false;
			hits++;
		}
	CHECK_EQ(r.rows_deleted, hits);
	CHECK(same_as_model(s, -1, m));
	verify_clean(s);
	st_store_close(s);
}

static void t_random_dml_inline(void)
{
	random_dml();
}

static void t_random_dml_files(void)
{
	TEST_SET(store_opts.inline_max, 1);
	random_dml();
}

/* Segment files under dir/tables: their count and the most names one
 * inode has. */
static int seg_count, seg_maxlink;

static int seg_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)f;
	size_t l = strlen(path);
	if (flag == FTW_F && l > 4 && !strcmp(path + l - 4, ".seg")) {
		seg_count++;
		if ((int)st->st_nlink > seg_maxlink)
			seg_maxlink = (int)st->st_nlink;
	}
	return 0;
}

static int segments(const char *dir)
{
	char p[200];
	snprintf(p, sizeof p, "%s/tables", dir);
	seg_count = seg_maxlink = 0;
	nftw(p, seg_one, 16, FTW_PHYS);
	return seg_count;
}

static void vacuum_now(st_store *s, uint64_t want_files)
{
	struct st_vacuum_opts vo = {.retain_us = 1, .force = true};
	struct st_vacuum_result vr;
	struct st_err err;
	memset(&vr, 0, sizeof vr);
	int rc = st_vacuum(s, "t", &vo, &vr, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  vacuum: %s\n", err.msg);
	CHECK_EQ(rc, ST_OK);
	CHECK_EQ(vr.files, want_files);
	st_vacuum_result_fini(&vr);
}

/* A file with a vector shares its segment (a hard link, or the inline
 * bytes copied): vacuum of the file it was made from leaves it readable.
 * And an UPDATE too large to encode in memory. */
static void vacuum_links(void)
{
	const char *d = test_new_dir("dml");
	char dir[160];
	snprintf(dir, sizeof dir, "%s", d);
	bool files = store_opts.inline_max == 1;
	st_store *s = open_store(dir);
	struct st_err err;
	struct st_dml_result r;
	struct st_commit_result cr;
	struct st_scan_info info;
	st_scan *sc;
	create(s, "t", NULL);
	REQUIRE(put(s, "t", 0, 100, NULL, NULL, &err) == ST_OK); /* v1 */
	REQUIRE(del(s, "t", "id % 10 = 3", &r) == ST_OK);       /* v2 */
	if (files) {
		CHECK_EQ(segments(dir), 2);
		CHECK_EQ(seg_maxlink, 2); /* one inode, two names */
	} else {
		CHECK_EQ(segments(dir), 0);
	}
	usleep(2000);
	vacuum_now(s, 1); /* the file v2 removed */
	CHECK_EQ(rows_at(s, "t", -1, NULL, NULL, &info), 90);
	CHECK_EQ(info.dvs, 1);
	CHECK_EQ(idsum_at(s, "t", -1), range_sum(0, 100) - (3 + 93) * 10 / 2);
	CHECK_EQ(st_scan_open(s, "t", (struct st_at){ST_AT_VERSION, 1}, NULL, 0, NULL, &sc, &err),
		 ST_ERANGE);
	if (files) {
		CHECK_EQ(segments(dir), 1);
		CHECK_EQ(seg_maxlink, 1);
	}
	verify_clean(s);
	/* A vector over a vector, and vacuum again. */
	REQUIRE(del(s, "t", "id % 10 = 7", &r) == ST_OK); /* v3 */
	CHECK_EQ(r.dvs_written, 1);
	usleep(2000);
	vacuum_now(s, 1);
	CHECK_EQ(rows_at(s, "t", -1, NULL, NULL, &info), 80);
	CHECK_EQ(info.deleted, 20);
	verify_clean(s);
	/* Compact, vacuum: one segment, no vector. */
	REQUIRE(st_table_compact(s, "t", &cr, &err) == ST_OK); /* v4 */
	usleep(2000);
	vacuum_now(s, 1);
	CHECK_EQ(rows_at(s, "t", -1, NULL, NULL, &info), 80);
	CHECK_EQ(info.dvs, 0);
	CHECK_EQ(segments(dir), 1); /* compaction always writes a file */
	verify_clean(s);
	/* A large UPDATE: its rows stream to a segment file. */
	enum { BIG = 6000 };
	REQUIRE(put(s, "t", 1000, BIG, NULL, NULL, &err) == ST_OK); /* v5 */
	int rc = upd(s, "t", "a = a + 1, b = COALESCE(b, -1)", "id >= 1000 AND id % 2 = 0", &r,
		     &err);
	if (rc != ST_OK)
		fprintf(stderr, "  big update: %s\n", err.msg);
	REQUIRE(rc == ST_OK);
	CHECK_EQ(r.rows_updated, BIG / 2);
	CHECK_EQ(r.dvs_written, 1);
	int64_t c, sum;
	agg_at(s, "t", -1, "a", "id >= 1000", &c, &sum);
	CHECK_EQ(c, BIG);
	CHECK_EQ(sum, range_sum(1000, 1000 + BIG) + BIG / 2);
	CHECK_EQ(count_at(s, "t", -1, "id >= 1000 AND b IS NULL"), BIG / 50); /* ids ending 49 are odd */
	CHECK_EQ(count_at(s, "t", -1, "id >= 1000 AND b = -1"), 0);            /* 49 is odd */
	REQUIRE(upd(s, "t", "b = COALESCE(b, -1)", "id >= 1000", &r, &err) == ST_OK);
	CHECK_EQ(r.rows_updated, BIG);
	CHECK_EQ(count_at(s, "t", -1, "id >= 1000 AND b = -1"), BIG / 50);
	CHECK_EQ(count_at(s, "t", -1, "b IS NULL"), 2); /* ids 49 and 99 */
	agg_at(s, "t", 5, "a", "id >= 1000", &c, &sum);
	CHECK_EQ(sum, range_sum(1000, 1000 + BIG));
	verify_clean(s);
	st_store_close(s);
	s = open_store(dir);
	CHECK_EQ(count_at(s, "t", -1, NULL), 80 + BIG);
	verify_clean(s);
	st_store_close(s);
}

static void t_vacuum_links_inline(void)
{
	vacuum_links();
}

static void t_vacuum_links_files(void)
{
	TEST_SET(store_opts.inline_max, 1);
	vacuum_links();
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

static uint64_t app_version_next = 1;

/* Hook: an idempotent write for app id "job", version app_version_next. */
static void app_hook(st_store *s, void *p)
{
	struct hook_arg *h = p;
	store_test_dml_staged = NULL;
	store_test_dml_arg = NULL;
	struct st_write_opts o = {.app_id = "job", .app_version = app_version_next};
	struct st_commit_result cr;
	h->rc = put(s, h->table, h->from, h->n, &o, &cr, &h->err);
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
	/* (The rule named is "added rows that match this write's replace-where
	 * predicate": the winner's re-added file is checked before its removal.) */
	CHECK_CONTAINS(err.msg, "conflict with version 2");
	CHECK_CONTAINS(err.msg, "retry");
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
	CHECK_CONTAINS(err.msg, "added rows that match");
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
	CHECK_CONTAINS(err.msg, "removed a file this write read");
	CHECK_EQ(head_version(s, "c6"), 3);
	CHECK_EQ(count_at(s, "c6", -1, NULL), 100);
	/* Retried over the compacted file, it succeeds. */
	REQUIRE(del(s, "c6", "id = 5", &r) == ST_OK);
	CHECK_EQ(count_at(s, "c6", -1, NULL), 99);

	/* Disjoint work in other files does not conflict: a DELETE in the
	 * second file, an UPDATE of rows of the second file. */
	create(s, "c7", NULL);
	REQUIRE(put(s, "c7", 0, 100, NULL, NULL, &err) == ST_OK);
	REQUIRE(put(s, "c7", 100, 100, NULL, NULL, &err) == ST_OK);
	h = (struct hook_arg){.kind = H_DELETE, .table = "c7", .pred = "id >= 150 AND id < 160"};
	arm(&h);
	rc = st_delete(s, "c7", "id < 10", NULL, &r, &err);
	hook_reset(NULL);
	if (rc != ST_OK)
		fprintf(stderr, "  disjoint deletes: %s\n", err.msg);
	CHECK_EQ(h.rc, ST_OK);
	CHECK_EQ(rc, ST_OK);
	CHECK_EQ(r.commit.version, 4);
	CHECK_EQ(count_at(s, "c7", -1, NULL), 180);
	h = (struct hook_arg){.kind = H_UPDATE, .table = "c7", .pred = "id >= 190"};
	arm(&h);
	rc = st_delete(s, "c7", "id >= 10 AND id < 20", NULL, &r, &err);
	hook_reset(NULL);
	if (rc != ST_OK)
		fprintf(stderr, "  delete vs a disjoint update: %s\n", err.msg);
	CHECK_EQ(h.rc, ST_OK);
	CHECK_EQ(rc, ST_OK);
	CHECK_EQ(count_at(s, "c7", -1, NULL), 170);
	CHECK_EQ(count_at(s, "c7", -1, "id >= 190 AND a = id + 1"), 10);
	/* An UPDATE vs a blind append of rows it would have matched. */
	h = (struct hook_arg){.kind = H_APPEND, .table = "c7", .from = 20, .n = 5};
	arm(&h);
	rc = st_update(s, "c7", "a = 0", "id >= 20 AND id < 30", NULL, &r, &err);
	hook_reset(NULL);
	CHECK_EQ(h.rc, ST_OK);
	CHECK_EQ(rc, ST_ECONFLICT);
	CHECK_EQ(count_at(s, "c7", -1, "a = 0"), 0);
	CHECK_EQ(count_at(s, "c7", -1, NULL), 175);
	/* Nothing the losers staged is left behind. */
	verify_clean(s);
	st_store_close(s);
}

/* MERGE and OPTIMIZE against concurrent writers (the hook commits the
 * concurrent change between their staging and their commit). */
static void merge_optimize_conflicts(void)
{
	test_defer(hook_reset, NULL);
	st_store *s = open_store(test_new_dir("dml"));
	struct st_err err;
	struct st_dml_result r;
	struct st_optimize_result orr;
	struct hook_arg h;
	struct st_merge_opts mo = {.on = "t.id = s.id", .matched = ST_MERGE_MATCHED_UPDATE_ALL,
				   .not_matched = ST_MERGE_NOT_MATCHED_INSERT_ALL};
	int rc;
	create(s, "mt", NULL);
	create(s, "src", NULL);
	REQUIRE(put(s, "mt", 0, 100, NULL, NULL, &err) == ST_OK);
	REQUIRE(put(s, "src", 90, 20, NULL, NULL, &err) == ST_OK); /* 90..99 match, 100..109 new */

	/* A blind append of keys in the MERGE's source range: a conflict
	 * (Serializable): both would insert id 105. */
	h = (struct hook_arg){.kind = H_APPEND, .table = "mt", .from = 105, .n = 1};
	arm(&h);
	rc = st_merge(s, "mt", "src", &mo, &r, &err);
	hook_reset(NULL);
	CHECK_EQ(h.calls, 1);
	CHECK_EQ(h.rc, ST_OK);
	CHECK_EQ(rc, ST_ECONFLICT);
	CHECK_EQ(count_at(s, "mt", -1, NULL), 101);
	/* An append far outside the range: no conflict. */
	h = (struct hook_arg){.kind = H_APPEND, .table = "mt", .from = 5000, .n = 10};
	arm(&h);
	rc = st_merge(s, "mt", "src", &mo, &r, &err);
	hook_reset(NULL);
	if (rc != ST_OK)
		printf("    merge: %s\n", err.msg);
	CHECK_EQ(rc, ST_OK);
	CHECK_EQ(r.rows_updated, 11); /* 90..99 and the 105 appended above */
	CHECK_EQ(r.rows_inserted, 9);
	CHECK_EQ(count_at(s, "mt", -1, NULL), 101 + 10 + 9);
	/* A concurrent DELETE of a row the MERGE matched: a conflict. */
	h = (struct hook_arg){.kind = H_DELETE, .table = "mt", .pred = "id = 95"};
	arm(&h);
	rc = st_merge(s, "mt", "src", &mo, &r, &err);
	hook_reset(NULL);
	CHECK_EQ(h.rc, ST_OK);
	CHECK_EQ(rc, ST_ECONFLICT);
	CHECK_EQ(count_at(s, "mt", -1, NULL), 119);

	/* OPTIMIZE never conflicts with a concurrent append, whose rows stay. */
	create(s, "ot", NULL);
	for (int i = 0; i < 4; i++)
		REQUIRE(put(s, "ot", i * 10, 10, NULL, NULL, &err) == ST_OK);
	h = (struct hook_arg){.kind = H_APPEND, .table = "ot", .from = 1000, .n = 5};
	arm(&h);
	rc = st_optimize(s, "ot", NULL, &orr, &err);
	hook_reset(NULL);
	CHECK_EQ(h.rc, ST_OK);
	if (rc != ST_OK)
		printf("    optimize: %s\n", err.msg);
	CHECK_EQ(rc, ST_OK);
	CHECK(!orr.commit.noop);
	CHECK_EQ(orr.files_removed, 4);
	CHECK_EQ(count_at(s, "ot", -1, NULL), 45);
	/* A concurrent DELETE of rows in a file it rewrites: a conflict, and
	 * the DELETE stands. */
	REQUIRE(put(s, "ot", 2000, 10, NULL, NULL, &err) == ST_OK);
	h = (struct hook_arg){.kind = H_DELETE, .table = "ot", .pred = "id = 2003"};
	arm(&h);
	rc = st_optimize(s, "ot", NULL, &orr, &err);
	hook_reset(NULL);
	CHECK_EQ(h.rc, ST_OK);
	CHECK_EQ(rc, ST_ECONFLICT);
	CHECK_EQ(count_at(s, "ot", -1, NULL), 54);
	/* Retried, it purges the DELETE's vector; a second run does nothing. */
	REQUIRE(st_optimize(s, "ot", NULL, &orr, &err) == ST_OK);
	CHECK(!orr.commit.noop);
	CHECK_EQ(count_at(s, "ot", -1, NULL), 54);
	REQUIRE(st_optimize(s, "ot", NULL, &orr, &err) == ST_OK);
	CHECK(orr.commit.noop);
	struct st_verify_result vr;
	REQUIRE(st_verify(s, &vr, &err) == ST_OK);
	CHECK_EQ(vr.nproblems, 0);
	st_verify_result_fini(&vr);
	st_store_close(s);
}

static void t_merge_optimize_conflicts(void)
{
	merge_optimize_conflicts();
}

/* Declared keys: a repeat inside a write, an existing key, two concurrent
 * writes of one new key (the second conflicts), UPDATE of a key column, a
 * MERGE on another column, an upsert by MERGE on the key. */
static void t_declared_keys(void)
{
	st_store *s = open_store(test_new_dir("dml"));
	struct st_err err;
	struct st_dml_result r;
	const char *key[1] = {"id"};
	struct st_table_spec spec = {.name = "kt", .cols = cols3, .ncols = 3, .key = key, .nkey = 1};
	REQUIRE(st_table_create(s, &spec, ST_CREATE_ERROR, NULL, &err) == ST_OK);
	REQUIRE(put(s, "kt", 0, 100, NULL, NULL, &err) == ST_OK);
	/* An existing key is refused, naming it; nothing lands. */
	CHECK_EQ(put(s, "kt", 99, 5, NULL, NULL, &err), ST_ESCHEMA);
	CHECK_CONTAINS(err.msg, "key (99) already exists");
	CHECK_EQ(head_version(s, "kt"), 1);
	/* A repeat inside one write (two batches of one transaction's write). */
	st_txn *t;
	REQUIRE(st_txn_begin(s, &t, &err) == ST_OK);
	int64_t id2[2] = {500, 500};
	int32_t a2[2] = {1, 2};
	const char *names[2] = {"id", "a"};
	struct st_vec v2[2] = {{.type = ST_TYPE_INT64, .n = 2, .data = id2},
			       {.type = ST_TYPE_INT32, .n = 2, .data = a2}};
	struct st_batch b2 = {2, names, v2, 2};
	CHECK_EQ(st_txn_write(t, "kt", &b2, 1, NULL, &err), ST_ESCHEMA);
	CHECK_CONTAINS(err.msg, "key (500) appears twice in the write: rows 0 and 1");
	st_txn_abort(t);
	/* Two concurrent writes of one new key: the later commit conflicts. */
	REQUIRE(st_txn_begin(s, &t, &err) == ST_OK);
	v2[0].n = v2[1].n = b2.nrows = 1;
	REQUIRE(st_txn_write(t, "kt", &b2, 1, NULL, &err) == ST_OK);
	REQUIRE(put(s, "kt", 500, 1, NULL, NULL, &err) == ST_OK);
	struct st_commit_result cr;
	CHECK_EQ(st_txn_commit(t, &cr, &err), ST_ECONFLICT);
	CHECK_CONTAINS(err.msg, "key range");
	CHECK_EQ(count_at(s, "kt", -1, "id = 500"), 1);
	/* A disjoint key range: no conflict. */
	REQUIRE(st_txn_begin(s, &t, &err) == ST_OK);
	id2[0] = 900;
	REQUIRE(st_txn_write(t, "kt", &b2, 1, NULL, &err) == ST_OK);
	REQUIRE(put(s, "kt", 600, 1, NULL, NULL, &err) == ST_OK);
	CHECK_EQ(st_txn_commit(t, &cr, &err), ST_OK);
	/* A key column is not updated; a MERGE goes by the key. */
	CHECK_EQ(st_update(s, "kt", "id = id + 1000", "id = 1", NULL, &r, &err), ST_EINVAL);
	create(s, "ks", NULL);
	REQUIRE(put(s, "ks", 95, 10, NULL, NULL, &err) == ST_OK); /* 95..99 match, 100..104 new */
	struct st_merge_opts mo = {.on = "t.a = s.a", .matched = ST_MERGE_MATCHED_UPDATE_ALL,
				   .not_matched = ST_MERGE_NOT_MATCHED_INSERT_ALL};
	CHECK_EQ(st_merge(s, "kt", "ks", &mo, &r, &err), ST_EINVAL);
	CHECK_CONTAINS(err.msg, "key columns");
	mo.on = "t.id = s.id";
	REQUIRE(st_merge(s, "kt", "ks", &mo, &r, &err) == ST_OK);
	CHECK_EQ(r.rows_updated, 5);
	CHECK_EQ(r.rows_inserted, 5);
	CHECK_EQ(count_at(s, "kt", -1, NULL), 100 + 3 + 5);
	/* A source that would insert one new key twice is refused. */
	REQUIRE(put(s, "ks", 2000, 1, NULL, NULL, &err) == ST_OK);
	REQUIRE(put(s, "ks", 2000, 1, NULL, NULL, &err) == ST_OK);
	CHECK_EQ(st_merge(s, "kt", "ks", &mo, &r, &err), ST_ESCHEMA);
	CHECK_CONTAINS(err.msg, "key (2000) appears twice");
	st_store_close(s);
}

/* MERGE's update "SET ...": values from the target row (col, t.col) and
 * its source row (s.col); refused for a source column or a bad value. */
static void t_merge_update_set(void)
{
	st_store *s = open_store(test_new_dir("dml"));
	struct st_err err;
	struct st_dml_result r;
	create(s, "us", NULL);
	create(s, "usrc", NULL);
	REQUIRE(put(s, "us", 0, 10, NULL, NULL, &err) == ST_OK);   /* a = id */
	REQUIRE(put(s, "usrc", 5, 10, NULL, NULL, &err) == ST_OK); /* 5..9 match */
	struct st_merge_opts mo = {.on = "t.id = s.id", .matched = ST_MERGE_MATCHED_UPDATE_SET,
				   .set = "a = t.a + s.a * 100, b = CASE WHEN s.id > 7 THEN -1 ELSE b END"};
	REQUIRE(st_merge(s, "us", "usrc", &mo, &r, &err) == ST_OK);
	CHECK_EQ(r.rows_updated, 5);
	CHECK_EQ(r.rows_inserted, 0);
	CHECK_EQ(count_at(s, "us", -1, NULL), 10);
	CHECK_EQ(count_at(s, "us", -1, "a = id * 101 AND id >= 5"), 5);
	CHECK_EQ(count_at(s, "us", -1, "b = -1"), 2);
	CHECK_EQ(count_at(s, "us", -1, "a = id"), 5);
	mo.set = "s.a = 1";
	CHECK_EQ(st_merge(s, "us", "usrc", &mo, &r, &err), ST_EINVAL);
	mo.set = "a = s.a * 3000000000";
	CHECK_EQ(st_merge(s, "us", "usrc", &mo, &r, &err), ST_ERANGE);
	CHECK_EQ(head_version(s, "us"), 2);
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

/* An idempotent DELETE whose app id and version another write commits
 * between its staging and its commit: it must not land, and must leave
 * nothing behind (verify: no orphan segment). */
static void app_id_race(void)
{
	test_defer(hook_reset, NULL);
	char dir[160];
	snprintf(dir, sizeof dir, "%s", test_new_dir("dml"));
	st_store *s = open_store(dir);
	struct st_err err;
	struct st_dml_result r;
	struct hook_arg h;
	int rc;
	TEST_SET(app_version_next, 1);
	create(s, "c7", NULL);
	REQUIRE(put(s, "c7", 0, 200, NULL, NULL, &err) == ST_OK);
	h = (struct hook_arg){.table = "c7", .from = 5000, .n = 1, .rc = -12345};
	struct st_dml_opts io = {.app_id = "job", .app_version = 1};
	store_test_dml_arg = &h;
	store_test_dml_staged = app_hook;
	uint64_t before = head_version(s, "c7");
	rc = st_delete(s, "c7", "id = 101", &io, &r, &err);
	hook_reset(NULL);
	CHECK_EQ(h.rc, ST_OK);
	/* Either outcome keeps the statement from landing: a conflict (the
	 * rule "same app id"), or a noop (the app version is now recorded). */
	CHECK(rc == ST_ECONFLICT || (rc == ST_OK && r.commit.noop));
	CHECK_EQ(head_version(s, "c7"), before + 1); /* the hook's append only */
	CHECK_EQ(count_at(s, "c7", -1, "id = 101"), 1);
	CHECK_EQ(count_at(s, "c7", -1, "id = 5000"), 1);
	verify_clean(s);
	/* The same for an UPDATE (a vector and a new segment staged). */
	h = (struct hook_arg){.table = "c7", .from = 6000, .n = 1, .rc = -12345};
	io.app_version = 2;
	app_version_next = 2;
	store_test_dml_arg = &h;
	store_test_dml_staged = app_hook;
	before = head_version(s, "c7");
	rc = st_update(s, "c7", "a = -1", "id >= 100 AND id < 110", &io, &r, &err);
	hook_reset(NULL);
	CHECK_EQ(h.rc, ST_OK);
	CHECK(rc == ST_ECONFLICT || (rc == ST_OK && r.commit.noop));
	CHECK_EQ(head_version(s, "c7"), before + 1);
	CHECK_EQ(count_at(s, "c7", -1, "a = -1"), 0);
	CHECK_EQ(count_at(s, "c7", -1, NULL), 202);
	verify_clean(s);
	st_store_close(s);
	/* A reopen removes what a write that never committed left. */
	s = open_store(dir);
	CHECK_EQ(count_at(s, "c7", -1, NULL), 202);
	verify_clean(s);
	st_store_close(s);
}

static void t_app_id_race_inline(void)
{
	app_id_race();
}

static void t_app_id_race_files(void)
{
	TEST_SET(store_opts.inline_max, 1);
	app_id_race();
}

/* Rows id = from..from+n-1, a = id, b NULL in every row. */
static int put_nullb(st_store *s, const char *table, int64_t from, uint32_t n, struct st_err *err)
{
	int64_t *id = malloc(n * 8 + 8);
	int32_t *a = malloc(n * 4 + 4), *b = calloc(n + 1, 4);
	uint8_t *valid = calloc(n / 8 + 1, 1);
	for (uint32_t i = 0; i < n; i++) {
		id[i] = from + i;
		a[i] = (int32_t)(from + i);
	}
	const char *names[3] = {"id", "a", "b"};
	struct st_vec v[3] = {{.type = ST_TYPE_INT64, .n = n, .data = id},
			      {.type = ST_TYPE_INT32, .n = n, .data = a},
			      {.type = ST_TYPE_INT32, .n = n, .data = b, .validity = valid}};
	struct st_batch bt = {3, names, v, n};
	struct st_commit_result r;
	int rc = st_write(s, table, &bt, 1, NULL, &r, err);
	free(id);
	free(a);
	free(b);
	free(valid);
	return rc;
}

static int nullb_rc;

/* Hook: append ids 100000.. with b all NULL to table "n". */
static void nullb_hook(st_store *s, void *p)
{
	store_test_dml_staged = NULL;
	store_test_dml_arg = NULL;
	nullb_rc = put_nullb(s, "n", 100000, 10, p);
}

/* Staged writes (transactions) that read what a DELETE then changed; a
 * concurrent append whose statistics cannot match, though one column of
 * it is all NULL; idempotent DELETEs. */
static void txn_vs_delete(void)
{
	st_store *s = open_store(test_new_dir("dml"));
	struct st_err err;
	struct st_dml_result r;
	struct st_commit_result cr;
	int rc;
	create(s, "t", NULL);
	REQUIRE(put(s, "t", 0, 100, NULL, NULL, &err) == ST_OK); /* v1 */
	/* A replace-where staged before a DELETE in its range commits. */
	st_txn *tx;
	struct st_write_opts rw = {.replace_where = "id < 50"};
	REQUIRE(st_txn_begin(s, &tx, &err) == ST_OK);
	{
		int64_t id[50];
		int32_t a[50];
		for (int i = 0; i < 50; i++) {
			id[i] = i;
			a[i] = -7;
		}
		const char *names[2] = {"id", "a"};
		struct st_vec v[2] = {{.type = ST_TYPE_INT64, .n = 50, .data = id},
				      {.type = ST_TYPE_INT32, .n = 50, .data = a}};
		struct st_batch bt = {2, names, v, 50};
		REQUIRE(st_txn_write(tx, "t", &bt, 1, &rw, &err) == ST_OK);
	}
	REQUIRE(del(s, "t", "id = 10", &r) == ST_OK); /* v2 */
	CHECK_EQ(r.dvs_written, 1);
	rc = st_txn_commit(tx, &cr, &err);
	CHECK_EQ(rc, ST_ECONFLICT);
	CHECK_EQ(head_version(s, "t"), 2);
	CHECK_EQ(count_at(s, "t", -1, NULL), 99);
	CHECK_EQ(count_at(s, "t", -1, "a = -7"), 0);
	/* An overwrite staged before a DELETE commits. */
	struct st_write_opts ow = {.mode = ST_WRITE_OVERWRITE};
	REQUIRE(st_txn_begin(s, &tx, &err) == ST_OK);
	{
		int64_t id[1] = {1000};
		int32_t a[1] = {1000};
		const char *names[2] = {"id", "a"};
		struct st_vec v[2] = {{.type = ST_TYPE_INT64, .n = 1, .data = id},
				      {.type = ST_TYPE_INT32, .n = 1, .data = a}};
		struct st_batch bt = {2, names, v, 1};
		REQUIRE(st_txn_write(tx, "t", &bt, 1, &ow, &err) == ST_OK);
	}
	REQUIRE(del(s, "t", "id = 11", &r) == ST_OK); /* v3 */
	CHECK_EQ(st_txn_commit(tx, &cr, &err), ST_ECONFLICT);
	CHECK_EQ(count_at(s, "t", -1, NULL), 98);
	/* A blind append staged before a DELETE: appends never conflict, and
	 * its rows stay. */
	REQUIRE(st_txn_begin(s, &tx, &err) == ST_OK);
	{
		int64_t id[3] = {500, 501, 502};
		int32_t a[3] = {1, 2, 3};
		const char *names[2] = {"id", "a"};
		struct st_vec v[2] = {{.type = ST_TYPE_INT64, .n = 3, .data = id},
				      {.type = ST_TYPE_INT32, .n = 3, .data = a}};
		struct st_batch bt = {2, names, v, 3};
		REQUIRE(st_txn_write(tx, "t", &bt, 1, NULL, &err) == ST_OK);
	}
	REQUIRE(del(s, "t", "id >= 12 AND id < 20", &r) == ST_OK); /* v4 */
	rc = st_txn_commit(tx, &cr, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  append after a DELETE: %s\n", err.msg);
	CHECK_EQ(rc, ST_OK);
	CHECK_EQ(count_at(s, "t", -1, NULL), 90 + 3);
	CHECK_EQ(count_at(s, "t", -1, "id >= 500"), 3);

	/* DELETE vs an append with ids out of range and b all NULL: the
	 * predicate reads b too, but the id bounds exclude the new file. */
	create(s, "n", NULL);
	REQUIRE(put(s, "n", 0, 100, NULL, NULL, &err) == ST_OK);
	struct st_err herr;
	nullb_rc = -12345;
	store_test_dml_arg = &herr;
	store_test_dml_staged = nullb_hook;
	rc = st_delete(s, "n", "id < 50 AND b >= 0", NULL, &r, &err);
	hook_reset(NULL);
	if (rc != ST_OK)
		fprintf(stderr, "  delete vs an all-NULL append: %s\n", err.msg);
	CHECK_EQ(nullb_rc, ST_OK);
	CHECK_EQ(rc, ST_OK);
	CHECK_EQ(r.rows_deleted, 49); /* id 49 has b NULL */
	CHECK_EQ(count_at(s, "n", -1, NULL), 51 + 10);

	/* Idempotent DELETE: the same app version again is a noop. */
	struct st_dml_opts io = {.app_id = "loader", .app_version = 1};
	REQUIRE(st_delete(s, "t", "id = 30", &io, &r, &err) == ST_OK);
	CHECK(!r.commit.noop);
	CHECK_EQ(r.rows_deleted, 1);
	uint64_t v = r.commit.version;
	REQUIRE(st_delete(s, "t", "id = 31", &io, &r, &err) == ST_OK);
	CHECK(r.commit.noop);
	CHECK_EQ(r.rows_deleted, 0);
	CHECK_EQ(head_version(s, "t"), v);
	CHECK_EQ(count_at(s, "t", -1, "id = 31"), 1);
	io.app_version = 2;
	REQUIRE(st_delete(s, "t", "id = 31", &io, &r, &err) == ST_OK);
	CHECK(!r.commit.noop);
	CHECK_EQ(r.rows_deleted, 1);
	CHECK_EQ(count_at(s, "t", -1, NULL), 91);
	io.app_version = 3;
	REQUIRE(st_update(s, "t", "a = -1", "id = 32", &io, &r, &err) == ST_OK);
	CHECK_EQ(r.rows_updated, 1);
	REQUIRE(st_update(s, "t", "a = -2", "id = 32", &io, &r, &err) == ST_OK);
	CHECK(r.commit.noop);
	CHECK_EQ(count_at(s, "t", -1, "id = 32 AND a = -1"), 1);
	verify_clean(s);
	st_store_close(s);
}

static void t_txn_vs_delete_inline(void)
{
	test_defer(hook_reset, NULL);
	txn_vs_delete();
}

static void t_txn_vs_delete_files(void)
{
	test_defer(hook_reset, NULL);
	TEST_SET(store_opts.inline_max, 1);
	txn_vs_delete();
}

static const struct test_case tests[] = {
	{"dv_roundtrip_and_choice", t_dv_roundtrip_and_choice},
	{"dv_smallest_encoding", t_dv_smallest_encoding},
	{"dv_corruption", t_dv_corruption},
	{"dv_union_lower_filter", t_dv_union_lower_filter},
	{"delete_inline", t_delete_inline},
	{"delete_files", t_delete_files},
	{"update_inline", t_update_inline},
	{"update_files", t_update_files},
	{"nulls_schema_inline", t_nulls_schema_inline},
	{"nulls_schema_files", t_nulls_schema_files},
	{"maintenance_inline", t_maintenance_inline},
	{"maintenance_files", t_maintenance_files},
	{"vacuum_links_inline", t_vacuum_links_inline},
	{"vacuum_links_files", t_vacuum_links_files},
	{"random_dml_inline", t_random_dml_inline},
	{"random_dml_files", t_random_dml_files},
	{"conflicts_inline", t_conflicts_inline},
	{"merge_optimize_conflicts", t_merge_optimize_conflicts},
	{"declared_keys", t_declared_keys},
	{"merge_update_set", t_merge_update_set},
	{"conflicts_files", t_conflicts_files},
	{"app_id_race_inline", t_app_id_race_inline},
	{"app_id_race_files", t_app_id_race_files},
	{"txn_vs_delete_inline", t_txn_vs_delete_inline},
	{"txn_vs_delete_files", t_txn_vs_delete_files},
};

TEST_MAIN(tests)
