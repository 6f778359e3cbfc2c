/*
 * tests/unit/test_segment.c — segments end to end: every type through the
 * writer and reader, statistics, projections, schema errors, damaged files
 * (every byte flipped, every truncation), a newer version, and I/O errors
 * injected through the st_io seam.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/bytes.h"
#include "format/crc32c.h"
#include "format/inspect.h"
#include "format/segment.h"
#include "tests/bench/table.h"
#include "tests/test.h"

static char dir[64]; /* the current test's temp directory, "" before its first file */

static void forget_dir(void *arg)
{
	(void)arg;
	dir[0] = '\0';
}

/* A path in the current test's temp directory (removed after the test,
 * unless it failed). */
static const char *tpath(const char *name)
{
	static char p[4][128];
	static int k;
	if (!dir[0]) {
		strcpy(dir, "/tmp/strata-test-XXXXXX");
		if (!mkdtemp(dir))
			abort();
		test_defer_rmtree(dir);
		test_defer(forget_dir, NULL); /* runs first: the next test makes its own */
	}
	k = (k + 1) % 4;
	snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
	return p[k];
}

static bool exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* A table with one column of every type, all nullable but id. */
enum { NCOL = 8 };
static struct st_field all_fields[NCOL] = {
	{1, ST_TYPE_INT64, false, "id"},     {2, ST_TYPE_BOOL, true, "flag"},
	{3, ST_TYPE_INT32, true, "qty"},     {4, ST_TYPE_FLOAT64, true, "price"},
	{5, ST_TYPE_STRING, true, "name"},   {6, ST_TYPE_BINARY, true, "blob"},
	{7, ST_TYPE_DATE, true, "day"},      {8, ST_TYPE_TIMESTAMP, true, "at"},
};
static const struct st_schema all_schema = {NCOL, all_fields};

struct rows {
	uint32_t n;
	int64_t *id, *at;
	uint8_t *flag, *valid[NCOL];
	int32_t *qty, *day;
	double *price;
	uint32_t *offs;
	uint8_t *bytes;
	struct st_vec cols[NCOL];
};

static void rows_make(struct rows *r, uint32_t n)
{
	memset(r, 0, sizeof *r);
	r->n = n;
	r->id = calloc(n, 8);
	r->at = calloc(n, 8);
	r->flag = calloc(n, 1);
	r->qty = calloc(n, 4);
	r->day = calloc(n, 4);
	r->price = calloc(n, 8);
	r->offs = calloc(n + 1, 4);
	r->bytes = calloc(n, 48);
	for (int c = 0; c < NCOL; c++)
		r->valid[c] = calloc(n / 8 + 1, 1);
	for (uint32_t i = 0; i < n; i++) {
		r->id[i] = i;
		r->flag[i] = (rnd() % 3) == 0;
		r->qty[i] = (int32_t)(rnd() % 200) - 100;
		r->price[i] = (double)(rnd() % 100000) / 100.0;
		r->day[i] = 19000 + (int32_t)(i / 100);
		r->at[i] = 1700000000000000LL + (int64_t)i * 1000 + (int64_t)(rnd() % 500);
		int len = snprintf((char *)r->bytes + r->offs[i], 48, "name-%03u-\xc3\xa9", (unsigned)(rnd() % 50));
		r->offs[i + 1] = r->offs[i] + (uint32_t)len;
		for (int c = 0; c < NCOL; c++)
			if (c == 0 || rnd() % 10)
				r->valid[c][i / 8] |= (uint8_t)(1u << (i % 8));
	}
	void *data[NCOL] = {r->id, r->flag, r->qty, r->price, NULL, NULL, r->day, r->at};
	for (int c = 0; c < NCOL; c++) {
		r->cols[c] = (struct st_vec){.type = all_fields[c].type, .n = n, .data = data[c],
					     .validity = c ? r->valid[c] : NULL};
		if (!data[c]) {
			r->cols[c].offsets = r->offs;
			r->cols[c].bytes = r->bytes;
		}
	}
}

static void rows_free(struct rows *r)
{
	free(r->id); free(r->at); free(r->flag); free(r->qty); free(r->day);
	free(r->price); free(r->offs); free(r->bytes);
	for (int c = 0; c < NCOL; c++)
		free(r->valid[c]);
}

static int write_rows(const char *path, const struct rows *r, const struct seg_writer_opts *o,
		      struct seg_file_info *info, struct st_err *err)
{
	struct seg_writer *w;
	int rc = seg_writer_open(path, &all_schema, o, &w, err);
	if (rc != ST_OK)
		return rc;
	/* Two appends of uneven sizes, to cross row-group boundaries mid-batch. */
	uint32_t first = r->n / 3;
	struct st_vec part[NCOL];
	for (int c = 0; c < NCOL; c++) {
		part[c] = r->cols[c];
		part[c].n = first;
	}
	if ((rc = seg_writer_append(w, part, first, err)) != ST_OK) {
		seg_writer_abort(w);
		return rc;
	}
	/* The rest: shift every vector by `first` rows (validity bit-aligned copies). */
	struct rows rest;
	memset(&rest, 0, sizeof rest);
	uint32_t m = r->n - first;
	uint8_t *vb[NCOL];
	for (int c = 0; c < NCOL; c++) {
		vb[c] = calloc(m / 8 + 1, 1);
		for (uint32_t i = 0; i < m; i++)
			if (st_vec_is_valid(&r->cols[c], first + i))
				vb[c][i / 8] |= (uint8_t)(1u << (i % 8));
		part[c] = r->cols[c];
		part[c].n = m;
		part[c].validity = r->cols[c].validity ? vb[c] : NULL;
		size_t width = st_type_width(part[c].type);
		if (width)
			part[c].data = (const uint8_t *)r->cols[c].data + (size_t)first * width;
		else
			part[c].offsets = r->offs + first;
	}
	rc = seg_writer_append(w, part, m, err);
	for (int c = 0; c < NCOL; c++)
		free(vb[c]);
	if (rc == ST_OK)
		rc = seg_writer_add_kv(w, "writer", "test", 4, err);
	if (rc != ST_OK) {
		seg_writer_abort(w);
		return rc;
	}
	return seg_writer_close(w, info, err);
}

/* Compare every value of the file with r. Returns mismatches. */
static int compare_file(const char *path, const struct rows *r)
{
	struct seg_reader *rd;
	struct st_err err;
	int bad = 0;
	REQUIRE(seg_reader_open(path, NULL, &rd, &err) == ST_OK);
	CHECK_EQ(seg_reader_rows(rd), r->n);
	for (uint32_t g = 0; g < seg_reader_row_groups(rd); g++) {
		struct seg_batch *b;
		REQUIRE(seg_reader_read(rd, g, NULL, &b, &err) == ST_OK);
		const struct seg_rg_meta *m = seg_reader_row_group(rd, g);
		for (int c = 0; c < NCOL; c++) {
			const struct st_vec *got = &b->cols[c], *want = &r->cols[c];
			const struct st_col_stats *st = &m->chunks[c].stats;
			for (uint32_t i = 0; i < b->rows; i++) {
				uint32_t row = (uint32_t)m->first_row + i;
				bool v = st_vec_is_valid(want, row);
				if (v != st_vec_is_valid(got, i)) {
					bad++;
					continue;
				}
				if (!v)
					continue;
				struct st_value val = {.type = got->type};
				size_t width = st_type_width(got->type);
				if (width) {
					const uint8_t *a = (const uint8_t *)got->data + (size_t)i * width;
					bad += memcmp(a, (const uint8_t *)want->data + (size_t)row * width, width) != 0;
					memcpy(&val.v, a, width);
				} else {
					const uint8_t *p, *q;
					uint32_t lp, lq;
					st_vec_str(got, i, &p, &lp);
					st_vec_str(want, row, &q, &lq);
					bad += lp != lq || memcmp(p, q, lp) != 0;
					val.v.s.ptr = p;
					val.v.s.len = lp;
				}
				/* Statistics must bound every value. */
				if (!st->has_minmax || st_value_cmp(&st->min, &val) > 0 ||
				    st_value_cmp(&st->max, &val) < 0)
					bad++;
			}
		}
	}
	seg_reader_close(rd);
	return bad;
}

static void t_roundtrip_every_type(void)
{
	struct rows r;
	struct st_err err;
	struct seg_file_info info;
	rows_make(&r, 5000);
	struct seg_writer_opts o = {.row_group_rows = 1024};
	REQUIRE(write_rows(tpath("all.seg"), &r, &o, &info, &err) == ST_OK);
	CHECK_EQ(info.rows, 5000);
	CHECK_EQ(info.row_groups, 5);
	CHECK(!exists(tpath("all.seg.tmp")));
	CHECK_EQ(compare_file(tpath("all.seg"), &r), 0);
	/* File statistics and the whole-file CRC. */
	CHECK_EQ(info.stats[0].min.v.i64, 0);
	CHECK_EQ(info.stats[0].max.v.i64, 4999);
	CHECK_EQ(info.stats[0].null_count, 0);
	uint64_t nulls = 0;
	for (uint32_t i = 0; i < r.n; i++)
		nulls += !st_vec_is_valid(&r.cols[2], i);
	CHECK_EQ(info.stats[2].null_count, nulls);
	int fd = open(tpath("all.seg"), O_RDONLY);
	uint8_t *buf = malloc(info.size);
	CHECK_EQ(pread(fd, buf, info.size, 0), (ssize_t)info.size);
	CHECK_EQ(st_crc32c(0, buf, info.size), info.crc);
	close(fd);
	free(buf);
	/* Key-value metadata and the reader's file statistics. */
	struct seg_reader *rd;
	REQUIRE(seg_reader_open(tpath("all.seg"), NULL, &rd, &err) == ST_OK);
	CHECK_EQ(seg_reader_kv_count(rd), 1);
	const uint8_t *k, *v;
	uint32_t kl, vl;
	seg_reader_kv(rd, 0, &k, &kl, &v, &vl);
	CHECK(kl == 6 && !memcmp(k, "writer", 6) && vl == 4 && !memcmp(v, "test", 4));
	CHECK_EQ(seg_reader_file_stats(rd)[6].min.v.i32, 19000);
	CHECK_EQ(seg_reader_file_stats(rd)[6].max.v.i32, 19049);
	seg_reader_close(rd);
	seg_file_info_fini(&info);
	rows_free(&r);
}

static void t_forced_encodings_and_hc(void)
{
	struct rows r;
	struct st_err err;
	rows_make(&r, 3000);
	for (int f = 1; f <= 6; f++) {
		struct seg_writer_opts o = {.row_group_rows = 1000, .force_encoding = f,
					    .lz4_level = f == 3 ? 9 : f == 4 ? -1 : 0};
		REQUIRE(write_rows(tpath("forced.seg"), &r, &o, NULL, &err) == ST_OK);
		CHECK_EQ(compare_file(tpath("forced.seg"), &r), 0);
		struct seg_reader *rd;
		REQUIRE(seg_reader_open(tpath("forced.seg"), NULL, &rd, &err) == ST_OK);
		if (f == 2) /* FOR forced: every integer column uses it */
			CHECK_EQ(seg_reader_row_group(rd, 0)->chunks[0].encoding, 1);
		if (f == 4) /* DICT forced, no compression */
			CHECK_EQ(seg_reader_row_group(rd, 0)->chunks[4].compression, 0);
		seg_reader_close(rd);
	}
	rows_free(&r);
}

static void t_projection_reads_only_requested(void)
{
	struct rows r;
	struct st_err err;
	rows_make(&r, 2000);
	REQUIRE(write_rows(tpath("proj.seg"), &r, NULL, NULL, &err) == ST_OK);
	struct seg_reader *rd;
	REQUIRE(seg_reader_open(tpath("proj.seg"), NULL, &rd, &err) == ST_OK);
	bool want[NCOL] = {false, false, false, false, true, false, false, false};
	struct seg_batch *b;
	REQUIRE(seg_reader_read(rd, 0, want, &b, &err) == ST_OK);
	CHECK_EQ(b->cols[0].type, 0);
	CHECK_EQ(b->cols[4].type, ST_TYPE_STRING);
	CHECK(b->cols[4].dict != NULL); /* 50 distinct names: dictionary form */
	CHECK_EQ(seg_reader_read(rd, 7, NULL, &b, &err), ST_EINVAL);
	seg_reader_close(rd);
	rows_free(&r);
}

static void t_bench_table_encodings(void)
{
	struct bench_table t;
	struct st_err err;
	struct seg_file_info info;
	REQUIRE(bench_table_init(&t, 200000) == 0);
	struct seg_writer *w;
	REQUIRE(seg_writer_open(tpath("bench.seg"), &t.schema, NULL, &w, &err) == ST_OK);
	struct st_vec cols[4];
	bench_table_vecs(&t, 0, 200000, cols);
	REQUIRE(seg_writer_append(w, cols, 200000, &err) == ST_OK);
	REQUIRE(seg_writer_close(w, &info, &err) == ST_OK);
	CHECK((double)info.size / 200000 < 8.0);
	struct seg_reader *rd;
	REQUIRE(seg_reader_open(tpath("bench.seg"), NULL, &rd, &err) == ST_OK);
	const struct seg_rg_meta *m = seg_reader_row_group(rd, 1);
	CHECK_EQ(m->chunks[0].encoding, 2); /* id: DELTA */
	CHECK_EQ(m->chunks[1].encoding, 2); /* ts: DELTA */
	CHECK_EQ(m->chunks[2].encoding, 3); /* sensor: DICT */
	CHECK_EQ(m->chunks[3].encoding, 4); /* value: DECIMAL */
	CHECK_EQ(m->chunks[2].stats.dict_size, 1000);
	struct seg_batch *b;
	REQUIRE(seg_reader_read(rd, 1, NULL, &b, &err) == ST_OK);
	int bad = 0;
	for (uint32_t i = 0; i < b->rows; i++) {
		uint64_t row = m->first_row + i;
		bad += ((const double *)b->cols[3].data)[i] != t.value[row];
		bad += ((const int64_t *)b->cols[1].data)[i] != t.ts[row];
	}
	CHECK_EQ(bad, 0);
	seg_reader_close(rd);
	seg_file_info_fini(&info);
	bench_table_fini(&t);
}

static int file_bytes(const char *path, uint8_t **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	fseek(f, 0, SEEK_END);
	*len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	*out = malloc(*len + 1);
	size_t got = fread(*out, 1, *len, f);
	fclose(f);
	return got == *len ? 0 : -1;
}

/* A helper thread encoding every other column writes the very same bytes
 * (8 columns; 3, an odd count; with LZ4 HC too), and reads back. */
static void t_helper_thread_same_bytes(void)
{
	struct rows r;
	struct st_err err;
	struct seg_file_info info;
	rows_make(&r, 5000);
	int diff = 0;
	for (int hc = 0; hc < 2; hc++) {
		struct seg_writer_opts one = {.row_group_rows = 1024, .lz4_level = hc ? 3 : 0},
				       two = one;
		two.threads = 2;
		REQUIRE(write_rows(tpath("t1.seg"), &r, &one, &info, &err) == ST_OK);
		seg_file_info_fini(&info);
		REQUIRE(write_rows(tpath("t2.seg"), &r, &two, &info, &err) == ST_OK);
		seg_file_info_fini(&info);
		CHECK_EQ(compare_file(tpath("t2.seg"), &r), 0);
		uint8_t *a, *b;
		size_t na, nb;
		REQUIRE(file_bytes(tpath("t1.seg"), &a, &na) == 0);
		REQUIRE(file_bytes(tpath("t2.seg"), &b, &nb) == 0);
		diff += na != nb || memcmp(a, b, na);
		free(a);
		free(b);
	}
	const struct st_schema three = {3, all_fields};
	for (int th = 1; th <= 2; th++) {
		struct seg_writer *w;
		struct seg_writer_opts o = {.row_group_rows = 700, .threads = th};
		REQUIRE(seg_writer_open(tpath(th == 1 ? "o1.seg" : "o2.seg"), &three, &o, &w, &err) == ST_OK);
		REQUIRE(seg_writer_append(w, r.cols, r.n, &err) == ST_OK);
		REQUIRE(seg_writer_close(w, &info, &err) == ST_OK);
		seg_file_info_fini(&info);
	}
	uint8_t *a, *b;
	size_t na, nb;
	REQUIRE(file_bytes(tpath("o1.seg"), &a, &na) == 0);
	REQUIRE(file_bytes(tpath("o2.seg"), &b, &nb) == 0);
	diff += na != nb || memcmp(a, b, na);
	free(a);
	free(b);
	CHECK_EQ(diff, 0);
	rows_free(&r);
}

static void t_empty_segment(void)
{
	struct seg_writer *w;
	struct st_err err;
	struct seg_file_info info;
	REQUIRE(seg_writer_open(tpath("empty.seg"), &all_schema, NULL, &w, &err) == ST_OK);
	REQUIRE(seg_writer_close(w, &info, &err) == ST_OK);
	CHECK_EQ(info.rows, 0);
	struct seg_reader *rd;
	REQUIRE(seg_reader_open(tpath("empty.seg"), NULL, &rd, &err) == ST_OK);
	CHECK_EQ(seg_reader_row_groups(rd), 0);
	CHECK(!seg_reader_file_stats(rd)[0].has_minmax);
	CHECK_EQ(seg_reader_verify(rd, &err), ST_OK);
	seg_reader_close(rd);
	seg_file_info_fini(&info);
}

static void t_schema_errors_change_nothing(void)
{
	struct st_err err;
	struct seg_writer *w;
	struct st_field dup[2] = {{1, ST_TYPE_INT64, false, "a"}, {2, ST_TYPE_INT64, true, "A"}};
	struct st_schema s = {2, dup};
	CHECK_EQ(seg_writer_open(tpath("bad.seg"), &s, NULL, &w, &err), ST_EINVAL);
	CHECK_CONTAINS(err.msg, "appears twice");
	CHECK(!exists(tpath("bad.seg.tmp")));
	struct st_schema none = {0, NULL};
	CHECK_EQ(seg_writer_open(tpath("bad.seg"), &none, NULL, &w, &err), ST_EINVAL);
	struct seg_writer_opts big = {.row_group_rows = SEG_MAX_ROW_GROUP_ROWS + 1};
	CHECK_EQ(seg_writer_open(tpath("bad.seg"), &all_schema, &big, &w, &err), ST_EINVAL);

	struct rows r;
	rows_make(&r, 100);
	REQUIRE(seg_writer_open(tpath("bad.seg"), &all_schema, NULL, &w, &err) == ST_OK);
	/* NULL in the NOT NULL column id, at row 42. */
	uint8_t v[13];
	memset(v, 0xff, sizeof v);
	v[42 / 8] &= (uint8_t)~(1u << (42 % 8));
	r.cols[0].validity = v;
	CHECK_EQ(seg_writer_append(w, r.cols, 100, &err), ST_ESCHEMA);
	CHECK_CONTAINS(err.msg, "column 'id' is NOT NULL (type int64) but row 42 is null");
	r.cols[0].validity = NULL;
	/* Wrong type. */
	r.cols[2].type = ST_TYPE_INT64;
	CHECK_EQ(seg_writer_append(w, r.cols, 100, &err), ST_ESCHEMA);
	CHECK_CONTAINS(err.msg, "column 'qty': expected type int32, found int64");
	r.cols[2].type = ST_TYPE_INT32;
	/* Invalid UTF-8 in a string column at row 7. */
	memcpy(r.bytes + r.offs[7], "\xff", 1);
	r.valid[4][0] |= 1u << 7;
	CHECK_EQ(seg_writer_append(w, r.cols, 100, &err), ST_ESCHEMA);
	CHECK_CONTAINS(err.msg, "column 'name' (string): row 7 is not valid UTF-8");
	memcpy(r.bytes + r.offs[7], "n", 1);
	/* The writer is still usable after refused batches, and they left no rows. */
	REQUIRE(seg_writer_append(w, r.cols, 100, &err) == ST_OK);
	struct seg_file_info info;
	REQUIRE(seg_writer_close(w, &info, &err) == ST_OK);
	CHECK_EQ(info.rows, 100);
	seg_file_info_fini(&info);
	/* Abort leaves nothing behind. */
	REQUIRE(seg_writer_open(tpath("aborted.seg"), &all_schema, NULL, &w, &err) == ST_OK);
	CHECK(exists(tpath("aborted.seg.tmp")));
	seg_writer_abort(w);
	CHECK(!exists(tpath("aborted.seg.tmp")) && !exists(tpath("aborted.seg")));
	rows_free(&r);
}

/* Write a small segment with every structure: 2 row groups, nulls, RLE,
 * DICT, LZ4-compressed chunks. Returns its bytes. */
static uint8_t *small_segment(size_t *size)
{
	struct rows r;
	struct st_err err;
	struct seg_file_info info;
	rows_make(&r, 300);
	struct seg_writer_opts o = {.row_group_rows = 200};
	if (write_rows(tpath("small.seg"), &r, &o, &info, &err) != ST_OK)
		abort();
	rows_free(&r);
	*size = info.size;
	seg_file_info_fini(&info);
	uint8_t *b = malloc(*size);
	int fd = open(tpath("small.seg"), O_RDONLY);
	if (pread(fd, b, *size, 0) != (ssize_t)*size)
		abort();
	close(fd);
	return b;
}

static void put_file(const char *path, const uint8_t *b, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, b, n) != (ssize_t)n)
		abort();
	close(fd);
}

/* Open and verify; returns the error code (ST_OK if the file passed). */
static int open_verify(const char *path, struct st_err *err)
{
	struct seg_reader *rd;
	int rc = seg_reader_open(path, NULL, &rd, err);
	if (rc == ST_OK) {
		rc = seg_reader_verify(rd, err);
		seg_reader_close(rd);
	}
	return rc;
}

static void t_every_byte_flip_is_detected(void)
{
	size_t n;
	uint8_t *b = small_segment(&n);
	struct st_err err;
	int missed = 0, wrong_code = 0;
	const char *p = tpath("flip.seg");
	for (size_t i = 0; i < n; i++) {
		for (int k = 0; k < 2; k++) {
			uint8_t mask = k ? 0xff : 0x01;
			b[i] ^= mask;
			put_file(p, b, n);
			int rc = open_verify(p, &err);
			b[i] ^= mask;
			if (rc == ST_OK) {
				fprintf(stderr, "  flip of byte %zu (mask %02x) not detected\n", i, mask);
				missed++;
			} else if (rc != ST_ECORRUPT && rc != ST_EVERSION) {
				wrong_code++;
			} else if (!strstr(err.msg, "flip.seg")) {
				wrong_code++; /* every message names the file */
			}
		}
	}
	CHECK_EQ(missed, 0);
	CHECK_EQ(wrong_code, 0);
	put_file(p, b, n);
	CHECK_EQ(open_verify(p, &err), ST_OK);
	free(b);
}

static void t_every_truncation_is_detected(void)
{
	size_t n;
	uint8_t *b = small_segment(&n);
	struct st_err err;
	int missed = 0;
	const char *p = tpath("trunc.seg");
	for (size_t len = 0; len < n; len++) {
		put_file(p, b, len);
		if (open_verify(p, &err) != ST_ECORRUPT)
			missed++;
	}
	CHECK_EQ(missed, 0);
	put_file(p, b, 10);
	CHECK_EQ(open_verify(p, &err), ST_ECORRUPT);
	CHECK_CONTAINS(err.msg, "shorter than a header and a tail");
	/* Appended garbage moves the tail: also detected. */
	uint8_t *longer = malloc(n + 3);
	memcpy(longer, b, n);
	memcpy(longer + n, "xyz", 3);
	put_file(p, longer, n + 3);
	CHECK_EQ(open_verify(p, &err), ST_ECORRUPT);
	free(longer);
	free(b);
}

static void t_newer_major_version_refused(void)
{
	size_t n;
	uint8_t *b = small_segment(&n);
	struct st_err err;
	st_put_le16(b + 12, 2);
	st_put_le32(b + 16, st_crc32c(0, b, 16));
	put_file(tpath("v2.seg"), b, n);
	CHECK_EQ(open_verify(tpath("v2.seg"), &err), ST_EVERSION);
	CHECK_CONTAINS(err.msg, "format 2.0; this reader reads 1.x");
	/* A not-a-segment file says so. */
	put_file(tpath("text.seg"), (const uint8_t *)"hello, this is a text file, not a segment\n", 42);
	CHECK_EQ(open_verify(tpath("text.seg"), &err), ST_ECORRUPT);
	CHECK_CONTAINS(err.msg, "bad magic");
	CHECK_EQ(open_verify(tpath("missing.seg"), &err), ENOENT);
	free(b);
}

/* ---- I/O failure injection ---- */

static int fail_at;   /* fail the fail_at-th call of the chosen op (1-based) */
static int calls;
static int which;     /* 0 pwrite, 1 fsync, 2 rename fail; 3 short writes */

static ssize_t inj_pwrite(int fd, const void *b, size_t n, off_t off)
{
	if (which == 0 && ++calls == fail_at) {
		errno = EIO;
		return -1;
	}
	if (which == 3 && n > 1)
		n /= 2; /* short writes: must be retried, not lost */
	return pwrite(fd, b, n, off);
}

static int inj_fsync(int fd)
{
	if (which == 1 && ++calls == fail_at) {
		errno = EIO;
		return -1;
	}
	return fsync(fd);
}

static int inj_rename(const char *a, const char *b)
{
	if (which == 2) {
		errno = ENOSPC;
		return -1;
	}
	return rename(a, b);
}

static void t_io_errors_leave_no_file(void)
{
	struct st_io io = st_io_posix;
	io.pwrite = inj_pwrite;
	io.fsync = inj_fsync;
	io.rename = inj_rename;
	struct rows r;
	struct st_err err;
	/* No injection after this test, however it ends. */
	TEST_SAVE(which);
	TEST_SAVE(fail_at);
	TEST_SAVE(calls);
	rows_make(&r, 3000);
	const char *p = tpath("eio.seg");
	for (which = 0; which <= 3; which++) {
		for (fail_at = 1; fail_at <= (which == 0 ? 8 : 1); fail_at++) {
			calls = 0;
			struct seg_writer_opts o = {.row_group_rows = 1000, .io = &io};
			int rc = write_rows(p, &r, &o, NULL, &err);
			if (which == 3) {
				CHECK_EQ(rc, ST_OK);
				CHECK_EQ(compare_file(p, &r), 0);
				unlink(p);
				continue;
			}
			CHECK(rc == EIO || rc == ENOSPC);
			CHECK(!exists(p));
			CHECK(!exists(tpath("eio.seg.tmp")));
		}
	}
	CHECK_CONTAINS(err.msg, "eio.seg");
	rows_free(&r);
}

static void t_string_bounds_are_correct_bounds(void)
{
	/* Values longer than the 32-byte prefix, and a max that is all 0xFF. */
	struct st_field f[1] = {{1, ST_TYPE_BINARY, true, "b"}};
	struct st_schema s = {1, f};
	uint8_t bytes[200];
	uint32_t offs[4] = {0, 40, 80, 120};
	memset(bytes, 'a', 40);
	memset(bytes + 40, 'b', 40);
	memset(bytes + 80, 0xff, 40);
	bytes[80 + 35] = 0x00;
	struct st_vec v = {.type = ST_TYPE_BINARY, .n = 2, .offsets = offs, .bytes = bytes};
	struct seg_writer *w;
	struct st_err err;
	struct seg_file_info info;
	REQUIRE(seg_writer_open(tpath("str.seg"), &s, NULL, &w, &err) == ST_OK);
	REQUIRE(seg_writer_append(w, &v, 2, &err) == ST_OK);
	REQUIRE(seg_writer_close(w, &info, &err) == ST_OK);
	CHECK(info.stats[0].has_minmax);
	CHECK(!info.stats[0].min_exact && !info.stats[0].max_exact);
	CHECK_EQ(info.stats[0].min.v.s.len, 32);
	CHECK_EQ(info.stats[0].max.v.s.len, 32);
	CHECK_EQ(info.stats[0].max.v.s.ptr[31], 'c'); /* "bbb…b" prefix, last byte + 1 */
	seg_file_info_fini(&info);
	v.offsets = offs + 1; /* 'b'×40 and the 0xFF value */
	REQUIRE(seg_writer_open(tpath("str.seg"), &s, NULL, &w, &err) == ST_OK);
	REQUIRE(seg_writer_append(w, &v, 2, &err) == ST_OK);
	REQUIRE(seg_writer_close(w, &info, &err) == ST_OK);
	CHECK(!info.stats[0].has_minmax); /* no finite 32-byte bound above 0xFF×35 */
	seg_file_info_fini(&info);
	CHECK_EQ(open_verify(tpath("str.seg"), &err), ST_OK);
}

static void t_inspect_reports_and_verifies(void)
{
	size_t n;
	uint8_t *b = small_segment(&n);
	struct st_err err;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	CHECK_EQ(seg_inspect(tpath("small.seg"), f, true, &err), ST_OK);
	fclose(f);
	CHECK_CONTAINS(text, "300 rows, 2 row groups");
	CHECK_CONTAINS(text, "name                     string     NULL");
	CHECK_CONTAINS(text, "verify: ok");
	free(text);
	b[n / 2] ^= 0x10;
	put_file(tpath("bad-inspect.seg"), b, n);
	f = open_memstream(&text, &len);
	CHECK(seg_inspect(tpath("bad-inspect.seg"), f, false, &err) == ST_ECORRUPT);
	fclose(f);
	CHECK_CONTAINS(err.msg, "bad-inspect.seg");
	CHECK_CONTAINS(text, "verify: FAILED"); /* a chunk byte: the footer still reads */
	free(text);
	free(b);
}

/* Bytes of an in-memory segment of the first n rows of r's columns idx. */
static int mem_segment(const struct rows *r, const int *idx, uint32_t ncols, uint32_t n,
		       uint32_t rg_rows, bool kv, bool abort_instead, uint8_t **out, size_t *len)
{
	struct st_field f[NCOL];
	struct st_vec v[NCOL];
	for (uint32_t k = 0; k < ncols; k++) {
		f[k] = all_fields[idx[k]];
		v[k] = r->cols[idx[k]];
		v[k].n = n;
	}
	struct st_schema sc = {ncols, f};
	struct seg_writer_opts o = {.row_group_rows = rg_rows};
	struct seg_writer *w;
	struct st_err err;
	struct seg_file_info info;
	*out = NULL;
	if (seg_writer_open_mem(&sc, &o, &w, &err) != ST_OK)
		return -1;
	if (kv && seg_writer_add_kv(w, "k", "value", 5, &err) != ST_OK)
		return -1;
	if (n && seg_writer_append(w, v, n, &err) != ST_OK)
		return -1;
	if (abort_instead) {
		seg_writer_abort(w);
		return 0;
	}
	if (seg_writer_close_mem(w, &info, out, len, &err) != ST_OK)
		return -1;
	seg_file_info_fini(&info);
	return 0;
}

/* A thread's in-memory writers are recycled (seg_writer_open_mem): a
 * recycled one writes the same bytes as a new one, whatever the segment
 * before it was (other columns, types in other places, strings with their
 * remembered dictionary, several row groups, key-value entries, an
 * abandoned segment). */
static void t_recycled_writer_same_bytes(void)
{
	struct rows r;
	rows_make(&r, 300);
	static const int c1[] = {0, 4, 3}, c2[] = {4, 0}, c3[] = {0, 1, 2, 3, 4, 5, 6, 7},
			 c4[] = {3}, c5[] = {5, 4, 1}, c6[] = {0};
	static const struct {
		const int *idx;
		uint32_t ncols, n, rg;
		bool kv, abort;
	} seq[] = {
		{c1, 3, 1, 0, false, false},  {c2, 2, 37, 16, false, false},
		{c3, 8, 300, 128, true, false}, {c4, 1, 5, 0, false, false},
		{c3, 8, 200, 64, false, true}, {c5, 3, 64, 0, true, false},
		{c6, 1, 0, 0, false, false},  {c2, 2, 300, 0, false, false},
		{c1, 3, 2, 0, false, false},
	};
	int diff = 0;
	seg_writer_release_spare();
	for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
		uint8_t *a = NULL, *b = NULL;
		size_t na = 0, nb = 0;
		/* First with the spare the last segment left, then a new writer. */
		REQUIRE(mem_segment(&r, seq[i].idx, seq[i].ncols, seq[i].n, seq[i].rg, seq[i].kv,
				    seq[i].abort, &a, &na) == 0);
		seg_writer_release_spare();
		REQUIRE(mem_segment(&r, seq[i].idx, seq[i].ncols, seq[i].n, seq[i].rg, seq[i].kv,
				    seq[i].abort, &b, &nb) == 0);
		if (!seq[i].abort) {
			REQUIRE(a && b);
			if (na != nb || memcmp(a, b, na)) {
				fprintf(stderr, "  segment %zu differs (%zu vs %zu bytes)\n", i, na, nb);
				diff++;
			}
			struct seg_reader *rd;
			struct st_err err;
			CHECK_EQ(seg_reader_open_mem("recycled", a, na, &rd, &err), ST_OK);
			seg_reader_close(rd);
		}
		free(a);
		free(b);
	}
	CHECK_EQ(diff, 0);
	seg_writer_release_spare();
	rows_free(&r);
}

static const struct test_case tests[] = {
	{"roundtrip_every_type", t_roundtrip_every_type},
	{"forced_encodings_and_hc", t_forced_encodings_and_hc},
	{"projection_reads_only_requested", t_projection_reads_only_requested},
	{"bench_table_encodings", t_bench_table_encodings},
	{"helper_thread_same_bytes", t_helper_thread_same_bytes},
	{"recycled_writer_same_bytes", t_recycled_writer_same_bytes},
	{"empty_segment", t_empty_segment},
	{"schema_errors_change_nothing", t_schema_errors_change_nothing},
	{"every_byte_flip_is_detected", t_every_byte_flip_is_detected},
	{"every_truncation_is_detected", t_every_truncation_is_detected},
	{"newer_major_version_refused", t_newer_major_version_refused},
	{"io_errors_leave_no_file", t_io_errors_leave_no_file},
	{"string_bounds_are_correct_bounds", t_string_bounds_are_correct_bounds},
	{"inspect_reports_and_verifies", t_inspect_reports_and_verifies},
};
TEST_MAIN(tests)
