/*
 * tests/fuzz/replay.c — run a libFuzzer target over a committed corpus
 * without clang: `replay_X DIR|FILE...` feeds every file to
 * LLVMFuzzerTestOneInput.
 *
 * The whole corpus is one test of the target: a clean run prints
 * "ok   replay fuzz_X: N inputs" and closes with "1 passed, 0 failed", so
 * the total of `make test` counts the target once, not once per input. A
 * crash or sanitizer report ends the process (the test runner counts the
 * missing closing line as a failure); an input that cannot be read, or a
 * corpus of no inputs at all, fails the target with "0 passed, 1 failed".
 */
#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Feed one file to the target; -1 (after saying why) when it cannot be read. */
static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return -1;
	}
	size_t cap = 1 << 16, n = 0;
	uint8_t *buf = malloc(cap);
	size_t got;
	while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
		n += got;
		if (n == cap) {
			uint8_t *nb = realloc(buf, cap *= 2);
			if (!nb)
				free(buf);
			buf = nb;
		}
	}
	int bad = ferror(f);
	fclose(f);
	if (!buf || bad) {
		fprintf(stderr, "%s: %s\n", path, buf ? "read error" : "out of memory");
		free(buf);
		return -1;
	}
	LLVMFuzzerTestOneInput(buf, n);
	free(buf);
	return 0;
}

/* "fuzz_X" from a runner named ".../replay_X". */
static void target_name(const char *argv0, char *out, size_t len)
{
	const char *base = strrchr(argv0, '/');
	base = base ? base + 1 : argv0;
	if (!strncmp(base, "replay_", 7))
		snprintf(out, len, "fuzz_%s", base + 7);
	else
		snprintf(out, len, "%s", base);
}

int main(int argc, char **argv)
{
	char name[256];
	long inputs = 0, unreadable = 0;
	target_name(argv[0], name, sizeof name);
	for (int a = 1; a < argc; a++) {
		struct stat st;
		if (stat(argv[a], &st) != 0) {
			perror(argv[a]);
			unreadable++;
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			replay_file(argv[a]) == 0 ? inputs++ : unreadable++;
			continue;
		}
		DIR *d = opendir(argv[a]);
		if (!d) {
			perror(argv[a]);
			unreadable++;
			continue;
		}
		struct dirent *de;
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			char path[4096];
			snprintf(path, sizeof path, "%s/%s", argv[a], de->d_name);
			replay_file(path) == 0 ? inputs++ : unreadable++;
		}
		closedir(d);
	}
	bool ok = unreadable == 0 && inputs > 0;
	if (ok)
		printf("ok   replay %s: %ld inputs\n", name, inputs);
	else if (unreadable)
		printf("FAIL replay %s: %ld inputs, %ld could not be read\n", name, inputs,
		       unreadable);
	else
		printf("FAIL replay %s: no inputs (replayed nothing)\n", name);
	printf("%d passed, %d failed\n", ok ? 1 : 0, ok ? 0 : 1);
	return ok ? 0 : 1;
}
