/*
 * daemon/store/pagewalk.h — a checker of the physical tree of the store's
 * LMDB environment (STORE.md §1-§2): it reads data.mdb page by page under
 * a read transaction the caller holds and checks the page headers, the
 * node layout, key order, tree depth, overflow chains and that every page
 * is either in a tree or in the freelist exactly once (what LMDB's debug
 * mdb_audit and libmdbx's mdb_chk check).
 *
 * The layout it reads is LMDB 0.9's on 64-bit little-endian hosts (the
 * Debian liblmdb 0.9.24 strata links); it is not an API of LMDB, so it is
 * written down here. Numbers are host order (LMDB writes native structs).
 *
 * Page header (every page; only the first page of an overflow run):
 *
 * | offset | size | type | meaning |
 * |---:|---:|---|---|
 * | 0 | 8 | u64 | page number (must equal the page's position / psize) |
 * | 8 | 2 | u16 | pad (LEAF2 key size; unused by strata) |
 * | 10 | 2 | u16 | flags: 0x01 branch, 0x02 leaf, 0x04 overflow, 0x08 meta, 0x20 leaf2 |
 * | 12 | 2 | u16 | lower: end of the node offset array (branch, leaf) |
 * | 14 | 2 | u16 | upper: start of the node area (branch, leaf) |
 * | 12 | 4 | u32 | overflow: number of pages in the run |
 * | 16 | 2·n | u16[] | branch, leaf: offsets of the n = (lower − 16) / 2 nodes, in key order |
 *
 * Node (at its offset in a branch or leaf page):
 *
 * | offset | size | type | meaning |
 * |---:|---:|---|---|
 * | 0 | 2 | u16 | lo: data size bits 0-15 (leaf), child page bits 0-15 (branch) |
 * | 2 | 2 | u16 | hi: data size bits 16-31 (leaf), child page bits 16-31 (branch) |
 * | 4 | 2 | u16 | leaf: flags 0x01 F_BIGDATA, 0x02 F_SUBDATA, 0x04 F_DUPDATA |
 * | 4 | 2 | u16 | branch: child page bits 32-47 |
 * | 6 | 2 | u16 | key size k |
 * | 8 | k | bytes | key (a branch page's node 0 key is empty and means "lowest") |
 * | 8+k | d | bytes | leaf: the data; F_BIGDATA: d = 8, the u64 first overflow page |
 *
 * Meta page (pages 0 and 1; transaction t writes page t % 2), after the header:
 *
 * | offset | size | type | meaning |
 * |---:|---:|---|---|
 * | 16 | 4 | u32 | magic 0xBEEFC0DE |
 * | 20 | 4 | u32 | data version 1 |
 * | 24 | 8 | ptr | fixed map address (0) |
 * | 32 | 8 | u64 | map size |
 * | 40 | 48 | db | FREE_DBI (its pad field is the page size) |
 * | 88 | 48 | db | MAIN_DBI |
 * | 136 | 8 | u64 | last page used |
 * | 144 | 8 | u64 | transaction id that wrote this meta |
 *
 * Database record (db, 48 bytes): u32 pad, u16 flags, u16 depth, u64 branch
 * pages, u64 leaf pages, u64 overflow pages, u64 entries, u64 root (2^64−1:
 * empty tree). A freelist record: key the u64 txnid that freed the pages,
 * data u64 count n then n u64 page numbers.
 *
 * Threading: pw_walk reads files and the caller's read txn only; it may be
 * called from any thread holding its own read txn. No globals.
 */
#ifndef STRATA_DAEMON_STORE_PAGEWALK_H
#define STRATA_DAEMON_STORE_PAGEWALK_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

/* Byte offsets of the tables above (tests use them to damage a file). */
enum {
	PW_PAGEHDRSZ = 16,     /* page header size */
	PW_OFF_PGNO = 0,       /* page number u64 */
	PW_OFF_FLAGS = 10,     /* page flags u16 */
	PW_OFF_LOWER = 12,     /* lower u16 */
	PW_OFF_UPPER = 14,     /* upper u16 */
	PW_OFF_PAGES = 12,     /* overflow run length u32 */
	PW_NODESIZE = 8,       /* node header size */
	PW_META_MAGIC = 16,    /* meta: magic u32 */
	PW_META_VERSION = 20,  /* meta: version u32 */
	PW_META_DBS = 40,      /* meta: FREE_DBI db record, MAIN_DBI at +48 */
	PW_DB_SIZE = 48,       /* size of a db record */
	PW_DB_DEPTH = 6,       /* db: depth u16 */
	PW_DB_BRANCH = 8,      /* db: branch pages u64 */
	PW_DB_LEAF = 16,       /* db: leaf pages u64 */
	PW_DB_OVERFLOW = 24,   /* db: overflow pages u64 */
	PW_DB_ENTRIES = 32,    /* db: entries u64 */
	PW_DB_ROOT = 40,       /* db: root page u64 */
	PW_META_LAST_PG = 136, /* meta: last page u64 */
	PW_META_TXNID = 144,   /* meta: txnid u64 */
	PW_P_BRANCH = 0x01,    /* page flag: branch */
	PW_P_LEAF = 0x02,      /* page flag: leaf */
	PW_P_OVERFLOW = 0x04,  /* page flag: overflow */
	PW_P_META = 0x08,      /* page flag: meta */
	PW_F_BIGDATA = 0x01,   /* node flag: data on overflow pages */
	PW_MAX_DEPTH = 32,     /* deepest tree LMDB builds (its cursor stack) */
	PW_MAX_PROBLEMS = 100, /* problem lines kept; one more line counts the rest */
};

/* What one tree held, counted by the walk (index 0 FREE_DBI, 1 MAIN_DBI). */
struct pw_tree {
	uint64_t branch;   /* branch pages reached */
	uint64_t leaf;     /* leaf pages reached */
	uint64_t overflow; /* overflow pages reached (every page of each run) */
	uint64_t entries;  /* leaf nodes */
	uint32_t depth;    /* depth of the first leaf reached (0: empty tree) */
};

struct pw_report {
	uint64_t pages_total;    /* pages in the snapshot: its last page + 1 (metas included) */
	uint64_t pages_branch;   /* branch pages of both trees */
	uint64_t pages_leaf;     /* leaf pages of both trees */
	uint64_t pages_overflow; /* overflow pages of both trees */
	uint64_t pages_free;     /* distinct pages the freelist lists */
	uint64_t pages_leaked;   /* pages 2..last reached by no tree and not free */
	uint64_t pages_twice;    /* reaches of a page already reached (tree or freelist) */
	uint64_t entries;        /* MAIN_DBI leaf nodes */
	struct pw_tree trees[2]; /* per tree: [0] FREE_DBI, [1] MAIN_DBI */
	uint64_t txnid;          /* the snapshot's txnid (meta page txnid % 2) */
	uint32_t psize;          /* page size */
	uint32_t nproblems;      /* lines in problems (at most PW_MAX_PROBLEMS + 1) */
	uint64_t problems_total; /* problems found, including those not listed */
	char **problems;         /* one line each, owned; freed by pw_report_fini */
};

/*
 * Walk the snapshot of rtxn (a read-only txn of env the caller holds for
 * the whole call, so that no page of the snapshot is reused) by reading
 * <env path>/data.mdb with pread: never through the map, so damaged bytes
 * make problem lines, never a crash. Every offset and size read from a
 * page is checked against the page size and the file size first.
 *
 * Fills *out (zeroed first; the caller frees it with pw_report_fini, also
 * after an error). Returns ST_OK when the walk completed: what it found is
 * in out->problems (none for a sound file). Blocks on file I/O: about one
 * pread per tree page (overflow runs: their first page only).
 *
 * Errors (err filled with what failed and where): ST_ECORRUPT (no meta page
 * carries rtxn's txnid: a writer committed twice since rtxn began and
 * overwrote it, or the meta page is damaged; the page size in the meta
 * differs from the env's), ST_ENOMEM, errno (open, pread, fstat), or an
 * LMDB error code (mdb_env_get_path, mdb_env_stat).
 */
int pw_walk(MDB_env *env, MDB_txn *rtxn, struct pw_report *out, char *err, size_t errlen);

/* Free the problem lines of r and zero it. r may be zeroed or filled. */
void pw_report_fini(struct pw_report *r);

#endif
