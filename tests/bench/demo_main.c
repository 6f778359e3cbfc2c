/*
 * tests/bench/demo_main.c — the format demo behind `make run` (until the
 * daemon exists): write the benchmark table to a segment and print its
 * inspection.  strata-demo [--rows N] [--out PATH]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/inspect.h"
#include "format/segment.h"
#include "tests/bench/table.h"

int main(int argc, char **argv)
{
	uint64_t rows = 1000000;
	const char *out = "data/demo.seg";
	for (int a = 1; a < argc; a++) {
		if (!strcmp(argv[a], "--rows") && a + 1 < argc) {
			rows = strtoull(argv[++a], NULL, 10);
		} else if (!strcmp(argv[a], "--out") && a + 1 < argc) {
			out = argv[++a];
		} else {
			fprintf(stderr, "usage: strata-demo [--rows N] [--out PATH]\n"
					"Writes the benchmark table (id, ts, sensor, value) to a segment\n"
					"and prints its inspection. Defaults: 1000000 rows, data/demo.seg.\n");
			return strcmp(argv[a], "--help") ? 2 : 0;
		}
	}
	struct bench_table t;
	if (rows == 0 || bench_table_init(&t, rows) != 0) {
		fprintf(stderr, "strata-demo: --rows must be 1 or more, and fit in memory\n");
		return 1;
	}
	struct seg_writer *w;
	struct st_err err;
	struct seg_file_info info;
	int rc = seg_writer_open(out, &t.schema, NULL, &w, &err);
	for (uint64_t at = 0; rc == ST_OK && at < rows; at += 100000) {
		struct st_vec cols[4];
		bench_table_vecs(&t, at, (uint32_t)(rows - at < 100000 ? rows - at : 100000), cols);
		rc = seg_writer_append(w, cols, cols[0].n, &err);
	}
	if (rc == ST_OK)
		seg_writer_add_kv(w, "writer", "strata-demo", 11, &err);
	if (w)
		rc = rc == ST_OK ? seg_writer_close(w, &info, &err) : (seg_writer_abort(w), rc);
	bench_table_fini(&t);
	if (rc != ST_OK) {
		fprintf(stderr, "strata-demo: %s\n", err.msg);
		return 1;
	}
	printf("wrote %llu rows to %s: %llu bytes (%.3f bytes/row), crc32c %08x\n\n",
	       (unsigned long long)info.rows, out, (unsigned long long)info.size,
	       (double)info.size / (double)info.rows, info.crc);
	seg_file_info_fini(&info);
	return seg_inspect(out, stdout, true, &err) == ST_OK ? 0 : 1;
}
