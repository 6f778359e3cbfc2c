/*
 * format/dv.h — deletion vectors (FORMAT.md §10): the sorted set of
 * deleted row positions of one segment, encoded as gaps, LZ4-compressed
 * gaps or a bitmap, whichever is smallest, and CRC-checked.
 */
#ifndef STRATA_FORMAT_DV_H
#define STRATA_FORMAT_DV_H

#include <stddef.h>
#include <stdint.h>

#include "format/bytes.h"
#include "format/error.h"

#define DV_FORMAT 1
#define DV_HEADER 16 /* bytes before the payload */
#define DV_MIN (DV_HEADER + 4)
enum { DV_GAPS = 0, DV_GAPS_LZ4 = 1, DV_BITMAP = 2 };

/* Append the DV of the n (1 <= n <= universe) strictly
 * increasing positions pos, all below universe, to out. ST_EINVAL when
 * the set is empty or out of order, ST_ENOMEM. */
int dv_encode(const uint32_t *pos, uint32_t n, uint32_t universe, struct st_buf *out,
	      struct st_err *err);

/* Check a DV and decode it into *pos (malloc'ed, *n entries, strictly
 * increasing), for a segment of universe rows. ST_ECORRUPT naming the
 * failed check, ST_ENOMEM. */
int dv_decode(const uint8_t *p, size_t len, uint32_t universe, uint32_t **pos, uint32_t *n,
	      struct st_err *err);

/* The cardinality a DV's header claims (0 when it is too short to say).
 * Cheap: for counts; dv_decode checks everything. */
uint32_t dv_cardinality(const uint8_t *p, size_t len);

/* The union of two strictly increasing sets into *out (malloc'ed, *n
 * entries). ST_ENOMEM. */
int dv_union(const uint32_t *a, uint32_t na, const uint32_t *b, uint32_t nb, uint32_t **out,
	     uint32_t *n);

/* Whether position p is in the set (binary search). */
bool dv_has(const uint32_t *pos, uint32_t n, uint32_t p);

/* The first index i of pos with pos[i] >= p (binary search; n if none). */
uint32_t dv_lower(const uint32_t *pos, uint32_t n, uint32_t p);

/* Remove from sel (nsel strictly increasing row indexes of a row group
 * whose first row is position row0) the rows that del (ndel positions,
 * strictly increasing, all in [row0, row0 + rows)) lists; returns the
 * count left. sel NULL means every row 0..nsel-1: the kept rows are then
 * written to out (room for nsel), else sel is filtered in place and out
 * is unused. */
uint32_t dv_filter(const uint32_t *del, uint32_t ndel, uint64_t row0, uint32_t *sel,
		   uint32_t nsel, uint32_t *out);

#endif
