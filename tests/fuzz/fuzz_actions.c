/*
 * tests/fuzz/fuzz_actions.c — libFuzzer target for the commit decoder
 * (format/ACTIONS.md). Decode the input as a commit and as standalone
 * metadata; whatever decodes must re-encode and decode to the same bytes
 * (abort otherwise). Hostile input must give an error, never a crash.
 */
#include <stdlib.h>
#include <string.h>

#include "format/actions.h"

static void same_after_reencode(const struct act_commit *c)
{
	struct st_buf a = {0}, b = {0};
	struct act_commit *d = NULL;
	if (act_encode(c, &a, NULL, NULL) != ST_OK || act_decode(a.data, a.len, &d, NULL) != ST_OK ||
	    act_encode(d, &b, NULL, NULL) != ST_OK || a.len != b.len || memcmp(a.data, b.data, a.len))
		abort();
	act_commit_free(d);
	st_buf_free(&a);
	st_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct act_commit *c;
	struct act_metadata *m;
	if (act_decode(data, size, &c, NULL) == ST_OK) {
		same_after_reencode(c);
		act_commit_free(c);
	}
	if (act_metadata_decode(data, size, &m, NULL) == ST_OK) {
		struct st_buf a = {0};
		struct act_metadata *m2 = NULL;
		if (act_metadata_encode(m, &a, NULL) != ST_OK ||
		    act_metadata_decode(a.data, a.len, &m2, NULL) != ST_OK)
			abort();
		act_metadata_free(m2);
		st_buf_free(&a);
		act_metadata_free(m);
	}
	return 0;
}
