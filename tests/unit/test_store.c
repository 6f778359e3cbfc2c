/*
 * tests/unit/test_store.c — libstrata's store: tables, writes with schema
 * enforcement, snapshots by version and by time, projections and
 * predicates, idempotent writes, merge_schema, history, drop, reopen.
 */
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pthread.h>

#include <errno.h>

#include "daemon/store/store_int.h"
#include "daemon/store/strata.h"
#include "tests/test.h"

/* A fresh data directory for one test. */
static char last_dir[128]; /* the directory new_dir returned last */

static const char *new_dir(void)
{
	const char *d = test_new_dir("store");
	snprintf(last_dir, sizeof last_dir, "%s", d);
	return d;
}

static const struct st_column_def sensor_cols[] = {
	{"id", ST_TYPE_INT64, false},
	{"sensor", ST_TYPE_STRING, true},
	{"value", ST_TYPE_FLOAT64, true},
};

/* Options of every open: the default keeps these small writes inline in
 * LMDB; the *_files tests set inline_max 1 to put them in segment files. */
static struct st_store_opts store_opts;

static st_store *open_with_table(const char *dir)
{
	st_store *s;
	struct st_err err;
	REQUIRE(st_store_open(dir, &store_opts, &s, &err) == ST_OK);
	struct st_table_spec spec = {.name = "readings", .cols = sensor_cols, .ncols = 3};
	uint64_t v = 99;
	REQUIRE(st_table_create(s, &spec, ST_CREATE_ERROR, &v, &err) == ST_OK);
	CHECK_EQ(v, 0);
	return s;
}

/* Append n rows with ids from..from+n-1, sensor "s<id%3>", value id/4. */
static int append(st_store *s, int64_t from, uint32_t n, struct st_commit_result *res,
		  struct st_err *err, const struct st_write_opts *o)
{
	int64_t *id = malloc(n * 8 + 8);
	double *val = malloc(n * 8 + 8);
	uint32_t *offs = malloc((n + 1) * 4);
	uint8_t *bytes = malloc(n * 2 + 2);
	offs[0] = 0;
	for (uint32_t i = 0; i < n; i++) {
		id[i] = from + i;
		val[i] = (double)(from + i) / 4;
		bytes[2 * i] = 's';
		bytes[2 * i + 1] = (uint8_t)('0' + (from + i) % 3);
		offs[i + 1] = 2 * (i + 1);
	}
	const char *names[3] = {"id", "sensor", "value"};
	struct st_vec cols[3] = {
		{.type = ST_TYPE_INT64, .n = n, .data = id},
		{.type = ST_TYPE_STRING, .n = n, .offsets = offs, .bytes = bytes},
		{.type = ST_TYPE_FLOAT64, .n = n, .data = val},
	};
	struct st_batch b = {3, names, cols, n};
	int rc = st_write(s, "readings", &b, 1, o, res, err);
	free(id);
	free(val);
	free(offs);
	free(bytes);
	return rc;
}

/* Rows (and sum of ids) a scan returns. */
static int64_t scan_count(st_store *s, struct st_at at, const char *pred, int64_t *sum)
{
	st_scan *sc;
	struct st_err err;
	int64_t rows = 0;
	*sum = 0;
	const char *cols[1] = {"id"};
	if (st_scan_open(s, "readings", at, cols, 1, pred, &sc, &err) != ST_OK) {
		fprintf(stderr, "  scan: %s\n", err.msg);
		return -1;
	}
	const struct st_scan_batch *b;
	while (st_scan_next(sc, &b, &err) == ST_OK && b) {
		const int64_t *id = b->cols[0].data;
		for (uint32_t i = 0; i < b->nsel; i++)
			*sum += id[b->sel ? b->sel[i] : i];
		rows += b->nsel;
	}
	st_scan_close(sc);
	return rows;
}

static void t_create_append_time_travel(void)
{
	const char *dir = new_dir();
	st_store *s = open_with_table(dir);
	struct st_err err;
	struct st_commit_result r1, r2;
	REQUIRE(append(s, 0, 1000, &r1, &err, NULL) == ST_OK);
	REQUIRE(append(s, 1000, 500, &r2, &err, NULL) == ST_OK);
	CHECK_EQ(r1.version, 1);
	CHECK_EQ(r2.version, 2);
	CHECK(r2.time_us > r1.time_us);
	CHECK(r2.lsn > r1.lsn);
	int64_t sum;
	CHECK_EQ(scan_count(s, (struct st_at){ST_AT_VERSION, 0}, NULL, &sum), 0);
	CHECK_EQ(scan_count(s, (struct st_at){ST_AT_VERSION, 1}, NULL, &sum), 1000);
	CHECK_EQ(sum, 999 * 1000 / 2);
	CHECK_EQ(scan_count(s, (struct st_at){ST_AT_LATEST, 0}, NULL, &sum), 1500);
	/* By time: exactly at the first write's commit time, and just before. */
	CHECK_EQ(scan_count(s, (struct st_at){ST_AT_TIME, r1.time_us}, NULL, &sum), 1000);
	CHECK_EQ(scan_count(s, (struct st_at){ST_AT_TIME, r2.time_us - 1}, NULL, &sum), 1000);
	CHECK_EQ(scan_count(s, (struct st_at){ST_AT_TIME, r2.time_us + 1000000}, NULL, &sum), 1500);
	st_scan *sc;
	CHECK_EQ(st_scan_open(s, "readings", (struct st_at){ST_AT_TIME, 1}, NULL, 0, NULL, &sc, &err),
		 ST_ERANGE);
	CHECK_CONTAINS(err.msg, "before the table's first");
	CHECK_EQ(st_scan_open(s, "readings", (struct st_at){ST_AT_VERSION, 3}, NULL, 0, NULL, &sc, &err),
		 ST_ERANGE);
	CHECK_CONTAINS(err.msg, "versions 0 to 2; version 3");
	/* Predicates, with pruning by statistics. */
	CHECK_EQ(scan_count(s, (struct st_at){ST_AT_LATEST, 0}, "id >= 1200 AND id < 1300", &sum), 100);
	CHECK_EQ(sum, (1200 + 1299) * 100 / 2);
	CHECK_EQ(scan_count(s, (struct st_at){ST_AT_LATEST, 0}, "sensor = 's1'", &sum), 500);
	CHECK_EQ(st_scan_open(s, "readings", (struct st_at){0, 0}, NULL, 0, "idd > 3", &sc, &err),
		 ST_ETYPE);
	/* History, newest first. */
	struct act_commit **h;
	uint32_t n;
	REQUIRE(st_history(s, "readings", 0, &h, &n, &err) == ST_OK);
	CHECK_EQ(n, 3);
	CHECK_EQ(h[0]->version, 2);
	CHECK_EQ(h[0]->info.rows_added, 500);
	CHECK(!strcmp(h[2]->info.operation, "CREATE TABLE"));
	for (uint32_t i = 0; i < n; i++)
		act_commit_free(h[i]);
	free(h);
	st_store_close(s);
	/* Everything survives a reopen. */
	REQUIRE(st_store_open(dir, &store_opts, &s, &err) == ST_OK);
	CHECK_EQ(scan_count(s, (struct st_at){ST_AT_LATEST, 0}, NULL, &sum), 1500);
	CHECK_EQ(scan_count(s, (struct st_at){ST_AT_VERSION, 1}, NULL, &sum), 1000);
	st_store_close(s);
}

static void t_overwrite_keeps_old_versions(void)
{
	st_store *s = open_with_table(new_dir());
	struct st_err err;
	struct st_commit_result r;
	REQUIRE(append(s, 0, 100, &r, &err, NULL) == ST_OK);
	REQUIRE(append(s, 100, 100, &r, &err, NULL) == ST_OK);
	struct st_write_opts ow = {.mode = ST_WRITE_OVERWRITE};
	REQUIRE(append(s, 5000, 10, &r, &err, &ow) == ST_OK);
	CHECK_EQ(r.version, 3);
	int64_t sum;
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, NULL, &sum), 10);
	CHECK_EQ(sum, 5000 * 10 + 45);
	CHECK_EQ(scan_count(s, (struct st_at){ST_AT_VERSION, 2}, NULL, &sum), 200);
	st_store_close(s);
}

static void t_schema_enforcement_writes_nothing(void)
{
	const char *dir = new_dir();
	st_store *s = open_with_table(dir);
	struct st_err err;
	struct st_commit_result r;
	uint8_t valid[1] = {0xfd}; /* row 1 null */
	int64_t id[4] = {1, 2, 3, 4};
	int32_t wrong[4] = {1, 2, 3, 4};
	const char *n1[1] = {"id"};
	struct st_vec v1 = {.type = ST_TYPE_INT64, .n = 4, .data = id, .validity = valid};
	struct st_batch b = {1, n1, &v1, 4};
	CHECK_EQ(st_write(s, "readings", &b, 1, NULL, &r, &err), ST_ESCHEMA);
	CHECK_CONTAINS(err.msg, "column 'id' is NOT NULL (type int64) but row 1 of the write is null");
	v1.validity = NULL;
	const char *n2[2] = {"id", "humidity"};
	struct st_vec v2[2] = {{.type = ST_TYPE_INT64, .n = 4, .data = id},
			       {.type = ST_TYPE_INT32, .n = 4, .data = wrong}};
	struct st_batch b2 = {2, n2, v2, 4};
	CHECK_EQ(st_write(s, "readings", &b2, 1, NULL, &r, &err), ST_ESCHEMA);
	CHECK_CONTAINS(err.msg, "has no column 'humidity' (found type int32");
	const char *n3[2] = {"id", "value"};
	struct st_batch b3 = {2, n3, v2, 4};
	CHECK_EQ(st_write(s, "readings", &b3, 1, NULL, &r, &err), ST_ESCHEMA);
	CHECK_CONTAINS(err.msg, "column 'value' expects type float64, the write has int32");
	const char *n4[2] = {"id", "ID"};
	struct st_vec v4[2] = {v1, v1};
	struct st_batch b4 = {2, n4, v4, 4};
	CHECK_EQ(st_write(s, "readings", &b4, 1, NULL, &r, &err), ST_ESCHEMA);
	CHECK_CONTAINS(err.msg, "appears twice");
	const char *n5[1] = {"sensor"};
	struct st_batch b5 = {1, n5, &v1, 4};
	v1.type = ST_TYPE_STRING; /* type checked before NOT NULL: id is missing */
	CHECK_EQ(st_write(s, "readings", &b5, 1, NULL, &r, &err), ST_ESCHEMA);
	v1.type = ST_TYPE_INT64;
	CHECK_EQ(st_write(s, "nosuch", &b, 1, NULL, &r, &err), ST_ENOTFOUND);
	/* Nothing was committed and no file was left behind. */
	struct act_commit **h;
	uint32_t n;
	REQUIRE(st_history(s, "readings", 0, &h, &n, &err) == ST_OK);
	CHECK_EQ(n, 1);
	for (uint32_t i = 0; i < n; i++)
		act_commit_free(h[i]);
	free(h);
	char tdir[256];
	snprintf(tdir, sizeof tdir, "%s/tables/0000000000000001", dir);
	DIR *d = opendir(tdir);
	int files = 0;
	struct dirent *e;
	while (d && (e = readdir(d)))
		files += e->d_name[0] != '.';
	if (d)
		closedir(d);
	CHECK_EQ(files, 0);
	/* merge_schema adds the column; old files read it as NULL. */
	REQUIRE(append(s, 0, 10, &r, &err, NULL) == ST_OK);
	struct st_write_opts merge = {.merge_schema = true};
	REQUIRE(st_write(s, "readings", &b2, 1, &merge, &r, &err) == ST_OK);
	struct act_metadata *m;
	REQUIRE(st_table_describe(s, "readings", -1, &m, &err) == ST_OK);
	CHECK_EQ(m->schema.nfields, 4);
	CHECK(!strcmp(m->schema.fields[3].name, "humidity"));
	CHECK_EQ(m->schema.fields[3].id, 4);
	act_metadata_free(m);
	REQUIRE(st_table_describe(s, "readings", 1, &m, &err) == ST_OK);
	CHECK_EQ(m->schema.nfields, 3);
	act_metadata_free(m);
	int64_t sum;
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, "humidity IS NULL", &sum), 10);
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, "humidity >= 2", &sum), 3);
	st_store_close(s);
}

static void t_idempotent_writes(void)
{
	st_store *s = open_with_table(new_dir());
	struct st_err err;
	struct st_commit_result r;
	struct st_write_opts o = {.app_id = "loader-7", .app_version = 5};
	REQUIRE(append(s, 0, 10, &r, &err, &o) == ST_OK);
	CHECK(!r.noop);
	CHECK_EQ(r.version, 1);
	REQUIRE(append(s, 0, 10, &r, &err, &o) == ST_OK); /* a retry */
	CHECK(r.noop);
	CHECK_EQ(r.version, 1);
	o.app_version = 4; /* older still: a no-op */
	REQUIRE(append(s, 0, 10, &r, &err, &o) == ST_OK);
	CHECK(r.noop);
	o.app_version = 6;
	REQUIRE(append(s, 10, 10, &r, &err, &o) == ST_OK);
	CHECK(!r.noop);
	CHECK_EQ(r.version, 2);
	int64_t sum;
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, NULL, &sum), 20);
	st_store_close(s);
}

static void t_tables_create_modes_drop_list(void)
{
	const char *dir = new_dir();
	st_store *s = open_with_table(dir);
	struct st_err err;
	struct st_table_spec spec = {.name = "readings", .cols = sensor_cols, .ncols = 3};
	uint64_t v;
	CHECK_EQ(st_table_create(s, &spec, ST_CREATE_ERROR, &v, &err), ST_EEXIST);
	struct st_commit_result r;
	REQUIRE(append(s, 0, 10, &r, &err, NULL) == ST_OK);
	REQUIRE(st_table_create(s, &spec, ST_CREATE_IF_NOT_EXISTS, &v, &err) == ST_OK);
	CHECK_EQ(v, 1);
	REQUIRE(st_table_create(s, &spec, ST_CREATE_REPLACE, &v, &err) == ST_OK);
	CHECK_EQ(v, 0);
	int64_t sum;
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, NULL, &sum), 0);
	struct st_table_spec bad = {.name = "../etc", .cols = sensor_cols, .ncols = 3};
	CHECK_EQ(st_table_create(s, &bad, ST_CREATE_ERROR, &v, &err), ST_EINVAL);
	CHECK_CONTAINS(err.msg, "invalid table name '../etc'");
	struct st_column_def dup[2] = {{"a", ST_TYPE_INT64, true}, {"A", ST_TYPE_INT64, true}};
	struct st_table_spec bad2 = {.name = "t2", .cols = dup, .ncols = 2};
	CHECK_EQ(st_table_create(s, &bad2, ST_CREATE_ERROR, &v, &err), ST_EINVAL);
	CHECK_CONTAINS(err.msg, "appears twice");
	struct st_table_spec other = {.name = "alpha", .cols = sensor_cols, .ncols = 3};
	REQUIRE(st_table_create(s, &other, ST_CREATE_ERROR, &v, &err) == ST_OK);
	char **names;
	uint32_t n;
	REQUIRE(st_table_list(s, &names, &n, &err) == ST_OK);
	CHECK_EQ(n, 2);
	CHECK(n == 2 && !strcmp(names[0], "alpha") && !strcmp(names[1], "readings"));
	free(names);
	struct st_commit_result rr;
	CHECK_EQ(st_table_rename(s, "alpha", "readings", &rr, &err), ST_EEXIST);
	CHECK_EQ(st_table_rename(s, "alpha", "bad/name", &rr, &err), ST_EINVAL);
	REQUIRE(st_table_rename(s, "alpha", "beta", &rr, &err) == ST_OK);
	CHECK_EQ(rr.version, 1);
	CHECK_EQ(st_table_rename(s, "alpha", "gamma", &rr, &err), ST_ENOTFOUND);
	struct act_metadata *bm;
	REQUIRE(st_table_describe(s, "beta", -1, &bm, &err) == ST_OK);
	CHECK(!strcmp(bm->name, "beta"));
	act_metadata_free(bm);
	REQUIRE(st_table_rename(s, "beta", "alpha", &rr, &err) == ST_OK);
	REQUIRE(st_table_drop(s, "alpha", NULL, &err) == ST_OK);
	CHECK_EQ(st_table_drop(s, "alpha", NULL, &err), ST_ENOTFOUND);
	REQUIRE(st_table_list(s, &names, &n, &err) == ST_OK);
	CHECK_EQ(n, 1);
	free(names);
	/* A second open of the same directory is refused while the first holds it. */
	st_store *s2;
	CHECK_EQ(st_store_open(dir, NULL, &s2, &err), ST_EEXIST);
	CHECK_CONTAINS(err.msg, "in use by another process");
	st_store_close(s);
	REQUIRE(st_store_open(dir, NULL, &s2, &err) == ST_OK);
	st_store_close(s2);
}

/* Stage a write of n rows (ids from..) to table in t. */
static int stage(st_txn *t, const char *table, int64_t from, uint32_t n,
		 const struct st_write_opts *o, struct st_err *err)
{
	static int64_t id[64];
	for (uint32_t i = 0; i < n; i++)
		id[i] = from + i;
	const char *names[1] = {"id"};
	struct st_vec v = {.type = ST_TYPE_INT64, .n = n, .data = id};
	struct st_batch b = {1, names, &v, n};
	return st_txn_write(t, table, &b, 1, o, err);
}

static int count_segments(const char *dir)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "ls %s/tables/*/ 2>/dev/null | grep -c '\\.seg$' > %s/count", dir, dir);
	if (system(cmd) < 0)
		return -1;
	snprintf(cmd, sizeof cmd, "%s/count", dir);
	FILE *f = fopen(cmd, "r");
	int n = -1;
	if (f) {
		if (fscanf(f, "%d", &n) != 1)
			n = -1;
		fclose(f);
	}
	return n;
}

static void t_conflict_matrix(void)
{
	const char *dir = new_dir();
	struct st_store_opts files = {.inline_max = 1};
	st_store *s;
	struct st_err err;
	REQUIRE(st_store_open(dir, &files, &s, &err) == ST_OK);
	struct st_table_spec spec = {.name = "readings", .cols = sensor_cols, .ncols = 3};
	REQUIRE(st_table_create(s, &spec, ST_CREATE_ERROR, NULL, &err) == ST_OK);
	struct act_kv ws[1] = {{"isolation", "WriteSerializable"}};
	struct st_table_spec spec2 = {.name = "ws", .cols = sensor_cols, .ncols = 3, .props = ws,
				      .nprops = 1};
	REQUIRE(st_table_create(s, &spec2, ST_CREATE_ERROR, NULL, &err) == ST_OK);
	struct st_commit_result r[2];
	struct st_write_opts ow = {.mode = ST_WRITE_OVERWRITE};
	st_txn *t;

	/* append x append: both commit. */
	REQUIRE(st_txn_begin(s, &t, &err) == ST_OK);
	REQUIRE(stage(t, "readings", 0, 10, NULL, &err) == ST_OK);
	REQUIRE(append(s, 100, 10, r, &err, NULL) == ST_OK);
	CHECK_EQ(st_txn_commit(t, r, &err), ST_OK);
	CHECK_EQ(r[0].version, 2);

	/* overwrite x append under Serializable: the overwrite loses. */
	int segs = count_segments(dir);
	REQUIRE(st_txn_begin(s, &t, &err) == ST_OK);
	REQUIRE(stage(t, "readings", 1000, 5, &ow, &err) == ST_OK);
	CHECK_EQ(count_segments(dir), segs + 1);
	REQUIRE(append(s, 200, 10, r, &err, NULL) == ST_OK);
	CHECK_EQ(st_txn_commit(t, r, &err), ST_ECONFLICT);
	CHECK_CONTAINS(err.msg, "conflict with version 3");
	CHECK_CONTAINS(err.msg, "added rows this write read");
	CHECK_EQ(count_segments(dir), segs + 1); /* the loser's segment is gone */
	int64_t sum;
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, NULL, &sum), 30);

	/* ... and under WriteSerializable a blind append does not conflict. */
	REQUIRE(append(s, 0, 10, r, &err, NULL) == ST_OK); /* goes to readings */
	REQUIRE(st_txn_begin(s, &t, &err) == ST_OK);
	REQUIRE(stage(t, "ws", 1000, 5, &ow, &err) == ST_OK);
	{
		const char *names[1] = {"id"};
		int64_t id[2] = {1, 2};
		struct st_vec v = {.type = ST_TYPE_INT64, .n = 2, .data = id};
		struct st_batch b = {1, names, &v, 2};
		REQUIRE(st_write(s, "ws", &b, 1, NULL, r, &err) == ST_OK);
	}
	CHECK_EQ(st_txn_commit(t, r, &err), ST_OK);

	/* overwrite x overwrite: the loser read what the winner replaced
	 * (rule 3 comes first); a winner that only deletes (an overwrite with
	 * no rows) hits rule 4: it removed a file the loser read. */
	st_txn *t2;
	REQUIRE(st_txn_begin(s, &t, &err) == ST_OK);
	REQUIRE(st_txn_begin(s, &t2, &err) == ST_OK);
	REQUIRE(stage(t, "readings", 0, 3, &ow, &err) == ST_OK);
	REQUIRE(stage(t2, "readings", 0, 4, &ow, &err) == ST_OK);
	CHECK_EQ(st_txn_commit(t, r, &err), ST_OK);
	CHECK_EQ(st_txn_commit(t2, r, &err), ST_ECONFLICT);
	CHECK_CONTAINS(err.msg, "added rows this write read");
	REQUIRE(st_txn_begin(s, &t, &err) == ST_OK);
	REQUIRE(st_txn_begin(s, &t2, &err) == ST_OK);
	REQUIRE(stage(t, "readings", 0, 0, &ow, &err) == ST_OK);
	REQUIRE(stage(t2, "readings", 0, 4, &ow, &err) == ST_OK);
	CHECK_EQ(st_txn_commit(t, r, &err), ST_OK);
	CHECK_EQ(st_txn_commit(t2, r, &err), ST_ECONFLICT);
	CHECK_CONTAINS(err.msg, "removed a file this write read");
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, NULL, &sum), 0);

	/* metadata change x append: the append loses. */
	REQUIRE(st_txn_begin(s, &t, &err) == ST_OK);
	REQUIRE(stage(t, "readings", 50, 3, NULL, &err) == ST_OK);
	{
		const char *names[2] = {"id", "extra"};
		int64_t id[1] = {9};
		int32_t ex[1] = {1};
		struct st_vec v[2] = {{.type = ST_TYPE_INT64, .n = 1, .data = id},
				      {.type = ST_TYPE_INT32, .n = 1, .data = ex}};
		struct st_batch b = {2, names, v, 1};
		struct st_write_opts merge = {.merge_schema = true};
		REQUIRE(st_write(s, "readings", &b, 1, &merge, r, &err) == ST_OK);
	}
	CHECK_EQ(st_txn_commit(t, r, &err), ST_ECONFLICT);
	CHECK_CONTAINS(err.msg, "changed the table's metadata");

	/* The same app id: a concurrent retry of the same version is a no-op,
	 * a newer version after a concurrent older one conflicts. */
	struct st_write_opts a1 = {.app_id = "etl", .app_version = 1};
	struct st_write_opts a2 = {.app_id = "etl", .app_version = 2};
	REQUIRE(st_txn_begin(s, &t, &err) == ST_OK);
	REQUIRE(st_txn_begin(s, &t2, &err) == ST_OK);
	REQUIRE(stage(t, "readings", 60, 2, &a1, &err) == ST_OK);
	REQUIRE(stage(t2, "readings", 60, 2, &a2, &err) == ST_OK);
	REQUIRE(append(s, 60, 2, r, &err, &a1) == ST_OK);
	CHECK_EQ(st_txn_commit(t, r, &err), ST_OK);
	CHECK(r[0].noop);
	CHECK_EQ(st_txn_commit(t2, r, &err), ST_ECONFLICT);
	CHECK_CONTAINS(err.msg, "same app id");

	/* Multi-table: all or nothing. */
	uint64_t before_ws = 0;
	struct act_commit **h;
	uint32_t n;
	REQUIRE(st_history(s, "ws", 1, &h, &n, &err) == ST_OK);
	before_ws = h[0]->version;
	act_commit_free(h[0]);
	free(h);
	REQUIRE(st_txn_begin(s, &t, &err) == ST_OK);
	REQUIRE(stage(t, "ws", 70, 2, NULL, &err) == ST_OK);
	REQUIRE(stage(t, "readings", 70, 2, &ow, &err) == ST_OK);
	CHECK_EQ(stage(t, "ws", 1, 1, NULL, &err), ST_EINVAL);
	REQUIRE(append(s, 80, 1, r, &err, NULL) == ST_OK); /* readings moves on */
	CHECK_EQ(st_txn_commit(t, r, &err), ST_ECONFLICT);
	REQUIRE(st_history(s, "ws", 1, &h, &n, &err) == ST_OK);
	CHECK_EQ(h[0]->version, before_ws); /* ws unchanged too */
	act_commit_free(h[0]);
	free(h);
	REQUIRE(st_txn_begin(s, &t, &err) == ST_OK);
	REQUIRE(stage(t, "ws", 70, 2, NULL, &err) == ST_OK);
	REQUIRE(stage(t, "readings", 70, 2, NULL, &err) == ST_OK);
	REQUIRE(st_txn_commit(t, r, &err) == ST_OK);
	CHECK_EQ(r[0].version, before_ws + 1);
	CHECK(r[1].lsn == r[0].lsn + 1);
	st_store_close(s);
}

enum { GC_THREADS = 8, GC_COMMITS = 25 };

struct gc_arg {
	st_store *s;                         /* the store */
	int k;                               /* thread number */
	uint64_t versions[GC_COMMITS];       /* versions its commits got */
	int failed;                          /* a commit failed */
};

static void *gc_writer(void *p)
{
	struct gc_arg *a = p;
	struct st_err err;
	for (int i = 0; i < GC_COMMITS; i++) {
		struct st_commit_result r;
		if (append(a->s, (a->k * GC_COMMITS + i) * 4, 4, &r, &err, NULL) != ST_OK)
			a->failed++;
		a->versions[i] = r.version;
	}
	return NULL;
}

static void t_group_commit_concurrent_writers(void)
{
	st_store *s = open_with_table(new_dir());
	struct gc_arg a[GC_THREADS];
	pthread_t th[GC_THREADS];
	for (int k = 0; k < GC_THREADS; k++) {
		a[k] = (struct gc_arg){.s = s, .k = k};
		pthread_create(&th[k], NULL, gc_writer, &a[k]);
	}
	static bool seen[GC_THREADS * GC_COMMITS + 1];
	int dup = 0, failed = 0;
	for (int k = 0; k < GC_THREADS; k++) {
		pthread_join(th[k], NULL);
		failed += a[k].failed;
		for (int i = 0; i < GC_COMMITS; i++) {
			uint64_t v = a[k].versions[i];
			dup += v == 0 || v > GC_THREADS * GC_COMMITS || seen[v];
			if (v <= GC_THREADS * GC_COMMITS)
				seen[v] = true;
		}
	}
	CHECK_EQ(failed, 0);
	CHECK_EQ(dup, 0); /* every commit got its own version */
	int64_t sum, n = GC_THREADS * GC_COMMITS * 4;
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, NULL, &sum), n);
	CHECK_EQ(sum, n * (n - 1) / 2);
	st_store_close(s);
}

/* Groups mixing tables, multi-table commits and idempotent retries: each
 * committer's result is its own, and the heads a group advances together
 * stay consistent (the store reopens with its checksum chains intact). */
enum { MIX_THREADS = 6, MIX_ROUNDS = 20 };
static int64_t count_table(st_store *s, const char *table, struct st_at at);

struct mix_arg {
	st_store *s;                         /* the store */
	int k;                               /* thread number */
	int failed, noops;                   /* outcomes */
	uint64_t lsn_max;                    /* largest LSN it got */
};

static void *mix_writer(void *p)
{
	struct mix_arg *a = p;
	struct st_err err;
	for (int i = 0; i < MIX_ROUNDS; i++) {
		int64_t id[2] = {a->k * 1000 + 2 * i, a->k * 1000 + 2 * i + 1};
		const char *names[1] = {"id"};
		struct st_vec v = {.type = ST_TYPE_INT64, .n = 2, .data = id};
		struct st_batch b = {1, names, &v, 2};
		struct st_commit_result r[2];
		if (a->k % 2 == 0) { /* plain appends to one table */
			if (st_write(a->s, "readings", &b, 1, NULL, r, &err) != ST_OK)
				a->failed++;
			else if (r[0].lsn > a->lsn_max)
				a->lsn_max = r[0].lsn;
			continue;
		}
		/* Both tables at once, idempotent; then the same again: a no-op. */
		char app[16];
		snprintf(app, sizeof app, "w%d", a->k);
		struct st_write_opts o = {.app_id = app, .app_version = (uint64_t)i + 1};
		for (int again = 0; again < 2; again++) {
			st_txn *t = NULL;
			if (st_txn_begin(a->s, &t, &err) != ST_OK ||
			    st_txn_write(t, "readings", &b, 1, &o, &err) != ST_OK ||
			    st_txn_write(t, "other", &b, 1, &o, &err) != ST_OK) {
				st_txn_abort(t);
				a->failed++;
			} else if (st_txn_commit(t, r, &err) != ST_OK) {
				a->failed++;
			} else {
				a->noops += r[0].noop && r[1].noop;
				a->failed += r[0].noop != r[1].noop || r[0].noop != (again == 1);
				if (!r[0].noop && r[1].lsn != r[0].lsn + 1)
					a->failed++;
				if (r[1].lsn > a->lsn_max)
					a->lsn_max = r[1].lsn;
			}
		}
	}
	return NULL;
}

static void t_group_commit_mixed(void)
{
	const char *dir = new_dir();
	char path[128];
	memcpy(path, dir, sizeof path);
	st_store *s = open_with_table(path);
	struct st_err err;
	struct st_table_spec spec = {.name = "other", .cols = sensor_cols, .ncols = 3};
	REQUIRE(st_table_create(s, &spec, ST_CREATE_ERROR, NULL, &err) == ST_OK);
	struct mix_arg a[MIX_THREADS];
	pthread_t th[MIX_THREADS];
	for (int k = 0; k < MIX_THREADS; k++) {
		a[k] = (struct mix_arg){.s = s, .k = k};
		pthread_create(&th[k], NULL, mix_writer, &a[k]);
	}
	int failed = 0, noops = 0;
	uint64_t lsn_max = 0;
	for (int k = 0; k < MIX_THREADS; k++) {
		pthread_join(th[k], NULL);
		failed += a[k].failed;
		noops += a[k].noops;
		lsn_max = a[k].lsn_max > lsn_max ? a[k].lsn_max : lsn_max;
	}
	CHECK_EQ(failed, 0);
	CHECK_EQ(noops, MIX_THREADS / 2 * MIX_ROUNDS);
	CHECK_EQ(st_store_lsn(s), lsn_max);
	st_store_close(s);
	/* Reopening verifies every table's checksum chain against its head. */
	REQUIRE(st_store_open(path, &store_opts, &s, &err) == ST_OK);
	CHECK_EQ(st_store_lsn(s), lsn_max);
	CHECK_EQ(count_table(s, "readings", (struct st_at){0, 0}), MIX_THREADS * MIX_ROUNDS * 2);
	CHECK_EQ(count_table(s, "other", (struct st_at){0, 0}), MIX_THREADS / 2 * MIX_ROUNDS * 2);
	struct act_commit **h;
	uint32_t n;
	REQUIRE(st_history(s, "readings", 0, &h, &n, &err) == ST_OK);
	CHECK_EQ(n, MIX_THREADS * MIX_ROUNDS + 1); /* the create, then one per commit */
	int gaps = 0;
	for (uint32_t i = 0; i < n; i++)
		gaps += h[i]->version != n - 1 - i || (i > 0 && h[i]->lsn >= h[i - 1]->lsn);
	for (uint32_t i = 0; i < n; i++)
		act_commit_free(h[i]);
	free(h);
	CHECK_EQ(gaps, 0);
	struct st_verify_result vr;
	REQUIRE(st_verify(s, &vr, &err) == ST_OK);
	CHECK_EQ(vr.nproblems, 0);
	st_verify_result_fini(&vr);
	/* The next commit continues the LSN sequence. */
	struct st_commit_result r;
	REQUIRE(append(s, 50000, 1, &r, &err, NULL) == ST_OK);
	CHECK_EQ(r.lsn, lsn_max + 1);
	st_store_close(s);
}

/* LMDB's data file is zero-filled ahead of LMDB's last page (STORE.md §4):
 * never more than max(256 KiB, a quarter of the used size) beyond it, never
 * behind it, and the store reads back everything after a reopen. */
static void t_data_file_zero_filled_ahead(void)
{
	const char *dir = new_dir();
	char path[128], data[160];
	memcpy(path, dir, sizeof path);
	snprintf(data, sizeof data, "%s/store/data.mdb", path);
	st_store *s = open_with_table(path);
	struct st_err err;
	struct st_commit_result r;
	int bad = 0;
	for (int i = 0; i < 300; i++) {
		REQUIRE(append(s, i * 10, 10, &r, &err, NULL) == ST_OK);
		struct stat st;
		MDB_envinfo info;
		REQUIRE(stat(data, &st) == 0);
		REQUIRE(mdb_env_info(s->env, &info) == 0);
		uint64_t used = ((uint64_t)info.me_last_pgno + 1) * s->psize;
		/* The fill-ahead follows the used size: a quarter of it, at
		 * least STORE_PREALLOC_MIN (the whole margin of a small store). */
		uint64_t ahead = store_prealloc_ahead(used);
		bad += (uint64_t)st.st_size < used || (uint64_t)st.st_size > used + ahead;
		if (i == 0)
			CHECK((uint64_t)st.st_size >= used + ahead / 2);
		CHECK((uint64_t)st.st_size <= used + STORE_PREALLOC_MIN ||
		      (uint64_t)st.st_size <= used + used / 4);
	}
	CHECK_EQ(bad, 0);
	st_store_close(s);
	REQUIRE(st_store_open(path, &store_opts, &s, &err) == ST_OK);
	int64_t sum;
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, NULL, &sum), 3000);
	CHECK_EQ(sum, 2999 * 3000 / 2);
	st_store_close(s);
}

/* Stores of other formats are refused with ST_EVERSION and a message
 * that says so: formats 1-2 (named databases), 3 (development), 4 (no LSN
 * log, no hash chain: strata 0.4), newer. */
static void t_other_formats_refused(void)
{
	static const uint32_t formats[] = {2, 3, 4, 99};
	for (int k = 0; k < 4; k++) {
		const char *dir = new_dir();
		char path[160];
		snprintf(path, sizeof path, "%s", dir);
		mkdir(path, 0755);
		snprintf(path, sizeof path, "%s/store", dir);
		mkdir(path, 0755);
		MDB_env *env;
		MDB_txn *txn;
		MDB_dbi dbi;
		REQUIRE(mdb_env_create(&env) == 0);
		mdb_env_set_maxdbs(env, 4);
		REQUIRE(mdb_env_open(env, path, 0, 0644) == 0);
		REQUIRE(mdb_txn_begin(env, NULL, 0, &txn) == 0);
		if (formats[k] == 2) { /* format 2 kept a named database "meta" */
			REQUIRE(mdb_dbi_open(txn, "meta", MDB_CREATE, &dbi) == 0);
		} else {
			REQUIRE(mdb_dbi_open(txn, NULL, 0, &dbi) == 0);
			uint8_t kb[7] = {KEY_META, 'f', 'o', 'r', 'm', 'a', 't'}, v[4];
			st_put_le32(v, formats[k]);
			MDB_val key = {7, kb}, val = {4, v};
			REQUIRE(mdb_put(txn, dbi, &key, &val, 0) == 0);
		}
		REQUIRE(mdb_txn_commit(txn) == 0);
		mdb_env_close(env);
		st_store *s;
		struct st_err err;
		CHECK_EQ(st_store_open(dir, &store_opts, &s, &err), ST_EVERSION);
		CHECK_CONTAINS(err.msg, formats[k] == 99  ? "format 99"
					: formats[k] == 4 ? "has no LSN-ordered log and no hash chain"
							  : "development formats");
	}
}

static void t_restore(void)
{
	st_store *s = open_with_table(new_dir());
	struct st_err err;
	struct st_commit_result r, r2;
	int64_t sum;
	REQUIRE(append(s, 0, 10, &r, &err, NULL) == ST_OK);   /* v1: 10 rows */
	REQUIRE(append(s, 10, 10, &r2, &err, NULL) == ST_OK); /* v2: 20 rows */
	struct st_write_opts ow = {.mode = ST_WRITE_OVERWRITE};
	REQUIRE(append(s, 500, 3, &r, &err, &ow) == ST_OK);   /* v3: 3 rows */
	struct st_commit_result rr;
	REQUIRE(st_table_restore(s, "readings", (struct st_at){ST_AT_VERSION, 2}, &rr, &err) == ST_OK);
	CHECK_EQ(rr.version, 4);
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, NULL, &sum), 20);
	CHECK_EQ(sum, 19 * 20 / 2);
	CHECK_EQ(scan_count(s, (struct st_at){ST_AT_VERSION, 3}, NULL, &sum), 3);
	/* Writes go on after a restore; restore by time goes back again. */
	REQUIRE(append(s, 20, 5, &r, &err, NULL) == ST_OK);
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, NULL, &sum), 25);
	REQUIRE(st_table_restore(s, "readings", (struct st_at){ST_AT_TIME, r2.time_us}, &rr, &err) == ST_OK);
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, NULL, &sum), 20);
	struct act_commit **h;
	uint32_t n;
	REQUIRE(st_history(s, "readings", 1, &h, &n, &err) == ST_OK);
	CHECK(n == 1 && !strcmp(h[0]->info.operation, "RESTORE"));
	act_commit_free(h[0]);
	free(h);
	CHECK_EQ(st_table_restore(s, "readings", (struct st_at){ST_AT_VERSION, 99}, &rr, &err), ST_ERANGE);
	CHECK_EQ(st_table_restore(s, "nosuch", (struct st_at){ST_AT_VERSION, 0}, &rr, &err), ST_ENOTFOUND);
	st_store_close(s);
}

static void t_vacuum(void)
{
	const char *dir = new_dir();
	st_store *s = open_with_table(dir);
	struct st_err err;
	struct st_commit_result r;
	int64_t sum;
	struct st_write_opts ow = {.mode = ST_WRITE_OVERWRITE};
	REQUIRE(append(s, 0, 10, &r, &err, NULL) == ST_OK);  /* v1 */
	REQUIRE(append(s, 10, 10, &r, &err, NULL) == ST_OK); /* v2 */
	REQUIRE(append(s, 100, 5, &r, &err, &ow) == ST_OK);  /* v3 removes v1, v2 files */
	struct st_vacuum_result vr;
	/* Default retention (7 days): nothing is old enough. */
	REQUIRE(st_vacuum(s, "readings", NULL, &vr, &err) == ST_OK);
	CHECK_EQ(vr.files, 0);
	/* Below the retention: refused unless forced. */
	struct st_vacuum_opts now = {.retain_us = 1};
	CHECK_EQ(st_vacuum(s, "readings", &now, &vr, &err), ST_EINVAL);
	CHECK_CONTAINS(err.msg, "strata vacuum --force");
	/* An open scan of version 2 pins its files. */
	st_scan *sc;
	REQUIRE(st_scan_open(s, "readings", (struct st_at){ST_AT_VERSION, 2}, NULL, 0, NULL, &sc, &err) == ST_OK);
	now.force = true;
	now.dry_run = true;
	REQUIRE(st_vacuum(s, "readings", &now, &vr, &err) == ST_OK);
	CHECK_EQ(vr.files, 0);
	CHECK_EQ(vr.pinned, 2);
	st_vacuum_result_fini(&vr);
	int64_t rows = 0;
	const struct st_scan_batch *b;
	while (st_scan_next(sc, &b, &err) == ST_OK && b)
		rows += b->nsel;
	CHECK_EQ(rows, 20);
	st_scan_close(sc);
	/* Dry run lists, changes nothing. */
	REQUIRE(st_vacuum(s, "readings", &now, &vr, &err) == ST_OK);
	CHECK_EQ(vr.files, 2);
	CHECK_EQ(vr.npaths, 2);
	st_vacuum_result_fini(&vr);
	CHECK_EQ(scan_count(s, (struct st_at){ST_AT_VERSION, 2}, NULL, &sum), 20);
	/* For real: the files go, version 2 becomes a clear error, head reads. */
	now.dry_run = false;
	REQUIRE(st_vacuum(s, "readings", &now, &vr, &err) == ST_OK);
	CHECK_EQ(vr.files, 2);
	CHECK_EQ(vr.oldest_version, 3);
	CHECK_EQ(st_scan_open(s, "readings", (struct st_at){ST_AT_VERSION, 2}, NULL, 0, NULL, &sc, &err),
		 ST_ERANGE);
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, NULL, &sum), 5);
	/* In file mode the two removed segments left the disk; the live one stayed. */
	CHECK_EQ(count_segments(dir), store_opts.inline_max == 1 ? 1 : 0);
	int64_t d;
	CHECK(st_parse_duration("7d", &d) == ST_OK && d == 7 * 86400000000LL);
	CHECK(st_parse_duration("90m", &d) == ST_OK && d == 5400000000LL);
	CHECK_EQ(st_parse_duration("7 days", &d), ST_EINVAL);
	st_store_close(s);
}

static void t_alter(void)
{
	st_store *s = open_with_table(new_dir());
	struct st_err err;
	struct st_commit_result r;
	int64_t sum;
	REQUIRE(append(s, 0, 10, &r, &err, NULL) == ST_OK); /* v1, ids 0..9 */
	struct st_alter add = {ST_ALTER_ADD_COLUMN, "site", NULL, ST_TYPE_STRING};
	REQUIRE(st_table_alter(s, "readings", &add, &r, &err) == ST_OK);
	CHECK_EQ(r.version, 2);
	CHECK_EQ(st_table_alter(s, "readings", &add, &r, &err), ST_EEXIST);
	/* Rename: old files still read under the new name (same field id). */
	struct st_alter ren = {ST_ALTER_RENAME_COLUMN, "value", "reading", 0};
	REQUIRE(st_table_alter(s, "readings", &ren, &r, &err) == ST_OK);
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, "reading >= 1.0", &sum), 6);
	st_scan *sc;
	CHECK_EQ(st_scan_open(s, "readings", (struct st_at){0, 0}, NULL, 0, "value > 1", &sc, &err), ST_ETYPE);
	/* Version 1 still has the old name. */
	CHECK_EQ(scan_count(s, (struct st_at){ST_AT_VERSION, 1}, "value >= 1.0", &sum), 6);
	/* Drop: metadata only. */
	struct st_alter drop = {ST_ALTER_DROP_COLUMN, "sensor", NULL, 0};
	REQUIRE(st_table_alter(s, "readings", &drop, &r, &err) == ST_OK);
	struct act_metadata *m;
	REQUIRE(st_table_describe(s, "readings", -1, &m, &err) == ST_OK);
	CHECK_EQ(m->schema.nfields, 3);
	CHECK(!strcmp(m->schema.fields[1].name, "reading") && !strcmp(m->schema.fields[2].name, "site"));
	act_metadata_free(m);
	/* NOT NULL: refused while NULLs exist (site is NULL everywhere). */
	struct st_alter nn = {ST_ALTER_SET_NOT_NULL, "site", NULL, 0};
	CHECK_EQ(st_table_alter(s, "readings", &nn, &r, &err), ST_ESCHEMA);
	CHECK_CONTAINS(err.msg, "holds NULLs");
	struct st_alter nn2 = {ST_ALTER_SET_NOT_NULL, "reading", NULL, 0};
	REQUIRE(st_table_alter(s, "readings", &nn2, &r, &err) == ST_OK);
	/* CHECK constraints: existing rows first, then every write. */
	struct st_alter bad = {ST_ALTER_ADD_CONSTRAINT, "small", "id < 5", 0};
	CHECK_EQ(st_table_alter(s, "readings", &bad, &r, &err), ST_ESCHEMA);
	CHECK_CONTAINS(err.msg, "existing rows violate constraint 'small'");
	struct st_alter ok = {ST_ALTER_ADD_CONSTRAINT, "nonneg", "id >= 0", 0};
	REQUIRE(st_table_alter(s, "readings", &ok, &r, &err) == ST_OK);
	struct st_alter syn = {ST_ALTER_ADD_CONSTRAINT, "broken", "id >>= 0", 0};
	CHECK_EQ(st_table_alter(s, "readings", &syn, &r, &err), ST_ESYNTAX);
	{
		const char *names[2] = {"id", "reading"};
		int64_t id[3] = {1, -7, 2};
		double v[3] = {1, 2, 3};
		struct st_vec vv[2] = {{.type = ST_TYPE_INT64, .n = 3, .data = id},
				       {.type = ST_TYPE_FLOAT64, .n = 3, .data = v}};
		struct st_batch b = {2, names, vv, 3};
		CHECK_EQ(st_write(s, "readings", &b, 1, NULL, &r, &err), ST_ESCHEMA);
		CHECK_CONTAINS(err.msg, "row 1 of the write violates constraint 'nonneg'");
		id[1] = 7;
		REQUIRE(st_write(s, "readings", &b, 1, NULL, &r, &err) == ST_OK);
	}
	struct st_alter dc = {ST_ALTER_DROP_CONSTRAINT, "nonneg", NULL, 0};
	REQUIRE(st_table_alter(s, "readings", &dc, &r, &err) == ST_OK);
	CHECK_EQ(st_table_alter(s, "readings", &dc, &r, &err), ST_ENOTFOUND);
	/* Properties: validated; isolation takes effect. */
	struct st_alter p1 = {ST_ALTER_SET_PROPERTY, "file_retention", "2d", 0};
	REQUIRE(st_table_alter(s, "readings", &p1, &r, &err) == ST_OK);
	struct st_alter p2 = {ST_ALTER_SET_PROPERTY, "file_retention", "two days", 0};
	CHECK_EQ(st_table_alter(s, "readings", &p2, &r, &err), ST_EINVAL);
	struct st_alter p3 = {ST_ALTER_UNSET_PROPERTY, "file_retention", NULL, 0};
	REQUIRE(st_table_alter(s, "readings", &p3, &r, &err) == ST_OK);
	CHECK_EQ(st_table_alter(s, "readings", &p3, &r, &err), ST_ENOTFOUND);
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, NULL, &sum), 13);
	st_store_close(s);
}

static void t_map_full_is_clean(void)
{
	const char *dir = new_dir();
	struct st_store_opts small = {.map_size = 1 << 20};
	st_store *s;
	struct st_err err;
	REQUIRE(st_store_open(dir, &small, &s, &err) == ST_OK);
	struct st_table_spec spec = {.name = "readings", .cols = sensor_cols, .ncols = 3};
	REQUIRE(st_table_create(s, &spec, ST_CREATE_ERROR, NULL, &err) == ST_OK);
	struct st_commit_result r;
	int rc = ST_OK, commits = 0;
	while (commits < 10000 && (rc = append(s, commits * 100, 100, &r, &err, NULL)) == ST_OK)
		commits++;
	CHECK_EQ(rc, ST_ETOOBIG);
	CHECK_CONTAINS(err.msg, "larger map_size");
	int64_t sum;
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, NULL, &sum), commits * 100);
	st_store_close(s);
	/* Reopened with a larger map, the store goes on where it was. */
	struct st_store_opts big = {.map_size = 64 << 20};
	REQUIRE(st_store_open(dir, &big, &s, &err) == ST_OK);
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, NULL, &sum), commits * 100);
	REQUIRE(append(s, 10000000, 100, &r, &err, NULL) == ST_OK);
	CHECK_EQ(r.version, (uint64_t)commits + 1);
	st_store_close(s);
}

static void t_replace_where(void)
{
	st_store *s = open_with_table(new_dir());
	struct st_err err;
	struct st_commit_result r;
	int64_t sum;
	REQUIRE(append(s, 0, 50, &r, &err, NULL) == ST_OK);  /* v1: ids 0..49 */
	REQUIRE(append(s, 50, 50, &r, &err, NULL) == ST_OK); /* v2: ids 50..99 */
	REQUIRE(append(s, 200, 10, &r, &err, NULL) == ST_OK); /* v3: ids 200..209 */
	/* Replace ids 40..59 (spread over two files) with 5 new rows. */
	struct st_write_opts rw = {.replace_where = "id >= 40 AND id < 60"};
	REQUIRE(append(s, 40, 5, &r, &err, &rw) == ST_OK);
	CHECK_EQ(r.version, 4);
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, NULL, &sum), 110 - 20 + 5);
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, "id >= 40 AND id < 60", &sum), 5);
	CHECK_EQ(sum, 40 + 41 + 42 + 43 + 44);
	CHECK_EQ(scan_count(s, (struct st_at){ST_AT_VERSION, 3}, NULL, &sum), 110);
	struct act_commit **h;
	uint32_t n;
	REQUIRE(st_history(s, "readings", 1, &h, &n, &err) == ST_OK);
	CHECK_EQ(h[0]->info.rows_removed, 20);
	CHECK_EQ(h[0]->nremove, 2); /* the two files that held ids 40..59 */
	CHECK_EQ(h[0]->nadd, 3);    /* their rewrites and the new rows */
	act_commit_free(h[0]);
	free(h);
	/* New rows outside the predicate are refused: nothing changes. */
	CHECK_EQ(append(s, 70, 5, &r, &err, &rw), ST_ESCHEMA);
	CHECK_CONTAINS(err.msg, "row 0 of the write does not match the replace-where predicate");
	struct st_write_opts bad = {.replace_where = "idd > 1"};
	CHECK_EQ(append(s, 0, 1, &r, &err, &bad), ST_ETYPE);
	struct st_write_opts ow = {.mode = ST_WRITE_OVERWRITE, .replace_where = "id > 1"};
	CHECK_EQ(append(s, 2, 1, &r, &err, &ow), ST_EINVAL);
	/* A whole file inside the predicate is removed without a rewrite. */
	struct st_write_opts all = {.replace_where = "id >= 200"};
	REQUIRE(append(s, 300, 2, &r, &err, &all) == ST_OK);
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, "id >= 200", &sum), 2);
	REQUIRE(st_history(s, "readings", 1, &h, &n, &err) == ST_OK);
	CHECK_EQ(h[0]->nadd, 1);
	act_commit_free(h[0]);
	free(h);
	/* Concurrency: an append inside the predicate conflicts, outside not. */
	st_txn *t;
	struct st_write_opts rw2 = {.replace_where = "id >= 1000 AND id < 2000"};
	REQUIRE(st_txn_begin(s, &t, &err) == ST_OK);
	REQUIRE(stage(t, "readings", 1000, 3, &rw2, &err) == ST_OK);
	REQUIRE(append(s, 5000, 3, &r, &err, NULL) == ST_OK);
	CHECK_EQ(st_txn_commit(t, &r, &err), ST_OK);
	REQUIRE(st_txn_begin(s, &t, &err) == ST_OK);
	REQUIRE(stage(t, "readings", 1000, 3, &rw2, &err) == ST_OK);
	REQUIRE(append(s, 1500, 3, &r, &err, NULL) == ST_OK);
	CHECK_EQ(st_txn_commit(t, &r, &err), ST_ECONFLICT);
	CHECK_CONTAINS(err.msg, "match this write's replace-where predicate");
	st_store_close(s);
}

static int64_t count_table(st_store *s, const char *table, struct st_at at)
{
	st_scan *sc;
	struct st_err err;
	const struct st_scan_batch *b;
	int64_t rows = 0;
	if (st_scan_open(s, table, at, NULL, 0, NULL, &sc, &err) != ST_OK)
		return -1;
	while (st_scan_next(sc, &b, &err) == ST_OK && b)
		rows += b->nsel;
	st_scan_close(sc);
	return rows;
}

static void t_log_retention(void)
{
	st_store *s = open_with_table(new_dir());
	struct st_err err;
	struct st_commit_result r;
	int64_t sum;
	REQUIRE(append(s, 0, 10, &r, &err, NULL) == ST_OK);  /* v1 */
	REQUIRE(append(s, 10, 10, &r, &err, NULL) == ST_OK); /* v2 */
	struct st_alter keep0 = {ST_ALTER_SET_PROPERTY, "log_retention", "0s", 0};
	REQUIRE(st_table_alter(s, "readings", &keep0, &r, &err) == ST_OK); /* v3, metadata */
	REQUIRE(append(s, 20, 10, &r, &err, NULL) == ST_OK); /* v4 */
	struct st_vacuum_result vr;
	struct st_vacuum_opts dry = {.dry_run = true};
	REQUIRE(st_vacuum(s, "readings", &dry, &vr, &err) == ST_OK);
	CHECK_EQ(vr.commits_pruned, 3);
	st_vacuum_result_fini(&vr);
	struct act_commit **h;
	uint32_t n;
	REQUIRE(st_history(s, "readings", 0, &h, &n, &err) == ST_OK);
	CHECK_EQ(n, 5); /* a dry run prunes nothing */
	for (uint32_t i = 0; i < n; i++)
		act_commit_free(h[i]);
	free(h);
	REQUIRE(st_vacuum(s, "readings", NULL, &vr, &err) == ST_OK);
	CHECK_EQ(vr.commits_pruned, 3); /* v0..v2: v3 carries the metadata */
	CHECK_EQ(vr.oldest_version, 3);
	REQUIRE(st_history(s, "readings", 0, &h, &n, &err) == ST_OK);
	CHECK_EQ(n, 2);
	CHECK(n == 2 && h[0]->version == 4 && h[1]->version == 3);
	for (uint32_t i = 0; i < n; i++)
		act_commit_free(h[i]);
	free(h);
	st_scan *sc;
	CHECK_EQ(st_scan_open(s, "readings", (struct st_at){ST_AT_VERSION, 2}, NULL, 0, NULL, &sc, &err),
		 ST_ERANGE);
	CHECK_EQ(scan_count(s, (struct st_at){ST_AT_VERSION, 3}, NULL, &sum), 20);
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, NULL, &sum), 30);
	REQUIRE(append(s, 30, 10, &r, &err, NULL) == ST_OK);
	CHECK_EQ(r.version, 5); /* numbers go on */
	st_store_close(s);
	/* The pruned log still opens: its chain is verified from the oldest kept. */
	REQUIRE(st_store_open(last_dir, &store_opts, &s, &err) == ST_OK);
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, NULL, &sum), 40);
	st_store_close(s);
}

static void t_merge_schema_widening(void)
{
	st_store *s;
	struct st_err err;
	REQUIRE(st_store_open(new_dir(), &store_opts, &s, &err) == ST_OK);
	struct st_column_def cols[3] = {{"n", ST_TYPE_INT32, true}, {"d", ST_TYPE_DATE, true},
					{"x", ST_TYPE_INT64, true}};
	struct st_table_spec spec = {.name = "w", .cols = cols, .ncols = 3};
	REQUIRE(st_table_create(s, &spec, ST_CREATE_ERROR, NULL, &err) == ST_OK);
	int32_t n32[3] = {-5, 7, 2000000000};
	int32_t d32[3] = {0, 1, 20000};
	int64_t x64[3] = {1, 3, 5};
	const char *names[3] = {"n", "d", "x"};
	struct st_vec v1[3] = {{.type = ST_TYPE_INT32, .n = 3, .data = n32},
			       {.type = ST_TYPE_DATE, .n = 3, .data = d32},
			       {.type = ST_TYPE_INT64, .n = 3, .data = x64}};
	struct st_batch b1 = {3, names, v1, 3};
	struct st_commit_result r;
	REQUIRE(st_write(s, "w", &b1, 1, NULL, &r, &err) == ST_OK);
	/* Without merge_schema a wider type is refused, with it the column widens. */
	int64_t n64[2] = {5000000000LL, -1};
	int64_t ts[2] = {86400000000LL * 20000 + 1, 0};
	double xf[2] = {2.5, 4.5};
	struct st_vec v2[3] = {{.type = ST_TYPE_INT64, .n = 2, .data = n64},
			       {.type = ST_TYPE_TIMESTAMP, .n = 2, .data = ts},
			       {.type = ST_TYPE_FLOAT64, .n = 2, .data = xf}};
	struct st_batch b2 = {3, names, v2, 2};
	CHECK_EQ(st_write(s, "w", &b2, 1, NULL, &r, &err), ST_ESCHEMA);
	CHECK_CONTAINS(err.msg, "write with merge_schema to widen");
	struct st_write_opts merge = {.merge_schema = true};
	REQUIRE(st_write(s, "w", &b2, 1, &merge, &r, &err) == ST_OK);
	struct act_metadata *m;
	REQUIRE(st_table_describe(s, "w", -1, &m, &err) == ST_OK);
	CHECK_EQ(m->schema.fields[0].type, ST_TYPE_INT64);
	CHECK_EQ(m->schema.fields[1].type, ST_TYPE_TIMESTAMP);
	CHECK_EQ(m->schema.fields[2].type, ST_TYPE_FLOAT64);
	act_metadata_free(m);
	/* Narrowing is never allowed. */
	struct st_batch b3 = {3, names, v1, 3};
	CHECK_EQ(st_write(s, "w", &b3, 1, &merge, &r, &err), ST_ESCHEMA);
	/* Old segments read in the new types, and their statistics prune right. */
	st_scan *sc;
	const char *cn[3] = {"n", "d", "x"};
	REQUIRE(st_scan_open(s, "w", (struct st_at){0, 0}, cn, 3, "n >= 7 AND x > 2", &sc, &err) == ST_OK);
	const struct st_scan_batch *bb;
	int64_t rows = 0, nsum = 0, dsum = 0;
	double xsum = 0;
	while (st_scan_next(sc, &bb, &err) == ST_OK && bb) {
		CHECK_EQ(bb->cols[0].type, ST_TYPE_INT64);
		for (uint32_t i = 0; i < bb->nsel; i++) {
			uint32_t k = bb->sel ? bb->sel[i] : i;
			nsum += ((const int64_t *)bb->cols[0].data)[k];
			dsum += ((const int64_t *)bb->cols[1].data)[k];
			xsum += ((const double *)bb->cols[2].data)[k];
			rows++;
		}
	}
	st_scan_close(sc);
	CHECK_EQ(rows, 3); /* 7 (x 3), 2000000000 (x 5), 5000000000 (x 2.5) */
	CHECK_EQ(nsum, 7 + 2000000000LL + 5000000000LL);
	CHECK_EQ(dsum, 86400000000LL * 1 + 86400000000LL * 20000 + 86400000000LL * 20000 + 1);
	CHECK(xsum == 3 + 5 + 2.5);
	/* Replace-where over a widened column rewrites the old file correctly. */
	int64_t nn[1] = {2000000000};
	int64_t tt[1] = {0};
	double xx[1] = {9};
	struct st_vec v4[3] = {{.type = ST_TYPE_INT64, .n = 1, .data = nn},
			       {.type = ST_TYPE_TIMESTAMP, .n = 1, .data = tt},
			       {.type = ST_TYPE_FLOAT64, .n = 1, .data = xx}};
	struct st_batch b4 = {3, names, v4, 1};
	struct st_write_opts rw = {.replace_where = "n = 2000000000"};
	REQUIRE(st_write(s, "w", &b4, 1, &rw, &r, &err) == ST_OK);
	REQUIRE(st_scan_open(s, "w", (struct st_at){0, 0}, cn, 3, "n = 2000000000", &sc, &err) == ST_OK);
	rows = 0;
	xsum = 0;
	while (st_scan_next(sc, &bb, &err) == ST_OK && bb)
		for (uint32_t i = 0; i < bb->nsel; i++) {
			xsum += ((const double *)bb->cols[2].data)[bb->sel ? bb->sel[i] : i];
			rows++;
		}
	st_scan_close(sc);
	CHECK_EQ(rows, 1);
	CHECK(xsum == 9);
	st_store_close(s);
}

static void t_compaction(void)
{
	const char *dir = new_dir();
	st_store *s = open_with_table(dir);
	struct st_err err;
	struct st_commit_result r;
	int64_t sum, before;
	for (int i = 0; i < 5; i++)
		REQUIRE(append(s, i * 10, 10, &r, &err, NULL) == ST_OK); /* v1..v5 */
	before = scan_count(s, (struct st_at){0, 0}, NULL, &sum);
	/* Staged before the compaction: an append and an overwrite. */
	st_txn *ta, *to;
	struct st_write_opts ow = {.mode = ST_WRITE_OVERWRITE};
	REQUIRE(st_txn_begin(s, &ta, &err) == ST_OK);
	REQUIRE(stage(ta, "readings", 100, 2, NULL, &err) == ST_OK);
	REQUIRE(st_txn_begin(s, &to, &err) == ST_OK);
	REQUIRE(stage(to, "readings", 200, 2, &ow, &err) == ST_OK);
	REQUIRE(st_table_compact(s, "readings", &r, &err) == ST_OK);
	CHECK(!r.noop);
	CHECK_EQ(r.version, 6);
	int64_t sum2;
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, NULL, &sum2), before);
	CHECK_EQ(sum2, sum);
	CHECK_EQ(count_segments(dir), 1); /* inline segments moved into one file */
	CHECK_EQ(scan_count(s, (struct st_at){ST_AT_VERSION, 3}, NULL, &sum2), 30);
	struct act_commit **h;
	uint32_t n;
	REQUIRE(st_history(s, "readings", 1, &h, &n, &err) == ST_OK);
	CHECK(!strcmp(h[0]->info.operation, "COMPACT"));
	CHECK(h[0]->nadd == 1 && !h[0]->adds[0].data_change && !h[0]->removes[0].data_change);
	CHECK_EQ(h[0]->info.rows_added, 0);
	act_commit_free(h[0]);
	free(h);
	/* Compaction never conflicts with an append; an overwrite that read
	 * the compacted files must retry. */
	CHECK_EQ(st_txn_commit(ta, &r, &err), ST_OK);
	CHECK_EQ(st_txn_commit(to, &r, &err), ST_ECONFLICT);
	CHECK_CONTAINS(err.msg, "removed a file this write read");
	/* Two files now (the compacted one and the append): compact again; then
	 * one file is already compact. */
	REQUIRE(st_table_compact(s, "readings", &r, &err) == ST_OK);
	CHECK(!r.noop);
	REQUIRE(st_table_compact(s, "readings", &r, &err) == ST_OK);
	CHECK(r.noop);
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, NULL, &sum2), before + 2);
	st_store_close(s);
}

static void t_overwrite_schema(void)
{
	st_store *s = open_with_table(new_dir());
	struct st_err err;
	struct st_commit_result r;
	int64_t sum;
	REQUIRE(append(s, 0, 10, &r, &err, NULL) == ST_OK);
	const char *names[2] = {"id", "temp"};
	int64_t id[2] = {7, 8};
	int32_t temp[2] = {20, 21};
	struct st_vec v[2] = {{.type = ST_TYPE_INT64, .n = 2, .data = id},
			      {.type = ST_TYPE_INT32, .n = 2, .data = temp}};
	struct st_batch b = {2, names, v, 2};
	struct st_write_opts bad = {.overwrite_schema = true};
	CHECK_EQ(st_write(s, "readings", &b, 1, &bad, &r, &err), ST_EINVAL);
	CHECK_CONTAINS(err.msg, "only with a full overwrite");
	struct st_write_opts ow = {.mode = ST_WRITE_OVERWRITE, .overwrite_schema = true};
	REQUIRE(st_write(s, "readings", &b, 1, &ow, &r, &err) == ST_OK);
	struct act_metadata *m;
	REQUIRE(st_table_describe(s, "readings", -1, &m, &err) == ST_OK);
	CHECK_EQ(m->schema.nfields, 2);
	CHECK(m->schema.fields[0].id == 1 && !m->schema.fields[0].nullable); /* kept */
	CHECK(m->schema.fields[1].id == 4 && m->schema.fields[1].type == ST_TYPE_INT32);
	act_metadata_free(m);
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, "temp > 20", &sum), 1);
	CHECK_EQ(sum, 8);
	REQUIRE(st_table_describe(s, "readings", 1, &m, &err) == ST_OK);
	CHECK_EQ(m->schema.nfields, 3); /* history keeps the old schema */
	act_metadata_free(m);
	CHECK_EQ(scan_count(s, (struct st_at){ST_AT_VERSION, 1}, "sensor = 's1'", &sum), 3);
	st_store_close(s);
}

static int inject; /* 0 none, EIO: fsync fails, ENOSPC: pwrite fails */

static int failing_fsync(int fd)
{
	if (inject == EIO) {
		errno = EIO;
		return -1;
	}
	return fsync(fd);
}

static ssize_t failing_pwrite(int fd, const void *b, size_t n, off_t off)
{
	if (inject == ENOSPC) {
		errno = ENOSPC;
		return -1;
	}
	return pwrite(fd, b, n, off);
}

static void t_io_failures(void)
{
	const char *dir = new_dir();
	static struct st_io io; /* outlives the test: a store left open by a failed REQUIRE points here */
	io = st_io_posix;
	io.fsync = failing_fsync;
	io.pwrite = failing_pwrite;
	struct st_store_opts o = {.inline_max = 1, .io = &io};
	st_store *s;
	struct st_err err;
	TEST_SAVE(inject); /* no injection after this test, however it ends */
	REQUIRE(st_store_open(dir, &o, &s, &err) == ST_OK);
	struct st_table_spec spec = {.name = "readings", .cols = sensor_cols, .ncols = 3};
	REQUIRE(st_table_create(s, &spec, ST_CREATE_ERROR, NULL, &err) == ST_OK);
	struct st_commit_result r;
	REQUIRE(append(s, 0, 10, &r, &err, NULL) == ST_OK);
	/* A full disk: a clear error, nothing written, the store goes on. */
	inject = ENOSPC;
	CHECK_EQ(append(s, 10, 10, &r, &err, NULL), ENOSPC);
	inject = 0;
	REQUIRE(append(s, 10, 10, &r, &err, NULL) == ST_OK);
	CHECK_EQ(r.version, 2);
	/* A failed fsync: the store refuses writes until reopened. */
	inject = EIO;
	CHECK_EQ(append(s, 20, 10, &r, &err, NULL), ST_EFAILED);
	CHECK_CONTAINS(err.msg, "refuses writes until it is reopened");
	inject = 0;
	CHECK_EQ(append(s, 20, 10, &r, &err, NULL), ST_EFAILED);
	struct st_alter a = {ST_ALTER_SET_PROPERTY, "k", "v", 0};
	CHECK_EQ(st_table_alter(s, "readings", &a, &r, &err), ST_EFAILED);
	int64_t sum;
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, NULL, &sum), 20); /* reads still work */
	st_store_close(s);
	CHECK_EQ(count_segments(dir), 2); /* no leftover of the failed writes */
	REQUIRE(st_store_open(dir, &o, &s, &err) == ST_OK);
	REQUIRE(append(s, 20, 10, &r, &err, NULL) == ST_OK);
	CHECK_EQ(r.version, 3);
	st_store_close(s);
}

static int stage_and_commit_helper(st_store *s)
{
	st_txn *t;
	struct st_err err;
	struct st_commit_result r[2];
	if (st_txn_begin(s, &t, &err) != ST_OK)
		return -1;
	if (stage(t, "readings", 100, 3, NULL, &err) != ST_OK || stage(t, "other", 100, 2, NULL, &err) != ST_OK) {
		st_txn_abort(t);
		return -1;
	}
	return st_txn_commit(t, r, &err);
}

static void t_snapshot_across_tables_at_lsn(void)
{
	st_store *s = open_with_table(new_dir());
	struct st_err err;
	struct st_table_spec spec = {.name = "other", .cols = sensor_cols, .ncols = 3};
	REQUIRE(st_table_create(s, &spec, ST_CREATE_ERROR, NULL, &err) == ST_OK);
	st_txn *t;
	struct st_commit_result r[2];
	REQUIRE(st_txn_begin(s, &t, &err) == ST_OK);
	REQUIRE(stage(t, "readings", 0, 5, NULL, &err) == ST_OK);
	REQUIRE(stage(t, "other", 0, 7, NULL, &err) == ST_OK);
	REQUIRE(st_txn_commit(t, r, &err) == ST_OK);
	uint64_t lsn = st_store_lsn(s);
	CHECK_EQ(lsn, r[1].lsn);
	/* Later commits to both tables are invisible at that LSN. */
	REQUIRE(stage_and_commit_helper(s) == ST_OK);
	struct st_at at = {ST_AT_LSN, (int64_t)lsn};
	CHECK_EQ(count_table(s, "readings", at), 5);
	CHECK_EQ(count_table(s, "other", at), 7);
	CHECK_EQ(count_table(s, "readings", (struct st_at){0, 0}), 8);
	CHECK_EQ(count_table(s, "other", (struct st_at){0, 0}), 9);
	/* Before the table existed: a clear error. */
	st_scan *sc;
	CHECK_EQ(st_scan_open(s, "other", (struct st_at){ST_AT_LSN, 1}, NULL, 0, NULL, &sc, &err),
		 ST_ERANGE);
	st_store_close(s);
}

/* The same checks with every segment in a file instead of inline. */
static void t_segment_files(void)
{
	TEST_SET(store_opts.inline_max, 1); /* restored however the test ends */
	t_create_append_time_travel();
	t_overwrite_keeps_old_versions();
	t_schema_enforcement_writes_nothing();
	t_restore();
	t_vacuum();
	t_replace_where();
	t_merge_schema_widening();
}

/* An open scan reads its inline files even after a later commit removed
 * them (their records moved to the removed range of the files index), and
 * old versions see exactly their files after many removals. */
static void t_scan_survives_removal(void)
{
	st_store *s = open_with_table(new_dir());
	struct st_err err;
	struct st_commit_result r;
	int64_t sum;
	REQUIRE(append(s, 0, 5, &r, &err, NULL) == ST_OK);  /* v1 */
	REQUIRE(append(s, 5, 5, &r, &err, NULL) == ST_OK);  /* v2 */
	st_scan *sc;
	const char *cols[1] = {"id"};
	REQUIRE(st_scan_open(s, "readings", (struct st_at){0, 0}, cols, 1, NULL, &sc, &err) == ST_OK);
	struct st_write_opts ow = {.mode = ST_WRITE_OVERWRITE};
	for (int i = 0; i < 20; i++) /* v3..v22: each removes the previous files */
		REQUIRE(append(s, 100 * (i + 1), 3, &r, &err, &ow) == ST_OK);
	const struct st_scan_batch *b;
	int64_t rows = 0, got = 0;
	int rc;
	while ((rc = st_scan_next(sc, &b, &err)) == ST_OK && b) {
		const int64_t *id = b->cols[0].data;
		for (uint32_t i = 0; i < b->nsel; i++)
			got += id[b->sel ? b->sel[i] : i];
		rows += b->nsel;
	}
	CHECK_EQ(rc, ST_OK);
	CHECK_EQ(rows, 10);
	CHECK_EQ(got, 45);
	st_scan_close(sc);
	CHECK_EQ(scan_count(s, (struct st_at){ST_AT_VERSION, 1}, NULL, &sum), 5);
	CHECK_EQ(scan_count(s, (struct st_at){ST_AT_VERSION, 2}, NULL, &sum), 10);
	CHECK_EQ(sum, 45);
	for (int v = 3; v <= 22; v++) {
		CHECK_EQ(scan_count(s, (struct st_at){ST_AT_VERSION, v}, NULL, &sum), 3);
		CHECK_EQ(sum, 3 * 100 * (v - 2) + 3);
	}
	st_store_close(s);
}

/* Streaming loads: batches stream into one segment and commit once;
 * errors number rows from the start of the load; abort leaves nothing. */
static void t_streaming_load(void)
{
	const char *dir = new_dir();
	st_store *s = open_with_table(dir);
	struct st_err err;
	struct st_commit_result r;
	int64_t sum;
	enum { N = 5000 };
	static int64_t id[N];
	static double val[N];
	const char *names[2] = {"id", "value"};
	struct st_vec cols[2] = {{.type = ST_TYPE_INT64, .n = N, .data = id},
				 {.type = ST_TYPE_FLOAT64, .n = N, .data = val}};
	struct st_batch b = {2, names, cols, N};
	st_load *l;
	REQUIRE(st_load_begin(s, "readings", &b, NULL, &l, &err) == ST_OK);
	for (int k = 0; k < 3; k++) {
		for (int i = 0; i < N; i++)
			id[i] = k * N + i, val[i] = i;
		REQUIRE(st_load_write(l, &b, 1, &err) == ST_OK);
	}
	CHECK_EQ(st_load_rows(l), 3 * N);
	CHECK_EQ(count_segments(dir), 0); /* nothing visible before the commit */
	REQUIRE(st_load_commit(l, &r, &err) == ST_OK);
	CHECK_EQ(r.version, 1);
	CHECK_EQ(r.rows, 3 * N);
	CHECK_EQ(count_segments(dir), 1);
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, NULL, &sum), 3 * N);
	CHECK_EQ(sum, (int64_t)3 * N * (3 * N - 1) / 2);

	/* A NULL id in the second batch: the row is counted from the load's start. */
	uint8_t valid[N / 8 + 1];
	memset(valid, 0xff, sizeof valid);
	valid[7 / 8] &= (uint8_t)~(1u << 7);
	REQUIRE(st_load_begin(s, "readings", &b, NULL, &l, &err) == ST_OK);
	REQUIRE(st_load_write(l, &b, 1, &err) == ST_OK);
	cols[0].validity = valid;
	CHECK_EQ(st_load_write(l, &b, 1, &err), ST_ESCHEMA);
	CHECK(strstr(err.msg, "row 5007") != NULL);
	CHECK_EQ(st_load_commit(l, &r, &err), ST_EINVAL); /* a failed load only aborts */
	cols[0].validity = NULL;
	/* Abort: nothing committed, no file left. */
	REQUIRE(st_load_begin(s, "readings", &b, NULL, &l, &err) == ST_OK);
	REQUIRE(st_load_write(l, &b, 1, &err) == ST_OK);
	st_load_abort(l);
	CHECK_EQ(count_segments(dir), 1);
	CHECK_EQ(scan_count(s, (struct st_at){0, 0}, NULL, &sum), 3 * N);
	/* An unknown column fails at begin, with its name. */
	const char *bad[2] = {"id", "nope"};
	struct st_batch bb = {2, bad, cols, N};
	CHECK_EQ(st_load_begin(s, "readings", &bb, NULL, &l, &err), ST_ESCHEMA);
	CHECK(strstr(err.msg, "'nope'") != NULL);
	st_store_close(s);
}

/* Rows and column count of table t at its head (columns: every one). */
static int64_t table_rows(st_store *s, const char *t, uint32_t *ncols)
{
	st_scan *sc;
	struct st_err err;
	int64_t rows = 0;
	if (st_scan_open(s, t, (struct st_at){ST_AT_LATEST, 0}, NULL, 0, NULL, &sc, &err) != ST_OK)
		return -1;
	const struct st_scan_batch *b;
	while (st_scan_next(sc, &b, &err) == ST_OK && b) {
		rows += b->nsel;
		*ncols = b->ncols;
	}
	st_scan_close(sc);
	return rows;
}

/* Writes share the table's decoded metadata (store_meta_get): every
 * metadata change must be seen by the next write, a write that changes
 * the schema must not touch the shared copy, and more tables than the
 * cache holds must all work. */
static void t_shared_metadata(void)
{
	st_store *s;
	struct st_err err;
	struct st_commit_result r;
	REQUIRE(st_store_open(new_dir(), &store_opts, &s, &err) == ST_OK);
	/* More tables than cache slots, written round-robin, each its own type. */
	enum { NT = META_CACHE_SLOTS + 4 };
	static const int types[3] = {ST_TYPE_INT64, ST_TYPE_FLOAT64, ST_TYPE_INT32};
	for (int k = 0; k < NT; k++) {
		char name[16];
		snprintf(name, sizeof name, "t%d", k);
		struct st_column_def c[1] = {{"v", types[k % 3], false}};
		struct st_table_spec spec = {.name = name, .cols = c, .ncols = 1};
		REQUIRE(st_table_create(s, &spec, ST_CREATE_ERROR, NULL, &err) == ST_OK);
	}
	uint64_t raw[2] = {0, 0};
	const char *vn[1] = {"v"};
	for (int round = 0; round < 3; round++)
		for (int k = 0; k < NT; k++) {
			char name[16];
			snprintf(name, sizeof name, "t%d", k);
			struct st_vec v = {.type = types[k % 3], .n = 2, .data = raw};
			struct st_batch b = {1, vn, &v, 2};
			CHECK_EQ(st_write(s, name, &b, 1, NULL, &r, &err), ST_OK);
			/* The wrong type is refused from the shared metadata too. */
			v.type = types[(k + 1) % 3];
			CHECK_EQ(st_write(s, name, &b, 1, NULL, &r, &err), ST_ESCHEMA);
		}
	uint32_t nc = 0;
	for (int k = 0; k < NT; k++) {
		char name[16];
		snprintf(name, sizeof name, "t%d", k);
		CHECK_EQ(table_rows(s, name, &nc), 6);
	}

	/* A merge_schema write that fails leaves the table's schema alone. */
	int64_t one[1] = {1}, two[2] = {1, 2};
	uint8_t null0[1] = {0};
	const char *vx[2] = {"v", "x"};
	struct st_vec bad[2] = {{.type = ST_TYPE_INT64, .n = 1, .validity = null0, .data = one},
				{.type = ST_TYPE_INT64, .n = 1, .data = one}};
	struct st_batch bb = {2, vx, bad, 1};
	struct st_write_opts merge = {.merge_schema = true};
	CHECK_EQ(st_write(s, "t0", &bb, 1, &merge, &r, &err), ST_ESCHEMA); /* NULL in NOT NULL v */
	struct act_metadata *m;
	REQUIRE(st_table_describe(s, "t0", -1, &m, &err) == ST_OK);
	CHECK_EQ(m->schema.nfields, 1);
	act_metadata_free(m);
	struct st_vec plain = {.type = ST_TYPE_INT64, .n = 1, .data = one};
	struct st_batch pb = {1, vn, &plain, 1};
	CHECK_EQ(st_write(s, "t0", &pb, 1, NULL, &r, &err), ST_OK);
	/* One that succeeds: the next plain write sees the new column (NULL). */
	bad[0].validity = NULL;
	CHECK_EQ(st_write(s, "t0", &bb, 1, &merge, &r, &err), ST_OK);
	CHECK_EQ(st_write(s, "t0", &pb, 1, NULL, &r, &err), ST_OK);
	CHECK_EQ(table_rows(s, "t0", &nc), 9);
	CHECK_EQ(nc, 2);

	/* ALTER: a column added by ALTER is writable without merge_schema. */
	struct st_alter add = {ST_ALTER_ADD_COLUMN, "y", NULL, ST_TYPE_INT64};
	REQUIRE(st_table_alter(s, "t3", &add, &r, &err) == ST_OK);
	const char *vy[2] = {"v", "y"};
	struct st_vec vyv[2] = {{.type = ST_TYPE_INT64, .n = 2, .data = two},
				{.type = ST_TYPE_INT64, .n = 2, .data = two}};
	struct st_batch yb = {2, vy, vyv, 2};
	CHECK_EQ(st_write(s, "t3", &yb, 1, NULL, &r, &err), ST_OK);
	/* Dropping it makes the same write fail again. */
	struct st_alter drop = {ST_ALTER_DROP_COLUMN, "y", NULL, 0};
	REQUIRE(st_table_alter(s, "t3", &drop, &r, &err) == ST_OK);
	CHECK_EQ(st_write(s, "t3", &yb, 1, NULL, &r, &err), ST_ESCHEMA);
	CHECK_CONTAINS(err.msg, "'y'");

	/* Rename, then drop and create again under the old name with another type. */
	REQUIRE(st_table_rename(s, "t6", "renamed", &r, &err) == ST_OK);
	struct st_vec v6 = {.type = ST_TYPE_INT64, .n = 2, .data = raw};
	struct st_batch b6 = {1, vn, &v6, 2};
	CHECK_EQ(st_write(s, "renamed", &b6, 1, NULL, &r, &err), ST_OK);
	CHECK_EQ(st_write(s, "t6", &b6, 1, NULL, &r, &err), ST_ENOTFOUND);
	REQUIRE(st_table_drop(s, "renamed", NULL, &err) == ST_OK);
	struct st_column_def c6[1] = {{"v", ST_TYPE_FLOAT64, false}};
	struct st_table_spec s6 = {.name = "renamed", .cols = c6, .ncols = 1};
	REQUIRE(st_table_create(s, &s6, ST_CREATE_ERROR, NULL, &err) == ST_OK);
	CHECK_EQ(st_write(s, "renamed", &b6, 1, NULL, &r, &err), ST_ESCHEMA);
	v6.type = ST_TYPE_FLOAT64;
	CHECK_EQ(st_write(s, "renamed", &b6, 1, NULL, &r, &err), ST_OK);
	CHECK_EQ(table_rows(s, "renamed", &nc), 2);

	/* Restore after a rename keeps the current name: a write under the
	 * old name is refused, under the new one it lands. */
	REQUIRE(st_table_rename(s, "t7", "t7b", &r, &err) == ST_OK);
	struct st_vec v7 = {.type = types[7 % 3], .n = 2, .data = raw};
	struct st_batch b7 = {1, vn, &v7, 2};
	CHECK_EQ(st_write(s, "t7b", &b7, 1, NULL, &r, &err), ST_OK);
	REQUIRE(st_table_restore(s, "t7b", (struct st_at){ST_AT_VERSION, 1}, &r, &err) == ST_OK);
	REQUIRE(st_table_describe(s, "t7b", -1, &m, &err) == ST_OK);
	CHECK_EQ(strcmp(m->name, "t7b"), 0);
	act_metadata_free(m);
	CHECK_EQ(st_write(s, "t7", &b7, 1, NULL, &r, &err), ST_ENOTFOUND);
	CHECK_EQ(st_write(s, "t7b", &b7, 1, NULL, &r, &err), ST_OK);
	CHECK_EQ(table_rows(s, "t7b", &nc), 4);
	st_store_close(s);
}

struct scrub_loop {
	st_store *s;
	int stop;
	uint64_t passes, segments, problems;
	char first[ST_ERR_MSG_MAX + 300];
};

static void *scrub_loop(void *p)
{
	struct scrub_loop *x = p;
	while (!__atomic_load_n(&x->stop, __ATOMIC_RELAXED)) {
		struct st_verify_result r;
		struct st_err err;
		bool stopped;
		if (st_scrub(x->s, NULL, &r, &stopped, &err) != ST_OK) {
			snprintf(x->first, sizeof x->first, "error: %s", err.msg);
			x->problems++;
			break;
		}
		if (r.nproblems && !x->problems)
			snprintf(x->first, sizeof x->first, "%s", r.problems[0]);
		x->problems += r.nproblems;
		x->segments += r.segments;
		x->passes++;
		st_verify_result_fini(&r);
	}
	return NULL;
}

/* A scrub running back to back beside appends (inline and file segments),
 * overwrites, compactions and vacuums that delete the files it is about to
 * read finds nothing: a segment gone meanwhile is not damage. */
static void t_scrub_beside_writers(void)
{
	st_store *s = open_with_table(new_dir());
	struct st_commit_result r;
	struct st_err err;
	struct scrub_loop x = {.s = s};
	pthread_t th;
	REQUIRE(pthread_create(&th, NULL, scrub_loop, &x) == 0);
	struct st_write_opts ow = {.mode = ST_WRITE_OVERWRITE};
	struct st_vacuum_opts now = {.retain_us = 1, .force = true};
	for (int round = 0; round < 24; round++) {
		REQUIRE(append(s, round * 10000, 10, &r, &err, NULL) == ST_OK);
		REQUIRE(append(s, round * 10000 + 100, 5000, &r, &err, round % 6 == 5 ? &ow : NULL) ==
			ST_OK);
		if (round % 4 == 3)
			REQUIRE(st_table_compact(s, "readings", &r, &err) == ST_OK);
		struct st_vacuum_result vr;
		REQUIRE(st_vacuum(s, "readings", &now, &vr, &err) == ST_OK);
		st_vacuum_result_fini(&vr);
	}
	__atomic_store_n(&x.stop, 1, __ATOMIC_RELAXED);
	pthread_join(th, NULL);
	CHECK(x.passes > 0);
	CHECK(x.segments > 0);
	CHECK_EQ(x.problems, 0);
	if (getenv("VERBOSE"))
		printf("    %llu passes, %llu segments\n", (unsigned long long)x.passes,
		       (unsigned long long)x.segments);
	if (x.problems)
		printf("    first: %s\n", x.first);
	uint64_t tids[2];
	CHECK_EQ(st_damaged_tables(s, tids, 2), 0);
	st_store_close(s);
}

static const struct test_case tests[] = {
	{"scrub_beside_writers", t_scrub_beside_writers},
	{"streaming_load", t_streaming_load},
	{"scan_survives_removal", t_scan_survives_removal},
	{"segment_files", t_segment_files},
	{"conflict_matrix", t_conflict_matrix},
	{"restore", t_restore},
	{"vacuum", t_vacuum},
	{"alter", t_alter},
	{"replace_where", t_replace_where},
	{"log_retention", t_log_retention},
	{"merge_schema_widening", t_merge_schema_widening},
	{"compaction", t_compaction},
	{"overwrite_schema", t_overwrite_schema},
	{"io_failures", t_io_failures},
	{"snapshot_across_tables_at_lsn", t_snapshot_across_tables_at_lsn},
	{"map_full_is_clean", t_map_full_is_clean},
	{"group_commit_concurrent_writers", t_group_commit_concurrent_writers},
	{"group_commit_mixed", t_group_commit_mixed},
	{"shared_metadata", t_shared_metadata},
	{"data_file_zero_filled_ahead", t_data_file_zero_filled_ahead},
	{"other_formats_refused", t_other_formats_refused},
	{"create_append_time_travel", t_create_append_time_travel},
	{"overwrite_keeps_old_versions", t_overwrite_keeps_old_versions},
	{"schema_enforcement_writes_nothing", t_schema_enforcement_writes_nothing},
	{"idempotent_writes", t_idempotent_writes},
	{"tables_create_modes_drop_list", t_tables_create_modes_drop_list},
};
TEST_MAIN(tests)
