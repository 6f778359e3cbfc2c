/*
 * format/types.h — column types, schemas, values, column vectors and
 * column statistics: the in-memory vocabulary shared by the segment format
 * (segment.h) and the predicate language (expr.h).
 *
 * Type ids are the fixed numbers of FORMAT.md §2: they are written to disk
 * and must never be renumbered.
 */
#ifndef STRATA_FORMAT_TYPES_H
#define STRATA_FORMAT_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format/error.h"

/* On-disk type ids (FORMAT.md §2). Gaps are reserved. */
enum st_type {
	ST_TYPE_BOOL = 1,      /* uint8_t 0/1 in vectors */
	ST_TYPE_INT32 = 2,     /* int32_t */
	ST_TYPE_INT64 = 3,     /* int64_t */
	ST_TYPE_FLOAT32 = 4,   /* reserved */
	ST_TYPE_FLOAT64 = 5,   /* double */
	ST_TYPE_DECIMAL = 6,   /* reserved */
	ST_TYPE_STRING = 7,    /* UTF-8, validated on write */
	ST_TYPE_BINARY = 8,    /* arbitrary bytes */
	ST_TYPE_DATE = 9,      /* int32_t days since 1970-01-01 */
	ST_TYPE_TIMESTAMP = 10 /* int64_t microseconds since epoch, UTC */
	/* 32..63 reserved for nested types (list, struct, map) */
};

/* Largest name of a column, in bytes. */
#define ST_NAME_MAX 255
/* Largest number of columns of a schema. */
#define ST_MAX_COLUMNS 4096

/* True for the types this build can store. */
bool st_type_is_supported(int type);
/* "int64", "timestamp", ...; "?" for an unknown id. */
const char *st_type_name(int type);
/* Parse a type name (case-insensitive; accepts the names above plus
 * "int"/"integer"→int32, "bigint"→int64, "double"/"float"→float64,
 * "text"/"varchar"→string, "boolean"→bool). Returns 0 when unknown. */
int st_type_from_name(const char *name, size_t len);
/* Bytes per value in a vector for fixed-width types; 0 for string/binary. */
size_t st_type_width(int type);
/* True for int32, int64, date, timestamp. */
bool st_type_is_integer(int type);
/* True for string and binary. */
bool st_type_is_varlen(int type);

/* One column of a schema. */
struct st_field {
	uint32_t id;                /* stable field id; never reused in a table */
	uint8_t type;               /* enum st_type */
	bool nullable;              /* false = NOT NULL */
	char name[ST_NAME_MAX + 1]; /* NUL-terminated column name */
};

/* A schema: an ordered list of fields. Caller-owned storage. */
struct st_schema {
	uint32_t nfields;          /* number of fields */
	struct st_field *fields;   /* nfields entries */
};

/* Index of the field named name (case-insensitive), or -1. */
int st_schema_find(const struct st_schema *s, const char *name, size_t len);

/*
 * A scalar value: a literal in a predicate, or a min/max statistic.
 * For string/binary, s.ptr is borrowed from whoever produced the value.
 */
struct st_value {
	uint8_t type;   /* enum st_type */
	bool is_null;   /* true = SQL NULL */
	union {
		bool b;
		int32_t i32;  /* int32, date */
		int64_t i64;  /* int64, timestamp */
		double f64;   /* float64 */
		struct {
			const uint8_t *ptr;
			uint32_t len;
		} s;          /* string, binary */
	} v;
};

/*
 * A column vector: n values of one column.
 *
 * validity: NULL when every value is present; otherwise bit i
 *   (validity[i >> 3] >> (i & 7) & 1) is 1 when row i is non-null.
 *   The data slot of a null row holds an unspecified value.
 * Fixed-width types: data points at n values of st_type_width(type) bytes
 *   (bool as uint8_t 0/1).
 * string/binary, plain form (dict == NULL): offsets has n + 1 entries,
 *   value i is bytes[offsets[i] .. offsets[i + 1]).
 * string/binary, dictionary form (dict != NULL): codes has n entries,
 *   each < dict->n; value i is dict's value codes[i]. dict is itself a
 *   plain vector without nulls.
 *
 * Ownership: whoever fills the vector owns the buffers; readers state how
 * long the vectors they return stay valid.
 */
struct st_vec {
	uint8_t type;               /* enum st_type */
	uint32_t n;                 /* number of rows */
	const uint8_t *validity;    /* NULL = no nulls; else bitmap, 1 = valid */
	const void *data;           /* fixed-width values */
	const uint32_t *offsets;    /* varlen plain: n + 1 offsets into bytes */
	const uint8_t *bytes;       /* varlen plain: value bytes */
	const uint32_t *codes;      /* varlen dictionary: n codes */
	const struct st_vec *dict;  /* varlen dictionary: the distinct values */
};

static inline bool st_vec_is_valid(const struct st_vec *v, uint32_t i)
{
	return !v->validity || ((v->validity[i >> 3] >> (i & 7)) & 1);
}

/* Bytes of value i of a string/binary vector in either form. */
static inline void st_vec_str(const struct st_vec *v, uint32_t i,
			      const uint8_t **ptr, uint32_t *len)
{
	if (v->dict) {
		i = v->codes[i];
		v = v->dict;
	}
	*ptr = v->bytes + v->offsets[i];
	*len = v->offsets[i + 1] - v->offsets[i];
}

/* Longest string/binary prefix kept in min/max statistics. */
#define ST_STAT_PREFIX_MAX 32

/*
 * Statistics of one column over a set of rows (a chunk or a file).
 * min/max are bounds over the non-null values: min <= every value <= max.
 * For string/binary they may be truncated prefixes (min_exact/max_exact
 * false) that remain correct bounds; their bytes live in min_buf/max_buf.
 * has_minmax is false when there is no non-null value, or when no bound
 * could be kept (a float64 chunk holding NaN: NaN is not ordered).
 */
struct st_col_stats {
	uint64_t rows;          /* rows covered */
	uint64_t null_count;    /* null rows among them */
	uint32_t dict_size;     /* distinct values in the chunk's dictionary; 0 = not dictionary-encoded */
	bool has_minmax;        /* min and max are set */
	bool min_exact;         /* min is a value of the column, not a prefix */
	bool max_exact;         /* max is a value of the column, not a bound */
	struct st_value min;    /* lower bound; s.ptr points into min_buf */
	struct st_value max;    /* upper bound; s.ptr points into max_buf */
	uint8_t min_buf[ST_STAT_PREFIX_MAX]; /* storage for a string min */
	uint8_t max_buf[ST_STAT_PREFIX_MAX]; /* storage for a string max */
};

/* Copy stats, fixing the string pointers to point into dst's buffers. */
void st_stats_copy(struct st_col_stats *dst, const struct st_col_stats *src);

/* Compare two non-null values of the same type: <0, 0, >0. Strings and
 * binary compare bytewise (unsigned), shorter prefix first. float64 uses
 * numeric order (callers keep NaN out). */
int st_value_cmp(const struct st_value *a, const struct st_value *b);

/*
 * Text form of dates and timestamps: 'YYYY-MM-DD[( |T)HH:MM:SS[.ffffff]][Z]'
 * (UTC). With date_only, only 'YYYY-MM-DD'. On success *days is the day
 * number and *us the microseconds since the epoch; false when malformed or
 * not a calendar date. s need not be NUL-terminated.
 */
bool st_parse_datetime(const char *s, size_t n, bool date_only, int64_t *days, int64_t *us);
/* Year, month (1-12) and day (1-31) of a day number (days since 1970-01-01). */
void st_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);
/* Parse a duration: N (seconds), Ns, Nm, Nh, Nd into microseconds.
 * ST_EINVAL when malformed or out of range. */
int st_parse_duration(const char *text, int64_t *us);
/* A size: N bytes, or N with K/KB/KiB, M/MB/MiB, G/GB/GiB (powers of 1024,
 * case-insensitive) into *bytes; ST_EINVAL otherwise. */
int st_parse_size(const char *text, uint64_t *bytes);

#endif
