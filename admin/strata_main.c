/*
 * admin/strata_main.c — `strata`, the command line client of stratad: the
 * command table (each command's name, usage and --help text), the global
 * options before the command (--host, --timeout, --help, --version) and
 * the dispatch. The commands are in admin/cli/ (cli.h says which file
 * holds which).
 *
 * Every command takes --host (default $STRATA_HOST, else
 * tcp://127.0.0.1:7420), --timeout (seconds) and --help. Exit status: 0
 * success, 1 error (the daemon's or a local one, printed to stderr), 2
 * usage error.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "admin/cli/cli.h"

/* ---- the command table -------------------------------------------------------- */

static const struct cli_command commands[] = {
	{"create", cli_cmd_create, "TABLE --schema \"COL TYPE [not null], ...\" [options]",
	 "Create a table (its version 0).\n"
	 "  --schema TEXT         columns: name, type (bool int32 int64 float64 string binary date\n"
	 "                        timestamp), optional 'not null'; comma-separated\n"
	 "  --partition-by COL    a partition column (repeatable)\n"
	 "  --key COLS            declared key columns (id or a,b): NOT NULL, and unique\n"
	 "                        together; a write that repeats a key is refused naming it\n"
	 "  --property K=V        a table property, e.g. file_retention=7d, log_retention=30d,\n"
	 "                        isolation=WriteSerializable (repeatable)\n"
	 "  --if-not-exists       succeed without change when the table exists\n"
	 "  --replace             drop an existing table of that name first", CLI_WRITES},
	{"tables", cli_cmd_tables, "", "List the tables.", 0},
	{"describe", cli_cmd_describe, "TABLE [--version N]",
	 "Show a table's columns, partitioning, properties, constraints, size, commit time\n"
	 "and oldest retained version, at the latest version or at version N.", CLI_READS},
	{"drop", cli_cmd_drop, "TABLE", "Drop a table (a commit; its files stay until vacuum).",
	 CLI_WRITES},
	{"alter", cli_cmd_alter, "TABLE OPERATION ARGS...",
	 "Change a table's schema or properties (a commit). Operations:\n"
	 "  add-column NAME TYPE        a nullable column\n"
	 "  rename-column OLD NEW\n"
	 "  drop-column NAME            metadata only: old files keep their bytes\n"
	 "  set-property KEY=VALUE      unset-property KEY\n"
	 "  set-not-null COL            refused while the column holds NULLs\n"
	 "  drop-not-null COL\n"
	 "  add-constraint NAME PRED    CHECK constraint; existing rows are checked first\n"
	 "  drop-constraint NAME", CLI_WRITES},
	{"load", cli_cmd_load, "TABLE FILE|- [options]",
	 "Load CSV (with a header line) or JSON Lines into a table as one commit: nothing of a\n"
	 "failed load is visible. Empty CSV fields are NULL; \"\" is an empty string. Rows stream\n"
	 "to the daemon in batches; its memory stays bounded whatever the file's size.\n"
	 "  --format csv|jsonl    default: by file name (.jsonl/.json), else csv\n"
	 "  --delimiter C         CSV field delimiter (default ','; '\\t' for tab)\n"
	 "  --mode append|overwrite|upsert\n"
	 "                        upsert: rows replace those with the same declared key\n"
	 "                        (create --key), the others are added: a merge\n"
	 "  --replace-where PRED  atomically replace the rows matching PRED with the file's rows\n"
	 "  --merge-schema        add new columns, widen types (int32->int64->float64, date->timestamp)\n"
	 "  --batch-rows N        commit every N rows (one commit per N rows instead of one in all)\n"
	 "  --app-id ID --app-version N\n"
	 "                        idempotent load: skipped when this app id already committed\n"
	 "                        version N or later (with --batch-rows, commit i uses N+i)\n"
	 "  --quiet               no progress bar (it is shown only on a terminal anyway)", CLI_WRITES},
	{"delete", cli_cmd_delete, "TABLE --where PRED [--app-id ID --app-version N]",
	 "Delete the rows matching PRED, as one commit (time travel still sees them). No data\n"
	 "file is rewritten: files whose statistics exclude PRED are not read, files whose rows\n"
	 "all match are removed, the others get a deletion vector (the deleted row positions,\n"
	 "kept in the store). Prints the rows deleted and how each file was handled.\n"
	 "  --where PRED          e.g. \"id % 100 = 7\" or \"ts < '2026-01-01'\"; 'true' for every row\n"
	 "  --app-id ID --app-version N\n"
	 "                        idempotent: skipped when this app id already committed\n"
	 "                        version N or later", CLI_WRITES},
	{"update", cli_cmd_update, "TABLE --set \"COL = EXPR, ...\" --where PRED [--app-id ID --app-version N]",
	 "Change the rows matching PRED, as one commit: each is deleted by a deletion vector and\n"
	 "written again with the new values into one new file (time travel sees the old ones).\n"
	 "Every value is computed from the old row; the table's NOT NULL and CHECK constraints\n"
	 "must hold for every new row, or nothing changes (the error names the column and row).\n"
	 "  --set LIST            e.g. \"value = value * 2, note = CASE WHEN value > 100 THEN 'hi'\n"
	 "                        ELSE note END\": + - * / %, CASE, COALESCE, CAST(x AS type)\n"
	 "  --where PRED          which rows ('true' for every row)\n"
	 "  --app-id ID --app-version N\n"
	 "                        idempotent: skipped when this app id already committed\n"
	 "                        version N or later", CLI_WRITES},
	{"merge", cli_cmd_merge, "TABLE SOURCE --on \"t.id = s.id\" [clauses]",
	 "Upsert: MERGE the rows of SOURCE (a table, or a CSV / JSON Lines file, loaded first\n"
	 "into a temporary table of TABLE's columns) into TABLE as one commit, by Delta's rules:\n"
	 "a target row matched by two source rows is an error naming the key. Without\n"
	 "clauses: --when-matched update-all --when-not-matched insert-all.\n"
	 "  --on COND             t.col = s.col [AND ...] (t: TABLE, s: SOURCE)\n"
	 "  --when-matched update-all|delete|ignore|'update SET col = EXPR, ...'\n"
	 "                        update SET: EXPR over the target's columns (col or t.col)\n"
	 "                        and the source's (s.col), e.g. 'update SET n = t.n + s.n'\n"
	 "  --when-not-matched insert-all|ignore\n"
	 "  --when-not-matched-by-source delete|ignore\n"
	 "  --format csv|jsonl    of a SOURCE file (default: by its name)\n"
	 "  --app-id ID --app-version N   idempotent, as for load", CLI_WRITES},
	{"optimize", cli_cmd_optimize, "TABLE [--where PRED] [--target-file-size SIZE] [--cluster-by COLS]",
	 "Rewrite small files into target-sized ones and purge deletion vectors, as one commit\n"
	 "that changes no data (streams and the change feed do not see it; concurrent writes\n"
	 "are not refused because of it). Running it again does nothing.\n"
	 "  --where PRED          only files whose statistics may match PRED\n"
	 "  --target-file-size SIZE  e.g. 64MB (the default), 512KB, 1GB\n"
	 "  --cluster-by COLS     up to 4 columns, e.g. ts,sensor: sort the rows by a Z-order of\n"
	 "                        them, so that range predicates on each skip most files (the\n"
	 "                        files' rows are held in memory while sorting)", CLI_WRITES},
	{"scan", cli_cmd_scan, "TABLE [options]",
	 "Print rows of a table.\n"
	 "  --columns a,b         which columns (default all)\n"
	 "  --where PRED          e.g. \"value > 10 AND sensor = 'sensor-0001'\"\n"
	 "  --version N | --as-of TIMESTAMP\n"
	 "                        time travel: a version, or the table as of a UTC time\n"
	 "                        ('2026-11-24 10:00:00' or microseconds since the epoch)\n"
	 "  --limit N             at most N rows\n"
	 "  --format table|csv|jsonl  (jsonl: one JSON object per row, nothing else on stdout)", CLI_READS},
	{"changes", cli_cmd_changes,
	 "TABLE (--from-version N | --from-time TIMESTAMP) [--to-version N | --to-time TIMESTAMP] [options]",
	 "Print the change data feed: every row each commit inserted, deleted or updated, in\n"
	 "commit order, with _change_type (insert, delete, update_preimage, update_postimage),\n"
	 "_commit_version and _commit_timestamp after the table's columns. Needs the table\n"
	 "property change_feed=true (create --property change_feed=true, or alter TABLE\n"
	 "set-property change_feed=true: changes are kept from that commit on, until vacuum).\n"
	 "OPTIMIZE and compaction change no rows and print nothing.\n"
	 "  --from-version N | --from-time TIMESTAMP   the first commit (at or after the time)\n"
	 "  --to-version N | --to-time TIMESTAMP       the last (default: the latest)\n"
	 "  --columns a,b, --where PRED, --limit N, --format table|csv|jsonl  as for scan", CLI_READS},
	{"query", cli_cmd_query, "TABLE --group-by COLS --agg AGGS [options]",
	 "Aggregate in the daemon, next to the data.\n"
	 "  --group-by a,b        group columns (optional)\n"
	 "  --agg LIST            count(*), count(col), sum(col), min(col), max(col), avg(col)\n"
	 "  --where PRED, --version N | --as-of TIMESTAMP, --format table|csv|jsonl", CLI_READS},
	{"history", cli_cmd_history, "TABLE [--limit N] [--full-hash]",
	 "Show a table's commits, newest first: version, LSN, time, operation, rows and files\n"
	 "added and removed, duration, the store's chain hash at that commit, parameters.\n"
	 "  --limit N             the newest N commits only\n"
	 "  --full-hash           all 64 hex digits of each chain hash (default: the first 16;\n"
	 "                        '-' when the daemon sends none)", CLI_READS},
	{"restore", cli_cmd_restore, "TABLE (--version N | --as-of TIMESTAMP)",
	 "Make an old version the latest again (a new commit; history stays).", CLI_WRITES},
	{"vacuum", cli_cmd_vacuum, "TABLE [--retain DURATION] [--dry-run] [--force]",
	 "Delete data files removed longer ago than the table's file_retention (or --retain,\n"
	 "e.g. 7d, 12h) and not read by any open scan; prune history older than log_retention.\n"
	 "A retention below the table's needs --force; --dry-run lists the files only.", CLI_WRITES},
	{"status", cli_cmd_status, "",
	 "Show the daemon's version, uptime, data directory, tables, LSN and disk use. Also\n"
	 "the chain head (the hash of the store's commit chain at the last LSN) when the\n"
	 "daemon sends it, and 'store: FAILED' with the cause when an I/O error at a commit\n"
	 "made the store refuse every write until stratad restarts. In a cluster also the node's role (leader, follower, candidate,\n"
	 "learner), epoch, node id, the leader's id, and its commit and applied LSNs; a single\n"
	 "node says 'role: single node'. Then the scrub: off, idle (and when the next\n"
	 "background pass starts) or running (how far), the last pass's figures and what it\n"
	 "found, and every table refused as damaged, with why.", 0},
	{"scrub", cli_cmd_scrub, "[TABLE] [--rate MB] [--wait]",
	 "Start a scrub pass now: every record's checksum, each table's commit chain and\n"
	 "file records against its commits, every live segment's chunks (all tables, or\n"
	 "TABLE), in short snapshots beside the daemon's other work. A damaged table is\n"
	 "refused for reads and writes until repaired or dropped; `strata status` shows\n"
	 "progress and findings. One pass at a time: refused while one runs. The daemon also\n"
	 "scrubs by itself (scrub_interval, scrub_rate_mb_s in its config).\n"
	 "  --rate MB             at most MB (10^6 bytes) per second (default: the daemon's\n"
	 "                        scrub_rate_mb_s; 0: as fast as it can)\n"
	 "  --wait                wait for the pass to end and print what it found: DAMAGED:\n"
	 "                        lines, then the figures; exit status 1 when it found damage", 0},
	{"ping", cli_cmd_ping, "", "Check that the daemon answers.", 0},
	{"inspect", cli_cmd_inspect, "FILE [--chunks]",
	 "Describe a segment file (schema, row groups, encodings, statistics) and verify its\n"
	 "checksums. Works on the file directly; no daemon needed.", 0},
	{"verify", cli_cmd_verify, "[--quick] [--head HEX] [--data-dir DIR]",
	 "Check the whole store: every LMDB record's checksum, every table's commit chain,\n"
	 "the store's hash chain, every live segment's checksums, each table's file records\n"
	 "against the files its commits add and remove (a lost record is named with the\n"
	 "rows it costs), and files no record names (orphans); through the daemon, or with\n"
	 "--data-dir on a stopped data directory (runs stratad --verify). Each problem is\n"
	 "printed on a DAMAGED: line naming the table and what it affects; a table found\n"
	 "damaged is refused for reads and writes until repaired or dropped. Prints the\n"
	 "chain's last LSN and hash. Exit status 0 clean, 1 damage found, 2 usage error,\n"
	 "3 (offline) the check could not run.\n"
	 "  --quick               the chains and live segments only (no record sweep,\n"
	 "                        cross-check or orphan search)\n"
	 "  --head HEX            a chain hash (64 hex digits, from `strata status` or\n"
	 "                        `strata history --full-hash`, e.g. kept elsewhere): check that\n"
	 "                        it is in this store's chain and print the LSN it is at\n"
	 "  --data-dir DIR        check a stopped data directory offline", 0},
	{"backup", cli_cmd_backup, "DIR",
	 "Take an online, consistent backup of the daemon's whole store into DIR, an absolute\n"
	 "path on the daemon's machine (new or empty): a compacted copy of LMDB, every segment\n"
	 "file it names (hard links on the same file system, copies otherwise; each checked\n"
	 "against its commit's size and CRC32C) and a MANIFEST of every file's size and CRC32C\n"
	 "with the chain head, written last. Writes go on meanwhile. The backup is a data\n"
	 "directory: `strata verify --data-dir DIR` checks it (the manifest too), and\n"
	 "`stratad -c FILE --restore-from DIR` makes FILE's data_dir from it. Prints the\n"
	 "chain head it holds.", 0},
	{"cluster", cli_cmd_cluster,
	 "status [--format table|jsonl] | transfer --to ID | add --id N --address ADDR [--client "
	 "ADDR] | promote ID | remove ID | force-promote --accept-data-loss",
	 "Show or steer the replicated cluster --host belongs to (any node of it).\n"
	 "  status                one row per node: id, role, epoch, commit LSN, applied LSN,\n"
	 "                        lag (entries behind the leader) and last contact (ms since the\n"
	 "                        leader heard from it; '-' never). Role, epoch and LSNs are each\n"
	 "                        node's own answer (asked directly, a short timeout each; a node\n"
	 "                        that does not answer is 'unreachable'), lag and last contact\n"
	 "                        the leader's view; repaired: the damaged segment files the node\n"
	 "                        replaced with a peer's good copy (pending: still waiting for\n"
	 "                        one). Exit status 1 when a node is unreachable.\n"
	 "    --format table|jsonl  jsonl: one object per node with the keys id, role, epoch,\n"
	 "                        commit_lsn, applied_lsn, lag_entries, last_contact_ms, repaired,\n"
	 "                        repairs_pending\n"
	 "  transfer --to ID      ask the leader (followed from any node) to hand leadership to\n"
	 "                        voter ID; answered when the transfer has started\n"
	 "  add --id N --address tcp://HOST:PORT [--client tcp://HOST:PORT]\n"
	 "                        add node N (its cluster.peer_listen and client address) as a\n"
	 "                        learner: it receives the log, never votes. Add it before you\n"
	 "                        start it (config cluster.join: true): it then fetches a\n"
	 "                        snapshot. Ids are 1..16 and never reused\n"
	 "  promote ID            make learner ID a voter (refused while it lags more than\n"
	 "                        cluster.promote_lag entries)\n"
	 "  remove ID             remove member ID (not the leader: transfer first); it is told,\n"
	 "                        stops voting and campaigning; stop it afterwards\n"
	 "  force-promote --accept-data-loss\n"
	 "                        when the cluster lost its quorum for good (one of two nodes\n"
	 "                        died): make --host the only voter, the others learners; it\n"
	 "                        elects itself in a new epoch and says what may be lost\n"
	 "Each change is one entry of the log, one at a time, sent to the leader (followed\n"
	 "from any node; force-promote goes to --host itself).\n"
	 "A single node answers 'not a cluster: single node' (status: exit 0, on stderr with\n"
	 "--format jsonl; transfer: exit 1). Put --host after the subcommand or before 'cluster'.",
	 0},
};

static void main_usage(FILE *out)
{
	fprintf(out, "usage: strata [--host ADDR] [--timeout SECS] COMMAND [ARGS]\n\n"
		     "The strata command line: tables, loads, scans, queries, time travel and\n"
		     "maintenance on a running stratad.\n\ncommands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		/* The first sentence of the command's help, on one line. */
		const char *h = commands[i].help, *end = h;
		while (*end && !(end[0] == '.' && (end[1] == ' ' || end[1] == '\n' || !end[1]) &&
				 !(end - h >= 3 && !strncmp(end - 3, "e.g", 3))) &&
		       !(end[0] == ':' && (end[1] == ' ' || end[1] == '\n')))
			end++;
		fprintf(out, "  %-10s ", commands[i].name);
		for (const char *p = h; p < end; p++)
			fputc(*p == '\n' ? ' ' : *p, out);
		fputc('\n', out);
	}
	fprintf(out, "\n'strata COMMAND --help' tells more. Exit status: 0 ok, 1 error, 2 usage.\n"
		     "The daemon address is --host, else $STRATA_HOST, else %s.\n", SC_DEFAULT_HOST);
}

int main(int argc, char **argv)
{
	struct cli_global g = {.host = NULL};
	int i = 1;
	/* Global options before the command. */
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *opt = argv[i];
		if (!strcmp(opt, "-h") || !strcmp(opt, "--help")) {
			main_usage(stdout);
			return 0;
		}
		if (!strcmp(opt, "--version")) {
			printf("strata (protocol %d)\n", WIRE_VERSION);
			return 0;
		}
		/* --host ADDR or --host=ADDR, as the commands take them */
		size_t n = strcspn(opt, "=");
		bool host = n == 6 && !strncmp(opt, "--host", n);
		if (!host && !(n == 9 && !strncmp(opt, "--timeout", n))) {
			fprintf(stderr, "strata: unknown option '%s'\n", opt);
			main_usage(stderr);
			return CLI_EXIT_USAGE;
		}
		if (!opt[n] && i + 1 == argc) {
			fprintf(stderr, "strata: %s needs a value (%s)\n", opt,
				host ? "an address such as tcp://HOST:7420 or ipc://PATH" : "seconds");
			return CLI_EXIT_USAGE;
		}
		const char *val = opt[n] ? opt + n + 1 : argv[++i];
		if (host) {
			g.host = val;
		} else if (!cli_parse_timeout(val, &g.timeout_ms)) {
			fprintf(stderr, "strata: --timeout takes seconds (0 < N <= 86400), not '%s'\n",
				val);
			return CLI_EXIT_USAGE;
		}
	}
	if (i == argc) {
		main_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
		if (!strcmp(argv[i], commands[k].name)) {
			cli_current = &commands[k];
			optind = 1; /* the command parses its own argv */
			return commands[k].fn(argc - i, argv + i, &g);
		}
	fprintf(stderr, "strata: unknown command '%s'\n", argv[i]);
	main_usage(stderr);
	return CLI_EXIT_USAGE;
}
