/*
 * format/wire.h — encoding and decoding of the wire protocol
 * (format/PROTOCOL.md): envelopes, errors and column batches, as msgpack.
 *
 * Writing: wire_out holds a growable buffer and a msgpack packer writing
 * into it. wire_begin packs the envelope and opens the body map; the caller
 * then packs exactly the announced number of key/value pairs with the
 * msgpack_pack_* functions or the wire_key_* helpers. A whole error reply is
 * wire_error_reply.
 *
 * wire_end closes the message: it checks that the bytes packed are exactly
 * one complete msgpack value, i.e. that every map and array got the pairs
 * and elements it announced.
 *
 * Reading: wire_parse decodes one message into a msgpack object tree that
 * references the message bytes (keep them alive until wire_msg_fini). The
 * wire_field_* getters look up integer keys of a map and tell present (1),
 * absent (0) and mistyped (ST_EPROTO, with an st_err naming the key) apart.
 *
 * Key numbers: one enum per table of PROTOCOL.md, with the table's numbers
 * written out; code uses the names, never literals.
 *
 * Thread safety: none of these functions share state.
 */
#ifndef STRATA_FORMAT_WIRE_H
#define STRATA_FORMAT_WIRE_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format/bytes.h"
#include "format/error.h"
#include "format/types.h"

#define WIRE_VERSION 1
#define WIRE_CLIENT_ID_LEN 16

/* Request types (PROTOCOL.md §3). */
enum wire_type {
	WIRE_HELLO = 1,
	WIRE_PING = 2,
	WIRE_STATUS = 3,
	WIRE_AUTH_BEGIN = 4,
	WIRE_AUTH = 5,
	WIRE_CREATE = 10,
	WIRE_TABLES = 11,
	WIRE_DESCRIBE = 12,
	WIRE_DROP = 13,
	WIRE_ALTER = 14,
	WIRE_WRITE = 20,
	WIRE_LOAD_BEGIN = 21,
	WIRE_LOAD_DATA = 22,
	WIRE_LOAD_COMMIT = 23,
	WIRE_LOAD_ABORT = 24,
	WIRE_DELETE = 25,
	WIRE_UPDATE = 26,
	WIRE_MERGE = 27,
	WIRE_SCAN = 30,
	WIRE_SCAN_NEXT = 31,
	WIRE_SCAN_CLOSE = 32,
	WIRE_QUERY = 40,
	WIRE_HISTORY = 50,
	WIRE_RESTORE = 51,
	WIRE_VACUUM = 52,
	WIRE_VERIFY = 53,
	WIRE_COMPACT = 54,
	WIRE_SCRUB = 55,
	WIRE_BACKUP = 56,
	WIRE_OPTIMIZE = 57,
	WIRE_CLUSTER_STATUS = 60,
	WIRE_CLUSTER_TRANSFER = 61,
	WIRE_CLUSTER_MEMBER = 62,
};

/* ---- key numbers (PROTOCOL.md) ----------------------------------------- */

/* §2 envelope keys. */
enum wire_env_key {
	WIRE_ENV_VERSION = 0, /* uint: protocol version */
	WIRE_ENV_ID = 1,      /* uint64: request id */
	WIRE_ENV_TYPE = 2,    /* uint: request type */
	WIRE_ENV_BODY = 3,    /* map: body */
	WIRE_ENV_ERROR = 4,   /* map: error (replies) */
	WIRE_ENV_CLIENT = 5,  /* bin 16: client id */
	WIRE_ENV_SEQ = 6,     /* uint64: client sequence number */
	WIRE_ENV_DURABILITY = 7,    /* uint: enum wire_durability (requests) */
	WIRE_ENV_MIN_VERSION = 8,   /* uint: reads wait for this table version */
	WIRE_ENV_MAX_STALENESS = 9, /* uint: ms; reads refused when staler */
	WIRE_ENV_CONSISTENCY = 10,  /* uint: enum wire_consistency (reads) */
	WIRE_ENV_SERVED_BY = 11,    /* uint: node id that served a read (replies) */
	WIRE_ENV_READ_LSN = 12,     /* uint: its applied LSN when it read */
	WIRE_ENV_STALENESS = 13,    /* uint: ms since its last leader contact */
	WIRE_ENV_SESSION = 14,      /* bin 16: the authenticated session (§2.2, requests) */
	WIRE_ENV_MAC = 15,          /* bin 32: its MAC, the request's last pair (§2.2) */
};

/* §2 durability levels (REPLICATION.md §7) and read consistency. */
enum wire_durability {
	WIRE_DUR_DEFAULT = 0,
	WIRE_DUR_LOCAL = 1,
	WIRE_DUR_QUORUM = 2,
	WIRE_DUR_ALL = 3,
};
enum wire_consistency {
	WIRE_CONS_DEFAULT = 0,
	WIRE_CONS_LEADER = 1,
	WIRE_CONS_BOUNDED = 2,
	WIRE_CONS_ANY = 3,
};

/* §2.1 error keys. */
enum wire_err_key {
	WIRE_ERR_CODE = 0,   /* int */
	WIRE_ERR_MSG = 1,    /* str */
	WIRE_ERR_TABLE = 2,  /* str */
	WIRE_ERR_COLUMN = 3, /* str */
	WIRE_ERR_ROW = 4,    /* uint */
	WIRE_ERR_OFFSET = 5, /* uint */
	WIRE_ERR_TOKEN = 6,  /* str */
	WIRE_ERR_LEADER = 7,    /* str: ST_ENOTLEADER, the leader's client address */
	WIRE_ERR_LEADER_ID = 8, /* uint: ST_ENOTLEADER, the leader's node id */
};

/* §3 `at` map keys and kinds. */
enum wire_at_key {
	WIRE_AT_KIND = 0,  /* uint: enum wire_at_kind */
	WIRE_AT_VALUE = 1, /* int: version, µs or LSN */
};
enum wire_at_kind {
	WIRE_AT_LATEST = 0,
	WIRE_AT_VERSION = 1,
	WIRE_AT_TIME = 2, /* µs since the epoch, UTC */
	WIRE_AT_LSN = 3,
};

/* §3 commit result keys. */
enum wire_result_key {
	WIRE_RESULT_VERSION = 0, /* uint */
	WIRE_RESULT_LSN = 1,     /* uint */
	WIRE_RESULT_TIME = 2,    /* int: µs */
	WIRE_RESULT_ROWS = 3,    /* uint */
	WIRE_RESULT_NOOP = 4,    /* bool */
	WIRE_RESULT_NKEYS = 5,   /* pairs of the map */
};

/* §3 request and reply body keys, one enum per type (Q = request, R = reply). */
enum wire_hello_key { WIRE_HELLO_Q_CLIENT = 0, WIRE_HELLO_Q_PROTOCOL = 1 };
enum wire_hello_reply {
	WIRE_HELLO_R_VERSION = 0,
	WIRE_HELLO_R_PROTOCOL = 1,
	WIRE_HELLO_R_MAX_MESSAGE = 2,
	WIRE_HELLO_R_MAX_ROWS = 3,
	WIRE_HELLO_R_NKEYS = 4,
};
enum wire_status_reply {
	WIRE_STATUS_R_VERSION = 0,
	WIRE_STATUS_R_UPTIME = 1,
	WIRE_STATUS_R_DATA_DIR = 2,
	WIRE_STATUS_R_TABLES = 3,
	WIRE_STATUS_R_LSN = 4,
	WIRE_STATUS_R_DISK = 5,
	WIRE_STATUS_R_PID = 6,
	WIRE_STATUS_R_LOADS = 7,
	WIRE_STATUS_R_CURSORS = 8,
	WIRE_STATUS_R_CHAIN_HASH = 9,
	WIRE_STATUS_R_ROLE = 10,
	WIRE_STATUS_R_EPOCH = 11,
	WIRE_STATUS_R_NODE = 12,
	WIRE_STATUS_R_LEADER = 13,
	WIRE_STATUS_R_COMMIT_LSN = 14,
	WIRE_STATUS_R_APPLIED_LSN = 15,
	WIRE_STATUS_R_SCRUB_STATE = 16,    /* "off", "idle", "running" */
	WIRE_STATUS_R_SCRUB_PASSES = 17,   /* passes ended since start */
	WIRE_STATUS_R_SCRUB_DONE = 18,     /* bytes read by the running pass */
	WIRE_STATUS_R_SCRUB_TOTAL = 19,    /* its estimate of all it will read */
	WIRE_STATUS_R_SCRUB_LAST_END = 20, /* µs since the epoch the last pass ended (0: none) */
	WIRE_STATUS_R_SCRUB_LAST_PROBLEMS = 21, /* array of str: what it found (16 at most) */
	WIRE_STATUS_R_SCRUB_LAST_SEGMENTS = 22,
	WIRE_STATUS_R_SCRUB_LAST_RECORDS = 23,
	WIRE_STATUS_R_SCRUB_NEXT = 24,     /* µs until the next background pass (0: off) */
	WIRE_STATUS_R_DAMAGED = 25,        /* array of str: each refused table and why */
	WIRE_STATUS_R_SCRUB_LAST_NPROBLEMS = 26, /* problems of the last pass in all */
	WIRE_STATUS_R_FAILURE = 27,        /* str: why the store refuses writes ("": it does not) */
	WIRE_STATUS_R_AUTOOPT_STATE = 28,    /* str: off, idle, running */
	WIRE_STATUS_R_AUTOOPT_RUNS = 29,     /* OPTIMIZE commits the thread made */
	WIRE_STATUS_R_AUTOOPT_FAILURES = 30,
	WIRE_STATUS_R_AUTOOPT_LAST = 31,     /* str: what it did last, or its last failure */
	WIRE_STATUS_R_NKEYS = 32,
};
enum wire_create_key {
	WIRE_CREATE_Q_TABLE = 0,
	WIRE_CREATE_Q_COLUMNS = 1,
	WIRE_CREATE_Q_PARTITION = 2,
	WIRE_CREATE_Q_PROPERTIES = 3,
	WIRE_CREATE_Q_MODE = 4, /* enum wire_create_mode */
	WIRE_CREATE_Q_KEY = 5,  /* array of str: declared key columns */
};
enum wire_create_mode { WIRE_CREATE_ERROR = 0, WIRE_CREATE_IGNORE = 1, WIRE_CREATE_REPLACE = 2 };
enum wire_create_reply { WIRE_CREATE_R_VERSION = 0 };
enum wire_tables_reply { WIRE_TABLES_R_NAMES = 0 };
enum wire_describe_key { WIRE_DESCRIBE_Q_TABLE = 0, WIRE_DESCRIBE_Q_VERSION = 1 };
enum wire_describe_reply {
	WIRE_DESCRIBE_R_TABLE = 0,
	WIRE_DESCRIBE_R_VERSION = 1,
	WIRE_DESCRIBE_R_COLUMNS = 2,
	WIRE_DESCRIBE_R_PARTITION = 3,
	WIRE_DESCRIBE_R_PROPERTIES = 4,
	WIRE_DESCRIBE_R_CONSTRAINTS = 5,
	WIRE_DESCRIBE_R_FILES = 6,
	WIRE_DESCRIBE_R_ROWS = 7,
	WIRE_DESCRIBE_R_BYTES = 8,
	WIRE_DESCRIBE_R_TIME = 9,
	WIRE_DESCRIBE_R_OLDEST = 10,
	WIRE_DESCRIBE_R_DELETED = 11,  /* rows deletion vectors delete (not in key 7) */
	WIRE_DESCRIBE_R_DVS = 12,      /* live files with a deletion vector */
	WIRE_DESCRIBE_R_KEY = 13,      /* array of str: the declared key columns */
	WIRE_DESCRIBE_R_NKEYS = 14,
};
enum wire_drop_key { WIRE_DROP_Q_TABLE = 0 };
enum wire_drop_reply { WIRE_DROP_R_VERSION = 0, WIRE_DROP_R_NKEYS = 1 };
enum wire_alter_key {
	WIRE_ALTER_Q_TABLE = 0,
	WIRE_ALTER_Q_OP = 1, /* enum wire_alter_op */
	WIRE_ALTER_Q_ARG1 = 2,
	WIRE_ALTER_Q_ARG2 = 3,
	WIRE_ALTER_Q_TYPE = 4,
};
/* §3.3 ALTER operations: fixed wire numbers, mapped to st_alter_op by the
 * server (never the in-memory enum's order). */
enum wire_alter_op {
	WIRE_ALTER_ADD_COLUMN = 0,
	WIRE_ALTER_RENAME_COLUMN = 1,
	WIRE_ALTER_DROP_COLUMN = 2,
	WIRE_ALTER_SET_PROPERTY = 3,
	WIRE_ALTER_UNSET_PROPERTY = 4,
	WIRE_ALTER_SET_NOT_NULL = 5,
	WIRE_ALTER_DROP_NOT_NULL = 6,
	WIRE_ALTER_ADD_CONSTRAINT = 7,
	WIRE_ALTER_DROP_CONSTRAINT = 8,
};
enum wire_alter_reply { WIRE_ALTER_R_VERSION = 0 };
enum wire_write_key { WIRE_WRITE_Q_TABLE = 0, WIRE_WRITE_Q_OPTIONS = 1, WIRE_WRITE_Q_BATCH = 2 };
enum wire_load_begin_key {
	WIRE_LOAD_BEGIN_Q_TABLE = 0,
	WIRE_LOAD_BEGIN_Q_OPTIONS = 1,
	WIRE_LOAD_BEGIN_Q_HEADER = 2,
};
enum wire_load_begin_reply { WIRE_LOAD_BEGIN_R_ID = 0 };
enum wire_load_data_key {
	WIRE_LOAD_DATA_Q_ID = 0,
	WIRE_LOAD_DATA_Q_BATCH = 1,
	WIRE_LOAD_DATA_Q_NUMBER = 2,
};
enum wire_load_data_reply { WIRE_LOAD_DATA_R_ROWS = 0 };
enum wire_load_end_key { WIRE_LOAD_END_Q_ID = 0 }; /* LOAD_COMMIT and LOAD_ABORT */
enum wire_scan_key {
	WIRE_SCAN_Q_TABLE = 0,
	WIRE_SCAN_Q_COLUMNS = 1,
	WIRE_SCAN_Q_PREDICATE = 2,
	WIRE_SCAN_Q_AT = 3,
	WIRE_SCAN_Q_LIMIT = 4,
	WIRE_SCAN_Q_CHANGES_FROM = 5, /* at: read the change feed from here (STORE.md §4.4) */
	WIRE_SCAN_Q_CHANGES_TO = 6,   /* at: to here (absent or latest: the head) */
};
enum wire_scan_reply {
	WIRE_SCAN_R_CURSOR = 0,
	WIRE_SCAN_R_BATCH = 1,
	WIRE_SCAN_R_VERSION = 2,
	WIRE_SCAN_R_COLUMNS = 3,
	WIRE_SCAN_R_NKEYS = 4,
};
enum wire_scan_next_key { WIRE_SCAN_NEXT_Q_CURSOR = 0 }; /* SCAN_NEXT and SCAN_CLOSE */
enum wire_scan_next_reply {
	WIRE_SCAN_NEXT_R_CURSOR = 0,
	WIRE_SCAN_NEXT_R_BATCH = 1,
	WIRE_SCAN_NEXT_R_NKEYS = 2,
};
enum wire_query_key {
	WIRE_QUERY_Q_TABLE = 0,
	WIRE_QUERY_Q_GROUP_BY = 1,
	WIRE_QUERY_Q_AGGREGATES = 2,
	WIRE_QUERY_Q_PREDICATE = 3,
	WIRE_QUERY_Q_AT = 4,
};
enum wire_query_reply {
	WIRE_QUERY_R_BATCH = 0,
	WIRE_QUERY_R_VERSION = 1,
	WIRE_QUERY_R_MATCHED = 2,
	WIRE_QUERY_R_ROWS_READ = 3,    /* rows of the row groups read (after pruning) */
	WIRE_QUERY_R_FILES_READ = 4,
	WIRE_QUERY_R_FILES_PRUNED = 5, /* files skipped by their statistics */
	WIRE_QUERY_R_NKEYS = 6,
};
enum wire_history_key { WIRE_HISTORY_Q_TABLE = 0, WIRE_HISTORY_Q_LIMIT = 1 };
enum wire_history_reply { WIRE_HISTORY_R_COMMITS = 0 };
/* The map of one commit in a HISTORY reply. */
enum wire_commit_key {
	WIRE_COMMIT_VERSION = 0,
	WIRE_COMMIT_TIME = 1,
	WIRE_COMMIT_OPERATION = 2,
	WIRE_COMMIT_PARAMETERS = 3,
	WIRE_COMMIT_READ_VERSION = 4,
	WIRE_COMMIT_ISOLATION = 5,
	WIRE_COMMIT_ROWS_ADDED = 6,
	WIRE_COMMIT_ROWS_REMOVED = 7,
	WIRE_COMMIT_FILES_ADDED = 8,
	WIRE_COMMIT_FILES_REMOVED = 9,
	WIRE_COMMIT_BYTES_ADDED = 10,
	WIRE_COMMIT_DURATION = 11,
	WIRE_COMMIT_LSN = 12,
	WIRE_COMMIT_HASH = 13,
	WIRE_COMMIT_ROWS_DELETED = 14,  /* DELETE, MERGE */
	WIRE_COMMIT_ROWS_UPDATED = 15,  /* UPDATE, MERGE */
	WIRE_COMMIT_DVS_ADDED = 16,     /* deletion vectors written */
	WIRE_COMMIT_NKEYS = 17,
};
enum wire_restore_key { WIRE_RESTORE_Q_TABLE = 0, WIRE_RESTORE_Q_AT = 1 };
enum wire_vacuum_key {
	WIRE_VACUUM_Q_TABLE = 0,
	WIRE_VACUUM_Q_RETAIN = 1,
	WIRE_VACUUM_Q_DRY_RUN = 2,
	WIRE_VACUUM_Q_FORCE = 3,
};
enum wire_vacuum_reply {
	WIRE_VACUUM_R_FILES = 0,
	WIRE_VACUUM_R_BYTES = 1,
	WIRE_VACUUM_R_PATHS = 2,
	WIRE_VACUUM_R_PINNED = 3,
	WIRE_VACUUM_R_OLDEST = 4,
	WIRE_VACUUM_R_PRUNED = 5,
	WIRE_VACUUM_R_FOLLOWERS = 6,
	WIRE_VACUUM_R_NKEYS = 7,
};
enum wire_verify_key { WIRE_VERIFY_Q_HEAD = 0, WIRE_VERIFY_Q_QUICK = 1 };
enum wire_verify_reply {
	WIRE_VERIFY_R_SEGMENTS = 0,
	WIRE_VERIFY_R_COMMITS = 1,
	WIRE_VERIFY_R_PROBLEMS = 2,
	WIRE_VERIFY_R_LAST_LSN = 3,
	WIRE_VERIFY_R_LAST_HASH = 4,
	WIRE_VERIFY_R_HEAD_LSN = 5, /* only when the head was given and found */
	WIRE_VERIFY_R_RECORDS = 6,
	WIRE_VERIFY_R_ORPHANS = 7,
	WIRE_VERIFY_R_PAGES = 8,
	WIRE_VERIFY_R_PAGES_SKIPPED = 9, /* bool: the page walk was skipped (writes meanwhile) */
	WIRE_VERIFY_R_NKEYS = 9,    /* without HEAD_LSN */
};
enum wire_compact_key { WIRE_COMPACT_Q_TABLE = 0 };
enum wire_delete_key {
	WIRE_DELETE_Q_TABLE = 0,
	WIRE_DELETE_Q_PREDICATE = 1,
	WIRE_DELETE_Q_APP_ID = 2,
	WIRE_DELETE_Q_APP_VERSION = 3,
};
enum wire_optimize_key {
	WIRE_OPTIMIZE_Q_TABLE = 0,
	WIRE_OPTIMIZE_Q_WHERE = 1,      /* str */
	WIRE_OPTIMIZE_Q_TARGET = 2,     /* uint: bytes */
	WIRE_OPTIMIZE_Q_CLUSTER_BY = 3, /* str: "a,b" */
};
/* OPTIMIZE's reply: a commit result and these. */
enum wire_optimize_reply {
	WIRE_OPTIMIZE_R_FILES_REMOVED = 5,
	WIRE_OPTIMIZE_R_FILES_ADDED = 6,
	WIRE_OPTIMIZE_R_BYTES_REMOVED = 7,
	WIRE_OPTIMIZE_R_BYTES_ADDED = 8,
	WIRE_OPTIMIZE_R_ROWS = 9,
	WIRE_OPTIMIZE_R_PURGED = 10,    /* deleted rows dropped from the files */
	WIRE_OPTIMIZE_R_NKEYS = 11,
};
enum wire_merge_key {
	WIRE_MERGE_Q_TABLE = 0,
	WIRE_MERGE_Q_SOURCE = 1,      /* str: the source table */
	WIRE_MERGE_Q_ON = 2,          /* str: "t.a = s.b [AND ...]" */
	WIRE_MERGE_Q_MATCHED = 3,     /* uint: 0 ignore, 1 update-all, 2 delete, 3 update (key 8) */
	WIRE_MERGE_Q_NOT_MATCHED = 4, /* uint: 0 ignore, 1 insert-all */
	WIRE_MERGE_Q_BY_SOURCE = 5,   /* uint: 0 ignore, 1 delete */
	WIRE_MERGE_Q_APP_ID = 6,
	WIRE_MERGE_Q_APP_VERSION = 7,
	WIRE_MERGE_Q_SET = 8,         /* str: matched 3's SET list (col, t.col, s.col) */
	WIRE_MERGE_Q_SOURCE_LOAD = 9, /* uint: a merge-source load (PROTOCOL.md §4), consumed */
};
/* MERGE's reply: the DML reply (key 5 the rows updated) and these. */
enum wire_merge_reply {
	WIRE_MERGE_R_DELETED = 10,
	WIRE_MERGE_R_INSERTED = 11,
	WIRE_MERGE_R_NKEYS = 12,
};
enum wire_update_key {
	WIRE_UPDATE_Q_TABLE = 0,
	WIRE_UPDATE_Q_SET = 1,
	WIRE_UPDATE_Q_PREDICATE = 2,
	WIRE_UPDATE_Q_APP_ID = 3,
	WIRE_UPDATE_Q_APP_VERSION = 4,
};
/* DELETE's and UPDATE's reply: a commit result (WIRE_RESULT_*, rows 0)
 * and these. */
enum wire_dml_reply {
	WIRE_DML_R_ROWS = 5,     /* rows deleted, or updated */
	WIRE_DML_R_SKIPPED = 6,
	WIRE_DML_R_READ = 7,
	WIRE_DML_R_REMOVED = 8,
	WIRE_DML_R_DVS = 9,
	WIRE_DML_R_NKEYS = 10,
};
enum wire_scrub_key { WIRE_SCRUB_Q_TABLE = 0, WIRE_SCRUB_Q_RATE = 1 };
enum wire_backup_key { WIRE_BACKUP_Q_DIR = 0 };
enum wire_auth_key { WIRE_AUTH_Q_NAME = 0, WIRE_AUTH_Q_NONCE = 1, WIRE_AUTH_Q_PROOF = 2 };
enum wire_auth_reply { WIRE_AUTH_BEGIN_R_NONCE = 0, WIRE_AUTH_R_ROLE = 0, WIRE_AUTH_R_SESSION = 1 };
enum wire_backup_reply {
	WIRE_BACKUP_R_LSN = 0,
	WIRE_BACKUP_R_HASH = 1,
	WIRE_BACKUP_R_FILES = 2,
	WIRE_BACKUP_R_BYTES = 3,
	WIRE_BACKUP_R_NKEYS = 4,
};
enum wire_scrub_reply { WIRE_SCRUB_R_PASS = 0, WIRE_SCRUB_R_RATE = 1, WIRE_SCRUB_R_NKEYS = 2 };
enum wire_cluster_status_reply {
	WIRE_CLUSTER_R_NODE = 0,
	WIRE_CLUSTER_R_LEADER = 1,
	WIRE_CLUSTER_R_EPOCH = 2,
	WIRE_CLUSTER_R_NODES = 3,
	WIRE_CLUSTER_R_CLUSTER = 4,
	WIRE_CLUSTER_R_REPAIRED = 5,         /* segment files this node repaired from a peer */
	WIRE_CLUSTER_R_REPAIR_FAILURES = 6,  /* fetches of a copy that failed */
	WIRE_CLUSTER_R_REPAIR_PENDING = 7,   /* damaged segment files waiting for a copy */
	WIRE_CLUSTER_R_NKEYS = 8,
};
/* One row of CLUSTER_STATUS's nodes array. */
enum wire_cluster_node_key {
	WIRE_CNODE_ID = 0,
	WIRE_CNODE_ROLE = 1,
	WIRE_CNODE_ADDRESS = 2,
	WIRE_CNODE_MATCH = 3,
	WIRE_CNODE_LAG = 4,
	WIRE_CNODE_CONTACT_MS = 5,
	WIRE_CNODE_COMMIT = 6,
	WIRE_CNODE_APPLIED = 7,
	WIRE_CNODE_BYTES_SENT = 8,
	WIRE_CNODE_NKEYS = 9,
};
enum wire_cluster_transfer_key { WIRE_TRANSFER_Q_TO = 0 };
/* CLUSTER_MEMBER (REPLICATION.md §13): op 1 add, 2 promote, 3 remove (at the
 * leader), 4 force-promote (at the node to lead; key 4 must be true). */
enum wire_cluster_member_key {
	WIRE_MEMBER_Q_OP = 0,     /* uint */
	WIRE_MEMBER_Q_ID = 1,     /* uint: the node */
	WIRE_MEMBER_Q_PEER = 2,   /* str: add: its peer address */
	WIRE_MEMBER_Q_CLIENT = 3, /* str: add: its client address (optional) */
	WIRE_MEMBER_Q_ACCEPT_LOSS = 4, /* bool: force-promote: the operator accepts data loss */
};
enum wire_cluster_member_reply { WIRE_MEMBER_R_MESSAGE = 0, WIRE_MEMBER_R_NKEYS = 1 };

/* §3.1 write options keys and modes. */
enum wire_wopt_key {
	WIRE_WOPT_MODE = 0,             /* uint: enum wire_write_mode */
	WIRE_WOPT_MERGE_SCHEMA = 1,     /* bool */
	WIRE_WOPT_OVERWRITE_SCHEMA = 2, /* bool */
	WIRE_WOPT_REPLACE_WHERE = 3,    /* str */
	WIRE_WOPT_APP_ID = 4,           /* str */
	WIRE_WOPT_APP_VERSION = 5,      /* uint */
};
enum wire_write_mode { WIRE_WRITE_APPEND = 0, WIRE_WRITE_OVERWRITE = 1,
		       WIRE_WRITE_MERGE_SOURCE = 2 /* LOAD_BEGIN only (PROTOCOL.md §4) */ };

/* §3.2 batch keys and column keys. */
enum wire_batch_key { WIRE_BATCH_ROWS = 0, WIRE_BATCH_COLUMNS = 1 };
enum wire_col_key {
	WIRE_COL_NAME = 0,     /* str */
	WIRE_COL_TYPE = 1,     /* uint: format/types.h type id */
	WIRE_COL_VALIDITY = 2, /* bin */
	WIRE_COL_DATA = 3,     /* bin: fixed-width values */
	WIRE_COL_OFFSETS = 4,  /* bin: u32 LE offsets */
	WIRE_COL_BYTES = 5,    /* bin: string/binary bytes */
};

/* Name of a request type ("LOAD_DATA"), or "?" */
const char *wire_type_name(int type);
/* True for requests that must carry (client, seq) and are deduplicated. */
bool wire_changes_state(int type);

/* An error as carried on the wire (PROTOCOL.md §2.1). */
struct wire_error {
	int code;                     /* ST_E* or errno */
	char msg[ST_ERR_MSG_MAX];     /* human message */
	char table[ST_NAME_MAX + 1];  /* "" when none */
	char column[ST_NAME_MAX + 1]; /* "" when none */
	int64_t row;                  /* -1 when none */
	int64_t offset;               /* -1 when none */
	char token[64];               /* "" when none */
	char leader[128];             /* ST_ENOTLEADER: leader's address, "" unknown */
	uint64_t leader_id;           /* ST_ENOTLEADER: leader's node id, 0 unknown */
};

/* ---- writing ---------------------------------------------------------- */

/* Envelope keys 7-13 (§2): what wire_begin packs besides the required
 * ones (zero fields are left out), and what wire_parse found. */
struct wire_env_opts {
	uint32_t durability;    /* key 7, enum wire_durability */
	bool has_min_version;   /* key 8 present */
	uint64_t min_version;   /* key 8 */
	bool has_max_staleness; /* key 9 present */
	uint64_t max_staleness; /* key 9, ms */
	uint32_t consistency;   /* key 10, enum wire_consistency */
	bool served;            /* keys 11-13 present (replies to reads in a cluster) */
	uint64_t served_by;     /* key 11 */
	uint64_t read_lsn;      /* key 12 */
	uint64_t staleness;     /* key 13, ms */
};

struct wire_out {
	struct st_buf buf;   /* the message so far */
	msgpack_packer pk;   /* packs into buf */
	struct wire_env_opts env; /* packed by wire_begin; zeroed by init and reset */
};

void wire_out_init(struct wire_out *o);
/* Empty the buffer for the next message (keeps its memory). */
void wire_out_reset(struct wire_out *o);
void wire_out_fini(struct wire_out *o);

/* Pack the envelope of a message (request or successful reply) and the
 * header of a body map of nbody pairs. client (16 bytes) and seq are packed
 * when client is not NULL. */
void wire_begin(struct wire_out *o, uint64_t id, int type, const uint8_t *client, uint64_t seq,
		uint32_t nbody);
/*
 * Close the message in o: check that its bytes are exactly one complete
 * msgpack value, so that every map (the body's nbody pairs included) and
 * array got what it announced. A shortfall or a surplus is a bug of the
 * code that packed it: ST_EINVAL with a message saying so (not an assert,
 * so tests can hit it). ST_ENOMEM when the buffer ran out of memory.
 */
int wire_end(struct wire_out *o, struct st_err *err);
/* A whole error reply. */
void wire_error_reply(struct wire_out *o, uint64_t id, int type, const struct wire_error *e);

void wire_pack_str(msgpack_packer *pk, const char *s);
void wire_pack_strn(msgpack_packer *pk, const char *s, size_t n);
void wire_key_u64(msgpack_packer *pk, uint32_t key, uint64_t v);
void wire_key_i64(msgpack_packer *pk, uint32_t key, int64_t v);
void wire_key_str(msgpack_packer *pk, uint32_t key, const char *s);
void wire_key_bool(msgpack_packer *pk, uint32_t key, bool v);
void wire_key_bin(msgpack_packer *pk, uint32_t key, const void *p, size_t len);

/*
 * Pack a batch (PROTOCOL.md §3.2) of ncols columns named names, taking
 * rows sel[0..nsel) of each vector (sel NULL: rows 0..nsel). Vectors may
 * be in any st_vec form; the batch is always plain.
 */
void wire_pack_batch(struct wire_out *o, uint32_t ncols, const char *const *names,
		     const struct st_vec *cols, const uint32_t *sel, uint32_t nsel);
/* Bytes wire_pack_batch would add, within a few bytes per column. */
size_t wire_batch_bytes(uint32_t ncols, const char *const *names, const struct st_vec *cols,
			const uint32_t *sel, uint32_t nsel);

/* ---- reading ---------------------------------------------------------- */

/* Most msgpack objects one message may hold (bounds the memory of decoding
 * it; batches are a few objects per column, so real messages stay far
 * below). */
#define WIRE_MAX_OBJECTS (1u << 22)
/* Walk one msgpack value at p without building it: every declared length
 * and element count must fit in the bytes that remain, and the value may
 * hold at most WIRE_MAX_OBJECTS objects (so what msgpack-c then allocates
 * is bounded by len). False on anything malformed; *end: where it ends. */
bool wire_walk(const uint8_t *p, size_t len, size_t *end);

struct wire_msg {
	msgpack_unpacked up;           /* the object tree (references the bytes) */
	uint32_t version;              /* key 0 */
	uint64_t id;                   /* key 1 */
	int type;                      /* key 2 */
	const msgpack_object *body;    /* key 3, a map, or NULL */
	const msgpack_object *error;   /* key 4, a map, or NULL */
	bool has_client;               /* keys 5 and 6 present */
	uint8_t client[WIRE_CLIENT_ID_LEN]; /* key 5 */
	uint64_t seq;                  /* key 6 */
	struct wire_env_opts env;      /* keys 7-13 (lenient: a mistyped one is ignored) */
};

/*
 * Decode one message of len bytes. Errors (ST_EPROTO, with a message that
 * says what is wrong): not msgpack, trailing bytes, not a map, envelope keys
 * missing or of the wrong type. A version above WIRE_VERSION is not an
 * error here (m->version tells). m needs wire_msg_fini even on error.
 */
int wire_parse(const void *buf, size_t len, struct wire_msg *m, struct st_err *err);
void wire_msg_fini(struct wire_msg *m);

/* The value of integer key `key` in map (NULL if map is not a map or the key is absent). */
const msgpack_object *wire_get(const msgpack_object *map, uint32_t key);

/*
 * Typed getters that tell absent from mistyped. Each looks up integer key
 * `key` of map (a NULL map has no keys) and returns
 *   1          present and of the type: *v is set,
 *   0          absent: *v is untouched (the caller's default stays),
 *   ST_EPROTO  present with another type, err says so naming the key:
 *              "key 2 (predicate) of SCAN is a uint, expected str"
 *              (`in` names the map, e.g. "SCAN" or "write options of WRITE";
 *              `name` the key; a NULL `in` leaves " of ..." out, for a
 *              caller that names the map itself).
 * wire_field_strbuf also returns ST_EINVAL when the string does not fit
 * len - 1 bytes or holds a NUL byte. Strings point into the message.
 */
int wire_field_u64(const msgpack_object *map, const char *in, uint32_t key, const char *name,
		   uint64_t *v, struct st_err *err);
/* Accepts a positive or negative integer that fits int64. */
int wire_field_i64(const msgpack_object *map, const char *in, uint32_t key, const char *name,
		   int64_t *v, struct st_err *err);
int wire_field_bool(const msgpack_object *map, const char *in, uint32_t key, const char *name,
		    bool *v, struct st_err *err);
int wire_field_str(const msgpack_object *map, const char *in, uint32_t key, const char *name,
		   const char **s, uint32_t *len, struct st_err *err);
int wire_field_strbuf(const msgpack_object *map, const char *in, uint32_t key, const char *name,
		      char *buf, size_t len, struct st_err *err);
/* A map, array or bin value: *o points at it. */
int wire_field_map(const msgpack_object *map, const char *in, uint32_t key, const char *name,
		   const msgpack_object **o, struct st_err *err);
int wire_field_array(const msgpack_object *map, const char *in, uint32_t key, const char *name,
		     const msgpack_object **o, struct st_err *err);
/* The msgpack type of o in the words of PROTOCOL.md: "uint", "int", "str",
 * "bin", "map", "array", "bool", "nil", "float", "ext" ("absent" for NULL). */
const char *wire_obj_type_name(const msgpack_object *o);

/* Copy a msgpack string object (an array element: keys go through
 * wire_field_strbuf) into buf (NUL-terminated); false if o is NULL, not a
 * string, longer than len - 1 or holding a NUL byte, and the caller says
 * which element is wrong. */
bool wire_obj_strbuf(const msgpack_object *o, char *buf, size_t len);

/* Decode the error map of a reply. */
void wire_error_decode(const msgpack_object *e, struct wire_error *out);
/* Fill a wire_error from a code and an st_err message. */
void wire_error_set(struct wire_error *e, int code, const char *msg);

/* A decoded batch. Vectors point into the message where the bytes are
 * aligned, else into copies owned by the batch. */
struct wire_batch {
	uint32_t nrows;              /* rows */
	uint32_t ncols;              /* columns */
	char **names;                /* ncols NUL-terminated names (owned) */
	struct st_vec *cols;         /* ncols plain vectors */
	void **owned;                /* copies to free */
	uint32_t nowned;             /* their count */
};

/* Decode and check a batch (PROTOCOL.md §3.2): every length exactly, type
 * ids known, offsets non-decreasing and within the bytes, at most max_rows
 * rows. Errors: ST_EPROTO, ST_ETOOBIG (rows), ST_ENOMEM. */
int wire_batch_decode(const msgpack_object *o, uint32_t max_rows, struct wire_batch *b,
		      struct st_err *err);
void wire_batch_fini(struct wire_batch *b);

#endif
