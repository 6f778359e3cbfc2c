/*
 * daemon/server/server_int.h — private declarations of stratad's request
 * server, shared by its modules and included only by them and their tests
 * and fuzzers:
 *
 *   server.c    the socket loop, the worker threads, start/stop, and the
 *               request path (parse, deduplicate, dispatch) behind sd_handle
 *   session.c   loads and scan cursors that live between requests; expiry
 *   dedup.c     replies remembered per (client id, sequence number)
 *   fields.c    reading the fields of a request body (PROTOCOL.md §3)
 *   requests.c  dispatch and the handlers of the table and maintenance
 *               requests
 *   rows.c      the handlers that move rows: WRITE, loads, SCAN, QUERY
 *
 * Locking: sd_server.lock guards the session list, the dedupe table and
 * the counters next to them. A session taken with sd_sess_get (busy) is
 * the caller's alone until sd_sess_release or sd_sess_end.
 */
#ifndef STRATA_DAEMON_SERVER_INT_H
#define STRATA_DAEMON_SERVER_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/server/server.h"
#include "daemon/store/query.h"
#include "format/wire.h"

#define SD_POLL_MS 200           /* workers check for shutdown and expiry this often */
#define SD_DEDUPE_PER_CLIENT 64  /* replies remembered per client */
#define SD_DEDUPE_CLIENTS 1024   /* clients remembered */
#define SD_REPLY_MARGIN 4096     /* envelope and body keys around a page's batch */
#define SD_MAX_GROUPS 1000000    /* QUERY result rows */

enum sd_sess_kind { SD_SESS_LOAD = 1, SD_SESS_CURSOR = 2 };

/* A load or a scan cursor, alive between requests. Owned by the server's
 * list; freed by sd_sess_end or sd_sess_expire. */
/* The most a merge-source load holds in memory (PROTOCOL.md §4). */
#define SD_MERGE_SOURCE_MAX (1024 << 20)

struct sd_session {
	uint64_t id;                   /* its id on the wire */
	int kind;                      /* enum sd_sess_kind */
	bool busy;                     /* a worker is using it (then only that worker touches it) */
	int64_t last_us;               /* last use */
	char table[ST_NAME_MAX + 1];   /* the table, for logs and errors */
	st_load *load;                 /* SD_SESS_LOAD: the open load (owned), or NULL for */
	st_merge_src *msrc;            /* SD_SESS_LOAD: a merge source's rows (owned) */
	uint64_t next_batch;           /* SD_SESS_LOAD: next LOAD_DATA batch number */
	st_scan *scan;                 /* SD_SESS_CURSOR: the open scan (owned) */
	const struct st_scan_batch *b; /* batch being paged out (the scan's), or NULL */
	uint32_t off;                  /* selected rows of b already sent */
	bool limited;                  /* a row limit applies */
	uint64_t left;                 /* rows still allowed under it */
	struct sd_session *next;       /* list link */
};

/* One remembered request of a client. */
struct sd_dedupe_entry {
	uint64_t seq;  /* 0 = unused */
	bool done;     /* the reply is there (else the request is running) */
	void *reply;   /* its bytes (owned) */
	size_t len;    /* their count */
};

/* The remembered requests of one client. */
struct sd_dedupe_client {
	uint8_t id[WIRE_CLIENT_ID_LEN];              /* client id */
	int64_t last_us;                             /* last request */
	uint32_t next;                               /* ring position */
	struct sd_dedupe_entry e[SD_DEDUPE_PER_CLIENT]; /* the ring */
};

#define SD_SCRUB_KEEP 16          /* problems of the last scrub pass STATUS shows */
#define SD_SCRUB_FIRST_US (600 * 1000000LL) /* first background pass: 10 min after start at most */

/* The scrub thread (scrub.c) and what STATUS says of it. */
struct sd_scrub {
	pthread_t th;
	bool started;               /* the thread runs (not in sd_server_new servers) */
	pthread_mutex_t lock;       /* the fields below */
	pthread_cond_t cond;        /* a request, or stop */
	int stop;                   /* atomic: the pass in progress ends, the thread too */
	bool requested;             /* an on-demand pass is wanted */
	char table[ST_NAME_MAX + 1]; /* its table ("" : all) */
	uint32_t rate;              /* its rate, MB/s (0: unthrottled) */
	bool running;
	uint64_t pass;              /* number of the pass running or last run */
	uint64_t ended;             /* passes ended */
	struct st_scrub_progress pg; /* of the running pass (atomics) */
	int64_t next_mono_us;       /* the next background pass is due (0: off) */
	int64_t last_end_us;        /* wall clock */
	uint64_t last_segments, last_records;
	uint32_t last_nproblems;
	char *last_problems[SD_SCRUB_KEEP];
	uint32_t last_kept;
};

/* The automatic compaction thread (autoopt.c). */
struct sd_autoopt {
	pthread_t th;
	bool started;
	pthread_mutex_t lock;       /* the fields below */
	pthread_cond_t cond;        /* stop */
	int stop;
	int running;                /* atomic: an OPTIMIZE is running */
	uint64_t runs, failures;
	char last[ST_ERR_MSG_MAX + 160];
};

/* ---- client authentication (auth.c, PROTOCOL.md §2.2) ---- */
enum { SD_AUTH_NONE = 0, SD_AUTH_READ = 1, SD_AUTH_WRITE = 2, SD_AUTH_ADMIN = 3 };
#define SD_TOKEN_NAME_MAX 64
#define SD_TOKEN_SECRET_MAX 256
#define SD_TOKENS_MAX 64
#define SD_AUTH_PENDING 256        /* challenges outstanding (the oldest is reused) */
#define SD_AUTH_SESSIONS 1024      /* sessions remembered (the idlest is reused) */
#define SD_MAC_PAIR_LEN 35         /* 0x0f, 0xc4, 0x20, 32 bytes */

struct sd_token {
	char name[SD_TOKEN_NAME_MAX + 1];
	int role;                          /* SD_AUTH_READ .. SD_AUTH_ADMIN */
	char secret[SD_TOKEN_SECRET_MAX];
	size_t len;
};
struct sd_tokens {
	struct sd_token t[SD_TOKENS_MAX];
	uint32_t n;                        /* 0: authentication off */
};
struct sd_auth_pending {
	uint8_t nonce[32];
	int64_t at_us;
	bool live;
};
struct sd_auth_session {
	uint8_t id[16], key[32];
	uint32_t token;
	int64_t last_us;
	bool live;
};

struct sd_server {
	st_store *s;                /* the store (borrowed; open until the server is freed) */
	struct sd_server_opts o;    /* options (strings borrowed from the caller) */
	int sock;                   /* the raw REP socket, -1 for a local server */
	pthread_t *th;              /* worker threads */
	uint32_t nth;               /* started so far */
	int stop;                   /* atomic: workers leave their loop */
	int64_t started_us;         /* for STATUS's uptime */
	pthread_mutex_t lock;       /* sessions, dedupe */
	pthread_cond_t cond;        /* a deduplicated request finished */
	struct sd_session *sessions; /* open loads and cursors */
	uint64_t next_sid;          /* session id counter */
	uint32_t nloads, ncursors;  /* sessions by kind */
	int64_t last_expire_us;     /* last expiry pass */
	struct sd_dedupe_client **clients; /* each allocated alone: workers hold entry
					    * pointers across unlocks, so they never move */
	uint32_t nclients;          /* their count */
	struct sd_scrub scrub;      /* the background scrub */
	struct sd_autoopt autoopt;  /* automatic compaction */
	struct sd_tokens tokens;    /* auth_file's tokens (n 0: no authentication) */
	pthread_mutex_t auth_lock;  /* pending, sessions_auth */
	struct sd_auth_pending pending[SD_AUTH_PENDING];
	uint32_t next_pending;
	struct sd_auth_session sessions_auth[SD_AUTH_SESSIONS];
};

/* One worker's request context (reused from request to request). */
struct sd_ctx {
	sd_server *srv;              /* the server */
	struct wire_msg m;           /* the request */
	struct wire_out out;         /* the reply */
	struct wire_error e;         /* the error, when a handler fails */
	char table[ST_NAME_MAX + 1]; /* the request's table, for errors */
	uint32_t *idx;               /* scan paging: row indices of a batch (owned) */
	uint32_t idx_cap;            /* their room */
};

int64_t sd_now_us(void);

/* ---- server.c ------------------------------------------------------------ */

/* A server without socket and workers, for sd_handle (tests, fuzzers).
 * Errors: ST_ENOMEM. Free with sd_server_free. */
int sd_server_new(st_store *s, const struct sd_server_opts *o, sd_server **out,
		  struct st_err *err);
/* Abort open loads, close cursors, forget dedupe replies, free. Workers
 * must be stopped. NULL is a no-op. */
void sd_server_free(sd_server *srv);
/*
 * The whole request path of a worker, without the socket: parse req,
 * answer a repeated (client, seq) from its first reply, else dispatch to
 * the handler. *reply (malloc'ed, free it) and *rlen get the reply bytes.
 * Returns ST_OK when a reply was made (even an error reply) or ST_ENOMEM.
 * Blocks while a duplicate of a running request waits for it.
 */
int sd_handle(sd_server *srv, const void *req, size_t len, void **reply, size_t *rlen);

/* ---- requests.c ---------------------------------------------------------- */

/* Run the request in c->m; the reply (or an error reply) ends in c->out. */
void sd_dispatch(struct sd_ctx *c);

/* Record an error for the reply; return code. */
int sd_fail(struct sd_ctx *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The same from an st_err (the request's table goes along). */
int sd_fail_err(struct sd_ctx *c, int code, const struct st_err *err);
/* Start the successful reply: envelope and a body map of nbody pairs. */
void sd_begin(struct sd_ctx *c, uint32_t nbody);
/* The body of a commit result (WIRE_RESULT_NKEYS pairs). */
void sd_pack_result(struct sd_ctx *c, const struct st_commit_result *r);

/* ---- gate.c -------------------------------------------------------------- */

/* The cluster gate of a request before its handler (writes on the leader
 * only, reads within their bounds; sets the thread's durability level and
 * the reply's served-by keys). ST_OK or an error set in c. */
int sd_gate(struct sd_ctx *c);
/* An ST_ENOTLEADER error in c gets the leader's id and address. */
void sd_gate_leader(struct sd_ctx *c);
/* STATUS's keys 10-15 (role, epoch, node, leader, commit and applied LSN). */
void sd_status_cluster(struct sd_ctx *c);

/* ---- auth.c --------------------------------------------------------------- */

/* The tokens of an auth_file (lines NAME ROLE TOKEN; # comments). */
int sd_auth_load(const char *path, struct sd_tokens *t, struct st_err *err);
/* The role a request type needs (SD_AUTH_NONE: none). */
int sd_auth_needs(int type);
const char *sd_auth_role_name(int role);
/* Whether the parsed request c->m (bytes buf) may run: ST_OK, or ST_EPERM
 * with why (authentication off: always ST_OK). */
int sd_auth_check(struct sd_ctx *c, const uint8_t *buf, size_t len, char *why, size_t wlen);
int sd_h_auth_begin(struct sd_ctx *c);
int sd_h_auth(struct sd_ctx *c);

/* ---- scrub.c -------------------------------------------------------------- */

/* Start the scrub thread (sd_server_start); stop it and free its state
 * (the pass in progress ends at its next segment or chunk). */
int sd_scrub_start(sd_server *srv, struct st_err *err);
void sd_scrub_stop(sd_server *srv);
/* SCRUB: ask for a pass now. */
int sd_h_scrub(struct sd_ctx *c);
/* autoopt.c: start / stop the automatic compaction thread; STATUS keys 28-31. */
int sd_autoopt_start(sd_server *srv, struct st_err *err);
void sd_autoopt_stop(sd_server *srv);
void sd_status_autoopt(struct sd_ctx *c);
/* STATUS keys 16-26: the scrub and the damaged tables. */
void sd_status_scrub(struct sd_ctx *c);
int sd_h_cluster_status(struct sd_ctx *c);
int sd_h_cluster_transfer(struct sd_ctx *c);
int sd_h_cluster_member(struct sd_ctx *c);

/* ---- fields.c ------------------------------------------------------------ */
/*
 * Fields of the request body (PROTOCOL.md §3). Each returns ST_OK (present;
 * or absent and optional, *v keeping the caller's default) or an error
 * already set in c: ST_EPROTO for a mistyped key or an absent required one,
 * naming the key ("key 2 (predicate) of SCAN is a uint, expected str";
 * "SCAN needs key 0 (table)"), ST_EINVAL for a value out of range.
 */
int sd_opt_u64(struct sd_ctx *c, uint32_t key, const char *name, uint64_t *v);
int sd_need_u64(struct sd_ctx *c, uint32_t key, const char *name, uint64_t *v);
int sd_opt_i64(struct sd_ctx *c, uint32_t key, const char *name, int64_t *v);
int sd_opt_bool(struct sd_ctx *c, uint32_t key, const char *name, bool *v);
int sd_opt_strbuf(struct sd_ctx *c, uint32_t key, const char *name, char *buf, size_t len);
/* A string as a malloc'ed copy (*s stays NULL when absent). */
int sd_opt_strdup(struct sd_ctx *c, uint32_t key, const char *name, char **s);
/* The table name (key `key`, required, 1 to ST_NAME_MAX bytes) into c->table. */
int sd_need_table(struct sd_ctx *c, uint32_t key);
/* An optional chain hash (bin of ST_HASH_LEN bytes) into out; *present
 * tells whether the key was there. Another type or length is ST_EPROTO. */
int sd_opt_hash(struct sd_ctx *c, uint32_t key, const char *name, uint8_t out[ST_HASH_LEN],
		bool *present);
int sd_opt_array(struct sd_ctx *c, uint32_t key, const char *name, const msgpack_object **o);
int sd_need_array(struct sd_ctx *c, uint32_t key, const char *name, const msgpack_object **o);
int sd_opt_map(struct sd_ctx *c, uint32_t key, const char *name, const msgpack_object **o);
int sd_need_map(struct sd_ctx *c, uint32_t key, const char *name, const msgpack_object **o);
/* An `at` map; absent = latest (or ST_EPROTO when required). */
int sd_get_at(struct sd_ctx *c, uint32_t key, const char *name, bool required, struct st_at *at);
/* An array of strings as one malloc'ed block of pointers and bytes (*out
 * NULL, *n 0 when absent; free(*out)). */
int sd_get_strs(struct sd_ctx *c, uint32_t key, const char *name, char ***out, uint32_t *n);
/* Write options (§3.1); pred and app receive the strings w points to.
 * With source (LOAD_BEGIN), *source tells mode 2 (a merge source, no other
 * option allowed); without, mode 2 is refused. */
int sd_get_write_opts(struct sd_ctx *c, uint32_t key, struct st_write_opts *w, char *pred,
		      size_t plen, char *app, size_t alen, bool *source);
/* A batch (§3.2), required. b must be zeroed (or finished) by the caller
 * and needs wire_batch_fini whatever this returns; sb borrows from b. */
int sd_get_batch(struct sd_ctx *c, uint32_t key, const char *name, struct wire_batch *b,
		 struct st_batch *sb);

/* ---- rows.c -------------------------------------------------------------- */

int sd_h_write(struct sd_ctx *c);
int sd_h_load_begin(struct sd_ctx *c);
int sd_h_load_data(struct sd_ctx *c);
int sd_h_load_end(struct sd_ctx *c);   /* LOAD_COMMIT and LOAD_ABORT */
int sd_h_scan(struct sd_ctx *c);
int sd_h_scan_next(struct sd_ctx *c);  /* SCAN_NEXT and SCAN_CLOSE */
int sd_h_query(struct sd_ctx *c);

/* ---- session.c ----------------------------------------------------------- */

/* A new session of kind, busy (the caller holds it). NULL: out of memory. */
struct sd_session *sd_sess_new(sd_server *srv, int kind);
/* Take session id of kind for this request; NULL with the error set in c
 * (ST_ENOTFOUND: none such; ST_EINVAL: in use by another request). */
struct sd_session *sd_sess_get(struct sd_ctx *c, uint64_t id, int kind);
/* Give a held session back (it may expire from now on). */
void sd_sess_release(sd_server *srv, struct sd_session *x);
/* Unlink a held session and free it with its load or scan. */
void sd_sess_end(sd_server *srv, struct sd_session *x);
/* End every idle session older than the timeout (all idle ones with force);
 * at most once a second unless forced. */
void sd_sess_expire(sd_server *srv, bool force);

/* ---- dedup.c ------------------------------------------------------------- */

/* The entry for (client, seq): an existing one, or a new in-progress one
 * (*fresh). Called with srv->lock held. NULL when out of memory or when
 * all of the client's entries are in progress. */
struct sd_dedupe_entry *sd_dedupe_find(sd_server *srv, const uint8_t *id, uint64_t seq,
				       bool *fresh);
/* Free every remembered reply (at shutdown). */
void sd_dedupe_free(sd_server *srv);

#endif
