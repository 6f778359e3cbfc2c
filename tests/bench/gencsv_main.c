/*
 * tests/bench/gencsv_main.c — the benchmark table (tests/bench/table.h) as
 * CSV, for `strata load` and DuckDB's COPY in the end-to-end benchmark.
 *
 *   bench-gencsv --rows N --out FILE
 *
 * Columns id,ts,sensor,value; ts as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC),
 * value with 6 decimals (exact: values are k / 1e6). Prints one JSON line
 * on stdout with the Q2 range as timestamp text:
 *   {"rows":N,"bytes":B,"q2_lo":"...","q2_hi":"..."}
 */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/types.h"
#include "tests/bench/table.h"

/* Append v in decimal; returns the end. */
static char *put_u64(char *p, uint64_t v)
{
	char tmp[24];
	int n = 0;
	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10));
	while (n)
		*p++ = tmp[--n];
	return p;
}

static char *put_digits(char *p, uint64_t v, int width)
{
	for (int i = width - 1; i >= 0; i--, v /= 10)
		p[i] = (char)('0' + v % 10);
	return p + width;
}

static char *put_ts(char *p, int64_t us)
{
	int64_t days = us >= 0 ? us / 86400000000LL : -((-us + 86399999999LL) / 86400000000LL);
	int64_t rem = us - days * 86400000000LL, y;
	unsigned m, d;
	st_civil_from_days(days, &y, &m, &d);
	p = put_digits(p, (uint64_t)y, 4);
	*p++ = '-';
	p = put_digits(p, m, 2);
	*p++ = '-';
	p = put_digits(p, d, 2);
	*p++ = ' ';
	p = put_digits(p, (uint64_t)(rem / 3600000000LL), 2);
	*p++ = ':';
	p = put_digits(p, (uint64_t)(rem / 60000000 % 60), 2);
	*p++ = ':';
	p = put_digits(p, (uint64_t)(rem / 1000000 % 60), 2);
	*p++ = '.';
	return put_digits(p, (uint64_t)(rem % 1000000), 6);
}

int main(int argc, char **argv)
{
	static const struct option longs[] = {{"rows", required_argument, NULL, 'r'},
					      {"out", required_argument, NULL, 'o'},
					      {"help", no_argument, NULL, 'h'},
					      {NULL, 0, NULL, 0}};
	uint64_t rows = 1000000;
	const char *out = NULL;
	int o;
	while ((o = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
		if (o == 'r') {
			rows = strtoull(optarg, NULL, 10);
		} else if (o == 'o') {
			out = optarg;
		} else {
			fprintf(o == 'h' ? stdout : stderr,
				"usage: bench-gencsv --rows N --out FILE\n"
				"Write the benchmark table as CSV; print its Q2 range as JSON.\n");
			return o == 'h' ? 0 : 2;
		}
	}
	if (!out || rows == 0) {
		fprintf(stderr, "bench-gencsv: --out FILE and --rows N (> 0) are needed\n");
		return 2;
	}
	struct bench_table t;
	if (bench_table_init(&t, rows) != 0) {
		fprintf(stderr, "bench-gencsv: out of memory for %" PRIu64 " rows\n", rows);
		return 1;
	}
	FILE *f = fopen(out, "w");
	if (!f) {
		perror(out);
		return 1;
	}
	static char line[1 << 16];
	char *p = line;
	p += sprintf(p, "id,ts,sensor,value\n");
	uint64_t bytes = 0;
	for (uint64_t i = 0; i < rows; i++) {
		p = put_u64(p, (uint64_t)t.id[i]);
		*p++ = ',';
		p = put_ts(p, t.ts[i]);
		*p++ = ',';
		uint32_t s = t.sensor[i];
		memcpy(p, t.dict_bytes + t.dict_offsets[s], t.dict_offsets[s + 1] - t.dict_offsets[s]);
		p += t.dict_offsets[s + 1] - t.dict_offsets[s];
		*p++ = ',';
		uint64_t k = (uint64_t)llround(t.value[i] * 1e6);
		p = put_u64(p, k / 1000000);
		*p++ = '.';
		p = put_digits(p, k % 1000000, 6);
		*p++ = '\n';
		if (p - line > (long)sizeof line - 128) {
			fwrite(line, 1, (size_t)(p - line), f);
			bytes += (uint64_t)(p - line);
			p = line;
		}
	}
	fwrite(line, 1, (size_t)(p - line), f);
	bytes += (uint64_t)(p - line);
	if (fclose(f) != 0) {
		perror(out);
		return 1;
	}
	int64_t lo, hi;
	bench_table_q2(rows, &lo, &hi);
	char a[40], b[40];
	*put_ts(a, lo) = '\0';
	*put_ts(b, hi) = '\0';
	printf("{\"rows\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"q2_lo\":\"%s\",\"q2_hi\":\"%s\"}\n", rows,
	       bytes, a, b);
	bench_table_fini(&t);
	return 0;
}
