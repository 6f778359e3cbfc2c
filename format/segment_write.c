/*
 * format/segment_write.c — the segment writer (FORMAT.md §3–§7).
 *
 * Rows are buffered column by column until a row group is full; then each
 * column is encoded (format/encode.c), LZ4-compressed when that saves
 * space, CRC32C'd and written at the end of the temp file. Chunk metadata
 * and statistics stay in memory for the footer. close writes footer and
 * tail, then: fsync file → rename → fsync directory (DESIGN.md §4). The
 * file's writeback is started every MiB along the way (sync_file_range),
 * so that fsync waits for little more than the tail.
 *
 * Memory: one row group of buffered values, one encoded chunk, one LZ4
 * output buffer and the encoder scratch; peak use is tracked for the
 * benchmark's memory target. One caller thread per writer; with
 * threads = 2 a helper thread and the caller encode a row group's columns
 * together (each chunk then has its own output buffers until it is
 * written, in column order: the same bytes as one thread writes).
 */
#include <errno.h>
#include <fcntl.h>
#include <lz4.h>
#include <lz4hc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "format/bytes.h"
#include "format/chunk_int.h"
#include "format/crc32c.h"
#include "format/segment.h"
#include "format/seg_int.h"

/* Chunks smaller than this are never LZ4-compressed. */
#define LZ4_MIN_INPUT 64

/* Buffered values of one column for the current row group. */
struct wcol {
	uint8_t *data;         /* fixed-width values, rg_rows slots */
	uint8_t *validity;     /* bitmap of cap rows, 1 = valid */
	uint32_t *offsets;     /* varlen: rg_rows + 1 offsets */
	struct st_buf bytes;   /* varlen: value bytes */
	uint32_t null_count;   /* nulls buffered */
	uint32_t cap;          /* rows the buffers hold (grows up to rg_rows) */
	struct dict_memo memo; /* strings: the last chunk's dictionary (encode.c) */
	struct st_col_stats fstats; /* file statistics so far */
	bool fstats_unbounded; /* some chunk had values but no bounds */
	uint8_t buf_type;      /* the type data/offsets were sized for (reuse) */
};

/* One encoded chunk: its buffers and outcome. */
struct enc_out {
	struct st_buf enc;          /* encoded bytes */
	uint8_t *lz4;               /* LZ4 output buffer */
	size_t lz4_cap;             /* its size */
	const uint8_t *stored;      /* the bytes as stored (enc or lz4) */
	size_t slen;                /* their count */
	int rc;                     /* ST_OK, ST_ENOMEM or ST_ETOOBIG */
};

/* The helper thread of a writer with threads = 2: for each row group it
 * and the caller take columns to encode from a shared counter, each chunk
 * into its own output, and the caller writes them in column order. */
struct helper {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool has_job, done, stop;
	uint32_t n;                 /* the job: rows of the row group */
	struct seg_chunk_meta *chunks; /* its chunks' metadata */
	uint32_t next;              /* next column to take (atomic) */
	struct enc_out *outs;       /* one per column */
};

struct seg_writer {
	char *path;                 /* final path */
	char *tmp;                  /* path.tmp, written first */
	const struct st_io *io;     /* file operations */
	int fd;                     /* open temp file, -1 once closed or in memory */
	uint64_t flushed;           /* writeback of the file started up to here */
	struct st_buf *mem;         /* in-memory mode: &membuf, else NULL */
	struct st_buf membuf;       /* in-memory mode: the segment's bytes */
	struct st_schema schema;    /* copy of the schema */
	uint32_t rg_rows;           /* rows per row group */
	int lz4_level;              /* see seg_writer_opts */
	int force_enc;              /* encoding id to force, -1 = choose */
	uint32_t nbuf;              /* rows buffered in cols */
	struct wcol *cols;          /* one per field (cap_fields, the schema copy after them) */
	uint32_t cap_fields;        /* columns the cols block holds */
	struct chunk_scratch scratch[2]; /* encoder scratch: the caller's, the helper's */
	struct enc_out out;         /* the chunk being written (no helper) */
	struct helper *helper;      /* a second encoding thread, or NULL */
	uint64_t off;               /* end of the file so far */
	uint32_t file_crc;          /* CRC32C of the bytes written so far */
	uint64_t rows;              /* rows flushed */
	struct seg_rg_meta *rgs;    /* metadata of flushed row groups */
	uint32_t chunks0_cap;       /* rgs[0].chunks holds this many (0: not allocated);
				     * a recycled writer keeps them when nrg is 0 */
	uint32_t nrg, cap_rg;       /* count and capacity of rgs */
	struct st_buf kv;           /* encoded kv entries */
	uint32_t nkv;               /* kv entries */
	int failed;                 /* sticky error code, ST_OK while healthy */
	char failmsg[ST_ERR_MSG_MAX]; /* message of the sticky error */
	uint64_t fixed_bytes;       /* bytes of the per-column buffers */
	uint64_t peak;              /* peak heap bytes seen */
	uint64_t rg_raw_max;        /* largest raw row group */
};

const char *seg_encoding_name(int enc)
{
	return chunk_encoding_name(enc);
}

const char *seg_compression_name(int comp)
{
	return comp == SEG_COMP_NONE ? "none" : comp == SEG_COMP_LZ4 ? "lz4" : "?";
}

void seg_file_info_fini(struct seg_file_info *info)
{
	free(info->stats);
	info->stats = NULL;
}

/* A file's writeback is started every this many bytes. */
#define WRITEBACK_STEP (1u << 20)

/* Write n bytes at off: to the temp file, or to memory. Returns 0 or errno. */
static int w_write(struct seg_writer *w, const void *p, size_t n, uint64_t off)
{
	if (w->mem) {
		if (off != w->mem->len)
			return EINVAL;
		st_buf_append(w->mem, p, n);
		return w->mem->oom ? ENOMEM : 0;
	}
	int e = st_io_write_all(w->io, w->fd, p, n, off);
	if (e == 0 && off + n >= w->flushed + WRITEBACK_STEP) {
		/* Start the disk writing what we have (a hint, errors ignored):
		 * the fsync at the end then waits for little more than the tail. */
		sync_file_range(w->fd, (off_t)w->flushed, (off_t)(off + n - w->flushed),
				SYNC_FILE_RANGE_WRITE);
		w->flushed = off + n;
	}
	return e;
}

/* Make the writer failed with code and message; returns code. */
static int fail(struct seg_writer *w, struct st_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(struct seg_writer *w, struct st_err *err, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(w->failmsg, sizeof w->failmsg, fmt, ap);
	va_end(ap);
	w->failed = code;
	return st_seterr(err, code, "%s", w->failmsg);
}

static void track_peak(struct seg_writer *w)
{
	uint64_t b = w->fixed_bytes + w->scratch[0].bytes + w->scratch[1].bytes + w->out.enc.cap +
		     w->out.lz4_cap;
	for (uint32_t i = 0; w->helper && i < w->schema.nfields; i++)
		b += w->helper->outs[i].enc.cap + w->helper->outs[i].lz4_cap;
	for (uint32_t i = 0; i < w->schema.nfields; i++) {
		const struct dict_memo *m = &w->cols[i].memo;
		b += w->cols[i].bytes.cap + m->cap_bytes + (uint64_t)m->cap * 8 + (uint64_t)m->nslots * 4;
	}
	if (b > w->peak)
		w->peak = b;
}

static void *helper_run(void *arg);

static void helper_stop(struct seg_writer *w)
{
	struct helper *h = w->helper;
	if (!h)
		return;
	pthread_mutex_lock(&h->mu);
	h->stop = true;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
	pthread_join(h->th, NULL);
	pthread_mutex_destroy(&h->mu);
	pthread_cond_destroy(&h->cv);
	for (uint32_t i = 0; i < w->schema.nfields; i++) {
		st_buf_free(&h->outs[i].enc);
		free(h->outs[i].lz4);
	}
	free(h->outs);
	free(h);
	w->helper = NULL;
}

/* Free column c's value buffers. */
static void wcol_bufs_free(struct wcol *c)
{
	free(c->data);
	free(c->validity);
	free(c->offsets);
	st_buf_free(&c->bytes);
	c->data = c->validity = NULL;
	c->offsets = NULL;
	c->cap = 0;
}

static void writer_free(struct seg_writer *w)
{
	if (!w)
		return;
	helper_stop(w);
	for (uint32_t i = 0; w->cols && i < w->cap_fields; i++) {
		wcol_bufs_free(&w->cols[i]);
		dict_memo_fini(&w->cols[i].memo);
	}
	for (uint32_t i = 0; i < w->nrg; i++)
		free(w->rgs[i].chunks);
	if (w->nrg == 0 && w->chunks0_cap)
		free(w->rgs[0].chunks);
	free(w->rgs);
	free(w->cols); /* and the schema copy after them */
	chunk_scratch_fini(&w->scratch[0]);
	chunk_scratch_fini(&w->scratch[1]);
	st_buf_free(&w->out.enc);
	free(w->out.lz4);
	st_buf_free(&w->kv);
	st_buf_free(&w->membuf);
	free(w->path); /* and tmp */
	free(w);
}

/*
 * Give w the columns of schema, each in its initial state. The cols block
 * (cap_fields columns, the schema copy after them) is kept when it is big
 * enough, and so are the value buffers of a column whose type is the one
 * they were sized for (a recycled writer: seg_writer_open_mem). Returns
 * false when out of memory.
 */
static bool writer_columns(struct seg_writer *w, const struct st_schema *schema)
{
	uint32_t F = schema->nfields;
	if (!w->cols || F > w->cap_fields) {
		for (uint32_t i = 0; w->cols && i < w->cap_fields; i++) {
			wcol_bufs_free(&w->cols[i]);
			dict_memo_fini(&w->cols[i].memo);
		}
		free(w->cols);
		w->cap_fields = 0;
		if (!(w->cols = calloc(1, F * (sizeof *w->cols + sizeof *schema->fields))))
			return false;
		w->cap_fields = F;
	}
	w->schema.nfields = F;
	w->schema.fields = (struct st_field *)(void *)(w->cols + w->cap_fields);
	memcpy(w->schema.fields, schema->fields, F * sizeof *schema->fields);
	w->fixed_bytes = 0;
	for (uint32_t i = 0; i < F; i++) {
		struct wcol *c = &w->cols[i];
		uint8_t type = schema->fields[i].type;
		if (c->buf_type != type)
			wcol_bufs_free(c);
		c->buf_type = type;
		memset(&c->fstats, 0, sizeof c->fstats);
		c->fstats.min.type = c->fstats.max.type = type;
		c->fstats_unbounded = false;
		c->null_count = 0;
		c->bytes.len = 0;
		size_t width = st_type_width(type);
		w->fixed_bytes += (uint64_t)c->cap * (width ? width : 4) + c->cap / 8;
	}
	return true;
}

/*
 * Open a writer: w is NULL for a new one, or a recycled in-memory writer
 * (writer_recycle) whose buffers are reused.
 */
static int writer_open(const char *path, bool mem, struct seg_writer *w,
		       const struct st_schema *schema, const struct seg_writer_opts *opts,
		       struct seg_writer **out, struct st_err *err)
{
	static const struct seg_writer_opts defaults = {0};
	int rc = ST_OK;
	if (!opts)
		opts = &defaults;
	*out = NULL;
	if ((rc = seg_schema_check(schema, err)) != ST_OK)
		goto out;
	uint32_t rg_rows = opts->row_group_rows ? opts->row_group_rows : SEG_DEFAULT_ROW_GROUP_ROWS;
	if (rg_rows > SEG_MAX_ROW_GROUP_ROWS || opts->lz4_level < -1 ||
	    opts->lz4_level > LZ4HC_CLEVEL_MAX || opts->force_encoding < 0 ||
	    opts->force_encoding > CHUNK_ENC_COUNT) {
		rc = st_seterr(err, ST_EINVAL,
			       "segment writer options out of range: row_group_rows 1..%u, "
			       "lz4_level -1..%d, force_encoding 0..%d",
			       SEG_MAX_ROW_GROUP_ROWS, LZ4HC_CLEVEL_MAX, CHUNK_ENC_COUNT);
		goto out;
	}
	if (!w && !(w = calloc(1, sizeof *w)))
		goto oom;
	w->fd = -1;
	w->io = opts->io ? opts->io : &st_io_posix;
	w->rg_rows = rg_rows;
	w->lz4_level = opts->lz4_level;
	w->force_enc = opts->force_encoding - 1;
	if (!w->path) {
		/* path and path.tmp in one allocation (writer_columns: the
		 * columns and the schema copy in another). */
		size_t plen = strlen(path);
		if (!(w->path = malloc(2 * plen + 6)))
			goto oom;
		w->tmp = w->path + plen + 1;
		memcpy(w->path, path, plen + 1);
		memcpy(w->tmp, path, plen);
		memcpy(w->tmp + plen, ".tmp", 5);
	}
	if (!writer_columns(w, schema))
		goto oom;
	w->mem = mem ? &w->membuf : NULL;
	if (!mem)
		w->fd = w->io->open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (!mem && w->fd < 0) {
		rc = st_seterr(err, errno, "segment '%s': cannot create temp file: %s",
			       w->tmp, strerror(errno));
		goto out;
	}
	uint8_t hdr[SEG_HEADER_SIZE];
	seg_put_header(hdr);
	int e = w_write(w, hdr, sizeof hdr, 0);
	if (e) {
		rc = st_seterr(err, e, "segment '%s': writing the header: %s", w->tmp, strerror(e));
		goto out;
	}
	w->off = sizeof hdr;
	w->file_crc = st_crc32c(0, hdr, sizeof hdr);
	if (opts->threads > 1 && schema->nfields > 1) {
		/* Without a helper (out of memory, no thread) it encodes alone. */
		struct helper *h = calloc(1, sizeof *h);
		if (h && !(h->outs = calloc(schema->nfields, sizeof *h->outs))) {
			free(h);
			h = NULL;
		}
		if (h) {
			pthread_mutex_init(&h->mu, NULL);
			pthread_cond_init(&h->cv, NULL);
			w->helper = h;
			if (pthread_create(&h->th, NULL, helper_run, w) != 0) {
				pthread_mutex_destroy(&h->mu);
				pthread_cond_destroy(&h->cv);
				free(h->outs);
				free(h);
				w->helper = NULL;
			}
		}
	}
	track_peak(w);
	*out = w;
	w = NULL;
	goto out;
oom:
	rc = st_seterr(err, ST_ENOMEM, "segment '%s': out of memory opening the writer", path);
out:
	if (w) {
		if (w->fd >= 0) {
			w->io->close(w->fd);
			w->io->unlink(w->tmp);
		}
		writer_free(w);
	}
	return rc;
}

int seg_writer_open(const char *path, const struct st_schema *schema,
		    const struct seg_writer_opts *opts, struct seg_writer **out,
		    struct st_err *err)
{
	return writer_open(path, false, NULL, schema, opts, out, err);
}

/*
 * Each thread keeps its last finished in-memory writer (a small write's:
 * at most SPARE_MAX_BYTES of buffers) for its next one: a small write then
 * allocates next to nothing for its segment. The thread's exit frees it.
 */
#define SPARE_MAX_BYTES (256u << 10)

static pthread_key_t spare_key;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;
static bool spare_ok;

static void spare_destroy(void *w)
{
	writer_free(w);
}

static void spare_init(void)
{
	spare_ok = pthread_key_create(&spare_key, spare_destroy) == 0;
}

/* The calling thread's spare writer (now the caller's), or NULL. */
static struct seg_writer *spare_take(void)
{
	pthread_once(&spare_once, spare_init);
	if (!spare_ok)
		return NULL;
	struct seg_writer *w = pthread_getspecific(spare_key);
	if (w)
		pthread_setspecific(spare_key, NULL);
	return w;
}

void seg_writer_release_spare(void)
{
	writer_free(spare_take());
}

/*
 * Done with in-memory writer w (its bytes handed over or dropped): keep it
 * as the thread's spare with its buffers and nothing of its segment, or
 * free it.
 */
static void writer_recycle(struct seg_writer *w)
{
	uint64_t held = w->scratch[0].bytes + w->scratch[1].bytes + w->out.enc.cap +
			w->out.lz4_cap + w->kv.cap;
	for (uint32_t i = 0; i < w->cap_fields; i++) { /* columns of earlier segments too */
		const struct wcol *c = &w->cols[i];
		size_t width = st_type_width(c->buf_type);
		held += (uint64_t)c->cap * (width ? width : 4) + c->cap / 8 + c->bytes.cap;
	}
	pthread_once(&spare_once, spare_init);
	if (w->helper || w->out.enc.oom || w->kv.oom || held > SPARE_MAX_BYTES || !spare_ok ||
	    pthread_getspecific(spare_key)) {
		writer_free(w);
		return;
	}
	for (uint32_t i = 0; i < w->cap_fields; i++)
		dict_memo_fini(&w->cols[i].memo); /* the last chunk's dictionary: not the next's */
	for (uint32_t g = 1; g < w->nrg; g++)
		free(w->rgs[g].chunks);
	w->nrg = 0; /* rgs[0].chunks stay (chunks0_cap) */
	st_buf_free(&w->membuf);
	w->mem = NULL;
	w->kv.len = 0;
	w->nkv = 0;
	w->nbuf = 0;
	w->rows = 0;
	w->off = 0;
	w->flushed = 0;
	w->failed = ST_OK;
	w->failmsg[0] = '\0';
	w->peak = 0;
	w->rg_raw_max = 0;
	if (pthread_setspecific(spare_key, w) != 0)
		writer_free(w);
}

int seg_writer_open_mem(const struct st_schema *schema, const struct seg_writer_opts *opts,
			struct seg_writer **out, struct st_err *err)
{
	struct seg_writer *w = NULL;
	if (!opts || opts->threads <= 1 || schema->nfields <= 1)
		w = spare_take(); /* a helper thread is never recycled */
	return writer_open("(memory)", true, w, schema, opts, out, err);
}

int seg_writer_add_kv(struct seg_writer *w, const char *key, const void *val,
		      uint32_t len, struct st_err *err)
{
	size_t klen = strlen(key);
	if (klen > UINT16_MAX || len > (16u << 20))
		return st_seterr(err, ST_EINVAL, "segment '%s': key-value entry too large", w->path);
	st_buf_u16(&w->kv, (uint16_t)klen);
	st_buf_append(&w->kv, key, klen);
	st_buf_u32(&w->kv, len);
	st_buf_append(&w->kv, val, len);
	w->nkv++;
	return w->kv.oom ? st_seterr(err, ST_ENOMEM, "out of memory") : ST_OK;
}

/* ---- row groups -------------------------------------------------------- */

/* Fold a chunk's statistics into the file statistics of its column. */
static void merge_stats(struct wcol *c, const struct st_col_stats *cs)
{
	struct st_col_stats *fs = &c->fstats;
	bool first = fs->rows == fs->null_count; /* no values seen yet */
	fs->rows += cs->rows;
	fs->null_count += cs->null_count;
	if (cs->dict_size > fs->dict_size)
		fs->dict_size = cs->dict_size;
	if (cs->null_count == cs->rows)
		return;
	if (!cs->has_minmax)
		c->fstats_unbounded = true;
	if (c->fstats_unbounded) {
		fs->has_minmax = false;
		return;
	}
	if (first || st_value_cmp(&cs->min, &fs->min) < 0) {
		fs->min = cs->min;
		memcpy(fs->min_buf, cs->min_buf, sizeof fs->min_buf);
		if (st_type_is_varlen(fs->min.type))
			fs->min.v.s.ptr = fs->min_buf;
		fs->min_exact = cs->min_exact;
	}
	if (first || st_value_cmp(&cs->max, &fs->max) > 0) {
		fs->max = cs->max;
		memcpy(fs->max_buf, cs->max_buf, sizeof fs->max_buf);
		if (st_type_is_varlen(fs->max.type))
			fs->max.v.s.ptr = fs->max_buf;
		fs->max_exact = cs->max_exact;
	}
	fs->has_minmax = true;
}

/*
 * Encode column i of the buffered row group (n rows) with scratch sc into
 * L: chunk encoding, then LZ4 when it saves space. Fills cm's encoding,
 * validity, stats, compression and encoded size, and L. Touches only
 * column i's buffers, sc and L: two threads may encode different columns
 * at once. Returns ST_OK, ST_ENOMEM or ST_ETOOBIG (encode_column puts it
 * in L->rc).
 */
static int encode_chunk(struct seg_writer *w, struct chunk_scratch *sc, struct enc_out *L,
			uint32_t i, uint32_t n, struct seg_chunk_meta *cm)
{
	struct wcol *c = &w->cols[i];
	struct chunk_col col = {
		.memo = &c->memo, .type = w->schema.fields[i].type, .n = n,
		.null_count = c->null_count, .validity = c->validity,
		.data = c->data, .offsets = c->offsets, .bytes = c->bytes.data};
	L->enc.len = 0;
	int rc = chunk_encode(&col, w->force_enc, sc, &L->enc, &cm->encoding,
			      &cm->validity, &cm->stats);
	if (rc != ST_OK || L->enc.oom)
		return ST_ENOMEM;
	if (L->enc.len > SEG_MAX_CHUNK_BYTES)
		return ST_ETOOBIG;
	L->stored = L->enc.data;
	L->slen = L->enc.len;
	cm->compression = SEG_COMP_NONE;
	/* Below LZ4_MIN_INPUT bytes LZ4 saves next to nothing and its per-call
	 * state reset costs more than the chunk. */
	if (w->lz4_level >= 0 && L->enc.len >= LZ4_MIN_INPUT) {
		size_t bound = (size_t)LZ4_compressBound((int)L->enc.len);
		if (bound > L->lz4_cap) {
			free(L->lz4);
			L->lz4 = malloc(bound);
			L->lz4_cap = L->lz4 ? bound : 0;
			if (!L->lz4)
				return ST_ENOMEM;
		}
		int z = w->lz4_level == 0
			? LZ4_compress_default((const char *)L->enc.data, (char *)L->lz4,
					       (int)L->enc.len, (int)bound)
			: LZ4_compress_HC((const char *)L->enc.data, (char *)L->lz4,
					  (int)L->enc.len, (int)bound, w->lz4_level);
		if (z > 0 && (size_t)z < L->enc.len) {
			L->stored = L->lz4;
			L->slen = (size_t)z;
			cm->compression = SEG_COMP_LZ4;
		}
	}
	cm->encoded_size = (uint32_t)L->enc.len;
	return ST_OK;
}

static void encode_column(struct seg_writer *w, struct chunk_scratch *sc, struct enc_out *L,
			  uint32_t i, uint32_t n, struct seg_chunk_meta *cm)
{
	L->rc = encode_chunk(w, sc, L, i, n, cm);
}


/* Take columns from the shared counter and encode them until none is left. */
static void encode_some(struct seg_writer *w, struct chunk_scratch *sc)
{
	struct helper *h = w->helper;
	for (;;) {
		uint32_t i = __atomic_fetch_add(&h->next, 1, __ATOMIC_RELAXED);
		if (i >= w->schema.nfields)
			return;
		encode_column(w, sc, &h->outs[i], i, h->n, &h->chunks[i]);
	}
}

/* The helper thread: for each row group it is given, encode_some. */
static void *helper_run(void *arg)
{
	struct seg_writer *w = arg;
	struct helper *h = w->helper;
	pthread_mutex_lock(&h->mu);
	for (;;) {
		while (!h->has_job && !h->stop)
			pthread_cond_wait(&h->cv, &h->mu);
		if (h->stop)
			break;
		h->has_job = false;
		pthread_mutex_unlock(&h->mu);
		encode_some(w, &w->scratch[1]);
		pthread_mutex_lock(&h->mu);
		h->done = true;
		pthread_cond_broadcast(&h->cv);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

/* Encode every column of the row group (n rows) on both threads. */
static void encode_all(struct seg_writer *w, uint32_t n, struct seg_chunk_meta *chunks)
{
	struct helper *h = w->helper;
	pthread_mutex_lock(&h->mu);
	h->n = n;
	h->chunks = chunks;
	h->next = 0;
	h->done = false;
	h->has_job = true;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
	encode_some(w, &w->scratch[0]);
	pthread_mutex_lock(&h->mu);
	while (!h->done)
		pthread_cond_wait(&h->cv, &h->mu);
	pthread_mutex_unlock(&h->mu);
}

/* Append column i's encoded chunk L to the file. */
static int write_column(struct seg_writer *w, const struct enc_out *L, uint32_t i,
			struct seg_chunk_meta *cm, struct st_err *err)
{
	int rc = L->rc;
	if (rc == ST_ENOMEM)
		return fail(w, err, ST_ENOMEM, "segment '%s': out of memory encoding column '%s'",
			    w->path, w->schema.fields[i].name);
	if (rc == ST_ETOOBIG)
		return fail(w, err, ST_ETOOBIG,
			    "segment '%s': column '%s' encodes to more than the 1 GiB chunk limit "
			    "in one row group: use smaller row groups",
			    w->path, w->schema.fields[i].name);
	cm->offset = w->off;
	cm->stored_size = (uint32_t)L->slen;
	cm->crc = st_crc32c(0, L->stored, L->slen);
	int e = w_write(w, L->stored, L->slen, w->off);
	if (e)
		return fail(w, err, e, "segment '%s': writing row group %u column '%s' at offset %llu: %s",
			    w->tmp, w->nrg - 1, w->schema.fields[i].name,
			    (unsigned long long)w->off, strerror(e));
	w->off += L->slen;
	w->file_crc = st_crc32c(w->file_crc, L->stored, L->slen);
	merge_stats(&w->cols[i], &cm->stats);
	return ST_OK;
}

static int flush_row_group(struct seg_writer *w, struct st_err *err)
{
	int rc = ST_OK;
	uint32_t n = w->nbuf, F = w->schema.nfields;
	if (n == 0)
		return ST_OK;
	if (w->nrg == w->cap_rg) {
		uint32_t cap = w->cap_rg ? w->cap_rg * 2 : 16;
		struct seg_rg_meta *r = realloc(w->rgs, cap * sizeof *r);
		if (!r)
			return fail(w, err, ST_ENOMEM, "segment '%s': out of memory", w->path);
		w->rgs = r;
		w->cap_rg = cap;
	}
	struct seg_rg_meta *rg = &w->rgs[w->nrg];
	rg->first_row = w->rows;
	rg->rows = n;
	if (w->nrg == 0 && w->chunks0_cap >= F) {
		memset(rg->chunks, 0, F * sizeof *rg->chunks); /* a recycled writer's */
	} else {
		if (w->nrg == 0) {
			free(w->chunks0_cap ? rg->chunks : NULL);
			w->chunks0_cap = 0;
		}
		if (!(rg->chunks = calloc(F, sizeof *rg->chunks)))
			return fail(w, err, ST_ENOMEM, "segment '%s': out of memory", w->path);
		if (w->nrg == 0)
			w->chunks0_cap = F;
	}
	w->nrg++;
	uint64_t raw = 0;
	for (uint32_t i = 0; i < F; i++) {
		size_t width = st_type_width(w->schema.fields[i].type);
		raw += width ? (size_t)n * width : w->cols[i].offsets[n] + (size_t)n * 4;
	}
	/* With a helper both threads encode columns, each into its own
	 * output; chunks are written in column order either way, so the
	 * file's bytes are the same. */
	if (w->helper)
		encode_all(w, n, rg->chunks);
	for (uint32_t i = 0; i < F && rc == ST_OK; i++) {
		struct enc_out *L = w->helper ? &w->helper->outs[i] : &w->out;
		if (!w->helper)
			encode_column(w, &w->scratch[0], L, i, n, &rg->chunks[i]);
		rc = write_column(w, L, i, &rg->chunks[i], err);
	}
	if (rc != ST_OK)
		return rc;
	if (raw > w->rg_raw_max)
		w->rg_raw_max = raw;
	track_peak(w);
	w->rows += n;
	w->nbuf = 0;
	for (uint32_t i = 0; i < F; i++) {
		w->cols[i].null_count = 0;
		w->cols[i].bytes.len = 0;
	}
	return ST_OK;
}

/* ---- append ------------------------------------------------------------ */

/* Check a batch against the schema before buffering any of it. */
static int check_batch(struct seg_writer *w, const struct st_vec *cols, uint32_t n,
		       struct st_err *err)
{
	for (uint32_t i = 0; i < w->schema.nfields; i++) {
		const struct st_field *f = &w->schema.fields[i];
		const struct st_vec *v = &cols[i];
		if (v->type != f->type)
			return st_seterr(err, ST_ESCHEMA,
					 "column '%s': expected type %s, found %s",
					 f->name, st_type_name(f->type), st_type_name(v->type));
		if (v->n != n)
			return st_seterr(err, ST_EINVAL,
					 "column '%s': vector has %u rows, the batch %u",
					 f->name, v->n, n);
		if (!f->nullable && v->validity) {
			for (uint32_t r = 0; r < n; r++)
				if (!st_vec_is_valid(v, r))
					return st_seterr(err, ST_ESCHEMA,
							 "column '%s' is NOT NULL (type %s) but row %u is null",
							 f->name, st_type_name(f->type), r);
		}
		if (v->dict) {
			for (uint32_t r = 0; r < n; r++)
				if (st_vec_is_valid(v, r) && v->codes[r] >= v->dict->n)
					return st_seterr(err, ST_EINVAL,
							 "column '%s': row %u has dictionary code %u of %u",
							 f->name, r, v->codes[r], v->dict->n);
		}
		if (f->type == ST_TYPE_STRING && v->dict) {
			/* Codes were checked above: validating the entries suffices. */
			for (uint32_t d = 0; d < v->dict->n; d++) {
				const uint8_t *p;
				uint32_t len;
				st_vec_str(v->dict, d, &p, &len);
				if (!chunk_utf8_is_valid(p, len))
					return st_seterr(err, ST_ESCHEMA,
							 "column '%s' (string): dictionary entry %u is "
							 "not valid UTF-8", f->name, d);
			}
		} else if (f->type == ST_TYPE_STRING) {
			for (uint32_t r = 0; r < n; r++) {
				const uint8_t *p;
				uint32_t len;
				if (!st_vec_is_valid(v, r))
					continue;
				st_vec_str(v, r, &p, &len);
				if (!chunk_utf8_is_valid(p, len))
					return st_seterr(err, ST_ESCHEMA,
							 "column '%s' (string): row %u is not valid UTF-8",
							 f->name, r);
			}
		}
	}
	return ST_OK;
}

/* Grow column c's buffers to hold `rows` rows (a small write never pays
 * for a whole row group). Doubling, capped at rg_rows. */
static int wcol_reserve(struct seg_writer *w, struct wcol *c, int type, uint32_t rows)
{
	if (rows <= c->cap)
		return ST_OK;
	uint32_t cap = c->cap ? c->cap : 64;
	while (cap < rows)
		cap = cap > w->rg_rows / 2 ? w->rg_rows : cap * 2;
	if (cap > w->rg_rows)
		cap = w->rg_rows;
	size_t width = st_type_width(type);
	uint8_t *v = realloc(c->validity, cap / 8 + 8);
	if (!v)
		return ST_ENOMEM;
	c->validity = v;
	if (width) {
		uint8_t *d = realloc(c->data, (size_t)cap * width + 64);
		if (!d)
			return ST_ENOMEM;
		c->data = d;
	} else {
		uint32_t *o = realloc(c->offsets, ((size_t)cap + 1) * 4);
		if (!o)
			return ST_ENOMEM;
		c->offsets = o;
	}
	w->fixed_bytes += (uint64_t)(cap - c->cap) * (width ? width : 4) + (cap - c->cap) / 8;
	c->cap = cap;
	return ST_OK;
}

/* Copy k rows starting at row `from` of v into column buffer slots at `at`. */
/* Set bits [at, at + k) of a bitmap: whole bytes at once in the middle. */
static void bits_set(uint8_t *bm, uint32_t at, uint32_t k)
{
	uint32_t end = at + k;
	for (; at < end && (at & 7); at++)
		bm[at >> 3] |= (uint8_t)(1u << (at & 7));
	if (end - at >= 8) {
		memset(bm + (at >> 3), 0xff, (end - at) >> 3);
		at += (end - at) & ~7u;
	}
	for (; at < end; at++)
		bm[at >> 3] |= (uint8_t)(1u << (at & 7));
}

static int copy_rows(struct wcol *c, const struct st_vec *v, uint32_t from,
		     uint32_t k, uint32_t at)
{
	if (!v->validity) {
		bits_set(c->validity, at, k);
	} else {
		for (uint32_t j = 0; j < k; j++) {
			uint32_t d = at + j;
			bool valid = st_vec_is_valid(v, from + j);
			if (valid)
				c->validity[d >> 3] |= (uint8_t)(1u << (d & 7));
			else
				c->validity[d >> 3] &= (uint8_t)~(1u << (d & 7));
			c->null_count += !valid;
		}
	}
	size_t width = st_type_width(v->type);
	if (width) {
		memcpy(c->data + (size_t)at * width, (const uint8_t *)v->data + (size_t)from * width,
		       (size_t)k * width);
		return ST_OK;
	}
	if (at == 0)
		c->offsets[0] = 0;
	/* Sum the lengths, make room once, then copy without per-value checks. */
	uint64_t total = 0;
	for (uint32_t j = 0; j < k; j++) {
		const uint8_t *p;
		uint32_t len = 0;
		if (st_vec_is_valid(v, from + j))
			st_vec_str(v, from + j, &p, &len);
		total += len;
	}
	if (c->bytes.len + total > SEG_MAX_CHUNK_BYTES)
		return ST_ETOOBIG;
	uint8_t *dst = total ? st_buf_reserve(&c->bytes, (size_t)total) : NULL;
	if (total && !dst)
		return ST_ENOMEM;
	uint32_t off = (uint32_t)c->bytes.len;
	for (uint32_t j = 0; j < k; j++) {
		const uint8_t *p = NULL;
		uint32_t len = 0;
		if (st_vec_is_valid(v, from + j))
			st_vec_str(v, from + j, &p, &len);
		if (len)
			memcpy(c->bytes.data + off, p, len);
		off += len;
		c->offsets[at + j + 1] = off;
	}
	c->bytes.len = off;
	return ST_OK;
}

int seg_writer_append(struct seg_writer *w, const struct st_vec *cols,
		      uint32_t n, struct st_err *err)
{
	int rc = ST_OK;
	if (w->failed)
		return st_seterr(err, w->failed, "%s", w->failmsg);
	if ((rc = check_batch(w, cols, n, err)) != ST_OK)
		return rc;
	uint32_t done = 0;
	while (done < n) {
		uint32_t k = n - done;
		if (k > w->rg_rows - w->nbuf)
			k = w->rg_rows - w->nbuf;
		for (uint32_t i = 0; i < w->schema.nfields; i++) {
			rc = wcol_reserve(w, &w->cols[i], w->schema.fields[i].type, w->nbuf + k);
			if (rc == ST_OK)
				rc = copy_rows(&w->cols[i], &cols[i], done, k, w->nbuf);
			if (rc == ST_ETOOBIG)
				return fail(w, err, rc,
					    "segment '%s': column '%s' holds more than 1 GiB of bytes "
					    "in one row group: use smaller row groups", w->path,
					    w->schema.fields[i].name);
			if (rc != ST_OK)
				return fail(w, err, rc, "segment '%s': out of memory", w->path);
		}
		w->nbuf += k;
		done += k;
		if (w->nbuf == w->rg_rows && (rc = flush_row_group(w, err)) != ST_OK)
			return rc;
	}
	return ST_OK;
}

/* ---- close ------------------------------------------------------------- */

/* Reserve a length slot of `size` bytes; returns its position. */
static size_t len_slot(struct st_buf *b, int size)
{
	size_t at = b->len;
	if (size == 2)
		st_buf_u16(b, 0);
	else
		st_buf_u32(b, 0);
	return at;
}

static void len_patch(struct st_buf *b, size_t at, int size)
{
	if (b->oom)
		return;
	size_t len = b->len - at - (size_t)size;
	if (size == 2)
		st_put_le16(b->data + at, (uint16_t)len);
	else
		st_put_le32(b->data + at, (uint32_t)len);
}

static void build_footer(struct seg_writer *w, struct st_buf *f)
{
	uint32_t F = w->schema.nfields;
	st_buf_u16(f, SEG_MAJOR);
	st_buf_u16(f, SEG_MINOR);
	st_buf_u64(f, w->rows);
	st_buf_u32(f, F);
	for (uint32_t i = 0; i < F; i++) {
		const struct st_field *fd = &w->schema.fields[i];
		size_t nl = strlen(fd->name);
		size_t at = len_slot(f, 2);
		st_buf_u32(f, fd->id);
		st_buf_u8(f, fd->type);
		st_buf_u8(f, fd->nullable ? 1 : 0);
		st_buf_u16(f, (uint16_t)nl);
		st_buf_append(f, fd->name, nl);
		len_patch(f, at, 2);
	}
	st_buf_u32(f, w->nrg);
	for (uint32_t g = 0; g < w->nrg; g++) {
		const struct seg_rg_meta *rg = &w->rgs[g];
		size_t at = len_slot(f, 4);
		st_buf_u64(f, rg->first_row);
		st_buf_u32(f, rg->rows);
		for (uint32_t i = 0; i < F; i++) {
			const struct seg_chunk_meta *cm = &rg->chunks[i];
			size_t cat = len_slot(f, 2);
			st_buf_u64(f, cm->offset);
			st_buf_u32(f, cm->stored_size);
			st_buf_u32(f, cm->encoded_size);
			st_buf_u8(f, cm->encoding);
			st_buf_u8(f, cm->compression);
			st_buf_u8(f, cm->validity);
			st_buf_u8(f, 0);
			st_buf_u32(f, rg->rows);
			st_buf_u32(f, (uint32_t)cm->stats.null_count);
			st_buf_u32(f, cm->crc);
			chunk_put_stats(f, &cm->stats, w->schema.fields[i].type);
			len_patch(f, cat, 2);
		}
		len_patch(f, at, 4);
	}
	for (uint32_t i = 0; i < F; i++)
		chunk_put_stats(f, &w->cols[i].fstats, w->schema.fields[i].type);
	st_buf_u32(f, w->nkv);
	st_buf_append(f, w->kv.data, w->kv.len);
}

/* Finish (seg_writer_close); in memory mode, *keep receives the bytes. */
static int writer_close(struct seg_writer *w, struct seg_file_info *info, struct st_buf *keep,
			struct st_err *err)
{
	int rc = ST_OK, e;
	struct st_buf f = {0};
	if (w->failed) {
		rc = st_seterr(err, w->failed, "%s", w->failmsg);
		goto out;
	}
	if ((rc = flush_row_group(w, err)) != ST_OK)
		goto out;
	/* In memory the footer is built in place, after the chunks. */
	struct st_buf *fb = w->mem ? w->mem : &f;
	size_t at = fb->len, flen;
	build_footer(w, fb);
	flen = fb->len - at;
	if (fb->oom || flen > SEG_MAX_FOOTER_BYTES) {
		rc = st_seterr(err, fb->oom ? ST_ENOMEM : ST_ETOOBIG,
			       "segment '%s': footer of %zu bytes %s", w->path, flen,
			       fb->oom ? "does not fit in memory" : "exceeds the 256 MiB limit");
		goto out;
	}
	uint8_t tail[SEG_TAIL_SIZE];
	uint32_t fcrc = st_crc32c(0, fb->data + at, flen);
	seg_put_tail(tail, (uint32_t)flen, fcrc);
	st_buf_append(fb, tail, sizeof tail);
	if (fb->oom) {
		rc = st_seterr(err, ST_ENOMEM, "segment '%s': out of memory", w->path);
		goto out;
	}
	if (!w->mem && (e = w_write(w, f.data, f.len, w->off)) != 0) {
		rc = st_seterr(err, e, "segment '%s': writing the footer: %s", w->tmp, strerror(e));
		goto out;
	}
	w->file_crc = st_crc32c(w->file_crc, fb->data + at, fb->len - at);
	w->off += fb->len - at;
	if (w->mem)
		goto report; /* the caller makes the bytes durable */
	if (w->io->fsync(w->fd) != 0) {
		e = errno;
		rc = st_seterr(err, e, "segment '%s': fsync failed: %s (the file is not durable)",
			       w->tmp, strerror(e));
		goto out;
	}
	e = w->io->close(w->fd);
	w->fd = -1;
	if (e != 0) {
		e = errno;
		rc = st_seterr(err, e, "segment '%s': close failed: %s", w->tmp, strerror(e));
		goto out;
	}
	if (w->io->rename(w->tmp, w->path) != 0) {
		e = errno;
		rc = st_seterr(err, e, "segment '%s': rename from '%s' failed: %s", w->path, w->tmp,
			       strerror(e));
		goto out;
	}
	if ((e = st_io_fsync_dir(w->io, w->path)) != 0) {
		/* The file is in place but its name may not survive a crash. */
		rc = st_seterr(err, e, "segment '%s': fsync of its directory failed: %s",
			       w->path, strerror(e));
		w->io->unlink(w->path);
		goto out;
	}
report:
	if (info) {
		memset(info, 0, sizeof *info);
		info->size = w->off;
		info->rows = w->rows;
		info->crc = w->file_crc;
		info->row_groups = w->nrg;
		info->ncols = w->schema.nfields;
		info->peak_bytes = w->peak;
		info->row_group_raw_bytes = w->rg_raw_max;
		info->stats = calloc(w->schema.nfields, sizeof *info->stats);
		if (!info->stats) {
			/* The segment is durable; only the report is short. */
			rc = st_seterr(err, ST_ENOMEM, "segment '%s': out of memory for its statistics",
				       w->path);
			if (!w->mem)
				w->io->unlink(w->path);
			goto out;
		}
		for (uint32_t i = 0; i < w->schema.nfields; i++)
			st_stats_copy(&info->stats[i], &w->cols[i].fstats);
	}
out:
	if (w->fd >= 0) {
		w->io->close(w->fd);
		w->fd = -1;
	}
	if (rc != ST_OK && !w->mem)
		w->io->unlink(w->tmp);
	if (keep && rc == ST_OK) {
		*keep = w->membuf;
		memset(&w->membuf, 0, sizeof w->membuf);
	}
	st_buf_free(&f);
	if (w->mem)
		writer_recycle(w);
	else
		writer_free(w);
	return rc;
}

int seg_writer_close(struct seg_writer *w, struct seg_file_info *info, struct st_err *err)
{
	return writer_close(w, info, NULL, err);
}

int seg_writer_close_mem(struct seg_writer *w, struct seg_file_info *info, uint8_t **bytes,
			 size_t *len, struct st_err *err)
{
	struct st_buf mem = {0};
	int rc = writer_close(w, info, &mem, err);
	*bytes = mem.data;
	*len = mem.len;
	return rc;
}

void seg_writer_abort(struct seg_writer *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		w->io->close(w->fd);
	if (w->mem) {
		writer_recycle(w);
		return;
	}
	w->io->unlink(w->tmp);
	writer_free(w);
}
