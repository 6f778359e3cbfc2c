/*
 * tests/unit/test_reader.c — CSV and JSON Lines input of `strata load`
 * (admin/reader.h): conversions, RFC 4180 quoting, batching across buffer
 * refills, type inference for new columns, and positioned errors.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/reader.h"
#include "tests/test.h"

static struct st_field fields[] = {
	{1, ST_TYPE_INT64, false, "id"},     {2, ST_TYPE_TIMESTAMP, true, "ts"},
	{3, ST_TYPE_STRING, true, "sensor"}, {4, ST_TYPE_FLOAT64, true, "value"},
	{5, ST_TYPE_BOOL, true, "ok"},       {6, ST_TYPE_DATE, true, "day"},
	{7, ST_TYPE_INT32, true, "small"},
};
static const struct st_schema table = {7, fields};

static FILE *in;
static rd_reader *r;
static struct st_err err;

static int open_text(const char *text, int format, char delim, uint32_t batch, bool infer)
{
	in = fmemopen((void *)text, strlen(text), "r");
	struct rd_opts o = {.format = format, .delim = delim, .batch_rows = batch,
			    .name = "in.csv", .infer_unknown = infer};
	return rd_open(in, &table, &o, &r, &err);
}

static void done(void)
{
	rd_close(r);
	r = NULL;
	fclose(in);
}

static int64_t i64(const struct st_vec *v, uint32_t i)
{
	return ((const int64_t *)v->data)[i];
}

static double f64(const struct st_vec *v, uint32_t i)
{
	return ((const double *)v->data)[i];
}

static bool str_is(const struct st_vec *v, uint32_t i, const char *s)
{
	uint32_t n = v->offsets[i + 1] - v->offsets[i];
	return n == strlen(s) && !memcmp(v->bytes + v->offsets[i], s, n);
}

static void t_csv_types(void)
{
	const char *text = "id,ts,sensor,value,ok,day,small\n"
			   "1,2024-01-02 03:04:05.5,a,1.25,true,2024-02-29,-7\n"
			   "-2,2024-01-02T03:04:05Z,,1e3,F,,2147483647\n";
	REQUIRE(open_text(text, RD_CSV, 0, 0, false) == ST_OK);
	const struct st_schema *s = rd_schema(r);
	REQUIRE(s->nfields == 7);
	CHECK_EQ(s->fields[0].id, 1);
	CHECK(!s->fields[0].nullable);
	const struct st_vec *c;
	uint32_t n;
	REQUIRE(rd_next(r, &c, &n, &err) == 1);
	REQUIRE(n == 2);
	CHECK_EQ(i64(&c[0], 0), 1);
	CHECK_EQ(i64(&c[0], 1), -2);
	CHECK_EQ(i64(&c[1], 0), 1704164645500000LL);
	CHECK_EQ(i64(&c[1], 1), 1704164645000000LL);
	CHECK(str_is(&c[2], 0, "a"));
	CHECK(st_vec_is_valid(&c[2], 0) && !st_vec_is_valid(&c[2], 1));
	CHECK(f64(&c[3], 0) == 1.25 && f64(&c[3], 1) == 1000.0);
	CHECK(((const uint8_t *)c[4].data)[0] == 1 && ((const uint8_t *)c[4].data)[1] == 0);
	CHECK_EQ(((const int32_t *)c[5].data)[0], 19782);
	CHECK(!st_vec_is_valid(&c[5], 1));
	CHECK_EQ(((const int32_t *)c[6].data)[1], 2147483647);
	CHECK(c[0].validity == NULL); /* no nulls: no bitmap */
	CHECK_EQ(rd_next(r, &c, &n, &err), 0);
	CHECK_EQ(n, 0);
	CHECK_EQ(rd_rows(r), 2);
	CHECK_EQ(rd_bytes(r), strlen(text));
	done();
}

static void t_csv_quoting(void)
{
	/* BOM, CRLF, quoted delimiter, quote, newline, "" = empty, blank lines,
	 * no final newline, header order differs from the table. */
	const char *text = "\xef\xbb\xbf"
			   "sensor,ID\r\n"
			   "\"a,b\",1\r\n"
			   "\r\n"
			   "\"say \"\"hi\"\"\",2\r\n"
			   "\"two\nlines\",3\n"
			   "\n"
			   "\"\",4\n"
			   ",5";
	REQUIRE(open_text(text, RD_CSV, 0, 0, false) == ST_OK);
	const struct st_schema *s = rd_schema(r);
	REQUIRE(s->nfields == 2);
	CHECK(!strcmp(s->fields[0].name, "sensor"));
	CHECK(!strcmp(s->fields[1].name, "id")); /* the table's spelling */
	const struct st_vec *c;
	uint32_t n;
	REQUIRE(rd_next(r, &c, &n, &err) == 1);
	REQUIRE(n == 5);
	CHECK(str_is(&c[0], 0, "a,b"));
	CHECK(str_is(&c[0], 1, "say \"hi\""));
	CHECK(str_is(&c[0], 2, "two\nlines"));
	CHECK(str_is(&c[0], 3, "") && st_vec_is_valid(&c[0], 3));
	CHECK(!st_vec_is_valid(&c[0], 4));
	CHECK_EQ(i64(&c[1], 4), 5);
	done();
}

static void t_csv_delimiters(void)
{
	REQUIRE(open_text("id;value\n1;2.5\n", RD_CSV, ';', 0, false) == ST_OK);
	const struct st_vec *c;
	uint32_t n;
	REQUIRE(rd_next(r, &c, &n, &err) == 1 && n == 1);
	CHECK(f64(&c[1], 0) == 2.5);
	done();
	REQUIRE(open_text("id\tsensor\n1\tx y\n", RD_CSV, '\t', 0, false) == ST_OK);
	REQUIRE(rd_next(r, &c, &n, &err) == 1 && n == 1);
	CHECK(str_is(&c[1], 0, "x y"));
	done();
}

static void csv_error(const char *text, const char *want)
{
	const struct st_vec *c;
	uint32_t n;
	int rc = open_text(text, RD_CSV, 0, 0, false);
	if (rc == ST_OK) {
		while ((rc = rd_next(r, &c, &n, &err)) == 1)
			;
		CHECK(rc < 0);
		done();
	} else {
		fclose(in);
	}
	if (rc < 0)
		CHECK_CONTAINS(err.msg, want);
}

static void t_csv_errors(void)
{
	csv_error("", "in.csv:1:1: the input is empty");
	csv_error("id,nope\n", "in.csv:1:4: column 'nope' is not in the table (--merge-schema adds it)");
	csv_error("id,ID\n", "in.csv:1:4: column 'ID' appears twice");
	csv_error("id,\n", "in.csv:1:4: header field 2 is empty");
	csv_error("id,value\n1,2\n3,x4\n",
		  "in.csv:3:3: column 'value' (float64): 'x4' is not a float64");
	csv_error("id,ts\n1,2024-13-01\n", "in.csv:2:3: column 'ts' (timestamp): '2024-13-01' is "
					   "not a timestamp (expected YYYY-MM-DD HH:MM:SS[.ffffff])");
	csv_error("id\n99999999999999999999\n", "in.csv:2:1: column 'id' (int64)");
	csv_error("small\n2147483648\n", "column 'small' (int32): '2147483648' is not a int32");
	csv_error("id,value\n1\n", "in.csv:2:2: 1 field, the header has 2");
	csv_error("id,value\n1,2,3\n", "in.csv:2:5: 3 fields, the header has 2");
	csv_error("id,sensor\n1,\"open\n2,x\n", "in.csv:2:3: a quoted field is not closed");
	csv_error("id,sensor\n1,ab\"c\n", "in.csv:2:5: a quote inside an unquoted field");
	csv_error("id,sensor\n1,\"ab\"c\n", "in.csv:2:7: unexpected 'c' after a closing quote");
	csv_error("id,sensor\n1,\"a\nb\"\n2,\"x\"y\n", "in.csv:4:6: unexpected 'y'");
	csv_error("ok\nmaybe\n", "'maybe' is not a bool (expected true or false)");
}

/* 300k rows cross many 1 MiB buffer refills and batch boundaries. */
static void t_csv_large_batches(void)
{
	size_t cap = 300000 * 40 + 64, len = 0;
	char *text = malloc(cap);
	REQUIRE(text);
	len += (size_t)sprintf(text, "id,sensor,value\n");
	for (int i = 0; i < 300000; i++)
		len += (size_t)sprintf(text + len, "%d,\"s%d\",%d.%03d\n", i, i % 7, i, i % 1000);
	REQUIRE(open_text(text, RD_CSV, 0, 65536, false) == ST_OK);
	const struct st_vec *c;
	uint32_t n;
	int64_t sum = 0, rows = 0, batches = 0;
	double vsum = 0;
	int rc;
	while ((rc = rd_next(r, &c, &n, &err)) == 1) {
		batches++;
		if (rows + n < 300000)
			CHECK_EQ(n, 65536); /* full batches until the last */
		for (uint32_t i = 0; i < n; i++) {
			sum += i64(&c[0], i);
			vsum += f64(&c[2], i) - (double)i64(&c[0], i);
			char want[16];
			snprintf(want, sizeof want, "s%d", (int)(i64(&c[0], i) % 7));
			if (!str_is(&c[1], i, want)) {
				CHECK(str_is(&c[1], i, want));
				break;
			}
		}
		rows += n;
	}
	CHECK_EQ(rc, 0);
	CHECK_EQ(rows, 300000);
	CHECK_EQ(batches, 5);
	CHECK_EQ(sum, 300000LL * 299999 / 2);
	CHECK(fabs(vsum - 300 * 499.5) < 1e-3);
	done();
	free(text);
}

/* One field larger than the buffer makes it grow. */
static void t_csv_huge_field(void)
{
	size_t big = 3u << 20;
	char *text = malloc(big + 64);
	REQUIRE(text);
	int k = sprintf(text, "sensor,id\n\"");
	memset(text + k, 'x', big);
	strcpy(text + k + big, "\",7\n");
	REQUIRE(open_text(text, RD_CSV, 0, 0, false) == ST_OK);
	const struct st_vec *c;
	uint32_t n;
	REQUIRE(rd_next(r, &c, &n, &err) == 1 && n == 1);
	CHECK_EQ(c[0].offsets[1], big);
	CHECK_EQ(i64(&c[1], 0), 7);
	done();
	free(text);
}

/* Decimal text converts exactly like strtod. */
static void t_float_exact(void)
{
	char *text = malloc(2000000), *p = text;
	REQUIRE(text);
	p += sprintf(p, "value\n");
	uint64_t x = 88172645463325252ULL;
	static char want[50000][32];
	for (int i = 0; i < 50000; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		switch (i % 4) {
		case 0: snprintf(want[i], 32, "%.6f", (double)(x % 1000000000) / 1e6); break;
		case 1: snprintf(want[i], 32, "%.17g", (double)x / 3.0); break;
		case 2: snprintf(want[i], 32, "-%llu.%llu", (unsigned long long)(x % 100000),
				 (unsigned long long)(x % 999999999)); break;
		default: snprintf(want[i], 32, "%.3e", (double)(x % 77777) * 1e-5); break;
		}
		p += sprintf(p, "%s\n", want[i]);
	}
	REQUIRE(open_text(text, RD_CSV, 0, 0, false) == ST_OK);
	const struct st_vec *c;
	uint32_t n;
	REQUIRE(rd_next(r, &c, &n, &err) == 1 && n == 50000);
	int bad = 0;
	for (int i = 0; i < 50000; i++)
		bad += f64(&c[0], (uint32_t)i) != strtod(want[i], NULL);
	CHECK_EQ(bad, 0);
	done();
	free(text);
}

static void t_csv_infer(void)
{
	const char *text = "id,n,f,t,s,e\n"
			   "1,5,1.5,2024-01-01 00:00:00,x,\n"
			   "2,,2,2024-01-02,7,\n"
			   "3,-9,3e2,,y,\n";
	REQUIRE(open_text(text, RD_CSV, 0, 2, true) == ST_OK);
	const struct st_schema *s = rd_schema(r);
	REQUIRE(s->nfields == 6);
	CHECK_EQ(s->fields[1].type, ST_TYPE_INT64);
	CHECK_EQ(s->fields[2].type, ST_TYPE_FLOAT64);
	CHECK_EQ(s->fields[3].type, ST_TYPE_TIMESTAMP);
	CHECK_EQ(s->fields[4].type, ST_TYPE_STRING);
	CHECK_EQ(s->fields[5].type, ST_TYPE_STRING); /* only NULLs */
	CHECK(s->fields[1].nullable && s->fields[1].id == 0);
	const struct st_vec *c;
	uint32_t n;
	REQUIRE(rd_next(r, &c, &n, &err) == 1 && n == 2);
	CHECK_EQ(i64(&c[1], 0), 5);
	CHECK(!st_vec_is_valid(&c[1], 1));
	CHECK(f64(&c[2], 1) == 2.0);
	CHECK_EQ(i64(&c[3], 1), 1704153600000000LL);
	CHECK(str_is(&c[4], 1, "7"));
	REQUIRE(rd_next(r, &c, &n, &err) == 1 && n == 1);
	CHECK_EQ(i64(&c[1], 0), -9);
	CHECK(f64(&c[2], 0) == 300.0);
	CHECK(str_is(&c[4], 0, "y"));
	CHECK_EQ(rd_next(r, &c, &n, &err), 0);
	done();
	/* A later value that does not fit the inferred type is an error. */
	csv_error("id,n\n1,5\n", "column 'n' is not in the table");
	REQUIRE(open_text("id,n\n1,5\n2,x\n", RD_CSV, 0, 1, true) == ST_OK);
	REQUIRE(rd_next(r, &c, &n, &err) == 1);
	CHECK(rd_next(r, &c, &n, &err) == ST_ESCHEMA);
	CHECK_CONTAINS(err.msg, "in.csv:3:3: column 'n' (int64): 'x' is not a int64");
	done();
}

static void t_jsonl(void)
{
	const char *text = "{\"id\": 1, \"sensor\": \"caf\\u00e9 \\ud83d\\ude00\", \"value\": 2.5, "
			   "\"ok\": true, \"ts\": \"2024-01-01 00:00:01\"}\n"
			   "\n"
			   "  {\"ID\":2,\"value\":null,\"ts\":1000}  \r\n"
			   "{\"value\": -1e2, \"id\": 3, \"sensor\": \"a\\\"b\\\\c\\n\"}";
	REQUIRE(open_text(text, RD_JSONL, 0, 0, false) == ST_OK);
	REQUIRE(rd_schema(r)->nfields == 7);
	const struct st_vec *c;
	uint32_t n;
	REQUIRE(rd_next(r, &c, &n, &err) == 1);
	REQUIRE(n == 3);
	CHECK_EQ(i64(&c[0], 2), 3);
	CHECK(str_is(&c[2], 0, "caf\xc3\xa9 \xf0\x9f\x98\x80"));
	CHECK(!st_vec_is_valid(&c[2], 1));
	CHECK(str_is(&c[2], 2, "a\"b\\c\n"));
	CHECK(f64(&c[3], 0) == 2.5 && !st_vec_is_valid(&c[3], 1) && f64(&c[3], 2) == -100);
	CHECK_EQ(i64(&c[1], 0), 1704067201000000LL);
	CHECK_EQ(i64(&c[1], 1), 1000);
	CHECK(!st_vec_is_valid(&c[1], 2));
	CHECK(!st_vec_is_valid(&c[5], 0)); /* day never given */
	CHECK_EQ(rd_next(r, &c, &n, &err), 0);
	done();
}

static void json_error(const char *text, bool infer, const char *want)
{
	const struct st_vec *c;
	uint32_t n;
	int rc = open_text(text, RD_JSONL, 0, 1, infer);
	if (rc == ST_OK) {
		while ((rc = rd_next(r, &c, &n, &err)) == 1)
			;
		done();
	} else {
		fclose(in);
	}
	CHECK(rc < 0);
	if (rc < 0)
		CHECK_CONTAINS(err.msg, want);
}

static void t_jsonl_errors(void)
{
	json_error("{\"id\": 1}\n[1]\n", false, "in.csv:2:1: expected a JSON object");
	json_error("{\"id\": 1, \"x\": 2}\n", false,
		   "in.csv:1:11: key 'x' is not a column of the table (--merge-schema adds it)");
	json_error("{\"id\": {\"a\": 1}}\n", false, "in.csv:1:8: nested objects and arrays");
	json_error("{\"id\": 1, \"id\": 2}\n", false, "in.csv:1:11: key 'id' appears twice");
	json_error("{\"id\": 1} x\n", false, "in.csv:1:11: text after the end of the object");
	json_error("{\"id\": 1\n", false, "in.csv:1:9: expected ',' or '}'");
	json_error("{\"id\": tru}\n", false, "in.csv:1:8: not a JSON value");
	json_error("{\"id\": \"1\", \"sensor\": \"\\q\"}\n", false, "an unknown escape");
	json_error("{\"sensor\": \"\\ud800\"}\n", false, "lone UTF-16 surrogate");
	json_error("{\"sensor\": \"abc}\n", false, "a string is not closed");
	json_error("{\"id\": 1.5}\n", false, "column 'id' (int64): '1.5' is not a int64");
	json_error("{\"id\": 1}\n{\"id\": 2, \"late\": 1}\n", true,
		   "in.csv:2:11: key 'late' is not a column of the table and first appears after "
		   "the first batch");
}

static void t_jsonl_infer(void)
{
	const char *text = "{\"id\": 1, \"n\": null, \"s\": \"x\"}\n"
			   "{\"id\": 2, \"n\": 7, \"b\": false, \"f\": 1.5}\n"
			   "{\"id\": 3, \"n\": 8, \"s\": \"y\"}\n";
	REQUIRE(open_text(text, RD_JSONL, 0, 0, true) == ST_OK);
	const struct st_schema *s = rd_schema(r);
	REQUIRE(s->nfields == 11);
	CHECK(!strcmp(s->fields[7].name, "n") && s->fields[7].type == ST_TYPE_INT64);
	CHECK(!strcmp(s->fields[8].name, "s") && s->fields[8].type == ST_TYPE_STRING);
	CHECK(!strcmp(s->fields[9].name, "b") && s->fields[9].type == ST_TYPE_BOOL);
	CHECK(!strcmp(s->fields[10].name, "f") && s->fields[10].type == ST_TYPE_FLOAT64);
	const struct st_vec *c;
	uint32_t n;
	REQUIRE(rd_next(r, &c, &n, &err) == 1 && n == 3);
	CHECK(!st_vec_is_valid(&c[7], 0));
	CHECK_EQ(i64(&c[7], 1), 7);
	CHECK_EQ(i64(&c[7], 2), 8);
	CHECK(str_is(&c[8], 0, "x") && !st_vec_is_valid(&c[8], 1) && str_is(&c[8], 2, "y"));
	CHECK(!st_vec_is_valid(&c[9], 0) && st_vec_is_valid(&c[9], 1));
	CHECK(!st_vec_is_valid(&c[10], 0) && f64(&c[10], 1) == 1.5 && !st_vec_is_valid(&c[10], 2));
	done();
}

static const struct test_case tests[] = {
	{"csv_types", t_csv_types},
	{"csv_quoting", t_csv_quoting},
	{"csv_delimiters", t_csv_delimiters},
	{"csv_errors", t_csv_errors},
	{"csv_large_batches", t_csv_large_batches},
	{"csv_huge_field", t_csv_huge_field},
	{"float_exact", t_float_exact},
	{"csv_infer", t_csv_infer},
	{"jsonl", t_jsonl},
	{"jsonl_errors", t_jsonl_errors},
	{"jsonl_infer", t_jsonl_infer},
};
TEST_MAIN(tests)
