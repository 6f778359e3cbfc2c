/*
 * format/wire.c — the wire protocol's msgpack encoding (PROTOCOL.md).
 */
#include "format/wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Batches carry vectors as little-endian bytes and are used in place. */
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "format/wire.c assumes a little-endian host"
#endif

static const struct {
	int type;
	const char *name;
	bool changes;
} types[] = {
	{WIRE_HELLO, "HELLO", false},       {WIRE_PING, "PING", false},
	{WIRE_STATUS, "STATUS", false},     {WIRE_CREATE, "CREATE", true},
	{WIRE_AUTH_BEGIN, "AUTH_BEGIN", false}, {WIRE_AUTH, "AUTH", false},
	{WIRE_TABLES, "TABLES", false},     {WIRE_DESCRIBE, "DESCRIBE", false},
	{WIRE_DROP, "DROP", true},          {WIRE_ALTER, "ALTER", true},
	{WIRE_WRITE, "WRITE", true},        {WIRE_LOAD_BEGIN, "LOAD_BEGIN", true},
	{WIRE_LOAD_DATA, "LOAD_DATA", true}, {WIRE_LOAD_COMMIT, "LOAD_COMMIT", true},
	{WIRE_LOAD_ABORT, "LOAD_ABORT", false}, {WIRE_DELETE, "DELETE", true},
	{WIRE_UPDATE, "UPDATE", true},      {WIRE_MERGE, "MERGE", true}, {WIRE_SCAN, "SCAN", false},
	{WIRE_SCAN_NEXT, "SCAN_NEXT", false}, {WIRE_SCAN_CLOSE, "SCAN_CLOSE", false},
	{WIRE_QUERY, "QUERY", false},       {WIRE_HISTORY, "HISTORY", false},
	{WIRE_RESTORE, "RESTORE", true},    {WIRE_VACUUM, "VACUUM", true},
	{WIRE_VERIFY, "VERIFY", false},     {WIRE_COMPACT, "COMPACT", true},
	{WIRE_OPTIMIZE, "OPTIMIZE", true},
	{WIRE_SCRUB, "SCRUB", false},       {WIRE_BACKUP, "BACKUP", false},
	{WIRE_CLUSTER_STATUS, "CLUSTER_STATUS", false},
	{WIRE_CLUSTER_TRANSFER, "CLUSTER_TRANSFER", true},
	{WIRE_CLUSTER_MEMBER, "CLUSTER_MEMBER", true},
};

const char *wire_type_name(int type)
{
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
		if (types[i].type == type)
			return types[i].name;
	return "?";
}

bool wire_changes_state(int type)
{
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
		if (types[i].type == type)
			return types[i].changes;
	return false;
}

/* ---- writing ---------------------------------------------------------- */

static int buf_write(void *data, const char *p, size_t n)
{
	st_buf_append(data, p, n);
	return 0;
}

void wire_out_init(struct wire_out *o)
{
	memset(o, 0, sizeof *o);
	msgpack_packer_init(&o->pk, &o->buf, buf_write);
}

void wire_out_reset(struct wire_out *o)
{
	o->buf.len = 0;
	o->buf.oom = false;
	memset(&o->env, 0, sizeof o->env);
}

void wire_out_fini(struct wire_out *o)
{
	st_buf_free(&o->buf);
}

void wire_pack_strn(msgpack_packer *pk, const char *s, size_t n)
{
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

void wire_pack_str(msgpack_packer *pk, const char *s)
{
	wire_pack_strn(pk, s ? s : "", s ? strlen(s) : 0);
}

void wire_key_u64(msgpack_packer *pk, uint32_t key, uint64_t v)
{
	msgpack_pack_uint32(pk, key);
	msgpack_pack_uint64(pk, v);
}

void wire_key_i64(msgpack_packer *pk, uint32_t key, int64_t v)
{
	msgpack_pack_uint32(pk, key);
	msgpack_pack_int64(pk, v);
}

void wire_key_str(msgpack_packer *pk, uint32_t key, const char *s)
{
	msgpack_pack_uint32(pk, key);
	wire_pack_str(pk, s);
}

void wire_key_bool(msgpack_packer *pk, uint32_t key, bool v)
{
	msgpack_pack_uint32(pk, key);
	v ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
}

void wire_key_bin(msgpack_packer *pk, uint32_t key, const void *p, size_t len)
{
	msgpack_pack_uint32(pk, key);
	msgpack_pack_bin(pk, len);
	msgpack_pack_bin_body(pk, p, len);
}

void wire_begin(struct wire_out *o, uint64_t id, int type, const uint8_t *client, uint64_t seq,
		uint32_t nbody)
{
	msgpack_packer *pk = &o->pk;
	const struct wire_env_opts *e = &o->env;
	msgpack_pack_map(pk, 4 + (client ? 2 : 0) + !!e->durability + e->has_min_version +
				     e->has_max_staleness + !!e->consistency + 3 * e->served);
	wire_key_u64(pk, WIRE_ENV_VERSION, WIRE_VERSION);
	wire_key_u64(pk, WIRE_ENV_ID, id);
	wire_key_u64(pk, WIRE_ENV_TYPE, (uint64_t)type);
	if (e->durability)
		wire_key_u64(pk, WIRE_ENV_DURABILITY, e->durability);
	if (e->has_min_version)
		wire_key_u64(pk, WIRE_ENV_MIN_VERSION, e->min_version);
	if (e->has_max_staleness)
		wire_key_u64(pk, WIRE_ENV_MAX_STALENESS, e->max_staleness);
	if (e->consistency)
		wire_key_u64(pk, WIRE_ENV_CONSISTENCY, e->consistency);
	if (e->served) {
		wire_key_u64(pk, WIRE_ENV_SERVED_BY, e->served_by);
		wire_key_u64(pk, WIRE_ENV_READ_LSN, e->read_lsn);
		wire_key_u64(pk, WIRE_ENV_STALENESS, e->staleness);
	}
	if (client) {
		msgpack_pack_uint32(pk, WIRE_ENV_CLIENT);
		msgpack_pack_bin(pk, WIRE_CLIENT_ID_LEN);
		msgpack_pack_bin_body(pk, client, WIRE_CLIENT_ID_LEN);
		wire_key_u64(pk, WIRE_ENV_SEQ, seq);
	}
	msgpack_pack_uint32(pk, WIRE_ENV_BODY);
	msgpack_pack_map(pk, nbody);
}

void wire_error_reply(struct wire_out *o, uint64_t id, int type, const struct wire_error *e)
{
	msgpack_packer *pk = &o->pk;
	uint32_t n = 2 + !!e->table[0] + !!e->column[0] + (e->row >= 0) + (e->offset >= 0) +
		     !!e->token[0] + !!e->leader[0] + !!e->leader_id;
	msgpack_pack_map(pk, 4);
	wire_key_u64(pk, WIRE_ENV_VERSION, WIRE_VERSION);
	wire_key_u64(pk, WIRE_ENV_ID, id);
	wire_key_u64(pk, WIRE_ENV_TYPE, (uint64_t)type);
	msgpack_pack_uint32(pk, WIRE_ENV_ERROR);
	msgpack_pack_map(pk, n);
	wire_key_i64(pk, WIRE_ERR_CODE, e->code);
	wire_key_str(pk, WIRE_ERR_MSG, e->msg);
	if (e->table[0])
		wire_key_str(pk, WIRE_ERR_TABLE, e->table);
	if (e->column[0])
		wire_key_str(pk, WIRE_ERR_COLUMN, e->column);
	if (e->row >= 0)
		wire_key_u64(pk, WIRE_ERR_ROW, (uint64_t)e->row);
	if (e->offset >= 0)
		wire_key_u64(pk, WIRE_ERR_OFFSET, (uint64_t)e->offset);
	if (e->token[0])
		wire_key_str(pk, WIRE_ERR_TOKEN, e->token);
	if (e->leader[0])
		wire_key_str(pk, WIRE_ERR_LEADER, e->leader);
	if (e->leader_id)
		wire_key_u64(pk, WIRE_ERR_LEADER_ID, e->leader_id);
}

static bool has_nulls(const struct st_vec *v, const uint32_t *sel, uint32_t nsel)
{
	if (!v->validity)
		return false;
	for (uint32_t i = 0; i < nsel; i++)
		if (!st_vec_is_valid(v, sel ? sel[i] : i))
			return true;
	return false;
}

static uint64_t varlen_bytes(const struct st_vec *v, const uint32_t *sel, uint32_t nsel)
{
	uint64_t n = 0;
	if (!nsel)
		return 0; /* a header batch of no rows may have no offsets */
	if (!sel && !v->dict)
		return v->offsets[nsel] - v->offsets[0];
	for (uint32_t i = 0; i < nsel; i++) {
		const uint8_t *p;
		uint32_t len;
		st_vec_str(v, sel ? sel[i] : i, &p, &len);
		n += len;
	}
	return n;
}

size_t wire_batch_bytes(uint32_t ncols, const char *const *names, const struct st_vec *cols,
			const uint32_t *sel, uint32_t nsel)
{
	size_t n = 16;
	for (uint32_t c = 0; c < ncols; c++) {
		const struct st_vec *v = &cols[c];
		n += 32 + strlen(names[c]) + (nsel + 7) / 8;
		if (st_type_is_varlen(v->type))
			n += 4 * ((size_t)nsel + 1) + varlen_bytes(v, sel, nsel);
		else
			n += st_type_width(v->type) * (size_t)nsel;
	}
	return n;
}

/* Pack a bin header of n bytes and return room for them in the buffer. */
static uint8_t *bin_room(struct wire_out *o, size_t n)
{
	msgpack_pack_bin(&o->pk, n);
	uint8_t *p = st_buf_reserve(&o->buf, n);
	if (p)
		o->buf.len += n;
	return p;
}

void wire_pack_batch(struct wire_out *o, uint32_t ncols, const char *const *names,
		     const struct st_vec *cols, const uint32_t *sel, uint32_t nsel)
{
	msgpack_packer *pk = &o->pk;
	msgpack_pack_map(pk, 2);
	wire_key_u64(pk, WIRE_BATCH_ROWS, nsel);
	msgpack_pack_uint32(pk, WIRE_BATCH_COLUMNS);
	msgpack_pack_array(pk, ncols);
	for (uint32_t c = 0; c < ncols; c++) {
		const struct st_vec *v = &cols[c];
		bool nulls = has_nulls(v, sel, nsel), varlen = st_type_is_varlen(v->type);
		msgpack_pack_map(pk, 3 + nulls + varlen);
		wire_key_str(pk, WIRE_COL_NAME, names[c]);
		wire_key_u64(pk, WIRE_COL_TYPE, v->type);
		if (nulls) {
			msgpack_pack_uint32(pk, WIRE_COL_VALIDITY);
			uint8_t *p = bin_room(o, (nsel + 7) / 8);
			if (p) {
				memset(p, 0, (nsel + 7) / 8);
				for (uint32_t i = 0; i < nsel; i++)
					if (st_vec_is_valid(v, sel ? sel[i] : i))
						p[i >> 3] |= (uint8_t)(1u << (i & 7));
			}
		}
		if (!varlen) {
			size_t w = st_type_width(v->type);
			msgpack_pack_uint32(pk, WIRE_COL_DATA);
			uint8_t *p = bin_room(o, w * nsel);
			if (p && !sel) {
				if (nsel) /* a header batch of no rows may have no data */
					memcpy(p, v->data, w * nsel);
			} else if (p) {
				const uint8_t *d = v->data;
				if (w == 8)
					for (uint32_t i = 0; i < nsel; i++)
						memcpy(p + 8 * (size_t)i, d + 8 * (size_t)sel[i], 8);
				else
					for (uint32_t i = 0; i < nsel; i++)
						memcpy(p + w * i, d + w * sel[i], w);
			}
			continue;
		}
		uint64_t total = varlen_bytes(v, sel, nsel);
		msgpack_pack_uint32(pk, WIRE_COL_OFFSETS);
		uint8_t *off = bin_room(o, 4 * ((size_t)nsel + 1));
		if (off) {
			uint32_t at = 0;
			st_put_le32(off, 0);
			for (uint32_t i = 0; i < nsel; i++) {
				const uint8_t *s;
				uint32_t len;
				st_vec_str(v, sel ? sel[i] : i, &s, &len);
				at += len;
				st_put_le32(off + 4 * ((size_t)i + 1), at);
			}
		}
		msgpack_pack_uint32(pk, WIRE_COL_BYTES);
		uint8_t *p = bin_room(o, total);
		for (uint32_t i = 0; p && i < nsel; i++) {
			const uint8_t *s;
			uint32_t len;
			st_vec_str(v, sel ? sel[i] : i, &s, &len);
			if (len) /* an empty string's bytes may be NULL */
				memcpy(p, s, len);
			p += len;
		}
	}
}

/* ---- reading ---------------------------------------------------------- */

const msgpack_object *wire_get(const msgpack_object *map, uint32_t key)
{
	if (!map || map->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object_kv *kv = &map->via.map.ptr[i];
		if (kv->key.type == MSGPACK_OBJECT_POSITIVE_INTEGER && kv->key.via.u64 == key)
			return &kv->val;
	}
	return NULL;
}

const char *wire_obj_type_name(const msgpack_object *o)
{
	if (!o)
		return "absent";
	switch (o->type) {
	case MSGPACK_OBJECT_NIL: return "nil";
	case MSGPACK_OBJECT_BOOLEAN: return "bool";
	case MSGPACK_OBJECT_POSITIVE_INTEGER: return "uint";
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "int";
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64: return "float";
	case MSGPACK_OBJECT_STR: return "str";
	case MSGPACK_OBJECT_ARRAY: return "array";
	case MSGPACK_OBJECT_MAP: return "map";
	case MSGPACK_OBJECT_BIN: return "bin";
	case MSGPACK_OBJECT_EXT: return "ext";
	}
	return "?";
}

/* The value of key, 0 when absent, or ST_EPROTO unless it is of type t
 * (t2 an alternative, or -1). */
static int field(const msgpack_object *map, const char *in, uint32_t key, const char *name,
		 int t, int t2, const char *want, const msgpack_object **o, struct st_err *err)
{
	*o = wire_get(map, key);
	if (!*o)
		return 0;
	if ((int)(*o)->type != t && (int)(*o)->type != t2)
		return st_seterr(err, ST_EPROTO, "key %u (%s)%s%s is a%s %s, expected %s", key, name,
				 in ? " of " : "", in ? in : "", (*o)->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ||
				 (*o)->type == MSGPACK_OBJECT_ARRAY || (*o)->type == MSGPACK_OBJECT_EXT ? "n" : "",
				 wire_obj_type_name(*o), want);
	return 1;
}

int wire_field_u64(const msgpack_object *map, const char *in, uint32_t key, const char *name,
		   uint64_t *v, struct st_err *err)
{
	const msgpack_object *o;
	int rc = field(map, in, key, name, MSGPACK_OBJECT_POSITIVE_INTEGER, -1, "uint", &o, err);
	if (rc == 1)
		*v = o->via.u64;
	return rc;
}

int wire_field_i64(const msgpack_object *map, const char *in, uint32_t key, const char *name,
		   int64_t *v, struct st_err *err)
{
	const msgpack_object *o;
	int rc = field(map, in, key, name, MSGPACK_OBJECT_POSITIVE_INTEGER,
		       MSGPACK_OBJECT_NEGATIVE_INTEGER, "int", &o, err);
	if (rc == 1 && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 > INT64_MAX)
		return st_seterr(err, ST_EPROTO, "key %u (%s)%s%s is %llu, above the int64 range",
				 key, name, in ? " of " : "", in ? in : "", (unsigned long long)o->via.u64);
	if (rc == 1)
		*v = o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int64_t)o->via.u64 : o->via.i64;
	return rc;
}

int wire_field_bool(const msgpack_object *map, const char *in, uint32_t key, const char *name,
		    bool *v, struct st_err *err)
{
	const msgpack_object *o;
	int rc = field(map, in, key, name, MSGPACK_OBJECT_BOOLEAN, -1, "bool", &o, err);
	if (rc == 1)
		*v = o->via.boolean;
	return rc;
}

int wire_field_str(const msgpack_object *map, const char *in, uint32_t key, const char *name,
		   const char **s, uint32_t *len, struct st_err *err)
{
	const msgpack_object *o;
	int rc = field(map, in, key, name, MSGPACK_OBJECT_STR, -1, "str", &o, err);
	if (rc == 1) {
		*s = o->via.str.size ? o->via.str.ptr : "";
		*len = o->via.str.size;
	}
	return rc;
}

int wire_field_strbuf(const msgpack_object *map, const char *in, uint32_t key, const char *name,
		      char *buf, size_t len, struct st_err *err)
{
	const msgpack_object *o;
	int rc = field(map, in, key, name, MSGPACK_OBJECT_STR, -1, "str", &o, err);
	if (rc != 1)
		return rc;
	if (o->via.str.size >= len)
		return st_seterr(err, ST_EINVAL, "key %u (%s)%s%s is %u bytes long; at most %zu",
				 key, name, in ? " of " : "", in ? in : "", o->via.str.size, len - 1);
	if (!wire_obj_strbuf(o, buf, len))
		return st_seterr(err, ST_EINVAL, "key %u (%s)%s%s holds a NUL byte", key, name,
					 in ? " of " : "", in ? in : "");
	return 1;
}

int wire_field_map(const msgpack_object *map, const char *in, uint32_t key, const char *name,
		   const msgpack_object **o, struct st_err *err)
{
	return field(map, in, key, name, MSGPACK_OBJECT_MAP, -1, "map", o, err);
}

int wire_field_array(const msgpack_object *map, const char *in, uint32_t key, const char *name,
		     const msgpack_object **o, struct st_err *err)
{
	return field(map, in, key, name, MSGPACK_OBJECT_ARRAY, -1, "array", o, err);
}

/* Integers of the envelope, batches and error maps, where a wrong type is
 * refused the same as an absent key (the caller's error says which). */
static bool get_u64(const msgpack_object *map, uint32_t key, uint64_t *v)
{
	const msgpack_object *o = wire_get(map, key);
	if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return false;
	*v = o->via.u64;
	return true;
}

static bool get_i64(const msgpack_object *map, uint32_t key, int64_t *v)
{
	const msgpack_object *o = wire_get(map, key);
	if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
		*v = (int64_t)o->via.u64;
		return true;
	}
	if (o && o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
		*v = o->via.i64;
		return true;
	}
	return false;
}

bool wire_obj_strbuf(const msgpack_object *o, char *buf, size_t len)
{
	/* msgpack-c leaves ptr NULL for an empty string: no memchr/memcpy then. */
	if (!o || o->type != MSGPACK_OBJECT_STR || o->via.str.size >= len ||
	    (o->via.str.size && memchr(o->via.str.ptr, 0, o->via.str.size)))
		return false;
	if (o->via.str.size)
		memcpy(buf, o->via.str.ptr, o->via.str.size);
	buf[o->via.str.size] = '\0';
	return true;
}

/* A string value as a malloc'ed NUL-terminated copy, or NULL when o is
 * not a string, holds a NUL byte, or memory ran out. */
static char *obj_strdup(const msgpack_object *o)
{
	if (!o || o->type != MSGPACK_OBJECT_STR ||
	    (o->via.str.size && memchr(o->via.str.ptr, 0, o->via.str.size)))
		return NULL;
	char *s = malloc(o->via.str.size + 1);
	if (s) {
		if (o->via.str.size)
			memcpy(s, o->via.str.ptr, o->via.str.size);
		s[o->via.str.size] = '\0';
	}
	return s;
}

/*
 * Walk the msgpack value in buf without building it: every declared
 * length and element count must fit in the bytes that remain (each element
 * takes at least one byte), and the value may hold at most
 * WIRE_MAX_OBJECTS objects. msgpack-c allocates a container's elements
 * from its declared count before reading them, so without this a 6-byte
 * message declaring 2^32 elements makes it ask for 100 GB. After the walk,
 * what msgpack-c allocates is bounded by the message's size.
 */
bool wire_walk(const uint8_t *p, size_t len, size_t *end)
{
	size_t off = 0, pending = 1, objects = 0;
	while (pending > 0) {
		if (off >= len || ++objects > WIRE_MAX_OBJECTS)
			return false;
		uint8_t b = p[off++];
		pending--;
		uint64_t n = 0, skip = 0; /* elements to add, bytes to skip */
		size_t lenb = 0;          /* bytes of a big-endian length that follows */
		if (b <= 0x7f || b >= 0xe0 || (b >= 0xc0 && b <= 0xc3 && b != 0xc1)) {
			continue; /* fixint, nil, bool */
		} else if (b <= 0x8f) {
			n = 2u * (b & 0x0f);
		} else if (b <= 0x9f) {
			n = b & 0x0f;
		} else if (b <= 0xbf) {
			skip = b & 0x1f;
		} else {
			switch (b) {
			case 0xc4: case 0xd9: lenb = 1; break;            /* bin8, str8 */
			case 0xc5: case 0xda: lenb = 2; break;            /* bin16, str16 */
			case 0xc6: case 0xdb: lenb = 4; break;            /* bin32, str32 */
			case 0xc7: lenb = 1; skip = 1; break;             /* ext8 (+type) */
			case 0xc8: lenb = 2; skip = 1; break;             /* ext16 */
			case 0xc9: lenb = 4; skip = 1; break;             /* ext32 */
			case 0xca: skip = 4; break;                       /* float32 */
			case 0xcb: skip = 8; break;                       /* float64 */
			case 0xcc: case 0xd0: skip = 1; break;
			case 0xcd: case 0xd1: skip = 2; break;
			case 0xce: case 0xd2: skip = 4; break;
			case 0xcf: case 0xd3: skip = 8; break;
			case 0xd4: skip = 2; break;                       /* fixext1 */
			case 0xd5: skip = 3; break;
			case 0xd6: skip = 5; break;
			case 0xd7: skip = 9; break;
			case 0xd8: skip = 17; break;
			case 0xdc: case 0xde: lenb = 2; break;            /* array16, map16 */
			case 0xdd: case 0xdf: lenb = 4; break;            /* array32, map32 */
			default: return false;                            /* 0xc1: never used */
			}
		}
		if (lenb) {
			if (len - off < lenb)
				return false;
			uint64_t x = 0;
			for (size_t i = 0; i < lenb; i++)
				x = x << 8 | p[off + i];
			off += lenb;
			if (b >= 0xdc && b <= 0xdf)
				n = b == 0xde || b == 0xdf ? 2 * x : x;
			else
				skip += x;
		}
		if (skip > len - off || n > len - off)
			return false;
		off += skip;
		pending += n;
		if (pending > len - off + 1)
			return false;
	}
	*end = off;
	return true;
}

static bool precheck(const uint8_t *p, size_t len)
{
	size_t end;
	return wire_walk(p, len, &end);
}

int wire_end(struct wire_out *o, struct st_err *err)
{
	size_t end = 0;
	if (o->buf.oom)
		return st_seterr(err, ST_ENOMEM, "out of memory building a message");
	if (!wire_walk(o->buf.data, o->buf.len, &end))
		return st_seterr(err, ST_EINVAL, "message of %zu bytes is incomplete: a map or "
				 "array got fewer pairs or elements than it announced (a bug)",
				 o->buf.len);
	if (end != o->buf.len)
		return st_seterr(err, ST_EINVAL, "message has %zu bytes after its msgpack value: a "
				 "map or array got more pairs or elements than it announced (a bug)",
				 o->buf.len - end);
	return ST_OK;
}

int wire_parse(const void *buf, size_t len, struct wire_msg *m, struct st_err *err)
{
	size_t off = 0;
	uint64_t v;
	memset(m, 0, sizeof *m);
	msgpack_unpacked_init(&m->up);
	if (!precheck(buf, len))
		return st_seterr(err, ST_EPROTO, "message of %zu bytes is not msgpack (or declares "
			       "more elements than it holds)", len);
	if (msgpack_unpack_next(&m->up, buf, len, &off) != MSGPACK_UNPACK_SUCCESS)
		return st_seterr(err, ST_EPROTO, "message of %zu bytes is not msgpack", len);
	if (off != len)
		return st_seterr(err, ST_EPROTO, "message has %zu bytes after its msgpack value",
				 len - off);
	const msgpack_object *root = &m->up.data;
	if (root->type != MSGPACK_OBJECT_MAP)
		return st_seterr(err, ST_EPROTO, "message is not a msgpack map");
	if (!get_u64(root, WIRE_ENV_VERSION, &v) || v > UINT32_MAX)
		return st_seterr(err, ST_EPROTO, "message has no protocol version (key 0)");
	m->version = (uint32_t)v;
	if (!get_u64(root, WIRE_ENV_ID, &m->id))
		return st_seterr(err, ST_EPROTO, "message has no request id (key 1)");
	if (!get_u64(root, WIRE_ENV_TYPE, &v) || v > 0xffff)
		return st_seterr(err, ST_EPROTO, "message has no request type (key 2)");
	m->type = (int)v;
	m->body = wire_get(root, WIRE_ENV_BODY);
	if (m->body && m->body->type != MSGPACK_OBJECT_MAP)
		return st_seterr(err, ST_EPROTO, "message body (key 3) is not a map");
	m->error = wire_get(root, WIRE_ENV_ERROR);
	if (m->error && m->error->type != MSGPACK_OBJECT_MAP)
		return st_seterr(err, ST_EPROTO, "message error (key 4) is not a map");
	const msgpack_object *c = wire_get(root, WIRE_ENV_CLIENT);
	if (c) {
		if (c->type != MSGPACK_OBJECT_BIN || c->via.bin.size != WIRE_CLIENT_ID_LEN ||
		    !get_u64(root, WIRE_ENV_SEQ, &m->seq))
			return st_seterr(err, ST_EPROTO,
					 "message client id (key 5) must be 16 bytes with a sequence "
					 "number (key 6)");
		memcpy(m->client, c->via.bin.ptr, WIRE_CLIENT_ID_LEN);
		m->has_client = true;
	}
	struct wire_env_opts *e = &m->env;
	if (get_u64(root, WIRE_ENV_DURABILITY, &v))
		e->durability = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
	e->has_min_version = get_u64(root, WIRE_ENV_MIN_VERSION, &e->min_version);
	e->has_max_staleness = get_u64(root, WIRE_ENV_MAX_STALENESS, &e->max_staleness);
	if (get_u64(root, WIRE_ENV_CONSISTENCY, &v))
		e->consistency = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
	e->served = get_u64(root, WIRE_ENV_SERVED_BY, &e->served_by);
	if (e->served) {
		get_u64(root, WIRE_ENV_READ_LSN, &e->read_lsn);
		get_u64(root, WIRE_ENV_STALENESS, &e->staleness);
	}
	return ST_OK;
}

void wire_msg_fini(struct wire_msg *m)
{
	msgpack_unpacked_destroy(&m->up);
}

void wire_error_set(struct wire_error *e, int code, const char *msg)
{
	memset(e, 0, sizeof *e);
	e->code = code;
	e->row = e->offset = -1;
	e->leader[0] = 0;
	e->leader_id = 0;
	snprintf(e->msg, sizeof e->msg, "%s", msg ? msg : st_strerror(code));
}

void wire_error_decode(const msgpack_object *m, struct wire_error *e)
{
	int64_t code = ST_EPROTO, v;
	get_i64(m, WIRE_ERR_CODE, &code);
	if (code < INT32_MIN || code > INT32_MAX)
		code = ST_EPROTO;
	wire_error_set(e, (int)code, NULL);
	/* Lenient on purpose: what an error reply holds is shown as far as it
	 * can be; a field that is absent or mistyped is left empty. */
	const msgpack_object *msg = wire_get(m, WIRE_ERR_MSG);
	if (!wire_obj_strbuf(msg, e->msg, sizeof e->msg) && msg && msg->type == MSGPACK_OBJECT_STR)
		snprintf(e->msg, sizeof e->msg, "%.*s", (int)msg->via.str.size,
			 msg->via.str.size ? msg->via.str.ptr : ""); /* too long: keep what fits */
	wire_obj_strbuf(wire_get(m, WIRE_ERR_TABLE), e->table, sizeof e->table);
	wire_obj_strbuf(wire_get(m, WIRE_ERR_COLUMN), e->column, sizeof e->column);
	if (get_i64(m, WIRE_ERR_ROW, &v) && v >= 0)
		e->row = v;
	if (get_i64(m, WIRE_ERR_OFFSET, &v) && v >= 0)
		e->offset = v;
	wire_obj_strbuf(wire_get(m, WIRE_ERR_TOKEN), e->token, sizeof e->token);
	wire_obj_strbuf(wire_get(m, WIRE_ERR_LEADER), e->leader, sizeof e->leader);
	uint64_t id;
	if (get_u64(m, WIRE_ERR_LEADER_ID, &id))
		e->leader_id = id;
}

/* The bytes of bin key `key` of map, or NULL with *n = 0 when absent. */
static const uint8_t *get_bin(const msgpack_object *map, uint32_t key, uint32_t *n, bool *bad)
{
	const msgpack_object *o = wire_get(map, key);
	*n = 0;
	if (!o)
		return NULL;
	if (o->type != MSGPACK_OBJECT_BIN) {
		*bad = true;
		return NULL;
	}
	*n = o->via.bin.size;
	return (const uint8_t *)o->via.bin.ptr;
}

/* p itself when aligned to `align`, else a copy owned by b. */
static const void *aligned(struct wire_batch *b, const uint8_t *p, size_t n, size_t align)
{
	if (((uintptr_t)p % align) == 0)
		return p;
	void *c = malloc(n ? n : 1);
	if (!c)
		return NULL;
	memcpy(c, p, n);
	b->owned[b->nowned++] = c;
	return c;
}

int wire_batch_decode(const msgpack_object *o, uint32_t max_rows, struct wire_batch *b,
		      struct st_err *err)
{
	uint64_t rows;
	memset(b, 0, sizeof *b);
	const msgpack_object *cols = wire_get(o, WIRE_BATCH_COLUMNS);
	if (!o || o->type != MSGPACK_OBJECT_MAP || !get_u64(o, WIRE_BATCH_ROWS, &rows) || !cols ||
	    cols->type != MSGPACK_OBJECT_ARRAY)
		return st_seterr(err, ST_EPROTO, "a batch must be a map of rows (key 0) and columns "
				 "(key 1)");
	if (rows > max_rows)
		return st_seterr(err, ST_ETOOBIG, "a batch has %llu rows; the limit is %u",
				 (unsigned long long)rows, max_rows);
	if (cols->via.array.size == 0 || cols->via.array.size > ST_MAX_COLUMNS)
		return st_seterr(err, ST_EPROTO, "a batch has %u columns (1 to %u)",
				 cols->via.array.size, ST_MAX_COLUMNS);
	uint32_t nc = cols->via.array.size;
	b->nrows = (uint32_t)rows;
	b->names = calloc(nc, sizeof *b->names);
	b->cols = calloc(nc, sizeof *b->cols);
	b->owned = calloc(2 * (size_t)nc, sizeof *b->owned);
	if (!b->names || !b->cols || !b->owned)
		return st_seterr(err, ST_ENOMEM, "out of memory");
	for (uint32_t c = 0; c < nc; c++) {
		const msgpack_object *m = &cols->via.array.ptr[c];
		struct st_vec *v = &b->cols[c];
		uint64_t type;
		bool bad = false;
		b->ncols = c + 1;
		if (!(b->names[c] = obj_strdup(wire_get(m, WIRE_COL_NAME))) || !b->names[c][0] ||
		    strlen(b->names[c]) > ST_NAME_MAX)
			return st_seterr(err, ST_EPROTO, "batch column %u has no valid name", c);
		if (!get_u64(m, WIRE_COL_TYPE, &type) || !st_type_is_supported((int)type) || type > 255)
			return st_seterr(err, ST_EPROTO, "batch column '%s' has an unknown type",
					 b->names[c]);
		v->type = (uint8_t)type;
		v->n = b->nrows;
		uint32_t nvalid, ndata, noff, nbytes;
		const uint8_t *valid = get_bin(m, WIRE_COL_VALIDITY, &nvalid, &bad);
		const uint8_t *data = get_bin(m, WIRE_COL_DATA, &ndata, &bad);
		const uint8_t *off = get_bin(m, WIRE_COL_OFFSETS, &noff, &bad);
		const uint8_t *bytes = get_bin(m, WIRE_COL_BYTES, &nbytes, &bad);
		if (bad || (valid && nvalid != (rows + 7) / 8))
			return st_seterr(err, ST_EPROTO, "batch column '%s': bad validity bitmap",
					 b->names[c]);
		v->validity = valid;
		if (!st_type_is_varlen(v->type)) {
			size_t w = st_type_width(v->type);
			if (!data || ndata != w * rows)
				return st_seterr(err, ST_EPROTO, "batch column '%s': %u data bytes for "
						 "%llu rows of %s", b->names[c], ndata,
						 (unsigned long long)rows, st_type_name(v->type));
			if (v->type == ST_TYPE_BOOL)
				for (uint32_t i = 0; i < rows; i++)
					if (data[i] > 1)
						return st_seterr(err, ST_EPROTO, "batch column '%s': a "
								 "bool is not 0 or 1", b->names[c]);
			if (!(v->data = aligned(b, data, ndata, w)))
				return st_seterr(err, ST_ENOMEM, "out of memory");
			continue;
		}
		if (!off || noff != 4 * (rows + 1) || (!bytes && nbytes))
			return st_seterr(err, ST_EPROTO, "batch column '%s': %u offset bytes for %llu "
					 "rows", b->names[c], noff, (unsigned long long)rows);
		const uint32_t *o32 = aligned(b, off, noff, 4);
		if (!o32)
			return st_seterr(err, ST_ENOMEM, "out of memory");
		if (o32[0] != 0 || o32[rows] != nbytes)
			return st_seterr(err, ST_EPROTO, "batch column '%s': offsets do not span the "
					 "%u value bytes", b->names[c], nbytes);
		for (uint32_t i = 0; i < rows; i++)
			if (o32[i] > o32[i + 1])
				return st_seterr(err, ST_EPROTO, "batch column '%s': offsets decrease at "
						 "row %u", b->names[c], i);
		v->offsets = o32;
		v->bytes = bytes ? bytes : (const uint8_t *)"";
	}
	return ST_OK;
}

void wire_batch_fini(struct wire_batch *b)
{
	for (uint32_t i = 0; b->names && i < b->ncols; i++)
		free(b->names[i]);
	for (uint32_t i = 0; i < b->nowned; i++)
		free(b->owned[i]);
	free(b->names);
	free(b->cols);
	free(b->owned);
	memset(b, 0, sizeof *b);
}
