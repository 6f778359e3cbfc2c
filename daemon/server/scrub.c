/*
 * daemon/server/scrub.c — the background scrub (STORE.md §8, "Scrub"): one
 * thread that runs st_scrub passes over the store, every scrub_interval
 * (the first one SD_SCRUB_FIRST_US after start at most, so that a daemon
 * restarted more often than its interval still scrubs) at scrub_rate_mb_s,
 * and on demand (SCRUB, `strata scrub`). What a pass finds is logged (a
 * warning per problem), kept for STATUS, and its tables are refused by the
 * store until they are repaired or dropped. One pass at a time.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/server/log.h"
#include "daemon/server/server_int.h"
#include "format/actions.h"

static int64_t mono_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static void keep_result(struct sd_scrub *sc, const struct st_verify_result *r)
{
	for (uint32_t i = 0; i < sc->last_kept; i++)
		free(sc->last_problems[i]);
	sc->last_kept = 0;
	for (uint32_t i = 0; i < r->nproblems && sc->last_kept < SD_SCRUB_KEEP; i++)
		if ((sc->last_problems[sc->last_kept] = strdup(r->problems[i])))
			sc->last_kept++;
	sc->last_nproblems = r->nproblems;
	sc->last_segments = r->segments;
	sc->last_records = r->records;
}

/* One pass, with sc->lock held on entry and on return (released while it
 * runs). */
static void run_pass(sd_server *srv, const char *table, uint32_t rate, bool on_demand)
{
	struct sd_scrub *sc = &srv->scrub;
	sc->running = true;
	sc->pass++;
	memset(&sc->pg, 0, sizeof sc->pg);
	uint64_t pass = sc->pass;
	pthread_mutex_unlock(&sc->lock);

	sd_log(SD_LOG_INFO, "scrub pass %llu started (%s, %s%s, %s)", (unsigned long long)pass,
	       on_demand ? "on demand" : "background", table[0] ? "table " : "all tables", table,
	       rate ? "throttled" : "unthrottled");
	struct st_scrub_opts o = {table[0] ? table : NULL, rate, &sc->stop, &sc->pg};
	struct st_verify_result r;
	struct st_err err;
	bool stopped = false;
	int64_t t0 = mono_us();
	int rc = st_scrub(srv->s, &o, &r, &stopped, &err);
	double secs = (double)(mono_us() - t0) / 1e6;
	if (rc != ST_OK) {
		sd_log(SD_LOG_WARN, "scrub pass %llu could not run: %s", (unsigned long long)pass,
		       err.msg);
		memset(&r, 0, sizeof r);
	} else {
		for (uint32_t i = 0; i < r.nproblems; i++)
			sd_log(SD_LOG_WARN, "scrub pass %llu: DAMAGED: %s", (unsigned long long)pass,
			       r.problems[i]);
		sd_log(r.nproblems ? SD_LOG_WARN : SD_LOG_INFO,
		       "scrub pass %llu %s after %.1f s: %llu segments, %llu records, %llu commits "
		       "checked, %u problems", (unsigned long long)pass,
		       stopped ? "stopped" : "ended", secs, (unsigned long long)r.segments,
		       (unsigned long long)r.records, (unsigned long long)r.commits, r.nproblems);
	}

	pthread_mutex_lock(&sc->lock);
	keep_result(sc, &r);
	if (rc == ST_OK)
		st_verify_result_fini(&r);
	sc->running = false;
	sc->ended = pass;
	sc->last_end_us = sd_now_us();
	if (srv->o.scrub_interval_us > 0)
		sc->next_mono_us = mono_us() + srv->o.scrub_interval_us;
	pthread_cond_broadcast(&sc->cond);
}

static void *loop(void *arg)
{
	sd_server *srv = arg;
	struct sd_scrub *sc = &srv->scrub;
	pthread_mutex_lock(&sc->lock);
	while (!__atomic_load_n(&sc->stop, __ATOMIC_ACQUIRE)) {
		int64_t now = mono_us();
		if (sc->requested) {
			char table[ST_NAME_MAX + 1];
			snprintf(table, sizeof table, "%s", sc->table);
			sc->requested = false;
			run_pass(srv, table, sc->rate, true);
			continue;
		}
		if (sc->next_mono_us && now >= sc->next_mono_us) {
			run_pass(srv, "", srv->o.scrub_rate_mb_s, false);
			continue;
		}
		/* Wake at the due time, or within a second (a stop is also
		 * signalled). CLOCK_REALTIME deadline: the condvar's default. */
		int64_t wait = sc->next_mono_us ? sc->next_mono_us - now : 1000000;
		if (wait > 1000000)
			wait = 1000000;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += wait / 1000000;
		ts.tv_nsec += (wait % 1000000) * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&sc->cond, &sc->lock, &ts);
	}
	pthread_mutex_unlock(&sc->lock);
	return NULL;
}

int sd_scrub_start(sd_server *srv, struct st_err *err)
{
	struct sd_scrub *sc = &srv->scrub;
	if (srv->o.scrub_interval_us > 0) {
		int64_t first = srv->o.scrub_interval_us < SD_SCRUB_FIRST_US ? srv->o.scrub_interval_us
									      : SD_SCRUB_FIRST_US;
		sc->next_mono_us = mono_us() + first;
	}
	int rc = pthread_create(&sc->th, NULL, loop, srv);
	if (rc != 0)
		return st_seterr(err, rc, "cannot start the scrub thread: %s", strerror(rc));
	sc->started = true;
	return ST_OK;
}

void sd_scrub_stop(sd_server *srv)
{
	struct sd_scrub *sc = &srv->scrub;
	if (sc->started) {
		pthread_mutex_lock(&sc->lock);
		__atomic_store_n(&sc->stop, 1, __ATOMIC_RELEASE);
		pthread_cond_broadcast(&sc->cond);
		pthread_mutex_unlock(&sc->lock);
		pthread_join(sc->th, NULL);
		sc->started = false;
	}
	for (uint32_t i = 0; i < sc->last_kept; i++)
		free(sc->last_problems[i]);
	sc->last_kept = 0;
}

int sd_h_scrub(struct sd_ctx *c)
{
	struct sd_scrub *sc = &c->srv->scrub;
	char table[ST_NAME_MAX + 1] = "";
	uint64_t rate = c->srv->o.scrub_rate_mb_s;
	int rc;
	if ((rc = sd_opt_strbuf(c, WIRE_SCRUB_Q_TABLE, "table", table, sizeof table)) ||
	    (rc = sd_opt_u64(c, WIRE_SCRUB_Q_RATE, "rate", &rate)))
		return rc;
	if (rate > UINT32_MAX)
		return sd_fail(c, ST_EINVAL, "rate %llu MB/s is out of range (0: unthrottled)",
			       (unsigned long long)rate);
	if (!sc->started)
		return sd_fail(c, ST_EINVAL, "this server runs no scrub thread");
	if (table[0]) {
		/* Refuse an unknown table now, not in the log later. */
		struct act_metadata *m = NULL;
		struct st_err err;
		int trc = st_table_describe(c->srv->s, table, -1, &m, &err);
		if (m)
			act_metadata_free(m);
		if (trc == ST_ENOTFOUND)
			return sd_fail_err(c, trc, &err);
	}
	pthread_mutex_lock(&sc->lock);
	if (sc->running || sc->requested) {
		bool running = sc->running;
		uint64_t pass = sc->pass + (running ? 0 : 1);
		uint64_t done = __atomic_load_n(&sc->pg.bytes_done, __ATOMIC_RELAXED),
			 total = __atomic_load_n(&sc->pg.bytes_total, __ATOMIC_RELAXED);
		pthread_mutex_unlock(&sc->lock);
		return sd_fail(c, ST_EBUSY, "scrub pass %llu is %s (%.0f%% done): try again when it "
			       "has ended (strata status)", (unsigned long long)pass,
			       running ? "running" : "about to start",
			       total ? 100.0 * (double)done / (double)total : 0.0);
	}
	sc->requested = true;
	snprintf(sc->table, sizeof sc->table, "%s", table);
	sc->rate = (uint32_t)rate;
	uint64_t pass = sc->pass + 1;
	pthread_cond_broadcast(&sc->cond);
	pthread_mutex_unlock(&sc->lock);
	sd_begin(c, WIRE_SCRUB_R_NKEYS);
	wire_key_u64(&c->out.pk, WIRE_SCRUB_R_PASS, pass);
	wire_key_u64(&c->out.pk, WIRE_SCRUB_R_RATE, rate);
	return ST_OK;
}

void sd_status_scrub(struct sd_ctx *c)
{
	struct sd_scrub *sc = &c->srv->scrub;
	msgpack_packer *pk = &c->out.pk;
	pthread_mutex_lock(&sc->lock);
	int64_t now = mono_us();
	const char *state = sc->running ? "running" : sc->next_mono_us ? "idle" : "off";
	if (!sc->started)
		state = "off";
	wire_key_str(pk, WIRE_STATUS_R_SCRUB_STATE, state);
	wire_key_u64(pk, WIRE_STATUS_R_SCRUB_PASSES, sc->ended);
	wire_key_u64(pk, WIRE_STATUS_R_SCRUB_DONE,
		     sc->running ? __atomic_load_n(&sc->pg.bytes_done, __ATOMIC_RELAXED) : 0);
	wire_key_u64(pk, WIRE_STATUS_R_SCRUB_TOTAL,
		     sc->running ? __atomic_load_n(&sc->pg.bytes_total, __ATOMIC_RELAXED) : 0);
	wire_key_u64(pk, WIRE_STATUS_R_SCRUB_LAST_END, (uint64_t)sc->last_end_us);
	msgpack_pack_uint32(pk, WIRE_STATUS_R_SCRUB_LAST_PROBLEMS);
	msgpack_pack_array(pk, sc->last_kept);
	for (uint32_t i = 0; i < sc->last_kept; i++)
		wire_pack_str(pk, sc->last_problems[i]);
	wire_key_u64(pk, WIRE_STATUS_R_SCRUB_LAST_SEGMENTS, sc->last_segments);
	wire_key_u64(pk, WIRE_STATUS_R_SCRUB_LAST_RECORDS, sc->last_records);
	wire_key_u64(pk, WIRE_STATUS_R_SCRUB_NEXT,
		     sc->started && sc->next_mono_us && !sc->running
			     ? (uint64_t)(sc->next_mono_us > now ? sc->next_mono_us - now : 1)
			     : 0);
	wire_key_u64(pk, WIRE_STATUS_R_SCRUB_LAST_NPROBLEMS, sc->last_nproblems);
	pthread_mutex_unlock(&sc->lock);
	char *why[SD_SCRUB_KEEP];
	uint32_t n = st_damaged_reasons(c->srv->s, why, SD_SCRUB_KEEP);
	if (n > SD_SCRUB_KEEP)
		n = SD_SCRUB_KEEP;
	msgpack_pack_uint32(pk, WIRE_STATUS_R_DAMAGED);
	msgpack_pack_array(pk, n);
	for (uint32_t i = 0; i < n; i++) {
		wire_pack_str(pk, why[i] ? why[i] : "?");
		free(why[i]);
	}
}
