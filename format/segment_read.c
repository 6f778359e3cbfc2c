/*
 * format/segment_read.c — the segment reader (FORMAT.md §3–§6).
 *
 * Open reads the header, the tail and the footer with pread, checks their
 * CRCs and every validity rule of §3–§4, and turns the footer into plain
 * arrays (schema, row groups, chunk metadata, statistics). After that the
 * file is only touched by seg_reader_read, one pread per requested chunk,
 * each CRC-checked before it is decompressed (LZ4_decompress_safe) and
 * decoded (format/decode.c). Decoded vectors live in per-column buffers
 * reused from one read to the next. One thread per reader.
 */
#include <errno.h>
#include <fcntl.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "format/bytes.h"
#include "format/chunk_int.h"
#include "format/crc32c.h"
#include "format/seg_int.h"
#include "format/segment.h"

/* Per-column read state, reused across reads. */
struct rcol {
	uint8_t *raw;          /* stored bytes of the last chunk read */
	size_t raw_cap;        /* its size */
	uint8_t *dec;          /* decompressed bytes (LZ4 chunks) */
	size_t dec_cap;        /* its size */
	struct chunk_out out;  /* decoded vectors */
};

struct seg_reader {
	char *path;                 /* for messages */
	const struct st_io *io;     /* file operations */
	int fd;                     /* open file, -1 in memory mode */
	const uint8_t *mem;         /* in-memory mode: the segment's bytes */
	uint64_t size;              /* file size */
	uint16_t minor;             /* minor version of the file */
	uint64_t rows;              /* total rows */
	struct st_schema schema;    /* parsed schema */
	uint32_t nrg;               /* row groups */
	struct seg_rg_meta *rgs;    /* row group metadata */
	struct seg_chunk_meta *chunks; /* nrg * nfields chunk records */
	struct st_col_stats *fstats; /* file statistics per field */
	uint8_t *footer;            /* footer bytes (kv entries point here) */
	uint32_t nkv;               /* kv entries */
	const uint8_t **kv;         /* 4 pointers' worth per entry: key, val */
	uint32_t *kv_len;           /* key and value lengths */
	struct rcol *cols;          /* one per field */
	struct st_vec *vecs;        /* the batch's vectors */
	struct seg_batch batch;     /* returned by seg_reader_read */
};

/*
 * Fuzz builds (libFuzzer defines this) skip the CRC comparisons so that
 * mutated bytes reach the footer parser and the decoders, which must stand
 * on their own checks. Never defined in a normal build.
 */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define CRC_DIFFERS(a, b) ((void)(a), (void)(b), false)
#else
#define CRC_DIFFERS(a, b) ((a) != (b))
#endif

/* Error with the file name in front. */
#define RERR(code, ...)                                                      \
	do {                                                                 \
		char m_[ST_ERR_MSG_MAX];                                     \
		snprintf(m_, sizeof m_, __VA_ARGS__);                        \
		rc = st_seterr(err, (code), "segment '%s': %s", path, m_);   \
		goto out;                                                    \
	} while (0)

static int parse_footer(struct seg_reader *r, const char *path, const uint8_t *f,
			uint32_t flen, uint64_t foff, uint16_t major, uint16_t minor,
			struct st_err *err)
{
	int rc = ST_OK;
	struct st_cur c;
	st_cur_init(&c, f, flen);
	uint16_t fmaj = st_cur_u16(&c), fmin = st_cur_u16(&c);
	if (c.bad || fmaj != major || fmin != minor)
		RERR(ST_ECORRUPT, "footer at offset %llu: version %u.%u differs from the header's %u.%u",
		     (unsigned long long)foff, fmaj, fmin, major, minor);
	r->rows = st_cur_u64(&c);
	uint32_t F = st_cur_u32(&c);
	if (c.bad || F == 0 || F > ST_MAX_COLUMNS)
		RERR(ST_ECORRUPT, "footer at offset %llu: field count %u is out of range 1..%d",
		     (unsigned long long)foff, F, ST_MAX_COLUMNS);
	r->schema.fields = calloc(F, sizeof *r->schema.fields);
	r->fstats = calloc(F, sizeof *r->fstats);
	r->cols = calloc(F, sizeof *r->cols);
	r->vecs = calloc(F, sizeof *r->vecs);
	if (!r->schema.fields || !r->fstats || !r->cols || !r->vecs)
		RERR(ST_ENOMEM, "out of memory reading the footer");
	r->schema.nfields = F;
	for (uint32_t i = 0; i < F; i++) {
		size_t at = st_cur_off(&c);
		uint16_t len = st_cur_u16(&c);
		struct st_cur fc;
		const uint8_t *body = st_cur_take(&c, len);
		st_cur_init(&fc, body, body ? len : 0);
		struct st_field *fd = &r->schema.fields[i];
		fd->id = st_cur_u32(&fc);
		fd->type = st_cur_u8(&fc);
		uint8_t flags = st_cur_u8(&fc);
		uint16_t nl = st_cur_u16(&fc);
		const uint8_t *name = st_cur_take(&fc, nl);
		if (!body || !name || nl == 0 || nl > ST_NAME_MAX || (flags & ~1u) ||
		    memchr(name, 0, nl) || !chunk_utf8_is_valid(name, nl))
			RERR(ST_ECORRUPT, "footer: field record %u at offset %llu is malformed", i,
			     (unsigned long long)(foff + at));
		memcpy(fd->name, name, nl);
		fd->name[nl] = '\0';
		fd->nullable = flags & 1;
		if (!st_type_is_supported(fd->type))
			RERR(ST_EVERSION, "column '%s' has type id %u, unknown to this reader "
			     "(written by a newer strata?)", fd->name, fd->type);
	}
	if ((rc = seg_schema_check(&r->schema, err)) != ST_OK)
		RERR(ST_ECORRUPT, "footer: %s", err ? err->msg : "bad schema");
	uint32_t G = st_cur_u32(&c);
	/* Each row group record takes at least 16 + F * 40 bytes: bound G by
	 * the footer size before allocating anything for it. */
	if (c.bad || (uint64_t)G * (16 + (uint64_t)F * 40) > st_cur_left(&c))
		RERR(ST_ECORRUPT, "footer: row group count %u does not fit the footer", G);
	r->nrg = G;
	r->rgs = calloc(G ? G : 1, sizeof *r->rgs);
	r->chunks = calloc(G ? (size_t)G * F : 1, sizeof *r->chunks);
	if (!r->rgs || !r->chunks)
		RERR(ST_ENOMEM, "out of memory reading the footer");
	uint64_t next_off = SEG_HEADER_SIZE, next_row = 0;
	for (uint32_t g = 0; g < G; g++) {
		size_t at = st_cur_off(&c);
		uint32_t len = st_cur_u32(&c);
		const uint8_t *body = st_cur_take(&c, len);
		struct st_cur gc;
		st_cur_init(&gc, body, body ? len : 0);
		struct seg_rg_meta *rg = &r->rgs[g];
		rg->first_row = st_cur_u64(&gc);
		rg->rows = st_cur_u32(&gc);
		rg->chunks = &r->chunks[(size_t)g * F];
		if (!body || gc.bad || rg->first_row != next_row || rg->rows == 0 ||
		    rg->rows > SEG_MAX_ROW_GROUP_ROWS)
			RERR(ST_ECORRUPT, "footer: row group %u record at offset %llu is malformed "
			     "(first row %llu, expected %llu; %u rows)", g,
			     (unsigned long long)(foff + at), (unsigned long long)rg->first_row,
			     (unsigned long long)next_row, rg->rows);
		next_row += rg->rows;
		for (uint32_t i = 0; i < F; i++) {
			const struct st_field *fd = &r->schema.fields[i];
			struct seg_chunk_meta *cm = &rg->chunks[i];
			size_t cat = st_cur_off(&gc);
			uint16_t clen = st_cur_u16(&gc);
			const uint8_t *cb = st_cur_take(&gc, clen);
			struct st_cur cc;
			st_cur_init(&cc, cb, cb ? clen : 0);
			cm->offset = st_cur_u64(&cc);
			cm->stored_size = st_cur_u32(&cc);
			cm->encoded_size = st_cur_u32(&cc);
			cm->encoding = st_cur_u8(&cc);
			cm->compression = st_cur_u8(&cc);
			cm->validity = st_cur_u8(&cc);
			uint8_t reserved = st_cur_u8(&cc);
			uint32_t count = st_cur_u32(&cc);
			uint32_t nulls = st_cur_u32(&cc);
			cm->crc = st_cur_u32(&cc);
			bool stats_ok = !cc.bad && chunk_get_stats(&cc, fd->type, &cm->stats);
			const char *why = NULL;
			if (!cb || cc.bad || !stats_ok)
				why = "record is malformed";
			else if (cm->offset != next_off)
				why = "does not start where the previous chunk ended";
			else if (cm->stored_size > foff - cm->offset)
				why = "runs into the footer";
			else if (cm->encoded_size > SEG_MAX_CHUNK_BYTES)
				why = "encoded size is above 1 GiB";
			else if (cm->compression > SEG_COMP_LZ4)
				why = "compression id is unknown to this reader";
			else if (cm->compression == SEG_COMP_NONE ? cm->stored_size != cm->encoded_size
				 : (cm->stored_size == 0 || cm->stored_size >= cm->encoded_size ||
				    /* LZ4 expands at most ~255:1: a larger claim is a memory bomb */
				    cm->encoded_size / 256 > cm->stored_size))
				why = "stored and encoded sizes do not fit the compression";
			else if (reserved != 0 || count != rg->rows || nulls > count ||
				 (nulls && !fd->nullable) || (nulls != 0) != (cm->validity != 0))
				why = "value or null count is inconsistent";
			else if (cm->stats.null_count != nulls ||
				 (nulls == count && cm->stats.has_minmax))
				why = "statistics contradict the null count";
			if (why)
				RERR(cm->compression > SEG_COMP_LZ4 && !cc.bad && stats_ok
				     ? ST_EVERSION : ST_ECORRUPT,
				     "footer: row group %u column '%s' (chunk record at offset %llu): %s",
				     g, fd->name, (unsigned long long)(foff + at + cat), why);
			cm->stats.rows = rg->rows;
			next_off = cm->offset + cm->stored_size;
		}
	}
	if (next_row != r->rows || next_off != foff)
		RERR(ST_ECORRUPT, "footer: row groups cover %llu rows and bytes %u..%llu; "
		     "the file has %llu rows and its footer starts at %llu",
		     (unsigned long long)next_row, SEG_HEADER_SIZE, (unsigned long long)next_off,
		     (unsigned long long)r->rows, (unsigned long long)foff);
	for (uint32_t i = 0; i < F; i++) {
		size_t at = st_cur_off(&c);
		uint64_t nulls = 0;
		for (uint32_t g = 0; g < G; g++)
			nulls += r->rgs[g].chunks[i].stats.null_count;
		if (!chunk_get_stats(&c, r->schema.fields[i].type, &r->fstats[i]) ||
		    r->fstats[i].null_count != nulls ||
		    (nulls == r->rows && r->fstats[i].has_minmax))
			RERR(ST_ECORRUPT, "footer: file statistics of column '%s' at offset %llu are "
			     "malformed or contradict the chunks", r->schema.fields[i].name,
			     (unsigned long long)(foff + at));
		r->fstats[i].rows = r->rows;
	}
	r->nkv = st_cur_u32(&c);
	if (c.bad || r->nkv > st_cur_left(&c) / 6)
		RERR(ST_ECORRUPT, "footer: key-value count %u does not fit the footer", r->nkv);
	r->kv = calloc((size_t)r->nkv * 2 + 1, sizeof *r->kv);
	r->kv_len = calloc((size_t)r->nkv * 2 + 1, sizeof *r->kv_len);
	if (!r->kv || !r->kv_len)
		RERR(ST_ENOMEM, "out of memory reading the footer");
	for (uint32_t k = 0; k < r->nkv; k++) {
		r->kv_len[2 * k] = st_cur_u16(&c);
		r->kv[2 * k] = st_cur_take(&c, r->kv_len[2 * k]);
		r->kv_len[2 * k + 1] = st_cur_u32(&c);
		r->kv[2 * k + 1] = st_cur_take(&c, r->kv_len[2 * k + 1]);
		if (c.bad)
			RERR(ST_ECORRUPT, "footer: key-value entry %u runs past the footer", k);
	}
	if (st_cur_left(&c) != 0)
		RERR(ST_ECORRUPT, "footer: %zu unexpected bytes at its end", st_cur_left(&c));
out:
	return rc;
}

/* Read exactly n bytes at off: from the file or from memory. Returns 0, an
 * errno value, or -1 when the segment ends first. */
static int r_read(const struct seg_reader *r, void *buf, size_t n, uint64_t off)
{
	if (r->mem) {
		if (off > r->size || n > r->size - off)
			return -1;
		memcpy(buf, r->mem + off, n);
		return 0;
	}
	return st_io_read_all(r->io, r->fd, buf, n, off);
}

static int reader_open(const char *path, const struct st_io *io, const uint8_t *mem,
		       size_t mem_len, struct seg_reader **out, struct st_err *err)
{
	int rc = ST_OK, e;
	struct seg_reader *r = calloc(1, sizeof *r);
	uint8_t hdr[SEG_HEADER_SIZE], tail[SEG_TAIL_SIZE];
	*out = NULL;
	if (!r)
		RERR(ST_ENOMEM, "out of memory");
	r->fd = -1;
	r->io = io ? io : &st_io_posix;
	if (!(r->path = strdup(path)))
		RERR(ST_ENOMEM, "out of memory");
	r->mem = mem;
	r->size = mem_len;
	if (!mem && (r->fd = r->io->open(path, O_RDONLY, 0)) < 0) {
		e = errno;
		RERR(e, "cannot open: %s", strerror(e));
	}
	if (!mem && r->io->fsize(r->fd, &r->size) != 0) {
		e = errno;
		RERR(e, "cannot stat: %s", strerror(e));
	}
	if (r->size < SEG_HEADER_SIZE + SEG_TAIL_SIZE)
		RERR(ST_ECORRUPT, "file is %llu bytes, shorter than a header and a tail (%d): "
		     "truncated or not a segment", (unsigned long long)r->size,
		     SEG_HEADER_SIZE + SEG_TAIL_SIZE);
	if ((e = r_read(r, hdr, sizeof hdr, 0)) != 0 ||
	    (e = r_read(r, tail, sizeof tail, r->size - SEG_TAIL_SIZE)) != 0)
		RERR(e > 0 ? e : ST_ECORRUPT, "reading header or tail: %s",
		     e > 0 ? strerror(e) : "file shrank while being read");
	if (memcmp(hdr, seg_magic, 8) != 0)
		RERR(ST_ECORRUPT, "header at offset 0: bad magic (not a strata segment)");
	if (st_get_le32(hdr + 8) != SEG_BOM)
		RERR(ST_ECORRUPT, "header at offset 8: byte-order mark is %08x, expected %08x "
		     "(written with the wrong byte order?)", st_get_le32(hdr + 8), SEG_BOM);
	if (CRC_DIFFERS(st_crc32c(0, hdr, 16), st_get_le32(hdr + 16)))
		RERR(ST_ECORRUPT, "header at offset 0: CRC mismatch");
	uint16_t major = st_get_le16(hdr + 12);
	r->minor = st_get_le16(hdr + 14);
	if (major != SEG_MAJOR)
		RERR(major > SEG_MAJOR ? ST_EVERSION : ST_ECORRUPT,
		     "written in format %u.%u; this reader reads %u.x%s", major, r->minor,
		     SEG_MAJOR, major > SEG_MAJOR ? ": upgrade strata to read it" : "");
	if (memcmp(tail + 8, seg_tail_magic, 8) != 0)
		RERR(ST_ECORRUPT, "tail at offset %llu: bad magic (truncated or not a segment)",
		     (unsigned long long)(r->size - 8));
	uint32_t flen = st_get_le32(tail);
	if (flen > SEG_MAX_FOOTER_BYTES ||
	    (uint64_t)flen > r->size - SEG_HEADER_SIZE - SEG_TAIL_SIZE)
		RERR(ST_ECORRUPT, "tail at offset %llu: footer length %u does not fit the file",
		     (unsigned long long)(r->size - SEG_TAIL_SIZE), flen);
	uint64_t foff = r->size - SEG_TAIL_SIZE - flen;
	if (!(r->footer = malloc(flen ? flen : 1)))
		RERR(ST_ENOMEM, "out of memory for a footer of %u bytes", flen);
	if ((e = r_read(r, r->footer, flen, foff)) != 0)
		RERR(e > 0 ? e : ST_ECORRUPT, "reading the footer: %s",
		     e > 0 ? strerror(e) : "file shrank while being read");
	uint32_t crc = st_crc32c(0, r->footer, flen);
	if (CRC_DIFFERS(crc, st_get_le32(tail + 4)))
		RERR(ST_ECORRUPT, "footer at offset %llu (%u bytes): CRC mismatch "
		     "(stored %08x, computed %08x)", (unsigned long long)foff, flen,
		     st_get_le32(tail + 4), crc);
	if ((rc = parse_footer(r, path, r->footer, flen, foff, major, r->minor, err)) != ST_OK)
		goto out;
	*out = r;
	r = NULL;
out:
	seg_reader_close(r);
	return rc;
}

int seg_reader_open(const char *path, const struct st_io *io, struct seg_reader **out,
		    struct st_err *err)
{
	return reader_open(path, io, NULL, 0, out, err);
}

int seg_reader_open_mem(const char *name, const uint8_t *buf, size_t len,
			struct seg_reader **out, struct st_err *err)
{
	return reader_open(name, NULL, buf ? buf : (const uint8_t *)"", buf ? len : 0, out, err);
}

void seg_reader_close(struct seg_reader *r)
{
	if (!r)
		return;
	if (r->fd >= 0)
		r->io->close(r->fd);
	for (uint32_t i = 0; r->cols && i < r->schema.nfields; i++) {
		free(r->cols[i].raw);
		free(r->cols[i].dec);
		chunk_out_fini(&r->cols[i].out);
	}
	free(r->cols);
	free(r->vecs);
	free(r->schema.fields);
	free(r->fstats);
	free(r->rgs);
	free(r->chunks);
	free(r->kv);
	free(r->kv_len);
	free(r->footer);
	free(r->path);
	free(r);
}

const struct st_schema *seg_reader_schema(const struct seg_reader *r) { return &r->schema; }
uint64_t seg_reader_rows(const struct seg_reader *r) { return r->rows; }
uint64_t seg_reader_size(const struct seg_reader *r) { return r->size; }
uint16_t seg_reader_minor(const struct seg_reader *r) { return r->minor; }
uint32_t seg_reader_row_groups(const struct seg_reader *r) { return r->nrg; }
const struct st_col_stats *seg_reader_file_stats(const struct seg_reader *r) { return r->fstats; }
uint32_t seg_reader_kv_count(const struct seg_reader *r) { return r->nkv; }

const struct seg_rg_meta *seg_reader_row_group(const struct seg_reader *r, uint32_t i)
{
	return i < r->nrg ? &r->rgs[i] : NULL;
}

void seg_reader_kv(const struct seg_reader *r, uint32_t i, const uint8_t **key,
		   uint32_t *klen, const uint8_t **val, uint32_t *vlen)
{
	*key = r->kv[2 * i];
	*klen = r->kv_len[2 * i];
	*val = r->kv[2 * i + 1];
	*vlen = r->kv_len[2 * i + 1];
}

static int grow_buf(uint8_t **p, size_t *cap, size_t n)
{
	if (n <= *cap)
		return ST_OK;
	free(*p);
	*p = malloc(n ? n : 1);
	*cap = *p ? n : 0;
	return *p ? ST_OK : ST_ENOMEM;
}

/* Read, check and decode chunk (g, i) into r->cols[i].out. */
static int read_chunk(struct seg_reader *r, uint32_t g, uint32_t i, struct st_err *err)
{
	int rc = ST_OK, e;
	const char *path = r->path;
	const struct seg_rg_meta *rg = &r->rgs[g];
	const struct seg_chunk_meta *cm = &rg->chunks[i];
	const struct st_field *fd = &r->schema.fields[i];
	struct rcol *c = &r->cols[i];
	if (grow_buf(&c->raw, &c->raw_cap, cm->stored_size) != ST_OK)
		RERR(ST_ENOMEM, "out of memory reading row group %u column '%s'", g, fd->name);
	if ((e = r_read(r, c->raw, cm->stored_size, cm->offset)) != 0)
		RERR(e > 0 ? e : ST_ECORRUPT, "row group %u column '%s' at offset %llu: %s", g,
		     fd->name, (unsigned long long)cm->offset,
		     e > 0 ? strerror(e) : "file shrank while being read");
	uint32_t crc = st_crc32c(0, c->raw, cm->stored_size);
	if (CRC_DIFFERS(crc, cm->crc))
		RERR(ST_ECORRUPT, "row group %u column '%s' at offset %llu (%u bytes): CRC mismatch "
		     "(stored %08x, computed %08x)", g, fd->name, (unsigned long long)cm->offset,
		     cm->stored_size, cm->crc, crc);
	const uint8_t *body = c->raw;
	if (cm->compression == SEG_COMP_LZ4) {
		if (grow_buf(&c->dec, &c->dec_cap, cm->encoded_size) != ST_OK)
			RERR(ST_ENOMEM, "out of memory decompressing row group %u column '%s'", g,
			     fd->name);
		int z = LZ4_decompress_safe((const char *)c->raw, (char *)c->dec,
					    (int)cm->stored_size, (int)cm->encoded_size);
		if (z != (int)cm->encoded_size)
			RERR(ST_ECORRUPT, "row group %u column '%s' at offset %llu: LZ4 block is "
			     "invalid (%d of %u bytes)", g, fd->name,
			     (unsigned long long)cm->offset, z, cm->encoded_size);
		body = c->dec;
	}
	struct st_err derr;
	st_clearerr(&derr);
	rc = chunk_decode(fd->type, cm->encoding, cm->validity, rg->rows,
			  (uint32_t)cm->stats.null_count, body, cm->encoded_size, &c->out, &derr);
	if (rc != ST_OK)
		RERR(rc, "row group %u column '%s' (chunk at offset %llu): %s", g, fd->name,
		     (unsigned long long)cm->offset, derr.msg);
out:
	return rc;
}

int seg_reader_read(struct seg_reader *r, uint32_t rg, const bool *want,
		    struct seg_batch **out, struct st_err *err)
{
	int rc = ST_OK;
	const char *path = r->path;
	*out = NULL;
	if (rg >= r->nrg)
		RERR(ST_EINVAL, "row group %u does not exist (the file has %u)", rg, r->nrg);
	for (uint32_t i = 0; i < r->schema.nfields; i++) {
		memset(&r->vecs[i], 0, sizeof r->vecs[i]);
		if (want && !want[i])
			continue;
		if ((rc = read_chunk(r, rg, i, err)) != ST_OK)
			goto out;
		r->vecs[i] = r->cols[i].out.vec;
	}
	r->batch.rg = rg;
	r->batch.rows = r->rgs[rg].rows;
	r->batch.ncols = r->schema.nfields;
	r->batch.cols = r->vecs;
	*out = &r->batch;
out:
	return rc;
}

int seg_reader_verify(struct seg_reader *r, struct st_err *err)
{
	int rc = ST_OK;
	struct seg_batch *b;
	for (uint32_t g = 0; g < r->nrg && rc == ST_OK; g++)
		rc = seg_reader_read(r, g, NULL, &b, err);
	return rc;
}
