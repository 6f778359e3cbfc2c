/*
 * daemon/store/store_int.h — private to the store (the modules of daemon/store/) and its
 * tests: the handle, the LMDB databases, key helpers and table heads of
 * daemon/STORE.md.
 */
#ifndef STRATA_DAEMON_STORE_INT_H
#define STRATA_DAEMON_STORE_INT_H

#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "daemon/store/strata.h"
#include "format/bytes.h"
#include "format/segment.h"

#define STORE_FORMAT 8
#define STORE_REC_CRC 4      /* the CRC32C trailer of every record (STORE.md §2) */
#define STORE_EBADREC (-30600) /* store_get/store_cget: a record fails its checksum */
#define STORE_EFAULT (-30601)  /* a guarded read faulted on a damaged page (record.c) */
#define STORE_DAMAGED_MAX 64 /* damaged tables remembered (refused) */
#define STORE_BAD_SEGS_MAX 256 /* damaged segment files remembered for repair */
#define STORE_LIVE UINT64_MAX  /* "removed in" of a live file */
#define STORE_HEAD_FIXED 56    /* fixed bytes of a table head (STORE.md §2.2) */
#define STORE_NAME_MAX 128     /* longest table name */
#define STORE_VERIFY_DEPTH 64  /* newest commits per table whose chain open verifies */
#define STORE_INLINE_MAX 16384 /* default largest segment kept inline in LMDB */
#define STORE_INLINE_ROWS 4096 /* writes up to this many rows are encoded in memory */
#define STORE_PREALLOC_MIN (256u << 10) /* LMDB's data file is zero-filled at least */
#define STORE_PREALLOC_MAX (64u << 20)  /* and at most this far ahead of its last page */
#define GC_MAX_GROUP 256       /* largest commit group: a bound on one LMDB txn's size */
#define STORE_READ_POOL 32     /* reset read transactions kept for reuse */
#define STORE_MAX_READERS 512  /* LMDB reader slots (mdb_env_set_maxreaders) */

/* How far ahead of its last used page LMDB's data file is zero-filled
 * (STORE.md §4): a quarter of what it uses, within [MIN, MAX], so that a
 * small store stays small and a large one refills rarely. */
static inline uint64_t store_prealloc_ahead(uint64_t used)
{
	uint64_t a = used / 4;
	return a < STORE_PREALLOC_MIN ? STORE_PREALLOC_MIN : a > STORE_PREALLOC_MAX ? STORE_PREALLOC_MAX : a;
}

/* Key kinds (first byte) and a table's record kinds (byte 9) of STORE.md §2. */
enum { KEY_RLOG = 0 /* replicated log records (STORE.md §7) */,
       KEY_META = 1, KEY_NAME = 2, KEY_TABLE = 3,
       KEY_LSN = 4 /* must stay the largest kind: LSN records are MDB_APPENDed */ };
enum { REC_FILE = 1, REC_HEAD = 2, REC_COMMIT = 3, REC_APP = 4, REC_KEY = 5 };

/* An open scan's snapshot: vacuum keeps its files. */
struct store_pin {
	uint64_t tid;                /* table */
	uint64_t version;            /* version read */
};

/* A table's decoded metadata shared by concurrent writes: read-only while
 * shared, freed when the last holder (the cache among them) lets go. */
struct meta_ref {
	uint64_t tid;                /* table */
	uint64_t meta_version;       /* the version whose commit set this metadata */
	struct act_metadata *meta;   /* decoded */
	uint32_t refs;               /* holders (atomic) */
};

/* Metadata of this many tables stays decoded (store_meta_get). */
#define META_CACHE_SLOTS 16

/* Group commit's state (group_commit.c, STORE.md §4). */
struct group_commit {
	pthread_mutex_t lock;     /* guards the group-commit queue */
	struct gc_entry *head;    /* committers waiting for the next group */
	struct gc_entry *tail;    /* last of them */
	bool leader;              /* a committer is deciding a group now */
	bool gathering;           /* the leader waits on arrive for committers */
	pthread_cond_t arrive;    /* want committers queued (CLOCK_MONOTONIC) */
	uint32_t want;            /* how many the gathering leader waits for */
	uint32_t queued;          /* how many queued since it began waiting */
	uint64_t groups;          /* groups committed so far (written by the leader, under lock) */
	uint32_t nprev;           /* committers of the last group, its leader's thread aside */
	uint32_t nback;           /* how many of them have queued again since */
	struct timespec back_at;  /* when the last of those queued (or the group ended) */
	uint64_t commit_ns;       /* how long the last group's LMDB commit took */
};

/* Cluster mode's capture of a write transaction (repl.c): every record
 * the funnel puts or deletes, cut into one entry per LSN. */
struct cap_mark {
	size_t end;                  /* ops bytes up to this entry's LSN record */
	uint32_t nops;               /* ops count up to it */
	uint64_t lsn;                /* the LSN */
	uint8_t hash[ST_HASH_LEN];   /* chain hash after it */
	bool boundary;               /* an atomic unit ends after it */
	bool upkeep;                 /* its LSN record names table 0: vacuum's entry */
};
struct store_cap {
	bool on;                     /* capturing (cluster mode, write txn open) */
	struct st_buf ops;           /* u8 op, u16 klen, u32 vlen, key, value ... */
	uint32_t nops;               /* ops so far */
	struct cap_mark *marks;      /* one per LSN record put */
	uint32_t nmarks, cap_marks;
};

/* Cluster mode's state (repl.c). */
struct store_repl {
	bool on;                     /* st_repl_attach was called */
	struct st_repl_hooks hooks;  /* the driver */
	pthread_cond_t cond;         /* with write_lock: an apply, a truncation */
	bool inflight;               /* a proposal waits for its durability */
	uint64_t want_lsn;           /* the waiting proposal's first LSN and entry hash */
	uint8_t want_hash[ST_HASH_LEN];
	bool refused;                /* the driver did not take it (st_repl_fail) */
	bool stopped;                /* the driver stopped (st_repl_fail(s, 0, NULL)) */
	int members_changed;         /* atomic: an applied entry put the members record */
};

struct st_store {
	char *dir;                   /* data directory */
	int lock_fd;                 /* flock()ed strata.lock */
	MDB_env *env;                /* the LMDB environment */
	MDB_dbi dbi;                 /* the main database: every record (STORE.md §2) */
	pthread_mutex_t write_lock;  /* one writer at a time */
	uint64_t last_lsn;           /* LSN of the newest committed commit (atomic) */
	uint64_t txn_lsn;            /* the same inside the open write txn (write_lock) */
	uint8_t last_hash[ST_HASH_LEN]; /* chain hash after last_lsn (write_lock) */
	uint8_t txn_hash[ST_HASH_LEN];  /* the same inside the open write txn (write_lock) */
	int prealloc_fd;             /* LMDB's data file (its own fd; not ours to close) */
	int enc_threads;             /* segment writers' threads: 2 with more than one CPU */
	uint32_t psize;              /* LMDB page size */
	uint64_t prealloc_end;       /* data file zero-filled up to here (write_lock) */
	int failed;                  /* sticky: a failed fsync or LMDB commit (atomic:
	                              * store_fail publishes failmsg before it) */
	int failclaim;               /* the first store_fail owns failmsg (atomic) */
	char failmsg[ST_ERR_MSG_MAX]; /* what failed: written once, before failed */
	struct st_store_opts opts;   /* options, defaults filled in */
	uint64_t next_fid;           /* next file id, unique across tables (atomic) */
	struct group_commit gc;      /* the commit queue and its leader (group_commit.c) */
	pthread_mutex_t pool_lock;   /* guards pool */
	MDB_txn *pool[STORE_READ_POOL]; /* reset read transactions to renew */
	uint32_t npool;              /* their count */
	pthread_mutex_t meta_lock;   /* guards meta_cache, meta_next */
	struct meta_ref *meta_cache[META_CACHE_SLOTS]; /* recently used metadata */
	uint32_t meta_next;          /* the slot to replace next */
	pthread_mutex_t pin_lock;    /* guards pins */
	struct store_pin *pins;      /* snapshots of open scans */
	uint32_t backups;            /* backups running: vacuum keeps every file (pin_lock) */
	uint32_t npins, cap_pins;    /* count and capacity */
	struct store_cap cap;        /* cluster mode: the open write txn's capture */
	struct store_repl repl;      /* cluster mode */
	bool no_integrity;           /* test only (STRATA_TEST_NO_INTEGRITY=1): record
					checksums and verify's cross-checks off */
	struct {
		uint64_t tid;
		char why[ST_ERR_MSG_MAX];
		bool other;          /* damaged by more than its bad segments (no repair clears it) */
	} damaged[STORE_DAMAGED_MAX]; /* tables a failed record checksum refuses (pin_lock) */
	uint32_t ndamaged;           /* their count (atomic reads) */
	struct st_bad_segment bad_segs[STORE_BAD_SEGS_MAX]; /* file segments a peer may repair
							      * (pin_lock) */
	uint32_t nbad_segs;
	struct st_open_report opened; /* what st_store_open checked */
	const uint8_t *map_base;     /* LMDB's map: a record read must lie in it, */
	uint64_t map_size;           /* its size, */
	uint64_t file_size;          /* and within the data file (atomic; grows) */
};

/* Record checksums (record.c, STORE.md §2). store_rec_put puts k with
 * value v plus its CRC32C trailer (through cur when given), without
 * capture: store_put is the funnel's. store_get / store_cget are mdb_get /
 * mdb_cursor_get that check a found record's trailer and strip it; a
 * mismatch returns STORE_EBADREC (store_lmdb_err describes it) and marks
 * its table damaged. store_rec_check does the check on a value read
 * otherwise. */
int store_rec_put(st_store *s, MDB_txn *txn, MDB_cursor *cur, MDB_val *k, const MDB_val *v,
		  unsigned flags);
int store_get(st_store *s, MDB_txn *txn, const MDB_val *k, MDB_val *v);
int store_cget(st_store *s, MDB_cursor *cur, MDB_val *k, MDB_val *v, MDB_cursor_op op);
int store_rec_check(st_store *s, MDB_txn *txn, const MDB_val *k, MDB_val *v);
/* mdb_get / mdb_cursor_get under the fault guard, without the checksum
 * check: STORE_EFAULT (described by store_rec_last_bad, its table marked
 * damaged) when LMDB faults on a damaged page; the cursor is then unusable.
 * store_guard_init installs the handler (once per process; st_store_open). */
int store_mget(st_store *s, MDB_txn *txn, const MDB_val *k, MDB_val *v);
int store_mcget(st_store *s, MDB_cursor *cur, MDB_val *k, MDB_val *v, MDB_cursor_op op);
void store_guard_init(void);
/* LMDB's assert callback (mdb_env_set_assert): inside a guarded read, the
 * read returns STORE_EFAULT naming the assertion; elsewhere LMDB aborts. */
void store_on_assert(MDB_env *env, const char *msg);
/* mdb_env_open (mode 0644) under the guard: a damaged meta page can send it
 * past the file's end. STORE_EFAULT then. */
int store_env_open(MDB_env *env, const char *path, unsigned flags);
/* Tests: read *p into *out under the guard (STORE_EFAULT if it faults). */
int store_guard_probe(const volatile uint8_t *p, uint8_t *out);
/* Whether [p, p + n) can be read: outside LMDB's map, or inside its data
 * file (a damaged node can point past the file's end: SIGBUS). */
bool store_readable(st_store *s, const void *p, size_t n);
/* store_cget past records that fail their checksum, each reported to
 * problem(arg, its description) when problem is given. */
int store_cget_skip(st_store *s, MDB_cursor *cur, MDB_val *k, MDB_val *v, MDB_cursor_op op,
		    void (*problem)(void *arg, const char *line), void *arg);
/* The calling thread's last checksum failure, described. */
const char *store_rec_last_bad(void);
/* Damaged tables: mark tid (why: the first problem found), refuse it
 * (ST_ECORRUPT with why; ST_OK when intact), forget it (dropped). */
void store_damage(st_store *s, uint64_t tid, const char *why);
/* The same for a damaged segment file f of table tid: remembered for a
 * repair (st_bad_segments, st_segment_repair), which lifts the refusal when
 * it was the table's only damage. */
struct file_rec;
void store_damage_segment(st_store *s, uint64_t tid, const struct file_rec *f, const char *why);
/* Forget bad segment (tid, fid); lift its table's refusal when nothing else
 * damages it. Returns whether it was there. */
bool store_forget_segment(st_store *s, uint64_t tid, uint64_t fid);
int store_damaged(st_store *s, uint64_t tid, struct st_err *err);
void store_undamage(st_store *s, uint64_t tid);

/* Put or delete a record of the funnel (the commit, LSN, file, head, name,
 * app-version and table-id records): as mdb_put / mdb_del (cur: the
 * cursor to put through, or NULL), captured in cluster mode. Return LMDB
 * codes. */
int store_put(st_store *s, MDB_txn *txn, MDB_cursor *cur, MDB_val *k, MDB_val *v, unsigned flags);
int store_del(st_store *s, MDB_txn *txn, MDB_val *k);
/* Record, in cluster mode, the delete of k that the caller does itself
 * through a cursor (mdb_cursor_del). */
void store_cap_del(st_store *s, const MDB_val *k);
/* Cluster mode: give the open write txn an upkeep entry of its own (an LSN
 * record for table 0, version 0): vacuum replicates as a log entry. */
int store_repl_upkeep(st_store *s, MDB_txn *txn, struct st_err *err);
/* An atomic unit of the capture ends here (group commit: after each
 * committer's transaction). */
void store_cap_boundary(st_store *s);
/* mdb_txn_commit with the store's error classes: a full map is a clean
 * error, any other failure puts the store in the failed state. */
int store_lmdb_commit(st_store *s, MDB_txn *txn, const char *what, struct st_err *err);
/* Cluster mode's store_commit_txn: propose the captured entries and wait
 * for their durability; the txn is aborted. */
int store_repl_commit(st_store *s, MDB_txn *txn, const char *what, struct st_err *err);
/* Cluster mode's store_write_begin: wait (write lock held) until the log
 * holds nothing unapplied. */
int store_repl_wait_quiet(st_store *s, const char *what, struct st_err *err);
/* Append to (*ids, *n, *cap), unsorted, the file ids of table tid that log entries
 * above the commit log's last LSN add. False when out of memory or the
 * log is unreadable. */
bool store_repl_unapplied_fids(st_store *s, MDB_txn *txn, uint64_t tid, uint64_t **ids,
			       size_t *n, size_t *cap);
/* Open: LSN records above the newest head must be no-op entries. */
int store_repl_check_tail(st_store *s, MDB_txn *txn, uint64_t last, struct st_err *err);
/* The calling thread's durability level (st_repl_set_durability). */
int store_repl_level(void);
/* True when an open scan reads table tid at a version below removed (a
 * file removed in that version may be in its snapshot). */
bool store_pinned_below(st_store *s, uint64_t tid, uint64_t removed);
/* Drop every cached metadata (truncation). */
void store_meta_cache_clear(st_store *s);

/* A table head (STORE.md §2.2) with its metadata decoded. */
struct table_head {
	uint64_t tid;                /* table id */
	uint64_t version;            /* head version */
	int64_t time_us;             /* head commit time */
	uint32_t checksum;           /* head commit checksum */
	uint32_t flags;              /* bit 0: dropped */
	uint64_t next_fid;           /* next file id */
	uint64_t oldest;             /* oldest retained version */
	uint64_t meta_version;       /* version whose commit last changed the metadata */
	uint64_t lsn;                /* LSN of the head commit */
	struct act_metadata *meta;   /* current metadata (owned) */
};

/* A file record (STORE.md §2.3), stats decoded. */
struct file_rec {
	uint64_t fid;                /* file id */
	uint64_t added;              /* added in version */
	uint64_t removed;            /* removed in version, STORE_LIVE while live */
	int64_t removed_us;          /* removal time */
	uint64_t size;               /* bytes */
	uint64_t rows;               /* rows */
	uint32_t crc;                /* CRC32C of the file */
	uint32_t flags;              /* bit 0 inline, bit 1 data_change, bit 2 deletion vector */
	uint32_t ncols;              /* stats entries */
	uint32_t *field_ids;         /* field id per stats entry */
	uint8_t *types;              /* column type in the file, per stats entry */
	struct st_col_stats *stats;  /* file statistics per column */
	uint64_t base_fid;           /* with a DV: the file whose segment this one shares, or 0 */
	uint64_t deleted;            /* rows the DV deletes (0: none) */
	uint8_t *dv;                 /* the DV (FORMAT.md §10; owned when decoded), or NULL */
	uint32_t dv_len;             /* its bytes */
	uint64_t seg;                /* with FILE_SEG: the segment id (STORE.md §2.3), else 0 */
};
#define FILE_DV 4u               /* file_rec flags: a deletion vector follows the stats */
#define FILE_SEG 8u              /* file_rec flags: a segment id follows */

/* The segment id of f: the file that first named its segment. */
static inline uint64_t file_seg(const struct file_rec *f)
{
	return (f->flags & FILE_SEG) ? f->seg : f->fid;
}

/* The rows of f a read sees. */
static inline uint64_t file_live_rows(const struct file_rec *f)
{
	return f->rows - f->deleted;
}

static inline void be64(uint8_t *p, uint64_t v)
{
	st_put_be(p, 8, v);
}

static inline uint64_t get_be64(const uint8_t *p)
{
	return st_get_be(p, 8);
}

/* Map an LMDB error to a store error with a message; returns the code. */
int store_lmdb_err(struct st_err *err, int rc, const char *what);
/* Enter the failed state (sticky until reopen) and return ST_EFAILED. The
 * first call's message is the one st_store_failure reports. */
int store_fail(st_store *s, struct st_err *err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* ST_EFAILED with the failure's message when the store has failed, else
 * ST_OK (any thread). */
int store_refuse_failed(st_store *s, struct st_err *err);

/* Look up a live table by name in txn; fills h (release with head_fini).
 * Errors: ST_ENOTFOUND, ST_ECORRUPT, ST_ENOMEM. */
int head_get(st_store *s, MDB_txn *txn, const char *name, struct table_head *h,
	     struct st_err *err);
int head_get_tid(st_store *s, MDB_txn *txn, uint64_t tid, struct table_head *h,
		 struct st_err *err);
/* As head_get, for a table refused as damaged too (drop). */
int head_get_damaged(st_store *s, MDB_txn *txn, const char *name, struct table_head *h,
		     struct st_err *err);
/* As head_get, without decoding the metadata (h->meta NULL). */
int head_get_fixed(st_store *s, MDB_txn *txn, const char *name, struct table_head *h,
		   struct st_err *err);
/* As head_get_fixed, with the table's metadata shared (*ref, read-only;
 * release with store_meta_put): decoded once per table and metadata
 * version, not once per write. Errors as head_get. */
int store_meta_get(st_store *s, MDB_txn *txn, const char *name, struct table_head *h,
		   struct meta_ref **ref, struct st_err *err);
void store_meta_put(struct meta_ref *ref);
/* A private deep copy of m (through its encoding: metadata owns all its
 * strings). */
int store_meta_copy(const struct act_metadata *m, struct act_metadata **out, struct st_err *err);
/* Store h under its tid, with h->meta, or with the metadata already
 * stored when h->meta is NULL. */
int head_put(st_store *s, MDB_txn *txn, const struct table_head *h, struct st_err *err);
void head_fini(struct table_head *h);

/* Keys (STORE.md §2). A table record's key starts with the 10-byte prefix
 * KEY_TABLE, tid, record kind; table_range tells whether k has it. */
#define TABLE_PREFIX_LEN 10
#define HEAD_KEY_LEN 10
#define COMMIT_KEY_LEN 18
#define FILE_KEY_LEN 26
#define APP_KEY_MAX (TABLE_PREFIX_LEN + 255)
static inline void table_key(uint8_t *k, uint64_t tid, uint8_t rec)
{
	k[0] = KEY_TABLE;
	be64(k + 1, tid);
	k[9] = rec;
}

static inline bool table_range(const MDB_val *k, const uint8_t *prefix)
{
	return k->mv_size >= TABLE_PREFIX_LEN && !memcmp(k->mv_data, prefix, TABLE_PREFIX_LEN);
}

/* tid of a table record's key. */
static inline uint64_t key_tid(const MDB_val *k)
{
	return get_be64((const uint8_t *)k->mv_data + 1);
}

/* LSN records (STORE.md §2.4): key KEY_LSN, LSN u64be; they sort after
 * every other record, so a new one is an MDB_APPEND. */
#define LSN_KEY_LEN 9
#define LSN_REC_LEN 80 /* chain hash, commit digest, tid, version */
static inline void lsn_key(uint8_t *k, uint64_t lsn)
{
	k[0] = KEY_LSN;
	be64(k + 1, lsn);
}

/* The chain hash after a commit (STORE.md §4): BLAKE2b-256 over the hash
 * before it, its LSN (u64le) and bytes 32..79 of its LSN record (the
 * commit's digest, tid and version), into out. */
void store_chain_step(const uint8_t prev[ST_HASH_LEN], uint64_t lsn, const uint8_t *rec,
		      uint8_t out[ST_HASH_LEN]);

/* The chain's base (meta record chain_base): the first LSN whose record
 * is kept and the chain hash before it; (1, zeros) until vacuum drops a
 * prefix of the log. */
int store_chain_base(st_store *s, MDB_txn *txn, uint64_t *first, uint8_t hash[ST_HASH_LEN],
		     struct st_err *err);

/* The newest LSN record in txn: its LSN and chain hash, or the base's
 * (first - 1, its hash) when the log is empty. */
int store_chain_last(st_store *s, MDB_txn *txn, uint64_t *lsn, uint8_t hash[ST_HASH_LEN],
		     struct st_err *err);

/* Check the chain from the LSN record at `from` (or the base when from is
 * 0 or below it) to the end: every LSN present once, in order, each hash
 * recomputed, each retained commit's digest, LSN, table and version
 * matching its record. Each damage found goes to problem(arg, line); with
 * problem NULL the first one is returned as ST_ECORRUPT. *checked counts
 * the records verified; *found (when head is given) gets the LSN whose
 * hash is head, or 0. */
int store_verify_log(st_store *s, MDB_txn *txn, uint64_t from, const uint8_t *head,
		     uint64_t *found, uint64_t *checked,
		     void (*problem)(void *arg, const char *line), void *arg, struct st_err *err);

/* Append the LSN record of commit (tid, version) at lsn, whose encoded
 * bytes are enc: advances s->txn_hash (write lock held). */
int store_log_append(st_store *s, MDB_txn *txn, uint64_t lsn, uint64_t tid, uint64_t version,
		     const uint8_t *enc, size_t len, struct st_err *err);

/* Drop LSN records from the front of the log while their commits are
 * pruned (vacuum), moving the chain base past them. */
int store_log_trim(st_store *s, MDB_txn *txn, struct st_err *err);

/* Commit keys run newest first (version complemented): the newest commit
 * sits right after the head, which sits right after the live files. */
static inline void commit_key(uint8_t *k, uint64_t tid, uint64_t version)
{
	table_key(k, tid, REC_COMMIT);
	be64(k + TABLE_PREFIX_LEN, ~version);
}

/* File key: removed version (STORE_LIVE while live) at byte 10, fid at 18. */
static inline void file_key(uint8_t *k, uint64_t tid, uint64_t removed, uint64_t fid)
{
	table_key(k, tid, REC_FILE);
	be64(k + TABLE_PREFIX_LEN, removed);
	be64(k + TABLE_PREFIX_LEN + 8, fid);
}

static inline uint64_t file_key_fid(const MDB_val *k)
{
	return get_be64((const uint8_t *)k->mv_data + TABLE_PREFIX_LEN + 8);
}

/* Key of table tid's app version record for app_id (<= 255 bytes) into
 * k (APP_KEY_MAX bytes); its MDB_val. */
static inline MDB_val app_key(uint8_t *k, uint64_t tid, const char *app_id)
{
	size_t len = strlen(app_id);
	table_key(k, tid, REC_APP);
	memcpy(k + TABLE_PREFIX_LEN, app_id, len);
	return (MDB_val){TABLE_PREFIX_LEN + len, k};
}

/* Key of a name or meta record into buf (1 + len bytes); its MDB_val. */
static inline MDB_val kind_key(uint8_t *buf, uint8_t kind, const char *name, size_t len)
{
	buf[0] = kind;
	memcpy(buf + 1, name, len);
	return (MDB_val){1 + len, buf};
}

/* Call fn with the head record of every table ever created (dropped ones
 * too), in tid order, until fn returns non-zero; returns that value, or 0.
 * *mrc gets an LMDB error that stopped the walk (0 if none). */
int store_each_head(st_store *s, MDB_txn *txn, int (*fn)(void *arg, uint64_t tid, MDB_val *v),
		    void *arg, int *mrc);

/* The files of table tid live at version v (added <= v < removed), read
 * from the range removed > v of the index; *out is freed with
 * file_recs_free. v = the head version gives the live files. */
int store_files_at(st_store *s, MDB_txn *txn, uint64_t tid, uint64_t v, struct file_rec **out,
		   uint32_t *n, struct st_err *err);
/* Every file record of table tid, live and removed (damaged ones skipped). */
int store_files_retained(st_store *s, MDB_txn *txn, uint64_t tid, struct file_rec **out,
			 uint32_t *n, struct st_err *err);
void file_recs_free(struct file_rec *f, uint32_t n);
/* Record live file f of table tid (its key from f->fid); an inline file's
 * segment bytes follow the record in the same value. */
int store_file_put(st_store *s, MDB_txn *txn, uint64_t tid, const struct file_rec *f,
		   const uint8_t *inl, size_t inl_len, struct st_err *err);
/* The same with the record already encoded (file_rec_encode, then any
 * inline bytes): its added version is filled in here. cur, when not NULL,
 * is a cursor of txn to put through (a group's puts land near each other:
 * a positioned cursor skips the search from the root). */
int store_file_put_encoded(st_store *s, MDB_txn *txn, MDB_cursor *cur, uint64_t tid,
			   uint64_t fid, uint8_t *rec, size_t len, uint64_t added,
			   struct st_err *err);
/* Copy the segment bytes of inline file f (malloc'ed into *out) in txn,
 * or in a read transaction of its own when txn is NULL. */
int store_inline_copy(st_store *s, MDB_txn *txn, uint64_t tid, const struct file_rec *f,
		      uint8_t **out, size_t *len, struct st_err *err);

/* Verify the checksum chain of the newest `depth` commits of every table
 * (STORE.md §4): each commit's prev_checksum must be the chained checksum
 * of the one before, and the head must hold the newest. *checked (may be
 * NULL) counts the commits verified. With problem, a table whose chain is
 * damaged is reported to it, marked damaged (refused) and the walk goes
 * on; without, the first damage is the error. */
int store_verify_chains(st_store *s, MDB_txn *txn, uint32_t depth, uint64_t *checked,
			void (*problem)(void *arg, const char *line), void *arg,
			struct st_err *err);
/* The same for table tid alone, every retained commit. */
int store_verify_chain(st_store *s, MDB_txn *txn, uint64_t tid, uint64_t *checked,
		       void (*problem)(void *arg, const char *line), void *arg, struct st_err *err);

/* Every file id of table tid that has a record, live or removed, or that
 * an unapplied log entry adds, sorted into *out (freed by the caller).
 * False when they could not be listed. */
bool store_recorded_fids(st_store *s, MDB_txn *txn, uint64_t tid, uint64_t **out, size_t *n);
/* Whether table tid's retained commits, replayed, leave file fid live: 1
 * yes (its table is marked damaged: the file has no record), 0 no, -1
 * unknown (no head, unreadable commits, no memory). */
int store_log_says_live(st_store *s, MDB_txn *txn, uint64_t tid, uint64_t fid);

/* Put a new key (MDB_NOOVERWRITE): through cur when given, else with
 * mdb_put; an LMDB code. */
int store_put_new(st_store *s, MDB_txn *txn, MDB_cursor *cur, MDB_val *k, MDB_val *v);

/* Encode / decode a file record. */
int file_rec_encode(const struct file_rec *f, struct st_buf *out);
int file_rec_decode(uint64_t fid, const uint8_t *p, size_t n, struct file_rec *f);
void file_rec_fini(struct file_rec *f);

/* Path of a table's segment: DIR/tables/<tid>/<fid>.seg (buf of PATH_MAX). */
void store_seg_path(const st_store *s, uint64_t tid, uint64_t fid, char *buf, size_t len);

/* ---- the key index (keyindex.c, STORE.md §4.6) ----------------------- */

/* A key's bytes: columns cols[idx[i]] of row r, normalized to types[i]
 * (integers as int64, float64 as double, date into timestamp, strings with
 * their length) into out; false when one is NULL. *first (may be NULL) gets
 * the first column's value as a double. store_key_text: the same as text. */
bool store_key_bytes(struct st_buf *out, const struct st_vec *const *cols, const int *idx,
		     const uint8_t *types, uint32_t n, uint32_t r, double *first);
void store_key_text(const struct st_vec *const *cols, const int *idx, uint32_t n, uint32_t r,
		    char *buf, size_t len);
/* Key bytes kb (kn of them, for key types types[n]) as text. */
void store_key_bytes_text(const uint8_t *kb, size_t kn, const uint8_t *types, uint32_t n,
			  char *buf, size_t len);
/* The hash of a key's bytes (FNV-1a, folded). */
uint64_t store_key_hash(const uint8_t *p, size_t n);

#define KIX_KEY_MAX (TABLE_PREFIX_LEN + 1 + 400 + 8)

/* The index key of a key (kb, kn bytes of store_key_bytes for key types
 * types[nk]) of table tid into out (KIX_KEY_MAX bytes), without the
 * segment id: its length, or 0 when kb is not such a key. */
size_t store_kix_key(uint8_t *out, uint64_t tid, const uint8_t *kb, size_t kn,
		     const uint8_t *types, uint32_t nk);

/* Entries to put: u16le key length, key (segment id last), u32le row each. */
struct store_kix {
	struct st_buf b;
	size_t *off;                 /* entry offsets */
	uint32_t n, cap;
	bool unsorted;               /* not in key order as added */
};
void store_kix_fini(struct store_kix *x);
/* Add the entries of every row of a segment (path; or its bytes mem, len)
 * of table tid with metadata m, under segment id seg, to x. */
int store_kix_segment(const struct act_metadata *m, uint64_t tid, uint64_t seg, const char *path,
		      const uint8_t *mem, size_t len, struct store_kix *x, struct st_err *err);
/* Put x's entries in txn, in key order. */
int store_kix_put(st_store *s, MDB_txn *txn, struct store_kix *x, struct st_err *err);
/* Index file f of table tid (its segment read now) in txn. */
int store_kix_index_file(st_store *s, MDB_txn *txn, const struct act_metadata *m, uint64_t tid,
			 const struct file_rec *f, struct st_err *err);
/* Delete table tid's entries of the segments segs (n, sorted), counting them. */
int store_kix_drop_segs(st_store *s, MDB_txn *txn, uint64_t tid, const uint64_t *segs,
			uint32_t n, uint64_t *dropped, struct st_err *err);

/* Check table tid's key index against its retained segments (STORE.md
 * §8): each problem to problem(arg, line). */
int store_kix_verify(st_store *s, MDB_txn *txn, uint64_t tid, const struct act_metadata *m,
		     void (*problem)(void *arg, const char *line), void *arg, struct st_err *err);
/* Lookups at one version: the files live at it (store_kix_view_files) and
 * the index, read in txn (held open until store_kix_view_free). */
struct store_kix_view;
int store_kix_view_open(st_store *s, MDB_txn *txn, const struct act_metadata *m, uint64_t tid,
			uint64_t version, struct store_kix_view **out, struct st_err *err);
/* The same over files (n of them) the caller already listed at version,
 * borrowed until store_kix_view_free. */
int store_kix_view_files_open(st_store *s, MDB_txn *txn, const struct act_metadata *m,
			      uint64_t tid, uint64_t version, struct file_rec *files, uint32_t n,
			      struct store_kix_view **out, struct st_err *err);
void store_kix_view_free(struct store_kix_view *v);
const struct file_rec *store_kix_view_files(const struct store_kix_view *v, uint32_t *n);
/* The row holding the key kb (kn bytes, store_key_bytes form) at the
 * view's version: 1 with *file (an index into the view's files) and *pos,
 * 0 when no row has it, or an error. */
int store_kix_find(st_store *s, struct store_kix_view *v, const uint8_t *kb, size_t kn,
		   uint32_t *file, uint32_t *pos, struct st_err *err);

/* ---- the commit funnel (commits.c, STORE.md §4) ---------------------- */

/* A file a commit adds: its record encoded in advance (file_rec_encode,
 * then any inline bytes; the added version is stamped in place), or a
 * record to encode (its fid, added and removed fields are set here) with
 * an inline file's bytes. */
struct store_add {
	uint64_t fid;                /* the file's id */
	uint8_t *enc;                /* encoded record, or NULL */
	size_t len;                  /* its length */
	const struct file_rec *rec;  /* with enc NULL: the record */
	const uint8_t *inl;          /* with rec: an inline file's segment, or NULL */
	size_t inl_len;              /* its length */
};

/* Everything one commit changes besides the head. */
struct store_change {
	uint8_t *enc;                /* the commit encoded (act_encode), stamped here */
	size_t len;                  /* its length */
	const struct act_stamps *at; /* where act_encode left the stamps */
	bool metadata;               /* it sets the table's metadata */
	uint64_t duration_us;        /* how long the operation took */
	const uint64_t *removes;     /* files it removes */
	uint32_t nremove;            /* their count */
	const struct store_add *adds; /* files it adds */
	uint32_t nadd;               /* their count */
	MDB_cursor *commit_cur;      /* positioned cursors of txn to put through, or NULL */
	MDB_cursor *file_cur;
};

/*
 * The funnel: every commit of every table passes here. Stamps the commit
 * with h's next version, the next LSN, its commit time (max(now, head + 1
 * µs)) and h's CRC; puts its commit record and its LSN record (the hash
 * chain, chain.c); marks its removed files and puts its added ones; and
 * advances h (version, LSN, time, CRC, metadata version, next file id).
 * The caller stores h (head_put): store_commit_table does it at once, a
 * commit group once per table at its end.
 */
int store_commit_apply(st_store *s, MDB_txn *txn, struct table_head *h,
		       const struct store_change *ch, struct st_err *err);

/*
 * A commit of one table outside the group commit (create, drop, rename,
 * alter, restore): encodes c (its removes are the files removed), applies
 * it with adds, fills c's version, LSN, time and prev checksum, makes
 * *meta (when given and not NULL; taken) h's metadata and stores h.
 */
int store_commit_table(st_store *s, MDB_txn *txn, struct table_head *h, struct act_commit *c,
		       const struct store_add *adds, uint32_t nadd, struct act_metadata **meta,
		       struct st_err *err);

/* The result of the commit that just advanced h. */
static inline void store_result(struct st_commit_result *r, const struct table_head *h)
{
	r->version = h->version;
	r->lsn = h->lsn;
	r->time_us = h->time_us;
}

/* The version of table tid at or before time t (µs): ST_ERANGE if none. */
int store_version_at_time(st_store *s, MDB_txn *txn, uint64_t tid, int64_t t, uint64_t *v,
			  struct st_err *err);

/* The metadata in force at version v of table h (owned by the caller).
 * Errors: ST_ERANGE (not retained), ST_ECORRUPT, ST_ENOMEM. */
int store_meta_at(st_store *s, MDB_txn *txn, const struct table_head *h, uint64_t v,
		  struct act_metadata **out, struct st_err *err);

/* The live files of table tid (heap array, free()). With damaged, a
 * record that fails its checksum gives its file id too (from its key: a
 * drop of a damaged table), else it is the error. */
int store_live_files(st_store *s, MDB_txn *txn, uint64_t tid, bool damaged, uint64_t **fids,
		     uint32_t *n, struct st_err *err);
/* Mark file fid of table tid removed in version at time_us, drop it from
 * live. dropping (the table is being dropped): a record that fails its
 * checksum is deleted instead of moved (a moved copy would get a new,
 * valid checksum over damaged bytes). */
int store_mark_removed(st_store *s, MDB_txn *txn, uint64_t tid, uint64_t fid, uint64_t version,
		       int64_t time_us, bool dropping, struct st_err *err);
/* Commit txn (durably: default LMDB flags); a failed LMDB commit puts the
 * store in the failed state. */
int store_commit_txn(st_store *s, MDB_txn *txn, const char *what, struct st_err *err);

/* A read transaction from the store's pool of reset ones (renewing one
 * keeps its reader slot: no reader-table lock, no allocation), or a new
 * one; an LMDB code. store_read_end resets it back into the pool. */
int store_read_begin(st_store *s, MDB_txn **txn);
void store_read_end(st_store *s, MDB_txn *txn);

/* Start a write: take the write lock, refuse in the failed state, begin an
 * LMDB write transaction. Whatever it returns, call store_write_end (with
 * the txn, or NULL once committed) to release the lock. */
int store_write_begin(st_store *s, MDB_txn **txn, const char *what, struct st_err *err);
/* Zero-fill LMDB's data file ahead of its last page (write lock held). */
void store_prealloc(st_store *s);
void store_write_end(st_store *s, MDB_txn *txn);

/* Write bytes to path durably: path.tmp, fsync, rename, fsync the directory. */
int store_write_file(st_store *s, const char *path, const uint8_t *bytes, size_t len,
		     struct st_err *err);

/* What a file name under tables/<tid>/ is: a segment "<fid>.seg" (16 hex
 * digits; *fid set), a transient one of a write or repair in flight
 * ("<fid>.seg.tmp", ".seg.repair", ".seg.repair.tmp"), or something else. */
enum { SEG_NAME_OTHER = 0, SEG_NAME_SEGMENT = 1, SEG_NAME_TRANSIENT = 2 };
int store_seg_name(const char *name, uint64_t *fid);

/* CRC32C and size of the whole file at path (backup.c). */
int store_file_crc(const char *path, uint32_t *crc, uint64_t *size, struct st_err *err);

/* A new file id, never handed out before in this data directory. */
uint64_t store_next_fid(st_store *s);

/* Register / release an open snapshot (table tid at version). */
int store_pin(st_store *s, uint64_t tid, uint64_t version);
void store_unpin(st_store *s, uint64_t tid, uint64_t version);

/* Refuse rows of a write that violate a CHECK constraint of m: cols in
 * schema order, n rows, row0 the write's row number of the first. */
int store_check_constraints(const char *table, const struct act_metadata *m,
			    const struct st_vec *cols, uint32_t n, uint64_t row0,
			    struct st_err *err);

/* A file rewritten by replace-where without its matching rows. */
struct store_rewrite {
	struct act_add add;          /* the new file's add action (file_id 0: none); with a
				      * deletion vector (add.dv, owned) the old file re-added */
	struct seg_file_info info;   /* what the writer reported */
	uint8_t *types;              /* column types of the new file */
	uint8_t *inl;                /* a re-added inline file's segment bytes, or NULL */
	size_t inl_len;              /* their size */
	char path[PATH_MAX];         /* the new segment */
	bool written;                /* path exists and no commit references it yet */
	uint64_t seg;                /* with add.dv: the segment id it keeps */
};
void store_rewrite_fini(struct store_rewrite *r);

struct expr;
/* The rows of file f of table tid (read against sch, the table schema)
 * where pred is TRUE and that f's deletion vector does not delete: with
 * pos, *pos (malloc'ed, *npos entries, increasing) gets their positions,
 * and only the predicate's columns are read; with fn, every column is
 * read and fn gets each row group with matches (its columns in sch's
 * order, its row count, the matching rows and the group's first
 * position). */
typedef int (*store_match_fn)(void *arg, const struct st_vec *cols, uint32_t rows,
			      const uint32_t *sel, uint32_t nsel, uint64_t row0, struct st_err *err);
int store_file_match(st_store *s, uint64_t tid, const struct file_rec *f,
		     const struct st_schema *sch, const struct expr *pred, uint32_t **pos,
		     uint32_t *npos, store_match_fn fn, void *arg, struct st_err *err);
/* The same, fn seeing only the columns cols marks (and the predicate's). */
int store_file_match_cols(st_store *s, uint64_t tid, const struct file_rec *f,
			  const struct st_schema *sch, const struct expr *pred, uint32_t **pos,
			  uint32_t *npos, store_match_fn fn, void *arg, const bool *cols,
			  struct st_err *err);
/* Append v to (*a, *n, *cap), doubling from 256; false when out of memory. */
bool store_push_u32(uint32_t **a, uint32_t *n, uint32_t *cap, uint32_t v);
bool store_push_u64(uint64_t **a, uint32_t *n, uint32_t *cap, uint64_t v);
/* Copy the rows of v listed in keep (n of them, increasing) into plain
 * vector out, with its buffers in bufs (free each). */
int store_gather(const struct st_vec *v, const uint32_t *keep, uint32_t n, struct st_vec *out,
		 void *bufs[3]);
/* Rows held in memory (OPTIMIZE's clustering, MERGE's source): batches of
 * plain vectors, nf each, a row addressed by (batch, row). */
struct store_held {
	uint32_t nf;                 /* columns */
	struct st_vec **vecs;        /* per batch, nf vectors */
	void ***bufs;                /* per batch, 3 * nf buffers (owned) */
	uint32_t *rows;              /* per batch */
	uint32_t n, cap;             /* batches */
	uint64_t total;              /* rows */
};
struct store_ref {
	uint32_t b, r;               /* batch and row */
};
void store_held_free(struct store_held *h);
/* Take over batch v (nf vectors) with its buffers bufs (3 per column). */
int store_held_push(struct store_held *h, struct st_vec *v, void **bufs, uint32_t rows,
		    struct st_err *err);
/* Rows refs[0..n) of h as one batch of plain vectors into v (buffers in
 * bufs, 3 per column: the caller frees them). */
int store_held_gather(const struct store_held *h, const struct store_ref *refs, uint32_t n,
		      struct st_vec *v, void **bufs, struct st_err *err);
/* File statistics of f in the order of table schema sch. */
void store_file_stats(const struct st_schema *sch, const struct file_rec *f,
		      struct st_col_stats *out);

/* Type widening on read (daemon/widen.c): whether from widens to to;
 * statistics and vectors of the older type converted to the table's. A
 * converted vector's values live in *buf (grown to *cap bytes). */
bool store_widens(int from, int to);
void store_stats_widen(struct st_col_stats *st, int to);
int store_vec_widen(const struct st_vec *in, int to, struct st_vec *out, void **buf, size_t *cap);

/* A head scan's files, for compaction (daemon/scan.c). */
int store_scan_files(const st_scan *sc, uint64_t **fids, uint32_t *n, uint64_t *rows);
uint32_t store_scan_nfiles(const st_scan *sc);
bool store_scan_file_inline(const st_scan *sc, uint32_t i);
bool store_scan_file_dv(const st_scan *sc, uint32_t i);

/* Fill an add action from what the segment writer reported for a file
 * written with schema sc (field_ids allocated; stats borrowed from info). */
int store_add_from_info(struct act_add *a, const struct seg_file_info *info,
			const struct st_schema *sc, bool data_change, struct st_err *err);


/* LSN and time of commit (tid, v); false when it is not retained. */
bool store_commit_stamp(st_store *s, MDB_txn *txn, uint64_t tid, uint64_t v, uint64_t *lsn,
			int64_t *time_us);

/* Tests: called by st_delete, st_update, st_merge and st_optimize after they staged their changes
 * and before they commit (no lock held), so that a test can commit a
 * concurrent change there. NULL in production. */
extern void (*store_test_dml_staged)(st_store *s, void *arg);
extern void *store_test_dml_arg;

/* UPDATE, MERGE and OPTIMIZE commit their staged transaction: the test hook
 * above, then st_txn_commit (*t is consumed); a commit result's rows count
 * rows appended, which these rewrites do not, so it is 0. */
int store_dml_commit(st_store *s, st_txn **t, struct st_commit_result *res, struct st_err *err);

/* Current time in µs since the epoch. */
int64_t store_now_us(void);

#endif
