/*
 * daemon/server/log.h — stratad's log: one line per event, to stderr or syslog,
 * filtered by a level that can change while running (SIGHUP).
 */
#ifndef STRATA_DAEMON_LOG_H
#define STRATA_DAEMON_LOG_H

enum sd_log_level { SD_LOG_ERROR = 0, SD_LOG_WARN = 1, SD_LOG_INFO = 2, SD_LOG_DEBUG = 3 };
enum sd_log_target { SD_LOG_STDERR = 0, SD_LOG_SYSLOG = 1 };

/* Set where lines go and the level (thread-safe; callable any time). */
void sd_log_setup(enum sd_log_target target, enum sd_log_level level);
void sd_log_set_level(enum sd_log_level level);
enum sd_log_level sd_log_level(void);
/* "error", "warn", "info" or "debug". */
const char *sd_log_level_name(enum sd_log_level level);
/* Log a line at level (no trailing newline needed). */
void sd_log(enum sd_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
