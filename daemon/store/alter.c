/*
 * daemon/store/alter.c — ALTER TABLE (issue 3 §6) and CHECK constraint
 * enforcement on writes.
 *
 * Every ALTER is one commit carrying the new metadata. Columns are tracked
 * by field id, so rename and drop change only metadata: older segments
 * still read correctly (scans match columns by id). Adding NOT NULL or a
 * CHECK constraint first scans the table and fails naming a violating row.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "daemon/store/store_int.h"
#include "format/expr.h"

/* First row of table (at head) matching pred, as its position in scan
 * order; -1 when none. The store's write lock is held by the caller, so
 * the head cannot move. */
static int first_match(st_store *s, const char *table, const char *pred, int64_t *row,
		       struct st_err *err)
{
	st_scan *sc;
	const struct st_scan_batch *b;
	int rc = st_scan_open(s, table, (struct st_at){ST_AT_LATEST, 0}, NULL, 0, pred, &sc, err);
	*row = -1;
	if (rc != ST_OK)
		return rc;
	if ((rc = st_scan_next(sc, &b, err)) == ST_OK && b)
		*row = b->sel ? b->sel[0] : 0;
	st_scan_close(sc);
	return rc;
}

static int set_prop(struct act_metadata *m, const char *key, const char *val)
{
	for (uint32_t i = 0; i < m->nprops; i++)
		if (!strcasecmp(m->props[i].key, key)) {
			if (!val) {
				free(m->props[i].key);
				free(m->props[i].val);
				m->props[i] = m->props[--m->nprops];
				return ST_OK;
			}
			char *v = strdup(val);
			if (!v)
				return ST_ENOMEM;
			free(m->props[i].val);
			m->props[i].val = v;
			return ST_OK;
		}
	if (!val)
		return ST_ENOTFOUND;
	struct act_kv *p = realloc(m->props, (m->nprops + 1) * sizeof *p);
	if (!p)
		return ST_ENOMEM;
	m->props = p;
	p[m->nprops].key = strdup(key);
	p[m->nprops].val = strdup(val);
	if (!p[m->nprops].key || !p[m->nprops].val) {
		free(p[m->nprops].key);
		free(p[m->nprops].val);
		return ST_ENOMEM;
	}
	m->nprops++;
	return ST_OK;
}

/* Check the new metadata m, apply op a to it. */
static int alter_meta(st_store *s, const char *table, struct act_metadata *m,
		      const struct st_alter *a, struct st_err *err)
{
	struct st_schema *sc = &m->schema;
	int f = a->column ? st_schema_find(sc, a->column, strlen(a->column)) : -1;
	bool needs_col = a->op == ST_ALTER_RENAME_COLUMN || a->op == ST_ALTER_DROP_COLUMN ||
			 a->op == ST_ALTER_SET_NOT_NULL || a->op == ST_ALTER_DROP_NOT_NULL;
	if (needs_col && f < 0)
		return st_seterr(err, ST_ENOTFOUND, "table '%s' has no column '%s'", table,
				 a->column ? a->column : "");
	for (uint32_t i = 0; f >= 0 && i < m->nkey; i++)
		if (m->key[i] == sc->fields[f].id &&
		    (a->op == ST_ALTER_DROP_COLUMN || a->op == ST_ALTER_DROP_NOT_NULL))
			return st_seterr(err, ST_EINVAL, "table '%s': column '%s' is a key column (NOT "
					 "NULL, and it stays)", table, a->column);
	switch (a->op) {
	case ST_ALTER_ADD_COLUMN: {
		size_t len = a->column ? strlen(a->column) : 0;
		if (f >= 0)
			return st_seterr(err, ST_EEXIST, "table '%s' already has a column '%s'", table, a->column);
		if (len == 0 || len > ST_NAME_MAX || !st_type_is_supported(a->type) ||
		    sc->nfields >= ST_MAX_COLUMNS)
			return st_seterr(err, ST_EINVAL, "table '%s': cannot add column '%s' of type %s "
					 "(names are 1 to %d bytes)", table, a->column ? a->column : "",
					 st_type_name(a->type), ST_NAME_MAX);
		struct st_field *nf = realloc(sc->fields, (sc->nfields + 1) * sizeof *nf);
		if (!nf)
			return st_seterr(err, ST_ENOMEM, "out of memory");
		sc->fields = nf;
		memset(&nf[sc->nfields], 0, sizeof *nf);
		nf[sc->nfields].id = m->next_field_id++;
		nf[sc->nfields].type = (uint8_t)a->type;
		nf[sc->nfields].nullable = true; /* existing rows have no value */
		memcpy(nf[sc->nfields].name, a->column, len + 1);
		sc->nfields++;
		return ST_OK;
	}
	case ST_ALTER_RENAME_COLUMN: {
		size_t len = a->arg ? strlen(a->arg) : 0;
		int g = len ? st_schema_find(sc, a->arg, len) : -1;
		if (len == 0 || len > ST_NAME_MAX || (g >= 0 && g != f))
			return st_seterr(err, g >= 0 ? ST_EEXIST : ST_EINVAL,
					 "table '%s': cannot rename column '%s' to '%s'", table, a->column,
					 a->arg ? a->arg : "");
		memcpy(sc->fields[f].name, a->arg, len + 1);
		return ST_OK;
	}
	case ST_ALTER_DROP_COLUMN:
		if (sc->nfields == 1)
			return st_seterr(err, ST_EINVAL, "table '%s': cannot drop its only column", table);
		for (uint32_t i = 0; i < m->npartition; i++)
			if (m->partition[i] == sc->fields[f].id)
				return st_seterr(err, ST_EINVAL, "table '%s': column '%s' is a partition column",
						 table, a->column);
		memmove(&sc->fields[f], &sc->fields[f + 1], (sc->nfields - f - 1) * sizeof *sc->fields);
		sc->nfields--;
		return ST_OK;
	case ST_ALTER_SET_NOT_NULL: {
		char pred[ST_NAME_MAX + 32];
		int64_t row;
		snprintf(pred, sizeof pred, "\"%s\" IS NULL", sc->fields[f].name);
		int rc = first_match(s, table, pred, &row, err);
		if (rc != ST_OK)
			return rc;
		if (row >= 0)
			return st_seterr(err, ST_ESCHEMA, "table '%s': column '%s' holds NULLs (one in row "
					 "%lld of a row group); cannot make it NOT NULL", table,
					 sc->fields[f].name, (long long)row);
		sc->fields[f].nullable = false;
		return ST_OK;
	}
	case ST_ALTER_DROP_NOT_NULL:
		sc->fields[f].nullable = true;
		return ST_OK;
	case ST_ALTER_SET_PROPERTY:
	case ST_ALTER_UNSET_PROPERTY: {
		if (!a->column || !a->column[0])
			return st_seterr(err, ST_EINVAL, "a property needs a name");
		int64_t us;
		bool duration = !strcasecmp(a->column, "file_retention") || !strcasecmp(a->column, "log_retention");
		if (a->op == ST_ALTER_SET_PROPERTY &&
		    (!a->arg || (duration && st_parse_duration(a->arg, &us) != ST_OK) ||
		     (!strcasecmp(a->column, "isolation") && strcasecmp(a->arg, "Serializable") &&
		      strcasecmp(a->arg, "WriteSerializable"))))
			return st_seterr(err, ST_EINVAL, "table '%s': bad value '%s' for property '%s'",
					 table, a->arg ? a->arg : "", a->column);
		int rc = set_prop(m, a->column, a->op == ST_ALTER_SET_PROPERTY ? a->arg : NULL);
		if (rc == ST_ENOTFOUND)
			return st_seterr(err, rc, "table '%s' has no property '%s'", table, a->column);
		return rc == ST_OK ? rc : st_seterr(err, rc, "out of memory");
	}
	case ST_ALTER_ADD_CONSTRAINT: {
		struct expr *e;
		int64_t row;
		if (!a->column || !a->column[0] || !a->arg)
			return st_seterr(err, ST_EINVAL, "a constraint needs a name and a predicate");
		for (uint32_t i = 0; i < m->nconstraints; i++)
			if (!strcasecmp(m->constraints[i].name, a->column))
				return st_seterr(err, ST_EEXIST, "table '%s' already has constraint '%s'",
						 table, a->column);
		int rc = expr_parse(a->arg, sc, &e, err);
		if (rc != ST_OK)
			return rc;
		expr_free(e);
		char *neg = malloc(strlen(a->arg) + 16);
		if (!neg)
			return st_seterr(err, ST_ENOMEM, "out of memory");
		sprintf(neg, "NOT (%s)", a->arg);
		rc = first_match(s, table, neg, &row, err);
		free(neg);
		if (rc != ST_OK)
			return rc;
		if (row >= 0)
			return st_seterr(err, ST_ESCHEMA, "table '%s': existing rows violate constraint "
					 "'%s' (%s), e.g. row %lld of a row group", table, a->column,
					 a->arg, (long long)row);
		struct act_constraint *c = realloc(m->constraints, (m->nconstraints + 1) * sizeof *c);
		if (!c)
			return st_seterr(err, ST_ENOMEM, "out of memory");
		m->constraints = c;
		c[m->nconstraints].name = strdup(a->column);
		c[m->nconstraints].expr = strdup(a->arg);
		m->nconstraints++;
		return c[m->nconstraints - 1].name && c[m->nconstraints - 1].expr
			       ? ST_OK : st_seterr(err, ST_ENOMEM, "out of memory");
	}
	case ST_ALTER_DROP_CONSTRAINT:
		for (uint32_t i = 0; i < m->nconstraints; i++)
			if (a->column && !strcasecmp(m->constraints[i].name, a->column)) {
				free(m->constraints[i].name);
				free(m->constraints[i].expr);
				m->constraints[i] = m->constraints[--m->nconstraints];
				return ST_OK;
			}
		return st_seterr(err, ST_ENOTFOUND, "table '%s' has no constraint '%s'", table,
				 a->column ? a->column : "");
	}
	return st_seterr(err, ST_EINVAL, "unknown ALTER operation %d", (int)a->op);
}

static const char *const alter_names[] = {
	"ADD COLUMN", "RENAME COLUMN", "DROP COLUMN", "SET PROPERTY", "UNSET PROPERTY",
	"SET NOT NULL", "DROP NOT NULL", "ADD CONSTRAINT", "DROP CONSTRAINT"};

int st_table_alter(st_store *s, const char *table, const struct st_alter *a,
		   struct st_commit_result *res, struct st_err *err)
{
	int rc = ST_OK;
	MDB_txn *txn = NULL;
	struct table_head h = {0};
	struct act_metadata *m = NULL;
	memset(res, 0, sizeof *res);
	if ((unsigned)a->op >= sizeof alter_names / sizeof *alter_names)
		return st_seterr(err, ST_EINVAL, "unknown ALTER operation %d", (int)a->op);
	if ((rc = store_write_begin(s, &txn, "altering", err)) != ST_OK ||
	    (rc = head_get(s, txn, table, &h, err)) != ST_OK ||
	    (rc = store_meta_copy(h.meta, &m, err)) != ST_OK)
		goto out;
	/* The checks that scan (NOT NULL, CHECK) read through their own LMDB
	 * read transactions; our write lock keeps the head where it is. */
	if ((rc = alter_meta(s, table, m, a, err)) != ST_OK)
		goto out;
	struct act_kv params[2] = {{"column", (char *)(a->column ? a->column : "")},
				   {"value", (char *)(a->arg ? a->arg : "")}};
	struct act_commit c = {.metadata = m};
	c.info.operation = (char *)alter_names[a->op];
	c.info.params = params;
	c.info.nparams = 2;
	c.info.read_version = (int64_t)h.version;
	c.info.isolation = ACT_ISO_SERIALIZABLE;
	if ((rc = store_commit_table(s, txn, &h, &c, NULL, 0, &m, err)) != ST_OK)
		goto out;
	rc = store_commit_txn(s, txn, "altering", err);
	txn = NULL;
	if (rc == ST_OK)
		store_result(res, &h);
out:
	store_write_end(s, txn);
	act_metadata_free(m);
	head_fini(&h);
	return rc;
}

int store_check_constraints(const char *table, const struct act_metadata *m,
			    const struct st_vec *cols, uint32_t n, uint64_t row0,
			    struct st_err *err)
{
	int rc = ST_OK;
	uint32_t *sel = NULL;
	for (uint32_t k = 0; k < m->nconstraints && rc == ST_OK; k++) {
		struct expr *e;
		char *neg = malloc(strlen(m->constraints[k].expr) + 16);
		if (!neg || (!sel && !(sel = malloc(((size_t)n + 1) * sizeof *sel)))) {
			free(neg);
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			break;
		}
		sprintf(neg, "NOT (%s)", m->constraints[k].expr);
		rc = expr_parse(neg, &m->schema, &e, err);
		free(neg);
		if (rc != ST_OK)
			break;
		uint32_t nsel;
		rc = expr_eval(e, cols, n, sel, &nsel, err);
		expr_free(e);
		if (rc == ST_OK && nsel > 0)
			rc = st_seterr(err, ST_ESCHEMA,
				       "table '%s': row %llu of the write violates constraint '%s' (%s)",
				       table, (unsigned long long)(row0 + sel[0]), m->constraints[k].name,
				       m->constraints[k].expr);
	}
	free(sel);
	return rc;
}
