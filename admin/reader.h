/*
 * admin/reader.h — text input for `strata load`: CSV and JSON Lines turned
 * into typed column batches for the wire protocol.
 *
 * CSV (RFC 4180): a header line names the columns; fields are separated by
 * a delimiter (default ','); a field may be quoted with '"' ('""' inside is
 * one quote; quoted fields may hold delimiters and newlines); records end
 * with LF or CRLF; a UTF-8 byte-order mark is skipped; blank lines are
 * skipped. An empty unquoted field is NULL; a quoted empty field ("") is
 * the empty string in a string column and NULL elsewhere.
 *
 * JSON Lines: one JSON object per line, keys are column names, values are
 * scalars (string, number, true/false, null); a missing key is NULL.
 *
 * Text is converted by the table's column types: integers, float64
 * (decimal or exponent notation, inf, nan), bool (true/false, t/f, 1/0,
 * case-insensitive), date 'YYYY-MM-DD', timestamp
 * 'YYYY-MM-DD[ |T]HH:MM:SS[.ffffff][Z]' (UTC), string and binary as given.
 * Column names match case-insensitively.
 *
 * Columns the table does not have are an error unless infer_unknown
 * (--merge-schema): their type is then inferred from the first batch —
 * CSV: int64 if every value is an integer, else float64 if every value is a
 * number, else timestamp if every value is one, else string; JSON: from the
 * first non-null value (integer → int64, other number → float64, true/false
 * → bool, string → string). A new key that first appears after the first
 * batch is an error.
 *
 * Every error names FILE:LINE:COLUMN (line and column 1-based, column in
 * bytes), the table column and the offending text.
 *
 * Memory is bounded by the batch: rd_next reuses its buffers.
 */
#ifndef STRATA_ADMIN_READER_H
#define STRATA_ADMIN_READER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "format/error.h"
#include "format/types.h"

enum rd_format { RD_CSV = 1, RD_JSONL = 2 };

struct rd_opts {
	int format;            /* enum rd_format */
	char delim;            /* CSV field delimiter; 0 = ',' */
	uint32_t batch_rows;   /* rows per batch; 0 = 65536 */
	const char *name;      /* the input's name in messages; NULL = "<input>" */
	bool infer_unknown;    /* accept columns the table lacks, inferring their type */
	const char *unknown_hint; /* said after "is not in the table" (NULL: how
				   * --merge-schema adds such a column) */
};

typedef struct rd_reader rd_reader;

/* Start reading in (not closed by the reader) for a table with schema
 * table. CSV: reads the header. With infer_unknown, reads the first batch
 * ahead to settle the types of new columns.
 * Errors: ST_EINVAL / ST_ESCHEMA (bad header, unknown or duplicate column,
 * bad value in the first batch), ST_ENOMEM, errno (read error). */
int rd_open(FILE *in, const struct st_schema *table, const struct rd_opts *opts, rd_reader **out,
	    struct st_err *err);

/* The columns of the input, in input order, with the table's names, types,
 * nullability and field ids (new columns: id 0, nullable). Valid until
 * rd_close. */
const struct st_schema *rd_schema(const rd_reader *r);

/* The next batch: *cols has rd_schema(r)->nfields vectors of *nrows rows,
 * valid until the next rd_next or rd_close. Batches are full (batch_rows)
 * except the last. Returns 1 with a batch, 0 at the end of the input
 * (*nrows = 0), or a negative/errno code with err set (see rd_open). */
int rd_next(rd_reader *r, const struct st_vec **cols, uint32_t *nrows, struct st_err *err);

/* Input bytes consumed and rows returned so far. */
uint64_t rd_bytes(const rd_reader *r);
uint64_t rd_rows(const rd_reader *r);

/* Free the reader (NULL is fine). */
void rd_close(rd_reader *r);

#endif
