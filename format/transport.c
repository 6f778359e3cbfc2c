/*
 * format/transport.c — nanomsg behind a small interface (transport.h).
 */
#include "format/transport.h"

#include <errno.h>
#include <limits.h>
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <string.h>

static int nn_fail(struct st_err *err, const char *what, const char *addr)
{
	int e = nn_errno();
	return st_seterr(err, e, "%s%s%s: %s", what, addr ? " " : "", addr ? addr : "",
			 nn_strerror(e));
}

static int set_int(int sock, int level, int opt, int v)
{
	return nn_setsockopt(sock, level, opt, &v, sizeof v);
}

static int max_size(size_t max_msg)
{
	return max_msg > INT_MAX ? INT_MAX : (int)max_msg;
}

int tp_listen(const char *const *addrs, unsigned n, size_t max_msg, int poll_ms, int *sock,
	      struct st_err *err)
{
	int s = nn_socket(AF_SP_RAW, NN_REP);
	if (s < 0)
		return nn_fail(err, "cannot create the server socket", NULL);
	if (set_int(s, NN_SOL_SOCKET, NN_RCVMAXSIZE, max_size(max_msg)) < 0 ||
	    set_int(s, NN_SOL_SOCKET, NN_RCVTIMEO, poll_ms < 0 ? -1 : poll_ms) < 0) {
		int rc = nn_fail(err, "cannot configure the server socket", NULL);
		nn_close(s);
		return rc;
	}
	for (unsigned i = 0; i < n; i++)
		if (nn_bind(s, addrs[i]) < 0) {
			int rc = nn_fail(err, "cannot listen on", addrs[i]);
			nn_close(s);
			return rc;
		}
	*sock = s;
	return ST_OK;
}

int tp_recv(int sock, struct tp_req *r, struct st_err *err)
{
	struct nn_iovec iov = {&r->msg, NN_MSG};
	struct nn_msghdr h = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &r->hdr,
			      .msg_controllen = NN_MSG};
	r->msg = r->hdr = NULL;
	int n = nn_recvmsg(sock, &h, 0);
	if (n < 0) {
		int e = nn_errno();
		if (e == ETIMEDOUT || e == EAGAIN)
			return ETIMEDOUT;
		if (e == ETERM || e == EBADF)
			return ECANCELED;
		return nn_fail(err, "receive", NULL);
	}
	r->len = (size_t)n;
	return ST_OK;
}

void tp_req_free(struct tp_req *r)
{
	if (r->msg)
		nn_freemsg(r->msg);
	if (r->hdr)
		nn_freemsg(r->hdr);
	r->msg = r->hdr = NULL;
}

int tp_reply(int sock, struct tp_req *r, const void *buf, size_t len, size_t max_msg,
	     struct st_err *err)
{
	int rc = ST_OK;
	if (len > max_msg) {
		tp_req_free(r);
		return st_seterr(err, ST_ETOOBIG, "a reply of %zu bytes is above the %zu-byte "
				 "message limit", len, max_msg);
	}
	struct nn_iovec iov = {(void *)buf, len};
	struct nn_msghdr h = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &r->hdr,
			      .msg_controllen = NN_MSG};
	if (nn_sendmsg(sock, &h, NN_DONTWAIT) < 0)
		rc = nn_fail(err, "reply", NULL); /* the client went away */
	else
		r->hdr = NULL; /* nanomsg took it */
	tp_req_free(r);
	return rc;
}

int tp_connect(const char *addr, int timeout_ms, size_t max_msg, int *sock, struct st_err *err)
{
	int s = nn_socket(AF_SP, NN_REQ);
	if (s < 0)
		return nn_fail(err, "cannot create a socket", NULL);
	/* Resend only after the whole timeout: a resend is deduplicated by
	 * the daemon, but there is no reason to provoke one. */
	if (set_int(s, NN_SOL_SOCKET, NN_RCVMAXSIZE, max_size(max_msg)) < 0 ||
	    set_int(s, NN_SOL_SOCKET, NN_SNDTIMEO, timeout_ms) < 0 ||
	    set_int(s, NN_SOL_SOCKET, NN_RCVTIMEO, timeout_ms) < 0 ||
	    set_int(s, NN_REQ, NN_REQ_RESEND_IVL, timeout_ms > 0 ? timeout_ms : INT_MAX) < 0 ||
	    set_int(s, NN_SOL_SOCKET, NN_LINGER, 0) < 0) {
		int rc = nn_fail(err, "cannot configure a socket", NULL);
		nn_close(s);
		return rc;
	}
	if (nn_connect(s, addr) < 0) {
		int rc = nn_fail(err, "cannot connect to", addr);
		if (rc == EINVAL || rc == EPROTONOSUPPORT || rc == ENAMETOOLONG)
			rc = st_seterr(err, ST_EINVAL, "'%s' is not a valid address (tcp://HOST:PORT "
				       "or ipc://PATH)", addr);
		nn_close(s);
		return rc;
	}
	*sock = s;
	return ST_OK;
}

int tp_set_timeout(int sock, int timeout_ms)
{
	return set_int(sock, NN_SOL_SOCKET, NN_SNDTIMEO, timeout_ms) < 0 ||
			       set_int(sock, NN_SOL_SOCKET, NN_RCVTIMEO, timeout_ms) < 0
		       ? errno
		       : ST_OK;
}

int tp_call(int sock, const void *req, size_t len, size_t max_msg, void **rep, size_t *rlen,
	    struct st_err *err)
{
	*rep = NULL;
	*rlen = 0;
	if (len > max_msg)
		return st_seterr(err, ST_ETOOBIG, "a request of %zu bytes is above the %zu-byte "
				 "message limit", len, max_msg);
	if (nn_send(sock, req, len, 0) < 0) {
		int e = nn_errno();
		if (e == ETIMEDOUT || e == EAGAIN)
			return st_seterr(err, ETIMEDOUT, "the request could not be sent in time (is "
					 "stratad running?)");
		return nn_fail(err, "send", NULL);
	}
	void *buf = NULL;
	int n = nn_recv(sock, &buf, NN_MSG, 0);
	if (n < 0) {
		int e = nn_errno();
		if (e == ETIMEDOUT || e == EAGAIN)
			return st_seterr(err, ETIMEDOUT, "no reply in time (is stratad running and "
					 "listening there?)");
		return nn_fail(err, "receive", NULL);
	}
	*rep = buf;
	*rlen = (size_t)n;
	return ST_OK;
}

void tp_free(void *msg)
{
	if (msg)
		nn_freemsg(msg);
}

void tp_close(int sock)
{
	nn_close(sock);
}

void tp_shutdown(void)
{
	nn_term();
}
