/*
 * tests/fuzz/fuzz_wire.c — libFuzzer target for what stratad decodes off
 * the socket (format/PROTOCOL.md): the envelope, the error map, and a batch
 * in the body's key 1 or 2. A batch that decodes must re-encode to a batch
 * that decodes to the same rows (abort otherwise). Hostile bytes must give
 * an error, never a crash. The typed getters (wire_field_*) must tell a
 * present key from an absent one on any body, and a re-encoded message
 * must pass wire_end.
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
	msgpack_pack_uint32(&o.pk, WIRE_WRITE_Q_BATCH);
	wire_pack_batch(&o, b->ncols, (const char *const *)b->names, b->cols, NULL, b->nrows);
	if (wire_end(&o, NULL) != ST_OK || wire_parse(o.buf.data, o.buf.len, &m, NULL) != ST_OK ||
	    wire_batch_decode(wire_get(m.body, WIRE_WRITE_Q_BATCH), UINT32_MAX, &d, NULL) != ST_OK ||
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
		/* The typed getters: 1, 0 or an error, never anything else; an
		 * error comes with a message naming the key. */
		for (uint32_t key = 0; key < 8; key++) {
			struct st_err err;
			uint64_t u;
			int64_t i;
			bool b;
			const char *p;
			uint32_t n;
			const msgpack_object *o;
			int r[7] = {
				wire_field_u64(m.body, "fuzz", key, "k", &u, &err),
				wire_field_i64(m.body, "fuzz", key, "k", &i, &err),
				wire_field_bool(m.body, "fuzz", key, "k", &b, &err),
				wire_field_str(m.body, "fuzz", key, "k", &p, &n, &err),
				wire_field_strbuf(m.body, NULL, key, "k", buf, sizeof buf, &err),
				wire_field_map(m.body, "fuzz", key, "k", &o, &err),
				wire_field_array(m.body, "fuzz", key, "k", &o, &err)};
			bool present = wire_get(m.body, key) != NULL;
			for (int k = 0; k < 7; k++)
				if (r[k] != 1 && r[k] != 0 && r[k] != ST_EPROTO && r[k] != ST_EINVAL)
					abort();
				else if ((r[k] == 0) == present)
					abort();
		}
	}
	wire_msg_fini(&m);
	return 0;
}
