/*
 * daemon/store/query.h — grouped aggregation next to the data (the QUERY request
 * of format/PROTOCOL.md).
 *
 * One scan of the table at `at` reads only the group and aggregate columns
 * (and the predicate's); each batch is folded into per-group accumulators
 * in tight loops. Groups on one dictionary-encoded string column are found
 * once per distinct dictionary entry, not once per row.
 *
 * Aggregates: count(*), count(col) (non-null values), sum(col) and avg(col)
 * of int32/int64/float64 columns (sum of integers is int64, wrapping on
 * overflow; avg is float64), min(col)/max(col) of any orderable column
 * (bool excluded). NULL values are skipped; a group whose values are all
 * NULL gets NULL for sum/avg/min/max and 0 for count. Group keys may be
 * NULL (one group for NULL).
 *
 * Result column types come from the table's schema at the version read,
 * whether or not any row matched: group columns and min/max keep their
 * column's type, count is int64, avg float64, sum int64 of integers and
 * float64 of float64. Over no rows (an empty table, version 0, a predicate
 * that selects nothing) a query without group-by still gives one row,
 * count 0 and sum/avg/min/max NULL, as SQL does; with group-by it gives
 * no rows.
 */
#ifndef STRATA_DAEMON_QUERY_H
#define STRATA_DAEMON_QUERY_H

#include "daemon/store/strata.h"

enum sd_agg_fn { SD_AGG_COUNT, SD_AGG_SUM, SD_AGG_MIN, SD_AGG_MAX, SD_AGG_AVG };

struct sd_agg {
	enum sd_agg_fn fn;  /* function */
	const char *column; /* column, or NULL for count(*) */
};

/* A query result: group columns, then one column per aggregate. */
struct sd_query_result {
	uint32_t ncols;         /* columns */
	char **names;           /* "sensor", "sum(value)", ... (owned) */
	struct st_vec *cols;    /* plain vectors of nrows rows (owned buffers) */
	uint32_t nrows;         /* groups */
	uint64_t rows_matched;  /* rows that passed the predicate */
	struct st_scan_stats read; /* what the scan read and pruned */
	uint64_t version;       /* table version read */
	void **owned;           /* buffers to free */
	uint32_t nowned;
};

/* Parse "sum(value)" / "count(*)" into an aggregate (column points into
 * text, which must outlive it; the closing parenthesis is replaced by NUL
 * in the copy the caller passes). Returns false on a malformed one. */
bool sd_agg_parse(char *text, struct sd_agg *out);

/* Run the query. Errors: as st_scan_open, plus ST_EINVAL (an aggregate
 * that does not apply to its column's type; no aggregate and no group),
 * ST_ETOOBIG (more than max_groups groups). */
int sd_query(st_store *s, const char *table, struct st_at at, const char *const *group,
	     uint32_t ngroup, const struct sd_agg *aggs, uint32_t naggs, const char *predicate,
	     uint32_t max_groups, struct sd_query_result *out, struct st_err *err);
void sd_query_result_fini(struct sd_query_result *r);

#endif
