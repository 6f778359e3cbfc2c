/*
 * format/inspect.h — a human-readable report of a segment: schema, row
 * groups, every chunk's encoding, compression, sizes and statistics, and a
 * verification of every checksum. Behind `strata-inspect` (and later
 * `strata inspect`).
 */
#ifndef STRATA_FORMAT_INSPECT_H
#define STRATA_FORMAT_INSPECT_H

#include <stdbool.h>
#include <stdio.h>

#include "format/error.h"
#include "format/types.h"

/* Write the report on path to out. With chunks false, the per-chunk lines
 * are left out (the summary per column stays). Returns ST_OK when the file
 * verified, else the error (set in err; a failed verification is also
 * reported in out, after everything the footer showed). */
int seg_inspect(const char *path, FILE *out, bool chunks, struct st_err *err);

/* Format a value for people: timestamps as ISO-8601 UTC with microseconds,
 * dates as YYYY-MM-DD, strings quoted with non-printables escaped. */
void st_value_format(const struct st_value *v, char *buf, size_t len);

#endif
