/*
 * format/error.h — strata's one error space.
 *
 * ST_OK is 0. Project codes are negative, in the reserved range
 * [ST_ERR_BASE, ST_ERR_LAST]. Positive values are errno values passed
 * through unchanged. st_strerror() names both kinds.
 *
 * Functions that can fail return int and, when the caller passes a
 * struct st_err, also fill a message a user can act on: what failed, where
 * (file, structure, offset, column, row, token), and what to do.
 */
#ifndef STRATA_FORMAT_ERROR_H
#define STRATA_FORMAT_ERROR_H

#include <stdarg.h>
#include <stddef.h>

enum {
	ST_OK = 0,
	ST_ERR_BASE = -30900,
	ST_ECORRUPT = ST_ERR_BASE, /* bytes on disk or wire fail a check */
	ST_EVERSION,               /* newer major version than this reader */
	ST_EINVAL,                 /* bad argument or bad user input */
	ST_ESCHEMA,                /* value does not fit the schema */
	ST_ESYNTAX,                /* predicate text does not parse */
	ST_ETYPE,                  /* predicate does not type-check */
	ST_ENOMEM,                 /* allocation failed */
	ST_ETOOBIG,                /* a size limit was exceeded */
	ST_ERANGE,                 /* a numeric value out of range */
	ST_ECONFLICT,              /* optimistic concurrency conflict */
	ST_ENOTFOUND,              /* named object does not exist */
	ST_EEXIST,                 /* named object already exists */
	ST_EFAILED,                /* store is in the failed state */
	ST_EPROTO,                 /* a wire message breaks PROTOCOL.md */
	ST_EBUSY,                  /* a resource is exhausted for now (LMDB reader
				    * slots): retry later */
	ST_ENOTLEADER,             /* a write or transfer sent to a node that does not
				    * lead the cluster: retry at the leader */
	ST_EUNAVAIL,               /* a cluster cannot serve it now: no quorum
				    * acknowledged a write in time, or a read's
				    * staleness or version bound is not met */
	ST_EPERM,                  /* the client's token (or none) does not allow the
				    * request (PROTOCOL.md §2.2) */
	ST_ERR_LAST = ST_EPERM,
};

#define ST_ERR_MSG_MAX 512

/* A filled-in error: the code and a one-line human message. */
struct st_err {
	int code;                  /* ST_OK or the code returned */
	char msg[ST_ERR_MSG_MAX];  /* NUL-terminated message, "" when none */
};

/* Name of a code: project codes by name and meaning, errno via strerror.
 * Returns a static string; never NULL. */
const char *st_strerror(int code);

/* Record code and a printf-style message in err (err may be NULL).
 * Returns code, so callers write: rc = st_seterr(err, ST_EINVAL, "..."). */
int st_seterr(struct st_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Clear err to ST_OK and an empty message (err may be NULL). */
void st_clearerr(struct st_err *err);

#endif
