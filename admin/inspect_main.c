/*
 * admin/inspect_main.c — strata-inspect FILE: print a segment's schema,
 * row groups, chunks and statistics and verify every checksum. Exit 0 when
 * the file verifies, 1 on damage or error, 2 on bad usage.
 */
#include <stdio.h>
#include <string.h>

#include "format/inspect.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: strata-inspect [--summary] FILE...\n"
		   "Print a strata segment's schema, columns (bytes, encodings, statistics),\n"
		   "row groups and chunks, then verify every checksum and encoding.\n"
		   "  --summary   leave out the per-chunk lines\n"
		   "Exit status: 0 all files verified, 1 a file is damaged or unreadable, 2 usage.\n");
}

int main(int argc, char **argv)
{
	int status = 0, files = 0;
	bool chunks = true;
	for (int a = 1; a < argc; a++) {
		if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(argv[a], "--summary")) {
			chunks = false;
			continue;
		}
		if (argv[a][0] == '-' && argv[a][1]) {
			fprintf(stderr, "strata-inspect: unknown option '%s'\n", argv[a]);
			usage(stderr);
			return 2;
		}
	}
	for (int a = 1; a < argc; a++) {
		if (argv[a][0] == '-' && argv[a][1])
			continue;
		struct st_err err;
		files++;
		if (seg_inspect(argv[a], stdout, chunks, &err) != ST_OK) {
			fprintf(stderr, "strata-inspect: %s\n", err.msg);
			status = 1;
		}
	}
	if (!files) {
		usage(stderr);
		return 2;
	}
	return status;
}
