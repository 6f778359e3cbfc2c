/*
 * admin/cli/dml.c — the row-level commands of `strata`: delete, update
 * merge and optimize (PROTOCOL.md §3 types 25, 26, 27 and 57). A merge whose
 * source is a file streams it into a merge-source load (PROTOCOL.md §4,
 * read with the target's columns) and names that load in the MERGE: the
 * source is never a table, so nothing of it is committed or left behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "admin/cli/cli.h"

/* delete TABLE --where PRED, update TABLE --set LIST --where PRED. */
static int dml(int argc, char **argv, struct cli_global *g, bool upd)
{
	static const struct option longs[] = {{"where", required_argument, NULL, 'w'},
					      {"set", required_argument, NULL, 's'},
					      {"app-id", required_argument, NULL, 'a'},
					      {"app-version", required_argument, NULL, 'A'},
					      CLI_COMMON_OPTS};
	const char *where = NULL, *set = NULL, *app = NULL, *appver = NULL;
	uint64_t version = 0;
	int status = 0, o;
	while ((o = cli_getopt(argc, argv, longs, g, &status)) > 0) {
		switch (o) {
		case 'w':
			where = optarg;
			break;
		case 's':
			set = optarg;
			break;
		case 'a':
			app = optarg;
			break;
		case 'A':
			appver = optarg;
			break;
		}
	}
	if (o == CLI_OPT_STOP)
		return status;
	if (optind + 1 != argc)
		return cli_usage_error("give exactly one table name");
	if (!where || !*where)
		return cli_usage_error("give --where PRED: the rows to %s (--where true for all)",
				       upd ? "update" : "delete");
	if (upd != (set != NULL))
		return cli_usage_error(upd ? "give --set \"col = EXPR, ...\": the new values"
				       : "--set goes with update, not delete");
	if (!app != !appver)
		return cli_usage_error("--app-id and --app-version go together");
	if (appver && !cli_parse_u64(appver, &version))
		return cli_usage_error("--app-version takes a number, not '%s'", appver);
	const char *table = argv[optind];
	sc_client *c = cli_connect(g, &status);
	if (!c)
		return status;
	uint32_t k = upd ? 1 : 0; /* UPDATE's keys: DELETE's, one up past the table */
	msgpack_packer *pk = sc_begin(c, upd ? WIRE_UPDATE : WIRE_DELETE, 2 + k + (app ? 2 : 0));
	wire_key_str(pk, WIRE_DELETE_Q_TABLE, table);
	if (upd)
		wire_key_str(pk, WIRE_UPDATE_Q_SET, set);
	wire_key_str(pk, WIRE_DELETE_Q_PREDICATE + k, where);
	if (app) {
		wire_key_str(pk, WIRE_DELETE_Q_APP_ID + k, app);
		wire_key_u64(pk, WIRE_DELETE_Q_APP_VERSION + k, version);
	}
	const msgpack_object *b;
	struct wire_error e;
	if (sc_call(c, &b, &e) != 0) {
		status = cli_fail_wire(c, &e);
		sc_close(c);
		return status;
	}
	const struct cli_reply r = {upd ? WIRE_UPDATE : WIRE_DELETE, NULL};
	uint64_t v = 0, lsn = 0, rows = 0, skipped = 0, read = 0, removed = 0, dvs = 0;
	bool noop = false;
	if (cli_reply_u64(&r, b, WIRE_RESULT_VERSION, "version", CLI_REQUIRED, &v) < 0 ||
	    cli_reply_u64(&r, b, WIRE_RESULT_LSN, "lsn", CLI_REQUIRED, &lsn) < 0 ||
	    cli_reply_bool(&r, b, WIRE_RESULT_NOOP, "noop", CLI_REQUIRED, &noop) < 0 ||
	    cli_reply_u64(&r, b, WIRE_DML_R_ROWS, "rows", CLI_REQUIRED, &rows) < 0 ||
	    cli_reply_u64(&r, b, WIRE_DML_R_SKIPPED, "files skipped", CLI_OPTIONAL, &skipped) < 0 ||
	    cli_reply_u64(&r, b, WIRE_DML_R_READ, "files read", CLI_OPTIONAL, &read) < 0 ||
	    cli_reply_u64(&r, b, WIRE_DML_R_REMOVED, "files removed", CLI_OPTIONAL, &removed) < 0 ||
	    cli_reply_u64(&r, b, WIRE_DML_R_DVS, "vectors", CLI_OPTIONAL, &dvs) < 0) {
		sc_close(c);
		return 1;
	}
	const char *verb = upd ? "updated" : "deleted";
	if (noop && app)
		printf("table '%s': already done earlier with this app id and version: nothing "
		       "%s (table at version %" PRIu64 ")\n", table, verb, v);
	else if (noop)
		printf("table '%s': no row matches: nothing %s (table at version %" PRIu64 ")\n",
		       table, verb, v);
	else
		printf("table '%s' version %" PRIu64 " (lsn %" PRIu64 "): %s %" PRIu64
		       " rows (files: %" PRIu64 " skipped by statistics, %" PRIu64 " read, %" PRIu64
		       " removed whole, %" PRIu64 " given a deletion vector)\n",
		       table, v, lsn, verb, rows, skipped, read, removed, dvs);
	sc_close(c);
	return 0;
}

int cli_cmd_delete(int argc, char **argv, struct cli_global *g)
{
	return dml(argc, argv, g, false);
}

int cli_cmd_update(int argc, char **argv, struct cli_global *g)
{
	return dml(argc, argv, g, true);
}

int cli_cmd_optimize(int argc, char **argv, struct cli_global *g)
{
	static const struct option longs[] = {{"where", required_argument, NULL, 'w'},
					      {"target-file-size", required_argument, NULL, 't'},
					      {"cluster-by", required_argument, NULL, 'c'},
					      CLI_COMMON_OPTS};
	const char *where = NULL, *cluster = NULL;
	uint64_t target = 0;
	int status = 0, o;
	while ((o = cli_getopt(argc, argv, longs, g, &status)) > 0) {
		switch (o) {
		case 'w':
			where = optarg;
			break;
		case 't':
			if (st_parse_size(optarg, &target) != ST_OK || target == 0)
				return cli_usage_error("--target-file-size takes a size such as 64MB, "
						       "512KB or 1GB, not '%s'", optarg);
			break;
		case 'c':
			cluster = optarg;
			break;
		}
	}
	if (o == CLI_OPT_STOP)
		return status;
	if (optind + 1 != argc)
		return cli_usage_error("give exactly one table name");
	const char *table = argv[optind];
	sc_client *c = cli_connect(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk = sc_begin(c, WIRE_OPTIMIZE, 1 + !!where + !!target + !!cluster);
	wire_key_str(pk, WIRE_OPTIMIZE_Q_TABLE, table);
	if (where)
		wire_key_str(pk, WIRE_OPTIMIZE_Q_WHERE, where);
	if (target)
		wire_key_u64(pk, WIRE_OPTIMIZE_Q_TARGET, target);
	if (cluster)
		wire_key_str(pk, WIRE_OPTIMIZE_Q_CLUSTER_BY, cluster);
	const msgpack_object *b;
	struct wire_error e;
	if (sc_call(c, &b, &e) != 0) {
		status = cli_fail_wire(c, &e);
		sc_close(c);
		return status;
	}
	const struct cli_reply r = {WIRE_OPTIMIZE, NULL};
	uint64_t v = 0, lsn = 0, frm = 0, fadd = 0, brm = 0, badd = 0, rows = 0, purged = 0;
	bool noop = false;
	if (cli_reply_u64(&r, b, WIRE_RESULT_VERSION, "version", CLI_REQUIRED, &v) < 0 ||
	    cli_reply_u64(&r, b, WIRE_RESULT_LSN, "lsn", CLI_REQUIRED, &lsn) < 0 ||
	    cli_reply_bool(&r, b, WIRE_RESULT_NOOP, "noop", CLI_REQUIRED, &noop) < 0 ||
	    cli_reply_u64(&r, b, WIRE_OPTIMIZE_R_FILES_REMOVED, "files removed", CLI_OPTIONAL, &frm) < 0 ||
	    cli_reply_u64(&r, b, WIRE_OPTIMIZE_R_FILES_ADDED, "files added", CLI_OPTIONAL, &fadd) < 0 ||
	    cli_reply_u64(&r, b, WIRE_OPTIMIZE_R_BYTES_REMOVED, "bytes removed", CLI_OPTIONAL, &brm) < 0 ||
	    cli_reply_u64(&r, b, WIRE_OPTIMIZE_R_BYTES_ADDED, "bytes added", CLI_OPTIONAL, &badd) < 0 ||
	    cli_reply_u64(&r, b, WIRE_OPTIMIZE_R_ROWS, "rows", CLI_OPTIONAL, &rows) < 0 ||
	    cli_reply_u64(&r, b, WIRE_OPTIMIZE_R_PURGED, "rows purged", CLI_OPTIONAL, &purged) < 0) {
		sc_close(c);
		return 1;
	}
	if (noop)
		printf("table '%s': already optimized: nothing to do (table at version %" PRIu64 ")\n",
		       table, v);
	else
		printf("table '%s' version %" PRIu64 " (lsn %" PRIu64 "): optimized %" PRIu64
		       " files (%" PRIu64 " bytes) into %" PRIu64 " (%" PRIu64 " bytes), %" PRIu64
		       " rows rewritten, %" PRIu64 " deleted rows purged\n",
		       table, v, lsn, frm, brm, fadd, badd, rows, purged);
	sc_close(c);
	return 0;
}

/* A MERGE clause that takes one action or "ignore": *out = 1 for the action,
 * 0 for ignore; otherwise a usage error (its status returned). */
static int action_or_ignore(const char *flag, const char *action, int *out)
{
	if (!strcmp(optarg, action))
		*out = 1;
	else if (strcmp(optarg, "ignore"))
		return cli_usage_error("--%s takes %s or ignore, not '%s'", flag, action, optarg);
	return 0;
}

int cli_cmd_merge(int argc, char **argv, struct cli_global *g)
{
	static const struct option longs[] = {{"on", required_argument, NULL, 'o'},
					      {"when-matched", required_argument, NULL, 'm'},
					      {"when-not-matched", required_argument, NULL, 'n'},
					      {"when-not-matched-by-source", required_argument, NULL, 'b'},
					      {"format", required_argument, NULL, 'f'},
					      {"app-id", required_argument, NULL, 'a'},
					      {"app-version", required_argument, NULL, 'A'},
					      CLI_COMMON_OPTS};
	const char *on = NULL, *format = NULL, *app = NULL, *appver = NULL, *set = NULL;
	/* PROTOCOL.md MERGE keys 3-5: matched 0 ignore, 1 update-all, 2 delete;
	 * not matched 0 ignore, 1 insert-all; not matched by source 0 ignore,
	 * 1 delete. */
	int matched = 0, nm = 0, bs = 0, status = 0, o, rc;
	bool any = false;
	uint64_t version = 0;
	while ((o = cli_getopt(argc, argv, longs, g, &status)) > 0) {
		switch (o) {
		case 'o':
			on = optarg;
			break;
		case 'm':
			any = true;
			if (!strcmp(optarg, "update-all"))
				matched = 1;
			else if (!strcmp(optarg, "delete"))
				matched = 2;
			else if (!strncmp(optarg, "update ", 7)) {
				/* update "SET col = expr, ..." (SET optional) */
				set = optarg + 7;
				while (*set == ' ')
					set++;
				if (!strncasecmp(set, "SET ", 4))
					set += 4;
				matched = 3;
			} else if (strcmp(optarg, "ignore"))
				return cli_usage_error("--when-matched takes update-all, 'update SET col = "
						       "expr, ...', delete or ignore, not '%s'", optarg);
			break;
		case 'n':
			any = true;
			if ((rc = action_or_ignore("when-not-matched", "insert-all", &nm)))
				return rc;
			break;
		case 'b':
			any = true;
			if ((rc = action_or_ignore("when-not-matched-by-source", "delete", &bs)))
				return rc;
			break;
		case 'f':
			format = optarg;
			break;
		case 'a':
			app = optarg;
			break;
		case 'A':
			appver = optarg;
			break;
		}
	}
	if (o == CLI_OPT_STOP)
		return status;
	if (optind + 2 != argc)
		return cli_usage_error("give the table and the source (a table, or a CSV or JSON "
				       "Lines file)");
	if (!on)
		return cli_usage_error("give --on \"t.id = s.id\": how target and source rows match");
	if (!any) { /* the upsert */
		matched = 1;
		nm = 1;
	}
	if (!app != !appver)
		return cli_usage_error("--app-id and --app-version go together");
	if (appver && !cli_parse_u64(appver, &version))
		return cli_usage_error("--app-version takes a number, not '%s'", appver);
	const char *table = argv[optind], *src = argv[optind + 1];
	struct stat sb;
	bool file = stat(src, &sb) == 0 && S_ISREG(sb.st_mode);
	uint64_t load = 0;
	sc_client *c = cli_connect(g, &status);
	if (!c)
		return status;
	/* A file: its rows held in the daemon as the MERGE's source (a
	 * merge-source load, PROTOCOL.md §4), committed nowhere. */
	if (file && (status = cli_merge_source(c, table, src, format, &load))) {
		sc_close(c);
		return status;
	}
	msgpack_packer *pk = sc_begin(c, WIRE_MERGE, 6 + (app ? 2 : 0) + (set ? 1 : 0) + (load ? 1 : 0));
	if (load)
		wire_key_u64(pk, WIRE_MERGE_Q_SOURCE_LOAD, load);
	wire_key_str(pk, WIRE_MERGE_Q_TABLE, table);
	wire_key_str(pk, WIRE_MERGE_Q_SOURCE, src);
	wire_key_str(pk, WIRE_MERGE_Q_ON, on);
	wire_key_u64(pk, WIRE_MERGE_Q_MATCHED, (uint64_t)matched);
	wire_key_u64(pk, WIRE_MERGE_Q_NOT_MATCHED, (uint64_t)nm);
	wire_key_u64(pk, WIRE_MERGE_Q_BY_SOURCE, (uint64_t)bs);
	if (set)
		wire_key_str(pk, WIRE_MERGE_Q_SET, set);
	if (app) {
		wire_key_str(pk, WIRE_MERGE_Q_APP_ID, app);
		wire_key_u64(pk, WIRE_MERGE_Q_APP_VERSION, version);
	}
	const msgpack_object *b;
	struct wire_error e;
	if (sc_call(c, &b, &e) != 0) {
		status = cli_fail_wire(c, &e);
		goto out;
	}
	const struct cli_reply r = {WIRE_MERGE, NULL};
	uint64_t v = 0, lsn = 0, upd = 0, del = 0, ins = 0;
	bool noop = false;
	if (cli_reply_u64(&r, b, WIRE_RESULT_VERSION, "version", CLI_REQUIRED, &v) < 0 ||
	    cli_reply_u64(&r, b, WIRE_RESULT_LSN, "lsn", CLI_REQUIRED, &lsn) < 0 ||
	    cli_reply_bool(&r, b, WIRE_RESULT_NOOP, "noop", CLI_REQUIRED, &noop) < 0 ||
	    cli_reply_u64(&r, b, WIRE_DML_R_ROWS, "rows updated", CLI_REQUIRED, &upd) < 0 ||
	    cli_reply_u64(&r, b, WIRE_MERGE_R_DELETED, "rows deleted", CLI_REQUIRED, &del) < 0 ||
	    cli_reply_u64(&r, b, WIRE_MERGE_R_INSERTED, "rows inserted", CLI_REQUIRED, &ins) < 0) {
		status = 1;
		goto out;
	}
	if (noop)
		printf("table '%s': nothing to merge (table at version %" PRIu64 ")\n", table, v);
	else
		printf("table '%s' version %" PRIu64 " (lsn %" PRIu64 "): merged: %" PRIu64
		       " rows updated, %" PRIu64 " deleted, %" PRIu64 " inserted\n",
		       table, v, lsn, upd, del, ins);
out:
	sc_close(c);
	return status;
}

int cli_upsert(const char *table, const char *file, const char *format, const char *app_id,
	       const char *app_version, struct cli_global *g)
{
	int status = 0;
	const msgpack_object *b, *keys = NULL;
	struct wire_error e;
	sc_client *c = cli_connect(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk = sc_begin(c, WIRE_DESCRIBE, 1);
	wire_key_str(pk, WIRE_DESCRIBE_Q_TABLE, table);
	if (sc_call(c, &b, &e) != 0) {
		status = cli_fail_wire(c, &e);
		sc_close(c);
		return status;
	}
	const struct cli_reply r = {WIRE_DESCRIBE, NULL};
	char on[4096] = "";
	size_t at = 0;
	if (cli_reply_array(&r, b, WIRE_DESCRIBE_R_KEY, "key columns", CLI_OPTIONAL, &keys) < 0) {
		sc_close(c);
		return 1;
	}
	for (uint32_t i = 0; keys && i < keys->via.array.size && at < sizeof on; i++) {
		const char *k;
		int len;
		if (!cli_str(&keys->via.array.ptr[i], &k, &len))
			break;
		at += (size_t)snprintf(on + at, sizeof on - at, "%st.\"%.*s\" = s.\"%.*s\"",
				       i ? " AND " : "", len, k, len, k);
	}
	sc_close(c);
	if (!at)
		return cli_fail_msg("table '%s' has no declared key (create --key): --mode upsert "
				    "needs one; use merge --on", table);
	char *av[16] = {"merge", (char *)table, (char *)file, "--on", on};
	int ac = 5;
	if (format) {
		av[ac++] = "--format";
		av[ac++] = (char *)format;
	}
	if (app_id) {
		av[ac++] = "--app-id";
		av[ac++] = (char *)app_id;
		av[ac++] = "--app-version";
		av[ac++] = (char *)app_version;
	}
	optind = 0;
	return cli_cmd_merge(ac, av, g);
}
