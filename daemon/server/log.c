/*
 * daemon/server/log.c — see log.h.
 */
#include "daemon/server/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>
#include <time.h>

static int cur_level = SD_LOG_INFO;
static int cur_target = SD_LOG_STDERR;

void sd_log_setup(enum sd_log_target target, enum sd_log_level level)
{
	if (target == SD_LOG_SYSLOG && __atomic_load_n(&cur_target, __ATOMIC_RELAXED) != SD_LOG_SYSLOG)
		openlog("stratad", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	__atomic_store_n(&cur_target, target, __ATOMIC_RELAXED);
	sd_log_set_level(level);
}

void sd_log_set_level(enum sd_log_level level)
{
	__atomic_store_n(&cur_level, level, __ATOMIC_RELAXED);
}

enum sd_log_level sd_log_level(void)
{
	return (enum sd_log_level)__atomic_load_n(&cur_level, __ATOMIC_RELAXED);
}

static const char *const level_names[] = {"error", "warn", "info", "debug"};

const char *sd_log_level_name(enum sd_log_level level)
{
	return level_names[(unsigned)level & 3];
}

void sd_log(enum sd_log_level level, const char *fmt, ...)
{
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	if ((int)level > __atomic_load_n(&cur_level, __ATOMIC_RELAXED))
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (__atomic_load_n(&cur_target, __ATOMIC_RELAXED) == SD_LOG_SYSLOG) {
		syslog(prio[level], "%s", msg);
		return;
	}
	struct timespec ts;
	struct tm tm;
	char when[32];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ stratad %s: %s\n", when, ts.tv_nsec / 1000000, level_names[level], msg);
}
