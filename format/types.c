/*
 * format/types.c — type names, schema lookup, value comparison.
 * Pure functions; thread-safe.
 */
#include "format/types.h"
#include "format/error.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>

static const struct {
	const char *name;
	int type;
} st_type_names[] = {
	{"bool", ST_TYPE_BOOL},       {"boolean", ST_TYPE_BOOL},
	{"int32", ST_TYPE_INT32},     {"int", ST_TYPE_INT32},
	{"integer", ST_TYPE_INT32},   {"int64", ST_TYPE_INT64},
	{"bigint", ST_TYPE_INT64},    {"float64", ST_TYPE_FLOAT64},
	{"double", ST_TYPE_FLOAT64},  {"float", ST_TYPE_FLOAT64},
	{"string", ST_TYPE_STRING},   {"text", ST_TYPE_STRING},
	{"varchar", ST_TYPE_STRING},  {"binary", ST_TYPE_BINARY},
	{"date", ST_TYPE_DATE},       {"timestamp", ST_TYPE_TIMESTAMP},
};

bool st_type_is_supported(int type)
{
	switch (type) {
	case ST_TYPE_BOOL: case ST_TYPE_INT32: case ST_TYPE_INT64:
	case ST_TYPE_FLOAT64: case ST_TYPE_STRING: case ST_TYPE_BINARY:
	case ST_TYPE_DATE: case ST_TYPE_TIMESTAMP:
		return true;
	default:
		return false;
	}
}

const char *st_type_name(int type)
{
	switch (type) {
	case ST_TYPE_BOOL: return "bool";
	case ST_TYPE_INT32: return "int32";
	case ST_TYPE_INT64: return "int64";
	case ST_TYPE_FLOAT32: return "float32";
	case ST_TYPE_FLOAT64: return "float64";
	case ST_TYPE_DECIMAL: return "decimal";
	case ST_TYPE_STRING: return "string";
	case ST_TYPE_BINARY: return "binary";
	case ST_TYPE_DATE: return "date";
	case ST_TYPE_TIMESTAMP: return "timestamp";
	default: return "?";
	}
}

int st_type_from_name(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof st_type_names / sizeof st_type_names[0]; i++)
		if (strlen(st_type_names[i].name) == len &&
		    strncasecmp(st_type_names[i].name, name, len) == 0)
			return st_type_names[i].type;
	return 0;
}

size_t st_type_width(int type)
{
	switch (type) {
	case ST_TYPE_BOOL: return 1;
	case ST_TYPE_INT32: case ST_TYPE_DATE: return 4;
	case ST_TYPE_INT64: case ST_TYPE_TIMESTAMP: case ST_TYPE_FLOAT64: return 8;
	default: return 0;
	}
}

bool st_type_is_integer(int type)
{
	return type == ST_TYPE_INT32 || type == ST_TYPE_INT64 ||
	       type == ST_TYPE_DATE || type == ST_TYPE_TIMESTAMP;
}

bool st_type_is_varlen(int type)
{
	return type == ST_TYPE_STRING || type == ST_TYPE_BINARY;
}

int st_schema_find(const struct st_schema *s, const char *name, size_t len)
{
	for (uint32_t i = 0; i < s->nfields; i++)
		if (strlen(s->fields[i].name) == len &&
		    strncasecmp(s->fields[i].name, name, len) == 0)
			return (int)i;
	return -1;
}

void st_stats_copy(struct st_col_stats *dst, const struct st_col_stats *src)
{
	*dst = *src;
	if (st_type_is_varlen(src->min.type))
		dst->min.v.s.ptr = dst->min_buf;
	if (st_type_is_varlen(src->max.type))
		dst->max.v.s.ptr = dst->max_buf;
}

int st_value_cmp(const struct st_value *a, const struct st_value *b)
{
	switch (a->type) {
	case ST_TYPE_BOOL:
		return (int)a->v.b - (int)b->v.b;
	case ST_TYPE_INT32: case ST_TYPE_DATE:
		return (a->v.i32 > b->v.i32) - (a->v.i32 < b->v.i32);
	case ST_TYPE_INT64: case ST_TYPE_TIMESTAMP:
		return (a->v.i64 > b->v.i64) - (a->v.i64 < b->v.i64);
	case ST_TYPE_FLOAT64:
		return (a->v.f64 > b->v.f64) - (a->v.f64 < b->v.f64);
	case ST_TYPE_STRING: case ST_TYPE_BINARY: {
		uint32_t n = a->v.s.len < b->v.s.len ? a->v.s.len : b->v.s.len;
		int c = n ? memcmp(a->v.s.ptr, b->v.s.ptr, n) : 0;
		if (c)
			return c;
		return (a->v.s.len > b->v.s.len) - (a->v.s.len < b->v.s.len);
	}
	default:
		return 0;
	}
}

/* ---- calendar (proleptic Gregorian, UTC) ---- */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const unsigned yoe = (unsigned)(y - era * 400);
	const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

void st_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	const unsigned doe = (unsigned)(z - era * 146097);
	const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	const unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* n decimal digits at s, or -1. */
static int digits(const char *s, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

bool st_parse_datetime(const char *s, size_t n, bool date_only, int64_t *days, int64_t *us)
{
	/* Fixed positions: hand-parsed, since CSV loads call this per value. */
	int y, mo, d, h = 0, mi = 0, se = 0;
	long frac = 0;
	if (n < 10 || (y = digits(s, 4)) < 0 || s[4] != '-' || (mo = digits(s + 5, 2)) < 0 ||
	    s[7] != '-' || (d = digits(s + 8, 2)) < 0)
		return false;
	size_t r = 10;
	if (r < n && !date_only) {
		if (n < 19 || (s[10] != ' ' && s[10] != 'T') || (h = digits(s + 11, 2)) < 0 ||
		    s[13] != ':' || (mi = digits(s + 14, 2)) < 0 || s[16] != ':' ||
		    (se = digits(s + 17, 2)) < 0)
			return false;
		r = 19;
		if (r < n && s[r] == '.') {
			int nd = 0;
			r++;
			while (r < n && s[r] >= '0' && s[r] <= '9' && nd < 6) {
				frac = frac * 10 + (s[r++] - '0');
				nd++;
			}
			if (nd == 0 || (r < n && s[r] >= '0' && s[r] <= '9'))
				return false;
			while (nd++ < 6)
				frac *= 10;
		}
		if (r < n && s[r] == 'Z')
			r++;
	}
	if (r != n)
		return false;
	static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap) ||
	    h > 23 || mi > 59 || se > 59)
		return false;
	*days = days_from_civil(y, (unsigned)mo, (unsigned)d);
	*us = ((*days * 86400 + h * 3600 + mi * 60 + se) * 1000000) + frac;
	return true;
}

int st_parse_size(const char *text, uint64_t *bytes)
{
	char *end;
	if (!text || !isdigit((unsigned char)text[0]))
		return ST_EINVAL;
	errno = 0;
	unsigned long long n = strtoull(text, &end, 10);
	uint64_t unit = !*end || !strcasecmp(end, "b") ? 1
		      : !strcasecmp(end, "k") || !strcasecmp(end, "kb") || !strcasecmp(end, "kib") ? 1024
		      : !strcasecmp(end, "m") || !strcasecmp(end, "mb") || !strcasecmp(end, "mib") ? 1024 * 1024
		      : !strcasecmp(end, "g") || !strcasecmp(end, "gb") || !strcasecmp(end, "gib")
			? 1024ull * 1024 * 1024 : 0;
	if (!unit || errno == ERANGE || n > UINT64_MAX / unit)
		return ST_EINVAL;
	*bytes = n * unit;
	return ST_OK;
}

int st_parse_duration(const char *text, int64_t *us)
{
	char *end;
	if (!text || !isdigit((unsigned char)text[0]))
		return ST_EINVAL;
	errno = 0;
	unsigned long long n = strtoull(text, &end, 10);
	int64_t unit = !*end || !strcmp(end, "s") ? 1000000LL
		     : !strcmp(end, "m") ? 60 * 1000000LL
		     : !strcmp(end, "h") ? 3600 * 1000000LL
		     : !strcmp(end, "d") ? 86400 * 1000000LL : 0;
	if (!unit || errno == ERANGE || n > (unsigned long long)(INT64_MAX / unit))
		return ST_EINVAL;
	*us = (int64_t)n * unit;
	return ST_OK;
}
