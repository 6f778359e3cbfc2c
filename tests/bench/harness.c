/*
 * tests/bench/harness.c — see harness.h.
 */
#include "tests/bench/harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void bench_die(const char *fmt, const char *arg)
{
	fprintf(stderr, "%s: ", program_invocation_short_name);
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	exit(1);
}

int bench_run2(char *const argv[], char *out, size_t outlen, double *wall, bool both)
{
	int fd[2];
	if (pipe(fd) != 0)
		return -1;
	double t0 = bench_now();
	pid_t p = fork();
	if (p < 0)
		return -1;
	if (p == 0) {
		dup2(fd[1], 1);
		if (both)
			dup2(fd[1], 2);
		close(fd[0]);
		close(fd[1]);
		execvp(argv[0], argv);
		fprintf(stderr, "%s: cannot run %s: %s\n", program_invocation_short_name, argv[0],
			strerror(errno));
		_exit(127);
	}
	close(fd[1]);
	size_t len = 0;
	char sink[4096];
	for (;;) {
		char *dst = out && len + 1 < outlen ? out + len : sink;
		size_t room = out && len + 1 < outlen ? outlen - len - 1 : sizeof sink;
		ssize_t n = read(fd[0], dst, room);
		if (n <= 0)
			break;
		if (dst != sink)
			len += (size_t)n;
	}
	close(fd[0]);
	if (out)
		out[len] = '\0';
	int st;
	waitpid(p, &st, 0);
	if (wall)
		*wall = bench_now() - t0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int bench_run(char *const argv[], char *out, size_t outlen, double *wall)
{
	return bench_run2(argv, out, outlen, wall, false);
}

double bench_json_num(const char *json, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof pat, "\"%s\":", key);
	const char *p = json ? strstr(json, pat) : NULL;
	return p ? strtod(p + strlen(pat), NULL) : -1;
}

void bench_json_str(const char *json, const char *key, char *buf, size_t len)
{
	char pat[64];
	snprintf(pat, sizeof pat, "\"%s\":\"", key);
	const char *p = strstr(json, pat);
	buf[0] = '\0';
	if (p) {
		p += strlen(pat);
		const char *e = strchr(p, '"');
		snprintf(buf, len, "%.*s", e ? (int)(e - p) : 0, p);
	}
}

int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}
