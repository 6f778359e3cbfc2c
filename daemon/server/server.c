/*
 * daemon/server/server.c — stratad's request server (server.h,
 * format/PROTOCOL.md): the socket, the worker threads, start and stop, and
 * the request path every request takes (parse, deduplicate, dispatch),
 * which sd_handle exposes without the socket for tests and fuzzers.
 *
 * Threading: workers share one raw REP socket (format/transport.h); each
 * has its own context and receives, handles and replies one request at a
 * time. Shared state (sessions, dedupe) is under srv->lock
 * (server_int.h). sd_server_stop joins the workers before freeing.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "daemon/server/log.h"
#include "daemon/server/server_int.h"
#include "format/transport.h"

int64_t sd_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- the request path ---------------------------------------------------- */

/* An error reply for a request that never reached a handler. */
static void refuse(struct sd_ctx *c, int code, const char *msg)
{
	struct wire_error e;
	wire_error_set(&e, code, msg);
	wire_out_reset(&c->out);
	wire_error_reply(&c->out, c->m.id, c->m.type, &e);
}

/* Handle the request of len bytes in buf: the reply ends in c->out. */
static void process(sd_server *srv, struct sd_ctx *c, const void *buf, size_t len)
{
	struct st_err err;
	struct sd_dedupe_entry *de = NULL;
	bool fresh = true;
	wire_out_reset(&c->out);
	if (wire_parse(buf, len, &c->m, &err) != ST_OK) {
		/* Garbage or not msgpack: say so (the client may be a person with nc). */
		sd_log(SD_LOG_DEBUG, "bad request: %s", err.msg);
		refuse(c, ST_EPROTO, err.msg);
		goto out;
	}
	char why[ST_ERR_MSG_MAX];
	if (sd_auth_check(c, buf, len, why, sizeof why) != ST_OK) { /* before any replay answer */
		refuse(c, ST_EPERM, why);
		goto out;
	}
	if (wire_changes_state(c->m.type)) {
		if (!c->m.has_client || c->m.seq == 0) {
			char msg[ST_ERR_MSG_MAX];
			snprintf(msg, sizeof msg, "%s changes state and needs a client id and a "
				 "sequence number from 1 (keys 5 and 6)", wire_type_name(c->m.type));
			refuse(c, ST_EPROTO, msg);
			goto out;
		}
		pthread_mutex_lock(&srv->lock);
		de = sd_dedupe_find(srv, c->m.client, c->m.seq, &fresh);
		while (de && !fresh && !de->done)
			pthread_cond_wait(&srv->cond, &srv->lock);
		if (de && !fresh) { /* answered before: the same reply, not applied again */
			st_buf_append(&c->out.buf, de->reply, de->len);
			pthread_mutex_unlock(&srv->lock);
			sd_log(SD_LOG_DEBUG, "%s seq %" PRIu64 " repeated: answered from the first reply",
			       wire_type_name(c->m.type), c->m.seq);
			de = NULL;
			goto out;
		}
		pthread_mutex_unlock(&srv->lock);
	}
	sd_dispatch(c);
	if (de) {
		pthread_mutex_lock(&srv->lock);
		de->reply = c->out.buf.oom ? NULL : malloc(c->out.buf.len + 1);
		if (de->reply) {
			memcpy(de->reply, c->out.buf.data, c->out.buf.len);
			de->len = c->out.buf.len;
			de->done = true;
		} else {
			de->seq = 0; /* cannot remember: a resend would run again */
		}
		pthread_cond_broadcast(&srv->cond);
		pthread_mutex_unlock(&srv->lock);
	}
out:
	wire_msg_fini(&c->m);
}

static void ctx_init(struct sd_ctx *c, sd_server *srv)
{
	memset(c, 0, sizeof *c);
	c->srv = srv;
	wire_out_init(&c->out);
}

static void ctx_fini(struct sd_ctx *c)
{
	wire_out_fini(&c->out);
	free(c->idx);
}

int sd_handle(sd_server *srv, const void *req, size_t len, void **reply, size_t *rlen)
{
	struct sd_ctx c;
	int rc = ST_OK;
	*reply = NULL;
	*rlen = 0;
	ctx_init(&c, srv);
	process(srv, &c, req, len);
	if (c.out.buf.oom || !(*reply = malloc(c.out.buf.len ? c.out.buf.len : 1))) {
		rc = ST_ENOMEM;
		goto out;
	}
	memcpy(*reply, c.out.buf.data, c.out.buf.len);
	*rlen = c.out.buf.len;
out:
	ctx_fini(&c);
	sd_sess_expire(srv, false);
	return rc;
}

/* ---- workers -------------------------------------------------------------- */

static void *worker(void *arg)
{
	sd_server *srv = arg;
	struct sd_ctx c;
	struct st_err err;
	ctx_init(&c, srv);
	while (!__atomic_load_n(&srv->stop, __ATOMIC_ACQUIRE)) {
		struct tp_req req;
		int rc = tp_recv(srv->sock, &req, &err);
		if (rc == ETIMEDOUT) {
			sd_sess_expire(srv, false);
			continue;
		}
		if (rc == ECANCELED)
			break;
		if (rc != ST_OK) {
			sd_log(SD_LOG_WARN, "%s", err.msg);
			continue;
		}
		process(srv, &c, req.msg, req.len);
		if (c.out.buf.oom)
			tp_req_free(&req); /* no reply: the client's timeout tells */
		else if (tp_reply(srv->sock, &req, c.out.buf.data, c.out.buf.len,
				  srv->o.max_message_size, &err) != ST_OK)
			sd_log(SD_LOG_DEBUG, "reply not sent: %s", err.msg);
		sd_sess_expire(srv, false);
	}
	ctx_fini(&c);
	return NULL;
}

/* ---- start and stop -------------------------------------------------------- */

int sd_server_new(st_store *s, const struct sd_server_opts *o, sd_server **out,
		  struct st_err *err)
{
	sd_server *srv = calloc(1, sizeof *srv);
	int rc = ST_OK;
	*out = NULL;
	if (!srv) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	srv->s = s;
	srv->o = *o;
	srv->sock = -1;
	if (srv->o.workers == 0)
		srv->o.workers = 1;
	srv->started_us = sd_now_us();
	pthread_mutex_init(&srv->lock, NULL);
	pthread_cond_init(&srv->cond, NULL);
	pthread_mutex_init(&srv->scrub.lock, NULL);
	pthread_cond_init(&srv->scrub.cond, NULL);
	pthread_mutex_init(&srv->autoopt.lock, NULL);
	pthread_cond_init(&srv->autoopt.cond, NULL);
	pthread_mutex_init(&srv->auth_lock, NULL);
	if (o->auth_file && (rc = sd_auth_load(o->auth_file, &srv->tokens, err)) != ST_OK) {
		sd_server_free(srv);
		goto out;
	}
	*out = srv;
out:
	return rc;
}

void sd_server_free(sd_server *srv)
{
	if (!srv)
		return;
	sd_sess_expire(srv, true);
	if (srv->sock >= 0)
		tp_close(srv->sock);
	sd_dedupe_free(srv);
	sd_scrub_stop(srv);
	sd_autoopt_stop(srv);
	free(srv->th);
	pthread_mutex_destroy(&srv->lock);
	pthread_cond_destroy(&srv->cond);
	pthread_mutex_destroy(&srv->scrub.lock);
	pthread_cond_destroy(&srv->scrub.cond);
	pthread_mutex_destroy(&srv->autoopt.lock);
	pthread_cond_destroy(&srv->autoopt.cond);
	pthread_mutex_destroy(&srv->auth_lock);
	sodium_memzero(&srv->tokens, sizeof srv->tokens);
	sodium_memzero(srv->sessions_auth, sizeof srv->sessions_auth);
	free(srv);
}

int sd_server_start(st_store *s, const struct sd_server_opts *o, sd_server **out,
		    struct st_err *err)
{
	sd_server *srv = NULL;
	int rc = ST_OK;
	*out = NULL;
	if ((rc = sd_server_new(s, o, &srv, err)) != ST_OK)
		goto out;
	if ((rc = tp_listen(o->listen, o->nlisten, o->max_message_size, SD_POLL_MS, &srv->sock,
			    err)) != ST_OK) {
		srv->sock = -1;
		goto out;
	}
	if (!(srv->th = calloc(srv->o.workers, sizeof *srv->th))) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory");
		goto out;
	}
	for (; srv->nth < srv->o.workers; srv->nth++)
		if ((rc = pthread_create(&srv->th[srv->nth], NULL, worker, srv)) != 0) {
			rc = st_seterr(err, rc, "cannot start worker threads: %s", strerror(rc));
			goto out;
		}
	if ((rc = sd_scrub_start(srv, err)) != ST_OK || (rc = sd_autoopt_start(srv, err)) != ST_OK)
		goto out;
	*out = srv;
	srv = NULL;
out:
	sd_server_stop(srv);
	return rc;
}

void sd_server_stop(sd_server *srv)
{
	if (!srv)
		return;
	__atomic_store_n(&srv->stop, 1, __ATOMIC_RELEASE);
	sd_scrub_stop(srv);
	sd_autoopt_stop(srv);
	for (uint32_t i = 0; i < srv->nth; i++)
		pthread_join(srv->th[i], NULL);
	sd_server_free(srv);
}
