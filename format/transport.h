/*
 * format/transport.h — the only module that talks to nanomsg
 * (PROTOCOL.md §1, DESIGN.md §8).
 *
 * Server: tp_listen binds one raw REP socket to every address; any number
 * of threads call tp_recv on it and answer each request with tp_reply,
 * which routes the reply through the request's header. Client: tp_connect
 * opens a REQ socket; tp_call sends a request and waits for its reply.
 *
 * Both sides set NN_RCVMAXSIZE to max_msg: a larger message is never
 * sent (tp_reply/tp_call refuse it with ST_ETOOBIG) because nanomsg would
 * drop it without telling the sender.
 *
 * Messages received are owned by the caller and freed with tp_free.
 * Errors: ST_ETOOBIG, ST_EINVAL (bad address), or an errno (ETIMEDOUT,
 * ECANCELED after tp_shutdown, ...), with a message in err.
 */
#ifndef STRATA_FORMAT_TRANSPORT_H
#define STRATA_FORMAT_TRANSPORT_H

#include <stddef.h>

#include "format/error.h"

/* A received request: its bytes and the routing header to reply with. */
struct tp_req {
	void *msg;      /* request bytes (nanomsg-allocated) */
	size_t len;     /* their count */
	void *hdr;      /* routing header (nanomsg-allocated) */
};

/* Bind a raw REP socket to each of n addresses. tp_recv on it waits at
 * most poll_ms (< 0: forever), so that servers can check for shutdown. */
int tp_listen(const char *const *addrs, unsigned n, size_t max_msg, int poll_ms, int *sock,
	      struct st_err *err);
/* Wait for the next request. Returns ETIMEDOUT after the poll interval,
 * ECANCELED once the socket is closed or tp_shutdown was called. */
int tp_recv(int sock, struct tp_req *r, struct st_err *err);
/* Send the reply of r (len <= max_msg) and free r's header and message. */
int tp_reply(int sock, struct tp_req *r, const void *buf, size_t len, size_t max_msg,
	     struct st_err *err);
/* Free a request without replying (the client then times out). */
void tp_req_free(struct tp_req *r);

/* Open a REQ socket to addr with a send/receive timeout. */
int tp_connect(const char *addr, int timeout_ms, size_t max_msg, int *sock, struct st_err *err);
/* Change how long tp_call waits on a connected socket. ST_OK or errno. */
int tp_set_timeout(int sock, int timeout_ms);
/* Send a request and wait for its reply (*rep freed with tp_free). */
int tp_call(int sock, const void *req, size_t len, size_t max_msg, void **rep, size_t *rlen,
	    struct st_err *err);
void tp_free(void *msg);
void tp_close(int sock);
/* Wake every thread blocked in tp_recv/tp_call with ECANCELED (process exit). */
void tp_shutdown(void);

#endif
