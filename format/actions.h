/*
 * format/actions.h — commits and their actions, and their msgpack encoding
 * (format/ACTIONS.md is the byte-level spec). The store (daemon/) keeps one
 * encoded commit per LMDB value; replication ships the same bytes.
 *
 * A commit is a list of actions on one table (DESIGN.md §2, §5):
 *   metadata     the table's schema, partition columns, properties, constraints
 *   add          a data file (segment) with its statistics
 *   remove       a data file no longer live
 *   txn          (app id, app version) for idempotent writers
 *   commit_info  time, operation, parameters, read version, isolation, metrics
 *
 * Memory: act_decode returns a commit that owns everything it points to
 * (act_commit_free frees it all). For act_encode the caller owns every
 * pointer. All functions are thread-safe (no shared state).
 */
#ifndef STRATA_FORMAT_ACTIONS_H
#define STRATA_FORMAT_ACTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "format/bytes.h"
#include "format/error.h"
#include "format/types.h"

/* Version of the commit encoding; a decoder refuses a newer one. */
#define ACT_FORMAT_VERSION 1
/* Largest encoded commit accepted by act_decode. */
#define ACT_MAX_BYTES (64u << 20)

/* Isolation level ids (stored; fixed numbers). */
enum { ACT_ISO_SERIALIZABLE = 1, ACT_ISO_WRITE_SERIALIZABLE = 2 };

/* A string key-value pair. */
struct act_kv {
	char *key; /* NUL-terminated */
	char *val; /* NUL-terminated */
};

/* A CHECK constraint: a named format/expr.h predicate. */
struct act_constraint {
	char *name; /* NUL-terminated, unique in the table (case-insensitive) */
	char *expr; /* predicate text */
};

/* The metadata action: the whole table description after this commit. */
struct act_metadata {
	char *name;                 /* table name */
	struct st_schema schema;    /* columns, with stable field ids */
	uint32_t next_field_id;     /* next field id to hand out; ids are never reused */
	uint32_t npartition;        /* partition columns */
	uint32_t *partition;        /* their field ids */
	uint32_t nprops;            /* table properties */
	struct act_kv *props;       /* e.g. log_retention, file_retention, isolation */
	uint32_t nconstraints;      /* CHECK constraints */
	struct act_constraint *constraints; /* their names and predicates */
	int64_t created_us;         /* creation time, µs since epoch */
	uint32_t nkey;              /* declared key columns (NOT NULL, unique together) */
	uint32_t *key;              /* their field ids */
};

/* The add action: one data file and its statistics. */
struct act_add {
	uint64_t file_id;           /* unique within the table, never reused */
	uint64_t size;              /* bytes of the segment */
	uint64_t rows;              /* rows in it */
	uint32_t crc;               /* CRC32C of the whole segment */
	bool data_change;           /* false for compaction (same rows, new layout) */
	bool is_inline;             /* the segment bytes live in the store, not a file */
	uint32_t ncols;             /* per-column statistics */
	uint32_t *field_ids;        /* field id of each stats entry */
	struct st_col_stats *stats; /* file statistics per column */
	uint64_t base_fid;          /* a file sharing another's segment (a deletion vector
				     * or a revived file): that file's id, else 0 */
	uint8_t *dv;                /* deletion vector (FORMAT.md §10), or NULL; owned by
				     * decoded commits, borrowed when encoding */
	uint32_t dv_len;            /* its bytes */
	uint64_t deleted;           /* rows the vector deletes (0 without one) */
};

/* The remove action. */
struct act_remove {
	uint64_t file_id;           /* file no longer live from this version on */
	bool data_change;           /* false for compaction */
	uint8_t *deletes;           /* a MERGE that updated and deleted: the file's positions
				     * its delete clause removed (a deletion vector, FORMAT.md
				     * §10), or NULL; owned by decoded commits */
	uint32_t deletes_len;       /* its bytes */
};

/* The txn action. */
struct act_txn {
	char *app_id;               /* NUL-terminated application id */
	uint64_t app_version;       /* monotonically increasing per app id */
};

/* The commit_info action. */
struct act_commit_info {
	char *operation;            /* "CREATE TABLE", "WRITE", "REPLACE WHERE", ... */
	uint32_t nparams;           /* operation parameters */
	struct act_kv *params;      /* e.g. mode=append, predicate=... */
	int64_t read_version;       /* version the writer read; -1 for none */
	uint8_t isolation;          /* ACT_ISO_* */
	uint64_t rows_added, rows_removed;   /* metrics */
	uint64_t files_added, files_removed; /* metrics */
	uint64_t bytes_added, bytes_removed; /* metrics */
	uint64_t duration_us;       /* from transaction start to commit */
	uint64_t dvs_added;         /* deletion vectors written (metrics) */
	uint64_t rows_deleted;      /* rows deleted by DELETE (metrics; in rows_removed too) */
	uint64_t rows_updated;      /* rows updated by UPDATE (metrics; in rows_removed and
				     * rows_added too) */
};

/* One commit. */
struct act_commit {
	uint64_t table_id;          /* table it changes */
	uint64_t version;           /* table version it creates */
	uint64_t lsn;               /* global commit sequence number */
	uint64_t epoch;             /* leader epoch that committed it */
	int64_t time_us;            /* commit time, µs since epoch (strictly increasing per table) */
	uint32_t prev_checksum;     /* checksum of the table's previous commit (0 for version 0) */
	struct act_metadata *metadata; /* NULL unless the commit changes metadata */
	uint32_t nadd;              /* add actions */
	struct act_add *adds;
	uint32_t nremove;           /* remove actions */
	struct act_remove *removes;
	uint32_t ntxn;              /* txn actions */
	struct act_txn *txns;
	struct act_commit_info info; /* always present */
};

/* Where, in bytes from the start of an encoded commit, the values of the
 * fields a committer fills in last begin (ACTIONS.md: always fixed width). */
struct act_stamps {
	uint32_t version, lsn, time_us, prev_checksum, duration_us;
};

/* Append the msgpack encoding of c to out; *at (may be NULL) gets the
 * offsets of its stampable fields. Errors: ST_ENOMEM, ST_EINVAL (a string
 * or array above the spec's limits), ST_ETOOBIG. */
int act_encode(const struct act_commit *c, struct st_buf *out, struct act_stamps *at,
	       struct st_err *err);

/* Overwrite the stampable fields of an encoded commit in place: a commit
 * prepared before its version, LSN and time were known. */
void act_stamp(uint8_t *enc, const struct act_stamps *at, uint64_t version, uint64_t lsn,
	       int64_t time_us, uint32_t prev_checksum, uint64_t duration_us);

/* Decode n bytes into a new commit (*out, free with act_commit_free).
 * Unknown map keys are skipped. Errors: ST_ECORRUPT (not a valid commit:
 * the message names the field and byte offset), ST_EVERSION (newer
 * encoding version), ST_ETOOBIG, ST_ENOMEM. */
int act_decode(const uint8_t *p, size_t n, struct act_commit **out, struct st_err *err);

void act_commit_free(struct act_commit *c);

/* The chained checksum of a commit: CRC32C over prev_checksum (4 bytes,
 * little-endian) followed by the encoded bytes. */
uint32_t act_checksum(uint32_t prev_checksum, const uint8_t *encoded, size_t n);

/* Encode/decode a metadata action alone (the store keeps the current
 * metadata of each table under its id). Same rules as above. */
int act_metadata_encode(const struct act_metadata *m, struct st_buf *out, struct st_err *err);
int act_metadata_decode(const uint8_t *p, size_t n, struct act_metadata **out,
			struct st_err *err);
void act_metadata_free(struct act_metadata *m);

#endif
