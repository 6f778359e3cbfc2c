/*
 * tests/bench/harness.h — what the process-level benchmarks (bench-e2e,
 * bench-dml) share: a clock, running a program with its output captured,
 * reading a field of a one-line JSON object.
 */
#ifndef STRATA_TESTS_BENCH_HARNESS_H
#define STRATA_TESTS_BENCH_HARNESS_H

#include <stdbool.h>
#include <stddef.h>

/* Seconds on the monotonic clock. */
double bench_now(void);

/* Print "PROGRAM: " fmt (with arg) to stderr and exit 1. */
void bench_die(const char *fmt, const char *arg) __attribute__((noreturn));

/* Run argv to completion with stdout (and stderr when both) into out (may be
 * NULL: discarded; at most outlen - 1 bytes kept, NUL-terminated); *wall
 * (may be NULL) gets its wall time. Returns its exit status, -1 when it
 * could not run. bench_run: stdout only. */
int bench_run2(char *const argv[], char *out, size_t outlen, double *wall, bool both);
int bench_run(char *const argv[], char *out, size_t outlen, double *wall);

/* "key":number in a one-line JSON object (json may be NULL); -1 when absent. */
double bench_json_num(const char *json, const char *key);

/* "key":"text" into buf (empty when absent). */
void bench_json_str(const char *json, const char *key, char *buf, size_t len);

/* qsort comparator of doubles. */
int bench_cmp_double(const void *a, const void *b);

#endif
