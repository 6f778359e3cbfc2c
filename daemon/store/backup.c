/*
 * daemon/store/backup.c — online backups and restores (STORE.md §9).
 *
 * A backup is a data directory of its own: store/data.mdb (a compacted copy
 * of LMDB, mdb_env_copy2), tables/<tid>/<fid>.seg (every segment file a
 * file record of the copy names, hard-linked when the backup is on the same
 * file system, copied otherwise; each read whole and checked against the
 * size and CRC32C of its record), and MANIFEST (each file's name, size and
 * CRC32C, and the chain head of the copy), written last: a directory
 * without MANIFEST is an unfinished backup. While a backup runs, vacuum
 * keeps every file (the copy's snapshot may name any of them).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "daemon/store/store_int.h"
#include "format/crc32c.h"
#include "format/io.h"

#define MANIFEST_MAGIC "strata-backup 1"

static int sys_err(struct st_err *err, const char *what, const char *path)
{
	int e = errno ? errno : EIO;
	return st_seterr(err, e, "%s %s: %s", what, path, strerror(e));
}

int store_file_crc(const char *path, uint32_t *crc, uint64_t *size, struct st_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sys_err(err, "cannot open", path);
	static _Thread_local uint8_t buf[1 << 16];
	ssize_t n;
	*crc = 0;
	*size = 0;
	while ((n = read(fd, buf, sizeof buf)) > 0) {
		*crc = st_crc32c(*crc, buf, (size_t)n);
		*size += (uint64_t)n;
	}
	int rc = n < 0 ? sys_err(err, "cannot read", path) : ST_OK;
	close(fd);
	return rc;
}

/* Copy from to to (created, fsynced). */
static int copy_file(const char *from, const char *to, struct st_err *err)
{
	int in = open(from, O_RDONLY | O_CLOEXEC), out = -1, rc = ST_OK;
	if (in < 0)
		return sys_err(err, "cannot open", from);
	if ((out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0) {
		rc = sys_err(err, "cannot create", to);
		goto out;
	}
	static _Thread_local uint8_t buf[1 << 16];
	ssize_t n;
	uint64_t off = 0;
	int e;
	for (; (n = read(in, buf, sizeof buf)) > 0; off += (uint64_t)n)
		if ((e = st_io_write_all(&st_io_posix, out, buf, (size_t)n, off)) != 0) {
			rc = st_seterr(err, e, "cannot write %s: %s", to, strerror(e));
			goto out;
		}
	if (n < 0)
		rc = sys_err(err, "cannot read", from);
	else if (fsync(out) != 0)
		rc = sys_err(err, "cannot fsync", to);
out:
	close(in);
	if (out >= 0)
		close(out);
	return rc;
}

/* to as a hard link to from, or a copy when they are on different file
 * systems (or links are refused). */
static int link_or_copy(const char *from, const char *to, struct st_err *err)
{
	if (link(from, to) == 0)
		return ST_OK;
	if (errno != EXDEV && errno != EPERM && errno != EMLINK && errno != ENOTSUP)
		return sys_err(err, "cannot link", to);
	return copy_file(from, to, err);
}

/* fsync directory path itself (st_io_fsync_dir syncs a path's parent). */
static int sync_dir(const char *path, struct st_err *err)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = ST_OK;
	if (fd < 0 || fsync(fd) != 0)
		rc = sys_err(err, "cannot fsync", path);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* An empty (or new) directory at path. */
static int empty_dir(const char *path, struct st_err *err)
{
	if (mkdir(path, 0755) == 0)
		return ST_OK;
	if (errno != EEXIST)
		return sys_err(err, "cannot create", path);
	DIR *d = opendir(path);
	if (!d)
		return sys_err(err, "cannot open", path);
	struct dirent *e;
	bool empty = true;
	while (empty && (e = readdir(d)))
		empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
	closedir(d);
	return empty ? ST_OK : st_seterr(err, ST_EEXIST, "%s is not empty: a backup or a restore "
					 "goes into a new or empty directory", path);
}

struct manifest {
	FILE *f;
	uint64_t files, bytes;
};

static int manifest_add(struct manifest *m, const char *dir, const char *rel, uint64_t want_size,
			uint32_t want_crc, bool check, struct st_err *err)
{
	char path[PATH_MAX];
	uint32_t crc;
	uint64_t size;
	snprintf(path, sizeof path, "%s/%s", dir, rel);
	int rc = store_file_crc(path, &crc, &size, err);
	if (rc != ST_OK)
		return rc;
	if (check && (size != want_size || crc != want_crc))
		return st_seterr(err, ST_ECORRUPT, "%s: %" PRIu64 " bytes, CRC32C %08x; its record "
				 "says %" PRIu64 " and %08x: the store's copy is damaged (strata "
				 "verify names its table)", rel, size, crc, want_size, want_crc);
	fprintf(m->f, "file %s %" PRIu64 " %08x\n", rel, size, crc);
	m->files++;
	m->bytes += size;
	return ST_OK;
}

/* Every segment file the copy's records name: linked or copied from s,
 * checked, listed in the manifest. */
static int take_segments(st_store *s, st_store *b, const char *dir, struct manifest *m,
			 struct st_err *err)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	int mrc = store_read_begin(b, &txn), rc = ST_OK;
	if (mrc != 0)
		return store_lmdb_err(err, mrc, "reading the backup's copy");
	if ((mrc = mdb_cursor_open(txn, b->dbi, &cur)) != 0) {
		store_read_end(b, txn);
		return store_lmdb_err(err, mrc, "reading the backup's copy");
	}
	uint8_t start[1] = {KEY_TABLE};
	MDB_val k = {1, start}, v;
	uint64_t made_tid = UINT64_MAX;
	for (mrc = store_cget(b, cur, &k, &v, MDB_SET_RANGE); mrc == 0 && rc == ST_OK;
	     mrc = store_cget(b, cur, &k, &v, MDB_NEXT)) {
		const uint8_t *p = k.mv_data;
		if (p[0] != KEY_TABLE)
			break;
		if (k.mv_size != FILE_KEY_LEN || p[9] != REC_FILE)
			continue;
		struct file_rec f;
		uint64_t tid = key_tid(&k);
		if ((rc = file_rec_decode(file_key_fid(&k), v.mv_data, v.mv_size, &f)) != ST_OK) {
			rc = st_seterr(err, ST_ECORRUPT, "table id %" PRIu64 ": file record %" PRIu64
				       " is damaged", tid, file_key_fid(&k));
			break;
		}
		if (!(f.flags & 1)) {
			char rel[64], from[PATH_MAX], to[PATH_MAX];
			snprintf(rel, sizeof rel, "tables/%016" PRIx64, tid);
			snprintf(to, sizeof to, "%s/%s", dir, rel);
			if (tid != made_tid && mkdir(to, 0755) != 0 && errno != EEXIST)
				rc = sys_err(err, "cannot create", to);
			made_tid = tid;
			snprintf(rel, sizeof rel, "tables/%016" PRIx64 "/%016" PRIx64 ".seg", tid, f.fid);
			snprintf(to, sizeof to, "%s/%s", dir, rel);
			store_seg_path(s, tid, f.fid, from, sizeof from);
			if (rc == ST_OK)
				rc = link_or_copy(from, to, err);
			if (rc == ST_OK)
				rc = manifest_add(m, dir, rel, f.size, f.crc, true, err);
			if (rc == ST_ECORRUPT)
				store_damage_segment(s, tid, &f, err->msg);
		}
		file_rec_fini(&f);
	}
	if (rc == ST_OK && mrc != 0 && mrc != MDB_NOTFOUND)
		rc = store_lmdb_err(err, mrc, "reading the backup's copy");
	mdb_cursor_close(cur);
	store_read_end(b, txn);
	return rc;
}

/* Fsync every directory of the backup (tables/<tid>, tables, store, dir). */
static int sync_dirs(const char *dir, struct st_err *err)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/tables", dir);
	DIR *d = opendir(path);
	struct dirent *e;
	int rc = ST_OK;
	while (d && rc == ST_OK && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char sub[PATH_MAX];
		snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
		rc = sync_dir(sub, err);
	}
	if (d)
		closedir(d);
	const char *parts[] = {"tables", "store", ""};
	for (size_t i = 0; rc == ST_OK && i < 3; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, parts[i]);
		rc = sync_dir(path, err);
	}
	return rc;
}

int st_backup(st_store *s, const char *dir, struct st_backup_result *res, struct st_err *err)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	int rc, mrc;
	st_store *b = NULL;
	struct manifest m = {0};
	memset(res, 0, sizeof *res);
	if (dir[0] != '/')
		return st_seterr(err, ST_EINVAL, "backup directory '%s' is not an absolute path", dir);
	if ((rc = empty_dir(dir, err)) != ST_OK)
		return rc;
	snprintf(path, sizeof path, "%s/store", dir);
	snprintf(tmp, sizeof tmp, "%s/tables", dir);
	if (mkdir(path, 0755) != 0 || mkdir(tmp, 0755) != 0)
		return sys_err(err, "cannot create", path);
	pthread_mutex_lock(&s->pin_lock);
	s->backups++; /* vacuum keeps every file from here (vacuum.c) */
	pthread_mutex_unlock(&s->pin_lock);
	if ((mrc = mdb_env_copy2(s->env, path, MDB_CP_COMPACT)) != 0) {
		rc = st_seterr(err, mrc > 0 ? mrc : ST_EFAILED, "copying LMDB to %s: %s", path,
			       mdb_strerror(mrc));
		goto out;
	}
	/* The copy is a store: open it to read its records and chain head. */
	if ((rc = st_store_open(dir, NULL, &b, err)) != ST_OK)
		goto out;
	struct st_chain_head head;
	if ((rc = st_chain_head(b, &head, err)) != ST_OK)
		goto out;
	snprintf(tmp, sizeof tmp, "%s/MANIFEST.tmp", dir);
	if (!(m.f = fopen(tmp, "w"))) {
		rc = sys_err(err, "cannot create", tmp);
		goto out;
	}
	char hex[2 * ST_HASH_LEN + 1];
	sodium_bin2hex(hex, sizeof hex, head.hash, ST_HASH_LEN);
	fprintf(m.f, "%s\nlsn %" PRIu64 "\nhash %s\n", MANIFEST_MAGIC, head.lsn, hex);
	if ((rc = take_segments(s, b, dir, &m, err)) != ST_OK)
		goto out;
	st_store_close(b);
	b = NULL;
	char lock[PATH_MAX];
	snprintf(lock, sizeof lock, "%s/strata.lock", dir);
	unlink(lock); /* the copy's open made it; a restore makes its own */
	snprintf(lock, sizeof lock, "%s/store/lock.mdb", dir);
	unlink(lock);
	if ((rc = manifest_add(&m, dir, "store/data.mdb", 0, 0, false, err)) != ST_OK)
		goto out;
	if (fflush(m.f) != 0 || fsync(fileno(m.f)) != 0) {
		rc = sys_err(err, "cannot write", tmp);
		goto out;
	}
	fclose(m.f);
	m.f = NULL;
	snprintf(path, sizeof path, "%s/MANIFEST", dir);
	if ((rc = sync_dirs(dir, err)) != ST_OK)
		goto out;
	if (rename(tmp, path) != 0) {
		rc = sys_err(err, "cannot write", path);
		goto out;
	}
	if ((rc = sync_dir(dir, err)) != ST_OK)
		goto out;
	res->lsn = head.lsn;
	memcpy(res->hash, head.hash, ST_HASH_LEN);
	res->files = m.files;
	res->bytes = m.bytes;
out:
	if (m.f)
		fclose(m.f);
	st_store_close(b);
	pthread_mutex_lock(&s->pin_lock);
	s->backups--;
	pthread_mutex_unlock(&s->pin_lock);
	return rc;
}

int st_backup_check(const char *dir, struct st_backup_result *res, char ***problems,
		    uint32_t *nproblems, struct st_err *err)
{
	char path[PATH_MAX], line[PATH_MAX + 64];
	memset(res, 0, sizeof *res);
	*problems = NULL;
	*nproblems = 0;
	snprintf(path, sizeof path, "%s/MANIFEST", dir);
	FILE *f = fopen(path, "r");
	if (!f)
		return errno == ENOENT ? st_seterr(err, ST_ENOTFOUND, "%s has no MANIFEST: not a "
						   "backup, or an unfinished one", dir)
				       : sys_err(err, "cannot open", path);
	int rc = ST_OK;
	if (!fgets(line, sizeof line, f) || strncmp(line, MANIFEST_MAGIC, strlen(MANIFEST_MAGIC))) {
		fclose(f);
		return st_seterr(err, ST_ECORRUPT, "%s: not a strata backup manifest", path);
	}
	while (fgets(line, sizeof line, f)) {
		char rel[PATH_MAX], hex[2 * ST_HASH_LEN + 2];
		uint64_t size;
		unsigned crc;
		char *msg = NULL;
		if (sscanf(line, "lsn %" SCNu64, &res->lsn) == 1)
			continue;
		if (sscanf(line, "hash %64s", hex) == 1) {
			for (int i = 0; i < ST_HASH_LEN && strlen(hex) == 2 * ST_HASH_LEN; i++)
				sscanf(hex + 2 * i, "%2hhx", &res->hash[i]);
			continue;
		}
		if (sscanf(line, "file %4095s %" SCNu64 " %x", rel, &size, &crc) != 3 ||
		    strstr(rel, "..")) {
			if (asprintf(&msg, "MANIFEST: a line is malformed: %.200s", line) < 0)
				msg = NULL;
		} else {
			char p[PATH_MAX + 8];
			uint32_t got;
			uint64_t got_size;
			struct st_err e;
			snprintf(p, sizeof p, "%s/%s", dir, rel);
			res->files++;
			res->bytes += size;
			if (store_file_crc(p, &got, &got_size, &e) != ST_OK) {
				if (asprintf(&msg, "%s: %s", rel, e.msg) < 0)
					msg = NULL;
			} else if (got_size != size || got != crc) {
				if (asprintf(&msg, "%s: %" PRIu64 " bytes, CRC32C %08x; the manifest says "
					     "%" PRIu64 " and %08x", rel, got_size, got, size, crc) < 0)
					msg = NULL;
			}
		}
		if (msg) {
			char **g = realloc(*problems, (*nproblems + 1) * sizeof *g);
			if (!g) {
				free(msg);
				rc = st_seterr(err, ST_ENOMEM, "out of memory");
				break;
			}
			*problems = g;
			g[(*nproblems)++] = msg;
		}
	}
	fclose(f);
	return rc;
}

/* Copy every file of dir into to (same layout), each fsynced. */
static int copy_tree(const char *dir, const char *to, const char *rel, struct st_err *err)
{
	char from[PATH_MAX], dst[PATH_MAX];
	snprintf(from, sizeof from, "%s%s%s", dir, rel[0] ? "/" : "", rel);
	snprintf(dst, sizeof dst, "%s%s%s", to, rel[0] ? "/" : "", rel);
	if (rel[0] && mkdir(dst, 0755) != 0 && errno != EEXIST)
		return sys_err(err, "cannot create", dst);
	DIR *d = opendir(from);
	if (!d)
		return sys_err(err, "cannot open", from);
	struct dirent *e;
	int rc = ST_OK;
	while (rc == ST_OK && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
		    !strcmp(e->d_name, "MANIFEST") || !strcmp(e->d_name, "strata.lock") ||
		    !strcmp(e->d_name, "lock.mdb"))
			continue;
		char sub[PATH_MAX], p[PATH_MAX + 8];
		snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
		snprintf(p, sizeof p, "%s/%s", dir, sub);
		struct stat st;
		if (lstat(p, &st) != 0)
			rc = sys_err(err, "cannot stat", p);
		else if (S_ISDIR(st.st_mode))
			rc = copy_tree(dir, to, sub, err);
		else if (S_ISREG(st.st_mode)) {
			char q[PATH_MAX + 8];
			snprintf(q, sizeof q, "%s/%s", to, sub);
			rc = copy_file(p, q, err);
		}
	}
	closedir(d);
	return rc == ST_OK ? sync_dir(dst, err) : rc;
}

int st_restore_from(const char *backup, const char *data_dir, struct st_backup_result *res,
		    struct st_err *err)
{
	char **problems = NULL;
	uint32_t np = 0;
	int rc = st_backup_check(backup, res, &problems, &np, err);
	if (rc == ST_OK && np)
		rc = st_seterr(err, ST_ECORRUPT, "the backup in %s is damaged: %s%s", backup,
			       problems[0], np > 1 ? " (and more: strata verify --data-dir names them)"
						   : "");
	for (uint32_t i = 0; i < np; i++)
		free(problems[i]);
	free(problems);
	if (rc != ST_OK)
		return rc;
	struct stat st;
	if (stat(data_dir, &st) == 0)
		return st_seterr(err, ST_EEXIST, "data directory %s exists: a restore makes a new one",
				 data_dir);
	char tmp[PATH_MAX], parent[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s.restoring", data_dir);
	snprintf(parent, sizeof parent, "%s", data_dir);
	char *slash = strrchr(parent, '/');
	if (slash && slash != parent)
		*slash = 0;
	else
		snprintf(parent, sizeof parent, "%s", slash ? "/" : ".");
	if (stat(tmp, &st) == 0)
		return st_seterr(err, ST_EEXIST, "%s is left from an earlier restore that did not "
				 "finish: remove it and restore again", tmp);
	if (mkdir(tmp, 0755) != 0)
		return sys_err(err, "cannot create", tmp);
	if ((rc = copy_tree(backup, tmp, "", err)) != ST_OK)
		return rc;
	if (rename(tmp, data_dir) != 0 || st_io_fsync_dir(&st_io_posix, parent) != 0)
		return sys_err(err, "cannot rename into", data_dir);
	return ST_OK;
}
