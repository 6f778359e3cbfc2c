/*
 * format/actions.c — the msgpack encoding of commits (format/ACTIONS.md).
 *
 * Encoding is a small writer of our own into an st_buf. Decoding is a
 * small bounded reader of our own: every length and count is checked
 * against the bytes that remain before anything is allocated, unknown keys
 * are skipped with a depth limit, and every error names the field and the
 * byte offset. No shared state: thread-safe.
 */
#include "format/actions.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "format/crc32c.h"
#include "format/dv.h"

#define MP_SKIP_DEPTH 32

/* ---- encoding ---------------------------------------------------------- */

/* A small msgpack writer straight into an st_buf (smallest encodings, as
 * the spec's rules allow any). On out of memory the buffer's oom flag is
 * set and the rest is dropped. */
struct pk {
	struct st_buf *b;
};

static inline uint8_t *room(struct pk *pk, size_t n)
{
	struct st_buf *b = pk->b;
	uint8_t *p = !b->oom && b->cap - b->len >= n ? b->data + b->len : st_buf_reserve(b, n);
	if (p)
		pk->b->len += n;
	return p;
}

/* A tag byte and `width` big-endian bytes of v. */
static void pk_tagged(struct pk *pk, uint8_t tag, int width, uint64_t v)
{
	uint8_t *p = room(pk, 1 + (size_t)width);
	if (p) {
		p[0] = tag;
		st_put_be(p + 1, (size_t)width, v);
	}
}

static void pk_uint(struct pk *pk, uint64_t v)
{
	if (v < 128) {
		uint8_t *p = room(pk, 1);
		if (p)
			*p = (uint8_t)v;
	} else if (v <= UINT8_MAX) {
		pk_tagged(pk, 0xcc, 1, v);
	} else if (v <= UINT16_MAX) {
		pk_tagged(pk, 0xcd, 2, v);
	} else if (v <= UINT32_MAX) {
		pk_tagged(pk, 0xce, 4, v);
	} else {
		pk_tagged(pk, 0xcf, 8, v);
	}
}

static void pk_int(struct pk *pk, int64_t v)
{
	if (v >= 0) {
		pk_uint(pk, (uint64_t)v);
	} else if (v >= -32) {
		uint8_t *p = room(pk, 1);
		if (p)
			*p = (uint8_t)(0xe0 | (v + 32));
	} else if (v >= INT8_MIN) {
		pk_tagged(pk, 0xd0, 1, (uint64_t)v);
	} else if (v >= INT16_MIN) {
		pk_tagged(pk, 0xd1, 2, (uint64_t)v);
	} else if (v >= INT32_MIN) {
		pk_tagged(pk, 0xd2, 4, (uint64_t)v);
	} else {
		pk_tagged(pk, 0xd3, 8, (uint64_t)v);
	}
}

/* A map, array, str or bin header: the fix form (mask, limit) when it fits. */
static void pk_head(struct pk *pk, uint32_t n, uint8_t fix, uint32_t fixmax, uint8_t t8,
		    uint8_t t16, uint8_t t32)
{
	if (fix && n <= fixmax) {
		uint8_t *p = room(pk, 1);
		if (p)
			*p = (uint8_t)(fix | n);
	} else if (t8 && n <= UINT8_MAX) {
		pk_tagged(pk, t8, 1, n);
	} else if (n <= UINT16_MAX) {
		pk_tagged(pk, t16, 2, n);
	} else {
		pk_tagged(pk, t32, 4, n);
	}
}

static void pk_map(struct pk *pk, uint32_t n)
{
	pk_head(pk, n, 0x80, 15, 0, 0xde, 0xdf);
}

static void pk_array(struct pk *pk, uint32_t n)
{
	pk_head(pk, n, 0x90, 15, 0, 0xdc, 0xdd);
}

static void pk_bool(struct pk *pk, bool v)
{
	uint8_t *p = room(pk, 1);
	if (p)
		*p = v ? 0xc3 : 0xc2;
}

static void pk_bin(struct pk *pk, const void *d, uint32_t n)
{
	/* bin has no fix form: the 0xc4 tag with an 8-bit length at least. */
	pk_head(pk, n, 0, 0, 0xc4, 0xc5, 0xc6);
	if (n)
		st_buf_append(pk->b, d, n);
}

static void pk_str(struct pk *pk, const char *s)
{
	size_t n = s ? strlen(s) : 0;
	pk_head(pk, (uint32_t)n, 0xa0, 31, 0xd9, 0xda, 0xdb);
	if (n)
		st_buf_append(pk->b, s, n);
}

static void pk_key_u64(struct pk *pk, unsigned key, uint64_t v)
{
	pk_uint(pk, key);
	pk_uint(pk, v);
}

static void pk_key_i64(struct pk *pk, unsigned key, int64_t v)
{
	pk_uint(pk, key);
	pk_int(pk, v);
}

static void pk_kvs(struct pk *pk, const struct act_kv *kv, uint32_t n)
{
	pk_map(pk, n);
	for (uint32_t i = 0; i < n; i++) {
		pk_str(pk, kv[i].key);
		pk_str(pk, kv[i].val);
	}
}

static void pk_stat_value(struct pk *pk, int type, const struct st_value *v)
{
	switch (type) {
	case ST_TYPE_BOOL:
		v->v.b ? pk_bool(pk, true) : pk_bool(pk, false);
		break;
	case ST_TYPE_INT32:
	case ST_TYPE_DATE:
		pk_int(pk, v->v.i32);
		break;
	case ST_TYPE_FLOAT64:
		{
			uint64_t bits;
			memcpy(&bits, &v->v.f64, 8);
			pk_tagged(pk, 0xcb, 8, bits);
		}
		break;
	case ST_TYPE_STRING:
	case ST_TYPE_BINARY:
		pk_bin(pk, v->v.s.ptr, v->v.s.len);
		break;
	default:
		pk_int(pk, v->v.i64);
	}
}

static void pk_metadata(struct pk *pk, const struct act_metadata *m, bool standalone)
{
	pk_map(pk, 7 + standalone + (m->nkey ? 1 : 0));
	if (standalone)
		pk_key_u64(pk, 0, ACT_FORMAT_VERSION);
	pk_uint(pk, 1);
	pk_str(pk, m->name);
	if (m->nkey) {
		pk_uint(pk, 8);
		pk_array(pk, m->nkey);
		for (uint32_t i = 0; i < m->nkey; i++)
			pk_uint(pk, m->key[i]);
	}
	pk_uint(pk, 2);
	pk_array(pk, m->schema.nfields);
	for (uint32_t i = 0; i < m->schema.nfields; i++) {
		const struct st_field *f = &m->schema.fields[i];
		pk_map(pk, 4);
		pk_key_u64(pk, 1, f->id);
		pk_uint(pk, 2);
		pk_str(pk, f->name);
		pk_key_u64(pk, 3, f->type);
		pk_uint(pk, 4);
		f->nullable ? pk_bool(pk, true) : pk_bool(pk, false);
	}
	pk_key_u64(pk, 3, m->next_field_id);
	pk_uint(pk, 4);
	pk_array(pk, m->npartition);
	for (uint32_t i = 0; i < m->npartition; i++)
		pk_uint(pk, m->partition[i]);
	pk_uint(pk, 5);
	pk_kvs(pk, m->props, m->nprops);
	pk_uint(pk, 6);
	pk_array(pk, m->nconstraints);
	for (uint32_t i = 0; i < m->nconstraints; i++) {
		pk_map(pk, 2);
		pk_uint(pk, 1);
		pk_str(pk, m->constraints[i].name);
		pk_uint(pk, 2);
		pk_str(pk, m->constraints[i].expr);
	}
	pk_key_i64(pk, 7, m->created_us);
}

static void pk_add(struct pk *pk, const struct act_add *a)
{
	pk_map(pk, 7 + (a->base_fid ? 1 : 0) + (a->dv ? 2 : 0));
	pk_key_u64(pk, 1, a->file_id);
	pk_key_u64(pk, 2, a->size);
	pk_key_u64(pk, 3, a->rows);
	pk_key_u64(pk, 4, a->crc);
	pk_uint(pk, 5);
	a->data_change ? pk_bool(pk, true) : pk_bool(pk, false);
	pk_uint(pk, 6);
	a->is_inline ? pk_bool(pk, true) : pk_bool(pk, false);
	pk_uint(pk, 7);
	pk_array(pk, a->ncols);
	for (uint32_t i = 0; i < a->ncols; i++) {
		const struct st_col_stats *st = &a->stats[i];
		int type = st->min.type;
		pk_map(pk, st->has_minmax ? 7 : 5);
		pk_key_u64(pk, 1, a->field_ids[i]);
		pk_key_u64(pk, 2, (uint64_t)type);
		pk_key_u64(pk, 3, st->null_count);
		pk_key_u64(pk, 4, st->dict_size);
		pk_key_u64(pk, 5, (st->has_minmax ? 1u : 0u) | (st->min_exact ? 2u : 0u) |
					  (st->max_exact ? 4u : 0u));
		if (st->has_minmax) {
			pk_uint(pk, 6);
			pk_stat_value(pk, type, &st->min);
			pk_uint(pk, 7);
			pk_stat_value(pk, type, &st->max);
		}
	}
	if (a->base_fid)
		pk_key_u64(pk, 8, a->base_fid);
	if (a->dv) {
		pk_key_u64(pk, 9, a->deleted);
		pk_uint(pk, 10);
		pk_bin(pk, a->dv, a->dv_len);
	}
}

/* Key, then a fixed-width integer (tag, then `width` big-endian bytes of
 * v) whose offset from `start` goes to *at: it can be stamped in place. */
static void pk_key_fixed(struct pk *pk, size_t start, unsigned key, uint8_t tag, int width,
			 uint64_t v, uint32_t *at)
{
	pk_uint(pk, key);
	*at = (uint32_t)(pk->b->len - start + 1);
	pk_tagged(pk, tag, width, v);
}

void act_stamp(uint8_t *enc, const struct act_stamps *at, uint64_t version, uint64_t lsn,
	       int64_t time_us, uint32_t prev_checksum, uint64_t duration_us)
{
	st_put_be(enc + at->version, 8, version);
	st_put_be(enc + at->lsn, 8, lsn);
	st_put_be(enc + at->time_us, 8, (uint64_t)time_us);
	st_put_be(enc + at->prev_checksum, 4, prev_checksum);
	st_put_be(enc + at->duration_us, 8, duration_us);
}

int act_encode(const struct act_commit *c, struct st_buf *out, struct act_stamps *at,
	       struct st_err *err)
{
	struct pk pk = {out};
	size_t start = out->len;
	struct act_stamps none;
	if (!at)
		at = &none;
	pk_map(&pk, 11 + (c->metadata != NULL));
	pk_key_u64(&pk, 0, ACT_FORMAT_VERSION);
	pk_key_u64(&pk, 1, c->table_id);
	/* Fixed width (uint 64, int 64, uint 32): stampable in place. */
	pk_key_fixed(&pk, start, 2, 0xcf, 8, c->version, &at->version);
	pk_key_fixed(&pk, start, 3, 0xcf, 8, c->lsn, &at->lsn);
	pk_key_u64(&pk, 4, c->epoch);
	pk_key_fixed(&pk, start, 5, 0xd3, 8, (uint64_t)c->time_us, &at->time_us);
	pk_key_fixed(&pk, start, 6, 0xce, 4, c->prev_checksum, &at->prev_checksum);
	if (c->metadata) {
		pk_uint(&pk, 7);
		pk_metadata(&pk, c->metadata, false);
	}
	pk_uint(&pk, 8);
	pk_array(&pk, c->nadd);
	for (uint32_t i = 0; i < c->nadd; i++)
		pk_add(&pk, &c->adds[i]);
	pk_uint(&pk, 9);
	pk_array(&pk, c->nremove);
	for (uint32_t i = 0; i < c->nremove; i++) {
		const struct act_remove *r = &c->removes[i];
		pk_map(&pk, 2 + (r->deletes ? 1 : 0));
		pk_key_u64(&pk, 1, r->file_id);
		pk_uint(&pk, 2);
		r->data_change ? pk_bool(&pk, true) : pk_bool(&pk, false);
		if (r->deletes) {
			pk_uint(&pk, 3);
			pk_bin(&pk, r->deletes, r->deletes_len);
		}
	}
	pk_uint(&pk, 10);
	pk_array(&pk, c->ntxn);
	for (uint32_t i = 0; i < c->ntxn; i++) {
		pk_map(&pk, 2);
		pk_uint(&pk, 1);
		pk_str(&pk, c->txns[i].app_id);
		pk_key_u64(&pk, 2, c->txns[i].app_version);
	}
	const struct act_commit_info *in = &c->info;
	pk_uint(&pk, 11);
	pk_map(&pk, 11 + (in->dvs_added ? 1 : 0) + (in->rows_deleted ? 1 : 0) +
			(in->rows_updated ? 1 : 0));
	pk_uint(&pk, 1);
	pk_str(&pk, in->operation);
	pk_uint(&pk, 2);
	pk_kvs(&pk, in->params, in->nparams);
	pk_key_i64(&pk, 3, in->read_version);
	pk_key_u64(&pk, 4, in->isolation);
	pk_key_u64(&pk, 5, in->rows_added);
	pk_key_u64(&pk, 6, in->rows_removed);
	pk_key_u64(&pk, 7, in->files_added);
	pk_key_u64(&pk, 8, in->files_removed);
	pk_key_u64(&pk, 9, in->bytes_added);
	pk_key_u64(&pk, 10, in->bytes_removed);
	pk_key_fixed(&pk, start, 11, 0xcf, 8, in->duration_us, &at->duration_us);
	if (in->dvs_added)
		pk_key_u64(&pk, 12, in->dvs_added);
	if (in->rows_deleted)
		pk_key_u64(&pk, 13, in->rows_deleted);
	if (in->rows_updated)
		pk_key_u64(&pk, 14, in->rows_updated);
	if (out->oom)
		return st_seterr(err, ST_ENOMEM, "out of memory encoding a commit");
	if (out->len - start > ACT_MAX_BYTES)
		return st_seterr(err, ST_ETOOBIG, "commit encodes to %zu bytes, above the %u limit",
				 out->len - start, ACT_MAX_BYTES);
	return ST_OK;
}

int act_metadata_encode(const struct act_metadata *m, struct st_buf *out, struct st_err *err)
{
	struct pk pk = {out};
	pk_metadata(&pk, m, true);
	return out->oom ? st_seterr(err, ST_ENOMEM, "out of memory encoding metadata") : ST_OK;
}

uint32_t act_checksum(uint32_t prev_checksum, const uint8_t *encoded, size_t n)
{
	uint8_t p[4];
	st_put_le32(p, prev_checksum);
	return st_crc32c(st_crc32c(0, p, 4), encoded, n);
}

/* ---- a bounded msgpack reader ------------------------------------------ */

struct mp {
	struct st_cur c;   /* the bytes */
	const char *what;  /* field being read, for messages */
	size_t at;         /* its offset */
	int err;           /* ST_OK or the first error */
	int code;          /* code to report (ST_ECORRUPT unless set) */
};

static bool mp_fail(struct mp *m, const char *what)
{
	if (m->err == ST_OK) {
		m->err = m->code ? m->code : ST_ECORRUPT;
		m->what = what;
		m->at = st_cur_off(&m->c);
	}
	m->c.bad = true;
	return false;
}

static uint64_t be_n(struct mp *m, size_t n)
{
	const uint8_t *p = st_cur_take(&m->c, n);
	return p ? st_get_be(p, n) : 0;
}

/* Read an integer; *neg set when it was negative (value in *v as int64). */
static bool mp_int(struct mp *m, uint64_t *v, bool *neg, const char *what)
{
	uint8_t t = st_cur_u8(&m->c);
	*neg = false;
	if (m->c.bad)
		return mp_fail(m, what);
	if (t <= 0x7f) {
		*v = t;
	} else if (t >= 0xe0) {
		*v = (uint64_t)(int64_t)(int8_t)t;
		*neg = true;
	} else if (t >= 0xcc && t <= 0xcf) {
		*v = be_n(m, (size_t)1 << (t - 0xcc));
	} else if (t >= 0xd0 && t <= 0xd3) {
		size_t n = (size_t)1 << (t - 0xd0);
		uint64_t raw = be_n(m, n);
		int64_t s = n == 1 ? (int8_t)raw : n == 2 ? (int16_t)raw : n == 4 ? (int32_t)raw
								      : (int64_t)raw;
		*v = (uint64_t)s;
		*neg = s < 0;
	} else {
		return mp_fail(m, what);
	}
	return !m->c.bad || mp_fail(m, what);
}

static bool mp_uint(struct mp *m, uint64_t *v, uint64_t max, const char *what)
{
	bool neg;
	if (!mp_int(m, v, &neg, what))
		return false;
	return (!neg && *v <= max) || mp_fail(m, what);
}

static bool mp_i64(struct mp *m, int64_t *v, const char *what)
{
	uint64_t u;
	bool neg;
	if (!mp_int(m, &u, &neg, what))
		return false;
	if (!neg && u > INT64_MAX)
		return mp_fail(m, what);
	*v = (int64_t)u;
	return true;
}

static bool mp_bool(struct mp *m, bool *v, const char *what)
{
	uint8_t t = st_cur_u8(&m->c);
	if (m->c.bad || (t != 0xc2 && t != 0xc3))
		return mp_fail(m, what);
	*v = t == 0xc3;
	return true;
}

/* Header of a container or string: returns its count/length. */
static bool mp_len(struct mp *m, int kind, uint32_t *n, const char *what)
{
	uint8_t t = st_cur_u8(&m->c);
	if (m->c.bad)
		return mp_fail(m, what);
	switch (kind) {
	case 'm':
		if ((t & 0xf0) == 0x80)
			*n = t & 0x0f;
		else if (t == 0xde || t == 0xdf)
			*n = (uint32_t)be_n(m, t == 0xde ? 2 : 4);
		else
			return mp_fail(m, what);
		break;
	case 'a':
		if ((t & 0xf0) == 0x90)
			*n = t & 0x0f;
		else if (t == 0xdc || t == 0xdd)
			*n = (uint32_t)be_n(m, t == 0xdc ? 2 : 4);
		else
			return mp_fail(m, what);
		break;
	case 's':
		if ((t & 0xe0) == 0xa0)
			*n = t & 0x1f;
		else if (t >= 0xd9 && t <= 0xdb)
			*n = (uint32_t)be_n(m, (size_t)1 << (t - 0xd9));
		else
			return mp_fail(m, what);
		break;
	default: /* 'b' */
		if (t >= 0xc4 && t <= 0xc6)
			*n = (uint32_t)be_n(m, (size_t)1 << (t - 0xc4));
		else
			return mp_fail(m, what);
	}
	/* Every element takes at least one byte: a count above what remains
	 * is a lie, refused before anything is allocated for it. */
	if (m->c.bad || *n > st_cur_left(&m->c) / (kind == 'm' ? 2 : 1))
		return mp_fail(m, what);
	return true;
}

/* A NUL-terminated heap copy of a str. */
static char *mp_str(struct mp *m, const char *what, size_t maxlen)
{
	uint32_t n;
	if (!mp_len(m, 's', &n, what))
		return NULL;
	const uint8_t *p = st_cur_take(&m->c, n);
	if (!p || n > maxlen || memchr(p, 0, n)) {
		mp_fail(m, what);
		return NULL;
	}
	char *s = malloc(n + 1);
	if (!s) {
		m->code = ST_ENOMEM;
		mp_fail(m, "memory");
		return NULL;
	}
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

static bool mp_skip(struct mp *m, int depth)
{
	uint8_t t = st_cur_u8(&m->c);
	uint32_t n = 0;
	if (m->c.bad || depth > MP_SKIP_DEPTH)
		return mp_fail(m, "unknown field");
	if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3)
		return true;
	if ((t & 0xe0) == 0xa0)
		return st_cur_take(&m->c, t & 0x1f) || mp_fail(m, "unknown field");
	if ((t & 0xf0) == 0x80 || (t & 0xf0) == 0x90) {
		n = (t & 0x0f) * ((t & 0xf0) == 0x80 ? 2u : 1u);
	} else {
		switch (t) {
		case 0xcc: case 0xd0: return st_cur_take(&m->c, 1) || mp_fail(m, "unknown field");
		case 0xcd: case 0xd1: return st_cur_take(&m->c, 2) || mp_fail(m, "unknown field");
		case 0xce: case 0xd2: case 0xca: return st_cur_take(&m->c, 4) || mp_fail(m, "unknown field");
		case 0xcf: case 0xd3: case 0xcb: return st_cur_take(&m->c, 8) || mp_fail(m, "unknown field");
		case 0xd4: return st_cur_take(&m->c, 2) || mp_fail(m, "unknown field");
		case 0xd5: return st_cur_take(&m->c, 3) || mp_fail(m, "unknown field");
		case 0xd6: return st_cur_take(&m->c, 5) || mp_fail(m, "unknown field");
		case 0xd7: return st_cur_take(&m->c, 9) || mp_fail(m, "unknown field");
		case 0xd8: return st_cur_take(&m->c, 17) || mp_fail(m, "unknown field");
		case 0xc4: case 0xd9: n = (uint32_t)be_n(m, 1); return st_cur_take(&m->c, n) || mp_fail(m, "unknown field");
		case 0xc5: case 0xda: n = (uint32_t)be_n(m, 2); return st_cur_take(&m->c, n) || mp_fail(m, "unknown field");
		case 0xc6: case 0xdb: n = (uint32_t)be_n(m, 4); return st_cur_take(&m->c, n) || mp_fail(m, "unknown field");
		case 0xc7: case 0xc8: case 0xc9:
			n = (uint32_t)be_n(m, (size_t)1 << (t - 0xc7));
			return st_cur_take(&m->c, (size_t)n + 1) || mp_fail(m, "unknown field");
		case 0xdc: n = (uint32_t)be_n(m, 2); break;
		case 0xdd: n = (uint32_t)be_n(m, 4); break;
		case 0xde: n = 2 * (uint32_t)be_n(m, 2); break;
		case 0xdf: {
			uint64_t k = be_n(m, 4);
			if (k > st_cur_left(&m->c))
				return mp_fail(m, "unknown field");
			n = (uint32_t)(2 * k);
			break;
		}
		default: return mp_fail(m, "unknown field");
		}
	}
	if (n > st_cur_left(&m->c))
		return mp_fail(m, "unknown field");
	for (uint32_t i = 0; i < n; i++)
		if (!mp_skip(m, depth + 1))
			return false;
	return true;
}

/* Allocate n zeroed elements of size sz (n already bounded by mp_len). */
static void *mp_alloc(struct mp *m, size_t n, size_t sz)
{
	void *p = calloc(n + 1, sz);
	if (!p) {
		m->code = ST_ENOMEM;
		mp_fail(m, "memory");
	}
	return p;
}

/* ---- decoding ---------------------------------------------------------- */

static bool mp_kvs(struct mp *m, struct act_kv **kv, uint32_t *n, const char *what)
{
	if (!mp_len(m, 'm', n, what) || !(*kv = mp_alloc(m, *n, sizeof **kv)))
		return false;
	for (uint32_t i = 0; i < *n; i++)
		if (!((*kv)[i].key = mp_str(m, what, 65535)) ||
		    !((*kv)[i].val = mp_str(m, what, 1u << 20)))
			return false;
	return true;
}

static bool mp_stat_value(struct mp *m, int type, struct st_value *v, uint8_t *buf)
{
	v->type = (uint8_t)type;
	switch (type) {
	case ST_TYPE_BOOL:
		return mp_bool(m, &v->v.b, "stats bound");
	case ST_TYPE_INT32:
	case ST_TYPE_DATE: {
		int64_t x;
		if (!mp_i64(m, &x, "stats bound") || x < INT32_MIN || x > INT32_MAX)
			return mp_fail(m, "stats bound");
		v->v.i32 = (int32_t)x;
		return true;
	}
	case ST_TYPE_FLOAT64: {
		uint8_t t = st_cur_u8(&m->c);
		if (m->c.bad || t != 0xcb)
			return mp_fail(m, "stats bound");
		uint64_t bits = be_n(m, 8);
		memcpy(&v->v.f64, &bits, 8);
		return (!m->c.bad && v->v.f64 == v->v.f64) || mp_fail(m, "stats bound");
	}
	case ST_TYPE_STRING:
	case ST_TYPE_BINARY: {
		uint32_t n;
		if (!mp_len(m, 'b', &n, "stats bound"))
			return false;
		const uint8_t *p = st_cur_take(&m->c, n);
		if (!p || n > ST_STAT_PREFIX_MAX)
			return mp_fail(m, "stats bound");
		memcpy(buf, p, n);
		v->v.s.ptr = buf;
		v->v.s.len = n;
		return true;
	}
	default:
		return mp_i64(m, &v->v.i64, "stats bound");
	}
}

static bool mp_stats(struct mp *m, uint32_t *field_id, struct st_col_stats *st)
{
	uint32_t n;
	uint64_t u, type = 0, flags = 0;
	bool have_min = false, have_max = false;
	if (!mp_len(m, 'm', &n, "stats"))
		return false;
	memset(st, 0, sizeof *st);
	for (uint32_t i = 0; i < n; i++) {
		if (!mp_uint(m, &u, UINT32_MAX, "stats key"))
			return false;
		switch (u) {
		case 1: if (!mp_uint(m, &u, UINT32_MAX, "stats field id")) return false; *field_id = (uint32_t)u; break;
		case 2: if (type || !mp_uint(m, &type, 255, "stats type") || !st_type_is_supported((int)type))
				return mp_fail(m, "stats type");
			st->min.type = st->max.type = (uint8_t)type;
			break;
		case 3: if (!mp_uint(m, &st->null_count, UINT64_MAX, "null_count")) return false; break;
		case 4: if (!mp_uint(m, &u, UINT32_MAX, "dict_size")) return false; st->dict_size = (uint32_t)u; break;
		case 5: if (!mp_uint(m, &flags, 7, "stats flags")) return false; break;
		case 6: case 7:
			if (!type)
				return mp_fail(m, "stats bound before type");
			if (!mp_stat_value(m, (int)type, u == 6 ? &st->min : &st->max,
					   u == 6 ? st->min_buf : st->max_buf))
				return false;
			if (u == 6)
				have_min = true;
			else
				have_max = true;
			break;
		default: if (!mp_skip(m, 0)) return false;
		}
	}
	st->has_minmax = flags & 1;
	st->min_exact = (flags >> 1) & 1;
	st->max_exact = (flags >> 2) & 1;
	if (!type || st->has_minmax != have_min || have_min != have_max ||
	    (st->has_minmax && st_value_cmp(&st->min, &st->max) > 0))
		return mp_fail(m, "stats");
	return true;
}

static void metadata_free_fields(struct act_metadata *md)
{
	free(md->name);
	free(md->schema.fields);
	free(md->partition);
	free(md->key);
	for (uint32_t i = 0; md->props && i < md->nprops; i++) {
		free(md->props[i].key);
		free(md->props[i].val);
	}
	free(md->props);
	for (uint32_t i = 0; md->constraints && i < md->nconstraints; i++) {
		free(md->constraints[i].name);
		free(md->constraints[i].expr);
	}
	free(md->constraints);
}

void act_metadata_free(struct act_metadata *m)
{
	if (m) {
		metadata_free_fields(m);
		free(m);
	}
}

static bool mp_metadata(struct mp *m, struct act_metadata *md, bool standalone)
{
	uint32_t n;
	uint64_t u;
	bool have_name = false, have_fields = false, have_version = !standalone;
	if (!mp_len(m, 'm', &n, "metadata"))
		return false;
	for (uint32_t i = 0; i < n; i++) {
		if (!mp_uint(m, &u, UINT32_MAX, "metadata key"))
			return false;
		switch (u) {
		case 0:
			if (!mp_uint(m, &u, UINT32_MAX, "metadata version"))
				return false;
			if (u > ACT_FORMAT_VERSION) {
				m->code = ST_EVERSION;
				return mp_fail(m, "metadata version (written by a newer strata)");
			}
			have_version = true;
			break;
		case 1:
			free(md->name);
			if (!(md->name = mp_str(m, "table name", 255)))
				return false;
			have_name = true;
			break;
		case 2: {
			uint32_t nf;
			if (have_fields || !mp_len(m, 'a', &nf, "fields") || nf == 0 || nf > ST_MAX_COLUMNS)
				return mp_fail(m, "fields");
			if (!(md->schema.fields = mp_alloc(m, nf, sizeof *md->schema.fields)))
				return false;
			md->schema.nfields = nf;
			for (uint32_t k = 0; k < nf; k++) {
				struct st_field *f = &md->schema.fields[k];
				uint32_t nk;
				bool have_type = false;
				if (!mp_len(m, 'm', &nk, "field"))
					return false;
				for (uint32_t j = 0; j < nk; j++) {
					if (!mp_uint(m, &u, UINT32_MAX, "field key"))
						return false;
					if (u == 1) {
						if (!mp_uint(m, &u, UINT32_MAX, "field id"))
							return false;
						f->id = (uint32_t)u;
					} else if (u == 2) {
						char *s = mp_str(m, "field name", ST_NAME_MAX);
						if (!s)
							return false;
						strcpy(f->name, s);
						free(s);
					} else if (u == 3) {
						if (!mp_uint(m, &u, 255, "field type") ||
						    !st_type_is_supported((int)u)) {
							m->code = m->c.bad ? 0 : ST_EVERSION;
							return mp_fail(m, "field type (unknown to this reader)");
						}
						f->type = (uint8_t)u;
						have_type = true;
					} else if (u == 4) {
						if (!mp_bool(m, &f->nullable, "field nullable"))
							return false;
					} else if (!mp_skip(m, 0)) {
						return false;
					}
				}
				if (!have_type || !f->name[0])
					return mp_fail(m, "field");
				for (uint32_t j = 0; j < k; j++)
					if (!strcasecmp(md->schema.fields[j].name, f->name) ||
					    md->schema.fields[j].id == f->id)
						return mp_fail(m, "field (duplicate name or id)");
			}
			have_fields = true;
			break;
		}
		case 3:
			if (!mp_uint(m, &u, UINT32_MAX, "next_field_id"))
				return false;
			md->next_field_id = (uint32_t)u;
			break;
		case 4:
			if (md->partition || !mp_len(m, 'a', &md->npartition, "partition") ||
			    !(md->partition = mp_alloc(m, md->npartition, sizeof *md->partition)))
				return mp_fail(m, "partition");
			for (uint32_t k = 0; k < md->npartition; k++) {
				if (!mp_uint(m, &u, UINT32_MAX, "partition"))
					return false;
				md->partition[k] = (uint32_t)u;
			}
			break;
		case 5:
			if (md->props || !mp_kvs(m, &md->props, &md->nprops, "props"))
				return mp_fail(m, "props");
			break;
		case 6:
			if (md->constraints || !mp_len(m, 'a', &md->nconstraints, "constraints") ||
			    !(md->constraints = mp_alloc(m, md->nconstraints, sizeof *md->constraints)))
				return mp_fail(m, "constraints");
			for (uint32_t k = 0; k < md->nconstraints; k++) {
				uint32_t nk;
				if (!mp_len(m, 'm', &nk, "constraint"))
					return false;
				for (uint32_t j = 0; j < nk; j++) {
					if (!mp_uint(m, &u, UINT32_MAX, "constraint key"))
						return false;
					char **dst = u == 1 ? &md->constraints[k].name
						   : u == 2 ? &md->constraints[k].expr : NULL;
					if (dst) {
						free(*dst);
						if (!(*dst = mp_str(m, "constraint", 1u << 16)))
							return false;
					} else if (!mp_skip(m, 0)) {
						return false;
					}
				}
				if (!md->constraints[k].name || !md->constraints[k].expr)
					return mp_fail(m, "constraint");
			}
			break;
		case 7:
			if (!mp_i64(m, &md->created_us, "created_us"))
				return false;
			break;
		case 8:
			if (md->key || !mp_len(m, 'a', &md->nkey, "key") || md->nkey > 32 ||
			    !(md->key = mp_alloc(m, md->nkey, sizeof *md->key)))
				return mp_fail(m, "key");
			for (uint32_t k = 0; k < md->nkey; k++) {
				if (!mp_uint(m, &u, UINT32_MAX, "key"))
					return false;
				md->key[k] = (uint32_t)u;
			}
			break;
		default:
			if (!mp_skip(m, 0))
				return false;
		}
	}
	if (!have_name || !have_fields || !have_version)
		return mp_fail(m, "metadata (name, fields or version missing)");
	return true;
}

/* A deletion vector (bin, at least DV_MIN bytes) into *dv (once). */
static bool mp_dv(struct mp *m, uint8_t **dv, uint32_t *n, const char *what)
{
	uint32_t len;
	const uint8_t *p;
	if (*dv || !mp_len(m, 'b', &len, what) || len < DV_MIN || !(p = st_cur_take(&m->c, len)) ||
	    !(*dv = mp_alloc(m, len, 1)))
		return mp_fail(m, what);
	memcpy(*dv, p, len);
	*n = len;
	return true;
}

static bool mp_add(struct mp *m, struct act_add *a)
{
	uint32_t n;
	uint64_t u;
	if (!mp_len(m, 'm', &n, "add"))
		return false;
	for (uint32_t i = 0; i < n; i++) {
		if (!mp_uint(m, &u, UINT32_MAX, "add key"))
			return false;
		bool ok = true;
		switch (u) {
		case 1: ok = mp_uint(m, &a->file_id, UINT64_MAX, "add file_id"); break;
		case 2: ok = mp_uint(m, &a->size, UINT64_MAX, "add size"); break;
		case 3: ok = mp_uint(m, &a->rows, UINT64_MAX, "add rows"); break;
		case 4: ok = mp_uint(m, &u, UINT32_MAX, "add crc"); a->crc = (uint32_t)u; break;
		case 5: ok = mp_bool(m, &a->data_change, "add data_change"); break;
		case 6: ok = mp_bool(m, &a->is_inline, "add inline"); break;
		case 7:
			if (a->stats || !mp_len(m, 'a', &a->ncols, "add stats") || a->ncols > ST_MAX_COLUMNS ||
			    !(a->stats = mp_alloc(m, a->ncols, sizeof *a->stats)) ||
			    !(a->field_ids = mp_alloc(m, a->ncols, sizeof *a->field_ids)))
				return mp_fail(m, "add stats");
			for (uint32_t k = 0; k < a->ncols; k++)
				if (!mp_stats(m, &a->field_ids[k], &a->stats[k]))
					return false;
			break;
		case 8: ok = mp_uint(m, &a->base_fid, UINT64_MAX, "add base_fid"); break;
		case 9: ok = mp_uint(m, &a->deleted, UINT32_MAX, "add deleted"); break;
		case 10: ok = mp_dv(m, &a->dv, &a->dv_len, "add dv"); break;
		default: ok = mp_skip(m, 0);
		}
		if (!ok)
			return false;
	}
	if ((a->dv != NULL) != (a->deleted != 0) ||
	    (a->dv && (dv_cardinality(a->dv, a->dv_len) != a->deleted || a->deleted > a->rows)))
		return mp_fail(m, "add (deletion vector and its count disagree)");
	return true;
}

static bool mp_info(struct mp *m, struct act_commit_info *in)
{
	uint32_t n;
	uint64_t u;
	uint64_t *metrics[] = {&in->rows_added, &in->rows_removed, &in->files_added,
			       &in->files_removed, &in->bytes_added, &in->bytes_removed,
			       &in->duration_us};
	if (!mp_len(m, 'm', &n, "commit_info"))
		return false;
	for (uint32_t i = 0; i < n; i++) {
		if (!mp_uint(m, &u, UINT32_MAX, "commit_info key"))
			return false;
		bool ok;
		if (u == 1) {
			free(in->operation);
			ok = (in->operation = mp_str(m, "operation", 255)) != NULL;
		} else if (u == 2) {
			ok = !in->params && mp_kvs(m, &in->params, &in->nparams, "params");
		} else if (u == 3) {
			ok = mp_i64(m, &in->read_version, "read_version");
		} else if (u == 4) {
			ok = mp_uint(m, &u, 255, "isolation");
			in->isolation = (uint8_t)u;
		} else if (u >= 5 && u <= 11) {
			ok = mp_uint(m, metrics[u - 5], UINT64_MAX, "metrics");
		} else if (u == 12) {
			ok = mp_uint(m, &in->dvs_added, UINT64_MAX, "metrics");
		} else if (u == 13) {
			ok = mp_uint(m, &in->rows_deleted, UINT64_MAX, "metrics");
		} else if (u == 14) {
			ok = mp_uint(m, &in->rows_updated, UINT64_MAX, "metrics");
		} else {
			ok = mp_skip(m, 0);
		}
		if (!ok)
			return mp_fail(m, "commit_info");
	}
	return in->operation != NULL || mp_fail(m, "commit_info (no operation)");
}

void act_commit_free(struct act_commit *c)
{
	if (!c)
		return;
	act_metadata_free(c->metadata);
	for (uint32_t i = 0; c->adds && i < c->nadd; i++) {
		free(c->adds[i].field_ids);
		free(c->adds[i].stats);
		free(c->adds[i].dv);
	}
	free(c->adds);
	for (uint32_t i = 0; c->removes && i < c->nremove; i++)
		free(c->removes[i].deletes);
	free(c->removes);
	for (uint32_t i = 0; c->txns && i < c->ntxn; i++)
		free(c->txns[i].app_id);
	free(c->txns);
	free(c->info.operation);
	for (uint32_t i = 0; c->info.params && i < c->info.nparams; i++) {
		free(c->info.params[i].key);
		free(c->info.params[i].val);
	}
	free(c->info.params);
	free(c);
}

static int mp_result(struct mp *m, struct st_err *err, const char *record)
{
	if (m->err == ST_OK && st_cur_left(&m->c) != 0)
		mp_fail(m, "trailing bytes");
	if (m->err == ST_OK)
		return ST_OK;
	return st_seterr(err, m->err, "%s: bad %s at byte %zu", record, m->what, m->at);
}

int act_decode(const uint8_t *p, size_t n, struct act_commit **out, struct st_err *err)
{
	struct mp m = {0};
	uint32_t nk;
	uint64_t u;
	unsigned seen = 0;
	*out = NULL;
	if (n > ACT_MAX_BYTES)
		return st_seterr(err, ST_ETOOBIG, "commit of %zu bytes is above the %u limit", n,
				 ACT_MAX_BYTES);
	struct act_commit *c = calloc(1, sizeof *c);
	if (!c)
		return st_seterr(err, ST_ENOMEM, "out of memory");
	st_cur_init(&m.c, p, n);
	if (!mp_len(&m, 'm', &nk, "commit"))
		goto out;
	for (uint32_t i = 0; i < nk; i++) {
		if (!mp_uint(&m, &u, UINT32_MAX, "commit key"))
			goto out;
		if (u <= 11)
			seen |= 1u << u;
		bool ok = true;
		switch (u) {
		case 0:
			ok = mp_uint(&m, &u, UINT32_MAX, "version");
			if (ok && u > ACT_FORMAT_VERSION) {
				m.code = ST_EVERSION;
				ok = mp_fail(&m, "encoding version (written by a newer strata)");
			}
			break;
		case 1: ok = mp_uint(&m, &c->table_id, UINT64_MAX, "table_id"); break;
		case 2: ok = mp_uint(&m, &c->version, UINT64_MAX, "version"); break;
		case 3: ok = mp_uint(&m, &c->lsn, UINT64_MAX, "lsn"); break;
		case 4: ok = mp_uint(&m, &c->epoch, UINT64_MAX, "epoch"); break;
		case 5: ok = mp_i64(&m, &c->time_us, "time_us"); break;
		case 6: ok = mp_uint(&m, &u, UINT32_MAX, "prev_checksum"); c->prev_checksum = (uint32_t)u; break;
		case 7:
			ok = !c->metadata && (c->metadata = mp_alloc(&m, 1, sizeof *c->metadata)) &&
			     mp_metadata(&m, c->metadata, false);
			break;
		case 8:
			if (c->adds || !mp_len(&m, 'a', &c->nadd, "adds") ||
			    !(c->adds = mp_alloc(&m, c->nadd, sizeof *c->adds)))
				ok = mp_fail(&m, "adds");
			for (uint32_t k = 0; ok && k < c->nadd; k++)
				ok = mp_add(&m, &c->adds[k]);
			break;
		case 9:
			if (c->removes || !mp_len(&m, 'a', &c->nremove, "removes") ||
			    !(c->removes = mp_alloc(&m, c->nremove, sizeof *c->removes)))
				ok = mp_fail(&m, "removes");
			for (uint32_t k = 0; ok && k < c->nremove; k++) {
				uint32_t nr;
				ok = mp_len(&m, 'm', &nr, "remove");
				for (uint32_t j = 0; ok && j < nr; j++) {
					ok = mp_uint(&m, &u, UINT32_MAX, "remove key");
					if (ok && u == 1)
						ok = mp_uint(&m, &c->removes[k].file_id, UINT64_MAX, "remove file_id");
					else if (ok && u == 2)
						ok = mp_bool(&m, &c->removes[k].data_change, "remove data_change");
					else if (ok && u == 3)
						ok = mp_dv(&m, &c->removes[k].deletes,
							   &c->removes[k].deletes_len, "remove deletes");
					else if (ok)
						ok = mp_skip(&m, 0);
				}
			}
			break;
		case 10:
			if (c->txns || !mp_len(&m, 'a', &c->ntxn, "txns") ||
			    !(c->txns = mp_alloc(&m, c->ntxn, sizeof *c->txns)))
				ok = mp_fail(&m, "txns");
			for (uint32_t k = 0; ok && k < c->ntxn; k++) {
				uint32_t nt;
				ok = mp_len(&m, 'm', &nt, "txn");
				for (uint32_t j = 0; ok && j < nt; j++) {
					ok = mp_uint(&m, &u, UINT32_MAX, "txn key");
					if (ok && u == 1) {
						free(c->txns[k].app_id);
						ok = (c->txns[k].app_id = mp_str(&m, "app_id", 255)) != NULL;
					} else if (ok && u == 2) {
						ok = mp_uint(&m, &c->txns[k].app_version, UINT64_MAX, "app_version");
					} else if (ok) {
						ok = mp_skip(&m, 0);
					}
				}
				if (ok && !c->txns[k].app_id)
					ok = mp_fail(&m, "txn (no app id)");
			}
			break;
		case 11: ok = mp_info(&m, &c->info); break;
		default: ok = mp_skip(&m, 0);
		}
		if (!ok)
			goto out;
	}
	/* Required: version, table_id, version, lsn, time, prev_checksum, info. */
	if ((seen & 0x86f) != 0x86f)
		mp_fail(&m, "commit (a required key is missing)");
out:;
	int rc = mp_result(&m, err, "commit");
	if (rc == ST_OK)
		*out = c;
	else
		act_commit_free(c);
	return rc;
}

int act_metadata_decode(const uint8_t *p, size_t n, struct act_metadata **out,
			struct st_err *err)
{
	struct mp m = {0};
	*out = NULL;
	if (n > ACT_MAX_BYTES)
		return st_seterr(err, ST_ETOOBIG, "metadata of %zu bytes is above the limit", n);
	struct act_metadata *md = calloc(1, sizeof *md);
	if (!md)
		return st_seterr(err, ST_ENOMEM, "out of memory");
	st_cur_init(&m.c, p, n);
	mp_metadata(&m, md, true);
	int rc = mp_result(&m, err, "metadata");
	if (rc == ST_OK)
		*out = md;
	else
		act_metadata_free(md);
	return rc;
}
