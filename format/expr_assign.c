/*
 * format/expr_assign.c — UPDATE's SET list (expr.h): parsing against the
 * schema, per-column evaluation into a vector, formatting.
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
		ex_vnode_free(a->items[i].v);
	free(a->items);
	free(a);
}

/* Whether value v may be stored in column f (expr.h). */
static bool assign_ok(struct parser *p, const struct st_field *f, struct vnode *v, size_t at)
{
	int t = f->type;
	char m[ST_NAME_MAX + 160];
	if ((t == ST_TYPE_DATE || t == ST_TYPE_TIMESTAMP) && !ex_lit_to_temporal(p, v, t))
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
		return ex_perr(p, ST_ESCHEMA, m), false;
	}
	if (!ok) {
		snprintf(m, sizeof m, "column '%s' is %s; the value is %s%s", f->name, st_type_name(t),
			 ex_vtype_name(vt), vt == ST_TYPE_FLOAT64 && st_type_is_integer(t)
					     ? " (use CAST to truncate it)" : "");
		return ex_perr(p, ST_ETYPE, m), false;
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
	ex_next(&p);
	if (p.rc == ST_OK && p.t.kind == T_END)
		ex_perr(&p, ST_ESYNTAX, "empty SET list: expected column = value");
	while (p.rc == ST_OK) {
		size_t at = p.t.off;
		const char *name = text + p.t.off;
		size_t len = p.t.len;
		if (p.t.kind == T_QIDENT) {
			name++;
			len -= 2;
		} else if (p.t.kind != T_IDENT) {
			ex_perr(&p, ST_ESYNTAX, "expected a column name");
			break;
		}
		int c = st_schema_find(schema, name, len);
		if (c < 0) {
			ex_perr(&p, ST_ETYPE, "unknown column");
			break;
		}
		for (uint32_t i = 0; i < a->n; i++)
			if (a->items[i].col == c) {
				ex_perr(&p, ST_ESYNTAX, "column set twice");
				break;
			}
		if (p.rc != ST_OK)
			break;
		ex_next(&p);
		if (!ex_is_op(&p, "=")) {
			ex_perr(&p, ST_ESYNTAX, "expected '=' after the column name");
			break;
		}
		ex_next(&p);
		struct vnode *v = ex_parse_vsum(&p);
		if (!v)
			break;
		struct assign_item *g = realloc(a->items, (a->n + 1) * sizeof *g);
		if (!g) {
			ex_vnode_free(v);
			ex_perr(&p, ST_ENOMEM, "out of memory");
			break;
		}
		a->items = g;
		a->items[a->n++] = (struct assign_item){c, schema->fields[c], v};
		struct parser here = p;
		if (!assign_ok(&p, &schema->fields[c], v, at))
			break;
		p = here;
		if (p.t.kind == T_COMMA) {
			ex_next(&p);
			continue;
		}
		if (p.t.kind != T_END)
			ex_perr(&p, ST_ESYNTAX, "expected ',' or the end of the SET list");
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
		ex_vcolumns_of(a->items[i].v, used);
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
	int rc = ex_veval(x->v, cols, n, &r, err);
	if (rc != ST_OK)
		return rc;
	if ((rc = ex_vres_error(&r, n, bad_row, err)) != ST_OK) {
		ex_vres_fini(&r);
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
			((double *)d)[k] = ex_vf(&r, k);
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
	ex_vres_fini(&r);
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
			ex_emits(&o, ", ");
		ex_emit_col(&o, schema, a->items[i].col);
		ex_emits(&o, " = ");
		ex_format_vnode(&o, a->items[i].v, schema);
	}
	if (len)
		buf[o.need < len ? o.need : len - 1] = '\0';
	return o.need;
}
