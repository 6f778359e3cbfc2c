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
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin/cli/cli.h"
#include "format/inspect.h"

/* Each string of array a on a line of its own after label. */
static void print_lines(const char *label, const msgpack_object *a)
{
	for (uint32_t i = 0; a && i < a->via.array.size; i++) {
		const char *str;
		int len;
		if (cli_str(&a->via.array.ptr[i], &str, &len))
			printf("%s%.*s\n", label, len, str);
	}
}

static void print_duration(uint64_t us)
{
	uint64_t m = us / 60000000;
	if (m >= 60)
		printf("%" PRIu64 "h %02" PRIu64 "m", m / 60, m % 60);
	else if (m)
		printf("%" PRIu64 "m", m);
	else
		printf("%" PRIu64 "s", us / 1000000);
}

static void print_scrub(const char *state, uint64_t done, uint64_t total, uint64_t next,
			uint64_t passes, uint64_t end_us, uint64_t segs, uint64_t recs,
			uint64_t nprob, const msgpack_object *probs)
{
	printf("scrub:          %s", state);
	if (!strcmp(state, "running"))
		printf(": %.0f%% (%.1f of %.1f MB read)", total ? 100.0 * (double)done / (double)total
							      : 0.0,
		       (double)done / 1e6, (double)total / 1e6);
	if (next) {
		printf(", next pass in ");
		print_duration(next);
	}
	printf("\n");
	if (passes && end_us) {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		uint64_t now_us = (uint64_t)now.tv_sec * 1000000 + (uint64_t)now.tv_nsec / 1000;
		printf("last scrub:     pass %" PRIu64 " ended ", passes);
		print_duration(now_us > end_us ? now_us - end_us : 0);
		printf(" ago: %" PRIu64 " segments and %" PRIu64 " records checked, %" PRIu64
		       " problem%s\n", segs, recs, nprob, nprob == 1 ? "" : "s");
		print_lines("scrub found:    ", probs);
	}
}

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
	char scrub[16] = "", failure[1024] = "";
	uint64_t sc_passes = 0, sc_done = 0, sc_total = 0, sc_end = 0, sc_segs = 0, sc_recs = 0,
		 sc_next = 0, sc_nprob = 0;
	const msgpack_object *sc_probs = NULL, *damaged = NULL;
	const struct cli_reply r = {WIRE_STATUS, NULL};
	if (cli_reply_strbuf(&r, b, WIRE_STATUS_R_SCRUB_STATE, "scrub state", CLI_OPTIONAL, scrub,
			     sizeof scrub) < 0 ||
	    cli_reply_u64(&r, b, WIRE_STATUS_R_SCRUB_PASSES, "scrub passes", CLI_OPTIONAL,
			  &sc_passes) < 0 ||
	    cli_reply_u64(&r, b, WIRE_STATUS_R_SCRUB_DONE, "scrub bytes read", CLI_OPTIONAL,
			  &sc_done) < 0 ||
	    cli_reply_u64(&r, b, WIRE_STATUS_R_SCRUB_TOTAL, "scrub bytes", CLI_OPTIONAL,
			  &sc_total) < 0 ||
	    cli_reply_u64(&r, b, WIRE_STATUS_R_SCRUB_LAST_END, "last scrub end", CLI_OPTIONAL,
			  &sc_end) < 0 ||
	    cli_reply_array(&r, b, WIRE_STATUS_R_SCRUB_LAST_PROBLEMS, "scrub problems",
			    CLI_OPTIONAL, &sc_probs) < 0 ||
	    cli_reply_u64(&r, b, WIRE_STATUS_R_SCRUB_LAST_SEGMENTS, "scrub segments",
			  CLI_OPTIONAL, &sc_segs) < 0 ||
	    cli_reply_u64(&r, b, WIRE_STATUS_R_SCRUB_LAST_RECORDS, "scrub records", CLI_OPTIONAL,
			  &sc_recs) < 0 ||
	    cli_reply_u64(&r, b, WIRE_STATUS_R_SCRUB_NEXT, "next scrub", CLI_OPTIONAL, &sc_next) <
		    0 ||
	    cli_reply_u64(&r, b, WIRE_STATUS_R_SCRUB_LAST_NPROBLEMS, "scrub problem count",
			  CLI_OPTIONAL, &sc_nprob) < 0 ||
	    cli_reply_array(&r, b, WIRE_STATUS_R_DAMAGED, "damaged tables", CLI_OPTIONAL,
			    &damaged) < 0 ||
	    cli_reply_strbuf(&r, b, WIRE_STATUS_R_FAILURE, "store failure", CLI_OPTIONAL, failure,
			     sizeof failure) < 0) {
		sc_close(c);
		return 1;
	}
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
	if (failure[0])
		printf("store:          FAILED, writes refused until stratad is restarted: %s\n",
		       failure);
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
	if (scrub[0])
		print_scrub(scrub, sc_done, sc_total, sc_next, sc_passes, sc_end, sc_segs, sc_recs,
			    sc_nprob, sc_probs);
	print_lines("damaged:        ", damaged);
	char ao[16] = "", last[1400] = "";
	uint64_t runs = 0, fails = 0;
	if (cli_reply_strbuf(&r, b, WIRE_STATUS_R_AUTOOPT_STATE, "auto optimize state", CLI_OPTIONAL,
			     ao, sizeof ao) >= 0 &&
	    cli_reply_u64(&r, b, WIRE_STATUS_R_AUTOOPT_RUNS, "auto optimize runs", CLI_OPTIONAL,
			  &runs) >= 0 &&
	    cli_reply_u64(&r, b, WIRE_STATUS_R_AUTOOPT_FAILURES, "auto optimize failures",
			  CLI_OPTIONAL, &fails) >= 0 &&
	    cli_reply_strbuf(&r, b, WIRE_STATUS_R_AUTOOPT_LAST, "auto optimize last", CLI_OPTIONAL,
			     last, sizeof last) >= 0 && ao[0]) {
		printf("auto optimize:  %s, %" PRIu64 " tables compacted, %" PRIu64 " failures\n", ao,
		       runs, fails);
		if (last[0])
			printf("last optimize:  %s\n", last);
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

/* The last scrub pass's number and findings, from STATUS; 1 on failure. */
static int scrub_status(const struct cli_global *g, uint64_t *passes, bool *running,
			uint64_t *segs, uint64_t *recs, uint64_t *nprob, int (*print)(sc_client *,
										 const msgpack_object *))
{
	sc_client *c = NULL;
	const msgpack_object *b;
	if (cli_simple_call(g, WIRE_STATUS, NULL, &c, &b))
		return 1;
	char state[16] = "";
	const struct cli_reply r = {WIRE_STATUS, NULL};
	int rc = 0;
	if (cli_reply_strbuf(&r, b, WIRE_STATUS_R_SCRUB_STATE, "scrub state", CLI_REQUIRED, state,
			     sizeof state) < 0 ||
	    cli_reply_u64(&r, b, WIRE_STATUS_R_SCRUB_PASSES, "scrub passes", CLI_REQUIRED,
			  passes) < 0 ||
	    cli_reply_u64(&r, b, WIRE_STATUS_R_SCRUB_LAST_SEGMENTS, "scrub segments", CLI_REQUIRED,
			  segs) < 0 ||
	    cli_reply_u64(&r, b, WIRE_STATUS_R_SCRUB_LAST_RECORDS, "scrub records", CLI_REQUIRED,
			  recs) < 0 ||
	    cli_reply_u64(&r, b, WIRE_STATUS_R_SCRUB_LAST_NPROBLEMS, "scrub problem count",
			  CLI_REQUIRED, nprob) < 0)
		rc = 1;
	*running = !strcmp(state, "running");
	if (!rc && print)
		rc = print(c, b);
	sc_close(c);
	return rc;
}

static int print_found(sc_client *c, const msgpack_object *b)
{
	const msgpack_object *probs = NULL, *damaged = NULL;
	const struct cli_reply r = {WIRE_STATUS, NULL};
	(void)c;
	if (cli_reply_array(&r, b, WIRE_STATUS_R_SCRUB_LAST_PROBLEMS, "scrub problems",
			    CLI_REQUIRED, &probs) < 0 ||
	    cli_reply_array(&r, b, WIRE_STATUS_R_DAMAGED, "damaged tables", CLI_OPTIONAL,
			    &damaged) < 0)
		return 1;
	print_lines("DAMAGED: ", probs);
	print_lines("refused: ", damaged);
	return 0;
}

int cli_cmd_scrub(int argc, char **argv, struct cli_global *g)
{
	static const struct option longs[] = {{"rate", required_argument, NULL, 'r'},
					      {"wait", no_argument, NULL, 'w'}, CLI_COMMON_OPTS};
	bool wait = false, have_rate = false;
	uint64_t rate = 0;
	int status = 0, o;
	while ((o = cli_getopt(argc, argv, longs, g, &status)) > 0) {
		if (o == 'w') {
			wait = true;
		} else if (o == 'r') {
			char *end;
			errno = 0;
			rate = strtoull(optarg, &end, 10);
			if (!*optarg || *end || errno || optarg[0] == '-' || rate > UINT32_MAX)
				return cli_usage_error("--rate takes MB per second, 0 to %u (0: as "
						       "fast as the disk allows), not '%s'",
						       UINT32_MAX, optarg);
			have_rate = true;
		}
	}
	if (o == CLI_OPT_STOP)
		return status;
	if (argc - optind > 1)
		return cli_usage_error("takes at most one table");
	const char *table = optind < argc ? argv[optind] : NULL;
	sc_client *c = cli_connect(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk = sc_begin(c, WIRE_SCRUB, (table ? 1 : 0) + (have_rate ? 1 : 0));
	if (table)
		wire_key_str(pk, WIRE_SCRUB_Q_TABLE, table);
	if (have_rate)
		wire_key_u64(pk, WIRE_SCRUB_Q_RATE, rate);
	const msgpack_object *b;
	if ((status = cli_call(c, &b)) != 0) {
		sc_close(c);
		return status;
	}
	uint64_t pass = 0, used = 0;
	const struct cli_reply r = {WIRE_SCRUB, NULL};
	if (cli_reply_u64(&r, b, WIRE_SCRUB_R_PASS, "pass", CLI_REQUIRED, &pass) < 0 ||
	    cli_reply_u64(&r, b, WIRE_SCRUB_R_RATE, "rate", CLI_REQUIRED, &used) < 0) {
		sc_close(c);
		return 1;
	}
	sc_close(c);
	if (used)
		printf("scrub pass %" PRIu64 " started: %s%s%s at %" PRIu64 " MB/s\n", pass,
		       table ? "table '" : "every table", table ? table : "", table ? "'" : "", used);
	else
		printf("scrub pass %" PRIu64 " started: %s%s%s, unthrottled\n", pass,
		       table ? "table '" : "every table", table ? table : "", table ? "'" : "");
	if (!wait)
		return 0;
	fflush(stdout);
	for (;;) {
		struct timespec ts = {0, 200 * 1000000L};
		nanosleep(&ts, NULL);
		uint64_t ended, segs, recs, nprob;
		bool running;
		if (scrub_status(g, &ended, &running, &segs, &recs, &nprob, NULL))
			return 1;
		if (ended < pass)
			continue;
		if (scrub_status(g, &ended, &running, &segs, &recs, &nprob, print_found))
			return 1;
		printf("%s: %" PRIu64 " segments and %" PRIu64 " records checked, %" PRIu64
		       " problem%s\n", nprob ? "FAILED" : "ok", segs, recs, nprob,
		       nprob == 1 ? "" : "s");
		return nprob ? 1 : 0;
	}
}

int cli_cmd_backup(int argc, char **argv, struct cli_global *g)
{
	int status = 0;
	if (cli_no_options(argc, argv, g, &status) == CLI_OPT_STOP)
		return status;
	if (optind + 1 != argc)
		return cli_usage_error("takes one directory");
	const char *dir = argv[optind];
	if (dir[0] != '/')
		return cli_usage_error("'%s' is not an absolute path: the daemon writes the backup on "
				       "its own machine, and its working directory is not yours", dir);
	sc_client *c = cli_connect(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk = sc_begin(c, WIRE_BACKUP, 1);
	wire_key_str(pk, WIRE_BACKUP_Q_DIR, dir);
	const msgpack_object *b;
	if ((status = cli_call(c, &b)) != 0) {
		sc_close(c);
		return status;
	}
	uint64_t lsn = 0, files = 0, bytes = 0;
	const uint8_t *hash = NULL;
	const struct cli_reply r = {WIRE_BACKUP, NULL};
	if (cli_reply_u64(&r, b, WIRE_BACKUP_R_LSN, "LSN", CLI_REQUIRED, &lsn) < 0 ||
	    cli_reply_hash(&r, b, WIRE_BACKUP_R_HASH, "chain hash", CLI_REQUIRED, &hash) < 0 ||
	    cli_reply_u64(&r, b, WIRE_BACKUP_R_FILES, "files", CLI_REQUIRED, &files) < 0 ||
	    cli_reply_u64(&r, b, WIRE_BACKUP_R_BYTES, "bytes", CLI_REQUIRED, &bytes) < 0) {
		sc_close(c);
		return 1;
	}
	char hex[2 * CLI_HASH_LEN + 1];
	cli_hex(hash, 2 * CLI_HASH_LEN, hex);
	printf("backup of %s in %s: %" PRIu64 " files, %.1f MB, chain head LSN %" PRIu64 " %s\n",
	       sc_host(c), dir, files, (double)bytes / 1e6, lsn, hex);
	sc_close(c);
	return 0;
}
