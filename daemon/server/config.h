/*
 * daemon/server/config.h — stratad's configuration: a YAML file read with libyaml.
 *
 * Every key is described once, in the table of config.c (name, type,
 * default, range, doc); defaults, validation, `--check-config` output and
 * the reference in configs/README.md all come from that table. The file is
 * one flat YAML mapping; unknown keys, duplicate keys and bad values are
 * refused with "FILE:LINE:COLUMN: key 'k': reason".
 */
#ifndef STRATA_DAEMON_CONFIG_H
#define STRATA_DAEMON_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "format/error.h"

enum sd_durability { SD_DURABILITY_SYNC = 0, SD_DURABILITY_NOSYNC = 1 };

#define SD_CONFIG_MAX_LISTEN 16

/* The effective configuration. Strings are owned (sd_config_fini frees). */
struct sd_config {
	char *listen[SD_CONFIG_MAX_LISTEN]; /* nanomsg addresses to bind */
	uint32_t nlisten;                   /* their count, >= 1 */
	char *data_dir;                     /* the data directory */
	uint64_t map_size;                  /* LMDB map size in bytes */
	uint32_t workers;                   /* request worker threads */
	uint32_t log_level;                 /* enum sd_log_level */
	uint32_t log_target;                /* enum sd_log_target */
	uint64_t max_message_size;          /* largest wire message, bytes */
	uint32_t max_batch_rows;            /* largest batch in one message */
	int64_t cursor_timeout_us;          /* idle loads and cursors expire after this */
	int64_t log_retention_us;           /* default log_retention of tables */
	int64_t file_retention_us;          /* default file_retention of tables */
	uint32_t durability;                /* enum sd_durability */
};

/* Fill c with the defaults of every key. Returns ST_OK or ST_ENOMEM. */
int sd_config_defaults(struct sd_config *c);

/* Read path over the defaults. On error c is left empty (nothing to fini)
 * and err says FILE:LINE:COLUMN, the key and the reason.
 * Errors: ST_EINVAL (unknown key, bad value, not a mapping, YAML syntax),
 * errno (cannot read the file), ST_ENOMEM. */
int sd_config_load(const char *path, struct sd_config *c, struct st_err *err);

/* Same, from a string; name stands for the file in messages. */
int sd_config_parse(const char *text, size_t len, const char *name, struct sd_config *c,
		    struct st_err *err);

/* Write c as a YAML file that sd_config_load reads back to the same values. */
void sd_config_print(FILE *out, const struct sd_config *c);

/* Write the reference of every key (markdown table rows: key, type,
 * default, range, meaning). */
void sd_config_reference(FILE *out);

/* Number of keys and the name of key i, for tests. */
unsigned sd_config_nkeys(void);
const char *sd_config_key(unsigned i);

void sd_config_fini(struct sd_config *c);

#endif
