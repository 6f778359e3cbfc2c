/*
 * daemon/server/session.c — loads and scan cursors that live between
 * requests (PROTOCOL.md §4): creation, taking and giving back, ending, and
 * the expiry of idle ones.
 *
 * Invariants: a session is on srv->sessions from sd_sess_new until
 * sd_sess_end or expiry; while busy, exactly one worker holds it and
 * expiry leaves it alone. Ids are not guessable from each other.
 * Threading: every list change is made under srv->lock; what a session
 * holds (its load or scan) is touched only by the worker holding it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon/server/log.h"
#include "daemon/server/server_int.h"

struct sd_session *sd_sess_new(sd_server *srv, int kind)
{
	struct sd_session *x = calloc(1, sizeof *x);
	if (!x)
		return NULL;
	x->kind = kind;
	x->busy = true;
	x->last_us = sd_now_us();
	pthread_mutex_lock(&srv->lock);
	/* Ids are not guessable from each other: a counter mixed with time. */
	x->id = (++srv->next_sid << 20) ^ ((uint64_t)x->last_us & 0xfffff);
	if (!x->id)
		x->id = 1;
	x->next = srv->sessions;
	srv->sessions = x;
	kind == SD_SESS_LOAD ? srv->nloads++ : srv->ncursors++;
	pthread_mutex_unlock(&srv->lock);
	return x;
}

struct sd_session *sd_sess_get(struct sd_ctx *c, uint64_t id, int kind)
{
	sd_server *srv = c->srv;
	struct sd_session *x;
	pthread_mutex_lock(&srv->lock);
	for (x = srv->sessions; x && x->id != id; x = x->next)
		;
	/* Decide under the lock: once it is released, a session held by
	 * another worker may be ended and freed at any moment. */
	bool busy = x && x->busy, match = x && x->kind == kind;
	if (match && !busy)
		x->busy = true;
	pthread_mutex_unlock(&srv->lock);
	if (!match)
		sd_fail(c, ST_ENOTFOUND, "no open %s %" PRIu64 " (it finished, failed or expired "
			"after %" PRId64 " s idle)", kind == SD_SESS_LOAD ? "load" : "cursor", id,
			srv->o.cursor_timeout_us / 1000000);
	else if (busy)
		sd_fail(c, ST_EINVAL, "%s %" PRIu64 " is in use by another request",
			kind == SD_SESS_LOAD ? "load" : "cursor", id);
	return match && !busy ? x : NULL;
}

void sd_sess_release(sd_server *srv, struct sd_session *x)
{
	pthread_mutex_lock(&srv->lock);
	x->busy = false;
	x->last_us = sd_now_us();
	pthread_mutex_unlock(&srv->lock);
}

void sd_sess_end(sd_server *srv, struct sd_session *x)
{
	pthread_mutex_lock(&srv->lock);
	for (struct sd_session **p = &srv->sessions; *p; p = &(*p)->next)
		if (*p == x) {
			*p = x->next;
			break;
		}
	x->kind == SD_SESS_LOAD ? srv->nloads-- : srv->ncursors--;
	pthread_mutex_unlock(&srv->lock);
	st_load_abort(x->load);
	st_merge_src_free(x->msrc);
	st_scan_close(x->scan);
	free(x);
}

void sd_sess_expire(sd_server *srv, bool force)
{
	int64_t now = sd_now_us();
	struct sd_session *gone = NULL;
	pthread_mutex_lock(&srv->lock);
	if (!force && now - srv->last_expire_us < 1000000) {
		pthread_mutex_unlock(&srv->lock);
		return;
	}
	srv->last_expire_us = now;
	for (struct sd_session **p = &srv->sessions; *p;) {
		struct sd_session *x = *p;
		if (!x->busy && (force || now - x->last_us > srv->o.cursor_timeout_us)) {
			*p = x->next;
			x->kind == SD_SESS_LOAD ? srv->nloads-- : srv->ncursors--;
			x->next = gone;
			gone = x;
		} else {
			p = &x->next;
		}
	}
	pthread_mutex_unlock(&srv->lock);
	while (gone) {
		struct sd_session *x = gone;
		gone = x->next;
		if (x->kind == SD_SESS_LOAD)
			sd_log(SD_LOG_WARN, "load %" PRIu64 " on table '%s' expired: aborted, nothing "
			       "committed", x->id, x->table);
		st_load_abort(x->load);
		st_merge_src_free(x->msrc);
		st_scan_close(x->scan);
		free(x);
	}
}
