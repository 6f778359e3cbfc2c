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
 * current test (longjmp back to the runner). Every CHECK, CHECK_EQ,
 * CHECK_CONTAINS and REQUIRE that runs counts as one check: a test that ran
 * none fails with "checked nothing" (a test that cannot fail is a defect).
 *
 * A test that changes process-wide state (a toggle read by an I/O ops
 * table, an options struct, the environment, the umask, a signal handler)
 * has it put back by the runner however the test ends, a failed REQUIRE
 * included: TEST_SET(var, value) / TEST_SAVE(var) for a variable,
 * test_defer(fn, arg) for anything else. Restores run after the test,
 * newest first, before its result is printed.
 *
 * `runner -t NAME` runs one test, `runner -l` lists them. Each test prints
 * "ok   NAME (N checks)" or "FAIL NAME"; the run closes with the line
 * "N passed, N failed" (tests, not checks) and exits 1 when any failed.
 *
 * Threads: checks are counted without locks; run them from the test's own
 * thread (a helper thread reports back, the test thread checks).
 *
 * Needs POSIX 2008 (nftw, strdup): the Makefile's -D_GNU_SOURCE.
 */
#ifndef STRATA_TESTS_TEST_H
#define STRATA_TESTS_TEST_H

#include <ftw.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct test_case {
	const char *name;  /* name used by -t */
	void (*fn)(void);  /* the test body */
};

extern int test_failures_;    /* failures in the current test */
extern int test_checks_;      /* checks run by the current test */
extern jmp_buf test_abort_;   /* REQUIRE jumps here */

#define CHECK(cond)                                                          \
	do {                                                                 \
		test_checks_++;                                              \
		if (!(cond)) {                                               \
			fprintf(stderr, "  %s:%d: CHECK(%s) failed\n",       \
				__FILE__, __LINE__, #cond);                  \
			test_failures_++;                                    \
		}                                                            \
	} while (0)

#define REQUIRE(cond)                                                        \
	do {                                                                 \
		test_checks_++;                                              \
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
		test_checks_++;                                              \
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
		test_checks_++;                                              \
		if (!s_ || !strstr(s_, (needle))) {                          \
			fprintf(stderr, "  %s:%d: \"%s\" does not contain \"%s\"\n", \
				__FILE__, __LINE__, s_ ? s_ : "(null)", (needle)); \
			test_failures_++;                                    \
		}                                                            \
	} while (0)

/*
 * Call fn(arg) when the current test ends, however it ends (returned, or
 * a REQUIRE failed). Restores run newest first. arg is borrowed until then.
 * Called outside a test (no test running), fn runs after the next test.
 */
void test_defer(void (*fn)(void *), void *arg);

/*
 * Remove the tree at path (a test's temp directory) when the current test
 * ends; kept, and named on stderr, when the test failed (to look at).
 * path is copied.
 */
void test_defer_rmtree(const char *path);

/*
 * A fresh directory path for the current test, /tmp/strata-NAME-XXXXXX/dN
 * (one base per runner, created on the first call): not created itself,
 * removed when the test ends (test_defer_rmtree), the base removed at exit
 * when no failed test kept a directory in it. Static storage: valid until
 * the next call.
 */
const char *test_new_dir(const char *name);

/* Remove the tree at path now (symlinks not followed): 0, or -1 and errno. */
int test_rmtree(const char *path);

/* Put var back to the value it has now when the current test ends. */
#define TEST_SAVE(var) test_save_(&(var), sizeof(var))

/* Set var to value for the rest of the current test only. */
#define TEST_SET(var, value)                                                 \
	do {                                                                 \
		TEST_SAVE(var);                                              \
		(var) = (value);                                             \
	} while (0)

void test_save_(void *addr, size_t size);
int test_run_(const struct test_case *cases, size_t n, int argc, char **argv);

/* Room for restores per test: more is a bug in the test (it aborts). */
#define TEST_MAX_RESTORES 64

#define TEST_MAIN(table)                                                     \
	int test_failures_;                                                  \
	int test_checks_;                                                    \
	jmp_buf test_abort_;                                                 \
	/* The current test's restores, newest last. */                      \
	static struct {                                                      \
		void (*fn)(void *); /* test_defer's, or NULL for a save */    \
		void *arg;          /* its argument, or the saved variable */ \
		size_t size;        /* a save's size */                       \
		void *bytes;        /* a save's old bytes (owned) */          \
	} test_restores_[TEST_MAX_RESTORES];                                 \
	static int test_nrestores_;                                          \
	static void *test_push_(void (*fn_)(void *), void *arg_, size_t size_)  \
	{                                                                    \
		if (test_nrestores_ == TEST_MAX_RESTORES) {                  \
			fprintf(stderr, "test.h: more than %d restores in one test\n", \
				TEST_MAX_RESTORES);                          \
			abort();                                             \
		}                                                            \
		void *bytes_ = size_ ? malloc(size_) : NULL;                    \
		if (size_ && !bytes_)                                          \
			abort();                                             \
		test_restores_[test_nrestores_].fn = fn_;                     \
		test_restores_[test_nrestores_].arg = arg_;                   \
		test_restores_[test_nrestores_].size = size_;                 \
		test_restores_[test_nrestores_].bytes = bytes_;               \
		test_nrestores_++;                                           \
		return bytes_;                                               \
	}                                                                    \
	void test_defer(void (*fn_)(void *), void *arg_)                     \
	{                                                                    \
		test_push_(fn_, arg_, 0);                                    \
	}                                                                    \
	void test_save_(void *addr_, size_t size_)                           \
	{                                                                    \
		memcpy(test_push_(NULL, addr_, size_), addr_, size_);        \
	}                                                                    \
	static int test_rm_one_(const char *p_, const struct stat *st_, int flag_, \
				struct FTW *ftw_)                            \
	{                                                                    \
		(void)st_;                                                   \
		(void)flag_;                                                 \
		(void)ftw_;                                                  \
		return remove(p_);                                           \
	}                                                                    \
	int test_rmtree(const char *path_)                                   \
	{                                                                    \
		return nftw(path_, test_rm_one_, 16, FTW_DEPTH | FTW_PHYS);  \
	}                                                                    \
	static void test_rmtree_deferred_(void *path_)                       \
	{                                                                    \
		if (test_failures_)                                          \
			fprintf(stderr, "  kept %s\n", (char *)path_);       \
		else if (test_rmtree(path_) != 0)                            \
			perror((char *)path_);                               \
		free(path_);                                                 \
	}                                                                    \
	static char test_dir_base_[96];                                      \
	static int test_ndirs_;                                              \
	static void test_rmdir_base_(void)                                   \
	{                                                                    \
		rmdir(test_dir_base_);                                       \
	}                                                                    \
	const char *test_new_dir(const char *name_)                          \
	{                                                                    \
		static char d_[160];                                         \
		if (!test_dir_base_[0]) {                                    \
			snprintf(test_dir_base_, sizeof test_dir_base_,      \
				 "/tmp/strata-%s-XXXXXX", name_);            \
			if (!mkdtemp(test_dir_base_))                        \
				abort();                                     \
			atexit(test_rmdir_base_);                            \
		}                                                            \
		snprintf(d_, sizeof d_, "%s/d%d", test_dir_base_, test_ndirs_++); \
		test_defer_rmtree(d_);                                       \
		return d_;                                                   \
	}                                                                    \
	void test_defer_rmtree(const char *path_)                            \
	{                                                                    \
		char *copy_ = strdup(path_);                                 \
		if (!copy_)                                                  \
			abort();                                             \
		test_defer(test_rmtree_deferred_, copy_);                    \
	}                                                                    \
	/* Pop before running: a restore whose REQUIRE fails is not rerun. */ \
	static void test_restore_all_(void)                                  \
	{                                                                    \
		while (test_nrestores_ > 0) {                                \
			int i_ = --test_nrestores_;                           \
			if (test_restores_[i_].fn) {                          \
				test_restores_[i_].fn(test_restores_[i_].arg); \
			} else {                                             \
				memcpy(test_restores_[i_].arg, test_restores_[i_].bytes, \
				       test_restores_[i_].size);              \
				free(test_restores_[i_].bytes);               \
			}                                                    \
		}                                                            \
	}                                                                    \
	/* setjmp in a function of its own: no caller locals to clobber.     \
	 * The restores run in this frame, so a REQUIRE in one lands here. */ \
	static void test_run_one_(void (*fn)(void))                          \
	{                                                                    \
		if (!setjmp(test_abort_))                                    \
			fn();                                                \
		while (test_nrestores_ > 0)                                  \
			if (!setjmp(test_abort_))                            \
				test_restore_all_();                         \
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
			test_checks_ = 0;                                    \
			test_run_one_(cases[i].fn);                          \
			if (test_checks_ == 0) {                             \
				fprintf(stderr, "  %s: checked nothing (a test must "   \
					"check something)\n", cases[i].name); \
				test_failures_++;                            \
			}                                                    \
			if (test_failures_)                                  \
				printf("FAIL %s\n", cases[i].name);          \
			else                                                 \
				printf("ok   %s (%d check%s)\n", cases[i].name, \
				       test_checks_, test_checks_ == 1 ? "" : "s"); \
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
