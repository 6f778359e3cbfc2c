/*
 * format/chunk_int.h — private to format/: encoding and decoding of one
 * column chunk's bytes (FORMAT.md §5, §6). Used by the segment writer and
 * reader and by their unit tests; nothing else includes it.
 */
#ifndef STRATA_FORMAT_CHUNK_INT_H
#define STRATA_FORMAT_CHUNK_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "format/bytes.h"
#include "format/error.h"
#include "format/types.h"

/* Encoding ids (FORMAT.md §2). Fixed numbers. */
enum {
	CHUNK_ENC_PLAIN = 0,
	CHUNK_ENC_FOR = 1,
	CHUNK_ENC_DELTA = 2,
	CHUNK_ENC_DICT = 3,
	CHUNK_ENC_DECIMAL = 4,
	CHUNK_ENC_RLE = 5,
	CHUNK_ENC_COUNT = 6
};

/* Validity encoding ids. */
enum { CHUNK_VAL_NONE = 0, CHUNK_VAL_BITMAP = 1, CHUNK_VAL_RLE = 2 };

/* 10^0 .. 10^18 as exact doubles (DECIMAL, FORMAT.md §6.6). */
extern const double chunk_pow10[19];

/* Name of an encoding id ("PLAIN", ...), "?" when unknown. */
const char *chunk_encoding_name(int enc);
/* True when encoding enc may be used for columns of type type. */
bool chunk_encoding_allowed(int enc, int type);

/*
 * One column of a row group as the writer buffered it. The encoder may
 * overwrite the data slots of null rows with filler.
 */
/* The sorted dictionary of a string column's previous chunk: when all the
 * distinct values of a chunk are in it, their order comes from it instead
 * of a sort (a column of categories repeats its dictionary chunk after
 * chunk). Zero-initialize; dict_memo_fini frees it. */
struct dict_memo {
	uint32_t d;            /* values, in sorted order */
	uint32_t *off;         /* d + 1 offsets into bytes */
	uint8_t *bytes;        /* the values back to back */
	uint32_t *slots;       /* hash table: value index + 1, 0 = empty */
	uint32_t *mark;        /* d slots, all 0 between uses */
	uint32_t nslots;       /* power of two, at least 2d */
	uint32_t cap;          /* values off and mark hold */
	size_t cap_bytes;      /* bytes `bytes` holds */
};
void dict_memo_fini(struct dict_memo *m);

struct chunk_col {
	struct dict_memo *memo; /* strings: the previous chunk's dictionary, or NULL */
	uint8_t type;          /* enum st_type */
	uint32_t n;            /* rows */
	uint32_t null_count;   /* null rows */
	uint8_t *validity;     /* bitmap, 1 = valid; meaningful when null_count > 0 */
	uint8_t *data;         /* fixed-width values, n slots */
	uint32_t *offsets;     /* varlen: n + 1 offsets into bytes */
	const uint8_t *bytes;  /* varlen: value bytes */
};

/* Scratch memory the encoder reuses across chunks. Zero-initialize;
 * chunk_scratch_fini frees it. */
struct chunk_scratch {
	uint64_t *u64;         /* n packed values */
	uint32_t *u32;         /* n codes */
	uint32_t *slots;       /* dictionary hash table */
	uint32_t *entries;     /* dictionary entries: first row of each distinct value;
				* after sorting, the map old code -> sorted code */
	uint32_t *order;       /* dictionary entries in sorted order */
	size_t cap_n;          /* rows the u64/u32 arrays hold */
	size_t cap_slots;      /* slots in the hash table */
	size_t bytes;          /* bytes allocated in total, for memory accounting */
};
void chunk_scratch_fini(struct chunk_scratch *s);

/*
 * Encode col into out (appending the chunk bytes of FORMAT.md §5) and fill
 * stats. force_enc is an encoding id to use when the type allows it, or -1
 * to choose the smallest. Sets *enc and *val_enc to the ids used.
 * Errors: ST_ENOMEM.
 */
int chunk_encode(struct chunk_col *col, int force_enc, struct chunk_scratch *s,
		 struct st_buf *out, uint8_t *enc, uint8_t *val_enc,
		 struct st_col_stats *stats);

/*
 * Decoded chunk: reusable output buffers for one column of one row group.
 * Zero-initialize; chunk_out_fini frees. The vector `vec` points into these
 * buffers and into the body passed to chunk_decode (string bytes), so it
 * stays valid until the next decode into the same chunk_out or until the
 * body is freed.
 */
struct chunk_out {
	struct st_vec vec;     /* the result */
	struct st_vec dict;    /* the dictionary of a DICT string chunk */
	void *vals;            /* fixed values / codes / offsets, padded to 64 */
	uint64_t *tmp;         /* u64 unpack scratch */
	uint8_t *validity;     /* decoded validity bitmap */
	uint32_t *dict_offsets; /* dictionary offsets */
	void *dict_vals;       /* fixed-width dictionary values */
	size_t cap_vals, cap_tmp, cap_validity, cap_dict; /* bytes allocated */
};
void chunk_out_fini(struct chunk_out *o);

/*
 * Decode the encoded chunk bytes body[0..len) of n rows (null_count of them
 * null) of type type with encoding enc and validity encoding val_enc.
 * Strings of a DICT chunk come out in dictionary form (vec.dict set),
 * others plain. On error, writes what failed and the offset within the
 * chunk's encoded bytes to err (the caller adds file and chunk).
 * Errors: ST_ECORRUPT, ST_EVERSION (unknown encoding), ST_ENOMEM.
 */
int chunk_decode(int type, int enc, int val_enc, uint32_t n,
		 uint32_t null_count, const uint8_t *body, size_t len,
		 struct chunk_out *o, struct st_err *err);

/* Stats record value encoding (FORMAT.md §4.4) shared by writer and reader. */
void chunk_put_stats(struct st_buf *b, const struct st_col_stats *st, int type);
/* Parse a stats record body; false when malformed. */
bool chunk_get_stats(struct st_cur *c, int type, struct st_col_stats *st);

/* True when s[0..len) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool chunk_utf8_is_valid(const uint8_t *s, size_t len);

#endif
