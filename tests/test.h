/*
 * tests/test.h — the in-tree unit test harness.
 *
 * A test file defines its tests as plain functions, lists them in one
 * table and hands it to TEST_MAIN:
 *
 *     static void t_roundtrip(void) { CHECK(1 + 1 == 2); }
 *     static const struct test_case tests[] = {{"roundtrip", t_roundtrip}};
 *     TEST_MAIN(tests)
 *
 * CHECK records a failure and goes on; REQUIRE records it and ends the
 * current test (longjmp back to the runner). `runner -t NAME` runs one test,
 * `runner -l` lists them. The run closes with the line "N passed, N failed"
 * and exits 1 when any test failed.
 */
#ifndef STRATA_TESTS_TEST_H
#define STRATA_TESTS_TEST_H

#include <inttypes.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct test_case {
	const char *name;  /* name used by -t */
	void (*fn)(void);  /* the test body */
};

extern int test_failures_;    /* failures in the current test */
extern jmp_buf test_abort_;   /* REQUIRE jumps here */

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "  %s:%d: CHECK(%s) failed\n",       \
				__FILE__, __LINE__, #cond);                  \
			test_failures_++;                                    \
		}                                                            \
	} while (0)

#define REQUIRE(cond)                                                        \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "  %s:%d: REQUIRE(%s) failed\n",     \
				__FILE__, __LINE__, #cond);                  \
			test_failures_++;                                    \
			longjmp(test_abort_, 1);                             \
		}                                                            \
	} while (0)

/* CHECK that a and b are equal integers, printing both on failure. */
#define CHECK_EQ(a, b)                                                       \
	do {                                                                 \
		long long a_ = (long long)(a), b_ = (long long)(b);          \
		if (a_ != b_) {                                              \
			fprintf(stderr, "  %s:%d: CHECK_EQ(%s, %s): %lld != %lld\n", \
				__FILE__, __LINE__, #a, #b, a_, b_);         \
			test_failures_++;                                    \
		}                                                            \
	} while (0)

/* CHECK that string s contains needle, printing s on failure. */
#define CHECK_CONTAINS(s, needle)                                            \
	do {                                                                 \
		const char *s_ = (s);                                        \
		if (!s_ || !strstr(s_, (needle))) {                          \
			fprintf(stderr, "  %s:%d: \"%s\" does not contain \"%s\"\n", \
				__FILE__, __LINE__, s_ ? s_ : "(null)", (needle)); \
			test_failures_++;                                    \
		}                                                            \
	} while (0)

int test_run_(const struct test_case *cases, size_t n, int argc, char **argv);

#define TEST_MAIN(table)                                                     \
	int test_failures_;                                                  \
	jmp_buf test_abort_;                                                 \
	/* setjmp in a function of its own: no caller locals to clobber. */ \
	static void test_run_one_(void (*fn)(void))                          \
	{                                                                    \
		if (!setjmp(test_abort_))                                    \
			fn();                                                \
	}                                                                    \
	int main(int argc, char **argv)                                      \
	{                                                                    \
		return test_run_(table, sizeof(table) / sizeof((table)[0]),  \
				 argc, argv);                                \
	}                                                                    \
	int test_run_(const struct test_case *cases, size_t n, int argc,     \
		      char **argv)                                           \
	{                                                                    \
		const char *only = NULL;                                     \
		int passed = 0, failed = 0;                                  \
		for (int a = 1; a < argc; a++) {                             \
			if (!strcmp(argv[a], "-t") && a + 1 < argc) {        \
				only = argv[++a];                            \
			} else if (!strcmp(argv[a], "-l")) {                 \
				for (size_t i = 0; i < n; i++)               \
					printf("%s\n", cases[i].name);       \
				return 0;                                    \
			} else {                                             \
				fprintf(stderr, "usage: %s [-t NAME] [-l]\n", argv[0]); \
				return 2;                                    \
			}                                                    \
		}                                                            \
		for (size_t i = 0; i < n; i++) {                             \
			if (only && strcmp(only, cases[i].name))             \
				continue;                                    \
			test_failures_ = 0;                                  \
			test_run_one_(cases[i].fn);                          \
			printf("%s %s\n", test_failures_ ? "FAIL" : "ok  ", cases[i].name); \
			fflush(stdout);                                      \
			if (test_failures_)                                  \
				failed++;                                    \
			else                                                 \
				passed++;                                    \
		}                                                            \
		if (only && passed + failed == 0) {                          \
			fprintf(stderr, "no test named %s\n", only);         \
			failed = 1;                                          \
		}                                                            \
		printf("%d passed, %d failed\n", passed, failed);            \
		return failed ? 1 : 0;                                       \
	}

#endif
