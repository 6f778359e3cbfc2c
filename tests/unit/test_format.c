/*
 * tests/unit/test_format.c — the building blocks of the segment format:
 * bit packing at every width, CRC32C, UTF-8 validation, the bounded
 * cursor, and chunk encode/decode of every encoding.
 */
#include <math.h>

#include "format/bitpack.h"
#include "format/bytes.h"
#include "format/chunk_int.h"
#include "format/crc32c.h"
#include "tests/test.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void t_bitpack_every_width(void)
{
	static uint64_t in[300], out[320];
	static uint32_t out32[320];
	static uint8_t packed[320 * 8];
	for (unsigned w = 0; w <= 64; w++) {
		for (size_t n = 1; n <= 300; n += 37) {
			uint64_t mask = w == 64 ? ~0ull : (1ull << w) - 1;
			for (size_t i = 0; i < n; i++)
				in[i] = next_rand() & mask;
			memset(packed, 0xAA, sizeof packed);
			bp_pack(in, n, w, packed);
			bp_unpack64(packed, n, w, out);
			int bad = 0;
			for (size_t i = 0; i < n; i++)
				bad += out[i] != in[i];
			CHECK_EQ(bad, 0);
			if (w <= 32) {
				bp_unpack32(packed, n, w, out32);
				for (size_t i = 0; i < n; i++)
					bad += out32[i] != in[i];
				CHECK_EQ(bad, 0);
			}
		}
	}
	CHECK_EQ(bp_width(0), 0);
	CHECK_EQ(bp_width(1), 1);
	CHECK_EQ(bp_width(1023), 10);
	CHECK_EQ(bp_width(~0ull), 64);
	CHECK_EQ(bp_bytes(65, 3), 2 * 3 * 8);
}

static void t_crc32c_known_values(void)
{
	CHECK_EQ(st_crc32c(0, "123456789", 9), 0xE3069283u);
	CHECK_EQ(st_crc32c(0, "", 0), 0);
	/* Incremental equals one-shot, across the 8-byte fast path. */
	uint8_t buf[1000];
	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (uint8_t)(i * 7 + 3);
	uint32_t one = st_crc32c(0, buf, sizeof buf);
	uint32_t inc = st_crc32c(st_crc32c(0, buf, 13), buf + 13, sizeof buf - 13);
	CHECK_EQ(one, inc);
}

static void t_utf8_validation(void)
{
	CHECK(chunk_utf8_is_valid((const uint8_t *)"hello, world", 12));
	CHECK(chunk_utf8_is_valid((const uint8_t *)"gr\xc3\xbc\xc3\x9f", 6));
	CHECK(chunk_utf8_is_valid((const uint8_t *)"\xf0\x9f\x98\x80", 4));
	CHECK(!chunk_utf8_is_valid((const uint8_t *)"\xc0\xaf", 2));         /* overlong */
	CHECK(!chunk_utf8_is_valid((const uint8_t *)"\xed\xa0\x80", 3));     /* surrogate */
	CHECK(!chunk_utf8_is_valid((const uint8_t *)"\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
	CHECK(!chunk_utf8_is_valid((const uint8_t *)"abcdefgh\xe2\x82", 10)); /* cut short */
	CHECK(!chunk_utf8_is_valid((const uint8_t *)"\xff", 1));
}

static void t_cursor_bounds(void)
{
	uint8_t b[5] = {1, 2, 3, 4, 5};
	struct st_cur c;
	st_cur_init(&c, b, sizeof b);
	CHECK_EQ(st_cur_u32(&c), 0x04030201);
	CHECK(!c.bad);
	CHECK_EQ(st_cur_u16(&c), 0); /* only one byte left */
	CHECK(c.bad);
	CHECK_EQ(st_cur_u8(&c), 0); /* stays bad */
	struct st_buf out = {0};
	st_buf_uleb32(&out, 0);
	st_buf_uleb32(&out, 300);
	st_buf_uleb32(&out, UINT32_MAX);
	st_cur_init(&c, out.data, out.len);
	CHECK_EQ(st_cur_uleb32(&c), 0);
	CHECK_EQ(st_cur_uleb32(&c), 300);
	CHECK_EQ(st_cur_uleb32(&c), UINT32_MAX);
	CHECK(!c.bad && st_cur_left(&c) == 0);
	st_buf_free(&out);
	uint8_t overlong[6] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
	st_cur_init(&c, overlong, 6);
	st_cur_uleb32(&c);
	CHECK(c.bad);
}

static struct st_col_stats last_stats; /* stats of the last roundtrip */

/* Encode a column, decode it, compare values and check the stats bound
 * every value. Returns the encoding used. */
static int roundtrip(struct chunk_col *col, int force)
{
	struct chunk_scratch s = {0};
	struct st_buf out = {0};
	struct chunk_out o = {0};
	struct st_col_stats st;
	struct st_err err;
	uint8_t enc = 0xff, val = 0xff;
	REQUIRE(chunk_encode(col, force, &s, &out, &enc, &val, &st) == ST_OK);
	int rc = chunk_decode(col->type, enc, val, col->n, col->null_count, out.data, out.len, &o, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  decode: %s\n", err.msg);
	REQUIRE(rc == ST_OK);
	size_t width = st_type_width(col->type);
	int bad = 0, unbounded = 0;
	for (uint32_t i = 0; i < col->n; i++) {
		bool valid = col->null_count == 0 || ((col->validity[i >> 3] >> (i & 7)) & 1);
		if (valid != st_vec_is_valid(&o.vec, i)) {
			bad++;
			continue;
		}
		if (!valid)
			continue;
		struct st_value v = {.type = col->type};
		if (width) {
			const uint8_t *got = (const uint8_t *)o.vec.data + (size_t)i * width;
			bad += memcmp(got, col->data + (size_t)i * width, width) != 0;
			memcpy(&v.v, got, width);
			if (col->type == ST_TYPE_BOOL)
				v.v.b = *got;
		} else {
			const uint8_t *p;
			uint32_t len;
			st_vec_str(&o.vec, i, &p, &len);
			bad += len != col->offsets[i + 1] - col->offsets[i] ||
			       memcmp(p, col->bytes + col->offsets[i], len) != 0;
			v.v.s.ptr = p;
			v.v.s.len = len;
		}
		if (col->type == ST_TYPE_FLOAT64 && isnan(v.v.f64))
			continue;
		if (st.has_minmax &&
		    (st_value_cmp(&st.min, &v) > 0 || st_value_cmp(&st.max, &v) < 0)) {
			if (!unbounded)
				fprintf(stderr, "  row %u out of bounds (type %d)\n", i, col->type);
			unbounded++;
		}
	}
	CHECK_EQ(bad, 0);
	CHECK_EQ(unbounded, 0);
	CHECK_EQ(st.null_count, col->null_count);
	last_stats = st;
	chunk_out_fini(&o);
	st_buf_free(&out);
	chunk_scratch_fini(&s);
	return enc;
}

static void t_int_encodings(void)
{
	enum { N = 1000 };
	static int64_t v[N];
	static uint8_t validity[N / 8 + 1];
	struct chunk_col col = {.type = ST_TYPE_INT64, .n = N, .data = (uint8_t *)v};
	for (int i = 0; i < N; i++)
		v[i] = 1000000 + i * 3;
	CHECK_EQ(roundtrip(&col, -1), CHUNK_ENC_DELTA);
	for (int i = 0; i < N; i++)
		v[i] = (int64_t)(next_rand() % 1000) - 500;
	CHECK_EQ(roundtrip(&col, -1), CHUNK_ENC_FOR);
	for (int i = 0; i < N; i++)
		v[i] = (int64_t)(next_rand() % 5) * 1000000007LL;
	CHECK_EQ(roundtrip(&col, -1), CHUNK_ENC_DICT);
	/* Extremes: full 64-bit range, deltas that overflow int64. */
	for (int i = 0; i < N; i++)
		v[i] = (i & 1) ? INT64_MAX : INT64_MIN;
	for (int f = -1; f <= CHUNK_ENC_DICT; f++)
		roundtrip(&col, f);
	/* Every forced encoding, with nulls. */
	for (int i = 0; i < N; i++) {
		v[i] = (int64_t)(next_rand() % 100000);
		if (i % 7 == 0)
			validity[i / 8] &= (uint8_t)~(1u << (i % 8));
		else
			validity[i / 8] |= (uint8_t)(1u << (i % 8));
	}
	col.validity = validity;
	col.null_count = (N + 6) / 7;
	for (int f = CHUNK_ENC_PLAIN; f <= CHUNK_ENC_DICT; f++)
		CHECK_EQ(roundtrip(&col, f), f);
	/* int32 and date share the 32-bit paths. */
	static int32_t v32[N];
	struct chunk_col c32 = {.type = ST_TYPE_DATE, .n = N, .data = (uint8_t *)v32};
	for (int i = 0; i < N; i++)
		v32[i] = (i & 3) ? INT32_MAX - i : INT32_MIN + i;
	for (int f = -1; f <= CHUNK_ENC_DICT; f++)
		roundtrip(&c32, f);
	c32.type = ST_TYPE_INT32;
	for (int i = 0; i < N; i++)
		v32[i] = 20000 + i;
	CHECK_EQ(roundtrip(&c32, -1), CHUNK_ENC_DELTA);
	c32.n = 1;
	roundtrip(&c32, CHUNK_ENC_DELTA);
}

static void t_float_encodings(void)
{
	enum { N = 512 };
	static double v[N];
	struct chunk_col col = {.type = ST_TYPE_FLOAT64, .n = N, .data = (uint8_t *)v};
	for (int i = 0; i < N; i++)
		v[i] = (double)(next_rand() % 1000000000) / 1e6;
	CHECK_EQ(roundtrip(&col, -1), CHUNK_ENC_DECIMAL);
	for (int i = 0; i < N; i++)
		v[i] = (double)((int64_t)(next_rand() % 2000) - 1000) / 100.0;
	CHECK_EQ(roundtrip(&col, -1), CHUNK_ENC_DECIMAL);
	CHECK(last_stats.has_minmax);
	/* Values that are not short decimals stay PLAIN, bit for bit. */
	static const double odd[] = {0.1 + 0.2, -0.0, 1e300, 5e-324, M_PI, -1e-18, 123456789.123};
	for (int i = 0; i < N; i++)
		v[i] = odd[i % 7];
	CHECK_EQ(roundtrip(&col, -1), CHUNK_ENC_PLAIN);
	/* NaN and infinities: PLAIN, and NaN removes the min/max bounds. */
	for (int i = 0; i < N; i++)
		v[i] = i == 5 ? NAN : i == 6 ? INFINITY : i;
	CHECK_EQ(roundtrip(&col, CHUNK_ENC_DECIMAL), CHUNK_ENC_PLAIN);
	CHECK(!last_stats.has_minmax);
}

static void t_bool_and_string_encodings(void)
{
	enum { N = 700 };
	static uint8_t b[N];
	struct chunk_col col = {.type = ST_TYPE_BOOL, .n = N, .data = b};
	for (int i = 0; i < N; i++)
		b[i] = i < 400;
	CHECK_EQ(roundtrip(&col, -1), CHUNK_ENC_RLE);
	for (int i = 0; i < N; i++)
		b[i] = next_rand() & 1;
	CHECK_EQ(roundtrip(&col, -1), CHUNK_ENC_PLAIN);
	CHECK_EQ(roundtrip(&col, CHUNK_ENC_RLE), CHUNK_ENC_RLE);

	static uint32_t offs[N + 1];
	static uint8_t bytes[N * 40];
	struct chunk_col s = {.type = ST_TYPE_STRING, .n = N, .offsets = offs, .bytes = bytes};
	offs[0] = 0;
	for (int i = 0; i < N; i++) {
		int len = snprintf((char *)bytes + offs[i], 40, "city-%u", (unsigned)(next_rand() % 20));
		offs[i + 1] = offs[i] + (uint32_t)len;
	}
	CHECK_EQ(roundtrip(&s, -1), CHUNK_ENC_DICT);
	CHECK_EQ(roundtrip(&s, CHUNK_ENC_PLAIN), CHUNK_ENC_PLAIN);
	/* Long strings with 0xFF bytes: binary, truncated bounds must still bound. */
	s.type = ST_TYPE_BINARY;
	for (int i = 0; i < N; i++) {
		uint32_t len = 33 + (uint32_t)(next_rand() % 6);
		for (uint32_t k = 0; k < len; k++)
			bytes[offs[i] + k] = (next_rand() & 3) ? 0xff : (uint8_t)next_rand();
		offs[i + 1] = offs[i] + len;
	}
	CHECK_EQ(roundtrip(&s, -1), CHUNK_ENC_PLAIN);
	CHECK_EQ(roundtrip(&s, CHUNK_ENC_DICT), CHUNK_ENC_DICT);
}

static void t_decode_rejects_bad_sections(void)
{
	struct chunk_out o = {0};
	struct st_err err;
	uint8_t body[64] = {0};
	/* DICT code past the dictionary: one entry, width 1, code 1. */
	struct st_buf b = {0};
	st_buf_u32(&b, 1);
	st_buf_u32(&b, 1);
	st_buf_u8(&b, 'a');
	st_buf_u8(&b, 1);
	uint64_t codes = 2; /* row 1 has code 1 */
	uint8_t *p = st_buf_reserve(&b, 8);
	st_put_le64(p, codes);
	b.len += 8;
	CHECK_EQ(chunk_decode(ST_TYPE_STRING, CHUNK_ENC_DICT, 0, 2, 0, b.data, b.len, &o, &err),
		 ST_ECORRUPT);
	CHECK_CONTAINS(err.msg, "dictionary code 1");
	st_buf_free(&b);
	/* Unknown encoding id: a version error, not corruption. */
	CHECK_EQ(chunk_decode(ST_TYPE_INT64, 9, 0, 1, 0, body, 8, &o, &err), ST_EVERSION);
	/* FOR width above 64. */
	body[8] = 65;
	CHECK_EQ(chunk_decode(ST_TYPE_INT64, CHUNK_ENC_FOR, 0, 1, 0, body, 9, &o, &err), ST_ECORRUPT);
	/* Trailing bytes after PLAIN values. */
	CHECK_EQ(chunk_decode(ST_TYPE_INT64, CHUNK_ENC_PLAIN, 0, 1, 0, body, 9, &o, &err), ST_ECORRUPT);
	CHECK_CONTAINS(err.msg, "unexpected bytes");
	/* Validity that marks a different null count. */
	uint8_t v[5] = {1, 0, 0, 0, 0x03};
	uint8_t full[5 + 16];
	memcpy(full, v, 5);
	memset(full + 5, 0, 16);
	CHECK_EQ(chunk_decode(ST_TYPE_INT64, CHUNK_ENC_PLAIN, CHUNK_VAL_BITMAP, 2, 1, full, 21, &o, &err),
		 ST_ECORRUPT);
	chunk_out_fini(&o);
}

/* A string column of values "v<k>" for k in ks (n rows); bytes/offsets
 * point into the given buffers. */
static void str_col(struct chunk_col *c, const uint32_t *ks, uint32_t n, uint8_t *bytes,
		    uint32_t *offs)
{
	offs[0] = 0;
	for (uint32_t i = 0; i < n; i++) {
		int len = sprintf((char *)bytes + offs[i], "v%u", ks[i]);
		offs[i + 1] = offs[i] + (uint32_t)len;
	}
	*c = (struct chunk_col){.type = ST_TYPE_STRING, .n = n, .offsets = offs, .bytes = bytes};
}

/* Dictionary order taken from the previous chunk's dictionary (a subset,
 * the same set, then a new value) gives exactly the bytes of a sort. */
static void t_dict_memo_same_bytes(void)
{
	static uint32_t ks[3][400];
	static uint8_t bytes[400 * 8];
	static uint32_t offs[401];
	for (uint32_t i = 0; i < 400; i++) {
		ks[0][i] = (i * 7919u) % 50;       /* 50 values */
		ks[1][i] = (i * 104729u) % 30;     /* a subset, another order */
		ks[2][i] = i == 17 ? 77 : (i * 31u) % 50; /* one value never seen */
	}
	struct dict_memo memo = {0};
	struct chunk_scratch s1 = {0}, s2 = {0};
	int diff = 0;
	for (int round = 0; round < 2; round++)
		for (int k = 0; k < 3; k++) {
			struct chunk_col a, b;
			str_col(&a, ks[k], 400, bytes, offs);
			b = a;
			a.memo = &memo;
			struct st_buf oa = {0}, ob = {0};
			struct st_col_stats sa, sb;
			uint8_t ea, eb, va, vb;
			REQUIRE(chunk_encode(&a, -1, &s1, &oa, &ea, &va, &sa) == ST_OK);
			REQUIRE(chunk_encode(&b, -1, &s2, &ob, &eb, &vb, &sb) == ST_OK);
			diff += ea != CHUNK_ENC_DICT || ea != eb || oa.len != ob.len ||
				memcmp(oa.data, ob.data, oa.len);
			st_buf_free(&oa);
			st_buf_free(&ob);
		}
	CHECK_EQ(diff, 0);
	CHECK(memo.d > 0);
	dict_memo_fini(&memo);
	chunk_scratch_fini(&s1);
	chunk_scratch_fini(&s2);
}

static const struct test_case tests[] = {
	{"bitpack_every_width", t_bitpack_every_width},
	{"dict_memo_same_bytes", t_dict_memo_same_bytes},
	{"crc32c_known_values", t_crc32c_known_values},
	{"utf8_validation", t_utf8_validation},
	{"cursor_bounds", t_cursor_bounds},
	{"int_encodings", t_int_encodings},
	{"float_encodings", t_float_encodings},
	{"bool_and_string_encodings", t_bool_and_string_encodings},
	{"decode_rejects_bad_sections", t_decode_rejects_bad_sections},
};
TEST_MAIN(tests)
