/*
 * format/expr_value.c — value expressions (expr.h): arithmetic, CASE,
 * COALESCE and CAST over columns and literals. Parsed by the predicate
 * parser of expr.c (parse_side), typed at parse time, evaluated a batch
 * at a time into struct vres (expr_int.h).
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

void ex_vnode_free(struct vnode *v)
{
	if (!v)
		return;
	for (uint32_t k = 0; k < v->nkids; k++)
		ex_vnode_free(v->kids[k]);
	for (uint32_t k = 0; v->whens && k + 1 < v->nkids; k++)
		ex_node_free(v->whens[k]);
	free(v->kids);
	free(v->whens);
	free(v->o.s);
	free(v);
}

struct vnode *ex_vnode_clone(struct parser *p, const struct vnode *v)
{
	struct vnode *c = calloc(1, sizeof *c);
	if (!c) {
		ex_perr(p, ST_ENOMEM, "out of memory");
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
			if (v->kids[k] && !(c->kids[k] = ex_vnode_clone(p, v->kids[k])))
				goto fail;
			if (v->whens && k + 1 < v->nkids && !(c->whens[k] = ex_node_clone(p, v->whens[k])))
				goto fail;
		}
	}
	return c;
oom:
	ex_perr(p, ST_ENOMEM, "out of memory");
fail:
	ex_vnode_free(c);
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

const char *ex_vtype_name(int t)
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
		ex_perr(p, ST_ENOMEM, "out of memory");
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
bool ex_lit_to_temporal(struct parser *p, struct vnode *v, int type)
{
	if (v->kind != V_LIT || v->o.lk != L_STR)
		return true;
	int64_t days, us;
	if (!st_parse_datetime(v->o.s, v->o.slen, type == ST_TYPE_DATE, &days, &us))
		return ex_perr(p, ST_ETYPE, type == ST_TYPE_DATE ? "string is not a date 'YYYY-MM-DD'"
							      : "string is not a timestamp"), false;
	v->o.lk = type == ST_TYPE_DATE ? L_DATE : L_TS;
	v->o.i = type == ST_TYPE_DATE ? days : us;
	v->type = (uint8_t)type;
	return true;
}

struct vnode *ex_vfrom_operand(struct parser *p, struct operand *o)
{
	struct vnode *v = vnew(p, o->col >= 0 ? V_COL : V_LIT, 0, 0);
	if (!v) {
		ex_operand_fini(o);
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
	ex_next(p);
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
	ex_next(p);
	while (ex_is_kw(p, "WHEN")) {
		ex_next(p);
		if (v->nkids + 2 > cap) {
			cap = cap ? cap * 2 : 4;
			struct vnode **k = realloc(v->kids, cap * sizeof *k);
			struct node **w = k ? realloc(v->whens, cap * sizeof *w) : NULL;
			if (k)
				v->kids = k;
			if (w)
				v->whens = w;
			if (!k || !w) {
				ex_perr(p, ST_ENOMEM, "out of memory");
				goto fail;
			}
		}
		struct node *cond = ex_parse_or(p);
		if (!cond)
			goto fail;
		v->whens[v->nkids] = cond;
		v->kids[v->nkids] = NULL;
		v->nkids++; /* counted now so that vnode_free frees cond */
		if (!ex_is_kw(p, "THEN")) {
			ex_perr(p, ST_ESYNTAX, "expected THEN");
			goto fail;
		}
		ex_next(p);
		if (!(v->kids[v->nkids - 1] = ex_parse_vsum(p)))
			goto fail;
		if ((type = unify(type, v->kids[v->nkids - 1]->type)) < 0) {
			ex_perr(p, ST_ETYPE, "CASE branches have different types");
			goto fail;
		}
	}
	if (!v->nkids) {
		ex_perr(p, ST_ESYNTAX, "expected WHEN after CASE");
		goto fail;
	}
	/* The ELSE value is the last kid; whens has one fewer entries. */
	struct vnode *els = NULL;
	if (ex_is_kw(p, "ELSE")) {
		ex_next(p);
		if (!(els = ex_parse_vsum(p)))
			goto fail;
		if ((type = unify(type, els->type)) < 0) {
			ex_vnode_free(els);
			ex_perr(p, ST_ETYPE, "CASE branches have different types");
			goto fail;
		}
	}
	if (!ex_is_kw(p, "END")) {
		ex_vnode_free(els);
		ex_perr(p, ST_ESYNTAX, "expected END");
		goto fail;
	}
	ex_next(p);
	v->kids[v->nkids++] = els; /* cap >= nkids + 2 held before the last WHEN */
	v->type = (uint8_t)type;
	return v;
fail:
	/* whens[k] pairs with kids[k] for k < nkids here: free them alike. */
	if (v->kids && v->nkids) {
		v->kids = realloc(v->kids, (v->nkids + 1) * sizeof *v->kids) ?: v->kids;
		v->kids[v->nkids++] = NULL;
	}
	ex_vnode_free(v);
	return NULL;
}

static struct vnode *parse_vprimary(struct parser *p)
{
	if (p->t.kind == T_LP) {
		ex_next(p);
		struct vnode *v = ex_parse_vsum(p);
		if (v && p->t.kind != T_RP) {
			ex_perr(p, ST_ESYNTAX, "expected ')'");
			ex_vnode_free(v);
			return NULL;
		}
		ex_next(p);
		return v;
	}
	if (ex_is_kw(p, "CASE") && peek_kind(p, T_IDENT))
		return parse_case(p);
	bool coalesce = ex_is_kw(p, "COALESCE"), cast = ex_is_kw(p, "CAST");
	if ((coalesce || cast) && peek_kind(p, T_LP)) {
		ex_next(p);
		ex_next(p);
		struct vnode *v = vnew(p, coalesce ? V_COALESCE : V_CAST, 0, 0);
		int type = 0;
		if (!v)
			return NULL;
		for (;;) {
			struct vnode *a = ex_parse_vsum(p), **k;
			if (!a)
				goto fail;
			if (!(k = realloc(v->kids, (v->nkids + 1) * sizeof *k))) {
				ex_vnode_free(a);
				ex_perr(p, ST_ENOMEM, "out of memory");
				goto fail;
			}
			v->kids = k;
			v->kids[v->nkids++] = a;
			if (coalesce && (type = unify(type, a->type)) < 0) {
				ex_perr(p, ST_ETYPE, "COALESCE arguments have different types");
				goto fail;
			}
			if (coalesce && p->t.kind == T_COMMA) {
				ex_next(p);
				continue;
			}
			break;
		}
		if (cast) {
			if (!ex_is_kw(p, "AS")) {
				ex_perr(p, ST_ESYNTAX, "expected AS in CAST");
				goto fail;
			}
			ex_next(p);
			int to = p->t.kind == T_IDENT ? st_type_from_name(p->text + p->t.off, p->t.len) : -1;
			int from = v->kids[0]->type;
			if (to <= 0) {
				ex_perr(p, ST_ESYNTAX, "expected a type name");
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
				snprintf(m, sizeof m, "cannot cast %s to %s", ex_vtype_name(from),
					 st_type_name(to));
				ex_perr(p, ST_ETYPE, m);
				goto fail;
			}
			type = to;
			ex_next(p);
		}
		if (p->t.kind != T_RP) {
			ex_perr(p, ST_ESYNTAX, coalesce ? "expected ',' or ')'" : "expected ')'");
			goto fail;
		}
		ex_next(p);
		v->type = (uint8_t)type;
		return v;
	fail:
		ex_vnode_free(v);
		return NULL;
	}
	struct operand o;
	if (!ex_parse_operand(p, &o)) {
		ex_operand_fini(&o);
		return NULL;
	}
	return ex_vfrom_operand(p, &o);
}

static struct vnode *parse_vunary(struct parser *p)
{
	if (++p->depth > EXPR_DEPTH_MAX) {
		ex_perr(p, ST_ETOOBIG, "expression nested too deeply");
		return NULL;
	}
	struct vnode *v;
	if (ex_is_op(p, "-") && !peek_kind(p, T_NUM)) {
		size_t at = p->t.off;
		ex_next(p);
		struct vnode *a = parse_vunary(p);
		v = a ? vnew(p, V_NEG, 0, 1) : NULL;
		if (v) {
			v->kids[0] = a;
			if (!num_type(a->type)) {
				p->t.off = at;
				ex_perr(p, ST_ETYPE, "'-' needs a number");
				ex_vnode_free(v);
				v = NULL;
			} else {
				v->type = a->type ? (a->type == ST_TYPE_FLOAT64 ? ST_TYPE_FLOAT64 : ST_TYPE_INT64)
						  : 0;
			}
		} else {
			ex_vnode_free(a);
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
		ex_vnode_free(a);
		ex_vnode_free(b);
		return NULL;
	}
	if (!num_type(a->type) || !num_type(b->type)) {
		char m[128];
		snprintf(m, sizeof m, "arithmetic needs numbers, not %s and %s", ex_vtype_name(a->type),
			 ex_vtype_name(b->type));
		p->t.off = at;
		p->t.len = 1;
		ex_perr(p, ST_ETYPE, m);
		ex_vnode_free(a);
		ex_vnode_free(b);
		return NULL;
	}
	struct vnode *v = vnew(p, k, a->type == ST_TYPE_FLOAT64 || b->type == ST_TYPE_FLOAT64
				     ? ST_TYPE_FLOAT64 : ST_TYPE_INT64, 2);
	if (!v) {
		ex_vnode_free(a);
		ex_vnode_free(b);
		return NULL;
	}
	v->kids[0] = a;
	v->kids[1] = b;
	return v;
}

static struct vnode *parse_vterm(struct parser *p)
{
	struct vnode *v = parse_vunary(p);
	while (v && (ex_is_op(p, "*") || ex_is_op(p, "/") || ex_is_op(p, "%"))) {
		enum vkind k = ex_is_op(p, "*") ? V_MUL : ex_is_op(p, "/") ? V_DIV : V_MOD;
		size_t at = p->t.off;
		ex_next(p);
		v = varith(p, k, v, parse_vunary(p), at);
	}
	return v;
}

struct vnode *ex_parse_vsum(struct parser *p)
{
	if (++p->depth > EXPR_DEPTH_MAX) {
		ex_perr(p, ST_ETOOBIG, "expression nested too deeply");
		return NULL;
	}
	struct vnode *v = parse_vterm(p);
	while (v && (ex_is_op(p, "+") || ex_is_op(p, "-"))) {
		enum vkind k = ex_is_op(p, "+") ? V_ADD : V_SUB;
		size_t at = p->t.off;
		ex_next(p);
		v = varith(p, k, v, parse_vterm(p), at);
	}
	p->depth--;
	return v;
}

/* One side of a comparison: a plain operand into *o (*v NULL), or a value
 * expression into *v. */
bool ex_parse_side(struct parser *p, struct operand *o, struct vnode **v)
{
	memset(o, 0, sizeof *o);
	o->col = -1;
	*v = NULL;
	size_t start = p->t.off;
	struct vnode *x = ex_parse_vsum(p);
	if (!x)
		return false;
	if (x->kind == V_COL || x->kind == V_LIT) {
		*o = x->o;
		o->col = x->col;
		x->o.s = NULL;
		ex_vnode_free(x);
	} else {
		*v = x;
	}
	o->off = start;
	o->len = p->t.off - start;
	return true;
}

struct vnode *ex_vfrom_side(struct parser *p, struct operand *o, struct vnode **v)
{
	struct vnode *x = *v;
	*v = NULL;
	return x ? x : ex_vfrom_operand(p, o);
}

/* Comparison a op b of value expressions (either may be a plain operand). */
struct node *ex_make_cmpv(struct parser *p, struct vnode *a, enum cmp_op op, struct vnode *b)
{
	struct node *n = NULL;
	if (!a || !b)
		goto out;
	int ta = a->type, tb = b->type;
	bool tmp_a = ta == ST_TYPE_DATE || ta == ST_TYPE_TIMESTAMP;
	bool tmp_b = tb == ST_TYPE_DATE || tb == ST_TYPE_TIMESTAMP;
	if (tmp_a && !ex_lit_to_temporal(p, b, ta))
		goto out;
	if (tmp_b && !ex_lit_to_temporal(p, a, tb))
		goto out;
	ta = a->type;
	tb = b->type;
	if (!ta || !tb) {
		n = ex_node_const(p, 2);
		goto out;
	}
	bool ok = (num_type(ta) && num_type(tb)) || ta == tb ||
		  (st_type_is_varlen(ta) && st_type_is_varlen(tb)) ||
		  ((ta == ST_TYPE_DATE || ta == ST_TYPE_TIMESTAMP) &&
		   (tb == ST_TYPE_DATE || tb == ST_TYPE_TIMESTAMP));
	if (!ok) {
		char m[128];
		snprintf(m, sizeof m, "cannot compare %s with %s", st_type_name(ta), st_type_name(tb));
		ex_perr(p, ST_ETYPE, m);
		goto out;
	}
	if ((n = ex_node_new(p, N_CMPV))) {
		n->op = op;
		n->va = a;
		n->vb = b;
		return n;
	}
out:
	ex_vnode_free(a);
	ex_vnode_free(b);
	return n;
}

/* Evaluation. */

void ex_vres_fini(struct vres *r)
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
int ex_vres_error(const struct vres *r, uint32_t n, uint32_t *row, struct st_err *err)
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
		ex_vres_fini(r);
		return st_seterr(err, ST_ENOMEM, "out of memory");
	}
	return ST_OK;
}

double ex_vf(const struct vres *r, uint32_t i)
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
		dst->f[i] = ex_vf(src, i);
	else if (st_type_is_varlen(dst->type)) {
		dst->sp[i] = src->sp[i];
		dst->sl[i] = src->sl[i];
	} else if (dst->type == ST_TYPE_TIMESTAMP && src->type == ST_TYPE_DATE)
		dst->i[i] = src->i[i] * 86400000000LL;
	else
		dst->i[i] = src->i[i];
}

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
			ex_emit_value(&o, &x);
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
				r->f[i] = ex_vf(a, i);
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
			double x = ex_vf(a, i), y = ex_vf(b, i), z = 0;
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

int ex_veval(const struct vnode *v, const struct st_vec *cols, uint32_t n, struct vres *r,
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
		if ((rc = ex_veval(v->kids[0], cols, n, &a, err)) != ST_OK)
			break;
		for (uint32_t i = 0; i < n && v->type && rc == ST_OK; i++) {
			if (vres_take_bad(r, n, i, &a) != ST_OK)
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
			if (!(r->valid[i] = a.valid[i]))
				continue;
			if (v->type == ST_TYPE_FLOAT64)
				r->f[i] = -ex_vf(&a, i);
			else if (a.i[i] == INT64_MIN &&
				 vres_fail(r, n, i, ST_ERANGE, "integer overflow in arithmetic") != ST_OK)
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
			else if (a.i[i] != INT64_MIN)
				r->i[i] = -a.i[i];
		}
		break;
	case V_ADD: case V_SUB: case V_MUL: case V_DIV: case V_MOD:
		if ((rc = ex_veval(v->kids[0], cols, n, &a, err)) == ST_OK &&
		    (rc = ex_veval(v->kids[1], cols, n, &b, err)) == ST_OK)
			rc = veval_arith(v, &a, &b, n, r, err);
		break;
	case V_CAST:
		if ((rc = ex_veval(v->kids[0], cols, n, &a, err)) == ST_OK)
			rc = veval_cast(v, &a, n, r, err); /* strings are copied into r's arena */
		break;
	case V_COALESCE:
		for (uint32_t k = 0; k < v->nkids && rc == ST_OK; k++) {
			if ((rc = ex_veval(v->kids[k], cols, n, &a, err)) != ST_OK)
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
			ex_vres_fini(&a);
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
			if (!els && (rc = ex_eval_node(v->whens[k], cols, n, cond, err)) != ST_OK)
				break;
			if ((rc = ex_veval(v->kids[k], cols, n, &a, err)) != ST_OK)
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
			ex_vres_fini(&a);
		}
		break;
	}
	free(cond);
	free(done);
	ex_vres_fini(&a);
	ex_vres_fini(&b);
	if (rc != ST_OK)
		ex_vres_fini(r);
	return rc;
}

void ex_vcolumns_of(const struct vnode *v, bool *used)
{
	if (!v)
		return;
	if (v->kind == V_COL)
		used[v->col] = true;
	for (uint32_t k = 0; k < v->nkids; k++) {
		ex_vcolumns_of(v->kids[k], used);
		if (v->whens && k + 1 < v->nkids)
			ex_columns_of(v->whens[k], used);
	}
}

/* Compare row i of a and b (both valid): <0, 0, >0, or 2 (NaN: unordered). */
static int vcmp(const struct vres *a, const struct vres *b, uint32_t i)
{
	if (st_type_is_varlen(a->type))
		return cmp_bytes(a->sp[i], a->sl[i], b->sp[i], b->sl[i]);
	if (a->type == ST_TYPE_FLOAT64 || b->type == ST_TYPE_FLOAT64) {
		double x = ex_vf(a, i), y = ex_vf(b, i);
		return x != x || y != y ? 2 : (x > y) - (x < y);
	}
	int64_t x = a->i[i], y = b->i[i];
	if (a->type == ST_TYPE_DATE && b->type == ST_TYPE_TIMESTAMP)
		x *= 86400000000LL;
	else if (b->type == ST_TYPE_DATE && a->type == ST_TYPE_TIMESTAMP)
		y *= 86400000000LL;
	return (x > y) - (x < y);
}

int ex_eval_value_node(const struct node *nd, const struct st_vec *cols, uint32_t n,
			   uint8_t *out, struct st_err *err)
{
	struct vres a = {0}, b = {0};
	int rc = ex_veval(nd->va, cols, n, &a, err);
	if (rc == ST_OK)
		rc = ex_vres_error(&a, n, NULL, err);
	if (rc == ST_OK && nd->kind == N_VISNULL) {
		for (uint32_t i = 0; i < n; i++)
			out[i] = !a.valid[i];
	} else if (rc == ST_OK && (rc = ex_veval(nd->vb, cols, n, &b, err)) == ST_OK &&
		   (rc = ex_vres_error(&b, n, NULL, err)) == ST_OK) {
		for (uint32_t i = 0; i < n; i++) {
			if (!a.valid[i] || !b.valid[i]) {
				out[i] = 2;
				continue;
			}
			int c = vcmp(&a, &b, i);
			out[i] = c == 2 ? nd->op == CMP_NE : apply(nd->op, c);
		}
	}
	ex_vres_fini(&a);
	ex_vres_fini(&b);
	return rc;
}

void ex_format_vnode(struct out *o, const struct vnode *v, const struct st_schema *s)
{
	static const char *const ar[] = {[V_ADD] = " + ", [V_SUB] = " - ", [V_MUL] = " * ",
					 [V_DIV] = " / ", [V_MOD] = " % "};
	char b[64];
	switch (v->kind) {
	case V_COL:
		ex_emit_col(o, s, v->col);
		return;
	case V_LIT:
		switch (v->o.lk) {
		case L_INT:
			snprintf(b, sizeof b, "%" PRId64, v->o.i);
			ex_emits(o, b);
			return;
		case L_DEC:
			snprintf(b, sizeof b, "%.17g", v->o.d);
			if (!strpbrk(b, ".eEn"))
				strcat(b, ".0");
			ex_emits(o, b);
			return;
		case L_NULL:
			ex_emits(o, "NULL");
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
			ex_emit_value(o, &x);
			return;
		}
		}
	case V_NEG:
		ex_emits(o, "(-");
		ex_format_vnode(o, v->kids[0], s);
		ex_emits(o, ")");
		return;
	case V_CASE:
		ex_emits(o, "CASE");
		for (uint32_t k = 0; k + 1 < v->nkids; k++) {
			ex_emits(o, " WHEN ");
			ex_format_node(o, v->whens[k], s);
			ex_emits(o, " THEN ");
			ex_format_vnode(o, v->kids[k], s);
		}
		if (v->kids[v->nkids - 1]) {
			ex_emits(o, " ELSE ");
			ex_format_vnode(o, v->kids[v->nkids - 1], s);
		}
		ex_emits(o, " END");
		return;
	case V_COALESCE:
	case V_CAST:
		ex_emits(o, v->kind == V_CAST ? "CAST(" : "COALESCE(");
		for (uint32_t k = 0; k < v->nkids; k++) {
			if (k)
				ex_emits(o, ", ");
			ex_format_vnode(o, v->kids[k], s);
		}
		if (v->kind == V_CAST) {
			ex_emits(o, " AS ");
			ex_emits(o, st_type_name(v->type));
		}
		ex_emits(o, ")");
		return;
	default:
		ex_emits(o, "(");
		ex_format_vnode(o, v->kids[0], s);
		ex_emits(o, ar[v->kind]);
		ex_format_vnode(o, v->kids[1], s);
		ex_emits(o, ")");
		return;
	}
}
