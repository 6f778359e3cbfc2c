/*
 * admin/cli/history.c — the commands of `strata` about a table's past and
 * its upkeep: history, restore, vacuum and verify (PROTOCOL.md §3, types
 * 50-53).
 *
 * Replies are read with the cli_reply_* getters: every key PROTOCOL.md lists
 * is required, except the chain-hash fields below.
 *
 * Chain hashes. A store chains its commits with BLAKE2b-256; a newer daemon
 * sends the hash at each commit (HISTORY key 12 LSN, 13 hash), its chain's
 * last LSN and hash (VERIFY keys 3 and 4) and, when VERIFY was given a head
 * hash (request key 0), the LSN it was found at (reply key 5). An older
 * daemon sends none of them: history then prints '-' in those columns and
 * verify leaves its chain line out. They are optional, but one that is sent
 * with another type is a malformed reply like any other. Only `verify --head` insists: a reply
 * that neither places the head nor reports a problem did not check it, and
 * verify fails rather than claim a check that did not happen.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin/cli/cli.h"

/* Hex digits of a chain hash that history shows without --full-hash, and
 * verify shows of the head it was given. */
#define SHORT_HASH_DIGITS 16

/* The parameters of a commit ("k=v k2=v2", empty values left out) into buf. */
static void commit_params(const msgpack_object *pm, char *buf, size_t cap)
{
	size_t n = 0;
	buf[0] = '\0';
	for (uint32_t j = 0; pm && pm->type == MSGPACK_OBJECT_MAP && j < pm->via.map.size; j++) {
		const msgpack_object_kv *kv = &pm->via.map.ptr[j];
		const char *k, *v;
		int klen, vlen;
		if (!cli_str(&kv->key, &k, &klen) || !cli_str(&kv->val, &v, &vlen) || vlen == 0 ||
		    n >= cap)
			continue;
		n += (size_t)snprintf(buf + n, cap - n, "%s%.*s=%.*s", n ? " " : "", klen, k, vlen, v);
	}
}

/* The fields of one commit of a HISTORY reply that history prints. */
struct commit {
	uint64_t version;                     /* key 0 */
	int64_t time;                         /* key 1: µs since the epoch */
	char op[64];                          /* key 2: operation */
	const msgpack_object *params;         /* key 3: a map (points into the reply) */
	uint64_t rows_added, rows_removed;    /* keys 6, 7 */
	uint64_t files_added, files_removed;  /* keys 8, 9 */
	uint64_t duration;                    /* key 11: µs */
	bool has_lsn;                         /* key 12 sent (a newer daemon) */
	uint64_t lsn;                         /* key 12, when has_lsn */
	const uint8_t *hash;                  /* key 13, NULL when not sent */
	uint64_t deleted, updated, dvs;       /* keys 14-16 (0 when not sent) */
};

/* Commit i (0-based) of a HISTORY reply, o, into *h. Returns 0 or 1 when it
 * is malformed (printed). */
static int read_commit(const msgpack_object *o, uint32_t i, struct commit *h)
{
	char part[32];
	snprintf(part, sizeof part, "commit %u", i + 1);
	const struct cli_reply r = {WIRE_HISTORY, part};
	memset(h, 0, sizeof *h);
	if (o->type != MSGPACK_OBJECT_MAP)
		return cli_fail_msg("the daemon's HISTORY reply is malformed: key %u (commits): "
				    "commit %u is a%s %s, expected map", WIRE_HISTORY_R_COMMITS,
				    i + 1,
				    o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ||
				    o->type == MSGPACK_OBJECT_ARRAY || o->type == MSGPACK_OBJECT_EXT
					    ? "n" : "",
				    wire_obj_type_name(o));
	int lsn_rc = 0;
	if (cli_reply_u64(&r, o, WIRE_COMMIT_VERSION, "version", CLI_REQUIRED, &h->version) < 0 ||
	    cli_reply_i64(&r, o, WIRE_COMMIT_TIME, "time_us", CLI_REQUIRED, &h->time) < 0 ||
	    cli_reply_strbuf(&r, o, WIRE_COMMIT_OPERATION, "operation", CLI_REQUIRED, h->op,
			     sizeof h->op) < 0 ||
	    cli_reply_map(&r, o, WIRE_COMMIT_PARAMETERS, "parameters", CLI_REQUIRED, &h->params) <
		    0 ||
	    cli_reply_u64(&r, o, WIRE_COMMIT_ROWS_ADDED, "rows added", CLI_REQUIRED,
			  &h->rows_added) < 0 ||
	    cli_reply_u64(&r, o, WIRE_COMMIT_ROWS_REMOVED, "rows removed", CLI_REQUIRED,
			  &h->rows_removed) < 0 ||
	    cli_reply_u64(&r, o, WIRE_COMMIT_FILES_ADDED, "files added", CLI_REQUIRED,
			  &h->files_added) < 0 ||
	    cli_reply_u64(&r, o, WIRE_COMMIT_FILES_REMOVED, "files removed", CLI_REQUIRED,
			  &h->files_removed) < 0 ||
	    cli_reply_u64(&r, o, WIRE_COMMIT_DURATION, "duration", CLI_REQUIRED, &h->duration) <
		    0 ||
	    (lsn_rc = cli_reply_u64(&r, o, WIRE_COMMIT_LSN, "LSN", CLI_OPTIONAL, &h->lsn)) < 0 ||
	    cli_reply_hash(&r, o, WIRE_COMMIT_HASH, "chain hash", CLI_OPTIONAL, &h->hash) < 0 ||
	    cli_reply_u64(&r, o, WIRE_COMMIT_ROWS_DELETED, "rows deleted", CLI_OPTIONAL,
			  &h->deleted) < 0 ||
	    cli_reply_u64(&r, o, WIRE_COMMIT_ROWS_UPDATED, "rows updated", CLI_OPTIONAL,
			  &h->updated) < 0 ||
	    cli_reply_u64(&r, o, WIRE_COMMIT_DVS_ADDED, "vectors", CLI_OPTIONAL, &h->dvs) < 0)
		return 1;
	h->has_lsn = lsn_rc == 1;
	return 0;
}

int cli_cmd_history(int argc, char **argv, struct cli_global *g)
{
	static const struct option longs[] = {{"limit", required_argument, NULL, 'l'},
					      {"full-hash", no_argument, NULL, 'H'},
					      CLI_COMMON_OPTS};
	uint64_t limit = 0;
	bool full = false;
	int status = 0, o;
	while ((o = cli_getopt(argc, argv, longs, g, &status)) > 0) {
		switch (o) {
		case 'l':
			if (!cli_parse_u64(optarg, &limit))
				return cli_usage_error("--limit takes a number of commits, not '%s'",
						       optarg);
			break;
		case 'H':
			full = true;
			break;
		}
	}
	if (o == CLI_OPT_STOP)
		return status;
	if (optind + 1 != argc)
		return cli_usage_error("give exactly one table name");
	sc_client *c = cli_connect(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk = sc_begin(c, WIRE_HISTORY, 2);
	wire_key_str(pk, WIRE_HISTORY_Q_TABLE, argv[optind]);
	wire_key_u64(pk, WIRE_HISTORY_Q_LIMIT, limit);
	const msgpack_object *b;
	if ((status = cli_call(c, &b)) != 0) {
		sc_close(c);
		return status;
	}
	cli_report_served(c);
	int hw = full ? 2 * CLI_HASH_LEN : SHORT_HASH_DIGITS; /* hash column width */
	struct cli_reply r = {WIRE_HISTORY, NULL};
	const msgpack_object *a = NULL;
	struct commit h;
	if (cli_reply_array(&r, b, WIRE_HISTORY_R_COMMITS, "commits", CLI_REQUIRED, &a) < 0) {
		status = 1;
		goto out;
	}
	/* Check every commit before printing any: a malformed reply prints
	 * only its error. */
	for (uint32_t i = 0; i < a->via.array.size; i++)
		if ((status = read_commit(&a->via.array.ptr[i], i, &h)))
			goto out;
	printf("%7s  %8s  %-26s  %-14s  %10s  %10s  %6s  %6s  %8s  %-*s  %s\n", "version", "lsn",
	       "time (UTC)", "operation", "+rows", "-rows", "+files", "-files", "ms", hw, "hash",
	       "parameters");
	for (uint32_t i = 0; i < a->via.array.size; i++) {
		char params[1024], lsns[24] = "-", hex[2 * CLI_HASH_LEN + 1] = "-";
		read_commit(&a->via.array.ptr[i], i, &h); /* checked above */
		if (h.has_lsn)
			snprintf(lsns, sizeof lsns, "%" PRIu64, h.lsn);
		if (h.hash)
			cli_hex(h.hash, hw, hex);
		commit_params(h.params, params, sizeof params);
		/* A DML commit's own metrics lead its parameters. */
		char dml[160] = "";
		if (h.deleted || h.updated || h.dvs)
			snprintf(dml, sizeof dml, "%" PRIu64 " deleted, %" PRIu64 " updated, %" PRIu64
				 " vectors; ", h.deleted, h.updated, h.dvs);
		printf("%7" PRIu64 "  %8s  ", h.version, lsns);
		cli_print_time(stdout, h.time);
		printf("%*s  %-14s  %10" PRIu64 "  %10" PRIu64 "  %6" PRIu64 "  %6" PRIu64
		       "  %8.1f  %-*s  %s%s\n",
		       h.time % 1000000 ? 0 : 7, "", h.op, h.rows_added, h.rows_removed,
		       h.files_added, h.files_removed, h.duration / 1000.0, hw, hex, dml, params);
	}
out:
	sc_close(c);
	return status;
}

int cli_cmd_restore(int argc, char **argv, struct cli_global *g)
{
	static const struct option longs[] = {{"version", required_argument, NULL, 'v'},
					      {"as-of", required_argument, NULL, 'a'},
					      CLI_COMMON_OPTS};
	const char *ver = NULL, *asof = NULL;
	int status = 0, kind, o;
	int64_t value;
	while ((o = cli_getopt(argc, argv, longs, g, &status)) > 0) {
		switch (o) {
		case 'v':
			ver = optarg;
			break;
		case 'a':
			asof = optarg;
			break;
		}
	}
	if (o == CLI_OPT_STOP)
		return status;
	if (optind + 1 != argc)
		return cli_usage_error("give exactly one table name");
	if (!ver && !asof)
		return cli_usage_error("give --version N or --as-of TIMESTAMP");
	if ((status = cli_parse_at(ver, asof, &kind, &value)))
		return status;
	sc_client *c = cli_connect(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk = sc_begin(c, WIRE_RESTORE, 2);
	wire_key_str(pk, WIRE_RESTORE_Q_TABLE, argv[optind]);
	cli_pack_at(pk, WIRE_RESTORE_Q_AT, kind, value);
	const msgpack_object *b;
	struct wire_error e;
	if (sc_call(c, &b, &e) != 0)
		status = cli_fail_wire(c, &e);
	else
		status = cli_print_result(WIRE_RESTORE, "restored", argv[optind], b, NULL);
	sc_close(c);
	return status;
}

int cli_cmd_vacuum(int argc, char **argv, struct cli_global *g)
{
	static const struct option longs[] = {{"retain", required_argument, NULL, 'r'},
					      {"dry-run", no_argument, NULL, 'n'},
					      {"force", no_argument, NULL, 'F'},
					      CLI_COMMON_OPTS};
	int64_t retain = -1;
	bool dry = false, force = false;
	int status = 0, o;
	while ((o = cli_getopt(argc, argv, longs, g, &status)) > 0) {
		switch (o) {
		case 'r':
			if (st_parse_duration(optarg, &retain) != ST_OK)
				return cli_usage_error("--retain takes a duration such as 7d, 12h, 30m "
						       "or 90s, not '%s'", optarg);
			break;
		case 'n':
			dry = true;
			break;
		case 'F':
			force = true;
			break;
		}
	}
	if (o == CLI_OPT_STOP)
		return status;
	if (optind + 1 != argc)
		return cli_usage_error("give exactly one table name");
	if (retain == 0 && !force)
		return cli_usage_error("--retain 0 deletes every removed file at once: add --force");
	sc_client *c = cli_connect(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk = sc_begin(c, WIRE_VACUUM, 3 + (retain >= 0));
	wire_key_str(pk, WIRE_VACUUM_Q_TABLE, argv[optind]);
	if (retain >= 0)
		wire_key_i64(pk, WIRE_VACUUM_Q_RETAIN, retain ? retain : 1);
	wire_key_bool(pk, WIRE_VACUUM_Q_DRY_RUN, dry);
	wire_key_bool(pk, WIRE_VACUUM_Q_FORCE, force);
	const msgpack_object *b;
	if ((status = cli_call(c, &b)) != 0) {
		sc_close(c);
		return status;
	}
	uint64_t files = 0, bytes = 0, pinned = 0, oldest = 0, pruned = 0, followers = 0;
	const msgpack_object *paths = NULL;
	const struct cli_reply r = {WIRE_VACUUM, NULL};
	if (cli_reply_u64(&r, b, WIRE_VACUUM_R_FILES, "files", CLI_REQUIRED, &files) < 0 ||
	    cli_reply_u64(&r, b, WIRE_VACUUM_R_BYTES, "bytes", CLI_REQUIRED, &bytes) < 0 ||
	    cli_reply_array(&r, b, WIRE_VACUUM_R_PATHS, "paths", CLI_REQUIRED, &paths) < 0 ||
	    cli_reply_u64(&r, b, WIRE_VACUUM_R_PINNED, "files kept for open readers", CLI_REQUIRED,
			  &pinned) < 0 ||
	    cli_reply_u64(&r, b, WIRE_VACUUM_R_OLDEST, "oldest retained version", CLI_REQUIRED,
			  &oldest) < 0 ||
	    cli_reply_u64(&r, b, WIRE_VACUUM_R_FOLLOWERS, "files kept for followers", CLI_OPTIONAL,
			  &followers) < 0 ||
	    cli_reply_u64(&r, b, WIRE_VACUUM_R_PRUNED, "commits pruned", CLI_REQUIRED,
			  &pruned) < 0) {
		sc_close(c);
		return 1;
	}
	for (uint32_t i = 0; dry && i < paths->via.array.size; i++) {
		const char *s;
		int len;
		if (cli_str(&paths->via.array.ptr[i], &s, &len))
			printf("would delete %.*s\n", len, s);
	}
	printf("%s %" PRIu64 " files (%" PRIu64 " bytes); %" PRIu64 " kept for open readers; %"
	       PRIu64 " old commits pruned; oldest readable version %" PRIu64 "\n",
	       dry ? "would delete" : "deleted", files, bytes, pinned, pruned, oldest);
	if (followers)
		printf("%" PRIu64 " files kept for followers that have not caught up\n", followers);
	sc_close(c);
	return 0;
}

/* Offline verification is stratad's (the store library is the daemon's
 * side of DESIGN.md §3; admin/ may not link it): run `stratad --verify DIR
 * [--head HASH]`, found next to this program or on PATH. Returns only on
 * failure. */
static int verify_offline(const char *dir, const char *head_hex, bool quick)
{
	char self[PATH_MAX], path[PATH_MAX + 16];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	const char *prog = "stratad";
	if (n > 0) {
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			snprintf(path, sizeof path, "%s/stratad", self);
			if (access(path, X_OK) == 0)
				prog = path;
		}
	}
	fflush(stdout);
	const char *av[8] = {"stratad", "--verify", dir};
	int ac = 3;
	if (quick)
		av[ac++] = "--quick";
	if (head_hex) {
		av[ac++] = "--head";
		av[ac++] = head_hex;
	}
	av[ac] = NULL;
	execvp(prog, (char *const *)av);
	return cli_fail_msg("cannot run %s%s for the offline check of %s: %s", prog,
			    prog == path ? "" : " (looked for it next to strata and on PATH)", dir,
			    strerror(errno));
}

int cli_cmd_verify(int argc, char **argv, struct cli_global *g)
{
	static const struct option longs[] = {{"data-dir", required_argument, NULL, 'D'},
					      {"head", required_argument, NULL, 'H'},
					      {"quick", no_argument, NULL, 'Q'},
					      CLI_COMMON_OPTS};
	const char *dir = NULL, *head_hex = NULL;
	bool quick = false;
	uint8_t head[CLI_HASH_LEN];
	int status = 0, o;
	while ((o = cli_getopt(argc, argv, longs, g, &status)) > 0) {
		switch (o) {
		case 'D':
			dir = optarg;
			break;
		case 'Q':
			quick = true;
			break;
		case 'H':
			head_hex = optarg;
			if (!cli_parse_hash(optarg, head))
				return cli_usage_error("--head takes a chain hash of exactly %d hex "
						       "digits (as `strata status` or `strata history "
						       "--full-hash` prints it), not '%s' (%s)",
						       2 * CLI_HASH_LEN, optarg,
						       strlen(optarg) == 2 * CLI_HASH_LEN
							       ? "a character is not a hex digit"
							       : "not 64 characters");
			break;
		}
	}
	if (o == CLI_OPT_STOP)
		return status;
	if (optind != argc)
		return cli_usage_error("takes no arguments");
	if (dir)
		return verify_offline(dir, head_hex, quick);
	sc_client *c = cli_connect(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk = sc_begin(c, WIRE_VERIFY, (head_hex ? 1 : 0) + (quick ? 1 : 0));
	if (quick) {
		msgpack_pack_uint32(pk, WIRE_VERIFY_Q_QUICK);
		msgpack_pack_true(pk);
	}
	if (head_hex) {
		msgpack_pack_uint32(pk, WIRE_VERIFY_Q_HEAD);
		msgpack_pack_bin(pk, CLI_HASH_LEN);
		msgpack_pack_bin_body(pk, head, CLI_HASH_LEN);
	}
	const msgpack_object *b;
	if ((status = cli_call(c, &b)) != 0) {
		sc_close(c);
		return status;
	}
	uint64_t segs = 0, commits = 0, last_lsn = 0, head_lsn = 0, records = 0, orphans = 0;
	bool skipped = false;
	const msgpack_object *p = NULL;
	const uint8_t *last = NULL;
	const struct cli_reply r = {WIRE_VERIFY, NULL};
	int head_rc = 0;
	if (cli_reply_u64(&r, b, WIRE_VERIFY_R_SEGMENTS, "segments checked", CLI_REQUIRED,
			  &segs) < 0 ||
	    cli_reply_u64(&r, b, WIRE_VERIFY_R_COMMITS, "commits checked", CLI_REQUIRED,
			  &commits) < 0 ||
	    cli_reply_array(&r, b, WIRE_VERIFY_R_PROBLEMS, "problems", CLI_REQUIRED, &p) < 0 ||
	    cli_reply_u64(&r, b, WIRE_VERIFY_R_LAST_LSN, "last LSN", CLI_OPTIONAL, &last_lsn) < 0 ||
	    cli_reply_hash(&r, b, WIRE_VERIFY_R_LAST_HASH, "chain hash", CLI_OPTIONAL, &last) < 0 ||
	    (head_rc = cli_reply_u64(&r, b, WIRE_VERIFY_R_HEAD_LSN, "head LSN", CLI_OPTIONAL,
				     &head_lsn)) < 0 ||
	    cli_reply_u64(&r, b, WIRE_VERIFY_R_RECORDS, "records", CLI_OPTIONAL, &records) < 0 ||
	    cli_reply_u64(&r, b, WIRE_VERIFY_R_ORPHANS, "orphans", CLI_OPTIONAL, &orphans) < 0 ||
	    cli_reply_bool(&r, b, WIRE_VERIFY_R_PAGES_SKIPPED, "page walk skipped", CLI_OPTIONAL,
			   &skipped) < 0) {
		sc_close(c);
		return 1;
	}
	uint32_t np = p->via.array.size;
	for (uint32_t i = 0; i < np; i++) {
		const char *s;
		int len;
		if (cli_str(&p->via.array.ptr[i], &s, &len))
			printf("DAMAGED: %.*s\n", len, s);
		else
			printf("DAMAGED: (problem %u is not text)\n", i + 1);
	}
	char hex[2 * CLI_HASH_LEN + 1];
	if (last) {
		cli_hex(last, 2 * CLI_HASH_LEN, hex);
		printf("chain: LSN %" PRIu64 " %s\n", last_lsn, hex);
	}
	if (skipped)
		printf("note: LMDB's pages were not walked: the daemon's writes reused the snapshot's "
		       "meta page during the check; run it again, or offline (--data-dir, daemon "
		       "stopped)\n");
	/* LSNs start at 1: the store's head_lsn 0 means "not found". */
	bool head_found = head_hex && head_rc == 1 && head_lsn > 0;
	if (head_found) {
		cli_hex(head, SHORT_HASH_DIGITS, hex);
		printf("head %s found at LSN %" PRIu64 "\n", hex, head_lsn);
	}
	printf("%s: %" PRIu64 " records, %" PRIu64 " segments and %" PRIu64 " commits checked, "
	       "%" PRIu64 " orphan files%s, %u problem%s\n", np ? "FAILED" : "ok", records, segs,
	       commits, orphans, quick ? " (quick: chains and segments only)" : "", np,
	       np == 1 ? "" : "s");
	if (np)
		status = 1;
	else if (head_hex && !head_found) /* not found is a problem: this daemon did not look */
		status = cli_fail_msg("--head was not checked: the reply of %s has no head LSN and "
				      "no problem (a stratad from before chain hashes?)", sc_host(c));
	sc_close(c);
	return status;
}
