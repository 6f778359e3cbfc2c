/*
 * tests/bench/table.h — the benchmark table of issue 2, generated
 * deterministically (xorshift64 from 0x2545F4914F6CDD1D):
 *
 *   id     = i                                                  int64 NOT NULL
 *   ts     = 1700000000000000 + i*1000 + (next() % 2000) - 1000 timestamp
 *   sensor = "sensor-%04u" of (next() % 1000)                   string
 *   value  = (next() % 1000000000) / 1e6                        float64
 *
 * Used by bench-format, the format demo and the tests.
 */
#ifndef STRATA_TESTS_BENCH_TABLE_H
#define STRATA_TESTS_BENCH_TABLE_H

#include <stdint.h>

#include "format/types.h"

#define BENCH_TS0 1700000000000000LL
#define BENCH_SENSORS 1000

struct bench_table {
	uint64_t n;             /* rows */
	int64_t *id;            /* n ids */
	int64_t *ts;            /* n timestamps */
	uint32_t *sensor;       /* n sensor numbers, codes into dict */
	double *value;          /* n values */
	uint32_t dict_offsets[BENCH_SENSORS + 1]; /* "sensor-0000".. offsets */
	uint8_t dict_bytes[BENCH_SENSORS * 11];   /* their bytes */
	struct st_vec dict;     /* the 1000 sensor names, sorted */
	struct st_field fields[4]; /* the schema's fields */
	struct st_schema schema;   /* id, ts, sensor, value */
};

/* Generate n rows. Returns 0, or -1 when memory runs out. */
int bench_table_init(struct bench_table *t, uint64_t n);
void bench_table_fini(struct bench_table *t);
/* Point cols[0..3] at rows [from, from + count). */
void bench_table_vecs(const struct bench_table *t, uint64_t from, uint32_t count,
		      struct st_vec cols[4]);
/* The Q2 range: ts >= lo AND ts < hi. */
void bench_table_q2(uint64_t n, int64_t *lo, int64_t *hi);

#endif
