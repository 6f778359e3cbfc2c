/*
 * admin/cli/cli.h — what the command modules of `strata` share: the
 * command table's type, option parsing, error output, the connection,
 * and readers for the reply fields several commands print.
 *
 * The commands live in one file per group: tables.c (create, tables,
 * describe, drop, alter), data.c (load, scan, query), history.c (history,
 * restore, vacuum, verify), status.c (status, ping, inspect); cli.c holds
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
};

/* One entry of the command table (admin/strata_main.c). */
struct cli_command {
	const char *name;                                        /* "load" */
	int (*fn)(int argc, char **argv, struct cli_global *g);  /* argv[0] is the name */
	const char *usage; /* arguments after the command name */
	const char *help;  /* what it does, and its options */
};

/* The command being run: its name prefixes every message. Set by main
 * before it calls the command. */
extern const struct cli_command *cli_current;

/* ---- options -------------------------------------------------------------- */

/* Every command's option table ends with these. */
enum { CLI_OPT_HOST = 1000, CLI_OPT_TIMEOUT };
#define CLI_COMMON_OPTS                                                                    \
	{"host", required_argument, NULL, CLI_OPT_HOST},                                   \
	{"timeout", required_argument, NULL, CLI_OPT_TIMEOUT},                             \
	{"help", no_argument, NULL, 'h'},                                                  \
	{NULL, 0, NULL, 0}

/* What cli_getopt returns besides a command's own option. */
enum { CLI_OPT_END = 0, CLI_OPT_STOP = -1 };

/*
 * The next of the command's own options (the val of its entry in longs,
 * > 0; optarg as getopt_long sets it). The common options (--host,
 * --timeout, --help) are handled here. Returns CLI_OPT_END when the options
 * are over (optind is the first operand), or CLI_OPT_STOP when the command
 * must return *status now: 0 after --help was printed, CLI_EXIT_USAGE after
 * a bad option was reported. Callers loop:
 *     while ((o = cli_getopt(argc, argv, longs, g, &status)) > 0) switch (o) ...
 *     if (o == CLI_OPT_STOP) return status;
 */
int cli_getopt(int argc, char **argv, const struct option *longs, struct cli_global *g,
	       int *status);
/* --timeout's value: seconds, 0 < s <= 86400, into milliseconds (>= 1). */
bool cli_parse_timeout(const char *s, int *ms);
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

/* Connect (and HELLO) per g; NULL with the error printed and *status = 1. */
sc_client *cli_connect(const struct cli_global *g, int *status);
/* Connect and send a request whose body is just the table name (table NULL:
 * an empty body). Returns 0 with the client in *cp and the reply's body in
 * *body (valid until the next request on *cp; close *cp), or 1 with the error
 * printed and nothing to close. */
int cli_simple_call(const struct cli_global *g, int type, const char *table, sc_client **cp,
		    const msgpack_object **body);
/* Pack key and an `at` map {0: kind, 1: value}. */
void cli_pack_at(msgpack_packer *pk, uint32_t key, int kind, int64_t value);

/* ---- reading replies ---------------------------------------------------------
 * Replies are checked before they are read: a field of another type than
 * PROTOCOL.md says is treated as absent, never read as that type. */

/* A string object: *s (never NULL; "" when empty) and *len. False if o is
 * NULL or not a string. */
bool cli_str(const msgpack_object *o, const char **s, int *len);
/* A 32-byte chain hash at key of map, pointing into the reply; NULL when
 * absent or not a bin of CLI_HASH_LEN bytes (an older daemon sends none). */
const uint8_t *cli_get_hash(const msgpack_object *map, uint32_t key);
/* The first ndigits (even, <= 64) hex digits of a hash into out (ndigits + 1 bytes). */
void cli_hex(const uint8_t *hash, int ndigits, char *out);
/* One column of a DESCRIBE reply, [name, type id, nullable, field id], into
 * f. False when it is not of that form, or its name or type is not valid. */
bool cli_column(const msgpack_object *o, struct st_field *f);

/* ---- output ---------------------------------------------------------------- */

/* A timestamp (µs since the epoch) as YYYY-MM-DD HH:MM:SS[.ffffff] (UTC). */
void cli_print_time(FILE *out, int64_t us);
/* A commit result (PROTOCOL.md §3) on stdout:
 * "table 't' version 3 (lsn 17): loaded, 1000 rows". */
void cli_print_result(const char *what, const char *table, const msgpack_object *b);

/* ---- the commands --------------------------------------------------------- */

/* tables.c */
int cli_cmd_create(int argc, char **argv, struct cli_global *g);
int cli_cmd_tables(int argc, char **argv, struct cli_global *g);
int cli_cmd_describe(int argc, char **argv, struct cli_global *g);
int cli_cmd_drop(int argc, char **argv, struct cli_global *g);
int cli_cmd_alter(int argc, char **argv, struct cli_global *g);
/* data.c */
int cli_cmd_load(int argc, char **argv, struct cli_global *g);
int cli_cmd_scan(int argc, char **argv, struct cli_global *g);
int cli_cmd_query(int argc, char **argv, struct cli_global *g);
/* history.c */
int cli_cmd_history(int argc, char **argv, struct cli_global *g);
int cli_cmd_restore(int argc, char **argv, struct cli_global *g);
int cli_cmd_vacuum(int argc, char **argv, struct cli_global *g);
int cli_cmd_verify(int argc, char **argv, struct cli_global *g);
/* status.c */
int cli_cmd_status(int argc, char **argv, struct cli_global *g);
int cli_cmd_ping(int argc, char **argv, struct cli_global *g);
int cli_cmd_inspect(int argc, char **argv, struct cli_global *g);

#endif
