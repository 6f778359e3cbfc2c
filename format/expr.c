/*
 * format/expr.c — the predicate language of expr.h: tokenizer, parser with
 * type checking, statistics evaluator (may_match) and batch evaluator.
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

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define EXPR_DEPTH_MAX 256

enum node_kind {
	N_CONST,   /* TRUE, FALSE or NULL */
	N_CMP,     /* column op literal */
	N_CMPCOL,  /* column op column */
	N_ISNULL,  /* column IS NULL */
	N_LIKE,    /* column LIKE 'prefix%' */
	N_NOT,
	N_AND,
	N_OR,
	N_CMPV,    /* value expression op value expression (va, vb) */
	N_VISNULL  /* value expression IS NULL (va) */
};

/* Comparison operators; CMP_NEVER/CMP_ALWAYS: a decimal compared for
 * (in)equality with an integer column: FALSE/TRUE for every non-null row. */
enum cmp_op { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE, CMP_NEVER, CMP_ALWAYS };

struct node {
	enum node_kind kind;      /* what it is */
	enum cmp_op op;           /* N_CMP, N_CMPCOL */
	int col;                  /* column index (left column of N_CMPCOL) */
	int col2;                 /* right column of N_CMPCOL */
	uint8_t cval;             /* N_CONST: 0 FALSE, 1 TRUE, 2 NULL */
	struct st_value lit;      /* N_CMP literal / N_LIKE prefix, in the column's type */
	uint8_t *buf;             /* owned bytes of a string literal */
	struct node *a, *b;       /* children of NOT (a), AND/OR (a, b) */
	struct vnode *va, *vb;    /* N_CMPV, N_VISNULL */
};

struct expr {
	struct node *root;        /* the tree */
	uint32_t ncols;           /* columns of the schema it was parsed against */
};

/* ---- tokens ------------------------------------------------------------ */

enum tok_kind { T_END, T_IDENT, T_QIDENT, T_NUM, T_STR, T_OP, T_LP, T_RP, T_COMMA };

struct tok {
	enum tok_kind kind;   /* what it is */
	size_t off;           /* byte offset in the text */
	size_t len;           /* length of its text */
};

struct parser {
	const char *text;             /* the predicate */
	size_t pos;                   /* next byte to scan */
	struct tok t;                 /* current token */
	const struct st_schema *schema; /* columns */
	struct st_err *err;           /* where errors go */
	int depth;                    /* nesting, against EXPR_DEPTH_MAX */
	int rc;                       /* first error, ST_OK while fine */
};

static int perr(struct parser *p, int code, const char *what)
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

static void next(struct parser *p)
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
				perr(p, ST_ESYNTAX, c == '\'' ? "unterminated string" : "unterminated quoted name");
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
			perr(p, ST_ESYNTAX, "unexpected character");
			p->pos = j;
			return;
		}
		p->t.kind = T_OP;
	} else {
		p->t.len = 1;
		perr(p, ST_ESYNTAX, "unexpected character");
		p->pos = j;
		return;
	}
	p->t.len = j - i;
	p->pos = j;
}

static bool is_kw(const struct parser *p, const char *kw)
{
	return p->t.kind == T_IDENT && strlen(kw) == p->t.len &&
	       !strncasecmp(p->text + p->t.off, kw, p->t.len);
}

static bool is_op(const struct parser *p, const char *op)
{
	return p->t.kind == T_OP && strlen(op) == p->t.len && !strncmp(p->text + p->t.off, op, p->t.len);
}

/* ---- nodes ------------------------------------------------------------- */

struct vnode;
static void vnode_free(struct vnode *v);

static void node_free(struct node *n)
{
	if (!n)
		return;
	node_free(n->a);
	node_free(n->b);
	vnode_free(n->va);
	vnode_free(n->vb);
	free(n->buf);
	free(n);
}

static struct node *node_new(struct parser *p, enum node_kind k)
{
	struct node *n = calloc(1, sizeof *n);
	if (!n)
		perr(p, ST_ENOMEM, "out of memory");
	else
		n->kind = k;
	return n;
}

static struct node *node2(struct parser *p, enum node_kind k, struct node *a, struct node *b)
{
	struct node *n = (a && (b || k == N_NOT)) ? node_new(p, k) : NULL;
	if (!n) {
		node_free(a);
		node_free(b);
		return NULL;
	}
	n->a = a;
	n->b = b;
	return n;
}

static struct node *node_const(struct parser *p, uint8_t v)
{
	struct node *n = node_new(p, N_CONST);
	if (n)
		n->cval = v;
	return n;
}

/* ---- literals ---------------------------------------------------------- */

/* A parsed operand: a column or a literal of a "literal kind". */
enum lit_kind { L_NONE, L_INT, L_DEC, L_STR, L_BOOL, L_NULL, L_TS, L_DATE };

struct operand {
	int col;            /* column index, or -1 for a literal */
	enum lit_kind lk;   /* literal kind */
	int64_t i;          /* L_INT, L_BOOL, L_TS (µs), L_DATE (days) */
	double d;           /* L_DEC */
	char *s;            /* L_STR bytes (unescaped, owned) */
	size_t slen;        /* their length */
	size_t off, len;    /* where it was in the text */
};

/* Unescape the current string token into o (owned copy). */
static bool take_string(struct parser *p, struct operand *o)
{
	const char *s = p->text + p->t.off + 1;
	size_t n = p->t.len - 2;
	o->s = malloc(n + 1);
	if (!o->s) {
		perr(p, ST_ENOMEM, "out of memory");
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
	next(p);
	bool string_follows = p->t.kind == T_STR;
	*p = save;
	return !string_follows;
}

/* operand := column | literal */
static bool parse_operand(struct parser *p, struct operand *o)
{
	memset(o, 0, sizeof *o);
	o->col = -1;
	o->off = p->t.off;
	bool neg = false;
	if (is_op(p, "-")) {
		neg = true;
		next(p);
		if (p->t.kind != T_NUM)
			return perr(p, ST_ESYNTAX, "expected a number after '-'"), false;
	}
	if (p->t.kind == T_NUM) {
		char buf[80];
		size_t n = p->t.len;
		if (n + 2 > sizeof buf)
			return perr(p, ST_ERANGE, "number too long"), false;
		buf[0] = '-';
		memcpy(buf + 1, p->text + p->t.off, n);
		buf[n + 1] = '\0';
		const char *num = neg ? buf : buf + 1;
		char *end;
		errno = 0;
		if (!memchr(buf, '.', n + 1) && !memchr(buf, 'e', n + 1) && !memchr(buf, 'E', n + 1)) {
			long long v = strtoll(num, &end, 10);
			if (errno == ERANGE)
				return perr(p, ST_ERANGE, "integer out of the int64 range"), false;
			o->lk = L_INT;
			o->i = v;
		} else {
			double v = strtod(num, &end);
			if (*end || (errno == ERANGE && isinf(v)))
				return perr(p, *end ? ST_ESYNTAX : ST_ERANGE, *end ? "malformed number" : "number out of range"), false;
			o->lk = L_DEC;
			o->d = v;
		}
		if (*end)
			return perr(p, ST_ESYNTAX, "malformed number"), false;
	} else if (p->t.kind == T_STR) {
		if (!take_string(p, o))
			return false;
	} else if (is_kw(p, "TRUE") || is_kw(p, "FALSE")) {
		o->lk = L_BOOL;
		o->i = is_kw(p, "TRUE");
	} else if (is_kw(p, "NULL")) {
		o->lk = L_NULL;
	} else if ((is_kw(p, "TIMESTAMP") || is_kw(p, "DATE")) && !keyword_is_column(p)) {
		bool date = is_kw(p, "DATE");
		next(p);
		if (p->t.kind != T_STR)
			return perr(p, ST_ESYNTAX, date ? "expected 'YYYY-MM-DD' after DATE"
						      : "expected 'YYYY-MM-DD HH:MM:SS[.ffffff]' after TIMESTAMP"), false;
		int64_t days, us;
		if (!st_parse_datetime(p->text + p->t.off + 1, p->t.len - 2, date, &days, &us))
			return perr(p, ST_ESYNTAX, date ? "not a valid date 'YYYY-MM-DD'"
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
				if (is_kw(p, reserved[k]))
					return perr(p, ST_ESYNTAX, "expected a column or a literal"), false;
		}
		int c = memchr(name, '"', n) ? -1 : st_schema_find(p->schema, name, n);
		if (c < 0)
			return perr(p, ST_ETYPE, "unknown column"), false;
		o->col = c;
	} else {
		return perr(p, ST_ESYNTAX, "expected a column or a literal"), false;
	}
	o->len = p->t.off + p->t.len - o->off;
	next(p);
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
			return perr(p, ST_ENOMEM, "out of memory"), false;
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
				return perr(p, ST_ERANGE, "number out of the column's range"), false;
			x = (int64_t)f;
		} else if (o->lk == L_TS && type == ST_TYPE_TIMESTAMP) {
			x = o->i;
		} else if (o->lk == L_DATE && (type == ST_TYPE_DATE || type == ST_TYPE_TIMESTAMP)) {
			x = type == ST_TYPE_DATE ? o->i : o->i * 86400000000LL;
		} else if (o->lk == L_STR && (type == ST_TYPE_DATE || type == ST_TYPE_TIMESTAMP)) {
			int64_t days, us;
			if (!st_parse_datetime(o->s, o->slen, type == ST_TYPE_DATE, &days, &us))
				return perr(p, ST_ETYPE, type == ST_TYPE_DATE ? "string is not a date 'YYYY-MM-DD'"
									  : "string is not a timestamp"), false;
			x = type == ST_TYPE_DATE ? days : us;
		} else {
			break;
		}
		if (x < lo || x > hi)
			return perr(p, ST_ERANGE, "literal out of the column's range"), false;
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
	return perr(p, ST_ETYPE, m), false;
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
		return node_const(p, 2);
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
		perr(p, ST_ETYPE, "cannot compare literals of different types");
		return NULL;
	}
	bool t = op == CMP_EQ ? c == 0 : op == CMP_NE ? c != 0 : op == CMP_LT ? c < 0
	       : op == CMP_LE ? c <= 0 : op == CMP_GT ? c > 0 : c >= 0;
	return node_const(p, t);
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
			perr(p, ST_ETYPE, m);
			return NULL;
		}
		struct node *n = node_new(p, N_CMPCOL);
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
		return node_const(p, 2);
	struct node *n = node_new(p, N_CMP);
	if (!n)
		return NULL;
	n->col = l->col;
	n->op = op;
	if (!coerce(p, r, s->fields[l->col].type, &n->op, &n->lit, &n->buf)) {
		node_free(n);
		return NULL;
	}
	return n;
}

static void operand_fini(struct operand *o)
{
	free(o->s);
	o->s = NULL;
}

static struct node *parse_or(struct parser *p);

/* ---- value expressions -------------------------------------------------- */

/*
 * A value expression (expr.h): arithmetic, CASE, COALESCE and CAST over
 * columns and literals, typed at parse time. Evaluated a batch at a time
 * into one value per row (struct vres): integer-like types (int32, int64,
 * date, timestamp, bool) as int64, float64 as double, strings as pointers
 * into the batch's vectors or into the result's own arena.
 */
enum vkind { V_COL, V_LIT, V_NEG, V_ADD, V_SUB, V_MUL, V_DIV, V_MOD, V_CASE, V_COALESCE, V_CAST };

struct vnode {
	enum vkind kind;          /* what it is */
	uint8_t type;             /* result type; 0: the NULL literal (any type) */
	int col;                  /* V_COL */
	struct operand o;         /* V_LIT: the literal as parsed (o.s owned) */
	struct vnode **kids;      /* operands; CASE: THEN values, then ELSE (or NULL) */
	uint32_t nkids;           /* their count */
	struct node **whens;      /* CASE: the WHEN conditions (nkids - 1) */
};

struct vres {
	uint8_t type;             /* as the node's */
	uint8_t *valid;           /* n bytes: 1 valid, 0 NULL */
	int64_t *i;               /* integer-like types */
	double *f;                /* float64 */
	const uint8_t **sp;       /* strings: bytes */
	uint32_t *sl;             /* and lengths */
	struct st_buf arena;      /* strings made here (CAST) */
	struct st_buf *kept;      /* arenas of branches whose strings it took (CASE, COALESCE) */
	uint32_t nkept;
	uint8_t *bad;             /* n bytes, or NULL: rows whose value is an error (an overflow,
				   * a failed CAST): only an error if the row's value is used,
				   * so a CASE branch not taken costs nothing */
	int bad_rc;               /* the first such error */
	char bad_msg[160];
};

static void vnode_free(struct vnode *v)
{
	if (!v)
		return;
	for (uint32_t k = 0; k < v->nkids; k++)
		vnode_free(v->kids[k]);
	for (uint32_t k = 0; v->whens && k + 1 < v->nkids; k++)
		node_free(v->whens[k]);
	free(v->kids);
	free(v->whens);
	free(v->o.s);
	free(v);
}

static struct node *node_clone(struct parser *p, const struct node *n);

static struct vnode *vnode_clone(struct parser *p, const struct vnode *v)
{
	struct vnode *c = calloc(1, sizeof *c);
	if (!c) {
		perr(p, ST_ENOMEM, "out of memory");
		return NULL;
	}
	*c = *v;
	c->o.s = NULL;
	c->kids = NULL;
	c->whens = NULL;
	c->nkids = 0;
	if (v->o.s && !(c->o.s = malloc(v->o.slen + 1)))
		goto oom;
	if (v->o.s)
		memcpy(c->o.s, v->o.s, v->o.slen + 1);
	if (v->nkids) {
		if (!(c->kids = calloc(v->nkids, sizeof *c->kids)))
			goto oom;
		if (v->whens && !(c->whens = calloc(v->nkids, sizeof *c->whens)))
			goto oom;
		c->nkids = v->nkids;
		for (uint32_t k = 0; k < v->nkids; k++) {
			if (v->kids[k] && !(c->kids[k] = vnode_clone(p, v->kids[k])))
				goto fail;
			if (v->whens && k + 1 < v->nkids && !(c->whens[k] = node_clone(p, v->whens[k])))
				goto fail;
		}
	}
	return c;
oom:
	perr(p, ST_ENOMEM, "out of memory");
fail:
	vnode_free(c);
	return NULL;
}

static bool num_type(int t)
{
	return t == 0 || t == ST_TYPE_INT32 || t == ST_TYPE_INT64 || t == ST_TYPE_FLOAT64;
}

/* The common type of two branches (CASE, COALESCE), or -1. */
static int unify(int a, int b)
{
	if (!a || a == b)
		return b;
	if (!b)
		return a;
	if (num_type(a) && num_type(b))
		return a == ST_TYPE_FLOAT64 || b == ST_TYPE_FLOAT64 ? ST_TYPE_FLOAT64 : ST_TYPE_INT64;
	if ((a == ST_TYPE_DATE || a == ST_TYPE_TIMESTAMP) && (b == ST_TYPE_DATE || b == ST_TYPE_TIMESTAMP))
		return ST_TYPE_TIMESTAMP;
	if (st_type_is_varlen(a) && st_type_is_varlen(b))
		return ST_TYPE_STRING;
	return -1;
}

static const char *vtype_name(int t)
{
	return t ? st_type_name(t) : "NULL";
}

static struct vnode *vnew(struct parser *p, enum vkind k, uint8_t type, uint32_t nkids)
{
	struct vnode *v = calloc(1, sizeof *v);
	if (v && nkids && !(v->kids = calloc(nkids, sizeof *v->kids))) {
		free(v);
		v = NULL;
	}
	if (!v) {
		perr(p, ST_ENOMEM, "out of memory");
		return NULL;
	}
	v->kind = k;
	v->type = type;
	v->col = -1;
	v->nkids = nkids;
	return v;
}

/* A string literal compared with or assigned to a date/timestamp: the
 * literal becomes one (at parse time). */
static bool lit_to_temporal(struct parser *p, struct vnode *v, int type)
{
	if (v->kind != V_LIT || v->o.lk != L_STR)
		return true;
	int64_t days, us;
	if (!st_parse_datetime(v->o.s, v->o.slen, type == ST_TYPE_DATE, &days, &us))
		return perr(p, ST_ETYPE, type == ST_TYPE_DATE ? "string is not a date 'YYYY-MM-DD'"
							      : "string is not a timestamp"), false;
	v->o.lk = type == ST_TYPE_DATE ? L_DATE : L_TS;
	v->o.i = type == ST_TYPE_DATE ? days : us;
	v->type = (uint8_t)type;
	return true;
}

static struct vnode *parse_vsum(struct parser *p);

static struct vnode *vfrom_operand(struct parser *p, struct operand *o)
{
	struct vnode *v = vnew(p, o->col >= 0 ? V_COL : V_LIT, 0, 0);
	if (!v) {
		operand_fini(o);
		return NULL;
	}
	v->col = o->col;
	v->o = *o;
	o->s = NULL;
	if (o->col >= 0) {
		v->type = p->schema->fields[o->col].type;
		return v;
	}
	static const uint8_t of[] = {[L_INT] = ST_TYPE_INT64, [L_DEC] = ST_TYPE_FLOAT64,
				     [L_STR] = ST_TYPE_STRING, [L_BOOL] = ST_TYPE_BOOL,
				     [L_NULL] = 0, [L_TS] = ST_TYPE_TIMESTAMP,
				     [L_DATE] = ST_TYPE_DATE};
	v->type = of[o->lk];
	return v;
}

/* Whether the token after the current one is of kind k. */
static bool peek_kind(struct parser *p, enum tok_kind k)
{
	struct parser save = *p;
	next(p);
	bool r = p->t.kind == k;
	*p = save;
	return r;
}

/* CASE WHEN pred THEN v { WHEN pred THEN v } [ELSE v] END */
static struct vnode *parse_case(struct parser *p)
{
	struct vnode *v = vnew(p, V_CASE, 0, 0);
	uint32_t cap = 0;
	int type = 0;
	if (!v)
		return NULL;
	next(p);
	while (is_kw(p, "WHEN")) {
		next(p);
		if (v->nkids + 2 > cap) {
			cap = cap ? cap * 2 : 4;
			struct vnode **k = realloc(v->kids, cap * sizeof *k);
			struct node **w = k ? realloc(v->whens, cap * sizeof *w) : NULL;
			if (k)
				v->kids = k;
			if (w)
				v->whens = w;
			if (!k || !w) {
				perr(p, ST_ENOMEM, "out of memory");
				goto fail;
			}
		}
		struct node *cond = parse_or(p);
		if (!cond)
			goto fail;
		v->whens[v->nkids] = cond;
		v->kids[v->nkids] = NULL;
		v->nkids++; /* counted now so that vnode_free frees cond */
		if (!is_kw(p, "THEN")) {
			perr(p, ST_ESYNTAX, "expected THEN");
			goto fail;
		}
		next(p);
		if (!(v->kids[v->nkids - 1] = parse_vsum(p)))
			goto fail;
		if ((type = unify(type, v->kids[v->nkids - 1]->type)) < 0) {
			perr(p, ST_ETYPE, "CASE branches have different types");
			goto fail;
		}
	}
	if (!v->nkids) {
		perr(p, ST_ESYNTAX, "expected WHEN after CASE");
		goto fail;
	}
	/* The ELSE value is the last kid; whens has one fewer entries. */
	struct vnode *els = NULL;
	if (is_kw(p, "ELSE")) {
		next(p);
		if (!(els = parse_vsum(p)))
			goto fail;
		if ((type = unify(type, els->type)) < 0) {
			vnode_free(els);
			perr(p, ST_ETYPE, "CASE branches have different types");
			goto fail;
		}
	}
	if (!is_kw(p, "END")) {
		vnode_free(els);
		perr(p, ST_ESYNTAX, "expected END");
		goto fail;
	}
	next(p);
	v->kids[v->nkids++] = els; /* cap >= nkids + 2 held before the last WHEN */
	v->type = (uint8_t)type;
	return v;
fail:
	/* whens[k] pairs with kids[k] for k < nkids here: free them alike. */
	if (v->kids && v->nkids) {
		v->kids = realloc(v->kids, (v->nkids + 1) * sizeof *v->kids) ?: v->kids;
		v->kids[v->nkids++] = NULL;
	}
	vnode_free(v);
	return NULL;
}

static struct vnode *parse_vprimary(struct parser *p)
{
	if (p->t.kind == T_LP) {
		next(p);
		struct vnode *v = parse_vsum(p);
		if (v && p->t.kind != T_RP) {
			perr(p, ST_ESYNTAX, "expected ')'");
			vnode_free(v);
			return NULL;
		}
		next(p);
		return v;
	}
	if (is_kw(p, "CASE") && peek_kind(p, T_IDENT))
		return parse_case(p);
	bool coalesce = is_kw(p, "COALESCE"), cast = is_kw(p, "CAST");
	if ((coalesce || cast) && peek_kind(p, T_LP)) {
		next(p);
		next(p);
		struct vnode *v = vnew(p, coalesce ? V_COALESCE : V_CAST, 0, 0);
		int type = 0;
		if (!v)
			return NULL;
		for (;;) {
			struct vnode *a = parse_vsum(p), **k;
			if (!a)
				goto fail;
			if (!(k = realloc(v->kids, (v->nkids + 1) * sizeof *k))) {
				vnode_free(a);
				perr(p, ST_ENOMEM, "out of memory");
				goto fail;
			}
			v->kids = k;
			v->kids[v->nkids++] = a;
			if (coalesce && (type = unify(type, a->type)) < 0) {
				perr(p, ST_ETYPE, "COALESCE arguments have different types");
				goto fail;
			}
			if (coalesce && p->t.kind == T_COMMA) {
				next(p);
				continue;
			}
			break;
		}
		if (cast) {
			if (!is_kw(p, "AS")) {
				perr(p, ST_ESYNTAX, "expected AS in CAST");
				goto fail;
			}
			next(p);
			int to = p->t.kind == T_IDENT ? st_type_from_name(p->text + p->t.off, p->t.len) : -1;
			int from = v->kids[0]->type;
			if (to <= 0) {
				perr(p, ST_ESYNTAX, "expected a type name");
				goto fail;
			}
			bool ok = !from || from == to || (num_type(from) && num_type(to)) ||
				  (from == ST_TYPE_BOOL && num_type(to)) ||
				  (num_type(from) && to == ST_TYPE_BOOL) ||
				  st_type_is_varlen(from) || st_type_is_varlen(to) ||
				  ((from == ST_TYPE_DATE || from == ST_TYPE_TIMESTAMP) &&
				   (to == ST_TYPE_DATE || to == ST_TYPE_TIMESTAMP));
			if (!ok) {
				char m[128];
				snprintf(m, sizeof m, "cannot cast %s to %s", vtype_name(from),
					 st_type_name(to));
				perr(p, ST_ETYPE, m);
				goto fail;
			}
			type = to;
			next(p);
		}
		if (p->t.kind != T_RP) {
			perr(p, ST_ESYNTAX, coalesce ? "expected ',' or ')'" : "expected ')'");
			goto fail;
		}
		next(p);
		v->type = (uint8_t)type;
		return v;
	fail:
		vnode_free(v);
		return NULL;
	}
	struct operand o;
	if (!parse_operand(p, &o)) {
		operand_fini(&o);
		return NULL;
	}
	return vfrom_operand(p, &o);
}

static struct vnode *parse_vunary(struct parser *p)
{
	if (++p->depth > EXPR_DEPTH_MAX) {
		perr(p, ST_ETOOBIG, "expression nested too deeply");
		return NULL;
	}
	struct vnode *v;
	if (is_op(p, "-") && !peek_kind(p, T_NUM)) {
		size_t at = p->t.off;
		next(p);
		struct vnode *a = parse_vunary(p);
		v = a ? vnew(p, V_NEG, 0, 1) : NULL;
		if (v) {
			v->kids[0] = a;
			if (!num_type(a->type)) {
				p->t.off = at;
				perr(p, ST_ETYPE, "'-' needs a number");
				vnode_free(v);
				v = NULL;
			} else {
				v->type = a->type ? (a->type == ST_TYPE_FLOAT64 ? ST_TYPE_FLOAT64 : ST_TYPE_INT64)
						  : 0;
			}
		} else {
			vnode_free(a);
		}
	} else {
		v = parse_vprimary(p);
	}
	p->depth--;
	return v;
}

/* a op b for an arithmetic op: both numbers (or NULL). */
static struct vnode *varith(struct parser *p, enum vkind k, struct vnode *a, struct vnode *b,
			    size_t at)
{
	if (!a || !b) {
		vnode_free(a);
		vnode_free(b);
		return NULL;
	}
	if (!num_type(a->type) || !num_type(b->type)) {
		char m[128];
		snprintf(m, sizeof m, "arithmetic needs numbers, not %s and %s", vtype_name(a->type),
			 vtype_name(b->type));
		p->t.off = at;
		p->t.len = 1;
		perr(p, ST_ETYPE, m);
		vnode_free(a);
		vnode_free(b);
		return NULL;
	}
	struct vnode *v = vnew(p, k, a->type == ST_TYPE_FLOAT64 || b->type == ST_TYPE_FLOAT64
				     ? ST_TYPE_FLOAT64 : ST_TYPE_INT64, 2);
	if (!v) {
		vnode_free(a);
		vnode_free(b);
		return NULL;
	}
	v->kids[0] = a;
	v->kids[1] = b;
	return v;
}

static struct vnode *parse_vterm(struct parser *p)
{
	struct vnode *v = parse_vunary(p);
	while (v && (is_op(p, "*") || is_op(p, "/") || is_op(p, "%"))) {
		enum vkind k = is_op(p, "*") ? V_MUL : is_op(p, "/") ? V_DIV : V_MOD;
		size_t at = p->t.off;
		next(p);
		v = varith(p, k, v, parse_vunary(p), at);
	}
	return v;
}

static struct vnode *parse_vsum(struct parser *p)
{
	if (++p->depth > EXPR_DEPTH_MAX) {
		perr(p, ST_ETOOBIG, "expression nested too deeply");
		return NULL;
	}
	struct vnode *v = parse_vterm(p);
	while (v && (is_op(p, "+") || is_op(p, "-"))) {
		enum vkind k = is_op(p, "+") ? V_ADD : V_SUB;
		size_t at = p->t.off;
		next(p);
		v = varith(p, k, v, parse_vterm(p), at);
	}
	p->depth--;
	return v;
}

/* One side of a comparison: a plain operand into *o (*v NULL), or a value
 * expression into *v. */
static bool parse_side(struct parser *p, struct operand *o, struct vnode **v)
{
	memset(o, 0, sizeof *o);
	o->col = -1;
	*v = NULL;
	size_t start = p->t.off;
	struct vnode *x = parse_vsum(p);
	if (!x)
		return false;
	if (x->kind == V_COL || x->kind == V_LIT) {
		*o = x->o;
		o->col = x->col;
		x->o.s = NULL;
		vnode_free(x);
	} else {
		*v = x;
	}
	o->off = start;
	o->len = p->t.off - start;
	return true;
}

static struct vnode *vfrom_side(struct parser *p, struct operand *o, struct vnode **v)
{
	struct vnode *x = *v;
	*v = NULL;
	return x ? x : vfrom_operand(p, o);
}

/* Comparison a op b of value expressions (either may be a plain operand). */
static struct node *make_cmpv(struct parser *p, struct vnode *a, enum cmp_op op, struct vnode *b)
{
	struct node *n = NULL;
	if (!a || !b)
		goto out;
	int ta = a->type, tb = b->type;
	bool tmp_a = ta == ST_TYPE_DATE || ta == ST_TYPE_TIMESTAMP;
	bool tmp_b = tb == ST_TYPE_DATE || tb == ST_TYPE_TIMESTAMP;
	if (tmp_a && !lit_to_temporal(p, b, ta))
		goto out;
	if (tmp_b && !lit_to_temporal(p, a, tb))
		goto out;
	ta = a->type;
	tb = b->type;
	if (!ta || !tb) {
		n = node_const(p, 2);
		goto out;
	}
	bool ok = (num_type(ta) && num_type(tb)) || ta == tb ||
		  (st_type_is_varlen(ta) && st_type_is_varlen(tb)) ||
		  ((ta == ST_TYPE_DATE || ta == ST_TYPE_TIMESTAMP) &&
		   (tb == ST_TYPE_DATE || tb == ST_TYPE_TIMESTAMP));
	if (!ok) {
		char m[128];
		snprintf(m, sizeof m, "cannot compare %s with %s", st_type_name(ta), st_type_name(tb));
		perr(p, ST_ETYPE, m);
		goto out;
	}
	if ((n = node_new(p, N_CMPV))) {
		n->op = op;
		n->va = a;
		n->vb = b;
		return n;
	}
out:
	vnode_free(a);
	vnode_free(b);
	return n;
}


static struct node *node_clone(struct parser *p, const struct node *n)
{
	struct node *c = node_new(p, n->kind);
	if (!c)
		return NULL;
	*c = *n;
	c->a = c->b = NULL;
	c->va = c->vb = NULL;
	c->buf = NULL;
	if (n->buf) {
		if (!(c->buf = malloc((size_t)n->lit.v.s.len + 1))) {
			perr(p, ST_ENOMEM, "out of memory");
			node_free(c);
			return NULL;
		}
		memcpy(c->buf, n->buf, n->lit.v.s.len);
		c->lit.v.s.ptr = c->buf;
	}
	if ((n->a && !(c->a = node_clone(p, n->a))) || (n->b && !(c->b = node_clone(p, n->b))) ||
	    (n->va && !(c->va = vnode_clone(p, n->va))) || (n->vb && !(c->vb = vnode_clone(p, n->vb)))) {
		node_free(c);
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
		if (is_op(p, ops[k]))
			return true;
	return is_kw(p, "BETWEEN") || is_kw(p, "IN") || is_kw(p, "IS") || is_kw(p, "LIKE") ||
	       is_kw(p, "NOT");
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
		next(&q);
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
		next(p);
		n = parse_or(p);
		if (n && p->t.kind != T_RP) {
			perr(p, ST_ESYNTAX, "expected ')'");
			node_free(n);
			return NULL;
		}
		next(p);
		return n;
	}
	size_t start = p->t.off;
	if (!parse_side(p, &l, &vl))
		goto out;
	bool negated = false;
	if (is_kw(p, "NOT")) {
		negated = true;
		next(p);
		if (!is_kw(p, "BETWEEN") && !is_kw(p, "IN") && !is_kw(p, "LIKE")) {
			perr(p, ST_ESYNTAX, "expected BETWEEN, IN or LIKE after NOT");
			goto out;
		}
	}
	static const struct { const char *op; enum cmp_op c; } ops[] = {
		{"=", CMP_EQ}, {"!=", CMP_NE}, {"<>", CMP_NE}, {"<", CMP_LT},
		{"<=", CMP_LE}, {">", CMP_GT}, {">=", CMP_GE}};
	for (size_t k = 0; k < sizeof ops / sizeof *ops; k++) {
		if (!is_op(p, ops[k].op))
			continue;
		next(p);
		if (!parse_side(p, &r, &vr))
			goto out;
		if (vl || vr)
			n = make_cmpv(p, vfrom_side(p, &l, &vl), ops[k].c, vfrom_side(p, &r, &vr));
		else
			n = make_cmp(p, &l, ops[k].c, &r);
		goto out;
	}
	if (is_kw(p, "BETWEEN")) {
		next(p);
		if (!parse_side(p, &r, &vr))
			goto out;
		if (!is_kw(p, "AND")) {
			perr(p, ST_ESYNTAX, "expected AND in BETWEEN");
			goto out;
		}
		next(p);
		if (!parse_side(p, &r2, &vr2))
			goto out;
		if (vl || vr || vr2) {
			struct vnode *a = vfrom_side(p, &l, &vl);
			struct vnode *a2 = a ? vnode_clone(p, a) : NULL;
			n = node2(p, N_AND, make_cmpv(p, a, CMP_GE, vfrom_side(p, &r, &vr)),
				  make_cmpv(p, a2, CMP_LE, vfrom_side(p, &r2, &vr2)));
		} else {
			struct operand l2 = l;
			n = node2(p, N_AND, make_cmp(p, &l, CMP_GE, &r), make_cmp(p, &l2, CMP_LE, &r2));
		}
	} else if (is_kw(p, "IN")) {
		next(p);
		if (p->t.kind != T_LP) {
			perr(p, ST_ESYNTAX, "expected '(' after IN");
			goto out;
		}
		next(p);
		for (;;) {
			if (!parse_operand(p, &r))
				goto out;
			if (r.col >= 0) {
				perr(p, ST_ESYNTAX, "IN takes a list of literals");
				goto out;
			}
			struct node *eq;
			if (vl) {
				struct vnode *a = vnode_clone(p, vl);
				eq = a ? make_cmpv(p, a, CMP_EQ, vfrom_operand(p, &r)) : NULL;
			} else {
				eq = make_cmp(p, &l, CMP_EQ, &r);
			}
			operand_fini(&r);
			n = n ? node2(p, N_OR, n, eq) : eq;
			if (!n)
				goto out;
			if (p->t.kind == T_COMMA) {
				next(p);
				continue;
			}
			if (p->t.kind != T_RP) {
				perr(p, ST_ESYNTAX, "expected ',' or ')' in the IN list");
				node_free(n);
				n = NULL;
				goto out;
			}
			next(p);
			break;
		}
	} else if (is_kw(p, "IS")) {
		next(p);
		bool isnot = false;
		if (is_kw(p, "NOT")) {
			isnot = true;
			next(p);
		}
		if (!is_kw(p, "NULL")) {
			perr(p, ST_ESYNTAX, "expected NULL after IS");
			goto out;
		}
		next(p);
		if (vl) {
			if ((n = node_new(p, N_VISNULL))) {
				n->va = vl;
				vl = NULL;
			}
		} else if (l.col < 0) {
			n = node_const(p, (l.lk == L_NULL) != isnot);
			isnot = false;
		} else if ((n = node_new(p, N_ISNULL))) {
			n->col = l.col;
		}
		if (n && isnot)
			n = node2(p, N_NOT, n, NULL);
	} else if (is_kw(p, "LIKE")) {
		next(p);
		size_t at = p->t.off;
		if (p->t.kind != T_STR) {
			perr(p, ST_ESYNTAX, "LIKE takes a string pattern");
			goto out;
		}
		if (!parse_operand(p, &r))
			goto out;
		if (vl || l.col < 0 || !st_type_is_varlen(p->schema->fields[l.col].type)) {
			p->t.off = start;
			p->t.len = at - start;
			perr(p, ST_ETYPE, "LIKE needs a string or binary column");
			goto out;
		}
		char *pct = memchr(r.s, '%', r.slen);
		if (memchr(r.s, '_', r.slen) || (pct && pct != r.s + r.slen - 1)) {
			p->t.off = at;
			p->t.len = r.len;
			perr(p, ST_ESYNTAX, "only prefix patterns are supported: 'prefix%'");
			goto out;
		}
		if (!pct) {
			n = make_cmp(p, &l, CMP_EQ, &r);
		} else if ((n = node_new(p, N_LIKE))) {
			r.slen--;
			n->col = l.col;
			if (!coerce(p, &r, p->schema->fields[l.col].type, &n->op, &n->lit, &n->buf)) {
				node_free(n);
				n = NULL;
			}
		}
	} else if (!negated && vl && vl->type == ST_TYPE_BOOL) {
		r = (struct operand){.col = -1, .lk = L_BOOL, .i = 1};
		n = make_cmpv(p, vl, CMP_EQ, vfrom_operand(p, &r));
		vl = NULL;
	} else if (!negated && !vl && l.col >= 0 && p->schema->fields[l.col].type == ST_TYPE_BOOL) {
		r = (struct operand){.col = -1, .lk = L_BOOL, .i = 1};
		n = make_cmp(p, &l, CMP_EQ, &r);
	} else if (!negated && !vl && l.col < 0 && (l.lk == L_BOOL || l.lk == L_NULL)) {
		n = node_const(p, l.lk == L_NULL ? 2 : (uint8_t)l.i);
	} else {
		p->t.off = start;
		p->t.len = l.len;
		perr(p, ST_ETYPE, vl ? "a value that is not bool is not a predicate"
			     : l.col >= 0 ? "a column that is not bool is not a predicate"
					  : "a literal that is not TRUE, FALSE or NULL is not a predicate");
		goto out;
	}
	if (n && negated)
		n = node2(p, N_NOT, n, NULL);
out:
	operand_fini(&l);
	operand_fini(&r);
	operand_fini(&r2);
	vnode_free(vl);
	vnode_free(vr);
	vnode_free(vr2);
	if (p->rc != ST_OK) {
		node_free(n);
		n = NULL;
	}
	return n;
}

static struct node *parse_not(struct parser *p)
{
	if (++p->depth > EXPR_DEPTH_MAX) {
		perr(p, ST_ETOOBIG, "predicate nested too deeply");
		return NULL;
	}
	struct node *n;
	if (is_kw(p, "NOT")) {
		next(p);
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
	while (n && is_kw(p, "AND")) {
		next(p);
		n = node2(p, N_AND, n, parse_not(p));
	}
	return n;
}

static struct node *parse_or(struct parser *p)
{
	if (++p->depth > EXPR_DEPTH_MAX) {
		perr(p, ST_ETOOBIG, "predicate nested too deeply");
		return NULL;
	}
	struct node *n = parse_and(p);
	while (n && is_kw(p, "OR")) {
		next(p);
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
	next(&p);
	if (p.rc != ST_OK)
		return p.rc;
	if (p.t.kind == T_END)
		return perr(&p, ST_ESYNTAX, "empty predicate");
	struct node *n = parse_or(&p);
	if (n && p.t.kind != T_END)
		perr(&p, ST_ESYNTAX, p.t.kind == T_RP ? "unbalanced ')'" : "unexpected token");
	if (p.rc != ST_OK) {
		node_free(n);
		return p.rc;
	}
	struct expr *e = malloc(sizeof *e);
	if (!e) {
		node_free(n);
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
		node_free(e->root);
		free(e);
	}
}

static void vcolumns_of(const struct vnode *v, bool *used);

static void columns_of(const struct node *n, bool *used)
{
	if (!n)
		return;
	vcolumns_of(n->va, used);
	vcolumns_of(n->vb, used);
	if (n->kind == N_CMP || n->kind == N_CMPCOL || n->kind == N_ISNULL || n->kind == N_LIKE)
		used[n->col] = true;
	if (n->kind == N_CMPCOL)
		used[n->col2] = true;
	columns_of(n->a, used);
	columns_of(n->b, used);
}

void expr_columns(const struct expr *e, bool *used)
{
	columns_of(e->root, used);
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

static inline int cmp_bytes(const uint8_t *a, uint32_t la, const uint8_t *b, uint32_t lb)
{
	uint32_t m = la < lb ? la : lb;
	int c = m ? memcmp(a, b, m) : 0;
	return c ? c : (la > lb) - (la < lb);
}

static inline uint8_t apply(enum cmp_op op, int c)
{
	switch (op) {
	case CMP_EQ: return c == 0;
	case CMP_NE: return c != 0;
	case CMP_LT: return c < 0;
	case CMP_LE: return c <= 0;
	case CMP_GT: return c > 0;
	case CMP_GE: return c >= 0;
	case CMP_NEVER: return 0;
	default: return 1;
	}
}

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

static int eval_value_node(const struct node *nd, const struct st_vec *cols, uint32_t n,
			   uint8_t *out, struct st_err *err);

static int eval_node(const struct node *nd, const struct st_vec *cols, uint32_t n, uint8_t *out,
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
		if ((rc = eval_node(nd->a, cols, n, out, err)) == ST_OK)
			for (uint32_t i = 0; i < n; i++)
				out[i] = tv_not[out[i]];
		return rc;
	case N_AND:
	case N_OR: {
		uint8_t *tmp = malloc(n + 1);
		if (!tmp)
			return st_seterr(err, ST_ENOMEM, "out of memory");
		if ((rc = eval_node(nd->a, cols, n, out, err)) == ST_OK &&
		    (rc = eval_node(nd->b, cols, n, tmp, err)) == ST_OK) {
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
		return eval_value_node(nd, cols, n, out, err);
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
	rc = eval_node(e->root, cols, n, res, err);
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

struct out {
	char *buf;   /* destination */
	size_t len;  /* its size */
	size_t need; /* bytes the full text needs */
};

static void emit(struct out *o, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++, o->need++)
		if (o->need + 1 < o->len)
			o->buf[o->need] = s[i];
}

static void emits(struct out *o, const char *s)
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
	emits(o, tail);
}

static void emit_value(struct out *o, const struct st_value *v)
{
	char b[96];
	switch (v->type) {
	case ST_TYPE_BOOL:
		emits(o, v->v.b ? "TRUE" : "FALSE");
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
	emits(o, b);
}

static void emit_col(struct out *o, const struct st_schema *s, int c)
{
	emit(o, "\"", 1);
	emits(o, s->fields[c].name);
	emit(o, "\"", 1);
}

static void format_vnode(struct out *o, const struct vnode *v, const struct st_schema *s);

static void format_node(struct out *o, const struct node *n, const struct st_schema *s)
{
	static const char *const ops[] = {"=", "!=", "<", "<=", ">", ">="};
	emit(o, "(", 1);
	switch (n->kind) {
	case N_CONST:
		emits(o, n->cval == 2 ? "NULL" : n->cval ? "TRUE" : "FALSE");
		break;
	case N_NOT:
		emits(o, "NOT ");
		format_node(o, n->a, s);
		break;
	case N_AND:
	case N_OR:
		format_node(o, n->a, s);
		emits(o, n->kind == N_AND ? " AND " : " OR ");
		format_node(o, n->b, s);
		break;
	case N_ISNULL:
		emit_col(o, s, n->col);
		emits(o, " IS NULL");
		break;
	case N_VISNULL:
		format_vnode(o, n->va, s);
		emits(o, " IS NULL");
		break;
	case N_CMPV:
		format_vnode(o, n->va, s);
		emit(o, " ", 1);
		emits(o, ops[n->op]);
		emit(o, " ", 1);
		format_vnode(o, n->vb, s);
		break;
	case N_LIKE:
		emit_col(o, s, n->col);
		emits(o, " LIKE ");
		emit_string(o, &n->lit, "%'"); /* the prefix with its '%' back */
		break;
	case N_CMPCOL:
		emit_col(o, s, n->col);
		emit(o, " ", 1);
		emits(o, ops[n->op]);
		emit(o, " ", 1);
		emit_col(o, s, n->col2);
		break;
	case N_CMP:
		if (n->op == CMP_NEVER || n->op == CMP_ALWAYS) {
			/* (In)equality with a non-integral number parses back the same. */
			emit_col(o, s, n->col);
			emits(o, n->op == CMP_NEVER ? " = 0.5" : " != 0.5");
			break;
		}
		emit_col(o, s, n->col);
		emit(o, " ", 1);
		emits(o, ops[n->op]);
		emit(o, " ", 1);
		emit_value(o, &n->lit);
		break;
	}
	emit(o, ")", 1);
}

size_t expr_format(const struct expr *e, const struct st_schema *schema, char *buf, size_t len)
{
	struct out o = {buf, len, 0};
	format_node(&o, e->root, schema);
	if (len)
		buf[o.need < len ? o.need : len - 1] = '\0';
	return o.need;
}
/* Evaluation. */

static void vres_fini(struct vres *r)
{
	free(r->valid);
	free(r->i);
	free(r->f);
	free(r->sp);
	free(r->sl);
	st_buf_free(&r->arena);
	for (uint32_t k = 0; k < r->nkept; k++)
		st_buf_free(&r->kept[k]);
	free(r->kept);
	free(r->bad);
	memset(r, 0, sizeof *r);
}

/* Row i of r (n rows) is an error rc, msg; ST_ENOMEM if that cannot be kept. */
static int vres_fail(struct vres *r, uint32_t n, uint32_t i, int rc, const char *msg)
{
	if (!r->bad && !(r->bad = calloc((size_t)n + 1, 1)))
		return ST_ENOMEM;
	if (!r->bad_rc) {
		r->bad_rc = rc;
		snprintf(r->bad_msg, sizeof r->bad_msg, "%s", msg);
	}
	r->bad[i] = 1;
	r->valid[i] = 0;
	return ST_OK;
}

/* Row i of r takes src's error, if src has one there. */
static int vres_take_bad(struct vres *r, uint32_t n, uint32_t i, const struct vres *src)
{
	return src->bad && src->bad[i] ? vres_fail(r, n, i, src->bad_rc, src->bad_msg) : ST_OK;
}

/* The error of the first bad row among rows 0..n of r that sel keeps (sel
 * NULL: all), as err; ST_OK when none. *row gets it. */
static int vres_error(const struct vres *r, uint32_t n, uint32_t *row, struct st_err *err)
{
	for (uint32_t i = 0; r->bad && i < n; i++)
		if (r->bad[i]) {
			if (row)
				*row = i;
			return st_seterr(err, r->bad_rc, "%s (row %u of the batch)", r->bad_msg, i);
		}
	return ST_OK;
}

/* r takes a's arena (r's strings may point into it), and a's kept ones. */
static int vres_keep(struct vres *r, struct vres *a, struct st_err *err)
{
	uint32_t need = r->nkept + a->nkept + 1;
	struct st_buf *k = realloc(r->kept, need * sizeof *k);
	if (!k)
		return st_seterr(err, ST_ENOMEM, "out of memory");
	r->kept = k;
	k[r->nkept++] = a->arena;
	for (uint32_t j = 0; j < a->nkept; j++)
		k[r->nkept++] = a->kept[j];
	a->arena = (struct st_buf){0};
	free(a->kept);
	a->kept = NULL;
	a->nkept = 0;
	return ST_OK;
}

static int vres_init(struct vres *r, uint8_t type, uint32_t n, struct st_err *err)
{
	memset(r, 0, sizeof *r);
	r->type = type;
	r->valid = calloc((size_t)n + 1, 1);
	bool ok = r->valid != NULL;
	if (type == ST_TYPE_FLOAT64)
		ok = ok && (r->f = calloc((size_t)n + 1, sizeof *r->f));
	else if (st_type_is_varlen(type))
		ok = ok && (r->sp = calloc((size_t)n + 1, sizeof *r->sp)) &&
		     (r->sl = calloc((size_t)n + 1, sizeof *r->sl));
	else
		ok = ok && (r->i = calloc((size_t)n + 1, sizeof *r->i));
	if (!ok) {
		vres_fini(r);
		return st_seterr(err, ST_ENOMEM, "out of memory");
	}
	return ST_OK;
}

static double vf(const struct vres *r, uint32_t i)
{
	return r->type == ST_TYPE_FLOAT64 ? r->f[i] : (double)r->i[i];
}

/* Value i of src into row i of dst (of a type src converts to without
 * loss: unify's result). */
static void vput(struct vres *dst, uint32_t i, const struct vres *src)
{
	dst->valid[i] = src->valid[i];
	if (!src->valid[i])
		return;
	if (dst->type == ST_TYPE_FLOAT64)
		dst->f[i] = vf(src, i);
	else if (st_type_is_varlen(dst->type)) {
		dst->sp[i] = src->sp[i];
		dst->sl[i] = src->sl[i];
	} else if (dst->type == ST_TYPE_TIMESTAMP && src->type == ST_TYPE_DATE)
		dst->i[i] = src->i[i] * 86400000000LL;
	else
		dst->i[i] = src->i[i];
}

static int eval_node(const struct node *nd, const struct st_vec *cols, uint32_t n, uint8_t *out,
		     struct st_err *err);

static int veval(const struct vnode *v, const struct st_vec *cols, uint32_t n, struct vres *r,
		 struct st_err *err);

/* Strings made by a CAST live in the arena: offsets first (it may move),
 * pointers fixed once it is complete. */
static int cast_to_string(const struct vres *a, uint32_t n, struct vres *r, struct st_err *err)
{
	uint32_t *off = calloc((size_t)n + 1, sizeof *off);
	if (!off)
		return st_seterr(err, ST_ENOMEM, "out of memory");
	for (uint32_t i = 0; i < n; i++) {
		char b[64];
		int len = 0;
		off[i] = (uint32_t)r->arena.len;
		if (vres_take_bad(r, n, i, a) != ST_OK) {
			free(off);
			return st_seterr(err, ST_ENOMEM, "out of memory");
		}
		if (!(r->valid[i] = a->valid[i]))
			continue;
		if (st_type_is_varlen(a->type)) {
			st_buf_append(&r->arena, a->sp[i], a->sl[i]);
			r->sl[i] = a->sl[i];
			continue;
		}
		if (a->type == ST_TYPE_FLOAT64) {
			len = snprintf(b, sizeof b, "%.15g", a->f[i]);
			if (strtod(b, NULL) != a->f[i])
				len = snprintf(b, sizeof b, "%.17g", a->f[i]);
		} else if (a->type == ST_TYPE_BOOL) {
			len = snprintf(b, sizeof b, "%s", a->i[i] ? "true" : "false");
		} else if (a->type == ST_TYPE_DATE || a->type == ST_TYPE_TIMESTAMP) {
			struct out o = {b, sizeof b, 0};
			struct st_value x = {.type = a->type};
			if (a->type == ST_TYPE_DATE)
				x.v.i32 = (int32_t)a->i[i];
			else
				x.v.i64 = a->i[i];
			emit_value(&o, &x);
			/* emit_value writes DATE '...' / TIMESTAMP '...': keep the inside */
			b[o.need < sizeof b ? o.need : sizeof b - 1] = '\0';
			char *q = strchr(b, '\'');
			if (q) {
				memmove(b, q + 1, strlen(q + 1) + 1);
				b[strlen(b) - 1] = '\0';
			}
			len = (int)strlen(b);
		} else {
			len = snprintf(b, sizeof b, "%" PRId64, a->i[i]);
		}
		st_buf_append(&r->arena, b, (size_t)len);
		r->sl[i] = (uint32_t)len;
	}
	off[n] = (uint32_t)r->arena.len;
	if (r->arena.oom) {
		free(off);
		return st_seterr(err, ST_ENOMEM, "out of memory");
	}
	for (uint32_t i = 0; i < n; i++)
		r->sp[i] = r->arena.data ? r->arena.data + off[i] : (const uint8_t *)"";
	free(off);
	return ST_OK;
}

static int cast_bad(struct vres *r, uint32_t n, const char *what, int to, uint32_t row,
		    struct st_err *err)
{
	char m[160];
	snprintf(m, sizeof m, "CAST: %s cannot become %s", what, st_type_name(to));
	return vres_fail(r, n, row, ST_ERANGE, m) == ST_OK ? ST_OK
							: st_seterr(err, ST_ENOMEM, "out of memory");
}

static int veval_cast(const struct vnode *v, const struct vres *a, uint32_t n, struct vres *r,
		      struct st_err *err)
{
	int to = v->type, from = a->type, rc;
	if (st_type_is_varlen(to))
		return cast_to_string(a, n, r, err);
	for (uint32_t i = 0; i < n; i++) {
		if (vres_take_bad(r, n, i, a) != ST_OK)
			return st_seterr(err, ST_ENOMEM, "out of memory");
		if (!(r->valid[i] = a->valid[i]))
			continue;
		if (to == ST_TYPE_FLOAT64) {
			if (st_type_is_varlen(from)) {
				char b[80], *end;
				uint32_t l = a->sl[i] < sizeof b - 1 ? a->sl[i] : sizeof b - 1;
				if (l)
					memcpy(b, a->sp[i], l);
				b[l] = '\0';
				r->f[i] = strtod(b, &end);
				if (!l || *end || a->sl[i] != l)
				{
					if ((rc = cast_bad(r, n, "a string that is not a number", to, i, err)))
						return rc;
					continue;
				}
			} else {
				r->f[i] = vf(a, i);
			}
			continue;
		}
		if (to == ST_TYPE_DATE || to == ST_TYPE_TIMESTAMP) {
			int64_t days, us;
			if (st_type_is_varlen(from)) {
				if (!st_parse_datetime((const char *)a->sp[i], a->sl[i], to == ST_TYPE_DATE,
						       &days, &us))
				{
					if ((rc = cast_bad(r, n, "a string that is not a date or timestamp", to, i,
							   err)))
						return rc;
					continue;
				}
				r->i[i] = to == ST_TYPE_DATE ? days : us;
			} else if (from == to) {
				r->i[i] = a->i[i];
			} else if (to == ST_TYPE_TIMESTAMP) {
				r->i[i] = a->i[i] * 86400000000LL;
			} else {
				int64_t d = a->i[i] / 86400000000LL;
				r->i[i] = a->i[i] % 86400000000LL < 0 ? d - 1 : d;
			}
			continue;
		}
		int64_t x;
		if (st_type_is_varlen(from)) {
			char b[80], *end;
			uint32_t l = a->sl[i] < sizeof b - 1 ? a->sl[i] : sizeof b - 1;
			if (l)
				memcpy(b, a->sp[i], l);
			b[l] = '\0';
			if (to == ST_TYPE_BOOL) {
				if (!strcasecmp(b, "true") || !strcmp(b, "1"))
					x = 1;
				else if (!strcasecmp(b, "false") || !strcmp(b, "0"))
					x = 0;
				else
				{
					if ((rc = cast_bad(r, n, "a string that is not a boolean", to, i, err)))
						return rc;
					continue;
				}
			} else {
				errno = 0;
				long long y = strtoll(b, &end, 10);
				if (!l || *end || errno || a->sl[i] != l)
				{
					if ((rc = cast_bad(r, n, "a string that is not an integer", to, i, err)))
						return rc;
					continue;
				}
				x = y;
			}
		} else if (from == ST_TYPE_FLOAT64) {
			double d = a->f[i];
			if (d != d || d < -9223372036854775808.0 || d >= 9223372036854775808.0)
			{
				if ((rc = cast_bad(r, n, "a number out of range", to, i, err)))
					return rc;
				continue;
			}
			x = (int64_t)d; /* toward zero */
		} else {
			x = a->i[i];
		}
		if (to == ST_TYPE_BOOL)
			x = x != 0;
		else if (to == ST_TYPE_INT32 && (x < INT32_MIN || x > INT32_MAX)) {
			if ((rc = cast_bad(r, n, "a number out of range", to, i, err)))
				return rc;
			continue;
		}
		r->i[i] = x;
	}
	return ST_OK;
}

static int veval_arith(const struct vnode *v, const struct vres *a, const struct vres *b,
		       uint32_t n, struct vres *r, struct st_err *err)
{
	bool fl = v->type == ST_TYPE_FLOAT64;
	for (uint32_t i = 0; i < n; i++) {
		if (vres_take_bad(r, n, i, a) != ST_OK || vres_take_bad(r, n, i, b) != ST_OK)
			return st_seterr(err, ST_ENOMEM, "out of memory");
		if (!(r->valid[i] = a->valid[i] && b->valid[i]))
			continue;
		if (fl) {
			double x = vf(a, i), y = vf(b, i), z = 0;
			switch (v->kind) {
			case V_ADD: z = x + y; break;
			case V_SUB: z = x - y; break;
			case V_MUL: z = x * y; break;
			case V_DIV: z = x / y; break;
			default: z = fmod(x, y); break;
			}
			if ((v->kind == V_DIV || v->kind == V_MOD) && y == 0)
				r->valid[i] = 0; /* x / 0 is NULL (SQLite, DuckDB) */
			r->f[i] = z;
			continue;
		}
		int64_t x = a->i[i], y = b->i[i], z = 0;
		bool over = false;
		switch (v->kind) {
		case V_ADD: over = __builtin_add_overflow(x, y, &z); break;
		case V_SUB: over = __builtin_sub_overflow(x, y, &z); break;
		case V_MUL: over = __builtin_mul_overflow(x, y, &z); break;
		case V_DIV:
		case V_MOD:
			if (y == 0) {
				r->valid[i] = 0;
				break;
			}
			if (y == -1) { /* INT64_MIN / -1 overflows; % -1 is 0 */
				over = v->kind == V_DIV && x == INT64_MIN;
				z = v->kind == V_DIV ? -x : 0;
				if (over)
					z = 0;
				break;
			}
			z = v->kind == V_DIV ? x / y : x % y; /* truncating, as SQL */
			break;
		default: break;
		}
		if (over) {
			if (vres_fail(r, n, i, ST_ERANGE, "integer overflow in arithmetic") != ST_OK)
				return st_seterr(err, ST_ENOMEM, "out of memory");
			continue;
		}
		r->i[i] = z;
	}
	return ST_OK;
}

static int veval(const struct vnode *v, const struct st_vec *cols, uint32_t n, struct vres *r,
		 struct st_err *err)
{
	int rc = vres_init(r, v->type, n, err);
	struct vres a = {0}, b = {0};
	uint8_t *cond = NULL, *done = NULL;
	if (rc != ST_OK)
		return rc;
	switch (v->kind) {
	case V_COL: {
		const struct st_vec *c = &cols[v->col];
		if (c->type != v->type || c->n < n) {
			rc = st_seterr(err, ST_EINVAL, "expression column %d is missing or of the wrong "
				       "type", v->col);
			break;
		}
		for (uint32_t i = 0; i < n; i++)
			r->valid[i] = st_vec_is_valid(c, i);
		switch (v->type) {
		case ST_TYPE_FLOAT64: memcpy(r->f, c->data, (size_t)n * 8); break;
		case ST_TYPE_INT64: case ST_TYPE_TIMESTAMP: memcpy(r->i, c->data, (size_t)n * 8); break;
		case ST_TYPE_INT32: case ST_TYPE_DATE:
			for (uint32_t i = 0; i < n; i++)
				r->i[i] = ((const int32_t *)c->data)[i];
			break;
		case ST_TYPE_BOOL:
			for (uint32_t i = 0; i < n; i++)
				r->i[i] = ((const uint8_t *)c->data)[i] != 0;
			break;
		default:
			for (uint32_t i = 0; i < n; i++)
				st_vec_str(c, i, &r->sp[i], &r->sl[i]);
		}
		break;
	}
	case V_LIT:
		for (uint32_t i = 0; i < n && v->type; i++) {
			r->valid[i] = 1;
			if (v->type == ST_TYPE_FLOAT64)
				r->f[i] = v->o.d;
			else if (st_type_is_varlen(v->type)) {
				r->sp[i] = (const uint8_t *)v->o.s;
				r->sl[i] = (uint32_t)v->o.slen;
			} else
				r->i[i] = v->o.i;
		}
		break;
	case V_NEG:
		if ((rc = veval(v->kids[0], cols, n, &a, err)) != ST_OK)
			break;
		for (uint32_t i = 0; i < n && v->type && rc == ST_OK; i++) {
			if (vres_take_bad(r, n, i, &a) != ST_OK)
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
			if (!(r->valid[i] = a.valid[i]))
				continue;
			if (v->type == ST_TYPE_FLOAT64)
				r->f[i] = -vf(&a, i);
			else if (a.i[i] == INT64_MIN &&
				 vres_fail(r, n, i, ST_ERANGE, "integer overflow in arithmetic") != ST_OK)
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
			else if (a.i[i] != INT64_MIN)
				r->i[i] = -a.i[i];
		}
		break;
	case V_ADD: case V_SUB: case V_MUL: case V_DIV: case V_MOD:
		if ((rc = veval(v->kids[0], cols, n, &a, err)) == ST_OK &&
		    (rc = veval(v->kids[1], cols, n, &b, err)) == ST_OK)
			rc = veval_arith(v, &a, &b, n, r, err);
		break;
	case V_CAST:
		if ((rc = veval(v->kids[0], cols, n, &a, err)) == ST_OK)
			rc = veval_cast(v, &a, n, r, err); /* strings are copied into r's arena */
		break;
	case V_COALESCE:
		for (uint32_t k = 0; k < v->nkids && rc == ST_OK; k++) {
			if ((rc = veval(v->kids[k], cols, n, &a, err)) != ST_OK)
				break;
			/* The first argument that is not NULL; one that is an error is
			 * the row's value (it was evaluated). */
			for (uint32_t i = 0; i < n && rc == ST_OK; i++) {
				if (r->valid[i] || (r->bad && r->bad[i]))
					continue;
				if (a.valid[i])
					vput(r, i, &a);
				else if (vres_take_bad(r, n, i, &a) != ST_OK)
					rc = st_seterr(err, ST_ENOMEM, "out of memory");
			}
			if (rc == ST_OK)
				rc = vres_keep(r, &a, err); /* strings may point into a's arena */
			vres_fini(&a);
		}
		break;
	case V_CASE:
		if (!(cond = malloc((size_t)n + 8)) || !(done = calloc((size_t)n + 1, 1))) {
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			break;
		}
		for (uint32_t k = 0; k < v->nkids && rc == ST_OK; k++) {
			bool els = k + 1 == v->nkids;
			if (els && !v->kids[k])
				break; /* no ELSE: NULL */
			if (!els && (rc = eval_node(v->whens[k], cols, n, cond, err)) != ST_OK)
				break;
			if ((rc = veval(v->kids[k], cols, n, &a, err)) != ST_OK)
				break;
			/* Only the rows that take this branch see its value, or its
			 * errors. */
			for (uint32_t i = 0; i < n && rc == ST_OK; i++)
				if (!done[i] && (els || cond[i] == 1)) {
					done[i] = 1;
					if (a.type)
						vput(r, i, &a);
					if (vres_take_bad(r, n, i, &a) != ST_OK)
						rc = st_seterr(err, ST_ENOMEM, "out of memory");
				}
			if (rc == ST_OK)
				rc = vres_keep(r, &a, err);
			vres_fini(&a);
		}
		break;
	}
	free(cond);
	free(done);
	vres_fini(&a);
	vres_fini(&b);
	if (rc != ST_OK)
		vres_fini(r);
	return rc;
}

static void vcolumns_of(const struct vnode *v, bool *used)
{
	if (!v)
		return;
	if (v->kind == V_COL)
		used[v->col] = true;
	for (uint32_t k = 0; k < v->nkids; k++) {
		vcolumns_of(v->kids[k], used);
		if (v->whens && k + 1 < v->nkids)
			columns_of(v->whens[k], used);
	}
}

/* Compare row i of a and b (both valid): <0, 0, >0, or 2 (NaN: unordered). */
static int vcmp(const struct vres *a, const struct vres *b, uint32_t i)
{
	if (st_type_is_varlen(a->type))
		return cmp_bytes(a->sp[i], a->sl[i], b->sp[i], b->sl[i]);
	if (a->type == ST_TYPE_FLOAT64 || b->type == ST_TYPE_FLOAT64) {
		double x = vf(a, i), y = vf(b, i);
		return x != x || y != y ? 2 : (x > y) - (x < y);
	}
	int64_t x = a->i[i], y = b->i[i];
	if (a->type == ST_TYPE_DATE && b->type == ST_TYPE_TIMESTAMP)
		x *= 86400000000LL;
	else if (b->type == ST_TYPE_DATE && a->type == ST_TYPE_TIMESTAMP)
		y *= 86400000000LL;
	return (x > y) - (x < y);
}

static int eval_value_node(const struct node *nd, const struct st_vec *cols, uint32_t n,
			   uint8_t *out, struct st_err *err)
{
	struct vres a = {0}, b = {0};
	int rc = veval(nd->va, cols, n, &a, err);
	if (rc == ST_OK)
		rc = vres_error(&a, n, NULL, err);
	if (rc == ST_OK && nd->kind == N_VISNULL) {
		for (uint32_t i = 0; i < n; i++)
			out[i] = !a.valid[i];
	} else if (rc == ST_OK && (rc = veval(nd->vb, cols, n, &b, err)) == ST_OK &&
		   (rc = vres_error(&b, n, NULL, err)) == ST_OK) {
		for (uint32_t i = 0; i < n; i++) {
			if (!a.valid[i] || !b.valid[i]) {
				out[i] = 2;
				continue;
			}
			int c = vcmp(&a, &b, i);
			out[i] = c == 2 ? nd->op == CMP_NE : apply(nd->op, c);
		}
	}
	vres_fini(&a);
	vres_fini(&b);
	return rc;
}

static void format_vnode(struct out *o, const struct vnode *v, const struct st_schema *s)
{
	static const char *const ar[] = {[V_ADD] = " + ", [V_SUB] = " - ", [V_MUL] = " * ",
					 [V_DIV] = " / ", [V_MOD] = " % "};
	char b[64];
	switch (v->kind) {
	case V_COL:
		emit_col(o, s, v->col);
		return;
	case V_LIT:
		switch (v->o.lk) {
		case L_INT:
			snprintf(b, sizeof b, "%" PRId64, v->o.i);
			emits(o, b);
			return;
		case L_DEC:
			snprintf(b, sizeof b, "%.17g", v->o.d);
			if (!strpbrk(b, ".eEn"))
				strcat(b, ".0");
			emits(o, b);
			return;
		case L_NULL:
			emits(o, "NULL");
			return;
		default: {
			struct st_value x = {.type = v->type};
			if (v->type == ST_TYPE_DATE)
				x.v.i32 = (int32_t)v->o.i;
			else if (v->type == ST_TYPE_BOOL)
				x.v.b = v->o.i != 0;
			else if (st_type_is_varlen(v->type)) {
				x.v.s.ptr = (const uint8_t *)v->o.s;
				x.v.s.len = (uint32_t)v->o.slen;
			} else
				x.v.i64 = v->o.i;
			emit_value(o, &x);
			return;
		}
		}
	case V_NEG:
		emits(o, "(-");
		format_vnode(o, v->kids[0], s);
		emits(o, ")");
		return;
	case V_CASE:
		emits(o, "CASE");
		for (uint32_t k = 0; k + 1 < v->nkids; k++) {
			emits(o, " WHEN ");
			format_node(o, v->whens[k], s);
			emits(o, " THEN ");
			format_vnode(o, v->kids[k], s);
		}
		if (v->kids[v->nkids - 1]) {
			emits(o, " ELSE ");
			format_vnode(o, v->kids[v->nkids - 1], s);
		}
		emits(o, " END");
		return;
	case V_COALESCE:
	case V_CAST:
		emits(o, v->kind == V_CAST ? "CAST(" : "COALESCE(");
		for (uint32_t k = 0; k < v->nkids; k++) {
			if (k)
				emits(o, ", ");
			format_vnode(o, v->kids[k], s);
		}
		if (v->kind == V_CAST) {
			emits(o, " AS ");
			emits(o, st_type_name(v->type));
		}
		emits(o, ")");
		return;
	default:
		emits(o, "(");
		format_vnode(o, v->kids[0], s);
		emits(o, ar[v->kind]);
		format_vnode(o, v->kids[1], s);
		emits(o, ")");
		return;
	}
}

/* ---- UPDATE's SET list ---------------------------------------------------- */

struct assign_item {
	int col;                  /* schema column index */
	struct st_field field;    /* a copy of the column (name, type, nullable) */
	struct vnode *v;          /* its new value */
};

struct expr_assign {
	uint32_t n;
	struct assign_item *items;
};

void expr_assign_free(struct expr_assign *a)
{
	if (!a)
		return;
	for (uint32_t i = 0; i < a->n; i++)
		vnode_free(a->items[i].v);
	free(a->items);
	free(a);
}

/* Whether value v may be stored in column f (expr.h). */
static bool assign_ok(struct parser *p, const struct st_field *f, struct vnode *v, size_t at)
{
	int t = f->type;
	char m[ST_NAME_MAX + 160];
	if ((t == ST_TYPE_DATE || t == ST_TYPE_TIMESTAMP) && !lit_to_temporal(p, v, t))
		return false;
	int vt = v->type;
	bool ok = !vt || vt == t || (t == ST_TYPE_INT64 && vt == ST_TYPE_INT32) ||
		  (t == ST_TYPE_INT32 && vt == ST_TYPE_INT64) ||
		  (t == ST_TYPE_FLOAT64 && (vt == ST_TYPE_INT32 || vt == ST_TYPE_INT64)) ||
		  (t == ST_TYPE_TIMESTAMP && vt == ST_TYPE_DATE) ||
		  (st_type_is_varlen(t) && st_type_is_varlen(vt));
	p->t.off = at;
	p->t.len = strlen(f->name);
	p->t.kind = T_IDENT; /* the message points at the column */
	if (!vt && !f->nullable) {
		snprintf(m, sizeof m, "column '%s' is NOT NULL: it cannot be set to NULL", f->name);
		return perr(p, ST_ESCHEMA, m), false;
	}
	if (!ok) {
		snprintf(m, sizeof m, "column '%s' is %s; the value is %s%s", f->name, st_type_name(t),
			 vtype_name(vt), vt == ST_TYPE_FLOAT64 && st_type_is_integer(t)
					     ? " (use CAST to truncate it)" : "");
		return perr(p, ST_ETYPE, m), false;
	}
	return true;
}

int expr_assign_parse(const char *text, const struct st_schema *schema,
		      struct expr_assign **out, struct st_err *err)
{
	struct parser p = {.text = text, .schema = schema, .err = err};
	struct expr_assign *a = calloc(1, sizeof *a);
	*out = NULL;
	if (!a)
		return st_seterr(err, ST_ENOMEM, "out of memory");
	if (strlen(text) > EXPR_TEXT_MAX) {
		free(a);
		return st_seterr(err, ST_ETOOBIG, "SET list longer than %d bytes", EXPR_TEXT_MAX);
	}
	next(&p);
	if (p.rc == ST_OK && p.t.kind == T_END)
		perr(&p, ST_ESYNTAX, "empty SET list: expected column = value");
	while (p.rc == ST_OK) {
		size_t at = p.t.off;
		const char *name = text + p.t.off;
		size_t len = p.t.len;
		if (p.t.kind == T_QIDENT) {
			name++;
			len -= 2;
		} else if (p.t.kind != T_IDENT) {
			perr(&p, ST_ESYNTAX, "expected a column name");
			break;
		}
		int c = st_schema_find(schema, name, len);
		if (c < 0) {
			perr(&p, ST_ETYPE, "unknown column");
			break;
		}
		for (uint32_t i = 0; i < a->n; i++)
			if (a->items[i].col == c) {
				perr(&p, ST_ESYNTAX, "column set twice");
				break;
			}
		if (p.rc != ST_OK)
			break;
		next(&p);
		if (!is_op(&p, "=")) {
			perr(&p, ST_ESYNTAX, "expected '=' after the column name");
			break;
		}
		next(&p);
		struct vnode *v = parse_vsum(&p);
		if (!v)
			break;
		struct assign_item *g = realloc(a->items, (a->n + 1) * sizeof *g);
		if (!g) {
			vnode_free(v);
			perr(&p, ST_ENOMEM, "out of memory");
			break;
		}
		a->items = g;
		a->items[a->n++] = (struct assign_item){c, schema->fields[c], v};
		struct parser here = p;
		if (!assign_ok(&p, &schema->fields[c], v, at))
			break;
		p = here;
		if (p.t.kind == T_COMMA) {
			next(&p);
			continue;
		}
		if (p.t.kind != T_END)
			perr(&p, ST_ESYNTAX, "expected ',' or the end of the SET list");
		break;
	}
	if (p.rc != ST_OK) {
		expr_assign_free(a);
		return p.rc;
	}
	*out = a;
	return ST_OK;
}

uint32_t expr_assign_count(const struct expr_assign *a)
{
	return a->n;
}

int expr_assign_column(const struct expr_assign *a, uint32_t i)
{
	return a->items[i].col;
}

void expr_assign_columns(const struct expr_assign *a, bool *used)
{
	for (uint32_t i = 0; i < a->n; i++)
		vcolumns_of(a->items[i].v, used);
}

int expr_assign_eval(const struct expr_assign *a, uint32_t i, const struct st_vec *cols,
		     uint32_t n, struct st_vec *out, void *bufs[3], uint32_t *bad_row,
		     struct st_err *err)
{
	const struct assign_item *x = &a->items[i];
	const struct st_field *f = &x->field;
	int t = f->type;
	struct vres r;
	bufs[0] = bufs[1] = bufs[2] = NULL;
	*bad_row = 0;
	memset(out, 0, sizeof *out);
	int rc = veval(x->v, cols, n, &r, err);
	if (rc != ST_OK)
		return rc;
	if ((rc = vres_error(&r, n, bad_row, err)) != ST_OK) {
		vres_fini(&r);
		return rc;
	}
	uint8_t *valid = calloc((size_t)n / 8 + 1, 1);
	bufs[0] = valid;
	size_t w = st_type_width(t);
	if (!valid || (w && !(bufs[1] = calloc((size_t)n + 1, w)))) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	size_t total = 0;
	for (uint32_t k = 0; k < n; k++) {
		if (r.valid[k]) {
			valid[k >> 3] |= (uint8_t)(1u << (k & 7));
			if (!w)
				total += r.sl[k];
		} else if (!f->nullable) {
			*bad_row = k;
			rc = st_seterr(err, ST_ESCHEMA, "column '%s' is NOT NULL; the new value is NULL",
				       f->name);
			goto out;
		}
	}
	if (!w) {
		uint32_t *offs = malloc(((size_t)n + 1) * sizeof *offs);
		uint8_t *bytes = malloc(total + 1);
		bufs[1] = offs;
		bufs[2] = bytes;
		if (!offs || !bytes || total > UINT32_MAX) {
			rc = st_seterr(err, total > UINT32_MAX ? ST_ETOOBIG : ST_ENOMEM,
				       "the new values of column '%s' are too big", f->name);
			goto out;
		}
		offs[0] = 0;
		for (uint32_t k = 0; k < n; k++) {
			uint32_t l = r.valid[k] ? r.sl[k] : 0;
			if (l)
				memcpy(bytes + offs[k], r.sp[k], l);
			offs[k + 1] = offs[k] + l;
		}
		*out = (struct st_vec){.type = (uint8_t)t, .n = n, .validity = valid, .offsets = offs,
				       .bytes = bytes};
		goto out;
	}
	void *d = bufs[1];
	for (uint32_t k = 0; k < n; k++) {
		if (!r.valid[k])
			continue;
		switch (t) {
		case ST_TYPE_FLOAT64:
			((double *)d)[k] = vf(&r, k);
			break;
		case ST_TYPE_INT32:
			if (r.i[k] < INT32_MIN || r.i[k] > INT32_MAX) {
				*bad_row = k;
				rc = st_seterr(err, ST_ERANGE, "the new value %" PRId64 " of column '%s' is "
					       "out of the int32 range", r.i[k], f->name);
				goto out;
			}
			((int32_t *)d)[k] = (int32_t)r.i[k];
			break;
		case ST_TYPE_DATE:
			((int32_t *)d)[k] = (int32_t)r.i[k];
			break;
		case ST_TYPE_TIMESTAMP:
			((int64_t *)d)[k] = r.type == ST_TYPE_DATE ? r.i[k] * 86400000000LL : r.i[k];
			break;
		case ST_TYPE_BOOL:
			((uint8_t *)d)[k] = r.i[k] != 0;
			break;
		default:
			((int64_t *)d)[k] = r.i[k];
		}
	}
	*out = (struct st_vec){.type = (uint8_t)t, .n = n, .validity = valid, .data = d};
out:
	vres_fini(&r);
	if (rc != ST_OK) {
		for (int k = 0; k < 3; k++) {
			free(bufs[k]);
			bufs[k] = NULL;
		}
	}
	return rc;
}

size_t expr_assign_format(const struct expr_assign *a, const struct st_schema *schema,
			  char *buf, size_t len)
{
	struct out o = {buf, len, 0};
	for (uint32_t i = 0; i < a->n; i++) {
		if (i)
			emits(&o, ", ");
		emit_col(&o, schema, a->items[i].col);
		emits(&o, " = ");
		format_vnode(&o, a->items[i].v, schema);
	}
	if (len)
		buf[o.need < len ? o.need : len - 1] = '\0';
	return o.need;
}
