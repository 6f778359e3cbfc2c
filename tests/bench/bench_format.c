/*
 * tests/bench/bench_format.c — the segment format benchmark (issue 2 §10).
 *
 *   bench-format [--rows N] [--out PATH] [--runs K]
 *
 * Generates the benchmark table in memory, writes it to a segment (column
 * vectors → fsynced file), scans it back, compares the scan with plain LZ4
 * over the raw values of the same row groups (what ClickHouse stores),
 * measures Q2's row-group pruning, and prints one JSON object per line:
 * {"bench":"format","metric":NAME,"value":X,"unit":U}. Ratios come from
 * one run on one machine; absolute times are only context.
 */
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "format/expr.h"
#include "format/segment.h"
#include "tests/bench/table.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void metric(const char *name, double value, const char *unit)
{
	printf("{\"bench\":\"format\",\"metric\":\"%s\",\"value\":%.6g,\"unit\":\"%s\"}\n", name,
	       value, unit);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return v[n / 2];
}

static void die(const char *what, const struct st_err *err)
{
	fprintf(stderr, "bench-format: %s: %s\n", what, err ? err->msg : "failed");
	exit(1);
}

/* Plain LZ4 over raw values: one LZ4 block per column per row group. */
struct plain_block {
	char *z;          /* compressed bytes */
	int zlen;         /* their size */
	int rawlen;       /* decompressed size */
};

int main(int argc, char **argv)
{
	uint64_t n = 10000000;
	const char *out = NULL;
	int runs = 5;
	for (int a = 1; a < argc; a++) {
		if (!strcmp(argv[a], "--rows") && a + 1 < argc) {
			n = strtoull(argv[++a], NULL, 10);
		} else if (!strcmp(argv[a], "--out") && a + 1 < argc) {
			out = argv[++a];
		} else if (!strcmp(argv[a], "--runs") && a + 1 < argc) {
			runs = atoi(argv[++a]);
		} else {
			fprintf(stderr, "usage: bench-format [--rows N] [--out PATH] [--runs K]\n"
					"  --rows N   rows of the benchmark table (default 10000000)\n"
					"  --out PATH keep the written segment at PATH (default: a temp file, removed)\n"
					"  --runs K   timed scan runs, median reported (default 5)\n");
			return strcmp(argv[a], "--help") ? 2 : 0;
		}
	}
	if (n < 1 || runs < 1 || runs > 100) {
		fprintf(stderr, "bench-format: --rows must be >= 1 and --runs 1..100\n");
		return 2;
	}
	char tmp[64];
	if (!out) {
		snprintf(tmp, sizeof tmp, "/tmp/bench-format-%d.seg", (int)getpid());
		out = tmp;
	}
	struct bench_table t;
	if (bench_table_init(&t, n) != 0) {
		fprintf(stderr, "bench-format: out of memory for %llu rows\n", (unsigned long long)n);
		return 1;
	}
	struct st_err err;

	/* ---- write: column vectors in memory → fsynced segment ---- */
	struct seg_writer *w;
	struct seg_file_info info;
	double t0 = now();
	if (seg_writer_open(out, &t.schema, NULL, &w, &err) != ST_OK)
		die("open writer", &err);
	for (uint64_t at = 0; at < n; at += 65536) {
		struct st_vec cols[4];
		bench_table_vecs(&t, at, (uint32_t)(n - at < 65536 ? n - at : 65536), cols);
		if (seg_writer_append(w, cols, cols[0].n, &err) != ST_OK)
			die("append", &err);
	}
	if (seg_writer_close(w, &info, &err) != ST_OK)
		die("close writer", &err);
	double write_s = now() - t0;

	/* ---- scan: decode all four columns of every row group ---- */
	struct seg_reader *r;
	if (seg_reader_open(out, NULL, &r, &err) != ST_OK)
		die("open reader", &err);
	uint32_t G = seg_reader_row_groups(r);
	double scan[100];
	uint64_t check = 0;
	for (int k = -1; k < runs; k++) { /* run -1 warms the page cache */
		double s0 = now();
		for (uint32_t g = 0; g < G; g++) {
			struct seg_batch *b;
			if (seg_reader_read(r, g, NULL, &b, &err) != ST_OK)
				die("read", &err);
			check += (uint64_t)((const int64_t *)b->cols[1].data)[b->rows - 1];
		}
		if (k >= 0)
			scan[k] = now() - s0;
	}
	double scan_s = median(scan, runs);

	/* Spot-check the decoded values against the generator. */
	for (uint32_t g = 0; g < G; g += G / 7 + 1) {
		struct seg_batch *b;
		if (seg_reader_read(r, g, NULL, &b, &err) != ST_OK)
			die("read", &err);
		const struct seg_rg_meta *m = seg_reader_row_group(r, g);
		for (uint32_t i = 0; i < b->rows; i++) {
			uint64_t row = m->first_row + i;
			const uint8_t *p;
			uint32_t len;
			st_vec_str(&b->cols[2], i, &p, &len);
			if (((const int64_t *)b->cols[0].data)[i] != t.id[row] ||
			    ((const int64_t *)b->cols[1].data)[i] != t.ts[row] ||
			    ((const double *)b->cols[3].data)[i] != t.value[row] ||
			    len != 11 || memcmp(p, t.dict_bytes + 11 * t.sensor[row], 11)) {
				fprintf(stderr, "bench-format: row %llu decoded wrong\n",
					(unsigned long long)row);
				return 1;
			}
		}
	}

	/* ---- plain LZ4 over raw values, the same row groups ---- */
	struct plain_block *pb = calloc((size_t)G * 4, sizeof *pb);
	char *raw = malloc(65536 * 16);
	char *back = malloc(65536 * 16);
	uint64_t plain_bytes = 0;
	if (!pb || !raw || !back)
		die("out of memory", NULL);
	for (uint32_t g = 0; g < G; g++) {
		const struct seg_rg_meta *m = seg_reader_row_group(r, g);
		uint64_t f = m->first_row;
		for (int c = 0; c < 4; c++) {
			int len = 0;
			if (c == 0) {
				memcpy(raw, t.id + f, (size_t)m->rows * 8);
				len = (int)m->rows * 8;
			} else if (c == 1) {
				memcpy(raw, t.ts + f, (size_t)m->rows * 8);
				len = (int)m->rows * 8;
			} else if (c == 3) {
				memcpy(raw, t.value + f, (size_t)m->rows * 8);
				len = (int)m->rows * 8;
			} else { /* strings: u32 length + bytes, as ClickHouse's String */
				for (uint32_t i = 0; i < m->rows; i++) {
					uint32_t l = 11;
					memcpy(raw + len, &l, 4);
					memcpy(raw + len + 4, t.dict_bytes + 11 * t.sensor[f + i], 11);
					len += 15;
				}
			}
			struct plain_block *b = &pb[g * 4 + c];
			b->z = malloc((size_t)LZ4_compressBound(len));
			if (!b->z)
				die("out of memory", NULL);
			b->zlen = LZ4_compress_default(raw, b->z, len, LZ4_compressBound(len));
			b->rawlen = len;
			plain_bytes += (uint64_t)b->zlen;
		}
	}
	double lz4t[100];
	for (int k = -1; k < runs; k++) {
		double s0 = now();
		for (uint32_t i = 0; i < G * 4; i++)
			if (LZ4_decompress_safe(pb[i].z, back, pb[i].zlen, 65536 * 16) != pb[i].rawlen)
				die("LZ4 round trip", NULL);
		if (k >= 0)
			lz4t[k] = now() - s0;
	}
	double lz4_s = median(lz4t, runs);

	/* ---- Q2 pruning by row-group statistics ---- */
	int64_t lo, hi;
	bench_table_q2(n, &lo, &hi);
	char q2[128];
	snprintf(q2, sizeof q2, "ts >= %lld AND ts < %lld", (long long)lo, (long long)hi);
	struct expr *e;
	if (expr_parse(q2, seg_reader_schema(r), &e, &err) != ST_OK)
		die("parse Q2", &err);
	uint32_t read_groups = 0;
	uint64_t matched = 0, expected = 0;
	uint32_t *sel = malloc(SEG_DEFAULT_ROW_GROUP_ROWS * sizeof *sel);
	bool want[4] = {false, true, false, false};
	for (uint32_t g = 0; g < G; g++) {
		const struct seg_rg_meta *m = seg_reader_row_group(r, g);
		struct st_col_stats st[4];
		for (int c = 0; c < 4; c++)
			st[c] = m->chunks[c].stats;
		if (expr_may_match(e, st) == EXPR_MATCH_NONE)
			continue;
		read_groups++;
		struct seg_batch *b;
		uint32_t nsel;
		if (seg_reader_read(r, g, want, &b, &err) != ST_OK ||
		    expr_eval(e, b->cols, b->rows, sel, &nsel, &err) != ST_OK)
			die("Q2 scan", &err);
		matched += nsel;
	}
	for (uint64_t i = 0; i < n; i++)
		expected += t.ts[i] >= lo && t.ts[i] < hi;
	if (matched != expected) {
		fprintf(stderr, "bench-format: Q2 matched %llu rows, expected %llu\n",
			(unsigned long long)matched, (unsigned long long)expected);
		return 1;
	}
	expr_free(e);

	/* ---- report ---- */
	double scan_rate = (double)n / scan_s, lz4_rate = (double)n / lz4_s;
	metric("rows", (double)n, "rows");
	metric("bytes_per_row", (double)info.size / (double)n, "bytes/row");
	metric("write_rows_per_s", (double)n / write_s, "rows/s");
	metric("scan_rows_per_s", scan_rate, "rows/s");
	metric("plain_lz4_bytes_per_row", (double)plain_bytes / (double)n, "bytes/row");
	metric("plain_lz4_decode_rows_per_s", lz4_rate, "rows/s");
	metric("decode_vs_plain_lz4", scan_rate / lz4_rate, "ratio");
	metric("size_vs_plain_lz4", (double)info.size / (double)plain_bytes, "ratio");
	metric("filter_fraction_read", (double)read_groups / G, "ratio");
	metric("q2_rows", (double)matched, "rows");
	metric("row_groups", G, "count");
	metric("writer_peak_bytes", (double)info.peak_bytes, "bytes");
	metric("row_group_raw_bytes", (double)info.row_group_raw_bytes, "bytes");
	metric("writer_peak_vs_row_group", (double)info.peak_bytes / (double)info.row_group_raw_bytes,
	       "ratio");
	const struct st_schema *s = seg_reader_schema(r);
	for (uint32_t c = 0; c < 4; c++) {
		uint64_t bytes = 0;
		uint32_t per[8] = {0}, best = 0;
		for (uint32_t g = 0; g < G; g++) {
			bytes += seg_reader_row_group(r, g)->chunks[c].stored_size;
			per[seg_reader_row_group(r, g)->chunks[c].encoding & 7]++;
		}
		for (uint32_t k = 1; k < 8; k++)
			best = per[k] > per[best] ? k : best;
		char name[64];
		snprintf(name, sizeof name, "column_bytes.%s", s->fields[c].name);
		metric(name, (double)bytes, "bytes");
		printf("{\"bench\":\"format\",\"metric\":\"column_encoding.%s\",\"value\":\"%s\","
		       "\"unit\":\"encoding\"}\n", s->fields[c].name, seg_encoding_name((int)best));
	}
	fprintf(stderr,
		"targets: bytes_per_row %.3f <= 8.0 %s | decode_vs_plain_lz4 %.2f >= 1.0 %s | "
		"scan %.0fM >= 250M rows/s %s | write %.1fM >= 10M rows/s %s | "
		"filter_fraction_read %.4f <= 0.02 %s | writer peak %.2fx <= 2x row group %s\n",
		(double)info.size / n, (double)info.size / n <= 8.0 ? "ok" : "MISS",
		scan_rate / lz4_rate, scan_rate >= lz4_rate ? "ok" : "MISS", scan_rate / 1e6,
		scan_rate >= 250e6 ? "ok" : "MISS", n / write_s / 1e6,
		n / write_s >= 10e6 ? "ok" : "MISS", (double)read_groups / G,
		(double)read_groups / G <= 0.02 ? "ok" : "MISS",
		(double)info.peak_bytes / info.row_group_raw_bytes,
		info.peak_bytes <= 2 * info.row_group_raw_bytes ? "ok" : "MISS");
	(void)check;
	for (uint32_t i = 0; i < G * 4; i++)
		free(pb[i].z);
	free(pb);
	free(raw);
	free(back);
	free(sel);
	seg_file_info_fini(&info);
	seg_reader_close(r);
	bench_table_fini(&t);
	if (out == tmp)
		unlink(tmp);
	return 0;
}
