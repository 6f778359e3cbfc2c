/*
 * format/expr.c — the predicate language of expr.h: tokenizer, parser with
 * type checking, statistics evaluator (may_match) and batch evaluator.
 * Value expressions live in expr_value.c, UPDATE's SET list in
 * expr_assign.c; what they share is in expr_int.h.
 *
 * The parser desugars BETWEEN into two comparisons joined by AND, IN into
 * equalities joined by OR and LIKE without '%' into equality, so both
 * evaluators only know comparisons, IS NULL, LIKE-prefix, constants, NOT,
 * AND and OR. Literals are converted to the compared column's type at
 * parse time (a decimal compared with an integer column becomes an exact
 * integer bound), so evaluation never converts per row.
 *
 * Three-valued logic: the batch evaluator computes one byte per row,
 * 0 = FALSE, 1 = TRUE, 2 = UNKNOWN (NULL). The statistics evaluator tracks
 * for each node whether some row may be TRUE / FALSE and whether every
 * row surely is, which makes NOT exact under NULLs.
 *
 * A parsed expression is immutable: evaluation is thread-safe.
 */
#include "format/expr.h"

#include "format/bytes.h"
#include "format/expr_int.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- tokens ------------------------------------------------------------ */

int ex_perr(struct parser *p, int code, const char *what)
{
	if (p->rc == ST_OK) {
		if (p->t.kind == T_END)
			st_seterr(p->err, code, "at offset %zu (end of predicate): %s", p->t.off, what);
		else
			st_seterr(p->err, code, "at offset %zu near '%.*s': %s", p->t.off,
				  (int)(p->t.len > 40 ? 40 : p->t.len), p->text + p->t.off, what);
		p->rc = code;
	}
	return p->rc;
}

void ex_next(struct parser *p)
{
	const char *s = p->text;
	size_t i = p->pos;
	while (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')
		i++;
	p->t.off = i;
	p->t.kind = T_END;
	char c = s[i];
	if (!c) {
		p->t.len = 0;
		p->pos = i;
		return;
	}
	size_t j = i + 1;
	if (isalpha((unsigned char)c) || c == '_') {
		/* a.b is one name (MERGE's t.col and s.col) */
		while (isalnum((unsigned char)s[j]) || s[j] == '_' ||
		       (s[j] == '.' && (isalpha((unsigned char)s[j + 1]) || s[j + 1] == '_')))
			j++;
		p->t.kind = T_IDENT;
	} else if (isdigit((unsigned char)c) || (c == '.' && isdigit((unsigned char)s[j]))) {
		while (isdigit((unsigned char)s[j]) || s[j] == '.')
			j++;
		if ((s[j] == 'e' || s[j] == 'E') &&
		    (isdigit((unsigned char)s[j + 1]) ||
		     ((s[j + 1] == '+' || s[j + 1] == '-') && isdigit((unsigned char)s[j + 2])))) {
			j += 2;
			while (isdigit((unsigned char)s[j]))
				j++;
		}
		p->t.kind = T_NUM;
	} else if (c == '\'' || c == '"') {
		for (;;) {
			if (!s[j]) {
				p->t.len = j - i;
				p->t.kind = T_STR;
				ex_perr(p, ST_ESYNTAX, c == '\'' ? "unterminated string" : "unterminated quoted name");
				p->t.kind = T_END;
				p->pos = j;
				return;
			}
			if (s[j] == c) {
				if (s[j + 1] == c) {
					j += 2;
					continue;
				}
				j++;
				break;
			}
			j++;
		}
		p->t.kind = c == '\'' ? T_STR : T_QIDENT;
	} else if (c == '(') {
		p->t.kind = T_LP;
	} else if (c == ')') {
		p->t.kind = T_RP;
	} else if (c == ',') {
		p->t.kind = T_COMMA;
	} else if (c == '=' || c == '-' || c == '+' || c == '*' || c == '/' || c == '%') {
		p->t.kind = T_OP;
	} else if (c == '<' || c == '>' || c == '!') {
		if (s[j] == '=' || (c == '<' && s[j] == '>'))
			j++;
		else if (c == '!') {
			p->t.len = 1;
			ex_perr(p, ST_ESYNTAX, "unexpected character");
			p->pos = j;
			return;
		}
		p->t.kind = T_OP;
	} else {
		p->t.len = 1;
		ex_perr(p, ST_ESYNTAX, "unexpected character");
		p->pos = j;
		return;
	}
	p->t.len = j - i;
	p->pos = j;
}

bool ex_is_kw(const struct parser *p, const char *kw)
{
	return p->t.kind == T_IDENT && strlen(kw) == p->t.len &&
	       !strncasecmp(p->text + p->t.off, kw, p->t.len);
}

bool ex_is_op(const struct parser *p, const char *op)
{
	return p->t.kind == T_OP && strlen(op) == p->t.len && !strncmp(p->text + p->t.off, op, p->t.len);
}

/* ---- nodes ------------------------------------------------------------- */

struct vnode;

void ex_node_free(struct node *n)
{
	if (!n)
		return;
	ex_node_free(n->a);
	ex_node_free(n->b);
	ex_vnode_free(n->va);
	ex_vnode_free(n->vb);
	free(n->buf);
	free(n);
}

struct node *ex_node_new(struct parser *p, enum node_kind k)
{
	struct node *n = calloc(1, sizeof *n);
	if (!n)
		ex_perr(p, ST_ENOMEM, "out of memory");
	else
		n->kind = k;
	return n;
}

static struct node *node2(struct parser *p, enum node_kind k, struct node *a, struct node *b)
{
	struct node *n = (a && (b || k == N_NOT)) ? ex_node_new(p, k) : NULL;
	if (!n) {
		ex_node_free(a);
		ex_node_free(b);
		return NULL;
	}
	n->a = a;
	n->b = b;
	return n;
}

struct node *ex_node_const(struct parser *p, uint8_t v)
{
	struct node *n = ex_node_new(p, N_CONST);
	if (n)
		n->cval = v;
	return n;
}

/* ---- literals ---------------------------------------------------------- */

/* Unescape the current string token into o (owned copy). */
static bool take_string(struct parser *p, struct operand *o)
{
	const char *s = p->text + p->t.off + 1;
	size_t n = p->t.len - 2;
	o->s = malloc(n + 1);
	if (!o->s) {
		ex_perr(p, ST_ENOMEM, "out of memory");
		return false;
	}
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		o->s[k++] = s[i];
		if (s[i] == '\'')
			i++; /* '' is one quote */
	}
	o->s[k] = '\0';
	o->slen = k;
	o->lk = L_STR;
	return true;
}

/* A column named like the DATE/TIMESTAMP keyword, not followed by a string:
 * the column. */
static bool keyword_is_column(struct parser *p)
{
	if (st_schema_find(p->schema, p->text + p->t.off, p->t.len) < 0)
		return false;
	struct parser save = *p;
	ex_next(p);
	bool string_follows = p->t.kind == T_STR;
	*p = save;
	return !string_follows;
}

/* operand := column | literal */
bool ex_parse_operand(struct parser *p, struct operand *o)
{
	memset(o, 0, sizeof *o);
	o->col = -1;
	o->off = p->t.off;
	bool neg = false;
	if (ex_is_op(p, "-")) {
		neg = true;
		ex_next(p);
		if (p->t.kind != T_NUM)
			return ex_perr(p, ST_ESYNTAX, "expected a number after '-'"), false;
	}
	if (p->t.kind == T_NUM) {
		char buf[80];
		size_t n = p->t.len;
		if (n + 2 > sizeof buf)
			return ex_perr(p, ST_ERANGE, "number too long"), false;
		buf[0] = '-';
		memcpy(buf + 1, p->text + p->t.off, n);
		buf[n + 1] = '\0';
		const char *num = neg ? buf : buf + 1;
		char *end;
		errno = 0;
		if (!memchr(buf, '.', n + 1) && !memchr(buf, 'e', n + 1) && !memchr(buf, 'E', n + 1)) {
			long long v = strtoll(num, &end, 10);
			if (errno == ERANGE)
				return ex_perr(p, ST_ERANGE, "integer out of the int64 range"), false;
			o->lk = L_INT;
			o->i = v;
		} else {
			double v = strtod(num, &end);
			if (*end || (errno == ERANGE && isinf(v)))
				return ex_perr(p, *end ? ST_ESYNTAX : ST_ERANGE, *end ? "malformed number" : "number out of range"), false;
			o->lk = L_DEC;
			o->d = v;
		}
		if (*end)
			return ex_perr(p, ST_ESYNTAX, "malformed number"), false;
	} else if (p->t.kind == T_STR) {
		if (!take_string(p, o))
			return false;
	} else if (ex_is_kw(p, "TRUE") || ex_is_kw(p, "FALSE")) {
		o->lk = L_BOOL;
		o->i = ex_is_kw(p, "TRUE");
	} else if (ex_is_kw(p, "NULL")) {
		o->lk = L_NULL;
	} else if ((ex_is_kw(p, "TIMESTAMP") || ex_is_kw(p, "DATE")) && !keyword_is_column(p)) {
		bool date = ex_is_kw(p, "DATE");
		ex_next(p);
		if (p->t.kind != T_STR)
			return ex_perr(p, ST_ESYNTAX, date ? "expected 'YYYY-MM-DD' after DATE"
						      : "expected 'YYYY-MM-DD HH:MM:SS[.ffffff]' after TIMESTAMP"), false;
		int64_t days, us;
		if (!st_parse_datetime(p->text + p->t.off + 1, p->t.len - 2, date, &days, &us))
			return ex_perr(p, ST_ESYNTAX, date ? "not a valid date 'YYYY-MM-DD'"
						      : "not a valid timestamp 'YYYY-MM-DD HH:MM:SS[.ffffff]'"), false;
		o->lk = date ? L_DATE : L_TS;
		o->i = date ? days : us;
	} else if (p->t.kind == T_IDENT || p->t.kind == T_QIDENT) {
		static const char *const reserved[] = {"AND", "OR", "NOT", "BETWEEN", "IN", "IS", "LIKE"};
		const char *name = p->text + p->t.off;
		size_t n = p->t.len;
		if (p->t.kind == T_QIDENT) {
			name++;
			n -= 2;
		} else {
			for (size_t k = 0; k < sizeof reserved / sizeof *reserved; k++)
				if (ex_is_kw(p, reserved[k]))
					return ex_perr(p, ST_ESYNTAX, "expected a column or a literal"), false;
		}
		int c = memchr(name, '"', n) ? -1 : st_schema_find(p->schema, name, n);
		if (c < 0)
			return ex_perr(p, ST_ETYPE, "unknown column"), false;
		o->col = c;
	} else {
		return ex_perr(p, ST_ESYNTAX, "expected a column or a literal"), false;
	}
	o->len = p->t.off + p->t.len - o->off;
	ex_next(p);
	return p->rc == ST_OK;
}

static const char *lit_name(enum lit_kind k)
{
	static const char *const n[] = {"?", "integer", "decimal", "string", "boolean", "NULL",
					 "timestamp", "date"};
	return n[k];
}

/* Convert literal o to column type `type` into v (for op, which a decimal
 * bound against an integer column may change). Returns false with an error. */
static bool coerce(struct parser *p, const struct operand *o, int type, enum cmp_op *op,
		   struct st_value *v, uint8_t **buf)
{
	memset(v, 0, sizeof *v);
	v->type = (uint8_t)type;
	switch (type) {
	case ST_TYPE_BOOL:
		if (o->lk != L_BOOL)
			break;
		v->v.b = o->i != 0;
		return true;
	case ST_TYPE_FLOAT64:
		if (o->lk == L_INT)
			v->v.f64 = (double)o->i;
		else if (o->lk == L_DEC)
			v->v.f64 = o->d;
		else
			break;
		return true;
	case ST_TYPE_STRING:
	case ST_TYPE_BINARY:
		if (o->lk != L_STR)
			break;
		if (!(*buf = malloc(o->slen + 1)))
			return ex_perr(p, ST_ENOMEM, "out of memory"), false;
		memcpy(*buf, o->s, o->slen);
		v->v.s.ptr = *buf;
		v->v.s.len = (uint32_t)o->slen;
		return true;
	default: { /* integer types */
		int64_t x;
		int64_t lo = type == ST_TYPE_INT32 || type == ST_TYPE_DATE ? INT32_MIN : INT64_MIN;
		int64_t hi = type == ST_TYPE_INT32 || type == ST_TYPE_DATE ? INT32_MAX : INT64_MAX;
		if (o->lk == L_INT) {
			x = o->i;
		} else if (o->lk == L_DEC) {
			double d = o->d;
			if (isnan(d))
				break;
			/* Exact integer bounds: x < 2.5 is x <= 2, x >= 2.5 is x >= 3. */
			double f = floor(d);
			bool integral = f == d;
			if (!integral) {
				if (*op == CMP_EQ)
					*op = CMP_NEVER;
				else if (*op == CMP_NE)
					*op = CMP_ALWAYS;
				else if (*op == CMP_LT || *op == CMP_LE)
					*op = CMP_LE; /* x <= floor(d) */
				else
					*op = CMP_GE, f = ceil(d); /* x >= ceil(d) */
			}
			if (f < -9223372036854775808.0 || f >= 9223372036854775808.0)
				return ex_perr(p, ST_ERANGE, "number out of the column's range"), false;
			x = (int64_t)f;
		} else if (o->lk == L_TS && type == ST_TYPE_TIMESTAMP) {
			x = o->i;
		} else if (o->lk == L_DATE && (type == ST_TYPE_DATE || type == ST_TYPE_TIMESTAMP)) {
			x = type == ST_TYPE_DATE ? o->i : o->i * 86400000000LL;
		} else if (o->lk == L_STR && (type == ST_TYPE_DATE || type == ST_TYPE_TIMESTAMP)) {
			int64_t days, us;
			if (!st_parse_datetime(o->s, o->slen, type == ST_TYPE_DATE, &days, &us))
				return ex_perr(p, ST_ETYPE, type == ST_TYPE_DATE ? "string is not a date 'YYYY-MM-DD'"
									  : "string is not a timestamp"), false;
			x = type == ST_TYPE_DATE ? days : us;
		} else {
			break;
		}
		if (x < lo || x > hi)
			return ex_perr(p, ST_ERANGE, "literal out of the column's range"), false;
		if (type == ST_TYPE_INT32 || type == ST_TYPE_DATE)
			v->v.i32 = (int32_t)x;
		else
			v->v.i64 = x;
		return true;
	}
	}
	char m[160];
	snprintf(m, sizeof m, "cannot compare a %s column with a %s literal", st_type_name(type),
		 lit_name(o->lk));
	return ex_perr(p, ST_ETYPE, m), false;
}

static enum cmp_op flip(enum cmp_op op)
{
	switch (op) {
	case CMP_LT: return CMP_GT;
	case CMP_LE: return CMP_GE;
	case CMP_GT: return CMP_LT;
	case CMP_GE: return CMP_LE;
	default: return op;
	}
}

static bool numeric(int t)
{
	return st_type_is_integer(t) || t == ST_TYPE_FLOAT64;
}

/* Compare two literals at parse time: TRUE/FALSE/NULL constant. */
static struct node *fold(struct parser *p, const struct operand *l, enum cmp_op op,
			 const struct operand *r)
{
	if (l->lk == L_NULL || r->lk == L_NULL)
		return ex_node_const(p, 2);
	int c;
	if ((l->lk == L_INT || l->lk == L_DEC) && (r->lk == L_INT || r->lk == L_DEC)) {
		double a = l->lk == L_INT ? (double)l->i : l->d, b = r->lk == L_INT ? (double)r->i : r->d;
		if (l->lk == L_INT && r->lk == L_INT)
			c = (l->i > r->i) - (l->i < r->i);
		else
			c = (a > b) - (a < b);
	} else if (l->lk == r->lk && l->lk == L_STR) {
		size_t m = l->slen < r->slen ? l->slen : r->slen;
		c = memcmp(l->s, r->s, m);
		c = c ? c : (l->slen > r->slen) - (l->slen < r->slen);
	} else if (l->lk == r->lk) {
		c = (l->i > r->i) - (l->i < r->i);
	} else {
		ex_perr(p, ST_ETYPE, "cannot compare literals of different types");
		return NULL;
	}
	bool t = op == CMP_EQ ? c == 0 : op == CMP_NE ? c != 0 : op == CMP_LT ? c < 0
	       : op == CMP_LE ? c <= 0 : op == CMP_GT ? c > 0 : c >= 0;
	return ex_node_const(p, t);
}

/* Build the comparison l op r. */
static struct node *make_cmp(struct parser *p, struct operand *l, enum cmp_op op, struct operand *r)
{
	const struct st_schema *s = p->schema;
	if (l->col < 0 && r->col < 0)
		return fold(p, l, op, r);
	if (l->col >= 0 && r->col >= 0) {
		int a = s->fields[l->col].type, b = s->fields[r->col].type;
		bool ok = a == b || (numeric(a) && numeric(b) && a != ST_TYPE_DATE && b != ST_TYPE_DATE &&
				     a != ST_TYPE_TIMESTAMP && b != ST_TYPE_TIMESTAMP) ||
			  (st_type_is_varlen(a) && st_type_is_varlen(b));
		if (!ok) {
			char m[160];
			snprintf(m, sizeof m, "cannot compare column '%s' (%s) with column '%s' (%s)",
				 s->fields[l->col].name, st_type_name(a), s->fields[r->col].name,
				 st_type_name(b));
			ex_perr(p, ST_ETYPE, m);
			return NULL;
		}
		struct node *n = ex_node_new(p, N_CMPCOL);
		if (n) {
			n->op = op;
			n->col = l->col;
			n->col2 = r->col;
		}
		return n;
	}
	if (l->col < 0) { /* literal op column: flip */
		struct operand *t = l;
		l = r;
		r = t;
		op = flip(op);
	}
	if (r->lk == L_NULL)
		return ex_node_const(p, 2);
	struct node *n = ex_node_new(p, N_CMP);
	if (!n)
		return NULL;
	n->col = l->col;
	n->op = op;
	if (!coerce(p, r, s->fields[l->col].type, &n->op, &n->lit, &n->buf)) {
		ex_node_free(n);
		return NULL;
	}
	return n;
}

void ex_operand_fini(struct operand *o)
{
	free(o->s);
	o->s = NULL;
}

struct node *ex_node_clone(struct parser *p, const struct node *n)
{
	struct node *c = ex_node_new(p, n->kind);
	if (!c)
		return NULL;
	*c = *n;
	c->a = c->b = NULL;
	c->va = c->vb = NULL;
	c->buf = NULL;
	if (n->buf) {
		if (!(c->buf = malloc((size_t)n->lit.v.s.len + 1))) {
			ex_perr(p, ST_ENOMEM, "out of memory");
			ex_node_free(c);
			return NULL;
		}
		memcpy(c->buf, n->buf, n->lit.v.s.len);
		c->lit.v.s.ptr = c->buf;
	}
	if ((n->a && !(c->a = ex_node_clone(p, n->a))) || (n->b && !(c->b = ex_node_clone(p, n->b))) ||
	    (n->va && !(c->va = ex_vnode_clone(p, n->va))) || (n->vb && !(c->vb = ex_vnode_clone(p, n->vb)))) {
		ex_node_free(c);
		return NULL;
	}
	return c;
}

/* Whether the current token continues a comparison (after an operand). */
static bool at_comparison(const struct parser *p)
{
	static const char *const ops[] = {"=", "!=", "<>", "<", "<=", ">", ">=", "+", "-", "*", "/",
					  "%"};
	for (size_t k = 0; k < sizeof ops / sizeof *ops; k++)
		if (ex_is_op(p, ops[k]))
			return true;
	return ex_is_kw(p, "BETWEEN") || ex_is_kw(p, "IN") || ex_is_kw(p, "IS") || ex_is_kw(p, "LIKE") ||
	       ex_is_kw(p, "NOT");
}

/* At '(': whether the parenthesized text is a value (a comparison or an
 * arithmetic operator follows its ')', as in (a + 1) > 2) rather than a
 * predicate. One scan to the matching ')', no backtracking (which would be
 * exponential in the nesting). */
static bool paren_is_value(const struct parser *p)
{
	struct parser q = *p;
	struct st_err scratch;
	q.err = &scratch;
	int depth = 0;
	do {
		if (q.t.kind == T_LP)
			depth++;
		else if (q.t.kind == T_RP)
			depth--;
		ex_next(&q);
	} while (depth > 0 && q.t.kind != T_END && q.rc == ST_OK);
	return depth == 0 && q.rc == ST_OK && at_comparison(&q);
}

/* cmp := side [op side | [NOT] BETWEEN side AND side | [NOT] IN (..) | IS [NOT] NULL
 *             | [NOT] LIKE ..]
 *      | '(' expr ')'
 * where a side is a value expression: a plain column or literal keeps the
 * specialised comparison nodes (exact statistics pruning); anything with
 * arithmetic, CASE, COALESCE or CAST becomes N_CMPV. */
static struct node *parse_cmp(struct parser *p)
{
	struct node *n = NULL;
	struct operand l = {0}, r = {0}, r2 = {0};
	struct vnode *vl = NULL, *vr = NULL, *vr2 = NULL;
	if (p->t.kind == T_LP && !paren_is_value(p)) {
		ex_next(p);
		n = ex_parse_or(p);
		if (n && p->t.kind != T_RP) {
			ex_perr(p, ST_ESYNTAX, "expected ')'");
			ex_node_free(n);
			return NULL;
		}
		ex_next(p);
		return n;
	}
	size_t start = p->t.off;
	if (!ex_parse_side(p, &l, &vl))
		goto out;
	bool negated = false;
	if (ex_is_kw(p, "NOT")) {
		negated = true;
		ex_next(p);
		if (!ex_is_kw(p, "BETWEEN") && !ex_is_kw(p, "IN") && !ex_is_kw(p, "LIKE")) {
			ex_perr(p, ST_ESYNTAX, "expected BETWEEN, IN or LIKE after NOT");
			goto out;
		}
	}
	static const struct { const char *op; enum cmp_op c; } ops[] = {
		{"=", CMP_EQ}, {"!=", CMP_NE}, {"<>", CMP_NE}, {"<", CMP_LT},
		{"<=", CMP_LE}, {">", CMP_GT}, {">=", CMP_GE}};
	for (size_t k = 0; k < sizeof ops / sizeof *ops; k++) {
		if (!ex_is_op(p, ops[k].op))
			continue;
		ex_next(p);
		if (!ex_parse_side(p, &r, &vr))
			goto out;
		if (vl || vr)
			n = ex_make_cmpv(p, ex_vfrom_side(p, &l, &vl), ops[k].c, ex_vfrom_side(p, &r, &vr));
		else
			n = make_cmp(p, &l, ops[k].c, &r);
		goto out;
	}
	if (ex_is_kw(p, "BETWEEN")) {
		ex_next(p);
		if (!ex_parse_side(p, &r, &vr))
			goto out;
		if (!ex_is_kw(p, "AND")) {
			ex_perr(p, ST_ESYNTAX, "expected AND in BETWEEN");
			goto out;
		}
		ex_next(p);
		if (!ex_parse_side(p, &r2, &vr2))
			goto out;
		if (vl || vr || vr2) {
			struct vnode *a = ex_vfrom_side(p, &l, &vl);
			struct vnode *a2 = a ? ex_vnode_clone(p, a) : NULL;
			n = node2(p, N_AND, ex_make_cmpv(p, a, CMP_GE, ex_vfrom_side(p, &r, &vr)),
				  ex_make_cmpv(p, a2, CMP_LE, ex_vfrom_side(p, &r2, &vr2)));
		} else {
			struct operand l2 = l;
			n = node2(p, N_AND, make_cmp(p, &l, CMP_GE, &r), make_cmp(p, &l2, CMP_LE, &r2));
		}
	} else if (ex_is_kw(p, "IN")) {
		ex_next(p);
		if (p->t.kind != T_LP) {
			ex_perr(p, ST_ESYNTAX, "expected '(' after IN");
			goto out;
		}
		ex_next(p);
		for (;;) {
			if (!ex_parse_operand(p, &r))
				goto out;
			if (r.col >= 0) {
				ex_perr(p, ST_ESYNTAX, "IN takes a list of literals");
				goto out;
			}
			struct node *eq;
			if (vl) {
				struct vnode *a = ex_vnode_clone(p, vl);
				eq = a ? ex_make_cmpv(p, a, CMP_EQ, ex_vfrom_operand(p, &r)) : NULL;
			} else {
				eq = make_cmp(p, &l, CMP_EQ, &r);
			}
			ex_operand_fini(&r);
			n = n ? node2(p, N_OR, n, eq) : eq;
			if (!n)
				goto out;
			if (p->t.kind == T_COMMA) {
				ex_next(p);
				continue;
			}
			if (p->t.kind != T_RP) {
				ex_perr(p, ST_ESYNTAX, "expected ',' or ')' in the IN list");
				ex_node_free(n);
				n = NULL;
				goto out;
			}
			ex_next(p);
			break;
		}
	} else if (ex_is_kw(p, "IS")) {
		ex_next(p);
		bool isnot = false;
		if (ex_is_kw(p, "NOT")) {
			isnot = true;
			ex_next(p);
		}
		if (!ex_is_kw(p, "NULL")) {
			ex_perr(p, ST_ESYNTAX, "expected NULL after IS");
			goto out;
		}
		ex_next(p);
		if (vl) {
			if ((n = ex_node_new(p, N_VISNULL))) {
				n->va = vl;
				vl = NULL;
			}
		} else if (l.col < 0) {
			n = ex_node_const(p, (l.lk == L_NULL) != isnot);
			isnot = false;
		} else if ((n = ex_node_new(p, N_ISNULL))) {
			n->col = l.col;
		}
		if (n && isnot)
			n = node2(p, N_NOT, n, NULL);
	} else if (ex_is_kw(p, "LIKE")) {
		ex_next(p);
		size_t at = p->t.off;
		if (p->t.kind != T_STR) {
			ex_perr(p, ST_ESYNTAX, "LIKE takes a string pattern");
			goto out;
		}
		if (!ex_parse_operand(p, &r))
			goto out;
		if (vl || l.col < 0 || !st_type_is_varlen(p->schema->fields[l.col].type)) {
			p->t.off = start;
			p->t.len = at - start;
			ex_perr(p, ST_ETYPE, "LIKE needs a string or binary column");
			goto out;
		}
		char *pct = memchr(r.s, '%', r.slen);
		if (memchr(r.s, '_', r.slen) || (pct && pct != r.s + r.slen - 1)) {
			p->t.off = at;
			p->t.len = r.len;
			ex_perr(p, ST_ESYNTAX, "only prefix patterns are supported: 'prefix%'");
			goto out;
		}
		if (!pct) {
			n = make_cmp(p, &l, CMP_EQ, &r);
		} else if ((n = ex_node_new(p, N_LIKE))) {
			r.slen--;
			n->col = l.col;
			if (!coerce(p, &r, p->schema->fields[l.col].type, &n->op, &n->lit, &n->buf)) {
				ex_node_free(n);
				n = NULL;
			}
		}
	} else if (!negated && vl && vl->type == ST_TYPE_BOOL) {
		r = (struct operand){.col = -1, .lk = L_BOOL, .i = 1};
		n = ex_make_cmpv(p, vl, CMP_EQ, ex_vfrom_operand(p, &r));
		vl = NULL;
	} else if (!negated && !vl && l.col >= 0 && p->schema->fields[l.col].type == ST_TYPE_BOOL) {
		r = (struct operand){.col = -1, .lk = L_BOOL, .i = 1};
		n = make_cmp(p, &l, CMP_EQ, &r);
	} else if (!negated && !vl && l.col < 0 && (l.lk == L_BOOL || l.lk == L_NULL)) {
		n = ex_node_const(p, l.lk == L_NULL ? 2 : (uint8_t)l.i);
	} else {
		p->t.off = start;
		p->t.len = l.len;
		ex_perr(p, ST_ETYPE, vl ? "a value that is not bool is not a predicate"
			     : l.col >= 0 ? "a column that is not bool is not a predicate"
					  : "a literal that is not TRUE, FALSE or NULL is not a predicate");
		goto out;
	}
	if (n && negated)
		n = node2(p, N_NOT, n, NULL);
out:
	ex_operand_fini(&l);
	ex_operand_fini(&r);
	ex_operand_fini(&r2);
	ex_vnode_free(vl);
	ex_vnode_free(vr);
	ex_vnode_free(vr2);
	if (p->rc != ST_OK) {
		ex_node_free(n);
		n = NULL;
	}
	return n;
}

static struct node *parse_not(struct parser *p)
{
	if (++p->depth > EXPR_DEPTH_MAX) {
		ex_perr(p, ST_ETOOBIG, "predicate nested too deeply");
		return NULL;
	}
	struct node *n;
	if (ex_is_kw(p, "NOT")) {
		ex_next(p);
		n = node2(p, N_NOT, parse_not(p), NULL);
	} else {
		n = parse_cmp(p);
	}
	p->depth--;
	return n;
}

static struct node *parse_and(struct parser *p)
{
	struct node *n = parse_not(p);
	while (n && ex_is_kw(p, "AND")) {
		ex_next(p);
		n = node2(p, N_AND, n, parse_not(p));
	}
	return n;
}

struct node *ex_parse_or(struct parser *p)
{
	if (++p->depth > EXPR_DEPTH_MAX) {
		ex_perr(p, ST_ETOOBIG, "predicate nested too deeply");
		return NULL;
	}
	struct node *n = parse_and(p);
	while (n && ex_is_kw(p, "OR")) {
		ex_next(p);
		n = node2(p, N_OR, n, parse_and(p));
	}
	p->depth--;
	return n;
}

int expr_parse(const char *text, const struct st_schema *schema, struct expr **out,
	       struct st_err *err)
{
	struct parser p = {.text = text, .schema = schema, .err = err};
	*out = NULL;
	if (strlen(text) > EXPR_TEXT_MAX)
		return st_seterr(err, ST_ETOOBIG, "predicate longer than %d bytes", EXPR_TEXT_MAX);
	ex_next(&p);
	if (p.rc != ST_OK)
		return p.rc;
	if (p.t.kind == T_END)
		return ex_perr(&p, ST_ESYNTAX, "empty predicate");
	struct node *n = ex_parse_or(&p);
	if (n && p.t.kind != T_END)
		ex_perr(&p, ST_ESYNTAX, p.t.kind == T_RP ? "unbalanced ')'" : "unexpected token");
	if (p.rc != ST_OK) {
		ex_node_free(n);
		return p.rc;
	}
	struct expr *e = malloc(sizeof *e);
	if (!e) {
		ex_node_free(n);
		return st_seterr(err, ST_ENOMEM, "out of memory");
	}
	e->root = n;
	e->ncols = schema->nfields;
	*out = e;
	return ST_OK;
}

void expr_free(struct expr *e)
{
	if (e) {
		ex_node_free(e->root);
		free(e);
	}
}

void ex_columns_of(const struct node *n, bool *used)
{
	if (!n)
		return;
	ex_vcolumns_of(n->va, used);
	ex_vcolumns_of(n->vb, used);
	if (n->kind == N_CMP || n->kind == N_CMPCOL || n->kind == N_ISNULL || n->kind == N_LIKE)
		used[n->col] = true;
	if (n->kind == N_CMPCOL)
		used[n->col2] = true;
	ex_columns_of(n->a, used);
	ex_columns_of(n->b, used);
}

void expr_columns(const struct expr *e, bool *used)
{
	ex_columns_of(e->root, used);
}

static bool eq_in(const struct node *n, int col, struct st_value *out)
{
	if (!n)
		return false;
	if (n->kind == N_AND)
		return eq_in(n->a, col, out) || eq_in(n->b, col, out);
	if (n->kind == N_CMP && n->op == CMP_EQ && n->col == col && !n->lit.is_null) {
		*out = n->lit;
		return true;
	}
	return false;
}

bool expr_eq_literal(const struct expr *e, int col, struct st_value *out)
{
	return e && eq_in(e->root, col, out);
}

/* ---- statistics -------------------------------------------------------- */

/* What may hold over a set of rows: some row TRUE / FALSE, every row TRUE / FALSE. */
struct tri {
	bool may_t, may_f, all_t, all_f;
};

/* The prefix successor: the smallest string greater than every string
 * starting with p; false when none exists (p is all 0xFF). */
static bool prefix_succ(const struct st_value *p, uint8_t *buf, struct st_value *out)
{
	uint32_t n = p->v.s.len > 64 ? 64 : p->v.s.len;
	if (n < p->v.s.len)
		return false; /* long prefix: no bound kept; stay conservative */
	memcpy(buf, p->v.s.ptr, n);
	while (n > 0 && buf[n - 1] == 0xff)
		n--;
	if (n == 0)
		return false;
	buf[n - 1]++;
	*out = *p;
	out->v.s.ptr = buf;
	out->v.s.len = n;
	return true;
}

static struct tri stat_node(const struct node *n, const struct st_col_stats *stats)
{
	struct tri r = {true, true, false, false}, a, b;
	switch (n->kind) {
	case N_CONST:
		r.may_t = r.all_t = n->cval == 1;
		r.may_f = r.all_f = n->cval == 0;
		return r;
	case N_NOT:
		a = stat_node(n->a, stats);
		return (struct tri){a.may_f, a.may_t, a.all_f, a.all_t};
	case N_AND:
		a = stat_node(n->a, stats);
		b = stat_node(n->b, stats);
		return (struct tri){a.may_t && b.may_t, a.may_f || b.may_f, a.all_t && b.all_t,
				    a.all_f || b.all_f};
	case N_OR:
		a = stat_node(n->a, stats);
		b = stat_node(n->b, stats);
		return (struct tri){a.may_t || b.may_t, a.may_f && b.may_f, a.all_t || b.all_t,
				    a.all_f && b.all_f};
	case N_CMPV:
	case N_VISNULL:
		return r; /* value expressions: not judged from statistics */
	default:
		break;
	}
	const struct st_col_stats *st = &stats[n->col];
	bool no_nulls = st->null_count == 0;
	if (st->null_count >= st->rows && st->rows > 0 && n->kind != N_ISNULL)
		return (struct tri){false, false, false, false}; /* all NULL: UNKNOWN */
	if (n->kind == N_ISNULL)
		return (struct tri){st->null_count > 0, st->null_count < st->rows,
				    st->rows > 0 && st->null_count == st->rows, no_nulls};
	if (n->kind == N_CMPCOL || !st->has_minmax)
		return r;
	const struct st_value *lo = &st->min, *hi = &st->max, *v = &n->lit;
	if (n->kind == N_LIKE) {
		uint8_t buf[64];
		struct st_value succ;
		bool has_succ = prefix_succ(v, buf, &succ);
		/* Some value may start with the prefix unless all are below it
		 * or all at/above its successor. */
		r.may_t = st_value_cmp(hi, v) >= 0 && (!has_succ || st_value_cmp(lo, &succ) < 0);
		r.all_f = no_nulls && !r.may_t;
		return r;
	}
	int clo = st_value_cmp(lo, v), chi = st_value_cmp(hi, v);
	bool point = clo == 0 && chi == 0 && st->min_exact && st->max_exact;
	switch (n->op) {
	case CMP_EQ:
		r.may_t = clo <= 0 && chi >= 0;
		r.may_f = !point;
		r.all_t = no_nulls && point;
		r.all_f = no_nulls && !r.may_t;
		break;
	case CMP_NE:
		r.may_t = !point;
		r.may_f = clo <= 0 && chi >= 0;
		r.all_t = no_nulls && !r.may_f;
		r.all_f = no_nulls && point;
		break;
	case CMP_LT:
		r.may_t = clo < 0;
		r.may_f = chi >= 0;
		break;
	case CMP_LE:
		r.may_t = clo <= 0;
		r.may_f = chi > 0;
		break;
	case CMP_GT:
		r.may_t = chi > 0;
		r.may_f = clo <= 0;
		break;
	case CMP_GE:
		r.may_t = chi >= 0;
		r.may_f = clo < 0;
		break;
	case CMP_NEVER:
		return (struct tri){false, true, false, no_nulls};
	case CMP_ALWAYS:
		return (struct tri){true, false, no_nulls, false};
	}
	if (n->op != CMP_EQ && n->op != CMP_NE) {
		/* Range tests need only min <= v <= max, which truncated string
		 * bounds keep: no exactness needed (equality needs it, above). */
		r.all_t = no_nulls && !r.may_f;
		r.all_f = no_nulls && !r.may_t;
	}
	return r;
}

enum expr_match expr_may_match(const struct expr *e, const struct st_col_stats *stats)
{
	struct tri r = stat_node(e->root, stats);
	return !r.may_t ? EXPR_MATCH_NONE : r.all_t ? EXPR_MATCH_ALL : EXPR_MATCH_SOME;
}

/* ---- batch evaluation -------------------------------------------------- */

/* Typed comparison loops: one tight loop per operator. */
#define CMP_LOOP(T, data, litv)                                                      \
	do {                                                                         \
		const T *d_ = (const T *)(data);                                     \
		const T l_ = (litv);                                                 \
		switch (op) {                                                        \
		case CMP_EQ: for (uint32_t i = 0; i < n; i++) out[i] = d_[i] == l_; break; \
		case CMP_NE: for (uint32_t i = 0; i < n; i++) out[i] = d_[i] != l_; break; \
		case CMP_LT: for (uint32_t i = 0; i < n; i++) out[i] = d_[i] < l_; break; \
		case CMP_LE: for (uint32_t i = 0; i < n; i++) out[i] = d_[i] <= l_; break; \
		case CMP_GT: for (uint32_t i = 0; i < n; i++) out[i] = d_[i] > l_; break; \
		case CMP_GE: for (uint32_t i = 0; i < n; i++) out[i] = d_[i] >= l_; break; \
		case CMP_NEVER: memset(out, 0, n); break;                            \
		default: memset(out, 1, n); break;                                   \
		}                                                                    \
	} while (0)

/* Mark NULL rows UNKNOWN (2). */
static void apply_nulls(const struct st_vec *v, uint32_t n, uint8_t *out)
{
	if (!v->validity)
		return;
	for (uint32_t i = 0; i < n; i++)
		if (!((v->validity[i >> 3] >> (i & 7)) & 1))
			out[i] = 2;
}

static double num_at(const struct st_vec *v, uint32_t i)
{
	switch (v->type) {
	case ST_TYPE_INT32: return ((const int32_t *)v->data)[i];
	case ST_TYPE_INT64: return (double)((const int64_t *)v->data)[i];
	default: return ((const double *)v->data)[i];
	}
}

static int64_t int_at(const struct st_vec *v, uint32_t i)
{
	return st_type_width(v->type) == 4 ? ((const int32_t *)v->data)[i]
					   : ((const int64_t *)v->data)[i];
}

static int eval_leaf(const struct node *nd, const struct st_vec *cols, uint32_t n, uint8_t *out,
		     struct st_err *err)
{
	const struct st_vec *v = &cols[nd->col];
	enum cmp_op op = nd->op;
	int want = nd->lit.type;
	if (nd->kind == N_CMPCOL) {
		const struct st_vec *w = &cols[nd->col2];
		if (!v->type || !w->type || v->n < n || w->n < n)
			return st_seterr(err, ST_EINVAL, "predicate needs columns %d and %d", nd->col,
					 nd->col2);
		for (uint32_t i = 0; i < n; i++) {
			int c;
			if (st_type_is_varlen(v->type)) {
				const uint8_t *a, *b;
				uint32_t la, lb;
				st_vec_str(v, i, &a, &la);
				st_vec_str(w, i, &b, &lb);
				c = cmp_bytes(a, la, b, lb);
			} else if (v->type == w->type && v->type != ST_TYPE_FLOAT64 && v->type != ST_TYPE_BOOL) {
				int64_t a = int_at(v, i), b = int_at(w, i);
				c = (a > b) - (a < b);
			} else if (v->type == ST_TYPE_BOOL) {
				c = (int)((const uint8_t *)v->data)[i] - (int)((const uint8_t *)w->data)[i];
			} else {
				double a = num_at(v, i), b = num_at(w, i);
				c = a != a || b != b ? 2 : (a > b) - (a < b);
				if (c == 2) {
					out[i] = op == CMP_NE;
					continue;
				}
			}
			out[i] = apply(op, c);
		}
		apply_nulls(v, n, out);
		apply_nulls(w, n, out);
		return ST_OK;
	}
	if (!v->type || v->n < n || (nd->kind != N_ISNULL && v->type != want))
		return st_seterr(err, ST_EINVAL, "predicate column %d is missing or of the wrong type",
				 nd->col);
	if (nd->kind == N_ISNULL) {
		for (uint32_t i = 0; i < n; i++)
			out[i] = !st_vec_is_valid(v, i);
		return ST_OK;
	}
	if (st_type_is_varlen(v->type)) {
		const uint8_t *lp = nd->lit.v.s.ptr;
		uint32_t ll = nd->lit.v.s.len;
		bool like = nd->kind == N_LIKE;
		if (v->dict) {
			/* Once per dictionary entry, then a lookup per row. */
			uint8_t *res = malloc(v->dict->n + 1);
			if (!res)
				return st_seterr(err, ST_ENOMEM, "out of memory");
			for (uint32_t k = 0; k < v->dict->n; k++) {
				const uint8_t *p;
				uint32_t len;
				st_vec_str(v->dict, k, &p, &len);
				res[k] = like ? len >= ll && !memcmp(p, lp, ll)
					      : apply(op, cmp_bytes(p, len, lp, ll));
			}
			for (uint32_t i = 0; i < n; i++)
				out[i] = res[v->codes[i]];
			free(res);
		} else {
			for (uint32_t i = 0; i < n; i++) {
				const uint8_t *p = v->bytes + v->offsets[i];
				uint32_t len = v->offsets[i + 1] - v->offsets[i];
				out[i] = like ? len >= ll && !memcmp(p, lp, ll)
					      : apply(op, cmp_bytes(p, len, lp, ll));
			}
		}
	} else {
		switch (v->type) {
		case ST_TYPE_BOOL: CMP_LOOP(uint8_t, v->data, (uint8_t)nd->lit.v.b); break;
		case ST_TYPE_INT32: case ST_TYPE_DATE: CMP_LOOP(int32_t, v->data, nd->lit.v.i32); break;
		case ST_TYPE_FLOAT64: CMP_LOOP(double, v->data, nd->lit.v.f64); break;
		default: CMP_LOOP(int64_t, v->data, nd->lit.v.i64); break;
		}
	}
	apply_nulls(v, n, out);
	return ST_OK;
}

/* Three-valued NOT / AND / OR on 0 FALSE, 1 TRUE, 2 UNKNOWN. */
static const uint8_t tv_not[3] = {1, 0, 2};
static const uint8_t tv_and[9] = {0, 0, 0, 0, 1, 2, 0, 2, 2};
static const uint8_t tv_or[9] = {0, 1, 2, 1, 1, 1, 2, 1, 2};

/* Whether nd can yield UNKNOWN (2) on these columns: only through NULLs.
 * When neither side of AND/OR can, plain bitwise AND/OR is exact. */
static bool may_be_unknown(const struct node *nd, const struct st_vec *cols)
{
	switch (nd->kind) {
	case N_CONST: return nd->cval == 2;
	case N_ISNULL: return false;
	case N_NOT: return may_be_unknown(nd->a, cols);
	case N_AND:
	case N_OR: return may_be_unknown(nd->a, cols) || may_be_unknown(nd->b, cols);
	case N_CMPCOL: return cols[nd->col].validity || cols[nd->col2].validity;
	case N_CMPV: return true;
	case N_VISNULL: return false;
	default: return cols[nd->col].validity != NULL;
	}
}

/* An integer-like column's value as int64 bounds of `col op lit`:
 * GE/GT give a lower bound, LE/LT an upper one. */
static bool int_bound(const struct node *nd, bool *lower, int64_t *v)
{
	int64_t x = nd->lit.type == ST_TYPE_INT32 || nd->lit.type == ST_TYPE_DATE ? nd->lit.v.i32
										    : nd->lit.v.i64;
	switch (nd->op) {
	case CMP_GE: *lower = true; *v = x; return true;
	case CMP_GT: *lower = true; *v = x; return x != INT64_MAX && (++*v, true);
	case CMP_LE: *lower = false; *v = x; return true;
	case CMP_LT: *lower = false; *v = x; return x != INT64_MIN && (--*v, true);
	default: return false;
	}
}

/* `c >= lo AND c < hi` (any mix of bounds) on one integer column without
 * NULLs: one pass with one unsigned comparison per row, instead of two
 * comparison passes and an AND pass. False when nd is not of that form. */
static bool eval_range(const struct node *nd, const struct st_vec *cols, uint32_t n, uint8_t *out)
{
	const struct node *a = nd->a, *b = nd->b;
	if (nd->kind != N_AND || a->kind != N_CMP || b->kind != N_CMP || a->col != b->col)
		return false;
	const struct st_vec *v = &cols[a->col];
	bool la, lb;
	int64_t xa, xb;
	if (v->validity || v->n < n || v->type != a->lit.type || !st_type_is_integer(v->type) ||
	    !int_bound(a, &la, &xa) || !int_bound(b, &lb, &xb) || la == lb)
		return false;
	int64_t lo = la ? xa : xb, hi = la ? xb : xa;
	if (lo > hi) {
		memset(out, 0, n);
		return true;
	}
	uint64_t span = (uint64_t)hi - (uint64_t)lo;
	if (st_type_width(v->type) == 8) {
		const int64_t *restrict d = v->data;
		for (uint32_t i = 0; i < n; i++)
			out[i] = (uint64_t)d[i] - (uint64_t)lo <= span;
	} else {
		const int32_t *restrict d = v->data;
		for (uint32_t i = 0; i < n; i++)
			out[i] = (uint64_t)(int64_t)d[i] - (uint64_t)lo <= span;
	}
	return true;
}

int ex_eval_node(const struct node *nd, const struct st_vec *cols, uint32_t n, uint8_t *out,
		     struct st_err *err)
{
	int rc = ST_OK;
	if (eval_range(nd, cols, n, out))
		return ST_OK;
	switch (nd->kind) {
	case N_CONST:
		memset(out, nd->cval, n);
		return ST_OK;
	case N_NOT:
		if ((rc = ex_eval_node(nd->a, cols, n, out, err)) == ST_OK)
			for (uint32_t i = 0; i < n; i++)
				out[i] = tv_not[out[i]];
		return rc;
	case N_AND:
	case N_OR: {
		uint8_t *tmp = malloc(n + 1);
		if (!tmp)
			return st_seterr(err, ST_ENOMEM, "out of memory");
		if ((rc = ex_eval_node(nd->a, cols, n, out, err)) == ST_OK &&
		    (rc = ex_eval_node(nd->b, cols, n, tmp, err)) == ST_OK) {
			if (!may_be_unknown(nd, cols)) { /* 0/1 only: vectorizable */
				uint8_t *restrict o = out;
				const uint8_t *restrict t = tmp;
				if (nd->kind == N_AND)
					for (uint32_t i = 0; i < n; i++)
						o[i] &= t[i];
				else
					for (uint32_t i = 0; i < n; i++)
						o[i] |= t[i];
			} else {
				const uint8_t *tab = nd->kind == N_AND ? tv_and : tv_or;
				for (uint32_t i = 0; i < n; i++)
					out[i] = tab[out[i] * 3 + tmp[i]];
			}
		}
		free(tmp);
		return rc;
	}
	case N_CMPV:
	case N_VISNULL:
		return ex_eval_value_node(nd, cols, n, out, err);
	default:
		return eval_leaf(nd, cols, n, out, err);
	}
}

int expr_eval(const struct expr *e, const struct st_vec *cols, uint32_t n, uint32_t *sel,
	      uint32_t *nsel, struct st_err *err)
{
	uint8_t *res = malloc((size_t)n + 8);
	int rc;
	*nsel = 0;
	if (!res)
		return st_seterr(err, ST_ENOMEM, "out of memory");
	rc = ex_eval_node(e->root, cols, n, res, err);
	if (rc == ST_OK) {
		/* Compaction, 8 rows at a time: runs of all-false and all-true
		 * rows (range predicates on sorted-ish columns) cost one test. */
		uint32_t k = 0, i = 0;
		for (; i + 8 <= n; i += 8) {
			uint64_t w;
			memcpy(&w, res + i, 8);
			if (w == 0)
				continue;
			if (w == 0x0101010101010101ULL) {
				for (uint32_t j = 0; j < 8; j++)
					sel[k + j] = i + j;
				k += 8;
				continue;
			}
			for (uint32_t j = i; j < i + 8; j++) {
				sel[k] = j;
				k += res[j] == 1; /* branch-free */
			}
		}
		for (; i < n; i++) {
			sel[k] = i;
			k += res[i] == 1;
		}
		*nsel = k;
	}
	free(res);
	return rc;
}

/* ---- formatting -------------------------------------------------------- */

static void emit(struct out *o, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++, o->need++)
		if (o->need + 1 < o->len)
			o->buf[o->need] = s[i];
}

void ex_emits(struct out *o, const char *s)
{
	emit(o, s, strlen(s));
}

/* A string literal: quotes doubled, then `tail` (closing quote, or %'). */
static void emit_string(struct out *o, const struct st_value *v, const char *tail)
{
	emit(o, "'", 1);
	for (uint32_t i = 0; i < v->v.s.len; i++) {
		emit(o, (const char *)v->v.s.ptr + i, 1);
		if (v->v.s.ptr[i] == '\'')
			emit(o, "'", 1);
	}
	ex_emits(o, tail);
}

void ex_emit_value(struct out *o, const struct st_value *v)
{
	char b[96];
	switch (v->type) {
	case ST_TYPE_BOOL:
		ex_emits(o, v->v.b ? "TRUE" : "FALSE");
		return;
	case ST_TYPE_INT32:
		snprintf(b, sizeof b, "%" PRId32, v->v.i32);
		break;
	case ST_TYPE_INT64:
		snprintf(b, sizeof b, "%" PRId64, v->v.i64);
		break;
	case ST_TYPE_FLOAT64:
		snprintf(b, sizeof b, "%.17g", v->v.f64);
		if (!strpbrk(b, ".eEn"))
			strcat(b, ".0");
		break;
	case ST_TYPE_DATE:
	case ST_TYPE_TIMESTAMP: {
		int64_t days = v->v.i32, rem = 0;
		if (v->type == ST_TYPE_TIMESTAMP) {
			days = v->v.i64 / 86400000000LL;
			rem = v->v.i64 % 86400000000LL;
			if (rem < 0) {
				rem += 86400000000LL;
				days--;
			}
		}
		int64_t y;
		unsigned m, d;
		st_civil_from_days(days, &y, &m, &d);
		if (y < 0 || y > 9999) /* no calendar literal: the number itself */
			snprintf(b, sizeof b, "%" PRId64,
				 v->type == ST_TYPE_DATE ? (int64_t)v->v.i32 : v->v.i64);
		else if (v->type == ST_TYPE_DATE)
			snprintf(b, sizeof b, "DATE '%04" PRId64 "-%02u-%02u'", y, m, d);
		else
			snprintf(b, sizeof b, "TIMESTAMP '%04" PRId64 "-%02u-%02u %02d:%02d:%02d.%06d'", y,
				 m, d, (int)(rem / 3600000000LL), (int)(rem / 60000000 % 60),
				 (int)(rem / 1000000 % 60), (int)(rem % 1000000));
		break;
	}
	default:
		emit_string(o, v, "'");
		return;
	}
	ex_emits(o, b);
}

void ex_emit_col(struct out *o, const struct st_schema *s, int c)
{
	emit(o, "\"", 1);
	ex_emits(o, s->fields[c].name);
	emit(o, "\"", 1);
}

void ex_format_node(struct out *o, const struct node *n, const struct st_schema *s)
{
	static const char *const ops[] = {"=", "!=", "<", "<=", ">", ">="};
	emit(o, "(", 1);
	switch (n->kind) {
	case N_CONST:
		ex_emits(o, n->cval == 2 ? "NULL" : n->cval ? "TRUE" : "FALSE");
		break;
	case N_NOT:
		ex_emits(o, "NOT ");
		ex_format_node(o, n->a, s);
		break;
	case N_AND:
	case N_OR:
		ex_format_node(o, n->a, s);
		ex_emits(o, n->kind == N_AND ? " AND " : " OR ");
		ex_format_node(o, n->b, s);
		break;
	case N_ISNULL:
		ex_emit_col(o, s, n->col);
		ex_emits(o, " IS NULL");
		break;
	case N_VISNULL:
		ex_format_vnode(o, n->va, s);
		ex_emits(o, " IS NULL");
		break;
	case N_CMPV:
		ex_format_vnode(o, n->va, s);
		emit(o, " ", 1);
		ex_emits(o, ops[n->op]);
		emit(o, " ", 1);
		ex_format_vnode(o, n->vb, s);
		break;
	case N_LIKE:
		ex_emit_col(o, s, n->col);
		ex_emits(o, " LIKE ");
		emit_string(o, &n->lit, "%'"); /* the prefix with its '%' back */
		break;
	case N_CMPCOL:
		ex_emit_col(o, s, n->col);
		emit(o, " ", 1);
		ex_emits(o, ops[n->op]);
		emit(o, " ", 1);
		ex_emit_col(o, s, n->col2);
		break;
	case N_CMP:
		if (n->op == CMP_NEVER || n->op == CMP_ALWAYS) {
			/* (In)equality with a non-integral number parses back the same. */
			ex_emit_col(o, s, n->col);
			ex_emits(o, n->op == CMP_NEVER ? " = 0.5" : " != 0.5");
			break;
		}
		ex_emit_col(o, s, n->col);
		emit(o, " ", 1);
		ex_emits(o, ops[n->op]);
		emit(o, " ", 1);
		ex_emit_value(o, &n->lit);
		break;
	}
	emit(o, ")", 1);
}

size_t expr_format(const struct expr *e, const struct st_schema *schema, char *buf, size_t len)
{
	struct out o = {buf, len, 0};
	ex_format_node(&o, e->root, schema);
	if (len)
		buf[o.need < len ? o.need : len - 1] = '\0';
	return o.need;
}
