/*
 * tests/fuzz/fuzz_entry.c — libFuzzer target for the entry bodies a
 * follower receives from a peer (daemon/store/STORE.md §7.1) before they
 * are persisted: st_repl_body_check and st_repl_body_files on hostile
 * bytes. The input is a body without its CRC32C (the harness appends the
 * right one, so the framing is what gets exercised) and, in its first 8
 * bytes, the LSN it claims. Every input must give ST_OK or ST_ECORRUPT,
 * never a crash or a read out of bounds; a body that passes the check
 * must list its files without error.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/store/strata.h"
#include "format/bytes.h"
#include "format/crc32c.h"

static int count_file(void *arg, uint64_t tid, uint64_t fid, uint64_t size, uint32_t crc)
{
	(void)tid, (void)fid, (void)size, (void)crc;
	(*(uint64_t *)arg)++;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 8)
		return 0;
	uint64_t lsn = st_get_le64(data);
	size_t n = size - 8;
	uint8_t *b = malloc(n + 4);
	if (!b)
		return 0;
	memcpy(b, data + 8, n);
	st_put_le32(b + n, st_crc32c(0, b, n));
	struct st_err err;
	uint64_t files = 0;
	int rc = st_repl_body_check(b, n + 4, lsn, &err);
	if (rc != ST_OK && rc != ST_ECORRUPT)
		abort();
	int frc = st_repl_body_files(b, n + 4, count_file, &files, &err);
	if (rc == ST_OK && frc != ST_OK)
		abort();
	/* The CRC is checked: one flipped bit of it is refused. */
	b[n] ^= 1;
	if (st_repl_body_check(b, n + 4, lsn, &err) != ST_ECORRUPT)
		abort();
	free(b);
	return 0;
}
