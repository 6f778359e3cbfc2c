/*
 * tests/unit/test_recovery.c — the store under failure: a writer killed
 * with SIGKILL at random moments (every acknowledged commit survives,
 * nothing of an unacknowledged one is visible, no orphan file remains),
 * orphan segments removed at open, a changed commit detected by the
 * checksum chain, and the directory lock.
 *
 * The crash test runs CRASH_CYCLES kill -9 cycles (at least 200 in make
 * test; STRATA_CRASH_CYCLES overrides).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon/store/strata.h"
#include "format/bytes.h"
#include "format/crc32c.h"
#include "tests/test.h"

enum { ROWS_PER_COMMIT = 100 };

static const char *new_dir(void)
{
	return test_new_dir("recovery");
}

static const struct st_column_def cols[] = {{"id", ST_TYPE_INT64, false},
					    {"v", ST_TYPE_FLOAT64, true}};

/* Append ROWS_PER_COMMIT rows whose ids continue from `from`. */
static int append_rows(st_store *s, int64_t from, struct st_commit_result *r, struct st_err *err)
{
	int64_t id[ROWS_PER_COMMIT];
	double v[ROWS_PER_COMMIT];
	for (int i = 0; i < ROWS_PER_COMMIT; i++) {
		id[i] = from + i;
		v[i] = (double)(from + i) / 8;
	}
	const char *names[2] = {"id", "v"};
	struct st_vec vecs[2] = {{.type = ST_TYPE_INT64, .n = ROWS_PER_COMMIT, .data = id},
				 {.type = ST_TYPE_FLOAT64, .n = ROWS_PER_COMMIT, .data = v}};
	struct st_batch b = {2, names, vecs, ROWS_PER_COMMIT};
	return st_write(s, "t", &b, 1, NULL, r, err);
}

/* Rows and sum of ids at version v (latest when v < 0); -1 on error. */
static int64_t rows_at(st_store *s, int64_t v, int64_t *sum)
{
	st_scan *sc;
	struct st_err err;
	int64_t rows = 0;
	*sum = 0;
	struct st_at at = {v < 0 ? ST_AT_LATEST : ST_AT_VERSION, v};
	if (st_scan_open(s, "t", at, NULL, 0, NULL, &sc, &err) != ST_OK)
		return -1;
	const struct st_scan_batch *b;
	int rc;
	while ((rc = st_scan_next(sc, &b, &err)) == ST_OK && b) {
		for (uint32_t i = 0; i < b->nsel; i++)
			*sum += ((const int64_t *)b->cols[0].data)[b->sel ? b->sel[i] : i];
		rows += b->nsel;
	}
	st_scan_close(sc);
	return rc == ST_OK ? rows : -1;
}

/* Files in DIR/tables/<tid>: *.seg and *.tmp. */
static void count_files(const char *dir, int *segs, int *tmps)
{
	char p[256];
	snprintf(p, sizeof p, "%s/tables/0000000000000001", dir);
	*segs = *tmps = 0;
	DIR *d = opendir(p);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		size_t n = strlen(e->d_name);
		*segs += n > 4 && !strcmp(e->d_name + n - 4, ".seg");
		*tmps += n > 4 && !strcmp(e->d_name + n - 4, ".tmp");
	}
	if (d)
		closedir(d);
}

/* Store options: inline_max 1 puts every segment in a file; 0 (the
 * default) keeps these small writes inline in LMDB. */
static struct st_store_opts opts_for(bool files)
{
	return (struct st_store_opts){.inline_max = files ? 1 : 0};
}

/* The child: commit forever, reporting each acknowledged version. */
static void writer_child(const char *dir, bool files, int fd)
{
	st_store *s;
	struct st_err err;
	struct st_store_opts o = opts_for(files);
	if (st_store_open(dir, &o, &s, &err) != ST_OK)
		_exit(3);
	struct st_table_spec spec = {.name = "t", .cols = cols, .ncols = 2};
	uint64_t v;
	if (st_table_create(s, &spec, ST_CREATE_IF_NOT_EXISTS, &v, &err) != ST_OK)
		_exit(4);
	for (;;) {
		struct st_commit_result r;
		if (append_rows(s, (int64_t)v * ROWS_PER_COMMIT, &r, &err) != ST_OK)
			_exit(5);
		v = r.version;
		if (write(fd, &v, sizeof v) != sizeof v)
			_exit(6);
	}
}

/* kill -9 a committing child `cycles` times; segments in files or inline. */
static void crash_cycles(int cycles, bool files)
{
	const char *dir = new_dir();
	uint64_t acked = 0;
	int failures = 0, kills_mid_write = 0;
	srand((unsigned)time(NULL));
	for (int c = 0; c < cycles && failures == 0; c++) {
		int pfd[2];
		REQUIRE(pipe(pfd) == 0);
		pid_t pid = fork();
		REQUIRE(pid >= 0);
		if (pid == 0) {
			close(pfd[0]);
			writer_child(dir, files, pfd[1]);
		}
		close(pfd[1]);
		/* Let it run 1..25 ms, then kill -9 wherever it is. */
		struct timespec ts = {0, (long)(1 + rand() % 25) * 1000000L};
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		uint64_t v;
		while (read(pfd[0], &v, sizeof v) == sizeof v)
			acked = v > acked ? v : acked;
		close(pfd[0]);
		int status;
		waitpid(pid, &status, 0);
		if (!WIFSIGNALED(status)) {
			fprintf(stderr, "  cycle %d: child exited %d instead of being killed\n", c,
				WEXITSTATUS(status));
			failures++;
			break;
		}
		/* Reopen: recovery runs; then check the table. */
		st_store *s;
		struct st_err err;
		struct st_store_opts o = opts_for(files);
		if (st_store_open(dir, &o, &s, &err) != ST_OK) {
			fprintf(stderr, "  cycle %d: reopen: %s\n", c, err.msg);
			failures++;
			break;
		}
		struct act_metadata *md;
		if (st_table_describe(s, "t", -1, &md, &err) == ST_ENOTFOUND && acked == 0) {
			st_store_close(s); /* killed before it created the table */
			continue;
		}
		if (md)
			act_metadata_free(md);
		int64_t sum, head_rows = rows_at(s, -1, &sum);
		struct act_commit **h;
		uint32_t n = 0;
		uint64_t head = 0;
		if (st_history(s, "t", 1, &h, &n, &err) == ST_OK && n == 1) {
			head = h[0]->version;
			act_commit_free(h[0]);
			free(h);
		}
		int segs, tmps;
		count_files(dir, &segs, &tmps);
		int64_t want = (int64_t)head * ROWS_PER_COMMIT;
		if (head < acked || head > acked + 1 || head_rows != want ||
		    sum != want * (want - 1) / 2 || segs != (files ? (int)head : 0) || tmps != 0) {
			fprintf(stderr, "  cycle %d: acked %llu, head %llu, rows %lld (want %lld), "
					"%d segments, %d temp files\n", c, (unsigned long long)acked,
				(unsigned long long)head, (long long)head_rows, (long long)want, segs, tmps);
			failures++;
		}
		kills_mid_write += head == acked + 1; /* committed but not yet acknowledged */
		/* Every acknowledged version still reads exactly. */
		if (acked > 0 && rows_at(s, (int64_t)acked, &sum) != (int64_t)acked * ROWS_PER_COMMIT)
			failures++;
		acked = head;
		st_store_close(s);
	}
	CHECK_EQ(failures, 0);
	CHECK(acked > 0);
	fprintf(stderr, "  %d cycles (%s), %llu commits, %d killed between commit and ack\n",
		cycles, files ? "segment files" : "inline segments", (unsigned long long)acked,
		kills_mid_write);
}

static void t_kill9_loses_no_acknowledged_commit(void)
{
	const char *env = getenv("STRATA_CRASH_CYCLES");
	int cycles = env ? atoi(env) : 200;
	crash_cycles(cycles / 2, true);
	crash_cycles(cycles - cycles / 2, false);
}

static void t_orphans_removed_and_chain_verified(void)
{
	const char *dir = new_dir();
	st_store *s;
	struct st_err err;
	struct st_store_opts files = opts_for(true);
	REQUIRE(st_store_open(dir, &files, &s, &err) == ST_OK);
	struct st_table_spec spec = {.name = "t", .cols = cols, .ncols = 2};
	REQUIRE(st_table_create(s, &spec, ST_CREATE_ERROR, NULL, &err) == ST_OK);
	struct st_commit_result r;
	REQUIRE(append_rows(s, 0, &r, &err) == ST_OK);
	REQUIRE(append_rows(s, 100, &r, &err) == ST_OK);
	st_store_close(s);
	/* An orphan (renamed, never committed) and a temp file. */
	char p[256];
	snprintf(p, sizeof p, "%s/tables/0000000000000001/00000000000000ff.seg", dir);
	int fd = open(p, O_CREAT | O_WRONLY, 0644);
	close(fd);
	snprintf(p, sizeof p, "%s/tables/0000000000000001/0000000000000003.seg.tmp", dir);
	fd = open(p, O_CREAT | O_WRONLY, 0644);
	close(fd);
	REQUIRE(st_store_open(dir, NULL, &s, &err) == ST_OK);
	int segs, tmps;
	count_files(dir, &segs, &tmps);
	CHECK_EQ(segs, 2);
	CHECK_EQ(tmps, 0);
	int64_t sum;
	CHECK_EQ(rows_at(s, -1, &sum), 200);
	st_store_close(s);
	/* Change one byte inside commit 1 (its time), directly in LMDB. */
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	snprintf(p, sizeof p, "%s/store", dir);
	REQUIRE(mdb_env_create(&env) == 0);
	REQUIRE(mdb_env_open(env, p, 0, 0644) == 0);
	REQUIRE(mdb_txn_begin(env, NULL, 0, &txn) == 0);
	REQUIRE(mdb_dbi_open(txn, NULL, 0, &dbi) == 0);
	/* STORE.md §2: commit key = 03, tid 1, 03, ~version (version 1). */
	uint8_t key[18] = {3, 0, 0, 0, 0, 0, 0, 0, 1, 3, 255, 255, 255, 255, 255, 255, 255, 254};
	MDB_val k = {18, key}, v;
	REQUIRE(mdb_get(txn, dbi, &k, &v) == 0);
	uint8_t *copy = malloc(v.mv_size);
	memcpy(copy, v.mv_data, v.mv_size);
	struct act_commit *c;
	/* The record ends with its checksum (STORE.md §2): the change keeps
	 * it valid, so only the commit chain can tell. */
	REQUIRE(act_decode(copy, v.mv_size - 4, &c, &err) == ST_OK);
	c->info.rows_added = 99; /* a plausible lie, still valid msgpack */
	struct st_buf nb = {0};
	REQUIRE(act_encode(c, &nb, NULL, &err) == ST_OK);
	act_commit_free(c);
	uint8_t crc[4];
	st_put_le32(crc, st_crc32c(st_crc32c(0, key, sizeof key), nb.data, nb.len));
	st_buf_append(&nb, crc, 4);
	MDB_val nv = {nb.len, nb.data};
	REQUIRE(mdb_put(txn, dbi, &k, &nv, 0) == 0);
	REQUIRE(mdb_txn_commit(txn) == 0);
	mdb_env_close(env);
	free(copy);
	st_buf_free(&nb);
	CHECK_EQ(st_store_open(dir, NULL, &s, &err), ST_ECORRUPT);
	CHECK_CONTAINS(err.msg, "does not match its digest");
}

static const struct test_case tests[] = {
	{"kill9_loses_no_acknowledged_commit", t_kill9_loses_no_acknowledged_commit},
	{"orphans_removed_and_chain_verified", t_orphans_removed_and_chain_verified},
};
TEST_MAIN(tests)
