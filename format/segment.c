/*
 * format/segment.c — what the segment writer and reader share: the header
 * and tail layouts (FORMAT.md §3.1, §3.2) and the schema rules (§4.1).
 */
#include <string.h>
#include <strings.h>

#include "format/bytes.h"
#include "format/chunk_int.h"
#include "format/crc32c.h"
#include "format/seg_int.h"
#include "format/segment.h"

const uint8_t seg_magic[8] = {0x89, 'S', 'T', 'R', 'A', 'T', 'A', '\n'};
const uint8_t seg_tail_magic[8] = {'\n', 'A', 'T', 'A', 'R', 'T', 'S', 0x89};

void seg_put_header(uint8_t *hdr)
{
	memcpy(hdr, seg_magic, 8);
	st_put_le32(hdr + 8, SEG_BOM);
	st_put_le16(hdr + 12, SEG_MAJOR);
	st_put_le16(hdr + 14, SEG_MINOR);
	st_put_le32(hdr + 16, st_crc32c(0, hdr, 16));
}

void seg_put_tail(uint8_t *tail, uint32_t footer_len, uint32_t footer_crc)
{
	st_put_le32(tail, footer_len);
	st_put_le32(tail + 4, footer_crc);
	memcpy(tail + 8, seg_tail_magic, 8);
}

int seg_schema_check(const struct st_schema *s, struct st_err *err)
{
	if (!s || s->nfields == 0 || s->nfields > ST_MAX_COLUMNS)
		return st_seterr(err, ST_EINVAL, "a schema needs 1 to %d columns", ST_MAX_COLUMNS);
	for (uint32_t i = 0; i < s->nfields; i++) {
		const struct st_field *f = &s->fields[i];
		size_t len = strnlen(f->name, sizeof f->name);
		if (len == 0 || len > ST_NAME_MAX)
			return st_seterr(err, ST_EINVAL, "column %u: name must be 1 to %d bytes",
					 i, ST_NAME_MAX);
		if (!chunk_utf8_is_valid((const uint8_t *)f->name, len))
			return st_seterr(err, ST_EINVAL, "column %u: name is not valid UTF-8", i);
		if (!st_type_is_supported(f->type))
			return st_seterr(err, ST_EINVAL, "column '%s': type id %d is not supported",
					 f->name, f->type);
		for (uint32_t j = 0; j < i; j++) {
			if (strcasecmp(s->fields[j].name, f->name) == 0)
				return st_seterr(err, ST_EINVAL,
						 "column '%s' appears twice (names are case-insensitive)",
						 f->name);
			if (s->fields[j].id == f->id)
				return st_seterr(err, ST_EINVAL,
						 "columns '%s' and '%s' share field id %u",
						 s->fields[j].name, f->name, f->id);
		}
	}
	return ST_OK;
}

void seg_stats_put(struct st_buf *b, const struct st_col_stats *st, int type)
{
	chunk_put_stats(b, st, type);
}

bool seg_stats_get(struct st_cur *c, int type, struct st_col_stats *st)
{
	return chunk_get_stats(c, type, st);
}
