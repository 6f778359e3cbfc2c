/*
 * admin/cli/cli.h — what the command modules of `strata` share: the
 * command table's type, option parsing, error output, the connection,
 * and readers for the reply fields several commands print.
 *
 * The commands live in one file per group: tables.c (create, tables,
 * describe, drop, alter), data.c (load, scan, query), history.c (history,
 * restore, vacuum, verify), status.c (status, ping, inspect), cluster.c
 * (cluster status, cluster transfer); cli.c holds
 * what they share. admin/strata_main.c owns the command table (names,
 * usage, help), the global options and the dispatch.
 *
 * Exit status of every command: 0 success, 1 error (the daemon's or a local
 * one, printed to stderr as "strata COMMAND: message"), CLI_EXIT_USAGE (2)
 * for a usage error. The process runs one command on one thread; the
 * globals here (cli_current, getopt's) are that command's.
 */
#ifndef STRATA_ADMIN_CLI_H
#define STRATA_ADMIN_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "admin/client.h"

#define CLI_EXIT_USAGE 2
/* Chain hashes (BLAKE2b-256 of a store's commit chain) are 32 bytes. */
#define CLI_HASH_LEN 32

/* Options given before or with the command. */
struct cli_global {
	const char *host; /* --host; NULL: $STRATA_HOST, else SC_DEFAULT_HOST */
	int timeout_ms;   /* --timeout; 0: SC_DEFAULT_TIMEOUT_MS */
	struct sc_env env; /* --durability, --min-version, --max-staleness, --consistency */
	bool verbose;      /* --verbose: where a read was served, on stderr */
	const char *token_file; /* --token-file; NULL: $STRATA_TOKEN (NAME:TOKEN), else none */
};

/* Which cluster options a command takes (struct cli_command.opts):
 * cli_getopt adds them to the command's own and cli_cmd_usage lists them. */
enum {
	CLI_WRITES = 1, /* --durability local|quorum|all */
	CLI_READS = 2,  /* --min-version N, --max-staleness DURATION, --consistency, --verbose */
};

/* One entry of the command table (admin/strata_main.c). */
struct cli_command {
	const char *name;                                        /* "load" */
	int (*fn)(int argc, char **argv, struct cli_global *g);  /* argv[0] is the name */
	const char *usage; /* arguments after the command name */
	const char *help;  /* what it does, and its options */
	unsigned opts;     /* CLI_WRITES, CLI_READS: the cluster options it takes */
};

/* The command being run: its name prefixes every message. Set by main
 * before it calls the command. */
extern const struct cli_command *cli_current;

/* ---- options -------------------------------------------------------------- */

/* Every command's option table ends with these. */
enum {
	CLI_OPT_HOST = 1000,
	CLI_OPT_TIMEOUT,
	CLI_OPT_DURABILITY,    /* CLI_WRITES */
	CLI_OPT_MIN_VERSION,   /* CLI_READS ... */
	CLI_OPT_MAX_STALENESS,
	CLI_OPT_CONSISTENCY,
	CLI_OPT_VERBOSE,
	CLI_OPT_TOKEN_FILE,
};
#define CLI_COMMON_OPTS                                                                    \
	{"host", required_argument, NULL, CLI_OPT_HOST},                                   \
	{"timeout", required_argument, NULL, CLI_OPT_TIMEOUT},                             \
	{"token-file", required_argument, NULL, CLI_OPT_TOKEN_FILE},                       \
	{"help", no_argument, NULL, 'h'},                                                  \
	{NULL, 0, NULL, 0}

/* What cli_getopt returns besides a command's own option. */
enum { CLI_OPT_END = 0, CLI_OPT_STOP = -1 };

/*
 * The next of the command's own options (the val of its entry in longs,
 * > 0; optarg as getopt_long sets it). The common options (--host,
 * --timeout, --help) and the cluster options the command's opts name
 * (into g->env, g->verbose) are handled here. Returns CLI_OPT_END when the options
 * are over (optind is the first operand), or CLI_OPT_STOP when the command
 * must return *status now: 0 after --help was printed, CLI_EXIT_USAGE after
 * a bad option was reported. Callers loop:
 *     while ((o = cli_getopt(argc, argv, longs, g, &status)) > 0) switch (o) ...
 *     if (o == CLI_OPT_STOP) return status;
 */
int cli_getopt(int argc, char **argv, const struct option *longs, struct cli_global *g,
	       int *status);
/* cli_getopt for a command that has only the common options: CLI_OPT_END,
 * or CLI_OPT_STOP when the command must return *status now. */
int cli_no_options(int argc, char **argv, struct cli_global *g, int *status);
/* --timeout's value: seconds, 0 < s <= 86400, into milliseconds (>= 1). */
bool cli_parse_timeout(const char *s, int *ms);
/* A duration N (seconds), Nms, Ns, Nm or Nh into milliseconds. */
bool cli_parse_ms(const char *s, uint64_t *ms);
/* A decimal unsigned integer, the whole string. */
bool cli_parse_u64(const char *s, uint64_t *v);
/* --version N / --as-of TS into an `at` (PROTOCOL.md §3): kind 0 latest (neither
 * given), 1 version, 2 timestamp. Returns 0 or a usage error's status. */
int cli_parse_at(const char *version, const char *asof, int *kind, int64_t *value);
/* Exactly 2 * CLI_HASH_LEN hex digits (either case) into out. */
bool cli_parse_hash(const char *hex, uint8_t out[CLI_HASH_LEN]);

/* ---- messages ------------------------------------------------------------- */

/* The command's usage and help (for --help). */
void cli_cmd_usage(FILE *out);
/* "strata CMD: message" and a pointer to --help on stderr; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "strata CMD: message" on stderr; returns 1. */
int cli_fail_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A failed request: the daemon's error with where it happened, or the
 * client's own; a timeout also names the address waited on (c may be NULL).
 * Returns 1. */
int cli_fail_wire(const sc_client *c, const struct wire_error *e);

/* ---- the daemon ------------------------------------------------------------- */

/* Connect (and HELLO) per g, with g's cluster options set on the client;
 * NULL with the error printed and *status = 1. */
sc_client *cli_connect(const struct cli_global *g, int *status);
/* sc_call; on failure the error is printed and its exit status returned
 * (c stays open: the caller closes it). */
int cli_call(sc_client *c, const msgpack_object **body);
/* Authenticate c with g's token (--token-file, else $STRATA_TOKEN), if any:
 * 0, or the error (printed unless quiet). */
int cli_auth(sc_client *c, const struct cli_global *g, bool quiet);
/* Connect and send a request whose body is just the table name (table NULL:
 * an empty body). Returns 0 with the client in *cp and the reply's body in
 * *body (valid until the next request on *cp; close *cp), or 1 with the error
 * printed and nothing to close. */
int cli_simple_call(const struct cli_global *g, int type, const char *table, sc_client **cp,
		    const msgpack_object **body);
/* With --verbose, after a read: "strata CMD: served by node N at LSN L,
 * staleness S ms" on stderr when the reply said (a cluster's reads);
 * nothing otherwise. stdout is never touched. */
void cli_report_served(const sc_client *c);
/* Pack key and an `at` map {0: kind, 1: value}. */
void cli_pack_at(msgpack_packer *pk, uint32_t key, int kind, int64_t value);

/* ---- reading replies ---------------------------------------------------------
 * Every key of a reply is read through the cli_reply_* getters, which check
 * its type against PROTOCOL.md. A required key that is absent, or any key
 * present with another type, is a malformed reply: the getter prints
 *   strata CMD: the daemon's HISTORY reply is malformed: key 0 (commits) is a str, expected array
 * (with "PART: " before "key" when a nested map is read) and returns -1; the
 * command then exits 1. Otherwise they return 1 (present, *v set) or 0
 * (absent and optional: *v untouched, the caller's default stays).
 * Every key PROTOCOL.md lists for a reply is required, except the chain-hash
 * fields newer daemons add (HISTORY commit keys 12 and 13, STATUS key 9,
 * VERIFY keys 3, 4 and 5), which an older daemon does not send.
 * Strings and bins point into the reply (valid until the next request). */

/* Whether a key must be in the reply. */
enum cli_need {
	CLI_OPTIONAL = 0, /* absent: the caller's default (an older daemon may not send it) */
	CLI_REQUIRED = 1, /* absent: a malformed reply */
};

/* The reply being read, for the message about a malformed one. */
struct cli_reply {
	int type;         /* the request type it answers (WIRE_HISTORY): names the reply */
	const char *part; /* NULL, or the nested map read ("commit 3") */
};

int cli_reply_u64(const struct cli_reply *r, const msgpack_object *map, uint32_t key,
		  const char *name, enum cli_need need, uint64_t *v);
int cli_reply_i64(const struct cli_reply *r, const msgpack_object *map, uint32_t key,
		  const char *name, enum cli_need need, int64_t *v);
int cli_reply_bool(const struct cli_reply *r, const msgpack_object *map, uint32_t key,
		   const char *name, enum cli_need need, bool *v);
/* A string copied into buf (NUL-terminated); one longer than len - 1 bytes
 * or holding a NUL byte is malformed too. */
int cli_reply_strbuf(const struct cli_reply *r, const msgpack_object *map, uint32_t key,
		     const char *name, enum cli_need need, char *buf, size_t len);
int cli_reply_map(const struct cli_reply *r, const msgpack_object *map, uint32_t key,
		  const char *name, enum cli_need need, const msgpack_object **o);
int cli_reply_array(const struct cli_reply *r, const msgpack_object *map, uint32_t key,
		    const char *name, enum cli_need need, const msgpack_object **o);
/* A 32-byte chain hash (a bin of CLI_HASH_LEN bytes; another length is
 * malformed). */
int cli_reply_hash(const struct cli_reply *r, const msgpack_object *map, uint32_t key,
		   const char *name, enum cli_need need, const uint8_t **hash);

/* A string object: *s (never NULL; "" when empty) and *len. False if o is
 * NULL or not a string (for the elements of arrays, which commands print
 * or skip one by one). */
bool cli_str(const msgpack_object *o, const char **s, int *len);
/* The first ndigits (even, <= 64) hex digits of a hash into out (ndigits + 1 bytes). */
void cli_hex(const uint8_t *hash, int ndigits, char *out);
/* One column of a DESCRIBE reply, [name, type id, nullable, field id], into
 * f. False when it is not of that form, or its name or type is not valid. */
bool cli_column(const msgpack_object *o, struct st_field *f);

/* ---- output ---------------------------------------------------------------- */

/* A timestamp (µs since the epoch) as YYYY-MM-DD HH:MM:SS[.ffffff] (UTC). */
void cli_print_time(FILE *out, int64_t us);
/* A commit result (PROTOCOL.md §3), the reply b to a request of type type,
 * on stdout: "table 't' version 3 (lsn 17): loaded, 1000 rows". The rows are
 * added to *rows when rows is not NULL. Returns 0, or 1 when the result is
 * malformed (printed). */
int cli_print_result(int type, const char *what, const char *table, const msgpack_object *b,
		     uint64_t *rows);

/* ---- the commands --------------------------------------------------------- */

/* tables.c */
int cli_cmd_create(int argc, char **argv, struct cli_global *g);
int cli_cmd_tables(int argc, char **argv, struct cli_global *g);
int cli_cmd_describe(int argc, char **argv, struct cli_global *g);
int cli_cmd_drop(int argc, char **argv, struct cli_global *g);
int cli_cmd_alter(int argc, char **argv, struct cli_global *g);
/* data.c */
int cli_cmd_load(int argc, char **argv, struct cli_global *g);
/* Stream the file at path (format "csv", "jsonl", or NULL: by its name),
 * read with table's columns, into a merge-source load on c (PROTOCOL.md
 * §4): *load_id. Returns 0 or 1 (printed; nothing left open). */
int cli_merge_source(sc_client *c, const char *table, const char *path, const char *format,
		     uint64_t *load_id);
int cli_cmd_scan(int argc, char **argv, struct cli_global *g);
int cli_cmd_changes(int argc, char **argv, struct cli_global *g);
/* dml.c */
int cli_cmd_delete(int argc, char **argv, struct cli_global *g);
int cli_cmd_update(int argc, char **argv, struct cli_global *g);
int cli_cmd_optimize(int argc, char **argv, struct cli_global *g);
int cli_cmd_merge(int argc, char **argv, struct cli_global *g);
/* load --mode upsert: merge FILE into table on its declared key (dml.c). */
int cli_upsert(const char *table, const char *file, const char *format, const char *app_id,
	       const char *app_version, struct cli_global *g);
int cli_cmd_query(int argc, char **argv, struct cli_global *g);
/* history.c */
int cli_cmd_history(int argc, char **argv, struct cli_global *g);
int cli_cmd_restore(int argc, char **argv, struct cli_global *g);
int cli_cmd_vacuum(int argc, char **argv, struct cli_global *g);
int cli_cmd_verify(int argc, char **argv, struct cli_global *g);
/* cluster.c */
int cli_cmd_cluster(int argc, char **argv, struct cli_global *g);
/* status.c */
int cli_cmd_status(int argc, char **argv, struct cli_global *g);
int cli_cmd_scrub(int argc, char **argv, struct cli_global *g);
int cli_cmd_backup(int argc, char **argv, struct cli_global *g);
int cli_cmd_ping(int argc, char **argv, struct cli_global *g);
int cli_cmd_inspect(int argc, char **argv, struct cli_global *g);

#endif
