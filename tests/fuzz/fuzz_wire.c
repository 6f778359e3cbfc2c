/*
 * tests/fuzz/fuzz_wire.c — libFuzzer target for what stratad decodes off
 * the socket (format/PROTOCOL.md): the envelope, the error map, and a batch
 * in the body's key 1 or 2. A batch that decodes must re-encode to a batch
 * that decodes to the same rows (abort otherwise). Hostile bytes must give
 * an error, never a crash.
 */
#include <stdlib.h>
#include <string.h>

#include "format/wire.h"

static void same_after_reencode(const struct wire_batch *b)
{
	struct wire_out o;
	struct wire_msg m;
	struct wire_batch d;
	wire_out_init(&o);
	wire_begin(&o, 1, WIRE_WRITE, NULL, 0, 1);
	msgpack_pack_uint32(&o.pk, 2);
	wire_pack_batch(&o, b->ncols, (const char *const *)b->names, b->cols, NULL, b->nrows);
	if (wire_parse(o.buf.data, o.buf.len, &m, NULL) != ST_OK ||
	    wire_batch_decode(wire_get(m.body, 2), UINT32_MAX, &d, NULL) != ST_OK ||
	    d.nrows != b->nrows || d.ncols != b->ncols)
		abort();
	for (uint32_t c = 0; c < d.ncols; c++) {
		const struct st_vec *x = &b->cols[c], *y = &d.cols[c];
		if (strcmp(b->names[c], d.names[c]) || x->type != y->type)
			abort();
		for (uint32_t r = 0; r < d.nrows; r++) {
			if (st_vec_is_valid(x, r) != st_vec_is_valid(y, r))
				abort();
			if (st_type_is_varlen(x->type)) {
				const uint8_t *p, *q;
				uint32_t n, k;
				st_vec_str(x, r, &p, &n);
				st_vec_str(y, r, &q, &k);
				if (n != k || memcmp(p, q, n))
					abort();
			} else {
				size_t w = st_type_width(x->type);
				if (memcmp((const uint8_t *)x->data + w * r, (const uint8_t *)y->data + w * r, w))
					abort();
			}
		}
	}
	wire_batch_fini(&d);
	wire_msg_fini(&m);
	wire_out_fini(&o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wire_msg m;
	if (wire_parse(data, size, &m, NULL) == ST_OK) {
		if (m.error) {
			struct wire_error e;
			wire_error_decode(m.error, &e);
		}
		for (uint32_t key = 1; key <= 2; key++) {
			struct wire_batch b;
			if (wire_batch_decode(wire_get(m.body, key), 1u << 20, &b, NULL) == ST_OK)
				same_after_reencode(&b);
			wire_batch_fini(&b);
		}
		char buf[64];
		wire_get_strbuf(m.body, 0, buf, sizeof buf);
	}
	wire_msg_fini(&m);
	return 0;
}
