/*
 * format/crc32c.h — CRC32C (Castagnoli), FORMAT.md §1.
 * Uses the SSE4.2 crc32 instruction when the CPU has it (checked once at
 * run time), else a slicing-by-8 table. Thread-safe.
 */
#ifndef STRATA_FORMAT_CRC32C_H
#define STRATA_FORMAT_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extend crc (0 to start) with n bytes; the result is the CRC32C of all
 * bytes so far: crc32c(crc32c(0, a), b) == crc32c of a then b. */
uint32_t st_crc32c(uint32_t crc, const void *p, size_t n);

#endif
