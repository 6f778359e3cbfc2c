/*
 * tests/bench/bench_store.c — the store benchmark (issue 3 §12), as far as
 * the store is built. JSON lines {"bench":"store","metric":..,"value":..,
 * "unit":..}; ratios from one run.
 *
 *   bench-store [--rows N] [--commits N] [--dir PATH]
 *
 * commit_vs_lmdb     durable 1-row appends/s ÷ raw LMDB durable txns/s
 *                    (8-byte key, 200-byte value, default flags), same disk
 * ingest_rows_per_s  the benchmark table in 1M-row durable commits
 * open_ms            reopening the store afterwards (all tables, ~100k+ commits)
 * snapshot_open_ratio  opening a scan at version 1 ÷ at head, on a table of
 *                    --history commits and 1000 live files
 * group_commit_gain  32 writer threads ÷ 1, durable 1-row appends (group commit)
 * scrub_q1_cost      1 − Q1 queries/s while a scrub runs at the default rate
 *                    (4 MB/s, passes back to back) ÷ Q1 queries/s without,
 *                    interleaved rounds (target ≤ 0.05)
 * scrub_mb_per_s     an unthrottled scrub pass of the store: MB read per second
 */
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/store/query.h"
#include "daemon/store/strata.h"
#include "tests/bench/table.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void metric(const char *name, double value, const char *unit)
{
	printf("{\"bench\":\"store\",\"metric\":\"%s\",\"value\":%.6g,\"unit\":\"%s\"}\n", name,
	       value, unit);
	fflush(stdout);
}

static void die(const char *what, const struct st_err *err)
{
	fprintf(stderr, "bench-store: %s: %s\n", what, err ? err->msg : "failed");
	exit(1);
}

static const struct st_column_def one_cols[] = {{"id", ST_TYPE_INT64, false}};

static int append_one(st_store *s, const char *table, int64_t id, struct st_err *err)
{
	const char *names[1] = {"id"};
	struct st_vec v = {.type = ST_TYPE_INT64, .n = 1, .data = &id};
	struct st_batch b = {1, names, &v, 1};
	struct st_commit_result r;
	return st_write(s, table, &b, 1, NULL, &r, err);
}

/* Raw LMDB: seconds for n durable transactions of one put each, numbered
 * from *next on (the environment stays open across rounds). */
static double lmdb_txns(MDB_env *env, int n, uint64_t *next)
{
	MDB_dbi dbi;
	MDB_txn *txn;
	uint8_t val[200];
	memset(val, 7, sizeof val);
	double t0 = now();
	for (int i = 0; i < n; i++) {
		uint64_t k = (*next)++;
		MDB_val key = {8, &k}, v = {200, val};
		if (mdb_txn_begin(env, NULL, 0, &txn) || mdb_dbi_open(txn, NULL, 0, &dbi) ||
		    mdb_put(txn, dbi, &key, &v, 0) || mdb_txn_commit(txn))
			die("raw LMDB transaction", NULL);
	}
	return now() - t0;
}

/* The paired measurements alternate in rounds: the disk's weather changes
 * within seconds (one writer's rate moves by 2x from one round to the
 * next on a shared machine), so both sides of a ratio see the same mix. */
#define GROUP_ROUNDS 10
#define COMMIT_ROUNDS 20

struct worker {
	st_store *s;     /* the store */
	int n;           /* appends to do */
	int64_t base;    /* first id */
	int failed;      /* an append failed */
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct st_err err;
	for (int i = 0; i < w->n; i++)
		if (append_one(w->s, "g", w->base + i, &err) != ST_OK)
			w->failed = 1;
	return NULL;
}

/* Seconds for total / threads * threads appends by `threads` writers. */
static double appends_time(st_store *s, int threads, int total)
{
	struct worker w[32];
	pthread_t th[32];
	double t0 = now();
	for (int i = 0; i < threads; i++) {
		w[i] = (struct worker){s, total / threads, (int64_t)i * 1000000, 0};
		pthread_create(&th[i], NULL, worker_run, &w[i]);
	}
	for (int i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < threads; i++)
		if (w[i].failed)
			die("concurrent append", NULL);
	return now() - t0;
}

/* Q1 of the benchmark: sum(value) by sensor over the whole table. */
static void q1(st_store *s)
{
	const char *group[1] = {"sensor"};
	struct sd_agg agg = {SD_AGG_SUM, "value"};
	struct sd_query_result r;
	struct st_err err;
	if (sd_query(s, "bench", (struct st_at){ST_AT_LATEST, 0}, group, 1, &agg, 1, NULL, 1000000,
		     &r, &err) != ST_OK)
		die("Q1", &err);
	sd_query_result_fini(&r);
}

struct scrubber {
	st_store *s;
	int stop;
	uint64_t passes;
};

static void *scrub_run(void *arg)
{
	struct scrubber *x = arg;
	while (!__atomic_load_n(&x->stop, __ATOMIC_RELAXED)) {
		struct st_scrub_opts o = {.rate_mb_s = 4, .stop = &x->stop};
		struct st_verify_result r;
		struct st_err err;
		bool stopped;
		if (st_scrub(x->s, &o, &r, &stopped, &err) != ST_OK)
			die("scrub", &err);
		if (r.nproblems)
			die(r.problems[0], NULL);
		st_verify_result_fini(&r);
		x->passes += !stopped;
	}
	return NULL;
}

/* Q1 queries/s without and with a scrub at 4 MB/s running beside, in
 * interleaved rounds of `per` queries; an unthrottled pass's MB/s. */
static void scrub_cost(st_store *s, int rounds, int per)
{
	double idle = 0, busy = 0;
	q1(s); /* warm the page cache */
	for (int r = 0; r < rounds; r++) {
		double t0 = now();
		for (int i = 0; i < per; i++)
			q1(s);
		idle += now() - t0;
		struct scrubber x = {s, 0, 0};
		pthread_t th;
		if (pthread_create(&th, NULL, scrub_run, &x) != 0)
			die("pthread_create", NULL);
		t0 = now();
		for (int i = 0; i < per; i++)
			q1(s);
		busy += now() - t0;
		__atomic_store_n(&x.stop, 1, __ATOMIC_RELAXED);
		pthread_join(th, NULL);
	}
	double qi = rounds * per / idle, qb = rounds * per / busy;
	metric("q1_per_s_idle", qi, "queries/s");
	metric("q1_per_s_scrub", qb, "queries/s");
	metric("scrub_q1_cost", 1 - qb / qi, "ratio");
	struct st_scrub_progress pg = {0};
	struct st_scrub_opts o = {.progress = &pg};
	struct st_verify_result vr;
	struct st_err err;
	bool stopped;
	double t0 = now();
	if (st_scrub(s, &o, &vr, &stopped, &err) != ST_OK)
		die("scrub", &err);
	metric("scrub_mb_per_s", (double)pg.bytes_done / 1e6 / (now() - t0), "MB/s");
	st_verify_result_fini(&vr);
}

int main(int argc, char **argv)
{
	uint64_t rows = 10000000;
	int commits = 4000, history = 100000;
	char dir[256] = "";
	for (int a = 1; a < argc; a++) {
		if (!strcmp(argv[a], "--rows") && a + 1 < argc)
			rows = strtoull(argv[++a], NULL, 10);
		else if (!strcmp(argv[a], "--commits") && a + 1 < argc)
			commits = atoi(argv[++a]);
		else if (!strcmp(argv[a], "--history") && a + 1 < argc)
			history = atoi(argv[++a]);
		else if (!strcmp(argv[a], "--dir") && a + 1 < argc)
			snprintf(dir, sizeof dir, "%s", argv[++a]);
		else {
			fprintf(stderr, "usage: bench-store [--rows N] [--commits N] [--dir PATH]\n"
					"  --rows N     rows ingested in 1M-row commits (default 10000000)\n"
					"  --commits N  1-row commits for commit_vs_lmdb (default 4000)\n"
					"  --history N  commits of the snapshot table, >= 1001 (default 100000)\n"
					"  --dir PATH   where to work (default: a new directory under build/)\n");
			return strcmp(argv[a], "--help") ? 2 : 0;
		}
	}
	if (!dir[0]) {
		snprintf(dir, sizeof dir, "build/bench-store-%d", (int)getpid());
	}
	if (rows < 1 || commits < COMMIT_ROUNDS || history < 1001) {
		fprintf(stderr, "bench-store: --rows >= 1, --commits >= 20, --history >= 1001\n");
		return 2;
	}
	char path[512];
	struct st_err err;
	st_store *s;
	mkdir(dir, 0755);
	snprintf(path, sizeof path, "%s/store", dir);
	if (st_store_open(path, NULL, &s, &err) != ST_OK)
		die("open", &err);

	/* 1-row durable appends vs raw LMDB durable transactions, same disk. */
	struct st_table_spec one = {.name = "one", .cols = one_cols, .ncols = 1};
	if (st_table_create(s, &one, ST_CREATE_ERROR, NULL, &err) != ST_OK)
		die("create", &err);
	/* Interleaved rounds, so that both sides see the same disk weather. */
	MDB_env *env;
	snprintf(path, sizeof path, "%s/raw-lmdb", dir);
	mkdir(path, 0755);
	if (mdb_env_create(&env) || mdb_env_set_mapsize(env, 1ull << 30) ||
	    mdb_env_open(env, path, 0, 0644))
		die("raw LMDB open", NULL);
	double ts = 0, tl = 0;
	uint64_t next = 0;
	int per = commits / COMMIT_ROUNDS, id = 0;
	for (int r = 0; r < COMMIT_ROUNDS; r++) {
		double t0 = now();
		for (int i = 0; i < per; i++)
			if (append_one(s, "one", id++, &err) != ST_OK)
				die("append", &err);
		ts += now() - t0;
		tl += lmdb_txns(env, per, &next);
	}
	mdb_env_close(env);
	double commit_rate = per * COMMIT_ROUNDS / ts, lmdb_rate = per * COMMIT_ROUNDS / tl;
	metric("commits_per_s", commit_rate, "commits/s");
	metric("lmdb_txns_per_s", lmdb_rate, "txns/s");
	metric("commit_vs_lmdb", commit_rate / lmdb_rate, "ratio");

	/* A table with `history` commits and ~1k live files: 1000 one-row
	 * appends, then metadata-only commits (property changes) until the
	 * log holds `history` commits (no compaction exists yet to churn
	 * files). Snapshot open at version 1 vs head. */
	struct st_table_spec hs = {.name = "hist", .cols = one_cols, .ncols = 1};
	if (st_table_create(s, &hs, ST_CREATE_ERROR, NULL, &err) != ST_OK)
		die("create", &err);
	for (int i = 0; i < 1000; i++)
		if (append_one(s, "hist", i, &err) != ST_OK)
			die("append", &err);
	for (int i = 1001; i < history; i++) {
		char val[24];
		snprintf(val, sizeof val, "%d", i);
		struct st_alter a = {ST_ALTER_SET_PROPERTY, "note", val, 0};
		struct st_commit_result ar;
		if (st_table_alter(s, "hist", &a, &ar, &err) != ST_OK)
			die("alter", &err);
	}
	double t1[9], th[9];
	for (int k = 0; k < 9; k++) {
		st_scan *sc;
		double a0 = now();
		if (st_scan_open(s, "hist", (struct st_at){ST_AT_VERSION, 1}, NULL, 0, NULL, &sc, &err))
			die("snapshot", &err);
		t1[k] = now() - a0;
		st_scan_close(sc);
		a0 = now();
		if (st_scan_open(s, "hist", (struct st_at){ST_AT_LATEST, 0}, NULL, 0, NULL, &sc, &err))
			die("snapshot", &err);
		th[k] = now() - a0;
		st_scan_close(sc);
	}
	double m1 = t1[0], mh = th[0];
	for (int k = 1; k < 9; k++) {
		m1 = t1[k] < m1 ? t1[k] : m1;
		mh = th[k] < mh ? th[k] : mh;
	}
	metric("snapshot_open_v1_ms", m1 * 1e3, "ms");
	metric("snapshot_open_head_ms", mh * 1e3, "ms");
	metric("snapshot_open_ratio", m1 / mh, "ratio");
	metric("snapshot_live_files", 1000, "files");
	metric("snapshot_table_commits", history, "commits");

	/* Group commit: 32 writers vs 1. */
	struct st_table_spec g = {.name = "g", .cols = one_cols, .ncols = 1};
	if (st_table_create(s, &g, ST_CREATE_ERROR, NULL, &err) != ST_OK)
		die("create", &err);
	/* 500 appends per writer and round: thread start-up and the last
	 * stragglers' small groups stay a small part of each round. */
	int gn = commits < 4000 ? 3200 : 16000, g1 = gn / 16; /* one writer is ~10x slower */
	double t1s = 0, t32s = 0;
	for (int r = 0; r < GROUP_ROUNDS; r++) {
		t1s += appends_time(s, 1, g1);
		t32s += appends_time(s, 32, gn);
	}
	double r1 = (double)g1 * GROUP_ROUNDS / t1s, r32 = (double)(gn / 32 * 32) * GROUP_ROUNDS / t32s;
	metric("appends_1_writer_per_s", r1, "commits/s");
	metric("appends_32_writers_per_s", r32, "commits/s");
	metric("group_commit_gain", r32 / r1, "ratio");

	/* Ingest: the benchmark table in 1M-row durable commits. */
	struct bench_table t;
	if (bench_table_init(&t, rows) != 0)
		die("out of memory", NULL);
	struct st_column_def bcols[4];
	for (int i = 0; i < 4; i++)
		bcols[i] = (struct st_column_def){t.fields[i].name, t.fields[i].type, t.fields[i].nullable};
	struct st_table_spec bt = {.name = "bench", .cols = bcols, .ncols = 4};
	if (st_table_create(s, &bt, ST_CREATE_ERROR, NULL, &err) != ST_OK)
		die("create", &err);
	const char *names[4] = {"id", "ts", "sensor", "value"};
	double t0 = now();
	for (uint64_t at = 0; at < rows; at += 1000000) {
		struct st_vec v[4];
		uint32_t n = (uint32_t)(rows - at < 1000000 ? rows - at : 1000000);
		bench_table_vecs(&t, at, n, v);
		struct st_batch b = {4, names, v, n};
		struct st_commit_result r;
		if (st_write(s, "bench", &b, 1, NULL, &r, &err) != ST_OK)
			die("ingest", &err);
	}
	metric("ingest_rows_per_s", rows / (now() - t0), "rows/s");
	bench_table_fini(&t);
	scrub_cost(s, 5, rows >= 5000000 ? 10 : 40);
	st_store_close(s);

	/* Reopen: recovery and chain verification included. */
	snprintf(path, sizeof path, "%s/store", dir);
	t0 = now();
	if (st_store_open(path, NULL, &s, &err) != ST_OK)
		die("reopen", &err);
	metric("open_ms", (now() - t0) * 1e3, "ms");
	metric("open_commits", commits + gn * 2 + history + rows / 1000000 + 3, "commits");
	st_store_close(s);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "bench-store: could not remove %s\n", dir);
	return 0;
}
