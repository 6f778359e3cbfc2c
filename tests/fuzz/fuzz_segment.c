/*
 * tests/fuzz/fuzz_segment.c — libFuzzer target for the segment reader.
 *
 * The input is a whole segment file, served from memory through the st_io
 * seam. Open, walk the metadata and statistics, decode every row group and
 * touch every decoded value: the reader must return an error or valid
 * vectors, never crash, hang or read out of bounds (ASan/UBSan watch).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "format/segment.h"

static const uint8_t *fz_data;
static size_t fz_size;

static int fz_open(const char *p, int f, int m)
{
	(void)p, (void)f, (void)m;
	return 3;
}

static ssize_t fz_pread(int fd, void *b, size_t n, off_t off)
{
	(void)fd;
	if ((uint64_t)off >= fz_size)
		return 0;
	if (n > fz_size - (size_t)off)
		n = fz_size - (size_t)off;
	memcpy(b, fz_data + off, n);
	return (ssize_t)n;
}

static int fz_close(int fd)
{
	(void)fd;
	return 0;
}

static int fz_fsize(int fd, uint64_t *size)
{
	(void)fd;
	*size = fz_size;
	return 0;
}

static const struct st_io fz_io = {.open = fz_open, .pread = fz_pread, .close = fz_close,
				   .fsize = fz_fsize};

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
	fz_data = data;
	fz_size = size;
	if (seg_reader_open("fuzz.seg", &fz_io, &r, &err) != ST_OK)
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
