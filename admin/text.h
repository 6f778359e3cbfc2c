/*
 * admin/text.h — values as text for people and pipes: the formats of
 * `strata scan` and `strata query` (table, CSV, JSON Lines), and parsing of
 * the CLI's schema and timestamp arguments.
 */
#ifndef STRATA_ADMIN_TEXT_H
#define STRATA_ADMIN_TEXT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "format/bytes.h"
#include "format/types.h"

enum tx_format { TX_TABLE, TX_CSV, TX_JSONL };

/* Append row r of v to out as text: numbers as numbers (float64 so that it
 * reads back exactly), bool true/false, date YYYY-MM-DD, timestamp
 * YYYY-MM-DD HH:MM:SS[.ffffff] (UTC), strings raw, binary as hex. A NULL
 * appends nothing and returns false. */
bool tx_value(struct st_buf *out, const struct st_vec *v, uint32_t r);
/* Append s quoted for CSV when needed (delimiter, quote, CR or LF). */
void tx_csv_field(struct st_buf *out, const char *s, size_t n, char delim);
/* Append s as a JSON string (with quotes and escapes). */
void tx_json_string(struct st_buf *out, const char *s, size_t n);

/* Prints batches of rows in one of the formats. The table format holds up
 * to 1000 rows to size its columns, then streams with those widths. */
struct tx_printer;
struct tx_printer *tx_printer_new(FILE *out, enum tx_format f, uint32_t ncols,
				  const char *const *names);
void tx_printer_rows(struct tx_printer *p, const struct st_vec *cols, uint32_t nrows);
/* Flush and free; returns the rows printed. */
uint64_t tx_printer_end(struct tx_printer *p);

/*
 * Parse a schema "id int64 not null, ts timestamp, sensor string" into
 * names, types and nullability: three malloc'ed arrays of the column count,
 * each name malloc'ed and NUL-terminated; the caller frees every name and
 * the three arrays. Returns the column count (> 0), or -1 with a message in
 * err (naming the column) and nothing left to free (the three are NULL).
 */
int tx_parse_schema(const char *text, char ***names, int **types, bool **nullable, char *err,
		    size_t errlen);
/* A timestamp argument: 'YYYY-MM-DD[ HH:MM:SS[.ffffff]]' (UTC) or an
 * integer of microseconds since the epoch. */
bool tx_parse_time(const char *s, int64_t *us);

#endif
