/*
 * daemon/store/write_int.h — private to the write path of the store
 * (write.c, schema.c, load.c, conflict.c, group_commit.c, compact.c): a
 * staged write, its column map and segment appender, and a transaction.
 */
#ifndef STRATA_DAEMON_STORE_WRITE_INT_H
#define STRATA_DAEMON_STORE_WRITE_INT_H

#include "daemon/store/store_int.h"

/* How the columns of the write map onto the (possibly evolved) schema. */
struct colmap {
	struct act_metadata *meta; /* metadata after this write (owned, may be new,
				    * or shared->meta, read-only) */
	struct meta_ref *shared;   /* the store's shared metadata, when unchanged */
	bool meta_changed;         /* merge_schema added columns */
	int *field_of;             /* batch column -> schema field index */
	int *batch_of;             /* schema field -> batch column, -1 if missing */
	uint32_t ncols;            /* columns of every batch */
};

/*
 * The segment a write produces, filled batch by batch. In memory
 * (`mem`: a small write, which may end up inline in LMDB) or streamed to
 * its path, one row group buffered at a time.
 */
struct appender {
	struct seg_writer *w;       /* the open writer */
	bool mem;                   /* in memory */
	struct st_vec *vecs;        /* per schema field, for one batch */
	uint8_t *zeros;             /* all-null column storage */
	size_t zlen;                /* its bytes */
	uint64_t rows;              /* rows appended */
};

/* One table's staged write inside a transaction. */
struct staged {
	char table[STORE_NAME_MAX + 1]; /* table name */
	uint64_t tid;               /* table id at read time */
	uint64_t read_version;      /* head version when the write was staged */
	uint8_t isolation;          /* ACT_ISO_* from the table's properties */
	bool overwrite;             /* reads (and removes) every live file */
	bool compaction;            /* rewrites the live files, data unchanged */
	const char *dml;            /* "DELETE" or "UPDATE" (dml.c), else NULL */
	char *set_text;             /* UPDATE: its SET list, canonical (owned); OPTIMIZE: its
				     * clustering */
	const char *set_key;        /* set_text's parameter name in history (NULL: "set") */
	char *where_text;           /* OPTIMIZE: its file filter, canonical (owned) */
	uint64_t info_deleted;      /* DML: rows deleted, rows updated (history) */
	uint64_t info_updated;
	struct store_keys *keys;    /* a table with a declared key: the write's keys (keys.c) */
	struct expr *key_pred;      /* their range: the conflict check's (keys.c) */
	char *keys_replaced;        /* replace-where's predicate text, for the key check */
	struct store_kix kix;       /* a keyed table: the key index entries of its new segments */
	struct colmap m;            /* column map and the metadata after the write */
	uint64_t rows;              /* rows written */
	struct seg_file_info info;  /* the new segment, when rows > 0 */
	struct act_add add;         /* its add action */
	uint8_t *inl;               /* inline segment bytes, or NULL */
	size_t inl_len;             /* their size */
	char *path;                 /* segment file, when not inline (staged_fini frees) */
	bool written;               /* path exists and no commit references it yet */
	struct expr *pred;          /* replace-where predicate, or NULL */
	struct store_rewrite *rw;   /* files rewritten without the replaced rows */
	uint32_t nrw;               /* their count */
	uint64_t rows_removed;      /* rows replaced */
	uint64_t *read_files;       /* files read at read_version (overwrite, replace-where) */
	uint32_t nread;             /* their count */
	struct st_buf *rm_deletes;  /* MERGE updating and deleting: per read file, the deletion
				     * vector of the rows it deleted (len 0: none), or NULL */
	char *app_id;               /* idempotent writer id, or NULL */
	uint64_t app_version;       /* its version */
	bool noop;                  /* already committed under app_id */
	int64_t t0;                 /* when the write was staged (metrics) */
	struct st_buf crec;         /* its commit, encoded before it queues (prepare) */
	struct act_stamps cat;      /* where crec's version, LSN, time... are stamped */
	struct st_buf frec;         /* the new file's record and inline bytes (rows > 0) */
};

struct st_txn {
	st_store *s;                /* the store */
	struct staged *w;           /* staged writes, one per table */
	uint32_t n;                 /* their count */
};

/* A segment write's error rc: an I/O error (EIO from write or fsync) is
 * sticky, as a failed LMDB commit is (DESIGN.md §10): the store fails
 * (ST_EFAILED); a full disk is not. store_seg_append: seg_writer_append
 * through it. */
int store_segment_failed(st_store *s, int rc, struct st_err *err);
struct seg_writer;
int store_seg_append(st_store *s, struct seg_writer *w, const struct st_vec *v, uint32_t n,
		     struct st_err *err);

/* The segment path of w's new file (w->tid, w->add.file_id). */
int store_staged_path(st_store *s, struct staged *w, struct st_err *err);

uint8_t store_isolation_of(const struct act_metadata *m);

/* The recorded app version of app_id on table tid into *v (0 when the app
 * never committed). A failed lookup is an error, never "absent": taking it
 * for 0 would apply an idempotent write twice. */
int store_app_version_of(st_store *s, MDB_txn *txn, uint64_t tid, const char *app_id,
			  uint64_t *v, struct st_err *err);

/* Stage, in w (its table, read version and metadata set), the DELETE of the
 * rows matching pred (parsed into w->pred) over the live files (STORE.md
 * §4.1): files removed whole, or re-added with a deletion vector (a hard
 * link made now), into w->read_files and w->rw; w->rows_removed counts the
 * rows. dr (may be NULL) gets the file counts; with livep, *livep (nlivep
 * files; file_recs_free) and *hitp (free) tell which files had matches. */
int store_stage_delete(st_store *s, MDB_txn *txn, struct staged *w, const char *pred,
		       struct st_dml_result *dr, struct file_rec **livep, uint32_t *nlivep,
		       bool **hitp, struct st_err *err);

/* A set of keys (their bytes), open addressing by store_key_hash (keys.c). */
struct store_keyset {
	struct st_buf bytes;         /* the keys, back to back */
	uint64_t *hash;              /* per key: its hash */
	uint32_t *off, *len;         /* and its bytes */
	uint32_t *slot;              /* key + 1, or 0; nslot a power of two */
	uint32_t n, cap, nslot;
};
void store_keyset_fini(struct store_keyset *ks);
/* The index of key kb (kn bytes) in ks, or -1; with add, a key not there is
 * added and -3 - its index returned; -2: out of memory. */
int64_t store_keyset_find(struct store_keyset *ks, const uint8_t *kb, size_t kn, bool add);
/* Key i's bytes (*len of them). */
const uint8_t *store_keyset_key(const struct store_keyset *ks, uint32_t i, uint32_t *len);

/* Declared keys (keys.c, STORE.md §4.6): the set of a write's keys
 * (NULL when m declares none); add the keys of n rows (cols[f]: schema
 * field f's vector, NULL when the write lacks it), refusing a repeat; then
 * look them up among the rows the table holds in their range (but those
 * `replaced` matches), setting w->key_pred. */
struct store_keys;
int store_keys_new(const struct act_metadata *m, struct store_keys **out, struct st_err *err);
void store_keys_free(struct store_keys *k);
int store_keys_add(struct store_keys *k, const char *table, const struct st_vec *const *cols,
		   uint32_t n, uint64_t row0, struct st_err *err);
int store_keys_check(st_store *s, struct staged *w, const char *replaced, struct st_err *err);
/* Add the key of row r of cols alone (numbered row in messages). */
int store_keys_add_row(struct store_keys *k, const char *table, const struct st_vec *const *cols,
		       uint32_t r, uint64_t row, struct st_err *err);

/* An idempotent write's app id and version (app_id NULL: none) into w,
 * whose tid is set: w->noop when that version is already committed. */
int store_stage_app(st_store *s, MDB_txn *txn, struct staged *w, const char *app_id,
		    uint64_t app_version, struct st_err *err);

/*
 * A staged write is built in three steps, so that a load can stream:
 * stage_begin (read the head, map the columns from the first batch, stage
 * what an overwrite or replace-where removes, open the segment),
 * stage_add (check and append rows, any number of times), stage_finish
 * (close the segment; the write then counts in t). The entry being built
 * is t->w[t->n]; stage_fail discards it.
 */
int store_stage_begin(st_txn *t, const char *table, const struct st_batch *hdr,
		       const struct st_write_opts *opts, bool mem, struct appender *app,
		       struct st_err *err);

int store_stage_add(st_txn *t, struct appender *app, const struct st_batch *b, uint32_t nb,
		     struct st_err *err);

int store_stage_finish(st_txn *t, struct appender *app, struct st_err *err);

void store_stage_fail(st_txn *t, struct appender *app);

/* Let go of m->meta (owned or shared). */
void store_colmap_meta_fini(struct colmap *m);

void store_colmap_fini(struct colmap *m);

/* Every batch has the header's columns (names and types); NOT NULL holds
 * in every row. Rows are numbered from row_base in messages. */
int store_check_batches(const char *table, const struct colmap *m, const struct st_batch *b,
			 uint32_t nb, uint64_t row_base, struct st_err *err);

/* Check the write's columns (those of its first batch, b0) against the
 * table (DESIGN.md §7) and build the map; check_batches checks the rows.
 * Takes over ref (the table's metadata as read): m shares it while the
 * write leaves the schema as it is, else m->meta is a private copy. */
int store_map_columns(const char *table, struct meta_ref *ref,
		       const struct st_batch *b0, bool merge, bool replace_schema,
		       struct colmap *m, struct st_err *err);

/*
 * The conflict rules of DESIGN.md §6, in order, against every commit that
 * landed on the table after w's read version. Returns ST_ECONFLICT naming
 * the winning version and the rule.
 */
int store_check_conflicts(st_store *s, MDB_txn *txn, const struct staged *w,
			   const struct table_head *h, struct st_err *err);

#endif
