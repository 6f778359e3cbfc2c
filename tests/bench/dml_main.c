/*
 * tests/bench/dml_main.c — the DML benchmark: strata's DELETE (and UPDATE,
 * MERGE, OPTIMIZE once they exist) against DuckDB on the benchmark table,
 * durable on both sides.
 *
 *   bench-dml [--rows N] [--dir PATH] [--bin DIR] [--node-dir DIR]
 *             [--copies K] [--merge-rows M]
 *
 * 1. bench-gencsv writes the benchmark table (tests/bench/table.h: id = row
 *    number 0..N-1, unique and sequential) as CSV; this program writes the
 *    MERGE source: M rows, half of them existing ids spread over the table,
 *    half new ids N, N+1, ...
 * 2. strata: stratad (fsync on) on a fresh data directory. Each case
 *    runs on a freshly loaded table (`strata create` + `strata load` of the
 *    same CSV, not timed), K copies per case (default 3 up to 1,000,000 rows,
 *    else 1); the figure is the median:
 *      delete scattered  WIRE_DELETE "id % 100 = 7" from this process (1 %
 *                        of the rows, in every file). When the daemon's
 *                        predicate language has no '%' yet, "value < 10"
 *                        (also ~1 % in every file, value is uniform in
 *                        [0, 1000)), said in the output.
 *      delete ts_range   WIRE_DELETE "ts < T": the first 1 % of the ts span
 *                        (ts = TS0 + i*1000 µs +- 1000, so T = TS0 + N*10).
 *      update            `strata update T --set "value = value * 2" --where P`
 *      merge             `strata merge T SRC.csv --on "t.id = s.id"
 *                        --when-matched update-all --when-not-matched insert-all`
 *      merge, keyed      the same into a table created with --key id: the
 *                        matches found through the key index (STORE.md
 *                        §4.6); compared with the same DuckDB MERGE; and
 *                        load_keyed_vs_plain, that table's load time ÷ a
 *                        plain copy's (what the key check and index cost)
 *      optimize          Q2's rows read before ÷ after `strata optimize T
 *                        --cluster-by ts,sensor` on a copy loaded in random
 *                        order (shuf of the CSV); Q2's times beside it
 *    update, merge and optimize are looked up in `strata --help`; a command
 *    it does not list prints value null, "not built".
 *    On the scattered copies also: the daemon's /proc/PID/io write_bytes
 *    around the DELETE request (the daemon is otherwise idle) ÷ rows
 *    deleted, with the growth of store/data.mdb and of tables/ (each inode
 *    once: a DELETE hard-links segments under new names) as a cross-check;
 *    and Q1 of bench-e2e (sum(value) GROUP BY sensor; one warm-up, median
 *    of 5) after the delete ÷ before it.
 * 3. DuckDB (1 and 2 threads) through node and @duckdb/node-api installed
 *    into --node-dir (tests/bench/e2e/duckdb_dml.mjs): a database file per
 *    copy, each DML followed by a CHECKPOINT inside the timing. Without it
 *    strata's figures are printed alone.
 *
 * Output: a table, then JSON lines, one per metric:
 *   {"bench":"dml","metric":"delete_vs_duckdb","case":"scattered","value":R,
 *    "strata_ms":..,"duckdb_ms":..,...}
 * value = DuckDB (1 thread) wall time ÷ strata wall time for the *_vs_duckdb
 * metrics (value_2t against DuckDB at 2 threads); null when either side is
 * missing. Exit status 1 when the two engines changed different row counts.
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

#define TS0       1700000000000000LL /* tests/bench/table.h BENCH_TS0 */
#define MAXCOPIES 9

/* The object of "key":{...} in a JSON line (NULL when absent). */
static const char *json_obj(const char *json, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof pat, "\"%s\":{", key);
	return strstr(json, pat);
}

/* Bytes of disk blocks under path, each inode once (a DELETE hard-links
 * segments under new names: counting names would count their bytes twice).
 * seen/nseen/cap: the inodes met so far. */
static uint64_t disk_use_(const char *path, ino_t **seen, size_t *nseen, size_t *cap)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return 0;
	for (size_t i = 0; i < *nseen; i++)
		if ((*seen)[i] == st.st_ino)
			return 0;
	if (*nseen == *cap) {
		*cap = *cap ? *cap * 2 : 256;
		ino_t *p = realloc(*seen, *cap * sizeof **seen);
		if (!p)
			bench_die("%s", "out of memory");
		*seen = p;
	}
	(*seen)[(*nseen)++] = st.st_ino;
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
		total += disk_use_(sub, seen, nseen, cap);
	}
	if (d)
		closedir(d);
	return total;
}

static uint64_t disk_use(const char *path)
{
	ino_t *seen = NULL;
	size_t n = 0, cap = 0;
	uint64_t total = disk_use_(path, &seen, &n, &cap);
	free(seen);
	return total;
}

/* write_bytes of /proc/PID/io (all the daemon's threads); -1 unreadable. */
static int64_t io_write_bytes(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/io", (int)pid);
	FILE *f = fopen(path, "r");
	int64_t v = -1;
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "write_bytes:", 12))
			v = strtoll(line + 12, NULL, 10);
	if (f)
		fclose(f);
	return v;
}

static double median(const double *v, int n)
{
	double t[64];
	if (n <= 0)
		return -1;
	memcpy(t, v, (size_t)n * sizeof *t);
	qsort(t, (size_t)n, sizeof t[0], bench_cmp_double);
	return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

/* µs since the epoch as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC). */
static void fmt_ts(int64_t us, char *buf, size_t len)
{
	time_t s = (time_t)(us / 1000000);
	struct tm tm;
	gmtime_r(&s, &tm);
	char day[32];
	strftime(day, sizeof day, "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(buf, len, "%s.%06lld", day, (long long)(us % 1000000));
}

/* ---- requests ------------------------------------------------------------ */

/* One QUERY on table: GROUP BY group (NULL: none), count(*) when count,
 * sum(value), WHERE where (NULL: none). Returns 0 with its latency in *dt,
 * result rows in *rows and rows matched in *matched; else the error code
 * with its text in msg. */
/* The rows the last query read (QUERY reply key 3; 0 from older daemons). */
static uint64_t last_rows_read;

static int query(sc_client *c, const char *table, const char *group, bool count, const char *where,
                 double *dt, uint64_t *rows, uint64_t *matched, char *msg, size_t msglen)
{
	struct wire_error e;
	const msgpack_object *b;
	double t0 = bench_now();
	msgpack_packer *pk = sc_begin(c, WIRE_QUERY, where ? 4 : 3);
	wire_key_str(pk, WIRE_QUERY_Q_TABLE, table);
	msgpack_pack_uint32(pk, WIRE_QUERY_Q_GROUP_BY);
	msgpack_pack_array(pk, group ? 1 : 0);
	if (group)
		wire_pack_str(pk, group);
	msgpack_pack_uint32(pk, WIRE_QUERY_Q_AGGREGATES);
	msgpack_pack_array(pk, count ? 2 : 1);
	if (count) {
		msgpack_pack_array(pk, 2);
		wire_pack_str(pk, "count");
		wire_pack_str(pk, "*");
	}
	msgpack_pack_array(pk, 2);
	wire_pack_str(pk, "sum");
	wire_pack_str(pk, "value");
	if (where)
		wire_key_str(pk, WIRE_QUERY_Q_PREDICATE, where);
	int rc = sc_call(c, &b, &e);
	if (rc != 0) {
		sc_error_format(&e, msg, msglen);
		return rc;
	}
	*dt = bench_now() - t0;
	const msgpack_object *batch = NULL;
	struct st_err err;
	if (wire_field_map(b, NULL, WIRE_QUERY_R_BATCH, "batch", &batch, &err) != 1 ||
	    wire_field_u64(batch, "its batch", WIRE_BATCH_ROWS, "rows", rows, &err) != 1 ||
	    wire_field_u64(b, NULL, WIRE_QUERY_R_MATCHED, "rows matched", matched, &err) != 1)
		bench_die("%s", "the daemon's QUERY reply is malformed (batch, rows or rows matched)");
	last_rows_read = 0;
	wire_field_u64(b, NULL, WIRE_QUERY_R_ROWS_READ, "rows read", &last_rows_read, &err);
	return 0;
}

/* Median of 5 after one warm-up, in seconds. */
static double query5(sc_client *c, const char *table, const char *group, bool count,
                     const char *where, uint64_t *rows, uint64_t *matched)
{
	double t[6];
	char msg[600];
	for (int i = 0; i < 6; i++)
		if (query(c, table, group, count, where, &t[i], rows, matched, msg, sizeof msg))
			bench_die("query failed: %s", msg);
	return median(t + 1, 5);
}

struct del_result {
	double s; /* wall time of the request */
	uint64_t deleted, read, skipped, removed, dvs;
};

/* One WIRE_DELETE; 0 or the error code with its text in msg. */
static int wire_delete(sc_client *c, const char *table, const char *pred, struct del_result *r,
                       char *msg, size_t msglen)
{
	struct wire_error e;
	const msgpack_object *b;
	double t0 = bench_now();
	msgpack_packer *pk = sc_begin(c, WIRE_DELETE, 2);
	wire_key_str(pk, WIRE_DELETE_Q_TABLE, table);
	wire_key_str(pk, WIRE_DELETE_Q_PREDICATE, pred);
	int rc = sc_call(c, &b, &e);
	r->s = bench_now() - t0;
	if (rc != 0) {
		sc_error_format(&e, msg, msglen);
		return rc;
	}
	struct st_err err;
	if (wire_field_u64(b, NULL, WIRE_DML_R_ROWS, "rows deleted", &r->deleted, &err) != 1)
		bench_die("%s", "the daemon's DELETE reply has no key 5 (rows deleted)");
	/* The file figures are informative: absent reads as 0. */
	r->read = r->skipped = r->removed = r->dvs = 0;
	wire_field_u64(b, NULL, WIRE_DML_R_READ, "files read", &r->read, &err);
	wire_field_u64(b, NULL, WIRE_DML_R_SKIPPED, "files skipped", &r->skipped, &err);
	wire_field_u64(b, NULL, WIRE_DML_R_REMOVED, "files removed", &r->removed, &err);
	wire_field_u64(b, NULL, WIRE_DML_R_DVS, "dvs written", &r->dvs, &err);
	return 0;
}

/* ---- the strata side ----------------------------------------------------- */

static char strata_bin[4096], host[4200], csv[4096];

/* Create and load table `name` from CSV file path; returns the load's seconds. */
/* Create table name (with a declared key id when keyed) and load path. */
static double load_keyed(const char *name, const char *path, bool keyed)
{
	double s;
	char out[4096];
	if (bench_run2((char *const[]){strata_bin, "--host", host, "create", (char *)name, "--schema",
	                         "id int64 not null, ts timestamp, sensor string, value float64",
	                         keyed ? "--key" : NULL, "id", NULL},
	         out, sizeof out, NULL, true))
		bench_die("strata create failed: %s", out);
	if (bench_run2((char *const[]){strata_bin, "--host", host, "--timeout", "3600", "load",
	                         (char *)name, (char *)path, "--quiet", NULL},
	         out, sizeof out, &s, true))
		bench_die("strata load failed: %s", out);
	return s;
}

static double load_from(const char *name, const char *path)
{
	return load_keyed(name, path, false);
}

static double load_copy(const char *name)
{
	return load_from(name, csv);
}

static void drop_copy(const char *name)
{
	bench_run((char *const[]){strata_bin, "--host", host, "drop", (char *)name, NULL}, NULL, 0, NULL);
}

/* Does `strata --help` list command cmd? */
static bool cli_has(const char *cmd)
{
	static char help[16384];
	if (!help[0])
		bench_run2((char *const[]){strata_bin, "--help", NULL}, help, sizeof help, NULL, true);
	char pat[64];
	snprintf(pat, sizeof pat, "\n  %s ", cmd);
	return strstr(help, pat) != NULL;
}

/* Rows changed as the CLI printed them: the first number after "rows"
 * or before " rows" in out (-1: none found). */
static double cli_rows(const char *out)
{
	/* merge: "merged: U rows updated, D deleted, I inserted" */
	const char *m = strstr(out, "merged: ");
	unsigned long long nu, nd, ni;
	if (m && sscanf(m, "merged: %llu rows updated, %llu deleted, %llu inserted", &nu, &nd, &ni) == 3)
		return (double)(nu + nd + ni);
	for (const char *p = out; (p = strstr(p, "row")); p++) {
		const char *q = p;
		while (q > out && q[-1] == ' ')
			q--;
		const char *d = q;
		while (d > out && d[-1] >= '0' && d[-1] <= '9')
			d--;
		if (d < q)
			return strtod(d, NULL);
	}
	return -1;
}

/* One figure of a case, per copy. */
struct series {
	int n;
	double ms[MAXCOPIES];
	double changed; /* rows changed (last copy) */
	bool failed;
	char note[300];
};

static double med(const struct series *s)
{
	return median(s->ms, s->n);
}

/* ---- output -------------------------------------------------------------- */

struct duck {
	bool ok;
	double load_s;
	double ms[4], changed[4]; /* delete_scattered, delete_ts_range, update, merge */
	char merge_method[64];
};

static const char *const duck_keys[4] = {"delete_scattered", "delete_ts_range", "update", "merge"};

static void parse_duck(const char *out, struct duck *d)
{
	d->ok = true;
	d->load_s = bench_json_num(out, "load_s");
	for (int i = 0; i < 4; i++) {
		const char *o = json_obj(out, duck_keys[i]);
		d->ms[i] = o ? bench_json_num(o, "ms") : -1;
		d->changed[i] = o ? bench_json_num(o, "changed") : -1;
		if (!o)
			d->ok = false;
	}
	bench_json_str(out, "method", d->merge_method, sizeof d->merge_method);
}

static void jnum(const char *key, double v, const char *fmt)
{
	printf(",\"%s\":", key);
	if (v < 0)
		printf("null");
	else
		printf(fmt, v);
}

/* One *_vs_duckdb JSON line. */
static void print_vs(const char *metric, const char *cas, uint64_t rows, const struct series *s,
                     const struct duck d[2], int k, const char *pred, bool strata_built)
{
	double sm = strata_built && !s->failed && s->n ? med(s) : -1;
	printf("{\"bench\":\"dml\",\"metric\":\"%s\"", metric);
	if (cas)
		printf(",\"case\":\"%s\"", cas);
	printf(",\"rows\":%" PRIu64, rows);
	jnum("value", sm > 0 && d[0].ok ? d[0].ms[k] / sm : -1, "%.3f");
	jnum("value_2t", sm > 0 && d[1].ok ? d[1].ms[k] / sm : -1, "%.3f");
	jnum("strata_ms", sm, "%.3f");
	jnum("duckdb_ms", d[0].ok ? d[0].ms[k] : -1, "%.3f");
	jnum("duckdb_2t_ms", d[1].ok ? d[1].ms[k] : -1, "%.3f");
	jnum("strata_rows_changed", sm >= 0 ? s->changed : -1, "%.0f");
	jnum("duckdb_rows_changed", d[0].ok ? d[0].changed[k] : -1, "%.0f");
	printf(",\"copies\":%d", s->n);
	if (pred)
		printf(",\"predicate\":\"%s\"", pred);
	if (k == 3 && d[0].ok)
		printf(",\"duckdb_method\":\"%s\"", d[0].merge_method);
	if (!strata_built)
		printf(",\"note\":\"not built\"");
	else if (s->note[0])
		printf(",\"note\":\"%s\"", s->note);
	printf("}\n");
}

/* Make s safe inside a JSON string (quotes and backslashes to '). */
static void json_safe(char *s)
{
	for (; *s; s++)
		if (*s == '"' || *s == '\\')
			*s = '\'';
		else if ((unsigned char)*s < 0x20)
			*s = ' ';
}

int main(int argc, char **argv)
{
	static const struct option longs[] = {
	    {"rows", required_argument, NULL, 'r'},   {"dir", required_argument, NULL, 'd'},
	    {"bin", required_argument, NULL, 'b'},    {"node-dir", required_argument, NULL, 'n'},
	    {"copies", required_argument, NULL, 'k'}, {"merge-rows", required_argument, NULL, 'm'},
	    {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
	uint64_t rows = 10000000, merge_rows = 200000;
	const char *dir = "build/e2e/dml", *bin = "build", *node_dir = "build/e2e";
	int copies = 0, o;
	while ((o = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
		switch (o) {
		case 'r':
			rows = strtoull(optarg, NULL, 10);
			break;
		case 'd':
			dir = optarg;
			break;
		case 'b':
			bin = optarg;
			break;
		case 'n':
			node_dir = optarg;
			break;
		case 'k':
			copies = atoi(optarg);
			break;
		case 'm':
			merge_rows = strtoull(optarg, NULL, 10);
			break;
		default:
			printf("usage: bench-dml [--rows N] [--dir PATH] [--bin DIR] [--node-dir "
			       "DIR]\n"
			       "                 [--copies K] [--merge-rows M]\n"
			       "strata's DELETE/UPDATE/MERGE against DuckDB on the benchmark "
			       "table.\n");
			return o == 'h' ? 0 : 2;
		}
	}
	if (rows < 100)
		bench_die("%s", "--rows must be at least 100");
	if (copies <= 0)
		copies = rows <= 1000000 ? 3 : 1;
	if (copies > MAXCOPIES)
		copies = MAXCOPIES;
	char cmd[8192], out[16384], src[4096], data[4096], cfg[4096], sock[4096];
	snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
	if (system(cmd) != 0)
		bench_die("cannot create %s", dir);
	snprintf(csv, sizeof csv, "%s/t.csv", dir);
	snprintf(src, sizeof src, "%s/src.csv", dir);
	snprintf(data, sizeof data, "%s/strata", dir);
	snprintf(cfg, sizeof cfg, "%s/stratad.yaml", dir);
	snprintf(sock, sizeof sock, "%s/stratad.sock", dir);
	snprintf(host, sizeof host, "ipc://%s", sock);

	/* 1. The CSV and the MERGE source. */
	char gen[4096], rows_s[32];
	snprintf(gen, sizeof gen, "%s/bench-gencsv", bin);
	snprintf(rows_s, sizeof rows_s, "%" PRIu64, rows);
	fprintf(stderr, "bench-dml: generating %s rows as CSV\n", rows_s);
	if (bench_run((char *const[]){gen, "--rows", rows_s, "--out", csv, NULL}, out, sizeof out, NULL))
		bench_die("%s failed", gen);
	char q2lo[64], q2hi[64];
	bench_json_str(out, "q2_lo", q2lo, sizeof q2lo);
	bench_json_str(out, "q2_hi", q2hi, sizeof q2hi);
	uint64_t matching = merge_rows / 2 < rows ? merge_rows / 2 : rows;
	{
		FILE *f = fopen(src, "w");
		if (!f)
			bench_die("cannot write %s", src);
		fprintf(f, "id,ts,sensor,value\n");
		for (uint64_t j = 0; j < merge_rows; j++) {
			/* The first `matching` rows update ids spread over the table,
			 * the others insert ids N, N+1, ... */
			uint64_t id = j < matching ? j * (rows / matching) : rows + (j - matching);
			char ts[40];
			fmt_ts(TS0 + (int64_t)id * 1000, ts, sizeof ts);
			fprintf(f, "%" PRIu64 ",%s,sensor-%04u,%u.%06u\n", id, ts,
			        (unsigned)(j * 7919 % 1000), (unsigned)(j % 1000),
			        (unsigned)(j * 104729 % 1000000));
		}
		if (fclose(f) != 0)
			bench_die("cannot write %s", src);
	}
	char ts_hi[64], ts_pred[128];
	fmt_ts(TS0 + (int64_t)rows * 10, ts_hi, sizeof ts_hi);
	snprintf(ts_pred, sizeof ts_pred, "ts < '%s'", ts_hi);

	/* 2. strata. */
	FILE *f = fopen(cfg, "w");
	if (!f)
		bench_die("cannot write %s", cfg);
	fprintf(f, "listen: [\"%s\"]\ndata_dir: \"%s\"\nfsync: on\nlog_level: warn\n", host, data);
	fclose(f);
	char stratad[4096];
	snprintf(stratad, sizeof stratad, "%s/stratad", bin);
	snprintf(strata_bin, sizeof strata_bin, "%s/strata", bin);
	pid_t d = fork();
	if (d == 0) {
		execl(stratad, stratad, "-c", cfg, (char *)NULL);
		_exit(127);
	}
	sc_client *c = NULL;
	struct wire_error e;
	for (double t0 = bench_now(); sc_connect(host, 3600 * 1000, &c, &e) != 0; usleep(20000))
		if (bench_now() - t0 > 10)
			bench_die("stratad did not answer on %s", host);
	bool has_update = cli_has("update"), has_merge = cli_has("merge"),
	     has_optimize = cli_has("optimize");

	char pred[128] = "id % 100 = 7", pred_note[300] = "";
	struct series del_s = {0}, del_r = {0}, upd = {0}, mrg = {0}, mrgk = {0};
	double q1_before[MAXCOPIES], q1_after[MAXCOPIES], wb_per_row[MAXCOPIES];
	int64_t wb[MAXCOPIES];
	uint64_t mdb_growth[MAXCOPIES], tables_growth[MAXCOPIES];
	struct del_result dres = {0};
	double load_s[MAXCOPIES], load_keyed_s[MAXCOPIES], opt_before = -1, opt_after = -1,
	       opt_ms = -1;
	int nkeyed = 0;
	char opt_note[300] = "not built", msg[600];
	char mdb[4200], tables[4200];
	snprintf(mdb, sizeof mdb, "%s/store/data.mdb", data);
	snprintf(tables, sizeof tables, "%s/tables", data);
	bool io_ok = true;
	uint64_t nrows, matched, q1_groups = 0;

	for (int k = 0; k < copies; k++) {
		char name[64];
		/* a. scattered delete, its bytes and Q1 around it. */
		snprintf(name, sizeof name, "s%d", k);
		fprintf(stderr, "bench-dml: strata copy %d/%d: load %s\n", k + 1, copies, name);
		load_s[k] = load_copy(name);
		if (k == 0) {
			double dt;
			if (query(c, name, NULL, true, pred, &dt, &nrows, &matched, msg,
			          sizeof msg)) {
				json_safe(msg);
				snprintf(
				    pred_note, sizeof pred_note,
				    "'id %% 100 = 7' refused (%.200s); value < 10 used instead",
				    msg);
				fprintf(stderr, "bench-dml: %s\n", pred_note);
				snprintf(pred, sizeof pred, "value < 10");
				snprintf(del_s.note, sizeof del_s.note, "%s", pred_note);
			}
		}
		q1_before[k] = query5(c, name, "sensor", false, NULL, &q1_groups, &matched);
		if (matched != rows)
			bench_die("%s", "Q1 did not read every row");
		int64_t wb0 = io_write_bytes(d);
		uint64_t mdb0 = disk_use(mdb), tab0 = disk_use(tables);
		fprintf(stderr, "bench-dml: strata delete %s where %s\n", name, pred);
		if (wire_delete(c, name, pred, &dres, msg, sizeof msg))
			bench_die("the scattered DELETE failed: %s", msg);
		int64_t wb1 = io_write_bytes(d);
		mdb_growth[k] = disk_use(mdb) - mdb0;
		tables_growth[k] = disk_use(tables) - tab0;
		if (wb0 < 0 || wb1 < 0)
			io_ok = false;
		wb[k] = wb1 - wb0;
		wb_per_row[k] = dres.deleted ? (double)wb[k] / (double)dres.deleted : -1;
		del_s.ms[del_s.n++] = dres.s * 1e3;
		del_s.changed = (double)dres.deleted;
		q1_after[k] = query5(c, name, "sensor", false, NULL, &q1_groups, &matched);
		if (matched != rows - dres.deleted)
			fprintf(stderr,
			        "bench-dml: Q1 after the delete matched %" PRIu64
			        " rows, expected %" PRIu64 "\n",
			        matched, rows - dres.deleted);
		drop_copy(name);

		/* b. ts-range delete. */
		snprintf(name, sizeof name, "r%d", k);
		fprintf(stderr, "bench-dml: strata copy %d/%d: load %s, delete where %s\n", k + 1,
		        copies, name, ts_pred);
		load_copy(name);
		struct del_result rr;
		if (wire_delete(c, name, ts_pred, &rr, msg, sizeof msg))
			bench_die("the ts-range DELETE failed: %s", msg);
		del_r.ms[del_r.n++] = rr.s * 1e3;
		del_r.changed = (double)rr.deleted;
		drop_copy(name);

		/* c. update, d. merge, e. merge into a table with a declared key
		 * (through its key index): through the CLI, when it has them. */
		for (int which = 0; which < 3; which++) {
			bool has = which ? has_merge : has_update;
			struct series *s = which == 2 ? &mrgk : which ? &mrg : &upd;
			if (!has || s->failed)
				continue;
			snprintf(name, sizeof name, "%c%d", "umk"[which], k);
			fprintf(stderr, "bench-dml: strata copy %d/%d: load %s, %s\n", k + 1,
			        copies, name, which == 2 ? "merge (keyed)" : which ? "merge" : "update");
			double ls = load_keyed(name, csv, which == 2);
			if (which == 2)
				load_keyed_s[nkeyed++] = ls;
			char *upd_argv[] = {strata_bin,  "--host", host,
			                    "--timeout", "3600",   "update",
			                    name,        "--set",  "value = value * 2",
			                    "--where",   pred,     NULL};
			char *mrg_argv[] = {strata_bin,
			                    "--host",
			                    host,
			                    "--timeout",
			                    "3600",
			                    "merge",
			                    name,
			                    src,
			                    "--on",
			                    "t.id = s.id",
			                    "--when-matched",
			                    "update-all",
			                    "--when-not-matched",
			                    "insert-all",
			                    NULL};
			double sec;
			if (bench_run2(which ? mrg_argv : upd_argv, out, sizeof out, &sec, true)) {
				json_safe(out);
				snprintf(s->note, sizeof s->note, "strata %s failed: %.200s",
				         which ? "merge" : "update", out);
				fprintf(stderr, "bench-dml: %s\n", s->note);
				s->failed = true;
			} else {
				s->ms[s->n++] = sec * 1e3;
				s->changed = cli_rows(out);
			}
			drop_copy(name);
		}
	}
	/* optimize --cluster-by ts,sensor on the table loaded in random order:
	 * Q2's rows read (and time) before and after. */
	uint64_t q2_read_before = 0, q2_read_after = 0;
	if (has_optimize) {
		char shuf[4200], shcmd[12000], w2[256];
		snprintf(shuf, sizeof shuf, "%s/shuffled.csv", dir);
		snprintf(shcmd, sizeof shcmd, "(head -n 1 '%s'; tail -n +2 '%s' | shuf --random-source='%s') > '%s'",
		         csv, csv, csv, shuf);
		if (bench_run((char *const[]){"/bin/sh", "-c", shcmd, NULL}, out, sizeof out, NULL))
			bench_die("shuffling the CSV failed: %s", out);
		snprintf(w2, sizeof w2, "ts >= '%s' AND ts < '%s'", q2lo, q2hi);
		load_from("dml_opt", shuf);
		opt_before = query5(c, "dml_opt", NULL, true, w2, &nrows, &matched) * 1e3;
		q2_read_before = last_rows_read;
		double s;
		if (bench_run2((char *const[]){strata_bin, "--host", host, "--timeout", "3600", "optimize",
		                         "dml_opt", "--cluster-by", "ts,sensor", NULL},
		         out, sizeof out, &s, true)) {
			json_safe(out);
			snprintf(opt_note, sizeof opt_note, "strata optimize failed: %.200s", out);
		} else {
			opt_ms = s * 1e3;
			opt_after = query5(c, "dml_opt", NULL, true, w2, &nrows, &matched) * 1e3;
			q2_read_after = last_rows_read;
			opt_note[0] = '\0';
		}
		drop_copy("dml_opt");
		unlink(shuf);
	}
	sc_close(c);
	kill(d, SIGTERM);
	waitpid(d, NULL, 0);

	/* 3. DuckDB. */
	struct duck duck[2] = {{0}};
	char script[4096], mods[4096];
	snprintf(script, sizeof script, "%s/duckdb_dml.mjs", node_dir);
	snprintf(mods, sizeof mods, "%s/node_modules/@duckdb/node-api", node_dir);
	struct stat st;
	bool have_duck = stat(script, &st) == 0 && stat(mods, &st) == 0;
	char duck_ts[80], copies_s[16], ddir[4200];
	snprintf(duck_ts, sizeof duck_ts, "%s", ts_hi);
	snprintf(copies_s, sizeof copies_s, "%d", copies);
	snprintf(ddir, sizeof ddir, "%s/duckdb", dir);
	for (int t = 0; t < 2 && have_duck; t++) {
		char threads[8];
		snprintf(threads, sizeof threads, "%d", t + 1);
		fprintf(stderr, "bench-dml: duckdb, %s thread%s\n", threads, t ? "s" : "");
		if (bench_run((char *const[]){"node", script, "--csv", csv, "--src", src, "--dir", ddir,
		                        "--threads", threads, "--copies", copies_s, "--pred", pred,
		                        "--ts-hi", duck_ts, NULL},
		        out, sizeof out, NULL) != 0) {
			fprintf(stderr,
			        "bench-dml: the DuckDB run failed; strata's figures alone\n");
			have_duck = false;
			duck[0].ok = duck[1].ok = false;
			break;
		}
		parse_duck(out, &duck[t]);
	}
	if (!have_duck)
		fprintf(stderr,
		        "bench-dml: DuckDB is not installed in %s (npm could not be reached?); "
		        "strata's figures alone\n",
		        node_dir);
	int status = 0;
	const struct series *all[5] = {&del_s, &del_r, &upd, &mrg, &mrgk};
	for (int i = 0; i < 5 && duck[0].ok; i++)
		if (all[i]->n && !all[i]->failed && all[i]->changed >= 0 &&
		    all[i]->changed != duck[0].changed[i < 4 ? i : 3]) {
			fprintf(stderr,
			        "bench-dml: results differ: %s changed %.0f rows in strata, %.0f "
			        "in DuckDB\n",
			        i < 4 ? duck_keys[i] : "merge (keyed)", all[i]->changed,
			        duck[0].changed[i < 4 ? i : 3]);
			status = 1;
		}

	/* 4. Report. */
	double q1b = median(q1_before, copies) * 1e3, q1a = median(q1_after, copies) * 1e3;
	double wbr = io_ok ? median(wb_per_row, copies) : -1;
	double mdbg[MAXCOPIES], tabg[MAXCOPIES], wbd[MAXCOPIES];
	for (int k = 0; k < copies; k++) {
		mdbg[k] = (double)mdb_growth[k];
		tabg[k] = (double)tables_growth[k];
		wbd[k] = (double)wb[k];
	}
	printf("DML, %" PRIu64 " rows, %d fresh cop%s per case, strata load %.2f s (median)\n",
	       rows, copies, copies == 1 ? "y" : "ies", median(load_s, copies));
	if (pred_note[0])
		printf("note: %s\n", pred_note);
	printf("%-34s %12s %12s %12s %10s\n", "case", "strata ms", "duckdb ms", "duckdb 2t ms",
	       "ratio");
	const char *labels[5] = {"delete scattered", "delete ts range (first 1%)",
	                         "update value*2 (scattered)", "merge", "merge, declared key id"};
	bool built[5] = {true, true, has_update, has_merge, has_merge};
	for (int i = 0; i < 5; i++) {
		int di = i < 4 ? i : 3; /* DuckDB's MERGE for both merges */
		char sm[32] = "not built", dm[32] = "-", dm2[32] = "-", r[32] = "-";
		if (built[i] && all[i]->failed)
			snprintf(sm, sizeof sm, "failed");
		else if (built[i] && all[i]->n)
			snprintf(sm, sizeof sm, "%.2f", med(all[i]));
		if (duck[0].ok)
			snprintf(dm, sizeof dm, "%.2f", duck[0].ms[di]);
		if (duck[1].ok)
			snprintf(dm2, sizeof dm2, "%.2f", duck[1].ms[di]);
		if (built[i] && !all[i]->failed && all[i]->n && duck[0].ok)
			snprintf(r, sizeof r, "%.3f", duck[0].ms[di] / med(all[i]));
		printf("%-34s %12s %12s %12s %10s\n", labels[i], sm, dm, dm2, r);
	}
	printf("scattered delete: %" PRIu64 " rows deleted (%s); files read %" PRIu64
	       ", skipped %" PRIu64 ", removed %" PRIu64 ", deletion vectors %" PRIu64 "\n",
	       dres.deleted, pred, dres.read, dres.skipped, dres.removed, dres.dvs);
	if (io_ok)
		printf("  daemon write_bytes %.0f (%.3f B/row; target <= 2), data.mdb +%.0f B, "
		       "tables/ +%.0f B\n",
		       median(wbd, copies), wbr, median(mdbg, copies), median(tabg, copies));
	else
		printf(
		    "  /proc/%d/io unreadable: no write_bytes; data.mdb +%.0f B, tables/ +%.0f B\n",
		    (int)d, median(mdbg, copies), median(tabg, copies));
	printf("  Q1 before %.2f ms, after %.2f ms: ratio %.3f (target <= 1.15)\n", q1b, q1a,
	       q1a / q1b);
	if (has_optimize && opt_after > 0)
		printf("optimize --cluster-by ts,sensor (table loaded in random order): %.1f ms; Q2 "
		       "rows read %" PRIu64 " before, %" PRIu64 " after: gain %.2f (Q2 %.3f ms -> "
		       "%.3f ms)\n", opt_ms, q2_read_before, q2_read_after,
		       q2_read_after ? (double)q2_read_before / (double)q2_read_after : -1.0,
		       opt_before, opt_after);
	else
		printf("optimize: %s\n", opt_note);
	if (duck[0].ok)
		printf("duckdb merge method: %s; duckdb load %.2f s (1 thread)\n",
		       duck[0].merge_method, duck[0].load_s);

	print_vs("delete_vs_duckdb", "scattered", rows, &del_s, duck, 0, pred, true);
	print_vs("delete_vs_duckdb", "ts_range", rows, &del_r, duck, 1, ts_pred, true);
	print_vs("update_vs_duckdb", "scattered", rows, &upd, duck, 2, pred, has_update);
	print_vs("merge_vs_duckdb", NULL, rows, &mrg, duck, 3, NULL, has_merge);
	print_vs("merge_vs_duckdb", "keyed", rows, &mrgk, duck, 3, NULL, has_merge);
	/* What a declared key costs a load: the key check and the key index. */
	double lk = nkeyed ? median(load_keyed_s, nkeyed) : -1, lp = median(load_s, copies);
	printf("{\"bench\":\"dml\",\"metric\":\"load_keyed_vs_plain\",\"rows\":%" PRIu64, rows);
	jnum("value", lk > 0 && lp > 0 ? lk / lp : -1, "%.3f");
	jnum("keyed_load_s", lk, "%.3f");
	jnum("plain_load_s", lp, "%.3f");
	printf("}\n");
	printf("{\"bench\":\"dml\",\"metric\":\"delete_bytes_written_per_row\",\"rows\":%" PRIu64,
	       rows);
	jnum("value", wbr, "%.4f");
	jnum("write_bytes", io_ok ? median(wbd, copies) : -1, "%.0f");
	printf(",\"rows_deleted\":%" PRIu64, dres.deleted);
	jnum("data_mdb_growth_bytes", median(mdbg, copies), "%.0f");
	jnum("tables_growth_bytes", median(tabg, copies), "%.0f");
	printf(",\"target\":2%s}\n", io_ok ? "" : ",\"note\":\"/proc/PID/io unreadable\"");
	printf("{\"bench\":\"dml\",\"metric\":\"scan_after_delete_ratio\",\"rows\":%" PRIu64, rows);
	jnum("value", q1a / q1b, "%.4f");
	jnum("q1_before_ms", q1b, "%.3f");
	jnum("q1_after_ms", q1a, "%.3f");
	printf(",\"q1_groups\":%" PRIu64 ",\"target\":1.15}\n", q1_groups);
	printf("{\"bench\":\"dml\",\"metric\":\"optimize_q2_gain\",\"rows\":%" PRIu64, rows);
	jnum("value", has_optimize && q2_read_after ? (double)q2_read_before / (double)q2_read_after
	                                            : -1, "%.4f");
	printf(",\"q2_rows_read_before\":%" PRIu64 ",\"q2_rows_read_after\":%" PRIu64, q2_read_before,
	       q2_read_after);
	jnum("q2_before_ms", opt_before, "%.3f");
	jnum("q2_after_ms", opt_after, "%.3f");
	jnum("optimize_ms", opt_ms, "%.3f");
	if (opt_note[0])
		printf(",\"note\":\"%s\"", opt_note);
	printf("}\n");
	return status;
}
