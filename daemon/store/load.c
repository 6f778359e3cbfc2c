/*
 * daemon/store/load.c — streaming loads: one write fed batch by batch into one segment
 * file (st_load_*, strata.h), committed once.
 */
#include <errno.h>
#include <limits.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "daemon/store/write_int.h"
#include "format/expr.h"
#include "format/segment.h"
struct st_load {
	st_txn *t;                  /* its transaction (one staged write) */
	struct appender app;        /* the segment being streamed */
	bool failed;                /* a step failed: only abort is left */
};

int st_load_begin(st_store *s, const char *table, const struct st_batch *header,
		  const struct st_write_opts *opts, st_load **out, struct st_err *err)
{
	st_load *l = calloc(1, sizeof *l);
	int rc;
	*out = NULL;
	if (!l)
		return st_seterr(err, ST_ENOMEM, "out of memory");
	if ((rc = st_txn_begin(s, &l->t, err)) != ST_OK) {
		free(l);
		return rc;
	}
	if ((rc = store_stage_begin(l->t, table, header, opts, false, &l->app, err)) != ST_OK) {
		store_stage_fail(l->t, &l->app);
		st_txn_abort(l->t);
		free(l);
		return rc;
	}
	*out = l;
	return ST_OK;
}

int st_load_write(st_load *l, const struct st_batch *b, uint32_t nb, struct st_err *err)
{
	if (l->failed)
		return st_seterr(err, ST_EINVAL, "this load already failed; abort it");
	int rc = store_stage_add(l->t, &l->app, b, nb, err);
	l->failed = rc != ST_OK;
	return rc;
}

uint64_t st_load_rows(const st_load *l)
{
	return l->app.rows;
}

int st_load_commit(st_load *l, struct st_commit_result *res, struct st_err *err)
{
	int rc = l->failed ? st_seterr(err, ST_EINVAL, "this load already failed; abort it")
			   : store_stage_finish(l->t, &l->app, err);
	if (rc != ST_OK) {
		st_load_abort(l);
		return rc;
	}
	rc = st_txn_commit(l->t, res, err); /* frees the transaction */
	free(l);
	return rc;
}

void st_load_abort(st_load *l)
{
	if (!l)
		return;
	if (l->t && l->t->n == 0)
		store_stage_fail(l->t, &l->app); /* still being built */
	st_txn_abort(l->t);
	free(l);
}

