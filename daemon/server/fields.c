/*
 * daemon/server/fields.c — reading the fields of a request body
 * (PROTOCOL.md §2-§3) on top of format/wire.h's wire_field_* getters.
 *
 * The rule of §2: an unknown key is ignored; a key of the wrong type is
 * ST_EPROTO naming it; an absent required key is ST_EPROTO naming it; an
 * absent optional key takes its default. Every error is set in the
 * request's context (sd_fail) and returned.
 * Threading: only the calling worker's context is touched.
 */
#include <stdlib.h>
#include <string.h>

#include "daemon/server/server_int.h"

static const char *in(const struct sd_ctx *c)
{
	return wire_type_name(c->m.type);
}

/* Turn a wire_field_* result into ST_OK or an error set in c. */
static int got(struct sd_ctx *c, int rc, const struct st_err *err, bool need, uint32_t key,
	       const char *name, const char *want)
{
	if (rc < 0)
		return sd_fail_err(c, rc, err);
	if (rc == 0 && need)
		return sd_fail(c, ST_EPROTO, "%s needs key %u (%s), a%s %s", in(c), key, name,
			       !strcmp(want, "array") ? "n" : "", want);
	return ST_OK;
}

int sd_opt_u64(struct sd_ctx *c, uint32_t key, const char *name, uint64_t *v)
{
	struct st_err err;
	return got(c, wire_field_u64(c->m.body, in(c), key, name, v, &err), &err, false, key, name,
		   "uint");
}

int sd_need_u64(struct sd_ctx *c, uint32_t key, const char *name, uint64_t *v)
{
	struct st_err err;
	return got(c, wire_field_u64(c->m.body, in(c), key, name, v, &err), &err, true, key, name,
		   "uint");
}

int sd_opt_i64(struct sd_ctx *c, uint32_t key, const char *name, int64_t *v)
{
	struct st_err err;
	return got(c, wire_field_i64(c->m.body, in(c), key, name, v, &err), &err, false, key, name,
		   "int");
}

int sd_opt_bool(struct sd_ctx *c, uint32_t key, const char *name, bool *v)
{
	struct st_err err;
	return got(c, wire_field_bool(c->m.body, in(c), key, name, v, &err), &err, false, key, name,
		   "bool");
}

int sd_opt_strbuf(struct sd_ctx *c, uint32_t key, const char *name, char *buf, size_t len)
{
	struct st_err err;
	return got(c, wire_field_strbuf(c->m.body, in(c), key, name, buf, len, &err), &err, false,
		   key, name, "str");
}

int sd_opt_strdup(struct sd_ctx *c, uint32_t key, const char *name, char **s)
{
	struct st_err err;
	const char *p = NULL;
	uint32_t n = 0;
	int rc = got(c, wire_field_str(c->m.body, in(c), key, name, &p, &n, &err), &err, false, key,
		     name, "str");
	*s = NULL;
	if (rc != ST_OK || !p)
		return rc;
	if (memchr(p, 0, n))
		return sd_fail(c, ST_EINVAL, "key %u (%s) of %s holds a NUL byte", key, name, in(c));
	if (!(*s = malloc((size_t)n + 1)))
		return sd_fail(c, ST_ENOMEM, "out of memory");
	memcpy(*s, p, n);
	(*s)[n] = '\0';
	return ST_OK;
}

int sd_need_table(struct sd_ctx *c, uint32_t key)
{
	struct st_err err;
	int rc = got(c, wire_field_strbuf(c->m.body, in(c), key, "table", c->table, sizeof c->table,
					  &err), &err, true, key, "table", "str");
	if (rc == ST_OK && !c->table[0])
		rc = sd_fail(c, ST_EINVAL, "key %u (table) of %s is empty: name a table", key, in(c));
	return rc;
}

int sd_opt_array(struct sd_ctx *c, uint32_t key, const char *name, const msgpack_object **o)
{
	struct st_err err;
	return got(c, wire_field_array(c->m.body, in(c), key, name, o, &err), &err, false, key, name,
		   "array");
}

int sd_need_array(struct sd_ctx *c, uint32_t key, const char *name, const msgpack_object **o)
{
	struct st_err err;
	return got(c, wire_field_array(c->m.body, in(c), key, name, o, &err), &err, true, key, name,
		   "array");
}

int sd_opt_map(struct sd_ctx *c, uint32_t key, const char *name, const msgpack_object **o)
{
	struct st_err err;
	return got(c, wire_field_map(c->m.body, in(c), key, name, o, &err), &err, false, key, name,
		   "map");
}

int sd_need_map(struct sd_ctx *c, uint32_t key, const char *name, const msgpack_object **o)
{
	struct st_err err;
	return got(c, wire_field_map(c->m.body, in(c), key, name, o, &err), &err, true, key, name,
		   "map");
}

int sd_get_at(struct sd_ctx *c, uint32_t key, const char *name, bool required, struct st_at *at)
{
	struct st_err err;
	const msgpack_object *o = NULL;
	char where[96];
	uint64_t kind = WIRE_AT_LATEST;
	int64_t v = 0;
	int rc;
	*at = (struct st_at){ST_AT_LATEST, 0};
	if ((rc = required ? sd_need_map(c, key, name, &o) : sd_opt_map(c, key, name, &o)) || !o)
		goto out;
	snprintf(where, sizeof where, "key %u (%s) of %s", key, name, in(c));
	if ((rc = wire_field_u64(o, where, WIRE_AT_KIND, "kind", &kind, &err)) < 0 ||
	    (rc = wire_field_i64(o, where, WIRE_AT_VALUE, "value", &v, &err)) < 0) {
		rc = sd_fail_err(c, rc, &err);
		goto out;
	}
	rc = ST_OK;
	switch (kind) {
	case WIRE_AT_LATEST: at->kind = ST_AT_LATEST; break;
	case WIRE_AT_VERSION: at->kind = ST_AT_VERSION; break;
	case WIRE_AT_TIME: at->kind = ST_AT_TIME; break;
	case WIRE_AT_LSN: at->kind = ST_AT_LSN; break;
	default:
		rc = sd_fail(c, ST_EINVAL, "%s: kind %llu is not 0 (latest), 1 (version), 2 (time) or "
			     "3 (LSN)", where, (unsigned long long)kind);
		goto out;
	}
	if (kind != WIRE_AT_LATEST && !wire_get(o, WIRE_AT_VALUE))
		rc = sd_fail(c, ST_EPROTO, "%s needs key %u (value)", where, WIRE_AT_VALUE);
	at->value = v;
out:
	return rc;
}

int sd_get_strs(struct sd_ctx *c, uint32_t key, const char *name, char ***out, uint32_t *n)
{
	const msgpack_object *o = NULL;
	char **v = NULL;
	size_t bytes = 0;
	int rc;
	*out = NULL;
	*n = 0;
	if ((rc = sd_opt_array(c, key, name, &o)) || !o)
		goto out;
	uint32_t cnt = o->via.array.size;
	if (cnt > ST_MAX_COLUMNS) {
		rc = sd_fail(c, ST_ETOOBIG, "key %u (%s) of %s has %u names; at most %d", key, name,
			     in(c), cnt, ST_MAX_COLUMNS);
		goto out;
	}
	for (uint32_t i = 0; i < cnt; i++) {
		const msgpack_object *s = &o->via.array.ptr[i];
		if (s->type != MSGPACK_OBJECT_STR || (s->via.str.size &&
						      memchr(s->via.str.ptr, 0, s->via.str.size))) {
			rc = sd_fail(c, ST_EPROTO, "key %u (%s) of %s: element %u is a%s %s, expected "
				     "str (without NUL bytes)", key, name, in(c), i,
				     s->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ||
				     s->type == MSGPACK_OBJECT_ARRAY || s->type == MSGPACK_OBJECT_EXT
				     ? "n" : "", wire_obj_type_name(s));
			goto out;
		}
		bytes += s->via.str.size + 1;
	}
	if (!(v = malloc((cnt + 1) * sizeof *v + bytes + 1))) {
		rc = sd_fail(c, ST_ENOMEM, "out of memory");
		goto out;
	}
	char *p = (char *)(v + cnt + 1);
	for (uint32_t i = 0; i < cnt; i++) {
		const msgpack_object *s = &o->via.array.ptr[i];
		v[i] = p;
		if (s->via.str.size)
			memcpy(p, s->via.str.ptr, s->via.str.size);
		p[s->via.str.size] = '\0';
		p += s->via.str.size + 1;
	}
	v[cnt] = NULL;
	*out = v;
	*n = cnt;
	v = NULL;
out:
	free(v);
	return rc;
}

int sd_get_write_opts(struct sd_ctx *c, uint32_t key, struct st_write_opts *w, char *pred,
		      size_t plen, char *app, size_t alen, bool *source)
{
	struct st_err err;
	const msgpack_object *o = NULL;
	char where[96];
	uint64_t mode = WIRE_WRITE_APPEND;
	int rc;
	memset(w, 0, sizeof *w);
	pred[0] = app[0] = '\0';
	if (source)
		*source = false;
	if ((rc = sd_opt_map(c, key, "write options", &o)) || !o)
		goto out;
	snprintf(where, sizeof where, "write options (key %u) of %s", key, in(c));
	if ((rc = wire_field_u64(o, where, WIRE_WOPT_MODE, "mode", &mode, &err)) < 0 ||
	    (rc = wire_field_bool(o, where, WIRE_WOPT_MERGE_SCHEMA, "merge_schema",
				  &w->merge_schema, &err)) < 0 ||
	    (rc = wire_field_bool(o, where, WIRE_WOPT_OVERWRITE_SCHEMA, "overwrite_schema",
				  &w->overwrite_schema, &err)) < 0 ||
	    (rc = wire_field_strbuf(o, where, WIRE_WOPT_REPLACE_WHERE, "replace_where", pred, plen,
				    &err)) < 0 ||
	    (rc = wire_field_strbuf(o, where, WIRE_WOPT_APP_ID, "app_id", app, alen, &err)) < 0 ||
	    (rc = wire_field_u64(o, where, WIRE_WOPT_APP_VERSION, "app_version", &w->app_version,
				 &err)) < 0) {
		rc = sd_fail_err(c, rc, &err);
		goto out;
	}
	rc = ST_OK;
	switch (mode) {
	case WIRE_WRITE_APPEND: w->mode = ST_WRITE_APPEND; break;
	case WIRE_WRITE_OVERWRITE: w->mode = ST_WRITE_OVERWRITE; break;
	case WIRE_WRITE_MERGE_SOURCE:
		if (source && !w->merge_schema && !w->overwrite_schema && !pred[0] && !app[0]) {
			*source = true;
			break;
		}
		rc = sd_fail(c, ST_EINVAL, "%s: mode 2 (a merge source) %s", where,
			     source ? "takes no other write option" : "is for LOAD_BEGIN only");
		goto out;
	default:
		rc = sd_fail(c, ST_EINVAL, "%s: mode %llu is not 0 (append), 1 (overwrite)%s", where,
			     (unsigned long long)mode, source ? " or 2 (a merge source)" : "");
		goto out;
	}
	w->replace_where = pred[0] ? pred : NULL;
	w->app_id = app[0] ? app : NULL;
out:
	return rc;
}

int sd_get_batch(struct sd_ctx *c, uint32_t key, const char *name, struct wire_batch *b,
		 struct st_batch *sb)
{
	struct st_err err;
	const msgpack_object *o = NULL;
	int rc;
	if ((rc = sd_need_map(c, key, name, &o)))
		goto out;
	if ((rc = wire_batch_decode(o, c->srv->o.max_batch_rows, b, &err)) != ST_OK) {
		rc = sd_fail_err(c, rc, &err);
		goto out;
	}
	*sb = (struct st_batch){b->ncols, (const char *const *)b->names, b->cols, b->nrows};
out:
	return rc;
}

int sd_opt_hash(struct sd_ctx *c, uint32_t key, const char *name, uint8_t out[ST_HASH_LEN],
		bool *present)
{
	const msgpack_object *o = wire_get(c->m.body, key);
	*present = false;
	if (!o)
		return ST_OK;
	if (o->type != MSGPACK_OBJECT_BIN || o->via.bin.size != ST_HASH_LEN)
		return sd_fail(c, ST_EPROTO, "key %u (%s) of %s is not a chain hash: a bin of %d bytes "
			       "expected", key, name, in(c), ST_HASH_LEN);
	memcpy(out, o->via.bin.ptr, ST_HASH_LEN);
	*present = true;
	return ST_OK;
}
