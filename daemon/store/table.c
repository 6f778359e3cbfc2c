/*
 * daemon/store/table.c — creating, listing, describing and dropping tables
 * (issue 3 §2). Creating a table is its version 0; dropping is a commit
 * that removes every live file, after which the name is free again (data
 * files stay until vacuum). Table ids are never reused.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "daemon/store/store_int.h"

/* STORE.md §3. */
static int check_name(const char *name, struct st_err *err)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > STORE_NAME_MAX || name[0] == '.' || name[0] == '-')
		goto bad;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			goto bad;
	}
	return ST_OK;
bad:
	return st_seterr(err, ST_EINVAL,
			 "invalid table name '%s': use 1 to %d of A-Z a-z 0-9 _ . - "
			 "(not starting with . or -)",
			 name ? name : "", STORE_NAME_MAX);
}

/* Build the metadata of a new table from its spec. */
static int spec_to_meta(const struct st_table_spec *spec, struct act_metadata **out,
			struct st_err *err)
{
	int rc = ST_OK;
	struct act_metadata *m = calloc(1, sizeof *m);
	*out = NULL;
	if (!m)
		return st_seterr(err, ST_ENOMEM, "out of memory");
	if (spec->ncols == 0 || spec->ncols > ST_MAX_COLUMNS) {
		rc = st_seterr(err, ST_EINVAL, "table '%s': a table needs 1 to %d columns",
			       spec->name, ST_MAX_COLUMNS);
		goto out;
	}
	m->name = strdup(spec->name);
	m->schema.fields = calloc(spec->ncols, sizeof *m->schema.fields);
	m->partition = calloc(spec->npartition + 1, sizeof *m->partition);
	m->props = calloc(spec->nprops + 1, sizeof *m->props);
	if (!m->name || !m->schema.fields || !m->partition || !m->props) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	m->schema.nfields = spec->ncols;
	for (uint32_t i = 0; i < spec->ncols; i++) {
		const struct st_column_def *c = &spec->cols[i];
		struct st_field *f = &m->schema.fields[i];
		size_t len = c->name ? strlen(c->name) : 0;
		if (len == 0 || len > ST_NAME_MAX) {
			rc = st_seterr(err, ST_EINVAL, "table '%s': column %u needs a name of 1 to %d bytes",
				       spec->name, i, ST_NAME_MAX);
			goto out;
		}
		if (!st_type_is_supported(c->type)) {
			rc = st_seterr(err, ST_EINVAL, "table '%s': column '%s' has unsupported type %s",
				       spec->name, c->name, st_type_name(c->type));
			goto out;
		}
		for (uint32_t j = 0; j < i; j++)
			if (!strcasecmp(spec->cols[j].name, c->name)) {
				rc = st_seterr(err, ST_EINVAL,
					       "table '%s': column '%s' appears twice (names are case-insensitive)",
					       spec->name, c->name);
				goto out;
			}
		f->id = i + 1;
		f->type = (uint8_t)c->type;
		f->nullable = c->nullable;
		memcpy(f->name, c->name, len + 1);
	}
	m->next_field_id = spec->ncols + 1;
	for (uint32_t i = 0; i < spec->npartition; i++) {
		const char *p = spec->partition_by[i];
		int k = st_schema_find(&m->schema, p, strlen(p));
		if (k < 0) {
			rc = st_seterr(err, ST_EINVAL, "table '%s': partition column '%s' is not a column",
				       spec->name, p);
			goto out;
		}
		m->partition[m->npartition++] = m->schema.fields[k].id;
	}
	if (spec->nkey > 32) {
		rc = st_seterr(err, ST_EINVAL, "table '%s': a key has at most 32 columns", spec->name);
		goto out;
	}
	if (spec->nkey && !(m->key = calloc(spec->nkey, sizeof *m->key))) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < spec->nkey; i++) {
		const char *p = spec->key[i];
		int k = st_schema_find(&m->schema, p, strlen(p));
		if (k < 0) {
			rc = st_seterr(err, ST_EINVAL, "table '%s': key column '%s' is not a column",
				       spec->name, p);
			goto out;
		}
		for (uint32_t j = 0; j < m->nkey; j++)
			if (m->key[j] == m->schema.fields[k].id) {
				rc = st_seterr(err, ST_EINVAL, "table '%s': key column '%s' is named twice",
					       spec->name, p);
				goto out;
			}
		m->schema.fields[k].nullable = false; /* a key is NOT NULL */
		m->key[m->nkey++] = m->schema.fields[k].id;
	}
	for (uint32_t i = 0; i < spec->nprops; i++) {
		m->props[i].key = strdup(spec->props[i].key);
		m->props[i].val = strdup(spec->props[i].val);
		m->nprops++;
		if (!m->props[i].key || !m->props[i].val) {
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			goto out;
		}
	}
	m->created_us = store_now_us();
	*out = m;
	m = NULL;
out:
	act_metadata_free(m);
	return rc;
}

/* Drop inside txn: a commit removing every live file, then the name goes. */
static int drop_in_txn(st_store *s, MDB_txn *txn, struct table_head *h, struct st_err *err)
{
	int rc = ST_OK, mrc;
	struct act_commit c = {0};
	struct act_remove *rm = NULL;
	uint64_t *fids = NULL;
	uint32_t n = 0;
	if ((rc = store_live_files(s, txn, h->tid, true, &fids, &n, err)) != ST_OK)
		goto out;
	if (!(rm = calloc(n + 1, sizeof *rm))) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < n; i++)
		rm[i] = (struct act_remove){.file_id = fids[i], .data_change = true};
	c.removes = rm;
	c.nremove = n;
	c.info.operation = "DROP TABLE";
	c.info.read_version = (int64_t)h->version;
	c.info.isolation = ACT_ISO_SERIALIZABLE;
	c.info.files_removed = n;
	h->flags |= 1; /* dropped: stored with the commit's head */
	if ((rc = store_commit_table(s, txn, h, &c, NULL, 0, NULL, err)) != ST_OK)
		goto out;
	uint8_t kb[1 + STORE_NAME_MAX];
	MDB_val nk = kind_key(kb, KEY_NAME, h->meta->name, strlen(h->meta->name));
	if ((mrc = store_del(s, txn, &nk)) != 0)
		rc = store_lmdb_err(err, mrc, "dropping a table");
out:
	free(rm);
	free(fids);
	return rc;
}

int st_table_create(st_store *s, const struct st_table_spec *spec, enum st_create_mode mode,
		    uint64_t *version, struct st_err *err)
{
	int rc = ST_OK, mrc;
	MDB_txn *txn = NULL;
	struct table_head old = {0}, h = {0};
	struct act_metadata *m = NULL;
	bool locked = false;
	if ((rc = check_name(spec->name, err)) != ST_OK || (rc = spec_to_meta(spec, &m, err)) != ST_OK)
		goto out;
	locked = true;
	if ((rc = store_write_begin(s, &txn, "creating a table", err)) != ST_OK)
		goto out;
	rc = head_get(s, txn, spec->name, &old, err);
	if (rc == ST_OK) {
		if (mode == ST_CREATE_IF_NOT_EXISTS) {
			if (version)
				*version = old.version;
			goto out; /* txn aborted below: nothing changes */
		}
		if (mode != ST_CREATE_REPLACE) {
			rc = st_seterr(err, ST_EEXIST, "table '%s' already exists", spec->name);
			goto out;
		}
		if ((rc = drop_in_txn(s, txn, &old, err)) != ST_OK)
			goto out;
	} else if (rc != ST_ENOTFOUND) {
		goto out;
	}
	st_clearerr(err);
	uint64_t tid = 0;
	uint8_t kb[1 + STORE_NAME_MAX];
	MDB_val k = kind_key(kb, KEY_META, "next_tid", 8), v;
	mrc = store_get(s, txn, &k, &v);
	if (mrc == 0 && v.mv_size == 8)
		tid = st_get_le64(v.mv_data);
	tid = tid ? tid : 1;
	uint8_t nb[8], tk[8];
	st_put_le64(nb, tid + 1);
	v = (MDB_val){8, nb};
	if ((mrc = store_put(s, txn, NULL, &k, &v, 0)) != 0)
		goto lmdb;
	h.tid = tid;
	h.version = UINT64_MAX;
	h.next_fid = 1;
	h.meta = m;
	struct act_commit c = {.metadata = m};
	c.info.operation = old.meta ? "CREATE OR REPLACE TABLE" : "CREATE TABLE";
	c.info.read_version = -1;
	c.info.isolation = ACT_ISO_SERIALIZABLE;
	if ((rc = store_commit_table(s, txn, &h, &c, NULL, 0, NULL, err)) != ST_OK)
		goto out;
	be64(tk, tid);
	k = kind_key(kb, KEY_NAME, spec->name, strlen(spec->name));
	v = (MDB_val){8, tk};
	if ((mrc = store_put(s, txn, NULL, &k, &v, 0)) != 0)
		goto lmdb;
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s/tables/%016llx", s->dir, (unsigned long long)tid);
	if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
		rc = st_seterr(err, errno, "cannot create '%s': %s", dir, strerror(errno));
		goto out;
	}
	rc = store_commit_txn(s, txn, "creating a table", err);
	txn = NULL;
	if (rc == ST_OK && version)
		*version = 0;
	goto out;
lmdb:
	rc = store_lmdb_err(err, mrc, "creating a table");
out:
	if (locked)
		store_write_end(s, txn);
	head_fini(&old);
	act_metadata_free(m);
	return rc;
}

int st_table_drop(st_store *s, const char *table, struct st_commit_result *res,
		  struct st_err *err)
{
	int rc = ST_OK;
	MDB_txn *txn = NULL;
	struct table_head h = {0};
	if (res)
		memset(res, 0, sizeof *res);
	if ((rc = store_write_begin(s, &txn, "dropping a table", err)) != ST_OK ||
	    (rc = head_get_damaged(s, txn, table, &h, err)) != ST_OK ||
	    (rc = drop_in_txn(s, txn, &h, err)) != ST_OK)
		goto out;
	rc = store_commit_txn(s, txn, "dropping a table", err);
	txn = NULL;
	if (rc == ST_OK)
		store_undamage(s, h.tid);
	if (rc == ST_OK && res)
		store_result(res, &h);
out:
	store_write_end(s, txn);
	head_fini(&h);
	return rc;
}

int st_table_list(st_store *s, char ***names, uint32_t *n, struct st_err *err)
{
	int rc = ST_OK, mrc;
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	uint8_t first = KEY_NAME;
	MDB_val k, v;
	*names = NULL;
	*n = 0;
	if ((mrc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn)) != 0 ||
	    (mrc = mdb_cursor_open(txn, s->dbi, &cur)) != 0) {
		rc = store_lmdb_err(err, mrc, "listing tables");
		goto out;
	}
	/* Name records are the keys starting with KEY_NAME: count, then copy. */
	size_t count = 0;
	k = (MDB_val){1, &first};
	for (mrc = store_cget(s, cur, &k, &v, MDB_SET_RANGE);
	     mrc == 0 && *(uint8_t *)k.mv_data == KEY_NAME;
	     mrc = store_cget(s, cur, &k, &v, MDB_NEXT))
		count++;
	if (mrc != 0 && mrc != MDB_NOTFOUND) {
		rc = store_lmdb_err(err, mrc, "listing tables");
		goto out;
	}
	/* One block: the pointer array, then the NUL-terminated names. */
	char **arr = malloc((count + 1) * sizeof(char *) + count * (STORE_NAME_MAX + 1));
	if (!arr) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	char *p = (char *)(arr + count + 1);
	uint32_t i = 0;
	k = (MDB_val){1, &first};
	for (mrc = store_cget(s, cur, &k, &v, MDB_SET_RANGE);
	     mrc == 0 && i < count && *(uint8_t *)k.mv_data == KEY_NAME;
	     mrc = store_cget(s, cur, &k, &v, MDB_NEXT)) {
		size_t len = k.mv_size - 1 > STORE_NAME_MAX ? STORE_NAME_MAX : k.mv_size - 1;
		memcpy(p, (uint8_t *)k.mv_data + 1, len);
		p[len] = '\0';
		arr[i++] = p;
		p += len + 1;
	}
	arr[i] = NULL;
	*names = arr;
	*n = i;
out:
	if (cur)
		mdb_cursor_close(cur);
	if (txn)
		mdb_txn_abort(txn);
	return rc;
}

/* Metadata in force at version v: the newest commit <= v with a metadata
 * action. */
int store_meta_at(st_store *s, MDB_txn *txn, const struct table_head *h, uint64_t v,
		   struct act_metadata **out, struct st_err *err)
{
	int rc = ST_OK, mrc;
	MDB_cursor *cur;
	uint8_t key[COMMIT_KEY_LEN];
	*out = NULL;
	if ((mrc = mdb_cursor_open(txn, s->dbi, &cur)) != 0)
		return store_lmdb_err(err, mrc, "reading history");
	commit_key(key, h->tid, v);
	MDB_val k = {sizeof key, key}, d;
	for (mrc = store_cget(s, cur, &k, &d, MDB_SET_KEY);
	     mrc == 0 && k.mv_size == COMMIT_KEY_LEN && table_range(&k, key);
	     mrc = store_cget(s, cur, &k, &d, MDB_NEXT)) {
		struct act_commit *c;
		if ((rc = act_decode(d.mv_data, d.mv_size, &c, err)) != ST_OK)
			break;
		if (c->metadata) {
			*out = c->metadata;
			c->metadata = NULL;
			act_commit_free(c);
			break;
		}
		act_commit_free(c);
	}
	mdb_cursor_close(cur);
	if (rc == ST_OK && !*out && mrc != 0 && mrc != MDB_NOTFOUND)
		rc = store_lmdb_err(err, mrc, "reading a table's metadata");
	if (rc == ST_OK && !*out)
		rc = st_seterr(err, ST_ERANGE, "table '%s': version %llu is not retained",
			       h->meta->name, (unsigned long long)v);
	return rc;
}

int st_table_describe(st_store *s, const char *table, int64_t version,
		      struct act_metadata **out, struct st_err *err)
{
	int rc = ST_OK, mrc;
	MDB_txn *txn = NULL;
	struct table_head h = {0};
	*out = NULL;
	if ((mrc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn)) != 0) {
		rc = store_lmdb_err(err, mrc, "describing a table");
		goto out;
	}
	if ((rc = head_get(s, txn, table, &h, err)) != ST_OK)
		goto out;
	if (version < 0 || (uint64_t)version == h.version) {
		*out = h.meta;
		h.meta = NULL;
	} else if ((uint64_t)version > h.version || (uint64_t)version < h.oldest) {
		rc = st_seterr(err, ST_ERANGE,
			       "table '%s' has versions %llu to %llu; version %lld is not among them",
			       table, (unsigned long long)h.oldest, (unsigned long long)h.version,
			       (long long)version);
	} else {
		rc = store_meta_at(s, txn, &h, (uint64_t)version, out, err);
	}
out:
	if (txn)
		mdb_txn_abort(txn);
	head_fini(&h);
	return rc;
}

int st_table_rename(st_store *s, const char *table, const char *new_name,
		    struct st_commit_result *res, struct st_err *err)
{
	int rc = ST_OK, mrc;
	MDB_txn *txn = NULL;
	struct table_head h = {0}, other = {0};
	char *copy = NULL;
	memset(res, 0, sizeof *res);
	if ((rc = check_name(new_name, err)) != ST_OK)
		return rc;
	if ((rc = store_write_begin(s, &txn, "renaming a table", err)) != ST_OK ||
	    (rc = head_get(s, txn, table, &h, err)) != ST_OK)
		goto out;
	if (head_get(s, txn, new_name, &other, NULL) == ST_OK) {
		rc = st_seterr(err, ST_EEXIST, "table '%s' already exists", new_name);
		goto out;
	}
	if (!(copy = strdup(new_name))) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	free(h.meta->name);
	h.meta->name = copy;
	struct act_kv params[2] = {{"from", (char *)table}, {"to", (char *)new_name}};
	struct act_commit c = {.metadata = h.meta};
	c.info.operation = "RENAME TABLE";
	c.info.params = params;
	c.info.nparams = 2;
	c.info.read_version = (int64_t)h.version;
	c.info.isolation = ACT_ISO_SERIALIZABLE;
	if ((rc = store_commit_table(s, txn, &h, &c, NULL, 0, NULL, err)) != ST_OK)
		goto out;
	uint8_t tk[8], ob[1 + STORE_NAME_MAX], nb[1 + STORE_NAME_MAX];
	be64(tk, h.tid);
	MDB_val ok = kind_key(ob, KEY_NAME, table, strlen(table)),
		nk = kind_key(nb, KEY_NAME, new_name, strlen(new_name)), v = {8, tk};
	if ((mrc = store_del(s, txn, &ok)) != 0 ||
	    (mrc = store_put(s, txn, NULL, &nk, &v, MDB_NOOVERWRITE)) != 0) {
		rc = store_lmdb_err(err, mrc, "renaming a table");
		goto out;
	}
	rc = store_commit_txn(s, txn, "renaming a table", err);
	txn = NULL;
	if (rc == ST_OK)
		store_result(res, &h);
out:
	store_write_end(s, txn);
	head_fini(&h);
	head_fini(&other);
	return rc;
}
