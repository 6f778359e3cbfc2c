/*
 * format/types.c — type names, schema lookup, value comparison.
 * Pure functions; thread-safe.
 */
#include "format/types.h"

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
