/*
 * format/segment.h — writing and reading segments (FORMAT.md).
 *
 * A segment is an immutable columnar file: row groups of column chunks,
 * each chunk encoded, optionally LZ4-compressed and CRC32C-checked, with
 * min/max statistics per chunk and per file in a checksummed footer.
 *
 * Writer: seg_writer_open → seg_writer_append (any number of batches) →
 * seg_writer_close. The file is written as PATH.tmp, fsynced, renamed to
 * PATH and its directory fsynced, in that order (DESIGN.md §4), so PATH
 * either does not exist or is complete. Memory is bounded by one row group
 * of buffered values plus the encoding scratch of one chunk.
 *
 * Reader: seg_reader_open verifies the header, tail and footer (CRC and
 * every validity rule of FORMAT.md §3–§4) → the schema, row groups and
 * statistics are then plain data → seg_reader_read decodes a projection of
 * one row group; columns not requested are neither read nor decoded, and
 * every chunk read is CRC-checked first.
 *
 * Threads: a writer or reader handle is used by one thread at a time;
 * distinct handles are independent (several readers may share a file).
 *
 * Errors: every function that can fail returns ST_OK or an error code of
 * format/error.h and, when err is not NULL, a message naming the file, the
 * structure (row group, column) and the byte offset.
 */
#ifndef STRATA_FORMAT_SEGMENT_H
#define STRATA_FORMAT_SEGMENT_H

#include <stdbool.h>
#include <stdint.h>

#include "format/bytes.h"
#include "format/error.h"
#include "format/io.h"
#include "format/types.h"

#define SEG_MAJOR 1
#define SEG_MINOR 0
#define SEG_DEFAULT_ROW_GROUP_ROWS 65536u
#define SEG_MAX_ROW_GROUP_ROWS (1u << 24)

/* Writer options. Zero-initialized options give the defaults. */
struct seg_writer_opts {
	uint32_t row_group_rows; /* rows per row group; 0 = SEG_DEFAULT_ROW_GROUP_ROWS */
	int lz4_level;           /* 0 = LZ4 fast; 1..12 = LZ4 HC level; -1 = never compress */
	int force_encoding;      /* 0 = choose per chunk; k+1 = use encoding id k where the type allows it */
	const struct st_io *io;  /* NULL = st_io_posix */
	int threads;             /* 0, 1 = encode on the caller's thread; 2 = a helper thread
				  * encodes every other column of a row group meanwhile
				  * (same bytes either way) */
};

/* One column chunk as described by the footer. */
struct seg_chunk_meta {
	uint64_t offset;          /* file offset of the stored bytes */
	uint32_t stored_size;     /* bytes in the file */
	uint32_t encoded_size;    /* bytes after decompression */
	uint8_t encoding;         /* encoding id (FORMAT.md §2) */
	uint8_t compression;      /* 0 none, 1 LZ4 */
	uint8_t validity;         /* validity encoding id */
	uint32_t crc;             /* CRC32C of the stored bytes */
	struct st_col_stats stats; /* statistics of the chunk */
};

/* One row group. */
struct seg_rg_meta {
	uint64_t first_row;           /* row number of its first row in the file */
	uint32_t rows;                /* rows in the row group */
	struct seg_chunk_meta *chunks; /* one per schema field */
};

/* What seg_writer_close reports, for the commit log. */
struct seg_file_info {
	uint64_t size;               /* bytes of the file */
	uint64_t rows;               /* rows written */
	uint32_t crc;                /* CRC32C of the whole file */
	uint32_t row_groups;         /* row groups written */
	uint32_t ncols;              /* entries in stats */
	struct st_col_stats *stats;  /* per-column file statistics; seg_file_info_fini frees */
	uint64_t peak_bytes;         /* the writer's peak heap use (buffers and scratch) */
	uint64_t row_group_raw_bytes; /* raw size of the largest row group's values */
};
void seg_file_info_fini(struct seg_file_info *info);

struct seg_writer;

/*
 * Start writing a segment to path (through path.tmp). The schema is copied.
 * Errors: ST_EINVAL (bad schema or options: no columns, unsupported type,
 * empty or duplicate names, row group size out of range), ST_ENOMEM, errno
 * of creating path.tmp.
 */
int seg_writer_open(const char *path, const struct st_schema *schema,
		    const struct seg_writer_opts *opts, struct seg_writer **out,
		    struct st_err *err);

/* Add a key-value pair to the footer (application metadata). Keys up to
 * 65535 bytes, values up to 16 MiB. Errors: ST_EINVAL, ST_ENOMEM. */
int seg_writer_add_kv(struct seg_writer *w, const char *key, const void *val,
		      uint32_t len, struct st_err *err);

/*
 * Append n rows: cols has one vector per schema field, in schema order,
 * each of n rows and of the field's type (strings in plain or dictionary
 * form). The batch is checked whole before anything is buffered: a NULL in
 * a NOT NULL column, a type mismatch or invalid UTF-8 in a string column
 * fails with ST_ESCHEMA naming the column and the first bad row, and the
 * writer stays usable. An I/O or memory error (errno, ST_ENOMEM) leaves
 * the writer failed: later calls return the same error; close removes the
 * temp file.
 */
int seg_writer_append(struct seg_writer *w, const struct st_vec *cols,
		      uint32_t n, struct st_err *err);

/*
 * Finish: flush the last row group, write the footer, fsync, rename to the
 * final path, fsync the directory; fill info (may be NULL). Always frees w;
 * on error the temp file is removed and nothing exists at path that this
 * writer made. Errors: errno of write/fsync/rename, ST_ENOMEM, or the
 * writer's earlier sticky error.
 */
int seg_writer_close(struct seg_writer *w, struct seg_file_info *info,
		     struct st_err *err);

/* In-memory mode, for small segments a store keeps inline: the same
 * writer, but the bytes go to memory and nothing is fsynced or renamed.
 * seg_writer_close_mem hands the bytes over (*bytes: free() them).
 * A closed or abandoned in-memory writer is kept as its thread's spare
 * (its buffers, up to 256 KiB, nothing of its segment) and taken again by
 * the thread's next seg_writer_open_mem without a helper thread: a small
 * write then allocates next to nothing for its segment. The thread's exit
 * frees it; seg_writer_release_spare frees the calling thread's now.
 * Errors: as seg_writer_open / seg_writer_close. */
int seg_writer_open_mem(const struct st_schema *schema, const struct seg_writer_opts *opts,
			struct seg_writer **out, struct st_err *err);
int seg_writer_close_mem(struct seg_writer *w, struct seg_file_info *info, uint8_t **bytes,
			 size_t *len, struct st_err *err);
void seg_writer_release_spare(void);

/* Abandon: remove the temp file and free w. NULL is a no-op. */
void seg_writer_abort(struct seg_writer *w);

struct seg_reader;

/*
 * Open and verify a segment. io NULL = st_io_posix.
 * Errors: ST_ECORRUPT (a check failed: the message names file, structure
 * and offset), ST_EVERSION (newer major version, unknown type id),
 * ST_ENOMEM, errno of open/read.
 */
int seg_reader_open(const char *path, const struct st_io *io,
		    struct seg_reader **out, struct st_err *err);

/* Open a segment held in memory: buf[0..len) is borrowed and must stay
 * valid until close; name is used in messages. Errors: as seg_reader_open. */
int seg_reader_open_mem(const char *name, const uint8_t *buf, size_t len,
			struct seg_reader **out, struct st_err *err);

/* Close and free; NULL is a no-op. Invalidates everything the reader returned. */
void seg_reader_close(struct seg_reader *r);

/* The file's schema, valid until close. */
const struct st_schema *seg_reader_schema(const struct seg_reader *r);
uint64_t seg_reader_rows(const struct seg_reader *r);
uint64_t seg_reader_size(const struct seg_reader *r);
uint16_t seg_reader_minor(const struct seg_reader *r);
uint32_t seg_reader_row_groups(const struct seg_reader *r);
/* Row group i (< seg_reader_row_groups), valid until close. */
const struct seg_rg_meta *seg_reader_row_group(const struct seg_reader *r, uint32_t i);
/* File statistics, one per schema field, valid until close. */
const struct st_col_stats *seg_reader_file_stats(const struct seg_reader *r);
uint32_t seg_reader_kv_count(const struct seg_reader *r);
/* Key-value pair i; pointers valid until close. */
void seg_reader_kv(const struct seg_reader *r, uint32_t i, const uint8_t **key,
		   uint32_t *klen, const uint8_t **val, uint32_t *vlen);

/* A decoded projection of one row group. */
struct seg_batch {
	uint32_t rg;           /* row group it came from */
	uint32_t rows;         /* rows in it */
	uint32_t ncols;        /* schema fields */
	struct st_vec *cols;   /* ncols vectors; cols[i].type == 0 when column i was not read */
};

/*
 * Decode the columns i with want[i] true (want NULL = all) of row group rg.
 * *out points at a batch owned by the reader: valid until the next
 * seg_reader_read or seg_reader_close. String chunks stored as dictionaries
 * come out in dictionary form (vec.dict), others plain.
 * Errors: ST_EINVAL (rg out of range), ST_ECORRUPT (CRC mismatch, bad LZ4
 * block, malformed encoding: named by file, row group, column, offset),
 * ST_EVERSION (encoding or compression id unknown to this reader),
 * ST_ENOMEM, errno of read.
 */
int seg_reader_read(struct seg_reader *r, uint32_t rg, const bool *want,
		    struct seg_batch **out, struct st_err *err);

/* Read and decode every chunk of the file (every checksum, every rule).
 * Errors: as seg_reader_read. */
int seg_reader_verify(struct seg_reader *r, struct st_err *err);

/* Append a statistics record of FORMAT.md §4.4 for a column of type type,
 * and parse one (false when malformed). For stores that keep file
 * statistics beside their own records. */
void seg_stats_put(struct st_buf *b, const struct st_col_stats *st, int type);
bool seg_stats_get(struct st_cur *c, int type, struct st_col_stats *st);

/* Name of an encoding id / compression id, for tools ("?" if unknown). */
const char *seg_encoding_name(int enc);
const char *seg_compression_name(int comp);

#endif
