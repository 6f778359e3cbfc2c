/*
 * daemon/store/schema.c — schema rules of a write (DESIGN.md §7): how its columns map onto
 * the table's schema, enforcement (type, NOT NULL, CHECK) and evolution
 * (merge_schema: new columns, widenings; overwrite_schema).
 */
#include <errno.h>
#include <limits.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "daemon/store/write_int.h"
#include "format/expr.h"
#include "format/segment.h"

/* Let go of m->meta (owned or shared). */
void store_colmap_meta_fini(struct colmap *m)
{
	if (m->shared)
		store_meta_put(m->shared);
	else
		act_metadata_free(m->meta);
	m->meta = NULL;
	m->shared = NULL;
}

void store_colmap_fini(struct colmap *m)
{
	free(m->field_of);
	free(m->batch_of);
	m->field_of = m->batch_of = NULL;
}

/* Make room in meta's schema for `extra` more fields. */
static int meta_grow(struct act_metadata *meta, uint32_t extra)
{
	struct st_field *f = realloc(meta->schema.fields,
				     (meta->schema.nfields + extra) * sizeof *f);
	if (!f)
		return ST_ENOMEM;
	meta->schema.fields = f;
	return ST_OK;
}

/* Every batch has the header's columns (names and types); NOT NULL holds
 * in every row. Rows are numbered from row_base in messages. */
int store_check_batches(const char *table, const struct colmap *m, const struct st_batch *b,
			 uint32_t nb, uint64_t row_base, struct st_err *err)
{
	const struct st_schema *sc = &m->meta->schema;
	uint64_t row0 = row_base;
	for (uint32_t k = 0; k < nb; k++) {
		if (b[k].ncols != m->ncols)
			return st_seterr(err, ST_EINVAL, "table '%s': batch %u has %u columns, the write "
					 "has %u", table, k, b[k].ncols, m->ncols);
		for (uint32_t i = 0; i < m->ncols; i++) {
			const struct st_field *f = &sc->fields[m->field_of[i]];
			if (strcasecmp(b[k].names[i], f->name) || b[k].cols[i].type != f->type ||
			    b[k].cols[i].n != b[k].nrows)
				return st_seterr(err, ST_EINVAL,
						 "table '%s': batch %u column %u ('%s') differs from the "
						 "write's first batch or has the wrong row count", table, k,
						 i, b[k].names[i]);
		}
		for (uint32_t f = 0; f < sc->nfields; f++) {
			if (sc->fields[f].nullable)
				continue;
			int i = m->batch_of[f];
			if (i < 0)
				return st_seterr(err, ST_ESCHEMA,
						 "table '%s': column '%s' is NOT NULL (type %s) and missing "
						 "from the write", table, sc->fields[f].name,
						 st_type_name(sc->fields[f].type));
			if (!b[k].cols[i].validity)
				continue;
			for (uint32_t r = 0; r < b[k].nrows; r++)
				if (!st_vec_is_valid(&b[k].cols[i], r))
					return st_seterr(err, ST_ESCHEMA,
							 "table '%s': column '%s' is NOT NULL (type %s) but "
							 "row %llu of the write is null", table,
							 sc->fields[f].name, st_type_name(sc->fields[f].type),
							 (unsigned long long)(row0 + r));
		}
		row0 += b[k].nrows;
	}
	return ST_OK;
}

/* Whether mapping b0 changes the schema (columns to add or widen). */
static bool changes_schema(const struct st_schema *sc, const struct st_batch *b0)
{
	for (uint32_t i = 0; i < b0->ncols; i++) {
		int f = st_schema_find(sc, b0->names[i], strlen(b0->names[i]));
		if (f < 0 || sc->fields[f].type != b0->cols[i].type)
			return true;
	}
	return false;
}

/* Check the write's columns (those of its first batch, b0) against the
 * table (DESIGN.md §7) and build the map; check_batches checks the rows.
 * Takes over ref (the table's metadata as read): m shares it while the
 * write leaves the schema as it is, else m->meta is a private copy. */
int store_map_columns(const char *table, struct meta_ref *ref,
		       const struct st_batch *b0, bool merge, bool replace_schema,
		       struct colmap *m, struct st_err *err)
{
	int rc = ST_OK;
	memset(m, 0, sizeof *m);
	m->shared = ref;
	m->meta = ref->meta;
	if (replace_schema || changes_schema(&ref->meta->schema, b0)) {
		m->shared = NULL;
		m->meta = NULL;
		rc = store_meta_copy(ref->meta, &m->meta, err);
		store_meta_put(ref);
		if (rc != ST_OK)
			return rc;
		if (meta_grow(m->meta, b0->ncols) != ST_OK) {
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			goto out;
		}
	}
	m->field_of = malloc((b0->ncols + 1) * sizeof *m->field_of); /* each one set below */
	if (!m->field_of) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	struct st_schema *sc = &m->meta->schema;
	if (replace_schema) {
		/* overwrite_schema: the write's columns become the table's. A column
		 * of the same name and type keeps its field id and nullability. */
		struct st_field *old = sc->fields;
		uint32_t nold = sc->nfields;
		sc->fields = calloc(b0->ncols + 1, sizeof *sc->fields);
		sc->nfields = 0;
		if (!sc->fields) {
			sc->fields = old;
			sc->nfields = nold;
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			goto out;
		}
		for (uint32_t i = 0; i < b0->ncols && rc == ST_OK; i++) {
			const char *name = b0->names[i];
			size_t len = strlen(name);
			struct st_field *nf = &sc->fields[i];
			if (len == 0 || len > ST_NAME_MAX || !st_type_is_supported(b0->cols[i].type))
				rc = st_seterr(err, ST_ESCHEMA, "table '%s': cannot make column '%s' of type %s",
					       table, name, st_type_name(b0->cols[i].type));
			nf->type = b0->cols[i].type;
			nf->nullable = true;
			nf->id = 0;
			memcpy(nf->name, name, len < ST_NAME_MAX ? len + 1 : ST_NAME_MAX);
			for (uint32_t k = 0; k < nold; k++)
				if (!strcasecmp(old[k].name, name) && old[k].type == nf->type) {
					nf->id = old[k].id;
					nf->nullable = old[k].nullable;
				}
			if (!nf->id)
				nf->id = m->meta->next_field_id++;
			sc->nfields++;
		}
		free(old);
		for (uint32_t p = 0; rc == ST_OK && p < m->meta->npartition; p++) {
			bool found = false;
			for (uint32_t i = 0; i < sc->nfields; i++)
				found |= sc->fields[i].id == m->meta->partition[p];
			if (!found)
				rc = st_seterr(err, ST_ESCHEMA, "table '%s': overwrite_schema would drop a "
					       "partition column", table);
		}
		for (uint32_t k = 0; rc == ST_OK && k < m->meta->nconstraints; k++) {
			struct expr *e;
			struct st_err perr;
			if (expr_parse(m->meta->constraints[k].expr, sc, &e, &perr) != ST_OK)
				rc = st_seterr(err, ST_ESCHEMA, "table '%s': constraint '%s' (%s) does not fit "
					       "the new schema: drop it first", table,
					       m->meta->constraints[k].name, m->meta->constraints[k].expr);
			else
				expr_free(e);
		}
		if (rc != ST_OK)
			goto out;
		m->meta_changed = true;
	}
	for (uint32_t i = 0; i < b0->ncols; i++) {
		const char *name = b0->names[i];
		size_t len = strlen(name);
		for (uint32_t j = 0; j < i; j++)
			if (!strcasecmp(b0->names[j], name)) {
				rc = st_seterr(err, ST_ESCHEMA,
					       "table '%s': column '%s' appears twice in the write "
					       "(names are case-insensitive)", table, name);
				goto out;
			}
		int f = st_schema_find(sc, name, len);
		int type = b0->cols[i].type;
		if (f < 0) {
			if (!merge) {
				rc = st_seterr(err, ST_ESCHEMA,
					       "table '%s' has no column '%s' (found type %s in the write); "
					       "write with merge_schema to add it", table, name,
					       st_type_name(type));
				goto out;
			}
			if (len == 0 || len > ST_NAME_MAX || !st_type_is_supported(type) ||
			    sc->nfields >= ST_MAX_COLUMNS) {
				rc = st_seterr(err, ST_ESCHEMA, "table '%s': cannot add column '%s' of type %s",
					       table, name, st_type_name(type));
				goto out;
			}
			struct st_field *nf = &sc->fields[sc->nfields];
			memset(nf, 0, sizeof *nf);
			nf->id = m->meta->next_field_id++;
			nf->type = (uint8_t)type;
			nf->nullable = true;
			memcpy(nf->name, name, len + 1);
			f = (int)sc->nfields++;
			m->meta_changed = true;
		} else if (sc->fields[f].type != type) {
			if (!merge || !store_widens(sc->fields[f].type, type)) {
				rc = st_seterr(err, ST_ESCHEMA,
					       "table '%s': column '%s' expects type %s, the write has %s%s",
					       table, sc->fields[f].name, st_type_name(sc->fields[f].type),
					       st_type_name(type),
					       merge ? " (merge_schema widens only int32 to int64, int32/int64 "
						       "to float64 and date to timestamp)"
						     : "; write with merge_schema to widen the column");
				goto out;
			}
			/* A key column's index records hold its values as written
			 * (STORE.md §4.6): only int32 to int64 keeps them. */
			for (uint32_t k = 0; k < m->meta->nkey; k++)
				if (m->meta->key[k] == sc->fields[f].id && type != ST_TYPE_INT64) {
					rc = st_seterr(err, ST_ESCHEMA, "table '%s': key column '%s' is %s; "
						       "the write has %s (a key column widens only from "
						       "int32 to int64)", table, sc->fields[f].name,
						       st_type_name(sc->fields[f].type), st_type_name(type));
					goto out;
				}
			sc->fields[f].type = (uint8_t)type; /* older segments are widened on read */
			m->meta_changed = true;
		}
		m->field_of[i] = f;
	}
	m->batch_of = malloc((sc->nfields + 1) * sizeof *m->batch_of);
	if (!m->batch_of) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t f = 0; f < sc->nfields; f++)
		m->batch_of[f] = -1;
	for (uint32_t i = 0; i < b0->ncols; i++)
		m->batch_of[m->field_of[i]] = (int)i;
	m->ncols = b0->ncols;
out:
	if (rc != ST_OK) {
		store_colmap_meta_fini(m);
		store_colmap_fini(m);
	}
	return rc;
}

