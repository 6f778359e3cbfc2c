/*
 * tests/fuzz/fuzz_link.c — libFuzzer target for the replication message
 * decoder (replication/REPLICATION.md §5, link_decode): what a node decodes
 * off its peer links before the consensus core sees it. Each input is
 * decoded twice: as it is, and with its trailing CRC pair rewritten to the
 * right CRC (when it ends in one), so that mutations reach the envelope and
 * body checks behind the CRC. A message that decodes (a keepalive aside) must re-encode
 * (link_encode) to bytes that decode to the same message; hostile bytes
 * must give an error, never a crash or a read out of bounds.
 */
#include <stdlib.h>
#include <string.h>

#include "format/crc32c.h"
#include "replication/link.h"

static const uint8_t CLUSTER[LINK_CLUSTER_LEN] = {1, 2, 3, 4, 5, 6, 7, 8,
						  9, 10, 11, 12, 13, 14, 15, 16};

static bool same(const struct raft_msg *a, const struct raft_msg *b)
{
	if (a->type != b->type || a->epoch != b->epoch || a->from != b->from || a->to != b->to ||
	    a->n_entries != b->n_entries)
		return false;
	for (size_t i = 0; i < a->n_entries; i++) {
		const struct raft_entry *x = &a->entries[i], *y = &b->entries[i];
		if (x->lsn != y->lsn || x->epoch != y->epoch || x->len != y->len ||
		    memcmp(x->hash, y->hash, RAFT_HASH_LEN) ||
		    (x->len && memcmp(x->data, y->data, x->len)))
			return false;
	}
	return true;
}

static void decode_one(const uint8_t *p, size_t n)
{
	struct link_decoded d, d2;
	struct raft_msg m, m2;
	struct st_err err;
	link_decoded_init(&d);
	link_decoded_init(&d2);
	/* type 0: a keepalive (§6), which has nothing to re-encode */
	if (link_decode(p, n, CLUSTER, 2, &m, &d, &err) == ST_OK && m.type != 0) {
		struct st_buf b = {0};
		size_t sent = 0;
		if (link_encode(CLUSTER, &m, NULL, NULL, 64u << 20, &b, &sent, &err) != ST_OK ||
		    sent != m.n_entries || link_decode(b.data, b.len, CLUSTER, 2, &m2, &d2, &err) != ST_OK ||
		    !same(&m, &m2))
			abort();
		st_buf_free(&b);
	}
	link_decoded_fini(&d);
	link_decoded_fini(&d2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	decode_one(data, size);
	if (size < 7 || data[size - 6] != 0x07 || data[size - 5] != 0xce)
		return 0;
	/* The CRC pair rewritten (§5.1: header byte - 1, then the bytes before the pair). */
	uint8_t *p = malloc(size);
	if (!p)
		return 0;
	memcpy(p, data, size);
	uint8_t hdr = (uint8_t)(p[0] - 1);
	uint32_t crc = st_crc32c(st_crc32c(0, &hdr, 1), p + 1, size - 7);
	st_put_be(p + size - 4, 4, crc);
	decode_one(p, size);
	free(p);
	return 0;
}
