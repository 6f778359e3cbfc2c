/*
 * tests/unit/test_pagewalk.c — the LMDB page walker (daemon/store/pagewalk.h)
 * over a real environment built with mdb_* directly: many keys, values of
 * three pages (overflow runs) and deletions (a non-empty freelist). A clean
 * environment walks clean with mdb_stat's counts; each kind of damage done
 * to data.mdb with the environment closed (a branch's child pointer, a
 * leaf's page number, a node's key size, a key byte, a freelist entry
 * dropped or doubled) is reported by the line that names it; random bit
 * flips never crash the walk.
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/store/pagewalk.h"
#include "format/error.h"
#include "tests/test.h"

#define NKEYS 6000

static uint16_t g16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

static uint64_t g64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static void p16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static void p64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static MDB_env *env_open(const char *dir)
{
	MDB_env *env;
	REQUIRE(mdb_env_create(&env) == 0);
	REQUIRE(mdb_env_set_mapsize(env, 256u << 20) == 0);
	int rc = mdb_env_open(env, dir, 0, 0644);
	if (rc)
		mdb_env_close(env);
	REQUIRE(rc == 0);
	return env;
}

/* A closed env in a fresh dir: NKEYS keys "k%08d", every 50th value 10,000
 * bytes (a three-page run at 4 KiB pages), then a third of the keys deleted
 * and, in a last txn, a few more. */
static const char *build_env(void)
{
	const char *d = test_new_dir("pagewalk");
	static char dir[160];
	snprintf(dir, sizeof dir, "%s", d);
	REQUIRE(mkdir(dir, 0755) == 0);
	MDB_env *env = env_open(dir);
	MDB_txn *txn;
	MDB_dbi dbi;
	static uint8_t val[10000];
	for (size_t i = 0; i < sizeof val; i++)
		val[i] = (uint8_t)(i * 131 + 7);
	for (int batch = 0; batch < 4; batch++) {
		REQUIRE(mdb_txn_begin(env, NULL, 0, &txn) == 0);
		REQUIRE(mdb_dbi_open(txn, NULL, 0, &dbi) == 0);
		for (int i = batch; i < NKEYS; i += 4) {
			char k[16];
			snprintf(k, sizeof k, "k%08d", i);
			MDB_val key = {strlen(k), k},
			        v = {i % 50 ? 200u + i % 37 : sizeof val, val};
			REQUIRE(mdb_put(txn, dbi, &key, &v, 0) == 0);
		}
		REQUIRE(mdb_txn_commit(txn) == 0);
	}
	REQUIRE(mdb_txn_begin(env, NULL, 0, &txn) == 0);
	for (int i = 0; i < NKEYS; i += 3) {
		char k[16];
		snprintf(k, sizeof k, "k%08d", i);
		MDB_val key = {strlen(k), k};
		REQUIRE(mdb_del(txn, dbi, &key, NULL) == 0);
	}
	REQUIRE(mdb_txn_commit(txn) == 0);
	REQUIRE(mdb_txn_begin(env, NULL, 0, &txn) == 0);
	for (int i = 3001; i < 3400; i += 3) {
		char k[16];
		snprintf(k, sizeof k, "k%08d", i);
		MDB_val key = {strlen(k), k};
		REQUIRE(mdb_del(txn, dbi, &key, NULL) == 0);
	}
	REQUIRE(mdb_txn_commit(txn) == 0);
	mdb_env_close(env);
	return dir;
}

/* The file, the page size and the current meta of a closed env. */
struct file {
	int fd;            /* data.mdb, read-write */
	uint32_t psize;    /* page size */
	uint8_t meta[256]; /* the newest meta page's first bytes */
};

static void file_open(struct file *f, const char *dir)
{
	char p[256];
	snprintf(p, sizeof p, "%s/data.mdb", dir);
	f->fd = open(p, O_RDWR);
	REQUIRE(f->fd >= 0);
	uint8_t m[2][256];
	REQUIRE(pread(f->fd, m[0], sizeof m[0], 0) == (ssize_t)sizeof m[0]);
	f->psize = (uint32_t)g64(m[0] + PW_META_DBS) & 0xffffffffu;
	REQUIRE(f->psize >= 512);
	REQUIRE(pread(f->fd, m[1], sizeof m[1], f->psize) == (ssize_t)sizeof m[1]);
	int cur = g64(m[1] + PW_META_TXNID) > g64(m[0] + PW_META_TXNID);
	memcpy(f->meta, m[cur], sizeof f->meta);
}

static void page_read(struct file *f, uint64_t pg, uint8_t *buf)
{
	REQUIRE(pread(f->fd, buf, f->psize, (off_t)(pg * f->psize)) == (ssize_t)f->psize);
}

static void page_write(struct file *f, uint64_t pg, const uint8_t *buf)
{
	REQUIRE(pwrite(f->fd, buf, f->psize, (off_t)(pg * f->psize)) == (ssize_t)f->psize);
}

static uint64_t root_of(struct file *f, int dbi)
{
	return g64(f->meta + PW_META_DBS + dbi * PW_DB_SIZE + PW_DB_ROOT);
}

static uint8_t *node_at(uint8_t *page, uint32_t i)
{
	return page + g16(page + PW_PAGEHDRSZ + 2 * i);
}

static uint32_t nkeys(const uint8_t *page)
{
	return (g16(page + PW_OFF_LOWER) - PW_PAGEHDRSZ) / 2;
}

static uint64_t child_of(uint8_t *page, uint32_t i)
{
	uint8_t *n = node_at(page, i);
	return g16(n) | (uint64_t)g16(n + 2) << 16 | (uint64_t)g16(n + 4) << 32;
}

/* The main tree's second leaf from the left (its parent in *parent). */
static uint64_t a_leaf(struct file *f, uint64_t *parent)
{
	uint8_t *buf = malloc(f->psize);
	REQUIRE(buf);
	uint64_t pg = root_of(f, 1), par = 0;
	for (int depth = 0;; depth++) {
		page_read(f, pg, buf);
		if (g16(buf + PW_OFF_FLAGS) == PW_P_LEAF)
			break;
		REQUIRE(g16(buf + PW_OFF_FLAGS) == PW_P_BRANCH && depth < 8);
		par = pg;
		pg = child_of(buf, depth == 0 ? 1 : 0);
	}
	free(buf);
	*parent = par;
	return pg;
}

/* Reopen dir, walk, close: the report (rc must be ST_OK). */
static void walk_dir(const char *dir, struct pw_report *r)
{
	MDB_env *env = env_open(dir);
	MDB_txn *txn;
	char err[256];
	REQUIRE(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0);
	int rc = pw_walk(env, txn, r, err, sizeof err);
	if (rc)
		fprintf(stderr, "  pw_walk: %s\n", err);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	REQUIRE(rc == ST_OK);
}

/* A fresh environment to damage: its data file and a page buffer. */
struct damage {
	const char *dir;
	struct file f;
	uint8_t *buf;
};

static void damage_begin(struct damage *d)
{
	d->dir = build_env();
	file_open(&d->f, d->dir);
	d->buf = malloc(d->f.psize);
	REQUIRE(d->buf);
}

/* damage_begin, then a main-tree leaf (and its parent) read into d->buf. */
static uint64_t damage_leaf(struct damage *d, uint64_t *parent)
{
	damage_begin(d);
	uint64_t leaf = a_leaf(&d->f, parent);
	page_read(&d->f, leaf, d->buf);
	return leaf;
}

/* Write the damaged page pg back from d->buf, close the file and walk. */
static void damage_walk(struct damage *d, uint64_t pg, struct pw_report *r)
{
	page_write(&d->f, pg, d->buf);
	close(d->f.fd);
	free(d->buf);
	walk_dir(d->dir, r);
}

static bool has_problem(const struct pw_report *r, const char *want)
{
	for (uint32_t i = 0; i < r->nproblems; i++)
		if (strstr(r->problems[i], want))
			return true;
	for (uint32_t i = 0; i < r->nproblems; i++)
		fprintf(stderr, "    problem: %s\n", r->problems[i]);
	fprintf(stderr, "  wanted: %s\n", want);
	return false;
}

static void t_clean_env_walks_clean(void)
{
	const char *dir = build_env();
	MDB_env *env = env_open(dir);
	MDB_txn *txn;
	char err[256];
	REQUIRE(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0);
	struct pw_report r;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	REQUIRE(pw_walk(env, txn, &r, err, sizeof err) == ST_OK);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	for (uint32_t i = 0; i < r.nproblems; i++)
		fprintf(stderr, "    problem: %s\n", r.problems[i]);
	CHECK_EQ(r.nproblems, 0);
	MDB_stat ms, fs, es;
	MDB_envinfo info;
	REQUIRE(mdb_stat(txn, 1, &ms) == 0);
	REQUIRE(mdb_stat(txn, 0, &fs) == 0);
	REQUIRE(mdb_env_stat(env, &es) == 0);
	REQUIRE(mdb_env_info(env, &info) == 0);
	CHECK_EQ(r.psize, es.ms_psize);
	CHECK_EQ(r.trees[1].branch, ms.ms_branch_pages);
	CHECK_EQ(r.trees[1].leaf, ms.ms_leaf_pages);
	CHECK_EQ(r.trees[1].overflow, ms.ms_overflow_pages);
	CHECK_EQ(r.trees[1].entries, ms.ms_entries);
	CHECK_EQ(r.trees[1].depth, ms.ms_depth);
	CHECK_EQ(r.entries, NKEYS - NKEYS / 3 - 133);
	CHECK_EQ(r.trees[0].leaf, fs.ms_leaf_pages);
	CHECK_EQ(r.trees[0].entries, fs.ms_entries);
	CHECK(ms.ms_depth >= 2);
	CHECK(r.pages_overflow >= 3 * 60);
	CHECK(r.pages_free > 0);
	CHECK_EQ(r.pages_total, info.me_last_pgno + 1);
	CHECK_EQ(2 + r.pages_branch + r.pages_leaf + r.pages_overflow + r.pages_free,
	         r.pages_total);
	CHECK_EQ(r.pages_leaked, 0);
	CHECK_EQ(r.pages_twice, 0);
	printf("    %llu pages (%llu branch, %llu leaf, %llu overflow, %llu free) in %.2f ms\n",
	       (unsigned long long)r.pages_total, (unsigned long long)r.pages_branch,
	       (unsigned long long)r.pages_leaf, (unsigned long long)r.pages_overflow,
	       (unsigned long long)r.pages_free,
	       (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
	pw_report_fini(&r);
	mdb_txn_abort(txn);
	mdb_env_close(env);
}

static void t_branch_pointer_damaged(void)
{
	struct damage d;
	damage_begin(&d);
	uint64_t root = root_of(&d.f, 1), last = g64(d.f.meta + PW_META_LAST_PG);
	page_read(&d.f, root, d.buf);
	REQUIRE(g16(d.buf + PW_OFF_FLAGS) == PW_P_BRANCH);
	uint8_t *n = node_at(d.buf, 1);
	uint64_t bad = last + 1000;
	p16(n, bad & 0xffff);
	p16(n + 2, (bad >> 16) & 0xffff);
	p16(n + 4, (bad >> 32) & 0xffff);
	struct pw_report r;
	damage_walk(&d, root, &r);
	char want[160];
	snprintf(want, sizeof want,
	         "page %llu (page, main tree, parent %llu): page number outside 2..%llu",
	         (unsigned long long)bad, (unsigned long long)root, (unsigned long long)last);
	CHECK(has_problem(&r, want));
	CHECK(r.pages_leaked > 0);
	CHECK(has_problem(&r, "leaked (in no tree and not in the freelist)"));
	CHECK(has_problem(&r, "main tree (root"));
	pw_report_fini(&r);
}

static void t_leaf_pgno_damaged(void)
{
	struct damage d;
	uint64_t parent, leaf = damage_leaf(&d, &parent);
	p64(d.buf + PW_OFF_PGNO, leaf + 1);
	struct pw_report r;
	damage_walk(&d, leaf, &r);
	char want[160];
	snprintf(
	    want, sizeof want, "page %llu (leaf, main tree, parent %llu): header says page %llu",
	    (unsigned long long)leaf, (unsigned long long)parent, (unsigned long long)(leaf + 1));
	CHECK(has_problem(&r, want));
	pw_report_fini(&r);
}

static void t_node_key_size_damaged(void)
{
	struct damage d;
	uint64_t parent, leaf = damage_leaf(&d, &parent);
	p16(node_at(d.buf, 0) + 6, 0xffff);
	struct pw_report r;
	damage_walk(&d, leaf, &r);
	char want[160];
	snprintf(want, sizeof want,
	         "page %llu (leaf, main tree, parent %llu): node 0 (key size "
	         "65535) runs past the page end",
	         (unsigned long long)leaf, (unsigned long long)parent);
	CHECK(has_problem(&r, want));
	pw_report_fini(&r);
}

static void t_key_flip_out_of_order(void)
{
	struct damage d;
	uint64_t parent, leaf = damage_leaf(&d, &parent);
	REQUIRE(nkeys(d.buf) >= 3);
	uint8_t *n = node_at(d.buf, 1);
	REQUIRE(g16(n + 6) == 9 && n[PW_NODESIZE] == 'k');
	n[PW_NODESIZE + 1] = 0x7f; /* "k\x7f..." sorts after node 2's "k0..." */
	struct pw_report r;
	damage_walk(&d, leaf, &r);
	char want[160];
	snprintf(want, sizeof want,
	         "page %llu (leaf, main tree, parent %llu): keys out of order "
	         "at node 2",
	         (unsigned long long)leaf, (unsigned long long)parent);
	CHECK(has_problem(&r, want));
	CHECK_EQ(r.nproblems, 1);
	pw_report_fini(&r);
}

/* A freelist record kept in its leaf (not on overflow pages) with at least
 * three pages: its leaf page in buf, its node index in *node. */
static uint64_t a_freelist_record(struct file *f, uint8_t *buf, uint32_t *node)
{
	uint64_t pg = root_of(f, 0);
	REQUIRE(pg != UINT64_MAX);
	page_read(f, pg, buf);
	REQUIRE(g16(buf + PW_OFF_FLAGS) == PW_P_LEAF);
	for (uint32_t i = 0; i < nkeys(buf); i++) {
		uint8_t *n = node_at(buf, i);
		if (g16(n + 4) != 0)
			continue;
		if (g64(n + PW_NODESIZE + 8) >= 3) {
			*node = i;
			return pg;
		}
	}
	REQUIRE(!"no inline freelist record of 3 pages");
	return 0;
}

static void t_freelist_entry_cleared(void)
{
	struct damage d;
	damage_begin(&d);
	uint32_t node;
	uint64_t pg = a_freelist_record(&d.f, d.buf, &node);
	uint8_t *idl = node_at(d.buf, node) + PW_NODESIZE + 8;
	uint64_t n = g64(idl), lost = g64(idl + 8 * n);
	p64(idl, n - 1);
	struct pw_report r;
	damage_walk(&d, pg, &r);
	char want[160];
	snprintf(want, sizeof want, "page %llu: leaked (in no tree and not in the freelist)",
	         (unsigned long long)lost);
	CHECK(has_problem(&r, want));
	CHECK_EQ(r.pages_leaked, 1);
	CHECK_EQ(r.nproblems, 1);
	pw_report_fini(&r);
}

static void t_freelist_entry_duplicated(void)
{
	struct damage d;
	damage_begin(&d);
	uint32_t node;
	uint64_t pg = a_freelist_record(&d.f, d.buf, &node);
	uint8_t *nd = node_at(d.buf, node);
	uint64_t txnid = g64(nd + PW_NODESIZE);
	uint8_t *idl = nd + PW_NODESIZE + 8;
	uint64_t twice = g64(idl + 8), lost = g64(idl + 16);
	p64(idl + 16, twice);
	struct pw_report r;
	damage_walk(&d, pg, &r);
	char want[160];
	snprintf(want, sizeof want,
	         "page %llu (free, freelist txn %llu, leaf %llu): listed twice "
	         "in the freelist",
	         (unsigned long long)twice, (unsigned long long)txnid, (unsigned long long)pg);
	CHECK(has_problem(&r, want));
	snprintf(want, sizeof want, "page %llu: leaked", (unsigned long long)lost);
	CHECK(has_problem(&r, want));
	CHECK_EQ(r.pages_twice, 1);
	CHECK_EQ(r.pages_leaked, 1);
	pw_report_fini(&r);
}

/* A freelist entry naming a main-tree leaf: the free page is also in a
 * tree, and the page the entry named before is leaked. */
static void t_free_page_in_tree(void)
{
	struct damage d;
	damage_begin(&d);
	uint64_t parent, leaf = a_leaf(&d.f, &parent);
	uint32_t node;
	uint64_t pg = a_freelist_record(&d.f, d.buf, &node);
	uint8_t *idl = node_at(d.buf, node) + PW_NODESIZE + 8;
	uint64_t lost = g64(idl + 8);
	p64(idl + 8, leaf);
	struct pw_report r;
	damage_walk(&d, pg, &r);
	char want[160];
	snprintf(want, sizeof want, "page %llu (free, freelist txn ", (unsigned long long)leaf);
	CHECK(has_problem(&r, want));
	CHECK(has_problem(&r, "free page also reached as a page of the main tree"));
	snprintf(want, sizeof want, "page %llu: leaked", (unsigned long long)lost);
	CHECK(has_problem(&r, want));
	CHECK_EQ(r.pages_twice, 1);
	pw_report_fini(&r);
}

/* Depth first from pg: the first leaf (in *leaf) with an F_BIGDATA node,
 * its overflow page and data size. */
static void find_big(struct file *f, uint64_t pg, int depth, uint64_t *leaf, uint64_t *ov,
                     uint64_t *dsize)
{
	uint8_t *buf = malloc(f->psize);
	REQUIRE(buf && depth < 8);
	page_read(f, pg, buf);
	for (uint32_t i = 0; i < nkeys(buf) && !*ov; i++) {
		uint8_t *n = node_at(buf, i);
		if (g16(buf + PW_OFF_FLAGS) == PW_P_BRANCH) {
			find_big(f, child_of(buf, i), depth + 1, leaf, ov, dsize);
		} else if (g16(n + 4) & PW_F_BIGDATA) {
			*leaf = pg;
			*ov = g64(n + PW_NODESIZE + g16(n + 6));
			*dsize = g16(n) | (uint64_t)g16(n + 2) << 16;
		}
	}
	free(buf);
}

/* An overflow run's page count cut below what its value needs. */
static void t_overflow_run_too_short(void)
{
	struct damage d;
	damage_begin(&d);
	uint64_t leaf = 0, ov = 0, dsize = 0;
	find_big(&d.f, root_of(&d.f, 1), 0, &leaf, &ov, &dsize);
	REQUIRE(ov != 0);
	page_read(&d.f, ov, d.buf);
	uint32_t pages;
	memcpy(&pages, d.buf + PW_OFF_PAGES, 4);
	REQUIRE(pages >= 2);
	pages = 1;
	memcpy(d.buf + PW_OFF_PAGES, &pages, 4);
	struct pw_report r;
	damage_walk(&d, ov, &r);
	char want[200];
	snprintf(want, sizeof want,
	         "page %llu (overflow, main tree, parent %llu): a run of 1 pages, "
	         "node ",
	         (unsigned long long)ov, (unsigned long long)leaf);
	CHECK(has_problem(&r, want));
	snprintf(want, sizeof want, "%llu bytes need", (unsigned long long)dsize);
	CHECK(has_problem(&r, want));
	CHECK(r.pages_leaked > 0);
	CHECK(has_problem(&r, "the meta says"));
	pw_report_fini(&r);
}

/* The read txn's meta overwritten (here: its txnid damaged) is an error,
 * not a report: there is no snapshot to walk. */
static void t_no_matching_meta(void)
{
	const char *dir = build_env();
	MDB_env *env = env_open(dir);
	MDB_txn *txn;
	REQUIRE(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0);
	struct file f;
	file_open(&f, dir);
	uint64_t id = (uint64_t)mdb_txn_id(txn);
	uint8_t b[8];
	p64(b, id + 2);
	off_t off = (off_t)((id % 2) * f.psize + PW_META_TXNID);
	REQUIRE(pwrite(f.fd, b, 8, off) == 8);
	struct pw_report r;
	char err[256];
	CHECK_EQ(pw_walk(env, txn, &r, err, sizeof err), ST_ECORRUPT);
	CHECK_CONTAINS(err, "no meta page");
	pw_report_fini(&r);
	p64(b, id);
	REQUIRE(pwrite(f.fd, b, 8, off) == 8);
	close(f.fd);
	mdb_txn_abort(txn);
	mdb_env_close(env);
}

/*
 * 2,000 single-bit flips anywhere in data.mdb, each walked and undone. The
 * env stays open under one read txn: the walker reads the file, never the
 * map, so this is what a reopen would see (a damaged meta included).
 */
static void t_bit_flips_never_crash(void)
{
	const char *dir = build_env();
	MDB_env *env = env_open(dir);
	MDB_txn *txn;
	REQUIRE(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0);
	struct file f;
	file_open(&f, dir);
	struct stat sb;
	REQUIRE(fstat(f.fd, &sb) == 0);
	uint64_t size = (uint64_t)sb.st_size;
	uint64_t seed = 0x9e3779b97f4a7c15u;
	int found = 0, errors = 0, bounded = 1, err_named = 1;
	for (int it = 0; it < 2000; it++) {
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		/* Half the flips in page headers and node arrays, where they bite. */
		uint64_t off = seed % size;
		if (it % 2)
			off = off / f.psize * f.psize + (seed >> 40) % 64;
		uint8_t bit = (uint8_t)(1u << ((seed >> 32) % 8)), b;
		REQUIRE(pread(f.fd, &b, 1, (off_t)off) == 1);
		b ^= bit;
		REQUIRE(pwrite(f.fd, &b, 1, (off_t)off) == 1);
		struct pw_report r;
		char err[256] = "";
		int rc = pw_walk(env, txn, &r, err, sizeof err);
		if (rc) {
			errors++;
			err_named &= err[0] != '\0';
		} else if (r.nproblems) {
			found++;
		}
		bounded &= r.nproblems <= PW_MAX_PROBLEMS + 1;
		pw_report_fini(&r);
		b ^= bit;
		REQUIRE(pwrite(f.fd, &b, 1, (off_t)off) == 1);
	}
	struct pw_report r;
	char err[256];
	REQUIRE(pw_walk(env, txn, &r, err, sizeof err) == ST_OK);
	CHECK_EQ(r.nproblems, 0);
	pw_report_fini(&r);
	CHECK(bounded);
	CHECK(err_named);
	CHECK(found > 100); /* most flips land in free pages or value bytes */
	printf("    2000 flips: %d reported problems, %d stopped the walk\n", found, errors);
	close(f.fd);
	mdb_txn_abort(txn);
	mdb_env_close(env);
}

static const struct test_case tests[] = {
    {"clean_env_walks_clean", t_clean_env_walks_clean},
    {"branch_pointer_damaged", t_branch_pointer_damaged},
    {"leaf_pgno_damaged", t_leaf_pgno_damaged},
    {"node_key_size_damaged", t_node_key_size_damaged},
    {"key_flip_out_of_order", t_key_flip_out_of_order},
    {"freelist_entry_cleared", t_freelist_entry_cleared},
    {"freelist_entry_duplicated", t_freelist_entry_duplicated},
    {"free_page_in_tree", t_free_page_in_tree},
    {"overflow_run_too_short", t_overflow_run_too_short},
    {"no_matching_meta", t_no_matching_meta},
    {"bit_flips_never_crash", t_bit_flips_never_crash},
};
TEST_MAIN(tests)
