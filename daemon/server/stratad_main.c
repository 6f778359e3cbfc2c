/*
 * daemon/server/stratad_main.c — stratad: the strata daemon.
 *
 *   stratad -c FILE [--daemonize --pidfile PATH]
 *   stratad --check-config -c FILE
 *
 * Runs in the foreground (systemd style) unless --daemonize. SIGTERM and
 * SIGINT: stop accepting requests, let running ones finish, close the
 * store. SIGHUP: read the config file again and apply its log level.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/server/cluster.h"
#include "daemon/server/config.h"
#include "daemon/server/log.h"
#include "daemon/server/server.h"
#include "daemon/store/strata.h"


#define READER_CHECK_S 60

static volatile sig_atomic_t got_stop, got_hup;

static void on_signal(int sig)
{
	if (sig == SIGHUP)
		got_hup = 1;
	else
		got_stop = 1;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: stratad -c FILE [--daemonize --pidfile PATH]\n"
		"       stratad --check-config -c FILE\n"
		"       stratad --verify DIR [--quick] [--head HASH]\n"
		"       stratad -c FILE --restore-from BACKUP\n"
		"\n"
		"The strata storage daemon. Serves the tables of one data directory over\n"
		"the strata wire protocol (format/PROTOCOL.md) to the `strata` CLI and clients.\n"
		"\n"
		"  -c, --config FILE   YAML config (see configs/strata.yaml for every key)\n"
		"      --check-config  validate the config, print the effective values, exit\n"
		"      --config-reference  print every config key (markdown table)\n"
		"      --verify DIR    check a stopped data directory offline: every record's\n"
		"                      checksum, every table's commit chain, the store's hash\n"
		"                      chain, every live segment's checksums, each table's file\n"
		"                      records against its commits, files no record names;\n"
		"                      prints each problem, the chain's last LSN and hash; exit\n"
		"                      0 clean, 1 damage found, 2 usage, 3 could not check\n"
		"                      (a backup, strata backup: also every file against its\n"
		"                      MANIFEST)\n"
		"      --quick         with --verify: the chains and segments only\n"
		"      --head HASH     with --verify: the chain hash (64 hex digits) recorded\n"
		"                      earlier (strata status); it must be in the chain\n"
		"      --restore-from BACKUP  make the config's data_dir (it must not exist) from\n"
		"                      a backup taken by `strata backup`: checked against its\n"
		"                      MANIFEST, copied, fsynced, renamed into place; then exit\n"
		"      --daemonize     detach from the terminal (needs --pidfile)\n"
		"      --pidfile PATH  write the daemon's pid there (removed at exit)\n"
		"  -h, --help          this help\n"
		"  -V, --version       print the version\n"
		"\n"
		"Signals: SIGTERM/SIGINT stop cleanly (running requests finish); SIGHUP\n"
		"re-reads the config and applies its log level.\n"
		"Exit status: 0 after a clean stop, 1 on an error, 2 on a usage error.\n");
}

/* Make sure fds 0, 1 and 2 are open (on /dev/null): LMDB and segment
 * files must never get them, or a stray write to stdout would land in a
 * database file. */
static int guard_std_fds(void)
{
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
			continue;
		int n = open("/dev/null", O_RDWR);
		if (n < 0)
			return -1;
		if (n != fd) {
			if (dup2(n, fd) < 0)
				return -1;
			close(n);
		}
	}
	return 0;
}

static int write_pidfile(const char *path)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0 || rename(tmp, path) != 0)
		return -1;
	return 0;
}

/* 64 hex digits into a chain hash; false when it is not that. */
static bool parse_hash(const char *hex, uint8_t out[ST_HASH_LEN])
{
	if (strlen(hex) != 2 * ST_HASH_LEN)
		return false;
	for (int i = 0; i < 2 * ST_HASH_LEN; i++) {
		int c = hex[i], d = c >= '0' && c <= '9'   ? c - '0'
				    : c >= 'a' && c <= 'f' ? c - 'a' + 10
				    : c >= 'A' && c <= 'F' ? c - 'A' + 10
							   : -1;
		if (d < 0)
			return false;
		out[i / 2] = (uint8_t)(i % 2 ? out[i / 2] << 4 | d : d);
	}
	return true;
}

static void print_hash(const char *label, uint64_t lsn, const uint8_t h[ST_HASH_LEN])
{
	printf("%s LSN %llu ", label, (unsigned long long)lsn);
	for (int i = 0; i < ST_HASH_LEN; i++)
		printf("%02x", h[i]);
	printf("\n");
}

/* stratad --verify DIR [--head HASH]: the offline check behind `strata
 * verify --data-dir`. */
static int verify_offline(const char *dir, const char *head_hex, bool quick)
{
	uint8_t head[ST_HASH_LEN];
	st_store *s;
	struct st_err err;
	struct st_verify_result r;
	struct stat st;
	if (head_hex && !parse_hash(head_hex, head)) {
		fprintf(stderr, "stratad --verify: --head takes a chain hash of %d hex digits, not "
				"'%s'\n", 2 * ST_HASH_LEN, head_hex);
		return 2;
	}
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "stratad --verify: '%s' is not a directory\n", dir);
		return 3;
	}
	/* A backup (strata backup): its files against its MANIFEST first,
	 * before opening it can touch them. */
	char mpath[4200];
	snprintf(mpath, sizeof mpath, "%s/MANIFEST", dir);
	uint32_t manifest_problems = 0;
	if (stat(mpath, &st) == 0) {
		struct st_backup_result br;
		char **probs;
		if (st_backup_check(dir, &br, &probs, &manifest_problems, &err) != ST_OK) {
			fprintf(stderr, "stratad --verify: %s\n", err.msg);
			return err.code == ST_ECORRUPT ? 1 : 3;
		}
		for (uint32_t i = 0; i < manifest_problems; i++) {
			printf("DAMAGED: backup: %s\n", probs[i]);
			free(probs[i]);
		}
		free(probs);
		printf("backup: %llu files in its MANIFEST, %u differ; its chain head: LSN %llu\n",
		       (unsigned long long)br.files, manifest_problems, (unsigned long long)br.lsn);
	}
	int rc = st_store_open(dir, NULL, &s, &err);
	if (rc == ST_EEXIST) {
		fprintf(stderr, "stratad --verify: %s: a running stratad holds it; use `strata verify` "
				"(through the daemon) or stop it first\n", err.msg);
		return 3;
	}
	if (rc != ST_OK) {
		fprintf(stderr, "stratad --verify: %s\n", err.msg);
		return rc == ST_ECORRUPT ? 1 : 3;
	}
	struct st_verify_opts vo = {.quick = quick, .head = head_hex ? head : NULL};
	rc = st_verify_ex(s, &vo, &r, &err);
	st_store_close(s);
	if (rc != ST_OK) {
		fprintf(stderr, "stratad --verify: %s\n", err.msg);
		return rc == ST_ECORRUPT ? 1 : 3;
	}
	for (uint32_t i = 0; i < r.nproblems; i++)
		printf("DAMAGED: %s\n", r.problems[i]);
	print_hash("chain:", r.last_lsn, r.last_hash);
	if (r.head_lsn)
		printf("head %.16s found at LSN %llu\n", head_hex, (unsigned long long)r.head_lsn);
	printf("%s: %llu records, %llu segments and %llu commits checked, %llu orphan files%s, "
	       "%u problem%s\n", r.nproblems ? "FAILED" : "ok", (unsigned long long)r.records,
	       (unsigned long long)r.segments, (unsigned long long)r.commits,
	       (unsigned long long)r.orphans, quick ? " (quick: chains and segments only)" : "",
	       r.nproblems, r.nproblems == 1 ? "" : "s");
	int status = r.nproblems || manifest_problems ? 1 : 0;
	st_verify_result_fini(&r);
	return status;
}

/* stratad -c FILE --restore-from DIR: FILE's data_dir made from backup DIR. */
static int restore_from(const char *backup, const char *cfg_path)
{
	struct sd_config cfg;
	struct st_err err;
	if (sd_config_load(cfg_path, &cfg, &err) != ST_OK) {
		fprintf(stderr, "stratad: %s\n", err.msg);
		return 1;
	}
	struct st_backup_result r;
	int rc = st_restore_from(backup, cfg.data_dir, &r, &err);
	if (rc != ST_OK)
		fprintf(stderr, "stratad --restore-from: %s\n", err.msg);
	else
		printf("restored %s from the backup in %s: %llu files, %.1f MB, chain head LSN %llu; "
		       "start stratad -c %s\n", cfg.data_dir, backup, (unsigned long long)r.files,
		       (double)r.bytes / 1e6, (unsigned long long)r.lsn, cfg_path);
	sd_config_fini(&cfg);
	return rc == ST_OK ? 0 : 1;
}

/* Whether a listen address only takes local clients: ipc://, or tcp:// on
 * a loopback host (127.x.y.z, localhost, [::1]). */
static bool local_address(const char *a)
{
	if (!strncmp(a, "ipc://", 6) || !strncmp(a, "inproc://", 9))
		return true;
	if (strncmp(a, "tcp://", 6))
		return false;
	const char *h = a + 6;
	return !strncmp(h, "127.", 4) || !strncmp(h, "localhost:", 10) || !strncmp(h, "[::1]:", 6);
}

/* What opening the store checked, and each table it found damaged. */
static void log_open(st_store *s)
{
	struct st_open_report r;
	st_store_open_report(s, &r);
	if (r.format_from && r.format_from < r.format)
		sd_log(SD_LOG_INFO, "store upgraded in place from format %u to %u", r.format_from,
		       r.format);
	sd_log(SD_LOG_INFO, "store opened: %llu tables; checked the chains of their newest commits "
	       "(up to 64 each: %llu commits) and the log's newest %llu records; removed %llu "
	       "leftover files of uncommitted writes (the whole store: strata verify, and the "
	       "scrub in the background)", (unsigned long long)r.tables,
	       (unsigned long long)r.commits, (unsigned long long)r.log_records,
	       (unsigned long long)r.leftovers);
	char *why[16];
	uint32_t n = st_damaged_reasons(s, why, 16);
	for (uint32_t i = 0; i < n && i < 16; i++) {
		sd_log(SD_LOG_WARN, "DAMAGED at open: %s; the table is refused for reads and writes "
		       "until it is repaired or dropped", why[i] ? why[i] : "?");
		free(why[i]);
	}
	if (n > 16)
		sd_log(SD_LOG_WARN, "DAMAGED at open: %u tables in all (strata status lists them)", n);
}

static int daemonize(void)
{
	pid_t p = fork();
	if (p < 0)
		return -1;
	if (p > 0)
		_exit(0);
	if (setsid() < 0)
		return -1;
	if ((p = fork()) < 0)
		return -1;
	if (p > 0)
		_exit(0);
	int n = open("/dev/null", O_RDWR);
	if (n < 0)
		return -1;
	dup2(n, 0);
	dup2(n, 1);
	dup2(n, 2);
	if (n > 2)
		close(n);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longs[] = {
		{"config", required_argument, NULL, 'c'}, {"check-config", no_argument, NULL, 'k'},
		{"daemonize", no_argument, NULL, 'd'},    {"pidfile", required_argument, NULL, 'p'},
		{"help", no_argument, NULL, 'h'},         {"version", no_argument, NULL, 'V'},
		{"verify", required_argument, NULL, 'v'},
		{"head", required_argument, NULL, 'H'},
		{"quick", no_argument, NULL, 'Q'},
		{"config-reference", no_argument, NULL, 'R'},
		{"restore-from", required_argument, NULL, 'r'},
		{NULL, 0, NULL, 0}};
	const char *cfg_path = NULL, *pidfile = NULL, *verify_dir = NULL, *head = NULL,
		   *restore = NULL;
	bool check = false, detach = false, quick = false;
	int o;
	if (guard_std_fds() != 0)
		return 1;
	while ((o = getopt_long(argc, argv, "c:hV", longs, NULL)) != -1) {
		switch (o) {
		case 'c': cfg_path = optarg; break;
		case 'k': check = true; break;
		case 'd': detach = true; break;
		case 'p': pidfile = optarg; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("stratad %s\n", ST_VERSION_STRING); return 0;
		case 'v': verify_dir = optarg; break;
		case 'H': head = optarg; break;
		case 'Q': quick = true; break;
		case 'r': restore = optarg; break;
		case 'R':
			printf("| key | type | default | range | meaning |\n|---|---|---|---|---|\n");
			sd_config_reference(stdout);
			return 0;
		default: usage(stderr); return 2;
		}
	}
	if ((head || quick) && !verify_dir) {
		fprintf(stderr, "stratad: --head and --quick go with --verify DIR\n");
		return 2;
	}
	if (verify_dir) {
		if (optind < argc) {
			fprintf(stderr, "stratad: unexpected argument '%s'\n", argv[optind]);
			return 2;
		}
		return verify_offline(verify_dir, head, quick);
	}
	if (restore) {
		if (optind < argc || !cfg_path || check || detach) {
			fprintf(stderr, "stratad: --restore-from BACKUP goes with -c FILE alone\n");
			return 2;
		}
		return restore_from(restore, cfg_path);
	}
	if (optind < argc || !cfg_path || (detach && !pidfile)) {
		if (optind < argc)
			fprintf(stderr, "stratad: unexpected argument '%s'\n", argv[optind]);
		else if (!cfg_path)
			fprintf(stderr, "stratad: a config file is needed (-c FILE; configs/strata.yaml "
					"documents every key)\n");
		else
			fprintf(stderr, "stratad: --daemonize needs --pidfile PATH\n");
		usage(stderr);
		return 2;
	}

	struct sd_config cfg;
	struct st_err err;
	if (sd_config_load(cfg_path, &cfg, &err) != ST_OK) {
		fprintf(stderr, "stratad: %s\n", err.msg);
		return 1;
	}
	if (check) {
		printf("# %s: valid; effective configuration:\n", cfg_path);
		sd_config_print(stdout, &cfg);
		sd_config_fini(&cfg);
		return 0;
	}
	if (detach && daemonize() != 0) {
		fprintf(stderr, "stratad: cannot daemonize: %s\n", strerror(errno));
		return 1;
	}
	sd_log_setup((enum sd_log_target)cfg.log_target, (enum sd_log_level)cfg.log_level);
	if (pidfile && write_pidfile(pidfile) != 0) {
		sd_log(SD_LOG_ERROR, "cannot write pid file '%s': %s", pidfile, strerror(errno));
		sd_config_fini(&cfg);
		return 1;
	}

	struct sigaction sa = {.sa_handler = on_signal};
	int rc_boot;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	int status = 1;
	st_store *s = NULL;
	sd_server *srv = NULL;
	struct sd_node *node = NULL;
	struct st_store_opts so = {.map_size = cfg.map_size,
				   .log_retention_us = cfg.log_retention_us,
				   .file_retention_us = cfg.file_retention_us,
				   .nosync = cfg.fsync == SD_FSYNC_OFF};
	for (uint32_t i = 0; i < cfg.nlisten && !cfg.auth_file && !cfg.allow_unauthenticated; i++)
		if (!local_address(cfg.listen[i])) {
			sd_log(SD_LOG_ERROR, "listen %s is reachable from other machines and the config "
			       "has no auth_file: give clients tokens (auth_file), or set "
			       "allow_unauthenticated: true to serve anyone who can connect",
			       cfg.listen[i]);
			goto out;
		}
	/* A bootstrap is safe to kill at any point (REPLICATION.md §14):
	 * SIGTERM/SIGINT end it at once rather than after its fetches. */
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	rc_boot = sd_node_bootstrap(&cfg, &err);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (rc_boot != ST_OK) {
		sd_log(SD_LOG_ERROR, "cannot join the cluster: %s", err.msg);
		goto out;
	}
	if (mkdir(cfg.data_dir, 0755) != 0 && errno != EEXIST) {
		sd_log(SD_LOG_ERROR, "cannot create data directory '%s': %s", cfg.data_dir,
		       strerror(errno));
		goto out;
	}
	if (st_store_open(cfg.data_dir, &so, &s, &err) != ST_OK) {
		sd_log(SD_LOG_ERROR, "cannot open the store: %s", err.msg);
		goto out;
	}
	for (uint32_t i = 0; i < cfg.nwarnings; i++)
		sd_log(SD_LOG_WARN, "%s", cfg.warnings[i]);
	log_open(s);
	if (cfg.cluster.enabled && sd_node_start(s, &cfg, &node, &err) != ST_OK) {
		sd_log(SD_LOG_ERROR, "cannot start replication: %s", err.msg);
		goto out;
	}
	struct sd_server_opts opts = {
		.listen = (const char *const *)cfg.listen,
		.nlisten = cfg.nlisten,
		.workers = cfg.workers,
		.max_message_size = cfg.max_message_size,
		.max_batch_rows = cfg.max_batch_rows,
		.cursor_timeout_us = cfg.cursor_timeout_us,
		.data_dir = cfg.data_dir,
		.version = ST_VERSION_STRING,
		.node = node,
		.scrub_interval_us = cfg.scrub_interval_us,
		.scrub_rate_mb_s = cfg.scrub_rate_mb_s,
		.auto_optimize_interval_us = cfg.auto_optimize_interval_us,
		.auto_optimize_files = cfg.auto_optimize_files,
		.auto_optimize_deleted = cfg.auto_optimize_deleted_pct / 100.0,
		.auto_optimize_target = (uint64_t)cfg.auto_optimize_target_mb << 20,
		.auto_optimize_rate_mb_s = cfg.auto_optimize_rate_mb_s,
		.auth_file = cfg.auth_file,
	};
	if (sd_server_start(s, &opts, &srv, &err) != ST_OK) {
		sd_log(SD_LOG_ERROR, "cannot start serving: %s", err.msg);
		goto out;
	}
	for (uint32_t i = 0; i < cfg.nlisten; i++)
		sd_log(SD_LOG_INFO, "listening on %s", cfg.listen[i]);
	sd_log(SD_LOG_INFO, "stratad %s ready: data directory %s, %u workers, fsync %s%s",
	       ST_VERSION_STRING, cfg.data_dir, cfg.workers,
	       cfg.fsync == SD_FSYNC_OFF ? "off" : "on",
	       node ? ", cluster node" : ", single node");
	if (node)
		sd_log(SD_LOG_INFO, "cluster node %llu of %u, peer links on %s",
		       (unsigned long long)cfg.cluster.node_id, cfg.cluster.npeers + 1,
		       cfg.cluster.peer_listen);
	time_t last_check = time(NULL);
	while (!got_stop) {
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
		if (got_hup) {
			got_hup = 0;
			struct sd_config again;
			if (sd_config_load(cfg_path, &again, &err) != ST_OK) {
				sd_log(SD_LOG_ERROR, "SIGHUP: config not reloaded: %s", err.msg);
			} else {
				sd_log_set_level((enum sd_log_level)again.log_level);
				/* At warn, so the change shows at any level but error. */
				sd_log(SD_LOG_WARN, "SIGHUP: log level reloaded: %s",
				       sd_log_level_name((enum sd_log_level)again.log_level));
				sd_config_fini(&again);
			}
		}
		if (time(NULL) - last_check >= READER_CHECK_S) {
			int dead = st_store_check_readers(s);
			if (dead > 0)
				sd_log(SD_LOG_WARN, "cleared %d stale LMDB reader slots", dead);
			else if (dead < 0)
				sd_log(SD_LOG_ERROR, "checking LMDB reader slots failed: %s",
				       st_strerror(dead));
			last_check = time(NULL);
		}
	}
	sd_log(SD_LOG_INFO, "stopping: finishing running requests");
	status = 0;
out:
	sd_server_stop(srv);
	sd_node_stop(node);
	st_store_close(s);
	if (status == 0)
		sd_log(SD_LOG_INFO, "stopped cleanly");
	if (pidfile)
		unlink(pidfile);
	sd_config_fini(&cfg);
	return status;
}
