/*
 * tests/bench/table.c — generator of the benchmark table (table.h).
 */
#include "tests/bench/table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bench_table_init(struct bench_table *t, uint64_t n)
{
	memset(t, 0, sizeof *t);
	t->n = n;
	t->id = malloc(n * sizeof *t->id + 1);
	t->ts = malloc(n * sizeof *t->ts + 1);
	t->sensor = malloc(n * sizeof *t->sensor + 1);
	t->value = malloc(n * sizeof *t->value + 1);
	if (!t->id || !t->ts || !t->sensor || !t->value) {
		bench_table_fini(t);
		return -1;
	}
	uint64_t s = 0x2545F4914F6CDD1Dull;
#define NEXT() (s ^= s << 13, s ^= s >> 7, s ^= s << 17, s)
	for (uint64_t i = 0; i < n; i++) {
		t->id[i] = (int64_t)i;
		uint64_t r1 = NEXT();
		t->ts[i] = BENCH_TS0 + (int64_t)i * 1000 + (int64_t)(r1 % 2000) - 1000;
		uint64_t r2 = NEXT();
		t->sensor[i] = (uint32_t)(r2 % BENCH_SENSORS);
		uint64_t r3 = NEXT();
		t->value[i] = (double)(r3 % 1000000000) / 1e6;
	}
#undef NEXT
	for (uint32_t k = 0; k < BENCH_SENSORS; k++) {
		char name[16];
		snprintf(name, sizeof name, "sensor-%04u", k);
		t->dict_offsets[k] = k * 11;
		memcpy(t->dict_bytes + k * 11, name, 11);
	}
	t->dict_offsets[BENCH_SENSORS] = BENCH_SENSORS * 11;
	t->dict.type = ST_TYPE_STRING;
	t->dict.n = BENCH_SENSORS;
	t->dict.offsets = t->dict_offsets;
	t->dict.bytes = t->dict_bytes;
	static const struct { const char *name; int type; bool nullable; } f[4] = {
		{"id", ST_TYPE_INT64, false}, {"ts", ST_TYPE_TIMESTAMP, true},
		{"sensor", ST_TYPE_STRING, true}, {"value", ST_TYPE_FLOAT64, true}};
	for (int i = 0; i < 4; i++) {
		t->fields[i].id = (uint32_t)i + 1;
		t->fields[i].type = (uint8_t)f[i].type;
		t->fields[i].nullable = f[i].nullable;
		snprintf(t->fields[i].name, sizeof t->fields[i].name, "%s", f[i].name);
	}
	t->schema.nfields = 4;
	t->schema.fields = t->fields;
	return 0;
}

void bench_table_fini(struct bench_table *t)
{
	free(t->id);
	free(t->ts);
	free(t->sensor);
	free(t->value);
	t->id = t->ts = NULL;
	t->sensor = NULL;
	t->value = NULL;
}

void bench_table_vecs(const struct bench_table *t, uint64_t from, uint32_t count,
		      struct st_vec cols[4])
{
	memset(cols, 0, 4 * sizeof *cols);
	cols[0] = (struct st_vec){.type = ST_TYPE_INT64, .n = count, .data = t->id + from};
	cols[1] = (struct st_vec){.type = ST_TYPE_TIMESTAMP, .n = count, .data = t->ts + from};
	cols[2] = (struct st_vec){.type = ST_TYPE_STRING, .n = count,
				  .codes = t->sensor + from, .dict = &t->dict};
	cols[3] = (struct st_vec){.type = ST_TYPE_FLOAT64, .n = count, .data = t->value + from};
}

void bench_table_q2(uint64_t n, int64_t *lo, int64_t *hi)
{
	/* 0.495 * N * 1000 = 495 * N and 0.505 * N * 1000 = 505 * N, exactly. */
	*lo = BENCH_TS0 + (int64_t)(495 * n);
	*hi = BENCH_TS0 + (int64_t)(505 * n);
}
