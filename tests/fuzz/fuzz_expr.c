/*
 * tests/fuzz/fuzz_expr.c — libFuzzer target for the predicate parser and
 * both evaluators. The input is predicate text against a schema with every
 * type. When it parses: may_match on fixed statistics, evaluation on a
 * small batch, and the canonical text must parse back to an expression
 * that selects the same rows (abort otherwise).
 */
#include <stdlib.h>
#include <string.h>

#include "format/expr.h"

static struct st_field fz_fields[] = {
	{1, ST_TYPE_INT64, true, "x"},      {2, ST_TYPE_INT32, true, "y"},
	{3, ST_TYPE_FLOAT64, true, "v"},    {4, ST_TYPE_STRING, true, "s"},
	{5, ST_TYPE_TIMESTAMP, true, "ts"}, {6, ST_TYPE_DATE, true, "d"},
	{7, ST_TYPE_BOOL, true, "ok"},      {8, ST_TYPE_BINARY, true, "b"},
};
static const struct st_schema fz_schema = {8, fz_fields};

enum { FZ_N = 6 };
static int64_t fz_x[FZ_N] = {-1, 0, 1, 2, 3, 1700000000000000LL};
static int32_t fz_y[FZ_N] = {-5, 0, 5, 7, 9, 20000};
static double fz_v[FZ_N] = {-0.5, 0.0, 1.5, 2.25, 1e300, -1e-9};
static uint32_t fz_offs[FZ_N + 1] = {0, 1, 3, 3, 6, 10, 11};
static const uint8_t fz_bytes[] = "aabxyzwxyzq";
static uint8_t fz_ok[FZ_N] = {1, 0, 1, 1, 0, 0};
static uint8_t fz_valid[1] = {0x2B};

/* The rows e selects; UINT32_MAX when its values fail on these rows (an
 * integer overflow or a CAST that cannot be: ST_ERANGE), which a parsed
 * expression may do; any other error is a bug. */
static uint32_t select_rows(const struct expr *e, const struct st_vec *cols, uint32_t *sel)
{
	uint32_t n = 0;
	struct st_err err;
	int rc = expr_eval(e, cols, FZ_N, sel, &n, &err);
	if (rc == ST_ERANGE)
		return UINT32_MAX;
	if (rc != ST_OK)
		abort();
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	struct expr *e = NULL;
	struct st_err err;
	if (expr_parse(text, &fz_schema, &e, &err) != ST_OK) {
		free(text);
		return 0;
	}
	struct st_vec cols[8] = {
		{.type = ST_TYPE_INT64, .n = FZ_N, .data = fz_x, .validity = fz_valid},
		{.type = ST_TYPE_INT32, .n = FZ_N, .data = fz_y},
		{.type = ST_TYPE_FLOAT64, .n = FZ_N, .data = fz_v},
		{.type = ST_TYPE_STRING, .n = FZ_N, .offsets = fz_offs, .bytes = fz_bytes, .validity = fz_valid},
		{.type = ST_TYPE_TIMESTAMP, .n = FZ_N, .data = fz_x},
		{.type = ST_TYPE_DATE, .n = FZ_N, .data = fz_y},
		{.type = ST_TYPE_BOOL, .n = FZ_N, .data = fz_ok},
		{.type = ST_TYPE_BINARY, .n = FZ_N, .offsets = fz_offs, .bytes = fz_bytes},
	};
	struct st_col_stats st[8];
	memset(st, 0, sizeof st);
	for (int i = 0; i < 8; i++) {
		st[i].rows = FZ_N;
		st[i].min.type = st[i].max.type = fz_fields[i].type;
	}
	st[0].has_minmax = true;
	st[0].min.v.i64 = -1;
	st[0].max.v.i64 = 1700000000000000LL;
	st[0].null_count = 3;
	(void)expr_may_match(e, st);
	uint32_t sel[FZ_N], sel2[FZ_N];
	uint32_t n = select_rows(e, cols, sel);
	char buf[4096];
	size_t need = expr_format(e, &fz_schema, buf, sizeof buf);
	struct expr *e2 = NULL;
	if (need < sizeof buf && !memchr(text, '\0', size)) {
		if (expr_parse(buf, &fz_schema, &e2, &err) != ST_OK) {
			/* Deep nesting can legitimately pass the limit once parenthesized. */
			if (err.code != ST_ETOOBIG)
				abort();
		} else if (select_rows(e2, cols, sel2) != n ||
			   (n != UINT32_MAX && memcmp(sel, sel2, n * sizeof *sel))) {
			abort();
		}
	}
	expr_free(e2);
	expr_free(e);
	/* The same text as an UPDATE SET list: parse, evaluate, format, free. */
	struct expr_assign *a = NULL;
	if (expr_assign_parse(text, &fz_schema, &a, &err) == ST_OK) {
		for (uint32_t i = 0; i < expr_assign_count(a); i++) {
			struct st_vec out;
			void *bufs[3];
			uint32_t bad;
			int rc = expr_assign_eval(a, i, cols, FZ_N, &out, bufs, &bad, &err);
			if (rc != ST_OK && rc != ST_ERANGE && rc != ST_ESCHEMA)
				abort();
			for (int k = 0; rc == ST_OK && k < 3; k++)
				free(bufs[k]);
		}
		expr_assign_format(a, &fz_schema, buf, sizeof buf);
		expr_assign_free(a);
	}
	free(text);
	return 0;
}
