/*
 * admin/cli/status.c — the commands of `strata` about the daemon and its
 * files: status (PROTOCOL.md §3 STATUS), ping (PING, timed) and inspect (a
 * segment file read directly with format/inspect.h; no daemon needed).
 *
 * status prints the chain head (STATUS key 9, the BLAKE2b-256 hash of the
 * store's commit chain at its last LSN) when the daemon sends it; an older
 * daemon does not, and the line is left out. Likewise the node's place in
 * a cluster (keys 10-15: role, epoch, node id, leader id, commit and applied
 * LSN): "role: single node" for a single node, the six lines otherwise.
 */
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "admin/cli/cli.h"
#include "format/inspect.h"

int cli_cmd_status(int argc, char **argv, struct cli_global *g)
{
	int status = 0;
	if (cli_no_options(argc, argv, g, &status) == CLI_OPT_STOP)
		return status;
	if (optind != argc)
		return cli_usage_error("takes no arguments");
	sc_client *c = NULL;
	const msgpack_object *b;
	if ((status = cli_simple_call(g, WIRE_STATUS, NULL, &c, &b)))
		return status;
	char ver[64] = "?", dir[4096] = "?";
	uint64_t up = 0, tables = 0, lsn = 0, disk = 0, pid = 0, loads = 0, cursors = 0;
	const uint8_t *head = NULL;
	char role[32] = "";
	uint64_t epoch = 0, node = 0, leader = 0, commit = 0, applied = 0;
	const struct cli_reply r = {WIRE_STATUS, NULL};
	if (cli_reply_strbuf(&r, b, WIRE_STATUS_R_VERSION, "server version", CLI_REQUIRED, ver,
			     sizeof ver) < 0 ||
	    cli_reply_u64(&r, b, WIRE_STATUS_R_UPTIME, "uptime", CLI_REQUIRED, &up) < 0 ||
	    cli_reply_strbuf(&r, b, WIRE_STATUS_R_DATA_DIR, "data directory", CLI_REQUIRED, dir,
			     sizeof dir) < 0 ||
	    cli_reply_u64(&r, b, WIRE_STATUS_R_TABLES, "tables", CLI_REQUIRED, &tables) < 0 ||
	    cli_reply_u64(&r, b, WIRE_STATUS_R_LSN, "last LSN", CLI_REQUIRED, &lsn) < 0 ||
	    cli_reply_u64(&r, b, WIRE_STATUS_R_DISK, "bytes on disk", CLI_REQUIRED, &disk) < 0 ||
	    cli_reply_u64(&r, b, WIRE_STATUS_R_PID, "pid", CLI_REQUIRED, &pid) < 0 ||
	    cli_reply_u64(&r, b, WIRE_STATUS_R_LOADS, "open loads", CLI_REQUIRED, &loads) < 0 ||
	    cli_reply_u64(&r, b, WIRE_STATUS_R_CURSORS, "open cursors", CLI_REQUIRED, &cursors) <
		    0 ||
	    cli_reply_hash(&r, b, WIRE_STATUS_R_CHAIN_HASH, "chain hash", CLI_OPTIONAL, &head) < 0 ||
	    cli_reply_strbuf(&r, b, WIRE_STATUS_R_ROLE, "role", CLI_OPTIONAL, role, sizeof role) <
		    0 ||
	    cli_reply_u64(&r, b, WIRE_STATUS_R_EPOCH, "epoch", CLI_OPTIONAL, &epoch) < 0 ||
	    cli_reply_u64(&r, b, WIRE_STATUS_R_NODE, "node id", CLI_OPTIONAL, &node) < 0 ||
	    cli_reply_u64(&r, b, WIRE_STATUS_R_LEADER, "leader id", CLI_OPTIONAL, &leader) < 0 ||
	    cli_reply_u64(&r, b, WIRE_STATUS_R_COMMIT_LSN, "commit LSN", CLI_OPTIONAL, &commit) <
		    0 ||
	    cli_reply_u64(&r, b, WIRE_STATUS_R_APPLIED_LSN, "applied LSN", CLI_OPTIONAL,
			  &applied) < 0) {
		sc_close(c);
		return 1;
	}
	printf("address:        %s\nversion:        stratad %s (pid %" PRIu64 ")\n", sc_host(c), ver,
	       pid);
	printf("uptime:         %" PRIu64 "d %02" PRIu64 ":%02" PRIu64 ":%02" PRIu64 "\n",
	       up / UINT64_C(86400000000), up / UINT64_C(3600000000) % 24,
	       up / UINT64_C(60000000) % 60, up / UINT64_C(1000000) % 60);
	printf("data directory: %s\ntables:         %" PRIu64 "\nlast LSN:       %" PRIu64 "\n", dir,
	       tables, lsn);
	if (head) {
		char hex[2 * CLI_HASH_LEN + 1];
		cli_hex(head, 2 * CLI_HASH_LEN, hex);
		printf("chain head:     LSN %" PRIu64 " %s\n", lsn, hex);
	}
	printf("disk use:       %.1f MB\nopen loads:     %" PRIu64 "\nopen cursors:   %" PRIu64 "\n",
	       disk / 1e6, loads, cursors);
	if (!strcmp(role, "single")) {
		printf("role:           single node\n");
	} else if (role[0]) {
		printf("role:           %s\nepoch:          %" PRIu64 "\nnode id:        %" PRIu64 "\n",
		       role, epoch, node);
		if (leader)
			printf("leader id:      %" PRIu64 "\n", leader);
		else
			printf("leader id:      unknown\n");
		printf("commit LSN:     %" PRIu64 "\napplied LSN:    %" PRIu64 "\n", commit, applied);
	}
	sc_close(c);
	return 0;
}

int cli_cmd_ping(int argc, char **argv, struct cli_global *g)
{
	int status = 0;
	if (cli_no_options(argc, argv, g, &status) == CLI_OPT_STOP)
		return status;
	if (optind != argc)
		return cli_usage_error("takes no arguments");
	struct timespec a, z;
	clock_gettime(CLOCK_MONOTONIC, &a);
	sc_client *c;
	const msgpack_object *b;
	if ((status = cli_simple_call(g, WIRE_PING, NULL, &c, &b)))
		return status;
	clock_gettime(CLOCK_MONOTONIC, &z);
	printf("pong from %s (stratad %s) in %.3f ms\n", sc_host(c), sc_server(c)->version,
	       (z.tv_sec - a.tv_sec) * 1e3 + (z.tv_nsec - a.tv_nsec) / 1e6);
	sc_close(c);
	return 0;
}

int cli_cmd_inspect(int argc, char **argv, struct cli_global *g)
{
	static const struct option longs[] = {{"chunks", no_argument, NULL, 'C'}, CLI_COMMON_OPTS};
	bool chunks = false;
	int status = 0, o;
	while ((o = cli_getopt(argc, argv, longs, g, &status)) > 0)
		if (o == 'C')
			chunks = true;
	if (o == CLI_OPT_STOP)
		return status;
	if (optind + 1 != argc)
		return cli_usage_error("give exactly one segment file");
	struct st_err err;
	if (seg_inspect(argv[optind], stdout, chunks, &err) != ST_OK)
		return cli_fail_msg("%s", err.msg);
	return 0;
}
