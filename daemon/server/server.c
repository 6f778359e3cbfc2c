/*
 * daemon/server.c — the request server (server.h, format/PROTOCOL.md).
 */
#include "daemon/server/server.h"

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/server/log.h"
#include "daemon/store/query.h"
#include "format/transport.h"
#include "format/wire.h"

#define POLL_MS 200           /* workers check for shutdown and expiry this often */
#define DEDUPE_PER_CLIENT 64  /* replies remembered per client */
#define DEDUPE_CLIENTS 1024   /* clients remembered */
#define REPLY_MARGIN 4096     /* envelope and body keys around a page's batch */
#define MAX_GROUPS 1000000    /* QUERY result rows */

enum { SESS_LOAD = 1, SESS_CURSOR = 2 };

/* A load or a scan cursor, alive between requests. */
struct session {
	uint64_t id;                /* its id on the wire */
	int kind;                   /* SESS_* */
	bool busy;                  /* a worker is using it */
	int64_t last_us;            /* last use */
	char table[ST_NAME_MAX + 1];
	st_load *load;              /* SESS_LOAD */
	uint64_t next_batch;        /* next LOAD_DATA batch number */
	st_scan *scan;              /* SESS_CURSOR */
	const struct st_scan_batch *b; /* batch being paged out, or NULL */
	uint32_t off;               /* selected rows of b already sent */
	bool limited;               /* a row limit applies */
	uint64_t left;              /* rows still allowed */
	struct session *next;
};

struct dedupe_entry {
	uint64_t seq;               /* 0 = unused */
	bool done;                  /* reply is there */
	void *reply;                /* its bytes */
	size_t len;
};

struct dedupe_client {
	uint8_t id[WIRE_CLIENT_ID_LEN];
	int64_t last_us;
	uint32_t next;              /* ring position */
	struct dedupe_entry e[DEDUPE_PER_CLIENT];
};

struct sd_server {
	st_store *s;
	struct sd_server_opts o;
	int sock;
	pthread_t *th;
	uint32_t nth;
	int stop;                   /* atomic */
	int64_t started_us;
	pthread_mutex_t lock;       /* sessions, dedupe */
	pthread_cond_t cond;        /* a deduplicated request finished */
	struct session *sessions;
	uint64_t next_sid;
	uint32_t nloads, ncursors;
	int64_t last_expire_us;
	struct dedupe_client **clients; /* each allocated alone: workers hold entry
					  * pointers across unlocks, so they never move */
	uint32_t nclients;
};

/* One worker's request context. */
struct ctx {
	sd_server *srv;
	struct wire_msg m;          /* the request */
	struct wire_out out;        /* the reply */
	struct wire_error e;        /* the error, when rc != 0 */
	char table[ST_NAME_MAX + 1]; /* the request's table, for errors */
	uint32_t *idx;              /* scan paging: row indices of a batch */
	uint32_t idx_cap;           /* their room */
};

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- errors --------------------------------------------------------- */

static int fail(struct ctx *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct ctx *c, int code, const char *fmt, ...)
{
	char msg[ST_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	wire_error_set(&c->e, code, msg);
	return code;
}

static int fail_err(struct ctx *c, int code, const struct st_err *err)
{
	wire_error_set(&c->e, code, err->msg);
	snprintf(c->e.table, sizeof c->e.table, "%s", c->table);
	return code;
}

/* ---- request fields ------------------------------------------------------ */

static int need_table(struct ctx *c)
{
	if (!wire_get_strbuf(c->m.body, 0, c->table, sizeof c->table) || !c->table[0])
		return fail(c, ST_EINVAL, "%s needs a table name (body key 0)",
			    wire_type_name(c->m.type));
	return 0;
}

static int get_at(struct ctx *c, uint32_t key, struct st_at *at)
{
	const msgpack_object *o = wire_get(c->m.body, key);
	uint64_t kind = 0;
	int64_t v = 0;
	*at = (struct st_at){ST_AT_LATEST, 0};
	if (!o)
		return 0;
	if (!wire_get_u64(o, 0, &kind) || kind > ST_AT_LSN || (kind && !wire_get_i64(o, 1, &v)))
		return fail(c, ST_EPROTO, "a version selector needs a kind 0-3 and a value");
	at->kind = (int)kind;
	at->value = v;
	return 0;
}

/* An array of strings of the body as a malloc'ed block of pointers into a
 * single allocation; *n its count. Absent = NULL, 0. */
static int get_strs(struct ctx *c, uint32_t key, char ***out, uint32_t *n)
{
	const msgpack_object *o = wire_get(c->m.body, key);
	*out = NULL;
	*n = 0;
	if (!o)
		return 0;
	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > ST_MAX_COLUMNS)
		return fail(c, ST_EPROTO, "body key %u must be an array of strings", key);
	uint32_t cnt = o->via.array.size;
	size_t bytes = 0;
	for (uint32_t i = 0; i < cnt; i++) {
		if (o->via.array.ptr[i].type != MSGPACK_OBJECT_STR)
			return fail(c, ST_EPROTO, "body key %u must be an array of strings", key);
		bytes += o->via.array.ptr[i].via.str.size + 1;
	}
	char **v = malloc((cnt + 1) * sizeof *v + bytes + 1);
	if (!v)
		return fail(c, ST_ENOMEM, "out of memory");
	char *p = (char *)(v + cnt + 1);
	for (uint32_t i = 0; i < cnt; i++) {
		const msgpack_object *s = &o->via.array.ptr[i];
		v[i] = p;
		memcpy(p, s->via.str.ptr, s->via.str.size);
		p[s->via.str.size] = '\0';
		p += s->via.str.size + 1;
	}
	*out = v;
	*n = cnt;
	return 0;
}

static int get_write_opts(struct ctx *c, uint32_t key, struct st_write_opts *w, char *pred,
			  size_t plen, char *app, size_t alen)
{
	const msgpack_object *o = wire_get(c->m.body, key);
	uint64_t mode = 0;
	memset(w, 0, sizeof *w);
	pred[0] = app[0] = '\0';
	if (!o)
		return 0;
	wire_get_u64(o, 0, &mode);
	if (mode > 1)
		return fail(c, ST_EINVAL, "write mode must be 0 (append) or 1 (overwrite)");
	w->mode = (enum st_write_mode)mode;
	wire_get_bool(o, 1, &w->merge_schema);
	wire_get_bool(o, 2, &w->overwrite_schema);
	if (wire_get(o, 3) && !wire_get_strbuf(o, 3, pred, plen))
		return fail(c, ST_ETOOBIG, "the replace-where predicate is too long");
	if (wire_get(o, 4) && !wire_get_strbuf(o, 4, app, alen))
		return fail(c, ST_EINVAL, "app id must be 1 to 255 bytes of text");
	w->replace_where = pred[0] ? pred : NULL;
	w->app_id = app[0] ? app : NULL;
	wire_get_u64(o, 5, &w->app_version);
	return 0;
}

static int get_batch(struct ctx *c, uint32_t key, struct wire_batch *b, struct st_batch *sb)
{
	struct st_err err;
	const msgpack_object *o = wire_get(c->m.body, key);
	if (!o)
		return fail(c, ST_EPROTO, "%s needs a batch (body key %u)", wire_type_name(c->m.type),
			    key);
	int rc = wire_batch_decode(o, c->srv->o.max_batch_rows, b, &err);
	if (rc != ST_OK)
		return fail_err(c, rc, &err);
	*sb = (struct st_batch){b->ncols, (const char *const *)b->names, b->cols, b->nrows};
	return 0;
}

static void pack_result(struct ctx *c, const struct st_commit_result *r)
{
	msgpack_packer *pk = &c->out.pk;
	wire_key_u64(pk, 0, r->version);
	wire_key_u64(pk, 1, r->lsn);
	wire_key_i64(pk, 2, r->time_us);
	wire_key_u64(pk, 3, r->rows);
	wire_key_bool(pk, 4, r->noop);
}

static void begin(struct ctx *c, uint32_t nbody)
{
	wire_begin(&c->out, c->m.id, c->m.type, NULL, 0, nbody);
}

/* ---- sessions ------------------------------------------------------------ */

static struct session *sess_new(sd_server *srv, int kind)
{
	struct session *x = calloc(1, sizeof *x);
	if (!x)
		return NULL;
	x->kind = kind;
	x->busy = true;
	x->last_us = now_us();
	pthread_mutex_lock(&srv->lock);
	/* Ids are not guessable from each other: a counter mixed with time. */
	x->id = (++srv->next_sid << 20) ^ ((uint64_t)x->last_us & 0xfffff);
	if (!x->id)
		x->id = 1;
	x->next = srv->sessions;
	srv->sessions = x;
	kind == SESS_LOAD ? srv->nloads++ : srv->ncursors++;
	pthread_mutex_unlock(&srv->lock);
	return x;
}

/* Take session id of kind for this request; NULL with the error set. */
static struct session *sess_get(struct ctx *c, uint64_t id, int kind)
{
	sd_server *srv = c->srv;
	struct session *x;
	pthread_mutex_lock(&srv->lock);
	for (x = srv->sessions; x && x->id != id; x = x->next)
		;
	/* Decide under the lock: once it is released, a session held by
	 * another worker may be ended and freed at any moment. */
	bool busy = x && x->busy, match = x && x->kind == kind;
	if (match && !busy)
		x->busy = true;
	pthread_mutex_unlock(&srv->lock);
	if (!match)
		fail(c, ST_ENOTFOUND, "no open %s %" PRIu64 " (it finished, failed or expired after "
		     "%" PRId64 " s idle)", kind == SESS_LOAD ? "load" : "cursor", id,
		     srv->o.cursor_timeout_us / 1000000);
	else if (busy)
		fail(c, ST_EINVAL, "%s %" PRIu64 " is in use by another request",
		     kind == SESS_LOAD ? "load" : "cursor", id);
	return match && !busy ? x : NULL;
}

static void sess_release(sd_server *srv, struct session *x)
{
	pthread_mutex_lock(&srv->lock);
	x->busy = false;
	x->last_us = now_us();
	pthread_mutex_unlock(&srv->lock);
}

/* Unlink x (busy, held by the caller) and free it with what it holds. */
static void sess_end(sd_server *srv, struct session *x)
{
	pthread_mutex_lock(&srv->lock);
	for (struct session **p = &srv->sessions; *p; p = &(*p)->next)
		if (*p == x) {
			*p = x->next;
			break;
		}
	x->kind == SESS_LOAD ? srv->nloads-- : srv->ncursors--;
	pthread_mutex_unlock(&srv->lock);
	st_load_abort(x->load);
	st_scan_close(x->scan);
	free(x);
}

/* End every idle session older than the timeout (all of them with force). */
static void sess_expire(sd_server *srv, bool force)
{
	int64_t now = now_us();
	struct session *gone = NULL;
	pthread_mutex_lock(&srv->lock);
	if (!force && now - srv->last_expire_us < 1000000) {
		pthread_mutex_unlock(&srv->lock);
		return;
	}
	srv->last_expire_us = now;
	for (struct session **p = &srv->sessions; *p;) {
		struct session *x = *p;
		if (!x->busy && (force || now - x->last_us > srv->o.cursor_timeout_us)) {
			*p = x->next;
			x->kind == SESS_LOAD ? srv->nloads-- : srv->ncursors--;
			x->next = gone;
			gone = x;
		} else {
			p = &x->next;
		}
	}
	pthread_mutex_unlock(&srv->lock);
	while (gone) {
		struct session *x = gone;
		gone = x->next;
		if (x->kind == SESS_LOAD)
			sd_log(SD_LOG_WARN, "load %" PRIu64 " on table '%s' expired: aborted, nothing "
			       "committed", x->id, x->table);
		st_load_abort(x->load);
		st_scan_close(x->scan);
		free(x);
	}
}

/* ---- handlers ---------------------------------------------------------- */

static int h_hello(struct ctx *c)
{
	begin(c, 4);
	msgpack_packer *pk = &c->out.pk;
	wire_key_str(pk, 0, c->srv->o.version);
	wire_key_u64(pk, 1, WIRE_VERSION);
	wire_key_u64(pk, 2, c->srv->o.max_message_size);
	wire_key_u64(pk, 3, c->srv->o.max_batch_rows);
	return 0;
}

static int h_ping(struct ctx *c)
{
	begin(c, 0);
	return 0;
}

static uint64_t du_total;
static int du_add(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)path;
	(void)f;
	if (flag == FTW_F)
		__atomic_add_fetch(&du_total, (uint64_t)st->st_blocks * 512, __ATOMIC_RELAXED);
	return 0;
}

static int h_status(struct ctx *c)
{
	struct st_err err;
	char **names;
	uint32_t n;
	int rc = st_table_list(c->srv->s, &names, &n, &err);
	if (rc != ST_OK)
		return fail_err(c, rc, &err);
	free(names);
	static pthread_mutex_t du_lock = PTHREAD_MUTEX_INITIALIZER;
	pthread_mutex_lock(&du_lock);
	du_total = 0;
	nftw(c->srv->o.data_dir, du_add, 16, FTW_PHYS);
	uint64_t disk = du_total;
	pthread_mutex_unlock(&du_lock);
	pthread_mutex_lock(&c->srv->lock);
	uint32_t loads = c->srv->nloads, cursors = c->srv->ncursors;
	pthread_mutex_unlock(&c->srv->lock);
	begin(c, 9);
	msgpack_packer *pk = &c->out.pk;
	wire_key_str(pk, 0, c->srv->o.version);
	wire_key_u64(pk, 1, (uint64_t)(now_us() - c->srv->started_us));
	wire_key_str(pk, 2, c->srv->o.data_dir);
	wire_key_u64(pk, 3, n);
	wire_key_u64(pk, 4, st_store_lsn(c->srv->s));
	wire_key_u64(pk, 5, disk);
	wire_key_u64(pk, 6, (uint64_t)getpid());
	wire_key_u64(pk, 7, loads);
	wire_key_u64(pk, 8, cursors);
	return 0;
}

static int h_create(struct ctx *c)
{
	struct st_err err;
	int rc;
	if ((rc = need_table(c)))
		return rc;
	const msgpack_object *cols = wire_get(c->m.body, 1), *props = wire_get(c->m.body, 3);
	if (!cols || cols->type != MSGPACK_OBJECT_ARRAY || !cols->via.array.size ||
	    cols->via.array.size > ST_MAX_COLUMNS)
		return fail(c, ST_EINVAL, "CREATE needs 1 to %d columns", ST_MAX_COLUMNS);
	if (props && (props->type != MSGPACK_OBJECT_MAP || props->via.map.size > 1024))
		return fail(c, ST_EPROTO, "CREATE properties (key 3) must be a map of strings");
	uint32_t nc = cols->via.array.size, np = props ? props->via.map.size : 0, npart = 0;
	uint64_t mode = 0;
	wire_get_u64(c->m.body, 4, &mode);
	struct st_column_def *defs = calloc(nc, sizeof *defs);
	char (*names)[ST_NAME_MAX + 1] = calloc(nc, sizeof *names);
	struct act_kv *kv = calloc(np + 1, sizeof *kv);
	char **part = NULL;
	if (!defs || !names || !kv) {
		rc = fail(c, ST_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < nc; i++) {
		const msgpack_object *d = &cols->via.array.ptr[i];
		if (d->type != MSGPACK_OBJECT_ARRAY || d->via.array.size < 3 ||
		    !wire_obj_strbuf(&d->via.array.ptr[0], names[i], sizeof names[i]) ||
		    d->via.array.ptr[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
		    d->via.array.ptr[2].type != MSGPACK_OBJECT_BOOLEAN) {
			rc = fail(c, ST_EPROTO, "CREATE column %u must be [name, type id, nullable]", i);
			goto out;
		}
		defs[i] = (struct st_column_def){names[i], (int)d->via.array.ptr[1].via.u64,
						 d->via.array.ptr[2].via.boolean};
	}
	for (uint32_t i = 0; i < np; i++) {
		const msgpack_object_kv *p = &props->via.map.ptr[i];
		char *k = NULL, *v = NULL;
		if (p->key.type == MSGPACK_OBJECT_STR && p->val.type == MSGPACK_OBJECT_STR) {
			k = strndup(p->key.via.str.ptr, p->key.via.str.size);
			v = strndup(p->val.via.str.ptr, p->val.via.str.size);
		}
		kv[i] = (struct act_kv){k, v};
		if (!k || !v) {
			rc = fail(c, ST_EPROTO, "CREATE properties must be strings");
			np = i + 1;
			goto out;
		}
	}
	if ((rc = get_strs(c, 2, &part, &npart)))
		goto out;
	struct st_table_spec spec = {c->table, defs, nc, (const char *const *)part, npart, kv, np};
	uint64_t version = 0;
	if ((rc = st_table_create(c->srv->s, &spec, mode > 2 ? ST_CREATE_ERROR : (enum st_create_mode)mode,
				  &version, &err)) != ST_OK) {
		rc = fail_err(c, rc, &err);
		goto out;
	}
	begin(c, 1);
	wire_key_u64(&c->out.pk, 0, version);
out:
	for (uint32_t i = 0; kv && i < np; i++) {
		free(kv[i].key);
		free(kv[i].val);
	}
	free(kv);
	free(defs);
	free(names);
	free(part);
	return rc;
}

static int h_tables(struct ctx *c)
{
	struct st_err err;
	char **names;
	uint32_t n;
	int rc = st_table_list(c->srv->s, &names, &n, &err);
	if (rc != ST_OK)
		return fail_err(c, rc, &err);
	begin(c, 1);
	msgpack_pack_uint32(&c->out.pk, 0);
	msgpack_pack_array(&c->out.pk, n);
	for (uint32_t i = 0; i < n; i++)
		wire_pack_str(&c->out.pk, names[i]);
	free(names);
	return 0;
}

static int h_describe(struct ctx *c)
{
	struct st_err err;
	int rc;
	uint64_t v;
	st_scan *sc;
	if ((rc = need_table(c)))
		return rc;
	struct st_at at = {ST_AT_LATEST, 0};
	if (wire_get_u64(c->m.body, 1, &v))
		at = (struct st_at){ST_AT_VERSION, (int64_t)v};
	if ((rc = st_scan_open(c->srv->s, c->table, at, NULL, 0, NULL, &sc, &err)) != ST_OK)
		return fail_err(c, rc, &err);
	const struct act_metadata *m = st_scan_metadata(sc);
	struct st_scan_info info;
	st_scan_info(sc, &info);
	msgpack_packer *pk = &c->out.pk;
	begin(c, 9);
	wire_key_str(pk, 0, m->name);
	wire_key_u64(pk, 1, info.version);
	msgpack_pack_uint32(pk, 2);
	msgpack_pack_array(pk, m->schema.nfields);
	for (uint32_t i = 0; i < m->schema.nfields; i++) {
		const struct st_field *f = &m->schema.fields[i];
		msgpack_pack_array(pk, 4);
		wire_pack_str(pk, f->name);
		msgpack_pack_uint32(pk, f->type);
		f->nullable ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
		msgpack_pack_uint32(pk, f->id);
	}
	msgpack_pack_uint32(pk, 3);
	msgpack_pack_array(pk, m->npartition);
	for (uint32_t i = 0; i < m->npartition; i++) {
		const char *name = "?";
		for (uint32_t j = 0; j < m->schema.nfields; j++)
			if (m->schema.fields[j].id == m->partition[i])
				name = m->schema.fields[j].name;
		wire_pack_str(pk, name);
	}
	msgpack_pack_uint32(pk, 4);
	msgpack_pack_map(pk, m->nprops);
	for (uint32_t i = 0; i < m->nprops; i++) {
		wire_pack_str(pk, m->props[i].key);
		wire_pack_str(pk, m->props[i].val);
	}
	msgpack_pack_uint32(pk, 5);
	msgpack_pack_array(pk, m->nconstraints);
	for (uint32_t i = 0; i < m->nconstraints; i++) {
		msgpack_pack_array(pk, 2);
		wire_pack_str(pk, m->constraints[i].name);
		wire_pack_str(pk, m->constraints[i].expr);
	}
	wire_key_u64(pk, 6, info.files);
	wire_key_u64(pk, 7, info.rows);
	wire_key_u64(pk, 8, info.bytes);
	st_scan_close(sc);
	return 0;
}

static int h_drop(struct ctx *c)
{
	struct st_err err;
	int rc;
	if ((rc = need_table(c)))
		return rc;
	if ((rc = st_table_drop(c->srv->s, c->table, NULL, &err)) != ST_OK)
		return fail_err(c, rc, &err);
	begin(c, 0);
	return 0;
}

static int h_alter(struct ctx *c)
{
	struct st_err err;
	struct st_commit_result r;
	char col[1024] = "", arg[4096] = "";
	uint64_t op, type = 0;
	int rc;
	if ((rc = need_table(c)))
		return rc;
	if (!wire_get_u64(c->m.body, 1, &op) || op > ST_ALTER_DROP_CONSTRAINT)
		return fail(c, ST_EINVAL, "ALTER needs an operation (body key 1)");
	if ((wire_get(c->m.body, 2) && !wire_get_strbuf(c->m.body, 2, col, sizeof col)) ||
	    (wire_get(c->m.body, 3) && !wire_get_strbuf(c->m.body, 3, arg, sizeof arg)))
		return fail(c, ST_EINVAL, "ALTER arguments must be text of at most %zu bytes",
			    sizeof arg - 1);
	wire_get_u64(c->m.body, 4, &type);
	struct st_alter a = {(enum st_alter_op)op, col, arg, (int)type};
	if ((rc = st_table_alter(c->srv->s, c->table, &a, &r, &err)) != ST_OK)
		return fail_err(c, rc, &err);
	begin(c, 1);
	wire_key_u64(&c->out.pk, 0, r.version);
	return 0;
}

static int h_write(struct ctx *c)
{
	struct st_err err;
	struct st_write_opts w;
	struct st_commit_result r;
	struct wire_batch wb;
	struct st_batch b;
	char pred[8192], app[256];
	int rc;
	if ((rc = need_table(c)) || (rc = get_write_opts(c, 1, &w, pred, sizeof pred, app, sizeof app)))
		return rc;
	if ((rc = get_batch(c, 2, &wb, &b)) == 0) {
		if ((rc = st_write(c->srv->s, c->table, &b, 1, &w, &r, &err)) != ST_OK)
			rc = fail_err(c, rc, &err);
	}
	wire_batch_fini(&wb);
	if (rc)
		return rc;
	begin(c, 5);
	pack_result(c, &r);
	return 0;
}

static int h_load_begin(struct ctx *c)
{
	struct st_err err;
	struct st_write_opts w;
	struct wire_batch wb;
	struct st_batch b;
	char pred[8192], app[256];
	int rc;
	if ((rc = need_table(c)) || (rc = get_write_opts(c, 1, &w, pred, sizeof pred, app, sizeof app)))
		return rc;
	struct session *x = sess_new(c->srv, SESS_LOAD);
	if (!x)
		return fail(c, ST_ENOMEM, "out of memory");
	snprintf(x->table, sizeof x->table, "%s", c->table);
	if ((rc = get_batch(c, 2, &wb, &b)) == 0 &&
	    (rc = st_load_begin(c->srv->s, c->table, &b, &w, &x->load, &err)) != ST_OK)
		rc = fail_err(c, rc, &err);
	wire_batch_fini(&wb);
	if (rc) {
		sess_end(c->srv, x);
		return rc;
	}
	sd_log(SD_LOG_DEBUG, "load %" PRIu64 " on table '%s' begins", x->id, c->table);
	begin(c, 1);
	wire_key_u64(&c->out.pk, 0, x->id);
	sess_release(c->srv, x);
	return 0;
}

static int h_load_data(struct ctx *c)
{
	struct st_err err;
	struct wire_batch wb;
	struct st_batch b;
	uint64_t id, num;
	int rc;
	if (!wire_get_u64(c->m.body, 0, &id) || !wire_get_u64(c->m.body, 2, &num))
		return fail(c, ST_EPROTO, "LOAD_DATA needs a load id (key 0) and a batch number (key 2)");
	struct session *x = sess_get(c, id, SESS_LOAD);
	if (!x)
		return c->e.code;
	snprintf(c->table, sizeof c->table, "%s", x->table);
	if (num != x->next_batch) {
		rc = fail(c, ST_EINVAL, "load %" PRIu64 ": batch %" PRIu64 " arrived, batch %" PRIu64
			  " was expected", id, num, x->next_batch);
		sess_release(c->srv, x);
		return rc;
	}
	if ((rc = get_batch(c, 1, &wb, &b)) == 0 &&
	    (rc = st_load_write(x->load, &b, 1, &err)) != ST_OK)
		rc = fail_err(c, rc, &err);
	wire_batch_fini(&wb);
	if (rc) { /* nothing of a failed load is committed */
		sd_log(SD_LOG_INFO, "load %" PRIu64 " on table '%s' failed: %s", id, x->table, c->e.msg);
		sess_end(c->srv, x);
		return rc;
	}
	x->next_batch++;
	begin(c, 1);
	wire_key_u64(&c->out.pk, 0, st_load_rows(x->load));
	sess_release(c->srv, x);
	return 0;
}

static int h_load_end(struct ctx *c)
{
	struct st_err err;
	struct st_commit_result r;
	uint64_t id;
	int rc = 0;
	if (!wire_get_u64(c->m.body, 0, &id))
		return fail(c, ST_EPROTO, "%s needs a load id (key 0)", wire_type_name(c->m.type));
	struct session *x = sess_get(c, id, SESS_LOAD);
	if (!x)
		return c->e.code;
	snprintf(c->table, sizeof c->table, "%s", x->table);
	if (c->m.type == WIRE_LOAD_COMMIT) {
		st_load *l = x->load;
		x->load = NULL; /* st_load_commit frees it either way */
		if ((rc = st_load_commit(l, &r, &err)) != ST_OK)
			rc = fail_err(c, rc, &err);
	}
	sess_end(c->srv, x);
	if (rc)
		return rc;
	if (c->m.type == WIRE_LOAD_ABORT) {
		begin(c, 0);
		return 0;
	}
	sd_log(SD_LOG_INFO, "table '%s' version %" PRIu64 ": %" PRIu64 " rows loaded", c->table,
	       r.version, r.rows);
	begin(c, 5);
	pack_result(c, &r);
	return 0;
}

/* Pack the next page of cursor x as a batch; *more = rows remain. */
static int scan_page(struct ctx *c, struct session *x, bool *more)
{
	struct st_err err;
	st_scan *sc = x->scan;
	uint32_t nc = st_scan_ncolumns(sc);
	const char *names[ST_MAX_COLUMNS];
	size_t budget = c->srv->o.max_message_size - REPLY_MARGIN;
	for (uint32_t i = 0; i < nc; i++)
		names[i] = st_scan_column_name(sc, i);
	for (;;) {
		if (x->limited && x->left == 0) {
			x->b = NULL;
			break;
		}
		if (!x->b || x->off >= x->b->nsel) {
			int rc = st_scan_next(sc, &x->b, &err);
			if (rc != ST_OK)
				return fail_err(c, rc, &err);
			x->off = 0;
			if (!x->b)
				break;
			continue;
		}
		const struct st_scan_batch *b = x->b;
		uint32_t n = b->nsel - x->off;
		if (x->limited && n > x->left)
			n = (uint32_t)x->left;
		/* The selection of these rows, as indices. */
		if (!b->sel && n > c->idx_cap) {
			free(c->idx);
			c->idx_cap = b->rows;
			if (!(c->idx = malloc(c->idx_cap * sizeof *c->idx))) {
				c->idx_cap = 0;
				return fail(c, ST_ENOMEM, "out of memory");
			}
		}
		const uint32_t *sel = b->sel ? b->sel + x->off : c->idx;
		if (!b->sel)
			for (uint32_t i = 0; i < n; i++)
				c->idx[i] = x->off + i;
		while (n > 1 && wire_batch_bytes(nc, names, b->cols, sel, n) > budget)
			n /= 2;
		if (wire_batch_bytes(nc, names, b->cols, sel, n) > budget)
			return fail(c, ST_ETOOBIG, "one row of '%s' is larger than the %zu-byte message "
				    "limit: raise max_message_size", c->table, c->srv->o.max_message_size);
		wire_pack_batch(&c->out, nc, names, b->cols, sel, n);
		x->off += n;
		x->left -= x->limited ? n : 0;
		*more = !(x->limited && x->left == 0);
		return 0;
	}
	/* No rows left: an empty batch with the columns' types. */
	struct st_vec empty[ST_MAX_COLUMNS];
	static const uint32_t zero[1] = {0};
	for (uint32_t i = 0; i < nc; i++)
		empty[i] = (struct st_vec){.type = (uint8_t)st_scan_column_type(sc, i), .n = 0,
					   .data = zero, .offsets = zero, .bytes = (const uint8_t *)""};
	wire_pack_batch(&c->out, nc, names, empty, NULL, 0);
	*more = false;
	return 0;
}

static int h_scan(struct ctx *c)
{
	struct st_err err;
	struct st_at at;
	char **cols = NULL, *pred = NULL;
	uint32_t ncols = 0;
	uint64_t limit;
	int rc;
	if ((rc = need_table(c)) || (rc = get_at(c, 3, &at)) || (rc = get_strs(c, 1, &cols, &ncols)))
		return rc;
	struct session *x = sess_new(c->srv, SESS_CURSOR);
	if (!x) {
		free(cols);
		return fail(c, ST_ENOMEM, "out of memory");
	}
	snprintf(x->table, sizeof x->table, "%s", c->table);
	x->limited = wire_get_u64(c->m.body, 4, &limit);
	x->left = x->limited ? limit : 0;
	pred = wire_get_strdup(c->m.body, 2);
	rc = st_scan_open(c->srv->s, c->table, at, (const char *const *)cols, cols ? ncols : 0, pred,
			  &x->scan, &err);
	free(cols);
	free(pred);
	if (rc != ST_OK) {
		sess_end(c->srv, x);
		return fail_err(c, rc, &err);
	}
	st_scan *sc = x->scan;
	uint32_t nc = st_scan_ncolumns(sc);
	bool more = false;
	msgpack_packer *pk = &c->out.pk;
	begin(c, 4);
	msgpack_pack_uint32(pk, 2);
	msgpack_pack_uint64(pk, st_scan_version(sc));
	msgpack_pack_uint32(pk, 3);
	msgpack_pack_array(pk, nc);
	for (uint32_t i = 0; i < nc; i++) {
		msgpack_pack_array(pk, 2);
		wire_pack_str(pk, st_scan_column_name(sc, i));
		msgpack_pack_uint32(pk, (uint32_t)st_scan_column_type(sc, i));
	}
	msgpack_pack_uint32(pk, 1);
	if ((rc = scan_page(c, x, &more))) {
		sess_end(c->srv, x);
		return rc;
	}
	wire_key_u64(pk, 0, more ? x->id : 0);
	if (more)
		sess_release(c->srv, x);
	else
		sess_end(c->srv, x);
	return 0;
}

static int h_scan_next(struct ctx *c)
{
	uint64_t id;
	bool more = false;
	int rc;
	if (!wire_get_u64(c->m.body, 0, &id))
		return fail(c, ST_EPROTO, "%s needs a cursor id (key 0)", wire_type_name(c->m.type));
	struct session *x = sess_get(c, id, SESS_CURSOR);
	if (!x)
		return c->e.code;
	snprintf(c->table, sizeof c->table, "%s", x->table);
	if (c->m.type == WIRE_SCAN_CLOSE) {
		sess_end(c->srv, x);
		begin(c, 0);
		return 0;
	}
	begin(c, 2);
	msgpack_pack_uint32(&c->out.pk, 1);
	if ((rc = scan_page(c, x, &more))) {
		sess_end(c->srv, x);
		return rc;
	}
	wire_key_u64(&c->out.pk, 0, more ? x->id : 0);
	if (more)
		sess_release(c->srv, x);
	else
		sess_end(c->srv, x);
	return 0;
}

static int h_query(struct ctx *c)
{
	struct st_err err;
	struct st_at at;
	char **group = NULL, **aggtext = NULL, *pred = NULL;
	uint32_t ngroup = 0, naggs = 0;
	struct sd_agg *aggs = NULL;
	struct sd_query_result r = {0};
	int rc;
	if ((rc = need_table(c)) || (rc = get_at(c, 4, &at)) || (rc = get_strs(c, 1, &group, &ngroup)))
		return rc;
	const msgpack_object *ao = wire_get(c->m.body, 2);
	if (ao && (ao->type != MSGPACK_OBJECT_ARRAY || ao->via.array.size > 256)) {
		rc = fail(c, ST_EPROTO, "QUERY aggregates (key 2) must be an array of [function, column]");
		goto out;
	}
	naggs = ao ? ao->via.array.size : 0;
	aggs = calloc(naggs + 1, sizeof *aggs);
	aggtext = calloc(naggs + 1, sizeof *aggtext);
	if (!aggs || !aggtext) {
		rc = fail(c, ST_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < naggs; i++) {
		const msgpack_object *a = &ao->via.array.ptr[i];
		char fn[16], col[ST_NAME_MAX + 1];
		if (a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size != 2 ||
		    !wire_obj_strbuf(&a->via.array.ptr[0], fn, sizeof fn) ||
		    !wire_obj_strbuf(&a->via.array.ptr[1], col, sizeof col)) {
			rc = fail(c, ST_EPROTO, "QUERY aggregate %u must be [function, column]", i);
			goto out;
		}
		size_t len = strlen(fn) + strlen(col) + 3;
		if (!(aggtext[i] = malloc(len))) {
			rc = fail(c, ST_ENOMEM, "out of memory");
			goto out;
		}
		snprintf(aggtext[i], len, "%s(%s)", fn, col);
		if (!sd_agg_parse(aggtext[i], &aggs[i])) {
			rc = fail(c, ST_EINVAL, "unknown aggregate %s(%s): use count, sum, min, max or avg",
				  fn, col);
			goto out;
		}
	}
	pred = wire_get_strdup(c->m.body, 3);
	if ((rc = sd_query(c->srv->s, c->table, at, (const char *const *)group, ngroup, aggs, naggs,
			   pred, MAX_GROUPS, &r, &err)) != ST_OK) {
		rc = fail_err(c, rc, &err);
		goto out;
	}
	if (wire_batch_bytes(r.ncols, (const char *const *)r.names, r.cols, NULL, r.nrows) >
	    c->srv->o.max_message_size - REPLY_MARGIN) {
		rc = fail(c, ST_ETOOBIG, "the result (%u groups) is larger than the %zu-byte message "
			  "limit: narrow the query", r.nrows, c->srv->o.max_message_size);
		goto out;
	}
	begin(c, 3);
	msgpack_pack_uint32(&c->out.pk, 0);
	wire_pack_batch(&c->out, r.ncols, (const char *const *)r.names, r.cols, NULL, r.nrows);
	wire_key_u64(&c->out.pk, 1, r.version);
	wire_key_u64(&c->out.pk, 2, r.rows_matched);
out:
	sd_query_result_fini(&r);
	for (uint32_t i = 0; aggtext && i < naggs; i++)
		free(aggtext[i]);
	free(aggtext);
	free(aggs);
	free(group);
	free(pred);
	return rc;
}

static int h_history(struct ctx *c)
{
	struct st_err err;
	struct act_commit **h;
	uint32_t n;
	uint64_t limit = 0;
	int rc;
	if ((rc = need_table(c)))
		return rc;
	wire_get_u64(c->m.body, 1, &limit);
	if ((rc = st_history(c->srv->s, c->table, limit > UINT32_MAX ? 0 : (uint32_t)limit, &h, &n,
			     &err)) != ST_OK)
		return fail_err(c, rc, &err);
	msgpack_packer *pk = &c->out.pk;
	begin(c, 1);
	msgpack_pack_uint32(pk, 0);
	msgpack_pack_array(pk, n);
	for (uint32_t i = 0; i < n; i++) {
		const struct act_commit *k = h[i];
		const struct act_commit_info *in = &k->info;
		msgpack_pack_map(pk, 12);
		wire_key_u64(pk, 0, k->version);
		wire_key_i64(pk, 1, k->time_us);
		wire_key_str(pk, 2, in->operation);
		msgpack_pack_uint32(pk, 3);
		msgpack_pack_map(pk, in->nparams);
		for (uint32_t j = 0; j < in->nparams; j++) {
			wire_pack_str(pk, in->params[j].key);
			wire_pack_str(pk, in->params[j].val);
		}
		wire_key_i64(pk, 4, in->read_version);
		wire_key_str(pk, 5, in->isolation == ACT_ISO_WRITE_SERIALIZABLE ? "WriteSerializable"
										  : "Serializable");
		wire_key_u64(pk, 6, in->rows_added);
		wire_key_u64(pk, 7, in->rows_removed);
		wire_key_u64(pk, 8, in->files_added);
		wire_key_u64(pk, 9, in->files_removed);
		wire_key_u64(pk, 10, in->bytes_added);
		wire_key_u64(pk, 11, in->duration_us);
		act_commit_free(h[i]);
	}
	free(h);
	return 0;
}

static int h_restore(struct ctx *c)
{
	struct st_err err;
	struct st_at at;
	struct st_commit_result r;
	int rc;
	if ((rc = need_table(c)) || (rc = get_at(c, 1, &at)))
		return rc;
	if (at.kind != ST_AT_VERSION && at.kind != ST_AT_TIME)
		return fail(c, ST_EINVAL, "restore needs a version or a timestamp");
	if ((rc = st_table_restore(c->srv->s, c->table, at, &r, &err)) != ST_OK)
		return fail_err(c, rc, &err);
	begin(c, 5);
	pack_result(c, &r);
	return 0;
}

static int h_vacuum(struct ctx *c)
{
	struct st_err err;
	struct st_vacuum_opts o = {0};
	struct st_vacuum_result r;
	int rc;
	if ((rc = need_table(c)))
		return rc;
	wire_get_i64(c->m.body, 1, &o.retain_us);
	wire_get_bool(c->m.body, 2, &o.dry_run);
	wire_get_bool(c->m.body, 3, &o.force);
	if (o.retain_us < 0)
		return fail(c, ST_EINVAL, "retention must not be negative");
	if ((rc = st_vacuum(c->srv->s, c->table, &o, &r, &err)) != ST_OK)
		return fail_err(c, rc, &err);
	msgpack_packer *pk = &c->out.pk;
	begin(c, 6);
	wire_key_u64(pk, 0, r.files);
	wire_key_u64(pk, 1, r.bytes);
	msgpack_pack_uint32(pk, 2);
	msgpack_pack_array(pk, r.npaths);
	for (uint32_t i = 0; i < r.npaths; i++)
		wire_pack_str(pk, r.paths[i]);
	wire_key_u64(pk, 3, r.pinned);
	wire_key_u64(pk, 4, r.oldest_version);
	wire_key_u64(pk, 5, r.commits_pruned);
	st_vacuum_result_fini(&r);
	return 0;
}

static int h_verify(struct ctx *c)
{
	struct st_err err;
	struct st_verify_result r;
	int rc = st_verify(c->srv->s, &r, &err);
	if (rc != ST_OK)
		return fail_err(c, rc, &err);
	msgpack_packer *pk = &c->out.pk;
	begin(c, 3);
	wire_key_u64(pk, 0, r.segments);
	wire_key_u64(pk, 1, r.commits);
	msgpack_pack_uint32(pk, 2);
	msgpack_pack_array(pk, r.nproblems);
	for (uint32_t i = 0; i < r.nproblems; i++)
		wire_pack_str(pk, r.problems[i]);
	st_verify_result_fini(&r);
	return 0;
}

static int h_compact(struct ctx *c)
{
	struct st_err err;
	struct st_commit_result r;
	int rc;
	if ((rc = need_table(c)))
		return rc;
	if ((rc = st_table_compact(c->srv->s, c->table, &r, &err)) != ST_OK)
		return fail_err(c, rc, &err);
	begin(c, 5);
	pack_result(c, &r);
	return 0;
}

static const struct {
	int type;
	int (*fn)(struct ctx *c);
} handlers[] = {
	{WIRE_HELLO, h_hello},        {WIRE_PING, h_ping},
	{WIRE_STATUS, h_status},      {WIRE_CREATE, h_create},
	{WIRE_TABLES, h_tables},      {WIRE_DESCRIBE, h_describe},
	{WIRE_DROP, h_drop},          {WIRE_ALTER, h_alter},
	{WIRE_WRITE, h_write},        {WIRE_LOAD_BEGIN, h_load_begin},
	{WIRE_LOAD_DATA, h_load_data}, {WIRE_LOAD_COMMIT, h_load_end},
	{WIRE_LOAD_ABORT, h_load_end}, {WIRE_SCAN, h_scan},
	{WIRE_SCAN_NEXT, h_scan_next}, {WIRE_SCAN_CLOSE, h_scan_next},
	{WIRE_QUERY, h_query},        {WIRE_HISTORY, h_history},
	{WIRE_RESTORE, h_restore},    {WIRE_VACUUM, h_vacuum},
	{WIRE_VERIFY, h_verify},      {WIRE_COMPACT, h_compact},
};

/* Run the request in c->m; the reply (or error reply) ends in c->out. */
static void dispatch(struct ctx *c)
{
	int rc = -1;
	c->table[0] = '\0';
	if (c->m.version > WIRE_VERSION) {
		rc = fail(c, ST_EVERSION, "this stratad speaks protocol version %d; the request uses "
			  "version %u", WIRE_VERSION, c->m.version);
	} else if (!c->m.body && c->m.type != WIRE_PING && c->m.type != WIRE_TABLES &&
		   c->m.type != WIRE_STATUS && c->m.type != WIRE_VERIFY) {
		rc = fail(c, ST_EPROTO, "%s needs a body (key 3)", wire_type_name(c->m.type));
	} else {
		for (size_t i = 0; i < sizeof handlers / sizeof handlers[0]; i++)
			if (handlers[i].type == c->m.type)
				rc = handlers[i].fn(c);
		if (rc == -1)
			rc = fail(c, ST_EPROTO, "unknown request type %d", c->m.type);
	}
	if (c->out.buf.oom && rc == 0)
		rc = fail(c, ST_ENOMEM, "out of memory building the reply");
	if (rc) {
		wire_out_reset(&c->out);
		if (!c->e.table[0])
			snprintf(c->e.table, sizeof c->e.table, "%s", c->table);
		wire_error_reply(&c->out, c->m.id, c->m.type, &c->e);
	}
}

/* ---- deduplication ------------------------------------------------------- */

/* The entry for (client, seq): an existing one, or a new in-progress one
 * (*fresh). Called with the lock held. NULL when out of memory. */
static struct dedupe_entry *dedupe_find(sd_server *srv, const uint8_t *id, uint64_t seq,
					bool *fresh)
{
	struct dedupe_client *cl = NULL;
	*fresh = false;
	for (uint32_t i = 0; i < srv->nclients && !cl; i++)
		if (!memcmp(srv->clients[i]->id, id, WIRE_CLIENT_ID_LEN))
			cl = srv->clients[i];
	if (!cl) {
		if (srv->nclients < DEDUPE_CLIENTS) {
			struct dedupe_client **g =
				realloc(srv->clients, (srv->nclients + 1) * sizeof *g);
			if (!g)
				return NULL;
			srv->clients = g;
			if (!(cl = calloc(1, sizeof *cl)))
				return NULL;
			g[srv->nclients++] = cl;
		} else { /* forget the client idle the longest (nothing in progress) */
			for (uint32_t i = 0; i < srv->nclients; i++) {
				struct dedupe_client *x = srv->clients[i];
				bool busy = false;
				for (int k = 0; k < DEDUPE_PER_CLIENT; k++)
					busy |= x->e[k].seq && !x->e[k].done;
				if (!busy && (!cl || x->last_us < cl->last_us))
					cl = x;
			}
			if (!cl)
				return NULL;
			for (int k = 0; k < DEDUPE_PER_CLIENT; k++)
				free(cl->e[k].reply);
		}
		memset(cl, 0, sizeof *cl);
		memcpy(cl->id, id, WIRE_CLIENT_ID_LEN);
	}
	cl->last_us = now_us();
	for (int k = 0; k < DEDUPE_PER_CLIENT; k++)
		if (cl->e[k].seq == seq)
			return &cl->e[k];
	struct dedupe_entry *e = &cl->e[cl->next];
	if (e->seq && !e->done) /* 64 requests of one client in flight: do not evict */
		return NULL;
	cl->next = (cl->next + 1) % DEDUPE_PER_CLIENT;
	free(e->reply);
	*e = (struct dedupe_entry){.seq = seq};
	*fresh = true;
	return e;
}

/* ---- workers -------------------------------------------------------------- */

static void serve(sd_server *srv, struct ctx *c, struct tp_req *req)
{
	struct st_err err;
	wire_out_reset(&c->out);
	int rc = wire_parse(req->msg, req->len, &c->m, &err);
	if (rc != ST_OK) {
		/* Garbage or not msgpack: say so (the client may be a person with nc). */
		struct wire_error e;
		wire_error_set(&e, rc, err.msg);
		wire_error_reply(&c->out, c->m.id, c->m.type, &e);
		sd_log(SD_LOG_DEBUG, "bad request: %s", err.msg);
		wire_msg_fini(&c->m);
		tp_reply(srv->sock, req, c->out.buf.data, c->out.buf.len, srv->o.max_message_size, &err);
		return;
	}
	struct dedupe_entry *de = NULL;
	bool fresh = true;
	if (wire_changes_state(c->m.type)) {
		if (!c->m.has_client) {
			struct wire_error e;
			wire_error_set(&e, ST_EPROTO, "");
			snprintf(e.msg, sizeof e.msg, "%s changes state and needs a client id and "
				 "sequence number (keys 5 and 6)", wire_type_name(c->m.type));
			wire_error_reply(&c->out, c->m.id, c->m.type, &e);
			goto send;
		}
		pthread_mutex_lock(&srv->lock);
		de = dedupe_find(srv, c->m.client, c->m.seq, &fresh);
		while (de && !fresh && !de->done)
			pthread_cond_wait(&srv->cond, &srv->lock);
		if (de && !fresh) { /* answered before: the same reply, not applied again */
			st_buf_append(&c->out.buf, de->reply, de->len);
			pthread_mutex_unlock(&srv->lock);
			sd_log(SD_LOG_DEBUG, "%s seq %" PRIu64 " repeated: answered from the first reply",
			       wire_type_name(c->m.type), c->m.seq);
			goto send;
		}
		pthread_mutex_unlock(&srv->lock);
	}
	dispatch(c);
	if (de) {
		pthread_mutex_lock(&srv->lock);
		de->reply = malloc(c->out.buf.len + 1);
		if (de->reply) {
			memcpy(de->reply, c->out.buf.data, c->out.buf.len);
			de->len = c->out.buf.len;
			de->done = true;
		} else {
			de->seq = 0; /* cannot remember: a resend would run again */
		}
		pthread_cond_broadcast(&srv->cond);
		pthread_mutex_unlock(&srv->lock);
	}
send:
	wire_msg_fini(&c->m);
	if (c->out.buf.oom) {
		tp_req_free(req);
		return;
	}
	if (tp_reply(srv->sock, req, c->out.buf.data, c->out.buf.len, srv->o.max_message_size,
		     &err) != ST_OK)
		sd_log(SD_LOG_DEBUG, "reply not sent: %s", err.msg);
}

static void *worker(void *arg)
{
	sd_server *srv = arg;
	struct ctx c = {.srv = srv};
	struct st_err err;
	wire_out_init(&c.out);
	while (!__atomic_load_n(&srv->stop, __ATOMIC_ACQUIRE)) {
		struct tp_req req;
		int rc = tp_recv(srv->sock, &req, &err);
		if (rc == ETIMEDOUT) {
			sess_expire(srv, false);
			continue;
		}
		if (rc == ECANCELED)
			break;
		if (rc != ST_OK) {
			sd_log(SD_LOG_WARN, "%s", err.msg);
			continue;
		}
		serve(srv, &c, &req);
		sess_expire(srv, false);
	}
	wire_out_fini(&c.out);
	free(c.idx);
	return NULL;
}

int sd_server_start(st_store *s, const struct sd_server_opts *o, sd_server **out,
		    struct st_err *err)
{
	sd_server *srv = calloc(1, sizeof *srv);
	*out = NULL;
	if (!srv)
		return st_seterr(err, ST_ENOMEM, "out of memory");
	srv->s = s;
	srv->o = *o;
	if (srv->o.workers == 0)
		srv->o.workers = 1;
	srv->started_us = now_us();
	pthread_mutex_init(&srv->lock, NULL);
	pthread_cond_init(&srv->cond, NULL);
	int rc = tp_listen(o->listen, o->nlisten, o->max_message_size, POLL_MS, &srv->sock, err);
	if (rc != ST_OK) {
		free(srv);
		return rc;
	}
	srv->th = calloc(srv->o.workers, sizeof *srv->th);
	if (!srv->th) {
		tp_close(srv->sock);
		free(srv);
		return st_seterr(err, ST_ENOMEM, "out of memory");
	}
	for (; srv->nth < srv->o.workers; srv->nth++)
		if ((rc = pthread_create(&srv->th[srv->nth], NULL, worker, srv)) != 0) {
			st_seterr(err, rc, "cannot start worker threads: %s", strerror(rc));
			sd_server_stop(srv);
			return rc;
		}
	*out = srv;
	return ST_OK;
}

void sd_server_stop(sd_server *srv)
{
	if (!srv)
		return;
	__atomic_store_n(&srv->stop, 1, __ATOMIC_RELEASE);
	for (uint32_t i = 0; i < srv->nth; i++)
		pthread_join(srv->th[i], NULL);
	sess_expire(srv, true);
	tp_close(srv->sock);
	for (uint32_t i = 0; i < srv->nclients; i++) {
		for (int k = 0; k < DEDUPE_PER_CLIENT; k++)
			free(srv->clients[i]->e[k].reply);
		free(srv->clients[i]);
	}
	free(srv->clients);
	free(srv->th);
	pthread_mutex_destroy(&srv->lock);
	pthread_cond_destroy(&srv->cond);
	free(srv);
}
