/*
 * admin/cli/dml.c — the row-level commands of `strata`: delete, update
 * and optimize (PROTOCOL.md §3 types 25, 26 and 57).
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

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
