/*
 * admin/text.c — see text.h.
 */
#include "admin/text.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void put(struct st_buf *o, const char *s)
{
	st_buf_append(o, s, strlen(s));
}

static void put_time(struct st_buf *o, int64_t us, bool date_only)
{
	char b[64];
	int64_t days = us / 86400000000LL, rem = us % 86400000000LL;
	if (rem < 0) {
		rem += 86400000000LL;
		days--;
	}
	int64_t y;
	unsigned m, d;
	st_civil_from_days(days, &y, &m, &d);
	if (date_only)
		snprintf(b, sizeof b, "%04" PRId64 "-%02u-%02u", y, m, d);
	else if (rem % 1000000)
		snprintf(b, sizeof b, "%04" PRId64 "-%02u-%02u %02d:%02d:%02d.%06d", y, m, d,
			 (int)(rem / 3600000000LL), (int)(rem / 60000000 % 60),
			 (int)(rem / 1000000 % 60), (int)(rem % 1000000));
	else
		snprintf(b, sizeof b, "%04" PRId64 "-%02u-%02u %02d:%02d:%02d", y, m, d,
			 (int)(rem / 3600000000LL), (int)(rem / 60000000 % 60),
			 (int)(rem / 1000000 % 60));
	put(o, b);
}

bool tx_value(struct st_buf *o, const struct st_vec *v, uint32_t r)
{
	char b[64];
	if (!st_vec_is_valid(v, r))
		return false;
	switch (v->type) {
	case ST_TYPE_BOOL:
		put(o, ((const uint8_t *)v->data)[r] ? "true" : "false");
		break;
	case ST_TYPE_INT32:
		snprintf(b, sizeof b, "%" PRId32, ((const int32_t *)v->data)[r]);
		put(o, b);
		break;
	case ST_TYPE_INT64:
		snprintf(b, sizeof b, "%" PRId64, ((const int64_t *)v->data)[r]);
		put(o, b);
		break;
	case ST_TYPE_FLOAT64: {
		double d = ((const double *)v->data)[r];
		if (isnan(d))
			put(o, "nan");
		else if (isinf(d))
			put(o, d > 0 ? "inf" : "-inf");
		else {
			/* Shortest of 15 and 17 digits that reads back exactly. */
			snprintf(b, sizeof b, "%.15g", d);
			if (strtod(b, NULL) != d)
				snprintf(b, sizeof b, "%.17g", d);
			put(o, b);
		}
		break;
	}
	case ST_TYPE_DATE:
		put_time(o, (int64_t)((const int32_t *)v->data)[r] * 86400000000LL, true);
		break;
	case ST_TYPE_TIMESTAMP:
		put_time(o, ((const int64_t *)v->data)[r], false);
		break;
	case ST_TYPE_STRING: {
		const uint8_t *p;
		uint32_t n;
		st_vec_str(v, r, &p, &n);
		st_buf_append(o, p, n);
		break;
	}
	default: { /* binary: hex */
		const uint8_t *p;
		uint32_t n;
		st_vec_str(v, r, &p, &n);
		put(o, "0x");
		for (uint32_t i = 0; i < n; i++) {
			snprintf(b, sizeof b, "%02x", p[i]);
			put(o, b);
		}
	}
	}
	return true;
}

void tx_csv_field(struct st_buf *o, const char *s, size_t n, char delim)
{
	bool q = n == 0; /* "" is an empty string: an empty field is NULL (as load reads them) */
	for (size_t i = 0; i < n && !q; i++)
		q = s[i] == delim || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
	if (!q) {
		st_buf_append(o, s, n);
		return;
	}
	st_buf_u8(o, '"');
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '"')
			st_buf_u8(o, '"');
		st_buf_u8(o, (uint8_t)s[i]);
	}
	st_buf_u8(o, '"');
}

void tx_json_string(struct st_buf *o, const char *s, size_t n)
{
	char b[8];
	st_buf_u8(o, '"');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			st_buf_u8(o, '\\');
			st_buf_u8(o, c);
		} else if (c == '\n') {
			put(o, "\\n");
		} else if (c == '\t') {
			put(o, "\\t");
		} else if (c == '\r') {
			put(o, "\\r");
		} else if (c < 0x20) {
			snprintf(b, sizeof b, "\\u%04x", c);
			put(o, b);
		} else {
			st_buf_u8(o, c);
		}
	}
	st_buf_u8(o, '"');
}

/* ---- printing ----------------------------------------------------------- */

#define TABLE_SAMPLE 1000

struct tx_printer {
	FILE *out;
	enum tx_format f;
	uint32_t ncols;
	char **names;
	uint64_t rows;
	struct st_buf line;
	/* table: held rows (cells as text) until widths are known */
	size_t *width;
	char **held;          /* TABLE_SAMPLE * ncols cells, NULL = NULL value */
	uint32_t nheld;
	bool streaming;       /* widths fixed, rows printed as they come */
	bool *numeric;        /* right-align */
};

struct tx_printer *tx_printer_new(FILE *out, enum tx_format f, uint32_t ncols,
				  const char *const *names)
{
	struct tx_printer *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->out = out;
	p->f = f;
	p->ncols = ncols;
	p->names = calloc(ncols + 1, sizeof *p->names);
	p->width = calloc(ncols + 1, sizeof *p->width);
	p->numeric = calloc(ncols + 1, sizeof *p->numeric);
	if (f == TX_TABLE)
		p->held = calloc((size_t)TABLE_SAMPLE * ncols + 1, sizeof *p->held);
	bool ok = p->names && p->width && p->numeric && (f != TX_TABLE || p->held);
	for (uint32_t c = 0; ok && c < ncols; c++) {
		ok = (p->names[c] = strdup(names[c])) != NULL;
		p->width[c] = strlen(names[c]);
	}
	if (!ok) {
		for (uint32_t c = 0; p->names && c < ncols; c++)
			free(p->names[c]);
		free(p->names);
		free(p->width);
		free(p->numeric);
		free(p->held);
		free(p);
		return NULL;
	}
	if (f == TX_CSV) {
		for (uint32_t c = 0; c < ncols; c++) {
			if (c)
				st_buf_u8(&p->line, ',');
			tx_csv_field(&p->line, names[c], strlen(names[c]), ',');
		}
		st_buf_u8(&p->line, '\n');
		fwrite(p->line.data, 1, p->line.len, out);
		p->line.len = 0;
	}
	return p;
}

static size_t utf8_width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		w += ((unsigned char)*s & 0xc0) != 0x80;
	return w;
}

static void table_row(struct tx_printer *p, char **cells)
{
	p->line.len = 0;
	for (uint32_t c = 0; c < p->ncols; c++) {
		const char *s = cells[c] ? cells[c] : "NULL";
		size_t w = utf8_width(s), pad = p->width[c] > w ? p->width[c] - w : 0;
		if (c)
			put(&p->line, "  ");
		if (p->numeric[c])
			for (size_t i = 0; i < pad; i++)
				st_buf_u8(&p->line, ' ');
		put(&p->line, s);
		if (!p->numeric[c] && c + 1 < p->ncols)
			for (size_t i = 0; i < pad; i++)
				st_buf_u8(&p->line, ' ');
	}
	st_buf_u8(&p->line, '\n');
	fwrite(p->line.data, 1, p->line.len, p->out);
}

static void table_header(struct tx_printer *p)
{
	table_row(p, p->names);
	p->line.len = 0;
	for (uint32_t c = 0; c < p->ncols; c++) {
		if (c)
			put(&p->line, "  ");
		for (size_t i = 0; i < p->width[c]; i++)
			st_buf_u8(&p->line, '-');
	}
	st_buf_u8(&p->line, '\n');
	fwrite(p->line.data, 1, p->line.len, p->out);
}

static void table_flush_held(struct tx_printer *p)
{
	table_header(p);
	for (uint32_t r = 0; r < p->nheld; r++) {
		table_row(p, &p->held[(size_t)r * p->ncols]);
		for (uint32_t c = 0; c < p->ncols; c++)
			free(p->held[(size_t)r * p->ncols + c]);
	}
	p->nheld = 0;
	p->streaming = true;
}

void tx_printer_rows(struct tx_printer *p, const struct st_vec *cols, uint32_t nrows)
{
	struct st_buf cell = {0};
	for (uint32_t c = 0; p->rows == 0 && c < p->ncols; c++) {
		int t = cols[c].type;
		p->numeric[c] = t == ST_TYPE_INT32 || t == ST_TYPE_INT64 || t == ST_TYPE_FLOAT64;
	}
	for (uint32_t r = 0; r < nrows; r++, p->rows++) {
		p->line.len = 0;
		if (p->f == TX_JSONL)
			st_buf_u8(&p->line, '{');
		char *cells[ST_MAX_COLUMNS];
		for (uint32_t c = 0; c < p->ncols; c++) {
			const struct st_vec *v = &cols[c];
			cell.len = 0;
			bool has = tx_value(&cell, v, r);
			if (p->f == TX_CSV) {
				if (c)
					st_buf_u8(&p->line, ',');
				if (has)
					tx_csv_field(&p->line, (const char *)cell.data, cell.len, ',');
			} else if (p->f == TX_JSONL) {
				if (c)
					st_buf_u8(&p->line, ',');
				tx_json_string(&p->line, p->names[c], strlen(p->names[c]));
				st_buf_u8(&p->line, ':');
				bool quoted = v->type == ST_TYPE_STRING || v->type == ST_TYPE_BINARY ||
					      v->type == ST_TYPE_DATE || v->type == ST_TYPE_TIMESTAMP ||
					      (v->type == ST_TYPE_FLOAT64 && has &&
					       !isfinite(((const double *)v->data)[r]));
				if (!has)
					put(&p->line, "null");
				else if (quoted)
					tx_json_string(&p->line, (const char *)cell.data, cell.len);
				else
					st_buf_append(&p->line, cell.data, cell.len);
			} else {
				st_buf_u8(&cell, 0);
				cells[c] = has && !cell.oom ? strdup((const char *)cell.data) : NULL;
				size_t w = utf8_width(cells[c] ? cells[c] : "NULL");
				if (!p->streaming && w > p->width[c])
					p->width[c] = w;
			}
		}
		if (p->f == TX_TABLE) {
			if (p->streaming) {
				table_row(p, cells);
				for (uint32_t c = 0; c < p->ncols; c++)
					free(cells[c]);
			} else {
				memcpy(&p->held[(size_t)p->nheld++ * p->ncols], cells,
				       p->ncols * sizeof *cells);
				if (p->nheld == TABLE_SAMPLE)
					table_flush_held(p);
			}
			continue;
		}
		if (p->f == TX_JSONL)
			st_buf_u8(&p->line, '}');
		st_buf_u8(&p->line, '\n');
		fwrite(p->line.data, 1, p->line.len, p->out);
	}
	st_buf_free(&cell);
}

uint64_t tx_printer_end(struct tx_printer *p)
{
	if (p->f == TX_TABLE && !p->streaming)
		table_flush_held(p);
	uint64_t rows = p->rows;
	if (p->f == TX_TABLE)
		fprintf(p->out, "(%llu row%s)\n", (unsigned long long)rows, rows == 1 ? "" : "s");
	fflush(p->out);
	for (uint32_t c = 0; c < p->ncols; c++)
		free(p->names[c]);
	free(p->names);
	free(p->width);
	free(p->numeric);
	free(p->held);
	st_buf_free(&p->line);
	free(p);
	return rows;
}

/* ---- parsing ------------------------------------------------------------- */

static const char *skip_ws(const char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	return s;
}

/* Next word (identifier-ish, or a "quoted" name) of s into w; NULL at end. */
static const char *word(const char *s, char *w, size_t wlen)
{
	size_t n = 0;
	s = skip_ws(s);
	if (*s == '"') {
		for (s++; *s && *s != '"'; s++)
			if (n + 1 < wlen)
				w[n++] = *s;
		if (*s == '"')
			s++;
	} else {
		while (*s && !isspace((unsigned char)*s) && *s != ',')
			if (n + 1 < wlen)
				w[n++] = *s++;
			else
				s++;
	}
	w[n] = '\0';
	return n ? s : NULL;
}

int tx_parse_schema(const char *text, char ***names, int **types, bool **nullable, char *err,
		    size_t errlen)
{
	int cap = 1, n = 0;
	for (const char *p = text; *p; p++)
		cap += *p == ',';
	*names = calloc((size_t)cap + 1, sizeof **names);
	*types = calloc((size_t)cap + 1, sizeof **types);
	*nullable = calloc((size_t)cap + 1, sizeof **nullable);
	if (!*names || !*types || !*nullable) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	const char *s = text;
	for (;;) {
		char name[ST_NAME_MAX + 1], type[64], w1[16], w2[16];
		s = skip_ws(s);
		if (!*s)
			break;
		const char *t = word(s, name, sizeof name);
		if (!t) {
			snprintf(err, errlen, "column %d: a name is missing", n + 1);
			goto fail;
		}
		if (!(s = word(t, type, sizeof type))) {
			snprintf(err, errlen, "column '%s': its type is missing (e.g. '%s int64')", name,
				 name);
			goto fail;
		}
		int ty = st_type_from_name(type, strlen(type));
		if (!ty) {
			snprintf(err, errlen, "column '%s': unknown type '%s' (bool, int32, int64, "
				 "float64, string, binary, date, timestamp)", name, type);
			goto fail;
		}
		bool nul = true;
		const char *after = word(s, w1, sizeof w1);
		if (after && !strcasecmp(w1, "not")) {
			if (!(after = word(after, w2, sizeof w2)) || strcasecmp(w2, "null")) {
				snprintf(err, errlen, "column '%s': 'not' must be followed by 'null'", name);
				goto fail;
			}
			nul = false;
			s = after;
		} else if (after && !strcasecmp(w1, "null")) {
			s = after;
		}
		s = skip_ws(s);
		if (*s && *s != ',') {
			snprintf(err, errlen, "column '%s': unexpected '%s' (columns are separated by "
				 "commas)", name, s);
			goto fail;
		}
		if (*s == ',')
			s++;
		if (n == cap) {
			snprintf(err, errlen, "too many columns");
			goto fail;
		}
		if (!((*names)[n] = strdup(name))) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		(*types)[n] = ty;
		(*nullable)[n] = nul;
		n++;
	}
	if (n > 0)
		return n;
	snprintf(err, errlen, "the schema has no columns");
fail: /* nothing allocated here survives an error */
	for (int k = 0; *names && k < n; k++)
		free((*names)[k]);
	free(*names);
	free(*types);
	free(*nullable);
	*names = NULL;
	*types = NULL;
	*nullable = NULL;
	return -1;
}

bool tx_parse_time(const char *s, int64_t *us)
{
	int64_t days;
	char *end;
	if (st_parse_datetime(s, strlen(s), false, &days, us))
		return true;
	if (st_parse_datetime(s, strlen(s), true, &days, us))
		return true;
	long long v = strtoll(s, &end, 10);
	if (*s && !*end) {
		*us = v;
		return true;
	}
	return false;
}
