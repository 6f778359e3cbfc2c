/*
 * format/error.c — st_strerror() and the message helpers of error.h.
 * Thread-safe: no shared state.
 */
#include "format/error.h"

#include <stdio.h>
#include <string.h>

static const char *const st_names[] = {
	[ST_ECORRUPT - ST_ERR_BASE] = "ST_ECORRUPT: data is corrupt",
	[ST_EVERSION - ST_ERR_BASE] = "ST_EVERSION: unsupported format version",
	[ST_EINVAL - ST_ERR_BASE] = "ST_EINVAL: invalid argument",
	[ST_ESCHEMA - ST_ERR_BASE] = "ST_ESCHEMA: value does not fit the schema",
	[ST_ESYNTAX - ST_ERR_BASE] = "ST_ESYNTAX: syntax error",
	[ST_ETYPE - ST_ERR_BASE] = "ST_ETYPE: type error",
	[ST_ENOMEM - ST_ERR_BASE] = "ST_ENOMEM: out of memory",
	[ST_ETOOBIG - ST_ERR_BASE] = "ST_ETOOBIG: size limit exceeded",
	[ST_ERANGE - ST_ERR_BASE] = "ST_ERANGE: value out of range",
	[ST_ECONFLICT - ST_ERR_BASE] = "ST_ECONFLICT: concurrent commit conflict",
	[ST_ENOTFOUND - ST_ERR_BASE] = "ST_ENOTFOUND: not found",
	[ST_EEXIST - ST_ERR_BASE] = "ST_EEXIST: already exists",
	[ST_EFAILED - ST_ERR_BASE] = "ST_EFAILED: store failed; reopen it",
	[ST_EPROTO - ST_ERR_BASE] = "ST_EPROTO: protocol error",
	[ST_EBUSY - ST_ERR_BASE] = "ST_EBUSY: resource busy; retry",
	[ST_ENOTLEADER - ST_ERR_BASE] = "ST_ENOTLEADER: not the leader; retry at the leader",
	[ST_EUNAVAIL - ST_ERR_BASE] = "ST_EUNAVAIL: the cluster cannot serve this now (no quorum, or too stale)",
	[ST_EPERM - ST_ERR_BASE] = "ST_EPERM: not allowed: authenticate with a token whose role allows it",
};

const char *st_strerror(int code)
{
	if (code == ST_OK)
		return "ST_OK: success";
	if (code >= ST_ERR_BASE && code <= ST_ERR_LAST)
		return st_names[code - ST_ERR_BASE];
	if (code > 0)
		return strerror(code);
	return "unknown error code";
}

int st_seterr(struct st_err *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		err->code = code;
		vsnprintf(err->msg, sizeof err->msg, fmt, ap);
		va_end(ap);
	}
	return code;
}

void st_clearerr(struct st_err *err)
{
	if (err) {
		err->code = ST_OK;
		err->msg[0] = '\0';
	}
}
