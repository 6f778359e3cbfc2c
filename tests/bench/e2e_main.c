/*
 * tests/bench/e2e_main.c — the end-to-end benchmark of issue 4 §6: strata
 * (stratad + the strata CLI, durable commits) against DuckDB on the same
 * CSV, in one run.
 *
 *   bench-e2e [--rows N] [--dir PATH] [--bin DIR] [--node-dir DIR]
 *
 * 1. bench-gencsv writes the benchmark table (tests/bench/table.h) as CSV.
 * 2. strata: start stratad (durability sync) on a fresh data directory;
 *    ingest = wall time of the whole `strata load` process (CSV parsing,
 *    wire, encoding, fsyncs, commit); Q1 and Q2 = latency of QUERY
 *    requests from this process over ipc (one warm-up, median of 5);
 *    size = disk blocks of the data directory; RSS = the daemon's peak
 *    (VmHWM), which includes the ingest.
 * 3. DuckDB (1 and 2 threads) through node and @duckdb/node-api installed
 *    by `make bench` into --node-dir (tests/bench/e2e/duckdb_bench.mjs).
 *    When it is not installed, strata's figures are printed alone.
 *
 * Output: a table, then JSON lines {"bench":"e2e",...}: the raw figures of
 * each engine, and the ratios ingest_vs_duckdb, q1_vs_duckdb (strata rows/s
 * ÷ DuckDB rows/s), q2_vs_duckdb (DuckDB latency ÷ strata latency),
 * size_vs_duckdb and rss_vs_duckdb (strata ÷ DuckDB), against DuckDB at
 * 1 thread and at 2.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "admin/client.h"
#include "tests/bench/harness.h"

/* Bytes of disk blocks under path. */
static uint64_t disk_use(const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return 0;
	uint64_t total = (uint64_t)st.st_blocks * 512;
	if (!S_ISDIR(st.st_mode))
		return total;
	DIR *d = opendir(path);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char sub[4096];
		snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
		total += disk_use(sub);
	}
	if (d)
		closedir(d);
	return total;
}

static uint64_t peak_rss(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	uint64_t kb = 0;
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "VmHWM:", 6))
			kb = strtoull(line + 6, NULL, 10);
	if (f)
		fclose(f);
	return kb * 1024;
}

/* rc of a wire_field_* getter of required key `key` (`name`) of a QUERY
 * reply (in: NULL, or the nested map): return when present, else die naming
 * the key. */
static void need_key(int rc, const struct st_err *err, const char *in, uint32_t key,
		     const char *name)
{
	char m[300];
	if (rc < 0)
		bench_die("the daemon's QUERY reply is malformed: %s", err->msg);
	if (rc == 0) {
		snprintf(m, sizeof m, "key %u (%s)%s%s is missing", key, name, in ? " of " : "",
			 in ? in : "");
		bench_die("the daemon's QUERY reply is malformed: %s", m);
	}
}

/* One QUERY; returns its latency, the result's rows in *rows and the rows
 * matched in *matched. */
static double query(sc_client *c, const char *group, const char *fn, const char *col,
		    const char *where, uint64_t *rows, uint64_t *matched)
{
	struct wire_error e;
	const msgpack_object *b;
	double t0 = bench_now();
	msgpack_packer *pk = sc_begin(c, WIRE_QUERY, where ? 4 : 3);
	wire_key_str(pk, WIRE_QUERY_Q_TABLE, "t");
	msgpack_pack_uint32(pk, WIRE_QUERY_Q_GROUP_BY);
	msgpack_pack_array(pk, group ? 1 : 0);
	if (group)
		wire_pack_str(pk, group);
	msgpack_pack_uint32(pk, WIRE_QUERY_Q_AGGREGATES);
	msgpack_pack_array(pk, fn[0] == 'c' ? 2 : 1);
	if (fn[0] == 'c') {
		msgpack_pack_array(pk, 2);
		wire_pack_str(pk, "count");
		wire_pack_str(pk, "*");
	}
	msgpack_pack_array(pk, 2);
	wire_pack_str(pk, "sum");
	wire_pack_str(pk, col);
	if (where)
		wire_key_str(pk, WIRE_QUERY_Q_PREDICATE, where);
	if (sc_call(c, &b, &e) != 0) {
		char msg[600];
		sc_error_format(&e, msg, sizeof msg);
		bench_die("query failed: %s", msg);
	}
	double dt = bench_now() - t0;
	const msgpack_object *batch = NULL;
	struct st_err err;
	/* Every key read is required: a reply without one is a broken daemon. */
	need_key(wire_field_map(b, NULL, WIRE_QUERY_R_BATCH, "batch", &batch, &err), &err, NULL,
		 WIRE_QUERY_R_BATCH, "batch");
	need_key(wire_field_u64(batch, "its batch", WIRE_BATCH_ROWS, "rows", rows, &err), &err,
		 "its batch", WIRE_BATCH_ROWS, "rows");
	need_key(wire_field_u64(b, NULL, WIRE_QUERY_R_MATCHED, "rows matched", matched, &err), &err,
		 NULL, WIRE_QUERY_R_MATCHED, "rows matched");
	return dt;
}

static double median5(sc_client *c, const char *group, const char *fn, const char *where,
		      uint64_t *rows, uint64_t *matched)
{
	double t[5];
	query(c, group, fn, "value", where, rows, matched);
	for (int i = 0; i < 5; i++)
		t[i] = query(c, group, fn, "value", where, rows, matched);
	qsort(t, 5, sizeof t[0], bench_cmp_double);
	return t[2];
}

struct figures {
	bool ok;
	double ingest_s, q1_s, q2_s;
	uint64_t size, rss, q2_count, q1_groups;
};

static void print_json(const char *engine, int threads, uint64_t rows, const struct figures *f)
{
	printf("{\"bench\":\"e2e\",\"engine\":\"%s\",\"threads\":%d,\"rows\":%" PRIu64
	       ",\"ingest_s\":%.4f,\"ingest_rows_per_s\":%.0f,\"q1_ms\":%.3f,\"q2_ms\":%.3f,"
	       "\"q2_count\":%" PRIu64 ",\"size_bytes\":%" PRIu64 ",\"rss_bytes\":%" PRIu64 "}\n",
	       engine, threads, rows, f->ingest_s, (double)rows / f->ingest_s, f->q1_s * 1e3,
	       f->q2_s * 1e3, f->q2_count, f->size, f->rss);
}

int main(int argc, char **argv)
{
	static const struct option longs[] = {{"rows", required_argument, NULL, 'r'},
					      {"dir", required_argument, NULL, 'd'},
					      {"bin", required_argument, NULL, 'b'},
					      {"node-dir", required_argument, NULL, 'n'},
					      {"help", no_argument, NULL, 'h'},
					      {NULL, 0, NULL, 0}};
	uint64_t rows = 10000000;
	const char *dir = "build/e2e/run", *bin = "build", *node_dir = "build/e2e";
	int o;
	while ((o = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
		switch (o) {
		case 'r': rows = strtoull(optarg, NULL, 10); break;
		case 'd': dir = optarg; break;
		case 'b': bin = optarg; break;
		case 'n': node_dir = optarg; break;
		default:
			printf("usage: bench-e2e [--rows N] [--dir PATH] [--bin DIR] [--node-dir DIR]\n"
			       "strata (stratad + CLI) against DuckDB on the benchmark table as CSV.\n");
			return o == 'h' ? 0 : 2;
		}
	}
	char cmd[8192], out[4096], csv[4096], data[4096], cfg[4096], sock[4096], host[4200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
	if (system(cmd) != 0)
		bench_die("cannot create %s", dir);
	snprintf(csv, sizeof csv, "%s/t.csv", dir);
	snprintf(data, sizeof data, "%s/strata", dir);
	snprintf(cfg, sizeof cfg, "%s/stratad.yaml", dir);
	snprintf(sock, sizeof sock, "%s/stratad.sock", dir);
	snprintf(host, sizeof host, "ipc://%s", sock);

	/* 1. The CSV. */
	char gen[4096], rows_s[32];
	snprintf(gen, sizeof gen, "%s/bench-gencsv", bin);
	snprintf(rows_s, sizeof rows_s, "%" PRIu64, rows);
	fprintf(stderr, "bench-e2e: generating %s rows as CSV\n", rows_s);
	if (bench_run((char *const[]){gen, "--rows", rows_s, "--out", csv, NULL}, out, sizeof out, NULL))
		bench_die("%s failed", gen);
	char lo[64], hi[64];
	bench_json_str(out, "q2_lo", lo, sizeof lo);
	bench_json_str(out, "q2_hi", hi, sizeof hi);
	double csv_bytes = bench_json_num(out, "bytes");

	/* 2. strata. */
	FILE *f = fopen(cfg, "w");
	if (!f)
		bench_die("cannot write %s", cfg);
	fprintf(f, "listen: [\"%s\"]\ndata_dir: \"%s\"\ndurability: sync\nlog_level: warn\n", host,
		data);
	fclose(f);
	char stratad[4096], strata[4096];
	snprintf(stratad, sizeof stratad, "%s/stratad", bin);
	snprintf(strata, sizeof strata, "%s/strata", bin);
	pid_t d = fork();
	if (d == 0) {
		execl(stratad, stratad, "-c", cfg, (char *)NULL);
		_exit(127);
	}
	sc_client *c = NULL;
	struct wire_error e;
	for (double t0 = bench_now(); sc_connect(host, 1000, &c, &e) != 0; usleep(20000))
		if (bench_now() - t0 > 10)
			bench_die("stratad did not answer on %s", host);
	if (bench_run((char *const[]){strata, "--host", host, "create", "t", "--schema",
				"id int64 not null, ts timestamp, sensor string, value float64", NULL},
		NULL, 0, NULL))
		bench_die("%s", "strata create failed");
	struct figures s = {.ok = true};
	fprintf(stderr, "bench-e2e: strata load\n");
	if (bench_run((char *const[]){strata, "--host", host, "load", "t", csv, "--quiet", NULL}, NULL, 0,
		&s.ingest_s))
		bench_die("%s", "strata load failed");
	uint64_t nrows, matched;
	s.q1_s = median5(c, "sensor", "sum", NULL, &s.q1_groups, &matched);
	if (matched != rows)
		bench_die("%s", "Q1 did not read every row");
	char where[256];
	snprintf(where, sizeof where, "ts >= '%s' AND ts < '%s'", lo, hi);
	s.q2_s = median5(c, NULL, "count", where, &nrows, &s.q2_count);
	s.size = disk_use(data);
	s.rss = peak_rss(d);
	sc_close(c);
	kill(d, SIGTERM);
	waitpid(d, NULL, 0);

	/* 3. DuckDB. */
	struct figures duck[2] = {{0}};
	char script[4096], mods[4096];
	snprintf(script, sizeof script, "%s/duckdb_bench.mjs", node_dir);
	snprintf(mods, sizeof mods, "%s/node_modules/@duckdb/node-api", node_dir);
	struct stat st;
	bool have_duck = stat(script, &st) == 0 && stat(mods, &st) == 0;
	for (int t = 0; t < 2 && have_duck; t++) {
		char db[4096], threads[8];
		snprintf(db, sizeof db, "%s/duck%d.db", dir, t + 1);
		snprintf(threads, sizeof threads, "%d", t + 1);
		fprintf(stderr, "bench-e2e: duckdb, %s thread%s\n", threads, t ? "s" : "");
		if (bench_run((char *const[]){"node", script, "--csv", csv, "--db", db, "--threads", threads,
					"--q2-lo", lo, "--q2-hi", hi, NULL},
			out, sizeof out, NULL) != 0) {
			fprintf(stderr, "bench-e2e: the DuckDB run failed; strata's figures alone\n");
			have_duck = false;
			break;
		}
		duck[t] = (struct figures){.ok = true,
					   .ingest_s = bench_json_num(out, "ingest_s"),
					   .q1_s = bench_json_num(out, "q1_s"),
					   .q2_s = bench_json_num(out, "q2_s"),
					   .size = (uint64_t)bench_json_num(out, "size_bytes"),
					   .rss = (uint64_t)bench_json_num(out, "rss_peak_bytes"),
					   .q2_count = (uint64_t)bench_json_num(out, "q2_count"),
					   .q1_groups = (uint64_t)bench_json_num(out, "q1_groups")};
		if (duck[t].q2_count != s.q2_count || duck[t].q1_groups != s.q1_groups) {
			fprintf(stderr, "bench-e2e: results differ: Q2 count strata %" PRIu64
					" duckdb %" PRIu64 ", Q1 groups %" PRIu64 " vs %" PRIu64 "\n",
				s.q2_count, duck[t].q2_count, s.q1_groups, duck[t].q1_groups);
			return 1;
		}
	}
	if (!have_duck)
		fprintf(stderr, "bench-e2e: DuckDB is not installed in %s (npm could not be reached?); "
				"strata's figures alone\n", node_dir);

	/* 4. Report. */
	printf("end-to-end, %" PRIu64 " rows, CSV %.1f MB\n", rows, csv_bytes / 1e6);
	printf("%-16s %12s %12s %10s %10s %10s %10s\n", "engine", "ingest s", "rows/s", "Q1 ms",
	       "Q2 ms", "size MB", "RSS MB");
	const struct figures *all[3] = {&s, &duck[0], &duck[1]};
	const char *names[3] = {"strata", "duckdb 1 thread", "duckdb 2 threads"};
	for (int i = 0; i < 3; i++)
		if (all[i]->ok)
			printf("%-16s %12.3f %12.0f %10.2f %10.3f %10.1f %10.1f\n", names[i],
			       all[i]->ingest_s, (double)rows / all[i]->ingest_s, all[i]->q1_s * 1e3,
			       all[i]->q2_s * 1e3, all[i]->size / 1e6, all[i]->rss / 1e6);
	print_json("strata", 0, rows, &s);
	for (int t = 0; t < 2; t++) {
		if (!duck[t].ok)
			continue;
		print_json("duckdb", t + 1, rows, &duck[t]);
		printf("{\"bench\":\"e2e\",\"vs_duckdb_threads\":%d,\"ingest_vs_duckdb\":%.3f,"
		       "\"q1_vs_duckdb\":%.3f,\"q2_vs_duckdb\":%.3f,\"size_vs_duckdb\":%.3f,"
		       "\"rss_vs_duckdb\":%.3f}\n",
		       t + 1, duck[t].ingest_s / s.ingest_s, duck[t].q1_s / s.q1_s,
		       duck[t].q2_s / s.q2_s, (double)s.size / (double)duck[t].size,
		       (double)s.rss / (double)duck[t].rss);
	}
	return 0;
}
