/*
 * format/expr_int.h — private to expr.c, expr_value.c and expr_assign.c:
 * the parse tree, the parser, value expressions and their batch results.
 */
#ifndef STRATA_FORMAT_EXPR_INT_H
#define STRATA_FORMAT_EXPR_INT_H

#include "format/expr.h"
#include "format/bytes.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

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

struct out {
	char *buf;   /* destination */
	size_t len;  /* its size */
	size_t need; /* bytes the full text needs */
};

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

/* Shared between the three files. */
int ex_perr(struct parser *p, int code, const char *what);
void ex_next(struct parser *p);
bool ex_is_kw(const struct parser *p, const char *kw);
bool ex_is_op(const struct parser *p, const char *op);
void ex_node_free(struct node *n);
struct node *ex_node_new(struct parser *p, enum node_kind k);
struct node *ex_node_const(struct parser *p, uint8_t v);
bool ex_parse_operand(struct parser *p, struct operand *o);
void ex_operand_fini(struct operand *o);
struct node *ex_node_clone(struct parser *p, const struct node *n);
struct node *ex_parse_or(struct parser *p);
void ex_columns_of(const struct node *n, bool *used);
int ex_eval_node(const struct node *nd, const struct st_vec *cols, uint32_t n, uint8_t *out,
		     struct st_err *err);
void ex_emits(struct out *o, const char *s);
void ex_emit_value(struct out *o, const struct st_value *v);
void ex_emit_col(struct out *o, const struct st_schema *s, int c);
void ex_format_node(struct out *o, const struct node *n, const struct st_schema *s);
void ex_vnode_free(struct vnode *v);
struct vnode *ex_vnode_clone(struct parser *p, const struct vnode *v);
const char *ex_vtype_name(int t);
bool ex_lit_to_temporal(struct parser *p, struct vnode *v, int type);
struct vnode *ex_vfrom_operand(struct parser *p, struct operand *o);
struct vnode *ex_parse_vsum(struct parser *p);
bool ex_parse_side(struct parser *p, struct operand *o, struct vnode **v);
struct vnode *ex_vfrom_side(struct parser *p, struct operand *o, struct vnode **v);
struct node *ex_make_cmpv(struct parser *p, struct vnode *a, enum cmp_op op, struct vnode *b);
void ex_vres_fini(struct vres *r);
int ex_vres_error(const struct vres *r, uint32_t n, uint32_t *row, struct st_err *err);
double ex_vf(const struct vres *r, uint32_t i);
int ex_veval(const struct vnode *v, const struct st_vec *cols, uint32_t n, struct vres *r,
		 struct st_err *err);
void ex_vcolumns_of(const struct vnode *v, bool *used);
int ex_eval_value_node(const struct node *nd, const struct st_vec *cols, uint32_t n,
			   uint8_t *out, struct st_err *err);
void ex_format_vnode(struct out *o, const struct vnode *v, const struct st_schema *s);

#endif
