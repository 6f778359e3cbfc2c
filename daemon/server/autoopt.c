/*
 * daemon/server/autoopt.c — automatic compaction: one thread, at low
 * priority, that every auto_optimize_interval looks at each table (its live
 * files and the rows its deletion vectors delete, from a snapshot's file
 * records) and runs OPTIMIZE (bin packing, STORE.md §4.3) on those with
 * auto_optimize_files files or more, or whose deleted-row share is
 * auto_optimize_deleted or more. After each OPTIMIZE it sleeps as long as
 * rewriting its bytes at auto_optimize_rate_mb_s takes, so that it never
 * holds the disk for long. Its commits are in history (operation OPTIMIZE);
 * STATUS (keys 28-31) says what it did. In a cluster only the leader's
 * commits; a follower's attempts fail (ST_ENOTLEADER) and are not counted.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "daemon/server/log.h"
#include "daemon/server/server_int.h"

/* Sleep up to us, or until stopped; false when stopped. */
static bool nap(struct sd_autoopt *a, int64_t us)
{
	pthread_mutex_lock(&a->lock);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += us / 1000000;
	ts.tv_nsec += (us % 1000000) * 1000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	while (!a->stop && pthread_cond_timedwait(&a->cond, &a->lock, &ts) != ETIMEDOUT)
		;
	bool go = !a->stop;
	pthread_mutex_unlock(&a->lock);
	return go;
}

/* Whether table needs an OPTIMIZE by the thresholds. */
static bool wanted(sd_server *srv, const char *table, char *why, size_t len)
{
	st_scan *sc = NULL;
	struct st_err err;
	if (st_scan_open(srv->s, table, (struct st_at){ST_AT_LATEST, 0}, NULL, 0, NULL, &sc, &err) !=
	    ST_OK)
		return false;
	struct st_scan_info in;
	st_scan_info(sc, &in);
	st_scan_close(sc);
	uint64_t all = in.rows + in.deleted;
	if (in.files >= srv->o.auto_optimize_files) {
		snprintf(why, len, "%llu files", (unsigned long long)in.files);
		return true;
	}
	if (all && (double)in.deleted / (double)all >= srv->o.auto_optimize_deleted) {
		snprintf(why, len, "%.0f%% of its rows deleted", 100.0 * (double)in.deleted / (double)all);
		return true;
	}
	return false;
}

static void *loop(void *arg)
{
	sd_server *srv = arg;
	struct sd_autoopt *a = &srv->autoopt;
	/* Low priority: the other threads (requests, replication) first. */
	setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
	while (nap(a, srv->o.auto_optimize_interval_us)) {
		char **names = NULL;
		uint32_t n = 0;
		struct st_err err;
		if (st_table_list(srv->s, &names, &n, &err) != ST_OK)
			continue;
		for (uint32_t i = 0; i < n && !__atomic_load_n(&a->stop, __ATOMIC_ACQUIRE); i++) {
			char why[64];
			if (!wanted(srv, names[i], why, sizeof why))
				continue;
			struct st_optimize_opts o = {.target_size = srv->o.auto_optimize_target};
			struct st_optimize_result r;
			__atomic_store_n(&a->running, 1, __ATOMIC_RELEASE);
			int rc = st_optimize(srv->s, names[i], &o, &r, &err);
			__atomic_store_n(&a->running, 0, __ATOMIC_RELEASE);
			pthread_mutex_lock(&a->lock);
			if (rc == ST_OK && !r.commit.noop) {
				a->runs++;
				snprintf(a->last, sizeof a->last,
					 "table '%s' (%s): %llu files into %llu, %llu deleted rows purged, "
					 "version %llu", names[i], why, (unsigned long long)r.files_removed,
					 (unsigned long long)r.files_added, (unsigned long long)r.rows_purged,
					 (unsigned long long)r.commit.version);
				sd_log(SD_LOG_INFO, "auto optimize: %s", a->last);
			} else if (rc != ST_OK && rc != ST_ENOTLEADER && rc != ST_ECONFLICT) {
				a->failures++;
				snprintf(a->last, sizeof a->last, "table '%s': %s", names[i], err.msg);
				sd_log(SD_LOG_WARN, "auto optimize of table '%s' failed: %s", names[i],
				       err.msg);
			}
			pthread_mutex_unlock(&a->lock);
			/* Keep the average write rate at or below the configured one. */
			if (rc == ST_OK && !r.commit.noop && srv->o.auto_optimize_rate_mb_s &&
			    !nap(a, (int64_t)(r.bytes_added / srv->o.auto_optimize_rate_mb_s)))
				break;
		}
		free(names); /* one allocation (st_table_list) */
	}
	return NULL;
}

int sd_autoopt_start(sd_server *srv, struct st_err *err)
{
	struct sd_autoopt *a = &srv->autoopt;
	if (srv->o.auto_optimize_interval_us <= 0)
		return ST_OK;
	int rc = pthread_create(&a->th, NULL, loop, srv);
	if (rc != 0)
		return st_seterr(err, rc, "cannot start the auto optimize thread: %s", strerror(rc));
	a->started = true;
	return ST_OK;
}

void sd_autoopt_stop(sd_server *srv)
{
	struct sd_autoopt *a = &srv->autoopt;
	if (!a->started)
		return;
	pthread_mutex_lock(&a->lock);
	a->stop = 1;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
	pthread_join(a->th, NULL);
	a->started = false;
}

void sd_status_autoopt(struct sd_ctx *c)
{
	struct sd_autoopt *a = &c->srv->autoopt;
	msgpack_packer *pk = &c->out.pk;
	pthread_mutex_lock(&a->lock);
	wire_key_str(pk, WIRE_STATUS_R_AUTOOPT_STATE,
		     !a->started ? "off" : __atomic_load_n(&a->running, __ATOMIC_ACQUIRE) ? "running"
											: "idle");
	wire_key_u64(pk, WIRE_STATUS_R_AUTOOPT_RUNS, a->runs);
	wire_key_u64(pk, WIRE_STATUS_R_AUTOOPT_FAILURES, a->failures);
	wire_key_str(pk, WIRE_STATUS_R_AUTOOPT_LAST, a->last);
	pthread_mutex_unlock(&a->lock);
}
