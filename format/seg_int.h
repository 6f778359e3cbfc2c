/*
 * format/seg_int.h — private to the segment writer and reader: the fixed
 * parts of FORMAT.md §3 (header, tail, limits) and the schema rules.
 */
#ifndef STRATA_FORMAT_SEG_INT_H
#define STRATA_FORMAT_SEG_INT_H

#include <stdint.h>

#include "format/error.h"
#include "format/types.h"

#define SEG_HEADER_SIZE 20
#define SEG_TAIL_SIZE 16
#define SEG_BOM 0x1A2B3C4Du
#define SEG_MAX_CHUNK_BYTES (1u << 30)
#define SEG_MAX_FOOTER_BYTES (256u << 20)

enum { SEG_COMP_NONE = 0, SEG_COMP_LZ4 = 1 };

extern const uint8_t seg_magic[8];      /* header magic */
extern const uint8_t seg_tail_magic[8]; /* tail magic: header magic reversed */

/* Write the 20-byte header of FORMAT.md §3.1. */
void seg_put_header(uint8_t *hdr);
/* Write the 16-byte tail of FORMAT.md §3.2. */
void seg_put_tail(uint8_t *tail, uint32_t footer_len, uint32_t footer_crc);

/* Check a schema: 1..ST_MAX_COLUMNS fields, supported types, names of
 * 1..255 bytes, unique case-insensitively, field ids unique.
 * Errors: ST_EINVAL with the offending column named. */
int seg_schema_check(const struct st_schema *s, struct st_err *err);

#endif
