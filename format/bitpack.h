/*
 * format/bitpack.h — BP(n, w) blocks of FORMAT.md §6.0: 64 unsigned values
 * per block in w little-endian u64 words.
 *
 * Output buffers of the unpackers must have room for bp_padded(n) values:
 * they always write whole blocks of 64.
 */
#ifndef STRATA_FORMAT_BITPACK_H
#define STRATA_FORMAT_BITPACK_H

#include <stddef.h>
#include <stdint.h>

/* Bits needed to hold v (0 for v == 0). */
static inline unsigned bp_width(uint64_t v)
{
	return v ? 64u - (unsigned)__builtin_clzll(v) : 0u;
}

/* n rounded up to a whole number of blocks. */
static inline size_t bp_padded(size_t n)
{
	return (n + 63) & ~(size_t)63;
}

/* Bytes of packed data (without the width byte) for n values of w bits. */
static inline size_t bp_bytes(size_t n, unsigned w)
{
	return bp_padded(n) / 64 * w * 8;
}

/* Pack n values (each < 2^w) into bp_bytes(n, w) bytes at out. */
void bp_pack(const uint64_t *in, size_t n, unsigned w, uint8_t *out);
/* Same, from 32-bit values (w <= 32). */
void bp_pack32(const uint32_t *in, size_t n, unsigned w, uint8_t *out);

/* Unpack bp_padded(n) values of w bits (w <= 64) from in into out. */
void bp_unpack64(const uint8_t *in, size_t n, unsigned w, uint64_t *out);
/* Unpack bp_padded(n) values of w bits (w <= 32) into 32-bit out. */
void bp_unpack32(const uint8_t *in, size_t n, unsigned w, uint32_t *out);

#endif
