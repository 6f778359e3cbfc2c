/*
 * tests/unit/test_repl.c — the store's cluster mode (daemon/store/repl.c,
 * the st_repl_* API of strata.h, STORE.md §7, REPLICATION.md §3-§4) driven
 * by a mini replication driver in the test: a leader store whose
 * hooks.propose queues the captured entries, and a driver thread that,
 * like daemon/server/cluster.c's drain, persists them on the leader and on
 * every follower, applies them up to the last LSN, publishes stable /
 * all_matched / log_last and notifies. Covered: a mixed history replicated
 * byte for byte (chain heads, scans, st_verify), durability levels, a
 * refused proposal, the no-quorum timeout and the quiet wait after it,
 * st_repl_fail and truncation under a waiting write, truncation rules,
 * damaged or misplaced entries, recovery keeping segment files of
 * unapplied entries, the cluster identity, st_repl_body_files.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <dirent.h>

#include "daemon/store/store_int.h"
#include "daemon/store/strata.h"
#include "format/crc32c.h"
#include "tests/test.h"

static const uint8_t CLUSTER_ID[16] = {0xc1, 0x05, 0x7e, 0x12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
static const uint8_t OTHER_ID[16] = {0xee, 0xee, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42};

static int64_t now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static void sleep_ms(int ms)
{
	struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&t, NULL);
}

/* ---- copies of log entries ---------------------------------------------- */

struct ent {
	uint64_t lsn, epoch;
	uint8_t hash[ST_HASH_LEN];
	uint8_t *body; /* heap, NULL for a no-op */
	size_t len;
};

struct ents {
	struct ent *v;
	uint32_t n, cap;
};

static void ents_add(struct ents *l, const struct st_repl_entry *e)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 16;
		l->v = realloc(l->v, l->cap * sizeof *l->v);
		if (!l->v)
			abort();
	}
	struct ent *d = &l->v[l->n++];
	d->lsn = e->lsn;
	d->epoch = e->epoch;
	memcpy(d->hash, e->hash, ST_HASH_LEN);
	d->len = e->len;
	d->body = NULL;
	if (e->len) {
		d->body = malloc(e->len);
		if (!d->body)
			abort();
		memcpy(d->body, e->body, e->len);
	}
}

static void ents_free(void *arg)
{
	struct ents *l = arg;
	for (uint32_t i = 0; i < l->n; i++)
		free(l->v[i].body);
	free(l->v);
	memset(l, 0, sizeof *l);
}

static struct st_repl_entry as_entry(const struct ent *d)
{
	struct st_repl_entry e = {.lsn = d->lsn, .epoch = d->epoch, .body = d->body, .len = d->len};
	memcpy(e.hash, d->hash, ST_HASH_LEN);
	return e;
}

static int collect_one(void *arg, const struct st_repl_entry *e)
{
	ents_add(arg, e);
	return 0;
}

/* The store's log records, copied. */
static void log_of(st_store *s, struct ents *out)
{
	struct st_err err;
	memset(out, 0, sizeof *out);
	int rc = st_repl_log_each(s, collect_one, out, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  st_repl_log_each: %s\n", err.msg);
	REQUIRE(rc == ST_OK);
}

/* ---- the mini cluster --------------------------------------------------- */

struct prop {
	struct ents e;
	struct prop *next;
};

#define MAXF 2

struct clu {
	st_store *ld;                 /* the leader's store */
	st_store *fo[MAXF];           /* followers' stores */
	int nfo;
	char ldir[160], fdir[MAXF][160];
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct prop *q, *qt;          /* proposals not taken yet */
	uint64_t a_stable, a_all, a_last; /* atomics behind the leader's hooks */
	uint64_t f_last;              /* followers' log_last */
	uint64_t epoch;
	/* Driver behaviour, set by the test under mu. */
	int refuse;      /* propose returns ST_ENOTLEADER */
	int drop;        /* the driver fails proposals (st_repl_fail), persists nothing */
	int hold_apply;  /* persist, but wait before applying */
	int hold_all;    /* never advance all_matched */
	int stop;
	/* Driver state (under mu). */
	uint64_t persisted, applied;
	int proposals;   /* proposals taken */
	int drv_rc;
	char drv_msg[ST_ERR_MSG_MAX];
	pthread_t th;
	bool running;
};

static uint64_t ld_stable(void *ctx)
{
	return __atomic_load_n(&((struct clu *)ctx)->a_stable, __ATOMIC_ACQUIRE);
}
static uint64_t ld_all(void *ctx)
{
	return __atomic_load_n(&((struct clu *)ctx)->a_all, __ATOMIC_ACQUIRE);
}
static uint64_t ld_last(void *ctx)
{
	return __atomic_load_n(&((struct clu *)ctx)->a_last, __ATOMIC_ACQUIRE);
}
static uint64_t fo_last(void *ctx)
{
	return __atomic_load_n(&((struct clu *)ctx)->f_last, __ATOMIC_ACQUIRE);
}

/* Called with the leader's write lock held: only the queue's lock. */
static int ld_propose(void *ctx, const struct st_repl_entry *e, uint32_t n, struct st_err *err)
{
	struct clu *c = ctx;
	pthread_mutex_lock(&c->mu);
	if (c->refuse) {
		pthread_mutex_unlock(&c->mu);
		return st_seterr(err, ST_ENOTLEADER, "not the leader: node 9 leads, at tcp://x:1");
	}
	struct prop *p = calloc(1, sizeof *p);
	if (!p)
		abort();
	for (uint32_t i = 0; i < n; i++)
		ents_add(&p->e, &e[i]);
	if (c->qt)
		c->qt->next = p;
	else
		c->q = p;
	c->qt = p;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	return ST_OK;
}

static int fo_propose(void *ctx, const struct st_repl_entry *e, uint32_t n, struct st_err *err)
{
	(void)ctx, (void)e, (void)n;
	return st_seterr(err, ST_ENOTLEADER, "a follower: node 1 leads");
}

/* Copy a file of the leader into a follower, as the real driver fetches it. */
struct fetch {
	struct clu *c;
	st_store *to;
	int rc;
};

static int copy_file(const char *from, const char *to)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", to);
	char *slash = strrchr(dir, '/');
	*slash = '\0';
	mkdir(dir, 0755);
	FILE *in = fopen(from, "rb");
	if (!in)
		return errno;
	FILE *out = fopen(to, "wb");
	if (!out) {
		fclose(in);
		return errno;
	}
	char buf[65536];
	size_t k;
	while ((k = fread(buf, 1, sizeof buf, in)) > 0)
		fwrite(buf, 1, k, out);
	fclose(in);
	fflush(out);
	fsync(fileno(out));
	return fclose(out) == 0 ? 0 : errno;
}

static int fetch_one(void *arg, uint64_t tid, uint64_t fid, uint64_t size, uint32_t crc)
{
	struct fetch *f = arg;
	(void)size, (void)crc;
	char from[4096], to[4096];
	st_segment_path(f->c->ld, tid, fid, from, sizeof from);
	st_segment_path(f->to, tid, fid, to, sizeof to);
	struct stat st;
	if (stat(to, &st) == 0)
		return 0;
	f->rc = copy_file(from, to);
	return f->rc != 0;
}

static int fetch_files(struct clu *c, st_store *to, const struct ents *l, struct st_err *err)
{
	struct fetch f = {c, to, 0};
	for (uint32_t i = 0; i < l->n && f.rc == 0; i++) {
		if (!l->v[i].len)
			continue;
		int rc = st_repl_body_files(l->v[i].body, l->v[i].len, fetch_one, &f, err);
		if (rc != ST_OK)
			return rc;
	}
	return f.rc ? st_seterr(err, f.rc, "copying a segment: %s", strerror(f.rc)) : ST_OK;
}

static void drv_fail(struct clu *c, int rc, const struct st_err *err, const char *what)
{
	pthread_mutex_lock(&c->mu);
	if (!c->drv_rc) {
		c->drv_rc = rc;
		snprintf(c->drv_msg, sizeof c->drv_msg, "%s: %s", what, err->msg);
	}
	pthread_mutex_unlock(&c->mu);
}

/* Persist a proposal everywhere. */
static void drv_persist(struct clu *c, struct prop *p)
{
	struct st_err err;
	uint32_t n = p->e.n;
	struct st_repl_entry *e = calloc(n, sizeof *e);
	if (!e)
		abort();
	for (uint32_t i = 0; i < n; i++) {
		p->e.v[i].epoch = c->epoch;
		e[i] = as_entry(&p->e.v[i]);
	}
	uint64_t last = e[n - 1].lsn;
	int rc;
	if ((rc = st_repl_persist(c->ld, NULL, 0, e, n, &err)) != ST_OK) {
		drv_fail(c, rc, &err, "persist on the leader");
		goto out;
	}
	__atomic_store_n(&c->a_last, last, __ATOMIC_RELEASE);
	__atomic_store_n(&c->a_stable, last, __ATOMIC_RELEASE);
	st_repl_notify(c->ld);
	for (int f = 0; f < c->nfo; f++) {
		if ((rc = fetch_files(c, c->fo[f], &p->e, &err)) != ST_OK) {
			drv_fail(c, rc, &err, "fetch for a follower");
			goto out;
		}
		if ((rc = st_repl_persist(c->fo[f], NULL, 0, e, n, &err)) != ST_OK) {
			drv_fail(c, rc, &err, "persist on a follower");
			goto out;
		}
	}
	__atomic_store_n(&c->f_last, last, __ATOMIC_RELEASE);
	pthread_mutex_lock(&c->mu);
	c->persisted = last;
	if (!c->hold_all)
		__atomic_store_n(&c->a_all, last, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&c->mu);
	st_repl_notify(c->ld);
out:
	free(e);
}

static void *driver(void *arg)
{
	struct clu *c = arg;
	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (!c->stop && !c->q && !(c->applied < c->persisted && !c->hold_apply))
			pthread_cond_wait(&c->cv, &c->mu);
		if (c->stop)
			break;
		if (c->q) {
			struct prop *p = c->q;
			c->q = p->next;
			if (!c->q)
				c->qt = NULL;
			c->proposals++;
			int drop = c->drop;
			pthread_mutex_unlock(&c->mu);
			if (drop)
				st_repl_fail(c->ld, p->e.v[0].lsn, p->e.v[0].hash);
			else
				drv_persist(c, p);
			ents_free(&p->e);
			free(p);
			pthread_mutex_lock(&c->mu);
			pthread_cond_broadcast(&c->cv);
			continue;
		}
		uint64_t upto = c->persisted;
		pthread_mutex_unlock(&c->mu);
		struct st_err err;
		int rc = st_repl_apply(c->ld, upto, &err);
		if (rc != ST_OK)
			drv_fail(c, rc, &err, "apply on the leader");
		for (int f = 0; rc == ST_OK && f < c->nfo; f++)
			if ((rc = st_repl_apply(c->fo[f], upto, &err)) != ST_OK)
				drv_fail(c, rc, &err, "apply on a follower");
		st_repl_notify(c->ld);
		pthread_mutex_lock(&c->mu);
		c->applied = upto;
		if (rc != ST_OK)
			c->hold_apply = 1; /* stop trying */
		pthread_cond_broadcast(&c->cv);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

static void clu_set(struct clu *c, int *field, int v)
{
	pthread_mutex_lock(&c->mu);
	*field = v;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static void clu_stop(void *arg)
{
	struct clu *c = arg;
	if (c->running) {
		clu_set(c, &c->stop, 1);
		pthread_join(c->th, NULL);
		c->running = false;
	}
	while (c->q) {
		struct prop *p = c->q;
		c->q = p->next;
		ents_free(&p->e);
		free(p);
	}
	c->qt = NULL;
	st_store_close(c->ld);
	c->ld = NULL;
	for (int f = 0; f < c->nfo; f++) {
		st_store_close(c->fo[f]);
		c->fo[f] = NULL;
	}
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
}

static void attach_follower(struct clu *c, st_store *s, uint64_t node)
{
	struct st_err err;
	int rc = st_repl_identity(s, node, CLUSTER_ID, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  identity: %s\n", err.msg);
	REQUIRE(rc == ST_OK);
	struct st_repl_hooks h = {.ctx = c, .propose = fo_propose, .stable = fo_last,
				  .all_matched = fo_last, .log_last = fo_last,
				  .timeout_us = 2000000, .durability = ST_DUR_QUORUM};
	REQUIRE(st_repl_attach(s, &h, &err) == ST_OK);
}

static void noop_entry(const uint8_t prev[ST_HASH_LEN], uint64_t lsn, uint64_t epoch,
		       struct st_repl_entry *e)
{
	memset(e, 0, sizeof *e);
	e->lsn = lsn;
	e->epoch = epoch;
	st_repl_noop_hash(prev, lsn, e->hash);
}

/* The epoch's first entry: a no-op at LSN 1, persisted and applied. */
static void start_with_noop(st_store *s, uint64_t epoch)
{
	struct st_err err;
	uint8_t zero[ST_HASH_LEN] = {0};
	struct st_repl_entry e;
	noop_entry(zero, 1, epoch, &e);
	struct st_repl_hs hs = {epoch, 1, 0};
	REQUIRE(st_repl_persist(s, &hs, 0, &e, 1, &err) == ST_OK);
	int rc = st_repl_apply(s, 1, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  apply of the no-op: %s\n", err.msg);
	REQUIRE(rc == ST_OK);
	REQUIRE(st_repl_applied(s) == 1);
}

/* A leader and nfo followers in fresh dirs, each with the no-op at LSN 1;
 * the driver running. Stopped and closed when the test ends. */
static struct clu *clu_start(struct clu *c, int nfo, int64_t timeout_us)
{
	struct st_err err;
	memset(c, 0, sizeof *c);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->nfo = nfo;
	c->epoch = 1;
	snprintf(c->ldir, sizeof c->ldir, "%s", test_new_dir("repl"));
	for (int f = 0; f < nfo; f++)
		snprintf(c->fdir[f], sizeof c->fdir[f], "%s", test_new_dir("repl"));
	test_defer(clu_stop, c);
	REQUIRE(st_store_open(c->ldir, NULL, &c->ld, &err) == ST_OK);
	REQUIRE(st_repl_identity(c->ld, 1, CLUSTER_ID, &err) == ST_OK);
	struct st_repl_hooks h = {.ctx = c, .propose = ld_propose, .stable = ld_stable,
				  .all_matched = ld_all, .log_last = ld_last,
				  .timeout_us = timeout_us, .durability = ST_DUR_QUORUM};
	REQUIRE(st_repl_attach(c->ld, &h, &err) == ST_OK);
	for (int f = 0; f < nfo; f++) {
		REQUIRE(st_store_open(c->fdir[f], NULL, &c->fo[f], &err) == ST_OK);
		attach_follower(c, c->fo[f], (uint64_t)f + 2);
	}
	start_with_noop(c->ld, 1);
	for (int f = 0; f < nfo; f++)
		start_with_noop(c->fo[f], 1);
	c->a_stable = c->a_all = c->a_last = c->f_last = 1;
	c->persisted = c->applied = 1;
	REQUIRE(pthread_create(&c->th, NULL, driver, c) == 0);
	c->running = true;
	return c;
}

/* Wait (at most 5 s) until the driver applied up to lsn everywhere. */
static bool wait_applied(struct clu *c, uint64_t lsn)
{
	int64_t end = now_us() + 5000000;
	for (;;) {
		pthread_mutex_lock(&c->mu);
		bool ok = c->applied >= lsn;
		pthread_mutex_unlock(&c->mu);
		if (ok)
			return true;
		if (now_us() > end)
			return false;
		sleep_ms(2);
	}
}

static void check_driver_ok(struct clu *c)
{
	pthread_mutex_lock(&c->mu);
	int rc = c->drv_rc;
	char msg[ST_ERR_MSG_MAX];
	snprintf(msg, sizeof msg, "%s", c->drv_msg);
	pthread_mutex_unlock(&c->mu);
	if (rc)
		fprintf(stderr, "  driver: %s\n", msg);
	CHECK_EQ(rc, 0);
}

/* ---- rows ---------------------------------------------------------------- */

static const struct st_column_def A_COLS[2] = {{"n", ST_TYPE_INT64, false},
					       {"s", ST_TYPE_STRING, true}};
static const struct st_column_def N_COL[1] = {{"n", ST_TYPE_INT64, false}};

static int create(st_store *s, const char *name, const struct st_column_def *cols, uint32_t n,
		  struct st_err *err)
{
	struct st_table_spec spec = {.name = name, .cols = cols, .ncols = n};
	return st_table_create(s, &spec, ST_CREATE_ERROR, NULL, err);
}

/* rows of column n from base, n+1, ... (and s = "v<n>" if with_s). */
static int put_rows(st_store *s, const char *table, int64_t base, uint32_t rows, bool with_s,
		    struct st_commit_result *r, struct st_err *err)
{
	int64_t *v = malloc(rows * sizeof *v);
	uint32_t *off = malloc((rows + 1) * sizeof *off);
	char *bytes = malloc((size_t)rows * 24 + 1);
	if (!v || !off || !bytes)
		abort();
	off[0] = 0;
	for (uint32_t i = 0; i < rows; i++) {
		v[i] = base + i;
		int k = sprintf(bytes + off[i], "v%lld", (long long)(base + i));
		off[i + 1] = off[i] + (uint32_t)k;
	}
	const char *names[2] = {"n", "s"};
	struct st_vec cols[2] = {{.type = ST_TYPE_INT64, .n = rows, .data = v},
				 {.type = ST_TYPE_STRING, .n = rows, .offsets = off,
				  .bytes = (const uint8_t *)bytes}};
	struct st_batch b = {with_s ? 2 : 1, names, cols, rows};
	int rc = st_write(s, table, &b, 1, NULL, r, err);
	free(v);
	free(off);
	free(bytes);
	return rc;
}

static int put1(st_store *s, const char *table, int64_t n, struct st_commit_result *r,
		struct st_err *err)
{
	return put_rows(s, table, n, 1, false, r, err);
}

/* Every row of table at `at` as text, one line per row ("" on error, and
 * *nrows = -1). */
static char *dump_at(st_store *s, const char *table, struct st_at at, long *nrows)
{
	struct st_err err;
	st_scan *sc;
	struct st_buf out = {0};
	*nrows = -1;
	if (st_scan_open(s, table, at, NULL, 0, NULL, &sc, &err) != ST_OK) {
		fprintf(stderr, "  scan %s: %s\n", table, err.msg);
		return strdup("");
	}
	long rows = 0;
	const struct st_scan_batch *b;
	int rc;
	char line[256];
	while ((rc = st_scan_next(sc, &b, &err)) == ST_OK && b) {
		for (uint32_t j = 0; j < (b->sel ? b->nsel : b->rows); j++) {
			uint32_t i = b->sel ? b->sel[j] : j;
			for (uint32_t c = 0; c < b->ncols; c++) {
				const struct st_vec *v = &b->cols[c];
				int k;
				if (!st_vec_is_valid(v, i)) {
					k = snprintf(line, sizeof line, "NULL|");
				} else if (v->type == ST_TYPE_INT64 || v->type == ST_TYPE_TIMESTAMP) {
					k = snprintf(line, sizeof line, "%lld|",
						     (long long)((const int64_t *)v->data)[i]);
				} else if (v->type == ST_TYPE_INT32 || v->type == ST_TYPE_DATE) {
					k = snprintf(line, sizeof line, "%d|",
						     ((const int32_t *)v->data)[i]);
				} else if (v->type == ST_TYPE_STRING || v->type == ST_TYPE_BINARY) {
					const struct st_vec *d = v->dict ? v->dict : v;
					uint32_t x = v->dict ? v->codes[i] : i;
					k = snprintf(line, sizeof line, "%.*s|",
						     (int)(d->offsets[x + 1] - d->offsets[x]),
						     (const char *)d->bytes + d->offsets[x]);
				} else {
					k = snprintf(line, sizeof line, "?%d|", v->type);
				}
				st_buf_append(&out, line, (size_t)k);
			}
			st_buf_append(&out, "\n", 1);
			rows++;
		}
	}
	if (rc != ST_OK)
		fprintf(stderr, "  scan %s: %s\n", table, err.msg);
	st_scan_close(sc);
	st_buf_append(&out, "", 1);
	*nrows = rc == ST_OK ? rows : -1;
	char *r = strdup((const char *)out.data);
	st_buf_free(&out);
	return r;
}

static char *dump(st_store *s, const char *table, long *nrows)
{
	return dump_at(s, table, (struct st_at){ST_AT_LATEST, 0}, nrows);
}

static bool missing(st_store *s, const char *table)
{
	struct st_err err;
	uint64_t v;
	return st_table_version(s, table, &v, &err) == ST_ENOTFOUND;
}

static long count_rows(st_store *s, const char *table)
{
	long n;
	free(dump(s, table, &n));
	return n;
}

/* Two stores agree: chain head, live tables and their rows, st_verify clean. */
static void check_same(st_store *a, st_store *b)
{
	struct st_err err;
	struct st_chain_head ha, hb;
	REQUIRE(st_chain_head(a, &ha, &err) == ST_OK);
	REQUIRE(st_chain_head(b, &hb, &err) == ST_OK);
	CHECK_EQ(ha.lsn, hb.lsn);
	CHECK(!memcmp(ha.hash, hb.hash, ST_HASH_LEN));
	char **na, **nb;
	uint32_t ca, cb;
	REQUIRE(st_table_list(a, &na, &ca, &err) == ST_OK);
	REQUIRE(st_table_list(b, &nb, &cb, &err) == ST_OK);
	CHECK_EQ(ca, cb);
	for (uint32_t i = 0; i < ca && i < cb; i++) {
		CHECK(!strcmp(na[i], nb[i]));
		long ra, rb;
		char *da = dump(a, na[i], &ra), *db = dump(b, nb[i], &rb);
		CHECK(ra >= 0);
		CHECK_EQ(ra, rb);
		CHECK(!strcmp(da, db));
		uint64_t va = 0, vb = 1;
		CHECK(st_table_version(a, na[i], &va, &err) == ST_OK &&
		      st_table_version(b, nb[i], &vb, &err) == ST_OK && va == vb);
		free(da);
		free(db);
	}
	free(na);
	free(nb);
	struct st_verify_result vr;
	REQUIRE(st_verify(a, &vr, &err) == ST_OK);
	for (uint32_t i = 0; i < vr.nproblems; i++)
		fprintf(stderr, "  verify a: %s\n", vr.problems[i]);
	CHECK_EQ(vr.nproblems, 0);
	CHECK_EQ(vr.last_lsn, ha.lsn);
	st_verify_result_fini(&vr);
	REQUIRE(st_verify(b, &vr, &err) == ST_OK);
	for (uint32_t i = 0; i < vr.nproblems; i++)
		fprintf(stderr, "  verify b: %s\n", vr.problems[i]);
	CHECK_EQ(vr.nproblems, 0);
	CHECK_EQ(vr.last_lsn, hb.lsn);
	st_verify_result_fini(&vr);
}

/* ---- a writer on its own thread (durability is per thread) ------------ */

struct writer {
	st_store *s;
	const char *table;
	int64_t n;
	int level;
	int rc;
	struct st_err err;
	struct st_commit_result res;
	int done; /* atomic */
	int64_t took_us;
	pthread_t th;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	st_repl_set_durability(w->level);
	int64_t t0 = now_us();
	w->rc = put1(w->s, w->table, w->n, &w->res, &w->err);
	w->took_us = now_us() - t0;
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void writer_start(struct writer *w, st_store *s, const char *table, int64_t n, int level)
{
	memset(w, 0, sizeof *w);
	w->s = s;
	w->table = table;
	w->n = n;
	w->level = level;
	REQUIRE(pthread_create(&w->th, NULL, writer_main, w) == 0);
}

static bool writer_done_within(struct writer *w, int ms)
{
	int64_t end = now_us() + (int64_t)ms * 1000;
	while (!__atomic_load_n(&w->done, __ATOMIC_ACQUIRE) && now_us() < end)
		sleep_ms(2);
	return __atomic_load_n(&w->done, __ATOMIC_ACQUIRE);
}

/* ---- 1. a mixed history ------------------------------------------------- */

struct many {
	st_store *s;
	int id, rc;
	struct st_err err;
	pthread_t th;
};

static void *many_main(void *arg)
{
	struct many *m = arg;
	for (int i = 0; i < 5 && m->rc == ST_OK; i++) {
		struct st_commit_result r;
		m->rc = put1(m->s, m->id % 2 ? "a" : "b2", 1000 * m->id + i, &r, &m->err);
	}
	return NULL;
}

static void t_mixed_history(void)
{
	static struct clu c;
	struct st_err err;
	struct st_commit_result r;
	clu_start(&c, 2, 3000000);
	REQUIRE(create(c.ld, "a", A_COLS, 2, &err) == ST_OK);
	REQUIRE(create(c.ld, "b", N_COL, 1, &err) == ST_OK);
	REQUIRE(create(c.ld, "c", N_COL, 1, &err) == ST_OK);
	CHECK_EQ(st_repl_applied(c.ld), 4); /* the no-op and three creates */
	for (int i = 0; i < 4; i++) {
		REQUIRE(put_rows(c.ld, "a", 10 * i, 3, true, &r, &err) == ST_OK);
		REQUIRE(put1(c.ld, "b", i, &r, &err) == ST_OK);
	}
	CHECK_EQ(r.lsn, 12);
	/* A file-sized write: its segment reaches the followers as a file. */
	REQUIRE(put_rows(c.ld, "b", 5000, 40000, false, &r, &err) == ST_OK);
	struct st_alter al = {ST_ALTER_ADD_COLUMN, "x", NULL, ST_TYPE_INT64};
	REQUIRE(st_table_alter(c.ld, "a", &al, &r, &err) == ST_OK);
	struct st_alter prop = {ST_ALTER_SET_PROPERTY, "owner", "ops", 0};
	REQUIRE(st_table_alter(c.ld, "a", &prop, &r, &err) == ST_OK);
	REQUIRE(put_rows(c.ld, "a", 100, 2, true, &r, &err) == ST_OK);
	REQUIRE(st_table_rename(c.ld, "b", "b2", &r, &err) == ST_OK);
	REQUIRE(put1(c.ld, "c", 7, &r, &err) == ST_OK);
	int rc = st_table_compact(c.ld, "b2", &r, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  compact: %s\n", err.msg);
	CHECK(rc == ST_OK && !r.noop);
	REQUIRE(st_table_drop(c.ld, "c", NULL, &err) == ST_OK);
	/* A multi-table transaction: two entries, one atomic unit. */
	st_txn *t;
	REQUIRE(st_txn_begin(c.ld, &t, &err) == ST_OK);
	const char *names[1] = {"n"};
	int64_t v1 = 555, v2 = 666;
	struct st_vec va = {.type = ST_TYPE_INT64, .n = 1, .data = &v1};
	struct st_vec vb = {.type = ST_TYPE_INT64, .n = 1, .data = &v2};
	struct st_batch ba = {1, names, &va, 1}, bb = {1, names, &vb, 1};
	REQUIRE(st_txn_write(t, "a", &ba, 1, NULL, &err) == ST_OK);
	REQUIRE(st_txn_write(t, "b2", &bb, 1, NULL, &err) == ST_OK);
	struct st_commit_result tr[2];
	rc = st_txn_commit(t, tr, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  txn: %s\n", err.msg);
	REQUIRE(rc == ST_OK);
	CHECK_EQ(tr[1].lsn, tr[0].lsn + 1);
	/* Concurrent writers: group commit in cluster mode. */
	struct many m[4];
	for (int i = 0; i < 4; i++) {
		m[i] = (struct many){.s = c.ld, .id = i + 1};
		REQUIRE(pthread_create(&m[i].th, NULL, many_main, &m[i]) == 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(m[i].th, NULL);
		if (m[i].rc != ST_OK)
			fprintf(stderr, "  writer %d: %s\n", i, m[i].err.msg);
		CHECK_EQ(m[i].rc, ST_OK);
	}
	uint64_t last = st_repl_applied(c.ld);
	CHECK_EQ(last, tr[1].lsn + 20);
	REQUIRE(wait_applied(&c, last));
	check_driver_ok(&c);
	CHECK_EQ(count_rows(c.ld, "a"), 12 + 2 + 1 + 10);
	CHECK_EQ(count_rows(c.ld, "b2"), 4 + 40000 + 1 + 10);
	CHECK(missing(c.ld, "c")); /* dropped */
	for (int f = 0; f < c.nfo; f++) {
		CHECK_EQ(st_repl_applied(c.fo[f]), last);
		check_same(c.ld, c.fo[f]);
	}
	/* Time travel on a follower reads the same old versions. */
	long n1, n2;
	char *d1 = dump_at(c.ld, "a", (struct st_at){ST_AT_VERSION, 2}, &n1);
	char *d2 = dump_at(c.fo[0], "a", (struct st_at){ST_AT_VERSION, 2}, &n2);
	CHECK_EQ(n1, 6);
	CHECK(n1 == n2 && !strcmp(d1, d2));
	free(d1);
	free(d2);
	/* The logs are the same byte for byte. */
	struct ents la, lb;
	log_of(c.ld, &la);
	test_defer(ents_free, &la);
	log_of(c.fo[1], &lb);
	test_defer(ents_free, &lb);
	CHECK_EQ(la.n, last);
	CHECK_EQ(la.n, lb.n);
	for (uint32_t i = 0; i < la.n && i < lb.n; i++)
		CHECK(la.v[i].lsn == lb.v[i].lsn && la.v[i].len == lb.v[i].len &&
		      !memcmp(la.v[i].hash, lb.v[i].hash, ST_HASH_LEN) &&
		      (!la.v[i].len || !memcmp(la.v[i].body, lb.v[i].body, la.v[i].len)));
	/* A follower refuses writes: its propose says who leads. */
	CHECK_EQ(put1(c.fo[0], "a", 1, &r, &err), ST_ENOTLEADER);
	CHECK_CONTAINS(err.msg, "node 1 leads");
	CHECK_EQ(st_repl_applied(c.fo[0]), last);
	/* A reopened follower has the same state and applies what follows. */
	clu_set(&c, &c.stop, 1);
	pthread_join(c.th, NULL);
	c.running = false;
	c.stop = 0;
	st_store_close(c.fo[0]);
	c.fo[0] = NULL;
	REQUIRE(st_store_open(c.fdir[0], NULL, &c.fo[0], &err) == ST_OK);
	attach_follower(&c, c.fo[0], 2);
	CHECK_EQ(st_repl_applied(c.fo[0]), last);
	REQUIRE(pthread_create(&c.th, NULL, driver, &c) == 0);
	c.running = true;
	REQUIRE(put1(c.ld, "a", 4242, &r, &err) == ST_OK);
	REQUIRE(wait_applied(&c, r.lsn));
	check_driver_ok(&c);
	check_same(c.ld, c.fo[0]);
}

/* ---- 2. durability levels ----------------------------------------------- */

static void t_durability(void)
{
	static struct clu c;
	struct st_err err;
	struct st_commit_result r;
	clu_start(&c, 1, 3000000);
	REQUIRE(create(c.ld, "t", N_COL, 1, &err) == ST_OK);
	REQUIRE(put1(c.ld, "t", 1, &r, &err) == ST_OK);
	uint64_t base = r.lsn;
	/* local: answered once the leader's log holds it, before it applies. */
	clu_set(&c, &c.hold_apply, 1);
	struct writer w;
	writer_start(&w, c.ld, "t", 2, ST_DUR_LOCAL);
	bool done = writer_done_within(&w, 2000);
	CHECK(done);
	pthread_join(w.th, NULL);
	if (w.rc != ST_OK)
		fprintf(stderr, "  local write: %s\n", w.err.msg);
	CHECK_EQ(w.rc, ST_OK);
	CHECK_EQ(w.res.lsn, base + 1);
	CHECK(ld_stable(&c) >= base + 1);
	CHECK_EQ(st_repl_applied(c.ld), base); /* not applied yet */
	CHECK_EQ(count_rows(c.ld, "t"), 1);    /* not visible yet */
	CHECK_EQ(count_rows(c.fo[0], "t"), 1);
	uint64_t v = 0;
	CHECK(st_table_version(c.ld, "t", &v, &err) == ST_OK && v == 1);
	clu_set(&c, &c.hold_apply, 0);
	REQUIRE(wait_applied(&c, base + 1));
	CHECK_EQ(count_rows(c.ld, "t"), 2);
	CHECK_EQ(count_rows(c.fo[0], "t"), 2);
	/* quorum (the default): not answered before it applies. */
	clu_set(&c, &c.hold_apply, 1);
	writer_start(&w, c.ld, "t", 3, ST_DUR_DEFAULT);
	CHECK(!writer_done_within(&w, 200));
	CHECK(ld_stable(&c) >= base + 2); /* durable here, not committed */
	clu_set(&c, &c.hold_apply, 0);
	CHECK(writer_done_within(&w, 2000));
	pthread_join(w.th, NULL);
	CHECK_EQ(w.rc, ST_OK);
	CHECK_EQ(w.res.lsn, base + 2);
	CHECK_EQ(count_rows(c.ld, "t"), 3);
	/* all: applied, but answered only once every voter holds it. */
	clu_set(&c, &c.hold_all, 1);
	writer_start(&w, c.ld, "t", 4, ST_DUR_ALL);
	CHECK(wait_applied(&c, base + 3));
	CHECK(!writer_done_within(&w, 200));
	CHECK_EQ(count_rows(c.ld, "t"), 4); /* applied: visible */
	pthread_mutex_lock(&c.mu);
	c.hold_all = 0;
	__atomic_store_n(&c.a_all, c.persisted, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&c.mu);
	st_repl_notify(c.ld);
	CHECK(writer_done_within(&w, 2000));
	pthread_join(w.th, NULL);
	CHECK_EQ(w.rc, ST_OK);
	CHECK_EQ(w.res.lsn, base + 3);
	check_driver_ok(&c);
	check_same(c.ld, c.fo[0]);
}

/* ---- 3. a refused proposal ---------------------------------------------- */

static void t_refused(void)
{
	static struct clu c;
	struct st_err err;
	struct st_commit_result r;
	clu_start(&c, 1, 2000000);
	REQUIRE(create(c.ld, "t", N_COL, 1, &err) == ST_OK);
	REQUIRE(put1(c.ld, "t", 1, &r, &err) == ST_OK);
	struct st_chain_head h0, h1;
	REQUIRE(st_chain_head(c.ld, &h0, &err) == ST_OK);
	clu_set(&c, &c.refuse, 1);
	err.msg[0] = 0;
	CHECK_EQ(put1(c.ld, "t", 2, &r, &err), ST_ENOTLEADER);
	CHECK_CONTAINS(err.msg, "node 9 leads");
	struct st_alter al = {ST_ALTER_ADD_COLUMN, "x", NULL, ST_TYPE_INT64};
	CHECK_EQ(st_table_alter(c.ld, "t", &al, &r, &err), ST_ENOTLEADER);
	CHECK_EQ(create(c.ld, "u", N_COL, 1, &err), ST_ENOTLEADER);
	REQUIRE(st_chain_head(c.ld, &h1, &err) == ST_OK);
	CHECK_EQ(h1.lsn, h0.lsn);
	CHECK(!memcmp(h0.hash, h1.hash, ST_HASH_LEN));
	CHECK_EQ(count_rows(c.ld, "t"), 1);
	CHECK(missing(c.ld, "u"));
	uint64_t v = 0;
	CHECK(st_table_version(c.ld, "t", &v, &err) == ST_OK && v == 1);
	struct act_metadata *md;
	REQUIRE(st_table_describe(c.ld, "t", -1, &md, &err) == ST_OK);
	act_metadata_free(md);
	struct ents l;
	log_of(c.ld, &l);
	CHECK_EQ(l.n, h0.lsn); /* nothing persisted */
	ents_free(&l);
	clu_set(&c, &c.refuse, 0);
	int rc = put1(c.ld, "t", 3, &r, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  write after refusal: %s\n", err.msg);
	CHECK_EQ(rc, ST_OK);
	CHECK_EQ(r.lsn, h0.lsn + 1);
	CHECK_EQ(r.version, 2);
	REQUIRE(wait_applied(&c, r.lsn));
	CHECK_EQ(count_rows(c.ld, "t"), 2);
	check_driver_ok(&c);
	check_same(c.ld, c.fo[0]);
}

/* ---- 4. no quorum in time ----------------------------------------------- */

static void t_timeout(void)
{
	static struct clu c;
	struct st_err err;
	struct st_commit_result r;
	clu_start(&c, 1, 300000);
	REQUIRE(create(c.ld, "t", N_COL, 1, &err) == ST_OK);
	REQUIRE(create(c.ld, "u", N_COL, 1, &err) == ST_OK);
	REQUIRE(put1(c.ld, "t", 1, &r, &err) == ST_OK);
	uint64_t base = r.lsn;
	clu_set(&c, &c.hold_apply, 1); /* persisted everywhere, never applied */
	int64_t t0 = now_us();
	CHECK_EQ(put1(c.ld, "t", 2, &r, &err), ST_EUNAVAIL);
	int64_t took = now_us() - t0;
	CHECK(took >= 290000 && took < 2000000);
	CHECK_CONTAINS(err.msg, "no quorum");
	CHECK_CONTAINS(err.msg, "300 ms");
	CHECK_EQ(ld_last(&c), base + 1);
	CHECK_EQ(count_rows(c.ld, "t"), 1);
	/* The next write (another table too) waits quietly, then fails alike. */
	t0 = now_us();
	CHECK_EQ(put1(c.ld, "u", 5, &r, &err), ST_EUNAVAIL);
	took = now_us() - t0;
	CHECK(took >= 290000 && took < 2000000);
	CHECK_CONTAINS(err.msg, "no quorum");
	CHECK_EQ(ld_last(&c), base + 1); /* it proposed nothing */
	CHECK_EQ(count_rows(c.ld, "u"), 0);
	/* A write waiting quietly goes on once the entry applies. */
	struct writer w;
	writer_start(&w, c.ld, "u", 6, ST_DUR_DEFAULT);
	sleep_ms(100);
	CHECK(!__atomic_load_n(&w.done, __ATOMIC_ACQUIRE));
	clu_set(&c, &c.hold_apply, 0);
	REQUIRE(wait_applied(&c, base + 1));
	CHECK_EQ(count_rows(c.ld, "t"), 2); /* the timed-out write committed after all */
	CHECK(writer_done_within(&w, 2000));
	pthread_join(w.th, NULL);
	if (w.rc != ST_OK)
		fprintf(stderr, "  write after the apply: %s\n", w.err.msg);
	CHECK_EQ(w.rc, ST_OK);
	CHECK_EQ(w.res.lsn, base + 2);
	REQUIRE(put1(c.ld, "t", 3, &r, &err) == ST_OK);
	CHECK_EQ(r.lsn, base + 3);
	REQUIRE(wait_applied(&c, r.lsn));
	CHECK_EQ(count_rows(c.ld, "t"), 3);
	CHECK_EQ(count_rows(c.ld, "u"), 1);
	check_driver_ok(&c);
	check_same(c.ld, c.fo[0]);
}

/* ---- 5. leadership lost while a write waits ----------------------------- */

/* Another leader's no-op at lsn, after s's last log record (at lsn - 1). */
static struct st_repl_entry noop_after(st_store *s, uint64_t lsn, uint64_t epoch)
{
	struct ents cur;
	log_of(s, &cur);
	REQUIRE(cur.n && cur.v[cur.n - 1].lsn == lsn - 1);
	struct st_repl_entry e = {.lsn = lsn, .epoch = epoch};
	st_repl_noop_hash(cur.v[cur.n - 1].hash, lsn, e.hash);
	ents_free(&cur);
	return e;
}

/* The driver state set by hand (it idles meanwhile): everything persisted
 * and published up to last, applied up to last (apply: the driver applies
 * it) or last - 1 reset as applied. The epoch moves to the new leader's. */
static void clu_publish(struct clu *c, uint64_t last, int apply)
{
	pthread_mutex_lock(&c->mu);
	c->persisted = last;
	c->applied = apply ? c->applied : last;
	__atomic_store_n(&c->a_last, last, __ATOMIC_RELEASE);
	__atomic_store_n(&c->a_stable, last, __ATOMIC_RELEASE);
	__atomic_store_n(&c->a_all, last, __ATOMIC_RELEASE);
	__atomic_store_n(&c->f_last, last, __ATOMIC_RELEASE);
	c->hold_apply = 0;
	if (apply)
		c->epoch++;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	st_repl_notify(c->ld);
}

/* A write of n to table t committed at want_lsn, applied everywhere, the
 * table then of rows rows; its LSN. */
static uint64_t put_next(struct clu *c, int64_t n, uint64_t want_lsn, long rows)
{
	struct st_err err;
	struct st_commit_result r;
	REQUIRE(put1(c->ld, "t", n, &r, &err) == ST_OK);
	CHECK_EQ(r.lsn, want_lsn);
	REQUIRE(wait_applied(c, r.lsn));
	CHECK_EQ(count_rows(c->ld, "t"), rows);
	check_driver_ok(c);
	check_same(c->ld, c->fo[0]);
	return r.lsn;
}

static void t_fail(void)
{
	static struct clu c;
	struct st_err err;
	struct st_commit_result r;
	clu_start(&c, 1, 3000000);
	REQUIRE(create(c.ld, "t", N_COL, 1, &err) == ST_OK);
	REQUIRE(put1(c.ld, "t", 1, &r, &err) == ST_OK);
	uint64_t base = r.lsn;
	/* The driver does not take the proposal: st_repl_fail. */
	clu_set(&c, &c.drop, 1);
	int64_t t0 = now_us();
	CHECK_EQ(put1(c.ld, "t", 2, &r, &err), ST_ENOTLEADER);
	CHECK(now_us() - t0 < 2000000);
	CHECK_CONTAINS(err.msg, "leadership moved");
	CHECK_EQ(count_rows(c.ld, "t"), 1);
	CHECK_EQ(st_repl_applied(c.ld), base);
	clu_set(&c, &c.drop, 0);
	REQUIRE(put1(c.ld, "t", 3, &r, &err) == ST_OK);
	CHECK_EQ(r.lsn, base + 1); /* the failed LSN is decided again */
	REQUIRE(wait_applied(&c, r.lsn));
	/* A write waiting on an entry the driver truncates fails too. */
	clu_set(&c, &c.hold_apply, 1);
	struct writer w;
	writer_start(&w, c.ld, "t", 4, ST_DUR_DEFAULT);
	uint64_t lsn = base + 2;
	int64_t end = now_us() + 2000000;
	while (ld_stable(&c) < lsn && now_us() < end)
		sleep_ms(2);
	CHECK_EQ(ld_stable(&c), lsn);
	CHECK(!__atomic_load_n(&w.done, __ATOMIC_ACQUIRE));
	/* The driver idles while hold_apply (no new proposal can come: the one
	 * writer waits). Never call the store holding c.mu: the propose hook
	 * takes it under the store's write lock. */
	int rc = st_repl_persist(c.ld, NULL, lsn, NULL, 0, &err);
	CHECK_EQ(rc, ST_OK);
	for (int f = 0; f < c.nfo; f++)
		CHECK_EQ(st_repl_persist(c.fo[f], NULL, lsn, NULL, 0, &err), ST_OK);
	clu_publish(&c, lsn - 1, 0);
	/* Truncated is not decided: a later leader that holds the entry may
	 * still commit it, so the writer waits on. */
	sleep_ms(100);
	CHECK(!__atomic_load_n(&w.done, __ATOMIC_ACQUIRE));
	/* Another leader's entry commits at its LSN: now it is lost for sure. */
	struct st_repl_entry nl = noop_after(c.ld, lsn, c.epoch + 1);
	CHECK_EQ(st_repl_persist(c.ld, NULL, 0, &nl, 1, &err), ST_OK);
	for (int f = 0; f < c.nfo; f++)
		CHECK_EQ(st_repl_persist(c.fo[f], NULL, 0, &nl, 1, &err), ST_OK);
	clu_publish(&c, lsn, 1);
	CHECK(writer_done_within(&w, 2000));
	pthread_join(w.th, NULL);
	CHECK_EQ(w.rc, ST_ENOTLEADER);
	CHECK_CONTAINS(w.err.msg, "not applied");
	CHECK_EQ(count_rows(c.ld, "t"), 2);
	lsn = put_next(&c, 5, lsn + 1, 3);
	/* A deposed leader that still publishes itself the leader (its driver
	 * paused, then given the new leader's entries): another leader's entry
	 * is durable at the next LSN before a write begins. The write is refused
	 * before it is proposed; it used to be proposed, and acknowledged once
	 * that entry applied (found by the fault harness's pause nemesis). */
	struct st_repl_entry other = noop_after(c.ld, lsn + 1, c.epoch + 1);
	CHECK_EQ(st_repl_persist(c.ld, NULL, lsn + 1, &other, 1, &err), ST_OK);
	pthread_mutex_lock(&c.mu);
	int taken = c.proposals;
	pthread_mutex_unlock(&c.mu);
	CHECK_EQ(ld_last(&c), lsn); /* the published state is stale */
	CHECK_EQ(put1(c.ld, "t", 7, &r, &err), ST_ENOTLEADER);
	CHECK_CONTAINS(err.msg, "not the leader any more");
	CHECK_CONTAINS(err.msg, "not applied");
	pthread_mutex_lock(&c.mu);
	CHECK_EQ(c.proposals, taken);
	CHECK(c.q == NULL);
	pthread_mutex_unlock(&c.mu);
	CHECK_EQ(count_rows(c.ld, "t"), 3);
	/* That entry dropped again (it was never the followers'), writes go on. */
	CHECK_EQ(st_repl_persist(c.ld, NULL, lsn + 1, NULL, 0, &err), ST_OK);
	lsn = put_next(&c, 8, lsn + 1, 4);
	/* The driver stops (st_repl_fail(s, 0)) while a write waits on an
	 * entry it proposed: the followers may have it, so the write is not
	 * "not applied" but may still commit (found by the fault harness's
	 * diskfull nemesis on a leader). */
	clu_set(&c, &c.hold_apply, 1);
	struct writer w2;
	writer_start(&w2, c.ld, "t", 6, ST_DUR_DEFAULT);
	end = now_us() + 2000000;
	while (ld_stable(&c) < lsn + 1 && now_us() < end)
		sleep_ms(2);
	st_repl_fail(c.ld, 0, NULL);
	CHECK(writer_done_within(&w2, 2000));
	pthread_join(w2.th, NULL);
	CHECK_EQ(w2.rc, ST_EUNAVAIL);
	CHECK_CONTAINS(w2.err.msg, "may still commit");
	clu_set(&c, &c.hold_apply, 0);
}

/* ---- a leader's log, to feed followers by hand --------------------------- */

/* A leader alone (no followers) with tables t, then a write of rows rows
 * (file-sized when large); *log gets its log records (LSN 1 the no-op). */
static void leader_log(struct clu *c, uint32_t rows, struct ents *log)
{
	struct st_err err;
	struct st_commit_result r;
	clu_start(c, 0, 3000000);
	REQUIRE(create(c->ld, "t", A_COLS, 2, &err) == ST_OK);
	REQUIRE(put_rows(c->ld, "t", 0, rows, true, &r, &err) == ST_OK);
	REQUIRE(put_rows(c->ld, "t", 1000000, 3, true, &r, &err) == ST_OK);
	REQUIRE(wait_applied(c, r.lsn));
	check_driver_ok(c);
	log_of(c->ld, log);
	test_defer(ents_free, log);
	REQUIRE(log->n == 4);
}

static st_store *fresh_follower(struct clu *c, uint64_t node, char *dir, size_t len)
{
	struct st_err err;
	st_store *s;
	snprintf(dir, len, "%s", test_new_dir("repl"));
	REQUIRE(st_store_open(dir, NULL, &s, &err) == ST_OK);
	attach_follower(c, s, node);
	return s;
}

static void close_store(void *arg)
{
	st_store **s = arg;
	st_store_close(*s);
	*s = NULL;
}

struct lsns {
	uint64_t v[64];
	uint32_t n;
};

static int lsn_one(void *arg, const struct st_repl_entry *e)
{
	struct lsns *l = arg;
	if (l->n < 64)
		l->v[l->n++] = e->lsn;
	return 0;
}

static uint32_t log_lsns(st_store *s, struct lsns *l)
{
	struct st_err err;
	l->n = 0;
	CHECK(st_repl_log_each(s, lsn_one, l, &err) == ST_OK);
	return l->n;
}

static int persist_ents(st_store *s, uint64_t trunc, const struct ents *l, uint32_t from,
			uint32_t to, struct st_err *err)
{
	struct st_repl_entry e[16];
	uint32_t n = 0;
	for (uint32_t i = from; i < to && n < 16; i++)
		e[n++] = as_entry(&l->v[i]);
	return st_repl_persist(s, NULL, trunc, e, n, err);
}

/* Apply the log up to upto one LSN per st_repl_apply call (see
 * t_apply_batch for why the tests that are about something else do so). */
static int apply_each(st_store *s, uint64_t upto, struct st_err *err)
{
	int rc = ST_OK;
	for (uint64_t l = st_repl_applied(s) + 1; rc == ST_OK && l <= upto; l++)
		rc = st_repl_apply(s, l, err);
	return rc;
}

/* ---- 6. truncation -------------------------------------------------------- */

static void t_truncate(void)
{
	static struct clu c;
	static struct ents log;
	static st_store *f;
	struct st_err err;
	char dir[160];
	leader_log(&c, 10, &log);
	f = fresh_follower(&c, 2, dir, sizeof dir);
	test_defer(close_store, &f);
	struct st_repl_hs hs1 = {1, 1, 0};
	REQUIRE(st_repl_persist(f, &hs1, 0, NULL, 0, &err) == ST_OK);
	REQUIRE(persist_ents(f, 0, &log, 0, 1, &err) == ST_OK);
	REQUIRE(st_repl_apply(f, 1, &err) == ST_OK);
	REQUIRE(persist_ents(f, 0, &log, 1, 4, &err) == ST_OK);
	struct lsns l;
	CHECK_EQ(log_lsns(f, &l), 4);
	CHECK_EQ(st_repl_applied(f), 1);
	/* Drop 3 and 4 (unapplied). */
	REQUIRE(st_repl_persist(f, NULL, 3, NULL, 0, &err) == ST_OK);
	CHECK_EQ(log_lsns(f, &l), 2);
	CHECK(l.n == 2 && l.v[0] == 1 && l.v[1] == 2);
	struct st_buf b = {0};
	CHECK_EQ(st_repl_log_get(f, 3, &b, &err), ST_ENOTFOUND);
	st_buf_free(&b);
	/* Truncate and append in one call: 3 and 4 back. */
	REQUIRE(persist_ents(f, 3, &log, 2, 4, &err) == ST_OK);
	CHECK_EQ(log_lsns(f, &l), 4);
	REQUIRE(st_repl_log_get(f, 4, &b, &err) == ST_OK);
	CHECK(b.len == log.v[3].len && !memcmp(b.data, log.v[3].body, b.len));
	st_buf_free(&b);
	/* Apply 2; truncating at or below the applied LSN is refused. */
	REQUIRE(st_repl_apply(f, 2, &err) == ST_OK);
	CHECK_EQ(st_repl_applied(f), 2);
	CHECK_EQ(st_repl_persist(f, NULL, 2, NULL, 0, &err), ST_ECORRUPT);
	CHECK_CONTAINS(err.msg, "LSN 2");
	CHECK_EQ(st_repl_persist(f, NULL, 1, NULL, 0, &err), ST_ECORRUPT);
	CHECK_EQ(log_lsns(f, &l), 4); /* nothing dropped */
	/* A refused truncation stores nothing else of the call either. */
	struct st_repl_hs hs = {7, 7, 7}, got;
	CHECK_EQ(st_repl_persist(f, &hs, 2, NULL, 0, &err), ST_ECORRUPT);
	REQUIRE(st_repl_hs_load(f, &got, &err) == ST_OK);
	CHECK(got.epoch != 7);
	/* Above it is fine; the rest then applies and matches the leader. */
	REQUIRE(st_repl_persist(f, NULL, 4, NULL, 0, &err) == ST_OK);
	CHECK_EQ(log_lsns(f, &l), 3);
	REQUIRE(persist_ents(f, 0, &log, 3, 4, &err) == ST_OK);
	int rc = apply_each(f, 4, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  apply: %s\n", err.msg);
	REQUIRE(rc == ST_OK);
	check_same(c.ld, f);
	/* Hard state: stored by persist, commit raised by apply. */
	REQUIRE(st_repl_hs_load(f, &got, &err) == ST_OK);
	CHECK_EQ(got.epoch, 1);
	CHECK_EQ(got.commit, 4);
}

/* ---- 7. damaged entries --------------------------------------------------- */

static void fix_crc(uint8_t *b, size_t len)
{
	st_put_le32(b + len - 4, st_crc32c(0, b, len - 4));
}

/* Offset of the value of the first op whose key is kind k (and, for
 * KEY_TABLE, record rec), or 0. */
static size_t find_op_value(const uint8_t *b, size_t len, uint8_t kind, int rec, size_t *vlen)
{
	size_t p = 8;
	while (p + 7 <= len - 4) {
		size_t kl = st_get_le16(b + p + 1), vl = st_get_le32(b + p + 3);
		const uint8_t *k = b + p + 7;
		if (k[0] == kind && (rec < 0 || (kl > 9 && k[9] == rec)) && b[p] == 1) {
			*vlen = vl;
			return p + 7 + kl;
		}
		p += 7 + kl + vl;
	}
	return 0;
}

static void t_corrupt(void)
{
	static struct clu c;
	static struct ents log;
	static st_store *f;
	struct st_err err;
	char dir[160];
	leader_log(&c, 10, &log);
	f = fresh_follower(&c, 2, dir, sizeof dir);
	test_defer(close_store, &f);
	REQUIRE(persist_ents(f, 0, &log, 0, 2, &err) == ST_OK);
	REQUIRE(apply_each(f, 2, &err) == ST_OK);
	struct st_chain_head h0, h;
	REQUIRE(st_chain_head(f, &h0, &err) == ST_OK);
	CHECK_EQ(h0.lsn, 2);
	/* Entry 3 (a write) damaged in several places. */
	const struct ent *good = &log.v[2];
	size_t len = good->len;
	uint8_t *bad = malloc(len);
	REQUIRE(bad);
	size_t vlen = 0;
	size_t lsnv = find_op_value(good->body, len, KEY_LSN, -1, &vlen);
	CHECK(lsnv > 0 && vlen == LSN_REC_LEN);
	size_t cv = find_op_value(good->body, len, KEY_TABLE, REC_COMMIT, &vlen);
	CHECK(cv > 0 && vlen > 8);
	struct {
		size_t at;
		bool crc;
		const char *what;
	} cases[] = {
		{0, false, "format byte"},   {1, false, "kind byte"},
		{2, false, "flags byte"},    {4, false, "op count"},
		{8, false, "first op code"}, {9, false, "first key length"},
		{len / 2, false, "middle"},  {len - 5, false, "last op byte"},
		{len - 1, false, "CRC"},     {lsnv + 3, true, "LSN record hash, CRC fixed"},
		{lsnv + 40, true, "LSN record digest, CRC fixed"},
		{lsnv + 70, true, "LSN record version, CRC fixed"},
		{cv + vlen / 2, true, "commit record, CRC fixed"},
		{cv, true, "commit record start, CRC fixed"},
		{8, true, "first op code, CRC fixed"},
		{4, true, "op count, CRC fixed"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (cases[i].at == 0 && cases[i].crc)
			continue;
		memcpy(bad, good->body, len);
		bad[cases[i].at] ^= 0x10;
		if (cases[i].crc)
			fix_crc(bad, len);
		struct st_repl_entry e[1] = {as_entry(good)};
		e[0].body = bad;
		REQUIRE(st_repl_persist(f, NULL, 3, e, 1, &err) == ST_OK);
		int rc = st_repl_apply(f, 3, &err);
		if (rc != ST_ECORRUPT)
			fprintf(stderr, "  damage at %zu (%s): rc %d %s\n", cases[i].at,
				cases[i].what, rc, rc ? err.msg : "");
		CHECK_EQ(rc, ST_ECORRUPT);
		REQUIRE(st_chain_head(f, &h, &err) == ST_OK);
		CHECK_EQ(h.lsn, h0.lsn);
		CHECK(!memcmp(h.hash, h0.hash, ST_HASH_LEN));
		CHECK_EQ(st_repl_applied(f), 2);
		CHECK_EQ(count_rows(f, "t"), 0);
	}
	free(bad);
	/* A hash that does not chain (the body intact). */
	struct st_repl_entry e[2] = {as_entry(&log.v[2]), as_entry(&log.v[3])};
	e[0].hash[5] ^= 1;
	REQUIRE(st_repl_persist(f, NULL, 3, e, 1, &err) == ST_OK);
	CHECK_EQ(st_repl_apply(f, 3, &err), ST_ECORRUPT);
	CHECK_CONTAINS(err.msg, "does not chain");
	CHECK_EQ(st_repl_applied(f), 2);
	e[0].hash[5] ^= 1;
	/* A no-op whose hash does not chain. */
	uint8_t zero[ST_HASH_LEN] = {0};
	struct st_repl_entry nop;
	noop_entry(zero, 3, 1, &nop); /* chains after zeros, not after LSN 2 */
	REQUIRE(st_repl_persist(f, NULL, 3, &nop, 1, &err) == ST_OK);
	CHECK_EQ(st_repl_apply(f, 3, &err), ST_ECORRUPT);
	CHECK_EQ(st_repl_applied(f), 2);
	/* A body from LSN 4 at LSN 3 (with 4's hash, or with 3's). */
	struct st_repl_entry mis = e[1];
	mis.lsn = 3;
	REQUIRE(st_repl_persist(f, NULL, 3, &mis, 1, &err) == ST_OK);
	CHECK_EQ(st_repl_apply(f, 3, &err), ST_ECORRUPT);
	memcpy(mis.hash, e[0].hash, ST_HASH_LEN);
	REQUIRE(st_repl_persist(f, NULL, 3, &mis, 1, &err) == ST_OK);
	CHECK_EQ(st_repl_apply(f, 3, &err), ST_ECORRUPT);
	CHECK_EQ(st_repl_applied(f), 2);
	/* A body from LSN 3 at LSN 4 (after the right 3). */
	REQUIRE(st_repl_persist(f, NULL, 3, e, 1, &err) == ST_OK);
	REQUIRE(st_repl_apply(f, 3, &err) == ST_OK);
	struct st_chain_head h3;
	REQUIRE(st_chain_head(f, &h3, &err) == ST_OK);
	mis = e[0];
	mis.lsn = 4;
	REQUIRE(st_repl_persist(f, NULL, 4, &mis, 1, &err) == ST_OK);
	CHECK_EQ(st_repl_apply(f, 4, &err), ST_ECORRUPT);
	REQUIRE(st_chain_head(f, &h, &err) == ST_OK);
	CHECK_EQ(h.lsn, 3);
	CHECK(!memcmp(h.hash, h3.hash, ST_HASH_LEN));
	CHECK_EQ(count_rows(f, "t"), 10);
	/* The right entry then applies and the follower matches the leader. */
	REQUIRE(st_repl_persist(f, NULL, 4, &e[1], 1, &err) == ST_OK);
	int rc = st_repl_apply(f, 4, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  apply: %s\n", err.msg);
	REQUIRE(rc == ST_OK);
	check_same(c.ld, f);
	/* st_repl_body_files refuses a damaged body. */
	uint8_t *b2 = malloc(log.v[2].len);
	REQUIRE(b2);
	memcpy(b2, log.v[2].body, log.v[2].len);
	b2[len / 2] ^= 1;
	CHECK_EQ(st_repl_body_files(b2, log.v[2].len, NULL, NULL, &err), ST_ECORRUPT);
	free(b2);
}

/* ---- 8. restart with unapplied entries ---------------------------------- */

struct found {
	uint64_t tid, fid, size;
	int n;
};

static int found_one(void *arg, uint64_t tid, uint64_t fid, uint64_t size, uint32_t crc)
{
	struct found *f = arg;
	(void)crc;
	f->tid = tid;
	f->fid = fid;
	f->size = size;
	f->n++;
	return 0;
}

static void t_restart(void)
{
	static struct clu c;
	static struct ents log;
	static st_store *f1, *f2;
	struct st_err err;
	char d1[160], d2[160];
	leader_log(&c, 100000, &log);
	f1 = fresh_follower(&c, 2, d1, sizeof d1);
	test_defer(close_store, &f1);
	f2 = fresh_follower(&c, 3, d2, sizeof d2);
	test_defer(close_store, &f2);
	/* The big write's segment is a file: the followers fetch it first. */
	struct ents l3 = {.v = &log.v[2], .n = 1};
	REQUIRE(fetch_files(&c, f1, &l3, &err) == ST_OK);
	REQUIRE(fetch_files(&c, f2, &l3, &err) == ST_OK);
	char path[4096];
	struct stat st;
	uint64_t tid = 0, fid = 0;
	/* Find the file via body_files. */
	struct found found = {0};
	REQUIRE(log.v[2].len > 0);
	REQUIRE(st_repl_body_files(log.v[2].body, log.v[2].len, found_one, &found, &err) ==
		ST_OK);
	REQUIRE(found.n == 1);
	tid = found.tid;
	fid = found.fid;
	st_segment_path(f1, tid, fid, path, sizeof path);
	REQUIRE(stat(path, &st) == 0);
	CHECK_EQ((uint64_t)st.st_size, found.size);
	/* f1: create applied, the write not; f2: only the no-op applied. */
	REQUIRE(persist_ents(f1, 0, &log, 0, 4, &err) == ST_OK);
	REQUIRE(st_repl_apply(f1, 2, &err) == ST_OK);
	REQUIRE(persist_ents(f2, 0, &log, 0, 4, &err) == ST_OK);
	REQUIRE(st_repl_apply(f2, 1, &err) == ST_OK);
	st_store_close(f1);
	f1 = NULL;
	st_store_close(f2);
	f2 = NULL;
	REQUIRE(st_store_open(d1, NULL, &f1, &err) == ST_OK);
	REQUIRE(st_store_open(d2, NULL, &f2, &err) == ST_OK);
	st_segment_path(f1, tid, fid, path, sizeof path);
	CHECK(stat(path, &st) == 0 && (uint64_t)st.st_size == found.size);
	st_segment_path(f2, tid, fid, path, sizeof path);
	CHECK(stat(path, &st) == 0 && (uint64_t)st.st_size == found.size);
	struct lsns l;
	CHECK_EQ(log_lsns(f1, &l), 4);
	CHECK_EQ(log_lsns(f2, &l), 4);
	CHECK_EQ(st_repl_applied(f1), 2);
	CHECK_EQ(st_repl_applied(f2), 1);
	CHECK_EQ(count_rows(f1, "t"), 0);
	attach_follower(&c, f1, 2);
	attach_follower(&c, f2, 3);
	/* The unapplied write's file id is taken: f1 (had it led now) would
	 * not hand it out again (STORE.md §7.3). */
	CHECK(__atomic_load_n(&f1->next_fid, __ATOMIC_RELAXED) > fid);
	CHECK(__atomic_load_n(&f2->next_fid, __ATOMIC_RELAXED) > fid);
	int rc = apply_each(f1, 4, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  apply f1: %s\n", err.msg);
	CHECK_EQ(rc, ST_OK);
	rc = apply_each(f2, 4, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  apply f2: %s\n", err.msg);
	CHECK_EQ(rc, ST_OK);
	CHECK_EQ(count_rows(f1, "t"), 100003);
	check_same(c.ld, f1);
	check_same(c.ld, f2);
	/* And once more after a reopen, now applied. */
	st_store_close(f1);
	f1 = NULL;
	REQUIRE(st_store_open(d1, NULL, &f1, &err) == ST_OK);
	check_same(c.ld, f1);
}

/* Recovery drops a fetched file once the entry referencing it is
 * truncated (nothing references it). */
static void t_restart_truncated(void)
{
	static struct clu c;
	static struct ents log;
	static st_store *f;
	struct st_err err;
	char d[160];
	leader_log(&c, 100000, &log);
	f = fresh_follower(&c, 2, d, sizeof d);
	test_defer(close_store, &f);
	struct ents l3 = {.v = &log.v[2], .n = 1};
	REQUIRE(fetch_files(&c, f, &l3, &err) == ST_OK);
	struct found found = {0};
	REQUIRE(st_repl_body_files(log.v[2].body, log.v[2].len, found_one, &found, &err) ==
		ST_OK);
	REQUIRE(found.n == 1);
	REQUIRE(persist_ents(f, 0, &log, 0, 4, &err) == ST_OK);
	REQUIRE(st_repl_apply(f, 2, &err) == ST_OK);
	REQUIRE(st_repl_persist(f, NULL, 3, NULL, 0, &err) == ST_OK);
	st_store_close(f);
	f = NULL;
	REQUIRE(st_store_open(d, NULL, &f, &err) == ST_OK);
	char path[4096];
	struct stat st;
	st_segment_path(f, found.tid, found.fid, path, sizeof path);
	CHECK(stat(path, &st) != 0 && errno == ENOENT);
	CHECK_EQ(st_repl_applied(f), 2);
}

/* ---- applying several entries in one st_repl_apply ----------------------- */

/* A follower that catches up applies a batch of entries in one call (the
 * real driver applies up to the last committed LSN of each Ready), and a
 * multi-table transaction is always two entries applied together. */
static void t_apply_batch(void)
{
	static struct clu c, c2;
	static struct ents log;
	static st_store *f;
	struct st_err err;
	char dir[160];
	leader_log(&c, 10, &log);
	f = fresh_follower(&c, 2, dir, sizeof dir);
	test_defer(close_store, &f);
	REQUIRE(persist_ents(f, 0, &log, 0, 4, &err) == ST_OK);
	int rc = st_repl_apply(f, 4, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  one apply of LSNs 1-4 on a fresh follower: %s\n", err.msg);
	CHECK_EQ(rc, ST_OK);
	CHECK_EQ(st_repl_applied(f), 4);
	if (rc == ST_OK)
		check_same(c.ld, f);
	/* A fresh cluster's first multi-table transaction. */
	clu_start(&c2, 1, 2000000);
	REQUIRE(create(c2.ld, "a", N_COL, 1, &err) == ST_OK);
	REQUIRE(create(c2.ld, "b", N_COL, 1, &err) == ST_OK);
	st_txn *t;
	REQUIRE(st_txn_begin(c2.ld, &t, &err) == ST_OK);
	const char *names[1] = {"n"};
	int64_t v1 = 1, v2 = 2;
	struct st_vec va = {.type = ST_TYPE_INT64, .n = 1, .data = &v1};
	struct st_vec vb = {.type = ST_TYPE_INT64, .n = 1, .data = &v2};
	struct st_batch ba = {1, names, &va, 1}, bb = {1, names, &vb, 1};
	REQUIRE(st_txn_write(t, "a", &ba, 1, NULL, &err) == ST_OK);
	REQUIRE(st_txn_write(t, "b", &bb, 1, NULL, &err) == ST_OK);
	struct st_commit_result tr[2];
	rc = st_txn_commit(t, tr, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  txn on a fresh cluster: %s\n", err.msg);
	CHECK_EQ(rc, ST_OK);
	wait_applied(&c2, 5);
	check_driver_ok(&c2);
	CHECK_EQ(st_repl_applied(c2.fo[0]), 5);
	CHECK_EQ(count_rows(c2.ld, "a"), 1);
	CHECK_EQ(count_rows(c2.fo[0], "b"), 1);
}

/* ---- 9. identity ------------------------------------------------------------ */

static void t_identity(void)
{
	struct st_err err;
	st_store *s;
	char dir[160];
	snprintf(dir, sizeof dir, "%s", test_new_dir("repl"));
	REQUIRE(st_store_open(dir, NULL, &s, &err) == ST_OK);
	CHECK_EQ(st_repl_identity(s, 5, CLUSTER_ID, &err), ST_OK);
	CHECK_EQ(st_repl_identity(s, 5, CLUSTER_ID, &err), ST_OK); /* same again */
	CHECK_EQ(st_repl_identity(s, 6, CLUSTER_ID, &err), ST_EINVAL);
	CHECK_CONTAINS(err.msg, "node 5");
	CHECK_CONTAINS(err.msg, "node 6");
	CHECK_EQ(st_repl_identity(s, 5, OTHER_ID, &err), ST_EINVAL);
	CHECK_CONTAINS(err.msg, "c1057e12010203040506070809");
	CHECK_CONTAINS(err.msg, "eeee");
	CHECK_CONTAINS(err.msg, "00000000000042");
	st_store_close(s);
	/* Kept across a reopen. */
	REQUIRE(st_store_open(dir, NULL, &s, &err) == ST_OK);
	CHECK_EQ(st_repl_identity(s, 6, CLUSTER_ID, &err), ST_EINVAL);
	CHECK_EQ(st_repl_identity(s, 5, OTHER_ID, &err), ST_EINVAL);
	CHECK_EQ(st_repl_identity(s, 5, CLUSTER_ID, &err), ST_OK);
	st_store_close(s);
	/* A store with single-node commits and no log. */
	snprintf(dir, sizeof dir, "%s", test_new_dir("repl"));
	REQUIRE(st_store_open(dir, NULL, &s, &err) == ST_OK);
	REQUIRE(create(s, "t", N_COL, 1, &err) == ST_OK);
	struct st_commit_result r;
	REQUIRE(put1(s, "t", 1, &r, &err) == ST_OK);
	CHECK_EQ(st_repl_identity(s, 1, CLUSTER_ID, &err), ST_EINVAL);
	CHECK_CONTAINS(err.msg, "single node");
	struct clu dummy;
	memset(&dummy, 0, sizeof dummy);
	struct st_repl_hooks h = {.ctx = &dummy, .propose = fo_propose, .stable = fo_last,
				  .all_matched = fo_last, .log_last = fo_last,
				  .timeout_us = 300000, .durability = ST_DUR_QUORUM};
	err.msg[0] = 0;
	int rc = st_repl_attach(s, &h, &err);
	if (rc != ST_EINVAL)
		fprintf(stderr, "  st_repl_attach on a single-node store: rc %d\n", rc);
	CHECK_EQ(rc, ST_EINVAL);
	/* A hook missing. */
	struct st_repl_hooks h2 = h;
	h2.log_last = NULL;
	CHECK_EQ(st_repl_attach(s, &h2, &err), ST_EINVAL);
	st_store_close(s);
}

/* ---- 10. st_repl_body_files --------------------------------------------- */

struct flist {
	uint64_t tid[16], fid[16], size[16];
	uint32_t n;
};

static int flist_add(void *arg, uint64_t tid, uint64_t fid, uint64_t size, uint32_t crc)
{
	struct flist *l = arg;
	(void)crc;
	if (l->n < 16) {
		l->tid[l->n] = tid;
		l->fid[l->n] = fid;
		l->size[l->n] = size;
		l->n++;
	}
	return 0;
}

/* The .seg files of the leader's table directories, as "tid/fid" names. */
struct seglist {
	char name[64][40];
	uint32_t n;
};

static void segs_of(st_store *s, struct seglist *out)
{
	out->n = 0;
	char root[4096];
	snprintf(root, sizeof root, "%s/tables", s->dir);
	DIR *d = opendir(root);
	struct dirent *t;
	while (d && (t = readdir(d))) {
		if (t->d_name[0] == '.')
			continue;
		char sub[4200];
		snprintf(sub, sizeof sub, "%s/%s", root, t->d_name);
		DIR *sd = opendir(sub);
		struct dirent *f;
		while (sd && (f = readdir(sd))) {
			size_t n = strlen(f->d_name);
			if (n > 4 && !strcmp(f->d_name + n - 4, ".seg") && out->n < 64)
				snprintf(out->name[out->n++], 40, "%.16s/%.16s", t->d_name,
					 f->d_name);
		}
		if (sd)
			closedir(sd);
	}
	if (d)
		closedir(d);
}

static bool seg_in(const struct seglist *l, const char *name)
{
	for (uint32_t i = 0; i < l->n; i++)
		if (!strcmp(l->name[i], name))
			return true;
	return false;
}

/* The files body_files names for the leader's last entry are exactly the
 * .seg files that appeared in its directories with it. */
static void check_new_files(struct clu *c, const struct seglist *before, uint32_t want)
{
	struct st_err err;
	struct seglist after;
	segs_of(c->ld, &after);
	struct ents l;
	log_of(c->ld, &l);
	struct flist fl = {0};
	const struct ent *e = &l.v[l.n - 1];
	CHECK(e->len > 0);
	CHECK_EQ(st_repl_body_files(e->body, e->len, flist_add, &fl, &err), ST_OK);
	CHECK_EQ(fl.n, want);
	uint32_t added = 0;
	for (uint32_t i = 0; i < after.n; i++)
		added += !seg_in(before, after.name[i]);
	CHECK_EQ(added, want);
	for (uint32_t i = 0; i < fl.n; i++) {
		char name[40], path[4096];
		snprintf(name, sizeof name, "%016llx/%016llx", (unsigned long long)fl.tid[i],
			 (unsigned long long)fl.fid[i]);
		CHECK(seg_in(&after, name) && !seg_in(before, name));
		st_segment_path(c->ld, fl.tid[i], fl.fid[i], path, sizeof path);
		struct stat st;
		CHECK(stat(path, &st) == 0 && (uint64_t)st.st_size == fl.size[i]);
	}
	ents_free(&l);
}

static void t_body_files(void)
{
	static struct clu c;
	struct st_err err;
	struct st_commit_result r;
	struct seglist before;
	clu_start(&c, 0, 3000000);
	segs_of(c.ld, &before);
	REQUIRE(create(c.ld, "t", A_COLS, 2, &err) == ST_OK);
	check_new_files(&c, &before, 0);
	segs_of(c.ld, &before);
	REQUIRE(put_rows(c.ld, "t", 0, 5, true, &r, &err) == ST_OK); /* inline */
	check_new_files(&c, &before, 0);
	segs_of(c.ld, &before);
	REQUIRE(put_rows(c.ld, "t", 100, 60000, true, &r, &err) == ST_OK); /* a file */
	check_new_files(&c, &before, 1);
	segs_of(c.ld, &before);
	REQUIRE(put_rows(c.ld, "t", 900000, 60000, true, &r, &err) == ST_OK);
	check_new_files(&c, &before, 1);
	segs_of(c.ld, &before);
	REQUIRE(st_table_compact(c.ld, "t", &r, &err) == ST_OK); /* one new file */
	check_new_files(&c, &before, 1);
	segs_of(c.ld, &before);
	struct st_write_opts ow = {.mode = ST_WRITE_OVERWRITE};
	const char *names[1] = {"n"};
	int64_t v = 1;
	struct st_vec vec = {.type = ST_TYPE_INT64, .n = 1, .data = &v};
	struct st_batch b = {1, names, &vec, 1};
	REQUIRE(st_write(c.ld, "t", &b, 1, &ow, &r, &err) == ST_OK); /* removes files only */
	check_new_files(&c, &before, 0);
	REQUIRE(st_table_drop(c.ld, "t", NULL, &err) == ST_OK);
	segs_of(c.ld, &before);
	check_new_files(&c, &before, 0);
	REQUIRE(wait_applied(&c, st_repl_applied(c.ld)));
	check_driver_ok(&c);
}

/* Vacuum in cluster mode is a log entry (an upkeep entry: its LSN record
 * names table 0): every node applies it, removes the same file records and
 * segment files, and the chains stay equal. No hook min_match: nothing
 * lags. */
static void t_vacuum_replicated(void)
{
	static struct clu c;
	struct st_err err;
	struct st_commit_result r;
	struct st_column_def cols[2] = {{"n", ST_TYPE_INT64, false}, {"s", ST_TYPE_STRING, true}};
	clu_start(&c, 2, 5000000);
	REQUIRE(create(c.ld, "t", cols, 2, &err) == ST_OK);
	REQUIRE(put_rows(c.ld, "t", 0, 100000, true, &r, &err) == ST_OK); /* a segment file */
	uint64_t v1 = r.version;
	struct st_write_opts ow = {.mode = ST_WRITE_OVERWRITE};
	int64_t one = 7;
	const char *names[1] = {"n"};
	struct st_vec vec = {.type = ST_TYPE_INT64, .n = 1, .data = &one};
	struct st_batch b = {1, names, &vec, 1};
	REQUIRE(st_write(c.ld, "t", &b, 1, &ow, &r, &err) == ST_OK);
	REQUIRE(wait_applied(&c, r.lsn));
	/* The big file is removed in version v1 + 1; each node holds it. */
	struct st_vacuum_opts vo = {.retain_us = 1, .force = true};
	struct st_vacuum_result vr;
	REQUIRE(st_vacuum(c.ld, "t", &vo, &vr, &err) == ST_OK);
	CHECK_EQ(vr.files, 1);
	CHECK(vr.oldest_version > v1);
	st_vacuum_result_fini(&vr);
	uint64_t lsn = st_repl_applied(c.ld);
	CHECK_EQ(lsn, r.lsn + 1); /* vacuum took an LSN of its own */
	REQUIRE(wait_applied(&c, lsn));
	check_same(c.ld, c.fo[0]);
	check_same(c.ld, c.fo[1]);
	CHECK_EQ(count_rows(c.fo[0], "t"), 1);
	for (int f = 0; f < 2; f++) {
		struct st_verify_result res;
		REQUIRE(st_verify(c.fo[f], &res, &err) == ST_OK);
		CHECK_EQ(res.nproblems, 0);
		st_verify_result_fini(&res);
		/* Time travel below the new oldest version is refused alike. */
		st_scan *sc = NULL;
		CHECK_EQ(st_scan_open(c.fo[f], "t", (struct st_at){ST_AT_VERSION, (int64_t)v1}, NULL,
				      0, NULL, &sc, &err), ST_ERANGE);
		if (sc)
			st_scan_close(sc);
	}
	check_driver_ok(&c);
}

/* A follower whose store is full (its LMDB map: the store's disk-full) at
 * a persist: the append fails whole with ST_ETOOBIG, nothing of it is in
 * the log or applied, the entries before it stay, and once space is back
 * (reopened with a larger map) the same entries persist and apply, the
 * follower ending equal to the leader. */
static void t_follower_store_full(void)
{
	static struct clu c;
	static struct ents log;
	static st_store *f;
	struct st_err err;
	char dir[160];
	leader_log(&c, 1000, &log);
	/* A map barely above an empty store's: the entries do not all fit. */
	snprintf(dir, sizeof dir, "%s", test_new_dir("repl"));
	struct st_store_opts small = {.map_size = 96 << 10};
	REQUIRE(st_store_open(dir, &small, &f, &err) == ST_OK);
	test_defer(close_store, &f);
	attach_follower(&c, f, 2);
	REQUIRE(persist_ents(f, 0, &log, 0, 2, &err) == ST_OK); /* no-op, create */
	REQUIRE(st_repl_apply(f, 2, &err) == ST_OK);
	struct st_chain_head before;
	REQUIRE(st_chain_head(f, &before, &err) == ST_OK);
	/* Pad the log until the map is full: the failing append changes nothing. */
	int rc = ST_OK;
	uint32_t padded = 0;
	struct lsns l;
	for (; padded < 4096 && rc == ST_OK; padded++) {
		uint32_t have = log_lsns(f, &l);
		struct st_repl_entry big = as_entry(&log.v[2]); /* the 1000-row write */
		big.lsn = 3 + padded;
		rc = st_repl_persist(f, NULL, 0, &big, 1, &err);
		if (rc != ST_OK)
			CHECK_EQ(log_lsns(f, &l), have);
	}
	CHECK_EQ(rc, ST_ETOOBIG);
	CHECK_CONTAINS(err.msg, "map is full");
	struct st_chain_head after;
	REQUIRE(st_chain_head(f, &after, &err) == ST_OK);
	CHECK_EQ(after.lsn, before.lsn);
	CHECK(!memcmp(after.hash, before.hash, ST_HASH_LEN));
	CHECK_EQ(st_repl_applied(f), 2);
	/* Space back: drop the padding (never applied), persist and apply the
	 * real entries, equal to the leader. */
	st_store_close(f);
	f = NULL;
	struct st_store_opts big = {.map_size = 64 << 20};
	REQUIRE(st_store_open(dir, &big, &f, &err) == ST_OK);
	attach_follower(&c, f, 2);
	REQUIRE(persist_ents(f, 3, &log, 2, 4, &err) == ST_OK);
	REQUIRE(st_repl_apply(f, 4, &err) == ST_OK);
	check_same(c.ld, f);
}

/* st_repl_adopt: a new node takes no vote; a member keeping its id keeps
 * its epoch and vote, and refuses a snapshot that ends before its log. */
static void t_adopt(void)
{
	static struct clu c;
	struct st_err err;
	struct st_commit_result r;
	struct st_repl_hs hs;
	clu_start(&c, 0, 3000000);
	REQUIRE(create(c.ld, "t", N_COL, 1, &err) == ST_OK);
	REQUIRE(put1(c.ld, "t", 1, &r, &err) == ST_OK);
	REQUIRE(wait_applied(&c, r.lsn));
	uint64_t last = r.lsn;
	struct st_repl_hs peer = {5, 2, last}; /* the snapshot's peer voted for node 2 in epoch 5 */
	REQUIRE(st_repl_persist(c.ld, &peer, 0, NULL, 0, &err) == ST_OK);
	/* A member whose log reaches past the snapshot: refused, nothing changed. */
	struct st_repl_keep behind = {5, 3, last + 1};
	CHECK_EQ(st_repl_adopt(c.ld, 7, CLUSTER_ID, &behind, &err), ST_EUNAVAIL);
	CHECK_CONTAINS(err.msg, "may have acknowledged");
	REQUIRE(st_repl_hs_load(c.ld, &hs, &err) == ST_OK);
	CHECK(hs.epoch == 5 && hs.vote == 2);
	/* A member of the same epoch keeps its own vote; of a later one, its epoch too. */
	struct st_repl_keep same = {5, 3, last};
	CHECK_EQ(st_repl_adopt(c.ld, 7, CLUSTER_ID, &same, &err), ST_OK);
	REQUIRE(st_repl_hs_load(c.ld, &hs, &err) == ST_OK);
	CHECK(hs.epoch == 5 && hs.vote == 3 && hs.commit == last);
	struct st_repl_keep later = {9, 1, 0};
	CHECK_EQ(st_repl_adopt(c.ld, 7, CLUSTER_ID, &later, &err), ST_OK);
	REQUIRE(st_repl_hs_load(c.ld, &hs, &err) == ST_OK);
	CHECK(hs.epoch == 9 && hs.vote == 1);
	/* An older member epoch, or a new node: no vote, the snapshot's epoch. */
	struct st_repl_keep older = {4, 3, 0};
	REQUIRE(st_repl_persist(c.ld, &peer, 0, NULL, 0, &err) == ST_OK);
	CHECK_EQ(st_repl_adopt(c.ld, 7, CLUSTER_ID, &older, &err), ST_OK);
	REQUIRE(st_repl_hs_load(c.ld, &hs, &err) == ST_OK);
	CHECK(hs.epoch == 5 && hs.vote == 0);
	REQUIRE(st_repl_persist(c.ld, &peer, 0, NULL, 0, &err) == ST_OK);
	CHECK_EQ(st_repl_adopt(c.ld, 7, CLUSTER_ID, NULL, &err), ST_OK);
	REQUIRE(st_repl_hs_load(c.ld, &hs, &err) == ST_OK);
	CHECK(hs.epoch == 5 && hs.vote == 0);
	CHECK_EQ(st_repl_adopt(c.ld, 7, OTHER_ID, NULL, &err), ST_EINVAL);
}

/* DML on a table with a declared key replicates with its key index: the
 * followers' verify checks their index records, every version reads the
 * same on every node, and a key the leader deleted may be written again. */
static void t_dml_keyed(void)
{
	static struct clu c;
	struct st_err err;
	struct st_commit_result r;
	struct st_dml_result dr;
	clu_start(&c, 2, 3000000);
	const char *key[1] = {"n"};
	struct st_table_spec spec = {.name = "k", .cols = A_COLS, .ncols = 2, .key = key, .nkey = 1};
	REQUIRE(st_table_create(c.ld, &spec, ST_CREATE_ERROR, NULL, &err) == ST_OK);
	REQUIRE(create(c.ld, "src", A_COLS, 2, &err) == ST_OK);
	REQUIRE(put_rows(c.ld, "k", 0, 30000, true, &r, &err) == ST_OK);  /* a file */
	REQUIRE(put_rows(c.ld, "k", 30000, 100, true, &r, &err) == ST_OK); /* inline */
	REQUIRE(st_delete(c.ld, "k", "n % 10 = 1", NULL, &dr, &err) == ST_OK);
	REQUIRE(st_update(c.ld, "k", "s = 'u'", "n < 50", NULL, &dr, &err) == ST_OK);
	REQUIRE(put_rows(c.ld, "src", 29990, 200, true, &r, &err) == ST_OK);
	struct st_merge_opts mo = {.on = "t.n = s.n", .matched = ST_MERGE_MATCHED_UPDATE_ALL,
				   .not_matched = ST_MERGE_NOT_MATCHED_INSERT_ALL};
	REQUIRE(st_merge(c.ld, "k", "src", &mo, &dr, &err) == ST_OK);
	CHECK_EQ(dr.files_read, 0);
	REQUIRE(put1(c.ld, "k", 1, &r, &err) == ST_OK); /* deleted above: a new row */
	CHECK_EQ(put1(c.ld, "k", 2, &r, &err), ST_ESCHEMA);
	struct st_optimize_opts oo = {0};
	struct st_optimize_result or;
	REQUIRE(st_optimize(c.ld, "k", &oo, &or, &err) == ST_OK);
	uint64_t last = st_repl_applied(c.ld), head = 0;
	REQUIRE(wait_applied(&c, last));
	check_driver_ok(&c);
	REQUIRE(st_table_version(c.ld, "k", &head, &err) == ST_OK);
	for (int f = 0; f < c.nfo; f++) {
		check_same(c.ld, c.fo[f]);
		for (uint64_t v = 0; v <= head; v++) {
			long n1, n2;
			char *d1 = dump_at(c.ld, "k", (struct st_at){ST_AT_VERSION, v}, &n1);
			char *d2 = dump_at(c.fo[f], "k", (struct st_at){ST_AT_VERSION, v}, &n2);
			CHECK(n1 == n2 && !strcmp(d1, d2));
			free(d1);
			free(d2);
		}
	}
}

static const struct test_case tests[] = {
    {"dml_keyed", t_dml_keyed},
    {"follower_store_full", t_follower_store_full},
    {"vacuum_replicated", t_vacuum_replicated},
	{"mixed_history", t_mixed_history},
	{"durability", t_durability},
	{"refused", t_refused},
	{"timeout", t_timeout},
	{"fail", t_fail},
	{"truncate", t_truncate},
	{"corrupt", t_corrupt},
	{"restart", t_restart},
	{"restart_truncated", t_restart_truncated},
	{"apply_batch", t_apply_batch},
	{"identity", t_identity},
	{"adopt", t_adopt},
	{"body_files", t_body_files},
};
TEST_MAIN(tests)
