/*
 * tests/unit/test_chain.c — the store's LSN-ordered commit log and its
 * BLAKE2b-256 hash chain (STORE.md §2.4, §4): every state change lands in
 * the log once, in LSN order; a changed, dropped or reordered commit of
 * any table is found by st_verify and at open; a head hash recorded
 * elsewhere is found in the chain; vacuum trims the log's front. Also the
 * LMDB error classes and the idempotent writer's failed lookup.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/store/store_int.h"
#include "daemon/store/strata.h"
#include "tests/test.h"

static const char *fresh_dir(void)
{
	return test_new_dir("chain");
}

/* A store with tables a and b (one int64 column n). */
static st_store *two_tables(char *dir, size_t len)
{
	st_store *s;
	struct st_err err;
	snprintf(dir, len, "%s", fresh_dir());
	REQUIRE(st_store_open(dir, NULL, &s, &err) == ST_OK);
	struct st_column_def c[1] = {{"n", ST_TYPE_INT64, false}};
	struct st_table_spec a = {.name = "a", .cols = c, .ncols = 1};
	struct st_table_spec b = {.name = "b", .cols = c, .ncols = 1};
	REQUIRE(st_table_create(s, &a, ST_CREATE_ERROR, NULL, &err) == ST_OK);
	REQUIRE(st_table_create(s, &b, ST_CREATE_ERROR, NULL, &err) == ST_OK);
	return s;
}

static int put(st_store *s, const char *table, int64_t n, const struct st_write_opts *o,
	       struct st_commit_result *r, struct st_err *err)
{
	const char *names[1] = {"n"};
	struct st_vec v = {.type = ST_TYPE_INT64, .n = 1, .data = &n};
	struct st_batch b = {1, names, &v, 1};
	return st_write(s, table, &b, 1, o, r, err);
}

/* Every kind of commit, on two tables, interleaved: 2 creates, then
 * writes, an alter, a rename, a restore, a compaction, a drop. */
static uint64_t mixed_history(st_store *s)
{
	struct st_commit_result r;
	struct st_err err;
	for (int i = 0; i < 6; i++)
		REQUIRE(put(s, i % 2 ? "a" : "b", i, NULL, &r, &err) == ST_OK);
	struct st_alter al = {ST_ALTER_SET_PROPERTY, "owner", "x", 0};
	REQUIRE(st_table_alter(s, "a", &al, &r, &err) == ST_OK);
	REQUIRE(st_table_rename(s, "b", "b2", &r, &err) == ST_OK);
	REQUIRE(st_table_restore(s, "a", (struct st_at){ST_AT_VERSION, 1}, &r, &err) == ST_OK);
	REQUIRE(st_table_compact(s, "b2", &r, &err) == ST_OK);
	REQUIRE(st_table_drop(s, "b2", NULL, &err) == ST_OK);
	return st_store_lsn(s);
}

/* The log holds every commit once, in LSN order 1..N, each entry's hash
 * following from the one before it, and its bytes are the commit. */
static void t_log_in_lsn_order(void)
{
	char dir[128];
	st_store *s = two_tables(dir, sizeof dir);
	uint64_t last = mixed_history(s);
	CHECK_EQ(last, 13); /* 2 creates, 6 writes, alter, rename, restore, compact, drop */
	struct st_log_entry *e;
	uint32_t n;
	struct st_err err;
	REQUIRE(st_log_read(s, 1, 0, &e, &n, &err) == ST_OK);
	CHECK_EQ(n, last);
	uint8_t prev[ST_HASH_LEN] = {0}, h[ST_HASH_LEN], rec[LSN_REC_LEN];
	for (uint32_t i = 0; i < n; i++) {
		CHECK_EQ(e[i].lsn, i + 1);
		REQUIRE(e[i].commit);
		struct act_commit *c;
		REQUIRE(act_decode(e[i].commit, e[i].len, &c, &err) == ST_OK);
		CHECK_EQ(c->lsn, e[i].lsn);
		CHECK_EQ(c->version, e[i].version);
		act_commit_free(c);
		uint8_t dig[ST_HASH_LEN];
		crypto_generichash(dig, sizeof dig, e[i].commit, e[i].len, NULL, 0);
		CHECK(!memcmp(dig, e[i].digest, ST_HASH_LEN));
		memcpy(rec + 32, e[i].digest, 32);
		st_put_le64(rec + 64, e[i].table_id);
		st_put_le64(rec + 72, e[i].version);
		store_chain_step(prev, e[i].lsn, rec, h);
		CHECK(!memcmp(h, e[i].hash, ST_HASH_LEN));
		memcpy(prev, e[i].hash, ST_HASH_LEN);
	}
	struct st_chain_head head;
	REQUIRE(st_chain_head(s, &head, &err) == ST_OK);
	CHECK_EQ(head.lsn, last);
	CHECK(n > 0 && !memcmp(head.hash, e[n - 1].hash, ST_HASH_LEN));
	uint8_t at5[ST_HASH_LEN];
	REQUIRE(st_chain_hash(s, 5, at5, &err) == ST_OK);
	CHECK(!memcmp(at5, e[4].hash, ST_HASH_LEN));
	CHECK_EQ(st_chain_hash(s, last + 1, at5, &err), ST_ENOTFOUND);
	st_log_entries_free(e, n);
	/* A page of the log: from 4, at most 3. */
	REQUIRE(st_log_read(s, 4, 3, &e, &n, &err) == ST_OK);
	CHECK_EQ(n, 3);
	CHECK(n == 3 && e[0].lsn == 4 && e[2].lsn == 6);
	st_log_entries_free(e, n);
	REQUIRE(st_log_read(s, last + 1, 10, &e, &n, &err) == ST_OK);
	CHECK_EQ(n, 0);
	st_log_entries_free(e, n);
	struct st_verify_result vr;
	REQUIRE(st_verify(s, &vr, &err) == ST_OK);
	CHECK_EQ(vr.nproblems, 0);
	CHECK_EQ(vr.last_lsn, last);
	CHECK(!memcmp(vr.last_hash, head.hash, ST_HASH_LEN));
	st_verify_result_fini(&vr);
	/* The chain survives a reopen and goes on from where it was. */
	st_store_close(s);
	REQUIRE(st_store_open(dir, NULL, &s, &err) == ST_OK);
	struct st_commit_result r;
	REQUIRE(put(s, "a", 99, NULL, &r, &err) == ST_OK);
	CHECK_EQ(r.lsn, last + 1);
	REQUIRE(st_verify(s, &vr, &err) == ST_OK);
	CHECK_EQ(vr.nproblems, 0);
	st_verify_result_fini(&vr);
	st_store_close(s);
}

/* Raw LMDB surgery on a store's records, as an attacker who rewrites
 * records with valid checksums: what the hash chain must catch. */
enum surgery { FLIP_COMMIT, DROP_LSN, SWAP_LSN, DROP_LAST_LSN };

static void operate(st_store *s, enum surgery what, uint64_t lsn)
{
	MDB_txn *txn;
	uint8_t key[LSN_KEY_LEN], key2[LSN_KEY_LEN];
	REQUIRE(mdb_txn_begin(s->env, NULL, 0, &txn) == 0);
	lsn_key(key, lsn);
	MDB_val k = {sizeof key, key}, v;
	REQUIRE(store_get(s, txn, &k, &v) == 0 && v.mv_size == LSN_REC_LEN);
	uint8_t rec[LSN_REC_LEN];
	memcpy(rec, v.mv_data, sizeof rec);
	if (what == FLIP_COMMIT) {
		/* One bit of the commit's operation text, nothing else. */
		uint8_t ck[COMMIT_KEY_LEN];
		commit_key(ck, st_get_le64(rec + 64), st_get_le64(rec + 72));
		MDB_val cv = {sizeof ck, ck}, cd;
		REQUIRE(store_get(s, txn, &cv, &cd) == 0);
		uint8_t *copy = malloc(cd.mv_size);
		memcpy(copy, cd.mv_data, cd.mv_size);
		copy[cd.mv_size - 1] ^= 1;
		MDB_val nd = {cd.mv_size, copy};
		REQUIRE(store_rec_put(s, txn, NULL, &cv, &nd, 0) == 0);
		free(copy);
	} else if (what == DROP_LSN || what == DROP_LAST_LSN) {
		REQUIRE(mdb_del(txn, s->dbi, &k, NULL) == 0);
	} else {
		lsn_key(key2, lsn + 1);
		MDB_val k2 = {sizeof key2, key2}, v2;
		REQUIRE(store_get(s, txn, &k2, &v2) == 0);
		uint8_t rec2[LSN_REC_LEN];
		memcpy(rec2, v2.mv_data, sizeof rec2);
		MDB_val a = {sizeof rec2, rec2}, b = {sizeof rec, rec};
		REQUIRE(store_rec_put(s, txn, NULL, &k, &a, 0) == 0);
		REQUIRE(store_rec_put(s, txn, NULL, &k2, &b, 0) == 0);
	}
	REQUIRE(mdb_txn_commit(txn) == 0);
}

static uint32_t problems_of(st_store *s, const char *needle)
{
	struct st_verify_result vr;
	struct st_err err;
	uint32_t hits = 0;
	REQUIRE(st_verify(s, &vr, &err) == ST_OK);
	for (uint32_t i = 0; i < vr.nproblems; i++) {
		fprintf(stderr, "    problem: %s\n", vr.problems[i]);
		hits += strstr(vr.problems[i], needle) != NULL;
	}
	CHECK(vr.nproblems > 0);
	st_verify_result_fini(&vr);
	return hits;
}

/* A changed commit, a dropped LSN record and two swapped ones are each
 * found by st_verify; a store whose log lost its newest record is refused
 * at open. */
static void t_tampering_detected(void)
{
	static const struct {
		enum surgery what;
		const char *needle;
	} cases[] = {
		{FLIP_COMMIT, "does not match its digest"},
		{DROP_LSN, "missing"},
		{SWAP_LSN, "chain hash does not follow"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		char dir[128];
		st_store *s = two_tables(dir, sizeof dir);
		mixed_history(s);
		operate(s, cases[i].what, 5);
		CHECK(problems_of(s, cases[i].needle) > 0);
		st_store_close(s);
	}
	char dir[128];
	struct st_err err;
	st_store *s = two_tables(dir, sizeof dir);
	uint64_t last = mixed_history(s);
	operate(s, DROP_LAST_LSN, last);
	st_store_close(s);
	CHECK_EQ(st_store_open(dir, NULL, &s, &err), ST_ECORRUPT);
	CHECK_CONTAINS(err.msg, "the commit log ends at LSN 12 but the tables' newest commit is LSN 13");
	/* A changed recent commit is refused at open too (the newest 64). */
	s = two_tables(dir, sizeof dir);
	last = mixed_history(s);
	operate(s, FLIP_COMMIT, last - 1);
	st_store_close(s);
	CHECK_EQ(st_store_open(dir, NULL, &s, &err), ST_ECORRUPT);
	CHECK_CONTAINS(err.msg, "was changed");
}

/* A head recorded earlier is found in the chain; an unknown one is a
 * problem naming it. */
static void t_verify_head(void)
{
	char dir[128];
	struct st_err err;
	struct st_commit_result r;
	st_store *s = two_tables(dir, sizeof dir);
	struct st_chain_head h0, h1;
	REQUIRE(st_chain_head(s, &h0, &err) == ST_OK);
	CHECK_EQ(h0.lsn, 2);
	for (int i = 0; i < 5; i++)
		REQUIRE(put(s, "a", i, NULL, &r, &err) == ST_OK);
	REQUIRE(st_chain_head(s, &h1, &err) == ST_OK);
	struct st_verify_result vr;
	REQUIRE(st_verify_head(s, h0.hash, &vr, &err) == ST_OK);
	CHECK_EQ(vr.nproblems, 0);
	CHECK_EQ(vr.head_lsn, 2);
	CHECK_EQ(vr.last_lsn, 7);
	CHECK(!memcmp(vr.last_hash, h1.hash, ST_HASH_LEN));
	st_verify_result_fini(&vr);
	uint8_t other[ST_HASH_LEN];
	memcpy(other, h0.hash, sizeof other);
	other[0] ^= 0x80;
	REQUIRE(st_verify_head(s, other, &vr, &err) == ST_OK);
	CHECK_EQ(vr.head_lsn, 0);
	CHECK_EQ(vr.nproblems, 1);
	if (vr.nproblems)
		CHECK_CONTAINS(vr.problems[0], "is not in the chain");
	st_verify_result_fini(&vr);
	/* An empty store's head is the base: all zeros at LSN 0. */
	st_store *e;
	REQUIRE(st_store_open(fresh_dir(), NULL, &e, &err) == ST_OK);
	struct st_chain_head he;
	REQUIRE(st_chain_head(e, &he, &err) == ST_OK);
	CHECK_EQ(he.lsn, 0);
	st_store_close(e);
	st_store_close(s);
}

/* Vacuum's history pruning trims the log's front; what is left still
 * chains, and reading below the new start is ST_ERANGE. */
static void t_vacuum_trims_log(void)
{
	char dir[128];
	struct st_err err;
	struct st_commit_result r;
	snprintf(dir, sizeof dir, "%s", fresh_dir());
	st_store *s;
	struct st_store_opts o = {.log_retention_us = 1};
	REQUIRE(st_store_open(dir, &o, &s, &err) == ST_OK);
	struct st_column_def c[1] = {{"n", ST_TYPE_INT64, false}};
	struct st_table_spec a = {.name = "a", .cols = c, .ncols = 1};
	REQUIRE(st_table_create(s, &a, ST_CREATE_ERROR, NULL, &err) == ST_OK);
	for (int i = 0; i < 5; i++)
		REQUIRE(put(s, "a", i, NULL, &r, &err) == ST_OK);
	struct st_alter al = {ST_ALTER_SET_PROPERTY, "owner", "x", 0};
	REQUIRE(st_table_alter(s, "a", &al, &r, &err) == ST_OK); /* LSN 7, carries metadata */
	REQUIRE(put(s, "a", 9, NULL, &r, &err) == ST_OK);
	struct st_vacuum_opts vo = {.retain_us = 1, .force = true};
	struct st_vacuum_result vr;
	REQUIRE(st_vacuum(s, "a", &vo, &vr, &err) == ST_OK);
	CHECK_EQ(vr.commits_pruned, 6);
	st_vacuum_result_fini(&vr);
	struct st_log_entry *e;
	uint32_t n;
	CHECK_EQ(st_log_read(s, 1, 0, &e, &n, &err), ST_ERANGE);
	CHECK_CONTAINS(err.msg, "starts at LSN 7");
	REQUIRE(st_log_read(s, 7, 0, &e, &n, &err) == ST_OK);
	CHECK_EQ(n, 2);
	st_log_entries_free(e, n);
	struct st_verify_result v;
	REQUIRE(st_verify(s, &v, &err) == ST_OK);
	CHECK_EQ(v.nproblems, 0);
	st_verify_result_fini(&v);
	st_store_close(s);
	REQUIRE(st_store_open(dir, &o, &s, &err) == ST_OK);
	REQUIRE(put(s, "a", 10, NULL, &r, &err) == ST_OK);
	CHECK_EQ(r.lsn, 9);
	st_store_close(s);
}

/* Each LMDB failure keeps its own class (it was all ST_ECORRUPT). */
static void t_lmdb_error_classes(void)
{
	struct st_err err;
	CHECK_EQ(store_lmdb_err(&err, MDB_MAP_FULL, "x"), ST_ETOOBIG);
	CHECK_CONTAINS(err.msg, "map_size");
	CHECK_EQ(store_lmdb_err(&err, MDB_TXN_FULL, "x"), ST_ETOOBIG);
	CHECK_EQ(store_lmdb_err(&err, MDB_READERS_FULL, "x"), ST_EBUSY);
	CHECK_CONTAINS(err.msg, "reader slots");
	CHECK_EQ(store_lmdb_err(&err, MDB_PANIC, "x"), ST_EFAILED);
	CHECK_EQ(store_lmdb_err(&err, MDB_CORRUPTED, "x"), ST_ECORRUPT);
	CHECK_EQ(store_lmdb_err(&err, MDB_PAGE_NOTFOUND, "x"), ST_ECORRUPT);
	CHECK_EQ(store_lmdb_err(&err, MDB_VERSION_MISMATCH, "x"), ST_EVERSION);
	CHECK_EQ(store_lmdb_err(&err, MDB_BAD_TXN, "x"), ST_EINVAL);
	CHECK_CONTAINS(err.msg, "a strata bug");
	CHECK_EQ(store_lmdb_err(&err, EIO, "x"), EIO);
}

/* With every reader slot taken, a compaction says so (ST_EBUSY) instead
 * of reporting a conflict; once they are free it works. */
static void t_readers_full_is_busy(void)
{
	char dir[128];
	struct st_err err;
	struct st_commit_result r;
	st_store *s = two_tables(dir, sizeof dir);
	REQUIRE(put(s, "a", 1, NULL, &r, &err) == ST_OK);
	REQUIRE(put(s, "a", 2, NULL, &r, &err) == ST_OK);
	MDB_envinfo info;
	REQUIRE(mdb_env_info(s->env, &info) == 0); /* LMDB rounds the slots up */
	MDB_txn **held = calloc(info.me_maxreaders + 1, sizeof *held);
	uint32_t nheld = 0;
	/* Empty the read pool first, so every read needs a new slot. */
	pthread_mutex_lock(&s->pool_lock);
	for (uint32_t i = 0; i < s->npool; i++)
		mdb_txn_abort(s->pool[i]);
	s->npool = 0;
	pthread_mutex_unlock(&s->pool_lock);
	while (nheld <= info.me_maxreaders &&
	       mdb_txn_begin(s->env, NULL, MDB_RDONLY, &held[nheld]) == 0)
		nheld++;
	CHECK(nheld >= STORE_MAX_READERS && nheld < info.me_maxreaders + 1);
	int rc = st_table_compact(s, "a", &r, &err);
	CHECK_EQ(rc, ST_EBUSY);
	CHECK_CONTAINS(err.msg, "reader slots");
	for (uint32_t i = 0; i < nheld; i++)
		mdb_txn_abort(held[i]);
	free(held);
	CHECK_EQ(st_table_compact(s, "a", &r, &err), ST_OK);
	st_store_close(s);
}

/* An app version record that cannot be read is an error, never "this app
 * never wrote" (that would apply a retried write twice). */
static void t_app_version_lookup_fails_closed(void)
{
	char dir[128];
	struct st_err err;
	struct st_commit_result r;
	st_store *s = two_tables(dir, sizeof dir);
	struct st_write_opts o = {.app_id = "loader", .app_version = 1};
	REQUIRE(put(s, "a", 1, &o, &r, &err) == ST_OK);
	CHECK(!r.noop);
	REQUIRE(put(s, "a", 1, &o, &r, &err) == ST_OK);
	CHECK(r.noop);
	/* Damage the record: 7 bytes instead of 8. */
	MDB_txn *txn;
	uint8_t key[APP_KEY_MAX], seven[7] = {1};
	REQUIRE(mdb_txn_begin(s->env, NULL, 0, &txn) == 0);
	MDB_val k = app_key(key, 1, "loader"), v = {sizeof seven, seven};
	REQUIRE(store_rec_put(s, txn, NULL, &k, &v, 0) == 0);
	REQUIRE(mdb_txn_commit(txn) == 0);
	CHECK_EQ(put(s, "a", 1, &o, &r, &err), ST_ECORRUPT);
	CHECK_CONTAINS(err.msg, "app version record of 'loader'");
	st_store_close(s);
}

/* A scan tells the LSN, time and oldest retained version of what it
 * reads (DESCRIBE), and a drop its commit. */
static void t_scan_info_and_drop_result(void)
{
	char dir[128];
	struct st_err err;
	struct st_commit_result r1, r2, rd;
	st_store *s = two_tables(dir, sizeof dir);
	REQUIRE(put(s, "a", 1, NULL, &r1, &err) == ST_OK);
	REQUIRE(put(s, "a", 2, NULL, &r2, &err) == ST_OK);
	for (int v = 1; v <= 2; v++) {
		st_scan *sc;
		struct st_scan_info in;
		REQUIRE(st_scan_open(s, "a", (struct st_at){ST_AT_VERSION, v}, NULL, 0, NULL, &sc,
				     &err) == ST_OK);
		st_scan_info(sc, &in);
		const struct st_commit_result *r = v == 1 ? &r1 : &r2;
		CHECK_EQ(in.version, r->version);
		CHECK_EQ(in.lsn, r->lsn);
		CHECK_EQ(in.time_us, r->time_us);
		CHECK_EQ(in.oldest, 0);
		st_scan_close(sc);
	}
	REQUIRE(st_table_drop(s, "a", &rd, &err) == ST_OK);
	CHECK_EQ(rd.version, 3);
	CHECK_EQ(rd.lsn, st_store_lsn(s));
	CHECK(rd.time_us > r2.time_us);
	st_store_close(s);
}

/* A file record lost (as a damaged LMDB page can lose one) or changed is
 * found by verify's cross-check against the commits that added the file,
 * with the rows it costs; a clean store has no such problem. */
static void t_verify_cross_checks_files(void)
{
	char dir[128];
	st_store *s = two_tables(dir, sizeof dir);
	struct st_commit_result r;
	struct st_err err;
	for (int i = 0; i < 5; i++)
		REQUIRE(put(s, "a", i, NULL, &r, &err) == ST_OK);
	struct st_verify_result res;
	REQUIRE(st_verify(s, &res, &err) == ST_OK);
	CHECK_EQ(res.nproblems, 0);
	st_verify_result_fini(&res);
	/* Lose the record of a's second file, and change the rows of its third. */
	MDB_txn *txn;
	struct file_rec *f;
	uint32_t n;
	REQUIRE(mdb_txn_begin(s->env, NULL, 0, &txn) == 0);
	struct table_head h;
	REQUIRE(head_get(s, txn, "a", &h, &err) == ST_OK);
	REQUIRE(store_files_at(s, txn, h.tid, h.version, &f, &n, &err) == ST_OK);
	REQUIRE(n == 5);
	uint8_t key[FILE_KEY_LEN];
	file_key(key, h.tid, STORE_LIVE, f[1].fid);
	MDB_val k = {sizeof key, key}, v;
	REQUIRE(mdb_del(txn, s->dbi, &k, NULL) == 0);
	file_key(key, h.tid, STORE_LIVE, f[2].fid);
	REQUIRE(store_get(s, txn, &k, &v) == 0);
	uint8_t *copy = malloc(v.mv_size);
	REQUIRE(copy != NULL);
	memcpy(copy, v.mv_data, v.mv_size);
	st_put_le64(copy + 32, 99); /* rows */
	MDB_val nv = {v.mv_size, copy};
	REQUIRE(store_rec_put(s, txn, NULL, &k, &nv, 0) == 0);
	free(copy);
	uint64_t lost = f[1].fid, changed = f[2].fid;
	file_recs_free(f, n);
	head_fini(&h);
	REQUIRE(mdb_txn_commit(txn) == 0);
	REQUIRE(st_verify(s, &res, &err) == ST_OK);
	char want_lost[160], want_changed[80];
	snprintf(want_lost, sizeof want_lost, "table 'a': file %llu (1 rows, added in version 2) is "
		 "live per the commit log but has no file record", (unsigned long long)lost);
	snprintf(want_changed, sizeof want_changed, "table 'a': file %llu's record differs",
		 (unsigned long long)changed);
	bool saw_lost = false, saw_changed = false;
	for (uint32_t i = 0; i < res.nproblems; i++) {
		saw_lost |= strstr(res.problems[i], want_lost) != NULL;
		saw_changed |= strstr(res.problems[i], want_changed) != NULL;
	}
	CHECK(saw_lost);
	CHECK(saw_changed);
	/* The changed record also disagrees with its segment's footer. */
	CHECK_EQ(res.nproblems, 3);
	for (uint32_t i = 0; i < res.nproblems; i++)
		printf("    problem: %s\n", res.problems[i]);
	st_verify_result_fini(&res);
	st_store_close(s);
}


/* Flip one bit of a record's value in LMDB, as a bad disk would (no
 * checksum fixed up). */
static void flip_record(st_store *s, const uint8_t *key, size_t klen, size_t at)
{
	MDB_txn *txn;
	REQUIRE(mdb_txn_begin(s->env, NULL, 0, &txn) == 0);
	MDB_val k = {klen, (void *)key}, v;
	REQUIRE(mdb_get(txn, s->dbi, &k, &v) == 0 && v.mv_size > at);
	uint8_t *copy = malloc(v.mv_size);
	REQUIRE(copy != NULL);
	memcpy(copy, v.mv_data, v.mv_size);
	copy[at] ^= 0x10;
	MDB_val nv = {v.mv_size, copy};
	REQUIRE(mdb_put(txn, s->dbi, &k, &nv, 0) == 0);
	REQUIRE(mdb_txn_commit(txn) == 0);
	free(copy);
}

/* A bit flipped in a file record is ST_ECORRUPT naming the table, the
 * record kind and the key on the first read that touches it, never a
 * wrong answer; the table is refused from then on (reads and writes, also
 * those that would not touch the record), the other table serves, verify
 * reports the record, and a drop clears the table away. */
static void t_record_checksums(void)
{
	char dir[128];
	struct st_err err;
	struct st_commit_result r;
	st_store *s = two_tables(dir, sizeof dir);
	for (int i = 0; i < 4; i++)
		REQUIRE(put(s, i % 2 ? "a" : "b", i, NULL, &r, &err) == ST_OK);
	MDB_txn *txn;
	struct table_head h;
	struct file_rec *f;
	uint32_t n;
	REQUIRE(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) == 0);
	REQUIRE(head_get(s, txn, "a", &h, &err) == ST_OK);
	REQUIRE(store_files_at(s, txn, h.tid, h.version, &f, &n, &err) == ST_OK);
	REQUIRE(n == 2);
	uint8_t key[FILE_KEY_LEN];
	file_key(key, h.tid, STORE_LIVE, f[1].fid);
	file_recs_free(f, n);
	head_fini(&h);
	mdb_txn_abort(txn);
	flip_record(s, key, sizeof key, 33); /* the row count */
	st_scan *sc;
	CHECK_EQ(st_scan_open(s, "a", (struct st_at){ST_AT_LATEST, 0}, NULL, 0, NULL, &sc, &err),
		 ST_ECORRUPT);
	CHECK_CONTAINS(err.msg, "table 'a' (id 1): its file record (key 03000000000000000101ff");
	CHECK_CONTAINS(err.msg, "fails its checksum");
	/* Version 1 has only the intact file: refused all the same. */
	CHECK_EQ(st_scan_open(s, "a", (struct st_at){ST_AT_VERSION, 1}, NULL, 0, NULL, &sc, &err),
		 ST_ECORRUPT);
	CHECK_CONTAINS(err.msg, "refused for reads and writes");
	CHECK_EQ(put(s, "a", 9, NULL, &r, &err), ST_ECORRUPT);
	uint64_t tids[4];
	CHECK_EQ(st_damaged_tables(s, tids, 4), 1);
	CHECK_EQ(tids[0], 1);
	REQUIRE(st_scan_open(s, "b", (struct st_at){ST_AT_LATEST, 0}, NULL, 0, NULL, &sc, &err) ==
		ST_OK);
	st_scan_close(sc);
	REQUIRE(put(s, "b", 9, NULL, &r, &err) == ST_OK);
	struct st_verify_result vr;
	REQUIRE(st_verify(s, &vr, &err) == ST_OK);
	bool saw = false;
	for (uint32_t i = 0; i < vr.nproblems; i++) {
		printf("    problem: %s\n", vr.problems[i]);
		saw |= strstr(vr.problems[i], "its file record") != NULL;
	}
	CHECK(saw);
	CHECK(vr.records > 10);
	st_verify_result_fini(&vr);
	/* A drop takes the damaged table: the damaged record is deleted (not
	 * moved under a new checksum), the mark cleared, the store clean. */
	REQUIRE(st_table_drop(s, "a", NULL, &err) == ST_OK);
	CHECK_EQ(st_damaged_tables(s, tids, 4), 0);
	REQUIRE(st_verify(s, &vr, &err) == ST_OK);
	CHECK_EQ(vr.nproblems, 0);
	for (uint32_t i = 0; i < vr.nproblems; i++)
		printf("    after the drop: %s\n", vr.problems[i]);
	st_verify_result_fini(&vr);
	st_store_close(s);
}

/* Turn s's store back into format 5 (values without their trailer), but
 * for the first `converted` records in key order, which keep theirs, with
 * the upgrade's marker naming the last of them: an upgrade to format 6
 * interrupted there. Returns the number of records. */
static uint32_t back_to_format5(st_store *s, uint32_t converted)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	REQUIRE(mdb_txn_begin(s->env, NULL, 0, &txn) == 0);
	REQUIRE(mdb_cursor_open(txn, s->dbi, &cur) == 0);
	MDB_val k, v;
	uint32_t nrec = 0;
	struct st_buf all = {0};
	for (int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		uint8_t hd[8];
		st_put_le32(hd, (uint32_t)k.mv_size);
		st_put_le32(hd + 4, (uint32_t)v.mv_size - 4);
		st_buf_append(&all, hd, 8);
		st_buf_append(&all, k.mv_data, k.mv_size);
		st_buf_append(&all, v.mv_data, v.mv_size - 4);
		nrec++;
	}
	REQUIRE(!all.oom);
	uint32_t i = 0;
	for (size_t at = 0; at < all.len; i++) {
		MDB_val bk = {st_get_le32(all.data + at), all.data + at + 8};
		MDB_val bv = {st_get_le32(all.data + at + 4), all.data + at + 8 + bk.mv_size};
		bool format = bk.mv_size == 7 && !memcmp(bk.mv_data, "\001format", 7);
		if (format)
			st_put_le32(bv.mv_data, 5);
		if (format || i >= converted)
			REQUIRE(mdb_put(txn, s->dbi, &bk, &bv, 0) == 0);
		if (i + 1 == converted) {
			MDB_val mk = {9, "\001upgrade6"};
			REQUIRE(store_rec_put(s, txn, NULL, &mk, &bk, 0) == 0);
		}
		at += 8 + bk.mv_size + bv.mv_size;
	}
	st_buf_free(&all);
	mdb_cursor_close(cur);
	REQUIRE(mdb_txn_commit(txn) == 0);
	return nrec;
}

/* A format 5 store (no record checksums) is upgraded in place at open,
 * every record gaining its checksum, and reads the same afterwards; an
 * upgrade interrupted halfway goes on from its marker (a record converted
 * twice would fail its checksum). */
static void t_format5_upgraded(void)
{
	for (int half = 0; half < 2; half++) {
		char dir[128];
		struct st_err err;
		struct st_commit_result r;
		st_store *s = two_tables(dir, sizeof dir);
		uint64_t last = mixed_history(s);
		struct st_verify_result vr;
		REQUIRE(st_verify(s, &vr, &err) == ST_OK);
		uint32_t nrec = (uint32_t)vr.records;
		st_verify_result_fini(&vr);
		CHECK_EQ(back_to_format5(s, half ? nrec / 2 : 0), nrec);
		st_store_close(s);
		if (st_store_open(dir, NULL, &s, &err) != ST_OK)
			printf("    %s\n", err.msg);
		REQUIRE(s != NULL);
		struct st_open_report rep;
		st_store_open_report(s, &rep);
		CHECK_EQ(rep.format_from, 5);
		CHECK_EQ(rep.format, STORE_FORMAT);
		CHECK_EQ(st_store_lsn(s), last);
		REQUIRE(st_verify(s, &vr, &err) == ST_OK);
		CHECK_EQ(vr.nproblems, 0);
		CHECK_EQ(vr.records, nrec);
		for (uint32_t i = 0; i < vr.nproblems; i++)
			printf("    problem: %s\n", vr.problems[i]);
		st_verify_result_fini(&vr);
		REQUIRE(put(s, "a", 5, NULL, &r, &err) == ST_OK);
		st_store_close(s);
	}
}

/* A format 6 store (no deletion vectors) opens as format 8: its records
 * are format 8 records (it has no keyed table to index), only the format
 * record changes. */
static void t_format6_upgraded(void)
{
	char dir[128];
	struct st_err err;
	struct st_commit_result r;
	st_store *s = two_tables(dir, sizeof dir);
	uint64_t last = mixed_history(s);
	MDB_txn *txn;
	REQUIRE(mdb_txn_begin(s->env, NULL, 0, &txn) == 0);
	uint8_t fb[4];
	st_put_le32(fb, 6);
	MDB_val fk = {7, "\001format"}, fv = {4, fb};
	REQUIRE(store_rec_put(s, txn, NULL, &fk, &fv, 0) == 0);
	REQUIRE(mdb_txn_commit(txn) == 0);
	st_store_close(s);
	REQUIRE(st_store_open(dir, NULL, &s, &err) == ST_OK);
	struct st_open_report rep;
	st_store_open_report(s, &rep);
	CHECK_EQ(rep.format_from, 6);
	CHECK_EQ(rep.format, 8);
	CHECK_EQ(st_store_lsn(s), last);
	struct st_verify_result vr;
	REQUIRE(st_verify(s, &vr, &err) == ST_OK);
	CHECK_EQ(vr.nproblems, 0);
	st_verify_result_fini(&vr);
	REQUIRE(put(s, "a", 5, NULL, &r, &err) == ST_OK);
	st_store_close(s);
	REQUIRE(st_store_open(dir, NULL, &s, &err) == ST_OK);
	st_store_open_report(s, &rep);
	CHECK_EQ(rep.format_from, 8);
	st_store_close(s);
}

/* The read guard (record.c): a fault inside it returns STORE_EFAULT, again
 * and again (the handler stays armed); a fault outside it still kills the
 * process (the previous handler, or the default action). */
static void t_guarded_reads_survive_faults(void)
{
	store_guard_init();
	long pg = sysconf(_SC_PAGESIZE);
	uint8_t *m = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			  -1, 0);
	REQUIRE(m != MAP_FAILED);
	m[0] = 42;
	REQUIRE(mprotect(m + pg, (size_t)pg, PROT_NONE) == 0);
	uint8_t b = 0;
	CHECK_EQ(store_guard_probe(m, &b), 0);
	CHECK_EQ(b, 42);
	for (int i = 0; i < 3; i++)
		CHECK_EQ(store_guard_probe(m + pg + i, &b), STORE_EFAULT);
	CHECK_EQ(store_guard_probe(m, &b), 0);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY); /* a sanitizer's report of it */
		if (null >= 0)
			dup2(null, 2);
		volatile uint8_t *q = m + pg;
		_exit(*q == 0 ? 0 : 0); /* faults: never exits 0 */
	}
	int ws = 0;
	REQUIRE(waitpid(pid, &ws, 0) == pid);
	CHECK(WIFSIGNALED(ws) || (WIFEXITED(ws) && WEXITSTATUS(ws) != 0));
	munmap(m, (size_t)pg * 2);
}

/* One write of n rows to table (column n): a segment file, not inline. */
static void put_big(st_store *s, const char *table, uint32_t n)
{
	struct st_commit_result r;
	struct st_err err;
	int64_t *big = malloc(n * sizeof *big);
	REQUIRE(big != NULL);
	for (uint32_t i = 0; i < n; i++)
		big[i] = (int64_t)i * 7919 % 100003;
	const char *names[1] = {"n"};
	struct st_vec vec = {.type = ST_TYPE_INT64, .n = n, .data = big};
	struct st_batch b = {1, names, &vec, n};
	REQUIRE(st_write(s, table, &b, 1, NULL, &r, &err) == ST_OK);
	free(big);
}

static int64_t mono_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* A scrub pass checks what st_verify checks (the same segments, commits and
 * records on a quiet store), keeps to its rate (a lower bound on its time:
 * it sleeps), stops when told, finds a damaged segment file, refuses that
 * table and only that one, and scrubs one table when asked. */
static void t_scrub(void)
{
	char dir[128];
	st_store *s = two_tables(dir, sizeof dir);
	struct st_commit_result r;
	struct st_err err;
	for (int i = 0; i < 20; i++) /* inline segments */
		REQUIRE(put(s, "a", i, NULL, &r, &err) == ST_OK);
	put_big(s, "b", 50000); /* a segment file */
	st_store_close(s);
	REQUIRE(st_store_open(dir, NULL, &s, &err) == ST_OK);
	struct st_open_report rep;
	st_store_open_report(s, &rep);
	CHECK_EQ(rep.format_from, rep.format);
	CHECK_EQ(rep.tables, 2);
	CHECK_EQ(rep.commits, 23); /* versions 0-20 of a, 0-1 of b */
	CHECK_EQ(rep.log_records, 23);
	CHECK_EQ(rep.damaged, 0);
	struct st_verify_result vr, sr;
	REQUIRE(st_verify(s, &vr, &err) == ST_OK);
	CHECK_EQ(vr.nproblems, 0);
	struct st_scrub_progress pg = {0};
	struct st_scrub_opts o = {.progress = &pg};
	bool stopped = true;
	REQUIRE(st_scrub(s, &o, &sr, &stopped, &err) == ST_OK);
	CHECK(!stopped);
	CHECK_EQ(sr.nproblems, 0);
	CHECK_EQ(sr.segments, vr.segments);
	CHECK_EQ(sr.segments, 21);
	CHECK_EQ(sr.commits, vr.commits);
	CHECK_EQ(sr.records, vr.records);
	CHECK_EQ(pg.tables_done, 2);
	CHECK_EQ(pg.tables_total, 2);
	CHECK(pg.bytes_done > 0 && pg.bytes_total > 0);
	st_verify_result_fini(&vr);
	st_verify_result_fini(&sr);

	/* 1 MB/s is a byte per µs: the pass cannot end before its bytes allow. */
	o.rate_mb_s = 1;
	int64_t t0 = mono_us();
	REQUIRE(st_scrub(s, &o, &sr, &stopped, &err) == ST_OK);
	int64_t took = mono_us() - t0;
	CHECK((uint64_t)took + 2000 >= pg.bytes_done);
	CHECK_EQ(sr.nproblems, 0);
	st_verify_result_fini(&sr);
	int stop = 1;
	o.stop = &stop;
	REQUIRE(st_scrub(s, &o, &sr, &stopped, &err) == ST_OK);
	CHECK(stopped);
	CHECK_EQ(sr.segments, 0);
	st_verify_result_fini(&sr);
	o = (struct st_scrub_opts){.table = "nope"};
	CHECK_EQ(st_scrub(s, &o, &sr, &stopped, &err), ST_ENOTFOUND);

	/* Damage b's segment file: the scrub of a finds nothing, b's finds it. */
	char path[256];
	snprintf(path, sizeof path, "%s/tables", dir);
	DIR *d = opendir(path);
	REQUIRE(d != NULL);
	struct dirent *de;
	char seg[512] = "";
	while (!seg[0] && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char sub[400];
		snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
		DIR *sd = opendir(sub);
		struct dirent *f;
		while (sd && (f = readdir(sd)))
			if (strstr(f->d_name, ".seg"))
				snprintf(seg, sizeof seg, "%s/%s", sub, f->d_name);
		if (sd)
			closedir(sd);
	}
	closedir(d);
	REQUIRE(seg[0]);
	int fd = open(seg, O_RDWR);
	REQUIRE(fd >= 0);
	uint8_t byte;
	REQUIRE(pread(fd, &byte, 1, 200) == 1);
	byte ^= 4;
	REQUIRE(pwrite(fd, &byte, 1, 200) == 1);
	close(fd);
	o = (struct st_scrub_opts){.table = "a"};
	REQUIRE(st_scrub(s, &o, &sr, &stopped, &err) == ST_OK);
	CHECK_EQ(sr.nproblems, 0);
	CHECK_EQ(sr.segments, 20);
	CHECK(sr.records > 20);
	st_verify_result_fini(&sr);
	o.table = "b";
	REQUIRE(st_scrub(s, &o, &sr, &stopped, &err) == ST_OK);
	CHECK_EQ(sr.nproblems, 1);
	if (sr.nproblems)
		CHECK_CONTAINS(sr.problems[0], "table 'b': file segment");
	st_verify_result_fini(&sr);
	uint64_t tids[4];
	CHECK_EQ(st_damaged_tables(s, tids, 4), 1);
	st_scan *sc;
	CHECK_EQ(st_scan_open(s, "b", (struct st_at){ST_AT_LATEST, 0}, NULL, 0, NULL, &sc, &err),
		 ST_ECORRUPT);
	CHECK_CONTAINS(err.msg, "refused for reads and writes");
	REQUIRE(st_scan_open(s, "a", (struct st_at){ST_AT_LATEST, 0}, NULL, 0, NULL, &sc, &err) ==
		ST_OK);
	st_scan_close(sc);
	st_store_close(s);
}

/* Replace the value of k with v (its checksum recomputed), without fsync. */
static void put_raw(st_store *s, const MDB_val *k, const void *v, size_t n)
{
	MDB_txn *txn;
	REQUIRE(mdb_txn_begin(s->env, NULL, 0, &txn) == 0);
	MDB_val kk = *k, vv = {n, (void *)v};
	REQUIRE(store_rec_put(s, txn, NULL, &kk, &vv, 0) == 0);
	REQUIRE(mdb_txn_commit(txn) == 0);
}

/* Every read of table a and a verify, on whatever its records say: errors
 * are fine, a crash (ASan) or a hang is not. */
static void read_everything(st_store *s)
{
	struct st_err err;
	struct act_commit **h;
	uint32_t n;
	if (st_history(s, "a", 0, &h, &n, &err) == ST_OK) {
		for (uint32_t i = 0; i < n; i++)
			act_commit_free(h[i]);
		free(h);
	}
	st_scan *sc;
	if (st_scan_open(s, "a", (struct st_at){ST_AT_LATEST, 0}, NULL, 0, NULL, &sc, &err) ==
	    ST_OK) {
		const struct st_scan_batch *b;
		while (st_scan_next(sc, &b, &err) == ST_OK && b)
			;
		st_scan_close(sc);
	}
	struct act_metadata *m;
	if (st_table_describe(s, "a", -1, &m, &err) == ST_OK)
		act_metadata_free(m);
	struct st_verify_result vr;
	if (st_verify(s, &vr, &err) == ST_OK)
		st_verify_result_fini(&vr);
	struct st_scrub_opts o = {.table = "a"};
	bool stopped;
	if (st_scrub(s, &o, &vr, &stopped, &err) == ST_OK)
		st_verify_result_fini(&vr);
}

/* A record whose bytes were changed and whose checksum was recomputed
 * (what a CRC cannot catch: a bug or a hostile writer): history, scans,
 * describe and verify must fail cleanly on every bit of a's head, its
 * newest commit, its newest (inline) file record and that commit's LSN
 * record, never crash or hang. */
static void t_checksummed_damage_never_crashes(void)
{
	char dir[128];
	st_store *s = two_tables(dir, sizeof dir);
	struct st_commit_result r;
	struct st_err err;
	for (int i = 0; i < 4; i++)
		REQUIRE(put(s, "a", i, NULL, &r, &err) == ST_OK);
	struct st_alter al = {ST_ALTER_SET_PROPERTY, "owner", "x", 0};
	REQUIRE(st_table_alter(s, "a", &al, &r, &err) == ST_OK);
	REQUIRE(mdb_env_set_flags(s->env, MDB_NOSYNC, 1) == 0);
	MDB_txn *txn;
	struct table_head h;
	REQUIRE(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) == 0);
	REQUIRE(head_get(s, txn, "a", &h, &err) == ST_OK);
	uint8_t hk[HEAD_KEY_LEN], ck[COMMIT_KEY_LEN], fk[FILE_KEY_LEN], lk[LSN_KEY_LEN];
	table_key(hk, h.tid, REC_HEAD);
	commit_key(ck, h.tid, h.version);
	struct file_rec *f;
	uint32_t nf;
	REQUIRE(store_files_at(s, txn, h.tid, h.version, &f, &nf, &err) == ST_OK && nf == 4);
	file_key(fk, h.tid, STORE_LIVE, f[3].fid);
	lsn_key(lk, h.lsn);
	file_recs_free(f, nf);
	head_fini(&h);
	mdb_txn_abort(txn);
	const MDB_val keys[4] = {{sizeof hk, hk}, {sizeof ck, ck}, {sizeof fk, fk}, {sizeof lk, lk}};
	uint64_t trials = 0;
	for (int w = 0; w < 4; w++) {
		REQUIRE(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) == 0);
		MDB_val k = keys[w], v;
		REQUIRE(store_get(s, txn, &k, &v) == 0);
		size_t n = v.mv_size;
		uint8_t *orig = malloc(n), *copy = malloc(n);
		REQUIRE(orig && copy);
		memcpy(orig, v.mv_data, n);
		mdb_txn_abort(txn);
		for (size_t at = 0; at < n; at++)
			for (int bit = 0; bit < 8; bit += 3) {
				memcpy(copy, orig, n);
				copy[at] ^= (uint8_t)(1u << bit);
				put_raw(s, &keys[w], copy, n);
				read_everything(s);
				put_raw(s, &keys[w], orig, n);
				store_undamage(s, key_tid(&keys[0]));
				trials++;
			}
		free(orig);
		free(copy);
	}
	CHECK(trials > 300);
	read_everything(s);
	struct st_verify_result vr;
	REQUIRE(st_verify(s, &vr, &err) == ST_OK);
	CHECK_EQ(vr.nproblems, 0);
	st_verify_result_fini(&vr);
	st_store_close(s);
}

/* Open removes segment files no record names (writes that never
 * committed), but not one the commit log says is live: its record was lost
 * (here: deleted), the file stays for a repair and the table is refused. */
static void t_leftover_removal_keeps_live_files(void)
{
	char dir[128];
	st_store *s = two_tables(dir, sizeof dir);
	struct st_err err;
	enum { N = 20000 };
	put_big(s, "a", N);
	MDB_txn *txn;
	struct table_head h;
	struct file_rec *f;
	uint32_t nf;
	REQUIRE(mdb_txn_begin(s->env, NULL, 0, &txn) == 0);
	REQUIRE(head_get(s, txn, "a", &h, &err) == ST_OK);
	REQUIRE(store_files_at(s, txn, h.tid, h.version, &f, &nf, &err) == ST_OK && nf == 1);
	REQUIRE(!(f[0].flags & 1)); /* a segment file */
	char path[PATH_MAX], stray[PATH_MAX];
	store_seg_path(s, h.tid, f[0].fid, path, sizeof path);
	store_seg_path(s, h.tid, f[0].fid + 1000, stray, sizeof stray);
	uint8_t key[FILE_KEY_LEN];
	file_key(key, h.tid, STORE_LIVE, f[0].fid);
	MDB_val k = {sizeof key, key};
	REQUIRE(mdb_del(txn, s->dbi, &k, NULL) == 0);
	file_recs_free(f, nf);
	head_fini(&h);
	REQUIRE(mdb_txn_commit(txn) == 0);
	st_store_close(s);
	FILE *fp = fopen(stray, "w"); /* a write that never committed */
	REQUIRE(fp != NULL);
	fputs("x", fp);
	fclose(fp);
	REQUIRE(st_store_open(dir, NULL, &s, &err) == ST_OK);
	CHECK(access(path, F_OK) == 0);
	CHECK(access(stray, F_OK) != 0);
	struct st_open_report rep;
	st_store_open_report(s, &rep);
	CHECK_EQ(rep.leftovers, 1);
	CHECK_EQ(rep.damaged, 1);
	st_scan *sc;
	CHECK_EQ(st_scan_open(s, "a", (struct st_at){ST_AT_LATEST, 0}, NULL, 0, NULL, &sc, &err),
		 ST_ECORRUPT);
	CHECK_CONTAINS(err.msg, "is live per the commit log but has no file record");
	REQUIRE(st_scan_open(s, "b", (struct st_at){ST_AT_LATEST, 0}, NULL, 0, NULL, &sc, &err) ==
		ST_OK);
	st_scan_close(sc);
	st_store_close(s);
}

static void copy_file(const char *from, const char *to)
{
	FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
	REQUIRE(a && b);
	char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, a)) > 0)
		REQUIRE(fwrite(buf, 1, n, b) == n);
	fclose(a);
	fclose(b);
}

static int64_t rows_of(st_store *s, const char *table, struct st_err *err)
{
	st_scan *sc;
	int64_t rows = 0;
	int rc = st_scan_open(s, table, (struct st_at){ST_AT_LATEST, 0}, NULL, 0, NULL, &sc, err);
	if (rc != ST_OK)
		return -rc;
	const struct st_scan_batch *b;
	while ((rc = st_scan_next(sc, &b, err)) == ST_OK && b)
		rows += b->nsel;
	st_scan_close(sc);
	return rc == ST_OK ? rows : -rc;
}

/* A damaged segment file found by a read is remembered for repair and its
 * table refused; a copy that is not the good file is refused (and
 * removed); the good copy replaces it and the table serves again, unless
 * something else damages it too. */
static void t_segment_repair(void)
{
	char dir[128];
	st_store *s = two_tables(dir, sizeof dir);
	struct st_err err;
	enum { N = 20000 };
	put_big(s, "a", N);
	put_big(s, "b", N);
	CHECK_EQ(rows_of(s, "a", &err), N);
	MDB_txn *txn;
	struct table_head h;
	struct file_rec *f;
	uint32_t nf;
	REQUIRE(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) == 0);
	REQUIRE(head_get(s, txn, "a", &h, &err) == ST_OK);
	REQUIRE(store_files_at(s, txn, h.tid, h.version, &f, &nf, &err) == ST_OK && nf == 1);
	uint64_t tid = h.tid, fid = f[0].fid;
	file_recs_free(f, nf);
	head_fini(&h);
	mdb_txn_abort(txn);
	char path[PATH_MAX], good[PATH_MAX + 8], bad[PATH_MAX + 8];
	st_segment_path(s, tid, fid, path, sizeof path);
	snprintf(good, sizeof good, "%s.good", path);
	snprintf(bad, sizeof bad, "%s.bad", path);
	copy_file(path, good);
	int fd = open(path, O_RDWR);
	REQUIRE(fd >= 0);
	uint8_t byte;
	REQUIRE(pread(fd, &byte, 1, 100) == 1);
	byte ^= 1;
	REQUIRE(pwrite(fd, &byte, 1, 100) == 1);
	close(fd);
	copy_file(path, bad);

	CHECK_EQ(rows_of(s, "a", &err), -ST_ECORRUPT);
	struct st_bad_segment bs[4];
	REQUIRE(st_bad_segments(s, bs, 4) == 1);
	CHECK_EQ(bs[0].tid, tid);
	CHECK_EQ(bs[0].fid, fid);
	CHECK_EQ(rows_of(s, "a", &err), -ST_ECORRUPT);
	CHECK_CONTAINS(err.msg, "refused for reads and writes");
	CHECK_EQ(rows_of(s, "b", &err), N);
	CHECK_EQ(st_segment_repair(s, tid, fid, bad, &err), ST_ECORRUPT);
	CHECK_CONTAINS(err.msg, "is not the file its record names");
	CHECK(access(bad, F_OK) != 0);
	CHECK_EQ(st_segment_repair(s, tid, fid + 99, good, &err), ST_ENOTFOUND);
	CHECK_EQ(rows_of(s, "a", &err), -ST_ECORRUPT);
	REQUIRE(st_segment_repair(s, tid, fid, good, &err) == ST_OK);
	CHECK_EQ(st_bad_segments(s, bs, 4), 0);
	CHECK_EQ(rows_of(s, "a", &err), N);
	struct st_verify_result vr;
	REQUIRE(st_verify(s, &vr, &err) == ST_OK);
	CHECK_EQ(vr.nproblems, 0);
	st_verify_result_fini(&vr);

	/* Damaged by more than the segment: the repair does not lift it. */
	copy_file(path, good);
	fd = open(path, O_RDWR);
	REQUIRE(fd >= 0 && pwrite(fd, "\xff\xff", 2, 100) == 2);
	close(fd);
	CHECK_EQ(rows_of(s, "a", &err), -ST_ECORRUPT);
	store_damage(s, tid, "table 'a': something else");
	REQUIRE(st_segment_repair(s, tid, fid, good, &err) == ST_OK);
	CHECK_EQ(rows_of(s, "a", &err), -ST_ECORRUPT);
	st_store_close(s);
}

static const struct test_case tests[] = {
	{"record_checksums", t_record_checksums},
	{"segment_repair", t_segment_repair},
	{"leftover_removal_keeps_live_files", t_leftover_removal_keeps_live_files},
	{"checksummed_damage_never_crashes", t_checksummed_damage_never_crashes},
	{"scrub", t_scrub},
	{"guarded_reads_survive_faults", t_guarded_reads_survive_faults},
	{"format5_upgraded", t_format5_upgraded},
	{"format6_upgraded", t_format6_upgraded},
	{"verify_cross_checks_files", t_verify_cross_checks_files},
	{"scan_info_and_drop_result", t_scan_info_and_drop_result},
	{"log_in_lsn_order", t_log_in_lsn_order},
	{"tampering_detected", t_tampering_detected},
	{"verify_head", t_verify_head},
	{"vacuum_trims_log", t_vacuum_trims_log},
	{"lmdb_error_classes", t_lmdb_error_classes},
	{"readers_full_is_busy", t_readers_full_is_busy},
	{"app_version_lookup_fails_closed", t_app_version_lookup_fails_closed},
};
TEST_MAIN(tests)
