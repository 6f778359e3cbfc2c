/*
 * daemon/store/pagewalk.c — verify's walk of LMDB's pages (STORE.md §8):
 * LMDB checksums nothing and trusts every page it reads, so a damaged node
 * count or offset can send its cursors outside a page. Before verify lets
 * LMDB walk the whole tree, this walk reads the pages itself (pread, every
 * offset bounded) from the snapshot's meta page: each page of the main and
 * free trees has its own number, one kind, sane bounds, nodes inside the
 * page, children and overflow pages inside the file; each is reached once;
 * the pages the free list names are reached by no tree; every page up to
 * the last is in a tree or free (LMDB's own mdb_audit invariant).
 *
 * The layout read here is LMDB 0.9's on-disk format (lmdb.h 0.9.x,
 * 64-bit): page header of 16 bytes (pgno u64, pad u16, flags u16, lower
 * u16, upper u16 | overflow page count u32), node header of 8 bytes
 * (lo u16, hi u16, flags u16, key size u16), meta after the header (magic
 * 0xBEEFC0DE, version, address, map size, the free and main databases of
 * 48 bytes each, last page, txnid).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/store/store_int.h"

#define PHDR 16
#define P_BRANCH 0x01
#define P_LEAF 0x02
#define P_OVERFLOW 0x04
#define F_BIGDATA 0x01
#define F_SUBDATA 0x02
#define MAX_DEPTH 32

struct walk {
	int fd;
	uint32_t ps;
	uint64_t npages;     /* pages up to the snapshot's last, + 1 */
	uint8_t *seen;       /* per page: 0 unseen, 1 tree, 2 free */
	uint8_t *buf;        /* per depth: one page */
	struct st_verify_result *r;
	uint32_t nprob;
	bool broken;         /* structure unsafe for LMDB to walk */
	void (*problem)(struct st_verify_result *r, const char *line);
};

static void pw_problem(struct walk *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void pw_problem(struct walk *w, const char *fmt, ...)
{
	char line[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (w->nprob++ < 50)
		w->problem(w->r, line);
}

static bool read_page(struct walk *w, uint64_t pg, uint8_t *p)
{
	return pread(w->fd, p, w->ps, (off_t)(pg * w->ps)) == (ssize_t)w->ps;
}

/* Mark pages [pg, pg + n) reached by what (1 tree, 2 free). */
static bool mark(struct walk *w, uint64_t pg, uint64_t n, int what, const char *tree)
{
	if (pg < 2 || n > w->npages || pg > w->npages - n) {
		pw_problem(w, "LMDB page %llu (+%llu) of the %s lies past the last page %llu",
			   (unsigned long long)pg, (unsigned long long)n, tree,
			   (unsigned long long)w->npages - 1);
		w->broken = true;
		return false;
	}
	for (uint64_t i = pg; i < pg + n; i++) {
		if (w->seen[i]) {
			pw_problem(w, "LMDB page %llu is reached twice (%s, and %s)",
				   (unsigned long long)i, w->seen[i] == 2 ? "free list" : "a tree",
				   what == 2 ? "the free list" : tree);
			if (what == 1)
				w->broken = true;
			return false;
		}
		w->seen[i] = (uint8_t)what;
	}
	return true;
}

static void walk_page(struct walk *w, uint64_t pg, int depth, int want_depth, const char *tree,
		      bool free_tree, uint64_t *entries)
{
	if (depth >= MAX_DEPTH || depth >= want_depth) {
		pw_problem(w, "LMDB %s: page %llu is deeper than the tree's depth %d", tree,
			   (unsigned long long)pg, want_depth);
		w->broken = true;
		return;
	}
	if (!mark(w, pg, 1, 1, tree))
		return;
	uint8_t *p = w->buf + (size_t)depth * w->ps;
	if (!read_page(w, pg, p)) {
		pw_problem(w, "LMDB %s: page %llu cannot be read", tree, (unsigned long long)pg);
		w->broken = true;
		return;
	}
	uint64_t own = st_get_le64(p);
	uint16_t flags = (uint16_t)st_get_le16(p + 10), lower = (uint16_t)st_get_le16(p + 12),
		 upper = (uint16_t)st_get_le16(p + 14);
	bool leaf = depth == want_depth - 1;
	const char *kind = leaf ? "leaf" : "branch";
	if (own != pg || (flags & (P_BRANCH | P_LEAF | P_OVERFLOW)) != (leaf ? P_LEAF : P_BRANCH) ||
	    lower < PHDR || lower > upper || upper > w->ps || (lower - PHDR) % 2) {
		pw_problem(w, "LMDB %s: page %llu (%s) has a damaged header (number %llu, flags "
			   "%#x, bounds %u..%u)", tree, (unsigned long long)pg, kind,
			   (unsigned long long)own, flags, lower, upper);
		w->broken = true;
		return;
	}
	uint32_t n = (lower - PHDR) / 2;
	if (n == 0 && depth > 0) {
		pw_problem(w, "LMDB %s: page %llu (%s) is empty", tree, (unsigned long long)pg, kind);
		w->broken = true;
	}
	const uint8_t *pk = NULL;
	uint16_t pklen = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint16_t off = (uint16_t)st_get_le16(p + PHDR + 2 * i);
		if (off < upper || (uint32_t)off + 8 > w->ps) {
			pw_problem(w, "LMDB %s: page %llu (%s): node %u lies outside the page", tree,
				   (unsigned long long)pg, kind, i);
			w->broken = true;
			return;
		}
		const uint8_t *nd = p + off;
		uint32_t lo = (uint32_t)st_get_le16(nd), hi = (uint32_t)st_get_le16(nd + 2);
		uint16_t nf = (uint16_t)st_get_le16(nd + 4), ks = (uint16_t)st_get_le16(nd + 6);
		if ((uint32_t)off + 8 + ks > w->ps) {
			pw_problem(w, "LMDB %s: page %llu (%s): node %u's key runs past the page", tree,
				   (unsigned long long)pg, kind, i);
			w->broken = true;
			return;
		}
		const uint8_t *key = nd + 8;
		if (i > 0 && (i > 1 || leaf)) { /* a branch's first key is empty */
			int c = memcmp(pk, key, pklen < ks ? pklen : ks);
			if (c > 0 || (c == 0 && pklen >= ks)) {
				pw_problem(w, "LMDB %s: page %llu (%s): keys out of order at node %u", tree,
					   (unsigned long long)pg, kind, i);
				w->broken = true;
			}
		}
		pk = key;
		pklen = ks;
		if (!leaf) {
			uint64_t child = lo | hi << 16 | (uint64_t)nf << 32;
			walk_page(w, child, depth + 1, want_depth, tree, free_tree, entries);
			continue;
		}
		(*entries)++;
		uint32_t dsize = lo | hi << 16;
		if (nf & F_SUBDATA) {
			pw_problem(w, "LMDB %s: page %llu: node %u is a sub-database (strata has none)",
				   tree, (unsigned long long)pg, i);
			w->broken = true;
			continue;
		}
		if (nf & F_BIGDATA) {
			if ((uint32_t)off + 8 + ks + 8 > w->ps) {
				pw_problem(w, "LMDB %s: page %llu: node %u's overflow pointer runs past the page",
					   tree, (unsigned long long)pg, i);
				w->broken = true;
				continue;
			}
			uint64_t ov = st_get_le64(key + ks);
			uint8_t *op = w->buf + (size_t)MAX_DEPTH * w->ps;
			if (ov < 2 || ov >= w->npages || !read_page(w, ov, op) || st_get_le64(op) != ov ||
			    !(st_get_le16(op + 10) & P_OVERFLOW) ||
			    (uint64_t)st_get_le32(op + 12) * w->ps < (uint64_t)dsize + PHDR) {
				pw_problem(w, "LMDB %s: page %llu: node %u's overflow pages (at %llu) are "
					   "damaged", tree, (unsigned long long)pg, i,
					   (unsigned long long)ov);
				w->broken = true;
				continue;
			}
			uint32_t cnt = st_get_le32(op + 12);
			mark(w, ov, cnt, 1, tree);
			if (free_tree && dsize >= 8) { /* a long free list */
				uint8_t *idl = malloc(dsize);
				if (idl && pread(w->fd, idl, dsize, (off_t)(ov * w->ps + PHDR)) ==
						   (ssize_t)dsize) {
					uint64_t c = st_get_le64(idl);
					for (uint64_t j = 0; j < c && 8 * (j + 2) <= dsize; j++)
						mark(w, st_get_le64(idl + 8 * (j + 1)), 1, 2, "free list");
				}
				free(idl);
			}
			continue;
		}
		if ((uint32_t)off + 8 + ks + dsize > w->ps) {
			pw_problem(w, "LMDB %s: page %llu: node %u's value runs past the page", tree,
				   (unsigned long long)pg, i);
			w->broken = true;
			continue;
		}
		if (free_tree && dsize >= 8) {
			const uint8_t *idl = key + ks;
			uint64_t cnt = st_get_le64(idl);
			for (uint64_t j = 0; j < cnt && 8 * (j + 2) <= dsize; j++)
				mark(w, st_get_le64(idl + 8 * (j + 1)), 1, 2, "free list");
		}
	}
}

int store_page_walk(st_store *s, MDB_txn *txn, struct st_verify_result *r,
		    void (*problem)(struct st_verify_result *r, const char *line), bool *broken,
		    struct st_err *err)
{
	struct walk w = {.fd = s->prealloc_fd, .ps = s->psize, .r = r, .problem = problem};
	*broken = false;
	uint8_t *meta = malloc(w.ps);
	if (!meta)
		return st_seterr(err, ST_ENOMEM, "out of memory");
	uint64_t want = mdb_txn_id(txn), root[2] = {0}, last = 0;
	int depth[2] = {0};
	uint64_t count[2][4] = {{0}};
	bool found = false;
	for (uint64_t m = 0; m < 2 && !found; m++) {
		if (!read_page(&w, m, meta) || st_get_le32(meta + PHDR) != 0xBEEFC0DE)
			continue;
		if (st_get_le64(meta + PHDR + 128) != want)
			continue;
		for (int d = 0; d < 2; d++) {
			const uint8_t *db = meta + PHDR + 24 + 48 * d;
			depth[d] = st_get_le16(db + 6);
			for (int c = 0; c < 4; c++)
				count[d][c] = st_get_le64(db + 8 + 8 * c);
			root[d] = st_get_le64(db + 40);
		}
		last = st_get_le64(meta + PHDR + 120);
		found = true;
	}
	free(meta);
	if (!found) {
		problem(r, "LMDB: no meta page holds the snapshot being verified (both damaged?)");
		*broken = true;
		return ST_OK;
	}
	w.npages = last + 1;
	w.seen = calloc(w.npages, 1);
	w.buf = malloc((size_t)(MAX_DEPTH + 1) * w.ps);
	if (!w.seen || !w.buf) {
		free(w.seen);
		free(w.buf);
		return st_seterr(err, ST_ENOMEM, "out of memory");
	}
	static const char *names[2] = {"free-list tree", "main tree"};
	for (int d = 0; d < 2; d++) {
		uint64_t entries = 0;
		if (root[d] == (uint64_t)-1) /* P_INVALID: empty */
			continue;
		walk_page(&w, root[d], 0, depth[d], names[d], d == 0, &entries);
		if (!w.broken && entries != count[d][3])
			pw_problem(&w, "LMDB %s: %llu entries reached, its header says %llu", names[d],
				   (unsigned long long)entries, (unsigned long long)count[d][3]);
	}
	uint64_t leaked = 0, first = 0;
	for (uint64_t pg = 2; pg < w.npages; pg++)
		if (!w.seen[pg] && !leaked++)
			first = pg;
	if (leaked && !w.broken)
		pw_problem(&w, "LMDB: %llu pages are in no tree and not free (first: page %llu)",
			   (unsigned long long)leaked, (unsigned long long)first);
	r->pages = w.npages;
	if (w.nprob > 50)
		problem(r, "LMDB: more page problems not shown");
	*broken = w.broken;
	free(w.seen);
	free(w.buf);
	return ST_OK;
}
