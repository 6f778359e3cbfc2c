/*
 * tests/unit/test_expr.c — the predicate language: parsing and precedence,
 * errors that point at the token, literal coercion, three-valued batch
 * evaluation (plain and dictionary strings), statistics pruning checked
 * against brute force, and the canonical text round trip.
 */
#include <math.h>

#include "format/expr.h"
#include "tests/test.h"

static struct st_field fields[] = {
	{1, ST_TYPE_INT64, true, "x"},      {2, ST_TYPE_INT32, true, "y"},
	{3, ST_TYPE_FLOAT64, true, "v"},    {4, ST_TYPE_STRING, true, "s"},
	{5, ST_TYPE_TIMESTAMP, true, "ts"}, {6, ST_TYPE_DATE, true, "d"},
	{7, ST_TYPE_BOOL, true, "ok"},      {8, ST_TYPE_BINARY, true, "b"},
};
static const struct st_schema schema = {8, fields};

enum { N = 8 };
static int64_t xs[N] = {1, 2, 3, 4, 5, 6, 7, 8};
static int32_t ys[N] = {-3, -2, -1, 0, 1, 2, 3, 4};
static double vs[N] = {0.5, 1.5, 2.5, NAN, 4.5, 5.5, 6.5, 7.5};
static int64_t tss[N] = {1767323045123456LL, 0, 0, 0, 0, 0, 0, 1767323045123457LL};
static int32_t ds[N] = {20455, 0, 0, 0, 0, 0, 0, 0};
static uint8_t oks[N] = {1, 0, 1, 0, 1, 0, 1, 0};
static uint8_t xvalid[1] = {0xEF}; /* row 4 (x = 5) is NULL */
static uint32_t soffs[N + 1] = {0, 5, 11, 17, 20, 20, 25, 30, 35};
static const uint8_t sbytes[] = "applebananacherryfigapplegrapeapple";
static uint32_t dict_offs[6] = {0, 5, 11, 17, 20, 25};
static const uint8_t dict_bytes[] = "applebananacherryfiggrape";
static uint32_t codes[N] = {0, 1, 2, 3, 0, 0, 4, 0};

static struct st_vec cols[8];

static void setup(bool dict)
{
	static struct st_vec d;
	memset(cols, 0, sizeof cols);
	cols[0] = (struct st_vec){.type = ST_TYPE_INT64, .n = N, .data = xs, .validity = xvalid};
	cols[1] = (struct st_vec){.type = ST_TYPE_INT32, .n = N, .data = ys};
	cols[2] = (struct st_vec){.type = ST_TYPE_FLOAT64, .n = N, .data = vs};
	/* s: apple banana cherry fig NULL apple grape apple */
	static uint8_t svalid[1] = {0xEF};
	if (dict) {
		d = (struct st_vec){.type = ST_TYPE_STRING, .n = 5, .offsets = dict_offs,
				    .bytes = dict_bytes};
		cols[3] = (struct st_vec){.type = ST_TYPE_STRING, .n = N, .codes = codes, .dict = &d,
					  .validity = svalid};
	} else {
		cols[3] = (struct st_vec){.type = ST_TYPE_STRING, .n = N, .offsets = soffs,
					  .bytes = sbytes, .validity = svalid};
	}
	cols[4] = (struct st_vec){.type = ST_TYPE_TIMESTAMP, .n = N, .data = tss};
	cols[5] = (struct st_vec){.type = ST_TYPE_DATE, .n = N, .data = ds};
	cols[6] = (struct st_vec){.type = ST_TYPE_BOOL, .n = N, .data = oks};
	cols[7] = (struct st_vec){.type = ST_TYPE_BINARY, .n = N, .offsets = soffs, .bytes = sbytes};
}

/* Selected rows as a bit mask (row i -> bit i), or -1 on error. */
static int sel_mask(const char *text)
{
	struct expr *e;
	struct st_err err;
	if (expr_parse(text, &schema, &e, &err) != ST_OK) {
		fprintf(stderr, "  parse '%s': %s\n", text, err.msg);
		return -1;
	}
	uint32_t sel[N], n;
	int mask = 0;
	if (expr_eval(e, cols, N, sel, &n, &err) != ST_OK) {
		fprintf(stderr, "  eval '%s': %s\n", text, err.msg);
		mask = -1;
	}
	for (uint32_t i = 0; mask >= 0 && i < n; i++)
		mask |= 1 << sel[i];
	/* The canonical text parses back to the same selection. */
	char buf[1024];
	expr_format(e, &schema, buf, sizeof buf);
	struct expr *e2;
	if (mask >= 0 && expr_parse(buf, &schema, &e2, &err) == ST_OK) {
		int m2 = 0;
		if (expr_eval(e2, cols, N, sel, &n, &err) == ST_OK)
			for (uint32_t i = 0; i < n; i++)
				m2 |= 1 << sel[i];
		if (m2 != mask) {
			fprintf(stderr, "  '%s' -> '%s' selects %x, not %x\n", text, buf, m2, mask);
			mask = -2;
		}
		expr_free(e2);
	} else if (mask >= 0) {
		fprintf(stderr, "  canonical '%s' does not parse: %s\n", buf, err.msg);
		mask = -2;
	}
	expr_free(e);
	return mask;
}

static void t_comparisons_and_precedence(void)
{
	for (int dict = 0; dict < 2; dict++) {
		setup(dict);
		CHECK_EQ(sel_mask("x = 3"), 1 << 2);
		CHECK_EQ(sel_mask("x >= 7"), 0xC0);
		CHECK_EQ(sel_mask("3 < x"), 0xE8); /* row 4 is NULL */
		CHECK_EQ(sel_mask("x != 1"), 0xEE);
		CHECK_EQ(sel_mask("x <> 1 AND x < 4"), 0x06);
		CHECK_EQ(sel_mask("x = 1 OR x = 2 AND y = 0"), 0x01); /* AND binds tighter */
		CHECK_EQ(sel_mask("(x = 1 OR x = 2) AND y = -2"), 0x02);
		CHECK_EQ(sel_mask("NOT x = 1 AND x < 3"), 0x02);
		CHECK_EQ(sel_mask("x BETWEEN 2 AND 4"), 0x0E);
		CHECK_EQ(sel_mask("x NOT BETWEEN 2 AND 4"), 0xE1); /* NULL row stays out */
		CHECK_EQ(sel_mask("x IN (1, 3, 99)"), 0x05);
		CHECK_EQ(sel_mask("x NOT IN (1, 3)"), 0xEA);
		CHECK_EQ(sel_mask("x IN (1, NULL)"), 0x01);
		CHECK_EQ(sel_mask("x NOT IN (1, NULL)"), 0); /* UNKNOWN for every other row */
		CHECK_EQ(sel_mask("x IS NULL"), 0x10);
		CHECK_EQ(sel_mask("x IS NOT NULL"), 0xEF);
		CHECK_EQ(sel_mask("NOT (x > 5)"), 0x0F);   /* the NULL row is not selected */
		CHECK_EQ(sel_mask("x IS NULL OR x > 6"), 0xD0);
		CHECK_EQ(sel_mask("s = 'apple'"), 0xA1);
		CHECK_EQ(sel_mask("s LIKE 'ch%'"), 0x04);
		CHECK_EQ(sel_mask("s LIKE 'apple'"), 0xA1);
		CHECK_EQ(sel_mask("s NOT LIKE 'a%'"), 0x4E);
		CHECK_EQ(sel_mask("s > 'banana'"), 0x4C);
		CHECK_EQ(sel_mask("b LIKE 'gr%'"), 0x40);
		CHECK_EQ(sel_mask("ok"), 0x55);
		CHECK_EQ(sel_mask("NOT ok AND ok = FALSE"), 0xAA);
		CHECK_EQ(sel_mask("TRUE"), 0xFF);
		CHECK_EQ(sel_mask("NULL OR x = 1"), 0x01);
		CHECK_EQ(sel_mask("y < 0 AND x > y"), 0x07);
	}
}

static void t_literals_and_coercion(void)
{
	setup(false);
	CHECK_EQ(sel_mask("ts = TIMESTAMP '2026-01-02 03:04:05.123456'"), 0x01);
	CHECK_EQ(sel_mask("ts > '2026-01-02T03:04:05.123456Z'"), 0x80);
	CHECK_EQ(sel_mask("ts = 1767323045123456"), 0x01);
	CHECK_EQ(sel_mask("d = DATE '2026-01-02'"), 0x01);
	CHECK_EQ(sel_mask("ts >= DATE '2026-01-02'"), 0x81);
	CHECK_EQ(sel_mask("v > 4"), 0xF0);    /* NaN compares false */
	CHECK_EQ(sel_mask("v <= 1.5"), 0x03);
	CHECK_EQ(sel_mask("x < 2.5"), 0x03);  /* exact integer bound: x <= 2 */
	CHECK_EQ(sel_mask("x > 2.5"), 0xEC);
	CHECK_EQ(sel_mask("x = 2.5"), 0x00);
	CHECK_EQ(sel_mask("x != 2.5"), 0xEF);
	CHECK_EQ(sel_mask("y = -3"), 0x01);
	CHECK_EQ(sel_mask("x >= -9223372036854775808"), 0xEF);
	CHECK_EQ(sel_mask("s = 'it''s'"), 0);
	CHECK_EQ(sel_mask("1 < 2"), 0xFF);
	CHECK_EQ(sel_mask("\"X\" = 1"), 0x01); /* quoted, case-insensitive */
}

static void check_error(const char *text, int code, const char *needle)
{
	struct expr *e = NULL;
	struct st_err err;
	int rc = expr_parse(text, &schema, &e, &err);
	if (rc != code)
		fprintf(stderr, "  '%s': got %d (%s), want %d\n", text, rc, err.msg, code);
	CHECK_EQ(rc, code);
	CHECK_CONTAINS(err.msg, needle);
	CHECK(e == NULL);
}

static void t_errors_point_at_the_token(void)
{
	check_error("sensr = 'a'", ST_ETYPE, "at offset 0 near 'sensr': unknown column");
	check_error("x = 'abc", ST_ESYNTAX, "at offset 4 near ''abc': unterminated string");
	check_error("(x = 1", ST_ESYNTAX, "(end of predicate): expected ')'");
	check_error("x = 1)", ST_ESYNTAX, "at offset 5 near ')': unbalanced ')'");
	check_error("x = 'abc'", ST_ETYPE, "cannot compare a int64 column with a string literal");
	check_error("ts = TIMESTAMP '2026-02-30 00:00:00'", ST_ESYNTAX, "not a valid timestamp");
	check_error("d = DATE '2026-13-01'", ST_ESYNTAX, "not a valid date");
	check_error("x = 99999999999999999999", ST_ERANGE, "out of the int64 range");
	check_error("y = 3000000000", ST_ERANGE, "out of the column's range");
	check_error("x", ST_ETYPE, "not a predicate");
	check_error("s LIKE '%a'", ST_ESYNTAX, "only prefix patterns");
	check_error("x LIKE 'a%'", ST_ETYPE, "LIKE needs a string");
	check_error("", ST_ESYNTAX, "empty predicate");
	check_error("x = 1 AND", ST_ESYNTAX, "expected a column or a literal");
	check_error("x # 1", ST_ESYNTAX, "unexpected character");
	check_error("x = s", ST_ETYPE, "cannot compare column 'x' (int64) with column 's' (string)");
	char deep[2000];
	memset(deep, '(', 600);
	strcpy(deep + 600, "x = 1");
	check_error(deep, ST_ETOOBIG, "nested too deeply");
	char *big = malloc(EXPR_TEXT_MAX + 10);
	memset(big, ' ', EXPR_TEXT_MAX + 5);
	big[EXPR_TEXT_MAX + 5] = '\0';
	check_error(big, ST_ETOOBIG, "longer than");
	free(big);
}

static void stats_of(const struct st_vec *v, uint32_t n, struct st_col_stats *st)
{
	memset(st, 0, sizeof *st);
	st->rows = n;
	st->min.type = st->max.type = v->type;
	for (uint32_t i = 0; i < n; i++) {
		if (!st_vec_is_valid(v, i)) {
			st->null_count++;
			continue;
		}
		int64_t x = ((const int64_t *)v->data)[i];
		if (!st->has_minmax || x < st->min.v.i64)
			st->min.v.i64 = x;
		if (!st->has_minmax || x > st->max.v.i64)
			st->max.v.i64 = x;
		st->has_minmax = st->min_exact = st->max_exact = true;
	}
}

static void t_may_match_never_excludes_a_match(void)
{
	/* Random small int64 batches and random predicates: whenever a row
	 * matches, may_match must not say NONE; when it says ALL, all match. */
	static const struct st_field f2[2] = {{1, ST_TYPE_INT64, true, "a"}, {2, ST_TYPE_INT64, true, "c"}};
	static const struct st_schema s2 = {2, (struct st_field *)f2};
	static const char *const ops[] = {"=", "!=", "<", "<=", ">", ">="};
	uint64_t r = 12345;
	int bad = 0, pruned = 0, all = 0;
	for (int iter = 0; iter < 4000; iter++) {
		int64_t a[6], c[6];
		uint8_t va = 0, vc = 0;
		for (int i = 0; i < 6; i++) {
			r = r * 6364136223846793005ull + 1442695040888963407ull;
			a[i] = (int64_t)(r >> 60) - 4;
			c[i] = (int64_t)((r >> 50) & 7) - 4;
			va |= (uint8_t)(((r >> 20) % 5 != 0) << i);
			vc |= (uint8_t)(((r >> 25) % 4 != 0) << i);
		}
		struct st_vec v[2] = {{.type = ST_TYPE_INT64, .n = 6, .data = a, .validity = &va},
				      {.type = ST_TYPE_INT64, .n = 6, .data = c, .validity = &vc}};
		struct st_col_stats st[2];
		stats_of(&v[0], 6, &st[0]);
		stats_of(&v[1], 6, &st[1]);
		char text[200];
		int k1 = (int)(r % 6), k2 = (int)((r >> 8) % 6), shape = (int)((r >> 16) % 6);
		int l1 = (int)((r >> 24) % 9) - 4, l2 = (int)((r >> 32) % 9) - 4;
		switch (shape) {
		case 0: snprintf(text, sizeof text, "a %s %d", ops[k1], l1); break;
		case 1: snprintf(text, sizeof text, "NOT (a %s %d)", ops[k1], l1); break;
		case 2: snprintf(text, sizeof text, "a %s %d AND c %s %d", ops[k1], l1, ops[k2], l2); break;
		case 3: snprintf(text, sizeof text, "NOT (a %s %d OR c %s %d)", ops[k1], l1, ops[k2], l2); break;
		case 4: snprintf(text, sizeof text, "a IS NULL OR a BETWEEN %d AND %d", l1, l2); break;
		default: snprintf(text, sizeof text, "NOT (c IN (%d, %d) AND a IS NOT NULL)", l1, l2); break;
		}
		struct expr *e;
		struct st_err err;
		REQUIRE(expr_parse(text, &s2, &e, &err) == ST_OK);
		uint32_t sel[6], n;
		REQUIRE(expr_eval(e, v, 6, sel, &n, &err) == ST_OK);
		enum expr_match m = expr_may_match(e, st);
		if ((n > 0 && m == EXPR_MATCH_NONE) || (m == EXPR_MATCH_ALL && n != 6)) {
			if (bad++ < 5)
				fprintf(stderr, "  '%s': %u rows match, may_match %d\n", text, n, m);
		}
		pruned += m == EXPR_MATCH_NONE;
		all += m == EXPR_MATCH_ALL;
		expr_free(e);
	}
	CHECK_EQ(bad, 0);
	CHECK(pruned > 100); /* the evaluator does prune */
	CHECK(all > 20);
}

static void t_may_match_strings_and_bounds(void)
{
	struct expr *e;
	struct st_err err;
	struct st_col_stats st[8];
	memset(st, 0, sizeof st);
	for (int i = 0; i < 8; i++) {
		st[i].rows = 100;
		st[i].min.type = st[i].max.type = fields[i].type;
	}
	/* s in ['banana', 'cherry'], bounds exact. */
	st[3].has_minmax = st[3].min_exact = st[3].max_exact = true;
	st[3].min.v.s.ptr = (const uint8_t *)"banana";
	st[3].min.v.s.len = 6;
	st[3].max.v.s.ptr = (const uint8_t *)"cherry";
	st[3].max.v.s.len = 6;
	struct { const char *p; enum expr_match m; } cases[] = {
		{"s = 'apple'", EXPR_MATCH_NONE},  {"s = 'banana'", EXPR_MATCH_SOME},
		{"s LIKE 'b%'", EXPR_MATCH_SOME},  {"s LIKE 'd%'", EXPR_MATCH_NONE},
		{"s LIKE 'a%'", EXPR_MATCH_NONE},  {"s >= 'banana'", EXPR_MATCH_ALL},
		{"s < 'banana'", EXPR_MATCH_NONE}, {"s IS NULL", EXPR_MATCH_NONE},
		{"NOT s < 'banana'", EXPR_MATCH_ALL}, {"x = 1", EXPR_MATCH_SOME},
	};
	for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
		REQUIRE(expr_parse(cases[k].p, &schema, &e, &err) == ST_OK);
		if (expr_may_match(e, st) != cases[k].m)
			fprintf(stderr, "  '%s': %d, want %d\n", cases[k].p, expr_may_match(e, st), cases[k].m);
		CHECK_EQ(expr_may_match(e, st), cases[k].m);
		expr_free(e);
	}
	/* A truncated max is an upper bound, never a value: no ALL for equality. */
	st[3].min.v.s.ptr = st[3].max.v.s.ptr = (const uint8_t *)"banana";
	st[3].max_exact = false;
	REQUIRE(expr_parse("s = 'banana'", &schema, &e, &err) == ST_OK);
	CHECK_EQ(expr_may_match(e, st), EXPR_MATCH_SOME);
	expr_free(e);
	/* Nulls prevent ALL; an all-null chunk matches only IS NULL. */
	st[3].null_count = 100;
	st[3].has_minmax = false;
	REQUIRE(expr_parse("s != 'x'", &schema, &e, &err) == ST_OK);
	CHECK_EQ(expr_may_match(e, st), EXPR_MATCH_NONE);
	expr_free(e);
	REQUIRE(expr_parse("NOT (s = 'x')", &schema, &e, &err) == ST_OK);
	CHECK_EQ(expr_may_match(e, st), EXPR_MATCH_NONE);
	expr_free(e);
	REQUIRE(expr_parse("s IS NULL", &schema, &e, &err) == ST_OK);
	CHECK_EQ(expr_may_match(e, st), EXPR_MATCH_ALL);
	bool used[8] = {false};
	expr_columns(e, used);
	CHECK(used[3] && !used[0]);
	expr_free(e);
}

static const struct test_case tests[] = {
	{"comparisons_and_precedence", t_comparisons_and_precedence},
	{"literals_and_coercion", t_literals_and_coercion},
	{"errors_point_at_the_token", t_errors_point_at_the_token},
	{"may_match_never_excludes_a_match", t_may_match_never_excludes_a_match},
	{"may_match_strings_and_bounds", t_may_match_strings_and_bounds},
};
TEST_MAIN(tests)
