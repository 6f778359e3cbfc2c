/*
 * format/bytes.c — st_buf growth and ULEB128, the non-inline parts of
 * bytes.h. Not thread-safe per buffer; no shared state.
 */
#include "format/bytes.h"

#include <stdlib.h>

uint8_t *st_buf_reserve(struct st_buf *b, size_t n)
{
	if (b->oom)
		return NULL;
	if (!b->data || b->cap - b->len < n) { /* (a reserve of 0 bytes allocates too:
						   * the pointer returned is never NULL + 0) */
		size_t cap = b->cap ? b->cap : 256;
		while (cap - b->len < n) {
			if (cap > SIZE_MAX / 2) {
				b->oom = true;
				return NULL;
			}
			cap *= 2;
		}
		uint8_t *d = realloc(b->data, cap);
		if (!d) {
			b->oom = true;
			return NULL;
		}
		b->data = d;
		b->cap = cap;
	}
	return b->data + b->len;
}

void st_buf_append_slow(struct st_buf *b, const void *p, size_t n)
{
	uint8_t *d = st_buf_reserve(b, n);
	if (d) {
		if (n)
			memcpy(d, p, n);
		b->len += n;
	}
}

void st_buf_free(struct st_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof *b);
}

uint32_t st_cur_uleb32(struct st_cur *c)
{
	uint64_t v = 0;
	for (int i = 0; i < 5; i++) {
		uint8_t byte = st_cur_u8(c);
		if (c->bad)
			return 0;
		v |= (uint64_t)(byte & 0x7f) << (7 * i);
		if (!(byte & 0x80)) {
			if (v > UINT32_MAX)
				break;
			return (uint32_t)v;
		}
	}
	c->bad = true;
	return 0;
}

void st_buf_uleb32(struct st_buf *b, uint32_t v)
{
	uint8_t t[5];
	size_t n = 0;
	do {
		t[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			t[n] |= 0x80;
		n++;
	} while (v);
	st_buf_append(b, t, n);
}
