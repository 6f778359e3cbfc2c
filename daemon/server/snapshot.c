/*
 * daemon/server/snapshot.c — snapshots of the replication driver
 * (REPLICATION.md §14): the snapshot a node serves to a joining peer (made
 * by the upkeep thread with st_backup, read chunk by chunk by the loop's
 * segment server) and the bootstrap of a joining node from a peer's
 * snapshot, before its store opens.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/server/cluster_int.h"
#include "daemon/server/log.h"
#include "format/crc32c.h"
#include "format/io.h"

#define SNAP_REUSE_US (60 * 1000000) /* a snapshot younger than this is served again */

/* Read up to len bytes of path at off; the whole file's CRC32C once per
 * (table, file, size, gen) (segment and snapshot files never change). */
int cl_read_chunk(struct sd_node *nd, const char *path, uint64_t table, uint64_t file,
		      uint64_t gen, uint64_t off, void *buf, size_t len, size_t *got,
		      uint64_t *file_size, uint32_t *file_crc, struct st_err *err)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return st_seterr(err, ST_ENOTFOUND, "file %llu of table id %llu: %s",
				 (unsigned long long)file, (unsigned long long)table, strerror(errno));
	struct stat st;
	int rc = ST_OK;
	*got = 0;
	if (fstat(fileno(f), &st) != 0) {
		rc = st_seterr(err, errno, "stat '%s': %s", path, strerror(errno));
		goto out;
	}
	*file_size = (uint64_t)st.st_size;
	if (nd->seg_tid != table || nd->seg_fid != file || nd->seg_size != *file_size ||
	    nd->seg_gen != gen) {
		uint32_t crc = 0;
		size_t k;
		while ((k = fread(buf, 1, len, f)) > 0)
			crc = st_crc32c(crc, buf, k);
		if (ferror(f)) {
			rc = st_seterr(err, EIO, "reading '%s'", path);
			goto out;
		}
		nd->seg_tid = table, nd->seg_fid = file, nd->seg_size = *file_size;
		nd->seg_gen = gen, nd->seg_crc = crc;
	}
	*file_crc = nd->seg_crc;
	if (off < *file_size && fseeko(f, (off_t)off, SEEK_SET) == 0)
		*got = fread(buf, 1, len, f);
out:
	fclose(f);
	return rc;
}

/* File `file` of this node's snapshot: 0 its MANIFEST, k its k-th file.
 * A request for the MANIFEST from offset 0 when no snapshot is fresh asks
 * the upkeep thread for one and is answered ST_EBUSY (retry). */
int cl_snap_read(struct sd_node *nd, uint64_t file, uint64_t off, void *buf, size_t len,
		     size_t *got, uint64_t *file_size, uint32_t *file_crc, struct st_err *err)
{
	char path[PATH_MAX + 300];
	int rc;
	pthread_mutex_lock(&nd->slock);
	bool stale = !nd->snap_ready ||
		     (file == 0 && off == 0 && cl_mono_us() - nd->snap_made_us > SNAP_REUSE_US);
	if (stale && nd->snap_fail[0]) {
		rc = st_seterr(err, ST_EFAILED, "node %llu could not make a snapshot: %s",
			       (unsigned long long)nd->cc->node_id, nd->snap_fail);
		nd->snap_fail[0] = '\0';
	} else if (stale) {
		__atomic_store_n(&nd->a_snap_want, 1, __ATOMIC_RELEASE);
		rc = st_seterr(err, ST_EBUSY, "node %llu is making a snapshot: retry shortly",
			       (unsigned long long)nd->cc->node_id);
	} else if (file > nd->n_snap_files) {
		rc = st_seterr(err, ST_ENOTFOUND, "the snapshot has %zu files, not %llu",
			       nd->n_snap_files, (unsigned long long)file);
	} else {
		snprintf(path, sizeof path, "%s/%s", nd->snap_dir,
			 file ? nd->snap_files[file - 1].rel : "MANIFEST");
		rc = cl_read_chunk(nd, path, LINK_SNAPSHOT_TABLE, file, nd->snap_gen, off, buf, len,
				got, file_size, file_crc, err);
	}
	pthread_mutex_unlock(&nd->slock);
	return rc;
}

/* The files of a backup's MANIFEST in its order ("file REL SIZE CRC" lines). */
static int manifest_files(const char *dir, struct snap_file **out, size_t *n, struct st_err *err)
{
	char path[PATH_MAX + 16], line[PATH_MAX + 64];
	snprintf(path, sizeof path, "%s/MANIFEST", dir);
	FILE *f = fopen(path, "r");
	*out = NULL;
	*n = 0;
	if (!f)
		return st_seterr(err, errno, "cannot open %s: %s", path, strerror(errno));
	int rc = ST_OK;
	while (rc == ST_OK && fgets(line, sizeof line, f)) {
		struct snap_file x;
		unsigned crc;
		if (sscanf(line, "file %255s %" SCNu64 " %x", x.rel, &x.size, &crc) != 3)
			continue;
		x.crc = crc;
		if (strstr(x.rel, "..") || x.rel[0] == '/') {
			rc = st_seterr(err, ST_ECORRUPT, "%s names %s", path, x.rel);
			break;
		}
		struct snap_file *g = realloc(*out, (*n + 1) * sizeof *g);
		if (!g) {
			rc = st_seterr(err, ST_ENOMEM, "out of memory");
			break;
		}
		*out = g;
		g[(*n)++] = x;
	}
	fclose(f);
	if (rc != ST_OK) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return rc;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)ftw;
	return flag == FTW_DP ? rmdir(p) : unlink(p);
}

/* Remove dir and everything in it (absent is fine). */
void cl_rm_tree(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* The upkeep thread's part: a snapshot when a peer asked for one. */
void cl_make_snapshot(struct sd_node *nd)
{
	if (!__atomic_exchange_n(&nd->a_snap_want, 0, __ATOMIC_ACQ_REL))
		return;
	char dir[PATH_MAX], old[PATH_MAX] = "";
	struct st_backup_result r;
	struct st_err err;
	struct snap_file *files = NULL;
	size_t n = 0;
	char base[PATH_MAX];
	if (!realpath(nd->cfg->data_dir, base)) { /* st_backup takes absolute paths */
		st_seterr(&err, errno, "data_dir %s: %s", nd->cfg->data_dir, strerror(errno));
		goto fail;
	}
	snprintf(dir, sizeof dir, "%s/snapshots", base);
	mkdir(dir, 0755);
	snprintf(dir, sizeof dir, "%s/snapshots/%" PRId64, base, cl_mono_us());
	if (st_backup(nd->s, dir, &r, &err) != ST_OK ||
	    manifest_files(dir, &files, &n, &err) != ST_OK) {
		cl_rm_tree(dir);
		goto fail;
	}
	pthread_mutex_lock(&nd->slock);
	if (nd->snap_ready)
		snprintf(old, sizeof old, "%s", nd->snap_dir);
	snprintf(nd->snap_dir, sizeof nd->snap_dir, "%s", dir);
	free(nd->snap_files);
	nd->snap_files = files;
	nd->n_snap_files = n;
	nd->snap_made_us = cl_mono_us();
	nd->snap_gen++;
	nd->snap_ready = true;
	pthread_mutex_unlock(&nd->slock);
	if (old[0])
		cl_rm_tree(old);
	sd_log(SD_LOG_INFO, "snapshot at LSN %llu for a joining node: %llu files, %.1f MB "
	       "(segment files hard-linked: vacuum cannot take them)", (unsigned long long)r.lsn,
	       (unsigned long long)r.files, (double)r.bytes / 1e6);
	return;
fail:
	sd_log(SD_LOG_WARN, "snapshot for a joining node failed: %s", err.msg);
	pthread_mutex_lock(&nd->slock); /* the next request is told, then tries again */
	snprintf(nd->snap_fail, sizeof nd->snap_fail, "%s", err.msg);
	pthread_mutex_unlock(&nd->slock);
}

/* ---- bootstrap of a joining node from a peer's snapshot (§14) ----------- */

#define BOOT_BUSY_WAIT_US (120 * 1000000) /* a peer making its snapshot is waited for this long */
#define BOOT_TRY_US (120 * 1000000)       /* the peers are tried in rounds this long */

static bool file_has_size(const char *path, uint64_t size)
{
	struct stat st;
	return stat(path, &st) == 0 && (uint64_t)st.st_size == size;
}

static int write_marker(const char *dir, const char *name, struct st_err *err)
{
	char path[PATH_MAX + 16];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || fsync(fd) != 0 || close(fd) != 0 || st_io_fsync_dir(&st_io_posix, path) != 0)
		return st_seterr(err, errno, "cannot write %s: %s", path, strerror(errno));
	return ST_OK;
}

/* Every file of peer's snapshot into dir (resuming what is there), the
 * MANIFEST last, then checked whole. */
static int fetch_snapshot(struct link *l, uint64_t peer, const char *dir, struct st_err *err)
{
	char path[PATH_MAX + 300], part[PATH_MAX + 16];
	snprintf(part, sizeof part, "%s/MANIFEST.part", dir);
	unlink(part);
	int rc;
	int64_t until = cl_mono_us() + BOOT_BUSY_WAIT_US;
	while ((rc = link_fetch_segment(l, peer, LINK_SNAPSHOT_TABLE, 0, LINK_SIZE_ANY, 0, part,
					err)) == ST_EBUSY && cl_mono_us() < until) {
		struct timespec ts = {0, 200 * 1000000};
		nanosleep(&ts, NULL);
	}
	if (rc != ST_OK)
		return rc;
	snprintf(path, sizeof path, "%s/MANIFEST", dir);
	if (rename(part, path) != 0)
		return st_seterr(err, errno, "cannot rename %s: %s", part, strerror(errno));
	struct snap_file *files = NULL;
	size_t n = 0;
	if ((rc = manifest_files(dir, &files, &n, err)) != ST_OK)
		return rc;
	uint64_t bytes = 0;
	for (size_t i = 0; i < n; i++)
		bytes += files[i].size;
	sd_log(SD_LOG_INFO, "bootstrap: fetching node %llu's snapshot: %zu files, %.1f MB",
	       (unsigned long long)peer, n, (double)bytes / 1e6);
	for (size_t i = 0; i < n && rc == ST_OK; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, files[i].rel);
		for (char *p = path + strlen(dir) + 1; (p = strchr(p, '/')); p++) {
			*p = '\0';
			mkdir(path, 0755);
			*p = '/';
		}
		if (!file_has_size(path, files[i].size)) /* a resumed bootstrap has it */
			rc = link_fetch_segment(l, peer, LINK_SNAPSHOT_TABLE, i + 1, files[i].size,
						files[i].crc, path, err);
	}
	free(files);
	if (rc != ST_OK)
		return rc;
	struct st_backup_result r;
	char **problems = NULL;
	uint32_t np = 0;
	rc = st_backup_check(dir, &r, &problems, &np, err);
	if (rc == ST_OK && np)
		rc = st_seterr(err, ST_ECORRUPT, "node %llu's snapshot does not check: %s",
			       (unsigned long long)peer, problems[0]);
	for (uint32_t i = 0; i < np; i++)
		free(problems[i]);
	free(problems);
	return rc;
}

/* A member that fell behind the leader's vacuum: RESNAPSHOT in its data
 * directory (REPLICATION.md §14), what it must keep through the new
 * snapshot. */
#define RESNAP_NAME "RESNAPSHOT"

int cl_mark_resnapshot(const char *data_dir, const struct st_repl_keep *k, const char *why,
		       struct st_err *err)
{
	char path[PATH_MAX + 32], tmp[PATH_MAX + 40];
	snprintf(path, sizeof path, "%s/%s", data_dir, RESNAP_NAME);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	int ok = f && fprintf(f, "epoch %llu vote %llu last %llu\n%s\n", (unsigned long long)k->epoch,
			      (unsigned long long)k->vote, (unsigned long long)k->last, why) > 0;
	ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
	if (f && fclose(f) != 0)
		ok = 0;
	if (!ok || rename(tmp, path) != 0 || st_io_fsync_dir(&st_io_posix, path) != 0)
		return st_seterr(err, errno ? errno : EIO, "cannot write %s: %s", path,
				 strerror(errno ? errno : EIO));
	return ST_OK;
}

/* 1 with *k from data_dir's RESNAPSHOT, 0 when there is none, -1 damaged. */
static int read_resnapshot(const char *data_dir, struct st_repl_keep *k)
{
	char path[PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/%s", data_dir, RESNAP_NAME);
	FILE *f = fopen(path, "r");
	if (!f)
		return errno == ENOENT ? 0 : -1;
	unsigned long long e, v, l;
	int n = fscanf(f, "epoch %llu vote %llu last %llu", &e, &v, &l);
	fclose(f);
	if (n != 3)
		return -1;
	*k = (struct st_repl_keep){e, v, l};
	return 1;
}

/* A peer's snapshot into boot, made this node's (keep: a member keeping
 * its id), READY written last. */
static int fetch_and_adopt(const struct sd_config *cfg, const char *boot,
			   const struct st_repl_keep *keep, struct st_err *err)
{
	const struct sd_cluster *cc = &cfg->cluster;
	struct link *l = NULL;
	int rc;
	if (mkdir(boot, 0755) != 0 && errno != EEXIST)
		return st_seterr(err, errno, "cannot create %s: %s", boot, strerror(errno));
	if ((rc = cl_link_open(cfg, true, 3000, &l, err)) != ST_OK)
		return rc;
	rc = ST_EUNAVAIL;
	st_seterr(err, rc, "cluster.peers is empty: nobody to bootstrap from");
	/* Each peer in turn, rounds until BOOT_TRY_US: a peer that has not
	 * applied this node's addition yet drops its requests (members only),
	 * so the first round can miss; a member skips a snapshot that ends
	 * before its own log. */
	int64_t until = cl_mono_us() + BOOT_TRY_US;
	for (uint32_t i = 0; cc->npeers && rc != ST_OK; i = (i + 1) % cc->npeers) {
		struct st_err e;
		if (i == 0 && cl_mono_us() > until)
			break;
		rc = fetch_snapshot(l, cc->peers[i].id, boot, &e);
		bool discard = rc == ST_ECORRUPT; /* a damaged or changed copy */
		if (rc == ST_OK) {
			st_store *s = NULL;
			if ((rc = st_store_open(boot, NULL, &s, &e)) == ST_OK)
				rc = st_repl_adopt(s, cc->node_id, cc->cluster_id, keep, &e);
			st_store_close(s);
			if (rc == ST_OK)
				break;
			discard = true; /* not adoptable (too old for a member): another peer's */
		}
		sd_log(SD_LOG_WARN, "bootstrap: from node %llu: %s",
		       (unsigned long long)cc->peers[i].id, e.msg);
		*err = e;
		if (discard) { /* start over (anything else resumes what is fetched) */
			cl_rm_tree(boot);
			mkdir(boot, 0755);
		}
	}
	link_close(l);
	if (rc != ST_OK)
		return st_seterr(err, rc, "cannot bootstrap from any peer%s: %s",
				 keep ? "" : " (was it added with strata cluster add first?)",
				 err->msg);
	return write_marker(boot, "READY", err);
}

int sd_node_bootstrap(const struct sd_config *cfg, struct st_err *err)
{
	const struct sd_cluster *cc = &cfg->cluster;
	char boot[PATH_MAX], old[PATH_MAX], path[PATH_MAX + 32];
	struct stat st;
	int rc = ST_OK;
	if (!cc->enabled)
		return ST_OK;
	snprintf(boot, sizeof boot, "%s.bootstrap", cfg->data_dir);
	snprintf(old, sizeof old, "%s.strata-replaced", cfg->data_dir);
	snprintf(path, sizeof path, "%s/READY", boot);
	bool ready = stat(path, &st) == 0;
	struct st_repl_keep keep;
	int member = read_resnapshot(cfg->data_dir, &keep);
	if (member < 0)
		return st_seterr(err, ST_ECORRUPT, "%s/%s is damaged: remove the data directory "
				 "and rejoin under a new id", cfg->data_dir, RESNAP_NAME);
	if (ready && stat(cfg->data_dir, &st) != 0 && stat(old, &st) == 0) {
		member = 1; /* a member's install cut short between its two renames */
		goto install;
	}
	if (!member) {
		cl_rm_tree(old); /* a member's install that completed */
		snprintf(path, sizeof path, "%s/store/data.mdb", cfg->data_dir);
		if (!cc->join || stat(path, &st) == 0)
			return ST_OK; /* not joining, or joined already */
	} else {
		sd_log(SD_LOG_WARN, "bootstrap: node %llu fell behind the leader's vacuum: starting "
		       "again from a peer's snapshot under the same id (epoch %llu and vote kept; "
		       "the snapshot must reach LSN %llu)", (unsigned long long)cc->node_id,
		       (unsigned long long)keep.epoch, (unsigned long long)keep.last);
	}
	if (!ready && (rc = fetch_and_adopt(cfg, boot, member ? &keep : NULL, err)) != ST_OK)
		return rc;
install:
	/* A new node: one rename over its empty directory. A member: its old
	 * directory moved aside first (a kill -9 between the two renames is
	 * finished at the next start), then removed. */
	if (member) {
		if (stat(cfg->data_dir, &st) == 0 && (rename(cfg->data_dir, old) != 0 ||
						       st_io_fsync_dir(&st_io_posix, old) != 0))
			return st_seterr(err, errno, "cannot move %s aside: %s", cfg->data_dir,
					 strerror(errno));
	} else {
		rmdir(cfg->data_dir); /* an empty one; anything else makes the rename fail */
	}
	if (rename(boot, cfg->data_dir) != 0 || st_io_fsync_dir(&st_io_posix, cfg->data_dir) != 0)
		return st_seterr(err, errno, "cannot install the snapshot as %s: %s (is it a "
				 "non-empty directory?)", cfg->data_dir, strerror(errno));
	snprintf(path, sizeof path, "%s/READY", cfg->data_dir);
	unlink(path);
	snprintf(path, sizeof path, "%s/MANIFEST", cfg->data_dir);
	unlink(path);
	cl_rm_tree(old);
	sd_log(SD_LOG_INFO, "bootstrap: the snapshot is installed as %s; replaying the log from "
	       "its LSN", cfg->data_dir);
	return ST_OK;
}
