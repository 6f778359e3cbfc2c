/*
 * daemon/store/widen.c — reading older segments after merge_schema widened a
 * column (DESIGN.md §7: int32→int64, int32/int64→float64, date→timestamp).
 * Segments keep the type they were written with; values and statistics
 * are converted when read. Conversions are exact except int64→float64
 * beyond 2^53, where statistics are dropped (never wrong, only unused).
 */
#include <stdlib.h>
#include <string.h>

#include "daemon/store/store_int.h"

#define US_PER_DAY 86400000000LL

bool store_widens(int from, int to)
{
	return (from == ST_TYPE_INT32 && to == ST_TYPE_INT64) ||
	       ((from == ST_TYPE_INT32 || from == ST_TYPE_INT64) && to == ST_TYPE_FLOAT64) ||
	       (from == ST_TYPE_DATE && to == ST_TYPE_TIMESTAMP);
}

static void widen_value(struct st_value *v, int to, bool *exact)
{
	int from = v->type;
	if (from == ST_TYPE_INT32 && to == ST_TYPE_INT64)
		v->v.i64 = v->v.i32;
	else if (from == ST_TYPE_DATE)
		v->v.i64 = (int64_t)v->v.i32 * US_PER_DAY;
	else if (from == ST_TYPE_INT32)
		v->v.f64 = v->v.i32;
	else { /* int64 -> float64 */
		int64_t x = v->v.i64;
		*exact = *exact && x > -(1LL << 53) && x < (1LL << 53);
		v->v.f64 = (double)x;
	}
	v->type = (uint8_t)to;
}

void store_stats_widen(struct st_col_stats *st, int to)
{
	bool exact = true;
	widen_value(&st->min, to, &exact);
	widen_value(&st->max, to, &exact);
	if (!exact)
		st->has_minmax = false;
}

int store_vec_widen(const struct st_vec *in, int to, struct st_vec *out, void **buf, size_t *cap)
{
	size_t need = ((size_t)in->n + 1) * 8;
	if (need > *cap) {
		free(*buf);
		*buf = malloc(need);
		*cap = *buf ? need : 0;
		if (!*buf)
			return ST_ENOMEM;
	}
	*out = *in;
	out->type = (uint8_t)to;
	out->data = *buf;
	if (to == ST_TYPE_FLOAT64) {
		double *d = *buf;
		for (uint32_t i = 0; i < in->n; i++)
			d[i] = in->type == ST_TYPE_INT32 ? ((const int32_t *)in->data)[i]
							 : (double)((const int64_t *)in->data)[i];
	} else {
		int64_t *d = *buf;
		int64_t mul = in->type == ST_TYPE_DATE ? US_PER_DAY : 1;
		for (uint32_t i = 0; i < in->n; i++)
			d[i] = (int64_t)((const int32_t *)in->data)[i] * mul;
	}
	return ST_OK;
}
