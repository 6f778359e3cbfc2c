/*
 * format/expr.h — strata's predicate language.
 *
 * One language for scans, deletes, replace-where, updates and CHECK
 * constraints (FORMAT.md §9 gives the grammar):
 *
 *   expr    := or
 *   or      := and { OR and }
 *   and     := not { AND not }
 *   not     := NOT not | cmp
 *   cmp     := operand ( ('='|'!='|'<>'|'<'|'<='|'>'|'>=') operand
 *                      | [NOT] BETWEEN operand AND operand
 *                      | [NOT] IN '(' literal { ',' literal } ')'
 *                      | IS [NOT] NULL
 *                      | [NOT] LIKE 'prefix%' )
 *            | operand            (a bool column or TRUE/FALSE)
 *            | '(' expr ')'
 *   operand := value
 *   value   := term { ('+'|'-') term }
 *   term    := unary { ('*'|'/'|'%') unary }
 *   unary   := '-' unary | primary
 *   primary := column | literal | '(' value ')'
 *            | CASE WHEN expr THEN value { WHEN expr THEN value } [ELSE value] END
 *            | COALESCE '(' value { ',' value } ')'
 *            | CAST '(' value AS type ')'
 *   literal := integer | decimal | 'string' | TRUE | FALSE | NULL
 *            | TIMESTAMP 'YYYY-MM-DD[ HH:MM:SS[.ffffff]]' | DATE 'YYYY-MM-DD'
 *
 * Value expressions: arithmetic takes int32/int64/float64 (int64 results
 * from integers, float64 when either side is one); '/' and '%' truncate
 * toward zero on integers, as SQLite and C do, and x / 0, x % 0 are NULL;
 * an int64 overflow is ST_ERANGE at evaluation. CASE and COALESCE take
 * branches of one type (numbers unify to int64 or float64, date with
 * timestamp to timestamp). CAST converts between numbers, bool, strings
 * and dates/timestamps (a string that does not parse is ST_ERANGE at
 * evaluation). A comparison of plain columns and literals keeps exact
 * statistics pruning; one with a value expression is never pruned.
 *
 * Keywords are case-insensitive; column names match the schema
 * case-insensitively and may be written "quoted". Integer literals compare
 * with int32/int64/date/timestamp/float64 columns; decimals with float64.
 * Strings compare with string columns; string literals compare with
 * date/timestamp columns when they parse as such. LIKE takes only a literal
 * prefix pattern ending in one '%' (or no '%': equality).
 *
 * Semantics are SQL's three-valued logic: a comparison with NULL is
 * UNKNOWN; a row is selected only when the predicate is TRUE.
 *
 * Thread safety: a parsed expression is immutable; expr_may_match and
 * expr_eval may run on it from several threads at once.
 */
#ifndef STRATA_FORMAT_EXPR_H
#define STRATA_FORMAT_EXPR_H

#include <stdbool.h>
#include <stdint.h>

#include "format/error.h"
#include "format/types.h"

/* Longest predicate text accepted, in bytes. */
#define EXPR_TEXT_MAX 65536

struct expr; /* opaque parsed, type-checked predicate */

/*
 * Parse text and type-check it against schema. On success *out owns a new
 * expression (free with expr_free); it keeps no pointer into text, but
 * refers to schema columns by index, so it is valid only with this schema
 * (or one with the same column order and types).
 *
 * Errors: ST_ESYNTAX (bad token or grammar), ST_ETYPE (unknown column,
 * operands of incompatible types, non-bool predicate), ST_ERANGE (literal
 * out of range), ST_ETOOBIG (text longer than EXPR_TEXT_MAX or nested
 * deeper than 256), ST_ENOMEM. The message names the offending token and
 * its byte offset, e.g. "at offset 14 near 'sensr': unknown column".
 */
int expr_parse(const char *text, const struct st_schema *schema,
	       struct expr **out, struct st_err *err);

/* Free an expression; NULL is a no-op. */
void expr_free(struct expr *e);

/* Set used[i] = true for every schema column i the expression reads
 * (used has schema->nfields entries; others are left alone). */
void expr_columns(const struct expr *e, bool *used);

/* Whether every row the expression is TRUE for has column col equal to one
 * literal (a `col = literal` among the ANDs at its top): that literal, in
 * the column's type, into *out (its bytes borrowed from e). */
bool expr_eq_literal(const struct expr *e, int col, struct st_value *out);

/* Result of expr_may_match. */
enum expr_match {
	EXPR_MATCH_NONE = 0, /* no row can satisfy the predicate: skip */
	EXPR_MATCH_SOME = 1, /* some rows may satisfy it: read and evaluate */
	EXPR_MATCH_ALL = 2   /* every row satisfies it */
};

/*
 * Decide from statistics whether a chunk (or file) can hold a match.
 * stats has one entry per schema column (only the columns the expression
 * reads are consulted); stats[i].rows is the row count. Never returns NONE
 * for a set of rows that holds a match, and returns ALL only when every
 * row matches; when unsure, SOME.
 */
enum expr_match expr_may_match(const struct expr *e,
			       const struct st_col_stats *stats);

/*
 * Evaluate over a batch of n rows. cols has one vector per schema column;
 * only the columns the expression reads need be filled (each with n rows,
 * in either string form). Writes the indices of the rows where the
 * predicate is TRUE, ascending, to sel (room for n entries) and their count
 * to *nsel. Allocates only per call (scratch of O(n) bytes), never per row.
 * Errors: ST_ENOMEM; ST_EINVAL when a needed vector is missing or of the
 * wrong type.
 */
int expr_eval(const struct expr *e, const struct st_vec *cols, uint32_t n,
	      uint32_t *sel, uint32_t *nsel, struct st_err *err);

/* Write a canonical text form of e (fully parenthesized) into buf of size
 * len, NUL-terminated and truncated to fit; returns the length it needed.
 * Parsing the output gives an equivalent expression. */
size_t expr_format(const struct expr *e, const struct st_schema *schema,
		   char *buf, size_t len);

/*
 * UPDATE's SET list: `column = value { , column = value }` (value as in
 * the grammar above). Each value must suit its column: the same type, an
 * integer for an int64 or float64 column, an int64 for an int32 one
 * (range-checked per row), a date for a timestamp, a string literal for a
 * date or timestamp; float64 into an integer column needs a CAST. NULL into
 * a NOT NULL column is ST_ESCHEMA at parse time (a literal) or at
 * evaluation (a value that turns out NULL). Errors as expr_parse.
 */
struct expr_assign;
int expr_assign_parse(const char *text, const struct st_schema *schema,
		      struct expr_assign **out, struct st_err *err);
void expr_assign_free(struct expr_assign *a);
/* Assignments, and the schema column index of assignment i. */
uint32_t expr_assign_count(const struct expr_assign *a);
int expr_assign_column(const struct expr_assign *a, uint32_t i);
/* Mark the columns the values read (as expr_columns). */
void expr_assign_columns(const struct expr_assign *a, bool *used);
/*
 * Evaluate assignment i over n rows of cols (as expr_eval) into out, a
 * plain vector of the column's type whose buffers are bufs[0..2] (free
 * each). Errors: ST_ERANGE (overflow, an int32 out of range, a CAST that
 * fails), ST_ESCHEMA (NULL for a NOT NULL column), with *bad_row the
 * batch row; ST_ENOMEM.
 */
int expr_assign_eval(const struct expr_assign *a, uint32_t i, const struct st_vec *cols,
		     uint32_t n, struct st_vec *out, void *bufs[3], uint32_t *bad_row,
		     struct st_err *err);
/* Canonical text of the list, as expr_format. */
size_t expr_assign_format(const struct expr_assign *a, const struct st_schema *schema,
			  char *buf, size_t len);

#endif
