/*
 * daemon/store/pagewalk.c — the LMDB page walker of pagewalk.h: checks the
 * physical B+trees of the store's environment (STORE.md §1-§2) against the
 * layout written down in pagewalk.h.
 *
 * One pass: the main tree, then the free tree, depth first from their
 * roots, one pread per tree page into a buffer per tree level (a child's
 * key bounds point into its parent's buffer, which stays put while the
 * child is walked). Each page reached is claimed in a byte map (one byte
 * per page: who reached it first), so a page reached again is reported
 * and not descended (no cycles, no blow-up), and after the walk every page
 * nobody claimed is a leak. The freelist records' page numbers are claimed
 * as the free tree's leaves are read.
 *
 * Invariants it checks (LMDB's own, see mdb_audit): every page 2..last is
 * reached exactly once, by a tree or by the freelist; page headers name
 * their own page and one kind; node offsets and sizes stay inside their
 * page; keys increase strictly inside a page and stay inside the range
 * their parent's separators give; every leaf is at the tree's depth;
 * overflow runs cover their node's data; the counts agree with the meta's
 * database records. Nothing read from the file is trusted before it is
 * checked against the page size and the file size.
 *
 * Threading: none of its own; no globals. The caller's read txn keeps the
 * snapshot's pages from being reused by a writer while they are read.
 */
#include "daemon/store/pagewalk.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/error.h"

/* Who reached a page first (the byte map's values). */
enum {
	OWN_NONE = 0,
	OWN_META = 1,
	OWN_FREE_TREE = 2, /* a page of FREE_DBI's tree (tree index 0 + 2) */
	OWN_MAIN_TREE = 3, /* a page of MAIN_DBI's tree (tree index 1 + 2) */
	OWN_FREELIST = 4,  /* listed in a freelist record */
};

#define NO_PARENT UINT64_MAX
#define P_INVALID UINT64_MAX

/* The walk's state: borrowed report, owned file, map and buffers. */
struct walker {
	int fd;                     /* data.mdb, read only */
	uint64_t fsize;             /* its size in bytes */
	uint32_t psize;             /* page size */
	uint64_t npages;            /* pages of the snapshot: last page + 1 */
	uint8_t *owner;             /* npages bytes, OWN_* */
	uint8_t *buf[PW_MAX_DEPTH]; /* one page buffer per tree level */
	uint8_t *ovbuf;             /* an overflow run's first page */
	struct pw_report *r;        /* the report being filled */
	char *err;                  /* caller's error buffer */
	size_t errlen;              /* its size */
	int rc;                     /* first fatal error, ST_OK while the walk runs */
};

/* ---- little helpers ------------------------------------------------ */

static uint16_t rd16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof v);
	return v;
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof v);
	return v;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof v);
	return v;
}

static const char *tree_name(int tree)
{
	return tree == 0 ? "free tree" : "main tree";
}

static const char *owner_name(uint8_t own)
{
	switch (own) {
	case OWN_META:
		return "a meta page";
	case OWN_FREE_TREE:
		return "a page of the free tree";
	case OWN_MAIN_TREE:
		return "a page of the main tree";
	case OWN_FREELIST:
		return "a free page (freelist)";
	default:
		return "nothing";
	}
}

static void set_err(struct walker *w, int rc, const char *fmt, ...)
{
	if (w->rc != ST_OK)
		return;
	w->rc = rc;
	if (w->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(w->err, w->errlen, fmt, ap);
		va_end(ap);
	}
}

/* Add one problem line (or only count it past the bound). */
static void problem(struct walker *w, const char *fmt, ...)
{
	struct pw_report *r = w->r;
	r->problems_total++;
	if (r->nproblems >= PW_MAX_PROBLEMS || w->rc != ST_OK)
		return;
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	char *copy = strdup(line);
	if (!copy) {
		set_err(w, ST_ENOMEM, "page walk: out of memory for a problem line");
		return;
	}
	r->problems[r->nproblems++] = copy;
}

/* "(leaf, main tree, parent 17)" into buf. */
static const char *where(char *buf, size_t len, const char *kind, int tree, uint64_t parent)
{
	if (parent == NO_PARENT)
		snprintf(buf, len, "(%s, %s, root)", kind, tree_name(tree));
	else
		snprintf(buf, len, "(%s, %s, parent %llu)", kind, tree_name(tree),
		         (unsigned long long)parent);
	return buf;
}

/*
 * Read n bytes at off into dst: 1 read, 0 the file ends first, -1 an I/O
 * error (w->rc set).
 */
static int read_at(struct walker *w, void *dst, size_t n, uint64_t off)
{
	if (off > w->fsize || n > w->fsize - off)
		return 0;
	size_t got = 0;
	while (got < n) {
		ssize_t k = pread(w->fd, (uint8_t *)dst + got, n - got, (off_t)(off + got));
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			int e = errno;
			set_err(w, e, "page walk: reading data.mdb at offset %llu: %s",
			        (unsigned long long)(off + got), strerror(e));
			return -1;
		}
		if (k == 0)
			return 0;
		got += (size_t)k;
	}
	return 1;
}

/* Claim page pgno (< npages) for own: true when nobody had it. */
static bool claim(struct walker *w, uint64_t pgno, uint8_t own)
{
	if (w->owner[pgno] != OWN_NONE)
		return false;
	w->owner[pgno] = own;
	return true;
}

/* Key order: the default comparator (memcmp, a prefix first) for the
 * main tree, native u64 for the free tree's 8-byte txnid keys. */
static int key_cmp(int tree, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	if (tree == 0 && alen == 8 && blen == 8) {
		uint64_t x = rd64(a), y = rd64(b);
		return x < y ? -1 : x > y;
	}
	size_t n = alen < blen ? alen : blen;
	int c = n ? memcmp(a, b, n) : 0;
	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

/* ---- the freelist -------------------------------------------------- */

/* Claim the pages one freelist record (key txnid) lists. */
static void freelist_record(struct walker *w, uint64_t txnid, const uint8_t *data, uint64_t dsize,
                            uint64_t leaf, uint32_t node)
{
	if (dsize < 8 || dsize % 8) {
		problem(w,
		        "page %llu (leaf, free tree): node %u (txn %llu) has %llu data bytes, "
		        "not a count and page numbers of 8 bytes each",
		        (unsigned long long)leaf, node, (unsigned long long)txnid,
		        (unsigned long long)dsize);
		if (dsize < 8)
			return;
	}
	uint64_t room = dsize / 8 - 1, n = rd64(data);
	if (n > room) {
		problem(w,
		        "page %llu (leaf, free tree): node %u (txn %llu) counts %llu free "
		        "pages but has room for %llu",
		        (unsigned long long)leaf, node, (unsigned long long)txnid,
		        (unsigned long long)n, (unsigned long long)room);
		n = room;
	}
	for (uint64_t i = 0; i < n; i++) {
		uint64_t pg = rd64(data + 8 * (i + 1));
		if (pg < 2 || pg >= w->npages) {
			problem(w,
			        "page %llu (leaf, free tree): freelist record of txn %llu lists "
			        "page %llu, outside 2..%llu",
			        (unsigned long long)leaf, (unsigned long long)txnid,
			        (unsigned long long)pg, (unsigned long long)(w->npages - 1));
			continue;
		}
		uint8_t had = w->owner[pg];
		if (!claim(w, pg, OWN_FREELIST)) {
			w->r->pages_twice++;
			if (had == OWN_FREELIST)
				problem(w,
				        "page %llu (free, freelist txn %llu, leaf %llu): listed "
				        "twice in the freelist",
				        (unsigned long long)pg, (unsigned long long)txnid,
				        (unsigned long long)leaf);
			else
				problem(w,
				        "page %llu (free, freelist txn %llu, leaf %llu): free "
				        "page also reached as %s",
				        (unsigned long long)pg, (unsigned long long)txnid,
				        (unsigned long long)leaf, owner_name(had));
			continue;
		}
		w->r->pages_free++;
	}
}

/* ---- overflow runs ------------------------------------------------- */

/*
 * The overflow run at pgno holding dsize bytes of node `node` of leaf page
 * `leaf`: checked, claimed and counted. For the free tree, *data is set to
 * a malloc'd copy of the data (NULL when the run is unusable).
 */
static void overflow_run(struct walker *w, int tree, uint64_t pgno, uint64_t dsize, uint64_t leaf,
                         uint32_t node, uint8_t **data)
{
	char wh[96];
	where(wh, sizeof wh, "overflow", tree, leaf);
	if (data)
		*data = NULL;
	if (pgno < 2 || pgno >= w->npages) {
		problem(w, "page %llu (leaf, %s): node %u's overflow page %llu is outside 2..%llu",
		        (unsigned long long)leaf, tree_name(tree), node, (unsigned long long)pgno,
		        (unsigned long long)(w->npages - 1));
		return;
	}
	uint8_t had = w->owner[pgno];
	if (!claim(w, pgno, (uint8_t)(OWN_FREE_TREE + tree))) {
		w->r->pages_twice++;
		problem(w, "page %llu %s: already reached as %s", (unsigned long long)pgno, wh,
		        owner_name(had));
		return;
	}
	int rd = read_at(w, w->ovbuf, w->psize, pgno * w->psize);
	if (rd < 0)
		return;
	w->r->trees[tree].overflow++;
	if (rd == 0) {
		problem(w, "page %llu %s: beyond the end of data.mdb (%llu bytes)",
		        (unsigned long long)pgno, wh, (unsigned long long)w->fsize);
		return;
	}
	uint64_t hdr = rd64(w->ovbuf + PW_OFF_PGNO);
	uint16_t flags = rd16(w->ovbuf + PW_OFF_FLAGS);
	if (hdr != pgno) {
		problem(w, "page %llu %s: header says page %llu", (unsigned long long)pgno, wh,
		        (unsigned long long)hdr);
		return;
	}
	if (flags != PW_P_OVERFLOW) {
		problem(w, "page %llu %s: flags 0x%x, not overflow", (unsigned long long)pgno, wh,
		        flags);
		return;
	}
	uint64_t pages = rd32(w->ovbuf + PW_OFF_PAGES);
	uint64_t need = (PW_PAGEHDRSZ - 1 + dsize) / w->psize + 1;
	bool usable = true;
	if (pages < need) {
		problem(w, "page %llu %s: a run of %llu pages, node %u's %llu bytes need %llu",
		        (unsigned long long)pgno, wh, (unsigned long long)pages, node,
		        (unsigned long long)dsize, (unsigned long long)need);
		usable = false;
	}
	if (pages > w->npages - pgno) {
		problem(w, "page %llu %s: a run of %llu pages ends past the last page %llu",
		        (unsigned long long)pgno, wh, (unsigned long long)pages,
		        (unsigned long long)(w->npages - 1));
		pages = w->npages - pgno;
		usable = false;
	}
	uint64_t clash = 0, first = 0;
	uint8_t first_own = OWN_NONE;
	for (uint64_t i = 1; i < pages; i++) {
		uint8_t o = w->owner[pgno + i];
		if (claim(w, pgno + i, (uint8_t)(OWN_FREE_TREE + tree)))
			continue;
		if (!clash++) {
			first = pgno + i;
			first_own = o;
		}
	}
	w->r->trees[tree].overflow += pages - 1 - clash;
	w->r->pages_twice += clash;
	if (clash)
		problem(w,
		        "page %llu %s: %llu pages of its run were already reached (first: "
		        "page %llu, as %s)",
		        (unsigned long long)pgno, wh, (unsigned long long)clash,
		        (unsigned long long)first, owner_name(first_own));
	if (!data || !usable)
		return;
	uint8_t *d = malloc(dsize ? dsize : 1);
	if (!d) {
		set_err(w, ST_ENOMEM,
		        "page walk: out of memory for %llu bytes of a freelist record",
		        (unsigned long long)dsize);
		return;
	}
	rd = read_at(w, d, dsize, pgno * w->psize + PW_PAGEHDRSZ);
	if (rd <= 0) {
		if (rd == 0)
			problem(w, "page %llu %s: the run ends beyond the end of data.mdb",
			        (unsigned long long)pgno, wh);
		free(d);
		return;
	}
	*data = d;
}

/* ---- tree pages ---------------------------------------------------- */

/* The key range a page's keys must keep: lo <= key < hi (NULL: open). */
struct bounds {
	const uint8_t *lo; /* lowest key allowed, or NULL */
	size_t lolen;      /* its size */
	const uint8_t *hi; /* first key not allowed, or NULL */
	size_t hilen;      /* its size */
};

/* Walk the page pgno of tree (reached from parent at tree level). */
static void visit(struct walker *w, int tree, uint64_t pgno, uint64_t parent, uint32_t level,
                  struct bounds b)
{
	struct pw_tree *t = &w->r->trees[tree];
	char wh[96];
	if (w->rc != ST_OK)
		return;
	if (pgno < 2 || pgno >= w->npages) {
		problem(w, "page %llu %s: page number outside 2..%llu", (unsigned long long)pgno,
		        where(wh, sizeof wh, "page", tree, parent),
		        (unsigned long long)(w->npages - 1));
		return;
	}
	uint8_t had = w->owner[pgno];
	if (!claim(w, pgno, (uint8_t)(OWN_FREE_TREE + tree))) {
		w->r->pages_twice++;
		problem(w, "page %llu %s: already reached as %s", (unsigned long long)pgno,
		        where(wh, sizeof wh, "page", tree, parent), owner_name(had));
		return;
	}
	uint8_t *p = w->buf[level];
	int rd = read_at(w, p, w->psize, pgno * w->psize);
	if (rd < 0)
		return;
	if (rd == 0) {
		problem(w, "page %llu %s: beyond the end of data.mdb (%llu bytes)",
		        (unsigned long long)pgno, where(wh, sizeof wh, "page", tree, parent),
		        (unsigned long long)w->fsize);
		return;
	}
	uint64_t hdr = rd64(p + PW_OFF_PGNO);
	uint16_t flags = rd16(p + PW_OFF_FLAGS);
	bool branch = flags == PW_P_BRANCH;
	const char *kind = branch ? "branch" : flags == PW_P_LEAF ? "leaf" : "page";
	where(wh, sizeof wh, kind, tree, parent);
	if (hdr != pgno) {
		problem(w, "page %llu %s: header says page %llu", (unsigned long long)pgno, wh,
		        (unsigned long long)hdr);
		return;
	}
	if (!branch && flags != PW_P_LEAF) {
		problem(w, "page %llu %s: flags 0x%x, neither branch nor leaf",
		        (unsigned long long)pgno, wh, flags);
		return;
	}
	if (branch)
		t->branch++;
	else
		t->leaf++;
	uint32_t lower = rd16(p + PW_OFF_LOWER), upper = rd16(p + PW_OFF_UPPER);
	if (lower < PW_PAGEHDRSZ || (lower - PW_PAGEHDRSZ) % 2 || lower > upper ||
	    upper > w->psize) {
		problem(w, "page %llu %s: lower %u, upper %u do not fit a %u-byte page",
		        (unsigned long long)pgno, wh, lower, upper, w->psize);
		return;
	}
	uint32_t n = (lower - PW_PAGEHDRSZ) / 2;
	if (n == 0) {
		problem(w, "page %llu %s: no nodes", (unsigned long long)pgno, wh);
		return;
	}
	/* Every node inside [upper, psize) first: nothing below reads past. */
	for (uint32_t i = 0; i < n; i++) {
		uint32_t off = rd16(p + PW_PAGEHDRSZ + 2 * i);
		if (off < upper || off + PW_NODESIZE > w->psize) {
			problem(w, "page %llu %s: node %u at offset %u is outside [%u, %u)",
			        (unsigned long long)pgno, wh, i, off, upper, w->psize);
			return;
		}
		const uint8_t *nd = p + off;
		uint64_t end = (uint64_t)off + PW_NODESIZE + rd16(nd + 6);
		if (!branch) {
			uint16_t nflags = rd16(nd + 4);
			end +=
			    (nflags & PW_F_BIGDATA) ? 8 : (rd16(nd) | (uint64_t)rd16(nd + 2) << 16);
		}
		if (end > w->psize) {
			problem(w, "page %llu %s: node %u (key size %u) runs past the page end",
			        (unsigned long long)pgno, wh, i, rd16(nd + 6));
			return;
		}
	}
#define NODE(i) (p + rd16(p + PW_PAGEHDRSZ + 2 * (i)))
#define KEY(nd) ((nd) + PW_NODESIZE)
#define KSZ(nd) ((size_t)rd16((nd) + 6))
	/* Keys: strictly increasing; a branch's node 0 key means "lowest". */
	uint32_t k0 = branch ? 1 : 0;
	for (uint32_t i = k0 + 1; i < n; i++) {
		const uint8_t *a = NODE(i - 1), *c = NODE(i);
		if (key_cmp(tree, KEY(a), KSZ(a), KEY(c), KSZ(c)) >= 0)
			problem(w, "page %llu %s: keys out of order at node %u",
			        (unsigned long long)pgno, wh, i);
	}
	if (k0 < n) {
		const uint8_t *first = NODE(k0), *last = NODE(n - 1);
		if (b.lo && key_cmp(tree, KEY(first), KSZ(first), b.lo, b.lolen) < 0)
			problem(w, "page %llu %s: key at node %u is below the parent's separator",
			        (unsigned long long)pgno, wh, k0);
		if (b.hi && key_cmp(tree, KEY(last), KSZ(last), b.hi, b.hilen) >= 0)
			problem(w,
			        "page %llu %s: key at node %u is not below the parent's next "
			        "separator",
			        (unsigned long long)pgno, wh, n - 1);
	}
	if (tree == 0)
		for (uint32_t i = k0; i < n; i++)
			if (KSZ(NODE(i)) != 8)
				problem(w,
				        "page %llu %s: node %u has a %zu-byte key, a freelist key "
				        "is an 8-byte txnid",
				        (unsigned long long)pgno, wh, i, KSZ(NODE(i)));
	if (!branch) {
		if (t->depth == 0)
			t->depth = level + 1;
		else if (t->depth != level + 1)
			problem(w, "page %llu %s: leaf at depth %u, the first leaf is at depth %u",
			        (unsigned long long)pgno, wh, level + 1, t->depth);
		t->entries += n;
		for (uint32_t i = 0; i < n && w->rc == ST_OK; i++) {
			const uint8_t *nd = NODE(i);
			uint16_t nflags = rd16(nd + 4);
			uint64_t dsize = rd16(nd) | (uint64_t)rd16(nd + 2) << 16;
			const uint8_t *d = KEY(nd) + KSZ(nd);
			if (nflags & ~PW_F_BIGDATA)
				problem(w,
				        "page %llu %s: node %u has flags 0x%x (a sub-database or "
				        "duplicates; strata uses neither)",
				        (unsigned long long)pgno, wh, i, nflags);
			uint8_t *big = NULL;
			if (nflags & PW_F_BIGDATA)
				overflow_run(w, tree, rd64(d), dsize, pgno, i,
				             tree == 0 ? &big : NULL);
			if (tree == 0 && KSZ(nd) == 8 && (!(nflags & PW_F_BIGDATA) || big))
				freelist_record(w, rd64(KEY(nd)), big ? big : d, dsize, pgno, i);
			free(big);
		}
		return;
	}
	if (level + 1 >= PW_MAX_DEPTH) {
		problem(w, "page %llu %s: a branch at depth %u, LMDB's trees are at most %d deep",
		        (unsigned long long)pgno, wh, level + 1, PW_MAX_DEPTH);
		return;
	}
	for (uint32_t i = 0; i < n && w->rc == ST_OK; i++) {
		const uint8_t *nd = NODE(i);
		uint64_t child =
		    rd16(nd) | (uint64_t)rd16(nd + 2) << 16 | (uint64_t)rd16(nd + 4) << 32;
		struct bounds cb = b;
		if (i > 0) {
			cb.lo = KEY(nd);
			cb.lolen = KSZ(nd);
		}
		if (i + 1 < n) {
			const uint8_t *next = NODE(i + 1);
			cb.hi = KEY(next);
			cb.hilen = KSZ(next);
		}
		visit(w, tree, child, pgno, level + 1, cb);
	}
#undef NODE
#undef KEY
#undef KSZ
}

/* Walk one tree from its db record and compare the counts with it. */
static void walk_tree(struct walker *w, int tree, const uint8_t *db)
{
	uint64_t root = rd64(db + PW_DB_ROOT);
	struct pw_tree *t = &w->r->trees[tree];
	if (root != P_INVALID)
		visit(w, tree, root, NO_PARENT, 0, (struct bounds){0});
	if (w->rc != ST_OK)
		return;
	static const struct {
		int off;
		const char *what;
	} fields[] = {{PW_DB_BRANCH, "branch pages"},
	              {PW_DB_LEAF, "leaf pages"},
	              {PW_DB_OVERFLOW, "overflow pages"},
	              {PW_DB_ENTRIES, "entries"}};
	uint64_t got[4] = {t->branch, t->leaf, t->overflow, t->entries};
	for (int i = 0; i < 4; i++) {
		uint64_t want = rd64(db + fields[i].off);
		if (want != got[i])
			problem(w, "%s (root %llu): the meta says %llu %s, the walk found %llu",
			        tree_name(tree), (unsigned long long)root, (unsigned long long)want,
			        fields[i].what, (unsigned long long)got[i]);
	}
	uint16_t depth = rd16(db + PW_DB_DEPTH);
	if (depth != t->depth)
		problem(w, "%s (root %llu): the meta says depth %u, the first leaf is at depth %u",
		        tree_name(tree), (unsigned long long)root, depth, t->depth);
}

/* Report the pages nobody reached, a line per run of them. */
static void leaks(struct walker *w)
{
	uint64_t pg = 2;
	while (pg < w->npages) {
		if (w->owner[pg] != OWN_NONE) {
			pg++;
			continue;
		}
		uint64_t start = pg;
		while (pg < w->npages && w->owner[pg] == OWN_NONE)
			pg++;
		w->r->pages_leaked += pg - start;
		if (pg - start == 1)
			problem(w, "page %llu: leaked (in no tree and not in the freelist)",
			        (unsigned long long)start);
		else
			problem(w,
			        "pages %llu-%llu (%llu pages): leaked (in no tree and not in the "
			        "freelist)",
			        (unsigned long long)start, (unsigned long long)(pg - 1),
			        (unsigned long long)(pg - start));
	}
}

/* ---- the meta pages and the walk ----------------------------------- */

int pw_walk(MDB_env *env, MDB_txn *rtxn, struct pw_report *out, char *err, size_t errlen)
{
	struct walker w = {.fd = -1, .r = out, .err = err, .errlen = errlen};
	uint8_t *meta[2] = {NULL, NULL};
	memset(out, 0, sizeof *out);
	if (errlen)
		err[0] = '\0';
	MDB_stat st;
	MDB_envinfo info;
	const char *path = NULL;
	unsigned int envflags = 0;
	int lrc = mdb_env_stat(env, &st);
	if (!lrc)
		lrc = mdb_env_info(env, &info);
	if (!lrc)
		lrc = mdb_env_get_path(env, &path);
	if (!lrc)
		lrc = mdb_env_get_flags(env, &envflags);
	if (lrc) {
		set_err(&w, lrc, "page walk: reading the environment's settings: %s",
		        mdb_strerror(lrc));
		goto out;
	}
	w.psize = st.ms_psize;
	out->psize = w.psize;
	out->problems = calloc(PW_MAX_PROBLEMS + 1, sizeof *out->problems);
	for (int i = 0; i < PW_MAX_DEPTH && out->problems; i++)
		if (!(w.buf[i] = malloc(w.psize)))
			break;
	w.ovbuf = malloc(w.psize);
	meta[0] = malloc(w.psize);
	meta[1] = malloc(w.psize);
	if (!out->problems || !w.buf[PW_MAX_DEPTH - 1] || !w.ovbuf || !meta[0] || !meta[1]) {
		set_err(&w, ST_ENOMEM, "page walk: out of memory for page buffers");
		goto out;
	}
	char file[4096];
	snprintf(file, sizeof file, (envflags & MDB_NOSUBDIR) ? "%s" : "%s/data.mdb", path);
	w.fd = open(file, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (w.fd < 0 || fstat(w.fd, &sb) != 0) {
		int e = errno;
		set_err(&w, e, "page walk: opening %s: %s", file, strerror(e));
		goto out;
	}
	w.fsize = (uint64_t)sb.st_size;

	/* The snapshot's meta: the one whose txnid is rtxn's. */
	uint64_t txnid = (uint64_t)mdb_txn_id(rtxn);
	out->txnid = txnid;
	int cur = -1;
	for (int i = 0; i < 2; i++) {
		int rd = read_at(&w, meta[i], w.psize, (uint64_t)i * w.psize);
		if (rd < 0)
			goto out;
		bool ok = rd == 1 && rd64(meta[i] + PW_OFF_PGNO) == (uint64_t)i &&
		          rd16(meta[i] + PW_OFF_FLAGS) == PW_P_META &&
		          rd32(meta[i] + PW_META_MAGIC) == 0xBEEFC0DEu &&
		          rd32(meta[i] + PW_META_VERSION) == 1;
		if (ok && rd64(meta[i] + PW_META_TXNID) == txnid)
			cur = i;
		else if (!ok && rd == 1)
			problem(&w,
			        "page %d (meta): not a meta page of LMDB 0.9 (page number %llu, "
			        "flags 0x%x, magic 0x%x, version %u)",
			        i, (unsigned long long)rd64(meta[i] + PW_OFF_PGNO),
			        rd16(meta[i] + PW_OFF_FLAGS), rd32(meta[i] + PW_META_MAGIC),
			        rd32(meta[i] + PW_META_VERSION));
	}
	if (cur < 0) {
		set_err(&w, ST_ECORRUPT,
		        "page walk: no meta page of %s carries the read "
		        "transaction's txnid %llu (a writer committed twice since it began, or the "
		        "meta page is damaged); retry with a fresh read transaction",
		        file, (unsigned long long)txnid);
		goto out;
	}
	const uint8_t *m = meta[cur];
	if (rd32(m + PW_META_DBS) != w.psize) {
		set_err(&w, ST_ECORRUPT,
		        "page walk: meta page %d of %s says page size %u, the "
		        "environment uses %u",
		        cur, file, rd32(m + PW_META_DBS), w.psize);
		goto out;
	}
	uint64_t last = rd64(m + PW_META_LAST_PG);
	uint64_t maxpages = info.me_mapsize / w.psize;
	if (last < 1 || last >= maxpages) {
		problem(&w,
		        "page %d (meta): last page %llu is outside 1..%llu (the map holds %llu "
		        "pages); walking the file's %llu pages",
		        cur, (unsigned long long)last, (unsigned long long)(maxpages - 1),
		        (unsigned long long)maxpages, (unsigned long long)(w.fsize / w.psize));
		last = w.fsize / w.psize ? w.fsize / w.psize - 1 : 0;
		if (last < 1)
			last = 1;
	}
	w.npages = last + 1;
	out->pages_total = w.npages;
	w.owner = calloc(w.npages, 1);
	if (!w.owner) {
		set_err(&w, ST_ENOMEM, "page walk: out of memory for a map of %llu pages",
		        (unsigned long long)w.npages);
		goto out;
	}
	w.owner[0] = w.owner[1] = OWN_META;

	walk_tree(&w, 1, m + PW_META_DBS + PW_DB_SIZE);
	walk_tree(&w, 0, m + PW_META_DBS);
	if (w.rc == ST_OK)
		leaks(&w);
	for (int i = 0; i < 2; i++) {
		out->pages_branch += out->trees[i].branch;
		out->pages_leaf += out->trees[i].leaf;
		out->pages_overflow += out->trees[i].overflow;
	}
	out->entries = out->trees[1].entries;
	if (w.rc == ST_OK && out->problems_total > out->nproblems) {
		char line[96];
		snprintf(line, sizeof line, "... and %llu more problems not listed",
		         (unsigned long long)(out->problems_total - out->nproblems));
		if (!(out->problems[out->nproblems] = strdup(line)))
			set_err(&w, ST_ENOMEM, "page walk: out of memory for a problem line");
		else
			out->nproblems++;
	}
out:
	if (w.fd >= 0)
		close(w.fd);
	free(w.owner);
	free(meta[1]);
	free(meta[0]);
	free(w.ovbuf);
	for (int i = PW_MAX_DEPTH - 1; i >= 0; i--)
		free(w.buf[i]);
	return w.rc;
}

void pw_report_fini(struct pw_report *r)
{
	if (r->problems)
		for (uint32_t i = 0; i < r->nproblems; i++)
			free(r->problems[i]);
	free(r->problems);
	memset(r, 0, sizeof *r);
}
