/*
 * tests/fault/cutfs.c — a power-cut filesystem (the idea of Jepsen's LazyFS).
 *
 *   cutfs BACKING_DIR MOUNTPOINT [--flush-on-exit] [-f] [-d] [-o OPT]
 *   cutfs --help
 *
 * A FUSE filesystem that passes everything through to BACKING_DIR except
 * file data that has not been made durable. Killing cutfs with SIGKILL (then
 * `fusermount3 -u -z MOUNTPOINT` and starting it again on the same backing
 * directory) loses exactly the un-synced data: a power cut.
 *
 * Spec
 * ----
 * Metadata is applied to the backing directory at once and is durable:
 * mkdir, rmdir, mknod, create (the backing file is created, size 0),
 * unlink, rename (RENAME_NOREPLACE and RENAME_EXCHANGE are passed to
 * renameat2, other flags are EINVAL), link, symlink, chmod, chown, utimens,
 * truncate/ftruncate and open(O_TRUNC), statfs, readdir, access, readlink.
 * fsyncdir is a no-op (directory entries are durable at once).
 *
 * File data lives in an overlay per backing inode (st_dev, st_ino), so a
 * rename keeps it and hard links share it. The overlay holds dirty 4 KiB
 * pages (a page is read from the backing file when it is first dirtied,
 * then the write is applied to it) and a logical size, max(backing size,
 * highest byte written); the backing size never exceeds it.
 *  - write: into the overlay pages. Through a handle opened with O_SYNC or
 *    O_DSYNC the data goes to the backing file at once (and into the
 *    overlay pages it covers, if any).
 *  - read: a dirty page from the overlay, else the backing file, zeros in
 *    holes; never past the logical size.
 *  - getattr: the backing lstat/fstat, st_size the logical size (and
 *    st_blocks at least covering it) when the file has dirty data.
 *  - fsync/fdatasync (either datasync value): every dirty page of the file
 *    is written to the backing file, whose size is set to the logical size;
 *    then the pages are freed. The backing filesystem is not fsync'd.
 *  - truncate: the backing file at once; overlay pages past the new size
 *    are dropped, the one holding the new end zeroed past it.
 *  - fallocate mode 0: applied to the backing file at once (the new range
 *    reads zeros); other modes are EOPNOTSUPP.
 *  - flush/release (close) write nothing back.
 *  - unmount (destroy: SIGTERM, SIGINT, fusermount3 -u) drops the dirty
 *    data like a power cut, unless --flush-on-exit, which writes it back.
 *  - SIGUSR1 prints "cutfs: N dirty pages in M files" to stderr.
 *  - SIGUSR2 turns the I/O-error mode on, the next SIGUSR2 off again
 *    (each prints "cutfs: I/O errors on|off" to stderr). While it is on,
 *    writes fail in turn with EIO and as short writes (half the bytes,
 *    at least one, are written to the overlay; the caller is told that
 *    count), and every fsync/fdatasync fails with EIO after dropping the
 *    file's dirty pages: Linux's behaviour when writeback fails (the data
 *    is gone, the error is reported once). Reads and metadata work.
 * An overlay is freed when it has no open handle and either no dirty data
 * or no name left (the backing nlink is 0). While it has dirty data it
 * keeps a backing descriptor open, so the inode number cannot be reused.
 * Errors are -errno of the backing call; allocation failures -ENOMEM.
 *
 * Not modelled: the durability of directory entries (they are durable at
 * once, fsyncdir or not), mtime/ctime of un-synced writes (the backing
 * times until the write-back), torn or reordered writes within an fsync,
 * xattrs, and an fsync that the kernel issues by itself after an O_DSYNC
 * write flushes the whole file, not just the range written. The files are
 * created as the cutfs user (root), not the caller.
 *
 * Kernel caching: attribute, entry and negative timeouts are 0,
 * kernel_cache and the writeback cache are off, no direct_io, so mmap
 * works (the page cache is written through by write(2)).
 * One global mutex guards the overlay state; ops that touch no overlay are
 * plain pass-through.
 */
#define FUSE_USE_VERSION 31
#include <fuse.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <unistd.h>

enum { CUT_PAGE = 4096, CUT_BUCKETS = 64 };

/* One dirty page of a file. The whole page is valid (read from the backing
 * file when first dirtied); bytes past the logical size are zero. */
struct page {
	uint64_t idx;
	struct page *next;
	unsigned char data[CUT_PAGE];
};

/* The overlay of one backing inode: exists while the file is open or has
 * dirty data. */
struct node {
	dev_t dev;
	ino_t ino;
	int nopen;		/* open handles */
	int fd;			/* backing, read-write; -1 until first dirtied */
	bool dirty;		/* size and pages are meaningful */
	off_t size;		/* logical size while dirty */
	struct page **buckets;	/* hash: idx & (nbuckets - 1) */
	size_t nbuckets;
	size_t npages;
	struct node *next;
};

/* One open file (fi->fh). */
struct handle {
	int fd;			/* backing; read-write unless opened O_RDONLY */
	bool sync;		/* opened O_SYNC or O_DSYNC */
	struct node *node;	/* NULL for a non-regular file */
};

static struct cutfs {
	pthread_mutex_t lock;
	int root;		/* the backing directory */
	int flush_on_exit;
	struct node *nodes;
	pthread_t sig_thread;
	bool sig_started;
	bool eio;		/* the I/O-error mode (SIGUSR2) */
	unsigned long writes;	/* writes seen in it: odd EIO, even short */
} fs = { .lock = PTHREAD_MUTEX_INITIALIZER, .root = -1 };

static void lock(void) { pthread_mutex_lock(&fs.lock); }
static void unlock(void) { pthread_mutex_unlock(&fs.lock); }

/* The FUSE path "/a/b" relative to the backing directory. */
static const char *rel(const char *path)
{
	if (path == NULL)
		return ".";
	while (*path == '/')
		path++;
	return *path ? path : ".";
}

static struct handle *handle_of(const struct fuse_file_info *fi)
{
	return (struct handle *)(uintptr_t)fi->fh;
}

/* Reads up to len bytes at off: the count read (short at EOF) or -errno. */
static ssize_t pread_full(int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t r = pread(fd, (char *)buf + done, len - done,
				  off + (off_t)done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

/* Writes all len bytes at off: 0 or -errno. */
static int pwrite_full(int fd, const void *buf, size_t len, off_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t r = pwrite(fd, (const char *)buf + done, len - done,
				   off + (off_t)done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		done += (size_t)r;
	}
	return 0;
}

/* ---- the page table of a node ---- */

static struct page *page_find(const struct node *n, uint64_t idx)
{
	if (n->nbuckets == 0)
		return NULL;
	struct page *p = n->buckets[idx & (n->nbuckets - 1)];
	while (p != NULL && p->idx != idx)
		p = p->next;
	return p;
}

static void page_link(struct page **buckets, size_t nbuckets, struct page *p)
{
	struct page **b = &buckets[p->idx & (nbuckets - 1)];
	p->next = *b;
	*b = p;
}

/* Doubles the table (or makes the first): 0 or -ENOMEM. */
static int table_grow(struct node *n)
{
	size_t nb = n->nbuckets ? n->nbuckets * 2 : CUT_BUCKETS;
	struct page **b = calloc(nb, sizeof *b);
	if (b == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n->nbuckets; i++) {
		struct page *p = n->buckets[i];
		while (p != NULL) {
			struct page *next = p->next;
			page_link(b, nb, p);
			p = next;
		}
	}
	free(n->buckets);
	n->buckets = b;
	n->nbuckets = nb;
	return 0;
}

/* The dirty page idx, read from the backing file if it is new. */
static int page_get(struct node *n, uint64_t idx, struct page **out)
{
	struct page *p = page_find(n, idx);
	if (p != NULL) {
		*out = p;
		return 0;
	}
	if (n->npages >= n->nbuckets * 2) {
		int rc = table_grow(n);
		if (rc != 0)
			return rc;
	}
	p = malloc(sizeof *p);
	if (p == NULL)
		return -ENOMEM;
	ssize_t r = pread_full(n->fd, p->data, CUT_PAGE, (off_t)(idx * CUT_PAGE));
	if (r < 0) {
		free(p);
		return (int)r;
	}
	memset(p->data + r, 0, CUT_PAGE - (size_t)r);
	p->idx = idx;
	page_link(n->buckets, n->nbuckets, p);
	n->npages++;
	*out = p;
	return 0;
}

/* Frees the pages for which drop(page, size) holds. */
static void pages_drop(struct node *n, bool (*drop)(const struct page *, off_t),
		       off_t size)
{
	for (size_t i = 0; i < n->nbuckets; i++) {
		struct page **pp = &n->buckets[i];
		while (*pp != NULL) {
			struct page *p = *pp;
			if (!drop(p, size)) {
				pp = &p->next;
				continue;
			}
			*pp = p->next;
			free(p);
			n->npages--;
		}
	}
}

static bool drop_all(const struct page *p, off_t size)
{
	(void)p;
	(void)size;
	return true;
}

static bool drop_past(const struct page *p, off_t size)
{
	return (off_t)(p->idx * CUT_PAGE) >= size;
}

/* ---- nodes ---- */

static struct node *node_find(dev_t dev, ino_t ino)
{
	struct node *n = fs.nodes;
	while (n != NULL && !(n->dev == dev && n->ino == ino))
		n = n->next;
	return n;
}

static struct node *node_get(dev_t dev, ino_t ino)
{
	struct node *n = node_find(dev, ino);
	if (n != NULL)
		return n;
	n = calloc(1, sizeof *n);
	if (n == NULL)
		return NULL;
	n->dev = dev;
	n->ino = ino;
	n->fd = -1;
	n->next = fs.nodes;
	fs.nodes = n;
	return n;
}

static void node_free(struct node *n)
{
	struct node **pp = &fs.nodes;
	while (*pp != n)
		pp = &(*pp)->next;
	*pp = n->next;
	pages_drop(n, drop_all, 0);
	free(n->buckets);
	if (n->fd >= 0)
		close(n->fd);
	free(n);
}

/* Frees n if no handle has it open and it has no dirty data or no name. */
static void node_maybe_free(struct node *n)
{
	struct stat st;
	if (n->nopen > 0)
		return;
	if (n->dirty && fstat(n->fd, &st) == 0 && st.st_nlink > 0)
		return;
	node_free(n);
}

/* The node of the backing inode that was at a path, if any, after that
 * name went away (unlink, rename over it). */
static void name_gone(const struct stat *st)
{
	if (!S_ISREG(st->st_mode))
		return;
	struct node *n = node_find(st->st_dev, st->st_ino);
	if (n != NULL)
		node_maybe_free(n);
}

/* Starts tracking dirty data: logical size = backing size. */
static int node_dirty_begin(struct node *n, int fd)
{
	struct stat st;
	if (n->dirty)
		return 0;
	if (n->fd < 0) {
		n->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		if (n->fd < 0)
			return -errno;
	}
	if (fstat(n->fd, &st) != 0)
		return -errno;
	n->size = st.st_size;
	n->dirty = true;
	return 0;
}

/* The part of [off, off + size) in page idx: offset in page and in buffer. */
static size_t span(uint64_t idx, off_t off, size_t size, size_t *in_page,
		   size_t *in_buf)
{
	off_t start = (off_t)(idx * CUT_PAGE), end = start + CUT_PAGE;
	off_t lo = off > start ? off : start;
	off_t hi = off + (off_t)size < end ? off + (off_t)size : end;
	*in_page = (size_t)(lo - start);
	*in_buf = (size_t)(lo - off);
	return (size_t)(hi - lo);
}

static int overlay_write(struct node *n, int fd, const char *buf, size_t size,
			 off_t off)
{
	struct page *p;
	size_t in_page, in_buf;
	if (size == 0)
		return 0;
	int rc = node_dirty_begin(n, fd);
	uint64_t first = (uint64_t)off / CUT_PAGE;
	uint64_t last = ((uint64_t)off + size - 1) / CUT_PAGE;
	/* every page first, so that a failure changes nothing visible */
	for (uint64_t i = first; rc == 0 && i <= last; i++)
		rc = page_get(n, i, &p);
	if (rc != 0)
		return rc;
	for (uint64_t i = first; i <= last; i++) {
		p = page_find(n, i);
		size_t len = span(i, off, size, &in_page, &in_buf);
		memcpy(p->data + in_page, buf + in_buf, len);
	}
	if (off + (off_t)size > n->size)
		n->size = off + (off_t)size;
	return (int)size;
}

/* An O_SYNC/O_DSYNC write: to the backing file, and the dirty pages. */
static int sync_write(struct handle *h, const char *buf, size_t size, off_t off)
{
	size_t in_page, in_buf;
	int rc = pwrite_full(h->fd, buf, size, off);
	struct node *n = h->node;
	if (rc != 0 || n == NULL || !n->dirty || size == 0)
		return rc != 0 ? rc : (int)size;
	uint64_t last = ((uint64_t)off + size - 1) / CUT_PAGE;
	for (uint64_t i = (uint64_t)off / CUT_PAGE; i <= last; i++) {
		struct page *p = page_find(n, i);
		size_t len = span(i, off, size, &in_page, &in_buf);
		if (p != NULL)
			memcpy(p->data + in_page, buf + in_buf, len);
	}
	if (off + (off_t)size > n->size)
		n->size = off + (off_t)size;
	return (int)size;
}

static int overlay_read(const struct node *n, int fd, char *buf, size_t size,
			off_t off)
{
	if (off >= n->size)
		return 0;
	if ((off_t)size > n->size - off)
		size = (size_t)(n->size - off);
	for (size_t done = 0; done < size;) {
		off_t pos = off + (off_t)done;
		uint64_t idx = (uint64_t)pos / CUT_PAGE;
		size_t in = (size_t)(pos % CUT_PAGE);
		size_t len = CUT_PAGE - in < size - done ? CUT_PAGE - in : size - done;
		const struct page *p = page_find(n, idx);
		if (p != NULL) {
			memcpy(buf + done, p->data + in, len);
		} else {
			ssize_t r = pread_full(fd, buf + done, len, pos);
			if (r < 0)
				return (int)r;
			memset(buf + done + r, 0, len - (size_t)r);
		}
		done += len;
	}
	return (int)size;
}

/* Makes the file's dirty data durable: backing size, then the pages. */
static int writeback(struct node *n)
{
	struct stat st;
	if (!n->dirty)
		return 0;
	if (fstat(n->fd, &st) != 0)
		return -errno;
	if (st.st_size != n->size && ftruncate(n->fd, n->size) != 0)
		return -errno;
	for (size_t i = 0; i < n->nbuckets; i++) {
		for (const struct page *p = n->buckets[i]; p != NULL; p = p->next) {
			off_t base = (off_t)(p->idx * CUT_PAGE);
			if (base >= n->size)
				continue;
			size_t len = n->size - base < CUT_PAGE ?
				(size_t)(n->size - base) : CUT_PAGE;
			int rc = pwrite_full(n->fd, p->data, len, base);
			if (rc != 0)
				return rc;
		}
	}
	pages_drop(n, drop_all, 0);
	n->dirty = false;
	return 0;
}

/* After the backing file was truncated to size. */
static void node_trim(struct node *n, off_t size)
{
	if (!n->dirty)
		return;
	pages_drop(n, drop_past, size);
	struct page *p = page_find(n, (uint64_t)size / CUT_PAGE);
	if (p != NULL)
		memset(p->data + size % CUT_PAGE, 0, CUT_PAGE - size % CUT_PAGE);
	n->size = size;
}

/* ---- file operations ---- */

static int cut_getattr(const char *path, struct stat *st,
		       struct fuse_file_info *fi)
{
	int rc = fi ? fstat(handle_of(fi)->fd, st) :
		fstatat(fs.root, rel(path), st, AT_SYMLINK_NOFOLLOW);
	if (rc != 0)
		return -errno;
	if (!S_ISREG(st->st_mode))
		return 0;
	lock();
	const struct node *n = node_find(st->st_dev, st->st_ino);
	if (n != NULL && n->dirty) {
		blkcnt_t blocks = (n->size + 511) / 512;
		st->st_size = n->size;
		if (st->st_blocks < blocks)
			st->st_blocks = blocks;
	}
	unlock();
	return 0;
}

/* The backing open flags: no O_APPEND (the kernel gives the offsets), no
 * sync or direct flags (remembered in the handle), write-only as
 * read-write (pages are read when first dirtied). */
static int backing_flags(int flags)
{
	flags &= ~(O_APPEND | O_SYNC | O_DSYNC | O_DIRECT | O_NOCTTY);
	if ((flags & O_ACCMODE) == O_WRONLY)
		flags = (flags & ~O_ACCMODE) | O_RDWR;
	return flags | O_CLOEXEC;
}

/* Wraps an opened backing fd in a handle (closing it on failure). */
static int handle_new(int fd, struct fuse_file_info *fi)
{
	struct stat st;
	struct handle *h = calloc(1, sizeof *h);
	int rc = h == NULL ? -ENOMEM : fstat(fd, &st) != 0 ? -errno : 0;
	lock();
	if (rc == 0 && S_ISREG(st.st_mode)) {
		h->node = node_get(st.st_dev, st.st_ino);
		rc = h->node == NULL ? -ENOMEM : 0;
	}
	if (rc == 0 && h->node != NULL) {
		h->node->nopen++;
		if (fi->flags & O_TRUNC)
			node_trim(h->node, 0);
	}
	unlock();
	if (rc != 0) {
		free(h);
		close(fd);
		return rc;
	}
	h->fd = fd;
	h->sync = (fi->flags & O_DSYNC) != 0;
	fi->fh = (uint64_t)(uintptr_t)h;
	return 0;
}

static int cut_open(const char *path, struct fuse_file_info *fi)
{
	int fd = openat(fs.root, rel(path), backing_flags(fi->flags));
	return fd < 0 ? -errno : handle_new(fd, fi);
}

static int cut_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	int fd = openat(fs.root, rel(path), backing_flags(fi->flags) | O_CREAT,
			mode);
	return fd < 0 ? -errno : handle_new(fd, fi);
}

static int cut_read(const char *path, char *buf, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	(void)path;
	struct handle *h = handle_of(fi);
	lock();
	int rc = h->node != NULL && h->node->dirty ?
		overlay_read(h->node, h->fd, buf, size, off) :
		(int)pread_full(h->fd, buf, size, off);
	unlock();
	return rc;
}

static int cut_write(const char *path, const char *buf, size_t size,
		     off_t off, struct fuse_file_info *fi)
{
	(void)path;
	struct handle *h = handle_of(fi);
	lock();
	if (fs.eio && size > 0 && fs.writes++ % 2 == 0) {
		unlock();
		return -EIO;
	}
	if (fs.eio && size > 1)
		size /= 2;	/* a short write */
	int rc = h->sync || h->node == NULL ? sync_write(h, buf, size, off) :
		overlay_write(h->node, h->fd, buf, size, off);
	unlock();
	return rc;
}

static int cut_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path;
	(void)datasync;
	struct handle *h = handle_of(fi);
	lock();
	int rc = 0;
	if (fs.eio) {
		if (h->node != NULL) {	/* the dirty data is lost */
			pages_drop(h->node, drop_all, 0);
			h->node->dirty = false;
		}
		rc = -EIO;
	} else if (h->node != NULL) {
		rc = writeback(h->node);
	}
	unlock();
	return rc;
}

static int cut_flush(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	(void)fi;
	return 0;	/* close is not durability */
}

static int cut_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	struct handle *h = handle_of(fi);
	lock();
	if (h->node != NULL) {
		h->node->nopen--;
		node_maybe_free(h->node);
	}
	unlock();
	close(h->fd);
	free(h);
	return 0;
}

static int cut_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct stat st;
	int fd = fi ? handle_of(fi)->fd :
		openat(fs.root, rel(path), O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	lock();
	int rc = ftruncate(fd, size) != 0 || fstat(fd, &st) != 0 ? -errno : 0;
	struct node *n = rc == 0 ? node_find(st.st_dev, st.st_ino) : NULL;
	if (n != NULL)
		node_trim(n, size);
	unlock();
	if (fi == NULL)
		close(fd);
	return rc;
}

static int cut_fallocate(const char *path, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	(void)path;
	struct handle *h = handle_of(fi);
	if (mode != 0)
		return -EOPNOTSUPP;
	lock();
	int rc = fallocate(h->fd, 0, off, len) != 0 ? -errno : 0;
	struct node *n = h->node;
	if (rc == 0 && n != NULL && n->dirty && off + len > n->size)
		n->size = off + len;
	unlock();
	return rc;
}

/* ---- metadata, straight to the backing directory ---- */

static int cut_unlink(const char *path)
{
	struct stat st;
	const char *p = rel(path);
	bool had = fstatat(fs.root, p, &st, AT_SYMLINK_NOFOLLOW) == 0;
	lock();
	int rc = unlinkat(fs.root, p, 0) != 0 ? -errno : 0;
	if (rc == 0 && had)
		name_gone(&st);
	unlock();
	return rc;
}

static int cut_rename(const char *from, const char *to, unsigned int flags)
{
	struct stat st;
	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	bool had = fstatat(fs.root, rel(to), &st, AT_SYMLINK_NOFOLLOW) == 0;
	lock();
	int rc = renameat2(fs.root, rel(from), fs.root, rel(to), flags) != 0 ?
		-errno : 0;
	if (rc == 0 && had && !(flags & RENAME_EXCHANGE))
		name_gone(&st);
	unlock();
	return rc;
}

static int cut_mkdir(const char *path, mode_t mode)
{
	return mkdirat(fs.root, rel(path), mode) != 0 ? -errno : 0;
}

static int cut_mknod(const char *path, mode_t mode, dev_t rdev)
{
	return mknodat(fs.root, rel(path), mode, rdev) != 0 ? -errno : 0;
}

static int cut_rmdir(const char *path)
{
	return unlinkat(fs.root, rel(path), AT_REMOVEDIR) != 0 ? -errno : 0;
}

static int cut_symlink(const char *target, const char *path)
{
	return symlinkat(target, fs.root, rel(path)) != 0 ? -errno : 0;
}

static int cut_link(const char *from, const char *to)
{
	return linkat(fs.root, rel(from), fs.root, rel(to), 0) != 0 ? -errno : 0;
}

static int cut_readlink(const char *path, char *buf, size_t size)
{
	if (size == 0)
		return -EINVAL;
	ssize_t r = readlinkat(fs.root, rel(path), buf, size - 1);
	if (r < 0)
		return -errno;
	buf[r] = '\0';
	return 0;
}

static int cut_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	int rc = fi ? fchmod(handle_of(fi)->fd, mode) :
		fchmodat(fs.root, rel(path), mode, 0);
	return rc != 0 ? -errno : 0;
}

static int cut_chown(const char *path, uid_t uid, gid_t gid,
		     struct fuse_file_info *fi)
{
	int rc = fi ? fchown(handle_of(fi)->fd, uid, gid) :
		fchownat(fs.root, rel(path), uid, gid, AT_SYMLINK_NOFOLLOW);
	return rc != 0 ? -errno : 0;
}

static int cut_utimens(const char *path, const struct timespec tv[2],
		       struct fuse_file_info *fi)
{
	int rc = fi ? futimens(handle_of(fi)->fd, tv) :
		utimensat(fs.root, rel(path), tv, AT_SYMLINK_NOFOLLOW);
	return rc != 0 ? -errno : 0;
}

static int cut_statfs(const char *path, struct statvfs *sv)
{
	(void)path;
	return fstatvfs(fs.root, sv) != 0 ? -errno : 0;
}

static int cut_access(const char *path, int mask)
{
	return faccessat(fs.root, rel(path), mask, 0) != 0 ? -errno : 0;
}

static int cut_opendir(const char *path, struct fuse_file_info *fi)
{
	int fd = openat(fs.root, rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		int e = errno;
		close(fd);
		return -e;
	}
	fi->fh = (uint64_t)(uintptr_t)d;
	return 0;
}

/* The whole directory in one go (offset 0: libfuse keeps the listing). */
static int cut_readdir(const char *path, void *buf, fuse_fill_dir_t fill,
		       off_t off, struct fuse_file_info *fi,
		       enum fuse_readdir_flags flags)
{
	(void)path;
	(void)off;
	(void)flags;
	DIR *d = (DIR *)(uintptr_t)fi->fh;
	rewinddir(d);
	for (;;) {
		errno = 0;
		const struct dirent *e = readdir(d);
		if (e == NULL)
			return -errno;
		struct stat st = { .st_ino = e->d_ino };
		st.st_mode = (mode_t)DTTOIF(e->d_type);
		if (fill(buf, e->d_name, &st, 0, 0) != 0)
			return -ENOMEM;
	}
}

static int cut_releasedir(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	closedir((DIR *)(uintptr_t)fi->fh);
	return 0;
}

static int cut_fsyncdir(const char *path, int datasync,
			struct fuse_file_info *fi)
{
	(void)path;
	(void)datasync;
	(void)fi;
	return 0;	/* directory entries are durable at once */
}

/* ---- SIGUSR1 report, init, destroy ---- */

static void report(void)
{
	size_t pages = 0, files = 0;
	lock();
	for (const struct node *n = fs.nodes; n != NULL; n = n->next) {
		pages += n->npages;
		files += n->dirty;
	}
	unlock();
	fprintf(stderr, "cutfs: %zu dirty pages in %zu files\n", pages, files);
}

/* A thread taking SIGUSR1 and SIGUSR2 (blocked in every other thread) with sigwait. */
static void *sig_main(void *arg)
{
	sigset_t set;
	int sig;
	(void)arg;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGUSR1) {
			report();
		} else {
			lock();
			fs.eio = !fs.eio;
			fs.writes = 0;
			bool on = fs.eio;
			unlock();
			fprintf(stderr, "cutfs: I/O errors %s\n", on ? "on" : "off");
		}
	}
	return NULL;
}

static void *cut_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	cfg->attr_timeout = 0;
	cfg->entry_timeout = 0;
	cfg->negative_timeout = 0;
	cfg->use_ino = 0;
	cfg->kernel_cache = 0;
	cfg->direct_io = 0;
	cfg->hard_remove = 1;	/* no .fuse_hidden files in the backing dir */
	cfg->nullpath_ok = 1;	/* ops with a handle use the handle */
	fs.sig_started = pthread_create(&fs.sig_thread, NULL, sig_main, NULL) == 0;
	if (!fs.sig_started)
		fprintf(stderr, "cutfs: no SIGUSR1 thread\n");
	return NULL;
}

/* Unmount: the dirty data is dropped (a power cut) or, with
 * --flush-on-exit, written back. */
static void cut_destroy(void *data)
{
	(void)data;
	lock();
	while (fs.nodes != NULL) {
		struct node *n = fs.nodes;
		int rc = fs.flush_on_exit ? writeback(n) : 0;
		if (rc != 0)
			fprintf(stderr, "cutfs: write-back at exit: %s\n",
				strerror(-rc));
		node_free(n);
	}
	unlock();
	if (fs.sig_started) {
		pthread_cancel(fs.sig_thread);
		pthread_join(fs.sig_thread, NULL);
		fs.sig_started = false;
	}
}

static const struct fuse_operations cut_ops = {
	.init = cut_init,
	.destroy = cut_destroy,
	.getattr = cut_getattr,
	.readlink = cut_readlink,
	.mknod = cut_mknod,
	.mkdir = cut_mkdir,
	.unlink = cut_unlink,
	.rmdir = cut_rmdir,
	.symlink = cut_symlink,
	.rename = cut_rename,
	.link = cut_link,
	.chmod = cut_chmod,
	.chown = cut_chown,
	.truncate = cut_truncate,
	.open = cut_open,
	.create = cut_create,
	.read = cut_read,
	.write = cut_write,
	.statfs = cut_statfs,
	.flush = cut_flush,
	.release = cut_release,
	.fsync = cut_fsync,
	.opendir = cut_opendir,
	.readdir = cut_readdir,
	.releasedir = cut_releasedir,
	.fsyncdir = cut_fsyncdir,
	.access = cut_access,
	.utimens = cut_utimens,
	.fallocate = cut_fallocate,
};

/* ---- command line ---- */

struct cut_args {
	char *backing;
	int flush_on_exit;
	int help;
};

enum { KEY_HELP };

static const struct fuse_opt cut_opt_spec[] = {
	{ "--flush-on-exit", offsetof(struct cut_args, flush_on_exit), 1 },
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_END
};

/* Takes the first non-option (the backing directory); the rest to FUSE. */
static int cut_opt_proc(void *data, const char *arg, int key,
			struct fuse_args *out)
{
	struct cut_args *a = data;
	(void)out;
	if (key == KEY_HELP) {
		a->help = 1;
		return 0;
	}
	if (key == FUSE_OPT_KEY_NONOPT && a->backing == NULL) {
		a->backing = strdup(arg);
		return a->backing == NULL ? -1 : 0;
	}
	return 1;
}

static void usage(FILE *f)
{
	fputs("usage: cutfs BACKING_DIR MOUNTPOINT [--flush-on-exit] [-f] [-d]"
	      " [-o OPT]\n"
	      "A FUSE pass-through to BACKING_DIR that keeps written data in\n"
	      "memory until fsync/fdatasync (or an O_SYNC/O_DSYNC write):\n"
	      "kill -9 is a power cut. Unmounting drops the un-synced data\n"
	      "too, unless --flush-on-exit. SIGUSR1 prints the dirty pages;\n"
	      "SIGUSR2 turns I/O errors on and off (writes: EIO and short\n"
	      "writes in turn; fsync: EIO, the dirty data dropped).\n"
	      "  -f  foreground    -d  FUSE debug output\n", f);
}

/* Opens the backing directory and runs FUSE: fuse_main's status. */
static int run(struct fuse_args *args, const struct cut_args *a)
{
	sigset_t set;
	/* libfuse 3.14 warns about its own default max_idle_threads */
	if (fuse_opt_add_arg(args, "-omax_idle_threads=10") != 0)
		return 1;
	fs.flush_on_exit = a->flush_on_exit;
	fs.root = open(a->backing, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fs.root < 0) {
		fprintf(stderr, "cutfs: %s: %s\n", a->backing, strerror(errno));
		return 1;
	}
	umask(0);	/* the kernel has applied the caller's umask */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &set, NULL);	/* for sig_main only */
	int rc = fuse_main(args->argc, args->argv, &cut_ops, NULL);
	close(fs.root);
	return rc;
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct cut_args a = { 0 };
	int rc;
	if (fuse_opt_parse(&args, &a, cut_opt_spec, cut_opt_proc) != 0) {
		usage(stderr);
		rc = 2;
	} else if (a.help || a.backing == NULL) {
		usage(a.help ? stdout : stderr);
		rc = a.help ? 0 : 2;
	} else {
		rc = run(&args, &a);
	}
	fuse_opt_free_args(&args);
	free(a.backing);
	return rc;
}
