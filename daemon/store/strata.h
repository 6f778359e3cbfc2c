/*
 * daemon/store/strata.h — libstrata: the strata store as an embeddable library.
 *
 * A store is one data directory (daemon/STORE.md): an LMDB commit log plus
 * segment files. Every change to a table is one atomic, durable commit that
 * creates the table's next version; every retained version stays readable.
 *
 * Conventions (LMDB's lmdb.h is the model):
 *  - Every function that can fail returns ST_OK or an error code of
 *    format/error.h and, when err is not NULL, fills a message that names
 *    the table, column, row or file concerned.
 *  - Strings passed in are borrowed for the duration of the call only.
 *  - Objects returned through out-parameters belong to the caller and are
 *    released with the matching _free/_close function.
 *  - A store handle may be used from several threads at once; scans and
 *    other handles derived from it are used by one thread at a time.
 *  - One process opens a data directory at a time (an flock guards it);
 *    never open the same directory twice in one process.
 *
 * Built: tables; append, overwrite and replace-where writes with schema
 * enforcement and evolution; streaming loads (st_load_*); optimistic
 * multi-table transactions with conflict checks and group commit;
 * idempotent writers; snapshots by version, timestamp or LSN; scans with
 * projection and predicate; history, restore, ALTER, CHECK constraints,
 * compaction, vacuum, retention; st_verify. stratad (daemon/server.h)
 * serves all of it over the wire protocol.
 */
#ifndef STRATA_DAEMON_STRATA_H
#define STRATA_DAEMON_STRATA_H

#include <stdbool.h>
#include <stdint.h>

#include "format/actions.h"
#include "format/error.h"
#include "format/io.h"
#include "format/types.h"

typedef struct st_store st_store; /* an open data directory */
typedef struct st_scan st_scan;   /* a scan over one table snapshot */
struct st_commit_result;          /* below, with the writes */

/* Options of st_store_open. Zero-initialized options give the defaults. */
/* Rows per row group of the segments the store writes: small enough that
 * statistics prune a narrow range predicate to little more than its rows
 * (about 100 KB of encoded data per row group for typical rows), large
 * enough that per-row-group costs stay under a few percent. */
/* Length of a chain hash (BLAKE2b-256, STORE.md §4). */
#define ST_HASH_LEN 32

/* The release of this library and of the programs built with it. */
#define ST_VERSION_STRING "0.5.0"

#define ST_DEFAULT_ROW_GROUP_ROWS 16384u

struct st_store_opts {
	uint64_t map_size;       /* LMDB map size in bytes; 0 = 16 GiB (address space: the
				  * file grows as it is used). */
	uint32_t row_group_rows; /* rows per segment row group; 0 = ST_DEFAULT_ROW_GROUP_ROWS */
	uint32_t inline_max;     /* segments up to this many bytes live in LMDB instead of a
				  * file (one fsync per small write); 0 = 16 KiB */
	const struct st_io *io;  /* segment file operations; NULL = POSIX (tests inject
				  * failures here, format/io.h) */
	int64_t log_retention_us;  /* default of the log_retention property; 0 = 30 days */
	int64_t file_retention_us; /* default of the file_retention property; 0 = 7 days */
	bool nosync;             /* LMDB commits without fsync (MDB_NOSYNC): faster, but
				  * acknowledged commits can be lost on power loss or a kernel
				  * crash (never on a process crash). Default false. */
};

/*
 * Open (creating if needed) the data directory dir. Takes the directory's
 * lock, opens LMDB, removes temp files of interrupted writes, checks
 * stale LMDB readers (mdb_reader_check).
 * Errors: ST_EEXIST (another process holds the lock), ST_EVERSION (store
 * written by a newer strata), ST_ECORRUPT, errno (mkdir, open, LMDB's
 * environment errors are reported as ST_ECORRUPT or errno with LMDB's text).
 */
int st_store_open(const char *dir, const struct st_store_opts *opts, st_store **out,
		  struct st_err *err);

/* Close the store; NULL is a no-op. Every scan must be closed first. */
void st_store_close(st_store *s);

/* Clear reader slots left by processes that died (mdb_reader_check);
 * returns how many (>= 0), or a negative ST_E* code when the check itself
 * failed (ST_EBUSY: the reader table could not be locked; ST_ECORRUPT).
 * Long-running owners call it periodically and log a negative result. */
int st_store_check_readers(st_store *s);

/* ---- tables --------------------------------------------------------- */

/* One column of a new table. */
struct st_column_def {
	const char *name;  /* 1..255 bytes of UTF-8, unique case-insensitively */
	int type;          /* enum st_type */
	bool nullable;     /* false = NOT NULL */
};

enum st_create_mode {
	ST_CREATE_ERROR = 0,         /* fail with ST_EEXIST if the table exists */
	ST_CREATE_IF_NOT_EXISTS = 1, /* succeed without change if it exists */
	ST_CREATE_REPLACE = 2        /* drop the existing table, create anew */
};

/* What a table is created with. */
struct st_table_spec {
	const char *name;                   /* STORE.md §3 */
	const struct st_column_def *cols;   /* columns, in order */
	uint32_t ncols;                     /* 1..4096 */
	const char *const *partition_by;    /* partition column names, may be NULL */
	uint32_t npartition;                /* count of partition_by */
	const struct act_kv *props;         /* table properties, may be NULL */
	uint32_t nprops;                    /* count of props */
	const char *const *key;             /* declared key columns (NOT NULL, unique together;
					     * STORE.md §4.6), may be NULL */
	uint32_t nkey;                      /* their count, up to 32 */
};

/*
 * Create a table: its version 0. *version (may be NULL) gets 0, or the
 * existing table's head version with ST_CREATE_IF_NOT_EXISTS.
 * Errors: ST_EINVAL (bad name, column, type or property), ST_EEXIST,
 * ST_ENOMEM, ST_EFAILED, LMDB errors (ST_ETOOBIG for a full map: grow
 * map_size), errno.
 */
int st_table_create(st_store *s, const struct st_table_spec *spec, enum st_create_mode mode,
		    uint64_t *version, struct st_err *err);

/* Names of the live tables, sorted. *names is one heap block (free with
 * free()); (*names)[i] are NUL-terminated strings inside it. */
int st_table_list(st_store *s, char ***names, uint32_t *n, struct st_err *err);

/* The metadata of a table at version (or the head when version < 0).
 * Free with act_metadata_free. Errors: ST_ENOTFOUND, ST_ERANGE (version
 * not retained or not yet written), ST_ENOMEM, ST_ECORRUPT. */
int st_table_describe(st_store *s, const char *table, int64_t version,
		      struct act_metadata **out, struct st_err *err);

/* Rename a table: a commit (the table id, its files and history stay).
 * Errors: ST_ENOTFOUND, ST_EEXIST, ST_EINVAL (bad new name), LMDB errors. */
int st_table_rename(st_store *s, const char *table, const char *new_name,
		    struct st_commit_result *res, struct st_err *err);

/* Drop a table: a final commit; its data files stay until vacuum. res
 * (may be NULL) gets the commit: the table's last version.
 * Errors: ST_ENOTFOUND, LMDB errors. */
int st_table_drop(st_store *s, const char *table, struct st_commit_result *res,
		  struct st_err *err);

/* ---- writes --------------------------------------------------------- */

/* Rows to write: ncols named column vectors of nrows rows each. Columns
 * are matched to the table by name (case-insensitively); table columns
 * missing from the batch are written as NULL. */
struct st_batch {
	uint32_t ncols;              /* columns in the batch */
	const char *const *names;    /* their names */
	const struct st_vec *cols;   /* their vectors (any st_vec form) */
	uint32_t nrows;              /* rows */
};

enum st_write_mode {
	ST_WRITE_APPEND = 0,   /* add the rows */
	ST_WRITE_OVERWRITE = 1 /* replace every row of the table with these */
};

/* Options of st_write. Zero-initialized options mean: append, no schema
 * evolution, no idempotency key. */
struct st_write_opts {
	enum st_write_mode mode;  /* append or overwrite */
	bool merge_schema;        /* add new columns, widen types (DESIGN.md §7) */
	bool overwrite_schema;    /* with ST_WRITE_OVERWRITE: the write's columns become the
				   * table's (same name and type keep their field id) */
	const char *replace_where; /* append mode: first remove the rows matching this
				    * predicate (format/expr.h); every new row must match it */
	const char *app_id;       /* idempotent writer id, or NULL */
	uint64_t app_version;     /* with app_id: skipped if <= the recorded one */
};

/* What a commit produced. */
struct st_commit_result {
	uint64_t version;  /* table version created (or already there, if noop) */
	uint64_t lsn;      /* global commit sequence number (0 if noop) */
	int64_t time_us;   /* commit time */
	bool noop;         /* an idempotent write that was already committed */
	uint64_t rows;     /* rows written */
};

/*
 * Write nbatches batches to table as one commit (all or nothing). The
 * rows are checked against the table's schema before anything is written
 * (DESIGN.md §7): unknown column, incompatible type, NULL in a NOT NULL
 * column or duplicate column name fail with ST_ESCHEMA naming the column,
 * the expected and found type and the first bad row; nothing is written.
 * Errors: ST_ENOTFOUND, ST_ESCHEMA, ST_EINVAL, ST_ENOMEM, ST_EFAILED
 * (a previous fsync or LMDB commit failed: reopen the store), errno.
 */
int st_write(st_store *s, const char *table, const struct st_batch *batches, uint32_t nbatches,
	     const struct st_write_opts *opts, struct st_commit_result *res, struct st_err *err);

/* ---- transactions ----------------------------------------------------- */

typedef struct st_txn st_txn; /* staged writes to one or more tables */

/*
 * Optimistic transactions (DESIGN.md §6). st_txn_write checks and writes
 * the data of one table right away (segments are durable before commit)
 * and records the version it read; st_txn_commit then decides, in one
 * LMDB write transaction, against every commit that landed since:
 * a winner that changed metadata, committed for the same app id, added
 * rows an overwrite read (Serializable; under the table property
 * isolation=WriteSerializable blind appends never conflict) or removed a
 * file this transaction read makes it fail with ST_ECONFLICT naming the
 * winning version and the rule. Appends never conflict with appends.
 * All tables commit together or none does (multi-table commits).
 */
int st_txn_begin(st_store *s, st_txn **out, struct st_err *err);

/* Stage a write to table (at most one per table per transaction). Errors:
 * as st_write, plus ST_EINVAL for a second write to the same table. */
int st_txn_write(st_txn *t, const char *table, const struct st_batch *batches, uint32_t nb,
		 const struct st_write_opts *opts, struct st_err *err);

/* Commit every staged write atomically; res gets one result per st_txn_write,
 * in order. Always frees t. Errors: ST_ECONFLICT (nothing committed; the
 * staged segments are removed), ST_ENOTFOUND (a table was dropped),
 * ST_EFAILED, LMDB errors. */
int st_txn_commit(st_txn *t, struct st_commit_result *res, struct st_err *err);

/* Discard a transaction and its staged segments. NULL is a no-op. */
void st_txn_abort(st_txn *t);

/* ---- streaming loads --------------------------------------------------- */

typedef struct st_load st_load; /* one write, fed batch by batch */

/*
 * A write too large to hold in memory: st_load_begin, any number of
 * st_load_write, then st_load_commit (one commit, all or nothing) or
 * st_load_abort. The columns are those of `header` (names and types; its
 * rows, if any, are not written). Rows stream into one segment file
 * (memory stays at one row group); each st_load_write checks its rows as
 * st_write does, numbering rows from the start of the load in messages.
 * Options and conflict rules are those of st_write; the read version is
 * taken at st_load_begin. A load never goes inline in LMDB: small writes
 * should use st_write. After a failed st_load_write only st_load_abort is
 * left. Errors: as st_write.
 */
int st_load_begin(st_store *s, const char *table, const struct st_batch *header,
		  const struct st_write_opts *opts, st_load **out, struct st_err *err);
int st_load_write(st_load *l, const struct st_batch *batches, uint32_t nb, struct st_err *err);
/* Rows written so far. */
uint64_t st_load_rows(const st_load *l);
/* Commit the load; always frees l. */
int st_load_commit(st_load *l, struct st_commit_result *res, struct st_err *err);
/* Discard the load and its segment. NULL is a no-op. */
void st_load_abort(st_load *l);

/* ---- reads ---------------------------------------------------------- */

/* Which version to read. */
struct st_at {
	enum { ST_AT_LATEST = 0, ST_AT_VERSION = 1, ST_AT_TIME = 2, ST_AT_LSN = 3 } kind; /* how */
	int64_t value; /* the version, the time in µs since epoch, or an LSN */
};

/* One batch of scan output: the projected columns of one row group and
 * the rows of it that satisfy the predicate. */
struct st_scan_batch {
	uint32_t ncols;              /* projected columns, in request order */
	const struct st_vec *cols;   /* their vectors, all of `rows` rows */
	uint32_t rows;               /* rows in the vectors */
	const uint32_t *sel;         /* selected row indices, ascending; NULL = all */
	uint32_t nsel;               /* count of selected rows */
};

/*
 * Open a scan of table at `at`, reading the named columns (NULL = all, in
 * table order) of the rows matching predicate (format/expr.h text, or
 * NULL). Files and row groups whose statistics cannot match are skipped.
 * The snapshot's files stay readable until the scan is closed.
 * Errors: ST_ENOTFOUND (table or column), ST_ERANGE (a version not
 * retained; a time before the first commit), ST_ESYNTAX/ST_ETYPE (the
 * predicate), ST_ENOMEM.
 */
int st_scan_open(st_store *s, const char *table, struct st_at at, const char *const *columns,
		 uint32_t ncolumns, const char *predicate, st_scan **out, struct st_err *err);

/*
 * The store's last LSN. Scans opened with {ST_AT_LSN, lsn} read every
 * table as it was after that commit: a consistent snapshot across tables
 * (take the LSN once, then scan several tables at it).
 */
uint64_t st_store_lsn(st_store *s);

/* The version the scan reads. */
uint64_t st_scan_version(const st_scan *sc);

/* Name and type of projected column i of a scan (i < the projection's
 * count; NULL columns = the table's columns at the scanned version). */
const char *st_scan_column_name(const st_scan *sc, uint32_t i);
int st_scan_column_type(const st_scan *sc, uint32_t i);
uint32_t st_scan_ncolumns(const st_scan *sc);

/* What a scan reads: its files, their rows and bytes (before pruning). */
struct st_scan_info {
	uint64_t version;  /* version read */
	uint64_t lsn;      /* LSN of its commit */
	int64_t time_us;   /* its commit time */
	uint64_t oldest;   /* the table's oldest retained version (when the scan opened) */
	uint64_t files;    /* files of the snapshot */
	uint64_t rows;     /* their rows (deleted ones left out) */
	uint64_t bytes;    /* their bytes */
	uint64_t deleted;  /* rows of those files that deletion vectors delete */
	uint64_t dvs;      /* files with a deletion vector */
};
void st_scan_info(const st_scan *sc, struct st_scan_info *out);
/*
 * The change data feed of table (STORE.md §4.4): a scan whose rows are the
 * changes of the commits from the first version at or after `from` to the
 * last at or before `to` (ST_AT_LATEST: the head), in commit order, each
 * with the projected columns (NULL = all, at the schema of the last version
 * read) and then _change_type (string: insert, delete, update_preimage,
 * update_postimage), _commit_version (int64), _commit_timestamp
 * (timestamp). The predicate filters the rows. Compaction and OPTIMIZE
 * (data_change = false) add nothing. Read it with st_scan_next/st_scan_close.
 * Errors: ST_ENOTFOUND, ST_ERANGE (vacuumed, or past the head), ST_EINVAL
 * (the table property change_feed is not true at some version of the
 * range), ST_ECORRUPT, ST_ENOMEM.
 */
int st_changes_open(st_store *s, const char *table, struct st_at from, struct st_at to,
		    const char *const *columns, uint32_t ncolumns, const char *predicate,
		    st_scan **out, struct st_err *err);
/* What a scan has read so far: files and row groups read and skipped by
 * their statistics, and the rows of the row groups it decoded. */
struct st_scan_stats {
	uint64_t files_read, files_pruned;
	uint64_t row_groups_read, row_groups_pruned;
	uint64_t rows_read;
};
void st_scan_stats(const st_scan *sc, struct st_scan_stats *out);
/* The table's metadata at the scanned version (valid until st_scan_close). */
const struct act_metadata *st_scan_metadata(const st_scan *sc);

/* Next batch, or *out = NULL at the end. The batch is valid until the next
 * call or close. Errors: ST_ECORRUPT (a damaged segment: named), errno. */
int st_scan_next(st_scan *sc, const struct st_scan_batch **out, struct st_err *err);

void st_scan_close(st_scan *sc);

/* Restore table to the version selected by at (ST_AT_VERSION or
 * ST_AT_TIME): a new commit whose rows and schema are those of that
 * version; the versions in between stay readable. Errors: ST_ENOTFOUND,
 * ST_ERANGE (version not retained), ST_EFAILED, errno, LMDB errors. */
int st_table_restore(st_store *s, const char *table, struct st_at at,
		     struct st_commit_result *res, struct st_err *err);

/* ALTER TABLE operations. */
enum st_alter_op {
	ST_ALTER_ADD_COLUMN,      /* column (nullable), type */
	ST_ALTER_RENAME_COLUMN,   /* column -> arg */
	ST_ALTER_DROP_COLUMN,     /* column (metadata only; not a partition column) */
	ST_ALTER_SET_PROPERTY,    /* column = property name, arg = value */
	ST_ALTER_UNSET_PROPERTY,  /* column = property name */
	ST_ALTER_SET_NOT_NULL,    /* column; refused while it holds NULLs */
	ST_ALTER_DROP_NOT_NULL,   /* column */
	ST_ALTER_ADD_CONSTRAINT,  /* column = constraint name, arg = predicate (format/expr.h) */
	ST_ALTER_DROP_CONSTRAINT  /* column = constraint name */
};

/* One ALTER operation. */
struct st_alter {
	enum st_alter_op op;  /* what */
	const char *column;   /* column, property or constraint name */
	const char *arg;      /* new name, property value or predicate */
	int type;             /* ST_ALTER_ADD_COLUMN: the type */
};

/*
 * Change a table's metadata as one commit. Rename and drop are
 * metadata-only (columns are tracked by field id). SET NOT NULL and ADD
 * CONSTRAINT check the existing rows first and fail with ST_ESCHEMA naming
 * a violating row. From then on st_write refuses rows that violate a
 * constraint (the predicate is FALSE; NULL passes, as in SQL).
 * Errors: ST_ENOTFOUND, ST_EEXIST, ST_EINVAL, ST_ESCHEMA, ST_ESYNTAX,
 * ST_ETYPE, ST_EFAILED, LMDB errors.
 */
int st_table_alter(st_store *s, const char *table, const struct st_alter *a,
		   struct st_commit_result *res, struct st_err *err);

/* ---- maintenance ---------------------------------------------------- */

/*
 * Compact: rewrite the table's live files (and inline segments) into one
 * segment file, as a commit whose actions are marked data_change = false:
 * the rows do not change, so it never conflicts with concurrent appends,
 * and a concurrent overwrite or replace-where that removed a file it read
 * makes it fail with ST_ECONFLICT (retry). res->noop when there is
 * nothing to do. Errors: ST_ENOTFOUND, ST_ECONFLICT, ST_EFAILED, errno.
 */
int st_table_compact(st_store *s, const char *table, struct st_commit_result *res,
		     struct st_err *err);

/* Options of st_delete and st_update. Zero-initialized: a plain one. */
struct st_dml_opts {
	const char *app_id;       /* idempotent writer id, or NULL */
	uint64_t app_version;     /* with app_id: skipped if <= the recorded one */
};

/* What st_delete or st_update did. */
struct st_dml_result {
	struct st_commit_result commit; /* the commit (noop: nothing matched, or the app
					 * version was already committed) */
	uint64_t rows_deleted;    /* rows deleted (DELETE, MERGE) */
	uint64_t rows_updated;    /* rows updated (UPDATE, MERGE) */
	uint64_t rows_inserted;   /* rows inserted (MERGE) */
	uint64_t files_skipped;   /* live files whose statistics exclude the predicate */
	uint64_t files_read;      /* files read to find the matching rows */
	uint64_t files_removed;   /* files removed whole (every row left matched) */
	uint64_t dvs_written;     /* files re-added with a deletion vector */
};

/*
 * DELETE FROM table WHERE predicate (format/expr.h), as one commit
 * (STORE.md §4.1): no segment is rewritten. Files the statistics exclude
 * are not read, files whose rows all match are removed, the others get a
 * deletion vector. A predicate that matches nothing commits nothing
 * (res->commit.noop). Errors: ST_ENOTFOUND, ST_EINVAL / ST_ENOTFOUND (the
 * predicate, with its offset), ST_ECONFLICT (a concurrent commit removed a
 * file this DELETE read, or added rows that may match), ST_EFAILED, errno.
 */
int st_delete(st_store *s, const char *table, const char *predicate,
	      const struct st_dml_opts *opts, struct st_dml_result *res,
	      struct st_err *err);

/*
 * UPDATE table SET set WHERE predicate, as one commit (STORE.md §4.2):
 * the matching rows are deleted as by st_delete and written again, with
 * the SET list's values (format/expr.h expr_assign_parse; each computed
 * from the old row), to one new segment. Schema and constraints hold for
 * the new rows or nothing changes (ST_ESCHEMA / ST_ERANGE naming the
 * column, the file and the row's position). Other errors as st_delete.
 */
int st_update(st_store *s, const char *table, const char *set, const char *predicate,
	      const struct st_dml_opts *opts, struct st_dml_result *res, struct st_err *err);

/* Options of st_optimize. Zero-initialized: bin packing of every live file
 * into 64 MiB files. */
struct st_optimize_opts {
	const char *where;        /* only files whose statistics may match (format/expr.h) */
	uint64_t target_size;     /* bytes per file written; 0 = 64 MiB */
	const char *cluster_by;   /* "a,b": sort the chosen files' rows by a Z-order of up to 4
				   * columns; NULL = bin packing only */
};

/* What st_optimize did. */
struct st_optimize_result {
	struct st_commit_result commit; /* noop: nothing to do (already optimized) */
	uint64_t files_removed, files_added;
	uint64_t bytes_removed, bytes_added;
	uint64_t rows;            /* rows rewritten */
	uint64_t rows_purged;     /* rows deletion vectors deleted, now gone from the files */
	uint64_t dvs_purged;      /* deletion vectors purged */
};

/*
 * OPTIMIZE (STORE.md §4.3): rewrite the chosen files as one commit whose
 * adds and removes carry data_change = false (invisible to streams and the
 * change feed; concurrent appends never conflict with it). Without
 * cluster_by, files below half the target size and files with a deletion
 * vector are packed into target-sized files; a second run does nothing.
 * With cluster_by, every chosen file is rewritten with its rows in Z-order
 * (held in memory: the rows of the chosen files), unless an OPTIMIZE with
 * the same clustering wrote all of them. Errors: ST_ENOTFOUND (table,
 * column), ST_EINVAL, ST_ECONFLICT (a concurrent commit removed one of the
 * files), ST_EFAILED, errno.
 */
int st_optimize(st_store *s, const char *table, const struct st_optimize_opts *opts,
		struct st_optimize_result *res, struct st_err *err);

/* MERGE's clauses (Delta's semantics). */
enum st_merge_matched { ST_MERGE_MATCHED_IGNORE = 0, ST_MERGE_MATCHED_UPDATE_ALL,
			ST_MERGE_MATCHED_DELETE, ST_MERGE_MATCHED_UPDATE_SET };
enum st_merge_not_matched { ST_MERGE_NOT_MATCHED_IGNORE = 0, ST_MERGE_NOT_MATCHED_INSERT_ALL };
enum st_merge_by_source { ST_MERGE_BY_SOURCE_IGNORE = 0, ST_MERGE_BY_SOURCE_DELETE };
struct st_merge_opts {
	const char *on;           /* "t.a = s.b [AND t.c = s.d ...]": t the target, s the source */
	int matched;              /* enum st_merge_matched */
	const char *set;          /* ST_MERGE_MATCHED_UPDATE_SET: "col = value, ..." over the
				   * target's columns (col or t.col) and the source's (s.col) */
	int not_matched;          /* enum st_merge_not_matched */
	int by_source;            /* enum st_merge_by_source */
	const char *app_id;       /* idempotent writer id, or NULL */
	uint64_t app_version;
};

/*
 * MERGE INTO table USING source (another table, at its latest version) ON
 * the key columns (STORE.md §4.5), as one commit: target rows matched by a
 * source row are updated to the source row (update-all: every target
 * column from the source column of the same name, NULL where the source
 * has none) or deleted; source rows that match none are inserted
 * (insert-all); target rows that no source row matches are deleted with
 * by_source DELETE. A target row matched by two source rows (when matches
 * update or delete) is ST_EINVAL
 * naming the key, nothing changed. A hash join: the source rows are held
 * in memory; target files are read (the key columns' statistics prune them
 * unless by_source is DELETE). Errors as st_update.
 */
int st_merge(st_store *s, const char *table, const char *source,
	     const struct st_merge_opts *opts, struct st_dml_result *res, struct st_err *err);

/*
 * A MERGE source held in memory instead of a table (a file a client sends:
 * PROTOCOL.md, LOAD_BEGIN in source mode): st_merge_src_new, any number of
 * st_merge_src_add (the first batch's column names and types are the
 * source's; every later batch must have the same), then st_merge_from,
 * which merges as st_merge with these rows as the source (name: how
 * messages and history call it; ON's s.col or name.col) and frees src
 * whatever it returns; st_merge_src_free drops one unused.
 */
typedef struct st_merge_src st_merge_src;
int st_merge_src_new(st_merge_src **out, struct st_err *err);
int st_merge_src_add(st_merge_src *src, const struct st_batch *b, struct st_err *err);
uint64_t st_merge_src_rows(const st_merge_src *src);
/* The bytes its rows take in memory (values and strings). */
uint64_t st_merge_src_bytes(const st_merge_src *src);
void st_merge_src_free(st_merge_src *src);
int st_merge_from(st_store *s, const char *table, st_merge_src *src, const char *name,
		  const struct st_merge_opts *opts, struct st_dml_result *res, struct st_err *err);

/* Options of st_vacuum. Zero-initialized: the table's file_retention
 * (default 7 days), for real. */
struct st_vacuum_opts {
	int64_t retain_us;  /* keep removed files this long (µs); 0 = the table's file_retention */
	bool dry_run;       /* list what would go, delete nothing */
	bool force;         /* allow retain_us below file_retention */
};

/* What st_vacuum did (or, with dry_run, would do). */
struct st_vacuum_result {
	uint64_t files;          /* data files deleted */
	uint64_t bytes;          /* their size */
	uint64_t pinned;         /* old enough, but held by an open scan: kept */
	uint64_t followers;      /* cluster mode: old enough, but a follower within the lag
				  * budget has not caught up past its removal: kept */
	uint64_t oldest_version; /* oldest version still fully readable afterwards */
	uint64_t commits_pruned; /* commits older than log_retention removed from history */
	char **paths;            /* dry_run: the files, "(inline)" for inline ones */
	uint32_t npaths;         /* count of paths */
};

/*
 * Delete the data files of table that were removed longer ago than the
 * retention and that no open scan reads, and prune history older than the
 * table's log_retention (default 30 days; kept down to a commit that
 * carries metadata). Versions that lost files or commits become
 * unreadable (time travel reports ST_ERANGE); version numbers never change. A retain_us below the table's
 * file_retention is refused (ST_EINVAL) unless force.
 * Errors: ST_ENOTFOUND, ST_EINVAL, ST_EFAILED, LMDB errors.
 */
int st_vacuum(st_store *s, const char *table, const struct st_vacuum_opts *opts,
	      struct st_vacuum_result *res, struct st_err *err);
void st_vacuum_result_fini(struct st_vacuum_result *r);

/* What st_verify found. */
struct st_verify_result {
	uint64_t segments;   /* live segments (files and inline) verified */
	uint64_t commits;    /* commits whose checksum chain was verified */
	char **problems;     /* one line per damaged segment or broken chain */
	uint32_t nproblems;  /* 0 = everything verified */
	uint64_t last_lsn;   /* LSN of the store's newest commit (0: none) */
	uint8_t last_hash[ST_HASH_LEN]; /* the chain hash after it */
	uint64_t head_lsn;   /* st_verify_head: the LSN whose chain hash is the
			      * given head (0: not given or not in the chain) */
	uint64_t records;    /* LMDB records whose checksum was checked */
	uint64_t orphans;    /* files under tables/ that no record names */
	uint64_t pages;      /* LMDB pages walked (0: quick, or skipped) */
	bool page_walk_skipped; /* writes reused the snapshot's meta page meanwhile
				 * (a running daemon): run again, or offline */
};

/* How st_verify_ex checks. */
struct st_verify_opts {
	bool quick;                /* only the commit chains, the log's hash chain and
				    * the live segments (no record sweep, cross-check,
				    * orphan files or page walk) */
	const uint8_t *head;       /* as st_verify_head's (NULL: none) */
};

/*
 * Verify the whole store: the checksum chain of every retained commit of
 * every table, and every checksum of every live segment (files and inline
 * ones). Damage is reported in res->problems, not as an error; errors are
 * for what stops the check itself (ST_ENOMEM, LMDB errors).
 */
int st_verify(st_store *s, struct st_verify_result *res, struct st_err *err);
/* st_verify with options (NULL: the full check). The full check also
 * checks every record's checksum, cross-checks each table's file records
 * against its commits (both directions), reports files no record names
 * (orphans) and walks LMDB's pages (each reachable once, free ones not
 * reachable). */
int st_verify_ex(st_store *s, const struct st_verify_opts *o, struct st_verify_result *res,
		 struct st_err *err);
/* st_verify, and also find head, a chain hash recorded elsewhere (from
 * st_chain_head or `strata status` earlier), in the chain: res->head_lsn
 * gets its LSN, or a problem says it is not there (the log was changed or
 * rewritten since, or the hash belongs to another store). An unkeyed hash
 * chain proves nothing against an anchor kept on the same node: keep the
 * head somewhere else. */
int st_verify_head(st_store *s, const uint8_t head[ST_HASH_LEN], struct st_verify_result *res,
		   struct st_err *err);
void st_verify_result_fini(struct st_verify_result *r);
/* ---- backup and restore (backup.c, STORE.md §9) ------------------------ */

struct st_backup_result {
	uint64_t lsn;                 /* the chain head of the backup: its newest LSN */
	uint8_t hash[ST_HASH_LEN];    /* and the chain hash after it */
	uint64_t files;               /* files in the manifest (segments and data.mdb) */
	uint64_t bytes;               /* their bytes */
};
/*
 * An online, consistent backup of the whole store into dir (an absolute
 * path; new or empty): a compacted copy of LMDB (mdb_env_copy2, one
 * snapshot), every segment file its records name (hard-linked on the same
 * file system, copied otherwise; each checked whole against its record's
 * size and CRC32C: a damaged one fails the backup, naming it, and is
 * remembered for repair), and MANIFEST last (names, sizes, CRC32Cs, chain
 * head). Writers go on meanwhile; vacuum deletes no file until it ends. The
 * backup is a data directory: stratad --verify reads it. Errors: ST_EINVAL
 * (not absolute), ST_EEXIST (not empty), ST_ECORRUPT, LMDB errors, errno.
 */
int st_backup(st_store *s, const char *dir, struct st_backup_result *res, struct st_err *err);
/* Check backup dir against its MANIFEST (each file's size and CRC32C):
 * problems (malloc'ed lines, free each and the array) name what differs.
 * Errors: ST_ENOTFOUND (no MANIFEST: not a backup, or unfinished),
 * ST_ECORRUPT (not a manifest), ST_ENOMEM. */
int st_backup_check(const char *dir, struct st_backup_result *res, char ***problems,
		    uint32_t *nproblems, struct st_err *err);
/* A new data directory data_dir (it must not exist) from backup dir:
 * checked against its MANIFEST first, copied into data_dir.restoring (every
 * file and directory fsynced), renamed into place. Errors: as
 * st_backup_check, ST_ECORRUPT (damaged), ST_EEXIST, errno. */
int st_restore_from(const char *backup, const char *data_dir, struct st_backup_result *res,
		    struct st_err *err);

/* A damaged segment file (a chunk or footer fails its checksum), as its
 * file record describes the good one: what a repair fetches. */
struct st_bad_segment {
	uint64_t tid, fid;  /* table id, file id (st_segment_path names the file) */
	uint64_t size;      /* bytes of the good file */
	uint32_t crc;       /* CRC32C of the good file */
};
/* Up to max damaged segment files into out; returns how many there are. */
uint32_t st_bad_segments(st_store *s, struct st_bad_segment *out, uint32_t max);
/*
 * Repair: fetched is a copy of damaged segment (tid, fid) obtained
 * elsewhere (a peer, a backup), on the same file system. It must have the
 * size and CRC32C its file record gives and verify chunk by chunk; it is then
 * fsynced and renamed over the damaged file (the directory fsynced), and the
 * segment forgotten; its table is served again when that was its only
 * damage. A segment whose record is gone (vacuumed) is forgotten and
 * fetched removed. Errors: ST_ECORRUPT (the copy is not the good file:
 * fetched is removed), ST_ENOTFOUND (not a damaged segment), errno.
 */
int st_segment_repair(st_store *s, uint64_t tid, uint64_t fid, const char *fetched,
		      struct st_err *err);

/* What st_store_open checked (STORE.md §5): bounded, never a full walk. */
struct st_open_report {
	uint32_t format_from;   /* the format found on disk */
	uint32_t format;        /* the format now (format_from < format: upgraded in place) */
	uint64_t tables;        /* table heads read (dropped ones too) */
	uint64_t commits;       /* commits whose chain was checked: the newest 64 per table */
	uint64_t log_records;   /* LSN records whose hash chain was checked: the newest 64 */
	uint64_t leftovers;     /* files of writes that never committed, removed */
	uint32_t damaged;       /* tables refused as damaged after the checks */
};
void st_store_open_report(st_store *s, struct st_open_report *out);

/* Has the store failed (an I/O error at a commit: every write is refused
 * with ST_EFAILED until it is reopened)? Returns 1 and copies what failed
 * into buf (n bytes, NUL-terminated), or 0. Safe from any thread. */
int st_store_failure(st_store *s, char *buf, size_t n);

/* How far a scrub pass is (st_scrub fills it as it goes; read its fields
 * with __atomic_load_n from another thread). */
struct st_scrub_progress {
	uint64_t bytes_done;   /* bytes of records and segments read so far */
	uint64_t bytes_total;  /* the pass's estimate: live segments and data.mdb */
	uint64_t tables_done, tables_total;
	uint32_t problems;     /* found so far */
};

/* How st_scrub runs. */
struct st_scrub_opts {
	const char *table;     /* NULL: every table and the store's own records */
	uint32_t rate_mb_s;    /* at most this many MB (10^6 bytes) read per second on
				* average (0: unthrottled) */
	const int *stop;       /* read atomically: non-zero ends the pass early (NULL: never) */
	struct st_scrub_progress *progress; /* NULL: none */
};

/*
 * One scrub pass: st_verify's checks without its single snapshot, so that
 * it can run for hours beside writers (STORE.md §8, "Scrub"). Per table,
 * in a read txn of its own: its commit chain, its file records against its
 * commits and its live file list; then each live segment (an inline one in
 * a read txn of its own); a segment that fails is reported only if it is
 * still live afterwards (a compaction and vacuum may have removed it
 * meanwhile). For the whole store, also every record's checksum, in
 * transactions of 10,000 records, and the log's hash chain. LMDB's pages
 * (they need one quiet snapshot) and orphan files are left to st_verify.
 * Damage marks its table damaged, as in st_verify, and is in
 * res->problems; a stopped pass says so in *stopped. Errors: ST_ENOTFOUND
 * (the table), ST_ENOMEM, LMDB errors.
 */
int st_scrub(st_store *s, const struct st_scrub_opts *o, struct st_verify_result *res,
	     bool *stopped, struct st_err *err);

/* Tables refused as damaged (a record failed its checksum, or the scrub
 * found a problem): up to max of their ids into tids; returns how many
 * there are. */
uint32_t st_damaged_tables(st_store *s, uint64_t *tids, uint32_t max);
/* The same as what refuses each: up to max malloc'ed lines (free each; an
 * entry is NULL when out of memory) into why; returns how many there are. */
uint32_t st_damaged_reasons(st_store *s, char **why, uint32_t max);

/* ---- the commit log in LSN order (STORE.md §2.4) ---------------------- */

/* The newest commit of the store: its LSN and the chain hash after it
 * (lsn 0 and the chain's base hash, all zeros, when nothing is committed). */
struct st_chain_head {
	uint64_t lsn;                 /* LSN of the newest commit, 0 = none */
	uint8_t hash[ST_HASH_LEN];    /* BLAKE2b-256 chain hash after it */
};
int st_chain_head(st_store *s, struct st_chain_head *out, struct st_err *err);

/* The chain hash after the commit at lsn. Errors: ST_ENOTFOUND (no such
 * LSN retained), ST_ECORRUPT, LMDB errors. */
int st_chain_hash(st_store *s, uint64_t lsn, uint8_t out[ST_HASH_LEN], struct st_err *err);

/* One commit of the log, as replication ships it. */
struct st_log_entry {
	uint64_t lsn;                 /* its LSN */
	uint64_t table_id;            /* the table it changed */
	uint64_t version;             /* the table version it made */
	uint8_t hash[ST_HASH_LEN];    /* chain hash after it */
	uint8_t digest[ST_HASH_LEN];  /* BLAKE2b-256 of the encoded commit */
	uint8_t *commit;              /* the encoded commit (format/ACTIONS.md), heap;
				       * NULL once history pruned it (vacuum) */
	size_t len;                   /* its length */
};

/*
 * Read commits in LSN order: those with LSN >= from (0: from the first),
 * at most max (0 = no limit), one cursor walk over the LSN records. *out (free with
 * st_log_entries_free) gets *n entries; fewer than max means the end of
 * the log. Errors: ST_ERANGE (from is below the oldest retained LSN: the
 * log was pruned there), ST_ECORRUPT, ST_ENOMEM, LMDB errors.
 */
int st_log_read(st_store *s, uint64_t from, uint32_t max, struct st_log_entry **out, uint32_t *n,
		struct st_err *err);
void st_log_entries_free(struct st_log_entry *e, uint32_t n);

/* History of a table, newest first, at most limit commits (0 = all).
 * *commits is an array of decoded commits; free each with act_commit_free
 * and the array with free(). */
int st_history(st_store *s, const char *table, uint32_t limit, struct act_commit ***commits,
	       uint32_t *n, struct st_err *err);

/* ---- cluster mode (replication/REPLICATION.md §4; STORE.md §7) ----------
 *
 * In cluster mode a commit is decided as on a single node (schema,
 * conflicts, group commit, version, LSN, chain hash) but not made visible:
 * its effects are captured as an entry (the records the funnel would
 * put), the LMDB transaction is aborted, and the entries go to the
 * replication driver through hooks.propose. They become visible when the
 * driver calls st_repl_apply (a quorum holds them) — on the leader and on
 * every follower alike, byte for byte. While a node's log holds entries
 * it has not applied, no new commit is decided (the next decision needs
 * the state they make).
 *
 * Log records (kind 00, STORE.md §7) keep each entry after it is applied
 * (followers that lag are caught up from them).
 */

/* One entry of the replicated log. body is the store's encoding (STORE.md
 * §7.2); len 0 is an epoch's no-op. */
struct st_repl_entry {
	uint64_t lsn;
	uint64_t epoch;
	uint8_t hash[ST_HASH_LEN];   /* chain hash after this entry */
	const uint8_t *body;
	size_t len;
};

/* Durability levels (REPLICATION.md §7), numbered as the wire's. */
enum st_durability { ST_DUR_DEFAULT = 0, ST_DUR_LOCAL = 1, ST_DUR_QUORUM = 2, ST_DUR_ALL = 3 };

/* What the store asks of the replication driver. Every function may be
 * called with the store's write lock held: none may wait for the store. */
struct st_repl_hooks {
	void *ctx;
	/* Queue entries (lsn = the store's last applied + 1, ...) for
	 * proposal; copied. ST_OK, ST_ENOTLEADER (err says who leads). */
	int (*propose)(void *ctx, const struct st_repl_entry *e, uint32_t n, struct st_err *err);
	uint64_t (*stable)(void *ctx);      /* last LSN durable in the local log */
	uint64_t (*all_matched)(void *ctx); /* last LSN durable on every voter */
	uint64_t (*log_last)(void *ctx);    /* last LSN of the local log */
	/* Lowest LSN durable on every follower within the lag budget (vacuum
	 * keeps the files they may still fetch); UINT64_MAX when none lags. */
	uint64_t (*min_match)(void *ctx);
	int64_t timeout_us;                 /* how long a write waits for its durability */
	int durability;                     /* default level (ST_DUR_LOCAL..ALL) */
};

/* Enter cluster mode (once, right after open). Refuses (ST_EINVAL) a store
 * that has commits from single-node use but no replicated log. */
int st_repl_attach(st_store *s, const struct st_repl_hooks *h, struct st_err *err);
/* The durability level of the writes this thread makes from now on. */
void st_repl_set_durability(int level);

/* Hard state (REPLICATION.md §3): epoch, vote and commit LSN. */
struct st_repl_hs {
	uint64_t epoch, vote, commit;
};
/* The stored hard state (zeros on a fresh store). */
int st_repl_hs_load(st_store *s, struct st_repl_hs *hs, struct st_err *err);
/* The cluster identity: written at the first start, compared afterwards
 * (ST_EINVAL names both when they differ). */
int st_repl_identity(st_store *s, uint64_t node_id, const uint8_t cluster_id[16],
		     struct st_err *err);

/* What a member that re-bootstraps under its own id must not forget: its
 * hard state's epoch and vote, and its log's last LSN (it may have
 * acknowledged entries up to there). */
struct st_repl_keep {
	uint64_t epoch, vote, last;
};
/* Make a snapshot of another node of the cluster (a backup's copy, not
 * yet served) this node's: node id, commit LSN = applied LSN, log records
 * past it dropped (REPLICATION.md §14). keep NULL (a new node): no vote,
 * the snapshot's epoch. keep given (a member keeping its id): the higher
 * epoch, and its own vote when that is its epoch; ST_EUNAVAIL when the
 * snapshot's applied LSN is below keep->last. ST_EINVAL when the snapshot
 * is of another cluster. */
int st_repl_adopt(st_store *s, uint64_t node_id, const uint8_t cluster_id[16],
		  const struct st_repl_keep *keep, struct st_err *err);
/* Whether an entry body (st_repl_entry's body, len) continues into the
 * next entry: the two belong to one atomic unit (a multi-entry commit), which
 * the driver must ship whole (REPLICATION.md §5.3). */
bool st_repl_entry_more(const void *body, size_t len);
/* Call fn for every log record in LSN order (fn returns non-zero to stop;
 * e->body is borrowed for the call). */
int st_repl_log_each(st_store *s, int (*fn)(void *arg, const struct st_repl_entry *e), void *arg,
		     struct st_err *err);
/* The body of the log record at lsn, appended to *out. ST_ENOTFOUND. */
int st_repl_log_get(st_store *s, uint64_t lsn, struct st_buf *out, struct st_err *err);
/* In one durable LMDB transaction: store hs (NULL: unchanged), drop log
 * records with LSN >= truncate_from (0: none; refused with ST_ECORRUPT at
 * or below the applied LSN), append entries (LSNs following the log's
 * last). Segment files the entries reference must already be in place. A
 * write waiting on a dropped entry goes on waiting: it fails (ST_ENOTLEADER,
 * "not applied") once another entry is applied at its LSN, since an
 * uncommitted entry dropped here may still commit under a later leader. */
int st_repl_persist(st_store *s, const struct st_repl_hs *hs, uint64_t truncate_from,
		    const struct st_repl_entry *e, uint32_t n, struct st_err *err);
/* The proposal whose first entry is (from, hash) was not taken (leadership
 * moved; the core never appended it): the write waiting on it fails with
 * ST_ENOTLEADER ("not applied"); an earlier proposal at the same LSN that
 * its writer gave up on changes nothing. from 0 (hash NULL): the driver
 * stopped; waiting writes fail with ST_EUNAVAIL ("may still commit": their
 * entries may have reached the followers). */
void st_repl_fail(st_store *s, uint64_t from, const uint8_t *hash);
/* Wake writers waiting on the driver's state (stable, all_matched). */
void st_repl_notify(st_store *s);
/* Apply log records up to upto (committed), in LSN order, verbatim,
 * checking each one's chain hash; wakes waiting writers. */
int st_repl_apply(st_store *s, uint64_t upto, struct st_err *err);
/* The chain hash of a no-op entry at lsn after prev. */
void st_repl_noop_hash(const uint8_t prev[ST_HASH_LEN], uint64_t lsn, uint8_t out[ST_HASH_LEN]);
/* Segment files an entry body references that are not inline: fn(arg,
 * table id, file id, size, crc32c) for each. ST_ECORRUPT on a bad body. */
struct st_repl_file {
	uint64_t tid, fid, size;
	uint64_t base;      /* a file with a deletion vector: the file whose segment it
			     * shares (a hard link on the leader), else 0 */
	uint32_t crc;
};
int st_repl_body_segments(const uint8_t *body, size_t len,
			  int (*fn)(void *arg, const struct st_repl_file *f), void *arg,
			  struct st_err *err);
int st_repl_body_files(const uint8_t *body, size_t len,
		       int (*fn)(void *arg, uint64_t tid, uint64_t fid, uint64_t size, uint32_t crc),
		       void *arg, struct st_err *err);
/* Check an entry body received for LSN lsn before it is persisted: the
 * CRC, the op framing, and for a commit exactly one LSN record, for lsn,
 * and the commit record it names. ST_OK or ST_ECORRUPT saying what. (The
 * chain is checked when the entry is applied.) */
int st_repl_body_check(const uint8_t *body, size_t len, uint64_t lsn, struct st_err *err);
/* The path of a segment file of the store (it may not exist). */
void st_segment_path(st_store *s, uint64_t tid, uint64_t fid, char *buf, size_t len);
/* The latest version of a live table. ST_ENOTFOUND. */
int st_table_version(st_store *s, const char *table, uint64_t *version, struct st_err *err);
/* Applied LSN (the store's last). */
uint64_t st_repl_applied(st_store *s);
/* The cluster's membership record (REPLICATION.md §13; its bytes are the
 * driver's), appended to *out: ST_OK, or ST_ENOTFOUND before the first
 * change. */
int st_repl_members_get(st_store *s, struct st_buf *out, struct st_err *err);
/* Leader: replicate rec as the new membership record, an upkeep entry of
 * the log like vacuum's, and wait for it like a write (durability,
 * timeout). Every node's apply stores it verbatim and raises
 * st_repl_members_changed. */
int st_repl_members_put(st_store *s, const void *rec, size_t len, struct st_err *err);
/* True once after an applied entry put the membership record. */
bool st_repl_members_changed(st_store *s);

#endif
