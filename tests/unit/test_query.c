/*
 * tests/unit/test_query.c — grouped aggregation next to the data
 * (daemon/query.h), checked against a brute-force fold of the same rows:
 * the per-dictionary-code fast path (no predicate, no NULLs), the same with
 * a predicate, NULL group keys and NULL values (general path), integer
 * sums, min/max of strings and timestamps, count(col), avg, two group
 * columns, no group column, aggregates over no rows (typed from the
 * schema, NULL as in SQL), and the errors.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/store/query.h"
#include "tests/test.h"

#define N 20000
#define NS 37 /* sensors */

static int64_t ids[N], ts[N];
static double vals[N];
static uint32_t offs[N + 1];
static char bytes[N * 8];
static uint8_t svalid[N / 8 + 1], vvalid[N / 8 + 1];

static bool s_null(int i) { return i % 101 == 7; }
static bool value_nulls = true; /* with nulls: value has NULLs too */
static bool v_null(int i) { return value_nulls && i % 53 == 3; }

static st_store *open_store(bool nulls)
{
	static char dir[64];
	strcpy(dir, "/tmp/strata-query-XXXXXX");
	if (!mkdtemp(dir))
		abort();
	test_defer_rmtree(dir); /* after the test, unless it failed */
	st_store *s;
	struct st_err err;
	REQUIRE(st_store_open(dir, NULL, &s, &err) == ST_OK);
	struct st_column_def cols[] = {{"id", ST_TYPE_INT64, false},
				       {"ts", ST_TYPE_TIMESTAMP, true},
				       {"sensor", ST_TYPE_STRING, true},
				       {"value", ST_TYPE_FLOAT64, true}};
	struct st_table_spec spec = {.name = "t", .cols = cols, .ncols = 4};
	REQUIRE(st_table_create(s, &spec, ST_CREATE_ERROR, NULL, &err) == ST_OK);
	uint32_t o = 0;
	memset(svalid, 0, sizeof svalid);
	memset(vvalid, 0, sizeof vvalid);
	for (int i = 0; i < N; i++) {
		ids[i] = i;
		ts[i] = 1700000000000000LL + (int64_t)((i * 7919) % N) * 1000;
		vals[i] = (double)((i * 31) % 1000) / 8.0;
		offs[i] = o;
		if (!(nulls && s_null(i))) {
			o += (uint32_t)sprintf(bytes + o, "s%02d", (i * 13) % NS);
			svalid[i / 8] |= (uint8_t)(1u << (i % 8));
		}
		if (!(nulls && v_null(i)))
			vvalid[i / 8] |= (uint8_t)(1u << (i % 8));
	}
	offs[N] = o;
	const char *names[] = {"id", "ts", "sensor", "value"};
	/* Two commits: the query spans files. */
	for (int part = 0; part < 2; part++) {
		int from = part * (N / 2);
		struct st_vec v[4] = {
			{.type = ST_TYPE_INT64, .n = N / 2, .data = ids + from},
			{.type = ST_TYPE_TIMESTAMP, .n = N / 2, .data = ts + from},
		};
		/* strings and values of this half, with their own bitmaps */
		static uint32_t o2[N / 2 + 1];
		static uint8_t sv2[N / 16 + 1], vv2[N / 16 + 1];
		static double val2[N / 2];
		memset(sv2, 0, sizeof sv2);
		memset(vv2, 0, sizeof vv2);
		for (int i = 0; i <= N / 2; i++)
			o2[i] = offs[from + i] - offs[from];
		for (int i = 0; i < N / 2; i++) {
			val2[i] = vals[from + i];
			if ((svalid[(from + i) / 8] >> ((from + i) % 8)) & 1)
				sv2[i / 8] |= (uint8_t)(1u << (i % 8));
			if ((vvalid[(from + i) / 8] >> ((from + i) % 8)) & 1)
				vv2[i / 8] |= (uint8_t)(1u << (i % 8));
		}
		v[2] = (struct st_vec){.type = ST_TYPE_STRING, .n = N / 2, .offsets = o2,
				       .bytes = (uint8_t *)bytes + offs[from],
				       .validity = nulls ? sv2 : NULL};
		v[3] = (struct st_vec){.type = ST_TYPE_FLOAT64, .n = N / 2, .data = val2,
				       .validity = nulls ? vv2 : NULL};
		struct st_batch b = {4, names, v, N / 2};
		struct st_commit_result r;
		int rc = st_write(s, "t", &b, 1, NULL, &r, &err);
		if (rc != ST_OK)
			fprintf(stderr, "  %s\n", err.msg);
		REQUIRE(rc == ST_OK);
	}
	return s;
}

/* Expected per sensor (index NS = NULL key) over rows with pred(i). */
struct expect {
	double sum[NS + 1];
	uint64_t rows[NS + 1], vals[NS + 1];
	int64_t idsum[NS + 1], tsmin[NS + 1], tsmax[NS + 1];
};

static void expect_fold(struct expect *x, bool nulls, bool (*pred)(int))
{
	memset(x, 0, sizeof *x);
	for (int k = 0; k <= NS; k++) {
		x->tsmin[k] = INT64_MAX;
		x->tsmax[k] = INT64_MIN;
	}
	for (int i = 0; i < N; i++) {
		if (pred && !pred(i))
			continue;
		int k = nulls && s_null(i) ? NS : (i * 13) % NS;
		x->rows[k]++;
		x->idsum[k] += ids[i];
		x->tsmin[k] = ts[i] < x->tsmin[k] ? ts[i] : x->tsmin[k];
		x->tsmax[k] = ts[i] > x->tsmax[k] ? ts[i] : x->tsmax[k];
		if (!(nulls && v_null(i))) {
			x->vals[k]++;
			x->sum[k] += vals[i];
		}
	}
}

/* The group index of result row r (its sensor text, or NS for NULL). */
static int group_of(const struct sd_query_result *res, uint32_t r)
{
	const struct st_vec *g = &res->cols[0];
	if (!st_vec_is_valid(g, r))
		return NS;
	char buf[16];
	uint32_t n = g->offsets[r + 1] - g->offsets[r];
	snprintf(buf, sizeof buf, "%.*s", (int)n, g->bytes + g->offsets[r]);
	return atoi(buf + 1);
}

static bool ids_below_half(int i) { return ids[i] < N / 3; }

static void check_grouped(bool nulls, const char *pred, bool (*fn)(int))
{
	st_store *s = open_store(nulls);
	struct sd_agg aggs[] = {{SD_AGG_COUNT, NULL},   {SD_AGG_SUM, "value"},
				{SD_AGG_AVG, "value"},   {SD_AGG_COUNT, "value"},
				{SD_AGG_SUM, "id"},      {SD_AGG_MIN, "ts"},
				{SD_AGG_MAX, "ts"}};
	const char *group[] = {"sensor"};
	struct sd_query_result res;
	struct st_err err;
	/* Just count(*) and sum(value): the per-code fast path when no NULLs. */
	for (int shape = 0; shape < 2; shape++) {
		uint32_t na = shape ? 7 : 2;
		int rc = sd_query(s, "t", (struct st_at){0}, group, 1, aggs, na, pred, 100000, &res,
				  &err);
		if (rc != ST_OK)
			fprintf(stderr, "  %s\n", err.msg);
		REQUIRE(rc == ST_OK);
		struct expect x;
		expect_fold(&x, nulls, fn);
		uint32_t want_groups = 0;
		uint64_t want_rows = 0;
		for (int k = 0; k <= NS; k++) {
			want_groups += x.rows[k] > 0;
			want_rows += x.rows[k];
		}
		CHECK_EQ(res.nrows, want_groups);
		CHECK_EQ(res.rows_matched, want_rows);
		CHECK_EQ(res.ncols, 1 + na);
		int bad = 0;
		for (uint32_t r = 0; r < res.nrows; r++) {
			int k = group_of(&res, r);
			bad += ((const uint64_t *)res.cols[1].data)[r] != x.rows[k];
			double sum = ((const double *)res.cols[2].data)[r];
			bad += fabs(sum - x.sum[k]) > 1e-6 * (1 + fabs(x.sum[k]));
			if (!shape)
				continue;
			double avg = ((const double *)res.cols[3].data)[r];
			bad += x.vals[k] && fabs(avg - x.sum[k] / (double)x.vals[k]) > 1e-9 * (1 + avg);
			bad += ((const uint64_t *)res.cols[4].data)[r] != x.vals[k];
			bad += ((const int64_t *)res.cols[5].data)[r] != x.idsum[k];
			bad += ((const int64_t *)res.cols[6].data)[r] != x.tsmin[k];
			bad += ((const int64_t *)res.cols[7].data)[r] != x.tsmax[k];
		}
		CHECK_EQ(bad, 0);
		sd_query_result_fini(&res);
	}
	st_store_close(s);
}

static void t_grouped_fast_path(void) { check_grouped(false, NULL, NULL); }
static void t_grouped_with_predicate(void) { check_grouped(false, "id < 6666", ids_below_half); }
static void t_grouped_nulls(void) { check_grouped(true, NULL, NULL); }
static void t_grouped_nulls_predicate(void) { check_grouped(true, "id < 6666", ids_below_half); }
/* NULL group keys, values without NULLs: the per-code path's NULL slot. */
static void t_grouped_null_keys_only(void)
{
	TEST_SET(value_nulls, false); /* back to true however the test ends */
	check_grouped(true, NULL, NULL);
	check_grouped(true, "id < 6666", ids_below_half);
}

static void t_no_group_and_two_groups(void)
{
	st_store *s = open_store(false);
	struct sd_agg aggs[] = {{SD_AGG_COUNT, NULL}, {SD_AGG_SUM, "value"}, {SD_AGG_MIN, "sensor"},
				{SD_AGG_MAX, "sensor"}};
	struct sd_query_result res;
	struct st_err err;
	REQUIRE(sd_query(s, "t", (struct st_at){0}, NULL, 0, aggs, 4, NULL, 10, &res, &err) == ST_OK);
	REQUIRE(res.nrows == 1);
	struct expect x;
	expect_fold(&x, false, NULL);
	double total = 0;
	for (int k = 0; k < NS; k++)
		total += x.sum[k];
	CHECK_EQ(((const uint64_t *)res.cols[0].data)[0], N);
	CHECK(fabs(((const double *)res.cols[1].data)[0] - total) < 1e-6 * total);
	CHECK(!memcmp(res.cols[2].bytes + res.cols[2].offsets[0], "s00", 3));
	CHECK(!memcmp(res.cols[3].bytes + res.cols[3].offsets[0], "s36", 3));
	sd_query_result_fini(&res);
	/* An empty selection still gives one row without group-by. */
	REQUIRE(sd_query(s, "t", (struct st_at){0}, NULL, 0, aggs, 2, "id < 0", 10, &res, &err) ==
		ST_OK);
	CHECK_EQ(res.nrows, 1);
	CHECK_EQ(((const uint64_t *)res.cols[0].data)[0], 0);
	sd_query_result_fini(&res);
	/* Two group columns: (sensor, id % nothing) -> as many groups as ids. */
	const char *two[] = {"sensor", "id"};
	REQUIRE(sd_query(s, "t", (struct st_at){0}, two, 2, aggs, 1, "id < 100", 1000, &res, &err) ==
		ST_OK);
	CHECK_EQ(res.nrows, 100);
	sd_query_result_fini(&res);
	/* Too many groups, bad aggregates. */
	const char *byid[] = {"id"};
	CHECK(sd_query(s, "t", (struct st_at){0}, byid, 1, aggs, 1, NULL, 1000, &res, &err) ==
	      ST_ETOOBIG);
	CHECK_CONTAINS(err.msg, "the query has more than 1000 groups; narrow it with a predicate");
	CHECK(res.ncols == 0 && res.nrows == 0 && !res.cols); /* nothing left to free */
	struct sd_agg bad[] = {{SD_AGG_SUM, "sensor"}};
	CHECK(sd_query(s, "t", (struct st_at){0}, NULL, 0, bad, 1, NULL, 10, &res, &err) ==
	      ST_EINVAL);
	CHECK_CONTAINS(err.msg, "sum(sensor)");
	struct sd_agg nocol[] = {{SD_AGG_SUM, "nope"}};
	CHECK_EQ(sd_query(s, "t", (struct st_at){0}, NULL, 0, nocol, 1, NULL, 10, &res, &err),
		 ST_ENOTFOUND);
	CHECK_CONTAINS(err.msg, "table 't' (version 2) has no column 'nope'");
	struct sd_agg none[1];
	CHECK_EQ(sd_query(s, "t", (struct st_at){0}, NULL, 0, none, 0, NULL, 10, &res, &err),
		 ST_EINVAL);
	CHECK_CONTAINS(err.msg, "a query needs a group-by column or an aggregate");
	st_store_close(s);
}

/*
 * Aggregates over no rows are typed from the schema, not from a first batch
 * (there may be none): without group-by one row where count is 0 and
 * sum/avg/min/max are NULL (SQL's answer); with group-by no rows, but the
 * same column types. Covers an empty table, version 0, a predicate that
 * prunes every file and one that reads the rows but selects none.
 */
struct empty_case {
	struct sd_agg agg; /* the aggregate */
	int type;          /* the result column's type */
};

static void check_empty(const struct sd_query_result *res, uint32_t ngroup,
			const struct empty_case *ec, uint32_t n, const char *what)
{
	CHECK_EQ(res->ncols, ngroup + n);
	CHECK_EQ(res->nrows, ngroup ? 0 : 1);
	CHECK_EQ(res->rows_matched, 0);
	if (res->ncols != ngroup + n)
		return;
	for (uint32_t a = 0; a < n; a++) {
		const struct st_vec *v = &res->cols[ngroup + a];
		if (v->type != ec[a].type)
			fprintf(stderr, "  %s: column %s has type %d, wanted %d\n", what,
				res->names[ngroup + a], v->type, ec[a].type);
		CHECK_EQ(v->type, ec[a].type);
		CHECK_EQ(v->n, res->nrows);
		if (ngroup)
			continue;
		if (ec[a].agg.fn == SD_AGG_COUNT) {
			CHECK(st_vec_is_valid(v, 0));
			CHECK_EQ(((const int64_t *)v->data)[0], 0);
		} else {
			CHECK(!st_vec_is_valid(v, 0));
		}
	}
}

static void t_empty_input_typed(void)
{
	st_store *s = open_store(false);
	struct st_err err;
	struct st_column_def cols[] = {{"i32", ST_TYPE_INT32, true},  {"d", ST_TYPE_DATE, true},
				       {"ts", ST_TYPE_TIMESTAMP, true}, {"s", ST_TYPE_STRING, true},
				       {"f", ST_TYPE_FLOAT64, true},   {"i64", ST_TYPE_INT64, true},
				       {"b", ST_TYPE_BOOL, true}};
	struct st_table_spec spec = {.name = "e", .cols = cols, .ncols = 7};
	REQUIRE(st_table_create(s, &spec, ST_CREATE_ERROR, NULL, &err) == ST_OK);
	static const struct empty_case ec[] = {
		{{SD_AGG_COUNT, NULL}, ST_TYPE_INT64},   {{SD_AGG_COUNT, "f"}, ST_TYPE_INT64},
		{{SD_AGG_MIN, "i32"}, ST_TYPE_INT32},    {{SD_AGG_MAX, "i32"}, ST_TYPE_INT32},
		{{SD_AGG_SUM, "i32"}, ST_TYPE_INT64},    {{SD_AGG_AVG, "i32"}, ST_TYPE_FLOAT64},
		{{SD_AGG_MIN, "d"}, ST_TYPE_DATE},       {{SD_AGG_MAX, "ts"}, ST_TYPE_TIMESTAMP},
		{{SD_AGG_MIN, "s"}, ST_TYPE_STRING},     {{SD_AGG_MAX, "s"}, ST_TYPE_STRING},
		{{SD_AGG_MIN, "f"}, ST_TYPE_FLOAT64},    {{SD_AGG_MAX, "f"}, ST_TYPE_FLOAT64},
		{{SD_AGG_SUM, "f"}, ST_TYPE_FLOAT64},    {{SD_AGG_AVG, "f"}, ST_TYPE_FLOAT64},
		{{SD_AGG_SUM, "i64"}, ST_TYPE_INT64},    {{SD_AGG_MAX, "i64"}, ST_TYPE_INT64},
	};
	enum { NE = sizeof ec / sizeof ec[0] };
	struct sd_agg aggs[NE];
	for (int a = 0; a < NE; a++)
		aggs[a] = ec[a].agg;
	struct sd_query_result res;
	const char *bys[] = {"s"};
	for (uint32_t ng = 0; ng < 2; ng++) {
		int rc = sd_query(s, "e", (struct st_at){0}, bys, ng, aggs, NE, NULL, 10, &res, &err);
		if (rc != ST_OK)
			fprintf(stderr, "  %s\n", err.msg);
		REQUIRE(rc == ST_OK);
		check_empty(&res, ng, ec, NE, "empty table");
		if (ng)
			CHECK_EQ(res.cols[0].type, ST_TYPE_STRING);
		sd_query_result_fini(&res);
	}
	/* An aggregate that does not fit its column fails over no rows too. */
	struct sd_agg bad[] = {{SD_AGG_SUM, "s"}, {SD_AGG_MIN, "b"}, {SD_AGG_AVG, "d"}};
	for (int k = 0; k < 3; k++) {
		CHECK_EQ(sd_query(s, "e", (struct st_at){0}, NULL, 0, &bad[k], 1, NULL, 10, &res, &err),
			 ST_EINVAL);
		CHECK_CONTAINS(err.msg, k == 0 ? "sum(s): column 's' is string"
					: k == 1 ? "min(b): column 'b' is bool"
						 : "avg(d): column 'd' is date");
	}

	/* Table t has rows: at version 0, and with predicates selecting none. */
	static const struct empty_case et[] = {
		{{SD_AGG_MIN, "value"}, ST_TYPE_FLOAT64}, {{SD_AGG_MAX, "value"}, ST_TYPE_FLOAT64},
		{{SD_AGG_AVG, "value"}, ST_TYPE_FLOAT64}, {{SD_AGG_SUM, "value"}, ST_TYPE_FLOAT64},
		{{SD_AGG_COUNT, NULL}, ST_TYPE_INT64},    {{SD_AGG_SUM, "id"}, ST_TYPE_INT64},
		{{SD_AGG_MIN, "ts"}, ST_TYPE_TIMESTAMP},  {{SD_AGG_MAX, "sensor"}, ST_TYPE_STRING},
	};
	enum { NT = sizeof et / sizeof et[0] };
	struct sd_agg taggs[NT];
	for (int a = 0; a < NT; a++)
		taggs[a] = et[a].agg;
	const struct {
		struct st_at at;  /* version read */
		const char *pred; /* predicate */
	} sel[] = {
		{{ST_AT_VERSION, 0}, NULL},
		{{0}, "id < 0"},          /* every file pruned by its statistics */
		{{0}, "value = 0.0625"}, /* rows read, none selected */
	};
	const char *byg[] = {"sensor"};
	for (size_t k = 0; k < sizeof sel / sizeof sel[0]; k++)
		for (uint32_t ng = 0; ng < 2; ng++) {
			int rc = sd_query(s, "t", sel[k].at, byg, ng, taggs, NT, sel[k].pred, 10, &res,
					  &err);
			if (rc != ST_OK)
				fprintf(stderr, "  %s\n", err.msg);
			REQUIRE(rc == ST_OK);
			check_empty(&res, ng, et, NT, sel[k].pred ? sel[k].pred : "version 0");
			if (ng)
				CHECK_EQ(res.cols[0].type, ST_TYPE_STRING);
			sd_query_result_fini(&res);
		}
	st_store_close(s);
}

static const struct test_case tests[] = {
	{"grouped_fast_path", t_grouped_fast_path},
	{"grouped_with_predicate", t_grouped_with_predicate},
	{"grouped_nulls", t_grouped_nulls},
	{"grouped_nulls_predicate", t_grouped_nulls_predicate},
	{"grouped_null_keys_only", t_grouped_null_keys_only},
	{"no_group_and_two_groups", t_no_group_and_two_groups},
	{"empty_input_typed", t_empty_input_typed},
};
TEST_MAIN(tests)
