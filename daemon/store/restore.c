/*
 * daemon/store/restore.c — restoring a table to an earlier version (issue 3 §7).
 *
 * A restore is a new commit: files live now but not at the target version
 * are removed; files live then but removed since come back under new file
 * ids (a hard link to the same segment, or a copy of the inline bytes), so
 * every file id keeps one [added, removed) interval; the target version's
 * metadata comes back (field ids keep counting up). History is untouched:
 * the versions in between stay readable.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/store/store_int.h"
#include "format/io.h"

/* Bring segment file f back as new file id fid: a hard link (inline
 * files are copied with their record). */
static int revive(st_store *s, uint64_t tid, const struct file_rec *f, uint64_t fid,
		  struct st_err *err)
{
	char from[PATH_MAX], to[PATH_MAX];
	store_seg_path(s, tid, f->fid, from, sizeof from);
	store_seg_path(s, tid, fid, to, sizeof to);
	if (link(from, to) != 0)
		return st_seterr(err, errno, "restoring '%s' as '%s': %s", from, to, strerror(errno));
	int e = st_io_fsync_dir(&st_io_posix, to);
	return e ? st_seterr(err, e, "fsync of the directory of '%s': %s", to, strerror(e)) : ST_OK;
}

int st_table_restore(st_store *s, const char *table, struct st_at at,
		     struct st_commit_result *res, struct st_err *err)
{
	int rc = ST_OK;
	MDB_txn *txn = NULL;
	struct table_head h = {0};
	struct act_metadata *then = NULL;
	struct file_rec *old = NULL;
	uint32_t nold = 0, nadd = 0, nrm = 0;
	uint64_t *live = NULL, *linked = NULL;
	uint32_t nlive = 0, nlinked = 0;
	struct act_add *adds = NULL;
	struct act_remove *rms = NULL;
	struct store_add *recs = NULL;
	uint8_t **inls = NULL;
	uint64_t target;
	memset(res, 0, sizeof *res);
	if ((rc = store_write_begin(s, &txn, "restoring", err)) != ST_OK ||
	    (rc = head_get(s, txn, table, &h, err)) != ST_OK)
		goto out;
	if (at.kind == ST_AT_TIME) {
		if ((rc = store_version_at_time(s, txn, h.tid, at.value, &target, err)) != ST_OK)
			goto out;
	} else if (at.kind == ST_AT_VERSION && at.value >= 0 && (uint64_t)at.value <= h.version &&
		   (uint64_t)at.value >= h.oldest) {
		target = (uint64_t)at.value;
	} else {
		rc = st_seterr(err, ST_ERANGE, "table '%s' has versions %llu to %llu; restore needs one of them",
			       table, (unsigned long long)h.oldest, (unsigned long long)h.version);
		goto out;
	}
	if ((rc = store_meta_at(s, txn, &h, target, &then, err)) != ST_OK ||
	    (rc = store_files_at(s, txn, h.tid, target, &old, &nold, err)) != ST_OK ||
	    (rc = store_live_files(s, txn, h.tid, false, &live, &nlive, err)) != ST_OK)
		goto out;
	adds = calloc(nold + 1, sizeof *adds);
	rms = calloc(nlive + 1, sizeof *rms);
	linked = calloc(nold + 1, sizeof *linked);
	recs = calloc(nold + 1, sizeof *recs);
	inls = calloc(nold + 1, sizeof *inls);
	if (!adds || !rms || !linked || !recs || !inls) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	/* Live now, not then: remove. Live then, not now: revive. */
	for (uint32_t i = 0; i < nlive; i++) {
		bool keep = false;
		for (uint32_t j = 0; j < nold && !keep; j++)
			keep = old[j].fid == live[i];
		if (!keep)
			rms[nrm++] = (struct act_remove){.file_id = live[i], .data_change = true};
	}
	uint64_t rows_added = 0, rows_removed = 0;
	for (uint32_t j = 0; j < nold; j++) {
		if (old[j].removed == STORE_LIVE)
			continue;
		uint64_t fid = store_next_fid(s);
		if (!(old[j].flags & 1)) {
			if ((rc = revive(s, h.tid, &old[j], fid, err)) != ST_OK)
				goto out;
			linked[nlinked++] = fid;
		}
		adds[nadd++] = (struct act_add){.file_id = fid, .size = old[j].size,
						.rows = old[j].rows, .crc = old[j].crc,
						.data_change = true, .is_inline = old[j].flags & 1,
						.ncols = old[j].ncols, .field_ids = old[j].field_ids,
						.stats = old[j].stats,
						.base_fid = old[j].dv ? (old[j].base_fid ? old[j].base_fid
									 : old[j].fid) : 0,
						.dv = old[j].dv, .dv_len = old[j].dv_len,
						.deleted = old[j].deleted};
		rows_added += file_live_rows(&old[j]);
	}
	/* The target's schema, with field ids that keep counting up, under
	 * the table's current name (a rename since is not undone: the name
	 * record stays). */
	if (then->next_field_id < h.meta->next_field_id)
		then->next_field_id = h.meta->next_field_id;
	char *name = strdup(h.meta->name);
	if (!name) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	free(then->name);
	then->name = name;
	char vbuf[32];
	snprintf(vbuf, sizeof vbuf, "%llu", (unsigned long long)target);
	struct act_kv params[1] = {{"version", vbuf}};
	struct act_commit c = {.metadata = then, .adds = adds, .nadd = nadd, .removes = rms,
			       .nremove = nrm};
	c.info.operation = "RESTORE";
	c.info.params = params;
	c.info.nparams = 1;
	c.info.read_version = (int64_t)h.version;
	c.info.isolation = ACT_ISO_SERIALIZABLE;
	c.info.rows_added = rows_added;
	c.info.rows_removed = rows_removed;
	c.info.files_added = nadd;
	c.info.files_removed = nrm;
	/* Revived files get new records (new ids); inline ones carry their
	 * segment bytes along. */
	for (uint32_t j = 0, k = 0; j < nold && rc == ST_OK; j++) {
		if (old[j].removed == STORE_LIVE)
			continue;
		/* The revived record shares old[j]'s segment: it keeps its id (and
		 * with it the segment's key index entries). */
		old[j].seg = file_seg(&old[j]);
		old[j].flags |= FILE_SEG;
		recs[k] = (struct store_add){.fid = adds[k].file_id, .rec = &old[j]};
		if (old[j].flags & 1)
			rc = store_inline_copy(s, txn, h.tid, &old[j], &inls[k], &recs[k].inl_len, err);
		recs[k].inl = inls[k];
		k++;
	}
	if (rc != ST_OK ||
	    (rc = store_commit_table(s, txn, &h, &c, recs, nadd, &then, err)) != ST_OK)
		goto out;
	nlinked = 0; /* committed from here on: the links belong to the table */
	rc = store_commit_txn(s, txn, "restoring", err);
	txn = NULL;
	if (rc == ST_OK) {
		store_result(res, &h);
		res->rows = rows_added;
	}
out:
	store_write_end(s, txn);
	for (uint32_t i = 0; i < nlinked; i++) {
		char p[PATH_MAX];
		store_seg_path(s, h.tid, linked[i], p, sizeof p);
		unlink(p);
	}
	file_recs_free(old, nold);
	for (uint32_t i = 0; inls && i < nadd; i++)
		free(inls[i]);
	free(inls);
	free(recs);
	free(adds);
	free(rms);
	free(live);
	free(linked);
	act_metadata_free(then);
	head_fini(&h);
	return rc;
}
