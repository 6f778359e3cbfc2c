/*
 * format/io.c — st_io_posix and the retrying read/write helpers.
 * Thread-safe: no state of its own.
 */
#include "format/io.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int posix_open(const char *path, int flags, int mode)
{
	return open(path, flags | O_CLOEXEC, mode);
}

static int posix_fsize(int fd, uint64_t *size)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return -1;
	*size = (uint64_t)st.st_size;
	return 0;
}

const struct st_io st_io_posix = {
	.open = posix_open,
	.pread = pread,
	.pwrite = pwrite,
	.fsync = fsync,
	.close = close,
	.rename = rename,
	.unlink = unlink,
	.fsize = posix_fsize,
};

int st_io_write_all(const struct st_io *io, int fd, const void *buf, size_t n,
		    uint64_t off)
{
	const uint8_t *p = buf;
	while (n > 0) {
		ssize_t w = io->pwrite(fd, p, n, (off_t)off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno ? errno : EIO;
		}
		if (w == 0)
			return EIO;
		p += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

int st_io_read_all(const struct st_io *io, int fd, void *buf, size_t n,
		   uint64_t off)
{
	uint8_t *p = buf;
	while (n > 0) {
		ssize_t r = io->pread(fd, p, n, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return errno ? errno : EIO;
		}
		if (r == 0)
			return -1;
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

int st_io_fsync_dir(const struct st_io *io, const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	int rc = 0;
	if (!slash) {
		strcpy(dir, ".");
	} else if (slash == path) {
		strcpy(dir, "/");
	} else {
		size_t len = (size_t)(slash - path);
		if (len >= sizeof dir)
			return ENAMETOOLONG;
		memcpy(dir, path, len);
		dir[len] = '\0';
	}
	int fd = io->open(dir, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return errno;
	if (io->fsync(fd) != 0)
		rc = errno ? errno : EIO;
	io->close(fd);
	return rc;
}
