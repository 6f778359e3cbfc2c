/*
 * tests/unit/test_dml_faults.c — UPDATE, MERGE and OPTIMIZE (the DML that
 * writes segments) on a full disk, with a torn write and with a failed
 * fsync, through the store's I/O seam (format/io.h): each statement is
 * refused whole with the error, the table keeps its rows and version, no
 * segment file is left behind, verify (key index included) stays clean,
 * and the statement succeeds once the disk has room again (after a
 * reopen, for the failed fsync).
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/store/strata.h"
#include "format/io.h"
#include "tests/test.h"

enum { NONE, FULL, TORN, FSYNC };
static int inject;
static int torn_calls;

static ssize_t fault_pwrite(int fd, const void *b, size_t n, off_t off)
{
	if (inject == FULL) {
		errno = ENOSPC;
		return -1;
	}
	if (inject == TORN) { /* some bytes land, then the disk is full */
		if (torn_calls++ == 0 && n > 1)
			return pwrite(fd, b, n / 2, off);
		errno = ENOSPC;
		return -1;
	}
	return pwrite(fd, b, n, off);
}

static int fault_fsync(int fd)
{
	if (inject == FSYNC) {
		errno = EIO;
		return -1;
	}
	return fsync(fd);
}

static struct st_io io;

static st_store *open_store(const char *dir)
{
	io = st_io_posix;
	io.pwrite = fault_pwrite;
	io.fsync = fault_fsync;
	struct st_store_opts o = {.inline_max = 1, .io = &io};
	st_store *s = NULL;
	struct st_err err;
	int rc = st_store_open(dir, &o, &s, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  open: %s\n", err.msg);
	REQUIRE(rc == ST_OK);
	return s;
}

static const struct st_column_def cols[] = {
	{"id", ST_TYPE_INT64, false},
	{"v", ST_TYPE_INT64, true},
};

static int put(st_store *s, const char *table, int64_t from, uint32_t n, struct st_err *err)
{
	int64_t *id = malloc(n * 8 + 8), *v = malloc(n * 8 + 8);
	for (uint32_t i = 0; i < n; i++) {
		id[i] = from + i;
		v[i] = (from + i) % 100;
	}
	const char *names[2] = {"id", "v"};
	struct st_vec vec[2] = {{.type = ST_TYPE_INT64, .n = n, .data = id},
				{.type = ST_TYPE_INT64, .n = n, .data = v}};
	struct st_batch b = {2, names, vec, n};
	struct st_commit_result r;
	int rc = st_write(s, table, &b, 1, NULL, &r, err);
	free(id);
	free(v);
	return rc;
}

/* count(*), sum(id) and sum(v) of the table by a scan, as one number each. */
static void sums(st_store *s, int64_t out[3])
{
	st_scan *sc;
	struct st_err err;
	out[0] = out[1] = out[2] = -1;
	REQUIRE(st_scan_open(s, "t", (struct st_at){ST_AT_LATEST, 0}, NULL, 0, NULL, &sc, &err) ==
		ST_OK);
	out[0] = out[1] = out[2] = 0;
	const struct st_scan_batch *b;
	while (st_scan_next(sc, &b, &err) == ST_OK && b)
		for (uint32_t i = 0; i < b->nsel; i++) {
			uint32_t r = b->sel ? b->sel[i] : i;
			out[0]++;
			out[1] += ((const int64_t *)b->cols[0].data)[r];
			out[2] += ((const int64_t *)b->cols[1].data)[r];
		}
	st_scan_close(sc);
}

static uint64_t version(st_store *s)
{
	uint64_t v = 0;
	struct st_err err;
	REQUIRE(st_table_version(s, "t", &v, &err) == ST_OK);
	return v;
}

/* Segment files under dir/tables (every table). */
static int segments(const char *dir)
{
	char p[600];
	snprintf(p, sizeof p, "%s/tables", dir);
	DIR *d = opendir(p);
	int n = 0;
	struct dirent *t;
	while (d && (t = readdir(d))) {
		if (t->d_name[0] == '.')
			continue;
		char q[1200];
		snprintf(q, sizeof q, "%s/%s", p, t->d_name);
		DIR *e = opendir(q);
		struct dirent *f;
		while (e && (f = readdir(e)))
			n += strlen(f->d_name) > 4 && !strcmp(f->d_name + strlen(f->d_name) - 4, ".seg");
		if (e)
			closedir(e);
	}
	if (d)
		closedir(d);
	return n;
}

static uint32_t problems(st_store *s)
{
	struct st_verify_result vr;
	struct st_err err;
	memset(&vr, 0, sizeof vr);
	REQUIRE(st_verify_ex(s, NULL, &vr, &err) == ST_OK);
	for (uint32_t i = 0; i < vr.nproblems; i++)
		fprintf(stderr, "  verify: %s\n", vr.problems[i]);
	uint32_t n = vr.nproblems;
	st_verify_result_fini(&vr);
	return n;
}

/* Statement k (0 UPDATE, 1 MERGE, 2 OPTIMIZE): its status and message. */
static int statement(st_store *s, int k, struct st_err *err)
{
	struct st_dml_result r;
	struct st_optimize_result o;
	struct st_merge_opts mo = {.on = "t.id = s.id", .matched = ST_MERGE_MATCHED_UPDATE_ALL,
				   .not_matched = ST_MERGE_NOT_MATCHED_INSERT_ALL};
	struct st_optimize_opts oo = {0};
	torn_calls = 0;
	switch (k) {
	case 0: return st_update(s, "t", "v = v + 1000", "id % 10 = 3", NULL, &r, err);
	case 1: return st_merge(s, "t", "src", &mo, &r, err);
	default: return st_optimize(s, "t", &oo, &o, err);
	}
}

static const char *const names[3] = {"UPDATE", "MERGE", "OPTIMIZE"};

static void refused_whole(int how)
{
	char dir[512];
	snprintf(dir, sizeof dir, "%s", test_new_dir("dmlf"));
	TEST_SAVE(inject);
	st_store *s = open_store(dir);
	struct st_err err;
	const char *key[1] = {"id"};
	struct st_table_spec spec = {.name = "t", .cols = cols, .ncols = 2, .key = key, .nkey = 1};
	REQUIRE(st_table_create(s, &spec, ST_CREATE_ERROR, NULL, &err) == ST_OK);
	spec = (struct st_table_spec){.name = "src", .cols = cols, .ncols = 2};
	REQUIRE(st_table_create(s, &spec, ST_CREATE_ERROR, NULL, &err) == ST_OK);
	REQUIRE(put(s, "t", 0, 10000, &err) == ST_OK);
	REQUIRE(put(s, "t", 10000, 10000, &err) == ST_OK);
	REQUIRE(put(s, "src", 19000, 2000, &err) == ST_OK);
	for (int k = 0; k < 3; k++) {
		int64_t before[3], after[3];
		sums(s, before);
		uint64_t v0 = version(s);
		int nseg = segments(dir);
		char what[128];
		inject = how;
		int rc = statement(s, k, &err);
		inject = NONE;
		int want = how == FSYNC ? ST_EFAILED : ENOSPC;
		snprintf(what, sizeof what, "%s: refused (%s)", names[k], st_strerror(want));
		if (rc != want)
			fprintf(stderr, "  %s: got %d: %s\n", names[k], rc, err.msg);
		CHECK(rc == want);
		if (how != FSYNC)
			CHECK_CONTAINS(err.msg, "No space left on device");
		sums(s, after);
		CHECK(!memcmp(before, after, sizeof before)); /* every row as it was */
		CHECK_EQ(version(s), v0);
		CHECK_EQ(segments(dir), nseg); /* nothing left behind */
		if (how == FSYNC) {
			/* The store refuses writes until reopened; after that the
			 * statement goes through. */
			CHECK_EQ(statement(s, k, &err), ST_EFAILED);
			st_store_close(s);
			s = open_store(dir);
			sums(s, after);
			CHECK(!memcmp(before, after, sizeof before));
			CHECK_EQ(segments(dir), nseg);
		}
		CHECK_EQ(problems(s), 0);
		rc = statement(s, k, &err);
		if (rc != ST_OK)
			fprintf(stderr, "  %s again: %s\n", names[k], err.msg);
		CHECK_EQ(rc, ST_OK);
		CHECK(version(s) == v0 + 1);
		CHECK_EQ(problems(s), 0);
		(void)what;
	}
	st_store_close(s);
}

static void t_full_disk(void)
{
	refused_whole(FULL);
}

static void t_torn_write(void)
{
	refused_whole(TORN);
}

static void t_failed_fsync(void)
{
	refused_whole(FSYNC);
}

static const struct test_case tests[] = {
	{"full_disk", t_full_disk},
	{"torn_write", t_torn_write},
	{"failed_fsync", t_failed_fsync},
};

TEST_MAIN(tests)
