/*
 * tests/fault/flip.c — the bit-flip campaign (issue "integrity at rest").
 *
 * Builds a small store once: three tables, a few hundred commits (small
 * appends kept inline in LMDB, larger loads in segment files), a restore,
 * a compaction and a vacuum in the history. Records the answers of a
 * fixed query set. Then, per trial, copies the directory, flips one random
 * bit of store/data.mdb (4 in 5 trials) or of a random segment file,
 * opens the copy in a child process, runs the query set, compares it with
 * the known answers and runs a full verify. The parent classifies the
 * trial: answer changed, detected by a read (open or a query failed),
 * detected by verify, silent (an answer changed and nothing detected it),
 * crash (the child died by a signal), hang (it ran past its deadline).
 *
 *   flip [--flips N] [--seed S] [--control] [--keep] [--verbose] [--dir D]
 *        [--max-crashes N] [--check DIR]
 *
 * Prints one JSON line per trial that is not clean with --verbose, then the
 * figures as one JSON line, then "N passed, N failed". The run passes when
 * no flip is silent and nothing crashed or hung. --control sets
 * STRATA_TEST_NO_INTEGRITY=1 (record checksums and verify's cross-checks
 * off) and inverts the verdict: it passes only when some flip is silent,
 * which shows the campaign can see a loss.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon/store/strata.h"

#define NTABLES 3
#define NANSWERS 64
#define TRIAL_SECONDS 20

static const char *const tables[NTABLES] = {"events", "metrics", "small"};

static uint64_t rng_state;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void die(const char *what, const struct st_err *e)
{
	fprintf(stderr, "flip: %s: %s\n", what, e ? e->msg : strerror(errno));
	exit(2);
}

static void put_rows(st_store *s, const char *t, int64_t from, uint32_t n)
{
	static int64_t a[20000], b[20000];
	const char *names[2] = {"k", "v"};
	for (uint32_t i = 0; i < n; i++) {
		a[i] = from + i;
		b[i] = (from + i) * 7 % 1000;
	}
	struct st_vec v[2] = {{.type = ST_TYPE_INT64, .n = n, .data = a},
			      {.type = ST_TYPE_INT64, .n = n, .data = b}};
	struct st_batch bt = {2, names, v, n};
	struct st_commit_result r;
	struct st_err e;
	if (st_write(s, t, &bt, 1, NULL, &r, &e) != ST_OK)
		die("write", &e);
}

static void build(const char *dir)
{
	st_store *s;
	struct st_err e;
	struct st_commit_result r;
	if (st_store_open(dir, NULL, &s, &e) != ST_OK)
		die("open", &e);
	struct st_column_def c[2] = {{"k", ST_TYPE_INT64, false}, {"v", ST_TYPE_INT64, false}};
	for (int i = 0; i < NTABLES; i++) {
		struct st_table_spec sp = {.name = tables[i], .cols = c, .ncols = 2};
		if (st_table_create(s, &sp, ST_CREATE_ERROR, NULL, &e) != ST_OK)
			die("create", &e);
	}
	int64_t k = 0;
	for (int i = 0; i < 240; i++) {
		put_rows(s, tables[i % NTABLES], k, 1 + (uint32_t)(i % 9));
		k += 10;
	}
	put_rows(s, "events", 100000, 20000); /* segment files */
	put_rows(s, "metrics", 200000, 8000);
	if (st_table_restore(s, "small", (struct st_at){ST_AT_VERSION, 40}, &r, &e) != ST_OK)
		die("restore", &e);
	if (st_table_compact(s, "metrics", &r, &e) != ST_OK)
		die("compact", &e);
	struct st_vacuum_opts vo = {.retain_us = 1, .force = true};
	struct st_vacuum_result vr;
	usleep(2000);
	if (st_vacuum(s, "metrics", &vo, &vr, &e) != ST_OK)
		die("vacuum", &e);
	st_vacuum_result_fini(&vr);
	for (int i = 0; i < 60; i++) {
		put_rows(s, tables[i % NTABLES], k, 2);
		k += 10;
	}
	st_store_close(s);
}

/* count, sum(k), sum(v) of table t at at; 0 or the error code. */
static int scan_sums(st_store *s, const char *t, struct st_at at, int64_t out[3])
{
	st_scan *sc;
	struct st_err e;
	const struct st_scan_batch *b;
	int rc = st_scan_open(s, t, at, NULL, 0, NULL, &sc, &e);
	if (rc != ST_OK)
		return rc;
	out[0] = out[1] = out[2] = 0;
	while ((rc = st_scan_next(sc, &b, &e)) == ST_OK && b) {
		const int64_t *kk = b->cols[0].data, *vv = b->cols[1].data;
		uint32_t n = b->sel ? b->nsel : b->rows;
		for (uint32_t j = 0; j < n; j++) {
			uint32_t i = b->sel ? b->sel[j] : j;
			out[0]++;
			out[1] += kk[i];
			out[2] += vv[i];
		}
	}
	st_scan_close(sc);
	return rc;
}

/* The query set: per table, latest and two older versions. Each answer
 * slot is 3 numbers; a failed query stores its error code in slot 0 with
 * a flag. Returns the number of queries that failed. */
static int64_t latest[NTABLES]; /* each table's version in the clean store */

static int run_queries(st_store *s, int64_t ans[NANSWERS][3])
{
	int failed = 0, q = 0;
	for (int t = 0; t < NTABLES; t++) {
		struct st_at ats[3] = {{ST_AT_LATEST, 0},
				       {ST_AT_VERSION, latest[t] - 5},
				       {ST_AT_VERSION, latest[t] - 15}};
		for (int a = 0; a < 3; a++, q++) {
			int rc = scan_sums(s, tables[t], ats[a], ans[q]);
			if (rc != ST_OK) {
				ans[q][0] = -1000 - rc;
				failed++;
			}
		}
	}
	return failed;
}

static void copy_file(const char *from, const char *to)
{
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	char buf[1 << 16];
	ssize_t n;
	if (in < 0 || out < 0)
		die(from, NULL);
	while ((n = read(in, buf, sizeof buf)) > 0)
		if (write(out, buf, (size_t)n) != n)
			die(to, NULL);
	close(in);
	close(out);
}

static void copy_tree(const char *from, const char *to)
{
	mkdir(to, 0755);
	DIR *d = opendir(from);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.' || !strcmp(de->d_name, "lock.mdb"))
			continue;
		char a[4096], b[4096];
		snprintf(a, sizeof a, "%s/%s", from, de->d_name);
		snprintf(b, sizeof b, "%s/%s", to, de->d_name);
		struct stat st;
		if (stat(a, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode))
			copy_tree(a, b);
		else
			copy_file(a, b);
	}
	if (d)
		closedir(d);
}

static void rm_tree(const char *p)
{
	DIR *d = opendir(p);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char a[4096];
		snprintf(a, sizeof a, "%s/%s", p, de->d_name);
		struct stat st;
		if (lstat(a, &st) == 0 && S_ISDIR(st.st_mode))
			rm_tree(a);
		else
			unlink(a);
	}
	if (d)
		closedir(d);
	rmdir(p);
}

/* A random segment file of dir, or NULL. */
static char *pick_segment(const char *dir, char *out, size_t len)
{
	char tdir[4096];
	snprintf(tdir, sizeof tdir, "%s/tables", dir);
	char names[256][64];
	int n = 0;
	DIR *d = opendir(tdir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char sub[4096];
		snprintf(sub, sizeof sub, "%s/%s", tdir, de->d_name);
		DIR *sd = opendir(sub);
		struct dirent *f;
		while (sd && (f = readdir(sd)))
			if (strstr(f->d_name, ".seg") && n < 256)
				snprintf(names[n++], 64, "%.16s/%.40s", de->d_name, f->d_name);
		if (sd)
			closedir(sd);
	}
	if (d)
		closedir(d);
	if (!n)
		return NULL;
	snprintf(out, len, "%s/%s", tdir, names[rnd() % (uint64_t)n]);
	return out;
}

/* Child outcome bits (exit status). O_DONE marks a child that ran to its
 * end: a sanitizer that catches a fault exits with a plain status (1), which
 * must count as a crash, not as a changed answer. */
enum { O_CHANGED = 1, O_READ = 2, O_VERIFY = 4, O_DONE = 0x40 };

static int child(const char *dir, int64_t ref[NANSWERS][3])
{
	st_store *s;
	struct st_err e;
	int out = 0;
	if (st_store_open(dir, NULL, &s, &e) != ST_OK)
		return O_READ; /* refused at open: detected, nothing answered */
	int64_t ans[NANSWERS][3];
	if (run_queries(s, ans))
		out |= O_READ;
	for (int q = 0; q < NTABLES * 3; q++)
		if (ans[q][0] > -1000 && memcmp(ans[q], ref[q], sizeof ans[q]))
			out |= O_CHANGED;
	struct st_verify_result vr;
	if (st_verify(s, &vr, &e) != ST_OK || vr.nproblems)
		out |= O_VERIFY;
	if (vr.nproblems)
		st_verify_result_fini(&vr);
	st_store_close(s);
	return out;
}

int main(int argc, char **argv)
{
	long flips = 200;
	uint64_t seed = (uint64_t)time(NULL);
	bool control = false, keep = false, verbose = false;
	long max_crashes = 0;
	const char *base = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--flips") && i + 1 < argc)
			flips = atol(argv[++i]);
		else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			seed = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--max-crashes") && i + 1 < argc)
			max_crashes = atol(argv[++i]);
		else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
			base = argv[++i];
		else if (!strcmp(argv[i], "--check") && i + 1 < argc) {
			/* Reproduce one trial's child on a kept directory. */
			int64_t ref[NANSWERS][3] = {{0}};
			int o = child(argv[++i], ref);
			printf("read_detected %d verify_detected %d\n", !!(o & O_READ),
			       !!(o & O_VERIFY));
			return 0;
		} else if (!strcmp(argv[i], "--control"))
			control = true;
		else if (!strcmp(argv[i], "--keep"))
			keep = true;
		else if (!strcmp(argv[i], "--verbose"))
			verbose = true;
		else {
			fprintf(stderr, "usage: flip [--flips N] [--seed S] [--control] [--keep] "
					"[--verbose] [--dir D] [--max-crashes N] [--check DIR]\n");
			return 2;
		}
	}
	rng_state = seed * 2654435761u + 1;
	if (control)
		setenv("STRATA_TEST_NO_INTEGRITY", "1", 1);
	char root[4096], clean[4200], trial[4200];
	if (base)
		snprintf(root, sizeof root, "%s", base);
	else
		snprintf(root, sizeof root, "%s/strata-flip-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!base && !mkdtemp(root))
		die("mkdtemp", NULL);
	mkdir(root, 0755);
	snprintf(clean, sizeof clean, "%s/clean", root);
	build(clean);
	int64_t ref[NANSWERS][3];
	{
		st_store *s;
		struct st_err e;
		if (st_store_open(clean, NULL, &s, &e) != ST_OK)
			die("open", &e);
		for (int t = 0; t < NTABLES; t++) {
			st_scan *sc;
			if (st_scan_open(s, tables[t], (struct st_at){ST_AT_LATEST, 0}, NULL, 0, NULL,
					 &sc, &e) != ST_OK)
				die("scan", &e);
			latest[t] = (int64_t)st_scan_version(sc);
			st_scan_close(sc);
		}
		if (run_queries(s, ref))
			die("reference queries failed", NULL);
		st_store_close(s);
	}
	long changed = 0, by_read = 0, by_verify = 0, silent = 0, crashes = 0, hangs = 0;
	for (long t = 0; t < flips; t++) {
		snprintf(trial, sizeof trial, "%s/t%ld", root, t);
		copy_tree(clean, trial);
		char target[4300];
		if (rnd() % 5 == 0 && pick_segment(trial, target, sizeof target))
			;
		else
			snprintf(target, sizeof target, "%s/store/data.mdb", trial);
		struct stat st;
		int fd = open(target, O_RDWR);
		if (fd < 0 || fstat(fd, &st) != 0 || st.st_size == 0)
			die(target, NULL);
		off_t off = (off_t)(rnd() % (uint64_t)st.st_size);
		int bit = (int)(rnd() % 8);
		unsigned char byte;
		if (pread(fd, &byte, 1, off) != 1)
			die(target, NULL);
		byte ^= (unsigned char)(1u << bit);
		if (pwrite(fd, &byte, 1, off) != 1)
			die(target, NULL);
		close(fd);
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			alarm(TRIAL_SECONDS);
			_exit(O_DONE | child(trial, ref));
		}
		int ws = 0;
		waitpid(pid, &ws, 0);
		bool crash = false, hang = false;
		int o = 0;
		if (WIFSIGNALED(ws)) {
			if (WTERMSIG(ws) == SIGALRM)
				hang = true;
			else
				crash = true;
		} else if ((WEXITSTATUS(ws) & ~(O_CHANGED | O_READ | O_VERIFY)) != O_DONE) {
			crash = true;
		} else {
			o = WEXITSTATUS(ws);
		}
		bool ch = o & O_CHANGED, rd = o & O_READ, vf = o & O_VERIFY;
		bool si = ch && !rd && !vf;
		changed += ch;
		by_read += rd;
		by_verify += vf;
		silent += si;
		crashes += crash;
		hangs += hang;
		const char *rel = target + strlen(trial) + 1;
		if (verbose || si || crash || hang)
			printf("{\"trial\":%ld,\"file\":\"%s\",\"offset\":%lld,\"bit\":%d,\"changed\":%d,"
			       "\"read_detected\":%d,\"verify_detected\":%d,\"silent\":%d,\"crash\":%d,"
			       "\"hang\":%d%s}\n",
			       t, rel, (long long)off, bit, ch, rd, vf, si, crash, hang,
			       crash ? ",\"signal\":1" : "");
		if (!(keep && (si || crash || hang)))
			rm_tree(trial);
		else
			printf("kept %s\n", trial);
	}
	printf("{\"seed\":%" PRIu64 ",\"control\":%s,\"flips\":%ld,\"flips_changing_answers\":%ld,"
	       "\"flips_detected_by_read\":%ld,\"flips_detected_by_verify\":%ld,"
	       "\"flips_silent\":%ld,\"crashes\":%ld,\"hangs\":%ld}\n",
	       seed, control ? "true" : "false", flips, changed, by_read, by_verify, silent,
	       crashes, hangs);
	if (!keep && !base)
		rm_tree(root);
	bool ok = control ? silent > 0 : silent == 0 && crashes <= max_crashes && hangs == 0;
	if (control)
		printf("negative control: %s (%ld silent flips with checksums and cross-checks off)\n",
		       ok ? "the campaign sees losses" : "NO silent flip seen: the campaign is blind",
		       silent);
	printf("%d passed, %d failed\n", ok ? 1 : 0, ok ? 0 : 1);
	return ok ? 0 : 1;
}
