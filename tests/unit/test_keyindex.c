/*
 * tests/unit/test_keyindex.c — the key index of a table with a declared
 * key (STORE.md §4.6): kept exact through appends, DELETE, UPDATE, MERGE,
 * OPTIMIZE, restore and vacuum (verify's index check and a lookup of every
 * key against a scan after each step), existing keys refused through it,
 * MERGE reading no target file, digest keys, damage found by verify, and
 * the upgrade of a format 7 store.
 */
#include <stdlib.h>
#include <string.h>

#include "daemon/store/store_int.h"
#include "daemon/store/strata.h"
#include "daemon/store/write_int.h"
#include "tests/test.h"

static struct st_store_opts store_opts;

static const struct st_column_def cols[] = {
	{"id", ST_TYPE_INT64, false},
	{"v", ST_TYPE_INT32, true},
};

static st_store *open_store(const char *dir)
{
	st_store *s = NULL;
	struct st_err err;
	int rc = st_store_open(dir, &store_opts, &s, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  open: %s\n", err.msg);
	REQUIRE(rc == ST_OK);
	return s;
}

static void create_keyed(st_store *s, const char *table)
{
	struct st_err err;
	const char *key[1] = {"id"};
	struct st_table_spec spec = {.name = table, .cols = cols, .ncols = 2, .key = key, .nkey = 1};
	REQUIRE(st_table_create(s, &spec, ST_CREATE_ERROR, NULL, &err) == ST_OK);
}

static void create_plain(st_store *s, const char *table)
{
	struct st_err err;
	struct st_table_spec spec = {.name = table, .cols = cols, .ncols = 2};
	REQUIRE(st_table_create(s, &spec, ST_CREATE_ERROR, NULL, &err) == ST_OK);
}

/* Rows with ids ids[0..n), v = id % 1000. */
static int put_ids(st_store *s, const char *table, const int64_t *ids, uint32_t n,
		   struct st_err *err)
{
	int32_t *v = malloc(n * 4 + 4);
	for (uint32_t i = 0; i < n; i++)
		v[i] = (int32_t)(ids[i] % 1000);
	const char *names[2] = {"id", "v"};
	struct st_vec vec[2] = {{.type = ST_TYPE_INT64, .n = n, .data = (void *)ids},
				{.type = ST_TYPE_INT32, .n = n, .data = v}};
	struct st_batch b = {2, names, vec, n};
	struct st_commit_result r;
	int rc = st_write(s, table, &b, 1, NULL, &r, err);
	free(v);
	return rc;
}

static int put_range(st_store *s, const char *table, int64_t from, uint32_t n, struct st_err *err)
{
	int64_t *ids = malloc(n * 8 + 8);
	for (uint32_t i = 0; i < n; i++)
		ids[i] = from + i;
	int rc = put_ids(s, table, ids, n, err);
	free(ids);
	return rc;
}

/* Rows of table matching pred at version v (-1 latest); *files (may be
 * NULL) gets the files the scan read. */
static int64_t scan_count(st_store *s, const char *table, const char *pred, int64_t v,
			  uint64_t *files)
{
	st_scan *sc;
	struct st_err err;
	struct st_at at = v < 0 ? (struct st_at){ST_AT_LATEST, 0} : (struct st_at){ST_AT_VERSION, v};
	if (st_scan_open(s, table, at, NULL, 0, pred, &sc, &err) != ST_OK) {
		fprintf(stderr, "  scan: %s\n", err.msg);
		return -1;
	}
	int64_t n = 0;
	const struct st_scan_batch *b;
	while (st_scan_next(sc, &b, &err) == ST_OK && b)
		n += b->nsel;
	struct st_scan_stats ss;
	st_scan_stats(sc, &ss);
	if (files)
		*files = ss.files_read;
	st_scan_close(sc);
	return n;
}

static int64_t count(st_store *s, const char *table, const char *pred)
{
	return scan_count(s, table, pred, -1, NULL);
}

static uint64_t problems(st_store *s)
{
	struct st_verify_result vr;
	struct st_err err;
	memset(&vr, 0, sizeof vr);
	REQUIRE(st_verify_ex(s, NULL, &vr, &err) == ST_OK);
	for (uint32_t i = 0; i < vr.nproblems; i++)
		fprintf(stderr, "  verify: %s\n", vr.problems[i]);
	uint64_t n = vr.nproblems;
	st_verify_result_fini(&vr);
	return n;
}

/* The table's key index records. */
static uint64_t index_records(st_store *s, const char *table)
{
	MDB_txn *txn;
	struct table_head h;
	struct st_err err;
	REQUIRE(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) == 0);
	REQUIRE(head_get(s, txn, table, &h, &err) == ST_OK);
	uint8_t pre[TABLE_PREFIX_LEN];
	table_key(pre, h.tid, REC_KEY);
	MDB_cursor *cur;
	REQUIRE(mdb_cursor_open(txn, s->dbi, &cur) == 0);
	MDB_val k = {sizeof pre, pre}, v;
	uint64_t n = 0;
	for (int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); mrc == 0 && table_range(&k, pre);
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
		n++;
	mdb_cursor_close(cur);
	head_fini(&h);
	mdb_txn_abort(txn);
	return n;
}

/* Every id in [lo, hi): the index lookup at the head agrees with a scan. */
static void lookups_agree(st_store *s, const char *table, int64_t lo, int64_t hi)
{
	MDB_txn *txn;
	struct table_head h;
	struct st_err err;
	struct store_kix_view *v;
	REQUIRE(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) == 0);
	REQUIRE(head_get(s, txn, table, &h, &err) == ST_OK);
	REQUIRE(store_kix_view_open(s, txn, h.meta, h.tid, h.version, &v, &err) == ST_OK);
	/* The live ids, by a scan. */
	uint8_t *live = calloc((size_t)(hi - lo) + 1, 1);
	st_scan *sc;
	REQUIRE(st_scan_open(s, table, (struct st_at){ST_AT_LATEST, 0}, NULL, 0, NULL, &sc, &err) ==
		ST_OK);
	const struct st_scan_batch *b;
	while (st_scan_next(sc, &b, &err) == ST_OK && b)
		for (uint32_t i = 0; i < b->nsel; i++) {
			int64_t id = ((const int64_t *)b->cols[0].data)[b->sel ? b->sel[i] : i];
			if (id >= lo && id < hi)
				live[id - lo]++;
		}
	st_scan_close(sc);
	uint64_t bad = 0;
	uint32_t nf;
	const struct file_rec *files = store_kix_view_files(v, &nf);
	for (int64_t id = lo; id < hi; id++) {
		uint8_t kb[8];
		st_put_le64(kb, (uint64_t)id);
		uint32_t f, pos;
		int found = store_kix_find(s, v, kb, 8, &f, &pos, &err);
		bad += found != (live[id - lo] ? 1 : 0) || live[id - lo] > 1 ||
		       (found == 1 && (f >= nf || pos >= files[f].rows));
	}
	CHECK_EQ(bad, 0);
	free(live);
	store_kix_view_free(v);
	head_fini(&h);
	mdb_txn_abort(txn);
}

static void step_ok(st_store *s, const char *table, int64_t lo, int64_t hi)
{
	CHECK_EQ(problems(s), 0);
	lookups_agree(s, table, lo, hi);
}

/* Every kind of commit keeps the index exact. */
static void follows_commits(void)
{
	char dir[512];
	snprintf(dir, sizeof dir, "%s", test_new_dir("kix"));
	st_store *s = open_store(dir);
	struct st_err err;
	struct st_dml_result r;
	create_keyed(s, "t");
	create_plain(s, "src");
	REQUIRE(put_range(s, "t", 0, 3000, &err) == ST_OK);
	REQUIRE(put_range(s, "t", 5000, 500, &err) == ST_OK);
	CHECK_EQ(index_records(s, "t"), 3500);
	step_ok(s, "t", -10, 6000);
	/* DELETE by vector and whole files: no record changes. */
	REQUIRE(st_delete(s, "t", "id % 7 = 3", NULL, &r, &err) == ST_OK);
	REQUIRE(st_delete(s, "t", "id >= 5000", NULL, &r, &err) == ST_OK);
	CHECK_EQ(index_records(s, "t"), 3500);
	step_ok(s, "t", -10, 6000);
	/* A deleted key may be written again. */
	int64_t again[2] = {3, 5001};
	CHECK_EQ(put_ids(s, "t", again, 2, &err), ST_OK);
	step_ok(s, "t", -10, 6000);
	/* UPDATE: the rows move to a new segment. */
	REQUIRE(st_update(s, "t", "v = v + 1", "id < 100", NULL, &r, &err) == ST_OK);
	step_ok(s, "t", -10, 6000);
	/* MERGE upsert: 100 matches, 100 new. */
	REQUIRE(put_range(s, "src", 2900, 200, &err) == ST_OK);
	struct st_merge_opts mo = {.on = "t.id = s.id", .matched = ST_MERGE_MATCHED_UPDATE_ALL,
				   .not_matched = ST_MERGE_NOT_MATCHED_INSERT_ALL};
	REQUIRE(st_merge(s, "t", "src", &mo, &r, &err) == ST_OK);
	CHECK_EQ(r.files_read, 0); /* found by the index */
	uint64_t gone = 0;
	for (int64_t id = 2900; id < 3000; id++)
		gone += id % 7 == 3;
	CHECK_EQ(r.rows_updated, 100 - gone);
	CHECK_EQ(r.rows_inserted, 100 + gone);
	step_ok(s, "t", -10, 6000);
	CHECK_EQ(count(s, "t", "id >= 2900 AND id < 3100"), 200);
	/* OPTIMIZE rewrites everything. */
	struct st_optimize_opts oo = {0};
	struct st_optimize_result or;
	REQUIRE(st_optimize(s, "t", &oo, &or, &err) == ST_OK);
	step_ok(s, "t", -10, 6000);
	/* Restore to version 2 (both appends, nothing deleted): revived files
	 * keep their segments' records. */
	struct st_commit_result cr;
	uint64_t before = index_records(s, "t");
	REQUIRE(st_table_restore(s, "t", (struct st_at){ST_AT_VERSION, 2}, &cr, &err) == ST_OK);
	CHECK_EQ(index_records(s, "t"), before);
	CHECK_EQ(count(s, "t", NULL), 3500);
	step_ok(s, "t", -10, 6000);
	/* Vacuum of everything removed: the records of freed segments go,
	 * those the restored files share stay. */
	struct st_vacuum_opts vo = {.retain_us = 1, .force = true};
	struct st_vacuum_result vr;
	REQUIRE(st_vacuum(s, "t", &vo, &vr, &err) == ST_OK);
	CHECK(vr.files > 0);
	st_vacuum_result_fini(&vr);
	CHECK_EQ(index_records(s, "t"), 3500);
	step_ok(s, "t", -10, 6000);
	/* And the index survives a reopen. */
	st_store_close(s);
	s = open_store(dir);
	step_ok(s, "t", -10, 6000);
	st_store_close(s);
}

static void t_follows_commits_inline(void)
{
	follows_commits();
}

static void t_follows_commits_files(void)
{
	TEST_SET(store_opts.inline_max, 1);
	follows_commits();
}

/* A few keys into a large table are checked through the index: an
 * existing one refused naming it (also after an UPDATE moved it), a
 * deleted one accepted. */
static void t_existing_keys(void)
{
	TEST_SET(store_opts.inline_max, 1);
	st_store *s = open_store(test_new_dir("kix"));
	struct st_err err;
	struct st_dml_result r;
	create_keyed(s, "t");
	REQUIRE(put_range(s, "t", 0, 20000, &err) == ST_OK);
	int64_t ids[3] = {30000, 12345, 30001};
	CHECK_EQ(put_ids(s, "t", ids, 3, &err), ST_ESCHEMA);
	CHECK_CONTAINS(err.msg, "key (12345) already exists: row 1 of the write");
	REQUIRE(st_update(s, "t", "v = -1", "id = 12345", NULL, &r, &err) == ST_OK);
	CHECK_EQ(put_ids(s, "t", ids, 3, &err), ST_ESCHEMA);
	CHECK_CONTAINS(err.msg, "key (12345) already exists");
	REQUIRE(st_delete(s, "t", "id = 12345", NULL, &r, &err) == ST_OK);
	CHECK_EQ(put_ids(s, "t", ids, 3, &err), ST_OK);
	CHECK_EQ(count(s, "t", NULL), 20002);
	CHECK_EQ(count(s, "t", "id = 12345 AND v = 345"), 1);
	step_ok(s, "t", 0, 30010);
	st_store_close(s);
}

/* MERGE through the index: delete and update SET; a target row two
 * source rows match is refused naming its key. */
static void t_merge_by_index(void)
{
	TEST_SET(store_opts.inline_max, 1);
	st_store *s = open_store(test_new_dir("kix"));
	struct st_err err;
	struct st_dml_result r;
	create_keyed(s, "t");
	create_plain(s, "src");
	REQUIRE(put_range(s, "t", 0, 1000, &err) == ST_OK);
	REQUIRE(put_range(s, "t", 1000, 1000, &err) == ST_OK);
	REQUIRE(put_range(s, "src", 990, 20, &err) == ST_OK); /* 990..1009: both files */
	struct st_merge_opts mo = {.on = "t.id = s.id", .matched = ST_MERGE_MATCHED_DELETE};
	REQUIRE(st_merge(s, "t", "src", &mo, &r, &err) == ST_OK);
	CHECK_EQ(r.rows_deleted, 20);
	CHECK_EQ(r.files_read, 0);
	CHECK_EQ(r.dvs_written, 2);
	CHECK_EQ(count(s, "t", NULL), 1980);
	step_ok(s, "t", 0, 2100);
	/* update SET reads only the file holding the matches. */
	REQUIRE(put_range(s, "t", 990, 10, &err) == ST_OK);
	int64_t two[2] = {5, 6};
	REQUIRE(put_ids(s, "src", two, 2, &err) == ST_OK);
	mo.matched = ST_MERGE_MATCHED_UPDATE_SET;
	mo.set = "v = t.v + 1000";
	REQUIRE(st_merge(s, "t", "src", &mo, &r, &err) == ST_OK);
	CHECK_EQ(r.rows_updated, 12); /* 990..999 and 5, 6 */
	CHECK_EQ(r.files_read, 2);
	CHECK_EQ(count(s, "t", "v >= 1000"), 12);
	step_ok(s, "t", 0, 2100);
	/* 5 twice in the source, and 5 in the target. */
	REQUIRE(put_ids(s, "src", two, 1, &err) == ST_OK);
	mo.matched = ST_MERGE_MATCHED_UPDATE_ALL;
	CHECK_EQ(st_merge(s, "t", "src", &mo, &r, &err), ST_EINVAL);
	CHECK_CONTAINS(err.msg, "the target row with key (5) is matched by 2 source rows");
	CHECK_EQ(count(s, "t", "v >= 1000"), 12);
	/* not-matched-by-source delete reads every file, as without an index. */
	mo.matched = ST_MERGE_MATCHED_IGNORE;
	mo.by_source = ST_MERGE_BY_SOURCE_DELETE;
	REQUIRE(st_merge(s, "t", "src", &mo, &r, &err) == ST_OK);
	CHECK_EQ(count(s, "t", NULL), 12);
	step_ok(s, "t", 0, 2100);
	st_store_close(s);
}

/* Keys over 400 bytes are stored as their digest: still unique. */
static void t_digest_keys(void)
{
	st_store *s = open_store(test_new_dir("kix"));
	struct st_err err;
	static const struct st_column_def sc[] = {{"k", ST_TYPE_STRING, false}, {"n", ST_TYPE_INT32, true}};
	const char *key[1] = {"k"};
	struct st_table_spec spec = {.name = "s", .cols = sc, .ncols = 2, .key = key, .nkey = 1};
	REQUIRE(st_table_create(s, &spec, ST_CREATE_ERROR, NULL, &err) == ST_OK);
	enum { N = 40, L = 600 };
	char *buf = malloc(N * L);
	uint32_t off[N + 1];
	int32_t n[N];
	for (uint32_t i = 0; i < N; i++) {
		memset(buf + i * L, 'a' + (int)(i % 26), L);
		buf[i * L + L - 1] = (char)('0' + i / 26);
		off[i] = i * L;
		n[i] = (int32_t)i;
	}
	off[N] = N * L;
	const char *names[2] = {"k", "n"};
	struct st_vec v[2] = {{.type = ST_TYPE_STRING, .n = N, .offsets = off, .bytes = (uint8_t *)buf},
			      {.type = ST_TYPE_INT32, .n = N, .data = n}};
	struct st_batch b = {2, names, v, N};
	struct st_commit_result cr;
	REQUIRE(st_write(s, "s", &b, 1, NULL, &cr, &err) == ST_OK);
	CHECK_EQ(index_records(s, "s"), N);
	/* The same 40 keys again: the first one is refused. */
	CHECK_EQ(st_write(s, "s", &b, 1, NULL, &cr, &err), ST_ESCHEMA);
	CHECK_CONTAINS(err.msg, "already exists");
	CHECK_EQ(problems(s), 0);
	free(buf);
	st_store_close(s);
}

/* Verify finds a missing record and one naming no segment. */
static void t_verify_finds_damage(void)
{
	st_store *s = open_store(test_new_dir("kix"));
	struct st_err err;
	create_keyed(s, "t");
	REQUIRE(put_range(s, "t", 0, 100, &err) == ST_OK);
	CHECK_EQ(problems(s), 0);
	MDB_txn *txn;
	struct table_head h;
	REQUIRE(mdb_txn_begin(s->env, NULL, 0, &txn) == 0);
	REQUIRE(head_get(s, txn, "t", &h, &err) == ST_OK);
	uint8_t kb[8], key[KIX_KEY_MAX];
	uint8_t types[1] = {ST_TYPE_INT64};
	st_put_le64(kb, 42);
	size_t kl = store_kix_key(key, h.tid, kb, 8, types, 1);
	MDB_cursor *cur;
	REQUIRE(mdb_cursor_open(txn, s->dbi, &cur) == 0);
	MDB_val k = {kl, key}, v;
	REQUIRE(mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) == 0);
	REQUIRE(mdb_cursor_del(cur, 0) == 0);
	mdb_cursor_close(cur);
	/* A record of key 7 under segment 999. */
	st_put_le64(kb, 7);
	kl = store_kix_key(key, h.tid, kb, 8, types, 1);
	st_put_be(key + kl, 8, 999);
	uint8_t row[4] = {0};
	MDB_val bk = {kl + 8, key}, bv = {4, row};
	REQUIRE(store_rec_put(s, txn, NULL, &bk, &bv, 0) == 0);
	head_fini(&h);
	REQUIRE(mdb_txn_commit(txn) == 0);
	struct st_verify_result vr;
	memset(&vr, 0, sizeof vr);
	REQUIRE(st_verify_ex(s, NULL, &vr, &err) == ST_OK);
	CHECK_EQ(vr.nproblems, 2);
	for (uint32_t i = 0; i < vr.nproblems; i++)
		fprintf(stderr, "  (expected) %s\n", vr.problems[i]);
	CHECK(vr.nproblems == 2 && strstr(vr.problems[0], "names segment 999") &&
	      strstr(vr.problems[1], "1 of its rows without their record"));
	st_verify_result_fini(&vr);
	st_store_close(s);
}

/* A format 7 store (no key index) is indexed at open. */
static void t_upgrade_from_7(void)
{
	char dir[512];
	snprintf(dir, sizeof dir, "%s", test_new_dir("kix"));
	st_store *s = open_store(dir);
	struct st_err err;
	struct st_dml_result r;
	create_keyed(s, "t");
	REQUIRE(put_range(s, "t", 0, 500, &err) == ST_OK);
	REQUIRE(put_range(s, "t", 500, 500, &err) == ST_OK);
	REQUIRE(st_delete(s, "t", "id % 3 = 0", NULL, &r, &err) == ST_OK);
	/* Make it format 7: no key records, format record 7. */
	MDB_txn *txn;
	struct table_head h;
	REQUIRE(mdb_txn_begin(s->env, NULL, 0, &txn) == 0);
	REQUIRE(head_get(s, txn, "t", &h, &err) == ST_OK);
	uint8_t pre[TABLE_PREFIX_LEN];
	table_key(pre, h.tid, REC_KEY);
	MDB_cursor *cur;
	REQUIRE(mdb_cursor_open(txn, s->dbi, &cur) == 0);
	MDB_val k = {sizeof pre, pre}, v;
	int mrc;
	while ((mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)) == 0 && table_range(&k, pre))
		REQUIRE(mdb_cursor_del(cur, 0) == 0);
	mdb_cursor_close(cur);
	uint8_t fk[16], fb[4];
	MDB_val kk = kind_key(fk, KEY_META, "format", 6), fv = {4, fb};
	st_put_le32(fb, 7);
	REQUIRE(store_rec_put(s, txn, NULL, &kk, &fv, 0) == 0);
	head_fini(&h);
	REQUIRE(mdb_txn_commit(txn) == 0);
	st_store_close(s);
	s = open_store(dir);
	CHECK_EQ(s->opened.format_from, 7);
	/* One record per row of each segment (the files re-added with vectors
	 * carry their segment ids: this build wrote them). */
	CHECK_EQ(index_records(s, "t"), 1000);
	step_ok(s, "t", 0, 1000);
	int64_t one = 3;
	CHECK_EQ(put_ids(s, "t", &one, 1, &err), ST_OK);
	one = 4;
	CHECK_EQ(put_ids(s, "t", &one, 1, &err), ST_ESCHEMA);
	step_ok(s, "t", 0, 1000);
	st_store_close(s);
}

/* A key column widens from int32 to int64 (same index records), not to
 * float64; the records of the int32 rows still find them. */
static void t_key_widening(void)
{
	st_store *s = open_store(test_new_dir("kix"));
	struct st_err err;
	static const struct st_column_def c32[] = {{"id", ST_TYPE_INT32, false}};
	const char *key[1] = {"id"};
	struct st_table_spec spec = {.name = "w", .cols = c32, .ncols = 1, .key = key, .nkey = 1};
	REQUIRE(st_table_create(s, &spec, ST_CREATE_ERROR, NULL, &err) == ST_OK);
	int32_t a[3] = {1, 2, 3};
	const char *names[1] = {"id"};
	struct st_vec v = {.type = ST_TYPE_INT32, .n = 3, .data = a};
	struct st_batch b = {1, names, &v, 3};
	struct st_commit_result cr;
	REQUIRE(st_write(s, "w", &b, 1, NULL, &cr, &err) == ST_OK);
	struct st_write_opts wo = {.merge_schema = true};
	double d[1] = {4};
	struct st_vec vd = {.type = ST_TYPE_FLOAT64, .n = 1, .data = d};
	struct st_batch bd = {1, names, &vd, 1};
	CHECK_EQ(st_write(s, "w", &bd, 1, &wo, &cr, &err), ST_ESCHEMA);
	CHECK_CONTAINS(err.msg, "a key column widens only from int32 to int64");
	int64_t l[2] = {5, 2};
	struct st_vec vl = {.type = ST_TYPE_INT64, .n = 2, .data = l};
	struct st_batch bl = {1, names, &vl, 2};
	CHECK_EQ(st_write(s, "w", &bl, 1, &wo, &cr, &err), ST_ESCHEMA);
	CHECK_CONTAINS(err.msg, "key (2) already exists");
	bl.nrows = vl.n = 1;
	CHECK_EQ(st_write(s, "w", &bl, 1, &wo, &cr, &err), ST_OK);
	CHECK_EQ(count(s, "w", NULL), 4);
	CHECK_EQ(problems(s), 0);
	st_store_close(s);
}

static int64_t point(st_store *s, const char *pred, int64_t v, uint64_t *files)
{
	return scan_count(s, "t", pred, v, files);
}

/* A predicate that fixes the key reads the one file the index names,
 * though every file's statistics cover the key (interleaved ids); at an
 * old version too; a key no row has reads nothing. */
static void t_point_lookups(void)
{
	TEST_SET(store_opts.inline_max, 1);
	st_store *s = open_store(test_new_dir("kix"));
	struct st_err err;
	struct st_dml_result r;
	create_keyed(s, "t");
	int64_t ids[1000];
	for (int w = 0; w < 5; w++) {
		for (int i = 0; i < 1000; i++)
			ids[i] = 5 * i + w; /* every file spans 0..4999 */
		REQUIRE(put_ids(s, "t", ids, 1000, &err) == ST_OK);
	}
	uint64_t files;
	CHECK_EQ(point(s, "id = 1234", -1, &files), 1);
	CHECK_EQ(files, 1);
	CHECK_EQ(point(s, "v = 234 AND id = 1234", -1, &files), 1);
	CHECK_EQ(files, 1);
	CHECK_EQ(point(s, "id = 1234 AND v = 1", -1, &files), 0);
	CHECK_EQ(point(s, "id = 777777", -1, &files), 0);
	CHECK_EQ(files, 0);
	CHECK_EQ(point(s, "id = 1234 OR id = 1235", -1, &files), 2); /* no point: statistics */
	CHECK_EQ(files, 5);
	REQUIRE(st_delete(s, "t", "id = 1234", NULL, &r, &err) == ST_OK);
	CHECK_EQ(point(s, "id = 1234", -1, &files), 0);
	CHECK_EQ(files, 0);
	CHECK_EQ(point(s, "id = 1234", 5, &files), 1); /* before the delete */
	CHECK_EQ(files, 1);
	REQUIRE(st_update(s, "t", "v = -5", "id = 1235", NULL, &r, &err) == ST_OK);
	CHECK_EQ(point(s, "id = 1235 AND v = -5", -1, &files), 1);
	CHECK_EQ(files, 1);
	st_store_close(s);
}

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)((rng >> 11) % n);
}

/* Random histories on a keyed table: writes of random new keys (deleted
 * ones again too), DELETE, UPDATE, MERGE (update-all + insert-all, and
 * update + by-source delete), OPTIMIZE, restore and vacuum, against a
 * mirror of the live keys; after each step the keys the table has are the
 * mirror's, a repeated key is refused, verify checks the index and every
 * key's lookup agrees with a scan. */
static void random_ops(uint64_t seed)
{
	st_store *s = open_store(test_new_dir("kix"));
	struct st_err err;
	struct st_dml_result r;
	enum { KEYS = 3000 };
	static bool live[KEYS];
	memset(live, 0, sizeof live);
	rng = seed;
	create_keyed(s, "t");
	create_plain(s, "src");
	uint64_t nlive = 0, bad = 0;
	for (int step = 0; step < 150 && !bad; step++) {
		int op = (int)rnd(8);
		char pred[128];
		int lo = (int)rnd(KEYS), hi = lo + 1 + (int)rnd(300);
		snprintf(pred, sizeof pred, "id >= %d AND id < %d", lo, hi);
		if (op <= 2) { /* write up to 200 keys the table lacks, in random order */
			int64_t ids[200];
			uint32_t n = 0;
			for (uint32_t t = 0; t < 400 && n < 200; t++) {
				int k = (int)rnd(KEYS);
				bool dup = false;
				for (uint32_t j = 0; j < n; j++)
					dup |= ids[j] == k;
				if (!live[k] && !dup)
					ids[n++] = k;
			}
			if (n && put_ids(s, "t", ids, n, &err) == ST_OK)
				for (uint32_t j = 0; j < n; j++)
					live[ids[j]] = true, nlive++;
			else if (n)
				bad++, fprintf(stderr, "  step %d: write: %s\n", step, err.msg);
			/* a key it holds is refused */
			for (int k = 0; k < KEYS && nlive; k++)
				if (live[k]) {
					int64_t one = k;
					if (put_ids(s, "t", &one, 1, &err) != ST_ESCHEMA)
						bad++, fprintf(stderr, "  step %d: key %d written twice\n", step, k);
					break;
				}
		} else if (op == 3) {
			if (st_delete(s, "t", pred, NULL, &r, &err) != ST_OK)
				bad++;
			for (int k = lo; k < hi && k < KEYS; k++)
				nlive -= live[k], live[k] = false;
		} else if (op == 4) {
			if (st_update(s, "t", "v = v + 1", pred, NULL, &r, &err) != ST_OK)
				bad++;
		} else if (op == 5) { /* MERGE a source of 100 random keys */
			struct st_alter a = {0};
			(void)a;
			struct st_commit_result cr;
			REQUIRE(st_table_drop(s, "src", &cr, &err) == ST_OK);
			create_plain(s, "src");
			int64_t ids[100];
			uint32_t n = 0;
			for (uint32_t t = 0; t < 100; t++) {
				int k = (int)rnd(KEYS);
				bool dup = false;
				for (uint32_t j = 0; j < n; j++)
					dup |= ids[j] == k;
				if (!dup)
					ids[n++] = k;
			}
			REQUIRE(put_ids(s, "src", ids, n, &err) == ST_OK);
			bool by_source = rnd(4) == 0;
			struct st_merge_opts mo = {.on = "t.id = s.id", .matched = ST_MERGE_MATCHED_UPDATE_ALL,
						   .not_matched = ST_MERGE_NOT_MATCHED_INSERT_ALL,
						   .by_source = by_source ? ST_MERGE_BY_SOURCE_DELETE
									  : ST_MERGE_BY_SOURCE_IGNORE};
			if (st_merge(s, "t", "src", &mo, &r, &err) != ST_OK) {
				bad++, fprintf(stderr, "  step %d: merge: %s\n", step, err.msg);
			} else {
				if (by_source)
					memset(live, 0, sizeof live), nlive = 0;
				for (uint32_t j = 0; j < n; j++)
					nlive += !live[ids[j]], live[ids[j]] = true;
			}
		} else if (op == 6) {
			struct st_optimize_opts oo = {0};
			struct st_optimize_result or;
			if (st_optimize(s, "t", &oo, &or, &err) != ST_OK)
				bad++;
		} else {
			struct st_vacuum_opts vo = {.retain_us = 1, .force = true};
			struct st_vacuum_result vr;
			if (st_vacuum(s, "t", &vo, &vr, &err) != ST_OK)
				bad++;
			st_vacuum_result_fini(&vr);
		}
		/* The table's keys are the mirror's. */
		int64_t n = count(s, "t", NULL);
		if (n != (int64_t)nlive)
			bad++, fprintf(stderr, "  step %d (op %d): %lld rows, the mirror has %llu\n", step,
				       op, (long long)n, (unsigned long long)nlive);
		if (step % 6 == 5 || op >= 5)
			step_ok(s, "t", 0, KEYS);
	}
	CHECK_EQ(bad, 0);
	/* A restore to the oldest retained version (vacuum may have taken the
	 * first ones) and back to the latest state keeps it exact. */
	uint64_t head = 0;
	struct st_commit_result cr;
	REQUIRE(st_table_version(s, "t", &head, &err) == ST_OK);
	int64_t v = 0;
	while ((uint64_t)v < head &&
	       st_table_restore(s, "t", (struct st_at){ST_AT_VERSION, v}, &cr, &err) == ST_ERANGE)
		v++;
	step_ok(s, "t", 0, KEYS);
	int rc = st_table_restore(s, "t", (struct st_at){ST_AT_VERSION, (int64_t)head}, &cr, &err);
	if (rc == ST_OK) {
		CHECK_EQ(count(s, "t", NULL), (int64_t)nlive);
		step_ok(s, "t", 0, KEYS);
	}
	st_store_close(s);
}

static void t_random_ops_inline(void)
{
	for (uint64_t seed = 1; seed <= 3; seed++)
		random_ops(seed * 0x9e3779b97f4a7c15ull);
}

static void t_random_ops_files(void)
{
	TEST_SET(store_opts.inline_max, 1);
	for (uint64_t seed = 4; seed <= 6; seed++)
		random_ops(seed * 0x9e3779b97f4a7c15ull);
}

static const struct test_case tests[] = {
	{"random_ops_inline", t_random_ops_inline},
	{"random_ops_files", t_random_ops_files},
	{"point_lookups", t_point_lookups},
	{"key_widening", t_key_widening},
	{"follows_commits_inline", t_follows_commits_inline},
	{"follows_commits_files", t_follows_commits_files},
	{"existing_keys", t_existing_keys},
	{"merge_by_index", t_merge_by_index},
	{"digest_keys", t_digest_keys},
	{"verify_finds_damage", t_verify_finds_damage},
	{"upgrade_from_7", t_upgrade_from_7},
};

TEST_MAIN(tests)
