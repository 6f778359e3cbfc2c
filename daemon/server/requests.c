/*
 * daemon/server/requests.c — dispatch of a decoded request to its handler
 * (PROTOCOL.md §3), the reply helpers, and the handlers of the session,
 * table and maintenance requests: HELLO, PING, STATUS, CREATE, TABLES,
 * DESCRIBE, DROP, ALTER, HISTORY, RESTORE, VACUUM, VERIFY, COMPACT. The
 * handlers that move rows are in rows.c.
 *
 * Handler discipline (STYLE.md "One exit per function"): every local that
 * is released at the end is initialised before the first `goto out`, and
 * `out:` releases in reverse. A handler returns ST_OK with a complete reply
 * in c->out (a body of exactly the pairs sd_begin announced), or an error
 * code with c->e set; sd_dispatch then replaces the reply by an error reply.
 * Threading: a handler touches only its context, the store (thread-safe)
 * and sessions it holds.
 */
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/server/log.h"
#include "daemon/server/server_int.h"

/* ---- errors and replies ------------------------------------------------ */

int sd_fail(struct sd_ctx *c, int code, const char *fmt, ...)
{
	char msg[ST_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	wire_error_set(&c->e, code, msg);
	return code;
}

int sd_fail_err(struct sd_ctx *c, int code, const struct st_err *err)
{
	/* A failed store (an I/O error at a commit, e.g. fsync EIO: the data
	 * may be gone, so no write is retried) refuses writes until the
	 * process reopens it. Said once in the log, for the operator. */
	static int told;
	if (code == ST_EFAILED && !__atomic_exchange_n(&told, 1, __ATOMIC_RELAXED))
		sd_log(SD_LOG_ERROR, "store failed: %s. Writes are refused until stratad is "
		       "restarted (it reopens the store and recovers its last commit); reads go on",
		       err->msg);
	wire_error_set(&c->e, code, err->msg);
	snprintf(c->e.table, sizeof c->e.table, "%s", c->table);
	return code;
}

void sd_begin(struct sd_ctx *c, uint32_t nbody)
{
	wire_begin(&c->out, c->m.id, c->m.type, NULL, 0, nbody);
}

void sd_pack_result(struct sd_ctx *c, const struct st_commit_result *r)
{
	msgpack_packer *pk = &c->out.pk;
	wire_key_u64(pk, WIRE_RESULT_VERSION, r->version);
	wire_key_u64(pk, WIRE_RESULT_LSN, r->lsn);
	wire_key_i64(pk, WIRE_RESULT_TIME, r->time_us);
	wire_key_u64(pk, WIRE_RESULT_ROWS, r->rows);
	wire_key_bool(pk, WIRE_RESULT_NOOP, r->noop);
}

/* ---- session and status ------------------------------------------------- */

static int h_hello(struct sd_ctx *c)
{
	char name[256] = "";
	uint64_t proto = WIRE_VERSION;
	int rc = ST_OK;
	if ((rc = sd_opt_strbuf(c, WIRE_HELLO_Q_CLIENT, "client name", name, sizeof name)) ||
	    (rc = sd_opt_u64(c, WIRE_HELLO_Q_PROTOCOL, "protocol version", &proto)))
		goto out;
	sd_begin(c, WIRE_HELLO_R_NKEYS);
	msgpack_packer *pk = &c->out.pk;
	wire_key_str(pk, WIRE_HELLO_R_VERSION, c->srv->o.version);
	wire_key_u64(pk, WIRE_HELLO_R_PROTOCOL, WIRE_VERSION);
	wire_key_u64(pk, WIRE_HELLO_R_MAX_MESSAGE, c->srv->o.max_message_size);
	wire_key_u64(pk, WIRE_HELLO_R_MAX_ROWS, c->srv->o.max_batch_rows);
out:
	return rc;
}

static int h_ping(struct sd_ctx *c)
{
	sd_begin(c, 0);
	return ST_OK;
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

static int h_status(struct sd_ctx *c)
{
	static pthread_mutex_t du_lock = PTHREAD_MUTEX_INITIALIZER;
	struct st_err err;
	char **names = NULL;
	uint32_t n = 0;
	int rc = ST_OK;
	if ((rc = st_table_list(c->srv->s, &names, &n, &err)) != ST_OK) {
		rc = sd_fail_err(c, rc, &err);
		goto out;
	}
	pthread_mutex_lock(&du_lock);
	du_total = 0;
	nftw(c->srv->o.data_dir, du_add, 16, FTW_PHYS);
	uint64_t disk = du_total;
	pthread_mutex_unlock(&du_lock);
	pthread_mutex_lock(&c->srv->lock);
	uint32_t loads = c->srv->nloads, cursors = c->srv->ncursors;
	pthread_mutex_unlock(&c->srv->lock);
	struct st_chain_head head; /* its LSN and hash go together */
	if ((rc = st_chain_head(c->srv->s, &head, &err)) != ST_OK) {
		rc = sd_fail_err(c, rc, &err);
		goto out;
	}
	sd_begin(c, WIRE_STATUS_R_NKEYS);
	msgpack_packer *pk = &c->out.pk;
	wire_key_str(pk, WIRE_STATUS_R_VERSION, c->srv->o.version);
	wire_key_u64(pk, WIRE_STATUS_R_UPTIME, (uint64_t)(sd_now_us() - c->srv->started_us));
	wire_key_str(pk, WIRE_STATUS_R_DATA_DIR, c->srv->o.data_dir);
	wire_key_u64(pk, WIRE_STATUS_R_TABLES, n);
	wire_key_u64(pk, WIRE_STATUS_R_LSN, head.lsn);
	wire_key_u64(pk, WIRE_STATUS_R_DISK, disk);
	wire_key_u64(pk, WIRE_STATUS_R_PID, (uint64_t)getpid());
	wire_key_u64(pk, WIRE_STATUS_R_LOADS, loads);
	wire_key_u64(pk, WIRE_STATUS_R_CURSORS, cursors);
	wire_key_bin(pk, WIRE_STATUS_R_CHAIN_HASH, head.hash, ST_HASH_LEN);
	char failure[ST_ERR_MSG_MAX] = "";
	st_store_failure(c->srv->s, failure, sizeof failure);
	wire_key_str(pk, WIRE_STATUS_R_FAILURE, failure);
	sd_status_cluster(c);
	sd_status_scrub(c);
	sd_status_autoopt(c);
out:
	free(names);
	return rc;
}

/* ---- tables ------------------------------------------------------------- */

static int h_create(struct sd_ctx *c)
{
	struct st_err err;
	const msgpack_object *cols = NULL, *props = NULL;
	struct st_column_def *defs = NULL;
	char(*names)[ST_NAME_MAX + 1] = NULL;
	struct act_kv *kv = NULL;
	char **part = NULL, **key = NULL;
	uint32_t nc = 0, np = 0, nkv = 0, npart = 0, nkey = 0;
	uint64_t mode = WIRE_CREATE_ERROR, version = 0;
	enum st_create_mode smode = ST_CREATE_ERROR;
	int rc = ST_OK;
	if ((rc = sd_need_table(c, WIRE_CREATE_Q_TABLE)) ||
	    (rc = sd_need_array(c, WIRE_CREATE_Q_COLUMNS, "columns", &cols)) ||
	    (rc = sd_get_strs(c, WIRE_CREATE_Q_PARTITION, "partition columns", &part, &npart)) ||
	    (rc = sd_get_strs(c, WIRE_CREATE_Q_KEY, "key columns", &key, &nkey)) ||
	    (rc = sd_opt_map(c, WIRE_CREATE_Q_PROPERTIES, "properties", &props)) ||
	    (rc = sd_opt_u64(c, WIRE_CREATE_Q_MODE, "mode", &mode)))
		goto out;
	switch (mode) {
	case WIRE_CREATE_ERROR: smode = ST_CREATE_ERROR; break;
	case WIRE_CREATE_IGNORE: smode = ST_CREATE_IF_NOT_EXISTS; break;
	case WIRE_CREATE_REPLACE: smode = ST_CREATE_REPLACE; break;
	default:
		rc = sd_fail(c, ST_EINVAL, "key 4 (mode) of CREATE is %llu: 0 (error if it exists), "
			     "1 (ignore) or 2 (replace)", (unsigned long long)mode);
		goto out;
	}
	nc = cols->via.array.size;
	np = props ? props->via.map.size : 0;
	if (!nc || nc > ST_MAX_COLUMNS) {
		rc = sd_fail(c, ST_EINVAL, "CREATE needs 1 to %d columns (key 1), not %u",
			     ST_MAX_COLUMNS, nc);
		goto out;
	}
	if (np > 1024) {
		rc = sd_fail(c, ST_ETOOBIG, "CREATE has %u properties (key 3); at most 1024", np);
		goto out;
	}
	defs = calloc(nc, sizeof *defs);
	names = calloc(nc, sizeof *names);
	kv = calloc(np + 1, sizeof *kv);
	if (!defs || !names || !kv) {
		rc = sd_fail(c, ST_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < nc; i++) {
		const msgpack_object *d = &cols->via.array.ptr[i];
		if (d->type != MSGPACK_OBJECT_ARRAY || d->via.array.size < 3 ||
		    !wire_obj_strbuf(&d->via.array.ptr[0], names[i], sizeof names[i]) ||
		    d->via.array.ptr[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
		    d->via.array.ptr[2].type != MSGPACK_OBJECT_BOOLEAN) {
			rc = sd_fail(c, ST_EPROTO, "key 1 (columns) of CREATE: column %u must be "
				     "[name (str of 1 to %d bytes), type id (uint), nullable (bool)]",
				     i, ST_NAME_MAX);
			goto out;
		}
		uint64_t type = d->via.array.ptr[1].via.u64;
		defs[i] = (struct st_column_def){names[i], type > 255 ? 0 : (int)type,
						 d->via.array.ptr[2].via.boolean};
	}
	for (; nkv < np; nkv++) {
		const msgpack_object_kv *p = &props->via.map.ptr[nkv];
		if (p->key.type != MSGPACK_OBJECT_STR || p->val.type != MSGPACK_OBJECT_STR) {
			rc = sd_fail(c, ST_EPROTO, "key 3 (properties) of CREATE must map str to str; "
				     "property %u is %s to %s", nkv, wire_obj_type_name(&p->key),
				     wire_obj_type_name(&p->val));
			goto out;
		}
		kv[nkv].key = strndup(p->key.via.str.size ? p->key.via.str.ptr : "", p->key.via.str.size);
		kv[nkv].val = strndup(p->val.via.str.size ? p->val.via.str.ptr : "", p->val.via.str.size);
		if (!kv[nkv].key || !kv[nkv].val) {
			nkv++;
			rc = sd_fail(c, ST_ENOMEM, "out of memory");
			goto out;
		}
	}
	struct st_table_spec spec = {c->table, defs, nc, (const char *const *)part, npart, kv, np,
				     (const char *const *)key, nkey};
	if ((rc = st_table_create(c->srv->s, &spec, smode, &version, &err)) != ST_OK) {
		rc = sd_fail_err(c, rc, &err);
		goto out;
	}
	sd_begin(c, 1);
	wire_key_u64(&c->out.pk, WIRE_CREATE_R_VERSION, version);
out:
	for (uint32_t i = 0; kv && i < nkv; i++) {
		free(kv[i].key);
		free(kv[i].val);
	}
	free(kv);
	free(names);
	free(defs);
	free(key);
	free(part);
	return rc;
}

static int h_tables(struct sd_ctx *c)
{
	struct st_err err;
	char **names = NULL;
	uint32_t n = 0;
	int rc = ST_OK;
	if ((rc = st_table_list(c->srv->s, &names, &n, &err)) != ST_OK) {
		rc = sd_fail_err(c, rc, &err);
		goto out;
	}
	sd_begin(c, 1);
	msgpack_pack_uint32(&c->out.pk, WIRE_TABLES_R_NAMES);
	msgpack_pack_array(&c->out.pk, n);
	for (uint32_t i = 0; i < n; i++)
		wire_pack_str(&c->out.pk, names[i]);
out:
	free(names);
	return rc;
}

static int h_describe(struct sd_ctx *c)
{
	struct st_err err;
	st_scan *sc = NULL;
	uint64_t v = 0;
	bool versioned = false;
	int rc = ST_OK;
	if ((rc = sd_need_table(c, WIRE_DESCRIBE_Q_TABLE)) ||
	    (rc = sd_opt_u64(c, WIRE_DESCRIBE_Q_VERSION, "version", &v)))
		goto out;
	versioned = wire_get(c->m.body, WIRE_DESCRIBE_Q_VERSION) != NULL;
	if (v > INT64_MAX) {
		rc = sd_fail(c, ST_ERANGE, "key 1 (version) of DESCRIBE is above 2^63-1");
		goto out;
	}
	struct st_at at = {versioned ? ST_AT_VERSION : ST_AT_LATEST, (int64_t)v};
	if ((rc = st_scan_open(c->srv->s, c->table, at, NULL, 0, NULL, &sc, &err)) != ST_OK) {
		rc = sd_fail_err(c, rc, &err);
		goto out;
	}
	const struct act_metadata *m = st_scan_metadata(sc);
	struct st_scan_info info;
	st_scan_info(sc, &info);
	msgpack_packer *pk = &c->out.pk;
	sd_begin(c, WIRE_DESCRIBE_R_NKEYS);
	wire_key_str(pk, WIRE_DESCRIBE_R_TABLE, m->name);
	wire_key_u64(pk, WIRE_DESCRIBE_R_VERSION, info.version);
	msgpack_pack_uint32(pk, WIRE_DESCRIBE_R_COLUMNS);
	msgpack_pack_array(pk, m->schema.nfields);
	for (uint32_t i = 0; i < m->schema.nfields; i++) {
		const struct st_field *f = &m->schema.fields[i];
		msgpack_pack_array(pk, 4);
		wire_pack_str(pk, f->name);
		msgpack_pack_uint32(pk, f->type);
		f->nullable ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
		msgpack_pack_uint32(pk, f->id);
	}
	msgpack_pack_uint32(pk, WIRE_DESCRIBE_R_PARTITION);
	msgpack_pack_array(pk, m->npartition);
	for (uint32_t i = 0; i < m->npartition; i++) {
		const char *name = "?";
		for (uint32_t j = 0; j < m->schema.nfields; j++)
			if (m->schema.fields[j].id == m->partition[i])
				name = m->schema.fields[j].name;
		wire_pack_str(pk, name);
	}
	msgpack_pack_uint32(pk, WIRE_DESCRIBE_R_PROPERTIES);
	msgpack_pack_map(pk, m->nprops);
	for (uint32_t i = 0; i < m->nprops; i++) {
		wire_pack_str(pk, m->props[i].key);
		wire_pack_str(pk, m->props[i].val);
	}
	msgpack_pack_uint32(pk, WIRE_DESCRIBE_R_CONSTRAINTS);
	msgpack_pack_array(pk, m->nconstraints);
	for (uint32_t i = 0; i < m->nconstraints; i++) {
		msgpack_pack_array(pk, 2);
		wire_pack_str(pk, m->constraints[i].name);
		wire_pack_str(pk, m->constraints[i].expr);
	}
	wire_key_u64(pk, WIRE_DESCRIBE_R_FILES, info.files);
	wire_key_u64(pk, WIRE_DESCRIBE_R_ROWS, info.rows);
	wire_key_u64(pk, WIRE_DESCRIBE_R_BYTES, info.bytes);
	wire_key_i64(pk, WIRE_DESCRIBE_R_TIME, info.time_us);
	wire_key_u64(pk, WIRE_DESCRIBE_R_OLDEST, info.oldest);
	wire_key_u64(pk, WIRE_DESCRIBE_R_DELETED, info.deleted);
	wire_key_u64(pk, WIRE_DESCRIBE_R_DVS, info.dvs);
	msgpack_pack_uint32(pk, WIRE_DESCRIBE_R_KEY);
	msgpack_pack_array(pk, m->nkey);
	for (uint32_t i = 0; i < m->nkey; i++) {
		const char *name = "?";
		for (uint32_t j = 0; j < m->schema.nfields; j++)
			if (m->schema.fields[j].id == m->key[i])
				name = m->schema.fields[j].name;
		wire_pack_str(pk, name);
	}
out:
	st_scan_close(sc);
	return rc;
}

static int h_drop(struct sd_ctx *c)
{
	struct st_err err;
	struct st_commit_result r;
	int rc = ST_OK;
	if ((rc = sd_need_table(c, WIRE_DROP_Q_TABLE)))
		goto out;
	if ((rc = st_table_drop(c->srv->s, c->table, &r, &err)) != ST_OK) {
		rc = sd_fail_err(c, rc, &err);
		goto out;
	}
	sd_begin(c, WIRE_DROP_R_NKEYS);
	wire_key_u64(&c->out.pk, WIRE_DROP_R_VERSION, r.version);
out:
	return rc;
}

/* The store's operation for an ALTER operation number of the wire
 * (PROTOCOL.md §3.3); false for an unknown number. */
static bool alter_op(uint64_t wire, enum st_alter_op *op)
{
	switch (wire) {
	case WIRE_ALTER_ADD_COLUMN: *op = ST_ALTER_ADD_COLUMN; return true;
	case WIRE_ALTER_RENAME_COLUMN: *op = ST_ALTER_RENAME_COLUMN; return true;
	case WIRE_ALTER_DROP_COLUMN: *op = ST_ALTER_DROP_COLUMN; return true;
	case WIRE_ALTER_SET_PROPERTY: *op = ST_ALTER_SET_PROPERTY; return true;
	case WIRE_ALTER_UNSET_PROPERTY: *op = ST_ALTER_UNSET_PROPERTY; return true;
	case WIRE_ALTER_SET_NOT_NULL: *op = ST_ALTER_SET_NOT_NULL; return true;
	case WIRE_ALTER_DROP_NOT_NULL: *op = ST_ALTER_DROP_NOT_NULL; return true;
	case WIRE_ALTER_ADD_CONSTRAINT: *op = ST_ALTER_ADD_CONSTRAINT; return true;
	case WIRE_ALTER_DROP_CONSTRAINT: *op = ST_ALTER_DROP_CONSTRAINT; return true;
	}
	return false;
}

static int h_alter(struct sd_ctx *c)
{
	struct st_err err;
	struct st_commit_result r;
	char col[1024] = "", arg[4096] = "";
	uint64_t wop = 0, type = 0;
	enum st_alter_op op = ST_ALTER_ADD_COLUMN;
	int rc = ST_OK;
	if ((rc = sd_need_table(c, WIRE_ALTER_Q_TABLE)) ||
	    (rc = sd_need_u64(c, WIRE_ALTER_Q_OP, "operation", &wop)) ||
	    (rc = sd_opt_strbuf(c, WIRE_ALTER_Q_ARG1, "first argument", col, sizeof col)) ||
	    (rc = sd_opt_strbuf(c, WIRE_ALTER_Q_ARG2, "second argument", arg, sizeof arg)) ||
	    (rc = sd_opt_u64(c, WIRE_ALTER_Q_TYPE, "type id", &type)))
		goto out;
	if (!alter_op(wop, &op)) {
		rc = sd_fail(c, ST_EPROTO, "key 1 (operation) of ALTER is %llu, not an operation "
			     "number 0 to 8 (PROTOCOL.md §3.3)", (unsigned long long)wop);
		goto out;
	}
	struct st_alter a = {op, col, arg, type > 255 ? 0 : (int)type};
	if ((rc = st_table_alter(c->srv->s, c->table, &a, &r, &err)) != ST_OK) {
		rc = sd_fail_err(c, rc, &err);
		goto out;
	}
	sd_begin(c, 1);
	wire_key_u64(&c->out.pk, WIRE_ALTER_R_VERSION, r.version);
out:
	return rc;
}

/* ---- history and maintenance -------------------------------------------- */

static int h_history(struct sd_ctx *c)
{
	struct st_err err;
	struct act_commit **h = NULL;
	uint32_t n = 0;
	uint64_t limit = 0;
	int rc = ST_OK;
	if ((rc = sd_need_table(c, WIRE_HISTORY_Q_TABLE)) ||
	    (rc = sd_opt_u64(c, WIRE_HISTORY_Q_LIMIT, "limit", &limit)))
		goto out;
	if ((rc = st_history(c->srv->s, c->table, limit > UINT32_MAX ? 0 : (uint32_t)limit, &h, &n,
			     &err)) != ST_OK) {
		rc = sd_fail_err(c, rc, &err);
		goto out;
	}
	msgpack_packer *pk = &c->out.pk;
	sd_begin(c, 1);
	msgpack_pack_uint32(pk, WIRE_HISTORY_R_COMMITS);
	msgpack_pack_array(pk, n);
	for (uint32_t i = 0; i < n; i++) {
		const struct act_commit *k = h[i];
		const struct act_commit_info *in = &k->info;
		msgpack_pack_map(pk, WIRE_COMMIT_NKEYS);
		wire_key_u64(pk, WIRE_COMMIT_VERSION, k->version);
		wire_key_i64(pk, WIRE_COMMIT_TIME, k->time_us);
		wire_key_str(pk, WIRE_COMMIT_OPERATION, in->operation);
		msgpack_pack_uint32(pk, WIRE_COMMIT_PARAMETERS);
		msgpack_pack_map(pk, in->nparams);
		for (uint32_t j = 0; j < in->nparams; j++) {
			wire_pack_str(pk, in->params[j].key);
			wire_pack_str(pk, in->params[j].val);
		}
		wire_key_i64(pk, WIRE_COMMIT_READ_VERSION, in->read_version);
		wire_key_str(pk, WIRE_COMMIT_ISOLATION,
			     in->isolation == ACT_ISO_WRITE_SERIALIZABLE ? "WriteSerializable"
									  : "Serializable");
		wire_key_u64(pk, WIRE_COMMIT_ROWS_ADDED, in->rows_added);
		wire_key_u64(pk, WIRE_COMMIT_ROWS_REMOVED, in->rows_removed);
		wire_key_u64(pk, WIRE_COMMIT_FILES_ADDED, in->files_added);
		wire_key_u64(pk, WIRE_COMMIT_FILES_REMOVED, in->files_removed);
		wire_key_u64(pk, WIRE_COMMIT_BYTES_ADDED, in->bytes_added);
		wire_key_u64(pk, WIRE_COMMIT_DURATION, in->duration_us);
		/* The chain hash after it; zeros if its LSN record is gone
		 * (st_verify reports that). */
		uint8_t hash[ST_HASH_LEN] = {0};
		st_chain_hash(c->srv->s, k->lsn, hash, NULL);
		wire_key_u64(pk, WIRE_COMMIT_LSN, k->lsn);
		wire_key_u64(pk, WIRE_COMMIT_ROWS_DELETED, in->rows_deleted);
		wire_key_u64(pk, WIRE_COMMIT_ROWS_UPDATED, in->rows_updated);
		wire_key_u64(pk, WIRE_COMMIT_DVS_ADDED, in->dvs_added);
		wire_key_bin(pk, WIRE_COMMIT_HASH, hash, ST_HASH_LEN);
	}
out:
	for (uint32_t i = 0; h && i < n; i++)
		act_commit_free(h[i]);
	free(h);
	return rc;
}

static int h_restore(struct sd_ctx *c)
{
	struct st_err err;
	struct st_at at = {ST_AT_LATEST, 0};
	struct st_commit_result r;
	int rc = ST_OK;
	if ((rc = sd_need_table(c, WIRE_RESTORE_Q_TABLE)) ||
	    (rc = sd_get_at(c, WIRE_RESTORE_Q_AT, "at", true, &at)))
		goto out;
	if (at.kind != ST_AT_VERSION && at.kind != ST_AT_TIME) {
		rc = sd_fail(c, ST_EINVAL, "RESTORE needs a version or a timestamp (key 1, kind 1 "
			     "or 2)");
		goto out;
	}
	if ((rc = st_table_restore(c->srv->s, c->table, at, &r, &err)) != ST_OK) {
		rc = sd_fail_err(c, rc, &err);
		goto out;
	}
	sd_begin(c, WIRE_RESULT_NKEYS);
	sd_pack_result(c, &r);
out:
	return rc;
}

static int h_vacuum(struct sd_ctx *c)
{
	struct st_err err;
	struct st_vacuum_opts o = {0};
	struct st_vacuum_result r;
	bool have_r = false;
	int rc = ST_OK;
	if ((rc = sd_need_table(c, WIRE_VACUUM_Q_TABLE)) ||
	    (rc = sd_opt_i64(c, WIRE_VACUUM_Q_RETAIN, "retain µs", &o.retain_us)) ||
	    (rc = sd_opt_bool(c, WIRE_VACUUM_Q_DRY_RUN, "dry run", &o.dry_run)) ||
	    (rc = sd_opt_bool(c, WIRE_VACUUM_Q_FORCE, "force", &o.force)))
		goto out;
	if (o.retain_us < 0) {
		rc = sd_fail(c, ST_EINVAL, "key 1 (retain µs) of VACUUM must not be negative");
		goto out;
	}
	if ((rc = st_vacuum(c->srv->s, c->table, &o, &r, &err)) != ST_OK) {
		rc = sd_fail_err(c, rc, &err);
		goto out;
	}
	have_r = true;
	msgpack_packer *pk = &c->out.pk;
	sd_begin(c, WIRE_VACUUM_R_NKEYS);
	wire_key_u64(pk, WIRE_VACUUM_R_FILES, r.files);
	wire_key_u64(pk, WIRE_VACUUM_R_BYTES, r.bytes);
	msgpack_pack_uint32(pk, WIRE_VACUUM_R_PATHS);
	msgpack_pack_array(pk, r.npaths);
	for (uint32_t i = 0; i < r.npaths; i++)
		wire_pack_str(pk, r.paths[i]);
	wire_key_u64(pk, WIRE_VACUUM_R_PINNED, r.pinned);
	wire_key_u64(pk, WIRE_VACUUM_R_OLDEST, r.oldest_version);
	wire_key_u64(pk, WIRE_VACUUM_R_PRUNED, r.commits_pruned);
	wire_key_u64(pk, WIRE_VACUUM_R_FOLLOWERS, r.followers);
out:
	if (have_r)
		st_vacuum_result_fini(&r);
	return rc;
}

static int h_verify(struct sd_ctx *c)
{
	struct st_err err;
	struct st_verify_result r;
	uint8_t head[ST_HASH_LEN];
	bool have_r = false, have_head = false;
	int rc = ST_OK;
	struct st_verify_opts o = {0};
	if ((rc = sd_opt_hash(c, WIRE_VERIFY_Q_HEAD, "head", head, &have_head)) ||
	    (rc = sd_opt_bool(c, WIRE_VERIFY_Q_QUICK, "quick", &o.quick)))
		goto out;
	o.head = have_head ? head : NULL;
	if ((rc = st_verify_ex(c->srv->s, &o, &r, &err)) != ST_OK) {
		rc = sd_fail_err(c, rc, &err);
		goto out;
	}
	have_r = true;
	msgpack_packer *pk = &c->out.pk;
	sd_begin(c, WIRE_VERIFY_R_NKEYS + (r.head_lsn ? 1 : 0));
	wire_key_u64(pk, WIRE_VERIFY_R_SEGMENTS, r.segments);
	wire_key_u64(pk, WIRE_VERIFY_R_COMMITS, r.commits);
	msgpack_pack_uint32(pk, WIRE_VERIFY_R_PROBLEMS);
	msgpack_pack_array(pk, r.nproblems);
	for (uint32_t i = 0; i < r.nproblems; i++)
		wire_pack_str(pk, r.problems[i]);
	wire_key_u64(pk, WIRE_VERIFY_R_LAST_LSN, r.last_lsn);
	wire_key_bin(pk, WIRE_VERIFY_R_LAST_HASH, r.last_hash, ST_HASH_LEN);
	if (r.head_lsn)
		wire_key_u64(pk, WIRE_VERIFY_R_HEAD_LSN, r.head_lsn);
	wire_key_u64(pk, WIRE_VERIFY_R_RECORDS, r.records);
	wire_key_u64(pk, WIRE_VERIFY_R_ORPHANS, r.orphans);
	wire_key_u64(pk, WIRE_VERIFY_R_PAGES, r.pages);
	msgpack_pack_uint32(pk, WIRE_VERIFY_R_PAGES_SKIPPED);
	if (r.page_walk_skipped)
		msgpack_pack_true(pk);
	else
		msgpack_pack_false(pk);
out:
	if (have_r)
		st_verify_result_fini(&r);
	return rc;
}

static int h_backup(struct sd_ctx *c)
{
	char dir[4096] = "";
	struct st_err err;
	struct st_backup_result r;
	int rc;
	if ((rc = sd_opt_strbuf(c, WIRE_BACKUP_Q_DIR, "dir", dir, sizeof dir)))
		return rc;
	if (!dir[0])
		return sd_fail(c, ST_EPROTO, "BACKUP needs key 0 (dir)");
	sd_log(SD_LOG_INFO, "backup to %s started", dir);
	if ((rc = st_backup(c->srv->s, dir, &r, &err)) != ST_OK) {
		sd_log(SD_LOG_WARN, "backup to %s failed: %s", dir, err.msg);
		return sd_fail_err(c, rc, &err);
	}
	sd_log(SD_LOG_INFO, "backup to %s done: LSN %llu, %llu files, %llu bytes", dir,
	       (unsigned long long)r.lsn, (unsigned long long)r.files, (unsigned long long)r.bytes);
	msgpack_packer *pk = &c->out.pk;
	sd_begin(c, WIRE_BACKUP_R_NKEYS);
	wire_key_u64(pk, WIRE_BACKUP_R_LSN, r.lsn);
	wire_key_bin(pk, WIRE_BACKUP_R_HASH, r.hash, ST_HASH_LEN);
	wire_key_u64(pk, WIRE_BACKUP_R_FILES, r.files);
	wire_key_u64(pk, WIRE_BACKUP_R_BYTES, r.bytes);
	return ST_OK;
}

static int h_compact(struct sd_ctx *c)
{
	struct st_err err;
	struct st_commit_result r;
	int rc = ST_OK;
	if ((rc = sd_need_table(c, WIRE_COMPACT_Q_TABLE)))
		goto out;
	if ((rc = st_table_compact(c->srv->s, c->table, &r, &err)) != ST_OK) {
		rc = sd_fail_err(c, rc, &err);
		goto out;
	}
	sd_begin(c, WIRE_RESULT_NKEYS);
	sd_pack_result(c, &r);
out:
	return rc;
}

/* The reply keys DELETE, UPDATE and MERGE share (PROTOCOL.md): the commit,
 * the rows changed and the file counters; nkeys counts the caller's extra keys too. */
static void pack_dml_reply(struct sd_ctx *c, uint32_t nkeys, const struct st_dml_result *r,
			   uint64_t rows)
{
	msgpack_packer *pk = &c->out.pk;
	sd_begin(c, nkeys);
	sd_pack_result(c, &r->commit);
	wire_key_u64(pk, WIRE_DML_R_ROWS, rows);
	wire_key_u64(pk, WIRE_DML_R_SKIPPED, r->files_skipped);
	wire_key_u64(pk, WIRE_DML_R_READ, r->files_read);
	wire_key_u64(pk, WIRE_DML_R_REMOVED, r->files_removed);
	wire_key_u64(pk, WIRE_DML_R_DVS, r->dvs_written);
}

/* DELETE and UPDATE: the same keys but UPDATE's SET list (key 1, which
 * moves the others up one). */
static int h_dml(struct sd_ctx *c)
{
	struct st_err err;
	struct st_dml_result r;
	struct st_dml_opts o = {0};
	char *pred = NULL, *app = NULL, *set = NULL;
	bool upd = c->m.type == WIRE_UPDATE;
	uint32_t k = upd ? 1 : 0; /* WIRE_UPDATE_Q_X == WIRE_DELETE_Q_X + 1 past the table */
	_Static_assert((int)WIRE_UPDATE_Q_PREDICATE == (int)WIRE_DELETE_Q_PREDICATE + 1 &&
			       (int)WIRE_UPDATE_Q_APP_ID == (int)WIRE_DELETE_Q_APP_ID + 1 &&
			       (int)WIRE_UPDATE_Q_APP_VERSION == (int)WIRE_DELETE_Q_APP_VERSION + 1 &&
			       (int)WIRE_UPDATE_Q_TABLE == (int)WIRE_DELETE_Q_TABLE,
		       "DELETE and UPDATE keys");
	int rc;
	if ((rc = sd_need_table(c, WIRE_DELETE_Q_TABLE)) ||
	    (upd && (rc = sd_opt_strdup(c, WIRE_UPDATE_Q_SET, "set", &set))) ||
	    (rc = sd_opt_strdup(c, WIRE_DELETE_Q_PREDICATE + k, "predicate", &pred)) ||
	    (rc = sd_opt_strdup(c, WIRE_DELETE_Q_APP_ID + k, "app_id", &app)) ||
	    (rc = sd_opt_u64(c, WIRE_DELETE_Q_APP_VERSION + k, "app_version", &o.app_version)))
		goto out;
	if (!pred || !*pred || (upd && (!set || !*set))) {
		rc = sd_fail(c, ST_EPROTO, upd && (!set || !*set) ? "UPDATE needs key 1 (set)"
				 : upd ? "UPDATE needs key 2 (predicate)" : "DELETE needs key 1 (predicate)");
		goto out;
	}
	o.app_id = app && *app ? app : NULL;
	rc = upd ? st_update(c->srv->s, c->table, set, pred, &o, &r, &err)
		 : st_delete(c->srv->s, c->table, pred, &o, &r, &err);
	if (rc != ST_OK) {
		rc = sd_fail_err(c, rc, &err);
		goto out;
	}
	pack_dml_reply(c, WIRE_DML_R_NKEYS, &r, upd ? r.rows_updated : r.rows_deleted);
out:
	free(pred);
	free(app);
	free(set);
	return rc;
}

static int h_merge(struct sd_ctx *c)
{
	struct st_err err;
	struct st_dml_result r;
	struct st_merge_opts o = {0};
	char *src = NULL, *on = NULL, *app = NULL, *set = NULL;
	uint64_t matched = 0, nm = 0, bs = 0, load = 0;
	struct sd_session *x = NULL;
	int rc;
	if ((rc = sd_need_table(c, WIRE_MERGE_Q_TABLE)) ||
	    (rc = sd_opt_u64(c, WIRE_MERGE_Q_SOURCE_LOAD, "source load", &load)) ||
	    (rc = sd_opt_strdup(c, WIRE_MERGE_Q_SOURCE, "source", &src)) ||
	    (rc = sd_opt_strdup(c, WIRE_MERGE_Q_ON, "on", &on)) ||
	    (rc = sd_opt_u64(c, WIRE_MERGE_Q_MATCHED, "matched", &matched)) ||
	    (rc = sd_opt_u64(c, WIRE_MERGE_Q_NOT_MATCHED, "not matched", &nm)) ||
	    (rc = sd_opt_u64(c, WIRE_MERGE_Q_BY_SOURCE, "not matched by source", &bs)) ||
	    (rc = sd_opt_strdup(c, WIRE_MERGE_Q_APP_ID, "app_id", &app)) ||
	    (rc = sd_opt_u64(c, WIRE_MERGE_Q_APP_VERSION, "app_version", &o.app_version)) ||
	    (rc = sd_opt_strdup(c, WIRE_MERGE_Q_SET, "set", &set)))
		goto out;
	if (!src || !*src || !on || !*on || matched > 3 || nm > 1 || bs > 1 ||
	    (matched == 3) != (set && *set)) {
		rc = sd_fail(c, ST_EPROTO, "MERGE needs key 1 (source) and key 2 (on); keys 3-5 are "
			     "0..3, 0..1, 0..1; key 8 (set) goes with key 3 = 3");
		goto out;
	}
	o.set = set;
	o.on = on;
	o.matched = (int)matched;
	o.not_matched = (int)nm;
	o.by_source = (int)bs;
	o.app_id = app && *app ? app : NULL;
	/* A merge-source load (PROTOCOL.md §4): consumed whatever happens. */
	if (load && !(x = sd_sess_get(c, load, SD_SESS_LOAD))) {
		rc = c->e.code;
		goto out;
	}
	if (x && !x->msrc) {
		rc = sd_fail(c, ST_EINVAL, "load %llu is not a merge source (LOAD_BEGIN mode 2)",
			     (unsigned long long)load);
		sd_sess_release(c->srv, x);
		x = NULL;
		goto out;
	}
	if (x && strcmp(x->table, c->table)) {
		rc = sd_fail(c, ST_EINVAL, "load %llu is a merge source for table '%s', not '%s'",
			     (unsigned long long)load, x->table, c->table);
		goto out;
	}
	st_merge_src *ms = x ? x->msrc : NULL;
	if (x)
		x->msrc = NULL; /* st_merge_from frees it */
	rc = ms ? st_merge_from(c->srv->s, c->table, ms, src, &o, &r, &err)
		: st_merge(c->srv->s, c->table, src, &o, &r, &err);
	if (rc != ST_OK) {
		rc = sd_fail_err(c, rc, &err);
		goto out;
	}
	pack_dml_reply(c, WIRE_MERGE_R_NKEYS, &r, r.rows_updated);
	msgpack_packer *pk = &c->out.pk;
	wire_key_u64(pk, WIRE_MERGE_R_DELETED, r.rows_deleted);
	wire_key_u64(pk, WIRE_MERGE_R_INSERTED, r.rows_inserted);
out:
	if (x)
		sd_sess_end(c->srv, x);
	free(src);
	free(on);
	free(app);
	free(set);
	return rc;
}

static int h_optimize(struct sd_ctx *c)
{
	struct st_err err;
	struct st_optimize_result r;
	struct st_optimize_opts o = {0};
	char *where = NULL, *cluster = NULL;
	int rc;
	if ((rc = sd_need_table(c, WIRE_OPTIMIZE_Q_TABLE)) ||
	    (rc = sd_opt_strdup(c, WIRE_OPTIMIZE_Q_WHERE, "where", &where)) ||
	    (rc = sd_opt_u64(c, WIRE_OPTIMIZE_Q_TARGET, "target_size", &o.target_size)) ||
	    (rc = sd_opt_strdup(c, WIRE_OPTIMIZE_Q_CLUSTER_BY, "cluster_by", &cluster)))
		goto out;
	o.where = where;
	o.cluster_by = cluster;
	sd_log(SD_LOG_INFO, "optimize of table '%s' started", c->table);
	if ((rc = st_optimize(c->srv->s, c->table, &o, &r, &err)) != ST_OK) {
		rc = sd_fail_err(c, rc, &err);
		goto out;
	}
	sd_log(SD_LOG_INFO, "optimize of table '%s': %llu files (%llu bytes) into %llu (%llu bytes)%s",
	       c->table, (unsigned long long)r.files_removed, (unsigned long long)r.bytes_removed,
	       (unsigned long long)r.files_added, (unsigned long long)r.bytes_added,
	       r.commit.noop ? ": nothing to do" : "");
	msgpack_packer *pk = &c->out.pk;
	sd_begin(c, WIRE_OPTIMIZE_R_NKEYS);
	sd_pack_result(c, &r.commit);
	wire_key_u64(pk, WIRE_OPTIMIZE_R_FILES_REMOVED, r.files_removed);
	wire_key_u64(pk, WIRE_OPTIMIZE_R_FILES_ADDED, r.files_added);
	wire_key_u64(pk, WIRE_OPTIMIZE_R_BYTES_REMOVED, r.bytes_removed);
	wire_key_u64(pk, WIRE_OPTIMIZE_R_BYTES_ADDED, r.bytes_added);
	wire_key_u64(pk, WIRE_OPTIMIZE_R_ROWS, r.rows);
	wire_key_u64(pk, WIRE_OPTIMIZE_R_PURGED, r.rows_purged);
out:
	free(where);
	free(cluster);
	return rc;
}

/* ---- dispatch ------------------------------------------------------------ */

static const struct {
	int type;
	int (*fn)(struct sd_ctx *c);
} handlers[] = {
	{WIRE_HELLO, h_hello},           {WIRE_PING, h_ping},
	{WIRE_STATUS, h_status},         {WIRE_CREATE, h_create},
	{WIRE_TABLES, h_tables},         {WIRE_DESCRIBE, h_describe},
	{WIRE_DROP, h_drop},             {WIRE_ALTER, h_alter},
	{WIRE_WRITE, sd_h_write},        {WIRE_LOAD_BEGIN, sd_h_load_begin},
	{WIRE_LOAD_DATA, sd_h_load_data}, {WIRE_LOAD_COMMIT, sd_h_load_end},
	{WIRE_LOAD_ABORT, sd_h_load_end}, {WIRE_SCAN, sd_h_scan},
	{WIRE_SCAN_NEXT, sd_h_scan_next}, {WIRE_SCAN_CLOSE, sd_h_scan_next},
	{WIRE_QUERY, sd_h_query},        {WIRE_HISTORY, h_history},
	{WIRE_RESTORE, h_restore},       {WIRE_VACUUM, h_vacuum},
	{WIRE_VERIFY, h_verify},         {WIRE_COMPACT, h_compact},
	{WIRE_DELETE, h_dml},            {WIRE_UPDATE, h_dml},
	{WIRE_OPTIMIZE, h_optimize},     {WIRE_MERGE, h_merge},
	{WIRE_SCRUB, sd_h_scrub},        {WIRE_BACKUP, h_backup},
	{WIRE_AUTH_BEGIN, sd_h_auth_begin}, {WIRE_AUTH, sd_h_auth},
	{WIRE_CLUSTER_STATUS, sd_h_cluster_status},
	{WIRE_CLUSTER_TRANSFER, sd_h_cluster_transfer},
	{WIRE_CLUSTER_MEMBER, sd_h_cluster_member},
};

void sd_dispatch(struct sd_ctx *c)
{
	struct st_err err;
	int (*fn)(struct sd_ctx *c) = NULL;
	int rc = ST_OK;
	c->table[0] = '\0';
	wire_error_set(&c->e, ST_OK, "");
	for (size_t i = 0; i < sizeof handlers / sizeof handlers[0]; i++)
		if (handlers[i].type == c->m.type)
			fn = handlers[i].fn;
	/* A body may be absent when empty (§2): handlers read a NULL body as
	 * an empty map, so required keys are reported by name. */
	if (c->m.version > WIRE_VERSION)
		rc = sd_fail(c, ST_EVERSION, "this stratad speaks protocol version %d; the request "
			     "uses version %u", WIRE_VERSION, c->m.version);
	else if (!fn)
		rc = sd_fail(c, ST_EPROTO, "unknown request type %d", c->m.type);
	else if ((rc = sd_gate(c)) == ST_OK)
		rc = fn(c);
	if (rc == ST_OK && (rc = wire_end(&c->out, &err)) != ST_OK) {
		sd_log(SD_LOG_ERROR, "%s reply: %s", wire_type_name(c->m.type), err.msg);
		rc = rc == ST_ENOMEM ? sd_fail(c, rc, "out of memory building the reply")
				     : sd_fail(c, rc, "internal error building the %s reply: %s",
					       wire_type_name(c->m.type), err.msg);
	}
	if (rc != ST_OK) {
		sd_gate_leader(c);
		wire_out_reset(&c->out);
		if (!c->e.table[0])
			snprintf(c->e.table, sizeof c->e.table, "%s", c->table);
		wire_error_reply(&c->out, c->m.id, c->m.type, &c->e);
	}
}
