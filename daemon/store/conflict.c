/*
 * daemon/store/conflict.c — the conflict rules of optimistic transactions (DESIGN.md §6,
 * Delta's order): a staged write against every commit that landed since
 * the version it read.
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
static bool has_file(const uint64_t *f, uint32_t n, uint64_t fid)
{
	for (uint32_t i = 0; i < n; i++)
		if (f[i] == fid)
			return true;
	return false;
}

/* Whether some file c adds with data_change may hold rows matching e (by
 * its statistics in schema sc's order): 1 yes, 0 no, -1 out of memory. */
static int adds_match(const struct act_commit *c, const struct st_schema *sc, const struct expr *e)
{
	int hit = 0;
	struct st_col_stats *st = calloc(sc->nfields + 1, sizeof *st);
	uint8_t *types = NULL;
	for (uint32_t i = 0; st && !hit && i < c->nadd; i++) {
		if (!c->adds[i].data_change)
			continue;
		struct file_rec f = {.rows = c->adds[i].rows, .ncols = c->adds[i].ncols,
				     .field_ids = c->adds[i].field_ids, .stats = c->adds[i].stats};
		free(types);
		if (!(types = calloc(f.ncols + 1, 1))) {
			free(st);
			return -1;
		}
		for (uint32_t col = 0; col < f.ncols; col++)
			types[col] = c->adds[i].stats[col].min.type;
		f.types = types;
		store_file_stats(sc, &f, st);
		hit = expr_may_match(e, st) != EXPR_MATCH_NONE;
	}
	int rc = st ? hit : -1;
	free(st);
	free(types);
	return rc;
}

/*
 * The conflict rules of DESIGN.md §6, in order, against every commit that
 * landed on the table after w's read version. Returns ST_ECONFLICT naming
 * the winning version and the rule.
 */
int store_check_conflicts(st_store *s, MDB_txn *txn, const struct staged *w,
			   const struct table_head *h, struct st_err *err)
{
	int rc = ST_OK;
	/* A blind append (reads nothing, removes nothing, no app id) can only
	 * lose to a metadata change, which the head records: no decoding. */
	if (!w->overwrite && !w->pred && !w->app_id && !w->compaction && !w->key_pred &&
	    h->meta_version <= w->read_version)
		return ST_OK;
	for (uint64_t v = w->read_version + 1; v <= h->version && rc == ST_OK; v++) {
		uint8_t key[COMMIT_KEY_LEN];
		commit_key(key, h->tid, v);
		MDB_val k = {sizeof key, key}, d;
		struct act_commit *c = NULL;
		int mrc = store_get(s, txn, &k, &d);
		if (mrc != 0)
			return store_lmdb_err(err, mrc, "checking conflicts");
		if ((rc = act_decode(d.mv_data, d.mv_size, &c, err)) != ST_OK)
			return rc;
		const char *rule = NULL;
		bool blind_append = c->nremove == 0 && !c->metadata;
		if (c->metadata) {
			rule = "it changed the table's metadata";
		} else {
			for (uint32_t i = 0; !rule && w->app_id && i < c->ntxn; i++)
				if (!strcmp(c->txns[i].app_id, w->app_id))
					rule = "it committed for the same app id";
			bool adds_data = false;
			for (uint32_t i = 0; i < c->nadd; i++)
				adds_data |= c->adds[i].data_change;
			/* Overwrite reads the whole table, replace-where the rows of its
			 * predicate: new data there is something it read, except blind
			 * appends under WriteSerializable. */
			bool counts = w->isolation == ACT_ISO_SERIALIZABLE || !blind_append;
			if (!rule && w->overwrite && adds_data && counts)
				rule = "it added rows this write read (Serializable)";
			int m = 0;
			if (!rule && w->pred && counts && (m = adds_match(c, &w->m.meta->schema, w->pred)) > 0)
				rule = w->dml ? "it added rows that match this write's predicate"
					      : "it added rows that match this write's replace-where predicate";
			/* A declared key: new rows in this write's key range could
			 * repeat one of its keys, whatever the isolation. */
			if (!rule && m >= 0 && w->key_pred &&
			    (m = adds_match(c, &w->m.meta->schema, w->key_pred)) > 0)
				rule = "it added rows in this write's key range (a declared key could repeat)";
			if (m < 0) {
				act_commit_free(c);
				return st_seterr(err, ST_ENOMEM, "out of memory");
			}
			for (uint32_t i = 0; !rule && i < c->nremove; i++)
				if (has_file(w->read_files, w->nread, c->removes[i].file_id))
					rule = "it removed a file this write read";
		}
		if (rule)
			rc = st_seterr(err, ST_ECONFLICT,
				       "table '%s': conflict with version %llu, committed after this "
				       "write read version %llu: %s; retry the write",
				       w->table, (unsigned long long)v,
				       (unsigned long long)w->read_version, rule);
		act_commit_free(c);
	}
	return rc;
}

