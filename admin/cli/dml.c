/*
 * admin/cli/dml.c — the row-level commands of `strata`: delete (PROTOCOL.md
 * §3 type 25).
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "admin/cli/cli.h"

int cli_cmd_delete(int argc, char **argv, struct cli_global *g)
{
	static const struct option longs[] = {{"where", required_argument, NULL, 'w'},
					      {"app-id", required_argument, NULL, 'a'},
					      {"app-version", required_argument, NULL, 'A'},
					      CLI_COMMON_OPTS};
	const char *where = NULL, *app = NULL, *appver = NULL;
	uint64_t version = 0;
	int status = 0, o;
	while ((o = cli_getopt(argc, argv, longs, g, &status)) > 0) {
		switch (o) {
		case 'w':
			where = optarg;
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
		return cli_usage_error("give --where PRED: the rows to delete (--where true for all)");
	if (!app != !appver)
		return cli_usage_error("--app-id and --app-version go together");
	if (appver && !cli_parse_u64(appver, &version))
		return cli_usage_error("--app-version takes a number, not '%s'", appver);
	const char *table = argv[optind];
	sc_client *c = cli_connect(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk = sc_begin(c, WIRE_DELETE, app ? 4 : 2);
	wire_key_str(pk, WIRE_DELETE_Q_TABLE, table);
	wire_key_str(pk, WIRE_DELETE_Q_PREDICATE, where);
	if (app) {
		wire_key_str(pk, WIRE_DELETE_Q_APP_ID, app);
		wire_key_u64(pk, WIRE_DELETE_Q_APP_VERSION, version);
	}
	const msgpack_object *b;
	struct wire_error e;
	if (sc_call(c, &b, &e) != 0) {
		status = cli_fail_wire(c, &e);
		sc_close(c);
		return status;
	}
	const struct cli_reply r = {WIRE_DELETE, NULL};
	uint64_t v = 0, lsn = 0, rows = 0, skipped = 0, read = 0, removed = 0, dvs = 0;
	bool noop = false;
	if (cli_reply_u64(&r, b, WIRE_RESULT_VERSION, "version", CLI_REQUIRED, &v) < 0 ||
	    cli_reply_u64(&r, b, WIRE_RESULT_LSN, "lsn", CLI_REQUIRED, &lsn) < 0 ||
	    cli_reply_bool(&r, b, WIRE_RESULT_NOOP, "noop", CLI_REQUIRED, &noop) < 0 ||
	    cli_reply_u64(&r, b, WIRE_DELETE_R_DELETED, "rows deleted", CLI_REQUIRED, &rows) < 0 ||
	    cli_reply_u64(&r, b, WIRE_DELETE_R_SKIPPED, "files skipped", CLI_OPTIONAL, &skipped) < 0 ||
	    cli_reply_u64(&r, b, WIRE_DELETE_R_READ, "files read", CLI_OPTIONAL, &read) < 0 ||
	    cli_reply_u64(&r, b, WIRE_DELETE_R_REMOVED, "files removed", CLI_OPTIONAL, &removed) < 0 ||
	    cli_reply_u64(&r, b, WIRE_DELETE_R_DVS, "vectors", CLI_OPTIONAL, &dvs) < 0) {
		sc_close(c);
		return 1;
	}
	if (noop && app)
		printf("table '%s': already done earlier with this app id and version: nothing "
		       "deleted (table at version %" PRIu64 ")\n", table, v);
	else if (noop)
		printf("table '%s': no row matches: nothing deleted (table at version %" PRIu64 ")\n",
		       table, v);
	else
		printf("table '%s' version %" PRIu64 " (lsn %" PRIu64 "): deleted %" PRIu64
		       " rows (files: %" PRIu64 " skipped by statistics, %" PRIu64 " read, %" PRIu64
		       " removed whole, %" PRIu64 " given a deletion vector)\n",
		       table, v, lsn, rows, skipped, read, removed, dvs);
	sc_close(c);
	return 0;
}
