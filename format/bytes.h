/*
 * format/bytes.h — the only way bytes cross the disk/wire boundary.
 *
 * Little-endian put/get helpers, a growable output buffer (st_buf) and a
 * bounded input cursor (st_cur) whose every read checks the remaining
 * length first. FORMAT.md §1.
 */
#ifndef STRATA_FORMAT_BYTES_H
#define STRATA_FORMAT_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline void st_put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void st_put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void st_put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t st_get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t st_get_le32(const uint8_t *p)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	uint32_t v;
	memcpy(&v, p, 4); /* one unaligned load */
	return v;
#else
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
#endif
}

static inline uint64_t st_get_le64(const uint8_t *p)
{
	uint64_t v;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	memcpy(&v, p, 8); /* one unaligned load */
#else
	v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
#endif
	return v;
}

/* Big-endian (keys that sort as numbers, msgpack): width bytes of v. */
static inline void st_put_be(uint8_t *p, size_t width, uint64_t v)
{
	for (size_t i = 0; i < width; i++)
		p[i] = (uint8_t)(v >> (8 * (width - 1 - i)));
}

static inline uint64_t st_get_be(const uint8_t *p, size_t width)
{
	uint64_t v = 0;
	for (size_t i = 0; i < width; i++)
		v = v << 8 | p[i];
	return v;
}

/* A growable byte buffer. Zero-initialize, append, st_buf_free. */
struct st_buf {
	uint8_t *data; /* heap storage, NULL until first append */
	size_t len;    /* bytes in use */
	size_t cap;    /* bytes allocated */
	bool oom;      /* an append failed; later appends are no-ops */
};

/* Make room for n more bytes; returns a pointer to them or NULL (sets oom). */
uint8_t *st_buf_reserve(struct st_buf *b, size_t n);
/* st_buf_append when the buffer must grow (bytes.c). */
void st_buf_append_slow(struct st_buf *b, const void *p, size_t n);
void st_buf_free(struct st_buf *b);

/* Appends: inline while there is room (the common case), so that encoders
 * writing field by field pay no call per field. */
static inline void st_buf_append(struct st_buf *b, const void *p, size_t n)
{
	if (b->cap - b->len >= n && !b->oom && n) {
		memcpy(b->data + b->len, p, n);
		b->len += n;
	} else {
		st_buf_append_slow(b, p, n);
	}
}

static inline void st_buf_u8(struct st_buf *b, uint8_t v)
{
	st_buf_append(b, &v, 1);
}

static inline void st_buf_u16(struct st_buf *b, uint16_t v)
{
	uint8_t t[2];
	st_put_le16(t, v);
	st_buf_append(b, t, 2);
}

static inline void st_buf_u32(struct st_buf *b, uint32_t v)
{
	uint8_t t[4];
	st_put_le32(t, v);
	st_buf_append(b, t, 4);
}

static inline void st_buf_u64(struct st_buf *b, uint64_t v)
{
	uint8_t t[8];
	st_put_le64(t, v);
	st_buf_append(b, t, 8);
}

/*
 * A bounded reader over [p, end). Every getter checks the remaining length;
 * on a short read it sets `bad`, returns 0, and all later reads fail too,
 * so a parser can read a whole record and check `bad` once.
 */
struct st_cur {
	const uint8_t *start; /* start of the whole buffer (for offsets) */
	const uint8_t *p;     /* next byte */
	const uint8_t *end;   /* one past the last byte */
	bool bad;             /* a read ran past end */
};

/* A NULL p gives a cursor on which every read fails. */
static inline void st_cur_init(struct st_cur *c, const uint8_t *p, size_t n)
{
	c->start = c->p = p;
	c->end = p ? p + n : p;
	c->bad = p == NULL;
}

static inline size_t st_cur_left(const struct st_cur *c)
{
	return c->bad ? 0 : (size_t)(c->end - c->p);
}

static inline size_t st_cur_off(const struct st_cur *c)
{
	return (size_t)(c->p - c->start);
}

/* Borrow n bytes; NULL (and bad) when fewer remain. */
static inline const uint8_t *st_cur_take(struct st_cur *c, size_t n)
{
	if (c->bad || (size_t)(c->end - c->p) < n) {
		c->bad = true;
		return NULL;
	}
	const uint8_t *r = c->p;
	c->p += n;
	return r;
}

static inline uint8_t st_cur_u8(struct st_cur *c)
{
	const uint8_t *q = st_cur_take(c, 1);
	return q ? q[0] : 0;
}

static inline uint16_t st_cur_u16(struct st_cur *c)
{
	const uint8_t *q = st_cur_take(c, 2);
	return q ? st_get_le16(q) : 0;
}

static inline uint32_t st_cur_u32(struct st_cur *c)
{
	const uint8_t *q = st_cur_take(c, 4);
	return q ? st_get_le32(q) : 0;
}

static inline uint64_t st_cur_u64(struct st_cur *c)
{
	const uint8_t *q = st_cur_take(c, 8);
	return q ? st_get_le64(q) : 0;
}

/* ULEB128 of at most 5 bytes, value < 2^32; sets bad otherwise. */
uint32_t st_cur_uleb32(struct st_cur *c);
/* Append v as ULEB128. */
void st_buf_uleb32(struct st_buf *b, uint32_t v);

#endif
