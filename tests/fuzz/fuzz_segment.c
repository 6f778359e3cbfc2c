/*
 * tests/fuzz/fuzz_segment.c — libFuzzer target for the segment reader.
 *
 * The input is a whole segment file, read from memory
 * (seg_reader_open_mem). Open, walk the metadata and statistics, decode every row group and
 * touch every decoded value: the reader must return an error or valid
 * vectors, never crash, hang or read out of bounds (ASan/UBSan watch).
 */
#include <stdint.h>
#include <string.h>

#include "format/segment.h"

/* Read every value so that a bad pointer or length shows up under ASan. */
static uint64_t touch(const struct st_vec *v)
{
	uint64_t h = 0;
	size_t width = st_type_width(v->type);
	for (uint32_t i = 0; i < v->n; i++) {
		h += st_vec_is_valid(v, i);
		if (width) {
			const uint8_t *p = (const uint8_t *)v->data + (size_t)i * width;
			h += p[0] + p[width - 1];
		} else if (v->type) {
			const uint8_t *p;
			uint32_t len;
			st_vec_str(v, i, &p, &len);
			if (len)
				h += p[0] + p[len - 1];
		}
	}
	return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct seg_reader *r;
	struct st_err err;
	volatile uint64_t sink = 0;
	if (seg_reader_open_mem("fuzz.seg", data, size, &r, &err) != ST_OK)
		return 0;
	const struct st_schema *s = seg_reader_schema(r);
	for (uint32_t g = 0; g < seg_reader_row_groups(r); g++) {
		struct seg_batch *b;
		if (seg_reader_read(r, g, NULL, &b, &err) != ST_OK)
			break;
		for (uint32_t c = 0; c < s->nfields; c++)
			sink += touch(&b->cols[c]);
	}
	sink += seg_reader_file_stats(r)[0].null_count;
	(void)sink;
	seg_reader_close(r);
	return 0;
}
