/*
 * format/io.h — the seam between strata and the file system.
 *
 * Every file operation of the format (and later the store) goes through a
 * struct st_io, so tests can inject EIO, short writes and crashes at a
 * named point (SQLite's test_vfs.c is the model). st_io_posix is the real
 * thing. All functions follow POSIX: -1 and errno on failure.
 */
#ifndef STRATA_FORMAT_IO_H
#define STRATA_FORMAT_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct st_io {
	int (*open)(const char *path, int flags, int mode);          /* open(2) */
	ssize_t (*pread)(int fd, void *buf, size_t n, off_t off);    /* pread(2) */
	ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off); /* pwrite(2) */
	int (*fsync)(int fd);                                         /* fsync(2) */
	int (*close)(int fd);                                         /* close(2) */
	int (*rename)(const char *from, const char *to);              /* rename(2) */
	int (*unlink)(const char *path);                              /* unlink(2) */
	int (*fsize)(int fd, uint64_t *size);                         /* fstat(2) st_size */
};

/* The POSIX implementation. */
extern const struct st_io st_io_posix;

/* Write all n bytes at off, retrying short writes and EINTR.
 * Returns 0 or an errno value (ENOSPC, EIO, ...). */
int st_io_write_all(const struct st_io *io, int fd, const void *buf, size_t n,
		    uint64_t off);
/* Read exactly n bytes at off. Returns 0, an errno value, or -1 when the
 * file ends first. */
int st_io_read_all(const struct st_io *io, int fd, void *buf, size_t n,
		   uint64_t off);
/* fsync the directory that holds path (so a rename in it is durable).
 * Returns 0 or an errno value. */
int st_io_fsync_dir(const struct st_io *io, const char *path);

#endif
