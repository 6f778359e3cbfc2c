/*
 * admin/reader.c — CSV and JSON Lines into typed column batches (reader.h).
 *
 * The input is read in large chunks into one buffer. A record is first
 * tokenized (CSV: field spans; JSONL: one line), and only when it is
 * complete in the buffer are its values converted into the column
 * builders, so a record cut by the end of the buffer is simply tokenized
 * again after the buffer is refilled (the partial record moves to the front
 * and the buffer doubles if one record needs it). Conversion is hand-written
 * for the common forms (integers, short decimals, fixed-position
 * timestamps) and falls back to strtod for the rest.
 *
 * Single-threaded: one reader belongs to one caller.
 */
#include "admin/reader.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "format/bytes.h"

#define CHUNK (1u << 20)
#define MAX_RECORD (1u << 30)

/* A column being filled. */
struct col {
	uint8_t type;          /* its type; 0 = new JSON column with no value yet */
	bool infer;            /* new CSV column: kept as text until the first batch ends */
	bool has_null;         /* some row of this batch is NULL */
	uint64_t last_row;     /* JSONL: 1 + the row that last set it */
	uint8_t *data;         /* batch_rows values of up to 8 bytes */
	uint8_t *validity;     /* batch_rows bits, 1 = valid */
	uint32_t *offsets;     /* varlen: batch_rows + 1 offsets into bytes */
	struct st_buf bytes;   /* varlen: value bytes */
};

/* A CSV field in the buffer. */
struct span {
	const char *p;         /* first byte (after the opening quote) */
	uint32_t len;          /* bytes (without quotes) */
	uint32_t column;       /* 1-based byte column of the field start */
	uint64_t line;         /* line of the field start */
	bool quoted;           /* was quoted */
	bool escaped;          /* holds "" pairs to unescape */
};

struct rd_reader {
	FILE *in;                  /* the input, not owned */
	struct rd_opts o;          /* options with defaults applied */
	const struct st_schema *table; /* the table's schema, borrowed during rd_open */
	char *buf;                 /* input buffer */
	size_t cap, pos, end;      /* its size, parse position, bytes held */
	bool eof;                  /* the input has no more bytes */
	uint64_t consumed;         /* input bytes before buf[0] */
	uint64_t line;             /* line number at buf[pos] */
	const char *line_start;    /* start of the current line in buf */
	uint64_t rows;             /* rows returned so far */
	struct st_schema schema;   /* the input's columns */
	struct col *cols;          /* one builder per column */
	struct st_vec *vecs;       /* the batch handed out */
	uint32_t nrows;            /* rows in the batch being filled */
	bool first_batch;          /* filling the first batch (new columns may appear) */
	bool pending;              /* the first batch was read ahead by rd_open */
	int pending_rc;            /* its rd_next result */
	struct span *spans;        /* CSV: fields of the record */
	size_t next_pos;           /* CSV: where the tokenized record ends */
	uint64_t next_line;        /* CSV: the line there */
	const char *next_ls;       /* CSV: the start of that line */
	uint8_t special[256];      /* CSV: bytes that end an unquoted field */
	struct st_buf scratch;     /* unescaped text */
	char num[512];             /* NUL-terminated copy for strtod */
};

/* ---- errors ---- */

static int fail(rd_reader *r, struct st_err *err, int code, uint64_t line, uint64_t column,
		const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int fail(rd_reader *r, struct st_err *err, int code, uint64_t line, uint64_t column,
		const char *fmt, ...)
{
	char msg[ST_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return st_seterr(err, code, "%s:%" PRIu64 ":%" PRIu64 ": %s", r->o.name, line, column, msg);
}

/* ---- input buffer ---- */

/* Move the unparsed bytes to the front and read more. Returns ST_OK (r->eof
 * set when nothing more comes), ST_ETOOBIG or errno. */
static int refill(rd_reader *r, struct st_err *err)
{
	size_t keep = r->end - r->pos;
	ptrdiff_t ls = r->line_start - (r->buf + r->pos);
	if (keep > r->cap / 2) {
		if (r->cap >= MAX_RECORD)
			return fail(r, err, ST_ETOOBIG, r->line, 1,
				    "a record is larger than %u MiB", MAX_RECORD >> 20);
		char *n = realloc(r->buf, r->cap * 2 + 1);
		if (!n)
			return st_seterr(err, ST_ENOMEM, "out of memory reading %s", r->o.name);
		r->buf = n;
		r->cap *= 2;
	}
	memmove(r->buf, r->buf + r->pos, keep);
	r->consumed += r->pos;
	r->pos = 0;
	r->end = keep;
	r->line_start = r->buf + ls;
	size_t got = fread(r->buf + r->end, 1, r->cap - r->end, r->in);
	r->end += got;
	r->buf[r->end] = '\0';
	if (got == 0) {
		if (ferror(r->in))
			return st_seterr(err, errno ? errno : EIO, "cannot read %s: %s", r->o.name,
					 strerror(errno ? errno : EIO));
		r->eof = true;
	}
	return ST_OK;
}

/* ---- value conversion ---- */

static bool parse_i64(const char *p, size_t n, int64_t *out)
{
	size_t i = 0;
	bool neg = false;
	if (n && (p[0] == '-' || p[0] == '+')) {
		neg = p[0] == '-';
		i = 1;
	}
	if (i == n)
		return false;
	uint64_t v = 0;
	for (; i < n; i++) {
		unsigned d = (unsigned char)p[i] - '0';
		if (d > 9 || __builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, d, &v))
			return false;
	}
	if (neg ? v > (uint64_t)INT64_MAX + 1 : v > (uint64_t)INT64_MAX)
		return false;
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return true;
}

static bool parse_f64(rd_reader *r, const char *p, size_t n, double *out)
{
	static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
				     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
				     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
	size_t i = 0;
	bool neg = false, any = false;
	uint64_t m = 0;
	int nd = 0, exp = 0;
	if (i < n && (p[i] == '-' || p[i] == '+'))
		neg = p[i++] == '-';
	for (; i < n && p[i] >= '0' && p[i] <= '9'; i++, any = true)
		if (nd < 19) {
			m = m * 10 + (uint64_t)(p[i] - '0');
			nd += m != 0;
		} else {
			exp++;
		}
	if (i < n && p[i] == '.')
		for (i++; i < n && p[i] >= '0' && p[i] <= '9'; i++, any = true)
			if (nd < 19) {
				m = m * 10 + (uint64_t)(p[i] - '0');
				nd += m != 0;
				exp--;
			}
	/* Exact when m and 10^|exp| are both exact doubles: one rounding. */
	if (any && i == n && m <= (1ULL << 53) && exp >= -22 && exp <= 22) {
		double d = (double)m;
		d = exp < 0 ? d / p10[-exp] : d * p10[exp];
		*out = neg ? -d : d;
		return true;
	}
	if (n == 0 || n >= sizeof r->num)
		return false;
	memcpy(r->num, p, n);
	r->num[n] = '\0';
	char *end;
	*out = strtod(r->num, &end);
	return end == r->num + n;
}

static bool parse_bool(const char *p, size_t n, uint8_t *out)
{
	static const char *const t[] = {"true", "t", "1", "yes"}, *const f[] = {"false", "f", "0", "no"};
	for (int i = 0; i < 4; i++) {
		if (strlen(t[i]) == n && !strncasecmp(p, t[i], n))
			return (*out = 1), true;
		if (strlen(f[i]) == n && !strncasecmp(p, f[i], n))
			return (*out = 0), true;
	}
	return false;
}

/* Row is NULL. A column of unknown type (0) keeps both forms valid. */
static void set_null(struct col *c, uint32_t row)
{
	c->has_null = true;
	c->validity[row >> 3] &= (uint8_t)~(1u << (row & 7));
	if (!c->type || st_type_is_varlen(c->type))
		c->offsets[row + 1] = c->offsets[row];
	if (!st_type_is_varlen(c->type))
		memset(c->data + (size_t)row * 8, 0, 8);
}

static int put_text(struct col *c, uint32_t row, const char *p, size_t n)
{
	st_buf_append(&c->bytes, p, n);
	if (c->bytes.oom || c->bytes.len > UINT32_MAX)
		return ST_ENOMEM;
	c->offsets[row + 1] = (uint32_t)c->bytes.len;
	return ST_OK;
}

/* Store text p[0..n) in row of c, converted to c's type. Returns ST_OK,
 * ST_ESCHEMA (not a value of the type; *what names the type) or ST_ENOMEM. */
static int put_value(rd_reader *r, struct col *c, uint32_t row, const char *p, size_t n)
{
	/* Each case places its value by its own width: no call per value. */
	uint8_t *d8 = c->data + (size_t)row * 8, *d4 = c->data + (size_t)row * 4;
	int64_t i64, days;
	double f;
	switch (c->type) {
	case ST_TYPE_STRING:
	case ST_TYPE_BINARY:
		return put_text(c, row, p, n);
	case ST_TYPE_INT64:
		if (!parse_i64(p, n, &i64))
			return ST_ESCHEMA;
		memcpy(d8, &i64, 8);
		return ST_OK;
	case ST_TYPE_INT32:
		if (!parse_i64(p, n, &i64) || i64 < INT32_MIN || i64 > INT32_MAX)
			return ST_ESCHEMA;
		int32_t i32 = (int32_t)i64;
		memcpy(d4, &i32, 4);
		return ST_OK;
	case ST_TYPE_FLOAT64:
		if (!parse_f64(r, p, n, &f))
			return ST_ESCHEMA;
		memcpy(d8, &f, 8);
		return ST_OK;
	case ST_TYPE_BOOL:
		return parse_bool(p, n, c->data + row) ? ST_OK : ST_ESCHEMA;
	case ST_TYPE_DATE:
		if (!st_parse_datetime(p, n, true, &days, &i64) || days < INT32_MIN || days > INT32_MAX)
			return ST_ESCHEMA;
		i32 = (int32_t)days;
		memcpy(d4, &i32, 4);
		return ST_OK;
	case ST_TYPE_TIMESTAMP:
		if (!st_parse_datetime(p, n, false, &days, &i64))
			return ST_ESCHEMA;
		memcpy(d8, &i64, 8);
		return ST_OK;
	default:
		return ST_ESCHEMA;
	}
}

static const char *type_hint(int type)
{
	switch (type) {
	case ST_TYPE_DATE: return " (expected YYYY-MM-DD)";
	case ST_TYPE_TIMESTAMP: return " (expected YYYY-MM-DD HH:MM:SS[.ffffff])";
	case ST_TYPE_BOOL: return " (expected true or false)";
	default: return "";
	}
}

static int bad_value(rd_reader *r, struct st_err *err, uint32_t ci, uint64_t line,
		     uint64_t column, const char *p, size_t n)
{
	const struct st_field *f = &r->schema.fields[ci];
	return fail(r, err, ST_ESCHEMA, line, column, "column '%s' (%s): '%.*s' is not a %s%s",
		    f->name, st_type_name(f->type), n > 64 ? 64 : (int)n, p, st_type_name(f->type),
		    type_hint(f->type));
}

/* ---- columns ---- */

static int col_alloc(struct col *c, uint32_t rows)
{
	c->data = malloc((size_t)rows * 8);
	c->validity = malloc(rows / 8 + 1);
	c->offsets = malloc(((size_t)rows + 1) * sizeof *c->offsets);
	return c->data && c->validity && c->offsets ? ST_OK : ST_ENOMEM;
}

static void col_free(struct col *c)
{
	free(c->data);
	free(c->validity);
	free(c->offsets);
	st_buf_free(&c->bytes);
}

static void batch_reset(rd_reader *r)
{
	r->nrows = 0;
	for (uint32_t i = 0; i < r->schema.nfields; i++) {
		struct col *c = &r->cols[i];
		memset(c->validity, 0xff, r->o.batch_rows / 8 + 1);
		c->has_null = false;
		c->offsets[0] = 0;
		c->bytes.len = 0;
		c->last_row = 0;
	}
}

/* Add a column named name[0..n) of type (0: not known yet) to the input
 * schema. Rows already in the batch are NULL in it. */
static int add_column(rd_reader *r, const char *name, size_t n, const struct st_field *tf,
		      uint8_t type, struct st_err *err)
{
	uint32_t k = r->schema.nfields;
	if (k >= ST_MAX_COLUMNS)
		return fail(r, err, ST_ETOOBIG, r->line, 1, "more than %u columns", ST_MAX_COLUMNS);
	if (n > ST_NAME_MAX)
		return fail(r, err, ST_EINVAL, r->line, 1, "a column name is longer than %u bytes",
			    ST_NAME_MAX);
	struct st_field *nf = realloc(r->schema.fields, (k + 1) * sizeof *nf);
	if (nf)
		r->schema.fields = nf;
	struct col *nc = nf ? realloc(r->cols, (k + 1) * sizeof *nc) : NULL;
	if (nc)
		r->cols = nc;
	struct st_vec *nv = nc ? realloc(r->vecs, (k + 1) * sizeof *nv) : NULL;
	if (nv)
		r->vecs = nv;
	if (!nv)
		return fail(r, err, ST_ENOMEM, r->line, 1, "out of memory adding column %u", k + 1);
	struct st_field *f = &r->schema.fields[k];
	memset(f, 0, sizeof *f);
	if (tf) {
		*f = *tf;
	} else {
		memcpy(f->name, name, n);
		f->name[n] = '\0';
		f->nullable = true;
		f->type = type;
	}
	struct col *c = &r->cols[k];
	memset(c, 0, sizeof *c);
	c->type = f->type;
	r->schema.nfields = k + 1;
	if (col_alloc(c, r->o.batch_rows) != ST_OK)
		return fail(r, err, ST_ENOMEM, r->line, 1, "out of memory adding column %u", k + 1);
	memset(c->validity, 0xff, r->o.batch_rows / 8 + 1);
	c->offsets[0] = 0;
	for (uint32_t row = 0; row < r->nrows; row++)
		set_null(c, row);
	return ST_OK;
}

/* The end of the first batch: CSV columns kept as text get their type. */
static void settle_types(rd_reader *r)
{
	for (uint32_t ci = 0; ci < r->schema.nfields; ci++) {
		struct col *c = &r->cols[ci];
		struct st_field *f = &r->schema.fields[ci];
		if (!c->type)
			c->type = f->type = ST_TYPE_STRING; /* JSON: only nulls seen */
		if (!c->infer)
			continue;
		c->infer = false;
		static const uint8_t tries[] = {ST_TYPE_INT64, ST_TYPE_FLOAT64, ST_TYPE_TIMESTAMP};
		uint32_t nvalid = 0;
		for (uint32_t row = 0; row < r->nrows; row++)
			nvalid += (c->validity[row >> 3] >> (row & 7)) & 1;
		for (size_t t = 0; nvalid && t < sizeof tries; t++) {
			struct col probe = *c;
			probe.type = tries[t];
			bool ok = true;
			for (uint32_t row = 0; row < r->nrows && ok; row++) {
				if (!((c->validity[row >> 3] >> (row & 7)) & 1))
					continue;
				const char *p = (const char *)c->bytes.data + c->offsets[row];
				ok = put_value(r, &probe, row, p, c->offsets[row + 1] - c->offsets[row]) ==
				     ST_OK;
			}
			if (ok) {
				c->type = f->type = tries[t];
				break;
			}
		}
		if (c->type == ST_TYPE_STRING)
			continue;
		/* The values now sit in data (put_value wrote them there); the
		 * null rows' slots are don't-care. */
		c->bytes.len = 0;
	}
}

/* ---- CSV ---- */

enum { REC_OK = 1, REC_MORE = 2, REC_EOF = 3 };

/* Tokenize the record at buf[pos] into r->spans. Returns REC_OK (*nf
 * fields; r->next_* say where it ends), REC_MORE (the buffer ends inside
 * it), REC_EOF, or an error. */
static int csv_tokenize(rd_reader *r, uint32_t maxf, uint32_t *nf, struct st_err *err)
{
	const char *p = r->buf + r->pos, *end = r->buf + r->end;
	const char *ls = r->line_start;
	uint64_t ln = r->line;
	char delim = r->o.delim;
	uint32_t n = 0;
	if (p == end)
		return r->eof ? REC_EOF : REC_MORE;
	for (;;) {
		if (n == maxf)
			return fail(r, err, ST_ESCHEMA, ln, (uint64_t)(p - ls) + 1,
				    "more fields than the %u of the header", maxf - 1);
		struct span *s = &r->spans[n++];
		s->column = (uint32_t)(p - ls) + 1;
		s->line = ln;
		s->quoted = s->escaped = false;
		if (p < end && *p == '"') {
			s->quoted = true;
			s->p = ++p;
			for (;;) {
				const char *q = memchr(p, '"', (size_t)(end - p));
				for (const char *nl = p; (nl = memchr(nl, '\n', (size_t)((q ? q : end) - nl)));
				     nl++) {
					ln++;
					ls = nl + 1;
				}
				if (!q) {
					if (r->eof)
						return fail(r, err, ST_EINVAL, s->line, s->column,
							    "a quoted field is not closed");
					return REC_MORE;
				}
				if (q + 1 == end && !r->eof)
					return REC_MORE;
				if (q + 1 < end && q[1] == '"') {
					s->escaped = true;
					p = q + 2;
					continue;
				}
				s->len = (uint32_t)(q - s->p);
				p = q + 1;
				break;
			}
			if (p < end && *p != delim && *p != '\n' && *p != '\r')
				return fail(r, err, ST_EINVAL, ln, (uint64_t)(p - ls) + 1,
					    "unexpected '%c' after a closing quote (a quote inside a "
					    "quoted field is written \"\")", *p);
		} else {
			s->p = p;
			while (p < end && !r->special[(unsigned char)*p])
				p++;
			if (p < end && *p == '"')
				return fail(r, err, ST_EINVAL, ln, (uint64_t)(p - ls) + 1,
					    "a quote inside an unquoted field (quote the whole field "
					    "and write the quote as \"\")");
			s->len = (uint32_t)(p - s->p);
		}
		if (p == end) {
			if (!r->eof)
				return REC_MORE;
			break;
		}
		if (*p == delim) {
			p++;
			continue;
		}
		if (*p == '\r') {
			if (p + 1 == end && !r->eof)
				return REC_MORE;
			p += p + 1 < end && p[1] == '\n' ? 2 : 1;
		} else {
			p++; /* '\n' */
		}
		ln++;
		ls = p;
		break;
	}
	*nf = n;
	r->next_pos = (size_t)(p - r->buf);
	r->next_line = ln;
	r->next_ls = ls;
	return REC_OK;
}

/* Move past the record just tokenized. */
static void csv_advance(rd_reader *r)
{
	r->pos = r->next_pos;
	r->line = r->next_line;
	r->line_start = r->next_ls;
}

/* The next record, refilling as needed. Blank lines are skipped. */
static int csv_record(rd_reader *r, uint32_t maxf, uint32_t *nf, struct st_err *err)
{
	for (;;) {
		int rc = csv_tokenize(r, maxf, nf, err);
		if (rc == REC_MORE) {
			if ((rc = refill(r, err)) != ST_OK)
				return rc;
			continue;
		}
		if (rc != REC_OK)
			return rc;
		bool blank = *nf == 1 && r->spans[0].len == 0 && !r->spans[0].quoted;
		if (!blank)
			return REC_OK;
		csv_advance(r);
		if (r->pos == r->end && r->eof)
			return REC_EOF;
	}
}

/* The text of a span, unescaped when needed (valid until the next call). */
static const char *span_text(rd_reader *r, const struct span *s, size_t *n)
{
	if (!s->escaped) {
		*n = s->len;
		return s->p;
	}
	r->scratch.len = 0;
	for (uint32_t i = 0; i < s->len; i++) {
		st_buf_u8(&r->scratch, (uint8_t)s->p[i]);
		i += s->p[i] == '"';
	}
	*n = r->scratch.len;
	return r->scratch.oom ? NULL : (const char *)r->scratch.data;
}

static int csv_header(rd_reader *r, struct st_err *err)
{
	uint32_t nf;
	int rc = csv_record(r, ST_MAX_COLUMNS + 1, &nf, err);
	if (rc == REC_EOF)
		return fail(r, err, ST_EINVAL, 1, 1, "the input is empty (a CSV needs a header line)");
	if (rc != REC_OK)
		return rc;
	for (uint32_t i = 0; i < nf; i++) {
		size_t n;
		const char *name = span_text(r, &r->spans[i], &n);
		if (!name)
			return fail(r, err, ST_ENOMEM, r->spans[i].line, r->spans[i].column,
				    "out of memory");
		if (n == 0)
			return fail(r, err, ST_EINVAL, r->spans[i].line, r->spans[i].column,
				    "header field %u is empty (every column needs a name)", i + 1);
		if (st_schema_find(&r->schema, name, n) >= 0)
			return fail(r, err, ST_EINVAL, r->spans[i].line, r->spans[i].column,
				    "column '%.*s' appears twice in the header", (int)n, name);
		int ti = st_schema_find(r->table, name, n);
		if (ti < 0 && !r->o.infer_unknown)
			return fail(r, err, ST_ESCHEMA, r->spans[i].line, r->spans[i].column,
				    "column '%.*s' is not in the table (%s)", (int)n, name,
				    r->o.unknown_hint ? r->o.unknown_hint : "--merge-schema adds it");
		if ((rc = add_column(r, name, n, ti >= 0 ? &r->table->fields[ti] : NULL,
				     ST_TYPE_STRING, err)) != ST_OK)
			return rc;
		r->cols[r->schema.nfields - 1].infer = ti < 0;
	}
	csv_advance(r);
	return ST_OK;
}

static int csv_fill(rd_reader *r, struct st_err *err)
{
	uint32_t ncols = r->schema.nfields;
	while (r->nrows < r->o.batch_rows) {
		uint32_t nf;
		int rc = csv_record(r, ncols + 1, &nf, err);
		if (rc == REC_EOF)
			break;
		if (rc != REC_OK)
			return rc;
		if (nf != ncols) {
			/* Point at the first extra field, or just after the last one. */
			const struct span *s = &r->spans[nf > ncols ? ncols : nf - 1];
			return fail(r, err, ST_ESCHEMA, s->line,
				    s->column + (nf > ncols ? 0 : s->len + 2 * s->quoted),
				    "%u field%s, the header has %u", nf, nf == 1 ? "" : "s", ncols);
		}
		uint32_t row = r->nrows;
		for (uint32_t i = 0; i < ncols; i++) {
			const struct span *s = &r->spans[i];
			struct col *c = &r->cols[i];
			if (s->len == 0 && (!s->quoted || !st_type_is_varlen(c->type))) {
				set_null(c, row);
				continue;
			}
			size_t n;
			const char *p = span_text(r, s, &n);
			if (!p)
				return fail(r, err, ST_ENOMEM, s->line, s->column, "out of memory");
			if ((rc = put_value(r, c, row, p, n)) == ST_ESCHEMA)
				return bad_value(r, err, i, s->line, s->column, p, n);
			if (rc != ST_OK)
				return fail(r, err, rc, s->line, s->column, "out of memory");
		}
		csv_advance(r);
		r->nrows++;
	}
	return ST_OK;
}

/* ---- JSON Lines ---- */

struct jcur {
	const char *p, *end; /* the rest of the line */
	const char *ls;      /* line start, for columns */
};

static void jws(struct jcur *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\r'))
		j->p++;
}

static void put_utf8(struct st_buf *b, uint32_t cp)
{
	if (cp < 0x80) {
		st_buf_u8(b, (uint8_t)cp);
	} else if (cp < 0x800) {
		st_buf_u8(b, (uint8_t)(0xc0 | cp >> 6));
		st_buf_u8(b, (uint8_t)(0x80 | (cp & 0x3f)));
	} else if (cp < 0x10000) {
		st_buf_u8(b, (uint8_t)(0xe0 | cp >> 12));
		st_buf_u8(b, (uint8_t)(0x80 | (cp >> 6 & 0x3f)));
		st_buf_u8(b, (uint8_t)(0x80 | (cp & 0x3f)));
	} else {
		st_buf_u8(b, (uint8_t)(0xf0 | cp >> 18));
		st_buf_u8(b, (uint8_t)(0x80 | (cp >> 12 & 0x3f)));
		st_buf_u8(b, (uint8_t)(0x80 | (cp >> 6 & 0x3f)));
		st_buf_u8(b, (uint8_t)(0x80 | (cp & 0x3f)));
	}
}

static int hex4(const char *p, uint32_t *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
		if (d < 0)
			return -1;
		*v = *v << 4 | (uint32_t)d;
	}
	return 0;
}

/* A JSON string at j->p (on the opening quote). Sets *s, *n: borrowed from
 * the line when it has no escapes, else from out (cleared first). Returns
 * NULL on success or the reason. */
static const char *jstring(struct jcur *j, struct st_buf *out, const char **s, size_t *n)
{
	const char *p = ++j->p, *start = p;
	while (p < j->end && *p != '"' && *p != '\\')
		p++;
	if (p < j->end && *p == '"') {
		*s = start;
		*n = (size_t)(p - start);
		j->p = p + 1;
		return NULL;
	}
	out->len = 0;
	st_buf_append(out, start, (size_t)(p - start));
	while (p < j->end && *p != '"') {
		if (*p != '\\') {
			st_buf_u8(out, (uint8_t)*p++);
			continue;
		}
		if (++p == j->end)
			break;
		uint32_t cp, lo;
		switch (*p++) {
		case '"': st_buf_u8(out, '"'); break;
		case '\\': st_buf_u8(out, '\\'); break;
		case '/': st_buf_u8(out, '/'); break;
		case 'b': st_buf_u8(out, '\b'); break;
		case 'f': st_buf_u8(out, '\f'); break;
		case 'n': st_buf_u8(out, '\n'); break;
		case 'r': st_buf_u8(out, '\r'); break;
		case 't': st_buf_u8(out, '\t'); break;
		case 'u':
			if (j->end - p < 4 || hex4(p, &cp)) {
				j->p = p;
				return "a \\u escape needs four hex digits";
			}
			p += 4;
			if (cp >= 0xd800 && cp < 0xdc00) {
				if (j->end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) ||
				    lo < 0xdc00 || lo > 0xdfff) {
					j->p = p;
					return "a lone UTF-16 surrogate in a \\u escape";
				}
				p += 6;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			} else if (cp >= 0xdc00 && cp < 0xe000) {
				j->p = p;
				return "a lone UTF-16 surrogate in a \\u escape";
			}
			put_utf8(out, cp);
			break;
		default:
			j->p = p - 1;
			return "an unknown escape";
		}
	}
	if (p >= j->end) {
		j->p = p;
		return "a string is not closed";
	}
	j->p = p + 1;
	if (out->oom)
		return "out of memory";
	*s = (const char *)out->data;
	*n = out->len;
	return NULL;
}

/* Column of a key: the one at the same position in the previous line if
 * it matches, else a search. -1 when the input has no such column. */
static int key_column(rd_reader *r, uint32_t pos, const char *k, size_t n)
{
	if (pos < r->schema.nfields) {
		const char *name = r->schema.fields[pos].name;
		if (strlen(name) == n && !strncasecmp(name, k, n))
			return (int)pos;
	}
	return st_schema_find(&r->schema, k, n);
}

static int json_value_error(rd_reader *r, struct st_err *err, const struct jcur *j,
			    const char *why)
{
	return fail(r, err, ST_EINVAL, r->line, (uint64_t)(j->p - j->ls) + 1, "%s", why);
}

static int json_row(rd_reader *r, struct jcur *j, struct st_err *err)
{
	uint32_t row = r->nrows;
	struct st_buf keybuf = {0};
	int rc = ST_OK;
	jws(j);
	if (j->p == j->end || *j->p != '{') {
		rc = json_value_error(r, err, j, "expected a JSON object ({\"column\": value, ...})");
		goto out;
	}
	j->p++;
	jws(j);
	if (j->p < j->end && *j->p == '}') {
		j->p++;
		goto end;
	}
	for (uint32_t pos = 0;; pos++) {
		jws(j);
		if (j->p == j->end || *j->p != '"') {
			rc = json_value_error(r, err, j, "expected a key in double quotes");
			goto out;
		}
		const char *kp = j->p, *k, *why;
		size_t kn;
		if ((why = jstring(j, &keybuf, &k, &kn))) {
			rc = json_value_error(r, err, j, why);
			goto out;
		}
		int ci = key_column(r, pos, k, kn);
		if (ci < 0) {
			int ti = st_schema_find(r->table, k, kn);
			if (ti < 0 && (!r->o.infer_unknown || !r->first_batch)) {
				rc = fail(r, err, ST_ESCHEMA, r->line, (uint64_t)(kp - j->ls) + 1,
					  r->o.infer_unknown
						  ? "key '%.*s' is not a column of the table and first "
						    "appears after the first batch"
						  : "key '%.*s' is not a column of the table (%s)",
					  (int)kn, k,
					  r->o.unknown_hint ? r->o.unknown_hint : "--merge-schema adds it");
				goto out;
			}
			if ((rc = add_column(r, k, kn, ti >= 0 ? &r->table->fields[ti] : NULL, 0, err)))
				goto out;
			ci = (int)r->schema.nfields - 1;
		}
		struct col *c = &r->cols[ci];
		if (c->last_row == (uint64_t)row + 1) {
			rc = fail(r, err, ST_EINVAL, r->line, (uint64_t)(kp - j->ls) + 1,
				  "key '%.*s' appears twice in the object", (int)kn, k);
			goto out;
		}
		c->last_row = (uint64_t)row + 1;
		jws(j);
		if (j->p == j->end || *j->p != ':') {
			rc = json_value_error(r, err, j, "expected ':' after the key");
			goto out;
		}
		j->p++;
		jws(j);
		const char *vp = j->p, *v = j->p;
		size_t vn = 0;
		uint8_t kind; /* the JSON type: 's'tring, 'n'umber, 'b'ool, 'z' null */
		if (j->p == j->end) {
			rc = json_value_error(r, err, j, "expected a value");
			goto out;
		}
		if (*j->p == '"') {
			if ((why = jstring(j, &r->scratch, &v, &vn))) {
				rc = json_value_error(r, err, j, why);
				goto out;
			}
			kind = 's';
		} else if (*j->p == '{' || *j->p == '[') {
			rc = json_value_error(r, err, j,
					      "nested objects and arrays are not supported; values "
					      "are strings, numbers, true, false or null");
			goto out;
		} else {
			while (j->p < j->end && *j->p != ',' && *j->p != '}' && *j->p != ' ' &&
			       *j->p != '\t' && *j->p != '\r')
				j->p++;
			vn = (size_t)(j->p - v);
			kind = vn == 4 && !memcmp(v, "null", 4)   ? 'z'
			       : (vn == 4 && !memcmp(v, "true", 4)) ||
					       (vn == 5 && !memcmp(v, "false", 5))
				       ? 'b'
				       : 'n';
			double dummy;
			if (kind == 'n' && !parse_f64(r, v, vn, &dummy)) {
				j->p = vp;
				rc = json_value_error(r, err, j, "not a JSON value");
				goto out;
			}
		}
		if (kind == 'z') {
			set_null(c, row);
		} else {
			if (!c->type) { /* a new column: its first value names the type */
				bool integer = kind == 'n' && memchr(v, '.', vn) == NULL &&
					       memchr(v, 'e', vn) == NULL && memchr(v, 'E', vn) == NULL;
				c->type = r->schema.fields[ci].type =
					kind == 's' ? ST_TYPE_STRING
					: kind == 'b' ? ST_TYPE_BOOL
					: integer ? ST_TYPE_INT64 : ST_TYPE_FLOAT64;
			}
			int64_t i64;
			if (kind == 'n' && (c->type == ST_TYPE_TIMESTAMP || c->type == ST_TYPE_DATE) &&
			    parse_i64(v, vn, &i64)) {
				/* Numbers in time columns: microseconds / days since the epoch. */
				if (c->type == ST_TYPE_DATE && (i64 < INT32_MIN || i64 > INT32_MAX)) {
					rc = bad_value(r, err, (uint32_t)ci, r->line,
						       (uint64_t)(vp - j->ls) + 1, v, vn);
					goto out;
				}
				int32_t i32 = (int32_t)i64;
				if (c->type == ST_TYPE_DATE)
					memcpy(c->data + (size_t)row * 4, &i32, 4);
				else
					memcpy(c->data + (size_t)row * 8, &i64, 8);
			} else if ((rc = put_value(r, c, row, v, vn)) != ST_OK) {
				if (rc == ST_ESCHEMA)
					rc = bad_value(r, err, (uint32_t)ci, r->line,
						       (uint64_t)(vp - j->ls) + 1, v, vn);
				else
					rc = fail(r, err, rc, r->line, (uint64_t)(vp - j->ls) + 1,
						  "out of memory");
				goto out;
			}
		}
		jws(j);
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			continue;
		}
		if (j->p < j->end && *j->p == '}') {
			j->p++;
			break;
		}
		rc = json_value_error(r, err, j, "expected ',' or '}'");
		goto out;
	}
end:
	jws(j);
	if (j->p != j->end) {
		rc = json_value_error(r, err, j, "text after the end of the object");
		goto out;
	}
	for (uint32_t ci = 0; ci < r->schema.nfields; ci++) {
		struct col *c = &r->cols[ci];
		if (c->last_row == (uint64_t)row + 1)
			continue;
		set_null(c, row);
	}
out:
	st_buf_free(&keybuf);
	return rc;
}

static int json_fill(rd_reader *r, struct st_err *err)
{
	while (r->nrows < r->o.batch_rows) {
		char *p = r->buf + r->pos, *nl = memchr(p, '\n', r->end - r->pos);
		if (!nl && !r->eof) {
			int rc = refill(r, err);
			if (rc != ST_OK)
				return rc;
			continue;
		}
		if (!nl && p == r->buf + r->end)
			break;
		char *end = nl ? nl : r->buf + r->end;
		struct jcur j = {p, end, p};
		jws(&j);
		if (j.p != end) {
			int rc = json_row(r, &j, err);
			if (rc != ST_OK)
				return rc;
			r->nrows++;
		}
		r->pos = (size_t)(end - r->buf) + (nl != NULL);
		r->line_start = r->buf + r->pos;
		r->line++;
	}
	return ST_OK;
}

/* ---- the reader ---- */

static int fill(rd_reader *r, struct st_err *err)
{
	batch_reset(r);
	int rc = r->o.format == RD_JSONL ? json_fill(r, err) : csv_fill(r, err);
	if (rc == ST_OK && r->first_batch) {
		settle_types(r);
		r->first_batch = false;
	}
	return rc;
}

int rd_next(rd_reader *r, const struct st_vec **cols, uint32_t *nrows, struct st_err *err)
{
	*nrows = 0;
	int rc;
	if (r->pending) {
		r->pending = false;
		rc = r->pending_rc;
	} else {
		rc = fill(r, err);
	}
	if (rc != ST_OK)
		return rc;
	for (uint32_t i = 0; i < r->schema.nfields; i++) {
		struct col *c = &r->cols[i];
		bool var = st_type_is_varlen(c->type);
		r->vecs[i] = (struct st_vec){.type = c->type,
					     .n = r->nrows,
					     .validity = c->has_null ? c->validity : NULL,
					     .data = var ? NULL : c->data,
					     .offsets = var ? c->offsets : NULL,
					     .bytes = var ? c->bytes.data : NULL};
	}
	*cols = r->vecs;
	*nrows = r->nrows;
	r->rows += r->nrows;
	return r->nrows > 0;
}

int rd_open(FILE *in, const struct st_schema *table, const struct rd_opts *opts, rd_reader **out,
	    struct st_err *err)
{
	int rc = ST_OK;
	rd_reader *r = calloc(1, sizeof *r);
	*out = NULL;
	if (!r)
		return st_seterr(err, ST_ENOMEM, "out of memory opening %s",
				 opts->name ? opts->name : "<input>");
	r->in = in;
	r->o = *opts;
	if (!r->o.delim)
		r->o.delim = ',';
	if (!r->o.batch_rows)
		r->o.batch_rows = 65536;
	if (!r->o.name)
		r->o.name = "<input>";
	if (r->o.format != RD_JSONL && r->o.format != RD_CSV) {
		rc = st_seterr(err, ST_EINVAL, "unknown input format %d", r->o.format);
		goto out;
	}
	if (r->o.delim == '"' || r->o.delim == '\n' || r->o.delim == '\r') {
		rc = st_seterr(err, ST_EINVAL, "the delimiter cannot be a quote or a line end");
		goto out;
	}
	r->special[(unsigned char)r->o.delim] = r->special['\n'] = r->special['\r'] =
		r->special['"'] = 1;
	r->table = table;
	r->cap = CHUNK;
	r->line = 1;
	r->first_batch = true;
	r->buf = malloc(r->cap + 1);
	r->spans = malloc((ST_MAX_COLUMNS + 1) * sizeof *r->spans);
	if (!r->buf || !r->spans) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory opening %s", r->o.name);
		goto out;
	}
	r->line_start = r->buf;
	if ((rc = refill(r, err)) != ST_OK)
		goto out;
	if (r->end >= 3 && !memcmp(r->buf, "\xef\xbb\xbf", 3)) /* UTF-8 byte-order mark */
		r->line_start = r->buf + (r->pos = 3);
	if (r->o.format == RD_CSV) {
		rc = csv_header(r, err);
	} else {
		for (uint32_t i = 0; i < table->nfields && rc == ST_OK; i++)
			rc = add_column(r, NULL, 0, &table->fields[i], 0, err);
	}
	if (rc != ST_OK)
		goto out;
	/* New columns get their types from the first batch: read it now. */
	bool ahead = false;
	for (uint32_t i = 0; i < r->schema.nfields; i++)
		ahead |= r->cols[i].infer;
	if (ahead || (r->o.format == RD_JSONL && r->o.infer_unknown)) {
		if ((rc = fill(r, err)) != ST_OK)
			goto out;
		r->pending = true;
	} else {
		r->first_batch = false;
	}
out:
	if (rc != ST_OK)
		rd_close(r);
	else
		*out = r;
	return rc;
}

const struct st_schema *rd_schema(const rd_reader *r)
{
	return &r->schema;
}

uint64_t rd_bytes(const rd_reader *r)
{
	return r->consumed + r->pos;
}

uint64_t rd_rows(const rd_reader *r)
{
	return r->rows;
}

void rd_close(rd_reader *r)
{
	if (!r)
		return;
	for (uint32_t i = 0; i < r->schema.nfields; i++)
		col_free(&r->cols[i]);
	free(r->cols);
	free(r->vecs);
	free(r->schema.fields);
	free(r->spans);
	free(r->buf);
	st_buf_free(&r->scratch);
	free(r);
}
